/*
 * net/peer.c — the peer transport (net/peer.h): one TCP connection per pair of replicas, the
 * hello handshake, framing of vsr messages, bounded output, reconnecting with backoff.
 *
 * NOTES
 *   A peer's states: an acceptor's peer (a lower replica) is IDLE until a checked hello adopts
 *   an inbound connection, then UP. A dialer's peer (a higher replica) goes WAIT (the redial
 *   timer) -> DIALING (TCP connect) -> HELLO (ours sent, theirs awaited) -> UP, and back to WAIT
 *   whenever its connection closes. Inbound connections live in the pending table until their
 *   first message: a good hello moves the bufferevent to its peer, anything else closes it.
 *
 *   Closing is always peer_close / pending_close, which free the bufferevent at once (libevent
 *   allows it inside the bufferevent's own callback); a caller touches nothing of the
 *   connection afterwards.
 */
#include "config.h"

#include "net/peer.h"

#include "common/assert.h"
#include "common/le.h"
#include "common/splitmix.h"
#include "common/why.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PEER_IN_HIGH (2u * VSR_MESSAGE_MAX) /* read ahead at most: input stays bounded */
#define PEER_ACCEPT_BATCH 16                /* accepts per listener callback */
#define PEER_ACCEPT_RETRY_MS 100            /* after EMFILE and friends */
#define PEER_BACKLOG 16
#define PEER_OFF_SIZE 72                    /* the header's size field (replica/vsr_message.h) */

enum peer_state {
    PS_IDLE = 0, /* no connection; an acceptor's peer waits to be dialed */
    PS_WAIT,     /* dialer: the redial timer is armed */
    PS_DIALING,  /* dialer: TCP connect in progress */
    PS_HELLO,    /* dialer: connected, our hello sent, the peer's awaited */
    PS_UP,       /* both hellos passed: messages flow */
};

struct peer_link;

struct peer {
    struct peer_link *l;
    struct bufferevent *bev; /* NULL: no connection */
    struct event *ev_redial; /* dialer only */
    u64 backoff_ms;          /* the next wait before a redial (before jitter) */
    u8 index;
    u8 state; /* enum peer_state */
    bool dialer;
    bool block_out, block_in;
    struct peer_counters c;
};

/* An inbound connection before its hello. */
struct peer_pending {
    struct peer_link *l;
    struct bufferevent *bev; /* NULL: free slot */
    u64 seq;                 /* accept order: the oldest goes when the table is full */
};

struct peer_link {
    struct event_base *base;
    struct peer_config cfg;
    peer_deliver_fn deliver;
    void *ctx;
    int listen_fd;
    bool own_listen;
    struct event *ev_accept, *ev_accept_retry;
    struct timeval idle; /* idle_timeout_ms as a timeval (unused when 0) */
    u64 rng;
    u64 accept_seq;
    u8 hello[VSR_HEADER_SIZE]; /* ours, encoded once */
    struct peer peers[VSR_REPLICAS_MAX];
    struct peer_pending pending[PEER_PENDING_MAX];
    u64 accepted, hello_rejected, accept_failures;
};

static void peer_close(struct peer *p);
static void peer_process(struct peer *p);
static void peer_read_cb(struct bufferevent *bev, void *arg);
static void peer_event_cb(struct bufferevent *bev, short what, void *arg);

/* ---- sockets and bufferevents ------------------------------------------------------------- */

static struct timeval tv_of_ms(u64 ms)
{
    struct timeval tv = { .tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000 };
    return tv;
}

static void sock_tune(int fd)
{
    int one = 1;
    /* Small messages (acks, heartbeats) must not wait for Nagle; keepalive is a backstop for a
     * peer that vanished while we had nothing to send (the idle timeout is the real one). */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
}

