/*
 * fuzz/gen_corpus.c — writes the seed corpora of the fuzz targets.
 *
 *   make fuzz/gen_corpus && fuzz/gen_corpus $(top_srcdir)/fuzz/corpus
 *
 * Writes OUTDIR/frame/<name> (inputs of fuzz_frame: bytes of a WAL file) and
 * OUTDIR/command/<name> (inputs of fuzz_command: a record-type byte, then a payload): valid
 * inputs of every record type and command kind at the edge sizes, and one malformed input per
 * decoder status. The output is deterministic, so regenerating changes no committed file unless
 * the formats changed.
 */
#include "config.h"

#include "common/le.h"
#include "wal/command.h"
#include "wal/crc32c.h"
#include "wal/frame.h"

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

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: gen_corpus OUTDIR   (writes OUTDIR/frame/ and OUTDIR/command/)\n");
        return EXIT_FAILURE;
    }
    out_dir = argv[1];
    char path[PATH_MAX];
    make_dir(out_dir);
    snprintf(path, sizeof(path), "%s/frame", out_dir);
    make_dir(path);
    snprintf(path, sizeof(path), "%s/command", out_dir);
    make_dir(path);
    for (u32 i = 0; i < WAL_PAYLOAD_MAX; i++)
        payload_pattern[i] = (u8)(i * 7 + 1);

    gen_valid_commands();
    gen_bad_commands();
    gen_valid_frames();
    gen_bad_frames();
    return EXIT_SUCCESS;
}
