/*
 * wal/log.h — the WAL on disk: segment files, group-commit appends, recovery and pruning.
 *
 * Files in the data directory: wal-<first LSN, 20 digits>.log. Each segment is preallocated to
 * its full capacity when created (so fdatasync after an append flushes data, not metadata),
 * starts with a segment header (wal/scan.h) and holds frames with consecutive LSNs. The newest
 * segment is the only one written; when a frame does not fit, the writer syncs it, creates the
 * next one (header, allocate, fsync, directory fsync) and continues there.
 *
 * NOTES
 *   Initialization: wal_log_format() creates the first, empty segment of a new directory;
 *   wal_log_open() recovers an existing one (the scan of wal/scan.h over every segment, in
 *   LSN order, with the checks between segments), calls back for every frame at or after a
 *   given LSN, repairs a torn tail, and leaves the log ready to append after the last frame.
 *   A directory without segments is an error: a WAL is never silently created. Frames below
 *   the given LSN belong to the caller's snapshot: damage in them is reported and passed over,
 *   never repaired (wal/scan.h, note (**)).
 *
 *   Nothing read back is trusted as durable unsynced: a writer killed between pwrite and
 *   fdatasync leaves frames only in the page cache, so a read-write open fsyncs the newest
 *   segments and the directory before it delivers or counts any frame. A read-only open never
 *   syncs; it must not be trusted beyond what the writer has made durable.
 *
 *   Appending: wal_log_append() encodes into a bounded in-memory batch (pwrite when it fills);
 *   wal_log_commit() writes what is pending and issues one fdatasync for all of it: group
 *   commit. durable_lsn moves only after a successful sync.
 *
 *   Sync window: a disk may persist the pages of an unsynced write in any order, and recovery
 *   tells such a tear from damage only by its reach (wal/scan.h). So the writer never has more
 *   than sync_window_bytes unsynced in a segment (wal_log_append commits first when the next
 *   frame would pass it) and records the window in each segment header it creates.
 *
 *   Errors: any failed write or sync halts the log. A halted log refuses every later call with
 *   -EIO and never writes again: after a failed fsync the kernel may have dropped the dirty
 *   pages, so nothing unsynced can be trusted (LMDB's MDB_FATAL_ERROR, PostgreSQL's PANIC).
 *   The owner reports the unsynced entries as indefinite and restarts; recovery rereads the
 *   disk.
 *
 *   Replication (a backup's log follows the primary's):
 *   - wal_log_append_frame() appends a frame encoded elsewhere, byte for byte, exactly as
 *     wal_log_append would (batch, sync window, roll, no space, halt on a failed write), once it
 *     is checked to follow: it decodes exactly, carries the next LSN, the chain cursor's
 *     prev_crc, a slot >= the last one and a valid command. A frame that does not follow is
 *     -EINVAL with nothing changed, never a halt: the caller repairs.
 *   - wal_log_truncate() removes every frame after an LSN (a view change discards an
 *     uncommitted suffix). Frames still in the batch are dropped. Written ones are removed by
 *     rewriting the segment that holds the first removed frame: its header (byte for byte, its
 *     flags too) and the frames before that frame are copied into the spare file
 *     (WAL_SPARE_NAME; a prepared spare of the right size is used as it is), the rest of its
 *     capacity allocated as zeros, and the file fsynced; then the newer segments are unlinked,
 *     newest first, the copy is renamed over the segment, and the directory is fsynced once. That segment is the active one again, with its own
 *     capacity and window, and appends continue after the kept frame. Crash guarantee: until
 *     the directory sync the old log is what a reopen finds (an orphaned spare is removed at
 *     open), after it exactly the truncated one; only a file system that persists part of one
 *     directory sync (io_fault's TEAR) can show a log in between, which is still the old log
 *     cut at a segment boundary: never garbage, never damage. No byte of a segment is ever
 *     zeroed in place (a disk that persists pages in any order could leave old frames after
 *     zeros, beyond any torn write: damage). A failure halts the log, except no space before
 *     the directory changes (-ENOSPC/-EDQUOT, nothing changed). The caller keeps the rule
 *     after_lsn >= the durable commit point, so a reopen's synced_lsn is at or below it.
 *   - wal_log_read() returns a frame by LSN as the WAL holds it (on disk, or in the batch),
 *     verified (decodes exactly, the LSN matches), or -ENOENT (pruned, or not yet appended), or
 *     -EUCLEAN (the bytes there are damaged: a replica never serves an entry it cannot read
 *     intact). Offsets come from a ring of the last index_frames frames' offsets (filled by the
 *     open's scan and by appends); an older LSN is found by walking its segment from the header,
 *     frame by frame. Older segments are opened read-only for the read and closed after. A read
 *     never writes and never halts the log; it needs a read-write open (-EBADF otherwise) and
 *     refuses a halted log (-EIO: its page cache is not trusted).
 *
 *   State transfer: wal_log_restart() empties the log of a replica that installed a snapshot at
 *   LSN S received from a peer (S >= the last LSN held): the next frame is S + 1, chained to
 *   frame S by the slot and crc the caller gives. Frames in the batch are dropped (at or below
 *   S, obsolete like the rest). The new segment, wal-<S + 1>, is prepared under the spare name
 *   (a ready spare as it is, else a new file: header, capacity allocated, fsync) with the flag
 *   WAL_SEGMENT_RESTART in its header (wal/scan.h), then renamed into place (replacing the log's
 *   last segment if that starts at S + 1: an empty one) and the directory fsynced: the commit
 *   point. Then every older segment is unlinked and the directory fsynced again. Open
 *   honours the flag: the newest segment that carries it makes every segment with a smaller
 *   first LSN obsolete, whatever the scan would say of them; a read-write open unlinks them
 *   (and fsyncs the directory) before it scans, a read-only one leaves them and reads none
 *   (rep->obsolete_segments_removed counts them either way). So a crash before the commit
 *   point reopens to the old log (with an orphaned spare, removed), after it to the restarted
 *   empty log, whatever part of the unlinks survived; a directory sync kept in part (io_fault's
 *   TEAR) keeps a prefix of create, rename, unlinks, which is one or the other too. The flag
 *   stays once the unlinks are done (its segment is then the oldest: nothing to drop) and
 *   truncation's copy keeps it. Failures as for truncation: no space before the rename is
 *   -ENOSPC/-EDQUOT with nothing changed, anything else halts. The caller makes the snapshot
 *   durable first: a crash between the two leaves a snapshot at S and the old log, which may
 *   end below S (a replay from S + 1 is then -EUCLEAN): the caller opens the log without replay
 *   and restarts it again.
 *
 *   Memory: the batch buffer, the offset ring (8 bytes a frame) and a read buffer are
 *   allocated at open (bounded by the options), nothing per append or read. Thread safety:
 *   none; one owner (the sequencer).
 */
