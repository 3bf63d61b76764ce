/*
 * tests/test_vsr.c — the replication core (replica/vsr.h), message by message, for the rules
 * simplest to state alone; the simulator (sim/, tests/sim.sh) drives whole clusters through
 * faults. Each test names a rule and fails without it:
 *   - an entry commits only on a durable quorum, the primary counting itself after its fsync;
 *   - a replica leaves its view only when a quorum asked for a higher one, and makes the new
 *     view durable before its do_view_change leaves;
 *   - the cluster time is a quorum's agreeing clocks: one clock an hour fast moves nothing, and
 *     clocks that do not agree give no time (and no new entries);
 *   - a message from a later view stops a primary serving;
 *   - messages from another cluster, or naming another cluster size, are dropped and counted;
 *   - a replica behind every peer's pruned WAL takes a snapshot image chunk by chunk, installs
 *     it and continues the log from it; one a peer can still repair is not sent an image;
 *   - a replica that lost its disk neither votes nor acks nor answers read rounds until it has
 *     heard a quorum of others, adopted its primary's log and caught up to its head;
 *   - a primary whose entries commit no further for twice the timeout asks for the next view;
 *   - a checkpoint prunes no entry a backup heard from lately still lacks, unless it lags more
 *     than lag_max;
 *   - a new primary starts its view only when every uncommitted entry of the canonical log is
 *     held (as far as the do_view_changes say) by a sender, or lacked by so many that it was
 *     never committed: then the log is cut below it (a damaged only copy);
 *   - a backup checks its unverified entries against any copy verified in its view, not only
 *     the primary's (which may be damaged);
 *   - a backup whose own copy of such an entry is damaged takes an image once stuck, even from
 *     a peer that still holds the entry.
 */
#include "config.h"

#include "common/crc32c.h"
#include "replica/vsr.h"
#include "tests/check_main.h"
#include "wal/command.h"
#include "wal/frame.h"

#include <errno.h>
#include <string.h>

#define N 3
#define MS 1000000ull

/* ---- a tiny environment: one in-memory log per replica, a mailbox for what is sent ---------- */

struct replica_env {
    u8 frames[320][WAL_FRAME_MAX];
    u32 len[320];
    u64 head;
    u64 first; /* the first LSN held (pruned below; 0: 1) */
    bool damaged[320]; /* reads back as damaged */
    u8 image[20000]; /* a checkpoint's image: the entry's header, then opaque state */
    struct vsr_image image_at;
    u8 rx[20000];
    u32 installs;
    struct vsr_durable durable;
    int persisted;
    u64 committed;
};

struct sent {
    u8 from, to;
    u32 len;
    u8 bytes[VSR_MESSAGE_MAX];
};

static struct replica_env envs[N];
static struct vsr cores[N];
static struct sent outbox[512];
static u32 nout;

static void env_send(void *ctx, u8 to, const u8 *msg, u32 len)
{
    struct replica_env *e = ctx;
    ck_assert_uint_lt(nout, 512);
    outbox[nout].from = (u8)(e - envs);
    outbox[nout].to = to;
    outbox[nout].len = len;
    memcpy(outbox[nout].bytes, msg, len);
    nout++;
}

static int env_persist(void *ctx, const struct vsr_durable *d)
{
    struct replica_env *e = ctx;
    e->durable = *d;
    e->persisted++;
    return 0;
}

static int env_append(void *ctx, const u8 *frame, u32 len)
{
    struct replica_env *e = ctx;
    e->head++;
    memcpy(e->frames[e->head], frame, len);
    e->len[e->head] = len;
    return 0;
}

static int env_truncate(void *ctx, u64 after)
{
    struct replica_env *e = ctx;
    e->head = after;
    return 0;
}

static int env_read(void *ctx, u64 lsn, u8 *buf, u32 cap, u32 *len)
{
    struct replica_env *e = ctx;
    if (lsn == 0 || lsn > e->head || lsn < e->first)
        return -ENOENT;
    if (e->damaged[lsn])
        return -EUCLEAN;
    ck_assert_uint_le(e->len[lsn], cap);
    memcpy(buf, e->frames[lsn], e->len[lsn]);
    *len = e->len[lsn];
    return 0;
}

static void env_commit(void *ctx, u64 commit)
{
    struct replica_env *e = ctx;
    e->committed = commit;
}

static int env_image_read(void *ctx, u64 offset, u8 *buf, u32 cap, u32 *len, struct vsr_image *img)
{
    struct replica_env *e = ctx;
    if (e->image_at.lsn == 0)
        return -ENOENT;
    *img = e->image_at;
    u64 n = offset >= img->size ? 0 : img->size - offset;
    *len = (u32)(n < cap ? n : cap);
    memcpy(buf, e->image + offset, *len);
    return 0;
}

static int env_image_write(void *ctx, const struct vsr_image *img, u64 offset, const u8 *bytes, u32 len)
{
    struct replica_env *e = ctx;
    ck_assert_uint_le(offset + len, sizeof(e->rx));
    ck_assert_uint_le(offset + len, img->size);
    memcpy(e->rx + offset, bytes, len);
    return 0;
}

