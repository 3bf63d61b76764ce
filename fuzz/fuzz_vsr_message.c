/*
 * fuzz/fuzz_vsr_message.c — fuzz target: the replication message decoder
 * (replica/vsr_message.h).
 *
 * The input is taken as bytes read from a peer connection. Properties:
 *   - decoding never reads outside the input and returns a known status;
 *   - decode_exact agrees with decode: the same failure, or OK exactly when the message is the
 *     whole input (TRAILING otherwise);
 *   - on failure the output arguments are left alone;
 *   - an accepted message re-encodes to the identical bytes (no two encodings of one message,
 *     no field ignored by the decoder), with the same crc and size;
 *   - what the decoder hands out holds what the format promises: the body points into the
 *     input; a prepare's frame is the whole body and has the message's op; prepares' frames
 *     fill the body, count a, run to op and chain; a view change's
 *     entry headers are contiguous, end at op and chain by crc;
 *   - any prefix of an accepted message is SHORT (a partial read is never another message).
 * Random bytes almost never carry a valid CRC, so each input is checked twice: as given, and
 * (when its header declares a size that is in range and all there) with the crc recomputed,
 * which lets the fuzzer explore every field past the checksum; the resealed copy must then not
 * fail with BAD_CHECKSUM.
 */
#include "config.h"

#include "common/crc32c.h"
#include "common/le.h"
#include "fuzz/fuzz.h"
#include "replica/vsr_message.h"

#include <stdlib.h>
#include <string.h>

/* Offsets of the layout in replica/vsr_message.h. */
#define OFF_SIZE 72
#define OFF_CRC 92

/* The entry headers of a decoded do_view_change or start_view, read back one by one. */
static void check_entry_headers(const struct vsr_message *m)
{
    FUZZ_CHECK(m->header_count <= VSR_HEADERS_MAX);
    FUZZ_CHECK((u64)m->header_count * VSR_ENTRY_HEADER_SIZE == m->body_len);
    struct vsr_entry_header prev = {0}, e;
    for (u32 i = 0; i < m->header_count; i++) {
        vsr_entry_header_get(m, i, &e);
        FUZZ_CHECK(e.lsn >= 1);
        FUZZ_CHECK(e.view <= m->h.view);
        if (m->h.command == VSR_DO_VIEW_CHANGE)
            FUZZ_CHECK(e.view <= m->h.a);
        if (i > 0) {
            FUZZ_CHECK(e.lsn == prev.lsn + 1);
            FUZZ_CHECK(e.view >= prev.view);
            FUZZ_CHECK(e.request_slot >= prev.request_slot);
            FUZZ_CHECK(e.prev_crc == prev.crc);
        }
        prev = e;
    }
    if (m->header_count > 0)
        FUZZ_CHECK(prev.lsn == m->h.op);
}

