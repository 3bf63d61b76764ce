/*
 * tests/test_ingress.c — the ingress worker as a real process: it runs ingress_main in a forked
 * child on a real listening socket and a real shared segment, and this process plays the other
 * side twice over: TCP clients speaking the wire protocol, and the sequencer and applier
 * (consuming the write and read rings, publishing answers on the result and reject rings).
 *
 * Covered: hello; pipelined batches answered in order, with per-command invalid_request;
 * answers out of order across requests and within a batch; reads and tick; malformed, bad-CRC,
 * oversize, truncated and response-kind frames (one error frame, that connection closed,
 * others untouched); batch_too_large keeps the connection; max_connections; idle and header
 * (slowloris) timeouts; request timeout -> indefinite timeout; sequencer restart ->
 * worker_restarted, applier restart -> unavailable for reads only; RESUBMIT re-pushes the kept
 * command with FORCE_LOG; late, foreign and stale answers dropped; a connection closed by the
 * client or the server drops its requests; a full write ring rejects the rest of a batch as
 * overloaded and pauses reading; a slow reader is stopped at the output watermark and then
 * served in order; SIGTERM and the daemon's drain flag drain; metrics and status are JSON; a
 * corrupt result ring is fatal; the pending/record tables (buddy allocator, generations).
 */
#include "config.h"

#include "common/crc32c.h"
#include "common/le.h"
#include "net/ingress_internal.h"
#include "net/proto.h"
#include "supervisor/config.h"
#include "supervisor/msg.h"
#include "supervisor/segment.h"
#include "supervisor/worker.h"
#include "tests/check_main.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ING_GEN 7
#define SEQ_GEN 3
#define APP_GEN 5
#define CLUSTER_LO 0x1234u
#define CLUSTER_HI 0xabcdu
#define WAIT_MS 5000

/* ---- fixture: a segment, a listening socket, the ingress in a child ------------------------- */

static struct {
    struct config cfg;
    struct segment seg;
    struct worker_ctx w;
    int lfd;
    u16 port;
    pid_t pid;
} F;

static u8 *fbuf; /* one frame, either direction */

static void fx_config(void)
{
    config_defaults(&F.cfg);
    F.cfg.ring_capacity = 64;
    F.cfg.shared_log_capacity = 64;
    F.cfg.max_batch = 16;
    F.cfg.max_inflight = 64;
    F.cfg.max_connections = 8;
    F.cfg.slot_duration_ms = 100;
    F.cfg.request_timeout_ms = 10000;
    F.cfg.idle_timeout_ms = 60000;
    F.cfg.header_timeout_ms = 10000;
    F.cfg.shutdown_timeout_ms = 2000;
    F.cfg.log_level = getenv("INGRESS_TEST_DEBUG") != NULL ? LOG_LEVEL_DEBUG : LOG_LEVEL_WARN;
}

