/*
 * tests/test_client.c — liballocdb against a fake server.
 *
 * Each test forks a tiny server (PR_SET_PDEATHSIG, so it dies with the test) that listens on
 * 127.0.0.1 at an ephemeral port, decodes frames with net/proto.h, checks what the client sent
 * (kinds, every field, operation ids across retries) and answers canned responses — in order,
 * out of order, not at all, or by dropping the connection. What the server saw travels back to
 * the test through a pipe (operation ids), and its exit status says whether all its checks held.
 * The daemon is not needed: this tests the library's framing, pipelining, timeouts, retries,
 * redirects and its interface to event loops (sockets polled by the caller) on their own.
 */
#include "common/le.h"
#include "net/allocdb.h"
#include "net/proto.h"
#include "tests/check_main.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- the fake server (runs in a forked child) ------------------------------------------------ */

#define SRV_IO_TIMEOUT_MS 10000
#define SRV_CLUSTER 7
#define SRV_SLOT_MS 10

struct fake {
    pid_t pid;
    int lfd[2];
    u16 port[2];
    int log_rd, log_wr;
    char addr[2][32];
};

static int srv_log_fd = -1;
static u32 srv_max_batch = 64;
static int srv_rcvbuf; /* SO_RCVBUF of listening sockets (accepted ones inherit it); 0: default */
static u8 srv_body[PROTO_BODY_MAX];
static u8 srv_frame[PROTO_HEADER_SIZE + PROTO_BODY_MAX];

#define SRV_CHECK(cond)                                                                    \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "fake server: %s:%d: check failed: %s\n", __FILE__, __LINE__, \
                    #cond);                                                                \
            _exit(3);                                                                      \
        }                                                                                  \
    } while (0)

static int listen_any(u16 *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (srv_rcvbuf > 0)
        ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &srv_rcvbuf, sizeof srv_rcvbuf), 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    ck_assert_int_eq(listen(fd, 16), 0);
    socklen_t len = sizeof sa;
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

/* A port nothing listens on (bound, then closed). */
static u16 dead_port(void)
{
    u16 port;
    int fd = listen_any(&port);
    close(fd);
    return port;
}

/* Accepts one connection within timeout_ms; -1 if none came. */
static int srv_accept_within(int lfd, int timeout_ms)
{
    struct pollfd p = { .fd = lfd, .events = POLLIN };
    if (poll(&p, 1, timeout_ms) <= 0)
        return -1;
    int fd = accept(lfd, NULL, NULL);
    SRV_CHECK(fd >= 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* Reads exactly len bytes; false at a clean end of stream before the first byte. */
static bool srv_read_exact(int fd, u8 *p, size_t len)
{
    size_t got = 0;
    while (got < len) {
        struct pollfd pf = { .fd = fd, .events = POLLIN };
        SRV_CHECK(poll(&pf, 1, SRV_IO_TIMEOUT_MS) == 1);
        ssize_t n = read(fd, p + got, len - got);
        if (n == 0 || (n < 0 && errno == ECONNRESET)) {
            SRV_CHECK(got == 0);
            return false;
        }
        SRV_CHECK(n > 0);
        got += (size_t)n;
    }
    return true;
}

/* The next frame, checked; false at end of stream. The body is in srv_body. */
static bool srv_read_frame(int fd, struct proto_header *h)
{
    u8 hdr[PROTO_HEADER_SIZE];
    if (!srv_read_exact(fd, hdr, sizeof hdr))
        return false;
    SRV_CHECK(proto_header_decode(hdr, sizeof hdr, PROTO_BODY_MAX, h) == PROTO_OK);
    memcpy(srv_frame, hdr, sizeof hdr);
    if (h->body_len > 0)
        SRV_CHECK(srv_read_exact(fd, srv_frame + PROTO_HEADER_SIZE, h->body_len));
    SRV_CHECK(proto_frame_check(srv_frame, PROTO_HEADER_SIZE + h->body_len) == PROTO_OK);
    memcpy(srv_body, srv_frame + PROTO_HEADER_SIZE, h->body_len);
    return true;
}

static void srv_write_all(int fd, const u8 *p, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        SRV_CHECK(n > 0);
        p += n;
        len -= (size_t)n;
    }
}

/* Sends a frame whose body the caller wrote at frame + PROTO_HEADER_SIZE. */
static void srv_send_built(int fd, u8 *frame, u8 kind, u64 rid, u32 body_len)
{
    size_t n = proto_frame_finish(frame, PROTO_HEADER_SIZE + body_len, kind, rid, body_len);
    srv_write_all(fd, frame, n);
}

static u8 out_frame[PROTO_HEADER_SIZE + PROTO_BODY_MAX];

static void srv_send(int fd, u8 kind, u64 rid, const void *body, u32 body_len)
{
    if (body_len > 0)
        memcpy(out_frame + PROTO_HEADER_SIZE, body, body_len);
    srv_send_built(fd, out_frame, kind, rid, body_len);
}

static void srv_send_error(int fd, u64 rid, u16 code, const char *msg)
{
    u32 len = proto_put_error(out_frame + PROTO_HEADER_SIZE, code, msg, (u32)strlen(msg));
    srv_send_built(fd, out_frame, PROTO_ERROR, rid, len);
}

/* Reads the hello (checking version 1 and the cluster the client names) and answers it. */
static void srv_hello(int fd, u128 expect_cluster)
{
    struct proto_header h;
    SRV_CHECK(srv_read_frame(fd, &h));
    SRV_CHECK(h.kind == PROTO_HELLO && h.request_id == 0);
    struct proto_hello hello;
    SRV_CHECK(proto_get_hello(srv_body, h.body_len, &hello) == PROTO_OK);
    SRV_CHECK(hello.version == 1);
    SRV_CHECK(hello.cluster_id == expect_cluster);
    struct proto_hello_ok ok = { .version = 1, .max_batch = srv_max_batch,
                                 .cluster_id = SRV_CLUSTER, .replica_id = 1,
                                 .slot_duration_ms = SRV_SLOT_MS, .max_body = PROTO_BODY_MAX,
                                 .view = 3 };
    u32 len = proto_put_hello_ok(out_frame + PROTO_HEADER_SIZE, &ok);
    srv_send_built(fd, out_frame, PROTO_HELLO_OK, 0, len);
}

static int srv_accept_hello(int lfd, u128 expect_cluster)
{
    int fd = srv_accept_within(lfd, SRV_IO_TIMEOUT_MS);
    SRV_CHECK(fd >= 0);
    srv_hello(fd, expect_cluster);
    return fd;
}

/* Reads a submit into cmds (at most cap); returns the count and the request id. */
static u32 srv_read_submit(int fd, struct proto_command *cmds, u32 cap, u64 *rid)
{
    struct proto_header h;
    SRV_CHECK(srv_read_frame(fd, &h));
    SRV_CHECK(h.kind == PROTO_SUBMIT);
    u32 count;
    SRV_CHECK(proto_get_submit(srv_body, h.body_len, srv_max_batch, &count) == PROTO_OK);
    SRV_CHECK(count <= cap);
    for (u32 i = 0; i < count; i++)
        SRV_CHECK(proto_get_command(srv_body + PROTO_SUBMIT_PREFIX + (size_t)i * PROTO_COMMAND_SIZE,
                                    &cmds[i]) == PROTO_OK);
    *rid = h.request_id;
    return count;
}

static void srv_send_results(int fd, u64 rid, const struct proto_result *r, u32 n)
{
    u8 *b = out_frame + PROTO_HEADER_SIZE;
    u32 len = proto_put_submit_result_prefix(b, n);
    for (u32 i = 0; i < n; i++)
        proto_put_result(b + len + (size_t)i * PROTO_RESULT_SIZE, &r[i]);
    srv_send_built(fd, out_frame, PROTO_SUBMIT_RESULT, rid, len + n * PROTO_RESULT_SIZE);
}

static void srv_send_result(int fd, u64 rid, struct proto_result r)
{
    srv_send_results(fd, rid, &r, 1);
}

static struct proto_result committed(u8 code, u64 lsn)
{
    return (struct proto_result){ .outcome = PROTO_COMMITTED, .code = code, .applied_lsn = lsn };
}

static void srv_log(u128 v)
{
    u8 b[16];
    le_put_u128(b, v);
    SRV_CHECK(write(srv_log_fd, b, sizeof b) == (ssize_t)sizeof b);
}

/* Waits for the client to close (end of stream), answering nothing. */
static void srv_expect_eof(int fd)
{
    struct proto_header h;
    SRV_CHECK(!srv_read_frame(fd, &h));
    close(fd);
}

static void fake_start(struct fake *f, int nlisten, void (*server)(struct fake *))
{
    memset(f, 0, sizeof *f);
    for (int i = 0; i < nlisten; i++) {
        f->lfd[i] = listen_any(&f->port[i]);
        snprintf(f->addr[i], sizeof f->addr[i], "127.0.0.1:%u", f->port[i]);
    }
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    f->log_rd = p[0];
    f->log_wr = p[1];
    pid_t parent = getpid();
    f->pid = fork();
    ck_assert_int_ge(f->pid, 0);
    if (f->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(4);
        close(f->log_rd);
        srv_log_fd = f->log_wr;
        server(f);
        _exit(0);
    }
    close(f->log_wr);
    for (int i = 0; i < nlisten; i++)
        close(f->lfd[i]);
}

/* The next operation id the server logged. */
static u128 fake_read_u128(struct fake *f)
{
    u8 b[16];
    size_t got = 0;
    while (got < sizeof b) {
        struct pollfd p = { .fd = f->log_rd, .events = POLLIN };
        ck_assert_int_eq(poll(&p, 1, 10000), 1);
        ssize_t n = read(f->log_rd, b + got, sizeof b - got);
        ck_assert_int_gt(n, 0);
        got += (size_t)n;
    }
    return le_get_u128(b);
}

/* Waits for the server to finish; it must exit 0 (all its checks held). */
static void fake_finish(struct fake *f)
{
    int status = 0;
    for (int i = 0; i < 2000; i++) {
        pid_t r = waitpid(f->pid, &status, WNOHANG);
        if (r == f->pid)
            break;
        ck_assert_int_eq(r, 0);
        struct timespec ts = { 0, 10 * 1000 * 1000 };
        nanosleep(&ts, NULL);
        if (i == 1999) {
            kill(f->pid, SIGKILL);
            waitpid(f->pid, &status, 0);
            ck_abort_msg("fake server did not finish");
        }
    }
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "fake server failed (status 0x%x)", status);
    close(f->log_rd);
}

static allocdb_client *client_for(const char *addrs)
{
    allocdb_client *c = allocdb_new();
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(allocdb_set_addresses(c, addrs), ALLOCDB_OK);
    ck_assert_int_eq(allocdb_set_timeouts(c, 1000, 2000, 4000), ALLOCDB_OK);
    return c;
}

static u64 mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (u64)ts.tv_sec * 1000u + (u64)ts.tv_nsec / 1000000u;
}

/* ---- handshake ------------------------------------------------------------------------------- */

