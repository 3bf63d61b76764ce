/*
 * tests/test_sm_model.c — model-based randomized test of the state machine (replica/sm.c)
 * against the reference model (tests/model.c).
 *
 * For each seed a deterministic generator (splitmix64, no rand(), no clock) drives the real
 * state machine and the model with the same (lsn, request_slot, command) and compares every
 * outcome field, every read, the due-expiration query, sm_health and the invariant check.
 * The configuration (capacities, windows, max ttl, shard id, id shapes) varies per seed; the
 * last 2% of each run moves the request slot to the top of the u64 range to reach
 * slot_overflow. Each seed must observe all 16 result codes, all 4 read results and at least
 * one retry answered from the dedupe cache. Also here: "slot_edges", a fixed sequence at the
 * top of the slot range compared the same way, and "determinism", which replays one recorded
 * log on two fresh state machines and compares sm_digest() at checkpoints.
 *
 * sm_check_invariants runs every 64 commands, also past the last valid request slot (where
 * slot_overflow entries advance the slot but retire nothing).
 *
 * Reproducing a failure: the failure message names the seed, the command number, the command
 * and both outcomes. Rerun just that seed with
 *
 *     ADB_MODEL_SEED=<seed> ADB_MODEL_COMMANDS=<n> ./tests/test_sm_model
 *
 * ADB_MODEL_SEED=<n> (decimal or 0x hex) runs only that seed; ADB_MODEL_COMMANDS=<n> sets the
 * number of applied commands per seed (default 100000; reads come on top; coverage assertions
 * need at least 100000). Keep the printed ADB_MODEL_COMMANDS: the final 2% phase depends on
 * it. ADB_MODEL_VERBOSE=1 prints per-seed result counts to stderr.
 */
#include "common/splitmix.h"
#include "tests/check_main.h"
#include "tests/model.h"
#include "tests/sm_fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_COMMANDS 100000
#define COVERAGE_MIN_COMMANDS 100000
#define CHECK_EVERY 1000      /* state comparison */
#define FULL_CHECK_EVERY 10000 /* state comparison including every reservation ever issued */
#define INVARIANTS_EVERY 64
#define RING 64 /* recent fresh client commands, for retries */
#define HOLDERS 4
#define CLIENTS 3

static const u64 default_seeds[] = { 1, 2, 3, 0x5eed, 0xa110cdb, 0xdeadbeef };

/* ---- environment ------------------------------------------------------------------------ */

static bool env_u64(const char *name, u64 *out)
{
    const char *s = getenv(name);
    if (s == NULL || *s == '\0')
        return false;
    char *end;
    unsigned long long v = strtoull(s, &end, 0);
    if (*end != '\0') { /* also called from test_suite(), outside any test */
        fprintf(stderr, "%s=%s is not a number\n", name, s);
        exit(2);
    }
    *out = v;
    return true;
}

static u64 commands_per_seed(void)
{
    u64 n;
    if (!env_u64("ADB_MODEL_COMMANDS", &n))
        n = DEFAULT_COMMANDS;
    return n;
}

static bool verbose(void)
{
    const char *s = getenv("ADB_MODEL_VERBOSE");
    return s != NULL && *s != '\0' && *s != '0';
}

/* ---- PRNG (splitmix64) ------------------------------------------------------------------ */

/* ---- formatting ------------------------------------------------------------------------- */

struct text {
    char s[48];
};

static struct text t128(u128 v)
{
    struct text t;
    if (U128_HI(v) == 0)
        snprintf(t.s, sizeof(t.s), "%llu", (unsigned long long)U128_LO(v));
    else
        snprintf(t.s, sizeof(t.s), "0x%llx:%016llx", (unsigned long long)U128_HI(v),
                 (unsigned long long)U128_LO(v));
    return t;
}

static const char *result_name(unsigned r)
{
    return r < SM_RESULT_COUNT ? sm_result_name((enum sm_result)r) : "(bad result)";
}

static void describe_command(char *buf, size_t n, u64 lsn, u64 slot, const struct sm_command *c)
{
    snprintf(buf, n,
             "lsn=%llu slot=%llu %s op=%s client=%s resource=%s reservation=%s holder=%s ttl=%llu "
             "deadline=%llu",
             (unsigned long long)lsn, (unsigned long long)slot,
             c->kind >= 1 && c->kind <= SM_CMD_KIND_MAX ? sm_command_name((enum sm_command_kind)c->kind) : "?",
             t128(c->operation_id).s, t128(c->client_id).s, t128(c->resource_id).s,
             t128(c->reservation_id).s, t128(c->holder_id).s, (unsigned long long)c->ttl_slots,
             (unsigned long long)c->deadline_slot);
}

static void describe_outcome(char *buf, size_t n, const struct sm_outcome *o)
{
    snprintf(buf, n, "{%s reservation=%s deadline=%llu applied_lsn=%llu from_retry_cache=%d}",
             result_name(o->result), t128(o->reservation_id).s, (unsigned long long)o->deadline_slot,
             (unsigned long long)o->applied_lsn, o->from_retry_cache ? 1 : 0);
}

/* ---- the driver ------------------------------------------------------------------------- */

struct issued {
    u128 id;
    u128 holder;
    u64 deadline;
};

struct log_entry {
    u64 lsn, slot;
    struct sm_command cmd;
};

struct driver {
    u64 seed, rng, ncmds;
    struct sm_config cfg;
    sm_t sm;
    struct model model;
    u64 lsn, slot;
    u64 index; /* commands applied so far */
    u32 resource_range;
    bool wide_ids;
    int regime; /* how fast the slot moves */
    int mix;    /* which commands dominate */
    u64 endgame_start, endgame_edge; /* command indexes; 0 = none */
    u128 next_op;

    struct issued *issued; /* every reservation ever created, in creation order */
    u32 issued_count, issued_cap;
    struct sm_command ring[RING];
    u32 ring_count;

