/*
 * wal/sequencer.c — the sequencer worker: the only writer of the WAL and of the shared log.
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
    struct shlog_entry *stash; /* frames of the current batch, published after the fsync */
    u32 stash_count;
    struct slot_clock clock;
    u64 published_before; /* restart: frames above it are published after open */
    u64 meta_commit, meta_at_ms;
    u64 meta_snapshot; /* snapshot anchor recorded in the metadata */
    u64 meta_retry_at_ms, meta_backoff_ms; /* a failed snapshot-anchor write: when to retry */
    /* A full disk, by what could not grow. Writes that need a frame are refused while the next
     * segment or a metadata page cannot be had; a spare that cannot grow only warns. */
    bool segment_no_space, meta_no_space, spare_no_space;
    u64 space_retry_at_ms;
    u64 pruned_below;
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
    if (cmd->kind != SM_CMD_EXPIRE) {
        retry_cache_retire(&q->cache, f->request_slot);
        retry_cache_add(&q->cache, cmd, f->lsn, f->request_slot, false);
    }
    if (f->lsn <= q->published_before)
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
    return slot_clock_slot(&q->clock, boot_ms()); /* never backwards, also across restarts */
}

/* Appends one command; false on a storage error (the log is halted). */
static bool append(struct seq *q, const struct msg_tag *tag, const struct sm_command *cmd, u64 slot,
                   bool known_absent, int *rc)
{
    u64 lsn;
    *rc = wal_log_append(&q->wal, slot, 0, cmd, &lsn);
    if (*rc != 0)
        return false;
    slot_clock_note_slot(&q->clock, slot);
    struct shlog_entry *e = &q->stash[q->stash_count++];
    e->tag = *tag;
    const u8 *frame = wal_log_last_frame(&q->wal, &e->frame_len);
    memcpy(e->frame, frame, e->frame_len);
    if (cmd->kind != SM_CMD_EXPIRE)
        retry_cache_add(&q->cache, cmd, lsn, slot, known_absent);
    atomic_store_explicit(&q->seg->seq->sequenced_lsn, lsn, memory_order_relaxed);
    return true;
}

enum space_part { SPACE_SEGMENT, SPACE_META, SPACE_SPARE };

static bool writes_refused(const struct seq *q)
{
    return q->segment_no_space || q->meta_no_space;
}