#ifndef ADB_WAL_LOG_H
#define ADB_WAL_LOG_H

#include "common/types.h"
#include "vocab/vocab.h"
#include "wal/frame.h"
#include "wal/io.h"
#include "wal/scan.h"

#include <errno.h>

#define WAL_SEGMENT_BYTES_DEFAULT (64u << 20)
#define WAL_SEGMENT_BYTES_MIN 4096
#define WAL_SEGMENT_BYTES_MAX ((u64)1 << 40)
#define WAL_BATCH_BYTES_DEFAULT (1u << 20)
#define WAL_SYNC_WINDOW_DEFAULT (4u << 20) /* or batch_bytes, if larger */
#define WAL_SEGMENTS_MAX 4096 /* segments tracked at once; a checkpoint prunes them */
#define WAL_PATH_MAX 4096
#define WAL_SPARE_NAME "wal-spare.tmp" /* the next segment, prepared ahead (wal_log_prepare) */
#define WAL_INDEX_FRAMES_DEFAULT 65536 /* offsets of recent frames kept for wal_log_read */
#define WAL_INDEX_FRAMES_MAX (1u << 24)
#define WAL_READ_CHUNK (64u << 10)   /* the read buffer: a segment walk reads this much at a time */

struct wal_log_options {
    u64 segment_bytes; /* capacity of new segments (0 = default); WAL_SEGMENT_BYTES_MIN..MAX */
    u32 batch_bytes;   /* in-memory batch before a write (0 = default); >= WAL_FRAME_MAX */
    u32 sync_window_bytes; /* most bytes left unsynced in a segment (0 = default);
                            * >= batch_bytes; recorded in the segments this log creates */
    u64 synced_lsn;    /* open: frames up to this LSN are known durable (0: none known), e.g.
                        * the metadata's commit point. Damage at or below it is corruption,
                        * never a torn tail; see wal/scan.h */
    bool read_only;    /* open: scan and report, never repair, append or create */
    u64 stop_after_lsn; /* read_only open: stop reading after this LSN (0: read everything);
                         * lets a reader recover up to a known-durable point while the writer
                         * appends: no byte after that frame is interpreted, and segments
                         * wholly after it are not opened */
    u32 index_frames;   /* frames whose offsets wal_log_read keeps (0 = default); older ones
                         * are found by walking their segment. <= WAL_INDEX_FRAMES_MAX */
};

