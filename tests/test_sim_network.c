/*
 * tests/test_sim_network.c — the simulator's PRNG (sim/prng.h) and packet network
 * (sim/network.h).
 *
 * PRNG: the published xoshiro256** reference outputs and a pinned seeded stream (so a seed
 * replays on every platform and build); prng_below stays in bounds and is unbiased for a bound
 * where both modulo reduction and unrejected multiplication are measurably biased; prng_range
 * is inclusive; prng_chance is exact at 0 and certainty and near its rate in between; a fork
 * consumes exactly one parent draw and the child's draws never shift the parent.
 *
 * Network: one seed replays the same deliveries (trace, counters, digest) and another seed
 * does not; without faults every packet arrives exactly once; loss near its rate; duplicates
 * and replays with the same bytes, later; delays within their bounds and reordering; delivery
 * time order with ties by send order; symmetric and one-way partitions, isolation and heal; a
 * link cut while a packet is on the wire; a full pool; a crashed node's inbound packets; the
 * asserts on an oversized packet and on time running backwards. Every packet carries its own
 * id and a length and filler derived from it, so a mix-up of bytes, lengths or links shows.
 */
#include "common/crc32c.h"
#include "common/le.h"
#include "sim/network.h"
#include "sim/prng.h"
#include "tests/check_main.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#define BYTES_MAX 64
#define MS 1000000ull

/* ---- PRNG ------------------------------------------------------------------------------- */

START_TEST(test_prng_reference_streams)
{
    /* xoshiro256**'s reference implementation from state {1, 2, 3, 4}. */
    struct prng p = {.s = {1, 2, 3, 4}};
    ck_assert_uint_eq(prng_u64(&p), 11520ull);
    ck_assert_uint_eq(prng_u64(&p), 0ull);
    ck_assert_uint_eq(prng_u64(&p), 1509978240ull);
    ck_assert_uint_eq(prng_u64(&p), 1215971899390074240ull);

    /* Seeding through SplitMix64, pinned: a change here changes every recorded seed. */
    prng_init(&p, 42);
    ck_assert_uint_eq(prng_u64(&p), 0x15780b2e0c2ec716ull);
    ck_assert_uint_eq(prng_u64(&p), 0x6104d9866d113a7eull);
    ck_assert_uint_eq(prng_u64(&p), 0xae17533239e499a1ull);

    /* Same seed, same stream; neighbouring seeds, unrelated streams. */
    struct prng a, b, c;
    prng_init(&a, 7);
    prng_init(&b, 7);
    prng_init(&c, 8);
    u32 same_as_c = 0;
    for (int i = 0; i < 1000; i++) {
        u64 x = prng_u64(&a);
        ck_assert_uint_eq(x, prng_u64(&b));
        same_as_c += x == prng_u64(&c);
    }
    ck_assert_uint_eq(same_as_c, 0);
}
END_TEST

START_TEST(test_prng_below_bounds_and_unbiased)
{
    struct prng p;
    prng_init(&p, 1);
    const u64 bounds[] = {1, 2, 3, 7, 1000, (1ull << 63) + 1, UINT64_MAX};
    for (size_t b = 0; b < ADB_ARRAY_LEN(bounds); b++)
        for (int i = 0; i < 10000; i++)
            ck_assert_uint_lt(prng_below(&p, bounds[b]), bounds[b]);

    /* n = 3 * 2^62. Reducing modulo n would land below 2^62 half the time (those values have
     * two preimages); the multiply-high without rejection would land on multiples of 3 half
     * the time (floor(3x/4) hits them twice). Unbiased: a third each. */
    const u64 n = 3ull << 62;
    const int draws = 60000;
    int low = 0, mult3 = 0;
    for (int i = 0; i < draws; i++) {
        u64 r = prng_below(&p, n);
        ck_assert_uint_lt(r, n);
        low += r < (1ull << 62);
        mult3 += r % 3 == 0;
    }
    /* 1/3 = 20000 with a standard deviation of ~115; 1/2 would be 30000. */
    ck_assert_int_gt(low, 19000);
    ck_assert_int_lt(low, 21000);
    ck_assert_int_gt(mult3, 19000);
    ck_assert_int_lt(mult3, 21000);

    /* Small bound: every value near equally often. */
    int counts[6] = {0};
    for (int i = 0; i < draws; i++)
        counts[prng_below(&p, 6)]++;
    for (int v = 0; v < 6; v++) {
        ck_assert_int_gt(counts[v], 9500);
        ck_assert_int_lt(counts[v], 10500);
    }
}
END_TEST

