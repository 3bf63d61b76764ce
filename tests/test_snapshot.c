/*
 * tests/test_snapshot.c — snapshots of the state machine (replica/snapshot.c).
 *
 * roundtrip      random workloads (every command kind, retries, conflicts, expirations from the
 *                due query, retirement, slot jumps, LSN gaps, the top of the slot range), a
 *                snapshot at many random points: decode must succeed, re-encode to the same
 *                bytes, digest the same, and then the original and the copy take the same
 *                commands with identical outcomes, digests, reads, due queries and health.
 *                Pool layouts (free stacks) of copies differ from the originals: checked, so
 *                the equalities above show layout does not matter.
 * empty          the state before any apply.
 * truncation     every shorter length is SNAPSHOT_SHORT; a longer one SNAPSHOT_TRAILING.
 * bit_flips      every bit of a small snapshot, sampled bits of a larger one: magic, version,
 *                else checksum.
 * config         a mismatch in each config field, named in the message.
 * crafted        semantically bad snapshots with valid checksums: each gets its own status.
 * due_list       an expiration index with a bucket already on the due list and one in the
 *                wheel restores to the same answers and evolves the same.
 * mutations      random mutations with checksums repaired: never a crash; an
 *                accepted state passes the invariants and keeps applying commands.
 * files          write/read through io_posix in a temp dir; stale temp files; every failing
 *                I/O step leaves neither a temp nor a final file.
 * names          snapshot_file_name / snapshot_parse_name strictness; status names.
 * timing         encode and decode of 1M reservations, printed as a TAP comment (release
 *                builds; debug and sanitizer builds use fewer). ADB_SNAPSHOT_TIMING_N overrides.
 */
#include "common/crc32c.h"
#include "common/le.h"
#include "common/splitmix.h"
#include "replica/snapshot.h"
#include "tests/check_main.h"
#include "tests/sm_fixture.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef unsigned long long ull;

#define RING 32
#define ISSUED 64
#define HOLDERS 4

/* ---- a random command generator -------------------------------------------------------- */

struct gen {
    u64 rng;
    struct sm_config cfg;
    const sm_t *sm; /* the state commands are chosen against */
    u64 lsn, slot, index;
    u128 next_op;
    u32 resource_range;
    int regime;
    u64 top_at; /* command index where the slot jumps to the top of the range; 0 = never */
    struct sm_command ring[RING];
    u32 ring_count;
    u128 issued[ISSUED];
    u32 issued_count;
};

static u64 rnd(struct gen *g) { return splitmix_next(&g->rng); }
static u64 below(struct gen *g, u64 n) { return n == 0 ? 0 : rnd(g) % n; }
static bool chance(struct gen *g, u64 num, u64 den) { return below(g, den) < num; }

