/*
 * sim/replica.c — one simulated replica: a shell over the production cores, as the daemon's
 * workers are. The sequencer's core owns the WAL on the simulated disk; the replication core
 * decides; the applier's core applies committed entries to the state machine. This file turns
 * the simulator's events into calls and does what comes back — and decides nothing itself.
 */
#include "config.h"

#include "sim/internal.h"

#include "common/assert.h"
#include "common/crc32c.h"
#include "replica/recovery.h"
#include "replica/snapshot.h"
#include "wal/command.h"
#include "wal/frame.h"
#include "wal/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WAL_DIR "wal"
#define IMAGE_MAX ((u64)64 << 20) /* a received image larger than this is refused */

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

static int env_image_read(void *ctx, u64 offset, u8 *buf, u32 cap, u32 *len, struct vsr_image *img)
{
    struct sim_replica *r = ctx;
    if (r->image == NULL)
        return -ENOENT;
    *img = r->image_at;
    u64 n = offset >= img->size ? 0 : img->size - offset;
    *len = (u32)(n < cap ? n : cap);
    memcpy(buf, r->image + offset, *len);
    return 0;
}

static int env_image_write(void *ctx, const struct vsr_image *img, u64 offset, const u8 *bytes, u32 len)
{
    struct sim_replica *r = ctx;
    if (offset == 0) {
        if (img->size > IMAGE_MAX || img->size < VSR_ENTRY_HEADER_SIZE)
            return -EFBIG;
        if (img->size > r->rx_cap) {
            u8 *p = realloc(r->rx, img->size);
            if (!p)
                return -ENOMEM;
            r->rx = p;
            r->rx_cap = img->size;
        }
    }
    if (offset + len > img->size || img->size > r->rx_cap)
        return -EINVAL;
    memcpy(r->rx + offset, bytes, len);
    return 0;
}

static int install(struct sim_replica *r, const struct vsr_image *img, struct vsr_entry_header *at);