/* Out of space in one part (full) or room again: what the log, /health and the metrics show. */
static void set_no_space(struct seq *q, enum space_part part, bool full, int rc)
{
    static const char *const names[] = { "next_segment", "metadata", "spare_segment" };
    bool *flag = part == SPACE_SEGMENT ? &q->segment_no_space : part == SPACE_META ? &q->meta_no_space : &q->spare_no_space;
    if (full)
        q->space_retry_at_ms = mono_ms() + SEQ_SPACE_RETRY_MS;
    if (*flag == full)
        return;
    *flag = full;
    if (full)
        log_warn("no_space", "what=%s errno=%d writes_refused=%s retry_ms=%d", names[part], -rc,
                 writes_refused(q) ? "yes" : "no", SEQ_SPACE_RETRY_MS);
    else
        log_always_info("space_returned", "what=%s writes_refused=%s", names[part], writes_refused(q) ? "yes" : "no");
    atomic_store_explicit(&q->seg->seq->no_space, writes_refused(q) ? 2 : q->spare_no_space ? 1 : 0,
                          memory_order_relaxed);
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
    if (wal_log_next_lsn(&q->wal) == UINT64_MAX) {
        reply(q, &m->tag, PROTO_REJECTED, PROTO_REJECT_LSN_EXHAUSTED);
        atomic_fetch_add_explicit(&c->rejected[PROTO_REJECT_LSN_EXHAUSTED], 1, memory_order_relaxed);
        return true;
    }
    const struct retry_entry *o = retry_cache_find(&q->cache, m->cmd.operation_id);
    u64 first = (m->tag.flags & MSG_TAG_FORCE_LOG) != 0
                    ? 0 : retry_cache_answer(&q->cache, o, &m->cmd, slot, q->wal.durable_lsn);
    if (first != 0) {
        struct msg_retry *r;
        if ((r = ring_claim(q->seg->retry)) != NULL) {
            r->tag = m->tag;
            r->cmd = m->cmd;
            r->lsn = first;
            ring_publish_quiet(q->seg->retry, sizeof(*r));
            q->notify_retry = true;
            atomic_fetch_add_explicit(&c->retries_answered, 1, memory_order_relaxed);
            return true;
        }
        /* retry ring full: log it; the state machine answers from its record */
    }
    /* The metadata is retried by maintenance; the next segment by the next write that needs it,
     * once a retry interval has passed. */
    if (q->meta_no_space || (q->segment_no_space && mono_ms() < q->space_retry_at_ms)) {
        refuse_no_space(q, &m->tag);
        return true;
    }
    if (!append(q, &m->tag, &m->cmd, slot, o == NULL, rc)) {
        if (!wal_log_no_space(*rc))
            return false;
        set_no_space(q, SPACE_SEGMENT, true, *rc);
        refuse_no_space(q, &m->tag);
        *rc = 0;
        return true;
    }
    if (q->segment_no_space)
        set_no_space(q, SPACE_SEGMENT, false, 0);
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
    struct clock_anchor a = slot_clock_anchor(&q->clock, &r);
    struct meta_clock mc = { .logical_ms = a.logical_ms, .wall_ms = a.wall_ms, .boot_ms = a.boot_ms,
                             .boot_id = a.boot_id };
    char why[512] = "";
    int rc = meta_advance(q->meta, durable, &mc, why, sizeof(why));
    if (wal_log_no_space(rc)) {
        /* A full disk, not a failing one: refuse writes until the point can be recorded
         * (a commit point that lags is still a true lower bound), on a reopened handle. */
        atomic_fetch_add_explicit(&q->seg->seq->meta_failures, 1, memory_order_relaxed);
        set_no_space(q, SPACE_META, true, rc);
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
    q->meta_commit = durable;
    set_no_space(q, SPACE_META, false, 0);
    return 0;
}

/* A failed snapshot-anchor write: counted, shown in /health, retried with a doubling backoff on
 * a reopened handle (LMDB refuses a handle whose commit failed). */
static void meta_snapshot_failed(struct seq *q, u64 now, const char *why)
{
    struct seg_sequencer *c = q->seg->seq;
    atomic_fetch_add_explicit(&c->meta_failures, 1, memory_order_relaxed);
    atomic_store_explicit(&c->meta_failing, 1, memory_order_relaxed);
    q->meta_backoff_ms = q->meta_backoff_ms == 0 ? SEQ_META_INTERVAL_MS
                         : q->meta_backoff_ms * 2 > SEQ_META_BACKOFF_MAX_MS ? SEQ_META_BACKOFF_MAX_MS
                                                                             : q->meta_backoff_ms * 2;
    q->meta_retry_at_ms = now + q->meta_backoff_ms;
    log_warn("meta_snapshot_failed", "reason=\"%s\" retry_in_ms=%" PRIu64, why, q->meta_backoff_ms);
    if (q->meta != NULL)
        meta_reopen(q);
}

static int maintenance(struct seq *q)
{
    u64 durable = q->wal.durable_lsn;
    u64 now = mono_ms();
    if (q->meta == NULL && now >= q->meta_retry_at_ms) {
        char why[512] = "";
        if (meta_open(q->w->cfg->data_dir, false, &q->meta, why, sizeof(why)) != 0) {
            q->meta = NULL;
            meta_snapshot_failed(q, now, why);
        }
    }
    if (q->meta == NULL)
        return 0;
    u64 every = q->meta_no_space ? SEQ_SPACE_RETRY_MS : durable > q->meta_commit ? SEQ_META_INTERVAL_MS : SEQ_META_IDLE_MS;
    if (now - q->meta_at_ms >= every) {
        q->meta_at_ms = now;
        int rc = meta_commit_now(q, durable > q->meta_commit ? durable : q->meta_commit);
        if (rc != 0)
            return rc;
    }
    /* The snapshot anchor follows the applier's newest durable snapshot (never past the commit
     * point, which the metadata's invariants require). */
    u64 snap = atomic_load_explicit(&q->seg->app->snapshot_lsn, memory_order_acquire);
    if (snap > q->meta_snapshot && snap <= q->meta_commit && now >= q->meta_retry_at_ms) {
        char why[512] = "";
        if (meta_set_snapshot(q->meta, snap, why, sizeof(why)) == 0) {
            q->meta_snapshot = snap;
            q->meta_backoff_ms = 0;
            atomic_store_explicit(&q->seg->seq->meta_failing, 0, memory_order_relaxed);
        } else {
            meta_snapshot_failed(q, now, why);
        }
    }
    u64 prune = atomic_load_explicit(&q->seg->app->prune_below_lsn, memory_order_acquire);
    if (prune > q->pruned_below) {
        u32 removed = 0;
        int rc = wal_log_prune(&q->wal, prune, &removed);
        if (rc == 0) {
            q->pruned_below = prune;
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
    q->meta_commit = rec.commit_lsn;
    q->meta_snapshot = rec.snapshot_lsn;

    q->published_before = atomic_load(&q->seg->seq->published_lsn);
    /* Until a sequencer of this daemon has been ready, the applier has not started: it will
     * recover everything from disk itself, and nothing may go into a shared log no one reads
     * (a sequencer that died before its first READY would otherwise refill it and hang). */
    bool first_start = atomic_load(&q->seg->seq->ever_ready) == 0;
    if (first_start)
        q->published_before = UINT64_MAX; /* the applier recovers these from disk itself */
    /* Only the WAL after the newest snapshot is read: the applier starts from a snapshot, and
     * the retry cache is only a shortcut (older retries are logged and answered by the state
     * machine's record). Whole segments before it are not even opened, so a restart costs the
     * tail, not the whole log. Everything not yet published is after it: published >= applied
     * >= any snapshot. */
    u64 snap = 0;
    (void)io_posix.ops->list_dir(&io_posix, cfg->data_dir, newest_snapshot, &snap);
    if (!first_start && snap > q->published_before)
        snap = q->published_before;
    /* Frames known durable: the metadata's commit point, and what this daemon published (only
     * ever after its fsync). Damage at or below them is corruption, never a torn tail. */
    u64 synced = rec.commit_lsn;
    if (!first_start && q->published_before != UINT64_MAX && q->published_before > synced)
        synced = q->published_before;
    struct wal_log_options opt = { .segment_bytes = cfg->wal_segment_bytes, .synced_lsn = synced };
    struct wal_open_report rep;
    rc = wal_log_open(&q->wal, &io_posix, cfg->data_dir, &opt, snap == 0 ? 0 : snap + 1, replay_frame, q, &rep,
                      why, sizeof(why));
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
    if (rec.commit_lsn > rep.last_lsn) {
        log_error("meta_contradicts_wal",
                  "reason=\"the metadata's commit point %" PRIu64 " is beyond the WAL's last LSN %" PRIu64
                  " (acknowledged entries are missing)\"",
                  rec.commit_lsn, rep.last_lsn);
        return WORKER_EXIT_META;
    }
    if (!first_start && q->published_before != UINT64_MAX && rep.last_lsn < q->published_before) {
        log_error("wal_behind_shared_log",
                  "reason=\"the WAL ends at LSN %" PRIu64 " but LSN %" PRIu64 " was published as durable\"",
                  rep.last_lsn, q->published_before);
        return WORKER_EXIT_FATAL;
    }
    struct seg_sequencer *c = q->seg->seq;
    if (!first_start) {
        /* A restart within this daemon: the timeline the first sequencer decided goes on. */
        slot_clock_join(&q->clock, cfg->slot_duration_ms, atomic_load(&c->clock_logical0_ms),
                        atomic_load(&c->clock_boot0_ms), rep.last_slot);
    } else {
        struct clock_reading now = clock_read();
        struct clock_anchor saved = { .logical_ms = rec.clock.logical_ms, .wall_ms = rec.clock.wall_ms,
                                      .boot_ms = rec.clock.boot_ms, .boot_id = rec.clock.boot_id };
        slot_clock_start(&q->clock, cfg->slot_duration_ms, rep.last_slot, saved.logical_ms != 0 ? &saved : NULL,
                         &now);
        atomic_store(&c->clock_logical0_ms, q->clock.logical0_ms);
        atomic_store(&c->clock_boot0_ms, q->clock.boot0_ms);
        atomic_store(&c->clock_basis, q->clock.basis);
        log_always_info("slot_clock", "basis=%s slot=%" PRIu64 " last_logged_slot=%" PRIu64
                        " anchor_age_ms=%" PRIu64,
                        slot_clock_basis_name(q->clock.basis), slot_clock_slot(&q->clock, now.boot_ms), rep.last_slot,
                        saved.logical_ms != 0 && q->clock.logical0_ms > saved.logical_ms
                            ? q->clock.logical0_ms - saved.logical_ms : 0);
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
        u64 room = shlog_cap - ring_depth(seg->shlog);
        u32 limit = room < SEQ_BATCH_MAX ? (u32)room : SEQ_BATCH_MAX;
        if (limit == 0) { /* the applier is behind: backpressure, never overwrite */
            struct timespec ts = { 0, 200000 };
            nanosleep(&ts, NULL);
            continue;
        }
        u64 slot = now_slot(q);
        retry_cache_retire(&q->cache, slot);
        bool storage_ok = true;
        const void *p;
        u32 len;
        enum ring_status st = RING_OK;
        while (storage_ok && q->stash_count < limit && (st = ring_peek(seg->expire, &p, &len)) == RING_OK) {
            const struct msg_expire *m = p;
            struct sm_command cmd = { .kind = SM_CMD_EXPIRE, .reservation_id = m->reservation_id,
                                      .deadline_slot = m->deadline_slot };
            struct msg_tag none = { 0 };
            bool refused = writes_refused(q);
            storage_ok = refused || append(q, &none, &cmd, now_slot(q), false, &rc);
            ring_release(seg->expire);
            if (!storage_ok && wal_log_no_space(rc)) {
                /* Not logged: the applier proposes it again after its hold. Late, never early. */
                set_no_space(q, SPACE_SEGMENT, true, rc);
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
        if (!q->spare_no_space || mono_ms() >= q->space_retry_at_ms) {
            rc = wal_log_prepare(&q->wal, SEQ_SPARE_SLICE);
            if (wal_log_no_space(rc)) {
                set_no_space(q, SPACE_SPARE, true, rc);
            } else if (rc != 0) {
                return storage_failed(q, rc);
            } else {
                set_no_space(q, SPACE_SPARE, false, 0);
                if (q->wal.spare_ready) /* the next roll takes the spare: it cannot fail for space */
                    set_no_space(q, SPACE_SEGMENT, false, 0);
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
        if (q->wal.durable_lsn > q->meta_commit && meta_advance_commit(q->meta, q->wal.durable_lsn, why, sizeof(why)) != 0)
            log_warn("meta_commit_failed", "reason=\"%s\" at=stop", why);
        meta_close(q->meta);
    }
    wal_log_close(&q->wal);
    log_info("stopped", "durable_lsn=%" PRIu64, q->wal.durable_lsn);
    return WORKER_EXIT_OK;
}
