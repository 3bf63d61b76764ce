/*
 * sim/network.h — the simulator's packet network: deterministic loss, duplication, replay,
 * delay, reordering and partitions between up to SIM_NODES_MAX nodes.
 *
 * Nodes are plain indices 0..nodes-1 (replicas and clients alike). A sender hands a packet to
 * sim_net_send(); the network copies it, decides its fate from its own seeded stream (the
 * config's seed) and, unless it is lost, schedules its delivery at a simulated time. The
 * driver asks sim_net_deliver() for what is due at its current time and jumps its clock to
 * sim_net_next_time() when nothing else is pending. Given the same config and the same calls
 * in the same order, every delivery (time, order, bytes) is the same on every run and
 * platform; sim_net_digest() summarizes them so two runs of one seed compare in one word.
 *
 * The fate of a send, in this order (each step draws from the stream only when reached):
 *   1. link from->to down now: dropped (counters.dropped_partition), skip to 5;
 *   2. lost with probability loss_ppm (counters.lost), skip to 5;
 *   3. scheduled after a delay uniform in [delay_min_ns, delay_max_ns]; distinct delays
 *      reorder packets, even on one link;
 *   4. duplicated with probability dup_ppm (counters.duplicated): a second copy scheduled
 *      after a delay uniform in [delay_min_ns, delay_max_ns + late_max_ns], possibly long
 *      after the original;
 *   5. with probability replay_ppm, and only if some packet was delivered already
 *      (counters.replayed): one of the last replay_ring originals delivered (not duplicates
 *      or replays), chosen uniformly, is scheduled again on its own link after the same kind
 *      of late delay: an old packet arriving again, as from a router that held it.
 * Any packet scheduled when the in-flight pool is full is dropped instead (dropped_full): the
 * pool never grows. At delivery time a packet whose link is down by then is dropped too
 * (dropped_partition again), so cutting a link also drops what was on the wire.
 *
 * NOTES
 *   Initialization: sim_net_create() allocates everything once: the in-flight pool
 *   (packets_max slots of packet_bytes_max bytes and a binary heap over them), the replay
 *   ring and one delivery buffer. Nothing allocates afterwards; sim_net_destroy() frees it.
 *   All links start up.
 *
 *   Time: u64 nanoseconds chosen by the caller; the network reads no clock. Calls that take a
 *   time must pass non-decreasing times (asserted): the simulated clock runs forward only.
 *
 *   Order: the heap is keyed by (delivery time, sequence number), the sequence number
 *   counting every scheduled packet, so equal delivery times come out in scheduling order.
 *   send and deliver are O(log packets_max); drop_node is O(packets_max).
 *
 *   Accounting: at every point
 *     sent + duplicated + replayed ==
 *       delivered + lost + dropped_partition + dropped_full + dropped_crash + in-flight,
 *   asserted after every call.
 *
 *   Errors: invalid arguments (node out of range, a packet over packet_bytes_max, time running
 *   backwards, a config out of range) are programming errors and assert. The only failure is
 *   sim_net_create() returning NULL when memory runs out.
 *
 *   Thread safety: none; one network belongs to one simulator thread.
 */
#ifndef ADB_SIM_NETWORK_H
#define ADB_SIM_NETWORK_H

#include "common/types.h"

#define SIM_NODES_MAX 16u
/* The fault ranges the simulator runs (DESIGN.md §9); a config may go up to PRNG_PPM. */
#define SIM_NET_LOSS_PPM_MAX 300000u
#define SIM_NET_DUP_PPM_MAX 500000u
/* The longest replay ring: how many of the latest originals delivered a replay picks from. */
#define SIM_NET_REPLAY_RING_MAX 64u

struct sim_net_config {
    u32 nodes;            /* node indices 0..nodes-1; 1..SIM_NODES_MAX */
    u32 packets_max;      /* in-flight capacity, > 0 */
    u32 packet_bytes_max; /* largest packet, > 0 */
    u32 loss_ppm;         /* a send is lost; <= PRNG_PPM */
    u32 dup_ppm;          /* a send that is not lost is delivered twice; <= PRNG_PPM */
    u32 replay_ppm;       /* a send also re-delivers an old packet; <= PRNG_PPM */
    u32 replay_ring;      /* originals delivered kept for replay, 0..SIM_NET_REPLAY_RING_MAX;
                             0 turns replay off */
    u64 delay_min_ns;     /* a packet's delay, uniform in [delay_min_ns, delay_max_ns] */
    u64 delay_max_ns;     /* >= delay_min_ns */
    u64 late_max_ns;      /* duplicates and replays: up to this much more delay */
    u64 seed;             /* the network's own stream (e.g. prng_u64 of a forked stream) */
};

