/*
 * tests/test_proto.c — the client wire protocol codec (net/proto.h).
 *
 * Round trips of every frame kind through whole frames, with values that set the high half of
 * every u128 and the top byte of every integer; the exact byte layout of the header, a command
 * and a result; and one rejection per field: each header field, each reserved byte flipped on
 * its own, each value range at both edges, every truncation and trailing bytes; and the example
 * exchange printed in man/allocdb-protocol.7, read from the page itself. Every decode
 * reads from a malloc'd buffer of exactly the length it is given, so AddressSanitizer builds
 * catch any read past `len`.
 */
#include "common/crc32c.h"
#include "common/le.h"
#include "net/proto.h"
#include "tests/check_main.h"
#include "vocab/vocab.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FRAME_MAX (PROTO_HEADER_SIZE + PROTO_BODY_MAX)

/* Distinct values with both halves (and the top bits) set, so a swapped or truncated half shows. */
#define ID_A U128_MAKE(0x8877665544332211ull, 0x0102030405060708ull)
#define ID_B U128_MAKE(0xF1E2D3C4B5A69788ull, 0x1122334455667788ull)
#define ID_C U128_MAKE(0x8000000000000001ull, 0x7FFFFFFFFFFFFFFEull)
#define ID_D U128_MAKE(0xA0A1A2A3A4A5A6A7ull, 0xB0B1B2B3B4B5B6B7ull)
#define U64_A 0xFEDCBA9876543210ull
#define U64_B 0x8000000000000007ull
#define U64_C 0x9192939495969798ull

static u8 frame_buf[FRAME_MAX], again_buf[FRAME_MAX];

/* A malloc'd copy of exactly len bytes (1 byte for len 0, so the pointer is valid). */
static u8 *exact_copy(const u8 *p, size_t len)
{
    u8 *c = malloc(len ? len : 1);
    ck_assert_ptr_nonnull(c);
    if (len != 0)
        memcpy(c, p, len);
    return c;
}

static enum proto_status header_of(const u8 *frame, size_t len, u32 body_max,
                                   struct proto_header *h)
{
    u8 *c = exact_copy(frame, len);
    enum proto_status s = proto_header_decode(c, len, body_max, h);
    free(c);
    return s;
}

static enum proto_status header_status(const u8 *frame, size_t len)
{
    struct proto_header h;
    return header_of(frame, len, PROTO_BODY_MAX, &h);
}

static enum proto_status check_of(const u8 *frame, size_t len)
{
    u8 *c = exact_copy(frame, len);
    enum proto_status s = proto_frame_check(c, len);
    free(c);
    return s;
}

/* Recomputes the crc of a frame whose header or body was edited. */
static void reseal(u8 *frame)
{
    u32 body_len = le_get_u32(frame + 16);
    le_put_u32(frame + 28, crc32c(crc32c(0, frame, 28), frame + PROTO_HEADER_SIZE, body_len));
}

/*
 * Decodes the body of a frame of `kind` from an exact copy, the way a server or client would:
 * submit and submit_result then decode every command or result. Returns the first failure.
 */
static enum proto_status body_status(u8 kind, const u8 *body, u32 len)
{
    u8 *c = exact_copy(body, len);
    enum proto_status s = PROTO_OK;
    u32 count = 0;
    union {
        struct proto_hello hello;
        struct proto_hello_ok hello_ok;
        struct proto_command command;
        struct proto_result result;
        struct proto_read read;
        struct proto_resource resource;
        struct proto_reservation reservation;
        struct proto_tick_ok tick_ok;
        struct proto_not_primary not_primary;
        struct proto_error error;
    } u;
    switch (kind) {
    case PROTO_HELLO: s = proto_get_hello(c, len, &u.hello); break;
    case PROTO_HELLO_OK: s = proto_get_hello_ok(c, len, &u.hello_ok); break;
    case PROTO_SUBMIT:
        s = proto_get_submit(c, len, PROTO_BATCH_MAX, &count);
        for (u32 i = 0; s == PROTO_OK && i < count; i++)
            s = proto_get_command(c + PROTO_SUBMIT_PREFIX + i * PROTO_COMMAND_SIZE, &u.command);
        break;
    case PROTO_SUBMIT_RESULT:
        s = proto_get_submit_result(c, len, &count);
        for (u32 i = 0; s == PROTO_OK && i < count; i++)
            s = proto_get_result(c + PROTO_SUBMIT_PREFIX + i * PROTO_RESULT_SIZE, &u.result);
        break;
    case PROTO_GET_RESOURCE:
    case PROTO_GET_RESERVATION: s = proto_get_read(c, len, &u.read); break;
    case PROTO_RESOURCE: s = proto_get_resource(c, len, &u.resource); break;
    case PROTO_RESERVATION: s = proto_get_reservation(c, len, &u.reservation); break;
    case PROTO_TICK_OK: s = proto_get_tick_ok(c, len, &u.tick_ok); break;
    case PROTO_NOT_PRIMARY: s = proto_get_not_primary(c, len, &u.not_primary); break;
    case PROTO_ERROR: s = proto_get_error(c, len, &u.error); break;
    default: ck_abort_msg("no body decoder for kind 0x%02x", kind);
    }
    free(c);
    return s;
}

/* ---- sample bodies -------------------------------------------------------------------------- */

static const struct proto_hello sample_hello = {.version = 0x80000001u, .cluster_id = ID_A};

static const struct proto_hello_ok sample_hello_ok = {
    .version = PROTO_VERSION, .max_batch = 4096, .cluster_id = ID_B, .replica_id = U64_A,
    .slot_duration_ms = U64_B, .max_body = PROTO_BODY_MAX, .view = U64_C};

static const struct proto_read sample_read = {.id = ID_C, .min_lsn = U64_A};

static const struct proto_resource sample_resource = {
    .read = SM_READ_FENCE_NOT_APPLIED, .state = SM_RESOURCE_CONFIRMED, .applied_lsn = U64_A,
    .resource_id = ID_A, .current_reservation_id = ID_B, .version = U64_B};

static const struct proto_reservation sample_reservation = {
    .read = SM_READ_RETIRED, .state = SM_RESERVATION_EXPIRED, .applied_lsn = U64_A,
    .reservation_id = ID_A, .resource_id = ID_B, .holder_id = ID_C, .created_lsn = U64_B,
    .deadline_slot = U64_C, .released_lsn = 0xE1E2E3E4E5E6E7E8ull,
    .retire_after_slot = 0xD1D2D3D4D5D6D7D8ull};

static const struct proto_tick_ok sample_tick_ok = {.slot = U64_C, .expirations_proposed = U64_B};

/* A valid command of each client kind with every field its kind uses set. */
static struct proto_command sample_command(u8 kind, u32 i)
{
    struct proto_command c = {.kind = kind, .operation_id = ID_A + i, .client_id = ID_B,
                              .target = ID_C - i};
    if (kind != SM_CMD_CREATE_RESOURCE)
        c.holder_id = ID_D;
    if (kind == SM_CMD_RESERVE)
        c.ttl_ms = U64_A - i;
    return c;
}

/* A valid result: outcome by i % 3, a code in range, from_retry_cache on odd committed ones. */
static struct proto_result sample_result(u32 i)
{
    static const u8 codes[3] = {SM_RESULT_COUNT, PROTO_REJECT_MAX,
                                PROTO_INDEFINITE_VIEW_CHANGE};
    u8 outcome = (u8)(i % 3);
    struct proto_result r = {.outcome = outcome, .code = (u8)(i % codes[outcome]),
                             .from_retry_cache = outcome == PROTO_COMMITTED && (i & 1),
                             .applied_lsn = U64_A + i, .reservation_id = ID_D + i,
                             .deadline_slot = U64_C - i};
    if (outcome != PROTO_COMMITTED && r.code == 0)
        r.code = 1;
    return r;
}

/* Encodes the sample body of `kind` at frame_buf + 32 and finishes the frame; returns its
 * size. Submit and submit_result get `count` entries; not_primary and error a text of
 * `count` bytes. */
static size_t sample_frame(u8 kind, u32 count, u64 request_id)
{
    u8 *b = frame_buf + PROTO_HEADER_SIZE;
    static char text[PROTO_BODY_MAX];
    for (u32 i = 0; i < count && i < sizeof(text); i++)
        text[i] = (char)('a' + i % 26);
    u32 len = 0;
    switch (kind) {
    case PROTO_HELLO: len = proto_put_hello(b, &sample_hello); break;
    case PROTO_HELLO_OK: len = proto_put_hello_ok(b, &sample_hello_ok); break;
    case PROTO_SUBMIT:
        len = proto_put_submit_prefix(b, count);
        for (u32 i = 0; i < count; i++) {
            struct proto_command c = sample_command((u8)(1 + i % 4), i);
            proto_put_command(b + len, &c);
            len += PROTO_COMMAND_SIZE;
        }
        break;
    case PROTO_SUBMIT_RESULT:
        len = proto_put_submit_result_prefix(b, count);
        for (u32 i = 0; i < count; i++) {
            struct proto_result r = sample_result(i);
            proto_put_result(b + len, &r);
            len += PROTO_RESULT_SIZE;
        }
        break;
    case PROTO_GET_RESOURCE:
    case PROTO_GET_RESERVATION: len = proto_put_read(b, &sample_read); break;
    case PROTO_RESOURCE: len = proto_put_resource(b, &sample_resource); break;
    case PROTO_RESERVATION: len = proto_put_reservation(b, &sample_reservation); break;
    case PROTO_TICK_OK: len = proto_put_tick_ok(b, &sample_tick_ok); break;
    case PROTO_NOT_PRIMARY: len = proto_put_not_primary(b, U64_A, text, (u16)count); break;
    case PROTO_ERROR: len = proto_put_error(b, PROTO_ERR_IDLE, text, count); break;
    case PROTO_METRICS_OK:
    case PROTO_STATUS_OK:
        memcpy(b, "{\"a\":1}", 7);
        len = 7;
        break;
    default: len = 0; /* tick, metrics, status */
    }
    return proto_frame_finish(frame_buf, sizeof(frame_buf), kind, request_id, len);
}

