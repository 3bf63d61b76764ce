/*
 * net/ingress.c — the ingress worker: the one process that talks to clients. It accepts TCP
 * connections on the listening socket it inherits from the supervisor, decodes and checks frames
 * (net/proto.h), forwards writes to the sequencer (ring "write") and reads to the applier (ring
 * "read"), and delivers the answers that come back on rings "result" (applier) and "reject"
 * (sequencer) to the connection that asked, in the shape DESIGN.md §4 promises: committed,
 * definite rejection, or indefinite — never an indefinite flattened into a definite one.
 *
 * NOTES
 *   Initialization: worker_enter first (as every role). Everything is sized from the config and
 *   allocated in ing_setup, in the child after fork (the event base too: epoll does not survive
 *   fork): the connection table
 *   (max_connections slots, each with a generation), the pending-request table (max_inflight)
 *   and the command-record pool (net/ingress_table.c), one frame buffer. The hot path does not
 *   call malloc (libevent's evbuffers manage their own chains).
 *
 *   Loop and sleeping (supervisor/doorbell.h): the base runs one iteration at a time
 *   (EVLOOP_ONCE); after each, ing_service drains both result rings and does the bookkeeping,
 *   then arms the ingress doorbell and re-checks both rings. Nothing there: the next iteration
 *   may block, and a producer that publishes will see the armed doorbell and write the eventfd
 *   (watched by ev_bell). Something there: disarm, and the next iteration only polls
 *   (EVLOOP_NONBLOCK), so sockets and rings take turns and no wake-up is lost. A timer every
 *   WORKER_HEARTBEAT_MS beats the heartbeat, notices stop/drain, and sweeps timeouts.
 *
 *   Requests: a SUBMIT takes one pending entry and a block of command records; each valid
 *   command is pushed on the write ring with a tag naming (ingress generation, entry, entry
 *   generation, command index). Its response goes out when every command has a result, in
 *   command order. Invalid commands are answered here (rejected invalid_request); commands that
 *   find the write ring full are rejected overloaded (definite: never sent). A RESUBMIT answer
 *   pushes the kept command again with MSG_TAG_FORCE_LOG. Reads and TICK take an entry and go on
 *   the read ring; METRICS and STATUS are answered at once from the segment (ingress_json.c).
 *   Headers are checked against the protocol's 1 MiB limit (above: too_large, closes); a submit
 *   between max_body (exactly a full batch) and that limit is batch_too_large, its body skipped
 *   unread and the connection kept, as allocdb-protocol(7) promises for count > max_batch.
 *
 *   Answers nobody waits for are dropped: another ingress generation, a freed or reused entry
 *   (closing a connection frees its entries), a command already answered (timeout, worker
 *   restart). So a late result can never reach the wrong request.
 *
 *   Backpressure (libevent's sample/le-proxy.c): all connections stop reading while the write
 *   or read ring is 3/4 full, the pending table 7/8 full or the record pool 3/4 used, and
 *   resume when all are at most half; one connection stops reading while its output is above
 *   ING_OUT_HIGH and resumes below half (the write low watermark). Input buffers are capped by
 *   a read high watermark of two maximum frames.
 *
 *   Connection lifecycle: OPEN -> CLOSING (no more requests; its pending entries freed; output
 *   flushing) -> LINGER (write side shut, input discarded until the peer's FIN, so our last
 *   frame is not destroyed by a reset) -> FREE. Protocol errors answer one PROTO_ERROR frame
 *   and close that connection only. EOF from the peer means the client is gone (as in nginx
 *   and Redis): its slot and pending entries are freed at once, so clients that give up and
 *   reconnect cannot pile up dead connections; only a truncated frame is still answered.
 *
 *   Stop: on worker_should_stop/worker_draining, the listener is disabled (the inherited fd is
 *   never closed), idle connections close, in-flight requests are waited for until
 *   shutdown_timeout_ms minus a flush budget (a quarter, at most 1 s, so answers go out before
 *   the supervisor's SIGKILL), the rest is answered shutting_down, outputs are flushed, and
 *   ingress_main returns 0.
 *
 *   Error reporting: ring corruption (RING_CORRUPT, or an entry of the wrong size) is logged
 *   and the worker exits WORKER_EXIT_FATAL (fail closed). Connection errors are one debug line
 *   each; nothing is logged per command at info.
 */
#include "config.h"

#include "net/ingress_internal.h"
#include "net/admin.h"

#include "common/assert.h"
#include "common/le.h"
#include "net/proto.h"
#include "supervisor/log.h"
#include "supervisor/worker.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define ING_OUT_HIGH (4u << 20)     /* stop reading a connection whose output is above this */
#define ING_IN_MIN (64u << 10)      /* read high watermark, at least */
#define ING_LINGER_MS 2000          /* closing connection: flush and lingering read, at most */
#define ING_FLUSH_MAX_MS 1000       /* drain: time kept for flushing answers, at most */
#define ING_ACCEPT_BATCH 64         /* accepts per listener callback */
#define ING_ACCEPT_RETRY_MS 100     /* after EMFILE and friends */
#define ING_ACCEPT_LOG_INTERVAL_MS 10000
#define ING_EVICT_IDLE_MIN_MS 1000  /* a full server evicts only connections idle this long */
#define ING_MSG_MAX 256             /* error message text */

enum conn_state { CONN_FREE = 0, CONN_OPEN, CONN_CLOSING, CONN_LINGER };

struct ingress;

struct ing_conn {
    struct bufferevent *bev; /* NULL: free slot */
    struct ingress *ing;
    u32 index;
    u32 gen;                 /* bumped at every close */
    u8 state;                /* enum conn_state */
    bool eof;                /* the peer shut its write side (gone, for us) */
    bool out_full;           /* output above ING_OUT_HIGH */
    bool reading;            /* EV_READ enabled */
    bool doomed;             /* output failed (out of memory): freed at the next safe point */
    u32 next_free;
    u32 skip;                /* body bytes of a refused oversize submit still to discard */
    u32 pend_head;           /* its pending entries (ing_pending.conn_next) */
    u32 inflight;
    u64 last_active_ms;      /* last bytes in or answer out */
    u64 frame_start_ms;      /* a partial frame is waiting since (0: none) */
    u64 close_deadline_ms;   /* CLOSING/LINGER: freed at the latest then */
    bool hello_done;         /* the handshake passed: requests are served from now on */
    char peer[64];
};

enum ing_phase { PHASE_RUNNING = 0, PHASE_DRAINING, PHASE_FLUSHING };

struct ing_resubmit {
    u32 pending, pending_gen, index;
};

struct ingress {
    const struct worker_ctx *w;
    const struct config *cfg;
    struct segment *seg;

    struct event_base *base;
    struct event *ev_accept, *ev_bell, *ev_tick;
    struct evhttp *admin; /* /metrics, /status, /health on the admin socket (net/admin.c) */
    bool accepting;
    u64 accept_retry_ms;
    u64 accept_failures, accept_logged_ms;

    struct ing_conn *conns;
    u32 conn_cap, conn_open, conn_free, conn_hwm, conn_rr, doomed;

    struct ing_table t;
    u32 pend_high;                  /* pause at this many pending entries */
    struct ing_resubmit *rq;        /* RESUBMITs waiting for room on the write ring */
    u32 rq_cap, rq_head, rq_len;

    u32 max_body;                   /* announced in hello_ok; bounds every request */
    u32 in_high;                    /* read high watermark */
    u8 *frame;                      /* one request frame, PROTO_HEADER_SIZE + max_body */
    u64 now_ms;

    bool paused;                    /* global backpressure: nobody reads */
    bool write_pushed, read_pushed; /* ring_notify owed */
    bool fatal;
    enum ing_phase phase;
    u64 drain_deadline_ms, close_by_ms;
    u32 seq_gen, app_gen;
    char hints[CONFIG_REPLICAS_MAX][CONFIG_ADDR_MAX]; /* every replica's client address (config clients) */
    u32 hint_count;
};

static void conn_process(struct ingress *ing, struct ing_conn *c);
static void conn_finish(struct ingress *ing, struct ing_conn *c);
static void conn_free(struct ingress *ing, struct ing_conn *c);

/* ---- small helpers ---------------------------------------------------------------------- */

/* seg->ing has one writer (us): plain relaxed load + store, no locked instruction. */
static void ctr_add(_Atomic u64 *ctr, u64 n)
{
    atomic_store_explicit(ctr, atomic_load_explicit(ctr, memory_order_relaxed) + n, memory_order_relaxed);
}

static void ctr_set(_Atomic u64 *ctr, u64 v)
{
    atomic_store_explicit(ctr, v, memory_order_relaxed);
}

static u64 flush_budget_ms(const struct config *cfg)
{
    u64 b = cfg->shutdown_timeout_ms / 4;
    return b < ING_FLUSH_MAX_MS ? b : ING_FLUSH_MAX_MS;
}

static struct msg_tag tag_of(const struct ingress *ing, const struct ing_pending *p, u32 index, u16 flags)
{
    struct msg_tag tag;
    memset(&tag, 0, sizeof(tag));
    tag.ingress_gen = ing->w->generation;
    tag.pending = ing_pending_index(&ing->t, p);
    tag.pending_gen = p->gen;
    tag.index = (u16)index;
    tag.flags = (u16)(MSG_TAG_VALID | flags);
    return tag;
}

