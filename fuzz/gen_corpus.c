/*
 * fuzz/gen_corpus.c — writes the seed corpora of the fuzz targets.
 *
 *   make fuzz/gen_corpus && fuzz/gen_corpus $(top_srcdir)/fuzz/corpus
 *
 * Writes OUTDIR/frame/<name> (inputs of fuzz_frame: bytes of a WAL file) and
 * OUTDIR/command/<name> (inputs of fuzz_command: a record-type byte, then a payload): valid
 * inputs of every record type and command kind at the edge sizes, and one malformed input per
 * decoder status. OUTDIR/scan/<name> (inputs of fuzz_scan: a flag byte, then a WAL segment or
 * a segment recipe): clean, torn and damaged segments, one per row of the recovery decision
 * table. OUTDIR/snapshot/<name> (inputs of fuzz_snapshot: a snapshot file, or a script): valid
 * snapshots of small states, damaged ones, and scripts. OUTDIR/proto/<name> (inputs of
 * fuzz_proto: bytes of a client connection): a valid frame of every protocol kind, two
 * pipelined frames, and one malformed frame per decoder check. OUTDIR/vsr_message/<name> (inputs
 * of fuzz_vsr_message: bytes of a peer connection): valid replication messages of several
 * commands, two back to back, and malformed ones. The output is deterministic, so
 * regenerating changes no committed file unless the formats changed.
 */
#include "config.h"

#include "common/crc32c.h"
#include "common/le.h"
#include "common/splitmix.h"
#include "net/proto.h"
#include "replica/sm.h"
#include "replica/snapshot.h"
#include "replica/vsr_message.h"
#include "wal/command.h"
#include "wal/frame.h"
#include "wal/scan.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *out_dir;

static void make_dir(const char *path)
{
    if (mkdir(path, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "gen_corpus: mkdir %s: %s\n", path, strerror(errno));
        exit(EXIT_FAILURE);
    }
}

static void write_input(const char *target, const char *name, const u8 *data, size_t len)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s/%s", out_dir, target, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        fprintf(stderr, "gen_corpus: write %s: %s\n", path, strerror(errno));
        exit(EXIT_FAILURE);
    }
}

/* ---- commands ------------------------------------------------------------------------------ */

/* A command of `kind` with distinct recognisable ids (all bytes 0xFF when `max`). */
static struct sm_command sample_command(u8 kind, bool max)
{
    u128 all = ~(u128)0;
    struct sm_command c;
    memset(&c, 0, sizeof(c));
    c.kind = kind;
    if (kind == SM_CMD_EXPIRE) {
        c.reservation_id = max ? all : U128_MAKE(0, 7);
        c.deadline_slot = max ? UINT64_MAX : 1000;
        return c;
    }
    c.operation_id = max ? all : U128_MAKE(0x0102030405060708ull, 0x1112131415161718ull);
    c.client_id = max ? all : 42;
    if (kind == SM_CMD_CREATE_RESOURCE || kind == SM_CMD_RESERVE)
        c.resource_id = max ? all : 3;
    else
        c.reservation_id = max ? all : 5;
    if (kind != SM_CMD_CREATE_RESOURCE)
        c.holder_id = max ? all : U128_MAKE(1, 0);
    if (kind == SM_CMD_RESERVE)
        c.ttl_slots = max ? UINT64_MAX : 30;
    return c;
}

/* Encodes cmd into buf (record-type byte first); returns the input length. */
static size_t command_input(u8 *buf, const struct sm_command *cmd)
{
    buf[0] = (u8)wal_cmd_record_type(cmd);
    return 1 + wal_cmd_encode(buf + 1, WAL_CMD_SIZE_MAX, cmd);
}

static const char *const kind_names[SM_CMD_KIND_MAX + 1] = {
    "", "create_resource", "reserve", "confirm", "release", "expire"};

static void gen_valid_commands(void)
{
    u8 buf[1 + WAL_CMD_SIZE_MAX];
    char name[64];
    for (u8 kind = 1; kind <= SM_CMD_KIND_MAX; kind++) {
        struct sm_command c = sample_command(kind, false);
        snprintf(name, sizeof(name), "ok-%s", kind_names[kind]);
        write_input("command", name, buf, command_input(buf, &c));
        c = sample_command(kind, true);
        snprintf(name, sizeof(name), "ok-%s-max", kind_names[kind]);
        write_input("command", name, buf, command_input(buf, &c));
    }
}

static void gen_bad_commands(void)
{
    u8 buf[2 + WAL_CMD_SIZE_MAX];
    struct sm_command reserve = sample_command(SM_CMD_RESERVE, false);
    struct sm_command expire = sample_command(SM_CMD_EXPIRE, false);
    size_t n = command_input(buf, &reserve);

    write_input("command", "bad-empty", buf, 1);
    buf[1] = 0;
    write_input("command", "bad-kind-0", buf, n);
    buf[1] = SM_CMD_KIND_MAX + 1;
    write_input("command", "bad-kind-6", buf, n);
    buf[1] = 255;
    write_input("command", "bad-kind-255", buf, n);
    n = command_input(buf, &reserve);
    buf[0] = WAL_RECORD_EXPIRE;
    write_input("command", "bad-record-reserve-as-expire", buf, n);
    buf[0] = 3;
    write_input("command", "bad-record-3", buf, n);
    n = command_input(buf, &expire);
    buf[0] = WAL_RECORD_COMMAND;
    write_input("command", "bad-record-expire-as-command", buf, n);
    n = command_input(buf, &reserve);
    write_input("command", "bad-length-short", buf, n - 1);
    buf[n] = 0;
    write_input("command", "bad-length-long", buf, n + 1);
    buf[4] = 1;
    write_input("command", "bad-reserved", buf, n);
    n = command_input(buf, &reserve);
    buf[n - 1] = 1; /* reserve's trailing reserved bytes */
    write_input("command", "bad-reserved-reserve-tail", buf, n);
    n = command_input(buf, &reserve);
    memset(buf + 1 + 8, 0, 16);
    write_input("command", "bad-zero-operation", buf, n);
}

/* ---- frames -------------------------------------------------------------------------------- */

static u8 payload_pattern[WAL_PAYLOAD_MAX];

/* Encodes a frame with this type, payload and lsn into buf; returns its size. */
static u32 frame_input(u8 *buf, u16 type, const u8 *payload, u32 len, u64 lsn)
{
    struct wal_frame f = {.lsn = lsn, .request_slot = lsn + 100, .view = 2, .payload_len = len,
                          .prev_crc = 0x12345678u, .record_type = type, .payload = payload};
    return wal_frame_encode(buf, WAL_FRAME_MAX, &f);
}

