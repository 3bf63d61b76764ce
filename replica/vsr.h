/*
 * replica/vsr.h — the replication protocol core (DESIGN.md §8): Viewstamped Replication over
 * the WAL, one object per replica, pure. It is fed received messages, ticks and storage
 * completions, and acts through an injected environment: send a message, make view/log_view
 * durable, append or truncate WAL frames, read a frame for a peer, publish the commit point.
 * No clock reads (every event carries the time), no I/O of its own, no globals: the daemon's
 * peer worker and the simulator (sim/) drive the same code.
 *
 * What the core decides, and the rules it keeps:
 *   - Normal case. The primary (view mod n) accepts new entries only in normal status, with its
 *     log whole (no entry it must still repair), fewer than pipeline_max entries beyond the
 *     commit point, and a cluster time a quorum agrees on. It sends each entry as a prepare to
 *     every backup (star). A backup appends in LSN order, only along the hash chain, and acks
 *     an entry (prepare_ok) once it is durable. The primary commits an entry when a quorum has
 *     it durable — itself only after its own fsync — and every earlier entry is committed.
 *     Commit heartbeats carry the commit point; a backup publishes min(commit point, durable).
 *   - View change. A backup that hears nothing from its primary for primary_timeout, or any
 *     replica that sees no commit progress for twice that while entries are pending (or, the
 *     primary, while it lacks committed ones) (a primary that cannot get entries of its log back, or
 *     cannot give them to its backups), votes for the next view (start_view_change); a replica leaves its view only when a quorum voted for
 *     a higher one (a replica that can send but not receive cannot churn views). It makes the
 *     new view durable, then sends do_view_change (log_view, op head, commit, the top of its
 *     log's headers) to the new primary. The new primary, with a quorum of them, takes the log
 *     of the highest log_view (then the highest op head) as canonical, keeps every op of it,
 *     truncates its own divergent suffix (never at or below a commit point), makes view and
 *     log_view durable, enters normal status and sends start_view; it repairs missing entries
 *     before it accepts new ones and commits the adopted ones on fresh prepare_oks. A replica
 *     that sees a higher view stops serving at once. view and log_view only grow (asserted).
 *   - Repair. A replica missing entries asks for them by LSN and expected crc (request_prepare)
 *     and appends only what extends its chain. It serves only frames its WAL reads back intact.
 *     Without a crc (an entry whose canonical header it lacks) it asks the primary and one other
 *     replica, and learns the header only from a copy canonical in its view: the primary's, or
 *     one the sender verified in that view (the prepare's flag says so).
 *   - A checkpoint prunes the WAL no further than what a backup heard from lately still lacks,
 *     unless it lags more than lag_max: a slow backup stays within repair's reach.
 *   - State transfer. Pings say how far back each replica's WAL reaches and the LSN of its
 *     newest snapshot image. A replica in normal status that needs an entry no peer it heard
 *     from lately still holds (its next one; or, for an entry of its own it has yet to check,
 *     the primary's copy, the one sure to be canonical) asks one that pruned it for
 *     its image (request_snapshot), chunk by chunk, from the offset it has (or, stuck on its
 *     own damaged copy of an entry it must check, any peer whose image is above its log); a changed image
 *     starts it over. It installs the image only while it still needs it, in normal status:
 *     the image's LSN is above its whole log (or at its head, an entry it could not check), so
 *     the image's committed prefix replaces all of it (an entry it held and acked that was
 *     committed is in that prefix; one that differs was never committed). Its log then restarts empty after the image's entry, whose header
 *     the image carries, and repair continues from there.
 *   - A restarted replica resumes as a backup in its durable view when log_view == view and it
 *     is not that view's primary; otherwise it starts a view change (a primary that restarts
 *     may have lost entries a quorum committed without it, so it never resumes its own view).
 *   - Cluster time (DESIGN.md §3). Pings carry the sender's time and pongs the responder's
 *     clock; a sample whose round trip took over half the tolerance is dropped. The cluster
 *     time is the lowest reading of the lowest window of a quorum's clocks (own included) that
 *     agree within clock_tolerance: never ahead of real time, at most the tolerance and a
 *     round trip behind it, and a minority of clocks an hour fast or slow moves nothing.
 *     Without agreement the primary accepts no entries. Expirations wait vsr_clock_error_ms
 *     past their deadline, so a reserve stamped behind real time still never expires early.
 *   - Reads (read index). A read waits for a round of commit heartbeats a quorum answered in
 *     this view, begun after the read arrived; it is then served at index max(commit point at
 *     its arrival, op head at the start of the view), once applied that far.
 *   - Messages from another cluster, an unknown replica or a lower view are dropped and counted
 *     (repair answers excepted: an intact entry whose crc we asked for is taken from any view).
 *
 *   - Recovery (a replica that lost its disk, formatted again as recovering: `recover`). It
 *     may have acked entries and voted before, and remembers none of it, so until it has caught
 *     up it neither votes, acks, answers read rounds nor starts a view. It learns the views of
 *     a quorum of other replicas from pongs to pings it sent since it started (a quorum of the
 *     others meets every quorum it may have been part of), asks the primary of the highest for
 *     its log (request_start_view), adopts it from a view at least that high, and repairs or
 *     takes an image up to that log's head. Then it makes its view, log_view and the end of
 *     recovery durable at once and is an ordinary backup.
 *
 *   - Uncommitted entries (protocol-aware recovery). Before it starts a view, the new primary
 *     cuts the canonical log below the first uncommitted entry that n - quorum + 1 senders of
 *     do_view_change lack (head below it, or another entry there): no quorum ever acked it. It
 *     waits for more do_view_changes while an uncommitted entry has no sender that may hold it
 *     (one whose only copy is damaged: a do_view_change names the uncommitted entries its
 *     sender's WAL cannot read, and that sender neither supplies nor lacks them).
 */
