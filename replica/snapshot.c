/*
 * replica/snapshot.c — encode, validate and decode state-machine snapshots; write and read
 * their files. The byte layout is documented in replica/snapshot.h.
 *
 * NOTES
 *   Encoding reads sm_t's tables directly (read-only) in the orders the format fixes: the
 *   resource table from just after an empty slot (re-inserting in that order reproduces every
 *   position, so a decoded state encodes to the same bytes), the reservation retirement queue,
 *   the expiration index (expiry_walk), confirmed reservations through their resources, and the
 *   operation retirement queue. Decoding rebuilds through the sm_restore_* calls of sm.h, which
 *   own the placement logic (probing, pools, queues, wheel).
 *
 *   Validation order (the first failure wins, with its section, record index, byte offset and
 *   reason in `why`): header length, magic, version, header CRC, header fields; config equality;
 *   total length; section CRCs; each record in file order (field ranges, order within its
 *   queue, duplicates, references to tables already restored); references from resources to
 *   reservations; sm_check_invariants. Every count is bounded by the config's
 *   capacities and the whole length is checked against total_size before any record is read,
 *   so no offset can leave the buffer.
 */
#include "config.h"

#include "replica/snapshot.h"

#include "common/assert.h"
#include "common/crc32c.h"
#include "common/le.h"
#include "replica/oplog.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Header field offsets (snapshot.h). */
#define H_MAGIC 0
#define H_VERSION 4
#define H_HEADER_SIZE 6
#define H_TOTAL_SIZE 8
#define H_SHARD 16
#define H_RESOURCE_CAP 24
#define H_RESERVATION_CAP 28
#define H_OPERATION_CAP 32
#define H_EXPIRATION_CAP 36
#define H_MAX_TTL 40
#define H_DEDUPE_WINDOW 48
#define H_HISTORY_WINDOW 56
#define H_LAST_LSN 64
#define H_LAST_SLOT 72
#define H_WATERMARK 80
#define H_THROUGH 88
#define H_RESOURCES 96
#define H_RESERVATIONS 100
#define H_TERMINAL 104
#define H_RESERVED 108
#define H_OPERATIONS 112
#define H_OPS_SUM 116    /* version 2 */
#define H_ZERO_A 124     /* version 2: 4 zero bytes */
#define H_OPS_OLDEST 128 /* version 2 */
#define H_ZERO_B 136     /* version 2: 4 zero bytes */
#define H_CRC 140
#define H1_ZERO 116      /* version 1: 8 zero bytes */
#define H1_CRC 124
ADB_STATIC_ASSERT(H_CRC + SNAPSHOT_CRC_SIZE == SNAPSHOT_HEADER_SIZE, "the CRC ends the header");
ADB_STATIC_ASSERT(H1_CRC + SNAPSHOT_CRC_SIZE == SNAPSHOT_HEADER_SIZE_V1, "the CRC ends the header");

static u32 header_size(u32 version)
{
    return version == 1 ? SNAPSHOT_HEADER_SIZE_V1 : SNAPSHOT_HEADER_SIZE;
}

/* Record field offsets. */
#define RS_ID 0
#define RS_CURRENT 16
#define RS_VERSION 32
#define RS_STATE 40
#define RS_ZERO 41
ADB_STATIC_ASSERT(RS_ZERO + 7 == SNAPSHOT_RESOURCE_SIZE, "resource record size");

#define RV_ID 0
#define RV_RESOURCE 16
#define RV_HOLDER 32
#define RV_DEADLINE 48
#define RV_RELEASED 56
#define RV_RETIRE 64
#define RV_STATE 72
#define RV_ZERO 73
ADB_STATIC_ASSERT(RV_ZERO + 7 == SNAPSHOT_RESERVATION_SIZE, "reservation record size");

/* Version 1's operation record (read, never written): the same fields at full width. */
#define OP1_ID 0
#define OP1_FP0 16
#define OP1_RESV 32
#define OP1_DEADLINE 48
#define OP1_APPLIED 56
#define OP1_RETIRE 64
#define OP1_RESULT 72
#define OP1_ZERO 73
ADB_STATIC_ASSERT(OP1_ZERO + 7 == SNAPSHOT_OPERATION_SIZE_V1, "version 1 operation record size");


#define RECORD_ZERO_BYTES 7

typedef unsigned long long ull;

const char *snapshot_status_name(enum snapshot_status s)
{
    switch (s) {
    case SNAPSHOT_OK: return "ok";
    case SNAPSHOT_SHORT: return "short";
    case SNAPSHOT_BAD_MAGIC: return "bad_magic";
    case SNAPSHOT_BAD_VERSION: return "bad_version";
    case SNAPSHOT_BAD_CHECKSUM: return "bad_checksum";
    case SNAPSHOT_BAD_HEADER: return "bad_header";
    case SNAPSHOT_CONFIG_MISMATCH: return "config_mismatch";
    case SNAPSHOT_BAD_RECORD: return "bad_record";
    case SNAPSHOT_BAD_ORDER: return "bad_order";
    case SNAPSHOT_DUPLICATE: return "duplicate";
    case SNAPSHOT_BAD_REFERENCE: return "bad_reference";
    case SNAPSHOT_OVER_CAPACITY: return "over_capacity";
    case SNAPSHOT_INVARIANT: return "invariant";
    case SNAPSHOT_TRAILING: return "trailing";
    case SNAPSHOT_OPERATIONS_MISSING: return "operations_missing";
    }
    return "unknown";
}

/* ---- layout ---------------------------------------------------------------------------- */

/* Byte offsets of the three sections (first record) and the total size, from the counts.
 * Counts are u32, so nothing here can overflow u64. */
struct sections {
    u64 resources, reservations, operations, total;
};

/* Version 2 has no operations section (s.operations == s.total). */
static struct sections sections_for(u32 version, u32 resources, u32 reservations, u32 operations)
{
    struct sections s;
    s.resources = header_size(version);
    s.reservations = s.resources + (u64)resources * SNAPSHOT_RESOURCE_SIZE + SNAPSHOT_CRC_SIZE;
    s.operations = s.reservations + (u64)reservations * SNAPSHOT_RESERVATION_SIZE + SNAPSHOT_CRC_SIZE;
    s.total = s.operations;
    if (version == 1)
        s.total += (u64)operations * SNAPSHOT_OPERATION_SIZE_V1 + SNAPSHOT_CRC_SIZE;
    return s;
}

u64 snapshot_encoded_size(const sm_t *sm)
{
    return sections_for(SNAPSHOT_VERSION, sm->resource_count, sm->reservation_count, sm->operation_count).total;
}