static const u8 all_kinds[] = {
    PROTO_HELLO, PROTO_SUBMIT, PROTO_GET_RESOURCE, PROTO_GET_RESERVATION, PROTO_TICK,
    PROTO_METRICS, PROTO_STATUS, PROTO_HELLO_OK, PROTO_SUBMIT_RESULT, PROTO_RESOURCE,
    PROTO_RESERVATION, PROTO_TICK_OK, PROTO_METRICS_OK, PROTO_STATUS_OK, PROTO_NOT_PRIMARY,
    PROTO_ERROR};

static bool is_kind(unsigned k)
{
    for (size_t i = 0; i < ADB_ARRAY_LEN(all_kinds); i++)
        if (all_kinds[i] == k)
            return true;
    return false;
}

/* ---- names ---------------------------------------------------------------------------------- */

START_TEST(test_names)
{
    static const char *const kind_names[] = {
        "hello", "submit", "get_resource", "get_reservation", "tick", "metrics", "status",
        "hello_ok", "submit_result", "resource", "reservation", "tick_ok", "metrics_ok",
        "status_ok", "not_primary", "error"};
    for (size_t i = 0; i < ADB_ARRAY_LEN(all_kinds); i++)
        ck_assert_str_eq(proto_kind_name(all_kinds[i]), kind_names[i]);
    for (unsigned k = 0; k < 256; k++)
        if (!is_kind(k))
            ck_assert_str_eq(proto_kind_name((u8)k), "unknown");

    for (int s = PROTO_OK; s <= PROTO_BAD_VALUE; s++)
        ck_assert_str_ne(proto_status_name((enum proto_status)s), "unknown");
    ck_assert_str_eq(proto_status_name(PROTO_BAD_CRC), "checksum mismatch");
    ck_assert_str_eq(proto_status_name((enum proto_status)(PROTO_BAD_VALUE + 1)), "unknown");

    static const char *const rejects[] = {"unknown", "invalid_request", "command_too_large",
                                          "slot_overflow", "overloaded", "lsn_exhausted",
                                          "not_primary", "no_space", "unknown"};
    for (u8 c = 0; c < ADB_ARRAY_LEN(rejects); c++) {
        ck_assert_str_eq(proto_reject_name(c), rejects[c]);
        ck_assert_str_eq(proto_result_name(PROTO_REJECTED, c), rejects[c]);
    }
    static const char *const indefinites[] = {"unknown", "timeout", "storage_failure", "halted",
                                              "worker_restarted", "shutting_down", "view_change",
                                              "unknown"};
    for (u8 c = 0; c < ADB_ARRAY_LEN(indefinites); c++) {
        ck_assert_str_eq(proto_indefinite_name(c), indefinites[c]);
        ck_assert_str_eq(proto_result_name(PROTO_INDEFINITE, c), indefinites[c]);
    }
    for (u8 c = 0; c < SM_RESULT_COUNT; c++)
        ck_assert_str_eq(proto_result_name(PROTO_COMMITTED, c), sm_result_name(c));
    ck_assert_str_eq(proto_result_name(PROTO_COMMITTED, 5), "resource_busy");
    ck_assert_str_eq(proto_result_name(PROTO_COMMITTED, SM_RESULT_COUNT), "unknown");
    ck_assert_str_eq(proto_result_name(3, 1), "unknown");

    static const char *const errors[] = {
        "unknown", "bad_frame", "bad_checksum", "too_large", "bad_body", "unsupported_version",
        "wrong_cluster", "unavailable", "timeout", "overloaded", "too_many_connections",
        "shutting_down", "batch_too_large", "idle", "handshake", "unknown"};
    for (u16 c = 0; c < ADB_ARRAY_LEN(errors); c++)
        ck_assert_str_eq(proto_error_name(c), errors[c]);
    ck_assert_str_eq(proto_error_name(0xFFFF), "unknown");
}
END_TEST

START_TEST(test_body_sizes)
{
    ck_assert_uint_eq(proto_body_size(PROTO_HELLO), 24);
    ck_assert_uint_eq(proto_body_size(PROTO_SUBMIT), UINT32_MAX);
    ck_assert_uint_eq(proto_body_size(PROTO_GET_RESOURCE), 24);
    ck_assert_uint_eq(proto_body_size(PROTO_GET_RESERVATION), 24);
    ck_assert_uint_eq(proto_body_size(PROTO_TICK), 0);
    ck_assert_uint_eq(proto_body_size(PROTO_METRICS), 0);
    ck_assert_uint_eq(proto_body_size(PROTO_STATUS), 0);
    ck_assert_uint_eq(proto_body_size(PROTO_HELLO_OK), 56);
    ck_assert_uint_eq(proto_body_size(PROTO_SUBMIT_RESULT), UINT32_MAX);
    ck_assert_uint_eq(proto_body_size(PROTO_RESOURCE), 64);
    ck_assert_uint_eq(proto_body_size(PROTO_RESERVATION), 96);
    ck_assert_uint_eq(proto_body_size(PROTO_TICK_OK), 16);
    ck_assert_uint_eq(proto_body_size(PROTO_METRICS_OK), UINT32_MAX);
    ck_assert_uint_eq(proto_body_size(PROTO_STATUS_OK), UINT32_MAX);
    ck_assert_uint_eq(proto_body_size(PROTO_NOT_PRIMARY), UINT32_MAX);
    ck_assert_uint_eq(proto_body_size(PROTO_ERROR), UINT32_MAX);
    ck_assert_uint_eq(PROTO_SUBMIT_PREFIX + PROTO_BATCH_MAX * PROTO_COMMAND_SIZE, 720904);
}
END_TEST

/* ---- header --------------------------------------------------------------------------------- */

/* The documented layout, byte by byte, and the crc over header bytes 0..27 then the body. */
START_TEST(test_header_layout)
{
    size_t n = sample_frame(PROTO_HELLO, 0, 0x0102030405060708ull);
    ck_assert_uint_eq(n, 56);
    static const u8 head[28] = {
        0x41, 0x44, 0x42, 0x50, 1, 0, 0x01, 0x00,         /* "ADBP", version, kind, flags */
        8, 7, 6, 5, 4, 3, 2, 1,                           /* request_id */
        24, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};             /* body_len, reserved */
    ck_assert_mem_eq(frame_buf, head, sizeof(head));
    u32 crc = crc32c(crc32c(0, frame_buf, 28), frame_buf + 32, 24);
    ck_assert_uint_eq(le_get_u32(frame_buf + 28), crc);
    static const u8 body[24] = {
        0x01, 0x00, 0x00, 0x80, 0, 0, 0, 0,               /* version, reserved */
        0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,  /* cluster_id low half */
        0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88};  /* cluster_id high half */
    ck_assert_mem_eq(frame_buf + 32, body, sizeof(body));
}
END_TEST

/*
 * The hex dumps in EXAMPLES of man/allocdb-protocol.7 ($top_srcdir, exported by make check),
 * in order; returns how many were read. Each is the run of hex byte pairs of one literal
 * display.
 */
#define MAN_EXAMPLES 4
static int man_examples(u8 out[MAN_EXAMPLES][256], size_t len[MAN_EXAMPLES])
{
    const char *top = getenv("top_srcdir");
    char path[4096];
    snprintf(path, sizeof(path), "%s/man/allocdb-protocol.7", top && *top ? top : ".");
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    char line[512];
    bool examples = false, literal = false;
    int n = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, ".Sh ", 4) == 0)
            examples = strcmp(line, ".Sh EXAMPLES\n") == 0;
        else if (examples && strncmp(line, ".Bd -literal", 12) == 0)
            literal = true;
        else if (literal && strncmp(line, ".Ed", 3) == 0)
            literal = false, n++;
        else if (literal && n < MAN_EXAMPLES)
            for (char *p = line, *end; *p != '\0'; p = end) {
                unsigned long v = strtoul(p, &end, 16);
                if (end == p)
                    break;
                ck_assert_uint_le(v, 0xFF);
                ck_assert_uint_lt(len[n], 256);
                out[n][len[n]++] = (u8)v;
            }
    }
    fclose(f);
    return n;
}

/* Encodes the example exchange and compares it with the page byte for byte; then decodes the
 * page's bytes. If this fails, the page (or the codec) is wrong. */
START_TEST(test_man_example)
{
    static u8 man[MAN_EXAMPLES][256];
    size_t man_len[MAN_EXAMPLES] = {0};
    ck_assert_int_eq(man_examples(man, man_len), MAN_EXAMPLES);
    u8 *b = frame_buf + PROTO_HEADER_SIZE;

    /* hello, request_id 1, any cluster */
    struct proto_hello hello = {.version = 1, .cluster_id = 0};
    size_t n = proto_frame_finish(frame_buf, sizeof(frame_buf), PROTO_HELLO, 1,
                                  proto_put_hello(b, &hello));
    ck_assert_uint_eq(man_len[0], n);
    ck_assert_mem_eq(man[0], frame_buf, n);

    /* hello_ok: version 1, max_batch 1024, cluster 0x77, replica 1, 100 ms slots, 1 MiB, view 3 */
    struct proto_hello_ok ok = {.version = 1, .max_batch = 1024, .cluster_id = 0x77,
                                .replica_id = 1, .slot_duration_ms = 100,
                                .max_body = PROTO_BODY_MAX, .view = 3};
    n = proto_frame_finish(frame_buf, sizeof(frame_buf), PROTO_HELLO_OK, 1,
                           proto_put_hello_ok(b, &ok));
    ck_assert_uint_eq(man_len[1], n);
    ck_assert_mem_eq(man[1], frame_buf, n);

    /* submit, request_id 2: reserve of resource 7 for holder 9, 30000 ms, op 0x1001, client
     * 0x2002 */
    struct proto_command c = {.kind = SM_CMD_RESERVE, .operation_id = 0x1001,
                              .client_id = 0x2002, .target = 7, .holder_id = 9, .ttl_ms = 30000};
    u32 len = proto_put_submit_prefix(b, 1);
    proto_put_command(b + len, &c);
    n = proto_frame_finish(frame_buf, sizeof(frame_buf), PROTO_SUBMIT, 2,
                           len + PROTO_COMMAND_SIZE);
    ck_assert_uint_eq(man_len[2], n);
    ck_assert_mem_eq(man[2], frame_buf, n);
    ck_assert_uint_eq(proto_ttl_slots(c.ttl_ms, ok.slot_duration_ms), 300);

    /* submit_result, request_id 2: committed ok at LSN 42, reservation (0 << 64) | 42,
     * deadline 1300 */
    struct proto_result r = {.outcome = PROTO_COMMITTED, .code = SM_OK, .applied_lsn = 42,
                             .reservation_id = 42, .deadline_slot = 1300};
    len = proto_put_submit_result_prefix(b, 1);
    proto_put_result(b + len, &r);
    n = proto_frame_finish(frame_buf, sizeof(frame_buf), PROTO_SUBMIT_RESULT, 2,
                           len + PROTO_RESULT_SIZE);
    ck_assert_uint_eq(man_len[3], n);
    ck_assert_mem_eq(man[3], frame_buf, n);

    /* The page's bytes, decoded. */
    static const u8 kinds[MAN_EXAMPLES] = {PROTO_HELLO, PROTO_HELLO_OK, PROTO_SUBMIT,
                                           PROTO_SUBMIT_RESULT};
    for (int i = 0; i < MAN_EXAMPLES; i++) {
        struct proto_header h;
        ck_assert_int_eq(header_of(man[i], man_len[i], PROTO_BODY_MAX, &h), PROTO_OK);
        ck_assert_uint_eq(h.kind, kinds[i]);
        ck_assert_uint_eq(h.request_id, i < 2 ? 1 : 2);
        ck_assert_int_eq(check_of(man[i], man_len[i]), PROTO_OK);
        ck_assert_int_eq(body_status(h.kind, man[i] + PROTO_HEADER_SIZE, h.body_len), PROTO_OK);
    }
    /* The check value the page gives for CRC-32C. */
    ck_assert_uint_eq(crc32c(0, "123456789", 9), 0xE3069283u);
}
END_TEST

