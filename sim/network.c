/*
 * sim/network.c — the simulated packet network (see network.h).
 *
 * In flight: a fixed pool of packets_max slots (metadata in `slots`, bytes at
 * slot * packet_bytes_max in `pool`), a stack of free slot numbers, and a binary min-heap of
 * slot numbers ordered by (deliver_ns, seq). Links: one bitmask per sender, bit `to` set when
 * from->to is down. The replay ring keeps copies of the last replay_ring originals delivered:
 * duplicates and replays are copies of those already, and remembering replays would let one
 * packet fill the ring and be replayed forever.
 */
#include "sim/network.h"

#include "common/assert.h"
#include "common/crc32c.h"
#include "common/hash.h"
#include "sim/prng.h"

#include <stdlib.h>
#include <string.h>

ADB_STATIC_ASSERT(SIM_NODES_MAX < 32, "links and partition masks are u32 bitmasks");

#define SIM_NET_DIGEST_INIT 0x243f6a8885a308d3ULL

struct sim_net_slot {
    u64 sent_ns;
    u64 deliver_ns;
    u64 seq;
    u32 from;
    u32 to;
    u32 len;
    enum sim_net_kind kind;
};

struct sim_net_replay {
    u32 from;
    u32 to;
    u32 len;
};

struct sim_net {
    struct sim_net_config config;
    struct prng prng;
    u64 now_ns;   /* the latest time passed in: time runs forward only */
    u64 seq_next; /* sequence number of the next scheduled packet */
    u64 digest;
    struct sim_net_counters counters;
    u32 links_down[SIM_NODES_MAX]; /* bit `to` of links_down[from]: from->to is down */

    struct sim_net_slot *slots; /* [packets_max] */
    u8 *pool;                   /* [packets_max * packet_bytes_max] */
    u32 *free_slots;            /* stack of free slot numbers, [packets_max] */
    u32 free_count;
    u32 *heap; /* slot numbers, min-heap by (deliver_ns, seq), [packets_max] */
    u32 heap_count;

    struct sim_net_replay *replay; /* [replay_ring] */
    u8 *replay_bytes;              /* [replay_ring * packet_bytes_max] */
    u32 replay_count;              /* entries filled, <= replay_ring */
    u32 replay_next;               /* the entry the next delivery overwrites */

    u8 *out_bytes; /* [packet_bytes_max]: the packet sim_net_deliver last handed out */
};

static void config_check(const struct sim_net_config *c)
{
    ADB_ASSERT(c->nodes >= 1);
    ADB_ASSERT(c->nodes <= SIM_NODES_MAX);
    ADB_ASSERT(c->packets_max > 0);
    ADB_ASSERT(c->packet_bytes_max > 0);
    ADB_ASSERT(c->loss_ppm <= PRNG_PPM);
    ADB_ASSERT(c->dup_ppm <= PRNG_PPM);
    ADB_ASSERT(c->replay_ppm <= PRNG_PPM);
    ADB_ASSERT(c->replay_ring <= SIM_NET_REPLAY_RING_MAX);
    ADB_ASSERT(c->delay_min_ns <= c->delay_max_ns);
    ADB_ASSERT(c->late_max_ns <= UINT64_MAX - c->delay_max_ns);
}

/* calloc of n * size bytes, NULL on overflow as on exhaustion; a 0-byte request is valid. */
static void *alloc_array(u64 n, u64 size)
{
    if (n == 0 || size == 0)
        return calloc(1, 1);
    if (n > SIZE_MAX / size)
        return NULL;
    return calloc((size_t)n, (size_t)size);
}

struct sim_net *sim_net_create(const struct sim_net_config *config)
{
    config_check(config);
    struct sim_net *net = calloc(1, sizeof(*net));
    if (net == NULL)
        return NULL;
    net->config = *config;
    prng_init(&net->prng, config->seed);
    net->digest = SIM_NET_DIGEST_INIT;