static u64 sat_add(u64 a, u64 b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* ---- encode ---------------------------------------------------------------------------- */

static void put_resource(u8 *p, const struct sm_resource *r)
{
    le_put_u128(p + RS_ID, r->resource_id);
    le_put_u128(p + RS_CURRENT, r->current_reservation_id);
    le_put_u64(p + RS_VERSION, r->version);
    p[RS_STATE] = r->state;
    memset(p + RS_ZERO, 0, RECORD_ZERO_BYTES);
}

static void put_reservation(u8 *p, const struct sm_reservation_view *v)
{
    le_put_u128(p + RV_ID, v->reservation_id);
    le_put_u128(p + RV_RESOURCE, v->resource_id);
    le_put_u128(p + RV_HOLDER, v->holder_id);
    le_put_u64(p + RV_DEADLINE, v->deadline_slot);
    le_put_u64(p + RV_RELEASED, v->released_lsn);
    le_put_u64(p + RV_RETIRE, v->retire_after_slot);
    p[RV_STATE] = v->state;
    memset(p + RV_ZERO, 0, RECORD_ZERO_BYTES);
}


/* The pool record at `pos` as a view (what a read would return). */
static void reservation_view_at(const sm_t *sm, u32 pos, struct sm_reservation_view *v)
{
    const struct sm_reservation *r = &sm->reservations[pos];
    v->reservation_id = r->reservation_id;
    v->resource_id = sm->resources[r->resource_ref].resource_id;
    v->holder_id = r->holder_id;
    v->created_lsn = U128_LO(r->reservation_id);
    v->deadline_slot = r->deadline_slot;
    v->released_lsn = r->released_lsn;
    v->retire_after_slot = r->retire_after_slot;
    v->state = r->state;
}

static u32 fifo_at(const struct sm_fifo *q, u32 i)
{
    u64 at = (u64)q->head + i;
    return q->items[at >= q->capacity ? at - q->capacity : at];
}

/*
 * Resource-table positions in section order: starting just after an empty slot (one exists:
 * the table is at most half full), so every probe cluster is visited from its start and
 * re-inserting in this order puts each resource back at its original position.
 */
static u32 resource_scan_start(const sm_t *sm)
{
    u32 empty = 0;
    while (sm->resources[empty].used)
        empty++;
    return empty + 1;
}

#define FOR_EACH_RESOURCE(sm, pos)                                                         \
    for (u32 k_ = 0, start_ = resource_scan_start(sm), pos = start_ & (sm)->resource_mask; \
         k_ <= (sm)->resource_mask; k_++, pos = (start_ + k_) & (sm)->resource_mask)

static u32 encode_resources(const sm_t *sm, u8 *p)
{
    u32 n = 0;
    FOR_EACH_RESOURCE(sm, pos) {
        if (sm->resources[pos].used)
            put_resource(p + (u64)n++ * SNAPSHOT_RESOURCE_SIZE, &sm->resources[pos]);
    }
    return n;
}

struct walk_out {
    const sm_t *sm;
    u8 *p;
    u32 n;
};

static bool put_scheduled(void *ctx, u32 pos, u64 deadline)
{
    struct walk_out *w = ctx;
    struct sm_reservation_view v;
    (void)deadline;
    reservation_view_at(w->sm, pos, &v);
    put_reservation(w->p + (u64)w->n++ * SNAPSHOT_RESERVATION_SIZE, &v);
    return true;
}

/* Terminal (queue order), reserved (expiration order), confirmed (resource order). */
static u32 encode_reservations(const sm_t *sm, u8 *p)
{
    struct sm_reservation_view v;
    u32 n = 0;
    for (u32 i = 0; i < sm->reservation_retire.count; i++) {
        reservation_view_at(sm, fifo_at(&sm->reservation_retire, i), &v);
        put_reservation(p + (u64)n++ * SNAPSHOT_RESERVATION_SIZE, &v);
    }
    struct walk_out w = { sm, p, n };
    expiry_walk(&sm->expiry, put_scheduled, &w);
    n = w.n;
    FOR_EACH_RESOURCE(sm, pos) {
        const struct sm_resource *r = &sm->resources[pos];
        if (!r->used || r->state != SM_RESOURCE_CONFIRMED)
            continue;
        enum sm_read found = sm_get_reservation(sm, r->current_reservation_id, 0, &v);
        ADB_ASSERT(found == SM_READ_FOUND);
        put_reservation(p + (u64)n++ * SNAPSHOT_RESERVATION_SIZE, &v);
    }
    return n;
}


/* Writes the CRC32C of the `len` section bytes at `start` right after them. */
static void seal_section(u8 *start, u64 len)
{
    le_put_u32(start + len, crc32c(0, start, (size_t)len));
}

static void put_header(const sm_t *sm, u8 *h, u64 total)
{
    const struct sm_config *c = &sm->cfg;
    memset(h, 0, SNAPSHOT_HEADER_SIZE);
    le_put_u32(h + H_MAGIC, SNAPSHOT_MAGIC);
    le_put_u16(h + H_VERSION, SNAPSHOT_VERSION);
    le_put_u16(h + H_HEADER_SIZE, SNAPSHOT_HEADER_SIZE);
    le_put_u64(h + H_TOTAL_SIZE, total);
    le_put_u64(h + H_SHARD, c->shard_id);
    le_put_u32(h + H_RESOURCE_CAP, c->resource_capacity);
    le_put_u32(h + H_RESERVATION_CAP, c->reservation_capacity);
    le_put_u32(h + H_OPERATION_CAP, c->operation_capacity);
    le_put_u32(h + H_EXPIRATION_CAP, c->expiration_capacity);
    le_put_u64(h + H_MAX_TTL, c->max_ttl_slots);
    le_put_u64(h + H_DEDUPE_WINDOW, c->dedupe_window_slots);
    le_put_u64(h + H_HISTORY_WINDOW, c->history_window_slots);
    le_put_u64(h + H_LAST_LSN, sm->last_applied_lsn);
    le_put_u64(h + H_LAST_SLOT, sm->last_request_slot);
    le_put_u64(h + H_WATERMARK, sm->retired_watermark_lsn);
    le_put_u64(h + H_THROUGH, sm->retired_through_slot);
    le_put_u32(h + H_RESOURCES, sm->resource_count);
    le_put_u32(h + H_RESERVATIONS, sm->reservation_count);
    le_put_u32(h + H_TERMINAL, sm->reservation_retire.count);
    le_put_u32(h + H_RESERVED, sm->expiry.count);
    le_put_u32(h + H_OPERATIONS, sm->operation_count);
    le_put_u64(h + H_OPS_SUM, sm->operation_sum);
    le_put_u64(h + H_OPS_OLDEST, sm->operation_oldest_lsn); /* not sm->operations: see sm_keep_operations_from_fork */
    le_put_u32(h + H_CRC, crc32c(0, h, H_CRC));
}

u64 snapshot_encode(const sm_t *sm, u8 *buf, u64 cap)
{
    struct sections s = sections_for(SNAPSHOT_VERSION, sm->resource_count, sm->reservation_count, sm->operation_count);
    ADB_ASSERT(cap >= s.total);
    u32 resources = encode_resources(sm, buf + s.resources);
    u32 reservations = encode_reservations(sm, buf + s.reservations);
    /* The tables must agree with their counts: sm is trusted, so a mismatch is a bug. */
    ADB_ASSERT(resources == sm->resource_count && reservations == sm->reservation_count);
    seal_section(buf + s.resources, (u64)sm->resource_count * SNAPSHOT_RESOURCE_SIZE);
    seal_section(buf + s.reservations, (u64)sm->reservation_count * SNAPSHOT_RESERVATION_SIZE);
    put_header(sm, buf, s.total);
    return s.total;
}

/* ---- decode: messages ------------------------------------------------------------------ */

/* Context of one decode: the input, the header, where to say why. */
struct dec {
    const u8 *buf;
    struct snapshot_info info;
    struct sections s;
    char *why;
    size_t why_len;
};

__attribute__((format(printf, 4, 5))) static enum snapshot_status
say(char *why, size_t why_len, enum snapshot_status st, const char *fmt, ...)
{
    if (why != NULL && why_len > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, why_len, fmt, ap);
        va_end(ap);
    }
    return st;
}

