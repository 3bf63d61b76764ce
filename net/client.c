/*
 * net/client.c — liballocdb: connections, framing, pipelining, timeouts and retries.
 *
 * NOTES
 *   One non-blocking TCP socket (TCP_NODELAY, close-on-exec) per handle, driven with poll(2).
 *   Frames are encoded with net/proto.h straight into the output buffer; a flush is one send(2)
 *   when the socket has room. Input is read in large chunks into the input buffer and frames are
 *   decoded in place; a reply lent to the caller points into it until the next call, which is
 *   the earliest moment the buffer may be compacted.
 *
 *   Request ids carry their slot: rid = (sequence << SLOT_BITS) | slot. A reply finds its slot
 *   in O(1), and a stale or forged id (slot free, or the sequence differs) is a protocol error.
 *   Slots in flight sit on a list in send order, so the oldest (the first to time out) is the
 *   head. Closing a connection moves every slot in flight to the lost list; poll hands those
 *   out as LOST replies before anything else, so every request id gets exactly one reply.
 *
 *   Event loops drive the async API without waiting: allocdb_socket() and
 *   allocdb_wants_write() say what to watch, allocdb_flush(c, 0) writes what the socket takes,
 *   and allocdb_poll(c, 0) reads what it holds (next_reply reads once more, without waiting,
 *   before it gives up: with nothing in flight too, so a server closing an idle connection is
 *   noticed rather than leaving the socket readable forever).
 *
 *   Synchronous calls are built on the same machinery: they start with nothing in flight,
 *   send, and wait for their own replies, in rounds. A round that does not finish by its
 *   deadline closes the connection, which turns what is left into LOST (indefinite). Retries
 *   resend the same bytes (same operation id, client id and fields), so the server's dedupe
 *   answers the original result. An outcome once indefinite stays indefinite unless a later
 *   attempt returns a committed result: a rejection from another node after a lost attempt does
 *   not prove the lost attempt did nothing.
 */
#include "net/allocdb.h"

#include "common/assert.h"
#include "common/le.h"
#include "net/proto.h"
#include "vocab/vocab.h"

#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

ADB_STATIC_ASSERT(sizeof(allocdb_u128) == sizeof(u128), "allocdb_u128 is the core's u128");
/* The library's code enums repeat the protocol's values. */
ADB_STATIC_ASSERT((int)ALLOCDB_REJECT_NOT_PRIMARY == (int)PROTO_REJECT_NOT_PRIMARY, "reject codes");
ADB_STATIC_ASSERT((int)ALLOCDB_REJECT_NO_SPACE == (int)PROTO_REJECT_NO_SPACE, "reject codes");
ADB_STATIC_ASSERT((int)ALLOCDB_INDEFINITE_SHUTTING_DOWN == (int)PROTO_INDEFINITE_SHUTTING_DOWN,
                  "indefinite codes");
ADB_STATIC_ASSERT((int)ALLOCDB_SERVER_IDLE == (int)PROTO_ERR_IDLE, "server error codes");
ADB_STATIC_ASSERT((int)ALLOCDB_SERVER_HANDSHAKE == (int)PROTO_ERR_HANDSHAKE, "server error codes");
ADB_STATIC_ASSERT((int)ALLOCDB_REQ_STATUS == (int)PROTO_STATUS, "request kinds");

#define SLOT_BITS 20
#define SLOT_MASK ((1u << SLOT_BITS) - 1)
ADB_STATIC_ASSERT(ALLOCDB_WINDOW_MAX == (1u << SLOT_BITS), "window fits the slot bits");
#define NIL UINT32_MAX

#define FRAME_MAX ((size_t)PROTO_HEADER_SIZE + PROTO_BODY_MAX)
#define IO_INITIAL ((size_t)64 * 1024)
#define RX_LIMIT (FRAME_MAX + (size_t)64 * 1024) /* one largest frame plus read-ahead */
#define ADDRS_MAX 64
#define HOST_MAX 255
#define BACKOFF_MIN_MS 10
#define BACKOFF_MAX_MS 500
#define NO_DEADLINE UINT64_MAX

enum { SLOT_FREE = 0, SLOT_INFLIGHT = 1, SLOT_LOST = 2 };

struct slot {
    u64 rid;     /* 0 when free */
    u64 sent_ms; /* when queued: the request timeout counts from here */
    u32 prev, next;
    u32 count; /* submit: commands in the frame */
    u8 kind;   /* enum proto_kind of the request */
    u8 state;
    u8 lost_code;
};

struct slot_list {
    u32 head, tail, n;
};

struct addr {
    char host[HOST_MAX + 1];
    char port[6];
};

struct allocdb_client {
    /* settings */
    u32 connect_ms, request_ms, retry_ms;
    u128 cluster_id;
    u128 client_id;
    bool retry_overloaded;
    u32 window;
    struct addr *addrs;
    u32 naddrs;
    u32 next_addr; /* the address to try first on the next connect */
    struct addr hint;
    bool has_hint;
    bool moving; /* a not_primary came back: leave this connection once nothing is in flight on it */

    /* connection */
    int fd;
    struct allocdb_server_info info;
    bool server_said; /* err holds a connection-level error frame of this connection */

    /* request slots */
    struct slot *slots;
    u32 free_head;
    struct slot_list inflight, lost;
    u64 seq;

    /* buffers */
    u8 *tx;
    size_t tx_cap, tx_off, tx_len; /* [tx_off, tx_len) queued, not yet written */
    u8 *rx;
    size_t rx_cap, rx_pos, rx_len; /* [rx_pos, rx_len) received, not yet decoded */

    char err[512];
};

/* ---- small helpers --------------------------------------------------------------------------- */

static u64 now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (u64)ts.tv_sec * 1000u + (u64)ts.tv_nsec / 1000000u;
}

static u64 deadline_after(u64 ms)
{
    return ms == 0 ? NO_DEADLINE : now_ms() + ms;
}

static u64 min_u64(u64 a, u64 b)
{
    return a < b ? a : b;
}

/* Milliseconds until the deadline, as a poll(2) timeout. */
static int remaining_ms(u64 deadline)
{
    if (deadline == NO_DEADLINE)
        return -1;
    u64 now = now_ms();
    if (now >= deadline)
        return 0;
    u64 left = deadline - now;
    return left > INT_MAX ? INT_MAX : (int)left;
}

static void sleep_until(u64 deadline, u64 ms)
{
    u64 now = now_ms();
    if (deadline != NO_DEADLINE) {
        if (now >= deadline)
            return;
        ms = min_u64(ms, deadline - now);
    }
    struct timespec ts = { .tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

__attribute__((format(printf, 2, 3))) static void set_err(allocdb_client *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof c->err, fmt, ap);
    va_end(ap);
}

static void format_addr(const struct addr *a, char *buf, size_t cap)
{
    if (strchr(a->host, ':') != NULL)
        snprintf(buf, cap, "[%s]:%s", a->host, a->port);
    else
        snprintf(buf, cap, "%s:%s", a->host, a->port);
}

static int fill_random(void *buf, size_t len)
{
    u8 *p = buf;
    while (len > 0) {
        ssize_t n = getrandom(p, len, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return ALLOCDB_ERR_SYSTEM;
        }
        p += n;
        len -= (size_t)n;
    }
    return ALLOCDB_OK;
}

/* ---- ids and names --------------------------------------------------------------------------- */

char *allocdb_u128_format(allocdb_u128 v, char buf[ALLOCDB_U128_STRLEN])
{
    char tmp[ALLOCDB_U128_STRLEN];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + (int)(v % 10));
        v /= 10;
    } while (v != 0);
    for (size_t i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    buf[n] = '\0';
    return buf;
}

int allocdb_u128_parse(const char *s, allocdb_u128 *out)
{
    if (s == NULL || out == NULL || *s == '\0')
        return ALLOCDB_ERR_INVALID;
    u128 v = 0;
    const u128 max = ~(u128)0;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        s += 2;
        if (*s == '\0')
            return ALLOCDB_ERR_INVALID;
        for (; *s != '\0'; s++) {
            unsigned d;
            if (*s >= '0' && *s <= '9')
                d = (unsigned)(*s - '0');
            else if (*s >= 'a' && *s <= 'f')
                d = (unsigned)(*s - 'a' + 10);
            else if (*s >= 'A' && *s <= 'F')
                d = (unsigned)(*s - 'A' + 10);
            else
                return ALLOCDB_ERR_INVALID;
            if (v > (max >> 4))
                return ALLOCDB_ERR_INVALID;
            v = (v << 4) | d;
        }
    } else {
        for (; *s != '\0'; s++) {
            if (*s < '0' || *s > '9')
                return ALLOCDB_ERR_INVALID;
            unsigned d = (unsigned)(*s - '0');
            if (v > (max - d) / 10)
                return ALLOCDB_ERR_INVALID;
            v = v * 10 + d;
        }
    }
    *out = v;
    return ALLOCDB_OK;
}

int allocdb_operation_id_new(allocdb_u128 *out)
{
    if (out == NULL)
        return ALLOCDB_ERR_INVALID;
    u128 v = 0;
    while (v == 0) {
        u8 b[16];
        int rc = fill_random(b, sizeof b);
        if (rc != ALLOCDB_OK)
            return rc;
        v = le_get_u128(b);
    }
    *out = v;
    return ALLOCDB_OK;
}

/* Fills every zero operation id among cmds with one getrandom(2) call per 16 commands'
 * worth of 256 bytes (getrandom never returns short for <= 256 bytes). */