static void bev_setup(struct peer_link *l, struct bufferevent *bev, bufferevent_data_cb readcb,
                      bufferevent_event_cb eventcb, void *arg)
{
    bufferevent_setcb(bev, readcb, NULL, eventcb, arg);
    bufferevent_setwatermark(bev, EV_READ, 0, PEER_IN_HIGH);
    /* Read timeout: nothing received (peers ping every tick). Write timeout: queued output made
     * no progress, or a connect that hangs (libevent applies it while connecting). */
    const struct timeval *t = l->cfg.idle_timeout_ms > 0 ? &l->idle : NULL;
    bufferevent_set_timeouts(bev, t, t);
}

/* ---- framing ------------------------------------------------------------------------------ */

enum frame_result { FRAME_NONE = 0, FRAME_OK, FRAME_BAD };

/*
 * The whole message at the front of in: FRAME_OK with *m, *msg (contiguous, inside in: valid
 * until in changes) and *len; FRAME_NONE while it has not all arrived; FRAME_BAD if the bytes
 * are not a message. Pulls up at most one message, once its header says how long it is.
 */
static enum frame_result frame_next(struct evbuffer *in, struct vsr_message *m, const u8 **msg, u32 *len)
{
    size_t avail = evbuffer_get_length(in);
    if (avail < VSR_HEADER_SIZE) {
        /* Refuse garbage by its first bytes, not only once a whole header is there. */
        u8 magic[4], head[4];
        size_t n = avail < sizeof(head) ? avail : sizeof(head);
        le_put_u32(magic, VSR_MESSAGE_MAGIC);
        if (n > 0 && (evbuffer_copyout(in, head, n) != (ev_ssize_t)n || memcmp(head, magic, n) != 0))
            return FRAME_BAD;
        return FRAME_NONE;
    }
    u8 *p = evbuffer_pullup(in, VSR_HEADER_SIZE);
    if (p == NULL)
        return FRAME_BAD; /* out of memory: the stream cannot be followed */
    u32 mlen = 0;
    enum vsr_decode_status s = vsr_message_decode(p, VSR_HEADER_SIZE, m, &mlen);
    if (s == VSR_DECODE_SHORT) {
        /* The decoder checked magic, version and the size bound before it said SHORT; the size
         * is used only to know how much to wait for, and is checked again with the crc. */
        u32 size = le_get_u32(p + PEER_OFF_SIZE);
        if (size <= VSR_HEADER_SIZE || size > VSR_MESSAGE_MAX)
            return FRAME_BAD;
        if (avail < size)
            return FRAME_NONE;
        p = evbuffer_pullup(in, size);
        if (p == NULL)
            return FRAME_BAD;
        s = vsr_message_decode(p, size, m, &mlen);
    }
    if (s != VSR_DECODE_OK)
        return FRAME_BAD;
    *msg = p;
    *len = mlen;
    return FRAME_OK;
}

static bool same_cluster(const struct peer_link *l, const struct vsr_header *h)
{
    return h->cluster_id == l->cfg.cluster_id && h->replica_count == l->cfg.replica_count;
}

/* ---- dialing and backoff ------------------------------------------------------------------ */

static void redial_schedule(struct peer *p)
{
    struct peer_link *l = p->l;
    u64 b = p->backoff_ms;
    /* +-25%: replicas restarted together do not redial in lockstep. */
    u64 delay = b - b / 4 + splitmix_next(&l->rng) % (b / 2 + 1);
    p->backoff_ms = b >= l->cfg.backoff_max_ms / 2 ? l->cfg.backoff_max_ms : 2 * b;
    struct timeval tv = tv_of_ms(delay);
    p->state = PS_WAIT;
    if (evtimer_add(p->ev_redial, &tv) != 0)
        p->state = PS_IDLE; /* cannot happen with a valid timer; the peer then stays down */
}

