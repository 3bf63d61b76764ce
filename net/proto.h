/*
 * net/proto.h — the client wire protocol, version 1 (the reference is man/allocdb-protocol.7).
 *
 * A connection carries frames both ways. Every frame is a 32-byte header and a body:
 *
 *   offset size field
 *        0    4 magic        "ADBP" (bytes 41 44 42 50; u32 0x50424441)
 *        4    2 version      1
 *        6    1 kind         enum proto_kind (requests < 0x80, responses >= 0x80)
 *        7    1 flags        0 (every bit reserved)
 *        8    8 request_id   chosen by the client; the response carries the same value, so a
 *                            client may pipeline many requests and match replies by id
 *       16    4 body_len     bytes after the header; <= PROTO_BODY_MAX (and the server's
 *                            announced max_body) — checked before any buffer is sized
 *       20    8 reserved     zero
 *       28    4 crc          CRC32C over header bytes 0..27, then the body
 *
 * All integers are little-endian and fixed width; 128-bit ids are two u64 halves, low first.
 * Bodies have an exact length for their kind (submit: exact for its count); trailing bytes and
 * non-zero reserved bytes are rejected. The body layouts are listed with their structs below.
 *
 * Responses to one connection's requests may arrive in any order (reads can overtake writes).
 *
 * Pure: no I/O, no allocation. Encoders write into a caller buffer (sized by the caller; see
 * proto_frame_finish) and return what they wrote; decoders check everything and return a status.
 */
#ifndef ADB_NET_PROTO_H
#define ADB_NET_PROTO_H

#include "common/types.h"

#define PROTO_MAGIC 0x50424441u /* "ADBP" */
#define PROTO_VERSION 1
#define PROTO_HEADER_SIZE 32
#define PROTO_BODY_MAX (1u << 20) /* hard limit of this protocol version */
#define PROTO_COMMAND_SIZE 88
#define PROTO_RESULT_SIZE 48
#define PROTO_SUBMIT_PREFIX 8            /* count + reserved, before the commands/results */
#define PROTO_BATCH_MAX 8192             /* (PROTO_BODY_MAX - 8) / 88 rounded down to 2^k */
#define PROTO_HINT_MAX 255               /* not_primary address hint */
#define PROTO_TEXT_MAX (PROTO_BODY_MAX - 8) /* error message, metrics/status JSON */

enum proto_kind {
    /* requests */
    PROTO_HELLO = 0x01,           /* body: proto_hello (24) */
    PROTO_SUBMIT = 0x02,          /* body: count u32, reserved u32, count x command (88) */
    PROTO_GET_RESOURCE = 0x03,    /* body: proto_read (24) */
    PROTO_GET_RESERVATION = 0x04, /* body: proto_read (24) */
    PROTO_TICK = 0x05,            /* body: empty */
    PROTO_METRICS = 0x06,         /* body: empty */
    PROTO_STATUS = 0x07,          /* body: empty */
    /* responses */
    PROTO_HELLO_OK = 0x81,        /* body: proto_hello_ok (56) */
    PROTO_SUBMIT_RESULT = 0x82,   /* body: count u32, reserved u32, count x result (48), in
                                   * the order of the request's commands */
    PROTO_RESOURCE = 0x83,        /* body: proto_resource (64) */
    PROTO_RESERVATION = 0x84,     /* body: proto_reservation (96) */
    PROTO_TICK_OK = 0x85,         /* body: proto_tick_ok (16) */
    PROTO_METRICS_OK = 0x86,      /* body: JSON object, UTF-8, no NUL */
    PROTO_STATUS_OK = 0x87,       /* body: JSON object, UTF-8, no NUL */
    PROTO_NOT_PRIMARY = 0xE0,     /* body: proto_not_primary (16 + hint_len) */
    PROTO_ERROR = 0xFF,           /* body: proto_error (8 + message_len) */
};

const char *proto_kind_name(u8 kind); /* "submit", ...; "unknown" */

/* ---- frame header ------------------------------------------------------------------------- */

struct proto_header {
    u8 kind;
    u8 flags;
    u64 request_id;
    u32 body_len;
};

