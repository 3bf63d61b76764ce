/*
 * sim/replica.c — one simulated replica: a shell over the production cores, as the daemon's
 * workers are. The sequencer's core owns the WAL on the simulated disk; the replication core
 * decides; the applier's core applies committed entries to the state machine. This file turns
 * the simulator's events into calls and does what comes back — and decides nothing itself.
 */
#include "config.h"

#include "sim/internal.h"

#include "common/assert.h"
#include "wal/command.h"
#include "wal/frame.h"
#include "wal/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WAL_DIR "wal"
#define SEGMENT_BYTES (256u << 10)

/* ---- clocks: the boot clock counts from this boot, the wall clock may be set wrong --------- */

static u64 boot_ms(const struct sim_replica *r)
{
    return (sim_now(r->w) - r->boot_ns) / 1000000u;
}

static u64 wall_ms(const struct sim_replica *r)
{
    return (u64)((i64)(SIM_EPOCH_MS + sim_now(r->w) / 1000000u) + r->wall_offset_ms);
}

u64 sim_replica_clock_ms(const struct sim_replica *r)
{
    return slot_clock_logical_ms(&r->seq.clock, boot_ms(r));
}

struct vsr_time sim_replica_time(const struct sim_replica *r)
{
    return (struct vsr_time){ .mono_ns = sim_now(r->w), .clock_ms = sim_replica_clock_ms(r) };
}

/* ---- the replication core's environment ----------------------------------------------------- */

static void env_send(void *ctx, u8 to, const u8 *msg, u32 len)
{
    struct sim_replica *r = ctx;
    sim_net_send(sim_network(r->w), sim_now(r->w), r->id, to, msg, len);
}

static int env_persist(void *ctx, const struct vsr_durable *d)
{
    struct sim_replica *r = ctx;
    if (sim_persist_fault(r->w))
        return -EIO;
    ADB_ASSERT(d->view >= r->meta.view && d->log_view >= r->meta.log_view);
    r->meta = *d;
    sim_trace(r->w, "r%u persist view=%llu log_view=%llu", r->id, (unsigned long long)d->view,
              (unsigned long long)d->log_view);
    return 0;
}

static int env_append(void *ctx, const u8 *frame, u32 len)
{
    struct sim_replica *r = ctx;
    if (r->seq.batch_count >= SIM_BATCH_MAX)
        return -ENOBUFS;
    int rc = sequencing_append_frame(&r->seq, frame, len);
    if (rc != 0 && rc != -EINVAL)
        r->dead = true;
    if (r->w && rc == 0) {
        struct wal_frame tf;
        if (wal_frame_decode_exact(frame, len, &tf) == WAL_FRAME_OK)
            sim_trace(r->w, "r%u append lsn %llu (view %llu, crc %08x)", r->id,
                      (unsigned long long)tf.lsn, (unsigned long long)tf.view, tf.crc);
    }
    return rc;
}

static int env_truncate(void *ctx, u64 after_lsn)
{
    struct sim_replica *r = ctx;
    ADB_ASSERT(after_lsn >= r->applied);
    int rc = sequencing_truncate(&r->seq, after_lsn);
    if (rc != 0)
        r->dead = true;
    for (u32 i = 0; i < SIM_SHARED_LOG; i++)
        if (r->shared_log[i].lsn > after_lsn)
            r->shared_log[i].lsn = 0;
    sim_trace(r->w, "r%u truncate after %llu rc=%d", r->id, (unsigned long long)after_lsn, rc);
    return rc;
}

static int env_read(void *ctx, u64 lsn, u8 *buf, u32 cap, u32 *len)
{
    struct sim_replica *r = ctx;
    return sequencing_read(&r->seq, lsn, buf, cap, len);
}

static void env_commit(void *ctx, u64 commit)
{
    struct sim_replica *r = ctx;
    if (commit > r->commit_target)
        r->commit_target = commit;
}

/* ---- format, start, stop ---------------------------------------------------------------- */

void sim_replica_format(struct sim_replica *r, struct sim_world *w, u8 id, u64 seed)
{
    memset(r, 0, sizeof(*r));
    r->w = w;
    r->id = id;
    r->disk = io_fault_create(seed);
    ADB_ASSERT(r->disk != NULL);
    struct io *io = io_fault_io(r->disk);
    ADB_ASSERT(io->ops->mkdir(io, WAL_DIR) == 0 && io->ops->sync_dir(io, "") == 0);
    struct wal_log_options opt = { .segment_bytes = SEGMENT_BYTES };
    char why[256];
    ADB_ASSERT(wal_log_format(io, WAL_DIR, &opt, why, sizeof(why)) == 0);
}

