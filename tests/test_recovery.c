/*
 * tests/test_recovery.c — snapshots + WAL replay + checkpoints, end to end, on the
 * fault-injecting file system.
 *
 * The live path here is what the sequencer and applier do together: append each command to the
 * WAL, commit groups with one sync, apply to the state machine, checkpoint now and then. The
 * properties:
 *   - replay equivalence: the WAL replayed from empty, and a snapshot at any checkpoint plus the
 *     WAL after it, give the live state's digest and every command's live result;
 *   - crash points: a crash after any number of I/O operations, including inside a checkpoint,
 *     recovers a state equal to the live state at some LSN >= the last acknowledged one (every
 *     acknowledged command exactly once, nothing half-applied);
 *   - a newest snapshot that fails validation is replaced by the older one plus the WAL, and
 *     recovery fails closed when that cannot cover.
 */
#include "config.h"

#include "common/crc32c.h"
#include "common/le.h"
#include "common/splitmix.h"
#include "replica/image.h"
#include "replica/oplog.h"
#include "replica/recovery.h"
#include "replica/snapshot.h"
#include "tests/check_main.h"
#include "tests/io_fault.h"
#include "wal/frame.h"
#include "wal/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DIR "/data"
#define MAX_LSN 6000

/* Write the operation log as the daemon's applier does (export after every apply, flush before
 * the checkpoint, which only syncs it), rolling segments every `writer_segment_bytes`; else
 * checkpoints write the live records as one segment. */
static bool use_writer;
static u64 writer_segment_bytes = 1024;

static struct sm_config config(void)
{
    return (struct sm_config){
        .shard_id = 0,
        .resource_capacity = 48,
        .reservation_capacity = 96,
        .operation_capacity = 192,
        .expiration_capacity = 40,
        .max_ttl_slots = 12,
        .dedupe_window_slots = 16,
        .history_window_slots = 6,
    };
}

/* ---- a workload that reaches every interesting corner: contention, retries, conflicts,
 *      expirations, retirement, full tables, slot jumps ---------------------------------- */

struct workload {
    u64 rng;
    u64 slot;
    u128 next_op;
    u128 recent_ops[16]; /* for retries */
    struct sm_command recent_cmds[16];
    u128 recent_res[16]; /* reservations seen, with their holder */
    u128 recent_holder[16];
};

static struct sm_command next_command(struct workload *w, const sm_t *live)
{
    struct sm_command c;
    memset(&c, 0, sizeof(c));
    u64 r = splitmix_next(&w->rng) % 100;
    if (r < 8) { /* advance time, sometimes a lot */
        w->slot += 1 + (splitmix_next(&w->rng) % 20 == 0 ? 30 : 0);
    }
    struct sm_due due;
    if (r < 20 && sm_due_expirations(live, w->slot, &due, 1) == 1) {
        c.kind = SM_CMD_EXPIRE;
        c.reservation_id = due.reservation_id;
        c.deadline_slot = due.deadline_slot;
        return c;
    }
    if (r < 28) { /* retry (same payload) or conflicting reuse of a recent operation id */
        u64 i = splitmix_next(&w->rng) % 16;
        if (w->recent_ops[i] != 0) {
            c = w->recent_cmds[i];
            if (r >= 25)
                c.client_id ^= 1; /* changes the fingerprint: operation_conflict */
            return c;
        }
    }
    c.operation_id = ++w->next_op;
    c.client_id = 1 + splitmix_next(&w->rng) % 3;
    u64 k = splitmix_next(&w->rng) % 10;
    if (k < 2) {
        c.kind = SM_CMD_CREATE_RESOURCE;
        c.resource_id = 1 + splitmix_next(&w->rng) % 60; /* > capacity: table_full happens */
    } else if (k < 6) {
        c.kind = SM_CMD_RESERVE;
        c.resource_id = 1 + splitmix_next(&w->rng) % 60;
        c.holder_id = 1 + splitmix_next(&w->rng) % 9;
        c.ttl_slots = splitmix_next(&w->rng) % 15; /* 0 and > max: ttl_out_of_range */
    } else {
        u64 i = splitmix_next(&w->rng) % 16;
        c.kind = k < 8 ? SM_CMD_CONFIRM : SM_CMD_RELEASE;
        c.reservation_id = w->recent_res[i] != 0 ? w->recent_res[i] : U128_MAKE(0, 1 + splitmix_next(&w->rng) % 50);
        c.holder_id = splitmix_next(&w->rng) % 5 == 0 ? 99 : w->recent_holder[i];
    }
    u64 slot_i = splitmix_next(&w->rng) % 16;
    w->recent_ops[slot_i] = c.operation_id;
    w->recent_cmds[slot_i] = c;
    return c;
}

static void observe(struct workload *w, const struct sm_command *c, const struct sm_outcome *o)
{
    if (c->kind == SM_CMD_RESERVE && o->result == SM_OK) {
        u64 i = splitmix_next(&w->rng) % 16;
        w->recent_res[i] = o->reservation_id;
        w->recent_holder[i] = c->holder_id;
    }
}

/* ---- the live engine ---------------------------------------------------------------------- */

#define SNAPS_MAX 8

