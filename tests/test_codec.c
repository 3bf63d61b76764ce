/*
 * tests/test_codec.c — CRC32C, the WAL frame codec and the command payload codec.
 *
 * CRC32C: the standard check vectors for both implementations, hardware == portable on random
 * data at every length and alignment, and chaining. Frames and commands: random round trips,
 * the exact byte layout, and one test per rejection so every malformed field is reported by
 * its own status. Every decode reads from a malloc'd buffer of exactly the length it is given,
 * so AddressSanitizer builds catch any read past `len`.
 */
#include "common/crc32c.h"
#include "common/le.h"
#include "common/splitmix.h"
#include "tests/check_main.h"
#include "wal/command.h"
#include "wal/frame.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

static u64 rng_state;
static u64 rng(void)
{
    return splitmix_next(&rng_state);
}

static u128 rng_u128(void)
{
    return U128_MAKE(rng(), rng());
}

static void fill_random(u8 *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (u8)rng();
}

/* A malloc'd copy of exactly len bytes (1 byte for len 0, so the pointer is valid). */
static u8 *exact_copy(const u8 *p, size_t len)
{
    u8 *c = malloc(len ? len : 1);
    ck_assert_ptr_nonnull(c);
    if (len != 0)
        memcpy(c, p, len);
    return c;
}

/* ---- CRC32C -------------------------------------------------------------------------------- */

typedef u32 (*crc_fn)(u32, const void *, size_t);

/* _i selects the implementation: 0 portable, 1 hardware, 2 the dispatcher. */
static crc_fn crc_impl(int i)
{
    static const crc_fn fns[] = {crc32c_portable, crc32c_hw, crc32c};
    return fns[i];
}

static bool impl_usable(int i)
{
    return i != 1 || crc32c_hw_available();
}

START_TEST(test_crc_vectors)
{
    if (!impl_usable(_i))
        return;
    crc_fn f = crc_impl(_i);
    u8 buf[32];
    ck_assert_uint_eq(f(0, "123456789", 9), 0xE3069283u);
    ck_assert_uint_eq(f(0, buf, 0), 0);
    ck_assert_uint_eq(f(0, NULL, 0), 0);
    memset(buf, 0, sizeof(buf));
    ck_assert_uint_eq(f(0, buf, 32), 0x8A9136AAu);
    memset(buf, 0xFF, sizeof(buf));
    ck_assert_uint_eq(f(0, buf, 32), 0x62A8AB43u);
    for (int i = 0; i < 32; i++)
        buf[i] = (u8)i;
    ck_assert_uint_eq(f(0, buf, 32), 0x46DD794Eu);
}
END_TEST

#define CRC_MAX_LEN 300
#define CRC_MAX_OFFSET 16

START_TEST(test_crc_hw_matches_portable)
{
    if (!crc32c_hw_available())
        return;
    static u8 buf[CRC_MAX_LEN + CRC_MAX_OFFSET];
    rng_state = 1000 + (u64)_i;
    for (size_t len = 0; len <= CRC_MAX_LEN; len++) {
        for (size_t off = 0; off < CRC_MAX_OFFSET; off++) {
            fill_random(buf, sizeof(buf));
            u32 seed = (u32)rng();
            ck_assert_uint_eq(crc32c_hw(0, buf + off, len), crc32c_portable(0, buf + off, len));
            ck_assert_uint_eq(crc32c_hw(seed, buf + off, len),
                              crc32c_portable(seed, buf + off, len));
        }
    }
}
END_TEST

START_TEST(test_crc_chaining)
{
    if (!impl_usable(_i))
        return;
    crc_fn f = crc_impl(_i);
    static u8 buf[CRC_MAX_LEN];
    rng_state = 2000 + (u64)_i;
    fill_random(buf, sizeof(buf));
    u32 whole = f(0, buf, sizeof(buf));
    for (size_t split = 0; split <= sizeof(buf); split++)
        ck_assert_uint_eq(f(f(0, buf, split), buf + split, sizeof(buf) - split), whole);
    /* Three pieces, the middle one unaligned and odd-sized. */
    ck_assert_uint_eq(f(f(f(0, buf, 3), buf + 3, 101), buf + 104, sizeof(buf) - 104), whole);
}
END_TEST

/* ---- frames -------------------------------------------------------------------------------- */

/* A random valid frame with this type and payload length; payload in payload_buf. */
static struct wal_frame random_frame(u16 type, u32 payload_len, u8 *payload_buf)
{
    fill_random(payload_buf, payload_len);
    struct wal_frame f = {.payload_len = payload_len, .record_type = type};
    f.payload = payload_len ? payload_buf : NULL;
    f.lsn = rng() % 4 == 0 ? 1 + rng() % 16 : rng() | 1; /* never 0 */
    f.request_slot = rng();
    f.view = rng() % 4 == 0 ? 0 : rng();
    f.prev_crc = (u32)rng();
    return f;
}

