/*
 * wal/sequencer_cluster.c — the sequencer's cluster half: the replication core (replica/vsr.h)
 * wired to the WAL (wal/sequencing.h), the metadata and the segment, as sim/replica.c wires the
 * same cores in the simulator (wal/sequencer_shell.h says why here). It decides nothing: the
 * core decides; this file turns ring messages, clock readings and fsyncs into the core's events
 * and performs what it asks.
 *
 * What a cluster changes for the sequencer:
 *   - The shared log holds committed frames only. A frame made durable waits in a window by
 *     LSN, with the request it answers, until the core's commit point passes it; a view change
 *     that truncates it answers its request indefinite. So the applier, which applies whatever
 *     the shared log holds, never sees an entry a view change could remove, and the metadata's
 *     commit point is the core's, never merely what this disk holds.
 *   - Writes and expirations are logged only by the serving primary, within the core's room
 *     (pipeline, repair, a cluster time); on a replica that does not serve, writes are answered
 *     not_primary (definite: never logged). A primary that stops serving answers the requests of
 *     its uncommitted entries indefinite at once (their entries may still commit: a client
 *     retries by operation id and gets the one result).
 *   - Slots are stamped with cluster time; an expiration is logged only once cluster time is
 *     past its deadline by the clock's possible error (never early, DESIGN.md §3).
 *   - Reads: the applier numbers the reads it holds; a read-index round covers every read
 *     numbered before it began; its index and the last number it covers go to the segment.
 *
 *   - State transfer (wal/sequencer_image.c): a checkpoint prunes what a replica that is down
 *     or far behind lacks (vsr_prune_floor: a backup close behind is waited for, up to
 *     LAG_MAX entries); such a replica takes an image of a peer's snapshot instead.
 */
#include "config.h"

#include "wal/sequencer_shell.h"

#include "common/assert.h"
#include "net/proto.h"
#include "supervisor/log.h"
#include "wal/frame.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TICK_MS 2             /* the core's timers are tens of ms; a backup far behind repairs at each tick */
#define RECEIVE_MAX 1024      /* messages taken per step (then the batch is made durable) */
#define LAG_MAX ((u64)1 << 18) /* entries a live backup may lag before pruning leaves it an image to take */

/* ---- the core's environment ------------------------------------------------------------ */

static void env_send(void *ctx, u8 to, const u8 *msg, u32 len)
{
    struct seq *q = ctx;
    struct seg_replica *c = q->seg->rep;
    struct msg_peer *m = ring_claim(q->seg->peer_out);
    if (m == NULL || len > sizeof(m->bytes)) { /* the peer worker is behind or gone: delivery is not assured */
        atomic_fetch_add_explicit(&c->messages_out_dropped, 1, memory_order_relaxed);
        return;
    }
    m->replica = to;
    m->len = len;
    memcpy(m->bytes, msg, len);
    ring_publish_quiet(q->seg->peer_out, (u32)(offsetof(struct msg_peer, bytes) + len + 7) & ~7u);
    atomic_fetch_add_explicit(&c->messages_out, 1, memory_order_relaxed);
}

static int env_persist(void *ctx, const struct vsr_durable *d)
{
    struct seq *q = ctx;
    char why[512] = "";
    if (q->meta == NULL && meta_open(q->w->cfg->data_dir, false, &q->meta, why, sizeof(why)) != 0) {
        q->meta = NULL;
        log_warn("meta_views_failed", "reason=\"%s\"", why);
        return -EIO;
    }
    int rc = meta_set_views(q->meta, d->view, d->log_view, d->recovering, why, sizeof(why));
    if (rc != 0) {
        /* The core does not act on a view it could not make durable; it tries again. */
        atomic_fetch_add_explicit(&q->seg->seq->meta_failures, 1, memory_order_relaxed);
        log_warn("meta_views_failed", "view=%" PRIu64 " log_view=%" PRIu64 " errno=%d reason=\"%s\"", d->view,
                 d->log_view, -rc, why);
        meta_close(q->meta);
        q->meta = NULL;
        return rc;
    }
    log_info("view_durable", "view=%" PRIu64 " log_view=%" PRIu64 " recovering=%s", d->view, d->log_view,
             d->recovering ? "yes" : "no");
    return 0;
}

