/*
 * tests/test_replication.c — the peer worker's loop (net/replication.h): three replicas, each a
 * core and a transport on one event base over 127.0.0.1, with in-memory WALs whose fsyncs
 * complete on the next turn of the loop. Real sockets, real timers, the real clock:
 *   - a fresh cluster elects no one (view 0's primary serves at once), and entries sequenced
 *     on the primary commit on all three, byte for byte the same;
 *   - a primary cut off from both others (the transport's block hook, both ways) is replaced:
 *     the other two start a later view within a few primary timeouts, and commit new entries
 *     while the old primary commits nothing more;
 *   - healed, the old primary follows the new view as a backup and catches up;
 *   - a backup whose loop stops, started again from its WAL and metadata, catches up.
 */
#include "config.h"

#include "net/replication.h"
#include "tests/check_main.h"
#include "tests/loopback.h"
#include "wal/command.h"
#include "wal/frame.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define N 3
#define CLUSTER ((u128)0xC1A55)
#define CAP 512 /* entries a test WAL holds */

struct node {
    u8 index;
    int lfd;
    struct replication *r;
    struct event *fsync; /* completes the appends of the last turn */
    u8 frames[CAP + 1][WAL_FRAME_MAX];
    u32 len[CAP + 1];
    u64 head, committed;
    struct vsr_durable durable;
};

static struct {
    struct event_base *base;
    struct node n[N];
    struct replication_config cfg;
} F;

/* ---- the clock, the storage ------------------------------------------------------------------ */

static u64 mono_ns(void *ctx)
{
    (void)ctx;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (u64)ts.tv_sec * 1000000000u + (u64)ts.tv_nsec;
}

static u64 clock_ms(void *ctx)
{
    (void)ctx;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts); /* one machine: the three clocks agree */
    return (u64)ts.tv_sec * 1000 + (u64)ts.tv_nsec / 1000000;
}

static u64 now_ms(void)
{
    return loopback_now_ms();
}

static int st_persist(void *ctx, const struct vsr_durable *d)
{
    struct node *n = ctx;
    n->durable = *d;
    return 0;
}

static int st_append(void *ctx, const u8 *frame, u32 len)
{
    struct node *n = ctx;
    ck_assert_uint_lt(n->head, CAP);
    n->head++;
    memcpy(n->frames[n->head], frame, len);
    n->len[n->head] = len;
    event_active(n->fsync, EV_TIMEOUT, 0); /* durable on the next turn, not inside the core */
    return 0;
}

static int st_truncate(void *ctx, u64 after)
{
    struct node *n = ctx;
    ck_assert_uint_le(after, n->head);
    n->head = after;
    return 0;
}

static int st_read(void *ctx, u64 lsn, u8 *buf, u32 cap, u32 *len)
{
    struct node *n = ctx;
    if (lsn == 0 || lsn > n->head)
        return -ENOENT;
    ck_assert_uint_le(n->len[lsn], cap);
    memcpy(buf, n->frames[lsn], n->len[lsn]);
    *len = n->len[lsn];
    return 0;
}

static void st_commit(void *ctx, u64 commit)
{
    struct node *n = ctx;
    n->committed = commit;
}

static int st_image_read(void *ctx, u64 offset, u8 *buf, u32 cap, u32 *len, struct vsr_image *img)
{
    (void)ctx, (void)offset, (void)buf, (void)cap, (void)len, (void)img;
    return -ENOENT; /* nothing is pruned here: no images */
}

static int st_image_write(void *ctx, const struct vsr_image *img, u64 offset, const u8 *bytes, u32 len)
{
    (void)ctx, (void)img, (void)offset, (void)bytes, (void)len;
    return -EIO;
}

static int st_image_install(void *ctx, const struct vsr_image *img, struct vsr_entry_header *at)
{
    (void)ctx, (void)img, (void)at;
    return -EIO;
}

static void on_fsync(evutil_socket_t fd, short what, void *ctx)
{
    (void)fd, (void)what;
    struct node *n = ctx;
    replication_durable(n->r, n->head);
}

/* ---- the loop --------------------------------------------------------------------------------- */

#define RUN_UNTIL(cond, ms) LOOPBACK_RUN_UNTIL(F.base, cond, ms)

/* Starts replica i's loop: fresh, or restarted from what its storage holds (the top headers of
 * its WAL loaded, its durable view and log_view, its commit point as a lower bound). */
