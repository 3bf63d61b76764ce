/*
 * wal/sequencer.c — the sequencer worker: the only writer of the WAL and of the shared log. A
 * shell: what to take, stamp, refuse, republish and maintain is decided by wal/sequencing.h.
 *
 * Loop: take everything pending (due expirations from the applier first, then client writes),
 * stamp each with the next LSN and the slot of the node's timeline (wal/slot_clock.h: the boot
 * clock within a boot, never the wall clock's steps, never below the last slot), append
 * the frames, fdatasync once for the whole batch (group commit), publish durable_lsn, then put
 * the frames with their request tags in the shared log for the applier. Nothing is published
 * before it is durable, so everything in the shared log is on disk.
 *
 * Retries: a write whose operation id this sequencer already logged (same fingerprint, still
 * well inside the dedupe window, durable) is not logged again: it goes to the applier on the
 * retry ring, which answers with the stored result. The cache is only a shortcut: when the
 * applier does not find the record (table full, retired), the ingress sends the write again
 * with MSG_TAG_FORCE_LOG and it is logged; the state machine's dedupe stays the authority.
 *
 * Restart: the WAL is reopened (a torn tail repaired); frames that are durable but were never
 * put in the shared log (a crash between fsync and publish) are published now, untagged — their
 * requests were answered as indefinite by the ingress when it saw this role restart. An LSN is
 * never reused: the log continues after the last durable frame.
 *
 * Storage errors: a failed write or fsync halts the log; every unacknowledged write of the batch
 * is answered indefinite (storage_failure) and the worker exits with WORKER_EXIT_FATAL, which
 * stops the daemon: after a failed fsync the page cache cannot be trusted (restart and recover).
 *
 * A full disk is not a storage failure: segments are preallocated, so what cannot happen is
 * growth — the spare segment, the next segment, a metadata page. Then every write that needs a
 * new frame is refused with the definite no_space (nothing was logged), retries are still
 * answered from the cache, the applier keeps serving reads, /health says so, and the sequencer
 * tries again every SEQ_SPACE_RETRY_MS; writes flow again once space returns.
 *
 * NOTES
 *   Memory: the batch stash and the retry cache are allocated at start from the config.
 *   The replica metadata (LMDB) is opened here, after fork; its commit point and the clock
 *   anchor are advanced about once a second (the commit point is a lower bound, checked against
 *   the WAL at start; the anchor is where the next start resumes the slot timeline). A failed
 *   commit-point write is fatal (a correctness rule depends on it); a failed snapshot-anchor
 *   write is counted, shown in /health and retried with backoff on a reopened handle.
 *
 *   Shared-memory corruption (a ring entry failing its checks) is not disk corruption: the
 *   worker exits WORKER_EXIT_RESTART and the supervisor restarts the whole daemon through its
 *   service manager; the disk is the authority it recovers from.
 */
#include "config.h"

#include "common/assert.h"
#include "common/table_memory.h"
#include "net/proto.h"
#include "replica/meta.h"
#include "replica/retry_cache.h"
#include "replica/snapshot.h"
#include "supervisor/log.h"
#include "supervisor/worker.h"
#include "wal/command.h"
#include "wal/io.h"
#include "wal/log.h"
#include "wal/sequencing.h"
#include "wal/slot_clock.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SEQ_BATCH_MAX 16384 /* entries per fsync at most */
#define SEQ_META_INTERVAL_MS 1000
#define SEQ_META_IDLE_MS 60000     /* the clock anchor is refreshed at least this often */
#define SEQ_META_BACKOFF_MAX_MS 30000
#define SEQ_SPACE_RETRY_MS 1000    /* a full disk: how often growth is tried again */
ADB_STATIC_ASSERT(PROTO_REJECT_MAX < 8, "seg_sequencer.rejected holds every reject code");
#define SEQ_SPARE_SLICE (1u << 20) /* next segment prepared 1 MiB per loop: a few ms, never 100 */