#ifndef ADB_REPLICA_VSR_H
#define ADB_REPLICA_VSR_H

#include "common/types.h"
#include "replica/vsr_message.h"

#define VSR_JOURNAL 1024 /* entry headers the core remembers (a ring by LSN) */
#define VSR_PIPELINE_MAX 256
#define VSR_REORDER 64 /* prepares held that arrived ahead of the next one */

enum vsr_status {
    VSR_NORMAL = 0,
    VSR_VIEW_CHANGE = 1,
};

const char *vsr_status_name(enum vsr_status s);

struct vsr_config {
    u128 cluster_id;
    u8 replica, replica_count;
    u32 pipeline_max;          /* entries beyond the commit point, 1..VSR_PIPELINE_MAX */
    u64 heartbeat_ns;          /* primary: a commit heartbeat at least this often */
    u64 ping_ns;               /* clock samples and liveness, to every replica */
    u64 primary_timeout_ns;    /* backup: silence from the primary before voting */
    u64 view_change_timeout_ns; /* a view change that has not finished: try the next view */
    u64 repair_ns;             /* between repair requests and prepare retransmissions */
    u64 clock_window_ns;       /* a clock sample counts this long */
    u64 clock_tolerance_ns;    /* a quorum's clocks must agree this closely */
    u64 lag_max;               /* entries a backup may lag that pruning still waits for */
    u64 seed;                  /* timeout jitter (deterministic) */
};

/* What must be durable before a message that depends on it leaves: the view this replica is in
 * (which is its vote: it sends do_view_change only for its current view) and its last normal
 * view. */
struct vsr_durable {
    u64 view;
    u64 log_view;
    bool recovering; /* formatted after a disk loss and not yet caught up (only ever cleared) */
};

/* The time of an event: the monotonic clock (ns) and this replica's clock (logical ms). */
struct vsr_time {
    u64 mono_ns;
    u64 clock_ms;
};

/* A snapshot image (replica/vsr_message.h, request_snapshot): the state after entry lsn. */
struct vsr_image {
    u64 lsn;
    u64 size; /* bytes */
    u32 crc;  /* CRC32C of all of them */
};

