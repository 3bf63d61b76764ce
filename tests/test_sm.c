/*
 * tests/test_sm.c — the state machine, case by case: every result code and its place in the
 * check order, retirement at and one past retire_after_slot, dedupe inside and after the
 * window, conflicting reuse, u64 slot edges, full tables, expiration no-ops, reads, the due
 * query, health, digest and the invariant checker itself.
 *
 * The fixture (sm_fixture.h) uses a small config: 8 resources, 8 reservations, 16 operation
 * records, 8 expiring, max ttl 16, dedupe window 10, history window 5; slots start at 1.
 */
#include "tests/check_main.h"
#include "tests/sm_fixture.h"

#include <string.h>

#define HOLDER 42
#define OTHER 43

static void assert_result(struct sm_outcome o, enum sm_result want)
{
    ck_assert_msg(o.result == want, "result %s, want %s", sm_result_name(o.result), sm_result_name(want));
}

static u128 reserve_ok(struct fx *f, u128 resource, u64 ttl)
{
    struct sm_outcome o = fx_apply(f, fx_reserve_cmd(resource, HOLDER, ttl));
    assert_result(o, SM_OK);
    return o.reservation_id;
}

static enum sm_read read_res(struct fx *f, u128 id, struct sm_reservation_view *v)
{
    return sm_get_reservation(&f->sm, id, 0, v);
}

START_TEST(test_names)
{
    for (int i = 0; i < SM_RESULT_COUNT; i++) {
        ck_assert_str_ne(sm_result_name(i), "unknown");
        for (int j = 0; j < i; j++)
            ck_assert_str_ne(sm_result_name(i), sm_result_name(j));
    }
    ck_assert_str_eq(sm_result_name(SM_SLOT_OVERFLOW), "slot_overflow");
    ck_assert_str_eq(sm_result_name(99), "unknown");
}
END_TEST

START_TEST(test_config_validation)
{
    char why[200];
    struct sm_config ok = fx_small_config();
    ck_assert(sm_config_validate(&ok, why, sizeof(why)));

    struct sm_config c = ok;
    c.resource_capacity = 0;
    ck_assert(!sm_config_validate(&c, why, sizeof(why)));
    ck_assert_ptr_nonnull(strstr(why, "resource_capacity"));

    c = ok;
    c.operation_capacity = SM_CAPACITY_MAX + 1;
    ck_assert(!sm_config_validate(&c, why, sizeof(why)));
    ck_assert_ptr_nonnull(strstr(why, "operation_capacity"));

    c = ok;
    c.expiration_capacity = c.reservation_capacity + 1;
    ck_assert(!sm_config_validate(&c, why, sizeof(why)));
    ck_assert_ptr_nonnull(strstr(why, "expiration_capacity"));

    c = ok;
    c.max_ttl_slots = 0;
    ck_assert(!sm_config_validate(&c, why, sizeof(why)));
    ck_assert_ptr_nonnull(strstr(why, "max_ttl_slots"));
    c.max_ttl_slots = SM_MAX_TTL_SLOTS_MAX + 1;
    ck_assert(!sm_config_validate(&c, why, sizeof(why)));

    c = ok;
    c.dedupe_window_slots = 0;
    ck_assert(!sm_config_validate(&c, why, sizeof(why)));
    ck_assert_ptr_nonnull(strstr(why, "dedupe_window_slots"));

    c = ok;
    c.history_window_slots = 0;
    ck_assert(!sm_config_validate(&c, why, sizeof(why)));
    ck_assert_ptr_nonnull(strstr(why, "history_window_slots"));

    c = ok;
    c.history_window_slots = UINT64_MAX;
    ck_assert(!sm_config_validate(&c, why, sizeof(why)));
    ck_assert(!sm_config_validate(&c, NULL, 0)); /* why is optional */

    struct sm_layout l;
    ck_assert(sm_layout(&ok, &l));
    ck_assert_uint_gt(l.total, 0);
    ck_assert_uint_eq(l.total % ADB_CACHE_LINE, 0);
    ck_assert(!sm_layout(&c, &l));
}
END_TEST

START_TEST(test_create_resource)
{
    struct fx f;
    struct sm_config cfg = fx_small_config();
    fx_init(&f, &cfg);
    assert_result(fx_apply(&f, fx_create_cmd(1)), SM_OK);
    assert_result(fx_apply(&f, fx_create_cmd(1)), SM_ALREADY_EXISTS);
    for (u128 id = 2; id <= 8; id++)
        assert_result(fx_apply(&f, fx_create_cmd(id)), SM_OK);
    assert_result(fx_apply(&f, fx_create_cmd(9)), SM_RESOURCE_TABLE_FULL);
    /* Check order: already_exists before resource_table_full. */
    assert_result(fx_apply(&f, fx_create_cmd(8)), SM_ALREADY_EXISTS);

    struct sm_resource_view v;
    ck_assert_int_eq(sm_get_resource(&f.sm, 1, 0, &v), SM_READ_FOUND);
    ck_assert_int_eq(v.state, SM_RESOURCE_AVAILABLE);
    ck_assert(v.current_reservation_id == 0);
    ck_assert_uint_eq(v.version, 0);
    ck_assert_int_eq(sm_get_resource(&f.sm, 9, 0, &v), SM_READ_NOT_FOUND);
    fx_check(&f);
    fx_free(&f);
}
END_TEST