START_TEST(test_prng_range_and_chance)
{
    struct prng p;
    prng_init(&p, 2);
    bool seen[3] = {false, false, false};
    for (int i = 0; i < 1000; i++) {
        u64 r = prng_range(&p, 5, 7);
        ck_assert_uint_ge(r, 5);
        ck_assert_uint_le(r, 7);
        seen[r - 5] = true;
    }
    ck_assert(seen[0] && seen[1] && seen[2]); /* both ends inclusive */
    ck_assert_uint_eq(prng_range(&p, 9, 9), 9);
    ck_assert_uint_ge(prng_range(&p, UINT64_MAX - 1, UINT64_MAX), UINT64_MAX - 1);
    u64 or_all = 0;
    for (int i = 0; i < 64; i++)
        or_all |= prng_range(&p, 0, UINT64_MAX);
    ck_assert_uint_gt(or_all, 1ull << 62); /* the full range is really full */

    int hits = 0;
    for (int i = 0; i < 100000; i++) {
        ck_assert(!prng_chance(&p, 0));
        ck_assert(prng_chance(&p, PRNG_PPM));
        hits += prng_chance(&p, 250000);
    }
    ck_assert_int_gt(hits, 24000);
    ck_assert_int_lt(hits, 26000);

    /* Exactly ppm out of PRNG_PPM: true iff the draw below PRNG_PPM is under the rate. */
    for (int i = 0; i < 1000; i++) {
        struct prng copy = p;
        u32 draw = (u32)prng_below(&copy, PRNG_PPM);
        copy = p;
        ck_assert(!prng_chance(&copy, draw));
        ck_assert(prng_chance(&p, draw + 1));
    }

    /* Every chance draws exactly once, whatever its rate: rates do not shift the stream. */
    struct prng a, b;
    prng_init(&a, 3);
    prng_init(&b, 3);
    (void)prng_chance(&a, 0);
    (void)prng_chance(&a, PRNG_PPM);
    (void)prng_u64(&b);
    (void)prng_u64(&b);
    ck_assert_uint_eq(prng_u64(&a), prng_u64(&b));
}
END_TEST

/*
 * The fork property: forking consumes exactly one draw of the parent, and after the fork the
 * parent's values do not depend on how much the child draws. The child is deterministic,
 * differs from the parent and from a sibling forked next.
 */
START_TEST(test_prng_fork_independence)
{
    struct prng parent, reference;
    prng_init(&parent, 99);
    prng_init(&reference, 99);
    for (int i = 0; i < 5; i++)
        ck_assert_uint_eq(prng_u64(&parent), prng_u64(&reference));

    struct prng child = prng_fork(&parent);
    (void)prng_u64(&reference); /* the one draw the fork took */
    u64 child_first[100];
    for (int i = 0; i < 100; i++)
        child_first[i] = prng_u64(&child);
    for (int i = 0; i < 1000; i++)
        (void)prng_u64(&child); /* the child drawing a lot... */
    for (int i = 0; i < 100; i++)
        ck_assert_uint_eq(prng_u64(&parent), prng_u64(&reference)); /* ...shifts nothing */

    /* Not the parent's stream at any offset, nor a sibling's: no child value appears among
     * the parent's first 400 or a sibling's first 100. */
    struct prng again;
    prng_init(&again, 99);
    u64 parent_values[400];
    for (int i = 0; i < 400; i++)
        parent_values[i] = prng_u64(&again);
    prng_init(&again, 99);
    for (int i = 0; i < 5; i++)
        (void)prng_u64(&again);
    struct prng same_child = prng_fork(&again);
    struct prng sibling = prng_fork(&again);
    u64 sibling_values[100];
    for (int i = 0; i < 100; i++)
        sibling_values[i] = prng_u64(&sibling);
    int equal_parent = 0, equal_sibling = 0;
    for (int i = 0; i < 100; i++) {
        ck_assert_uint_eq(prng_u64(&same_child), child_first[i]); /* deterministic */
        for (int j = 0; j < 400; j++)
            equal_parent += child_first[i] == parent_values[j];
        for (int j = 0; j < 100; j++)
            equal_sibling += child_first[i] == sibling_values[j];
    }
    ck_assert_int_eq(equal_parent, 0);
    ck_assert_int_eq(equal_sibling, 0);
}
END_TEST

/* ---- network helpers -------------------------------------------------------------------- */

static struct sim_net_config config_plain(u32 nodes, u64 seed)
{
    return (struct sim_net_config){
        .nodes = nodes,
        .packets_max = 4096,
        .packet_bytes_max = BYTES_MAX,
        .delay_min_ns = 1 * MS,
        .delay_max_ns = 10 * MS,
        .seed = seed,
    };
}

static struct sim_net *net_new(const struct sim_net_config *c)
{
    struct sim_net *net = sim_net_create(c);
    ck_assert_ptr_nonnull(net);
    return net;
}

/* Packet `id`: the id, then filler bytes derived from it; length 8..BYTES_MAX from the id. */
static u32 packet_make(u8 *buf, u64 id)
{
    u32 len = 8 + (u32)(id * 13 % (BYTES_MAX - 7));
    le_put_u64(buf, id);
    for (u32 i = 8; i < len; i++)
        buf[i] = (u8)(id * 31 + i);
    return len;
}

/* Checks a delivered packet is exactly packet `id` and returns the id. */
static u64 packet_check(const struct sim_net_packet *pkt)
{
    ck_assert_uint_ge(pkt->len, 8);
    u64 id = le_get_u64(pkt->bytes);
    u8 expect[BYTES_MAX];
    ck_assert_uint_eq(packet_make(expect, id), pkt->len);
    ck_assert_mem_eq(expect, pkt->bytes, pkt->len);
    return id;
}

static void send_id(struct sim_net *net, u64 now, u32 from, u32 to, u64 id)
{
    u8 buf[BYTES_MAX];
    u32 len = packet_make(buf, id);
    sim_net_send(net, now, from, to, buf, len);
    memset(buf, 0xEE, sizeof(buf)); /* the network kept its own copy */
}

