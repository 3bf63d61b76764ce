/*
 * wal/scan.c — segment headers and the frame-by-frame recovery decision table (see scan.h).
 *
 * Every exit from wal_scan_segment fills `reason` with the offset and the rule that decided,
 * so an operator reading "corrupt" knows exactly which byte sequence to look at.
 */
#include "config.h"

#include "wal/scan.h"

#include "common/assert.h"
#include "common/crc32c.h"
#include "common/le.h"
#include "wal/command.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---- segment header ------------------------------------------------------------------- */

#define SEG_OFF_MAGIC 0
#define SEG_OFF_VERSION 4
#define SEG_OFF_RESERVED1 6
#define SEG_OFF_FIRST_LSN 8
#define SEG_OFF_PREV_SLOT 16
#define SEG_OFF_PREV_CRC 24
#define SEG_OFF_FLAGS 28
#define SEG_OFF_CAPACITY 32
#define SEG_OFF_SYNC_WINDOW 40
#define SEG_OFF_RESERVED3 44
#define SEG_OFF_CRC 60
ADB_STATIC_ASSERT(SEG_OFF_CRC + 4 == WAL_SEGMENT_HEADER_SIZE, "crc ends the segment header");

const char *wal_segment_status_name(enum wal_segment_status s)
{
    switch (s) {
    case WAL_SEGMENT_OK: return "ok";
    case WAL_SEGMENT_SHORT: return "segment header incomplete";
    case WAL_SEGMENT_BAD_MAGIC: return "bad segment magic";
    case WAL_SEGMENT_BAD_VERSION: return "unsupported segment version";
    case WAL_SEGMENT_BAD_RESERVED: return "segment header reserved bytes not zero";
    case WAL_SEGMENT_BAD_LSN: return "segment first_lsn 0";
    case WAL_SEGMENT_BAD_CHECKSUM: return "segment header checksum mismatch";
    case WAL_SEGMENT_BAD_WINDOW: return "segment sync window smaller than a frame";
    case WAL_SEGMENT_BAD_FLAGS: return "unknown segment header flag bits";
    }
    return "unknown";
}

void wal_segment_header_encode(u8 out[WAL_SEGMENT_HEADER_SIZE], const struct wal_segment_header *h)
{
    ADB_ASSERT(h->first_lsn != 0);
    ADB_ASSERT(h->sync_window == 0 || h->sync_window >= WAL_FRAME_MAX);
    ADB_ASSERT((h->flags & ~WAL_SEGMENT_FLAGS_KNOWN) == 0);
    memset(out, 0, WAL_SEGMENT_HEADER_SIZE);
    le_put_u32(out + SEG_OFF_MAGIC, WAL_SEGMENT_MAGIC);
    le_put_u16(out + SEG_OFF_VERSION, WAL_SEGMENT_VERSION);
    le_put_u64(out + SEG_OFF_FIRST_LSN, h->first_lsn);
    le_put_u64(out + SEG_OFF_PREV_SLOT, h->prev_slot);
    le_put_u32(out + SEG_OFF_PREV_CRC, h->prev_crc);
    le_put_u32(out + SEG_OFF_FLAGS, h->flags);
    le_put_u64(out + SEG_OFF_CAPACITY, h->capacity);
    le_put_u32(out + SEG_OFF_SYNC_WINDOW, h->sync_window);
    le_put_u32(out + SEG_OFF_CRC, crc32c(0, out, SEG_OFF_CRC));
}