/* ---- the worker ------------------------------------------------------------------------ */

u64 sequencer_memory(const struct config *cfg)
{
    u64 cap = cfg->operation_capacity;
    return retry_cache_bytes((u32)cap) + (u64)SEQ_BATCH_MAX * sizeof(struct shlog_entry);
}

struct seq {
    const struct worker_ctx *w;
    struct segment *seg;
    struct wal_log wal;
    struct meta *meta;
    struct retry_cache cache; /* replica/retry_cache.h */
    struct sequencing core;   /* every decision (wal/sequencing.h) */
    struct shlog_entry *stash; /* frames of the current batch, published after the fsync */
    u32 stash_count;
    bool notify_reject, notify_retry;
};

static void reply(struct seq *q, const struct msg_tag *tag, u8 outcome, u8 code)
{
    if ((tag->flags & MSG_TAG_VALID) == 0)
        return;
    struct msg_result *r;
    while ((r = ring_claim(q->seg->reject)) == NULL) { /* the ingress drains it; wait */
        worker_heartbeat(q->w);
        struct timespec ts = { 0, 200000 };
        nanosleep(&ts, NULL);
    }
    memset(r, 0, sizeof(*r));
    r->tag = *tag;
    r->type = MSG_RESULT_WRITE;
    r->outcome = outcome;
    r->code = code;
    ring_publish_quiet(q->seg->reject, sizeof(*r));
    q->notify_reject = true;
}

static int replay_frame(void *ctx, const struct wal_frame *f, const struct sm_command *cmd)
{
    struct seq *q = ctx;
    if (!sequencing_replayed(&q->core, cmd, f->lsn, f->request_slot))
        return 0;
    /* Durable but never published (crashed between fsync and publish): publish it untagged. */
    struct shlog_entry *e;
    while ((e = ring_claim(q->seg->shlog)) == NULL) {
        worker_heartbeat(q->w);
        struct timespec ts = { 0, 1000000 };
        nanosleep(&ts, NULL);
    }
    memset(&e->tag, 0, sizeof(e->tag));
    u8 payload[WAL_CMD_SIZE_MAX];
    struct wal_frame g = *f;
    g.payload_len = wal_cmd_encode(payload, sizeof(payload), cmd);
    g.payload = payload;
    e->frame_len = wal_frame_encode(e->frame, sizeof(e->frame), &g);
    ring_publish(q->seg->shlog, sizeof(*e));
    atomic_store_explicit(&q->seg->seq->published_lsn, f->lsn, memory_order_release);
    return 0;
}

/* A failed write or fsync: answer everything unacknowledged and stop the daemon. */
static int storage_failed(struct seq *q, int rc)
{
    atomic_store(&q->seg->seq->halted, 1);
    log_error("storage_failure", "errno=%d reason=\"%s\" unacknowledged=%u action=halt", -rc,
              q->wal.halt_reason[0] ? q->wal.halt_reason : strerror(-rc), q->stash_count);
    for (u32 i = 0; i < q->stash_count; i++)
        reply(q, &q->stash[i].tag, PROTO_INDEFINITE, PROTO_INDEFINITE_STORAGE_FAILURE);
    ring_notify(q->seg->reject);
    return WORKER_EXIT_FATAL;
}

static u64 now_slot(struct seq *q)
{
    return sequencing_slot(&q->core, boot_ms()); /* never backwards, also across restarts */
}

/* Appends one command; false on a storage error (the log is halted). */
static bool append(struct seq *q, const struct msg_tag *tag, const struct sm_command *cmd, u64 slot,
                   bool known_absent, int *rc)
{
    u64 lsn;
    *rc = wal_log_append(&q->wal, slot, 0, cmd, &lsn);
    if (*rc != 0)
        return false;
    sequencing_appended(&q->core, cmd, lsn, slot, known_absent);
    struct shlog_entry *e = &q->stash[q->stash_count++];
    e->tag = *tag;
    const u8 *frame = wal_log_last_frame(&q->wal, &e->frame_len);
    memcpy(e->frame, frame, e->frame_len);
    atomic_store_explicit(&q->seg->seq->sequenced_lsn, lsn, memory_order_relaxed);
    return true;
}