void seq_storage_dead(struct seq *q, int rc)
{
    if (!q->cl->dead) {
        q->cl->dead = true;
        q->cl->dead_rc = rc;
    }
}

static int env_append(void *ctx, const u8 *frame, u32 len)
{
    struct seq *q = ctx;
    if (q->cl->dead || q->core.batch_count >= q->core.cfg.batch_max)
        return -ENOBUFS;
    u32 at = q->core.batch_count;
    int rc = sequencing_append_frame(&q->core, frame, len);
    if (rc == 0)
        memset(&q->tags[at], 0, sizeof(q->tags[at])); /* a primary's entry: its client is there */
    else if (rc != -EINVAL)
        seq_storage_dead(q, rc);
    return rc;
}

void seq_pending_abandon(struct seq *q, struct seq_pending *p)
{
    if (p->tag.flags & MSG_TAG_VALID)
        seq_reply(q, &p->tag, PROTO_INDEFINITE, PROTO_INDEFINITE_VIEW_CHANGE);
    memset(&p->tag, 0, sizeof(p->tag));
}

static int env_truncate(void *ctx, u64 after_lsn)
{
    struct seq *q = ctx;
    ADB_ASSERT(after_lsn >= atomic_load(&q->seg->seq->published_lsn)); /* never below a commit point */
    for (u32 i = 0; i < q->core.batch_count; i++) {
        struct wal_frame f;
        u32 used;
        if (wal_frame_decode(q->core.batch[i].bytes, q->core.batch[i].len, &f, &used) == WAL_FRAME_OK &&
            f.lsn > after_lsn && (q->tags[i].flags & MSG_TAG_VALID))
            seq_reply(q, &q->tags[i], PROTO_INDEFINITE, PROTO_INDEFINITE_VIEW_CHANGE);
    }
    int rc = sequencing_truncate(&q->core, after_lsn);
    if (rc != 0) {
        seq_storage_dead(q, rc);
        return rc;
    }
    for (u32 i = 0; i < SEQ_PENDING; i++) {
        struct seq_pending *p = &q->cl->pending[i];
        if (p->lsn > after_lsn) {
            seq_pending_abandon(q, p);
            p->lsn = 0;
        }
    }
    struct seg_sequencer *c = q->seg->seq;
    atomic_store_explicit(&c->durable_lsn, q->core.wal.durable_lsn, memory_order_release);
    atomic_store_explicit(&c->sequenced_lsn, q->core.wal.durable_lsn, memory_order_relaxed);
    log_always_info("wal_truncated", "after_lsn=%" PRIu64 " reason=view_change", after_lsn);
    return 0;
}

static int env_read(void *ctx, u64 lsn, u8 *buf, u32 cap, u32 *len)
{
    struct seq *q = ctx;
    return sequencing_read(&q->core, lsn, buf, cap, len);
}

static void env_commit(void *ctx, u64 commit)
{
    struct seq *q = ctx;
    if (commit > q->cl->commit)
        q->cl->commit = commit;
}

static int env_image_read(void *ctx, u64 offset, u8 *buf, u32 cap, u32 *len, struct vsr_image *img)
{
    return seq_image_read(ctx, offset, buf, cap, len, img);
}

static int env_image_write(void *ctx, const struct vsr_image *img, u64 offset, const u8 *bytes, u32 len)
{
    return seq_image_write(ctx, img, offset, bytes, len);
}

static int env_image_install(void *ctx, const struct vsr_image *img, struct vsr_entry_header *at)
{
    struct seq *q = ctx;
    int rc = seq_image_install(q, img, at);
    if (rc == 0) {
        q->cl->image_lsn = at->lsn;
        q->cl->pruned_first = at->lsn + 1;
    }
    return rc;
}

/* ---- start ------------------------------------------------------------------------------ */

struct vsr_time seq_cluster_time(const struct seq *q)
{
    return (struct vsr_time){ .mono_ns = mono_ns(), .clock_ms = slot_clock_logical_ms(&q->core.clock, boot_ms()) };
}

bool seq_header_at(struct seq *q, u64 lsn, struct vsr_entry_header *h)
{
    u8 buf[WAL_FRAME_MAX];
    u32 len;
    struct wal_frame f;
    if (sequencing_read(&q->core, lsn, buf, sizeof(buf), &len) != 0 || wal_frame_decode_exact(buf, len, &f) != WAL_FRAME_OK)
        return false;
    vsr_entry_header_of_frame(&f, h);
    return true;
}