static void server_handshake(struct fake *f)
{
    /* First connection: the client names no cluster; it asks for status. */
    int fd = srv_accept_hello(f->lfd[0], 0);
    struct proto_header h;
    SRV_CHECK(srv_read_frame(fd, &h));
    SRV_CHECK(h.kind == PROTO_STATUS && h.body_len == 0);
    const char *json = "{\"role\":\"primary\"}";
    srv_send(fd, PROTO_STATUS_OK, h.request_id, json, (u32)strlen(json));
    srv_expect_eof(fd);
    /* Second: the client reconnects and now names the cluster it found (pinned). */
    fd = srv_accept_hello(f->lfd[0], SRV_CLUSTER);
    srv_expect_eof(fd);
    /* Third: a hello for the wrong cluster is refused. */
    fd = srv_accept_within(f->lfd[0], SRV_IO_TIMEOUT_MS);
    SRV_CHECK(fd >= 0);
    SRV_CHECK(srv_read_frame(fd, &h));
    SRV_CHECK(h.kind == PROTO_HELLO);
    struct proto_hello hello;
    SRV_CHECK(proto_get_hello(srv_body, h.body_len, &hello) == PROTO_OK);
    SRV_CHECK(hello.cluster_id == 99);
    srv_send_error(fd, 0, PROTO_ERR_WRONG_CLUSTER, "this is cluster 7");
    srv_expect_eof(fd);
}

START_TEST(test_handshake)
{
    struct fake f;
    fake_start(&f, 1, server_handshake);
    allocdb_client *c = allocdb_new();
    ck_assert_ptr_nonnull(c);
    ck_assert(!allocdb_is_connected(c));
    struct allocdb_server_info info;
    ck_assert_int_eq(allocdb_server_info(c, &info), ALLOCDB_ERR_CONNECTION);
    ck_assert_int_eq(allocdb_connect(c, f.addr[0]), ALLOCDB_OK);
    ck_assert(allocdb_is_connected(c));
    ck_assert_int_eq(allocdb_server_info(c, &info), ALLOCDB_OK);
    ck_assert_str_eq(info.address, f.addr[0]);
    ck_assert(info.cluster_id == SRV_CLUSTER);
    ck_assert_uint_eq(info.replica_id, 1);
    ck_assert_uint_eq(info.view, 3);
    ck_assert_uint_eq(info.slot_duration_ms, SRV_SLOT_MS);
    ck_assert_uint_eq(info.max_batch, 64);
    ck_assert_uint_eq(info.max_body, PROTO_BODY_MAX);
    char *json = NULL;
    size_t len = 0;
    ck_assert_int_eq(allocdb_status(c, &json, &len), ALLOCDB_OK);
    ck_assert_str_eq(json, "{\"role\":\"primary\"}");
    ck_assert_uint_eq(len, strlen(json));
    free(json);
    allocdb_disconnect(c);
    ck_assert(!allocdb_is_connected(c));
    ck_assert_int_eq(allocdb_connect(c, NULL), ALLOCDB_OK); /* names cluster 7 now */
    allocdb_disconnect(c);
    ck_assert_int_eq(allocdb_set_cluster_id(c, 99), ALLOCDB_OK);
    ck_assert_int_eq(allocdb_connect(c, NULL), ALLOCDB_ERR_SERVER); /* refused, not absent */
    ck_assert_ptr_nonnull(strstr(allocdb_last_error(c), "wrong_cluster"));
    ck_assert_int_eq(allocdb_socket(c), -1);
    allocdb_free(c);
    fake_finish(&f);
}
END_TEST

/* ---- every synchronous call's encoding ------------------------------------------------------- */

#define CLIENT_ID ((u128)0x55 << 64 | 0x66)
#define RSV_ID ((u128)2) /* shard 0, LSN 2 */

static void server_encoding(struct fake *f)
{
    int fd = srv_accept_hello(f->lfd[0], 0);
    struct proto_command cmd;
    u64 rid;
    struct proto_header h;

    /* create_resource 100, generated operation id */
    SRV_CHECK(srv_read_submit(fd, &cmd, 1, &rid) == 1);
    SRV_CHECK(cmd.kind == 1 && cmd.operation_id != 0 && cmd.client_id == CLIENT_ID &&
              cmd.target == 100 && cmd.holder_id == 0 && cmd.ttl_ms == 0);
    srv_log(cmd.operation_id);
    srv_send_result(fd, rid, committed(0, 1));

    /* reserve 100 for 200, 30 s, operation id 0xabc given by the caller */
    SRV_CHECK(srv_read_submit(fd, &cmd, 1, &rid) == 1);
    SRV_CHECK(cmd.kind == 2 && cmd.operation_id == 0xabc && cmd.client_id == CLIENT_ID &&
              cmd.target == 100 && cmd.holder_id == 200 && cmd.ttl_ms == 30000);
    struct proto_result r = committed(0, 2);
    r.reservation_id = RSV_ID;
    r.deadline_slot = 3002;
    srv_send_result(fd, rid, r);

    /* confirm reservation 2 by 200 */
    SRV_CHECK(srv_read_submit(fd, &cmd, 1, &rid) == 1);
    SRV_CHECK(cmd.kind == 3 && cmd.operation_id != 0 && cmd.target == RSV_ID &&
              cmd.holder_id == 200 && cmd.ttl_ms == 0);
    srv_log(cmd.operation_id);
    srv_send_result(fd, rid, committed(0, 3));

    /* release reservation 2 by 201: a committed domain failure, from the retry cache */
    SRV_CHECK(srv_read_submit(fd, &cmd, 1, &rid) == 1);
    SRV_CHECK(cmd.kind == 4 && cmd.target == RSV_ID && cmd.holder_id == 201);
    srv_log(cmd.operation_id);
    r = committed(14, 3); /* holder_mismatch */
    r.from_retry_cache = true;
    srv_send_result(fd, rid, r);

    /* get_resource 100, min_lsn 4 */
    SRV_CHECK(srv_read_frame(fd, &h) && h.kind == PROTO_GET_RESOURCE);
    struct proto_read rd;
    SRV_CHECK(proto_get_read(srv_body, h.body_len, &rd) == PROTO_OK);
    SRV_CHECK(rd.id == 100 && rd.min_lsn == 4);
    struct proto_resource res = { .read = 0, .state = 2, .applied_lsn = 4, .resource_id = 100,
                                  .current_reservation_id = RSV_ID, .version = 2 };
    u32 len = proto_put_resource(out_frame + PROTO_HEADER_SIZE, &res);
    srv_send_built(fd, out_frame, PROTO_RESOURCE, h.request_id, len);

    /* get_reservation 2, no fence */
    SRV_CHECK(srv_read_frame(fd, &h) && h.kind == PROTO_GET_RESERVATION);
    SRV_CHECK(proto_get_read(srv_body, h.body_len, &rd) == PROTO_OK);
    SRV_CHECK(rd.id == RSV_ID && rd.min_lsn == 0);
    struct proto_reservation rv = { .read = 0, .state = 1, .applied_lsn = 4,
                                    .reservation_id = RSV_ID, .resource_id = 100,
                                    .holder_id = 200, .created_lsn = 2, .deadline_slot = 3002,
                                    .released_lsn = 0, .retire_after_slot = 0 };
    len = proto_put_reservation(out_frame + PROTO_HEADER_SIZE, &rv);
    srv_send_built(fd, out_frame, PROTO_RESERVATION, h.request_id, len);

    /* a fenced read the server has not reached */
    SRV_CHECK(srv_read_frame(fd, &h) && h.kind == PROTO_GET_RESERVATION);
    SRV_CHECK(proto_get_read(srv_body, h.body_len, &rd) == PROTO_OK && rd.min_lsn == 1000);
    rv = (struct proto_reservation){ .read = 3, .applied_lsn = 4 };
    len = proto_put_reservation(out_frame + PROTO_HEADER_SIZE, &rv);
    srv_send_built(fd, out_frame, PROTO_RESERVATION, h.request_id, len);

    /* tick */
    SRV_CHECK(srv_read_frame(fd, &h) && h.kind == PROTO_TICK && h.body_len == 0);
    struct proto_tick_ok t = { .slot = 77, .expirations_proposed = 5 };
    len = proto_put_tick_ok(out_frame + PROTO_HEADER_SIZE, &t);
    srv_send_built(fd, out_frame, PROTO_TICK_OK, h.request_id, len);

    /* metrics */
    SRV_CHECK(srv_read_frame(fd, &h) && h.kind == PROTO_METRICS && h.body_len == 0);
    srv_send(fd, PROTO_METRICS_OK, h.request_id, "{\"a\":1}", 7);

    /* status */
    SRV_CHECK(srv_read_frame(fd, &h) && h.kind == PROTO_STATUS && h.body_len == 0);
    srv_send(fd, PROTO_STATUS_OK, h.request_id, "{}", 2);
    srv_expect_eof(fd);
}

START_TEST(test_sync_encoding)
{
    struct fake f;
    fake_start(&f, 1, server_encoding);
    allocdb_client *c = client_for(f.addr[0]);
    ck_assert_int_eq(allocdb_set_client_id(c, CLIENT_ID), ALLOCDB_OK);
    struct allocdb_result r;

    ck_assert_int_eq(allocdb_create_resource(c, 0, 100, &r), ALLOCDB_OK);
    ck_assert_uint_eq(r.outcome, ALLOCDB_COMMITTED);
    ck_assert_uint_eq(r.code, ALLOCDB_RESULT_OK);
    ck_assert_uint_eq(r.applied_lsn, 1);
    ck_assert_uint_eq(r.attempts, 1);
    ck_assert(r.operation_id != 0);
    ck_assert(r.operation_id == fake_read_u128(&f));

    ck_assert_int_eq(allocdb_reserve(c, 0xabc, 100, 200, 30000, &r), ALLOCDB_OK);
    ck_assert_uint_eq(r.outcome, ALLOCDB_COMMITTED);
    ck_assert(r.operation_id == 0xabc);
    ck_assert(r.reservation_id == RSV_ID);
    ck_assert_uint_eq(r.deadline_slot, 3002);
    ck_assert_uint_eq(r.applied_lsn, 2);
    ck_assert(!r.from_retry_cache);

    ck_assert_int_eq(allocdb_confirm(c, 0, RSV_ID, 200, &r), ALLOCDB_OK);
    ck_assert_uint_eq(r.outcome, ALLOCDB_COMMITTED);
    ck_assert(r.operation_id == fake_read_u128(&f));

    ck_assert_int_eq(allocdb_release(c, 0, RSV_ID, 201, &r), ALLOCDB_OK);
    ck_assert_uint_eq(r.outcome, ALLOCDB_COMMITTED);
    ck_assert_uint_eq(r.code, ALLOCDB_RESULT_HOLDER_MISMATCH);
    ck_assert_str_eq(allocdb_result_name(r.outcome, r.code), "holder_mismatch");
    ck_assert(r.from_retry_cache);
    ck_assert(r.operation_id == fake_read_u128(&f));

    struct allocdb_resource res;
    ck_assert_int_eq(allocdb_get_resource(c, 100, 4, &res), ALLOCDB_OK);
    ck_assert_uint_eq(res.read, ALLOCDB_READ_FOUND);
    ck_assert_uint_eq(res.state, ALLOCDB_RESOURCE_CONFIRMED);
    ck_assert(res.resource_id == 100 && res.current_reservation_id == RSV_ID);
    ck_assert_uint_eq(res.version, 2);
    ck_assert_uint_eq(res.applied_lsn, 4);

    struct allocdb_reservation rv;
    ck_assert_int_eq(allocdb_get_reservation(c, RSV_ID, 0, &rv), ALLOCDB_OK);
    ck_assert_uint_eq(rv.read, ALLOCDB_READ_FOUND);
    ck_assert_uint_eq(rv.state, ALLOCDB_RESERVATION_CONFIRMED);
    ck_assert(rv.reservation_id == RSV_ID && rv.resource_id == 100 && rv.holder_id == 200);
    ck_assert_uint_eq(rv.created_lsn, 2);
    ck_assert_uint_eq(rv.deadline_slot, 3002);

    ck_assert_int_eq(allocdb_get_reservation(c, RSV_ID, 1000, &rv), ALLOCDB_OK);
    ck_assert_uint_eq(rv.read, ALLOCDB_READ_FENCE_NOT_APPLIED);
    ck_assert_uint_eq(rv.applied_lsn, 4);

    struct allocdb_tick t;
    ck_assert_int_eq(allocdb_tick(c, &t), ALLOCDB_OK);
    ck_assert_uint_eq(t.slot, 77);
    ck_assert_uint_eq(t.expirations_proposed, 5);

    char *json;
    ck_assert_int_eq(allocdb_metrics(c, &json, NULL), ALLOCDB_OK);
    ck_assert_str_eq(json, "{\"a\":1}");
    free(json);
    ck_assert_int_eq(allocdb_status(c, &json, NULL), ALLOCDB_OK);
    ck_assert_str_eq(json, "{}");
    free(json);
    allocdb_free(c);
    fake_finish(&f);
}
END_TEST