static void flush_notify(struct ingress *ing)
{
    /* One notify per batch of quiet publishes (ring.h): one fence, a wake-up only if asleep. */
    if (ing->write_pushed)
        ring_notify(ing->seg->write);
    if (ing->read_pushed)
        ring_notify(ing->seg->read);
    ing->write_pushed = ing->read_pushed = false;
}

static bool can_process(const struct ingress *ing, const struct ing_conn *c)
{
    return c->state == CONN_OPEN && !c->out_full && !c->doomed && !ing->paused && !ing->fatal &&
           ing->phase == PHASE_RUNNING;
}

/* ---- backpressure ------------------------------------------------------------------------- */

static bool pressure_high(const struct ingress *ing)
{
    struct segment *s = ing->seg;
    return ring_depth(s->write) * 4 >= (u64)ring_capacity(s->write) * 3 ||
           ring_depth(s->read) * 4 >= (u64)ring_capacity(s->read) * 3 || ing->t.pend_used >= ing->pend_high ||
           (u64)ing->t.rec_used * 4 >= (u64)ing->t.rec_cap * 3;
}

static bool pressure_low(const struct ingress *ing)
{
    struct segment *s = ing->seg;
    return ring_depth(s->write) * 2 <= ring_capacity(s->write) && ring_depth(s->read) * 2 <= ring_capacity(s->read) &&
           (u64)ing->t.pend_used * 2 <= ing->t.pend_cap && (u64)ing->t.rec_used * 2 <= ing->t.rec_cap;
}

static void conn_update_reading(struct ingress *ing, struct ing_conn *c)
{
    bool want;
    switch (c->state) {
    case CONN_OPEN:
        want = !c->eof && can_process(ing, c);
        break;
    case CONN_LINGER:
        want = true; /* discard until the peer's FIN, whatever the pressure */
        break;
    default:
        want = false;
    }
    if (want == c->reading)
        return;
    if (want)
        bufferevent_enable(c->bev, EV_READ);
    else
        bufferevent_disable(c->bev, EV_READ);
    c->reading = want;
}

static void ing_pause(struct ingress *ing)
{
    ing->paused = true;
    for (u32 i = 0; i < ing->conn_hwm; i++)
        if (ing->conns[i].state != CONN_FREE)
            conn_update_reading(ing, &ing->conns[i]);
    log_debug("paused", "write_depth=%llu read_depth=%llu inflight=%u records=%u",
              (unsigned long long)ring_depth(ing->seg->write), (unsigned long long)ring_depth(ing->seg->read),
              ing->t.pend_used, ing->t.rec_used);
}

static void ing_maybe_resume(struct ingress *ing)
{
    if (!ing->paused || !pressure_low(ing))
        return;
    ing->paused = false;
    log_debug("resumed", "inflight=%u", ing->t.pend_used);
    /* Start at a rotating slot so the same connections do not always go first. Buffered frames
     * are processed now: enabling EV_READ alone would wait for new bytes. */
    u32 n = ing->conn_hwm;
    for (u32 k = 0; k < n && !ing->paused; k++) {
        struct ing_conn *c = &ing->conns[(ing->conn_rr + k) % n];
        if (c->state == CONN_FREE)
            continue;
        conn_update_reading(ing, c);
        if (c->state == CONN_OPEN)
            conn_process(ing, c);
    }
    if (n > 0)
        ing->conn_rr = (ing->conn_rr + 1) % n;
    flush_notify(ing);
}

/* ---- output ------------------------------------------------------------------------------- */

/* Room for one frame with a body_len body at the end of c's output, contiguous; NULL (and c
 * doomed) if libevent cannot get the memory. */
static u8 *out_begin(struct ingress *ing, struct ing_conn *c, u32 body_len, struct evbuffer_iovec *v)
{
    if (c->doomed || c->state == CONN_FREE)
        return NULL;
    size_t need = PROTO_HEADER_SIZE + (size_t)body_len;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (evbuffer_reserve_space(out, (ev_ssize_t)need, v, 1) != 1 || v->iov_len < need) {
        log_warn("conn_output_failed", "peer=%s bytes=%zu", c->peer, need);
        c->doomed = true;
        ing->doomed++;
        return NULL;
    }
    return v->iov_base;
}

static void out_commit(struct ingress *ing, struct ing_conn *c, struct evbuffer_iovec *v, u8 kind, u64 request_id,
                       u32 body_len)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    v->iov_len = proto_frame_finish(v->iov_base, v->iov_len, kind, request_id, body_len);
    evbuffer_commit_space(out, v, 1);
    c->last_active_ms = ing->now_ms;
    if (!c->out_full && evbuffer_get_length(out) > ING_OUT_HIGH) {
        c->out_full = true;
        conn_update_reading(ing, c);
    }
}

/* Error codes after which the connection is closed (net/proto.h). */
static bool error_closes(u16 code)
{
    switch (code) {
    case PROTO_ERR_BAD_FRAME:
    case PROTO_ERR_BAD_CHECKSUM:
    case PROTO_ERR_TOO_LARGE:
    case PROTO_ERR_BAD_BODY:
    case PROTO_ERR_UNSUPPORTED_VERSION:
    case PROTO_ERR_WRONG_CLUSTER:
    case PROTO_ERR_TOO_MANY_CONNECTIONS:
    case PROTO_ERR_IDLE:
    case PROTO_ERR_HANDSHAKE:
        return true;
    default:
        return false;
    }
}