int seq_cluster_start(struct seq *q, const struct meta_record *rec, u64 wal_head, u64 committed)
{
    const struct config *cfg = q->w->cfg;
    struct seq_cluster *cl = calloc(1, sizeof(*cl));
    if (cl == NULL || (cl->pending = calloc(SEQ_PENDING, sizeof(*cl->pending))) == NULL) {
        free(cl);
        log_error("out_of_memory", "what=replication_core");
        return WORKER_EXIT_CRASH;
    }
    q->cl = cl;
    u64 ms = 1000000;
    u32 pipeline = cfg->pipeline_max < VSR_PIPELINE_MAX ? cfg->pipeline_max : VSR_PIPELINE_MAX;
    struct vsr_config vc = { .cluster_id = rec->cluster_id, .replica = (u8)rec->replica_id,
                             .replica_count = (u8)rec->replica_count, .pipeline_max = pipeline,
                             .heartbeat_ns = cfg->peer_heartbeat_ms * ms, .ping_ns = 2 * cfg->peer_heartbeat_ms * ms,
                             .primary_timeout_ns = cfg->primary_timeout_ms * ms,
                             .view_change_timeout_ns = cfg->view_change_timeout_ms * ms,
                             .repair_ns = cfg->repair_interval_ms * ms,
                             .clock_window_ns = 40 * cfg->peer_heartbeat_ms * ms,
                             .clock_tolerance_ns = cfg->clock_tolerance_ms * ms, .lag_max = LAG_MAX,
                             .seed = mono_ns() ^ ((u64)getpid() << 32) ^ rec->replica_id };
    struct vsr_env env = { .ctx = q, .send = env_send, .persist = env_persist, .append = env_append,
                           .truncate = env_truncate, .read = env_read, .commit = env_commit,
                           .image_read = env_image_read, .image_write = env_image_write,
                           .image_install = env_image_install };
    vsr_init(&cl->core, &vc, &env);
    /* The core learns the log's last headers: the intact run that ends at the head. */
    u64 first = q->core.wal.segment_count > 0 ? q->core.wal.segments[0].first_lsn : wal_head + 1;
    u64 from = wal_head >= VSR_JOURNAL ? wal_head - VSR_JOURNAL + 1 : 1;
    if (from < first)
        from = first;
    struct vsr_entry_header h;
    for (u64 lsn = wal_head; lsn >= from && lsn > 0; lsn--) {
        if (!seq_header_at(q, lsn, &h)) {
            from = lsn + 1;
            break;
        }
    }
    for (u64 lsn = from; lsn <= wal_head && lsn > 0; lsn++)
        if (seq_header_at(q, lsn, &h))
            vsr_load_entry(&cl->core, &h);
    seq_image_init(q, rec);
    if (rec->base.lsn != 0 && rec->base.lsn == wal_head && !seq_header_at(q, wal_head, &h))
        vsr_load_entry(&cl->core, &cl->img.base); /* the WAL restarted after it and holds nothing yet */
    struct vsr_start st = { .durable = { .view = rec->view, .log_view = rec->last_normal_view,
                                         .recovering = rec->status == META_STATUS_RECOVERING },
                            .commit = committed,
                            .wal_head = wal_head,
                            .fresh = false, /* a restart never claims view 0 as new: a view change elects */
                            .image_lsn = 0, /* told once the applier says which snapshot is newest */
                            .wal_first = first };
    vsr_start(&cl->core, &st, seq_cluster_time(q));
    cl->commit = cl->core.commit;
    cl->pruned_first = 0;
    struct seg_replica *r = q->seg->rep;
    atomic_store(&r->replica, (u32)rec->replica_id);
    atomic_store(&r->replica_count, (u32)rec->replica_count);
    log_always_info("replica_started", "replica=%" PRIu64 " of=%" PRIu64 " view=%" PRIu64 " log_view=%" PRIu64
                    " wal_head=%" PRIu64 " commit=%" PRIu64 " status=%s recovering=%s",
                    rec->replica_id, rec->replica_count, rec->view, rec->last_normal_view, wal_head,
                    st.commit, vsr_status_name(cl->core.status), st.durable.recovering ? "yes" : "no");
    return 0;
}

