/*
 * wal/sequencer.c — the sequencer worker: the only writer of the WAL and of the shared log. A
 * shell around wal/sequencing.h, which owns the WAL (through io_posix) and decides what to take,
 * stamp, refuse, republish and maintain; this file moves ring messages, clock readings, tags
 * and metadata writes in and out of it.
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
#include "wal/sequencer_shell.h"
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
    return retry_cache_bytes((u32)cap) +
           (u64)SEQ_BATCH_MAX * (sizeof(struct sequencing_frame) + sizeof(struct msg_tag));
}

u64 mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (u64)ts.tv_sec * 1000000000u + (u64)ts.tv_nsec;
}

static bool clustered(const struct seq *q)
{
    return atomic_load_explicit(&q->seg->rep->replica_count, memory_order_relaxed) > 1;
}

void seq_reply(struct seq *q, const struct msg_tag *tag, u8 outcome, u8 code)
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

/* Puts one durable frame with its tag in the shared log, waiting for room if need be. */
static void publish(struct seq *q, const struct msg_tag *tag, const u8 *frame, u32 len, bool wait)
{
    struct shlog_entry *e;
    while ((e = ring_claim(q->seg->shlog)) == NULL) {
        ADB_ASSERT(wait); /* a batch's room was reserved before it was taken */
        worker_heartbeat(q->w);
        struct timespec ts = { 0, 1000000 };
        nanosleep(&ts, NULL);
    }
    if (tag != NULL)
        e->tag = *tag;
    else
        memset(&e->tag, 0, sizeof(e->tag));
    e->frame_len = len;
    memcpy(e->frame, frame, len);
    ring_publish_quiet(q->seg->shlog, sizeof(*e));
}

/* Open: a durable frame never published (a crash between fsync and publish), published untagged. */
static int republish(void *ctx, const u8 *frame, u32 len, u64 lsn)
{
    struct seq *q = ctx;
    if (clustered(q))
        return 0; /* a cluster publishes committed frames only: from the WAL, once the core commits them */
    publish(q, NULL, frame, len, true);
    ring_notify(q->seg->shlog);
    atomic_store_explicit(&q->seg->seq->published_lsn, lsn, memory_order_release);
    return 0;
}

/* A failed write or fsync: answer everything unacknowledged and stop the daemon. */
static int storage_failed(struct seq *q, int rc, const struct msg_tag *also)
{
    struct wal_log *wal = &q->core.wal;
    u32 pending = q->core.batch_count;
    atomic_store(&q->seg->seq->halted, 1);
    log_error("storage_failure", "errno=%d reason=\"%s\" unacknowledged=%u action=halt", -rc,
              wal->halt_reason[0] ? wal->halt_reason : strerror(-rc), pending + (also != NULL));
    for (u32 i = 0; i < pending; i++)
        seq_reply(q, &q->tags[i], PROTO_INDEFINITE, PROTO_INDEFINITE_STORAGE_FAILURE);
    if (also != NULL)
        seq_reply(q, also, PROTO_INDEFINITE, PROTO_INDEFINITE_STORAGE_FAILURE);
    ring_notify(q->seg->reject);
    return WORKER_EXIT_FATAL;
}

/* What the log, /health and the metrics show when a part of the disk fills or has room again:
 * the transitions between the core's state before an event (`was`) and after it. */
static void report_space(struct seq *q, const bool was[3])
{
    static const char *const names[] = { "next_segment", "metadata", "spare_segment" };
    const char *refused = sequencing_writes_refused(&q->core) ? "yes" : "no";
    bool changed = false;
    for (int part = 0; part < 3; part++) {
        bool now = q->core.no_space[part];
        if (now == was[part])
            continue;
        changed = true;
        if (now)
            log_warn("no_space", "what=%s errno=%d writes_refused=%s retry_ms=%d", names[part],
                     -q->core.no_space_rc, refused, SEQ_SPACE_RETRY_MS);
        else
            log_always_info("space_returned", "what=%s writes_refused=%s", names[part], refused);
    }
    if (changed)
        atomic_store_explicit(&q->seg->seq->no_space, sequencing_space_level(&q->core), memory_order_relaxed);
}

static void refuse_no_space(struct seq *q, const struct msg_tag *tag)
{
    seq_reply(q, tag, PROTO_REJECTED, PROTO_REJECT_NO_SPACE);
    atomic_fetch_add_explicit(&q->seg->seq->rejected[PROTO_REJECT_NO_SPACE], 1, memory_order_relaxed);
}

