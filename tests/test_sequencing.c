/*
 * tests/test_sequencing.c — the sequencer's core (wal/sequencing.h), event by event: batching
 * limits, a retry inside and outside the cache, refusals while the disk is full, restart
 * reconciliation over a real WAL on a simulated disk (durable but unpublished frames, a batch
 * published in part, fed on through the applier's entry rule), slots that never go backwards
 * across a restart nor follow a wall-clock step, and metadata and prune maintenance.
 */
#include "config.h"

#include "replica/apply_policy.h"
#include "tests/check_main.h"
#include "tests/io_fault.h"
#include "wal/log.h"
#include "wal/sequencing.h"

#include <stdlib.h>
#include <string.h>

#define WINDOW 80 /* the retry cache's window (margin 80/8 + 1 = 11 slots) */

static const struct sequencing_config cfg = { .batch_max = 64,
                                              .slot_ms = 100,
                                              .meta_interval_ms = 1000,
                                              .meta_idle_ms = 60000,
                                              .meta_backoff_max_ms = 30000,
                                              .space_retry_ms = 1000 };

static struct retry_cache cache;
static void *cache_mem;
static struct sequencing s;

static void setup(void)
{
    free(cache_mem); /* restart() sets up again: a new sequencer process */
    cache_mem = calloc(1, retry_cache_bytes(256));
    ck_assert_ptr_nonnull(cache_mem);
    retry_cache_init(&cache, cache_mem, 256, WINDOW);
    sequencing_init(&s, &cfg, &cache);
    /* A timeline of this boot starting at logical 100000 ms (slot 1000) at boot clock 0. */
    sequencing_join_clock(&s, 100000, 0, 0);
}

static void teardown(void)
{
    free(cache_mem);
    cache_mem = NULL;
}

static struct sm_command reserve(u128 op, u128 resource)
{
    struct sm_command cmd;
    memset(&cmd, 0, sizeof(cmd));
    cmd.kind = SM_CMD_RESERVE;
    cmd.operation_id = op;
    cmd.client_id = 9;
    cmd.resource_id = resource;
    cmd.holder_id = 5;
    cmd.ttl_slots = 10;
    return cmd;
}

START_TEST(test_batch_limit)
{
    ck_assert_uint_eq(sequencing_batch_limit(&s, 0), 0);  /* the shared log is full: wait */
    ck_assert_uint_eq(sequencing_batch_limit(&s, 10), 10); /* never more than it has room for */
    ck_assert_uint_eq(sequencing_batch_limit(&s, 64), 64);
    ck_assert_uint_eq(sequencing_batch_limit(&s, 1u << 20), 64); /* at most batch_max per fsync */
}
END_TEST

START_TEST(test_retry_inside_and_outside_the_cache)
{
    struct sm_command a = reserve(1, 100);
    u64 slot = sequencing_slot(&s, 0);
    ck_assert_uint_eq(slot, 1000);
    struct sequencing_write w = sequencing_take_write(&s, &a, false, slot, 7, 6, 0);
    ck_assert_int_eq(w.action, SEQUENCING_APPEND);
    ck_assert(w.known_absent);
    sequencing_appended(&s, &a, 7, slot, w.known_absent);
    /* Logged but not yet durable: a retry is logged again (the state machine dedupes it). */
    w = sequencing_take_write(&s, &a, false, slot, 8, 6, 0);
    ck_assert_int_eq(w.action, SEQUENCING_APPEND);
    ck_assert(!w.known_absent);
    /* Durable: answered from LSN 7 without a frame. */
    w = sequencing_take_write(&s, &a, false, slot, 8, 7, 0);
    ck_assert_int_eq(w.action, SEQUENCING_ANSWER_RETRY);
    ck_assert_uint_eq(w.retry_lsn, 7);
    /* The ingress forces logging (the applier did not find the record): a frame. */
    ck_assert_int_eq(sequencing_take_write(&s, &a, true, slot, 8, 7, 0).action, SEQUENCING_APPEND);
    /* The same id with another command: logged, the state machine answers operation_conflict. */
    struct sm_command b = reserve(1, 101);
    ck_assert_int_eq(sequencing_take_write(&s, &b, false, slot, 8, 7, 0).action, SEQUENCING_APPEND);
    /* Late in the window (fewer than 11 slots left): logged. */
    u64 late = sequencing_slot(&s, (WINDOW - 10) * 100);
    ck_assert_uint_eq(late, 1000 + WINDOW - 10);
    ck_assert_int_eq(sequencing_take_write(&s, &a, false, late, 8, 7, 0).action, SEQUENCING_APPEND);
    /* Past the window: the entry retired, the id is new again. */
    u64 past = sequencing_slot(&s, (WINDOW + 2) * 100);
    w = sequencing_take_write(&s, &a, false, past, 8, 7, 0);
    ck_assert_int_eq(w.action, SEQUENCING_APPEND);
    ck_assert(w.known_absent);
}
END_TEST

