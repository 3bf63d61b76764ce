/*
 * tests/crash_load.c — the checking load client of the crash tests (tests/crash_workers.sh,
 * tests/crash_stress.sh). It drives allocdbd through liballocdb, so the library's framing,
 * pipelining and retries are part of what is tested, while the daemon's workers are killed.
 *
 *   crash_load --addr HOST:PORT [--threads N] [--tasks K] [--resources H] [--batch B]
 *              [--duration-ms D] [--ttl-ms MIN:MAX] [--busy-ms MS] [--expire-pct P] [--seed S]
 *              [--deadline-s S] [--window-ms W] [--stamp-slack-ms MS] [--record FILE]
 *              [--inject-bug double|early|dup|stale]
 *   crash_load --addr HOST:PORT --probe [--since-ns NS] [--deadline-s S]
 *
 * LOAD. H hot resources are created, then N threads (one connection each) run K tasks each
 * that race for them: reserve a random hot resource with a random TTL (--ttl-ms, short enough
 * that expirations happen all the time, also during kills); most reserves answer resource_busy.
 * A winner either confirms (and later releases) or releases at a random moment up to 1.4 TTL
 * after its reserve, racing the expiry, or (--expire-pct of them, 25 by default) lets the
 * reservation expire while reading it. A few
 * tasks create fresh resources. Odd threads pipeline: several submit frames of several commands
 * and reads in flight at once (allocdb_send_submit / allocdb_poll), resending what comes back
 * lost or indefinite themselves. Even threads send batches with allocdb_submit, whose own retry
 * loop resolves indefinite outcomes, calling it again while it still returns indefinite. Now and
 * then a command is sent twice at once (a client retrying while its first attempt is still in
 * flight). Every resend of a command uses the same operation id and client id. The load stops at
 * SIGUSR1 or after --duration-ms; open commands are then resolved, until --deadline-s.
 *
 * RECORD. For every command: when it was first sent and when its first committed answer
 * arrived (CLOCK_BOOTTIME), every committed answer (result, applied_lsn, reservation id,
 * deadline slot), attempts and indefinite outcomes; for every read: when it was answered, the
 * server's applied LSN and the state seen. --record FILE writes it all out after the checks, one
 * line per command, grant (with its read-back) and read, times in ns since the start.
 *
 * CHECKS (each violation prints "crash_load: FAIL <check>: ..."; exit 1 if any):
 *   dup     every committed answer to an operation id is the same; after the load every
 *           command is submitted again with its operation id and must come back
 *           from_retry_cache with the original result; distinct commands have distinct LSNs;
 *           a create never answers already_exists; every reservation id is its reserve's LSN
 *           (shard 0) and unique; no reservation of one of our resources exists that no
 *           acknowledged reserve created (every LSN of the run that is not one of our commands
 *           is read as a reservation id, up to the server's applied LSN after the resubmission);
 *           a resource's version counts exactly the transitions
 *           our acknowledged commands and the expirations explain.
 *   double  every granted reservation is read back (fenced at the last LSN; reads during the
 *           load are fenced at the reservation's own LSN): resource, holder,
 *           created_lsn and deadline as granted; per resource the [created_lsn, released_lsn)
 *           intervals of its reservations are disjoint; every resource_busy answer falls inside
 *           one of them; the resource's final state and current reservation are those of its
 *           last, still active reservation (resource and reservations read in a sandwich of two
 *           resource reads with equal versions, so the picture is consistent); released means
 *           our release, at its LSN; confirmed means our confirm, and never expires; a confirm
 *           or release answered invalid_state means the reservation had expired before it.
 *   early   a reservation is expired by an internal entry at LSN E, stamped after every LSN
 *           below it; every answer the client received that carries an LSN >= E (a committed
 *           command with applied_lsn > E, a read whose applied_lsn >= E — which includes every
 *           read that saw it expired and every confirm/release answered invalid_state) came
 *           after E was stamped. So if any of them arrived before reserve-first-sent + TTL, the
 *           reservation expired early in real time. Sound whatever the retries: first-sent is
 *           no later than the reserve's execution, an answer no earlier than its entry.
 *   stamp   the mechanism of an early expiry, caught even when no answer shows it: within a boot
 *           the server's slots follow the boot clock plus a constant (wal/slot_clock.h; the client
 *           reads CLOCK_BOOTTIME too), and a reserve is stamped while in flight, at slot deadline
 *           - ceil(ttl / slot); so every granted reserve bounds that constant from both sides and
 *           the bounds must overlap (1 ms allowed for the server's whole milliseconds). A reserve
 *           stamped with a slot that had already ended counts its TTL from the past. Against a
 *           cluster, --stamp-slack-ms allows the stamps to lag by up to MS: cluster time is a
 *           quorum's lowest agreeing clock, behind any one replica's by up to the clock
 *           tolerance (expirations wait that much more: the early check stays exact).
 *   A hidden --inject-bug corrupts the client's own bookkeeping before the matching check
 *   (double: one reservation held past the next grant; early: one expired reservation's
 *   reserve sent a TTL later than it was; dup: one command resubmitted with a new operation id,
 *   a real second execution; stale: one granted reserve recorded as sent 200 ms later), so the
 *   test can prove each check fails.
 *   The run must end within --window-ms (the server's dedupe and history windows): after that
 *   records retire and the checks would not be sound, so that is a failure too.
 *
 * PROBE. --probe sends one create_resource (single attempts with the same operation id, every
 * 5 ms) until it commits, and prints the milliseconds it took: since --since-ns (CLOCK_REALTIME
 * nanoseconds, e.g. `date +%s%N` taken before a kill), or since the probe started.
 *
 * Prints a summary line "crash_load: key=value ..." and exits 0 if every check held, 1 on a
 * violation, 2 on usage errors.
 */
#include "net/allocdb.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

typedef allocdb_u128 id128;

#define BATCH_MAX 64
#define WINDOW 64
#define MS ((int64_t)1000000)
#define SEC (1000 * MS)

/* ---- settings and small helpers -------------------------------------------------------------- */

enum { INJECT_NONE, INJECT_DOUBLE, INJECT_EARLY, INJECT_DUP, INJECT_STALE };

static struct {
    char addr[300];
    unsigned threads, tasks, resources, batch;
    int64_t duration, deadline_span, window;
    uint64_t ttl_min, ttl_max, busy_ms, expire_pct;
    uint64_t seed;
    int64_t stamp_slack; /* a cluster stamps with cluster time, behind a replica's own clock */
    int inject;
} cfg = {
    .addr = "127.0.0.1:7400",
    .threads = 8,
    .tasks = 6,
    .resources = 8,
    .batch = 16,
    .duration = 3 * SEC,
    .deadline_span = 120 * SEC,
    .window = 600 * SEC,
    .ttl_min = 40,
    .ttl_max = 400,
    .busy_ms = 20,
    .expire_pct = 25,
    .seed = 1,
};

static int64_t t_start, t_deadline;
static uint64_t slot_ms; /* the server's slot duration (hello), 0 if unknown */
static atomic_bool stop_load;

/* Client time: CLOCK_BOOTTIME, the clock the daemon's slots follow (DESIGN.md §3): monotonic,
 * and it counts a suspend, which CLOCK_MONOTONIC would not (a TTL that ran out while the
 * machine slept would then look early). */
static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_BOOTTIME, &ts);
    return (int64_t)ts.tv_sec * SEC + ts.tv_nsec;
}

static int64_t real_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * SEC + ts.tv_nsec;
}

static void sleep_ns(int64_t ns)
{
    if (ns <= 0)
        return;
    struct timespec ts = { .tv_sec = ns / SEC, .tv_nsec = ns % SEC };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [lo, hi]. */
static uint64_t urand(uint64_t *s, uint64_t lo, uint64_t hi)
{
    return hi <= lo ? lo : lo + splitmix(s) % (hi - lo + 1);
}

static uint64_t random_seed(void)
{
    uint64_t v = 0;
    if (getrandom(&v, sizeof v, 0) != (ssize_t)sizeof v)
        v = (uint64_t)real_ns() ^ ((uint64_t)getpid() << 32);
    return v;
}

/* A fresh 128-bit id, never 0 (ids must not repeat across runs against one daemon). */
static id128 new_id(uint64_t *s)
{
    return ALLOCDB_U128(splitmix(s), splitmix(s) | 1);
}

static const char *fmt_id(id128 v, char buf[ALLOCDB_U128_STRLEN])
{
    return allocdb_u128_format(v, buf);
}

static double ms_of(int64_t ns)
{
    return (double)ns / (double)MS;
}

/* A vector of fixed-size elements; elements are addressed by index (push may move them). */
struct vec {
    char *p;
    size_t n, cap, size;
};

static void *vec_push(struct vec *v)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 256;
        char *p = realloc(v->p, cap * v->size);
        if (p == NULL) {
            fprintf(stderr, "crash_load: out of memory\n");
            exit(2);
        }
        v->p = p;
        v->cap = cap;
    }
    void *e = v->p + v->n * v->size;
    memset(e, 0, v->size);
    v->n++;
    return e;
}

static void *vec_at(const struct vec *v, size_t i)
{
    return v->p + i * v->size;
}

/* ---- violations ------------------------------------------------------------------------------ */

static pthread_mutex_t violation_mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned violations;
static unsigned violations_by[5];
static const char *const check_names[5] = { "dup", "double", "early", "stamp", "other" };
enum { C_DUP, C_DOUBLE, C_EARLY, C_STAMP, C_OTHER };

__attribute__((format(printf, 2, 3))) static void violation(int check, const char *fmt, ...)
{
    pthread_mutex_lock(&violation_mu);
    violations++;
    violations_by[check]++;
    if (violations_by[check] <= 10) {
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, "crash_load: FAIL %s: ", check_names[check]);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
    }
    pthread_mutex_unlock(&violation_mu);
}

/* ---- what the client saw --------------------------------------------------------------------- */