static int env_image_install(void *ctx, const struct vsr_image *img, struct vsr_entry_header *at)
{
    struct replica_env *e = ctx;
    ck_assert_uint_eq(crc32c(0, e->rx, img->size), img->crc);
    vsr_entry_header_decode(e->rx, at);
    e->head = at->lsn;
    e->first = at->lsn + 1;
    e->installs++;
    return 0;
}

static struct vsr_config config(u8 id)
{
    return (struct vsr_config){ .cluster_id = 7, .replica = id, .replica_count = N,
                                .pipeline_max = 8, .heartbeat_ns = 50 * MS, .ping_ns = 100 * MS,
                                .primary_timeout_ns = 500 * MS,
                                .view_change_timeout_ns = 800 * MS, .repair_ns = 50 * MS,
                                .clock_window_ns = 2000 * MS, .clock_tolerance_ns = 200 * MS,
                                .seed = 1 };
}

static struct vsr_time at(u64 ms)
{
    return (struct vsr_time){ .mono_ns = ms * MS, .clock_ms = 1000000 + ms };
}

static void setup(void)
{
    memset(envs, 0, sizeof(envs));
    nout = 0;
    for (u8 i = 0; i < N; i++) {
        struct vsr_config c = config(i);
        struct vsr_env env = { .ctx = &envs[i], .send = env_send, .persist = env_persist,
                               .append = env_append, .truncate = env_truncate,
                               .read = env_read, .commit = env_commit,
                               .image_read = env_image_read, .image_write = env_image_write,
                               .image_install = env_image_install };
        vsr_init(&cores[i], &c, &env);
        struct vsr_start s = { .fresh = true };
        vsr_start(&cores[i], &s, at(0));
    }
}

/* Delivers every message sent so far whose command is `command` (0: any) and whose sender is
 * `from` (ANY: any), in order. */
#define ANY 0xFF
static u32 deliver_from(u8 command, u8 from, u64 now_ms)
{
    u32 delivered = 0;
    for (u32 i = 0; i < nout; i++) {
        struct sent *m = &outbox[i];
        if (m->len == 0 || (command != 0 && m->bytes[6] != command) ||
            (from != ANY && m->from != from))
            continue;
        u32 len = m->len;
        m->len = 0;
        vsr_on_message(&cores[m->to], at(now_ms), m->bytes, len);
        delivered++;
    }
    return delivered;
}

static u32 deliver(u8 command, u64 now_ms)
{
    return deliver_from(command, ANY, now_ms);
}

static u32 frame_of(u8 *out, u64 lsn, u32 prev_crc)
{
    struct sm_command cmd;
    memset(&cmd, 0, sizeof(cmd));
    cmd.kind = SM_CMD_CREATE_RESOURCE;
    cmd.resource_id = 100 + lsn;
    cmd.operation_id = lsn;
    cmd.client_id = 1;
    u8 payload[WAL_CMD_SIZE_MAX];
    struct wal_frame f = { .lsn = lsn, .request_slot = 1, .prev_crc = prev_crc,
                           .record_type = wal_cmd_record_type(&cmd) };
    f.payload_len = wal_cmd_encode(payload, sizeof(payload), &cmd);
    f.payload = payload;
    return wal_frame_encode(out, WAL_FRAME_MAX, &f);
}

/* The primary (replica 0) sequences one entry: its sequencer appended it to its WAL. Shipped
 * at once (a step of one entry) unless `hold`. */
static void sequence_held(u64 lsn, u64 now_ms, bool hold)
{
    u32 prev = lsn > 1 ? cores[0].wal_head_crc : 0;
    u8 buf[WAL_FRAME_MAX];
    u32 len = frame_of(buf, lsn, prev);
    env_append(&envs[0], buf, len);
    vsr_on_sequenced(&cores[0], at(now_ms), buf, len);
    if (!hold)
        vsr_flush(&cores[0], at(now_ms));
}

static void sequence(u64 lsn, u64 now_ms)
{
    sequence_held(lsn, now_ms, false);
}

/* Pongs: replica `to` hears replica `from`'s clock reading `clock_ms` at `now_ms`. */
static void pong(u8 from, u8 to, u64 now_ms, u64 clock_ms)
{
    struct vsr_header h = { .command = VSR_PONG, .replica = from, .replica_count = N,
                            .cluster_id = 7, .view = cores[to].view, .a = (now_ms - 1) * MS,
                            .b = clock_ms };
    u8 buf[VSR_MESSAGE_MAX];
    u32 len = vsr_message_encode(buf, sizeof(buf), &h, NULL, 0);
    vsr_on_message(&cores[to], at(now_ms), buf, len);
}

/* ---- tests --------------------------------------------------------------------------------- */

