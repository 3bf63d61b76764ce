/*
 * tests/test_index.c — the open-addressed hash index against a brute-force reference.
 *
 * Random inserts and removes (with keys chosen so that many share home slots and clusters wrap
 * around the end of the table) must keep every present key findable, every removed key gone,
 * and index_check() true. Backward-shift deletion is the part most likely to be wrong.
 */
#include "replica/index.h"
#include "common/splitmix.h"
#include "tests/check_main.h"

#include <stdlib.h>

#define CAP 64

static u64 rng_state;
static u64 rng(void)
{
    return splitmix_next(&rng_state);
}

/* The "pool": key per position; 0 = free. */
static u64 keys[CAP];

static u32 find(const struct index *ix, u64 key)
{
    struct index_probe p = index_probe_start(ix, key);
    for (u32 ref; (ref = index_probe_next(ix, &p, key)) != 0;)
        if (keys[ref - 1] == key)
            return ref;
    return 0;
}

START_TEST(test_slot_count)
{
    ck_assert_uint_eq(index_slot_count(1), 2);
    ck_assert_uint_eq(index_slot_count(2), 4);
    ck_assert_uint_eq(index_slot_count(3), 8);
    ck_assert_uint_eq(index_slot_count(64), 128);
    ck_assert_uint_eq(index_slot_count(65), 256);
}
END_TEST

START_TEST(test_random_against_reference)
{
    struct index ix;
    struct index_slot *slots = calloc(index_slot_count(CAP), sizeof(*slots));
    index_init(&ix, slots, CAP);
    rng_state = 42 + (u64)_i;
    for (int step = 0; step < 200000; step++) {
        u32 pos = (u32)(rng() % CAP);
        if (keys[pos] == 0 && ix.count < CAP) {
            /* Hashes are the keys: low bits chosen from a small set to force collisions,
             * including homes near the end so clusters wrap. */
            u64 key;
            do {
                key = (rng() << 8) | (rng() % 4 == 0 ? ix.mask : rng() % 8);
            } while (key == 0 || find(&ix, key) != 0);
            keys[pos] = key;
            index_insert(&ix, key, pos + 1);
        } else if (keys[pos] != 0) {
            index_remove(&ix, keys[pos], pos + 1);
            u64 gone = keys[pos];
            keys[pos] = 0;
            ck_assert_uint_eq(find(&ix, gone), 0);
        }
        if (step % 97 == 0) {
            ck_assert(index_check(&ix));
            u32 present = 0;
            for (u32 i = 0; i < CAP; i++) {
                if (keys[i] == 0)
                    continue;
                present++;
                ck_assert_uint_eq(find(&ix, keys[i]), i + 1);
            }
            ck_assert_uint_eq(present, ix.count);
        }
    }
    free(slots);
    for (u32 i = 0; i < CAP; i++)
        keys[i] = 0;
}
END_TEST

START_TEST(test_full_table_then_empty)
{
    struct index ix;
    struct index_slot *slots = calloc(index_slot_count(CAP), sizeof(*slots));
    index_init(&ix, slots, CAP);
    /* Every key has the same home slot: one long cluster, the worst case for deletion. */
    for (u32 i = 0; i < CAP; i++) {
        keys[i] = ((u64)(i + 1) << 32) | 5;
        index_insert(&ix, keys[i], i + 1);
    }
    ck_assert(index_check(&ix));
    for (u32 i = 0; i < CAP; i += 2) {
        index_remove(&ix, keys[i], i + 1);
        keys[i] = 0;
        ck_assert(index_check(&ix));
    }
    for (u32 i = 1; i < CAP; i += 2)
        ck_assert_uint_eq(find(&ix, keys[i]), i + 1);
    for (u32 i = 1; i < CAP; i += 2) {
        index_remove(&ix, keys[i], i + 1);
        keys[i] = 0;
    }
    ck_assert_uint_eq(ix.count, 0);
    for (u64 s = 0; s <= ix.mask; s++)
        ck_assert_uint_eq(ix.slots[s].ref, 0);
    free(slots);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("index");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_slot_count);
    tcase_add_loop_test(tc, test_random_against_reference, 0, 3);
    tcase_add_test(tc, test_full_table_then_empty);
    tcase_set_timeout(tc, TEST_LONG_TIMEOUT);
    suite_add_tcase(s, tc);
    return s;
}