/* Every kind: the header decodes to what was finished, the frame checks, and a full-size
 * variable body is accepted at exactly the limit. */
START_TEST(test_header_round_trip)
{
    for (size_t i = 0; i < ADB_ARRAY_LEN(all_kinds); i++) {
        u8 kind = all_kinds[i];
        u64 rid = U64_A ^ kind;
        size_t n = sample_frame(kind, 3, rid);
        struct proto_header h;
        memset(&h, 0xA5, sizeof(h));
        ck_assert_int_eq(header_of(frame_buf, n, PROTO_BODY_MAX, &h), PROTO_OK);
        ck_assert_uint_eq(h.kind, kind);
        ck_assert_uint_eq(h.flags, 0);
        ck_assert_uint_eq(h.request_id, rid);
        ck_assert_uint_eq(h.body_len, n - PROTO_HEADER_SIZE);
        u32 fixed = proto_body_size(kind);
        if (fixed != UINT32_MAX)
            ck_assert_uint_eq(h.body_len, fixed);
        /* The header alone is enough to decode it; the body is not looked at. */
        ck_assert_int_eq(header_of(frame_buf, PROTO_HEADER_SIZE, PROTO_BODY_MAX, &h), PROTO_OK);
        ck_assert_int_eq(header_of(frame_buf, n, h.body_len, &h), PROTO_OK);
        ck_assert_int_eq(check_of(frame_buf, n), PROTO_OK);
    }
    /* request_id 0 and UINT64_MAX are both just ids. */
    struct proto_header h;
    size_t n = sample_frame(PROTO_TICK, 0, 0);
    ck_assert_int_eq(header_of(frame_buf, n, 0, &h), PROTO_OK);
    ck_assert_uint_eq(h.request_id, 0);
    n = sample_frame(PROTO_TICK, 0, UINT64_MAX);
    ck_assert_int_eq(header_of(frame_buf, n, 0, &h), PROTO_OK);
    ck_assert_uint_eq(h.request_id, UINT64_MAX);
    ck_assert_uint_eq(h.body_len, 0);
}
END_TEST

START_TEST(test_header_short)
{
    size_t n = sample_frame(PROTO_HELLO, 0, 5);
    for (size_t len = 0; len < PROTO_HEADER_SIZE; len++)
        ck_assert_int_eq(header_status(frame_buf, len), PROTO_SHORT);
    ck_assert_int_eq(header_status(frame_buf, PROTO_HEADER_SIZE), PROTO_OK);
    ck_assert_int_eq(header_status(frame_buf, n), PROTO_OK);
}
END_TEST

START_TEST(test_header_bad_magic)
{
    for (u32 byte = 0; byte < 4; byte++) {
        for (u32 bit = 0; bit < 8; bit++) {
            size_t n = sample_frame(PROTO_HELLO, 0, 5);
            frame_buf[byte] ^= (u8)(1u << bit);
            ck_assert_int_eq(header_status(frame_buf, n), PROTO_BAD_MAGIC);
            reseal(frame_buf);
            ck_assert_int_eq(header_status(frame_buf, n), PROTO_BAD_MAGIC);
        }
    }
    size_t n = sample_frame(PROTO_HELLO, 0, 5);
    memcpy(frame_buf, "PBDA", 4); /* byte-swapped */
    ck_assert_int_eq(header_status(frame_buf, n), PROTO_BAD_MAGIC);
    memcpy(frame_buf, "GET ", 4); /* an HTTP client on the wrong port */
    ck_assert_int_eq(header_status(frame_buf, n), PROTO_BAD_MAGIC);
    /* Magic is checked first: every later field broken too still says BAD_MAGIC. */
    memset(frame_buf, 0xFF, PROTO_HEADER_SIZE);
    ck_assert_int_eq(header_status(frame_buf, n), PROTO_BAD_MAGIC);
}
END_TEST

START_TEST(test_header_bad_version)
{
    static const u16 versions[] = {0, 2, 0x0100, 0x8001, 0xFFFF};
    for (size_t i = 0; i < ADB_ARRAY_LEN(versions); i++) {
        size_t n = sample_frame(PROTO_HELLO, 0, 5);
        le_put_u16(frame_buf + 4, versions[i]);
        ck_assert_int_eq(header_status(frame_buf, n), PROTO_BAD_VERSION);
        reseal(frame_buf);
        ck_assert_int_eq(header_status(frame_buf, n), PROTO_BAD_VERSION);
        frame_buf[6] = 0x42; /* before kind */
        frame_buf[7] = 1;
        ck_assert_int_eq(header_status(frame_buf, n), PROTO_BAD_VERSION);
    }
}
END_TEST

START_TEST(test_header_bad_kind)
{
    u32 unknown = 0;
    for (unsigned k = 0; k < 256; k++) {
        size_t n = sample_frame(PROTO_TICK, 0, 5);
        frame_buf[6] = (u8)k;
        reseal(frame_buf);
        enum proto_status s = header_status(frame_buf, n);
        if (is_kind(k)) {
            /* Known kinds pass the kind check (fixed non-empty ones then fail on length). */
            ck_assert_int_ne(s, PROTO_BAD_KIND);
            continue;
        }
        unknown++;
        ck_assert_int_eq(s, PROTO_BAD_KIND);
        frame_buf[7] = 0x80; /* before flags */
        ck_assert_int_eq(header_status(frame_buf, n), PROTO_BAD_KIND);
    }
    ck_assert_uint_eq(unknown, 256 - 16);
}
END_TEST

START_TEST(test_header_bad_flags)
{
    for (u32 bit = 0; bit < 8; bit++) {
        size_t n = sample_frame(PROTO_HELLO, 0, 5);
        frame_buf[7] = (u8)(1u << bit);
        ck_assert_int_eq(header_status(frame_buf, n), PROTO_BAD_FLAGS);
        reseal(frame_buf);
        ck_assert_int_eq(header_status(frame_buf, n), PROTO_BAD_FLAGS);
        frame_buf[27] = 1; /* before reserved */
        ck_assert_int_eq(header_status(frame_buf, n), PROTO_BAD_FLAGS);
    }
}
END_TEST

START_TEST(test_header_bad_reserved)
{
    for (u32 byte = 20; byte < 28; byte++) {
        for (u32 bit = 0; bit < 8; bit += 7) {
            size_t n = sample_frame(PROTO_HELLO, 0, 5);
            frame_buf[byte] = (u8)(1u << bit);
            ck_assert_int_eq(header_status(frame_buf, n), PROTO_BAD_RESERVED);
            reseal(frame_buf);
            ck_assert_int_eq(header_status(frame_buf, n), PROTO_BAD_RESERVED);
            le_put_u32(frame_buf + 16, UINT32_MAX); /* before length */
            ck_assert_int_eq(header_status(frame_buf, n), PROTO_BAD_RESERVED);
        }
    }
}
END_TEST

START_TEST(test_header_too_large)
{
    struct proto_header h;
    static const u8 kinds[] = {PROTO_SUBMIT, PROTO_HELLO};
    static const u32 limits[] = {0, 1, 23, 24, 100, PROTO_BODY_MAX - 1, PROTO_BODY_MAX};
    for (size_t k = 0; k < ADB_ARRAY_LEN(kinds); k++) {
        for (size_t i = 0; i < ADB_ARRAY_LEN(limits); i++) {
            u32 limit = limits[i];
            size_t n = sample_frame(kinds[k], 1, 5);
            u32 body_len = le_get_u32(frame_buf + 16);
            ck_assert_int_eq(header_of(frame_buf, n, limit, &h),
                             body_len > limit ? PROTO_TOO_LARGE : PROTO_OK);
            /* The claimed length is checked, not the bytes present. */
            static const u32 claims[] = {1, 2, 1000, PROTO_BODY_MAX, PROTO_BODY_MAX + 1,
                                         UINT32_MAX};
            for (size_t c = 0; c < ADB_ARRAY_LEN(claims); c++) {
                u32 claim = limit + claims[c];
                if (claim <= limit) /* wrapped */
                    continue;
                le_put_u32(frame_buf + 16, claim);
                ck_assert_int_eq(header_of(frame_buf, PROTO_HEADER_SIZE, limit, &h),
                                 PROTO_TOO_LARGE);
            }
        }
    }
    /* A variable body of exactly the limit is fine. */
    size_t n = sample_frame(PROTO_SUBMIT, 1, 5);
    le_put_u32(frame_buf + 16, PROTO_BODY_MAX);
    ck_assert_int_eq(header_of(frame_buf, n, PROTO_BODY_MAX, &h), PROTO_OK);
    ck_assert_uint_eq(h.body_len, PROTO_BODY_MAX);
    le_put_u32(frame_buf + 16, PROTO_BODY_MAX + 1);
    ck_assert_int_eq(header_of(frame_buf, n, PROTO_BODY_MAX, &h), PROTO_TOO_LARGE);
}
END_TEST