/* One client write: a frame, a retry answered without one, or a rejection. False: storage failed. */
static bool take_write(struct seq *q, const struct msg_write *m, int *rc)
{
    struct seg_sequencer *c = q->seg->seq;
    bool was[3];
    memcpy(was, q->core.no_space, sizeof(was));
    if (q->cl != NULL && !q->cl->serving) {
        /* Definite: never logged here. The ingress answers most of these itself, with a hint. */
        seq_reply(q, &m->tag, PROTO_REJECTED, PROTO_REJECT_NOT_PRIMARY);
        atomic_fetch_add_explicit(&q->seg->rep->not_primary, 1, memory_order_relaxed);
        return true;
    }
    bool force = (m->tag.flags & MSG_TAG_FORCE_LOG) != 0;
    struct sequencing_result r = sequencing_write(&q->core, &m->cmd, force, boot_ms(), mono_ms());
    if (r.action == SEQUENCING_ANSWER_RETRY) {
        struct msg_retry *x = ring_claim(q->seg->retry);
        if (x != NULL) {
            x->tag = m->tag;
            x->cmd = m->cmd;
            x->lsn = r.lsn;
            ring_publish_quiet(q->seg->retry, sizeof(*x));
            q->notify_retry = true;
            atomic_fetch_add_explicit(&c->retries_answered, 1, memory_order_relaxed);
            return true;
        }
        /* retry ring full: log it; the state machine answers from its record */
        r = sequencing_write(&q->core, &m->cmd, true, boot_ms(), mono_ms());
    }
    report_space(q, was);
    switch (r.action) {
    case SEQUENCING_APPENDED:
        q->tags[r.index] = m->tag;
        if (q->cl != NULL)
            seq_cluster_sequenced(q, r.index);
        atomic_store_explicit(&c->sequenced_lsn, r.lsn, memory_order_relaxed);
        atomic_fetch_add_explicit(&c->writes, 1, memory_order_relaxed);
        return true;
    case SEQUENCING_REJECT_EXHAUSTED:
        seq_reply(q, &m->tag, PROTO_REJECTED, PROTO_REJECT_LSN_EXHAUSTED);
        atomic_fetch_add_explicit(&c->rejected[PROTO_REJECT_LSN_EXHAUSTED], 1, memory_order_relaxed);
        return true;
    case SEQUENCING_REFUSE_NO_SPACE:
        refuse_no_space(q, &m->tag);
        return true;
    case SEQUENCING_STORAGE_FAILED:
        *rc = r.rc;
        return false;
    case SEQUENCING_ANSWER_RETRY: /* a forced write is never answered from the cache */
    case SEQUENCING_DROPPED:      /* only expirations are dropped */
        break;
    }
    ADB_ASSERT(!"a write's action");
    return false;
}

/* One due expiration from the applier. False: storage failed. */
static bool take_expire(struct seq *q, const struct msg_expire *m, int *rc)
{
    if (q->cl != NULL && !seq_cluster_expiry_due(q, m->deadline_slot))
        return true; /* not the serving primary, or not due by cluster time: proposed again later */
    bool was[3];
    memcpy(was, q->core.no_space, sizeof(was));
    struct sequencing_result r = sequencing_expire(&q->core, m->reservation_id, m->deadline_slot, boot_ms(),
                                                   mono_ms());
    report_space(q, was);
    if (r.action == SEQUENCING_STORAGE_FAILED) {
        *rc = r.rc;
        return false;
    }
    if (r.action == SEQUENCING_APPENDED) {
        memset(&q->tags[r.index], 0, sizeof(q->tags[r.index]));
        if (q->cl != NULL)
            seq_cluster_sequenced(q, r.index);
        atomic_store_explicit(&q->seg->seq->sequenced_lsn, r.lsn, memory_order_relaxed);
        atomic_fetch_add_explicit(&q->seg->seq->expires_logged, 1, memory_order_relaxed);
    }
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
        bool was[3];
        memcpy(was, q->core.no_space, sizeof(was));
        q->core.no_space_rc = rc;
        sequencing_space(&q->core, SEQUENCING_META, true, mono_ms());
        report_space(q, was);
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
    bool was[3];
    memcpy(was, q->core.no_space, sizeof(was));
    sequencing_space(&q->core, SEQUENCING_META, false, mono_ms());
    report_space(q, was);
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
    /* A cluster records what a quorum committed, never merely what this disk holds. */
    u64 durable = q->cl != NULL ? seq_cluster_commit(q) : q->core.wal.durable_lsn;
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
    if (q->cl != NULL) /* what any other replica still lacks is kept for it */
        prune = seq_cluster_prune_floor(q, prune);
    u32 removed = 0;
    if (sequencing_prune(&q->core, prune, &removed) == 0 && removed > 0) { /* a failure: tried again */
        atomic_fetch_add_explicit(&q->seg->seq->wal_segments_removed, removed, memory_order_relaxed);
        log_info("wal_pruned", "below_lsn=%" PRIu64 " segments_removed=%u", prune, removed);
    }
    if (q->cl != NULL)
        seq_cluster_pruned(q, snap);
    return 0;
}

