/*
 * tests/test_peer.c — the peer transport (net/peer.h) over 127.0.0.1: up to three links on one
 * event base in this thread, and raw sockets playing a replica (a dialer that says hello by
 * hand, an acceptor that never reads) where a test needs bytes no link would send.
 *
 * Covered: every ordered pair exchanges messages, intact, in order, with the right sender, and
 * no hello is delivered; a message written byte by byte, several in one write, and one split
 * across writes; garbage before a hello and bad messages after one close only that connection
 * (counted) while the others keep working; hellos of another cluster, replica count or a
 * replica that should accept are refused, and so is an acceptor answering as another cluster;
 * a new inbound connection replaces the old one; a destroyed and recreated link is redialed
 * with doubling backoff and messages flow again; a peer that stops reading fills the bounded
 * queue and further messages are dropped and counted; a silent peer is closed at the idle
 * timeout and redialed; peer_link_block isolates one direction and heals; IPv6; bad configs.
 */
#include "config.h"

#include "net/peer.h"

#include "common/le.h"
#include "replica/vsr_message.h"
#include "tests/check_main.h"
#include "tests/loopback.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CLUSTER U128_MAKE(0x0123456789abcdefull, 0xfedcba9876543210ull)
#define N 3
#define WAIT_MS 3000

/* ---- messages: deterministic from (from, to, seq, body length), so a receiver can rebuild and
 * compare what it got ------------------------------------------------------------------------ */

static u32 make_msg(u8 *buf, u128 cluster, u8 count, u8 from, u8 to, u64 seq, u32 body_len)
{
    static u8 body[VSR_BODY_MAX];
    struct vsr_header h;
    memset(&h, 0, sizeof(h));
    h.replica = from;
    h.replica_count = count;
    h.cluster_id = cluster;
    h.view = 1;
    h.op = seq;
    if (body_len == 0) {
        h.command = VSR_PING;
        h.a = to;
        return vsr_message_encode(buf, VSR_MESSAGE_MAX, &h, NULL, 0);
    }
    h.command = VSR_SNAPSHOT_CHUNK;
    h.a = 0;
    h.b = body_len;
    h.c = to;
    for (u32 i = 0; i < body_len; i++)
        body[i] = (u8)(from * 31u + to * 7u + seq * 13u + i);
    return vsr_message_encode(buf, VSR_MESSAGE_MAX, &h, body, body_len);
}

static u32 body_len_of(u64 seq)
{
    if (seq % 5 == 0)
        return 0;
    if (seq % 7 == 0)
        return VSR_BODY_MAX;
    return 1 + (u32)(seq * 997 % 3000);
}

static u32 make_hello(u8 *buf, u128 cluster, u8 count, u8 from)
{
    struct vsr_header h;
    memset(&h, 0, sizeof(h));
    h.command = VSR_PING;
    h.replica = from;
    h.replica_count = count;
    h.cluster_id = cluster;
    return vsr_message_encode(buf, VSR_MESSAGE_MAX, &h, NULL, 0);
}

/* ---- fixture --------------------------------------------------------------------------------- */

struct node {
    struct peer_link *l;
    u8 index;
    int lfd; /* the test's listening socket for it (-1: the link makes its own) */
    u64 got[N];
    u64 last_seq[N]; /* + 1: 0 is none yet */
    u64 bad;         /* a message that was not what its sender sent, or out of order */
};

static struct {
    struct event_base *base;
    struct peer_config cfg;
    struct node n[N];
    u8 buf[2 * VSR_MESSAGE_MAX];
} F;

static u64 now_ms(void)
{
    return loopback_now_ms();
}

static void spin(void)
{
    loopback_spin(F.base);
}

#define RUN_UNTIL(cond, ms) LOOPBACK_RUN_UNTIL(F.base, cond, ms)

static void run_for(u64 ms)
{
    u64 end = now_ms() + ms;
    while (now_ms() < end)
        spin();
}

static void deliver(void *ctx, u8 from, const u8 *msg, u32 len)
{
    struct node *n = ctx;
    struct vsr_message m;
    static u8 want[VSR_MESSAGE_MAX];
    ck_assert_uint_lt(from, N);
    if (vsr_message_decode_exact(msg, len, &m) != VSR_DECODE_OK || m.h.replica != from) {
        n->bad++;
        return;
    }
    u32 wlen = make_msg(want, CLUSTER, F.cfg.replica_count, from, n->index, m.h.op, len - VSR_HEADER_SIZE);
    if (wlen != len || memcmp(want, msg, len) != 0 || m.h.op + 1 <= n->last_seq[from])
        n->bad++;
    n->last_seq[from] = m.h.op + 1;
    n->got[from]++;
}