static void gen_valid_frames(void)
{
    static u8 buf[2 * WAL_FRAME_MAX];
    u8 payload[WAL_CMD_SIZE_MAX];
    char name[64];
    for (u8 kind = 1; kind <= SM_CMD_KIND_MAX; kind++) {
        struct sm_command c = sample_command(kind, false);
        u32 len = wal_cmd_encode(payload, sizeof(payload), &c);
        snprintf(name, sizeof(name), "ok-%s", kind_names[kind]);
        write_input("frame", name, buf, frame_input(buf, wal_cmd_record_type(&c), payload, len, 9));
    }
    write_input("frame", "ok-empty-payload", buf, frame_input(buf, 1, NULL, 0, 1));
    write_input("frame", "ok-expire-empty-payload", buf, frame_input(buf, 2, NULL, 0, 1));
    write_input("frame", "ok-payload-1", buf, frame_input(buf, 1, payload_pattern, 1, 2));
    write_input("frame", "ok-payload-max", buf,
                frame_input(buf, 1, payload_pattern, WAL_PAYLOAD_MAX, UINT64_MAX));
    u32 a = frame_input(buf, 1, payload_pattern, 10, 5);
    u32 b = frame_input(buf + a, 2, payload_pattern, 32, 6);
    write_input("frame", "ok-two-frames", buf, a + b);
}

/* Writes a valid 10-byte-payload frame with the u32 at `off` replaced by v (crc left stale
 * unless `reseal`, in which case the field's own check must fire). */
static void bad_field(const char *name, u32 off, u32 v, bool reseal)
{
    u8 buf[WAL_FRAME_MAX];
    u32 n = frame_input(buf, 1, payload_pattern, 10, 7);
    le_put_u32(buf + off, v);
    if (reseal)
        le_put_u32(buf + 44, crc32c_portable(crc32c_portable(0, buf, 44), buf + 48, 10));
    write_input("frame", name, buf, n);
}

static void gen_bad_frames(void)
{
    u8 buf[WAL_FRAME_MAX + 1];
    u32 n = frame_input(buf, 1, payload_pattern, 10, 7);
    write_input("frame", "bad-empty", buf, 0);
    write_input("frame", "bad-short-header", buf, WAL_FRAME_HEADER_SIZE - 1);
    write_input("frame", "bad-short-payload", buf, n - 1);
    buf[n] = 0;
    write_input("frame", "bad-trailing", buf, n + 1);
    buf[50] ^= 1;
    write_input("frame", "bad-checksum", buf, n);

    bad_field("bad-magic", 0, 0x57424442u, true);
    bad_field("bad-version", 4, 2u | (1u << 16), true);       /* version 2, type 1 */
    bad_field("bad-type-0", 4, 1u, true);                      /* version 1, type 0 */
    bad_field("bad-type-3", 4, 1u | (3u << 16), true);
    bad_field("bad-lsn-0", 8, 0, true);                        /* lsn 7 is < 2^32: low word */
    bad_field("bad-length", 32, WAL_PAYLOAD_MAX + 1, true);
    bad_field("bad-reserved", 40, 1, true);
    bad_field("bad-prev-crc-stale", 36, 0, false);
}

/* ---- client protocol frames (fuzz_proto) --------------------------------------------------- */

#define PROTO_FRAME_MAX (PROTO_HEADER_SIZE + 4096) /* every seed frame is small */

/* Finishes the frame whose body of `len` bytes is at buf + 32; returns its size. */
static u32 proto_frame(u8 *buf, u8 kind, u64 request_id, u32 len)
{
    return (u32)proto_frame_finish(buf, PROTO_FRAME_MAX, kind, request_id, len);
}

static void proto_write(const char *name, const u8 *buf, u32 len)
{
    write_input("proto", name, buf, len);
}

/* A valid command of a client kind, every field its kind uses set (all bits when `max`). */
static struct proto_command proto_sample_command(u8 kind, bool max)
{
    u128 all = ~(u128)0;
    struct proto_command c = {.kind = kind};
    c.operation_id = max ? all : U128_MAKE(0x0102030405060708ull, 0x1112131415161718ull + kind);
    c.client_id = max ? all : 42;
    c.target = max ? all : U128_MAKE(0x8000000000000000ull, 3);
    if (kind != SM_CMD_CREATE_RESOURCE)
        c.holder_id = max ? all : U128_MAKE(1, 0);
    if (kind == SM_CMD_RESERVE)
        c.ttl_ms = max ? UINT64_MAX : 30000;
    return c;
}

/* A submit of `count` commands cycling through the four kinds; returns the frame size. */
static u32 proto_submit(u8 *buf, u32 count, bool max)
{
    u8 *b = buf + PROTO_HEADER_SIZE;
    u32 len = proto_put_submit_prefix(b, count);
    for (u32 i = 0; i < count; i++) {
        struct proto_command c = proto_sample_command((u8)(1 + i % 4), max);
        proto_put_command(b + len, &c);
        len += PROTO_COMMAND_SIZE;
    }
    return proto_frame(buf, PROTO_SUBMIT, 2, len);
}

/* A submit_result with one result of each outcome class; returns the frame size. */
static u32 proto_submit_result(u8 *buf)
{
    static const struct proto_result results[] = {
        {.outcome = PROTO_COMMITTED, .code = SM_OK, .applied_lsn = 42,
         .reservation_id = U128_MAKE(7, 42), .deadline_slot = 1300},
        {.outcome = PROTO_COMMITTED, .code = SM_RESOURCE_BUSY, .from_retry_cache = true,
         .applied_lsn = 40},
        {.outcome = PROTO_REJECTED, .code = PROTO_REJECT_OVERLOADED},
        {.outcome = PROTO_INDEFINITE, .code = PROTO_INDEFINITE_TIMEOUT},
    };
    u8 *b = buf + PROTO_HEADER_SIZE;
    u32 len = proto_put_submit_result_prefix(b, 4);
    for (u32 i = 0; i < 4; i++) {
        proto_put_result(b + len, &results[i]);
        len += PROTO_RESULT_SIZE;
    }
    return proto_frame(buf, PROTO_SUBMIT_RESULT, 2, len);
}