static int env_image_install(void *ctx, const struct vsr_image *img, struct vsr_entry_header *at)
{
    return install(ctx, img, at);
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
    struct wal_log_options opt = { .segment_bytes = sim_segment_bytes(w) };
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

/* Applies the committed entries after r->applied up to target, checked like any apply; stops
 * at one it cannot read (or apply). Whether it applied any. */
static bool apply_through(struct sim_replica *r, u64 target)
{
    u64 from = r->applied;
    while (r->applied < target && !r->dead) {
        u8 frame[WAL_FRAME_MAX];
        u32 len;
        u64 lsn = r->applied + 1;
        int rc = committed_frame(r, lsn, frame, &len);
        if (rc != 0) {
            sim_trace(r->w, "r%u cannot read committed entry %llu: %d", r->id, (unsigned long long)lsn, rc);
            break;
        }
        apply_frame(r, frame, len);
        if (r->applied != lsn)
            break;
    }
    return r->applied > from;
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
    return 0;
}

static int newest_snapshot(void *ctx, const char *name)
{
    u64 lsn, *newest = ctx;
    if (snapshot_parse_name(name, &lsn) && lsn > *newest)
        *newest = lsn;
    return 0;
}

/* A storage step failed: a crashed disk (io_fault_crash_after) ends the process. */
static void storage_failed(struct sim_replica *r, const char *step, int rc, const char *why)
{
    sim_trace(r->w, "r%u %s failed: %d %s", r->id, step, rc, why);
    if (io_fault_crashed(r->disk))
        r->dead = true;
}

/* The header of committed entry lsn (its frame, or the entry a state transfer restarted after). */
static bool committed_header(struct sim_replica *r, u64 lsn, struct vsr_entry_header *out)
{
    if (lsn == r->base.lsn) {
        *out = r->base;
        return true;
    }
    u8 frame[WAL_FRAME_MAX];
    u32 len;
    struct wal_frame f;
    if (committed_frame(r, lsn, frame, &len) != 0 || wal_frame_decode_exact(frame, len, &f) != WAL_FRAME_OK)
        return false;
    vsr_entry_header_of_frame(&f, out);
    return true;
}

/*
 * A checkpoint, as the daemon's applier takes one: the snapshot (and its operation records) on
 * disk, the WAL pruned below the older kept snapshot; and the image this replica serves to
 * peers behind its pruned WAL: the header of the entry, then the snapshot image.
 */
static void checkpoint(struct sim_replica *r)
{
    u64 lsn = r->applied;
    struct vsr_entry_header at;
    if (lsn == 0 || (r->image && r->image_at.lsn >= lsn) || !committed_header(r, lsn, &at))
        return;
    struct checkpoint_report rep;
    char why[512];
    int rc = checkpoint_run(io_fault_io(r->disk), WAL_DIR, &r->sm, NULL, NULL, &rep, why, sizeof(why));
    if (rc != 0) {
        storage_failed(r, "checkpoint", rc, why);
        return;
    }
    u32 removed = 0;
    u64 keep = vsr_prune_floor(&r->vsr); /* a backup close behind is waited for */
    rc = sequencing_prune(&r->seq, keep < rep.keep_from_lsn ? keep : rep.keep_from_lsn, &removed);
    if (rc != 0)
        storage_failed(r, "prune", rc, "");
    u64 size = VSR_ENTRY_HEADER_SIZE + snapshot_image_size(&r->sm);
    u8 *img = realloc(r->image, size);
    ADB_ASSERT(img);
    r->image = img;
    vsr_entry_headers_encode(img, &at, 1);
    snapshot_image_encode(&r->sm, img + VSR_ENTRY_HEADER_SIZE, size - VSR_ENTRY_HEADER_SIZE);
    r->image_at = (struct vsr_image){ .lsn = lsn, .size = size, .crc = crc32c(0, img, size) };
    vsr_on_checkpoint(&r->vsr, lsn, r->seq.wal.segments[0].first_lsn);
    sim_trace(r->w, "r%u checkpoint at lsn %llu (image %llu bytes), wal from %llu", r->id,
              (unsigned long long)lsn, (unsigned long long)size,
              (unsigned long long)r->seq.wal.segments[0].first_lsn);
    sim_count_checkpoint(r->w);
    sim_check_state(r->w, r->id, lsn, &r->sm, "checkpoint");
}

/* The state machine of an image (all of rx): its header out, false if it does not check. */
static bool image_state(struct sim_replica *r, const struct vsr_image *img, sm_t *sm, struct vsr_entry_header *at)
{
    char why[512];
    if (img->size < VSR_ENTRY_HEADER_SIZE || img->size > r->rx_cap || crc32c(0, r->rx, img->size) != img->crc)
        return false;
    vsr_entry_header_decode(r->rx, at);
    ADB_ASSERT(sm_create(sm, sim_sm_config(r->w), why, sizeof(why)));
    enum snapshot_status st = snapshot_image_decode(r->rx + VSR_ENTRY_HEADER_SIZE, img->size - VSR_ENTRY_HEADER_SIZE,
                                                    sim_sm_config(r->w), sm, why, sizeof(why));
    if (st != SNAPSHOT_OK || at->lsn != img->lsn || sm->last_applied_lsn != img->lsn) {
        sim_trace(r->w, "r%u image at lsn %llu refused: %s %s", r->id, (unsigned long long)img->lsn,
                  snapshot_status_name(st), why);
        sm_destroy(sm);
        return false;
    }
    return true;
}

/*
 * State transfer: the image's state becomes this replica's. Durably, in an order a crash at
 * any point recovers from: the entry's header (metadata), the snapshot and its records, then
 * the WAL restarted after the entry (sim_replica_start finishes an install the crash cut).
 */
static int install(struct sim_replica *r, const struct vsr_image *img, struct vsr_entry_header *at)
{
    sm_t fresh;
    if (!image_state(r, img, &fresh, at))
        return -EINVAL;
    r->installing = *at; /* base stays what the WAL starts after until the restart is done */
    struct checkpoint_report rep;
    char why[512];
    int rc = checkpoint_run(io_fault_io(r->disk), WAL_DIR, &fresh, NULL, NULL, &rep, why, sizeof(why));
    sm_destroy(&fresh);
    if (rc == 0)
        rc = sequencing_restart_log(&r->seq, at->lsn, at->request_slot, at->crc);
    if (rc != 0) {
        storage_failed(r, "install", rc, why);
        r->dead = true; /* half installed: a restart finishes it or takes the old state */
        return rc;
    }
    r->base = *at;
    r->installing = (struct vsr_entry_header){ 0 };
    sm_destroy(&r->sm);
    ADB_ASSERT(image_state(r, img, &r->sm, at));
    applying_init(&r->applying, &r->sm, r->due, SIM_DUE_MAX);
    r->applied = r->commit_target = r->meta_commit = at->lsn;
    r->expire_barrier = 0;
    for (u32 i = 0; i < SIM_SHARED_LOG; i++)
        r->shared_log[i].lsn = 0;
    memset(r->pending, 0, sizeof(r->pending)); /* their clients time out: indefinite */
    /* It serves what it installed. */
    free(r->image);
    r->image = r->rx;
    r->image_at = *img;
    r->rx = NULL;
    r->rx_cap = 0;
    sim_trace(r->w, "r%u installed an image at lsn %llu (view %llu, crc %08x)", r->id,
              (unsigned long long)at->lsn, (unsigned long long)at->view, at->crc);
    sim_check_state(r->w, r->id, at->lsn, &r->sm, "installed image");
    return 0;
}

/* The state: the newest snapshot that checks, then the committed entries after it, applied and
 * checked like any apply. */
static bool recover_state(struct sim_replica *r, u64 snap)
{
    char why[512];
    if (snap > 0) {
        struct recovery_options opt = { .read_only = true };
        opt.wal.segment_bytes = sim_segment_bytes(r->w);
        opt.wal.stop_after_lsn = snap;
        struct wal_log wal;
        struct recovery_report rep;
        int rc = recovery_run(io_fault_io(r->disk), WAL_DIR, sim_sm_config(r->w), &opt, &r->sm, &wal, &rep, why,
                              sizeof(why));
        if (rc != 0) {
            sim_trace(r->w, "r%u recovery failed: %s", r->id, why);
            return false;
        }
        r->applied = r->sm.last_applied_lsn;
        sim_check_state(r->w, r->id, r->applied, &r->sm, "recovered snapshot");
    }
    apply_through(r, r->meta_commit);
    return r->applied >= r->meta_commit;
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
                                    .segment_bytes = sim_segment_bytes(w), .meta_interval_ms = 1000,
                                    .meta_idle_ms = 1000, .meta_backoff_max_ms = 30000,
                                    .space_retry_ms = 1000 };
    sequencing_init(&r->seq, &sc, &r->cache, r->batch);
    struct vsr_config vc = sim_vsr_config(w, r->id);
    struct vsr_env env = { .ctx = r, .send = env_send, .persist = env_persist,
                           .append = env_append, .truncate = env_truncate, .read = env_read,
                           .commit = env_commit, .image_read = env_image_read,
                           .image_write = env_image_write, .image_install = env_image_install };
    vsr_init(&r->vsr, &vc, &env);
    r->applied = 0;
    r->commit_target = 0;
    r->expire_barrier = 0;
    r->dead = false;
    memset(r->pending, 0, sizeof(r->pending));

    /* A restart is a reboot: a new boot id, so the slot timeline resumes by the wall clock. */
    r->boot_ns = sim_now(w);
    r->boot_id = ((u128)r->id << 64) | (u128)(sim_now(w) + 1);
    struct io *io = io_fault_io(r->disk);
    u64 snap = 0;
    (void)io->ops->list_dir(io, WAL_DIR, newest_snapshot, &snap);
    struct sequencing_restart seen = { .ever_ready = true, .meta_commit_lsn = r->meta_commit,
                                       .newest_snapshot_lsn = snap };
    struct sequencing_open plan;
    struct wal_open_report rep;
    enum sequencing_opened verdict;
    int rc = sequencing_open(&r->seq, io, WAL_DIR, &seen, replayed, r, &plan, &rep, &verdict, why, sizeof(why));
    if (rc == 0 && r->installing.lsn != 0) {
        /* A state transfer the crash cut: finished if its snapshot is durable (the WAL restarted
         * already, or now), else forgotten. */
        if (snap == r->installing.lsn) {
            if (r->installing.lsn > rep.last_lsn)
                rc = sequencing_restart_log(&r->seq, r->installing.lsn, r->installing.request_slot,
                                            r->installing.crc);
            ADB_ASSERT(rc != 0 || r->seq.wal.cur.next_lsn == r->installing.lsn + 1);
            r->base = r->installing;
            rep.last_lsn = r->base.lsn;
            rep.last_slot = r->base.request_slot;
            rep.frames = 0;
            sim_trace(w, "r%u finished an interrupted state transfer at lsn %llu", r->id,
                      (unsigned long long)r->base.lsn);
        }
        r->installing = (struct vsr_entry_header){ 0 };
    }
    if (rc == 0 && rep.frames == 0 && r->base.lsn != 0 && rep.last_lsn == r->base.lsn)
        vsr_load_entry(&r->vsr, &r->base); /* the WAL restarted after it and holds nothing yet */
    if (rc == 0 && !recover_state(r, snap))
        rc = -EUCLEAN;
    if (r->applied > r->meta_commit)
        r->meta_commit = r->applied; /* a snapshot holds only committed entries */
    if (rc != 0) {
        sim_trace(w, "r%u cannot open its WAL: %s (faulted)", r->id, why);
        sim_replica_stop(r);
        r->faulted = true;
        return false;
    }
    struct clock_reading now = { .wall_ms = wall_ms(r), .boot_ms = 0, .boot_id = r->boot_id };
    sequencing_start_clock(&r->seq, rep.last_slot, r->anchor_set ? &r->anchor : NULL, &now);
    struct vsr_start st = { .durable = r->meta, .commit = r->meta_commit, .wal_head = rep.last_lsn,
                            .fresh = !r->started, .wal_first = r->seq.wal.segments[0].first_lsn };
    r->started = true;
    vsr_start(&r->vsr, &st, sim_replica_time(r));
    r->up = true;
    checkpoint(r); /* an image to serve */
    sim_trace(w, "r%u start view=%llu log_view=%llu wal %llu..%llu commit=%llu applied=%llu status=%s clock=%llu",
              r->id, (unsigned long long)r->meta.view, (unsigned long long)r->meta.log_view,
              (unsigned long long)st.wal_first, (unsigned long long)st.wal_head,
              (unsigned long long)r->meta_commit, (unsigned long long)r->applied,
              vsr_status_name(r->vsr.status), (unsigned long long)sim_replica_clock_ms(r));
    return true;
}