static void check_accepted(const uint8_t *data, size_t size, const struct vsr_message *m,
                           u32 msg_len)
{
    FUZZ_CHECK(msg_len == m->h.size);
    FUZZ_CHECK(msg_len <= size && msg_len <= VSR_MESSAGE_MAX);
    FUZZ_CHECK(m->body == data + VSR_HEADER_SIZE);
    FUZZ_CHECK(m->body_len == msg_len - VSR_HEADER_SIZE);
    FUZZ_CHECK(m->h.command >= 1 && m->h.command <= VSR_COMMAND_MAX);
    FUZZ_CHECK(strcmp(vsr_command_name(m->h.command), "unknown") != 0);
    FUZZ_CHECK(m->h.replica < m->h.replica_count && m->h.replica_count <= VSR_REPLICAS_MAX);

    switch (m->h.command) {
    case VSR_PREPARE:
        FUZZ_CHECK(m->frame.lsn == m->h.op);
        FUZZ_CHECK(m->frame.view <= m->h.view);
        FUZZ_CHECK(wal_frame_size(m->frame.payload_len) == m->body_len);
        FUZZ_CHECK(m->frame.payload == m->body + WAL_FRAME_HEADER_SIZE);
        break;
    case VSR_PREPARES: { /* a frames back to back, op - a + 1 .. op, chained */
        FUZZ_CHECK(m->h.a >= 2 && m->h.a <= m->h.op && m->header_count == m->h.a);
        FUZZ_CHECK(m->frame.lsn == m->h.op - m->h.a + 1);
        FUZZ_CHECK(m->frame.payload == m->body + WAL_FRAME_HEADER_SIZE);
        u32 at = 0;
        struct wal_frame f, prev = {0};
        for (u32 i = 0; i < m->header_count; i++) {
            u32 used;
            FUZZ_CHECK(wal_frame_decode(m->body + at, m->body_len - at, &f, &used) == WAL_FRAME_OK);
            FUZZ_CHECK(f.lsn == m->frame.lsn + i && f.view <= m->h.view);
            FUZZ_CHECK(i == 0 || f.prev_crc == prev.crc);
            prev = f;
            at += used;
        }
        FUZZ_CHECK(at == m->body_len);
        break;
    }
    case VSR_DO_VIEW_CHANGE:
    case VSR_START_VIEW: check_entry_headers(m); break;
    case VSR_SNAPSHOT_CHUNK:
        FUZZ_CHECK(m->body_len >= 1 && m->body_len <= VSR_CHUNK_MAX);
        FUZZ_CHECK(m->h.a <= m->h.b && m->body_len <= m->h.b - m->h.a);
        break;
    default: FUZZ_CHECK(m->body_len == 0);
    }

    static u8 buf[VSR_MESSAGE_MAX];
    struct vsr_header copy = m->h;
    FUZZ_CHECK(vsr_message_encode(buf, sizeof(buf), &copy, m->body, m->body_len) == msg_len);
    FUZZ_CHECK(memcmp(buf, data, msg_len) == 0);
    FUZZ_CHECK(copy.crc == m->h.crc);
    FUZZ_CHECK(copy.size == m->h.size);

    struct vsr_message g;
    u32 g_len;
    FUZZ_CHECK(vsr_message_decode(data, msg_len - 1, &g, &g_len) == VSR_DECODE_SHORT);
    FUZZ_CHECK(vsr_message_decode(data, VSR_HEADER_SIZE - 1, &g, &g_len) == VSR_DECODE_SHORT);
}

/* All properties for one input; returns its decode status. */
static enum vsr_decode_status check_input(const uint8_t *data, size_t size)
{
    struct vsr_message m, e, untouched;
    memset(&m, 0xA5, sizeof(m));
    memset(&e, 0xA5, sizeof(e));
    memset(&untouched, 0xA5, sizeof(untouched));
    u32 msg_len = 0xA5A5A5A5u;
    enum vsr_decode_status s = vsr_message_decode(data, size, &m, &msg_len);
    enum vsr_decode_status x = vsr_message_decode_exact(data, size, &e);
    FUZZ_CHECK(s >= VSR_DECODE_OK && s < VSR_DECODE_TRAILING);
    FUZZ_CHECK(strcmp(vsr_decode_status_name(s), "unknown") != 0);

    if (s != VSR_DECODE_OK) {
        FUZZ_CHECK(x == s);
        FUZZ_CHECK(msg_len == 0xA5A5A5A5u);
        FUZZ_CHECK(memcmp(&m, &untouched, sizeof(m)) == 0);
        FUZZ_CHECK(memcmp(&e, &untouched, sizeof(e)) == 0);
        return s;
    }
    FUZZ_CHECK(x == (msg_len == size ? VSR_DECODE_OK : VSR_DECODE_TRAILING));
    if (x == VSR_DECODE_TRAILING)
        FUZZ_CHECK(memcmp(&e, &untouched, sizeof(e)) == 0);
    check_accepted(data, size, &m, msg_len);
    return s;
}

/* A malloc'd copy of the input with its crc recomputed over the declared size, or NULL when
 * that size is out of range or not all there. (fuzz_resealed takes a body length; this
 * header's size field counts the header too.) */
static u8 *resealed(const uint8_t *data, size_t size)
{
    if (size < VSR_HEADER_SIZE)
        return NULL;
    u32 msg_size = le_get_u32(data + OFF_SIZE);
    if (msg_size < VSR_HEADER_SIZE || msg_size > VSR_MESSAGE_MAX || msg_size > size)
        return NULL;
    u8 *copy = malloc(size);
    FUZZ_CHECK(copy != NULL);
    memcpy(copy, data, size);
    u32 crc = crc32c(crc32c(0, copy, OFF_CRC), copy + VSR_HEADER_SIZE, msg_size - VSR_HEADER_SIZE);
    le_put_u32(copy + OFF_CRC, crc);
    return copy;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_input(data, size);
    u8 *copy = resealed(data, size);
    if (copy != NULL) {
        FUZZ_CHECK(check_input(copy, size) != VSR_DECODE_BAD_CHECKSUM);
        free(copy);
    }
    return 0;
}