static void gen_valid_proto(void)
{
    static u8 buf[2 * PROTO_FRAME_MAX];
    u8 *b = buf + PROTO_HEADER_SIZE;
    u32 n;

    struct proto_hello hello = {.version = PROTO_VERSION, .cluster_id = U128_MAKE(9, 0x77)};
    proto_write("ok-hello", buf, proto_frame(buf, PROTO_HELLO, 1, proto_put_hello(b, &hello)));
    hello.cluster_id = 0;
    proto_write("ok-hello-any-cluster", buf,
                proto_frame(buf, PROTO_HELLO, 1, proto_put_hello(b, &hello)));
    struct proto_hello_ok ok = {.version = PROTO_VERSION, .max_batch = 1024,
                                .cluster_id = U128_MAKE(9, 0x77), .replica_id = 1,
                                .slot_duration_ms = 100, .max_body = PROTO_BODY_MAX, .view = 3};
    proto_write("ok-hello_ok", buf,
                proto_frame(buf, PROTO_HELLO_OK, 1, proto_put_hello_ok(b, &ok)));

    proto_write("ok-submit-1", buf, proto_submit(buf, 1, false));
    proto_write("ok-submit-4", buf, proto_submit(buf, 4, false));
    proto_write("ok-submit-4-max", buf, proto_submit(buf, 4, true));
    proto_write("ok-submit_result", buf, proto_submit_result(buf));

    struct proto_read read = {.id = U128_MAKE(0x8000000000000000ull, 3), .min_lsn = 42};
    proto_write("ok-get_resource", buf,
                proto_frame(buf, PROTO_GET_RESOURCE, 3, proto_put_read(b, &read)));
    read.min_lsn = 0;
    proto_write("ok-get_reservation", buf,
                proto_frame(buf, PROTO_GET_RESERVATION, 4, proto_put_read(b, &read)));
    proto_write("ok-tick", buf, proto_frame(buf, PROTO_TICK, 5, 0));
    proto_write("ok-metrics", buf, proto_frame(buf, PROTO_METRICS, 6, 0));
    proto_write("ok-status", buf, proto_frame(buf, PROTO_STATUS, UINT64_MAX, 0));

    struct proto_resource res = {.read = SM_READ_FOUND, .state = SM_RESOURCE_RESERVED,
                                 .applied_lsn = 42, .resource_id = 3,
                                 .current_reservation_id = U128_MAKE(7, 42), .version = 2};
    proto_write("ok-resource", buf,
                proto_frame(buf, PROTO_RESOURCE, 3, proto_put_resource(b, &res)));
    struct proto_reservation rsv = {.read = SM_READ_FOUND, .state = SM_RESERVATION_CONFIRMED,
                                    .applied_lsn = 44, .reservation_id = U128_MAKE(7, 42),
                                    .resource_id = 3, .holder_id = U128_MAKE(1, 0),
                                    .created_lsn = 42, .deadline_slot = 1300};
    proto_write("ok-reservation", buf,
                proto_frame(buf, PROTO_RESERVATION, 4, proto_put_reservation(b, &rsv)));
    struct proto_tick_ok tick = {.slot = 1000, .expirations_proposed = 2};
    proto_write("ok-tick_ok", buf, proto_frame(buf, PROTO_TICK_OK, 5, proto_put_tick_ok(b, &tick)));
    static const char json[] = "{\"applied_lsn\":42}";
    memcpy(b, json, sizeof(json) - 1);
    proto_write("ok-metrics_ok", buf, proto_frame(buf, PROTO_METRICS_OK, 6, sizeof(json) - 1));
    proto_write("ok-status_ok", buf, proto_frame(buf, PROTO_STATUS_OK, 7, sizeof(json) - 1));
    proto_write("ok-not_primary", buf,
                proto_frame(buf, PROTO_NOT_PRIMARY, 8,
                            proto_put_not_primary(b, 4, "10.0.0.2:7400", 13)));
    proto_write("ok-not_primary-no-hint", buf,
                proto_frame(buf, PROTO_NOT_PRIMARY, 8, proto_put_not_primary(b, 4, "", 0)));
    proto_write("ok-error", buf,
                proto_frame(buf, PROTO_ERROR, 9,
                            proto_put_error(b, PROTO_ERR_BATCH_TOO_LARGE, "count 2000 > 1024",
                                            17)));
    proto_write("ok-error-no-message", buf,
                proto_frame(buf, PROTO_ERROR, 9, proto_put_error(b, PROTO_ERR_IDLE, "", 0)));

    /* Two pipelined requests back to back. */
    n = proto_frame(buf, PROTO_TICK, 10, 0);
    u32 m = proto_frame(buf + n, PROTO_GET_RESOURCE, 11,
                        proto_put_read(buf + n + PROTO_HEADER_SIZE, &read));
    proto_write("ok-two-frames", buf, n + m);
}

/* Recomputes the crc of the frame in buf after a poke, so the poked field's check fires. */
static void proto_reseal(u8 *buf)
{
    u32 len = le_get_u32(buf + 16);
    le_put_u32(buf + 28, crc32c_portable(crc32c_portable(0, buf, 28), buf + PROTO_HEADER_SIZE, len));
}

/* Writes the 4-command submit with byte `off` set to v (resealed). */
static void proto_bad_byte(const char *name, u32 off, u8 v)
{
    static u8 buf[PROTO_FRAME_MAX];
    u32 n = proto_submit(buf, 4, false);
    buf[off] = v;
    proto_reseal(buf);
    proto_write(name, buf, n);
}