/* A listening socket on 127.0.0.1 at a port the kernel picks; its address into cfg.addr[i]. */
static int listener(u8 i, int rcvbuf)
{
    return loopback_listener(rcvbuf, &F.cfg.addr[i], &F.cfg.addr_len[i]);
}

static void setup(void)
{
    memset(&F, 0, sizeof(F));
    F.base = event_base_new();
    ck_assert_ptr_nonnull(F.base);
    F.cfg.cluster_id = CLUSTER;
    F.cfg.replica_count = N;
    F.cfg.queue_bytes = 1u << 20;
    F.cfg.backoff_min_ms = 20;
    F.cfg.backoff_max_ms = 200;
    F.cfg.idle_timeout_ms = 5000;
    for (u8 i = 0; i < N; i++) {
        F.n[i].index = i;
        F.n[i].lfd = listener(i, 0);
    }
}

static void teardown(void)
{
    for (u8 i = 0; i < N; i++) {
        peer_link_destroy(F.n[i].l);
        if (F.n[i].lfd >= 0)
            close(F.n[i].lfd);
    }
    event_base_free(F.base);
}

static void start(u8 i)
{
    struct node *n = &F.n[i];
    struct peer_config c = F.cfg;
    c.replica = i;
    char why[256] = "";
    memset(n->got, 0, sizeof(n->got));
    memset(n->last_seq, 0, sizeof(n->last_seq));
    n->bad = 0;
    int rc = peer_link_create(F.base, &c, n->lfd, deliver, n, &n->l, why, sizeof(why));
    ck_assert_msg(rc == 0, "peer_link_create %u: %d %s", i, rc, why);
}

static bool all_connected(void);

/* Every link started, and every pair connected. */
static void start_all_connected(void)
{
    for (u8 i = 0; i < N; i++)
        start(i);
    RUN_UNTIL(all_connected(), WAIT_MS);
    ck_assert(all_connected());
}

static struct peer_counters ctr(u8 at, u8 of)
{
    struct peer_link_counters c;
    peer_link_counters(F.n[at].l, &c);
    return c.peer[of];
}

static struct peer_link_counters link_ctr(u8 at)
{
    struct peer_link_counters c;
    peer_link_counters(F.n[at].l, &c);
    return c;
}

static bool connected(u8 a, u8 b)
{
    return ctr(a, b).connected && ctr(b, a).connected;
}

static bool all_connected(void)
{
    return connected(0, 1) && connected(0, 2) && connected(1, 2);
}

/* seqs [first, first + count) from a to b. */
static void send_range(u8 a, u8 b, u64 first, u64 count)
{
    for (u64 s = first; s < first + count; s++) {
        u32 len = make_msg(F.buf, CLUSTER, F.cfg.replica_count, a, b, s, body_len_of(s));
        peer_link_send(F.n[a].l, b, F.buf, len);
    }
}

/* ---- raw sockets ------------------------------------------------------------------------------ */

static int raw_connect(u8 i)
{
    int fd = socket(F.cfg.addr[i].ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    /* The listener's backlog completes the connect without the loop running. */
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&F.cfg.addr[i], F.cfg.addr_len[i]), 0);
    return fd;
}

static void raw_send(int fd, const u8 *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        ck_assert_int_gt(w, 0);
        p += w;
        n -= (size_t)w;
    }
}

/* n bytes, the loop running meanwhile; false on EOF, an error or the timeout. */
static bool raw_recv(int fd, u8 *p, size_t n, u64 ms)
{
    u64 dl = now_ms() + ms;
    while (n > 0) {
        ssize_t r = recv(fd, p, n, MSG_DONTWAIT);
        if (r > 0) {
            p += r;
            n -= (size_t)r;
            continue;
        }
        if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK) || now_ms() >= dl)
            return false;
        spin();
    }
    return true;
}

/* The other side closed fd (EOF or reset), within ms, the loop running; data before it is skipped. */
static bool raw_closed(int fd, u64 ms)
{
    u64 dl = now_ms() + ms;
    u8 sink[512];
    for (;;) {
        ssize_t r = recv(fd, sink, sizeof(sink), MSG_DONTWAIT);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
            return true;
        if (r < 0) {
            if (now_ms() >= dl)
                return false;
            spin();
        }
    }
}

/* Dials node i as replica `as` and passes the handshake: the link's hello is read and checked. */
static int raw_dial_hello(u8 i, u8 as)
{
    int fd = raw_connect(i);
    u32 n = make_hello(F.buf, CLUSTER, N, as);
    raw_send(fd, F.buf, n);
    u8 hello[VSR_HEADER_SIZE];
    ck_assert(raw_recv(fd, hello, sizeof(hello), WAIT_MS));
    struct vsr_message m;
    ck_assert_int_eq(vsr_message_decode_exact(hello, sizeof(hello), &m), VSR_DECODE_OK);
    ck_assert_int_eq(m.h.command, VSR_PING);
    ck_assert_int_eq(m.h.replica, i);
    ck_assert(m.h.cluster_id == CLUSTER);
    return fd;
}