/* A fixed-size kind with any other body_len is refused from the header alone. */
START_TEST(test_header_fixed_length)
{
    for (size_t i = 0; i < ADB_ARRAY_LEN(all_kinds); i++) {
        u8 kind = all_kinds[i];
        u32 size = proto_body_size(kind);
        if (size == UINT32_MAX)
            continue;
        static const i64 deltas[] = {-24, -1, 1, 8, 88};
        for (size_t d = 0; d < ADB_ARRAY_LEN(deltas); d++) {
            if ((i64)size + deltas[d] < 0)
                continue;
            size_t n = sample_frame(kind, 0, 5);
            le_put_u32(frame_buf + 16, (u32)((i64)size + deltas[d]));
            reseal(frame_buf);
            ck_assert_int_eq(header_status(frame_buf, n), PROTO_BAD_LENGTH);
        }
    }
}
END_TEST

/* ---- frame check ---------------------------------------------------------------------------- */

/* Any bit flipped in header bytes 0..27, the crc or the body fails the check (header bytes
 * 16..19 are body_len: a flip there changes how much body there should be). */
START_TEST(test_frame_crc)
{
    static const u8 kinds[] = {PROTO_HELLO, PROTO_SUBMIT, PROTO_RESERVATION, PROTO_ERROR};
    for (size_t k = 0; k < ADB_ARRAY_LEN(kinds); k++) {
        size_t n = sample_frame(kinds[k], 2, U64_B);
        u8 *orig = exact_copy(frame_buf, n);
        for (size_t byte = 0; byte < n; byte++) {
            for (u32 bit = 0; bit < 8; bit++) {
                memcpy(frame_buf, orig, n);
                frame_buf[byte] ^= (u8)(1u << bit);
                enum proto_status s = check_of(frame_buf, n);
                if (byte >= 16 && byte < 20) {
                    u32 body_len = le_get_u32(frame_buf + 16);
                    ck_assert_int_eq(s, body_len > n - PROTO_HEADER_SIZE ? PROTO_SHORT
                                                                          : PROTO_BAD_LENGTH);
                } else {
                    ck_assert_int_eq(s, PROTO_BAD_CRC);
                }
            }
        }
        memcpy(frame_buf, orig, n);
        ck_assert_int_eq(check_of(frame_buf, n), PROTO_OK);
        free(orig);
    }
    /* The crc is CRC32C of header bytes 0..27 then the body, nothing else. */
    ck_assert_uint_eq(sample_frame(PROTO_TICK_OK, 0, 1), 48);
    ck_assert_uint_eq(le_get_u32(frame_buf + 28),
                      crc32c(crc32c(0, frame_buf, 28), frame_buf + 32, 16));
}
END_TEST

START_TEST(test_frame_truncated)
{
    static const u8 kinds[] = {PROTO_TICK, PROTO_HELLO, PROTO_SUBMIT, PROTO_SUBMIT_RESULT,
                               PROTO_RESERVATION, PROTO_NOT_PRIMARY};
    for (size_t k = 0; k < ADB_ARRAY_LEN(kinds); k++) {
        size_t n = sample_frame(kinds[k], 3, 9);
        for (size_t len = 0; len < n; len++)
            ck_assert_int_eq(check_of(frame_buf, len), PROTO_SHORT);
        ck_assert_int_eq(check_of(frame_buf, n), PROTO_OK);
        /* Trailing bytes belong to no frame: the frame is exactly header + body. */
        frame_buf[n] = 0;
        ck_assert_int_eq(check_of(frame_buf, n + 1), PROTO_BAD_LENGTH);
        ck_assert_int_eq(check_of(frame_buf, n + 88), PROTO_BAD_LENGTH);
    }
}
END_TEST

/* ---- bodies: round trips -------------------------------------------------------------------- */

/* Checks the frame in frame_buf[0..n) end to end and returns an exact copy of its body. */
static u8 *checked_body(size_t n, u8 kind, u32 *len)
{
    struct proto_header h;
    ck_assert_int_eq(header_of(frame_buf, n, PROTO_BODY_MAX, &h), PROTO_OK);
    ck_assert_uint_eq(h.kind, kind);
    ck_assert_int_eq(check_of(frame_buf, n), PROTO_OK);
    *len = h.body_len;
    return exact_copy(frame_buf + PROTO_HEADER_SIZE, h.body_len);
}

/* Re-encodes with put and expects the identical body. */
#define EXPECT_REENCODE(put, v, body, len)                                                    \
    do {                                                                                      \
        memset(again_buf, 0xEE, (len) + 1);                                                   \
        ck_assert_uint_eq(put(again_buf, v), len);                                            \
        ck_assert_mem_eq(again_buf, body, len);                                               \
        ck_assert_uint_eq(again_buf[len], 0xEE);                                              \
    } while (0)

START_TEST(test_hello_round_trip)
{
    u32 len;
    size_t n = sample_frame(PROTO_HELLO, 0, 1);
    u8 *b = checked_body(n, PROTO_HELLO, &len);
    struct proto_hello v;
    memset(&v, 0xA5, sizeof(v));
    ck_assert_int_eq(proto_get_hello(b, len, &v), PROTO_OK);
    ck_assert_uint_eq(v.version, sample_hello.version);
    ck_assert(v.cluster_id == ID_A);
    EXPECT_REENCODE(proto_put_hello, &v, b, len);
    free(b);

    n = sample_frame(PROTO_HELLO_OK, 0, 2);
    b = checked_body(n, PROTO_HELLO_OK, &len);
    struct proto_hello_ok w;
    memset(&w, 0xA5, sizeof(w));
    ck_assert_int_eq(proto_get_hello_ok(b, len, &w), PROTO_OK);
    ck_assert_uint_eq(w.version, PROTO_VERSION);
    ck_assert_uint_eq(w.max_batch, 4096);
    ck_assert(w.cluster_id == ID_B);
    ck_assert_uint_eq(w.replica_id, U64_A);
    ck_assert_uint_eq(w.slot_duration_ms, U64_B);
    ck_assert_uint_eq(w.max_body, PROTO_BODY_MAX);
    ck_assert_uint_eq(w.view, U64_C);
    EXPECT_REENCODE(proto_put_hello_ok, &w, b, len);
    /* Offsets as documented. */
    ck_assert_uint_eq(le_get_u32(b + 4), 4096);
    ck_assert_uint_eq(le_get_u64(b + 24), U64_A);
    ck_assert_uint_eq(le_get_u64(b + 32), U64_B);
    ck_assert_uint_eq(le_get_u32(b + 40), PROTO_BODY_MAX);
    ck_assert_uint_eq(le_get_u64(b + 48), U64_C);
    free(b);
}
END_TEST

static void assert_commands_equal(const struct proto_command *a, const struct proto_command *b)
{
    ck_assert_uint_eq(a->kind, b->kind);
    ck_assert(a->operation_id == b->operation_id);
    ck_assert(a->client_id == b->client_id);
    ck_assert(a->target == b->target);
    ck_assert(a->holder_id == b->holder_id);
    ck_assert_uint_eq(a->ttl_ms, b->ttl_ms);
}

static void assert_results_equal(const struct proto_result *a, const struct proto_result *b)
{
    ck_assert_uint_eq(a->outcome, b->outcome);
    ck_assert_uint_eq(a->code, b->code);
    ck_assert_int_eq(a->from_retry_cache, b->from_retry_cache);
    ck_assert_uint_eq(a->applied_lsn, b->applied_lsn);
    ck_assert(a->reservation_id == b->reservation_id);
    ck_assert_uint_eq(a->deadline_slot, b->deadline_slot);
}

/* _i: batch size 1, 2, 7, 8192 (the maximum). */
START_TEST(test_submit_round_trip)
{
    static const u32 counts[] = {1, 2, 7, PROTO_BATCH_MAX};
    u32 count = counts[_i], len, got = 0;
    size_t n = sample_frame(PROTO_SUBMIT, count, 3);
    ck_assert_uint_eq(n, PROTO_HEADER_SIZE + PROTO_SUBMIT_PREFIX + count * PROTO_COMMAND_SIZE);
    u8 *b = checked_body(n, PROTO_SUBMIT, &len);
    ck_assert_int_eq(proto_get_submit(b, len, count, &got), PROTO_OK);
    ck_assert_uint_eq(got, count);
    ck_assert_int_eq(proto_get_submit(b, len, PROTO_BATCH_MAX, &got), PROTO_OK);
    ck_assert_uint_eq(proto_put_submit_prefix(again_buf, count), PROTO_SUBMIT_PREFIX);
    ck_assert_mem_eq(again_buf, b, PROTO_SUBMIT_PREFIX);
    for (u32 i = 0; i < count; i++) {
        const u8 *p = b + PROTO_SUBMIT_PREFIX + i * PROTO_COMMAND_SIZE;
        struct proto_command c, want = sample_command((u8)(1 + i % 4), i);
        memset(&c, 0xA5, sizeof(c));
        ck_assert_int_eq(proto_get_command(p, &c), PROTO_OK);
        assert_commands_equal(&c, &want);
        memset(again_buf, 0xEE, PROTO_COMMAND_SIZE + 1);
        proto_put_command(again_buf, &c);
        ck_assert_mem_eq(again_buf, p, PROTO_COMMAND_SIZE);
        ck_assert_uint_eq(again_buf[PROTO_COMMAND_SIZE], 0xEE);
    }
    free(b);
}
END_TEST

