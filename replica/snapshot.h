/*
 * replica/snapshot.h — point-in-time images of the whole state machine, and their files.
 *
 * A snapshot holds everything sm_apply, the reads, the due query and the digest depend on: the
 * config, the LSN/slot watermarks, every resource, every reservation (live and terminal in
 * history), every operation record, the order of both retirement queues and of the expiration
 * index. So for any state S: decode(encode(S)) followed by the same commands gives the same
 * outcomes, reads and digests as S followed by them. Pool positions and free-stack order are
 * not kept: they affect neither outcomes nor the digest. Equal histories encode to equal bytes
 * (every section has a deterministic order), and decode then encode gives back the same bytes.
 *
 * Format (version 2), little-endian, fixed width, no padding between parts:
 *
 *   header        SNAPSHOT_HEADER_SIZE bytes (layout below), ending with its own CRC32C
 *   resources     resource_count    x SNAPSHOT_RESOURCE_SIZE,    then u32 CRC32C of those bytes
 *   reservations  reservation_count x SNAPSHOT_RESERVATION_SIZE, then u32 CRC32C of those bytes
 *
 * The operation records are not in the snapshot: the operation log (replica/oplog.h) holds
 * them, written as they were made, so a checkpoint does not rewrite the dedupe window. The
 * header counts them and carries their oldest LSN and hash sum, which decoding checks.
 *
 * Header:
 *   offset size field
 *        0    4 magic                 "ADBS" (0x53424441)
 *        4    2 version               SNAPSHOT_VERSION
 *        6    2 header_size           SNAPSHOT_HEADER_SIZE
 *        8    8 total_size            bytes in the whole snapshot; nothing may follow
 *       16    8 shard_id              \
 *       24    4 resource_capacity      |
 *       28    4 reservation_capacity   |
 *       32    4 operation_capacity     |  struct sm_config, field by field; must equal the
 *       36    4 expiration_capacity    |  config of the state machine it is loaded into
 *       40    8 max_ttl_slots          |
 *       48    8 dedupe_window_slots    |
 *       56    8 history_window_slots  /
 *       64    8 last_applied_lsn      the snapshot's LSN
 *       72    8 last_request_slot
 *       80    8 retired_watermark_lsn
 *       88    8 retired_through_slot
 *       96    4 resource_count
 *      100    4 reservation_count
 *      104    4 terminal_count        released or expired reservations (the retirement queue)
 *      108    4 reserved_count        reserved reservations (the expiration index)
 *      112    4 operation_count       live operation records (in the operation log)
 *      116    8 operations_sum        sum of sm_operation_hash over them
 *      124    4 reserved              zero
 *      128    8 oldest_operation_lsn  applied_lsn of the oldest of them, 0 if none
 *      136    4 reserved              zero
 *      140    4 header_crc            CRC32C of bytes 0..139
 *
 * Resource record (in resource-table order starting after an empty slot, which makes a
 * restored table lay out exactly like the original):
 *        0   16 resource_id
 *       16   16 current_reservation_id  0 = none
 *       32    8 version
 *       40    1 state                   enum sm_resource_state
 *       41    7 reserved                zero
 *
 * Reservation record. Order: the terminal_count terminal ones in retirement-queue order
 * (ascending (retire_after_slot, released_lsn)), then the reserved_count reserved ones in
 * expiration order (ascending (deadline_slot, reservation_id)), then the confirmed ones (in the
 * order of their resources in the resources section; decoders accept any order for these):
 *        0   16 reservation_id          (shard_id << 64) | created_lsn
 *       16   16 resource_id
 *       32   16 holder_id
 *       48    8 deadline_slot
 *       56    8 released_lsn            0 unless terminal
 *       64    8 retire_after_slot       0 unless terminal
 *       72    1 state                   enum sm_reservation_state
 *       73    7 reserved                zero
 *
 * Operation records (version 2: from the operation log, in the same 48-byte form; version 1:
 * in the snapshot), in retirement order (ascending applied_lsn):
 *        0   16 operation_id
 *       16    8 fingerprint_code        sm_fingerprint (low byte zero) | result code (enum sm_result)
 *       24    8 result_deadline_slot    0 on a failure and for create_resource
 *       32    8 applied_lsn
 *       40    8 retire_after_slot
 * The result's reservation id is not stored: a retry derives it (replica/sm.h).
 *
 * Version 1 (read, never written): a 128-byte header (bytes 116..123 zero, CRC at 124 over
 * 0..123) and a third section, operations: operation_count 80-byte records (operation_id, two
 * fingerprint words, result_reservation_id (16), result_deadline_slot, applied_lsn,
 * retire_after_slot, result_code (1), 7 zero bytes) and their CRC32C. A record is read as above:
 * the first fingerprint word with its low byte replaced by the result code, the reservation id
 * checked and dropped.
 *
 * NOTES
 *   Pure codec: snapshot_encode and snapshot_decode do no I/O and no allocation. Files go
 *   through a struct io (wal/io.h): snapshot_write; read one with io_read_file().
 *
 *   No digest in the header: sm_digest costs as much as all the rest of decoding, and it would
 *   only catch codec bugs, which the tests rule out (decode then encode gives the same bytes
 *   and the same digest). Compare sm_digest() of decoded states instead.
 *
 *   Initialization: snapshot_decode fills a state machine fresh from sm_init/sm_create with
 *   the caller's config (asserted: passing a used one is a programming error).
 *
 *   Errors: decoding never trusts a byte. Checks run header first (length, magic, version,
 *   header CRC, header fields), then the config, the length, the section CRCs, each record
 *   (ranges, order, duplicates, references between tables, capacities), then
 *   sm_check_invariants. The first failure is returned as a status, with a
 *   message naming the section, record index, byte offset and reason in `why`; the state
 *   machine's contents are then unspecified and the caller discards it. No input can make
 *   decoding crash or assert.
 */