static void start(u8 i, bool fresh)
{
    struct node *n = &F.n[i];
    struct replication_config c = F.cfg;
    c.vsr.replica = c.peer.replica = i;
    const struct vsr_env st = { .ctx = n, .persist = st_persist, .append = st_append,
                                .truncate = st_truncate, .read = st_read, .commit = st_commit,
                                .image_read = st_image_read, .image_write = st_image_write,
                                .image_install = st_image_install };
    const struct replication_clock clk = { .mono_ns = mono_ns, .clock_ms = clock_ms };
    char why[256] = "";
    int rc = replication_create(F.base, &c, &st, &clk, n->lfd, &n->r, why, sizeof(why));
    ck_assert_msg(rc == 0, "replication_create %u: %d %s", i, rc, why);
    for (u64 lsn = n->head > VSR_JOURNAL ? n->head - VSR_JOURNAL + 1 : 1; !fresh && lsn <= n->head; lsn++) {
        struct wal_frame f;
        ck_assert_int_eq(wal_frame_decode_exact(n->frames[lsn], n->len[lsn], &f), WAL_FRAME_OK);
        struct vsr_entry_header h;
        vsr_entry_header_of_frame(&f, &h);
        vsr_load_entry(replication_core(n->r), &h);
    }
    const struct vsr_start s = { .fresh = fresh, .durable = n->durable, .wal_head = n->head,
                                 .commit = n->committed, .wal_first = 1 };
    replication_start(n->r, &s);
}

static void setup(void)
{
    memset(&F, 0, sizeof(F));
    F.base = event_base_new();
    ck_assert_ptr_nonnull(F.base);
    const u64 ms = 1000000;
    F.cfg.vsr = (struct vsr_config){ .cluster_id = CLUSTER, .replica_count = N, .pipeline_max = 32,
                                     .heartbeat_ns = 20 * ms, .ping_ns = 20 * ms, .primary_timeout_ns = 300 * ms,
                                     .view_change_timeout_ns = 600 * ms, .repair_ns = 30 * ms,
                                     .clock_window_ns = 2000 * ms, .clock_tolerance_ns = 200 * ms,
                                     .lag_max = 1000, .seed = 7 };
    F.cfg.peer.cluster_id = CLUSTER;
    F.cfg.peer.replica_count = N;
    F.cfg.peer.queue_bytes = 4u << 20;
    F.cfg.peer.backoff_min_ms = 10;
    F.cfg.peer.backoff_max_ms = 100;
    F.cfg.peer.idle_timeout_ms = 5000;
    F.cfg.tick_ms = 5;
    for (u8 i = 0; i < N; i++) {
        F.n[i].index = i;
        F.n[i].lfd = loopback_listener(0, &F.cfg.peer.addr[i], &F.cfg.peer.addr_len[i]);
    }
    for (u8 i = 0; i < N; i++) {
        F.n[i].fsync = event_new(F.base, -1, 0, on_fsync, &F.n[i]);
        start(i, true);
    }
}

static void teardown(void)
{
    for (u8 i = 0; i < N; i++) {
        replication_destroy(F.n[i].r);
        event_free(F.n[i].fsync);
        close(F.n[i].lfd);
    }
    event_base_free(F.base);
}

/* The replica serving as primary, or -1. */
static int serving(void)
{
    int p = -1;
    for (u8 i = 0; i < N; i++)
        if (vsr_serving(replication_core(F.n[i].r)) && (p < 0 || replication_core(F.n[i].r)->view >
                                                                     replication_core(F.n[p].r)->view))
            p = i;
    return p;
}

/* The sequencer of primary p: appends up to `want` entries in all, as room allows; true when
 * its WAL holds that many. */
static bool sequence_to(u8 p, u64 want)
{
    struct node *n = &F.n[p];
    struct vsr *v = replication_core(n->r);
    for (u32 room = replication_prepare_room(n->r); room > 0 && n->head < want; room--) {
        struct sm_command cmd;
        memset(&cmd, 0, sizeof(cmd));
        cmd.kind = SM_CMD_CREATE_RESOURCE;
        cmd.resource_id = 1000 + n->head + 1;
        cmd.operation_id = n->head + 1;
        cmd.client_id = 1;
        u8 payload[WAL_CMD_SIZE_MAX], frame[WAL_FRAME_MAX];
        struct wal_frame f = { .lsn = n->head + 1, .request_slot = n->head + 1, .view = v->view,
                               .prev_crc = v->wal_head_crc, .record_type = wal_cmd_record_type(&cmd) };
        f.payload_len = wal_cmd_encode(payload, sizeof(payload), &cmd);
        f.payload = payload;
        u32 len = wal_frame_encode(frame, sizeof(frame), &f);
        st_append(n, frame, len);
        replication_sequenced(n->r, frame, len);
    }
    return n->head >= want;
}

static bool all_committed(u64 lsn, u8 skip)
{
    for (u8 i = 0; i < N; i++)
        if (i != skip && F.n[i].committed < lsn)
            return false;
    return true;
}

/* Replicas a and b hold the same first `through` frames. */
static void same_log(u8 a, u8 b, u64 through)
{
    for (u64 lsn = 1; lsn <= through; lsn++) {
        ck_assert_uint_eq(F.n[a].len[lsn], F.n[b].len[lsn]);
        ck_assert_msg(memcmp(F.n[a].frames[lsn], F.n[b].frames[lsn], F.n[a].len[lsn]) == 0, "lsn %llu differs",
                      (unsigned long long)lsn);
    }
}