struct live {
    sm_t sm;
    struct wal_log wal;
    struct workload wl;
    bool wal_open;
    u64 acked; /* last LSN whose group commit succeeded */
    u64 since_checkpoint;
    u64 checkpoints;
    bool in_checkpoint; /* a checkpoint started and did not finish */
    struct oplog ops;   /* with use_writer: the operation log, written as the applier does */
    bool ops_open;
    struct sm_outcome out[MAX_LSN + 1];
    struct sm_digest digest[MAX_LSN + 1]; /* live digest after each LSN (digest[0]: empty) */
    /* In-memory snapshots taken at chosen LSNs (snap_at, ascending; 0 = unused). */
    u64 snap_at[SNAPS_MAX];
    u8 *snap[SNAPS_MAX];
    u64 snap_len[SNAPS_MAX];
    struct sm_operation *snap_ops[SNAPS_MAX]; /* its live operation records (not in its bytes) */
};

static struct io_fault *fs;
static struct io *io;
static struct live *L;
static const struct recovery_options ropt = { .wal = { .segment_bytes = 8192, .batch_bytes = 2048 } };

static void setup(void)
{
    fs = io_fault_create(3);
    io = io_fault_io(fs);
    ck_assert_int_eq(io->ops->mkdir(io, DIR), 0);
    ck_assert_int_eq(io->ops->sync_dir(io, ""), 0);
    char why[256];
    ck_assert_msg(wal_log_format(io, DIR, &ropt.wal, why, sizeof(why)) == 0, "%s", why);
    L = calloc(1, sizeof(*L));
    struct sm_config cfg = config();
    ck_assert(sm_create(&L->sm, &cfg, why, sizeof(why)));
    L->digest[0] = sm_digest(&L->sm);
}

static void teardown(void)
{
    if (L->wal_open)
        wal_log_close(&L->wal);
    if (L->ops_open)
        oplog_close(&L->ops);
    for (int i = 0; i < SNAPS_MAX; i++)
        free(L->snap[i]), free(L->snap_ops[i]);
    sm_destroy(&L->sm);
    free(L);
    io_fault_destroy(fs);
}

static void live_open(void)
{
    struct recovery_report rep;
    char why[512];
    struct sm_config cfg = config(); /* not &L->sm.cfg: recovery re-initialises the sm */
    int rc = recovery_run(io, DIR, &cfg, &ropt, &L->sm, &L->wal, &rep, why, sizeof(why));
    ck_assert_msg(rc == 0, "%s", why);
    L->wal_open = true;
    if (use_writer) {
        rc = oplog_open(&L->ops, io, DIR, &L->sm, rep.snapshot_lsn, why, sizeof(why));
        ck_assert_msg(rc == 0, "%s", why);
        L->ops.segment_bytes = writer_segment_bytes;
        L->ops_open = true;
    }
}

static void live_close(void)
{
    wal_log_close(&L->wal);
    L->wal_open = false;
    if (L->ops_open)
        oplog_close(&L->ops);
    L->ops_open = false;
}

static int checkpoint(void)
{
    struct checkpoint_report rep;
    char why[512];
    L->in_checkpoint = true;
    int rc = 0;
    if (L->ops_open)
        rc = oplog_flush(&L->ops, &L->sm, why, sizeof(why));
    if (rc == 0)
        rc = checkpoint_run(io, DIR, &L->sm, &L->wal, &(struct checkpoint_options){ .ops = L->ops_open ? &L->ops : NULL },
                            &rep, why, sizeof(why));
    if (rc == 0 && L->ops_open)
        oplog_synced(&L->ops, L->ops.unsynced_count);
    if (rc == 0) {
        L->checkpoints++;
        L->in_checkpoint = false;
    }
    return rc;
}

static void take_memory_snapshot(u64 lsn)
{
    for (int i = 0; i < SNAPS_MAX; i++) {
        if (L->snap_at[i] != lsn || L->snap[i] != NULL)
            continue;
        L->snap_len[i] = snapshot_encoded_size(&L->sm);
        L->snap[i] = malloc(L->snap_len[i]);
        ck_assert_uint_eq(snapshot_encode(&L->sm, L->snap[i], L->snap_len[i]), L->snap_len[i]);
        L->snap_ops[i] = malloc(sizeof(struct sm_operation) * (L->sm.operation_count + 1));
        for (u32 k = 0; k < L->sm.operation_count; k++)
            L->snap_ops[i][k] = *sm_operation_at(&L->sm, k);
    }
}

/*
 * Runs n commands: each is appended to the WAL and applied (results and digests recorded by
 * LSN); groups of 1..8 are committed with one sync; a checkpoint after every
 * `checkpoint_every` commands (0: never), always between groups so the snapshot is of durable
 * state. Stops at the first I/O error, as a halted or crashed node would; returns it or 0.
 */
static int live_run(u64 n, u64 checkpoint_every, u64 seed)
{
    L->wl.rng = seed;
    if (L->wl.slot == 0)
        L->wl.slot = 1;
    u64 group = 1, in_group = 0;
    for (u64 i = 0; i < n; i++) {
        ck_assert_uint_lt(L->sm.last_applied_lsn, MAX_LSN);
        struct sm_command c = next_command(&L->wl, &L->sm);
        u64 lsn;
        int rc = wal_log_append(&L->wal, L->wl.slot, 0, &c, &lsn);
        if (rc != 0)
            return rc;
        ck_assert_uint_eq(lsn, L->sm.last_applied_lsn + 1);
        L->out[lsn] = sm_apply(&L->sm, lsn, L->wl.slot, &c);
        L->digest[lsn] = sm_digest(&L->sm);
        if (L->ops_open && (rc = oplog_export(&L->ops, &L->sm, NULL, 0)) != 0)
            return rc;
        observe(&L->wl, &c, &L->out[lsn]);
        take_memory_snapshot(lsn);
        L->since_checkpoint++;
        if (++in_group < group && i + 1 < n)
            continue;
        rc = wal_log_commit(&L->wal);
        if (rc != 0)
            return rc;
        L->acked = L->wal.durable_lsn;
        in_group = 0;
        group = 1 + splitmix_next(&L->wl.rng) % 8;
        if (checkpoint_every != 0 && L->since_checkpoint >= checkpoint_every) {
            L->since_checkpoint = 0;
            rc = checkpoint();
            if (rc != 0)
                return rc;
        }
    }
    return 0;
}

