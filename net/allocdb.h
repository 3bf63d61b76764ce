/*
 * allocdb.h — liballocdb, the C client of AllocDB (protocol version 1).
 *
 * AllocDB allocates scarce resources: one resource, one winner. This library connects to one
 * server or a cluster, sends commands (create_resource, reserve, confirm, release), reads
 * (get_resource, get_reservation) and operator requests (tick, metrics, status), and resolves
 * ambiguous outcomes the only safe way: by retrying the SAME operation id, which the server
 * executes at most once. The full reference is liballocdb(3); the wire protocol is
 * allocdb-protocol(7).
 *
 * Linking: `pkg-config --cflags --libs liballocdb` (-lallocdb). This header includes only
 * <stdbool.h>, <stddef.h> and <stdint.h>.
 *
 * IDs. Every id (resource, holder, reservation, operation, client, cluster) is an unsigned
 * 128-bit integer, allocdb_u128: the compiler's unsigned __int128 (gcc and clang on 64-bit
 * targets), so ids compare with == and < and convert from integers directly. ALLOCDB_U128()
 * builds one from two 64-bit halves; allocdb_u128_format() and allocdb_u128_parse() convert to
 * and from text (decimal, or 0x-prefixed hex on input).
 *
 * Outcomes. Every command gets exactly one of (struct allocdb_result.outcome):
 *   ALLOCDB_COMMITTED   executed and durable; code is the state machine's result, which may be
 *                       a domain failure such as ALLOCDB_RESOURCE_BUSY — it still committed;
 *   ALLOCDB_REJECTED    certainly not executed (safe to give up or to change the command);
 *   ALLOCDB_INDEFINITE  may or may not have executed. Resolve it by retrying the same
 *                       operation id (with the same command and client id) within the server's
 *                       dedupe window: the server answers the original result and never
 *                       executes it twice. Never treat indefinite as "failed".
 *
 * Threads. A handle (allocdb_client) is not thread-safe: use it from one thread at a time (one
 * handle per thread, or your own lock). Different handles are fully independent; the library
 * has no global state and no signal handlers (it sends with MSG_NOSIGNAL, so a lost
 * connection never raises SIGPIPE). Its sockets are close-on-exec. Do not use a handle in both
 * processes after fork(2).
 *
 * Memory. A handle allocates at creation and while connecting (a window of request slots and
 * two I/O buffers that grow, at most once each, to one maximum frame); sending and receiving
 * requests allocates nothing. Only the batch and metrics/status calls allocate per call.
 *
 * Errors. Functions returning int return ALLOCDB_OK (0) or a negative enum allocdb_error;
 * allocdb_strerror() names it and allocdb_last_error() describes the last failure of a handle.
 */
#ifndef ALLOCDB_H
#define ALLOCDB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- ids ------------------------------------------------------------------------------------- */

__extension__ typedef unsigned __int128 allocdb_u128;

#define ALLOCDB_U128(hi, lo) (((allocdb_u128)(uint64_t)(hi) << 64) | (allocdb_u128)(uint64_t)(lo))
#define ALLOCDB_U128_HI(x) ((uint64_t)((allocdb_u128)(x) >> 64))
#define ALLOCDB_U128_LO(x) ((uint64_t)(x))

/* Room for any u128 in decimal: 39 digits and the NUL. */
#define ALLOCDB_U128_STRLEN 40

/* Writes v in decimal to buf (NUL-terminated) and returns buf. */
char *allocdb_u128_format(allocdb_u128 v, char buf[ALLOCDB_U128_STRLEN]);

/* Parses a whole string: decimal digits, or "0x"/"0X" and hex digits. Rejects an empty string,
 * signs, spaces, any other character and values above 2^128 - 1 (ALLOCDB_ERR_INVALID). */
int allocdb_u128_parse(const char *s, allocdb_u128 *out);

/* A fresh random operation id from getrandom(2), never 0. The library calls this itself for
 * every command submitted with operation_id 0; call it when you want to know (and store) the
 * id before sending, e.g. to log it for a later retry. */
int allocdb_operation_id_new(allocdb_u128 *out);