struct op {
    id128 id, target, holder, resource;
    id128 rid;         /* committed: the answer's reservation id */
    uint64_t ttl_ms;
    uint64_t lsn;      /* committed: applied_lsn */
    uint64_t deadline; /* committed: deadline_slot */
    int64_t t_inv;     /* first sent (0 = never) */
    int64_t t_done;    /* first committed answer received */
    int64_t retry_at;
    uint32_t attempts, indefinite, answers, backoff_ms;
    int32_t grant; /* confirm/release: the grant acted on; reserve ok: the grant made */
    int32_t task;  /* the task that waits for it, or -1 */
    uint16_t client;
    uint8_t kind, code;
    uint8_t inflight;
    bool done, from_cache, failed;
};

struct grant {
    id128 rid, resource, holder;
    uint64_t ttl_ms, lsn, deadline;
    int64_t t_inv;
    int64_t expired_seen; /* first time the run saw it expired (0 = never) */
    int32_t reserve_op, confirm_op, release_op, invalid_op;
    bool confirmed, released;
    struct allocdb_reservation back; /* read back after the load */
};

struct obs { /* a read answered during the load */
    int64_t t_resp;
    uint64_t applied_lsn;
    int32_t grant;
    uint8_t state;
};

enum { T_IDLE, T_OP, T_HOLD, T_CONFIRMED, T_READ, T_DONE };
enum { P_CONFIRM, P_RELEASE, P_EXPIRE };

struct task {
    id128 holder;
    int state, plan, reads_left;
    int64_t wake;
    int32_t op, grant;
};

struct req {
    uint64_t rid;
    int32_t task; /* a read: the task; a submit: -1 */
    uint32_t n;
    int32_t ops[BATCH_MAX];
};

struct worker {
    pthread_t th;
    unsigned index; /* client index (0 = the main thread's setup commands) */
    bool async;
    allocdb_client *c;
    uint64_t rng, idrng;
    struct task *tasks;
    struct vec ops, grants, reads;
    struct req reqs[WINDOW];
    unsigned nreqs;
    uint64_t frames, reads_failed, dups_sent, unreachable;
};

static id128 *client_ids; /* by client index */
static id128 *hot;        /* the hot resources */

#define OP(w, i) ((struct op *)vec_at(&(w)->ops, (size_t)(i)))
#define GRANT(w, i) ((struct grant *)vec_at(&(w)->grants, (size_t)(i)))

static const char *kind_name(uint8_t k)
{
    switch (k) {
    case ALLOCDB_CREATE_RESOURCE: return "create_resource";
    case ALLOCDB_RESERVE: return "reserve";
    case ALLOCDB_CONFIRM: return "confirm";
    case ALLOCDB_RELEASE: return "release";
    default: return "?";
    }
}

static int32_t new_op(struct worker *w, uint8_t kind, id128 target, id128 holder, id128 resource,
                      uint64_t ttl_ms, int32_t grant, int32_t task)
{
    struct op *o = vec_push(&w->ops);
    o->id = new_id(&w->idrng);
    o->kind = kind;
    o->target = target;
    o->holder = holder;
    o->resource = resource;
    o->ttl_ms = ttl_ms;
    o->grant = grant;
    o->task = task;
    o->client = (uint16_t)w->index;
    o->backoff_ms = 10;
    return (int32_t)(w->ops.n - 1);
}

static void op_command(const struct op *o, struct allocdb_command *c)
{
    *c = (struct allocdb_command){ .kind = o->kind, .operation_id = o->id, .target = o->target,
                                   .holder_id = o->holder, .ttl_ms = o->ttl_ms };
}

static bool same_answer(const struct op *o, const struct allocdb_result *r)
{
    return r->outcome == ALLOCDB_COMMITTED && r->code == o->code && r->applied_lsn == o->lsn &&
           r->reservation_id == o->rid && r->deadline_slot == o->deadline;
}

static void report_answer_mismatch(const struct op *o, const struct allocdb_result *r, const char *when)
{
    char a[ALLOCDB_U128_STRLEN], b[ALLOCDB_U128_STRLEN], d[ALLOCDB_U128_STRLEN];
    violation(C_DUP,
              "%s of %s op %s (client %u) answered %s/%s lsn %" PRIu64 " reservation %s deadline %" PRIu64
              " from_retry_cache=%d, but it had committed as %s lsn %" PRIu64 " reservation %s deadline %" PRIu64
              " (executed twice?)",
              when, kind_name(o->kind), fmt_id(o->id, a), o->client, allocdb_outcome_name(r->outcome),
              allocdb_result_name(r->outcome, r->code), r->applied_lsn, fmt_id(r->reservation_id, b),
              r->deadline_slot, r->from_retry_cache, allocdb_result_name(ALLOCDB_COMMITTED, o->code), o->lsn,
              fmt_id(o->rid, d), o->deadline);
}

static void task_committed(struct worker *w, int32_t ti, int32_t oi, int64_t now);

/* Retryable rejections: certainly not executed, so sending the same command again is safe. */
static bool retryable_reject(uint8_t code)
{
    return code == ALLOCDB_REJECT_OVERLOADED || code == ALLOCDB_REJECT_REFUSED ||
           code == ALLOCDB_REJECT_NOT_PRIMARY;
}

static void schedule_retry(struct op *o, struct worker *w, int64_t now)
{
    uint32_t b = o->backoff_ms;
    o->retry_at = now + (int64_t)urand(&w->rng, b / 2, b) * MS;
    o->backoff_ms = b * 2 > 200 ? 200 : b * 2;
}

/* One answer to one command (an attempt was in flight). */
static void op_answer(struct worker *w, int32_t oi, const struct allocdb_result *r, int64_t now)
{
    struct op *o = OP(w, oi);
    if (o->inflight > 0)
        o->inflight--;
    if (r->outcome == ALLOCDB_COMMITTED) {
        o->answers++;
        if (o->done) {
            if (!same_answer(o, r))
                report_answer_mismatch(o, r, "a second answer");
            return;
        }
        o->done = true;
        o->code = r->code;
        o->lsn = r->applied_lsn;
        o->rid = r->reservation_id;
        o->deadline = r->deadline_slot;
        o->from_cache = r->from_retry_cache;
        o->t_done = now;
        if (o->task >= 0 && w->tasks[o->task].op == oi)
            task_committed(w, o->task, oi, now);
        return;
    }
    if (r->outcome == ALLOCDB_INDEFINITE) {
        if (r->code != ALLOCDB_INDEFINITE_UNREACHABLE)
            o->indefinite++;
        else
            w->unreachable++;
    } else if (!retryable_reject(r->code)) {
        char a[ALLOCDB_U128_STRLEN];
        violation(C_OTHER, "%s op %s rejected: %s", kind_name(o->kind), fmt_id(o->id, a),
                  allocdb_result_name(r->outcome, r->code));
        if (!o->done && o->inflight == 0) {
            o->failed = true;
            if (o->task >= 0 && w->tasks[o->task].op == oi)
                w->tasks[o->task].state = T_DONE;
        }
        return;
    }
    if (!o->done && o->inflight == 0)
        schedule_retry(o, w, now);
}

static void note_expired(struct grant *g, int64_t t)
{
    if (g->expired_seen == 0 || t < g->expired_seen)
        g->expired_seen = t;
}

/* Idle for a random while, until a point of a 4 ms grid: tasks of a thread that wake together
 * send their commands in one batch. */
static void task_idle(struct worker *w, struct task *t, int64_t now, uint64_t max_ms)
{
    const int64_t grid = 4 * MS;
    int64_t wake = now + (int64_t)urand(&w->rng, 0, max_ms * 1000) * 1000 - t_start;
    t->state = T_IDLE;
    t->op = -1;
    t->wake = t_start + (wake + grid - 1) / grid * grid;
}

/* The first committed answer to the command a task waited for: the task moves on. */
static void task_committed(struct worker *w, int32_t ti, int32_t oi, int64_t now)
{
    struct task *t = &w->tasks[ti];
    struct op *o = OP(w, oi);
    char a[ALLOCDB_U128_STRLEN];
    switch (o->kind) {
    case ALLOCDB_CREATE_RESOURCE:
        if (o->code == ALLOCDB_RESULT_ALREADY_EXISTS)
            violation(C_DUP, "create_resource op %s of a fresh resource answered already_exists (executed twice?)",
                      fmt_id(o->id, a));
        else if (o->code != ALLOCDB_RESULT_OK)
            violation(C_OTHER, "create_resource op %s answered %s (a test configuration problem?)", fmt_id(o->id, a),
                      allocdb_result_name(ALLOCDB_COMMITTED, o->code));
        task_idle(w, t, now, 5);
        return;
    case ALLOCDB_RESERVE:
        if (o->code == ALLOCDB_RESULT_OK) {
            struct grant *g = vec_push(&w->grants);
            int32_t gi = (int32_t)(w->grants.n - 1);
            o = OP(w, oi);
            o->grant = gi;
            g->rid = o->rid;
            g->resource = o->target;
            g->holder = o->holder;
            g->ttl_ms = o->ttl_ms;
            g->lsn = o->lsn;
            g->deadline = o->deadline;
            g->t_inv = o->t_inv;
            g->reserve_op = oi;
            g->confirm_op = g->release_op = g->invalid_op = -1;
            t->grant = gi;
            t->op = -1;
            t->state = T_HOLD;
            uint64_t p = urand(&w->rng, 0, 99), keep = 100 - cfg.expire_pct;
            t->plan = p < cfg.expire_pct ? P_EXPIRE : p < cfg.expire_pct + keep * 8 / 15 ? P_CONFIRM : P_RELEASE;
            /* Confirm or release anywhere up to 1.4 TTL after the reserve was sent (racing the
             * expiry); a reservation left to expire is first read between 0.5 and 1.6 TTL. */
            uint64_t ttl_us = o->ttl_ms * 1000;
            uint64_t at_us = t->plan == P_EXPIRE ? urand(&w->rng, ttl_us / 2, ttl_us * 16 / 10)
                                                 : urand(&w->rng, 0, ttl_us * 14 / 10);
            t->wake = o->t_inv + (int64_t)at_us * 1000;
            t->reads_left = 4;
            return;
        }
        if (o->code != ALLOCDB_RESULT_RESOURCE_BUSY)
            violation(C_OTHER, "reserve op %s answered %s (a test configuration problem?)", fmt_id(o->id, a),
                      allocdb_result_name(ALLOCDB_COMMITTED, o->code));
        task_idle(w, t, now, cfg.busy_ms);
        return;
    case ALLOCDB_CONFIRM:
    case ALLOCDB_RELEASE: {
        struct grant *g = GRANT(w, o->grant);
        if (o->code == ALLOCDB_RESULT_OK) {
            if (o->kind == ALLOCDB_CONFIRM) {
                g->confirmed = true;
                g->confirm_op = oi;
                t->state = T_CONFIRMED;
                t->op = -1;
                t->wake = now + (int64_t)urand(&w->rng, 0, 30000) * 1000;
                return;
            }
            g->released = true;
            g->release_op = oi;
        } else if (o->code == ALLOCDB_RESULT_INVALID_STATE) {
            g->invalid_op = oi; /* it must have expired before this command: checked at the end */
            note_expired(g, o->t_done);
        } else {
            violation(C_OTHER, "%s op %s answered %s", kind_name(o->kind), fmt_id(o->id, a),
                      allocdb_result_name(ALLOCDB_COMMITTED, o->code));
        }
        task_idle(w, t, now, 5);
        return;
    }
    default:
        return;
    }
}