START_TEST(test_commit_needs_a_durable_quorum)
{
    pong(1, 0, 10, 1000010);
    pong(2, 0, 10, 1000010);
    ck_assert_uint_gt(vsr_prepare_room(&cores[0], at(10)), 0);
    sequence(1, 10);
    /* A backup's ack alone is not a quorum of two while the primary's own copy is not durable. */
    deliver(VSR_PREPARE, 11);
    vsr_on_durable(&cores[1], at(12), 1);
    deliver(VSR_PREPARE_OK, 13);
    ck_assert_uint_eq(cores[0].commit_max, 0);
    ck_assert_uint_eq(envs[0].committed, 0);
    /* The primary's fsync makes two. */
    vsr_on_durable(&cores[0], at(14), 1);
    ck_assert_uint_eq(envs[0].committed, 1);
    ck_assert_uint_eq(cores[0].commit_max, 1);
}
END_TEST

START_TEST(test_own_fsync_alone_does_not_commit)
{
    pong(1, 0, 10, 1000010);
    pong(2, 0, 10, 1000010);
    sequence(1, 10);
    vsr_on_durable(&cores[0], at(11), 1);
    ck_assert_uint_eq(envs[0].committed, 0);
    ck_assert_uint_eq(cores[0].commit_max, 0);
}
END_TEST

START_TEST(test_leave_a_view_only_on_a_quorum)
{
    /* Replica 2 timed out (500 ms and its jitter) and asks for view 1; replica 1 has not. */
    vsr_tick(&cores[2], at(800));
    ck_assert_uint_gt(deliver(VSR_START_VIEW_CHANGE, 801), 0);
    ck_assert_uint_eq(cores[1].view, 0);
    ck_assert_uint_eq(cores[0].view, 0);
    ck_assert_int_eq(cores[2].status, VSR_NORMAL);
    /* Replica 1 times out too: a quorum. It leads view 1 and records its own do_view_change. */
    vsr_tick(&cores[1], at(1100));
    ck_assert_uint_eq(cores[1].view, 1);
    ck_assert_uint_eq(envs[1].durable.view, 1);
    ck_assert_int_eq(cores[1].status, VSR_VIEW_CHANGE);
    ck_assert(cores[1].dvc[1].have);
    /* Replica 2 hears the second vote: the view is durable before its do_view_change leaves. */
    u32 before = nout;
    deliver(VSR_START_VIEW_CHANGE, 1101);
    ck_assert_uint_eq(cores[2].view, 1);
    ck_assert_uint_eq(envs[2].durable.view, 1);
    bool dvc = false;
    for (u32 i = before; i < nout; i++)
        if (outbox[i].from == 2 && outbox[i].to == 1 && outbox[i].bytes[6] == VSR_DO_VIEW_CHANGE)
            dvc = true;
    ck_assert(dvc);
    /* With it, replica 1 starts view 1. */
    deliver(VSR_DO_VIEW_CHANGE, 1102);
    ck_assert(vsr_serving(&cores[1]));
}
END_TEST

START_TEST(test_cluster_time_ignores_one_clock_an_hour_off)
{
    u64 ms;
    /* Own clock only: no quorum. */
    ck_assert(!vsr_cluster_clock(&cores[0], at(100), &ms));
    /* One replica an hour fast, one right: the quorum that agrees is the right one. */
    pong(1, 0, 100, 1000100 + 3600000);
    ck_assert(!vsr_cluster_clock(&cores[0], at(100), &ms)); /* own and an hour off: no agreement */
    ck_assert_uint_eq(vsr_prepare_room(&cores[0], at(100)), 0);
    pong(2, 0, 100, 1000100);
    ck_assert(vsr_cluster_clock(&cores[0], at(100), &ms));
    ck_assert_uint_le(ms, 1000100);
    ck_assert_uint_ge(ms, 1000100 - 200);
    ck_assert_uint_gt(vsr_prepare_room(&cores[0], at(100)), 0);
}
END_TEST

START_TEST(test_cluster_time_never_ahead_of_a_correct_clock)
{
    u64 ms;
    /* Our own clock an hour fast: the two others agree, and the time is theirs. */
    pong(1, 0, 100, 1000100);
    pong(2, 0, 100, 1000100);
    struct vsr_time t = { .mono_ns = 100 * MS, .clock_ms = 1000100 + 3600000 };
    ck_assert(vsr_cluster_clock(&cores[0], t, &ms));
    ck_assert_uint_eq(ms, 1000100);
}
END_TEST

START_TEST(test_a_later_view_stops_the_primary)
{
    ck_assert(vsr_serving(&cores[0]));
    struct vsr_header h = { .command = VSR_PING, .replica = 1, .replica_count = N, .cluster_id = 7,
                            .view = 5, .a = 1 };
    u8 buf[VSR_MESSAGE_MAX];
    u32 len = vsr_message_encode(buf, sizeof(buf), &h, NULL, 0);
    vsr_on_message(&cores[0], at(10), buf, len);
    ck_assert(!vsr_serving(&cores[0]));
    ck_assert_uint_eq(vsr_prepare_room(&cores[0], at(10)), 0);
}
END_TEST

/* Replica 0 (primary) and 1 hold entries 1..10, committed; replica 2 none. Both checkpoint at
 * 10; those in `pruned` (bits) prune their WALs below 11. */
