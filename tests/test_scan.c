/*
 * tests/test_scan.c — every row of the recovery decision table (wal/scan.h), on hand-built
 * segments in memory. Frames that break a sequence rule are encoded with valid checksums, so
 * each test reaches exactly the rule it names.
 */
#include "config.h"

#include "tests/check_main.h"
#include "wal/command.h"
#include "wal/scan.h"

#include <string.h>

#define SEG 8192

static u8 seg[SEG];
static u64 used;
static struct wal_cursor writer; /* chain state of the frames put so far */

static struct sm_command create_cmd(u64 op)
{
    struct sm_command c;
    memset(&c, 0, sizeof(c));
    c.kind = SM_CMD_CREATE_RESOURCE;
    c.operation_id = op;
    c.client_id = 3;
    c.resource_id = 1000 + op;
    return c;
}

/* A segment without a sync window (written before windows existed): the one-frame rule. */
static void start(u64 first_lsn)
{
    memset(seg, 0, sizeof(seg));
    struct wal_segment_header h = { .first_lsn = first_lsn, .prev_slot = 5, .prev_crc = 0xabcd, .capacity = SEG };
    wal_segment_header_encode(seg, &h);
    used = WAL_SEGMENT_HEADER_SIZE;
    writer = (struct wal_cursor){ .next_lsn = first_lsn, .last_slot = 5, .prev_crc = 0xabcd };
}

/* Appends a frame; the overrides let a test break one rule while the checksum stays valid. */
static u64 put(u64 lsn, u64 slot, u32 prev_crc, const u8 *payload, u32 payload_len, u16 type)
{
    struct wal_frame f = { .lsn = lsn, .request_slot = slot, .view = 0, .prev_crc = prev_crc,
                           .record_type = type, .payload = payload, .payload_len = payload_len };
    u64 at = used;
    used += wal_frame_encode(seg + used, SEG - used, &f);
    writer.next_lsn = lsn + 1;
    writer.last_slot = slot;
    writer.prev_crc = f.crc;
    return at;
}

/* A frame carrying a valid create_resource payload, with the given header fields. */
static u64 put_cmd(u64 lsn, u64 slot, u32 prev_crc, u16 type)
{
    u8 p[WAL_PAYLOAD_MAX];
    struct sm_command c = create_cmd(lsn);
    u32 n = wal_cmd_encode(p, sizeof(p), &c);
    return put(lsn, slot, prev_crc, p, n, type);
}

static u64 put_good(void)
{
    return put_cmd(writer.next_lsn, writer.last_slot + 1, writer.prev_crc, WAL_RECORD_COMMAND);
}

static enum wal_scan_end scan_with(const struct wal_scan_options *o, struct wal_scan_result *r)
{
    struct wal_cursor cur = { .next_lsn = 10, .last_slot = 5, .prev_crc = 0xabcd };
    return wal_scan_segment(seg, SEG, o, &cur, NULL, NULL, r);
}

static enum wal_scan_end scan(bool last, struct wal_scan_result *r)
{
    struct wal_scan_options o = { .last = last };
    return scan_with(&o, r);
}

START_TEST(test_clean_end_after_frames)
{
    start(10);
    for (int i = 0; i < 5; i++)
        put_good();
    struct wal_scan_result r;
    ck_assert_int_eq(scan(true, &r), WAL_SCAN_CLEAN);
    ck_assert_uint_eq(r.frames, 5);
    ck_assert_uint_eq(r.valid_end, used);
    ck_assert_int_eq(scan(false, &r), WAL_SCAN_CLEAN);
}
END_TEST

START_TEST(test_empty_segment_is_clean)
{
    start(10);
    struct wal_scan_result r;
    ck_assert_int_eq(scan(true, &r), WAL_SCAN_CLEAN);
    ck_assert_uint_eq(r.frames, 0);
    ck_assert_uint_eq(r.valid_end, WAL_SEGMENT_HEADER_SIZE);
}
END_TEST