/* A read of a task's own reservation (fenced at its reserve's LSN, so it cannot miss it) was
 * answered at `when` (r NULL: it failed). */
static void task_read(struct worker *w, int32_t ti, const struct allocdb_reservation *r, int64_t when)
{
    struct task *t = &w->tasks[ti];
    struct grant *g = GRANT(w, t->grant);
    if (r == NULL || r->read == ALLOCDB_READ_FENCE_NOT_APPLIED) {
        w->reads_failed++;
    } else {
        struct obs *ob = vec_push(&w->reads);
        ob->t_resp = when;
        ob->applied_lsn = r->applied_lsn;
        ob->grant = t->grant;
        ob->state = r->state;
        char a[ALLOCDB_U128_STRLEN];
        if (r->read != ALLOCDB_READ_FOUND) {
            violation(C_DOUBLE, "reservation %s read as %s while its holder still held it", fmt_id(g->rid, a),
                      allocdb_read_name(r->read));
        } else if (r->state == ALLOCDB_RESERVATION_EXPIRED) {
            note_expired(g, when);
            task_idle(w, t, when, 5);
            return;
        } else if (r->state != ALLOCDB_RESERVATION_RESERVED) {
            violation(C_DOUBLE, "reservation %s read as %s, but its holder never confirmed or released it",
                      fmt_id(g->rid, a), allocdb_reservation_state_name(r->state));
        }
    }
    if (--t->reads_left <= 0) {
        task_idle(w, t, when, 5);
        return;
    }
    t->state = T_HOLD;
    t->wake = when + (int64_t)urand(&w->rng, 1000, g->ttl_ms * 1000 / 3 + 1000) * 1000;
}

enum act { A_NONE, A_OP, A_READ };

/* What a task wants to send now: an op (new or a retry, in *oi), a read, or nothing. */
static enum act task_due(struct worker *w, int32_t ti, int64_t now, bool stopping, int64_t *next, int32_t *oi)
{
    struct task *t = &w->tasks[ti];
    if (t->state == T_DONE || t->state == T_READ)
        return A_NONE;
    if (t->state == T_OP) {
        struct op *o = OP(w, t->op);
        if (o->inflight > 0)
            return A_NONE;
        if (now >= o->retry_at) {
            *oi = t->op;
            return A_OP;
        }
        if (o->retry_at < *next)
            *next = o->retry_at;
        return A_NONE;
    }
    if (stopping) {
        t->state = T_DONE; /* a held reservation is left to expire, a confirmed one stays */
        return A_NONE;
    }
    if (now < t->wake) {
        if (t->wake < *next)
            *next = t->wake;
        return A_NONE;
    }
    switch (t->state) {
    case T_IDLE:
        if (urand(&w->rng, 0, 99) < 3) {
            id128 r = new_id(&w->idrng);
            t->op = new_op(w, ALLOCDB_CREATE_RESOURCE, r, 0, r, 0, -1, ti);
        } else {
            id128 r = hot[urand(&w->rng, 0, cfg.resources - 1)];
            t->op = new_op(w, ALLOCDB_RESERVE, r, t->holder, r, urand(&w->rng, cfg.ttl_min, cfg.ttl_max), -1, ti);
        }
        break;
    case T_HOLD: {
        struct grant *g = GRANT(w, t->grant);
        if (t->plan == P_EXPIRE) {
            t->state = T_READ;
            return A_READ;
        }
        t->op = new_op(w, t->plan == P_CONFIRM ? ALLOCDB_CONFIRM : ALLOCDB_RELEASE, g->rid, g->holder, g->resource,
                       0, t->grant, ti);
        break;
    }
    case T_CONFIRMED: {
        struct grant *g = GRANT(w, t->grant);
        t->op = new_op(w, ALLOCDB_RELEASE, g->rid, g->holder, g->resource, 0, t->grant, ti);
        break;
    }
    default:
        return A_NONE;
    }
    t->state = T_OP;
    *oi = t->op;
    return A_OP;
}

/* ---- the pipelined worker -------------------------------------------------------------------- */

static struct req *req_find(struct worker *w, uint64_t rid)
{
    for (unsigned i = 0; i < w->nreqs; i++)
        if (w->reqs[i].rid == rid)
            return &w->reqs[i];
    return NULL;
}

static void req_drop(struct worker *w, struct req *r)
{
    *r = w->reqs[--w->nreqs];
}

/* Sends ops[0..n) as one submit frame. Nothing sent: each is retried later. */
static void async_send(struct worker *w, const int32_t *ops, uint32_t n)
{
    struct allocdb_command cmds[BATCH_MAX];
    for (uint32_t i = 0; i < n; i++)
        op_command(OP(w, ops[i]), &cmds[i]);
    int64_t t = now_ns(); /* before the send: no later than any execution */
    uint64_t rid = 0;
    int rc = w->nreqs < WINDOW ? allocdb_send_submit(w->c, cmds, n, &rid) : ALLOCDB_ERR_WINDOW_FULL;
    if (rc != ALLOCDB_OK) {
        if (rc != ALLOCDB_ERR_UNREACHABLE && rc != ALLOCDB_ERR_CONNECTION && rc != ALLOCDB_ERR_WINDOW_FULL)
            violation(C_OTHER, "allocdb_send_submit: %s: %s", allocdb_strerror(rc), allocdb_last_error(w->c));
        for (uint32_t i = 0; i < n; i++) {
            struct op *o = OP(w, ops[i]);
            if (o->inflight == 0 && !o->done)
                o->retry_at = t + 20 * MS;
        }
        return;
    }
    w->frames++;
    struct req *r = &w->reqs[w->nreqs++];
    r->rid = rid;
    r->task = -1;
    r->n = n;
    for (uint32_t i = 0; i < n; i++) {
        struct op *o = OP(w, ops[i]);
        r->ops[i] = ops[i];
        o->inflight++;
        o->attempts++;
        if (o->t_inv == 0)
            o->t_inv = t;
    }
}

static void async_reply(struct worker *w, const struct allocdb_reply *rep, int64_t now)
{
    struct req *r = req_find(w, rep->request_id);
    if (r == NULL) {
        violation(C_OTHER, "a reply to request %" PRIu64 " that is not in flight", rep->request_id);
        return;
    }
    if (r->task >= 0) {
        int32_t ti = r->task;
        req_drop(w, r);
        task_read(w, ti, rep->kind == ALLOCDB_REPLY_RESERVATION ? &rep->u.reservation : NULL, now);
        return;
    }
    struct req copy = *r;
    req_drop(w, r);
    if (rep->count != copy.n) {
        violation(C_OTHER, "a reply with %u results to a submit of %u", rep->count, copy.n);
        return;
    }
    for (uint32_t j = 0; j < copy.n; j++) {
        struct allocdb_result res;
        if (allocdb_reply_result(rep, j, &res) != ALLOCDB_OK) {
            res = (struct allocdb_result){ .outcome = ALLOCDB_INDEFINITE,
                                           .code = ALLOCDB_INDEFINITE_CONNECTION_LOST };
            violation(C_OTHER, "allocdb_reply_result failed");
        }
        op_answer(w, copy.ops[j], &res, now);
    }
}

static bool worker_idle(struct worker *w)
{
    for (unsigned i = 0; i < cfg.tasks; i++)
        if (w->tasks[i].state != T_DONE)
            return false;
    return true;
}

static void worker_deadline(struct worker *w)
{
    for (size_t i = 0; i < w->ops.n; i++) {
        struct op *o = OP(w, i);
        if (!o->done && !o->failed) {
            char a[ALLOCDB_U128_STRLEN];
            violation(C_OTHER, "%s op %s (client %u) never committed by the deadline: %u attempts, %u indefinite",
                      kind_name(o->kind), fmt_id(o->id, a), o->client, o->attempts, o->indefinite);
            o->failed = true;
        }
    }
}

static void run_async(struct worker *w)
{
    int32_t batch[BATCH_MAX];
    for (;;) {
        int64_t now = now_ns();
        bool stopping = atomic_load(&stop_load) || now - t_start >= cfg.duration;
        if (now > t_deadline) {
            worker_deadline(w);
            return;
        }
        if (stopping && worker_idle(w) && w->nreqs == 0)
            return;
        int64_t next = now + 5 * MS;
        uint32_t n = 0, ndup = 0;
        int32_t dup[BATCH_MAX];
        for (unsigned ti = 0; ti < cfg.tasks; ti++) {
            int32_t oi = -1;
            enum act a = task_due(w, (int32_t)ti, now, stopping, &next, &oi);
            if (a == A_READ) {
                struct task *t = &w->tasks[ti];
                uint64_t rid = 0;
                const struct grant *g = GRANT(w, t->grant);
                int rc = w->nreqs < WINDOW ? allocdb_send_get_reservation(w->c, g->rid, g->lsn, &rid)
                                           : ALLOCDB_ERR_WINDOW_FULL;
                if (rc == ALLOCDB_OK) {
                    struct req *r = &w->reqs[w->nreqs++];
                    r->rid = rid;
                    r->task = (int32_t)ti;
                    r->n = 0;
                } else {
                    t->state = T_HOLD;
                    t->wake = now + 20 * MS;
                }
            } else if (a == A_OP) {
                if (OP(w, oi)->attempts == 0 && ndup < BATCH_MAX && urand(&w->rng, 0, 99) < 4)
                    dup[ndup++] = oi;
                batch[n++] = oi;
                if (n == cfg.batch) {
                    async_send(w, batch, n);
                    n = 0;
                }
            }
        }
        if (n > 0)
            async_send(w, batch, n);
        if (ndup > 0) {
            /* The same commands again while the first attempts are in flight, in another frame:
             * a client retrying too early. Both answers must agree. */
            w->dups_sent += ndup;
            async_send(w, dup, ndup);
        }
        allocdb_flush(w->c, 0);
        if (allocdb_in_flight(w->c) == 0) {
            int64_t wait = next - now_ns();
            sleep_ns(wait > 5 * MS ? 5 * MS : wait);
            continue;
        }
        int64_t wait = next - now_ns();
        int timeout = wait <= 0 ? 0 : (int)(wait / MS) + 1;
        struct allocdb_reply rep;
        int got = allocdb_poll(w->c, timeout, &rep);
        while (got == 1) {
            async_reply(w, &rep, now_ns());
            got = allocdb_poll(w->c, 0, &rep);
        }
        if (got < 0) {
            violation(C_OTHER, "allocdb_poll: %s: %s", allocdb_strerror(got), allocdb_last_error(w->c));
            sleep_ns(10 * MS);
        }
    }
}

