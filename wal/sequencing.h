/*
 * wal/sequencing.h — the sequencer's decisions as pure code: how much one batch may take, what
 * a client write becomes (a retry answered from the cache, a rejection, a refusal for space, a
 * new frame), which slot an entry is stamped with, what a restart reads and republishes, and
 * when the replica metadata and the WAL are maintained.
 *
 * The core owns the WAL (wal/log.h, which assigns the LSNs) and reaches files only through the
 * `struct io` it is given; it keeps the batch of frames appended since the last fsync. The
 * sequencer worker (wal/sequencer.c) is the shell: it reads the rings, the clocks and the shared
 * segment, feeds each event here with the clock readings, and performs what comes back (answer
 * a tag, publish the committed frames with their tags, write the metadata, log). No clock, no
 * fork, no globals: tests/test_sequencing.c drives it event by event over a simulated disk
 * (DESIGN.md §10). Every frame the core hands out for publishing is durable.
 *
 * Rules:
 *   - Batching: one batch takes at most batch_max entries and never more than the shared log
 *     has room for (backpressure, never overwrite); due expirations before client writes.
 *   - Stamping: an entry's slot is the node's timeline (wal/slot_clock.h) read after the entry
 *     was taken, never below the last slot logged; the timeline follows the boot clock, never
 *     the wall clock's steps; a restart resumes it and never goes back.
 *   - A write: LSN space exhausted -> rejected lsn_exhausted. Else a retry the cache can answer
 *     (replica/retry_cache.h; not when the ingress forces logging) -> answered from the applied
 *     record without a frame. Else while the disk is full -> refused no_space (definite:
 *     nothing was logged) — the next segment is tried again once space_retry_ms has passed.
 *     Else a frame. A due expiration while writes are refused is dropped: the applier proposes
 *     it again after its hold (late, never early).
 *   - Restart reconciliation. The shared log holds only what was durable; published_lsn is the
 *     last LSN of a fully published batch. A crash between the fsync and the end of publishing
 *     leaves frames durable but not (or only partly) published: every frame above published_lsn
 *     is published again, untagged (the ingress answered their requests indefinite when it saw
 *     the sequencer restart); a frame of a partly published batch may so appear twice in the
 *     shared log, and the applier skips what it has applied. The WAL is read from the newest
 *     snapshot on (never past published_lsn: everything to republish is read). On the first
 *     start of a daemon nothing is published (the applier recovers from disk itself). Frames
 *     at or below the metadata's commit point or published_lsn are known durable: damage there
 *     is corruption, never a torn tail. A WAL that ends before either is refused.
 *   - Maintenance: the commit point and the clock anchor are written every meta_interval_ms
 *     while the WAL advances, every meta_idle_ms otherwise (space_retry_ms while the metadata
 *     cannot grow); the snapshot anchor follows the applier's newest snapshot, never past the
 *     commit point; a failed metadata write backs off, doubling from meta_interval_ms up to
 *     meta_backoff_max_ms; the WAL is pruned below what the applier says, only ever forward.
 */
#ifndef ADB_WAL_SEQUENCING_H
#define ADB_WAL_SEQUENCING_H

#include "common/types.h"
#include "replica/retry_cache.h"
#include "vocab/vocab.h"
#include "wal/command.h"
#include "wal/frame.h"
#include "wal/log.h"
#include "wal/slot_clock.h"

/* A frame of the batch, as logged (the shell copies it into the shared log once durable). */
struct sequencing_frame {
    u32 len;
    u8 bytes[WAL_FRAME_HEADER_SIZE + WAL_CMD_SIZE_MAX];
};

struct sequencing_config {
    u32 batch_max;
    u64 slot_ms;
    u64 segment_bytes; /* the WAL's */
    u64 meta_interval_ms;
    u64 meta_idle_ms;
    u64 meta_backoff_max_ms;
    u64 space_retry_ms;
};

/* What a full disk stops, by what could not grow. */
enum sequencing_space { SEQUENCING_SEGMENT = 0, SEQUENCING_META = 1, SEQUENCING_SPARE = 2 };

enum sequencing_space_change { SEQUENCING_SPACE_SAME = 0, SEQUENCING_SPACE_FULL, SEQUENCING_SPACE_RETURNED };