/* What recovery found. */
struct wal_open_report {
    u32 segments;
    u64 first_lsn;    /* first LSN the WAL holds (its oldest segment's first_lsn) */
    u64 last_lsn;     /* last valid frame (first_lsn - 1 if none) */
    u64 last_slot;    /* its request slot */
    u64 frames;       /* valid frames scanned (segments wholly before from_lsn are not read) */
    u64 frames_delivered; /* of those, passed to the callback (lsn >= from_lsn) */
    bool torn;        /* a torn tail was found (and, unless read_only, zeroed) */
    u64 torn_offset, torn_bytes;
    char torn_file[WAL_PATH_MAX];
    u32 removed_empty_segment; /* 1 if a crash-torn, frameless newest segment was removed */
    u32 obsolete_segments_removed; /* segments before the newest restart segment (wal_log_restart):
                                    * unlinked before the scan; a read-only open counts them but
                                    * only leaves them out (unread, not removed) */
    /* Damage below from_lsn, in frames the caller's snapshot covers (wal/scan.h, note (**)):
     * passed over, never repaired, never a torn tail. The open succeeded; the caller should warn
     * and count it. Segments wholly before from_lsn are not read, so damage there is not seen. */
    u32 damaged;             /* damaged regions passed over (0: none) */
    u64 damage_lsn;          /* the first: the LSN expected where it starts */
    u64 damage_offset;       /* ... its offset in damage_file */
    char damage_file[WAL_PATH_MAX];
    char damage_reason[256]; /* ... the rule it broke */
    u64 damage_floor_lsn;    /* highest LSN whose frame, or link to the frame before, is
                              * unverified: recovering from a snapshot below it (a fallback)
                              * would replay across the damage and fails closed */
};

struct wal_segment_ref {
    u64 first_lsn;
};

struct wal_log {
    struct io *io;
    char dir[WAL_PATH_MAX];
    struct wal_log_options opt;

    /* Segments, oldest first; the last one is active. */
    struct wal_segment_ref segments[WAL_SEGMENTS_MAX];
    u32 segment_count;
    int fd;              /* active segment, -1 if none */
    u64 segment_capacity; /* preallocated size of the active segment (its header says) */
    u64 segment_length;   /* its length when opened */
    u64 write_offset;    /* where the next frame goes in the active segment */
    u64 synced_offset;   /* everything before it in the active segment is synced */
    u32 segment_window;  /* most bytes it may hold unsynced: its header's, at most the option */