/* Accepts on lfd (non-blocking), the loop running meanwhile. */
static int raw_accept(int lfd, u64 ms)
{
    u64 dl = now_ms() + ms;
    ck_assert_int_eq(fcntl(lfd, F_SETFL, fcntl(lfd, F_GETFL) | O_NONBLOCK), 0);
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0)
            return fd;
        ck_assert(errno == EAGAIN || errno == EWOULDBLOCK);
        if (now_ms() >= dl)
            return -1;
        spin();
    }
}

/* One message from a raw socket: the next one in the stream. */
static bool raw_recv_msg(int fd, u8 *buf, u32 *len, u64 ms)
{
    if (!raw_recv(fd, buf, VSR_HEADER_SIZE, ms))
        return false;
    u32 size = le_get_u32(buf + 72);
    ck_assert_uint_ge(size, VSR_HEADER_SIZE);
    ck_assert_uint_le(size, VSR_MESSAGE_MAX);
    if (!raw_recv(fd, buf + VSR_HEADER_SIZE, size - VSR_HEADER_SIZE, ms))
        return false;
    *len = size;
    return true;
}

/* ---- tests ------------------------------------------------------------------------------------ */

/* 1. Every ordered pair, intact and in order, from the right sender; hellos are not delivered. */
START_TEST(test_all_pairs_exchange)
{
    for (u8 i = 0; i < N; i++)
        start(i);
    /* Nothing is connected before the loop runs: dropped and counted. */
    send_range(0, 1, 0, 1);
    ck_assert_uint_eq(ctr(0, 1).dropped_not_connected, 1);
    RUN_UNTIL(all_connected(), WAIT_MS);
    ck_assert(all_connected());
    const u64 count = 60;
    for (u8 a = 0; a < N; a++)
        for (u8 b = 0; b < N; b++)
            if (a != b)
                send_range(a, b, 0, count);
    RUN_UNTIL(F.n[0].got[1] + F.n[0].got[2] + F.n[1].got[0] + F.n[1].got[2] + F.n[2].got[0] + F.n[2].got[1] ==
                  6 * count,
              WAIT_MS);
    for (u8 a = 0; a < N; a++) {
        ck_assert_uint_eq(F.n[a].bad, 0);
        for (u8 b = 0; b < N; b++) {
            if (a == b)
                continue;
            ck_assert_msg(F.n[b].got[a] == count, "%u -> %u: %llu of %llu", a, b,
                          (unsigned long long)F.n[b].got[a], (unsigned long long)count);
            ck_assert_uint_eq(F.n[b].last_seq[a], count); /* in order, strictly increasing: all */
            struct peer_counters s = ctr(a, b), r = ctr(b, a);
            ck_assert_uint_eq(s.msgs_sent, count);
            ck_assert_uint_eq(r.msgs_received, count);
            ck_assert_uint_eq(s.bytes_sent, r.bytes_received);
            ck_assert_uint_eq(s.connects, 1);
            ck_assert_uint_eq(s.disconnects, 0);
            ck_assert_uint_eq(s.dropped_queue_full + s.dropped_bad + s.dropped_blocked, 0);
            ck_assert_uint_eq(r.dropped_bad, 0);
        }
    }
    ck_assert_uint_eq(link_ctr(0).accepted, 0); /* replica 0 only dials */
    ck_assert_uint_eq(link_ctr(1).accepted, 1);
    ck_assert_uint_eq(link_ctr(2).accepted, 2);
    for (u8 i = 0; i < N; i++)
        ck_assert_uint_eq(link_ctr(i).hello_rejected, 0);
}
END_TEST

/* 2. Byte by byte, two in one write, split across writes; and the acceptor's messages reach a
 * raw dialer. Replica 0 is the raw socket. */