struct sequencing {
    struct sequencing_config cfg;
    struct wal_log wal;
    bool wal_open;
    struct retry_cache *cache; /* the caller's (replica/retry_cache.h) */
    struct sequencing_frame *batch; /* the caller's, batch_max frames */
    u32 batch_count;           /* appended since the last commit */
    struct slot_clock clock;
    u64 publish_after;         /* restart: replayed frames above it are published again */
    bool no_space[3];          /* by enum sequencing_space */
    int no_space_rc;           /* the errno that last reported a part full (for the log) */
    u64 space_retry_at_ms;
    u64 meta_commit;           /* the commit point the metadata holds */
    u64 meta_snapshot;         /* the snapshot anchor it holds */
    u64 meta_at_ms;            /* when the commit point was last written */
    u64 meta_retry_at_ms, meta_backoff_ms;
    u64 pruned_below;
    /* Replication (replica/vsr.h): the view new frames are stamped with, and the cluster time
     * in ms that slots follow instead of this node's timeline (UINT64_MAX: a single node). */
    u64 view;
    u64 cluster_ms;
};

/* Over the caller's retry cache and batch memory (cfg->batch_max frames); nothing allocated. */
void sequencing_init(struct sequencing *s, const struct sequencing_config *cfg, struct retry_cache *cache,
                     struct sequencing_frame *batch);
void sequencing_close(struct sequencing *s);

/* ---- restart ----------------------------------------------------------------------------- */

/* What the shell saw before opening the WAL. */
struct sequencing_restart {
    bool ever_ready;          /* a sequencer of this daemon was ready before (a worker restart) */
    u64 published_lsn;        /* the shared log's end as published */
    u64 newest_snapshot_lsn;  /* on disk, 0: none */
    u64 meta_commit_lsn;
    u64 meta_snapshot_lsn;
};

/* How to open the WAL. */
struct sequencing_open {
    bool first_start;
    u64 read_from_lsn; /* frames before it are not read (0: from the start) */
    u64 synced_lsn;    /* frames up to it are known durable */
};

/* A durable frame to publish again (untagged) during open. Non-zero stops the open. */
typedef int (*sequencing_republish_fn)(void *ctx, const u8 *frame, u32 len, u64 lsn);

enum sequencing_opened {
    SEQUENCING_OPENED = 0,
    SEQUENCING_META_AHEAD_OF_WAL,   /* acknowledged entries are missing */
    SEQUENCING_WAL_BEHIND_SHARED_LOG,
};

/*
 * A start: plans it from what the shell saw, opens and recovers the WAL in dir through io
 * (a torn tail repaired), teaches the retry cache every frame read, and calls republish for
 * each durable frame above published_lsn. Returns 0 with *verdict (the WAL may be served only
 * when SEQUENCING_OPENED), or wal_log_open's negative errno with the reason in why.
 */
int sequencing_open(struct sequencing *s, struct io *io, const char *dir, const struct sequencing_restart *seen,
                    sequencing_republish_fn republish, void *ctx, struct sequencing_open *plan,
                    struct wal_open_report *rep, enum sequencing_opened *verdict, char *why, size_t why_len);

/* The timeline: on a first start from the saved anchor (NULL: none) and the clocks now; on a
 * worker restart, joined to the one the daemon's first sequencer decided. */
void sequencing_start_clock(struct sequencing *s, u64 last_slot, const struct clock_anchor *saved,
                            const struct clock_reading *now);
void sequencing_join_clock(struct sequencing *s, u64 logical0_ms, u64 boot0_ms, u64 last_slot);

/* ---- the batch --------------------------------------------------------------------------- */

/* Entries the next batch may take with `room` free in the shared log (0: wait for the applier). */
u32 sequencing_batch_limit(const struct sequencing *s, u64 room);

/* The slot an entry taken now (boot clock reading boot_ms) is stamped with. */
u64 sequencing_slot(struct sequencing *s, u64 boot_ms);

enum sequencing_action {
    SEQUENCING_APPENDED = 0,     /* batch[index] at lsn; durable at the next commit */
    SEQUENCING_ANSWER_RETRY,     /* answer from the applied record of lsn, no frame */
    SEQUENCING_REJECT_EXHAUSTED, /* no LSN left (definite) */
    SEQUENCING_REFUSE_NO_SPACE,  /* the disk is full (definite: nothing logged) */
    SEQUENCING_DROPPED,          /* an expiration not logged while writes are refused */
    SEQUENCING_STORAGE_FAILED,   /* the WAL is halted (rc): answer everything indefinite, stop */
};