/* ---- the synchronous (batch) worker ---------------------------------------------------------- */

/* One allocdb_submit of the ops' commands (cmds already built), with the library's retries; every
 * answer is recorded, a failed call counting as unreachable for each op. Returns its status. */
static int submit_and_answer(struct worker *w, allocdb_client *c, const int32_t *ops, uint32_t n,
                             struct allocdb_command *cmds, struct allocdb_result *res)
{
    for (uint32_t i = 0; i < n; i++)
        OP(w, ops[i])->inflight++;
    int64_t t0 = now_ns();
    int rc = allocdb_submit(c, cmds, n, res);
    int64_t t1 = now_ns();
    for (uint32_t i = 0; i < n; i++) {
        struct op *o = OP(w, ops[i]);
        if (rc != ALLOCDB_OK && rc != ALLOCDB_ERR_UNREACHABLE)
            res[i] = (struct allocdb_result){ .outcome = ALLOCDB_INDEFINITE, .code = ALLOCDB_INDEFINITE_UNREACHABLE };
        o->attempts += res[i].attempts;
        if (o->t_inv == 0 && res[i].attempts > 0)
            o->t_inv = t0;
        op_answer(w, ops[i], &res[i], t1);
    }
    return rc;
}

static void run_sync(struct worker *w)
{
    int32_t batch[BATCH_MAX];
    struct allocdb_command cmds[BATCH_MAX];
    struct allocdb_result res[BATCH_MAX];
    for (;;) {
        int64_t now = now_ns();
        bool stopping = atomic_load(&stop_load) || now - t_start >= cfg.duration;
        if (now > t_deadline) {
            worker_deadline(w);
            return;
        }
        if (stopping && worker_idle(w))
            return;
        int64_t next = now + 5 * MS;
        uint32_t n = 0;
        int32_t reads[BATCH_MAX];
        uint32_t nreads = 0;
        for (unsigned ti = 0; ti < cfg.tasks && n + 1 < cfg.batch; ti++) {
            int32_t oi = -1;
            enum act a = task_due(w, (int32_t)ti, now, stopping, &next, &oi);
            if (a == A_READ)
                reads[nreads++] = (int32_t)ti;
            else if (a == A_OP) {
                batch[n++] = oi;
                if (OP(w, oi)->attempts == 0 && urand(&w->rng, 0, 99) < 4) {
                    batch[n++] = oi; /* the same command twice in one batch */
                    w->dups_sent++;
                }
            }
        }
        if (n > 0) {
            for (uint32_t i = 0; i < n; i++)
                op_command(OP(w, batch[i]), &cmds[i]);
            int rc = submit_and_answer(w, w->c, batch, n, cmds, res);
            w->frames++;
            if (rc != ALLOCDB_OK && rc != ALLOCDB_ERR_UNREACHABLE)
                violation(C_OTHER, "allocdb_submit: %s: %s", allocdb_strerror(rc), allocdb_last_error(w->c));
        }
        for (uint32_t i = 0; i < nreads; i++) {
            struct task *t = &w->tasks[reads[i]];
            struct allocdb_reservation rv;
            const struct grant *g = GRANT(w, t->grant);
            int rc = allocdb_get_reservation(w->c, g->rid, g->lsn, &rv);
            task_read(w, reads[i], rc == ALLOCDB_OK ? &rv : NULL, now_ns());
        }
        if (n == 0 && nreads == 0) {
            int64_t wait = next - now_ns();
            sleep_ns(wait > 5 * MS ? 5 * MS : wait);
        }
    }
}

static allocdb_client *new_client(id128 client_id, uint32_t connect_ms, uint32_t request_ms, uint32_t retry_ms)
{
    allocdb_client *c = allocdb_new();
    if (c == NULL || allocdb_set_addresses(c, cfg.addr) != ALLOCDB_OK ||
        allocdb_set_timeouts(c, connect_ms, request_ms, retry_ms) != ALLOCDB_OK ||
        allocdb_set_client_id(c, client_id) != ALLOCDB_OK || allocdb_set_retry_overloaded(c, true) != ALLOCDB_OK ||
        allocdb_set_window(c, WINDOW) != ALLOCDB_OK) {
        fprintf(stderr, "crash_load: cannot set up a client for %s\n", cfg.addr);
        exit(2);
    }
    return c;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    w->c = new_client(client_ids[w->index], 500, 2000, 3000);
    (void)allocdb_connect(w->c, NULL); /* a failure is retried by the first send */
    if (w->async)
        run_async(w);
    else
        run_sync(w);
    allocdb_free(w->c);
    w->c = NULL;
    return NULL;
}

/* ---- setup ----------------------------------------------------------------------------------- */

/* Submits ops (synchronously, with the library's retries) until each committed or the deadline. */
static bool submit_until_committed(struct worker *w, allocdb_client *c, int32_t *ops, size_t n)
{
    struct allocdb_command *cmds = calloc(n, sizeof *cmds);
    struct allocdb_result *res = calloc(n, sizeof *res);
    int32_t *open = calloc(n, sizeof *open);
    bool ok = cmds != NULL && res != NULL && open != NULL;
    while (ok) {
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
            if (!OP(w, ops[i])->done && !OP(w, ops[i])->failed)
                open[m++] = ops[i];
        if (m == 0)
            break;
        if (now_ns() > t_deadline) {
            worker_deadline(w);
            ok = false;
            break;
        }
        for (size_t i = 0; i < m; i++)
            op_command(OP(w, open[i]), &cmds[i]);
        int rc = submit_and_answer(w, c, open, (uint32_t)m, cmds, res);
        if (rc != ALLOCDB_OK)
            sleep_ns(20 * MS);
    }
    free(cmds);
    free(res);
    free(open);
    return ok;
}

/* ---- reading back ---------------------------------------------------------------------------- */

/* Reads reservations ids[0..n) fenced at min_lsn, pipelined; lost and refused reads are sent
 * again. False if the deadline passed first. */
static bool read_reservations(allocdb_client *c, const id128 *ids, size_t n, uint64_t min_lsn,
                              struct allocdb_reservation *out)
{
    size_t *todo = malloc((n + 1) * sizeof *todo);
    struct {
        uint64_t rid;
        size_t i;
    } inflight[WINDOW];
    unsigned ninflight = 0;
    size_t ntodo = 0;
    if (todo == NULL)
        return false;
    for (size_t i = n; i-- > 0;)
        todo[ntodo++] = i;
    bool ok = true;
    while (ntodo > 0 || ninflight > 0) {
        if (now_ns() > t_deadline) {
            ok = false;
            break;
        }
        while (ntodo > 0 && ninflight < WINDOW) {
            uint64_t rid;
            size_t i = todo[ntodo - 1];
            if (allocdb_send_get_reservation(c, ids[i], min_lsn, &rid) != ALLOCDB_OK)
                break;
            ntodo--;
            inflight[ninflight].rid = rid;
            inflight[ninflight].i = i;
            ninflight++;
        }
        if (ninflight == 0) {
            sleep_ns(20 * MS); /* not connected: try again */
            continue;
        }
        struct allocdb_reply rep;
        int got = allocdb_poll(c, 100, &rep);
        if (got < 0)
            sleep_ns(10 * MS);
        if (got != 1)
            continue;
        unsigned k = 0;
        while (k < ninflight && inflight[k].rid != rep.request_id)
            k++;
        if (k == ninflight)
            continue;
        size_t i = inflight[k].i;
        inflight[k] = inflight[--ninflight];
        if (rep.kind == ALLOCDB_REPLY_RESERVATION && rep.u.reservation.read != ALLOCDB_READ_FENCE_NOT_APPLIED)
            out[i] = rep.u.reservation;
        else
            todo[ntodo++] = i; /* lost, refused (applier restarting) or not applied yet */
    }
    free(todo);
    return ok;
}

static bool read_resource(allocdb_client *c, id128 id, uint64_t min_lsn, struct allocdb_resource *out)
{
    while (now_ns() <= t_deadline) {
        if (allocdb_get_resource(c, id, min_lsn, out) == ALLOCDB_OK && out->read != ALLOCDB_READ_FENCE_NOT_APPLIED)
            return true;
        sleep_ns(10 * MS);
    }
    return false;
}

/* ---- the checks ------------------------------------------------------------------------------ */

static struct vec all_ops = { .size = sizeof(struct op) };
static struct vec all_grants = { .size = sizeof(struct grant) };
static struct vec all_reads = { .size = sizeof(struct obs) };

#define AOP(i) ((struct op *)vec_at(&all_ops, (size_t)(i)))
#define AGRANT(i) ((struct grant *)vec_at(&all_grants, (size_t)(i)))