START_TEST(test_reserve_ok_and_ids)
{
    struct fx f;
    struct sm_config cfg = fx_small_config();
    cfg.shard_id = 3;
    fx_init(&f, &cfg);
    fx_apply(&f, fx_create_cmd(1));
    f.slot = 20;
    struct sm_outcome o = fx_apply(&f, fx_reserve_cmd(1, HOLDER, 7));
    assert_result(o, SM_OK);
    ck_assert(o.reservation_id == U128_MAKE(3, f.lsn)); /* (shard << 64) | lsn */
    ck_assert_uint_eq(o.deadline_slot, 27);
    ck_assert_uint_eq(o.applied_lsn, f.lsn);
    ck_assert(!o.from_retry_cache);

    struct sm_resource_view rv;
    ck_assert_int_eq(sm_get_resource(&f.sm, 1, 0, &rv), SM_READ_FOUND);
    ck_assert_int_eq(rv.state, SM_RESOURCE_RESERVED);
    ck_assert(rv.current_reservation_id == o.reservation_id);
    ck_assert_uint_eq(rv.version, 1);

    struct sm_reservation_view v;
    ck_assert_int_eq(read_res(&f, o.reservation_id, &v), SM_READ_FOUND);
    ck_assert_int_eq(v.state, SM_RESERVATION_RESERVED);
    ck_assert(v.holder_id == HOLDER && v.resource_id == 1);
    ck_assert_uint_eq(v.created_lsn, f.lsn);
    ck_assert_uint_eq(v.released_lsn, 0);
    ck_assert_uint_eq(v.retire_after_slot, 0);
    /* The same LSN under another shard is not ours. */
    ck_assert_int_eq(read_res(&f, U128_MAKE(0, f.lsn), &v), SM_READ_NOT_FOUND);
    ck_assert_int_eq(read_res(&f, U128_MAKE(3, 0), &v), SM_READ_NOT_FOUND);
    fx_check(&f);
    fx_free(&f);
}
END_TEST

START_TEST(test_reserve_check_order)
{
    struct fx f;
    struct sm_config cfg = fx_small_config();
    fx_init(&f, &cfg);
    /* ttl_out_of_range comes first, even for a missing resource. */
    assert_result(fx_apply(&f, fx_reserve_cmd(1, HOLDER, 0)), SM_TTL_OUT_OF_RANGE);
    assert_result(fx_apply(&f, fx_reserve_cmd(1, HOLDER, 17)), SM_TTL_OUT_OF_RANGE);
    assert_result(fx_apply(&f, fx_reserve_cmd(1, HOLDER, 16)), SM_RESOURCE_NOT_FOUND);
    fx_apply(&f, fx_create_cmd(1));
    reserve_ok(&f, 1, 16); /* max ttl is accepted */
    assert_result(fx_apply(&f, fx_reserve_cmd(1, OTHER, 5)), SM_RESOURCE_BUSY);
    assert_result(fx_apply(&f, fx_reserve_cmd(1, HOLDER, 5)), SM_RESOURCE_BUSY); /* even the holder */
    fx_check(&f);
    fx_free(&f);
}
END_TEST

START_TEST(test_reservation_table_full)
{
    struct fx f;
    struct sm_config cfg = fx_small_config();
    cfg.operation_capacity = 64;
    fx_init(&f, &cfg);
    for (u128 id = 1; id <= 8; id++)
        fx_apply(&f, fx_create_cmd(id));
    u128 first = reserve_ok(&f, 1, 5);
    for (u128 id = 2; id <= 8; id++)
        reserve_ok(&f, id, 5);
    /* Release one: the resource is free but the released reservation stays in history. */
    assert_result(fx_apply(&f, fx_release_cmd(first, HOLDER)), SM_OK);
    assert_result(fx_apply(&f, fx_reserve_cmd(1, HOLDER, 5)), SM_RESERVATION_TABLE_FULL);
    /* Check order: resource_busy before reservation_table_full. */
    assert_result(fx_apply(&f, fx_reserve_cmd(2, HOLDER, 5)), SM_RESOURCE_BUSY);
    /* Once the history window passes, the slot is reclaimed. */
    f.slot += cfg.history_window_slots + 1;
    reserve_ok(&f, 1, 5);
    fx_check(&f);
    fx_free(&f);
}
END_TEST

START_TEST(test_expiration_index_full)
{
    struct fx f;
    struct sm_config cfg = fx_small_config();
    cfg.expiration_capacity = 2;
    fx_init(&f, &cfg);
    for (u128 id = 1; id <= 4; id++)
        fx_apply(&f, fx_create_cmd(id));
    u128 a = reserve_ok(&f, 1, 5);
    reserve_ok(&f, 2, 5);
    assert_result(fx_apply(&f, fx_reserve_cmd(3, HOLDER, 5)), SM_EXPIRATION_INDEX_FULL);
    /* Check order: resource_busy and ttl before the expiration index. */
    assert_result(fx_apply(&f, fx_reserve_cmd(1, HOLDER, 5)), SM_RESOURCE_BUSY);
    /* Confirmed reservations no longer expire, so they free index room. */
    assert_result(fx_apply(&f, fx_confirm_cmd(a, HOLDER)), SM_OK);
    reserve_ok(&f, 3, 5);
    struct sm_health h;
    sm_health(&f.sm, f.slot, &h);
    ck_assert_uint_eq(h.expirations_used, 2);
    ck_assert_uint_eq(h.reservations_used, 3);
    fx_check(&f);
    fx_free(&f);
}
END_TEST

