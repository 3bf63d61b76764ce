/*
 * tests/test_applying.c — the applier's core (replica/applying.h), entry by entry: frames are
 * applied in LSN order, an entry already applied is skipped (a restarted sequencer publishes
 * again), a hole, a slot going back or damaged bytes are damage; a cached retry waits for its
 * LSN, then gets the stored result, or is sent back to be logged once the record is gone; a
 * reservation is due only once its deadline slot has ended.
 */
#include "config.h"

#include "replica/applying.h"
#include "tests/check_main.h"
#include "tests/sm_fixture.h"
#include "wal/command.h"
#include "wal/frame.h"

#include <string.h>

static struct fx f;
static struct applying a;
static struct sm_due due[4];

static void setup(void)
{
    struct sm_config cfg = fx_small_config();
    fx_init(&f, &cfg);
    applying_init(&a, &f.sm, due, 4);
}

static void teardown(void)
{
    fx_free(&f);
}

struct framed {
    u8 bytes[WAL_FRAME_HEADER_SIZE + WAL_CMD_SIZE_MAX];
    u32 len;
};

static struct framed frame(u64 lsn, u64 slot, const struct sm_command *cmd)
{
    struct framed out;
    u8 payload[WAL_CMD_SIZE_MAX];
    struct wal_frame w = { .lsn = lsn, .request_slot = slot, .record_type = wal_cmd_record_type(cmd) };
    w.payload_len = wal_cmd_encode(payload, sizeof(payload), cmd);
    w.payload = payload;
    out.len = wal_frame_encode(out.bytes, sizeof(out.bytes), &w);
    ck_assert_uint_gt(out.len, 0);
    return out;
}

static struct sm_command with_op(struct sm_command c, u128 op)
{
    c.operation_id = op;
    c.client_id = 1;
    return c;
}

static enum applying_entry feed(u64 lsn, u64 slot, const struct sm_command *cmd, struct applying_result *r)
{
    struct framed fr = frame(lsn, slot, cmd);
    char why[160] = "";
    return applying_frame(&a, fr.bytes, fr.len, r, why, sizeof(why));
}

START_TEST(test_entries_in_order_and_skipped_again)
{
    struct sm_command create = with_op(fx_create_cmd(7), 1);
    struct sm_command reserve = with_op(fx_reserve_cmd(7, 3, 5), 2);
    struct applying_result r;
    ck_assert_int_eq(feed(1, 10, &create, &r), APPLYING_APPLIED);
    ck_assert_uint_eq(r.outcome.result, SM_OK);
    ck_assert_uint_eq(r.lsn, 1);
    ck_assert_uint_eq(r.kind, SM_CMD_CREATE_RESOURCE);
    ck_assert_int_eq(feed(2, 11, &reserve, &r), APPLYING_APPLIED);
    ck_assert_uint_eq(r.outcome.result, SM_OK);
    ck_assert_uint_eq(f.sm.last_applied_lsn, 2);
    /* Published again after a sequencer restart: skipped, the state unchanged. */
    struct sm_health before, after;
    sm_health(&f.sm, 11, &before);
    ck_assert_int_eq(feed(2, 11, &reserve, &r), APPLYING_SKIPPED);
    ck_assert_int_eq(feed(1, 10, &create, &r), APPLYING_SKIPPED);
    ck_assert_uint_eq(f.sm.last_applied_lsn, 2);
    sm_health(&f.sm, 11, &after);
    ck_assert_uint_eq(after.reservations_used, before.reservations_used);
    ck_assert_uint_eq(after.operations_used, before.operations_used);
    fx_check(&f);
}
END_TEST