enum wal_segment_status wal_segment_header_decode(const u8 *buf, size_t len,
                                                  struct wal_segment_header *out)
{
    if (len < WAL_SEGMENT_HEADER_SIZE)
        return WAL_SEGMENT_SHORT;
    if (le_get_u32(buf + SEG_OFF_MAGIC) != WAL_SEGMENT_MAGIC)
        return WAL_SEGMENT_BAD_MAGIC;
    if (le_get_u16(buf + SEG_OFF_VERSION) != WAL_SEGMENT_VERSION)
        return WAL_SEGMENT_BAD_VERSION;
    if (le_get_u16(buf + SEG_OFF_RESERVED1) != 0 ||
        !le_all_zero(buf + SEG_OFF_RESERVED3, SEG_OFF_CRC - SEG_OFF_RESERVED3))
        return WAL_SEGMENT_BAD_RESERVED;
    /* A bit from a later version may change what the segment means (as the restart bit does
     * for the segments before it): fail closed rather than guess. */
    u32 flags = le_get_u32(buf + SEG_OFF_FLAGS);
    if ((flags & ~WAL_SEGMENT_FLAGS_KNOWN) != 0)
        return WAL_SEGMENT_BAD_FLAGS;
    u32 window = le_get_u32(buf + SEG_OFF_SYNC_WINDOW);
    if (window != 0 && window < WAL_FRAME_MAX)
        return WAL_SEGMENT_BAD_WINDOW;
    if (le_get_u64(buf + SEG_OFF_FIRST_LSN) == 0)
        return WAL_SEGMENT_BAD_LSN;
    if (crc32c(0, buf, SEG_OFF_CRC) != le_get_u32(buf + SEG_OFF_CRC))
        return WAL_SEGMENT_BAD_CHECKSUM;
    out->first_lsn = le_get_u64(buf + SEG_OFF_FIRST_LSN);
    out->prev_slot = le_get_u64(buf + SEG_OFF_PREV_SLOT);
    out->prev_crc = le_get_u32(buf + SEG_OFF_PREV_CRC);
    out->flags = flags;
    out->capacity = le_get_u64(buf + SEG_OFF_CAPACITY);
    out->sync_window = window;
    return WAL_SEGMENT_OK;
}

/* ---- helpers ---------------------------------------------------------------------------- */

/* Offset just past the last non-zero byte of buf[from, len), or `from` if all zero. */
static u64 nonzero_end(const u8 *buf, u64 from, u64 len)
{
    u64 end = len;
    while (end > from && end - from >= 64 && le_all_zero(buf + end - 64, 64))
        end -= 64;
    while (end > from && buf[end - 1] == 0)
        end--;
    return end;
}

const char *wal_scan_end_name(enum wal_scan_end e)
{
    switch (e) {
    case WAL_SCAN_CLEAN: return "clean";
    case WAL_SCAN_TORN: return "torn tail";
    case WAL_SCAN_CORRUPT: return "corrupt";
    case WAL_SCAN_STOPPED: return "stopped";
    case WAL_SCAN_LIMIT: return "limit reached";
    case WAL_SCAN_LOST: return "covered damage to the end";
    }
    return "unknown";
}

__attribute__((format(printf, 4, 5))) static enum wal_scan_end
finish(struct wal_scan_result *out, enum wal_scan_end end, u64 offset, const char *fmt, ...)
{
    out->end = end;
    out->bad_offset = offset;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out->reason, sizeof(out->reason), fmt, ap);
    va_end(ap);
    return end;
}

/* ---- the decision table ---------------------------------------------------------------- */

/* The frame at `off`, where LSN cur->next_lsn was expected, did not decode. Torn tail or
 * corruption? (table rows 8 and 9, and note (*)) */
static enum wal_scan_end invalid_frame(const u8 *buf, u64 len, u64 off, const struct wal_scan_options *o,
                                       const struct wal_cursor *cur, enum wal_frame_status why,
                                       struct wal_scan_result *out)
{
    const char *status = wal_frame_status_name(why);
    if (!o->last)
        return finish(out, WAL_SCAN_CORRUPT, off, "invalid frame (%s) in a sealed segment", status);
    if (cur->next_lsn <= o->synced_lsn)
        return finish(out, WAL_SCAN_CORRUPT, off,
                      "invalid frame (%s) at LSN %" PRIu64 ", which is known synced (up to LSN %" PRIu64 ")",
                      status, cur->next_lsn, o->synced_lsn);
    /* A torn write cannot reach further than the writer leaves unsynced. */
    u64 window = o->sync_window != 0 ? o->sync_window : WAL_FRAME_MAX;
    u64 nz_end = nonzero_end(buf, off, len);
    if (nz_end - off > window)
        return finish(out, WAL_SCAN_CORRUPT, off,
                      "invalid frame (%s) followed by data up to offset %" PRIu64
                      ", beyond any torn write (window %" PRIu64 " bytes)",
                      status, nz_end, window);
    /* Nor can a valid frame after it be one that was synced. Without a window (old segments)
     * any valid frame after it counts as damage to written frames. A frame's magic is non-zero,
     * so one that starts at p has p + 4 <= nz_end; the rest of it may be zeros beyond nz_end (an
     * empty payload and a crc ending in zero bytes). */
    bool any_valid_frame_is_damage = o->sync_window == 0;
    if (any_valid_frame_is_damage || o->synced_lsn != 0) {
        for (u64 p = off + 1; p + 4 <= nz_end; p++) {
            if (le_get_u32(buf + p) != WAL_FRAME_MAGIC)
                continue;
            struct wal_frame f;
            u32 flen;
            if (wal_frame_decode(buf + p, len - p, &f, &flen) != WAL_FRAME_OK)
                continue;
            if (any_valid_frame_is_damage)
                return finish(out, WAL_SCAN_CORRUPT, off,
                              "invalid frame (%s) followed by a valid frame at offset %" PRIu64, status, p);
            if (f.lsn <= o->synced_lsn)
                return finish(out, WAL_SCAN_CORRUPT, off,
                              "invalid frame (%s) followed by a valid frame at offset %" PRIu64 " with LSN %" PRIu64
                              ", which is known synced (up to LSN %" PRIu64 ")",
                              status, p, f.lsn, o->synced_lsn);
        }
    }
    out->torn_end = nz_end;
    return finish(out, WAL_SCAN_TORN, off, "torn write of %" PRIu64 " bytes (%s)", nz_end - off, status);
}