/* Answers request_id with an error frame; closes the connection if the code says so. */
__attribute__((format(printf, 5, 6))) static void send_error(struct ingress *ing, struct ing_conn *c, u64 request_id,
                                                             u16 code, const char *fmt, ...)
{
    char msg[ING_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    u32 len = n < 0 ? 0 : (u32)n >= sizeof(msg) ? (u32)sizeof(msg) - 1 : (u32)n;
    struct evbuffer_iovec v;
    u8 *f = out_begin(ing, c, 8 + len, &v);
    if (f != NULL) {
        u32 body = proto_put_error(f + PROTO_HEADER_SIZE, code, msg, len);
        out_commit(ing, c, &v, PROTO_ERROR, request_id, body);
    }
    if (error_closes(code)) {
        log_debug("conn_error", "peer=%s request_id=%llu error=%s message=\"%s\"", c->peer,
                  (unsigned long long)request_id, proto_error_name(code), msg);
        conn_finish(ing, c);
    }
}

static void send_overloaded(struct ingress *ing, struct ing_conn *c, u64 request_id, const char *what)
{
    ctr_add(&ing->seg->ing->overloaded, 1);
    send_error(ing, c, request_id, PROTO_ERR_OVERLOADED, "overloaded: %s; retry later", what);
}

/* A cluster's replica that is not the serving primary (DESIGN.md §8): the view it knows, and the
 * client address of that view's primary when the config lists them and the view is settled. */
static void send_not_primary(struct ingress *ing, struct ing_conn *c, u64 request_id)
{
    const struct seg_replica *r = ing->seg->rep;
    u64 view = atomic_load_explicit(&r->view, memory_order_relaxed);
    u32 primary = atomic_load_explicit(&r->primary, memory_order_relaxed);
    bool settled = atomic_load_explicit(&r->status, memory_order_relaxed) == 0 && /* VSR_NORMAL */
                   primary != atomic_load_explicit(&r->replica, memory_order_relaxed);
    const char *hint = settled && primary < ing->hint_count ? ing->hints[primary] : "";
    u16 hint_len = (u16)strnlen(hint, PROTO_HINT_MAX);
    struct evbuffer_iovec v;
    u8 *f = out_begin(ing, c, 16 + hint_len, &v);
    if (f != NULL)
        out_commit(ing, c, &v, PROTO_NOT_PRIMARY, request_id,
                   proto_put_not_primary(f + PROTO_HEADER_SIZE, view, hint, hint_len));
}

static bool serving(const struct ingress *ing)
{
    return atomic_load_explicit(&ing->seg->rep->serving, memory_order_relaxed) != 0;
}

/* ---- pending entries ---------------------------------------------------------------------- */

static struct ing_conn *conn_of(struct ingress *ing, const struct ing_pending *p)
{
    ADB_ASSERT(p->conn < ing->conn_cap);
    struct ing_conn *c = &ing->conns[p->conn];
    /* Closing a connection frees its entries: an entry always names its open connection. */
    ADB_ASSERT(c->gen == p->conn_gen && c->state == CONN_OPEN);
    return c;
}

static void pending_attach(struct ingress *ing, struct ing_conn *c, struct ing_pending *p, u64 request_id)
{
    u32 i = ing_pending_index(&ing->t, p);
    p->conn = c->index;
    p->conn_gen = c->gen;
    p->request_id = request_id;
    p->deadline_ms = ing->now_ms + ing->cfg->request_timeout_ms;
    p->conn_prev = ING_NIL;
    p->conn_next = c->pend_head;
    if (c->pend_head != ING_NIL)
        ing->t.pend[c->pend_head].conn_prev = i;
    c->pend_head = i;
    c->inflight++;
    ctr_set(&ing->seg->ing->inflight, ing->t.pend_used);
}

/* Frees p (its connection stays as it is). */
static void pending_release(struct ingress *ing, struct ing_pending *p)
{
    struct ing_conn *c = &ing->conns[p->conn];
    if (p->conn_prev != ING_NIL)
        ing->t.pend[p->conn_prev].conn_next = p->conn_next;
    else
        c->pend_head = p->conn_next;
    if (p->conn_next != ING_NIL)
        ing->t.pend[p->conn_next].conn_prev = p->conn_prev;
    ADB_ASSERT(c->inflight > 0);
    c->inflight--;
    ing_pending_release(&ing->t, p);
    ctr_set(&ing->seg->ing->inflight, ing->t.pend_used);
}

/* While draining, a connection whose last request was answered closes. */
static void conn_maybe_finish(struct ingress *ing, struct ing_conn *c)
{
    if (c->state == CONN_OPEN && c->inflight == 0 && ing->phase != PHASE_RUNNING)
        conn_finish(ing, c);
}

/* Answered: free p, then let its connection close if that was the last thing it waited for.
 * Only p is freed (conn_finish runs only when nothing else of c is pending), so callers that
 * walk the age list stay valid with the next entry saved beforehand. */
static void pending_done(struct ingress *ing, struct ing_pending *p)
{
    struct ing_conn *c = &ing->conns[p->conn];
    pending_release(ing, p);
    conn_maybe_finish(ing, c);
}

static void record_set(struct ing_record *r, u8 outcome, u8 code)
{
    r->state = REC_DONE;
    r->outcome = outcome;
    r->code = code;
    r->from_retry_cache = 0;
    r->applied_lsn = 0;
    r->reservation_id = 0;
    r->deadline_slot = 0;
}

/* Every command of submit p has its result: the response, in command order. */
static void submit_complete(struct ingress *ing, struct ing_pending *p)
{
    ADB_ASSERT(p->kind == PROTO_SUBMIT && p->resolved == p->count);
    struct ing_conn *c = conn_of(ing, p);
    u32 body_len = PROTO_SUBMIT_PREFIX + p->count * PROTO_RESULT_SIZE;
    struct evbuffer_iovec v;
    u8 *f = out_begin(ing, c, body_len, &v);
    if (f != NULL) {
        u8 *b = f + PROTO_HEADER_SIZE;
        u32 off = proto_put_submit_result_prefix(b, p->count);
        for (u32 i = 0; i < p->count; i++, off += PROTO_RESULT_SIZE) {
            const struct ing_record *r = ing_pending_record(&ing->t, p, i);
            ADB_ASSERT(r->state == REC_DONE);
            struct proto_result res = { .outcome = r->outcome, .code = r->code };
            if (r->outcome == PROTO_COMMITTED) {
                res.from_retry_cache = r->from_retry_cache != 0;
                res.applied_lsn = r->applied_lsn;
                res.reservation_id = r->reservation_id;
                res.deadline_slot = r->deadline_slot;
            }
            proto_put_result(b + off, &res);
        }
        out_commit(ing, c, &v, PROTO_SUBMIT_RESULT, p->request_id, body_len);
    }
    pending_done(ing, p);
}

/* Answers what p still waits for: unresolved commands of a submit with an indefinite code,
 * or a read with an error. */
static void pending_fail(struct ingress *ing, struct ing_pending *p, u8 indefinite, u16 read_error,
                         const char *why)
{
    if (p->kind == PROTO_SUBMIT) {
        for (u32 i = 0; i < p->count; i++) {
            struct ing_record *r = ing_pending_record(&ing->t, p, i);
            if (r->state == REC_DONE)
                continue;
            record_set(r, PROTO_INDEFINITE, indefinite);
            p->resolved++;
            if (indefinite == PROTO_INDEFINITE_TIMEOUT)
                ctr_add(&ing->seg->ing->timeouts, 1);
        }
        submit_complete(ing, p);
        return;
    }
    /* A read's error never closes the connection here: callers walking the age list rely on
     * only p being freed (the connection closes later, through conn_maybe_finish). */
    ADB_ASSERT(!error_closes(read_error));
    struct ing_conn *c = conn_of(ing, p);
    send_error(ing, c, p->request_id, read_error, "%s", why);
    pending_done(ing, p);
}

/* ---- pushing to the workers --------------------------------------------------------------- */

static bool push_write(struct ingress *ing, const struct ing_pending *p, u32 index, const struct sm_command *cmd,
                       u16 flags)
{
    void *slot = ring_claim(ing->seg->write);
    if (slot == NULL)
        return false;
    struct msg_write m;
    memset(&m, 0, sizeof(m));
    m.tag = tag_of(ing, p, index, flags);
    m.cmd = *cmd;
    memcpy(slot, &m, sizeof(m));
    ring_publish_quiet(ing->seg->write, sizeof(m));
    ing->write_pushed = true;
    return true;
}

static void rq_compact(struct ingress *ing)
{
    u32 kept = 0;
    for (u32 k = 0; k < ing->rq_len; k++) {
        struct ing_resubmit e = ing->rq[(ing->rq_head + k) % ing->rq_cap];
        struct ing_pending *p = ing_pending_find(&ing->t, e.pending, e.pending_gen);
        if (p == NULL || e.index >= p->count || ing_pending_record(&ing->t, p, e.index)->state != REC_RESUBMIT)
            continue;
        ing->rq[(ing->rq_head + kept) % ing->rq_cap] = e;
        kept++;
    }
    ing->rq_len = kept;
}

static void rq_push(struct ingress *ing, struct ing_pending *p, u32 index)
{
    if (ing->rq_len == ing->rq_cap)
        rq_compact(ing); /* stale entries of freed requests */
    /* A record is queued at most once (REC_RESUBMIT), so live entries always fit. */
    ADB_ASSERT(ing->rq_len < ing->rq_cap);
    ing->rq[(ing->rq_head + ing->rq_len) % ing->rq_cap] =
        (struct ing_resubmit){ ing_pending_index(&ing->t, p), p->gen, index };
    ing->rq_len++;
    ing_pending_record(&ing->t, p, index)->state = REC_RESUBMIT;
}

/* Pushes queued RESUBMITs while the write ring has room. */
static void rq_flush(struct ingress *ing)
{
    while (ing->rq_len > 0) {
        struct ing_resubmit e = ing->rq[ing->rq_head];
        struct ing_pending *p = ing_pending_find(&ing->t, e.pending, e.pending_gen);
        struct ing_record *r = p != NULL && e.index < p->count ? ing_pending_record(&ing->t, p, e.index) : NULL;
        if (r != NULL && r->state == REC_RESUBMIT) {
            if (!push_write(ing, p, e.index, &r->cmd, MSG_TAG_FORCE_LOG))
                return; /* full: next time (the request's timeout bounds the wait) */
            r->state = REC_WAITING;
        }
        ing->rq_head = (ing->rq_head + 1) % ing->rq_cap;
        ing->rq_len--;
    }
}

/* ---- requests ----------------------------------------------------------------------------- */

static void handle_hello(struct ingress *ing, struct ing_conn *c, const struct proto_header *h, const u8 *body)
{
    struct proto_hello hello;
    enum proto_status st = proto_get_hello(body, h->body_len, &hello);
    if (st != PROTO_OK) {
        ctr_add(&ing->seg->ing->bad_frames, 1);
        send_error(ing, c, h->request_id, PROTO_ERR_BAD_BODY, "bad hello body: %s", proto_status_name(st));
        return;
    }
    if (hello.version != PROTO_VERSION) {
        send_error(ing, c, h->request_id, PROTO_ERR_UNSUPPORTED_VERSION,
                   "protocol version %u is not supported; this server speaks version %u", hello.version,
                   PROTO_VERSION);
        return;
    }
    struct seg_sequencer *sq = ing->seg->seq;
    u64 lo = atomic_load_explicit(&sq->cluster_id_lo, memory_order_relaxed);
    u64 hi = atomic_load_explicit(&sq->cluster_id_hi, memory_order_relaxed);
    u128 ours = U128_MAKE(hi, lo);
    if (hello.cluster_id != 0 && hello.cluster_id != ours) {
        send_error(ing, c, h->request_id, PROTO_ERR_WRONG_CLUSTER,
                   "cluster %016llx%016llx asked for, this server belongs to cluster %016llx%016llx",
                   (unsigned long long)U128_HI(hello.cluster_id), (unsigned long long)U128_LO(hello.cluster_id),
                   (unsigned long long)hi, (unsigned long long)lo);
        return;
    }
    struct proto_hello_ok ok = {
        .version = PROTO_VERSION,
        .max_batch = ing->cfg->max_batch,
        .cluster_id = ours,
        .replica_id = atomic_load_explicit(&sq->replica_id, memory_order_relaxed),
        .slot_duration_ms = ing->cfg->slot_duration_ms,
        .max_body = ing->max_body,
        .view = 0,
    };
    struct evbuffer_iovec v;
    u8 *f = out_begin(ing, c, proto_body_size(PROTO_HELLO_OK), &v);
    if (f != NULL)
        out_commit(ing, c, &v, PROTO_HELLO_OK, h->request_id, proto_put_hello_ok(f + PROTO_HEADER_SIZE, &ok));
    c->hello_done = true;
}

static void command_to_sm(const struct proto_command *pc, u64 slot_duration_ms, struct sm_command *out)
{
    memset(out, 0, sizeof(*out));
    out->kind = pc->kind;
    out->operation_id = pc->operation_id;
    out->client_id = pc->client_id;
    switch (pc->kind) {
    case SM_CMD_CREATE_RESOURCE:
        out->resource_id = pc->target;
        break;
    case SM_CMD_RESERVE:
        out->resource_id = pc->target;
        out->holder_id = pc->holder_id;
        out->ttl_slots = proto_ttl_slots(pc->ttl_ms, slot_duration_ms);
        break;
    case SM_CMD_CONFIRM:
    case SM_CMD_RELEASE:
        out->reservation_id = pc->target;
        out->holder_id = pc->holder_id;
        break;
    default:
        ADB_ASSERT(!"command_to_sm: proto_get_command let an unknown kind through");
    }
}

static void handle_submit(struct ingress *ing, struct ing_conn *c, const struct proto_header *h, const u8 *body)
{
    u32 count = 0;
    enum proto_status st = proto_get_submit(body, h->body_len, ing->cfg->max_batch, &count);
    if (st == PROTO_TOO_LARGE) {
        /* Well-formed, just more than we announced: this request only, the connection stays. */
        send_error(ing, c, h->request_id, PROTO_ERR_BATCH_TOO_LARGE, "batch of %u commands is over max_batch %u",
                   le_get_u32(body), ing->cfg->max_batch);
        return;
    }
    if (st != PROTO_OK) {
        ctr_add(&ing->seg->ing->bad_frames, 1);
        send_error(ing, c, h->request_id, PROTO_ERR_BAD_BODY, "bad submit body (%u bytes): %s", h->body_len,
                   proto_status_name(st));
        return;
    }
    struct ing_pending *p = ing_pending_alloc(&ing->t, PROTO_SUBMIT, count);
    if (p == NULL) {
        send_overloaded(ing, c, h->request_id, "too many requests in flight");
        return;
    }
    pending_attach(ing, c, p, h->request_id);
    ctr_add(&ing->seg->ing->commands, count);
    bool ring_full = false;
    for (u32 i = 0; i < count; i++) {
        struct ing_record *r = ing_pending_record(&ing->t, p, i);
        struct proto_command pc;
        if (proto_get_command(body + PROTO_SUBMIT_PREFIX + (size_t)i * PROTO_COMMAND_SIZE, &pc) != PROTO_OK) {
            record_set(r, PROTO_REJECTED, PROTO_REJECT_INVALID_REQUEST); /* never reaches the sequencer */
            p->resolved++;
            continue;
        }
        command_to_sm(&pc, ing->cfg->slot_duration_ms, &r->cmd);
        if (ring_full || !push_write(ing, p, i, &r->cmd, 0)) {
            /* Definite: this command was never sent. The rest of the batch follows it, so a
             * batch is never executed with a hole in the middle. */
            ring_full = true;
            record_set(r, PROTO_REJECTED, PROTO_REJECT_OVERLOADED);
            p->resolved++;
            continue;
        }
        r->state = REC_WAITING;
    }
    if (ring_full)
        ctr_add(&ing->seg->ing->overloaded, 1);
    if (p->resolved == p->count)
        submit_complete(ing, p);
}

static void handle_read(struct ingress *ing, struct ing_conn *c, const struct proto_header *h, const u8 *body)
{
    struct proto_read rd = { 0, 0 };
    u8 kind = MSG_READ_TICK;
    if (h->kind != PROTO_TICK) {
        enum proto_status st = proto_get_read(body, h->body_len, &rd);
        if (st != PROTO_OK) {
            ctr_add(&ing->seg->ing->bad_frames, 1);
            send_error(ing, c, h->request_id, PROTO_ERR_BAD_BODY, "bad %s body: %s", proto_kind_name(h->kind),
                       proto_status_name(st));
            return;
        }
        kind = h->kind == PROTO_GET_RESOURCE ? MSG_READ_RESOURCE : MSG_READ_RESERVATION;
    }
    struct ing_pending *p = ing_pending_alloc(&ing->t, h->kind, 0);
    if (p == NULL) {
        send_overloaded(ing, c, h->request_id, "too many requests in flight");
        return;
    }
    void *slot = ring_claim(ing->seg->read);
    if (slot == NULL) {
        ing_pending_release(&ing->t, p);
        send_overloaded(ing, c, h->request_id, "the read queue is full");
        return;
    }
    pending_attach(ing, c, p, h->request_id);
    p->read_id = rd.id;
    struct msg_read m;
    memset(&m, 0, sizeof(m));
    m.tag = tag_of(ing, p, 0, 0);
    m.id = rd.id;
    m.min_lsn = rd.min_lsn;
    m.kind = kind;
    memcpy(slot, &m, sizeof(m));
    ring_publish_quiet(ing->seg->read, sizeof(m));
    ing->read_pushed = true;
}

static void handle_text(struct ingress *ing, struct ing_conn *c, const struct proto_header *h)
{
    size_t len = 0;
    char *text = h->kind == PROTO_METRICS ? ing_metrics_json(ing->seg, &len) : ing_status_json(ing->seg, &len);
    if (text == NULL || len > PROTO_TEXT_MAX) {
        free(text);
        send_overloaded(ing, c, h->request_id, "could not build the document");
        return;
    }
    struct evbuffer_iovec v;
    u8 *f = out_begin(ing, c, (u32)len, &v);
    if (f != NULL) {
        memcpy(f + PROTO_HEADER_SIZE, text, len);
        out_commit(ing, c, &v, h->kind == PROTO_METRICS ? PROTO_METRICS_OK : PROTO_STATUS_OK, h->request_id,
                   (u32)len);
    }
    free(text);
}

static void handle_request(struct ingress *ing, struct ing_conn *c, const struct proto_header *h, const u8 *body)
{
    /* The handshake is where the version and the cluster id are checked: nothing is served
     * before it, and it happens once. */
    if ((h->kind == PROTO_HELLO) == c->hello_done) {
        ctr_add(&ing->seg->ing->bad_frames, 1);
        if (c->hello_done)
            send_error(ing, c, h->request_id, PROTO_ERR_HANDSHAKE, "a second hello on this connection");
        else
            send_error(ing, c, h->request_id, PROTO_ERR_HANDSHAKE,
                       "%s before hello: the first request on a connection must be hello", proto_kind_name(h->kind));
        return;
    }
    switch (h->kind) {
    case PROTO_HELLO:
        handle_hello(ing, c, h, body);
        break;
    case PROTO_SUBMIT:
        if (!serving(ing))
            send_not_primary(ing, c, h->request_id); /* definite: never sent to the sequencer */
        else
            handle_submit(ing, c, h, body);
        break;
    case PROTO_GET_RESOURCE:
    case PROTO_GET_RESERVATION:
        if (!serving(ing)) {
            send_not_primary(ing, c, h->request_id);
            break;
        }
        /* fall through */
    case PROTO_TICK:
        handle_read(ing, c, h, body);
        break;
    case PROTO_METRICS:
    case PROTO_STATUS:
        handle_text(ing, c, h);
        break;
    default:
        ctr_add(&ing->seg->ing->bad_frames, 1);
        send_error(ing, c, h->request_id, PROTO_ERR_BAD_FRAME, "frame kind %s (0x%02x) is not a request",
                   proto_kind_name(h->kind), h->kind);
    }
}

/* ---- framing ------------------------------------------------------------------------------ */

static void frame_error(struct ingress *ing, struct ing_conn *c, enum proto_status st, const u8 *hdr, size_t have)
{
    ctr_add(&ing->seg->ing->bad_frames, 1);
    /* The request id, if the header got that far and looked like ours: lets the client match. */
    u64 rid = st != PROTO_BAD_MAGIC && have >= 16 ? le_get_u64(hdr + 8) : 0;
    switch (st) {
    case PROTO_TOO_LARGE:
        send_error(ing, c, rid, PROTO_ERR_TOO_LARGE, "frame body of %u bytes is over the protocol limit %u",
                   le_get_u32(hdr + 16), PROTO_BODY_MAX);
        return;
    case PROTO_BAD_LENGTH:
        send_error(ing, c, rid, PROTO_ERR_BAD_BODY, "body of %u bytes is the wrong length for %s",
                   le_get_u32(hdr + 16), proto_kind_name(hdr[6]));
        return;
    case PROTO_BAD_CRC:
        send_error(ing, c, rid, PROTO_ERR_BAD_CHECKSUM, "frame checksum mismatch");
        return;
    case PROTO_BAD_VERSION:
        send_error(ing, c, rid, PROTO_ERR_BAD_FRAME, "bad frame: frame version %u (this server speaks %u)",
                   le_get_u16(hdr + 4), PROTO_VERSION);
        return;
    case PROTO_BAD_KIND:
        send_error(ing, c, rid, PROTO_ERR_BAD_FRAME, "bad frame: unknown frame kind 0x%02x", hdr[6]);
        return;
    case PROTO_BAD_MAGIC:
        send_error(ing, c, rid, PROTO_ERR_BAD_FRAME, "bad frame: not an AllocDB protocol frame (bad magic)");
        return;
    default:
        send_error(ing, c, rid, PROTO_ERR_BAD_FRAME, "bad frame: %s", proto_status_name(st));
        return;
    }
}

/* The first bytes of a frame, before a whole header is in: a stranger (an HTTP request, a
 * port scan) is told at once instead of waiting for 32 bytes that may never come. */
static bool magic_prefix_ok(struct evbuffer *in, size_t avail)
{
    u8 want[4], got[4];
    le_put_u32(want, PROTO_MAGIC);
    size_t n = avail < sizeof(got) ? avail : sizeof(got);
    if (evbuffer_copyout(in, got, n) != (ev_ssize_t)n)
        return false;
    return memcmp(want, got, n) == 0;
}

/* Decodes and handles every complete frame in c's input while c may be processed. */
static void conn_process(struct ingress *ing, struct ing_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    while (can_process(ing, c)) {
        size_t avail = evbuffer_get_length(in);
        if (avail == 0) {
            c->frame_start_ms = 0;
            break;
        }
        if (c->skip > 0) {
            /* The body of a submit refused with batch_too_large: discarded as it arrives,
             * never buffered; the header timeout still bounds it. */
            size_t n = avail < c->skip ? avail : c->skip;
            evbuffer_drain(in, n);
            c->skip -= (u32)n;
            if (c->skip > 0) {
                if (c->frame_start_ms == 0)
                    c->frame_start_ms = ing->now_ms;
                break;
            }
            c->frame_start_ms = 0;
            continue;
        }
        u8 hdr[PROTO_HEADER_SIZE];
        if (avail < PROTO_HEADER_SIZE) {
            if (!magic_prefix_ok(in, avail)) {
                size_t n = avail;
                evbuffer_copyout(in, hdr, n);
                frame_error(ing, c, PROTO_BAD_MAGIC, hdr, n);
                return;
            }
            if (c->frame_start_ms == 0)
                c->frame_start_ms = ing->now_ms;
            break;
        }
        evbuffer_copyout(in, hdr, sizeof(hdr));
        struct proto_header h;
        /* Against the protocol's hard limit first: see the oversize submit below. */
        enum proto_status st = proto_header_decode(hdr, sizeof(hdr), PROTO_BODY_MAX, &h);
        if (st != PROTO_OK) {
            frame_error(ing, c, st, hdr, sizeof(hdr));
            return;
        }
        if (h.kind >= 0x80) {
            ctr_add(&ing->seg->ing->bad_frames, 1);
            send_error(ing, c, h.request_id, PROTO_ERR_BAD_FRAME,
                       "frame kind %s (0x%02x) is a response, not a request", proto_kind_name(h.kind), h.kind);
            return;
        }
        if (h.body_len > ing->max_body) {
            /* Only a submit gets here (every other request has a small fixed size). max_body
             * is exactly a full batch, so this is a batch over max_batch: refused as
             * batch_too_large with the connection kept (allocdb-protocol(7)), its body skipped
             * without being read into memory. */
            ADB_ASSERT(h.kind == PROTO_SUBMIT);
            evbuffer_drain(in, PROTO_HEADER_SIZE);
            c->skip = h.body_len;
            c->frame_start_ms = ing->now_ms;
            ctr_add(&ing->seg->ing->requests, 1);
            send_error(ing, c, h.request_id, PROTO_ERR_BATCH_TOO_LARGE,
                       "submit body of %u bytes is over max_body %u: more than max_batch %u commands", h.body_len,
                       ing->max_body, ing->cfg->max_batch);
            continue;
        }
        size_t frame_len = PROTO_HEADER_SIZE + (size_t)h.body_len;
        if (avail < frame_len) {
            if (c->frame_start_ms == 0)
                c->frame_start_ms = ing->now_ms;
            break;
        }
        int got = evbuffer_remove(in, ing->frame, frame_len);
        ADB_ASSERT(got == (int)frame_len);
        c->frame_start_ms = 0;
        ctr_add(&ing->seg->ing->requests, 1);
        st = proto_frame_check(ing->frame, frame_len);
        if (st != PROTO_OK) {
            frame_error(ing, c, st, ing->frame, frame_len);
            return;
        }
        handle_request(ing, c, &h, ing->frame + PROTO_HEADER_SIZE);
        if (!ing->paused && pressure_high(ing))
            ing_pause(ing);
    }
    if (c->eof && can_process(ing, c)) {
        /* The peer shut its side. A partial frame left behind is answered (a client that
         * half-closed can read why); otherwise the client is gone and so are its requests. */
        size_t avail = evbuffer_get_length(in);
        if (avail > 0) {
            u8 head[16];
            u64 rid = 0;
            if (avail >= sizeof(head) && evbuffer_copyout(in, head, sizeof(head)) == (ev_ssize_t)sizeof(head))
                rid = le_get_u64(head + 8);
            ctr_add(&ing->seg->ing->bad_frames, 1);
            send_error(ing, c, rid, PROTO_ERR_BAD_FRAME,
                       "truncated frame: the connection was shut after %zu bytes of a frame", avail);
            return;
        }
        conn_free(ing, c);
    }
}

/* ---- connections -------------------------------------------------------------------------- */

/* Frees the slot now: its pending entries, the bufferevent (which closes the socket). */
static void conn_free(struct ingress *ing, struct ing_conn *c)
{
    ADB_ASSERT(c->state != CONN_FREE);
    while (c->pend_head != ING_NIL)
        pending_release(ing, &ing->t.pend[c->pend_head]);
    bufferevent_free(c->bev);
    if (c->doomed)
        ing->doomed--;
    log_debug("conn_closed", "peer=%s", c->peer);
    u32 gen = c->gen + 1;
    u32 index = c->index;
    memset(c, 0, sizeof(*c));
    c->ing = ing;
    c->index = index;
    c->gen = gen;
    c->pend_head = ING_NIL;
    c->next_free = ing->conn_free;
    ing->conn_free = index;
    ing->conn_open--;
    ctr_set(&ing->seg->ing->connections, ing->conn_open);
}

/* Output is flushed: shut our side and read until the peer's FIN, so the last frame we sent is
 * not destroyed by a reset for unread input; or free at once if the peer is gone already. */
static void conn_flushed(struct ingress *ing, struct ing_conn *c)
{
    if (c->eof || c->doomed) {
        conn_free(ing, c);
        return;
    }
    shutdown(bufferevent_getfd(c->bev), SHUT_WR);
    c->state = CONN_LINGER;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    evbuffer_drain(in, evbuffer_get_length(in));
    conn_update_reading(ing, c);
}

/* No more requests from c: frees its pending entries, flushes its output, then closes. */
static void conn_finish(struct ingress *ing, struct ing_conn *c)
{
    if (c->state != CONN_OPEN)
        return;
    while (c->pend_head != ING_NIL)
        pending_release(ing, &ing->t.pend[c->pend_head]);
    c->state = CONN_CLOSING;
    c->frame_start_ms = 0;
    u64 deadline = ing->now_ms + ING_LINGER_MS;
    if (ing->phase != PHASE_RUNNING && ing->close_by_ms < deadline)
        deadline = ing->close_by_ms;
    c->close_deadline_ms = deadline;
    conn_update_reading(ing, c);
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
        conn_flushed(ing, c);
}

static void conn_read_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    struct ing_conn *c = arg;
    struct ingress *ing = c->ing;
    ing->now_ms = mono_ms();
    c->last_active_ms = ing->now_ms;
    if (c->state == CONN_LINGER) {
        struct evbuffer *in = bufferevent_get_input(c->bev);
        evbuffer_drain(in, evbuffer_get_length(in));
        return;
    }
    if (c->state == CONN_OPEN)
        conn_process(ing, c);
    flush_notify(ing);
}

