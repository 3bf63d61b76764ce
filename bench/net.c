/*
 * bench/net.c — `allocdb-bench net`: load a running allocdbd through the wire protocol.
 *
 * N connections, each a liballocdb handle (allocdb.h) keeping up to D submits of B commands in
 * flight (pipelining, replies matched by request_id), driven by one single-threaded epoll loop
 * over the handles' sockets so the client stays cheap next to a server on the same machine:
 * every connection queues its submits in its handle's output buffer, flushes them with one
 * send() per loop turn (allocdb_flush with timeout 0), and takes in replies with one large
 * recv() per readiness event (allocdb_poll with timeout 0). Nothing is allocated per request:
 * request slots, the record of what each slot's commands were, the follow-up queues and the
 * buffers (the bench's and the library's) are sized at start.
 *
 * Workloads (the measured phase; setup and cleanup are not timed or counted):
 *   hotspot      one resource; every connection tries to reserve it, B attempts per submit; a
 *                winner releases it (at the end of its next submit) as soon as it learns it won.
 *   uniform      --resources resources created first (setup); then reserve a random one with
 *                --ttl (30s), and on ok confirm or release it, 50/50; a confirmed one is then
 *                released, so the pool never runs dry: a steady state, every reservation the
 *                run makes is released by the run (the server's tables hold only what its
 *                windows retain).
 *   retry-storm  uniform, plus --resend-percent of the submits resend a recorded earlier submit
 *                verbatim: every command must come back committed from_retry_cache with the
 *                original code, LSN and reservation id.
 *   expiry       reserve random resources with a short --ttl (200ms), never confirm; afterwards
 *                a sample of the reservations is read back until it has expired, and the
 *                server's expire counter is reported.
 *
 * Sustained runs: the progress line splits each second's results into useful (committed, other
 * than a *_table_full or expiration_index_full), full, rejected and indefinite, so a collapse
 * once a table fills shows at a glance; the summary compares the useful rate over the whole run
 * with its first 5 s and states the server's windows, capacities and per-process memory.
 * --verify-retries N: a reservoir sample (Algorithm R, arrays sized at start) of N committed
 * first sends (reserves, confirms, releases; not retry-storm resends) from the whole run, plus
 * the first N/10 of its first second, is resent verbatim after the measured phase and judged
 * against the dedupe window by its age: inside it (by 2 s) the answer must be the original one
 * from the retry cache, past it (by 2 s) the id must be new again; then up to N/10 changed
 * commands reusing sampled ids must come back operation_conflict.
 *
 * NOTES
 *   The library: every load handle has the request timeout off (a slow server slows the bench,
 *   it never fails it), a window of D requests and its connection's client id. The loop never
 *   lets a handle wait: it sends only on a connected handle, and queues at most 64 KiB of frames
 *   (or one larger frame) from a moment its output was empty (allocdb_wants_write false), the
 *   bound under which liballocdb(3) promises a send does not wait; past it, it flushes first,
 *   and a connection whose socket is full waits for EPOLLOUT. A request slot of the bench is
 *   found from the library's request id through a small open-addressing table per connection.
 *   A separate control handle asks for status and metrics, reads the expiry sample back and
 *   resends the --verify-retries sample: the sample mixes connections, whose client ids differ
 *   (the dedupe fingerprint covers the client id), so each verification submit goes out as one
 *   frame per client id, all in flight together.
 *   Timing: the clock is read once after each epoll wake-up (replies) and once before the
 *   loop's sends, so a request's latency is from its send() to the wake-up that saw its reply.
 *   With --rate the submits follow a schedule (the k-th command is due at t0 + k/R); latency is
 *   then also reported from the scheduled time ("intended"), which includes any wait the client
 *   imposed and so does not hide queueing (coordinated omission).
 *   --seed (default: from the clock and pid, printed so a run can be repeated) drives the
 *   workload's choices: resources picked, confirm or release. Operation ids are two splitmix64
 *   draws from the seed mixed with a per-run nonce, so repeating a seed against the same server
 *   within its dedupe window does not turn the new run's commands into retries of the last.
 *   Errors: a connection no server answered exits 69; a refused hello, a bad frame, an
 *   unexpected reply, a lost connection or a closing error frame exits 1, as does a retry-storm
 *   resend that committed without from_retry_cache or a --verify-retries mismatch.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench.h"
#include "bench/hist.h"
#include "common/splitmix.h"
#include "net/allocdb.h"
#include "net/proto.h" /* the protocol's sizes only: the library does the framing */
#include "vocab/vocab.h"

#define EXIT_USAGE 64
#define EXIT_UNAVAILABLE 69

#define CONNECTIONS_MAX 4096
#define PIPELINE_MAX 4096          /* the library's window per connection */
#define SETUP_BATCH_MAX 1024       /* creates per setup submit (or the server's max_batch) */
#define SETUP_INFLIGHT_MAX 16384   /* setup creates in flight over all connections */
#define SAMPLE_MAX 256             /* expiry: reservations read back */
#define CAND_USES 4                /* retry-storm: resends of one recorded submit */
#define VERIFY_MAX 10000000        /* --verify-retries */
#define VERIFY_MARGIN_MS 2000      /* ages this close to the dedupe window are not judged */
#define FIRST_SPAN_NS (5 * NS)     /* the useful rate's "first 5 s" */
#define CTL_TIMEOUT_MS 10000       /* connect and hello; a control request's reply */
#define BURST_BYTES ((size_t)64 * 1024) /* frames queued before a flush: liballocdb(3), Event loops */
#define NS 1000000000ull
#define NIL UINT32_MAX

/* High halves of the bench's resource ids, so they do not collide with an application's. */
#define POOL_ID_HI 0x42454e4348ull  /* "BENCH" */
#define HOT_ID_HI 0x484f5453504f54ull /* "HOTSPOT" */

/* The library's codes are the protocol's and the state machine's. */
ADB_STATIC_ASSERT((int)ALLOCDB_CREATE_RESOURCE == (int)SM_CMD_CREATE_RESOURCE &&
                      (int)ALLOCDB_RESERVE == (int)SM_CMD_RESERVE && (int)ALLOCDB_CONFIRM == (int)SM_CMD_CONFIRM &&
                      (int)ALLOCDB_RELEASE == (int)SM_CMD_RELEASE,
                  "command kinds");
ADB_STATIC_ASSERT(ALLOCDB_RESULT_SLOT_OVERFLOW + 1 == SM_RESULT_COUNT, "committed codes");
ADB_STATIC_ASSERT((int)ALLOCDB_REJECT_NO_SPACE == (int)PROTO_REJECT_MAX, "reject codes");

/* The frame of a submit of n commands (liballocdb(3): 40 + 88 n bytes). */
static size_t submit_bytes(u32 n)
{
    return PROTO_HEADER_SIZE + PROTO_SUBMIT_PREFIX + (size_t)PROTO_COMMAND_SIZE * n;
}

enum workload { W_HOTSPOT, W_UNIFORM, W_RETRY, W_EXPIRY };
static const char *const workload_names[] = { "hotspot", "uniform", "retry-storm", "expiry" };

struct net_opts {
    const char *addr;   /* as given (the report names it) */
    char server[300];   /* as the library takes it: HOST:PORT or [V6]:PORT */
    enum workload workload;
    u64 connections, pipeline, batch;
    u64 duration_ms, commands; /* one of them is 0 */
    u64 ttl_ms;
    u64 resources;
    u64 seed;
    bool seed_given;
    u64 rate; /* commands/s, 0: as fast as the pipeline allows */
    u64 resend_percent;
    u64 verify_retries; /* 0: off */
    bool json;
};

enum phase { PH_SETUP, PH_RUN, PH_CLEANUP };
enum role { R_SETUP, R_FRESH, R_FOLLOW, R_CLEANUP, R_RESEND };

/* A command to send once a reply said it may: confirm or release of our own reservation. */
struct follow {
    u128 reservation_id;
    u8 kind; /* ALLOCDB_CONFIRM or ALLOCDB_RELEASE */
};

/* What command i of a request slot was, to interpret its result. */
struct sent {
    u8 kind;
    u8 role;
};

struct req {
    u64 id;         /* the library's request id; 0: the slot is free */
    u64 t_send;     /* ns */
    u64 t_intended; /* ns; --rate: when the schedule wanted it sent */
    u32 count;
    u8 counted;     /* sent in the measured phase */
    u8 resend;      /* a resend of the connection's recorded submit */
    u8 record;      /* the submit recorded for later resends */
};

struct cand_result {
    u128 reservation_id;
    u64 applied_lsn;
    u8 code;
};

enum { CAND_FREE, CAND_PENDING, CAND_READY };

/* --verify-retries: one sampled command as it was sent (by connection conn, whose client id it
 * carried), with its first (committed) result. */
struct vsample {
    struct allocdb_command cmd;
    u128 reservation_id;
    u64 applied_lsn;
    u64 t_send; /* ns */
    u32 conn;
    u8 code;
};

/* What the resends of the sample found. */
struct verify {
    bool ran;
    const char *skipped; /* why the verification did not run (NULL: it ran or was not asked) */
    u64 samples, early;
    u64 exact, aged_new, edge, unanswered, mismatches, released;
    u64 conflict_checks, conflicts, conflict_mismatches;
    double oldest_s, youngest_s;
    char first[512]; /* the first mismatch */
};

struct conn {
    allocdb_client *cl;
    int fd;        /* allocdb_socket(cl), in the epoll set */
    u32 index;
    bool want_out; /* EPOLLOUT registered: queued output waits for room in the socket */
    size_t queued; /* bytes of frames queued since the output was last seen empty */
    u128 client_id, holder_id;
    struct req *req; /* pipeline slots */
    u32 inflight, free_hint;
    u32 *map; /* request id -> slot + 1 (0: empty); open addressing, 2 x pipeline rounded up */
    u32 map_mask;
    struct sent *sent; /* pipeline x slot_cmds */
    struct follow *fq; /* ring */
    u32 fq_head, fq_len, fq_cap;
    struct allocdb_command *sent_cmd; /* --verify-retries: each slot's measured commands (pipeline x batch) */
    /* retry-storm: one recorded submit (its commands and results) */
    struct allocdb_command *cand;
    struct cand_result *cand_res;
    u32 cand_count, cand_issued, cand_inflight;
    u8 cand_state;
    u64 submits, resends; /* measured phase: keeps resends at --resend-percent of submits */
};

struct counts {
    u64 commands, requests;
    u64 committed[SM_RESULT_COUNT];
    u64 rejected[ALLOCDB_REJECT_NO_SPACE + 1];
    u64 indefinite[ALLOCDB_INDEFINITE_SHUTTING_DOWN + 1];
    u64 refused[ALLOCDB_SERVER_IDLE + 1]; /* commands of submits answered with an error frame */
    u64 cached;
    u64 attempts, wins;                                                       /* hotspot */
    u64 resends, resent_commands, resent_cached, resend_mismatches, resend_unanswered; /* retry */
    u64 fresh_cached; /* fresh commands answered from the retry cache: an id collision */
    /* committed other than *_table_full and expiration_index_full; those; definite rejections
     * and refusals; indefinite outcomes (a submit refused with timeout counts here) */
    u64 useful, full, rejected_all, indefinite_all;
    u64 useful_first; /* useful results answered in the run's first 5 s */
};

struct bench {
    const struct net_opts *o;
    struct conn *conns;
    u32 nconn;
    int ep;
    struct epoll_event *evs;
    bool have_pwait2;
    u32 slot_cmds;   /* commands one request slot can hold */
    u32 setup_batch; /* creates per setup submit */
    struct allocdb_command *cmds; /* slot_cmds: the submit being built */
    allocdb_client *ctl;          /* the control handle */
    struct allocdb_server_info hello; /* what the control connection's hello announced */
    u64 rng;    /* the workload's choices: from --seed */
    u64 op_rng; /* operation ids: --seed mixed with a per-run nonce */
    u128 id_hi; /* high half of the client and holder ids (from --seed) */

    enum phase phase;
    bool stopping; /* the measured phase sends nothing more */
    u64 setup_next, setup_total;
    u64 t0, t_last_reply, elapsed_ns, t_run_end;
    u64 sent_cmds; /* in the current phase */
    u64 inflight_reqs, inflight_cmds;
    u64 tick_t, tick_cmds, tick_useful, tick_full, tick_rejected, tick_indefinite;
    u64 first_end; /* t0 + 5 s of the measured phase */
    json_t *seconds; /* --json: the progress lines */

    struct counts n;
    struct hist *lat, *lat_tick, *lat_sched;
    u128 sample[SAMPLE_MAX];
    u32 sample_n;
    u64 sample_seen;

    /* --verify-retries: [0, N) the reservoir, [N, N + N/10) the first second's first commands */
    struct vsample *vs;
    u64 vs_n, vs_seen, early_n, early_cap;
    u64 v_rng; /* the reservoir's draws (not the workload's, so a seed repeats its run) */
    struct verify v;

    int exit_code; /* 0 while all is well */
    char failure[512];
    char mismatch[256]; /* retry-storm: the first resend that was not answered from the cache */
};

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

static u64 now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (u64)ts.tv_sec * NS + (u64)ts.tv_nsec;
}

__attribute__((format(printf, 3, 4))) static void fail(struct bench *b, int code, const char *fmt, ...)
{
    if (b->exit_code != 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->failure, sizeof(b->failure), fmt, ap);
    va_end(ap);
    b->exit_code = code;
}

