/*
 * fuzz/fuzz_scan.c — fuzz target: reading a WAL segment back, the recovery decision table
 * (wal/scan.h: wal_segment_header_decode, wal_scan_segment).
 *
 * The first byte of the input is a flag byte: bit 0 says whether the segment is the last one
 * (the only place a torn tail is allowed), bit 1 picks the mode.
 *
 * Raw mode (bit 1 clear): the rest of the input is the segment file. Its header is decoded
 * (and, when bit 2 is set, first given a correct header CRC, so the fuzzer gets past it); the
 * chain starts where the header says when it decodes, else at LSN 1, and the sync window is the
 * header's. With bit 3 set the frame callback stops the scan at its call number 1 + (flags >> 4).
 * The segment is also scanned with frames up to the (1 + (flags >> 4))th known synced, and with
 * a stop LSN there.
 *
 * Build mode (bit 1 set): the input describes a valid segment that is built and then damaged:
 *
 *   byte 0    flags: bit 2 reseal every frame-shaped byte run after the pokes (recompute its
 *             crc, so a poked field reaches the rule that checks it rather than the checksum),
 *             bit 3 append a torn frame (a prefix of one more frame),
 *             bits 4-7 if not 0: also scan with a stop LSN that many frames after the start,
 *             and with frames up to there known synced
 *   The segment is scanned without a sync window (as written before windows) and with one
 *   that covers all of it.
 *   byte 1    low nibble: number of complete frames (0..15); high nibble: where the chain
 *             starts (first LSN, previous slot and crc; 15 = LSNs ending at UINT64_MAX)
 *   byte 2    how many bytes of the torn frame were written (1..size-1)
 *   byte 3    zero bytes after the frames, in units of 16 (the preallocated tail)
 *   byte 4    bytes cut from the end of the file
 *   then      3 bytes per frame (complete ones, then the torn one) choosing its command;
 *             missing bytes read as zero
 *   then      pokes, 3 bytes each: u16 offset (modulo the file size), u8 value
 *
 * Properties, for every scan:
 *   - it never crashes or reads outside the segment, and ends with a known end and a reason;
 *   - frames == callback calls (minus the one that stopped it); the frames delivered have
 *     consecutive LSNs from the cursor's, non-decreasing slots, an unbroken prev_crc chain,
 *     lie back to back from offset 64, carry the command their payload decodes to, and the
 *     cursor ends just past the last of them;
 *   - valid_end (just past the last frame) == bad_offset <= len;
 *   - CLEAN: every byte from valid_end is zero;
 *   - TORN: the frame at valid_end does not decode; torn_end - bad_offset <= the window
 *     (WAL_FRAME_MAX for a segment without one); the byte before torn_end is non-zero and all
 *     bytes from it are zero; and the rule of wal/scan.h note (*), written out again here,
 *     says torn (last segment, LSN above synced_lsn, no counting valid frame after it);
 *   - CORRUPT: the decision table says so — the frame at valid_end decodes but does not
 *     continue the chain or its payload is not a command; or it does not decode and that rule
 *     says not torn;
 *   - LIMIT: exactly when the next LSN is past the stop LSN, and no frame delivered is past it;
 *     a scan with a stop LSN gives what the scan without one gives until it reaches that LSN,
 *     and once it has, flipping every byte after the last frame it needed changes nothing;
 *   - the header decoder accepts only headers that re-encode to the same 64 bytes.
 * In build mode also: when no poke or cut changed a byte of the complete frames, all of them
 * are recovered with their commands; when nothing changed at all, the end is exactly the
 * expected one (clean, or torn/corrupt at the torn frame unless its missing bytes are zeros).
 */
#include "config.h"

#include "common/crc32c.h"
#include "common/le.h"
#include "fuzz/fuzz.h"
#include "wal/command.h"
#include "wal/frame.h"
#include "wal/scan.h"

#include <stdlib.h>
#include <string.h>

#define FLAG_LAST 0x01
#define FLAG_BUILD 0x02
#define FLAG_RESEAL 0x04 /* raw: header CRC; build: frame CRCs */
#define FLAG_STOP 0x08   /* raw: stop the scan from the callback */
#define FLAG_TORN 0x08   /* build: append a torn frame */

