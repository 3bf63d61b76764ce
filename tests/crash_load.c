/*
 * tests/crash_load.c — a checking load client for the crash tests (tests/crash_workers.sh).
 *
 *   crash_load --addr HOST:PORT --connections N --writes W [--seed S] [--deadline-s D]
 *   crash_load --addr HOST:PORT --probe          (one committed write; prints the ms it took)
 *
 * Each connection (a thread) owns its resources and drives them through create -> reserve ->
 * confirm|release, so every write has exactly one correct result: ok. Any write whose outcome is
 * indefinite (timeout, lost connection, worker_restarted, shutting_down, no server) is retried
 * with the SAME operation id, reconnecting, until it commits or the deadline passes. Then:
 *   - every write must have committed with result ok (a write executed twice would show up as
 *     already_exists / resource_busy / invalid_state; a lost one as not_found);
 *   - every write is submitted once more with its operation id and must come back
 *     from_retry_cache with the same result and LSN (dedupe: never executed twice);
 *   - every resource and reservation is read back and must be in the state the acknowledged
 *     writes left it in.
 * Prints a summary line and exits 0 if everything holds, 1 otherwise, 2 on usage errors.
 * Speaks the wire protocol directly (net/proto.h) with blocking sockets: simple, one request
 * in flight per connection.
 */
#include "config.h"

#include "net/proto.h"
#include "replica/sm.h"

#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static char host[256] = "127.0.0.1", port[16] = "7400";
static u64 deadline_ms_total = 60000;
static u64 start_ms;
static _Atomic u64 indefinite_seen, reconnects, committed_total, request_seq = 1;

static u64 now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (u64)ts.tv_sec * 1000 + (u64)ts.tv_nsec / 1000000;
}

static int dial(void)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *res;
    if (getaddrinfo(host, port, &hints, &res) != 0)
        return -1;
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd >= 0) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct timeval tv = { .tv_sec = 3 }; /* a reply slower than this is treated as lost */
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    }
    return fd;
}

