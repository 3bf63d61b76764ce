/*
 * bench/core.c — `allocdb-bench core`: the state machine driven in-process, no I/O.
 *
 * Scenarios (the first two are the reference Rust harness's, so figures compare one to one):
 *   one-resource-many-contenders  R rounds on one resource: the winner reserves (ok), C-1
 *                                 contenders are refused (resource_busy), the winner releases.
 *   high-retry-pressure           K creates; F rounds of exact retries (cached) and conflicting
 *                                 reuse of every id; A fresh ids against the full dedupe table;
 *                                 one more after the window has passed.
 *   uniform                       N resources; random reserve, then confirm / release / let it
 *                                 expire, with the primary's expiration ticks between slots.
 *
 * NOTES
 *   Every scenario checks each result against what the scenario must produce; a mismatch stops
 *   the run and exits 1, so a fast but wrong core cannot report a figure. Timing covers the
 *   apply calls (and the bench's own bookkeeping) of the measured phase only; building the state
 *   machine and, for uniform, creating the resources are reported separately.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/bench.h"
#include "bench/durable.h"
#include "common/assert.h"
#include "common/prefetch.h"
#include "common/splitmix.h"
#include "replica/sm.h"

#define EXIT_USAGE 64
#define WAL_SEGMENT_BYTES_DEFAULT_BENCH (64u << 20)

struct core_opts {
    const char *scenario;
    u64 hotspot_rounds, hotspot_contenders;
    u64 retry_capacity, retry_fanout, retry_rejections;
    u64 uniform_resources, uniform_commands, uniform_commands_per_slot, uniform_dedupe_window_slots;
    u64 uniform_history_window_slots, uniform_max_ttl_slots, uniform_expirations_per_tick;
    u64 seed, repeat;
    bool json;
    const char *durable_dir; /* NULL: in memory only */
    u64 group_commit, segment_bytes;
    bool keep_data;
};