#define BUILD_PREFIX 5
#define MAX_FRAMES 16 /* complete frames (<= 15) plus the torn one */

/* Frame header offsets (wal/frame.h). */
#define F_LEN 32
#define F_CRC 44
#define SEG_CRC 60

/* ---- the scan and its checks ------------------------------------------------------------ */

struct seen {
    u64 offset;
    struct wal_frame f;
    struct sm_command cmd;
};

struct scan_log {
    const u8 *buf;
    u64 len;
    u32 stop_at; /* 0 = never stop; else stop at this call number */
    u32 calls;
    struct seen frames[64]; /* the first ones, for the build-mode comparison */
};

static bool cmd_equal(const struct sm_command *a, const struct sm_command *b)
{
    return a->kind == b->kind && a->operation_id == b->operation_id && a->client_id == b->client_id &&
           a->resource_id == b->resource_id && a->reservation_id == b->reservation_id &&
           a->holder_id == b->holder_id && a->ttl_slots == b->ttl_slots && a->deadline_slot == b->deadline_slot;
}

static int on_frame(void *ctx, const struct wal_frame *f, const struct sm_command *cmd, u64 offset)
{
    struct scan_log *log = ctx;
    log->calls++;
    FUZZ_CHECK(offset >= WAL_SEGMENT_HEADER_SIZE && offset < log->len);
    FUZZ_CHECK(f->payload_len <= WAL_PAYLOAD_MAX);
    FUZZ_CHECK(offset + wal_frame_size(f->payload_len) <= log->len);
    FUZZ_CHECK(f->payload_len == 0 || f->payload == log->buf + offset + WAL_FRAME_HEADER_SIZE);
    /* What the callback sees is what decoding the bytes there gives. */
    struct wal_frame g;
    u32 glen;
    FUZZ_CHECK(wal_frame_decode(log->buf + offset, log->len - offset, &g, &glen) == WAL_FRAME_OK);
    FUZZ_CHECK(g.lsn == f->lsn && g.request_slot == f->request_slot && g.crc == f->crc &&
               g.prev_crc == f->prev_crc && g.payload_len == f->payload_len &&
               g.record_type == f->record_type && glen == wal_frame_size(f->payload_len));
    struct sm_command c;
    FUZZ_CHECK(wal_cmd_decode(f->record_type, f->payload, f->payload_len, &c) == WAL_CMD_OK);
    FUZZ_CHECK(cmd_equal(&c, cmd));
    if (log->calls <= ADB_ARRAY_LEN(log->frames)) {
        struct seen *s = &log->frames[log->calls - 1];
        s->offset = offset;
        s->f = *f;
        s->cmd = *cmd;
    }
    return log->stop_at != 0 && log->calls == log->stop_at ? 7 : 0;
}

/* Offset just past the last non-zero byte of buf[from, len), or `from` (a plain loop: the
 * reference for the scanner's word-at-a-time version). */
static u64 nonzero_end_ref(const u8 *buf, u64 from, u64 len)
{
    u64 end = len;
    while (end > from && buf[end - 1] == 0)
        end--;
    return end;
}

static bool all_zero_ref(const u8 *buf, u64 from, u64 len)
{
    return nonzero_end_ref(buf, from, len) == from;
}

/* A valid frame with an LSN <= max_lsn starts at some offset in (from, to)? */
static bool valid_frame_in(const u8 *buf, u64 len, u64 from, u64 to, u64 max_lsn)
{
    for (u64 p = from + 1; p < to; p++) {
        struct wal_frame f;
        u32 flen;
        if (wal_frame_decode(buf + p, len - p, &f, &flen) == WAL_FRAME_OK && f.lsn <= max_lsn)
            return true;
    }
    return false;
}

static u64 window_of(const struct wal_scan_options *o)
{
    return o->sync_window != 0 ? o->sync_window : WAL_FRAME_MAX;
}

/* wal/scan.h, note (*), written out again: is an invalid frame at `at`, where LSN `next` was
 * expected, a torn tail? */