static void apply_frame(struct sim_replica *r, const u8 *frame, u32 len)
{
    struct applying_result res;
    char why[256];
    enum applying_entry e = applying_frame(&r->applying, frame, len, &res, why, sizeof(why));
    if (e == APPLYING_DAMAGED) {
        sim_fail(r->w, "r%u: a committed entry does not apply: %s", r->id, why);
        return;
    }
    if (e == APPLYING_SKIPPED)
        return;
    r->applied = res.lsn;
    sim_check_apply(r->w, r->id, frame, len, &res);
}

static void shared_log_put(struct sim_replica *r, const u8 *frame, u32 len, u64 lsn)
{
    struct sim_logged *e = &r->shared_log[lsn % SIM_SHARED_LOG];
    e->lsn = lsn;
    e->len = len;
    memcpy(e->bytes, frame, len);
}

/* Committed entry lsn as the applier gets it: from the shared log, else read from the WAL. */
static int committed_frame(struct sim_replica *r, u64 lsn, u8 *buf, u32 *len)
{
    struct sim_logged *e = &r->shared_log[lsn % SIM_SHARED_LOG];
    if (e->lsn == lsn) {
        memcpy(buf, e->bytes, e->len);
        *len = e->len;
        return 0;
    }
    return sequencing_read(&r->seq, lsn, buf, WAL_FRAME_MAX, len);
}

static int replayed(void *ctx, const u8 *frame, u32 len, u64 lsn)
{
    struct sim_replica *r = ctx;
    shared_log_put(r, frame, len, lsn);
    struct wal_frame f;
    ADB_ASSERT(wal_frame_decode_exact(frame, len, &f) == WAL_FRAME_OK);
    struct vsr_entry_header h;
    vsr_entry_header_of_frame(&f, &h);
    vsr_load_entry(&r->vsr, &h);
    if (lsn <= r->meta_commit)
        apply_frame(r, frame, len);
    return 0;
}

bool sim_replica_start(struct sim_replica *r)
{
    struct sim_world *w = r->w;
    const struct sm_config *smc = sim_sm_config(w);
    char why[512];
    ADB_ASSERT(sm_create(&r->sm, smc, why, sizeof(why)));
    r->sm_made = true;
    applying_init(&r->applying, &r->sm, r->due, SIM_DUE_MAX);
    /* A small retry cache: retries of older operations miss it and reach the log, so the state
     * machine's own dedupe is exercised too (the cache only saves frames). */
    u32 cache_cap = 64;
    r->cache_mem = calloc(1, retry_cache_bytes(cache_cap));
    r->batch = calloc(SIM_BATCH_MAX, sizeof(*r->batch));
    r->shared_log = calloc(SIM_SHARED_LOG, sizeof(*r->shared_log));
    ADB_ASSERT(r->cache_mem && r->batch && r->shared_log);
    retry_cache_init(&r->cache, r->cache_mem, cache_cap, smc->dedupe_window_slots);
    struct sequencing_config sc = { .batch_max = SIM_BATCH_MAX, .slot_ms = SIM_SLOT_MS,
                                    .segment_bytes = SEGMENT_BYTES, .meta_interval_ms = 1000,
                                    .meta_idle_ms = 1000, .meta_backoff_max_ms = 30000,
                                    .space_retry_ms = 1000 };
    sequencing_init(&r->seq, &sc, &r->cache, r->batch);
    struct vsr_config vc = sim_vsr_config(w, r->id);
    struct vsr_env env = { .ctx = r, .send = env_send, .persist = env_persist,
                           .append = env_append, .truncate = env_truncate, .read = env_read,
                           .commit = env_commit };
    vsr_init(&r->vsr, &vc, &env);
    r->applied = 0;
    r->commit_target = 0;
    r->expire_barrier = 0;
    r->dead = false;
    memset(r->pending, 0, sizeof(r->pending));

    /* A restart is a reboot: a new boot id, so the slot timeline resumes by the wall clock. */
    r->boot_ns = sim_now(w);
    r->boot_id = ((u128)r->id << 64) | (u128)(sim_now(w) + 1);
    struct sequencing_restart seen = { .ever_ready = true, .meta_commit_lsn = r->meta_commit };
    struct sequencing_open plan;
    struct wal_open_report rep;
    enum sequencing_opened verdict;
    int rc = sequencing_open(&r->seq, io_fault_io(r->disk), WAL_DIR, &seen, replayed, r, &plan,
                             &rep, &verdict, why, sizeof(why));
    if (rc != 0) {
        sim_trace(w, "r%u cannot open its WAL: %s (faulted)", r->id, why);
        sim_replica_stop(r);
        r->faulted = true;
        return false;
    }
    struct clock_reading now = { .wall_ms = wall_ms(r), .boot_ms = 0, .boot_id = r->boot_id };
    sequencing_start_clock(&r->seq, rep.last_slot, r->anchor_set ? &r->anchor : NULL, &now);
    struct vsr_start st = { .durable = r->meta, .commit = r->meta_commit,
                            .wal_head = rep.frames ? rep.last_lsn : 0, .fresh = !r->started };
    r->started = true;
    if (rep.last_lsn < r->meta_commit)
        st.commit = r->meta_commit; /* repaired from the others */
    vsr_start(&r->vsr, &st, sim_replica_time(r));
    r->up = true;
    sim_trace(w, "r%u start view=%llu log_view=%llu wal_head=%llu commit=%llu status=%s clock=%llu",
              r->id, (unsigned long long)r->meta.view, (unsigned long long)r->meta.log_view,
              (unsigned long long)st.wal_head, (unsigned long long)r->meta_commit,
              vsr_status_name(r->vsr.status), (unsigned long long)sim_replica_clock_ms(r));
    return true;
}