static void behind_by_ten(u8 pruned)
{
    pong(1, 0, 10, 1000010);
    pong(2, 0, 10, 1000010);
    for (u64 lsn = 1; lsn <= 10; lsn++) {
        sequence(lsn, 10);
        vsr_on_durable(&cores[0], at(10), lsn);
    }
    for (u32 i = 0; i < nout; i++)
        if (outbox[i].to == 2)
            outbox[i].len = 0; /* replica 2 was away */
    deliver(VSR_PREPARE, 11);
    vsr_on_durable(&cores[1], at(12), 10);
    deliver(VSR_PREPARE_OK, 13);
    ck_assert_uint_eq(cores[0].commit_max, 10);
    struct replica_env *e = &envs[0];
    struct vsr_entry_header h;
    struct wal_frame f;
    ck_assert_int_eq(wal_frame_decode_exact(e->frames[10], e->len[10], &f), WAL_FRAME_OK);
    vsr_entry_header_of_frame(&f, &h);
    vsr_entry_headers_encode(e->image, &h, 1);
    for (u32 i = VSR_ENTRY_HEADER_SIZE; i < sizeof(e->image); i++)
        e->image[i] = (u8)(i * 7);
    e->image_at = (struct vsr_image){ .lsn = 10, .size = sizeof(e->image), .crc = crc32c(0, e->image, sizeof(e->image)) };
    for (u8 r = 0; r < 2; r++) {
        envs[r].first = (pruned >> r) & 1 ? 11 : 1;
        vsr_on_checkpoint(&cores[r], 10, envs[r].first);
    }
    nout = 0;
}

static u32 count_sent(u8 command, u8 to)
{
    u32 n = 0;
    for (u32 i = 0; i < nout; i++)
        n += outbox[i].len != 0 && outbox[i].bytes[6] == command && outbox[i].to == to;
    return n;
}

/* A step's entries go out as few messages as fit (prepares), every one of them, also when they
 * fill a message before the step ends; a backup takes each as a prepare would carry it. */
START_TEST(test_a_step_ships_its_entries_in_few_messages)
{
    cores[0].cfg.pipeline_max = VSR_PIPELINE_MAX;
    pong(1, 0, 10, 1000010);
    pong(2, 0, 10, 1000010);
    u64 total = 0;
    for (u32 step = 0; step < 2; step++) {
        nout = 0;
        ck_assert_uint_ge(vsr_prepare_room(&cores[0], at(10)), 150);
        for (u32 i = 0; i < 150; i++)
            sequence_held(++total, 10, true);
        u32 early = count_sent(VSR_PREPARES, 1);
        ck_assert_uint_ge(early, 1); /* 150 frames fill a message before the step ends */
        vsr_flush(&cores[0], at(10));
        u32 msgs = count_sent(VSR_PREPARES, 1) + count_sent(VSR_PREPARE, 1);
        ck_assert_uint_gt(msgs, early);
        ck_assert_uint_le(msgs, 4);
        ck_assert_uint_eq(count_sent(VSR_PREPARES, 2) + count_sent(VSR_PREPARE, 2), msgs);
        deliver(VSR_PREPARES, 11);
        deliver(VSR_PREPARE, 11);
        for (u8 b = 1; b <= 2; b++) {
            ck_assert_uint_eq(envs[b].head, total); /* every entry, in order */
            ck_assert_uint_eq(cores[b].wal_head, total);
            vsr_on_durable(&cores[b], at(12), total);
        }
        vsr_on_durable(&cores[0], at(12), total);
        deliver(VSR_PREPARE_OK, 13);
        ck_assert_uint_eq(cores[0].commit_max, total);
    }
    ck_assert_uint_eq(cores[0].count.prepares_sent, total);
    ck_assert_uint_le(cores[0].count.prepare_messages, 8);
    /* A step left unshipped when the view changed is dropped, never sent in a later view. */
    nout = 0;
    sequence_held(++total, 20, true);
    cores[0].view++; /* as entering a later view would */
    vsr_flush(&cores[0], at(20));
    ck_assert_uint_eq(count_sent(VSR_PREPARES, 1) + count_sent(VSR_PREPARE, 1), 0);
    ck_assert_uint_eq(cores[0].out_count, 0);
}
END_TEST