static void peer_dial(struct peer *p)
{
    struct peer_link *l = p->l;
    const struct sockaddr_storage *ss = &l->cfg.addr[p->index];
    p->state = PS_DIALING;
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        peer_close(p); /* a dial failure: counted, retried after the backoff */
        return;
    }
    sock_tune(fd);
    struct bufferevent *bev = bufferevent_socket_new(l->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL) {
        close(fd);
        peer_close(p);
        return;
    }
    p->bev = bev;
    bev_setup(l, bev, peer_read_cb, peer_event_cb, p);
    /* It watches for writability itself (the connect); reading is enabled once it is under way. */
    if (bufferevent_socket_connect(bev, (const struct sockaddr *)ss, (int)l->cfg.addr_len[p->index]) != 0) {
        /* libevent may have run the event callback (BEV_EVENT_ERROR) already, which closed
         * it: close only what is still ours. */
        if (p->state == PS_DIALING && p->bev == bev)
            peer_close(p);
        return;
    }
    if (bufferevent_enable(bev, EV_READ) != 0)
        peer_close(p);
}

static void redial_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct peer *p = arg;
    if (p->state == PS_WAIT)
        peer_dial(p);
}

/* ---- connections to peers ----------------------------------------------------------------- */

static void peer_close(struct peer *p)
{
    if (p->bev != NULL) {
        bufferevent_free(p->bev); /* closes the socket; unsent output is lost */
        p->bev = NULL;
    }
    if (p->state == PS_UP)
        p->c.disconnects++;
    else if (p->dialer && (p->state == PS_DIALING || p->state == PS_HELLO))
        p->c.dial_failures++;
    p->state = PS_IDLE;
    if (p->dialer)
        redial_schedule(p);
}

static void peer_up(struct peer *p)
{
    p->state = PS_UP;
    p->c.connects++;
    p->backoff_ms = p->l->cfg.backoff_min_ms; /* the peer answered: start the backoff over */
}

static void peer_read_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    peer_process(arg);
}

static void peer_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct peer *p = arg;
    if (what & BEV_EVENT_CONNECTED) {
        ADB_ASSERT(p->state == PS_DIALING && p->bev == bev);
        p->state = PS_HELLO;
        /* Ours goes first: nothing else is queued before the peer's hello passes. */
        if (bufferevent_write(bev, p->l->hello, sizeof(p->l->hello)) != 0)
            peer_close(p);
        return;
    }
    /* EOF, an error, or a timeout (idle, stalled output, a connect that hangs). Complete
     * messages were delivered as they came, so what is left in the input is a partial one. */
    peer_close(p);
}

/* Every whole message in the input: the peer's hello first (dialer side), then deliveries. */
static void peer_process(struct peer *p)
{
    struct peer_link *l = p->l;
    struct evbuffer *in = bufferevent_get_input(p->bev);
    for (;;) {
        struct vsr_message m;
        const u8 *msg = NULL;
        u32 len = 0;
        enum frame_result r = frame_next(in, &m, &msg, &len);
        if (r == FRAME_NONE)
            return;
        /* Out of sync, another cluster, or a sender that is not the replica at the other end:
         * nothing more this connection says can be trusted. */
        if (r == FRAME_BAD || !same_cluster(l, &m.h) || m.h.replica != p->index) {
            p->c.dropped_bad++;
            peer_close(p);
            return;
        }
        if (p->state != PS_UP) {
            if (m.h.command != VSR_PING) {
                p->c.dropped_bad++;
                peer_close(p);
                return;
            }
            evbuffer_drain(in, len);
            peer_up(p);
            continue;
        }
        p->c.msgs_received++;
        p->c.bytes_received += len;
        if (p->block_in)
            p->c.dropped_blocked++;
        else
            l->deliver(l->ctx, p->index, msg, len); /* may send and block; never closes p */
        evbuffer_drain(in, len);
    }
}

/* ---- inbound connections ------------------------------------------------------------------ */

static void pending_close(struct peer_pending *q)
{
    q->l->hello_rejected++;
    bufferevent_free(q->bev);
    q->bev = NULL;
}