/* Makes the batch durable and hands it to the applier. Returns 0 or a worker exit code. */
static int commit_batch(struct seq *q)
{
    struct seg_sequencer *c = q->seg->seq;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    u32 n;
    int rc = sequencing_commit(&q->core, &n);
    if (rc != 0)
        return storage_failed(q, rc, NULL);
    clock_gettime(CLOCK_MONOTONIC, &b);
    /* Signed first: tv_nsec of the end is below the start's whenever a second boundary passed
     * (unsigned, that case recorded a duration of about 2^64 / 1000 us). */
    i64 ns = (i64)(b.tv_sec - a.tv_sec) * 1000000000 + (i64)(b.tv_nsec - a.tv_nsec);
    u64 us = ns > 0 ? (u64)ns / 1000u : 0;
    const struct wal_log *wal = &q->core.wal;
    seg_histogram_add(&c->fsync_us, us);
    seg_histogram_add(&c->batch, n);
    atomic_fetch_add_explicit(&c->fsyncs, 1, memory_order_relaxed);
    atomic_store_explicit(&c->last_slot, wal->cur.last_slot, memory_order_relaxed);
    atomic_store_explicit(&c->durable_lsn, wal->durable_lsn, memory_order_release);
    if (q->cl != NULL) {
        seq_cluster_durable(q, n); /* published once committed */
        return 0;
    }
    for (u32 i = 0; i < n; i++)
        publish(q, &q->tags[i], q->core.batch[i].bytes, q->core.batch[i].len, false);
    atomic_store_explicit(&c->published_lsn, wal->durable_lsn, memory_order_release);
    ring_notify(q->seg->shlog);
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
    struct wal_open_report rep;
    enum sequencing_opened verdict;
    rc = sequencing_open(&q->core, &io_posix, cfg->data_dir, &seen, republish, q, &plan, &rep, &verdict, why,
                         sizeof(why));
    if (rc != 0) {
        log_error("wal_recovery_failed", "errno=%d reason=\"%s\"", -rc, why);
        return WORKER_EXIT_FATAL;
    }
    if (clustered(q)) { /* a state transfer a crash cut is finished (or forgotten) first */
        rc = seq_image_open(q, &rec, &rep.last_lsn, &rep.last_slot);
        if (rc != 0)
            return rc;
    }
    bool first_start = plan.first_start;
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
    switch (verdict) {
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
    /* Known committed (a cluster): the metadata's commit point, written lazily, and the newest
     * snapshot, which holds applied, so committed, entries only. */
    u64 committed = rec.commit_lsn > snap ? rec.commit_lsn : snap;
    if (!first_start && seen.published_lsn > committed) /* a worker restart: what the applier has */
        committed = seen.published_lsn;
    if (committed > rep.last_lsn)
        committed = rep.last_lsn;
    if (!clustered(q))
        atomic_store(&c->published_lsn, rep.last_lsn);
    else if (first_start) /* the applier recovers what is known committed from disk itself */
        atomic_store(&c->published_lsn, committed);
    atomic_store(&c->halted, 0);
    atomic_store(&c->recovery_frames, rep.frames);
    atomic_store(&c->recovery_torn, rep.torn ? 1 : 0);
    atomic_store(&c->recovery_ms, mono_ms() - t0);
    log_always_info("wal_recovered", "segments=%u first_lsn=%" PRIu64 " last_lsn=%" PRIu64 " frames=%" PRIu64
             " torn=%s cached_operations=%u",
             rep.segments, rep.first_lsn, rep.last_lsn, rep.frames, rep.torn ? "yes" : "no", q->cache.count);
    if (clustered(q))
        return seq_cluster_start(q, &rec, rep.last_lsn, committed);
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
    struct sequencing_frame *batch = calloc(SEQ_BATCH_MAX, sizeof(*batch));
    if (q == NULL || cache_memory == NULL || batch == NULL || (q->tags = calloc(SEQ_BATCH_MAX, sizeof(*q->tags))) == NULL) {
        log_error("out_of_memory", "what=sequencer_tables");
        return WORKER_EXIT_CRASH;
    }
    retry_cache_init(&q->cache, cache_memory, w->cfg->operation_capacity, smc.dedupe_window_slots);
    struct sequencing_config sc = { .batch_max = SEQ_BATCH_MAX, .slot_ms = w->cfg->slot_duration_ms,
                                    .segment_bytes = w->cfg->wal_segment_bytes,
                                    .meta_interval_ms = SEQ_META_INTERVAL_MS, .meta_idle_ms = SEQ_META_IDLE_MS,
                                    .meta_backoff_max_ms = SEQ_META_BACKOFF_MAX_MS,
                                    .space_retry_ms = SEQ_SPACE_RETRY_MS };
    sequencing_init(&q->core, &sc, &q->cache, batch);
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
        if (q->cl != NULL)
            seq_cluster_receive(q); /* a backup's appends join this batch */
        u32 limit = sequencing_batch_limit(&q->core, shlog_cap - ring_depth(seg->shlog));
        bool open = true; /* writes may be taken now (a cluster: not serving drains them as not_primary) */
        if (q->cl != NULL && q->cl->serving) {
            u32 room = seq_cluster_room(q);
            u32 cap = q->core.batch_count + room;
            if (cap < limit)
                limit = cap;
            open = room > 0;
        }
        if (limit == 0 && q->cl == NULL) { /* the applier is behind: backpressure, never overwrite */
            struct timespec ts = { 0, 200000 };
            nanosleep(&ts, NULL);
            continue;
        }
        const void *p;
        u32 len;
        enum ring_status st = RING_OK;
        /* Due expirations first, then client writes. */
        while (q->core.batch_count < limit && (st = ring_peek(seg->expire, &p, &len)) == RING_OK) {
            struct msg_expire m;
            memcpy(&m, p, sizeof(m));
            ring_release(seg->expire);
            if (!take_expire(q, &m, &rc))
                return storage_failed(q, rc, NULL);
        }
        if (st == RING_CORRUPT)
            return ring_corrupt("expire");
        while (q->core.batch_count < limit && (st = ring_peek(seg->write, &p, &len)) == RING_OK) {
            struct msg_write m;
            memcpy(&m, p, sizeof(m));
            ring_release(seg->write);
            if (!take_write(q, &m, &rc))
                return storage_failed(q, rc, &m.tag);
        }
        if (st == RING_CORRUPT)
            return ring_corrupt("write");
        if (q->notify_retry) {
            ring_notify(seg->retry);
            q->notify_retry = false;
        }
        if (q->cl != NULL)
            seq_cluster_ship(q); /* the step's prepares, before the fsync */
        if (q->core.batch_count > 0) {
            rc = commit_batch(q);
            if (rc != 0)
                return rc;
        }
        if (q->cl != NULL) {
            rc = seq_cluster_step(q);
            if (rc != 0)
                return storage_failed(q, rc, NULL);
        }
        if (q->notify_reject) {
            ring_notify(seg->reject);
            q->notify_reject = false;
        }
        bool was[3];
        memcpy(was, q->core.no_space, sizeof(was));
        rc = sequencing_prepare(&q->core, SEQ_SPARE_SLICE, mono_ms());
        report_space(q, was);
        if (rc != 0)
            return storage_failed(q, rc, NULL);
        rc = maintenance(q);
        if (rc != 0)
            return rc;
        bool more = (open && limit > 0 && (ring_has(seg->write, 0) || ring_has(seg->expire, 0))) ||
                    (q->cl != NULL && ring_has(seg->peer_in, 0));
        if (more)
            continue;
        doorbell_arm(seg->bell_sequencer);
        more = (open && limit > 0 && (ring_has(seg->write, 0) || ring_has(seg->expire, 0))) ||
               (q->cl != NULL && ring_has(seg->peer_in, 0));
        if (more) {
            doorbell_disarm(seg->bell_sequencer);
            continue;
        }
        doorbell_sleep(seg->bell_sequencer, q->cl != NULL ? seq_cluster_wait_ms(q) : WORKER_HEARTBEAT_MS);
    }
    /* Stopping: everything taken was committed in its iteration (a cluster records the commit point). */
    u64 durable = q->cl != NULL ? seq_cluster_commit(q) : q->core.wal.durable_lsn;
    if (q->meta != NULL) {
        char why[256];
        if (durable > q->core.meta_commit && meta_advance_commit(q->meta, durable, why, sizeof(why)) != 0)
            log_warn("meta_commit_failed", "reason=\"%s\" at=stop", why);
        meta_close(q->meta);
    }
    seq_cluster_stop(q);
    sequencing_close(&q->core);
    log_info("stopped", "durable_lsn=%" PRIu64, durable);
    return WORKER_EXIT_OK;
}