void seq_cluster_stop(struct seq *q)
{
    if (q->cl == NULL)
        return;
    seq_image_stop(q);
    free(q->cl->pending);
    free(q->cl);
    q->cl = NULL;
}

/* ---- events ----------------------------------------------------------------------------- */

void seq_cluster_receive(struct seq *q)
{
    struct seq_cluster *cl = q->cl;
    struct ring *in = q->seg->peer_in;
    u32 n = 0;
    const void *p;
    u32 len;
    while (n < RECEIVE_MAX && !cl->dead && q->core.batch_count < q->core.cfg.batch_max &&
           ring_peek(in, &p, &len) == RING_OK) {
        const struct msg_peer *m = p;
        if (m->len <= sizeof(m->bytes) && len >= offsetof(struct msg_peer, bytes) + m->len)
            vsr_on_message(&cl->core, seq_cluster_time(q), m->bytes, m->len);
        ring_release(in);
        n++;
    }
    if (n > 0)
        atomic_fetch_add_explicit(&q->seg->rep->messages_in, n, memory_order_relaxed);
    struct vsr_time t = seq_cluster_time(q);
    if (t.mono_ns - cl->last_tick_ns >= (u64)TICK_MS * 1000000u && !cl->dead) {
        cl->last_tick_ns = t.mono_ns;
        vsr_tick(&cl->core, t);
    }
    /* Cluster time, read once a step for the slots, the expirations and the status. */
    struct vsr *v = &cl->core;
    u64 ms, slot_ms = q->core.cfg.slot_ms;
    cl->synced = vsr_cluster_clock(v, t, &ms);
    cl->cluster_ms = cl->synced ? ms : 0;
    /* The last deadline slot that may expire now: cluster time less the clock's possible
     * error, and only on the serving primary. */
    u64 lag = (vsr_clock_error_ms(v) + slot_ms - 1) / slot_ms;
    u64 slot = cl->cluster_ms / slot_ms;
    cl->expire_slot = vsr_serving(v) && cl->synced && slot > lag ? slot - lag : 0;
}

u32 seq_cluster_room(struct seq *q)
{
    struct vsr *v = &q->cl->core;
    q->core.view = v->view;
    q->core.cluster_ms = q->cl->cluster_ms;
    return vsr_prepare_room(v, seq_cluster_time(q));
}

bool seq_cluster_expiry_due(struct seq *q, u64 deadline_slot)
{
    return deadline_slot < q->cl->expire_slot;
}

void seq_cluster_sequenced(struct seq *q, u32 index)
{
    const struct sequencing_frame *f = &q->core.batch[index];
    vsr_on_sequenced(&q->cl->core, seq_cluster_time(q), f->bytes, f->len);
}

void seq_cluster_ship(struct seq *q)
{
    vsr_flush(&q->cl->core, seq_cluster_time(q));
}

void seq_cluster_durable(struct seq *q, u32 count)
{
    struct seq_cluster *cl = q->cl;
    for (u32 i = 0; i < count; i++) {
        const struct sequencing_frame *f = &q->core.batch[i];
        struct wal_frame wf;
        ADB_ASSERT(wal_frame_decode_exact(f->bytes, f->len, &wf) == WAL_FRAME_OK);
        struct seq_pending *p = &cl->pending[wf.lsn % SEQ_PENDING];
        if (p->lsn != 0 && p->lsn != wf.lsn)
            seq_pending_abandon(q, p); /* pushed out long uncommitted: its client times out anyway */
        p->lsn = wf.lsn;
        p->tag = q->tags[i];
        p->len = f->len;
        memcpy(p->frame, f->bytes, f->len);
    }
    vsr_on_durable(&cl->core, seq_cluster_time(q), q->core.wal.durable_lsn);
}

