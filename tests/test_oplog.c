/*
 * tests/test_oplog.c — the operation log (replica/oplog.h) on a simulated disk.
 *
 *   roundtrip           what the writer exports (across segment rolls) the reader gives back,
 *                       record for record, each LSN once, up to a limit
 *   late_export         records retired before an export are skipped; the rest all arrive
 *   restart             a writer reopened after an LSN drops later segments and re-exports the
 *                       newer live records; earlier segments overlapping it are read once
 *   bit_flips           any flipped bit ends its segment at the damaged block (or the header)
 *                       and is reported; the reader never yields a damaged record or crashes
 *   prune               segments go only when the next one starts below the kept LSN
 */
#include "config.h"

#include "common/splitmix.h"
#include "replica/oplog.h"
#include "tests/check_main.h"
#include "tests/io_fault.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DIR "/d"

static struct io_fault *fs;
static struct io *io;

static void setup(void)
{
    fs = io_fault_create(1);
    io = io_fault_io(fs);
    ck_assert_int_eq(io->ops->mkdir(io, DIR), 0);
}

static void teardown(void)
{
    io_fault_destroy(fs);
}

/* A state machine whose dedupe window is `window` slots, fed creates at one per slot step. */
static void make_sm(sm_t *sm, u32 capacity, u64 window)
{
    struct sm_config c = { .resource_capacity = 1u << 16, .reservation_capacity = 16, .operation_capacity = capacity,
                           .expiration_capacity = 16, .max_ttl_slots = 8, .dedupe_window_slots = window,
                           .history_window_slots = 4 };
    char why[200];
    ck_assert_msg(sm_create(sm, &c, why, sizeof(why)), "%s", why);
}

/* Applies one create (a new operation record) at lsn, slot lsn / per_slot + 1. */
static void apply_one(sm_t *sm, u64 per_slot)
{
    u64 lsn = sm->last_applied_lsn + 1;
    struct sm_command c = { .kind = SM_CMD_CREATE_RESOURCE, .operation_id = lsn, .client_id = 7,
                            .resource_id = lsn };
    sm_apply(sm, lsn, lsn / per_slot + 1, &c);
}

/* Reads the whole log up to `upto` into out (returns the count); damage in *damage. */
static u32 read_all(u64 upto, struct sm_operation *out, u32 cap, char *damage, size_t damage_len)
{
    struct oplog_reader r;
    char why[256];
    ck_assert_msg(oplog_reader_open(&r, io, DIR, upto, why, sizeof(why)) == 0, "%s", why);
    u32 n = 0;
    struct sm_operation o;
    int rc;
    while ((rc = oplog_reader_next(&r, &o, why, sizeof(why))) == 1) {
        ck_assert_uint_lt(n, cap);
        ck_assert(n == 0 || o.applied_lsn > out[n - 1].applied_lsn);
        ck_assert_uint_le(o.applied_lsn, upto);
        out[n++] = o;
    }
    ck_assert_msg(rc == 0, "%s", why);
    if (damage != NULL)
        snprintf(damage, damage_len, "%s", r.damage);
    oplog_reader_close(&r);
    return n;
}

/* Every live record of sm appears in `got` exactly (those up to upto). */
static void assert_has_live(const sm_t *sm, const struct sm_operation *got, u32 n, u64 upto)
{
    u32 j = 0;
    for (u32 i = 0; i < sm->operation_count; i++) {
        const struct sm_operation *o = sm_operation_at(sm, i);
        if (o->applied_lsn > upto)
            break;
        while (j < n && got[j].applied_lsn < o->applied_lsn)
            j++;
        ck_assert_msg(j < n && memcmp(&got[j], o, sizeof(*o)) == 0, "live record at lsn %llu missing or different",
                      (unsigned long long)o->applied_lsn);
    }
}