/* ---- errors ---------------------------------------------------------------------------------- */

enum allocdb_error {
    ALLOCDB_OK = 0,
    ALLOCDB_ERR_INVALID = -1,     /* a bad argument (address list, id text, batch size, ...) */
    ALLOCDB_ERR_UNREACHABLE = -2, /* no server answered the hello before the deadline; a
                                   * command was never sent by this call */
    ALLOCDB_ERR_TIMEOUT = -3,     /* no answer before the deadline (reads, tick, metrics) */
    ALLOCDB_ERR_CONNECTION = -4,  /* not connected, or the connection failed (async API) */
    ALLOCDB_ERR_PROTOCOL = -5,    /* the server sent a malformed or unexpected frame */
    ALLOCDB_ERR_SERVER = -6,      /* the server refused the request with an error frame
                                   * (allocdb_last_error() has its code and message) */
    ALLOCDB_ERR_WINDOW_FULL = -7, /* async: as many requests in flight as the window holds;
                                   * poll replies first */
    ALLOCDB_ERR_BUSY = -8,        /* a synchronous call while async requests are in flight */
    ALLOCDB_ERR_NOMEM = -9,
    ALLOCDB_ERR_SYSTEM = -10,     /* a system call failed (errno is in allocdb_last_error()) */
};

const char *allocdb_strerror(int err);

/* ---- result codes ---------------------------------------------------------------------------- */

enum allocdb_outcome {
    ALLOCDB_COMMITTED = 0,
    ALLOCDB_REJECTED = 1,
    ALLOCDB_INDEFINITE = 2,
};

/* Committed: the state machine's results (the server's enum sm_result). */
enum allocdb_committed_code {
    ALLOCDB_RESULT_OK = 0,
    ALLOCDB_RESULT_NOOP = 1,
    ALLOCDB_RESULT_ALREADY_EXISTS = 2,
    ALLOCDB_RESULT_RESOURCE_TABLE_FULL = 3,
    ALLOCDB_RESULT_RESOURCE_NOT_FOUND = 4,
    ALLOCDB_RESULT_RESOURCE_BUSY = 5,
    ALLOCDB_RESULT_TTL_OUT_OF_RANGE = 6,
    ALLOCDB_RESULT_RESERVATION_TABLE_FULL = 7,
    ALLOCDB_RESULT_RESERVATION_NOT_FOUND = 8,
    ALLOCDB_RESULT_RESERVATION_RETIRED = 9,
    ALLOCDB_RESULT_EXPIRATION_INDEX_FULL = 10,
    ALLOCDB_RESULT_OPERATION_TABLE_FULL = 11,
    ALLOCDB_RESULT_OPERATION_CONFLICT = 12,
    ALLOCDB_RESULT_INVALID_STATE = 13,
    ALLOCDB_RESULT_HOLDER_MISMATCH = 14,
    ALLOCDB_RESULT_SLOT_OVERFLOW = 15,
};

/* Rejected: 1..6 are the server's; 64 is the library's. */
enum allocdb_reject_code {
    ALLOCDB_REJECT_INVALID_REQUEST = 1,
    ALLOCDB_REJECT_COMMAND_TOO_LARGE = 2,
    ALLOCDB_REJECT_SLOT_OVERFLOW = 3,
    ALLOCDB_REJECT_OVERLOADED = 4,
    ALLOCDB_REJECT_LSN_EXHAUSTED = 5,
    ALLOCDB_REJECT_NOT_PRIMARY = 6,
    ALLOCDB_REJECT_NO_SPACE = 7, /* the server's disk is full; nothing was logged */
    ALLOCDB_REJECT_REFUSED = 64, /* the server refused the whole frame with an error frame */
};

