/*
 * tests/test_apply_policy.c — the applier's policy core (replica/apply_policy.h), event by event:
 * an expiration round proposed once per slot and held until its entries are applied (or the
 * hold times out), checkpoints by interval and new entries, never two at once, a doubling
 * backoff reset by a success, and the WAL pruned only behind the older snapshot.
 */
#include "config.h"

#include "replica/apply_policy.h"
#include "tests/check_main.h"

static const struct apply_policy_config cfg = { .checkpoint_interval_ms = 60000,
                                                .checkpoint_min_entries = 100,
                                                .expire_hold_max_ms = 1000,
                                                .snapshot_backoff_max_ms = 300000 };

START_TEST(test_expiration_once_per_slot)
{
    struct apply_policy p;
    apply_policy_init(&p, &cfg, 0, 0);
    ck_assert_uint_eq(apply_policy_expiration(&p, 10, 5, false, 0, true, 0),
                      APPLY_POLICY_NEW_SLOT | APPLY_POLICY_PROPOSE);
    apply_policy_proposed(&p, 0, 10); /* nothing was due: nothing held */
    ck_assert_uint_eq(apply_policy_expiration(&p, 20, 5, false, 0, true, 0), 0); /* the same slot */
    ck_assert_uint_eq(apply_policy_expiration(&p, 30, 5, true, 0, true, 0),      /* a forced tick */
                      APPLY_POLICY_NEW_SLOT | APPLY_POLICY_PROPOSE);
    ck_assert_uint_eq(apply_policy_expiration(&p, 40, 6, false, 0, true, 0),
                      APPLY_POLICY_NEW_SLOT | APPLY_POLICY_PROPOSE);
}
END_TEST

START_TEST(test_expiration_held_until_applied)
{
    struct apply_policy p;
    apply_policy_init(&p, &cfg, 0, 0);
    ck_assert(apply_policy_expiration(&p, 0, 1, false, 100, true, 100) & APPLY_POLICY_PROPOSE);
    apply_policy_proposed(&p, 3, 0);
    /* The sequencer has not taken them all yet: no bound, held. */
    ck_assert_uint_eq(apply_policy_expiration(&p, 100, 2, false, 100, false, 0), APPLY_POLICY_NEW_SLOT);
    /* Taken: their entries are at or below 103; until applied there, held. */
    ck_assert_uint_eq(apply_policy_expiration(&p, 200, 3, false, 102, true, 103), APPLY_POLICY_NEW_SLOT);
    ck_assert_uint_eq(p.hold_until_lsn, 103);
    /* A later sequenced LSN does not move the bound. */
    ck_assert_uint_eq(apply_policy_expiration(&p, 300, 4, false, 102, true, 500), APPLY_POLICY_NEW_SLOT);
    /* Applied: the next slot proposes again (a reservation that did not expire is due again). */
    ck_assert_uint_eq(apply_policy_expiration(&p, 400, 5, false, 103, true, 500),
                      APPLY_POLICY_NEW_SLOT | APPLY_POLICY_PROPOSE);
}
END_TEST

START_TEST(test_expiration_hold_times_out)
{
    struct apply_policy p;
    apply_policy_init(&p, &cfg, 0, 0);
    apply_policy_expiration(&p, 0, 1, false, 0, true, 0);
    apply_policy_proposed(&p, 1, 0);
    /* Never taken (a proposal lost): still held at the limit, proposed again past it. */
    ck_assert_uint_eq(apply_policy_expiration(&p, 1000, 2, false, 0, false, 0), APPLY_POLICY_NEW_SLOT);
    ck_assert_uint_eq(apply_policy_expiration(&p, 1001, 3, false, 0, false, 0),
                      APPLY_POLICY_NEW_SLOT | APPLY_POLICY_PROPOSE);
}
END_TEST

START_TEST(test_checkpoint_timing)
{
    struct apply_policy p;
    apply_policy_init(&p, &cfg, 1000, 500); /* recovered from a snapshot at 500 */
    ck_assert(!apply_policy_checkpoint_due(&p, 1000 + 59999, 10000)); /* too soon */
    ck_assert(!apply_policy_checkpoint_due(&p, 1000 + 60000, 599));   /* too few new entries */
    ck_assert(apply_policy_checkpoint_due(&p, 1000 + 60000, 600));
    apply_policy_checkpoint_started(&p, 600, 61000);
    ck_assert(!apply_policy_checkpoint_due(&p, 1000000, 100000)); /* one at a time */
    ck_assert_uint_eq(apply_policy_checkpoint_done(&p), 501);      /* behind the older one: 500 */
    ck_assert(!apply_policy_checkpoint_due(&p, 61000 + 59999, 100000));
    ck_assert(!apply_policy_checkpoint_due(&p, 61000 + 60000, 699));
    ck_assert(apply_policy_checkpoint_due(&p, 61000 + 60000, 700));
}
END_TEST