START_TEST(test_reserve_slot_overflow)
{
    struct fx f;
    struct sm_config cfg = fx_small_config();
    cfg.operation_capacity = 64;
    cfg.reservation_capacity = 2;
    cfg.expiration_capacity = 1;
    fx_init(&f, &cfg);
    fx_apply(&f, fx_create_cmd(1));
    fx_apply(&f, fx_create_cmd(2));
    fx_apply(&f, fx_create_cmd(3));
    /* The request slot itself is valid (slot + 10 fits) but slot + ttl does not. */
    f.slot = UINT64_MAX - 10;
    assert_result(fx_apply(&f, fx_reserve_cmd(1, HOLDER, 11)), SM_SLOT_OVERFLOW);
    struct sm_outcome o = fx_apply(&f, fx_reserve_cmd(1, HOLDER, 10));
    assert_result(o, SM_OK);
    ck_assert_uint_eq(o.deadline_slot, UINT64_MAX);
    /* Check order: slot_overflow after reservation_table_full, before expiration_index_full. */
    assert_result(fx_apply(&f, fx_reserve_cmd(2, HOLDER, 11)), SM_SLOT_OVERFLOW);
    assert_result(fx_apply(&f, fx_reserve_cmd(2, HOLDER, 10)), SM_EXPIRATION_INDEX_FULL);
    assert_result(fx_apply(&f, fx_confirm_cmd(o.reservation_id, HOLDER)), SM_OK);
    reserve_ok(&f, 2, 3);
    assert_result(fx_apply(&f, fx_reserve_cmd(3, HOLDER, 11)), SM_RESERVATION_TABLE_FULL);
    fx_check(&f);
    fx_free(&f);
}
END_TEST

START_TEST(test_request_slot_overflow_edges)
{
    struct fx f;
    struct sm_config cfg = fx_small_config(); /* dedupe 10, history 5 */
    fx_init(&f, &cfg);
    f.slot = UINT64_MAX - 10; /* slot + 10 == UINT64_MAX: fits */
    assert_result(fx_apply(&f, fx_create_cmd(1)), SM_OK);
    f.slot = UINT64_MAX - 9; /* slot + 10 overflows */
    u64 lsn_before = f.lsn;
    struct sm_outcome o = fx_apply(&f, fx_create_cmd(2));
    assert_result(o, SM_SLOT_OVERFLOW);
    ck_assert_uint_eq(o.applied_lsn, lsn_before + 1);
    struct sm_resource_view v;
    ck_assert_int_eq(sm_get_resource(&f.sm, 2, 0, &v), SM_READ_NOT_FOUND);
    struct sm_health h;
    sm_health(&f.sm, f.slot, &h);
    ck_assert_uint_eq(h.operations_used, 1); /* slot_overflow is not recorded */
    ck_assert_uint_eq(h.last_request_slot, UINT64_MAX - 9);
    f.slot = UINT64_MAX;
    assert_result(fx_apply(&f, fx_create_cmd(3)), SM_SLOT_OVERFLOW);
    assert_result(fx_apply(&f, fx_expire_cmd(U128_MAKE(0, 1), 1)), SM_SLOT_OVERFLOW);
    fx_check(&f);
    fx_free(&f);

    /* The history window alone can overflow too. */
    cfg.dedupe_window_slots = 1;
    cfg.history_window_slots = 100;
    fx_init(&f, &cfg);
    f.slot = UINT64_MAX - 100;
    assert_result(fx_apply(&f, fx_create_cmd(1)), SM_OK);
    f.slot = UINT64_MAX - 99;
    assert_result(fx_apply(&f, fx_create_cmd(2)), SM_SLOT_OVERFLOW);
    fx_free(&f);
}
END_TEST

START_TEST(test_invariants_after_slot_overflow)
{
    /* Regression: a slot_overflow entry advances the slot but retires nothing; the invariant
     * check must judge retirement against the last slot that retired, not the last slot. */
    struct fx f;
    struct sm_config cfg = fx_small_config();
    fx_init(&f, &cfg);
    f.slot = 100;
    fx_apply(&f, fx_create_cmd(1));
    u128 r = reserve_ok(&f, 1, 5);
    assert_result(fx_apply(&f, fx_release_cmd(r, HOLDER)), SM_OK);
    fx_check(&f);
    f.slot = UINT64_MAX - 5;
    assert_result(fx_apply(&f, fx_create_cmd(2)), SM_SLOT_OVERFLOW);
    fx_check(&f);
    struct sm_reservation_view v;
    ck_assert_int_eq(read_res(&f, r, &v), SM_READ_FOUND); /* nothing was retired */
    fx_free(&f);
}
END_TEST

START_TEST(test_confirm_and_release)
{
    struct fx f;
    struct sm_config cfg = fx_small_config();
    fx_init(&f, &cfg);
    fx_apply(&f, fx_create_cmd(1));
    u128 r = reserve_ok(&f, 1, 5);
    assert_result(fx_apply(&f, fx_confirm_cmd(r + 100, HOLDER)), SM_RESERVATION_NOT_FOUND);
    assert_result(fx_apply(&f, fx_confirm_cmd(r, OTHER)), SM_HOLDER_MISMATCH);
    struct sm_outcome o = fx_apply(&f, fx_confirm_cmd(r, HOLDER));
    assert_result(o, SM_OK);
    ck_assert(o.reservation_id == r);
    ck_assert_uint_eq(o.deadline_slot, 6);
    /* Check order: holder_mismatch before invalid_state. */
    assert_result(fx_apply(&f, fx_confirm_cmd(r, OTHER)), SM_HOLDER_MISMATCH);
    assert_result(fx_apply(&f, fx_confirm_cmd(r, HOLDER)), SM_INVALID_STATE);

    struct sm_resource_view rv;
    sm_get_resource(&f.sm, 1, 0, &rv);
    ck_assert_int_eq(rv.state, SM_RESOURCE_CONFIRMED);
    ck_assert_uint_eq(rv.version, 2);

    /* Confirmed never expires: the deadline passes and nothing is due. */
    f.slot = 100;
    struct sm_due due[4];
    ck_assert_uint_eq(sm_due_expirations(&f.sm, 100, due, 4), 0);
    assert_result(fx_apply(&f, fx_expire_cmd(r, 6)), SM_NOOP);

    assert_result(fx_apply(&f, fx_release_cmd(r, OTHER)), SM_HOLDER_MISMATCH);
    o = fx_apply(&f, fx_release_cmd(r, HOLDER));
    assert_result(o, SM_OK);
    u64 release_lsn = f.lsn;
    assert_result(fx_apply(&f, fx_release_cmd(r, HOLDER)), SM_INVALID_STATE);
    assert_result(fx_apply(&f, fx_confirm_cmd(r, HOLDER)), SM_INVALID_STATE);

    sm_get_resource(&f.sm, 1, 0, &rv);
    ck_assert_int_eq(rv.state, SM_RESOURCE_AVAILABLE);
    ck_assert(rv.current_reservation_id == 0);
    ck_assert_uint_eq(rv.version, 3);
    struct sm_reservation_view v;
    ck_assert_int_eq(read_res(&f, r, &v), SM_READ_FOUND);
    ck_assert_int_eq(v.state, SM_RESERVATION_RELEASED);
    ck_assert_uint_eq(v.released_lsn, release_lsn);
    ck_assert_uint_eq(v.retire_after_slot, 100 + cfg.history_window_slots);

    /* Release straight from reserved works too, and frees the expiration index. */
    u128 r2 = reserve_ok(&f, 1, 5);
    assert_result(fx_apply(&f, fx_release_cmd(r2, HOLDER)), SM_OK);
    ck_assert_uint_eq(sm_due_expirations(&f.sm, UINT64_MAX, due, 4), 0);
    fx_check(&f);
    fx_free(&f);
}
END_TEST

