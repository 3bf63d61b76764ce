/*
 * tests/test_retry_cache.c — the sequencer's retry shortcut (replica/retry_cache.h): a retry
 * inside the cache is answered with its first LSN; outside it (another fingerprint, not yet
 * durable, near or past the window's end, evicted, forced) it is logged; the first logging of an
 * id is the one kept; entries leave in insertion order.
 */
#include "config.h"

#include "replica/retry_cache.h"
#include "tests/check_main.h"

#include <stdlib.h>
#include <string.h>

#define WINDOW 80 /* margin: 80/8 + 1 = 11 slots */

static struct retry_cache c;
static void *mem;

static void make(u32 capacity)
{
    free(mem);
    mem = calloc(1, retry_cache_bytes(capacity));
    ck_assert_ptr_nonnull(mem);
    retry_cache_init(&c, mem, capacity, WINDOW);
}

static void teardown(void)
{
    free(mem);
    mem = NULL;
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

static u64 answer(const struct sm_command *cmd, u64 slot, u64 durable)
{
    return retry_cache_answer(&c, retry_cache_find(&c, cmd->operation_id), cmd, slot, durable);
}

START_TEST(test_retry_inside_the_cache)
{
    make(16);
    struct sm_command a = reserve(1, 100);
    retry_cache_add(&c, &a, 7, 10, true);
    ck_assert_uint_eq(answer(&a, 10, 7), 7);
    ck_assert_uint_eq(answer(&a, 10 + WINDOW - 11, 100), 7); /* still 11 slots of window left */
}
END_TEST

START_TEST(test_retry_outside_the_cache)
{
    make(16);
    struct sm_command a = reserve(1, 100);
    retry_cache_add(&c, &a, 7, 10, true);
    ck_assert_uint_eq(answer(&a, 10, 6), 0);                  /* its frame is not durable yet */
    ck_assert_uint_eq(answer(&a, 10 + WINDOW - 10, 100), 0);  /* too near the window's end */
    struct sm_command changed = reserve(1, 101);              /* the same id, another command */
    ck_assert_uint_eq(answer(&changed, 10, 100), 0);
    struct sm_command unknown = reserve(2, 100);
    ck_assert_uint_eq(answer(&unknown, 10, 100), 0);
    retry_cache_retire(&c, 10 + WINDOW + 1);                  /* the window is over */
    ck_assert_ptr_null(retry_cache_find(&c, 1));
    ck_assert_uint_eq(answer(&a, 10 + WINDOW + 1, 100), 0);
}
END_TEST

START_TEST(test_first_logging_kept)
{
    make(16);
    struct sm_command a = reserve(1, 100);
    retry_cache_add(&c, &a, 7, 10, true);
    retry_cache_add(&c, &a, 9, 12, false); /* a forced retry logged again */
    ck_assert_uint_eq(c.count, 1);
    ck_assert_uint_eq(answer(&a, 12, 100), 7);
}
END_TEST

START_TEST(test_full_evicts_oldest_and_retires_in_order)
{
    make(4);
    struct sm_command cmds[6];
    for (u32 i = 0; i < 6; i++) {
        cmds[i] = reserve(10 + i, 200 + i);
        retry_cache_add(&c, &cmds[i], 100 + i, 20 + i, true);
    }
    ck_assert_uint_eq(c.count, 4);
    ck_assert_ptr_null(retry_cache_find(&c, 10)); /* evicted, oldest first */
    ck_assert_ptr_null(retry_cache_find(&c, 11));
    for (u32 i = 2; i < 6; i++)
        ck_assert_uint_eq(answer(&cmds[i], 30, 1000), 100 + i);
    retry_cache_retire(&c, 20 + 3 + WINDOW + 1); /* the entries of slots 22 and 23 */
    ck_assert_uint_eq(c.count, 2);
    ck_assert_ptr_null(retry_cache_find(&c, 13));
    ck_assert_ptr_nonnull(retry_cache_find(&c, 14));
    /* The ring wraps: many more adds keep it consistent. */
    for (u32 i = 0; i < 1000; i++) {
        struct sm_command x = reserve(1000 + i, i);
        retry_cache_add(&c, &x, 200 + i, 40 + i / 10, true);
        ck_assert(index_check(&c.ix));
        ck_assert_uint_eq(answer(&x, 40 + i / 10, 10000), 200 + i);
    }
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("retry_cache");
    TCase *tc = tcase_create("retry_cache");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, test_retry_inside_the_cache);
    tcase_add_test(tc, test_retry_outside_the_cache);
    tcase_add_test(tc, test_first_logging_kept);
    tcase_add_test(tc, test_full_evicts_oldest_and_retires_in_order);
    suite_add_tcase(s, tc);
    return s;
}