static void conn_write_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    struct ing_conn *c = arg;
    struct ingress *ing = c->ing;
    ing->now_ms = mono_ms();
    size_t left = evbuffer_get_length(bufferevent_get_output(c->bev));
    if (c->out_full && left <= ING_OUT_HIGH / 2) {
        c->out_full = false;
        conn_update_reading(ing, c);
        if (c->state == CONN_OPEN)
            conn_process(ing, c);
        flush_notify(ing);
    }
    if (c->state == CONN_CLOSING && left == 0)
        conn_flushed(ing, c);
}

static void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    struct ing_conn *c = arg;
    struct ingress *ing = c->ing;
    ing->now_ms = mono_ms();
    if ((what & BEV_EVENT_EOF) && !(what & (BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))) {
        c->eof = true;
        c->reading = false; /* libevent stopped reading at EOF */
        if (c->state == CONN_LINGER) {
            conn_free(ing, c);
        } else if (c->state == CONN_OPEN) {
            /* Reading: frames were handled as they came, so what is left is a truncated frame
             * (answered) or nothing (freed). Not reading (paused, output full, draining): the
             * client left without waiting; its buffered frames and requests go with it. */
            if (can_process(ing, c))
                conn_process(ing, c);
            else
                conn_free(ing, c);
            flush_notify(ing);
        }
        return;
    }
    if (what & BEV_EVENT_TIMEOUT)
        log_debug("conn_write_stalled", "peer=%s", c->peer);
    else
        log_debug("conn_failed", "peer=%s error=\"%s\"", c->peer,
                  evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
    conn_free(ing, c);
}

