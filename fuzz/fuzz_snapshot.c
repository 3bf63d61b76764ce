/*
 * fuzz/fuzz_snapshot.c — fuzz target: the snapshot decoder (replica/snapshot.h:
 * snapshot_decode_info, snapshot_decode) and the round trip through snapshot_encode.
 *
 * Two kinds of input, told apart by the first four bytes:
 *
 * A snapshot file (starts with the magic "ADBS"). It is decoded as given, then again with its
 * header CRC and (when the header's counts match the length) its section CRCs recomputed, so
 * the fuzzer reaches the record checks behind the checksums.
 *
 * Anything else is a script that builds a real state and damages its snapshot:
 *
 *   byte 0    bits 0-2: one of eight small configs; bit 3: shard id 7 instead of 0; bit 4: start
 *             at an LSN near UINT64_MAX; bit 7: start at a request slot near UINT64_MAX;
 *             bits 5-6: damage besides the pokes: 0 none, 1 cut byte 2 bytes from the end,
 *             2 append byte 2 bytes (value 0x5A), 3 leave the CRCs stale after the pokes
 *   byte 1    number of script commands (modulo 48)
 *   byte 2    the amount for damage 1 and 2
 *   then      3 bytes per command (see command_of), missing bytes read as zero
 *   then      pokes, 3 bytes each: u16 offset (modulo the snapshot size), u8 value
 *
 * The script runs through sm_apply on a fresh state machine; the state is encoded, poked,
 * resealed (header and section CRC32Cs recomputed, unless damage 3) and decoded.
 *
 * Properties:
 *   - decoding never crashes, reads only the input, and returns a known status with a reason;
 *   - snapshot_decode fails exactly as snapshot_decode_info when that fails, and with
 *     CONFIG_MISMATCH when the header's config is not the caller's;
 *   - resealed inputs never fail with BAD_CHECKSUM;
 *   - when decoding succeeds: the counts and scalars of the state are the header's,
 *     sm_check_invariants holds, encoding it gives bytes that decode again to the same
 *     sm_digest and encode to the same bytes again (a canonical form); the same commands applied
 *     to both decoded states give the same outcomes, the same digests, and pass the invariant
 *     check;
 *   - a snapshot nothing damaged decodes, to the digest of the original state and to the same
 *     bytes, and behaves like the original under further commands.
 * Decoding needs a state machine created with the config: the header's when it is readable and
 * small (sm_layout total at most SNAP_MEMORY_MAX; larger headers are decoded against a fixed
 * small config instead, and must then fail with CONFIG_MISMATCH), else a fixed small one.
 */
#include "config.h"

#include "common/crc32c.h"
#include "common/le.h"
#include "fuzz/fuzz.h"
#include "replica/sm.h"
#include "replica/snapshot.h"

#include <stdlib.h>
#include <string.h>

#define SNAP_MEMORY_MAX (4u << 20) /* most bytes a state machine built from input may take */
#define SCRIPT_PREFIX 3
#define SCRIPT_MAX 48
#define TAIL_COMMANDS 24 /* commands applied after decoding when the script has none */

/* Header offsets (replica/snapshot.h). */
#define H_RESOURCES 96
#define H_RESERVATIONS 100
#define H_OPERATIONS 112
#define H_CRC 140 /* version 2 (what the encoder writes and reseal seals) */

static const struct sm_config configs[8] = {
    { 0, 4, 4, 6, 2, 5, 6, 3 },
    { 0, 8, 6, 12, 4, 12, 3, 8 },
    { 0, 1, 1, 1, 1, 1, 1, 1 },
    { 0, 16, 16, 32, 16, 64, 20, 20 },
    { 0, 3, 8, 4, 8, 3, 1, 30 },
    { 0, 6, 5, 12, 3, 7, 6, 3 },
    { 0, 2, 3, 3, 1, 1000, 2, 2 },
    { 0, 10, 10, 10, 10, 2, UINT64_MAX / 2, UINT64_MAX / 2 },
};

/* ---- building states --------------------------------------------------------------------- */

struct script {
    const uint8_t *bytes; /* 3 per command */
    size_t avail;         /* bytes present */
    u32 count;            /* commands */
};

static u8 script_byte(const struct script *s, size_t i)
{
    return i < s->avail ? s->bytes[i] : 0;
}