static void gen_bad_proto(void)
{
    static u8 buf[PROTO_FRAME_MAX + 1];
    u32 body = PROTO_HEADER_SIZE; /* the first body byte */
    u32 cmd = body + PROTO_SUBMIT_PREFIX;

    u32 n = proto_submit(buf, 4, false);
    proto_write("bad-empty", buf, 0);
    proto_write("bad-short-header", buf, PROTO_HEADER_SIZE - 1);
    proto_write("bad-short-body", buf, n - 1);
    buf[n] = 0;
    proto_write("bad-trailing", buf, n + 1);
    buf[body + 20] ^= 1;
    proto_write("bad-crc", buf, n);

    proto_bad_byte("bad-magic", 3, 'Q');
    proto_bad_byte("bad-version", 4, 2);
    proto_bad_byte("bad-kind-0", 6, 0);
    proto_bad_byte("bad-kind-8", 6, 8);
    proto_bad_byte("bad-kind-response-unknown", 6, 0x88);
    proto_bad_byte("bad-flags", 7, 0x80);
    proto_bad_byte("bad-reserved", 27, 1);
    proto_bad_byte("bad-submit-reserved", body + 4, 1);
    proto_bad_byte("bad-command-kind-expire", cmd, SM_CMD_EXPIRE);
    proto_bad_byte("bad-command-kind-0", cmd, 0);
    proto_bad_byte("bad-command-reserved", cmd + 1, 1);
    proto_bad_byte("bad-command-reserved-tail", cmd + 87, 1);
    proto_bad_byte("bad-command-create-holder", cmd + 56, 1); /* command 0 is create_resource */
    proto_bad_byte("bad-command-confirm-ttl", cmd + 2 * 88 + 72, 1);

    n = proto_submit(buf, 4, false);
    buf[18] = 0x10; /* body_len 2^20 + 360: refused before the crc, so not resealed */
    proto_write("bad-too-large", buf, n);

    n = proto_submit(buf, 4, false);
    memset(buf + cmd + 8, 0, 16);
    proto_reseal(buf);
    proto_write("bad-command-zero-operation", buf, n);
    n = proto_submit(buf, 4, false);
    le_put_u32(buf + body, 0);
    proto_reseal(buf);
    proto_write("bad-submit-count-0", buf, n);
    le_put_u32(buf + body, 5);
    proto_reseal(buf);
    proto_write("bad-submit-count-mismatch", buf, n);
    le_put_u32(buf + body, PROTO_BATCH_MAX + 1);
    proto_reseal(buf);
    proto_write("bad-submit-count-over-max", buf, n);

    struct proto_hello hello = {.version = PROTO_VERSION};
    n = proto_frame(buf, PROTO_HELLO, 1, proto_put_hello(buf + body, &hello));
    le_put_u32(buf + 16, 23); /* hello has exactly 24 body bytes */
    proto_reseal(buf);
    proto_write("bad-hello-length", buf, n - 1);

    n = proto_submit_result(buf);
    buf[body + PROTO_SUBMIT_PREFIX + 1] = SM_RESULT_COUNT;
    proto_reseal(buf);
    proto_write("bad-result-code", buf, n);
    n = proto_submit_result(buf);
    buf[body + PROTO_SUBMIT_PREFIX + 2] = 2;
    proto_reseal(buf);
    proto_write("bad-result-flags", buf, n);

    n = proto_frame(buf, PROTO_NOT_PRIMARY, 8,
                    proto_put_not_primary(buf + body, 4, "10.0.0.2:7400", 13));
    buf[body + 16 + 4] = 0;
    proto_reseal(buf);
    proto_write("bad-not_primary-nul", buf, n);
    n = proto_frame(buf, PROTO_ERROR, 9, proto_put_error(buf + body, PROTO_ERR_IDLE, "idle", 4));
    le_put_u16(buf + body, 0);
    proto_reseal(buf);
    proto_write("bad-error-code", buf, n);
}

/* ---- segments (fuzz_scan) ----------------------------------------------------------------- */

/* The flag byte of fuzz_scan inputs (fuzz/fuzz_scan.c). */
#define SCAN_LAST 0x01
#define SCAN_BUILD 0x02
#define SCAN_RESEAL 0x04
#define SCAN_STOP 0x08 /* raw mode */
#define SCAN_TORN 0x08 /* build mode */

#define SEG_CAP 4096

/* A segment being written: frames chained from a header, then zeros. */
struct seg {
    u8 buf[1 + SEG_CAP]; /* the flag byte, then the segment */
    u64 len;             /* segment bytes */
    u64 off[8];          /* offset of each frame */
    u32 size[8];
    u32 n;
    u64 lsn, slot;       /* the last frame's */
    u32 crc;
};

static u8 *seg_bytes(struct seg *s)
{
    return s->buf + 1;
}

static void seg_start(struct seg *s, u64 first_lsn, u64 prev_slot, u32 prev_crc)
{
    memset(s, 0, sizeof(*s));
    struct wal_segment_header h = { .first_lsn = first_lsn, .prev_slot = prev_slot, .prev_crc = prev_crc,
                                    .capacity = SEG_CAP };
    wal_segment_header_encode(seg_bytes(s), &h);
    s->len = WAL_SEGMENT_HEADER_SIZE;
    s->lsn = first_lsn - 1;
    s->slot = prev_slot;
    s->crc = prev_crc;
}

/* Encodes the next frame (command of `kind`, slot moved by `step`) into scratch; returns its size. */
static u32 seg_next_frame(struct seg *s, u8 kind, u64 step, u8 *out, u32 *crc)
{
    struct sm_command c = sample_command(kind, false);
    u8 payload[WAL_CMD_SIZE_MAX];
    u32 plen = wal_cmd_encode(payload, sizeof(payload), &c);
    struct wal_frame f = { .lsn = s->lsn + 1, .request_slot = s->slot + step, .view = 1, .payload_len = plen,
                           .prev_crc = s->crc, .record_type = wal_cmd_record_type(&c), .payload = payload };
    u32 n = wal_frame_encode(out, WAL_FRAME_MAX, &f);
    *crc = f.crc;
    return n;
}

static void seg_add(struct seg *s, u8 kind, u64 step)
{
    u32 crc;
    u32 n = seg_next_frame(s, kind, step, seg_bytes(s) + s->len, &crc);
    s->off[s->n] = s->len;
    s->size[s->n++] = n;
    s->len += n;
    s->lsn++;
    s->slot += step;
    s->crc = crc;
}

/* The five frames most inputs start with: every command kind, slots moving. */
static void seg_five(struct seg *s)
{
    seg_start(s, 1, 0, 0);
    seg_add(s, SM_CMD_CREATE_RESOURCE, 1);
    seg_add(s, SM_CMD_RESERVE, 0);
    seg_add(s, SM_CMD_CONFIRM, 1);
    seg_add(s, SM_CMD_EXPIRE, 3);
    seg_add(s, SM_CMD_RELEASE, 0);
}

/* Writes the first `bytes` bytes of one more (reserve) frame; returns that frame's size. */
static u32 seg_torn(struct seg *s, u32 bytes)
{
    u8 frame[WAL_FRAME_MAX];
    u32 crc;
    u32 n = seg_next_frame(s, SM_CMD_RESERVE, 2, frame, &crc);
    memcpy(seg_bytes(s) + s->len, frame, bytes);
    s->len += bytes;
    return n;
}

static void seg_reseal_frame(struct seg *s, u32 i)
{
    u8 *p = seg_bytes(s) + s->off[i];
    u32 plen = le_get_u32(p + 32);
    le_put_u32(p + 44, crc32c(crc32c(0, p, 44), p + WAL_FRAME_HEADER_SIZE, plen));
}

static void seg_write(const char *name, u8 flags, struct seg *s, u64 pad)
{
    s->buf[0] = flags;
    write_input("scan", name, s->buf, 1 + s->len + pad);
}

/* A build-mode input (see fuzz_scan.c): flags, shape, torn bytes, pad/16, cut, then command
 * bytes and pokes. */
static void scan_recipe(const char *name, u8 flags, u8 shape, u8 torn, u8 pad16, u8 cut, const u8 *rest,
                        size_t rest_len)
{
    u8 buf[256];
    buf[0] = flags | SCAN_BUILD;
    buf[1] = shape;
    buf[2] = torn;
    buf[3] = pad16;
    buf[4] = cut;
    memcpy(buf + 5, rest, rest_len);
    write_input("scan", name, buf, 5 + rest_len);
}