/* Recovers into a fresh state machine; fails the test on error. */
static void recover(sm_t *sm, struct recovery_report *rep)
{
    struct sm_config cfg = config();
    char why[512];
    ck_assert(sm_create(sm, &cfg, why, sizeof(why)));
    struct wal_log w;
    int rc = recovery_run(io, DIR, &cfg, &ropt, sm, &w, rep, why, sizeof(why));
    ck_assert_msg(rc == 0, "recovery failed: %d %s", rc, why);
    wal_log_close(&w);
}

static void assert_same_digest(const sm_t *sm)
{
    u64 lsn = sm->last_applied_lsn;
    struct sm_digest d = sm_digest(sm);
    ck_assert_msg(d.lo == L->digest[lsn].lo && d.hi == L->digest[lsn].hi,
                  "digest differs from the live state at LSN %llu", (unsigned long long)lsn);
    char why[256];
    ck_assert_msg(sm_check_invariants(sm, why, sizeof(why)), "%s", why);
}

/* Replays the WAL frames after the state in `sm`, comparing each result with the live one. */
struct compare {
    sm_t *sm;
    u64 compared;
};

static int compare_frame(void *ctx, const struct wal_frame *f, const struct sm_command *cmd)
{
    struct compare *c = ctx;
    struct sm_outcome o = sm_apply(c->sm, f->lsn, f->request_slot, cmd);
    const struct sm_outcome *want = &L->out[f->lsn];
    ck_assert_msg(o.result == want->result && o.reservation_id == want->reservation_id &&
                      o.deadline_slot == want->deadline_slot && o.applied_lsn == want->applied_lsn &&
                      o.from_retry_cache == want->from_retry_cache,
                  "LSN %llu: replay gives %s, live gave %s", (unsigned long long)f->lsn,
                  sm_result_name(o.result), sm_result_name(want->result));
    c->compared++;
    return 0;
}

static u64 replay_and_compare(sm_t *sm)
{
    struct compare c = { .sm = sm };
    struct wal_log w;
    struct wal_open_report rep;
    struct wal_log_options ro = ropt.wal;
    ro.read_only = true;
    char why[512];
    int rc = wal_log_open(&w, io, DIR, &ro, sm->last_applied_lsn + 1, compare_frame, &c, &rep, why, sizeof(why));
    ck_assert_msg(rc == 0, "%s", why);
    wal_log_close(&w);
    return c.compared;
}

/* ---- replay equivalence ----------------------------------------------------------------- */

START_TEST(test_replay_equivalence)
{
    u64 seed = 100 + (u64)_i, rng = seed;
    const u64 n = 4000;
    for (int i = 0; i < SNAPS_MAX; i++)
        L->snap_at[i] = 1 + splitmix_next(&rng) % n;
    live_open();
    ck_assert_int_eq(live_run(n, 0, seed), 0);
    u64 last = L->sm.last_applied_lsn;
    ck_assert_uint_eq(last, n);

    /* The whole WAL from empty, result by result, then the digest. */
    struct sm_config cfg = config();
    char why[256];
    sm_t a;
    ck_assert(sm_create(&a, &cfg, why, sizeof(why)));
    ck_assert_uint_eq(replay_and_compare(&a), last);
    assert_same_digest(&a);
    sm_destroy(&a);

    /* A snapshot at each random LSN, decoded, plus the WAL after it. */
    for (int i = 0; i < SNAPS_MAX; i++) {
        sm_t b;
        ck_assert(sm_create(&b, &cfg, why, sizeof(why)));
        ck_assert_ptr_nonnull(L->snap[i]);
        struct snapshot_ops_array arr;
        struct snapshot_ops ops = snapshot_ops_from_array(&arr, L->snap_ops[i], le_get_u32(L->snap[i] + 112));
        enum snapshot_status st = snapshot_decode(L->snap[i], L->snap_len[i], &cfg, &ops, &b, why, sizeof(why));
        ck_assert_msg(st == SNAPSHOT_OK, "%s", why);
        ck_assert_uint_eq(b.last_applied_lsn, L->snap_at[i]);
        assert_same_digest(&b);
        ck_assert_uint_eq(replay_and_compare(&b), last - L->snap_at[i]);
        assert_same_digest(&b);
        sm_destroy(&b);
    }

    /* And recovery itself, from the WAL alone. */
    live_close();
    sm_t r;
    struct recovery_report rep;
    recover(&r, &rep);
    ck_assert_int_eq(rep.kind, RECOVERY_WAL_ONLY);
    ck_assert_uint_eq(rep.frames_replayed, last);
    ck_assert_uint_eq(rep.last_replayed_lsn, last);
    assert_same_digest(&r);
    sm_destroy(&r);

    /* The workload reached the corners it is meant to. */
    u64 seen[SM_RESULT_COUNT] = { 0 }, cached = 0;
    for (u64 l = 1; l <= last; l++) {
        seen[L->out[l].result]++;
        cached += L->out[l].from_retry_cache;
    }
    ck_assert_uint_gt(cached, 0);
    ck_assert_uint_gt(seen[SM_OPERATION_CONFLICT], 0);
    ck_assert_uint_gt(seen[SM_RESOURCE_BUSY], 0);
    ck_assert_uint_gt(seen[SM_RESERVATION_RETIRED], 0);
    ck_assert_uint_gt(seen[SM_RESOURCE_TABLE_FULL], 0);
}
END_TEST

