/*
 * wal/scan.h — reading a WAL segment back: the recovery decision table.
 *
 * A WAL is a sequence of segment files. Each starts with a 64-byte segment header, followed by
 * frames (wal/frame.h) packed back to back, followed by zeros up to the preallocated size.
 *
 * Segment header, little-endian, fixed width:
 *
 *   offset size field
 *        0    4 magic        "ADBL" (0x4C424441)
 *        4    2 version      WAL_SEGMENT_VERSION
 *        6    2 reserved     zero
 *        8    8 first_lsn    LSN of the first frame the segment holds (also in the file name)
 *       16    8 prev_slot    request slot of frame first_lsn - 1 (0 if none)
 *       24    4 prev_crc     crc of frame first_lsn - 1 (0 if none): the chain continues here
 *       28    4 flags        bit 0 WAL_SEGMENT_RESTART: the log restarts here (wal_log_restart);
 *                            every segment with a smaller first_lsn is obsolete. Other bits
 *                            zero: a header with an unknown bit fails closed
 *       32    8 capacity     preallocated size of the file in bytes
 *       40    4 sync_window  bytes the writer may leave unsynced in this segment (0: written
 *                            before the field existed; read as WAL_FRAME_MAX); else >= that
 *       44   16 reserved     zero
 *       60    4 crc          CRC32C of bytes 0..59
 *
 * Decision table. The scan walks frames from offset 64. At each offset it finds one of:
 *
 *   situation at offset                                  last segment      earlier segment
 *   ---------------------------------------------------  ----------------  ----------------
 *   the next LSN is past the reader's stop_after_lsn     limit             limit
 *   every remaining byte is zero                         clean end         clean end
 *   a valid frame that continues the sequence            next frame        next frame
 *   any row below, where the expected LSN is covered     pass over (**)    pass over (**)
 *     (below the caller's from_lsn)
 *   a valid frame with the wrong LSN                     corrupt           corrupt
 *   a valid frame whose slot goes backwards              corrupt           corrupt
 *   a valid frame whose prev_crc breaks the chain        corrupt           corrupt
 *   a valid frame whose payload is not a valid command   corrupt           corrupt
 *   an invalid frame that can be an unsynced write (*)   torn tail         corrupt
 *   any other invalid frame                              corrupt           corrupt
 *
 * (*) The writer never has more than the segment's sync window of bytes unsynced, and a disk may
 *     persist the pages of an unsynced write in any order, so a tear can leave valid frames
 *     after the damage. An invalid frame at offset off, where LSN n was expected, is torn iff
 *       - n > synced_lsn (the caller's hint: frames up to it are known durable), and
 *       - every non-zero byte after off lies within the window (nz_end - off <= window), and
 *       - no valid frame after off has an LSN <= synced_lsn; in a segment without a window,
 *         no valid frame after off at all (the rule before windows, kept for old data).
 *     The torn tail runs from off to the last non-zero byte: valid frames inside it were
 *     persisted out of order, never synced, so never acknowledged.
 *
 * (**) Covered damage. A caller that recovers from a snapshot at LSN from_lsn - 1 needs the
 *     frames from from_lsn on; the frames below it are kept only for peers and for a fallback to
 *     an older snapshot, and they were durable before the snapshot was taken (it holds them), so
 *     damage there is never a torn tail, never repaired, and does not stop the scan. It is
 *     counted and reported (the first region's offset, expected LSN and rule) and passed over:
 *     frame lengths inside damage cannot be trusted, so the scan searches forward from the
 *     damaged offset (inclusive: a frame there that decodes has only its link in doubt) for the
 *     first frame that decodes completely, checksum and command payload, with an LSN >= the
 *     expected one n (older ones are part of the damage). That frame decides:
 *       - LSN m <= from_lsn (and <= stop_after_lsn, if set) and slot >= the last verified
 *         slot: the chain resumes at it, accepting its prev_crc, and everything after it is
 *         checked by this table as usual, so frame from_lsn and every later frame are verified
 *         exactly as without damage, except that when m == from_lsn its link to the frame
 *         before is unverifiable (that frame is damaged): the caller's snapshot anchors it
 *         instead (LSN and slot: replica/recovery.c checks both);
 *       - any other frame: frame from_lsn cannot be found intact: corrupt;
 *       - no such frame before the last non-zero byte: corrupt in the last segment; "lost" in
 *         an earlier one, where only the next segment's header (which the caller checks starts
 *         at or below from_lsn) can anchor the chain again.
 *     The anchors trusted are those with a checksum or an independent source: segment headers,
 *     whole frames (magic, checksum and a command payload: random damage forms one by chance
 *     at odds of about 2^-64 per offset) and the snapshot's LSN and slot. A snapshot does not
 *     record the crc of its last frame, so the link into a resumed frame from_lsn is the one
 *     link left unverified. (CRC32C is no MAC: a client that chooses enough payload bytes
 *     could embed a frame-shaped byte string in a command; it is resumed at only if damage
 *     also destroyed the start of the real frame around it, and it must carry the exact LSN
 *     and a slot the snapshot accepts.) damage_floor_lsn is the highest LSN whose frame or
 *     link is unverified: recovery from a snapshot below it would replay across the damage,
 *     which fails closed (damage at or after from_lsn is never passed over).
 *
 * "Limit" is checked first and reads nothing: a reader that recovers up to a durable point while
 * the writer appends never looks at bytes the writer may be changing. (The one exception is the
 * search of (**), which may read past the limit when every frame up to it is damaged; no frame
 * there can be resumed at, so those bytes only ever lead to "corrupt", as the damage would.)
 *
 * "Torn tail" is the one state recovery repairs: a write that a crash cut short, which was never
 * synced and so never acknowledged; the caller zeroes it and appends from its offset. Nothing
 * else is ever rewritten or dropped. Limits, stated plainly: damage (a bit flip) in the last
 * window of the log above synced_lsn looks exactly like a torn write and is cut like one, with
 * the frames after it, even if they had been synced: the scan cannot tell, and only a hint that
 * keeps up with the syncs narrows it (with no hint, the whole last window). In a segment without
 * a window, out-of-order pages of a group commit fail closed (safe, but need an operator).
 *
 * Pure: no I/O, no allocation. Segment-level checks (names, order, gaps between segments) are in
 * wal/log.c.
 */