/* ---- pipelining ------------------------------------------------------------------------------ */

#define PIPE_N 60

static void server_pipeline(struct fake *f)
{
    int fd = srv_accept_hello(f->lfd[0], 0);
    static struct {
        u64 rid;
        u8 kind;
        u128 id;
        u32 count;
    } req[PIPE_N];
    /* Read every request before answering any. */
    for (int i = 0; i < PIPE_N; i++) {
        struct proto_header h;
        SRV_CHECK(srv_read_frame(fd, &h));
        req[i].rid = h.request_id;
        req[i].kind = h.kind;
        if (h.kind == PROTO_SUBMIT) {
            u32 count;
            SRV_CHECK(proto_get_submit(srv_body, h.body_len, 64, &count) == PROTO_OK);
            struct proto_command cmd;
            SRV_CHECK(proto_get_command(srv_body + PROTO_SUBMIT_PREFIX, &cmd) == PROTO_OK);
            req[i].id = cmd.target;
            req[i].count = count;
        } else {
            SRV_CHECK(h.kind == PROTO_GET_RESOURCE);
            struct proto_read rd;
            SRV_CHECK(proto_get_read(srv_body, h.body_len, &rd) == PROTO_OK);
            req[i].id = rd.id;
        }
        for (int j = 0; j < i; j++)
            SRV_CHECK(req[j].rid != req[i].rid); /* request ids are unique */
    }
    /* Answer in reverse order: each answer carries the id it was asked about. */
    for (int i = PIPE_N - 1; i >= 0; i--) {
        if (req[i].kind == PROTO_SUBMIT) {
            struct proto_result r[8];
            for (u32 j = 0; j < req[i].count; j++)
                r[j] = committed(0, (u64)req[i].id + j);
            srv_send_results(fd, req[i].rid, r, req[i].count);
        } else {
            struct proto_resource res = { .read = 0, .state = 0, .applied_lsn = 9,
                                          .resource_id = req[i].id,
                                          .version = (u64)req[i].id };
            u32 len = proto_put_resource(out_frame + PROTO_HEADER_SIZE, &res);
            srv_send_built(fd, out_frame, PROTO_RESOURCE, req[i].rid, len);
        }
    }
    srv_expect_eof(fd);
}

START_TEST(test_pipelined_out_of_order)
{
    struct fake f;
    fake_start(&f, 1, server_pipeline);
    allocdb_client *c = client_for(f.addr[0]);
    ck_assert_int_eq(allocdb_connect(c, NULL), ALLOCDB_OK);
    static u64 rids[PIPE_N];
    static struct allocdb_command cmds[PIPE_N][3];
    for (int i = 0; i < PIPE_N; i++) {
        if (i % 3 == 0) {
            ck_assert_int_eq(allocdb_send_get_resource(c, 5000 + i, 0, &rids[i]), ALLOCDB_OK);
        } else {
            u32 n = i % 2 == 0 ? 3 : 1;
            for (u32 j = 0; j < n; j++)
                cmds[i][j] = (struct allocdb_command){ .kind = ALLOCDB_CREATE_RESOURCE,
                                                       .target = (u128)(1000 * i + (int)j) };
            ck_assert_int_eq(allocdb_send_submit(c, cmds[i], n, &rids[i]), ALLOCDB_OK);
            for (u32 j = 0; j < n; j++)
                ck_assert(cmds[i][j].operation_id != 0); /* written back at send */
        }
        ck_assert_uint_ne(rids[i], 0);
    }
    ck_assert_uint_eq(allocdb_in_flight(c), PIPE_N);
    ck_assert_int_eq(allocdb_flush(c, 2000), ALLOCDB_OK);
    bool seen[PIPE_N] = { false };
    int last = PIPE_N;
    for (int k = 0; k < PIPE_N; k++) {
        struct allocdb_reply r;
        ck_assert_int_eq(allocdb_poll(c, 5000, &r), 1);
        int i = -1;
        for (int j = 0; j < PIPE_N; j++)
            if (rids[j] == r.request_id)
                i = j;
        ck_assert_int_ge(i, 0);
        ck_assert(!seen[i]);
        seen[i] = true;
        ck_assert_int_lt(i, last); /* they came back in reverse order */
        last = i;
        if (i % 3 == 0) {
            ck_assert_uint_eq(r.kind, ALLOCDB_REPLY_RESOURCE);
            ck_assert_uint_eq(r.request_kind, ALLOCDB_REQ_GET_RESOURCE);
            ck_assert(r.u.resource.resource_id == (u128)(5000 + i));
            ck_assert_uint_eq(r.u.resource.version, 5000 + i);
        } else {
            ck_assert_uint_eq(r.kind, ALLOCDB_REPLY_SUBMIT);
            u32 n = i % 2 == 0 ? 3 : 1;
            ck_assert_uint_eq(r.count, n);
            for (u32 j = 0; j < n; j++) {
                struct allocdb_result res;
                ck_assert_int_eq(allocdb_reply_result(&r, j, &res), ALLOCDB_OK);
                ck_assert_uint_eq(res.outcome, ALLOCDB_COMMITTED);
                ck_assert_uint_eq(res.applied_lsn, 1000u * (unsigned)i + j);
            }
            struct allocdb_result res;
            ck_assert_int_eq(allocdb_reply_result(&r, n, &res), ALLOCDB_ERR_INVALID);
        }
    }
    ck_assert_uint_eq(allocdb_in_flight(c), 0);
    struct allocdb_reply r;
    ck_assert_int_eq(allocdb_poll(c, 50, &r), 0);
    allocdb_free(c);
    fake_finish(&f);
}
END_TEST

static void server_window(struct fake *f)
{
    int fd = srv_accept_hello(f->lfd[0], 0);
    for (int i = 0; i < 3; i++) {
        struct proto_header h;
        SRV_CHECK(srv_read_frame(fd, &h) && h.kind == PROTO_TICK);
        struct proto_tick_ok t = { .slot = (u64)i };
        u32 len = proto_put_tick_ok(out_frame + PROTO_HEADER_SIZE, &t);
        srv_send_built(fd, out_frame, PROTO_TICK_OK, h.request_id, len);
    }
    srv_expect_eof(fd);
}

START_TEST(test_window_full)
{
    struct fake f;
    fake_start(&f, 1, server_window);
    allocdb_client *c = client_for(f.addr[0]);
    ck_assert_int_eq(allocdb_set_window(c, 2), ALLOCDB_OK);
    u64 a, b, x;
    ck_assert_int_eq(allocdb_send_tick(c, &a), ALLOCDB_OK);
    ck_assert_int_eq(allocdb_send_tick(c, &b), ALLOCDB_OK);
    ck_assert_int_eq(allocdb_send_tick(c, &x), ALLOCDB_ERR_WINDOW_FULL);
    ck_assert_int_eq(allocdb_set_window(c, 8), ALLOCDB_ERR_BUSY);
    struct allocdb_result res;
    ck_assert_int_eq(allocdb_create_resource(c, 0, 1, &res), ALLOCDB_ERR_BUSY);
    struct allocdb_reply r;
    ck_assert_int_eq(allocdb_poll(c, 5000, &r), 1);
    ck_assert_uint_eq(r.request_id, a);
    ck_assert_uint_eq(r.kind, ALLOCDB_REPLY_TICK);
    ck_assert_int_eq(allocdb_send_tick(c, &x), ALLOCDB_OK); /* a slot is free again */
    ck_assert_int_eq(allocdb_poll(c, 5000, &r), 1);
    ck_assert_uint_eq(r.request_id, b);
    ck_assert_int_eq(allocdb_poll(c, 5000, &r), 1);
    ck_assert_uint_eq(r.request_id, x);
    ck_assert_uint_eq(r.u.tick.slot, 2);
    allocdb_free(c);
    fake_finish(&f);
}
END_TEST

/* ---- a lost connection: the same operation id again ------------------------------------------ */

static void server_lost(struct fake *f)
{
    int fd = srv_accept_hello(f->lfd[0], 0);
    struct proto_command first, again;
    u64 rid;
    SRV_CHECK(srv_read_submit(fd, &first, 1, &rid) == 1);
    srv_log(first.operation_id);
    close(fd); /* mid-request: the client cannot know whether it executed */
    fd = srv_accept_hello(f->lfd[0], SRV_CLUSTER);
    SRV_CHECK(srv_read_submit(fd, &again, 1, &rid) == 1);
    SRV_CHECK(again.operation_id == first.operation_id);
    SRV_CHECK(again.kind == first.kind && again.target == first.target &&
              again.holder_id == first.holder_id && again.ttl_ms == first.ttl_ms &&
              again.client_id == first.client_id);
    struct proto_result r = committed(0, 11);
    r.reservation_id = 11;
    r.deadline_slot = 500;
    r.from_retry_cache = true;
    srv_send_result(fd, rid, r);
    srv_expect_eof(fd);
}

START_TEST(test_lost_connection_retries_same_op)
{
    struct fake f;
    fake_start(&f, 1, server_lost);
    allocdb_client *c = client_for(f.addr[0]);
    struct allocdb_result r;
    ck_assert_int_eq(allocdb_reserve(c, 0, 7, 8, 1000, &r), ALLOCDB_OK);
    ck_assert_uint_eq(r.outcome, ALLOCDB_COMMITTED);
    ck_assert_uint_eq(r.code, ALLOCDB_RESULT_OK);
    ck_assert(r.from_retry_cache);
    ck_assert(r.reservation_id == 11);
    ck_assert_uint_eq(r.attempts, 2);
    ck_assert(r.operation_id == fake_read_u128(&f));
    allocdb_free(c);
    fake_finish(&f);
}
END_TEST

