/*
 * net/proto.c — encode and decode client protocol frames. The layout is in net/proto.h; the
 * reference for client authors is man/allocdb-protocol.7.
 *
 * Decoders trust nothing: every length is checked before it is used, every reserved byte must
 * be zero and every enumerated field in range, so each frame has exactly one encoding and a
 * later version can give the spare bits meaning. Encoders assert the same rules (an encoder
 * that wrote something its own decoder rejects is a bug), except proto_put_command: a client
 * may send an invalid command on purpose, and the server answers it with invalid_request.
 */
#include "config.h"

#include "net/proto.h"

#include "common/assert.h"
#include "common/crc32c.h"
#include "common/le.h"
#include "vocab/vocab.h"

#include <string.h>

/* Header fields. */
#define OFF_MAGIC 0
#define OFF_VERSION 4
#define OFF_KIND 6
#define OFF_FLAGS 7
#define OFF_REQUEST_ID 8
#define OFF_BODY_LEN 16
#define OFF_RESERVED 20
#define OFF_CRC 28
ADB_STATIC_ASSERT(OFF_CRC + 4 == PROTO_HEADER_SIZE, "crc is the last header field");

/* Body sizes of the fixed-size kinds. */
#define HELLO_SIZE 24
#define HELLO_OK_SIZE 56
#define READ_SIZE 24
#define RESOURCE_SIZE 64
#define RESERVATION_SIZE 96
#define TICK_OK_SIZE 16
#define NOT_PRIMARY_PREFIX 16
#define ERROR_PREFIX 8

#define RESULT_FLAG_RETRY 0x01u

ADB_STATIC_ASSERT(PROTO_SUBMIT_PREFIX + (u64)PROTO_BATCH_MAX * PROTO_COMMAND_SIZE <= PROTO_BODY_MAX,
                  "a full batch fits the largest body");
ADB_STATIC_ASSERT(PROTO_BATCH_MAX * 2 > (PROTO_BODY_MAX - PROTO_SUBMIT_PREFIX) / PROTO_COMMAND_SIZE,
                  "the batch limit is the largest power of two that fits");
ADB_STATIC_ASSERT(ERROR_PREFIX + (u64)PROTO_TEXT_MAX <= PROTO_BODY_MAX, "a message fits a body");

/* ---- names ---------------------------------------------------------------------------------- */

const char *proto_kind_name(u8 kind)
{
    switch (kind) {
    case PROTO_HELLO: return "hello";
    case PROTO_SUBMIT: return "submit";
    case PROTO_GET_RESOURCE: return "get_resource";
    case PROTO_GET_RESERVATION: return "get_reservation";
    case PROTO_TICK: return "tick";
    case PROTO_METRICS: return "metrics";
    case PROTO_STATUS: return "status";
    case PROTO_HELLO_OK: return "hello_ok";
    case PROTO_SUBMIT_RESULT: return "submit_result";
    case PROTO_RESOURCE: return "resource";
    case PROTO_RESERVATION: return "reservation";
    case PROTO_TICK_OK: return "tick_ok";
    case PROTO_METRICS_OK: return "metrics_ok";
    case PROTO_STATUS_OK: return "status_ok";
    case PROTO_NOT_PRIMARY: return "not_primary";
    case PROTO_ERROR: return "error";
    }
    return "unknown";
}

const char *proto_status_name(enum proto_status s)
{
    switch (s) {
    case PROTO_OK: return "ok";
    case PROTO_SHORT: return "short frame";
    case PROTO_BAD_MAGIC: return "bad magic";
    case PROTO_BAD_VERSION: return "unsupported version";
    case PROTO_BAD_KIND: return "unknown frame kind";
    case PROTO_BAD_FLAGS: return "flags not zero";
    case PROTO_BAD_RESERVED: return "reserved bytes not zero";
    case PROTO_TOO_LARGE: return "over the size limit";
    case PROTO_BAD_CRC: return "checksum mismatch";
    case PROTO_BAD_LENGTH: return "wrong body length for the kind";
    case PROTO_BAD_VALUE: return "field out of range";
    }
    return "unknown";
}