    u32 cap = config->packets_max;
    u32 bytes_max = config->packet_bytes_max;
    net->slots = alloc_array(cap, sizeof(*net->slots));
    net->pool = alloc_array(cap, bytes_max);
    net->free_slots = alloc_array(cap, sizeof(*net->free_slots));
    net->heap = alloc_array(cap, sizeof(*net->heap));
    net->replay = alloc_array(config->replay_ring, sizeof(*net->replay));
    net->replay_bytes = alloc_array(config->replay_ring, bytes_max);
    net->out_bytes = alloc_array(1, bytes_max);
    if (net->slots == NULL || net->pool == NULL || net->free_slots == NULL || net->heap == NULL ||
        net->replay == NULL || net->replay_bytes == NULL || net->out_bytes == NULL) {
        sim_net_destroy(net);
        return NULL;
    }
    /* Slot 0 is taken first. */
    for (u32 i = 0; i < cap; i++)
        net->free_slots[i] = cap - 1 - i;
    net->free_count = cap;
    return net;
}

void sim_net_destroy(struct sim_net *net)
{
    if (net == NULL)
        return;
    free(net->out_bytes);
    free(net->replay_bytes);
    free(net->replay);
    free(net->heap);
    free(net->free_slots);
    free(net->pool);
    free(net->slots);
    free(net);
}

/* ---- invariants ------------------------------------------------------------------------- */

static void check_accounting(const struct sim_net *net)
{
    const struct sim_net_counters *c = &net->counters;
    ADB_ASSERT(net->heap_count + net->free_count == net->config.packets_max);
    ADB_ASSERT(c->sent + c->duplicated + c->replayed ==
               c->delivered + c->lost + c->dropped_partition + c->dropped_full +
                   c->dropped_crash + net->heap_count);
}

static void time_advance(struct sim_net *net, u64 now_ns)
{
    ADB_ASSERT(now_ns >= net->now_ns);
    net->now_ns = now_ns;
}

static void node_check(const struct sim_net *net, u32 node)
{
    ADB_ASSERT(node < net->config.nodes);
}

/* ---- the heap --------------------------------------------------------------------------- */

static bool slot_before(const struct sim_net *net, u32 a, u32 b)
{
    const struct sim_net_slot *x = &net->slots[a];
    const struct sim_net_slot *y = &net->slots[b];
    if (x->deliver_ns != y->deliver_ns)
        return x->deliver_ns < y->deliver_ns;
    ADB_ASSERT(x->seq != y->seq);
    return x->seq < y->seq;
}

static void heap_sift_up(struct sim_net *net, u32 i)
{
    u32 *h = net->heap;
    while (i > 0) {
        u32 parent = (i - 1) / 2;
        if (!slot_before(net, h[i], h[parent]))
            break;
        u32 t = h[i];
        h[i] = h[parent];
        h[parent] = t;
        i = parent;
    }
}

static void heap_sift_down(struct sim_net *net, u32 i)
{
    u32 *h = net->heap;
    u32 n = net->heap_count;
    for (;;) {
        u32 least = i;
        u32 left = 2 * i + 1;
        u32 right = left + 1;
        if (left < n && slot_before(net, h[left], h[least]))
            least = left;
        if (right < n && slot_before(net, h[right], h[least]))
            least = right;
        if (least == i)
            return;
        u32 t = h[i];
        h[i] = h[least];
        h[least] = t;
        i = least;
    }
}

/* Removes the earliest packet from the heap; its slot stays allocated for the caller. */
static u32 heap_pop(struct sim_net *net)
{
    ADB_ASSERT(net->heap_count > 0);
    u32 top = net->heap[0];
    net->heap_count--;
    if (net->heap_count > 0) {
        net->heap[0] = net->heap[net->heap_count];
        heap_sift_down(net, 0);
    }
    return top;
}

static void slot_free(struct sim_net *net, u32 slot)
{
    ADB_ASSERT(net->free_count < net->config.packets_max);
    net->free_slots[net->free_count++] = slot;
}

/* ---- scheduling ------------------------------------------------------------------------- */