/* Decodes from an exactly-sized copy; returns the status and fills *out / *frame_len. */
static enum wal_frame_status decode_copy(const u8 *bytes, size_t len, struct wal_frame *out,
                                         u32 *frame_len)
{
    u8 *c = exact_copy(bytes, len);
    enum wal_frame_status s = wal_frame_decode(c, len, out, frame_len);
    if (s == WAL_FRAME_OK)
        out->payload = out->payload - c + bytes; /* rebase before the copy is freed */
    free(c);
    return s;
}

static enum wal_frame_status decode_exact_copy(const u8 *bytes, size_t len)
{
    struct wal_frame out;
    u8 *c = exact_copy(bytes, len);
    enum wal_frame_status s = wal_frame_decode_exact(c, len, &out);
    free(c);
    return s;
}

static enum wal_frame_status status_of(const u8 *bytes, size_t len)
{
    struct wal_frame out;
    u32 frame_len;
    return decode_copy(bytes, len, &out, &frame_len);
}

/* Recomputes the crc field of an encoded frame of payload_len after a field was edited. */
static void reseal(u8 *frame, u32 payload_len)
{
    u32 crc = crc32c(crc32c(0, frame, 44), frame + WAL_FRAME_HEADER_SIZE, payload_len);
    le_put_u32(frame + 44, crc);
}

static void assert_frames_equal(const struct wal_frame *a, const struct wal_frame *b)
{
    ck_assert_uint_eq(a->lsn, b->lsn);
    ck_assert_uint_eq(a->request_slot, b->request_slot);
    ck_assert_uint_eq(a->view, b->view);
    ck_assert_uint_eq(a->payload_len, b->payload_len);
    ck_assert_uint_eq(a->prev_crc, b->prev_crc);
    ck_assert_uint_eq(a->crc, b->crc);
    ck_assert_uint_eq(a->record_type, b->record_type);
    if (a->payload_len != 0)
        ck_assert_mem_eq(a->payload, b->payload, a->payload_len);
}

/* Encode, decode (plain and exact) and re-encode one frame. */
static void round_trip_one(u16 type, u32 payload_len)
{
    static u8 payload[WAL_PAYLOAD_MAX], frame[WAL_FRAME_MAX], again[WAL_FRAME_MAX];
    struct wal_frame f = random_frame(type, payload_len, payload);
    u32 size = wal_frame_encode(frame, wal_frame_size(payload_len), &f);
    ck_assert_uint_eq(size, WAL_FRAME_HEADER_SIZE + payload_len);

    struct wal_frame d;
    u32 frame_len = 0;
    ck_assert_int_eq(decode_copy(frame, size, &d, &frame_len), WAL_FRAME_OK);
    ck_assert_uint_eq(frame_len, size);
    ck_assert_ptr_eq(d.payload, frame + WAL_FRAME_HEADER_SIZE);
    assert_frames_equal(&f, &d);
    ck_assert_int_eq(decode_exact_copy(frame, size), WAL_FRAME_OK);

    ck_assert_uint_eq(wal_frame_encode(again, sizeof(again), &d), size);
    ck_assert_mem_eq(again, frame, size);
}

START_TEST(test_frame_round_trip)
{
    rng_state = 3000 + (u64)_i;
    for (u16 type = 1; type <= WAL_RECORD_TYPE_MAX; type++)
        for (u32 len = 0; len <= WAL_PAYLOAD_MAX; len++)
            round_trip_one(type, len);
}
END_TEST

/* Encoding writes every byte of the frame and nothing past it. */
START_TEST(test_frame_encode_writes_exactly)
{
    static const u32 lens[] = {0, 1, 100, WAL_PAYLOAD_MAX};
    static u8 payload[WAL_PAYLOAD_MAX], a[WAL_FRAME_MAX + 1], b[WAL_FRAME_MAX + 1];
    rng_state = 3200;
    for (size_t i = 0; i < ADB_ARRAY_LEN(lens); i++) {
        struct wal_frame f = random_frame(WAL_RECORD_COMMAND, lens[i], payload);
        memset(a, 0x00, sizeof(a));
        memset(b, 0xFF, sizeof(b));
        u32 size = wal_frame_encode(a, wal_frame_size(lens[i]), &f);
        ck_assert_uint_eq(wal_frame_encode(b, wal_frame_size(lens[i]), &f), size);
        ck_assert_mem_eq(a, b, size);
        ck_assert_uint_eq(a[size], 0x00);
        ck_assert_uint_eq(b[size], 0xFF);
    }
}
END_TEST