static void accounting_check(const struct sim_net *net)
{
    struct sim_net_counters c = sim_net_counters(net);
    ck_assert_uint_eq(c.sent + c.duplicated + c.replayed,
                      c.delivered + c.lost + c.dropped_partition + c.dropped_full +
                          c.dropped_crash + sim_net_in_flight(net));
}

/* Delivers everything still in flight, jumping time forward; returns the count. */
static u32 drain(struct sim_net *net, u64 *now, void (*each)(const struct sim_net_packet *, void *),
                 void *ctx)
{
    u32 n = 0;
    for (u64 t = sim_net_next_time(net); t != UINT64_MAX; t = sim_net_next_time(net)) {
        if (t > *now)
            *now = t;
        struct sim_net_packet pkt;
        while (sim_net_deliver(net, *now, &pkt)) {
            ck_assert_uint_le(pkt.deliver_ns, *now);
            if (each != NULL)
                each(&pkt, ctx);
            n++;
        }
    }
    return n;
}

/* ---- determinism ------------------------------------------------------------------------ */

struct trace {
    u64 digest;
    struct sim_net_counters counters;
    u32 n;
    u64 rows[20000][4]; /* deliver_ns, seq, from << 32 | to | kind << 16, crc << 32 | len */
};

static void trace_row(struct trace *t, const struct sim_net_packet *pkt)
{
    ck_assert_uint_lt(t->n, ADB_ARRAY_LEN(t->rows));
    u64 *r = t->rows[t->n++];
    r[0] = pkt->deliver_ns;
    r[1] = pkt->seq;
    r[2] = ((u64)pkt->from << 32) | pkt->to | ((u64)pkt->kind << 16);
    r[3] = ((u64)crc32c(0, pkt->bytes, pkt->len) << 32) | pkt->len;
}

static void trace_each(const struct sim_net_packet *pkt, void *ctx)
{
    trace_row(ctx, pkt);
}

/*
 * A faulty run: 5 nodes, loss 10%, dup 30%, replay 5%, partitions coming and going, a crash,
 * sends and deliveries interleaved on a clock the workload's own stream moves. `tweak` flips
 * one payload byte of packet 500 (to show the digest covers the bytes).
 */
static void run_faulty(u64 seed, bool tweak, struct trace *t)
{
    struct sim_net_config c = config_plain(5, seed);
    c.packets_max = 256;
    c.loss_ppm = 100000;
    c.dup_ppm = 300000;
    c.replay_ppm = 50000;
    c.replay_ring = 8;
    c.late_max_ns = 50 * MS;
    struct sim_net *net = net_new(&c);
    struct prng workload;
    prng_init(&workload, 1000 + seed);
    memset(t, 0, sizeof(*t));
    u64 now = 0;
    for (u64 id = 0; id < 3000; id++) {
        now += prng_below(&workload, 2 * MS);
        u8 buf[BYTES_MAX];
        u32 len = packet_make(buf, id);
        if (tweak && id == 500)
            buf[len - 1] ^= 1;
        sim_net_send(net, now, (u32)prng_below(&workload, 5), (u32)prng_below(&workload, 5), buf,
                     len);
        if (id % 400 == 100)
            sim_net_partition(net, (u32)prng_range(&workload, 1, 30));
        if (id % 400 == 300)
            sim_net_heal(net);
        if (id == 1500)
            sim_net_drop_node(net, 3);
        struct sim_net_packet pkt;
        while (sim_net_deliver(net, now, &pkt))
            trace_row(t, &pkt);
        accounting_check(net);
    }
    sim_net_heal(net);
    drain(net, &now, trace_each, t);
    t->digest = sim_net_digest(net);
    t->counters = sim_net_counters(net);
    sim_net_destroy(net);
}

static struct trace trace_a, trace_b;

START_TEST(test_same_seed_same_run)
{
    run_faulty(11, false, &trace_a);
    run_faulty(11, false, &trace_b);
    ck_assert_uint_gt(trace_a.n, 1000);
    ck_assert_uint_eq(trace_a.n, trace_b.n);
    for (u32 i = 0; i < trace_a.n; i++)
        for (int k = 0; k < 4; k++)
            ck_assert_uint_eq(trace_a.rows[i][k], trace_b.rows[i][k]);
    ck_assert_mem_eq(&trace_a.counters, &trace_b.counters, sizeof(trace_a.counters));
    ck_assert_uint_eq(trace_a.digest, trace_b.digest);

    /* Every fault actually happened in this run. */
    struct sim_net_counters c = trace_a.counters;
    ck_assert_uint_gt(c.lost, 0);
    ck_assert_uint_gt(c.duplicated, 0);
    ck_assert_uint_gt(c.replayed, 0);
    ck_assert_uint_gt(c.dropped_partition, 0);
    ck_assert_uint_gt(c.dropped_crash, 0);
    ck_assert_uint_eq(c.delivered, trace_a.n);
}
END_TEST

START_TEST(test_other_seed_or_bytes_differ)
{
    run_faulty(11, false, &trace_a);
    run_faulty(12, false, &trace_b);
    ck_assert_uint_ne(trace_a.digest, trace_b.digest);
    bool differ = trace_a.n != trace_b.n;
    for (u32 i = 0; !differ && i < trace_a.n; i++)
        differ = memcmp(trace_a.rows[i], trace_b.rows[i], sizeof(trace_a.rows[i])) != 0;
    ck_assert(differ);

    /* Same seed, one payload bit flipped: same schedule, different digest. */
    run_faulty(11, true, &trace_b);
    ck_assert_uint_eq(trace_a.n, trace_b.n);
    ck_assert_uint_ne(trace_a.digest, trace_b.digest);
}
END_TEST