START_TEST(test_prune_only_behind_the_older_snapshot)
{
    struct apply_policy p;
    apply_policy_init(&p, &cfg, 0, 0); /* no snapshot yet */
    apply_policy_checkpoint_started(&p, 1000, 60000);
    ck_assert_uint_eq(apply_policy_checkpoint_done(&p), 0); /* the only snapshot: keep the whole WAL */
    apply_policy_checkpoint_started(&p, 2000, 120000);
    ck_assert_uint_eq(apply_policy_checkpoint_done(&p), 1001);
    apply_policy_checkpoint_started(&p, 3000, 180000);
    ck_assert_uint_eq(apply_policy_checkpoint_done(&p), 2001);
    ck_assert_uint_eq(p.snap_lsns[0], 3000);
    ck_assert_uint_eq(p.snap_lsns[1], 2000);
}
END_TEST

START_TEST(test_backoff_doubles_and_resets)
{
    struct apply_policy p;
    apply_policy_init(&p, &cfg, 0, 0);
    apply_policy_checkpoint_started(&p, 100, 60000);
    ck_assert_uint_eq(apply_policy_checkpoint_failed(&p), 60000);
    ck_assert(!apply_policy_checkpoint_due(&p, 60000 + 119999, 1000)); /* interval + backoff */
    ck_assert(apply_policy_checkpoint_due(&p, 60000 + 120000, 1000));
    apply_policy_checkpoint_started(&p, 1000, 180000);
    ck_assert_uint_eq(apply_policy_checkpoint_failed(&p), 120000);
    apply_policy_checkpoint_started(&p, 1000, 400000);
    ck_assert_uint_eq(apply_policy_checkpoint_failed(&p), 240000);
    apply_policy_checkpoint_started(&p, 1000, 800000);
    ck_assert_uint_eq(apply_policy_checkpoint_failed(&p), 300000); /* capped */
    apply_policy_checkpoint_started(&p, 1000, 2000000);
    ck_assert_uint_eq(apply_policy_checkpoint_done(&p), 0);
    ck_assert_uint_eq(p.backoff_ms, 0);
    /* A short interval still backs off by at least a second. */
    struct apply_policy_config quick = cfg;
    quick.checkpoint_interval_ms = 100;
    apply_policy_init(&p, &quick, 0, 0);
    apply_policy_checkpoint_started(&p, 100, 100);
    ck_assert_uint_eq(apply_policy_checkpoint_failed(&p), 1000);
}
END_TEST

START_TEST(test_entry_order)
{
    ck_assert_int_eq(apply_policy_entry(5, 100, 6, 100), APPLY_ENTRY_APPLY);
    ck_assert_int_eq(apply_policy_entry(5, 100, 6, 101), APPLY_ENTRY_APPLY);
    /* Republished after a sequencer restart, or applied by a predecessor: skipped. */
    ck_assert_int_eq(apply_policy_entry(5, 100, 5, 100), APPLY_ENTRY_SKIP);
    ck_assert_int_eq(apply_policy_entry(5, 100, 1, 90), APPLY_ENTRY_SKIP);
    /* A hole, or a slot going backwards: shared-memory damage. */
    ck_assert_int_eq(apply_policy_entry(5, 100, 7, 100), APPLY_ENTRY_GAP);
    ck_assert_int_eq(apply_policy_entry(5, 100, 6, 99), APPLY_ENTRY_GAP);
}
END_TEST

START_TEST(test_recovery_limit_and_retries)
{
    /* First start: what the sequencer's recovery made durable; a restart: what was applied. */
    ck_assert_uint_eq(apply_policy_recovery_limit(true, 40, 0, 0), 40);
    ck_assert_uint_eq(apply_policy_recovery_limit(false, 90, 35, 0), 35);
    /* An installed image is recovered whole, whatever was applied before it. */
    ck_assert_uint_eq(apply_policy_recovery_limit(false, 90, 35, 60), 60);
    ck_assert_uint_eq(apply_policy_recovery_limit(true, 40, 0, 70), 70);
    ck_assert_uint_eq(apply_policy_recovery_limit(false, 90, 65, 60), 65);
    /* A retry answered from the sequencer's cache waits for its LSN. */
    ck_assert(!apply_policy_retry_ready(9, 10));
    ck_assert(apply_policy_retry_ready(10, 10));
    /* Due once the deadline slot has ended. */
    u64 through = 99;
    ck_assert(!apply_policy_due_through(0, &through));
    ck_assert(apply_policy_due_through(50, &through));
    ck_assert_uint_eq(through, 49);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("apply_policy");
    TCase *tc = tcase_create("apply_policy");
    tcase_add_test(tc, test_expiration_once_per_slot);
    tcase_add_test(tc, test_expiration_held_until_applied);
    tcase_add_test(tc, test_expiration_hold_times_out);
    tcase_add_test(tc, test_checkpoint_timing);
    tcase_add_test(tc, test_prune_only_behind_the_older_snapshot);
    tcase_add_test(tc, test_backoff_doubles_and_resets);
    tcase_add_test(tc, test_entry_order);
    tcase_add_test(tc, test_recovery_limit_and_retries);
    suite_add_tcase(s, tc);
    return s;
}