static void describe_peer(const struct sockaddr_storage *ss, char *out, size_t cap)
{
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
        port = ntohs(a->sin_port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
        port = ntohs(a->sin6_port);
    }
    if (ss->ss_family == AF_INET6)
        snprintf(out, cap, "[%s]:%u", host, port);
    else
        snprintf(out, cap, "%s:%u", host, port);
}

/* One error frame straight on a socket whose buffers are empty (a small frame goes out whole),
 * then our side shut: the last thing the peer reads. */
static void send_last_error(int fd, u16 code, const char *msg)
{
    u8 buf[PROTO_HEADER_SIZE + 8 + 128];
    size_t len = strlen(msg);
    ADB_ASSERT(len <= 128);
    u32 body = proto_put_error(buf + PROTO_HEADER_SIZE, code, msg, (u32)len);
    size_t n = proto_frame_finish(buf, sizeof(buf), PROTO_ERROR, 0, body);
    ssize_t sent = send(fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)sent;
    shutdown(fd, SHUT_WR);
}

/*
 * At max_connections, a new client takes the slot of the connection idle longest — preferring
 * one that never said hello — if it has been idle ING_EVICT_IDLE_MIN_MS with nothing in flight,
 * no partial frame and no output queued: connections that only hold a slot cannot shut
 * everyone else out for idle_timeout_ms. The evicted one gets error idle (a client reconnects)
 * straight on its socket, whose buffers are empty, and is closed. False if none qualifies.
 */