/* ---- faults ----------------------------------------------------------------------------- */

#define IDS 5000

struct seen {
    u32 count[IDS];
    u32 kind_count[3];
    u64 first_deliver[IDS];
    u32 nodes;
};

static void seen_add(const struct sim_net_packet *pkt, void *ctx)
{
    struct seen *s = ctx;
    u64 id = packet_check(pkt);
    ck_assert_uint_lt(id, IDS);
    /* Sent by send_ids: the link is a function of the id. */
    ck_assert_uint_eq(pkt->from, id % s->nodes);
    ck_assert_uint_eq(pkt->to, (id / s->nodes) % s->nodes);
    if (s->count[id]++ == 0)
        s->first_deliver[id] = pkt->deliver_ns;
    s->kind_count[pkt->kind]++;
}

/* Sends ids 0..n-1, one every 100 us, on links derived from the ids. */
static void send_ids(struct sim_net *net, u64 *now, u32 nodes, u32 n)
{
    for (u64 id = 0; id < n; id++) {
        *now += 100000;
        send_id(net, *now, (u32)(id % nodes), (u32)((id / nodes) % nodes), id);
    }
}

static struct seen seen;

START_TEST(test_no_faults_exactly_once)
{
    struct sim_net_config c = config_plain(4, 5);
    c.packets_max = IDS;
    struct sim_net *net = net_new(&c);
    memset(&seen, 0, sizeof(seen));
    seen.nodes = 4;
    u64 now = 0;
    send_ids(net, &now, 4, IDS);
    ck_assert_uint_eq(drain(net, &now, seen_add, &seen), IDS);
    for (u32 id = 0; id < IDS; id++)
        ck_assert_uint_eq(seen.count[id], 1);
    struct sim_net_counters k = sim_net_counters(net);
    ck_assert_uint_eq(k.sent, IDS);
    ck_assert_uint_eq(k.delivered, IDS);
    ck_assert_uint_eq(k.lost + k.duplicated + k.replayed + k.dropped_partition + k.dropped_full +
                          k.dropped_crash,
                      0);
    ck_assert_uint_eq(sim_net_in_flight(net), 0);
    ck_assert_uint_eq(sim_net_next_time(net), UINT64_MAX);
    sim_net_destroy(net);
}
END_TEST

START_TEST(test_loss_rate)
{
    struct sim_net_config c = config_plain(3, 6);
    c.packets_max = IDS;
    c.loss_ppm = 200000;
    struct sim_net *net = net_new(&c);
    memset(&seen, 0, sizeof(seen));
    seen.nodes = 3;
    u64 now = 0;
    send_ids(net, &now, 3, IDS);
    u32 delivered = drain(net, &now, seen_add, &seen);
    struct sim_net_counters k = sim_net_counters(net);
    /* 20% of 5000 = 1000, standard deviation ~28. */
    ck_assert_uint_gt(k.lost, 900);
    ck_assert_uint_lt(k.lost, 1100);
    ck_assert_uint_eq(delivered, IDS - k.lost);
    for (u32 id = 0; id < IDS; id++)
        ck_assert_uint_le(seen.count[id], 1); /* lost or once, never twice */
    accounting_check(net);
    sim_net_destroy(net);
}
END_TEST

START_TEST(test_duplicates_arrive_later_with_same_bytes)
{
    struct sim_net_config c = config_plain(3, 7);
    c.packets_max = 2 * IDS;
    c.dup_ppm = 500000;
    c.late_max_ns = 1000 * MS;
    struct sim_net *net = net_new(&c);
    memset(&seen, 0, sizeof(seen));
    seen.nodes = 3;
    u64 now = 0;
    send_ids(net, &now, 3, IDS);
    drain(net, &now, seen_add, &seen);
    struct sim_net_counters k = sim_net_counters(net);
    ck_assert_uint_gt(k.duplicated, 2300); /* 50% of 5000, sd ~35 */
    ck_assert_uint_lt(k.duplicated, 2700);
    ck_assert_uint_eq(seen.kind_count[SIM_NET_DUPLICATE], k.duplicated);
    ck_assert_uint_eq(seen.kind_count[SIM_NET_ORIGINAL], IDS);
    ck_assert_uint_eq(k.delivered, IDS + k.duplicated);
    u32 twice = 0;
    for (u32 id = 0; id < IDS; id++) {
        ck_assert_uint_ge(seen.count[id], 1);
        ck_assert_uint_le(seen.count[id], 2);
        twice += seen.count[id] == 2;
    }
    ck_assert_uint_eq(twice, k.duplicated); /* packet_check matched the bytes of each */
    sim_net_destroy(net);
}
END_TEST

struct delays {
    u64 min_ns, max_ns, late_max_ns;
    u64 lo, hi;      /* observed for originals */
    u64 late_hi;     /* observed for duplicates */
    u32 reordered;   /* deliveries whose send time precedes the previous delivery's */
    u64 prev_sent;
    u64 prev_deliver;
    u64 prev_seq;
    u32 ties;
};

static struct delays delays_of(const struct sim_net_config *c)
{
    return (struct delays){.min_ns = c->delay_min_ns, .max_ns = c->delay_max_ns,
                           .late_max_ns = c->late_max_ns, .lo = UINT64_MAX,
                           .prev_seq = UINT64_MAX};
}