START_TEST(test_expire_cases)
{
    struct fx f;
    struct sm_config cfg = fx_small_config();
    fx_init(&f, &cfg);
    fx_apply(&f, fx_create_cmd(1));
    f.slot = 10;
    u128 r = reserve_ok(&f, 1, 4); /* deadline 14 */
    assert_result(fx_apply(&f, fx_expire_cmd(r + 50, 14)), SM_RESERVATION_NOT_FOUND);
    /* Not yet due: an early expire is refused. */
    f.slot = 13;
    assert_result(fx_apply(&f, fx_expire_cmd(r, 14)), SM_NOOP);
    f.slot = 14;
    assert_result(fx_apply(&f, fx_expire_cmd(r, 15)), SM_NOOP); /* wrong deadline */
    struct sm_due due[4];
    ck_assert_uint_eq(sm_due_expirations(&f.sm, 14, due, 4), 1);
    ck_assert(due[0].reservation_id == r);
    ck_assert_uint_eq(due[0].deadline_slot, 14);
    struct sm_outcome o = fx_apply(&f, fx_expire_cmd(r, 14));
    assert_result(o, SM_OK);
    ck_assert(o.reservation_id == r);
    ck_assert_uint_eq(sm_due_expirations(&f.sm, 14, due, 4), 0);
    assert_result(fx_apply(&f, fx_expire_cmd(r, 14)), SM_NOOP); /* already expired */

    struct sm_reservation_view v;
    ck_assert_int_eq(read_res(&f, r, &v), SM_READ_FOUND);
    ck_assert_int_eq(v.state, SM_RESERVATION_EXPIRED);
    ck_assert_uint_eq(v.retire_after_slot, 14 + cfg.history_window_slots);
    struct sm_resource_view rv;
    sm_get_resource(&f.sm, 1, 0, &rv);
    ck_assert_int_eq(rv.state, SM_RESOURCE_AVAILABLE);
    /* The holder can no longer confirm or release it. */
    assert_result(fx_apply(&f, fx_confirm_cmd(r, HOLDER)), SM_INVALID_STATE);
    assert_result(fx_apply(&f, fx_release_cmd(r, HOLDER)), SM_INVALID_STATE);
    /* Released reservations are not expired either. */
    u128 r2 = reserve_ok(&f, 1, 1);
    assert_result(fx_apply(&f, fx_release_cmd(r2, HOLDER)), SM_OK);
    f.slot = 40;
    assert_result(fx_apply(&f, fx_expire_cmd(r2, 15)), SM_RESERVATION_NOT_FOUND); /* retired by now */
    fx_check(&f);
    fx_free(&f);
}
END_TEST

START_TEST(test_late_confirm_before_expire)
{
    /* Past its deadline but before the expire entry: the holder still owns it. */
    struct fx f;
    struct sm_config cfg = fx_small_config();
    fx_init(&f, &cfg);
    fx_apply(&f, fx_create_cmd(1));
    u128 r = reserve_ok(&f, 1, 2);
    f.slot = 50;
    assert_result(fx_apply(&f, fx_confirm_cmd(r, HOLDER)), SM_OK);
    assert_result(fx_apply(&f, fx_expire_cmd(r, 3)), SM_NOOP);
    fx_check(&f);
    fx_free(&f);
}
END_TEST

START_TEST(test_retirement_boundary)
{
    struct fx f;
    struct sm_config cfg = fx_small_config(); /* history 5 */
    cfg.operation_capacity = 64;
    fx_init(&f, &cfg);
    fx_apply(&f, fx_create_cmd(1));
    fx_apply(&f, fx_create_cmd(2));
    u128 r = reserve_ok(&f, 1, 5);
    f.slot = 10;
    assert_result(fx_apply(&f, fx_release_cmd(r, HOLDER)), SM_OK); /* retire_after_slot = 15 */
    struct sm_reservation_view v;
    /* Exactly at retire_after_slot: still there. */
    f.slot = 15;
    fx_apply(&f, fx_create_cmd(3));
    ck_assert_int_eq(read_res(&f, r, &v), SM_READ_FOUND);
    ck_assert_int_eq(v.state, SM_RESERVATION_RELEASED);
    assert_result(fx_apply(&f, fx_release_cmd(r, HOLDER)), SM_INVALID_STATE);
    /* One past: retired, for reads and for commands, never not_found. */
    f.slot = 16;
    fx_apply(&f, fx_create_cmd(4));
    ck_assert_int_eq(read_res(&f, r, &v), SM_READ_RETIRED);
    assert_result(fx_apply(&f, fx_release_cmd(r, HOLDER)), SM_RESERVATION_RETIRED);
    assert_result(fx_apply(&f, fx_confirm_cmd(r, OTHER)), SM_RESERVATION_RETIRED);
    struct sm_health h;
    sm_health(&f.sm, f.slot, &h);
    ck_assert_uint_eq(h.reservations_used, 0);
    ck_assert_uint_eq(h.retired_watermark_lsn, U128_LO(r));
    fx_check(&f);
    fx_free(&f);
}
END_TEST