START_TEST(test_framing_partial_and_coalesced)
{
    start(1);
    start(2);
    int fd = raw_dial_hello(1, 0);
    RUN_UNTIL(ctr(1, 0).connected, WAIT_MS);
    ck_assert(ctr(1, 0).connected);

    static u8 m[4][VSR_MESSAGE_MAX];
    u32 len[4];
    for (u64 s = 0; s < 4; s++)
        len[s] = make_msg(m[s], CLUSTER, N, 0, 1, s, s == 0 ? 300 : (u32)(100 * s + 1));
    for (u32 i = 0; i < len[0]; i++) {
        raw_send(fd, &m[0][i], 1);
        spin();
        if (i + 1 < len[0])
            ck_assert_uint_eq(F.n[1].got[0], 0);
    }
    RUN_UNTIL(F.n[1].got[0] == 1, WAIT_MS);
    ck_assert_uint_eq(F.n[1].got[0], 1);

    /* Two in one write. */
    memcpy(F.buf, m[1], len[1]);
    memcpy(F.buf + len[1], m[2], len[2]);
    raw_send(fd, F.buf, len[1] + len[2]);
    RUN_UNTIL(F.n[1].got[0] == 3, WAIT_MS);
    ck_assert_uint_eq(F.n[1].got[0], 3);

    /* One split inside its header, then its rest with a whole one behind it. */
    raw_send(fd, m[3], 40);
    run_for(20);
    ck_assert_uint_eq(F.n[1].got[0], 3);
    u32 rest = len[3] - 40;
    memcpy(F.buf, m[3] + 40, rest);
    u32 n4 = make_msg(F.buf + rest, CLUSTER, N, 0, 1, 4, 0);
    raw_send(fd, F.buf, rest + n4);
    RUN_UNTIL(F.n[1].got[0] == 5, WAIT_MS);
    ck_assert_uint_eq(F.n[1].got[0], 5);
    ck_assert_uint_eq(F.n[1].last_seq[0], 5);
    ck_assert_uint_eq(F.n[1].bad, 0);
    ck_assert_uint_eq(ctr(1, 0).dropped_bad, 0);
    ck_assert_uint_eq(ctr(1, 0).msgs_received, 5); /* the hello is not counted (nor delivered) */

    /* The other way: the acceptor's messages to the raw dialer, intact, in order. */
    send_range(1, 0, 10, 3);
    for (u64 s = 10; s < 13; s++) {
        u32 got = 0;
        ck_assert(raw_recv_msg(fd, F.buf, &got, WAIT_MS));
        static u8 want[VSR_MESSAGE_MAX];
        u32 wl = make_msg(want, CLUSTER, N, 1, 0, s, body_len_of(s));
        ck_assert_uint_eq(got, wl);
        ck_assert(memcmp(F.buf, want, wl) == 0);
    }
    close(fd);
}
END_TEST

/* 3. Garbage closes only its connection, and is counted; 1 <-> 2 keep working. */
START_TEST(test_garbage_closes_only_that_connection)
{
    start(1);
    start(2);
    RUN_UNTIL(connected(1, 2), WAIT_MS);
    ck_assert(connected(1, 2));

    /* Before a hello: refused by its first bytes, long before the idle timeout (5 s). */
    int g = raw_connect(1);
    raw_send(g, (const u8 *)"GET ", 4);
    u64 t0 = now_ms();
    ck_assert(raw_closed(g, WAIT_MS));
    ck_assert_uint_lt(now_ms() - t0, 1000);
    close(g);
    ck_assert_uint_eq(link_ctr(1).hello_rejected, 1);

    /* After a good hello: a message with a bad magic. */
    int fd = raw_dial_hello(1, 0);
    RUN_UNTIL(ctr(1, 0).connected, WAIT_MS);
    u32 n = make_msg(F.buf, CLUSTER, N, 0, 1, 0, 10);
    F.buf[0] ^= 0xff;
    raw_send(fd, F.buf, n);
    ck_assert(raw_closed(fd, WAIT_MS));
    close(fd);
    struct peer_counters c = ctr(1, 0);
    ck_assert_uint_eq(c.dropped_bad, 1);
    ck_assert_uint_eq(c.disconnects, 1);
    ck_assert(!c.connected);

    /* A bad checksum (one body bit) after a good message: the good one is delivered. */
    fd = raw_dial_hello(1, 0);
    RUN_UNTIL(ctr(1, 0).connected, WAIT_MS);
    u32 n0 = make_msg(F.buf, CLUSTER, N, 0, 1, 0, 10);
    u32 n1 = make_msg(F.buf + n0, CLUSTER, N, 0, 1, 1, 10);
    F.buf[n0 + n1 - 1] ^= 1;
    raw_send(fd, F.buf, n0 + n1);
    ck_assert(raw_closed(fd, WAIT_MS));
    close(fd);
    ck_assert_uint_eq(F.n[1].got[0], 1);
    ck_assert_uint_eq(ctr(1, 0).dropped_bad, 2);
    ck_assert_uint_eq(ctr(1, 0).disconnects, 2);

    /* A message that claims another sender on replica 0's connection. */
    fd = raw_dial_hello(1, 0);
    RUN_UNTIL(ctr(1, 0).connected, WAIT_MS);
    n = make_msg(F.buf, CLUSTER, N, 2, 1, 5, 0);
    raw_send(fd, F.buf, n);
    ck_assert(raw_closed(fd, WAIT_MS));
    close(fd);
    ck_assert_uint_eq(ctr(1, 0).dropped_bad, 3);
    ck_assert_uint_eq(F.n[1].got[2], 0);

    /* 1 <-> 2 untouched. */
    send_range(1, 2, 0, 5);
    send_range(2, 1, 0, 5);
    RUN_UNTIL(F.n[2].got[1] == 5 && F.n[1].got[2] == 5, WAIT_MS);
    ck_assert_uint_eq(F.n[2].got[1], 5);
    ck_assert_uint_eq(F.n[1].got[2], 5);
    ck_assert_uint_eq(ctr(1, 2).disconnects, 0);
    ck_assert_uint_eq(ctr(2, 1).disconnects, 0);
    ck_assert_uint_eq(ctr(1, 2).connects, 1);
    ck_assert_uint_eq(F.n[1].bad + F.n[2].bad, 0);
}
END_TEST