/* Out of space in one part (full) or room again: what the log, /health and the metrics show. */
static void set_no_space(struct seq *q, enum sequencing_space part, bool full, int rc)
{
    static const char *const names[] = { "next_segment", "metadata", "spare_segment" };
    enum sequencing_space_change ch = sequencing_space(&q->core, part, full, mono_ms());
    const char *refused = sequencing_writes_refused(&q->core) ? "yes" : "no";
    if (ch == SEQUENCING_SPACE_FULL)
        log_warn("no_space", "what=%s errno=%d writes_refused=%s retry_ms=%d", names[part], -rc, refused,
                 SEQ_SPACE_RETRY_MS);
    else if (ch == SEQUENCING_SPACE_RETURNED)
        log_always_info("space_returned", "what=%s writes_refused=%s", names[part], refused);
    atomic_store_explicit(&q->seg->seq->no_space, sequencing_space_level(&q->core), memory_order_relaxed);
}

static void refuse_no_space(struct seq *q, const struct msg_tag *tag)
{
    reply(q, tag, PROTO_REJECTED, PROTO_REJECT_NO_SPACE);
    atomic_fetch_add_explicit(&q->seg->seq->rejected[PROTO_REJECT_NO_SPACE], 1, memory_order_relaxed);
}

/* One client write: a retry answered without a frame, a rejection, or a new frame. */
static bool take_write(struct seq *q, const struct msg_write *m, u64 slot, int *rc)
{
    struct seg_sequencer *c = q->seg->seq;
    bool force = (m->tag.flags & MSG_TAG_FORCE_LOG) != 0;
    struct sequencing_write d = sequencing_take_write(&q->core, &m->cmd, force, slot, wal_log_next_lsn(&q->wal),
                                                      q->wal.durable_lsn, mono_ms());
    if (d.action == SEQUENCING_ANSWER_RETRY) {
        struct msg_retry *r;
        if ((r = ring_claim(q->seg->retry)) != NULL) {
            r->tag = m->tag;
            r->cmd = m->cmd;
            r->lsn = d.retry_lsn;
            ring_publish_quiet(q->seg->retry, sizeof(*r));
            q->notify_retry = true;
            atomic_fetch_add_explicit(&c->retries_answered, 1, memory_order_relaxed);
            return true;
        }
        /* retry ring full: log it; the state machine answers from its record */
        d = sequencing_take_write(&q->core, &m->cmd, true, slot, wal_log_next_lsn(&q->wal), q->wal.durable_lsn,
                                  mono_ms());
    }
    if (d.action == SEQUENCING_REJECT_EXHAUSTED) {
        reply(q, &m->tag, PROTO_REJECTED, PROTO_REJECT_LSN_EXHAUSTED);
        atomic_fetch_add_explicit(&c->rejected[PROTO_REJECT_LSN_EXHAUSTED], 1, memory_order_relaxed);
        return true;
    }
    if (d.action == SEQUENCING_REFUSE_NO_SPACE) {
        refuse_no_space(q, &m->tag);
        return true;
    }
    if (!append(q, &m->tag, &m->cmd, slot, d.known_absent, rc)) {
        if (!wal_log_no_space(*rc))
            return false;
        set_no_space(q, SEQUENCING_SEGMENT, true, *rc);
        refuse_no_space(q, &m->tag);
        *rc = 0;
        return true;
    }
    if (q->core.no_space[SEQUENCING_SEGMENT])
        set_no_space(q, SEQUENCING_SEGMENT, false, 0);
    atomic_fetch_add_explicit(&c->writes, 1, memory_order_relaxed);
    return true;
}