static void gen_scan(void)
{
    struct seg s;
    seg_start(&s, 1, 0, 0);
    seg_write("ok-empty", SCAN_LAST, &s, 128);
    seg_write("ok-empty-sealed", 0, &s, 128);
    seg_five(&s);
    seg_write("ok-five", SCAN_LAST, &s, 256);
    seg_write("ok-five-sealed", 0, &s, 256);
    seg_write("ok-five-no-tail", SCAN_LAST, &s, 0);
    seg_write("stop-at-2", SCAN_LAST | SCAN_STOP | (1 << 4), &s, 64);
    seg_start(&s, UINT64_MAX - 2, UINT64_MAX - 10, 0xCAFEF00Du);
    seg_add(&s, SM_CMD_CREATE_RESOURCE, 0);
    seg_add(&s, SM_CMD_RESERVE, 9);
    seg_add(&s, SM_CMD_EXPIRE, 1);
    seg_write("ok-far-lsn", SCAN_LAST, &s, 64);

    /* Torn writes of a sixth (reserve, 136-byte) frame. */
    static const u32 cuts[] = { 1, 30, 48, 100 };
    char name[64];
    for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
        seg_five(&s);
        seg_torn(&s, cuts[i]);
        snprintf(name, sizeof(name), "torn-%u", cuts[i]);
        seg_write(name, SCAN_LAST, &s, 200);
        if (cuts[i] == 100) {
            seg_write("torn-100-sealed", 0, &s, 200);
            seg_write("torn-100-end-of-file", SCAN_LAST, &s, 0);
        }
    }
    seg_five(&s);
    u32 full = seg_torn(&s, 0);
    seg_torn(&s, full - 8); /* only the zero reserved bytes missing: a whole frame after all */
    seg_write("torn-zero-tail", SCAN_LAST, &s, 64);

    /* Damage to written frames. */
    seg_five(&s);
    seg_bytes(&s)[s.off[1] + 60] ^= 0x10;
    seg_write("bad-flip-middle", SCAN_LAST, &s, 64);
    seg_five(&s);
    seg_bytes(&s)[s.off[4] + 60] ^= 0x10;
    seg_write("bad-flip-last-frame", SCAN_LAST, &s, 64); /* indistinguishable from a torn write */
    seg_five(&s);
    le_put_u64(seg_bytes(&s) + s.off[2] + 8, 9);
    seg_reseal_frame(&s, 2);
    seg_write("bad-lsn", SCAN_LAST, &s, 64);
    seg_five(&s);
    le_put_u64(seg_bytes(&s) + s.off[3] + 16, 0);
    seg_reseal_frame(&s, 3);
    seg_write("bad-slot-backwards", SCAN_LAST, &s, 64);
    seg_five(&s);
    seg_bytes(&s)[s.off[2] + 36] ^= 1;
    seg_reseal_frame(&s, 2);
    seg_write("bad-chain", SCAN_LAST, &s, 64);
    seg_five(&s);
    seg_bytes(&s)[s.off[1] + WAL_FRAME_HEADER_SIZE] = 9; /* command kind */
    seg_reseal_frame(&s, 1);
    seg_write("bad-command", SCAN_LAST, &s, 64);
    seg_five(&s);
    seg_bytes(&s)[s.len + 10] = 1;
    seg_write("junk-near-end", SCAN_LAST, &s, 64); /* torn */
    seg_bytes(&s)[s.len + 10] = 0;
    seg_bytes(&s)[s.len + WAL_FRAME_MAX + 40] = 1;
    seg_write("bad-junk-far", SCAN_LAST, &s, WAL_FRAME_MAX + 64); /* beyond any torn write */

    /* After a torn-looking byte, a valid frame whose last bytes are zeros (an empty payload and
     * a crc with a zero top byte): the table says corrupt, as for any valid frame there. */
    seg_five(&s);
    seg_bytes(&s)[s.len] = 1;
    for (u64 lsn = 1;; lsn++) {
        struct wal_frame f = { .lsn = lsn, .request_slot = 0, .view = 0, .payload_len = 0, .prev_crc = 0,
                               .record_type = WAL_RECORD_COMMAND, .payload = NULL };
        wal_frame_encode(seg_bytes(&s) + s.len + 8, WAL_FRAME_MAX, &f);
        if (f.crc >> 24 == 0)
            break;
    }
    s.len += 8 + WAL_FRAME_HEADER_SIZE;
    seg_write("bad-valid-frame-ending-in-zeros", SCAN_LAST, &s, 64);

    /* Segment headers. */
    seg_five(&s);
    seg_bytes(&s)[0] ^= 0xFF;
    seg_write("header-bad-magic", SCAN_LAST, &s, 64);
    seg_five(&s);
    seg_bytes(&s)[8] = 3; /* first_lsn 3, CRC stale: the reseal flag fixes the CRC */
    seg_write("header-first-lsn-3-resealed", SCAN_LAST | SCAN_RESEAL, &s, 64);
    seg_five(&s);
    write_input("scan", "header-short", seg_bytes(&s) - 1, 1 + 40);

    /* Recipes (build mode). Command bytes: kind, a, b per frame. */
    static const u8 cmds[] = { 0x00, 1, 3,  0x01, 2, 0x31, 0x0A, 3, 2,  0x0C, 4, 1,  0x03, 5, 2,
                               0x11, 6, 5,  0x01, 7, 0x22, 0x19, 8, 3, 0x02, 9, 1,  0x04, 10, 0 };
    scan_recipe("build-clean", SCAN_LAST, 0x17, 0, 4, 0, cmds, 21);
    scan_recipe("build-torn", SCAN_LAST | SCAN_TORN, 0x14, 37, 4, 0, cmds, 15);
    scan_recipe("build-torn-sealed", SCAN_TORN, 0x14, 37, 4, 0, cmds, 15);
    scan_recipe("build-far-torn", SCAN_LAST | SCAN_TORN, 0xF5, 90, 2, 0, cmds, 18);
    scan_recipe("build-cut", SCAN_LAST, 0x05, 0, 0, 20, cmds, 15);
    u8 rest[64];
    memcpy(rest, cmds, 15);
    u8 pokes[] = { 200, 0, 0x77, 0x50, 1, 0x01, 90, 0, 0xFF }; /* offsets 200, 336, 90 */
    memcpy(rest + 15, pokes, sizeof(pokes));
    scan_recipe("build-pokes", SCAN_LAST, 0x05, 0, 8, 0, rest, 15 + sizeof(pokes));
    u8 lsn_poke[] = { 72, 0, 0x05 }; /* the first frame's LSN, resealed */
    memcpy(rest + 15, lsn_poke, sizeof(lsn_poke));
    scan_recipe("build-reseal-lsn", SCAN_LAST | SCAN_RESEAL, 0x05, 0, 8, 0, rest, 15 + sizeof(lsn_poke));
}

