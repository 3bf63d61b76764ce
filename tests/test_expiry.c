/*
 * tests/test_expiry.c — the expiration index (timing wheel + due list) against brute force.
 *
 * The reference is an array of (position, deadline, insertion order); the due query must equal
 * "all with deadline <= slot, sorted by (deadline, insertion order)", which is what the state
 * machine relies on for earliest-deadline-first, ties by reservation id.
 */
#include "replica/expiry.h"
#include "common/splitmix.h"
#include "tests/check_main.h"

#include <stdlib.h>
#include <string.h>

#define NODES 48
#define MAX_TTL 100

static u64 rng_state;
static u64 rng(void)
{
    return splitmix_next(&rng_state);
}

struct ref_node {
    bool on;
    u64 deadline;
    u64 order; /* insertion order: stands for the reservation id */
};

struct wheel {
    struct expiry ex;
    struct expiry_node *nodes;
    u32 *buckets;
    u64 *bitmap;
};

static void wheel_init(struct wheel *w, u32 capacity)
{
    struct expiry_sizes s;
    expiry_sizes(NODES, MAX_TTL, &s);
    w->nodes = malloc(s.nodes);
    w->buckets = malloc(s.buckets);
    w->bitmap = malloc(s.bitmap);
    expiry_init(&w->ex, NODES, capacity, MAX_TTL, w->nodes, w->buckets, w->bitmap);
}

static void wheel_free(struct wheel *w)
{
    free(w->nodes);
    free(w->buckets);
    free(w->bitmap);
}

static void emit(void *ctx, u32 i, u32 pos)
{
    ((u32 *)ctx)[i] = pos;
}

/* Reference due query into out (positions), sorted by (deadline, order). */
static u32 ref_due(const struct ref_node *r, u64 slot, u32 *out, u32 max)
{
    u32 n = 0;
    u64 last_d = 0, last_o = 0;
    for (;;) {
        /* Selection: the smallest (deadline, order) greater than the last emitted. */
        int best = -1;
        for (u32 i = 0; i < NODES; i++) {
            if (!r[i].on || r[i].deadline > slot)
                continue;
            bool after = n == 0 || r[i].deadline > last_d || (r[i].deadline == last_d && r[i].order > last_o);
            if (!after)
                continue;
            if (best < 0 || r[i].deadline < r[best].deadline ||
                (r[i].deadline == r[best].deadline && r[i].order < r[best].order))
                best = (int)i;
        }
        if (best < 0 || n >= max)
            return n;
        out[n++] = (u32)best;
        last_d = r[best].deadline;
        last_o = r[best].order;
    }
}

START_TEST(test_schedule_due_order)
{
    struct wheel w;
    wheel_init(&w, NODES);
    expiry_advance(&w.ex, 10);
    expiry_schedule(&w.ex, 3, 15);
    expiry_schedule(&w.ex, 1, 12);
    expiry_schedule(&w.ex, 2, 15);
    expiry_schedule(&w.ex, 0, 110 - 1); /* 99 ahead: the far edge of the wheel window */
    u32 out[8];
    ck_assert_uint_eq(expiry_due(&w.ex, 11, 8, emit, out), 0);
    ck_assert_uint_eq(expiry_due(&w.ex, 15, 8, emit, out), 3);
    ck_assert_uint_eq(out[0], 1);
    ck_assert_uint_eq(out[1], 3); /* same deadline: insertion order */
    ck_assert_uint_eq(out[2], 2);
    ck_assert_uint_eq(expiry_due(&w.ex, 15, 2, emit, out), 2);
    ck_assert_uint_eq(expiry_backlog(&w.ex, 15), 3);
    ck_assert_uint_eq(expiry_backlog(&w.ex, 1000), 4);
    expiry_advance(&w.ex, 20);
    ck_assert_uint_eq(w.ex.due_count, 3);
    expiry_unschedule(&w.ex, 3);
    ck_assert_uint_eq(expiry_due(&w.ex, 20, 8, emit, out), 2);
    ck_assert_uint_eq(out[0], 1);
    ck_assert_uint_eq(out[1], 2);
    const char *why = NULL;
    ck_assert_msg(expiry_check(&w.ex, &why), "%s", why);
    wheel_free(&w);
}
END_TEST

START_TEST(test_capacity)
{
    struct wheel w;
    wheel_init(&w, 2);
    expiry_schedule(&w.ex, 0, 5);
    ck_assert(!expiry_full(&w.ex));
    expiry_schedule(&w.ex, 1, 5);
    ck_assert(expiry_full(&w.ex));
    expiry_unschedule(&w.ex, 0);
    ck_assert(!expiry_full(&w.ex));
    wheel_free(&w);
}
END_TEST

START_TEST(test_random_against_reference)
{
    struct wheel w;
    struct ref_node ref[NODES];
    memset(ref, 0, sizeof(ref));
    wheel_init(&w, NODES - 8);
    rng_state = 7 + (u64)_i;
    u64 slot = 0, order = 0;
    u32 on = 0;
    for (int step = 0; step < 100000; step++) {
        u64 r = rng() % 100;
        if (r < 10) {
            /* Mostly small steps; sometimes a jump past the whole wheel. */
            slot += rng() % 10 == 0 ? 1 + rng() % 400 : rng() % 3;
            expiry_advance(&w.ex, slot);
        } else if (r < 55) {
            u32 pos = (u32)(rng() % NODES);
            if (!ref[pos].on && !expiry_full(&w.ex)) {
                u64 d = slot + 1 + rng() % MAX_TTL;
                expiry_schedule(&w.ex, pos, d);
                ref[pos] = (struct ref_node){ true, d, ++order };
                on++;
            }
        } else if (r < 90) {
            u32 pos = (u32)(rng() % NODES);
            if (ref[pos].on) {
                expiry_unschedule(&w.ex, pos);
                ref[pos].on = false;
                on--;
            }
        } else {
            u64 q = slot + rng() % (2 * MAX_TTL);
            if (rng() % 4 == 0)
                q = slot > 5 ? slot - rng() % 5 : slot;
            u32 max = 1 + (u32)(rng() % NODES);
            u32 got[NODES], want[NODES];
            u32 ng = expiry_due(&w.ex, q, max, emit, got);
            u32 nw = ref_due(ref, q, want, max);
            ck_assert_uint_eq(ng, nw);
            for (u32 i = 0; i < ng; i++)
                ck_assert_msg(got[i] == want[i], "step %d: due[%u] = %u, want %u", step, i, got[i], want[i]);
            ck_assert_uint_eq(expiry_backlog(&w.ex, q), ref_due(ref, q, want, NODES));
        }
        ck_assert_uint_eq(w.ex.count, on);
        if (step % 101 == 0) {
            const char *why = NULL;
            ck_assert_msg(expiry_check(&w.ex, &why), "step %d: %s", step, why);
        }
    }
    wheel_free(&w);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("expiry");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_schedule_due_order);
    tcase_add_test(tc, test_capacity);
    tcase_add_loop_test(tc, test_random_against_reference, 0, 3);
    tcase_set_timeout(tc, TEST_LONG_TIMEOUT);
    suite_add_tcase(s, tc);
    return s;
}
