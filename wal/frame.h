/*
 * wal/frame.h — the WAL frame: one log entry (one LSN) as it is written to disk and shipped.
 *
 * Byte layout, little-endian, fixed width (the header is 48 bytes, the payload follows it):
 *
 *   offset size field
 *        0    4 magic        "ADBW" (0x57424441)
 *        4    2 version      WAL_FRAME_VERSION
 *        6    2 record_type  enum wal_record_type
 *        8    8 lsn          >= 1; consecutive frames have consecutive LSNs
 *       16    8 request_slot logical slot stamped by the sequencer; never decreases
 *       24    8 view         replication view the entry was proposed in (0 on a single node)
 *       32    4 payload_len  <= WAL_PAYLOAD_MAX
 *       36    4 prev_crc     the crc field of the previous frame (the hash chain)
 *       40    4 reserved     zero
 *       44    4 crc          CRC32C of bytes 0..43 followed by the payload
 *       48    - payload      payload_len bytes (for commands: wal/command.h)
 *
 * There is no padding between frames. A frame is valid when every check below passes; each
 * failure has its own status so recovery and `allocdb-inspect` can say which one. The chain
 * (prev_crc) and the LSN/slot order are checked by the reader of a sequence of frames
 * (wal/scan.h), not here: this codec looks at one frame at a time.
 *
 * Pure: no I/O, no allocation.
 */
#ifndef ADB_WAL_FRAME_H
#define ADB_WAL_FRAME_H

#include "common/types.h"

#define WAL_FRAME_MAGIC 0x57424441u /* bytes 'A' 'D' 'B' 'W' */
#define WAL_FRAME_VERSION 1
#define WAL_FRAME_HEADER_SIZE 48
#define WAL_PAYLOAD_MAX 512
#define WAL_FRAME_MAX (WAL_FRAME_HEADER_SIZE + WAL_PAYLOAD_MAX)

enum wal_record_type {
    WAL_RECORD_COMMAND = 1, /* a client command: create_resource, reserve, confirm, release */
    WAL_RECORD_EXPIRE = 2,  /* an internal expire proposed by the primary */
};
#define WAL_RECORD_TYPE_MAX 2

struct wal_frame {
    u64 lsn;
    u64 request_slot;
    u64 view;
    u32 payload_len;
    u32 prev_crc;
    u32 crc;
    u16 record_type;
    const u8 *payload; /* decode: points into the decoded buffer */
};

enum wal_frame_status {
    WAL_FRAME_OK = 0,
    WAL_FRAME_SHORT,        /* fewer bytes than the header or the declared payload */
    WAL_FRAME_BAD_MAGIC,
    WAL_FRAME_BAD_VERSION,
    WAL_FRAME_BAD_TYPE,
    WAL_FRAME_BAD_LSN,      /* lsn 0 */
    WAL_FRAME_BAD_LENGTH,   /* payload_len > WAL_PAYLOAD_MAX */
    WAL_FRAME_BAD_RESERVED, /* reserved bytes not zero */
    WAL_FRAME_BAD_CHECKSUM,
    WAL_FRAME_TRAILING,     /* wal_frame_decode_exact only: bytes after the frame */
};

const char *wal_frame_status_name(enum wal_frame_status s);

/* Size on disk of a frame with this payload length. */
static inline u32 wal_frame_size(u32 payload_len)
{
    return WAL_FRAME_HEADER_SIZE + payload_len;
}

/*
 * Encodes a frame into buf (cap bytes, at least wal_frame_size(f->payload_len)) from the fields
 * of f and its payload; computes the crc, stores it in f->crc (OUT) and returns the frame size.
 * Asserts that the fields are valid: encoding an invalid frame is a programming error.
 */
u32 wal_frame_encode(u8 *buf, size_t cap, struct wal_frame *f);

/*
 * Decodes the frame at the start of buf (len bytes; more may follow). On WAL_FRAME_OK fills
 * *out (payload points into buf) and *frame_len (OUT). Checks run in byte order, magic first,
 * checksum last, so a short or garbled buffer is reported by its first bad field.
 */
enum wal_frame_status wal_frame_decode(const u8 *buf, size_t len, struct wal_frame *out,
                                       u32 *frame_len);

/* As wal_frame_decode, but buf must hold exactly one frame: trailing bytes are rejected. */
enum wal_frame_status wal_frame_decode_exact(const u8 *buf, size_t len, struct wal_frame *out);

#endif