START_TEST(test_state_transfer_past_a_pruned_wal)
{
    behind_by_ten(3);
    /* Pings say how far back the others reach; a heartbeat says how far the log goes. */
    vsr_tick(&cores[0], at(100));
    vsr_tick(&cores[1], at(100));
    deliver(VSR_PING, 101);
    deliver(VSR_COMMIT, 101);
    ck_assert_uint_eq(cores[2].commit_max, 10);
    nout = 0;
    vsr_tick(&cores[2], at(160));
    ck_assert_uint_eq(count_sent(VSR_REQUEST_PREPARE, 0), 0);
    ck_assert_uint_eq(count_sent(VSR_REQUEST_SNAPSHOT, 0) + count_sent(VSR_REQUEST_SNAPSHOT, 1), 1);
    /* Chunk by chunk (each answer asks for the next), then installed once. */
    for (int round = 0; round < 8 && envs[2].installs == 0; round++) {
        deliver(VSR_REQUEST_SNAPSHOT, 170);
        deliver(VSR_SNAPSHOT_CHUNK, 171);
    }
    ck_assert_uint_eq(envs[2].installs, 1);
    ck_assert_uint_eq(cores[2].count.chunks_received, (sizeof(envs[0].image) + VSR_CHUNK_MAX - 1) / VSR_CHUNK_MAX);
    ck_assert_uint_eq(cores[2].wal_head, 10);
    ck_assert_uint_eq(cores[2].commit, 10);
    ck_assert_mem_eq(envs[2].rx, envs[0].image, sizeof(envs[0].image));
    /* The log continues from the image's entry: the next prepare chains on to it. */
    sequence(11, 200);
    deliver(VSR_PREPARE, 201);
    ck_assert_uint_eq(envs[2].head, 11);
    ck_assert_uint_eq(cores[2].wal_head, 11);
    /* A chunk replayed later changes nothing. */
    ck_assert_uint_eq(cores[2].transfer.active, false);
}
END_TEST

START_TEST(test_no_state_transfer_while_a_peer_can_repair)
{
    behind_by_ten(1); /* the primary pruned; replica 1 did not */
    vsr_tick(&cores[0], at(100));
    vsr_tick(&cores[1], at(100));
    deliver(VSR_PING, 101);
    deliver(VSR_COMMIT, 101);
    nout = 0;
    vsr_tick(&cores[2], at(160));
    ck_assert_uint_eq(count_sent(VSR_REQUEST_SNAPSHOT, 0) + count_sent(VSR_REQUEST_SNAPSHOT, 1), 0);
    ck_assert_uint_gt(count_sent(VSR_REQUEST_PREPARE, 0) + count_sent(VSR_REQUEST_PREPARE, 1), 0);
    for (int round = 0; round < 12; round++) {
        deliver(VSR_REQUEST_PREPARE, 170 + round);
        deliver(VSR_PREPARE, 170 + round);
        vsr_tick(&cores[2], at(230 + 60 * round));
    }
    ck_assert_uint_eq(envs[2].installs, 0);
    ck_assert_uint_eq(cores[2].wal_head, 10);
}
END_TEST

/* Replica 2 loses its disk after entries 1..5 committed: formatted again, recovering. */
static void lose_disk_of_2(u64 now_ms)
{
    memset(&envs[2], 0, sizeof(envs[2]));
    struct vsr_config c = config(2);
    struct vsr_env env = { .ctx = &envs[2], .send = env_send, .persist = env_persist,
                           .append = env_append, .truncate = env_truncate, .read = env_read,
                           .commit = env_commit, .image_read = env_image_read,
                           .image_write = env_image_write, .image_install = env_image_install };
    vsr_init(&cores[2], &c, &env);
    struct vsr_start st = { .durable = { .recovering = true } };
    vsr_start(&cores[2], &st, at(now_ms));
}

/* Entries 1..through sequenced at 10 ms, durable on all three and committed by 13 ms. */
static void commit_on_all(u64 through)
{
    pong(1, 0, 10, 1000010);
    pong(2, 0, 10, 1000010);
    for (u64 lsn = 1; lsn <= through; lsn++) {
        sequence(lsn, 10);
        vsr_on_durable(&cores[0], at(10), lsn);
    }
    deliver(VSR_PREPARE, 11);
    vsr_on_durable(&cores[1], at(12), through);
    vsr_on_durable(&cores[2], at(12), through);
    deliver(VSR_PREPARE_OK, 13);
    ck_assert_uint_eq(cores[0].commit_max, through);
}