/* ---- snapshots (fuzz_snapshot) -------------------------------------------------------------- */

/* A state machine and the next LSN, slot and operation id for it. */
struct gen_sm {
    sm_t sm;
    u64 lsn, slot;
    u64 op;
};

static void gsm_init(struct gen_sm *g, const struct sm_config *cfg)
{
    char why[160];
    if (!sm_create(&g->sm, cfg, why, sizeof(why))) {
        fprintf(stderr, "gen_corpus: sm_create: %s\n", why);
        exit(EXIT_FAILURE);
    }
    g->lsn = 0;
    g->slot = 0;
    g->op = 0;
}

/* Applies a command at the current slot (a fresh operation id unless `op` is non-zero). */
static struct sm_outcome gsm_apply(struct gen_sm *g, u8 kind, u64 op, u128 target, u64 arg)
{
    struct sm_command c;
    memset(&c, 0, sizeof(c));
    c.kind = kind;
    if (kind == SM_CMD_EXPIRE) {
        c.reservation_id = target;
        c.deadline_slot = arg;
    } else {
        c.operation_id = op ? op : ++g->op + 1000;
        c.client_id = 1;
        if (kind == SM_CMD_CREATE_RESOURCE || kind == SM_CMD_RESERVE)
            c.resource_id = target;
        else
            c.reservation_id = target;
        if (kind != SM_CMD_CREATE_RESOURCE)
            c.holder_id = 1;
        if (kind == SM_CMD_RESERVE)
            c.ttl_slots = arg;
    }
    return sm_apply(&g->sm, ++g->lsn, g->slot, &c);
}

static u8 *gsm_encode(const struct gen_sm *g, u64 *len)
{
    *len = snapshot_encoded_size(&g->sm);
    u8 *buf = malloc(*len + 1);
    if (buf == NULL) {
        fprintf(stderr, "gen_corpus: out of memory\n");
        exit(EXIT_FAILURE);
    }
    snapshot_encode(&g->sm, buf, *len);
    return buf;
}

/* Header CRC, and section CRCs when the counts fit the length (as fuzz_snapshot reseals). */
static void snap_reseal(u8 *p, u64 len)
{
    u64 nres = le_get_u32(p + 96), nrsv = le_get_u32(p + 100);
    u64 a = SNAPSHOT_HEADER_SIZE, b = a + nres * SNAPSHOT_RESOURCE_SIZE + 4,
        c = b + nrsv * SNAPSHOT_RESERVATION_SIZE + 4;
    if (c == len) { /* version 2: two sections (operation records are in the operation log) */
        le_put_u32(p + b - 4, crc32c(0, p + a, b - 4 - a));
        le_put_u32(p + c - 4, crc32c(0, p + b, c - 4 - b));
    }
    le_put_u32(p + 140, crc32c(0, p, 140));
}

static const struct sm_config snap_cfg = { 0, 8, 8, 16, 4, 10, 6, 3 };

/* Four resources; reservations released, expired, reserved and confirmed; a retried op. */
static void gsm_mixed(struct gen_sm *g, const struct sm_config *cfg)
{
    gsm_init(g, cfg);
    u64 shard = cfg->shard_id;
    for (u64 r = 1; r <= 4; r++)
        gsm_apply(g, SM_CMD_CREATE_RESOURCE, 0, r, 0); /* lsn 1..4 */
    gsm_apply(g, SM_CMD_RESERVE, 0, 1, 5);             /* lsn 5 */
    gsm_apply(g, SM_CMD_RESERVE, 0, 2, 8);             /* lsn 6 */
    gsm_apply(g, SM_CMD_RESERVE, 0, 3, 3);             /* lsn 7, deadline 3 */
    g->slot = 1;
    gsm_apply(g, SM_CMD_CONFIRM, 0, U128_MAKE(shard, 6), 0);
    g->slot = 2;
    gsm_apply(g, SM_CMD_RELEASE, 0, U128_MAKE(shard, 5), 0);
    g->slot = 4;
    gsm_apply(g, SM_CMD_EXPIRE, 0, U128_MAKE(shard, 7), 3);
    gsm_apply(g, SM_CMD_RESERVE, 0, 1, 6);
    gsm_apply(g, SM_CMD_RESERVE, 1001, 1, 0); /* a retry of lsn 1's operation: a conflict */
    gsm_apply(g, SM_CMD_RESERVE, 0, 4, 99);    /* ttl out of range: a recorded failure */
}

static void write_snapshot(const char *name, const u8 *buf, u64 len)
{
    write_input("snapshot", name, buf, len);
}