/* The documented layout, field by field, for one frame with known values. */
START_TEST(test_frame_layout)
{
    static const u8 payload[3] = {0xAA, 0xBB, 0xCC};
    struct wal_frame f = {.lsn = 0x0102030405060708ull, .request_slot = 0x1112131415161718ull,
                          .view = 0x2122232425262728ull, .payload_len = 3,
                          .prev_crc = 0x31323334u, .record_type = WAL_RECORD_EXPIRE,
                          .payload = payload};
    u8 b[WAL_FRAME_HEADER_SIZE + 3];
    ck_assert_uint_eq(wal_frame_encode(b, sizeof(b), &f), sizeof(b));
    static const u8 head[44] = {
        'A', 'D', 'B', 'W', 1, 0, 2, 0,                   /* magic, version, type */
        8, 7, 6, 5, 4, 3, 2, 1,                           /* lsn */
        0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11,   /* request_slot */
        0x28, 0x27, 0x26, 0x25, 0x24, 0x23, 0x22, 0x21,   /* view */
        3, 0, 0, 0, 0x34, 0x33, 0x32, 0x31, 0, 0, 0, 0};  /* payload_len, prev_crc, reserved */
    ck_assert_mem_eq(b, head, sizeof(head));
    ck_assert_uint_eq(le_get_u32(b + 44), crc32c(crc32c(0, b, 44), payload, 3));
    ck_assert_uint_eq(le_get_u32(b + 44), f.crc);
    ck_assert_mem_eq(b + 48, payload, 3);
}
END_TEST

/* Encoding with the payload already in place (the payload pointer is buf + 48). */
START_TEST(test_frame_encode_in_place)
{
    static u8 a[WAL_FRAME_MAX], b[WAL_FRAME_MAX];
    rng_state = 3500;
    struct wal_frame f = random_frame(WAL_RECORD_COMMAND, 200, b + WAL_FRAME_HEADER_SIZE);
    memcpy(a + WAL_FRAME_HEADER_SIZE, b + WAL_FRAME_HEADER_SIZE, 200);
    wal_frame_encode(b, sizeof(b), &f);
    f.payload = a + WAL_FRAME_HEADER_SIZE;
    wal_frame_encode(a, sizeof(a), &f);
    ck_assert_mem_eq(a, b, wal_frame_size(200));
}
END_TEST

/* A valid frame with a random payload of `payload_len`, encoded into buf; returns its size. */
static u32 valid_frame(u8 *buf, u32 payload_len)
{
    static u8 payload[WAL_PAYLOAD_MAX];
    struct wal_frame f = random_frame(WAL_RECORD_COMMAND, payload_len, payload);
    return wal_frame_encode(buf, WAL_FRAME_MAX, &f);
}

START_TEST(test_frame_short)
{
    static const u32 lens[] = {0, 1, 47, 48, 100, WAL_PAYLOAD_MAX};
    static u8 frame[WAL_FRAME_MAX];
    rng_state = 4000;
    for (size_t i = 0; i < ADB_ARRAY_LEN(lens); i++) {
        u32 size = valid_frame(frame, lens[i]);
        for (u32 len = 0; len < size; len++) {
            ck_assert_int_eq(status_of(frame, len), WAL_FRAME_SHORT);
            ck_assert_int_eq(decode_exact_copy(frame, len), WAL_FRAME_SHORT);
        }
        ck_assert_int_eq(status_of(frame, size), WAL_FRAME_OK);
    }
}
END_TEST

/*
 * Sets the header field at `off` (width 2, 4 or 8) to v and expects `want`, both without and
 * with a recomputed crc: the field's own check must fire, not just the checksum.
 */
static void expect_field(u32 payload_len, u32 off, int width, u64 v, enum wal_frame_status want)
{
    static u8 frame[WAL_FRAME_MAX];
    u32 size = valid_frame(frame, payload_len);
    if (width == 2)
        le_put_u16(frame + off, (u16)v);
    else if (width == 4)
        le_put_u32(frame + off, (u32)v);
    else
        le_put_u64(frame + off, v);
    ck_assert_int_eq(status_of(frame, size), want);
    ck_assert_int_eq(decode_exact_copy(frame, size), want);
    reseal(frame, payload_len);
    ck_assert_int_eq(status_of(frame, size), want);
}

START_TEST(test_frame_bad_magic)
{
    rng_state = 5000;
    expect_field(10, 0, 4, 0, WAL_FRAME_BAD_MAGIC);
    expect_field(10, 0, 4, 0x57424442u, WAL_FRAME_BAD_MAGIC);
    expect_field(10, 0, 4, 0x41444257u, WAL_FRAME_BAD_MAGIC); /* byte-swapped */
    for (u32 byte = 0; byte < 4; byte++) {
        static u8 frame[WAL_FRAME_MAX];
        u32 size = valid_frame(frame, 10);
        frame[byte] ^= 0x20;
        ck_assert_int_eq(status_of(frame, size), WAL_FRAME_BAD_MAGIC);
    }
}
END_TEST

START_TEST(test_frame_bad_version)
{
    rng_state = 5100;
    expect_field(10, 4, 2, 0, WAL_FRAME_BAD_VERSION);
    expect_field(10, 4, 2, 2, WAL_FRAME_BAD_VERSION);
    expect_field(10, 4, 2, 0x100, WAL_FRAME_BAD_VERSION);
    expect_field(10, 4, 2, 0xFFFF, WAL_FRAME_BAD_VERSION);
}
END_TEST

