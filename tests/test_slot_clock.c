/*
 * tests/test_slot_clock.c — request slots never run ahead of real elapsed time (DESIGN.md §3).
 *
 * The clocks are injected: every case feeds the readings a shell would take (wall, boot clock,
 * boot id) and checks the slots. Each case names the rule it defends; removing the rule from
 * wal/slot_clock.c makes that case fail.
 */
#include "wal/slot_clock.h"
#include "tests/check_main.h"

#define SLOT_MS 100
#define HOUR_MS (3600ull * 1000)
static const u128 BOOT_A = U128_MAKE(0xa, 1), BOOT_B = U128_MAKE(0xb, 2);

static struct clock_reading at(u64 wall_ms, u64 boot_ms, u128 boot_id)
{
    return (struct clock_reading){ .wall_ms = wall_ms, .boot_ms = boot_ms, .boot_id = boot_id };
}

/* Within a process life only the boot clock moves slots: a wall step of +1 h changes nothing,
 * because the wall clock is not even an input. A 30 s reservation made now stays unexpired
 * until 30 s of boot clock have passed. */
START_TEST(test_wall_step_within_a_life_expires_nothing)
{
    struct slot_clock c;
    struct clock_reading now = at(1700000000000ull, 50000, BOOT_A);
    slot_clock_start(&c, SLOT_MS, 0, NULL, &now);
    u64 reserve_slot = slot_clock_slot(&c, now.boot_ms);
    u64 deadline = reserve_slot + 30000 / SLOT_MS;
    /* The wall clock jumps an hour (NTP step, VM resume); 3 s of real time pass. */
    u64 slot = slot_clock_slot(&c, now.boot_ms + 3000);
    ck_assert_uint_eq(slot, reserve_slot + 30);
    ck_assert_uint_lt(slot, deadline);
    /* Due (deadline slot ended) only once 30 s and the rest of the first slot have passed. */
    for (u64 t = 0; t <= 31000; t += 10) {
        bool due = slot_clock_slot(&c, now.boot_ms + t) > deadline;
        if (due)
            ck_assert_uint_ge(t, 30000);
    }
}
END_TEST

/* A restart in the same boot continues exactly by the boot clock, whatever the wall did. */
START_TEST(test_restart_same_boot_uses_boot_clock)
{
    struct slot_clock c;
    struct clock_reading t0 = at(1700000000000ull, 50000, BOOT_A);
    slot_clock_start(&c, SLOT_MS, 0, NULL, &t0);
    struct clock_reading t1 = at(t0.wall_ms + 5000, t0.boot_ms + 5000, BOOT_A);
    struct clock_anchor saved = slot_clock_anchor(&c, &t1);
    ck_assert_uint_eq(saved.logical_ms, t0.wall_ms + 5000);
    u64 last_slot = slot_clock_slot(&c, t1.boot_ms);
    /* Down for 2 s of real time while the wall clock was stepped forward an hour. */
    struct clock_reading t2 = at(t1.wall_ms + 2000 + HOUR_MS, t1.boot_ms + 2000, BOOT_A);
    struct slot_clock d;
    slot_clock_start(&d, SLOT_MS, last_slot, &saved, &t2);
    ck_assert_int_eq(d.basis, SLOT_CLOCK_BOOT);
    ck_assert_uint_eq(slot_clock_logical_ms(&d, t2.boot_ms), saved.logical_ms + 2000);
    ck_assert_uint_eq(slot_clock_slot(&d, t2.boot_ms), last_slot + 20);
    /* ... and the wall clock stepped back an hour instead: still exactly 2 s later. */
    t2.wall_ms = t1.wall_ms + 2000 - HOUR_MS;
    slot_clock_start(&d, SLOT_MS, last_slot, &saved, &t2);
    ck_assert_uint_eq(slot_clock_slot(&d, t2.boot_ms), last_slot + 20);
}
END_TEST

/* Across a reboot the boot clock restarted: the wall clock measures the downtime, and only
 * ever moves time forward from the anchor. */