static u128 next_op(struct bench *b)
{
    u64 hi = splitmix_next(&b->op_rng), lo = splitmix_next(&b->op_rng);
    return U128_MAKE(hi, lo | (hi == 0)); /* never 0 */
}

/* Differs between runs (and processes), so a repeated --seed never repeats operation ids. */
static u64 run_nonce(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    u64 s = ((u64)ts.tv_sec * NS + (u64)ts.tv_nsec) ^ ((u64)getpid() << 32);
    return splitmix_next(&s);
}

static u128 pool_id(u64 index)
{
    return U128_MAKE(POOL_ID_HI, index + 1);
}

static u128 hot_id(void)
{
    return U128_MAKE(HOT_ID_HI, 1);
}

/* ---- options ----------------------------------------------------------------------------- */

/* "500ms", "10s", "2m", "1h" (a unit is required) into milliseconds. */
bool bench_parse_duration(const char *opt, const char *s, u64 min_ms, u64 *out)
{
    char *end;
    errno = 0;
    if (s[0] < '0' || s[0] > '9')
        goto bad;
    unsigned long long v = strtoull(s, &end, 10);
    u64 mult;
    if (strcmp(end, "ms") == 0)
        mult = 1;
    else if (strcmp(end, "s") == 0)
        mult = 1000;
    else if (strcmp(end, "m") == 0)
        mult = 60000;
    else if (strcmp(end, "h") == 0)
        mult = 3600000;
    else
        goto bad;
    if (errno != 0 || v > UINT64_MAX / 3600000 || v * mult < min_ms)
        goto bad;
    *out = v * mult;
    return true;
bad:
    fprintf(stderr, "allocdb-bench: %s expects a duration of at least %" PRIu64 "ms like 500ms, 10s or 2m, got '%s'\n",
            opt, min_ms, s);
    return false;
}

/* HOST:PORT or [V6]:PORT, one server, checked by the library's own parser (a bare IPv6 address
 * before the port is put in brackets for it). */
static bool parse_addr(struct net_opts *o)
{
    const char *a = o->addr, *colon = strrchr(a, ':');
    if (colon == NULL || strchr(a, ',') != NULL || strlen(a) + 3 > sizeof(o->server))
        goto bad;
    if (a[0] != '[' && memchr(a, ':', (size_t)(colon - a)) != NULL)
        snprintf(o->server, sizeof(o->server), "[%.*s]%s", (int)(colon - a), a, colon);
    else
        snprintf(o->server, sizeof(o->server), "%s", a);
    allocdb_client *c = allocdb_new();
    if (c == NULL) {
        fprintf(stderr, "allocdb-bench net: out of memory\n");
        return false;
    }
    int rc = allocdb_set_addresses(c, o->server);
    allocdb_free(c);
    if (rc == ALLOCDB_OK)
        return true;
bad:
    fprintf(stderr, "allocdb-bench: --addr expects HOST:PORT, got '%s'\n", o->addr);
    return false;
}

void bench_net_usage(FILE *out)
{
    fprintf(out,
            "Usage: allocdb-bench net [OPTIONS]\n"
            "\n"
            "Loads a running allocdbd through the wire protocol: N connections, each keeping D\n"
            "submits of B commands in flight, one event loop. Reports commands/s, useful\n"
            "commands/s (committed, not *_table_full or expiration_index_full) over the run and\n"
            "in its first 5 s, per-request latency (p50/p99/p999/max), results by code, the\n"
            "server's fsyncs and batch size, its windows, capacities and per-process memory.\n"
            "\n"
            "Workloads: hotspot (one resource, every win released), uniform (steady: reserve a\n"
            "random resource, confirm or release it, release the confirmed ones, so every\n"
            "reservation is released), retry-storm (uniform plus verbatim resends of earlier\n"
            "submits), expiry (short reserves left to expire).\n"
            "\n"
            "  --addr HOST:PORT        the server (default 127.0.0.1:7400)\n"
            "  --workload W            hotspot, uniform, retry-storm or expiry (default uniform)\n"
            "  --connections N         TCP connections (default 32)\n"
            "  --pipeline D            submits in flight per connection (default 4)\n"
            "  --batch B               commands per submit (default 64; at most the server's max_batch)\n"
            "  --duration T            measure for T (500ms, 10s, 2m; default 10s)\n"
            "  --commands N            or: measure until N commands were sent\n"
            "  --rate R                pace submits to R commands/s (default: unpaced)\n"
            "  --ttl T                 reserve TTL (default 30s; expiry: 200ms)\n"
            "  --resources N           resources created before a uniform, retry-storm or expiry\n"
            "                          run (default 100000; not timed)\n"
            "  --resend-percent P      retry-storm: submits that resend an earlier one (default 10)\n"
            "  --verify-retries N      after the run, resend N sampled commands (and the first N/10\n"
            "                          of its first second) and check them against the dedupe\n"
            "                          window: the original result inside it, a new id past it;\n"
            "                          then N/10 changed ones must get operation_conflict\n"
            "                          (default 0: off)\n"
            "  --seed S                seed of the resource picks and operation ids (default: from\n"
            "                          the clock, printed); ids also mix in a per-run nonce\n"
            "  --json                  print one JSON object instead of text\n"
            "  -h, --help              show this help\n"
            "\n"
            "A progress line goes to stderr every second: commands/s, and useful, full, rejected\n"
            "and indefinite results per second, p99.\n"
            "Exit status: 0 on a clean run, 1 on a protocol error, a lost connection, a failed\n"
            "setup, a retry-storm resend not answered from the retry cache or a --verify-retries\n"
            "mismatch, 64 on a usage error, 69 if the server cannot be reached.\n");
}

/* ---- liballocdb handles; the control connection: metrics, status, reads ------------------- */

/* A handle for the server: connect timeout CTL_TIMEOUT_MS, the given request timeout (0: none),
 * no retries of its own. NULL after fail(). */
static allocdb_client *handle_new(struct bench *b, u32 request_ms)
{
    allocdb_client *c = allocdb_new();
    if (c == NULL || allocdb_set_timeouts(c, CTL_TIMEOUT_MS, request_ms, 0) != ALLOCDB_OK ||
        allocdb_set_addresses(c, b->o->server) != ALLOCDB_OK) {
        allocdb_free(c);
        fail(b, 1, "out of memory");
        return NULL;
    }
    return c;
}

/* Connects c (who prefixes the failure). false after fail(): 69 when no server answered or it
 * refused for now (full, stopping), 1 when it refused the hello for good (another cluster, a
 * version it lacks) or answered it with something else. */
static bool handle_connect(struct bench *b, allocdb_client *c, const char *who)
{
    int rc = allocdb_connect(c, NULL);
    if (rc == ALLOCDB_OK)
        return true;
    if (rc == ALLOCDB_ERR_UNREACHABLE)
        fail(b, EXIT_UNAVAILABLE, "%scannot connect: %s (is allocdbd running, listening there and taking connections?)", who,
             allocdb_last_error(c));
    else
        fail(b, 1, "%s%s", who, allocdb_last_error(c));
    return false;
}

/*
 * A fresh control connection for a read between phases (the previous one may have sat idle for
 * the whole run, past the server's idle timeout). Not fatal: the figures it feeds become n/a.
 */
static void ctl_reopen(struct bench *b)
{
    allocdb_disconnect(b->ctl);
    if (allocdb_connect(b->ctl, NULL) != ALLOCDB_OK)
        fprintf(stderr, "allocdb-bench net: control connection: %s\n", allocdb_last_error(b->ctl));
}

/* Metrics or status as a JSON document; NULL (with a note on stderr) if the server has none or
 * the control connection is gone. */
static json_t *ctl_json(struct bench *b, bool metrics, bool quiet)
{
    const char *what = metrics ? "metrics" : "status";
    if (!allocdb_is_connected(b->ctl))
        return NULL;
    char *text = NULL;
    size_t len = 0;
    int rc = metrics ? allocdb_metrics(b->ctl, &text, &len) : allocdb_status(b->ctl, &text, &len);
    if (rc != ALLOCDB_OK) {
        if (!quiet)
            fprintf(stderr, "allocdb-bench: %s: %s: %s\n", what, allocdb_strerror(rc), allocdb_last_error(b->ctl));
        return NULL;
    }
    json_error_t err;
    json_t *doc = json_loadb(text, len, 0, &err);
    free(text);
    if (doc == NULL && !quiet)
        fprintf(stderr, "allocdb-bench: %s: not JSON: %s\n", what, err.text);
    return doc;
}

/* An error reply's "name: message". */
static void error_text(const struct allocdb_reply *rep, char *out, size_t n)
{
    size_t len = rep->u.error.message_len;
    snprintf(out, n, "%s%s%.*s", allocdb_server_error_name(rep->u.error.code), len ? ": " : "",
             (int)(len > 200 ? 200 : len), rep->u.error.message);
}

/* Server errors after which the connection is closed (the others answer one request). */
static bool closes(u16 code)
{
    return code != ALLOCDB_SERVER_UNAVAILABLE && code != ALLOCDB_SERVER_TIMEOUT && code != ALLOCDB_SERVER_OVERLOADED &&
           code != ALLOCDB_SERVER_BATCH_TOO_LARGE;
}

/* ---- JSON lookups in the server's documents ----------------------------------------------- */

/* A dotted path ("sequencer.batch.sum"). */
static json_t *jpath(json_t *root, const char *path)
{
    char key[128];
    json_t *cur = root;
    while (cur != NULL && *path) {
        const char *dot = strchr(path, '.');
        size_t len = dot ? (size_t)(dot - path) : strlen(path);
        if (len >= sizeof(key))
            return NULL;
        memcpy(key, path, len);
        key[len] = 0;
        cur = json_is_object(cur) ? json_object_get(cur, key) : NULL;
        path += len + (dot != NULL);
    }
    return cur;
}

/* The first member named key anywhere in the document (depth first). */
static json_t *jfind(json_t *root, const char *key)
{
    if (json_is_object(root)) {
        json_t *v = json_object_get(root, key);
        if (v != NULL)
            return v;
        const char *k;
        json_object_foreach(root, k, v) {
            json_t *f = jfind(v, key);
            if (f != NULL)
                return f;
        }
    } else if (json_is_array(root)) {
        size_t i;
        json_t *v;
        json_array_foreach(root, i, v) {
            json_t *f = jfind(v, key);
            if (f != NULL)
                return f;
        }
    }
    return NULL;
}

static bool jnum(json_t *v, double *out)
{
    if (!json_is_number(v))
        return false;
    *out = json_number_value(v);
    return true;
}

/* A counter by its path, else by its last name anywhere. */
static bool counter(json_t *doc, const char *path, double *out)
{
    if (doc == NULL)
        return false;
    if (jnum(jpath(doc, path), out))
        return true;
    const char *last = strrchr(path, '.');
    return jnum(jfind(doc, last ? last + 1 : path), out);
}

static bool delta(json_t *before, json_t *after, const char *path, double *out)
{
    double a, z;
    if (!counter(before, path, &a) || !counter(after, path, &z))
        return false;
    *out = z - a;
    return true;
}

/* What the report says about the server. has_* false: "n/a". */
struct server_info {
    bool has_window, has_capacity, has_fsyncs, has_batch, has_retries, has_ops_used;
    double window_ms, capacity, fsyncs, mean_batch, retries, ops_used;
    bool has_expired_run, has_backlog, has_expired; /* expiry */
    double expired_run, backlog, expired;
    /* at the end of the measured phase */
    bool has_history, has_res_capacity;
    double history_ms, res_capacity;
    bool has_rss[4];
    double rss[4]; /* bytes, by mem_roles */
};

static const char *const mem_roles[4] = { "supervisor", "sequencer", "applier", "ingress" };

static void server_static(json_t *status, json_t *metrics, u64 slot_ms, struct server_info *s)
{
    static const char *const window_ms_keys[] = { "dedupe_window_ms", "dedupe_window" };
    json_t *docs[2] = { status, metrics };
    for (int d = 0; d < 2 && !s->has_window; d++) {
        if (docs[d] == NULL)
            continue;
        for (size_t k = 0; k < ADB_ARRAY_LEN(window_ms_keys) && !s->has_window; k++)
            s->has_window = jnum(jfind(docs[d], window_ms_keys[k]), &s->window_ms);
        if (!s->has_window && jnum(jfind(docs[d], "dedupe_window_slots"), &s->window_ms)) {
            s->window_ms *= (double)slot_ms;
            s->has_window = true;
        }
    }
    for (int d = 1; d >= 0 && !s->has_capacity; d--) {
        if (docs[d] == NULL)
            continue;
        s->has_capacity = jnum(jpath(docs[d], "applier.tables.operations.capacity"), &s->capacity) ||
                          jnum(jfind(docs[d], "operation_capacity"), &s->capacity);
    }
}

/* What the status and metrics documents read after the run say about retention and memory. */
static void server_end(json_t *status, json_t *metrics, u64 slot_ms, struct server_info *s)
{
    json_t *docs[2] = { status, metrics };
    for (int d = 0; d < 2; d++) {
        if (docs[d] == NULL)
            continue;
        if (!s->has_history)
            s->has_history = jnum(jfind(docs[d], "history_window_ms"), &s->history_ms);
        if (!s->has_history && jnum(jfind(docs[d], "history_window_slots"), &s->history_ms)) {
            s->history_ms *= (double)slot_ms;
            s->has_history = true;
        }
        if (!s->has_res_capacity)
            s->has_res_capacity = jnum(jpath(docs[d], "applier.tables.reservations.capacity"), &s->res_capacity) ||
                                  jnum(jfind(docs[d], "reservation_capacity"), &s->res_capacity);
    }
    for (size_t i = 0; i < ADB_ARRAY_LEN(mem_roles); i++) {
        char path[64];
        snprintf(path, sizeof(path), "memory.%s.rss_bytes", mem_roles[i]);
        s->has_rss[i] = status != NULL && jnum(jpath(status, path), &s->rss[i]);
    }
}