static int generate_op_ids(struct allocdb_command *cmds, size_t n)
{
    u8 pool[256];
    size_t avail = 0;
    for (size_t i = 0; i < n; i++) {
        while (cmds[i].operation_id == 0) {
            if (avail < 16) {
                int rc = fill_random(pool, sizeof pool);
                if (rc != ALLOCDB_OK)
                    return rc;
                avail = sizeof pool;
            }
            avail -= 16;
            cmds[i].operation_id = le_get_u128(pool + avail);
        }
    }
    explicit_bzero(pool, sizeof pool);
    return ALLOCDB_OK;
}

const char *allocdb_strerror(int err)
{
    switch (err) {
    case ALLOCDB_OK: return "ok";
    case ALLOCDB_ERR_INVALID: return "invalid argument";
    case ALLOCDB_ERR_UNREACHABLE: return "no server reachable";
    case ALLOCDB_ERR_TIMEOUT: return "timed out";
    case ALLOCDB_ERR_CONNECTION: return "connection failed";
    case ALLOCDB_ERR_PROTOCOL: return "protocol error";
    case ALLOCDB_ERR_SERVER: return "refused by the server";
    case ALLOCDB_ERR_WINDOW_FULL: return "request window full";
    case ALLOCDB_ERR_BUSY: return "asynchronous requests in flight";
    case ALLOCDB_ERR_NOMEM: return "out of memory";
    case ALLOCDB_ERR_SYSTEM: return "system call failed";
    }
    return "unknown error";
}

const char *allocdb_outcome_name(uint8_t outcome)
{
    switch (outcome) {
    case ALLOCDB_COMMITTED: return "committed";
    case ALLOCDB_REJECTED: return "rejected";
    case ALLOCDB_INDEFINITE: return "indefinite";
    }
    return "unknown";
}

/* Server codes are named by the codec and the state machine (the library compiles both); only
 * the outcomes the library itself produces are named here. */
const char *allocdb_result_name(uint8_t outcome, uint8_t code)
{
    switch (outcome) {
    case ALLOCDB_COMMITTED:
        return sm_result_name((enum sm_result)code);
    case ALLOCDB_REJECTED:
        return code == ALLOCDB_REJECT_REFUSED ? "refused" : proto_reject_name(code);
    case ALLOCDB_INDEFINITE:
        switch (code) {
        case ALLOCDB_INDEFINITE_CONNECTION_LOST: return "connection_lost";
        case ALLOCDB_INDEFINITE_CLIENT_TIMEOUT: return "client_timeout";
        case ALLOCDB_INDEFINITE_UNREACHABLE: return "unreachable";
        }
        return proto_indefinite_name(code);
    }
    return "unknown";
}

const char *allocdb_read_name(uint8_t read)
{
    return sm_read_name((enum sm_read)read);
}

const char *allocdb_resource_state_name(uint8_t state)
{
    return sm_resource_state_name((enum sm_resource_state)state);
}

const char *allocdb_reservation_state_name(uint8_t state)
{
    return sm_reservation_state_name((enum sm_reservation_state)state);
}

const char *allocdb_server_error_name(uint16_t code)
{
    return proto_error_name(code);
}

/* ---- addresses ------------------------------------------------------------------------------- */

/* Parses one "HOST:PORT" or "[V6]:PORT" of length len. */
static bool parse_addr(const char *s, size_t len, struct addr *out)
{
    const char *host;
    size_t hlen;
    const char *rest;
    if (len > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (close == NULL || close + 1 >= s + len || close[1] != ':')
            return false;
        host = s + 1;
        hlen = (size_t)(close - host);
        rest = close + 2;
    } else {
        const char *colon = NULL;
        for (size_t i = 0; i < len; i++)
            if (s[i] == ':')
                colon = s + i;
        if (colon == NULL)
            return false;
        host = s;
        hlen = (size_t)(colon - s);
        rest = colon + 1;
        if (memchr(host, ':', hlen) != NULL) /* bare IPv6 needs brackets */
            return false;
    }
    size_t plen = (size_t)(s + len - rest);
    if (hlen == 0 || hlen > HOST_MAX || plen == 0 || plen > 5)
        return false;
    unsigned port = 0;
    for (size_t i = 0; i < plen; i++) {
        if (rest[i] < '0' || rest[i] > '9')
            return false;
        port = port * 10 + (unsigned)(rest[i] - '0');
    }
    if (port == 0 || port > 65535)
        return false;
    for (size_t i = 0; i < hlen; i++)
        if (host[i] == '\0' || host[i] == ',' || host[i] == ' ' || host[i] == '[' ||
            host[i] == ']')
            return false;
    memcpy(out->host, host, hlen);
    out->host[hlen] = '\0';
    snprintf(out->port, sizeof out->port, "%u", port);
    return true;
}

int allocdb_set_addresses(allocdb_client *c, const char *addrs)
{
    if (c == NULL || addrs == NULL || *addrs == '\0') {
        if (c != NULL)
            set_err(c, "empty address list");
        return ALLOCDB_ERR_INVALID;
    }
    u32 n = 1;
    for (const char *p = addrs; *p != '\0'; p++)
        n += *p == ',';
    if (n > ADDRS_MAX) {
        set_err(c, "more than %d addresses", ADDRS_MAX);
        return ALLOCDB_ERR_INVALID;
    }
    struct addr *list = calloc(n, sizeof *list);
    if (list == NULL)
        return ALLOCDB_ERR_NOMEM;
    const char *p = addrs;
    for (u32 i = 0; i < n; i++) {
        const char *end = strchr(p, ',');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        if (!parse_addr(p, len, &list[i])) {
            set_err(c, "bad address '%.*s' (want HOST:PORT, [IPV6]:PORT)", (int)len, p);
            free(list);
            return ALLOCDB_ERR_INVALID;
        }
        p = end != NULL ? end + 1 : p + len;
    }
    free(c->addrs);
    c->addrs = list;
    c->naddrs = n;
    c->next_addr = 0;
    return ALLOCDB_OK;
}

/* ---- handle ---------------------------------------------------------------------------------- */

static int slots_init(allocdb_client *c, u32 window)
{
    struct slot *s = calloc(window, sizeof *s);
    if (s == NULL)
        return ALLOCDB_ERR_NOMEM;
    for (u32 i = 0; i < window; i++)
        s[i].next = i + 1 < window ? i + 1 : NIL;
    free(c->slots);
    c->slots = s;
    c->window = window;
    c->free_head = 0;
    c->inflight = (struct slot_list){ NIL, NIL, 0 };
    c->lost = (struct slot_list){ NIL, NIL, 0 };
    return ALLOCDB_OK;
}

allocdb_client *allocdb_new(void)
{
    allocdb_client *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->fd = -1;
    c->connect_ms = ALLOCDB_DEFAULT_CONNECT_TIMEOUT_MS;
    c->request_ms = ALLOCDB_DEFAULT_REQUEST_TIMEOUT_MS;
    c->retry_ms = ALLOCDB_DEFAULT_RETRY_TIMEOUT_MS;
    if (slots_init(c, ALLOCDB_DEFAULT_WINDOW) != ALLOCDB_OK) {
        free(c);
        return NULL;
    }
    return c;
}

static void conn_close(allocdb_client *c, u8 lost_code);

void allocdb_free(allocdb_client *c)
{
    if (c == NULL)
        return;
    if (c->fd >= 0)
        close(c->fd);
    free(c->slots);
    free(c->addrs);
    free(c->tx);
    free(c->rx);
    free(c);
}

int allocdb_set_timeouts(allocdb_client *c, uint32_t connect_ms, uint32_t request_ms,
                         uint32_t retry_ms)
{
    if (c == NULL || connect_ms == 0)
        return ALLOCDB_ERR_INVALID;
    c->connect_ms = connect_ms;
    c->request_ms = request_ms;
    c->retry_ms = retry_ms;
    return ALLOCDB_OK;
}

int allocdb_set_cluster_id(allocdb_client *c, allocdb_u128 cluster_id)
{
    if (c == NULL)
        return ALLOCDB_ERR_INVALID;
    c->cluster_id = cluster_id;
    return ALLOCDB_OK;
}

int allocdb_set_client_id(allocdb_client *c, allocdb_u128 client_id)
{
    if (c == NULL)
        return ALLOCDB_ERR_INVALID;
    c->client_id = client_id;
    return ALLOCDB_OK;
}

int allocdb_set_retry_overloaded(allocdb_client *c, bool on)
{
    if (c == NULL)
        return ALLOCDB_ERR_INVALID;
    c->retry_overloaded = on;
    return ALLOCDB_OK;
}

int allocdb_set_window(allocdb_client *c, uint32_t window)
{
    if (c == NULL || window == 0 || window > ALLOCDB_WINDOW_MAX)
        return ALLOCDB_ERR_INVALID;
    if (c->inflight.n + c->lost.n != 0)
        return ALLOCDB_ERR_BUSY;
    return slots_init(c, window);
}

const char *allocdb_last_error(const allocdb_client *c)
{
    return c == NULL ? "" : c->err;
}

bool allocdb_is_connected(const allocdb_client *c)
{
    return c != NULL && c->fd >= 0;
}

int allocdb_server_info(const allocdb_client *c, struct allocdb_server_info *out)
{
    if (c == NULL || out == NULL)
        return ALLOCDB_ERR_INVALID;
    if (c->fd < 0)
        return ALLOCDB_ERR_CONNECTION;
    *out = c->info;
    return ALLOCDB_OK;
}

