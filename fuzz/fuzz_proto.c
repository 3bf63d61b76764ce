/*
 * fuzz/fuzz_proto.c — fuzz target: the client wire protocol codec (net/proto.h).
 *
 * The input is taken as bytes read from a client connection: a frame, perhaps followed by more
 * bytes. Properties:
 *   - decoding never reads outside its input (bodies are decoded from an exactly-sized copy)
 *     and returns a known status; on failure the outputs are left alone;
 *   - an accepted header re-encodes (proto_frame_finish) to the identical 28 bytes before the
 *     crc; frame_check agrees with the header's body_len: SHORT below it, BAD_LENGTH above it;
 *   - an accepted body of any kind re-encodes to the identical bytes (one encoding per
 *     message, no field ignored), and so does every accepted command of a submit and every
 *     accepted result of a submit_result; get_submit's batch limit is exact;
 *   - a valid reserve's ttl converts to the fewest slots that cover it.
 * Random bytes almost never carry a valid CRC, so each input is checked twice: as given, and
 * (when its header declares a body that is all there) with the crc recomputed, which lets the
 * fuzzer reach every body decoder; the resealed copy must then pass frame_check.
 */
#include "config.h"

#include "common/crc32c.h"
#include "common/le.h"
#include "fuzz/fuzz.h"
#include "net/proto.h"
#include "vocab/vocab.h"

#include <stdlib.h>
#include <string.h>

/* Offsets of the header layout in net/proto.h. */
#define OFF_BODY_LEN 16
#define OFF_CRC 28

/* Output structs start filled with this; a failed decode must leave it there. */
#define POISON 0xA5

static bool poisoned(const void *p, size_t len)
{
    const u8 *b = p;
    for (size_t i = 0; i < len; i++)
        if (b[i] != POISON)
            return false;
    return true;
}

static void check_status(enum proto_status s)
{
    FUZZ_CHECK(s >= PROTO_OK && s <= PROTO_BAD_VALUE);
    FUZZ_CHECK(strcmp(proto_status_name(s), "unknown") != 0);
}

/* Decodes with `get`, checks the failure contract, and on success re-encodes with `put` into
 * a buffer of the body's size and compares. */
#define ROUND_TRIP(type, get, put, body, len)                                                 \
    do {                                                                                      \
        type v_;                                                                              \
        memset(&v_, POISON, sizeof(v_));                                                      \
        enum proto_status s_ = get(body, len, &v_);                                           \
        check_status(s_);                                                                     \
        if (s_ != PROTO_OK) {                                                                 \
            FUZZ_CHECK(poisoned(&v_, sizeof(v_)));                                            \
            break;                                                                            \
        }                                                                                     \
        u8 *again_ = malloc(len);                                                             \
        FUZZ_CHECK(again_ != NULL);                                                           \
        FUZZ_CHECK(put(again_, &v_) == len);                                                  \
        FUZZ_CHECK(memcmp(again_, body, len) == 0);                                           \
        free(again_);                                                                         \
    } while (0)

/* ceil(ttl / d) is the fewest slots whose total length covers the ttl. */
static void check_ttl(u64 ttl_ms, u64 d)
{
    u64 s = proto_ttl_slots(ttl_ms, d);
    FUZZ_CHECK((u128)s * d >= ttl_ms);
    FUZZ_CHECK(s == 0 || (u128)(s - 1) * d < ttl_ms);
}

static void check_command(const u8 *p, u64 slot_duration_ms)
{
    struct proto_command c;
    memset(&c, POISON, sizeof(c));
    enum proto_status s = proto_get_command(p, &c);
    check_status(s);
    if (s != PROTO_OK) {
        FUZZ_CHECK(s == PROTO_BAD_VALUE || s == PROTO_BAD_RESERVED);
        FUZZ_CHECK(poisoned(&c, sizeof(c)));
        return;
    }
    FUZZ_CHECK(c.kind >= SM_CMD_CREATE_RESOURCE && c.kind <= SM_CMD_RELEASE);
    FUZZ_CHECK(c.operation_id != 0);
    FUZZ_CHECK(c.kind != SM_CMD_CREATE_RESOURCE || c.holder_id == 0);
    FUZZ_CHECK(c.kind == SM_CMD_RESERVE || c.ttl_ms == 0);
    u8 again[PROTO_COMMAND_SIZE];
    proto_put_command(again, &c);
    FUZZ_CHECK(memcmp(again, p, PROTO_COMMAND_SIZE) == 0);
    if (c.kind == SM_CMD_RESERVE)
        check_ttl(c.ttl_ms, slot_duration_ms);
}