/* Indefinite: 1..6 are the server's; 64.. are the library's. */
enum allocdb_indefinite_code {
    ALLOCDB_INDEFINITE_TIMEOUT = 1,           /* the server timed the command out */
    ALLOCDB_INDEFINITE_STORAGE_FAILURE = 2,
    ALLOCDB_INDEFINITE_HALTED = 3,
    ALLOCDB_INDEFINITE_WORKER_RESTARTED = 4,
    ALLOCDB_INDEFINITE_SHUTTING_DOWN = 5,
    ALLOCDB_INDEFINITE_VIEW_CHANGE = 6,       /* its primary lost its view before it committed */
    ALLOCDB_INDEFINITE_CONNECTION_LOST = 64,  /* the connection failed with it in flight */
    ALLOCDB_INDEFINITE_CLIENT_TIMEOUT = 65,   /* no reply within the request timeout */
    ALLOCDB_INDEFINITE_UNREACHABLE = 66,      /* this call never reached a server (the call
                                               * returns ALLOCDB_ERR_UNREACHABLE) */
};

/* "committed", "rejected", "indefinite" ("unknown" otherwise). */
const char *allocdb_outcome_name(uint8_t outcome);
/* The code's name within its outcome class: "ok", "resource_busy", "not_primary",
 * "connection_lost", ...; "unknown" for a value the library does not know. */
const char *allocdb_result_name(uint8_t outcome, uint8_t code);

/* ---- the handle ------------------------------------------------------------------------------ */

typedef struct allocdb_client allocdb_client;

#define ALLOCDB_DEFAULT_ADDR "127.0.0.1:7400"
#define ALLOCDB_DEFAULT_CONNECT_TIMEOUT_MS 1000u
#define ALLOCDB_DEFAULT_REQUEST_TIMEOUT_MS 5000u
#define ALLOCDB_DEFAULT_RETRY_TIMEOUT_MS 10000u
#define ALLOCDB_DEFAULT_WINDOW 4096u
#define ALLOCDB_WINDOW_MAX (1u << 20)

/* A new, unconnected handle with default settings; NULL if out of memory. */
allocdb_client *allocdb_new(void);
/* Closes the connection (if any) and frees the handle. NULL is allowed. */
void allocdb_free(allocdb_client *c);

/*
 * Timeouts, in milliseconds:
 *   connect_ms  one TCP connect plus the hello handshake, per address tried (>= 1);
 *   request_ms  how long one attempt waits for a reply before the connection is considered
 *               dead (it is closed; requests in flight become indefinite); 0 = no limit for the
 *               async API (synchronous calls are still bounded by retry_ms);
 *   retry_ms    the deadline of every synchronous call, retries and reconnects included;
 *               0 = a single attempt, no retry.
 * Every wait is also cut short by the call's deadline.
 */
int allocdb_set_timeouts(allocdb_client *c, uint32_t connect_ms, uint32_t request_ms,
                         uint32_t retry_ms);
/* The cluster the hello names (0, the default: any). After the first successful hello the
 * handle pins the cluster it found, so a reconnect never lands in another cluster. */
int allocdb_set_cluster_id(allocdb_client *c, allocdb_u128 cluster_id);
/* The client id put in every command (default 0). The server's dedupe fingerprint includes it:
 * a retry must use the client id of the original attempt. */
int allocdb_set_client_id(allocdb_client *c, allocdb_u128 client_id);
/* Synchronous calls: also retry definite "overloaded" rejections (with backoff) until the
 * deadline (default off: overloaded is returned at once). */
int allocdb_set_retry_overloaded(allocdb_client *c, bool on);
/* Async window: the most requests in flight at once, 1..ALLOCDB_WINDOW_MAX (default 4096).
 * Only while no request is in flight. */
int allocdb_set_window(allocdb_client *c, uint32_t window);

/*
 * Sets the server addresses, "HOST:PORT[,HOST:PORT...]" (HOST a name, an IPv4 address, or an
 * IPv6 address in brackets), without connecting. ALLOCDB_ERR_INVALID for a malformed list.
 */
int allocdb_set_addresses(allocdb_client *c, const char *addrs);
/*
 * Sets the addresses (if addrs is not NULL) and connects: tries each address in turn (the
 * connect timeout each) until one completes the hello. If none did, what the last one tried
 * gave (allocdb_last_error() describes it): ALLOCDB_ERR_UNREACHABLE, no answer (no connection,
 * or closed or silent until the timeout) or a refusal for now (too_many_connections,
 * shutting_down, unavailable, overloaded); ALLOCDB_ERR_SERVER, a final refusal of the hello
 * (wrong_cluster, unsupported_version, ...); ALLOCDB_ERR_PROTOCOL, it answered with something
 * else than a hello answer. The handle stays usable: synchronous calls keep
 * trying to connect until their deadline, and async sends try once more.
 */