static void delays_add(const struct sim_net_packet *pkt, void *ctx)
{
    struct delays *d = ctx;
    u64 delay = pkt->deliver_ns - pkt->sent_ns;
    ck_assert_uint_ge(pkt->deliver_ns, d->prev_deliver); /* delivery-time order */
    if (pkt->deliver_ns == d->prev_deliver && d->prev_seq != UINT64_MAX) {
        ck_assert_uint_gt(pkt->seq, d->prev_seq); /* ties in scheduling order */
        d->ties++;
    }
    if (pkt->kind == SIM_NET_ORIGINAL) {
        ck_assert_uint_ge(delay, d->min_ns);
        ck_assert_uint_le(delay, d->max_ns);
        if (delay < d->lo)
            d->lo = delay;
        if (delay > d->hi)
            d->hi = delay;
    } else {
        ck_assert_uint_ge(delay, d->min_ns);
        ck_assert_uint_le(delay, d->max_ns + d->late_max_ns);
        if (delay > d->late_hi)
            d->late_hi = delay;
    }
    d->reordered += pkt->sent_ns < d->prev_sent;
    d->prev_sent = pkt->sent_ns;
    d->prev_deliver = pkt->deliver_ns;
    d->prev_seq = pkt->seq;
}

START_TEST(test_delays_within_bounds_and_reorder)
{
    struct sim_net_config c = config_plain(2, 8);
    c.packets_max = 2 * IDS;
    c.delay_min_ns = 3 * MS;
    c.delay_max_ns = 9 * MS;
    c.dup_ppm = 200000;
    c.late_max_ns = 500 * MS;
    struct sim_net *net = net_new(&c);
    struct delays d = delays_of(&c);
    u64 now = 0;
    send_ids(net, &now, 2, IDS);
    drain(net, &now, delays_add, &d);
    /* Uniform over the whole range: both ends reached within 1%. */
    ck_assert_uint_lt(d.lo, c.delay_min_ns + 60000);
    ck_assert_uint_gt(d.hi, c.delay_max_ns - 60000);
    /* Duplicates can come much later than any original. */
    ck_assert_uint_gt(d.late_hi, 400 * MS);
    ck_assert_uint_gt(d.reordered, 100);
    sim_net_destroy(net);
}
END_TEST

/* Constant delay: packets sent at one instant all fall due together and come out in send
 * order; none comes out before it is due. */
START_TEST(test_order_ties_by_send_order)
{
    struct sim_net_config c = config_plain(3, 9);
    c.delay_min_ns = c.delay_max_ns = 5 * MS;
    struct sim_net *net = net_new(&c);
    for (u64 id = 0; id < 50; id++)
        send_id(net, 100 * MS, (u32)(id % 3), (u32)((id + 1) % 3), id);
    send_id(net, 100 * MS + 1, 0, 1, 50);
    ck_assert_uint_eq(sim_net_next_time(net), 105 * MS);
    struct sim_net_packet pkt;
    ck_assert(!sim_net_deliver(net, 105 * MS - 1, &pkt)); /* nothing early */
    for (u64 id = 0; id < 50; id++) {
        ck_assert(sim_net_deliver(net, 105 * MS, &pkt));
        ck_assert_uint_eq(packet_check(&pkt), id);
        ck_assert_uint_eq(pkt.from, id % 3);
        ck_assert_uint_eq(pkt.to, (id + 1) % 3);
        ck_assert_uint_eq(pkt.deliver_ns, 105 * MS);
        ck_assert_uint_eq(pkt.sent_ns, 100 * MS);
    }
    ck_assert(!sim_net_deliver(net, 105 * MS, &pkt)); /* id 50 is due 1 ns later */
    ck_assert_uint_eq(sim_net_next_time(net), 105 * MS + 1);
    ck_assert(sim_net_deliver(net, 200 * MS, &pkt)); /* late delivery is fine */
    ck_assert_uint_eq(packet_check(&pkt), 50);
    ck_assert_uint_eq(sim_net_next_time(net), UINT64_MAX);
    sim_net_destroy(net);
}
END_TEST

/* Delays of 0..3 ns on sends 1 ns apart: many packets sent at different times fall due at
 * the same time, and come out by (delivery time, scheduling order). */
START_TEST(test_order_ties_across_send_times)
{
    struct sim_net_config c = config_plain(2, 10);
    c.delay_min_ns = 0;
    c.delay_max_ns = 3;
    c.dup_ppm = 300000;
    c.late_max_ns = 2;
    struct sim_net *net = net_new(&c);
    struct delays d = delays_of(&c);
    u64 now = 0;
    for (u64 id = 0; id < 2000; id++)
        send_id(net, ++now, 0, 1, id);
    drain(net, &now, delays_add, &d);
    ck_assert_uint_gt(d.ties, 500);
    ck_assert_uint_gt(d.reordered, 100);
    sim_net_destroy(net);
}
END_TEST

/* ---- links ------------------------------------------------------------------------------ */

/* Sends one packet on every ordered pair of distinct nodes and returns, as a bitmask per
 * sender, which of them arrived. */