    struct wal_cursor cur; /* chain state after the last appended frame */
    u64 durable_lsn;       /* last LSN made durable by a sync */

    u8 *batch;             /* frames encoded but not yet written */
    u32 batch_used;
    u32 last_frame_len;    /* size of the frame the last append encoded (at the batch's end) */
    u64 batch_offset;      /* file offset of batch[0] */

    int spare_fd;          /* the next segment being prepared (WAL_SPARE_NAME), -1 if none */
    u64 spare_written;     /* bytes of it zero-filled and synced */
    bool spare_ready;      /* complete: the next roll uses it */

    /* Offsets of recent frames: frame lsn is at index[lsn % opt.index_frames] for every lsn in
     * [index_lo, next_lsn) within the last index_frames (index_lo 0: none). Read-write only. */
    u64 *index;
    u64 index_lo;
    u8 *read_buf;          /* WAL_READ_CHUNK bytes: segment walks and truncation's copy */

    bool halted;
    int halt_errno;
    char halt_reason[256];
};

/* A frame delivered during open; return non-zero to stop recovery (reported as an error). */
typedef int (*wal_replay_fn)(void *ctx, const struct wal_frame *f, const struct sm_command *cmd);

/* Creates the first segment (first LSN 1) in an existing directory without segments. */
int wal_log_format(struct io *io, const char *dir, const struct wal_log_options *opt, char *why,
                   size_t why_len);

/*
 * Opens and recovers the WAL in dir: makes the tail durable (unless read_only), scans every
 * segment, calls replay for each frame with lsn >= from_lsn (NULL: none), which the WAL must
 * cover (from_lsn 0: every frame it holds, no coverage required), repairs a torn tail (unless
 * read_only) and makes the log ready to append; durable_lsn is then the last frame. Returns 0,
 * or a negative errno with a reason naming file, offset and rule in why (-EUCLEAN for
 * corruption, -ENOENT for a missing WAL, -ECANCELED if replay stopped it).
 *
 * With replay and from_lsn > 1, the frames below from_lsn are the caller's snapshot's: damage
 * in them that the scan reads is passed over and reported in rep->damaged and the damage_*
 * fields (wal/scan.h, note (**)), as long as frame from_lsn (or, if the WAL ends before it, the
 * WAL's last frame) is found intact and the chain from it checks out; anything else is
 * -EUCLEAN as before. The caller must check that frame from_lsn follows its snapshot (LSN and
 * slot): when the frame before it is damaged, nothing else anchors it.
 */
int wal_log_open(struct wal_log *w, struct io *io, const char *dir,
                 const struct wal_log_options *opt, u64 from_lsn, wal_replay_fn replay,
                 void *ctx, struct wal_open_report *rep /* OUT */, char *why, size_t why_len);

void wal_log_close(struct wal_log *w);

/*
 * Adds one entry: the next LSN, stamped with request_slot (>= the previous one) and view.
 * Returns 0 and the LSN in *lsn_out, or a negative errno if the log is halted or a write
 * failed (then halted). Not durable until wal_log_commit.
 */
int wal_log_append(struct wal_log *w, u64 request_slot, u64 view, const struct sm_command *cmd,
                   u64 *lsn_out);

/*
 * Appends a frame encoded elsewhere (the primary's), byte for byte: frame/len must decode
 * exactly (wal_frame_decode_exact), carry the next LSN, prev_crc equal to the crc of the last
 * frame, request_slot >= the last slot and a valid command payload. Otherwise -EINVAL, nothing
 * changed, the log not halted. Then as wal_log_append: 0, or -EIO (halted), -ENOSPC/-EDQUOT
 * (no room for the next segment; not halted), or the error of a failed write (halted). Not
 * durable until wal_log_commit.
 */
int wal_log_append_frame(struct wal_log *w, const u8 *frame, u32 len);