static bool torn_by_rule(const u8 *buf, u64 len, u64 at, u64 next, const struct wal_scan_options *o)
{
    if (!o->last || next <= o->synced_lsn)
        return false;
    u64 nz = nonzero_end_ref(buf, at, len);
    if (nz - at > window_of(o))
        return false;
    return !valid_frame_in(buf, len, at, nz, o->sync_window == 0 ? UINT64_MAX : o->synced_lsn);
}

/* Scans buf with the chain starting at *cur and checks every property of the result. Returns
 * the result in *res and the callback log in *log. */
static void scan_and_check(const u8 *buf, u64 len, const struct wal_scan_options *o, const struct wal_cursor *start,
                           u32 stop_at, struct wal_scan_result *res, struct scan_log *log)
{
    memset(log, 0, sizeof(*log));
    log->buf = buf;
    log->len = len;
    log->stop_at = stop_at;
    struct wal_cursor cur = *start;
    memset(res, 0xA5, sizeof(*res));
    enum wal_scan_end end = wal_scan_segment(buf, len, o, &cur, on_frame, log, res);
    bool last = o->last;

    FUZZ_CHECK(end == res->end);
    FUZZ_CHECK(end == WAL_SCAN_CLEAN || end == WAL_SCAN_TORN || end == WAL_SCAN_CORRUPT || end == WAL_SCAN_STOPPED ||
               end == WAL_SCAN_LIMIT);
    FUZZ_CHECK((end == WAL_SCAN_LIMIT) == (o->stop_after_lsn != 0 && cur.next_lsn - 1 >= o->stop_after_lsn));
    FUZZ_CHECK(strcmp(wal_scan_end_name(end), "unknown") != 0);
    FUZZ_CHECK(memchr(res->reason, '\0', sizeof(res->reason)) != NULL && res->reason[0] != '\0');

    /* frames counted == callback calls (the stopping call's frame is not counted). */
    FUZZ_CHECK(res->frames == log->calls - (end == WAL_SCAN_STOPPED ? 1 : 0));
    FUZZ_CHECK((end == WAL_SCAN_STOPPED) == (stop_at != 0 && log->calls == stop_at));

    /* The frames: back to back from the header, consecutive LSNs, chained. */
    u64 off = WAL_SEGMENT_HEADER_SIZE;
    u64 n = log->calls < ADB_ARRAY_LEN(log->frames) ? log->calls : ADB_ARRAY_LEN(log->frames);
    struct wal_cursor want = *start;
    for (u64 i = 0; i < n; i++) {
        const struct seen *s = &log->frames[i];
        FUZZ_CHECK(s->offset == off);
        FUZZ_CHECK(s->f.lsn == want.next_lsn);
        FUZZ_CHECK(s->f.request_slot >= want.last_slot);
        FUZZ_CHECK(s->f.prev_crc == want.prev_crc);
        FUZZ_CHECK(o->stop_after_lsn == 0 || s->f.lsn <= o->stop_after_lsn);
        if (i == res->frames) /* the frame the callback stopped at */
            break;
        want.next_lsn = s->f.lsn + 1;
        want.last_slot = s->f.request_slot;
        want.prev_crc = s->f.crc;
        off += wal_frame_size(s->f.payload_len);
    }
    if (res->frames <= ADB_ARRAY_LEN(log->frames)) {
        FUZZ_CHECK(res->valid_end == off);
        FUZZ_CHECK(cur.next_lsn == want.next_lsn && cur.last_slot == want.last_slot &&
                   cur.prev_crc == want.prev_crc);
    }
    FUZZ_CHECK(res->valid_end >= WAL_SEGMENT_HEADER_SIZE && res->valid_end <= len);
    FUZZ_CHECK(res->bad_offset == res->valid_end);
    u64 at = res->valid_end;

    struct wal_frame f;
    u32 flen;
    enum wal_frame_status fs = at < len ? wal_frame_decode(buf + at, len - at, &f, &flen) : WAL_FRAME_SHORT;
    switch (end) {
    case WAL_SCAN_CLEAN:
        FUZZ_CHECK(all_zero_ref(buf, at, len));
        break;
    case WAL_SCAN_STOPPED:
        FUZZ_CHECK(fs == WAL_FRAME_OK);
        break;
    case WAL_SCAN_LIMIT: /* nothing at `at` is looked at: any bytes may be there */
        break;
    case WAL_SCAN_TORN:
        FUZZ_CHECK(last);
        FUZZ_CHECK(fs != WAL_FRAME_OK);
        FUZZ_CHECK(res->torn_end > at && res->torn_end <= len);
        FUZZ_CHECK(res->torn_end - at <= window_of(o));
        FUZZ_CHECK(res->torn_end == nonzero_end_ref(buf, at, len));
        FUZZ_CHECK(torn_by_rule(buf, len, at, cur.next_lsn, o));
        break;
    case WAL_SCAN_CORRUPT:
        FUZZ_CHECK(!all_zero_ref(buf, at, len));
        if (fs == WAL_FRAME_OK) {
            /* A valid frame that does not continue the sequence, or carries no command. */
            struct sm_command c;
            FUZZ_CHECK(f.lsn != cur.next_lsn || f.request_slot < cur.last_slot || f.prev_crc != cur.prev_crc ||
                       wal_cmd_decode(f.record_type, f.payload, f.payload_len, &c) != WAL_CMD_OK);
        } else {
            /* Not a torn write: a sealed segment, damage at a known-synced LSN, data beyond the
             * window, or a valid frame after it that counts (any, without a window). */
            FUZZ_CHECK(!torn_by_rule(buf, len, at, cur.next_lsn, o));
        }
        break;
    case WAL_SCAN_LOST: /* only with from_lsn (covered damage), which this target leaves 0 */
        FUZZ_CHECK(false);
        break;
    }
    FUZZ_CHECK(res->damaged == 0);
}