START_TEST(test_startup_kinds_and_checkpoints)
{
    sm_t r;
    struct recovery_report rep;
    recover(&r, &rep);
    ck_assert_int_eq(rep.kind, RECOVERY_FRESH);
    sm_destroy(&r);

    live_open();
    ck_assert_int_eq(live_run(500, 0, 9), 0);
    live_close();
    recover(&r, &rep);
    ck_assert_int_eq(rep.kind, RECOVERY_WAL_ONLY);
    sm_destroy(&r);

    live_open();
    ck_assert_int_eq(checkpoint(), 0);
    live_close();
    recover(&r, &rep);
    ck_assert_int_eq(rep.kind, RECOVERY_SNAPSHOT_ONLY);
    ck_assert_uint_eq(rep.snapshot_lsn, 500);
    ck_assert_uint_eq(rep.frames_replayed, 0);
    assert_same_digest(&r);
    sm_destroy(&r);

    /* Many checkpoints: two snapshots kept, the WAL pruned behind the older one. */
    live_open();
    ck_assert_int_eq(live_run(3000, 400, 10), 0);
    ck_assert_uint_ge(L->checkpoints, 7);
    u64 last = L->sm.last_applied_lsn;
    ck_assert_int_eq(live_run(37, 0, 11), 0); /* a tail after the last checkpoint */
    live_close();
    recover(&r, &rep);
    ck_assert_int_eq(rep.kind, RECOVERY_SNAPSHOT_AND_WAL);
    ck_assert_uint_ge(rep.snapshot_lsn, last - 410);
    ck_assert_uint_eq(rep.last_replayed_lsn, L->sm.last_applied_lsn);
    ck_assert_uint_eq(rep.snapshots_found, 2);
    ck_assert_uint_gt(rep.wal.first_lsn, 1); /* pruned */
    assert_same_digest(&r);
    sm_destroy(&r);
}
END_TEST

/* ---- snapshot fallback ------------------------------------------------------------------ */

static void snapshot_path(u64 lsn, char *out, size_t n)
{
    char name[64];
    ck_assert(snapshot_file_name(name, sizeof(name), lsn));
    ck_assert(io_path(out, n, DIR, name));
}

START_TEST(test_bad_newest_snapshot_falls_back_or_fails_closed)
{
    live_open();
    ck_assert_int_eq(live_run(2500, 600, 21), 0);
    live_close();
    sm_t r;
    struct recovery_report rep;
    recover(&r, &rep);
    u64 newest = rep.snapshot_lsn;
    sm_destroy(&r);

    /* Damage the newest snapshot: the older one plus the WAL covers. */
    char p[WAL_PATH_MAX];
    snapshot_path(newest, p, sizeof(p));
    ck_assert_int_eq(io_fault_flip_bit(fs, p, 200, 3), 0);
    recover(&r, &rep);
    ck_assert_uint_eq(rep.snapshots_rejected, 1);
    ck_assert_uint_eq(rep.rejected_lsn, newest);
    ck_assert_uint_lt(rep.snapshot_lsn, newest);
    ck_assert_uint_eq(r.last_applied_lsn, L->sm.last_applied_lsn);
    assert_same_digest(&r);
    sm_destroy(&r);

    /* Damage the older one too: the WAL no longer reaches back to LSN 1, so fail closed. */
    u64 older = rep.snapshot_lsn;
    snapshot_path(older, p, sizeof(p));
    ck_assert_int_eq(io_fault_flip_bit(fs, p, 100, 1), 0);
    struct sm_config cfg = config();
    char why[1024];
    ck_assert(sm_create(&r, &cfg, why, sizeof(why)));
    struct wal_log w;
    ck_assert_int_eq(recovery_run(io, DIR, &cfg, &ropt, &r, &w, &rep, why, sizeof(why)), -EUCLEAN);
    ck_assert_ptr_nonnull(strstr(why, "begins at"));
    sm_destroy(&r);

    /* A different config is refused outright, never "fallen back" over. */
    ck_assert_int_eq(io_fault_flip_bit(fs, p, 100, 1), 0);
    cfg.history_window_slots++;
    ck_assert(sm_create(&r, &cfg, why, sizeof(why)));
    ck_assert_int_eq(recovery_run(io, DIR, &cfg, &ropt, &r, &w, &rep, why, sizeof(why)), -EINVAL);
    sm_destroy(&r);
}
END_TEST

/* ---- damage in WAL frames a snapshot covers ------------------------------------------------ */

/* Where frame `lsn` is: its segment's path, first LSN and the frame's offset (read intact). */
static void locate_frame(u64 lsn, char *path, size_t n, u64 *seg_first, u64 *off)
{
    struct wal_log w;
    struct wal_open_report rep;
    struct wal_log_options ro = ropt.wal;
    ro.read_only = true;
    char why[512];
    ck_assert_msg(wal_log_open(&w, io, DIR, &ro, 0, NULL, NULL, &rep, why, sizeof(why)) == 0, "%s", why);
    u32 i = w.segment_count;
    while (i > 0 && w.segments[i - 1].first_lsn > lsn)
        i--;
    ck_assert_uint_gt(i, 0);
    *seg_first = w.segments[i - 1].first_lsn;
    wal_log_close(&w);
    char name[64];
    ck_assert(wal_segment_name(name, sizeof(name), *seg_first));
    ck_assert(io_path(path, n, DIR, name));
    const u8 *data;
    u64 len;
    ck_assert(io_fault_contents(fs, path, &data, &len));
    u64 at = WAL_SEGMENT_HEADER_SIZE;
    for (;;) {
        struct wal_frame f;
        u32 fl;
        ck_assert_int_eq(wal_frame_decode(data + at, len - at, &f, &fl), WAL_FRAME_OK);
        if (f.lsn == lsn)
            break;
        at += fl;
    }
    *off = at;
}

