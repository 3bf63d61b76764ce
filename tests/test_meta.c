/*
 * tests/test_meta.c — replica metadata in LMDB: format, open, read, the invariants of every
 * write, read-only handles, and stored records damaged behind the module's back (written with
 * the LMDB API directly), which must be refused with -EUCLEAN and a reason naming the field.
 *
 * Every test works in a fresh mkdtemp data dir, removed by the teardown. Check runs each test
 * in its own process, so each opens its own environment (LMDB's rule: never across fork).
 */
#include "config.h"

#include "replica/meta.h"
#include "tests/check_main.h"

#include <lmdb.h>

#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char data_dir[256];
static char meta_path[300];

/* One root per test program (an unchecked fixture, run by the parent process, so it is removed
 * even when a test fails and its process exits early) and a fresh directory per test in it. */
static char root[200];

static void root_setup(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(root, sizeof(root), "%s/adb-meta-XXXXXX", base != NULL && base[0] != '\0' ? base : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(root));
}

static void setup(void)
{
    snprintf(data_dir, sizeof(data_dir), "%s/test-XXXXXX", root);
    ck_assert_ptr_nonnull(mkdtemp(data_dir));
    snprintf(meta_path, sizeof(meta_path), "%s/meta", data_dir);
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void teardown(void)
{
    nftw(data_dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void root_teardown(void)
{
    nftw(root, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

static const u128 CLUSTER = U128_MAKE(0x0123456789abcdefull, 0xfedcba9876543210ull);

static bool clock_eq(const struct meta_clock *a, const struct meta_clock *b)
{
    return a->logical_ms == b->logical_ms && a->wall_ms == b->wall_ms && a->boot_ms == b->boot_ms &&
           a->boot_id == b->boot_id;
}

static bool rec_eq(const struct meta_record *a, const struct meta_record *b)
{
    return a->format_version == b->format_version && a->cluster_id == b->cluster_id &&
           a->replica_id == b->replica_id && a->replica_count == b->replica_count && a->view == b->view &&
           a->last_normal_view == b->last_normal_view && a->voted_view == b->voted_view &&
           a->voted_for == b->voted_for && a->commit_lsn == b->commit_lsn && a->snapshot_lsn == b->snapshot_lsn &&
           a->status == b->status && memcmp(&a->pins, &b->pins, sizeof(a->pins)) == 0 &&
           clock_eq(&a->clock, &b->clock) && memcmp(&a->base, &b->base, sizeof(a->base)) == 0 &&
           memcmp(&a->installing, &b->installing, sizeof(a->installing)) == 0;
}

static struct meta *format_and_open(u64 replica_id, u64 replica_count)
{
    char why[512] = "";
    ck_assert_msg(meta_format(data_dir, CLUSTER, replica_id, replica_count, META_STATUS_NORMAL, NULL, why, sizeof(why)) == 0, "%s", why);
    struct meta *m = NULL;
    ck_assert_msg(meta_open(data_dir, false, &m, why, sizeof(why)) == 0, "%s", why);
    ck_assert_ptr_nonnull(m);
    return m;
}

static struct meta_record read_rec(struct meta *m)
{
    struct meta_record r;
    char why[512] = "";
    ck_assert_msg(meta_read(m, &r, why, sizeof(why)) == 0, "%s", why);
    return r;
}

/* ---- format, exists, open --------------------------------------------------------------- */

START_TEST(test_format_then_read)
{
    ck_assert(!meta_exists(data_dir));
    struct meta *m = format_and_open(1, 3);
    ck_assert(meta_exists(data_dir));
    struct meta_record r = read_rec(m);
    ck_assert_uint_eq(r.format_version, 3);
    ck_assert(r.cluster_id == CLUSTER);
    ck_assert_uint_eq(r.replica_id, 1);
    ck_assert_uint_eq(r.replica_count, 3);
    ck_assert_uint_eq(r.view, 0);
    ck_assert_uint_eq(r.last_normal_view, 0);
    ck_assert_uint_eq(r.voted_view, 0);
    ck_assert_uint_eq(r.voted_for, 0);
    ck_assert_uint_eq(r.commit_lsn, 0);
    ck_assert_uint_eq(r.snapshot_lsn, 0);
    ck_assert_uint_eq(r.status, META_STATUS_NORMAL);
    meta_close(m);

    struct stat st;
    ck_assert_int_eq(stat(meta_path, &st), 0);
    ck_assert(S_ISDIR(st.st_mode));
    ck_assert_uint_eq(st.st_mode & 0777, 0700);
    char p[400];
    snprintf(p, sizeof(p), "%s/data.mdb", meta_path);
    ck_assert_int_eq(stat(p, &st), 0);
    ck_assert_uint_eq(st.st_mode & 0077, 0);
    snprintf(p, sizeof(p), "%s/meta.tmp", data_dir);
    ck_assert_int_eq(stat(p, &st), -1); /* the staging dir is gone */

    ck_assert_str_eq(meta_status_name(META_STATUS_NORMAL), "normal");
    ck_assert_str_eq(meta_status_name(META_STATUS_RECOVERING), "recovering");
    ck_assert_str_eq(meta_status_name(META_STATUS_FAULTED), "faulted");
    ck_assert_str_eq(meta_status_name((enum meta_status)9), "unknown");
}
END_TEST

START_TEST(test_format_refusals)
{
    char why[512] = "";
    ck_assert_int_eq(meta_format(data_dir, CLUSTER, 0, 1, META_STATUS_NORMAL, NULL, why, sizeof(why)), 0);
    ck_assert_int_eq(meta_format(data_dir, CLUSTER, 0, 1, META_STATUS_NORMAL, NULL, why, sizeof(why)), -EEXIST);
    ck_assert_ptr_nonnull(strstr(why, meta_path));
    ck_assert_ptr_nonnull(strstr(why, "already exists"));

    /* Bad identity, missing or non-directory data dirs. */
    char other[400];
    snprintf(other, sizeof(other), "%s/sub", data_dir);
    ck_assert_int_eq(mkdir(other, 0700), 0);
    ck_assert_int_eq(meta_format(other, CLUSTER, 3, 3, META_STATUS_NORMAL, NULL, why, sizeof(why)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(why, "replica_id 3 is not below replica_count 3"));
    ck_assert_int_eq(meta_format(other, CLUSTER, 0, 0, META_STATUS_NORMAL, NULL, why, sizeof(why)), -EINVAL);
    ck_assert(!meta_exists(other));
    /* A lost disk formatted again: recovering from its first record on. */
    char lost[400];
    snprintf(lost, sizeof(lost), "%s/lost", data_dir);
    ck_assert_int_eq(mkdir(lost, 0700), 0);
    ck_assert_int_eq(meta_format(lost, CLUSTER, 2, 3, META_STATUS_RECOVERING, NULL, why, sizeof(why)), 0);
    struct meta *rm;
    ck_assert_int_eq(meta_open(lost, true, &rm, why, sizeof(why)), 0);
    struct meta_record rec;
    ck_assert_int_eq(meta_read(rm, &rec, why, sizeof(why)), 0);
    ck_assert_uint_eq(rec.status, META_STATUS_RECOVERING);
    ck_assert_uint_eq(rec.replica_id, 2);
    ck_assert_uint_eq(rec.replica_count, 3);
    meta_close(rm);
    snprintf(other, sizeof(other), "%s/missing", data_dir);
    ck_assert_int_eq(meta_format(other, CLUSTER, 0, 1, META_STATUS_NORMAL, NULL, why, sizeof(why)), -ENOENT);
    ck_assert_ptr_nonnull(strstr(why, other));
    snprintf(other, sizeof(other), "%s/meta/data.mdb", data_dir); /* a file */
    ck_assert_int_eq(meta_format(other, CLUSTER, 0, 1, META_STATUS_NORMAL, NULL, why, sizeof(why)), -ENOTDIR);

    /* Opening a data dir that was never formatted. */
    snprintf(other, sizeof(other), "%s/sub", data_dir);
    struct meta *m = (struct meta *)1;
    ck_assert_int_eq(meta_open(other, false, &m, why, sizeof(why)), -ENOENT);
    ck_assert_ptr_null(m);
    ck_assert_ptr_nonnull(strstr(why, "not formatted"));
    ck_assert_int_eq(meta_open(other, true, &m, why, sizeof(why)), -ENOENT);
    ck_assert(!meta_exists(other));

    /* An empty meta/ (made by hand) is damage, and opening it creates nothing. */
    char empty[500], p[600];
    snprintf(empty, sizeof(empty), "%s/meta", other);
    ck_assert_int_eq(mkdir(empty, 0700), 0);
    ck_assert(meta_exists(other));
    ck_assert_int_eq(meta_open(other, false, &m, why, sizeof(why)), -EUCLEAN);
    ck_assert_ptr_nonnull(strstr(why, "data.mdb is missing"));
    snprintf(p, sizeof(p), "%s/data.mdb", empty);
    struct stat st;
    ck_assert_int_eq(stat(p, &st), -1);
}
END_TEST

START_TEST(test_interrupted_format_is_redone)
{
    /* A crash during format leaves meta.tmp/ and no meta/: still unformatted, and the next
     * format removes the leftovers. */
    char tmp[400], p[500];
    snprintf(tmp, sizeof(tmp), "%s/meta.tmp", data_dir);
    ck_assert_int_eq(mkdir(tmp, 0700), 0);
    snprintf(p, sizeof(p), "%s/data.mdb", tmp);
    FILE *f = fopen(p, "w");
    ck_assert_ptr_nonnull(f);
    fputs("half written", f);
    fclose(f);
    ck_assert(!meta_exists(data_dir));
    struct meta *m = format_and_open(0, 1);
    ck_assert_uint_eq(read_rec(m).replica_count, 1);
    meta_close(m);

    /* Anything else in meta.tmp/ is not ours to delete. */
    char sub[300];
    snprintf(sub, sizeof(sub), "%s/sub", data_dir);
    ck_assert_int_eq(mkdir(sub, 0700), 0);
    snprintf(tmp, sizeof(tmp), "%s/meta.tmp", sub);
    ck_assert_int_eq(mkdir(tmp, 0700), 0);
    snprintf(p, sizeof(p), "%s/notes.txt", tmp);
    f = fopen(p, "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    char why[512] = "";
    ck_assert_int_eq(meta_format(sub, CLUSTER, 0, 1, META_STATUS_NORMAL, NULL, why, sizeof(why)), -ENOTEMPTY);
    ck_assert_ptr_nonnull(strstr(why, tmp));
    ck_assert(!meta_exists(sub));
}
END_TEST

/* ---- invariants on write ---------------------------------------------------------------- */

/* A record in the middle of its life: view 5, normal in view 3, voted for 2 in view 4. */
static struct meta_record base_record(void)
{
    return (struct meta_record){
        .format_version = 3, .cluster_id = CLUSTER, .replica_id = 1, .replica_count = 3,
        .view = 5, .last_normal_view = 3, .voted_view = 4, .voted_for = 2,
        .commit_lsn = 100, .snapshot_lsn = 50, .status = META_STATUS_NORMAL,
        .base = { .lsn = 40, .view = 2, .request_slot = 400, .crc = 0xB45E, .prev_crc = 0xB45D },
    };
}

enum violation {
    V_CLUSTER_ID, V_REPLICA_ID, V_REPLICA_COUNT, V_REPLICA_ID_RANGE, V_VIEW_BACK, V_LNV_BACK, V_LNV_ABOVE_VIEW,
    V_VOTED_ABOVE_VIEW, V_VOTED_BACK, V_SECOND_VOTE, V_VOTED_FOR_RANGE, V_COMMIT_BACK, V_SNAPSHOT_BACK,
    V_SNAPSHOT_ABOVE_COMMIT, V_STATUS, V_FORMAT_VERSION, V_BASE_BACK, V_BASE_ABOVE_COMMIT, V_INSTALLING_BELOW_BASE,
    V_COUNT
};

static const char *violate(enum violation v, struct meta_record *r)
{
    switch (v) {
    case V_CLUSTER_ID: r->cluster_id ^= 1; return "cluster_id: never changes";
    case V_REPLICA_ID: r->replica_id = 0; return "replica_id: never changes after format (1 -> 0)";
    case V_REPLICA_COUNT: r->replica_count = 5; return "replica_count: never changes after format (3 -> 5)";
    case V_REPLICA_ID_RANGE: r->replica_id = 3; return "replica_id: 3 is not below replica_count 3";
    case V_VIEW_BACK: r->view = 4; return "view: only grows (5 -> 4)";
    case V_LNV_BACK: r->last_normal_view = 2; return "last_normal_view: only grows (3 -> 2)";
    case V_LNV_ABOVE_VIEW: r->last_normal_view = 6; return "last_normal_view: 6 is above view 5";
    case V_VOTED_ABOVE_VIEW: r->voted_view = 6; return "voted_view: 6 is above view 5";
    case V_VOTED_BACK: r->voted_view = 3; return "voted_view: only grows (4 -> 3)";
    case V_SECOND_VOTE: r->voted_for = 0; return "voted_for: already voted for 2 in view 4, not 0";
    case V_VOTED_FOR_RANGE: r->voted_view = 5, r->voted_for = 3; return "voted_for: 3 is not below replica_count 3";
    case V_COMMIT_BACK: r->commit_lsn = 99; return "commit_lsn: only grows (100 -> 99)";
    case V_SNAPSHOT_BACK: r->snapshot_lsn = 49; return "snapshot_lsn: only grows (50 -> 49)";
    case V_SNAPSHOT_ABOVE_COMMIT: r->snapshot_lsn = 101; return "snapshot_lsn: 101 is above commit_lsn 100";
    case V_STATUS: r->status = 7; return "status: 7 is not a status";
    case V_FORMAT_VERSION: r->format_version = 4; return "format_version: 4";
    case V_BASE_BACK: r->base.lsn = 39; return "base.lsn: only grows (40 -> 39)";
    case V_BASE_ABOVE_COMMIT: r->base.lsn = 101; return "base.lsn: 101 is above commit_lsn 100";
    case V_INSTALLING_BELOW_BASE: r->installing.lsn = 40; return "installing.lsn: 40 is not above base.lsn 40";
    case V_COUNT: break;
    }
    ck_abort();
    return NULL;
}

START_TEST(test_invariant_violation_rejected)
{
    struct meta *m = format_and_open(1, 3);
    struct meta_record base = base_record();
    char why[512] = "";
    ck_assert_msg(meta_write(m, &base, why, sizeof(why)) == 0, "%s", why);
    struct meta_record stored = read_rec(m);
    ck_assert(rec_eq(&stored, &base));

    struct meta_record bad = base;
    const char *reason = violate((enum violation)_i, &bad);
    ck_assert_int_eq(meta_write(m, &bad, why, sizeof(why)), -EINVAL);
    char expect[600];
    snprintf(expect, sizeof(expect), "%s: %s", meta_path, reason);
    ck_assert_msg(strncmp(why, expect, strlen(expect)) == 0, "got '%s', want '%s...'", why, expect);
    struct meta_record after = read_rec(m);
    ck_assert(rec_eq(&after, &base));
    meta_close(m);

    /* And still unchanged on disk, through a fresh open. */
    ck_assert_int_eq(meta_open(data_dir, true, &m, why, sizeof(why)), 0);
    after = read_rec(m);
    ck_assert(rec_eq(&after, &base));
    meta_close(m);
}
END_TEST

START_TEST(test_valid_transitions)
{
    struct meta *m = format_and_open(1, 3);
    struct meta_record r = base_record();
    char why[512] = "";
    ck_assert_msg(meta_write(m, &r, why, sizeof(why)) == 0, "%s", why);
    /* Same record again: nothing changes, still fine. */
    ck_assert_int_eq(meta_write(m, &r, why, sizeof(why)), 0);
    /* A vote in a new view, the view entered, a new normal view, more committed. */
    r.voted_view = 6, r.voted_for = 0;
    ck_assert_msg(meta_write(m, &r, why, sizeof(why)) != 0, "voted above view was accepted");
    r.view = 6;
    ck_assert_msg(meta_write(m, &r, why, sizeof(why)) == 0, "%s", why);
    r.last_normal_view = 6, r.commit_lsn = 150, r.snapshot_lsn = 150, r.status = META_STATUS_RECOVERING;
    ck_assert_msg(meta_write(m, &r, why, sizeof(why)) == 0, "%s", why);
    struct meta_record got = read_rec(m);
    ck_assert(rec_eq(&got, &r));
    meta_close(m);
}
END_TEST

START_TEST(test_commit_snapshot_status)
{
    struct meta *m = format_and_open(0, 1);
    char why[512] = "";
    ck_assert_int_eq(meta_advance_commit(m, 10, why, sizeof(why)), 0);
    ck_assert_uint_eq(read_rec(m).commit_lsn, 10);
    ck_assert_int_eq(meta_advance_commit(m, 10, why, sizeof(why)), 0); /* same: fine */
    ck_assert_int_eq(meta_advance_commit(m, 5, why, sizeof(why)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(why, "commit_lsn: only grows (10 -> 5)"));
    ck_assert_uint_eq(read_rec(m).commit_lsn, 10);

    ck_assert_int_eq(meta_set_snapshot(m, 8, why, sizeof(why)), 0);
    ck_assert_int_eq(meta_set_snapshot(m, 10, why, sizeof(why)), 0);
    ck_assert_uint_eq(read_rec(m).snapshot_lsn, 10);
    ck_assert_int_eq(meta_set_snapshot(m, 11, why, sizeof(why)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(why, "snapshot_lsn: 11 is above commit_lsn 10"));
    ck_assert_int_eq(meta_set_snapshot(m, 0, why, sizeof(why)), -EINVAL);
    ck_assert_uint_eq(read_rec(m).snapshot_lsn, 10);

    /* Normal <-> recovering freely; faulted only leaves by force. */
    ck_assert_int_eq(meta_set_status(m, META_STATUS_RECOVERING, false, why, sizeof(why)), 0);
    ck_assert_uint_eq(read_rec(m).status, META_STATUS_RECOVERING);
    ck_assert_int_eq(meta_set_status(m, META_STATUS_NORMAL, false, why, sizeof(why)), 0);
    ck_assert_int_eq(meta_set_status(m, META_STATUS_FAULTED, false, why, sizeof(why)), 0);
    ck_assert_uint_eq(read_rec(m).status, META_STATUS_FAULTED);
    ck_assert_int_eq(meta_set_status(m, META_STATUS_NORMAL, false, why, sizeof(why)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(why, "status: faulted is cleared only by an operator"));
    ck_assert_int_eq(meta_set_status(m, META_STATUS_RECOVERING, false, why, sizeof(why)), -EINVAL);
    ck_assert_uint_eq(read_rec(m).status, META_STATUS_FAULTED);

    /* Faulted: no vote, but the commit point may still be recorded. */
    struct meta_record r = read_rec(m);
    r.view = 1, r.voted_view = 1;
    ck_assert_int_eq(meta_write(m, &r, why, sizeof(why)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(why, "a faulted replica does not vote"));
    ck_assert_int_eq(meta_advance_commit(m, 20, why, sizeof(why)), 0);
    ck_assert_int_eq(meta_set_status(m, META_STATUS_FAULTED, false, why, sizeof(why)), 0); /* stays */

    /* The operator's repair. */
    ck_assert_int_eq(meta_set_status(m, META_STATUS_NORMAL, true, why, sizeof(why)), 0);
    r = read_rec(m);
    ck_assert_uint_eq(r.status, META_STATUS_NORMAL);
    ck_assert_uint_eq(r.commit_lsn, 20);
    r.view = 1, r.voted_view = 1;
    ck_assert_msg(meta_write(m, &r, why, sizeof(why)) == 0, "%s", why);
    meta_close(m);
}
END_TEST

START_TEST(test_reopen_sees_values)
{
    struct meta *m = format_and_open(2, 5);
    struct meta_record r = read_rec(m);
    r.view = 9, r.last_normal_view = 7, r.voted_view = 9, r.voted_for = 4;
    r.commit_lsn = UINT64_MAX - 1, r.snapshot_lsn = 1ull << 40, r.status = META_STATUS_RECOVERING;
    char why[512] = "";
    ck_assert_msg(meta_write(m, &r, why, sizeof(why)) == 0, "%s", why);
    meta_close(m);

    for (int ro = 0; ro < 2; ro++) {
        ck_assert_msg(meta_open(data_dir, ro, &m, why, sizeof(why)) == 0, "%s", why);
        struct meta_record got = read_rec(m);
        ck_assert(rec_eq(&got, &r));
        ck_assert(got.cluster_id == CLUSTER); /* both halves of the u128 */
        meta_close(m);
    }
    meta_close(NULL);
}
END_TEST

START_TEST(test_read_only_refuses_writes)
{
    struct meta *m = format_and_open(0, 3);
    char why[512] = "";
    ck_assert_int_eq(meta_advance_commit(m, 4, why, sizeof(why)), 0);
    meta_close(m);

    ck_assert_int_eq(meta_open(data_dir, true, &m, why, sizeof(why)), 0);
    struct meta_record r = read_rec(m);
    struct meta_record next = r;
    next.commit_lsn = 5;
    ck_assert_int_eq(meta_write(m, &next, why, sizeof(why)), -EROFS);
    ck_assert_ptr_nonnull(strstr(why, meta_path));
    ck_assert_int_eq(meta_advance_commit(m, 5, why, sizeof(why)), -EROFS);
    ck_assert_int_eq(meta_set_snapshot(m, 4, why, sizeof(why)), -EROFS);
    ck_assert_int_eq(meta_set_status(m, META_STATUS_FAULTED, false, why, sizeof(why)), -EROFS);
    struct meta_record got = read_rec(m);
    ck_assert(rec_eq(&got, &r));
    meta_close(m);
}
END_TEST

START_TEST(test_handle_does_not_cross_fork)
{
    struct meta *m = format_and_open(0, 1);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        struct meta_record r;
        meta_read(m, &r, NULL, 0); /* must abort before touching LMDB */
        _exit(0);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
    ck_assert_uint_eq(read_rec(m).format_version, 3); /* the opener's handle still works */
    meta_close(m);
}
END_TEST

/* ---- damage behind the module's back ---------------------------------------------------- */

/* Puts (or, with val NULL, deletes) one key directly with the LMDB API; no meta handle open. */
static void lmdb_poke(const char *key, const void *val, size_t len)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    ck_assert_int_eq(mdb_env_create(&env), 0);
    ck_assert_int_eq(mdb_env_open(env, meta_path, 0, 0600), 0);
    ck_assert_int_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
    ck_assert_int_eq(mdb_dbi_open(txn, NULL, 0, &dbi), 0);
    MDB_val k = { .mv_size = strlen(key), .mv_data = (void *)key };
    MDB_val v = { .mv_size = len, .mv_data = (void *)val };
    ck_assert_int_eq(val != NULL ? mdb_put(txn, dbi, &k, &v, 0) : mdb_del(txn, dbi, &k, NULL), 0);
    ck_assert_int_eq(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

static void poke_u64(const char *key, u64 v)
{
    u8 b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (u8)(v >> (8 * i));
    lmdb_poke(key, b, sizeof(b));
}

START_TEST(test_damaged_record_is_unclean)
{
    char why[512] = "";
    ck_assert_int_eq(meta_format(data_dir, CLUSTER, 1, 3, META_STATUS_NORMAL, NULL, why, sizeof(why)), 0);
    const char *want;
    switch (_i) {
    case 0: {
        u32 short_view = 7;
        lmdb_poke("view", &short_view, sizeof(short_view));
        want = "view: stored value is 4 bytes, expected 8";
        break;
    }
    case 1: {
        u8 wide[2] = { 0, 0 };
        lmdb_poke("status", wide, sizeof(wide));
        want = "status: stored value is 2 bytes, expected 1";
        break;
    }
    case 2:
        lmdb_poke("commit_lsn", "", 0);
        want = "commit_lsn: stored value is 0 bytes, expected 8";
        break;
    case 3:
        lmdb_poke("voted_for", NULL, 0);
        want = "voted_for: missing";
        break;
    case 4:
        lmdb_poke("leader_lease", "x", 1);
        want = "unknown key 'leader_lease'";
        break;
    case 5:
        poke_u64("last_normal_view", 1); /* right size, but above view 0 */
        want = "last_normal_view: 1 is above view 0";
        break;
    case 6: {
        u8 v4[4] = { 4, 0, 0, 0 };
        lmdb_poke("format_version", v4, sizeof(v4));
        want = "format_version: 4 (this build reads 1 to 3)";
        break;
    }
    case 7:
        poke_u64("replica_id", 3);
        want = "replica_id: 3 is not below replica_count 3";
        break;
    default:
        ck_abort();
        return;
    }
    char expect[600];
    snprintf(expect, sizeof(expect), "%s: %s", meta_path, want);
    for (int ro = 0; ro < 2; ro++) {
        struct meta *m = (struct meta *)1;
        ck_assert_int_eq(meta_open(data_dir, ro, &m, why, sizeof(why)), -EUCLEAN);
        ck_assert_ptr_null(m);
        ck_assert_str_eq(why, expect);
    }
}
END_TEST

START_TEST(test_damage_under_an_open_handle)
{
    /* Writes re-read the stored record inside their transaction, so damage done by another
     * process after the open is caught by the next read or write, not written over. */
    struct meta *m = format_and_open(0, 1);
    struct meta_record r = read_rec(m);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        /* A process of its own opens its own environment (never the parent's handle). */
        poke_u64("snapshot_lsn", 5); /* above commit 0 */
        _exit(0);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    char why[512] = "";
    struct meta_record got;
    ck_assert_int_eq(meta_read(m, &got, why, sizeof(why)), -EUCLEAN);
    ck_assert_ptr_nonnull(strstr(why, "snapshot_lsn: 5 is above commit_lsn 0"));
    r.commit_lsn = 10;
    ck_assert_int_eq(meta_write(m, &r, why, sizeof(why)), -EUCLEAN);
    ck_assert_int_eq(meta_advance_commit(m, 10, why, sizeof(why)), -EUCLEAN);
    meta_close(m);
    ck_assert_int_eq(meta_open(data_dir, false, &m, why, sizeof(why)), -EUCLEAN);
}
END_TEST

/* ---- pins and the clock anchor (format 2) ------------------------------------------------ */

static const struct meta_pins PINS = { .slot_duration_ms = 1000, .resource_capacity = 64, .reservation_capacity = 128,
                                       .operation_capacity = 256, .expiration_capacity = 128, .max_ttl_ms = 3600000,
                                       .dedupe_window_ms = 60000, .history_window_ms = 60000,
                                       .wal_segment_bytes = 1 << 20 };

START_TEST(test_pins_stored_at_format_never_change)
{
    char why[512] = "";
    ck_assert_int_eq(meta_format(data_dir, CLUSTER, 0, 1, META_STATUS_NORMAL, &PINS, why, sizeof(why)), 0);
    struct meta *m;
    ck_assert_msg(meta_open(data_dir, false, &m, why, sizeof(why)) == 0, "%s", why);
    struct meta_record r = read_rec(m);
    ck_assert(memcmp(&r.pins, &PINS, sizeof(PINS)) == 0);
    struct meta_pins other = PINS;
    other.operation_capacity = 512;
    ck_assert_int_eq(meta_set_pins(m, &other, why, sizeof(why)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(why, "pins: the pinned settings never change"));
    r.pins.slot_duration_ms = 10;
    ck_assert_int_eq(meta_write(m, &r, why, sizeof(why)), -EINVAL);
    ck_assert_int_eq(meta_set_pins(m, &PINS, why, sizeof(why)), 0); /* the same values: no change */
    r = read_rec(m);
    ck_assert(memcmp(&r.pins, &PINS, sizeof(PINS)) == 0);
    meta_close(m);
}
END_TEST

START_TEST(test_format1_record_read_and_upgraded)
{
    /* A data dir formatted before pins existed: format_version 1 and none of the new keys. */
    char why[512] = "";
    ck_assert_int_eq(meta_format(data_dir, CLUSTER, 0, 1, META_STATUS_NORMAL, NULL, why, sizeof(why)), 0);
    static const char *const added[] = { "pins.slot_duration_ms", "pins.resource_capacity",
        "pins.reservation_capacity", "pins.operation_capacity", "pins.expiration_capacity", "pins.max_ttl_ms",
        "pins.dedupe_window_ms", "pins.history_window_ms", "pins.wal_segment_bytes", "clock.logical_ms",
        "clock.wall_ms", "clock.boot_ms", "clock.boot_id", "base.lsn", "base.view", "base.request_slot", "base.crc",
        "base.prev_crc", "installing.lsn", "installing.view", "installing.request_slot", "installing.crc",
        "installing.prev_crc" };
    for (size_t i = 0; i < sizeof(added) / sizeof(added[0]); i++)
        lmdb_poke(added[i], NULL, 0);
    u8 v1[4] = { 1, 0, 0, 0 };
    lmdb_poke("format_version", v1, sizeof(v1));
    struct meta *m;
    ck_assert_msg(meta_open(data_dir, false, &m, why, sizeof(why)) == 0, "%s", why);
    struct meta_record r = read_rec(m);
    ck_assert_uint_eq(r.format_version, 1);
    ck_assert(!meta_pins_set(&r.pins));
    ck_assert_msg(meta_set_pins(m, &PINS, why, sizeof(why)) == 0, "%s", why);
    r = read_rec(m);
    ck_assert_uint_eq(r.format_version, 3);
    ck_assert_uint_eq(r.base.lsn, 0);
    ck_assert(memcmp(&r.pins, &PINS, sizeof(PINS)) == 0);
    meta_close(m);
    /* A format-1 record that holds a format-2 key is damage. */
    lmdb_poke("format_version", v1, sizeof(v1));
    ck_assert_int_eq(meta_open(data_dir, false, &m, why, sizeof(why)), -EUCLEAN);
}
END_TEST

/* State transfer: begin, done (base, commit point at least there), forget; crash-safe order. */
START_TEST(test_install_steps)
{
    struct meta *m = format_and_open(1, 3);
    char why[512] = "";
    ck_assert_msg(meta_advance_commit(m, 30, why, sizeof(why)) == 0, "%s", why);
    ck_assert_int_eq(meta_install_done(m, why, sizeof(why)), -EINVAL); /* none under way */
    ck_assert_ptr_nonnull(strstr(why, "no install under way"));
    const struct meta_entry at = { .lsn = 70, .view = 4, .request_slot = 700, .crc = 0xC0FFEE, .prev_crc = 0xBEEF };
    ck_assert_msg(meta_install_begin(m, &at, why, sizeof(why)) == 0, "%s", why);
    struct meta_record r = read_rec(m);
    ck_assert(memcmp(&r.installing, &at, sizeof(at)) == 0);
    ck_assert_uint_eq(r.base.lsn, 0);
    ck_assert_uint_eq(r.commit_lsn, 30);
    /* Forgotten (its snapshot never became durable), then begun again and finished. */
    ck_assert_msg(meta_install_forget(m, why, sizeof(why)) == 0, "%s", why);
    ck_assert_uint_eq(read_rec(m).installing.lsn, 0);
    ck_assert_msg(meta_install_begin(m, &at, why, sizeof(why)) == 0, "%s", why);
    ck_assert_msg(meta_install_done(m, why, sizeof(why)) == 0, "%s", why);
    meta_close(m);
    ck_assert_int_eq(meta_open(data_dir, true, &m, why, sizeof(why)), 0);
    r = read_rec(m); /* durable */
    ck_assert(memcmp(&r.base, &at, sizeof(at)) == 0);
    ck_assert_uint_eq(r.installing.lsn, 0);
    ck_assert_uint_eq(r.commit_lsn, 70); /* the image holds committed entries up to it */
    meta_close(m);
    /* An image at or below the base is no install. */
    ck_assert_int_eq(meta_open(data_dir, false, &m, why, sizeof(why)), 0);
    struct meta_entry old = at;
    old.lsn = 70;
    ck_assert_int_eq(meta_install_begin(m, &old, why, sizeof(why)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(why, "installing.lsn: 70 is not above base.lsn 70"));
    /* A later one finishes below the commit point: the commit point stays. */
    ck_assert_msg(meta_advance_commit(m, 200, why, sizeof(why)) == 0, "%s", why);
    old.lsn = 150;
    ck_assert_msg(meta_install_begin(m, &old, why, sizeof(why)) == 0, "%s", why);
    ck_assert_msg(meta_install_done(m, why, sizeof(why)) == 0, "%s", why);
    r = read_rec(m);
    ck_assert_uint_eq(r.base.lsn, 150);
    ck_assert_uint_eq(r.commit_lsn, 200);
    meta_close(m);
}
END_TEST

START_TEST(test_advance_commit_and_clock)
{
    struct meta *m = format_and_open(0, 1);
    char why[512] = "";
    struct meta_clock c = { .logical_ms = 5000, .wall_ms = 1700000000000ull, .boot_ms = 12345,
                            .boot_id = U128_MAKE(7, 9) };
    ck_assert_msg(meta_advance(m, 10, &c, why, sizeof(why)) == 0, "%s", why);
    struct meta_record r = read_rec(m);
    ck_assert_uint_eq(r.commit_lsn, 10);
    ck_assert(clock_eq(&r.clock, &c));
    meta_close(m);
    ck_assert_int_eq(meta_open(data_dir, true, &m, why, sizeof(why)), 0);
    r = read_rec(m);
    ck_assert(clock_eq(&r.clock, &c)); /* durable, not cached */
    meta_close(m);
    ck_assert_int_eq(meta_open(data_dir, false, &m, why, sizeof(why)), 0);
    struct meta_clock back = c;
    back.logical_ms = 4999;
    ck_assert_int_eq(meta_advance(m, 11, &back, why, sizeof(why)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(why, "clock.logical_ms: only grows (5000 -> 4999)"));
    ck_assert_uint_eq(read_rec(m).commit_lsn, 10); /* nothing of the refused write landed */
    meta_close(m);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("meta");
    TCase *tc = tcase_create("meta");
    tcase_add_unchecked_fixture(tc, root_setup, root_teardown);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_format_then_read);
    tcase_add_test(tc, test_format_refusals);
    tcase_add_test(tc, test_interrupted_format_is_redone);
    tcase_add_loop_test(tc, test_invariant_violation_rejected, 0, V_COUNT);
    tcase_add_test(tc, test_valid_transitions);
    tcase_add_test(tc, test_commit_snapshot_status);
    tcase_add_test(tc, test_reopen_sees_values);
    tcase_add_test(tc, test_read_only_refuses_writes);
    tcase_add_test(tc, test_handle_does_not_cross_fork);
    tcase_add_loop_test(tc, test_damaged_record_is_unclean, 0, 8);
    tcase_add_test(tc, test_damage_under_an_open_handle);
    tcase_add_test(tc, test_pins_stored_at_format_never_change);
    tcase_add_test(tc, test_format1_record_read_and_upgraded);
    tcase_add_test(tc, test_advance_commit_and_clock);
    tcase_add_test(tc, test_install_steps);
    suite_add_tcase(s, tc);
    return s;
}