/*
 * The scan with a stop LSN k frames after the chain's start (k >= 1) agrees with the scan without
 * one until it reaches that LSN, and after that frame nothing can change its result: the bytes
 * that follow are flipped and the result must stay the same.
 */
static void check_limit(const u8 *buf, u64 len, const struct wal_scan_options *base_opt,
                        const struct wal_cursor *start, u64 k)
{
    if (k == 0 || start->next_lsn - 1 > UINT64_MAX - k)
        return;
    struct scan_log *log = malloc(sizeof(*log));
    FUZZ_CHECK(log != NULL);
    struct wal_scan_options o = *base_opt;
    o.stop_after_lsn = 0;
    struct wal_scan_result base, lim;
    scan_and_check(buf, len, &o, start, 0, &base, log);
    o.stop_after_lsn = start->next_lsn - 1 + k;
    scan_and_check(buf, len, &o, start, 0, &lim, log);
    if (base.frames >= k) {
        FUZZ_CHECK(lim.end == WAL_SCAN_LIMIT && lim.frames == k);
        u8 *other = malloc(len);
        FUZZ_CHECK(other != NULL);
        memcpy(other, buf, len);
        for (u64 i = lim.valid_end; i < len; i++)
            other[i] ^= 0xFF;
        struct wal_scan_result again;
        scan_and_check(other, len, &o, start, 0, &again, log);
        FUZZ_CHECK(again.end == WAL_SCAN_LIMIT && again.frames == k && again.valid_end == lim.valid_end);
        free(other);
    } else {
        FUZZ_CHECK(lim.end == base.end && lim.frames == base.frames && lim.bad_offset == base.bad_offset);
    }
    free(log);
}

/* The header decoder: an accepted header re-encodes to the same bytes; failures leave *out
 * alone. Returns the status. */
static enum wal_segment_status check_header(const u8 *buf, size_t len, struct wal_segment_header *out)
{
    struct wal_segment_header h;
    memset(&h, 0xA5, sizeof(h));
    enum wal_segment_status s = wal_segment_header_decode(buf, len, &h);
    FUZZ_CHECK(strcmp(wal_segment_status_name(s), "unknown") != 0);
    if (s != WAL_SEGMENT_OK) {
        FUZZ_CHECK(h.first_lsn == 0xA5A5A5A5A5A5A5A5ull && h.capacity == 0xA5A5A5A5A5A5A5A5ull);
        return s;
    }
    FUZZ_CHECK(len >= WAL_SEGMENT_HEADER_SIZE && h.first_lsn != 0);
    u8 again[WAL_SEGMENT_HEADER_SIZE];
    wal_segment_header_encode(again, &h);
    FUZZ_CHECK(memcmp(again, buf, WAL_SEGMENT_HEADER_SIZE) == 0);
    *out = h;
    return s;
}

