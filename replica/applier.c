/*
 * replica/applier.c — the applier worker: owns the state machine in private memory, applies the
 * shared log in LSN order, publishes results and applied_lsn, serves strict reads, proposes due
 * expirations and takes snapshots in a forked copy-on-write child.
 *
 * Everything in the shared log is durable (the sequencer publishes after its fsync), so on a
 * single node the applier applies every entry it finds (with replication: up to commit_lsn).
 *
 * Restart without losing or repeating results. Per entry, in this order: apply, push the result
 * for its tag, store applied_lsn (release), release the shared-log slot. A new applier rebuilds
 * the state from snapshot + WAL *up to the published applied_lsn* (frames after it are not even
 * read: the sequencer may be appending them), then continues from its shared-log cursor, skipping
 * entries at or below applied_lsn. An entry whose result was pushed but whose applied_lsn was
 * not stored is applied again and its result pushed again: the ingress ignores the duplicate.
 * On the first start of the daemon there is no applied point: it replays up to the durable_lsn
 * the sequencer published when it became ready — after its recovery made the WAL's tail durable,
 * so nothing only the page cache holds is ever applied.
 *
 * Time: the applier's slot is the sequencer's timeline (wal/slot_clock.h, published in the
 * segment), read with the boot clock: a wall-clock step never makes it propose early.
 *
 * Faults: shared-memory entries that fail their checks exit WORKER_EXIT_RESTART (the daemon is
 * restarted, the disk is trusted); a failed snapshot is counted, shown in /health and retried
 * with a doubling backoff.
 *
 * Expiration: once per slot (and on a tick request) the applier asks the state machine for
 * reservations due at the current slot (at most max_expirations_per_tick) and sends them to the
 * sequencer, which logs `expire` entries; they take effect when applied, like any command. It
 * does not propose again until those proposals have been applied (or a second has passed), so
 * a backlog is never proposed twice per round.
 *
 * Snapshots: every checkpoint_interval_ms (and at least checkpoint_min_entries new entries) a
 * forked child writes the snapshot from its copy-on-write image of the state while the parent
 * keeps applying; when the child succeeds, the parent tells the sequencer which WAL segments
 * may go (prune_below_lsn: one checkpoint of overlap, replica/recovery.h).
 *
 * Operation records (dedupe) are not in snapshots: the applier appends each new one to the
 * operation log (replica/oplog.h) after every batch, flushes the last block before forking, and
 * the child syncs the log before it writes the snapshot. A failed log write is counted like a
 * failed snapshot: snapshots wait until the log is reopened (at the next attempt).
 */
#include "config.h"

#include "common/assert.h"
#include "net/proto.h"
#include "replica/apply_policy.h"
#include "replica/applying.h"
#include "replica/oplog.h"
#include "replica/recovery.h"
#include "replica/sm.h"
#include "replica/snapshot.h"
#include "supervisor/log.h"
#include "supervisor/worker.h"
#include "wal/io.h"
#include "wal/slot_clock.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define APPLY_BATCH 4096       /* entries per pass before looking at reads again */
#define EXPIRE_HOLD_MAX_MS 1000
#define SNAPSHOT_BACKOFF_MAX_MS 60000

/* A read held for its read-index round (a cluster), numbered in arrival order. */
struct held_read {
    struct msg_read m;
    u64 number;
};

struct app {
    const struct worker_ctx *w;
    struct segment *seg;
    sm_t sm;
    u64 slot_ms;
    struct applying core; /* entries, retries and due reservations (replica/applying.h) */
    struct apply_policy policy; /* expiry hold, checkpoint timing, backoff, prune point */
    pid_t snap_pid;
    bool notify_result;
    struct oplog ops;     /* the operation log this applier writes (replica/oplog.h) */
    bool ops_broken;      /* a write failed: reopened before the next snapshot */
    u32 ops_rolled_at_fork; /* rolled segments the running snapshot child syncs ... */
    u64 ops_forced_at_fork; /* ... of which this many were synced (and closed) since */
    bool clustered;
    struct held_read *held; /* a cluster: reads waiting for a round, FIFO (ring_capacity of them) */
    u32 held_head, held_count, held_cap;
    u64 read_number;
};