/* The command for (k, a, b) at `lsn` and `slot` on this state. */
static struct sm_command command_of(const sm_t *sm, u8 k, u8 a, u8 b, u64 lsn, u64 slot)
{
    u64 shard = sm->cfg.shard_id;
    struct sm_command c;
    memset(&c, 0, sizeof(c));
    c.kind = (u8)(1 + (k & 7) % SM_CMD_KIND_MAX);
    u64 back = 1 + b % 8; /* a recent LSN: likely a reservation */
    u128 recent = U128_MAKE(shard, lsn > back ? lsn - back : 1);
    if (c.kind == SM_CMD_EXPIRE) {
        struct sm_due due;
        if (!(b & 0x80) && sm_due_expirations(sm, slot, &due, 1) == 1) {
            c.reservation_id = due.reservation_id;
            c.deadline_slot = due.deadline_slot;
        } else {
            c.reservation_id = recent;
            c.deadline_slot = a;
        }
        return c;
    }
    switch (k >> 6) {
    case 0: c.operation_id = 1 + a % 16; break; /* retries and conflicts */
    case 1: c.operation_id = U128_MAKE(lsn, 1); break;
    case 2: c.operation_id = ~(u128)0 - a % 4; break;
    default: c.operation_id = 1 + a; break;
    }
    c.client_id = a & 3;
    switch (c.kind) {
    case SM_CMD_CREATE_RESOURCE:
        c.resource_id = b % 6;
        break;
    case SM_CMD_RESERVE:
        c.resource_id = b % 6;
        c.holder_id = 1 + a % 3;
        /* Mostly in range; with b's top bit 0..7, which may be out of it. */
        c.ttl_slots = (b & 0x80) ? (b >> 4) & 7 : 1 + (b >> 4) % sm->cfg.max_ttl_slots;
        break;
    default:
        c.reservation_id = b >= 0xF0 ? U128_MAKE(shard + 1, lsn - 1) : recent;
        c.holder_id = 1 + a % 3;
        break;
    }
    return c;
}

/* How far the request slot moves before command k. */
static u64 slot_step(u8 k, u8 a)
{
    switch ((k >> 3) & 3) {
    case 0: return 0;
    case 1: return 1;
    case 2: return a % 8;
    default: return 1 + (u64)(a >> 4) * 3;
    }
}

/* Applies the script to sm from its current LSN and slot; outcomes into out[] (may be NULL).
 * Stops early if the LSNs would run out. Returns the commands applied. */
static u32 run_script(sm_t *sm, const struct script *s, struct sm_outcome *out)
{
    u64 lsn = sm->last_applied_lsn, slot = sm->last_request_slot;
    u32 n = 0;
    for (u32 i = 0; i < s->count; i++) {
        u8 k = script_byte(s, 3 * (size_t)i), a = script_byte(s, 3 * (size_t)i + 1),
           b = script_byte(s, 3 * (size_t)i + 2);
        u64 gap = (k & 0x20) ? 2 : 1;
        if (lsn > UINT64_MAX - gap)
            break;
        lsn += gap;
        u64 step = slot_step(k, a);
        slot = slot > UINT64_MAX - step ? UINT64_MAX : slot + step;
        struct sm_command c = command_of(sm, k, a, b, lsn, slot);
        struct sm_outcome o = sm_apply(sm, lsn, slot, &c);
        FUZZ_CHECK(o.result < SM_RESULT_COUNT);
        if (out != NULL)
            out[n] = o;
        n++;
    }
    return n;
}

static bool outcome_equal(const struct sm_outcome *a, const struct sm_outcome *b)
{
    return a->reservation_id == b->reservation_id && a->deadline_slot == b->deadline_slot &&
           a->applied_lsn == b->applied_lsn && a->result == b->result && a->from_retry_cache == b->from_retry_cache;
}

static bool digest_equal(struct sm_digest a, struct sm_digest b)
{
    return a.lo == b.lo && a.hi == b.hi;
}

static void check_invariants(const sm_t *sm)
{
    char why[256];
    FUZZ_CHECK(sm_check_invariants(sm, why, sizeof(why)));
}

/* ---- decoding ---------------------------------------------------------------------------- */

/* A state machine for cfg, or false if it would be bigger than SNAP_MEMORY_MAX. */
static bool create_small(sm_t *sm, const struct sm_config *cfg)
{
    struct sm_layout l;
    if (!sm_layout(cfg, &l) || l.total > SNAP_MEMORY_MAX)
        return false;
    char why[160];
    FUZZ_CHECK(sm_create(sm, cfg, why, sizeof(why)));
    return true;
}