/* LMDB refuses a handle whose commit failed: a fresh one (NULL if it cannot be had; maintenance
 * tries again). */
static void meta_reopen(struct seq *q)
{
    char why[512] = "";
    meta_close(q->meta);
    if (meta_open(q->w->cfg->data_dir, false, &q->meta, why, sizeof(why)) != 0) {
        q->meta = NULL;
        log_warn("meta_reopen_failed", "reason=\"%s\"", why);
    }
}

/* The commit point and the clock anchor, in one metadata transaction. */
static int meta_commit_now(struct seq *q, u64 durable)
{
    struct clock_reading r = clock_read();
    struct clock_anchor a = slot_clock_anchor(&q->core.clock, &r);
    struct meta_clock mc = { .logical_ms = a.logical_ms, .wall_ms = a.wall_ms, .boot_ms = a.boot_ms,
                             .boot_id = a.boot_id };
    char why[512] = "";
    int rc = meta_advance(q->meta, durable, &mc, why, sizeof(why));
    if (wal_log_no_space(rc)) {
        /* A full disk, not a failing one: refuse writes until the point can be recorded
         * (a commit point that lags is still a true lower bound), on a reopened handle. */
        atomic_fetch_add_explicit(&q->seg->seq->meta_failures, 1, memory_order_relaxed);
        set_no_space(q, SEQUENCING_META, true, rc);
        meta_reopen(q);
        return 0;
    }
    if (rc != 0) {
        /* The commit point is what a restart checks the WAL against: never run on without it. */
        atomic_fetch_add_explicit(&q->seg->seq->meta_failures, 1, memory_order_relaxed);
        atomic_store_explicit(&q->seg->seq->meta_failing, 1, memory_order_relaxed);
        log_error("meta_commit_failed", "errno=%d reason=\"%s\" action=stop_daemon", -rc, why);
        return WORKER_EXIT_FATAL;
    }
    sequencing_committed(&q->core, durable);
    set_no_space(q, SEQUENCING_META, false, 0);
    return 0;
}

/* A failed snapshot-anchor write: counted, shown in /health, retried with a doubling backoff on
 * a reopened handle (LMDB refuses a handle whose commit failed). */
static void meta_snapshot_failed(struct seq *q, u64 now, const char *why)
{
    struct seg_sequencer *c = q->seg->seq;
    atomic_fetch_add_explicit(&c->meta_failures, 1, memory_order_relaxed);
    atomic_store_explicit(&c->meta_failing, 1, memory_order_relaxed);
    u64 wait = sequencing_meta_failed(&q->core, now);
    log_warn("meta_snapshot_failed", "reason=\"%s\" retry_in_ms=%" PRIu64, why, wait);
    if (q->meta != NULL)
        meta_reopen(q);
}

static int maintenance(struct seq *q)
{
    u64 durable = q->wal.durable_lsn;
    u64 now = mono_ms();
    if (q->meta == NULL && sequencing_meta_open_due(&q->core, now)) {
        char why[512] = "";
        if (meta_open(q->w->cfg->data_dir, false, &q->meta, why, sizeof(why)) != 0) {
            q->meta = NULL;
            meta_snapshot_failed(q, now, why);
        }
    }
    if (q->meta == NULL)
        return 0;
    u64 point;
    if (sequencing_commit_due(&q->core, now, durable, &point)) {
        int rc = meta_commit_now(q, point);
        if (rc != 0)
            return rc;
    }
    /* The snapshot anchor follows the applier's newest durable snapshot (never past the commit
     * point, which the metadata's invariants require). */
    u64 snap = atomic_load_explicit(&q->seg->app->snapshot_lsn, memory_order_acquire);
    if (sequencing_anchor_due(&q->core, now, snap)) {
        char why[512] = "";
        if (meta_set_snapshot(q->meta, snap, why, sizeof(why)) == 0) {
            sequencing_anchored(&q->core, snap);
            atomic_store_explicit(&q->seg->seq->meta_failing, 0, memory_order_relaxed);
        } else {
            meta_snapshot_failed(q, now, why);
        }
    }
    u64 prune = atomic_load_explicit(&q->seg->app->prune_below_lsn, memory_order_acquire);
    if (sequencing_prune_due(&q->core, prune)) {
        u32 removed = 0;
        int rc = wal_log_prune(&q->wal, prune, &removed);
        if (rc == 0) {
            sequencing_pruned(&q->core, prune);
            if (removed > 0) {
                atomic_fetch_add_explicit(&q->seg->seq->wal_segments_removed, removed, memory_order_relaxed);
                log_info("wal_pruned", "below_lsn=%" PRIu64 " segments_removed=%u", prune, removed);
            }
        }
    }
    return 0;
}