    u64 results[SM_RESULT_COUNT];
    u64 by_kind[SM_CMD_KIND_MAX + 1][SM_RESULT_COUNT];
    u64 reads[4];
    u64 retry_hits;
    u64 reserve_slot_overflow; /* slot_overflow from reserve's own check (slot + ttl) */

    u64 last_lsn, last_slot; /* the last applied command, for failure messages */
    struct sm_command last_cmd;

    struct log_entry *log; /* when recording (determinism test) */
    u64 log_count;
};

static u64 rnd(struct driver *d)
{
    return splitmix_next(&d->rng);
}

static u64 below(struct driver *d, u64 n)
{
    return n == 0 ? 0 : rnd(d) % n;
}

static bool chance(struct driver *d, u64 num, u64 den)
{
    return below(d, den) < num;
}

static u64 sat_add(u64 a, u64 b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static u64 max_window(const struct sm_config *c)
{
    return c->dedupe_window_slots > c->history_window_slots ? c->dedupe_window_slots : c->history_window_slots;
}

static u128 resource_key(const struct driver *d, u64 k)
{
    return d->wide_ids ? U128_MAKE(0x1000 + k, k * 0x9E3779B97F4A7C15ull) : (u128)k;
}

static u128 holder_key(const struct driver *d, u64 h)
{
    return d->wide_ids ? U128_MAKE(h + 1, 0x77) : (u128)(h + 1);
}

static u128 client_key(const struct driver *d, u64 c)
{
    return d->wide_ids ? U128_MAKE(0xC0FFEE, c + 1) : (u128)(100 + c);
}

/* Aborts the test with everything needed to reproduce. */
static void failf(const struct driver *d, const char *what, const char *detail)
{
    char cmd[512];
    describe_command(cmd, sizeof(cmd), d->last_lsn, d->last_slot, &d->last_cmd);
    ck_abort_msg("seed=%llu command #%llu: %s mismatch: %s; last command: %s; rerun: ADB_MODEL_SEED=%llu "
                 "ADB_MODEL_COMMANDS=%llu ./tests/test_sm_model",
                 (unsigned long long)d->seed, (unsigned long long)d->index, what, detail, cmd,
                 (unsigned long long)d->seed, (unsigned long long)d->ncmds);
}

/* A valid configuration derived from the seed: small tables so every "full" result appears. */
static struct sm_config config_for_seed(u64 seed, u64 *rng)
{
    struct sm_config c;
    memset(&c, 0, sizeof(c));
    c.resource_capacity = 8 + (u32)(splitmix_next(rng) % 25);                       /* 8..32 */
    c.reservation_capacity = c.resource_capacity / 2 + (u32)(splitmix_next(rng) % (c.resource_capacity / 2 + 1));
    /* 2..2/3 of the reservations, so the expiration index can fill before the reservation table. */
    c.expiration_capacity = 2 + (u32)(splitmix_next(rng) % (c.reservation_capacity * 2 / 3 - 1));
    c.max_ttl_slots = 4 + splitmix_next(rng) % 37;                                  /* 4..40 */
    c.history_window_slots = 1 + splitmix_next(rng) % 20;                           /* 1..20 */
    c.dedupe_window_slots = 8 + splitmix_next(rng) % 60;                            /* 8..67 */
    /* About two to four slots' worth of commands per dedupe window: the slow slot regime
     * (several commands per slot) fills it, the others let it drain. */
    c.operation_capacity = (u32)(2 * c.dedupe_window_slots + splitmix_next(rng) % (2 * c.dedupe_window_slots));
    c.shard_id = seed % 3 == 0 ? 1 + splitmix_next(rng) % 7 : 0;
    return c;
}

/* `cfg` NULL: the configuration is derived from the seed. */
static void driver_init(struct driver *d, u64 seed, u64 ncmds, bool record, const struct sm_config *cfg)
{
    memset(d, 0, sizeof(*d));
    d->seed = seed;
    d->rng = seed ^ 0xA110CDB5EEDull;
    d->ncmds = ncmds;
    d->cfg = config_for_seed(seed, &d->rng);
    if (cfg != NULL)
        d->cfg = *cfg;
    char why[200];
    ck_assert_msg(sm_config_validate(&d->cfg, why, sizeof(why)), "seed %llu: config: %s",
                  (unsigned long long)seed, why);
    ck_assert_msg(sm_create(&d->sm, &d->cfg, why, sizeof(why)), "sm_create: %s", why);
    ck_assert_msg(model_init(&d->model, &d->cfg), "model_init: out of memory");
    d->resource_range = d->cfg.resource_capacity + 1 + (u32)below(d, d->cfg.resource_capacity / 2 + 1);
    d->wide_ids = seed % 2 == 0;
    switch (below(d, 3)) {
    case 0: d->slot = 0; break;
    case 1: d->slot = 1; break;
    default: d->slot = ((u64)1 << 40) + below(d, 1000); break;
    }
    d->next_op = d->wide_ids ? U128_MAKE(seed, (u64)1 << 63) : 1000;
    if (ncmds >= 5000) {
        d->endgame_start = ncmds - ncmds / 50;
        d->endgame_edge = ncmds - ncmds / 200;
    }
    d->issued_cap = 1024;
    d->issued = malloc(d->issued_cap * sizeof(*d->issued));
    ck_assert_ptr_nonnull(d->issued);
    if (record) {
        d->log = malloc(ncmds * sizeof(*d->log));
        ck_assert_ptr_nonnull(d->log);
    }
}

static void driver_free(struct driver *d)
{
    sm_destroy(&d->sm);
    model_free(&d->model);
    free(d->issued);
    free(d->log);
}

static void push_issued(struct driver *d, u128 id, u128 holder, u64 deadline)
{
    if (d->issued_count == d->issued_cap) {
        d->issued_cap *= 2;
        d->issued = realloc(d->issued, d->issued_cap * sizeof(*d->issued));
        ck_assert_ptr_nonnull(d->issued);
    }
    d->issued[d->issued_count++] = (struct issued){ .id = id, .holder = holder, .deadline = deadline };
}

/* ---- slot and lsn progression ----------------------------------------------------------- */

static void advance_slot(struct driver *d)
{
    u64 top = UINT64_MAX - max_window(&d->cfg); /* the last slot that passes validation */
    if (d->endgame_start != 0 && d->index == d->endgame_start) {
        /* Far enough below the top that the remaining commands run normally for a while. */
        u64 s = top - (d->ncmds - d->endgame_start) - d->cfg.max_ttl_slots;
        if (s > d->slot)
            d->slot = s;
        return;
    }
    if (d->endgame_edge != 0 && d->index == d->endgame_edge) {
        /* Just below the last valid slot, slowly from here on: reserves whose deadline would
         * overflow (when max_ttl exceeds the windows), then the boundary itself, then
         * slot_overflow for everything. */
        u64 below_top = d->cfg.max_ttl_slots > max_window(&d->cfg)
                            ? (d->cfg.max_ttl_slots - max_window(&d->cfg)) / 2
                            : 0;
        if (top - below_top > d->slot)
            d->slot = top - below_top;
        d->regime = 0;
        return;
    }
    if (d->index % 500 == 0 && (d->endgame_edge == 0 || d->index < d->endgame_edge)) {
        d->regime = (int)below(d, 4);
        u64 m = below(d, 10);
        d->mix = m < 6 ? 0 : m < 8 ? 1 : 2;
    }
    if (d->endgame_start == 0 || d->index < d->endgame_start) {
        if (chance(d, 1, 3000)) {
            d->slot = sat_add(d->slot, max_window(&d->cfg) + d->cfg.max_ttl_slots + 1 + below(d, 200));
            return;
        }
        if (chance(d, 1, 50000)) {
            d->slot = sat_add(d->slot, ((u64)1 << 32) + below(d, (u64)1 << 20));
            return;
        }
    }
    u64 r = below(d, 100), inc;
    switch (d->regime) {
    case 0: /* slow: the operation table fills up */
        inc = r < 88 ? 0 : r < 99 ? 1 : 2;
        break;
    case 1:
        inc = r < 50 ? 0 : r < 90 ? 1 : r < 98 ? 2 + below(d, 4) : 1 + below(d, d->cfg.max_ttl_slots);
        break;
    case 2: /* fast: things expire and retire */
        inc = r < 20 ? 0 : r < 50 ? 1 : 1 + below(d, d->cfg.max_ttl_slots / 2 + 1);
        break;
    default:
        inc = r < 70 ? 0 : r < 97 ? 1 : 2 + below(d, 3);
        break;
    }
    d->slot = sat_add(d->slot, inc);
}

/* ---- apply and compare ------------------------------------------------------------------ */

static bool outcome_equal(const struct sm_outcome *a, const struct sm_outcome *b)
{
    return a->result == b->result && a->reservation_id == b->reservation_id &&
           a->deadline_slot == b->deadline_slot && a->applied_lsn == b->applied_lsn &&
           a->from_retry_cache == b->from_retry_cache;
}

/* Applies `c` to both at (d->lsn, d->slot) and compares the outcomes. */
static struct sm_outcome apply_both(struct driver *d, const struct sm_command *c)
{
    d->last_lsn = d->lsn;
    d->last_slot = d->slot;
    d->last_cmd = *c;
    d->index++;
    if (d->log != NULL)
        d->log[d->log_count++] = (struct log_entry){ .lsn = d->lsn, .slot = d->slot, .cmd = *c };

    struct sm_outcome got = sm_apply(&d->sm, d->lsn, d->slot, c);
    struct sm_outcome want = model_apply(&d->model, d->lsn, d->slot, c);
    if (!outcome_equal(&got, &want)) {
        char a[200], b[200], detail[512];
        describe_outcome(a, sizeof(a), &got);
        describe_outcome(b, sizeof(b), &want);
        snprintf(detail, sizeof(detail), "sm=%s model=%s", a, b);
        failf(d, "outcome", detail);
    }
    if (got.result < SM_RESULT_COUNT) {
        d->results[got.result]++;
        d->by_kind[c->kind <= SM_CMD_KIND_MAX ? c->kind : 0][got.result]++;
    }
    if (got.from_retry_cache)
        d->retry_hits++;
    if (got.result == SM_SLOT_OVERFLOW && d->slot <= UINT64_MAX - max_window(&d->cfg))
        d->reserve_slot_overflow++;
    if (c->kind == SM_CMD_RESERVE && got.result == SM_OK && !got.from_retry_cache)
        push_issued(d, got.reservation_id, c->holder_id, got.deadline_slot);
    return got;
}

/* The next log entry: the slot moves on (or not), the LSN grows, both apply. */
static struct sm_outcome drive(struct driver *d, const struct sm_command *c)
{
    advance_slot(d);
    d->lsn += chance(d, 1, 50) ? 2 + below(d, 5) : 1; /* occasional LSN gaps */
    return apply_both(d, c);
}

/* ---- reads ------------------------------------------------------------------------------ */

static bool resource_view_equal(const struct sm_resource_view *a, const struct sm_resource_view *b)
{
    return a->resource_id == b->resource_id && a->current_reservation_id == b->current_reservation_id &&
           a->version == b->version && a->state == b->state;
}

static bool reservation_view_equal(const struct sm_reservation_view *a, const struct sm_reservation_view *b)
{
    return a->reservation_id == b->reservation_id && a->resource_id == b->resource_id &&
           a->holder_id == b->holder_id && a->created_lsn == b->created_lsn &&
           a->deadline_slot == b->deadline_slot && a->released_lsn == b->released_lsn &&
           a->retire_after_slot == b->retire_after_slot && a->state == b->state;
}

static void compare_resource(struct driver *d, u128 id, u64 min_lsn)
{
    struct sm_resource_view a, b;
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    enum sm_read ra = sm_get_resource(&d->sm, id, min_lsn, &a);
    enum sm_read rb = model_get_resource(&d->model, id, min_lsn, &b);
    if (ra != rb || (ra == SM_READ_FOUND && !resource_view_equal(&a, &b))) {
        char detail[512];
        snprintf(detail, sizeof(detail),
                 "get_resource(%s, min_lsn=%llu): sm=%s {cur=%s version=%llu state=%u} model=%s "
                 "{cur=%s version=%llu state=%u}",
                 t128(id).s, (unsigned long long)min_lsn, sm_read_name(ra), t128(a.current_reservation_id).s,
                 (unsigned long long)a.version, a.state, sm_read_name(rb),
                 t128(b.current_reservation_id).s, (unsigned long long)b.version, b.state);
        failf(d, "read", detail);
    }
    d->reads[ra]++;
}

static void compare_reservation(struct driver *d, u128 id, u64 min_lsn)
{
    struct sm_reservation_view a, b;
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    enum sm_read ra = sm_get_reservation(&d->sm, id, min_lsn, &a);
    enum sm_read rb = model_get_reservation(&d->model, id, min_lsn, &b);
    if (ra != rb || (ra == SM_READ_FOUND && !reservation_view_equal(&a, &b))) {
        char detail[768];
        snprintf(detail, sizeof(detail),
                 "get_reservation(%s, min_lsn=%llu): sm=%s {resource=%s holder=%s created=%llu "
                 "deadline=%llu released=%llu retire_after=%llu state=%u} model=%s {resource=%s "
                 "holder=%s created=%llu deadline=%llu released=%llu retire_after=%llu state=%u}",
                 t128(id).s, (unsigned long long)min_lsn, sm_read_name(ra), t128(a.resource_id).s,
                 t128(a.holder_id).s, (unsigned long long)a.created_lsn,
                 (unsigned long long)a.deadline_slot, (unsigned long long)a.released_lsn,
                 (unsigned long long)a.retire_after_slot, a.state, sm_read_name(rb),
                 t128(b.resource_id).s, t128(b.holder_id).s, (unsigned long long)b.created_lsn,
                 (unsigned long long)b.deadline_slot, (unsigned long long)b.released_lsn,
                 (unsigned long long)b.retire_after_slot, b.state);
        failf(d, "read", detail);
    }
    d->reads[ra]++;
}

/* ---- command generation ----------------------------------------------------------------- */

static u128 junk_reservation_id(struct driver *d)
{
    u64 shard = d->cfg.shard_id;
    switch (below(d, 6)) {
    case 0: return 0;
    case 1: return U128_MAKE(shard + 1, 1 + below(d, d->lsn + 1)); /* another shard */
    case 2: return U128_MAKE(shard, 0);                           /* lsn 0 */
    case 3: return U128_MAKE(shard, d->lsn + 1 + below(d, 100));  /* the future */
    default: return U128_MAKE(shard, 1 + below(d, d->lsn + 1));   /* any past entry */
    }
}

/* Current reservation of a random resource in range, or 0. */
static u128 current_of_random_resource(struct driver *d)
{
    struct sm_resource_view v;
    u128 key = resource_key(d, 1 + below(d, d->resource_range));
    if (model_get_resource(&d->model, key, 0, &v) == SM_READ_FOUND)
        return v.current_reservation_id;
    return 0;
}

/* One of the last 8 reservations created, or 0 if none was. */
static u128 recent_reservation(struct driver *d)
{
    if (d->issued_count == 0)
        return 0;
    u32 recent = d->issued_count < 8 ? d->issued_count : 8;
    return d->issued[d->issued_count - 1 - below(d, recent)].id;
}

/* Usually a live reservation: the current one of a random resource, else a recent one. */
static u128 live_reservation(struct driver *d)
{
    u128 id = current_of_random_resource(d);
    return id != 0 ? id : recent_reservation(d);
}

/* A reservation id for confirm/release/reads, and a holder (usually the right one). */
static void pick_reservation(struct driver *d, u128 *id, u128 *holder)
{
    u64 r = below(d, 100);
    *id = 0;
    if (d->issued_count > 0) {
        if (r < 40)
            *id = recent_reservation(d);
        else if (r < 80)
            *id = live_reservation(d);
        else if (r < 85)
            *id = d->issued[below(d, d->issued_count)].id; /* any, mostly retired */
        else if (r < 90)
            *id = d->issued[below(d, d->issued_count / 2 + 1)].id; /* old: retired */
    }
    if (*id == 0)
        *id = junk_reservation_id(d);
    struct sm_reservation_view v;
    if (model_get_reservation(&d->model, *id, 0, &v) == SM_READ_FOUND && chance(d, 85, 100))
        *holder = v.holder_id;
    else
        *holder = holder_key(d, below(d, HOLDERS));
}

static u128 pick_resource(struct driver *d)
{
    if (chance(d, 9, 10))
        return resource_key(d, 1 + below(d, d->resource_range));
    return resource_key(d, d->resource_range + 1 + below(d, 50)); /* never created */
}

static u64 pick_ttl(struct driver *d)
{
    u64 r = below(d, 100);
    if (d->slot > UINT64_MAX - d->cfg.max_ttl_slots && r < 50)
        return d->cfg.max_ttl_slots; /* near the top of the slot range: the deadline overflows */
    if (r < 4)
        return 0;
    if (r < 8)
        return d->cfg.max_ttl_slots + 1 + below(d, 3);
    if (r < 14)
        return d->cfg.max_ttl_slots;
    return 1 + below(d, d->cfg.max_ttl_slots);
}

/* A client command of `kind` with random fields; operation and client ids left zero. */
static struct sm_command random_client_command(struct driver *d, u8 kind)
{
    struct sm_command c;
    u128 id, holder;
    switch (kind) {
    case SM_CMD_CREATE_RESOURCE:
        c = fx_create_cmd(resource_key(d, 1 + below(d, d->resource_range)));
        break;
    case SM_CMD_RESERVE:
        c = fx_reserve_cmd(pick_resource(d), holder_key(d, below(d, HOLDERS)), pick_ttl(d));
        break;
    case SM_CMD_CONFIRM:
        pick_reservation(d, &id, &holder);
        c = fx_confirm_cmd(id, holder);
        break;
    default:
        pick_reservation(d, &id, &holder);
        c = fx_release_cmd(id, holder);
        break;
    }
    return c;
}

static void fresh_client_command(struct driver *d, u8 kind)
{
    struct sm_command c = random_client_command(d, kind);
    c.operation_id = ++d->next_op;
    c.client_id = client_key(d, below(d, CLIENTS));
    d->ring[d->ring_count++ % RING] = c;
    drive(d, &c);
}

static void expire_command(struct driver *d)
{
    /* Mostly what a primary proposes: a due reservation with its deadline. The slot the entry
     * carries is decided in drive() and never below the one queried here, so it stays due. */
    struct sm_due due[8];
    u64 r = below(d, 100);
    u128 id = 0;
    u64 deadline = 0;
    if (r < 60) {
        u32 n = model_due_expirations(&d->model, d->slot, due, 8);
        if (n > 0) {
            u32 k = (u32)below(d, n);
            id = due[k].reservation_id;
            deadline = due[k].deadline_slot;
        } else {
            r = 60 + below(d, 40);
        }
    }
    if (id == 0 && r < 93) {
        /* 60..74: live, right deadline (early or confirmed: noop; due: ok); 75..84: wrong
         * deadline (noop); 85..92: any reservation ever created (terminal: noop; retired:
         * not found). */
        u128 cand = r < 85 ? live_reservation(d)
                           : d->issued_count > 0 ? d->issued[below(d, d->issued_count)].id : 0;
        struct sm_reservation_view v;
        if (cand != 0 && model_get_reservation(&d->model, cand, 0, &v) == SM_READ_FOUND) {
            id = cand;
            deadline = v.deadline_slot;
            if (r >= 75 && r < 85) {
                if (chance(d, 1, 2) || deadline < 3)
                    deadline += 1 + below(d, 2);
                else
                    deadline -= 1 + below(d, 2);
            }
        } else if (cand != 0) {
            id = cand;
            deadline = below(d, d->slot + 1);
        }
    }
    if (id == 0) {
        id = junk_reservation_id(d);
        deadline = below(d, d->slot + 2);
    }
    struct sm_command c = fx_expire_cmd(id, deadline);
    drive(d, &c);
}

/* The same operation id again: the same payload, or (`same` false) a different one. */
static void retry_command(struct driver *d, bool same)
{
    if (d->ring_count == 0) {
        fresh_client_command(d, SM_CMD_CREATE_RESOURCE);
        return;
    }
    u32 n = d->ring_count < RING ? d->ring_count : RING;
    struct sm_command c = d->ring[(d->ring_count - 1 - (u32)below(d, n)) % RING];
    if (!same) {
        switch (below(d, 3)) {
        case 0: /* another client with the same operation id */
            c.client_id = client_key(d, CLIENTS + below(d, 3));
            break;
        case 1: /* one field of the kind differs */
            switch (c.kind) {
            case SM_CMD_CREATE_RESOURCE:
                c.resource_id += 1;
                break;
            case SM_CMD_RESERVE:
                if (chance(d, 1, 2))
                    c.ttl_slots += 1;
                else
                    c.holder_id = holder_key(d, HOLDERS + below(d, 2));
                break;
            default:
                if (chance(d, 1, 2))
                    c.holder_id += 1;
                else
                    c.kind = c.kind == SM_CMD_CONFIRM ? SM_CMD_RELEASE : SM_CMD_CONFIRM;
                break;
            }
            break;
        default: { /* another kind */
            u8 kind = (u8)(1 + below(d, 4));
            if (kind == c.kind)
                kind = (u8)(kind % 4 + 1);
            struct sm_command m = random_client_command(d, kind);
            m.operation_id = c.operation_id;
            m.client_id = c.client_id;
            c = m;
            break;
        }
        }
    }
    drive(d, &c);
}

static u64 pick_min_lsn(struct driver *d)
{
    u64 r = below(d, 10);
    if (r < 7)
        return 0;
    if (r < 9)
        return below(d, d->lsn + 1);
    return d->lsn + 1 + below(d, 3); /* not applied yet */
}

static void read_step(struct driver *d)
{
    if (chance(d, 1, 2)) {
        u128 id = chance(d, 1, 20) ? resource_key(d, d->resource_range + 1 + below(d, 5))
                                   : resource_key(d, 1 + below(d, d->resource_range));
        compare_resource(d, id, pick_min_lsn(d));
    } else {
        u128 id, holder;
        pick_reservation(d, &id, &holder);
        compare_reservation(d, id, pick_min_lsn(d));
    }
}

/* ---- whole-state comparison ------------------------------------------------------------- */

static void compare_due(struct driver *d, u64 slot, u32 max)
{
    struct sm_due *a = calloc(max + 1, sizeof(*a)), *b = calloc(max + 1, sizeof(*b));
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    u32 na = sm_due_expirations(&d->sm, slot, a, max);
    u32 nb = model_due_expirations(&d->model, slot, b, max);
    bool same = na == nb;
    u32 first_diff = 0;
    for (u32 i = 0; same && i < na; i++) {
        if (a[i].reservation_id != b[i].reservation_id || a[i].deadline_slot != b[i].deadline_slot) {
            same = false;
            first_diff = i;
        }
    }
    if (!same) {
        char detail[512];
        snprintf(detail, sizeof(detail),
                 "sm_due_expirations(slot=%llu, max=%u): sm returned %u, model %u; first difference "
                 "at %u: sm {%s, %llu} model {%s, %llu}",
                 (unsigned long long)slot, max, na, nb, first_diff,
                 first_diff < na ? t128(a[first_diff].reservation_id).s : "-",
                 first_diff < na ? (unsigned long long)a[first_diff].deadline_slot : 0ull,
                 first_diff < nb ? t128(b[first_diff].reservation_id).s : "-",
                 first_diff < nb ? (unsigned long long)b[first_diff].deadline_slot : 0ull);
        free(a);
        free(b);
        failf(d, "due query", detail);
    }
    free(a);
    free(b);
}

static void compare_health(struct driver *d, u64 slot)
{
    struct sm_health h;
    sm_health(&d->sm, slot, &h);
    const struct model *m = &d->model;
    u64 lag = slot > m->last_request_slot ? slot - m->last_request_slot : 0;
    u32 pct = (u32)(((u64)m->operation_count * 100 + d->cfg.operation_capacity - 1) / d->cfg.operation_capacity);
    u64 backlog = model_expiration_backlog(m, slot);
    u32 exp_used = model_expirations_used(m);
    if (h.last_applied_lsn != m->last_applied_lsn || h.last_request_slot != m->last_request_slot ||
        h.logical_slot_lag != lag || h.expiration_backlog != backlog ||
        h.resources_used != m->resource_count || h.resource_capacity != d->cfg.resource_capacity ||
        h.reservations_used != m->reservation_count ||
        h.reservation_capacity != d->cfg.reservation_capacity ||
        h.operations_used != m->operation_count || h.operation_capacity != d->cfg.operation_capacity ||
        h.expirations_used != exp_used || h.expiration_capacity != d->cfg.expiration_capacity ||
        h.operation_utilization_pct != pct || h.retired_watermark_lsn != m->retired_watermark_lsn) {
        char detail[768];
        snprintf(detail, sizeof(detail),
                 "sm_health(slot=%llu): sm {lsn=%llu slot=%llu lag=%llu backlog=%llu resources=%u "
                 "reservations=%u operations=%u expirations=%u pct=%u watermark=%llu} model {lsn=%llu "
                 "slot=%llu lag=%llu backlog=%llu resources=%u reservations=%u operations=%u "
                 "expirations=%u pct=%u watermark=%llu}",
                 (unsigned long long)slot, (unsigned long long)h.last_applied_lsn,
                 (unsigned long long)h.last_request_slot, (unsigned long long)h.logical_slot_lag,
                 (unsigned long long)h.expiration_backlog, h.resources_used, h.reservations_used,
                 h.operations_used, h.expirations_used, h.operation_utilization_pct,
                 (unsigned long long)h.retired_watermark_lsn, (unsigned long long)m->last_applied_lsn,
                 (unsigned long long)m->last_request_slot, (unsigned long long)lag,
                 (unsigned long long)backlog, m->resource_count, m->reservation_count,
                 m->operation_count, exp_used, pct, (unsigned long long)m->retired_watermark_lsn);
        failf(d, "health", detail);
    }
}

static void check_invariants(struct driver *d)
{
    char why[256];
    if (!sm_check_invariants(&d->sm, why, sizeof(why)))
        failf(d, "sm_check_invariants", why);
}

static void compare_state(struct driver *d, bool full)
{
    const struct sm_config *c = &d->cfg;
    u64 s = d->model.last_request_slot;

    compare_resource(d, 0, 0);
    for (u64 k = 1; k <= d->resource_range + 2; k++)
        compare_resource(d, resource_key(d, k), 0);

    for (u32 i = 0; i < d->model.reservation_count; i++)
        compare_reservation(d, d->model.reservations[i].reservation_id, 0);
    u32 from = full || d->issued_count < 256 ? 0 : d->issued_count - 256;
    for (u32 i = from; i < d->issued_count; i++)
        compare_reservation(d, d->issued[i].id, 0);
    for (int i = 0; i < 8; i++)
        compare_reservation(d, junk_reservation_id(d), 0);

    compare_health(d, s);
    compare_health(d, sat_add(s, 1));
    compare_health(d, sat_add(s, c->max_ttl_slots));
    compare_health(d, 0);

    compare_due(d, s, c->reservation_capacity + 1);
    compare_due(d, sat_add(s, below(d, c->max_ttl_slots + 1)), 3);
    compare_due(d, sat_add(s, c->max_ttl_slots), c->reservation_capacity);
    compare_due(d, s, 1);
    compare_due(d, 0, c->reservation_capacity);

    check_invariants(d);
}

/* ---- the run ---------------------------------------------------------------------------- */

/* Command mixes, per mille: normal; reserve-heavy (fills the reservation table and the
 * expiration index); draining (releases and expirations). */
enum { MIX_READ, MIX_CREATE, MIX_RESERVE, MIX_CONFIRM, MIX_RELEASE, MIX_EXPIRE, MIX_RETRY, MIX_CONFLICT, MIX_KINDS };
static const u16 mixes[3][MIX_KINDS] = {
    { 100, 80, 250, 130, 130, 130, 120, 60 },
    { 80, 20, 500, 150, 20, 30, 150, 50 },
    { 100, 40, 150, 100, 300, 250, 40, 20 },
};

static void step(struct driver *d)
{
    u64 r = below(d, 1000);
    int k = 0;
    while (k < MIX_KINDS - 1 && r >= mixes[d->mix][k])
        r -= mixes[d->mix][k++];
    switch (k) {
    case MIX_READ: read_step(d); break;
    case MIX_CREATE: fresh_client_command(d, SM_CMD_CREATE_RESOURCE); break;
    case MIX_RESERVE: fresh_client_command(d, SM_CMD_RESERVE); break;
    case MIX_CONFIRM: fresh_client_command(d, SM_CMD_CONFIRM); break;
    case MIX_RELEASE: fresh_client_command(d, SM_CMD_RELEASE); break;
    case MIX_EXPIRE: expire_command(d); break;
    case MIX_RETRY: retry_command(d, true); break;
    default: retry_command(d, false); break;
    }
}

static void run(struct driver *d)
{
    while (d->index < d->ncmds) {
        u64 before = d->index;
        step(d);
        if (d->index == before)
            continue;
        if (d->index % INVARIANTS_EVERY == 0) {
            check_invariants(d);
            compare_health(d, d->slot);
            compare_due(d, d->slot, 4);
        }
        if (d->index % CHECK_EVERY == 0)
            compare_state(d, d->index % FULL_CHECK_EVERY == 0);
    }
    compare_state(d, true);
}

static void print_counts(const struct driver *d)
{
    fprintf(stderr, "# seed %llu: cfg res=%u resv=%u ops=%u exp=%u ttl=%llu dedupe=%llu history=%llu shard=%llu; "
                    "%llu commands, %u reservations, %llu retry hits, %llu reserve slot_overflow, reads f/nf/ret/fence=%llu/%llu/%llu/%llu\n",
            (unsigned long long)d->seed, d->cfg.resource_capacity, d->cfg.reservation_capacity,
            d->cfg.operation_capacity, d->cfg.expiration_capacity, (unsigned long long)d->cfg.max_ttl_slots,
            (unsigned long long)d->cfg.dedupe_window_slots, (unsigned long long)d->cfg.history_window_slots,
            (unsigned long long)d->cfg.shard_id, (unsigned long long)d->index, d->issued_count,
            (unsigned long long)d->retry_hits, (unsigned long long)d->reserve_slot_overflow,
            (unsigned long long)d->reads[0], (unsigned long long)d->reads[1],
            (unsigned long long)d->reads[2], (unsigned long long)d->reads[3]);
    fprintf(stderr, "#   %-24s %8s %8s %8s %8s %8s %8s\n", "result", "total", "create", "reserve",
            "confirm", "release", "expire");
    for (unsigned r = 0; r < SM_RESULT_COUNT; r++)
        fprintf(stderr, "#   %-24s %8llu %8llu %8llu %8llu %8llu %8llu\n", result_name(r),
                (unsigned long long)d->results[r], (unsigned long long)d->by_kind[1][r],
                (unsigned long long)d->by_kind[2][r], (unsigned long long)d->by_kind[3][r],
                (unsigned long long)d->by_kind[4][r], (unsigned long long)d->by_kind[5][r]);
}

/* ---- edges: a fixed sequence at the top of the slot range ------------------------------ */

/* Applies at `slot` as the next LSN; checks the result code (both sides already agreed). */
static struct sm_outcome edge(struct driver *d, u64 slot, u128 op, struct sm_command c, enum sm_result want)
{
    if (c.kind != SM_CMD_EXPIRE) {
        c.operation_id = op;
        c.client_id = client_key(d, 0);
    }
    d->slot = slot;
    d->lsn++;
    struct sm_outcome o = apply_both(d, &c);
    if (o.result != want) {
        char detail[256];
        snprintf(detail, sizeof(detail), "expected %s, both gave %s", result_name(want), result_name(o.result));
        failf(d, "edge case", detail);
    }
    return o;
}

/*
 * Loop index 0: dedupe window 10 > history window 5; 1: history window 20 > dedupe window 10.
 * Deadlines up to UINT64_MAX, reserve's own slot_overflow (recorded, so a retry answers it from
 * the cache), the last valid slot, and slot validation of every kind one slot later.
 */
START_TEST(test_slot_edges)
{
    struct sm_config cfg = fx_small_config(); /* ttl <= 16, dedupe 10, history 5 */
    if (_i == 1)
        cfg.history_window_slots = 20;
    struct driver *d = calloc(1, sizeof(*d));
    ck_assert_ptr_nonnull(d);
    driver_init(d, 900 + (u64)_i, 0, false, &cfg);
    d->resource_range = 4;
    u64 top = UINT64_MAX - max_window(&cfg);
    u128 op = 1;

    for (u64 k = 1; k <= 4; k++)
        edge(d, top - 16, op++, fx_create_cmd(resource_key(d, k)), SM_OK);
    u128 h = holder_key(d, 0);
    struct sm_outcome r1 = edge(d, top - 16, op++, fx_reserve_cmd(resource_key(d, 1), h, 16), SM_OK);
    ck_assert(r1.deadline_slot == top);
    /* A slot where ttl 16 overflows and ttl 15 ends at UINT64_MAX (only valid when the largest
     * window is below 16, i.e. loop index 0). */
    u64 s = UINT64_MAX - 15;
    if (s > top)
        s = top;
    u128 overflow_op = op++;
    u64 ttl_over = UINT64_MAX - s + 1, ttl_max = UINT64_MAX - s;
    if (ttl_over <= cfg.max_ttl_slots) {
        edge(d, s, overflow_op, fx_reserve_cmd(resource_key(d, 2), h, ttl_over), SM_SLOT_OVERFLOW);
        struct sm_outcome again =
            edge(d, s, overflow_op, fx_reserve_cmd(resource_key(d, 2), h, ttl_over), SM_SLOT_OVERFLOW);
        ck_assert(again.from_retry_cache);
        struct sm_outcome r3 = edge(d, s, op++, fx_reserve_cmd(resource_key(d, 3), h, ttl_max), SM_OK);
        ck_assert(r3.deadline_slot == UINT64_MAX);
        edge(d, top, 0, fx_expire_cmd(r3.reservation_id, UINT64_MAX), SM_NOOP); /* early */
    }
    edge(d, top, op++, fx_release_cmd(r1.reservation_id, h), SM_OK);
    edge(d, top, op++, fx_reserve_cmd(resource_key(d, 4), h, 1), SM_OK);
    compare_state(d, true);
    compare_due(d, UINT64_MAX, 8);
    compare_health(d, UINT64_MAX);

    /* One slot further: every kind fails validation, nothing is recorded or retired. */
    edge(d, top + 1, op++, fx_create_cmd(resource_key(d, 2)), SM_SLOT_OVERFLOW);
    edge(d, top + 1, overflow_op, fx_reserve_cmd(resource_key(d, 2), h, 1), SM_SLOT_OVERFLOW);
    edge(d, top + 1, op++, fx_confirm_cmd(r1.reservation_id, h), SM_SLOT_OVERFLOW);
    edge(d, top + 1, 0, fx_expire_cmd(r1.reservation_id, r1.deadline_slot), SM_SLOT_OVERFLOW);
    edge(d, UINT64_MAX, op++, fx_release_cmd(r1.reservation_id, h), SM_SLOT_OVERFLOW);
    compare_state(d, true);
    compare_due(d, UINT64_MAX, 8);
    driver_free(d);
    free(d);
}
END_TEST

static u64 seeds[ADB_ARRAY_LEN(default_seeds)];
static int seed_count;

START_TEST(test_model_seed)
{
    struct driver *d = calloc(1, sizeof(*d));
    ck_assert_ptr_nonnull(d);
    driver_init(d, seeds[_i], commands_per_seed(), false, NULL);
    run(d);
    if (verbose())
        print_counts(d);
    if (d->ncmds >= COVERAGE_MIN_COMMANDS) {
        for (unsigned r = 0; r < SM_RESULT_COUNT; r++)
            ck_assert_msg(d->results[r] > 0, "seed %llu: result %s never observed in %llu commands",
                          (unsigned long long)d->seed, result_name(r), (unsigned long long)d->ncmds);
        for (unsigned r = 0; r < 4; r++)
            ck_assert_msg(d->reads[r] > 0, "seed %llu: read result %s never observed",
                          (unsigned long long)d->seed, sm_read_name((enum sm_read)r));
        ck_assert_msg(d->retry_hits > 0, "seed %llu: no retry was answered from the dedupe cache",
                      (unsigned long long)d->seed);
    }
    driver_free(d);
    free(d);
}
END_TEST

/* ---- determinism ------------------------------------------------------------------------ */

#define DET_COMMANDS 20000
#define DET_CHECKPOINTS 4

/* Replays a recorded run on a fresh state machine; digests after each quarter. */
static void replay(const struct driver *d, struct sm_digest out[DET_CHECKPOINTS])
{
    sm_t sm;
    char why[200];
    ck_assert_msg(sm_create(&sm, &d->cfg, why, sizeof(why)), "sm_create: %s", why);
    int k = 0;
    for (u64 i = 0; i < d->log_count; i++) {
        sm_apply(&sm, d->log[i].lsn, d->log[i].slot, &d->log[i].cmd);
        if ((i + 1) % (d->log_count / DET_CHECKPOINTS) == 0 && k < DET_CHECKPOINTS)
            out[k++] = sm_digest(&sm);
    }
    ck_assert_int_eq(k, DET_CHECKPOINTS);
    struct sm_digest live = sm_digest(&d->sm);
    ck_assert_msg(memcmp(&live, &out[DET_CHECKPOINTS - 1], sizeof(live)) == 0,
                  "replayed digest differs from the live state machine's");
    sm_destroy(&sm);
}

START_TEST(test_determinism)
{
    struct driver *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);

    driver_init(a, 7, DET_COMMANDS, true, NULL);
    run(a);
    struct sm_digest x[DET_CHECKPOINTS], y[DET_CHECKPOINTS];
    replay(a, x);
    replay(a, y);
    for (int k = 0; k < DET_CHECKPOINTS; k++)
        ck_assert_msg(memcmp(&x[k], &y[k], sizeof(x[k])) == 0,
                      "checkpoint %d: two replays of the same log digest differently", k);

    /* Same seed and config, different command sequence. */
    driver_init(b, 7, DET_COMMANDS, true, NULL);
    b->rng ^= 0x5A5A5A5A12345ull;
    run(b);
    struct sm_digest z[DET_CHECKPOINTS];
    replay(b, z);
    for (int k = 1; k < DET_CHECKPOINTS; k++)
        ck_assert_msg(memcmp(&x[k], &z[k], sizeof(x[k])) != 0,
                      "checkpoint %d: different logs digest the same", k);

    driver_free(a);
    driver_free(b);
    free(a);
    free(b);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("sm_model");
    u64 one;
    if (env_u64("ADB_MODEL_SEED", &one)) {
        seeds[0] = one;
        seed_count = 1;
    } else {
        for (size_t i = 0; i < ADB_ARRAY_LEN(default_seeds); i++)
            seeds[i] = default_seeds[i];
        seed_count = (int)ADB_ARRAY_LEN(default_seeds);
    }

    TCase *tc = tcase_create("model");
    tcase_set_timeout(tc, TEST_LONG_TIMEOUT);
    tcase_add_loop_test(tc, test_model_seed, 0, seed_count);
    suite_add_tcase(s, tc);

    tc = tcase_create("slot_edges");
    tcase_add_loop_test(tc, test_slot_edges, 0, 2);
    suite_add_tcase(s, tc);

    tc = tcase_create("determinism");
    tcase_set_timeout(tc, TEST_LONG_TIMEOUT);
    tcase_add_test(tc, test_determinism);
    suite_add_tcase(s, tc);
    return s;
}