START_TEST(test_wrong_lsn_is_corrupt)
{
    start(10);
    put_good();
    u64 at = put_cmd(writer.next_lsn + 1, writer.last_slot, writer.prev_crc, WAL_RECORD_COMMAND); /* a gap */
    struct wal_scan_result r;
    ck_assert_int_eq(scan(true, &r), WAL_SCAN_CORRUPT);
    ck_assert_uint_eq(r.bad_offset, at);
    ck_assert_ptr_nonnull(strstr(r.reason, "expected 11"));
}
END_TEST

START_TEST(test_slot_going_back_is_corrupt)
{
    start(10);
    put_good();
    put_good();
    put_cmd(writer.next_lsn, writer.last_slot - 1, writer.prev_crc, WAL_RECORD_COMMAND);
    struct wal_scan_result r;
    ck_assert_int_eq(scan(true, &r), WAL_SCAN_CORRUPT);
    ck_assert_ptr_nonnull(strstr(r.reason, "below the previous"));
}
END_TEST

START_TEST(test_broken_chain_is_corrupt)
{
    start(10);
    put_good();
    put_cmd(writer.next_lsn, writer.last_slot, writer.prev_crc ^ 1, WAL_RECORD_COMMAND);
    struct wal_scan_result r;
    ck_assert_int_eq(scan(true, &r), WAL_SCAN_CORRUPT);
    ck_assert_ptr_nonnull(strstr(r.reason, "hash chain"));
    /* Also at the first frame: it must continue the chain the segment header states. */
    start(10);
    put_cmd(10, 6, 0x1234, WAL_RECORD_COMMAND);
    ck_assert_int_eq(scan(true, &r), WAL_SCAN_CORRUPT);
    ck_assert_ptr_nonnull(strstr(r.reason, "hash chain"));
}
END_TEST

START_TEST(test_bad_payload_is_corrupt)
{
    start(10);
    put_good();
    put_cmd(writer.next_lsn, writer.last_slot, writer.prev_crc, WAL_RECORD_EXPIRE); /* kind/type mismatch */
    struct wal_scan_result r;
    ck_assert_int_eq(scan(true, &r), WAL_SCAN_CORRUPT);
    ck_assert_ptr_nonnull(strstr(r.reason, "invalid command payload"));
}
END_TEST

START_TEST(test_torn_last_frame)
{
    start(10);
    put_good();
    put_good();
    u64 at = put_good();
    /* Keep only part of the last frame: the rest is the preallocated zeros. */
    u64 keep = (used - at) / 2;
    memset(seg + at + keep, 0, used - at - keep);
    struct wal_scan_result r;
    ck_assert_int_eq(scan(true, &r), WAL_SCAN_TORN);
    ck_assert_uint_eq(r.frames, 2);
    ck_assert_uint_eq(r.bad_offset, at);
    ck_assert_uint_eq(r.valid_end, at);
    ck_assert_uint_le(r.torn_end, at + keep);
    /* The same bytes in a sealed segment are corruption. */
    ck_assert_int_eq(scan(false, &r), WAL_SCAN_CORRUPT);
}
END_TEST

START_TEST(test_invalid_frame_before_a_valid_one_is_corrupt)
{
    start(10);
    put_good();
    u64 at = put_good();
    put_good();
    seg[at + 20] ^= 0x10; /* damages a frame that has a valid successor */
    struct wal_scan_result r;
    ck_assert_int_eq(scan(true, &r), WAL_SCAN_CORRUPT);
    ck_assert_uint_eq(r.bad_offset, at);
    ck_assert_ptr_nonnull(strstr(r.reason, "followed by a valid frame"));
}
END_TEST

START_TEST(test_data_beyond_any_torn_write_is_corrupt)
{
    start(10);
    put_good();
    u64 at = used;
    seg[at] = 0x77;                      /* garbage where a frame should start... */
    seg[at + WAL_FRAME_MAX + 10] = 0x01; /* ...and data further than any one frame reaches */
    struct wal_scan_result r;
    ck_assert_int_eq(scan(true, &r), WAL_SCAN_CORRUPT);
    ck_assert_ptr_nonnull(strstr(r.reason, "beyond any torn write"));
    /* Within one frame's reach it is a torn write. */
    seg[at + WAL_FRAME_MAX + 10] = 0;
    seg[at + WAL_FRAME_MAX - 1] = 0x01;
    ck_assert_int_eq(scan(true, &r), WAL_SCAN_TORN);
}
END_TEST