/* Makes the batch durable and hands it to the applier. Returns 0 or a worker exit code. */
static int commit_batch(struct seq *q)
{
    struct seg_sequencer *c = q->seg->seq;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    int rc = wal_log_commit(&q->wal);
    if (rc != 0)
        return storage_failed(q, rc);
    clock_gettime(CLOCK_MONOTONIC, &b);
    /* Signed first: tv_nsec of the end is below the start's whenever a second boundary passed
     * (unsigned, that case recorded a duration of about 2^64 / 1000 us). */
    i64 ns = (i64)(b.tv_sec - a.tv_sec) * 1000000000 + (i64)(b.tv_nsec - a.tv_nsec);
    u64 us = ns > 0 ? (u64)ns / 1000u : 0;
    seg_histogram_add(&c->fsync_us, us);
    seg_histogram_add(&c->batch, q->stash_count);
    atomic_fetch_add_explicit(&c->fsyncs, 1, memory_order_relaxed);
    atomic_store_explicit(&c->last_slot, q->wal.cur.last_slot, memory_order_relaxed);
    atomic_store_explicit(&c->durable_lsn, q->wal.durable_lsn, memory_order_release);
    /* Room was reserved before the batch was taken: the claims cannot fail. */
    for (u32 i = 0; i < q->stash_count; i++) {
        struct shlog_entry *e = ring_claim(q->seg->shlog);
        ADB_ASSERT(e != NULL);
        memcpy(e, &q->stash[i], offsetof(struct shlog_entry, frame) + q->stash[i].frame_len);
        ring_publish_quiet(q->seg->shlog, sizeof(*e));
    }
    atomic_store_explicit(&c->published_lsn, q->wal.durable_lsn, memory_order_release);
    ring_notify(q->seg->shlog);
    q->stash_count = 0;
    return 0;
}

static int newest_snapshot(void *ctx, const char *name)
{
    u64 lsn, *newest = ctx;
    if (snapshot_parse_name(name, &lsn) && lsn > *newest)
        *newest = lsn;
    return 0;
}