int allocdb_connect(allocdb_client *c, const char *addrs);
/* Closes the connection; requests in flight become ALLOCDB_REPLY_LOST replies (async). The
 * next request reconnects. */
void allocdb_disconnect(allocdb_client *c);
bool allocdb_is_connected(const allocdb_client *c);

/* What the current connection's hello_ok announced. ALLOCDB_ERR_CONNECTION if not connected. */
struct allocdb_server_info {
    char address[264];         /* HOST:PORT connected to */
    allocdb_u128 cluster_id;
    uint64_t replica_id;
    uint64_t view;
    uint64_t slot_duration_ms; /* a TTL in ms becomes ceil(ttl / slot_duration_ms) slots */
    uint32_t max_batch;        /* most commands in one submit frame */
    uint32_t max_body;         /* largest request body the server accepts */
};
int allocdb_server_info(const allocdb_client *c, struct allocdb_server_info *out);

/* A description of the handle's last failure (never NULL; "" if none). */
const char *allocdb_last_error(const allocdb_client *c);

/* ---- commands and results -------------------------------------------------------------------- */

enum allocdb_command_kind {
    ALLOCDB_CREATE_RESOURCE = 1, /* target: resource_id */
    ALLOCDB_RESERVE = 2,         /* target: resource_id; holder_id; ttl_ms >= 1 */
    ALLOCDB_CONFIRM = 3,         /* target: reservation_id; holder_id */
    ALLOCDB_RELEASE = 4,         /* target: reservation_id; holder_id */
};

struct allocdb_command {
    uint8_t kind;               /* enum allocdb_command_kind */
    allocdb_u128 operation_id;  /* 0: the library generates one and writes it back here */
    allocdb_u128 target;        /* resource_id or reservation_id, by kind */
    allocdb_u128 holder_id;     /* 0 for create_resource */
    uint64_t ttl_ms;            /* reserve only; 0 otherwise */
};

struct allocdb_result {
    uint8_t outcome;             /* enum allocdb_outcome */
    uint8_t code;                /* within the outcome class: allocdb_result_name() */
    bool from_retry_cache;       /* committed earlier; this is the stored result of a retry */
    uint64_t applied_lsn;        /* committed: the LSN of the entry */
    allocdb_u128 reservation_id; /* committed reserve ok: the new reservation (a fencing token) */
    uint64_t deadline_slot;      /* committed reserve ok: expires after this slot */
    allocdb_u128 operation_id;   /* the operation id sent (synchronous calls; 0 in async replies,
                                  * where it is the one written back into your command) */
    uint32_t attempts;           /* synchronous calls: how many times it was sent */
};

/*
 * Synchronous writes. operation_id 0 = generate one (returned in out->operation_id); pass the
 * id of an earlier attempt to retry it. Retries indefinite outcomes with the same operation id
 * until the retry deadline, reconnecting (and following not_primary hints) as needed.
 * Returns ALLOCDB_OK with *out holding the outcome — committed, rejected, or indefinite once the
 * deadline passed; ALLOCDB_ERR_UNREACHABLE if no attempt ever reached a server (out is then
 * indefinite/unreachable with the operation id filled in); ALLOCDB_ERR_INVALID, _BUSY, _NOMEM.
 */
int allocdb_create_resource(allocdb_client *c, allocdb_u128 operation_id,
                            allocdb_u128 resource_id, struct allocdb_result *out);
int allocdb_reserve(allocdb_client *c, allocdb_u128 operation_id, allocdb_u128 resource_id,
                    allocdb_u128 holder_id, uint64_t ttl_ms, struct allocdb_result *out);
int allocdb_confirm(allocdb_client *c, allocdb_u128 operation_id, allocdb_u128 reservation_id,
                    allocdb_u128 holder_id, struct allocdb_result *out);