/* Appends a worker's records to the global ones, rebasing the indexes they hold. */
static void merge(struct worker *w)
{
    int32_t op_base = (int32_t)all_ops.n, grant_base = (int32_t)all_grants.n;
    for (size_t i = 0; i < w->ops.n; i++) {
        struct op *o = vec_push(&all_ops);
        *o = *OP(w, i);
        if (o->grant >= 0)
            o->grant += grant_base;
    }
    for (size_t i = 0; i < w->grants.n; i++) {
        struct grant *g = vec_push(&all_grants);
        *g = *GRANT(w, i);
        g->reserve_op += op_base;
        if (g->confirm_op >= 0)
            g->confirm_op += op_base;
        if (g->release_op >= 0)
            g->release_op += op_base;
        if (g->invalid_op >= 0)
            g->invalid_op += op_base;
    }
    for (size_t i = 0; i < w->reads.n; i++) {
        struct obs *ob = vec_push(&all_reads);
        *ob = *(struct obs *)vec_at(&w->reads, i);
        ob->grant += grant_base;
    }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static bool lsn_known(const uint64_t *sorted, size_t n, uint64_t lsn)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (sorted[mid] < lsn)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && sorted[lo] == lsn;
}

static int hot_index(id128 r)
{
    for (unsigned h = 0; h < cfg.resources; h++)
        if (hot[h] == r)
            return (int)h;
    return -1;
}

/* The commands again, with their operation ids: each must come back from the retry cache with
 * the original result. */
static void check_resubmit(allocdb_client *c, uint64_t *idrng)
{
    size_t n = all_ops.n, chunk = 256;
    struct allocdb_command *cmds = calloc(chunk, sizeof *cmds);
    struct allocdb_result *res = calloc(chunk, sizeof *res);
    size_t *idx = calloc(chunk, sizeof *idx);
    if (cmds == NULL || res == NULL || idx == NULL)
        exit(2);
    for (unsigned cl = 0; cl <= cfg.threads; cl++) {
        allocdb_set_client_id(c, client_ids[cl]);
        size_t m = 0;
        for (size_t i = 0; i <= n; i++) {
            if (i < n && AOP(i)->client == cl && AOP(i)->done) {
                op_command(AOP(i), &cmds[m]);
                if (cfg.inject == INJECT_DUP && i == 0) {
                    cmds[m].operation_id = new_id(idrng); /* a client that forgot its id */
                    fprintf(stderr, "crash_load: inject dup: op 0 resubmitted with a new operation id\n");
                }
                idx[m++] = i;
            }
            if (m == 0 || (m < chunk && i < n))
                continue;
            for (;;) {
                int rc = allocdb_submit(c, cmds, m, res);
                bool open = rc == ALLOCDB_ERR_UNREACHABLE;
                for (size_t k = 0; k < m && !open; k++)
                    open = res[k].outcome == ALLOCDB_INDEFINITE ||
                           (res[k].outcome == ALLOCDB_REJECTED && retryable_reject(res[k].code));
                if (!open && rc == ALLOCDB_OK)
                    break;
                if (now_ns() > t_deadline) {
                    violation(C_OTHER, "the resubmission of acknowledged commands did not complete by the deadline");
                    goto out;
                }
                sleep_ns(20 * MS);
            }
            for (size_t k = 0; k < m; k++) {
                const struct op *o = AOP(idx[k]);
                if (!res[k].from_retry_cache || !same_answer(o, &res[k]))
                    report_answer_mismatch(o, &res[k], "the resubmission");
            }
            m = 0;
        }
    }
out:
    free(cmds);
    free(res);
    free(idx);
}

static int cmp_grant_lsn(const void *a, const void *b)
{
    const struct grant *x = AGRANT(*(const int32_t *)a), *y = AGRANT(*(const int32_t *)b);
    return x->lsn < y->lsn ? -1 : x->lsn > y->lsn;
}

struct lsn_time {
    uint64_t lsn;
    int64_t t;
    int32_t src; /* >= 0: an op; < 0: -1 - read index */
};

static int cmp_lsn_time(const void *a, const void *b)
{
    const struct lsn_time *x = a, *y = b;
    return x->lsn < y->lsn ? -1 : x->lsn > y->lsn;
}

struct summary {
    uint64_t reserves, reserve_ok, busy, confirms_ok, releases_ok, invalid, creates, expired, expired_seen_run,
        unknown_scanned, reads;
    int64_t closest_ns; /* smallest (earliest answer carrying E) - (reserve sent + TTL) */
    bool closest_set;
    int64_t stamp_room_ns; /* how far the tightest two stamps are from contradicting each other */
    bool stamp_checked;
};