static int open_all(struct seq *q)
{
    const struct config *cfg = q->w->cfg;
    u64 t0 = mono_ms();
    char why[512];
    struct meta_record rec;
    int rc = meta_open(cfg->data_dir, false, &q->meta, why, sizeof(why));
    if (rc == 0)
        rc = meta_read(q->meta, &rec, why, sizeof(why));
    if (rc != 0) {
        log_error("meta_unreadable", "reason=\"%s\"", why);
        return WORKER_EXIT_META;
    }
    if (rec.status == META_STATUS_FAULTED) {
        log_error("replica_faulted", "reason=\"the replica metadata says faulted; an operator must repair it\"");
        return WORKER_EXIT_META;
    }
    atomic_store(&q->seg->seq->cluster_id_lo, U128_LO(rec.cluster_id));
    atomic_store(&q->seg->seq->cluster_id_hi, U128_HI(rec.cluster_id));
    atomic_store(&q->seg->seq->replica_id, rec.replica_id);
    /* Only the WAL after the newest snapshot is read (the applier starts from a snapshot, and the
     * retry cache is only a shortcut): a restart costs the tail, not the whole log. */
    u64 snap = 0;
    (void)io_posix.ops->list_dir(&io_posix, cfg->data_dir, newest_snapshot, &snap);
    struct sequencing_restart seen = { .ever_ready = atomic_load(&q->seg->seq->ever_ready) != 0,
                                       .published_lsn = atomic_load(&q->seg->seq->published_lsn),
                                       .newest_snapshot_lsn = snap,
                                       .meta_commit_lsn = rec.commit_lsn,
                                       .meta_snapshot_lsn = rec.snapshot_lsn };
    struct sequencing_open plan;
    sequencing_plan_restart(&q->core, &seen, &plan);
    bool first_start = plan.first_start;
    struct wal_log_options opt = { .segment_bytes = cfg->wal_segment_bytes, .synced_lsn = plan.synced_lsn };
    struct wal_open_report rep;
    rc = wal_log_open(&q->wal, &io_posix, cfg->data_dir, &opt, plan.read_from_lsn, replay_frame, q, &rep, why,
                      sizeof(why));
    if (rc != 0) {
        log_error("wal_recovery_failed", "errno=%d reason=\"%s\"", -rc, why);
        return WORKER_EXIT_FATAL;
    }
    if (rep.torn)
        log_warn("wal_torn_tail", "file=%s offset=%" PRIu64 " bytes=%" PRIu64 " action=zeroed", rep.torn_file,
                 rep.torn_offset, rep.torn_bytes);
    if (rep.damaged > 0) /* entries the newest snapshot holds: kept for fallback and peers only */
        log_always_warn("wal_damage_below_snapshot",
                        "file=%s offset=%" PRIu64 " lsn=%" PRIu64 " regions=%u floor_lsn=%" PRIu64
                        " reason=\"%s\" action=continued (no fallback below LSN %" PRIu64 ")",
                        rep.damage_file, rep.damage_offset, rep.damage_lsn, rep.damaged, rep.damage_floor_lsn,
                        rep.damage_reason, rep.damage_floor_lsn);
    atomic_store(&q->seg->seq->recovery_damaged, rep.damaged);
    atomic_store(&q->seg->seq->recovery_damage_lsn, rep.damage_lsn);
    switch (sequencing_check_opened(&q->core, &plan, rep.last_lsn)) {
    case SEQUENCING_META_AHEAD_OF_WAL:
        log_error("meta_contradicts_wal",
                  "reason=\"the metadata's commit point %" PRIu64 " is beyond the WAL's last LSN %" PRIu64
                  " (acknowledged entries are missing)\"",
                  rec.commit_lsn, rep.last_lsn);
        return WORKER_EXIT_META;
    case SEQUENCING_WAL_BEHIND_SHARED_LOG:
        log_error("wal_behind_shared_log",
                  "reason=\"the WAL ends at LSN %" PRIu64 " but LSN %" PRIu64 " was published as durable\"",
                  rep.last_lsn, seen.published_lsn);
        return WORKER_EXIT_FATAL;
    case SEQUENCING_OPENED:
        break;
    }
    struct seg_sequencer *c = q->seg->seq;
    if (!first_start) {
        /* A restart within this daemon: the timeline the first sequencer decided goes on. */
        sequencing_join_clock(&q->core, atomic_load(&c->clock_logical0_ms), atomic_load(&c->clock_boot0_ms),
                              rep.last_slot);
    } else {
        struct clock_reading now = clock_read();
        struct clock_anchor saved = { .logical_ms = rec.clock.logical_ms, .wall_ms = rec.clock.wall_ms,
                                      .boot_ms = rec.clock.boot_ms, .boot_id = rec.clock.boot_id };
        sequencing_start_clock(&q->core, rep.last_slot, saved.logical_ms != 0 ? &saved : NULL, &now);
        const struct slot_clock *clk = &q->core.clock;
        atomic_store(&c->clock_logical0_ms, clk->logical0_ms);
        atomic_store(&c->clock_boot0_ms, clk->boot0_ms);
        atomic_store(&c->clock_basis, clk->basis);
        log_always_info("slot_clock", "basis=%s slot=%" PRIu64 " last_logged_slot=%" PRIu64
                        " anchor_age_ms=%" PRIu64,
                        slot_clock_basis_name(clk->basis), slot_clock_slot(clk, now.boot_ms), rep.last_slot,
                        saved.logical_ms != 0 && clk->logical0_ms > saved.logical_ms
                            ? clk->logical0_ms - saved.logical_ms : 0);
        /* Recorded at once, so a restart in this boot resumes this very timeline. */
        rc = meta_commit_now(q, rec.commit_lsn);
        if (rc != 0)
            return rc;
    }
    atomic_store(&c->sequenced_lsn, rep.last_lsn);
    atomic_store(&c->last_slot, rep.last_slot);
    atomic_store(&c->durable_lsn, rep.last_lsn);
    atomic_store(&c->published_lsn, rep.last_lsn);
    atomic_store(&c->halted, 0);
    atomic_store(&c->recovery_frames, rep.frames);
    atomic_store(&c->recovery_torn, rep.torn ? 1 : 0);
    atomic_store(&c->recovery_ms, mono_ms() - t0);
    log_always_info("wal_recovered", "segments=%u first_lsn=%" PRIu64 " last_lsn=%" PRIu64 " frames=%" PRIu64
             " torn=%s cached_operations=%u",
             rep.segments, rep.first_lsn, rep.last_lsn, rep.frames, rep.torn ? "yes" : "no", q->cache.count);
    return 0;
}