START_TEST(test_frame_bad_type)
{
    rng_state = 5200;
    expect_field(10, 6, 2, 0, WAL_FRAME_BAD_TYPE);
    expect_field(10, 6, 2, 3, WAL_FRAME_BAD_TYPE);
    expect_field(10, 6, 2, 0x101, WAL_FRAME_BAD_TYPE);
    expect_field(10, 6, 2, 0xFFFF, WAL_FRAME_BAD_TYPE);
}
END_TEST

START_TEST(test_frame_bad_lsn)
{
    rng_state = 5300;
    expect_field(0, 8, 8, 0, WAL_FRAME_BAD_LSN);
    expect_field(10, 8, 8, 0, WAL_FRAME_BAD_LSN);
}
END_TEST

/* payload_len over the limit is BAD_LENGTH even when the buffer holds that many bytes. */
START_TEST(test_frame_bad_length)
{
    static u8 frame[WAL_FRAME_HEADER_SIZE + 1024];
    static const u32 lens[] = {WAL_PAYLOAD_MAX + 1, 1000, 0x80000000u, 0xFFFFFFFFu};
    rng_state = 5400;
    for (size_t i = 0; i < ADB_ARRAY_LEN(lens); i++) {
        valid_frame(frame, 0);
        le_put_u32(frame + 32, lens[i]);
        ck_assert_int_eq(status_of(frame, WAL_FRAME_HEADER_SIZE), WAL_FRAME_BAD_LENGTH);
        ck_assert_int_eq(status_of(frame, sizeof(frame)), WAL_FRAME_BAD_LENGTH);
        if (lens[i] <= 1000) {
            reseal(frame, lens[i]);
            ck_assert_int_eq(status_of(frame, WAL_FRAME_HEADER_SIZE + lens[i]),
                             WAL_FRAME_BAD_LENGTH);
        }
    }
}
END_TEST

START_TEST(test_frame_bad_reserved)
{
    rng_state = 5500;
    expect_field(10, 40, 4, 1, WAL_FRAME_BAD_RESERVED);
    expect_field(10, 40, 4, 0xFFFFFFFFu, WAL_FRAME_BAD_RESERVED);
    for (u32 byte = 0; byte < 4; byte++) {
        static u8 frame[WAL_FRAME_MAX];
        u32 size = valid_frame(frame, 10);
        frame[40 + byte] = 0x80;
        ck_assert_int_eq(status_of(frame, size), WAL_FRAME_BAD_RESERVED);
        reseal(frame, 10);
        ck_assert_int_eq(status_of(frame, size), WAL_FRAME_BAD_RESERVED);
    }
}
END_TEST

/* True if header byte `byte` belongs to a field the decoder checks only through the crc. */
static bool crc_only_byte(u32 byte)
{
    return (byte >= 16 && byte < 32) || (byte >= 36 && byte < 40) || byte >= 44;
}

/* Every single-bit flip anywhere in the frame is rejected; crc-only bytes by the checksum. */
START_TEST(test_frame_bit_flips)
{
    static const u32 lens[] = {0, 1, 37, WAL_PAYLOAD_MAX};
    static u8 frame[WAL_FRAME_MAX];
    rng_state = 5600;
    for (size_t i = 0; i < ADB_ARRAY_LEN(lens); i++) {
        u32 size = valid_frame(frame, lens[i]);
        for (u32 bit = 0; bit < size * 8; bit++) {
            frame[bit / 8] ^= (u8)(1u << (bit % 8));
            enum wal_frame_status s = status_of(frame, size);
            ck_assert_int_ne(s, WAL_FRAME_OK);
            if (crc_only_byte(bit / 8))
                ck_assert_int_eq(s, WAL_FRAME_BAD_CHECKSUM);
            frame[bit / 8] ^= (u8)(1u << (bit % 8));
        }
        ck_assert_int_eq(status_of(frame, size), WAL_FRAME_OK);
    }
}
END_TEST

START_TEST(test_frame_trailing)
{
    static u8 frame[WAL_FRAME_MAX + 64];
    rng_state = 5700;
    for (u32 extra = 1; extra <= 64; extra++) {
        u32 size = valid_frame(frame, 20);
        struct wal_frame d;
        u32 frame_len = 0;
        ck_assert_int_eq(decode_copy(frame, size + extra, &d, &frame_len), WAL_FRAME_OK);
        ck_assert_uint_eq(frame_len, size);
        ck_assert_int_eq(decode_exact_copy(frame, size + extra), WAL_FRAME_TRAILING);
        ck_assert_int_eq(decode_exact_copy(frame, size), WAL_FRAME_OK);
    }
}
END_TEST

/* Two frames back to back: the first decodes and tells where the second starts. */
START_TEST(test_frame_sequence)
{
    static u8 buf[2 * WAL_FRAME_MAX];
    rng_state = 5800;
    u32 a = valid_frame(buf, 5);
    u32 b = valid_frame(buf + a, 300);
    struct wal_frame d;
    u32 frame_len;
    ck_assert_int_eq(decode_copy(buf, a + b, &d, &frame_len), WAL_FRAME_OK);
    ck_assert_uint_eq(frame_len, a);
    ck_assert_int_eq(decode_copy(buf + a, b, &d, &frame_len), WAL_FRAME_OK);
    ck_assert_uint_eq(frame_len, b);
}
END_TEST