/* Inbound connection, hello checked: it is replica p's (a new one replaces the old). */
static void peer_adopt(struct peer *p, struct bufferevent *bev)
{
    if (p->bev != NULL)
        peer_close(p);
    p->bev = bev;
    bufferevent_setcb(bev, peer_read_cb, NULL, peer_event_cb, p);
    peer_up(p);
    if (bufferevent_write(bev, p->l->hello, sizeof(p->l->hello)) != 0) {
        peer_close(p);
        return;
    }
    /* Messages that came right behind the hello. */
    if (evbuffer_get_length(bufferevent_get_input(bev)) > 0)
        peer_process(p);
}

static void pending_read_cb(struct bufferevent *bev, void *arg)
{
    struct peer_pending *q = arg;
    struct peer_link *l = q->l;
    struct evbuffer *in = bufferevent_get_input(bev);
    struct vsr_message m;
    const u8 *msg = NULL;
    u32 len = 0;
    enum frame_result r = frame_next(in, &m, &msg, &len);
    if (r == FRAME_NONE)
        return;
    /* A hello is a ping of our cluster from a replica that dials us: a lower one. */
    if (r == FRAME_BAD || m.h.command != VSR_PING || !same_cluster(l, &m.h) || m.h.replica >= l->cfg.replica) {
        pending_close(q);
        return;
    }
    evbuffer_drain(in, len);
    q->bev = NULL;
    peer_adopt(&l->peers[m.h.replica], bev);
}

static void pending_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    (void)what;
    pending_close(arg); /* EOF, error or timeout before a hello */
}

static void pending_open(struct peer_link *l, int fd)
{
    struct peer_pending *q = NULL;
    for (u32 i = 0; i < PEER_PENDING_MAX; i++) {
        struct peer_pending *c = &l->pending[i];
        if (c->bev == NULL) {
            q = c;
            break;
        }
        if (q == NULL || c->seq < q->seq)
            q = c;
    }
    /* Full: the oldest goes (a connection that never says hello must not lock real peers out). */
    if (q->bev != NULL)
        pending_close(q);
    sock_tune(fd);
    struct bufferevent *bev = bufferevent_socket_new(l->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL) {
        close(fd);
        l->hello_rejected++;
        return;
    }
    q->bev = bev;
    q->seq = ++l->accept_seq;
    bev_setup(l, bev, pending_read_cb, pending_event_cb, q);
    if (bufferevent_enable(bev, EV_READ | EV_WRITE) != 0)
        pending_close(q);
}

static void accept_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct peer_link *l = arg;
    for (int i = 0; i < PEER_ACCEPT_BATCH; i++) {
        int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd >= 0) {
            l->accepted++;
            pending_open(l, cfd);
            continue;
        }
        int e = errno;
        if (e == EINTR || e == ECONNABORTED)
            continue;
        if (e == EAGAIN || e == EWOULDBLOCK)
            return;
        /* Out of descriptors or memory: the socket stays readable; pause instead of spinning. */
        l->accept_failures++;
        event_del(l->ev_accept);
        struct timeval tv = tv_of_ms(PEER_ACCEPT_RETRY_MS);
        evtimer_add(l->ev_accept_retry, &tv);
        return;
    }
}

static void accept_retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct peer_link *l = arg;
    event_add(l->ev_accept, NULL);
}

/* ---- create, destroy, the API ------------------------------------------------------------- */

static bool addr_valid(const struct sockaddr_storage *ss, socklen_t len)
{
    if (ss->ss_family == AF_INET)
        return len >= sizeof(struct sockaddr_in) && len <= sizeof(*ss);
    if (ss->ss_family == AF_INET6)
        return len >= sizeof(struct sockaddr_in6) && len <= sizeof(*ss);
    return false;
}