/* A reply with a bad checksum is a broken connection: reconnect, resend the same op. */
static void server_bad_crc(struct fake *f)
{
    int fd = srv_accept_hello(f->lfd[0], 0);
    struct proto_command first, again;
    u64 rid;
    SRV_CHECK(srv_read_submit(fd, &first, 1, &rid) == 1);
    struct proto_result r = committed(0, 1);
    u8 *b = out_frame + PROTO_HEADER_SIZE;
    u32 len = proto_put_submit_result_prefix(b, 1);
    proto_put_result(b + len, &r);
    size_t n = proto_frame_finish(out_frame, PROTO_HEADER_SIZE + len + PROTO_RESULT_SIZE,
                                  PROTO_SUBMIT_RESULT, rid, len + PROTO_RESULT_SIZE);
    out_frame[n - 1] ^= 0x40; /* flip a body bit */
    srv_write_all(fd, out_frame, n);
    srv_expect_eof(fd); /* the client drops the connection */
    fd = srv_accept_hello(f->lfd[0], SRV_CLUSTER);
    SRV_CHECK(srv_read_submit(fd, &again, 1, &rid) == 1);
    SRV_CHECK(again.operation_id == first.operation_id);
    r.from_retry_cache = true;
    srv_send_result(fd, rid, r);
    srv_expect_eof(fd);
}

START_TEST(test_bad_checksum_reconnects)
{
    struct fake f;
    fake_start(&f, 1, server_bad_crc);
    allocdb_client *c = client_for(f.addr[0]);
    struct allocdb_result r;
    ck_assert_int_eq(allocdb_create_resource(c, 0, 1, &r), ALLOCDB_OK);
    ck_assert_uint_eq(r.outcome, ALLOCDB_COMMITTED);
    ck_assert(r.from_retry_cache);
    ck_assert_uint_eq(r.attempts, 2);
    allocdb_free(c);
    fake_finish(&f);
}
END_TEST

/* ---- indefinite results from the server are retried ------------------------------------------ */

static void server_worker_restarted(struct fake *f)
{
    int fd = srv_accept_hello(f->lfd[0], 0);
    struct proto_command first, again;
    u64 rid;
    SRV_CHECK(srv_read_submit(fd, &first, 1, &rid) == 1);
    struct proto_result r = { .outcome = PROTO_INDEFINITE,
                              .code = PROTO_INDEFINITE_WORKER_RESTARTED };
    srv_send_result(fd, rid, r);
    /* Same connection: the client resends the same operation. */
    SRV_CHECK(srv_read_submit(fd, &again, 1, &rid) == 1);
    SRV_CHECK(again.operation_id == first.operation_id);
    /* This time a definite rejection — but an earlier attempt was indefinite, so the client
     * must not report "rejected": the outcome stays open (indefinite). */
    r = (struct proto_result){ .outcome = PROTO_REJECTED, .code = PROTO_REJECT_SLOT_OVERFLOW };
    srv_send_result(fd, rid, r);
    srv_expect_eof(fd);
}

START_TEST(test_indefinite_result_retried)
{
    struct fake f;
    fake_start(&f, 1, server_worker_restarted);
    allocdb_client *c = client_for(f.addr[0]);
    struct allocdb_result r;
    ck_assert_int_eq(allocdb_confirm(c, 0, 5, 6, &r), ALLOCDB_OK);
    ck_assert_uint_eq(r.outcome, ALLOCDB_INDEFINITE);
    ck_assert_uint_eq(r.code, ALLOCDB_INDEFINITE_WORKER_RESTARTED);
    ck_assert_uint_eq(r.attempts, 2);
    allocdb_free(c);
    fake_finish(&f);
}
END_TEST

/* ---- the deadline: indefinite, with the operation id to retry -------------------------------- */

static void server_silent(struct fake *f)
{
    u128 op = 0;
    int conns = 0;
    for (;;) {
        int fd = srv_accept_within(f->lfd[0], conns == 0 ? SRV_IO_TIMEOUT_MS : 1500);
        if (fd < 0)
            break;
        conns++;
        srv_hello(fd, conns == 1 ? 0 : SRV_CLUSTER);
        struct proto_header h;
        while (srv_read_frame(fd, &h)) { /* never answers */
            SRV_CHECK(h.kind == PROTO_SUBMIT);
            struct proto_command cmd;
            SRV_CHECK(proto_get_command(srv_body + PROTO_SUBMIT_PREFIX, &cmd) == PROTO_OK);
            if (op == 0) {
                op = cmd.operation_id;
                srv_log(op);
            }
            SRV_CHECK(cmd.operation_id == op);
        }
        close(fd);
    }
    SRV_CHECK(conns >= 2); /* the client reconnected after a request timeout */
}

START_TEST(test_deadline_indefinite)
{
    struct fake f;
    fake_start(&f, 1, server_silent);
    allocdb_client *c = client_for(f.addr[0]);
    ck_assert_int_eq(allocdb_set_timeouts(c, 500, 150, 700), ALLOCDB_OK);
    struct allocdb_result r;
    u64 t0 = mono_ms();
    ck_assert_int_eq(allocdb_create_resource(c, 0, 42, &r), ALLOCDB_OK);
    u64 took = mono_ms() - t0;
    ck_assert_uint_ge(took, 650);
    ck_assert_uint_lt(took, 3000);
    ck_assert_uint_eq(r.outcome, ALLOCDB_INDEFINITE);
    ck_assert_uint_eq(r.code, ALLOCDB_INDEFINITE_CLIENT_TIMEOUT);
    ck_assert_str_eq(allocdb_result_name(r.outcome, r.code), "client_timeout");
    ck_assert_uint_ge(r.attempts, 2);
    ck_assert(r.operation_id != 0);
    ck_assert(r.operation_id == fake_read_u128(&f));
    allocdb_free(c);
    fake_finish(&f);
}
END_TEST

/* Async: a request without a reply past the request timeout comes back LOST. */
static void server_silent_async(struct fake *f)
{
    int fd = srv_accept_hello(f->lfd[0], 0);
    struct proto_header h;
    SRV_CHECK(srv_read_frame(fd, &h) && h.kind == PROTO_GET_RESOURCE);
    srv_expect_eof(fd);
}

START_TEST(test_async_request_timeout)
{
    struct fake f;
    fake_start(&f, 1, server_silent_async);
    allocdb_client *c = client_for(f.addr[0]);
    ck_assert_int_eq(allocdb_set_timeouts(c, 500, 200, 1000), ALLOCDB_OK);
    u64 rid;
    ck_assert_int_eq(allocdb_send_get_resource(c, 1, 0, &rid), ALLOCDB_OK);
    struct allocdb_reply r;
    u64 t0 = mono_ms();
    ck_assert_int_eq(allocdb_poll(c, 5000, &r), 1);
    ck_assert_uint_ge(mono_ms() - t0, 150);
    ck_assert_uint_eq(r.request_id, rid);
    ck_assert_uint_eq(r.kind, ALLOCDB_REPLY_LOST);
    ck_assert_uint_eq(r.u.lost_code, ALLOCDB_INDEFINITE_CLIENT_TIMEOUT);
    ck_assert(!allocdb_is_connected(c));
    allocdb_free(c);
    fake_finish(&f);
}
END_TEST

/* ---- not_primary ----------------------------------------------------------------------------- */

static void server_not_primary(struct fake *f)
{
    /* A: not the primary; points at B. */
    int fa = srv_accept_hello(f->lfd[0], 0);
    struct proto_command first, again;
    u64 rid;
    SRV_CHECK(srv_read_submit(fa, &first, 1, &rid) == 1);
    u32 len = proto_put_not_primary(out_frame + PROTO_HEADER_SIZE, 4, f->addr[1],
                                    (u16)strlen(f->addr[1]));
    srv_send_built(fa, out_frame, PROTO_NOT_PRIMARY, rid, len);
    /* B: the primary. */
    int fb = srv_accept_hello(f->lfd[1], SRV_CLUSTER);
    SRV_CHECK(srv_read_submit(fb, &again, 1, &rid) == 1);
    SRV_CHECK(again.operation_id == first.operation_id);
    srv_send_result(fb, rid, committed(0, 8));
    /* A read on B is answered there. */
    struct proto_header h;
    SRV_CHECK(srv_read_frame(fb, &h) && h.kind == PROTO_TICK);
    struct proto_tick_ok t = { .slot = 1 };
    len = proto_put_tick_ok(out_frame + PROTO_HEADER_SIZE, &t);
    srv_send_built(fb, out_frame, PROTO_TICK_OK, h.request_id, len);
    srv_expect_eof(fb);
    close(fa);
}

START_TEST(test_not_primary_hint)
{
    struct fake f;
    fake_start(&f, 2, server_not_primary);
    allocdb_client *c = client_for(f.addr[0]); /* only A is known */
    struct allocdb_result r;
    ck_assert_int_eq(allocdb_create_resource(c, 0, 3, &r), ALLOCDB_OK);
    ck_assert_uint_eq(r.outcome, ALLOCDB_COMMITTED);
    ck_assert_uint_eq(r.applied_lsn, 8);
    ck_assert_uint_eq(r.attempts, 2);
    struct allocdb_server_info info;
    ck_assert_int_eq(allocdb_server_info(c, &info), ALLOCDB_OK);
    ck_assert_str_eq(info.address, f.addr[1]);
    struct allocdb_tick t;
    ck_assert_int_eq(allocdb_tick(c, &t), ALLOCDB_OK);
    allocdb_free(c);
    fake_finish(&f);
}
END_TEST

/* A per-command not_primary result (no hint): the client moves on to the next address. */
static void server_not_primary_result(struct fake *f)
{
    int fa = srv_accept_hello(f->lfd[0], 0);
    struct proto_command first, again;
    u64 rid;
    SRV_CHECK(srv_read_submit(fa, &first, 1, &rid) == 1);
    struct proto_result r = { .outcome = PROTO_REJECTED, .code = PROTO_REJECT_NOT_PRIMARY };
    srv_send_result(fa, rid, r);
    srv_expect_eof(fa);
    int fb = srv_accept_hello(f->lfd[1], SRV_CLUSTER);
    SRV_CHECK(srv_read_submit(fb, &again, 1, &rid) == 1);
    SRV_CHECK(again.operation_id == first.operation_id);
    srv_send_result(fb, rid, committed(2, 9)); /* already_exists */
    srv_expect_eof(fb);
}

START_TEST(test_not_primary_result_next_address)
{
    struct fake f;
    fake_start(&f, 2, server_not_primary_result);
    char addrs[80];
    snprintf(addrs, sizeof addrs, "%s,%s", f.addr[0], f.addr[1]);
    allocdb_client *c = client_for(addrs);
    struct allocdb_result r;
    ck_assert_int_eq(allocdb_create_resource(c, 0, 3, &r), ALLOCDB_OK);
    ck_assert_uint_eq(r.outcome, ALLOCDB_COMMITTED);
    ck_assert_uint_eq(r.code, ALLOCDB_RESULT_ALREADY_EXISTS);
    allocdb_free(c);
    fake_finish(&f);
}
END_TEST

/* ---- batches --------------------------------------------------------------------------------- */

#define BATCH_N 10