/* 4. Hellos that do not check are refused, on both sides of a connection. */
START_TEST(test_foreign_hellos_refused)
{
    start(1); /* 0 and 2 are raw */
    struct {
        u128 cluster;
        u8 count, from;
    } bad[] = {
        { CLUSTER + 1, N, 0 }, /* another cluster */
        { CLUSTER, N + 1, 0 }, /* another replica count */
        { CLUSTER, N, 2 },     /* a replica that should accept, not dial */
        { CLUSTER, N, 1 },     /* itself */
    };
    for (u32 i = 0; i < ADB_ARRAY_LEN(bad); i++) {
        int fd = raw_connect(1);
        u32 n = make_hello(F.buf, bad[i].cluster, bad[i].count, bad[i].from);
        raw_send(fd, F.buf, n);
        ck_assert_msg(raw_closed(fd, WAIT_MS), "bad hello %u not refused", i);
        close(fd);
        ck_assert_uint_eq(link_ctr(1).hello_rejected, i + 1);
    }
    /* A first message that is not a ping. */
    int fd = raw_connect(1);
    u32 n = make_msg(F.buf, CLUSTER, N, 0, 1, 0, 10);
    raw_send(fd, F.buf, n);
    ck_assert(raw_closed(fd, WAIT_MS));
    close(fd);
    ck_assert_uint_eq(link_ctr(1).hello_rejected, 5);
    ck_assert(!ctr(1, 0).connected);
    ck_assert_uint_eq(ctr(1, 0).connects, 0);
    ck_assert_uint_eq(F.n[1].got[0], 0);

    /* The dialer's side: replica 2 (raw) answers our hello as another cluster. */
    int a = raw_accept(F.n[2].lfd, WAIT_MS);
    ck_assert_int_ge(a, 0);
    u8 hello[VSR_HEADER_SIZE];
    ck_assert(raw_recv(a, hello, sizeof(hello), WAIT_MS));
    n = make_hello(F.buf, CLUSTER + 1, N, 2);
    raw_send(a, F.buf, n);
    ck_assert(raw_closed(a, WAIT_MS));
    close(a);
    struct peer_counters c = ctr(1, 2);
    ck_assert(!c.connected);
    ck_assert_uint_eq(c.connects, 0);
    ck_assert_uint_eq(c.dropped_bad, 1);
    ck_assert_uint_ge(c.dial_failures, 1);
}
END_TEST

/* A new inbound connection from a replica replaces the old one; the replaced dialer comes back. */
START_TEST(test_new_inbound_replaces_old)
{
    start_all_connected();
    int fd = raw_dial_hello(1, 0); /* an impostor of replica 0, or its new incarnation */
    RUN_UNTIL(ctr(1, 0).connects == 2, WAIT_MS);
    ck_assert_uint_eq(ctr(1, 0).connects, 2);
    ck_assert_uint_eq(ctr(1, 0).disconnects, 1);
    /* The real replica 0 saw its connection close and redials: it replaces the raw one. */
    ck_assert(raw_closed(fd, WAIT_MS));
    close(fd);
    RUN_UNTIL(ctr(1, 0).connects == 3 && connected(0, 1), WAIT_MS);
    ck_assert_uint_eq(ctr(1, 0).connects, 3);
    ck_assert_uint_eq(ctr(0, 1).disconnects, 1);
    ck_assert_uint_eq(ctr(0, 1).connects, 2);
    send_range(0, 1, 0, 5);
    RUN_UNTIL(F.n[1].got[0] == 5, WAIT_MS);
    ck_assert_uint_eq(F.n[1].got[0], 5);
    ck_assert_uint_eq(F.n[1].bad, 0);
}
END_TEST