static void check_all(struct summary *s, uint64_t *idrng)
{
    char a[ALLOCDB_U128_STRLEN], b[ALLOCDB_U128_STRLEN], d[ALLOCDB_U128_STRLEN];
    allocdb_client *c = new_client(client_ids[0], 1000, 3000, 10000);

    /* Every command committed (else nothing below is sound), once each, at its own LSN. */
    size_t unresolved = 0;
    for (size_t i = 0; i < all_ops.n; i++)
        unresolved += !AOP(i)->done;
    if (unresolved > 0) {
        violation(C_OTHER, "%zu commands never committed; the state checks are skipped", unresolved);
        allocdb_free(c);
        return;
    }
    uint64_t *lsns = malloc((all_ops.n + 1) * sizeof *lsns);
    if (lsns == NULL)
        exit(2);
    uint64_t lo = UINT64_MAX, hi = 0;
    for (size_t i = 0; i < all_ops.n; i++) {
        const struct op *o = AOP(i);
        lsns[i] = o->lsn;
        lo = o->lsn < lo ? o->lsn : lo;
        hi = o->lsn > hi ? o->lsn : hi;
        s->reserves += o->kind == ALLOCDB_RESERVE;
        s->reserve_ok += o->kind == ALLOCDB_RESERVE && o->code == ALLOCDB_RESULT_OK;
        s->busy += o->kind == ALLOCDB_RESERVE && o->code == ALLOCDB_RESULT_RESOURCE_BUSY;
        s->confirms_ok += o->kind == ALLOCDB_CONFIRM && o->code == ALLOCDB_RESULT_OK;
        s->releases_ok += o->kind == ALLOCDB_RELEASE && o->code == ALLOCDB_RESULT_OK;
        s->invalid += o->code == ALLOCDB_RESULT_INVALID_STATE;
        s->creates += o->kind == ALLOCDB_CREATE_RESOURCE;
    }
    qsort(lsns, all_ops.n, sizeof *lsns, cmp_u64);
    for (size_t i = 1; i < all_ops.n; i++)
        if (lsns[i] == lsns[i - 1])
            violation(C_DUP, "two different commands committed at the same LSN %" PRIu64, lsns[i]);
    for (size_t i = 0; i < all_grants.n; i++) {
        const struct grant *g = AGRANT(i);
        if (ALLOCDB_U128_HI(g->rid) != 0 || ALLOCDB_U128_LO(g->rid) != g->lsn)
            violation(C_DUP, "reserve at LSN %" PRIu64 " granted reservation id %s, not (0 << 64) | its LSN", g->lsn,
                      fmt_id(g->rid, a));
    }

    /* dup: the retry cache answers every command with its original result. */
    check_resubmit(c, idrng);

    /* Read back: per hot resource, a consistent picture of it and all its reservations. */
    size_t ng = all_grants.n;
    int32_t *order = malloc((ng + 1) * sizeof *order);
    id128 *ids = malloc((ng + 1) * sizeof *ids);
    struct allocdb_reservation *backs = malloc((ng + 1) * sizeof *backs);
    struct allocdb_resource *final = calloc(cfg.resources, sizeof *final);
    if (order == NULL || ids == NULL || backs == NULL || final == NULL)
        exit(2);
    for (size_t i = 0; i < ng; i++)
        order[i] = (int32_t)i;
    qsort(order, ng, sizeof *order, cmp_grant_lsn);
    for (unsigned h = 0; h < cfg.resources; h++) {
        size_t m = 0;
        for (size_t k = 0; k < ng; k++)
            if (AGRANT(order[k])->resource == hot[h])
                ids[m++] = AGRANT(order[k])->rid;
        bool consistent = false;
        for (int attempt = 0; attempt < 100 && !consistent; attempt++) {
            struct allocdb_resource r1, r2;
            if (!read_resource(c, hot[h], hi, &r1) || !read_reservations(c, ids, m, hi, backs) ||
                !read_resource(c, hot[h], hi, &r2)) {
                violation(C_OTHER, "reading back resource %s did not complete by the deadline", fmt_id(hot[h], a));
                goto done;
            }
            consistent = r1.version == r2.version && r1.state == r2.state &&
                         r1.current_reservation_id == r2.current_reservation_id;
            final[h] = r2;
            if (!consistent)
                sleep_ns(20 * MS);
        }
        if (!consistent)
            violation(C_OTHER, "resource %s kept changing while it was read back", fmt_id(hot[h], a));
        m = 0;
        for (size_t k = 0; k < ng; k++)
            if (AGRANT(order[k])->resource == hot[h])
                AGRANT(order[k])->back = backs[m++];
    }

    /* dup: every LSN of the run (up to what the server had applied at the read-back, so the
     * resubmission is covered) that is none of our commands is not a reservation of ours. */
    {
        struct vec unknown = { .size = sizeof(id128) };
        uint64_t top = hi;
        for (unsigned h = 0; h < cfg.resources; h++)
            top = final[h].applied_lsn > top ? final[h].applied_lsn : top;
        for (uint64_t l = lo; l <= top && hi > 0; l++)
            if (!lsn_known(lsns, all_ops.n, l))
                *(id128 *)vec_push(&unknown) = (id128)l;
        s->unknown_scanned = unknown.n;
        struct allocdb_reservation *u = calloc(unknown.n + 1, sizeof *u);
        if (u == NULL)
            exit(2);
        if (!read_reservations(c, (const id128 *)unknown.p, unknown.n, top, u)) {
            violation(C_OTHER, "scanning the LSNs of the run did not complete by the deadline");
        } else {
            for (size_t i = 0; i < unknown.n; i++)
                if (u[i].read == ALLOCDB_READ_FOUND && hot_index(u[i].resource_id) >= 0)
                    violation(C_DUP,
                              "reservation %s (%s) holds our resource %s, but no acknowledged reserve made it "
                              "(a command executed twice?)",
                              fmt_id(u[i].reservation_id, a), allocdb_reservation_state_name(u[i].state),
                              fmt_id(u[i].resource_id, b));
        }
        free(u);
        free(unknown.p);
    }

    /* Grants one by one. */
    for (size_t i = 0; i < ng; i++) {
        struct grant *g = AGRANT(i);
        const struct allocdb_reservation *bk = &g->back;
        fmt_id(g->rid, a);
        if (bk->read != ALLOCDB_READ_FOUND) {
            violation(bk->read == ALLOCDB_READ_RETIRED ? C_OTHER : C_DOUBLE,
                      "granted reservation %s reads as %s after the run%s", a, allocdb_read_name(bk->read),
                      bk->read == ALLOCDB_READ_RETIRED ? " (history window too short for the test)" : "");
            continue;
        }
        if (bk->resource_id != g->resource || bk->holder_id != g->holder || bk->created_lsn != g->lsn ||
            bk->deadline_slot != g->deadline)
            violation(C_DOUBLE,
                      "reservation %s reads back with resource/holder/created_lsn/deadline that differ from its "
                      "grant (created_lsn %" PRIu64 " vs %" PRIu64 ", deadline %" PRIu64 " vs %" PRIu64 ")",
                      a, bk->created_lsn, g->lsn, bk->deadline_slot, g->deadline);
        bool terminal = bk->state == ALLOCDB_RESERVATION_RELEASED || bk->state == ALLOCDB_RESERVATION_EXPIRED;
        if (terminal != (bk->released_lsn != 0) || (terminal && bk->released_lsn <= bk->created_lsn))
            violation(C_DOUBLE, "reservation %s is %s with released_lsn %" PRIu64, a,
                      allocdb_reservation_state_name(bk->state), bk->released_lsn);
        if (g->released) {
            const struct op *rel = AOP(g->release_op);
            if (bk->state != ALLOCDB_RESERVATION_RELEASED || bk->released_lsn != rel->lsn)
                violation(C_DOUBLE, "reservation %s was released at LSN %" PRIu64 " but reads %s released_lsn %" PRIu64,
                          a, rel->lsn, allocdb_reservation_state_name(bk->state), bk->released_lsn);
        } else if (bk->state == ALLOCDB_RESERVATION_RELEASED) {
            violation(C_DOUBLE, "reservation %s reads released, but its holder never released it", a);
        }
        if (g->confirmed) {
            const struct op *cf = AOP(g->confirm_op);
            if (bk->state == ALLOCDB_RESERVATION_EXPIRED)
                violation(C_EARLY, "reservation %s was confirmed at LSN %" PRIu64 " and yet expired at %" PRIu64, a,
                          cf->lsn, bk->released_lsn);
            if (cf->lsn <= g->lsn || (bk->released_lsn != 0 && cf->lsn >= bk->released_lsn))
                violation(C_DOUBLE, "reservation %s confirmed at LSN %" PRIu64 " outside its life [%" PRIu64
                          ", %" PRIu64 ")", a, cf->lsn, g->lsn, bk->released_lsn);
            if (!g->released && bk->state != ALLOCDB_RESERVATION_CONFIRMED)
                violation(C_DOUBLE, "reservation %s was confirmed but reads %s", a,
                          allocdb_reservation_state_name(bk->state));
        } else if (bk->state == ALLOCDB_RESERVATION_CONFIRMED) {
            violation(C_DOUBLE, "reservation %s reads confirmed, but its holder never confirmed it", a);
        }
        if (g->invalid_op >= 0) {
            const struct op *iv = AOP(g->invalid_op);
            if (bk->state != ALLOCDB_RESERVATION_EXPIRED || bk->released_lsn >= iv->lsn)
                violation(C_DOUBLE, "%s of reservation %s answered invalid_state at LSN %" PRIu64
                          ", but it reads %s (released_lsn %" PRIu64 "), not expired before it",
                          kind_name(iv->kind), a, iv->lsn, allocdb_reservation_state_name(bk->state), bk->released_lsn);
        }
        if (bk->state == ALLOCDB_RESERVATION_EXPIRED) {
            s->expired++;
            if (lsn_known(lsns, all_ops.n, bk->released_lsn))
                violation(C_DUP, "reservation %s expired at LSN %" PRIu64 ", which is one of our commands", a,
                          bk->released_lsn);
        }
        s->expired_seen_run += g->expired_seen != 0;
    }

    /* double: per resource, disjoint lives; busy only while held; the final state and the version. */
    if (cfg.inject == INJECT_DOUBLE) {
        for (size_t k = 1; k < ng; k++) {
            struct grant *g0 = NULL, *g1 = AGRANT(order[k]);
            for (size_t j = k; j-- > 0;)
                if (AGRANT(order[j])->resource == g1->resource) {
                    g0 = AGRANT(order[j]);
                    break;
                }
            if (g0 != NULL) {
                fprintf(stderr, "crash_load: inject double: reservation %s is recorded as held until LSN %" PRIu64 "\n",
                        fmt_id(g0->rid, a), g1->lsn + 1);
                g0->back.released_lsn = g1->lsn + 1;
                break;
            }
        }
    }
    for (unsigned h = 0; h < cfg.resources; h++) {
        const struct grant *prev = NULL, *active = NULL;
        uint64_t version = 0;
        fmt_id(hot[h], b);
        for (size_t k = 0; k < ng; k++) {
            const struct grant *g = AGRANT(order[k]);
            if (g->resource != hot[h] || g->back.read != ALLOCDB_READ_FOUND)
                continue;
            if (prev != NULL && (prev->back.released_lsn == 0 || prev->back.released_lsn >= g->lsn))
                violation(C_DOUBLE,
                          "resource %s had two holders: reservation %s [%" PRIu64 ", %" PRIu64
                          ") and reservation %s granted at LSN %" PRIu64,
                          b, fmt_id(prev->rid, a), prev->lsn, prev->back.released_lsn, fmt_id(g->rid, d), g->lsn);
            if (g->back.released_lsn == 0)
                active = g;
            version += 1 + (g->confirmed ? 1 : 0) + (g->back.released_lsn != 0 ? 1 : 0);
            prev = g;
        }
        const struct allocdb_resource *r = &final[h];
        uint8_t want = active == NULL ? ALLOCDB_RESOURCE_AVAILABLE
                       : active->back.state == ALLOCDB_RESERVATION_CONFIRMED ? ALLOCDB_RESOURCE_CONFIRMED
                                                                            : ALLOCDB_RESOURCE_RESERVED;
        if (r->read != ALLOCDB_READ_FOUND || r->state != want ||
            r->current_reservation_id != (active != NULL ? active->rid : 0))
            violation(C_DOUBLE, "resource %s reads %s %s holding %s, but its last reservation says %s holding %s", b,
                      allocdb_read_name(r->read), allocdb_resource_state_name(r->state),
                      fmt_id(r->current_reservation_id, a), allocdb_resource_state_name(want),
                      active != NULL ? fmt_id(active->rid, a) : "0");
        if (r->read == ALLOCDB_READ_FOUND && r->version != version)
            violation(C_DUP, "resource %s has version %" PRIu64 ", but its reservations explain %" PRIu64
                      " transitions (a transition executed twice, or one nobody asked for)",
                      b, r->version, version);
    }
    {
        /* Per hot resource, its grants in LSN order: a resource_busy answer at LSN L must fall
         * inside the life of the last grant before L. */
        size_t *first = calloc(cfg.resources + 1, sizeof *first);
        int32_t *by_res = malloc((ng + 1) * sizeof *by_res);
        if (first == NULL || by_res == NULL)
            exit(2);
        for (size_t k = 0; k < ng; k++) {
            int h = hot_index(AGRANT(order[k])->resource);
            if (h >= 0)
                first[h + 1]++;
        }
        for (unsigned h = 0; h < cfg.resources; h++)
            first[h + 1] += first[h];
        size_t *fill = calloc(cfg.resources, sizeof *fill);
        if (fill == NULL)
            exit(2);
        for (size_t k = 0; k < ng; k++) {
            int h = hot_index(AGRANT(order[k])->resource);
            if (h >= 0)
                by_res[first[h] + fill[h]++] = order[k];
        }
        for (size_t i = 0; i < all_ops.n; i++) {
            const struct op *o = AOP(i);
            int h = hot_index(o->target);
            if (o->kind != ALLOCDB_RESERVE || o->code != ALLOCDB_RESULT_RESOURCE_BUSY || h < 0)
                continue;
            size_t lo_k = first[h], hi_k = first[h + 1];
            while (lo_k < hi_k) { /* the first grant at or after the busy answer */
                size_t mid = (lo_k + hi_k) / 2;
                if (AGRANT(by_res[mid])->lsn < o->lsn)
                    lo_k = mid + 1;
                else
                    hi_k = mid;
            }
            const struct grant *held = lo_k > first[h] ? AGRANT(by_res[lo_k - 1]) : NULL;
            if (held == NULL || (held->back.released_lsn != 0 && held->back.released_lsn < o->lsn))
                violation(C_DOUBLE,
                          "reserve of %s answered resource_busy at LSN %" PRIu64 ", but no reservation held it then",
                          fmt_id(o->target, a), o->lsn);
        }
        free(first);
        free(fill);
        free(by_res);
    }

    /* early: no answer that carries an LSN >= E arrived before reserve sent + TTL. */
    {
        size_t np = 0;
        struct lsn_time *p = malloc((all_ops.n + all_reads.n + 1) * sizeof *p);
        if (p == NULL)
            exit(2);
        for (size_t i = 0; i < all_ops.n; i++)
            p[np++] = (struct lsn_time){ AOP(i)->lsn, AOP(i)->t_done, (int32_t)i };
        for (size_t i = 0; i < all_reads.n; i++) {
            const struct obs *ob = vec_at(&all_reads, i);
            p[np++] = (struct lsn_time){ ob->applied_lsn, ob->t_resp, -1 - (int32_t)i };
        }
        qsort(p, np, sizeof *p, cmp_lsn_time);
        for (size_t i = np - 1; np > 0 && i-- > 0;) /* suffix minimum of the answer time */
            if (p[i + 1].t < p[i].t) {
                p[i].t = p[i + 1].t;
                p[i].src = p[i + 1].src;
            }
        if (cfg.inject == INJECT_EARLY) { /* the first to expire: answers certainly followed it */
            struct grant *first = NULL;
            for (size_t i = 0; i < ng; i++) {
                struct grant *g = AGRANT(i);
                if (g->back.read == ALLOCDB_READ_FOUND && g->back.state == ALLOCDB_RESERVATION_EXPIRED &&
                    (first == NULL || g->back.released_lsn < first->back.released_lsn))
                    first = g;
            }
            if (first != NULL) {
                fprintf(stderr, "crash_load: inject early: reservation %s recorded as reserved %" PRIu64 " ms later\n",
                        fmt_id(first->rid, a), first->ttl_ms + 1000);
                first->t_inv += (int64_t)(first->ttl_ms + 1000) * MS;
            }
        }
        for (size_t i = 0; i < ng; i++) {
            const struct grant *g = AGRANT(i);
            if (g->back.read != ALLOCDB_READ_FOUND || g->back.state != ALLOCDB_RESERVATION_EXPIRED)
                continue;
            uint64_t e = g->back.released_lsn;
            size_t lo_i = 0, hi_i = np;
            while (lo_i < hi_i) {
                size_t mid = (lo_i + hi_i) / 2;
                if (p[mid].lsn < e)
                    lo_i = mid + 1;
                else
                    hi_i = mid;
            }
            if (lo_i == np)
                continue; /* nothing the client saw carries E */
            int64_t bound = g->t_inv + (int64_t)g->ttl_ms * MS;
            int64_t margin = p[lo_i].t - bound;
            if (!s->closest_set || margin < s->closest_ns) {
                s->closest_ns = margin;
                s->closest_set = true;
            }
            if (margin < 0) {
                char what[160];
                int32_t src = p[lo_i].src;
                if (src >= 0)
                    snprintf(what, sizeof what, "the answer to %s op at LSN %" PRIu64, kind_name(AOP(src)->kind),
                             AOP(src)->lsn);
                else
                    snprintf(what, sizeof what, "a read answered at applied LSN %" PRIu64,
                             ((const struct obs *)vec_at(&all_reads, (size_t)(-1 - src)))->applied_lsn);
                violation(C_EARLY,
                          "reservation %s (ttl %" PRIu64 " ms, reserved at LSN %" PRIu64 ") expired at LSN %" PRIu64
                          ", but %s arrived %.3f ms after the reserve was first sent: %.3f ms before the TTL ran out",
                          fmt_id(g->rid, a), g->ttl_ms, g->lsn, e, what, ms_of(p[lo_i].t - g->t_inv), ms_of(-margin));
            }
        }
        free(p);
    }

    /* stamp: within a boot the server's timeline is the boot clock plus a constant (slot =
     * (boot ms + c) / slot_ms, also across worker and daemon restarts: wal/slot_clock.h), and a
     * reserve was stamped between its first send and its answer, at slot deadline - ceil(ttl /
     * slot_ms). Each granted reserve so bounds c*1e6 from both sides; all bounds must overlap (1 ms
     * allowed for the server's whole-ms clock). If they do not, some reserve got a slot that was
     * not current while it was in flight: one that had already ended counts its TTL from the past
     * and can expire early, even when no client happened to see it. */
    if (slot_ms > 0) {
        const int64_t slot_ns = (int64_t)slot_ms * MS;
        int64_t max_lo = INT64_MIN, min_hi = INT64_MAX;
        size_t lo_op = 0, hi_op = 0;
        if (cfg.inject == INJECT_STALE) {
            for (size_t i = all_ops.n / 2; i < all_ops.n; i++) {
                struct op *o = AOP(i);
                if (o->kind == ALLOCDB_RESERVE && o->code == ALLOCDB_RESULT_OK) {
                    fprintf(stderr, "crash_load: inject stale: reserve at LSN %" PRIu64 " recorded as sent 200 ms later\n",
                            o->lsn);
                    o->t_inv += 200 * MS;
                    break;
                }
            }
        }
        for (size_t i = 0; i < all_ops.n; i++) {
            const struct op *o = AOP(i);
            if (o->kind != ALLOCDB_RESERVE || o->code != ALLOCDB_RESULT_OK)
                continue;
            uint64_t ttl_slots = (o->ttl_ms + slot_ms - 1) / slot_ms;
            int64_t slot_start = (int64_t)(o->deadline - ttl_slots) * slot_ns;
            int64_t lo_b = slot_start - o->t_done, hi_b = slot_start + slot_ns - o->t_inv;
            if (lo_b > max_lo) {
                max_lo = lo_b;
                lo_op = i;
            }
            if (hi_b < min_hi) {
                min_hi = hi_b;
                hi_op = i;
            }
        }
        if (max_lo != INT64_MIN) {
            s->stamp_checked = true;
            s->stamp_room_ns = min_hi + MS + cfg.stamp_slack - max_lo;
            if (s->stamp_room_ns < 0) {
                const struct op *x = AOP(lo_op), *y = AOP(hi_op);
                uint64_t xs = x->deadline - (x->ttl_ms + slot_ms - 1) / slot_ms;
                uint64_t ys = y->deadline - (y->ttl_ms + slot_ms - 1) / slot_ms;
                violation(C_STAMP,
                          "reserve at LSN %" PRIu64 " (in flight %.3f..%.3f ms) got slot %" PRIu64 " and reserve at LSN %" PRIu64
                          " (in flight %.3f..%.3f ms) got slot %" PRIu64 ": no timeline that follows the boot clock stamps "
                          "both (%.3f ms apart); one got a slot that was not current while it was in flight (a slot that had "
                          "already ended makes its TTL run out early)",
                          x->lsn, ms_of(x->t_inv - t_start), ms_of(x->t_done - t_start), xs, y->lsn,
                          ms_of(y->t_inv - t_start), ms_of(y->t_done - t_start), ys, ms_of(-s->stamp_room_ns));
            }
        }
    }
done:
    free(lsns);
    free(order);
    free(ids);
    free(backs);
    free(final);
    allocdb_free(c);
}