static void server_batch(struct fake *f)
{
    srv_max_batch = 4; /* 10 commands: frames of 4, 4, 2 */
    int fd = srv_accept_hello(f->lfd[0], 0);
    struct proto_command cmds[4], again;
    u64 rids[3];
    u32 counts[3];
    u128 retried = 0;
    u128 seen[BATCH_N];
    u32 nseen = 0;
    for (int k = 0; k < 3; k++) {
        counts[k] = srv_read_submit(fd, cmds, 4, &rids[k]);
        SRV_CHECK(counts[k] == (k < 2 ? 4u : 2u));
        for (u32 j = 0; j < counts[k]; j++) {
            SRV_CHECK(cmds[j].operation_id != 0);
            SRV_CHECK(cmds[j].target == (u128)(nseen + 1)); /* in order */
            seen[nseen++] = cmds[j].operation_id;
            srv_log(cmds[j].operation_id);
        }
        if (k == 1)
            retried = cmds[2].operation_id;
    }
    for (u32 i = 0; i < nseen; i++)
        for (u32 j = 0; j < i; j++)
            SRV_CHECK(seen[i] != seen[j]);
    /* Answer out of order; the second frame's third command is indefinite. */
    struct proto_result r[4];
    for (int k = 2; k >= 0; k--) {
        for (u32 j = 0; j < counts[k]; j++)
            r[j] = committed(0, 100 + (u64)k * 4 + j);
        if (k == 1)
            r[2] = (struct proto_result){ .outcome = PROTO_INDEFINITE,
                                          .code = PROTO_INDEFINITE_TIMEOUT };
        srv_send_results(fd, rids[k], r, counts[k]);
    }
    /* Only the unresolved command comes again, with its operation id. */
    u64 rid;
    SRV_CHECK(srv_read_submit(fd, &again, 1, &rid) == 1);
    SRV_CHECK(again.operation_id == retried && again.target == 7);
    struct proto_result one = committed(0, 106);
    one.from_retry_cache = true;
    srv_send_result(fd, rid, one);
    srv_expect_eof(fd);
}

START_TEST(test_batch_split_and_partial_retry)
{
    struct fake f;
    fake_start(&f, 1, server_batch);
    allocdb_client *c = client_for(f.addr[0]);
    struct allocdb_command cmds[BATCH_N];
    struct allocdb_result res[BATCH_N];
    for (int i = 0; i < BATCH_N; i++)
        cmds[i] = (struct allocdb_command){ .kind = ALLOCDB_CREATE_RESOURCE,
                                            .target = (u128)(i + 1) };
    ck_assert_int_eq(allocdb_submit(c, cmds, BATCH_N, res), ALLOCDB_OK);
    for (int i = 0; i < BATCH_N; i++) {
        ck_assert(cmds[i].operation_id != 0);
        ck_assert(cmds[i].operation_id == fake_read_u128(&f)); /* written back, sent in order */
        ck_assert(res[i].operation_id == cmds[i].operation_id);
        ck_assert_uint_eq(res[i].outcome, ALLOCDB_COMMITTED);
        ck_assert_uint_eq(res[i].applied_lsn, 100 + (u64)i);
        ck_assert_uint_eq(res[i].attempts, i == 6 ? 2 : 1);
        ck_assert(res[i].from_retry_cache == (i == 6));
    }
    allocdb_free(c);
    fake_finish(&f);
}
END_TEST

/* A batch larger than the window sends round after round, without a retry's pause. */
static void server_big_batch(struct fake *f)
{
    srv_max_batch = 4;
    int fd = srv_accept_hello(f->lfd[0], 0);
    u32 total = 0;
    while (total < 22) {
        struct proto_command cmds[4];
        u64 rid;
        u32 n = srv_read_submit(fd, cmds, 4, &rid);
        struct proto_result r[4];
        for (u32 j = 0; j < n; j++) {
            SRV_CHECK(cmds[j].target == (u128)(total + j));
            r[j] = committed(0, total + j + 1);
        }
        srv_send_results(fd, rid, r, n);
        total += n;
    }
    srv_expect_eof(fd);
}

START_TEST(test_batch_larger_than_window)
{
    struct fake f;
    fake_start(&f, 1, server_big_batch);
    allocdb_client *c = client_for(f.addr[0]);
    ck_assert_int_eq(allocdb_set_window(c, 2), ALLOCDB_OK); /* 8 commands per round */
    struct allocdb_command cmds[22];
    struct allocdb_result res[22];
    for (int i = 0; i < 22; i++)
        cmds[i] = (struct allocdb_command){ .kind = ALLOCDB_CREATE_RESOURCE, .target = (u128)i };
    u64 t0 = mono_ms();
    ck_assert_int_eq(allocdb_submit(c, cmds, 22, res), ALLOCDB_OK);
    ck_assert_uint_lt(mono_ms() - t0, 1000);
    for (int i = 0; i < 22; i++) {
        ck_assert_uint_eq(res[i].outcome, ALLOCDB_COMMITTED);
        ck_assert_uint_eq(res[i].applied_lsn, (u64)i + 1);
        ck_assert_uint_eq(res[i].attempts, 1);
    }
    allocdb_free(c);
    fake_finish(&f);
}
END_TEST

/* Overloaded (an error frame for the whole submit) is a definite rejection, unless asked to
 * retry it. */
static void server_overloaded(struct fake *f)
{
    int fd = srv_accept_hello(f->lfd[0], 0);
    struct proto_command cmd[2];
    u64 rid;
    SRV_CHECK(srv_read_submit(fd, cmd, 2, &rid) == 2);
    srv_send_error(fd, rid, PROTO_ERR_OVERLOADED, "too much in flight");
    /* with retry_overloaded: the same two again */
    struct proto_command again[2];
    SRV_CHECK(srv_read_submit(fd, again, 2, &rid) == 2);
    srv_send_error(fd, rid, PROTO_ERR_OVERLOADED, "still");
    SRV_CHECK(srv_read_submit(fd, again, 2, &rid) == 2);
    SRV_CHECK(again[0].operation_id == cmd[0].operation_id);
    struct proto_result r[2] = { committed(0, 1), committed(0, 2) };
    srv_send_results(fd, rid, r, 2);
    srv_expect_eof(fd);
}

START_TEST(test_overloaded)
{
    struct fake f;
    fake_start(&f, 1, server_overloaded);
    allocdb_client *c = client_for(f.addr[0]);
    struct allocdb_command cmds[2] = {
        { .kind = ALLOCDB_CREATE_RESOURCE, .target = 1 },
        { .kind = ALLOCDB_RESERVE, .target = 1, .holder_id = 2, .ttl_ms = 10 },
    };
    struct allocdb_result res[2];
    ck_assert_int_eq(allocdb_submit(c, cmds, 2, res), ALLOCDB_OK);
    ck_assert_uint_eq(res[0].outcome, ALLOCDB_REJECTED);
    ck_assert_uint_eq(res[0].code, ALLOCDB_REJECT_OVERLOADED);
    ck_assert_str_eq(allocdb_result_name(res[1].outcome, res[1].code), "overloaded");
    ck_assert_int_eq(allocdb_set_retry_overloaded(c, true), ALLOCDB_OK);
    ck_assert_int_eq(allocdb_submit(c, cmds, 2, res), ALLOCDB_OK); /* same operation ids */
    ck_assert_uint_eq(res[0].outcome, ALLOCDB_COMMITTED);
    ck_assert_uint_eq(res[1].outcome, ALLOCDB_COMMITTED);
    ck_assert_uint_eq(res[1].attempts, 2);
    allocdb_free(c);
    fake_finish(&f);
}
END_TEST

/* ---- async: a lost connection answers every request in flight -------------------------------- */

static void server_async_lost(struct fake *f)
{
    int fd = srv_accept_hello(f->lfd[0], 0);
    struct proto_header h;
    for (int i = 0; i < 3; i++)
        SRV_CHECK(srv_read_frame(fd, &h));
    close(fd);
    fd = srv_accept_hello(f->lfd[0], SRV_CLUSTER);
    struct proto_command cmd;
    u64 rid;
    SRV_CHECK(srv_read_submit(fd, &cmd, 1, &rid) == 1);
    srv_log(cmd.operation_id);
    srv_send_result(fd, rid, committed(0, 5));
    srv_expect_eof(fd);
}

START_TEST(test_async_lost_connection)
{
    struct fake f;
    fake_start(&f, 1, server_async_lost);
    allocdb_client *c = client_for(f.addr[0]);
    struct allocdb_command a[2] = { { .kind = ALLOCDB_CREATE_RESOURCE, .target = 1 },
                                    { .kind = ALLOCDB_CREATE_RESOURCE, .target = 2 } };
    struct allocdb_command b = { .kind = ALLOCDB_RELEASE, .target = 9, .holder_id = 1 };
    u64 rids[3];
    ck_assert_int_eq(allocdb_send_submit(c, a, 2, &rids[0]), ALLOCDB_OK);
    ck_assert_int_eq(allocdb_send_submit(c, &b, 1, &rids[1]), ALLOCDB_OK);
    ck_assert_int_eq(allocdb_send_get_reservation(c, 9, 0, &rids[2]), ALLOCDB_OK);
    for (int k = 0; k < 3; k++) {
        struct allocdb_reply r;
        ck_assert_int_eq(allocdb_poll(c, 5000, &r), 1);
        ck_assert_uint_eq(r.request_id, rids[k]); /* lost ones come in send order */
        ck_assert_uint_eq(r.kind, ALLOCDB_REPLY_LOST);
        ck_assert_uint_eq(r.u.lost_code, ALLOCDB_INDEFINITE_CONNECTION_LOST);
        if (k < 2) {
            ck_assert_uint_eq(r.count, k == 0 ? 2 : 1);
            struct allocdb_result res;
            ck_assert_int_eq(allocdb_reply_result(&r, 0, &res), ALLOCDB_OK);
            ck_assert_uint_eq(res.outcome, ALLOCDB_INDEFINITE);
            ck_assert_uint_eq(res.code, ALLOCDB_INDEFINITE_CONNECTION_LOST);
        }
    }
    /* Resend the indefinite release with its operation id: the send reconnects. */
    u128 op = b.operation_id;
    ck_assert_int_eq(allocdb_send_submit(c, &b, 1, &rids[0]), ALLOCDB_OK);
    ck_assert(b.operation_id == op);
    struct allocdb_reply r;
    ck_assert_int_eq(allocdb_poll(c, 5000, &r), 1);
    ck_assert_uint_eq(r.kind, ALLOCDB_REPLY_SUBMIT);
    ck_assert(fake_read_u128(&f) == op);
    allocdb_free(c);
    fake_finish(&f);
}
END_TEST

/* ---- reads: transient server errors are retried, definite ones returned ---------------------- */

static void server_read_errors(struct fake *f)
{
    int fd = srv_accept_hello(f->lfd[0], 0);
    struct proto_header h;
    SRV_CHECK(srv_read_frame(fd, &h) && h.kind == PROTO_GET_RESOURCE);
    srv_send_error(fd, h.request_id, PROTO_ERR_UNAVAILABLE, "applier restarting");
    SRV_CHECK(srv_read_frame(fd, &h) && h.kind == PROTO_GET_RESOURCE);
    struct proto_resource res = { .read = 1, .applied_lsn = 3, .resource_id = 1 };
    u32 len = proto_put_resource(out_frame + PROTO_HEADER_SIZE, &res);
    srv_send_built(fd, out_frame, PROTO_RESOURCE, h.request_id, len);
    SRV_CHECK(srv_read_frame(fd, &h) && h.kind == PROTO_METRICS);
    srv_send_error(fd, h.request_id, PROTO_ERR_BATCH_TOO_LARGE, "nonsense");
    /* A reply of the wrong kind is a protocol error: the client drops the connection. */
    SRV_CHECK(srv_read_frame(fd, &h) && h.kind == PROTO_TICK);
    srv_send(fd, PROTO_STATUS_OK, h.request_id, "{}", 2);
    srv_expect_eof(fd);
}

