/*
 * replica/vsr_message.h — replication messages (DESIGN.md §8): one header for every command,
 * a body whose shape the command fixes. Versioned, little-endian, checksummed; the reference is
 * docs/replication.md (byte by byte).
 *
 * Header layout (VSR_HEADER_SIZE = 96 bytes), the body follows it:
 *
 *   offset size field
 *        0    4 magic          "ADBR" (0x52424441)
 *        4    2 version        VSR_MESSAGE_VERSION
 *        6    1 command        enum vsr_command
 *        7    1 replica        the sender's index, < replica_count
 *        8   16 cluster_id     every message names its cluster
 *       24    8 view           the sender's view
 *       32    8 op             per command (an LSN, an op head)
 *       40    8 commit         the sender's commit point
 *       48    8 a              per command (see enum vsr_command)
 *       56    8 b              per command
 *       64    8 c              per command
 *       72    4 size           whole message bytes, header included: 96..VSR_MESSAGE_MAX
 *       76    1 replica_count  1..VSR_REPLICAS_MAX
 *       77   15 reserved       zero
 *       92    4 crc            CRC32C of bytes 0..91 followed by the body
 *
 * Pure: no I/O, no allocation. A decoder never trusts a field before the checksum passed, and a
 * fuzz target (fuzz/fuzz_vsr_message.c) holds it to that.
 */
#ifndef ADB_REPLICA_VSR_MESSAGE_H
#define ADB_REPLICA_VSR_MESSAGE_H

#include "common/types.h"
#include "wal/frame.h"

#define VSR_MESSAGE_MAGIC 0x52424441u /* bytes 'A' 'D' 'B' 'R' */
#define VSR_MESSAGE_VERSION 1
#define VSR_HEADER_SIZE 96
#define VSR_REPLICAS_MAX 6
#define VSR_ENTRY_HEADER_SIZE 32     /* one struct vsr_entry_header on the wire */
#define VSR_HEADERS_MAX 256          /* entry headers one message carries at most */
#define VSR_CHUNK_MAX 8192           /* snapshot bytes one chunk carries at most */
#define VSR_BODY_MAX VSR_CHUNK_MAX   /* >= WAL_FRAME_MAX and VSR_HEADERS_MAX * 32 */
#define VSR_MESSAGE_MAX (VSR_HEADER_SIZE + VSR_BODY_MAX)

/*
 * Commands, with what op, a, b, c and the body mean (unlisted: zero; the decoder checks it).
 * Times are the sender's monotonic clock in ns; "clock" is a replica's cluster-clock reading
 * (its logical time in ms, wal/slot_clock.h).
 */
enum vsr_command {
    /* Every replica to every other, each tick: liveness and clock samples.
     *   op = the last LSN its WAL holds, a = ping time (echoed by pong), b = LSN of the sender's newest snapshot
     *   image (0: none), c = the first LSN its WAL holds (0: not said), <= b + 1. */
    VSR_PING = 1,
    /*   a = the ping's time echoed, b = the responder's clock when it answered. */
    VSR_PONG = 2,
    /* Primary to backups: one log entry (or any replica answering request_prepare). op = its
     * LSN; body = exactly one WAL frame (wal/frame.h) with that LSN; its view <= the message's
     * view; a = 1: the sender knows it canonical in the message's view (verified), else 0. */
    VSR_PREPARE = 3,
    /* Backup to primary: the entry is durable here. op = LSN, a = the frame's crc. */
    VSR_PREPARE_OK = 4,
    /* Primary heartbeat: the commit point; a = round (read index; 0 if none). */
    VSR_COMMIT = 5,
    /* Backup answer to a commit: a = the round echoed, op = the backup's durable op head. */
    VSR_COMMIT_OK = 6,
    /* A replica asks to leave its view for `view`. */
    VSR_START_VIEW_CHANGE = 7,
    /* To the new view's primary: a = log_view (the sender's last normal view), op = op head;
     * body = entry headers, ascending by LSN, contiguous, ending at op (at most
     * VSR_HEADERS_MAX: the top of the log; the uncommitted suffix and a little below);
     * b = the entry just below them if the sender cannot read it back (0: none, or the
     * headers stop for room): it neither supplies that entry nor says it lacks it. */
    VSR_DO_VIEW_CHANGE = 8,
    /* New primary to all: the view's log. op = op head; a = nonce echoed from a
     * request_start_view (0 otherwise); body = entry headers as in do_view_change. */
    VSR_START_VIEW = 9,
    /* A replica behind the view (or recovering) asks its primary for start_view;
     * a = nonce (non-zero). */
    VSR_REQUEST_START_VIEW = 10,
    /* Repair: send me the entry op; a = its crc (0: whatever you hold intact). */
    VSR_REQUEST_PREPARE = 11,
    /* State transfer: send me bytes from offset a of your snapshot image at LSN op (op 0: your
     * newest). An image is the header of entry op (32 bytes, as in do_view_change) followed by
     * the snapshot image (replica/snapshot.h: the snapshot and its operation records). */
    VSR_REQUEST_SNAPSHOT = 12,
    /* op = the image's LSN, a = offset, b = the image's total size, c = CRC32C of the whole
     * image; body = bytes [a, a + len), len <= VSR_CHUNK_MAX, a + len <= b. */
    VSR_SNAPSHOT_CHUNK = 13,
    /* Primary to backups: consecutive log entries, as prepares would carry them one by one.
     * op = the last one's LSN, a = how many (2 or more); body = a WAL frames back to back, LSNs
     * op - a + 1 .. op, each chained to the one before (its prev_crc is that frame's crc), each
     * view <= the message's view. Fewer, larger messages: the primary sends what it sequenced
     * in one step (vsr_flush). */
    VSR_PREPARES = 14,
};
#define VSR_COMMAND_MAX 14