enum proto_status {
    PROTO_OK = 0,
    PROTO_SHORT,        /* fewer bytes than a header (or frame) */
    PROTO_BAD_MAGIC,
    PROTO_BAD_VERSION,
    PROTO_BAD_KIND,     /* not a kind of this version */
    PROTO_BAD_FLAGS,
    PROTO_BAD_RESERVED, /* a reserved field or byte is not zero */
    PROTO_TOO_LARGE,    /* body_len (or a submit's count) above the limit the caller gave */
    PROTO_BAD_CRC,
    PROTO_BAD_LENGTH,   /* body length wrong for the kind (or its count) */
    PROTO_BAD_VALUE,    /* a field out of its range (count 0, unknown read code, ...) */
};

const char *proto_status_name(enum proto_status s);

/*
 * Decodes and checks the header in buf[0..len) without looking at the body: PROTO_SHORT if
 * len < 32; body_len is checked against body_max (<= PROTO_BODY_MAX) so a reader can size its
 * buffer safely, then (BAD_LENGTH) against the exact size of a fixed-size kind. On PROTO_OK
 * fills *out (OUT).
 */
enum proto_status proto_header_decode(const u8 *buf, size_t len, u32 body_max,
                                      struct proto_header *out);

/* Checks the CRC of a whole frame (header as decoded above, body following it): SHORT if len
 * is below 32 + body_len, BAD_LENGTH if above, else BAD_CRC or OK. */
enum proto_status proto_frame_check(const u8 *frame, size_t len);

/*
 * Writes the header for a body already placed at buf + PROTO_HEADER_SIZE and computes the CRC.
 * Returns the frame size. Asserts cap and body_len are in range.
 */
size_t proto_frame_finish(u8 *buf, size_t cap, u8 kind, u64 request_id, u32 body_len);

/* ---- bodies ----------------------------------------------------------------------------- */

/* hello: 0 version u32, 4 reserved u32, 8 cluster_id u128 (0: any cluster). */
struct proto_hello {
    u32 version;
    u128 cluster_id;
};

/* hello_ok: 0 version u32, 4 max_batch u32, 8 cluster_id u128, 24 replica_id u64,
 * 32 slot_duration_ms u64, 40 max_body u32, 44 reserved u32, 48 view u64.
 * 1 <= max_batch <= PROTO_BATCH_MAX, slot_duration_ms >= 1, and a full batch fits max_body:
 * 8 + 88 * max_batch <= max_body <= PROTO_BODY_MAX. */
struct proto_hello_ok {
    u32 version;
    u32 max_batch;
    u128 cluster_id;
    u64 replica_id;
    u64 slot_duration_ms;
    u32 max_body;
    u64 view;
};

/*
 * A client command, 88 bytes:
 *   0 kind u8 (1 create_resource, 2 reserve, 3 confirm, 4 release), 1 reserved (7),
 *   8 operation_id u128 (non-zero), 24 client_id u128,
 *   40 target u128   create_resource, reserve: resource_id; confirm, release: reservation_id
 *   56 holder_id u128 (reserve, confirm, release; zero for create_resource)
 *   72 ttl_ms u64 (reserve; zero otherwise), 80 reserved u64.
 * A well-formed frame may still hold an invalid command: that command alone is answered with
 * the definite rejection invalid_request.
 */
struct proto_command {
    u8 kind;
    u128 operation_id;
    u128 client_id;
    u128 target;
    u128 holder_id;
    u64 ttl_ms;
};

/* Outcome classes of one submitted command (DESIGN.md §4). */
enum proto_outcome {
    PROTO_COMMITTED = 0,  /* code: the state machine's result (enum sm_result) */
    PROTO_REJECTED = 1,   /* code: enum proto_reject; certainly not executed */
    PROTO_INDEFINITE = 2, /* code: enum proto_indefinite; may or may not have executed */
};