START_TEST(test_a_lost_disk_recovers_before_it_votes_or_acks)
{
    commit_on_all(5);
    lose_disk_of_2(100);
    nout = 0;
    /* It votes for nothing: not on a timeout, not when asked. */
    vsr_tick(&cores[2], at(2000));
    struct vsr_header svc = { .command = VSR_START_VIEW_CHANGE, .replica = 1, .replica_count = N,
                              .cluster_id = 7, .view = 1 };
    u8 buf[VSR_MESSAGE_MAX];
    u32 len = vsr_message_encode(buf, sizeof(buf), &svc, NULL, 0);
    vsr_on_message(&cores[2], at(2001), buf, len);
    ck_assert_uint_eq(count_sent(VSR_START_VIEW_CHANGE, 0) + count_sent(VSR_START_VIEW_CHANGE, 1), 0);
    ck_assert_uint_eq(count_sent(VSR_DO_VIEW_CHANGE, 0), 0);
    ck_assert_uint_eq(cores[2].view, 0);
    /* One other's pong is not a quorum of others: it asks nobody for a log yet, and takes
     * none (a start_view of the primary's, say an old one replayed). */
    pong(0, 2, 2100, 1002100);
    vsr_tick(&cores[2], at(2200));
    ck_assert_uint_eq(count_sent(VSR_REQUEST_START_VIEW, 0), 0);
    struct vsr_header sv = { .command = VSR_START_VIEW, .replica = 0, .replica_count = N,
                             .cluster_id = 7, .view = 0, .op = 5, .commit = 5 };
    len = vsr_message_encode(buf, sizeof(buf), &sv, NULL, 0);
    vsr_on_message(&cores[2], at(2201), buf, len);
    ck_assert_int_eq(cores[2].status, VSR_VIEW_CHANGE);
    pong(1, 2, 2300, 1002300);
    vsr_tick(&cores[2], at(2400));
    ck_assert_uint_eq(count_sent(VSR_REQUEST_START_VIEW, 0), 1);
    deliver(VSR_REQUEST_START_VIEW, 2401);
    deliver(VSR_START_VIEW, 2402);
    ck_assert_int_eq(cores[2].status, VSR_NORMAL);
    ck_assert(cores[2].recovering);
    /* Catching up: repaired from the primary, acknowledging nothing, answering no read round. */
    for (int round = 0; round < 6 && cores[2].wal_head < 5; round++) {
        vsr_tick(&cores[2], at(2500 + 60 * round));
        deliver(VSR_REQUEST_PREPARE, 2501 + 60 * round);
        deliver(VSR_PREPARE, 2502 + 60 * round);
    }
    ck_assert_uint_eq(cores[2].wal_head, 5);
    vsr_on_durable(&cores[2], at(2890), 3); /* part of the way */
    ck_assert(cores[2].recovering);
    ck_assert_uint_eq(count_sent(VSR_PREPARE_OK, 0), 0);
    u64 ticket, index;
    ck_assert(vsr_read_begin(&cores[0], at(2900), &ticket, &index));
    deliver(VSR_COMMIT, 2901);
    ck_assert_uint_eq(count_sent(VSR_COMMIT_OK, 0), 1); /* replica 1's only */
    /* Durable: recovery ends, made durable with the view and log_view; then it acks. */
    vsr_on_durable(&cores[2], at(3000), 5);
    ck_assert(!cores[2].recovering);
    ck_assert(!envs[2].durable.recovering);
    ck_assert_uint_eq(envs[2].durable.log_view, 0);
    ck_assert_uint_eq(cores[2].count.recoveries, 1);
    ck_assert_uint_gt(count_sent(VSR_PREPARE_OK, 0), 0);
}
END_TEST

START_TEST(test_a_view_without_progress_is_left)
{
    pong(1, 0, 10, 1000010);
    pong(2, 0, 10, 1000010);
    sequence(1, 10);
    nout = 0; /* its prepares are lost, and so is every ack: nothing commits */
    vsr_tick(&cores[0], at(20));
    vsr_tick(&cores[0], at(800));
    ck_assert_uint_eq(count_sent(VSR_START_VIEW_CHANGE, 1), 0); /* not yet */
    vsr_tick(&cores[0], at(1400));
    ck_assert_uint_eq(count_sent(VSR_START_VIEW_CHANGE, 1), 1);
    ck_assert_uint_eq(cores[0].svc_view, 1);
}
END_TEST

/* A backup checks its unverified entries against canonical copies: the primary's, or another
 * replica's that is verified in the same view (its answer says so) when the primary cannot
 * read its own. Loop 0: the primary's copy of entry 2 is damaged; 1: intact. */
START_TEST(test_a_backup_checks_its_entries_against_any_canonical_copy)
{
    commit_on_all(3);
    /* Replica 2 has yet to check entries 2 and 3 against the view's log (as after adopting a
     * log whose headers stop above them): it knows no canonical header for them. */
    cores[2].verified = 1;
    memset(&cores[2].journal[2], 0, sizeof(cores[2].journal[2]));
    memset(&cores[2].journal[3], 0, sizeof(cores[2].journal[3]));
    envs[0].damaged[2] = _i == 0;
    nout = 0;
    for (u64 round = 0; round < 8 && cores[2].verified < 3; round++) {
        vsr_tick(&cores[2], at(100 + 60 * round));
        deliver(VSR_REQUEST_PREPARE, 101 + 60 * round);
        deliver(VSR_PREPARE, 102 + 60 * round);
    }
    ck_assert_uint_eq(cores[2].verified, 3);
    ck_assert_uint_eq(envs[2].head, 3); /* checked, not truncated */
}
END_TEST

/* A backup whose own copy of an entry it has yet to check is damaged never cuts it; once stuck
 * for a view-change timeout it takes an image above its whole log, from a peer that still holds
 * the entry too. Loop 0: the copy is damaged; loop 1: intact, repaired without an image. */