START_TEST(test_submit_result_round_trip)
{
    static const u32 counts[] = {1, 3, 16, PROTO_BATCH_MAX};
    u32 count = counts[_i], len, got = 0;
    size_t n = sample_frame(PROTO_SUBMIT_RESULT, count, 4);
    ck_assert_uint_eq(n, PROTO_HEADER_SIZE + PROTO_SUBMIT_PREFIX + count * PROTO_RESULT_SIZE);
    u8 *b = checked_body(n, PROTO_SUBMIT_RESULT, &len);
    ck_assert_int_eq(proto_get_submit_result(b, len, &got), PROTO_OK);
    ck_assert_uint_eq(got, count);
    ck_assert_uint_eq(proto_put_submit_result_prefix(again_buf, count), PROTO_SUBMIT_PREFIX);
    ck_assert_mem_eq(again_buf, b, PROTO_SUBMIT_PREFIX);
    for (u32 i = 0; i < count; i++) {
        const u8 *p = b + PROTO_SUBMIT_PREFIX + i * PROTO_RESULT_SIZE;
        struct proto_result r, want = sample_result(i);
        memset(&r, 0xA5, sizeof(r));
        ck_assert_int_eq(proto_get_result(p, &r), PROTO_OK);
        assert_results_equal(&r, &want);
        memset(again_buf, 0xEE, PROTO_RESULT_SIZE + 1);
        proto_put_result(again_buf, &r);
        ck_assert_mem_eq(again_buf, p, PROTO_RESULT_SIZE);
        ck_assert_uint_eq(again_buf[PROTO_RESULT_SIZE], 0xEE);
    }
    free(b);
}
END_TEST

/* Every outcome and code in range, with and without from_retry_cache. */
START_TEST(test_result_every_code)
{
    static const u8 limits[3] = {SM_RESULT_COUNT - 1, PROTO_REJECT_MAX,
                                 PROTO_INDEFINITE_VIEW_CHANGE};
    u8 p[PROTO_RESULT_SIZE];
    for (u8 outcome = 0; outcome < 3; outcome++) {
        for (u8 code = outcome == PROTO_COMMITTED ? 0 : 1; code <= limits[outcome]; code++) {
            for (int retry = 0; retry < 2; retry++) {
                struct proto_result r = {.outcome = outcome, .code = code,
                                         .from_retry_cache = retry, .applied_lsn = U64_C,
                                         .reservation_id = ID_A, .deadline_slot = U64_B},
                                    d;
                proto_put_result(p, &r);
                ck_assert_uint_eq(p[2], retry);
                ck_assert_int_eq(proto_get_result(p, &d), PROTO_OK);
                assert_results_equal(&d, &r);
            }
        }
    }
}
END_TEST

START_TEST(test_read_round_trip)
{
    static const u8 kinds[] = {PROTO_GET_RESOURCE, PROTO_GET_RESERVATION};
    for (size_t k = 0; k < 2; k++) {
        u32 len;
        size_t n = sample_frame(kinds[k], 0, 5);
        u8 *b = checked_body(n, kinds[k], &len);
        struct proto_read v;
        memset(&v, 0xA5, sizeof(v));
        ck_assert_int_eq(proto_get_read(b, len, &v), PROTO_OK);
        ck_assert(v.id == ID_C);
        ck_assert_uint_eq(v.min_lsn, U64_A);
        ck_assert_uint_eq(le_get_u64(b + 8), U128_HI(ID_C));
        EXPECT_REENCODE(proto_put_read, &v, b, len);
        free(b);
    }
}
END_TEST

START_TEST(test_resource_round_trip)
{
    u32 len;
    size_t n = sample_frame(PROTO_RESOURCE, 0, 6);
    u8 *b = checked_body(n, PROTO_RESOURCE, &len);
    struct proto_resource v;
    memset(&v, 0xA5, sizeof(v));
    ck_assert_int_eq(proto_get_resource(b, len, &v), PROTO_OK);
    ck_assert_uint_eq(v.read, SM_READ_FENCE_NOT_APPLIED);
    ck_assert_uint_eq(v.state, SM_RESOURCE_CONFIRMED);
    ck_assert_uint_eq(v.applied_lsn, U64_A);
    ck_assert(v.resource_id == ID_A);
    ck_assert(v.current_reservation_id == ID_B);
    ck_assert_uint_eq(v.version, U64_B);
    ck_assert_uint_eq(le_get_u64(b + 48), U64_B);
    EXPECT_REENCODE(proto_put_resource, &v, b, len);
    free(b);
}
END_TEST

START_TEST(test_reservation_round_trip)
{
    u32 len;
    size_t n = sample_frame(PROTO_RESERVATION, 0, 7);
    u8 *b = checked_body(n, PROTO_RESERVATION, &len);
    struct proto_reservation v;
    memset(&v, 0xA5, sizeof(v));
    ck_assert_int_eq(proto_get_reservation(b, len, &v), PROTO_OK);
    ck_assert_uint_eq(v.read, SM_READ_RETIRED);
    ck_assert_uint_eq(v.state, SM_RESERVATION_EXPIRED);
    ck_assert_uint_eq(v.applied_lsn, U64_A);
    ck_assert(v.reservation_id == ID_A);
    ck_assert(v.resource_id == ID_B);
    ck_assert(v.holder_id == ID_C);
    ck_assert_uint_eq(v.created_lsn, U64_B);
    ck_assert_uint_eq(v.deadline_slot, U64_C);
    ck_assert_uint_eq(v.released_lsn, 0xE1E2E3E4E5E6E7E8ull);
    ck_assert_uint_eq(v.retire_after_slot, 0xD1D2D3D4D5D6D7D8ull);
    ck_assert_uint_eq(le_get_u64(b + 88), 0xD1D2D3D4D5D6D7D8ull);
    EXPECT_REENCODE(proto_put_reservation, &v, b, len);
    free(b);
}
END_TEST

/* Every read code with every state of each answer. */
START_TEST(test_answer_every_value)
{
    u8 p[96];
    for (u8 read = 0; read <= SM_READ_FENCE_NOT_APPLIED; read++) {
        for (u8 state = 0; state <= SM_RESOURCE_CONFIRMED; state++) {
            struct proto_resource v = sample_resource, d;
            v.read = read;
            v.state = state;
            ck_assert_uint_eq(proto_put_resource(p, &v), 64);
            ck_assert_int_eq(proto_get_resource(p, 64, &d), PROTO_OK);
            ck_assert_uint_eq(d.read, read);
            ck_assert_uint_eq(d.state, state);
        }
        for (u8 state = 0; state <= SM_RESERVATION_EXPIRED; state++) {
            struct proto_reservation v = sample_reservation, d;
            v.read = read;
            v.state = state;
            ck_assert_uint_eq(proto_put_reservation(p, &v), 96);
            ck_assert_int_eq(proto_get_reservation(p, 96, &d), PROTO_OK);
            ck_assert_uint_eq(d.read, read);
            ck_assert_uint_eq(d.state, state);
        }
    }
}
END_TEST

START_TEST(test_tick_ok_round_trip)
{
    u32 len;
    size_t n = sample_frame(PROTO_TICK_OK, 0, 8);
    u8 *b = checked_body(n, PROTO_TICK_OK, &len);
    struct proto_tick_ok v;
    memset(&v, 0xA5, sizeof(v));
    ck_assert_int_eq(proto_get_tick_ok(b, len, &v), PROTO_OK);
    ck_assert_uint_eq(v.slot, U64_C);
    ck_assert_uint_eq(v.expirations_proposed, U64_B);
    EXPECT_REENCODE(proto_put_tick_ok, &v, b, len);
    free(b);
}
END_TEST

/* Hints of length 0, 1, 14 and the maximum 255. */
START_TEST(test_not_primary_round_trip)
{
    static const u16 lens[] = {0, 1, 14, PROTO_HINT_MAX};
    u16 hint_len = lens[_i];
    u32 len;
    size_t n = sample_frame(PROTO_NOT_PRIMARY, hint_len, 9);
    ck_assert_uint_eq(n, PROTO_HEADER_SIZE + 16 + hint_len);
    u8 *b = checked_body(n, PROTO_NOT_PRIMARY, &len);
    struct proto_not_primary v;
    memset(&v, 0xA5, sizeof(v));
    ck_assert_int_eq(proto_get_not_primary(b, len, &v), PROTO_OK);
    ck_assert_uint_eq(v.view, U64_A);
    ck_assert_uint_eq(strlen(v.hint), hint_len);
    ck_assert_mem_eq(v.hint, b + 16, hint_len);
    ck_assert_uint_eq(le_get_u16(b + 8), hint_len);
    memset(again_buf, 0xEE, len + 1);
    ck_assert_uint_eq(proto_put_not_primary(again_buf, v.view, v.hint, hint_len), len);
    ck_assert_mem_eq(again_buf, b, len);
    ck_assert_uint_eq(again_buf[len], 0xEE);
    free(b);
}
END_TEST

/* Messages of length 0, 1, 100 and the maximum. */
START_TEST(test_error_round_trip)
{
    static const u32 lens[] = {0, 1, 100, PROTO_TEXT_MAX};
    u32 message_len = lens[_i], len;
    size_t n = sample_frame(PROTO_ERROR, message_len, 10);
    ck_assert_uint_eq(n, PROTO_HEADER_SIZE + 8 + (size_t)message_len);
    ck_assert_uint_eq(n, _i == 3 ? FRAME_MAX : n);
    u8 *b = checked_body(n, PROTO_ERROR, &len);
    struct proto_error v;
    memset(&v, 0xA5, sizeof(v));
    ck_assert_int_eq(proto_get_error(b, len, &v), PROTO_OK);
    ck_assert_uint_eq(v.code, PROTO_ERR_IDLE);
    ck_assert_uint_eq(v.message_len, message_len);
    ck_assert_ptr_eq(v.message, (const char *)b + 8);
    ck_assert_uint_eq(le_get_u16(b), PROTO_ERR_IDLE);
    memset(again_buf, 0xEE, len + 1);
    ck_assert_uint_eq(proto_put_error(again_buf, v.code, v.message, v.message_len), len);
    ck_assert_mem_eq(again_buf, b, len);
    ck_assert_uint_eq(again_buf[len], 0xEE);
    free(b);
    for (u16 code = PROTO_ERR_BAD_FRAME; code <= PROTO_ERR_IDLE; code++) {
        u8 p[16];
        struct proto_error e;
        ck_assert_uint_eq(proto_put_error(p, code, "x", 1), 9);
        ck_assert_int_eq(proto_get_error(p, 9, &e), PROTO_OK);
        ck_assert_uint_eq(e.code, code);
    }
}
END_TEST