/*
 * A damaged WAL frame that the newest snapshot covers, in the segment recovery reads: recovery
 * succeeds with the live state and reports the damage (before, it failed, or worse, cut it and
 * the synced frames after it as a torn tail). A fallback to the older snapshot would replay
 * across it: refused, fail closed, naming the damage and the snapshots, rewriting nothing.
 * Damage that the older snapshot covers too does not stop the fallback.
 */
START_TEST(test_damage_below_the_snapshot_degrades_and_refuses_fallback)
{
    live_open();
    ck_assert_int_eq(live_run(2500, 600, 21), 0);
    live_close();
    sm_t r;
    struct recovery_report rep;
    recover(&r, &rep);
    u64 newest = rep.snapshot_lsn, live_last = L->sm.last_applied_lsn;
    ck_assert_uint_eq(rep.snapshots_found, 2);
    ck_assert_uint_eq(rep.wal.damaged, 0);
    sm_destroy(&r);
    ck_assert_uint_lt(newest, live_last);

    /* A frame below the snapshot's LSN, in the segment that holds the first frame after it. */
    char path[WAL_PATH_MAX], after_path[WAL_PATH_MAX];
    u64 seg_first, after_first, at, after_at;
    u64 x = newest - 2;
    locate_frame(x, path, sizeof(path), &seg_first, &at);
    locate_frame(newest + 1, after_path, sizeof(after_path), &after_first, &after_at);
    ck_assert_uint_eq(seg_first, after_first); /* the workload's layout puts them together */
    ck_assert_int_eq(io_fault_flip_bit(fs, path, at + WAL_FRAME_HEADER_SIZE + 9, 4), 0);
    u64 len;
    const u8 *data;
    ck_assert(io_fault_contents(fs, path, &data, &len));
    u8 *before = malloc(len);
    memcpy(before, data, len);

    recover(&r, &rep);
    ck_assert_uint_eq(rep.snapshot_lsn, newest);
    ck_assert_uint_eq(r.last_applied_lsn, live_last);
    assert_same_digest(&r);
    ck_assert_uint_eq(rep.wal.damaged, 1);
    ck_assert_uint_eq(rep.wal.damage_lsn, x);
    ck_assert_uint_eq(rep.wal.damage_offset, at);
    ck_assert_str_eq(rep.wal.damage_file, path);
    ck_assert_uint_eq(rep.wal.damage_floor_lsn, x);
    sm_destroy(&r);
    /* Read-only, as the applier and allocdb-inspect verify recover, the same. */
    struct sm_config cfg = config();
    char why[2048];
    ck_assert(sm_create(&r, &cfg, why, sizeof(why)));
    struct recovery_options ro = ropt;
    ro.read_only = true;
    ro.wal.stop_after_lsn = live_last;
    struct wal_log w;
    ck_assert_msg(recovery_run(io, DIR, &cfg, &ro, &r, &w, &rep, why, sizeof(why)) == 0, "%s", why);
    ck_assert_uint_eq(rep.wal.damaged, 1);
    assert_same_digest(&r);
    sm_destroy(&r);

    /* The newest snapshot goes bad: the older one would replay across the damage. */
    char snap[WAL_PATH_MAX];
    snapshot_path(newest, snap, sizeof(snap));
    ck_assert_int_eq(io_fault_flip_bit(fs, snap, 200, 3), 0);
    ck_assert(sm_create(&r, &cfg, why, sizeof(why)));
    ck_assert_int_eq(recovery_run(io, DIR, &cfg, &ropt, &r, &w, &rep, why, sizeof(why)), -EUCLEAN);
    sm_destroy(&r);
    u64 older = 0;
    {
        char expect[128];
        snprintf(expect, sizeof(expect), "snapshot %llu is invalid", (unsigned long long)newest);
        ck_assert_msg(strstr(why, expect) != NULL, "%s", why);
        ck_assert_msg(strstr(why, "falling back to the older snapshot") != NULL, "%s", why);
        ck_assert_msg(strstr(why, path) != NULL && strstr(why, "offset") != NULL, "%s", why);
        const char *o = strstr(why, "older snapshot ");
        older = strtoull(o + strlen("older snapshot "), NULL, 10);
        ck_assert_uint_lt(older, x);
        ck_assert_uint_gt(older, 0);
    }
    const u8 *now;
    u64 now_len;
    ck_assert(io_fault_contents(fs, path, &now, &now_len));
    ck_assert(now_len == len && memcmp(now, before, len) == 0); /* nothing rewritten */
    free(before);

    /* Restored: recovers again, still reporting the damage. */
    ck_assert_int_eq(io_fault_flip_bit(fs, snap, 200, 3), 0);
    recover(&r, &rep);
    ck_assert_uint_eq(rep.wal.damaged, 1);
    assert_same_digest(&r);
    sm_destroy(&r);

    /* Damage both snapshots cover: the fallback does not cross it, so it works, and reports it.
     * (The first damage is repaired for this: the fallback would cross it.) */
    ck_assert_int_eq(io_fault_flip_bit(fs, path, at + WAL_FRAME_HEADER_SIZE + 9, 4), 0);
    char p1[WAL_PATH_MAX], p1_after[WAL_PATH_MAX];
    u64 f1, f1_after, at1, at1_after;
    locate_frame(older, p1, sizeof(p1), &f1, &at1);
    locate_frame(older + 1, p1_after, sizeof(p1_after), &f1_after, &at1_after);
    ck_assert_uint_eq(f1, f1_after);
    ck_assert_int_eq(io_fault_flip_bit(fs, p1, at1 + 3, 0), 0);
    ck_assert_int_eq(io_fault_flip_bit(fs, snap, 200, 3), 0);
    recover(&r, &rep);
    ck_assert_uint_eq(rep.snapshots_rejected, 1);
    ck_assert_uint_eq(rep.snapshot_lsn, older);
    ck_assert_uint_eq(rep.wal.damaged, 1);
    ck_assert_uint_eq(rep.wal.damage_lsn, older);
    ck_assert_uint_eq(r.last_applied_lsn, live_last);
    assert_same_digest(&r);
    sm_destroy(&r);
}
END_TEST