START_TEST(test_roundtrip)
{
    sm_t sm;
    make_sm(&sm, 1u << 15, 1000000); /* nothing retires */
    struct oplog w;
    char why[256];
    ck_assert_int_eq(oplog_open(&w, io, DIR, &sm, 0, why, sizeof(why)), 0);
    w.segment_bytes = 64 * 1024; /* roll every ~1300 records */
    for (int i = 0; i < 20000; i++) {
        apply_one(&sm, 100);
        if (i % 37 == 0)
            ck_assert_int_eq(oplog_export(&w, &sm, why, sizeof(why)), 0);
        if (i % 700 == 699) /* blocks of 700 (a block is cut when full or at a flush) */
            ck_assert_int_eq(oplog_flush(&w, &sm, why, sizeof(why)), 0);
    }
    ck_assert_int_eq(oplog_flush(&w, &sm, why, sizeof(why)), 0);
    ck_assert_uint_gt(w.segments_started, 5);
    oplog_close(&w);
    static struct sm_operation got[1u << 15];
    u32 n = read_all(UINT64_MAX, got, 1u << 15, NULL, 0);
    ck_assert_uint_eq(n, 20000);
    assert_has_live(&sm, got, n, UINT64_MAX);
    /* A limit stops at it. */
    ck_assert_uint_eq(read_all(12345, got, 1u << 15, NULL, 0), 12345);
    sm_destroy(&sm);
}
END_TEST

START_TEST(test_late_export)
{
    sm_t sm;
    make_sm(&sm, 64, 5); /* records live 5 slots; 10 per slot: the ring turns over fast */
    struct oplog w;
    char why[256];
    ck_assert_int_eq(oplog_open(&w, io, DIR, &sm, 0, why, sizeof(why)), 0);
    for (int i = 0; i < 5000; i++) {
        apply_one(&sm, 10);
        if (i % 500 == 499) /* far fewer exports than records: most retire unexported */
            ck_assert_int_eq(oplog_export(&w, &sm, why, sizeof(why)), 0);
    }
    ck_assert_int_eq(oplog_flush(&w, &sm, why, sizeof(why)), 0);
    oplog_close(&w);
    static struct sm_operation got[8192];
    u32 n = read_all(UINT64_MAX, got, 8192, NULL, 0);
    ck_assert_uint_lt(n, 5000);
    assert_has_live(&sm, got, n, UINT64_MAX);
    sm_destroy(&sm);
}
END_TEST

START_TEST(test_restart)
{
    sm_t sm;
    make_sm(&sm, 1u << 14, 1000000);
    struct oplog w;
    char why[256];
    ck_assert_int_eq(oplog_open(&w, io, DIR, &sm, 0, why, sizeof(why)), 0);
    w.segment_bytes = 16 * 1024;
    for (int i = 0; i < 3000; i++) {
        apply_one(&sm, 100);
        ck_assert_int_eq(i % 300 == 299 ? oplog_flush(&w, &sm, why, sizeof(why)) : oplog_export(&w, &sm, why, sizeof(why)), 0);
    }
    ck_assert_int_eq(oplog_flush(&w, &sm, why, sizeof(why)), 0);
    oplog_close(&w);
    /* "Recovery" from a snapshot at LSN 1700: the same state (replay is deterministic), and a
     * writer that starts after 1700 must drop later segments and export 1701..3000 again. */
    ck_assert_int_eq(oplog_open(&w, io, DIR, &sm, 1700, why, sizeof(why)), 0);
    for (int i = 0; i < 500; i++) {
        apply_one(&sm, 100);
        ck_assert_int_eq(oplog_export(&w, &sm, why, sizeof(why)), 0);
    }
    ck_assert_int_eq(oplog_flush(&w, &sm, why, sizeof(why)), 0);
    oplog_close(&w);
    static struct sm_operation got[1u << 14];
    u32 n = read_all(UINT64_MAX, got, 1u << 14, NULL, 0);
    ck_assert_uint_eq(n, 3500);
    assert_has_live(&sm, got, n, UINT64_MAX);
    char path[128];
    snprintf(path, sizeof(path), DIR "/ops-%020llu.log", 1700ULL);
    ck_assert(io_fault_exists(fs, path));
    sm_destroy(&sm);
}
END_TEST

