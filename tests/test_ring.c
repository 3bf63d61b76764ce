/*
 * tests/test_ring.c — the shared-memory ring: order, backpressure, wrap-around, corruption
 * detection, and two real processes, including a producer killed with SIGKILL mid-stream and
 * replaced by a new one that continues from the published position; two consumer cursors; one
 * doorbell for two rings.
 */
#include "config.h"

#include "supervisor/ring.h"
#include "tests/check_main.h"

#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CAP 64
#define SLOT 64

static void *shared(u64 size)
{
    void *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ck_assert_ptr_ne(m, MAP_FAILED);
    return m;
}

/* Entry for position p: its length and its bytes, so any mix-up shows. */
static u32 entry_len(u64 p)
{
    return 8 + (u32)(p * 7 % (SLOT - 7));
}

static void fill_entry(u8 *buf, u64 p)
{
    u32 len = entry_len(p);
    memcpy(buf, &p, 8);
    for (u32 i = 8; i < len; i++)
        buf[i] = (u8)(p * 31 + i);
}

static void check_entry(const u8 *buf, u32 len, u64 p)
{
    ck_assert_uint_eq(len, entry_len(p));
    u64 got;
    memcpy(&got, buf, 8);
    ck_assert_uint_eq(got, p);
    for (u32 i = 8; i < len; i++)
        ck_assert_uint_eq(buf[i], (u8)(p * 31 + i));
}

START_TEST(test_shapes)
{
    ck_assert_uint_eq(ring_size(3, 64), 0);
    ck_assert_uint_eq(ring_size(64, 12), 0);
    ck_assert_uint_eq(ring_size(1, 64), 0);
    ck_assert_uint_gt(ring_size(64, 64), 64u * 64);
    void *m = shared(ring_size(CAP, SLOT));
    struct ring *r = ring_init(m, CAP, SLOT);
    ck_assert_ptr_eq(ring_attach(m, CAP, SLOT), r);
    ck_assert_ptr_null(ring_attach(m, CAP * 2, SLOT));
    ck_assert_ptr_null(ring_attach(m, CAP, SLOT + 8));
    munmap(m, ring_size(CAP, SLOT));
}
END_TEST

START_TEST(test_order_backpressure_and_wrap)
{
    void *m = shared(ring_size(CAP, SLOT));
    struct ring *r = ring_init(m, CAP, SLOT);
    const void *payload;
    u32 len;
    ck_assert_int_eq(ring_peek(r, &payload, &len), RING_EMPTY);
    u64 produced = 0, consumed = 0;
    /* Many laps with a varying fill level; full must refuse, never overwrite. */
    for (int round = 0; round < 2000; round++) {
        u64 want = (u64)(round * 37 % (CAP + 5));
        for (u64 i = 0; i < want; i++) {
            void *slot = ring_claim(r);
            if (produced - consumed == CAP) {
                ck_assert_ptr_null(slot);
                break;
            }
            ck_assert_ptr_nonnull(slot);
            fill_entry(slot, produced);
            ring_publish(r, entry_len(produced));
            produced++;
        }
        ck_assert_uint_eq(ring_depth(r), produced - consumed);
        u64 take = (u64)(round * 53 % (CAP + 3));
        for (u64 i = 0; i < take && consumed < produced; i++) {
            ck_assert_int_eq(ring_peek(r, &payload, &len), RING_OK);
            check_entry(payload, len, consumed);
            ring_release(r);
            consumed++;
        }
    }
    ck_assert_uint_gt(produced, 50 * CAP);
    munmap(m, ring_size(CAP, SLOT));
}
END_TEST