START_TEST(test_frame_status_names)
{
    for (int s = WAL_FRAME_OK; s <= WAL_FRAME_TRAILING; s++) {
        const char *name = wal_frame_status_name((enum wal_frame_status)s);
        ck_assert_str_ne(name, "unknown");
        for (int t = WAL_FRAME_OK; t < s; t++)
            ck_assert_str_ne(name, wal_frame_status_name((enum wal_frame_status)t));
    }
}
END_TEST

/* Encoding an invalid frame is a programming error: it aborts. _i picks the invalid field. */
START_TEST(test_frame_encode_asserts)
{
    static u8 frame[WAL_FRAME_MAX];
    struct wal_frame f = {.lsn = 1, .record_type = WAL_RECORD_COMMAND};
    switch (_i) {
    case 0: f.lsn = 0; break;
    case 1: f.record_type = 0; break;
    case 2: f.record_type = WAL_RECORD_TYPE_MAX + 1; break;
    case 3: f.payload_len = WAL_PAYLOAD_MAX + 1; f.payload = frame; break;
    case 4: f.payload_len = 1; break; /* payload NULL */
    }
    wal_frame_encode(frame, sizeof(frame), &f);
}
END_TEST

START_TEST(test_frame_encode_small_buffer)
{
    static u8 frame[WAL_FRAME_MAX];
    struct wal_frame f = {.lsn = 1, .record_type = WAL_RECORD_COMMAND, .payload_len = 4,
                          .payload = frame + 100};
    wal_frame_encode(frame, wal_frame_size(4) - 1, &f);
}
END_TEST

/* ---- commands ------------------------------------------------------------------------------ */

/* A random command of `kind` with only its kind's fields set (ids may be any value). */
static struct sm_command random_command(u8 kind)
{
    struct sm_command c;
    memset(&c, 0, sizeof(c));
    c.kind = kind;
    if (kind == SM_CMD_EXPIRE) {
        c.reservation_id = rng_u128();
        c.deadline_slot = rng();
        return c;
    }
    do
        c.operation_id = rng() % 8 == 0 ? rng() : rng_u128(); /* sometimes a 64-bit id */
    while (c.operation_id == 0);
    c.client_id = rng_u128();
    if (kind == SM_CMD_CREATE_RESOURCE || kind == SM_CMD_RESERVE)
        c.resource_id = rng_u128();
    else
        c.reservation_id = rng_u128();
    if (kind != SM_CMD_CREATE_RESOURCE)
        c.holder_id = rng_u128();
    if (kind == SM_CMD_RESERVE)
        c.ttl_slots = rng();
    return c;
}

static void assert_commands_equal(const struct sm_command *a, const struct sm_command *b)
{
    ck_assert_uint_eq(a->kind, b->kind);
    ck_assert(a->operation_id == b->operation_id);
    ck_assert(a->client_id == b->client_id);
    ck_assert(a->resource_id == b->resource_id);
    ck_assert(a->reservation_id == b->reservation_id);
    ck_assert(a->holder_id == b->holder_id);
    ck_assert_uint_eq(a->ttl_slots, b->ttl_slots);
    ck_assert_uint_eq(a->deadline_slot, b->deadline_slot);
}

static enum wal_cmd_status cmd_decode_copy(u16 record_type, const u8 *bytes, size_t len,
                                           struct sm_command *out)
{
    u8 *c = exact_copy(bytes, len);
    enum wal_cmd_status s = wal_cmd_decode(record_type, c, len, out);
    free(c);
    return s;
}

static enum wal_cmd_status cmd_status(u16 record_type, const u8 *bytes, size_t len)
{
    struct sm_command out;
    return cmd_decode_copy(record_type, bytes, len, &out);
}

static const u32 kind_sizes[SM_CMD_KIND_MAX + 1] = {0, 56, 88, 72, 72, 32};

/* Encodes a random command of kind into buf; returns its size. */
static u32 encode_random(u8 kind, u8 *buf)
{
    struct sm_command c = random_command(kind);
    return wal_cmd_encode(buf, WAL_CMD_SIZE_MAX, &c);
}

/* _i + 1 is the kind. */
START_TEST(test_cmd_round_trip)
{
    u8 kind = (u8)(_i + 1);
    u8 buf[WAL_CMD_SIZE_MAX], again[WAL_CMD_SIZE_MAX];
    rng_state = 6000 + (u64)_i;
    for (int n = 0; n < 10000; n++) {
        struct sm_command c = random_command(kind), d;
        u32 size = wal_cmd_size(&c);
        ck_assert_uint_eq(size, kind_sizes[kind]);
        ck_assert_uint_eq(wal_cmd_encode(buf, size, &c), size);
        memset(&d, 0x5A, sizeof(d)); /* decode must clear the other kinds' fields */
        ck_assert_int_eq(cmd_decode_copy(wal_cmd_record_type(&c), buf, size, &d), WAL_CMD_OK);
        assert_commands_equal(&c, &d);
        ck_assert_uint_eq(wal_cmd_encode(again, sizeof(again), &d), size);
        ck_assert_mem_eq(again, buf, size);
    }
}
END_TEST