const char *proto_reject_name(u8 code)
{
    switch (code) {
    case PROTO_REJECT_INVALID_REQUEST: return "invalid_request";
    case PROTO_REJECT_COMMAND_TOO_LARGE: return "command_too_large";
    case PROTO_REJECT_SLOT_OVERFLOW: return "slot_overflow";
    case PROTO_REJECT_OVERLOADED: return "overloaded";
    case PROTO_REJECT_LSN_EXHAUSTED: return "lsn_exhausted";
    case PROTO_REJECT_NOT_PRIMARY: return "not_primary";
    case PROTO_REJECT_NO_SPACE: return "no_space";
    }
    return "unknown";
}

const char *proto_indefinite_name(u8 code)
{
    switch (code) {
    case PROTO_INDEFINITE_TIMEOUT: return "timeout";
    case PROTO_INDEFINITE_STORAGE_FAILURE: return "storage_failure";
    case PROTO_INDEFINITE_HALTED: return "halted";
    case PROTO_INDEFINITE_WORKER_RESTARTED: return "worker_restarted";
    case PROTO_INDEFINITE_SHUTTING_DOWN: return "shutting_down";
    case PROTO_INDEFINITE_VIEW_CHANGE: return "view_change";
    }
    return "unknown";
}

const char *proto_result_name(u8 outcome, u8 code)
{
    switch (outcome) {
    case PROTO_COMMITTED: return sm_result_name((enum sm_result)code);
    case PROTO_REJECTED: return proto_reject_name(code);
    case PROTO_INDEFINITE: return proto_indefinite_name(code);
    }
    return "unknown";
}

const char *proto_error_name(u16 code)
{
    switch (code) {
    case PROTO_ERR_BAD_FRAME: return "bad_frame";
    case PROTO_ERR_BAD_CHECKSUM: return "bad_checksum";
    case PROTO_ERR_TOO_LARGE: return "too_large";
    case PROTO_ERR_BAD_BODY: return "bad_body";
    case PROTO_ERR_UNSUPPORTED_VERSION: return "unsupported_version";
    case PROTO_ERR_WRONG_CLUSTER: return "wrong_cluster";
    case PROTO_ERR_UNAVAILABLE: return "unavailable";
    case PROTO_ERR_TIMEOUT: return "timeout";
    case PROTO_ERR_OVERLOADED: return "overloaded";
    case PROTO_ERR_TOO_MANY_CONNECTIONS: return "too_many_connections";
    case PROTO_ERR_SHUTTING_DOWN: return "shutting_down";
    case PROTO_ERR_BATCH_TOO_LARGE: return "batch_too_large";
    case PROTO_ERR_IDLE: return "idle";
    case PROTO_ERR_HANDSHAKE: return "handshake";
    }
    return "unknown";
}

/* ---- value ranges --------------------------------------------------------------------------- */

static bool kind_known(u8 kind)
{
    return strcmp(proto_kind_name(kind), "unknown") != 0;
}

static bool result_code_valid(u8 outcome, u8 code)
{
    switch (outcome) {
    case PROTO_COMMITTED: return code < SM_RESULT_COUNT;
    case PROTO_REJECTED: return code >= PROTO_REJECT_INVALID_REQUEST && code <= PROTO_REJECT_MAX;
    case PROTO_INDEFINITE:
        return code >= PROTO_INDEFINITE_TIMEOUT && code <= PROTO_INDEFINITE_VIEW_CHANGE;
    }
    return false;
}

static bool error_code_valid(u16 code)
{
    return code >= PROTO_ERR_BAD_FRAME && code <= PROTO_ERR_HANDSHAKE;
}