static u64 sat_add(u64 a, u64 b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static u64 max_window(const struct sm_config *c)
{
    return c->dedupe_window_slots > c->history_window_slots ? c->dedupe_window_slots : c->history_window_slots;
}

static struct sm_config random_config(u64 *rng, bool large)
{
    struct sm_config c;
    memset(&c, 0, sizeof(c));
    u32 base = large ? 1500 : 8;
    c.resource_capacity = base + (u32)(splitmix_next(rng) % (base * 3));
    c.reservation_capacity = c.resource_capacity / 2 + (u32)(splitmix_next(rng) % (c.resource_capacity / 2 + 1));
    c.expiration_capacity = 2 + (u32)(splitmix_next(rng) % (c.reservation_capacity - 1));
    c.max_ttl_slots = 4 + splitmix_next(rng) % 60;
    c.history_window_slots = 1 + splitmix_next(rng) % 20;
    c.dedupe_window_slots = 4 + splitmix_next(rng) % 40;
    c.operation_capacity = (u32)(large ? 8 * base : 2 * c.dedupe_window_slots + splitmix_next(rng) % 64);
    c.shard_id = splitmix_next(rng) % 3 == 0 ? 1 + splitmix_next(rng) % 5 : 0;
    return c;
}

static void gen_init(struct gen *g, u64 seed, const struct sm_config *cfg, const sm_t *sm, u64 commands)
{
    memset(g, 0, sizeof(*g));
    g->rng = seed * 0x9E3779B97F4A7C15ull + 17;
    g->cfg = *cfg;
    g->sm = sm;
    g->lsn = sm->last_applied_lsn;
    g->slot = sm->last_request_slot;
    if (g->slot == 0 && chance(g, 1, 3))
        g->slot = ((u64)1 << 40) + below(g, 1000);
    g->next_op = U128_MAKE(seed, (u64)1 << 62);
    g->resource_range = cfg->resource_capacity + 1 + (u32)below(g, cfg->resource_capacity / 4 + 2);
    g->top_at = commands >= 2000 && chance(g, 1, 2) ? commands - commands / 40 : 0;
}

static u128 resource_key(const struct gen *g, u64 k)
{
    return g->cfg.shard_id % 2 ? U128_MAKE(k * 7 + 1, k * 0x9E3779B97F4A7C15ull) : (u128)k;
}

static u64 pick_ttl(struct gen *g)
{
    u64 r = below(g, 100);
    if (r < 3)
        return 0;
    if (r < 6)
        return g->cfg.max_ttl_slots + 1;
    if (r < 15)
        return g->cfg.max_ttl_slots;
    return 1 + below(g, g->cfg.max_ttl_slots);
}

/* A reservation id (often live) and a holder (usually its own). */
static void pick_reservation(struct gen *g, u128 *id, u128 *holder)
{
    u64 r = below(g, 100);
    *id = 0;
    if (r < 50) {
        struct sm_resource_view v;
        if (sm_get_resource(g->sm, resource_key(g, 1 + below(g, g->resource_range)), 0, &v) == SM_READ_FOUND)
            *id = v.current_reservation_id;
    }
    if (*id == 0 && g->issued_count > 0 && r < 95) {
        u32 n = g->issued_count < ISSUED ? g->issued_count : ISSUED;
        *id = g->issued[(g->issued_count - 1 - below(g, n)) % ISSUED];
    }
    if (*id == 0)
        *id = U128_MAKE(g->cfg.shard_id + (chance(g, 1, 10) ? 1 : 0), below(g, g->lsn + 3));
    struct sm_reservation_view v;
    if (sm_get_reservation(g->sm, *id, 0, &v) == SM_READ_FOUND && chance(g, 85, 100))
        *holder = v.holder_id;
    else
        *holder = 1 + below(g, HOLDERS);
}

static struct sm_command client_command(struct gen *g, u8 kind)
{
    u128 id, holder;
    switch (kind) {
    case SM_CMD_CREATE_RESOURCE: return fx_create_cmd(resource_key(g, 1 + below(g, g->resource_range)));
    case SM_CMD_RESERVE:
        return fx_reserve_cmd(resource_key(g, 1 + below(g, g->resource_range + 3)), 1 + below(g, HOLDERS),
                              pick_ttl(g));
    case SM_CMD_CONFIRM: pick_reservation(g, &id, &holder); return fx_confirm_cmd(id, holder);
    default: pick_reservation(g, &id, &holder); return fx_release_cmd(id, holder);
    }
}

static void advance_slot(struct gen *g)
{
    if (g->top_at != 0 && g->index == g->top_at) {
        /* The top of the slot range: deadlines near UINT64_MAX, then slot_overflow. */
        u64 top = UINT64_MAX - max_window(&g->cfg);
        u64 back = below(g, 3 * g->cfg.max_ttl_slots);
        g->slot = top - back > g->slot ? top - back : g->slot;
        return;
    }
    if (g->index % 2000 == 0)
        g->regime = (int)below(g, 3);
    u64 r = below(g, 1000), inc;
    if (r < 2) {
        inc = max_window(&g->cfg) + 1 + below(g, 3); /* everything in history retires */
    } else {
        r %= 100;
        switch (g->regime) {
        case 0: inc = r < 85 ? 0 : r < 98 ? 1 : 2; break;
        case 1: inc = r < 50 ? 0 : r < 90 ? 1 : 1 + below(g, g->cfg.max_ttl_slots); break;
        default: inc = r < 20 ? 0 : r < 50 ? 1 : 1 + below(g, g->cfg.max_ttl_slots / 2 + 1); break;
        }
    }
    g->slot = sat_add(g->slot, inc);
}

/* The next log entry: (lsn, slot, command). */
static struct sm_command gen_next(struct gen *g, u64 *lsn, u64 *slot)
{
    advance_slot(g);
    g->lsn += chance(g, 1, 40) ? 2 + below(g, 4) : 1;
    g->index++;
    *lsn = g->lsn;
    *slot = g->slot;
    struct sm_command c;
    u64 r = below(g, 100);
    if (r < 12) {
        struct sm_due due[8];
        u32 n = sm_due_expirations(g->sm, g->slot, due, 8);
        if (n > 0 && chance(g, 4, 5)) {
            u32 k = (u32)below(g, n);
            return fx_expire_cmd(due[k].reservation_id, due[k].deadline_slot);
        }
        u128 id, holder;
        pick_reservation(g, &id, &holder);
        struct sm_reservation_view v;
        u64 deadline = below(g, g->slot + 2);
        if (sm_get_reservation(g->sm, id, 0, &v) == SM_READ_FOUND)
            deadline = v.deadline_slot + (chance(g, 1, 4) ? 1 : 0);
        return fx_expire_cmd(id, deadline);
    }
    if (r < 27 && g->ring_count > 0) {
        /* The same operation id again: usually the same command, else a conflicting one. */
        u32 n = g->ring_count < RING ? g->ring_count : RING;
        c = g->ring[(g->ring_count - 1 - (u32)below(g, n)) % RING];
        if (chance(g, 1, 4)) {
            struct sm_command m = client_command(g, (u8)(1 + below(g, 4)));
            m.operation_id = c.operation_id;
            m.client_id = c.client_id;
            c = m;
        }
        return c;
    }
    static const u8 kinds[] = { SM_CMD_CREATE_RESOURCE, SM_CMD_CREATE_RESOURCE, SM_CMD_RESERVE, SM_CMD_RESERVE,
                                SM_CMD_RESERVE,         SM_CMD_RESERVE,         SM_CMD_CONFIRM, SM_CMD_CONFIRM,
                                SM_CMD_RELEASE,         SM_CMD_RELEASE };
    c = client_command(g, kinds[below(g, ADB_ARRAY_LEN(kinds))]);
    c.operation_id = ++g->next_op;
    c.client_id = 100 + below(g, 3);
    g->ring[g->ring_count++ % RING] = c;
    return c;
}

/* Feeds back what the primary answered (new reservation ids). */
static void gen_observe(struct gen *g, const struct sm_command *c, const struct sm_outcome *o)
{
    if (c->kind == SM_CMD_RESERVE && o->result == SM_OK && !o->from_retry_cache)
        g->issued[g->issued_count++ % ISSUED] = o->reservation_id;
}

/* ---- comparisons ----------------------------------------------------------------------- */

static void describe(char *buf, size_t n, const struct sm_outcome *o)
{
    snprintf(buf, n, "{%s id=%llx:%llx deadline=%llu lsn=%llu cached=%d}", sm_result_name(o->result),
             (ull)U128_HI(o->reservation_id), (ull)U128_LO(o->reservation_id), (ull)o->deadline_slot,
             (ull)o->applied_lsn, o->from_retry_cache);
}

static void assert_same_outcome(const struct sm_outcome *a, const struct sm_outcome *b, const char *where)
{
    if (a->result == b->result && a->reservation_id == b->reservation_id && a->deadline_slot == b->deadline_slot &&
        a->applied_lsn == b->applied_lsn && a->from_retry_cache == b->from_retry_cache)
        return;
    char x[160], y[160];
    describe(x, sizeof(x), a);
    describe(y, sizeof(y), b);
    ck_abort_msg("%s: outcomes differ: original %s, restored %s", where, x, y);
}

static void assert_same_digest(const sm_t *a, const sm_t *b, const char *where)
{
    struct sm_digest x = sm_digest(a), y = sm_digest(b);
    ck_assert_msg(x.lo == y.lo && x.hi == y.hi, "%s: digests differ", where);
}

static void assert_same_due(const sm_t *a, const sm_t *b, u64 slot, u32 max)
{
    struct sm_due *x = calloc(max + 1, sizeof(*x)), *y = calloc(max + 1, sizeof(*y));
    ck_assert_ptr_nonnull(x);
    ck_assert_ptr_nonnull(y);
    u32 n = sm_due_expirations(a, slot, x, max), m = sm_due_expirations(b, slot, y, max);
    ck_assert_msg(n == m, "due(%llu, %u): %u vs %u", (ull)slot, max, n, m);
    for (u32 i = 0; i < n; i++)
        ck_assert_msg(x[i].reservation_id == y[i].reservation_id && x[i].deadline_slot == y[i].deadline_slot,
                      "due(%llu) entry %u differs", (ull)slot, i);
    free(x);
    free(y);
}

static void assert_same_health(const sm_t *a, const sm_t *b, u64 slot)
{
    struct sm_health x, y;
    sm_health(a, slot, &x);
    sm_health(b, slot, &y);
    ck_assert_msg(memcmp(&x, &y, sizeof(x)) == 0, "health at slot %llu differs", (ull)slot);
}

/* Reads of every resource key in range and of recent reservation ids, due queries, health. */
static void assert_same_views(const struct gen *g, const sm_t *a, const sm_t *b)
{
    for (u64 k = 0; k <= g->resource_range + 3; k++) {
        struct sm_resource_view x, y;
        memset(&x, 0, sizeof(x));
        memset(&y, 0, sizeof(y));
        u128 id = resource_key(g, k);
        enum sm_read rx = sm_get_resource(a, id, 0, &x), ry = sm_get_resource(b, id, 0, &y);
        ck_assert_msg(rx == ry && memcmp(&x, &y, sizeof(x)) == 0, "get_resource(%llu) differs", (ull)k);
    }
    for (u64 lsn = g->lsn > 300 ? g->lsn - 300 : 0; lsn <= g->lsn + 1; lsn++) {
        struct sm_reservation_view x, y;
        memset(&x, 0, sizeof(x));
        memset(&y, 0, sizeof(y));
        u128 id = U128_MAKE(g->cfg.shard_id, lsn);
        enum sm_read rx = sm_get_reservation(a, id, 0, &x), ry = sm_get_reservation(b, id, 0, &y);
        ck_assert_msg(rx == ry && memcmp(&x, &y, sizeof(x)) == 0, "get_reservation(lsn %llu) differs", (ull)lsn);
    }
    u64 s = a->last_request_slot;
    u32 cap = g->cfg.reservation_capacity + 1;
    assert_same_due(a, b, s, cap);
    assert_same_due(a, b, s, 3);
    assert_same_due(a, b, sat_add(s, g->cfg.max_ttl_slots / 2), cap);
    assert_same_due(a, b, sat_add(s, g->cfg.max_ttl_slots), cap);
    assert_same_due(a, b, UINT64_MAX, cap);
    assert_same_health(a, b, s);
    assert_same_health(a, b, sat_add(s, g->cfg.max_ttl_slots));
}

/* ---- snapshot helpers ------------------------------------------------------------------ */

struct blob {
    u8 *p;
    u64 len;
};

/*
 * The operation records of the last state encoded: a version 2 snapshot leaves them to the
 * operation log, so decoding takes them from here (tests mutate this copy to damage them).
 */
static struct sm_operation *ops_copy;
static u32 ops_count;

static void keep_ops(const sm_t *sm)
{
    free(ops_copy);
    ops_count = sm->operation_count;
    ops_copy = malloc(sizeof(*ops_copy) * (ops_count + 1));
    ck_assert_ptr_nonnull(ops_copy);
    for (u32 i = 0; i < ops_count; i++)
        ops_copy[i] = *sm_operation_at(sm, i);
}

static struct blob encode(const sm_t *sm)
{
    struct blob b;
    b.len = snapshot_encoded_size(sm);
    b.p = malloc(b.len + 1);
    ck_assert_ptr_nonnull(b.p);
    u64 n = snapshot_encode(sm, b.p, b.len);
    ck_assert_uint_eq(n, b.len);
    keep_ops(sm);
    return b;
}

/* Decodes into a new state machine (created with cfg); returns the status, why in `why`. */
static enum snapshot_status decode_new(const struct blob *b, const struct sm_config *cfg, sm_t *out, char *why,
                                       size_t why_len)
{
    char reason[200];
    ck_assert_msg(sm_create(out, cfg, reason, sizeof(reason)), "sm_create: %s", reason);
    struct snapshot_ops_array a;
    struct snapshot_ops ops = snapshot_ops_from_array(&a, ops_copy, ops_count);
    return snapshot_decode(b->p, b->len, cfg, &ops, out, why, why_len);
}

/* Decodes and discards; the status. */
static enum snapshot_status decode_status(const u8 *p, u64 len, const struct sm_config *cfg, char *why,
                                          size_t why_len)
{
    struct blob b = { (u8 *)p, len };
    sm_t sm;
    enum snapshot_status st = decode_new(&b, cfg, &sm, why, why_len);
    sm_destroy(&sm);
    return st;
}

/* Builds a state by running the generator `n` commands on a new state machine. */
static void build_state(sm_t *sm, const struct sm_config *cfg, u64 seed, u64 n)
{
    char why[200];
    ck_assert_msg(sm_create(sm, cfg, why, sizeof(why)), "sm_create: %s", why);
    struct gen g;
    gen_init(&g, seed, cfg, sm, 0);
    for (u64 i = 0; i < n; i++) {
        u64 lsn, slot;
        struct sm_command c = gen_next(&g, &lsn, &slot);
        struct sm_outcome o = sm_apply(sm, lsn, slot, &c);
        gen_observe(&g, &c, &o);
    }
}

/* ---- images (state transfer): snapshot + operation records ------------------------------ */

START_TEST(test_image)
{
    u64 rng = 0x1a6e;
    struct sm_config cfg = random_config(&rng, false);
    sm_t a, b;
    build_state(&a, &cfg, 0x1a6e, 3000);
    ck_assert_msg(a.operation_count > 0, "the state has no operation records to ship");
    u64 size = snapshot_image_size(&a);
    u8 *img = malloc(size + 1);
    ck_assert_ptr_nonnull(img);
    ck_assert_uint_eq(snapshot_image_encode(&a, img, size), size);
    char why[300];
    ck_assert_msg(sm_create(&b, &cfg, why, sizeof(why)), "sm_create: %s", why);
    enum snapshot_status st = snapshot_image_decode(img, size, &cfg, &b, why, sizeof(why));
    ck_assert_msg(st == SNAPSHOT_OK, "%s: %s", snapshot_status_name(st), why);
    assert_same_digest(&a, &b, "image");
    /* The dedupe records came along: every live one answers a retry on the copy. */
    ck_assert_uint_eq(b.operation_count, a.operation_count);
    for (u32 i = 0; i < a.operation_count; i++) {
        const struct sm_operation *x = sm_operation_at(&a, i), *y = sm_operation_at(&b, i);
        ck_assert_msg(memcmp(x, y, sizeof(*x)) == 0, "operation record %u differs", i);
    }
    sm_destroy(&b);

    /* Damage anywhere is refused: a record byte, a short image, a trailing byte. */
    struct { u64 len; u64 flip; enum snapshot_status want; } bad[] = {
        { size, size - SNAPSHOT_CRC_SIZE - 5, SNAPSHOT_BAD_CHECKSUM },
        { size - 1, UINT64_MAX, SNAPSHOT_SHORT },
        { size + 1, UINT64_MAX, SNAPSHOT_TRAILING },
    };
    img[size] = 0;
    for (u32 i = 0; i < ADB_ARRAY_LEN(bad); i++) {
        if (bad[i].flip != UINT64_MAX)
            img[bad[i].flip] ^= 0x10;
        ck_assert_msg(sm_create(&b, &cfg, why, sizeof(why)), "sm_create: %s", why);
        st = snapshot_image_decode(img, bad[i].len, &cfg, &b, why, sizeof(why));
        ck_assert_msg(st == bad[i].want, "case %u: %s (%s), wanted %s", i, snapshot_status_name(st), why,
                      snapshot_status_name(bad[i].want));
        sm_destroy(&b);
        if (bad[i].flip != UINT64_MAX)
            img[bad[i].flip] ^= 0x10;
    }
    /* A record dropped (count and CRC made to agree) is caught by the header's count. */
    u64 records = (u64)a.operation_count * SNAPSHOT_OPERATION_SIZE, snap = size - records - SNAPSHOT_CRC_SIZE;
    le_put_u32(img + size - SNAPSHOT_CRC_SIZE - SNAPSHOT_OPERATION_SIZE,
               crc32c(0, img + snap, (size_t)(records - SNAPSHOT_OPERATION_SIZE)));
    ck_assert_msg(sm_create(&b, &cfg, why, sizeof(why)), "sm_create: %s", why);
    st = snapshot_image_decode(img, size - SNAPSHOT_OPERATION_SIZE, &cfg, &b, why, sizeof(why));
    ck_assert_msg(st != SNAPSHOT_OK, "an image missing a record decoded");
    sm_destroy(&b);
    free(img);
    sm_destroy(&a);
}
END_TEST

/* ---- roundtrip -------------------------------------------------------------------------- */

#define ROUNDTRIP_COMMANDS 20000
static const u64 roundtrip_seeds[] = { 1, 2, 3, 4, 5, 0x5eed, 0xa110cdb, 0xdeadbeef };

/* Snapshots `a`, decodes into `b`, checks the copy, and returns whether its layout differs. */
static bool snapshot_copy(const struct gen *g, const sm_t *a, sm_t *b)
{
    struct blob x = encode(a);
    char why[300];
    enum snapshot_status st = decode_new(&x, &g->cfg, b, why, sizeof(why));
    ck_assert_msg(st == SNAPSHOT_OK, "decode at lsn %llu: %s: %s", (ull)a->last_applied_lsn,
                  snapshot_status_name(st), why);
    ck_assert_msg(sm_check_invariants(b, why, sizeof(why)), "restored state: %s", why);
    assert_same_digest(a, b, "right after decode");
    struct blob y = encode(b);
    ck_assert_msg(y.len == x.len && memcmp(x.p, y.p, x.len) == 0, "re-encoding the restored state at lsn %llu "
                  "gives other bytes", (ull)a->last_applied_lsn);
    struct snapshot_info info;
    ck_assert_int_eq(snapshot_decode_info(x.p, x.len, &info, why, sizeof(why)), SNAPSHOT_OK);
    ck_assert_uint_eq(info.last_applied_lsn, a->last_applied_lsn);
    ck_assert_uint_eq(info.reservations, a->reservation_count);
    ck_assert_uint_eq(info.size, x.len);
    free(x.p);
    free(y.p);
    assert_same_views(g, a, b);
    return memcmp(a->reservation_free, b->reservation_free, a->reservation_free_count * sizeof(u32)) != 0 ||
           a->operation_head != b->operation_head;
}

START_TEST(test_roundtrip)
{
    u64 seed = roundtrip_seeds[_i], rng = seed;
    struct sm_config cfg = random_config(&rng, _i == 0);
    sm_t a, b;
    char why[200];
    ck_assert_msg(sm_create(&a, &cfg, why, sizeof(why)), "sm_create: %s", why);
    struct gen g;
    gen_init(&g, seed, &cfg, &a, ROUNDTRIP_COMMANDS);
    bool copy = false;
    u64 copy_left = 0, snapshots = 0, layouts_differ = 0, due_and_wheel = 0;
    u64 digest_every = cfg.resource_capacity > 100 ? 16 : 1;
    for (u64 i = 0; i < ROUNDTRIP_COMMANDS; i++) {
        if (!copy && chance(&g, 1, 120)) {
            due_and_wheel += a.expiry.due_count > 0 && a.expiry.count > a.expiry.due_count;
            layouts_differ += snapshot_copy(&g, &a, &b);
            snapshots++;
            copy = true;
            copy_left = 50 + below(&g, 400);
        }
        u64 lsn, slot;
        struct sm_command c = gen_next(&g, &lsn, &slot);
        struct sm_outcome oa = sm_apply(&a, lsn, slot, &c);
        gen_observe(&g, &c, &oa);
        if (!copy)
            continue;
        struct sm_outcome ob = sm_apply(&b, lsn, slot, &c);
        char where[96];
        snprintf(where, sizeof(where), "seed %llu, command %llu (lsn %llu slot %llu %s)", (ull)seed, (ull)i,
                 (ull)lsn, (ull)slot, sm_command_name((enum sm_command_kind)c.kind));
        assert_same_outcome(&oa, &ob, where);
        if (i % digest_every == 0)
            assert_same_digest(&a, &b, where);
        if (--copy_left == 0) {
            assert_same_digest(&a, &b, where);
            assert_same_views(&g, &a, &b);
            ck_assert_msg(sm_check_invariants(&b, why, sizeof(why)), "%s: %s", where, why);
            sm_destroy(&b);
            copy = false;
        }
    }
    if (copy)
        sm_destroy(&b);
    ck_assert_msg(snapshots >= 30, "only %llu snapshots", (ull)snapshots);
    ck_assert_msg(layouts_differ > 0, "no restored state had a pool layout unlike the original's");
    ck_assert_msg(due_and_wheel > 0, "no snapshot had reservations both on the due list and in the wheel");
    sm_destroy(&a);
}
END_TEST

START_TEST(test_empty)
{
    struct sm_config cfg = fx_small_config();
    sm_t a, b;
    char why[200];
    ck_assert(sm_create(&a, &cfg, why, sizeof(why)));
    struct blob x = encode(&a);
    ck_assert_uint_eq(x.len, SNAPSHOT_HEADER_SIZE + 2 * SNAPSHOT_CRC_SIZE);
    ck_assert_int_eq(decode_new(&x, &cfg, &b, why, sizeof(why)), SNAPSHOT_OK);
    assert_same_digest(&a, &b, "empty");
    /* Both continue identically from nothing. */
    struct sm_command c = fx_create_cmd(5);
    c.operation_id = 1;
    struct sm_outcome oa = sm_apply(&a, 1, 0, &c), ob = sm_apply(&b, 1, 0, &c);
    assert_same_outcome(&oa, &ob, "first apply");
    assert_same_digest(&a, &b, "first apply");
    free(x.p);
    sm_destroy(&a);
    sm_destroy(&b);
}
END_TEST

/* ---- corruption ------------------------------------------------------------------------- */

/* A small state with records in every section and every reservation group. */
static void rich_small_state(sm_t *sm, struct sm_config *cfg)
{
    u64 rng = 77;
    *cfg = random_config(&rng, false);
    for (u64 seed = 1;; seed++) {
        build_state(sm, cfg, seed, 3000);
        bool rich = sm->resource_count > 3 && sm->reservation_retire.count > 1 && sm->expiry.count > 1 &&
                    sm->reservation_count > sm->reservation_retire.count + sm->expiry.count &&
                    sm->operation_count > 3;
        if (rich)
            return;
        sm_destroy(sm);
        ck_assert_msg(seed < 50, "no seed gave a rich state");
    }
}

START_TEST(test_truncation)
{
    struct sm_config cfg;
    sm_t a;
    rich_small_state(&a, &cfg);
    struct blob x = encode(&a);
    char why[200];
    for (u64 len = 0; len < x.len; len++) {
        enum snapshot_status st = decode_status(x.p, len, &cfg, why, sizeof(why));
        ck_assert_msg(st == SNAPSHOT_SHORT, "length %llu of %llu: %s (%s)", (ull)len, (ull)x.len,
                      snapshot_status_name(st), why);
        struct snapshot_info info;
        st = snapshot_decode_info(x.p, len, &info, why, sizeof(why));
        ck_assert_int_eq(st, len < SNAPSHOT_HEADER_SIZE ? SNAPSHOT_SHORT : SNAPSHOT_OK);
    }
    x.p[x.len] = 0;
    ck_assert_int_eq(decode_status(x.p, x.len + 1, &cfg, why, sizeof(why)), SNAPSHOT_TRAILING);
    ck_assert_int_eq(decode_status(x.p, x.len, &cfg, why, sizeof(why)), SNAPSHOT_OK);
    free(x.p);
    sm_destroy(&a);
}
END_TEST

static void flip_and_check(struct blob *x, const struct sm_config *cfg, u64 bit)
{
    char why[200];
    u64 byte = bit / 8;
    x->p[byte] ^= (u8)(1u << (bit % 8));
    enum snapshot_status st = decode_status(x->p, x->len, cfg, why, sizeof(why));
    x->p[byte] ^= (u8)(1u << (bit % 8));
    enum snapshot_status want = byte < 4 ? SNAPSHOT_BAD_MAGIC : byte < 6 ? SNAPSHOT_BAD_VERSION : SNAPSHOT_BAD_CHECKSUM;
    ck_assert_msg(st == want, "bit %llu of %llu: %s, want %s (%s)", (ull)bit, (ull)x->len * 8,
                  snapshot_status_name(st), snapshot_status_name(want), why);
}

START_TEST(test_bit_flips)
{
    struct sm_config cfg;
    sm_t a;
    rich_small_state(&a, &cfg);
    struct blob x = encode(&a);
    for (u64 bit = 0; bit < x.len * 8; bit++)
        flip_and_check(&x, &cfg, bit);
    free(x.p);
    sm_destroy(&a);

    /* A larger state: sampled bits. */
    u64 rng = 5;
    struct sm_config big = random_config(&rng, true);
    build_state(&a, &big, 9, 20000);
    x = encode(&a);
    for (int k = 0; k < 3000; k++)
        flip_and_check(&x, &big, splitmix_next(&rng) % (x.len * 8));
    free(x.p);
    sm_destroy(&a);
}
END_TEST

/* ---- config mismatch ------------------------------------------------------------------- */

static const char *const config_fields[] = { "shard_id", "resource_capacity", "reservation_capacity",
                                             "operation_capacity", "expiration_capacity", "max_ttl_slots",
                                             "dedupe_window_slots", "history_window_slots" };

START_TEST(test_config_mismatch)
{
    struct sm_config cfg = fx_small_config();
    sm_t a;
    build_state(&a, &cfg, 3, 500);
    struct blob x = encode(&a);
    struct sm_config other = cfg;
    switch (_i) {
    case 0: other.shard_id = 1; break;
    case 1: other.resource_capacity++; break;
    case 2: other.reservation_capacity++; break;
    case 3: other.operation_capacity++; break;
    case 4: other.expiration_capacity--; break;
    case 5: other.max_ttl_slots++; break;
    case 6: other.dedupe_window_slots++; break;
    default: other.history_window_slots++; break;
    }
    char why[300];
    enum snapshot_status st = decode_status(x.p, x.len, &other, why, sizeof(why));
    ck_assert_msg(st == SNAPSHOT_CONFIG_MISMATCH, "%s: %s", snapshot_status_name(st), why);
    ck_assert_msg(strstr(why, config_fields[_i]) != NULL, "message does not name %s: %s", config_fields[_i], why);
    free(x.p);
    sm_destroy(&a);
}
END_TEST

/* ---- crafted snapshots ----------------------------------------------------------------- */

#define HDR_TOTAL 8
#define HDR_LAST_LSN 64
#define HDR_RESOURCES 96
#define HDR_RESERVATIONS 100
#define HDR_TERMINAL 104
#define HDR_RESERVED 108
#define HDR_OPERATIONS 112
#define HDR_OPS_SUM 116
#define HDR_ZERO 136
#define HDR_CRC 140

/* ---- version 1 --------------------------------------------------------------------------- */

/*
 * tests/data/snapshot-v1.snap is rich_small_state() as the version 1 encoder wrote it (80-byte
 * operation records with both fingerprint words and the result's reservation id). Read today,
 * it must give the very state today's code builds from the same commands: byte-equal once
 * re-encoded, the same digest, and the same answers to retries of its records.
 */
START_TEST(test_reads_version_1)
{
    const char *top = getenv("top_srcdir");
    char path[4096];
    snprintf(path, sizeof(path), "%s/tests/data/snapshot-v1.snap", top && *top ? top : ".");
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    static u8 old[1 << 16];
    size_t len = fread(old, 1, sizeof(old), f);
    fclose(f);
    ck_assert_uint_eq(le_get_u16(old + 4), 1);

    struct sm_config cfg;
    sm_t a, b;
    rich_small_state(&a, &cfg);
    struct blob v1 = { old, len };
    char why[300];
    enum snapshot_status st = decode_new(&v1, &cfg, &b, why, sizeof(why));
    ck_assert_msg(st == SNAPSHOT_OK, "version 1: %s: %s", snapshot_status_name(st), why);
    ck_assert_uint_eq(b.operation_count, a.operation_count);
    assert_same_digest(&a, &b, "version 1 read back");
    struct blob x = encode(&a), y = encode(&b);
    ck_assert_msg(x.len == y.len && memcmp(x.p, y.p, x.len) == 0, "version 1 read back encodes differently");
    ck_assert_uint_eq(le_get_u16(y.p + 4), SNAPSHOT_VERSION);
    /* Every record: the same code, LSN and deadline as in the original 80-byte record. */
    u64 ops = SNAPSHOT_HEADER_SIZE_V1 + (u64)le_get_u32(old + HDR_RESOURCES) * SNAPSHOT_RESOURCE_SIZE + SNAPSHOT_CRC_SIZE +
              (u64)le_get_u32(old + HDR_RESERVATIONS) * SNAPSHOT_RESERVATION_SIZE + SNAPSHOT_CRC_SIZE;
    for (u32 i = 0; i < b.operation_count; i++) {
        const u8 *r = old + ops + (u64)i * SNAPSHOT_OPERATION_SIZE_V1;
        const struct sm_operation *o = &b.operations[(b.operation_head + i) % cfg.operation_capacity];
        ck_assert(o->operation_id == le_get_u128(r));
        ck_assert_uint_eq(sm_operation_code(o), r[72]);
        ck_assert_uint_eq(o->applied_lsn, le_get_u64(r + 56));
        ck_assert_uint_eq(o->result_deadline_slot, le_get_u64(r + 48));
        ck_assert_uint_eq(o->fingerprint_code & ~(u64)0xff, le_get_u64(r + 16) & ~(u64)0xff);
    }
    free(x.p);
    free(y.p);
    sm_destroy(&a);
    sm_destroy(&b);
}
END_TEST

static u64 res_off(const u8 *p, u32 i)
{
    (void)p;
    return SNAPSHOT_HEADER_SIZE + (u64)i * SNAPSHOT_RESOURCE_SIZE;
}

static u64 rsv_off(const u8 *p, u32 i)
{
    return res_off(p, le_get_u32(p + HDR_RESOURCES)) + SNAPSHOT_CRC_SIZE + (u64)i * SNAPSHOT_RESERVATION_SIZE;
}

/* Recomputes the section CRCs (when the header's counts fit the buffer) and the header CRC. */
static void reseal(u8 *p, u64 len)
{
    u32 nres = le_get_u32(p + HDR_RESOURCES), nrsv = le_get_u32(p + HDR_RESERVATIONS);
    u64 total = SNAPSHOT_HEADER_SIZE + 2 * SNAPSHOT_CRC_SIZE + (u64)nres * SNAPSHOT_RESOURCE_SIZE +
                (u64)nrsv * SNAPSHOT_RESERVATION_SIZE;
    if (total == len) {
        u64 starts[2] = { res_off(p, 0), rsv_off(p, 0) };
        u64 lens[2] = { (u64)nres * SNAPSHOT_RESOURCE_SIZE, (u64)nrsv * SNAPSHOT_RESERVATION_SIZE };
        for (int s = 0; s < 2; s++)
            le_put_u32(p + starts[s] + lens[s], crc32c(0, p + starts[s], lens[s]));
    }
    le_put_u32(p + HDR_CRC, crc32c(0, p, HDR_CRC));
}

static void swap_records(u8 *p, u64 a, u64 b, size_t size)
{
    u8 tmp[128];
    memcpy(tmp, p + a, size);
    memcpy(p + a, p + b, size);
    memcpy(p + b, tmp, size);
}

/*
 * The crafted base state (fixture config: 8 resources, 8 reservations, 16 operations, ttl <= 16,
 * dedupe 10, history 5), at slot 6:
 *   terminal:  C (released at slot 2), D (released at slot 4), B (expired at slot 6)
 *   reserved:  E (deadline 5: on the due list), F (deadline 14: in the wheel)
 *   confirmed: A
 */
struct crafted {
    struct sm_config cfg;
    struct blob x;
    u128 a, b, c, d, e, f;
};

/* Runs the crafted scenario on a new fixture (left for the caller to free). */
static void crafted_build(struct fx *fx, struct crafted *k)
{
    struct fx f;
    k->cfg = fx_small_config();
    fx_init(&f, &k->cfg);
    for (u128 r = 1; r <= 6; r++)
        ck_assert_int_eq(fx_apply(&f, fx_create_cmd(r)).result, SM_OK);
    k->a = fx_apply(&f, fx_reserve_cmd(1, 41, 10)).reservation_id;
    k->b = fx_apply(&f, fx_reserve_cmd(2, 42, 5)).reservation_id;
    k->c = fx_apply(&f, fx_reserve_cmd(3, 43, 3)).reservation_id;
    ck_assert_int_eq(fx_apply(&f, fx_confirm_cmd(k->a, 41)).result, SM_OK);
    f.slot = 2;
    ck_assert_int_eq(fx_apply(&f, fx_release_cmd(k->c, 43)).result, SM_OK);
    f.slot = 3;
    k->d = fx_apply(&f, fx_reserve_cmd(3, 44, 2)).reservation_id;
    k->e = fx_apply(&f, fx_reserve_cmd(4, 45, 2)).reservation_id;
    f.slot = 4;
    ck_assert_int_eq(fx_apply(&f, fx_release_cmd(k->d, 44)).result, SM_OK);
    f.slot = 6;
    ck_assert_int_eq(fx_apply(&f, fx_expire_cmd(k->b, 6)).result, SM_OK);
    k->f = fx_apply(&f, fx_reserve_cmd(5, 46, 8)).reservation_id;
    ck_assert(k->a && k->b && k->c && k->d && k->e && k->f);
    fx_check(&f);
    ck_assert_uint_eq(f.sm.reservation_retire.count, 3);
    ck_assert_uint_eq(f.sm.expiry.count, 2);
    ck_assert_uint_eq(f.sm.expiry.due_count, 1);
    *fx = f;
}

static void crafted_init(struct crafted *k)
{
    struct fx f;
    crafted_build(&f, k);
    k->x = encode(&f.sm);
    fx_free(&f);
}

/* Applies the same entry to both and checks they agree; returns the outcome. */
static struct sm_outcome apply_both(sm_t *a, sm_t *b, u64 lsn, u64 slot, struct sm_command c, u128 op)
{
    if (c.kind != SM_CMD_EXPIRE) {
        c.operation_id = op;
        c.client_id = 9;
    }
    struct sm_outcome x = sm_apply(a, lsn, slot, &c), y = sm_apply(b, lsn, slot, &c);
    assert_same_outcome(&x, &y, sm_command_name((enum sm_command_kind)c.kind));
    assert_same_digest(a, b, sm_command_name((enum sm_command_kind)c.kind));
    return x;
}

/*
 * The expiration index at the snapshot: E's bucket (deadline 5) already moved to the due list,
 * F (deadline 14) still in the wheel. The restored index answers and evolves the same.
 */
START_TEST(test_due_list)
{
    struct fx f;
    struct crafted k;
    crafted_build(&f, &k);
    struct blob x = encode(&f.sm);
    sm_t b;
    char why[300];
    ck_assert_int_eq(decode_new(&x, &k.cfg, &b, why, sizeof(why)), SNAPSHOT_OK);
    ck_assert_uint_eq(b.expiry.due_count, 1);
    ck_assert_uint_eq(b.expiry.count, 2);
    ck_assert_uint_eq(b.expiry.due_through, 6);
    struct sm_due due[4];
    ck_assert_uint_eq(sm_due_expirations(&b, 6, due, 4), 1);
    ck_assert(due[0].reservation_id == k.e && due[0].deadline_slot == 5);
    ck_assert_uint_eq(sm_due_expirations(&b, 14, due, 4), 2);
    ck_assert(due[1].reservation_id == k.f && due[1].deadline_slot == 14);
    for (u64 s = 0; s <= 16; s++)
        assert_same_due(&f.sm, &b, s, 4);

    u64 lsn = f.sm.last_applied_lsn;
    /* Another reservation due at 5 cannot exist now (slot 6), but one at 7 joins the wheel. */
    struct sm_outcome g = apply_both(&f.sm, &b, ++lsn, 6, fx_reserve_cmd(6, 47, 1), 5001);
    ck_assert_int_eq(g.result, SM_OK);
    ck_assert_int_eq(apply_both(&f.sm, &b, ++lsn, 13, fx_expire_cmd(k.e, 5), 0).result, SM_OK);
    assert_same_due(&f.sm, &b, 13, 4);
    ck_assert_int_eq(apply_both(&f.sm, &b, ++lsn, 13, fx_expire_cmd(k.f, 14), 0).result, SM_NOOP); /* early */
    ck_assert_int_eq(apply_both(&f.sm, &b, ++lsn, 14, fx_expire_cmd(g.reservation_id, 7), 0).result, SM_OK);
    ck_assert_int_eq(apply_both(&f.sm, &b, ++lsn, 14, fx_confirm_cmd(k.f, 46), 5002).result, SM_OK);
    for (u64 s = 13; s <= 30; s++)
        assert_same_due(&f.sm, &b, s, 4);
    ck_assert_uint_eq(sm_due_expirations(&b, UINT64_MAX, due, 4), 0);
    ck_assert(sm_check_invariants(&b, why, sizeof(why)));
    free(x.p);
    sm_destroy(&b);
    fx_free(&f);
}
END_TEST

/* Finds the record index of reservation `id` in the reservations section. */
static u32 rsv_index(const u8 *p, u128 id)
{
    for (u32 i = 0; i < le_get_u32(p + HDR_RESERVATIONS); i++)
        if (le_get_u128(p + rsv_off(p, i)) == id)
            return i;
    ck_abort_msg("reservation not in the snapshot");
    return 0;
}

/* Finds the record index of resource `id`. */
static u32 res_index(const u8 *p, u128 id)
{
    for (u32 i = 0; i < le_get_u32(p + HDR_RESOURCES); i++)
        if (le_get_u128(p + res_off(p, i)) == id)
            return i;
    ck_abort_msg("resource not in the snapshot");
    return 0;
}

enum craft {
    CRAFT_DUP_RESOURCE,
    CRAFT_DUP_RESERVATION,
    CRAFT_DUP_OPERATION,
    CRAFT_DANGLING_RESERVATION_RESOURCE,
    CRAFT_DANGLING_ACTIVE_RESOURCE,
    CRAFT_DANGLING_CURRENT,
    CRAFT_CURRENT_TERMINAL,
    CRAFT_STATE_DISAGREES,
    CRAFT_OVER_RESOURCES,
    CRAFT_OVER_RESERVED,
    CRAFT_BAD_RESERVATION_STATE,
    CRAFT_BAD_RESOURCE_STATE,
    CRAFT_BAD_RESULT_CODE,
    CRAFT_UNSORTED_RETIRE_QUEUE,
    CRAFT_UNSORTED_OPERATIONS,
    CRAFT_UNSORTED_EXPIRATIONS,
    CRAFT_WRONG_GROUP,
    CRAFT_FOREIGN_SHARD,
    CRAFT_FUTURE_ID,
    CRAFT_RECORD_PADDING,
    CRAFT_HEADER_PADDING,
    CRAFT_TOTAL_SIZE,
    CRAFT_EXPIRED_EARLY,
    CRAFT_DEADLINE_FAR,
    CRAFT_OP_RETIRE_FAR,
    CRAFT_OP_MISSING,
    CRAFT_OP_CHANGED,
    CRAFT_OP_SUM,
    CRAFT_RETIRED_SURVIVOR,
    CRAFT_ACTIVE_TERMINAL_FIELDS,
    CRAFT_VERSION,
    CRAFT_COUNT
};

struct craft_case {
    enum snapshot_status want;
    const char *where; /* must appear in the message */
};

static const struct craft_case craft_cases[CRAFT_COUNT] = {
    [CRAFT_DUP_RESOURCE] = { SNAPSHOT_DUPLICATE, "resources[" },
    [CRAFT_DUP_RESERVATION] = { SNAPSHOT_DUPLICATE, "reservations[1]" },
    [CRAFT_DUP_OPERATION] = { SNAPSHOT_DUPLICATE, "operation log[1]" },
    [CRAFT_DANGLING_RESERVATION_RESOURCE] = { SNAPSHOT_BAD_REFERENCE, "reservations[0]" },
    [CRAFT_DANGLING_ACTIVE_RESOURCE] = { SNAPSHOT_BAD_REFERENCE, "reservations[4]" },
    [CRAFT_DANGLING_CURRENT] = { SNAPSHOT_BAD_REFERENCE, "resources[" },
    [CRAFT_CURRENT_TERMINAL] = { SNAPSHOT_BAD_REFERENCE, "resources[" },
    [CRAFT_STATE_DISAGREES] = { SNAPSHOT_BAD_REFERENCE, "reservations[5]" },
    [CRAFT_OVER_RESOURCES] = { SNAPSHOT_OVER_CAPACITY, "resource_count" },
    [CRAFT_OVER_RESERVED] = { SNAPSHOT_OVER_CAPACITY, "reserved_count" },
    [CRAFT_BAD_RESERVATION_STATE] = { SNAPSHOT_BAD_RECORD, "reservations[2]" },
    [CRAFT_BAD_RESOURCE_STATE] = { SNAPSHOT_BAD_RECORD, "resources[" },
    [CRAFT_BAD_RESULT_CODE] = { SNAPSHOT_BAD_RECORD, "operation log[2]" },
    [CRAFT_UNSORTED_RETIRE_QUEUE] = { SNAPSHOT_BAD_ORDER, "reservations[1]" },
    [CRAFT_UNSORTED_OPERATIONS] = { SNAPSHOT_BAD_ORDER, "operation log[1]" },
    [CRAFT_UNSORTED_EXPIRATIONS] = { SNAPSHOT_BAD_ORDER, "reservations[4]" },
    [CRAFT_WRONG_GROUP] = { SNAPSHOT_BAD_ORDER, "reservations[0]" },
    [CRAFT_FOREIGN_SHARD] = { SNAPSHOT_BAD_RECORD, "reservations[3]" },
    [CRAFT_FUTURE_ID] = { SNAPSHOT_BAD_RECORD, "reservations[5]" },
    [CRAFT_RECORD_PADDING] = { SNAPSHOT_BAD_RECORD, "reservations[0]" },
    [CRAFT_HEADER_PADDING] = { SNAPSHOT_BAD_HEADER, "reserved" },
    [CRAFT_TOTAL_SIZE] = { SNAPSHOT_BAD_HEADER, "total_size" },
    [CRAFT_EXPIRED_EARLY] = { SNAPSHOT_BAD_RECORD, "reservations[2]" },
    [CRAFT_DEADLINE_FAR] = { SNAPSHOT_BAD_RECORD, "reservations[4]" },
    [CRAFT_OP_RETIRE_FAR] = { SNAPSHOT_BAD_RECORD, "operation log[3]" },
    [CRAFT_OP_MISSING] = { SNAPSHOT_OPERATIONS_MISSING, "the snapshot counts" },
    [CRAFT_OP_CHANGED] = { SNAPSHOT_OPERATIONS_MISSING, "another hash sum" },
    [CRAFT_OP_SUM] = { SNAPSHOT_OPERATIONS_MISSING, "another hash sum" },
    [CRAFT_RETIRED_SURVIVOR] = { SNAPSHOT_BAD_RECORD, "reservations[0]" },
    [CRAFT_ACTIVE_TERMINAL_FIELDS] = { SNAPSHOT_BAD_RECORD, "reservations[5]" },
    [CRAFT_VERSION] = { SNAPSHOT_BAD_VERSION, "version" },
};

/* Applies mutation `which` to the crafted base snapshot. */
static void craft(struct crafted *k, enum craft which)
{
    u8 *p = k->x.p;
    u32 ra = rsv_index(p, k->a), rc = rsv_index(p, k->c), rd = rsv_index(p, k->d), rb = rsv_index(p, k->b),
        re = rsv_index(p, k->e), rf = rsv_index(p, k->f);
    /* The base order: C, D, B terminal; E, F reserved; A confirmed. */
    ck_assert(rc == 0 && rd == 1 && rb == 2 && re == 3 && rf == 4 && ra == 5);
    switch (which) {
    case CRAFT_DUP_RESOURCE: memcpy(p + res_off(p, 1), p + res_off(p, 0), 16); break;
    case CRAFT_DUP_RESERVATION: le_put_u128(p + rsv_off(p, 1), k->c); break;
    case CRAFT_DUP_OPERATION: ops_copy[1].operation_id = ops_copy[0].operation_id; break;
    case CRAFT_DANGLING_RESERVATION_RESOURCE: le_put_u128(p + rsv_off(p, 0) + 16, 999); break;
    case CRAFT_DANGLING_ACTIVE_RESOURCE: le_put_u128(p + rsv_off(p, 4) + 16, 999); break;
    case CRAFT_DANGLING_CURRENT: {
        u64 r6 = res_off(p, res_index(p, 6)); /* available */
        p[r6 + 40] = SM_RESOURCE_RESERVED;
        le_put_u128(p + r6 + 16, U128_MAKE(0, 1)); /* lsn 1 was a create, not a reservation */
        break;
    }
    case CRAFT_CURRENT_TERMINAL: {
        u64 r3 = res_off(p, res_index(p, 3)); /* available since D's release */
        p[r3 + 40] = SM_RESOURCE_RESERVED;
        le_put_u128(p + r3 + 16, k->d);
        break;
    }
    case CRAFT_STATE_DISAGREES: p[res_off(p, res_index(p, 1)) + 40] = SM_RESOURCE_RESERVED; break;
    case CRAFT_OVER_RESOURCES: le_put_u32(p + HDR_RESOURCES, k->cfg.resource_capacity + 1); break;
    case CRAFT_OVER_RESERVED: le_put_u32(p + HDR_RESERVED, k->cfg.expiration_capacity + 1); break;
    case CRAFT_BAD_RESERVATION_STATE: p[rsv_off(p, 2) + 72] = 7; break;
    case CRAFT_BAD_RESOURCE_STATE: p[res_off(p, 2) + 40] = 3; break;
    case CRAFT_BAD_RESULT_CODE: ops_copy[2].fingerprint_code = (ops_copy[2].fingerprint_code & ~(u64)0xff) | SM_OPERATION_TABLE_FULL; break;
    case CRAFT_UNSORTED_RETIRE_QUEUE: swap_records(p, rsv_off(p, 0), rsv_off(p, 1), SNAPSHOT_RESERVATION_SIZE); break;
    case CRAFT_UNSORTED_OPERATIONS: {
        struct sm_operation t = ops_copy[0];
        ops_copy[0] = ops_copy[1];
        ops_copy[1] = t;
        break;
    }
    case CRAFT_UNSORTED_EXPIRATIONS: swap_records(p, rsv_off(p, 3), rsv_off(p, 4), SNAPSHOT_RESERVATION_SIZE); break;
    case CRAFT_WRONG_GROUP: p[rsv_off(p, 0) + 72] = SM_RESERVATION_CONFIRMED; break;
    case CRAFT_FOREIGN_SHARD: le_put_u64(p + rsv_off(p, 3) + 8, 1); break;
    case CRAFT_FUTURE_ID: le_put_u64(p + rsv_off(p, 5), le_get_u64(p + HDR_LAST_LSN) + 1); break;
    case CRAFT_RECORD_PADDING: p[rsv_off(p, 0) + 79] = 1; break;
    case CRAFT_HEADER_PADDING: p[HDR_ZERO + 1] = 1; break;
    case CRAFT_TOTAL_SIZE: le_put_u64(p + HDR_TOTAL, k->x.len + 80); break;
    case CRAFT_EXPIRED_EARLY: le_put_u64(p + rsv_off(p, 2) + 48, 7); break; /* expired at slot 6 */
    case CRAFT_DEADLINE_FAR: le_put_u64(p + rsv_off(p, 4) + 48, 6 + 16 + 1); break;
    case CRAFT_OP_RETIRE_FAR: ops_copy[3].retire_after_slot = 6 + 10 + 1; break;
    case CRAFT_OP_MISSING: ops_count--; break;
    case CRAFT_OP_CHANGED: ops_copy[1].fingerprint_code ^= 0x100; break; /* a valid record, not the one counted */
    case CRAFT_OP_SUM: le_put_u64(p + HDR_OPS_SUM, le_get_u64(p + HDR_OPS_SUM) + 1); break;
    case CRAFT_RETIRED_SURVIVOR: le_put_u64(p + 88, 8); break; /* retired_through_slot past C's 7 */
    case CRAFT_ACTIVE_TERMINAL_FIELDS: le_put_u64(p + rsv_off(p, 5) + 56, 3); break;
    case CRAFT_VERSION: le_put_u16(p + 4, SNAPSHOT_VERSION + 1); break;
    case CRAFT_COUNT: break;
    }
    reseal(p, k->x.len);
}

START_TEST(test_crafted)
{
    struct crafted k;
    crafted_init(&k);
    char why[300];
    /* The base decodes. */
    enum snapshot_status st = decode_status(k.x.p, k.x.len, &k.cfg, why, sizeof(why));
    ck_assert_msg(st == SNAPSHOT_OK, "base: %s: %s", snapshot_status_name(st), why);

    /* CRAFT_RETIRED_SURVIVOR moves retired_through_slot, which must stay <= the last slot (6):
     * here it exceeds it, so first check that exact failure, then a legal variant. */
    craft(&k, (enum craft)_i);
    st = decode_status(k.x.p, k.x.len, &k.cfg, why, sizeof(why));
    const struct craft_case *want = &craft_cases[_i];
    if (_i == CRAFT_RETIRED_SURVIVOR) {
        ck_assert_msg(st == SNAPSHOT_BAD_HEADER, "%s: %s", snapshot_status_name(st), why);
        le_put_u64(k.x.p + 88, 6); /* the pass at slot 6 ... */
        le_put_u64(k.x.p + rsv_off(k.x.p, 0) + 64, 5); /* ... and C due to retire after slot 5 */
        reseal(k.x.p, k.x.len);
        st = decode_status(k.x.p, k.x.len, &k.cfg, why, sizeof(why));
    }
    ck_assert_msg(st == want->want, "case %d: %s (%s), want %s", _i, snapshot_status_name(st), why,
                  snapshot_status_name(want->want));
    ck_assert_msg(strstr(why, want->where) != NULL, "case %d: message \"%s\" does not mention \"%s\"", _i, why,
                  want->where);
    free(k.x.p);
}
END_TEST

/* ---- random mutations with repaired checksums ------------------------------------------ */

static const u64 interesting[] = { 0, 1, 2, 3, 5, 6, 7, 8, 15, 16, 17, 255, UINT64_MAX, UINT64_MAX - 1,
                                   (u64)1 << 32, (u64)1 << 40, (u64)1 << 63 };

static u64 interesting_value(u64 *rng, u64 old, const u8 *p)
{
    switch (splitmix_next(rng) % 5) {
    case 0: return interesting[splitmix_next(rng) % ADB_ARRAY_LEN(interesting)];
    case 1: return old + 1;
    case 2: return old - 1;
    case 3: return le_get_u64(p + 64) + (splitmix_next(rng) % 3) - 1; /* around the last lsn */
    default: return le_get_u64(p + 72) + (splitmix_next(rng) % 20) - 10; /* around the last slot */
    }
}

/* Mutates a copy of `orig` (whose section offsets stay valid even if a header count changes). */
static void mutate(u8 *p, const u8 *orig, u64 len, u64 *rng)
{
    u32 nres = le_get_u32(orig + HDR_RESOURCES), nrsv = le_get_u32(orig + HDR_RESERVATIONS),
        nop = le_get_u32(orig + HDR_OPERATIONS);
    int kinds = 1 + (int)(splitmix_next(rng) % 3);
    for (int m = 0; m < kinds; m++) {
        u64 r = splitmix_next(rng) % 100;
        if (r < 25) { /* a byte anywhere */
            p[splitmix_next(rng) % len] = (u8)splitmix_next(rng);
        } else if (r < 70) { /* an 8-byte field of a record, or a header scalar */
            u64 off;
            u64 which = splitmix_next(rng) % 4;
            if (which == 0 && nres > 0)
                off = res_off(orig, (u32)(splitmix_next(rng) % nres)) + 8 * (splitmix_next(rng) % 6);
            else if (which == 1 && nrsv > 0)
                off = rsv_off(orig, (u32)(splitmix_next(rng) % nrsv)) + 8 * (splitmix_next(rng) % 10);
            else if (which == 2 && nop > 0) {
                u64 *f = &ops_copy[splitmix_next(rng) % nop].fingerprint_code + splitmix_next(rng) % 4;
                *f = interesting_value(rng, *f, p);
                continue;
            } else
                off = 64 + 8 * (splitmix_next(rng) % 4);
            if (off + 8 <= len)
                le_put_u64(p + off, interesting_value(rng, le_get_u64(p + off), p));
        } else if (r < 85 && nrsv > 1) { /* copy or swap reservation records */
            u64 a = rsv_off(orig, (u32)(splitmix_next(rng) % nrsv));
            u64 b = rsv_off(orig, (u32)(splitmix_next(rng) % nrsv));
            if (splitmix_next(rng) % 2)
                swap_records(p, a, b, SNAPSHOT_RESERVATION_SIZE);
            else
                memcpy(p + a, p + b, 16 + 16 * (splitmix_next(rng) % 3));
        } else if (r < 95 && nop > 1) {
            struct sm_operation *a = &ops_copy[splitmix_next(rng) % nop], *b = &ops_copy[splitmix_next(rng) % nop];
            struct sm_operation t = *a;
            *a = *b;
            *b = t;
        } else { /* a state byte */
            if (nrsv > 0)
                p[rsv_off(orig, (u32)(splitmix_next(rng) % nrsv)) + 72] = (u8)(splitmix_next(rng) % 5);
        }
    }
}

/* Keeps applying random commands to an accepted state: no assertion may fire. */
static void keep_going(sm_t *sm, const struct sm_config *cfg, u64 seed)
{
    if (sm->last_applied_lsn > UINT64_MAX - 10000)
        return; /* a valid state, but the log cannot go on */
    struct gen g;
    gen_init(&g, seed, cfg, sm, 0);
    char why[200];
    for (int i = 0; i < 300; i++) {
        u64 lsn, slot;
        struct sm_command c = gen_next(&g, &lsn, &slot);
        struct sm_outcome o = sm_apply(sm, lsn, slot, &c);
        gen_observe(&g, &c, &o);
        if (i % 25 == 0)
            ck_assert_msg(sm_check_invariants(sm, why, sizeof(why)), "after %d commands: %s", i, why);
    }
}

START_TEST(test_mutations)
{
    u64 rng = 0xfeed + (u64)_i;
    struct sm_config cfg = random_config(&rng, false);
    sm_t base;
    build_state(&base, &cfg, 100 + (u64)_i, 2000 + 1000 * (u64)_i);
    struct blob x = encode(&base);
    u8 *p = malloc(x.len);
    ck_assert_ptr_nonnull(p);
    u64 counts[SNAPSHOT_STATUS_COUNT] = { 0 };
    char why[300];
    u32 base_count = ops_count;
    struct sm_operation *base_ops = malloc(sizeof(*base_ops) * (base_count + 1));
    memcpy(base_ops, ops_copy, sizeof(*base_ops) * base_count);
    for (int iter = 0; iter < 4000; iter++) {
        memcpy(p, x.p, x.len);
        memcpy(ops_copy, base_ops, sizeof(*base_ops) * base_count);
        mutate(p, x.p, x.len, &rng);
        reseal(p, x.len);
        sm_t sm;
        struct blob b = { p, x.len };
        enum snapshot_status st = decode_new(&b, &cfg, &sm, why, sizeof(why));
        ck_assert_int_lt(st, SNAPSHOT_STATUS_COUNT);
        counts[st]++;
        if (st == SNAPSHOT_OK)
            keep_going(&sm, &cfg, (u64)iter);
        sm_destroy(&sm);
    }
    printf("# mutations (seed %d):", _i);
    for (int s = 0; s < SNAPSHOT_STATUS_COUNT; s++)
        if (counts[s] > 0)
            printf(" %s=%llu", snapshot_status_name((enum snapshot_status)s), (ull)counts[s]);
    printf("\n");
    fflush(stdout);
    ck_assert_msg(counts[SNAPSHOT_BAD_RECORD] > 0 && counts[SNAPSHOT_BAD_ORDER] > 0, "mutations too tame");
    free(base_ops);
    free(p);
    free(x.p);
    sm_destroy(&base);
}
END_TEST

/* ---- files ------------------------------------------------------------------------------ */

struct dir_list {
    char names[8][256];
    int count;
};

static struct dir_list list_dir(const char *dir)
{
    struct dir_list l;
    memset(&l, 0, sizeof(l));
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        ck_assert_int_lt(l.count, 8);
        snprintf(l.names[l.count++], sizeof(l.names[0]), "%s", e->d_name);
    }
    closedir(d);
    return l;
}