int allocdb_release(allocdb_client *c, allocdb_u128 operation_id, allocdb_u128 reservation_id,
                    allocdb_u128 holder_id, struct allocdb_result *out);

/*
 * A batch: n commands, n results (results[i] answers cmds[i]). Zero operation ids are
 * generated and written back into cmds. The batch is split into frames of at most the server's
 * max_batch commands; each command gets its own LSN and result. Retries resend only the
 * commands still unresolved. Returns as the single calls do.
 */
int allocdb_submit(allocdb_client *c, struct allocdb_command *cmds, size_t n,
                   struct allocdb_result *results);

/* ---- reads and operator requests ------------------------------------------------------------- */

enum allocdb_read {
    ALLOCDB_READ_FOUND = 0,
    ALLOCDB_READ_NOT_FOUND = 1,
    ALLOCDB_READ_RETIRED = 2,           /* the reservation aged out of history */
    ALLOCDB_READ_FENCE_NOT_APPLIED = 3, /* the server has not applied min_lsn yet: not yet,
                                         * ask again (applied_lsn says how far it is) */
};
enum allocdb_resource_state {
    ALLOCDB_RESOURCE_AVAILABLE = 0,
    ALLOCDB_RESOURCE_RESERVED = 1,
    ALLOCDB_RESOURCE_CONFIRMED = 2,
};
enum allocdb_reservation_state {
    ALLOCDB_RESERVATION_RESERVED = 0,
    ALLOCDB_RESERVATION_CONFIRMED = 1,
    ALLOCDB_RESERVATION_RELEASED = 2,
    ALLOCDB_RESERVATION_EXPIRED = 3,
};
const char *allocdb_read_name(uint8_t read);                   /* "found", ... */
const char *allocdb_resource_state_name(uint8_t state);       /* "available", ... */
const char *allocdb_reservation_state_name(uint8_t state);    /* "reserved", ... */

/* The view fields are meaningful when read == ALLOCDB_READ_FOUND. */
struct allocdb_resource {
    uint8_t read;                        /* enum allocdb_read */
    uint8_t state;                       /* enum allocdb_resource_state */
    uint64_t applied_lsn;                /* the server's applied LSN when it answered */
    allocdb_u128 resource_id;
    allocdb_u128 current_reservation_id; /* 0 = none */
    uint64_t version;                    /* +1 on every state transition */
};

struct allocdb_reservation {
    uint8_t read;  /* enum allocdb_read */
    uint8_t state; /* enum allocdb_reservation_state */
    uint64_t applied_lsn;
    allocdb_u128 reservation_id;
    allocdb_u128 resource_id;
    allocdb_u128 holder_id;
    uint64_t created_lsn;
    uint64_t deadline_slot;
    uint64_t released_lsn;      /* 0 = none */
    uint64_t retire_after_slot; /* 0 = none */
};

struct allocdb_tick {
    uint64_t slot;                 /* the server's current slot */
    uint64_t expirations_proposed; /* expire entries this tick proposed */
};

/*
 * Synchronous reads: min_lsn 0 = no fence; otherwise the server answers only once it has
 * applied min_lsn (else read = ALLOCDB_READ_FENCE_NOT_APPLIED, returned at once: the caller
 * decides whether to wait). Reads are retried (reconnecting, following not_primary) until the
 * deadline; ALLOCDB_ERR_TIMEOUT if none was answered, ALLOCDB_ERR_UNREACHABLE if no server was
 * reached, ALLOCDB_ERR_SERVER for a definite refusal.
 */
int allocdb_get_resource(allocdb_client *c, allocdb_u128 resource_id, uint64_t min_lsn,
                         struct allocdb_resource *out);
int allocdb_get_reservation(allocdb_client *c, allocdb_u128 reservation_id, uint64_t min_lsn,
                            struct allocdb_reservation *out);
/* Forces an expiration tick (an operator request; tests use it with short slots). */
int allocdb_tick(allocdb_client *c, struct allocdb_tick *out);
/* The server's metrics / status as a JSON object: *json is malloc'd, NUL-terminated (release it
 * with free()); *len (if not NULL) is its length. */
int allocdb_metrics(allocdb_client *c, char **json, size_t *len);
int allocdb_status(allocdb_client *c, char **json, size_t *len);