START_TEST(test_interrupted_snapshot_write_is_cleaned)
{
    live_open();
    ck_assert_int_eq(live_run(300, 0, 31), 0);
    live_close();
    const u8 junk[] = "partial";
    ck_assert_int_eq(io_fault_put_file(fs, DIR "/snapshot-00000000000000000123.tmp", junk, sizeof(junk)), 0);
    sm_t r;
    struct recovery_report rep;
    recover(&r, &rep);
    ck_assert_uint_eq(rep.temp_files_removed, 1);
    ck_assert(!io_fault_exists(fs, DIR "/snapshot-00000000000000000123.tmp"));
    assert_same_digest(&r);
    sm_destroy(&r);
}
END_TEST

/* ---- crash points ----------------------------------------------------------------------- */

/*
 * The live engine with checkpoints, crashed after k I/O operations for every k until the run
 * completes, each followed by a torn power loss (a prefix of the unsynced writes, or their pages
 * in any order) and recovery. The recovered state must be exactly the live state at its LSN, and
 * that LSN at least the last acknowledged one.
 */
static void crash_at_every_step(enum io_fault_loss loss)
{
    u64 points = 0, in_checkpoint = 0;
    for (u64 k = 0;; k++) {
        teardown();
        setup();
        live_open();
        io_fault_crash_after(fs, k);
        int rc = live_run(600, 150, 77);
        bool crashed = io_fault_crashed(fs);
        ck_assert(crashed == (rc != 0));
        in_checkpoint += L->in_checkpoint;
        live_close();
        io_fault_power_loss(fs, loss);
        sm_t r;
        struct recovery_report rep;
        recover(&r, &rep);
        ck_assert_msg(r.last_applied_lsn >= L->acked, "crash after %llu: recovered LSN %llu < acked %llu",
                      (unsigned long long)k, (unsigned long long)r.last_applied_lsn, (unsigned long long)L->acked);
        ck_assert_uint_le(r.last_applied_lsn, L->sm.last_applied_lsn);
        assert_same_digest(&r);
        sm_destroy(&r);
        points++;
        if (!crashed)
            break;
    }
    ck_assert_uint_gt(points, 100);
    ck_assert_uint_gt(in_checkpoint, 0);
}

START_TEST(test_crash_at_every_step)
{
    crash_at_every_step(IO_FAULT_TEAR);
}
END_TEST

START_TEST(test_crash_at_every_step_pages_out_of_order)
{
    crash_at_every_step(IO_FAULT_TEAR_PAGES);
}
END_TEST

/* The same with the operation log written as the daemon writes it, segments rolling every
 * 1 KiB (a few blocks): every crash point of export, roll, flush, sync, snapshot and pruning. */
START_TEST(test_crash_at_every_step_with_the_operation_log)
{
    use_writer = true;
    crash_at_every_step(_i == 0 ? IO_FAULT_TEAR : IO_FAULT_TEAR_PAGES);
    use_writer = false;
}
END_TEST

/* A run over several checkpoints and restarts with the writer: the log is pruned behind the
 * older snapshot (a bounded number of segments stays), and recovery still finds every record. */
START_TEST(test_operation_log_is_pruned_and_still_recovers)
{
    use_writer = true;
    u32 most = 0;
    for (int round = 0; round < 6; round++) {
        live_open();
        ck_assert_int_eq(live_run(400, 90, 300 + (u64)round), 0);
        live_close();
        u32 segments = 0;
        for (u64 start = 0; start <= L->sm.last_applied_lsn; start++) {
            char path[128];
            snprintf(path, sizeof(path), DIR "/ops-%020llu.log", (unsigned long long)start);
            segments += io_fault_exists(fs, path);
        }
        most = segments > most ? segments : most;
        sm_t r;
        struct recovery_report rep;
        recover(&r, &rep);
        ck_assert_uint_gt(rep.snapshot_lsn, 0);
        ck_assert_uint_gt(r.operation_count, 0);
        assert_same_digest(&r);
        sm_destroy(&r);
    }
    /* 2400 commands at about 48 bytes a record would be ~110 segments of 1 KiB unpruned. */
    ck_assert_msg(most < 40, "%u operation log segments kept", most);
    use_writer = false;
}
END_TEST


/* ---- state-transfer images (replica/image.h) ---------------------------------------------- */