START_TEST(test_retired_watermark)
{
    struct fx f;
    struct sm_config cfg = fx_small_config();
    cfg.operation_capacity = 64;
    fx_init(&f, &cfg);
    fx_apply(&f, fx_create_cmd(1));
    fx_apply(&f, fx_create_cmd(2));
    u128 old_live = reserve_ok(&f, 1, 5);
    assert_result(fx_apply(&f, fx_confirm_cmd(old_live, HOLDER)), SM_OK);
    u128 gone = reserve_ok(&f, 2, 5);
    assert_result(fx_apply(&f, fx_release_cmd(gone, HOLDER)), SM_OK);
    f.slot = 100;
    fx_apply(&f, fx_create_cmd(3));
    struct sm_reservation_view v;
    /* A live reservation below the watermark is still found. */
    ck_assert_int_eq(read_res(&f, old_live, &v), SM_READ_FOUND);
    ck_assert_int_eq(read_res(&f, gone, &v), SM_READ_RETIRED);
    /* An id below the watermark that was never a reservation also reads retired. */
    ck_assert_int_eq(read_res(&f, gone - 1, &v), SM_READ_RETIRED);
    /* Above the watermark and unknown: not found. */
    ck_assert_int_eq(read_res(&f, U128_MAKE(0, f.lsn + 10), &v), SM_READ_NOT_FOUND);
    fx_check(&f);
    fx_free(&f);
}
END_TEST

START_TEST(test_dedupe_window)
{
    struct fx f;
    struct sm_config cfg = fx_small_config(); /* dedupe 10 */
    fx_init(&f, &cfg);
    f.slot = 5;
    struct sm_command c = fx_create_cmd(1);
    struct sm_outcome first = fx_apply_op(&f, 77, c);
    assert_result(first, SM_OK);
    fx_apply(&f, fx_create_cmd(2));
    struct sm_resource_view rv;
    sm_get_resource(&f.sm, 1, 0, &rv);

    /* Inside the window, up to and including retire_after_slot = 15. */
    f.slot = 15;
    struct sm_outcome again = fx_apply_op(&f, 77, c);
    assert_result(again, SM_OK);
    ck_assert(again.from_retry_cache);
    ck_assert_uint_eq(again.applied_lsn, first.applied_lsn);
    struct sm_resource_view rv2;
    sm_get_resource(&f.sm, 1, 0, &rv2);
    ck_assert(rv.version == rv2.version && rv.state == rv2.state &&
              rv.current_reservation_id == rv2.current_reservation_id);
    struct sm_health h;
    sm_health(&f.sm, f.slot, &h);
    ck_assert_uint_eq(h.operations_used, 2);

    /* After the window the id is new again: the create runs and says already_exists. */
    f.slot = 16;
    struct sm_outcome late = fx_apply_op(&f, 77, c);
    assert_result(late, SM_ALREADY_EXISTS);
    ck_assert(!late.from_retry_cache);
    ck_assert_uint_eq(late.applied_lsn, f.lsn);
    fx_check(&f);
    fx_free(&f);
}
END_TEST

/* The outcome a retry must get: everything the first answer said, from the retry cache. */
static void assert_same_outcome(struct sm_outcome got, struct sm_outcome want, const char *what)
{
    ck_assert_msg(got.from_retry_cache, "%s: not from the retry cache", what);
    ck_assert_msg(got.result == want.result && got.applied_lsn == want.applied_lsn &&
                      got.reservation_id == want.reservation_id && got.deadline_slot == want.deadline_slot,
                  "%s: %s lsn %llu deadline %llu, first answered %s lsn %llu deadline %llu", what,
                  sm_result_name(got.result), (unsigned long long)got.applied_lsn,
                  (unsigned long long)got.deadline_slot, sm_result_name(want.result),
                  (unsigned long long)want.applied_lsn, (unsigned long long)want.deadline_slot);
    ck_assert_msg(got.reservation_id == want.reservation_id, "%s: another reservation id", what);
}

/* A record keeps only a fingerprint, the LSN, the slot, the deadline and the code: a retry of
 * each kind must still get its whole first outcome back (the reservation id derived from the
 * LSN or from the retried command), through apply and through sm_get_operation, up to and
 * including the window's last slot — after the reservation itself has left history too — and
 * one slot past it the id is new again. */
