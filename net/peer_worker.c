/*
 * net/peer_worker.c — the peer worker (DESIGN.md §5): the replication transport of a cluster's
 * replica. One libevent loop runs the peer transport (net/peer.h: a connection per other
 * replica, hello, framing and checksums, bounded queues, reconnect with backoff) and moves
 * messages between it and the sequencer, whose process runs the replication core next to the
 * WAL (wal/sequencer_shell.h says why): received messages go to the ring peer_in, messages the
 * core sends come from the ring peer_out. It decides nothing about the protocol.
 *
 * Crash: the core retransmits what matters (prepares, repair, heartbeats), so a peer worker
 * killed at any point costs a reconnect: messages in its buffers are lost, as on a network.
 * Not started on a single node.
 *
 * Fault hook: the segment header's peer_block (set through the admin endpoint, for tests and
 * `allocdb-cluster isolate`) cuts replicas in both directions (peer_link_block).
 */
#include "config.h"

#include "common/assert.h"
#include "net/peer.h"
#include "supervisor/log.h"
#include "supervisor/worker.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PEER_QUEUE_BYTES (4u << 20) /* per peer: a few thousand prepares in flight */
#define PEER_BACKOFF_MIN_MS 50
#define PEER_BACKOFF_MAX_MS 1000
#define PEER_TIMER_MS 50         /* heartbeat, counters, the fault hook */
#define PEER_OUT_BATCH 4096      /* messages sent per wake-up before looking at the network again */
#define PEER_IN_WAIT_US 20000    /* a full receive ring is waited for this long per message */

struct peer_worker {
    const struct worker_ctx *w;
    struct segment *seg;
    struct event_base *base;
    struct peer_link *link;
    struct event *bell, *timer;
    u8 replica_count;
    u32 blocked; /* the fault hook's mask as applied */
    bool congested; /* the receive ring stayed full through a wait */
};

static bool resolve(const char *addr, struct sockaddr_storage *out, socklen_t *len, char *why, size_t why_len)
{
    struct addrinfo *res = config_addr_lookup(addr, false, why, why_len);
    if (res == NULL)
        return false;
    memcpy(out, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return true;
}

/* A message from a peer: to the sequencer. A full ring is waited for a little (the sequencer
 * drains it between fsyncs; meanwhile nothing more is read from the sockets, so TCP pushes
 * back on the sender), then the message is dropped and counted: the core retransmits. */
static void deliver(void *ctx, u8 from, const u8 *msg, u32 len)
{
    struct peer_worker *p = ctx;
    struct msg_peer *m = ring_claim(p->seg->peer_in);
    /* Once a wait ran out, the rest of the burst is dropped at once (until a message fits):
     * a stuck sequencer must not stall this loop message by message. */
    for (u32 waited = 0; m == NULL && !p->congested && waited < PEER_IN_WAIT_US; waited += 100) {
        ring_notify(p->seg->peer_in);
        struct timespec ts = { 0, 100000 };
        nanosleep(&ts, NULL);
        m = ring_claim(p->seg->peer_in);
    }
    p->congested = m == NULL;
    if (m == NULL || len > sizeof(m->bytes)) {
        atomic_fetch_add_explicit(&p->seg->peer->dropped_inbound_full, 1, memory_order_relaxed);
        return;
    }
    m->replica = from;
    m->len = len;
    memcpy(m->bytes, msg, len);
    ring_publish(p->seg->peer_in, (u32)(offsetof(struct msg_peer, bytes) + len + 7) & ~7u);
}

/* Messages the core sends: to the transport. */
static void drain_out(struct peer_worker *p)
{
    struct ring *out = p->seg->peer_out;
    const void *v;
    u32 len;
    u32 n = 0;
    enum ring_status st;
    while (n < PEER_OUT_BATCH && (st = ring_peek(out, &v, &len)) == RING_OK) {
        const struct msg_peer *m = v;
        if (m->replica < p->replica_count && m->replica != p->w->seg->rep->replica && m->len <= sizeof(m->bytes))
            peer_link_send(p->link, m->replica, m->bytes, m->len);
        ring_release(out);
        n++;
    }
    /* Lost-wake-up protocol (supervisor/doorbell.h): arm, then re-check; what is left (a full
     * batch) rings the armed bell at once, so the network has a turn before the rest. */
    doorbell_arm(p->seg->bell_peer);
    if (ring_has(out, 0))
        doorbell_ring(p->seg->bell_peer);
}

static void bell_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct peer_worker *p = arg;
    doorbell_drain(p->seg->bell_peer);
    drain_out(p);
}