static void server_delta(json_t *before, json_t *after, struct server_info *s)
{
    s->has_fsyncs = delta(before, after, "sequencer.fsyncs", &s->fsyncs);
    double sum, count;
    if (delta(before, after, "sequencer.batch.sum", &sum) && delta(before, after, "sequencer.batch.count", &count)) {
        s->has_batch = count > 0;
        s->mean_batch = count > 0 ? sum / count : 0;
    }
    s->has_retries = delta(before, after, "sequencer.retries_answered", &s->retries);
    s->has_ops_used = after != NULL && jnum(jpath(after, "applier.tables.operations.used"), &s->ops_used);
    s->has_expired_run = delta(before, after, "applier.commands.expire", &s->expired_run);
    s->has_backlog = after != NULL && jnum(jpath(after, "applier.expiration_backlog"), &s->backlog);
}

/* ---- connections ------------------------------------------------------------------------- */

/* Request id -> slot: a table twice the pipeline (or more), linear probing. */
static u32 map_home(const struct conn *c, u64 rid)
{
    return (u32)((rid * 0x9e3779b97f4a7c15ull) >> 32) & c->map_mask;
}

static void map_put(struct conn *c, u64 rid, u32 slot)
{
    u32 i = map_home(c, rid);
    while (c->map[i] != 0)
        i = (i + 1) & c->map_mask;
    c->map[i] = slot + 1;
}

/* The slot of request id rid, taken out of the table; NIL if no slot has it. */
static u32 map_take(struct conn *c, u64 rid)
{
    u32 i = map_home(c, rid);
    while (c->map[i] != 0 && c->req[c->map[i] - 1].id != rid)
        i = (i + 1) & c->map_mask;
    if (c->map[i] == 0)
        return NIL;
    u32 slot = c->map[i] - 1;
    /* Backward-shift deletion: each later entry of the run moves into the hole unless its home
     * lies cyclically in (hole, its place]. */
    for (u32 j = (i + 1) & c->map_mask; c->map[j] != 0; j = (j + 1) & c->map_mask) {
        u32 k = map_home(c, c->req[c->map[j] - 1].id);
        bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
        if (!stays) {
            c->map[i] = c->map[j];
            i = j;
        }
    }
    c->map[i] = 0;
    return slot;
}

/* Allocates c's tables, opens its handle and adds its socket to the epoll set; false after
 * fail(). c is consistent for conn_free() either way. */