/* The command and result layouts, byte by byte. */
START_TEST(test_command_result_layout)
{
    u8 p[PROTO_COMMAND_SIZE];
    struct proto_command c = sample_command(SM_CMD_RESERVE, 0);
    proto_put_command(p, &c);
    ck_assert_uint_eq(p[0], 2);
    for (int i = 1; i < 8; i++)
        ck_assert_uint_eq(p[i], 0);
    ck_assert_uint_eq(le_get_u64(p + 8), U128_LO(ID_A));
    ck_assert_uint_eq(le_get_u64(p + 16), U128_HI(ID_A));
    ck_assert_uint_eq(le_get_u64(p + 24), U128_LO(ID_B));
    ck_assert_uint_eq(le_get_u64(p + 32), U128_HI(ID_B));
    ck_assert_uint_eq(le_get_u64(p + 40), U128_LO(ID_C));
    ck_assert_uint_eq(le_get_u64(p + 48), U128_HI(ID_C));
    ck_assert_uint_eq(le_get_u64(p + 56), U128_LO(ID_D));
    ck_assert_uint_eq(le_get_u64(p + 64), U128_HI(ID_D));
    ck_assert_uint_eq(le_get_u64(p + 72), U64_A);
    ck_assert_uint_eq(le_get_u64(p + 80), 0);

    u8 r[PROTO_RESULT_SIZE];
    struct proto_result v = {.outcome = PROTO_COMMITTED, .code = SM_SLOT_OVERFLOW,
                             .from_retry_cache = true, .applied_lsn = U64_A,
                             .reservation_id = ID_B, .deadline_slot = U64_C};
    proto_put_result(r, &v);
    static const u8 head[8] = {0, 15, 1, 0, 0, 0, 0, 0};
    ck_assert_mem_eq(r, head, 8);
    ck_assert_uint_eq(le_get_u64(r + 8), U64_A);
    ck_assert_uint_eq(le_get_u64(r + 16), U128_LO(ID_B));
    ck_assert_uint_eq(le_get_u64(r + 24), U128_HI(ID_B));
    ck_assert_uint_eq(le_get_u64(r + 32), U64_C);
    ck_assert_uint_eq(le_get_u64(r + 40), 0);
}
END_TEST

/* ---- bodies: rejections --------------------------------------------------------------------- */

/* Reserved byte offsets of the body of a sample frame of `kind` with `count` entries. */
static u32 reserved_offsets(u8 kind, u32 count, u32 *out)
{
    u32 n = 0;
    switch (kind) {
    case PROTO_HELLO:
        for (u32 i = 4; i < 8; i++)
            out[n++] = i;
        break;
    case PROTO_HELLO_OK:
        for (u32 i = 44; i < 48; i++)
            out[n++] = i;
        break;
    case PROTO_SUBMIT:
    case PROTO_SUBMIT_RESULT: {
        bool cmd = kind == PROTO_SUBMIT;
        u32 size = cmd ? PROTO_COMMAND_SIZE : PROTO_RESULT_SIZE;
        for (u32 i = 4; i < 8; i++)
            out[n++] = i;
        for (u32 e = 0; e < count; e++) {
            u32 base = PROTO_SUBMIT_PREFIX + e * size;
            for (u32 i = cmd ? 1 : 3; i < 8; i++)
                out[n++] = base + i;
            for (u32 i = size - 8; i < size; i++)
                out[n++] = base + i;
        }
        break;
    }
    case PROTO_RESOURCE:
        for (u32 i = 2; i < 8; i++)
            out[n++] = i;
        for (u32 i = 56; i < 64; i++)
            out[n++] = i;
        break;
    case PROTO_RESERVATION:
        for (u32 i = 2; i < 8; i++)
            out[n++] = i;
        break;
    case PROTO_NOT_PRIMARY:
        for (u32 i = 10; i < 16; i++)
            out[n++] = i;
        break;
    case PROTO_ERROR:
        out[n++] = 2;
        out[n++] = 3;
        break;
    default: break;
    }
    return n;
}

/* Each reserved byte of each body, set on its own (low bit, then high bit), is BAD_RESERVED;
 * the frame itself (resealed) still passes the header and crc checks. */
START_TEST(test_body_bad_reserved)
{
    static const u8 kinds[] = {PROTO_HELLO, PROTO_HELLO_OK, PROTO_SUBMIT, PROTO_SUBMIT_RESULT,
                               PROTO_RESOURCE, PROTO_RESERVATION, PROTO_NOT_PRIMARY,
                               PROTO_ERROR};
    u32 total = 0;
    for (size_t k = 0; k < ADB_ARRAY_LEN(kinds); k++) {
        u8 kind = kinds[k];
        u32 offs[64];
        u32 count = 3;
        u32 m = reserved_offsets(kind, count, offs);
        ck_assert_uint_gt(m, 0);
        for (u32 i = 0; i < m; i++) {
            for (u32 bit = 0; bit < 8; bit += 7) {
                size_t n = sample_frame(kind, count, 1);
                u8 *body = frame_buf + PROTO_HEADER_SIZE;
                u32 len = (u32)(n - PROTO_HEADER_SIZE);
                ck_assert_int_eq(body_status(kind, body, len), PROTO_OK);
                body[offs[i]] ^= (u8)(1u << bit);
                reseal(frame_buf);
                ck_assert_int_eq(header_status(frame_buf, n), PROTO_OK);
                ck_assert_int_eq(check_of(frame_buf, n), PROTO_OK);
                ck_assert_msg(body_status(kind, body, len) == PROTO_BAD_RESERVED,
                              "%s: reserved body byte %u bit %u accepted",
                              proto_kind_name(kind), offs[i], bit);
                total++;
            }
        }
    }
    /* 4 + 4 + (4 + 3 * 15) + (4 + 3 * 13) + 14 + 6 + 6 + 2 bytes, two bits each. */
    ck_assert_uint_eq(total, 2 * (4 + 4 + 49 + 43 + 14 + 6 + 6 + 2));
}
END_TEST

/* Fixed-size bodies: any other length is BAD_LENGTH. */
START_TEST(test_body_bad_length)
{
    static const u8 kinds[] = {PROTO_HELLO, PROTO_HELLO_OK, PROTO_GET_RESOURCE,
                               PROTO_GET_RESERVATION, PROTO_RESOURCE, PROTO_RESERVATION,
                               PROTO_TICK_OK};
    for (size_t k = 0; k < ADB_ARRAY_LEN(kinds); k++) {
        u8 kind = kinds[k];
        size_t n = sample_frame(kind, 0, 1);
        u32 size = (u32)(n - PROTO_HEADER_SIZE);
        ck_assert_uint_eq(size, proto_body_size(kind));
        for (u32 len = 0; len < size; len++)
            ck_assert_int_eq(body_status(kind, frame_buf + PROTO_HEADER_SIZE, len),
                             PROTO_BAD_LENGTH);
        frame_buf[n] = 0;
        ck_assert_int_eq(body_status(kind, frame_buf + PROTO_HEADER_SIZE, size + 1),
                         PROTO_BAD_LENGTH);
        ck_assert_int_eq(body_status(kind, frame_buf + PROTO_HEADER_SIZE, size), PROTO_OK);
    }
}
END_TEST

START_TEST(test_submit_bad_prefix)
{
    u32 count = 0xA5A5A5A5u;
    size_t n = sample_frame(PROTO_SUBMIT, 4, 1);
    u8 *b = frame_buf + PROTO_HEADER_SIZE;
    u32 len = (u32)(n - PROTO_HEADER_SIZE);
    /* Less than the prefix, or a length that is not prefix + count * 88. */
    for (u32 l = 0; l < PROTO_SUBMIT_PREFIX; l++)
        ck_assert_int_eq(proto_get_submit(b, l, PROTO_BATCH_MAX, &count), PROTO_BAD_LENGTH);
    for (u32 l = PROTO_SUBMIT_PREFIX; l <= len + PROTO_COMMAND_SIZE; l++)
        if (l != len)
            ck_assert_int_eq(proto_get_submit(b, l, PROTO_BATCH_MAX, &count), PROTO_BAD_LENGTH);
    ck_assert_uint_eq(count, 0xA5A5A5A5u);
    ck_assert_int_eq(proto_get_submit(b, len, 4, &count), PROTO_OK);
    ck_assert_uint_eq(count, 4);

    /* count 0: BAD_VALUE even with only a prefix. */
    le_put_u32(b, 0);
    ck_assert_int_eq(proto_get_submit(b, PROTO_SUBMIT_PREFIX, PROTO_BATCH_MAX, &count),
                     PROTO_BAD_VALUE);
    ck_assert_int_eq(proto_get_submit(b, len, PROTO_BATCH_MAX, &count), PROTO_BAD_VALUE);

    /* count above max_batch: TOO_LARGE (answered batch_too_large), whatever the length. */
    le_put_u32(b, 4);
    ck_assert_int_eq(proto_get_submit(b, len, 3, &count), PROTO_TOO_LARGE);
    ck_assert_int_eq(proto_get_submit(b, len, 1, &count), PROTO_TOO_LARGE);
    le_put_u32(b, PROTO_BATCH_MAX + 1);
    ck_assert_int_eq(proto_get_submit(b, len, PROTO_BATCH_MAX, &count), PROTO_TOO_LARGE);
    le_put_u32(b, UINT32_MAX);
    ck_assert_int_eq(proto_get_submit(b, len, PROTO_BATCH_MAX, &count), PROTO_TOO_LARGE);
    /* count 3 in a body of 4 commands, count 5 in a body of 4. */
    le_put_u32(b, 3);
    ck_assert_int_eq(proto_get_submit(b, len, PROTO_BATCH_MAX, &count), PROTO_BAD_LENGTH);
    le_put_u32(b, 5);
    ck_assert_int_eq(proto_get_submit(b, len, PROTO_BATCH_MAX, &count), PROTO_BAD_LENGTH);
    /* A count whose 32-bit product wraps to the right length (88 * (4 + 2^29) == 352 + 11 *
     * 2^32) is refused by its size, never taken for a 4-command batch. */
    le_put_u32(b, 4 + (1u << 29));
    ck_assert_int_eq(proto_get_submit(b, len, PROTO_BATCH_MAX, &count), PROTO_TOO_LARGE);
    ck_assert_uint_eq(count, 4);
}
END_TEST