static void clear_dir(const char *dir)
{
    struct dir_list l = list_dir(dir);
    char path[512];
    for (int i = 0; i < l.count; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, l.names[i]);
        ck_assert_int_eq(unlink(path), 0);
    }
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    ck_assert_int_eq(fclose(f), 0);
}

/* io_posix with one operation failing. */
static int fail_open(struct io *io, const char *path, int flags, int *fd)
{
    (void)io, (void)path, (void)flags, (void)fd;
    return -EACCES;
}
static int fail_pwrite(struct io *io, int fd, const void *buf, size_t len, u64 off, size_t *done)
{
    (void)io, (void)fd, (void)buf, (void)len, (void)off, (void)done;
    return -ENOSPC;
}
static int fail_fsync(struct io *io, int fd)
{
    (void)io, (void)fd;
    return -EIO;
}
static int fail_close(struct io *io, int fd)
{
    io_posix.ops->close(io, fd);
    return -EIO;
}
static int fail_rename(struct io *io, const char *from, const char *to)
{
    (void)io, (void)from, (void)to;
    return -EXDEV;
}
static int fail_sync_dir(struct io *io, const char *dir)
{
    (void)io, (void)dir;
    return -EIO;
}

START_TEST(test_files)
{
    char dir[] = "/tmp/adb-snapshot-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    struct sm_config cfg;
    sm_t a;
    rich_small_state(&a, &cfg);
    char why[300], name[64], path[512];
    ck_assert(snapshot_file_name(name, sizeof(name), a.last_applied_lsn));
    snprintf(path, sizeof(path), "%s/%s", dir, name);

    /* A stale temp file of the same LSN is replaced. */
    char tmp[512];
    snprintf(tmp, sizeof(tmp), "%s/snapshot-%020llu.tmp", dir, (ull)a.last_applied_lsn);
    write_file(tmp, "half a snapshot");
    ck_assert_msg(snapshot_write(&io_posix, dir, &a, why, sizeof(why)) == 0, "write: %s", why);
    struct dir_list l = list_dir(dir);
    ck_assert_int_eq(l.count, 1);
    ck_assert_str_eq(l.names[0], name);
    u64 lsn;
    ck_assert(snapshot_parse_name(l.names[0], &lsn));
    ck_assert_uint_eq(lsn, a.last_applied_lsn);

    u8 *buf;
    u64 len;
    ck_assert_int_eq(io_read_file(&io_posix, path, &buf, &len), 0);
    struct blob x = encode(&a);
    ck_assert(len == x.len && memcmp(buf, x.p, len) == 0);
    sm_t b;
    struct blob rb = { buf, len };
    ck_assert_int_eq(decode_new(&rb, &cfg, &b, why, sizeof(why)), SNAPSHOT_OK);
    assert_same_digest(&a, &b, "file round trip");
    sm_destroy(&b);
    free(buf);

    /* The view recovery uses: io_posix maps the file; an io without map reads a copy. Both
     * hold exactly the file's bytes. */
    struct io_view v;
    ck_assert_int_eq(io_view_file(&io_posix, path, &v), 0);
    ck_assert(v.mapped && v.len == x.len && memcmp(v.buf, x.p, x.len) == 0);
    io_view_release(&io_posix, &v);
    ck_assert(v.buf == NULL && v.len == 0);
    struct io_ops no_map = *io_posix.ops;
    no_map.map = NULL;
    no_map.unmap = NULL;
    struct io copying = { &no_map };
    ck_assert_int_eq(io_view_file(&copying, path, &v), 0);
    ck_assert(!v.mapped && v.len == x.len && memcmp(v.buf, x.p, x.len) == 0);
    io_view_release(&copying, &v);
    free(x.p);

    /* Writing the same LSN again replaces the file. */
    ck_assert_int_eq(snapshot_write(&io_posix, dir, &a, why, sizeof(why)), 0);
    ck_assert_int_eq(list_dir(dir).count, 1);
    clear_dir(dir);

    /* Every failing step: an error, a message, and nothing left behind. */
    struct {
        const char *what;
        int want;
    } steps[] = { { "open", -EACCES }, { "pwrite", -ENOSPC }, { "fsync", -EIO },
                  { "close", -EIO },   { "rename", -EXDEV },  { "sync_dir", -EIO } };
    for (size_t i = 0; i < ADB_ARRAY_LEN(steps); i++) {
        struct io_ops ops = *io_posix.ops;
        switch (i) {
        case 0: ops.open = fail_open; break;
        case 1: ops.pwrite = fail_pwrite; break;
        case 2: ops.fsync = fail_fsync; break;
        case 3: ops.close = fail_close; break;
        case 4: ops.rename = fail_rename; break;
        default: ops.sync_dir = fail_sync_dir; break;
        }
        struct io failing = { &ops };
        why[0] = '\0';
        int rc = snapshot_write(&failing, dir, &a, why, sizeof(why));
        ck_assert_msg(rc == steps[i].want, "%s: rc %d", steps[i].what, rc);
        ck_assert_msg(why[0] != '\0', "%s: no message", steps[i].what);
        struct dir_list left = list_dir(dir);
        ck_assert_msg(left.count == 0, "%s failed but left a file (%s)", steps[i].what, left.names[0]);
    }

    /* Missing directory and missing file. */
    char missing[600];
    snprintf(missing, sizeof(missing), "%s/nope", dir);
    ck_assert_int_lt(snapshot_write(&io_posix, missing, &a, why, sizeof(why)), 0);
    ck_assert_int_eq(io_read_file(&io_posix, path, &buf, &len), -ENOENT);
    ck_assert_ptr_null(buf);

    /* An empty file reads fine and decodes as short. */
    write_file(path, "");
    ck_assert_int_eq(io_read_file(&io_posix, path, &buf, &len), 0);
    ck_assert_uint_eq(len, 0);
    ck_assert_int_eq(decode_status(buf, len, &cfg, why, sizeof(why)), SNAPSHOT_SHORT);
    free(buf);
    ck_assert_int_eq(io_view_file(&io_posix, path, &v), 0); /* nothing to map: read instead */
    ck_assert(!v.mapped && v.len == 0);
    io_view_release(&io_posix, &v);
    ck_assert_int_eq(unlink(path), 0);
    ck_assert_int_eq(io_view_file(&io_posix, path, &v), -ENOENT);
    ck_assert_ptr_null(v.buf);

    clear_dir(dir);
    ck_assert_int_eq(rmdir(dir), 0);
    sm_destroy(&a);
}
END_TEST