static int ring_corrupt(const char *which)
{
    log_error("ring_corrupt", "ring=%s action=restart_daemon", which);
    return WORKER_EXIT_RESTART;
}

int sequencer_main(const struct worker_ctx *w)
{
    if (!worker_enter(w))
        return WORKER_EXIT_CRASH;
    struct seq *q = calloc(1, sizeof(*q));
    struct sm_config smc;
    config_sm(w->cfg, &smc);
    void *cache_memory = q == NULL ? NULL
                       : table_memory_map(retry_cache_bytes(w->cfg->operation_capacity), w->cfg->prefault_memory);
    if (q == NULL || cache_memory == NULL || (q->stash = calloc(SEQ_BATCH_MAX, sizeof(*q->stash))) == NULL) {
        log_error("out_of_memory", "what=sequencer_tables");
        return WORKER_EXIT_CRASH;
    }
    retry_cache_init(&q->cache, cache_memory, w->cfg->operation_capacity, smc.dedupe_window_slots);
    struct sequencing_config sc = { .batch_max = SEQ_BATCH_MAX, .slot_ms = w->cfg->slot_duration_ms,
                                    .meta_interval_ms = SEQ_META_INTERVAL_MS, .meta_idle_ms = SEQ_META_IDLE_MS,
                                    .meta_backoff_max_ms = SEQ_META_BACKOFF_MAX_MS,
                                    .space_retry_ms = SEQ_SPACE_RETRY_MS };
    sequencing_init(&q->core, &sc, &q->cache);
    q->w = w;
    q->seg = w->seg;
    int rc = open_all(q);
    if (rc != 0)
        return rc;
    atomic_store(&w->seg->seq->ever_ready, 1);
    worker_set_ready(w);

    struct segment *seg = w->seg;
    u64 shlog_cap = ring_capacity(seg->shlog);
    while (!worker_should_stop(w)) {
        worker_heartbeat(w);
        u32 limit = sequencing_batch_limit(&q->core, shlog_cap - ring_depth(seg->shlog));
        if (limit == 0) { /* the applier is behind: backpressure, never overwrite */
            struct timespec ts = { 0, 200000 };
            nanosleep(&ts, NULL);
            continue;
        }
        bool storage_ok = true;
        const void *p;
        u32 len;
        enum ring_status st = RING_OK;
        while (storage_ok && q->stash_count < limit && (st = ring_peek(seg->expire, &p, &len)) == RING_OK) {
            const struct msg_expire *m = p;
            struct sm_command cmd = { .kind = SM_CMD_EXPIRE, .reservation_id = m->reservation_id,
                                      .deadline_slot = m->deadline_slot };
            struct msg_tag none = { 0 };
            bool refused = !sequencing_take_expire(&q->core);
            storage_ok = refused || append(q, &none, &cmd, now_slot(q), false, &rc);
            ring_release(seg->expire);
            if (!storage_ok && wal_log_no_space(rc)) {
                /* Not logged: the applier proposes it again after its hold. Late, never early. */
                set_no_space(q, SEQUENCING_SEGMENT, true, rc);
                storage_ok = true;
            } else if (storage_ok && !refused) {
                atomic_fetch_add_explicit(&seg->seq->expires_logged, 1, memory_order_relaxed);
            }
        }
        if (st == RING_CORRUPT)
            return ring_corrupt("expire");
        while (storage_ok && q->stash_count < limit && (st = ring_peek(seg->write, &p, &len)) == RING_OK) {
            struct msg_write m;
            memcpy(&m, p, sizeof(m));
            ring_release(seg->write);
            /* The slot is read after the write was taken, never before: a write that arrived
             * while earlier ones were appended (a segment roll can sync for milliseconds) would
             * otherwise count its TTL from a slot that had ended before its client sent it —
             * an early expiry (found by tests/crash_load's stamp check). */
            storage_ok = take_write(q, &m, now_slot(q), &rc);
            if (!storage_ok)
                reply(q, &m.tag, PROTO_INDEFINITE, PROTO_INDEFINITE_STORAGE_FAILURE);
        }
        if (st == RING_CORRUPT)
            return ring_corrupt("write");
        if (!storage_ok)
            return storage_failed(q, rc);
        if (q->notify_retry) {
            ring_notify(seg->retry);
            q->notify_retry = false;
        }
        if (q->stash_count > 0) {
            rc = commit_batch(q);
            if (rc != 0)
                return rc;
        }
        if (q->notify_reject) {
            ring_notify(seg->reject);
            q->notify_reject = false;
        }
        if (sequencing_prepare_due(&q->core, mono_ms())) {
            rc = wal_log_prepare(&q->wal, SEQ_SPARE_SLICE);
            if (wal_log_no_space(rc)) {
                set_no_space(q, SEQUENCING_SPARE, true, rc);
            } else if (rc != 0) {
                return storage_failed(q, rc);
            } else {
                set_no_space(q, SEQUENCING_SPARE, false, 0);
                if (q->wal.spare_ready) /* the next roll takes the spare: it cannot fail for space */
                    set_no_space(q, SEQUENCING_SEGMENT, false, 0);
            }
        }
        rc = maintenance(q);
        if (rc != 0)
            return rc;
        if (ring_has(seg->write, 0) || ring_has(seg->expire, 0))
            continue;
        doorbell_arm(seg->bell_sequencer);
        if (ring_has(seg->write, 0) || ring_has(seg->expire, 0)) {
            doorbell_disarm(seg->bell_sequencer);
            continue;
        }
        doorbell_sleep(seg->bell_sequencer, WORKER_HEARTBEAT_MS);
    }
    /* Stopping: everything taken was committed in its iteration. */
    if (q->meta != NULL) {
        char why[256];
        if (q->wal.durable_lsn > q->core.meta_commit && meta_advance_commit(q->meta, q->wal.durable_lsn, why, sizeof(why)) != 0)
            log_warn("meta_commit_failed", "reason=\"%s\" at=stop", why);
        meta_close(q->meta);
    }
    wal_log_close(&q->wal);
    log_info("stopped", "durable_lsn=%" PRIu64, q->wal.durable_lsn);
    return WORKER_EXIT_OK;
}