START_TEST(test_read_errors)
{
    struct fake f;
    fake_start(&f, 1, server_read_errors);
    allocdb_client *c = client_for(f.addr[0]);
    ck_assert_int_eq(allocdb_set_timeouts(c, 300, 300, 600), ALLOCDB_OK);
    struct allocdb_resource res;
    ck_assert_int_eq(allocdb_get_resource(c, 1, 0, &res), ALLOCDB_OK);
    ck_assert_uint_eq(res.read, ALLOCDB_READ_NOT_FOUND);
    ck_assert_str_eq(allocdb_read_name(res.read), "not_found");
    char *json;
    ck_assert_int_eq(allocdb_metrics(c, &json, NULL), ALLOCDB_ERR_SERVER);
    ck_assert_ptr_null(json);
    ck_assert_ptr_nonnull(strstr(allocdb_last_error(c), "batch_too_large"));
    struct allocdb_tick t;
    /* the server will not answer a reconnect: the tick times out */
    ck_assert_int_eq(allocdb_tick(c, &t), ALLOCDB_ERR_TIMEOUT);
    allocdb_free(c);
    fake_finish(&f);
}
END_TEST

/* ---- no server ------------------------------------------------------------------------------- */

START_TEST(test_unreachable)
{
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", dead_port());
    allocdb_client *c = client_for(addr);
    ck_assert_int_eq(allocdb_set_timeouts(c, 100, 100, 300), ALLOCDB_OK);
    ck_assert_int_eq(allocdb_connect(c, NULL), ALLOCDB_ERR_UNREACHABLE);
    ck_assert_ptr_nonnull(strstr(allocdb_last_error(c), "refused"));
    struct allocdb_result r;
    u64 t0 = mono_ms();
    ck_assert_int_eq(allocdb_create_resource(c, 0, 1, &r), ALLOCDB_ERR_UNREACHABLE);
    ck_assert_uint_ge(mono_ms() - t0, 250); /* kept trying until the deadline */
    ck_assert_uint_eq(r.outcome, ALLOCDB_INDEFINITE); /* never "ok" by accident */
    ck_assert_uint_eq(r.code, ALLOCDB_INDEFINITE_UNREACHABLE);
    ck_assert_uint_eq(r.attempts, 0);
    ck_assert(r.operation_id != 0);
    struct allocdb_resource res;
    ck_assert_int_eq(allocdb_get_resource(c, 1, 0, &res), ALLOCDB_ERR_UNREACHABLE);
    u64 rid;
    ck_assert_int_eq(allocdb_send_tick(c, &rid), ALLOCDB_ERR_UNREACHABLE);
    ck_assert_int_eq(allocdb_set_timeouts(c, 100, 100, 0), ALLOCDB_OK); /* one attempt */
    t0 = mono_ms();
    ck_assert_int_eq(allocdb_create_resource(c, 0, 1, &r), ALLOCDB_ERR_UNREACHABLE);
    ck_assert_uint_lt(mono_ms() - t0, 250);
    allocdb_free(c);
}
END_TEST

/* ---- connect: absent, refused, or answering nonsense ----------------------------------------- */

static void server_connect_errors(struct fake *f)
{
    /* 1. The hello is answered with a frame that is no hello answer. */
    int fd = srv_accept_within(f->lfd[0], SRV_IO_TIMEOUT_MS);
    SRV_CHECK(fd >= 0);
    struct proto_header h;
    SRV_CHECK(srv_read_frame(fd, &h) && h.kind == PROTO_HELLO);
    srv_send(fd, PROTO_STATUS_OK, 0, "{}", 2);
    srv_expect_eof(fd);
    /* 2. Closed without an answer. */
    fd = srv_accept_within(f->lfd[0], SRV_IO_TIMEOUT_MS);
    SRV_CHECK(fd >= 0);
    SRV_CHECK(srv_read_frame(fd, &h) && h.kind == PROTO_HELLO);
    close(fd);
    /* 3. Refused at once, as allocdbd does at max_connections. */
    fd = srv_accept_within(f->lfd[0], SRV_IO_TIMEOUT_MS);
    SRV_CHECK(fd >= 0);
    srv_send_error(fd, 0, PROTO_ERR_TOO_MANY_CONNECTIONS, "too many connections");
    SRV_CHECK(srv_read_frame(fd, &h) && h.kind == PROTO_HELLO); /* sent meanwhile */
    srv_expect_eof(fd);
}

START_TEST(test_connect_errors)
{
    struct fake f;
    fake_start(&f, 1, server_connect_errors);
    allocdb_client *c = client_for(f.addr[0]);
    ck_assert_int_eq(allocdb_connect(c, NULL), ALLOCDB_ERR_PROTOCOL);
    ck_assert_ptr_nonnull(strstr(allocdb_last_error(c), "bad hello answer"));
    ck_assert_int_eq(allocdb_connect(c, NULL), ALLOCDB_ERR_UNREACHABLE);
    ck_assert_ptr_nonnull(strstr(allocdb_last_error(c), "closed during the hello"));
    ck_assert_int_eq(allocdb_connect(c, NULL), ALLOCDB_ERR_UNREACHABLE); /* full: for now */
    ck_assert_ptr_nonnull(strstr(allocdb_last_error(c), "too_many_connections"));
    ck_assert(!allocdb_is_connected(c));
    ck_assert_int_eq(allocdb_socket(c), -1);
    allocdb_free(c);
    fake_finish(&f);
}
END_TEST

/* ---- event loops: many handles, one thread, nothing waits ------------------------------------ */

#define EL_N 40        /* phase 1: submits per handle */
#define EL_FILL_MAX 400 /* phase 2: submits of 64 before the socket must be full */

/* One submit of n creates: targets base, base + 1, ... */
static void el_cmds(struct allocdb_command *cmds, u32 n, u128 base)
{
    for (u32 j = 0; j < n; j++)
        cmds[j] = (struct allocdb_command){ .kind = ALLOCDB_CREATE_RESOURCE, .target = base + j };
}

static void server_event_loop(struct fake *f)
{
    int fa = srv_accept_hello(f->lfd[0], 0);
    int fb = srv_accept_hello(f->lfd[0], 0); /* a second handle: no cluster pinned yet */
    /* 1. Every submit of both, then the answers, B's first, each in reverse order. */
    static u64 rid[2][EL_N];
    static u128 target[2][EL_N];
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < EL_N; i++) {
            struct proto_command cmd;
            SRV_CHECK(srv_read_submit(k == 0 ? fa : fb, &cmd, 1, &rid[k][i]) == 1);
            SRV_CHECK(cmd.target == (u128)(1000 * (k + 1) + i));
            target[k][i] = cmd.target;
        }
    for (int k = 1; k >= 0; k--)
        for (int i = EL_N - 1; i >= 0; i--)
            srv_send_result(k == 0 ? fa : fb, rid[k][i], committed(0, (u64)target[k][i]));
    /* 2. A fills its socket while nothing reads it; then everything is read and answered, up
     * to the tick that ends it. */
    struct timespec pause = { 0, 400 * 1000 * 1000 };
    nanosleep(&pause, NULL);
    u32 seen = 0;
    for (;;) {
        struct proto_header h;
        SRV_CHECK(srv_read_frame(fa, &h));
        if (h.kind == PROTO_TICK) {
            struct proto_tick_ok t = { .slot = seen };
            u32 len = proto_put_tick_ok(out_frame + PROTO_HEADER_SIZE, &t);
            srv_send_built(fa, out_frame, PROTO_TICK_OK, h.request_id, len);
            break;
        }
        SRV_CHECK(h.kind == PROTO_SUBMIT);
        u32 count;
        SRV_CHECK(proto_get_submit(srv_body, h.body_len, srv_max_batch, &count) == PROTO_OK);
        SRV_CHECK(count == 64);
        struct proto_result r[64];
        for (u32 j = 0; j < count; j++) {
            struct proto_command cmd;
            const u8 *at = srv_body + PROTO_SUBMIT_PREFIX + (size_t)j * PROTO_COMMAND_SIZE;
            SRV_CHECK(proto_get_command(at, &cmd) == PROTO_OK);
            SRV_CHECK(cmd.target == (u128)(100000 + seen * 64 + j)); /* whole, in order */
            r[j] = committed(0, seen * 64 + j + 1);
        }
        srv_send_results(fa, h.request_id, r, count);
        seen++;
    }
    srv_log(seen);
    /* 3. B is idle: the server drops it, saying why. */
    srv_send_error(fb, 0, PROTO_ERR_IDLE, "idle for too long");
    close(fb);
    srv_expect_eof(fa);
}

/* Waits (poll(2), at most 5 s) until one of the sockets is ready for what it is watched for. */
static void el_wait(struct pollfd *p, int n)
{
    int r;
    do
        r = poll(p, (nfds_t)n, 5000);
    while (r < 0 && errno == EINTR);
    ck_assert_msg(r > 0, "no socket became ready within 5 s");
}