static bool conn_evict_idle(struct ingress *ing)
{
    struct ing_conn *victim = NULL;
    for (u32 i = 0; i < ing->conn_hwm; i++) {
        struct ing_conn *c = &ing->conns[i];
        if (c->state != CONN_OPEN || c->pend_head != ING_NIL || c->frame_start_ms != 0 ||
            ing->now_ms - c->last_active_ms < ING_EVICT_IDLE_MIN_MS ||
            evbuffer_get_length(bufferevent_get_input(c->bev)) != 0 ||
            evbuffer_get_length(bufferevent_get_output(c->bev)) != 0)
            continue;
        if (victim == NULL || (!c->hello_done && victim->hello_done) ||
            (c->hello_done == victim->hello_done && c->last_active_ms < victim->last_active_ms))
            victim = c;
    }
    if (victim == NULL)
        return false;
    ctr_add(&ing->seg->ing->connections_evicted, 1);
    send_last_error(bufferevent_getfd(victim->bev), PROTO_ERR_IDLE,
                    "evicted: the server is at max_connections and this connection was idle longest");
    log_debug("conn_evicted", "peer=%s idle_ms=%llu hello=%s", victim->peer,
              (unsigned long long)(ing->now_ms - victim->last_active_ms), victim->hello_done ? "yes" : "no");
    conn_free(ing, victim);
    return true;
}

/* Over max_connections: one error frame straight on the new socket (its send buffer is empty,
 * so a small frame goes out whole), then close. */
static void conn_refuse(struct ingress *ing, int fd, const char *peer)
{
    /* Counted before the client can see the refusal, so the counter never lags the frame. */
    ctr_add(&ing->seg->ing->connections_refused, 1);
    send_last_error(fd, PROTO_ERR_TOO_MANY_CONNECTIONS, "too many connections");
    close(fd);
    log_debug("conn_refused", "peer=%s open=%u max_connections=%u", peer, ing->conn_open, ing->conn_cap);
}

static void conn_open(struct ingress *ing, int fd, const struct sockaddr_storage *ss)
{
    char peer[64];
    describe_peer(ss, peer, sizeof(peer));
    if (ing->conn_free == ING_NIL && !conn_evict_idle(ing)) {
        conn_refuse(ing, fd, peer);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)); /* fails harmlessly if not TCP */
    struct bufferevent *bev = bufferevent_socket_new(ing->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL) {
        log_warn("conn_setup_failed", "peer=%s call=bufferevent_socket_new", peer);
        close(fd);
        return;
    }
    struct ing_conn *c = &ing->conns[ing->conn_free];
    ing->conn_free = c->next_free;
    ADB_ASSERT(c->state == CONN_FREE && c->pend_head == ING_NIL);
    c->bev = bev;
    c->state = CONN_OPEN;
    c->last_active_ms = ing->now_ms;
    c->next_free = ING_NIL;
    snprintf(c->peer, sizeof(c->peer), "%s", peer);
    if (c->index >= ing->conn_hwm)
        ing->conn_hwm = c->index + 1;
    ing->conn_open++;
    ctr_set(&ing->seg->ing->connections, ing->conn_open);
    ctr_add(&ing->seg->ing->connections_total, 1);

    bufferevent_setcb(bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
    bufferevent_setwatermark(bev, EV_READ, 0, ing->in_high);
    bufferevent_setwatermark(bev, EV_WRITE, ING_OUT_HIGH / 2, 0);
    /* A peer that stops reading its answers for idle_timeout_ms is dropped. */
    struct timeval wt = { .tv_sec = (time_t)(ing->cfg->idle_timeout_ms / 1000),
                          .tv_usec = (suseconds_t)(ing->cfg->idle_timeout_ms % 1000) * 1000 };
    bufferevent_set_timeouts(bev, NULL, ing->cfg->idle_timeout_ms > 0 ? &wt : NULL);
    c->reading = false;
    conn_update_reading(ing, c);
    log_debug("conn_accepted", "peer=%s slot=%u open=%u", c->peer, c->index, ing->conn_open);
}

static void accept_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct ingress *ing = arg;
    ing->now_ms = mono_ms();
    for (int i = 0; i < ING_ACCEPT_BATCH && ing->accepting; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        memset(&ss, 0, sizeof(ss));
        int cfd = accept4(fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd >= 0) {
            conn_open(ing, cfd, &ss);
            continue;
        }
        int e = errno;
        if (e == EINTR || e == ECONNABORTED)
            continue;
        if (e == EAGAIN || e == EWOULDBLOCK)
            return;
        /* Out of descriptors or memory: the socket stays readable, so stop watching it for a
         * moment instead of spinning on it; say so once per interval, not per attempt. */
        ing->accept_failures++;
        if (ing->accept_logged_ms == 0 || ing->now_ms - ing->accept_logged_ms >= ING_ACCEPT_LOG_INTERVAL_MS) {
            log_warn("accept_failed", "error=\"%s\" failures=%llu retry_ms=%d", strerror(e),
                     (unsigned long long)ing->accept_failures, ING_ACCEPT_RETRY_MS);
            ing->accept_logged_ms = ing->now_ms;
        }
        event_del(ing->ev_accept);
        ing->accepting = false;
        ing->accept_retry_ms = ing->now_ms + ING_ACCEPT_RETRY_MS;
        return;
    }
}

/* ---- results ------------------------------------------------------------------------------ */

static bool write_result_valid(u8 outcome, u8 code)
{
    switch (outcome) {
    case PROTO_COMMITTED: return code < SM_RESULT_COUNT;
    case PROTO_REJECTED: return code >= PROTO_REJECT_INVALID_REQUEST && code <= PROTO_REJECT_MAX;
    case PROTO_INDEFINITE: return code >= PROTO_INDEFINITE_TIMEOUT && code <= PROTO_INDEFINITE_VIEW_CHANGE;
    default: return false;
    }
}

static void result_write(struct ingress *ing, struct ing_pending *p, const struct msg_result *m)
{
    if (m->tag.index >= p->count)
        return;
    struct ing_record *r = ing_pending_record(&ing->t, p, m->tag.index);
    if (m->type == MSG_RESULT_RESUBMIT) {
        if (r->state == REC_WAITING)
            rq_push(ing, p, m->tag.index);
        return;
    }
    /* A result for a queued RESUBMIT is still its result (a restarted worker re-publishing). */
    if (r->state == REC_DONE)
        return;
    if (!write_result_valid(m->outcome, m->code)) {
        log_warn("bad_result", "outcome=%u code=%u", m->outcome, m->code); /* the timeout answers */
        return;
    }
    r->state = REC_DONE;
    r->outcome = m->outcome;
    r->code = m->code;
    r->from_retry_cache = m->from_retry_cache != 0;
    r->applied_lsn = m->applied_lsn;
    r->reservation_id = m->u.write.reservation_id;
    r->deadline_slot = m->u.write.deadline_slot;
    p->resolved++;
    if (p->resolved == p->count)
        submit_complete(ing, p);
}

static void result_read(struct ingress *ing, struct ing_pending *p, const struct msg_result *m)
{
    struct ing_conn *c = conn_of(ing, p);
    bool found = m->code == SM_READ_FOUND;
    struct evbuffer_iovec v;
    if (m->code > SM_READ_FENCE_NOT_APPLIED) {
        log_warn("bad_result", "type=%u code=%u", m->type, m->code);
        return;
    }
    if (p->kind == PROTO_GET_RESOURCE) {
        const struct sm_resource_view *rv = &m->u.resource;
        if (found && rv->state > SM_RESOURCE_CONFIRMED) {
            log_warn("bad_result", "type=%u state=%u", m->type, rv->state);
            return;
        }
        struct proto_resource out = { .read = m->code, .applied_lsn = m->applied_lsn, .resource_id = p->read_id };
        if (found) {
            out.state = rv->state;
            out.resource_id = rv->resource_id;
            out.current_reservation_id = rv->current_reservation_id;
            out.version = rv->version;
        }
        u8 *f = out_begin(ing, c, proto_body_size(PROTO_RESOURCE), &v);
        if (f != NULL)
            out_commit(ing, c, &v, PROTO_RESOURCE, p->request_id, proto_put_resource(f + PROTO_HEADER_SIZE, &out));
    } else if (p->kind == PROTO_GET_RESERVATION) {
        const struct sm_reservation_view *rv = &m->u.reservation;
        if (found && rv->state > SM_RESERVATION_EXPIRED) {
            log_warn("bad_result", "type=%u state=%u", m->type, rv->state);
            return;
        }
        struct proto_reservation out = { .read = m->code,
                                         .applied_lsn = m->applied_lsn,
                                         .reservation_id = p->read_id };
        if (found) {
            out.state = rv->state;
            out.reservation_id = rv->reservation_id;
            out.resource_id = rv->resource_id;
            out.holder_id = rv->holder_id;
            out.created_lsn = rv->created_lsn;
            out.deadline_slot = rv->deadline_slot;
            out.released_lsn = rv->released_lsn;
            out.retire_after_slot = rv->retire_after_slot;
        }
        u8 *f = out_begin(ing, c, proto_body_size(PROTO_RESERVATION), &v);
        if (f != NULL)
            out_commit(ing, c, &v, PROTO_RESERVATION, p->request_id,
                       proto_put_reservation(f + PROTO_HEADER_SIZE, &out));
    }
    pending_done(ing, p);
}