/* ---- asynchronous (pipelined) API ------------------------------------------------------------ */
/*
 * Queue requests with allocdb_send_*() — each returns its request id at once, without waiting
 * (the frame is written by allocdb_flush(), by allocdb_poll(), or when the output buffer is
 * full) — then collect replies with allocdb_poll() as they arrive, in any order, matched by
 * request id. Up to the window's number of requests can be in flight. There is no automatic
 * retry here: a request whose connection fails (or that gets no reply within the request
 * timeout, which closes the connection) is answered by an ALLOCDB_REPLY_LOST reply, and its
 * commands are indefinite — resend them with the same operation ids (written back into your
 * commands at send time). A send while disconnected connects first (to the last not_primary
 * hint, if any, then to each address). Do not mix with synchronous calls while requests are in
 * flight (those return ALLOCDB_ERR_BUSY).
 */
int allocdb_send_submit(allocdb_client *c, struct allocdb_command *cmds, uint32_t n,
                        uint64_t *request_id);
int allocdb_send_get_resource(allocdb_client *c, allocdb_u128 resource_id, uint64_t min_lsn,
                              uint64_t *request_id);
int allocdb_send_get_reservation(allocdb_client *c, allocdb_u128 reservation_id, uint64_t min_lsn,
                                 uint64_t *request_id);
int allocdb_send_tick(allocdb_client *c, uint64_t *request_id);
int allocdb_send_metrics(allocdb_client *c, uint64_t *request_id);
int allocdb_send_status(allocdb_client *c, uint64_t *request_id);

/* Writes everything queued (one write(2) when the socket has room), waiting at most
 * timeout_ms (-1: the request timeout). ALLOCDB_OK when nothing is left; ALLOCDB_ERR_TIMEOUT
 * when output is left (the connection stays); ALLOCDB_ERR_CONNECTION if the connection failed
 * (its requests come back as LOST replies). With timeout_ms 0 it never waits: it writes what
 * the socket takes now. */
int allocdb_flush(allocdb_client *c, int timeout_ms);

/* Requests sent and not yet returned by allocdb_poll(). */
uint32_t allocdb_in_flight(const allocdb_client *c);

enum allocdb_reply_kind {
    ALLOCDB_REPLY_SUBMIT = 1,      /* count results: allocdb_reply_result() */
    ALLOCDB_REPLY_RESOURCE = 2,    /* u.resource */
    ALLOCDB_REPLY_RESERVATION = 3, /* u.reservation */
    ALLOCDB_REPLY_TICK = 4,        /* u.tick */
    ALLOCDB_REPLY_TEXT = 5,        /* metrics/status: u.text (JSON) */
    ALLOCDB_REPLY_NOT_PRIMARY = 6, /* u.not_primary; the next reconnect goes to the hint */
    ALLOCDB_REPLY_ERROR = 7,       /* u.error: the server refused the request */
    ALLOCDB_REPLY_LOST = 8,        /* no reply will come: u.lost_code is
                                    * ALLOCDB_INDEFINITE_CONNECTION_LOST or _CLIENT_TIMEOUT */
};

enum allocdb_request_kind {
    ALLOCDB_REQ_SUBMIT = 2,
    ALLOCDB_REQ_GET_RESOURCE = 3,
    ALLOCDB_REQ_GET_RESERVATION = 4,
    ALLOCDB_REQ_TICK = 5,
    ALLOCDB_REQ_METRICS = 6,
    ALLOCDB_REQ_STATUS = 7,
};