/* A server must be able to accept a full batch within its own body limit, and a client divides
 * by the slot duration. */
static bool hello_ok_valid(const struct proto_hello_ok *v)
{
    return v->max_batch >= 1 && v->max_batch <= PROTO_BATCH_MAX && v->slot_duration_ms >= 1 &&
           v->max_body <= PROTO_BODY_MAX &&
           v->max_body >= PROTO_SUBMIT_PREFIX + (u64)v->max_batch * PROTO_COMMAND_SIZE;
}

u32 proto_body_size(u8 kind)
{
    switch (kind) {
    case PROTO_HELLO: return HELLO_SIZE;
    case PROTO_GET_RESOURCE:
    case PROTO_GET_RESERVATION: return READ_SIZE;
    case PROTO_TICK:
    case PROTO_METRICS:
    case PROTO_STATUS: return 0;
    case PROTO_HELLO_OK: return HELLO_OK_SIZE;
    case PROTO_RESOURCE: return RESOURCE_SIZE;
    case PROTO_RESERVATION: return RESERVATION_SIZE;
    case PROTO_TICK_OK: return TICK_OK_SIZE;
    case PROTO_SUBMIT:
    case PROTO_SUBMIT_RESULT:
    case PROTO_METRICS_OK:
    case PROTO_STATUS_OK:
    case PROTO_NOT_PRIMARY:
    case PROTO_ERROR: return UINT32_MAX;
    }
    ADB_ASSERT(!"proto_body_size: unknown kind");
    return 0;
}

/* ---- frame header --------------------------------------------------------------------------- */

static u32 frame_crc(const u8 *frame, u32 body_len)
{
    return crc32c(crc32c(0, frame, OFF_CRC), frame + PROTO_HEADER_SIZE, body_len);
}

enum proto_status proto_header_decode(const u8 *buf, size_t len, u32 body_max,
                                      struct proto_header *out)
{
    ADB_ASSERT(body_max <= PROTO_BODY_MAX);
    /* The reader has not got the whole header yet. */
    if (len < PROTO_HEADER_SIZE)
        return PROTO_SHORT;
    /* Not this protocol at all (an HTTP request, a stray port scan). */
    if (le_get_u32(buf + OFF_MAGIC) != PROTO_MAGIC)
        return PROTO_BAD_MAGIC;
    /* Another version lays out bodies differently: never guess. */
    if (le_get_u16(buf + OFF_VERSION) != PROTO_VERSION)
        return PROTO_BAD_VERSION;
    u8 kind = buf[OFF_KIND];
    if (!kind_known(kind))
        return PROTO_BAD_KIND;
    /* Spare bits and bytes must be zero so a later version can give them meaning. */
    if (buf[OFF_FLAGS] != 0)
        return PROTO_BAD_FLAGS;
    if (!le_all_zero(buf + OFF_RESERVED, OFF_CRC - OFF_RESERVED))
        return PROTO_BAD_RESERVED;
    /* The bound is checked before the length sizes any buffer. */
    u32 body_len = le_get_u32(buf + OFF_BODY_LEN);
    if (body_len > body_max)
        return PROTO_TOO_LARGE;
    /* A fixed-size kind with another length is refused before its body is read. */
    u32 size = proto_body_size(kind);
    if (size != UINT32_MAX && body_len != size)
        return PROTO_BAD_LENGTH;

    out->kind = kind;
    out->flags = 0;
    out->request_id = le_get_u64(buf + OFF_REQUEST_ID);
    out->body_len = body_len;
    return PROTO_OK;
}

enum proto_status proto_frame_check(const u8 *frame, size_t len)
{
    if (len < PROTO_HEADER_SIZE)
        return PROTO_SHORT;
    u32 body_len = le_get_u32(frame + OFF_BODY_LEN);
    if (len - PROTO_HEADER_SIZE < body_len)
        return PROTO_SHORT;
    /* The frame is exactly header + body; what follows belongs to no frame here. */
    if (len - PROTO_HEADER_SIZE > body_len)
        return PROTO_BAD_LENGTH;
    if (frame_crc(frame, body_len) != le_get_u32(frame + OFF_CRC))
        return PROTO_BAD_CRC;
    return PROTO_OK;
}