struct vsr_env {
    void *ctx;
    /* Queue a message to replica `to`; delivery is not assured. */
    void (*send)(void *ctx, u8 to, const u8 *msg, u32 len);
    /* Make d durable (synchronous). 0, or a negative errno: the core then does not act on it. */
    int (*persist)(void *ctx, const struct vsr_durable *d);
    /* Append one frame to the WAL after the last (it follows the chain: the core checked).
     * Durable once vsr_on_durable says so. 0 or a negative errno. */
    int (*append)(void *ctx, const u8 *frame, u32 len);
    /* Remove every frame after after_lsn (> any commit point), durably. 0 or a negative errno. */
    int (*truncate)(void *ctx, u64 after_lsn);
    /* Read frame lsn intact into buf: 0, -ENOENT (not held), -EUCLEAN (damaged) or an errno. */
    int (*read)(void *ctx, u64 lsn, u8 *buf, u32 cap, u32 *len);
    /* Entries up to commit may be applied. */
    void (*commit)(void *ctx, u64 commit);
    /* State transfer, serving: bytes [offset, offset + cap) of this replica's newest image into
     * buf, *len of them (0 past its end), and which image: 0, -ENOENT (none) or an errno. */
    int (*image_read)(void *ctx, u64 offset, u8 *buf, u32 cap, u32 *len, struct vsr_image *img);
    /* Receiving: keep bytes [offset, offset + len) of img (offset 0 begins it). 0 or an errno. */
    int (*image_write)(void *ctx, const struct vsr_image *img, u64 offset, const u8 *bytes, u32 len);
    /* All of img was written: check it (size, crc, contents), make its state this replica's
     * durably and restart the WAL empty after img->lsn, chained to the entry header the image
     * starts with (*at, OUT). 0, or an errno: nothing changed, the image is dropped. */
    int (*image_install)(void *ctx, const struct vsr_image *img, struct vsr_entry_header *at);
};

struct vsr_counters {
    u64 dropped_decode, dropped_cluster, dropped_replica, dropped_view, dropped_status;
    u64 view_changes;       /* views entered */
    u64 prepares_sent, prepares_resent, prepare_oks;
    u64 prepare_messages; /* messages that carried the prepares sent */
    u64 repairs_requested, repairs_served, repairs_unreadable, repairs_appended;
    u64 truncations, truncated_entries;
    u64 nack_truncations; /* canonical logs cut where a quorum lacked an uncommitted entry */
    u64 persist_failures, append_failures;
    u64 read_rounds;
    u64 clock_unsynced_refusals;
    u64 transfers_started, transfers_installed, transfers_abandoned, transfer_failures;
    u64 recoveries; /* recoveries completed */
    u64 chunks_served, chunks_received;
};

/* An image being received. */
struct vsr_transfer {
    bool active;
    u8 from;
    struct vsr_image img; /* lsn 0: not known yet (the first chunk says) */
    u64 offset;           /* bytes received */
    u64 progress_ns;      /* the last chunk taken (or the start) */
};

/* A prepare that arrived ahead of the WAL's next LSN (lsn 0: an empty slot). */
struct vsr_ahead {
    u64 lsn;
    u64 view; /* of the message that carried it */
    u32 len;
    u8 bytes[WAL_FRAME_MAX];
};

/* One replica's DVC as the new primary keeps it. */
struct vsr_dvc {
    bool have;
    u64 log_view, op, commit;
    u64 unreadable, unreadable_above; /* uncommitted entries it cannot read back (message b, c) */
    u32 count;
    struct vsr_entry_header headers[VSR_HEADERS_MAX];
};