/* ---- the sync window and the known-synced hint (scan.h, note (*)) ------------------------- */

#define WINDOW 2048

static struct wal_scan_options windowed(u64 synced_lsn)
{
    return (struct wal_scan_options){ .last = true, .sync_window = WINDOW, .synced_lsn = synced_lsn };
}

static u64 frame_at[20]; /* offset of LSN 10 + i */

/* Frames 10..29 with the frame of LSN 25 damaged, as a group commit whose pages reached the disk
 * out of order leaves it: valid, never synced frames after the damage. */
static u64 out_of_order_tear(u64 *damaged)
{
    start(10);
    for (int i = 0; i < 20; i++)
        frame_at[i] = put_good();
    *damaged = frame_at[25 - 10];
    memset(seg + *damaged + 10, 0, 16); /* a page boundary inside the frame, its page lost */
    return used;
}

START_TEST(test_window_tear_keeps_valid_frames_after_the_damage_out)
{
    u64 damaged, end = out_of_order_tear(&damaged);
    ck_assert_uint_le(end - damaged, WINDOW);
    struct wal_scan_options o = windowed(0);
    struct wal_scan_result r;
    ck_assert_int_eq(scan_with(&o, &r), WAL_SCAN_TORN);
    ck_assert_uint_eq(r.frames, 15);
    ck_assert_uint_eq(r.bad_offset, damaged);
    while (seg[end - 1] == 0)
        end--; /* the last frame may end in zero bytes, which the preallocation already holds */
    ck_assert_uint_eq(r.torn_end, end); /* the valid frames after it are cut with it */
    /* Above a hint that is behind the damage, the same. */
    o = windowed(24);
    ck_assert_int_eq(scan_with(&o, &r), WAL_SCAN_TORN);
    ck_assert_uint_eq(r.torn_end, end);
    /* The same bytes in a segment without a window: the rule before windows, corruption. */
    o.sync_window = 0;
    o.synced_lsn = 0;
    ck_assert_int_eq(scan_with(&o, &r), WAL_SCAN_CORRUPT);
    ck_assert_ptr_nonnull(strstr(r.reason, "followed by a valid frame"));
    /* And a sealed segment never has a torn tail. */
    o = windowed(0);
    o.last = false;
    ck_assert_int_eq(scan_with(&o, &r), WAL_SCAN_CORRUPT);
}
END_TEST

START_TEST(test_window_damage_known_synced_is_corrupt)
{
    u64 damaged;
    out_of_order_tear(&damaged);
    struct wal_scan_result r;
    /* The damaged frame itself is known synced. */
    struct wal_scan_options o = windowed(25);
    ck_assert_int_eq(scan_with(&o, &r), WAL_SCAN_CORRUPT);
    ck_assert_uint_eq(r.bad_offset, damaged);
    ck_assert_ptr_nonnull(strstr(r.reason, "LSN 25, which is known synced"));
    o = windowed(29);
    ck_assert_int_eq(scan_with(&o, &r), WAL_SCAN_CORRUPT);
    /* A valid frame after the damage that is known synced (here an old frame where LSN 27
     * stood: frames of one write come in LSN order, so it is the only way one can be). */
    memcpy(seg + frame_at[27 - 10], seg + frame_at[12 - 10], frame_at[13 - 10] - frame_at[12 - 10]);
    o = windowed(20);
    ck_assert_int_eq(scan_with(&o, &r), WAL_SCAN_CORRUPT);
    ck_assert_msg(strstr(r.reason, "valid frame") != NULL && strstr(r.reason, "LSN 12, which is known synced") != NULL,
                  "%s", r.reason);
    o = windowed(11); /* unless it is above the hint too */
    ck_assert_int_eq(scan_with(&o, &r), WAL_SCAN_TORN);
}
END_TEST