/* Logs why the worker stops and returns its exit code: WORKER_EXIT_FATAL stops the daemon (the
 * disk is in doubt), WORKER_EXIT_RESTART restarts it (only the shared memory is). */
static int stop_worker(int code, const char *event, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int stop_worker(int code, const char *event, const char *fmt, ...)
{
    char reason[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    log_error(event, "reason=\"%s\" action=%s", reason, code == WORKER_EXIT_RESTART ? "restart_daemon" : "stop_daemon");
    return code;
}
#define fatal(...) stop_worker(WORKER_EXIT_FATAL, __VA_ARGS__)
#define shm_fault(...) stop_worker(WORKER_EXIT_RESTART, __VA_ARGS__)

static struct slot_clock timeline(const struct app *a)
{
    struct slot_clock c;
    const struct seg_sequencer *q = a->seg->seq;
    slot_clock_join(&c, a->slot_ms, atomic_load_explicit(&q->clock_logical0_ms, memory_order_relaxed),
                    atomic_load_explicit(&q->clock_boot0_ms, memory_order_relaxed), a->sm.last_request_slot);
    return c;
}

static u64 now_slot(const struct app *a)
{
    struct slot_clock c = timeline(a);
    return slot_clock_slot(&c, boot_ms());
}

static struct msg_result *result_slot(struct app *a)
{
    struct msg_result *r;
    while ((r = ring_claim(a->seg->result)) == NULL) { /* the ingress drains it */
        ring_notify(a->seg->result);
        worker_heartbeat(a->w);
        struct timespec ts = { 0, 200000 };
        nanosleep(&ts, NULL);
    }
    memset(r, 0, sizeof(*r));
    return r;
}

static void push_result(struct app *a)
{
    ring_publish_quiet(a->seg->result, sizeof(struct msg_result));
    a->notify_result = true;
}

static void push_write_result(struct app *a, const struct msg_tag *tag, const struct sm_outcome *o)
{
    struct msg_result *r = result_slot(a);
    r->tag = *tag;
    r->type = MSG_RESULT_WRITE;
    r->outcome = PROTO_COMMITTED;
    r->code = o->result;
    r->from_retry_cache = o->from_retry_cache;
    r->applied_lsn = o->applied_lsn;
    r->u.write.reservation_id = o->reservation_id;
    r->u.write.deadline_slot = o->deadline_slot;
    push_result(a);
}

static void publish_health(struct app *a)
{
    struct sm_health h;
    sm_health(&a->sm, now_slot(a), &h);
    struct seg_applier *c = a->seg->app;
    atomic_store_explicit(&c->current_slot, now_slot(a), memory_order_relaxed);
    atomic_store_explicit(&c->expiration_backlog, h.expiration_backlog, memory_order_relaxed);
    atomic_store_explicit(&c->resources_used, h.resources_used, memory_order_relaxed);
    atomic_store_explicit(&c->reservations_used, h.reservations_used, memory_order_relaxed);
    atomic_store_explicit(&c->operations_used, h.operations_used, memory_order_relaxed);
    atomic_store_explicit(&c->expirations_used, h.expirations_used, memory_order_relaxed);
    atomic_store_explicit(&c->resource_capacity, h.resource_capacity, memory_order_relaxed);
    atomic_store_explicit(&c->reservation_capacity, h.reservation_capacity, memory_order_relaxed);
    atomic_store_explicit(&c->operation_capacity, h.operation_capacity, memory_order_relaxed);
    atomic_store_explicit(&c->expiration_capacity, h.expiration_capacity, memory_order_relaxed);
}

/* A failed operation log write: no snapshot can rely on the log until it is reopened. */
static void oplog_broke(struct app *a, int rc, const char *why)
{
    struct seg_applier *c = a->seg->app;
    atomic_fetch_add_explicit(&c->snapshot_failures, 1, memory_order_relaxed);
    atomic_store_explicit(&c->snapshot_failing, 1, memory_order_relaxed);
    log_warn("oplog_write_failed", "errno=%d reason=\"%s\" action=reopen_before_next_snapshot", -rc, why);
    oplog_close(&a->ops);
    a->ops_broken = true;
}

/* Applies what the shared log holds (at most APPLY_BATCH). Returns entries taken, or -1 (fatal,
 * *rc set). */
static int apply_log(struct app *a, int *rc)
{
    struct segment *seg = a->seg;
    struct seg_applier *c = seg->app;
    int n = 0;
    while (n < APPLY_BATCH) {
        const void *p;
        u32 len;
        enum ring_status st = ring_peek_at(seg->shlog, SHLOG_APPLIER, &p, &len);
        if (st == RING_EMPTY)
            break;
        if (st == RING_CORRUPT) {
            *rc = shm_fault("shared_log_corrupt", "entry at position %" PRIu64 " fails its checks",
                        ring_tail(seg->shlog, SHLOG_APPLIER));
            return -1;
        }
        if (n == 0 && atomic_load_explicit(&seg->seq->base_lsn, memory_order_acquire) > a->sm.last_applied_lsn) {
            /* A state transfer replaced the state on disk, and the shared log goes on after it. */
            log_always_info("state_replaced", "base_lsn=%" PRIu64 " applied_lsn=%" PRIu64 " action=reload",
                            (u64)atomic_load(&seg->seq->base_lsn), a->sm.last_applied_lsn);
            *rc = WORKER_EXIT_RELOAD;
            return -1;
        }
        const struct shlog_entry *e = p;
        struct applying_result r;
        char why[160];
        enum applying_entry what = e->frame_len > sizeof(e->frame)
                                       ? APPLYING_DAMAGED
                                       : applying_frame(&a->core, e->frame, e->frame_len, &r, why, sizeof(why));
        if (what == APPLYING_DAMAGED) {
            if (e->frame_len > sizeof(e->frame))
                snprintf(why, sizeof(why), "a frame length of %u", e->frame_len);
            *rc = shm_fault("shared_log_corrupt", "entry at position %" PRIu64 ": %s",
                            ring_tail(seg->shlog, SHLOG_APPLIER), why);
            return -1;
        }
        if (what == APPLYING_APPLIED) {
            atomic_fetch_add_explicit(&c->commands[r.kind], 1, memory_order_relaxed);
            atomic_fetch_add_explicit(&c->results[r.outcome.result], 1, memory_order_relaxed);
            if (e->tag.flags & MSG_TAG_VALID)
                push_write_result(a, &e->tag, &r.outcome);
            /* The order that makes a restart exact: result, applied_lsn, then the slot. */
            atomic_store_explicit(&c->applied_lsn, r.lsn, memory_order_release);
        }
        ring_release_at(seg->shlog, SHLOG_APPLIER);
        n++;
        if ((n & 63) == 0) /* a long batch (a debug build checks invariants per apply) is not a hang */
            worker_heartbeat(a->w);
    }
    if (n > 0 && !a->ops_broken) {
        char why[256];
        int e = oplog_export(&a->ops, &a->sm, why, sizeof(why));
        if (e != 0)
            oplog_broke(a, e, why);
    }
    return n;
}

/* Retries the sequencer answered without a frame: the stored result, once its LSN is applied. */
static int answer_retries(struct app *a, bool *blocked)
{
    struct segment *seg = a->seg;
    int n = 0;
    *blocked = false;
    for (;;) {
        const void *p;
        u32 len;
        enum ring_status st = ring_peek(seg->retry, &p, &len);
        if (st == RING_EMPTY)
            break;
        if (st == RING_CORRUPT)
            return -1;
        const struct msg_retry *m = p;
        struct sm_outcome o;
        enum applying_retry what = applying_retry(&a->core, &m->cmd, m->lsn, &o);
        if (what == APPLYING_RETRY_WAIT) {
            *blocked = true; /* its entry is durable and on its way through the shared log */
            break;
        }
        if (what == APPLYING_RETRY_ANSWER) {
            push_write_result(a, &m->tag, &o);
        } else {
            struct msg_result *r = result_slot(a);
            r->tag = m->tag;
            r->type = MSG_RESULT_RESUBMIT;
            push_result(a);
        }
        ring_release(seg->retry);
        n++;
    }
    return n;
}

static u32 propose_expirations(struct app *a, u64 slot)
{
    u32 n = applying_due(&a->core, slot); /* deadline slot ended */
    u32 sent = 0;
    for (u32 i = 0; i < n; i++) {
        struct msg_expire *m = ring_claim(a->seg->expire);
        if (m == NULL)
            break;
        m->reservation_id = a->core.due[i].reservation_id;
        m->deadline_slot = a->core.due[i].deadline_slot;
        ring_publish_quiet(a->seg->expire, sizeof(*m));
        sent++;
    }
    if (sent > 0) {
        ring_notify(a->seg->expire);
        apply_policy_proposed(&a->policy, sent, mono_ms());
        atomic_fetch_add_explicit(&a->seg->app->expirations_proposed, sent, memory_order_relaxed);
    }
    return sent;
}

/* Once per slot: propose due expirations unless the previous round is still on its way. */
static void expiration_tick(struct app *a, bool forced, u64 *proposed)
{
    /* A cluster expires by cluster time less its possible error, and only its serving primary
     * (the sequencer publishes 0 otherwise, and checks again before it logs one). */
    u64 slot = a->clustered ? atomic_load_explicit(&a->seg->rep->expire_slot, memory_order_relaxed) : now_slot(a);
    bool empty = ring_depth(a->seg->expire) == 0; /* then sequenced_lsn bounds every proposal */
    u64 sequenced = empty ? atomic_load_explicit(&a->seg->seq->sequenced_lsn, memory_order_acquire) : 0;
    unsigned todo = apply_policy_expiration(&a->policy, mono_ms(), slot, forced, a->sm.last_applied_lsn, empty,
                                            sequenced);
    if (todo & APPLY_POLICY_NEW_SLOT)
        publish_health(a);
    if (todo & APPLY_POLICY_PROPOSE)
        *proposed = propose_expirations(a, slot);
}

static void answer_read(struct app *a, const struct msg_read *m, u64 proposed)
{
    struct msg_result *r = result_slot(a);
    r->tag = m->tag;
    r->applied_lsn = a->sm.last_applied_lsn;
    switch (m->kind) {
    case MSG_READ_RESOURCE:
        r->type = MSG_RESULT_RESOURCE;
        r->code = (u8)sm_get_resource(&a->sm, m->id, m->min_lsn, &r->u.resource);
        break;
    case MSG_READ_RESERVATION:
        r->type = MSG_RESULT_RESERVATION;
        r->code = (u8)sm_get_reservation(&a->sm, m->id, m->min_lsn, &r->u.reservation);
        break;
    default:
        r->type = MSG_RESULT_TICK;
        r->u.tick.slot = now_slot(a);
        r->u.tick.proposed = proposed;
        break;
    }
    push_result(a);
    atomic_fetch_add_explicit(&a->seg->app->reads, 1, memory_order_relaxed);
}

/*
 * A cluster's reads (DESIGN.md §8): each waits for a read-index round that began after it
 * arrived (the sequencer runs them: every read numbered up to read_ready_for is covered) and
 * for this applier to reach the round's index; a read whose round failed (the view changed, or
 * this replica does not serve) is answered not_primary. In arrival order: rounds cover a prefix.
 */
static int serve_held_reads(struct app *a)
{
    const struct seg_replica *rep = a->seg->rep;
    u64 ready = atomic_load_explicit(&rep->read_ready_for, memory_order_acquire);
    u64 index = atomic_load_explicit(&rep->read_index, memory_order_relaxed); /* this round's or a later one's */
    u64 failed = atomic_load_explicit(&rep->read_failed_for, memory_order_acquire);
    int n = 0;
    while (a->held_count > 0) {
        struct held_read *h = &a->held[a->held_head];
        if (h->number <= ready && a->sm.last_applied_lsn >= index) {
            answer_read(a, &h->m, 0);
        } else if (h->number <= failed && h->number > ready) {
            struct msg_result *r = result_slot(a);
            r->tag = h->m.tag;
            r->type = MSG_RESULT_NOT_PRIMARY;
            r->applied_lsn = a->sm.last_applied_lsn;
            push_result(a);
        } else {
            break;
        }
        a->held_head = (a->held_head + 1) % a->held_cap;
        a->held_count--;
        n++;
    }
    atomic_store_explicit(&a->seg->app->reads_held, a->held_count, memory_order_relaxed);
    return n;
}

/* Whether the oldest held read has its round's verdict (the sequencer rings when it does). */
static bool held_answerable(const struct app *a)
{
    if (a->held_count == 0)
        return false;
    u64 n = a->held[a->held_head].number;
    u64 ready = atomic_load_explicit(&a->seg->rep->read_ready_for, memory_order_acquire);
    if (n <= ready) /* then it waits only for entries, which wake the applier as they come */
        return a->sm.last_applied_lsn >= atomic_load_explicit(&a->seg->rep->read_index, memory_order_relaxed);
    return n <= atomic_load_explicit(&a->seg->rep->read_failed_for, memory_order_acquire);
}

static int serve_reads(struct app *a)
{
    struct segment *seg = a->seg;
    int n = 0;
    u64 numbered = a->read_number;
    for (;;) {
        const void *p;
        u32 len;
        if (a->clustered && a->held_count == a->held_cap)
            break; /* the ring holds the rest: the ingress answers overloaded when it fills */
        enum ring_status st = ring_peek(seg->read, &p, &len);
        if (st == RING_EMPTY)
            break;
        if (st == RING_CORRUPT)
            return -1;
        struct msg_read m;
        memcpy(&m, p, sizeof(m));
        ring_release(seg->read);
        u64 proposed = 0;
        if (m.kind == MSG_READ_TICK)
            expiration_tick(a, true, &proposed);
        if (a->clustered && m.kind != MSG_READ_TICK) {
            u32 at = (a->held_head + a->held_count) % a->held_cap;
            a->held[at] = (struct held_read){ .m = m, .number = ++a->read_number };
            a->held_count++;
        } else {
            answer_read(a, &m, proposed);
        }
        n++;
    }
    if (a->read_number != numbered) { /* the sequencer begins a round for them */
        atomic_store_explicit(&seg->app->reads_wanted, a->read_number, memory_order_release);
        doorbell_ring(seg->bell_sequencer);
    }
    if (a->clustered)
        n += serve_held_reads(a);
    return n;
}

/* ---- snapshots -------------------------------------------------------------------------- */

/* Counted, shown in /health, and the next attempt waits longer (the WAL keeps everything
 * meanwhile: nothing is pruned without a new snapshot). */
static void snapshot_failed(struct app *a, const char *step, int detail)
{
    struct seg_applier *c = a->seg->app;
    atomic_fetch_add_explicit(&c->snapshot_failures, 1, memory_order_relaxed);
    atomic_store_explicit(&c->snapshot_failing, 1, memory_order_relaxed);
    u64 backoff = apply_policy_checkpoint_failed(&a->policy);
    log_warn("snapshot_failed", "lsn=%" PRIu64 " step=%s detail=%d retry_in_ms=%" PRIu64,
             a->policy.snap_pending_lsn, step, detail, a->w->cfg->checkpoint_interval_ms + backoff);
}

/* In the snapshot child, once the state is encoded: unmap it, so that the parent's pages are
 * its own again and its writes stop copying them while the child writes and syncs. */
static void drop_state(void *ctx)
{
    sm_t *sm = ctx;
    struct sm_layout l;
    /* Only the part the fork shared: the operation records' range was never mapped here, and
     * the child's own allocations (the encoded snapshot) may have been placed in it. */
    if (sm->memory_mapped > 0 && sm_layout(&sm->cfg, &l))
        munmap(sm->memory, (size_t)l.operations_at);
}

static void snapshot_start(struct app *a)
{
    const struct config *cfg = a->w->cfg;
    u64 now = mono_ms();
    if (a->snap_pid > 0 || !apply_policy_checkpoint_due(&a->policy, now, a->sm.last_applied_lsn))
        return;
    apply_policy_checkpoint_started(&a->policy, a->sm.last_applied_lsn, now);
    char why[512];
    int rc = 0;
    if (a->ops_broken) { /* a fresh segment after the last snapshot, with every record it lacks */
        rc = oplog_open(&a->ops, &io_posix, cfg->data_dir, &a->sm, a->policy.snap_lsns[0], why, sizeof(why));
        a->ops_broken = rc != 0;
    }
    if (rc == 0)
        rc = oplog_flush(&a->ops, &a->sm, why, sizeof(why));
    if (rc != 0) {
        if (!a->ops_broken)
            oplog_broke(a, rc, why);
        snapshot_failed(a, "oplog", -rc);
        return;
    }
    a->ops_rolled_at_fork = a->ops.unsynced_count;
    a->ops_forced_at_fork = a->ops.forced_syncs;
    pid_t pid = fork();
    if (pid != 0)
        log_info("snapshot_started", "lsn=%" PRIu64 " fork_ms=%" PRIu64, a->policy.snap_pending_lsn, mono_ms() - now);
    if (pid < 0) {
        int e = errno;
        snapshot_failed(a, "fork", e);
        return;
    }
    if (pid == 0) {
        /* The child writes its copy-on-write image of the state and exits. */
        prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        struct checkpoint_report rep;
        struct checkpoint_options opt = { .ops = &a->ops, .encoded = drop_state, .ctx = &a->sm };
        rc = checkpoint_run(&io_posix, cfg->data_dir, &a->sm, NULL, &opt, &rep, why, sizeof(why));
        if (rc != 0) {
            log_error("snapshot_failed", "lsn=%" PRIu64 " reason=\"%s\"", a->sm.last_applied_lsn, why);
            _exit(1);
        }
        _exit(0);
    }
    a->snap_pid = pid;
}

static void snapshot_reap(struct app *a)
{
    if (a->snap_pid <= 0)
        return;
    int status;
    pid_t r = waitpid(a->snap_pid, &status, WNOHANG);
    if (r != a->snap_pid)
        return;
    a->snap_pid = 0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        snapshot_failed(a, "child", status);
        return;
    }
    struct seg_applier *c = a->seg->app;
    /* The child synced the segments rolled before the fork: the parent closes those it still holds. */
    u64 forced = a->ops.forced_syncs - a->ops_forced_at_fork;
    u32 synced = forced >= a->ops_rolled_at_fork ? 0 : a->ops_rolled_at_fork - (u32)forced;
    if (!a->ops_broken)
        oplog_synced(&a->ops, synced < a->ops.unsynced_count ? synced : a->ops.unsynced_count);
    u64 prune = apply_policy_checkpoint_done(&a->policy);
    atomic_store_explicit(&c->snapshot_failing, 0, memory_order_relaxed);
    atomic_store_explicit(&c->snapshot_lsn, a->policy.snap_lsns[0], memory_order_relaxed);
    atomic_fetch_add_explicit(&c->snapshots_written, 1, memory_order_relaxed);
    if (prune != 0) /* the WAL from the older kept snapshot on */
        atomic_store_explicit(&c->prune_below_lsn, prune, memory_order_release);
    log_info("snapshot_written", "lsn=%" PRIu64 " prune_below_lsn=%" PRIu64, a->policy.snap_lsns[0], prune);
}

/* ---- start ------------------------------------------------------------------------------- */

static int recover(struct app *a)
{
    const struct config *cfg = a->w->cfg;
    struct seg_applier *c = a->seg->app;
    bool first = atomic_load(&a->seg->workers[ROLE_APPLIER].restarts) == 0;
    /* Never past what the sequencer published: on the first start, the point its recovery
     * synced (a cluster: the metadata's commit point); after a restart, what was applied. */
    u64 limit = apply_policy_recovery_limit(first, atomic_load_explicit(&a->seg->seq->published_lsn, memory_order_acquire),
                                            atomic_load_explicit(&c->applied_lsn, memory_order_acquire),
                                            atomic_load_explicit(&a->seg->seq->base_lsn, memory_order_acquire));
    struct recovery_options opt = { .read_only = true };
    opt.wal.segment_bytes = cfg->wal_segment_bytes;
    opt.wal.stop_after_lsn = limit;
    struct sm_config smc;
    config_sm(cfg, &smc);
    struct wal_log wal;
    struct recovery_report rep;
    char why[512];
    u64 t0 = mono_ms();
    int rc = 0;
    if (limit == 0) {
        /* Nothing applied (or, first, nothing durable): no snapshot can exist, and any frame on
         * disk is one the sequencer is writing or has yet to publish. Read none of them (a
         * stop_after_lsn of 0 would mean "everything"). */
        memset(&rep, 0, sizeof(rep));
        rep.kind = RECOVERY_FRESH;
    } else {
        rc = recovery_run(&io_posix, cfg->data_dir, &smc, &opt, &a->sm, &wal, &rep, why, sizeof(why));
    }
    if (rc != 0) {
        log_error("recovery_failed", "errno=%d reason=\"%s\" action=stop_daemon", -rc, why);
        return rc == -EINVAL ? WORKER_EXIT_CONFIG : WORKER_EXIT_FATAL;
    }
    if (limit != 0 && a->sm.last_applied_lsn < limit)
        return fatal("recovery_short", "the WAL holds LSN %" PRIu64 " but LSN %" PRIu64 " was applied before",
                     a->sm.last_applied_lsn, limit);
    if (rep.snapshots_rejected > 0) {
        /* Skipped, never trusted; an operator should know a file on this disk went bad. */
        char name[64];
        snapshot_file_name(name, sizeof(name), rep.rejected_lsn);
        log_always_warn("snapshot_rejected", "file=%s/%s count=%u reason=\"%s\" action=used_older_snapshot_lsn_%" PRIu64,
                        cfg->data_dir, name, rep.snapshots_rejected, rep.rejected_reason, rep.snapshot_lsn);
        atomic_fetch_add(&c->snapshots_rejected, rep.snapshots_rejected);
        atomic_store(&c->snapshot_rejected_lsn, rep.rejected_lsn);
    }
    /* The operation log continues after the snapshot recovery restored from: segments past it
     * are dropped and what replay made is exported again. An image's records are in no log
     * yet: it starts over with every live record. */
    rc = oplog_open(&a->ops, &io_posix, cfg->data_dir, &a->sm, rep.from_image ? 0 : rep.snapshot_lsn, why, sizeof(why));
    if (rc != 0) {
        log_error("oplog_open_failed", "errno=%d reason=\"%s\" action=stop_daemon", -rc, why);
        return WORKER_EXIT_FATAL;
    }
    struct apply_policy_config pc = { .checkpoint_interval_ms = cfg->checkpoint_interval_ms,
                                      .checkpoint_min_entries = cfg->checkpoint_min_entries,
                                      .expire_hold_max_ms = EXPIRE_HOLD_MAX_MS,
                                      .snapshot_backoff_max_ms = SNAPSHOT_BACKOFF_MAX_MS };
    apply_policy_init(&a->policy, &pc, mono_ms(), rep.from_image ? 0 : rep.snapshot_lsn); /* an image: a snapshot is due */
    atomic_store(&c->applied_lsn, a->sm.last_applied_lsn);
    atomic_store(&c->snapshot_lsn, rep.snapshot_lsn);
    atomic_store(&c->recovery_kind, rep.kind);
    atomic_store(&c->recovery_frames, rep.frames_replayed);
    atomic_store(&c->recovery_ms, mono_ms() - t0);
    log_always_info("recovered", "kind=%s%s snapshot_lsn=%" PRIu64 " frames_replayed=%" PRIu64 " applied_lsn=%" PRIu64
             " snapshots_rejected=%u ms=%" PRIu64,
             recovery_kind_name(rep.kind), rep.from_image ? " from=image" : "", rep.snapshot_lsn, rep.frames_replayed, a->sm.last_applied_lsn,
             rep.snapshots_rejected, mono_ms() - t0);
    return 0;
}

u64 applier_memory(const struct config *cfg)
{
    struct sm_config smc;
    struct sm_layout l;
    config_sm(cfg, &smc);
    if (!sm_layout(&smc, &l))
        return UINT64_MAX;
    return l.total + (u64)cfg->max_expirations_per_tick * sizeof(struct sm_due);
}

int applier_main(const struct worker_ctx *w)
{
    if (!worker_enter(w))
        return WORKER_EXIT_CRASH;
    struct app *a = calloc(1, sizeof(*a));
    struct sm_config smc;
    config_sm(w->cfg, &smc);
    char why[256];
    if (a == NULL || !sm_create(&a->sm, &smc, why, sizeof(why))) {
        log_error("state_machine_alloc_failed", "reason=\"%s\"", a == NULL ? "out of memory" : why);
        return WORKER_EXIT_CRASH;
    }
    u64 populate_start = mono_ms();
    if (w->cfg->prefault_memory)
        sm_populate(&a->sm); /* hold the configured memory now, not at the first window's faults */
    /* The snapshot child never reads the operation records: without them in the fork, the
     * applier's writes to them (most of its memory) copy nothing while a snapshot is written. */
    if (!sm_keep_operations_from_fork(&a->sm))
        log_warn("madvise_failed", "what=dontfork_operations errno=%d", errno);
    log_info("state_machine_mapped", "bytes=%" PRIu64 " populate_ms=%" PRIu64, a->sm.memory_mapped,
             mono_ms() - populate_start);
    a->w = w;
    a->seg = w->seg;
    a->slot_ms = w->cfg->slot_duration_ms;
    struct sm_due *due = calloc(w->cfg->max_expirations_per_tick, sizeof(*due));
    if (due == NULL)
        return WORKER_EXIT_CRASH;
    applying_init(&a->core, &a->sm, due, w->cfg->max_expirations_per_tick);
    a->clustered = atomic_load(&w->seg->rep->replica_count) > 1;
    if (a->clustered) {
        a->held_cap = w->cfg->ring_capacity;
        a->held = calloc(a->held_cap, sizeof(*a->held));
        if (a->held == NULL)
            return WORKER_EXIT_CRASH;
        /* Numbers go on from the last applier's: a round in flight never covers a new read. */
        a->read_number = atomic_load(&w->seg->app->reads_wanted);
    }
    int rc = recover(a);
    if (rc != 0)
        return rc;
    publish_health(a);
    worker_set_ready(w);

    struct segment *seg = w->seg;
    while (!worker_should_stop(w)) {
        worker_heartbeat(w);
        int applied = apply_log(a, &rc);
        if (applied < 0) {
            if (rc == WORKER_EXIT_RELOAD && a->snap_pid > 0) {
                /* A snapshot of the replaced state must not run on beside the next applier,
                 * which starts the operation log over. */
                kill(a->snap_pid, SIGKILL);
                waitpid(a->snap_pid, &(int){ 0 }, 0);
                a->snap_pid = 0;
            }
            return rc;
        }
        bool retry_blocked;
        int retried = answer_retries(a, &retry_blocked);
        int reads = serve_reads(a);
        if (retried < 0 || reads < 0)
            return shm_fault("ring_corrupt", "a request ring entry fails its checks");
        if (a->notify_result) {
            ring_notify(seg->result);
            a->notify_result = false;
        }
        u64 proposed = 0;
        expiration_tick(a, false, &proposed);
        snapshot_reap(a);
        snapshot_start(a);
        if (applied > 0 || reads > 0 || retried > 0)
            continue;
        doorbell_arm(seg->bell_applier);
        if (ring_has(seg->shlog, SHLOG_APPLIER) || ring_has(seg->read, 0) ||
            (!retry_blocked && ring_has(seg->retry, 0)) || held_answerable(a)) {
            doorbell_disarm(seg->bell_applier);
            continue;
        }
        /* Wake for the next slot boundary (expirations) at the latest. */
        struct slot_clock clk = timeline(a);
        u64 ms_to_slot = slot_clock_ms_to_next(&clk, boot_ms());
        int timeout = retry_blocked ? 1 : (int)(ms_to_slot < WORKER_HEARTBEAT_MS ? ms_to_slot : WORKER_HEARTBEAT_MS);
        doorbell_sleep(seg->bell_applier, timeout > 0 ? timeout : 1);
    }
    if (a->snap_pid > 0) { /* let a running snapshot finish: it is cheap to wait and saves work */
        int status;
        waitpid(a->snap_pid, &status, 0);
        a->snap_pid = 0;
    }
    log_info("stopped", "applied_lsn=%" PRIu64, a->sm.last_applied_lsn);
    return WORKER_EXIT_OK;
}