/* Failure in record `i` of a section starting at byte `base`: "section[i] (byte N): ...". */
__attribute__((format(printf, 6, 7))) static enum snapshot_status
record_fail(const struct dec *d, enum snapshot_status st, const char *section, u32 i, u64 offset,
            const char *fmt, ...)
{
    if (d->why == NULL || d->why_len == 0)
        return st;
    /* Offset 0 (never a record's in a snapshot): a record from the operation log, by index. */
    int n = offset == 0 ? snprintf(d->why, d->why_len, "%s[%u]: ", section, i)
                        : snprintf(d->why, d->why_len, "%s[%u] (byte %llu): ", section, i, (ull)offset);
    if (n >= 0 && (size_t)n < d->why_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(d->why + n, d->why_len - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return st;
}

struct idtext {
    char s[48];
};

/* An id for messages: decimal when it fits 64 bits, else 0x<hi>:<lo>. */
static struct idtext idtext(u128 v)
{
    struct idtext t;
    if (U128_HI(v) == 0)
        snprintf(t.s, sizeof(t.s), "%llu", (ull)U128_LO(v));
    else
        snprintf(t.s, sizeof(t.s), "0x%llx:%016llx", (ull)U128_HI(v), (ull)U128_LO(v));
    return t;
}

/* ---- decode: header -------------------------------------------------------------------- */

static bool info_empty(const struct snapshot_info *in)
{
    return in->resources == 0 && in->reservations == 0 && in->operations == 0 && in->last_request_slot == 0 &&
           in->retired_watermark_lsn == 0 && in->retired_through_slot == 0;
}

/* Header fields beyond magic, version and CRC: sizes, capacities, scalars. */
static enum snapshot_status check_header(const u8 *h, const struct snapshot_info *in, char *why, size_t why_len)
{
    u16 hsize = le_get_u16(h + H_HEADER_SIZE);
    if (hsize != header_size(in->version))
        return say(why, why_len, SNAPSHOT_BAD_HEADER, "header: header_size %u, version %u has %u", hsize,
                   in->version, header_size(in->version));
    if (in->version == 1 && !le_all_zero(h + H1_ZERO, H1_CRC - H1_ZERO))
        return say(why, why_len, SNAPSHOT_BAD_HEADER, "header: reserved bytes %d..%d not zero", H1_ZERO, H1_CRC - 1);
    if (in->version > 1 && (!le_all_zero(h + H_ZERO_A, 4) || !le_all_zero(h + H_ZERO_B, 4)))
        return say(why, why_len, SNAPSHOT_BAD_HEADER, "header: reserved bytes %d..%d or %d..%d not zero", H_ZERO_A,
                   H_ZERO_A + 3, H_ZERO_B, H_ZERO_B + 3);
    if (in->version > 1 && (in->operations == 0) != (in->oldest_operation_lsn == 0))
        return say(why, why_len, SNAPSHOT_BAD_HEADER, "header: operation_count %u with oldest_operation_lsn %llu",
                   in->operations, (ull)in->oldest_operation_lsn);
    if (in->oldest_operation_lsn > in->last_applied_lsn)
        return say(why, why_len, SNAPSHOT_BAD_HEADER, "header: oldest_operation_lsn %llu above last_applied_lsn %llu",
                   (ull)in->oldest_operation_lsn, (ull)in->last_applied_lsn);
    char reason[160];
    if (!sm_config_validate(&in->cfg, reason, sizeof(reason)))
        return say(why, why_len, SNAPSHOT_BAD_HEADER, "header: the embedded config is invalid: %s", reason);
    const struct sm_config *c = &in->cfg;
    if (in->resources > c->resource_capacity)
        return say(why, why_len, SNAPSHOT_OVER_CAPACITY, "header: resource_count %u exceeds resource_capacity %u",
                   in->resources, c->resource_capacity);
    if (in->reservations > c->reservation_capacity)
        return say(why, why_len, SNAPSHOT_OVER_CAPACITY,
                   "header: reservation_count %u exceeds reservation_capacity %u", in->reservations,
                   c->reservation_capacity);
    if (in->operations > c->operation_capacity)
        return say(why, why_len, SNAPSHOT_OVER_CAPACITY, "header: operation_count %u exceeds operation_capacity %u",
                   in->operations, c->operation_capacity);
    if (in->reserved_reservations > c->expiration_capacity)
        return say(why, why_len, SNAPSHOT_OVER_CAPACITY, "header: reserved_count %u exceeds expiration_capacity %u",
                   in->reserved_reservations, c->expiration_capacity);
    if ((u64)in->terminal_reservations + in->reserved_reservations > in->reservations)
        return say(why, why_len, SNAPSHOT_BAD_HEADER,
                   "header: terminal_count %u + reserved_count %u exceed reservation_count %u",
                   in->terminal_reservations, in->reserved_reservations, in->reservations);
    u64 want = sections_for(in->version, in->resources, in->reservations, in->operations).total;
    if (in->size != want)
        return say(why, why_len, SNAPSHOT_BAD_HEADER, "header: total_size %llu, but the counts make %llu bytes",
                   (ull)in->size, (ull)want);
    if (in->retired_watermark_lsn > in->last_applied_lsn)
        return say(why, why_len, SNAPSHOT_BAD_HEADER, "header: retired_watermark_lsn %llu above last_applied_lsn %llu",
                   (ull)in->retired_watermark_lsn, (ull)in->last_applied_lsn);
    if (in->retired_through_slot > in->last_request_slot)
        return say(why, why_len, SNAPSHOT_BAD_HEADER,
                   "header: retired_through_slot %llu above last_request_slot %llu",
                   (ull)in->retired_through_slot, (ull)in->last_request_slot);
    if (in->last_applied_lsn == 0 && !info_empty(in))
        return say(why, why_len, SNAPSHOT_BAD_HEADER, "header: last_applied_lsn 0 with a non-empty state");
    return SNAPSHOT_OK;
}

enum snapshot_status snapshot_decode_info(const u8 *buf, u64 len, struct snapshot_info *out, char *why,
                                          size_t why_len)
{
    if (len < SNAPSHOT_HEADER_SIZE_V1)
        return say(why, why_len, SNAPSHOT_SHORT, "%llu bytes, a snapshot header has %d", (ull)len,
                   SNAPSHOT_HEADER_SIZE_V1);
    u32 magic = le_get_u32(buf + H_MAGIC);
    if (magic != SNAPSHOT_MAGIC)
        return say(why, why_len, SNAPSHOT_BAD_MAGIC, "header: magic 0x%08x, want 0x%08x (\"ADBS\")", magic,
                   SNAPSHOT_MAGIC);
    u16 version = le_get_u16(buf + H_VERSION);
    if (version < SNAPSHOT_VERSION_MIN || version > SNAPSHOT_VERSION)
        return say(why, why_len, SNAPSHOT_BAD_VERSION, "header: format version %u, this build reads %d to %d",
                   version, SNAPSHOT_VERSION_MIN, SNAPSHOT_VERSION);
    u32 at = version == 1 ? H1_CRC : H_CRC;
    if (len < (u64)at + SNAPSHOT_CRC_SIZE)
        return say(why, why_len, SNAPSHOT_SHORT, "%llu bytes, a version %u header has %u", (ull)len, version,
                   at + SNAPSHOT_CRC_SIZE);
    u32 crc = crc32c(0, buf, at), stored = le_get_u32(buf + at);
    if (crc != stored)
        return say(why, why_len, SNAPSHOT_BAD_CHECKSUM, "header (bytes 0..%u): CRC32C 0x%08x, stored 0x%08x",
                   at - 1, crc, stored);

    struct snapshot_info in;
    memset(&in, 0, sizeof(in));
    in.version = version;
    in.size = le_get_u64(buf + H_TOTAL_SIZE);
    in.cfg.shard_id = le_get_u64(buf + H_SHARD);
    in.cfg.resource_capacity = le_get_u32(buf + H_RESOURCE_CAP);
    in.cfg.reservation_capacity = le_get_u32(buf + H_RESERVATION_CAP);
    in.cfg.operation_capacity = le_get_u32(buf + H_OPERATION_CAP);
    in.cfg.expiration_capacity = le_get_u32(buf + H_EXPIRATION_CAP);
    in.cfg.max_ttl_slots = le_get_u64(buf + H_MAX_TTL);
    in.cfg.dedupe_window_slots = le_get_u64(buf + H_DEDUPE_WINDOW);
    in.cfg.history_window_slots = le_get_u64(buf + H_HISTORY_WINDOW);
    in.last_applied_lsn = le_get_u64(buf + H_LAST_LSN);
    in.last_request_slot = le_get_u64(buf + H_LAST_SLOT);
    in.retired_watermark_lsn = le_get_u64(buf + H_WATERMARK);
    in.retired_through_slot = le_get_u64(buf + H_THROUGH);
    in.resources = le_get_u32(buf + H_RESOURCES);
    in.reservations = le_get_u32(buf + H_RESERVATIONS);
    in.terminal_reservations = le_get_u32(buf + H_TERMINAL);
    in.reserved_reservations = le_get_u32(buf + H_RESERVED);
    in.operations = le_get_u32(buf + H_OPERATIONS);
    if (version > 1) {
        in.operations_sum = le_get_u64(buf + H_OPS_SUM);
        in.oldest_operation_lsn = le_get_u64(buf + H_OPS_OLDEST);
    }
    enum snapshot_status st = check_header(buf, &in, why, why_len);
    if (st == SNAPSHOT_OK)
        *out = in;
    return st;
}

/* Replay after the snapshot must run under the config it was taken with, field by field. */
enum snapshot_status snapshot_check_config(const struct sm_config *snap, const struct sm_config *node, char *why,
                                           size_t why_len)
{
#define SAME(field)                                                                                   \
    do {                                                                                              \
        if (snap->field != node->field)                                                               \
            return say(why, why_len, SNAPSHOT_CONFIG_MISMATCH,                                        \
                       "config: the snapshot was taken with " #field " = %llu, this node runs with %llu", \
                       (ull)snap->field, (ull)node->field);                                          \
    } while (0)
    SAME(shard_id);
    SAME(resource_capacity);
    SAME(reservation_capacity);
    SAME(operation_capacity);
    SAME(expiration_capacity);
    SAME(max_ttl_slots);
    SAME(dedupe_window_slots);
    SAME(history_window_slots);
    return SNAPSHOT_OK;
#undef SAME
}

static enum snapshot_status check_section_crc(const struct dec *d, const char *name, u64 start, u64 len)
{
    u32 crc = crc32c(0, d->buf + start, (size_t)len), stored = le_get_u32(d->buf + start + len);
    if (crc != stored)
        return say(d->why, d->why_len, SNAPSHOT_BAD_CHECKSUM,
                   "%s section (bytes %llu..%llu): CRC32C 0x%08x, stored 0x%08x", name, (ull)start,
                   (ull)(start + len + SNAPSHOT_CRC_SIZE - 1), crc, stored);
    return SNAPSHOT_OK;
}

/* ---- decode: records ------------------------------------------------------------------- */

/* An id the state machine could have issued by the snapshot's LSN. */
static bool reservation_id_valid(const struct dec *d, u128 id)
{
    return U128_HI(id) == d->info.cfg.shard_id && U128_LO(id) != 0 && U128_LO(id) <= d->info.last_applied_lsn;
}

static enum snapshot_status restore_failed(const struct dec *d, enum sm_restore_result rc, const char *section,
                                           u32 i, u64 off, u128 id)
{
    switch (rc) {
    case SM_RESTORE_OK: return SNAPSHOT_OK;
    case SM_RESTORE_DUPLICATE:
        return record_fail(d, SNAPSHOT_DUPLICATE, section, i, off, "id %s appears twice", idtext(id).s);
    case SM_RESTORE_FULL:
        return record_fail(d, SNAPSHOT_OVER_CAPACITY, section, i, off, "table full");
    case SM_RESTORE_NO_RESOURCE:
        return record_fail(d, SNAPSHOT_BAD_REFERENCE, section, i, off, "resource not in the resources section");
    case SM_RESTORE_INVALID: break;
    }
    return record_fail(d, SNAPSHOT_BAD_RECORD, section, i, off, "the state machine cannot hold this record");
}

static void get_resource(const u8 *p, struct sm_resource_view *v)
{
    v->resource_id = le_get_u128(p + RS_ID);
    v->current_reservation_id = le_get_u128(p + RS_CURRENT);
    v->version = le_get_u64(p + RS_VERSION);
    v->state = p[RS_STATE];
}

/* Restores the resources; *busy (OUT) counts those with a current reservation. */
/* How many records ahead the decode loops prefetch the slots a record will be restored into:
 * the tables are far larger than the caches, so each insert would otherwise wait on memory. */
#define RESTORE_PREFETCH 16

static enum snapshot_status decode_resources(const struct dec *d, sm_t *sm, u32 *busy)
{
    static const char sec[] = "resources";
    *busy = 0;
    for (u32 i = 0; i < d->info.resources; i++) {
        u64 off = d->s.resources + (u64)i * SNAPSHOT_RESOURCE_SIZE;
        const u8 *p = d->buf + off;
        if (i + RESTORE_PREFETCH < d->info.resources)
            sm_restore_prefetch_resource(sm, le_get_u128(p + RESTORE_PREFETCH * SNAPSHOT_RESOURCE_SIZE + RS_ID));
        struct sm_resource_view v;
        get_resource(p, &v);
        if (!le_all_zero(p + RS_ZERO, RECORD_ZERO_BYTES))
            return record_fail(d, SNAPSHOT_BAD_RECORD, sec, i, off, "reserved bytes not zero");
        if (v.state > SM_RESOURCE_CONFIRMED)
            return record_fail(d, SNAPSHOT_BAD_RECORD, sec, i, off, "state %u out of range", v.state);
        if ((v.state == SM_RESOURCE_AVAILABLE) != (v.current_reservation_id == 0))
            return record_fail(d, SNAPSHOT_BAD_RECORD, sec, i, off, "state %s with current_reservation_id %s",
                               sm_resource_state_name(v.state), idtext(v.current_reservation_id).s);
        if (v.current_reservation_id != 0 && !reservation_id_valid(d, v.current_reservation_id))
            return record_fail(d, SNAPSHOT_BAD_REFERENCE, sec, i, off,
                               "current_reservation_id %s is no reservation id of shard %llu up to lsn %llu",
                               idtext(v.current_reservation_id).s, (ull)d->info.cfg.shard_id,
                               (ull)d->info.last_applied_lsn);
        enum snapshot_status st = restore_failed(d, sm_restore_resource(sm, &v), sec, i, off, v.resource_id);
        if (st != SNAPSHOT_OK)
            return st;
        *busy += v.current_reservation_id != 0;
    }
    return SNAPSHOT_OK;
}

static void get_reservation(const u8 *p, struct sm_reservation_view *v)
{
    v->reservation_id = le_get_u128(p + RV_ID);
    v->resource_id = le_get_u128(p + RV_RESOURCE);
    v->holder_id = le_get_u128(p + RV_HOLDER);
    v->created_lsn = U128_LO(v->reservation_id);
    v->deadline_slot = le_get_u64(p + RV_DEADLINE);
    v->released_lsn = le_get_u64(p + RV_RELEASED);
    v->retire_after_slot = le_get_u64(p + RV_RETIRE);
    v->state = p[RV_STATE];
}

enum group { GROUP_TERMINAL, GROUP_RESERVED, GROUP_CONFIRMED };
static const char *const group_names[] = { "terminal (retirement queue)", "reserved (expiration index)",
                                           "confirmed" };

static enum group group_of_state(u8 state)
{
    return state == SM_RESERVATION_RESERVED ? GROUP_RESERVED
           : state == SM_RESERVATION_CONFIRMED ? GROUP_CONFIRMED
                                               : GROUP_TERMINAL;
}

/* Fields that only a terminal reservation has, and the retirement-queue order. */
static enum snapshot_status check_terminal(const struct dec *d, const struct sm_reservation_view *v,
                                           const struct sm_reservation_view *prev, u32 i, u64 off)
{
    static const char sec[] = "reservations";
    const struct snapshot_info *in = &d->info;
    u64 history = in->cfg.history_window_slots;
    if (v->released_lsn <= v->created_lsn || v->released_lsn > in->last_applied_lsn)
        return record_fail(d, SNAPSHOT_BAD_RECORD, sec, i, off, "released_lsn %llu not in (%llu, %llu]",
                           (ull)v->released_lsn, (ull)v->created_lsn, (ull)in->last_applied_lsn);
    /* retire_after_slot = release slot + history window, and release slot <= last slot. */
    if (v->retire_after_slot < history || v->retire_after_slot > sat_add(in->last_request_slot, history))
        return record_fail(d, SNAPSHOT_BAD_RECORD, sec, i, off,
                           "retire_after_slot %llu is no slot up to %llu plus the history window %llu",
                           (ull)v->retire_after_slot, (ull)in->last_request_slot, (ull)history);
    if (v->retire_after_slot < in->retired_through_slot)
        return record_fail(d, SNAPSHOT_BAD_RECORD, sec, i, off,
                           "retire_after_slot %llu: retired by the pass at slot %llu, yet still here",
                           (ull)v->retire_after_slot, (ull)in->retired_through_slot);
    if (v->state == SM_RESERVATION_EXPIRED && v->deadline_slot > v->retire_after_slot - history)
        return record_fail(d, SNAPSHOT_BAD_RECORD, sec, i, off, "expired at slot %llu, before its deadline %llu",
                           (ull)(v->retire_after_slot - history), (ull)v->deadline_slot);
    if (prev != NULL && (v->retire_after_slot < prev->retire_after_slot ||
                         (v->retire_after_slot == prev->retire_after_slot && v->released_lsn <= prev->released_lsn)))
        return record_fail(d, SNAPSHOT_BAD_ORDER, sec, i, off,
                           "retirement queue not sorted by (retire_after_slot, released_lsn): (%llu, %llu) after "
                           "(%llu, %llu)",
                           (ull)v->retire_after_slot, (ull)v->released_lsn, (ull)prev->retire_after_slot,
                           (ull)prev->released_lsn);
    return SNAPSHOT_OK;
}

/* An active reservation must be its resource's current one, in the matching state. */
static enum snapshot_status check_active(const struct dec *d, const sm_t *sm, const struct sm_reservation_view *v,
                                         u32 i, u64 off)
{
    static const char sec[] = "reservations";
    if (v->released_lsn != 0 || v->retire_after_slot != 0)
        return record_fail(d, SNAPSHOT_BAD_RECORD, sec, i, off,
                           "%s with released_lsn %llu and retire_after_slot %llu (both must be 0)",
                           sm_reservation_state_name(v->state), (ull)v->released_lsn, (ull)v->retire_after_slot);
    struct sm_resource_view r;
    if (sm_get_resource(sm, v->resource_id, 0, &r) != SM_READ_FOUND)
        return record_fail(d, SNAPSHOT_BAD_REFERENCE, sec, i, off, "resource %s not in the resources section",
                           idtext(v->resource_id).s);
    u8 want = v->state == SM_RESERVATION_RESERVED ? SM_RESOURCE_RESERVED : SM_RESOURCE_CONFIRMED;
    if (r.current_reservation_id != v->reservation_id || r.state != want)
        return record_fail(d, SNAPSHOT_BAD_REFERENCE, sec, i, off,
                           "%s, but its resource %s is %s with current reservation %s",
                           sm_reservation_state_name(v->state), idtext(v->resource_id).s,
                           sm_resource_state_name(r.state), idtext(r.current_reservation_id).s);
    return SNAPSHOT_OK;
}

/* Reserved reservations come in expiration order: ascending (deadline_slot, reservation_id). */
static enum snapshot_status check_expiration_order(const struct dec *d, const struct sm_reservation_view *v,
                                                   const struct sm_reservation_view *prev, u32 i, u64 off)
{
    if (prev == NULL || v->deadline_slot > prev->deadline_slot ||
        (v->deadline_slot == prev->deadline_slot && v->reservation_id > prev->reservation_id))
        return SNAPSHOT_OK;
    return record_fail(d, SNAPSHOT_BAD_ORDER, "reservations", i, off,
                       "expiration order not sorted by (deadline_slot, id): (%llu, %s) after (%llu, %s)",
                       (ull)v->deadline_slot, idtext(v->reservation_id).s, (ull)prev->deadline_slot,
                       idtext(prev->reservation_id).s);
}

/* Checks that do not depend on the group: shape, id, deadline, group placement. */
static enum snapshot_status check_reservation(const struct dec *d, const u8 *p, const struct sm_reservation_view *v,
                                              u32 i, u64 off)
{
    static const char sec[] = "reservations";
    const struct snapshot_info *in = &d->info;
    if (!le_all_zero(p + RV_ZERO, RECORD_ZERO_BYTES))
        return record_fail(d, SNAPSHOT_BAD_RECORD, sec, i, off, "reserved bytes not zero");
    if (v->state > SM_RESERVATION_EXPIRED)
        return record_fail(d, SNAPSHOT_BAD_RECORD, sec, i, off, "state %u out of range", v->state);
    if (!reservation_id_valid(d, v->reservation_id))
        return record_fail(d, SNAPSHOT_BAD_RECORD, sec, i, off,
                           "reservation_id %s is no id of shard %llu up to lsn %llu", idtext(v->reservation_id).s,
                           (ull)in->cfg.shard_id, (ull)in->last_applied_lsn);
    /* deadline = reserve slot + ttl: at least 1, at most the last slot + max_ttl_slots. */
    u64 max_deadline = sat_add(in->last_request_slot, in->cfg.max_ttl_slots);
    if (v->deadline_slot == 0 || v->deadline_slot > max_deadline)
        return record_fail(d, SNAPSHOT_BAD_RECORD, sec, i, off, "deadline_slot %llu not in [1, %llu]",
                           (ull)v->deadline_slot, (ull)max_deadline);
    u32 terminal_end = in->terminal_reservations, reserved_end = terminal_end + in->reserved_reservations;
    enum group want = i < terminal_end ? GROUP_TERMINAL : i < reserved_end ? GROUP_RESERVED : GROUP_CONFIRMED;
    if (group_of_state(v->state) != want)
        return record_fail(d, SNAPSHOT_BAD_ORDER, sec, i, off,
                           "state %s, but the header puts this record in the %s group",
                           sm_reservation_state_name(v->state), group_names[want]);
    return SNAPSHOT_OK;
}

/* Restores the reservations; *active (OUT) counts the reserved and confirmed ones. */
static enum snapshot_status decode_reservations(const struct dec *d, sm_t *sm, u32 *active)
{
    static const char sec[] = "reservations";
    struct sm_reservation_view v, prev;
    for (u32 i = 0; i < d->info.reservations; i++) {
        u64 off = d->s.reservations + (u64)i * SNAPSHOT_RESERVATION_SIZE;
        const u8 *p = d->buf + off;
        if (i + RESTORE_PREFETCH < d->info.reservations) {
            const u8 *ahead = p + RESTORE_PREFETCH * SNAPSHOT_RESERVATION_SIZE;
            sm_restore_prefetch_reservation(sm, le_get_u128(ahead + RV_ID), le_get_u128(ahead + RV_RESOURCE));
        }
        get_reservation(p, &v);
        enum snapshot_status st = check_reservation(d, p, &v, i, off);
        if (st != SNAPSHOT_OK)
            return st;
        bool same_group_before = i > 0 && group_of_state(prev.state) == group_of_state(v.state);
        switch (group_of_state(v.state)) {
        case GROUP_TERMINAL:
            st = check_terminal(d, &v, same_group_before ? &prev : NULL, i, off);
            break;
        case GROUP_RESERVED:
            st = check_expiration_order(d, &v, same_group_before ? &prev : NULL, i, off);
            if (st == SNAPSHOT_OK)
                st = check_active(d, sm, &v, i, off);
            break;
        case GROUP_CONFIRMED:
            st = check_active(d, sm, &v, i, off);
            break;
        }
        if (st != SNAPSHOT_OK)
            return st;
        st = restore_failed(d, sm_restore_reservation(sm, &v), sec, i, off, v.reservation_id);
        if (st != SNAPSHOT_OK)
            return st;
        prev = v;
    }
    *active = d->info.reservations - d->info.terminal_reservations;
    return SNAPSHOT_OK;
}

/* A version 1 record as a version 2 one, and its result reservation id (checked, then dropped:
 * a retry derives it). Version 1's first fingerprint word is today's fingerprint before its low
 * byte was given to the result code, so retries of restored records still match. */
static void get_operation_v1(const u8 *p, struct sm_operation *o, u128 *result_reservation_id)
{
    memset(o, 0, sizeof(*o));
    o->operation_id = le_get_u128(p + OP1_ID);
    o->fingerprint_code = (le_get_u64(p + OP1_FP0) & ~(u64)0xff) | p[OP1_RESULT];
    *result_reservation_id = le_get_u128(p + OP1_RESV);
    o->result_deadline_slot = le_get_u64(p + OP1_DEADLINE);
    o->applied_lsn = le_get_u64(p + OP1_APPLIED);
    o->retire_after_slot = le_get_u64(p + OP1_RETIRE);
}

/* Results a record can store: every committed client result except the unrecorded ones. */
static bool storable_result(u8 r)
{
    return r < SM_RESULT_COUNT && r != SM_NOOP && r != SM_OPERATION_TABLE_FULL && r != SM_OPERATION_CONFLICT;
}

/* The stored outcome: failures name no deadline; a success's deadline (0 for a create) is no
 * later than its request slot plus max_ttl_slots. Version 1 also stored the reservation id:
 * none on a failure, one issued by then on a success (0 for a create: then no deadline). */
static enum snapshot_status check_stored_result(const struct dec *d, const char *sec, const struct sm_operation *o,
                                                u128 id, u32 i, u64 off)
{
    u8 code = sm_operation_code(o);
    u64 deadline = o->result_deadline_slot;
    bool v1 = d->info.version == 1;
    if (code != SM_OK || (v1 && id == 0)) {
        if (id != 0 || deadline != 0)
            return record_fail(d, SNAPSHOT_BAD_RECORD, sec, i, off,
                               "result %s with reservation %s and deadline %llu (both must be 0)",
                               sm_result_name(code), idtext(id).s, (ull)deadline);
        return SNAPSHOT_OK;
    }
    if (v1 && (U128_HI(id) != d->info.cfg.shard_id || U128_LO(id) == 0 || U128_LO(id) > o->applied_lsn))
        return record_fail(d, SNAPSHOT_BAD_RECORD, sec, i, off,
                           "result reservation %s is no id of shard %llu up to its lsn %llu", idtext(id).s,
                           (ull)d->info.cfg.shard_id, (ull)o->applied_lsn);
    u64 slot = o->retire_after_slot - d->info.cfg.dedupe_window_slots; /* checked >= 0 by the caller */
    u64 max_deadline = sat_add(slot, d->info.cfg.max_ttl_slots);
    if ((v1 && deadline == 0) || deadline > max_deadline)
        return record_fail(d, SNAPSHOT_BAD_RECORD, sec, i, off, "result deadline %llu not in [%d, %llu]",
                           (ull)deadline, v1 ? 1 : 0, (ull)max_deadline);
    return SNAPSHOT_OK;
}

static enum snapshot_status check_operation(const struct dec *d, const char *sec, const u8 *p,
                                            const struct sm_operation *o, u128 result_id,
                                            const struct sm_operation *prev, u32 i, u64 off)
{
    const struct snapshot_info *in = &d->info;
    u64 window = in->cfg.dedupe_window_slots;
    if (p != NULL && !le_all_zero(p + OP1_ZERO, RECORD_ZERO_BYTES))
        return record_fail(d, SNAPSHOT_BAD_RECORD, sec, i, off, "reserved bytes not zero");
    if (o->operation_id == 0)
        return record_fail(d, SNAPSHOT_BAD_RECORD, sec, i, off, "operation_id 0");
    if (!storable_result(sm_operation_code(o)))
        return record_fail(d, SNAPSHOT_BAD_RECORD, sec, i, off, "result code %u is never stored",
                           sm_operation_code(o));
    if (o->applied_lsn == 0 || o->applied_lsn > in->last_applied_lsn)
        return record_fail(d, SNAPSHOT_BAD_RECORD, sec, i, off, "applied_lsn %llu not in [1, %llu]",
                           (ull)o->applied_lsn, (ull)in->last_applied_lsn);
    if (o->retire_after_slot < window || o->retire_after_slot > sat_add(in->last_request_slot, window))
        return record_fail(d, SNAPSHOT_BAD_RECORD, sec, i, off,
                           "retire_after_slot %llu is no slot up to %llu plus the dedupe window %llu",
                           (ull)o->retire_after_slot, (ull)in->last_request_slot, (ull)window);
    if (o->retire_after_slot < in->retired_through_slot)
        return record_fail(d, SNAPSHOT_BAD_RECORD, sec, i, off,
                           "retire_after_slot %llu: retired by the pass at slot %llu, yet still here",
                           (ull)o->retire_after_slot, (ull)in->retired_through_slot);
    if (prev != NULL && (o->applied_lsn <= prev->applied_lsn || o->retire_after_slot < prev->retire_after_slot))
        return record_fail(d, SNAPSHOT_BAD_ORDER, sec, i, off,
                           "retirement queue not in apply order: (lsn %llu, retire_after_slot %llu) after (lsn "
                           "%llu, retire_after_slot %llu)",
                           (ull)o->applied_lsn, (ull)o->retire_after_slot, (ull)prev->applied_lsn,
                           (ull)prev->retire_after_slot);
    return check_stored_result(d, sec, o, result_id, i, off);
}

static enum snapshot_status decode_operations_v1(const struct dec *d, sm_t *sm)
{
    static const char sec[] = "operations";
    struct sm_operation o, prev;
    const u64 size = SNAPSHOT_OPERATION_SIZE_V1;
    for (u32 i = 0; i < d->info.operations; i++) {
        u64 off = d->s.operations + (u64)i * size;
        const u8 *p = d->buf + off;
        if (i + RESTORE_PREFETCH < d->info.operations)
            sm_restore_prefetch_operation(sm, le_get_u128(p + RESTORE_PREFETCH * size + OP1_ID));
        u128 result_id = 0;
        get_operation_v1(p, &o, &result_id);
        enum snapshot_status st = check_operation(d, sec, p, &o, result_id, i > 0 ? &prev : NULL, i, off);
        if (st != SNAPSHOT_OK)
            return st;
        st = restore_failed(d, sm_restore_operation(sm, &o), sec, i, off, o.operation_id);
        if (st != SNAPSHOT_OK)
            return st;
        prev = o;
    }
    return SNAPSHOT_OK;
}

bool snapshot_operation_live(const struct snapshot_info *in, const struct sm_operation *o)
{
    return o->applied_lsn <= in->last_applied_lsn && o->retire_after_slot >= in->retired_through_slot;
}

/* Version 2: the live records from the source, checked one by one like version 1's, then as a
 * whole against the header's count, oldest LSN and hash sum. */
static enum snapshot_status decode_operations_v2(const struct dec *d, const struct snapshot_ops *src, sm_t *sm)
{
    static const char sec[] = "operation log";
    const struct snapshot_info *in = &d->info;
    struct sm_operation o, prev;
    u32 n = 0;
    for (;;) {
        int got = src == NULL ? 0 : src->next(src->ctx, &o, d->why, d->why_len);
        if (got < 0)
            return SNAPSHOT_OPERATIONS_MISSING; /* `why` says what could not be read */
        if (got == 0)
            break;
        if (!snapshot_operation_live(in, &o))
            continue; /* past the snapshot, or retired by then */
        if (n == in->operations)
            return record_fail(d, SNAPSHOT_OPERATIONS_MISSING, sec, n, 0,
                               "more live records than the %u the header counts (lsn %llu)", in->operations,
                               (ull)o.applied_lsn);
        enum snapshot_status st = check_operation(d, sec, NULL, &o, 0, n > 0 ? &prev : NULL, n, 0);
        if (st == SNAPSHOT_OK)
            st = restore_failed(d, sm_restore_operation(sm, &o), sec, n, 0, o.operation_id);
        if (st != SNAPSHOT_OK)
            return st;
        prev = o;
        n++;
    }
    u64 oldest = n > 0 ? sm_operation_at(sm, 0)->applied_lsn : 0;
    if (n != in->operations || oldest != in->oldest_operation_lsn || sm->operation_sum != in->operations_sum) {
        const char *damage = src != NULL && src->damage != NULL ? src->damage(src->ctx) : NULL;
        return say(d->why, d->why_len, SNAPSHOT_OPERATIONS_MISSING,
                   "the operation log gives %u live records from lsn %llu, the snapshot counts %u from lsn %llu%s "
                   "(damage in the log: %s)",
                   n, (ull)oldest, in->operations, (ull)in->oldest_operation_lsn,
                   n == in->operations && oldest == in->oldest_operation_lsn ? " with another hash sum" : "",
                   damage != NULL && damage[0] ? damage : "none found");
    }
    return SNAPSHOT_OK;
}

static int array_next(void *ctx, struct sm_operation *out, char *why, size_t why_len)
{
    (void)why;
    (void)why_len;
    struct snapshot_ops_array *a = ctx;
    if (a->next == a->count)
        return 0;
    *out = a->ops[a->next++];
    return 1;
}

struct snapshot_ops snapshot_ops_from_array(struct snapshot_ops_array *a, const struct sm_operation *ops, u32 count)
{
    a->ops = ops;
    a->count = count;
    a->next = 0;
    return (struct snapshot_ops){ array_next, NULL, a };
}

/*
 * Finds the busy resource whose current reservation does not resolve to an active reservation
 * on it, for the message. Only called when the counts below disagree.
 */
static enum snapshot_status find_bad_resource_reference(const struct dec *d, const sm_t *sm)
{
    for (u32 i = 0; i < d->info.resources; i++) {
        u64 off = d->s.resources + (u64)i * SNAPSHOT_RESOURCE_SIZE;
        struct sm_resource_view r;
        get_resource(d->buf + off, &r);
        if (r.current_reservation_id == 0)
            continue;
        struct sm_reservation_view v;
        if (sm_get_reservation(sm, r.current_reservation_id, 0, &v) != SM_READ_FOUND)
            return record_fail(d, SNAPSHOT_BAD_REFERENCE, "resources", i, off,
                               "current reservation %s is not in the reservations section",
                               idtext(r.current_reservation_id).s);
        if (v.resource_id != r.resource_id || group_of_state(v.state) == GROUP_TERMINAL)
            return record_fail(d, SNAPSHOT_BAD_REFERENCE, "resources", i, off,
                               "current reservation %s is %s on resource %s", idtext(r.current_reservation_id).s,
                               sm_reservation_state_name(v.state), idtext(v.resource_id).s);
    }
    return say(d->why, d->why_len, SNAPSHOT_BAD_REFERENCE, "busy resources and active reservations do not pair up");
}

/*
 * Every active reservation was checked to be its resource's current one (check_active), so
 * distinct active reservations sit on distinct busy resources. If there are as many busy
 * resources as active reservations, every busy resource's current reservation is one of them:
 * active and on that resource. A count replaces a lookup per resource.
 */
static enum snapshot_status check_resource_references(const struct dec *d, const sm_t *sm, u32 busy, u32 active)
{
    return busy == active ? SNAPSHOT_OK : find_bad_resource_reference(d, sm);
}

static bool config_equal(const struct sm_config *a, const struct sm_config *b)
{
    return a->shard_id == b->shard_id && a->resource_capacity == b->resource_capacity &&
           a->reservation_capacity == b->reservation_capacity && a->operation_capacity == b->operation_capacity &&
           a->expiration_capacity == b->expiration_capacity && a->max_ttl_slots == b->max_ttl_slots &&
           a->dedupe_window_slots == b->dedupe_window_slots && a->history_window_slots == b->history_window_slots;
}

/* Everything before the records: header, config, length, section CRCs. */
static enum snapshot_status decode_frame(struct dec *d, u64 len, const struct sm_config *cfg)
{
    enum snapshot_status st = snapshot_decode_info(d->buf, len, &d->info, d->why, d->why_len);
    if (st != SNAPSHOT_OK)
        return st;
    st = snapshot_check_config(&d->info.cfg, cfg, d->why, d->why_len);
    if (st != SNAPSHOT_OK)
        return st;
    if (len < d->info.size)
        return say(d->why, d->why_len, SNAPSHOT_SHORT, "%llu bytes, the header says %llu", (ull)len,
                   (ull)d->info.size);
    if (len > d->info.size)
        return say(d->why, d->why_len, SNAPSHOT_TRAILING, "%llu bytes after the snapshot's %llu",
                   (ull)(len - d->info.size), (ull)d->info.size);
    d->s = sections_for(d->info.version, d->info.resources, d->info.reservations, d->info.operations);
    st = check_section_crc(d, "resources", d->s.resources, (u64)d->info.resources * SNAPSHOT_RESOURCE_SIZE);
    if (st == SNAPSHOT_OK)
        st = check_section_crc(d, "reservations", d->s.reservations,
                               (u64)d->info.reservations * SNAPSHOT_RESERVATION_SIZE);
    if (st == SNAPSHOT_OK && d->info.version == 1)
        st = check_section_crc(d, "operations", d->s.operations,
                               (u64)d->info.operations * SNAPSHOT_OPERATION_SIZE_V1);
    return st;
}

enum snapshot_status snapshot_check_frame(const u8 *buf, u64 len, const struct sm_config *cfg, struct snapshot_info *out,
                                          char *why, size_t why_len)
{
    struct dec d;
    memset(&d, 0, sizeof(d));
    d.buf = buf;
    d.why = why;
    d.why_len = why_len;
    enum snapshot_status st = decode_frame(&d, len, cfg);
    if (st == SNAPSHOT_OK && out != NULL)
        *out = d.info;
    return st;
}

enum snapshot_status snapshot_decode(const u8 *buf, u64 len, const struct sm_config *cfg,
                                     const struct snapshot_ops *ops, sm_t *sm, char *why, size_t why_len)
{
    /* The caller's contract, not input: a fresh state machine built with cfg. */
    ADB_ASSERT(config_equal(&sm->cfg, cfg));
    ADB_ASSERT(sm->last_applied_lsn == 0 && sm->resource_count == 0 && sm->reservation_count == 0 &&
               sm->operation_count == 0);
    struct dec d;
    memset(&d, 0, sizeof(d));
    d.buf = buf;
    d.why = why;
    d.why_len = why_len;
    if (why != NULL && why_len > 0)
        why[0] = '\0';

    enum snapshot_status st = decode_frame(&d, len, cfg);
    if (st != SNAPSHOT_OK)
        return st;
    sm_restore_begin(sm, d.info.last_applied_lsn, d.info.last_request_slot, d.info.retired_watermark_lsn,
                     d.info.retired_through_slot);
    u32 busy = 0, active = 0;
    st = decode_resources(&d, sm, &busy);
    if (st == SNAPSHOT_OK)
        st = decode_reservations(&d, sm, &active);
    if (st == SNAPSHOT_OK)
        st = d.info.version == 1 ? decode_operations_v1(&d, sm) : decode_operations_v2(&d, ops, sm);
    if (st != SNAPSHOT_OK)
        return st;
    sm_restore_end(sm);
    st = check_resource_references(&d, sm, busy, active);
    if (st != SNAPSHOT_OK)
        return st;

    char reason[200];
    if (!sm_check_invariants(sm, reason, sizeof(reason)))
        return say(why, why_len, SNAPSHOT_INVARIANT, "rebuilt state fails an invariant: %s", reason);
    return SNAPSHOT_OK;
}

/* ---- file names ------------------------------------------------------------------------ */

#define NAME_PREFIX "snapshot-"

bool snapshot_file_name(char *out, size_t cap, u64 lsn)
{
    return io_name_make(out, cap, NAME_PREFIX, lsn, ".snap");
}

static bool temp_file_name(char *out, size_t cap, u64 lsn)
{
    return io_name_make(out, cap, NAME_PREFIX, lsn, ".tmp");
}

bool snapshot_parse_temp_name(const char *name, u64 *lsn)
{
    return io_name_parse(name, NAME_PREFIX, ".tmp", lsn);
}

bool snapshot_parse_name(const char *name, u64 *lsn)
{
    return io_name_parse(name, NAME_PREFIX, ".snap", lsn);
}

/* ---- files ----------------------------------------------------------------------------- */

#define PATH_CAP 4096

__attribute__((format(printf, 4, 5))) static int io_fail(char *why, size_t why_len, int rc, const char *fmt, ...)
{
    if (why != NULL && why_len > 0) {
        char what[PATH_CAP + 64];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(what, sizeof(what), fmt, ap);
        va_end(ap);
        snprintf(why, why_len, "%s: %s", what, strerror(-rc));
    }
    return rc;
}

/* Writes buf to a new file at `path` and makes its contents durable. On failure the file may
 * exist (the caller removes it). */
static int write_durable(struct io *io, const char *path, const u8 *buf, u64 len, char *why, size_t why_len)
{
    int fd, rc = io->ops->open(io, path, IO_WRITE | IO_CREATE | IO_EXCL, &fd);
    if (rc != 0)
        return io_fail(why, why_len, rc, "create %s", path);
    /* In chunks, each sent to the disk as it is written and the one before waited for: a
     * snapshot of a gigabyte must not sit in the page cache and then stall the WAL's fsyncs
     * (the sequencer's commits) for seconds while it flushes at the end. */
    for (u64 off = 0; rc == 0 && off < len; off += IO_WRITEBACK_CHUNK) {
        u64 n = len - off < IO_WRITEBACK_CHUNK ? len - off : IO_WRITEBACK_CHUNK;
        rc = io_write_all(io, fd, buf + off, (size_t)n, off);
        if (rc == 0)
            io_writeback_step(io, fd, off, n);
    }
    if (rc != 0)
        io_fail(why, why_len, rc, "write %s", path);
    /* fsync, not datasync: the file is new, so its size must reach the disk too. */
    if (rc == 0 && (rc = io->ops->fsync(io, fd)) != 0)
        io_fail(why, why_len, rc, "fsync %s", path);
    int crc = io->ops->close(io, fd);
    if (rc == 0 && crc != 0)
        rc = io_fail(why, why_len, crc, "close %s", path);
    return rc;
}

int snapshot_write(struct io *io, const char *dir, const sm_t *sm, char *why, size_t why_len)
{
    return snapshot_write_then(io, dir, sm, NULL, NULL, why, why_len);
}

int snapshot_write_then(struct io *io, const char *dir, const sm_t *sm, void (*encoded)(void *ctx), void *ctx,
                        char *why, size_t why_len)
{
    char name[64], tmp[PATH_CAP], final[PATH_CAP];
    u64 lsn = sm->last_applied_lsn;
    if (!temp_file_name(name, sizeof(name), lsn) || !io_path(tmp, sizeof(tmp), dir, name) ||
        !snapshot_file_name(name, sizeof(name), lsn) || !io_path(final, sizeof(final), dir, name))
        return io_fail(why, why_len, -ENAMETOOLONG, "snapshot path in %s", dir);
    u64 size = snapshot_encoded_size(sm);
    u8 *buf = size <= SIZE_MAX ? malloc((size_t)size) : NULL;
    if (buf == NULL)
        return io_fail(why, why_len, -ENOMEM, "snapshot buffer of %llu bytes", (ull)size);
    snapshot_encode(sm, buf, size);
    if (encoded != NULL)
        encoded(ctx); /* sm is not read after this */

    /* A leftover from an interrupted write of the same LSN would make the exclusive create fail. */
    int rc = io->ops->unlink(io, tmp);
    if (rc != 0 && rc != -ENOENT) {
        free(buf);
        return io_fail(why, why_len, rc, "remove stale %s", tmp);
    }
    rc = write_durable(io, tmp, buf, size, why, why_len);
    free(buf);
    if (rc == 0 && (rc = io->ops->rename(io, tmp, final)) != 0)
        io_fail(why, why_len, rc, "rename %s to %s", tmp, final);
    if (rc != 0) {
        (void)io->ops->unlink(io, tmp);
        return rc;
    }
    rc = io->ops->sync_dir(io, dir);
    if (rc != 0) {
        /* The name may or may not be durable: take it back rather than leave a doubtful file. */
        io_fail(why, why_len, rc, "sync directory %s", dir);
        (void)io->ops->unlink(io, final);
        return rc;
    }
    return 0;
}

/* ---- images: the snapshot and its operation records (state transfer) ----------------------- */

u64 snapshot_image_size(const sm_t *sm)
{
    return snapshot_encoded_size(sm) + (u64)sm->operation_count * SNAPSHOT_OPERATION_SIZE + SNAPSHOT_CRC_SIZE;
}

u64 snapshot_image_encode(const sm_t *sm, u8 *buf, u64 cap)
{
    ADB_ASSERT(cap >= snapshot_image_size(sm));
    u64 at = snapshot_encode(sm, buf, cap);
    u8 *records = buf + at;
    for (u32 i = 0; i < sm->operation_count; i++, at += SNAPSHOT_OPERATION_SIZE)
        oplog_put_record(buf + at, sm_operation_at(sm, i));
    le_put_u32(buf + at, crc32c(0, records, (size_t)(buf + at - records)));
    return at + SNAPSHOT_CRC_SIZE;
}

/* Records from an image's bytes (already length- and CRC-checked). */
struct image_ops {
    const u8 *at;
    u32 left;
};

static int image_next(void *ctx, struct sm_operation *out, char *why, size_t why_len)
{
    (void)why;
    (void)why_len;
    struct image_ops *o = ctx;
    if (o->left == 0)
        return 0;
    oplog_get_record(o->at, out);
    o->at += SNAPSHOT_OPERATION_SIZE;
    o->left--;
    return 1;
}

enum snapshot_status snapshot_image_decode(const u8 *buf, u64 len, const struct sm_config *cfg, sm_t *sm,
                                           char *why, size_t why_len)
{
    struct snapshot_info info;
    enum snapshot_status st = snapshot_decode_info(buf, len, &info, why, why_len);
    if (st != SNAPSHOT_OK)
        return st;
    if (info.version != SNAPSHOT_VERSION) {
        return say(why, why_len, SNAPSHOT_BAD_VERSION, "image: a snapshot of version %u (images are version %u)",
                   info.version, SNAPSHOT_VERSION);
    }
    u64 records = (u64)info.operations * SNAPSHOT_OPERATION_SIZE;
    if (info.size > len || len - info.size < records + SNAPSHOT_CRC_SIZE) {
        return say(why, why_len, SNAPSHOT_SHORT, "image: %llu bytes, short of the snapshot's %llu and %u operation records",
                   (ull)len, (ull)info.size, info.operations);
    }
    if (len - info.size > records + SNAPSHOT_CRC_SIZE) {
        return say(why, why_len, SNAPSHOT_TRAILING, "image: %llu bytes after its operation records",
                   (ull)(len - info.size - records - SNAPSHOT_CRC_SIZE));
    }
    const u8 *at = buf + info.size;
    if (crc32c(0, at, (size_t)records) != le_get_u32(at + records)) {
        return say(why, why_len, SNAPSHOT_BAD_CHECKSUM, "image: operation records (byte %llu): CRC32C mismatch",
                   (ull)(info.size + records));
    }
    struct image_ops o = { at, info.operations };
    struct snapshot_ops ops = { image_next, NULL, &o };
    return snapshot_decode(buf, info.size, cfg, &ops, sm, why, why_len);
}