static void check_result(const u8 *p)
{
    struct proto_result r;
    memset(&r, POISON, sizeof(r));
    enum proto_status s = proto_get_result(p, &r);
    check_status(s);
    if (s != PROTO_OK) {
        FUZZ_CHECK(poisoned(&r, sizeof(r)));
        return;
    }
    FUZZ_CHECK(strcmp(proto_result_name(r.outcome, r.code), "unknown") != 0);
    u8 again[PROTO_RESULT_SIZE];
    proto_put_result(again, &r);
    FUZZ_CHECK(memcmp(again, p, PROTO_RESULT_SIZE) == 0);
}

/* submit and submit_result: the prefix, then each entry. max_batch comes from the request id,
 * so the limit is exercised at every value. */
static void check_batch(u8 kind, const u8 *body, u32 len, u64 request_id)
{
    bool submit = kind == PROTO_SUBMIT;
    u32 item = submit ? PROTO_COMMAND_SIZE : PROTO_RESULT_SIZE;
    u32 count = 0xA5A5A5A5u;
    enum proto_status s = submit ? proto_get_submit(body, len, PROTO_BATCH_MAX, &count)
                                 : proto_get_submit_result(body, len, &count);
    check_status(s);
    if (s != PROTO_OK) {
        FUZZ_CHECK(count == 0xA5A5A5A5u);
        return;
    }
    FUZZ_CHECK(count >= 1 && count <= PROTO_BATCH_MAX);
    FUZZ_CHECK((u64)len == PROTO_SUBMIT_PREFIX + (u64)count * item);
    u8 prefix[PROTO_SUBMIT_PREFIX];
    FUZZ_CHECK((submit ? proto_put_submit_prefix(prefix, count)
                       : proto_put_submit_result_prefix(prefix, count)) == PROTO_SUBMIT_PREFIX);
    FUZZ_CHECK(memcmp(prefix, body, PROTO_SUBMIT_PREFIX) == 0);
    if (submit) {
        u32 max_batch = 1 + (u32)(request_id % PROTO_BATCH_MAX);
        u32 n = 0;
        s = proto_get_submit(body, len, max_batch, &n);
        FUZZ_CHECK(s == (count <= max_batch ? PROTO_OK : PROTO_TOO_LARGE));
        FUZZ_CHECK(s != PROTO_OK || n == count);
    }
    u64 slot_duration_ms = 1 + (request_id >> 32);
    for (u32 i = 0; i < count; i++) {
        const u8 *p = body + PROTO_SUBMIT_PREFIX + (size_t)i * item;
        if (submit)
            check_command(p, slot_duration_ms);
        else
            check_result(p);
    }
}

static u32 put_not_primary(u8 *p, const struct proto_not_primary *v)
{
    return proto_put_not_primary(p, v->view, v->hint, (u16)strlen(v->hint));
}

static u32 put_error(u8 *p, const struct proto_error *v)
{
    return proto_put_error(p, v->code, v->message, v->message_len);
}

static enum proto_status get_error(const u8 *body, u32 len, struct proto_error *out)
{
    enum proto_status s = proto_get_error(body, len, out);
    if (s == PROTO_OK) {
        FUZZ_CHECK(out->message == (const char *)body + 8);
        FUZZ_CHECK(strcmp(proto_error_name(out->code), "unknown") != 0);
    }
    return s;
}

static void check_body(u8 kind, const u8 *body, u32 len, u64 request_id)
{
    switch (kind) {
    case PROTO_HELLO:
        ROUND_TRIP(struct proto_hello, proto_get_hello, proto_put_hello, body, len);
        break;
    case PROTO_HELLO_OK:
        ROUND_TRIP(struct proto_hello_ok, proto_get_hello_ok, proto_put_hello_ok, body, len);
        break;
    case PROTO_SUBMIT:
    case PROTO_SUBMIT_RESULT: check_batch(kind, body, len, request_id); break;
    case PROTO_GET_RESOURCE:
    case PROTO_GET_RESERVATION:
        ROUND_TRIP(struct proto_read, proto_get_read, proto_put_read, body, len);
        break;
    case PROTO_RESOURCE:
        ROUND_TRIP(struct proto_resource, proto_get_resource, proto_put_resource, body, len);
        break;
    case PROTO_RESERVATION:
        ROUND_TRIP(struct proto_reservation, proto_get_reservation, proto_put_reservation, body,
                   len);
        break;
    case PROTO_TICK_OK:
        ROUND_TRIP(struct proto_tick_ok, proto_get_tick_ok, proto_put_tick_ok, body, len);
        break;
    case PROTO_NOT_PRIMARY:
        ROUND_TRIP(struct proto_not_primary, proto_get_not_primary, put_not_primary, body, len);
        break;
    case PROTO_ERROR:
        ROUND_TRIP(struct proto_error, get_error, put_error, body, len);
        break;
    default: /* tick, metrics, status (empty), metrics_ok, status_ok (JSON, not decoded here) */
        FUZZ_CHECK(proto_body_size(kind) == 0 || proto_body_size(kind) == UINT32_MAX);
        break;
    }
}