/* ---- raw mode ---------------------------------------------------------------------------- */

static void run_raw(u8 flags, const uint8_t *data, size_t size)
{
    u8 *buf = calloc(size ? size : 1, 1); /* exactly sized, so ASan sees any overread */
    FUZZ_CHECK(buf != NULL);
    if (size)
        memcpy(buf, data, size);
    if ((flags & FLAG_RESEAL) && size >= WAL_SEGMENT_HEADER_SIZE)
        le_put_u32(buf + SEG_CRC, crc32c(0, buf, SEG_CRC));

    struct wal_segment_header h;
    struct wal_cursor start = { .next_lsn = 1, .last_slot = 0, .prev_crc = 0 };
    struct wal_scan_options o = { .last = flags & FLAG_LAST };
    if (check_header(buf, size, &h) == WAL_SEGMENT_OK) {
        start = (struct wal_cursor){ .next_lsn = h.first_lsn, .last_slot = h.prev_slot, .prev_crc = h.prev_crc };
        o.sync_window = h.sync_window;
    }
    if (size >= WAL_SEGMENT_HEADER_SIZE) {
        struct wal_scan_result res;
        struct scan_log *log = malloc(sizeof(*log));
        FUZZ_CHECK(log != NULL);
        u64 k = 1u + (flags >> 4);
        u32 stop_at = (flags & FLAG_STOP) ? (u32)k : 0;
        scan_and_check(buf, size, &o, &start, stop_at, &res, log);
        if (start.next_lsn - 1 <= UINT64_MAX - k) { /* frames up to the kth known synced */
            struct wal_scan_options hinted = o;
            hinted.synced_lsn = start.next_lsn - 1 + k;
            scan_and_check(buf, size, &hinted, &start, 0, &res, log);
        }
        free(log);
        check_limit(buf, size, &o, &start, k);
    }
    free(buf);
}

/* ---- build mode -------------------------------------------------------------------------- */

/* Byte i of the input, or 0 past its end. */
static u8 at_or_zero(const uint8_t *data, size_t size, size_t i)
{
    return i < size ? data[i] : 0;
}

/* A valid command from three input bytes, for a frame at `lsn`. */
static struct sm_command command_of(u8 k, u8 a, u8 b, u64 lsn)
{
    struct sm_command c;
    memset(&c, 0, sizeof(c));
    c.kind = (u8)(1 + (k & 7) % SM_CMD_KIND_MAX);
    if (c.kind == SM_CMD_EXPIRE) {
        c.reservation_id = (k & 0x80) ? ~(u128)0 : U128_MAKE(0, lsn - 1 - b % 4);
        c.deadline_slot = (k & 0x40) ? UINT64_MAX : a;
        return c;
    }
    c.operation_id = (k & 0x80) ? ~(u128)0 - a : U128_MAKE(0, 1 + a);
    c.client_id = (k & 0x40) ? ~(u128)0 : b & 3;
    switch (c.kind) {
    case SM_CMD_CREATE_RESOURCE:
        c.resource_id = b % 8;
        break;
    case SM_CMD_RESERVE:
        c.resource_id = b % 8;
        c.holder_id = 1 + a % 3;
        c.ttl_slots = (k & 0x20) ? UINT64_MAX : b >> 4;
        break;
    default:
        c.reservation_id = U128_MAKE(0, lsn - 1 - b % 4);
        c.holder_id = 1 + a % 3;
        break;
    }
    return c;
}

struct built {
    u8 *buf;
    u64 len;          /* after the cut */
    u64 content_end;  /* end of frames and torn bytes before padding and cut */
    u64 frames_end;   /* end of the complete frames */
    u32 n;            /* complete frames */
    struct wal_cursor start;
    struct sm_command cmds[MAX_FRAMES];
    u32 sizes[MAX_FRAMES];
    bool torn;
    u32 torn_written; /* bytes of the torn frame written */
    u8 torn_frame[WAL_FRAME_MAX]; /* all of it */
};