START_TEST(test_claim_without_publish_is_invisible_and_reclaimed)
{
    void *m = shared(ring_size(CAP, SLOT));
    struct ring *r = ring_init(m, CAP, SLOT);
    u8 *a = ring_claim(r);
    memset(a, 0xee, SLOT); /* a producer that dies here, mid-write */
    const void *payload;
    u32 len;
    ck_assert_int_eq(ring_peek(r, &payload, &len), RING_EMPTY);
    struct ring *again = ring_attach(m, CAP, SLOT); /* its replacement */
    u8 *b = ring_claim(again);
    ck_assert_ptr_eq(a, b);
    fill_entry(b, 0);
    ring_publish(again, entry_len(0));
    ck_assert_int_eq(ring_peek(r, &payload, &len), RING_OK);
    check_entry(payload, len, 0);
    munmap(m, ring_size(CAP, SLOT));
}
END_TEST

START_TEST(test_corruption_is_detected)
{
    void *m = shared(ring_size(CAP, SLOT));
    struct ring *r = ring_init(m, CAP, SLOT);
    u8 *slot = ring_claim(r);
    fill_entry(slot, 0);
    ring_publish(r, entry_len(0));
    const void *payload;
    u32 len;
    for (u32 i = 0; i < entry_len(0); i++) {
        slot[i] ^= 0x04;
        ck_assert_int_eq(ring_peek(r, &payload, &len), RING_CORRUPT);
        slot[i] ^= 0x04;
    }
    /* The slot header (position, length, crc) sits just before the payload. */
    for (int i = 1; i <= RING_SLOT_HEADER; i++) {
        slot[-i] ^= 0x01;
        ck_assert_int_eq(ring_peek(r, &payload, &len), RING_CORRUPT);
        slot[-i] ^= 0x01;
    }
    ck_assert_int_eq(ring_peek(r, &payload, &len), RING_OK);
    munmap(m, ring_size(CAP, SLOT));
}
END_TEST

/* A producer process: publishes from the ring's head up to `until` (forever if 0). */
static void produce(void *m, u64 until)
{
    /* Never outlive a failed test: die with the process that forked us. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() == 1)
        _exit(3);
    struct ring *r = ring_attach(m, CAP, SLOT);
    if (r == NULL)
        _exit(2);
    for (;;) {
        /* A replacement continues at the published head, where its predecessor stopped. */
        u64 p = ring_head(r);
        if (until != 0 && p >= until)
            _exit(0);
        void *slot;
        while ((slot = ring_claim(r)) == NULL)
            sched_yield();
        fill_entry(slot, p);
        ring_publish(r, entry_len(p));
    }
}

static void consume(struct ring *r, u64 *next, u64 until)
{
    const void *payload;
    u32 len;
    while (*next < until) {
        enum ring_status st = ring_peek(r, &payload, &len);
        if (st == RING_EMPTY) {
            sched_yield();
            continue;
        }
        ck_assert_int_eq(st, RING_OK);
        check_entry(payload, len, *next);
        ring_release(r);
        (*next)++;
    }
}

START_TEST(test_two_processes_and_a_killed_producer)
{
    void *m = shared(ring_size(CAP, SLOT));
    struct ring *r = ring_init(m, CAP, SLOT);
    u64 next = 0;
    /* First producer: runs forever; killed with SIGKILL at some point mid-stream. */
    pid_t p1 = fork();
    ck_assert_int_ge(p1, 0);
    if (p1 == 0)
        produce(m, 0);
    consume(r, &next, 100000);
    kill(p1, SIGKILL);
    int status;
    ck_assert_int_eq(waitpid(p1, &status, 0), p1);
    ck_assert(WIFSIGNALED(status));
    /* Drain what it published, then a replacement continues from the published head. */
    u64 published = next + ring_depth(r);
    consume(r, &next, published);
    pid_t p2 = fork();
    ck_assert_int_ge(p2, 0);
    if (p2 == 0)
        produce(m, published + 100000);
    consume(r, &next, published + 100000);
    ck_assert_int_eq(waitpid(p2, &status, 0), p2);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ck_assert_uint_eq(ring_depth(r), 0);
    munmap(m, ring_size(CAP, SLOT));
}
END_TEST