static void result_tick(struct ingress *ing, struct ing_pending *p, const struct msg_result *m)
{
    struct ing_conn *c = conn_of(ing, p);
    struct proto_tick_ok out = { .slot = m->u.tick.slot, .expirations_proposed = m->u.tick.proposed };
    struct evbuffer_iovec v;
    u8 *f = out_begin(ing, c, proto_body_size(PROTO_TICK_OK), &v);
    if (f != NULL)
        out_commit(ing, c, &v, PROTO_TICK_OK, p->request_id, proto_put_tick_ok(f + PROTO_HEADER_SIZE, &out));
    pending_done(ing, p);
}

static void handle_result(struct ingress *ing, const struct msg_result *m)
{
    /* Ours only if it names this ingress generation and an entry that still waits for it. */
    if (!(m->tag.flags & MSG_TAG_VALID) || m->tag.ingress_gen != ing->w->generation)
        return;
    struct ing_pending *p = ing_pending_find(&ing->t, m->tag.pending, m->tag.pending_gen);
    if (p == NULL)
        return;
    switch (m->type) {
    case MSG_RESULT_WRITE:
    case MSG_RESULT_RESUBMIT:
        if (p->kind == PROTO_SUBMIT)
            result_write(ing, p, m);
        return;
    case MSG_RESULT_RESOURCE:
        if (p->kind == PROTO_GET_RESOURCE)
            result_read(ing, p, m);
        return;
    case MSG_RESULT_RESERVATION:
        if (p->kind == PROTO_GET_RESERVATION)
            result_read(ing, p, m);
        return;
    case MSG_RESULT_TICK:
        if (p->kind == PROTO_TICK)
            result_tick(ing, p, m);
        return;
    case MSG_RESULT_NOT_PRIMARY: /* a read whose round failed: its replica lost the view */
        if (p->kind == PROTO_GET_RESOURCE || p->kind == PROTO_GET_RESERVATION) {
            send_not_primary(ing, conn_of(ing, p), p->request_id);
            pending_done(ing, p);
        }
        return;
    default:
        log_warn("bad_result", "type=%u", m->type);
        return;
    }
}

/* Consumes everything ring r holds now. A bad entry fails closed. */
static void drain_ring(struct ingress *ing, struct ring *r, const char *name)
{
    for (u32 n = ring_capacity(r); n > 0 && !ing->fatal; n--) {
        const void *payload;
        u32 len;
        enum ring_status st = ring_peek(r, &payload, &len);
        if (st == RING_EMPTY)
            return;
        if (st == RING_CORRUPT || len != sizeof(struct msg_result)) {
            log_error("ring_corrupt", "ring=%s position=%llu len=%u", name, (unsigned long long)ring_tail(r, 0), len);
            ing->fatal = true;
            return;
        }
        struct msg_result m;
        memcpy(&m, payload, sizeof(m));
        ring_release(r);
        handle_result(ing, &m);
    }
}

static void drain_results(struct ingress *ing)
{
    drain_ring(ing, ing->seg->reject, "reject");
    drain_ring(ing, ing->seg->result, "result");
    rq_flush(ing);
    flush_notify(ing);
}

static void bell_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct ingress *ing = arg;
    ing->now_ms = mono_ms();
    doorbell_drain(ing->seg->bell_ingress);
    drain_results(ing);
}

/* ---- sweeps ------------------------------------------------------------------------------- */

/* Requests past their deadline, oldest first (deadlines ascend along the age list). */
static void sweep_requests(struct ingress *ing)
{
    u32 i = ing->t.age_head;
    while (i != ING_NIL) {
        struct ing_pending *p = &ing->t.pend[i];
        if (p->deadline_ms > ing->now_ms)
            break;
        u32 next = p->age_next;
        pending_fail(ing, p, PROTO_INDEFINITE_TIMEOUT, PROTO_ERR_TIMEOUT, "the read timed out");
        i = next;
    }
}