START_TEST(test_a_damaged_own_entry_is_replaced_by_an_image)
{
    bool damaged = _i == 0;
    commit_on_all(3);
    /* Entries 4 and 5 reach replica 1 only; the primary checkpoints at 5 and prunes nothing. */
    sequence(4, 20);
    sequence(5, 20);
    vsr_on_durable(&cores[0], at(20), 5);
    for (u32 i = 0; i < nout; i++)
        if (outbox[i].to == 2)
            outbox[i].len = 0;
    deliver(VSR_PREPARE, 21);
    vsr_on_durable(&cores[1], at(22), 5);
    deliver(VSR_PREPARE_OK, 23);
    ck_assert_uint_eq(cores[0].commit_max, 5);
    struct replica_env *e = &envs[0];
    struct wal_frame f;
    struct vsr_entry_header h;
    ck_assert_int_eq(wal_frame_decode_exact(e->frames[5], e->len[5], &f), WAL_FRAME_OK);
    vsr_entry_header_of_frame(&f, &h);
    vsr_entry_headers_encode(e->image, &h, 1);
    e->image_at = (struct vsr_image){ .lsn = 5, .size = sizeof(e->image), .crc = crc32c(0, e->image, sizeof(e->image)) };
    vsr_on_checkpoint(&cores[0], 5, 1);
    /* Replica 2 has yet to check entries 2 and 3 (as after adopting a log whose headers stop
     * above them), and reads its entry 2 back damaged, or intact. */
    cores[2].verified = 1;
    memset(&cores[2].journal[2], 0, sizeof(cores[2].journal[2]));
    memset(&cores[2].journal[3], 0, sizeof(cores[2].journal[3]));
    envs[2].damaged[2] = damaged;
    nout = 0;
    for (u64 t = 100; t < 3000 && envs[2].installs == 0 && cores[2].commit < 5; t += 50) {
        for (u8 r = 0; r < N; r++)
            vsr_tick(&cores[r], at(t));
        deliver(0, t + 1);
        vsr_on_durable(&cores[2], at(t + 2), envs[2].head); /* its fsyncs */
        nout = 0;
    }
    if (damaged) {
        ck_assert_uint_eq(envs[2].installs, 1);
        ck_assert_uint_eq(cores[2].wal_head, 5); /* the image's entry: its log starts after it */
        ck_assert_uint_eq(cores[2].commit, 5);
    } else {
        ck_assert_uint_eq(envs[2].installs, 0);
        ck_assert_msg(cores[2].commit == 5, "head %llu verified %llu durable %llu commit %llu/%llu op %llu",
                      (unsigned long long)cores[2].wal_head, (unsigned long long)cores[2].verified,
                      (unsigned long long)cores[2].durable, (unsigned long long)cores[2].commit,
                      (unsigned long long)cores[2].commit_max, (unsigned long long)cores[2].op);
        ck_assert_uint_eq(envs[2].head, 5); /* checked 2 and 3, repaired 4 and 5 */
    }
    ck_assert_uint_eq(cores[0].view, 0); /* no view change on the way */
}
END_TEST

/* Entries 1 and 2 committed on all three; entry 3 durable on the primary (0) alone, and in
 * view 1 (replica 1 leads) every replica is changing views, do_view_changes not yet delivered. */
static void only_the_old_primary_holds_3(bool damaged)
{
    commit_on_all(2);
    sequence(3, 20);
    vsr_on_durable(&cores[0], at(20), 3);
    envs[0].damaged[3] = damaged;
    nout = 0; /* entry 3's prepares are lost */
    vsr_tick(&cores[2], at(800));
    vsr_tick(&cores[1], at(1100));
    deliver(VSR_START_VIEW_CHANGE, 1101);
    for (u8 r = 0; r < N; r++) {
        ck_assert_uint_eq(cores[r].view, 1);
        ck_assert_int_eq(cores[r].status, VSR_VIEW_CHANGE);
    }
}

/* The new primary starts its view only once every uncommitted entry of the canonical log is
 * either held by a replica that sent its do_view_change, or lacked by enough replicas (n -
 * quorum + 1) that it cannot have been committed: then the log is cut below it. Loop 0: the
 * only copy of entry 3 is damaged; loop 1: it is intact. */
START_TEST(test_an_entry_no_one_can_supply_is_cut_on_a_quorum_lacking_it)
{
    bool damaged = _i == 0;
    only_the_old_primary_holds_3(damaged);
    /* The old primary's do_view_change: the longest log of the newest log_view. */
    ck_assert_uint_eq(deliver_from(VSR_DO_VIEW_CHANGE, 0, 1102), 1);
    if (!damaged) {
        /* It can supply entry 3: the view starts with it, and repair will fetch it. */
        ck_assert(vsr_serving(&cores[1]));
        ck_assert_uint_eq(cores[1].op, 3);
        ck_assert_uint_eq(cores[1].count.nack_truncations, 0);
        return;
    }
    /* Damaged: nobody heard from can supply entry 3, and one replica lacking it (the new
     * primary) proves nothing (it may be committed on 0 and 2): wait. */
    ck_assert_int_eq(cores[1].status, VSR_VIEW_CHANGE);
    ck_assert_uint_eq(cores[1].op, 2);
    /* Replica 2 lacks it too: two of three, so no quorum ever held it. The log is cut at 2. */
    deliver_from(VSR_DO_VIEW_CHANGE, 2, 1103);
    ck_assert(vsr_serving(&cores[1]));
    ck_assert_uint_eq(cores[1].op, 2);
    ck_assert_uint_eq(cores[1].count.nack_truncations, 1);
    /* The old primary adopts the cut log: its damaged entry is gone, not repaired. */
    deliver(VSR_START_VIEW, 1104);
    ck_assert_int_eq(cores[0].status, VSR_NORMAL);
    ck_assert_uint_eq(cores[0].op, 2);
    ck_assert_uint_eq(envs[0].head, 2);
}
END_TEST