enum proto_reject {
    PROTO_REJECT_INVALID_REQUEST = 1,
    PROTO_REJECT_COMMAND_TOO_LARGE = 2,
    PROTO_REJECT_SLOT_OVERFLOW = 3,
    PROTO_REJECT_OVERLOADED = 4,
    PROTO_REJECT_LSN_EXHAUSTED = 5,
    PROTO_REJECT_NOT_PRIMARY = 6,
    PROTO_REJECT_NO_SPACE = 7, /* the disk is full: the WAL cannot grow; retry once space returns */
};
#define PROTO_REJECT_MAX PROTO_REJECT_NO_SPACE

enum proto_indefinite {
    PROTO_INDEFINITE_TIMEOUT = 1,
    PROTO_INDEFINITE_STORAGE_FAILURE = 2,
    PROTO_INDEFINITE_HALTED = 3,
    PROTO_INDEFINITE_WORKER_RESTARTED = 4,
    PROTO_INDEFINITE_SHUTTING_DOWN = 5,
    PROTO_INDEFINITE_VIEW_CHANGE = 6, /* its primary lost its view with the entry uncommitted */
};

const char *proto_reject_name(u8 code);
const char *proto_indefinite_name(u8 code);
/* Name of a result code within its outcome class (committed codes: sm_result_name). */
const char *proto_result_name(u8 outcome, u8 code);

/* A result, 48 bytes: 0 outcome u8, 1 code u8, 2 flags u8 (bit 0 from_retry_cache), 3 reserved
 * (5), 8 applied_lsn u64, 16 reservation_id u128, 32 deadline_slot u64, 40 reserved u64. */
struct proto_result {
    u8 outcome;
    u8 code;
    bool from_retry_cache;
    u64 applied_lsn;
    u128 reservation_id;
    u64 deadline_slot;
};

/* get_resource / get_reservation: 0 id u128, 16 min_lsn u64 (0: no fence). */
struct proto_read {
    u128 id;
    u64 min_lsn;
};

/* Read answers (enum sm_read values): found 0, not_found 1, retired 2, fence_not_applied 3. */

/* resource: 0 read u8, 1 state u8, 2 reserved (6), 8 applied_lsn u64 (the server's),
 * 16 resource_id u128, 32 current_reservation_id u128, 48 version u64, 56 reserved u64. */
struct proto_resource {
    u8 read;
    u8 state;
    u64 applied_lsn;
    u128 resource_id;
    u128 current_reservation_id;
    u64 version;
};

/* reservation: 0 read u8, 1 state u8, 2 reserved (6), 8 applied_lsn u64, 16 reservation_id,
 * 32 resource_id, 48 holder_id (u128 each), 64 created_lsn, 72 deadline_slot, 80 released_lsn,
 * 88 retire_after_slot (u64 each). */
struct proto_reservation {
    u8 read;
    u8 state;
    u64 applied_lsn;
    u128 reservation_id;
    u128 resource_id;
    u128 holder_id;
    u64 created_lsn;
    u64 deadline_slot;
    u64 released_lsn;
    u64 retire_after_slot;
};

/* tick_ok: 0 slot u64 (the server's current slot), 8 expirations_proposed u64. */
struct proto_tick_ok {
    u64 slot;
    u64 expirations_proposed;
};

/* not_primary: 0 view u64, 8 hint_len u16, 10 reserved (6), 16 hint (HOST:PORT, no NUL). */
struct proto_not_primary {
    u64 view;
    char hint[PROTO_HINT_MAX + 1]; /* NUL-terminated after decode */
};

enum proto_error_code {
    PROTO_ERR_BAD_FRAME = 1,           /* magic, version, kind, flags or reserved; closes */
    PROTO_ERR_BAD_CHECKSUM = 2,        /* closes */
    PROTO_ERR_TOO_LARGE = 3,           /* body_len above max_body; closes */
    PROTO_ERR_BAD_BODY = 4,            /* wrong length or value for the kind; closes */
    PROTO_ERR_UNSUPPORTED_VERSION = 5, /* hello with a version the server lacks; closes */
    PROTO_ERR_WRONG_CLUSTER = 6,       /* hello names another cluster; closes */
    PROTO_ERR_UNAVAILABLE = 7,         /* a read could not be served now (worker restarting) */
    PROTO_ERR_TIMEOUT = 8,             /* a read timed out */
    PROTO_ERR_OVERLOADED = 9,          /* the whole request was refused: too much in flight */
    PROTO_ERR_TOO_MANY_CONNECTIONS = 10, /* sent once to a connection over the limit; closes */
    PROTO_ERR_SHUTTING_DOWN = 11,      /* the server is stopping; closes */
    PROTO_ERR_BATCH_TOO_LARGE = 12,    /* submit count above the announced max_batch */
    PROTO_ERR_IDLE = 13,               /* idle or header timeout; closes */
    PROTO_ERR_HANDSHAKE = 14,          /* a request before hello, or a second hello; closes */
};