START_TEST(test_reboot_uses_wall_clock_forward_only)
{
    struct clock_anchor saved = { .logical_ms = 1000000, .wall_ms = 1700000000000ull, .boot_ms = 900000,
                                  .boot_id = BOOT_A };
    u64 last_slot = saved.logical_ms / SLOT_MS;
    struct slot_clock c;
    struct clock_reading r = at(saved.wall_ms + 60000, 5000, BOOT_B); /* down a minute */
    slot_clock_start(&c, SLOT_MS, last_slot, &saved, &r);
    ck_assert_int_eq(c.basis, SLOT_CLOCK_WALL);
    ck_assert_uint_eq(slot_clock_logical_ms(&c, r.boot_ms), saved.logical_ms + 60000);
    /* A wall clock behind the anchor never moves time back. */
    r = at(saved.wall_ms - HOUR_MS, 5000, BOOT_B);
    slot_clock_start(&c, SLOT_MS, last_slot, &saved, &r);
    ck_assert_uint_eq(slot_clock_logical_ms(&c, r.boot_ms), saved.logical_ms);
    ck_assert_uint_eq(slot_clock_slot(&c, r.boot_ms), last_slot);
    /* Same boot id but a boot clock behind the anchor cannot be this boot's: the wall rule. */
    r = at(saved.wall_ms + 1000, 100, BOOT_A);
    slot_clock_start(&c, SLOT_MS, last_slot, &saved, &r);
    ck_assert_int_eq(c.basis, SLOT_CLOCK_WALL);
    ck_assert_uint_eq(slot_clock_logical_ms(&c, r.boot_ms), saved.logical_ms + 1000);
}
END_TEST

/* Slots never go backwards, also across a restart: the last logged slot is a floor. */
START_TEST(test_slot_never_below_the_log)
{
    struct slot_clock c;
    struct clock_reading r = at(1000 * SLOT_MS, 7000, BOOT_A); /* wall says slot 1000 */
    slot_clock_start(&c, SLOT_MS, 5000, NULL, &r);            /* the log is at slot 5000 */
    ck_assert_uint_eq(slot_clock_slot(&c, r.boot_ms), 5000);
    ck_assert_uint_eq(slot_clock_slot(&c, r.boot_ms + SLOT_MS), 5001);
    slot_clock_note_slot(&c, 6000);
    ck_assert_uint_eq(slot_clock_slot(&c, r.boot_ms + SLOT_MS), 6000);
    /* A boot clock reading from before the start (another process's older sample) is not
     * time going back either. */
    ck_assert_uint_eq(slot_clock_logical_ms(&c, r.boot_ms - 1000), slot_clock_logical_ms(&c, r.boot_ms));
}
END_TEST

/* A fresh data directory starts at the wall clock; a restarted worker joins the timeline. */
START_TEST(test_initial_and_join)
{
    struct slot_clock c, j;
    struct clock_reading r = at(1700000000123ull, 42, BOOT_A);
    slot_clock_start(&c, SLOT_MS, 0, NULL, &r);
    ck_assert_int_eq(c.basis, SLOT_CLOCK_INITIAL);
    ck_assert_uint_eq(slot_clock_slot(&c, 42), 1700000000123ull / SLOT_MS);
    slot_clock_join(&j, SLOT_MS, c.logical0_ms, c.boot0_ms, 0);
    for (u64 t = 42; t < 5000; t += 37)
        ck_assert_uint_eq(slot_clock_slot(&j, t), slot_clock_slot(&c, t));
    ck_assert_uint_eq(slot_clock_ms_to_next(&c, 42), SLOT_MS - 23);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("slot_clock");
    TCase *tc = tcase_create("slot_clock");
    tcase_add_test(tc, test_wall_step_within_a_life_expires_nothing);
    tcase_add_test(tc, test_restart_same_boot_uses_boot_clock);
    tcase_add_test(tc, test_reboot_uses_wall_clock_forward_only);
    tcase_add_test(tc, test_slot_never_below_the_log);
    tcase_add_test(tc, test_initial_and_join);
    suite_add_tcase(s, tc);
    return s;
}