/* Encodes sm into a malloc'd buffer of exactly its size. */
static u8 *encode(const sm_t *sm, u64 *len)
{
    *len = snapshot_encoded_size(sm);
    FUZZ_CHECK(*len >= SNAPSHOT_HEADER_SIZE + 2 * SNAPSHOT_CRC_SIZE);
    u8 *buf = malloc(*len);
    FUZZ_CHECK(buf != NULL);
    FUZZ_CHECK(snapshot_encode(sm, buf, *len) == *len);
    return buf;
}

/* Decodes buf into *sm (created here with the config chosen as described at the top; the
 * caller destroys it). Checks the properties of a decode; returns its status. */
/* A version 2 snapshot's operation records come from the operation log: here, from the state
 * that was encoded (`ops_from`), or none (a fuzz input: then one that counts some is refused). */
static enum snapshot_status decode(const u8 *buf, u64 len, const struct sm_config *fallback, const sm_t *ops_from,
                                   sm_t *sm)
{
    char why[512];
    struct snapshot_info info;
    memset(&info, 0, sizeof(info));
    why[0] = '\0';
    enum snapshot_status is = snapshot_decode_info(buf, len, &info, why, sizeof(why));
    FUZZ_CHECK(is < SNAPSHOT_STATUS_COUNT && strcmp(snapshot_status_name(is), "unknown") != 0);
    FUZZ_CHECK(is == SNAPSHOT_OK || why[0] != '\0');
    FUZZ_CHECK(is != SNAPSHOT_INVARIANT && is != SNAPSHOT_TRAILING && is != SNAPSHOT_CONFIG_MISMATCH);

    bool own_cfg = is == SNAPSHOT_OK && create_small(sm, &info.cfg);
    if (!own_cfg) {
        FUZZ_CHECK(create_small(sm, fallback));
    }
    why[0] = 'x';
    why[1] = '\0';
    struct sm_operation *ops = NULL;
    u32 nops = ops_from != NULL ? ops_from->operation_count : 0;
    if (nops > 0) {
        ops = malloc(sizeof(*ops) * nops);
        FUZZ_CHECK(ops != NULL);
        for (u32 i = 0; i < nops; i++)
            ops[i] = *sm_operation_at(ops_from, i);
    }
    struct snapshot_ops_array arr;
    struct snapshot_ops src = snapshot_ops_from_array(&arr, ops, nops);
    enum snapshot_status s = snapshot_decode(buf, len, own_cfg ? &info.cfg : fallback, &src, sm, why, sizeof(why));
    free(ops);
    FUZZ_CHECK(s < SNAPSHOT_STATUS_COUNT && strcmp(snapshot_status_name(s), "unknown") != 0);
    FUZZ_CHECK(memchr(why, '\0', sizeof(why)) != NULL);
    if (s != SNAPSHOT_OK)
        FUZZ_CHECK(why[0] != '\0');
    if (is != SNAPSHOT_OK)
        FUZZ_CHECK(s == is);
    else if (!own_cfg)
        FUZZ_CHECK(s == SNAPSHOT_CONFIG_MISMATCH);
    if (s != SNAPSHOT_OK)
        return s;

    /* The decoded state is what the header says. */
    FUZZ_CHECK(sm->last_applied_lsn == info.last_applied_lsn && sm->last_request_slot == info.last_request_slot &&
               sm->retired_watermark_lsn == info.retired_watermark_lsn &&
               sm->retired_through_slot == info.retired_through_slot);
    FUZZ_CHECK(sm->resource_count == info.resources && sm->reservation_count == info.reservations &&
               sm->operation_count == info.operations &&
               sm->reservation_retire.count == info.terminal_reservations &&
               sm->expiry.count == info.reserved_reservations);
    FUZZ_CHECK(info.size == len);
    check_invariants(sm);
    return s;
}

/*
 * The properties of a state `a` that decoded from `buf` without error: it re-encodes to bytes
 * that decode to the same digest and are a fixed point of decode+encode, and it behaves like
 * that second decoding under the commands of `tail`. Returns the re-encoded bytes (caller
 * frees) and applies the tail to `a`.
 */
