/*
 * replica/recovery.h — bringing a replica's state back from disk, and checkpoints.
 *
 * The data directory holds WAL segments (wal/log.h) and snapshots (replica/snapshot.h), and
 * on a replica images (replica/image.h): a snapshot with its operation records, which recovery
 * takes like a snapshot. Recovery = the newest snapshot or image that validates + replay of every later WAL frame through
 * sm_apply, the same function live execution uses. Checkpoint = write a snapshot of the applied
 * state, keep it and the one before it, and drop WAL segments the older of the two no longer
 * needs — one checkpoint of overlap, so a crash at any step of a checkpoint, or a newest
 * snapshot that later fails validation, still recovers to the same state.
 *
 * Decisions (docs/durability.md has the reasoning):
 *   - A snapshot that fails validation is skipped for an older one only when the older one plus
 *     the WAL provably covers: the WAL must reach back to the older snapshot's LSN + 1 (checked
 *     by wal_log_open) and forward at least to the rejected snapshot's LSN (checked after
 *     replay). Otherwise recovery fails closed. With no valid snapshot, the WAL must start at
 *     LSN 1.
 *   - The config must equal the one the snapshot was taken under (replaying the later log under
 *     different capacities could change results that were already acknowledged).
 *   - Replay checks what the snapshot and the WAL claim about each other: the first replayed
 *     frame follows the snapshot's LSN, and slots never go back across the boundary. This is
 *     also what anchors that frame when the WAL frame before it is damaged.
 *   - Damage in WAL frames the loaded snapshot covers (LSN <= its LSN) is needed only for peers
 *     and fallback: it does not stop recovery; rep->wal reports it (damaged, damage_*) for the
 *     caller to warn and count. Damage after the snapshot fails closed. A fallback to an older
 *     snapshot that would replay across damage is therefore refused (fail closed), and the
 *     message says so, naming the rejected snapshot and the damage's file and offset.
 *   - Frames up to the newest snapshot's LSN (even a rejected one's) were durable when it was
 *     taken, so recovery raises wal.synced_lsn to it: damage there is never cut as a torn tail.
 *
 * NOTES
 *   The caller owns the sm (created with the config) and the wal_log; recovery fills both. On
 *   error the sm holds partial state and must be discarded; the wal_log is closed.
 */
#ifndef ADB_REPLICA_RECOVERY_H
#define ADB_REPLICA_RECOVERY_H

#include "common/types.h"
#include "replica/sm.h"
#include "replica/snapshot.h"
#include "wal/io.h"
#include "wal/log.h"

enum recovery_kind {
    RECOVERY_FRESH = 0,        /* no snapshot, no frame */
    RECOVERY_WAL_ONLY,         /* no snapshot, frames replayed */
    RECOVERY_SNAPSHOT_ONLY,    /* a snapshot, nothing after it */
    RECOVERY_SNAPSHOT_AND_WAL, /* a snapshot and frames after it */
};

const char *recovery_kind_name(enum recovery_kind k);

struct recovery_report {
    enum recovery_kind kind;
    u64 snapshot_lsn;           /* LSN of the loaded snapshot (0: none) */
    bool from_image;            /* it was an image file (replica/image.h): its operation records
                                   are in no operation log yet */
    u32 snapshots_found;
    u32 snapshots_rejected;     /* newer snapshots that failed validation */
    u64 rejected_lsn;           /* the newest rejected one */
    char rejected_reason[256];
    u32 temp_files_removed;     /* interrupted snapshot writes */
    u64 frames_replayed;
    u64 last_replayed_lsn;      /* 0 if none */
    struct wal_open_report wal;
};

struct recovery_options {
    struct wal_log_options wal;
    bool read_only; /* verify only: no repair, no cleanup; the wal_log is left closed */
};

int recovery_run(struct io *io, const char *dir, const struct sm_config *cfg,
                 const struct recovery_options *opt, sm_t *sm, struct wal_log *wal,
                 struct recovery_report *rep /* OUT */, char *why, size_t why_len);

/*
 * snapshot_decode of a snapshot of `dir`, its operation records read from dir's operation log
 * (replica/oplog.h). What recovery runs for each snapshot it tries; tools use it too.
 */
enum snapshot_status recovery_decode_snapshot(struct io *io, const char *dir, const u8 *buf, u64 len,
                                              const struct sm_config *cfg, sm_t *sm, char *why, size_t why_len);

struct checkpoint_report {
    u64 snapshot_lsn;      /* the snapshot written (or already present) */
    bool written;          /* false if a snapshot of this LSN already existed */
    u64 keep_from_lsn;     /* WAL kept from here on */
    u32 snapshots_removed;
    u32 segments_removed;
    u32 oplog_segments_removed;
};

struct oplog;

/*
 * Snapshot of the applied state, then cleanup. sm must not be ahead of the durable WAL.
 * wal may be NULL when another process owns the WAL (the applier's snapshot child): then
 * nothing is pruned and keep_from_lsn tells the owner what it may remove.
 * ops: the operation log the caller writes (replica/oplog.h), flushed by it up to sm's LSN;
 * checkpoint_run only syncs it (it may run in a child while the parent appends). NULL: the
 * live records are written as one segment of their own (callers without a writer).
 * Returns 0 or a negative errno with a reason; a failed checkpoint loses nothing (the WAL is
 * only pruned after the new snapshot is durable).
 */
struct checkpoint_options {
    struct oplog *ops;            /* see above; NULL: a segment of its own */
    void (*encoded)(void *ctx);   /* see snapshot_write_then; NULL: none */
    void *ctx;
};
int checkpoint_run(struct io *io, const char *dir, const sm_t *sm, struct wal_log *wal,
                   const struct checkpoint_options *opt /* may be NULL */, struct checkpoint_report *rep /* OUT */,
                   char *why, size_t why_len);

#endif