void sim_replica_stop(struct sim_replica *r)
{
    sequencing_close(&r->seq);
    if (r->sm_made)
        sm_destroy(&r->sm);
    r->sm_made = false;
    free(r->cache_mem);
    free(r->batch);
    free(r->shared_log);
    r->cache_mem = NULL;
    r->batch = NULL;
    r->shared_log = NULL;
    r->up = false;
}

void sim_replica_destroy(struct sim_replica *r)
{
    if (r->up)
        sim_replica_stop(r);
    io_fault_destroy(r->disk);
}

/* ---- after every event: make the batch durable, apply what is committed, answer ----------- */

static void reply(struct sim_replica *r, u32 client, u64 attempt, const struct sim_msg *in)
{
    struct sim_msg mm;
    memset(&mm, 0, sizeof(mm)); /* padding too: the run's digest covers every byte sent */
    mm.type = in->type;
    mm.cmd = in->cmd;
    mm.out = in->out;
    mm.res = in->res;
    mm.served_lsn = in->served_lsn;
    mm.read_status = in->read_status;
    struct sim_msg *m = &mm;
    m->magic = SIM_MSG_MAGIC;
    m->attempt = attempt;
    m->view = r->vsr.view;
    sim_net_send(sim_client_network(r->w), sim_now(r->w), r->id, client, m, sizeof(*m));
}

static struct sim_pending *pending_slot(struct sim_replica *r)
{
    for (u32 i = 0; i < SIM_PENDING_MAX; i++)
        if (!r->pending[i].used)
            return &r->pending[i];
    return NULL;
}

static void answer_pending(struct sim_replica *r)
{
    bool serving = vsr_serving(&r->vsr);
    for (u32 i = 0; i < SIM_PENDING_MAX; i++) {
        struct sim_pending *p = &r->pending[i];
        if (!p->used)
            continue;
        if (!serving) {
            p->used = false; /* the client times out: indefinite */
            continue;
        }
        struct sim_msg m = { .type = SIM_REP_COMMITTED };
        if (p->kind == 3) {
            if (vsr_read_failed(&r->vsr, p->ticket)) {
                p->used = false;
                continue;
            }
            if (!vsr_read_ready(&r->vsr, p->ticket) || r->applied < p->index)
                continue;
            m.type = SIM_REP_READ;
            m.cmd = p->cmd;
            m.served_lsn = r->applied;
            m.read_status = sm_get_resource(&r->sm, p->cmd.resource_id, 0, &m.res);
            reply(r, p->client, p->attempt, &m);
            p->used = false;
            continue;
        }
        if (r->applied < p->lsn)
            continue;
        struct sm_outcome out;
        enum applying_retry a = applying_retry(&r->applying, &p->cmd, p->lsn, &out);
        if (a == APPLYING_RETRY_ANSWER) {
            m.out = out;
            m.cmd = p->cmd;
            reply(r, p->client, p->attempt, &m);
        }
        /* Otherwise the entry at that LSN is another (a view change replaced it) or the record
         * is gone: the client's retry is logged and the state machine's dedupe answers. */
        p->used = false;
    }
}