static void deliveries_by_link(struct sim_net *net, u64 *now, u32 nodes, u32 arrived[])
{
    u64 id = 0;
    for (u32 from = 0; from < nodes; from++)
        for (u32 to = 0; to < nodes; to++)
            if (from != to)
                send_id(net, *now, from, to, id++);
    for (u32 from = 0; from < nodes; from++)
        arrived[from] = 0;
    *now += 1000 * MS; /* past every delay */
    struct sim_net_packet pkt;
    while (sim_net_deliver(net, *now, &pkt)) {
        packet_check(&pkt);
        ck_assert_uint_eq(arrived[pkt.from] & (1u << pkt.to), 0);
        arrived[pkt.from] |= 1u << pkt.to;
    }
    ck_assert_uint_eq(sim_net_in_flight(net), 0);
}

/* All pairs except self: the bitmask of destinations from `from` when every link is up. */
static u32 all_but(u32 nodes, u32 from)
{
    return ((1u << nodes) - 1) & ~(1u << from);
}

START_TEST(test_partition_symmetric)
{
    struct sim_net_config c = config_plain(5, 11);
    struct sim_net *net = net_new(&c);
    u32 arrived[5];
    u64 now = 0;
    sim_net_partition(net, 0x3); /* {0, 1} | {2, 3, 4} */
    deliveries_by_link(net, &now, 5, arrived);
    ck_assert_uint_eq(arrived[0], 0x02);
    ck_assert_uint_eq(arrived[1], 0x01);
    ck_assert_uint_eq(arrived[2], 0x18);
    ck_assert_uint_eq(arrived[3], 0x14);
    ck_assert_uint_eq(arrived[4], 0x0C);
    /* 2 * 2 * 3 links cut, counted at send time. */
    ck_assert_uint_eq(sim_net_counters(net).dropped_partition, 12);
    for (u32 a = 0; a < 5; a++)
        for (u32 b = 0; b < 5; b++)
            ck_assert(sim_net_link_up(net, a, b) == (a == b || (a < 2) == (b < 2)));

    sim_net_heal(net);
    deliveries_by_link(net, &now, 5, arrived);
    for (u32 from = 0; from < 5; from++)
        ck_assert_uint_eq(arrived[from], all_but(5, from));
    ck_assert_uint_eq(sim_net_counters(net).dropped_partition, 12);
    accounting_check(net);
    sim_net_destroy(net);
}
END_TEST

START_TEST(test_partition_one_way)
{
    struct sim_net_config c = config_plain(3, 12);
    struct sim_net *net = net_new(&c);
    u32 arrived[3];
    u64 now = 0;
    sim_net_cut_one_way(net, 0, 1);
    ck_assert(!sim_net_link_up(net, 0, 1));
    ck_assert(sim_net_link_up(net, 1, 0));
    deliveries_by_link(net, &now, 3, arrived);
    ck_assert_uint_eq(arrived[0], 0x4);           /* 0 -> 2 only */
    ck_assert_uint_eq(arrived[1], all_but(3, 1)); /* 1 -> 0 still works */
    ck_assert_uint_eq(arrived[2], all_but(3, 2));
    ck_assert_uint_eq(sim_net_counters(net).dropped_partition, 1);

    sim_net_link_set(net, 0, 1, true);
    deliveries_by_link(net, &now, 3, arrived);
    ck_assert_uint_eq(arrived[0], all_but(3, 0));
    sim_net_destroy(net);
}
END_TEST

START_TEST(test_isolate_and_heal)
{
    struct sim_net_config c = config_plain(4, 13);
    struct sim_net *net = net_new(&c);
    u32 arrived[4];
    u64 now = 0;
    sim_net_isolate(net, 2);
    deliveries_by_link(net, &now, 4, arrived);
    ck_assert_uint_eq(arrived[2], 0);
    for (u32 from = 0; from < 4; from++)
        if (from != 2)
            ck_assert_uint_eq(arrived[from], all_but(4, from) & ~0x4u);
    ck_assert_uint_eq(sim_net_counters(net).dropped_partition, 6);
    ck_assert(sim_net_link_up(net, 2, 2)); /* a node still reaches itself */

    sim_net_heal(net);
    deliveries_by_link(net, &now, 4, arrived);
    for (u32 from = 0; from < 4; from++)
        ck_assert_uint_eq(arrived[from], all_but(4, from));
    sim_net_destroy(net);
}
END_TEST

START_TEST(test_link_cut_in_flight)
{
    struct sim_net_config c = config_plain(3, 14);
    struct sim_net *net = net_new(&c);
    struct sim_net_packet pkt;
    send_id(net, 0, 0, 1, 1);
    send_id(net, 0, 1, 0, 2);
    send_id(net, 0, 0, 2, 3);
    sim_net_cut_one_way(net, 0, 1); /* while 1 is on the wire */
    ck_assert_uint_eq(sim_net_counters(net).dropped_partition, 0);
    u32 got = 0;
    while (sim_net_deliver(net, 100 * MS, &pkt))
        got |= 1u << packet_check(&pkt);
    ck_assert_uint_eq(got, (1u << 2) | (1u << 3));
    ck_assert_uint_eq(sim_net_counters(net).dropped_partition, 1);

    /* Cut and healed again before delivery: the link state at delivery time decides. */
    send_id(net, 100 * MS, 0, 2, 4);
    sim_net_isolate(net, 2);
    sim_net_heal(net);
    ck_assert(sim_net_deliver(net, 200 * MS, &pkt));
    ck_assert_uint_eq(packet_check(&pkt), 4);
    ck_assert_uint_eq(sim_net_counters(net).dropped_partition, 1);
    accounting_check(net);
    sim_net_destroy(net);
}
END_TEST