START_TEST(test_lsn_exhausted)
{
    struct sm_command a = reserve(1, 100);
    ck_assert_int_eq(sequencing_take_write(&s, &a, false, 1000, UINT64_MAX, 5, 0).action,
                     SEQUENCING_REJECT_EXHAUSTED);
}
END_TEST

START_TEST(test_full_disk_refuses_and_tries_again)
{
    struct sm_command a = reserve(1, 100);
    ck_assert(sequencing_take_expire(&s));
    /* The next segment could not be created at t=5000. */
    ck_assert_int_eq(sequencing_space(&s, SEQUENCING_SEGMENT, true, 5000), SEQUENCING_SPACE_FULL);
    ck_assert(sequencing_writes_refused(&s));
    ck_assert_int_eq(sequencing_space_level(&s), 2);
    ck_assert_int_eq(sequencing_take_write(&s, &a, false, 1000, 1, 0, 5999).action, SEQUENCING_REFUSE_NO_SPACE);
    ck_assert(!sequencing_take_expire(&s)); /* dropped: proposed again later, never early */
    /* Once the retry interval has passed, one write tries to grow again. */
    ck_assert_int_eq(sequencing_take_write(&s, &a, false, 1000, 1, 0, 6000).action, SEQUENCING_APPEND);
    ck_assert_int_eq(sequencing_space(&s, SEQUENCING_SEGMENT, true, 6000), SEQUENCING_SPACE_SAME);
    ck_assert_int_eq(sequencing_take_write(&s, &a, false, 1000, 1, 0, 6500).action, SEQUENCING_REFUSE_NO_SPACE);
    /* A retry is still answered from the cache while writes are refused. */
    sequencing_appended(&s, &a, 3, 1000, true);
    struct sequencing_write w = sequencing_take_write(&s, &a, false, 1000, 4, 3, 6500);
    ck_assert_int_eq(w.action, SEQUENCING_ANSWER_RETRY);
    ck_assert_int_eq(sequencing_space(&s, SEQUENCING_SEGMENT, false, 7000), SEQUENCING_SPACE_RETURNED);
    ck_assert_int_eq(sequencing_space_level(&s), 0);
    ck_assert(sequencing_take_expire(&s));
    /* The metadata cannot grow: every new write is refused, whatever the time. */
    sequencing_space(&s, SEQUENCING_META, true, 8000);
    struct sm_command b = reserve(2, 100);
    ck_assert_int_eq(sequencing_take_write(&s, &b, false, 1000, 4, 3, 100000).action, SEQUENCING_REFUSE_NO_SPACE);
    sequencing_space(&s, SEQUENCING_META, false, 9000);
    /* Only the spare cannot grow: writes go on, /health warns, preparing waits a retry interval. */
    ck_assert(sequencing_prepare_due(&s, 9000));
    sequencing_space(&s, SEQUENCING_SPARE, true, 9000);
    ck_assert_int_eq(sequencing_space_level(&s), 1);
    ck_assert(!sequencing_writes_refused(&s));
    ck_assert(!sequencing_prepare_due(&s, 9999));
    ck_assert(sequencing_prepare_due(&s, 10000));
}
END_TEST

/* ---- restart reconciliation over a real WAL ---------------------------------------------- */

#define DIR "/data"
static const struct wal_log_options wopt = { .segment_bytes = 1u << 20 };

struct replayed {
    u64 published[64]; /* LSNs the restarted sequencer publishes again */
    u32 count;
};

static int on_replay(void *ctx, const struct wal_frame *f, const struct sm_command *cmd)
{
    struct replayed *r = ctx;
    if (sequencing_replayed(&s, cmd, f->lsn, f->request_slot)) {
        ck_assert_uint_lt(r->count, 64);
        r->published[r->count++] = f->lsn;
    }
    return 0;
}