static int config_check(const struct peer_config *cfg, bool need_listen_addr, char *why, size_t why_len)
{
    if (cfg->replica_count < 1 || cfg->replica_count > VSR_REPLICAS_MAX || cfg->replica >= cfg->replica_count) {
        why_set(why, why_len, "replica %u of %u: want 1..%u replicas", cfg->replica, cfg->replica_count,
                VSR_REPLICAS_MAX);
        return -EINVAL;
    }
    for (u8 i = 0; i < cfg->replica_count; i++) {
        if (i == cfg->replica && !need_listen_addr)
            continue;
        if (!addr_valid(&cfg->addr[i], cfg->addr_len[i])) {
            why_set(why, why_len, "replica %u: address is not IPv4 or IPv6 (family %u, length %u)", i,
                    cfg->addr[i].ss_family, (unsigned)cfg->addr_len[i]);
            return -EINVAL;
        }
    }
    if (cfg->queue_bytes < VSR_MESSAGE_MAX) {
        why_set(why, why_len, "queue_bytes %u: below one maximum message (%u)", cfg->queue_bytes, VSR_MESSAGE_MAX);
        return -EINVAL;
    }
    if (cfg->backoff_min_ms < 1 || cfg->backoff_max_ms < cfg->backoff_min_ms || cfg->backoff_max_ms > (1ull << 40)) {
        why_set(why, why_len, "backoff %llu..%llu ms: want 1 <= min <= max", (unsigned long long)cfg->backoff_min_ms,
                (unsigned long long)cfg->backoff_max_ms);
        return -EINVAL;
    }
    if (cfg->idle_timeout_ms > (1ull << 40)) {
        why_set(why, why_len, "idle_timeout_ms %llu: too large", (unsigned long long)cfg->idle_timeout_ms);
        return -EINVAL;
    }
    return 0;
}

static int listen_open(const struct peer_config *cfg, int *out, char *why, size_t why_len)
{
    const struct sockaddr_storage *ss = &cfg->addr[cfg->replica];
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        int e = errno;
        why_set(why, why_len, "socket: %s", strerror(e));
        return -e;
    }
    int one = 1;
    /* A restarted replica rebinds at once, whatever its old connections' TIME_WAIT. */
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)ss, cfg->addr_len[cfg->replica]) != 0) {
        int e = errno;
        close(fd);
        why_set(why, why_len, "bind: %s", strerror(e));
        return -e;
    }
    if (listen(fd, PEER_BACKLOG) != 0) {
        int e = errno;
        close(fd);
        why_set(why, why_len, "listen: %s", strerror(e));
        return -e;
    }
    *out = fd;
    return 0;
}

int peer_link_create(struct event_base *base, const struct peer_config *cfg, int listen_fd, peer_deliver_fn deliver,
                     void *ctx, struct peer_link **out, char *why, size_t why_len)
{
    ADB_ASSERT(base != NULL && cfg != NULL && deliver != NULL && out != NULL);
    *out = NULL;
    int rc = config_check(cfg, listen_fd < 0, why, why_len);
    if (rc != 0)
        return rc;
    struct peer_link *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        why_set(why, why_len, "out of memory");
        return -ENOMEM;
    }
    l->base = base;
    l->cfg = *cfg;
    l->deliver = deliver;
    l->ctx = ctx;
    l->listen_fd = -1;
    l->idle = tv_of_ms(cfg->idle_timeout_ms);
    l->rng = U128_LO(cfg->cluster_id) ^ U128_HI(cfg->cluster_id) ^ (0x9e3779b97f4a7c15ull * (cfg->replica + 1u));
    for (u32 i = 0; i < PEER_PENDING_MAX; i++)
        l->pending[i].l = l;

    struct vsr_header h;
    memset(&h, 0, sizeof(h));
    h.command = VSR_PING;
    h.replica = cfg->replica;
    h.replica_count = cfg->replica_count;
    h.cluster_id = cfg->cluster_id;
    u32 n = vsr_message_encode(l->hello, sizeof(l->hello), &h, NULL, 0);
    ADB_ASSERT(n == VSR_HEADER_SIZE);

    if (listen_fd >= 0) {
        if (evutil_make_socket_nonblocking(listen_fd) != 0) {
            rc = -errno;
            why_set(why, why_len, "listen_fd %d: cannot make it non-blocking: %s", listen_fd, strerror(-rc));
            goto fail;
        }
        l->listen_fd = listen_fd;
    } else {
        rc = listen_open(cfg, &l->listen_fd, why, why_len);
        if (rc != 0)
            goto fail;
        l->own_listen = true;
    }
    l->ev_accept = event_new(base, l->listen_fd, EV_READ | EV_PERSIST, accept_cb, l);
    l->ev_accept_retry = evtimer_new(base, accept_retry_cb, l);
    if (l->ev_accept == NULL || l->ev_accept_retry == NULL || event_add(l->ev_accept, NULL) != 0) {
        rc = -ENOMEM;
        why_set(why, why_len, "event_new/event_add failed");
        goto fail;
    }
    for (u8 i = 0; i < cfg->replica_count; i++) {
        struct peer *p = &l->peers[i];
        p->l = l;
        p->index = i;
        p->dialer = i > cfg->replica;
        p->backoff_ms = cfg->backoff_min_ms;
        if (!p->dialer)
            continue;
        p->ev_redial = evtimer_new(base, redial_cb, p);
        /* The first dial from the loop, so no callback runs inside create. */
        struct timeval now = { 0, 0 };
        if (p->ev_redial == NULL || evtimer_add(p->ev_redial, &now) != 0) {
            rc = -ENOMEM;
            why_set(why, why_len, "evtimer_new/evtimer_add failed");
            goto fail;
        }
        p->state = PS_WAIT;
    }
    *out = l;
    return 0;
