/*
 * tests/test_vsr_message.c — the replication message codec (replica/vsr_message.h).
 *
 * Messages under test are built twice: by vsr_message_encode, and by raw_encode below, a second
 * writing of the documented layout that applies no rule, so a test can build any malformed
 * message (resealed, so the rule behind the checksum is the one that fires). Round trips of
 * every command with every field it uses set to a value with the top bits set; the exact
 * bytes of a header; one rejection per decoder check, each built so that the test fails if
 * that check were removed (the message is otherwise valid, or the next check would say
 * something else); the order of the checks; the prepare body, the entry-header chain and the
 * snapshot chunk rules at their edges; every prefix SHORT; decode_exact and TRAILING; every
 * single bit flip rejected; and the encoder's asserts. Every decode reads from a malloc'd
 * buffer of exactly the length it is given, so AddressSanitizer builds catch any read past
 * `len`.
 */
#include "common/crc32c.h"
#include "common/le.h"
#include "replica/vsr_message.h"
#include "tests/check_main.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

/* Distinct values with both halves (and the top bits) set, so a swapped or truncated field
 * shows. */
#define CLUSTER U128_MAKE(0x8877665544332211ull, 0x0102030405060708ull)
#define VIEW 0x8000000000000007ull
#define LOG_VIEW 0x8000000000000005ull
#define COMMIT 0x9192939495969798ull
#define U64_A 0xFEDCBA9876543210ull
#define U64_B 0x8000000000000101ull
#define U64_C 0xC1C2C3C4C5C6C7C8ull
#define FIRST_LSN 0xFFFFFFFF00000001ull
#define PREPARE_LSN 0x0123456789ABCDEFull

/* Offsets of the documented layout (a second statement of it, on purpose). */
#define OFF_COMMAND 6
#define OFF_REPLICA 7
#define OFF_OP 32
#define OFF_A 48
#define OFF_SIZE 72
#define OFF_REPLICA_COUNT 76
#define OFF_RESERVED 77
#define OFF_CRC 92

#define WIRE_MAX (2 * VSR_MESSAGE_MAX + 64)

/* A message to build: the header and the body (any bytes). */
struct sample {
    struct vsr_header h;
    u8 body[VSR_BODY_MAX + 64];
    u32 body_len;
};

static u8 wire[WIRE_MAX], again[WIRE_MAX];
static struct sample smp;

/* ---- building and decoding ------------------------------------------------------------------ */

/* The crc of the message in buf whose body is body_len bytes, stored. */
static void seal(u8 *buf, u32 body_len)
{
    le_put_u32(buf + OFF_CRC, crc32c(crc32c(0, buf, OFF_CRC), buf + VSR_HEADER_SIZE, body_len));
}

/* Writes h and the body in the documented layout without checking anything; the size field
 * is the real size and the crc is sealed. Returns the size. */
static u32 raw_encode(u8 *buf, const struct vsr_header *h, const u8 *body, u32 body_len)
{
    memset(buf, 0, VSR_HEADER_SIZE);
    le_put_u32(buf + 0, 0x52424441u);
    le_put_u16(buf + 4, 1);
    buf[OFF_COMMAND] = h->command;
    buf[OFF_REPLICA] = h->replica;
    le_put_u128(buf + 8, h->cluster_id);
    le_put_u64(buf + 24, h->view);
    le_put_u64(buf + OFF_OP, h->op);
    le_put_u64(buf + 40, h->commit);
    le_put_u64(buf + OFF_A, h->a);
    le_put_u64(buf + 56, h->b);
    le_put_u64(buf + 64, h->c);
    le_put_u32(buf + OFF_SIZE, VSR_HEADER_SIZE + body_len);
    buf[OFF_REPLICA_COUNT] = h->replica_count;
    if (body_len != 0)
        memcpy(buf + VSR_HEADER_SIZE, body, body_len);
    seal(buf, body_len);
    return VSR_HEADER_SIZE + body_len;
}