/* Schedules a copy of bytes after delay_ns, or counts dropped_full when the pool is full. */
static void schedule(struct sim_net *net, u32 from, u32 to, const void *bytes, u32 len,
                     enum sim_net_kind kind, u64 delay_ns)
{
    ADB_ASSERT(len <= net->config.packet_bytes_max);
    if (net->free_count == 0) {
        net->counters.dropped_full++;
        return;
    }
    ADB_ASSERT(net->now_ns <= UINT64_MAX - delay_ns);
    u32 slot = net->free_slots[--net->free_count];
    net->slots[slot] = (struct sim_net_slot){
        .sent_ns = net->now_ns,
        .deliver_ns = net->now_ns + delay_ns,
        .seq = net->seq_next++,
        .from = from,
        .to = to,
        .len = len,
        .kind = kind,
    };
    if (len > 0)
        memcpy(net->pool + (u64)slot * net->config.packet_bytes_max, bytes, len);
    net->heap[net->heap_count++] = slot;
    heap_sift_up(net, net->heap_count - 1);
}

static u64 delay_draw(struct sim_net *net)
{
    return prng_range(&net->prng, net->config.delay_min_ns, net->config.delay_max_ns);
}

static u64 delay_late_draw(struct sim_net *net)
{
    return prng_range(&net->prng, net->config.delay_min_ns,
                      net->config.delay_max_ns + net->config.late_max_ns);
}

void sim_net_send(struct sim_net *net, u64 now_ns, u32 from, u32 to, const void *bytes, u32 len)
{
    time_advance(net, now_ns);
    node_check(net, from);
    node_check(net, to);
    ADB_ASSERT(len <= net->config.packet_bytes_max);
    ADB_ASSERT(bytes != NULL || len == 0);
    net->counters.sent++;

    if (!sim_net_link_up(net, from, to)) {
        net->counters.dropped_partition++;
    } else if (prng_chance(&net->prng, net->config.loss_ppm)) {
        net->counters.lost++;
    } else {
        schedule(net, from, to, bytes, len, SIM_NET_ORIGINAL, delay_draw(net));
        if (prng_chance(&net->prng, net->config.dup_ppm)) {
            net->counters.duplicated++;
            schedule(net, from, to, bytes, len, SIM_NET_DUPLICATE, delay_late_draw(net));
        }
    }

    /* Replay rides on traffic: any send may bring an old packet back, whatever this send's
     * own fate. The draw happens only once something was delivered. */
    if (net->replay_count > 0 && prng_chance(&net->prng, net->config.replay_ppm)) {
        u32 i = (u32)prng_below(&net->prng, net->replay_count);
        const struct sim_net_replay *r = &net->replay[i];
        net->counters.replayed++;
        schedule(net, r->from, r->to, net->replay_bytes + (u64)i * net->config.packet_bytes_max,
                 r->len, SIM_NET_REPLAY, delay_late_draw(net));
    }
    check_accounting(net);
}

/* ---- delivery --------------------------------------------------------------------------- */

static void replay_remember(struct sim_net *net, const struct sim_net_slot *s, const u8 *bytes)
{
    u32 ring = net->config.replay_ring;
    if (ring == 0)
        return;
    u32 i = net->replay_next;
    net->replay[i] = (struct sim_net_replay){.from = s->from, .to = s->to, .len = s->len};
    if (s->len > 0)
        memcpy(net->replay_bytes + (u64)i * net->config.packet_bytes_max, bytes, s->len);
    net->replay_next = (i + 1) % ring;
    if (net->replay_count < ring)
        net->replay_count++;
}

static void digest_add(struct sim_net *net, const struct sim_net_slot *s, const u8 *bytes)
{
    u64 h = net->digest;
    h = hash_step(h, s->sent_ns);
    h = hash_step(h, s->deliver_ns);
    h = hash_step(h, s->seq);
    h = hash_step(h, ((u64)s->from << 40) | ((u64)s->to << 32) | (u64)s->kind);
    h = hash_step(h, ((u64)s->len << 32) | crc32c(0, bytes, s->len));
    net->digest = h;
}