START_TEST(test_event_loop)
{
    srv_rcvbuf = 4096; /* phase 2 fills the path quickly */
    struct fake f;
    fake_start(&f, 1, server_event_loop);
    srv_rcvbuf = 0;
    allocdb_client *h[2] = { client_for(f.addr[0]), client_for(f.addr[0]) };
    ck_assert_int_eq(allocdb_socket(h[0]), -1); /* not connected yet */
    ck_assert(!allocdb_wants_write(h[0]));
    ck_assert_int_eq(allocdb_socket(NULL), -1);
    ck_assert(!allocdb_wants_write(NULL));
    for (int k = 0; k < 2; k++)
        ck_assert_int_eq(allocdb_connect(h[k], NULL), ALLOCDB_OK);
    int fd[2] = { allocdb_socket(h[0]), allocdb_socket(h[1]) };
    ck_assert_int_ge(fd[0], 0);
    ck_assert_int_ge(fd[1], 0);
    ck_assert_int_ne(fd[0], fd[1]);
    ck_assert(!allocdb_wants_write(h[0]));

    /* 1. Queue on both (a send writes nothing while its frame fits), one flush each, then one
     * poll(2) over both sockets and allocdb_poll(c, 0) until it returns 0. */
    static struct allocdb_command cmds[2][EL_N];
    static u64 rids[2][EL_N];
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < EL_N; i++) {
            el_cmds(&cmds[k][i], 1, (u128)(1000 * (k + 1) + i));
            ck_assert_int_eq(allocdb_send_submit(h[k], &cmds[k][i], 1, &rids[k][i]), ALLOCDB_OK);
        }
        ck_assert(allocdb_wants_write(h[k]));
    }
    for (int k = 0; k < 2; k++) {
        ck_assert_int_eq(allocdb_flush(h[k], 0), ALLOCDB_OK);
        ck_assert(!allocdb_wants_write(h[k]));
    }
    bool seen[2][EL_N] = { { false } };
    int got = 0;
    u64 t_end = mono_ms() + 5000;
    while (got < 2 * EL_N) {
        ck_assert_msg(mono_ms() < t_end, "%d of %d replies after 5 s", got, 2 * EL_N);
        struct pollfd p[2] = { { .fd = fd[0], .events = POLLIN },
                               { .fd = fd[1], .events = POLLIN } };
        el_wait(p, 2);
        for (int k = 0; k < 2; k++) {
            if (p[k].revents == 0)
                continue;
            struct allocdb_reply r;
            int rc;
            u64 t0 = mono_ms();
            while ((rc = allocdb_poll(h[k], 0, &r)) == 1) {
                ck_assert_uint_eq(r.kind, ALLOCDB_REPLY_SUBMIT);
                int i = -1;
                for (int j = 0; j < EL_N; j++)
                    if (rids[k][j] == r.request_id)
                        i = j;
                ck_assert_int_ge(i, 0);
                ck_assert(!seen[k][i]);
                seen[k][i] = true;
                struct allocdb_result res;
                ck_assert_int_eq(allocdb_reply_result(&r, 0, &res), ALLOCDB_OK);
                ck_assert_uint_eq(res.applied_lsn, 1000u * (unsigned)(k + 1) + (unsigned)i);
                got++;
            }
            ck_assert_int_eq(rc, 0);
            ck_assert_uint_lt(mono_ms() - t0, 1000); /* never waited */
        }
    }
    ck_assert_uint_eq(allocdb_in_flight(h[0]) + allocdb_in_flight(h[1]), 0);

    /* 2. Nobody reads A: flush(0) leaves output, without waiting, and says so; polling writes
     * what fits and returns at once; the socket's writability lets the rest go. */
    int sndbuf = 4096;
    ck_assert_int_eq(setsockopt(fd[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf), 0);
    static struct allocdb_command fill[EL_FILL_MAX][64];
    u32 nfill = 0;
    int rc = ALLOCDB_OK;
    while (rc == ALLOCDB_OK) {
        ck_assert_uint_lt(nfill, EL_FILL_MAX);
        el_cmds(fill[nfill], 64, (u128)(100000 + nfill * 64));
        ck_assert_int_eq(allocdb_send_submit(h[0], fill[nfill], 64, NULL), ALLOCDB_OK);
        nfill++;
        u64 t0 = mono_ms();
        rc = allocdb_flush(h[0], 0);
        ck_assert_uint_lt(mono_ms() - t0, 200);
    }
    ck_assert_int_eq(rc, ALLOCDB_ERR_TIMEOUT);
    ck_assert(allocdb_wants_write(h[0]));
    ck_assert(allocdb_is_connected(h[0]));
    struct allocdb_reply r;
    u64 t0 = mono_ms();
    ck_assert_int_eq(allocdb_poll(h[0], 0, &r), 0);
    ck_assert_uint_lt(mono_ms() - t0, 200);
    u64 tick;
    ck_assert_int_eq(allocdb_send_tick(h[0], &tick), ALLOCDB_OK);
    u32 answered = 0;
    bool ticked = false;
    t_end = mono_ms() + 10000;
    while (!ticked) {
        ck_assert_msg(mono_ms() < t_end, "%u of %u submits answered, no tick", answered, nfill);
        struct pollfd p = { .fd = fd[0], .events = POLLIN };
        if (allocdb_wants_write(h[0]))
            p.events |= POLLOUT;
        el_wait(&p, 1);
        if (p.revents & POLLOUT) {
            rc = allocdb_flush(h[0], 0);
            ck_assert(rc == ALLOCDB_OK || rc == ALLOCDB_ERR_TIMEOUT);
            ck_assert(allocdb_wants_write(h[0]) == (rc == ALLOCDB_ERR_TIMEOUT));
        }
        if (p.revents & POLLIN) {
            while ((rc = allocdb_poll(h[0], 0, &r)) == 1) {
                if (r.kind == ALLOCDB_REPLY_TICK) {
                    ck_assert_uint_eq(r.request_id, tick);
                    ck_assert_uint_eq(r.u.tick.slot, nfill);
                    ticked = true;
                    continue;
                }
                ck_assert_uint_eq(r.kind, ALLOCDB_REPLY_SUBMIT);
                ck_assert_uint_eq(r.count, 64);
                answered++;
            }
            ck_assert_int_eq(rc, 0);
        }
    }
    ck_assert_uint_eq(answered, nfill);
    ck_assert(!allocdb_wants_write(h[0]));
    ck_assert(fake_read_u128(&f) == nfill);
    ck_assert_uint_ge(nfill, 2); /* it took more than one frame to fill the path */

    /* 3. The server drops the idle B (an error frame, then the end of the stream): readable with
     * nothing in flight; poll takes it in. */
    ck_assert_int_eq(allocdb_in_flight(h[1]), 0);
    t_end = mono_ms() + 5000;
    while (allocdb_socket(h[1]) >= 0) {
        ck_assert_msg(mono_ms() < t_end, "B still open after 5 s");
        struct pollfd p = { .fd = fd[1], .events = POLLIN };
        el_wait(&p, 1);
        ck_assert_int_eq(allocdb_poll(h[1], 0, &r), 0);
    }
    ck_assert(!allocdb_is_connected(h[1]));
    ck_assert_msg(strstr(allocdb_last_error(h[1]), "idle for too long") != NULL, "last error: %s",
                  allocdb_last_error(h[1]));
    ck_assert_int_eq(allocdb_socket(h[0]), fd[0]); /* A is untouched */
    allocdb_free(h[1]);
    allocdb_free(h[0]);
    fake_finish(&f);
}
END_TEST

/* ---- ids, names, arguments ------------------------------------------------------------------- */

static int cmp_u128(const void *a, const void *b)
{
    u128 x, y;
    memcpy(&x, a, sizeof x);
    memcpy(&y, b, sizeof y);
    return x < y ? -1 : x > y;
}

START_TEST(test_operation_ids)
{
    enum { N = 2000 };
    static u128 ids[N];
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(allocdb_operation_id_new(&ids[i]), ALLOCDB_OK);
        ck_assert(ids[i] != 0);
    }
    qsort(ids, N, sizeof ids[0], cmp_u128);
    for (int i = 1; i < N; i++)
        ck_assert(ids[i] != ids[i - 1]);
    /* Both halves vary (not a counter). */
    int hi_diff = 0;
    for (int i = 1; i < N; i++)
        hi_diff += (ids[i] >> 64) != (ids[i - 1] >> 64);
    ck_assert_int_gt(hi_diff, N / 2);
    ck_assert_int_eq(allocdb_operation_id_new(NULL), ALLOCDB_ERR_INVALID);
}
END_TEST