const char *vsr_command_name(u8 command);

/* A log entry's identity without its payload: enough to chain, compare and repair. On the
 * wire: lsn u64, view u64, request_slot u64, crc u32, prev_crc u32 (32 bytes). */
struct vsr_entry_header {
    u64 lsn;
    u64 view;
    u64 request_slot;
    u32 crc;      /* the WAL frame's crc */
    u32 prev_crc; /* the frame before it's crc */
};

struct vsr_header {
    u8 command;
    u8 replica;
    u8 replica_count;
    u128 cluster_id;
    u64 view;
    u64 op;
    u64 commit;
    u64 a, b, c;
    u32 size; /* decode: the message's size; encode: computed */
    u32 crc;  /* decode: as read; encode: computed */
};

/* A decoded message: the header and a view of the body inside the decoded buffer. */
struct vsr_message {
    struct vsr_header h;
    const u8 *body;
    u32 body_len;
    /* Filled by the decoder for the commands that carry them: */
    struct wal_frame frame; /* PREPARE: the decoded frame (payload points into body);
                               PREPARES: the first one */
    u32 header_count;       /* DO_VIEW_CHANGE, START_VIEW: entry headers in the body;
                               PREPARES: frames in it */
};

enum vsr_decode_status {
    VSR_DECODE_OK = 0,
    VSR_DECODE_SHORT,        /* fewer bytes than the header or its declared size */
    VSR_DECODE_BAD_MAGIC,
    VSR_DECODE_BAD_VERSION,
    VSR_DECODE_BAD_SIZE,     /* size < header or > VSR_MESSAGE_MAX */
    VSR_DECODE_BAD_CHECKSUM,
    VSR_DECODE_BAD_COMMAND,
    VSR_DECODE_BAD_REPLICA,  /* replica_count 0 or > max, replica >= replica_count */
    VSR_DECODE_BAD_RESERVED,
    VSR_DECODE_BAD_FIELD,    /* a field the command leaves zero is not, or out of range */
    VSR_DECODE_BAD_BODY,     /* the body does not have the command's shape */
    VSR_DECODE_TRAILING,     /* vsr_message_decode_exact: bytes after the message */
};

const char *vsr_decode_status_name(enum vsr_decode_status s);

/*
 * Encodes header h and body (body_len bytes; NULL if 0) into buf (cap >= VSR_HEADER_SIZE +
 * body_len). Fills h->size and h->crc and returns the size. Asserts the message is one the
 * decoder accepts (a malformed message is a programming error).
 */
u32 vsr_message_encode(u8 *buf, size_t cap, struct vsr_header *h, const u8 *body, u32 body_len);

/* Entry headers, encoded back to back into out (count * VSR_ENTRY_HEADER_SIZE bytes). */
void vsr_entry_headers_encode(u8 *out, const struct vsr_entry_header *hs, u32 count);
/* One entry header from its 32 bytes (no checks: the bytes come with a checksum of their own). */
void vsr_entry_header_decode(const u8 *p, struct vsr_entry_header *out);
/* The i-th entry header of a decoded DO_VIEW_CHANGE or START_VIEW body. */
void vsr_entry_header_get(const struct vsr_message *m, u32 i, struct vsr_entry_header *out);
/* The header of a WAL frame. */
void vsr_entry_header_of_frame(const struct wal_frame *f, struct vsr_entry_header *out);

/*
 * Decodes the message at the start of buf (len bytes; more may follow): checks in byte order
 * (magic, version, size, checksum, then the fields and the body's shape for its command) and
 * fills *out (OUT: body and frame.payload point into buf) and *msg_len (OUT: the message's
 * size). SHORT is the only status more bytes can change. On failure *out and *msg_len are
 * untouched. docs/replication.md lists every check.
 */
enum vsr_decode_status vsr_message_decode(const u8 *buf, size_t len, struct vsr_message *out,
                                          u32 *msg_len);
/* As vsr_message_decode, but buf holds exactly one message: TRAILING if bytes follow it (*out
 * untouched then too). */
enum vsr_decode_status vsr_message_decode_exact(const u8 *buf, size_t len,
                                                struct vsr_message *out);

#endif