/* Builds the valid segment described by the input prefix; returns where the pokes start. */
static size_t build_segment(const uint8_t *data, size_t size, struct built *b)
{
    u8 flags = at_or_zero(data, size, 0), shape = at_or_zero(data, size, 1);
    memset(b, 0, sizeof(*b));
    b->n = shape & 15;
    u32 chain = shape >> 4;
    b->torn = flags & FLAG_TORN;
    u32 total = b->n + (b->torn ? 1 : 0);
    b->start.next_lsn = chain == 15 ? UINT64_MAX - (total ? total - 1 : 0) : 1 + (u64)chain * 1000;
    b->start.last_slot = chain == 15 ? UINT64_MAX - 20 : (u64)chain * 10;
    b->start.prev_crc = chain == 0 ? 0 : 0x9E3779B9u * chain;

    size_t script = BUILD_PREFIX;
    u64 pad = (u64)at_or_zero(data, size, 3) * 16, cut = at_or_zero(data, size, 4);
    u64 cap = WAL_SEGMENT_HEADER_SIZE + (u64)total * WAL_FRAME_MAX + pad;
    b->buf = calloc(1, cap);
    FUZZ_CHECK(b->buf != NULL);
    struct wal_segment_header h = { .first_lsn = b->start.next_lsn, .prev_slot = b->start.last_slot,
                                    .prev_crc = b->start.prev_crc, .capacity = cap };
    wal_segment_header_encode(b->buf, &h);

    u64 off = WAL_SEGMENT_HEADER_SIZE, slot = b->start.last_slot, lsn = b->start.next_lsn;
    u32 prev_crc = b->start.prev_crc;
    static u8 frame[WAL_FRAME_MAX];
    for (u32 i = 0; i < total; i++, lsn++) {
        u8 k = at_or_zero(data, size, script + 3 * i), a = at_or_zero(data, size, script + 3 * i + 1),
           c = at_or_zero(data, size, script + 3 * i + 2);
        b->cmds[i] = command_of(k, a, c, lsn);
        u8 payload[WAL_CMD_SIZE_MAX];
        u32 plen = wal_cmd_encode(payload, sizeof(payload), &b->cmds[i]);
        u64 step = (k >> 3) & 3;
        slot = slot > UINT64_MAX - step ? UINT64_MAX : slot + step;
        struct wal_frame f = { .lsn = lsn, .request_slot = slot, .view = a & 1, .payload_len = plen,
                               .prev_crc = prev_crc, .record_type = wal_cmd_record_type(&b->cmds[i]),
                               .payload = payload };
        u32 flen = wal_frame_encode(frame, sizeof(frame), &f);
        b->sizes[i] = flen;
        prev_crc = f.crc;
        if (i < b->n) {
            memcpy(b->buf + off, frame, flen);
            off += flen;
            b->frames_end = off;
        } else { /* the torn one: only a prefix reached the disk */
            b->torn_written = 1 + at_or_zero(data, size, 2) % (flen - 1);
            memcpy(b->torn_frame, frame, flen);
            memcpy(b->buf + off, frame, b->torn_written);
            off += b->torn_written;
        }
    }
    if (b->n == 0)
        b->frames_end = WAL_SEGMENT_HEADER_SIZE;
    b->content_end = off;
    u64 len = off + pad;
    b->len = len - cut >= WAL_SEGMENT_HEADER_SIZE && cut < len ? len - cut : WAL_SEGMENT_HEADER_SIZE;
    return script + 3 * (size_t)total;
}

/* Recomputes the crc of every frame-shaped run of bytes (magic, a length that fits). */
static void reseal_frames(u8 *buf, u64 len)
{
    u64 p = WAL_SEGMENT_HEADER_SIZE;
    while (p + WAL_FRAME_HEADER_SIZE <= len) {
        u32 plen = le_get_u32(buf + p + F_LEN);
        if (le_get_u32(buf + p) != WAL_FRAME_MAGIC || plen > WAL_PAYLOAD_MAX ||
            plen > len - p - WAL_FRAME_HEADER_SIZE) {
            p++;
            continue;
        }
        u32 crc = crc32c(crc32c(0, buf + p, F_CRC), buf + p + WAL_FRAME_HEADER_SIZE, plen);
        le_put_u32(buf + p + F_CRC, crc);
        p += WAL_FRAME_HEADER_SIZE + plen;
    }
}