/* ---- names ------------------------------------------------------------------------------ */

START_TEST(test_names)
{
    char name[64];
    u64 lsn;
    ck_assert(snapshot_file_name(name, sizeof(name), 42));
    ck_assert_str_eq(name, "snapshot-00000000000000000042.snap");
    ck_assert(snapshot_parse_name(name, &lsn));
    ck_assert_uint_eq(lsn, 42);
    ck_assert(snapshot_file_name(name, sizeof(name), UINT64_MAX));
    ck_assert_str_eq(name, "snapshot-18446744073709551615.snap");
    ck_assert(snapshot_parse_name(name, &lsn));
    ck_assert_uint_eq(lsn, UINT64_MAX);
    ck_assert(snapshot_parse_name("snapshot-00000000000000000000.snap", &lsn));
    ck_assert_uint_eq(lsn, 0);
    ck_assert(!snapshot_file_name(name, 34, 1)); /* 34 characters and the terminator */
    ck_assert(snapshot_file_name(name, 35, 1));

    static const char *const bad[] = {
        "",
        "snapshot-",
        "snapshot-42.snap",
        "snapshot-0000000000000000042.snap",   /* 19 digits */
        "snapshot-000000000000000000042.snap", /* 21 digits */
        "snapshot-18446744073709551616.snap",  /* UINT64_MAX + 1 */
        "snapshot-99999999999999999999.snap",
        "snapshot-00000000000000000042.snap.tmp",
        "snapshot-00000000000000000042.tmp",
        "snapshot-00000000000000000042.sna",
        "snapshot-00000000000000000042.snapx",
        "snapshot-00000000000000000042",
        "snapshot-+0000000000000000042.snap",
        "snapshot- 0000000000000000042.snap",
        "snapshot-0000000000000000004a.snap",
        "Snapshot-00000000000000000042.snap",
        "xsnapshot-00000000000000000042.snap",
        "snapshot-00000000000000000042.SNAP",
        "/snapshot-00000000000000000042.snap",
    };
    for (size_t i = 0; i < ADB_ARRAY_LEN(bad); i++) {
        lsn = 7;
        ck_assert_msg(!snapshot_parse_name(bad[i], &lsn), "accepted \"%s\"", bad[i]);
        ck_assert_uint_eq(lsn, 7);
    }

    for (int i = 0; i < SNAPSHOT_STATUS_COUNT; i++) {
        ck_assert_str_ne(snapshot_status_name((enum snapshot_status)i), "unknown");
        for (int j = 0; j < i; j++)
            ck_assert_str_ne(snapshot_status_name((enum snapshot_status)i),
                             snapshot_status_name((enum snapshot_status)j));
    }
    ck_assert_str_eq(snapshot_status_name((enum snapshot_status)SNAPSHOT_STATUS_COUNT), "unknown");
}
END_TEST