/* 5. Destroy and recreate replica 1 (on its own listening socket): 0 redials with doubling
 * backoff while it is gone, 2 waits to be dialed, and everything flows again. */
START_TEST(test_reconnect_with_backoff)
{
    /* Replica 1 makes its own listening socket on a port picked here. */
    close(F.n[1].lfd);
    F.n[1].lfd = -1;
    start_all_connected();

    peer_link_destroy(F.n[1].l);
    F.n[1].l = NULL;
    RUN_UNTIL(ctr(0, 1).disconnects == 1 && ctr(2, 1).disconnects == 1, WAIT_MS);
    ck_assert_uint_eq(ctr(0, 1).disconnects, 1);
    ck_assert_uint_eq(ctr(2, 1).disconnects, 1);
    ck_assert(!ctr(0, 1).connected);
    send_range(0, 1, 0, 1);
    ck_assert_uint_eq(ctr(0, 1).dropped_not_connected, 1);

    /* 20, 40, 80, 160, 200 ms (+-25%): about 4 refused dials in 450 ms; without backoff ~20. */
    run_for(450);
    u64 failures = ctr(0, 1).dial_failures;
    ck_assert_msg(failures >= 2 && failures <= 7, "dial failures in 450 ms: %llu", (unsigned long long)failures);

    start(1);
    RUN_UNTIL(all_connected(), WAIT_MS);
    ck_assert(all_connected());
    ck_assert_uint_eq(ctr(0, 1).connects, 2);
    ck_assert_uint_eq(ctr(2, 1).connects, 2);
    ck_assert_uint_eq(ctr(1, 0).connects, 1);
    for (u8 a = 0; a < N; a++)
        for (u8 b = 0; b < N; b++)
            if (a != b)
                send_range(a, b, 100, 5);
    RUN_UNTIL(F.n[1].got[0] == 5 && F.n[1].got[2] == 5 && F.n[0].got[1] == 5 && F.n[2].got[1] == 5, WAIT_MS);
    ck_assert_uint_eq(F.n[1].got[0], 5);
    ck_assert_uint_eq(F.n[1].got[2], 5);
    ck_assert_uint_eq(F.n[0].got[1], 5);
    ck_assert_uint_eq(F.n[2].got[1], 5);
    ck_assert_uint_eq(F.n[0].bad + F.n[1].bad + F.n[2].bad, 0);

    /* The handshake started the backoff over: the next redial comes after about backoff_min
     * (15..25 ms), not backoff_max (150..250). */
    peer_link_destroy(F.n[1].l);
    F.n[1].l = NULL;
    RUN_UNTIL(ctr(0, 1).disconnects == 2, WAIT_MS);
    ck_assert_uint_eq(ctr(0, 1).disconnects, 2);
    failures = ctr(0, 1).dial_failures;
    run_for(100);
    ck_assert_uint_gt(ctr(0, 1).dial_failures, failures);
}
END_TEST

/* 6. A peer that stops reading: the queue fills to queue_bytes and no further; the rest is
 * dropped and counted; what was queued arrives intact and in order once it reads. */
START_TEST(test_queue_overflow_drops)
{
    F.cfg.queue_bytes = 64u << 10;
    F.cfg.idle_timeout_ms = 20000; /* the raw peer never pings */
    close(F.n[1].lfd);
    F.n[1].lfd = listener(1, 4096); /* a small window: the kernel holds little */
    start(0);                       /* replica 1 is raw, 2 absent */
    int a = raw_accept(F.n[1].lfd, WAIT_MS);
    ck_assert_int_ge(a, 0);
    u8 hello[VSR_HEADER_SIZE];
    ck_assert(raw_recv(a, hello, sizeof(hello), WAIT_MS));
    u32 n = make_hello(F.buf, CLUSTER, N, 1);
    raw_send(a, F.buf, n);
    RUN_UNTIL(ctr(0, 1).connected, WAIT_MS);
    ck_assert(ctr(0, 1).connected);

    u64 seq = 0;
    while (ctr(0, 1).dropped_queue_full == 0 && seq < 20000) {
        u32 len = make_msg(F.buf, CLUSTER, N, 0, 1, seq++, VSR_BODY_MAX);
        peer_link_send(F.n[0].l, 1, F.buf, len);
        ck_assert_uint_le(ctr(0, 1).queued_bytes, F.cfg.queue_bytes);
        event_base_loop(F.base, EVLOOP_NONBLOCK);
    }
    struct peer_counters c = ctr(0, 1);
    ck_assert_uint_eq(c.dropped_queue_full, 1);
    ck_assert_uint_gt(c.queued_bytes, F.cfg.queue_bytes - VSR_MESSAGE_MAX);
    for (u32 i = 0; i < 100; i++) {
        u32 len = make_msg(F.buf, CLUSTER, N, 0, 1, seq++, VSR_BODY_MAX);
        peer_link_send(F.n[0].l, 1, F.buf, len);
    }
    run_for(20);
    c = ctr(0, 1);
    ck_assert_uint_ge(c.dropped_queue_full, 90);
    ck_assert_uint_le(c.queued_bytes, F.cfg.queue_bytes);
    ck_assert_uint_eq(c.msgs_sent + c.dropped_queue_full, seq);
    ck_assert(c.connected);

    /* It reads again: everything sent arrives, intact, in order. */
    static u8 want[VSR_MESSAGE_MAX], got[VSR_MESSAGE_MAX];
    u64 last = 0, received = 0;
    while (received < c.msgs_sent) {
        u32 len = 0;
        ck_assert_msg(raw_recv_msg(a, got, &len, WAIT_MS), "message %llu of %llu", (unsigned long long)received,
                      (unsigned long long)c.msgs_sent);
        struct vsr_message m;
        ck_assert_int_eq(vsr_message_decode_exact(got, len, &m), VSR_DECODE_OK);
        ck_assert(received == 0 || m.h.op > last);
        last = m.h.op;
        u32 wl = make_msg(want, CLUSTER, N, 0, 1, m.h.op, VSR_BODY_MAX);
        ck_assert(wl == len && memcmp(want, got, len) == 0);
        received++;
    }
    ck_assert_uint_eq(ctr(0, 1).queued_bytes, 0);
    close(a);
}
END_TEST