/* ---- capacity and crashes --------------------------------------------------------------- */

START_TEST(test_capacity_full_drops)
{
    struct sim_net_config c = config_plain(2, 15);
    c.packets_max = 8;
    struct sim_net *net = net_new(&c);
    u64 now = 0;
    for (u64 id = 0; id < 12; id++)
        send_id(net, now, 0, 1, id);
    ck_assert_uint_eq(sim_net_in_flight(net), 8);
    ck_assert_uint_eq(sim_net_counters(net).dropped_full, 4);
    u32 got = 0;
    struct sim_net_packet pkt;
    now = 100 * MS;
    while (sim_net_deliver(net, now, &pkt))
        got |= 1u << packet_check(&pkt);
    ck_assert_uint_eq(got, 0xFF); /* the first 8 made it, the last 4 did not */

    /* Slots come back: a second round fills the pool again, duplicates count as drops too. */
    sim_net_destroy(net);
    c.dup_ppm = PRNG_PPM;
    net = net_new(&c);
    for (u64 id = 0; id < 6; id++)
        send_id(net, now, 0, 1, id);
    struct sim_net_counters k = sim_net_counters(net);
    ck_assert_uint_eq(k.duplicated, 6);
    ck_assert_uint_eq(k.dropped_full, 4); /* 12 scheduled, 8 slots */
    ck_assert_uint_eq(sim_net_in_flight(net), 8);
    for (int round = 0; round < 3; round++) {
        u64 t = sim_net_next_time(net);
        now = 2000 * MS * (u64)(round + 1);
        ck_assert_uint_le(t, now);
        while (sim_net_deliver(net, now, &pkt))
            packet_check(&pkt);
        ck_assert_uint_eq(sim_net_in_flight(net), 0);
        for (u64 id = 0; id < 4; id++)
            send_id(net, now, 1, 0, id);
        ck_assert_uint_eq(sim_net_in_flight(net), 8);
    }
    ck_assert_uint_eq(sim_net_counters(net).dropped_full, 4);
    accounting_check(net);
    sim_net_destroy(net);
}
END_TEST

START_TEST(test_drop_node)
{
    struct sim_net_config c = config_plain(4, 16);
    struct sim_net *net = net_new(&c);
    u64 now = 0;
    for (u64 id = 0; id < 400; id++)
        send_id(net, now += 10000, (u32)(id % 4), (u32)(id / 4 % 4), id);
    u32 to1 = 0;
    for (u64 id = 0; id < 400; id++)
        to1 += id / 4 % 4 == 1;
    sim_net_drop_node(net, 1);
    ck_assert_uint_eq(sim_net_counters(net).dropped_crash, to1);
    ck_assert_uint_eq(sim_net_in_flight(net), 400 - to1);
    /* What is left still comes out in delivery-time order (the heap was rebuilt), and
     * packets from node 1 are still on the wire. */
    struct delays d = delays_of(&c);
    memset(&seen, 0, sizeof(seen));
    seen.nodes = 4;
    struct sim_net_packet pkt;
    u32 from1 = 0, n = 0;
    now += 1000 * MS;
    while (sim_net_deliver(net, now, &pkt)) {
        delays_add(&pkt, &d);
        seen_add(&pkt, &seen);
        ck_assert_uint_ne(pkt.to, 1);
        from1 += pkt.from == 1;
        n++;
    }
    ck_assert_uint_eq(n, 400 - to1);
    ck_assert_uint_gt(from1, 0);
    /* The node can receive again once it is back. */
    send_id(net, now, 0, 1, 7);
    ck_assert(sim_net_deliver(net, now + 1000 * MS, &pkt));
    ck_assert_uint_eq(pkt.to, 1);
    accounting_check(net);
    sim_net_destroy(net);
}
END_TEST

/* ---- replay ----------------------------------------------------------------------------- */

START_TEST(test_replay_redelivers_recent_packets)
{
    struct sim_net_config c = config_plain(3, 17);
    c.replay_ppm = 300000;
    c.replay_ring = 4;
    c.late_max_ns = 100 * MS;
    struct sim_net *net = net_new(&c);
    struct sim_net_packet pkt;
    u64 now = 0;
    /* Nothing delivered yet: nothing to replay. */
    for (u64 id = 0; id < 100; id++)
        send_id(net, now, 0, 1, id);
    ck_assert_uint_eq(sim_net_counters(net).replayed, 0);

    /* From now on each send may bring back an earlier packet, on its own link, with its
     * own bytes. */
    for (u64 id = 100; id < 3000; id++) {
        now += 1 * MS;
        send_id(net, now, (u32)(id % 3), (u32)(id / 3 % 3), id);
        while (sim_net_deliver(net, now, &pkt)) {
            u64 got = packet_check(&pkt);
            if (pkt.kind != SIM_NET_REPLAY)
                continue;
            ck_assert_uint_lt(got, id);
            ck_assert_uint_eq(pkt.from, got < 100 ? 0 : got % 3);
            ck_assert_uint_eq(pkt.to, got < 100 ? 1 : got / 3 % 3);
        }
    }
    struct sim_net_counters k = sim_net_counters(net);
    ck_assert_uint_gt(k.replayed, 700); /* 30% of 2900 sends, sd ~25 */
    ck_assert_uint_lt(k.replayed, 1050);
    drain(net, &now, NULL, NULL);
    ck_assert_uint_eq(sim_net_counters(net).delivered, 3000 + k.replayed);
    sim_net_destroy(net);

    /* A ring of 0 turns replay off whatever the rate. */
    c.replay_ring = 0;
    c.replay_ppm = PRNG_PPM;
    net = net_new(&c);
    for (u64 id = 0; id < 100; id++) {
        send_id(net, now, 0, 1, id);
        while (sim_net_deliver(net, now, &pkt))
            ck_assert_int_eq(pkt.kind, SIM_NET_ORIGINAL);
        now += 20 * MS;
    }
    ck_assert_uint_eq(sim_net_counters(net).replayed, 0);
    sim_net_destroy(net);
}
END_TEST