START_TEST(test_submit_result_bad_prefix)
{
    u32 count = 0xA5A5A5A5u;
    size_t n = sample_frame(PROTO_SUBMIT_RESULT, 2, 1);
    u8 *b = frame_buf + PROTO_HEADER_SIZE;
    u32 len = (u32)(n - PROTO_HEADER_SIZE);
    for (u32 l = 0; l <= len + PROTO_RESULT_SIZE; l++)
        if (l != len)
            ck_assert_int_eq(proto_get_submit_result(b, l, &count), PROTO_BAD_LENGTH);
    le_put_u32(b, 0);
    ck_assert_int_eq(proto_get_submit_result(b, len, &count), PROTO_BAD_VALUE);
    le_put_u32(b, PROTO_BATCH_MAX + 1);
    ck_assert_int_eq(proto_get_submit_result(b, len, &count), PROTO_BAD_VALUE);
    le_put_u32(b, 3);
    ck_assert_int_eq(proto_get_submit_result(b, len, &count), PROTO_BAD_LENGTH);
    ck_assert_uint_eq(count, 0xA5A5A5A5u);
    le_put_u32(b, 2);
    ck_assert_int_eq(proto_get_submit_result(b, len, &count), PROTO_OK);
    ck_assert_uint_eq(count, 2);
}
END_TEST

/* Decodes one command from an exact copy; *out must be untouched on failure. */
static enum proto_status command_status(const u8 *p)
{
    u8 *c = exact_copy(p, PROTO_COMMAND_SIZE);
    struct proto_command out, before;
    memset(&out, 0xA5, sizeof(out));
    memcpy(&before, &out, sizeof(out));
    enum proto_status s = proto_get_command(c, &out);
    if (s != PROTO_OK)
        ck_assert_mem_eq(&out, &before, sizeof(out));
    free(c);
    return s;
}

START_TEST(test_command_rules)
{
    u8 p[PROTO_COMMAND_SIZE];
    for (u8 kind = 1; kind <= 4; kind++) {
        struct proto_command c = sample_command(kind, 0);
        proto_put_command(p, &c);
        ck_assert_int_eq(command_status(p), PROTO_OK);

        /* operation_id 0 is refused; either half alone non-zero is fine. */
        c.operation_id = 0;
        proto_put_command(p, &c);
        ck_assert_int_eq(command_status(p), PROTO_BAD_VALUE);
        c.operation_id = U128_MAKE(1, 0);
        proto_put_command(p, &c);
        ck_assert_int_eq(command_status(p), PROTO_OK);
        c.operation_id = 1;
        proto_put_command(p, &c);
        ck_assert_int_eq(command_status(p), PROTO_OK);

        /* client_id and target may be anything, 0 included. */
        c.client_id = 0;
        c.target = 0;
        proto_put_command(p, &c);
        ck_assert_int_eq(command_status(p), PROTO_OK);

        /* holder_id: unused by create_resource only. */
        c = sample_command(kind, 0);
        c.holder_id = U128_MAKE(1, 0);
        proto_put_command(p, &c);
        ck_assert_int_eq(command_status(p),
                         kind == SM_CMD_CREATE_RESOURCE ? PROTO_BAD_VALUE : PROTO_OK);
        c.holder_id = 0;
        proto_put_command(p, &c);
        ck_assert_int_eq(command_status(p), PROTO_OK);

        /* ttl_ms: reserve only (0 is well-formed; the state machine judges the range). */
        c = sample_command(kind, 0);
        c.ttl_ms = 1;
        proto_put_command(p, &c);
        ck_assert_int_eq(command_status(p), kind == SM_CMD_RESERVE ? PROTO_OK : PROTO_BAD_VALUE);
        c.ttl_ms = UINT64_MAX;
        proto_put_command(p, &c);
        ck_assert_int_eq(command_status(p), kind == SM_CMD_RESERVE ? PROTO_OK : PROTO_BAD_VALUE);
        c.ttl_ms = 0;
        proto_put_command(p, &c);
        ck_assert_int_eq(command_status(p), PROTO_OK);
    }
    /* Kinds: 0, expire (5, internal only) and everything above. */
    for (unsigned kind = 0; kind < 256; kind++) {
        if (kind >= 1 && kind <= 4)
            continue;
        struct proto_command c = sample_command(SM_CMD_RESERVE, 0);
        c.kind = (u8)kind;
        proto_put_command(p, &c);
        ck_assert_int_eq(command_status(p), PROTO_BAD_VALUE);
    }
    /* Reserved bytes 1..7 and 80..87, each bit on its own. */
    for (u32 byte = 1; byte < PROTO_COMMAND_SIZE; byte++) {
        if (byte == 8)
            byte = 80;
        for (u32 bit = 0; bit < 8; bit++) {
            struct proto_command c = sample_command(SM_CMD_CONFIRM, 0);
            proto_put_command(p, &c);
            p[byte] ^= (u8)(1u << bit);
            ck_assert_int_eq(command_status(p), PROTO_BAD_RESERVED);
        }
    }
}
END_TEST

/* Decodes one result from an exact copy; *out must be untouched on failure. */
static enum proto_status result_status(const u8 *p)
{
    u8 *c = exact_copy(p, PROTO_RESULT_SIZE);
    struct proto_result out, before;
    memset(&out, 0xA5, sizeof(out));
    memcpy(&before, &out, sizeof(out));
    enum proto_status s = proto_get_result(c, &out);
    if (s != PROTO_OK)
        ck_assert_mem_eq(&out, &before, sizeof(out));
    free(c);
    return s;
}

START_TEST(test_result_ranges)
{
    u8 p[PROTO_RESULT_SIZE];
    struct proto_result r = {.outcome = PROTO_COMMITTED, .code = SM_OK, .applied_lsn = 1};
    for (unsigned outcome = 0; outcome < 256; outcome++) {
        for (unsigned code = 0; code < 256; code++) {
            proto_put_result(p, &r);
            p[0] = (u8)outcome;
            p[1] = (u8)code;
            bool ok = (outcome == 0 && code < SM_RESULT_COUNT) ||
                      (outcome == 1 && code >= 1 && code <= PROTO_REJECT_MAX) ||
                      (outcome == 2 && code >= 1 && code <= PROTO_INDEFINITE_VIEW_CHANGE);
            ck_assert_int_eq(result_status(p), ok ? PROTO_OK : PROTO_BAD_VALUE);
        }
    }
    /* flags: only bit 0. */
    for (u32 bit = 0; bit < 8; bit++) {
        proto_put_result(p, &r);
        p[2] = (u8)(1u << bit);
        ck_assert_int_eq(result_status(p), bit == 0 ? PROTO_OK : PROTO_BAD_FLAGS);
        p[2] = (u8)(1u << bit) | 1;
        ck_assert_int_eq(result_status(p), bit == 0 ? PROTO_OK : PROTO_BAD_FLAGS);
    }
    /* Reserved bytes 3..7 and 40..47. */
    for (u32 byte = 3; byte < PROTO_RESULT_SIZE; byte++) {
        if (byte == 8)
            byte = 40;
        proto_put_result(p, &r);
        p[byte] = 0x80;
        ck_assert_int_eq(result_status(p), PROTO_BAD_RESERVED);
    }
}
END_TEST

START_TEST(test_answer_ranges)
{
    u8 p[96];
    for (unsigned read = 0; read < 256; read++) {
        for (unsigned state = 0; state < 256; state++) {
            struct proto_resource a;
            struct proto_reservation b;
            proto_put_resource(p, &sample_resource);
            p[0] = (u8)read;
            p[1] = (u8)state;
            ck_assert_int_eq(proto_get_resource(p, 64, &a),
                             read <= 3 && state <= 2 ? PROTO_OK : PROTO_BAD_VALUE);
            proto_put_reservation(p, &sample_reservation);
            p[0] = (u8)read;
            p[1] = (u8)state;
            ck_assert_int_eq(proto_get_reservation(p, 96, &b),
                             read <= 3 && state <= 3 ? PROTO_OK : PROTO_BAD_VALUE);
        }
    }
}
END_TEST

START_TEST(test_hello_ok_ranges)
{
    u8 p[56];
    struct proto_hello_ok out;
    struct {
        u32 max_batch;
        u64 slot_duration_ms;
        u32 max_body;
        bool ok;
    } cases[] = {
        {1, 1, 8 + 88, true},
        {1, 1, 8 + 87, false},
        {0, 1, PROTO_BODY_MAX, false},
        {PROTO_BATCH_MAX, 1, 8 + 88 * PROTO_BATCH_MAX, true},
        {PROTO_BATCH_MAX, 1, 8 + 88 * PROTO_BATCH_MAX - 1, false},
        {PROTO_BATCH_MAX + 1, 1, PROTO_BODY_MAX, false},
        {UINT32_MAX, 1, PROTO_BODY_MAX, false},
        {1024, 0, PROTO_BODY_MAX, false},
        {1024, UINT64_MAX, PROTO_BODY_MAX, true},
        {1024, 100, PROTO_BODY_MAX + 1, false},
        {1024, 100, UINT32_MAX, false},
    };
    for (size_t i = 0; i < ADB_ARRAY_LEN(cases); i++) {
        proto_put_hello_ok(p, &sample_hello_ok);
        le_put_u32(p + 4, cases[i].max_batch);
        le_put_u64(p + 32, cases[i].slot_duration_ms);
        le_put_u32(p + 40, cases[i].max_body);
        ck_assert_msg(proto_get_hello_ok(p, 56, &out) ==
                          (cases[i].ok ? PROTO_OK : PROTO_BAD_VALUE),
                      "hello_ok case %zu", i);
        if (cases[i].ok)
            ck_assert_uint_eq(out.max_batch, cases[i].max_batch);
    }
    /* Any client version is well-formed in hello: the server judges it. */
    struct proto_hello h = {.version = 0}, d;
    proto_put_hello(p, &h);
    ck_assert_int_eq(proto_get_hello(p, 24, &d), PROTO_OK);
    ck_assert_uint_eq(d.version, 0);
}
END_TEST