static void sweep_connections(struct ingress *ing)
{
    const struct config *cfg = ing->cfg;
    for (u32 i = 0; i < ing->conn_hwm; i++) {
        struct ing_conn *c = &ing->conns[i];
        if (c->state == CONN_CLOSING || c->state == CONN_LINGER) {
            if (ing->now_ms >= c->close_deadline_ms)
                conn_free(ing, c);
            continue;
        }
        if (c->state != CONN_OPEN || ing->phase != PHASE_RUNNING)
            continue;
        /* Slowloris: a started frame must complete in time (only while we are reading it). */
        u64 started = c->frame_start_ms;
        if (started != 0 && can_process(ing, c) && ing->now_ms - started >= cfg->header_timeout_ms) {
            send_error(ing, c, 0, PROTO_ERR_IDLE,
                       "a frame started %llu ms ago is still incomplete (header_timeout_ms %llu)",
                       (unsigned long long)(ing->now_ms - started), (unsigned long long)cfg->header_timeout_ms);
            continue;
        }
        if (c->inflight == 0 && !c->eof && ing->now_ms - c->last_active_ms >= cfg->idle_timeout_ms &&
            evbuffer_get_length(bufferevent_get_input(c->bev)) == 0 &&
            evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
            send_error(ing, c, 0, PROTO_ERR_IDLE, "idle for %llu ms (idle_timeout_ms %llu)",
                       (unsigned long long)(ing->now_ms - c->last_active_ms),
                       (unsigned long long)cfg->idle_timeout_ms);
    }
}

/* Output failures (out of memory) leave connections doomed; they are freed here, outside any
 * loop over their requests. */
static void reap_doomed(struct ingress *ing)
{
    for (u32 i = 0; i < ing->conn_hwm && ing->doomed > 0; i++)
        if (ing->conns[i].state != CONN_FREE && ing->conns[i].doomed)
            conn_free(ing, &ing->conns[i]);
}

/* A worker that restarted takes its in-flight work with it. Sequencer: every write still
 * waiting may or may not have been logged: indefinite worker_restarted now (results that come
 * later are dropped). Applier: reads in flight are lost: unavailable; writes keep waiting (the
 * new applier publishes results for the log it replays; the timeout covers the rest). */
static void check_workers(struct ingress *ing)
{
    struct worker_slot *ws = ing->seg->workers;
    u32 sg = atomic_load_explicit(&ws[ROLE_SEQUENCER].generation, memory_order_acquire);
    u32 ag = atomic_load_explicit(&ws[ROLE_APPLIER].generation, memory_order_acquire);
    if (sg != ing->seq_gen) {
        ing->seq_gen = sg;
        u32 answered = 0;
        for (u32 i = ing->t.age_head; i != ING_NIL;) {
            struct ing_pending *p = &ing->t.pend[i];
            u32 next = p->age_next;
            if (p->kind == PROTO_SUBMIT && p->resolved < p->count) {
                pending_fail(ing, p, PROTO_INDEFINITE_WORKER_RESTARTED, 0, NULL);
                answered++;
            }
            i = next;
        }
        log_info("sequencer_restarted", "generation=%u answered_indefinite=%u", sg, answered);
    }
    if (ag != ing->app_gen) {
        ing->app_gen = ag;
        u32 answered = 0;
        for (u32 i = ing->t.age_head; i != ING_NIL;) {
            struct ing_pending *p = &ing->t.pend[i];
            u32 next = p->age_next;
            if (p->kind != PROTO_SUBMIT) {
                pending_fail(ing, p, 0, PROTO_ERR_UNAVAILABLE, "the applier restarted; retry the read");
                answered++;
            }
            i = next;
        }
        log_info("applier_restarted", "generation=%u reads_failed=%u", ag, answered);
    }
}

/* ---- stop --------------------------------------------------------------------------------- */

static void begin_drain(struct ingress *ing, const char *reason)
{
    const struct config *cfg = ing->cfg;
    u64 budget = flush_budget_ms(cfg);
    ing->phase = PHASE_DRAINING;
    u64 wait_ms = cfg->shutdown_timeout_ms > budget ? cfg->shutdown_timeout_ms - budget : 0;
    ing->drain_deadline_ms = ing->now_ms + wait_ms;
    ing->close_by_ms = ing->drain_deadline_ms + budget;
    if (ing->accepting) {
        event_del(ing->ev_accept); /* the socket itself belongs to the supervisor */
        ing->accepting = false;
    }
    log_info("draining", "reason=%s inflight=%u connections=%u", reason, ing->t.pend_used, ing->conn_open);
    for (u32 i = 0; i < ing->conn_hwm; i++) {
        struct ing_conn *c = &ing->conns[i];
        if (c->state == CONN_FREE)
            continue;
        if (c->close_deadline_ms > ing->close_by_ms)
            c->close_deadline_ms = ing->close_by_ms;
        conn_update_reading(ing, c);
        conn_maybe_finish(ing, c); /* nothing in flight: close now */
    }
}

static void drain_progress(struct ingress *ing)
{
    if (ing->phase != PHASE_DRAINING || (ing->t.pend_used > 0 && ing->now_ms < ing->drain_deadline_ms))
        return;
    u32 answered = ing->t.pend_used;
    /* Writes still pending when storage failed are indefinite for that reason, not because of
     * the stop it caused: say storage_failure, which tells an operator where to look. */
    bool storage = atomic_load_explicit(&ing->seg->seq->halted, memory_order_relaxed) != 0;
    for (u32 i = ing->t.age_head; i != ING_NIL;) {
        struct ing_pending *p = &ing->t.pend[i];
        u32 next = p->age_next;
        pending_fail(ing, p, storage ? PROTO_INDEFINITE_STORAGE_FAILURE : PROTO_INDEFINITE_SHUTTING_DOWN,
                     PROTO_ERR_SHUTTING_DOWN, "the server is shutting down");
        i = next;
    }
    ing->phase = PHASE_FLUSHING;
    for (u32 i = 0; i < ing->conn_hwm; i++)
        if (ing->conns[i].state == CONN_OPEN)
            conn_finish(ing, &ing->conns[i]);
    log_info("drained", "answered_shutting_down=%u connections_closing=%u", answered, ing->conn_open);
}

static bool ing_done(const struct ingress *ing)
{
    return ing->phase == PHASE_FLUSHING && (ing->conn_open == 0 || ing->now_ms >= ing->close_by_ms);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct ingress *ing = arg;
    const struct worker_ctx *w = ing->w;
    ing->now_ms = mono_ms();
    worker_heartbeat(w);
    if (ing->phase == PHASE_RUNNING) {
        if (worker_should_stop(w))
            begin_drain(ing, "stop");
        else if (worker_draining(w))
            begin_drain(ing, "daemon_draining");
    }
    sweep_requests(ing);
    sweep_connections(ing);
    if (!ing->accepting && ing->phase == PHASE_RUNNING && ing->now_ms >= ing->accept_retry_ms) {
        if (event_add(ing->ev_accept, NULL) == 0)
            ing->accepting = true;
    }
}

/* After every loop iteration: answers in, workers watched, paused readers resumed. */
static void ing_service(struct ingress *ing)
{
    ing->now_ms = mono_ms();
    drain_results(ing);
    check_workers(ing);
    ing_maybe_resume(ing);
    drain_progress(ing);
    reap_doomed(ing);
    flush_notify(ing);
}

/* ---- setup and teardown ------------------------------------------------------------------- */

static void ing_teardown(struct ingress *ing)
{
    if (ing->conns != NULL) {
        for (u32 i = 0; i < ing->conn_hwm; i++)
            if (ing->conns[i].state != CONN_FREE)
                conn_free(ing, &ing->conns[i]);
    }
    /* event_free never closes the descriptors: the listening socket and the eventfd are the
     * supervisor's and outlive us. */
    if (ing->ev_accept != NULL)
        event_free(ing->ev_accept);
    if (ing->ev_bell != NULL)
        event_free(ing->ev_bell);
    if (ing->ev_tick != NULL)
        event_free(ing->ev_tick);
    if (ing->admin != NULL)
        evhttp_free(ing->admin);
    if (ing->base != NULL)
        event_base_free(ing->base);
    ing_table_free(&ing->t);
    free(ing->rq);
    free(ing->conns);
    free(ing->frame);
    ctr_set(&ing->seg->ing->connections, 0);
    ctr_set(&ing->seg->ing->inflight, 0);
}

static int ing_setup(struct ingress *ing, const struct worker_ctx *w)
{
    const struct config *cfg = w->cfg;
    ing->w = w;
    ing->cfg = cfg;
    ing->seg = w->seg;
    ing->hint_count = config_clients(cfg, ing->hints, CONFIG_REPLICAS_MAX);
    if (w->listen_fd < 0 || cfg->max_connections == 0 || cfg->max_inflight == 0 || cfg->max_batch == 0 ||
        cfg->max_batch > PROTO_BATCH_MAX || cfg->slot_duration_ms == 0) {
        log_error("ingress_config", "listen_fd=%d max_connections=%u max_inflight=%u max_batch=%u", w->listen_fd,
                  cfg->max_connections, cfg->max_inflight, cfg->max_batch);
        return WORKER_EXIT_CONFIG;
    }
    ing->max_body = PROTO_SUBMIT_PREFIX + cfg->max_batch * PROTO_COMMAND_SIZE;
    ADB_ASSERT(ing->max_body <= PROTO_BODY_MAX);
    u32 frame_max = PROTO_HEADER_SIZE + ing->max_body;
    ing->in_high = 2 * frame_max > ING_IN_MIN ? 2 * frame_max : ING_IN_MIN;
    ing->frame = malloc(frame_max);
    ing->conn_cap = cfg->max_connections;
    ing->conns = calloc(ing->conn_cap, sizeof(*ing->conns));
    u32 records = ing_record_capacity(cfg);
    ing->rq_cap = records;
    ing->rq = calloc(records, sizeof(*ing->rq));
    if (ing->frame == NULL || ing->conns == NULL || ing->rq == NULL ||
        !ing_table_init(&ing->t, cfg->max_inflight, records)) {
        log_error("ingress_setup_failed", "call=malloc connections=%u inflight=%u records=%u", ing->conn_cap,
                  cfg->max_inflight, records);
        return WORKER_EXIT_CRASH;
    }
    ing->pend_high = cfg->max_inflight - cfg->max_inflight / 8;
    ing->conn_free = ING_NIL;
    for (u32 i = ing->conn_cap; i-- > 0;) {
        struct ing_conn *c = &ing->conns[i];
        c->ing = ing;
        c->index = i;
        c->gen = 1;
        c->pend_head = ING_NIL;
        c->next_free = ing->conn_free;
        ing->conn_free = i;
    }
    ing->seq_gen = atomic_load_explicit(&ing->seg->workers[ROLE_SEQUENCER].generation, memory_order_acquire);
    ing->app_gen = atomic_load_explicit(&ing->seg->workers[ROLE_APPLIER].generation, memory_order_acquire);
    ing->now_ms = mono_ms();

    /* After fork, in this process: epoll descriptors do not survive fork. */
    ing->base = event_base_new();
    if (ing->base == NULL) {
        log_error("ingress_setup_failed", "call=event_base_new");
        return WORKER_EXIT_CRASH;
    }
    ing->ev_accept = event_new(ing->base, w->listen_fd, EV_READ | EV_PERSIST, accept_cb, ing);
    ing->ev_bell = event_new(ing->base, ing->seg->ingress_eventfd, EV_READ | EV_PERSIST, bell_cb, ing);
    ing->ev_tick = event_new(ing->base, -1, EV_PERSIST, tick_cb, ing);
    struct timeval tick = { .tv_sec = 0, .tv_usec = WORKER_HEARTBEAT_MS * 1000 };
    if (ing->ev_accept == NULL || ing->ev_bell == NULL || ing->ev_tick == NULL ||
        event_add(ing->ev_bell, NULL) != 0 || event_add(ing->ev_tick, &tick) != 0 ||
        event_add(ing->ev_accept, NULL) != 0) {
        log_error("ingress_setup_failed", "call=event_new/event_add");
        return WORKER_EXIT_CRASH;
    }
    ing->admin = admin_start(ing->base, w->admin_fd, ing->seg);
    if (w->admin_fd >= 0 && ing->admin == NULL)
        log_warn("admin_http_failed", "call=evhttp_accept_socket"); /* clients are still served */
    ing->accepting = true;
    return 0;
}

int ingress_main(const struct worker_ctx *w)
{
    if (!worker_enter(w)) /* title, parent-death signal, signal flags, log, segment stamp */
        return WORKER_EXIT_CRASH;
    struct ingress *ing = calloc(1, sizeof(*ing));
    if (ing == NULL) {
        log_error("ingress_setup_failed", "call=calloc");
        return WORKER_EXIT_CRASH;
    }
    ing->seg = w->seg;
    int rc = ing_setup(ing, w);
    if (rc != 0) {
        ing_teardown(ing);
        free(ing);
        return rc;
    }
    worker_set_ready(w);
    log_info("ready", "generation=%u max_connections=%u max_inflight=%u records=%u max_body=%u", w->generation,
             ing->conn_cap, ing->t.pend_cap, ing->t.rec_cap, ing->max_body);

    struct doorbell *bell = ing->seg->bell_ingress;
    bool may_block = false;
    for (;;) {
        if (event_base_loop(ing->base, may_block ? EVLOOP_ONCE : EVLOOP_ONCE | EVLOOP_NONBLOCK) < 0) {
            log_error("event_loop_failed", "call=event_base_loop");
            rc = WORKER_EXIT_CRASH;
            break;
        }
        ing_service(ing);
        if (ing->fatal) {
            rc = WORKER_EXIT_FATAL;
            break;
        }
        if (ing_done(ing)) {
            rc = WORKER_EXIT_OK;
            break;
        }
        /* Lost-wake-up protocol (doorbell.h): arm, then re-check every ring we consume. */
        doorbell_arm(bell);
        if (ring_has(ing->seg->result, 0) || ring_has(ing->seg->reject, 0)) {
            doorbell_disarm(bell);
            may_block = false;
        } else {
            may_block = true;
        }
    }
    doorbell_disarm(bell);
    log_info("stopped", "exit=%d connections_total=%llu requests=%llu", rc,
             (unsigned long long)atomic_load(&ing->seg->ing->connections_total),
             (unsigned long long)atomic_load(&ing->seg->ing->requests));
    ing_teardown(ing);
    free(ing);
    return rc;
}