#ifndef ADB_WAL_SCAN_H
#define ADB_WAL_SCAN_H

#include "common/types.h"
#include "vocab/vocab.h"
#include "wal/frame.h"

#define WAL_SEGMENT_MAGIC 0x4C424441u /* bytes 'A' 'D' 'B' 'L' */
#define WAL_SEGMENT_VERSION 1
#define WAL_SEGMENT_HEADER_SIZE 64

#define WAL_SEGMENT_RESTART 0x1u /* flags: every segment with a smaller first_lsn is obsolete */
#define WAL_SEGMENT_FLAGS_KNOWN WAL_SEGMENT_RESTART

struct wal_segment_header {
    u64 first_lsn;
    u64 prev_slot;
    u32 prev_crc;
    u32 flags;       /* WAL_SEGMENT_* bits, only known ones */
    u64 capacity;
    u32 sync_window; /* 0 or >= WAL_FRAME_MAX */
};

enum wal_segment_status {
    WAL_SEGMENT_OK = 0,
    WAL_SEGMENT_SHORT,
    WAL_SEGMENT_BAD_MAGIC,
    WAL_SEGMENT_BAD_VERSION,
    WAL_SEGMENT_BAD_RESERVED,
    WAL_SEGMENT_BAD_LSN, /* first_lsn 0 */
    WAL_SEGMENT_BAD_CHECKSUM,
    WAL_SEGMENT_BAD_WINDOW, /* sync_window neither 0 nor >= WAL_FRAME_MAX */
    WAL_SEGMENT_BAD_FLAGS,  /* a flag bit this version does not know */
};

const char *wal_segment_status_name(enum wal_segment_status s);

void wal_segment_header_encode(u8 out[WAL_SEGMENT_HEADER_SIZE], const struct wal_segment_header *h);
enum wal_segment_status wal_segment_header_decode(const u8 *buf, size_t len,
                                                  struct wal_segment_header *out);

/* Where the chain stands: what the next frame must carry. */
struct wal_cursor {
    u64 next_lsn;  /* the next frame's LSN */
    u64 last_slot; /* the next frame's slot must be >= this */
    u32 prev_crc;  /* the next frame's prev_crc must equal this */
};

enum wal_scan_end {
    WAL_SCAN_CLEAN = 0, /* valid frames, then zeros to the end */
    WAL_SCAN_TORN,      /* valid frames, then a torn write (last segment only) */
    WAL_SCAN_CORRUPT,   /* fail closed */
    WAL_SCAN_STOPPED,   /* the frame callback returned non-zero */
    WAL_SCAN_LIMIT,     /* reached stop_after_lsn: nothing after it was read */
    WAL_SCAN_LOST,      /* covered damage (note (**)) runs to the end of an earlier segment: cur
                         * is not the chain state; only the next segment's header can anchor it */
};

const char *wal_scan_end_name(enum wal_scan_end e);

struct wal_scan_result {
    enum wal_scan_end end;
    u64 frames;      /* valid frames found */
    u64 valid_end;   /* offset just past the last valid frame (or the header) */
    u64 bad_offset;  /* torn/corrupt: offset of the first bad byte sequence */
    u64 torn_end;    /* torn: offset just past the last non-zero byte of the torn write
                      * (at most the window past bad_offset) */
    char reason[256];
    /* Covered damage passed over (note (**)), whatever the end: */
    u32 damaged;            /* regions passed over (0: none) */
    u64 damage_offset;      /* the first one: its offset */
    u64 damage_lsn;         /* ... the LSN expected there */
    char damage_reason[256]; /* ... the rule it broke */
    u64 damage_floor_lsn;   /* highest LSN whose frame or link is unverified (0: none) */
};

/* Called for each valid frame, in order, with its decoded command and its offset. */
typedef int (*wal_frame_fn)(void *ctx, const struct wal_frame *f, const struct sm_command *cmd,
                            u64 offset);

/* How to read one segment. */
struct wal_scan_options {
    bool last;          /* the newest segment: the only one that may end in a torn tail */
    u64 stop_after_lsn; /* 0: none; else end (WAL_SCAN_LIMIT) where the frame after this LSN
                         * would start, without reading a byte of it */
    u32 sync_window;    /* the segment header's (0: a segment from before windows) */
    u64 synced_lsn;     /* frames up to this LSN are known durable (0: none known) */
    u64 from_lsn;       /* the first LSN the caller needs: frames below it are covered by its
                         * snapshot, and damage there is passed over (note (**)); 0 or 1: none */
};

/*
 * Scans the frames of one segment held in buf (len bytes, starting with the segment header,
 * which the caller has already decoded and checked). cur holds the chain state on entry and is
 * advanced past every valid frame (OUT). each may be NULL. Returns the result's `end`.
 */
enum wal_scan_end wal_scan_segment(const u8 *buf, u64 len, const struct wal_scan_options *opt,
                                   struct wal_cursor *cur, wal_frame_fn each, void *ctx,
                                   struct wal_scan_result *out);

#endif