START_TEST(test_window_data_beyond_it_is_corrupt)
{
    start(10);
    put_good();
    u64 at = used;
    seg[at] = 0x77;                /* garbage where a frame should start... */
    seg[at + WINDOW + 10] = 0x01;  /* ...and data further than the writer leaves unsynced */
    struct wal_scan_options o = windowed(0);
    struct wal_scan_result r;
    ck_assert_int_eq(scan_with(&o, &r), WAL_SCAN_CORRUPT);
    ck_assert_ptr_nonnull(strstr(r.reason, "beyond any torn write"));
    seg[at + WINDOW + 10] = 0;
    seg[at + WINDOW - 1] = 0x01;   /* within it: a torn write */
    ck_assert_int_eq(scan_with(&o, &r), WAL_SCAN_TORN);
    ck_assert_uint_eq(r.torn_end, at + WINDOW);
}
END_TEST

static int stop_at_second(void *ctx, const struct wal_frame *f, const struct sm_command *c, u64 off)
{
    (void)c;
    (void)off;
    int *calls = ctx;
    return ++*calls == 2 ? (int)f->lsn : 0;
}

START_TEST(test_callback_can_stop)
{
    start(10);
    for (int i = 0; i < 4; i++)
        put_good();
    struct wal_cursor cur = { .next_lsn = 10, .last_slot = 5, .prev_crc = 0xabcd };
    struct wal_scan_result r;
    int calls = 0;
    struct wal_scan_options o = { .last = true };
    ck_assert_int_eq(wal_scan_segment(seg, SEG, &o, &cur, stop_at_second, &calls, &r), WAL_SCAN_STOPPED);
    ck_assert_int_eq(calls, 2);
    ck_assert_uint_eq(r.frames, 1);
    ck_assert_uint_eq(cur.next_lsn, 11);
}
END_TEST

static int count_calls(void *ctx, const struct wal_frame *f, const struct sm_command *c, u64 off)
{
    (void)f;
    (void)c;
    (void)off;
    ++*(int *)ctx;
    return 0;
}

/* The reader's limit ends the scan before a byte of the next frame is read: whatever follows
 * (a frame being written, garbage, data far beyond) cannot turn into corruption or a tear, in
 * the newest segment or a sealed one. */
START_TEST(test_limit_reads_nothing_after_it)
{
    start(10);
    for (int i = 0; i < 4; i++)
        put_good();
    u64 limit_end = used; /* LSNs 10..13 */
    put_good();
    put_good();
    for (int view = 0; view < 3; view++) {
        if (view == 1)
            memset(seg + limit_end + 5, 0, 20); /* LSN 14 half written, 15 already there */
        if (view == 2)
            memset(seg + limit_end, 0x5A, SEG - limit_end); /* anything at all, up to the end */
        for (int last = 0; last <= 1; last++) {
            struct wal_scan_options o = { .last = last, .stop_after_lsn = 13 };
            struct wal_cursor cur = { .next_lsn = 10, .last_slot = 5, .prev_crc = 0xabcd };
            struct wal_scan_result r;
            int calls = 0;
            ck_assert_int_eq(wal_scan_segment(seg, SEG, &o, &cur, count_calls, &calls, &r), WAL_SCAN_LIMIT);
            ck_assert_int_eq(calls, 4);
            ck_assert_uint_eq(r.frames, 4);
            ck_assert_uint_eq(r.valid_end, limit_end);
            ck_assert_uint_eq(cur.next_lsn, 14);
        }
    }
    /* A limit before the segment's first frame reads nothing; a limit beyond its frames does not
     * hide what comes after them. */
    struct wal_scan_options before = { .last = true, .stop_after_lsn = 9 };
    struct wal_scan_result r;
    ck_assert_int_eq(scan_with(&before, &r), WAL_SCAN_LIMIT);
    ck_assert_uint_eq(r.frames, 0);
    struct wal_scan_options beyond = { .last = true, .stop_after_lsn = 100 };
    ck_assert_int_eq(scan_with(&beyond, &r), WAL_SCAN_CORRUPT);
    ck_assert_uint_eq(r.bad_offset, limit_end);
}
END_TEST