/* A WAL of `n` durable frames (reserve i at slot 1000 + i) on a fresh simulated disk. */
static struct io_fault *wal_with(u32 n)
{
    struct io_fault *fs = io_fault_create(1);
    struct io *io = io_fault_io(fs);
    char why[256];
    ck_assert_int_eq(io->ops->mkdir(io, DIR), 0);
    ck_assert_int_eq(io->ops->sync_dir(io, ""), 0);
    ck_assert_msg(wal_log_format(io, DIR, &wopt, why, sizeof(why)) == 0, "%s", why);
    struct wal_log w;
    struct wal_open_report rep;
    ck_assert_msg(wal_log_open(&w, io, DIR, &wopt, 0, NULL, NULL, &rep, why, sizeof(why)) == 0, "%s", why);
    for (u32 i = 1; i <= n; i++) {
        struct sm_command c = reserve(i, 100 + i);
        u64 lsn;
        ck_assert_int_eq(wal_log_append(&w, 1000 + i, 0, &c, &lsn), 0);
        ck_assert_uint_eq(lsn, i);
    }
    ck_assert_int_eq(wal_log_commit(&w), 0);
    wal_log_close(&w);
    return fs;
}

/* Restarts the sequencer on that disk after it published up to `published`; returns the plan. */
static struct sequencing_open restart(struct io_fault *fs, const struct sequencing_restart *seen,
                                      struct replayed *r, struct wal_open_report *rep)
{
    setup();
    struct sequencing_open plan;
    sequencing_plan_restart(&s, seen, &plan);
    struct wal_log_options o = wopt;
    o.synced_lsn = plan.synced_lsn;
    struct wal_log w;
    char why[256];
    memset(r, 0, sizeof(*r));
    ck_assert_msg(wal_log_open(&w, io_fault_io(fs), DIR, &o, plan.read_from_lsn, on_replay, r, rep, why,
                               sizeof(why)) == 0, "%s", why);
    wal_log_close(&w);
    return plan;
}

START_TEST(test_restart_publishes_durable_unpublished_frames)
{
    struct io_fault *fs = wal_with(10);
    /* Crashed after the fsync of batch 7..10, before publishing any of it; a snapshot at 8
     * exists (the applier cannot be past 6, but the file name is all the sequencer sees). */
    struct sequencing_restart seen = { .ever_ready = true, .published_lsn = 6, .newest_snapshot_lsn = 8,
                                       .meta_commit_lsn = 3 };
    struct replayed r;
    struct wal_open_report rep;
    struct sequencing_open plan = restart(fs, &seen, &r, &rep);
    ck_assert(!plan.first_start);
    ck_assert_uint_eq(plan.read_from_lsn, 7); /* not after the snapshot: 7 and 8 must be read */
    ck_assert_uint_eq(plan.synced_lsn, 6);    /* published only once durable */
    ck_assert_uint_eq(r.count, 4);
    for (u32 i = 0; i < r.count; i++)
        ck_assert_uint_eq(r.published[i], 7 + i);
    ck_assert_int_eq(sequencing_check_opened(&s, &plan, rep.last_lsn), SEQUENCING_OPENED);
    /* The cache learned what was replayed: a retry of LSN 9's command is answered. */
    struct sm_command c9 = reserve(9, 109);
    struct sequencing_write w = sequencing_take_write(&s, &c9, false, sequencing_slot(&s, 0), 11, 10, 0);
    ck_assert_int_eq(w.action, SEQUENCING_ANSWER_RETRY);
    ck_assert_uint_eq(w.retry_lsn, 9);
    io_fault_destroy(fs);
}
END_TEST

START_TEST(test_restart_after_a_partly_published_batch)
{
    struct io_fault *fs = wal_with(10);
    /* Batches 1..6 and 7..10; the crash came while publishing the second: 7 and 8 reached the
     * shared log, published_lsn still says 6. */
    u64 shlog[32];
    u32 n = 0;
    for (u64 l = 1; l <= 8; l++)
        shlog[n++] = l;
    struct sequencing_restart seen = { .ever_ready = true, .published_lsn = 6, .meta_commit_lsn = 6 };
    struct replayed r;
    struct wal_open_report rep;
    restart(fs, &seen, &r, &rep);
    ck_assert_uint_eq(r.count, 4);
    for (u32 i = 0; i < r.count; i++)
        shlog[n++] = r.published[i];
    /* The applier (it had applied up to 5 when the sequencer died) sees 1..8, 7..10: every LSN
     * applied exactly once, in order, and no gap is reported. */
    u64 applied = 5, applied_slot = 1005, times[11] = { 0 };
    for (u32 i = 0; i < n; i++) {
        enum apply_entry e = apply_policy_entry(applied, applied_slot, shlog[i], 1000 + shlog[i]);
        ck_assert_int_ne(e, APPLY_ENTRY_GAP);
        if (e == APPLY_ENTRY_APPLY) {
            applied = shlog[i];
            applied_slot = 1000 + shlog[i];
            times[applied]++;
        }
    }
    ck_assert_uint_eq(applied, 10);
    for (u32 l = 6; l <= 10; l++)
        ck_assert_uint_eq(times[l], 1);
    io_fault_destroy(fs);
}
END_TEST