START_TEST(test_u128_text)
{
    char buf[ALLOCDB_U128_STRLEN];
    allocdb_u128 v;
    const allocdb_u128 max = ~(allocdb_u128)0;
    ck_assert_str_eq(allocdb_u128_format(0, buf), "0");
    ck_assert_str_eq(allocdb_u128_format(max, buf), "340282366920938463463374607431768211455");
    ck_assert_int_eq(allocdb_u128_parse("340282366920938463463374607431768211455", &v), 0);
    ck_assert(v == max);
    ck_assert_int_eq(allocdb_u128_parse("0xffffffffffffffffffffffffffffffff", &v), 0);
    ck_assert(v == max);
    ck_assert_int_eq(allocdb_u128_parse("0X10", &v), 0);
    ck_assert(v == 16);
    ck_assert_int_eq(allocdb_u128_parse("007", &v), 0);
    ck_assert(v == 7);
    ck_assert(ALLOCDB_U128(1, 2) == (((allocdb_u128)1 << 64) | 2));
    static const char *const bad[] = {
        "", "0x", "-1", "+1", " 1", "1 ", "12a", "1.0", "0x1g",
        "340282366920938463463374607431768211456", "0x1ffffffffffffffffffffffffffffffff",
        "99999999999999999999999999999999999999999",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(allocdb_u128_parse(bad[i], &v) == ALLOCDB_ERR_INVALID, "accepted '%s'",
                      bad[i]);
    ck_assert_int_eq(allocdb_u128_parse(NULL, &v), ALLOCDB_ERR_INVALID);
    /* Round trips. */
    u64 s = 12345;
    for (int i = 0; i < 1000; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        allocdb_u128 x = ALLOCDB_U128(s, s * 31) >> (i % 128);
        ck_assert_int_eq(allocdb_u128_parse(allocdb_u128_format(x, buf), &v), 0);
        ck_assert(v == x);
    }
}
END_TEST

START_TEST(test_names)
{
    static const char *const committed_names[16] = {
        "ok", "noop", "already_exists", "resource_table_full", "resource_not_found",
        "resource_busy", "ttl_out_of_range", "reservation_table_full", "reservation_not_found",
        "reservation_retired", "expiration_index_full", "operation_table_full",
        "operation_conflict", "invalid_state", "holder_mismatch", "slot_overflow",
    };
    for (u8 i = 0; i < 16; i++)
        ck_assert_str_eq(allocdb_result_name(ALLOCDB_COMMITTED, i), committed_names[i]);
    ck_assert_str_eq(allocdb_result_name(ALLOCDB_COMMITTED, 16), "unknown");
    ck_assert_str_eq(allocdb_result_name(ALLOCDB_REJECTED, ALLOCDB_REJECT_NOT_PRIMARY),
                     "not_primary");
    ck_assert_str_eq(allocdb_result_name(ALLOCDB_INDEFINITE, ALLOCDB_INDEFINITE_WORKER_RESTARTED),
                     "worker_restarted");
    ck_assert_str_eq(allocdb_result_name(ALLOCDB_INDEFINITE, ALLOCDB_INDEFINITE_CONNECTION_LOST),
                     "connection_lost");
    ck_assert_str_eq(allocdb_result_name(3, 0), "unknown");
    ck_assert_str_eq(allocdb_outcome_name(ALLOCDB_INDEFINITE), "indefinite");
    ck_assert_str_eq(allocdb_read_name(ALLOCDB_READ_FENCE_NOT_APPLIED), "fence_not_applied");
    ck_assert_str_eq(allocdb_resource_state_name(ALLOCDB_RESOURCE_CONFIRMED), "confirmed");
    ck_assert_str_eq(allocdb_reservation_state_name(ALLOCDB_RESERVATION_EXPIRED), "expired");
    ck_assert_str_eq(allocdb_server_error_name(ALLOCDB_SERVER_OVERLOADED), "overloaded");
    ck_assert_str_eq(allocdb_strerror(ALLOCDB_ERR_UNREACHABLE), "no server reachable");
    /* the protocol's own names agree */
    for (u8 code = 1; code <= 6; code++)
        ck_assert_str_eq(allocdb_result_name(ALLOCDB_REJECTED, code), proto_reject_name(code));
    for (u8 code = 1; code <= 5; code++)
        ck_assert_str_eq(allocdb_result_name(ALLOCDB_INDEFINITE, code),
                         proto_indefinite_name(code));
    for (u16 code = 1; code <= 13; code++)
        ck_assert_str_eq(allocdb_server_error_name(code), proto_error_name(code));
}
END_TEST

START_TEST(test_arguments)
{
    allocdb_client *c = allocdb_new();
    ck_assert_ptr_nonnull(c);
    static const char *const good[] = { "127.0.0.1:7400", "localhost:1,10.0.0.1:65535",
                                        "[::1]:7400", "a:1,[fe80::1]:2,b.example:3" };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        ck_assert_msg(allocdb_set_addresses(c, good[i]) == ALLOCDB_OK, "refused '%s'", good[i]);
    static const char *const bad[] = { "", "host", "host:", ":7400", "host:0", "host:65536",
                                       "host:12x", "::1:7400", "[::1]7400", "a:1,", ",a:1",
                                       "a:1,,b:2", "[::1]:" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_msg(allocdb_set_addresses(c, bad[i]) == ALLOCDB_ERR_INVALID, "accepted '%s'",
                      bad[i]);
        ck_assert_str_ne(allocdb_last_error(c), "");
    }
    ck_assert_int_eq(allocdb_connect(c, "nonsense"), ALLOCDB_ERR_INVALID);
    ck_assert_int_eq(allocdb_set_window(c, 0), ALLOCDB_ERR_INVALID);
    ck_assert_int_eq(allocdb_set_window(c, ALLOCDB_WINDOW_MAX + 1), ALLOCDB_ERR_INVALID);
    ck_assert_int_eq(allocdb_set_timeouts(c, 0, 1, 1), ALLOCDB_ERR_INVALID);
    struct allocdb_command bogus = { .kind = 9, .target = 1 };
    struct allocdb_result r;
    ck_assert_int_eq(allocdb_submit(c, &bogus, 1, &r), ALLOCDB_ERR_INVALID);
    ck_assert_int_eq(allocdb_submit(c, &bogus, 0, &r), ALLOCDB_ERR_INVALID);
    struct allocdb_reply reply;
    ck_assert_int_eq(allocdb_poll(c, 0, &reply), 0); /* nothing in flight */
    allocdb_free(c);
    allocdb_free(NULL);
}
END_TEST

/* ---- the allocdb CLI against the fake server: exit codes and --json -------------------------- */

static void server_cli(struct fake *f)
{
    for (;;) {
        int fd = srv_accept_within(f->lfd[0], 1500);
        if (fd < 0)
            break;
        srv_hello(fd, 0); /* every CLI run is a new process: no cluster pinned yet */
        struct proto_header h;
        while (srv_read_frame(fd, &h)) {
            u64 rid = h.request_id;
            if (h.kind == PROTO_SUBMIT) {
                struct proto_command cmd;
                SRV_CHECK(proto_get_command(srv_body + PROTO_SUBMIT_PREFIX, &cmd) == PROTO_OK);
                struct proto_result r = committed(0, 1);
                if (cmd.kind == 1) {
                    SRV_CHECK(cmd.target == 5 && cmd.client_id == 0);
                } else if (cmd.kind == 2 && cmd.holder_id == 6) {
                    SRV_CHECK(cmd.ttl_ms == 30000);
                    r.applied_lsn = 3;
                    r.reservation_id = ((u128)1 << 64) | 3;
                    r.deadline_slot = 3003;
                } else if (cmd.kind == 2) {
                    SRV_CHECK(cmd.ttl_ms == 1500);
                    r.code = 5; /* resource_busy */
                } else if (cmd.kind == 3) {
                    r = (struct proto_result){ .outcome = PROTO_REJECTED,
                                               .code = PROTO_REJECT_INVALID_REQUEST };
                } else if (cmd.kind == 4 && cmd.target == 2) {
                    continue; /* never answered: the CLI's deadline passes */
                } else {
                    SRV_CHECK(cmd.kind == 4 && cmd.operation_id == 0x99 && cmd.client_id == 12);
                    r.from_retry_cache = true;
                }
                srv_send_result(fd, rid, r);
            } else if (h.kind == PROTO_GET_RESOURCE) {
                struct proto_read rd;
                SRV_CHECK(proto_get_read(srv_body, h.body_len, &rd) == PROTO_OK);
                struct proto_resource res = { .read = 1, .applied_lsn = 4, .resource_id = rd.id };
                if (rd.id == 5 && rd.min_lsn == 0)
                    res = (struct proto_resource){ .read = 0, .state = 1, .applied_lsn = 4,
                                                   .resource_id = 5,
                                                   .current_reservation_id = 3, .version = 1 };
                else if (rd.min_lsn == 100)
                    res = (struct proto_resource){ .read = 3, .applied_lsn = 4 };
                u32 len = proto_put_resource(out_frame + PROTO_HEADER_SIZE, &res);
                srv_send_built(fd, out_frame, PROTO_RESOURCE, rid, len);
            } else if (h.kind == PROTO_GET_RESERVATION) {
                struct proto_reservation rv = { .read = 2, .applied_lsn = 4 }; /* retired */
                u32 len = proto_put_reservation(out_frame + PROTO_HEADER_SIZE, &rv);
                srv_send_built(fd, out_frame, PROTO_RESERVATION, rid, len);
            } else if (h.kind == PROTO_TICK) {
                struct proto_tick_ok t = { .slot = 9, .expirations_proposed = 2 };
                u32 len = proto_put_tick_ok(out_frame + PROTO_HEADER_SIZE, &t);
                srv_send_built(fd, out_frame, PROTO_TICK_OK, rid, len);
            } else if (h.kind == PROTO_METRICS) {
                /* The CLI asks for the current slot to show a deadline as a time. */
                const char *json = "{\"applier\":{\"current_slot\":3000}}";
                srv_send(fd, PROTO_METRICS_OK, rid, json, (u32)strlen(json));
            } else {
                SRV_CHECK(h.kind == PROTO_STATUS);
                const char *json = "{\"role\":\"primary\",\"view\":3}";
                srv_send(fd, PROTO_STATUS_OK, rid, json, (u32)strlen(json));
            }
        }
        close(fd);
    }
}

/* Runs the CLI with args (NULL-terminated), output (stdout and stderr) into out. */
static int run_cli(const char *addr, char *out, size_t cap, ...)
{
    const char *dir = getenv("top_builddir");
    char path[4096];
    snprintf(path, sizeof path, "%s/allocdb", dir != NULL ? dir : ".");
    const char *argv[32];
    int argc = 0;
    argv[argc++] = path;
    argv[argc++] = "--addr";
    argv[argc++] = addr;
    va_list ap;
    va_start(ap, cap);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && argc < 31)
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(p[1], 1);
        dup2(p[1], 2);
        close(p[0]);
        close(p[1]);
        execv(path, (char *const *)argv);
        _exit(127);
    }
    close(p[1]);
    size_t len = 0;
    ssize_t n;
    while ((n = read(p[0], out + len, cap - 1 - len)) > 0)
        len += (size_t)n;
    out[len] = '\0';
    close(p[0]);
    if (getenv("TEST_CLIENT_VERBOSE") != NULL) /* to see what the CLI prints */
        fprintf(stderr, "$ allocdb ... %s\n%s", argv[argc - 1], out);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status));
    return WEXITSTATUS(status);
}

#define CLI(...) run_cli(f.addr[0], out, sizeof out, __VA_ARGS__, (const char *)NULL)
#define HAS(s) ck_assert_msg(strstr(out, s) != NULL, "missing '%s' in: %s", s, out)

START_TEST(test_cli)
{
    struct fake f;
    fake_start(&f, 1, server_cli);
    static char out[8192];

    ck_assert_int_eq(CLI("--json", "create-resource", "5"), 0);
    HAS("\"command\":\"create-resource\",\"result\":\"ok\",\"outcome\":\"committed\"");
    HAS("\"applied_lsn\":1,");
    HAS("\"from_retry_cache\":false,\"operation_id\":\"");
    ck_assert_ptr_null(strstr(out, "\"operation_id\":\"0\""));

    ck_assert_int_eq(CLI("reserve", "5", "6", "--ttl", "30s", "--json"), 0);
    HAS("\"reservation_id\":\"18446744073709551619\"");
    HAS("\"deadline_slot\":3003");
    ck_assert_int_eq(CLI("reserve", "5", "6", "--ttl=30s"), 0);
    HAS("committed: ok\n");
    HAS("reservation_id: 18446744073709551619\n");
    HAS("deadline_slot: 3003 (expires in about");

    ck_assert_int_eq(CLI("reserve", "5", "7", "--ttl", "1500ms"), 1); /* domain failure */
    HAS("committed: resource_busy");

    ck_assert_int_eq(CLI("--json", "confirm", "2", "6"), 2); /* definite rejection */
    HAS("\"result\":\"invalid_request\",\"outcome\":\"rejected\"");

    ck_assert_int_eq(CLI("--timeout", "400ms", "release", "2", "6"), 3); /* indefinite */
    HAS("indefinite: client_timeout");
    HAS("retry with: ");
    HAS(" --op-id ");
    HAS(" --timeout 400ms release 2 6\n");

    ck_assert_int_eq(CLI("--op-id", "0x99", "--client-id", "12", "--json", "release", "3", "6"), 0);
    HAS("\"from_retry_cache\":true,\"operation_id\":\"153\"");

    ck_assert_int_eq(CLI("get-resource", "5", "--json"), 0);
    HAS("{\"read\":\"found\",\"resource_id\":\"5\",\"state\":\"reserved\",\"version\":1,"
        "\"current_reservation_id\":\"3\",\"applied_lsn\":4}");
    ck_assert_int_eq(CLI("get-resource", "9"), 1);
    HAS("not_found\n");
    ck_assert_int_eq(CLI("get-reservation", "9", "--json"), 1);
    HAS("\"read\":\"retired\",\"reservation_id\":\"9\",\"state\":null");
    ck_assert_int_eq(CLI("--timeout", "300ms", "get-resource", "5", "--min-lsn", "100"), 3);
    HAS("fence_not_applied\n");
    HAS("not yet");

    ck_assert_int_eq(CLI("tick", "--json"), 0);
    HAS("{\"slot\":9,\"expirations_proposed\":2}");
    ck_assert_int_eq(CLI("status", "--json"), 0);
    HAS("{\"role\":\"primary\",\"view\":3}");
    ck_assert_int_eq(CLI("status"), 0); /* text by default */
    HAS("role: primary");
    fake_finish(&f);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("client");
    TCase *tc = tcase_create("client");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_handshake);
    tcase_add_test(tc, test_sync_encoding);
    tcase_add_test(tc, test_pipelined_out_of_order);
    tcase_add_test(tc, test_window_full);
    tcase_add_test(tc, test_lost_connection_retries_same_op);
    tcase_add_test(tc, test_bad_checksum_reconnects);
    tcase_add_test(tc, test_indefinite_result_retried);
    tcase_add_test(tc, test_deadline_indefinite);
    tcase_add_test(tc, test_async_request_timeout);
    tcase_add_test(tc, test_not_primary_hint);
    tcase_add_test(tc, test_not_primary_result_next_address);
    tcase_add_test(tc, test_batch_split_and_partial_retry);
    tcase_add_test(tc, test_batch_larger_than_window);
    tcase_add_test(tc, test_overloaded);
    tcase_add_test(tc, test_async_lost_connection);
    tcase_add_test(tc, test_read_errors);
    tcase_add_test(tc, test_unreachable);
    tcase_add_test(tc, test_connect_errors);
    tcase_add_test(tc, test_event_loop);
    tcase_add_test(tc, test_operation_ids);
    tcase_add_test(tc, test_u128_text);
    tcase_add_test(tc, test_names);
    tcase_add_test(tc, test_arguments);
    tcase_add_test(tc, test_cli);
    suite_add_tcase(s, tc);
    return s;
}