/* Committed frames after published_lsn into the shared log, from the window or the WAL. */
static void publish_committed(struct seq *q)
{
    struct seq_cluster *cl = q->cl;
    struct seg_sequencer *c = q->seg->seq;
    u64 target = cl->commit < q->core.wal.durable_lsn ? cl->commit : q->core.wal.durable_lsn;
    u64 published = atomic_load_explicit(&c->published_lsn, memory_order_relaxed);
    u64 from = published;
    while (published < target) {
        struct shlog_entry *e = ring_claim(q->seg->shlog);
        if (e == NULL)
            break; /* the applier is behind: the rest next time */
        u64 lsn = published + 1;
        struct seq_pending *p = &cl->pending[lsn % SEQ_PENDING];
        if (p->lsn == lsn) {
            e->tag = p->tag;
            e->frame_len = p->len;
            memcpy(e->frame, p->frame, p->len);
            p->lsn = 0;
        } else {
            u32 len = 0;
            int rc = sequencing_read(&q->core, lsn, e->frame, sizeof(e->frame), &len);
            if (rc != 0) {
                log_warn("committed_entry_unreadable", "lsn=%" PRIu64 " errno=%d action=wait_for_repair", lsn, -rc);
                break;
            }
            memset(&e->tag, 0, sizeof(e->tag));
            e->frame_len = len;
        }
        ring_publish_quiet(q->seg->shlog, sizeof(*e));
        published = lsn;
    }
    if (published != from) {
        atomic_store_explicit(&c->published_lsn, published, memory_order_release);
        ring_notify(q->seg->shlog);
    }
}

/* A primary that stops serving: the requests of its uncommitted entries are answered now
 * (the committed ones still waiting for room in the shared log get their results). */
static void serving_changed(struct seq *q)
{
    struct seq_cluster *cl = q->cl;
    bool serving = vsr_serving(&cl->core);
    if (cl->serving && !serving) {
        for (u32 i = 0; i < SEQ_PENDING; i++)
            if (cl->pending[i].lsn > cl->commit)
                seq_pending_abandon(q, &cl->pending[i]);
    }
    if (cl->serving != serving)
        log_always_info(serving ? "serving" : "not_serving", "view=%" PRIu64 " commit=%" PRIu64 " op=%" PRIu64,
                        cl->core.view, cl->commit, cl->core.op);
    cl->serving = serving;
}

/* Read-index rounds for the reads the applier holds. */
static void read_rounds(struct seq *q)
{
    struct seq_cluster *cl = q->cl;
    struct seg_replica *r = q->seg->rep;
    struct vsr *v = &cl->core;
    u64 wanted = atomic_load_explicit(&q->seg->app->reads_wanted, memory_order_acquire);
    if (cl->round.active) {
        if (vsr_read_failed(v, cl->round.ticket)) {
            atomic_store_explicit(&r->read_failed_for, cl->round.covers, memory_order_release);
            doorbell_ring(q->seg->bell_applier);
            cl->round.active = false;
        } else if (vsr_read_ready(v, cl->round.ticket)) {
            atomic_store_explicit(&r->read_index, cl->round.index, memory_order_relaxed);
            atomic_store_explicit(&r->read_ready_for, cl->round.covers, memory_order_release);
            doorbell_ring(q->seg->bell_applier);
            u64 us = (mono_ns() - cl->round.began_ns) / 1000u;
            atomic_fetch_add_explicit(&r->read_round_us_sum, us, memory_order_relaxed);
            atomic_fetch_add_explicit(&r->read_round_us_count, 1, memory_order_relaxed);
            cl->round.active = false;
        }
    }
    if (cl->round.active || wanted <= cl->reads_seen)
        return;
    u64 ticket, index;
    if (vsr_read_begin(v, seq_cluster_time(q), &ticket, &index)) {
        cl->round = (struct seq_round){ .active = true, .ticket = ticket, .index = index, .covers = wanted,
                                         .began_ns = mono_ns() };
        cl->reads_seen = wanted;
        vsr_tick(v, seq_cluster_time(q)); /* the round's heartbeats now, not at the next tick */
    } else if (!vsr_serving(v)) {
        atomic_store_explicit(&r->read_failed_for, wanted, memory_order_release); /* not_primary */
        doorbell_ring(q->seg->bell_applier);
        cl->reads_seen = wanted;
    }
    /* Serving but repairing: the reads wait for the log to be whole. */
}