START_TEST(test_first_start_publishes_nothing)
{
    struct io_fault *fs = wal_with(10);
    struct sequencing_restart seen = { .ever_ready = false, .published_lsn = 0, .newest_snapshot_lsn = 4,
                                       .meta_commit_lsn = 2 };
    struct replayed r;
    struct wal_open_report rep;
    struct sequencing_open plan = restart(fs, &seen, &r, &rep);
    ck_assert(plan.first_start);
    ck_assert_uint_eq(plan.read_from_lsn, 5); /* after the snapshot only */
    ck_assert_uint_eq(plan.synced_lsn, 2);    /* only the metadata's commit point is known */
    ck_assert_uint_eq(r.count, 0);            /* the applier recovers from disk itself */
    ck_assert_int_eq(sequencing_check_opened(&s, &plan, rep.last_lsn), SEQUENCING_OPENED);
    io_fault_destroy(fs);
}
END_TEST

START_TEST(test_restart_refuses_a_short_wal)
{
    struct io_fault *fs = wal_with(10);
    struct sequencing_restart seen = { .ever_ready = true, .published_lsn = 12, .meta_commit_lsn = 9 };
    struct replayed r;
    struct wal_open_report rep;
    struct sequencing_open plan = restart(fs, &seen, &r, &rep);
    ck_assert_int_eq(sequencing_check_opened(&s, &plan, rep.last_lsn), SEQUENCING_WAL_BEHIND_SHARED_LOG);
    struct sequencing_restart meta = { .ever_ready = false, .meta_commit_lsn = 11 };
    plan = restart(fs, &meta, &r, &rep);
    ck_assert_int_eq(sequencing_check_opened(&s, &plan, rep.last_lsn), SEQUENCING_META_AHEAD_OF_WAL);
    io_fault_destroy(fs);
}
END_TEST

/* ---- slots ------------------------------------------------------------------------------- */

START_TEST(test_slot_never_backwards)
{
    /* An entry logged at slot 1500 (e.g. by a predecessor whose clock ran ahead): nothing after
     * it is stamped below, although the clock says 1000. */
    sequencing_appended(&s, &(struct sm_command){ .kind = SM_CMD_EXPIRE }, 1, 1500, false);
    ck_assert_uint_eq(sequencing_slot(&s, 0), 1500);
    /* A worker restart joins the timeline with the WAL's last slot as the floor. */
    sequencing_init(&s, &cfg, &cache);
    sequencing_join_clock(&s, 100000, 0, 1500);
    ck_assert_uint_eq(sequencing_slot(&s, 0), 1500);
    ck_assert_uint_eq(sequencing_slot(&s, 60000), 1600); /* then it advances with the boot clock */
    /* A daemon restart in the same boot from an anchor whose clock is behind the log. */
    struct clock_anchor saved = { .logical_ms = 150000, .wall_ms = 1000000, .boot_ms = 5000, .boot_id = 77 };
    struct clock_reading now = { .wall_ms = 1001000, .boot_ms = 6000, .boot_id = 77 };
    sequencing_start_clock(&s, 2000, &saved, &now);
    ck_assert_uint_ge(sequencing_slot(&s, 6000), 2000);
}
END_TEST

START_TEST(test_slot_ignores_a_wall_clock_step)
{
    /* The daemon restarts 1 s after its anchor (same boot), and meanwhile the wall clock was
     * stepped one hour forward: the slot follows the boot clock, not the step. */
    struct clock_anchor saved = { .logical_ms = 500000, .wall_ms = 1000000, .boot_ms = 5000, .boot_id = 77 };
    struct clock_reading now = { .wall_ms = 1001000 + 3600000, .boot_ms = 6000, .boot_id = 77 };
    sequencing_start_clock(&s, 0, &saved, &now);
    ck_assert_uint_eq(sequencing_slot(&s, 6000), 5010);
    /* And one stepped back an hour changes nothing either. */
    now.wall_ms = 1001000 - 3600000;
    sequencing_start_clock(&s, 0, &saved, &now);
    ck_assert_uint_eq(sequencing_slot(&s, 6000), 5010);
}
END_TEST

/* ---- maintenance ------------------------------------------------------------------------- */