START_TEST(test_pruning_waits_for_a_backup_close_behind)
{
    behind_by_ten(0);
    ck_assert_uint_eq(vsr_prune_floor(&cores[0]), UINT64_MAX); /* nobody heard from yet */
    vsr_tick(&cores[1], at(100));
    vsr_tick(&cores[2], at(100));
    deliver(VSR_PING, 101);
    cores[0].cfg.lag_max = 16;
    ck_assert_uint_eq(vsr_prune_floor(&cores[0]), 1); /* replica 2 holds nothing yet */
    cores[0].cfg.lag_max = 4;
    ck_assert_uint_eq(vsr_prune_floor(&cores[0]), 11); /* too far behind: only replica 1 */
    ck_assert_uint_eq(vsr_prune_floor_all(&cores[0]), 1); /* without images: every replica */
    vsr_tick(&cores[0], at(5000)); /* long after their pings */
    ck_assert_uint_eq(vsr_prune_floor(&cores[0]), UINT64_MAX);
    ck_assert_uint_eq(vsr_prune_floor_all(&cores[0]), 1); /* a replica gone quiet still counts */
}
END_TEST

/* Without images (the daemon today), pruning waits for every replica as its last ping said. */
START_TEST(test_pruning_without_images_waits_for_every_replica)
{
    behind_by_ten(0);
    ck_assert_uint_eq(vsr_prune_floor_all(&cores[0]), 1); /* nobody heard from: nothing goes */
    vsr_tick(&cores[1], at(100));
    vsr_tick(&cores[2], at(100));
    deliver(VSR_PING, 101);
    u64 floor = vsr_prune_floor_all(&cores[0]);
    ck_assert_uint_eq(floor, cores[0].peer_op[2] + 1);
    ck_assert_uint_le(floor, cores[0].peer_op[1] + 1);
}
END_TEST

START_TEST(test_foreign_messages_are_dropped_and_counted)
{
    u8 buf[VSR_MESSAGE_MAX];
    struct vsr_header other_cluster = { .command = VSR_PING, .replica = 1, .replica_count = N,
                                        .cluster_id = 8, .a = 1 };
    u32 len = vsr_message_encode(buf, sizeof(buf), &other_cluster, NULL, 0);
    nout = 0;
    vsr_on_message(&cores[0], at(10), buf, len);
    ck_assert_uint_eq(cores[0].count.dropped_cluster, 1);
    struct vsr_header other_size = { .command = VSR_PING, .replica = 4, .replica_count = 5,
                                     .cluster_id = 7, .a = 1 };
    len = vsr_message_encode(buf, sizeof(buf), &other_size, NULL, 0);
    vsr_on_message(&cores[0], at(10), buf, len);
    ck_assert_uint_eq(cores[0].count.dropped_replica, 1);
    buf[20] ^= 1; /* damaged: the checksum fails */
    vsr_on_message(&cores[0], at(10), buf, len);
    ck_assert_uint_eq(cores[0].count.dropped_decode, 1);
    ck_assert_uint_eq(nout, 0); /* nothing answered */
}
END_TEST

Suite *test_suite(void)
{
    Suite *su = suite_create("vsr");
    TCase *tc = tcase_create("vsr");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, test_commit_needs_a_durable_quorum);
    tcase_add_test(tc, test_a_step_ships_its_entries_in_few_messages);
    tcase_add_test(tc, test_own_fsync_alone_does_not_commit);
    tcase_add_test(tc, test_leave_a_view_only_on_a_quorum);
    tcase_add_test(tc, test_cluster_time_ignores_one_clock_an_hour_off);
    tcase_add_test(tc, test_cluster_time_never_ahead_of_a_correct_clock);
    tcase_add_test(tc, test_a_later_view_stops_the_primary);
    tcase_add_test(tc, test_foreign_messages_are_dropped_and_counted);
    tcase_add_test(tc, test_state_transfer_past_a_pruned_wal);
    tcase_add_test(tc, test_no_state_transfer_while_a_peer_can_repair);
    tcase_add_test(tc, test_a_lost_disk_recovers_before_it_votes_or_acks);
    tcase_add_test(tc, test_a_view_without_progress_is_left);
    tcase_add_test(tc, test_pruning_waits_for_a_backup_close_behind);
    tcase_add_test(tc, test_pruning_without_images_waits_for_every_replica);
    tcase_add_loop_test(tc, test_an_entry_no_one_can_supply_is_cut_on_a_quorum_lacking_it, 0, 2);
    tcase_add_loop_test(tc, test_a_backup_checks_its_entries_against_any_canonical_copy, 0, 2);
    tcase_add_loop_test(tc, test_a_damaged_own_entry_is_replaced_by_an_image, 0, 2);
    suite_add_tcase(su, tc);
    return su;
}