static void flush(struct sim_replica *r)
{
    if (!r->up)
        return;
    for (int round = 0; round < 4 && !r->dead; round++) {
        if (r->seq.batch_count > 0) {
            u32 count;
            int rc = sequencing_commit(&r->seq, &count);
            if (rc != 0) {
                r->dead = true;
                break;
            }
            for (u32 i = 0; i < count; i++) {
                struct wal_frame f;
                ADB_ASSERT(wal_frame_decode_exact(r->batch[i].bytes, r->batch[i].len, &f) ==
                           WAL_FRAME_OK);
                shared_log_put(r, r->batch[i].bytes, r->batch[i].len, f.lsn);
            }
            vsr_on_durable(&r->vsr, sim_replica_time(r), r->seq.wal.durable_lsn);
        }
        bool progressed = false;
        while (r->applied < r->commit_target && !r->dead) {
            u8 frame[WAL_FRAME_MAX];
            u32 len;
            u64 lsn = r->applied + 1;
            int rc = committed_frame(r, lsn, frame, &len);
            if (rc != 0) {
                sim_trace(r->w, "r%u cannot read committed entry %llu: %d", r->id,
                          (unsigned long long)lsn, rc);
                break;
            }
            apply_frame(r, frame, len);
            if (r->applied != lsn)
                break;
            progressed = true;
        }
        if (r->applied > r->meta_commit)
            r->meta_commit = r->applied; /* a lower bound of the commit point, kept durable */
        if (!progressed && r->seq.batch_count == 0)
            break;
    }
    if (r->dead) {
        sim_trace(r->w, "r%u storage failed: the process dies", r->id);
        return;
    }
    answer_pending(r);
    /* The slot timeline's anchor, as the daemon's sequencer records it. */
    r->anchor = (struct clock_anchor){ .logical_ms = sim_replica_clock_ms(r), .wall_ms = wall_ms(r),
                                       .boot_ms = boot_ms(r), .boot_id = r->boot_id };
    r->anchor_set = true;
}

/* Primary: log one entry the sequencer made (a frame in its batch). */
static void sequenced(struct sim_replica *r, const struct sequencing_result *res)
{
    const struct sequencing_frame *f = &r->batch[res->index];
    sim_note_sequenced(r->w, f->bytes, f->len);
    vsr_on_sequenced(&r->vsr, sim_replica_time(r), f->bytes, f->len);
}

static void cap_slots(struct sim_replica *r)
{
    struct vsr_time t = sim_replica_time(r);
    u64 ms;
    r->seq.view = r->vsr.view;
    r->seq.cluster_ms = UINT64_MAX;
    if (r->vsr.cfg.replica_count > 1)
        r->seq.cluster_ms = vsr_cluster_clock(&r->vsr, t, &ms) ? ms : 0;
}

static void propose_expirations(struct sim_replica *r)
{
    if (!vsr_serving(&r->vsr) || r->applied < r->expire_barrier)
        return;
    cap_slots(r);
    u32 room = vsr_prepare_room(&r->vsr, sim_replica_time(r));
    if (room == 0)
        return;
    u64 slot = sequencing_slot(&r->seq, boot_ms(r));
    /* Due only once the cluster time is past the deadline by its possible error. */
    u64 lag_slots = (vsr_clock_error_ms(&r->vsr) + SIM_SLOT_MS - 1) / SIM_SLOT_MS;
    u32 n = slot > lag_slots ? applying_due(&r->applying, slot - lag_slots) : 0;
    for (u32 i = 0; i < n && i < room && r->seq.batch_count < SIM_BATCH_MAX; i++) {
        struct sequencing_result res = sequencing_expire(&r->seq, r->due[i].reservation_id,
                                                         r->due[i].deadline_slot, boot_ms(r),
                                                         boot_ms(r));
        if (res.action == SEQUENCING_STORAGE_FAILED) {
            r->dead = true;
            return;
        }
        if (res.action != SEQUENCING_APPENDED)
            return;
        sim_trace(r->w, "r%u lsn %llu: expire (deadline slot %llu) at slot %llu", r->id,
                  (unsigned long long)res.lsn, (unsigned long long)r->due[i].deadline_slot,
                  (unsigned long long)slot);
        sequenced(r, &res);
        r->expire_barrier = res.lsn;
    }
}