/*
 * Encoding writes every byte of the payload and nothing past it: two encodings into buffers
 * pre-filled with different patterns agree, and the byte after the payload is untouched.
 */
START_TEST(test_cmd_encode_writes_exactly)
{
    u8 a[WAL_CMD_SIZE_MAX + 1], b[WAL_CMD_SIZE_MAX + 1];
    rng_state = 6050;
    for (u8 kind = 1; kind <= SM_CMD_KIND_MAX; kind++) {
        struct sm_command c = random_command(kind);
        memset(a, 0x00, sizeof(a));
        memset(b, 0xFF, sizeof(b));
        u32 size = wal_cmd_encode(a, kind_sizes[kind], &c);
        ck_assert_uint_eq(wal_cmd_encode(b, kind_sizes[kind], &c), size);
        ck_assert_mem_eq(a, b, size);
        ck_assert_uint_eq(a[size], 0x00);
        ck_assert_uint_eq(b[size], 0xFF);
    }
}
END_TEST

/*
 * No byte of a payload is ignored: after any change to one byte, the decoder either rejects
 * the payload or decodes a command that re-encodes to the changed bytes.
 */
START_TEST(test_cmd_every_byte_matters)
{
    u8 b[WAL_CMD_SIZE_MAX], again[WAL_CMD_SIZE_MAX];
    rng_state = 6070;
    for (u8 kind = 1; kind <= SM_CMD_KIND_MAX; kind++) {
        struct sm_command c = random_command(kind);
        u32 size = wal_cmd_encode(b, sizeof(b), &c);
        for (u32 i = 0; i < size; i++) {
            static const u8 flips[] = {0x01, 0x80, 0xFF};
            for (size_t f = 0; f < ADB_ARRAY_LEN(flips); f++) {
                struct sm_command d;
                b[i] ^= flips[f];
                if (cmd_decode_copy(wal_cmd_record_type(&c), b, size, &d) == WAL_CMD_OK) {
                    ck_assert_uint_eq(wal_cmd_encode(again, sizeof(again), &d), size);
                    ck_assert_mem_eq(again, b, size);
                }
                b[i] ^= flips[f];
            }
        }
    }
}
END_TEST

START_TEST(test_cmd_record_types)
{
    struct sm_command c = {.kind = SM_CMD_EXPIRE};
    ck_assert_uint_eq(wal_cmd_record_type(&c), WAL_RECORD_EXPIRE);
    for (u8 k = SM_CMD_CREATE_RESOURCE; k <= SM_CMD_RELEASE; k++) {
        c.kind = k;
        ck_assert_uint_eq(wal_cmd_record_type(&c), WAL_RECORD_COMMAND);
    }
}
END_TEST

/* The documented layout for a reserve and an expire with known values. */
START_TEST(test_cmd_layout)
{
    struct sm_command r = {.kind = SM_CMD_RESERVE, .operation_id = U128_MAKE(0x0f, 0x01),
                           .client_id = U128_MAKE(0x1f, 0x11), .resource_id = U128_MAKE(0x2f, 0x21),
                           .holder_id = U128_MAKE(0x3f, 0x31), .ttl_slots = 0x0102030405060708ull};
    u8 b[WAL_CMD_SIZE_MAX], want[88];
    memset(want, 0, sizeof(want));
    memset(b, 0xA5, sizeof(b));
    want[0] = SM_CMD_RESERVE;
    want[8] = 0x01, want[16] = 0x0f, want[24] = 0x11, want[32] = 0x1f;
    want[40] = 0x21, want[48] = 0x2f, want[56] = 0x31, want[64] = 0x3f;
    for (int i = 0; i < 8; i++)
        want[72 + i] = (u8)(8 - i);
    ck_assert_uint_eq(wal_cmd_encode(b, sizeof(b), &r), 88); /* 80..87 reserved, zero */
    ck_assert_mem_eq(b, want, 88);

    struct sm_command e = {.kind = SM_CMD_EXPIRE, .reservation_id = U128_MAKE(0x4f, 0x41),
                           .deadline_slot = 0x99};
    memset(want, 0, sizeof(want));
    memset(b, 0xA5, sizeof(b));
    want[0] = SM_CMD_EXPIRE, want[8] = 0x41, want[16] = 0x4f, want[24] = 0x99;
    ck_assert_uint_eq(wal_cmd_encode(b, sizeof(b), &e), 32);
    ck_assert_mem_eq(b, want, 32);
}
END_TEST