/* ---- covered damage: frames below from_lsn (scan.h, note (**)) ---------------------------- */

struct lsn_log {
    u64 lsn[64];
    int n;
};

static int log_lsn(void *ctx, const struct wal_frame *f, const struct sm_command *c, u64 off)
{
    (void)c;
    (void)off;
    struct lsn_log *l = ctx;
    ck_assert_int_lt(l->n, 64);
    l->lsn[l->n++] = f->lsn;
    return 0;
}

/* Frames 10..29 (offsets in frame_at), all of the same size. */
static void twenty_frames(void)
{
    start(10);
    for (int i = 0; i < 20; i++)
        frame_at[i] = put_good();
}

#define AT(lsn) frame_at[(lsn) - 10]

static enum wal_scan_end scan_covered(bool last, u64 from_lsn, u64 stop_after, struct wal_cursor *cur,
                                      struct lsn_log *l, struct wal_scan_result *r)
{
    struct wal_scan_options o = { .last = last, .from_lsn = from_lsn, .stop_after_lsn = stop_after };
    *cur = (struct wal_cursor){ .next_lsn = 10, .last_slot = 5, .prev_crc = 0xabcd };
    memset(l, 0, sizeof(*l));
    return wal_scan_segment(seg, SEG, &o, cur, log_lsn, l, r);
}

/* The LSNs the callback saw are lo..hi without `skip_lo..skip_hi` (0: none). */
static void assert_seen(const struct lsn_log *l, u64 lo, u64 hi, u64 skip_lo, u64 skip_hi)
{
    int i = 0;
    for (u64 lsn = lo; lsn <= hi; lsn++) {
        if (lsn >= skip_lo && lsn <= skip_hi)
            continue;
        ck_assert_int_lt(i, l->n);
        ck_assert_uint_eq(l->lsn[i], lsn);
        i++;
    }
    ck_assert_int_eq(i, l->n);
}

START_TEST(test_covered_damage_is_passed_over)
{
    twenty_frames();
    seg[AT(14) + 20] ^= 0x10; /* a bit flip in LSN 14's header */
    struct wal_cursor cur;
    struct lsn_log l;
    struct wal_scan_result r;
    for (int last = 0; last <= 1; last++) {
        ck_assert_int_eq(scan_covered(last, 20, 0, &cur, &l, &r), WAL_SCAN_CLEAN);
        ck_assert_uint_eq(r.damaged, 1);
        ck_assert_uint_eq(r.damage_lsn, 14);
        ck_assert_uint_eq(r.damage_offset, AT(14));
        ck_assert_uint_eq(r.damage_floor_lsn, 14);
        ck_assert_ptr_nonnull(strstr(r.damage_reason, "invalid frame"));
        ck_assert_uint_eq(r.frames, 19);
        assert_seen(&l, 10, 29, 14, 14);
        ck_assert_uint_eq(cur.next_lsn, 30);
        ck_assert_uint_eq(cur.prev_crc, writer.prev_crc); /* the chain after it is the writer's */
    }
    /* The frame just before from_lsn: from_lsn itself is where the chain resumes. */
    ck_assert_int_eq(scan_covered(true, 15, 0, &cur, &l, &r), WAL_SCAN_CLEAN);
    ck_assert_uint_eq(r.damaged, 1);
    assert_seen(&l, 10, 29, 14, 14);
    /* At from_lsn the damage is not covered: the table decides as without a snapshot. */
    ck_assert_int_eq(scan_covered(true, 14, 0, &cur, &l, &r), WAL_SCAN_CORRUPT);
    ck_assert_uint_eq(r.bad_offset, AT(14));
    ck_assert_uint_eq(r.damaged, 0);
    ck_assert_int_eq(scan_covered(true, 0, 0, &cur, &l, &r), WAL_SCAN_CORRUPT);
    ck_assert_int_eq(scan_covered(false, 1, 0, &cur, &l, &r), WAL_SCAN_CORRUPT);
}
END_TEST