void sim_replica_tick(struct sim_replica *r)
{
    if (!r->up || sim_now(r->w) < r->paused_until_ns)
        return;
    vsr_tick(&r->vsr, sim_replica_time(r));
    propose_expirations(r);
    flush(r);
}

static void client_request(struct sim_replica *r, u32 from, const struct sim_msg *q)
{
    struct sim_msg m = { .cmd = q->cmd };
    if (!vsr_serving(&r->vsr)) {
        m.type = SIM_REP_NOT_PRIMARY;
        reply(r, from, q->attempt, &m);
        return;
    }
    struct sim_pending *p = pending_slot(r);
    if (!p) {
        m.type = SIM_REP_BUSY;
        reply(r, from, q->attempt, &m);
        return;
    }
    struct vsr_time t = sim_replica_time(r);
    if (q->type == SIM_REQ_READ) {
        u64 ticket, index;
        if (!vsr_read_begin(&r->vsr, t, &ticket, &index)) {
            m.type = SIM_REP_BUSY; /* repairing: not yet */
            reply(r, from, q->attempt, &m);
            return;
        }
        *p = (struct sim_pending){ .used = true, .kind = 3, .client = from, .attempt = q->attempt,
                                   .cmd = q->cmd, .ticket = ticket, .index = index };
        return;
    }
    cap_slots(r);
    if (vsr_prepare_room(&r->vsr, t) == 0 || r->seq.batch_count >= SIM_BATCH_MAX) {
        m.type = SIM_REP_BUSY;
        reply(r, from, q->attempt, &m);
        return;
    }
    struct sequencing_result res = sequencing_write(&r->seq, &q->cmd, false, boot_ms(r), boot_ms(r));
    switch (res.action) {
    case SEQUENCING_APPENDED:
        sim_trace(r->w, "r%u lsn %llu: %s, slot %llu (own clock %llu, cluster %llu)", r->id,
                  (unsigned long long)res.lsn, sm_command_name(q->cmd.kind),
                  (unsigned long long)r->seq.clock.floor_slot,
                  (unsigned long long)sim_replica_clock_ms(r),
                  (unsigned long long)r->seq.cluster_ms);
        sequenced(r, &res);
        *p = (struct sim_pending){ .used = true, .kind = 1, .client = from, .attempt = q->attempt,
                                   .cmd = q->cmd, .lsn = res.lsn };
        return;
    case SEQUENCING_ANSWER_RETRY:
        *p = (struct sim_pending){ .used = true, .kind = 2, .client = from, .attempt = q->attempt,
                                   .cmd = q->cmd, .lsn = res.lsn };
        return;
    case SEQUENCING_STORAGE_FAILED:
        r->dead = true;
        return;
    default:
        m.type = SIM_REP_BUSY;
        reply(r, from, q->attempt, &m);
        return;
    }
}

void sim_replica_receive(struct sim_replica *r, u32 from, const u8 *bytes, u32 len)
{
    if (!r->up || sim_now(r->w) < r->paused_until_ns)
        return;
    if (from >= sim_replica_count(r->w)) {
        struct sim_msg q;
        if (len != sizeof(q))
            return;
        memcpy(&q, bytes, sizeof(q));
        if (q.magic != SIM_MSG_MAGIC)
            return;
        client_request(r, from, &q);
    } else {
        vsr_on_message(&r->vsr, sim_replica_time(r), bytes, len);
    }
    flush(r);
}

bool sim_replica_bitrot(struct sim_replica *r, struct prng *p)
{
    /* The active segment's synced bytes (older segments are synced whole, but the simulator's
     * replica knows only the active one's extent). */
    if (!r->up || r->seq.wal.synced_offset <= 64 || r->seq.wal.segment_count == 0)
        return false;
    char name[64], path[96];
    u64 first = r->seq.wal.segments[r->seq.wal.segment_count - 1].first_lsn;
    if (!wal_segment_name(name, sizeof(name), first))
        return false;
    snprintf(path, sizeof(path), "%s/%s", WAL_DIR, name);
    u64 off = prng_below(p, r->seq.wal.synced_offset);
    return io_fault_flip_bit(r->disk, path, off, (unsigned)prng_below(p, 8)) == 0;
}