START_TEST(test_not_primary_rejects)
{
    struct proto_not_primary out;
    size_t n = sample_frame(PROTO_NOT_PRIMARY, 14, 1);
    u8 *b = frame_buf + PROTO_HEADER_SIZE;
    u32 len = (u32)(n - PROTO_HEADER_SIZE);
    for (u32 l = 0; l <= len + 2; l++)
        ck_assert_int_eq(body_status(PROTO_NOT_PRIMARY, b, l), l == len ? PROTO_OK
                                                                         : PROTO_BAD_LENGTH);
    /* hint_len above 255 is out of range even when the body is that long. */
    static u8 big[16 + 300];
    memset(big, 'h', sizeof(big));
    memset(big, 0, 16);
    le_put_u16(big + 8, 256);
    ck_assert_int_eq(proto_get_not_primary(big, 16 + 256, &out), PROTO_BAD_VALUE);
    le_put_u16(big + 8, 0xFFFF);
    ck_assert_int_eq(proto_get_not_primary(big, 16 + 300, &out), PROTO_BAD_VALUE);
    le_put_u16(big + 8, 255);
    ck_assert_int_eq(proto_get_not_primary(big, 16 + 255, &out), PROTO_OK);
    ck_assert_uint_eq(strlen(out.hint), 255);
    /* A NUL inside the hint. */
    for (u32 i = 0; i < 14; i++) {
        sample_frame(PROTO_NOT_PRIMARY, 14, 1);
        b[16 + i] = 0;
        ck_assert_int_eq(body_status(PROTO_NOT_PRIMARY, b, len), PROTO_BAD_VALUE);
    }
}
END_TEST

START_TEST(test_error_rejects)
{
    struct proto_error out;
    size_t n = sample_frame(PROTO_ERROR, 10, 1);
    u8 *b = frame_buf + PROTO_HEADER_SIZE;
    u32 len = (u32)(n - PROTO_HEADER_SIZE);
    for (u32 l = 0; l <= len + 2; l++)
        ck_assert_int_eq(body_status(PROTO_ERROR, b, l), l == len ? PROTO_OK : PROTO_BAD_LENGTH);
    static const u16 bad_codes[] = {0, PROTO_ERR_HANDSHAKE + 1, 0x100, 0xFFFF};
    for (size_t i = 0; i < ADB_ARRAY_LEN(bad_codes); i++) {
        sample_frame(PROTO_ERROR, 10, 1);
        le_put_u16(b, bad_codes[i]);
        ck_assert_int_eq(body_status(PROTO_ERROR, b, len), PROTO_BAD_VALUE);
    }
    sample_frame(PROTO_ERROR, 10, 1);
    le_put_u32(b + 4, PROTO_TEXT_MAX + 1);
    ck_assert_int_eq(proto_get_error(b, len, &out), PROTO_BAD_VALUE);
    le_put_u32(b + 4, UINT32_MAX);
    ck_assert_int_eq(proto_get_error(b, len, &out), PROTO_BAD_VALUE);
    /* UINT32_MAX - 7 + 8 wraps to 0 in 32 bits: still a length mismatch, never a match. */
    le_put_u32(b + 4, UINT32_MAX - 7);
    ck_assert_int_ne(proto_get_error(b, len, &out), PROTO_OK);
    for (u32 i = 0; i < 10; i++) {
        sample_frame(PROTO_ERROR, 10, 1);
        b[8 + i] = 0;
        ck_assert_int_eq(body_status(PROTO_ERROR, b, len), PROTO_BAD_VALUE);
    }
}
END_TEST

/* ---- ttl ------------------------------------------------------------------------------------ */

START_TEST(test_ttl_slots)
{
    ck_assert_uint_eq(proto_ttl_slots(0, 100), 0);
    ck_assert_uint_eq(proto_ttl_slots(1, 100), 1);
    ck_assert_uint_eq(proto_ttl_slots(99, 100), 1);
    ck_assert_uint_eq(proto_ttl_slots(100, 100), 1);
    ck_assert_uint_eq(proto_ttl_slots(101, 100), 2);
    ck_assert_uint_eq(proto_ttl_slots(30000, 100), 300);
    ck_assert_uint_eq(proto_ttl_slots(30001, 100), 301);
    ck_assert_uint_eq(proto_ttl_slots(0, 1), 0);
    ck_assert_uint_eq(proto_ttl_slots(7, 1), 7);
    ck_assert_uint_eq(proto_ttl_slots(UINT64_MAX, 1), UINT64_MAX);
    ck_assert_uint_eq(proto_ttl_slots(UINT64_MAX, 2), 1ull << 63);
    ck_assert_uint_eq(proto_ttl_slots(UINT64_MAX - 1, 2), (1ull << 63) - 1);
    ck_assert_uint_eq(proto_ttl_slots(UINT64_MAX, 100), UINT64_MAX / 100 + 1);
    ck_assert_uint_eq(proto_ttl_slots(UINT64_MAX, UINT64_MAX), 1);
    ck_assert_uint_eq(proto_ttl_slots(UINT64_MAX - 1, UINT64_MAX), 1);
    ck_assert_uint_eq(proto_ttl_slots(1, UINT64_MAX), 1);
    ck_assert_uint_eq(proto_ttl_slots(0, UINT64_MAX), 0);
    /* Never early: slots * d >= ttl, and one slot fewer would be early. */
    for (u64 d = 1; d <= 64; d++) {
        for (u64 ttl = 0; ttl <= 512; ttl++) {
            u64 s = proto_ttl_slots(ttl, d);
            ck_assert_uint_ge(s * d, ttl);
            if (s > 0)
                ck_assert_uint_lt((s - 1) * d, ttl);
        }
    }
}
END_TEST

/* ---- encoder assertions --------------------------------------------------------------------- */

/* Each call breaks one documented precondition and must abort. */
START_TEST(test_encode_asserts)
{
    static u8 p[FRAME_MAX];
    struct proto_header h;
    struct proto_hello_ok ok = sample_hello_ok;
    struct proto_result r = {.outcome = PROTO_REJECTED, .code = 0};
    struct proto_resource res = sample_resource;
    struct proto_reservation rsv = sample_reservation;
    switch (_i) {
    case 0: proto_frame_finish(p, PROTO_HEADER_SIZE + 23, PROTO_HELLO, 1, 24); break;
    case 1: proto_frame_finish(p, sizeof(p), 0x08, 1, 0); break;
    case 2: proto_frame_finish(p, sizeof(p), PROTO_HELLO, 1, 23); break;
    case 3: proto_frame_finish(p, sizeof(p), PROTO_SUBMIT, 1, PROTO_BODY_MAX + 1); break;
    case 4: proto_put_submit_prefix(p, 0); break;
    case 5: proto_put_submit_result_prefix(p, PROTO_BATCH_MAX + 1); break;
    case 6: proto_put_result(p, &r); break;
    case 7: ok.slot_duration_ms = 0; proto_put_hello_ok(p, &ok); break;
    case 8: proto_put_not_primary(p, 1, (const char *)p, PROTO_HINT_MAX + 1); break;
    case 9: proto_put_not_primary(p, 1, "a\0b", 3); break;
    case 10: proto_put_error(p, 0, "x", 1); break;
    case 11: proto_put_error(p, PROTO_ERR_IDLE, "a\0b", 3); break;
    case 12: res.state = 3; proto_put_resource(p, &res); break;
    case 13: rsv.read = 4; proto_put_reservation(p, &rsv); break;
    case 14: proto_ttl_slots(1, 0); break;
    case 15: proto_header_decode(p, sizeof(p), PROTO_BODY_MAX + 1, &h); break;
    case 16: proto_get_submit(p, 96, 0, (u32 *)&h.body_len); break;
    }
}
END_TEST

static TCase *header_tcase(void)
{
    TCase *tc = tcase_create("header");
    tcase_add_test(tc, test_names);
    tcase_add_test(tc, test_body_sizes);
    tcase_add_test(tc, test_header_layout);
    tcase_add_test(tc, test_man_example);
    tcase_add_test(tc, test_header_round_trip);
    tcase_add_test(tc, test_header_short);
    tcase_add_test(tc, test_header_bad_magic);
    tcase_add_test(tc, test_header_bad_version);
    tcase_add_test(tc, test_header_bad_kind);
    tcase_add_test(tc, test_header_bad_flags);
    tcase_add_test(tc, test_header_bad_reserved);
    tcase_add_test(tc, test_header_too_large);
    tcase_add_test(tc, test_header_fixed_length);
    tcase_add_test(tc, test_frame_crc);
    tcase_add_test(tc, test_frame_truncated);
    tcase_set_timeout(tc, TEST_LONG_TIMEOUT);
    return tc;
}

static TCase *body_tcase(void)
{
    TCase *tc = tcase_create("body");
    tcase_add_test(tc, test_hello_round_trip);
    tcase_add_loop_test(tc, test_submit_round_trip, 0, 4);
    tcase_add_loop_test(tc, test_submit_result_round_trip, 0, 4);
    tcase_add_test(tc, test_result_every_code);
    tcase_add_test(tc, test_read_round_trip);
    tcase_add_test(tc, test_resource_round_trip);
    tcase_add_test(tc, test_reservation_round_trip);
    tcase_add_test(tc, test_answer_every_value);
    tcase_add_test(tc, test_tick_ok_round_trip);
    tcase_add_loop_test(tc, test_not_primary_round_trip, 0, 4);
    tcase_add_loop_test(tc, test_error_round_trip, 0, 4);
    tcase_add_test(tc, test_command_result_layout);
    tcase_add_test(tc, test_body_bad_reserved);
    tcase_add_test(tc, test_body_bad_length);
    tcase_add_test(tc, test_submit_bad_prefix);
    tcase_add_test(tc, test_submit_result_bad_prefix);
    tcase_add_test(tc, test_command_rules);
    tcase_add_test(tc, test_result_ranges);
    tcase_add_test(tc, test_answer_ranges);
    tcase_add_test(tc, test_hello_ok_ranges);
    tcase_add_test(tc, test_not_primary_rejects);
    tcase_add_test(tc, test_error_rejects);
    tcase_add_test(tc, test_ttl_slots);
    tcase_add_loop_test_raise_signal(tc, test_encode_asserts, SIGABRT, 0, 17);
    tcase_set_timeout(tc, TEST_LONG_TIMEOUT);
    return tc;
}

Suite *test_suite(void)
{
    Suite *s = suite_create("proto");
    suite_add_tcase(s, header_tcase());
    suite_add_tcase(s, body_tcase());
    return s;
}