/* Each rule of the table at a covered LSN: passed over, the chain resuming at the first intact
 * frame with an LSN at or after the expected one. */
START_TEST(test_covered_damage_every_rule)
{
    struct wal_cursor cur;
    struct lsn_log l;
    struct wal_scan_result r;

    /* Wrong LSN (a gap: LSN 13 is missing): resumes at 14, the frame there. */
    start(10);
    for (int i = 0; i < 3; i++)
        put_good();
    u64 gap = put_cmd(14, writer.last_slot, writer.prev_crc, WAL_RECORD_COMMAND);
    for (int i = 0; i < 5; i++)
        put_good();
    ck_assert_int_eq(scan_covered(true, 17, 0, &cur, &l, &r), WAL_SCAN_CLEAN);
    ck_assert_uint_eq(r.damaged, 1);
    ck_assert_uint_eq(r.damage_lsn, 13);
    ck_assert_uint_eq(r.damage_offset, gap);
    ck_assert_ptr_nonnull(strstr(r.damage_reason, "expected 13"));
    assert_seen(&l, 10, 19, 13, 13);

    /* Broken chain: the frame itself is intact; only its link is in doubt. */
    start(10);
    put_good();
    u64 broken = put_cmd(writer.next_lsn, writer.last_slot, writer.prev_crc ^ 1, WAL_RECORD_COMMAND);
    for (int i = 0; i < 5; i++)
        put_good();
    ck_assert_int_eq(scan_covered(true, 14, 0, &cur, &l, &r), WAL_SCAN_CLEAN);
    ck_assert_uint_eq(r.damaged, 1);
    ck_assert_uint_eq(r.damage_offset, broken);
    ck_assert_ptr_nonnull(strstr(r.damage_reason, "hash chain"));
    ck_assert_uint_eq(r.damage_floor_lsn, 11);
    assert_seen(&l, 10, 16, 0, 0);

    /* Invalid payload (valid checksum): passed over to the next frame. */
    start(10);
    put_good();
    put_cmd(writer.next_lsn, writer.last_slot, writer.prev_crc, WAL_RECORD_EXPIRE);
    for (int i = 0; i < 5; i++)
        put_good();
    ck_assert_int_eq(scan_covered(true, 15, 0, &cur, &l, &r), WAL_SCAN_CLEAN);
    ck_assert_uint_eq(r.damaged, 1);
    ck_assert_ptr_nonnull(strstr(r.damage_reason, "invalid command payload"));
    assert_seen(&l, 10, 16, 11, 11);

    /* A frame older than the expected LSN where it should be (part of the damage): skipped. */
    twenty_frames();
    memcpy(seg + AT(14), seg + AT(11), AT(12) - AT(11));
    ck_assert_int_eq(scan_covered(true, 20, 0, &cur, &l, &r), WAL_SCAN_CLEAN);
    ck_assert_uint_eq(r.damaged, 1);
    ck_assert_ptr_nonnull(strstr(r.damage_reason, "LSN 11, expected 14"));
    assert_seen(&l, 10, 29, 14, 14);

    /* A slot going back: the first intact frame at or after the expected LSN must not go back
     * behind the verified ones, so this one is corruption. */
    start(10);
    put_good();
    put_good();
    put_cmd(writer.next_lsn, writer.last_slot - 1, writer.prev_crc, WAL_RECORD_COMMAND);
    put_good();
    ck_assert_int_eq(scan_covered(true, 14, 0, &cur, &l, &r), WAL_SCAN_CORRUPT);
    ck_assert_ptr_nonnull(strstr(r.reason, "below the previous"));
}
END_TEST