size_t proto_frame_finish(u8 *buf, size_t cap, u8 kind, u64 request_id, u32 body_len)
{
    ADB_ASSERT(kind_known(kind));
    ADB_ASSERT(body_len <= PROTO_BODY_MAX);
    u32 size = proto_body_size(kind);
    ADB_ASSERT(size == UINT32_MAX || size == body_len);
    ADB_ASSERT(cap >= PROTO_HEADER_SIZE && cap - PROTO_HEADER_SIZE >= body_len);

    le_put_u32(buf + OFF_MAGIC, PROTO_MAGIC);
    le_put_u16(buf + OFF_VERSION, PROTO_VERSION);
    buf[OFF_KIND] = kind;
    buf[OFF_FLAGS] = 0;
    le_put_u64(buf + OFF_REQUEST_ID, request_id);
    le_put_u32(buf + OFF_BODY_LEN, body_len);
    memset(buf + OFF_RESERVED, 0, OFF_CRC - OFF_RESERVED);
    le_put_u32(buf + OFF_CRC, frame_crc(buf, body_len));
    return PROTO_HEADER_SIZE + (size_t)body_len;
}

/* ---- hello ---------------------------------------------------------------------------------- */

u32 proto_put_hello(u8 *p, const struct proto_hello *v)
{
    le_put_u32(p + 0, v->version);
    le_put_u32(p + 4, 0);
    le_put_u128(p + 8, v->cluster_id);
    return HELLO_SIZE;
}

/* Any version is well-formed: the server answers one it lacks with unsupported_version. */
enum proto_status proto_get_hello(const u8 *body, u32 len, struct proto_hello *out)
{
    if (len != HELLO_SIZE)
        return PROTO_BAD_LENGTH;
    if (le_get_u32(body + 4) != 0)
        return PROTO_BAD_RESERVED;
    out->version = le_get_u32(body + 0);
    out->cluster_id = le_get_u128(body + 8);
    return PROTO_OK;
}

u32 proto_put_hello_ok(u8 *p, const struct proto_hello_ok *v)
{
    ADB_ASSERT(hello_ok_valid(v));
    le_put_u32(p + 0, v->version);
    le_put_u32(p + 4, v->max_batch);
    le_put_u128(p + 8, v->cluster_id);
    le_put_u64(p + 24, v->replica_id);
    le_put_u64(p + 32, v->slot_duration_ms);
    le_put_u32(p + 40, v->max_body);
    le_put_u32(p + 44, 0);
    le_put_u64(p + 48, v->view);
    return HELLO_OK_SIZE;
}

enum proto_status proto_get_hello_ok(const u8 *body, u32 len, struct proto_hello_ok *out)
{
    if (len != HELLO_OK_SIZE)
        return PROTO_BAD_LENGTH;
    if (le_get_u32(body + 44) != 0)
        return PROTO_BAD_RESERVED;
    struct proto_hello_ok v = {
        .version = le_get_u32(body + 0),
        .max_batch = le_get_u32(body + 4),
        .cluster_id = le_get_u128(body + 8),
        .replica_id = le_get_u64(body + 24),
        .slot_duration_ms = le_get_u64(body + 32),
        .max_body = le_get_u32(body + 40),
        .view = le_get_u64(body + 48),
    };
    if (!hello_ok_valid(&v))
        return PROTO_BAD_VALUE;
    *out = v;
    return PROTO_OK;
}

/* ---- submit and submit_result --------------------------------------------------------------- */