START_TEST(test_wait_times_out_when_idle)
{
    void *m = shared(ring_size(CAP, SLOT));
    struct ring *r = ring_init(m, CAP, SLOT);
    ck_assert(!ring_wait(r, 20));
    void *slot = ring_claim(r);
    fill_entry(slot, 0);
    ring_publish(r, entry_len(0));
    ck_assert(ring_wait(r, 20)); /* available: returns at once */
    munmap(m, ring_size(CAP, SLOT));
}
END_TEST

/* A producer that publishes in small bursts with pauses, so the consumer keeps falling asleep. */
static void produce_in_bursts(void *m, u64 until)
{
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() == 1)
        _exit(3);
    struct ring *r = ring_attach(m, CAP, SLOT);
    for (u64 p = 0; p < until; p++) {
        void *slot;
        while ((slot = ring_claim(r)) == NULL)
            sched_yield();
        fill_entry(slot, p);
        ring_publish(r, entry_len(p));
        if (p % 3 == 0)
            usleep(1000); /* long enough for a sanitizer build's consumer to drain and sleep */
    }
    _exit(0);
}

/*
 * The lost-wake-up test: the producer pauses about a millisecond between bursts, so a wait
 * that lasts a second slept through a publish: a lost wake-up.
 */
START_TEST(test_sleeping_consumer_is_always_woken)
{
    const u64 n = 3000;
    void *m = shared(ring_size(CAP, SLOT));
    struct ring *r = ring_init(m, CAP, SLOT);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0)
        produce_in_bursts(m, n);
    u64 next = 0, idle_waits = 0, timeouts = 0;
    while (next < n) {
        const void *payload;
        u32 len;
        enum ring_status st;
        while ((st = ring_peek(r, &payload, &len)) == RING_OK) { /* drain all per wake-up */
            check_entry(payload, len, next++);
            ring_release(r);
        }
        ck_assert_int_eq(st, RING_EMPTY);
        if (next == n)
            break;
        idle_waits++;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        ring_wait(r, 2000);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        /* The producer never pauses for much more than a millisecond: a wait this long slept
         * through a publish. (Generous, so a loaded machine cannot fail it.) */
        if ((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000 >= 1000)
            timeouts++;
        ck_assert_msg(timeouts == 0, "a wait slept through a publish after %llu entries: lost wake-up",
                      (unsigned long long)next);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ck_assert_uint_eq(timeouts, 0);
    ck_assert_uint_gt(idle_waits, 100); /* the sleeping path really ran */
    munmap(m, ring_size(CAP, SLOT));
}
END_TEST

/* Two consumers (the shared log: applier and peer): each reads every entry; the slower one holds
 * the producer back; an inactive one is ignored; a shared doorbell wakes a consumer of two rings. */
START_TEST(test_two_cursors_and_backpressure)
{
    void *m = shared(ring_size(CAP, SLOT));
    struct ring *r = ring_init_multi(m, CAP, SLOT, 2);
    ck_assert_uint_eq(ring_consumers(r), 2);
    for (u64 p = 0; p < CAP; p++) {
        u8 *slot = ring_claim(r);
        ck_assert_ptr_nonnull(slot);
        fill_entry(slot, p);
        ring_publish(r, entry_len(p));
    }
    ck_assert_ptr_null(ring_claim(r)); /* full for both */
    const void *payload;
    u32 len;
    for (u64 p = 0; p < CAP; p++) { /* consumer 0 reads everything */
        ck_assert_int_eq(ring_peek_at(r, 0, &payload, &len), RING_OK);
        check_entry(payload, len, p);
        ring_release_at(r, 0);
    }
    ck_assert_int_eq(ring_peek_at(r, 0, &payload, &len), RING_EMPTY);
    ck_assert_ptr_null(ring_claim(r)); /* consumer 1 still holds every slot */
    ck_assert_uint_eq(ring_depth(r), CAP);
    ck_assert_int_eq(ring_peek_at(r, 1, &payload, &len), RING_OK);
    check_entry(payload, len, 0);
    ring_release_at(r, 1);
    ck_assert_ptr_nonnull(ring_claim(r)); /* one slot free now */
    ring_set_active(r, 1, false);         /* the peer leaves: only consumer 0 gates */
    ck_assert_uint_eq(ring_depth(r), 0);
    for (u64 p = CAP; p < 3 * CAP; p++) {
        u8 *slot = ring_claim(r);
        ck_assert_ptr_nonnull(slot);
        fill_entry(slot, p);
        ring_publish(r, entry_len(p));
        ck_assert_int_eq(ring_peek_at(r, 0, &payload, &len), RING_OK);
        check_entry(payload, len, p);
        ring_release_at(r, 0);
    }
    ring_set_active(r, 1, true); /* rejoins at the head: sees only what follows */
    ck_assert_int_eq(ring_peek_at(r, 1, &payload, &len), RING_EMPTY);
    u8 *slot = ring_claim(r);
    fill_entry(slot, 3 * CAP);
    ring_publish(r, entry_len(3 * CAP));
    ck_assert_int_eq(ring_peek_at(r, 1, &payload, &len), RING_OK);
    check_entry(payload, len, 3 * CAP);
    munmap(m, ring_size(CAP, SLOT));
}
END_TEST

/* One doorbell for two rings: a publish on either wakes the sleeper (across processes). */
START_TEST(test_shared_doorbell_wakes_for_any_ring)
{
    u64 rs = ring_size(CAP, SLOT);
    u8 *m = shared(2 * rs + ADB_CACHE_LINE);
    struct ring *a = ring_init(m, CAP, SLOT), *b = ring_init(m + rs, CAP, SLOT);
    struct doorbell *d = (struct doorbell *)(m + 2 * rs);
    doorbell_init(d, -1);
    ring_set_doorbell(a, 0, d);
    ring_set_doorbell(b, 0, d);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        for (u64 p = 0; p < 200; p++) {
            struct timespec ts = { 0, 200000 };
            nanosleep(&ts, NULL); /* let the consumer fall asleep */
            struct ring *r = (p & 1) ? b : a;
            u8 *slot;
            while ((slot = ring_claim(r)) == NULL)
                sched_yield();
            fill_entry(slot, p);
            ring_publish(r, entry_len(p));
        }
        _exit(0);
    }
    u64 got = 0, sleeps = 0;
    while (got < 200) {
        const void *payload;
        u32 len;
        struct ring *r = (got & 1) ? b : a;
        if (ring_peek(r, &payload, &len) == RING_OK) {
            check_entry(payload, len, got);
            ring_release(r);
            got++;
            continue;
        }
        doorbell_arm(d);
        if (ring_has(a, 0) || ring_has(b, 0)) {
            doorbell_disarm(d);
            continue;
        }
        doorbell_sleep(d, 5000); /* a lost wake-up would cost 5 s here and fail the timeout */
        sleeps++;
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ck_assert_uint_gt(sleeps, 50);
    ck_assert_uint_gt(atomic_load(&d->wakeups), 50);
    munmap(m, 2 * rs + ADB_CACHE_LINE);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("ring");
    TCase *tc = tcase_create("ring");
    tcase_set_timeout(tc, TEST_LONG_TIMEOUT);
    tcase_add_test(tc, test_shapes);
    tcase_add_test(tc, test_order_backpressure_and_wrap);
    tcase_add_test(tc, test_claim_without_publish_is_invisible_and_reclaimed);
    tcase_add_test(tc, test_corruption_is_detected);
    tcase_add_test(tc, test_two_processes_and_a_killed_producer);
    tcase_add_test(tc, test_wait_times_out_when_idle);
    tcase_add_test(tc, test_sleeping_consumer_is_always_woken);
    tcase_add_test(tc, test_two_cursors_and_backpressure);
    tcase_add_test(tc, test_shared_doorbell_wakes_for_any_ring);
    suite_add_tcase(s, tc);
    return s;
}