/* The entry header of frame lsn, from the live WAL (open). */
static struct vsr_entry_header entry_header(u64 lsn)
{
    u8 buf[WAL_FRAME_MAX];
    u32 len;
    struct wal_frame f;
    ck_assert_int_eq(wal_log_read(&L->wal, lsn, buf, sizeof(buf), &len), 0);
    ck_assert_int_eq(wal_frame_decode_exact(buf, len, &f), WAL_FRAME_OK);
    struct vsr_entry_header h;
    vsr_entry_header_of_frame(&f, &h);
    return h;
}


/* Runs the live engine with the applier's operation log, then builds the newest snapshot's
 * image; returns its LSN. */
static u64 build_newest_image(struct image_id *id, u64 seed)
{
    use_writer = true;
    live_open();
    ck_assert_int_eq(live_run(1800, 350, seed), 0);
    sm_t r;
    struct recovery_report rep;
    recover(&r, &rep);
    u64 snap = rep.snapshot_lsn;
    sm_destroy(&r);
    ck_assert_uint_gt(snap, 0);
    struct vsr_entry_header at = entry_header(snap);
    char why[512];
    int rc = image_build(io, DIR, &at, id, why, sizeof(why));
    ck_assert_msg(rc == 0, "%s", why);
    live_close();
    use_writer = false;
    return snap;
}

/* An image built from a snapshot and the operation log decodes to the live state at its LSN,
 * byte for byte what the simulator ships (the entry header, then snapshot_image_encode), with
 * the size and CRC the build reported. */
START_TEST(test_image_is_the_state_at_its_entry)
{
    struct image_id id;
    u64 snap = build_newest_image(&id, 41);
    ck_assert_uint_eq(id.lsn, snap);
    char p[WAL_PATH_MAX];
    ck_assert(image_path(DIR, snap, IMAGE_IMG, p, sizeof(p)));
    const u8 *data;
    u64 len;
    ck_assert(io_fault_contents(fs, p, &data, &len));
    ck_assert_uint_eq(len, id.size);
    ck_assert_uint_eq(crc32c(0, data, len), id.crc);
    struct sm_config cfg = config();
    sm_t r;
    char why[512];
    ck_assert(sm_create(&r, &cfg, why, sizeof(why)));
    struct vsr_entry_header at;
    enum snapshot_status st = image_decode(data, len, &cfg, &r, &at, why, sizeof(why));
    ck_assert_msg(st == SNAPSHOT_OK, "%s: %s", snapshot_status_name(st), why);
    ck_assert_uint_eq(at.lsn, snap);
    ck_assert_uint_gt(r.operation_count, 0);
    assert_same_digest(&r);
    u64 size = VSR_ENTRY_HEADER_SIZE + snapshot_image_size(&r);
    ck_assert_uint_eq(size, len);
    u8 *again = malloc(size);
    vsr_entry_headers_encode(again, &at, 1);
    snapshot_image_encode(&r, again + VSR_ENTRY_HEADER_SIZE, size - VSR_ENTRY_HEADER_SIZE);
    ck_assert_mem_eq(again, data, len);
    free(again);
    sm_destroy(&r);
    /* Nothing but the image is left of the build. */
    char tmp[WAL_PATH_MAX];
    snprintf(tmp, sizeof(tmp), DIR "/image-%020llu.tmp", (unsigned long long)snap);
    ck_assert(!io_fault_exists(fs, tmp));
}
END_TEST

/* Damage anywhere image_check can see it is refused, and an image under another config. */
START_TEST(test_damaged_image_is_refused)
{
    struct image_id id;
    u64 snap = build_newest_image(&id, 42);
    char p[WAL_PATH_MAX];
    ck_assert(image_path(DIR, snap, IMAGE_IMG, p, sizeof(p)));
    const u8 *data;
    u64 len;
    ck_assert(io_fault_contents(fs, p, &data, &len));
    u8 *b = malloc(len + 1);
    memcpy(b, data, len);
    struct sm_config cfg = config();
    struct vsr_entry_header at;
    char why[512];
    ck_assert_int_eq(image_check(b, len, &cfg, &at, why, sizeof(why)), SNAPSHOT_OK);
    /* The entry's LSN, the snapshot header, its first record, the last operation record, the
     * records' CRC. */
    const u64 at_offsets[] = { 0, VSR_ENTRY_HEADER_SIZE + 70, VSR_ENTRY_HEADER_SIZE + SNAPSHOT_HEADER_SIZE + 3,
                               len - 4 - SNAPSHOT_OPERATION_SIZE + 1, len - 2 };
    for (size_t i = 0; i < sizeof(at_offsets) / sizeof(at_offsets[0]); i++) {
        b[at_offsets[i]] ^= 0x10;
        ck_assert_msg(image_check(b, len, &cfg, &at, why, sizeof(why)) != SNAPSHOT_OK, "a flip at %llu passed",
                      (unsigned long long)at_offsets[i]);
        b[at_offsets[i]] ^= 0x10;
    }
    ck_assert_int_eq(image_check(b, len - 1, &cfg, &at, why, sizeof(why)), SNAPSHOT_SHORT);
    b[len] = 0;
    ck_assert_int_eq(image_check(b, len + 1, &cfg, &at, why, sizeof(why)), SNAPSHOT_TRAILING);
    ck_assert_int_eq(image_check(b, 10, &cfg, &at, why, sizeof(why)), SNAPSHOT_SHORT);
    cfg.operation_capacity++;
    ck_assert_int_eq(image_check(b, len, &cfg, &at, why, sizeof(why)), SNAPSHOT_CONFIG_MISMATCH);
    free(b);
}
END_TEST

/* Recovery takes an image like a snapshot: the newest state first (a snapshot before an image
 * of the same LSN), a damaged image falls back like a damaged snapshot. */