uint32_t allocdb_in_flight(const allocdb_client *c)
{
    return c == NULL ? 0 : c->inflight.n + c->lost.n;
}

int allocdb_socket(const allocdb_client *c)
{
    return c == NULL ? -1 : c->fd;
}

bool allocdb_wants_write(const allocdb_client *c)
{
    return c != NULL && c->fd >= 0 && c->tx_len > c->tx_off;
}

/* ---- slots ----------------------------------------------------------------------------------- */

static void list_push(struct slot *slots, struct slot_list *l, u32 i)
{
    slots[i].prev = l->tail;
    slots[i].next = NIL;
    if (l->tail != NIL)
        slots[l->tail].next = i;
    else
        l->head = i;
    l->tail = i;
    l->n++;
}

static void list_remove(struct slot *slots, struct slot_list *l, u32 i)
{
    struct slot *s = &slots[i];
    if (s->prev != NIL)
        slots[s->prev].next = s->next;
    else
        l->head = s->next;
    if (s->next != NIL)
        slots[s->next].prev = s->prev;
    else
        l->tail = s->prev;
    l->n--;
}

static u32 slot_take(allocdb_client *c, u8 kind, u32 count)
{
    u32 i = c->free_head;
    if (i == NIL)
        return NIL;
    struct slot *s = &c->slots[i];
    c->free_head = s->next;
    c->seq++;
    s->rid = (c->seq << SLOT_BITS) | i;
    s->sent_ms = now_ms();
    s->count = count;
    s->kind = kind;
    s->state = SLOT_INFLIGHT;
    s->lost_code = 0;
    list_push(c->slots, &c->inflight, i);
    return i;
}

static void slot_give_back(allocdb_client *c, u32 i)
{
    struct slot *s = &c->slots[i];
    list_remove(c->slots, s->state == SLOT_LOST ? &c->lost : &c->inflight, i);
    s->rid = 0;
    s->state = SLOT_FREE;
    s->next = c->free_head;
    c->free_head = i;
}

/* ---- connection ------------------------------------------------------------------------------ */

/* Closes the socket; every request in flight becomes lost with lost_code. */
static void conn_close(allocdb_client *c, u8 lost_code)
{
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    while (c->inflight.head != NIL) {
        u32 i = c->inflight.head;
        list_remove(c->slots, &c->inflight, i);
        c->slots[i].state = SLOT_LOST;
        c->slots[i].lost_code = lost_code;
        list_push(c->slots, &c->lost, i);
    }
    c->tx_off = c->tx_len = 0;
    c->rx_pos = c->rx_len = 0;
}

void allocdb_disconnect(allocdb_client *c)
{
    if (c != NULL)
        conn_close(c, ALLOCDB_INDEFINITE_CONNECTION_LOST);
}

static int buf_grow(u8 **buf, size_t *cap, size_t need)
{
    if (*cap >= need)
        return ALLOCDB_OK;
    size_t n = *cap == 0 ? IO_INITIAL : *cap;
    while (n < need)
        n *= 2;
    u8 *p = realloc(*buf, n);
    if (p == NULL)
        return ALLOCDB_ERR_NOMEM;
    *buf = p;
    *cap = n;
    return ALLOCDB_OK;
}

/* Reads what the socket has into rx. Returns bytes read (> 0), 0 if nothing was available,
 * -1 at end of stream or on an error, RX_NO_ROOM if rx is full of undecoded frames (at its
 * limit, or the buffer could not grow). */