/* ---- timing ----------------------------------------------------------------------------- */

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static u64 timing_size(void)
{
    const char *s = getenv("ADB_SNAPSHOT_TIMING_N");
    if (s != NULL && *s != '\0')
        return strtoull(s, NULL, 0);
#if defined(ADB_DEBUG)
    return 2000; /* every apply runs the O(n) invariant check */
#elif defined(SANITIZED)
    return 100000;
#else
    return 1000000;
#endif
}

static void timed_apply(sm_t *sm, u64 *lsn, u64 slot, struct sm_command c, u128 op, enum sm_result want)
{
    c.operation_id = op;
    c.client_id = 1;
    struct sm_outcome o = sm_apply(sm, ++*lsn, slot, &c);
    ck_assert_msg(o.result == want, "setup: %s", sm_result_name(o.result));
}

/*
 * N resources and N reservations: half reserved (deadlines spread over 1000 slots, a few
 * already due), a quarter confirmed, a quarter released; 1.5 N operation records.
 */
START_TEST(test_timing)
{
    u64 n = timing_size();
    ck_assert_uint_ge(n, 8);
    struct sm_config cfg = { .shard_id = 0,
                             .resource_capacity = (u32)n,
                             .reservation_capacity = (u32)n,
                             .operation_capacity = (u32)(n + n / 2 + 16),
                             .expiration_capacity = (u32)n,
                             .max_ttl_slots = 1000,
                             .dedupe_window_slots = 20,
                             .history_window_slots = 1000 };
    sm_t a, b;
    char why[300];
    ck_assert_msg(sm_create(&a, &cfg, why, sizeof(why)), "%s", why);
    u64 lsn = 0, op = 0, rng = 1;
    double t0 = now_ms();
    for (u64 i = 1; i <= n; i++)
        timed_apply(&a, &lsn, 1, fx_create_cmd(i), ++op, SM_OK);
    u128 *ids = malloc(n * sizeof(*ids));
    ck_assert_ptr_nonnull(ids);
    for (u64 i = 1; i <= n; i++) {
        timed_apply(&a, &lsn, 30, fx_reserve_cmd(i, 7, 1 + splitmix_next(&rng) % 1000), ++op, SM_OK);
        ids[i - 1] = U128_MAKE(0, lsn);
    }
    for (u64 i = 0; i < n / 2; i++)
        timed_apply(&a, &lsn, 31, i % 2 ? fx_confirm_cmd(ids[i], 7) : fx_release_cmd(ids[i], 7), ++op, SM_OK);
    free(ids);
    double t_build = now_ms() - t0;

    struct blob x;
    x.len = snapshot_encoded_size(&a);
    x.p = malloc(x.len);
    ck_assert_ptr_nonnull(x.p);
    /* Touch the buffer first so the timing is the encoder's, not first-touch page faults. */
    memset(x.p, 0, x.len);
    t0 = now_ms();
    ck_assert_uint_eq(snapshot_encode(&a, x.p, x.len), x.len);
    double t_encode = now_ms() - t0;
    keep_ops(&a); /* the records a version 2 snapshot leaves to the operation log */

    ck_assert(sm_create(&b, &cfg, why, sizeof(why)));
    t0 = now_ms();
    struct snapshot_ops_array arr;
    struct snapshot_ops ops = snapshot_ops_from_array(&arr, ops_copy, ops_count);
    enum snapshot_status st = snapshot_decode(x.p, x.len, &cfg, &ops, &b, why, sizeof(why));
    double t_decode = now_ms() - t0;
    ck_assert_msg(st == SNAPSHOT_OK, "%s: %s", snapshot_status_name(st), why);

    t0 = now_ms();
    struct sm_digest d = sm_digest(&b);
    double t_digest = now_ms() - t0;
    t0 = now_ms();
    ck_assert(sm_check_invariants(&b, why, sizeof(why)));
    double t_invariants = now_ms() - t0;
    struct sm_digest e = sm_digest(&a);
    ck_assert(d.lo == e.lo && d.hi == e.hi);

    printf("# snapshot timing: %llu resources, %u reservations (%u reserved, %u due, %u terminal), %u operations; "
           "%.1f MB\n",
           (ull)n, a.reservation_count, a.expiry.count, a.expiry.due_count, a.reservation_retire.count,
           a.operation_count, (double)x.len / 1e6);
    printf("# snapshot timing: encode %.1f ms (%.0f MB/s), decode %.1f ms (%.0f MB/s, of which "
           "sm_check_invariants %.1f ms); for scale: one sm_digest %.1f ms, building the state by sm_apply "
           "%.1f ms\n",
           t_encode, (double)x.len / 1e3 / t_encode, t_decode, (double)x.len / 1e3 / t_decode, t_invariants,
           t_digest, t_build);
    fflush(stdout);
    free(x.p);
    sm_destroy(&a);
    sm_destroy(&b);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("snapshot");
    TCase *tc = tcase_create("roundtrip");
    tcase_set_timeout(tc, TEST_LONG_TIMEOUT);
    tcase_add_loop_test(tc, test_roundtrip, 0, (int)ADB_ARRAY_LEN(roundtrip_seeds));
    tcase_add_test(tc, test_empty);
    tcase_add_test(tc, test_image);
    suite_add_tcase(s, tc);

    tc = tcase_create("corruption");
    tcase_set_timeout(tc, TEST_LONG_TIMEOUT);
    tcase_add_test(tc, test_truncation);
    tcase_add_test(tc, test_bit_flips);
    tcase_add_test(tc, test_reads_version_1);
    tcase_add_loop_test(tc, test_config_mismatch, 0, (int)ADB_ARRAY_LEN(config_fields));
    tcase_add_loop_test(tc, test_crafted, 0, CRAFT_COUNT);
    tcase_add_test(tc, test_due_list);
    tcase_add_loop_test(tc, test_mutations, 0, 4);
    suite_add_tcase(s, tc);

    tc = tcase_create("files");
    tcase_add_test(tc, test_files);
    tcase_add_test(tc, test_names);
    suite_add_tcase(s, tc);

    tc = tcase_create("timing");
    tcase_set_timeout(tc, TEST_LONG_TIMEOUT);
    tcase_add_test(tc, test_timing);
    suite_add_tcase(s, tc);
    return s;
}