/*
 * Removes every frame with lsn > after_lsn, durably (see NOTES for the crash guarantee), and
 * continues the chain from frame after_lsn: the next append gets after_lsn + 1, durable_lsn is
 * min(durable_lsn, after_lsn). after_lsn must lie in [first LSN held - 1, last LSN]
 * (asserted); the caller never truncates at or below its durable commit point. 0, -EIO if
 * halted, -ENOSPC/-EDQUOT with nothing changed, or another negative errno (then halted).
 */
int wal_log_truncate(struct wal_log *w, u64 after_lsn);

/*
 * Restarts the log empty after after_lsn, durably (see NOTES for the crash guarantee): a
 * replica installed a snapshot at after_lsn received from a peer. after_lsn must be >= the last
 * LSN the log holds (asserted); prev_slot and prev_crc are frame after_lsn's request slot and
 * crc, so the next append gets after_lsn + 1 and must carry that prev_crc. Frames in the batch
 * are dropped; every segment held becomes obsolete and is removed; durable_lsn is after_lsn and
 * wal_log_read of an LSN up to it is -ENOENT. 0, -EIO if halted, -ENOSPC/-EDQUOT with nothing
 * changed, or another negative errno (then halted).
 */
int wal_log_restart(struct wal_log *w, u64 after_lsn, u64 prev_slot, u32 prev_crc);

/*
 * Copies frame lsn as the WAL holds it into buf (cap bytes; WAL_FRAME_MAX always suffices)
 * and its size into *len, after checking it decodes exactly with that LSN. 0, -ENOENT (not
 * held: pruned, or after the last frame), -EUCLEAN (damaged there, or the walk to it crossed
 * damage), -ENOBUFS (cap too small: *len says how much), -EBADF (a read-only open), -EIO
 * (halted), or an I/O error. Never halts the log.
 */
int wal_log_read(struct wal_log *w, u64 lsn, u8 *buf, u32 cap, u32 *len /* OUT */);

/* The frame the last successful wal_log_append or wal_log_append_frame put in the batch (valid
 * until the next append, commit or truncate): the sequencer copies it into the shared log. */
static inline const u8 *wal_log_last_frame(const struct wal_log *w, u32 *len)
{
    *len = w->last_frame_len;
    return w->batch + w->batch_used - w->last_frame_len;
}

/* Out of space stops writes, not the log: a failed growth loses nothing written, so the log is
 * not halted; its owner refuses what needs room and tries again later. */
static inline bool wal_log_no_space(int rc)
{
    return rc == -ENOSPC || rc == -EDQUOT;
}

/* Writes everything appended and syncs once. 0 or a negative errno (log halted).
 * wal_log_append and wal_log_prepare return -ENOSPC (or -EDQUOT) without halting when the disk
 * is full: the next segment cannot be created, or the spare cannot grow. Nothing is appended
 * then; the owner refuses the entry and tries again later. */
int wal_log_commit(struct wal_log *w);

/*
 * Prepares the next segment ahead of time (zero-fill and sync a slice of WAL_SPARE_NAME), so a
 * roll costs a header write and two small syncs instead of creating and syncing a whole segment
 * on the commit path. Each call adds budget_bytes, and at least catches the spare up with how
 * full the active segment is, so a spare prepared between batches is
 * complete by the time the active segment is 8/9 full.
 * 0, or a negative errno (the log is halted, as for any write error).
 */
int wal_log_prepare(struct wal_log *w, u64 budget_bytes);

/* Removes whole segments holding only LSNs below keep_from_lsn (never the active one). */
int wal_log_prune(struct wal_log *w, u64 keep_from_lsn, u32 *removed /* OUT */);

static inline u64 wal_log_next_lsn(const struct wal_log *w)
{
    return w->cur.next_lsn;
}

/* Segment file names: "wal-%020llu.log". */
bool wal_segment_name(char *out, size_t cap, u64 first_lsn);
bool wal_segment_parse_name(const char *name, u64 *first_lsn);

#endif