/* One scenario run: the state machine, the log position and the counters. */
struct run {
    const char *name;
    sm_t sm;
    struct sm_config cfg;
    u64 layout_bytes;
    u64 lsn, slot, op;
    u64 commands, setup_commands;
    double elapsed_s, setup_s;
    u64 results[SM_RESULT_COUNT];
    u64 cached, conflicts, table_full;
    u32 peak_operations, peak_reservations, peak_expirations;
    bool counting; /* false during setup */
    char failure[256];
    /* uniform-only extras */
    u64 expirations;
    /* --durable */
    struct bench_wal *wal;
    u64 syncs, syncs_base, wal_bytes;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bool run_init(struct run *r, const char *name, const struct sm_config *cfg, const struct core_opts *o)
{
    char why[200];
    struct sm_layout l;
    memset(r, 0, sizeof(*r));
    r->name = name;
    r->cfg = *cfg;
    if (!sm_create(&r->sm, cfg, why, sizeof(why))) {
        snprintf(r->failure, sizeof(r->failure), "cannot build the state machine: %s", why);
        return false;
    }
    ADB_ASSERT(sm_layout(cfg, &l)); /* sm_create succeeded, so the config is valid */
    r->layout_bytes = l.total;
    r->slot = 1;
    if (o->durable_dir != NULL) {
        r->wal = bench_wal_open(o->durable_dir, o->group_commit, o->segment_bytes, why, sizeof(why));
        if (r->wal == NULL) {
            snprintf(r->failure, sizeof(r->failure), "--durable: %s", why);
            return false;
        }
    }
    return true;
}

static void run_free(struct run *r, const struct core_opts *o)
{
    if (r->sm.memory)
        sm_destroy(&r->sm);
    if (r->wal != NULL && o->keep_data)
        fprintf(stderr, "allocdb-bench: %s: WAL kept in %s\n", r->name, bench_wal_dir(r->wal));
    bench_wal_close(r->wal, o->keep_data);
    r->wal = NULL;
}

/* Appends the entry to the WAL before it is applied (write-ahead), when --durable. */
static void log_entry(struct run *r, const struct sm_command *c)
{
    char why[200];
    if (r->counting && r->commands == 0) {
        /* Setup entries are logged too (recovery needs them), but not counted: commit them
         * before the measured phase. */
        if (!bench_wal_commit(r->wal, why, sizeof(why)) && r->failure[0] == 0)
            snprintf(r->failure, sizeof(r->failure), "%s", why);
        r->syncs_base = bench_wal_syncs(r->wal);
    }
    if (!bench_wal_log(r->wal, r->lsn + 1, r->slot, c, why, sizeof(why)) && r->failure[0] == 0)
        snprintf(r->failure, sizeof(r->failure), "%s", why);
}

static inline struct sm_outcome apply(struct run *r, struct sm_command *c)
{
    if (c->kind != SM_CMD_EXPIRE) {
        if (c->operation_id == 0)
            c->operation_id = ++r->op;
        if (c->client_id == 0)
            c->client_id = 7;
    }
    if (r->wal != NULL)
        log_entry(r, c);
    struct sm_outcome o = sm_apply(&r->sm, ++r->lsn, r->slot, c);
    if (!r->counting) {
        r->setup_commands++;
        return o;
    }
    r->commands++;
    r->results[o.result]++;
    r->cached += o.from_retry_cache;
    r->conflicts += o.result == SM_OPERATION_CONFLICT;
    r->table_full += o.result == SM_OPERATION_TABLE_FULL || o.result == SM_RESOURCE_TABLE_FULL ||
                     o.result == SM_RESERVATION_TABLE_FULL || o.result == SM_EXPIRATION_INDEX_FULL;
    if (r->sm.operation_count > r->peak_operations)
        r->peak_operations = r->sm.operation_count;
    if (r->sm.reservation_count > r->peak_reservations)
        r->peak_reservations = r->sm.reservation_count;
    if (r->sm.expiry.count > r->peak_expirations)
        r->peak_expirations = r->sm.expiry.count;
    return o;
}

/* Records the first unexpected result; returns false so the scenario stops. */
static bool expect(struct run *r, struct sm_outcome o, enum sm_result want, bool want_cached, const char *what)
{
    if (o.result == want && o.from_retry_cache == want_cached)
        return true;
    if (r->failure[0] == 0)
        snprintf(r->failure, sizeof(r->failure), "%s at lsn %" PRIu64 ": got %s%s, want %s%s", what, r->lsn,
                 sm_result_name(o.result), o.from_retry_cache ? " (cached)" : "", sm_result_name(want),
                 want_cached ? " (cached)" : "");
    return false;
}

static struct sm_command cmd(u8 kind)
{
    struct sm_command c;
    memset(&c, 0, sizeof(c));
    c.kind = kind;
    return c;
}

/* ---- one-resource-many-contenders ------------------------------------------------------ */

static bool hotspot_config(const struct core_opts *o, struct sm_config *cfg, char *why, size_t n)
{
    u64 R = o->hotspot_rounds, C = o->hotspot_contenders;
    u64 ops = R * (C + 1) + 9;
    if (R + 4 > SM_CAPACITY_MAX || ops > SM_CAPACITY_MAX || C > ops) {
        snprintf(why, n, "--hotspot-rounds x --hotspot-contenders needs more than %u operation records", SM_CAPACITY_MAX);
        return false;
    }
    memset(cfg, 0, sizeof(*cfg));
    cfg->resource_capacity = 1;
    cfg->reservation_capacity = (u32)(R + 4);
    cfg->expiration_capacity = (u32)(R + 4);
    cfg->operation_capacity = (u32)ops;
    cfg->max_ttl_slots = 4;
    cfg->dedupe_window_slots = 8;
    cfg->history_window_slots = 4;
    return true;
}

static void hotspot_run(struct run *r, const struct core_opts *o)
{
    u64 R = o->hotspot_rounds, C = o->hotspot_contenders;
    r->counting = true;
    double t0 = now_s();
    struct sm_command c = cmd(SM_CMD_CREATE_RESOURCE);
    c.resource_id = 1;
    if (!expect(r, apply(r, &c), SM_OK, false, "create"))
        return;
    u64 next_holder = R + 2;
    for (u64 round = 1; round <= R; round++) {
        r->slot = round + 1;
        struct sm_command w = cmd(SM_CMD_RESERVE);
        w.resource_id = 1;
        w.holder_id = round + 1;
        w.ttl_slots = 4;
        struct sm_outcome won = apply(r, &w);
        if (!expect(r, won, SM_OK, false, "winner reserve"))
            return;
        for (u64 k = 1; k < C; k++) {
            struct sm_command l = cmd(SM_CMD_RESERVE);
            l.resource_id = 1;
            l.holder_id = next_holder++;
            l.ttl_slots = 4;
            if (!expect(r, apply(r, &l), SM_RESOURCE_BUSY, false, "contender reserve"))
                return;
        }
        struct sm_command rel = cmd(SM_CMD_RELEASE);
        rel.reservation_id = won.reservation_id;
        rel.holder_id = round + 1;
        if (!expect(r, apply(r, &rel), SM_OK, false, "winner release"))
            return;
    }
    r->elapsed_s = now_s() - t0;
}

/* ---- high-retry-pressure --------------------------------------------------------------- */

static bool retry_config(const struct core_opts *o, struct sm_config *cfg, char *why, size_t n)
{
    u64 K = o->retry_capacity;
    if (K < 1 || K + 1 > SM_CAPACITY_MAX) {
        snprintf(why, n, "--retry-table-capacity must be 1..%u", SM_CAPACITY_MAX - 1);
        return false;
    }
    memset(cfg, 0, sizeof(*cfg));
    cfg->resource_capacity = (u32)(K + 1);
    cfg->reservation_capacity = 1;
    cfg->expiration_capacity = 1;
    cfg->operation_capacity = (u32)K;
    cfg->max_ttl_slots = 4;
    cfg->dedupe_window_slots = 8;
    cfg->history_window_slots = 4;
    return true;
}

static void retry_run(struct run *r, const struct core_opts *o)
{
    u64 K = o->retry_capacity, F = o->retry_fanout, A = o->retry_rejections;
    r->counting = true;
    double t0 = now_s();
    r->slot = 1;
    for (u64 i = 1; i <= K; i++) {
        struct sm_command c = cmd(SM_CMD_CREATE_RESOURCE);
        c.operation_id = i;
        c.resource_id = i;
        if (!expect(r, apply(r, &c), SM_OK, false, "create"))
            return;
    }
    for (u64 f = 0; f < F; f++) {
        for (u64 i = 1; i <= K; i++) {
            struct sm_command same = cmd(SM_CMD_CREATE_RESOURCE);
            same.operation_id = i;
            same.resource_id = i;
            if (!expect(r, apply(r, &same), SM_OK, true, "duplicate create"))
                return;
            struct sm_command other = cmd(SM_CMD_CREATE_RESOURCE);
            other.operation_id = i;
            other.resource_id = K + 1;
            if (!expect(r, apply(r, &other), SM_OPERATION_CONFLICT, false, "conflicting create"))
                return;
        }
    }
    for (u64 a = 1; a <= A; a++) {
        struct sm_command c = cmd(SM_CMD_CREATE_RESOURCE);
        c.operation_id = K + a;
        c.resource_id = K + 1;
        if (!expect(r, apply(r, &c), SM_OPERATION_TABLE_FULL, false, "create into a full table"))
            return;
    }
    r->slot = 10; /* past the 8-slot window: every record from slot 1 retires */
    struct sm_command c = cmd(SM_CMD_CREATE_RESOURCE);
    c.operation_id = K + A + 1;
    c.resource_id = K + 1;
    if (!expect(r, apply(r, &c), SM_OK, false, "create after retirement"))
        return;
    r->elapsed_s = now_s() - t0;
}

/* ---- uniform --------------------------------------------------------------------------- */

static bool uniform_config(const struct core_opts *o, struct sm_config *cfg, char *why, size_t n)
{
    u64 N = o->uniform_resources, cps = o->uniform_commands_per_slot;
    u64 reservations = N + (o->uniform_history_window_slots + 2) * cps;
    /* A slot may overshoot by one command (reserve + confirm pair), hence cps + 1. */
    u64 operations = (o->uniform_dedupe_window_slots + 2) * (cps + 1);
    if (N < 1 || cps < 1 || reservations > SM_CAPACITY_MAX || operations > SM_CAPACITY_MAX) {
        snprintf(why, n, "uniform: tables would exceed %u entries (resources + windows x commands per slot)",
                 SM_CAPACITY_MAX);
        return false;
    }
    memset(cfg, 0, sizeof(*cfg));
    cfg->resource_capacity = (u32)N;
    cfg->reservation_capacity = (u32)reservations;
    cfg->expiration_capacity = (u32)reservations;
    cfg->operation_capacity = (u32)operations;
    cfg->max_ttl_slots = o->uniform_max_ttl_slots;
    cfg->dedupe_window_slots = o->uniform_dedupe_window_slots;
    cfg->history_window_slots = o->uniform_history_window_slots;
    return true;
}

/*
 * The bench's own view of each resource, one word so a pick costs one cache line: the state in
 * the top two bits, the LSN of its reservation below.
 */
enum { BOOK_FREE = 0, BOOK_MAYBE_RESERVED = 1, BOOK_CONFIRMED = 2 };
#define BOOK_STATE(w) ((unsigned)((w) >> 62))
#define BOOK_LSN(w) ((w) & (((u64)1 << 62) - 1))
#define BOOK(state, lsn) (((u64)(state) << 62) | (lsn))

/*
 * Picks are made LOOKAHEAD commands early, as an applier sees a batch of committed entries
 * ahead: at distance LOOKAHEAD the bookkeeping word is prefetched, at LOOKAHEAD/2 the command
 * is known and sm_prefetch starts loading its table slot.
 */
#define LOOKAHEAD 8

struct pick {
    u64 x;   /* random bits: resource, ttl and what to do after reserving */
    u64 res; /* resource index 0..N-1 */
};

static struct sm_command uniform_command(const struct run *r, u64 word, const struct pick *p, u128 holder, u64 max_ttl)
{
    struct sm_command c = cmd(BOOK_STATE(word) == BOOK_CONFIRMED ? SM_CMD_RELEASE : SM_CMD_RESERVE);
    c.holder_id = holder;
    if (c.kind == SM_CMD_RELEASE) {
        c.reservation_id = sm_reservation_id(&r->sm, BOOK_LSN(word));
    } else {
        c.resource_id = p->res + 1;
        c.ttl_slots = 1 + (p->x >> 32) % max_ttl;
    }
    return c;
}

static void uniform_run(struct run *r, const struct core_opts *o)
{
    u64 N = o->uniform_resources, M = o->uniform_commands, cps = o->uniform_commands_per_slot;
    u64 rng = o->seed;
    u64 *book = calloc(N, sizeof(u64));
    u32 tick_max = (u32)o->uniform_expirations_per_tick;
    struct sm_due *due = calloc(tick_max, sizeof(*due));
    struct pick ring[LOOKAHEAD];
    if (!book || !due) {
        snprintf(r->failure, sizeof(r->failure), "out of memory for the bench's bookkeeping");
        goto out;
    }
    /* Setup: create every resource, advancing slots so the dedupe table drains as it would. */
    double t0 = now_s();
    u64 in_slot = 0;
    for (u64 i = 0; i < N; i++) {
        if (++in_slot > cps) {
            r->slot++;
            in_slot = 1;
        }
        struct sm_command c = cmd(SM_CMD_CREATE_RESOURCE);
        c.resource_id = i + 1;
        struct sm_outcome out = apply(r, &c);
        if (out.result != SM_OK) {
            snprintf(r->failure, sizeof(r->failure), "setup create %" PRIu64 ": %s", i + 1, sm_result_name(out.result));
            goto out;
        }
    }
    r->setup_s = now_s() - t0;

    r->counting = true;
    r->slot++;
    in_slot = 0;
    t0 = now_s();
    for (u64 i = 0; i < LOOKAHEAD; i++) {
        ring[i].x = splitmix_next(&rng);
        ring[i].res = ring[i].x % N;
    }
    for (u64 n = 0; r->commands < M; n++) {
        if (in_slot >= cps) {
            /* Slot boundary: the primary's tick proposes due expirations. */
            r->slot++;
            in_slot = 0;
            u32 due_n = sm_due_expirations(&r->sm, r->slot, due, tick_max);
            for (u32 i = 0; i < due_n && r->commands < M; i++) {
                struct sm_command e = cmd(SM_CMD_EXPIRE);
                e.reservation_id = due[i].reservation_id;
                e.deadline_slot = due[i].deadline_slot;
                if (!expect(r, apply(r, &e), SM_OK, false, "expire"))
                    goto out;
                r->expirations++;
                in_slot++;
            }
        }
        struct pick p = ring[n % LOOKAHEAD];
        struct pick *next = &ring[n % LOOKAHEAD];
        next->x = splitmix_next(&rng);
        next->res = next->x % N;
        adb_prefetch(&book[next->res]);
        const struct pick *mid = &ring[(n + LOOKAHEAD / 2) % LOOKAHEAD];
        struct sm_command ahead = uniform_command(r, book[mid->res], mid, (u128)mid->res + 1000000007ULL,
                                                  o->uniform_max_ttl_slots);
        /* The LSN it will get is a guess (confirms and expires interleave); a wrong guess
         * only wastes the hint. */
        sm_prefetch(&r->sm, 0, &ahead);

        u128 holder = (u128)p.res + 1000000007ULL;
        u64 word = book[p.res];
        struct sm_command c = uniform_command(r, word, &p, holder, o->uniform_max_ttl_slots);
        struct sm_outcome got = apply(r, &c);
        in_slot++;
        if (c.kind == SM_CMD_RELEASE) {
            if (!expect(r, got, SM_OK, false, "release confirmed"))
                goto out;
            book[p.res] = BOOK(BOOK_FREE, 0);
            continue;
        }
        if (BOOK_STATE(word) == BOOK_MAYBE_RESERVED && got.result == SM_RESOURCE_BUSY)
            continue; /* left to expire and not expired yet */
        if (!expect(r, got, SM_OK, false, "reserve"))
            goto out;
        u64 coin = (p.x >> 16) % 100;
        if (coin < 10 || r->commands >= M) {
            book[p.res] = BOOK(BOOK_MAYBE_RESERVED, U128_LO(got.reservation_id));
            continue;
        }
        struct sm_command then = cmd(coin < 55 ? SM_CMD_CONFIRM : SM_CMD_RELEASE);
        then.reservation_id = got.reservation_id;
        then.holder_id = holder;
        if (!expect(r, apply(r, &then), SM_OK, false, coin < 55 ? "confirm" : "release"))
            goto out;
        book[p.res] = coin < 55 ? BOOK(BOOK_CONFIRMED, U128_LO(got.reservation_id)) : BOOK(BOOK_FREE, 0);
        in_slot++;
    }
    r->elapsed_s = now_s() - t0;
out:
    free(book);
    free(due);
}

/* ---- reporting ------------------------------------------------------------------------- */

static double rate(const struct run *r)
{
    return r->elapsed_s > 0 ? (double)r->commands / r->elapsed_s : 0;
}

static void print_human(const struct run *r, u64 repeat)
{
    printf("scenario %s\n", r->name);
    printf("  config      resources=%u reservations=%u operations=%u expirations=%u max_ttl_slots=%" PRIu64
           " dedupe_window_slots=%" PRIu64 " history_window_slots=%" PRIu64 " memory=%.1f MiB\n",
           r->cfg.resource_capacity, r->cfg.reservation_capacity, r->cfg.operation_capacity,
           r->cfg.expiration_capacity, r->cfg.max_ttl_slots, r->cfg.dedupe_window_slots,
           r->cfg.history_window_slots, (double)r->layout_bytes / (1024.0 * 1024.0));
    if (r->failure[0]) {
        printf("  FAILED      %s\n", r->failure);
        return;
    }
    if (r->setup_commands)
        printf("  setup       %" PRIu64 " commands in %.3f s (not measured)\n", r->setup_commands, r->setup_s);
    printf("  commands    %" PRIu64 "%s\n", r->commands, repeat > 1 ? " (all runs)" : "");
    printf("  elapsed     %.6f s\n", r->elapsed_s);
    printf("  commands/s  %.0f\n", rate(r));
    printf("  ns/command  %.1f\n", r->commands ? r->elapsed_s * 1e9 / (double)r->commands : 0.0);
    printf("  counters    successful=%" PRIu64 " busy=%" PRIu64 " cached=%" PRIu64 " conflicts=%" PRIu64
           " table_full=%" PRIu64,
           r->results[SM_OK], r->results[SM_RESOURCE_BUSY], r->cached, r->conflicts, r->table_full);
    if (r->expirations)
        printf(" expirations=%" PRIu64, r->expirations);
    if (r->wal_bytes)
        printf("\n  durable     syncs=%" PRIu64 " commands/sync=%.1f wal_bytes=%" PRIu64, r->syncs,
               r->syncs ? (double)r->commands / (double)r->syncs : 0.0, r->wal_bytes);
    printf("\n  peak use    operations=%u/%u reservations=%u/%u expiring=%u/%u\n", r->peak_operations,
           r->cfg.operation_capacity, r->peak_reservations, r->cfg.reservation_capacity, r->peak_expirations,
           r->cfg.expiration_capacity);
}

static json_t *to_json(const struct run *r, u64 repeat)
{
    json_t *results = json_object();
    for (int i = 0; i < SM_RESULT_COUNT; i++)
        if (r->results[i])
            json_object_set_new(results, sm_result_name(i), json_integer((json_int_t)r->results[i]));
    json_t *o = json_pack(
        "{s:s, s:b, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}, s:I, s:I, s:f, s:f, s:I, s:f, s:I, s:I, s:I, s:I, "
        "s:I, s:o, s:{s:I, s:I, s:I}}",
        "scenario", r->name, "ok", r->failure[0] == 0, "config", "resource_capacity",
        (json_int_t)r->cfg.resource_capacity, "reservation_capacity", (json_int_t)r->cfg.reservation_capacity,
        "operation_capacity", (json_int_t)r->cfg.operation_capacity, "expiration_capacity",
        (json_int_t)r->cfg.expiration_capacity, "max_ttl_slots", (json_int_t)r->cfg.max_ttl_slots,
        "dedupe_window_slots", (json_int_t)r->cfg.dedupe_window_slots, "history_window_slots",
        (json_int_t)r->cfg.history_window_slots, "memory_bytes", (json_int_t)r->layout_bytes, "repeat",
        (json_int_t)repeat, "commands", (json_int_t)r->commands, "elapsed_s", r->elapsed_s, "commands_per_s",
        rate(r), "setup_commands", (json_int_t)r->setup_commands, "setup_s", r->setup_s, "successful",
        (json_int_t)r->results[SM_OK], "busy", (json_int_t)r->results[SM_RESOURCE_BUSY], "cached",
        (json_int_t)r->cached, "conflicts", (json_int_t)r->conflicts, "table_full", (json_int_t)r->table_full,
        "results", results, "peak", "operations", (json_int_t)r->peak_operations, "reservations",
        (json_int_t)r->peak_reservations, "expiring", (json_int_t)r->peak_expirations);
    if (r->failure[0])
        json_object_set_new(o, "failure", json_string(r->failure));
    if (r->expirations)
        json_object_set_new(o, "expirations", json_integer((json_int_t)r->expirations));
    if (r->wal_bytes) {
        json_object_set_new(o, "syncs", json_integer((json_int_t)r->syncs));
        json_object_set_new(o, "commands_per_sync",
                            json_real(r->syncs ? (double)r->commands / (double)r->syncs : 0.0));
        json_object_set_new(o, "wal_bytes", json_integer((json_int_t)r->wal_bytes));
    }
    return o;
}

/* ---- driver ---------------------------------------------------------------------------- */

struct scenario {
    const char *name;
    bool (*config)(const struct core_opts *, struct sm_config *, char *, size_t);
    void (*run)(struct run *, const struct core_opts *);
};

static const struct scenario scenarios[] = {
    { "one-resource-many-contenders", hotspot_config, hotspot_run },
    { "high-retry-pressure", retry_config, retry_run },
    { "uniform", uniform_config, uniform_run },
};

/* Runs a scenario `repeat` times on fresh state; accumulates commands and time. */
static bool run_scenario(const struct scenario *s, const struct core_opts *o, json_t *json_out)
{
    struct sm_config cfg;
    char why[256];
    struct run total;
    memset(&total, 0, sizeof(total));
    total.name = s->name;
    if (!s->config(o, &cfg, why, sizeof(why))) {
        fprintf(stderr, "allocdb-bench: %s: %s\n", s->name, why);
        return false;
    }
    for (u64 i = 0; i < o->repeat; i++) {
        struct run *r = malloc(sizeof(*r));
        if (r == NULL || !run_init(r, s->name, &cfg, o)) {
            fprintf(stderr, "allocdb-bench: %s: %s\n", s->name, r ? r->failure : "out of memory");
            if (r != NULL)
                run_free(r, o);
            free(r);
            return false;
        }
        s->run(r, o);
        if (r->wal != NULL) {
            /* The last group's sync is part of the measured work. */
            char err[200];
            double t = now_s();
            if (!bench_wal_commit(r->wal, err, sizeof(err)) && r->failure[0] == 0)
                snprintf(r->failure, sizeof(r->failure), "%s", err);
            r->elapsed_s += now_s() - t;
            r->syncs = bench_wal_syncs(r->wal) - r->syncs_base;
            r->wal_bytes = bench_wal_bytes(r->wal);
        }
        if (i == 0) {
            total = *r;
            memset(&total.sm, 0, sizeof(total.sm));
        } else {
            total.commands += r->commands;
            total.elapsed_s += r->elapsed_s;
            total.setup_s += r->setup_s;
            total.setup_commands += r->setup_commands;
            total.syncs += r->syncs;
            total.wal_bytes += r->wal_bytes;
            if (r->failure[0] && !total.failure[0])
                memcpy(total.failure, r->failure, sizeof(total.failure));
        }
        run_free(r, o);
        free(r);
        if (total.failure[0])
            break;
    }
    if (json_out)
        json_array_append_new(json_out, to_json(&total, o->repeat));
    else
        print_human(&total, o->repeat);
    return total.failure[0] == 0;
}

void bench_core_usage(FILE *out)
{
    fprintf(out,
            "Usage: allocdb-bench core [OPTIONS]\n"
            "\n"
            "Drives the allocator state machine in-process: no I/O, unless --durable writes\n"
            "every command to a WAL first.\n"
            "\n"
            "  --scenario NAME                     one-resource-many-contenders, high-retry-pressure,\n"
            "                                      uniform or all (default all)\n"
            "  --hotspot-rounds R                  rounds on the hot resource (default 256)\n"
            "  --hotspot-contenders C              reserves per round, winner included (default 32)\n"
            "  --retry-table-capacity K            dedupe table capacity (default 128)\n"
            "  --retry-duplicate-fanout F          retry rounds over every id (default 4)\n"
            "  --retry-full-rejection-attempts A   fresh ids against the full table (default 32)\n"
            "  --uniform-resources N               resources (default 1000000)\n"
            "  --uniform-commands M                measured commands (default 10000000)\n"
            "  --uniform-commands-per-slot S       commands per logical slot (default 1000)\n"
            "  --uniform-dedupe-window-slots W     dedupe window (default 60)\n"
            "  --uniform-history-window-slots H    history window (default 4)\n"
            "  --uniform-max-ttl-slots T           reserve TTLs are 1..T (default 16)\n"
            "  --uniform-expirations-per-tick E    expirations proposed per slot (default 256)\n"
            "  --seed N                            uniform's random seed (default 1)\n"
            "  --repeat N                          run each scenario N times on fresh state (default 1)\n"
            "  --durable DIR                       also write every command to a WAL in a new directory\n"
            "                                      under DIR (removed afterwards)\n"
            "  --group-commit G                    with --durable: one fdatasync per G commands (default 1)\n"
            "  --segment-bytes B                   with --durable: WAL segment size (default 67108864)\n"
            "  --keep-data                         with --durable: keep the WAL directory\n"
            "  --json                              print one JSON object instead of text\n"
            "  -h, --help                          show this help\n"
            "\n"
            "Exit status: 0 when every scenario produced exactly its expected results, 1 if one\n"
            "did not or its tables could not be allocated, 64 on a usage error.\n");
}

bool bench_parse_u64(const char *opt, const char *s, u64 min, u64 max, u64 *out)
{
    char *end;
    errno = 0;
    if (s[0] == '-' || s[0] == '\0')
        goto bad;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        goto bad;
    *out = v;
    return true;
bad:
    fprintf(stderr, "allocdb-bench: %s expects a whole number in %" PRIu64 "..%" PRIu64 ", got '%s'\n", opt,
            min, max, s);
    return false;
}

int bench_core_main(int argc, char **argv)
{
    struct core_opts o = {
        .scenario = "all",
        .hotspot_rounds = 256,
        .hotspot_contenders = 32,
        .retry_capacity = 128,
        .retry_fanout = 4,
        .retry_rejections = 32,
        .uniform_resources = 1000000,
        .uniform_commands = 10000000,
        .uniform_commands_per_slot = 1000,
        .uniform_dedupe_window_slots = 60,
        .uniform_history_window_slots = 4,
        .uniform_max_ttl_slots = 16,
        .uniform_expirations_per_tick = 256,
        .seed = 1,
        .repeat = 1,
        .group_commit = 1,
        .segment_bytes = WAL_SEGMENT_BYTES_DEFAULT_BENCH,
    };
    enum { O_SCEN = 256, O_HR, O_HC, O_RK, O_RF, O_RA, O_UN, O_UM, O_US, O_UW, O_UH, O_UT, O_UE, O_SEED, O_REP, O_JSON, O_DUR, O_GC, O_SEG, O_KEEP };
    static const struct option longopts[] = {
        { "scenario", required_argument, NULL, O_SCEN },
        { "hotspot-rounds", required_argument, NULL, O_HR },
        { "hotspot-contenders", required_argument, NULL, O_HC },
        { "retry-table-capacity", required_argument, NULL, O_RK },
        { "retry-duplicate-fanout", required_argument, NULL, O_RF },
        { "retry-full-rejection-attempts", required_argument, NULL, O_RA },
        { "uniform-resources", required_argument, NULL, O_UN },
        { "uniform-commands", required_argument, NULL, O_UM },
        { "uniform-commands-per-slot", required_argument, NULL, O_US },
        { "uniform-dedupe-window-slots", required_argument, NULL, O_UW },
        { "uniform-history-window-slots", required_argument, NULL, O_UH },
        { "uniform-max-ttl-slots", required_argument, NULL, O_UT },
        { "uniform-expirations-per-tick", required_argument, NULL, O_UE },
        { "seed", required_argument, NULL, O_SEED },
        { "repeat", required_argument, NULL, O_REP },
        { "json", no_argument, NULL, O_JSON },
        { "durable", required_argument, NULL, O_DUR },
        { "group-commit", required_argument, NULL, O_GC },
        { "segment-bytes", required_argument, NULL, O_SEG },
        { "keep-data", no_argument, NULL, O_KEEP },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const u64 big = (u64)SM_CAPACITY_MAX * 64;
    int ch;
    bool ok = true;
    optind = 1;
    while (ok && (ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (ch) {
        case O_SCEN: o.scenario = optarg; break;
        case O_HR: ok = bench_parse_u64("--hotspot-rounds", optarg, 1, SM_CAPACITY_MAX, &o.hotspot_rounds); break;
        case O_HC: ok = bench_parse_u64("--hotspot-contenders", optarg, 1, SM_CAPACITY_MAX, &o.hotspot_contenders); break;
        case O_RK: ok = bench_parse_u64("--retry-table-capacity", optarg, 1, SM_CAPACITY_MAX - 1, &o.retry_capacity); break;
        case O_RF: ok = bench_parse_u64("--retry-duplicate-fanout", optarg, 0, big, &o.retry_fanout); break;
        case O_RA: ok = bench_parse_u64("--retry-full-rejection-attempts", optarg, 0, big, &o.retry_rejections); break;
        case O_UN: ok = bench_parse_u64("--uniform-resources", optarg, 1, SM_CAPACITY_MAX, &o.uniform_resources); break;
        case O_UM: ok = bench_parse_u64("--uniform-commands", optarg, 1, UINT64_MAX / 2, &o.uniform_commands); break;
        case O_US: ok = bench_parse_u64("--uniform-commands-per-slot", optarg, 1, SM_CAPACITY_MAX, &o.uniform_commands_per_slot); break;
        case O_UW: ok = bench_parse_u64("--uniform-dedupe-window-slots", optarg, 1, 1000000, &o.uniform_dedupe_window_slots); break;
        case O_UH: ok = bench_parse_u64("--uniform-history-window-slots", optarg, 1, 1000000, &o.uniform_history_window_slots); break;
        case O_UT: ok = bench_parse_u64("--uniform-max-ttl-slots", optarg, 1, SM_MAX_TTL_SLOTS_MAX, &o.uniform_max_ttl_slots); break;
        case O_UE: ok = bench_parse_u64("--uniform-expirations-per-tick", optarg, 1, 1000000, &o.uniform_expirations_per_tick); break;
        case O_SEED: ok = bench_parse_u64("--seed", optarg, 0, UINT64_MAX, &o.seed); break;
        case O_REP: ok = bench_parse_u64("--repeat", optarg, 1, 1000000, &o.repeat); break;
        case O_JSON: o.json = true; break;
        case O_DUR: o.durable_dir = optarg; break;
        case O_GC: ok = bench_parse_u64("--group-commit", optarg, 1, 1u << 24, &o.group_commit); break;
        case O_SEG: ok = bench_parse_u64("--segment-bytes", optarg, 4096, (u64)1 << 40, &o.segment_bytes); break;
        case O_KEEP: o.keep_data = true; break;
        case 'h': bench_core_usage(stdout); return 0;
        default: ok = false; break;
        }
    }
    if (!ok) {
        fprintf(stderr, "Try 'allocdb-bench core --help'.\n");
        return EXIT_USAGE;
    }
    if (optind < argc) {
        fprintf(stderr, "allocdb-bench core: unexpected argument '%s'\n", argv[optind]);
        return EXIT_USAGE;
    }
    bool any = false, all_ok = true;
    json_t *arr = o.json ? json_array() : NULL;
    for (size_t i = 0; i < ADB_ARRAY_LEN(scenarios); i++) {
        if (strcmp(o.scenario, "all") != 0 && strcmp(o.scenario, scenarios[i].name) != 0)
            continue;
        any = true;
        all_ok &= run_scenario(&scenarios[i], &o, arr);
    }
    if (!any) {
        fprintf(stderr,
                "allocdb-bench core: unknown scenario '%s' (one-resource-many-contenders, high-retry-pressure, "
                "uniform, all)\n",
                o.scenario);
        json_decref(arr);
        return EXIT_USAGE;
    }
    if (arr) {
        json_t *doc = json_pack("{s:s, s:s, s:o}", "tool", "allocdb-bench core", "version", PACKAGE_VERSION,
                                "scenarios", arr);
        json_dumpf(doc, stdout, JSON_INDENT(2));
        fputc('\n', stdout);
        json_decref(doc);
    }
    return all_ok ? 0 : 1;
}