static bool conn_init(struct bench *b, struct conn *c, u32 index)
{
    const struct net_opts *o = b->o;
    memset(c, 0, sizeof(*c));
    c->fd = -1;
    c->index = index;
    c->client_id = b->id_hi | (u128)(index + 1);
    c->holder_id = b->id_hi | (u128)(index + 1);
    u32 map_cap = 2;
    while (map_cap < 2 * o->pipeline)
        map_cap *= 2;
    c->map_mask = map_cap - 1;
    c->req = calloc(o->pipeline, sizeof(*c->req));
    c->map = calloc(map_cap, sizeof(*c->map));
    c->sent = calloc((size_t)o->pipeline * b->slot_cmds, sizeof(*c->sent));
    c->fq_cap = (u32)(o->pipeline * o->batch);
    c->fq = calloc(c->fq_cap, sizeof(*c->fq));
    if (o->workload == W_RETRY) {
        c->cand = calloc(o->batch, sizeof(*c->cand));
        c->cand_res = calloc(o->batch, sizeof(*c->cand_res));
    }
    if (o->verify_retries)
        c->sent_cmd = calloc((size_t)o->pipeline * o->batch, sizeof(*c->sent_cmd));
    if (!c->req || !c->map || !c->sent || !c->fq || (o->workload == W_RETRY && (!c->cand || !c->cand_res)) ||
        (o->verify_retries && !c->sent_cmd)) {
        fail(b, 1, "connection %u: out of memory", index);
        return false;
    }
    c->cl = handle_new(b, 0); /* no request timeout: a slow server slows the run, never fails it */
    if (c->cl == NULL)
        return false;
    if (allocdb_set_window(c->cl, (u32)o->pipeline) != ALLOCDB_OK ||
        allocdb_set_client_id(c->cl, c->client_id) != ALLOCDB_OK) {
        fail(b, 1, "connection %u: out of memory", index);
        return false;
    }
    char who[32];
    snprintf(who, sizeof(who), "connection %u: ", index);
    if (!handle_connect(b, c->cl, who))
        return false;
    c->fd = allocdb_socket(c->cl);
    struct epoll_event ev = { .events = EPOLLIN, .data.u32 = index };
    if (epoll_ctl(b->ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
        fail(b, 1, "connection %u: epoll_ctl: %s", index, strerror(errno));
        return false;
    }
    return true;
}

static void conn_free(struct conn *c)
{
    allocdb_free(c->cl); /* closes the socket, which leaves the epoll set */
    free(c->req);
    free(c->map);
    free(c->sent);
    free(c->fq);
    free(c->cand);
    free(c->cand_res);
    free(c->sent_cmd);
}

static void want_out(struct bench *b, struct conn *c, bool on)
{
    if (c->want_out == on)
        return;
    struct epoll_event ev = { .events = EPOLLIN | (on ? EPOLLOUT : 0), .data.u32 = c->index };
    if (epoll_ctl(b->ep, EPOLL_CTL_MOD, c->fd, &ev) != 0)
        fail(b, 1, "epoll_ctl: %s", strerror(errno));
    c->want_out = on;
}

/* The connection failed (the library closed it): exit 1 with what the library saw. */
static void conn_failed(struct bench *b, struct conn *c)
{
    fail(b, 1, "connection %u: %s with %u requests in flight (their writes are indefinite)", c->index,
         allocdb_last_error(c->cl), c->inflight);
}

/* One send() of everything queued, without waiting. */
static void conn_flush(struct bench *b, struct conn *c)
{
    int rc = allocdb_flush(c->cl, 0);
    if (rc == ALLOCDB_OK) {
        c->queued = 0;
        want_out(b, c, false);
    } else if (rc == ALLOCDB_ERR_TIMEOUT) {
        want_out(b, c, true); /* the socket is full */
    } else {
        conn_failed(b, c);
    }
}

static void fq_push(struct bench *b, struct conn *c, u128 rid, u8 kind)
{
    if (c->fq_len == c->fq_cap) { /* cannot happen: see the bound in send_request */
        fail(b, 1, "internal: follow-up queue of connection %u overflowed", c->index);
        return;
    }
    struct follow *f = &c->fq[(c->fq_head + c->fq_len) % c->fq_cap];
    f->reservation_id = rid;
    f->kind = kind;
    c->fq_len++;
}

static struct follow fq_pop(struct conn *c)
{
    struct follow f = c->fq[c->fq_head];
    c->fq_head = (c->fq_head + 1) % c->fq_cap;
    c->fq_len--;
    return f;
}

/* ---- requests ---------------------------------------------------------------------------- */

static void put_cmd(struct bench *b, struct conn *c, struct allocdb_command *cmd, u8 kind, u128 target, u64 ttl_ms)
{
    *cmd = (struct allocdb_command){
        .kind = kind,
        .operation_id = next_op(b),
        .target = target,
        .holder_id = kind == ALLOCDB_CREATE_RESOURCE ? 0 : c->holder_id,
        .ttl_ms = kind == ALLOCDB_RESERVE ? ttl_ms : 0,
    };
}

/*
 * Queues one submit on c's handle if the phase, the pipeline, the rate and the output allow;
 * false otherwise (*rate_wait set when only the schedule held it back).
 *
 * Follow-ups are bounded by pipeline x batch: a submit takes min(queued, batch) follow-ups and
 * fills up with fresh reserves only when that empties the queue, so queued follow-ups plus
 * in-flight commands that may still produce one never exceed pipeline x batch.
 */
static bool send_request(struct bench *b, struct conn *c, u64 now, bool *rate_wait)
{
    const struct net_opts *o = b->o;
    if (c->inflight == o->pipeline || b->exit_code != 0)
        return false;
    u32 max = 0;
    u64 intended = now;
    switch (b->phase) {
    case PH_SETUP: {
        u64 left = b->setup_total - b->setup_next, room = SETUP_INFLIGHT_MAX - b->inflight_cmds;
        if (b->inflight_cmds >= SETUP_INFLIGHT_MAX)
            room = 0;
        max = (u32)(left < room ? left : room);
        if (max > b->setup_batch)
            max = b->setup_batch;
        break;
    }
    case PH_RUN:
        if (b->stopping)
            return false;
        max = (u32)o->batch;
        if (o->commands && o->commands - b->sent_cmds < max)
            max = (u32)(o->commands - b->sent_cmds);
        if (o->rate) {
            intended = b->t0 + (u64)((double)b->sent_cmds * 1e9 / (double)o->rate);
            if (now < intended) {
                *rate_wait = true;
                return false;
            }
        }
        break;
    case PH_CLEANUP:
        max = c->fq_len < o->batch ? c->fq_len : (u32)o->batch;
        break;
    }
    if (max == 0)
        return false;
    /* At most BURST_BYTES of frames (or one frame) from a moment the output was empty, so the
     * send never waits; past that, flush first, and leave a full socket to EPOLLOUT. */
    size_t need = submit_bytes(max);
    if (c->queued > 0 && !allocdb_wants_write(c->cl))
        c->queued = 0;
    if (c->queued > 0 && c->queued + need > BURST_BYTES) {
        if (c->want_out)
            return false;
        conn_flush(b, c);
        if (c->want_out || b->exit_code != 0)
            return false;
    }

    u32 slot = c->free_hint;
    while (c->req[slot].id != 0)
        slot = (slot + 1) % (u32)o->pipeline;
    c->free_hint = (slot + 1) % (u32)o->pipeline;
    struct req *r = &c->req[slot];
    struct sent *s = c->sent + (size_t)slot * b->slot_cmds;
    struct allocdb_command *cmds = b->cmds;
    u32 n = 0;
    r->resend = r->record = 0;

    if (b->phase == PH_SETUP) {
        u128 hot = hot_id();
        for (; n < max; n++) {
            u128 target = o->workload == W_HOTSPOT ? hot : pool_id(b->setup_next);
            put_cmd(b, c, &cmds[n], ALLOCDB_CREATE_RESOURCE, target, 0);
            b->setup_next++;
            s[n] = (struct sent){ ALLOCDB_CREATE_RESOURCE, R_SETUP };
        }
    } else if (b->phase == PH_CLEANUP) {
        for (; n < max; n++) {
            struct follow f = fq_pop(c);
            put_cmd(b, c, &cmds[n], ALLOCDB_RELEASE, f.reservation_id, 0); /* a pending confirm: release */
            s[n] = (struct sent){ ALLOCDB_RELEASE, R_CLEANUP };
        }
    } else if (o->workload == W_RETRY && c->cand_state == CAND_READY && c->cand_issued < CAND_USES &&
               c->cand_count <= max && (c->resends + 1) * 100 <= o->resend_percent * (c->submits + 1)) {
        cmds = c->cand; /* verbatim: the same operation ids, on the same handle (client id) */
        for (; n < c->cand_count; n++)
            s[n] = (struct sent){ c->cand[n].kind, R_RESEND };
        r->resend = 1;
        c->resends++;
        c->cand_issued++;
        c->cand_inflight++;
    } else {
        u32 follows = c->fq_len < max ? c->fq_len : max;
        /* Fresh commands first, then the follow-ups: a hotspot winner's release comes after its
         * own new attempts, so the next submit to arrive, anyone's, can win. */
        for (; n < max - follows; n++) {
            u128 target = o->workload == W_HOTSPOT ? hot_id() : pool_id(splitmix_next(&b->rng) % o->resources);
            put_cmd(b, c, &cmds[n], ALLOCDB_RESERVE, target, o->ttl_ms);
            s[n] = (struct sent){ ALLOCDB_RESERVE, R_FRESH };
        }
        for (; n < max; n++) {
            struct follow f = fq_pop(c);
            put_cmd(b, c, &cmds[n], f.kind, f.reservation_id, 0);
            s[n] = (struct sent){ f.kind, R_FOLLOW };
        }
        if (c->sent_cmd != NULL) /* --verify-retries: what a sampled command was */
            memcpy(c->sent_cmd + (size_t)slot * o->batch, cmds, sizeof(*cmds) * n);
        if (o->workload == W_RETRY && c->cand_state == CAND_FREE) {
            memcpy(c->cand, cmds, sizeof(*cmds) * n);
            c->cand_count = n;
            c->cand_issued = 0;
            c->cand_state = CAND_PENDING;
            r->record = 1;
        }
    }
    u64 rid;
    int rc = allocdb_send_submit(c->cl, cmds, n, &rid);
    if (rc != ALLOCDB_OK) {
        if (rc == ALLOCDB_ERR_CONNECTION)
            conn_failed(b, c);
        else
            fail(b, 1, "connection %u: a submit of %u commands: %s: %s", c->index, n, allocdb_strerror(rc),
                 allocdb_last_error(c->cl));
        return false;
    }
    c->queued += submit_bytes(n);
    c->submits += b->phase == PH_RUN;
    r->id = rid;
    map_put(c, rid, slot);
    r->t_send = now;
    r->t_intended = intended;
    r->count = n;
    r->counted = b->phase == PH_RUN;
    c->inflight++;
    b->inflight_reqs++;
    b->inflight_cmds += n;
    b->sent_cmds += n;
    return true;
}

/* ---- replies ----------------------------------------------------------------------------- */

/* The committed results that mean a table (or the expiration index) had no room. */
static bool full_code(u8 code)
{
    return code == SM_OPERATION_TABLE_FULL || code == SM_RESERVATION_TABLE_FULL || code == SM_RESOURCE_TABLE_FULL ||
           code == SM_EXPIRATION_INDEX_FULL;
}

static const u8 full_codes[] = { SM_OPERATION_TABLE_FULL, SM_RESERVATION_TABLE_FULL, SM_RESOURCE_TABLE_FULL,
                                 SM_EXPIRATION_INDEX_FULL };

/* A result code the counters have room for (the library checked it against the protocol). */
static bool code_known(const struct counts *n, const struct allocdb_result *res)
{
    switch (res->outcome) {
    case ALLOCDB_COMMITTED: return res->code < ADB_ARRAY_LEN(n->committed);
    case ALLOCDB_REJECTED: return res->code < ADB_ARRAY_LEN(n->rejected);
    case ALLOCDB_INDEFINITE: return res->code < ADB_ARRAY_LEN(n->indefinite);
    }
    return false;
}

static void count_result(struct bench *b, const struct allocdb_result *res, u64 now)
{
    switch (res->outcome) {
    case ALLOCDB_COMMITTED:
        b->n.committed[res->code]++;
        if (full_code(res->code)) {
            b->n.full++;
        } else {
            b->n.useful++;
            b->n.useful_first += now < b->first_end;
        }
        break;
    case ALLOCDB_REJECTED:
        b->n.rejected[res->code]++;
        b->n.rejected_all++;
        break;
    default:
        b->n.indefinite[res->code]++;
        b->n.indefinite_all++;
        break;
    }
    b->n.cached += res->from_retry_cache;
}

/*
 * --verify-retries: offers a committed first send (recorded for dedupe: not
 * operation_table_full, not itself an answer from the cache) to the sample. The first N/10 sent
 * in the run's first second are kept apart; the rest go through Algorithm R over the whole run.
 */
static void verify_offer(struct bench *b, u32 conn, const struct allocdb_command *cmd, u64 t_send,
                         const struct allocdb_result *res)
{
    u64 cap = b->o->verify_retries;
    struct vsample *v;
    bool early = b->early_n < b->early_cap && t_send < b->t0 + NS;
    if (early) {
        v = &b->vs[cap + b->early_n++];
    } else {
        b->vs_seen++;
        if (b->vs_n < cap) {
            v = &b->vs[b->vs_n++];
        } else {
            u64 k = splitmix_next(&b->v_rng) % b->vs_seen;
            if (k >= cap)
                return;
            v = &b->vs[k];
        }
    }
    v->cmd = *cmd;
    v->conn = conn;
    v->reservation_id = res->reservation_id;
    v->applied_lsn = res->applied_lsn;
    v->t_send = t_send;
    v->code = res->code;
}

static void on_result(struct bench *b, struct conn *c, const struct req *r, u32 i, const struct sent *s,
                      const struct allocdb_result *res, u64 now)
{
    const struct net_opts *o = b->o;
    bool ok = res->outcome == ALLOCDB_COMMITTED && res->code == SM_OK;
    if (r->counted)
        count_result(b, res, now);
    switch (s->role) {
    case R_SETUP:
        if (res->outcome != ALLOCDB_COMMITTED || (res->code != SM_OK && res->code != SM_ALREADY_EXISTS)) {
            const char *hint = "";
            if (res->outcome == ALLOCDB_COMMITTED && res->code == SM_RESOURCE_TABLE_FULL)
                hint = " (--resources is above the server's resource_capacity)";
            if (res->outcome == ALLOCDB_COMMITTED && res->code == SM_OPERATION_TABLE_FULL)
                hint = " (the server's dedupe table is full: wait for its dedupe window to pass)";
            fail(b, 1, "setup: creating a resource got %s %s%s", allocdb_outcome_name(res->outcome),
                 allocdb_result_name(res->outcome, res->code), hint);
        }
        return;
    case R_RESEND: {
        const struct cand_result *e = &c->cand_res[i];
        if (res->outcome != ALLOCDB_COMMITTED) {
            b->n.resend_unanswered++;
            return;
        }
        if (res->from_retry_cache && res->code == e->code && res->applied_lsn == e->applied_lsn &&
            res->reservation_id == e->reservation_id) {
            b->n.resent_cached++;
            return;
        }
        b->n.resend_mismatches++;
        if (b->mismatch[0] == 0)
            snprintf(b->mismatch, sizeof(b->mismatch),
                     "a resent %s (first answered %s at lsn %" PRIu64 ") came back %s at lsn %" PRIu64 "%s",
                     sm_command_name((enum sm_command_kind)s->kind), sm_result_name((enum sm_result)e->code),
                     e->applied_lsn, sm_result_name((enum sm_result)res->code), res->applied_lsn,
                     res->from_retry_cache ? " from the retry cache" : ", not from the retry cache: executed twice");
        return;
    }
    case R_CLEANUP:
        return;
    default:
        break;
    }
    if (r->counted && res->from_retry_cache)
        b->n.fresh_cached++;
    if (c->sent_cmd != NULL && r->counted && res->outcome == ALLOCDB_COMMITTED &&
        res->code != SM_OPERATION_TABLE_FULL && !res->from_retry_cache)
        verify_offer(b, c->index, &c->sent_cmd[(size_t)(r - c->req) * o->batch + i], r->t_send, res);
    if (r->record) {
        c->cand_res[i] = (struct cand_result){ res->reservation_id, res->applied_lsn, res->code };
    }
    if (s->kind == ALLOCDB_RESERVE && o->workload == W_HOTSPOT && r->counted)
        b->n.attempts++;
    if (!ok || res->from_retry_cache)
        return;
    if (s->kind == ALLOCDB_CONFIRM) {
        fq_push(b, c, res->reservation_id, ALLOCDB_RELEASE);
        return;
    }
    if (s->kind != ALLOCDB_RESERVE)
        return;
    switch (o->workload) {
    case W_HOTSPOT:
        if (r->counted)
            b->n.wins++;
        fq_push(b, c, res->reservation_id, ALLOCDB_RELEASE);
        break;
    case W_UNIFORM:
    case W_RETRY:
        fq_push(b, c, res->reservation_id, (splitmix_next(&b->rng) & 1) ? ALLOCDB_CONFIRM : ALLOCDB_RELEASE);
        break;
    case W_EXPIRY:
        if (!r->counted)
            break;
        /* Reservoir sample of the reservations made. */
        if (b->sample_n < SAMPLE_MAX) {
            b->sample[b->sample_n++] = res->reservation_id;
        } else {
            u64 k = splitmix_next(&b->rng) % (b->sample_seen + 1);
            if (k < SAMPLE_MAX)
                b->sample[k] = res->reservation_id;
        }
        b->sample_seen++;
        break;
    }
}

static void on_reply(struct bench *b, struct conn *c, const struct allocdb_reply *rep, u64 now)
{
    if (rep->kind == ALLOCDB_REPLY_LOST) { /* the library closed the connection */
        conn_failed(b, c);
        return;
    }
    u32 slot = map_take(c, rep->request_id);
    if (slot == NIL) {
        fail(b, 1, "connection %u: a reply to request id %" PRIu64 ", which is not in flight", c->index,
             rep->request_id);
        return;
    }
    struct req *r = &c->req[slot];
    const struct sent *s = c->sent + (size_t)slot * b->slot_cmds;
    bool record_ok = r->record;
    switch (rep->kind) {
    case ALLOCDB_REPLY_SUBMIT:
        if (rep->count != r->count) {
            fail(b, 1, "connection %u: bad submit_result (%u results for %u commands)", c->index, rep->count,
                 r->count);
            return;
        }
        for (u32 i = 0; i < rep->count; i++) {
            struct allocdb_result res;
            if (allocdb_reply_result(rep, i, &res) != ALLOCDB_OK || !code_known(&b->n, &res)) {
                fail(b, 1, "connection %u: bad result %u of a submit_result", c->index, i);
                return;
            }
            if (res.outcome != ALLOCDB_COMMITTED || res.code == SM_OPERATION_TABLE_FULL)
                record_ok = false; /* not stored for dedupe: a resend would execute */
            on_result(b, c, r, i, &s[i], &res, now);
        }
        break;
    case ALLOCDB_REPLY_ERROR: {
        u16 code = rep->u.error.code;
        if (closes(code)) {
            char t[256];
            error_text(rep, t, sizeof(t));
            fail(b, 1, "connection %u: the server answered a submit with %s", c->index, t);
            return;
        }
        if (code == ALLOCDB_SERVER_BATCH_TOO_LARGE) {
            fail(b, 1, "the server refused a submit of %u commands: batch_too_large (max_batch %u)", r->count,
                 b->hello.max_batch);
            return;
        }
        if (r->counted) {
            b->n.refused[code] += r->count;
            if (code == ALLOCDB_SERVER_TIMEOUT)
                b->n.indefinite_all += r->count;
            else
                b->n.rejected_all += r->count;
        }
        if (r->resend)
            b->n.resend_unanswered += r->count;
        if (b->phase == PH_SETUP) {
            fail(b, 1, "setup: a submit of creates was refused with %s", allocdb_server_error_name(code));
            return;
        }
        record_ok = false;
        break;
    }
    case ALLOCDB_REPLY_NOT_PRIMARY:
        fail(b, 1, "%s is not the primary (view %" PRIu64 "%s%s)", b->o->addr, rep->u.not_primary.view,
             rep->u.not_primary.hint[0] ? ", try " : "", rep->u.not_primary.hint);
        return;
    default:
        fail(b, 1, "connection %u: a reply of kind %u answered a submit", c->index, rep->kind);
        return;
    }
    if (r->record)
        c->cand_state = record_ok ? CAND_READY : CAND_FREE;
    if (r->resend) {
        c->cand_inflight--;
        if (r->counted) {
            b->n.resends++;
            b->n.resent_commands += r->count;
        }
        if (c->cand_issued >= CAND_USES && c->cand_inflight == 0)
            c->cand_state = CAND_FREE;
    }
    if (r->counted) {
        b->n.requests++;
        b->n.commands += r->count;
        hist_record(b->lat_tick, now - r->t_send);
        if (b->o->rate)
            hist_record(b->lat_sched, now - r->t_intended);
        b->t_last_reply = now;
    }
    b->inflight_reqs--;
    b->inflight_cmds -= r->count;
    c->inflight--;
    r->id = 0;
}

/* Takes in every reply the socket holds, without waiting (allocdb_poll, timeout 0). */
static void conn_read(struct bench *b, struct conn *c, u64 now)
{
    struct allocdb_reply rep;
    int rc = 0;
    while (b->exit_code == 0 && (rc = allocdb_poll(c->cl, 0, &rep)) == 1)
        on_reply(b, c, &rep, now);
    if (b->exit_code != 0)
        return;
    if (rc < 0) {
        fail(b, 1, "connection %u: %s: %s", c->index, allocdb_strerror(rc), allocdb_last_error(c->cl));
        return;
    }
    if (!allocdb_is_connected(c->cl)) { /* closed by the server with nothing in flight */
        conn_failed(b, c);
        return;
    }
    if (!allocdb_wants_write(c->cl)) { /* the poll wrote what was queued */
        c->queued = 0;
        want_out(b, c, false);
    }
}

/* ---- the loop ---------------------------------------------------------------------------- */

static double per_s(u64 n, u64 ns)
{
    return ns ? (double)n * 1e9 / (double)ns : 0.0;
}

static void fmt_ns(char *out, size_t n, u64 ns)
{
    if (ns < 1000000)
        snprintf(out, n, "%.1f us", (double)ns / 1e3);
    else if (ns < NS)
        snprintf(out, n, "%.3f ms", (double)ns / 1e6);
    else
        snprintf(out, n, "%.3f s", (double)ns / 1e9);
}

static void progress(struct bench *b, u64 now)
{
    double dt = (double)(now - b->tick_t) / 1e9;
    if (b->phase == PH_SETUP) {
        if (now - b->t0 >= NS)
            fprintf(stderr, "allocdb-bench net: setup %" PRIu64 "/%" PRIu64 " resources\n", b->setup_next - b->inflight_cmds,
                    b->setup_total);
    } else if (b->phase == PH_RUN) {
        char p99[32];
        u64 q99 = hist_quantile(b->lat_tick, 0.99);
        double t = (double)(now - b->t0) / 1e9, cmds = dt > 0 ? (double)(b->n.commands - b->tick_cmds) / dt : 0.0,
               useful = dt > 0 ? (double)(b->n.useful - b->tick_useful) / dt : 0.0,
               full = dt > 0 ? (double)(b->n.full - b->tick_full) / dt : 0.0,
               rejected = dt > 0 ? (double)(b->n.rejected_all - b->tick_rejected) / dt : 0.0,
               indefinite = dt > 0 ? (double)(b->n.indefinite_all - b->tick_indefinite) / dt : 0.0;
        fmt_ns(p99, sizeof(p99), q99);
        fprintf(stderr,
                "allocdb-bench net: %6.1f s %9.0f cmd/s  useful %.0f/s  full %.0f/s  rejected %.0f/s  indefinite %.0f/s"
                "  p99 %s  (so far %.0f cmd/s, %" PRIu64 " commands)\n",
                t, cmds, useful, full, rejected, indefinite, p99, per_s(b->n.commands, now - b->t0), b->n.commands);
        if (b->seconds != NULL)
            json_array_append_new(b->seconds,
                                  json_pack("{s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "t_s", t, "commands_per_s", cmds,
                                            "useful_per_s", useful, "full_per_s", full, "rejected_per_s", rejected,
                                            "indefinite_per_s", indefinite, "p99_us", (double)q99 / 1e3));
    }
    hist_merge(b->lat, b->lat_tick);
    hist_reset(b->lat_tick);
    b->tick_cmds = b->n.commands;
    b->tick_useful = b->n.useful;
    b->tick_full = b->n.full;
    b->tick_rejected = b->n.rejected_all;
    b->tick_indefinite = b->n.indefinite_all;
    b->tick_t = now;
}

static bool phase_done(struct bench *b)
{
    switch (b->phase) {
    case PH_SETUP: return b->setup_next == b->setup_total && b->inflight_reqs == 0;
    case PH_RUN: return b->stopping && b->inflight_reqs == 0;
    case PH_CLEANUP:
        if (b->inflight_reqs != 0)
            return false;
        for (u32 i = 0; i < b->nconn; i++)
            if (b->conns[i].fq_len)
                return false;
        return true;
    }
    return true;
}

/* Waits for events until deadline (absolute ns). */
static int wait_events(struct bench *b, u64 now, u64 deadline)
{
    u64 ns = deadline > now ? deadline - now : 0;
    if (b->have_pwait2) {
        struct timespec ts = { .tv_sec = (time_t)(ns / NS), .tv_nsec = (long)(ns % NS) };
        int n = epoll_pwait2(b->ep, b->evs, (int)b->nconn, &ts, NULL);
        if (n >= 0 || errno != ENOSYS)
            return n;
        b->have_pwait2 = false;
    }
    return epoll_wait(b->ep, b->evs, (int)b->nconn, (int)((ns + 999999) / 1000000));
}

/* Runs the current phase to its end. */
static void run_phase(struct bench *b)
{
    const struct net_opts *o = b->o;
    u64 now = now_ns();
    b->t0 = b->tick_t = now;
    b->first_end = now + FIRST_SPAN_NS;
    b->tick_cmds = b->n.commands;
    b->tick_useful = b->n.useful;
    b->tick_full = b->n.full;
    b->tick_rejected = b->n.rejected_all;
    b->tick_indefinite = b->n.indefinite_all;
    b->sent_cmds = 0;
    b->stopping = false;
    u64 end = o->duration_ms ? b->t0 + o->duration_ms * 1000000 : UINT64_MAX;
    while (b->exit_code == 0) {
        now = now_ns();
        if (b->phase == PH_RUN && !b->stopping &&
            (now >= end || (o->commands && b->sent_cmds >= o->commands) || interrupted))
            b->stopping = true;
        if (interrupted && b->phase == PH_SETUP) {
            fail(b, 1, "interrupted during setup");
            break;
        }
        if (interrupted && b->phase == PH_CLEANUP)
            break;
        if (phase_done(b))
            break;
        bool rate_wait = false;
        for (u32 i = 0; i < b->nconn && b->exit_code == 0; i++) {
            struct conn *c = &b->conns[i];
            bool sent = false;
            while (send_request(b, c, now, &rate_wait))
                sent = true;
            if (sent && !c->want_out && b->exit_code == 0)
                conn_flush(b, c);
        }
        if (b->exit_code != 0)
            break;
        u64 wake = b->tick_t + NS;
        if (b->phase == PH_RUN && !b->stopping) {
            if (end < wake)
                wake = end;
            if (rate_wait) {
                u64 due = b->t0 + (u64)((double)b->sent_cmds * 1e9 / (double)o->rate);
                if (due < wake)
                    wake = due;
            }
        }
        int n = wait_events(b, now, wake);
        if (n < 0 && errno != EINTR) {
            fail(b, 1, "epoll: %s", strerror(errno));
            break;
        }
        now = now_ns();
        for (int k = 0; k < n && b->exit_code == 0; k++) {
            struct conn *c = &b->conns[b->evs[k].data.u32];
            if (b->evs[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
                conn_read(b, c, now);
            if ((b->evs[k].events & EPOLLOUT) && b->exit_code == 0)
                conn_flush(b, c);
        }
        if (now >= b->tick_t + NS)
            progress(b, now);
    }
    hist_merge(b->lat, b->lat_tick);
    hist_reset(b->lat_tick);
    if (b->phase == PH_RUN) {
        b->t_run_end = b->t_last_reply > b->t0 ? b->t_last_reply : now;
        b->elapsed_ns = b->t_run_end - b->t0;
    }
}

/* ---- expiry read-back --------------------------------------------------------------------- */

struct expiry_check {
    u32 sample, expired, reserved, other;
    double waited_s; /* from the end of the run until the sample had expired (or the wait ended) */
    bool done;       /* no sampled reservation is still reserved */
};

/* Reads the sample back until none is still reserved, TTL + 30 s have passed or ^C. */
static void check_expiry(struct bench *b, struct expiry_check *x)
{
    u64 t0 = b->t_run_end, limit = now_ns() + (b->o->ttl_ms + 30000) * 1000000, shown = now_ns();
    memset(x, 0, sizeof(*x));
    x->sample = b->sample_n;
    for (;;) {
        x->expired = x->reserved = x->other = 0;
        for (u32 i = 0; i < b->sample_n; i++) {
            struct allocdb_reservation rv;
            int rc = allocdb_get_reservation(b->ctl, b->sample[i], 0, &rv);
            if (rc != ALLOCDB_OK) {
                fprintf(stderr, "allocdb-bench: expiry read-back: %s: %s\n", allocdb_strerror(rc),
                        allocdb_last_error(b->ctl));
                x->other = b->sample_n - x->expired - x->reserved;
                x->waited_s = (double)(now_ns() - t0) / 1e9;
                return;
            }
            if (rv.read == ALLOCDB_READ_FOUND && rv.state == ALLOCDB_RESERVATION_EXPIRED)
                x->expired++;
            else if (rv.read == ALLOCDB_READ_FOUND && rv.state == ALLOCDB_RESERVATION_RESERVED)
                x->reserved++;
            else
                x->other++;
        }
        u64 now = now_ns();
        x->waited_s = (double)(now - t0) / 1e9;
        if (x->reserved == 0 || now >= limit || interrupted) {
            x->done = x->reserved == 0;
            return;
        }
        if (now - shown >= NS) {
            fprintf(stderr, "allocdb-bench net: expiry: %u of %u sampled reservations still reserved %.1f s after the run\n",
                    x->reserved, x->sample, x->waited_s);
            shown = now;
        }
        struct timespec ts = { .tv_sec = 0, .tv_nsec = 50000000 };
        nanosleep(&ts, NULL);
    }
}

/* ---- retry verification (--verify-retries) ------------------------------------------------ */

enum vclass { V_EXACT, V_EDGE, V_AGED };

static int younger_first(const void *x, const void *y)
{
    const struct vsample *a = x, *b = y;
    return a->t_send < b->t_send ? 1 : a->t_send > b->t_send ? -1 : 0;
}

static void hex128(char *out, size_t n, u128 v)
{
    snprintf(out, n, "%016llx%016llx", (unsigned long long)U128_HI(v), (unsigned long long)U128_LO(v));
}

__attribute__((format(printf, 2, 3))) static void verify_note(struct verify *v, const char *fmt, ...)
{
    if (v->first[0] != 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->first, sizeof(v->first), fmt, ap);
    va_end(ap);
}

/* Commands queued for one verification submit, and their results: allocated once when it starts. */
struct vbuf {
    struct allocdb_command *cmds;
    u32 *conn;                  /* the connection each was first sent on: its client id */
    struct allocdb_result *res;
    u8 *refused;                /* its frame was refused as a whole (overloaded, ...) */
    u32 n, max;
};

/* One submit on the wire: a frame per client id (the handle's client id goes into every
 * command of a frame), all in flight together. */
struct vframe {
    u64 rid;
    u32 at, count; /* grouped commands [at, at + count) */
};

struct vgroups {
    struct allocdb_command *cmds; /* batch: the queued commands, grouped by connection */
    u32 *order;                   /* batch: the queue index of each grouped command */
    u32 *start;                   /* connections + 1: where each connection's group starts */
    u32 *pos;                     /* connections */
    struct vframe *frames;        /* connections */
};

/*
 * Sends the q->n commands of q on the control connection and waits for every answer: results in
 * q->res, q->refused[i] set when its frame was refused with an error that keeps the connection
 * (overloaded, ...). false after fail() on a lost connection or a protocol failure.
 */
static bool vsubmit(struct bench *b, struct vgroups *g, struct vbuf *q)
{
    allocdb_client *ctl = b->ctl;
    u32 nconn = b->nconn, nf = 0;
    memset(g->start, 0, (nconn + 1) * sizeof(*g->start));
    for (u32 i = 0; i < q->n; i++)
        g->start[q->conn[i] + 1]++;
    for (u32 k = 0; k < nconn; k++) {
        g->start[k + 1] += g->start[k];
        g->pos[k] = g->start[k];
    }
    for (u32 i = 0; i < q->n; i++) {
        u32 at = g->pos[q->conn[i]]++;
        g->order[at] = i;
        g->cmds[at] = q->cmds[i];
        q->refused[i] = 0;
    }
    for (u32 k = 0; k < nconn; k++) {
        u32 count = g->start[k + 1] - g->start[k];
        if (count == 0)
            continue;
        struct vframe *f = &g->frames[nf++];
        f->at = g->start[k];
        f->count = count;
        int rc = allocdb_set_client_id(ctl, b->conns[k].client_id);
        if (rc == ALLOCDB_OK)
            rc = allocdb_send_submit(ctl, g->cmds + f->at, count, &f->rid);
        if (rc != ALLOCDB_OK) {
            fail(b, 1, "retry verification: sending a submit: %s: %s", allocdb_strerror(rc), allocdb_last_error(ctl));
            return false;
        }
    }
    for (u32 answered = 0; answered < nf; answered++) {
        struct allocdb_reply rep;
        int rc = allocdb_poll(ctl, CTL_TIMEOUT_MS, &rep);
        if (rc <= 0) {
            fail(b, 1, "retry verification: %s: %s", rc == 0 ? "no reply in time" : allocdb_strerror(rc),
                 allocdb_last_error(ctl));
            return false;
        }
        if (rep.kind == ALLOCDB_REPLY_LOST) {
            fail(b, 1, "retry verification: %s", allocdb_last_error(ctl));
            return false;
        }
        struct vframe *f = NULL;
        for (u32 k = 0; k < nf && f == NULL; k++)
            if (g->frames[k].rid == rep.request_id)
                f = &g->frames[k];
        if (f == NULL || rep.count != f->count) {
            fail(b, 1, "retry verification: a reply to request id %" PRIu64 ", which is not in flight", rep.request_id);
            return false;
        }
        if (rep.kind == ALLOCDB_REPLY_ERROR) {
            char why[256];
            u16 code = rep.u.error.code;
            if (!closes(code) && code != ALLOCDB_SERVER_BATCH_TOO_LARGE) {
                for (u32 j = 0; j < f->count; j++)
                    q->refused[g->order[f->at + j]] = 1;
                continue;
            }
            error_text(&rep, why, sizeof(why));
            fail(b, 1, "retry verification: the server answered a submit with %s", why);
            return false;
        }
        if (rep.kind != ALLOCDB_REPLY_SUBMIT) {
            fail(b, 1, "retry verification: a submit of %u commands answered with a reply of kind %u", f->count,
                 rep.kind);
            return false;
        }
        for (u32 j = 0; j < f->count; j++)
            if (allocdb_reply_result(&rep, j, &q->res[g->order[f->at + j]]) != ALLOCDB_OK) {
                fail(b, 1, "retry verification: bad result %u of a submit_result", j);
                return false;
            }
    }
    return true;
}

/* Releases the reservations queued in rel (re-executed reserves); a failure is only reported. */
static void vrelease_flush(struct bench *b, struct vgroups *g, struct vbuf *rel)
{
    if (rel->n == 0 || b->exit_code != 0)
        return;
    if (vsubmit(b, g, rel)) {
        u32 bad = 0;
        const char *why = NULL;
        for (u32 i = 0; i < rel->n; i++) {
            const struct allocdb_result *res = &rel->res[i];
            if (!rel->refused[i] && res->outcome == ALLOCDB_COMMITTED && res->code == SM_OK) {
                b->v.released++;
                continue;
            }
            bad++;
            if (why == NULL)
                why = rel->refused[i] ? "refused" : allocdb_result_name(res->outcome, res->code);
        }
        if (bad)
            fprintf(stderr,
                    "allocdb-bench net: retry verification: %u re-executed reservations could not be released "
                    "(%s); they expire with their TTL\n",
                    bad, why);
    }
    rel->n = 0;
}

/* A resent reserve that executed again (its id had aged out) holds a resource: release it. */
static void vrelease(struct bench *b, struct vgroups *g, struct vbuf *rel, const struct vsample *s,
                     u128 reservation_id)
{
    rel->cmds[rel->n] = (struct allocdb_command){
        .kind = ALLOCDB_RELEASE,
        .operation_id = next_op(b),
        .target = reservation_id,
        .holder_id = s->cmd.holder_id,
    };
    rel->conn[rel->n] = s->conn; /* the same client */
    if (++rel->n == rel->max)
        vrelease_flush(b, g, rel);
}

static bool vbuf_init(struct vbuf *q, u32 max)
{
    q->max = max;
    q->n = 0;
    q->cmds = calloc(max, sizeof(*q->cmds));
    q->conn = calloc(max, sizeof(*q->conn));
    q->res = calloc(max, sizeof(*q->res));
    q->refused = calloc(max, 1);
    return q->cmds != NULL && q->conn != NULL && q->res != NULL && q->refused != NULL;
}

static void vbuf_free(struct vbuf *q)
{
    free(q->cmds);
    free(q->conn);
    free(q->res);
    free(q->refused);
}

static bool vgroups_init(struct vgroups *g, u32 max, u32 nconn)
{
    g->cmds = calloc(max, sizeof(*g->cmds));
    g->order = calloc(max, sizeof(*g->order));
    g->start = calloc((size_t)nconn + 1, sizeof(*g->start));
    g->pos = calloc(nconn, sizeof(*g->pos));
    g->frames = calloc(nconn, sizeof(*g->frames));
    return g->cmds != NULL && g->order != NULL && g->start != NULL && g->pos != NULL && g->frames != NULL;
}

static void vgroups_free(struct vgroups *g)
{
    free(g->cmds);
    free(g->order);
    free(g->start);
    free(g->pos);
    free(g->frames);
}

/*
 * After the measured phase: resends every sampled command verbatim, youngest first, in submits
 * of --batch, judging each by its age at the resend against the dedupe window W: younger than
 * W - 2 s it must come back committed from the retry cache with its original code, LSN and
 * reservation id; older than W + 2 s it must not come from the cache (its id is new again, so
 * it executes: a reserve that succeeds is released at once); in between it is not judged. Right
 * after each submit, up to N/10 in all of the exact ones are sent again changed (a reserve's TTL
 * one slot shorter or longer, a confirm's or release's holder) and must come back committed
 * operation_conflict. A command whose frame the server refused as a whole (overloaded) counts
 * as unanswered.
 */
static void verify_run(struct bench *b, const struct server_info *si)
{
    const struct net_opts *o = b->o;
    struct verify *v = &b->v;
    u64 cap = o->verify_retries;
    if (interrupted) {
        v->skipped = "interrupted";
        return;
    }
    if (!si->has_window) {
        v->skipped = "the server reports no dedupe window";
        fail(b, 1, "retry verification: the server's status and metrics report no dedupe window");
        return;
    }
    if (!allocdb_is_connected(b->ctl)) {
        v->skipped = "no control connection";
        fail(b, 1, "retry verification: no control connection to the server");
        return;
    }
    /* The first second's commands join the reservoir's, then youngest first. */
    memmove(&b->vs[b->vs_n], &b->vs[cap], (size_t)b->early_n * sizeof(*b->vs));
    u64 total = b->vs_n + b->early_n;
    qsort(b->vs, (size_t)total, sizeof(*b->vs), younger_first);
    v->ran = true;
    v->samples = total;
    v->early = b->early_n;
    u64 conflict_cap = cap / 10 ? cap / 10 : 1;
    double window = si->window_ms;
    struct vbuf q = { 0 }, con = { 0 }, rel = { 0 };
    struct vgroups g = { 0 };
    u32 *con_of = calloc(o->batch, sizeof(*con_of));
    u8 *cls = calloc(o->batch, 1);
    double *age = calloc(o->batch, sizeof(*age));
    if (!vbuf_init(&q, (u32)o->batch) || !vbuf_init(&con, (u32)o->batch) || !vbuf_init(&rel, (u32)o->batch) ||
        !vgroups_init(&g, (u32)o->batch, b->nconn) || con_of == NULL || cls == NULL || age == NULL) {
        fail(b, 1, "retry verification: out of memory");
        goto out;
    }
    v->oldest_s = 0;
    v->youngest_s = -1;
    for (u64 at = 0; at < total && b->exit_code == 0;) {
        u32 n = total - at < o->batch ? (u32)(total - at) : (u32)o->batch;
        u64 now = now_ns();
        for (u32 i = 0; i < n; i++) {
            const struct vsample *s = &b->vs[at + i];
            q.cmds[i] = s->cmd;
            q.conn[i] = s->conn;
            age[i] = (double)(now - s->t_send) / 1e6; /* ms */
            cls[i] = age[i] + VERIFY_MARGIN_MS < window   ? V_EXACT
                     : age[i] > window + VERIFY_MARGIN_MS ? V_AGED
                                                          : V_EDGE;
            if (age[i] / 1e3 > v->oldest_s)
                v->oldest_s = age[i] / 1e3;
            if (v->youngest_s < 0 || age[i] / 1e3 < v->youngest_s)
                v->youngest_s = age[i] / 1e3;
        }
        q.n = n;
        if (!vsubmit(b, &g, &q))
            break;
        con.n = 0;
        for (u32 i = 0; i < n; i++) {
            const struct vsample *s = &b->vs[at + i];
            const struct allocdb_command *pc = &s->cmd;
            const struct allocdb_result *res = &q.res[i];
            char r0[40], r1[40];
            const char *kind = sm_command_name((enum sm_command_kind)pc->kind);
            if (q.refused[i] || res->outcome != ALLOCDB_COMMITTED) {
                v->unanswered++;
                continue;
            }
            if (!res->from_retry_cache && pc->kind == ALLOCDB_RESERVE && res->code == SM_OK &&
                o->workload != W_EXPIRY)
                vrelease(b, &g, &rel, s, res->reservation_id);
            switch (cls[i]) {
            case V_EXACT:
                if (res->from_retry_cache && res->code == s->code && res->applied_lsn == s->applied_lsn &&
                    res->reservation_id == s->reservation_id) {
                    v->exact++;
                    if (v->conflict_checks + con.n < conflict_cap) {
                        /* The same id with a changed field: a reserve's TTL by one slot (so a
                         * reserve that executed anyway is still ours to release), else the holder. */
                        struct allocdb_command ch = *pc;
                        if (pc->kind == ALLOCDB_RESERVE)
                            ch.ttl_ms = pc->ttl_ms > b->hello.slot_duration_ms
                                            ? pc->ttl_ms - b->hello.slot_duration_ms
                                            : pc->ttl_ms + b->hello.slot_duration_ms;
                        else
                            ch.holder_id = pc->holder_id ^ ((u128)1 << 127);
                        con.cmds[con.n] = ch;
                        con.conn[con.n] = s->conn;
                        con_of[con.n++] = i;
                    }
                    break;
                }
                v->mismatches++;
                hex128(r0, sizeof(r0), s->reservation_id);
                hex128(r1, sizeof(r1), res->reservation_id);
                verify_note(v,
                            "a resent %s sent %.1f s before (inside the %.0f ms dedupe window by more than %d s), "
                            "first committed %s at lsn %" PRIu64 " (reservation %s), came back %s at lsn %" PRIu64
                            " (reservation %s)%s",
                            kind, age[i] / 1e3, window, VERIFY_MARGIN_MS / 1000,
                            sm_result_name((enum sm_result)s->code), s->applied_lsn, r0,
                            sm_result_name((enum sm_result)res->code), res->applied_lsn, r1,
                            res->from_retry_cache ? " from the retry cache"
                                                  : ", not from the retry cache: executed again");
                break;
            case V_AGED:
                if (!res->from_retry_cache) {
                    v->aged_new++;
                    break;
                }
                v->mismatches++;
                verify_note(v,
                            "a resent %s sent %.1f s before (past the %.0f ms dedupe window by more than %d s) "
                            "came back from the retry cache (%s at lsn %" PRIu64 "): its id was still remembered",
                            kind, age[i] / 1e3, window, VERIFY_MARGIN_MS / 1000,
                            sm_result_name((enum sm_result)res->code), res->applied_lsn);
                break;
            default:
                v->edge++;
                break;
            }
        }
        if (con.n > 0 && b->exit_code == 0 && vsubmit(b, &g, &con)) {
            for (u32 k = 0; k < con.n; k++) {
                const struct vsample *s = &b->vs[at + con_of[k]];
                const struct allocdb_command *pc = &s->cmd;
                const struct allocdb_result *res = &con.res[k];
                if (con.refused[k])
                    continue;
                v->conflict_checks++;
                if (res->outcome == ALLOCDB_COMMITTED && res->code == SM_OPERATION_CONFLICT && !res->from_retry_cache) {
                    v->conflicts++;
                    continue;
                }
                v->conflict_mismatches++;
                if (res->outcome == ALLOCDB_COMMITTED && !res->from_retry_cache && pc->kind == ALLOCDB_RESERVE &&
                    res->code == SM_OK && o->workload != W_EXPIRY)
                    vrelease(b, &g, &rel, s, res->reservation_id);
                verify_note(v,
                            "a %s reusing the operation id of one sent %.1f s before, with a changed %s, came back %s "
                            "%s at lsn %" PRIu64 "%s, not committed operation_conflict",
                            sm_command_name((enum sm_command_kind)pc->kind), age[con_of[k]] / 1e3,
                            pc->kind == ALLOCDB_RESERVE ? "ttl" : "holder_id", allocdb_outcome_name(res->outcome),
                            allocdb_result_name(res->outcome, res->code), res->applied_lsn,
                            res->from_retry_cache ? " from the retry cache" : "");
            }
        }
        at += n;
    }
    vrelease_flush(b, &g, &rel);
out:
    vbuf_free(&q);
    vbuf_free(&con);
    vbuf_free(&rel);
    vgroups_free(&g);
    free(con_of);
    free(cls);
    free(age);
    if (v->youngest_s < 0)
        v->youngest_s = 0;
}

/* ---- report ------------------------------------------------------------------------------ */


static json_t *jopt(bool has, double v)
{
    return has ? json_real(v) : json_null();
}

static json_t *jopt_int(bool has, double v)
{
    return has ? json_integer((json_int_t)v) : json_null();
}

static json_t *results_json(const struct counts *n)
{
    json_t *committed = json_object(), *rejected = json_object(), *indefinite = json_object(), *refused = json_object();
    for (u32 i = 0; i < SM_RESULT_COUNT; i++)
        if (n->committed[i])
            json_object_set_new(committed, sm_result_name((enum sm_result)i), json_integer((json_int_t)n->committed[i]));
    for (u32 i = 0; i < ADB_ARRAY_LEN(n->rejected); i++)
        if (n->rejected[i])
            json_object_set_new(rejected, allocdb_result_name(ALLOCDB_REJECTED, (u8)i),
                                json_integer((json_int_t)n->rejected[i]));
    for (u32 i = 0; i < ADB_ARRAY_LEN(n->indefinite); i++)
        if (n->indefinite[i])
            json_object_set_new(indefinite, allocdb_result_name(ALLOCDB_INDEFINITE, (u8)i),
                                json_integer((json_int_t)n->indefinite[i]));
    for (u32 i = 0; i < ADB_ARRAY_LEN(n->refused); i++)
        if (n->refused[i])
            json_object_set_new(refused, allocdb_server_error_name((u16)i), json_integer((json_int_t)n->refused[i]));
    return json_pack("{s:o, s:o, s:o, s:o, s:I}", "committed", committed, "rejected", rejected, "indefinite",
                     indefinite, "refused", refused, "from_retry_cache", (json_int_t)n->cached);
}

/* The useful rate over the run against its first 5 s (the whole run when it was shorter). */
struct sustained {
    double per_s, first_per_s, first_span_s, percent;
    bool has_percent;
};

static void sustained_rates(const struct bench *b, struct sustained *s)
{
    u64 span = b->elapsed_ns < FIRST_SPAN_NS ? b->elapsed_ns : FIRST_SPAN_NS;
    s->per_s = per_s(b->n.useful, b->elapsed_ns);
    s->first_per_s = per_s(b->n.useful_first, span);
    s->first_span_s = (double)span / 1e9;
    s->has_percent = s->first_per_s > 0;
    s->percent = s->has_percent ? 100.0 * s->per_s / s->first_per_s : 0.0;
}

/* The rate of new operations the dedupe table holds for a whole window: capacity / window. */
static bool table_rate(const struct server_info *si, double *out)
{
    if (!si->has_capacity || !si->has_window || si->window_ms <= 0)
        return false;
    *out = si->capacity / (si->window_ms / 1e3);
    return true;
}

static bool steady_workload(enum workload w)
{
    return w == W_UNIFORM || w == W_RETRY;
}

static json_t *latency_json(const struct hist *h, json_t *o)
{
    json_object_set_new(o, "p50_us", json_real((double)hist_quantile(h, 0.50) / 1e3));
    json_object_set_new(o, "p99_us", json_real((double)hist_quantile(h, 0.99) / 1e3));
    json_object_set_new(o, "p999_us", json_real((double)hist_quantile(h, 0.999) / 1e3));
    json_object_set_new(o, "max_us", json_real((double)h->max / 1e3));
    json_object_set_new(o, "mean_us", json_real(h->count ? (double)h->sum / (double)h->count / 1e3 : 0.0));
    return o;
}

static void print_json(const struct bench *b, const struct server_info *si, double setup_s,
                       const struct expiry_check *x)
{
    const struct net_opts *o = b->o;
    const struct counts *n = &b->n;
    json_t *doc = json_pack(
        "{s:s, s:s, s:b, s:s, s:s, s:I, s:I, s:I, s:o, s:I, s:I, s:o, s:f, s:I, s:f, s:I, s:f}", "tool",
        "allocdb-bench net", "version", PACKAGE_VERSION, "ok", b->exit_code == 0, "workload",
        workload_names[o->workload], "addr", o->addr, "connections", (json_int_t)o->connections, "pipeline",
        (json_int_t)o->pipeline, "batch", (json_int_t)o->batch, "rate", o->rate ? json_integer((json_int_t)o->rate) : json_null(),
        "seed", (json_int_t)o->seed, "ttl_ms", (json_int_t)o->ttl_ms, "resources",
        o->workload == W_HOTSPOT ? json_integer(1) : json_integer((json_int_t)o->resources), "duration_s",
        (double)b->elapsed_ns / 1e9, "commands", (json_int_t)n->commands, "commands_per_s",
        per_s(n->commands, b->elapsed_ns), "requests", (json_int_t)n->requests, "commands_per_request",
        n->requests ? (double)n->commands / (double)n->requests : 0.0);
    latency_json(b->lat, doc);
    if (o->rate)
        json_object_set_new(doc, "intended", latency_json(b->lat_sched, json_object()));
    json_object_set_new(doc, "results", results_json(n));
    json_object_set_new(doc, "setup", json_pack("{s:I, s:f}", "commands", (json_int_t)b->setup_total, "seconds", setup_s));
    json_object_set_new(
        doc, "server",
        json_pack("{s:o, s:o, s:o, s:o, s:o, s:I, s:I}", "fsyncs", jopt_int(si->has_fsyncs, si->fsyncs), "mean_batch",
                  jopt(si->has_batch, si->mean_batch), "dedupe_window_ms", jopt_int(si->has_window, si->window_ms),
                  "operation_capacity", jopt_int(si->has_capacity, si->capacity), "operations_used",
                  jopt_int(si->has_ops_used, si->ops_used), "max_batch", (json_int_t)b->hello.max_batch,
                  "slot_duration_ms", (json_int_t)b->hello.slot_duration_ms));
    if (o->workload == W_HOTSPOT) {
        json_object_set_new(doc, "attempts", json_integer((json_int_t)n->attempts));
        json_object_set_new(doc, "attempts_per_s", json_real(per_s(n->attempts, b->elapsed_ns)));
        json_object_set_new(doc, "wins", json_integer((json_int_t)n->wins));
    }
    if (o->workload == W_RETRY) {
        json_object_set_new(doc, "resend_percent", json_integer((json_int_t)o->resend_percent));
        json_object_set_new(doc, "resends", json_integer((json_int_t)n->resends));
        json_object_set_new(doc, "resent_commands", json_integer((json_int_t)n->resent_commands));
        json_object_set_new(doc, "resent_from_retry_cache", json_integer((json_int_t)n->resent_cached));
        json_object_set_new(doc, "resend_mismatches", json_integer((json_int_t)n->resend_mismatches));
        json_object_set_new(doc, "resends_unanswered", json_integer((json_int_t)n->resend_unanswered));
        json_object_set_new(json_object_get(doc, "server"), "retries_answered", jopt_int(si->has_retries, si->retries));
    }
    if (o->workload == W_EXPIRY && x != NULL) {
        json_object_set_new(
            doc, "expiry",
            json_pack("{s:I, s:I, s:I, s:I, s:o, s:f, s:o, s:o, s:o}", "sample", (json_int_t)x->sample,
                      "sample_expired", (json_int_t)x->expired, "sample_reserved", (json_int_t)x->reserved,
                      "sample_other", (json_int_t)x->other, "sample_expired_after_s",
                      x->done ? json_real(x->waited_s) : json_null(), "waited_s", x->waited_s,
                      "server_expired_during_run", jopt_int(si->has_expired_run, si->expired_run),
                      "server_backlog_at_end", jopt_int(si->has_backlog, si->backlog), "server_expired",
                      jopt_int(si->has_expired, si->expired)));
    }
    if (n->fresh_cached)
        json_object_set_new(doc, "fresh_from_retry_cache", json_integer((json_int_t)n->fresh_cached));
    struct sustained su;
    sustained_rates(b, &su);
    json_object_set_new(doc, "steady", json_boolean(steady_workload(o->workload)));
    json_object_set_new(doc, "useful", json_integer((json_int_t)n->useful));
    json_object_set_new(doc, "useful_per_s", json_real(su.per_s));
    json_object_set_new(doc, "useful_first_5s_per_s", json_real(su.first_per_s));
    json_object_set_new(doc, "useful_sustained_percent", jopt(su.has_percent, su.percent));
    json_t *full = json_object();
    for (size_t i = 0; i < ADB_ARRAY_LEN(full_codes); i++)
        json_object_set_new(full, sm_result_name((enum sm_result)full_codes[i]),
                            json_integer((json_int_t)n->committed[full_codes[i]]));
    json_object_set_new(doc, "full", full);
    json_object_set_new(doc, "seconds", b->seconds != NULL ? json_incref(b->seconds) : json_array());
    json_t *server = json_object_get(doc, "server"), *memory = json_object();
    double rate = 0;
    bool has_rate = table_rate(si, &rate);
    json_object_set_new(server, "history_window_ms", jopt_int(si->has_history, si->history_ms));
    json_object_set_new(server, "reservation_capacity", jopt_int(si->has_res_capacity, si->res_capacity));
    json_object_set_new(server, "operation_table_sustains_per_s", jopt(has_rate, rate));
    for (size_t i = 0; i < ADB_ARRAY_LEN(mem_roles); i++)
        json_object_set_new(memory, mem_roles[i], jopt_int(si->has_rss[i], si->rss[i]));
    json_object_set_new(server, "rss_bytes", memory);
    if (o->verify_retries) {
        const struct verify *v = &b->v;
        json_t *vj = json_pack("{s:I, s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f}",
                               "requested", (json_int_t)o->verify_retries, "ran", v->ran, "samples",
                               (json_int_t)v->samples, "first_second", (json_int_t)v->early, "exact",
                               (json_int_t)v->exact, "aged_out_new_again", (json_int_t)v->aged_new, "edge_not_judged",
                               (json_int_t)v->edge, "unanswered", (json_int_t)v->unanswered, "mismatches",
                               (json_int_t)v->mismatches, "released", (json_int_t)v->released, "conflict_checks",
                               (json_int_t)v->conflict_checks, "conflicts", (json_int_t)v->conflicts,
                               "conflict_mismatches", (json_int_t)v->conflict_mismatches, "oldest_s", v->oldest_s,
                               "youngest_s", v->youngest_s);
        json_object_set_new(vj, "skipped", v->skipped ? json_string(v->skipped) : json_null());
        json_object_set_new(vj, "first_mismatch", v->first[0] ? json_string(v->first) : json_null());
        json_object_set_new(doc, "verify_retries", vj);
    }
    if (b->exit_code != 0)
        json_object_set_new(doc, "failure", json_string(b->failure));
    json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
    fputc('\n', stdout);
    json_decref(doc);
}

static void print_counts(const char *label, const u64 *v, u32 len, const char *(*name)(u32))
{
    bool any = false;
    for (u32 i = 0; i < len; i++) {
        if (!v[i])
            continue;
        printf("%s%s=%" PRIu64, any ? " " : label, name(i), v[i]);
        any = true;
    }
    if (any)
        printf("\n");
}

static const char *committed_name(u32 i) { return sm_result_name((enum sm_result)i); }
static const char *rejected_name(u32 i) { return allocdb_result_name(ALLOCDB_REJECTED, (u8)i); }
static const char *indefinite_name(u32 i) { return allocdb_result_name(ALLOCDB_INDEFINITE, (u8)i); }
static const char *refused_name(u32 i) { return allocdb_server_error_name((u16)i); }

static void print_human(const struct bench *b, const struct server_info *si, double setup_s,
                        const struct expiry_check *x)
{
    const struct net_opts *o = b->o;
    const struct counts *n = &b->n;
    char v[4][32];
    printf("allocdb-bench net: %s%s against %s\n", workload_names[o->workload],
           o->workload == W_UNIFORM ? " (steady: every reservation is released)"
           : o->workload == W_RETRY ? " (steady, as uniform: every reservation is released)"
                                    : "",
           o->addr);
    printf("  server      max_batch %u, slot %" PRIu64 " ms", b->hello.max_batch, b->hello.slot_duration_ms);
    if (si->has_window)
        printf(", dedupe window %.0f ms", si->window_ms);
    else
        printf(", dedupe window n/a");
    if (si->has_capacity)
        printf(", operation capacity %.0f", si->capacity);
    else
        printf(", operation capacity n/a");
    printf("\n");
    printf("  load        %" PRIu64 " connections x pipeline %" PRIu64 " x batch %" PRIu64 ", ", o->connections,
           o->pipeline, o->batch);
    if (o->rate)
        printf("paced to %" PRIu64 " commands/s", o->rate);
    else
        printf("unpaced");
    printf(", ttl %" PRIu64 " ms, seed %" PRIu64 "\n", o->ttl_ms, o->seed);
    printf("  setup       %" PRIu64 " %s in %.3f s (not measured)\n", b->setup_total,
           b->setup_total == 1 ? "resource" : "resources", setup_s);
    printf("  commands    %" PRIu64 " in %.3f s (%" PRIu64 " requests, %.1f commands each)\n", n->commands,
           (double)b->elapsed_ns / 1e9, n->requests, n->requests ? (double)n->commands / (double)n->requests : 0.0);
    printf("  commands/s  %.0f\n", per_s(n->commands, b->elapsed_ns));
    struct sustained su;
    sustained_rates(b, &su);
    printf("  useful/s    %.0f over the run, %.0f in the first %.0f s", su.per_s, su.first_per_s, su.first_span_s);
    if (su.has_percent)
        printf(": %.1f%% sustained\n", su.percent);
    else
        printf(": n/a sustained\n");
    printf("  full       ");
    for (size_t i = 0; i < ADB_ARRAY_LEN(full_codes); i++)
        printf(" %s=%" PRIu64, sm_result_name((enum sm_result)full_codes[i]), n->committed[full_codes[i]]);
    printf("\n");
    if (o->workload == W_HOTSPOT)
        printf("  attempts/s  %.0f (%" PRIu64 " reserve attempts, %" PRIu64 " wins)\n", per_s(n->attempts, b->elapsed_ns),
               n->attempts, n->wins);
    fmt_ns(v[0], sizeof(v[0]), hist_quantile(b->lat, 0.50));
    fmt_ns(v[1], sizeof(v[1]), hist_quantile(b->lat, 0.99));
    fmt_ns(v[2], sizeof(v[2]), hist_quantile(b->lat, 0.999));
    fmt_ns(v[3], sizeof(v[3]), b->lat->max);
    printf("  latency     p50 %s  p99 %s  p999 %s  max %s (per request)\n", v[0], v[1], v[2], v[3]);
    if (o->rate) {
        fmt_ns(v[0], sizeof(v[0]), hist_quantile(b->lat_sched, 0.50));
        fmt_ns(v[1], sizeof(v[1]), hist_quantile(b->lat_sched, 0.99));
        fmt_ns(v[2], sizeof(v[2]), hist_quantile(b->lat_sched, 0.999));
        fmt_ns(v[3], sizeof(v[3]), b->lat_sched->max);
        printf("  intended    p50 %s  p99 %s  p999 %s  max %s (from the scheduled send)\n", v[0], v[1], v[2], v[3]);
    }
    print_counts("  committed   ", n->committed, SM_RESULT_COUNT, committed_name);
    print_counts("  rejected    ", n->rejected, ADB_ARRAY_LEN(n->rejected), rejected_name);
    print_counts("  indefinite  ", n->indefinite, ADB_ARRAY_LEN(n->indefinite), indefinite_name);
    print_counts("  refused     ", n->refused, ADB_ARRAY_LEN(n->refused), refused_name);
    if (n->cached)
        printf("  cached      %" PRIu64 " from the retry cache\n", n->cached);
    if (o->workload == W_RETRY)
        printf("  resends     %" PRIu64 " submits (%.1f%% of them; --resend-percent %" PRIu64 "), %" PRIu64
               " commands: %" PRIu64 " from the retry cache, %" PRIu64 " mismatches, %" PRIu64 " unanswered\n",
               n->resends, n->requests ? 100.0 * (double)n->resends / (double)n->requests : 0.0, o->resend_percent,
               n->resent_commands, n->resent_cached, n->resend_mismatches, n->resend_unanswered);
    if (n->fresh_cached)
        printf("  warning     %" PRIu64 " fresh commands came from the retry cache (seed reused against this server?)\n",
               n->fresh_cached);
    printf("  server      fsyncs ");
    if (si->has_fsyncs)
        printf("%.0f", si->fsyncs);
    else
        printf("n/a");
    printf(", mean batch ");
    if (si->has_batch)
        printf("%.1f commands", si->mean_batch);
    else
        printf("n/a");
    if (si->has_fsyncs && si->fsyncs > 0)
        printf(", %.0f commands/fsync", (double)n->commands / si->fsyncs);
    if (si->has_ops_used && si->has_capacity)
        printf(", operation table %.0f/%.0f", si->ops_used, si->capacity);
    if (o->workload == W_RETRY) {
        printf(", retries answered ");
        if (si->has_retries)
            printf("%.0f", si->retries);
        else
            printf("n/a");
    }
    printf("\n");
    if (o->workload == W_EXPIRY && x != NULL) {
        printf("  expiry      server expired ");
        if (si->has_expired_run)
            printf("%.0f during the run", si->expired_run);
        else
            printf("n/a during the run");
        if (si->has_backlog)
            printf(" (backlog %.0f at its end)", si->backlog);
        if (si->has_expired)
            printf(", %.0f by the end of the read-back", si->expired);
        printf("\n  sample      %u reservations read back: %u expired, %u still reserved, %u other, %.2f s after the run%s\n",
               x->sample, x->expired, x->reserved, x->other, x->waited_s,
               x->done ? "" : " (gave up waiting)");
    }
    if (o->verify_retries) {
        const struct verify *vr = &b->v;
        if (!vr->ran) {
            printf("  retries     not verified: %s\n", vr->skipped ? vr->skipped : "the run failed first");
        } else {
            printf("  retries     %" PRIu64 " resent (%" PRIu64 " sampled over the run, %" PRIu64
                   " from its first second; ages %.1f-%.1f s; dedupe window %.0f ms): %" PRIu64 " exact, %" PRIu64
                   " aged out (new again), %" PRIu64 " at the edge (not judged), %" PRIu64 " unanswered, %" PRIu64
                   " mismatches",
                   vr->samples, vr->samples - vr->early, vr->early, vr->youngest_s, vr->oldest_s, si->window_ms,
                   vr->exact, vr->aged_new, vr->edge, vr->unanswered, vr->mismatches);
            if (vr->released)
                printf("; %" PRIu64 " re-executed reservations released", vr->released);
            printf("\n  conflicts   %" PRIu64 " changed commands reusing a sampled id: %" PRIu64
                   " operation_conflict, %" PRIu64 " mismatches\n",
                   vr->conflict_checks, vr->conflicts, vr->conflict_mismatches);
        }
    }
    /* Last: what the run's rate costs the server to retain. */
    double rate = 0;
    printf("  retention   dedupe window ");
    if (si->has_window)
        printf("%.0f ms", si->window_ms);
    else
        printf("n/a");
    printf(", history window ");
    if (si->has_history)
        printf("%.0f ms", si->history_ms);
    else
        printf("n/a");
    printf(", operation capacity ");
    if (si->has_capacity)
        printf("%.0f", si->capacity);
    else
        printf("n/a");
    if (table_rate(si, &rate))
        printf(" (sustains %.0f ops/s)", rate);
    printf(", reservation capacity ");
    if (si->has_res_capacity)
        printf("%.0f", si->res_capacity);
    else
        printf("n/a");
    printf("; rss");
    for (size_t i = 0; i < ADB_ARRAY_LEN(mem_roles); i++) {
        printf("%s %s ", i ? "," : "", mem_roles[i]);
        if (si->has_rss[i])
            printf("%.1f MiB", si->rss[i] / 1048576.0);
        else
            printf("n/a");
    }
    printf("\n");
}

/* ---- main -------------------------------------------------------------------------------- */

static int run(struct net_opts *o)
{
    struct bench *b = calloc(1, sizeof(*b));
    int rc = 1;
    if (b == NULL) {
        fprintf(stderr, "allocdb-bench net: out of memory\n");
        return 1;
    }
    b->o = o;
    b->ep = -1;
    b->have_pwait2 = true;
    b->rng = o->seed;
    b->op_rng = o->seed ^ run_nonce();
    b->id_hi = (u128)(splitmix_next(&b->rng) | 1) << 64;
    b->lat = calloc(1, sizeof(struct hist));
    b->lat_tick = calloc(1, sizeof(struct hist));
    b->lat_sched = calloc(1, sizeof(struct hist));
    b->conns = calloc(o->connections, sizeof(*b->conns));
    b->evs = calloc(o->connections, sizeof(*b->evs));
    b->seconds = o->json ? json_array() : NULL;
    b->v_rng = o->seed ^ 0x5645524946595245ull; /* "VERIFYRE" */
    if (o->verify_retries) {
        b->early_cap = o->verify_retries / 10;
        b->vs = calloc((size_t)(o->verify_retries + b->early_cap), sizeof(*b->vs));
    }
    json_t *status = NULL, *before = NULL, *after = NULL, *status_end = NULL;
    struct server_info si;
    struct expiry_check x;
    memset(&si, 0, sizeof(si));
    memset(&x, 0, sizeof(x));
    double setup_s = 0;
    if (!b->lat || !b->lat_tick || !b->lat_sched || !b->conns || !b->evs || (o->json && !b->seconds) ||
        (o->verify_retries && !b->vs)) {
        fprintf(stderr, "allocdb-bench net: out of memory\n");
        goto out;
    }

    b->ctl = handle_new(b, CTL_TIMEOUT_MS);
    if (b->ctl == NULL || !handle_connect(b, b->ctl, ""))
        goto report_failure;
    if (allocdb_server_info(b->ctl, &b->hello) != ALLOCDB_OK) {
        fail(b, 1, "%s", allocdb_last_error(b->ctl));
        goto report_failure;
    }
    if (o->batch > b->hello.max_batch) {
        fprintf(stderr, "allocdb-bench net: --batch %" PRIu64 " is above the server's max_batch %u\n", o->batch,
                b->hello.max_batch);
        rc = EXIT_USAGE;
        goto out;
    }
    status = ctl_json(b, false, false);
    before = ctl_json(b, true, false);
    server_static(status, before, b->hello.slot_duration_ms, &si);

    b->setup_batch = b->hello.max_batch < SETUP_BATCH_MAX ? b->hello.max_batch : SETUP_BATCH_MAX;
    b->slot_cmds = (u32)(o->batch > b->setup_batch ? o->batch : b->setup_batch);
    b->cmds = calloc(b->slot_cmds, sizeof(*b->cmds));
    if (b->cmds == NULL) {
        fail(b, 1, "out of memory");
        goto report_failure;
    }
    b->ep = epoll_create1(EPOLL_CLOEXEC);
    if (b->ep < 0) {
        fail(b, 1, "epoll_create1: %s", strerror(errno));
        goto report_failure;
    }
    for (u32 i = 0; i < o->connections; i++) {
        b->nconn = i + 1;
        if (!conn_init(b, &b->conns[i], i))
            goto report_failure;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sa.sa_flags = (int)SA_RESETHAND; /* a second ^C kills */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    /* Setup: the resources, in pipelined batches; not measured. */
    b->phase = PH_SETUP;
    b->setup_total = o->workload == W_HOTSPOT ? 1 : o->resources;
    u64 t = now_ns();
    run_phase(b);
    setup_s = (double)(now_ns() - t) / 1e9;
    if (b->exit_code != 0)
        goto report_failure;

    json_decref(before);
    ctl_reopen(b);
    before = ctl_json(b, true, true);
    b->phase = PH_RUN;
    hist_reset(b->lat);
    run_phase(b);
    if (b->exit_code != 0)
        goto report_failure;
    ctl_reopen(b);
    after = ctl_json(b, true, true);
    status_end = ctl_json(b, false, true);
    server_delta(before, after, &si);
    server_end(status_end ? status_end : status, after, b->hello.slot_duration_ms, &si);

    /* Retry verification: before the cleanup, so the sample's follow-ups are still pending. */
    if (o->verify_retries) {
        verify_run(b, &si);
        if (b->exit_code != 0)
            goto report_failure;
    }

    /* Cleanup: release what the run still holds, so the next run starts from a quiet pool. */
    b->phase = PH_CLEANUP;
    run_phase(b);
    if (b->exit_code != 0)
        goto report_failure;

    if (o->workload == W_EXPIRY && allocdb_is_connected(b->ctl)) {
        check_expiry(b, &x);
        json_t *later = ctl_json(b, true, true);
        si.has_expired = delta(before, later, "applier.commands.expire", &si.expired);
        json_decref(later);
    }
    if (o->workload == W_RETRY && b->n.resend_mismatches)
        fail(b, 1, "%" PRIu64 " resent commands were not answered from the retry cache; first: %s",
             b->n.resend_mismatches, b->mismatch);
    if (b->v.mismatches + b->v.conflict_mismatches)
        fail(b, 1,
             "retry verification: %" PRIu64 " mismatches (%" PRIu64 " resends, %" PRIu64 " conflict checks); first: %s",
             b->v.mismatches + b->v.conflict_mismatches, b->v.mismatches, b->v.conflict_mismatches, b->v.first);
    if (o->json)
        print_json(b, &si, setup_s, o->workload == W_EXPIRY ? &x : NULL);
    else
        print_human(b, &si, setup_s, o->workload == W_EXPIRY ? &x : NULL);
    if (b->exit_code != 0)
        fprintf(stderr, "allocdb-bench net: %s\n", b->failure);
    rc = b->exit_code;
    goto out;

report_failure:
    fprintf(stderr, "allocdb-bench net: %s\n", b->failure);
    rc = b->exit_code ? b->exit_code : 1;
out:
    json_decref(status);
    json_decref(before);
    json_decref(after);
    json_decref(status_end);
    json_decref(b->seconds);
    free(b->vs);
    allocdb_free(b->ctl);
    for (u32 i = 0; i < b->nconn; i++)
        conn_free(&b->conns[i]);
    if (b->ep >= 0)
        close(b->ep);
    free(b->conns);
    free(b->evs);
    free(b->cmds);
    free(b->lat);
    free(b->lat_tick);
    free(b->lat_sched);
    free(b);
    return rc;
}

int bench_net_main(int argc, char **argv)
{
    struct net_opts o = {
        .addr = "127.0.0.1:7400",
        .workload = W_UNIFORM,
        .connections = 32,
        .pipeline = 4,
        .batch = 64,
        .resources = 100000,
        .resend_percent = 10,
    };
    bool ttl_given = false, duration_given = false;
    enum {
        O_ADDR = 256, O_WL, O_CONN, O_PIPE, O_BATCH, O_DUR, O_CMDS, O_RATE, O_TTL, O_RES, O_RESEND, O_SEED, O_JSON,
        O_VERIFY
    };
    static const struct option longopts[] = {
        { "addr", required_argument, NULL, O_ADDR },
        { "workload", required_argument, NULL, O_WL },
        { "connections", required_argument, NULL, O_CONN },
        { "pipeline", required_argument, NULL, O_PIPE },
        { "batch", required_argument, NULL, O_BATCH },
        { "duration", required_argument, NULL, O_DUR },
        { "commands", required_argument, NULL, O_CMDS },
        { "rate", required_argument, NULL, O_RATE },
        { "ttl", required_argument, NULL, O_TTL },
        { "resources", required_argument, NULL, O_RES },
        { "resend-percent", required_argument, NULL, O_RESEND },
        { "verify-retries", required_argument, NULL, O_VERIFY },
        { "seed", required_argument, NULL, O_SEED },
        { "json", no_argument, NULL, O_JSON },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int ch;
    bool ok = true;
    optind = 1;
    while (ok && (ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (ch) {
        case O_ADDR: o.addr = optarg; break;
        case O_WL: {
            size_t i;
            for (i = 0; i < ADB_ARRAY_LEN(workload_names); i++)
                if (strcmp(optarg, workload_names[i]) == 0)
                    break;
            if (i == ADB_ARRAY_LEN(workload_names)) {
                fprintf(stderr, "allocdb-bench: --workload expects hotspot, uniform, retry-storm or expiry, got '%s'\n",
                        optarg);
                ok = false;
            }
            o.workload = (enum workload)i;
            break;
        }
        case O_CONN: ok = bench_parse_u64("--connections", optarg, 1, CONNECTIONS_MAX, &o.connections); break;
        case O_PIPE: ok = bench_parse_u64("--pipeline", optarg, 1, PIPELINE_MAX, &o.pipeline); break;
        case O_BATCH: ok = bench_parse_u64("--batch", optarg, 1, PROTO_BATCH_MAX, &o.batch); break;
        case O_DUR:
            ok = bench_parse_duration("--duration", optarg, 1, &o.duration_ms);
            duration_given = true;
            break;
        case O_CMDS: ok = bench_parse_u64("--commands", optarg, 1, UINT64_MAX / 2, &o.commands); break;
        case O_RATE: ok = bench_parse_u64("--rate", optarg, 1, 1000000000, &o.rate); break;
        case O_TTL:
            ok = bench_parse_duration("--ttl", optarg, 1, &o.ttl_ms);
            ttl_given = true;
            break;
        case O_RES: ok = bench_parse_u64("--resources", optarg, 1, SM_CAPACITY_MAX, &o.resources); break;
        case O_RESEND: ok = bench_parse_u64("--resend-percent", optarg, 0, 100, &o.resend_percent); break;
        case O_VERIFY: ok = bench_parse_u64("--verify-retries", optarg, 0, VERIFY_MAX, &o.verify_retries); break;
        case O_SEED:
            ok = bench_parse_u64("--seed", optarg, 0, INT64_MAX, &o.seed);
            o.seed_given = true;
            break;
        case O_JSON: o.json = true; break;
        case 'h': bench_net_usage(stdout); return 0;
        default: ok = false; break;
        }
    }
    if (ok && optind < argc) {
        fprintf(stderr, "allocdb-bench net: unexpected argument '%s'\n", argv[optind]);
        ok = false;
    }
    if (ok && duration_given && o.commands) {
        fprintf(stderr, "allocdb-bench net: give --duration or --commands, not both\n");
        ok = false;
    }
    if (ok)
        ok = parse_addr(&o);
    if (!ok) {
        fprintf(stderr, "Try 'allocdb-bench net --help'.\n");
        return EXIT_USAGE;
    }
    if (!duration_given && !o.commands)
        o.duration_ms = 10000;
    if (!ttl_given)
        o.ttl_ms = o.workload == W_EXPIRY ? 200 : 30000;
    if (!o.seed_given)
        o.seed = run_nonce() & 0xffffffffffffull; /* short enough to retype */
    return run(&o);
}