static u8 *check_decoded(sm_t *a, const struct script *tail, struct sm_outcome *oa, u32 *na, u64 *len)
{
    struct sm_digest da = sm_digest(a);
    u8 *y = encode(a, len);
    sm_t b;
    FUZZ_CHECK(decode(y, *len, &a->cfg, a, &b) == SNAPSHOT_OK);
    FUZZ_CHECK(digest_equal(sm_digest(&b), da));
    u64 len2;
    u8 *z = encode(&b, &len2);
    FUZZ_CHECK(len2 == *len && memcmp(z, y, len2) == 0);
    free(z);

    struct sm_outcome *ob = malloc(sizeof(*ob) * (tail->count ? tail->count : 1));
    FUZZ_CHECK(ob != NULL);
    *na = run_script(a, tail, oa);
    u32 nb = run_script(&b, tail, ob);
    FUZZ_CHECK(*na == nb);
    for (u32 i = 0; i < nb; i++)
        FUZZ_CHECK(outcome_equal(&oa[i], &ob[i]));
    FUZZ_CHECK(digest_equal(sm_digest(a), sm_digest(&b)));
    check_invariants(a);
    check_invariants(&b);
    free(ob);
    sm_destroy(&b);
    return y;
}

/* Recomputes the header CRC, and the section CRCs when the header's counts fit the length.
 * Afterwards decoding cannot fail with BAD_CHECKSUM. */
static void reseal(u8 *p, u64 len)
{
    if (len < SNAPSHOT_HEADER_SIZE_V1)
        return;
    bool v1 = le_get_u16(p + 4) == 1; /* version 1: 128-byte header, a third section */
    u64 crc_at = v1 ? 124 : H_CRC;
    if (len < crc_at + SNAPSHOT_CRC_SIZE)
        return;
    u64 nres = le_get_u32(p + H_RESOURCES), nrsv = le_get_u32(p + H_RESERVATIONS),
        nop = v1 ? le_get_u32(p + H_OPERATIONS) : 0;
    u64 a = v1 ? SNAPSHOT_HEADER_SIZE_V1 : SNAPSHOT_HEADER_SIZE, ares = nres * SNAPSHOT_RESOURCE_SIZE;
    u64 b = a + ares + SNAPSHOT_CRC_SIZE, brsv = nrsv * SNAPSHOT_RESERVATION_SIZE;
    u64 c = b + brsv + SNAPSHOT_CRC_SIZE, cop = nop * SNAPSHOT_OPERATION_SIZE_V1;
    if ((v1 ? c + cop + SNAPSHOT_CRC_SIZE : c) == len) {
        le_put_u32(p + a + ares, crc32c(0, p + a, ares));
        le_put_u32(p + b + brsv, crc32c(0, p + b, brsv));
        if (v1)
            le_put_u32(p + c + cop, crc32c(0, p + c, cop));
    }
    le_put_u32(p + crc_at, crc32c(0, p, crc_at));
}

/* The commands applied after a successful decode: the script's, or a fixed mixture. */
static const uint8_t default_tail[3 * TAIL_COMMANDS] = {
    0x00, 1, 1, 0x01, 2, 0x31, 0x09, 3, 0x22, 0x02, 4, 1,  0x03, 5, 2,  0x0C, 0x40, 0x00,
    0x04, 6, 0, 0x19, 7, 3,    0x01, 8, 0x43, 0x1A, 9, 5, 0x04, 0, 0,  0x1C, 0xF0, 0x80,
    0x00, 10, 4, 0x41, 11, 0x25, 0x0A, 12, 1, 0x1B, 0x31, 2, 0x03, 13, 3, 0x1C, 0xA0, 0,
    0x01, 14, 0x52, 0x02, 15, 0, 0x18, 0x20, 6, 0x04, 1, 1,  0x1C, 0xF0, 0,  0x00, 2, 9,
};

static struct script tail_of(const struct script *s)
{
    if (s->count != 0)
        return *s;
    return (struct script){ default_tail, sizeof(default_tail), TAIL_COMMANDS };
}

/* ---- the two modes ------------------------------------------------------------------------ */

static void decode_and_check(const u8 *buf, u64 len, bool resealed, const struct script *tail)
{
    sm_t sm;
    enum snapshot_status s = decode(buf, len, &configs[0], NULL, &sm);
    if (resealed)
        FUZZ_CHECK(s != SNAPSHOT_BAD_CHECKSUM);
    if (s == SNAPSHOT_OK) {
        struct script t = tail_of(tail);
        struct sm_outcome *o = malloc(sizeof(*o) * t.count);
        FUZZ_CHECK(o != NULL);
        u32 n;
        u64 ylen;
        free(check_decoded(&sm, &t, o, &n, &ylen));
        free(o);
    }
    sm_destroy(&sm);
}