static void run_build(u8 flags, const uint8_t *data, size_t size)
{
    struct built b;
    size_t pokes = build_segment(data, size, &b);
    u8 *buf = malloc(b.len); /* exactly sized copy */
    FUZZ_CHECK(buf != NULL);
    memcpy(buf, b.buf, b.len);

    for (size_t i = pokes; i + 3 <= size; i += 3)
        buf[le_get_u16(data + i) % b.len] = data[i + 2];
    if (flags & FLAG_RESEAL)
        reseal_frames(buf, b.len);
    /* What the damage reached after the header (which the scan does not read): the complete
     * frames, or anything written. */
    const u64 hs = WAL_SEGMENT_HEADER_SIZE;
    u64 frames_kept = b.len < b.frames_end ? b.len : b.frames_end;
    bool frames_touched = b.len < b.frames_end || memcmp(buf + hs, b.buf + hs, frames_kept - hs) != 0;
    bool changed = b.len < b.content_end || memcmp(buf + hs, b.buf + hs, b.len - hs) != 0;

    struct wal_segment_header h;
    check_header(buf, b.len, &h);
    bool last = flags & FLAG_LAST;
    struct wal_scan_options o = { .last = last };
    struct wal_scan_result res;
    struct scan_log *log = malloc(sizeof(*log));
    FUZZ_CHECK(log != NULL);
    scan_and_check(buf, b.len, &o, &b.start, 0, &res, log);
    check_limit(buf, b.len, &o, &b.start, flags >> 4);

    if (!frames_touched) {
        /* Damage after the frames never costs one of them. */
        FUZZ_CHECK(res.frames >= b.n);
        for (u32 i = 0; i < b.n; i++) {
            FUZZ_CHECK(log->frames[i].f.lsn == b.start.next_lsn + i);
            FUZZ_CHECK(cmd_equal(&log->frames[i].cmd, &b.cmds[i]));
        }
    }
    /* The same bytes in a segment whose sync window covers all of them (pokes into the frames
     * are then out-of-order pages of an unsynced write), without a hint and with frames up to
     * the (flags >> 4)th known synced; the checks in scan_and_check hold the rule exactly. */
    struct wal_scan_options wide = { .last = last, .sync_window = b.len > WAL_FRAME_MAX ? (u32)b.len : WAL_FRAME_MAX };
    struct wal_scan_result res_wide;
    scan_and_check(buf, b.len, &wide, &b.start, 0, &res_wide, log);
    if (!frames_touched)
        FUZZ_CHECK(res_wide.frames >= b.n);
    u64 k = flags >> 4;
    if (k != 0 && b.start.next_lsn - 1 <= UINT64_MAX - k) {
        wide.synced_lsn = b.start.next_lsn - 1 + k;
        scan_and_check(buf, b.len, &wide, &b.start, 0, &res_wide, log);
        if (res_wide.end == WAL_SCAN_TORN) /* a tear never cuts a frame known synced */
            FUZZ_CHECK(res_wide.frames >= k);
    }
    if (!changed) {
        /* The segment as written: clean, or a torn last frame (which is just a frame if the bytes
         * that did not reach the disk are zeros that are there anyway). */
        u32 tsize = b.torn ? b.sizes[b.n] : 0;
        bool torn_complete = b.torn && b.frames_end + tsize <= b.len &&
                             le_all_zero(b.torn_frame + b.torn_written, tsize - b.torn_written);
        if (!b.torn || torn_complete) {
            FUZZ_CHECK(res.end == WAL_SCAN_CLEAN);
            FUZZ_CHECK(res.frames == b.n + (torn_complete ? 1 : 0));
        } else {
            FUZZ_CHECK(res.end == (last ? WAL_SCAN_TORN : WAL_SCAN_CORRUPT));
            FUZZ_CHECK(res.frames == b.n && res.bad_offset == b.frames_end);
        }
    }
    free(log);
    free(buf);
    free(b.buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    u8 flags = data[0];
    if (flags & FLAG_BUILD)
        run_build(flags, data, size);
    else
        run_raw(flags, data + 1, size - 1);
    return 0;
}