static u32 put_prefix(u8 *p, u32 count)
{
    ADB_ASSERT(count >= 1 && count <= PROTO_BATCH_MAX);
    le_put_u32(p + 0, count);
    le_put_u32(p + 4, 0);
    return PROTO_SUBMIT_PREFIX;
}

/* Checks a count-prefixed body of `item`-byte entries. A count over `limit` is TOO_LARGE when
 * the limit is the caller's (the server answers batch_too_large and keeps the connection);
 * the exact length is checked last, in 64 bits (count * item overflows a u32). */
static enum proto_status get_prefix(const u8 *body, u32 len, u32 item, u32 limit,
                                    enum proto_status over, u32 *count)
{
    if (len < PROTO_SUBMIT_PREFIX)
        return PROTO_BAD_LENGTH;
    if (le_get_u32(body + 4) != 0)
        return PROTO_BAD_RESERVED;
    u32 n = le_get_u32(body + 0);
    if (n == 0)
        return PROTO_BAD_VALUE;
    if (n > limit)
        return over;
    if ((u64)len != PROTO_SUBMIT_PREFIX + (u64)n * item)
        return PROTO_BAD_LENGTH;
    *count = n;
    return PROTO_OK;
}

u32 proto_put_submit_prefix(u8 *p, u32 count)
{
    return put_prefix(p, count);
}

enum proto_status proto_get_submit(const u8 *body, u32 len, u32 max_batch, u32 *count)
{
    ADB_ASSERT(max_batch >= 1 && max_batch <= PROTO_BATCH_MAX);
    return get_prefix(body, len, PROTO_COMMAND_SIZE, max_batch, PROTO_TOO_LARGE, count);
}

u32 proto_put_submit_result_prefix(u8 *p, u32 count)
{
    return put_prefix(p, count);
}

enum proto_status proto_get_submit_result(const u8 *body, u32 len, u32 *count)
{
    return get_prefix(body, len, PROTO_RESULT_SIZE, PROTO_BATCH_MAX, PROTO_BAD_VALUE, count);
}

/* Command fields. */
#define CMD_KIND 0
#define CMD_RESERVED_HEAD 1
#define CMD_OPERATION 8
#define CMD_CLIENT 24
#define CMD_TARGET 40
#define CMD_HOLDER 56
#define CMD_TTL 72
#define CMD_RESERVED_TAIL 80
ADB_STATIC_ASSERT(CMD_RESERVED_TAIL + 8 == PROTO_COMMAND_SIZE, "command layout");

void proto_put_command(u8 *p, const struct proto_command *v)
{
    p[CMD_KIND] = v->kind;
    memset(p + CMD_RESERVED_HEAD, 0, CMD_OPERATION - CMD_RESERVED_HEAD);
    le_put_u128(p + CMD_OPERATION, v->operation_id);
    le_put_u128(p + CMD_CLIENT, v->client_id);
    le_put_u128(p + CMD_TARGET, v->target);
    le_put_u128(p + CMD_HOLDER, v->holder_id);
    le_put_u64(p + CMD_TTL, v->ttl_ms);
    le_put_u64(p + CMD_RESERVED_TAIL, 0);
}

enum proto_status proto_get_command(const u8 *p, struct proto_command *out)
{
    /* expire (5) is proposed by the primary itself; a client can never send one. */
    u8 kind = p[CMD_KIND];
    if (kind < SM_CMD_CREATE_RESOURCE || kind > SM_CMD_RELEASE)
        return PROTO_BAD_VALUE;
    if (!le_all_zero(p + CMD_RESERVED_HEAD, CMD_OPERATION - CMD_RESERVED_HEAD) ||
        le_get_u64(p + CMD_RESERVED_TAIL) != 0)
        return PROTO_BAD_RESERVED;
    struct proto_command v = {
        .kind = kind,
        .operation_id = le_get_u128(p + CMD_OPERATION),
        .client_id = le_get_u128(p + CMD_CLIENT),
        .target = le_get_u128(p + CMD_TARGET),
        .holder_id = le_get_u128(p + CMD_HOLDER),
        .ttl_ms = le_get_u64(p + CMD_TTL),
    };
    /* operation_id 0 means "none" in the dedupe table. */
    if (v.operation_id == 0)
        return PROTO_BAD_VALUE;
    /* Unused fields are zero, so one command has one encoding (and one fingerprint). */
    if (kind == SM_CMD_CREATE_RESOURCE && v.holder_id != 0)
        return PROTO_BAD_VALUE;
    if (kind != SM_CMD_RESERVE && v.ttl_ms != 0)
        return PROTO_BAD_VALUE;
    *out = v;
    return PROTO_OK;
}