/* A peer that says hello and then nothing is closed at the idle timeout and redialed. */
START_TEST(test_idle_timeout_redials)
{
    F.cfg.idle_timeout_ms = 300;
    start(0); /* replica 1 is raw, 2 absent */
    int a = raw_accept(F.n[1].lfd, WAIT_MS);
    ck_assert_int_ge(a, 0);
    u8 hello[VSR_HEADER_SIZE];
    ck_assert(raw_recv(a, hello, sizeof(hello), WAIT_MS));
    u32 n = make_hello(F.buf, CLUSTER, N, 1);
    raw_send(a, F.buf, n);
    RUN_UNTIL(ctr(0, 1).connected, WAIT_MS);
    ck_assert(ctr(0, 1).connected);
    u64 t0 = now_ms();
    ck_assert(raw_closed(a, WAIT_MS));
    u64 took = now_ms() - t0;
    ck_assert_msg(took >= 200 && took < 2000, "closed after %llu ms", (unsigned long long)took);
    close(a);
    ck_assert_uint_eq(ctr(0, 1).disconnects, 1);
    int b = raw_accept(F.n[1].lfd, WAIT_MS); /* the redial */
    ck_assert_int_ge(b, 0);
    ck_assert(raw_recv(b, hello, sizeof(hello), WAIT_MS));
    close(b);
}
END_TEST

/* 7. peer_link_block: one direction at a time, connections stay up, then it heals. */
START_TEST(test_block_isolates_and_heals)
{
    start_all_connected();

    /* 0 sends nothing to 1; 1 -> 0 still flows. */
    peer_link_block(F.n[0].l, 1, true, false);
    send_range(0, 1, 0, 5);
    send_range(1, 0, 0, 5);
    RUN_UNTIL(F.n[0].got[1] == 5, WAIT_MS);
    run_for(30);
    ck_assert_uint_eq(F.n[0].got[1], 5);
    ck_assert_uint_eq(F.n[1].got[0], 0);
    ck_assert_uint_eq(ctr(0, 1).dropped_blocked, 5);
    ck_assert_uint_eq(ctr(0, 1).msgs_sent, 0);

    /* 2 hears nothing from 0 (still read: counted received and blocked); 2 -> 0 flows. */
    peer_link_block(F.n[2].l, 0, false, true);
    send_range(0, 2, 0, 5);
    send_range(2, 0, 0, 5);
    RUN_UNTIL(F.n[0].got[2] == 5 && ctr(2, 0).msgs_received == 5, WAIT_MS);
    ck_assert_uint_eq(F.n[0].got[2], 5);
    ck_assert_uint_eq(ctr(2, 0).msgs_received, 5);
    ck_assert_uint_eq(ctr(2, 0).dropped_blocked, 5);
    ck_assert_uint_eq(F.n[2].got[0], 0);

    /* Heal. */
    peer_link_block(F.n[0].l, 1, false, false);
    peer_link_block(F.n[2].l, 0, false, false);
    send_range(0, 1, 5, 5);
    send_range(0, 2, 5, 5);
    RUN_UNTIL(F.n[1].got[0] == 5 && F.n[2].got[0] == 5, WAIT_MS);
    ck_assert_uint_eq(F.n[1].got[0], 5);
    ck_assert_uint_eq(F.n[2].got[0], 5);
    ck_assert_uint_eq(F.n[1].last_seq[0], 10);
    for (u8 a = 0; a < N; a++) {
        ck_assert_uint_eq(F.n[a].bad, 0);
        for (u8 b = 0; b < N; b++)
            if (a != b) {
                ck_assert_uint_eq(ctr(a, b).disconnects, 0);
                ck_assert(ctr(a, b).connected);
            }
    }
}
END_TEST