START_TEST(test_recovery_takes_images)
{
    struct image_id id;
    u64 snap = build_newest_image(&id, 43);
    sm_t r;
    struct recovery_report rep;
    recover(&r, &rep);
    ck_assert(!rep.from_image); /* the snapshot of the same LSN */
    ck_assert_uint_eq(rep.snapshot_lsn, snap);
    ck_assert_uint_eq(rep.snapshots_found, 3);
    sm_destroy(&r);

    char p[WAL_PATH_MAX];
    snapshot_path(snap, p, sizeof(p));
    const u8 *data;
    u64 len;
    ck_assert(io_fault_contents(fs, p, &data, &len));
    u8 *copy = malloc(len);
    memcpy(copy, data, len);
    ck_assert_int_eq(io->ops->unlink(io, p), 0);
    recover(&r, &rep);
    ck_assert(rep.from_image);
    ck_assert_uint_eq(rep.snapshot_lsn, snap);
    ck_assert_uint_eq(r.last_applied_lsn, L->sm.last_applied_lsn); /* and the WAL after it */
    assert_same_digest(&r);
    sm_destroy(&r);

    /* The image damaged: the older snapshot and the WAL. */
    char ip[WAL_PATH_MAX];
    ck_assert(image_path(DIR, snap, IMAGE_IMG, ip, sizeof(ip)));
    ck_assert_int_eq(io_fault_flip_bit(fs, ip, VSR_ENTRY_HEADER_SIZE + SNAPSHOT_HEADER_SIZE + 5, 2), 0);
    recover(&r, &rep);
    ck_assert(!rep.from_image);
    ck_assert_uint_eq(rep.snapshots_rejected, 1);
    ck_assert_uint_eq(rep.rejected_lsn, snap);
    ck_assert_uint_lt(rep.snapshot_lsn, snap);
    assert_same_digest(&r);
    sm_destroy(&r);

    /* Others go, the one kept stays. */
    ck_assert_int_eq(io_fault_put_file(fs, p, copy, len), 0);
    free(copy);
    char other[WAL_PATH_MAX];
    snprintf(other, sizeof(other), DIR "/image-%020llu.recv", 7ULL);
    ck_assert_int_eq(io_fault_put_file(fs, other, (const u8 *)"x", 1), 0);
    ck_assert_int_eq(image_remove_others(io, DIR, snap, 7), 0);
    ck_assert(io_fault_exists(fs, other) && io_fault_exists(fs, ip));
    ck_assert_uint_eq(image_newest(io, DIR), snap);
    ck_assert_int_eq(image_remove_others(io, DIR, 0, 0), 2);
    ck_assert(!io_fault_exists(fs, other) && !io_fault_exists(fs, ip));
    ck_assert_uint_eq(image_newest(io, DIR), 0);
}
END_TEST

/* No snapshot at that LSN, or its operation records gone: no image, nothing left behind. */
START_TEST(test_image_build_needs_the_snapshot_and_its_records)
{
    struct image_id id;
    u64 snap = build_newest_image(&id, 44);
    ck_assert_int_eq(image_remove_others(io, DIR, 0, 0), 1);
    use_writer = true;
    live_open();
    struct vsr_entry_header at = entry_header(snap + 1);
    char why[512];
    ck_assert_int_eq(image_build(io, DIR, &at, &id, why, sizeof(why)), -ENOENT);
    at = entry_header(snap);
    live_close();
    use_writer = false;
    /* Every operation log segment removed: the snapshot's records are missing. */
    u32 removed;
    ck_assert_int_eq(oplog_prune(io, DIR, UINT64_MAX, &removed, why, sizeof(why)), 0);
    for (u64 start = 0; start <= L->sm.last_applied_lsn; start++) {
        char path[128];
        snprintf(path, sizeof(path), DIR "/ops-%020llu.log", (unsigned long long)start);
        if (io_fault_exists(fs, path))
            ck_assert_int_eq(io->ops->unlink(io, path), 0);
    }
    int rc = image_build(io, DIR, &at, &id, why, sizeof(why));
    ck_assert_msg(rc != 0, "an image without its records");
    ck_assert_uint_eq(image_newest(io, DIR), 0);
    char tmp[WAL_PATH_MAX];
    snprintf(tmp, sizeof(tmp), DIR "/image-%020llu.tmp", (unsigned long long)snap);
    ck_assert(!io_fault_exists(fs, tmp));
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("recovery");
    TCase *tc = tcase_create("recovery");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, TEST_LONG_TIMEOUT);
    tcase_add_loop_test(tc, test_replay_equivalence, 0, 4);
    tcase_add_test(tc, test_startup_kinds_and_checkpoints);
    tcase_add_test(tc, test_bad_newest_snapshot_falls_back_or_fails_closed);
    tcase_add_test(tc, test_damage_below_the_snapshot_degrades_and_refuses_fallback);
    tcase_add_test(tc, test_interrupted_snapshot_write_is_cleaned);
    tcase_add_test(tc, test_crash_at_every_step);
    tcase_add_test(tc, test_crash_at_every_step_pages_out_of_order);
    tcase_add_loop_test(tc, test_crash_at_every_step_with_the_operation_log, 0, 2);
    tcase_add_test(tc, test_operation_log_is_pruned_and_still_recovers);
    tcase_add_test(tc, test_image_is_the_state_at_its_entry);
    tcase_add_test(tc, test_damaged_image_is_refused);
    tcase_add_test(tc, test_recovery_takes_images);
    tcase_add_test(tc, test_image_build_needs_the_snapshot_and_its_records);
    suite_add_tcase(s, tc);
    return s;
}