START_TEST(test_damage)
{
    struct sm_command create = with_op(fx_create_cmd(7), 1);
    struct applying_result r;
    char why[160] = "";
    ck_assert_int_eq(feed(1, 10, &create, &r), APPLYING_APPLIED);
    /* A hole. */
    struct sm_command c2 = with_op(fx_create_cmd(8), 2);
    struct framed fr = frame(3, 10, &c2);
    ck_assert_int_eq(applying_frame(&a, fr.bytes, fr.len, &r, why, sizeof(why)), APPLYING_DAMAGED);
    ck_assert_ptr_nonnull(strstr(why, "does not follow"));
    /* A slot going back. */
    fr = frame(2, 9, &c2);
    ck_assert_int_eq(applying_frame(&a, fr.bytes, fr.len, &r, why, sizeof(why)), APPLYING_DAMAGED);
    /* Bytes changed in the shared log: the checksum catches it, nothing is applied. */
    fr = frame(2, 10, &c2);
    fr.bytes[fr.len - 1] ^= 0x40;
    why[0] = 0;
    ck_assert_int_eq(applying_frame(&a, fr.bytes, fr.len, &r, why, sizeof(why)), APPLYING_DAMAGED);
    ck_assert_ptr_nonnull(strstr(why, "fails its checks"));
    ck_assert_uint_eq(f.sm.last_applied_lsn, 1);
    fr.bytes[fr.len - 1] ^= 0x40;
    ck_assert_int_eq(applying_frame(&a, fr.bytes, fr.len, &r, why, sizeof(why)), APPLYING_APPLIED);
}
END_TEST

START_TEST(test_retry_waits_then_answers)
{
    struct sm_command create = with_op(fx_create_cmd(7), 1);
    struct sm_command reserve = with_op(fx_reserve_cmd(7, 3, 5), 2);
    struct applying_result r;
    struct sm_outcome o;
    ck_assert_int_eq(feed(1, 10, &create, &r), APPLYING_APPLIED);
    /* The sequencer answered a retry of the reserve from its cache (LSN 2), before the applier
     * got there: it waits. */
    ck_assert_int_eq(applying_retry(&a, &reserve, 2, &o), APPLYING_RETRY_WAIT);
    ck_assert_int_eq(feed(2, 10, &reserve, &r), APPLYING_APPLIED);
    ck_assert_int_eq(applying_retry(&a, &reserve, 2, &o), APPLYING_RETRY_ANSWER);
    ck_assert_uint_eq(o.result, SM_OK);
    ck_assert_uint_eq(o.applied_lsn, 2);
    ck_assert(o.reservation_id == r.outcome.reservation_id);
    ck_assert(o.from_retry_cache);
    /* Past the dedupe window (10 slots) the record is retired: sent back to be logged. */
    struct sm_command other = with_op(fx_create_cmd(9), 3);
    ck_assert_int_eq(feed(3, 40, &other, &r), APPLYING_APPLIED);
    ck_assert_int_eq(applying_retry(&a, &reserve, 2, &o), APPLYING_RETRY_RESUBMIT);
}
END_TEST

START_TEST(test_due_once_the_deadline_slot_ended)
{
    struct sm_command create = with_op(fx_create_cmd(7), 1);
    struct sm_command reserve = with_op(fx_reserve_cmd(7, 3, 5), 2);
    struct applying_result r;
    ck_assert_int_eq(feed(1, 10, &create, &r), APPLYING_APPLIED);
    ck_assert_int_eq(feed(2, 10, &reserve, &r), APPLYING_APPLIED);
    u64 deadline = r.outcome.deadline_slot;
    ck_assert_uint_eq(deadline, 15);
    ck_assert_uint_eq(applying_due(&a, 0), 0);
    ck_assert_uint_eq(applying_due(&a, deadline), 0); /* the deadline slot is still running */
    ck_assert_uint_eq(applying_due(&a, deadline + 1), 1);
    ck_assert(due[0].reservation_id == r.outcome.reservation_id);
    ck_assert_uint_eq(due[0].deadline_slot, deadline);
    /* Its expire entry applied: nothing is due any more. */
    struct sm_command expire = fx_expire_cmd(r.outcome.reservation_id, deadline);
    ck_assert_int_eq(feed(3, deadline + 1, &expire, &r), APPLYING_APPLIED);
    ck_assert_uint_eq(r.outcome.result, SM_OK);
    ck_assert_uint_eq(applying_due(&a, deadline + 1), 0);
}
END_TEST

Suite *test_suite(void)
{
    Suite *su = suite_create("applying");
    TCase *tc = tcase_create("applying");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_entries_in_order_and_skipped_again);
    tcase_add_test(tc, test_damage);
    tcase_add_test(tc, test_retry_waits_then_answers);
    tcase_add_test(tc, test_due_once_the_deadline_slot_ended);
    suite_add_tcase(su, tc);
    return su;
}