START_TEST(test_covered_damage_must_find_from_lsn)
{
    struct wal_cursor cur;
    struct lsn_log l;
    struct wal_scan_result r;
    twenty_frames();
    memset(seg + AT(14) + 3, 0xEE, AT(22) - AT(14) - 3); /* LSNs 14..21 destroyed */
    /* Frame 20 is in the damage: the next intact frame, 22, is past it. */
    ck_assert_int_eq(scan_covered(true, 20, 0, &cur, &l, &r), WAL_SCAN_CORRUPT);
    ck_assert_uint_eq(r.bad_offset, AT(14));
    ck_assert_msg(strstr(r.reason, "has LSN 22") != NULL && strstr(r.reason, "LSN 20 cannot be found intact") != NULL,
                  "%s", r.reason);
    ck_assert_int_eq(scan_covered(false, 20, 0, &cur, &l, &r), WAL_SCAN_CORRUPT);
    /* Frames 22 and 23 are after it: resumed at 22. */
    for (u64 from = 22; from <= 23; from++) {
        ck_assert_int_eq(scan_covered(true, from, 0, &cur, &l, &r), WAL_SCAN_CLEAN);
        ck_assert_uint_eq(r.damaged, 1);
        ck_assert_uint_eq(r.damage_lsn, 14);
        ck_assert_uint_eq(r.damage_floor_lsn, 21);
        assert_seen(&l, 10, 29, 14, 21);
    }
    /* The reader's limit bounds where the chain may resume: never at a frame past it. */
    ck_assert_int_eq(scan_covered(true, 23, 21, &cur, &l, &r), WAL_SCAN_CORRUPT);
    ck_assert_ptr_nonnull(strstr(r.reason, "LSN 21 cannot be found intact"));
    ck_assert_int_eq(scan_covered(true, 23, 24, &cur, &l, &r), WAL_SCAN_LIMIT);
    assert_seen(&l, 10, 24, 14, 21);

    /* Damage to the end of the data: nothing after it anchors the chain in the newest segment;
     * in an earlier one, only the next segment's header can ("lost"). */
    twenty_frames();
    memset(seg + AT(25) + 3, 0xEE, used - AT(25) - 3);
    ck_assert_int_eq(scan_covered(true, 29, 0, &cur, &l, &r), WAL_SCAN_CORRUPT);
    ck_assert_ptr_nonnull(strstr(r.reason, "no intact frame follows"));
    ck_assert_int_eq(scan_covered(false, 40, 0, &cur, &l, &r), WAL_SCAN_LOST);
    ck_assert_uint_eq(r.bad_offset, AT(25));
    ck_assert_uint_eq(r.damaged, 1);
    ck_assert_uint_eq(r.damage_lsn, 25);
    assert_seen(&l, 10, 24, 0, 0);
}
END_TEST

START_TEST(test_covered_damage_regions_are_counted)
{
    twenty_frames();
    seg[AT(12) + 50] ^= 0x01;
    memset(seg + AT(16) + 7, 0, 30);
    seg[AT(17)] ^= 0x80;
    struct wal_cursor cur;
    struct lsn_log l;
    struct wal_scan_result r;
    ck_assert_int_eq(scan_covered(true, 25, 0, &cur, &l, &r), WAL_SCAN_CLEAN);
    ck_assert_uint_eq(r.damaged, 2);
    ck_assert_uint_eq(r.damage_lsn, 12); /* the first region's */
    ck_assert_uint_eq(r.damage_offset, AT(12));
    ck_assert_uint_eq(r.damage_floor_lsn, 17); /* the last unverified frame of any region */
    ck_assert_uint_eq(r.frames, 17);
    ck_assert_uint_eq(l.n, 17);
    /* Damage both below and at from_lsn: the second is corruption, as without the first. */
    ck_assert_int_eq(scan_covered(true, 16, 0, &cur, &l, &r), WAL_SCAN_CORRUPT);
    ck_assert_uint_eq(r.bad_offset, AT(16));
    ck_assert_uint_eq(r.damaged, 1);
}
END_TEST