/* ---- covered damage --------------------------------------------------------------------- */

/*
 * The frame expected at `off` (LSN n = cur->next_lsn, below o->from_lsn: the caller's snapshot
 * holds it) is damaged or does not continue the chain; `why` says how. Never a torn tail and
 * never repaired: recorded, then passed over (scan.h, note (**)). Frame lengths in the damage
 * cannot be trusted, so the chain is picked up by searching forward from `off` itself (a frame
 * there that decodes has only its link in doubt) for the first frame that decodes completely,
 * checksum and command payload, with an LSN >= n (an older LSN cannot follow n: such a frame is
 * part of the damage and skipped). That frame decides:
 *   - LSN <= from_lsn (and <= the reader's stop_after_lsn) and slot >= the last verified slot:
 *     the chain resumes there, accepting its prev_crc: *off and cur are set so the caller's loop
 *     checks and delivers it like any other frame; returns true;
 *   - otherwise frame from_lsn cannot be found intact: corrupt.
 * No such frame before the last non-zero byte: corrupt in the newest segment (nothing after it
 * can anchor the chain), else WAL_SCAN_LOST (only the next segment's header can).
 * Returns false with `out` finished.
 */
static bool pass_over(const u8 *buf, u64 len, u64 *off, const struct wal_scan_options *o,
                      struct wal_cursor *cur, const char *why, u64 *data_end, struct wal_scan_result *out)
{
    u64 at = *off, n = cur->next_lsn;
    if (out->damaged++ == 0) {
        out->damage_offset = at;
        out->damage_lsn = n;
        snprintf(out->damage_reason, sizeof(out->damage_reason), "%s", why);
    }
    if (n > out->damage_floor_lsn)
        out->damage_floor_lsn = n;
    u64 max = o->from_lsn;
    if (o->stop_after_lsn != 0 && o->stop_after_lsn < max)
        max = o->stop_after_lsn; /* never resume at a frame the reader may not read */
    /* A frame's magic is non-zero, so one that starts at p has p + 4 <= nz_end. (The end of
     * the segment's data, found once per scan: many regions must not cost a pass each.) */
    if (*data_end == 0)
        *data_end = nonzero_end(buf, WAL_SEGMENT_HEADER_SIZE, len);
    u64 nz_end = *data_end > at ? *data_end : at;
    for (u64 p = at; p + 4 <= nz_end; p++) {
        if (le_get_u32(buf + p) != WAL_FRAME_MAGIC)
            continue;
        struct wal_frame f;
        u32 flen;
        struct sm_command cmd;
        if (wal_frame_decode(buf + p, len - p, &f, &flen) != WAL_FRAME_OK ||
            wal_cmd_decode(f.record_type, f.payload, f.payload_len, &cmd) != WAL_CMD_OK || f.lsn < n)
            continue;
        if (f.lsn > max) {
            finish(out, WAL_SCAN_CORRUPT, at,
                   "%s at LSN %" PRIu64 " (covered: below %" PRIu64 "); the next intact frame, at offset %" PRIu64
                   ", has LSN %" PRIu64 ": LSN %" PRIu64 " cannot be found intact",
                   why, n, o->from_lsn, p, f.lsn, max);
            return false;
        }
        if (f.request_slot < cur->last_slot) {
            finish(out, WAL_SCAN_CORRUPT, at,
                   "%s at LSN %" PRIu64 " (covered: below %" PRIu64 "); the next intact frame, at offset %" PRIu64
                   ", LSN %" PRIu64 ", has slot %" PRIu64 ", below the previous %" PRIu64,
                   why, n, o->from_lsn, p, f.lsn, f.request_slot, cur->last_slot);
            return false;
        }
        /* Frames n .. f.lsn - 1 and the link into f.lsn are unverified: a snapshot below
         * f.lsn - 1 would have to replay across them. */
        if (f.lsn - 1 > out->damage_floor_lsn)
            out->damage_floor_lsn = f.lsn - 1;
        *off = p;
        cur->next_lsn = f.lsn;
        cur->prev_crc = f.prev_crc;
        return true;
    }
    if (o->last) {
        finish(out, WAL_SCAN_CORRUPT, at,
               "%s at LSN %" PRIu64 " (covered: below %" PRIu64 "); no intact frame follows in the "
               "newest segment: LSN %" PRIu64 " cannot be found intact",
               why, n, o->from_lsn, max);
        return false;
    }
    finish(out, WAL_SCAN_LOST, at,
           "%s at LSN %" PRIu64 " (covered: below %" PRIu64 "); no intact frame follows in this segment",
           why, n, o->from_lsn);
    return false;
}