START_TEST(test_commit_point_timing)
{
    struct sequencing_restart seen = { .ever_ready = true, .published_lsn = 0, .meta_commit_lsn = 10 };
    struct sequencing_open plan;
    sequencing_plan_restart(&s, &seen, &plan);
    u64 lsn = 0;
    ck_assert(sequencing_commit_due(&s, 1000, 12, &lsn)); /* the WAL moved: once per interval */
    ck_assert_uint_eq(lsn, 12);
    sequencing_committed(&s, 12);
    ck_assert(!sequencing_commit_due(&s, 1999, 15, &lsn));
    ck_assert(sequencing_commit_due(&s, 2000, 15, &lsn));
    sequencing_committed(&s, 15);
    /* Idle: only the clock anchor needs refreshing, once per idle interval. */
    ck_assert(!sequencing_commit_due(&s, 61999, 15, &lsn));
    ck_assert(sequencing_commit_due(&s, 62000, 15, &lsn));
    ck_assert_uint_eq(lsn, 15);
    /* Never backwards, even if asked with an older durable point. */
    ck_assert(sequencing_commit_due(&s, 200000, 3, &lsn));
    ck_assert_uint_eq(lsn, 15);
    /* The metadata could not grow: retried every space interval. */
    sequencing_space(&s, SEQUENCING_META, true, 200000);
    ck_assert(!sequencing_commit_due(&s, 200999, 15, &lsn));
    ck_assert(sequencing_commit_due(&s, 201000, 15, &lsn));
}
END_TEST

START_TEST(test_snapshot_anchor_and_backoff)
{
    struct sequencing_restart seen = { .ever_ready = true, .meta_commit_lsn = 100, .meta_snapshot_lsn = 50 };
    struct sequencing_open plan;
    sequencing_plan_restart(&s, &seen, &plan);
    ck_assert(!sequencing_anchor_due(&s, 0, 50));  /* not newer */
    ck_assert(!sequencing_anchor_due(&s, 0, 101)); /* never past the commit point */
    ck_assert(sequencing_anchor_due(&s, 0, 100));
    /* Failures back off 1 s, 2 s, 4 s ... up to 30 s. */
    ck_assert_uint_eq(sequencing_meta_failed(&s, 0), 1000);
    ck_assert(!sequencing_anchor_due(&s, 999, 100));
    ck_assert(!sequencing_meta_open_due(&s, 999));
    ck_assert(sequencing_meta_open_due(&s, 1000));
    ck_assert_uint_eq(sequencing_meta_failed(&s, 1000), 2000);
    ck_assert_uint_eq(sequencing_meta_failed(&s, 3000), 4000);
    for (int i = 0; i < 10; i++)
        sequencing_meta_failed(&s, 10000);
    ck_assert_uint_eq(s.meta_backoff_ms, 30000);
    ck_assert(sequencing_anchor_due(&s, 40000, 100));
    sequencing_anchored(&s, 100);
    ck_assert(!sequencing_anchor_due(&s, 40000, 100));
    ck_assert_uint_eq(sequencing_meta_failed(&s, 50000), 1000); /* a success reset it */
}
END_TEST

START_TEST(test_prune_only_forward)
{
    ck_assert(!sequencing_prune_due(&s, 0));
    ck_assert(sequencing_prune_due(&s, 40));
    sequencing_pruned(&s, 40);
    ck_assert(!sequencing_prune_due(&s, 40));
    ck_assert(!sequencing_prune_due(&s, 30));
    ck_assert(sequencing_prune_due(&s, 41));
}
END_TEST

Suite *test_suite(void)
{
    Suite *su = suite_create("sequencing");
    TCase *tc = tcase_create("sequencing");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_batch_limit);
    tcase_add_test(tc, test_retry_inside_and_outside_the_cache);
    tcase_add_test(tc, test_lsn_exhausted);
    tcase_add_test(tc, test_full_disk_refuses_and_tries_again);
    tcase_add_test(tc, test_restart_publishes_durable_unpublished_frames);
    tcase_add_test(tc, test_restart_after_a_partly_published_batch);
    tcase_add_test(tc, test_first_start_publishes_nothing);
    tcase_add_test(tc, test_restart_refuses_a_short_wal);
    tcase_add_test(tc, test_slot_never_backwards);
    tcase_add_test(tc, test_slot_ignores_a_wall_clock_step);
    tcase_add_test(tc, test_commit_point_timing);
    tcase_add_test(tc, test_snapshot_anchor_and_backoff);
    tcase_add_test(tc, test_prune_only_forward);
    suite_add_tcase(su, tc);
    return su;
}