#define RX_NO_ROOM (-2)
static ssize_t rx_fill(allocdb_client *c)
{
    if (c->rx_pos == c->rx_len) {
        c->rx_pos = c->rx_len = 0;
    } else if (c->rx_pos > 0 && c->rx_cap - c->rx_len < IO_INITIAL / 4) {
        memmove(c->rx, c->rx + c->rx_pos, c->rx_len - c->rx_pos);
        c->rx_len -= c->rx_pos;
        c->rx_pos = 0;
    }
    /* Room for the whole frame that has started, so it can be decoded in place. */
    size_t need = c->rx_len + IO_INITIAL / 4;
    size_t have = c->rx_len - c->rx_pos;
    if (have >= PROTO_HEADER_SIZE) {
        u32 body_len = le_get_u32(c->rx + c->rx_pos + 16);
        if (body_len <= PROTO_BODY_MAX) {
            size_t frame = PROTO_HEADER_SIZE + (size_t)body_len;
            if (c->rx_pos + frame > need)
                need = c->rx_pos + frame;
        }
    }
    if (need > c->rx_cap) {
        if (c->rx_pos > 0) {
            memmove(c->rx, c->rx + c->rx_pos, c->rx_len - c->rx_pos);
            need -= c->rx_pos;
            c->rx_len -= c->rx_pos;
            c->rx_pos = 0;
        }
        if (need > c->rx_cap && need <= RX_LIMIT &&
            buf_grow(&c->rx, &c->rx_cap, need) != ALLOCDB_OK)
            return RX_NO_ROOM;
    }
    if (c->rx_cap == c->rx_len)
        return RX_NO_ROOM;
    for (;;) {
        ssize_t n = recv(c->fd, c->rx + c->rx_len, c->rx_cap - c->rx_len, MSG_DONTWAIT);
        if (n > 0) {
            c->rx_len += (size_t)n;
            return n;
        }
        if (n == 0) {
            if (!c->server_said) /* else err keeps the reason the server gave first */
                set_err(c, "%s: connection closed by the server", c->info.address);
            return -1;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        set_err(c, "%s: receive: %s", c->info.address, strerror(errno));
        return -1;
    }
}

/* Writes queued output without blocking. Returns 0 (maybe more left), -1 on a socket error. */
static int tx_write(allocdb_client *c)
{
    while (c->tx_off < c->tx_len) {
        ssize_t n = send(c->fd, c->tx + c->tx_off, c->tx_len - c->tx_off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            c->tx_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        set_err(c, "%s: send: %s", c->info.address, strerror(errno));
        return -1;
    }
    c->tx_off = c->tx_len = 0;
    return 0;
}

/*
 * Writes everything queued by the deadline, reading input meanwhile so neither side can block
 * the other. ALLOCDB_ERR_CONNECTION (the connection is closed, requests lost) or
 * ALLOCDB_ERR_TIMEOUT (data still queued; the connection stays).
 */
static int flush_until(allocdb_client *c, u64 deadline)
{
    if (c->fd < 0)
        return c->tx_len > c->tx_off ? ALLOCDB_ERR_CONNECTION : ALLOCDB_OK;
    bool can_read = true;
    for (;;) {
        if (tx_write(c) != 0) {
            conn_close(c, ALLOCDB_INDEFINITE_CONNECTION_LOST);
            return ALLOCDB_ERR_CONNECTION;
        }
        if (c->tx_off == c->tx_len)
            return ALLOCDB_OK;
        int wait = remaining_ms(deadline);
        if (wait == 0)
            return ALLOCDB_ERR_TIMEOUT;
        struct pollfd p = { .fd = c->fd, .events = POLLOUT };
        if (can_read)
            p.events |= POLLIN;
        int r = poll(&p, 1, wait);
        if (r < 0 && errno != EINTR) {
            set_err(c, "poll: %s", strerror(errno));
            return ALLOCDB_ERR_SYSTEM;
        }
        if (r > 0 && (p.revents & (POLLIN | POLLHUP | POLLERR)) != 0 && can_read) {
            ssize_t n = rx_fill(c);
            if (n == RX_NO_ROOM) {
                can_read = false; /* replies wait in the buffer until polled */
            } else if (n < 0) {
                conn_close(c, ALLOCDB_INDEFINITE_CONNECTION_LOST);
                return ALLOCDB_ERR_CONNECTION;
            }
        }
    }
}

/* Room for a frame of `len` bytes at the end of the output buffer (flushing first if needed). */
static u8 *tx_reserve(allocdb_client *c, size_t len, u64 deadline, int *rc)
{
    *rc = ALLOCDB_OK;
    if (c->tx_len + len > c->tx_cap && c->tx_len > c->tx_off) {
        *rc = flush_until(c, deadline);
        if (*rc != ALLOCDB_OK)
            return NULL;
    }
    if (c->tx_off == c->tx_len)
        c->tx_off = c->tx_len = 0;
    if (c->tx_len + len > c->tx_cap) {
        *rc = buf_grow(&c->tx, &c->tx_cap, c->tx_len + len);
        if (*rc != ALLOCDB_OK)
            return NULL;
    }
    return c->tx + c->tx_len;
}

/* The next whole, checked frame in rx: 1 (hdr, body set, rx_pos advanced), 0 need more, or
 * -1 malformed (c->err says why). */
static int rx_frame(allocdb_client *c, struct proto_header *hdr, const u8 **body)
{
    size_t have = c->rx_len - c->rx_pos;
    if (have < PROTO_HEADER_SIZE)
        return 0;
    const u8 *f = c->rx + c->rx_pos;
    enum proto_status st = proto_header_decode(f, have, PROTO_BODY_MAX, hdr);
    if (st != PROTO_OK) {
        set_err(c, "%s: bad frame header from the server: %s", c->info.address,
                proto_status_name(st));
        return -1;
    }
    size_t len = PROTO_HEADER_SIZE + (size_t)hdr->body_len;
    if (have < len)
        return 0;
    st = proto_frame_check(f, len);
    if (st != PROTO_OK) {
        set_err(c, "%s: bad frame from the server: %s", c->info.address, proto_status_name(st));
        return -1;
    }
    *body = f + PROTO_HEADER_SIZE;
    c->rx_pos += len;
    return 1;
}

static int write_all_blocking(allocdb_client *c, u64 deadline)
{
    int rc = flush_until(c, deadline);
    return rc == ALLOCDB_ERR_TIMEOUT ? ALLOCDB_ERR_CONNECTION : rc;
}

/* Opens a TCP connection to a by the deadline. */
static int tcp_open(allocdb_client *c, const struct addr *a, u64 deadline)
{
    char name[HOST_MAX + 16];
    format_addr(a, name, sizeof name);
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_NUMERICSERV };
    struct addrinfo *res = NULL;
    int g = getaddrinfo(a->host, a->port, &hints, &res);
    if (g != 0) {
        set_err(c, "%s: %s", name, gai_strerror(g));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            set_err(c, "%s: socket: %s", name, strerror(errno));
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        int r = connect(fd, ai->ai_addr, ai->ai_addrlen);
        if (r != 0 && errno == EINPROGRESS) {
            struct pollfd p = { .fd = fd, .events = POLLOUT };
            for (;;) {
                r = poll(&p, 1, remaining_ms(deadline));
                if (r < 0 && errno == EINTR)
                    continue;
                break;
            }
            if (r == 0) {
                set_err(c, "%s: connect: timed out", name);
                r = -1;
            } else if (r > 0) {
                int soerr = 0;
                socklen_t sl = sizeof soerr;
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
                if (soerr != 0) {
                    set_err(c, "%s: connect: %s", name, strerror(soerr));
                    r = -1;
                } else {
                    r = 0;
                }
            } else {
                set_err(c, "%s: poll: %s", name, strerror(errno));
            }
        } else if (r != 0) {
            set_err(c, "%s: connect: %s", name, strerror(errno));
        }
        if (r == 0)
            break;
        close(fd);
        fd = -1;
        if (remaining_ms(deadline) == 0)
            break;
    }
    freeaddrinfo(res);
    return fd;
}

/*
 * Connects to one address and completes the hello by the deadline. ALLOCDB_ERR_UNREACHABLE when
 * no answer came (no connection, closed or silent until the deadline), ALLOCDB_ERR_SERVER when
 * the server refused the hello with an error frame, ALLOCDB_ERR_PROTOCOL when it answered with
 * anything but a valid hello_ok.
 */
static int connect_one(allocdb_client *c, const struct addr *a, u64 deadline)
{
    ADB_ASSERT(c->fd < 0 && c->inflight.n == 0);
    int fd = tcp_open(c, a, deadline);
    if (fd < 0)
        return ALLOCDB_ERR_UNREACHABLE;
    c->fd = fd;
    c->moving = false;
    c->server_said = false;
    format_addr(a, c->info.address, sizeof c->info.address);
    c->tx_off = c->tx_len = c->rx_pos = c->rx_len = 0;
    int rc;
    int why = ALLOCDB_ERR_UNREACHABLE;
    u8 *p = tx_reserve(c, PROTO_HEADER_SIZE + 24, deadline, &rc);
    if (p == NULL)
        goto fail;
    struct proto_hello hello = { .version = PROTO_VERSION, .cluster_id = c->cluster_id };
    u32 blen = proto_put_hello(p + PROTO_HEADER_SIZE, &hello);
    c->tx_len += proto_frame_finish(p, PROTO_HEADER_SIZE + blen, PROTO_HELLO, 0, blen);
    rc = write_all_blocking(c, deadline);
    if (rc != ALLOCDB_OK)
        goto fail;
    struct proto_header hdr;
    const u8 *body = NULL;
    for (;;) {
        int f = rx_frame(c, &hdr, &body);
        if (f < 0) {
            why = ALLOCDB_ERR_PROTOCOL;
            goto fail;
        }
        if (f > 0)
            break;
        struct pollfd pf = { .fd = c->fd, .events = POLLIN };
        int w = remaining_ms(deadline);
        if (w == 0) {
            set_err(c, "%s: no hello answer in time", c->info.address);
            goto fail;
        }
        int r = poll(&pf, 1, w);
        if (r < 0 && errno != EINTR)
            goto fail;
        if (r > 0 && rx_fill(c) < 0) {
            set_err(c, "%s: connection closed during the hello", c->info.address);
            goto fail;
        }
    }
    if (hdr.kind == PROTO_ERROR) {
        struct proto_error e;
        if (proto_get_error(body, hdr.body_len, &e) == PROTO_OK) {
            set_err(c, "%s: hello refused: %s: %.*s", c->info.address,
                    proto_error_name(e.code), (int)(e.message_len > 200 ? 200 : e.message_len),
                    e.message);
            /* A server that is full, stopping or busy may take us later (or another may):
             * unreachable for now, as callers retrying a connect expect. The rest is final. */
            bool for_now = e.code == PROTO_ERR_TOO_MANY_CONNECTIONS || e.code == PROTO_ERR_SHUTTING_DOWN ||
                           e.code == PROTO_ERR_UNAVAILABLE || e.code == PROTO_ERR_OVERLOADED ||
                           e.code == PROTO_ERR_TIMEOUT || e.code == PROTO_ERR_IDLE;
            why = for_now ? ALLOCDB_ERR_UNREACHABLE : ALLOCDB_ERR_SERVER;
        } else {
            set_err(c, "%s: hello refused (malformed error)", c->info.address);
            why = ALLOCDB_ERR_PROTOCOL;
        }
        goto fail;
    }
    struct proto_hello_ok ok;
    if (hdr.kind != PROTO_HELLO_OK || hdr.request_id != 0 ||
        proto_get_hello_ok(body, hdr.body_len, &ok) != PROTO_OK || ok.version != PROTO_VERSION ||
        ok.max_batch == 0 || ok.max_body < PROTO_SUBMIT_PREFIX + PROTO_COMMAND_SIZE ||
        ok.slot_duration_ms == 0) {
        set_err(c, "%s: bad hello answer (%s)", c->info.address, proto_kind_name(hdr.kind));
        why = ALLOCDB_ERR_PROTOCOL;
        goto fail;
    }
    if (c->cluster_id != 0 && ok.cluster_id != c->cluster_id) {
        set_err(c, "%s: the server is in another cluster", c->info.address);
        why = ALLOCDB_ERR_PROTOCOL; /* it should have refused the hello (wrong_cluster) */
        goto fail;
    }
    c->cluster_id = ok.cluster_id; /* pinned: reconnects stay in this cluster */
    c->info.cluster_id = ok.cluster_id;
    c->info.replica_id = ok.replica_id;
    c->info.view = ok.view;
    c->info.slot_duration_ms = ok.slot_duration_ms;
    c->info.max_batch = ok.max_batch > PROTO_BATCH_MAX ? PROTO_BATCH_MAX : ok.max_batch;
    c->info.max_body = ok.max_body > PROTO_BODY_MAX ? PROTO_BODY_MAX : ok.max_body;
    if (c->rx_pos != c->rx_len) {
        set_err(c, "%s: data after the hello answer", c->info.address);
        why = ALLOCDB_ERR_PROTOCOL;
        goto fail;
    }
    return ALLOCDB_OK;
fail:
    conn_close(c, ALLOCDB_INDEFINITE_CONNECTION_LOST);
    return why;
}

/*
 * Connects unless connected: the last not_primary hint first, then each address once, starting
 * with the last one that worked. Each try gets the connect timeout, cut by the deadline. On
 * failure, what the last try returned (connect_one), which err describes.
 */
static int ensure_connected(allocdb_client *c, u64 deadline)
{
    if (c->fd >= 0)
        return ALLOCDB_OK;
    if (c->naddrs == 0 && !c->has_hint) {
        set_err(c, "no server address set");
        return ALLOCDB_ERR_INVALID;
    }
    int rc = ALLOCDB_ERR_UNREACHABLE;
    if (c->has_hint) {
        struct addr h = c->hint;
        c->has_hint = false;
        rc = connect_one(c, &h, min_u64(deadline, now_ms() + c->connect_ms));
        if (rc == ALLOCDB_OK)
            return ALLOCDB_OK;
    }
    for (u32 k = 0; k < c->naddrs; k++) {
        if (k > 0 && remaining_ms(deadline) == 0)
            break;
        u32 i = (c->next_addr + k) % c->naddrs;
        rc = connect_one(c, &c->addrs[i], min_u64(deadline, now_ms() + c->connect_ms));
        if (rc == ALLOCDB_OK) {
            c->next_addr = i;
            return ALLOCDB_OK;
        }
    }
    return rc;
}

int allocdb_connect(allocdb_client *c, const char *addrs)
{
    if (c == NULL)
        return ALLOCDB_ERR_INVALID;
    if (addrs != NULL) {
        int rc = allocdb_set_addresses(c, addrs);
        if (rc != ALLOCDB_OK)
            return rc;
    }
    if (c->fd >= 0) {
        if (c->inflight.n != 0)
            return ALLOCDB_ERR_BUSY;
        conn_close(c, ALLOCDB_INDEFINITE_CONNECTION_LOST);
    }
    return ensure_connected(c, NO_DEADLINE);
}

/* A not_primary redirect: the next connect goes to the hint (if it parses), or else to the
 * next address of the list. */
static void redirect(allocdb_client *c, const char *hint)
{
    c->moving = true;
    size_t len = hint != NULL ? strlen(hint) : 0;
    if (len > 0 && parse_addr(hint, len, &c->hint)) {
        c->has_hint = true;
    } else {
        c->has_hint = false;
        if (c->naddrs > 0)
            c->next_addr = (c->next_addr + 1) % c->naddrs;
    }
}

/* ---- requests -------------------------------------------------------------------------------- */

/* Queues one request frame with a body of body_len bytes written by the caller into *body.
 * Returns the slot, or NIL with *rc set. */
static u32 queue_request(allocdb_client *c, u8 kind, u32 count, u32 body_len, u8 **body, int *rc)
{
    if (c->fd < 0) {
        *rc = ALLOCDB_ERR_CONNECTION;
        return NIL;
    }
    if (c->free_head == NIL) {
        *rc = ALLOCDB_ERR_WINDOW_FULL;
        set_err(c, "%u requests in flight: the window is full", c->window);
        return NIL;
    }
    u8 *p = tx_reserve(c, PROTO_HEADER_SIZE + (size_t)body_len, deadline_after(c->request_ms), rc);
    if (p == NULL)
        return NIL;
    u32 i = slot_take(c, kind, count);
    *body = p + PROTO_HEADER_SIZE;
    return i;
}

static void finish_request(allocdb_client *c, u32 slot, u32 body_len)
{
    u8 *p = c->tx + c->tx_len;
    c->tx_len += proto_frame_finish(p, PROTO_HEADER_SIZE + (size_t)body_len, c->slots[slot].kind,
                                    c->slots[slot].rid, body_len);
}

/* Most commands per submit frame on this connection. */
static u32 batch_limit(const allocdb_client *c)
{
    u32 by_body = (c->info.max_body - PROTO_SUBMIT_PREFIX) / PROTO_COMMAND_SIZE;
    u32 n = c->info.max_batch < by_body ? c->info.max_batch : by_body;
    return n > PROTO_BATCH_MAX ? PROTO_BATCH_MAX : n;
}

static int check_command(allocdb_client *c, const struct allocdb_command *cmd)
{
    if (cmd->kind < ALLOCDB_CREATE_RESOURCE || cmd->kind > ALLOCDB_RELEASE) {
        set_err(c, "unknown command kind %u", cmd->kind);
        return ALLOCDB_ERR_INVALID;
    }
    return ALLOCDB_OK;
}

static void put_command(allocdb_client *c, u8 *p, const struct allocdb_command *cmd)
{
    struct proto_command pc = {
        .kind = cmd->kind,
        .operation_id = cmd->operation_id,
        .client_id = c->client_id,
        .target = cmd->target,
        .holder_id = cmd->holder_id,
        .ttl_ms = cmd->ttl_ms,
    };
    proto_put_command(p, &pc);
}

/* Queues a submit of cmds[idx[0..n)] (or cmds[0..n) if idx is NULL). */
static u32 queue_submit(allocdb_client *c, const struct allocdb_command *cmds, const u32 *idx,
                        u32 n, int *rc)
{
    u32 body_len = PROTO_SUBMIT_PREFIX + n * PROTO_COMMAND_SIZE;
    u8 *body;
    u32 s = queue_request(c, PROTO_SUBMIT, n, body_len, &body, rc);
    if (s == NIL)
        return NIL;
    proto_put_submit_prefix(body, n);
    for (u32 j = 0; j < n; j++)
        put_command(c, body + PROTO_SUBMIT_PREFIX + (size_t)j * PROTO_COMMAND_SIZE,
                    &cmds[idx != NULL ? idx[j] : j]);
    finish_request(c, s, body_len);
    return s;
}

static u32 queue_read(allocdb_client *c, u8 kind, u128 id, u64 min_lsn, int *rc)
{
    u8 *body;
    u32 s = queue_request(c, kind, 0, 24, &body, rc);
    if (s == NIL)
        return NIL;
    struct proto_read r = { .id = id, .min_lsn = min_lsn };
    u32 len = proto_put_read(body, &r);
    finish_request(c, s, len);
    return s;
}

static u32 queue_empty(allocdb_client *c, u8 kind, int *rc)
{
    u8 *body;
    u32 s = queue_request(c, kind, 0, 0, &body, rc);
    if (s == NIL)
        return NIL;
    finish_request(c, s, 0);
    return s;
}

/* ---- replies --------------------------------------------------------------------------------- */

static void lost_reply(allocdb_client *c, struct allocdb_reply *out)
{
    u32 i = c->lost.head;
    struct slot *s = &c->slots[i];
    memset(out, 0, sizeof *out);
    out->request_id = s->rid;
    out->kind = ALLOCDB_REPLY_LOST;
    out->request_kind = s->kind;
    out->count = s->count;
    out->u.lost_code = s->lost_code;
    slot_give_back(c, i);
}

static void copy_resource(struct allocdb_resource *o, const struct proto_resource *r)
{
    o->read = r->read;
    o->state = r->state;
    o->applied_lsn = r->applied_lsn;
    o->resource_id = r->resource_id;
    o->current_reservation_id = r->current_reservation_id;
    o->version = r->version;
}

static void copy_reservation(struct allocdb_reservation *o, const struct proto_reservation *r)
{
    o->read = r->read;
    o->state = r->state;
    o->applied_lsn = r->applied_lsn;
    o->reservation_id = r->reservation_id;
    o->resource_id = r->resource_id;
    o->holder_id = r->holder_id;
    o->created_lsn = r->created_lsn;
    o->deadline_slot = r->deadline_slot;
    o->released_lsn = r->released_lsn;
    o->retire_after_slot = r->retire_after_slot;
}

/*
 * Turns one received frame into a reply. 1: *out is a reply (its slot is freed); 0: the frame
 * was not a reply (a connection-level error, recorded in err); -1: protocol violation.
 */
static int frame_reply(allocdb_client *c, const struct proto_header *h, const u8 *body,
                       struct allocdb_reply *out)
{
    u32 i = (u32)(h->request_id & SLOT_MASK);
    if (i >= c->window || c->slots[i].state != SLOT_INFLIGHT || c->slots[i].rid != h->request_id) {
        struct proto_error e;
        if (h->kind == PROTO_ERROR && proto_get_error(body, h->body_len, &e) == PROTO_OK) {
            set_err(c, "%s: server error: %s: %.*s", c->info.address, proto_error_name(e.code),
                    (int)(e.message_len > 200 ? 200 : e.message_len), e.message);
            c->server_said = true;
            return 0;
        }
        set_err(c, "%s: reply %s for unknown request id %llu", c->info.address,
                proto_kind_name(h->kind), (unsigned long long)h->request_id);
        return -1;
    }
    struct slot *s = &c->slots[i];
    memset(out, 0, sizeof *out);
    out->request_id = s->rid;
    out->request_kind = s->kind;
    out->count = s->count;
    bool ok = false;
    switch (h->kind) {
    case PROTO_NOT_PRIMARY: {
        struct proto_not_primary np;
        if (proto_get_not_primary(body, h->body_len, &np) == PROTO_OK) {
            out->kind = ALLOCDB_REPLY_NOT_PRIMARY;
            out->u.not_primary.view = np.view;
            ADB_STATIC_ASSERT(sizeof out->u.not_primary.hint == sizeof np.hint, "hint size");
            memcpy(out->u.not_primary.hint, np.hint, sizeof np.hint);
            redirect(c, np.hint);
            ok = true;
        }
        break;
    }
    case PROTO_ERROR: {
        struct proto_error e;
        if (proto_get_error(body, h->body_len, &e) == PROTO_OK) {
            out->kind = ALLOCDB_REPLY_ERROR;
            out->u.error.code = e.code;
            out->u.error.message = e.message;
            out->u.error.message_len = e.message_len;
            set_err(c, "%s: %s refused: %s: %.*s", c->info.address, proto_kind_name(s->kind),
                    proto_error_name(e.code), (int)(e.message_len > 200 ? 200 : e.message_len),
                    e.message);
            ok = true;
        }
        break;
    }
    case PROTO_SUBMIT_RESULT: {
        u32 count;
        if (s->kind != PROTO_SUBMIT ||
            proto_get_submit_result(body, h->body_len, &count) != PROTO_OK || count != s->count)
            break;
        const u8 *r = body + PROTO_SUBMIT_PREFIX;
        ok = true;
        bool not_primary = false;
        for (u32 j = 0; j < count && ok; j++) {
            struct proto_result pr;
            ok = proto_get_result(r + (size_t)j * PROTO_RESULT_SIZE, &pr) == PROTO_OK;
            not_primary |= ok && pr.outcome == PROTO_REJECTED && pr.code == PROTO_REJECT_NOT_PRIMARY;
        }
        if (not_primary)
            c->moving = true; /* this server stopped serving: the next connection tries another */
        out->kind = ALLOCDB_REPLY_SUBMIT;
        out->priv_results = r;
        break;
    }
    case PROTO_RESOURCE: {
        struct proto_resource pr;
        if (s->kind == PROTO_GET_RESOURCE &&
            proto_get_resource(body, h->body_len, &pr) == PROTO_OK) {
            out->kind = ALLOCDB_REPLY_RESOURCE;
            copy_resource(&out->u.resource, &pr);
            ok = true;
        }
        break;
    }
    case PROTO_RESERVATION: {
        struct proto_reservation pr;
        if (s->kind == PROTO_GET_RESERVATION &&
            proto_get_reservation(body, h->body_len, &pr) == PROTO_OK) {
            out->kind = ALLOCDB_REPLY_RESERVATION;
            copy_reservation(&out->u.reservation, &pr);
            ok = true;
        }
        break;
    }
    case PROTO_TICK_OK: {
        struct proto_tick_ok t;
        if (s->kind == PROTO_TICK && proto_get_tick_ok(body, h->body_len, &t) == PROTO_OK) {
            out->kind = ALLOCDB_REPLY_TICK;
            out->u.tick.slot = t.slot;
            out->u.tick.expirations_proposed = t.expirations_proposed;
            ok = true;
        }
        break;
    }
    case PROTO_METRICS_OK:
    case PROTO_STATUS_OK:
        if ((h->kind == PROTO_METRICS_OK && s->kind == PROTO_METRICS) ||
            (h->kind == PROTO_STATUS_OK && s->kind == PROTO_STATUS)) {
            out->kind = ALLOCDB_REPLY_TEXT;
            out->u.text.json = (const char *)body;
            out->u.text.len = h->body_len;
            ok = memchr(body, '\0', h->body_len) == NULL;
        }
        break;
    default:
        break;
    }
    if (!ok) {
        set_err(c, "%s: malformed or unexpected %s reply to %s", c->info.address,
                proto_kind_name(h->kind), proto_kind_name(s->kind));
        return -1;
    }
    slot_give_back(c, i);
    return 1;
}

/*
 * The engine behind poll and every synchronous call: the next reply by the deadline. Lost
 * requests come first. A request older than the request timeout closes the connection (its
 * requests become lost). Once the deadline has passed, or with nothing in flight, it still takes
 * in what the socket holds, without waiting: an event loop that polls with timeout 0 after a
 * readable event gets every reply that came, and sees the server close an idle connection.
 * Returns 1, 0 (deadline, or nothing in flight), or a negative error.
 */
static int next_reply(allocdb_client *c, u64 deadline, struct allocdb_reply *out)
{
    for (;;) {
        if (c->lost.n > 0) {
            lost_reply(c, out);
            return 1;
        }
        if (c->fd < 0)
            return 0;
        struct proto_header h;
        const u8 *body;
        int f = rx_frame(c, &h, &body);
        if (f > 0) {
            f = frame_reply(c, &h, body, out);
            if (f > 0)
                return 1;
            if (f == 0)
                continue;
        }
        if (f < 0) {
            conn_close(c, ALLOCDB_INDEFINITE_CONNECTION_LOST);
            continue;
        }
        /* Need more input. */
        u64 now = now_ms();
        u64 wake = deadline;
        if (c->request_ms != 0 && c->inflight.n > 0) {
            u64 oldest = c->slots[c->inflight.head].sent_ms + c->request_ms;
            if (now >= oldest) {
                set_err(c, "%s: no reply within %u ms", c->info.address, c->request_ms);
                conn_close(c, ALLOCDB_INDEFINITE_CLIENT_TIMEOUT);
                continue;
            }
            wake = min_u64(wake, oldest);
        }
        if (c->inflight.n == 0 || (deadline != NO_DEADLINE && now >= deadline)) {
            /* No (more) waiting: only what the socket has now. */
            ssize_t n = rx_fill(c);
            if (n > 0)
                continue;
            if (n == -1)
                conn_close(c, ALLOCDB_INDEFINITE_CONNECTION_LOST);
            if (c->lost.n > 0)
                continue;
            return 0;
        }
        if (tx_write(c) != 0) {
            conn_close(c, ALLOCDB_INDEFINITE_CONNECTION_LOST);
            continue;
        }
        struct pollfd p = { .fd = c->fd, .events = POLLIN };
        if (c->tx_len > c->tx_off)
            p.events |= POLLOUT;
        int r = poll(&p, 1, remaining_ms(wake));
        if (r < 0) {
            if (errno == EINTR)
                continue;
            set_err(c, "poll: %s", strerror(errno));
            return ALLOCDB_ERR_SYSTEM;
        }
        if (r > 0 && (p.revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
            ssize_t n = rx_fill(c);
            if (n == RX_NO_ROOM) /* cannot happen: a whole frame was not there, and one fits */
                set_err(c, "%s: input buffer exhausted", c->info.address);
            if (n < 0)
                conn_close(c, ALLOCDB_INDEFINITE_CONNECTION_LOST);
        }
    }
}

/* The outcome a server error frame gives each command of a submit. */
static void error_outcome(u16 code, u8 *outcome, u8 *rcode)
{
    switch (code) {
    case PROTO_ERR_OVERLOADED:
        *outcome = ALLOCDB_REJECTED;
        *rcode = ALLOCDB_REJECT_OVERLOADED;
        return;
    case PROTO_ERR_TIMEOUT:
        *outcome = ALLOCDB_INDEFINITE;
        *rcode = ALLOCDB_INDEFINITE_TIMEOUT;
        return;
    case PROTO_ERR_SHUTTING_DOWN:
        *outcome = ALLOCDB_INDEFINITE;
        *rcode = ALLOCDB_INDEFINITE_SHUTTING_DOWN;
        return;
    case PROTO_ERR_IDLE:
        *outcome = ALLOCDB_INDEFINITE;
        *rcode = ALLOCDB_INDEFINITE_CONNECTION_LOST;
        return;
    default:
        *outcome = ALLOCDB_REJECTED;
        *rcode = ALLOCDB_REJECT_REFUSED;
        return;
    }
}

int allocdb_reply_result(const struct allocdb_reply *r, uint32_t i, struct allocdb_result *out)
{
    if (r == NULL || out == NULL || r->request_kind != PROTO_SUBMIT || i >= r->count)
        return ALLOCDB_ERR_INVALID;
    memset(out, 0, sizeof *out);
    switch (r->kind) {
    case ALLOCDB_REPLY_SUBMIT: {
        struct proto_result pr;
        if (proto_get_result(r->priv_results + (size_t)i * PROTO_RESULT_SIZE, &pr) != PROTO_OK)
            return ALLOCDB_ERR_PROTOCOL;
        out->outcome = pr.outcome;
        out->code = pr.code;
        out->from_retry_cache = pr.from_retry_cache;
        out->applied_lsn = pr.applied_lsn;
        out->reservation_id = pr.reservation_id;
        out->deadline_slot = pr.deadline_slot;
        return ALLOCDB_OK;
    }
    case ALLOCDB_REPLY_LOST:
        out->outcome = ALLOCDB_INDEFINITE;
        out->code = r->u.lost_code;
        return ALLOCDB_OK;
    case ALLOCDB_REPLY_NOT_PRIMARY:
        out->outcome = ALLOCDB_REJECTED;
        out->code = ALLOCDB_REJECT_NOT_PRIMARY;
        return ALLOCDB_OK;
    case ALLOCDB_REPLY_ERROR:
        error_outcome(r->u.error.code, &out->outcome, &out->code);
        return ALLOCDB_OK;
    }
    return ALLOCDB_ERR_INVALID;
}

/* ---- async API ------------------------------------------------------------------------------- */

static int async_ready(allocdb_client *c)
{
    /* Redirected (not_primary): once this connection has nothing in flight, the next request
     * goes to the hint or the next address, not to the server that stopped serving. */
    if (c->fd >= 0 && c->moving && c->inflight.n == 0)
        conn_close(c, ALLOCDB_INDEFINITE_CONNECTION_LOST);
    if (c->fd >= 0)
        return ALLOCDB_OK;
    if (c->free_head == NIL)
        return ALLOCDB_ERR_WINDOW_FULL;
    /* A reconnect must not mix with lost requests still to be reported? It may: they are on
     * the lost list and keep their slots until polled. */
    return ensure_connected(c, NO_DEADLINE);
}

int allocdb_send_submit(allocdb_client *c, struct allocdb_command *cmds, uint32_t n,
                        uint64_t *request_id)
{
    if (c == NULL || cmds == NULL || n == 0)
        return ALLOCDB_ERR_INVALID;
    for (u32 j = 0; j < n; j++) {
        int rc = check_command(c, &cmds[j]);
        if (rc != ALLOCDB_OK)
            return rc;
    }
    int rc = async_ready(c);
    if (rc != ALLOCDB_OK)
        return rc;
    if (n > batch_limit(c)) {
        set_err(c, "%u commands: the server takes at most %u per submit", n, batch_limit(c));
        return ALLOCDB_ERR_INVALID;
    }
    rc = generate_op_ids(cmds, n);
    if (rc != ALLOCDB_OK)
        return rc;
    u32 s = queue_submit(c, cmds, NULL, n, &rc);
    if (s == NIL)
        return rc;
    if (request_id != NULL)
        *request_id = c->slots[s].rid;
    return ALLOCDB_OK;
}

static int send_read(allocdb_client *c, u8 kind, u128 id, u64 min_lsn, uint64_t *request_id)
{
    if (c == NULL)
        return ALLOCDB_ERR_INVALID;
    int rc = async_ready(c);
    if (rc != ALLOCDB_OK)
        return rc;
    u32 s = queue_read(c, kind, id, min_lsn, &rc);
    if (s == NIL)
        return rc;
    if (request_id != NULL)
        *request_id = c->slots[s].rid;
    return ALLOCDB_OK;
}

static int send_empty(allocdb_client *c, u8 kind, uint64_t *request_id)
{
    if (c == NULL)
        return ALLOCDB_ERR_INVALID;
    int rc = async_ready(c);
    if (rc != ALLOCDB_OK)
        return rc;
    u32 s = queue_empty(c, kind, &rc);
    if (s == NIL)
        return rc;
    if (request_id != NULL)
        *request_id = c->slots[s].rid;
    return ALLOCDB_OK;
}

int allocdb_send_get_resource(allocdb_client *c, allocdb_u128 resource_id, uint64_t min_lsn,
                              uint64_t *request_id)
{
    return send_read(c, PROTO_GET_RESOURCE, resource_id, min_lsn, request_id);
}

int allocdb_send_get_reservation(allocdb_client *c, allocdb_u128 reservation_id, uint64_t min_lsn,
                                 uint64_t *request_id)
{
    return send_read(c, PROTO_GET_RESERVATION, reservation_id, min_lsn, request_id);
}

int allocdb_send_tick(allocdb_client *c, uint64_t *request_id)
{
    return send_empty(c, PROTO_TICK, request_id);
}

int allocdb_send_metrics(allocdb_client *c, uint64_t *request_id)
{
    return send_empty(c, PROTO_METRICS, request_id);
}

int allocdb_send_status(allocdb_client *c, uint64_t *request_id)
{
    return send_empty(c, PROTO_STATUS, request_id);
}

static u64 timeout_deadline(const allocdb_client *c, int timeout_ms)
{
    if (timeout_ms < 0)
        return c->request_ms == 0 ? NO_DEADLINE : now_ms() + c->request_ms;
    return now_ms() + (u64)timeout_ms;
}

int allocdb_flush(allocdb_client *c, int timeout_ms)
{
    if (c == NULL)
        return ALLOCDB_ERR_INVALID;
    return flush_until(c, timeout_deadline(c, timeout_ms));
}

int allocdb_poll(allocdb_client *c, int timeout_ms, struct allocdb_reply *out)
{
    if (c == NULL || out == NULL)
        return ALLOCDB_ERR_INVALID;
    u64 deadline = timeout_ms < 0 ? NO_DEADLINE : now_ms() + (u64)timeout_ms;
    if (c->fd >= 0 && c->tx_len > c->tx_off) {
        int rc = flush_until(c, now_ms()); /* what fits now; next_reply writes the rest */
        if (rc == ALLOCDB_ERR_SYSTEM)
            return rc;
    }
    return next_reply(c, deadline, out);
}

/* ---- synchronous calls ----------------------------------------------------------------------- */

/* Per-command state of a synchronous submit (one byte each). */
enum {
    CMD_PENDING = 0,
    CMD_DONE = 1,
    CMD_WAS_INDEFINITE = 2, /* flag: some attempt may have executed it */
};

struct sync_call {
    u64 deadline;
    bool single; /* retry_ms == 0: one attempt */
    u32 backoff;
    u32 quick_hops; /* redirects followed without a pause (a few, then back off) */
};

static void sync_begin(allocdb_client *c, struct sync_call *sc)
{
    sc->single = c->retry_ms == 0;
    u64 span = sc->single ? (u64)c->connect_ms * (c->naddrs + 1u) + c->request_ms : c->retry_ms;
    sc->deadline = now_ms() + span;
    sc->backoff = BACKOFF_MIN_MS;
    sc->quick_hops = 0;
}

/* Between attempts: false if the call is over; otherwise sleeps the backoff (with jitter). */
static bool sync_again(allocdb_client *c, struct sync_call *sc, bool quick)
{
    (void)c;
    if (sc->single || now_ms() >= sc->deadline)
        return false;
    if (quick && sc->quick_hops < 3) {
        sc->quick_hops++;
    } else {
        u8 r = 0;
        (void)getrandom(&r, 1, GRND_NONBLOCK);
        sleep_until(sc->deadline, sc->backoff / 2 + (sc->backoff * r) / 512);
        sc->backoff = sc->backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : sc->backoff * 2;
    }
    return now_ms() < sc->deadline;
}

/* Waits for every request of a synchronous round, calling handle for each reply. A round cut by
 * the deadline closes the connection, which answers the rest as lost. */
typedef void (*reply_fn)(allocdb_client *c, const struct allocdb_reply *r, void *arg);

static int sync_wait(allocdb_client *c, u64 deadline, reply_fn handle, void *arg)
{
    while (c->inflight.n + c->lost.n > 0) {
        struct allocdb_reply r;
        int rc = next_reply(c, deadline, &r);
        if (rc < 0) {
            conn_close(c, ALLOCDB_INDEFINITE_CONNECTION_LOST);
            continue;
        }
        if (rc == 0) {
            if (c->inflight.n + c->lost.n == 0)
                break;
            set_err(c, "%s: no reply before the deadline", c->info.address);
            conn_close(c, ALLOCDB_INDEFINITE_CLIENT_TIMEOUT);
            continue;
        }
        handle(c, &r, arg);
    }
    return ALLOCDB_OK;
}

struct submit_state {
    struct allocdb_command *cmds;
    struct allocdb_result *results;
    u8 *state;
    u32 *pending; /* the commands still open, in order; a round's frames index into it */
    bool redirect;
    bool transient; /* something asks for a retry after a pause */
};

/* Records one command's answer in a synchronous submit. */
static void submit_note(allocdb_client *c, struct submit_state *st, u32 i, u8 outcome, u8 code,
                        const struct allocdb_result *committed, u16 server_error)
{
    struct allocdb_result *res = &st->results[i];
    bool was_indefinite = (st->state[i] & CMD_WAS_INDEFINITE) != 0;
    if (outcome == ALLOCDB_COMMITTED) {
        u128 op = res->operation_id;
        u32 attempts = res->attempts;
        *res = *committed;
        res->operation_id = op;
        res->attempts = attempts;
        st->state[i] = CMD_DONE;
        return;
    }
    if (outcome == ALLOCDB_INDEFINITE) {
        res->outcome = ALLOCDB_INDEFINITE;
        res->code = code;
        st->state[i] |= CMD_WAS_INDEFINITE;
        st->transient = true;
        return;
    }
    /* rejected */
    bool retry = code == ALLOCDB_REJECT_NOT_PRIMARY ||
                 (code == ALLOCDB_REJECT_OVERLOADED && c->retry_overloaded) ||
                 server_error == PROTO_ERR_UNAVAILABLE ||
                 server_error == PROTO_ERR_TOO_MANY_CONNECTIONS;
    if (code == ALLOCDB_REJECT_NOT_PRIMARY)
        st->redirect = true;
    else if (retry)
        st->transient = true;
    if (!was_indefinite) {
        res->outcome = ALLOCDB_REJECTED;
        res->code = code;
    }
    if (!retry)
        st->state[i] = (u8)(st->state[i] | CMD_DONE);
}

/* A round's frames: request id → first pending entry. */
struct round_frame {
    u64 rid;
    u32 start;
    u32 count;
};

struct submit_round {
    struct submit_state *st;
    struct round_frame *frames;
    u32 nframes;
};

static void round_reply(allocdb_client *c, const struct allocdb_reply *r, void *arg)
{
    struct submit_round *rd = arg;
    struct submit_state *st = rd->st;
    struct round_frame *f = NULL;
    for (u32 k = 0; k < rd->nframes; k++)
        if (rd->frames[k].rid == r->request_id) {
            f = &rd->frames[k];
            break;
        }
    ADB_ASSERT(f != NULL && r->count == f->count);
    bool moved = false;
    for (u32 j = 0; j < f->count; j++) {
        u32 i = st->pending[f->start + j];
        struct allocdb_result res;
        ADB_ASSERT(allocdb_reply_result(r, j, &res) == ALLOCDB_OK);
        u16 server_error = r->kind == ALLOCDB_REPLY_ERROR ? r->u.error.code : 0;
        submit_note(c, st, i, res.outcome, res.code, &res, server_error);
        if (r->kind == ALLOCDB_REPLY_SUBMIT && res.outcome == ALLOCDB_REJECTED &&
            res.code == ALLOCDB_REJECT_NOT_PRIMARY && !moved) {
            redirect(c, NULL); /* no hint in a result: try the next address */
            moved = true;
        }
    }
    if (r->kind == ALLOCDB_REPLY_NOT_PRIMARY)
        st->redirect = true;
}

static bool sync_idle(allocdb_client *c)
{
    if (c->inflight.n + c->lost.n != 0) {
        set_err(c, "asynchronous requests are in flight");
        return false;
    }
    return true;
}

int allocdb_submit(allocdb_client *c, struct allocdb_command *cmds, size_t n,
                   struct allocdb_result *results)
{
    if (c == NULL || cmds == NULL || results == NULL || n == 0 || n > UINT32_MAX / 2)
        return ALLOCDB_ERR_INVALID;
    if (!sync_idle(c))
        return ALLOCDB_ERR_BUSY;
    for (size_t i = 0; i < n; i++) {
        int rc = check_command(c, &cmds[i]);
        if (rc != ALLOCDB_OK)
            return rc;
    }
    int rc = generate_op_ids(cmds, n);
    if (rc != ALLOCDB_OK)
        return rc;
    for (size_t i = 0; i < n; i++) {
        memset(&results[i], 0, sizeof results[i]);
        results[i].outcome = ALLOCDB_INDEFINITE;
        results[i].code = ALLOCDB_INDEFINITE_UNREACHABLE;
        results[i].operation_id = cmds[i].operation_id;
    }
    u32 max_frames = c->window < 1024 ? c->window : 1024;
    u8 *state = calloc(n, 1);
    u32 *pending = calloc(n, sizeof *pending);
    struct round_frame *frames = calloc(max_frames, sizeof *frames);
    if (state == NULL || pending == NULL || frames == NULL) {
        free(state);
        free(pending);
        free(frames);
        return ALLOCDB_ERR_NOMEM;
    }
    struct submit_state st = { .cmds = cmds, .results = results, .state = state,
                               .pending = pending };
    struct sync_call sc;
    sync_begin(c, &sc);
    bool sent = false;
    for (;;) {
        u32 np = 0;
        for (size_t i = 0; i < n; i++)
            if ((state[i] & CMD_DONE) == 0)
                pending[np++] = (u32)i;
        if (np == 0)
            break;
        st.redirect = st.transient = false;
        bool partial = false; /* more open commands than one round sends */
        if (ensure_connected(c, sc.deadline) == ALLOCDB_OK) {
            u64 round_deadline = c->request_ms == 0
                                     ? sc.deadline
                                     : min_u64(sc.deadline, now_ms() + c->request_ms);
            struct submit_round rd = { .st = &st, .frames = frames, .nframes = 0 };
            u32 per = batch_limit(c);
            for (u32 start = 0; start < np && rd.nframes < max_frames;) {
                u32 k = np - start < per ? np - start : per;
                int qrc;
                u32 s = queue_submit(c, cmds, pending + start, k, &qrc);
                if (s == NIL)
                    break; /* connection lost while flushing, or window full: next round */
                frames[rd.nframes++] = (struct round_frame){ c->slots[s].rid, start, k };
                for (u32 j = 0; j < k; j++)
                    results[pending[start + j]].attempts++;
                sent = true;
                start += k;
            }
            partial = rd.nframes == max_frames;
            if (rd.nframes > 0) {
                flush_until(c, round_deadline);
                sync_wait(c, round_deadline, round_reply, &rd);
            }
            if (st.redirect)
                conn_close(c, ALLOCDB_INDEFINITE_CONNECTION_LOST);
        } else {
            st.transient = true;
        }
        bool left = false;
        for (size_t i = 0; i < n && !left; i++)
            left = (state[i] & CMD_DONE) == 0;
        if (!left)
            break;
        if (partial && !st.transient && !st.redirect && now_ms() < sc.deadline)
            continue; /* the rest of a large batch, not a retry */
        if (!sync_again(c, &sc, st.redirect && !st.transient && c->has_hint))
            break;
    }
    free(state);
    free(pending);
    free(frames);
    if (!sent)
        return ALLOCDB_ERR_UNREACHABLE;
    return ALLOCDB_OK;
}

static int submit_one(allocdb_client *c, u8 kind, u128 op, u128 target, u128 holder, u64 ttl_ms,
                      struct allocdb_result *out)
{
    if (out == NULL)
        return ALLOCDB_ERR_INVALID;
    struct allocdb_command cmd = { .kind = kind, .operation_id = op, .target = target,
                                   .holder_id = holder, .ttl_ms = ttl_ms };
    return allocdb_submit(c, &cmd, 1, out);
}

int allocdb_create_resource(allocdb_client *c, allocdb_u128 operation_id,
                            allocdb_u128 resource_id, struct allocdb_result *out)
{
    return submit_one(c, ALLOCDB_CREATE_RESOURCE, operation_id, resource_id, 0, 0, out);
}

int allocdb_reserve(allocdb_client *c, allocdb_u128 operation_id, allocdb_u128 resource_id,
                    allocdb_u128 holder_id, uint64_t ttl_ms, struct allocdb_result *out)
{
    return submit_one(c, ALLOCDB_RESERVE, operation_id, resource_id, holder_id, ttl_ms, out);
}

int allocdb_confirm(allocdb_client *c, allocdb_u128 operation_id, allocdb_u128 reservation_id,
                    allocdb_u128 holder_id, struct allocdb_result *out)
{
    return submit_one(c, ALLOCDB_CONFIRM, operation_id, reservation_id, holder_id, 0, out);
}

int allocdb_release(allocdb_client *c, allocdb_u128 operation_id, allocdb_u128 reservation_id,
                    allocdb_u128 holder_id, struct allocdb_result *out)
{
    return submit_one(c, ALLOCDB_RELEASE, operation_id, reservation_id, holder_id, 0, out);
}

/* One synchronous non-submit request, retried until answered or the deadline. */
struct simple_state {
    struct allocdb_reply reply;
    bool answered;
    char *text; /* metrics/status: malloc'd copy */
    size_t text_len;
    bool nomem;
};

static void simple_reply(allocdb_client *c, const struct allocdb_reply *r, void *arg)
{
    (void)c;
    struct simple_state *st = arg;
    st->reply = *r;
    st->answered = true;
    if (r->kind == ALLOCDB_REPLY_TEXT) {
        free(st->text);
        st->text = malloc(r->u.text.len + 1);
        if (st->text == NULL) {
            st->nomem = true;
            return;
        }
        memcpy(st->text, r->u.text.json, r->u.text.len);
        st->text[r->u.text.len] = '\0';
        st->text_len = r->u.text.len;
    }
    if (r->kind == ALLOCDB_REPLY_ERROR)
        st->reply.u.error.message = NULL; /* points into rx; err has the text */
}

static int sync_simple(allocdb_client *c, u8 kind, u128 id, u64 min_lsn, struct simple_state *st)
{
    if (c == NULL)
        return ALLOCDB_ERR_INVALID;
    if (!sync_idle(c))
        return ALLOCDB_ERR_BUSY;
    struct sync_call sc;
    sync_begin(c, &sc);
    bool reached = false;
    for (;;) {
        bool quick = false;
        st->answered = false;
        if (ensure_connected(c, sc.deadline) == ALLOCDB_OK) {
            reached = true;
            int rc;
            u32 s = kind == PROTO_GET_RESOURCE || kind == PROTO_GET_RESERVATION
                        ? queue_read(c, kind, id, min_lsn, &rc)
                        : queue_empty(c, kind, &rc);
            if (s != NIL) {
                u64 round_deadline = c->request_ms == 0
                                         ? sc.deadline
                                         : min_u64(sc.deadline, now_ms() + c->request_ms);
                flush_until(c, round_deadline);
                sync_wait(c, round_deadline, simple_reply, st);
            } else if (rc == ALLOCDB_ERR_NOMEM) {
                return rc;
            }
        }
        if (st->nomem)
            return ALLOCDB_ERR_NOMEM;
        if (st->answered) {
            switch (st->reply.kind) {
            case ALLOCDB_REPLY_RESOURCE:
            case ALLOCDB_REPLY_RESERVATION:
            case ALLOCDB_REPLY_TICK:
            case ALLOCDB_REPLY_TEXT:
                return ALLOCDB_OK;
            case ALLOCDB_REPLY_NOT_PRIMARY:
                conn_close(c, ALLOCDB_INDEFINITE_CONNECTION_LOST);
                quick = c->has_hint;
                break;
            case ALLOCDB_REPLY_ERROR: {
                u16 e = st->reply.u.error.code;
                bool transient = e == PROTO_ERR_UNAVAILABLE || e == PROTO_ERR_TIMEOUT ||
                                 e == PROTO_ERR_SHUTTING_DOWN || e == PROTO_ERR_IDLE ||
                                 e == PROTO_ERR_TOO_MANY_CONNECTIONS ||
                                 (e == PROTO_ERR_OVERLOADED && c->retry_overloaded);
                if (!transient)
                    return ALLOCDB_ERR_SERVER;
                break;
            }
            default: /* lost */
                break;
            }
        }
        if (!sync_again(c, &sc, quick))
            return reached ? ALLOCDB_ERR_TIMEOUT : ALLOCDB_ERR_UNREACHABLE;
    }
}

int allocdb_get_resource(allocdb_client *c, allocdb_u128 resource_id, uint64_t min_lsn,
                         struct allocdb_resource *out)
{
    if (out == NULL)
        return ALLOCDB_ERR_INVALID;
    struct simple_state st = { 0 };
    int rc = sync_simple(c, PROTO_GET_RESOURCE, resource_id, min_lsn, &st);
    if (rc == ALLOCDB_OK)
        *out = st.reply.u.resource;
    return rc;
}

int allocdb_get_reservation(allocdb_client *c, allocdb_u128 reservation_id, uint64_t min_lsn,
                            struct allocdb_reservation *out)
{
    if (out == NULL)
        return ALLOCDB_ERR_INVALID;
    struct simple_state st = { 0 };
    int rc = sync_simple(c, PROTO_GET_RESERVATION, reservation_id, min_lsn, &st);
    if (rc == ALLOCDB_OK)
        *out = st.reply.u.reservation;
    return rc;
}

int allocdb_tick(allocdb_client *c, struct allocdb_tick *out)
{
    if (out == NULL)
        return ALLOCDB_ERR_INVALID;
    struct simple_state st = { 0 };
    int rc = sync_simple(c, PROTO_TICK, 0, 0, &st);
    if (rc == ALLOCDB_OK)
        *out = st.reply.u.tick;
    return rc;
}

static int sync_text(allocdb_client *c, u8 kind, char **json, size_t *len)
{
    if (json == NULL)
        return ALLOCDB_ERR_INVALID;
    *json = NULL;
    struct simple_state st = { 0 };
    int rc = sync_simple(c, kind, 0, 0, &st);
    if (rc == ALLOCDB_OK) {
        *json = st.text;
        if (len != NULL)
            *len = st.text_len;
    } else {
        free(st.text);
    }
    return rc;
}

int allocdb_metrics(allocdb_client *c, char **json, size_t *len)
{
    return sync_text(c, PROTO_METRICS, json, len);
}

int allocdb_status(allocdb_client *c, char **json, size_t *len)
{
    return sync_text(c, PROTO_STATUS, json, len);
}