static u32 raw_sample(const struct sample *s)
{
    return raw_encode(wire, &s->h, s->body, s->body_len);
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

/* After decoding the copy c of p: the pointers into c moved to the same places in p. */
static void point_into(struct vsr_message *m, const u8 *c, const u8 *p)
{
    m->body = p + (m->body - c);
    if (m->h.command == VSR_PREPARE || m->h.command == VSR_PREPARES)
        m->frame.payload = p + (m->frame.payload - c);
}

/* vsr_message_decode of an exact copy of len bytes of p (out points into p). out, msg_len:
 * OUT. */
static enum vsr_decode_status decode(const u8 *p, size_t len, struct vsr_message *out,
                                     u32 *msg_len)
{
    u8 *c = exact_copy(p, len);
    enum vsr_decode_status s = vsr_message_decode(c, len, out, msg_len);
    if (s == VSR_DECODE_OK)
        point_into(out, c, p);
    free(c);
    return s;
}

static enum vsr_decode_status decode_exact(const u8 *p, size_t len, struct vsr_message *out)
{
    u8 *c = exact_copy(p, len);
    enum vsr_decode_status s = vsr_message_decode_exact(c, len, out);
    if (s == VSR_DECODE_OK)
        point_into(out, c, p);
    free(c);
    return s;
}

/* The status of decoding the first len bytes of p, checking decode_exact agrees. */
static enum vsr_decode_status status_of(const u8 *p, size_t len)
{
    struct vsr_message m, e;
    u32 n;
    enum vsr_decode_status s = decode(p, len, &m, &n);
    enum vsr_decode_status x = decode_exact(p, len, &e);
    if (s != VSR_DECODE_OK)
        ck_assert_int_eq(x, s);
    return s;
}

/* The status of smp as raw_encode writes it. */
static enum vsr_decode_status sample_status(void)
{
    return status_of(wire, raw_sample(&smp));
}

/* ---- samples -------------------------------------------------------------------------------- */

static u8 payload_pattern[WAL_PAYLOAD_MAX];

/* n chained entry headers ending at lsn `last`, views rising to `view_last`. */
static void chain(struct vsr_entry_header *e, u32 n, u64 last, u64 view_last)
{
    for (u32 i = 0; i < n; i++) {
        e[i].lsn = last - (n - 1 - i);
        e[i].view = view_last - (i + 2 < n ? 1 : 0);
        e[i].request_slot = 0xA000000000000000ull + i / 2; /* repeats: never decreasing */
        e[i].crc = 0x10203040u * (i + 1) + 0x0F0F0F0Fu;
        e[i].prev_crc = i == 0 ? 0xCAFEBABEu : e[i - 1].crc;
    }
}

static struct vsr_entry_header entries[VSR_HEADERS_MAX + 2];

/* Puts `count` chained entries ending at s->h.op into the body. */
static void sample_headers(struct sample *s, u32 count)
{
    u64 view_last = s->h.command == VSR_DO_VIEW_CHANGE ? s->h.a : s->h.view;
    chain(entries, count, s->h.op, view_last);
    vsr_entry_headers_encode(s->body, entries, count);
    s->body_len = count * VSR_ENTRY_HEADER_SIZE;
}

/* The frame of a prepare sample: lsn PREPARE_LSN, view VIEW - 1, `len` payload bytes. */
static u32 sample_frame(u8 *out, u64 lsn, u64 view, u32 len)
{
    struct wal_frame f = {.lsn = lsn, .request_slot = U64_C, .view = view, .payload_len = len,
                          .prev_crc = 0xDEADBEEFu, .record_type = WAL_RECORD_COMMAND,
                          .payload = payload_pattern};
    return wal_frame_encode(out, WAL_FRAME_MAX, &f);
}

/* `count` chained frames ending at lsn `last` (views `view`), back to back into out. */
static u32 sample_frames(u8 *out, u64 last, u64 view, u32 count, u32 payload_len)
{
    u32 at = 0, prev = 0xDEADBEEFu;
    for (u32 i = 0; i < count; i++) {
        struct wal_frame f = {.lsn = last - count + 1 + i, .request_slot = U64_C, .view = view,
                              .payload_len = payload_len, .prev_crc = prev,
                              .record_type = WAL_RECORD_COMMAND, .payload = payload_pattern};
        u32 n = wal_frame_encode(out + at, WAL_FRAME_MAX, &f);
        struct wal_frame d;
        ck_assert_int_eq(wal_frame_decode_exact(out + at, n, &d), WAL_FRAME_OK);
        prev = d.crc;
        at += n;
    }
    return at;
}

/* A valid message of `command` with every field it uses set (high bits on). */
static void sample(struct sample *s, u8 command)
{
    memset(s, 0, sizeof(*s));
    s->h.command = command;
    s->h.replica = 4;
    s->h.replica_count = 5;
    s->h.cluster_id = CLUSTER;
    s->h.view = VIEW;
    s->h.commit = COMMIT;
    switch (command) {
    case VSR_PING: s->h.op = U64_A; s->h.a = U64_B; break;
    case VSR_PONG: s->h.a = U64_B; s->h.b = U64_C; break;
    case VSR_PREPARE:
        s->h.op = PREPARE_LSN;
        s->body_len = sample_frame(s->body, PREPARE_LSN, VIEW - 1, 10);
        break;
    case VSR_PREPARE_OK: s->h.op = U64_A; s->h.a = 0xF1E2D3C4u; break;
    case VSR_PREPARES:
        s->h.op = PREPARE_LSN;
        s->h.a = 3;
        s->body_len = sample_frames(s->body, PREPARE_LSN, VIEW - 1, 3, 10);
        break;
    case VSR_COMMIT: s->h.a = U64_B; break;
    case VSR_COMMIT_OK: s->h.op = U64_A; s->h.a = U64_B; break;
    case VSR_START_VIEW_CHANGE: break;
    case VSR_DO_VIEW_CHANGE:
        s->h.op = FIRST_LSN + 2;
        s->h.a = LOG_VIEW;
        sample_headers(s, 3);
        break;
    case VSR_START_VIEW:
        s->h.op = FIRST_LSN + 3;
        s->h.a = U64_C;
        sample_headers(s, 4);
        break;
    case VSR_REQUEST_START_VIEW: s->h.a = U64_C; break;
    case VSR_REQUEST_PREPARE: s->h.op = U64_A; s->h.a = 0xF1E2D3C4u; break;
    case VSR_REQUEST_SNAPSHOT: s->h.op = U64_A; s->h.a = U64_B; break;
    case VSR_SNAPSHOT_CHUNK:
        s->h.op = U64_A;
        s->h.a = U64_B;
        s->h.b = U64_B + 100;
        s->h.c = 0x89ABCDEFu;
        s->body_len = 100;
        memcpy(s->body, payload_pattern, 100);
        break;
    default: ck_abort_msg("no sample for command %u", command);
    }
}

/* Encodes s with vsr_message_encode into wire; it must equal raw_encode's bytes. */
static u32 encode_sample(struct sample *s)
{
    u32 n = vsr_message_encode(wire, sizeof(wire), &s->h, s->body, s->body_len);
    ck_assert_uint_eq(n, VSR_HEADER_SIZE + s->body_len);
    ck_assert_uint_eq(s->h.size, n);
    ck_assert_uint_eq(raw_encode(again, &s->h, s->body, s->body_len), n);
    ck_assert_mem_eq(wire, again, n);
    ck_assert_uint_eq(s->h.crc, le_get_u32(wire + OFF_CRC));
    return n;
}

/* Decodes wire[0, n) and checks it is s. */
static void check_decodes_to(const struct sample *s, u32 n)
{
    struct vsr_message m;
    u32 len = 0;
    ck_assert_int_eq(decode(wire, n, &m, &len), VSR_DECODE_OK);
    ck_assert_uint_eq(len, n);
    ck_assert_uint_eq(m.h.command, s->h.command);
    ck_assert_uint_eq(m.h.replica, s->h.replica);
    ck_assert_uint_eq(m.h.replica_count, s->h.replica_count);
    ck_assert(m.h.cluster_id == s->h.cluster_id);
    ck_assert_uint_eq(m.h.view, s->h.view);
    ck_assert_uint_eq(m.h.op, s->h.op);
    ck_assert_uint_eq(m.h.commit, s->h.commit);
    ck_assert_uint_eq(m.h.a, s->h.a);
    ck_assert_uint_eq(m.h.b, s->h.b);
    ck_assert_uint_eq(m.h.c, s->h.c);
    ck_assert_uint_eq(m.h.size, n);
    ck_assert_uint_eq(m.h.crc, s->h.crc);
    ck_assert_ptr_eq(m.body, wire + VSR_HEADER_SIZE);
    ck_assert_uint_eq(m.body_len, s->body_len);
    ck_assert_mem_eq(m.body, s->body, s->body_len);
    if (s->h.command == VSR_PREPARE) {
        ck_assert_uint_eq(m.frame.lsn, s->h.op);
        ck_assert_uint_eq(m.frame.payload_len, s->body_len - WAL_FRAME_HEADER_SIZE);
        ck_assert_ptr_eq(m.frame.payload, wire + VSR_HEADER_SIZE + WAL_FRAME_HEADER_SIZE);
        ck_assert_uint_eq(m.frame.crc, le_get_u32(s->body + 44));
    }
    if (s->h.command == VSR_PREPARES) {
        ck_assert_uint_eq(m.header_count, s->h.a);
        ck_assert_uint_eq(m.frame.lsn, s->h.op - s->h.a + 1);
        ck_assert_ptr_eq(m.frame.payload, wire + VSR_HEADER_SIZE + WAL_FRAME_HEADER_SIZE);
    }
    if (s->h.command == VSR_DO_VIEW_CHANGE || s->h.command == VSR_START_VIEW) {
        ck_assert_uint_eq(m.header_count, s->body_len / VSR_ENTRY_HEADER_SIZE);
        for (u32 i = 0; i < m.header_count; i++) {
            struct vsr_entry_header e;
            vsr_entry_header_get(&m, i, &e);
            ck_assert_mem_eq(&e, &entries[i], sizeof(e));
        }
    }
}

/* ---- names and layout ----------------------------------------------------------------------- */

START_TEST(test_names)
{
    static const char *const names[] = {
        "unknown", "ping", "pong", "prepare", "prepare_ok", "commit", "commit_ok",
        "start_view_change", "do_view_change", "start_view", "request_start_view",
        "request_prepare", "request_snapshot", "snapshot_chunk", "prepares", "unknown"};
    for (u8 c = 0; c < ADB_ARRAY_LEN(names); c++)
        ck_assert_str_eq(vsr_command_name(c), names[c]);
    ck_assert_str_eq(vsr_command_name(255), "unknown");
    for (int s = VSR_DECODE_OK; s <= VSR_DECODE_TRAILING; s++)
        ck_assert_str_ne(vsr_decode_status_name((enum vsr_decode_status)s), "unknown");
    ck_assert_str_eq(vsr_decode_status_name(VSR_DECODE_BAD_CHECKSUM), "checksum mismatch");
    ck_assert_str_eq(vsr_decode_status_name((enum vsr_decode_status)(VSR_DECODE_TRAILING + 1)),
                     "unknown");
}
END_TEST

/* The documented header, byte by byte, and the crc over bytes 0..91 then the body. */
START_TEST(test_header_layout)
{
    sample(&smp, VSR_PONG);
    smp.h.replica = 1;
    smp.h.replica_count = 3;
    smp.h.view = 0x0102030405060708ull;
    smp.h.commit = 0x1112131415161718ull;
    smp.h.a = 0x2122232425262728ull;
    smp.h.b = 0x3132333435363738ull;
    ck_assert_uint_eq(vsr_message_encode(wire, sizeof(wire), &smp.h, NULL, 0), 96);
    static const u8 head[92] = {
        0x41, 0x44, 0x42, 0x52, 1, 0, 2, 1,                 /* "ADBR", version, pong, 1 */
        0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,     /* cluster_id low half */
        0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,     /* cluster_id high half */
        8, 7, 6, 5, 4, 3, 2, 1,                             /* view */
        0, 0, 0, 0, 0, 0, 0, 0,                             /* op */
        0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11,     /* commit */
        0x28, 0x27, 0x26, 0x25, 0x24, 0x23, 0x22, 0x21,     /* a */
        0x38, 0x37, 0x36, 0x35, 0x34, 0x33, 0x32, 0x31,     /* b */
        0, 0, 0, 0, 0, 0, 0, 0,                             /* c */
        96, 0, 0, 0, 3,                                     /* size, replica_count */
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};       /* reserved */
    ck_assert_mem_eq(wire, head, sizeof(head));
    ck_assert_uint_eq(le_get_u32(wire + 92), crc32c(0, wire, 92));
    ck_assert_uint_eq(smp.h.crc, crc32c(0, wire, 92));
    ck_assert_uint_eq(smp.h.size, 96);

    /* with a body: the crc runs on from the header into it */
    sample(&smp, VSR_SNAPSHOT_CHUNK);
    u32 n = encode_sample(&smp);
    ck_assert_uint_eq(le_get_u32(wire + OFF_SIZE), n);
    ck_assert_uint_eq(le_get_u32(wire + 92),
                      crc32c(crc32c(0, wire, 92), wire + 96, n - 96));
}
END_TEST

START_TEST(test_entry_header_layout)
{
    struct vsr_entry_header e = {.lsn = 0x0102030405060708ull, .view = 0x1112131415161718ull,
                                 .request_slot = 0x2122232425262728ull, .crc = 0x31323334u,
                                 .prev_crc = 0x41424344u};
    u8 out[2 * VSR_ENTRY_HEADER_SIZE];
    memset(out, 0xEE, sizeof(out));
    vsr_entry_headers_encode(out, &e, 1);
    static const u8 want[32] = {8, 7, 6, 5, 4, 3, 2, 1, 0x18, 0x17, 0x16, 0x15, 0x14, 0x13,
                                0x12, 0x11, 0x28, 0x27, 0x26, 0x25, 0x24, 0x23, 0x22, 0x21,
                                0x34, 0x33, 0x32, 0x31, 0x44, 0x43, 0x42, 0x41};
    ck_assert_mem_eq(out, want, 32);
    ck_assert_uint_eq(out[32], 0xEE); /* nothing past count entries */
    vsr_entry_headers_encode(out + 32, &e, 0);
    ck_assert_uint_eq(out[32], 0xEE);

    /* of a frame: its own fields, crc as encoded */
    u8 fb[WAL_FRAME_MAX];
    u32 n = sample_frame(fb, 77, 5, 3);
    struct wal_frame f;
    ck_assert_int_eq(wal_frame_decode_exact(fb, n, &f), WAL_FRAME_OK);
    vsr_entry_header_of_frame(&f, &e);
    ck_assert_uint_eq(e.lsn, 77);
    ck_assert_uint_eq(e.view, 5);
    ck_assert_uint_eq(e.request_slot, U64_C);
    ck_assert_uint_eq(e.crc, le_get_u32(fb + 44));
    ck_assert_uint_eq(e.prev_crc, 0xDEADBEEFu);
}
END_TEST

/* ---- round trips ---------------------------------------------------------------------------- */

START_TEST(test_round_trip)
{
    u8 command = (u8)(_i + 1);
    sample(&smp, command);
    u32 n = encode_sample(&smp);
    check_decodes_to(&smp, n);
    struct vsr_message e;
    ck_assert_int_eq(decode_exact(wire, n, &e), VSR_DECODE_OK);
    ck_assert_uint_eq(e.h.command, command);

    /* the edges of the shared fields: any view and commit, replica 0 and the last of the
     * largest cluster, a cluster of one, cluster id 0 */
    sample(&smp, command);
    smp.h.view = UINT64_MAX;
    smp.h.commit = 0;
    smp.h.replica = VSR_REPLICAS_MAX - 1;
    smp.h.replica_count = VSR_REPLICAS_MAX;
    smp.h.cluster_id = ~(u128)0;
    check_decodes_to(&smp, encode_sample(&smp));
    sample(&smp, command);
    smp.h.replica = 0;
    smp.h.replica_count = 1;
    smp.h.cluster_id = 0;
    smp.h.commit = UINT64_MAX;
    check_decodes_to(&smp, encode_sample(&smp));
}
END_TEST

/* Every field a command uses takes all bits set where its range allows. */
START_TEST(test_round_trip_max_fields)
{
    u8 command = (u8)(_i + 1);
    sample(&smp, command);
    switch (command) {
    case VSR_PREPARE:
        smp.h.op = UINT64_MAX;
        smp.body_len = sample_frame(smp.body, UINT64_MAX, VIEW, WAL_PAYLOAD_MAX);
        break;
    case VSR_PREPARES: { /* as many frames of the largest payload as fit, ending at the last LSN */
        u32 count = VSR_BODY_MAX / (WAL_FRAME_HEADER_SIZE + WAL_PAYLOAD_MAX);
        ck_assert_uint_ge(count, 2);
        smp.h.op = UINT64_MAX;
        smp.h.a = count;
        smp.body_len = sample_frames(smp.body, UINT64_MAX, VIEW, count, WAL_PAYLOAD_MAX);
        break;
    }
    case VSR_DO_VIEW_CHANGE:
        smp.h.a = VIEW; /* log_view == view */
        /* fallthrough */
    case VSR_START_VIEW:
        smp.h.op = UINT64_MAX;
        sample_headers(&smp, VSR_HEADERS_MAX);
        break;
    case VSR_SNAPSHOT_CHUNK:
        smp.h.op = smp.h.c = UINT64_MAX;
        smp.h.b = UINT64_MAX;
        smp.h.a = UINT64_MAX - VSR_CHUNK_MAX;
        smp.body_len = VSR_CHUNK_MAX;
        memset(smp.body, 0xFF, VSR_CHUNK_MAX);
        break;
    default:
        if (smp.h.op != 0)
            smp.h.op = UINT64_MAX;
        if (smp.h.a != 0)
            smp.h.a = UINT64_MAX;
        if (smp.h.b != 0)
            smp.h.b = UINT64_MAX;
    }
    check_decodes_to(&smp, encode_sample(&smp));
}
END_TEST

/* The minimum of every used field that may be 0, and the smallest bodies. */
START_TEST(test_round_trip_min_fields)
{
    static const u8 zero_ok[] = {VSR_PING, VSR_PONG, VSR_COMMIT, VSR_COMMIT_OK,
                                 VSR_START_VIEW_CHANGE, VSR_REQUEST_SNAPSHOT};
    for (size_t i = 0; i < ADB_ARRAY_LEN(zero_ok); i++) {
        sample(&smp, zero_ok[i]);
        smp.h.op = smp.h.a = smp.h.b = 0;
        check_decodes_to(&smp, encode_sample(&smp));
    }
    sample(&smp, VSR_PREPARE_OK);
    smp.h.op = 1;
    smp.h.a = 0;
    check_decodes_to(&smp, encode_sample(&smp));
    sample(&smp, VSR_REQUEST_PREPARE);
    smp.h.op = 1;
    smp.h.a = 0;
    check_decodes_to(&smp, encode_sample(&smp));
    sample(&smp, VSR_REQUEST_START_VIEW);
    smp.h.a = 1;
    check_decodes_to(&smp, encode_sample(&smp));
    sample(&smp, VSR_PREPARE);
    smp.h.op = 1;
    smp.h.view = 0;
    smp.body_len = sample_frame(smp.body, 1, 0, 0);
    check_decodes_to(&smp, encode_sample(&smp));
    /* view changes of an empty log: no headers, any op */
    for (u8 c = VSR_DO_VIEW_CHANGE; c <= VSR_START_VIEW; c++) {
        sample(&smp, c);
        smp.h.a = 0;
        smp.h.op = 0;
        sample_headers(&smp, 0);
        check_decodes_to(&smp, encode_sample(&smp));
        smp.h.op = U64_A;
        check_decodes_to(&smp, encode_sample(&smp));
        smp.h.op = 1;
        sample_headers(&smp, 1);
        check_decodes_to(&smp, encode_sample(&smp));
    }
    sample(&smp, VSR_SNAPSHOT_CHUNK);
    smp.h.op = smp.h.a = smp.h.c = 0;
    smp.h.b = 1;
    smp.body_len = 1;
    check_decodes_to(&smp, encode_sample(&smp));
}
END_TEST

/* The body may already be in place after the header (encode in place). */
START_TEST(test_encode_in_place)
{
    sample(&smp, VSR_START_VIEW);
    memcpy(again, smp.body, smp.body_len);
    memcpy(wire + VSR_HEADER_SIZE, smp.body, smp.body_len);
    u32 n = vsr_message_encode(wire, VSR_HEADER_SIZE + smp.body_len, &smp.h,
                               wire + VSR_HEADER_SIZE, smp.body_len);
    ck_assert_uint_eq(n, VSR_HEADER_SIZE + smp.body_len);
    ck_assert_mem_eq(wire + VSR_HEADER_SIZE, again, smp.body_len);
    check_decodes_to(&smp, n);
}
END_TEST

/* ---- framing: prefixes, trailing bytes, outputs on failure ---------------------------------- */

START_TEST(test_prefix_short)
{
    sample(&smp, (u8)(_i + 1));
    u32 n = encode_sample(&smp);
    for (u32 len = 0; len < n; len++)
        ck_assert_msg(status_of(wire, len) == VSR_DECODE_SHORT, "prefix of %u bytes", len);
    ck_assert_int_eq(status_of(wire, n), VSR_DECODE_OK);
}
END_TEST

START_TEST(test_trailing)
{
    sample(&smp, VSR_PREPARE);
    u32 n = encode_sample(&smp);
    wire[n] = 0;
    struct vsr_message m, e;
    memset(&e, 0x5A, sizeof(e));
    struct vsr_message untouched = e;
    u32 len = 0;
    ck_assert_int_eq(decode(wire, n + 1, &m, &len), VSR_DECODE_OK);
    ck_assert_uint_eq(len, n);
    ck_assert_int_eq(decode_exact(wire, n + 1, &e), VSR_DECODE_TRAILING);
    ck_assert_mem_eq(&e, &untouched, sizeof(e));

    /* two messages back to back: each decodes where the previous one ended */
    struct sample second;
    sample(&second, VSR_DO_VIEW_CHANGE);
    u32 n2 = vsr_message_encode(wire + n, sizeof(wire) - n, &second.h, second.body,
                                second.body_len);
    ck_assert_int_eq(decode(wire, n + n2, &m, &len), VSR_DECODE_OK);
    ck_assert_uint_eq(len, n);
    ck_assert_uint_eq(m.h.command, VSR_PREPARE);
    ck_assert_int_eq(decode(wire + n, n2, &m, &len), VSR_DECODE_OK);
    ck_assert_uint_eq(len, n2);
    ck_assert_uint_eq(m.h.command, VSR_DO_VIEW_CHANGE);
    ck_assert_uint_eq(m.header_count, 3);
    ck_assert_int_eq(decode_exact(wire, n + n2, &e), VSR_DECODE_TRAILING);
}
END_TEST

START_TEST(test_failure_leaves_outputs)
{
    sample(&smp, VSR_PREPARE);
    u32 n = encode_sample(&smp);
    wire[VSR_HEADER_SIZE + 3] ^= 0x10;
    struct vsr_message m, e, untouched;
    memset(&m, 0x5A, sizeof(m));
    memset(&e, 0x5A, sizeof(e));
    memset(&untouched, 0x5A, sizeof(untouched));
    u32 len = 0x5A5A5A5Au;
    ck_assert_int_eq(vsr_message_decode(wire, n, &m, &len), VSR_DECODE_BAD_CHECKSUM);
    ck_assert_int_eq(vsr_message_decode_exact(wire, n, &e), VSR_DECODE_BAD_CHECKSUM);
    ck_assert_mem_eq(&m, &untouched, sizeof(m));
    ck_assert_mem_eq(&e, &untouched, sizeof(e));
    ck_assert_uint_eq(len, 0x5A5A5A5Au);
    /* a failure found in the body, after the header was read */
    wire[VSR_HEADER_SIZE + 3] ^= 0x10;
    smp.h.op++;
    n = raw_sample(&smp);
    ck_assert_int_eq(vsr_message_decode(wire, n, &m, &len), VSR_DECODE_BAD_BODY);
    ck_assert_mem_eq(&m, &untouched, sizeof(m));
    ck_assert_uint_eq(len, 0x5A5A5A5Au);
}
END_TEST

/* ---- one rejection per check ---------------------------------------------------------------- */

START_TEST(test_bad_magic)
{
    sample(&smp, VSR_PING);
    u32 n = raw_sample(&smp);
    for (u32 i = 0; i < 4; i++) {
        wire[i] ^= 0x20; /* "adbr" and friends */
        seal(wire, 0);
        ck_assert_int_eq(status_of(wire, n), VSR_DECODE_BAD_MAGIC);
        wire[i] ^= 0x20;
    }
    le_put_u32(wire, 0x57424441u); /* a WAL frame's magic */
    seal(wire, 0);
    ck_assert_int_eq(status_of(wire, n), VSR_DECODE_BAD_MAGIC);
}
END_TEST

START_TEST(test_bad_version)
{
    sample(&smp, VSR_PING);
    u32 n = raw_sample(&smp);
    static const u16 versions[] = {0, 2, 0x0100, 0xFFFF};
    for (size_t i = 0; i < ADB_ARRAY_LEN(versions); i++) {
        le_put_u16(wire + 4, versions[i]);
        seal(wire, 0);
        ck_assert_int_eq(status_of(wire, n), VSR_DECODE_BAD_VERSION);
    }
}
END_TEST

START_TEST(test_bad_size)
{
    sample(&smp, VSR_PING);
    raw_sample(&smp);
    memset(wire + VSR_HEADER_SIZE, 0, WIRE_MAX - VSR_HEADER_SIZE);
    /* below the header: the buffer holds more than the size, so only the bound can catch it */
    static const u32 small[] = {0, 1, VSR_HEADER_SIZE - 1};
    for (size_t i = 0; i < ADB_ARRAY_LEN(small); i++) {
        le_put_u32(wire + OFF_SIZE, small[i]);
        seal(wire, 0);
        ck_assert_int_eq(status_of(wire, VSR_HEADER_SIZE + 8), VSR_DECODE_BAD_SIZE);
    }
    /* above the maximum: reported as such even when every byte it claims is there */
    static const u32 big[] = {VSR_MESSAGE_MAX + 1, UINT32_MAX};
    for (size_t i = 0; i < ADB_ARRAY_LEN(big); i++) {
        le_put_u32(wire + OFF_SIZE, big[i]);
        seal(wire, VSR_BODY_MAX + 1);
        ck_assert_int_eq(status_of(wire, VSR_MESSAGE_MAX + 1), VSR_DECODE_BAD_SIZE);
        ck_assert_int_eq(status_of(wire, VSR_HEADER_SIZE), VSR_DECODE_BAD_SIZE);
    }
}
END_TEST

START_TEST(test_bad_checksum)
{
    sample(&smp, VSR_SNAPSHOT_CHUNK);
    u32 n = raw_sample(&smp);
    /* a changed body byte, header byte, crc byte: each alone, nothing else wrong */
    static const u32 at[] = {VSR_HEADER_SIZE, VSR_HEADER_SIZE + 99, 24, 40, 91, 92, 95};
    for (size_t i = 0; i < ADB_ARRAY_LEN(at); i++) {
        wire[at[i]] ^= 0x01;
        ck_assert_msg(status_of(wire, n) == VSR_DECODE_BAD_CHECKSUM, "byte %u", at[i]);
        wire[at[i]] ^= 0x01;
    }
    ck_assert_int_eq(status_of(wire, n), VSR_DECODE_OK);
}
END_TEST

START_TEST(test_bad_command)
{
    sample(&smp, VSR_START_VIEW_CHANGE); /* no fields, no body: valid for any command number */
    static const u8 commands[] = {0, VSR_COMMAND_MAX + 1, 0x80, 0xFF};
    for (size_t i = 0; i < ADB_ARRAY_LEN(commands); i++) {
        smp.h.command = commands[i];
        ck_assert_int_eq(sample_status(), VSR_DECODE_BAD_COMMAND);
    }
    for (u8 c = 1; c <= VSR_COMMAND_MAX; c++) {
        if (c == VSR_PREPARE || c == VSR_PREPARE_OK || c == VSR_REQUEST_START_VIEW ||
            c == VSR_REQUEST_PREPARE || c == VSR_SNAPSHOT_CHUNK || c == VSR_PREPARES)
            continue; /* these need a non-zero field or a body */
        smp.h.command = c;
        ck_assert_int_eq(sample_status(), VSR_DECODE_OK);
    }
}
END_TEST

/* Prepares: the count, the LSNs, the chain, the views, nothing more or less in the body. */
START_TEST(test_bad_prepares)
{
    sample(&smp, VSR_PREPARES);
    ck_assert_int_eq(sample_status(), VSR_DECODE_OK);
    smp.h.a = 1; /* one entry is a prepare */
    ck_assert_int_eq(sample_status(), VSR_DECODE_BAD_FIELD);
    smp.h.a = 4; /* more than the body holds */
    ck_assert_int_eq(sample_status(), VSR_DECODE_BAD_BODY);
    smp.h.a = 2; /* fewer */
    ck_assert_int_eq(sample_status(), VSR_DECODE_BAD_BODY);
    sample(&smp, VSR_PREPARES);
    smp.h.op = 2; /* more entries than LSNs up to op */
    ck_assert_int_eq(sample_status(), VSR_DECODE_BAD_FIELD);
    sample(&smp, VSR_PREPARES);
    smp.h.op++; /* the frames do not end at op */
    ck_assert_int_eq(sample_status(), VSR_DECODE_BAD_BODY);
    sample(&smp, VSR_PREPARES); /* a broken chain */
    u32 one = smp.body_len / 3;
    smp.body_len = sample_frames(smp.body, PREPARE_LSN - 1, VIEW - 1, 2, 10);
    smp.body_len += sample_frames(smp.body + smp.body_len, PREPARE_LSN, VIEW - 1, 1, 10);
    ck_assert_uint_eq(smp.body_len, 3 * one);
    ck_assert_int_eq(sample_status(), VSR_DECODE_BAD_BODY);
    sample(&smp, VSR_PREPARES); /* a frame from a later view */
    smp.body_len = sample_frames(smp.body, PREPARE_LSN, VIEW + 1, 3, 10);
    ck_assert_int_eq(sample_status(), VSR_DECODE_BAD_BODY);
    sample(&smp, VSR_PREPARES); /* trailing bytes */
    smp.body[smp.body_len++] = 0;
    ck_assert_int_eq(sample_status(), VSR_DECODE_BAD_BODY);
}
END_TEST

START_TEST(test_bad_replica)
{
    sample(&smp, VSR_PING);
    static const u8 bad[][2] = {/* replica, replica_count */
                                {0, 0}, {0, VSR_REPLICAS_MAX + 1}, {0, 255}, {3, 3},
                                {4, 3}, {VSR_REPLICAS_MAX, VSR_REPLICAS_MAX}, {255, 1}};
    for (size_t i = 0; i < ADB_ARRAY_LEN(bad); i++) {
        smp.h.replica = bad[i][0];
        smp.h.replica_count = bad[i][1];
        ck_assert_msg(sample_status() == VSR_DECODE_BAD_REPLICA, "replica %u of %u", bad[i][0],
                      bad[i][1]);
    }
    for (u8 count = 1; count <= VSR_REPLICAS_MAX; count++)
        for (u8 r = 0; r < count; r++) {
            smp.h.replica = r;
            smp.h.replica_count = count;
            ck_assert_int_eq(sample_status(), VSR_DECODE_OK);
        }
}
END_TEST

START_TEST(test_bad_reserved)
{
    sample(&smp, VSR_PING);
    u32 n = raw_sample(&smp);
    for (u32 off = OFF_RESERVED; off < OFF_CRC; off++)
        for (u32 bit = 0; bit < 8; bit++) {
            wire[off] = (u8)(1u << bit);
            seal(wire, 0);
            ck_assert_msg(status_of(wire, n) == VSR_DECODE_BAD_RESERVED, "byte %u", off);
            wire[off] = 0;
        }
    seal(wire, 0);
    ck_assert_int_eq(status_of(wire, n), VSR_DECODE_OK);
}
END_TEST

/* Which of op, a, b, c each command uses (the header's comments on enum vsr_command). */
static const char *const uses[VSR_COMMAND_MAX + 1] = {
    [VSR_PING] = "oabc",         [VSR_PONG] = "ab",          [VSR_PREPARE] = "oa",
    [VSR_PREPARE_OK] = "oa",   [VSR_COMMIT] = "a",         [VSR_COMMIT_OK] = "oa",
    [VSR_START_VIEW_CHANGE] = "", [VSR_DO_VIEW_CHANGE] = "oabc", [VSR_START_VIEW] = "oa",
    [VSR_REQUEST_START_VIEW] = "a", [VSR_REQUEST_PREPARE] = "oa", [VSR_REQUEST_SNAPSHOT] = "oa",
    [VSR_SNAPSHOT_CHUNK] = "oabc", [VSR_PREPARES] = "oa"};

/* An unused field set to any non-zero value is BAD_FIELD, for every command and field. */
START_TEST(test_bad_field_unused)
{
    u8 command = (u8)(_i + 1);
    static const u64 values[] = {1, 1ull << 63, UINT64_MAX};
    for (const char *f = "oabc"; *f != '\0'; f++) {
        if (strchr(uses[command], *f) != NULL)
            continue;
        for (size_t v = 0; v < ADB_ARRAY_LEN(values); v++) {
            sample(&smp, command);
            u64 *field = *f == 'o' ? &smp.h.op : *f == 'a' ? &smp.h.a : *f == 'b' ? &smp.h.b
                                                                                  : &smp.h.c;
            ck_assert_uint_eq(*field, 0);
            *field = values[v];
            ck_assert_msg(sample_status() == VSR_DECODE_BAD_FIELD, "%s field %c",
                          vsr_command_name(command), *f);
        }
    }
}
END_TEST

/* The ranges of used fields, at both sides of each edge. */
START_TEST(test_bad_field_ranges)
{
    /* op >= 1 (LSN 0 is no entry), a != 0 (a nonce) */
    static const struct {
        u8 command;
        bool op;
    } nonzero[] = {{VSR_PREPARE_OK, true}, {VSR_REQUEST_PREPARE, true},
                   {VSR_REQUEST_START_VIEW, false}};
    for (size_t i = 0; i < ADB_ARRAY_LEN(nonzero); i++) {
        sample(&smp, nonzero[i].command);
        u64 *field = nonzero[i].op ? &smp.h.op : &smp.h.a;
        *field = 0;
        ck_assert_int_eq(sample_status(), VSR_DECODE_BAD_FIELD);
        *field = 1;
        ck_assert_int_eq(sample_status(), VSR_DECODE_OK);
    }

    /* log_view above view; the entries' views are within both, so only this rule can fire */
    sample(&smp, VSR_DO_VIEW_CHANGE);
    smp.h.view = LOG_VIEW - 1;
    sample_headers(&smp, 3);
    chain(entries, 3, smp.h.op, LOG_VIEW - 1);
    vsr_entry_headers_encode(smp.body, entries, 3);
    ck_assert_int_eq(sample_status(), VSR_DECODE_BAD_FIELD);
    smp.h.view = LOG_VIEW;
    ck_assert_int_eq(sample_status(), VSR_DECODE_OK);
    smp.h.view = UINT64_MAX;
    smp.h.a = UINT64_MAX;
    ck_assert_int_eq(sample_status(), VSR_DECODE_OK);
    smp.h.view = UINT64_MAX - 1;
    ck_assert_int_eq(sample_status(), VSR_DECODE_BAD_FIELD);
    /* a prepare's canonical flag is 0 or 1 */
    sample(&smp, VSR_PREPARE);
    smp.h.a = 1;
    ck_assert_int_eq(sample_status(), VSR_DECODE_OK);
    smp.h.a = 2;
    ck_assert_int_eq(sample_status(), VSR_DECODE_BAD_FIELD);
    /* do_view_change's unreadable entries: b in its log, c's bits for entries above b up to op */
    sample(&smp, VSR_DO_VIEW_CHANGE);
    smp.h.b = smp.h.op;
    ck_assert_int_eq(sample_status(), VSR_DECODE_OK);
    smp.h.c = 1; /* entry op + 1 */
    ck_assert_int_eq(sample_status(), VSR_DECODE_BAD_FIELD);
    smp.h.b = smp.h.op - 2;
    smp.h.c = 3; /* op - 1 and op */
    ck_assert_int_eq(sample_status(), VSR_DECODE_OK);
    smp.h.c = 4; /* op + 1 */
    ck_assert_int_eq(sample_status(), VSR_DECODE_BAD_FIELD);
    smp.h.b = 0;
    smp.h.c = 1;
    ck_assert_int_eq(sample_status(), VSR_DECODE_BAD_FIELD);
    smp.h.b = smp.h.op + 1;
    smp.h.c = 0;
    ck_assert_int_eq(sample_status(), VSR_DECODE_BAD_FIELD);
    smp.h.op = UINT64_MAX;
    sample_headers(&smp, 3);
    smp.h.b = 1;
    smp.h.c = UINT64_MAX; /* far below op: every bit names an entry */
    ck_assert_int_eq(sample_status(), VSR_DECODE_OK);
    /* start_view's a is a nonce: any value, above the view too */
    sample(&smp, VSR_START_VIEW);
    smp.h.a = VIEW + 1;
    ck_assert_int_eq(sample_status(), VSR_DECODE_OK);

    /* a ping's WAL reaching back to no further than the entry after its image */
    sample(&smp, VSR_PING);
    smp.h.b = 5;
    smp.h.c = 7;
    ck_assert_int_eq(sample_status(), VSR_DECODE_BAD_FIELD);
    smp.h.c = 6;
    ck_assert_int_eq(sample_status(), VSR_DECODE_OK);
    smp.h.b = UINT64_MAX;
    smp.h.c = UINT64_MAX;
    ck_assert_int_eq(sample_status(), VSR_DECODE_OK);

    /* a chunk of a snapshot of size 0; with a = 0 and an empty body nothing else is wrong in
     * the header */
    sample(&smp, VSR_SNAPSHOT_CHUNK);
    smp.h.a = 0;
    smp.h.b = 0;
    ck_assert_int_eq(sample_status(), VSR_DECODE_BAD_FIELD);
    smp.h.b = 100;
    ck_assert_int_eq(sample_status(), VSR_DECODE_OK);
}
END_TEST

/* Commands without a body take none, not even one byte or one entry header. */
START_TEST(test_bad_body_none)
{
    u8 command = (u8)(_i + 1);
    sample(&smp, command);
    if (smp.body_len != 0)
        return; /* a command with a body */
    static const u32 lens[] = {1, VSR_ENTRY_HEADER_SIZE, WAL_FRAME_HEADER_SIZE, VSR_BODY_MAX};
    for (size_t i = 0; i < ADB_ARRAY_LEN(lens); i++) {
        smp.body_len = lens[i];
        ck_assert_int_eq(sample_status(), VSR_DECODE_BAD_BODY);
    }
    /* a body that is a valid prepare's */
    smp.body_len = sample_frame(smp.body, smp.h.op ? smp.h.op : 1, 0, 3);
    ck_assert_int_eq(sample_status(), VSR_DECODE_BAD_BODY);
}
END_TEST

/* The order of the checks: with two faults, the first in byte order is reported. */
START_TEST(test_check_order)
{
    sample(&smp, VSR_PING);
    u32 n = raw_sample(&smp);
    /* magic before version, size, checksum */
    le_put_u32(wire, 0);
    le_put_u16(wire + 4, 9);
    le_put_u32(wire + OFF_SIZE, 1);
    ck_assert_int_eq(status_of(wire, n), VSR_DECODE_BAD_MAGIC);
    /* the short check before the magic: fewer bytes than a header */
    ck_assert_int_eq(status_of(wire, VSR_HEADER_SIZE - 1), VSR_DECODE_SHORT);
    /* version before size */
    le_put_u32(wire, VSR_MESSAGE_MAGIC);
    ck_assert_int_eq(status_of(wire, n), VSR_DECODE_BAD_VERSION);
    /* size before checksum */
    le_put_u16(wire + 4, VSR_MESSAGE_VERSION);
    ck_assert_int_eq(status_of(wire, n), VSR_DECODE_BAD_SIZE);
    /* size in range but not all there: short, before the checksum */
    le_put_u32(wire + OFF_SIZE, VSR_HEADER_SIZE + 1);
    ck_assert_int_eq(status_of(wire, n), VSR_DECODE_SHORT);

    /* checksum before command, replica, reserved, fields, body */
    sample(&smp, VSR_PING);
    smp.h.command = 0;
    smp.h.replica_count = 0;
    smp.h.c = 2; /* beyond the image (b = 0) + 1 */
    smp.body_len = 1;
    n = raw_sample(&smp);
    wire[OFF_RESERVED] = 1;
    ck_assert_int_eq(status_of(wire, n), VSR_DECODE_BAD_CHECKSUM);
    seal(wire, 1);
    ck_assert_int_eq(status_of(wire, n), VSR_DECODE_BAD_COMMAND);
    /* command before replica */
    wire[OFF_COMMAND] = VSR_PING;
    seal(wire, 1);
    ck_assert_int_eq(status_of(wire, n), VSR_DECODE_BAD_REPLICA);
    /* replica before reserved */
    wire[OFF_REPLICA_COUNT] = 5;
    seal(wire, 1);
    ck_assert_int_eq(status_of(wire, n), VSR_DECODE_BAD_RESERVED);
    /* reserved before fields */
    wire[OFF_RESERVED] = 0;
    seal(wire, 1);
    ck_assert_int_eq(status_of(wire, n), VSR_DECODE_BAD_FIELD);
    /* fields before the body */
    le_put_u64(wire + 64, 0);
    seal(wire, 1);
    ck_assert_int_eq(status_of(wire, n), VSR_DECODE_BAD_BODY);
}
END_TEST

/* ---- prepare body --------------------------------------------------------------------------- */

START_TEST(test_prepare_body)
{
    u8 fb[2 * WAL_FRAME_MAX + 1];
    sample(&smp, VSR_PREPARE);
    u32 fn = smp.body_len;
    memcpy(fb, smp.body, fn);

    /* no body, part of a frame, a frame and a byte, two frames */
    smp.body_len = 0;
    ck_assert_int_eq(sample_status(), VSR_DECODE_BAD_BODY);
    smp.body_len = WAL_FRAME_HEADER_SIZE;
    ck_assert_int_eq(sample_status(), VSR_DECODE_BAD_BODY);
    smp.body_len = fn - 1;
    ck_assert_int_eq(sample_status(), VSR_DECODE_BAD_BODY);
    smp.body_len = fn + 1;
    smp.body[fn] = 0;
    ck_assert_int_eq(sample_status(), VSR_DECODE_BAD_BODY);
    u32 fn2 = sample_frame(smp.body + fn, PREPARE_LSN + 1, VIEW - 1, 4);
    smp.body_len = fn + fn2;
    ck_assert_int_eq(sample_status(), VSR_DECODE_BAD_BODY);

    /* a damaged frame inside a sealed message: the frame's own crc catches it */
    memcpy(smp.body, fb, fn);
    smp.body_len = fn;
    smp.body[WAL_FRAME_HEADER_SIZE + 2] ^= 0x40;
    ck_assert_int_eq(sample_status(), VSR_DECODE_BAD_BODY);
    memcpy(smp.body, fb, fn);
    ck_assert_int_eq(sample_status(), VSR_DECODE_OK);

    /* the frame's LSN is the message's op */
    smp.h.op = PREPARE_LSN + 1;
    ck_assert_int_eq(sample_status(), VSR_DECODE_BAD_BODY);
    smp.h.op = PREPARE_LSN - 1;
    ck_assert_int_eq(sample_status(), VSR_DECODE_BAD_BODY);
    smp.h.op = 0;
    ck_assert_int_eq(sample_status(), VSR_DECODE_BAD_BODY);
    smp.h.op = PREPARE_LSN;

    /* the frame's view is at most the message's: equal is fine, above is not */
    smp.body_len = sample_frame(smp.body, PREPARE_LSN, VIEW, 10);
    ck_assert_int_eq(sample_status(), VSR_DECODE_OK);
    smp.body_len = sample_frame(smp.body, PREPARE_LSN, VIEW + 1, 10);
    ck_assert_int_eq(sample_status(), VSR_DECODE_BAD_BODY);
    smp.body_len = sample_frame(smp.body, PREPARE_LSN, 0, 10);
    ck_assert_int_eq(sample_status(), VSR_DECODE_OK);
}
END_TEST

/* ---- entry headers: the chain rules --------------------------------------------------------- */

/* Entry headers in the documented layout, any number (vsr_entry_headers_encode asserts
 * count <= VSR_HEADERS_MAX). */
static void raw_entries(u8 *out, const struct vsr_entry_header *e, u32 n)
{
    for (u32 i = 0; i < n; i++, out += VSR_ENTRY_HEADER_SIZE) {
        le_put_u64(out, e[i].lsn);
        le_put_u64(out + 8, e[i].view);
        le_put_u64(out + 16, e[i].request_slot);
        le_put_u32(out + 24, e[i].crc);
        le_put_u32(out + 28, e[i].prev_crc);
    }
}

/* smp with the command's sample chain of n entries ending at op, entries[] (and smp) changed
 * by `edit`, then encoded. */
static enum vsr_decode_status chain_status(u8 command, u32 n, void (*edit)(void))
{
    sample(&smp, command);
    chain(entries, n, smp.h.op, command == VSR_DO_VIEW_CHANGE ? smp.h.a : smp.h.view);
    edit();
    raw_entries(smp.body, entries, n);
    smp.body_len = n * VSR_ENTRY_HEADER_SIZE;
    return sample_status();
}

static void edit_none(void) {}
/* (gaps and repeats before the last entry, which still ends at op) */
static void edit_lsn_gap(void) { entries[0].lsn--; }
static void edit_lsn_repeat(void) { entries[0].lsn = entries[1].lsn; }
static void edit_lsn_down(void) { entries[1].lsn = entries[0].lsn - 1; }
static void edit_lsn_zero_first(void) { smp.h.op = 0; entries[0].lsn = 0; }
static void edit_last_not_op(void) { smp.h.op++; }
static void edit_last_below_op(void) { smp.h.op--; }
static void edit_view_down(void) { entries[2].view = entries[1].view - 1; }
static void edit_view_equal(void) { entries[2].view = entries[1].view; }
static void edit_view_above(void) { entries[2].view = smp.h.view + 1; }
static void edit_view_above_log_view(void) { entries[2].view = smp.h.a + 1; }
static void edit_slot_down(void) { entries[2].request_slot = entries[1].request_slot - 1; }
static void edit_slot_equal(void) { entries[2].request_slot = entries[1].request_slot; }
static void edit_chain_broken(void) { entries[2].prev_crc ^= 1; }
static void edit_chain_first(void) { entries[0].prev_crc ^= 0xFFFFFFFFu; }
static void edit_crc_changed(void) { entries[1].crc ^= 0x100; }

START_TEST(test_headers_chain)
{
    u8 c = _i == 0 ? VSR_DO_VIEW_CHANGE : VSR_START_VIEW;
    ck_assert_int_eq(chain_status(c, 3, edit_none), VSR_DECODE_OK);
    /* contiguous and ascending LSNs, none 0, the last one op */
    ck_assert_int_eq(chain_status(c, 3, edit_lsn_gap), VSR_DECODE_BAD_BODY);
    ck_assert_int_eq(chain_status(c, 3, edit_lsn_repeat), VSR_DECODE_BAD_BODY);
    ck_assert_int_eq(chain_status(c, 3, edit_lsn_down), VSR_DECODE_BAD_BODY);
    ck_assert_int_eq(chain_status(c, 1, edit_lsn_zero_first), VSR_DECODE_BAD_BODY);
    ck_assert_int_eq(chain_status(c, 3, edit_last_not_op), VSR_DECODE_BAD_BODY);
    ck_assert_int_eq(chain_status(c, 3, edit_last_below_op), VSR_DECODE_BAD_BODY);
    ck_assert_int_eq(chain_status(c, 1, edit_last_not_op), VSR_DECODE_BAD_BODY);
    /* views never decrease and never pass the message's view */
    ck_assert_int_eq(chain_status(c, 3, edit_view_down), VSR_DECODE_BAD_BODY);
    ck_assert_int_eq(chain_status(c, 3, edit_view_equal), VSR_DECODE_OK);
    ck_assert_int_eq(chain_status(c, 3, edit_view_above), VSR_DECODE_BAD_BODY);
    /* request slots never decrease */
    ck_assert_int_eq(chain_status(c, 3, edit_slot_down), VSR_DECODE_BAD_BODY);
    ck_assert_int_eq(chain_status(c, 3, edit_slot_equal), VSR_DECODE_OK);
    /* each prev_crc is the crc before it; the first one's parent is not in the message */
    ck_assert_int_eq(chain_status(c, 3, edit_chain_broken), VSR_DECODE_BAD_BODY);
    ck_assert_int_eq(chain_status(c, 3, edit_crc_changed), VSR_DECODE_BAD_BODY);
    ck_assert_int_eq(chain_status(c, 3, edit_chain_first), VSR_DECODE_OK);
    /* do_view_change: nothing from after the sender's log_view, though within the view */
    if (c == VSR_DO_VIEW_CHANGE)
        ck_assert_int_eq(chain_status(c, 3, edit_view_above_log_view), VSR_DECODE_BAD_BODY);
}
END_TEST

START_TEST(test_headers_count)
{
    u8 c = _i == 0 ? VSR_DO_VIEW_CHANGE : VSR_START_VIEW;
    ck_assert_int_eq(chain_status(c, VSR_HEADERS_MAX, edit_none), VSR_DECODE_OK);
    /* One more: refused, as a body too long for its count, or (the headers fill the largest
     * body) as a message longer than any. */
    ck_assert_int_eq(chain_status(c, VSR_HEADERS_MAX + 1, edit_none),
                     (VSR_HEADERS_MAX + 1) * VSR_ENTRY_HEADER_SIZE > VSR_BODY_MAX ? VSR_DECODE_BAD_SIZE
                                                                                 : VSR_DECODE_BAD_BODY);
    ck_assert_int_eq(chain_status(c, 0, edit_none), VSR_DECODE_OK);
    /* not a whole number of entry headers */
    sample(&smp, c);
    static const u32 lens[] = {1, VSR_ENTRY_HEADER_SIZE - 1, VSR_ENTRY_HEADER_SIZE + 1,
                               3 * VSR_ENTRY_HEADER_SIZE - 1};
    for (size_t i = 0; i < ADB_ARRAY_LEN(lens); i++) {
        smp.body_len = lens[i];
        ck_assert_int_eq(sample_status(), VSR_DECODE_BAD_BODY);
    }
    /* an entry at LSN UINT64_MAX ends a log; nothing can follow it */
    sample(&smp, c);
    smp.h.op = UINT64_MAX;
    sample_headers(&smp, 2);
    ck_assert_int_eq(sample_status(), VSR_DECODE_OK);
    entries[1].lsn = 0; /* "UINT64_MAX + 1" after entries[0] */
    entries[0].lsn = UINT64_MAX;
    smp.h.op = 0;
    vsr_entry_headers_encode(smp.body, entries, 2);
    ck_assert_int_eq(sample_status(), VSR_DECODE_BAD_BODY);
}
END_TEST

/* ---- snapshot chunk body -------------------------------------------------------------------- */

START_TEST(test_chunk_body)
{
    sample(&smp, VSR_SNAPSHOT_CHUNK);
    smp.body_len = 0;
    ck_assert_int_eq(sample_status(), VSR_DECODE_BAD_BODY);
    /* [a, a + len) inside [0, b) */
    smp.h.a = 1000;
    smp.h.b = 1100;
    smp.body_len = 100;
    ck_assert_int_eq(sample_status(), VSR_DECODE_OK);
    smp.body_len = 101;
    ck_assert_int_eq(sample_status(), VSR_DECODE_BAD_BODY);
    smp.h.a = 1001;
    smp.body_len = 100;
    ck_assert_int_eq(sample_status(), VSR_DECODE_BAD_BODY);
    smp.h.a = 0;
    smp.h.b = 99;
    ck_assert_int_eq(sample_status(), VSR_DECODE_BAD_BODY);
    smp.h.b = 100;
    ck_assert_int_eq(sample_status(), VSR_DECODE_OK);
    /* a + len wraps: still outside */
    smp.h.a = UINT64_MAX - 10;
    smp.h.b = UINT64_MAX;
    ck_assert_int_eq(sample_status(), VSR_DECODE_BAD_BODY);
    smp.h.a = UINT64_MAX - 100;
    ck_assert_int_eq(sample_status(), VSR_DECODE_OK);
    /* VSR_CHUNK_MAX is the body maximum: a larger chunk is already a bad size */
    ADB_STATIC_ASSERT(VSR_CHUNK_MAX == VSR_BODY_MAX, "chunk bound is the body bound");
    smp.h.a = 0;
    smp.h.b = UINT64_MAX;
    smp.body_len = VSR_CHUNK_MAX;
    ck_assert_int_eq(sample_status(), VSR_DECODE_OK);
    smp.body_len = VSR_CHUNK_MAX + 1;
    ck_assert_int_eq(sample_status(), VSR_DECODE_BAD_SIZE);
}
END_TEST

/* ---- damage --------------------------------------------------------------------------------- */

/* Any single flipped bit of any message is rejected (CRC32C catches every 1-bit error; a
 * flip in the size makes the message short, or moves the checksummed range). */
START_TEST(test_bit_flips)
{
    sample(&smp, (u8)(_i + 1));
    u32 n = encode_sample(&smp);
    for (u32 bit = 0; bit < n * 8; bit++) {
        wire[bit / 8] ^= (u8)(1u << (bit % 8));
        enum vsr_decode_status s = status_of(wire, n);
        ck_assert_msg(s != VSR_DECODE_OK, "%s: bit %u accepted", vsr_command_name(smp.h.command),
                      bit);
        wire[bit / 8] ^= (u8)(1u << (bit % 8));
    }
    ck_assert_int_eq(status_of(wire, n), VSR_DECODE_OK);
}
END_TEST

/* ---- encoder asserts ------------------------------------------------------------------------ */

START_TEST(test_encode_asserts)
{
    static u8 buf[VSR_MESSAGE_MAX];
    struct vsr_message m;
    switch (_i) {
    case 0: sample(&smp, VSR_PING); smp.h.command = 0; break;
    case 1: sample(&smp, VSR_PING); smp.h.command = VSR_COMMAND_MAX + 1; break;
    case 2: sample(&smp, VSR_PING); smp.h.replica = smp.h.replica_count; break;
    case 3: sample(&smp, VSR_PING); smp.h.replica_count = VSR_REPLICAS_MAX + 1; break;
    case 4: sample(&smp, VSR_PING); smp.h.c = 2; break;
    case 5: sample(&smp, VSR_REQUEST_START_VIEW); smp.h.a = 0; break;
    case 6: sample(&smp, VSR_PREPARE); smp.h.op++; break;
    case 7: sample(&smp, VSR_DO_VIEW_CHANGE); smp.body[0] ^= 1; break;      /* lsn gap */
    case 8: sample(&smp, VSR_DO_VIEW_CHANGE); smp.body[32 + 30] ^= 1; break; /* chain */
    case 9: sample(&smp, VSR_PING); smp.body_len = 1; break;
    case 10: sample(&smp, VSR_SNAPSHOT_CHUNK); smp.h.b = smp.h.a; break;
    case 11:
        sample(&smp, VSR_SNAPSHOT_CHUNK);
        vsr_message_encode(buf, VSR_HEADER_SIZE + smp.body_len - 1, &smp.h, smp.body,
                           smp.body_len);
        return;
    case 12:
        sample(&smp, VSR_SNAPSHOT_CHUNK);
        vsr_message_encode(buf, sizeof(buf), &smp.h, NULL, smp.body_len);
        return;
    case 13:
        sample(&smp, VSR_SNAPSHOT_CHUNK);
        vsr_message_encode(buf, sizeof(buf), &smp.h, smp.body, VSR_BODY_MAX + 1);
        return;
    case 14: vsr_entry_headers_encode(buf, entries, VSR_HEADERS_MAX + 1); return;
    case 15:
        sample(&smp, VSR_START_VIEW);
        ck_assert_int_eq(decode_exact(wire, encode_sample(&smp), &m), VSR_DECODE_OK);
        vsr_entry_header_get(&m, m.header_count, &entries[0]);
        return;
    case 16:
        sample(&smp, VSR_PING);
        ck_assert_int_eq(decode_exact(wire, encode_sample(&smp), &m), VSR_DECODE_OK);
        vsr_entry_header_get(&m, 0, &entries[0]);
        return;
    }
    vsr_message_encode(buf, sizeof(buf), &smp.h, smp.body, smp.body_len);
}
END_TEST

/* ---- suite ---------------------------------------------------------------------------------- */

static void setup(void)
{
    for (u32 i = 0; i < WAL_PAYLOAD_MAX; i++)
        payload_pattern[i] = (u8)(i * 7 + 1);
}

static TCase *codec_tcase(void)
{
    TCase *tc = tcase_create("codec");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, test_names);
    tcase_add_test(tc, test_header_layout);
    tcase_add_test(tc, test_entry_header_layout);
    tcase_add_loop_test(tc, test_round_trip, 0, VSR_COMMAND_MAX);
    tcase_add_loop_test(tc, test_round_trip_max_fields, 0, VSR_COMMAND_MAX);
    tcase_add_test(tc, test_round_trip_min_fields);
    tcase_add_test(tc, test_encode_in_place);
    tcase_add_loop_test(tc, test_prefix_short, 0, VSR_COMMAND_MAX);
    tcase_add_test(tc, test_trailing);
    tcase_add_test(tc, test_failure_leaves_outputs);
    tcase_set_timeout(tc, TEST_LONG_TIMEOUT);
    return tc;
}

