/*
 * replica/oplog.h — the operation log: dedupe records written once, as they are made.
 *
 * At full speed the dedupe window holds tens of millions of operation records (rate x window),
 * more than half of the state. Rewriting them in every snapshot is what stalled commits, so
 * snapshots (version 2) leave them out: the applier appends each new record here as it applies,
 * in LSN order, and a checkpoint only flushes the last partial block and syncs. Recovery reads
 * the records a snapshot needs from here; the snapshot's header says how many there are, their
 * oldest LSN and a sum of their hashes, so a missing, extra or damaged record is caught.
 * docs/retention.md has the arithmetic.
 *
 * Files: ops-<start>.log, <start> (20 digits) the LSN the segment's coverage starts after.
 *
 *   file header  64 bytes: 0 magic "ADBO" (0x4f424441), 4 version u16 (1), 6 header_size u16,
 *                8 start_lsn u64, 16 reserved zero (44 bytes), 60 CRC32C of bytes 0..59
 *   blocks       each: 0 magic "ADBB" (0x42424441), 4 count u32 (records), 8 through_lsn u64
 *                (every record with an LSN up to here that was live when the block was cut is
 *                in this segment or an earlier one), 16 reserved zero (12 bytes), 28 CRC32C of
 *                bytes 0..27 and the records; then count x 48-byte records (below)
 *   record       0 operation_id (16), 16 fingerprint_code, 24 result_deadline_slot,
 *                32 applied_lsn, 40 retire_after_slot (u64 each) — replica/sm.h
 *
 * NOTES
 *   Writer (the applier): after every apply, oplog_export() copies the records the state machine
 *   appended since the last export into a 1 MiB block, written when full; segments roll at
 *   OPLOG_SEGMENT_BYTES. Nothing is synced on the hot path: oplog_flush() (before the snapshot
 *   child is forked) writes the partial block, and oplog_sync() (in the child, before the
 *   snapshot) makes everything written durable. A record retired before it was exported is
 *   never needed again (a snapshot needs only records live at its LSN), so exporting late, or
 *   only at a checkpoint, is always correct.
 *
 *   Restart: oplog_open() removes segments starting at or after the LSN recovery restored from
 *   (they hold nothing that replay does not write again) and starts a new one there; the records
 *   replay made are exported into it. Earlier segments may hold records past that LSN: they are
 *   equal to the replayed ones (the same durable log, applied again), and the reader yields each
 *   LSN once.
 *
 *   Reader: segments in start order, records in LSN order, each LSN once, up to a limit. A block
 *   that fails its checks ends its segment (a torn tail is normal after a crash); the first such
 *   place is reported, and whether it mattered is decided by the snapshot's count and sum.
 *
 *   Pruning: segment i can go when segment i+1 starts below the oldest record the older kept
 *   snapshot needs: every record i holds past that start is also in a later segment.
 */
#ifndef ADB_REPLICA_OPLOG_H
#define ADB_REPLICA_OPLOG_H

#include "common/types.h"
#include "replica/sm.h"
#include "wal/io.h"

#define OPLOG_RECORD_SIZE 48
#define OPLOG_FILE_HEADER_SIZE 64
#define OPLOG_BLOCK_HEADER_SIZE 32
#define OPLOG_BLOCK_RECORDS 21844 /* a block is at most ~1 MiB */
#define OPLOG_SEGMENT_BYTES ((u64)64 << 20)
#define OPLOG_UNSYNCED_MAX 32 /* rolled segments awaiting the next checkpoint's sync */

void oplog_put_record(u8 *p, const struct sm_operation *o);
void oplog_get_record(const u8 *p, struct sm_operation *o);
bool oplog_file_name(char *out, size_t cap, u64 start_lsn);
bool oplog_parse_name(const char *name, u64 *start_lsn);

/* ---- writer -------------------------------------------------------------------------------- */

struct oplog {
    struct io *io;
    char dir[4096];
    int fd;               /* current segment, -1 if none */
    u64 start_lsn;        /* of the current segment */
    u64 offset;           /* bytes in it */
    u64 exported;         /* sm->operation_appended exported so far */
    u8 *block;            /* header + up to OPLOG_BLOCK_RECORDS records */
    u32 block_count;
    u64 last_lsn;         /* of the last record exported */
    int unsynced[OPLOG_UNSYNCED_MAX];
    u32 unsynced_count;
    u64 bytes_written;    /* counters for metrics */
    u64 segments_started;
    u64 forced_syncs;     /* rolled segments synced here because too many awaited a checkpoint */
    u64 segment_bytes;    /* roll at this size (OPLOG_SEGMENT_BYTES; tests use less) */
};

/*
 * Starts a segment after `after_lsn` (the LSN recovery restored from: the snapshot's, or 0)
 * and exports the live records newer than it. Removes segments that start at or after it.
 */
int oplog_open(struct oplog *w, struct io *io, const char *dir, const sm_t *sm, u64 after_lsn, char *why,
               size_t why_len);
/* Buffers the records appended since the last export; writes full blocks, rolls segments. */
int oplog_export(struct oplog *w, const sm_t *sm, char *why, size_t why_len);
/* oplog_export, then the partial block: everything up to sm's LSN is written (not yet synced). */
int oplog_flush(struct oplog *w, const sm_t *sm, char *why, size_t why_len);
/* fdatasync of the current segment and of the rolled ones not yet synced. */
int oplog_sync(struct oplog *w, char *why, size_t why_len);
/* After a checkpoint whose oplog_sync succeeded (in the child): close the `count` oldest rolled
 * segments it synced. */
void oplog_synced(struct oplog *w, u32 count);
void oplog_close(struct oplog *w);

/* One segment with every live record of `sm` (checkpoints by callers without a writer: tests
 * and tools). Written to a temporary name, synced and renamed. */
int oplog_write_all(struct io *io, const char *dir, const sm_t *sm, char *why, size_t why_len);

/* ---- reader -------------------------------------------------------------------------------- */

struct oplog_reader {
    struct io *io;
    char dir[4096];
    u64 *starts; /* segment start LSNs, ascending */
    u32 count, next;
    struct io_view view; /* the segment being read */
    bool open;
    u64 pos;             /* in view: next block */
    u32 block_left;      /* records left in the current block */
    const u8 *rec;       /* next record of the current block */
    u64 upto_lsn, last_lsn;
    char damage[256];    /* the first block that failed its checks, "" if none */
};

int oplog_reader_open(struct oplog_reader *r, struct io *io, const char *dir, u64 upto_lsn, char *why,
                      size_t why_len);
/* 1 and a record (LSNs strictly ascending, <= upto_lsn), 0 at the end, < 0 on an I/O error. */
int oplog_reader_next(struct oplog_reader *r, struct sm_operation *out, char *why, size_t why_len);
void oplog_reader_close(struct oplog_reader *r);

/* Removes segments no snapshot needs: see NOTES. */
int oplog_prune(struct io *io, const char *dir, u64 keep_from_lsn, u32 *removed, char *why, size_t why_len);

#endif