/* A replay is one of the last replay_ring originals delivered: with a ring of 1 and replay
 * certain, the packet replayed at each send is exactly the last original delivered (replays
 * themselves are not remembered, or the ring would fill with one packet forever). */
START_TEST(test_replay_ring_is_recent)
{
    struct sim_net_config c = config_plain(2, 18);
    c.replay_ppm = PRNG_PPM;
    c.replay_ring = 1;
    c.delay_min_ns = c.delay_max_ns = 1 * MS;
    struct sim_net *net = net_new(&c);
    struct sim_net_packet pkt;
    u64 now = 0;
    send_id(net, now, 0, 1, 0);
    now += 1 * MS;
    ck_assert(sim_net_deliver(net, now, &pkt));
    u64 last = packet_check(&pkt);
    for (u64 id = 1; id < 50; id++) {
        send_id(net, now, 1, 0, id); /* schedules id and a replay of `last` */
        now += 1 * MS;
        u32 n = 0, replays = 0;
        u64 original = UINT64_MAX;
        while (sim_net_deliver(net, now, &pkt)) {
            u64 got = packet_check(&pkt);
            if (pkt.kind == SIM_NET_REPLAY) {
                ck_assert_uint_eq(got, last);
                ck_assert_uint_eq(pkt.from, last == 0 ? 0 : 1);
                replays++;
            } else {
                original = got;
            }
            n++;
        }
        ck_assert_uint_eq(n, 2);
        ck_assert_uint_eq(replays, 1);
        ck_assert_uint_eq(original, id);
        last = original;
    }
    sim_net_destroy(net);
}
END_TEST

/* ---- programming errors ----------------------------------------------------------------- */

START_TEST(test_oversize_packet_asserts)
{
    struct sim_net_config c = config_plain(2, 19);
    struct sim_net *net = net_new(&c);
    u8 buf[BYTES_MAX + 1] = {0};
    sim_net_send(net, 0, 0, 1, buf, BYTES_MAX); /* the largest allowed */
    sim_net_send(net, 0, 0, 1, buf, BYTES_MAX + 1);
}
END_TEST

START_TEST(test_time_backwards_asserts)
{
    struct sim_net_config c = config_plain(2, 20);
    struct sim_net *net = net_new(&c);
    struct sim_net_packet pkt;
    (void)sim_net_deliver(net, 10, &pkt);
    send_id(net, 9, 0, 1, 0);
}
END_TEST

START_TEST(test_node_out_of_range_asserts)
{
    struct sim_net_config c = config_plain(2, 21);
    struct sim_net *net = net_new(&c);
    send_id(net, 0, 0, 2, 0);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("sim_network");
    TCase *tc = tcase_create("prng");
    tcase_add_test(tc, test_prng_reference_streams);
    tcase_add_test(tc, test_prng_below_bounds_and_unbiased);
    tcase_add_test(tc, test_prng_range_and_chance);
    tcase_add_test(tc, test_prng_fork_independence);
    suite_add_tcase(s, tc);

    tc = tcase_create("network");
    tcase_set_timeout(tc, TEST_LONG_TIMEOUT);
    tcase_add_test(tc, test_same_seed_same_run);
    tcase_add_test(tc, test_other_seed_or_bytes_differ);
    tcase_add_test(tc, test_no_faults_exactly_once);
    tcase_add_test(tc, test_loss_rate);
    tcase_add_test(tc, test_duplicates_arrive_later_with_same_bytes);
    tcase_add_test(tc, test_delays_within_bounds_and_reorder);
    tcase_add_test(tc, test_order_ties_by_send_order);
    tcase_add_test(tc, test_order_ties_across_send_times);
    tcase_add_test(tc, test_partition_symmetric);
    tcase_add_test(tc, test_partition_one_way);
    tcase_add_test(tc, test_isolate_and_heal);
    tcase_add_test(tc, test_link_cut_in_flight);
    tcase_add_test(tc, test_capacity_full_drops);
    tcase_add_test(tc, test_drop_node);
    tcase_add_test(tc, test_replay_redelivers_recent_packets);
    tcase_add_test(tc, test_replay_ring_is_recent);
    tcase_add_test_raise_signal(tc, test_oversize_packet_asserts, SIGABRT);
    tcase_add_test_raise_signal(tc, test_time_backwards_asserts, SIGABRT);
    tcase_add_test_raise_signal(tc, test_node_out_of_range_asserts, SIGABRT);
    suite_add_tcase(s, tc);
    return s;
}