START_TEST(test_retry_outcome_from_compact_record)
{
    struct fx f;
    struct sm_config cfg = fx_small_config(); /* dedupe 10, history 5 */
    fx_init(&f, &cfg);
    f.slot = 3;
    fx_apply(&f, fx_create_cmd(1));
    fx_apply(&f, fx_create_cmd(2));
    struct sm_command reserve = fx_reserve_cmd(1, HOLDER, 7);
    struct sm_outcome reserved = fx_apply_op(&f, 100, reserve);
    assert_result(reserved, SM_OK);
    ck_assert_uint_eq(reserved.deadline_slot, 3 + 7);
    struct sm_command confirm = fx_confirm_cmd(reserved.reservation_id, HOLDER);
    struct sm_outcome confirmed = fx_apply_op(&f, 101, confirm);
    assert_result(confirmed, SM_OK);
    struct sm_command wrong = fx_release_cmd(reserved.reservation_id, OTHER);
    struct sm_outcome mismatch = fx_apply_op(&f, 102, wrong);
    assert_result(mismatch, SM_HOLDER_MISMATCH);
    struct sm_command release = fx_release_cmd(reserved.reservation_id, HOLDER);
    struct sm_outcome released = fx_apply_op(&f, 103, release);
    assert_result(released, SM_OK);
    ck_assert(released.reservation_id == reserved.reservation_id && released.deadline_slot == 10);
    struct sm_command create = fx_create_cmd(3);
    struct sm_outcome created = fx_apply_op(&f, 104, create);
    assert_result(created, SM_OK);

    struct {
        u128 op;
        struct sm_command *cmd;
        struct sm_outcome *first;
        const char *what;
    } all[] = { { 100, &reserve, &reserved, "reserve" },  { 101, &confirm, &confirmed, "confirm" },
                { 102, &wrong, &mismatch, "holder_mismatch" }, { 103, &release, &released, "release" },
                { 104, &create, &created, "create" } };
    /* The last slot of the window (every record was made at slot 3), after history (5 slots)
     * dropped the reservation: its id now reads retired, yet the retries name it. */
    f.slot = 3 + cfg.dedupe_window_slots;
    struct sm_reservation_view v;
    fx_apply(&f, fx_create_cmd(4)); /* an apply at this slot runs retirement */
    ck_assert_int_eq(read_res(&f, reserved.reservation_id, &v), SM_READ_RETIRED);
    for (size_t i = 0; i < ADB_ARRAY_LEN(all); i++) {
        struct sm_command c = *all[i].cmd;
        c.operation_id = all[i].op;
        c.client_id = f.client;
        struct sm_outcome got;
        ck_assert_msg(sm_get_operation(&f.sm, &c, &got), "%s: no record at the window's edge", all[i].what);
        assert_same_outcome(got, *all[i].first, all[i].what);
        assert_same_outcome(fx_apply_op(&f, all[i].op, *all[i].cmd), *all[i].first, all[i].what);
        /* The same id with another field is a conflict, and sm_get_operation does not match it. */
        c.holder_id ^= 1;
        c.resource_id ^= 1;
        ck_assert(!sm_get_operation(&f.sm, &c, &got));
    }
    fx_check(&f);
    /* One slot past the window: the ids are new again. */
    f.slot++;
    for (size_t i = 0; i < ADB_ARRAY_LEN(all); i++) {
        struct sm_outcome o = fx_apply_op(&f, all[i].op, *all[i].cmd);
        ck_assert_msg(!o.from_retry_cache && o.applied_lsn == f.lsn, "%s: a retry past the window", all[i].what);
    }
    fx_check(&f);
    fx_free(&f);
}
END_TEST

/* The record ring wraps around its end many times; retries of records on both sides of the
 * wrap stay exact and the ring stays in LSN order (the invariant check walks it). */
START_TEST(test_operation_ring_wraps)
{
    struct fx f;
    struct sm_config cfg = fx_small_config(); /* 16 records, dedupe 10 */
    cfg.resource_capacity = 1024;
    fx_init(&f, &cfg);
    u128 next = 1;
    u64 wraps = 0;
    for (int round = 0; round < 40; round++) {
        u32 head_before = f.sm.operation_head;
        struct sm_outcome firsts[5];
        u128 ids[5];
        for (int i = 0; i < 5; i++, next++) {
            ids[i] = 1000 + next;
            firsts[i] = fx_apply_op(&f, ids[i], fx_create_cmd(next));
            assert_result(firsts[i], SM_OK);
        }
        for (int i = 0; i < 5; i++)
            assert_same_outcome(fx_apply_op(&f, ids[i], fx_create_cmd(next - 5 + (u128)i)), firsts[i], "create");
        fx_check(&f);
        f.slot += 6; /* records age out a round later: head and tail both move round */
        fx_apply(&f, fx_create_cmd(100000 + (u128)round));
        wraps += f.sm.operation_head < head_before;
    }
    ck_assert_uint_ge(wraps, 5);
    fx_check(&f);
    fx_free(&f);
}
END_TEST

START_TEST(test_dedupe_conflict_and_failures_cached)
{
    struct fx f;
    struct sm_config cfg = fx_small_config();
    fx_init(&f, &cfg);
    fx_apply(&f, fx_create_cmd(1));
    u128 r = reserve_ok(&f, 1, 5);
    /* A domain failure is recorded and replayed. */
    struct sm_command busy = fx_reserve_cmd(1, OTHER, 5);
    assert_result(fx_apply_op(&f, 500, busy), SM_RESOURCE_BUSY);
    assert_result(fx_apply(&f, fx_release_cmd(r, HOLDER)), SM_OK);
    struct sm_outcome o = fx_apply_op(&f, 500, busy);
    assert_result(o, SM_RESOURCE_BUSY); /* the original result, though the resource is free now */
    ck_assert(o.from_retry_cache);

    /* Same operation id, different payload: conflict, nothing recorded or changed. */
    struct sm_command other_ttl = fx_reserve_cmd(1, OTHER, 6);
    o = fx_apply_op(&f, 500, other_ttl);
    assert_result(o, SM_OPERATION_CONFLICT);
    ck_assert(!o.from_retry_cache);
    assert_result(fx_apply_op(&f, 500, fx_create_cmd(9)), SM_OPERATION_CONFLICT);
    struct sm_resource_view rv;
    ck_assert_int_eq(sm_get_resource(&f.sm, 9, 0, &rv), SM_READ_NOT_FOUND);
    /* The original is still what a retry gets. */
    o = fx_apply_op(&f, 500, busy);
    assert_result(o, SM_RESOURCE_BUSY);
    ck_assert(o.from_retry_cache);
    /* Another client reusing the operation id conflicts too. */
    f.client = 8;
    assert_result(fx_apply_op(&f, 500, busy), SM_OPERATION_CONFLICT);
    fx_check(&f);
    fx_free(&f);
}
END_TEST