enum sim_net_kind {
    SIM_NET_ORIGINAL = 0, /* the send itself */
    SIM_NET_DUPLICATE,    /* the second copy of a duplicated send */
    SIM_NET_REPLAY,       /* an already delivered packet, again */
};

struct sim_net_packet {
    u64 sent_ns;    /* the time of the send (for a replay: of the replay's scheduling) */
    u64 deliver_ns; /* the scheduled delivery time, <= the time passed to sim_net_deliver */
    u64 seq;        /* scheduling order, unique per network; breaks delivery-time ties */
    u32 from;
    u32 to;
    u32 len;
    enum sim_net_kind kind;
    const u8 *bytes; /* len bytes, owned by the network: valid until the next
                        sim_net_deliver() or sim_net_destroy() */
};

struct sim_net_counters {
    u64 sent;              /* sim_net_send calls */
    u64 delivered;         /* packets handed out by sim_net_deliver, copies included */
    u64 lost;              /* sends lost to loss_ppm */
    u64 duplicated;        /* second copies scheduled (or dropped_full) */
    u64 replayed;          /* replays scheduled (or dropped_full) */
    u64 dropped_partition; /* link down at send time or at delivery time */
    u64 dropped_full;      /* in-flight pool full when scheduling */
    u64 dropped_crash;     /* removed by sim_net_drop_node */
};

struct sim_net; /* opaque */

/* A network with every link up, or NULL if memory runs out. Asserts the config's ranges. */
struct sim_net *sim_net_create(const struct sim_net_config *config);
void sim_net_destroy(struct sim_net *net);

/* Sends len bytes (copied; the caller's buffer may be reused at once) from one node to
 * another at now_ns; len <= packet_bytes_max. from == to is allowed (no link can cut it). */
void sim_net_send(struct sim_net *net, u64 now_ns, u32 from, u32 to, const void *bytes, u32 len);
/* The earliest packet due at now_ns (delivery time <= now_ns; ties by sequence), removed and
 * copied out into *out (OUT), true; false if none is due. Packets due whose link is down now
 * are dropped on the way. */
bool sim_net_deliver(struct sim_net *net, u64 now_ns, struct sim_net_packet *out);
/* The earliest scheduled delivery time, UINT64_MAX if nothing is in flight. (A packet due
 * then may still be dropped by a link that is down at that time.) */
u64 sim_net_next_time(const struct sim_net *net);
/* Packets scheduled and not yet delivered or dropped. */
u32 sim_net_in_flight(const struct sim_net *net);

/* ---- links: link[from][to] is up or down; what is down drops at send and at delivery ------ */

void sim_net_link_set(struct sim_net *net, u32 from, u32 to, bool up);
bool sim_net_link_up(const struct sim_net *net, u32 from, u32 to);
/* Cuts both directions between the nodes in side_mask (bit i = node i) and the other nodes;
 * links within each side are left as they are (call sim_net_heal() first for a clean split). */
void sim_net_partition(struct sim_net *net, u32 side_mask);
/* Cuts from->to only; to->from is left as it is. */
void sim_net_cut_one_way(struct sim_net *net, u32 from, u32 to);
/* Cuts both directions between node and every other node. */
void sim_net_isolate(struct sim_net *net, u32 node);
/* Every link up. */
void sim_net_heal(struct sim_net *net);

/* Drops every packet in flight to node (a crashed node's socket buffers vanish); packets it
 * sent stay on the wire. */
void sim_net_drop_node(struct sim_net *net, u32 node);

struct sim_net_counters sim_net_counters(const struct sim_net *net);
/* A running hash of every delivery so far (its times, sequence number, nodes, kind and bytes),
 * in order: two runs that deliver the same packets at the same times in the same order have
 * the same digest. Starts at a fixed value for an empty history. */
u64 sim_net_digest(const struct sim_net *net);

#endif