static void publish_counters(struct peer_worker *p)
{
    struct peer_link_counters c;
    peer_link_counters(p->link, &c);
    struct seg_peer *s = p->seg->peer;
    u32 connected = 0;
    u64 queue_full = 0, not_connected = 0, bad = 0, blocked = 0;
    for (u32 r = 0; r < p->replica_count; r++) {
        const struct peer_counters *k = &c.peer[r];
        if (k->connected)
            connected |= 1u << r;
        atomic_store_explicit(&s->msgs_sent[r], k->msgs_sent, memory_order_relaxed);
        atomic_store_explicit(&s->msgs_received[r], k->msgs_received, memory_order_relaxed);
        atomic_store_explicit(&s->bytes_sent[r], k->bytes_sent, memory_order_relaxed);
        atomic_store_explicit(&s->bytes_received[r], k->bytes_received, memory_order_relaxed);
        atomic_store_explicit(&s->connects[r], k->connects, memory_order_relaxed);
        atomic_store_explicit(&s->disconnects[r], k->disconnects, memory_order_relaxed);
        queue_full += k->dropped_queue_full;
        not_connected += k->dropped_not_connected;
        bad += k->dropped_bad;
        blocked += k->dropped_blocked;
    }
    atomic_store_explicit(&s->connected, connected, memory_order_relaxed);
    atomic_store_explicit(&s->dropped_queue_full, queue_full, memory_order_relaxed);
    atomic_store_explicit(&s->dropped_not_connected, not_connected, memory_order_relaxed);
    atomic_store_explicit(&s->dropped_bad, bad + c.hello_rejected, memory_order_relaxed);
    atomic_store_explicit(&s->dropped_blocked, blocked, memory_order_relaxed);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct peer_worker *p = arg;
    worker_heartbeat(p->w);
    if (worker_should_stop(p->w)) {
        event_base_loopbreak(p->base);
        return;
    }
    u32 block = atomic_load_explicit(&p->seg->hdr->peer_block, memory_order_relaxed);
    if (block != p->blocked) {
        for (u32 r = 0; r < p->replica_count; r++) {
            bool cut = (block >> r) & 1u;
            if (cut != (((p->blocked >> r) & 1u) != 0)) {
                peer_link_block(p->link, (u8)r, cut, cut);
                log_always_info(cut ? "peer_isolated" : "peer_healed", "replica=%u", r);
            }
        }
        p->blocked = block;
        atomic_store_explicit(&p->seg->peer->blocked_out, block, memory_order_relaxed);
        atomic_store_explicit(&p->seg->peer->blocked_in, block, memory_order_relaxed);
    }
    publish_counters(p);
    drain_out(p); /* a lost wake-up costs at most a timer period */
}

int peer_main(const struct worker_ctx *w)
{
    if (!worker_enter(w))
        return WORKER_EXIT_CRASH;
    const struct config *cfg = w->cfg;
    struct peer_worker *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return WORKER_EXIT_CRASH;
    p->w = w;
    p->seg = w->seg;
    u32 self = atomic_load(&w->seg->rep->replica);
    /* The sequencer publishes which replica this is once it read the metadata; it is ready
     * before this worker starts. */
    struct peer_config pc = { .cluster_id = ((u128)atomic_load(&w->seg->seq->cluster_id_hi) << 64) |
                                            atomic_load(&w->seg->seq->cluster_id_lo),
                              .replica = (u8)self,
                              .queue_bytes = PEER_QUEUE_BYTES,
                              .backoff_min_ms = PEER_BACKOFF_MIN_MS,
                              .backoff_max_ms = PEER_BACKOFF_MAX_MS,
                              .idle_timeout_ms = 8 * cfg->peer_heartbeat_ms + 1000 };
    char addrs[CONFIG_REPLICAS_MAX][CONFIG_ADDR_MAX];
    u32 n = config_replicas(cfg, addrs, CONFIG_REPLICAS_MAX);
    pc.replica_count = (u8)n;
    p->replica_count = (u8)n;
    char why[512];
    for (u32 r = 0; r < n; r++) {
        if (!resolve(addrs[r], &pc.addr[r], &pc.addr_len[r], why, sizeof(why))) {
            log_error("peer_address_unresolved", "replica=%u address=%s reason=\"%s\"", r, addrs[r], why);
            return WORKER_EXIT_CRASH; /* restarted with backoff: DNS may come back */
        }
    }
    p->base = event_base_new();
    if (p->base == NULL)
        return WORKER_EXIT_CRASH;
    int rc = peer_link_create(p->base, &pc, w->peer_fd, deliver, p, &p->link, why, sizeof(why));
    if (rc != 0) {
        log_error("peer_link_failed", "errno=%d reason=\"%s\"", -rc, why);
        return rc == -EINVAL ? WORKER_EXIT_CONFIG : WORKER_EXIT_CRASH;
    }
    p->bell = event_new(p->base, w->seg->peer_eventfd, EV_READ | EV_PERSIST, bell_cb, p);
    p->timer = event_new(p->base, -1, EV_PERSIST, timer_cb, p);
    struct timeval tv = { 0, PEER_TIMER_MS * 1000 };
    if (p->bell == NULL || p->timer == NULL || event_add(p->bell, NULL) != 0 || event_add(p->timer, &tv) != 0)
        return WORKER_EXIT_CRASH;
    worker_set_ready(w);
    log_always_info("peer_started", "replica=%u of=%u peers=%s", self, n, cfg->replicas);
    drain_out(p);
    event_base_dispatch(p->base);
    doorbell_disarm(w->seg->bell_peer);
    publish_counters(p);
    atomic_store(&p->seg->peer->connected, 0);
    peer_link_destroy(p->link);
    event_free(p->bell);
    event_free(p->timer);
    event_base_free(p->base);
    free(p);
    log_info("stopped", "role=peer");
    return WORKER_EXIT_OK;
}