struct sequencing_result {
    enum sequencing_action action;
    u32 index; /* APPENDED: position in the batch */
    u64 lsn;   /* APPENDED: its LSN; ANSWER_RETRY: the first logging's */
    int rc;    /* STORAGE_FAILED: negative errno */
};

/* A client write taken at boot clock boot_ms, monotonic now_ms. force_log: never answer it
 * from the cache (the applier did not find the record). The batch must have room. */
struct sequencing_result sequencing_write(struct sequencing *s, const struct sm_command *cmd, bool force_log,
                                          u64 boot_ms, u64 now_ms);
/* A due expiration proposed by the applier. */
struct sequencing_result sequencing_expire(struct sequencing *s, u128 reservation_id, u64 deadline_slot,
                                           u64 boot_ms, u64 now_ms);

/* Makes the batch durable (one fsync). 0: batch[0, *count) are durable and may be published
 * (valid until the next append); else the negative errno (the WAL is halted; batch_count says
 * how many entries were not acknowledged). */
int sequencing_commit(struct sequencing *s, u32 *count);

/* Between batches: a slice of the next segment prepared (while it cannot grow, once per
 * space_retry_ms). 0, or a negative errno: the WAL is halted. */
int sequencing_prepare(struct sequencing *s, u64 budget_bytes, u64 now_ms);

/* ---- replication: a backup's WAL follows the primary's ------------------------------------ */

/* Appends a frame the primary logged, byte for byte, to the batch (durable at the next commit).
 * 0; -EINVAL if it does not follow the WAL (nothing changed); or the WAL's errno. The batch
 * must have room. */
int sequencing_append_frame(struct sequencing *s, const u8 *frame, u32 len);
/* Removes every frame after after_lsn (a view change truncating an uncommitted suffix),
 * durably, and forgets the retry answers that may name them. 0 or a negative errno. */
int sequencing_truncate(struct sequencing *s, u64 after_lsn);
/* The WAL restarts empty after after_lsn, chained to that entry's slot and crc (a state
 * transfer installed the state after it: wal_log_restart). Frames in the batch are dropped
 * (they are at or below after_lsn; the caller answers their requests). 0 or a negative errno. */
int sequencing_restart_log(struct sequencing *s, u64 after_lsn, u64 prev_slot, u32 prev_crc);
/* Reads frame lsn intact (wal_log_read): 0, -ENOENT, -EUCLEAN or an errno. */
int sequencing_read(struct sequencing *s, u64 lsn, u8 *buf, u32 cap, u32 *len);

/* ---- space ------------------------------------------------------------------------------- */

/* A part ran out of space (full) or has room again, at now_ms: the change to report. */
enum sequencing_space_change sequencing_space(struct sequencing *s, enum sequencing_space part, bool full,
                                              u64 now_ms);
bool sequencing_writes_refused(const struct sequencing *s);
/* For /health: 2 writes refused, 1 only the spare segment cannot grow, 0 fine. */
int sequencing_space_level(const struct sequencing *s);

/* ---- maintenance ------------------------------------------------------------------------- */

/* Whether to try opening the metadata (it is closed after a failure) now. */
bool sequencing_meta_open_due(const struct sequencing *s, u64 now_ms);
/* Whether to write the commit point now; *lsn: the point to write. */
bool sequencing_commit_due(struct sequencing *s, u64 now_ms, u64 durable_lsn, u64 *lsn);
void sequencing_committed(struct sequencing *s, u64 lsn);
/* Whether to record the applier's newest snapshot (snapshot_lsn) as the anchor now. */
bool sequencing_anchor_due(const struct sequencing *s, u64 now_ms, u64 snapshot_lsn);
void sequencing_anchored(struct sequencing *s, u64 snapshot_lsn);
/* A metadata write (or open) failed at now_ms: returns the wait before the next attempt. */
u64 sequencing_meta_failed(struct sequencing *s, u64 now_ms);
/* Prunes the WAL below prune_below_lsn (what the applier published), only ever forward. 0 (also
 * when nothing was due) with *removed segments, or a negative errno (tried again next time). */
int sequencing_prune(struct sequencing *s, u64 prune_below_lsn, u32 *removed);

#endif