START_TEST(test_cmd_empty)
{
    u8 b[1] = {SM_CMD_RESERVE};
    ck_assert_int_eq(cmd_status(WAL_RECORD_COMMAND, b, 0), WAL_CMD_EMPTY);
    ck_assert_int_eq(cmd_status(WAL_RECORD_EXPIRE, b, 0), WAL_CMD_EMPTY);
}
END_TEST

START_TEST(test_cmd_bad_kind)
{
    static const u8 kinds[] = {0, SM_CMD_KIND_MAX + 1, 7, 0x80, 255};
    u8 b[WAL_CMD_SIZE_MAX];
    rng_state = 6100;
    for (size_t i = 0; i < ADB_ARRAY_LEN(kinds); i++) {
        encode_random(SM_CMD_RESERVE, b);
        b[0] = kinds[i];
        for (u32 len = 1; len <= WAL_CMD_SIZE_MAX; len++) {
            ck_assert_int_eq(cmd_status(WAL_RECORD_COMMAND, b, len), WAL_CMD_BAD_KIND);
            ck_assert_int_eq(cmd_status(WAL_RECORD_EXPIRE, b, len), WAL_CMD_BAD_KIND);
        }
    }
}
END_TEST

/* Every kind with every record type but its own (including ones frames never carry). */
START_TEST(test_cmd_wrong_record)
{
    static const u16 types[] = {0, WAL_RECORD_COMMAND, WAL_RECORD_EXPIRE, 3, 0x100, 0xFFFF};
    u8 b[WAL_CMD_SIZE_MAX];
    rng_state = 6200;
    for (u8 kind = 1; kind <= SM_CMD_KIND_MAX; kind++) {
        struct sm_command c = random_command(kind);
        u32 size = wal_cmd_encode(b, sizeof(b), &c);
        for (size_t i = 0; i < ADB_ARRAY_LEN(types); i++) {
            enum wal_cmd_status want =
                types[i] == wal_cmd_record_type(&c) ? WAL_CMD_OK : WAL_CMD_WRONG_RECORD;
            ck_assert_int_eq(cmd_status(types[i], b, size), want);
        }
    }
}
END_TEST

/* Every length from 1 to the largest size + 1 other than the kind's own. */
START_TEST(test_cmd_bad_length)
{
    static u8 b[WAL_CMD_SIZE_MAX + 1];
    rng_state = 6300;
    for (u8 kind = 1; kind <= SM_CMD_KIND_MAX; kind++) {
        u32 size = encode_random(kind, b);
        b[size] = 0;
        u16 type = kind == SM_CMD_EXPIRE ? WAL_RECORD_EXPIRE : WAL_RECORD_COMMAND;
        for (u32 len = 1; len <= WAL_CMD_SIZE_MAX + 1; len++)
            if (len != size)
                ck_assert_int_eq(cmd_status(type, b, len), WAL_CMD_BAD_LENGTH);
        ck_assert_int_eq(cmd_status(type, b, size - 1), WAL_CMD_BAD_LENGTH);
        ck_assert_int_eq(cmd_status(type, b, size + 1), WAL_CMD_BAD_LENGTH);
        ck_assert_int_eq(cmd_status(type, b, size), WAL_CMD_OK);
    }
}
END_TEST

/* Byte i of a kind's payload is reserved: the header's bytes 1..7, and reserve's 80..87. */
static bool reserved_byte(u8 kind, u32 i)
{
    return (i >= 1 && i < 8) || (kind == SM_CMD_RESERVE && i >= 80);
}

START_TEST(test_cmd_bad_reserved)
{
    static const u8 values[] = {1, 0x80, 0xFF};
    u8 b[WAL_CMD_SIZE_MAX];
    rng_state = 6400;
    for (u8 kind = 1; kind <= SM_CMD_KIND_MAX; kind++) {
        u16 type = kind == SM_CMD_EXPIRE ? WAL_RECORD_EXPIRE : WAL_RECORD_COMMAND;
        for (u32 byte = 0; byte < kind_sizes[kind]; byte++) {
            if (!reserved_byte(kind, byte))
                continue;
            for (size_t v = 0; v < ADB_ARRAY_LEN(values); v++) {
                u32 size = encode_random(kind, b);
                ck_assert_uint_eq(b[byte], 0);
                b[byte] = values[v];
                ck_assert_int_eq(cmd_status(type, b, size), WAL_CMD_BAD_RESERVED);
            }
        }
    }
}
END_TEST