#ifndef ADB_REPLICA_SNAPSHOT_H
#define ADB_REPLICA_SNAPSHOT_H

#include "common/types.h"
#include "replica/sm.h"
#include "wal/io.h"

#define SNAPSHOT_MAGIC 0x53424441u /* bytes 'A' 'D' 'B' 'S' */
#define SNAPSHOT_VERSION 2     /* what snapshot_encode writes */
#define SNAPSHOT_VERSION_MIN 1 /* the oldest snapshot_decode reads */
#define SNAPSHOT_HEADER_SIZE 144    /* version 2 */
#define SNAPSHOT_HEADER_SIZE_V1 128
#define SNAPSHOT_RESOURCE_SIZE 48
#define SNAPSHOT_RESERVATION_SIZE 80
#define SNAPSHOT_OPERATION_SIZE 48
#define SNAPSHOT_OPERATION_SIZE_V1 80
#define SNAPSHOT_CRC_SIZE 4

/* Exact size snapshot_encode will produce for this state. */
u64 snapshot_encoded_size(const sm_t *sm);

/* Encodes the state into buf (cap >= snapshot_encoded_size, asserted); returns bytes written. */
u64 snapshot_encode(const sm_t *sm, u8 *buf, u64 cap);

/* What the header says (snapshot_decode_info). */
struct snapshot_info {
    struct sm_config cfg;
    u64 last_applied_lsn;
    u64 last_request_slot;
    u64 retired_watermark_lsn;
    u64 retired_through_slot;
    u32 resources, reservations, operations;
    u32 terminal_reservations; /* released or expired */
    u32 reserved_reservations; /* in the expiration index */
    u64 size; /* total_size: bytes of the whole snapshot */
    u32 version;
    u64 operations_sum;       /* version 2: sum of sm_operation_hash of the live records */
    u64 oldest_operation_lsn; /* version 2: LSN of the oldest live record, 0 if none */
};

/*
 * Where a version 2 snapshot's operation records come from (they are not in its bytes: the
 * operation log holds them, replica/oplog.h). next() gives records in LSN order: 1 and a
 * record, 0 at the end, < 0 on an error (with `why`). Records retired at the snapshot's slot
 * and records past its LSN may be given: they are skipped. damage (may be NULL) names where the
 * source found damage, for the message when records are missing.
 */
struct snapshot_ops {
    int (*next)(void *ctx, struct sm_operation *out, char *why, size_t why_len);
    const char *(*damage)(void *ctx);
    void *ctx;
};

/* Whether a record an operation log gives is one of the snapshot's live records (not past its
 * LSN, not retired at its slot): what decoding keeps, and what an image carries. */
bool snapshot_operation_live(const struct snapshot_info *in, const struct sm_operation *o);

/* A source over an array of records (tests, tools). */
struct snapshot_ops_array {
    const struct sm_operation *ops;
    u32 count, next;
};
struct snapshot_ops snapshot_ops_from_array(struct snapshot_ops_array *a, const struct sm_operation *ops, u32 count);

enum snapshot_status {
    SNAPSHOT_OK = 0,
    SNAPSHOT_SHORT,           /* fewer bytes than the header, or than total_size */
    SNAPSHOT_BAD_MAGIC,
    SNAPSHOT_BAD_VERSION,
    SNAPSHOT_BAD_CHECKSUM,    /* header or section CRC32C mismatch */
    SNAPSHOT_BAD_HEADER,      /* header fields inconsistent (sizes, counts, scalars, reserved
                                 bytes, an embedded config that does not validate) */
    SNAPSHOT_CONFIG_MISMATCH, /* the embedded config differs from the caller's */
    SNAPSHOT_BAD_RECORD,      /* a record field out of range */
    SNAPSHOT_BAD_ORDER,       /* a retirement queue or the expiration order not sorted */
    SNAPSHOT_DUPLICATE,       /* an id present twice in a table */
    SNAPSHOT_BAD_REFERENCE,   /* a reference between tables does not resolve or agree */
    SNAPSHOT_OVER_CAPACITY,   /* more records than the config's capacities allow */
    SNAPSHOT_INVARIANT,       /* the rebuilt state fails sm_check_invariants */
    SNAPSHOT_TRAILING,        /* bytes after total_size */
    SNAPSHOT_OPERATIONS_MISSING, /* version 2: the records source does not give the live
                                    records the header counts (count, oldest LSN or sum) */
};
#define SNAPSHOT_STATUS_COUNT 15