static void gen_snapshots(void)
{
    struct gen_sm g;
    u64 len;
    u8 *b;

    gsm_init(&g, &snap_cfg);
    b = gsm_encode(&g, &len);
    write_snapshot("ok-empty", b, len);
    free(b);
    sm_destroy(&g.sm);

    gsm_init(&g, &snap_cfg);
    for (u64 r = 0; r < 6; r++)
        gsm_apply(&g, SM_CMD_CREATE_RESOURCE, 0, r * 77, 0);
    b = gsm_encode(&g, &len);
    write_snapshot("ok-resources", b, len);
    free(b);
    sm_destroy(&g.sm);

    /* After retirement: slot far past every window, then one more command. */
    gsm_mixed(&g, &snap_cfg);
    g.slot = 8;
    gsm_apply(&g, SM_CMD_CREATE_RESOURCE, 0, 5, 0);
    b = gsm_encode(&g, &len);
    write_snapshot("ok-partly-retired", b, len);
    free(b);
    g.slot = 30;
    gsm_apply(&g, SM_CMD_CREATE_RESOURCE, 0, 6, 0);
    b = gsm_encode(&g, &len);
    write_snapshot("ok-retired", b, len);
    free(b);
    sm_destroy(&g.sm);

    struct sm_config shard7 = snap_cfg;
    shard7.shard_id = 7;
    gsm_mixed(&g, &shard7);
    b = gsm_encode(&g, &len);
    write_snapshot("ok-shard-7", b, len);
    free(b);
    sm_destroy(&g.sm);

    /* LSNs and slots near the top of u64. */
    gsm_init(&g, &snap_cfg);
    g.lsn = UINT64_MAX - 10;
    g.slot = UINT64_MAX - 20;
    gsm_apply(&g, SM_CMD_CREATE_RESOURCE, 0, 1, 0);
    gsm_apply(&g, SM_CMD_RESERVE, 0, 1, 10);
    g.slot = UINT64_MAX - 7; /* dedupe window 6 still fits */
    gsm_apply(&g, SM_CMD_CREATE_RESOURCE, 0, 2, 0);
    b = gsm_encode(&g, &len);
    write_snapshot("ok-far", b, len);
    free(b);
    sm_destroy(&g.sm);

    /* The mixed state, damaged. Sections: resources at 144 (4 x 48), reservations at 340.
     * (fuzz/corpus/snapshot/bad-operation-result is a version 1 seed: version 2 has no
     * operation section to damage.) */
    gsm_mixed(&g, &snap_cfg);
    b = gsm_encode(&g, &len);
    write_snapshot("ok-mixed", b, len);
    u64 rsv = SNAPSHOT_HEADER_SIZE + 4 * SNAPSHOT_RESOURCE_SIZE + 4;
    u8 *d = malloc(len + 1);
    if (d == NULL)
        exit(EXIT_FAILURE);
#define DAMAGED(name, edit, n, seal)    \
    do {                                \
        memcpy(d, b, len);              \
        edit;                           \
        if (seal)                       \
            snap_reseal(d, n);          \
        write_snapshot(name, d, n);     \
    } while (0)
    DAMAGED("bad-header-crc", d[70] ^= 1, len, false);
    DAMAGED("bad-section-crc", d[rsv + 20] ^= 1, len, false);
    DAMAGED("bad-version", d[4] = SNAPSHOT_VERSION + 1, len, true);
    DAMAGED("bad-header-size", d[6] = 64, len, true);
    DAMAGED("bad-short", (void)0, len - 1, false);
    DAMAGED("bad-trailing", d[len] = 0, len + 1, false);
    DAMAGED("bad-total-size", d[8] ^= 0x10, len, true);
    DAMAGED("bad-counts", d[104] = 9, len, true);                             /* terminal_count */
    DAMAGED("big-config", le_put_u32(d + 24, 1u << 30), len, true);           /* resource_capacity */
    DAMAGED("bad-config", le_put_u32(d + 36, 100), len, true);                /* expiration > reservation */
    DAMAGED("bad-resource-state", d[SNAPSHOT_HEADER_SIZE + 40] = 3, len, true);
    DAMAGED("bad-duplicate-resource", memcpy(d + SNAPSHOT_HEADER_SIZE + 48, d + SNAPSHOT_HEADER_SIZE, 16), len, true);
    u64 busy = SNAPSHOT_HEADER_SIZE; /* the first resource with a current reservation */
    while (b[busy + 40] == SM_RESOURCE_AVAILABLE)
        busy += SNAPSHOT_RESOURCE_SIZE;
    DAMAGED("bad-reference", d[busy + 16] = 5, len, true); /* current: the released lsn 5 */
    DAMAGED("bad-order", memcpy(d + rsv, b + rsv + 80, 80); memcpy(d + rsv + 80, b + rsv, 80), len, true);
    DAMAGED("bad-reservation-deadline", le_put_u64(d + rsv + 80 + 48, 0), len, true);
#undef DAMAGED
    free(d);
    free(b);
    sm_destroy(&g.sm);
}

/* Scripts (fuzz_snapshot's other input): mode, command count, damage amount, commands, pokes. */
static void gen_snapshot_scripts(void)
{
    static const struct {
        const char *name;
        u8 mode, commands, amount;
        u32 pokes;
    } scripts[] = {
        { "script-cfg0", 0x00, 40, 0, 0 },
        { "script-cfg1", 0x01, 47, 0, 0 },
        { "script-cfg3", 0x03, 47, 0, 0 },
        { "script-cfg5-shard7", 0x0D, 30, 0, 0 },
        { "script-cfg7", 0x07, 30, 0, 0 },
        { "script-cfg0-far", 0x90, 30, 0, 0 },
        { "script-pokes", 0x01, 30, 0, 6 },
        { "script-cut", 0x21, 30, 5, 0 },
        { "script-append", 0x41, 30, 3, 0 },
        { "script-stale-crc", 0x61, 30, 0, 2 },
    };
    u64 rng = 42;
    for (size_t i = 0; i < sizeof(scripts) / sizeof(scripts[0]); i++) {
        u8 buf[3 + 3 * 48 + 3 * 8];
        size_t n = 0;
        buf[n++] = scripts[i].mode;
        buf[n++] = scripts[i].commands;
        buf[n++] = scripts[i].amount;
        for (u32 k = 0; k < scripts[i].commands; k++) {
            u64 r = splitmix_next(&rng);
            /* Kind byte: the slot mostly stays, sometimes moves by 1 (bits 3-4, see slot_step),
             * so the state keeps its history instead of retiring it all. */
            buf[n++] = (u8)((r & 0xE7) | (r % 3 == 0 ? 0x08 : 0));
            buf[n++] = (u8)(r >> 8);
            buf[n++] = (u8)(r >> 16);
        }
        for (u32 k = 0; k < scripts[i].pokes; k++) {
            u64 r = splitmix_next(&rng);
            le_put_u16(buf + n, (u16)(128 + r % 1200)); /* into the records */
            buf[n + 2] = (u8)(r >> 32);
            n += 3;
        }
        write_input("snapshot", scripts[i].name, buf, n);
    }
}

/* ---- replication messages (fuzz_vsr_message) ----------------------------------------------- */

/* A message of `command` from replica 1 of 3 in view 7 with commit 5, fields op, a, b, c and
 * the body given; encoded into buf, returns its size. */
static u32 vsr_input(u8 *buf, u8 command, u64 op, u64 a, u64 b, u64 c, const u8 *body,
                     u32 body_len)
{
    struct vsr_header h = {.command = command, .replica = 1, .replica_count = 3,
                           .cluster_id = U128_MAKE(0x0102030405060708ull, 42), .view = 7,
                           .op = op, .commit = 5, .a = a, .b = b, .c = c};
    return vsr_message_encode(buf, VSR_MESSAGE_MAX, &h, body, body_len);
}

/* n chained entry headers ending at lsn `last` in view `view`, encoded into out. */
static u32 vsr_headers(u8 *out, u32 n, u64 last, u64 view)
{
    struct vsr_entry_header e[8];
    for (u32 i = 0; i < n; i++)
        e[i] = (struct vsr_entry_header){.lsn = last - (n - 1 - i), .view = view,
                                         .request_slot = 100 + i, .crc = 0x01010101u * (i + 1),
                                         .prev_crc = i == 0 ? 0x12345678u : e[i - 1].crc};
    vsr_entry_headers_encode(out, e, n);
    return n * VSR_ENTRY_HEADER_SIZE;
}