static void write_record(const char *path)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "crash_load: --record %s: %s\n", path, strerror(errno));
        return;
    }
    char a[ALLOCDB_U128_STRLEN], b[ALLOCDB_U128_STRLEN], d[ALLOCDB_U128_STRLEN], e[ALLOCDB_U128_STRLEN];
    fprintf(f, "# op client kind op_id target holder ttl_ms t_sent_ns t_answer_ns attempts indefinite result "
               "lsn reservation_id deadline_slot from_retry_cache\n");
    for (size_t i = 0; i < all_ops.n; i++) {
        const struct op *o = AOP(i);
        fprintf(f, "op %u %s %s %s %s %" PRIu64 " %" PRId64 " %" PRId64 " %u %u %s %" PRIu64 " %s %" PRIu64 " %d\n",
                o->client, kind_name(o->kind), fmt_id(o->id, a), fmt_id(o->target, b), fmt_id(o->holder, d),
                o->ttl_ms, o->t_inv ? o->t_inv - t_start : -1, o->done ? o->t_done - t_start : -1, o->attempts,
                o->indefinite, o->done ? allocdb_result_name(ALLOCDB_COMMITTED, o->code) : "open", o->lsn,
                fmt_id(o->rid, e), o->deadline, o->from_cache);
    }
    fprintf(f, "# grant reservation_id resource holder ttl_ms lsn deadline_slot t_reserve_sent_ns confirmed released "
               "read_back state created_lsn released_lsn\n");
    for (size_t i = 0; i < all_grants.n; i++) {
        const struct grant *g = AGRANT(i);
        fprintf(f, "grant %s %s %s %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRId64 " %d %d %s %s %" PRIu64 " %" PRIu64 "\n",
                fmt_id(g->rid, a), fmt_id(g->resource, b), fmt_id(g->holder, d), g->ttl_ms, g->lsn, g->deadline,
                g->t_inv - t_start, g->confirmed, g->released, allocdb_read_name(g->back.read),
                allocdb_reservation_state_name(g->back.state), g->back.created_lsn, g->back.released_lsn);
    }
    fprintf(f, "# read reservation_id t_answer_ns applied_lsn state\n");
    for (size_t i = 0; i < all_reads.n; i++) {
        const struct obs *ob = vec_at(&all_reads, i);
        fprintf(f, "read %s %" PRId64 " %" PRIu64 " %s\n", fmt_id(AGRANT(ob->grant)->rid, a), ob->t_resp - t_start,
                ob->applied_lsn, allocdb_reservation_state_name(ob->state));
    }
    fclose(f);
}

/* ---- probe ----------------------------------------------------------------------------------- */

static int probe(int64_t since_real)
{
    uint64_t s = random_seed();
    allocdb_client *c = new_client(new_id(&s), 300, 1000, 0);
    id128 op = new_id(&s), res = new_id(&s);
    int64_t t0 = now_ns();
    struct allocdb_result r = { 0 };
    while (now_ns() <= t_deadline) {
        allocdb_create_resource(c, op, res, &r);
        if (r.outcome == ALLOCDB_COMMITTED)
            break;
        sleep_ns(5 * MS);
    }
    int64_t ms = since_real > 0 ? (real_ns() - since_real) / MS : (now_ns() - t0) / MS;
    allocdb_free(c);
    if (r.outcome != ALLOCDB_COMMITTED) {
        fprintf(stderr, "crash_load: probe: no commit within the deadline\n");
        return 1;
    }
    printf("%" PRId64 "\n", ms);
    return r.code == ALLOCDB_RESULT_OK ? 0 : 1;
}

/* ---- main ------------------------------------------------------------------------------------ */

static void on_usr1(int sig)
{
    (void)sig;
    atomic_store(&stop_load, true);
}

static bool parse_u64(const char *v, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0')
        return false;
    *out = x;
    return true;
}

static int usage(const char *why)
{
    fprintf(stderr, "crash_load: %s\n", why);
    return 2;
}