static void run_file(const uint8_t *data, size_t size)
{
    struct script none = { NULL, 0, 0 };
    u8 *buf = malloc(size);
    FUZZ_CHECK(buf != NULL);
    memcpy(buf, data, size);
    decode_and_check(buf, size, false, &none);
    reseal(buf, size);
    if (memcmp(buf, data, size) != 0)
        decode_and_check(buf, size, true, &none);
    free(buf);
}

static void run_script_mode(const uint8_t *data, size_t size)
{
    u8 mode = data[0];
    struct sm_config cfg = configs[mode & 7];
    if (mode & 0x08)
        cfg.shard_id = 7;
    u32 damage = (mode >> 5) & 3;
    u8 amount = size > 2 ? data[2] : 0;
    struct script s = { data + SCRIPT_PREFIX, size > SCRIPT_PREFIX ? size - SCRIPT_PREFIX : 0,
                        size > 1 ? data[1] % SCRIPT_MAX : 0 };
    size_t pokes = SCRIPT_PREFIX + 3 * (size_t)s.count;

    sm_t orig;
    FUZZ_CHECK(create_small(&orig, &cfg));
    if (mode & 0x90) {
        /* Start the history at a far LSN and/or slot, with one create. */
        struct sm_command c;
        memset(&c, 0, sizeof(c));
        c.kind = SM_CMD_CREATE_RESOURCE;
        c.operation_id = U128_MAKE(1, 1);
        c.resource_id = 100;
        sm_apply(&orig, (mode & 0x10) ? UINT64_MAX - 4 * SCRIPT_MAX : 1, (mode & 0x80) ? UINT64_MAX - 40 : 0, &c);
    }
    run_script(&orig, &s, NULL);
    check_invariants(&orig);

    u64 len;
    u8 *enc = encode(&orig, &len);
    u64 cut = damage == 1 ? (amount < len ? amount : len) : 0, add = damage == 2 ? amount : 0;
    u64 dlen = len - cut + add;
    u8 *buf = malloc(dlen ? dlen : 1); /* exactly sized */
    FUZZ_CHECK(buf != NULL);
    memcpy(buf, enc, len - cut);
    memset(buf + len - cut, 0x5A, add);
    for (size_t i = pokes; dlen != 0 && i + 3 <= size; i += 3)
        buf[le_get_u16(data + i) % dlen] = data[i + 2];
    bool changed = dlen != len || memcmp(buf, enc, len) != 0;
    bool resealed = damage != 3;
    if (resealed)
        reseal(buf, dlen);

    sm_t sm;
    enum snapshot_status st = decode(buf, dlen, &cfg, &orig, &sm);
    if (resealed)
        FUZZ_CHECK(st != SNAPSHOT_BAD_CHECKSUM);
    if (!changed)
        FUZZ_CHECK(st == SNAPSHOT_OK && digest_equal(sm_digest(&sm), sm_digest(&orig)));
    if (st == SNAPSHOT_OK) {
        struct script t = tail_of(&s);
        struct sm_outcome *o = malloc(sizeof(*o) * t.count);
        FUZZ_CHECK(o != NULL);
        u32 n;
        u64 ylen;
        u8 *y = check_decoded(&sm, &t, o, &n, &ylen);
        if (!changed) {
            /* Untouched: the same bytes back, and the same future as the original. */
            FUZZ_CHECK(ylen == len && memcmp(y, enc, len) == 0);
            struct sm_outcome *p = malloc(sizeof(*p) * t.count);
            FUZZ_CHECK(p != NULL);
            FUZZ_CHECK(run_script(&orig, &t, p) == n);
            for (u32 i = 0; i < n; i++)
                FUZZ_CHECK(outcome_equal(&o[i], &p[i]));
            FUZZ_CHECK(digest_equal(sm_digest(&orig), sm_digest(&sm)));
            free(p);
        }
        free(y);
        free(o);
    }
    sm_destroy(&sm);
    sm_destroy(&orig);
    free(buf);
    free(enc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size >= 4 && le_get_u32(data) == SNAPSHOT_MAGIC)
        run_file(data, size);
    else if (size > 0)
        run_script_mode(data, size);
    return 0;
}