void sim_replica_stop(struct sim_replica *r)
{
    if (r->up)
        sim_count_protocol(r->w, &r->vsr.count);
    sequencing_close(&r->seq);
    if (r->sm_made)
        sm_destroy(&r->sm);
    r->sm_made = false;
    free(r->cache_mem);
    free(r->batch);
    free(r->shared_log);
    free(r->image);
    free(r->rx);
    r->cache_mem = NULL;
    r->batch = NULL;
    r->shared_log = NULL;
    r->image = r->rx = NULL;
    r->rx_cap = 0;
    r->up = false;
}

void sim_replica_wipe(struct sim_replica *r, u64 seed)
{
    ADB_ASSERT(!r->up);
    struct sim_world *w = r->w;
    u8 id = r->id;
    i64 wall = r->wall_offset_ms;
    sim_count_disk(w, r->disk);
    io_fault_destroy(r->disk);
    sim_replica_format(r, w, id, seed);
    r->wall_offset_ms = wall; /* the machine's clock, not the disk's */
    r->meta.recovering = true;
    r->started = true; /* not a fresh cluster: it may have voted before */
}

void sim_replica_destroy(struct sim_replica *r)
{
    if (r->up)
        sim_replica_stop(r);
    sim_count_disk(r->w, r->disk);
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
        vsr_flush(&r->vsr, sim_replica_time(r)); /* what the primary sequenced: shipped before the fsync */
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
        bool progressed = apply_through(r, r->commit_target);
        if (r->applied > r->meta_commit)
            r->meta_commit = r->applied; /* a lower bound of the commit point, kept durable */
        if (r->applied >= r->image_at.lsn + sim_checkpoint_every(r->w) && !r->dead)
            checkpoint(r);
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