int main(int argc, char **argv)
{
    struct sigaction sa = { .sa_handler = on_usr1 };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    bool probe_mode = false;
    int64_t since = 0;
    const char *record = NULL;
    uint64_t deadline_s = 120;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t x = 0;
        if (strcmp(a, "--probe") == 0) {
            probe_mode = true;
            continue;
        }
        if (v == NULL)
            return usage("an option needs a value");
        i++;
        if (strcmp(a, "--addr") == 0) {
            snprintf(cfg.addr, sizeof cfg.addr, "%s", v);
        } else if (strcmp(a, "--record") == 0) {
            record = v;
        } else if (strcmp(a, "--inject-bug") == 0) {
            cfg.inject = strcmp(v, "double") == 0 ? INJECT_DOUBLE
                         : strcmp(v, "early") == 0 ? INJECT_EARLY
                         : strcmp(v, "dup") == 0   ? INJECT_DUP
                         : strcmp(v, "stale") == 0 ? INJECT_STALE
                                                   : -1;
            if (cfg.inject < 0)
                return usage("--inject-bug: double, early, dup or stale");
        } else if (strcmp(a, "--ttl-ms") == 0) {
            char *colon = strchr(v, ':');
            char buf[64];
            snprintf(buf, sizeof buf, "%s", v);
            if (colon != NULL)
                buf[colon - v] = '\0';
            if (!parse_u64(buf, &cfg.ttl_min) || !parse_u64(colon != NULL ? colon + 1 : buf, &cfg.ttl_max) ||
                cfg.ttl_min < 1 || cfg.ttl_max < cfg.ttl_min)
                return usage("--ttl-ms MIN:MAX");
        } else if (!parse_u64(v, &x)) {
            return usage("a numeric option has a bad value");
        } else if (strcmp(a, "--threads") == 0 || strcmp(a, "--connections") == 0) {
            cfg.threads = (unsigned)x;
        } else if (strcmp(a, "--tasks") == 0) {
            cfg.tasks = (unsigned)x;
        } else if (strcmp(a, "--resources") == 0) {
            cfg.resources = (unsigned)x;
        } else if (strcmp(a, "--batch") == 0) {
            cfg.batch = (unsigned)x;
        } else if (strcmp(a, "--duration-ms") == 0) {
            cfg.duration = (int64_t)x * MS;
        } else if (strcmp(a, "--busy-ms") == 0) {
            cfg.busy_ms = x;
        } else if (strcmp(a, "--expire-pct") == 0) {
            cfg.expire_pct = x > 100 ? 100 : x;
        } else if (strcmp(a, "--seed") == 0) {
            cfg.seed = x;
        } else if (strcmp(a, "--deadline-s") == 0) {
            deadline_s = x;
        } else if (strcmp(a, "--window-ms") == 0) {
            cfg.window = (int64_t)x * MS;
        } else if (strcmp(a, "--stamp-slack-ms") == 0) {
            cfg.stamp_slack = (int64_t)x * MS;
        } else if (strcmp(a, "--since-ns") == 0) {
            since = (int64_t)x;
        } else {
            fprintf(stderr, "crash_load: unknown option %s\n", a);
            return 2;
        }
    }
    t_start = now_ns();
    t_deadline = t_start + (int64_t)deadline_s * SEC;
    if (probe_mode)
        return probe(since);
    if (cfg.threads < 1 || cfg.threads > 256 || cfg.tasks < 1 || cfg.tasks > 4096 || cfg.resources < 1 ||
        cfg.batch < 2 || cfg.batch > BATCH_MAX)
        return usage("--threads 1..256, --tasks 1..4096, --resources >= 1, --batch 2..64");

    uint64_t idrng = random_seed();
    client_ids = calloc(cfg.threads + 1, sizeof *client_ids);
    hot = calloc(cfg.resources, sizeof *hot);
    struct worker *ws = calloc(cfg.threads + 1, sizeof *ws);
    if (client_ids == NULL || hot == NULL || ws == NULL)
        return 2;
    for (unsigned i = 0; i <= cfg.threads; i++)
        client_ids[i] = new_id(&idrng);

    /* Setup (client 0): the hot resources. */
    struct worker *w0 = &ws[0];
    w0->ops.size = sizeof(struct op);
    w0->grants.size = sizeof(struct grant);
    w0->reads.size = sizeof(struct obs);
    w0->idrng = random_seed();
    w0->rng = cfg.seed;
    allocdb_client *c0 = new_client(client_ids[0], 1000, 3000, 10000);
    int32_t *setup = calloc(cfg.resources, sizeof *setup);
    if (setup == NULL)
        return 2;
    for (unsigned h = 0; h < cfg.resources; h++) {
        hot[h] = new_id(&w0->idrng);
        setup[h] = new_op(w0, ALLOCDB_CREATE_RESOURCE, hot[h], 0, hot[h], 0, -1, -1);
    }
    bool setup_ok = submit_until_committed(w0, c0, setup, cfg.resources);
    for (unsigned h = 0; h < cfg.resources && setup_ok; h++)
        if (OP(w0, setup[h])->code != ALLOCDB_RESULT_OK) {
            char a[ALLOCDB_U128_STRLEN];
            violation(C_DUP, "create_resource of hot resource %s answered %s", fmt_id(hot[h], a),
                      allocdb_result_name(ALLOCDB_COMMITTED, OP(w0, setup[h])->code));
            setup_ok = false;
        }
    struct allocdb_server_info info;
    if (allocdb_server_info(c0, &info) == ALLOCDB_OK)
        slot_ms = info.slot_duration_ms;
    allocdb_free(c0);
    free(setup);

    int64_t t_load = now_ns();
    if (setup_ok) {
        for (unsigned i = 1; i <= cfg.threads; i++) {
            struct worker *w = &ws[i];
            w->index = i;
            w->async = (i & 1) != 0;
            w->rng = cfg.seed * 1000003u + i;
            w->idrng = random_seed(); /* independent streams: ids never collide */
            w->ops.size = sizeof(struct op);
            w->grants.size = sizeof(struct grant);
            w->reads.size = sizeof(struct obs);
            w->tasks = calloc(cfg.tasks, sizeof *w->tasks);
            if (w->tasks == NULL)
                return 2;
            for (unsigned k = 0; k < cfg.tasks; k++) {
                w->tasks[k].holder = new_id(&w->idrng);
                w->tasks[k].op = -1;
                w->tasks[k].grant = -1;
                w->tasks[k].wake = t_load + (int64_t)urand(&w->rng, 0, 10000) * 1000;
            }
            if (pthread_create(&w->th, NULL, worker_main, w) != 0) {
                fprintf(stderr, "crash_load: pthread_create failed\n");
                return 2;
            }
        }
        for (unsigned i = 1; i <= cfg.threads; i++)
            pthread_join(ws[i].th, NULL);
    }
    int64_t t_end_load = now_ns();

    uint64_t frames = 0, dups = 0, reads_failed = 0, unreachable = 0;
    for (unsigned i = 0; i <= cfg.threads; i++) {
        merge(&ws[i]);
        frames += ws[i].frames;
        dups += ws[i].dups_sent;
        reads_failed += ws[i].reads_failed;
        unreachable += ws[i].unreachable;
    }
    uint64_t acked = 0, indefinite = 0, attempts = 0, sent = 0, cached = 0;
    for (size_t i = 0; i < all_ops.n; i++) {
        acked += AOP(i)->done;
        cached += AOP(i)->done && AOP(i)->from_cache;
        indefinite += AOP(i)->indefinite;
        attempts += AOP(i)->attempts;
        sent += AOP(i)->attempts > 0;
    }
    /* Commands sent again after an attempt that did not commit (by the library or by us). */
    uint64_t resends = attempts > sent + dups ? attempts - sent - dups : 0;

    /* Leave the last TTLs time to run out, so the read-back rarely races an expiry. */
    if (setup_ok)
        sleep_ns((int64_t)(cfg.ttl_max + 200) * MS - (now_ns() - t_end_load));
    struct summary s = { 0 };
    if (setup_ok)
        check_all(&s, &idrng);
    int64_t t_end = now_ns();
    if (t_end - t_start > cfg.window * 9 / 10)
        violation(C_OTHER, "the run took %.0f ms, longer than 90%% of the dedupe/history window (%.0f ms): "
                  "records may have retired, so the checks are not sound (shorten the run or widen the window)",
                  ms_of(t_end - t_start), ms_of(cfg.window));

    if (record != NULL)
        write_record(record);
    char closest[32] = "-", room[32] = "-";
    if (s.closest_set)
        snprintf(closest, sizeof closest, "%.1f", ms_of(s.closest_ns));
    if (s.stamp_checked)
        snprintf(room, sizeof room, "%.1f", ms_of(s.stamp_room_ns));
    printf("crash_load: threads=%u tasks=%u hot=%u load_ms=%.0f ops=%zu acked=%" PRIu64 " attempts=%" PRIu64
           " indefinite=%" PRIu64 " resends=%" PRIu64 " first_from_cache=%" PRIu64 " unreachable=%" PRIu64 " dup_sends=%" PRIu64 " frames=%" PRIu64
           " reserves=%" PRIu64 " granted=%" PRIu64 " busy=%" PRIu64 " confirmed=%" PRIu64 " released=%" PRIu64
           " invalid_state=%" PRIu64 " expired=%" PRIu64 " expiry_seen_in_run=%" PRIu64 " creates=%" PRIu64
           " reads=%zu reads_failed=%" PRIu64 " lsns_scanned=%" PRIu64 " closest_expiry_ms=%s stamp_room_ms=%s"
           " check_ms=%.0f violations=%u (dup=%u double=%u early=%u stamp=%u other=%u)\n",
           cfg.threads, cfg.threads * cfg.tasks, cfg.resources, ms_of(t_end_load - t_load), all_ops.n, acked,
           attempts, indefinite, resends, cached, unreachable, dups, frames, s.reserves, s.reserve_ok, s.busy, s.confirms_ok,
           s.releases_ok, s.invalid, s.expired, s.expired_seen_run, s.creates, all_reads.n, reads_failed,
           s.unknown_scanned, closest, room, ms_of(t_end - t_end_load), violations, violations_by[C_DUP],
           violations_by[C_DOUBLE], violations_by[C_EARLY], violations_by[C_STAMP], violations_by[C_OTHER]);
    for (unsigned i = 0; i <= cfg.threads; i++) {
        free(ws[i].tasks);
        free(ws[i].ops.p);
        free(ws[i].grants.p);
        free(ws[i].reads.p);
    }
    free(ws);
    free(all_ops.p);
    free(all_grants.p);
    free(all_reads.p);
    free(client_ids);
    free(hot);
    return violations == 0 ? 0 : 1;
}