/* Two replicas over IPv6 loopback (skipped where ::1 cannot be bound). */
START_TEST(test_ipv6)
{
    F.cfg.replica_count = 2;
    for (u8 i = 0; i < 2; i++) {
        close(F.n[i].lfd);
        F.n[i].lfd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ck_assert_int_ge(F.n[i].lfd, 0);
        struct sockaddr_in6 a;
        memset(&a, 0, sizeof(a));
        a.sin6_family = AF_INET6;
        a.sin6_addr = in6addr_loopback;
        if (bind(F.n[i].lfd, (struct sockaddr *)&a, sizeof(a)) != 0) {
            fprintf(stderr, "# test_ipv6 skipped: bind [::1]: %s\n", strerror(errno));
            return;
        }
        ck_assert_int_eq(listen(F.n[i].lfd, 16), 0);
        socklen_t len = sizeof(a);
        ck_assert_int_eq(getsockname(F.n[i].lfd, (struct sockaddr *)&a, &len), 0);
        memset(&F.cfg.addr[i], 0, sizeof(F.cfg.addr[i]));
        memcpy(&F.cfg.addr[i], &a, sizeof(a));
        F.cfg.addr_len[i] = sizeof(a);
    }
    start(0);
    start(1);
    RUN_UNTIL(ctr(0, 1).connected && ctr(1, 0).connected, WAIT_MS);
    ck_assert(ctr(0, 1).connected && ctr(1, 0).connected);
    send_range(0, 1, 0, 10);
    send_range(1, 0, 0, 10);
    RUN_UNTIL(F.n[1].got[0] == 10 && F.n[0].got[1] == 10, WAIT_MS);
    ck_assert_uint_eq(F.n[1].got[0], 10);
    ck_assert_uint_eq(F.n[0].got[1], 10);
    ck_assert_uint_eq(F.n[0].bad + F.n[1].bad, 0);
}
END_TEST

START_TEST(test_config_refused)
{
    struct peer_config c = F.cfg;
    struct peer_link *l = NULL;
    char why[256];
    c.replica = 3;
    ck_assert_int_eq(peer_link_create(F.base, &c, -1, deliver, NULL, &l, why, sizeof(why)), -EINVAL);
    ck_assert_ptr_null(l);
    c = F.cfg;
    c.queue_bytes = VSR_MESSAGE_MAX - 1;
    ck_assert_int_eq(peer_link_create(F.base, &c, -1, deliver, NULL, &l, why, sizeof(why)), -EINVAL);
    c = F.cfg;
    c.backoff_max_ms = c.backoff_min_ms - 1;
    ck_assert_int_eq(peer_link_create(F.base, &c, -1, deliver, NULL, &l, why, sizeof(why)), -EINVAL);
    c = F.cfg;
    c.addr[2].ss_family = AF_UNIX;
    ck_assert_int_eq(peer_link_create(F.base, &c, -1, deliver, NULL, &l, why, sizeof(why)), -EINVAL);
    /* The port is taken (by the fixture's listener, without SO_REUSEPORT): bind fails. */
    c = F.cfg;
    c.replica = 0;
    ck_assert_int_eq(peer_link_create(F.base, &c, -1, deliver, NULL, &l, why, sizeof(why)), -EADDRINUSE);
    ck_assert_ptr_null(l);
    ck_assert_msg(strstr(why, "bind") != NULL, "%s", why);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("peer");
    TCase *tc = tcase_create("peer");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_all_pairs_exchange);
    tcase_add_test(tc, test_framing_partial_and_coalesced);
    tcase_add_test(tc, test_garbage_closes_only_that_connection);
    tcase_add_test(tc, test_foreign_hellos_refused);
    tcase_add_test(tc, test_new_inbound_replaces_old);
    tcase_add_test(tc, test_reconnect_with_backoff);
    tcase_add_test(tc, test_queue_overflow_drops);
    tcase_add_test(tc, test_idle_timeout_redials);
    tcase_add_test(tc, test_block_isolates_and_heals);
    tcase_add_test(tc, test_ipv6);
    tcase_add_test(tc, test_config_refused);
    suite_add_tcase(s, tc);
    return s;
}