const char *proto_error_name(u16 code);

/* error: 0 code u16, 2 reserved u16, 4 message_len u32, 8 message (UTF-8, no NUL). */
struct proto_error {
    u16 code;
    u32 message_len;
    const char *message; /* points into the body after decode (not NUL-terminated) */
};

/*
 * Body codecs. put_* write exactly the body size at p (the caller reserved room) and return it;
 * get_* check the exact length, reserved bytes and value ranges and fill *out (OUT) on PROTO_OK.
 */
u32 proto_put_hello(u8 *p, const struct proto_hello *v);
enum proto_status proto_get_hello(const u8 *body, u32 len, struct proto_hello *out);
u32 proto_put_hello_ok(u8 *p, const struct proto_hello_ok *v);
enum proto_status proto_get_hello_ok(const u8 *body, u32 len, struct proto_hello_ok *out);

/* submit: the prefix, then count commands. get_submit checks 1 <= count <= max_batch (count 0:
 * BAD_VALUE; above max_batch: TOO_LARGE, answered with batch_too_large) and the exact length;
 * each command is then decoded with get_command. */
u32 proto_put_submit_prefix(u8 *p, u32 count);
enum proto_status proto_get_submit(const u8 *body, u32 len, u32 max_batch, u32 *count);
void proto_put_command(u8 *p, const struct proto_command *v);
/* PROTO_OK, or PROTO_BAD_VALUE / PROTO_BAD_RESERVED for a command that is answered with
 * invalid_request (unknown kind, operation_id 0, a field its kind does not use is non-zero). */
enum proto_status proto_get_command(const u8 *p, struct proto_command *out);

/* submit_result: the prefix, then count results. */
u32 proto_put_submit_result_prefix(u8 *p, u32 count);
enum proto_status proto_get_submit_result(const u8 *body, u32 len, u32 *count);
void proto_put_result(u8 *p, const struct proto_result *v);
enum proto_status proto_get_result(const u8 *p, struct proto_result *out);

u32 proto_put_read(u8 *p, const struct proto_read *v);
enum proto_status proto_get_read(const u8 *body, u32 len, struct proto_read *out);
u32 proto_put_resource(u8 *p, const struct proto_resource *v);
enum proto_status proto_get_resource(const u8 *body, u32 len, struct proto_resource *out);
u32 proto_put_reservation(u8 *p, const struct proto_reservation *v);
enum proto_status proto_get_reservation(const u8 *body, u32 len, struct proto_reservation *out);
u32 proto_put_tick_ok(u8 *p, const struct proto_tick_ok *v);
enum proto_status proto_get_tick_ok(const u8 *body, u32 len, struct proto_tick_ok *out);
/* hint_len <= PROTO_HINT_MAX */
u32 proto_put_not_primary(u8 *p, u64 view, const char *hint, u16 hint_len);
enum proto_status proto_get_not_primary(const u8 *body, u32 len, struct proto_not_primary *out);
u32 proto_put_error(u8 *p, u16 code, const char *message, u32 message_len);
enum proto_status proto_get_error(const u8 *body, u32 len, struct proto_error *out);

/* Exact body size of a fixed-size kind; 0 for empty bodies; UINT32_MAX for variable ones. */
u32 proto_body_size(u8 kind);

/* ---- conversions ------------------------------------------------------------------------ */

/* TTL in milliseconds to slots, rounding up; saturates at UINT64_MAX. slot_duration_ms >= 1. */
u64 proto_ttl_slots(u64 ttl_ms, u64 slot_duration_ms);

#endif