/* Result fields. */
#define RES_OUTCOME 0
#define RES_CODE 1
#define RES_FLAGS 2
#define RES_RESERVED_HEAD 3
#define RES_LSN 8
#define RES_RESERVATION 16
#define RES_DEADLINE 32
#define RES_RESERVED_TAIL 40
ADB_STATIC_ASSERT(RES_RESERVED_TAIL + 8 == PROTO_RESULT_SIZE, "result layout");

void proto_put_result(u8 *p, const struct proto_result *v)
{
    ADB_ASSERT(result_code_valid(v->outcome, v->code));
    p[RES_OUTCOME] = v->outcome;
    p[RES_CODE] = v->code;
    p[RES_FLAGS] = v->from_retry_cache ? RESULT_FLAG_RETRY : 0;
    memset(p + RES_RESERVED_HEAD, 0, RES_LSN - RES_RESERVED_HEAD);
    le_put_u64(p + RES_LSN, v->applied_lsn);
    le_put_u128(p + RES_RESERVATION, v->reservation_id);
    le_put_u64(p + RES_DEADLINE, v->deadline_slot);
    le_put_u64(p + RES_RESERVED_TAIL, 0);
}

enum proto_status proto_get_result(const u8 *p, struct proto_result *out)
{
    if (!le_all_zero(p + RES_RESERVED_HEAD, RES_LSN - RES_RESERVED_HEAD) ||
        le_get_u64(p + RES_RESERVED_TAIL) != 0)
        return PROTO_BAD_RESERVED;
    if ((p[RES_FLAGS] & ~RESULT_FLAG_RETRY) != 0)
        return PROTO_BAD_FLAGS;
    if (!result_code_valid(p[RES_OUTCOME], p[RES_CODE]))
        return PROTO_BAD_VALUE;
    out->outcome = p[RES_OUTCOME];
    out->code = p[RES_CODE];
    out->from_retry_cache = (p[RES_FLAGS] & RESULT_FLAG_RETRY) != 0;
    out->applied_lsn = le_get_u64(p + RES_LSN);
    out->reservation_id = le_get_u128(p + RES_RESERVATION);
    out->deadline_slot = le_get_u64(p + RES_DEADLINE);
    return PROTO_OK;
}

/* ---- reads ---------------------------------------------------------------------------------- */

u32 proto_put_read(u8 *p, const struct proto_read *v)
{
    le_put_u128(p + 0, v->id);
    le_put_u64(p + 16, v->min_lsn);
    return READ_SIZE;
}

enum proto_status proto_get_read(const u8 *body, u32 len, struct proto_read *out)
{
    if (len != READ_SIZE)
        return PROTO_BAD_LENGTH;
    out->id = le_get_u128(body + 0);
    out->min_lsn = le_get_u64(body + 16);
    return PROTO_OK;
}

/* Read answers start with read u8, state u8 and 6 reserved bytes. */
#define ANSWER_RESERVED 2
#define ANSWER_LSN 8

static bool answer_valid(u8 read, u8 state, u8 state_max)
{
    return read <= SM_READ_FENCE_NOT_APPLIED && state <= state_max;
}