static void vsr_reseal(u8 *buf)
{
    u32 size = le_get_u32(buf + 72);
    le_put_u32(buf + 92, crc32c_portable(crc32c_portable(0, buf, 92), buf + 96, size - 96));
}

static void gen_vsr_messages(void)
{
    static u8 buf[2 * VSR_MESSAGE_MAX];
    u8 body[VSR_BODY_MAX];
    u32 n, len;

    write_input("vsr_message", "ok-ping", buf,
                vsr_input(buf, VSR_PING, 9, 123456789, 0, 0, NULL, 0));
    write_input("vsr_message", "ok-pong", buf,
                vsr_input(buf, VSR_PONG, 0, 123456789, 99, 0, NULL, 0));
    len = frame_input(body, WAL_RECORD_COMMAND, payload_pattern, 40, 9);
    write_input("vsr_message", "ok-prepare", buf,
                vsr_input(buf, VSR_PREPARE, 9, 0, 0, 0, body, len));
    len = 0; /* three chained frames, LSNs 7..9, in one message */
    for (u32 prev = 0x12345678u, lsn = 7; lsn <= 9; lsn++) {
        struct wal_frame f = {.lsn = lsn, .request_slot = lsn + 100, .view = 2, .payload_len = 40,
                              .prev_crc = prev, .record_type = WAL_RECORD_COMMAND, .payload = payload_pattern};
        u32 k = wal_frame_encode(body + len, WAL_FRAME_MAX, &f);
        struct wal_frame d;
        if (wal_frame_decode_exact(body + len, k, &d) != WAL_FRAME_OK)
            abort();
        prev = d.crc;
        len += k;
    }
    write_input("vsr_message", "ok-prepares", buf, vsr_input(buf, VSR_PREPARES, 9, 3, 0, 0, body, len));
    write_input("vsr_message", "ok-prepare_ok", buf,
                vsr_input(buf, VSR_PREPARE_OK, 9, 0xABCDEF01u, 0, 0, NULL, 0));
    write_input("vsr_message", "ok-commit", buf, vsr_input(buf, VSR_COMMIT, 0, 3, 0, 0, NULL, 0));
    len = vsr_headers(body, 4, 9, 6);
    write_input("vsr_message", "ok-do_view_change", buf,
                vsr_input(buf, VSR_DO_VIEW_CHANGE, 9, 6, 0, 0, body, len));
    write_input("vsr_message", "ok-start_view-empty", buf,
                vsr_input(buf, VSR_START_VIEW, 0, 0, 0, 0, NULL, 0));
    len = vsr_headers(body, 8, UINT64_MAX, 7);
    write_input("vsr_message", "ok-start_view-8", buf,
                vsr_input(buf, VSR_START_VIEW, UINT64_MAX, 77, 0, 0, body, len));
    write_input("vsr_message", "ok-request_start_view", buf,
                vsr_input(buf, VSR_REQUEST_START_VIEW, 0, 77, 0, 0, NULL, 0));
    write_input("vsr_message", "ok-snapshot_chunk", buf,
                vsr_input(buf, VSR_SNAPSHOT_CHUNK, 9, 64, 1000, 0x5EED5EEDu, payload_pattern, 200));
    n = vsr_input(buf, VSR_COMMIT, 0, 3, 0, 0, NULL, 0);
    n += vsr_input(buf + n, VSR_PING, 9, 1, 0, 0, NULL, 0);
    write_input("vsr_message", "ok-two-messages", buf, n);

    /* malformed: framing, checksum, and checks behind the checksum (resealed) */
    n = vsr_input(buf, VSR_PING, 9, 1, 0, 0, NULL, 0);
    write_input("vsr_message", "bad-short-header", buf, VSR_HEADER_SIZE - 1);
    buf[24] ^= 1;
    write_input("vsr_message", "bad-checksum", buf, n);
    le_put_u32(buf + 72, VSR_MESSAGE_MAX + 1);
    write_input("vsr_message", "bad-size", buf, n);
    n = vsr_input(buf, VSR_PING, 9, 1, 0, 0, NULL, 0);
    buf[6] = VSR_COMMAND_MAX + 1;
    vsr_reseal(buf);
    write_input("vsr_message", "bad-command", buf, n);
    n = vsr_input(buf, VSR_PING, 9, 1, 0, 0, NULL, 0);
    buf[7] = 3;
    vsr_reseal(buf);
    write_input("vsr_message", "bad-replica", buf, n);
    n = vsr_input(buf, VSR_PING, 9, 1, 0, 0, NULL, 0);
    buf[80] = 1;
    vsr_reseal(buf);
    write_input("vsr_message", "bad-reserved", buf, n);
    n = vsr_input(buf, VSR_PING, 9, 1, 0, 0, NULL, 0);
    buf[64] = 1; /* c */
    vsr_reseal(buf);
    write_input("vsr_message", "bad-field", buf, n);
    len = frame_input(body, WAL_RECORD_COMMAND, payload_pattern, 40, 9);
    n = vsr_input(buf, VSR_PREPARE, 9, 0, 0, 0, body, len);
    buf[32] = 10; /* op != the frame's lsn */
    vsr_reseal(buf);
    write_input("vsr_message", "bad-prepare-lsn", buf, n);
    len = vsr_headers(body, 4, 9, 6);
    n = vsr_input(buf, VSR_DO_VIEW_CHANGE, 9, 6, 0, 0, body, len);
    buf[96 + 2 * 32 + 28] ^= 1; /* the third entry's prev_crc */
    vsr_reseal(buf);
    write_input("vsr_message", "bad-chain", buf, n);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: gen_corpus OUTDIR   "
                        "(writes OUTDIR/{frame,command,scan,snapshot,proto,vsr_message}/)\n");
        return EXIT_FAILURE;
    }
    out_dir = argv[1];
    char path[PATH_MAX];
    make_dir(out_dir);
    static const char *const targets[] = { "frame", "command", "scan", "snapshot", "proto",
                                           "vsr_message" };
    for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", out_dir, targets[i]);
        make_dir(path);
    }
    for (u32 i = 0; i < WAL_PAYLOAD_MAX; i++)
        payload_pattern[i] = (u8)(i * 7 + 1);

    gen_valid_commands();
    gen_bad_commands();
    gen_valid_frames();
    gen_bad_frames();
    gen_scan();
    gen_snapshots();
    gen_snapshot_scripts();
    gen_valid_proto();
    gen_bad_proto();
    gen_vsr_messages();
    return EXIT_SUCCESS;
}