const char *snapshot_status_name(enum snapshot_status s);

/*
 * Decodes and checks the header only (buf may hold just the header or the whole snapshot;
 * the sections are not read). On SNAPSHOT_OK fills *out. `why` (may be NULL) gets the reason
 * of a failure.
 */
enum snapshot_status snapshot_decode_info(const u8 *buf, u64 len, struct snapshot_info *out,
                                          char *why, size_t why_len);

/* SNAPSHOT_OK if a snapshot taken under `snap` may be loaded by a node running `node` (every
 * field equal), else SNAPSHOT_CONFIG_MISMATCH naming the first field that differs. */
enum snapshot_status snapshot_check_config(const struct sm_config *snap, const struct sm_config *node, char *why,
                                           size_t why_len);

/* What decoding checks before it reads a record: the header, the config against cfg, the length
 * (exactly len bytes) and every section's CRC. Needs no state machine. *out (may be NULL) gets
 * the header on SNAPSHOT_OK. */
enum snapshot_status snapshot_check_frame(const u8 *buf, u64 len, const struct sm_config *cfg, struct snapshot_info *out,
                                          char *why, size_t why_len);

/*
 * Decodes a whole snapshot (exactly len bytes) into `sm`, which must be fresh from
 * sm_init/sm_create with `cfg`. Validates everything before returning SNAPSHOT_OK (see NOTES);
 * on any other status `sm` must be discarded. A version 2 snapshot takes its operation records
 * from `ops` (NULL: none; then a snapshot that counts some fails OPERATIONS_MISSING); version 1
 * holds them itself and ignores `ops`.
 */
enum snapshot_status snapshot_decode(const u8 *buf, u64 len, const struct sm_config *cfg,
                                     const struct snapshot_ops *ops, sm_t *sm, char *why, size_t why_len);

/*
 * Images: a snapshot with its operation records, in one buffer — what state transfer ships to a
 * replica that is behind its peers' pruned WALs (replica/vsr.h). Layout: the snapshot's bytes
 * (total_size of its header), then operation_count records of SNAPSHOT_OPERATION_SIZE bytes in
 * the operation log's form (replica/oplog.h), ascending LSN, then the CRC32C of those records
 * (u32). Decoding checks the length, the records' CRC and then everything snapshot_decode
 * checks (the count, oldest LSN and sum of the records included).
 */
u64 snapshot_image_size(const sm_t *sm);
/* Encodes sm's image into buf (cap >= snapshot_image_size, asserted); returns bytes written. */
u64 snapshot_image_encode(const sm_t *sm, u8 *buf, u64 cap);
/* Decodes an image of exactly len bytes into sm (fresh from sm_init/sm_create with cfg). */
enum snapshot_status snapshot_image_decode(const u8 *buf, u64 len, const struct sm_config *cfg, sm_t *sm,
                                           char *why, size_t why_len);

/* "snapshot-<lsn as 20 digits>.snap" into out (cap bytes); false if it does not fit. */
bool snapshot_file_name(char *out, size_t cap, u64 lsn);

/* Parses a file name of exactly that pattern (20 digits, value <= UINT64_MAX) into *lsn. */
bool snapshot_parse_name(const char *name, u64 *lsn);
/* The same for the temporary file snapshot_write renames ("snapshot-<lsn>.tmp"). */
bool snapshot_parse_temp_name(const char *name, u64 *lsn);

/*
 * Writes dir/snapshot-<last applied lsn>.snap durably: encodes into a malloc'd buffer, writes
 * dir/snapshot-<lsn>.tmp (removing a stale one first; created exclusively), fsyncs and closes
 * it, renames it over the final name and syncs the directory. Returns 0 or -errno with a
 * message in `why` (may be NULL); on failure it removes what it created (best effort), so no
 * new final file is left behind.
 */
int snapshot_write(struct io *io, const char *dir, const sm_t *sm, char *why, size_t why_len);
/* The same, calling encoded(ctx) once the state is encoded and before anything is written:
 * from then on sm is not read (a forked child can unmap the state there, so that its parent's
 * writes stop copying pages for the rest of the write and sync). */
int snapshot_write_then(struct io *io, const char *dir, const sm_t *sm, void (*encoded)(void *ctx), void *ctx,
                        char *why, size_t why_len);


#endif