struct vsr {
    struct vsr_config cfg;
    struct vsr_env env;
    u8 quorum;
    enum vsr_status status;
    u64 view, log_view;
    u64 op;         /* the log's head as known (headers) */
    u64 wal_head;   /* last LSN in the WAL (frames contiguous up to it) */
    u32 wal_head_crc;
    u64 durable;    /* last LSN durable in the WAL */
    u64 verified;   /* the WAL up to it is known to be the canonical log of this view */
    u64 commit;     /* published commit point */
    u64 commit_max; /* highest commit point heard */
    u64 view_start_op; /* op head when this view started (read index floor) */
    u64 max_entry_view; /* the highest view of an entry loaded at start */
    u64 view_started;  /* views up to it are never started (again) by this replica */
    struct vsr_entry_header journal[VSR_JOURNAL];
    u8 acks[VSR_JOURNAL]; /* primary: replicas (bit) with the entry durable, this view */

    /* view change */
    u64 svc_view;   /* the view votes are collected for */
    u8 svc_from;    /* bitmask */
    bool voted;     /* this replica asked to leave its view (and has not seen it recover) */
    u64 higher_view; /* the highest view a replica was seen in */
    struct vsr_dvc dvc[VSR_REPLICAS_MAX];
    u64 nonce;      /* request_start_view */

    /* timers (mono ns) */
    u64 now_ns, clock_ms;
    u64 primary_seen_ns, vc_started_ns, last_heartbeat_ns, last_ping_ns, last_repair_ns;
    u64 progress_commit, progress_ns; /* the commit points, and since when they have not moved */
    u64 head_seen, verified_seen, head_moved_ns; /* repair: since when the log has not grown */
    u64 repair_mark, verify_mark; /* head and verified point when repair last asked: half a
                                   * window on (either), it asks again */
    u64 timeout_jitter_ns;
    u64 rng;

    /* cluster clock: per replica, its clock and when we heard it */
    u64 peer_clock_ms[VSR_REPLICAS_MAX];
    u64 peer_seen_ns[VSR_REPLICAS_MAX];
    u64 peer_ping_ns[VSR_REPLICAS_MAX]; /* the ping the last accepted pong answered */
    bool peer_clock_valid[VSR_REPLICAS_MAX];

    /* read index */
    u64 round_sent, round_confirmed, round_wanted;
    u64 round_floor; /* tickets at or below it belong to an earlier view: failed */
    u8 round_acks;

    /* State transfer: this replica's image and WAL reach, its peers' (from pings), and an image
     * being received. */
    u64 image_lsn, wal_first;
    u64 peer_op[VSR_REPLICAS_MAX]; /* the last LSN its WAL holds */
    u64 peer_image_lsn[VSR_REPLICAS_MAX], peer_wal_first[VSR_REPLICAS_MAX];
    u64 peer_pinged_ns[VSR_REPLICAS_MAX]; /* when its last ping arrived (0: never) */
    struct vsr_transfer transfer;

    /* Recovery: the views a quorum of others answered pings sent since the start with. */
    bool recovering;
    u8 recovery_from;     /* bitmask */
    u64 recovery_view;    /* the highest of them */
    u64 recovery_target;  /* the op head of the log adopted: caught up there */
    bool recovery_adopted; /* a log was adopted (its head may be 0) */
    u64 started_ns;

    /* Prepares that arrived ahead of the WAL's next LSN (a ring by LSN; lsn 0: empty). */
    struct vsr_ahead ahead[VSR_REORDER];

    struct vsr_counters count;
    u8 msg[VSR_MESSAGE_MAX]; /* encode buffer */
    u8 frame_buf[WAL_FRAME_MAX];
    u8 chunk_buf[VSR_CHUNK_MAX];
    /* Frames sequenced and not yet shipped (vsr_on_sequenced, vsr_flush). */
    u8 out_frames[VSR_BODY_MAX];
    u32 out_len, out_count;
    u64 out_last, out_view;
};

/* What a replica found on its disk when it (re)starts. The log's last headers follow through
 * vsr_load_entry, ascending, ending at wal_head. */
struct vsr_start {
    struct vsr_durable durable;
    u64 commit;   /* the metadata's commit point (a lower bound) */
    u64 wal_head; /* last LSN in the WAL, all of it durable */
    bool fresh;   /* just formatted, never run: view 0's primary may serve at once */
    u64 image_lsn; /* its newest snapshot image (0: none) */
    u64 wal_first; /* the first LSN its WAL holds (an empty WAL: wal_head + 1) */
};