static void sleep_ms(u32 ms)
{
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

static void fx_start(void)
{
    if (fbuf == NULL)
        fbuf = malloc(PROTO_HEADER_SIZE + PROTO_BODY_MAX);
    ck_assert_ptr_nonnull(fbuf);
    char why[256];
    ck_assert_msg(segment_create(&F.seg, &F.cfg, why, sizeof(why)) == 0, "segment_create: %s", why);
    atomic_store(&F.seg.seq->cluster_id_lo, CLUSTER_LO);
    atomic_store(&F.seg.seq->cluster_id_hi, CLUSTER_HI);
    atomic_store(&F.seg.seq->replica_id, 1);
    atomic_store(&F.seg.workers[ROLE_SEQUENCER].generation, SEQ_GEN);
    atomic_store(&F.seg.workers[ROLE_APPLIER].generation, APP_GEN);
    atomic_store(&F.seg.workers[ROLE_INGRESS].generation, ING_GEN);

    F.lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(F.lfd, 0);
    int one = 1;
    setsockopt(F.lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = 0, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    ck_assert_int_eq(bind(F.lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    ck_assert_int_eq(listen(F.lfd, 64), 0);
    socklen_t al = sizeof(a);
    ck_assert_int_eq(getsockname(F.lfd, (struct sockaddr *)&a, &al), 0);
    F.port = ntohs(a.sin_port);

    F.w = (struct worker_ctx){ .cfg = &F.cfg,
                               .seg = &F.seg,
                               .role = ROLE_INGRESS,
                               .generation = ING_GEN,
                               .listen_fd = F.lfd,
                               .admin_fd = -1,
                               .supervisor_pid = getpid() };
    F.pid = fork();
    ck_assert_int_ge(F.pid, 0);
    if (F.pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        _exit(ingress_main(&F.w)); /* worker_enter inside, as in allocdbd */
    }
    u64 until = mono_ms() + WAIT_MS;
    /* Playing the supervisor: the worker says it is ready in its own word. */
    while (atomic_load(&F.seg.workers[ROLE_INGRESS].ready_generation) != ING_GEN) {
        ck_assert_msg(mono_ms() < until, "the ingress never became ready");
        sleep_ms(2);
    }
    atomic_store(&F.seg.workers[ROLE_INGRESS].state, WORKER_READY); /* and moves the state itself */
}

/* Waits for the child to exit; its wait status, or -1 after timeout_ms. */
static int fx_wait(u32 timeout_ms)
{
    u64 until = mono_ms() + timeout_ms;
    for (;;) {
        int status;
        pid_t r = waitpid(F.pid, &status, WNOHANG);
        if (r == F.pid) {
            F.pid = 0;
            return status;
        }
        if (mono_ms() >= until)
            return -1;
        sleep_ms(5);
    }
}

static void fx_stop(void)
{
    if (F.pid > 0) {
        kill(F.pid, SIGTERM);
        int status = fx_wait(10000);
        if (status == -1) {
            kill(F.pid, SIGKILL);
            waitpid(F.pid, &status, 0);
            F.pid = 0;
            ck_abort_msg("the ingress did not stop on SIGTERM");
        }
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "ingress exit status %d", status);
    }
    close(F.lfd);
    segment_destroy(&F.seg);
}

static bool ingress_alive(void)
{
    int status;
    return F.pid > 0 && waitpid(F.pid, &status, WNOHANG) == 0;
}

static u64 ctr(_Atomic u64 *c)
{
    return atomic_load(c);
}

static void wait_ctr(_Atomic u64 *c, u64 want)
{
    u64 until = mono_ms() + WAIT_MS;
    while (atomic_load(c) != want) {
        ck_assert_msg(mono_ms() < until, "counter stayed at %llu, want %llu", (unsigned long long)atomic_load(c),
                      (unsigned long long)want);
        sleep_ms(2);
    }
}

/* ---- client side ------------------------------------------------------------------------- */

/* A connection that has not said hello (see cli_connect). */
static int cli_connect_raw(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in a = { .sin_family = AF_INET,
                             .sin_port = htons(F.port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    struct timeval tv = { .tv_sec = WAIT_MS / 1000, .tv_usec = 0 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static void send_all(int fd, const void *p, size_t n)
{
    const u8 *b = p;
    while (n > 0) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        ck_assert_msg(w > 0, "send: %s", strerror(errno));
        b += w;
        n -= (size_t)w;
    }
}

/* Builds a frame around body (len bytes) in out; returns its size. */
static size_t build_frame(u8 *out, u8 kind, u64 rid, const void *body, u32 len)
{
    if (len > 0)
        memmove(out + PROTO_HEADER_SIZE, body, len);
    return proto_frame_finish(out, PROTO_HEADER_SIZE + PROTO_BODY_MAX, kind, rid, len);
}

/* Like build_frame without the encoder's checks: any kind with any body length. */
static size_t raw_frame(u8 *out, u8 kind, u64 rid, const void *body, u32 len)
{
    memset(out, 0, PROTO_HEADER_SIZE);
    le_put_u32(out + 0, PROTO_MAGIC);
    le_put_u16(out + 4, PROTO_VERSION);
    out[6] = kind;
    le_put_u64(out + 8, rid);
    le_put_u32(out + 16, len);
    if (len > 0)
        memmove(out + PROTO_HEADER_SIZE, body, len);
    le_put_u32(out + 28, crc32c(crc32c(0, out, 28), out + PROTO_HEADER_SIZE, len));
    return PROTO_HEADER_SIZE + (size_t)len;
}

static void send_frame(int fd, u8 kind, u64 rid, const void *body, u32 len)
{
    u8 *f = malloc(PROTO_HEADER_SIZE + PROTO_BODY_MAX);
    ck_assert_ptr_nonnull(f);
    size_t n = build_frame(f, kind, rid, body, len);
    send_all(fd, f, n);
    free(f);
}

/* Reads exactly n bytes: n, 0 at EOF (or reset) before the first byte; fails on a timeout. */
static size_t recv_exact(int fd, void *p, size_t n)
{
    u8 *b = p;
    size_t got = 0;
    while (got < n) {
        ssize_t r = recv(fd, b + got, n - got, 0);
        if (r == 0 || (r < 0 && errno == ECONNRESET)) {
            ck_assert_msg(got == 0, "EOF after %zu of %zu bytes", got, n);
            return 0;
        }
        if (r < 0 && errno == EINTR)
            continue;
        ck_assert_msg(r > 0, "recv: %s", strerror(errno));
        got += (size_t)r;
    }
    return got;
}

struct frame {
    struct proto_header h;
    const u8 *body;
};

/* 1 and the frame in *f (body in fbuf, valid until the next read), or 0 at EOF. */
static int read_frame(int fd, struct frame *f)
{
    if (recv_exact(fd, fbuf, PROTO_HEADER_SIZE) == 0)
        return 0;
    ck_assert_int_eq(proto_header_decode(fbuf, PROTO_HEADER_SIZE, PROTO_BODY_MAX, &f->h), PROTO_OK);
    ck_assert_uint_ge(f->h.kind, 0x80);
    if (f->h.body_len > 0)
        ck_assert_uint_eq(recv_exact(fd, fbuf + PROTO_HEADER_SIZE, f->h.body_len), f->h.body_len);
    ck_assert_int_eq(proto_frame_check(fbuf, PROTO_HEADER_SIZE + f->h.body_len), PROTO_OK);
    f->body = fbuf + PROTO_HEADER_SIZE;
    return 1;
}

static void expect_frame(int fd, struct frame *f, u8 kind, u64 rid)
{
    ck_assert_msg(read_frame(fd, f) == 1, "EOF instead of a %s frame", proto_kind_name(kind));
    if (f->h.kind == PROTO_ERROR && kind != PROTO_ERROR) {
        struct proto_error e;
        ck_assert_int_eq(proto_get_error(f->body, f->h.body_len, &e), PROTO_OK);
        ck_abort_msg("error %s: %.*s instead of %s", proto_error_name(e.code), (int)e.message_len, e.message,
                     proto_kind_name(kind));
    }
    ck_assert_msg(f->h.kind == kind, "got %s, want %s", proto_kind_name(f->h.kind), proto_kind_name(kind));
    ck_assert_uint_eq(f->h.request_id, rid);
}

static void check_error(const struct frame *f, u64 rid, u16 code)
{
    ck_assert_msg(f->h.kind == PROTO_ERROR, "got %s, want error %s", proto_kind_name(f->h.kind),
                  proto_error_name(code));
    struct proto_error e;
    ck_assert_int_eq(proto_get_error(f->body, f->h.body_len, &e), PROTO_OK);
    ck_assert_msg(e.code == code, "error %s (%.*s), want %s", proto_error_name(e.code), (int)e.message_len, e.message,
                  proto_error_name(code));
    ck_assert_uint_gt(e.message_len, 0);
    ck_assert_uint_eq(f->h.request_id, rid);
}

static void expect_error(int fd, u64 rid, u16 code)
{
    struct frame f;
    ck_assert_msg(read_frame(fd, &f) == 1, "EOF instead of error %s", proto_error_name(code));
    check_error(&f, rid, code);
}

static void expect_eof(int fd)
{
    struct frame f;
    ck_assert_msg(read_frame(fd, &f) == 0, "a %s frame instead of EOF", proto_kind_name(f.h.kind));
}

static struct proto_command cmd_make(u8 kind, u128 op, u128 target, u128 holder, u64 ttl_ms)
{
    struct proto_command c = { .kind = kind, .operation_id = op, .client_id = 77, .target = target,
                               .holder_id = holder, .ttl_ms = ttl_ms };
    return c;
}

static void send_submit(int fd, u64 rid, const struct proto_command *cmds, u32 n)
{
    u8 *body = malloc(PROTO_SUBMIT_PREFIX + (size_t)n * PROTO_COMMAND_SIZE);
    ck_assert_ptr_nonnull(body);
    u32 len = proto_put_submit_prefix(body, n);
    for (u32 i = 0; i < n; i++, len += PROTO_COMMAND_SIZE)
        proto_put_command(body + len, &cmds[i]);
    send_frame(fd, PROTO_SUBMIT, rid, body, len);
    free(body);
}

static void send_read(int fd, u8 kind, u64 rid, u128 id)
{
    u8 body[24];
    struct proto_read r = { .id = id, .min_lsn = 0 };
    send_frame(fd, kind, rid, body, proto_put_read(body, &r));
}

/* Reads the submit_result for rid: n results into out. */
static void expect_results(int fd, u64 rid, u32 n, struct proto_result *out)
{
    struct frame f;
    expect_frame(fd, &f, PROTO_SUBMIT_RESULT, rid);
    u32 count = 0;
    ck_assert_int_eq(proto_get_submit_result(f.body, f.h.body_len, &count), PROTO_OK);
    ck_assert_uint_eq(count, n);
    for (u32 i = 0; i < n; i++)
        ck_assert_int_eq(proto_get_result(f.body + PROTO_SUBMIT_PREFIX + i * PROTO_RESULT_SIZE, &out[i]), PROTO_OK);
}

static void check_result(const struct proto_result *r, u8 outcome, u8 code, u64 lsn)
{
    ck_assert_msg(r->outcome == outcome && r->code == code, "result %u/%s, want %u/%s", r->outcome,
                  proto_result_name(r->outcome, r->code), outcome, proto_result_name(outcome, code));
    ck_assert_uint_eq(r->applied_lsn, lsn);
}

static void hello(int fd, u64 rid)
{
    u8 body[24];
    struct proto_hello h = { .version = PROTO_VERSION, .cluster_id = 0 };
    send_frame(fd, PROTO_HELLO, rid, body, proto_put_hello(body, &h));
    struct frame f;
    expect_frame(fd, &f, PROTO_HELLO_OK, rid);
}

/* A connection past the handshake (hello with request id 0): the server serves nothing before. */
static int cli_connect(void)
{
    int fd = cli_connect_raw();
    hello(fd, 0);
    return fd;
}

/* ---- the workers' side -------------------------------------------------------------------- */

static bool try_pop(struct ring *r, void *out, u32 size, int timeout_ms)
{
    u64 until = mono_ms() + (u64)timeout_ms;
    for (;;) {
        const void *payload;
        u32 len;
        enum ring_status st = ring_peek(r, &payload, &len);
        ck_assert_int_ne(st, RING_CORRUPT);
        if (st == RING_OK) {
            ck_assert_uint_eq(len, size);
            memcpy(out, payload, size);
            ring_release(r);
            return true;
        }
        u64 now = mono_ms();
        if (now >= until)
            return false;
        ring_wait(r, (int)(until - now < 50 ? until - now : 50));
    }
}

static void pop_write(struct msg_write *m)
{
    ck_assert_msg(try_pop(F.seg.write, m, sizeof(*m), WAIT_MS), "no write reached the sequencer");
    ck_assert_uint_eq(m->tag.ingress_gen, ING_GEN);
    ck_assert(m->tag.flags & MSG_TAG_VALID);
}

static void pop_read(struct msg_read *m)
{
    ck_assert_msg(try_pop(F.seg.read, m, sizeof(*m), WAIT_MS), "no read reached the applier");
    ck_assert_uint_eq(m->tag.ingress_gen, ING_GEN);
    ck_assert(m->tag.flags & MSG_TAG_VALID);
}

static void push(struct ring *r, const struct msg_result *m)
{
    u64 until = mono_ms() + WAIT_MS;
    void *slot;
    while ((slot = ring_claim(r)) == NULL) {
        ck_assert_msg(mono_ms() < until, "the ingress does not drain its result ring");
        sleep_ms(1);
    }
    memcpy(slot, m, sizeof(*m));
    ring_publish(r, sizeof(*m));
}

static struct msg_result result_for(const struct msg_tag *tag, u8 type, u8 outcome, u8 code, u64 lsn)
{
    struct msg_result m;
    memset(&m, 0, sizeof(m));
    m.tag = *tag;
    m.type = type;
    m.outcome = outcome;
    m.code = code;
    m.applied_lsn = lsn;
    return m;
}

/* The applier's answer to a write: committed ok at lsn. */
static void commit(const struct msg_write *w, u64 lsn)
{
    struct msg_result m = result_for(&w->tag, MSG_RESULT_WRITE, PROTO_COMMITTED, SM_OK, lsn);
    m.u.write.reservation_id = w->cmd.kind == SM_CMD_RESERVE ? U128_MAKE(0, lsn) : w->cmd.reservation_id;
    m.u.write.deadline_slot = w->cmd.kind == SM_CMD_RESERVE ? 1000 + w->cmd.ttl_slots : 0;
    push(F.seg.result, &m);
}

/* ---- tests -------------------------------------------------------------------------------- */

START_TEST(test_hello_and_pipelined_batches)
{
    fx_config();
    fx_start();
    int fd = cli_connect_raw();

    u8 body[24];
    struct proto_hello h = { .version = PROTO_VERSION, .cluster_id = U128_MAKE(CLUSTER_HI, CLUSTER_LO) };
    send_frame(fd, PROTO_HELLO, 1, body, proto_put_hello(body, &h));
    struct frame f;
    expect_frame(fd, &f, PROTO_HELLO_OK, 1);
    struct proto_hello_ok ok;
    ck_assert_int_eq(proto_get_hello_ok(f.body, f.h.body_len, &ok), PROTO_OK);
    ck_assert_uint_eq(ok.version, 1);
    ck_assert_uint_eq(ok.max_batch, 16);
    ck_assert(ok.cluster_id == U128_MAKE(CLUSTER_HI, CLUSTER_LO));
    ck_assert_uint_eq(ok.replica_id, 1);
    ck_assert_uint_eq(ok.slot_duration_ms, 100);
    ck_assert_uint_eq(ok.max_body, PROTO_SUBMIT_PREFIX + 16 * PROTO_COMMAND_SIZE);
    ck_assert_uint_eq(ok.view, 0);

    /* Three submits in one write: 10 = create, reserve (250 ms -> 3 slots), invalid (op 0);
     * 11 = confirm; 12 = release, create. */
    struct proto_command b10[3] = { cmd_make(SM_CMD_CREATE_RESOURCE, 100, 5, 0, 0),
                                    cmd_make(SM_CMD_RESERVE, 101, 5, 9, 250),
                                    cmd_make(SM_CMD_CREATE_RESOURCE, 0, 6, 0, 0) };
    struct proto_command b11[1] = { cmd_make(SM_CMD_CONFIRM, 102, U128_MAKE(0, 2), 9, 0) };
    struct proto_command b12[2] = { cmd_make(SM_CMD_RELEASE, 103, U128_MAKE(0, 2), 9, 0),
                                    cmd_make(SM_CMD_CREATE_RESOURCE, 104, 7, 0, 0) };
    send_submit(fd, 10, b10, 3);
    send_submit(fd, 11, b11, 1);
    send_submit(fd, 12, b12, 2);

    struct msg_write w[5];
    for (int i = 0; i < 5; i++)
        pop_write(&w[i]);
    /* The sequencer sees the valid commands in order, converted, tagged by command index. */
    ck_assert_uint_eq(w[0].cmd.kind, SM_CMD_CREATE_RESOURCE);
    ck_assert(w[0].cmd.resource_id == 5 && w[0].cmd.operation_id == 100 && w[0].cmd.client_id == 77);
    ck_assert_uint_eq(w[0].tag.index, 0);
    ck_assert_uint_eq(w[1].cmd.kind, SM_CMD_RESERVE);
    ck_assert(w[1].cmd.resource_id == 5 && w[1].cmd.holder_id == 9 && w[1].cmd.reservation_id == 0);
    ck_assert_uint_eq(w[1].cmd.ttl_slots, 3);
    ck_assert_uint_eq(w[1].tag.index, 1);
    ck_assert(w[1].tag.pending == w[0].tag.pending && w[1].tag.pending_gen == w[0].tag.pending_gen);
    ck_assert_uint_eq(w[1].tag.flags & MSG_TAG_FORCE_LOG, 0);
    ck_assert_uint_eq(w[2].cmd.kind, SM_CMD_CONFIRM);
    ck_assert(w[2].cmd.reservation_id == U128_MAKE(0, 2) && w[2].cmd.holder_id == 9 && w[2].cmd.resource_id == 0);
    ck_assert_uint_ne(w[2].tag.pending, w[0].tag.pending);
    ck_assert_uint_eq(w[3].cmd.kind, SM_CMD_RELEASE);
    ck_assert(w[3].cmd.reservation_id == U128_MAKE(0, 2));
    ck_assert_uint_eq(w[4].cmd.kind, SM_CMD_CREATE_RESOURCE);
    ck_assert_uint_eq(w[4].tag.index, 1);
    struct msg_write extra;
    ck_assert(!try_pop(F.seg.write, &extra, sizeof(extra), 100)); /* the invalid one never went */

    for (int i = 0; i < 5; i++)
        commit(&w[i], (u64)i + 1);
    struct proto_result r[3];
    expect_results(fd, 10, 3, r);
    check_result(&r[0], PROTO_COMMITTED, SM_OK, 1);
    check_result(&r[1], PROTO_COMMITTED, SM_OK, 2);
    ck_assert(r[1].reservation_id == U128_MAKE(0, 2));
    ck_assert_uint_eq(r[1].deadline_slot, 1003);
    check_result(&r[2], PROTO_REJECTED, PROTO_REJECT_INVALID_REQUEST, 0);
    expect_results(fd, 11, 1, r);
    check_result(&r[0], PROTO_COMMITTED, SM_OK, 3);
    expect_results(fd, 12, 2, r);
    check_result(&r[0], PROTO_COMMITTED, SM_OK, 4);
    check_result(&r[1], PROTO_COMMITTED, SM_OK, 5);

    ck_assert_uint_eq(ctr(&F.seg.ing->requests), 4);
    ck_assert_uint_eq(ctr(&F.seg.ing->commands), 6);
    wait_ctr(&F.seg.ing->inflight, 0);
    close(fd);
    fx_stop();
}
END_TEST

START_TEST(test_answers_out_of_order_reads_and_tick)
{
    fx_config();
    fx_start();
    int fd = cli_connect();
    struct proto_command b1[2] = { cmd_make(SM_CMD_CREATE_RESOURCE, 1, 11, 0, 0),
                                   cmd_make(SM_CMD_CREATE_RESOURCE, 2, 12, 0, 0) };
    struct proto_command b2[1] = { cmd_make(SM_CMD_CREATE_RESOURCE, 3, 13, 0, 0) };
    send_submit(fd, 1, b1, 2);
    send_submit(fd, 2, b2, 1);
    send_read(fd, PROTO_GET_RESOURCE, 3, 11);
    send_read(fd, PROTO_GET_RESERVATION, 4, U128_MAKE(0, 99));
    send_frame(fd, PROTO_TICK, 5, NULL, 0);
    struct msg_write w[3];
    for (int i = 0; i < 3; i++)
        pop_write(&w[i]);
    struct msg_read rd[3];
    for (int i = 0; i < 3; i++)
        pop_read(&rd[i]);
    ck_assert_uint_eq(rd[0].kind, MSG_READ_RESOURCE);
    ck_assert(rd[0].id == 11);
    ck_assert_uint_eq(rd[1].kind, MSG_READ_RESERVATION);
    ck_assert(rd[1].id == U128_MAKE(0, 99));
    ck_assert_uint_eq(rd[2].kind, MSG_READ_TICK);

    /* The later requests are answered first; reads overtake writes. */
    struct msg_result m = result_for(&rd[2].tag, MSG_RESULT_TICK, 0, 0, 0);
    m.u.tick.slot = 1234;
    m.u.tick.proposed = 2;
    push(F.seg.result, &m);
    struct frame f;
    expect_frame(fd, &f, PROTO_TICK_OK, 5);
    struct proto_tick_ok t;
    ck_assert_int_eq(proto_get_tick_ok(f.body, f.h.body_len, &t), PROTO_OK);
    ck_assert_uint_eq(t.slot, 1234);
    ck_assert_uint_eq(t.expirations_proposed, 2);

    m = result_for(&rd[1].tag, MSG_RESULT_RESERVATION, 0, SM_READ_NOT_FOUND, 17);
    push(F.seg.result, &m);
    expect_frame(fd, &f, PROTO_RESERVATION, 4);
    struct proto_reservation rv;
    ck_assert_int_eq(proto_get_reservation(f.body, f.h.body_len, &rv), PROTO_OK);
    ck_assert_uint_eq(rv.read, SM_READ_NOT_FOUND);
    ck_assert(rv.reservation_id == U128_MAKE(0, 99));
    ck_assert_uint_eq(rv.applied_lsn, 17);

    commit(&w[2], 3);
    struct proto_result r[2];
    expect_results(fd, 2, 1, r);
    check_result(&r[0], PROTO_COMMITTED, SM_OK, 3);

    m = result_for(&rd[0].tag, MSG_RESULT_RESOURCE, 0, SM_READ_FOUND, 18);
    m.u.resource = (struct sm_resource_view){ .resource_id = 11, .current_reservation_id = U128_MAKE(0, 7),
                                              .version = 4, .state = SM_RESOURCE_RESERVED };
    push(F.seg.result, &m);
    expect_frame(fd, &f, PROTO_RESOURCE, 3);
    struct proto_resource rs;
    ck_assert_int_eq(proto_get_resource(f.body, f.h.body_len, &rs), PROTO_OK);
    ck_assert_uint_eq(rs.read, SM_READ_FOUND);
    ck_assert_uint_eq(rs.state, SM_RESOURCE_RESERVED);
    ck_assert(rs.resource_id == 11 && rs.current_reservation_id == U128_MAKE(0, 7));
    ck_assert_uint_eq(rs.version, 4);
    ck_assert_uint_eq(rs.applied_lsn, 18);

    /* Within a batch: command 1's answer first (from the sequencer's ring), then command 0's;
     * the response lists them in command order. */
    m = result_for(&w[1].tag, MSG_RESULT_WRITE, PROTO_REJECTED, PROTO_REJECT_SLOT_OVERFLOW, 0);
    push(F.seg.reject, &m);
    struct timeval tv = { .tv_sec = 0, .tv_usec = 200000 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ck_assert_int_lt(recv(fd, fbuf, 1, MSG_PEEK), 0); /* nothing yet: command 0 is unanswered */
    tv.tv_sec = WAIT_MS / 1000;
    tv.tv_usec = 0;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    commit(&w[0], 2);
    expect_results(fd, 1, 2, r);
    check_result(&r[0], PROTO_COMMITTED, SM_OK, 2);
    check_result(&r[1], PROTO_REJECTED, PROTO_REJECT_SLOT_OVERFLOW, 0);
    close(fd);
    fx_stop();
}
END_TEST

/* One bad frame on a fresh connection: the error frame, then EOF. */
static void bad_frame_case(const void *bytes, size_t n, bool shut, u64 rid, u16 code)
{
    int fd = cli_connect();
    send_all(fd, bytes, n);
    if (shut)
        shutdown(fd, SHUT_WR);
    expect_error(fd, rid, code);
    expect_eof(fd);
    close(fd);
}

START_TEST(test_bad_frames_close_only_their_connection)
{
    fx_config();
    fx_start();
    int bystander = cli_connect_raw();
    hello(bystander, 1);
    u8 *f = malloc(PROTO_HEADER_SIZE + PROTO_BODY_MAX);
    ck_assert_ptr_nonnull(f);

    /* Not our protocol at all. */
    static const char http[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    bad_frame_case(http, sizeof(http) - 1, false, 0, PROTO_ERR_BAD_FRAME);

    /* A submit whose body was damaged in transit. */
    u8 body[PROTO_SUBMIT_PREFIX + PROTO_COMMAND_SIZE];
    struct proto_command c = cmd_make(SM_CMD_CREATE_RESOURCE, 1, 2, 0, 0);
    u32 len = proto_put_submit_prefix(body, 1);
    proto_put_command(body + len, &c);
    len += PROTO_COMMAND_SIZE;
    size_t n = build_frame(f, PROTO_SUBMIT, 21, body, len);
    f[PROTO_HEADER_SIZE + 20] ^= 0x40;
    bad_frame_case(f, n, false, 21, PROTO_ERR_BAD_CHECKSUM);

    /* A length over the protocol's limit: refused from the header alone. */
    raw_frame(f, PROTO_SUBMIT, 22, NULL, 0);
    le_put_u32(f + 16, PROTO_BODY_MAX + 1);
    bad_frame_case(f, PROTO_HEADER_SIZE, false, 22, PROTO_ERR_TOO_LARGE);

    /* Truncated: 40 bytes of a 128-byte frame, then the client shuts its side. */
    n = build_frame(f, PROTO_SUBMIT, 23, body, len);
    bad_frame_case(f, 40, true, 23, PROTO_ERR_BAD_FRAME);

    /* A response kind sent as a request. */
    struct proto_tick_ok t = { 1, 2 };
    u8 tb[16];
    n = build_frame(f, PROTO_TICK_OK, 24, tb, proto_put_tick_ok(tb, &t));
    bad_frame_case(f, n, false, 24, PROTO_ERR_BAD_FRAME);

    /* A fixed-size kind with the wrong length; a submit of zero commands. */
    memset(tb, 0, sizeof(tb));
    n = raw_frame(f, PROTO_GET_RESOURCE, 25, tb, 10);
    bad_frame_case(f, n, false, 25, PROTO_ERR_BAD_BODY);
    u8 zero[PROTO_SUBMIT_PREFIX] = { 0 };
    n = build_frame(f, PROTO_SUBMIT, 26, zero, sizeof(zero));
    bad_frame_case(f, n, false, 26, PROTO_ERR_BAD_BODY);

    /* A bad flags byte: the header is refused before the checksum. */
    n = build_frame(f, PROTO_METRICS, 27, NULL, 0);
    f[7] = 1;
    bad_frame_case(f, n, false, 27, PROTO_ERR_BAD_FRAME);

    /* More commands than max_batch (so more than max_body): that request is refused, its body
     * skipped, and the frame right behind it in the same write is served. */
    int fd = cli_connect();
    u8 *big = malloc(PROTO_SUBMIT_PREFIX + 40 * PROTO_COMMAND_SIZE);
    ck_assert_ptr_nonnull(big);
    u32 blen = proto_put_submit_prefix(big, 40);
    for (int i = 0; i < 40; i++, blen += PROTO_COMMAND_SIZE) {
        struct proto_command bc = cmd_make(SM_CMD_CREATE_RESOURCE, (u128)i + 1, (u128)i + 1, 0, 0);
        proto_put_command(big + blen, &bc);
    }
    n = build_frame(f, PROTO_SUBMIT, 30, big, blen);
    n += build_frame(f + n, PROTO_METRICS, 31, NULL, 0);
    free(big);
    send_all(fd, f, n);
    expect_error(fd, 30, PROTO_ERR_BATCH_TOO_LARGE);
    struct frame fr;
    expect_frame(fd, &fr, PROTO_METRICS_OK, 31);
    close(fd);

    /* The bystander never noticed. */
    send_frame(bystander, PROTO_STATUS, 2, NULL, 0);
    expect_frame(bystander, &fr, PROTO_STATUS_OK, 2);
    ck_assert_uint_eq(ctr(&F.seg.ing->bad_frames), 8);
    ck_assert(ingress_alive());
    close(bystander);
    free(f);
    fx_stop();
}
END_TEST

START_TEST(test_hello_errors_close)
{
    fx_config();
    fx_start();
    u8 body[24];
    struct proto_hello h = { .version = 2, .cluster_id = 0 };
    int fd = cli_connect_raw();
    send_frame(fd, PROTO_HELLO, 1, body, proto_put_hello(body, &h));
    expect_error(fd, 1, PROTO_ERR_UNSUPPORTED_VERSION);
    expect_eof(fd);
    close(fd);

    h = (struct proto_hello){ .version = PROTO_VERSION, .cluster_id = U128_MAKE(CLUSTER_HI, CLUSTER_LO + 1) };
    fd = cli_connect_raw();
    send_frame(fd, PROTO_HELLO, 2, body, proto_put_hello(body, &h));
    expect_error(fd, 2, PROTO_ERR_WRONG_CLUSTER);
    expect_eof(fd);
    close(fd);
    fx_stop();
}
END_TEST

/* A full server makes room for a new client by evicting the connection idle longest (one that
 * never said hello first), never one that was active within the last second. */
START_TEST(test_full_server_evicts_the_longest_idle)
{
    fx_config();
    F.cfg.max_connections = 2;
    fx_start();
    int c1 = cli_connect();       /* said hello */
    int c2 = cli_connect_raw();   /* never said hello */
    wait_ctr(&F.seg.ing->connections, 2);
    int c3 = cli_connect_raw();   /* both were active just now: refused */
    expect_error(c3, 0, PROTO_ERR_TOO_MANY_CONNECTIONS);
    expect_eof(c3);
    close(c3);
    sleep_ms(1200);
    int c4 = cli_connect();       /* evicts c2, which never said hello */
    expect_error(c2, 0, PROTO_ERR_IDLE);
    expect_eof(c2);
    close(c2);
    ck_assert_uint_eq(ctr(&F.seg.ing->connections_evicted), 1);
    struct frame fr;
    send_frame(c1, PROTO_STATUS, 2, NULL, 0); /* c1 is untouched and now the most recent */
    expect_frame(c1, &fr, PROTO_STATUS_OK, 2);
    sleep_ms(1200);
    send_frame(c1, PROTO_STATUS, 3, NULL, 0); /* c4 is now the longest idle */
    expect_frame(c1, &fr, PROTO_STATUS_OK, 3);
    int c5 = cli_connect();
    expect_error(c4, 0, PROTO_ERR_IDLE);
    expect_eof(c4);
    send_frame(c5, PROTO_STATUS, 4, NULL, 0);
    expect_frame(c5, &fr, PROTO_STATUS_OK, 4);
    ck_assert_uint_eq(ctr(&F.seg.ing->connections_evicted), 2);
    ck_assert_uint_eq(ctr(&F.seg.ing->connections_refused), 1);
    close(c1);
    close(c4);
    close(c5);
    fx_stop();
}
END_TEST

/* Nothing is served before hello (the version and cluster checks happen there), and hello
 * happens once: both refused with a handshake error that closes the connection. */
START_TEST(test_handshake_enforced)
{
    fx_config();
    fx_start();
    int fd = cli_connect_raw();
    struct proto_command b[1] = { cmd_make(SM_CMD_CREATE_RESOURCE, 1, 11, 0, 0) };
    send_submit(fd, 7, b, 1);
    expect_error(fd, 7, PROTO_ERR_HANDSHAKE);
    expect_eof(fd);
    close(fd);
    fd = cli_connect_raw();
    send_read(fd, PROTO_GET_RESOURCE, 8, 11);
    expect_error(fd, 8, PROTO_ERR_HANDSHAKE);
    expect_eof(fd);
    close(fd);
    fd = cli_connect(); /* hello with request id 0 */
    u8 body[24];
    struct proto_hello h = { .version = PROTO_VERSION, .cluster_id = 0 };
    send_frame(fd, PROTO_HELLO, 9, body, proto_put_hello(body, &h));
    expect_error(fd, 9, PROTO_ERR_HANDSHAKE);
    expect_eof(fd);
    close(fd);
    /* Nothing reached the sequencer or the applier. */
    ck_assert_uint_eq(ring_depth(F.seg.write), 0);
    ck_assert_uint_eq(ring_depth(F.seg.read), 0);
    ck_assert(ingress_alive());
    fx_stop();
}
END_TEST

START_TEST(test_max_connections)
{
    fx_config();
    F.cfg.max_connections = 2;
    fx_start();
    int c1 = cli_connect_raw(), c2 = cli_connect_raw();
    hello(c1, 1);
    hello(c2, 1);
    int c3 = cli_connect_raw();
    expect_error(c3, 0, PROTO_ERR_TOO_MANY_CONNECTIONS);
    expect_eof(c3);
    close(c3);
    ck_assert_uint_eq(ctr(&F.seg.ing->connections_refused), 1);
    ck_assert_uint_eq(ctr(&F.seg.ing->connections), 2);
    /* A slot freed is a slot reused. */
    close(c1);
    wait_ctr(&F.seg.ing->connections, 1);
    int c4 = cli_connect_raw();
    hello(c4, 1);
    struct frame fr;
    send_frame(c2, PROTO_STATUS, 2, NULL, 0);
    expect_frame(c2, &fr, PROTO_STATUS_OK, 2);
    ck_assert_uint_eq(ctr(&F.seg.ing->connections_total), 3);
    close(c2);
    close(c4);
    fx_stop();
}
END_TEST

START_TEST(test_idle_and_header_timeouts)
{
    fx_config();
    F.cfg.idle_timeout_ms = 300;
    F.cfg.header_timeout_ms = 300;
    fx_start();
    /* Silent connection. */
    int c1 = cli_connect();
    u64 t0 = mono_ms();
    expect_error(c1, 0, PROTO_ERR_IDLE);
    ck_assert_uint_ge(mono_ms() - t0, 250);
    expect_eof(c1);
    close(c1);

    /* Ten bytes of a header, then nothing. */
    u8 *f = malloc(PROTO_HEADER_SIZE + PROTO_BODY_MAX);
    ck_assert_ptr_nonnull(f);
    u8 body[PROTO_SUBMIT_PREFIX + PROTO_COMMAND_SIZE];
    struct proto_command c = cmd_make(SM_CMD_CREATE_RESOURCE, 1, 2, 0, 0);
    u32 len = proto_put_submit_prefix(body, 1);
    proto_put_command(body + len, &c);
    len += PROTO_COMMAND_SIZE;
    size_t n = build_frame(f, PROTO_SUBMIT, 5, body, len);
    int c2 = cli_connect();
    send_all(c2, f, 10);
    expect_error(c2, 0, PROTO_ERR_IDLE);
    expect_eof(c2);
    close(c2);

    /* Slowloris: a byte every 60 ms keeps the connection busy but never completes the frame. */
    int c3 = cli_connect();
    t0 = mono_ms();
    for (size_t i = 0; i < 12 && i < n; i++) {
        send_all(c3, f + i, 1);
        sleep_ms(60);
    }
    expect_error(c3, 0, PROTO_ERR_IDLE);
    u64 took = mono_ms() - t0;
    ck_assert_msg(took < 2000, "slowloris lasted %llu ms", (unsigned long long)took);
    expect_eof(c3);
    close(c3);
    free(f);
    ck_assert(ingress_alive());
    fx_stop();
}
END_TEST

START_TEST(test_request_timeout_is_indefinite)
{
    fx_config();
    F.cfg.request_timeout_ms = 300;
    fx_start();
    int fd = cli_connect();
    struct proto_command b[2] = { cmd_make(SM_CMD_CREATE_RESOURCE, 1, 11, 0, 0),
                                  cmd_make(SM_CMD_CREATE_RESOURCE, 2, 12, 0, 0) };
    u64 t0 = mono_ms();
    send_submit(fd, 1, b, 2);
    send_read(fd, PROTO_GET_RESOURCE, 2, 11);
    struct msg_write w[2];
    pop_write(&w[0]);
    pop_write(&w[1]);
    struct msg_read rd;
    pop_read(&rd);
    commit(&w[0], 1); /* command 1 and the read never get an answer */

    struct frame f;
    bool got_submit = false, got_read = false;
    for (int k = 0; k < 2; k++) {
        ck_assert_int_eq(read_frame(fd, &f), 1);
        if (f.h.request_id == 1) {
            ck_assert_uint_eq(f.h.kind, PROTO_SUBMIT_RESULT);
            struct proto_result r;
            ck_assert_int_eq(proto_get_result(f.body + PROTO_SUBMIT_PREFIX, &r), PROTO_OK);
            check_result(&r, PROTO_COMMITTED, SM_OK, 1);
            ck_assert_int_eq(proto_get_result(f.body + PROTO_SUBMIT_PREFIX + PROTO_RESULT_SIZE, &r), PROTO_OK);
            check_result(&r, PROTO_INDEFINITE, PROTO_INDEFINITE_TIMEOUT, 0);
            got_submit = true;
        } else {
            check_error(&f, 2, PROTO_ERR_TIMEOUT);
            got_read = true;
        }
    }
    ck_assert(got_submit && got_read);
    ck_assert_uint_ge(mono_ms() - t0, 280);
    ck_assert_uint_eq(ctr(&F.seg.ing->timeouts), 1);

    /* The late answers are dropped; the connection goes on. */
    commit(&w[1], 2);
    struct msg_result m = result_for(&rd.tag, MSG_RESULT_RESOURCE, 0, SM_READ_NOT_FOUND, 2);
    push(F.seg.result, &m);
    send_frame(fd, PROTO_STATUS, 3, NULL, 0);
    expect_frame(fd, &f, PROTO_STATUS_OK, 3);
    ck_assert_uint_eq(ctr(&F.seg.ing->inflight), 0);
    close(fd);
    fx_stop();
}
END_TEST

START_TEST(test_worker_restarts)
{
    fx_config();
    fx_start();
    int fd = cli_connect();
    struct proto_command b[1] = { cmd_make(SM_CMD_CREATE_RESOURCE, 1, 11, 0, 0) };
    send_submit(fd, 1, b, 1);
    struct msg_write w;
    pop_write(&w);
    /* The sequencer is replaced: its in-flight write may or may not be in the WAL. */
    u64 t0 = mono_ms();
    atomic_fetch_add(&F.seg.workers[ROLE_SEQUENCER].generation, 1);
    struct proto_result r;
    expect_results(fd, 1, 1, &r);
    check_result(&r, PROTO_INDEFINITE, PROTO_INDEFINITE_WORKER_RESTARTED, 0);
    ck_assert_uint_lt(mono_ms() - t0, 1000);
    commit(&w, 1); /* late: dropped */

    /* The applier is replaced: reads in flight fail, writes keep waiting for their result. */
    b[0] = cmd_make(SM_CMD_CREATE_RESOURCE, 2, 12, 0, 0);
    send_submit(fd, 2, b, 1);
    pop_write(&w);
    send_read(fd, PROTO_GET_RESOURCE, 3, 12);
    struct msg_read rd;
    pop_read(&rd);
    atomic_fetch_add(&F.seg.workers[ROLE_APPLIER].generation, 1);
    expect_error(fd, 3, PROTO_ERR_UNAVAILABLE);
    commit(&w, 7);
    expect_results(fd, 2, 1, &r);
    check_result(&r, PROTO_COMMITTED, SM_OK, 7);
    ck_assert(ingress_alive());
    close(fd);
    fx_stop();
}
END_TEST

START_TEST(test_resubmit_forces_the_log)
{
    fx_config();
    fx_start();
    int fd = cli_connect();
    struct proto_command b[2] = { cmd_make(SM_CMD_CREATE_RESOURCE, 1, 11, 0, 0),
                                  cmd_make(SM_CMD_RESERVE, 2, 11, 9, 1000) };
    send_submit(fd, 1, b, 2);
    struct msg_write w0, w1, again;
    pop_write(&w0);
    pop_write(&w1);
    ck_assert_uint_eq(w1.tag.flags & MSG_TAG_FORCE_LOG, 0);
    /* The sequencer's retry shortcut missed: it asks for the command again. */
    struct msg_result m = result_for(&w1.tag, MSG_RESULT_RESUBMIT, 0, 0, 0);
    push(F.seg.reject, &m);
    pop_write(&again);
    ck_assert(again.tag.flags & MSG_TAG_FORCE_LOG);
    ck_assert_uint_eq(again.tag.pending, w1.tag.pending);
    ck_assert_uint_eq(again.tag.pending_gen, w1.tag.pending_gen);
    ck_assert_uint_eq(again.tag.index, 1);
    ck_assert(memcmp(&again.cmd, &w1.cmd, sizeof(again.cmd)) == 0);
    /* A duplicate answer after the real one (a restarted worker publishing again) is dropped. */
    commit(&w0, 4);
    commit(&again, 5);
    commit(&again, 6);
    struct proto_result r[2];
    expect_results(fd, 1, 2, r);
    check_result(&r[0], PROTO_COMMITTED, SM_OK, 4);
    check_result(&r[1], PROTO_COMMITTED, SM_OK, 5);
    ck_assert(r[1].reservation_id == U128_MAKE(0, 5));
    struct msg_write none;
    ck_assert(!try_pop(F.seg.write, &none, sizeof(none), 100));
    close(fd);
    fx_stop();
}
END_TEST

START_TEST(test_late_and_foreign_results_are_dropped)
{
    fx_config();
    fx_start();
    int c1 = cli_connect();
    struct proto_command b[1] = { cmd_make(SM_CMD_CREATE_RESOURCE, 1, 11, 0, 0) };
    send_submit(c1, 1, b, 1);
    struct msg_write old;
    pop_write(&old);
    close(c1);
    wait_ctr(&F.seg.ing->connections, 0);
    wait_ctr(&F.seg.ing->inflight, 0);
    commit(&old, 1); /* the connection is gone: dropped */

    /* Another ingress generation, an index out of range, an unknown type: all dropped. */
    struct msg_result m = result_for(&old.tag, MSG_RESULT_WRITE, PROTO_COMMITTED, SM_OK, 1);
    m.tag.ingress_gen = ING_GEN - 1;
    push(F.seg.result, &m);
    m.tag = old.tag;
    m.tag.pending = 1u << 30;
    push(F.seg.reject, &m);
    m.tag = old.tag;
    m.type = 99;
    push(F.seg.result, &m);

    /* A new request most likely reuses the same entry with a new generation: the old tag must
     * not answer it. */
    int c2 = cli_connect();
    send_submit(c2, 2, b, 1);
    struct msg_write w;
    pop_write(&w);
    ck_assert(w.tag.pending != old.tag.pending || w.tag.pending_gen != old.tag.pending_gen);
    commit(&old, 2);
    commit(&w, 3);
    struct proto_result r;
    expect_results(c2, 2, 1, &r);
    check_result(&r, PROTO_COMMITTED, SM_OK, 3);

    /* A connection the server closes (a bad frame behind a pending submit) frees its entry
     * at once; the answer that comes later is dropped. */
    send_submit(c2, 3, b, 1);
    pop_write(&w);
    send_all(c2, "JUNKJUNKJUNK", 12);
    expect_error(c2, 0, PROTO_ERR_BAD_FRAME);
    expect_eof(c2);
    close(c2);
    wait_ctr(&F.seg.ing->connections, 0);
    ck_assert_uint_eq(ctr(&F.seg.ing->inflight), 0);
    commit(&w, 4);
    int c3 = cli_connect_raw();
    hello(c3, 1);
    close(c3);
    ck_assert(ingress_alive());
    fx_stop();
}
END_TEST

START_TEST(test_full_write_ring_rejects_rest_of_batch)
{
    fx_config();
    F.cfg.ring_capacity = 16;
    fx_start();
    int fd = cli_connect();
    struct proto_command b[16];
    for (int i = 0; i < 16; i++)
        b[i] = cmd_make(SM_CMD_CREATE_RESOURCE, (u128)i + 1, (u128)i + 1, 0, 0);
    send_submit(fd, 1, b, 16); /* fills the ring: reading pauses */
    for (int i = 0; i < 16; i++)
        b[i].operation_id += 100;
    send_submit(fd, 2, b, 16);
    u64 until = mono_ms() + WAIT_MS;
    while (ring_depth(F.seg.write) < 16) {
        ck_assert(mono_ms() < until);
        sleep_ms(2);
    }
    sleep_ms(150);
    ck_assert_uint_eq(ring_depth(F.seg.write), 16); /* request 2 waits: reading is paused */
    struct msg_write w[32];
    for (int i = 0; i < 10; i++)
        pop_write(&w[i]);
    /* At most half full: reading resumes at the next tick and request 2 finds room for 8 to
     * 10 of its commands (the tick may see 8 or 9 popped); the rest are rejected. */
    until = mono_ms() + WAIT_MS;
    while (ring_depth(F.seg.write) <= 6) {
        ck_assert(mono_ms() < until);
        sleep_ms(2);
    }
    sleep_ms(50);
    int n = 10;
    while (n < 32 && try_pop(F.seg.write, &w[n], sizeof(w[n]), 100))
        n++;
    int k = n - 16; /* commands of request 2 that went to the sequencer */
    ck_assert_msg(k >= 8 && k <= 10, "request 2 pushed %d commands", k);
    for (int i = 0; i < n; i++)
        commit(&w[i], (u64)i + 1);
    struct proto_result r[16];
    expect_results(fd, 1, 16, r);
    for (int i = 0; i < 16; i++)
        check_result(&r[i], PROTO_COMMITTED, SM_OK, (u64)i + 1);
    expect_results(fd, 2, 16, r);
    for (int i = 0; i < k; i++)
        check_result(&r[i], PROTO_COMMITTED, SM_OK, (u64)i + 17);
    for (int i = k; i < 16; i++)
        check_result(&r[i], PROTO_REJECTED, PROTO_REJECT_OVERLOADED, 0);
    ck_assert_uint_eq(ctr(&F.seg.ing->overloaded), 1);
    struct msg_write none;
    ck_assert(!try_pop(F.seg.write, &none, sizeof(none), 100));
    close(fd);
    fx_stop();
}
END_TEST

START_TEST(test_sigterm_drains)
{
    fx_config();
    F.cfg.shutdown_timeout_ms = 1000;
    fx_start();
    int idle = cli_connect_raw();
    hello(idle, 1);
    int fd = cli_connect();
    struct proto_command b[1] = { cmd_make(SM_CMD_CREATE_RESOURCE, 1, 11, 0, 0) };
    send_submit(fd, 1, b, 1);
    b[0].operation_id = 2;
    send_submit(fd, 2, b, 1);
    send_read(fd, PROTO_GET_RESOURCE, 3, 11);
    struct msg_write w1, w2;
    pop_write(&w1);
    pop_write(&w2);
    struct msg_read rd;
    pop_read(&rd);

    /* Loop 1: storage failed first (the sequencer halted), so pending writes say so. */
    bool storage = _i == 1;
    if (storage)
        atomic_store(&F.seg.seq->halted, 1);
    u64 t0 = mono_ms();
    kill(F.pid, SIGTERM);
    expect_eof(idle); /* nothing in flight: closed at once */
    commit(&w1, 1);   /* answered during the drain: delivered */
    bool seen[4] = { false };
    struct frame f;
    while (read_frame(fd, &f) == 1) {
        u64 rid = f.h.request_id;
        ck_assert(rid >= 1 && rid <= 3 && !seen[rid]);
        seen[rid] = true;
        struct proto_result r;
        if (rid == 1) {
            ck_assert_uint_eq(f.h.kind, PROTO_SUBMIT_RESULT);
            ck_assert_int_eq(proto_get_result(f.body + PROTO_SUBMIT_PREFIX, &r), PROTO_OK);
            check_result(&r, PROTO_COMMITTED, SM_OK, 1);
        } else if (rid == 2) {
            ck_assert_uint_eq(f.h.kind, PROTO_SUBMIT_RESULT);
            ck_assert_int_eq(proto_get_result(f.body + PROTO_SUBMIT_PREFIX, &r), PROTO_OK);
            check_result(&r, PROTO_INDEFINITE,
                         storage ? PROTO_INDEFINITE_STORAGE_FAILURE : PROTO_INDEFINITE_SHUTTING_DOWN, 0);
        } else {
            check_error(&f, 3, PROTO_ERR_SHUTTING_DOWN);
        }
    }
    ck_assert(seen[1] && seen[2] && seen[3]);
    close(idle);
    close(fd);
    int status = fx_wait(5000);
    ck_assert_msg(status != -1, "the ingress did not exit after draining");
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "exit status %d", status);
    ck_assert_uint_lt(mono_ms() - t0, 1000 + 500);
    /* The listening socket survives for the next ingress. */
    int one = 0;
    socklen_t ol = sizeof(one);
    ck_assert_int_eq(getsockopt(F.lfd, SOL_SOCKET, SO_ACCEPTCONN, &one, &ol), 0);
    ck_assert_int_eq(one, 1);
    fx_stop();
}
END_TEST

static json_t *json_request(int fd, u8 kind, u64 rid)
{
    send_frame(fd, kind, rid, NULL, 0);
    struct frame f;
    expect_frame(fd, &f, kind == PROTO_METRICS ? PROTO_METRICS_OK : PROTO_STATUS_OK, rid);
    json_error_t err;
    json_t *doc = json_loadb((const char *)f.body, f.h.body_len, 0, &err);
    ck_assert_msg(doc != NULL, "not JSON: %s", err.text);
    ck_assert(json_is_object(doc));
    return doc;
}

static json_int_t json_at(json_t *doc, const char *a, const char *b)
{
    json_t *o = json_object_get(doc, a);
    ck_assert_msg(o != NULL, "no %s", a);
    if (b != NULL) {
        o = json_object_get(o, b);
        ck_assert_msg(o != NULL, "no %s.%s", a, b);
    }
    ck_assert_msg(json_is_integer(o), "%s.%s is not an integer", a, b ? b : "");
    return json_integer_value(o);
}

START_TEST(test_metrics_and_status_are_json)
{
    fx_config();
    fx_start();
    atomic_store(&F.seg.seq->durable_lsn, 42);
    atomic_store(&F.seg.seq->sequenced_lsn, 43);
    atomic_store(&F.seg.app->applied_lsn, 41);
    atomic_store(&F.seg.app->results[SM_RESOURCE_BUSY], 3);
    atomic_store(&F.seg.workers[ROLE_APPLIER].restarts, 2);
    seg_histogram_add(&F.seg.seq->fsync_us, 100);
    seg_histogram_add(&F.seg.seq->fsync_us, 300);
    int fd = cli_connect();

    json_t *m = json_request(fd, PROTO_METRICS, 1);
    ck_assert_int_eq(json_at(m, "sequencer", "durable_lsn"), 42);
    ck_assert_int_eq(json_at(json_object_get(m, "applier"), "results", "resource_busy"), 3);
    ck_assert_int_eq(json_at(json_object_get(m, "sequencer"), "fsync_us", "count"), 2);
    ck_assert_int_eq(json_at(json_object_get(m, "sequencer"), "fsync_us", "max"), 300);
    ck_assert_int_eq(json_at(m, "ingress", "connections"), 1);
    ck_assert_int_ge(json_at(m, "ingress", "requests"), 1);
    ck_assert_int_eq(json_at(m, "restarts", "applier"), 2);
    ck_assert_int_eq(json_at(json_object_get(m, "queues"), "write", "capacity"), 64);
    ck_assert_ptr_nonnull(json_object_get(json_object_get(json_object_get(m, "applier"), "tables"), "operations"));
    ck_assert_ptr_nonnull(json_object_get(json_object_get(m, "applier"), "commands"));
    json_decref(m);

    json_t *s = json_request(fd, PROTO_STATUS, 2);
    ck_assert_str_eq(json_string_value(json_object_get(s, "version")), PACKAGE_VERSION);
    ck_assert_str_eq(json_string_value(json_object_get(s, "role")), "primary");
    ck_assert_int_eq(json_at(s, "view", NULL), 0);
    ck_assert_int_eq(json_at(s, "durable_lsn", NULL), 42);
    ck_assert_int_eq(json_at(s, "applied_lsn", NULL), 41);
    ck_assert_int_eq(json_at(s, "sequenced_lsn", NULL), 43);
    json_t *workers = json_object_get(s, "workers");
    ck_assert(json_is_array(workers));
    ck_assert_uint_eq(json_array_size(workers), ROLE_COUNT - 1); /* no peer on a single node */
    for (size_t i = 0; i < json_array_size(workers); i++)
        ck_assert_str_ne(json_string_value(json_object_get(json_array_get(workers, i), "role")), "peer");
    ck_assert_int_eq(json_at(s, "max_ttl_ms", NULL), (long long)F.cfg.max_ttl_ms);
    json_t *ingress = json_array_get(workers, ROLE_INGRESS);
    ck_assert_str_eq(json_string_value(json_object_get(ingress, "role")), "ingress");
    ck_assert_str_eq(json_string_value(json_object_get(ingress, "state")), "ready");
    ck_assert_int_eq(json_integer_value(json_object_get(ingress, "generation")), ING_GEN);
    ck_assert_int_lt(json_integer_value(json_object_get(ingress, "heartbeat_age_ms")), 1000);
    json_decref(s);
    close(fd);
    fx_stop();
}
END_TEST

START_TEST(test_corrupt_result_ring_is_fatal)
{
    fx_config();
    fx_start();
    /* A published entry of the wrong length: the ring is not what this build expects. */
    void *slot = ring_claim(F.seg.result);
    ck_assert_ptr_nonnull(slot);
    memset(slot, 0, 8);
    ring_publish(F.seg.result, 8);
    int status = fx_wait(WAIT_MS);
    ck_assert_int_ne(status, -1);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == WORKER_EXIT_FATAL, "exit status %d", status);
    /* The listening socket is still the supervisor's. */
    int one = 0;
    socklen_t ol = sizeof(one);
    ck_assert_int_eq(getsockopt(F.lfd, SOL_SOCKET, SO_ACCEPTCONN, &one, &ol), 0);
    fx_stop();
}
END_TEST

/* The tables on their own: blocks never overlap, free blocks coalesce back to the whole pool,
 * exhaustion is NULL (never a crash), and a freed entry's tag stops matching. */
START_TEST(test_tables_buddy_and_generations)
{
    struct ing_table t;
    ck_assert(ing_table_init(&t, 64, 64));
    struct ing_pending *p[64];
    u32 n = 0;
    u32 seed = 12345;
    u8 owner[64];
    for (int round = 0; round < 5000; round++) {
        seed = seed * 1103515245u + 12345u;
        bool do_alloc = n == 0 || (n < 64 && (seed >> 16) % 3 != 0);
        if (do_alloc) {
            u32 count = 1 + (seed >> 8) % 13;
            struct ing_pending *q = ing_pending_alloc(&t, PROTO_SUBMIT, count);
            if (q == NULL) {
                /* Refused only when no free block is large enough. */
                u32 order = 0;
                while ((1u << order) < count)
                    order++;
                for (u32 o = order; o <= t.rec_max_order; o++)
                    ck_assert_uint_eq(t.free_head[o], ING_NIL);
                continue;
            }
            ck_assert_uint_eq(q->count, count);
            ck_assert_uint_eq(q->resolved, 0);
            ck_assert_uint_le(q->rec + count, t.rec_cap);
            ck_assert_uint_eq(q->rec % (1u << q->rec_order), 0);
            for (u32 i = 0; i < count; i++)
                ck_assert_uint_eq(ing_pending_record(&t, q, i)->state, REC_DONE);
            p[n++] = q;
        } else {
            u32 k = (seed >> 4) % n;
            struct ing_pending *q = p[k];
            u32 idx = ing_pending_index(&t, q), gen = q->gen;
            ck_assert_ptr_eq(ing_pending_find(&t, idx, gen), q);
            ing_pending_release(&t, q);
            ck_assert_ptr_null(ing_pending_find(&t, idx, gen));
            p[k] = p[--n];
        }
        /* No record belongs to two live blocks. */
        memset(owner, 0xff, sizeof(owner));
        u32 used = 0;
        for (u32 j = 0; j < n; j++) {
            u32 size = 1u << p[j]->rec_order;
            used += size;
            for (u32 r = p[j]->rec; r < p[j]->rec + size; r++) {
                ck_assert_uint_eq(owner[r], 0xff);
                owner[r] = (u8)j;
            }
        }
        ck_assert_uint_eq(used, t.rec_used);
        ck_assert_uint_eq(n, t.pend_used);
    }
    while (n > 0)
        ing_pending_release(&t, p[--n]);
    ck_assert_uint_eq(t.rec_used, 0);
    /* Everything coalesced: the whole pool in one block. */
    struct ing_pending *all = ing_pending_alloc(&t, PROTO_SUBMIT, 64);
    ck_assert_ptr_nonnull(all);
    ck_assert_ptr_null(ing_pending_alloc(&t, PROTO_SUBMIT, 1));
    ck_assert_ptr_nonnull(ing_pending_alloc(&t, PROTO_GET_RESOURCE, 0)); /* reads take no records */
    ck_assert_ptr_null(ing_pending_alloc(&t, PROTO_SUBMIT, 65));
    ing_table_free(&t);
}
END_TEST

/* A client that pipelines requests and does not read: the ingress stops reading it once its
 * output passes the high watermark, and everything is answered, in order, once it reads. */
START_TEST(test_slow_reader_backpressure)
{
    fx_config();
    fx_start();
    enum { N = 6000 };
    int fd = cli_connect();
    u8 *reqs = malloc((size_t)N * PROTO_HEADER_SIZE);
    ck_assert_ptr_nonnull(reqs);
    for (u32 i = 0; i < N; i++)
        proto_frame_finish(reqs + (size_t)i * PROTO_HEADER_SIZE, PROTO_HEADER_SIZE, PROTO_METRICS, i + 1, 0);
    int flags = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    size_t total = (size_t)N * PROTO_HEADER_SIZE, sent = 0;
    u64 idle_since = mono_ms();
    while (sent < total && mono_ms() - idle_since < 300) {
        ssize_t w = send(fd, reqs + sent, total - sent, MSG_NOSIGNAL);
        if (w > 0) {
            sent += (size_t)w;
            idle_since = mono_ms();
        } else {
            sleep_ms(5);
        }
    }
    /* Stalls short of N: the server stopped reading us (its output is above the watermark,
     * the kernel buffers both ways are full). */
    u64 r1, r2 = ctr(&F.seg.ing->requests);
    u64 stall_until = mono_ms() + 10000;
    do {
        ck_assert(mono_ms() < stall_until);
        r1 = r2;
        sleep_ms(300);
        r2 = ctr(&F.seg.ing->requests);
    } while (r1 != r2);
    ck_assert_uint_gt(r2, 0);
    ck_assert_uint_lt(r2, N);
    if (getenv("INGRESS_TEST_DEBUG") != NULL)
        fprintf(stderr, "slow reader: stalled after %llu of %d requests\n", (unsigned long long)r2, N);
    ck_assert(ingress_alive());

    /* Read everything (sending the rest as room appears): all answered, in order. */
    u32 next = 1;
    u8 hdr[PROTO_HEADER_SIZE];
    size_t have = 0;
    u64 until = mono_ms() + 60000;
    while (next <= N) {
        ck_assert_msg(mono_ms() < until, "stuck at response %u", next);
        if (sent < total) {
            ssize_t w = send(fd, reqs + sent, total - sent, MSG_NOSIGNAL);
            if (w > 0)
                sent += (size_t)w;
        }
        ssize_t r = recv(fd, hdr + have, sizeof(hdr) - have, 0);
        if (r <= 0) {
            ck_assert_msg(r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK), "recv: %s", strerror(errno));
            sleep_ms(1);
            continue;
        }
        have += (size_t)r;
        if (have < sizeof(hdr))
            continue;
        have = 0;
        struct proto_header h;
        ck_assert_int_eq(proto_header_decode(hdr, sizeof(hdr), PROTO_BODY_MAX, &h), PROTO_OK);
        ck_assert_uint_eq(h.kind, PROTO_METRICS_OK);
        ck_assert_uint_eq(h.request_id, next);
        /* Skip the body. */
        u32 left = h.body_len;
        while (left > 0) {
            ssize_t k = recv(fd, fbuf, left, 0);
            if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                sleep_ms(1);
                continue;
            }
            ck_assert_int_gt(k, 0);
            left -= (u32)k;
        }
        next++;
    }
    free(reqs);
    close(fd);
    fx_stop();
}
END_TEST

/* The supervisor's drain flag (SIGTERM to the daemon) works like SIGTERM to the worker. */
START_TEST(test_daemon_drain_flag)
{
    fx_config();
    fx_start();
    int fd = cli_connect_raw();
    hello(fd, 1);
    send_read(fd, PROTO_GET_RESOURCE, 2, 5);
    struct msg_read rd;
    pop_read(&rd);
    atomic_store(&F.seg.hdr->shutting_down, 1);
    struct msg_result m = result_for(&rd.tag, MSG_RESULT_RESOURCE, 0, SM_READ_NOT_FOUND, 3);
    push(F.seg.result, &m);
    struct frame f;
    expect_frame(fd, &f, PROTO_RESOURCE, 2);
    expect_eof(fd);
    close(fd);
    int status = fx_wait(5000);
    ck_assert_msg(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0, "exit status %d", status);
    fx_stop();
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("ingress");
    TCase *tc = tcase_create("ingress");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_hello_and_pipelined_batches);
    tcase_add_test(tc, test_answers_out_of_order_reads_and_tick);
    tcase_add_test(tc, test_bad_frames_close_only_their_connection);
    tcase_add_test(tc, test_hello_errors_close);
    tcase_add_test(tc, test_handshake_enforced);
    tcase_add_test(tc, test_full_server_evicts_the_longest_idle);
    tcase_add_test(tc, test_max_connections);
    tcase_add_test(tc, test_idle_and_header_timeouts);
    tcase_add_test(tc, test_request_timeout_is_indefinite);
    tcase_add_test(tc, test_worker_restarts);
    tcase_add_test(tc, test_resubmit_forces_the_log);
    tcase_add_test(tc, test_late_and_foreign_results_are_dropped);
    tcase_add_test(tc, test_full_write_ring_rejects_rest_of_batch);
    tcase_add_loop_test(tc, test_sigterm_drains, 0, 2);
    tcase_add_test(tc, test_metrics_and_status_are_json);
    tcase_add_test(tc, test_corrupt_result_ring_is_fatal);
    tcase_add_test(tc, test_tables_buddy_and_generations);
    tcase_add_test(tc, test_slow_reader_backpressure);
    tcase_add_test(tc, test_daemon_drain_flag);
    suite_add_tcase(s, tc);
    return s;
}