START_TEST(test_operation_table_full)
{
    struct fx f;
    struct sm_config cfg = fx_small_config(); /* 16 records, dedupe 10 */
    cfg.resource_capacity = 32;
    fx_init(&f, &cfg);
    for (u128 id = 1; id <= 16; id++)
        assert_result(fx_apply_op(&f, id, fx_create_cmd(id)), SM_OK);
    struct sm_health h;
    sm_health(&f.sm, f.slot, &h);
    ck_assert_uint_eq(h.operation_utilization_pct, 100);
    struct sm_outcome o = fx_apply_op(&f, 17, fx_create_cmd(17));
    assert_result(o, SM_OPERATION_TABLE_FULL);
    struct sm_resource_view rv;
    ck_assert_int_eq(sm_get_resource(&f.sm, 17, 0, &rv), SM_READ_NOT_FOUND);
    /* Not recorded: the same id is still new, and still full. */
    assert_result(fx_apply_op(&f, 17, fx_create_cmd(17)), SM_OPERATION_TABLE_FULL);
    /* Retries of recorded operations are still answered while full. */
    o = fx_apply_op(&f, 3, fx_create_cmd(3));
    assert_result(o, SM_OK);
    ck_assert(o.from_retry_cache);
    /* Check order: dedupe before operation_table_full. */
    assert_result(fx_apply_op(&f, 3, fx_create_cmd(4)), SM_OPERATION_CONFLICT);
    /* After the window the table drains. */
    f.slot += cfg.dedupe_window_slots + 1;
    assert_result(fx_apply_op(&f, 17, fx_create_cmd(17)), SM_OK);
    sm_health(&f.sm, f.slot, &h);
    ck_assert_uint_eq(h.operations_used, 1);
    ck_assert_uint_eq(h.operation_utilization_pct, 7); /* 1/16 rounded up */
    fx_check(&f);
    fx_free(&f);
}
END_TEST

START_TEST(test_read_fence)
{
    struct fx f;
    struct sm_config cfg = fx_small_config();
    fx_init(&f, &cfg);
    fx_apply(&f, fx_create_cmd(1));
    struct sm_resource_view rv;
    struct sm_reservation_view v;
    ck_assert_int_eq(sm_get_resource(&f.sm, 1, f.lsn, &rv), SM_READ_FOUND);
    ck_assert_int_eq(sm_get_resource(&f.sm, 1, f.lsn + 1, &rv), SM_READ_FENCE_NOT_APPLIED);
    ck_assert_int_eq(sm_get_reservation(&f.sm, 1, f.lsn + 1, &v), SM_READ_FENCE_NOT_APPLIED);
    ck_assert_int_eq(sm_get_resource(&f.sm, 2, f.lsn, &rv), SM_READ_NOT_FOUND);
    fx_free(&f);
}
END_TEST

START_TEST(test_due_order_and_bound)
{
    struct fx f;
    struct sm_config cfg = fx_small_config();
    fx_init(&f, &cfg);
    for (u128 id = 1; id <= 6; id++)
        fx_apply(&f, fx_create_cmd(id));
    u128 a = reserve_ok(&f, 1, 9); /* deadline 10 */
    u128 b = reserve_ok(&f, 2, 3); /* deadline 4 */
    f.slot = 2;
    u128 c = reserve_ok(&f, 3, 2); /* deadline 4, later id */
    u128 d = reserve_ok(&f, 4, 16); /* deadline 18 */
    struct sm_due due[8];
    ck_assert_uint_eq(sm_due_expirations(&f.sm, 3, due, 8), 0);
    ck_assert_uint_eq(sm_due_expirations(&f.sm, 10, due, 8), 3);
    ck_assert(due[0].reservation_id == b && due[0].deadline_slot == 4);
    ck_assert(due[1].reservation_id == c && due[1].deadline_slot == 4);
    ck_assert(due[2].reservation_id == a && due[2].deadline_slot == 10);
    ck_assert_uint_eq(sm_due_expirations(&f.sm, 10, due, 2), 2); /* bounded by max */
    ck_assert_uint_eq(sm_due_expirations(&f.sm, UINT64_MAX, due, 8), 4);
    ck_assert(due[3].reservation_id == d);
    /* Apply moves the wheel; the order holds across the due list and the wheel. */
    f.slot = 5;
    fx_apply(&f, fx_create_cmd(5));
    ck_assert_uint_eq(sm_due_expirations(&f.sm, 18, due, 8), 4);
    ck_assert(due[0].reservation_id == b && due[1].reservation_id == c);
    ck_assert(due[2].reservation_id == a && due[3].reservation_id == d);
    struct sm_health h;
    sm_health(&f.sm, 5, &h);
    ck_assert_uint_eq(h.expiration_backlog, 2);
    sm_health(&f.sm, 10, &h);
    ck_assert_uint_eq(h.expiration_backlog, 3);
    ck_assert_uint_eq(h.logical_slot_lag, 5);
    sm_health(&f.sm, 1, &h);
    ck_assert_uint_eq(h.logical_slot_lag, 0);
    fx_check(&f);
    fx_free(&f);
}
END_TEST

START_TEST(test_large_slot_jump)
{
    /* A jump far beyond the wheel and every window retires everything in one apply. */
    struct fx f;
    struct sm_config cfg = fx_small_config();
    fx_init(&f, &cfg);
    for (u128 id = 1; id <= 4; id++)
        fx_apply(&f, fx_create_cmd(id));
    u128 r1 = reserve_ok(&f, 1, 16);
    reserve_ok(&f, 2, 3);
    u128 r3 = reserve_ok(&f, 3, 5);
    fx_apply(&f, fx_release_cmd(r3, HOLDER));
    f.slot = 1000000;
    fx_apply(&f, fx_create_cmd(5));
    struct sm_health h;
    sm_health(&f.sm, f.slot, &h);
    ck_assert_uint_eq(h.operations_used, 1);
    ck_assert_uint_eq(h.reservations_used, 2);
    ck_assert_uint_eq(h.expiration_backlog, 2);
    struct sm_due due[4];
    ck_assert_uint_eq(sm_due_expirations(&f.sm, f.slot, due, 4), 2);
    ck_assert(due[0].deadline_slot == 4 && due[1].reservation_id == r1);
    fx_check(&f);
    fx_free(&f);
}
END_TEST