static void publish_status(struct seq *q)
{
    struct seq_cluster *cl = q->cl;
    struct vsr *v = &cl->core;
    struct seg_replica *r = q->seg->rep;
#define PUT(field, value) atomic_store_explicit(&r->field, (value), memory_order_relaxed)
    PUT(status, (u32)v->status);
    PUT(serving, vsr_serving(v) ? 1u : 0u);
    PUT(primary, (u32)vsr_primary_of(v, v->view));
    PUT(recovering, v->recovering ? 1u : 0u);
    PUT(clock_synced, cl->synced ? 1u : 0u);
    PUT(cluster_ms, cl->cluster_ms);
    PUT(expire_slot, cl->expire_slot);
    PUT(view, v->view);
    PUT(log_view, v->log_view);
    PUT(commit_lsn, cl->commit);
    PUT(op_lsn, v->op);
    u64 now = mono_ns();
    for (u32 i = 0; i < v->cfg.replica_count && i < VSR_REPLICAS_MAX; i++) {
        PUT(peer_op[i], i == v->cfg.replica ? v->wal_head : v->peer_op[i]);
        u64 seen = v->peer_pinged_ns[i];
        PUT(peer_seen_ms[i], i == v->cfg.replica ? now / 1000000u : seen / 1000000u);
    }
    const struct vsr_counters *k = &v->count;
    PUT(view_changes, k->view_changes);
    PUT(prepares_sent, k->prepares_sent);
    PUT(prepares_resent, k->prepares_resent);
    PUT(prepare_oks, k->prepare_oks);
    PUT(repairs_requested, k->repairs_requested);
    PUT(repairs_served, k->repairs_served);
    PUT(repairs_appended, k->repairs_appended);
    PUT(truncations, k->truncations);
    PUT(truncated_entries, k->truncated_entries);
    PUT(dropped_decode, k->dropped_decode);
    PUT(dropped_cluster, k->dropped_cluster);
    PUT(dropped_replica, k->dropped_replica);
    PUT(dropped_view, k->dropped_view);
    PUT(dropped_status, k->dropped_status);
    PUT(read_rounds, k->read_rounds);
    PUT(clock_unsynced_refusals, k->clock_unsynced_refusals);
    PUT(transfers_started, k->transfers_started);
    PUT(transfers_installed, k->transfers_installed);
    PUT(transfers_abandoned, k->transfers_abandoned);
    PUT(transfer_failures, k->transfer_failures);
    PUT(chunks_served, k->chunks_served);
    PUT(chunks_received, k->chunks_received);
    PUT(recoveries, k->recoveries);
    PUT(persist_failures, k->persist_failures);
#undef PUT
}

int seq_cluster_step(struct seq *q)
{
    struct seq_cluster *cl = q->cl;
    if (!cl->dead) {
        publish_committed(q);
        serving_changed(q);
        read_rounds(q);
        seq_image_step(q);
        publish_status(q);
    }
    ring_notify(q->seg->peer_out);
    return cl->dead ? cl->dead_rc : 0;
}

u64 seq_cluster_commit(const struct seq *q)
{
    u64 published = atomic_load(&q->seg->seq->published_lsn);
    return q->cl->commit < published ? q->cl->commit : published;
}

int seq_cluster_wait_ms(const struct seq *q)
{
    (void)q;
    return TICK_MS;
}

u64 seq_cluster_prune_floor(const struct seq *q, u64 applier_floor)
{
    /* What a backup heard from lately lacks stays, unless it is more than LAG_MAX behind; a
     * replica that is down or that far behind takes an image when it is back. */
    u64 keep = vsr_prune_floor(&q->cl->core);
    return keep < applier_floor ? keep : applier_floor;
}

void seq_cluster_pruned(struct seq *q, u64 snapshot_lsn)
{
    struct seq_cluster *cl = q->cl;
    u64 first = q->core.wal.segment_count > 0 ? q->core.wal.segments[0].first_lsn : q->core.wal.durable_lsn + 1;
    seq_image_snapshot(q, snapshot_lsn);
    if (snapshot_lsn < cl->image_lsn || first > snapshot_lsn + 1 ||
        (snapshot_lsn == cl->image_lsn && first <= cl->pruned_first))
        return;
    cl->image_lsn = snapshot_lsn;
    if (first > cl->pruned_first)
        cl->pruned_first = first;
    vsr_on_checkpoint(&cl->core, snapshot_lsn, cl->pruned_first);
}