/* operation_id 0 is rejected for client kinds and *out is left alone; expire has none. */
START_TEST(test_cmd_zero_operation)
{
    u8 b[WAL_CMD_SIZE_MAX];
    rng_state = 6500;
    for (u8 kind = SM_CMD_CREATE_RESOURCE; kind <= SM_CMD_RELEASE; kind++) {
        u32 size = encode_random(kind, b);
        memset(b + 8, 0, 16);
        struct sm_command out, before;
        memset(&out, 0x5A, sizeof(out));
        memcpy(&before, &out, sizeof(out));
        ck_assert_int_eq(cmd_decode_copy(WAL_RECORD_COMMAND, b, size, &out),
                         WAL_CMD_ZERO_OPERATION);
        ck_assert_mem_eq(&out, &before, sizeof(out));
        /* Only the high half zero, or only the low half: a valid non-zero id. */
        b[8] = 1;
        ck_assert_int_eq(cmd_status(WAL_RECORD_COMMAND, b, size), WAL_CMD_OK);
        b[8] = 0, b[23] = 1;
        ck_assert_int_eq(cmd_status(WAL_RECORD_COMMAND, b, size), WAL_CMD_OK);
    }
    u32 size = encode_random(SM_CMD_EXPIRE, b);
    memset(b + 8, 0, 24);
    ck_assert_int_eq(cmd_status(WAL_RECORD_EXPIRE, b, size), WAL_CMD_OK);
}
END_TEST

START_TEST(test_cmd_status_names)
{
    for (int s = WAL_CMD_OK; s <= WAL_CMD_ZERO_OPERATION; s++) {
        const char *name = wal_cmd_status_name((enum wal_cmd_status)s);
        ck_assert_str_ne(name, "unknown");
        for (int t = WAL_CMD_OK; t < s; t++)
            ck_assert_str_ne(name, wal_cmd_status_name((enum wal_cmd_status)t));
    }
}
END_TEST

/* Encoding an invalid command aborts: _i 0 zero operation id, 1 unknown kind, 2 small buffer. */
START_TEST(test_cmd_encode_asserts)
{
    u8 b[WAL_CMD_SIZE_MAX];
    rng_state = 6600;
    struct sm_command c = random_command(SM_CMD_RESERVE);
    size_t cap = sizeof(b);
    if (_i == 0)
        c.operation_id = 0;
    else if (_i == 1)
        c.kind = SM_CMD_KIND_MAX + 1;
    else
        cap = 87;
    wal_cmd_encode(b, cap, &c);
}
END_TEST

/* ---- suite --------------------------------------------------------------------------------- */

static TCase *crc_tcase(void)
{
    TCase *tc = tcase_create("crc32c");
    tcase_add_loop_test(tc, test_crc_vectors, 0, 3);
    tcase_add_loop_test(tc, test_crc_hw_matches_portable, 0, 4);
    tcase_add_loop_test(tc, test_crc_chaining, 0, 3);
    tcase_set_timeout(tc, TEST_LONG_TIMEOUT);
    return tc;
}

static TCase *frame_tcase(void)
{
    TCase *tc = tcase_create("frame");
    tcase_add_loop_test(tc, test_frame_round_trip, 0, 4);
    tcase_add_test(tc, test_frame_encode_writes_exactly);
    tcase_add_test(tc, test_frame_layout);
    tcase_add_test(tc, test_frame_encode_in_place);
    tcase_add_test(tc, test_frame_short);
    tcase_add_test(tc, test_frame_bad_magic);
    tcase_add_test(tc, test_frame_bad_version);
    tcase_add_test(tc, test_frame_bad_type);
    tcase_add_test(tc, test_frame_bad_lsn);
    tcase_add_test(tc, test_frame_bad_length);
    tcase_add_test(tc, test_frame_bad_reserved);
    tcase_add_test(tc, test_frame_bit_flips);
    tcase_add_test(tc, test_frame_trailing);
    tcase_add_test(tc, test_frame_sequence);
    tcase_add_test(tc, test_frame_status_names);
    tcase_add_loop_test_raise_signal(tc, test_frame_encode_asserts, SIGABRT, 0, 5);
    tcase_add_test_raise_signal(tc, test_frame_encode_small_buffer, SIGABRT);
    tcase_set_timeout(tc, TEST_LONG_TIMEOUT);
    return tc;
}

static TCase *command_tcase(void)
{
    TCase *tc = tcase_create("command");
    tcase_add_loop_test(tc, test_cmd_round_trip, 0, SM_CMD_KIND_MAX);
    tcase_add_test(tc, test_cmd_encode_writes_exactly);
    tcase_add_test(tc, test_cmd_every_byte_matters);
    tcase_add_test(tc, test_cmd_record_types);
    tcase_add_test(tc, test_cmd_layout);
    tcase_add_test(tc, test_cmd_empty);
    tcase_add_test(tc, test_cmd_bad_kind);
    tcase_add_test(tc, test_cmd_wrong_record);
    tcase_add_test(tc, test_cmd_bad_length);
    tcase_add_test(tc, test_cmd_bad_reserved);
    tcase_add_test(tc, test_cmd_zero_operation);
    tcase_add_test(tc, test_cmd_status_names);
    tcase_add_loop_test_raise_signal(tc, test_cmd_encode_asserts, SIGABRT, 0, 3);
    tcase_set_timeout(tc, TEST_LONG_TIMEOUT);
    return tc;
}

Suite *test_suite(void)
{
    Suite *s = suite_create("codec");
    suite_add_tcase(s, crc_tcase());
    suite_add_tcase(s, frame_tcase());
    suite_add_tcase(s, command_tcase());
    return s;
}