u32 proto_put_resource(u8 *p, const struct proto_resource *v)
{
    ADB_ASSERT(answer_valid(v->read, v->state, SM_RESOURCE_CONFIRMED));
    p[0] = v->read;
    p[1] = v->state;
    memset(p + ANSWER_RESERVED, 0, ANSWER_LSN - ANSWER_RESERVED);
    le_put_u64(p + 8, v->applied_lsn);
    le_put_u128(p + 16, v->resource_id);
    le_put_u128(p + 32, v->current_reservation_id);
    le_put_u64(p + 48, v->version);
    le_put_u64(p + 56, 0);
    return RESOURCE_SIZE;
}

enum proto_status proto_get_resource(const u8 *body, u32 len, struct proto_resource *out)
{
    if (len != RESOURCE_SIZE)
        return PROTO_BAD_LENGTH;
    if (!le_all_zero(body + ANSWER_RESERVED, ANSWER_LSN - ANSWER_RESERVED) ||
        le_get_u64(body + 56) != 0)
        return PROTO_BAD_RESERVED;
    if (!answer_valid(body[0], body[1], SM_RESOURCE_CONFIRMED))
        return PROTO_BAD_VALUE;
    out->read = body[0];
    out->state = body[1];
    out->applied_lsn = le_get_u64(body + 8);
    out->resource_id = le_get_u128(body + 16);
    out->current_reservation_id = le_get_u128(body + 32);
    out->version = le_get_u64(body + 48);
    return PROTO_OK;
}

u32 proto_put_reservation(u8 *p, const struct proto_reservation *v)
{
    ADB_ASSERT(answer_valid(v->read, v->state, SM_RESERVATION_EXPIRED));
    p[0] = v->read;
    p[1] = v->state;
    memset(p + ANSWER_RESERVED, 0, ANSWER_LSN - ANSWER_RESERVED);
    le_put_u64(p + 8, v->applied_lsn);
    le_put_u128(p + 16, v->reservation_id);
    le_put_u128(p + 32, v->resource_id);
    le_put_u128(p + 48, v->holder_id);
    le_put_u64(p + 64, v->created_lsn);
    le_put_u64(p + 72, v->deadline_slot);
    le_put_u64(p + 80, v->released_lsn);
    le_put_u64(p + 88, v->retire_after_slot);
    return RESERVATION_SIZE;
}

enum proto_status proto_get_reservation(const u8 *body, u32 len, struct proto_reservation *out)
{
    if (len != RESERVATION_SIZE)
        return PROTO_BAD_LENGTH;
    if (!le_all_zero(body + ANSWER_RESERVED, ANSWER_LSN - ANSWER_RESERVED))
        return PROTO_BAD_RESERVED;
    if (!answer_valid(body[0], body[1], SM_RESERVATION_EXPIRED))
        return PROTO_BAD_VALUE;
    out->read = body[0];
    out->state = body[1];
    out->applied_lsn = le_get_u64(body + 8);
    out->reservation_id = le_get_u128(body + 16);
    out->resource_id = le_get_u128(body + 32);
    out->holder_id = le_get_u128(body + 48);
    out->created_lsn = le_get_u64(body + 64);
    out->deadline_slot = le_get_u64(body + 72);
    out->released_lsn = le_get_u64(body + 80);
    out->retire_after_slot = le_get_u64(body + 88);
    return PROTO_OK;
}

/* ---- tick_ok, not_primary, error ------------------------------------------------------------ */

u32 proto_put_tick_ok(u8 *p, const struct proto_tick_ok *v)
{
    le_put_u64(p + 0, v->slot);
    le_put_u64(p + 8, v->expirations_proposed);
    return TICK_OK_SIZE;
}

enum proto_status proto_get_tick_ok(const u8 *body, u32 len, struct proto_tick_ok *out)
{
    if (len != TICK_OK_SIZE)
        return PROTO_BAD_LENGTH;
    out->slot = le_get_u64(body + 0);
    out->expirations_proposed = le_get_u64(body + 8);
    return PROTO_OK;
}