bool sim_net_deliver(struct sim_net *net, u64 now_ns, struct sim_net_packet *out)
{
    time_advance(net, now_ns);
    /* Bounded: each pass removes one packet. */
    while (net->heap_count > 0 && net->slots[net->heap[0]].deliver_ns <= now_ns) {
        u32 slot = heap_pop(net);
        const struct sim_net_slot *s = &net->slots[slot];
        if (!sim_net_link_up(net, s->from, s->to)) {
            net->counters.dropped_partition++;
            slot_free(net, slot);
            continue;
        }
        const u8 *bytes = net->pool + (u64)slot * net->config.packet_bytes_max;
        if (s->len > 0)
            memcpy(net->out_bytes, bytes, s->len);
        if (s->kind == SIM_NET_ORIGINAL)
            replay_remember(net, s, bytes);
        digest_add(net, s, bytes);
        *out = (struct sim_net_packet){
            .sent_ns = s->sent_ns,
            .deliver_ns = s->deliver_ns,
            .seq = s->seq,
            .from = s->from,
            .to = s->to,
            .len = s->len,
            .kind = s->kind,
            .bytes = net->out_bytes,
        };
        net->counters.delivered++;
        slot_free(net, slot);
        check_accounting(net);
        return true;
    }
    check_accounting(net);
    return false;
}

u64 sim_net_next_time(const struct sim_net *net)
{
    if (net->heap_count == 0)
        return UINT64_MAX;
    return net->slots[net->heap[0]].deliver_ns;
}

u32 sim_net_in_flight(const struct sim_net *net)
{
    return net->heap_count;
}

/* ---- links ------------------------------------------------------------------------------ */

void sim_net_link_set(struct sim_net *net, u32 from, u32 to, bool up)
{
    node_check(net, from);
    node_check(net, to);
    if (from == to)
        return; /* a node always reaches itself */
    if (up)
        net->links_down[from] &= ~(1u << to);
    else
        net->links_down[from] |= 1u << to;
}

bool sim_net_link_up(const struct sim_net *net, u32 from, u32 to)
{
    node_check(net, from);
    node_check(net, to);
    return (net->links_down[from] & (1u << to)) == 0;
}

void sim_net_partition(struct sim_net *net, u32 side_mask)
{
    u32 nodes = net->config.nodes;
    ADB_ASSERT((side_mask >> nodes) == 0);
    for (u32 a = 0; a < nodes; a++) {
        for (u32 b = 0; b < nodes; b++) {
            bool a_in = (side_mask >> a) & 1u;
            bool b_in = (side_mask >> b) & 1u;
            if (a_in != b_in)
                sim_net_link_set(net, a, b, false);
        }
    }
}

void sim_net_cut_one_way(struct sim_net *net, u32 from, u32 to)
{
    sim_net_link_set(net, from, to, false);
}

void sim_net_isolate(struct sim_net *net, u32 node)
{
    node_check(net, node);
    for (u32 other = 0; other < net->config.nodes; other++) {
        sim_net_link_set(net, node, other, false);
        sim_net_link_set(net, other, node, false);
    }
}

void sim_net_heal(struct sim_net *net)
{
    memset(net->links_down, 0, sizeof(net->links_down));
}

/* ---- crashes ---------------------------------------------------------------------------- */

void sim_net_drop_node(struct sim_net *net, u32 node)
{
    node_check(net, node);
    u32 kept = 0;
    for (u32 i = 0; i < net->heap_count; i++) {
        u32 slot = net->heap[i];
        if (net->slots[slot].to == node) {
            net->counters.dropped_crash++;
            slot_free(net, slot);
        } else {
            net->heap[kept++] = slot;
        }
    }
    net->heap_count = kept;
    /* Floyd's bottom-up heap construction over what is left. */
    for (u32 i = kept / 2; i-- > 0;)
        heap_sift_down(net, i);
    check_accounting(net);
}

struct sim_net_counters sim_net_counters(const struct sim_net *net)
{
    return net->counters;
}

u64 sim_net_digest(const struct sim_net *net)
{
    return net->digest;
}
