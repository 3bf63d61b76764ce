/*
 * wal/frame.c — encode and decode one WAL frame. The layout is documented in wal/frame.h.
 */
#include "config.h"

#include "wal/frame.h"

#include "common/assert.h"
#include "common/crc32c.h"
#include "common/le.h"

#define OFF_MAGIC 0
#define OFF_VERSION 4
#define OFF_TYPE 6
#define OFF_LSN 8
#define OFF_SLOT 16
#define OFF_VIEW 24
#define OFF_LEN 32
#define OFF_PREV 36
#define OFF_RESERVED 40
#define OFF_CRC 44
ADB_STATIC_ASSERT(OFF_CRC + 4 == WAL_FRAME_HEADER_SIZE, "crc is the last header field");

const char *wal_frame_status_name(enum wal_frame_status s)
{
    switch (s) {
    case WAL_FRAME_OK: return "ok";
    case WAL_FRAME_SHORT: return "short frame";
    case WAL_FRAME_BAD_MAGIC: return "bad magic";
    case WAL_FRAME_BAD_VERSION: return "unsupported version";
    case WAL_FRAME_BAD_TYPE: return "unknown record type";
    case WAL_FRAME_BAD_LSN: return "lsn 0";
    case WAL_FRAME_BAD_LENGTH: return "payload length over the limit";
    case WAL_FRAME_BAD_RESERVED: return "reserved bytes not zero";
    case WAL_FRAME_BAD_CHECKSUM: return "checksum mismatch";
    case WAL_FRAME_TRAILING: return "trailing bytes";
    }
    return "unknown";
}

static u32 frame_crc(const u8 *header, const u8 *payload, u32 payload_len)
{
    return crc32c(crc32c(0, header, OFF_CRC), payload, payload_len);
}

u32 wal_frame_encode(u8 *buf, size_t cap, struct wal_frame *f)
{
    ADB_ASSERT(f->record_type >= 1 && f->record_type <= WAL_RECORD_TYPE_MAX);
    ADB_ASSERT(f->lsn != 0);
    ADB_ASSERT(f->payload_len <= WAL_PAYLOAD_MAX);
    ADB_ASSERT(f->payload_len == 0 || f->payload != NULL);
    u32 size = wal_frame_size(f->payload_len);
    ADB_ASSERT(cap >= size);

    le_put_u32(buf + OFF_MAGIC, WAL_FRAME_MAGIC);
    le_put_u16(buf + OFF_VERSION, WAL_FRAME_VERSION);
    le_put_u16(buf + OFF_TYPE, f->record_type);
    le_put_u64(buf + OFF_LSN, f->lsn);
    le_put_u64(buf + OFF_SLOT, f->request_slot);
    le_put_u64(buf + OFF_VIEW, f->view);
    le_put_u32(buf + OFF_LEN, f->payload_len);
    le_put_u32(buf + OFF_PREV, f->prev_crc);
    le_put_u32(buf + OFF_RESERVED, 0);
    if (f->payload_len != 0 && buf + WAL_FRAME_HEADER_SIZE != f->payload)
        memmove(buf + WAL_FRAME_HEADER_SIZE, f->payload, f->payload_len);
    f->crc = frame_crc(buf, buf + WAL_FRAME_HEADER_SIZE, f->payload_len);
    le_put_u32(buf + OFF_CRC, f->crc);
    return size;
}

enum wal_frame_status wal_frame_decode(const u8 *buf, size_t len, struct wal_frame *out,
                                       u32 *frame_len)
{
    /* Not even a header: a torn write or the end of the data. */
    if (len < WAL_FRAME_HEADER_SIZE)
        return WAL_FRAME_SHORT;
    /* Not a frame at all (zeros past the end, or garbage). */
    if (le_get_u32(buf + OFF_MAGIC) != WAL_FRAME_MAGIC)
        return WAL_FRAME_BAD_MAGIC;
    /* A format this build does not understand: never guess. */
    if (le_get_u16(buf + OFF_VERSION) != WAL_FRAME_VERSION)
        return WAL_FRAME_BAD_VERSION;
    u16 type = le_get_u16(buf + OFF_TYPE);
    if (type < 1 || type > WAL_RECORD_TYPE_MAX)
        return WAL_FRAME_BAD_TYPE;
    /* LSN 0 means "none" everywhere; no entry has it. */
    u64 lsn = le_get_u64(buf + OFF_LSN);
    if (lsn == 0)
        return WAL_FRAME_BAD_LSN;
    /* The bound is checked before the length is used for anything. */
    u32 payload_len = le_get_u32(buf + OFF_LEN);
    if (payload_len > WAL_PAYLOAD_MAX)
        return WAL_FRAME_BAD_LENGTH;
    /* Reserved bytes must be zero so a later version can give them meaning. */
    if (le_get_u32(buf + OFF_RESERVED) != 0)
        return WAL_FRAME_BAD_RESERVED;
    /* The header claims more payload than there is: torn or truncated. */
    if (len - WAL_FRAME_HEADER_SIZE < payload_len)
        return WAL_FRAME_SHORT;
    /* Last: the checksum covers every header byte before it and the payload. */
    u32 crc = le_get_u32(buf + OFF_CRC);
    if (frame_crc(buf, buf + WAL_FRAME_HEADER_SIZE, payload_len) != crc)
        return WAL_FRAME_BAD_CHECKSUM;

    out->lsn = lsn;
    out->request_slot = le_get_u64(buf + OFF_SLOT);
    out->view = le_get_u64(buf + OFF_VIEW);
    out->payload_len = payload_len;
    out->prev_crc = le_get_u32(buf + OFF_PREV);
    out->crc = crc;
    out->record_type = type;
    out->payload = buf + WAL_FRAME_HEADER_SIZE;
    *frame_len = wal_frame_size(payload_len);
    return WAL_FRAME_OK;
}

enum wal_frame_status wal_frame_decode_exact(const u8 *buf, size_t len, struct wal_frame *out)
{
    u32 frame_len;
    enum wal_frame_status s = wal_frame_decode(buf, len, out, &frame_len);
    if (s != WAL_FRAME_OK)
        return s;
    if (frame_len != len)
        return WAL_FRAME_TRAILING;
    return WAL_FRAME_OK;
}