u32 proto_put_not_primary(u8 *p, u64 view, const char *hint, u16 hint_len)
{
    ADB_ASSERT(hint_len <= PROTO_HINT_MAX);
    ADB_ASSERT(hint_len == 0 || memchr(hint, 0, hint_len) == NULL);
    le_put_u64(p + 0, view);
    le_put_u16(p + 8, hint_len);
    memset(p + 10, 0, NOT_PRIMARY_PREFIX - 10);
    if (hint_len != 0)
        memcpy(p + NOT_PRIMARY_PREFIX, hint, hint_len);
    return NOT_PRIMARY_PREFIX + (u32)hint_len;
}

enum proto_status proto_get_not_primary(const u8 *body, u32 len, struct proto_not_primary *out)
{
    if (len < NOT_PRIMARY_PREFIX)
        return PROTO_BAD_LENGTH;
    if (!le_all_zero(body + 10, NOT_PRIMARY_PREFIX - 10))
        return PROTO_BAD_RESERVED;
    u16 hint_len = le_get_u16(body + 8);
    if (hint_len > PROTO_HINT_MAX)
        return PROTO_BAD_VALUE;
    if (len != NOT_PRIMARY_PREFIX + (u32)hint_len)
        return PROTO_BAD_LENGTH;
    /* The hint is handed on as a C string: an embedded NUL would silently shorten it. */
    const u8 *hint = body + NOT_PRIMARY_PREFIX;
    if (hint_len != 0 && memchr(hint, 0, hint_len) != NULL)
        return PROTO_BAD_VALUE;
    out->view = le_get_u64(body + 0);
    if (hint_len != 0)
        memcpy(out->hint, hint, hint_len);
    out->hint[hint_len] = '\0';
    return PROTO_OK;
}

u32 proto_put_error(u8 *p, u16 code, const char *message, u32 message_len)
{
    ADB_ASSERT(error_code_valid(code));
    ADB_ASSERT(message_len <= PROTO_TEXT_MAX);
    ADB_ASSERT(message_len == 0 || memchr(message, 0, message_len) == NULL);
    le_put_u16(p + 0, code);
    le_put_u16(p + 2, 0);
    le_put_u32(p + 4, message_len);
    if (message_len != 0)
        memcpy(p + ERROR_PREFIX, message, message_len);
    return ERROR_PREFIX + message_len;
}

/* The message is for people; only its length and the absence of NUL are checked (it is not
 * validated as UTF-8). */
enum proto_status proto_get_error(const u8 *body, u32 len, struct proto_error *out)
{
    if (len < ERROR_PREFIX)
        return PROTO_BAD_LENGTH;
    if (le_get_u16(body + 2) != 0)
        return PROTO_BAD_RESERVED;
    u16 code = le_get_u16(body + 0);
    u32 message_len = le_get_u32(body + 4);
    if (!error_code_valid(code) || message_len > PROTO_TEXT_MAX)
        return PROTO_BAD_VALUE;
    if (len != ERROR_PREFIX + message_len)
        return PROTO_BAD_LENGTH;
    const u8 *message = body + ERROR_PREFIX;
    if (message_len != 0 && memchr(message, 0, message_len) != NULL)
        return PROTO_BAD_VALUE;
    out->code = code;
    out->message_len = message_len;
    out->message = (const char *)message;
    return PROTO_OK;
}

/* ---- conversions ---------------------------------------------------------------------------- */

/* ttl / d + (remainder != 0) never overflows: the quotient is below UINT64_MAX whenever there
 * is a remainder (d >= 2). A deadline is late, never early, so the division rounds up. */
u64 proto_ttl_slots(u64 ttl_ms, u64 slot_duration_ms)
{
    ADB_ASSERT(slot_duration_ms >= 1);
    return ttl_ms / slot_duration_ms + (ttl_ms % slot_duration_ms != 0);
}