/* All properties for one input; returns the frame_check status of its frame (PROTO_SHORT if
 * the header was not accepted or the body is not all there). */
static enum proto_status check_input(const uint8_t *data, size_t size)
{
    struct proto_header h;
    memset(&h, POISON, sizeof(h));
    enum proto_status s = proto_header_decode(data, size, PROTO_BODY_MAX, &h);
    check_status(s);
    check_status(proto_frame_check(data, size));
    if (s != PROTO_OK) {
        FUZZ_CHECK(s != PROTO_BAD_CRC && s != PROTO_BAD_VALUE);
        FUZZ_CHECK(poisoned(&h, sizeof(h)));
        return PROTO_SHORT;
    }
    FUZZ_CHECK(strcmp(proto_kind_name(h.kind), "unknown") != 0);
    FUZZ_CHECK(h.flags == 0 && h.body_len <= PROTO_BODY_MAX);
    FUZZ_CHECK(proto_body_size(h.kind) == UINT32_MAX || proto_body_size(h.kind) == h.body_len);
    /* A smaller limit refuses exactly the longer bodies. */
    u32 limit = (u32)(h.request_id % (PROTO_BODY_MAX + 1ull));
    struct proto_header g;
    enum proto_status t = proto_header_decode(data, size, limit, &g);
    FUZZ_CHECK(t == (h.body_len > limit ? PROTO_TOO_LARGE : PROTO_OK));

    size_t frame_len = PROTO_HEADER_SIZE + (size_t)h.body_len;
    if (size < frame_len) {
        FUZZ_CHECK(proto_frame_check(data, size) == PROTO_SHORT);
        return PROTO_SHORT;
    }
    FUZZ_CHECK(proto_frame_check(data, frame_len - 1) == PROTO_SHORT);
    if (size > frame_len)
        FUZZ_CHECK(proto_frame_check(data, size) == PROTO_BAD_LENGTH);
    enum proto_status c = proto_frame_check(data, frame_len);
    FUZZ_CHECK(c == PROTO_OK || c == PROTO_BAD_CRC);

    /* The header re-encodes to the same bytes; the crc too when it was right. */
    u8 *frame = malloc(frame_len);
    FUZZ_CHECK(frame != NULL);
    memcpy(frame, data, frame_len);
    memset(frame, 0, PROTO_HEADER_SIZE);
    FUZZ_CHECK(proto_frame_finish(frame, frame_len, h.kind, h.request_id, h.body_len) ==
               frame_len);
    FUZZ_CHECK(memcmp(frame, data, OFF_CRC) == 0);
    FUZZ_CHECK((memcmp(frame, data, frame_len) == 0) == (c == PROTO_OK));
    free(frame);

    u8 *body = malloc(h.body_len ? h.body_len : 1);
    FUZZ_CHECK(body != NULL);
    memcpy(body, data + PROTO_HEADER_SIZE, h.body_len);
    check_body(h.kind, body, h.body_len, h.request_id);
    free(body);
    return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_input(data, size);
    u8 *copy = fuzz_resealed(data, size, PROTO_HEADER_SIZE, OFF_BODY_LEN, OFF_CRC, PROTO_BODY_MAX);
    if (copy != NULL) {
        enum proto_status s = check_input(copy, size);
        FUZZ_CHECK(s == PROTO_OK || s == PROTO_SHORT);
        FUZZ_CHECK(proto_frame_check(copy, PROTO_HEADER_SIZE + le_get_u32(copy + OFF_BODY_LEN)) ==
                   PROTO_OK);
        free(copy);
    }
    return 0;
}