/* Cuts replica r off from both others (both directions), or heals it. */
static void isolate(u8 r, bool cut)
{
    for (u8 i = 0; i < N; i++) {
        if (i == r)
            continue;
        peer_link_block(replication_link(F.n[r].r), i, cut, cut);
        peer_link_block(replication_link(F.n[i].r), r, cut, cut);
    }
}

/* ---- tests ------------------------------------------------------------------------------------ */

START_TEST(test_entries_commit_on_all_three)
{
    RUN_UNTIL(serving() == 0 && sequence_to(0, 50) && all_committed(50, N), 5000);
    ck_assert_int_eq(serving(), 0);
    ck_assert_uint_eq(F.n[0].head, 50);
    ck_assert_msg(all_committed(50, N), "committed %llu %llu %llu", (unsigned long long)F.n[0].committed,
                  (unsigned long long)F.n[1].committed, (unsigned long long)F.n[2].committed);
    same_log(0, 1, 50);
    same_log(0, 2, 50);
    ck_assert_uint_eq(replication_core(F.n[1].r)->view, 0);
}
END_TEST

START_TEST(test_a_primary_cut_off_is_replaced_and_catches_up)
{
    RUN_UNTIL(sequence_to(0, 20) && all_committed(20, N), 5000);
    ck_assert(all_committed(20, N));
    isolate(0, true);
    u64 t0 = now_ms();
    RUN_UNTIL(serving() > 0, 5000);
    int p = serving();
    ck_assert_msg(p > 0, "no new primary after %llu ms", (unsigned long long)(now_ms() - t0));
    u64 elected_ms = now_ms() - t0;
    ck_assert_uint_ge(replication_core(F.n[p].r)->view, 1);
    /* The new primary commits new entries with the other backup; the old one commits nothing. */
    RUN_UNTIL(sequence_to((u8)p, 40) && all_committed(40, 0), 5000);
    ck_assert_msg(all_committed(40, 0), "committed %llu %llu %llu", (unsigned long long)F.n[0].committed,
                  (unsigned long long)F.n[1].committed, (unsigned long long)F.n[2].committed);
    ck_assert_uint_eq(F.n[0].committed, 20);
    /* Healed: the old primary follows the new view and catches up. */
    isolate(0, false);
    RUN_UNTIL(all_committed(40, N) && replication_core(F.n[0].r)->view == replication_core(F.n[p].r)->view &&
                  !vsr_is_primary(replication_core(F.n[0].r)),
              5000);
    ck_assert(all_committed(40, N));
    ck_assert(!vsr_is_primary(replication_core(F.n[0].r)));
    same_log((u8)p, 0, 40);
    same_log((u8)p, (u8)(3 - p), 40);
    printf("# new primary %d serving %llu ms after the cut\n", p, (unsigned long long)elected_ms);
}
END_TEST

/* A backup whose worker stops (its loop destroyed, its WAL kept) misses entries, and once
 * started again from its WAL and metadata catches up by repair. */
START_TEST(test_a_restarted_backup_catches_up)
{
    RUN_UNTIL(sequence_to(0, 20) && all_committed(20, N), 5000);
    ck_assert(all_committed(20, N));
    replication_destroy(F.n[2].r);
    F.n[2].r = NULL;
    RUN_UNTIL(sequence_to(0, 60) && all_committed(60, 2), 5000);
    ck_assert(all_committed(60, 2));
    ck_assert_uint_le(F.n[2].head, 20);
    start(2, false);
    RUN_UNTIL(all_committed(60, N), 5000);
    ck_assert_msg(all_committed(60, N), "replica 2 at %llu, committed %llu", (unsigned long long)F.n[2].head,
                  (unsigned long long)F.n[2].committed);
    same_log(0, 2, 60);
    ck_assert_int_eq(serving(), 0); /* a backup's restart changes no view */
}
END_TEST

START_TEST(test_config_halves_must_agree)
{
    struct replication_config c = F.cfg;
    c.vsr.replica = 1;
    c.peer.replica = 2;
    const struct vsr_env st = { 0 };
    const struct replication_clock clk = { .mono_ns = mono_ns, .clock_ms = clock_ms };
    struct replication *r = (struct replication *)1;
    char why[256] = "";
    ck_assert_int_eq(replication_create(F.base, &c, &st, &clk, -1, &r, why, sizeof(why)), -EINVAL);
    ck_assert_ptr_null(r);
    ck_assert_ptr_nonnull(strstr(why, "disagree"));
}
END_TEST

Suite *test_suite(void)
{
    Suite *su = suite_create("replication");
    TCase *tc = tcase_create("loop");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_entries_commit_on_all_three);
    tcase_add_test(tc, test_a_primary_cut_off_is_replaced_and_catches_up);
    tcase_add_test(tc, test_a_restarted_backup_catches_up);
    tcase_add_test(tc, test_config_halves_must_agree);
    suite_add_tcase(su, tc);
    return su;
}