START_TEST(test_health)
{
    struct fx f;
    struct sm_config cfg = fx_small_config();
    fx_init(&f, &cfg);
    fx_apply(&f, fx_create_cmd(1));
    reserve_ok(&f, 1, 3);
    struct sm_health h;
    sm_health(&f.sm, 1, &h);
    ck_assert_uint_eq(h.last_applied_lsn, 2);
    ck_assert_uint_eq(h.last_request_slot, 1);
    ck_assert_uint_eq(h.resources_used, 1);
    ck_assert_uint_eq(h.resource_capacity, 8);
    ck_assert_uint_eq(h.reservations_used, 1);
    ck_assert_uint_eq(h.reservation_capacity, 8);
    ck_assert_uint_eq(h.operations_used, 2);
    ck_assert_uint_eq(h.operation_capacity, 16);
    ck_assert_uint_eq(h.operation_utilization_pct, 13);
    ck_assert_uint_eq(h.expirations_used, 1);
    ck_assert_uint_eq(h.expiration_capacity, 8);
    ck_assert_uint_eq(h.expiration_backlog, 0);
    sm_health(&f.sm, 4, &h);
    ck_assert_uint_eq(h.expiration_backlog, 1);
    ck_assert_uint_eq(h.logical_slot_lag, 3);
    fx_free(&f);
}
END_TEST

static void run_script(struct fx *f, int variant)
{
    fx_apply(f, fx_create_cmd(1));
    fx_apply(f, fx_create_cmd(2));
    u128 r = reserve_ok(f, 1, 4);
    f->slot += 2;
    fx_apply(f, fx_confirm_cmd(r, variant == 0 ? HOLDER : OTHER));
    reserve_ok(f, 2, 3);
    f->slot += 7;
    fx_apply(f, fx_release_cmd(r, HOLDER));
}

START_TEST(test_digest)
{
    struct fx a, b, c;
    struct sm_config cfg = fx_small_config();
    fx_init(&a, &cfg);
    fx_init(&b, &cfg);
    fx_init(&c, &cfg);
    struct sm_digest empty = sm_digest(&a.sm);
    run_script(&a, 0);
    run_script(&b, 0);
    run_script(&c, 1);
    struct sm_digest da = sm_digest(&a.sm), db = sm_digest(&b.sm), dc = sm_digest(&c.sm);
    ck_assert(memcmp(&da, &db, sizeof(da)) == 0);
    ck_assert(memcmp(&da, &dc, sizeof(da)) != 0);
    ck_assert(memcmp(&da, &empty, sizeof(da)) != 0);
    fx_free(&a);
    fx_free(&b);
    fx_free(&c);
}
END_TEST

START_TEST(test_invariant_check_detects_corruption)
{
    struct fx f;
    struct sm_config cfg = fx_small_config();
    fx_init(&f, &cfg);
    fx_apply(&f, fx_create_cmd(1));
    reserve_ok(&f, 1, 4);
    fx_check(&f);
    char why[200];
    struct sm_resource *res = NULL;
    for (u32 i = 0; i <= f.sm.resource_mask; i++)
        if (f.sm.resources[i].used)
            res = &f.sm.resources[i];
    ck_assert_ptr_nonnull(res);
    /* Break the resource -> reservation back-pointer. */
    res->state = SM_RESOURCE_AVAILABLE;
    ck_assert(!sm_check_invariants(&f.sm, why, sizeof(why)));
    res->state = SM_RESOURCE_RESERVED;
    fx_check(&f);
    /* A reservation that claims to be confirmed while still in the expiration index. */
    f.sm.reservations[0].state = SM_RESERVATION_CONFIRMED;
    ck_assert(!sm_check_invariants(&f.sm, why, sizeof(why)));
    f.sm.reservations[0].state = SM_RESERVATION_RESERVED;
    /* An operation record from the future. */
    f.sm.operations[0].applied_lsn = 99;
    ck_assert(!sm_check_invariants(&f.sm, why, sizeof(why)));
    fx_free(&f);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("sm");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_names);
    tcase_add_test(tc, test_config_validation);
    tcase_add_test(tc, test_create_resource);
    tcase_add_test(tc, test_reserve_ok_and_ids);
    tcase_add_test(tc, test_reserve_check_order);
    tcase_add_test(tc, test_reservation_table_full);
    tcase_add_test(tc, test_expiration_index_full);
    tcase_add_test(tc, test_reserve_slot_overflow);
    tcase_add_test(tc, test_request_slot_overflow_edges);
    tcase_add_test(tc, test_invariants_after_slot_overflow);
    tcase_add_test(tc, test_confirm_and_release);
    tcase_add_test(tc, test_expire_cases);
    tcase_add_test(tc, test_late_confirm_before_expire);
    tcase_add_test(tc, test_retirement_boundary);
    tcase_add_test(tc, test_retired_watermark);
    tcase_add_test(tc, test_dedupe_window);
    tcase_add_test(tc, test_retry_outcome_from_compact_record);
    tcase_add_test(tc, test_operation_ring_wraps);
    tcase_add_test(tc, test_dedupe_conflict_and_failures_cached);
    tcase_add_test(tc, test_operation_table_full);
    tcase_add_test(tc, test_read_fence);
    tcase_add_test(tc, test_due_order_and_bound);
    tcase_add_test(tc, test_large_slot_jump);
    tcase_add_test(tc, test_health);
    tcase_add_test(tc, test_digest);
    tcase_add_test(tc, test_invariant_check_detects_corruption);
    suite_add_tcase(s, tc);
    return s;
}