START_TEST(test_segment_header_rejections)
{
    struct wal_segment_header h = { .first_lsn = 7, .prev_slot = 1, .prev_crc = 2, .capacity = SEG }, out;
    u8 b[WAL_SEGMENT_HEADER_SIZE];
    wal_segment_header_encode(b, &h);
    ck_assert_int_eq(wal_segment_header_decode(b, sizeof(b), &out), WAL_SEGMENT_OK);
    ck_assert_uint_eq(out.first_lsn, 7);
    ck_assert_uint_eq(out.capacity, SEG);
    ck_assert_uint_eq(out.sync_window, 0); /* offsets 40..59 zero: a segment from before windows */
    h.sync_window = 4u << 20;
    wal_segment_header_encode(b, &h);
    ck_assert_int_eq(wal_segment_header_decode(b, sizeof(b), &out), WAL_SEGMENT_OK);
    ck_assert_uint_eq(out.sync_window, 4u << 20);
    h.sync_window = 0;
    wal_segment_header_encode(b, &h);
    ck_assert_int_eq(wal_segment_header_decode(b, sizeof(b) - 1, &out), WAL_SEGMENT_SHORT);
    struct {
        unsigned off;
        enum wal_segment_status want;
    } cases[] = { { 0, WAL_SEGMENT_BAD_MAGIC }, { 4, WAL_SEGMENT_BAD_VERSION }, { 6, WAL_SEGMENT_BAD_RESERVED },
                  { 28, WAL_SEGMENT_BAD_CHECKSUM }, { 29, WAL_SEGMENT_BAD_FLAGS }, { 31, WAL_SEGMENT_BAD_FLAGS }, { 45, WAL_SEGMENT_BAD_RESERVED }, { 59, WAL_SEGMENT_BAD_RESERVED },
                  { 40, WAL_SEGMENT_BAD_WINDOW }, { 41, WAL_SEGMENT_BAD_WINDOW }, { 16, WAL_SEGMENT_BAD_CHECKSUM },
                  { 42, WAL_SEGMENT_BAD_CHECKSUM }, { 61, WAL_SEGMENT_BAD_CHECKSUM } };
    for (size_t i = 0; i < ADB_ARRAY_LEN(cases); i++) {
        u8 c[WAL_SEGMENT_HEADER_SIZE];
        memcpy(c, b, sizeof(c));
        c[cases[i].off] ^= 0x01;
        ck_assert_int_eq(wal_segment_header_decode(c, sizeof(c), &out), cases[i].want);
    }
    struct wal_segment_header zero = h;
    zero.first_lsn = 1;
    wal_segment_header_encode(b, &zero);
    b[8] = 0; /* first_lsn 0 (checked before the checksum) */
    ck_assert_int_eq(wal_segment_header_decode(b, sizeof(b), &out), WAL_SEGMENT_BAD_LSN);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("scan");
    TCase *tc = tcase_create("decision table");
    tcase_add_test(tc, test_clean_end_after_frames);
    tcase_add_test(tc, test_empty_segment_is_clean);
    tcase_add_test(tc, test_wrong_lsn_is_corrupt);
    tcase_add_test(tc, test_slot_going_back_is_corrupt);
    tcase_add_test(tc, test_broken_chain_is_corrupt);
    tcase_add_test(tc, test_bad_payload_is_corrupt);
    tcase_add_test(tc, test_torn_last_frame);
    tcase_add_test(tc, test_invalid_frame_before_a_valid_one_is_corrupt);
    tcase_add_test(tc, test_data_beyond_any_torn_write_is_corrupt);
    tcase_add_test(tc, test_window_tear_keeps_valid_frames_after_the_damage_out);
    tcase_add_test(tc, test_window_damage_known_synced_is_corrupt);
    tcase_add_test(tc, test_window_data_beyond_it_is_corrupt);
    tcase_add_test(tc, test_callback_can_stop);
    tcase_add_test(tc, test_limit_reads_nothing_after_it);
    tcase_add_test(tc, test_covered_damage_is_passed_over);
    tcase_add_test(tc, test_covered_damage_every_rule);
    tcase_add_test(tc, test_covered_damage_must_find_from_lsn);
    tcase_add_test(tc, test_covered_damage_regions_are_counted);
    tcase_add_test(tc, test_segment_header_rejections);
    suite_add_tcase(s, tc);
    return s;
}