static TCase *reject_tcase(void)
{
    TCase *tc = tcase_create("reject");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, test_bad_magic);
    tcase_add_test(tc, test_bad_version);
    tcase_add_test(tc, test_bad_size);
    tcase_add_test(tc, test_bad_checksum);
    tcase_add_test(tc, test_bad_command);
    tcase_add_test(tc, test_bad_prepares);
    tcase_add_test(tc, test_bad_replica);
    tcase_add_test(tc, test_bad_reserved);
    tcase_add_loop_test(tc, test_bad_field_unused, 0, VSR_COMMAND_MAX);
    tcase_add_test(tc, test_bad_field_ranges);
    tcase_add_loop_test(tc, test_bad_body_none, 0, VSR_COMMAND_MAX);
    tcase_add_test(tc, test_check_order);
    tcase_add_test(tc, test_prepare_body);
    tcase_add_loop_test(tc, test_headers_chain, 0, 2);
    tcase_add_loop_test(tc, test_headers_count, 0, 2);
    tcase_add_test(tc, test_chunk_body);
    tcase_add_loop_test(tc, test_bit_flips, 0, VSR_COMMAND_MAX);
    tcase_add_loop_test_raise_signal(tc, test_encode_asserts, SIGABRT, 0, 17);
    tcase_set_timeout(tc, TEST_LONG_TIMEOUT);
    return tc;
}

Suite *test_suite(void)
{
    Suite *s = suite_create("vsr_message");
    suite_add_tcase(s, codec_tcase());
    suite_add_tcase(s, reject_tcase());
    return s;
}