fail:
    peer_link_destroy(l);
    return rc;
}

void peer_link_send(struct peer_link *l, u8 to, const u8 *msg, u32 len)
{
    ADB_ASSERT(to < l->cfg.replica_count && to != l->cfg.replica);
    ADB_ASSERT(len >= VSR_HEADER_SIZE && len <= VSR_MESSAGE_MAX);
    struct peer *p = &l->peers[to];
    if (p->block_out) {
        p->c.dropped_blocked++;
        return;
    }
    if (p->state != PS_UP) {
        p->c.dropped_not_connected++;
        return;
    }
    struct evbuffer *outb = bufferevent_get_output(p->bev);
    if (evbuffer_get_length(outb) + len > l->cfg.queue_bytes || bufferevent_write(p->bev, msg, len) != 0) {
        p->c.dropped_queue_full++;
        return;
    }
    p->c.msgs_sent++;
    p->c.bytes_sent += len;
}

void peer_link_block(struct peer_link *l, u8 r, bool out, bool in)
{
    ADB_ASSERT(r < l->cfg.replica_count && r != l->cfg.replica);
    l->peers[r].block_out = out;
    l->peers[r].block_in = in;
}

void peer_link_counters(const struct peer_link *l, struct peer_link_counters *out)
{
    memset(out, 0, sizeof(*out));
    for (u8 i = 0; i < l->cfg.replica_count; i++) {
        const struct peer *p = &l->peers[i];
        if (i == l->cfg.replica)
            continue;
        out->peer[i] = p->c;
        out->peer[i].connected = p->state == PS_UP;
        out->peer[i].queued_bytes = p->bev != NULL ? (u32)evbuffer_get_length(bufferevent_get_output(p->bev)) : 0;
    }
    out->accepted = l->accepted;
    out->hello_rejected = l->hello_rejected;
    out->accept_failures = l->accept_failures;
}

void peer_link_destroy(struct peer_link *l)
{
    if (l == NULL)
        return;
    for (u32 i = 0; i < VSR_REPLICAS_MAX; i++) {
        struct peer *p = &l->peers[i];
        if (p->bev != NULL)
            bufferevent_free(p->bev);
        if (p->ev_redial != NULL)
            event_free(p->ev_redial);
    }
    for (u32 i = 0; i < PEER_PENDING_MAX; i++)
        if (l->pending[i].bev != NULL)
            bufferevent_free(l->pending[i].bev);
    if (l->ev_accept != NULL)
        event_free(l->ev_accept);
    if (l->ev_accept_retry != NULL)
        event_free(l->ev_accept_retry);
    if (l->own_listen)
        close(l->listen_fd);
    free(l);
}