enum wal_scan_end wal_scan_segment(const u8 *buf, u64 len, const struct wal_scan_options *opt,
                                   struct wal_cursor *cur, wal_frame_fn each, void *ctx,
                                   struct wal_scan_result *out)
{
    ADB_ASSERT(len >= WAL_SEGMENT_HEADER_SIZE);
    memset(out, 0, sizeof(*out));
    u64 off = WAL_SEGMENT_HEADER_SIZE;
    char why[sizeof(out->reason)];
    u64 data_end = 0; /* pass_over's: 0 until it is needed */
    for (;;) {
        out->valid_end = off;
        /* Before anything at off is read: the writer may be changing those bytes right now.
         * (next_lsn - 1 is the LSN before the next frame; it does not wrap after UINT64_MAX.) */
        if (opt->stop_after_lsn != 0 && cur->next_lsn - 1 >= opt->stop_after_lsn)
            return finish(out, WAL_SCAN_LIMIT, off, "limit reached after LSN %" PRIu64, opt->stop_after_lsn);
        if (le_all_zero(buf + off, len - off))
            return finish(out, WAL_SCAN_CLEAN, off, "clean end");

        /* Every rule below: at a covered LSN (the caller's snapshot holds it) the frame is
         * passed over (note (**)); at any other, the table decides as it always did. */
        bool covered = cur->next_lsn < opt->from_lsn;
        struct wal_frame f;
        u32 flen;
        struct sm_command cmd;
        enum wal_cmd_status cs = WAL_CMD_OK;
        enum wal_frame_status fs = wal_frame_decode(buf + off, len - off, &f, &flen);
        if (fs != WAL_FRAME_OK) {
            if (!covered)
                return invalid_frame(buf, len, off, opt, cur, fs, out);
            snprintf(why, sizeof(why), "invalid frame (%s)", wal_frame_status_name(fs));
        } else if (f.lsn != cur->next_lsn) {
            snprintf(why, sizeof(why), "frame has LSN %" PRIu64 ", expected %" PRIu64, f.lsn, cur->next_lsn);
        } else if (f.request_slot < cur->last_slot) {
            snprintf(why, sizeof(why), "LSN %" PRIu64 " has slot %" PRIu64 ", below the previous %" PRIu64, f.lsn,
                     f.request_slot, cur->last_slot);
        } else if (f.prev_crc != cur->prev_crc) {
            snprintf(why, sizeof(why), "hash chain broken at LSN %" PRIu64 " (prev_crc %08x, expected %08x)", f.lsn,
                     f.prev_crc, cur->prev_crc);
        } else if ((cs = wal_cmd_decode(f.record_type, f.payload, f.payload_len, &cmd)) != WAL_CMD_OK) {
            snprintf(why, sizeof(why), "LSN %" PRIu64 ": invalid command payload (%s)", f.lsn,
                     wal_cmd_status_name(cs));
        } else {
            why[0] = '\0';
        }
        if (why[0] != '\0') {
            if (!covered)
                return finish(out, WAL_SCAN_CORRUPT, off, "%s", why);
            if (!pass_over(buf, len, &off, opt, cur, why, &data_end, out))
                return out->end;
            continue; /* the frame at the new off is checked like any other */
        }
        if (each != NULL) {
            int rc = each(ctx, &f, &cmd, off);
            if (rc != 0)
                return finish(out, WAL_SCAN_STOPPED, off, "stopped at LSN %" PRIu64 " (%d)", f.lsn, rc);
        }
        cur->next_lsn = f.lsn + 1;
        cur->last_slot = f.request_slot;
        cur->prev_crc = f.crc;
        out->frames++;
        off += flen;
    }
}