static bool write_all(int fd, const u8 *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

static bool read_all(int fd, u8 *p, size_t n)
{
    while (n > 0) {
        ssize_t r = recv(fd, p, n, 0);
        if (r <= 0)
            return false;
        p += r;
        n -= (size_t)r;
    }
    return true;
}

/* Sends one request frame and reads the response with the same request id. Returns the
 * response kind, or 0 if the connection failed (the caller reconnects). */
static u8 roundtrip(int fd, u8 kind, const u8 *body, u32 body_len, u8 *resp, u32 *resp_len)
{
    u8 req[PROTO_HEADER_SIZE + 256];
    memcpy(req + PROTO_HEADER_SIZE, body, body_len);
    u64 id = atomic_fetch_add(&request_seq, 1);
    size_t n = proto_frame_finish(req, sizeof(req), kind, id, body_len);
    if (!write_all(fd, req, n))
        return 0;
    for (;;) {
        if (!read_all(fd, resp, PROTO_HEADER_SIZE))
            return 0;
        struct proto_header h;
        if (proto_header_decode(resp, PROTO_HEADER_SIZE, 4096, &h) != PROTO_OK)
            return 0;
        if (!read_all(fd, resp + PROTO_HEADER_SIZE, h.body_len))
            return 0;
        if (proto_frame_check(resp, PROTO_HEADER_SIZE + h.body_len) != PROTO_OK)
            return 0;
        if (h.request_id != id && h.kind != PROTO_ERROR)
            continue; /* not ours (cannot happen with one in flight; be safe) */
        *resp_len = h.body_len;
        return h.kind;
    }
}

struct op {
    struct proto_command cmd;
    struct proto_result res; /* final committed result */
};

enum { OUT_COMMITTED, OUT_RETRY, OUT_FAIL };

/* Submits one command; classifies the reply. */
static int submit(int *fd, const struct proto_command *cmd, struct proto_result *out)
{
    if (*fd < 0) {
        *fd = dial();
        if (*fd < 0)
            return OUT_RETRY;
        atomic_fetch_add(&reconnects, 1);
    }
    u8 body[PROTO_SUBMIT_PREFIX + PROTO_COMMAND_SIZE];
    proto_put_submit_prefix(body, 1);
    proto_put_command(body + PROTO_SUBMIT_PREFIX, cmd);
    u8 resp[PROTO_HEADER_SIZE + 4096];
    u32 len = 0;
    u8 kind = roundtrip(*fd, PROTO_SUBMIT, body, sizeof(body), resp, &len);
    const u8 *b = resp + PROTO_HEADER_SIZE;
    u32 count;
    if (kind == PROTO_SUBMIT_RESULT && proto_get_submit_result(b, len, &count) == PROTO_OK && count == 1 &&
        proto_get_result(b + PROTO_SUBMIT_PREFIX, out) == PROTO_OK) {
        if (out->outcome == PROTO_COMMITTED)
            return OUT_COMMITTED;
        if (out->outcome == PROTO_INDEFINITE) {
            atomic_fetch_add(&indefinite_seen, 1);
            return OUT_RETRY;
        }
        if (out->outcome == PROTO_REJECTED && out->code == PROTO_REJECT_OVERLOADED)
            return OUT_RETRY; /* definite: not executed, safe to send again */
        fprintf(stderr, "crash_load: definite rejection %s\n", proto_result_name(out->outcome, out->code));
        return OUT_FAIL;
    }
    /* No usable answer: the outcome is unknown (indefinite); drop the connection. */
    atomic_fetch_add(&indefinite_seen, 1);
    if (kind == PROTO_ERROR) {
        struct proto_error e;
        if (proto_get_error(b, len, &e) == PROTO_OK && e.code != PROTO_ERR_SHUTTING_DOWN &&
            e.code != PROTO_ERR_OVERLOADED && e.code != PROTO_ERR_UNAVAILABLE && e.code != PROTO_ERR_TIMEOUT)
            fprintf(stderr, "crash_load: error %s: %.*s\n", proto_error_name(e.code), (int)e.message_len, e.message);
    }
    close(*fd);
    *fd = -1;
    return OUT_RETRY;
}

/* Until committed or the deadline: the same operation id every time. */
static bool submit_until_committed(int *fd, const struct proto_command *cmd, struct proto_result *out)
{
    for (;;) {
        int r = submit(fd, cmd, out);
        if (r == OUT_COMMITTED) {
            atomic_fetch_add(&committed_total, 1);
            return true;
        }
        if (r == OUT_FAIL || now_ms() - start_ms > deadline_ms_total)
            return false;
        struct timespec ts = { 0, 20 * 1000000 };
        nanosleep(&ts, NULL);
    }
}

static bool read_until(int *fd, u8 kind, u128 id, u8 *resp, u32 *len)
{
    u8 body[24];
    struct proto_read rq = { .id = id };
    proto_put_read(body, &rq);
    while (now_ms() - start_ms <= deadline_ms_total) {
        if (*fd < 0)
            *fd = dial();
        if (*fd >= 0) {
            u8 k = roundtrip(*fd, kind, body, sizeof(body), resp, len);
            if (k == kind + 0x80)
                return true;
            close(*fd);
            *fd = -1;
        }
        struct timespec ts = { 0, 20 * 1000000 };
        nanosleep(&ts, NULL);
    }
    return false;
}

struct worker {
    pthread_t th;
    u32 index;
    u64 seed;
    u32 resources;
    struct op *ops; /* 3 per resource */
    u32 failures;
    char first_failure[256];
};

static u128 rand128(u64 *s)
{
    /* splitmix64 twice */
    u64 w[2];
    for (int i = 0; i < 2; i++) {
        u64 z = (*s += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        w[i] = z ^ (z >> 31);
    }
    return U128_MAKE(w[0], w[1] | 1);
}

static void fail(struct worker *wk, const char *what, u32 i, const struct proto_result *r)
{
    if (wk->failures++ == 0)
        snprintf(wk->first_failure, sizeof(wk->first_failure), "connection %u resource %u: %s (got %s lsn %" PRIu64
                 " retry=%d)", wk->index, i, what, r ? proto_result_name(r->outcome, r->code) : "-",
                 r ? r->applied_lsn : 0, r ? r->from_retry_cache : 0);
}

static void *run(void *arg)
{
    struct worker *wk = arg;
    int fd = -1;
    u64 s = wk->seed;
    u128 client = rand128(&s);
    for (u32 i = 0; i < wk->resources; i++) {
        u128 rid = rand128(&s), holder = rand128(&s);
        struct op *o = &wk->ops[3 * i];
        o[0].cmd = (struct proto_command){ .kind = SM_CMD_CREATE_RESOURCE, .operation_id = rand128(&s),
                                           .client_id = client, .target = rid };
        if (!submit_until_committed(&fd, &o[0].cmd, &o[0].res) || o[0].res.code != SM_OK) {
            fail(wk, "create_resource did not commit ok", i, &o[0].res);
            break;
        }
        o[1].cmd = (struct proto_command){ .kind = SM_CMD_RESERVE, .operation_id = rand128(&s), .client_id = client,
                                           .target = rid, .holder_id = holder, .ttl_ms = 600000 };
        if (!submit_until_committed(&fd, &o[1].cmd, &o[1].res) || o[1].res.code != SM_OK) {
            fail(wk, "reserve did not commit ok", i, &o[1].res);
            break;
        }
        o[2].cmd = (struct proto_command){ .kind = (i & 1) ? SM_CMD_RELEASE : SM_CMD_CONFIRM,
                                           .operation_id = rand128(&s), .client_id = client,
                                           .target = o[1].res.reservation_id, .holder_id = holder };
        if (!submit_until_committed(&fd, &o[2].cmd, &o[2].res) || o[2].res.code != SM_OK) {
            fail(wk, "confirm/release did not commit ok", i, &o[2].res);
            break;
        }
    }
    if (wk->failures > 0)
        goto out;
    /* Every acknowledged write again: the stored result, never a second execution. */
    for (u32 i = 0; i < 3 * wk->resources; i++) {
        struct proto_result again;
        if (!submit_until_committed(&fd, &wk->ops[i].cmd, &again)) {
            fail(wk, "retry did not commit", i / 3, &again);
            goto out;
        }
        if (!again.from_retry_cache || again.code != wk->ops[i].res.code ||
            again.applied_lsn != wk->ops[i].res.applied_lsn ||
            again.reservation_id != wk->ops[i].res.reservation_id) {
            fail(wk, "retry of an acknowledged write did not return the stored result", i / 3, &again);
            goto out;
        }
    }
    /* Read back the state the acknowledged writes left. */
    for (u32 i = 0; i < wk->resources; i++) {
        const struct op *o = &wk->ops[3 * i];
        u8 resp[PROTO_HEADER_SIZE + 4096];
        u32 len;
        struct proto_resource res;
        if (!read_until(&fd, PROTO_GET_RESOURCE, o[0].cmd.target, resp, &len) ||
            proto_get_resource(resp + PROTO_HEADER_SIZE, len, &res) != PROTO_OK || res.read != SM_READ_FOUND) {
            fail(wk, "resource not found after acknowledged create", i, NULL);
            goto out;
        }
        bool confirmed = o[2].cmd.kind == SM_CMD_CONFIRM;
        if (res.state != (confirmed ? SM_RESOURCE_CONFIRMED : SM_RESOURCE_AVAILABLE) ||
            (confirmed && res.current_reservation_id != o[1].res.reservation_id)) {
            fail(wk, "resource state does not match the acknowledged writes", i, NULL);
            goto out;
        }
        struct proto_reservation rv;
        if (!read_until(&fd, PROTO_GET_RESERVATION, o[1].res.reservation_id, resp, &len) ||
            proto_get_reservation(resp + PROTO_HEADER_SIZE, len, &rv) != PROTO_OK || rv.read != SM_READ_FOUND ||
            rv.state != (confirmed ? SM_RESERVATION_CONFIRMED : SM_RESERVATION_RELEASED) ||
            rv.holder_id != o[1].cmd.holder_id) {
            fail(wk, "reservation state does not match the acknowledged writes", i, NULL);
            goto out;
        }
    }
out:
    if (fd >= 0)
        close(fd);
    return NULL;
}

static int probe(void)
{
    u64 s = (u64)now_ms() ^ ((u64)getpid() << 32);
    struct proto_command c = { .kind = SM_CMD_CREATE_RESOURCE, .operation_id = rand128(&s),
                               .client_id = rand128(&s), .target = rand128(&s) };
    int fd = -1;
    struct proto_result r;
    u64 t0 = now_ms();
    bool ok = submit_until_committed(&fd, &c, &r);
    if (fd >= 0)
        close(fd);
    if (!ok)
        return 1;
    printf("%" PRIu64 "\n", now_ms() - t0);
    return r.code == SM_OK ? 0 : 1;
}

int main(int argc, char **argv)
{
    u32 connections = 4, writes = 10000;
    u64 seed = 1;
    bool probe_mode = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--probe") == 0) {
            probe_mode = true;
        } else if (v == NULL) {
            fprintf(stderr, "crash_load: %s needs a value\n", a);
            return 2;
        } else if (strcmp(a, "--addr") == 0) {
            const char *c = strrchr(v, ':');
            if (c == NULL)
                return 2;
            snprintf(host, sizeof(host), "%.*s", (int)(c - v), v);
            snprintf(port, sizeof(port), "%s", c + 1);
            i++;
        } else if (strcmp(a, "--connections") == 0) {
            connections = (u32)strtoul(v, NULL, 10);
            i++;
        } else if (strcmp(a, "--writes") == 0) {
            writes = (u32)strtoul(v, NULL, 10);
            i++;
        } else if (strcmp(a, "--seed") == 0) {
            seed = strtoull(v, NULL, 10);
            i++;
        } else if (strcmp(a, "--deadline-s") == 0) {
            deadline_ms_total = strtoull(v, NULL, 10) * 1000;
            i++;
        } else {
            fprintf(stderr, "crash_load: unknown option %s\n", a);
            return 2;
        }
    }
    start_ms = now_ms();
    if (probe_mode)
        return probe();
    if (connections == 0 || connections > 256 || writes < 3)
        return 2;
    struct worker *wk = calloc(connections, sizeof(*wk));
    u32 per = (writes + 3 * connections - 1) / (3 * connections);
    for (u32 c = 0; c < connections; c++) {
        wk[c].index = c;
        wk[c].seed = seed * 1000003u + c;
        wk[c].resources = per;
        wk[c].ops = calloc(3 * per, sizeof(struct op));
        pthread_create(&wk[c].th, NULL, run, &wk[c]);
    }
    u32 failures = 0;
    for (u32 c = 0; c < connections; c++) {
        pthread_join(wk[c].th, NULL);
        if (wk[c].failures > 0) {
            failures += wk[c].failures;
            fprintf(stderr, "crash_load: FAIL %s\n", wk[c].first_failure);
        }
    }
    for (u32 c = 0; c < connections; c++)
        free(wk[c].ops);
    free(wk);
    printf("crash_load: connections=%u writes=%u committed=%" PRIu64 " indefinite_retried=%" PRIu64
           " reconnects=%" PRIu64 " failures=%u ms=%" PRIu64 "\n",
           connections, 3 * per * connections, (u64)atomic_load(&committed_total), (u64)atomic_load(&indefinite_seen),
           (u64)atomic_load(&reconnects), failures, now_ms() - start_ms);
    return failures == 0 ? 0 : 1;
}