/* Initialization: vsr_init, vsr_load_entry for the WAL's last entries (or, for a WAL that
 * holds none after a state transfer, the header of the entry it restarted after), then
 * vsr_start. */
void vsr_init(struct vsr *v, const struct vsr_config *cfg, const struct vsr_env *env);
void vsr_load_entry(struct vsr *v, const struct vsr_entry_header *h);
void vsr_start(struct vsr *v, const struct vsr_start *s, struct vsr_time t);

/* ---- events ------------------------------------------------------------------------------ */

void vsr_tick(struct vsr *v, struct vsr_time t);
void vsr_on_message(struct vsr *v, struct vsr_time t, const u8 *bytes, u32 len);
/* The WAL is durable up to lsn (an fsync completed). */
void vsr_on_durable(struct vsr *v, struct vsr_time t, u64 lsn);

/* A checkpoint: this replica's newest image is now at image_lsn and its WAL starts at
 * wal_first (pruned below it). */
void vsr_on_checkpoint(struct vsr *v, u64 image_lsn, u64 wal_first);
/* How far back a checkpoint may prune: the first entry a replica heard from lately still
 * lacks, unless it lags more than lag_max behind this one's WAL (then it takes an image), or
 * UINT64_MAX. Pruning waits for a slow backup this way instead of pushing it to a state
 * transfer; the lag is bounded, and so is the WAL. */
u64 vsr_prune_floor(const struct vsr *v);
/* The first entry any other replica lacks as far as its last ping said, heard from lately or
 * not (1 while one has never been heard from): for a replica that cannot serve images, a
 * checkpoint prunes no further, so every replica, even one that is down, can still repair. */
u64 vsr_prune_floor_all(const struct vsr *v);

/* Primary: how many new entries may be sequenced now (0: none — not primary, not normal,
 * repairing, pipeline full, or no cluster time). */
u32 vsr_prepare_room(struct vsr *v, struct vsr_time t);
/* Primary: the sequencer appended this frame (LSN op + 1) to the WAL; it is shipped by the next
 * vsr_flush (or now, with those before it, when they fill a message). */
void vsr_on_sequenced(struct vsr *v, struct vsr_time t, const u8 *frame, u32 len);
/* Ships what was sequenced since the last flush, in as few messages as fit (prepares): the
 * shell calls it once a step, after sequencing. */
void vsr_flush(struct vsr *v, struct vsr_time t);
/* The cluster time in ms (DESIGN.md §3): false when no quorum's clocks agree. */
bool vsr_cluster_clock(const struct vsr *v, struct vsr_time t, u64 *ms);
/* How far behind real time the cluster time may be (ms; 0 for a single replica). A primary
 * proposes an expiration only once the cluster time is that far past its deadline slot's end:
 * the reserve may have been stamped that far behind, and expiry must never be early. */
u64 vsr_clock_error_ms(const struct vsr *v);

/* Primary reads: a ticket, and the index to apply through, or false (not a serving primary). */
bool vsr_read_begin(struct vsr *v, struct vsr_time t, u64 *ticket, u64 *index);
/* True once the ticket's round was confirmed by a quorum in the same view. */
bool vsr_read_ready(const struct vsr *v, u64 ticket);
/* True if the view changed since the ticket was taken: answer the read not_primary. */
bool vsr_read_failed(const struct vsr *v, u64 ticket);

static inline u8 vsr_primary_of(const struct vsr *v, u64 view)
{
    return (u8)(view % v->cfg.replica_count);
}
static inline bool vsr_is_primary(const struct vsr *v)
{
    return vsr_primary_of(v, v->view) == v->cfg.replica;
}
/* Serving primary: normal status in its own view. */
static inline bool vsr_serving(const struct vsr *v)
{
    return v->status == VSR_NORMAL && vsr_is_primary(v);
}

#endif