START_TEST(test_bit_flips)
{
    sm_t sm;
    make_sm(&sm, 4096, 1000000);
    struct oplog w;
    char why[256];
    ck_assert_int_eq(oplog_open(&w, io, DIR, &sm, 0, why, sizeof(why)), 0);
    for (int i = 0; i < 300; i++) {
        apply_one(&sm, 100);
        if (i % 40 == 39) /* several blocks */
            ck_assert_int_eq(oplog_flush(&w, &sm, why, sizeof(why)), 0);
    }
    ck_assert_int_eq(oplog_flush(&w, &sm, why, sizeof(why)), 0);
    u64 size = w.offset;
    oplog_close(&w);
    const char *path = DIR "/ops-00000000000000000000.log";
    static struct sm_operation got[4096];
    u64 rng = 9;
    for (u64 k = 0; k < 2000; k++) {
        u64 byte = k < 200 ? k : splitmix_next(&rng) % size; /* every header bit, then sampled */
        unsigned bit = (unsigned)(splitmix_next(&rng) % 8);
        ck_assert_int_eq(io_fault_flip_bit(fs, path, byte, bit), 0);
        char damage[256];
        u32 n = read_all(UINT64_MAX, got, 4096, damage, sizeof(damage));
        ck_assert_msg(n < 300 && damage[0] != '\0', "a flipped bit at %llu went unnoticed (%u records)",
                      (unsigned long long)byte, n);
        /* What it gives is an intact prefix. */
        for (u32 i = 0; i < n; i++)
            ck_assert(memcmp(&got[i], sm_operation_at(&sm, i), sizeof(got[i])) == 0);
        ck_assert_int_eq(io_fault_flip_bit(fs, path, byte, bit), 0);
    }
    ck_assert_uint_eq(read_all(UINT64_MAX, got, 4096, NULL, 0), 300);
    sm_destroy(&sm);
}
END_TEST

START_TEST(test_prune)
{
    static const u64 starts[] = { 0, 100, 200, 300 };
    for (size_t i = 0; i < ADB_ARRAY_LEN(starts); i++) {
        char name[128];
        snprintf(name, sizeof(name), DIR "/ops-%020llu.log", (unsigned long long)starts[i]);
        int fd;
        ck_assert_int_eq(io->ops->open(io, name, IO_WRITE | IO_CREATE | IO_EXCL, &fd), 0);
        io->ops->close(io, fd);
    }
    u32 removed;
    char why[256];
    /* Records from 200 on are needed: segment 100 may hold 101..200, so only 0 goes. */
    ck_assert_int_eq(oplog_prune(io, DIR, 200, &removed, why, sizeof(why)), 0);
    ck_assert_uint_eq(removed, 1);
    ck_assert(!io_fault_exists(fs, DIR "/ops-00000000000000000000.log"));
    ck_assert(io_fault_exists(fs, DIR "/ops-00000000000000000100.log"));
    /* Far ahead: everything but the newest. */
    ck_assert_int_eq(oplog_prune(io, DIR, 100000, &removed, why, sizeof(why)), 0);
    ck_assert_uint_eq(removed, 2);
    ck_assert(io_fault_exists(fs, DIR "/ops-00000000000000000300.log"));
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("oplog");
    TCase *tc = tcase_create("oplog");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, TEST_LONG_TIMEOUT);
    tcase_add_test(tc, test_roundtrip);
    tcase_add_test(tc, test_late_export);
    tcase_add_test(tc, test_restart);
    tcase_add_test(tc, test_bit_flips);
    tcase_add_test(tc, test_prune);
    suite_add_tcase(s, tc);
    return s;
}