/* Server error frame codes (allocdb-protocol(7)). */
enum allocdb_server_error {
    ALLOCDB_SERVER_BAD_FRAME = 1,
    ALLOCDB_SERVER_BAD_CHECKSUM = 2,
    ALLOCDB_SERVER_TOO_LARGE = 3,
    ALLOCDB_SERVER_BAD_BODY = 4,
    ALLOCDB_SERVER_UNSUPPORTED_VERSION = 5,
    ALLOCDB_SERVER_WRONG_CLUSTER = 6,
    ALLOCDB_SERVER_UNAVAILABLE = 7,
    ALLOCDB_SERVER_TIMEOUT = 8,
    ALLOCDB_SERVER_OVERLOADED = 9,
    ALLOCDB_SERVER_TOO_MANY_CONNECTIONS = 10,
    ALLOCDB_SERVER_SHUTTING_DOWN = 11,
    ALLOCDB_SERVER_BATCH_TOO_LARGE = 12,
    ALLOCDB_SERVER_IDLE = 13,
    ALLOCDB_SERVER_HANDSHAKE = 14, /* a request before hello, or a second hello (a client bug) */
};
const char *allocdb_server_error_name(uint16_t code); /* "overloaded", ... */

/* A reply. Pointers in it (text, error message, submit results) point into the handle's
 * buffer and stay valid until the next call on the handle. */
struct allocdb_reply {
    uint64_t request_id;
    uint8_t kind;         /* enum allocdb_reply_kind */
    uint8_t request_kind; /* enum allocdb_request_kind: what was asked */
    uint32_t count;       /* submit: commands sent = results (also for LOST/ERROR/NOT_PRIMARY) */
    union {
        struct allocdb_resource resource;
        struct allocdb_reservation reservation;
        struct allocdb_tick tick;
        struct {
            const char *json; /* not NUL-terminated */
            size_t len;
        } text;
        struct {
            uint64_t view;
            char hint[256]; /* HOST:PORT of the primary, "" if unknown */
        } not_primary;
        struct {
            uint16_t code; /* enum allocdb_server_error */
            const char *message; /* not NUL-terminated */
            size_t message_len;
        } error;
        uint8_t lost_code;
    } u;
    const unsigned char *priv_results; /* internal */
};

/*
 * Waits at most timeout_ms (0: do not wait; -1: forever) for the next reply. First writes
 * what of the queued output the socket takes. Returns 1 with *out filled, 0 if none arrived in
 * time (or nothing is in flight), or a negative error. Before returning 0 it reads what the
 * socket holds without waiting, even with nothing in flight: with timeout 0 it returns every
 * reply that has come, and it notices the server closing the connection (allocdb_socket() is
 * then -1; requests in flight come back as LOST replies).
 */
int allocdb_poll(allocdb_client *c, int timeout_ms, struct allocdb_reply *out);

/*
 * Event loops (one thread driving many handles with poll(2), epoll(7), libevent ...).
 * allocdb_socket() is the handle's connected socket, -1 when it is not connected. Watch it for
 * reading, and for writing while allocdb_wants_write() says queued output waits for room in
 * the socket. The socket is the library's: do not read, write or close it; it changes when the
 * handle reconnects (allocdb_connect(), or a send on a disconnected handle). Then:
 *   readable  call allocdb_poll(c, 0, &r) until it returns 0; if allocdb_socket() is -1
 *             afterwards, the connection is gone (allocdb_last_error() says why);
 *   writable  call allocdb_flush(c, 0);
 *   sends     queue with allocdb_send_*(), then allocdb_flush(c, 0) once for all of them.
 * Nothing of this waits, with two exceptions a loop can avoid: a send on a disconnected handle
 * connects first (check allocdb_socket() before sending), and a send whose frame does not fit
 * the output buffer beside output not yet written waits (at most the request timeout) for the
 * socket to take it. The buffer holds 64 KiB, or one frame if larger: a loop that queues at most
 * 64 KiB of frames from a moment allocdb_wants_write() was false (or one frame of any size)
 * never waits there. A submit of n commands is a frame of 40 + 88 n bytes.
 */
int allocdb_socket(const allocdb_client *c);
bool allocdb_wants_write(const allocdb_client *c);

/* The i-th result of a reply to a submit (i < count). For SUBMIT, the server's result; for
 * LOST, indefinite with u.lost_code; for NOT_PRIMARY, rejected not_primary; for ERROR,
 * rejected overloaded / refused, or indefinite when the error leaves the outcome open.
 * operation_id and attempts are 0. */
int allocdb_reply_result(const struct allocdb_reply *r, uint32_t i, struct allocdb_result *out);

#ifdef __cplusplus
}
#endif

#endif
