/*
 * fuzz/fuzz_frame.c — fuzz target: the WAL frame decoder (wal/frame.h).
 *
 * The input is taken as bytes read from a WAL file. Properties:
 *   - decoding never reads outside the input and returns a known status;
 *   - decode_exact agrees with decode: the same failure, or OK exactly when the frame is the
 *     whole input (TRAILING otherwise);
 *   - an accepted frame re-encodes to the identical bytes (no two encodings of one frame, no
 *     field ignored by the decoder), with the same crc;
 *   - any prefix of an accepted frame is SHORT (a torn write is never a different frame);
 *   - on failure the output arguments are left alone.
 * Random bytes almost never carry a valid CRC, so each input is checked twice: as given, and
 * (when its header declares a payload that fits) with the crc field recomputed, which lets the
 * fuzzer explore every field value past the checksum; the resealed copy must then not fail
 * with BAD_CHECKSUM.
 */
#include "config.h"

#include "common/crc32c.h"
#include "common/le.h"
#include "fuzz/fuzz.h"
#include "wal/frame.h"

#include <stdlib.h>
#include <string.h>

/* Offsets of the layout in wal/frame.h. */
#define OFF_LEN 32
#define OFF_CRC 44

static void check_accepted(const uint8_t *data, size_t size, const struct wal_frame *f,
                           u32 frame_len)
{
    FUZZ_CHECK(frame_len == wal_frame_size(f->payload_len));
    FUZZ_CHECK(frame_len <= size && frame_len <= WAL_FRAME_MAX);
    FUZZ_CHECK(f->payload == data + WAL_FRAME_HEADER_SIZE);

    u8 buf[WAL_FRAME_MAX];
    struct wal_frame copy = *f;
    FUZZ_CHECK(wal_frame_encode(buf, sizeof(buf), &copy) == frame_len);
    FUZZ_CHECK(memcmp(buf, data, frame_len) == 0);
    FUZZ_CHECK(copy.crc == f->crc);

    struct wal_frame g;
    u32 g_len;
    FUZZ_CHECK(wal_frame_decode(data, frame_len - 1, &g, &g_len) == WAL_FRAME_SHORT);
}

/* All properties for one input; returns its decode status. */
static enum wal_frame_status check_input(const uint8_t *data, size_t size)
{
    struct wal_frame f, e;
    memset(&f, 0xA5, sizeof(f));
    memset(&e, 0xA5, sizeof(e));
    u32 frame_len = 0xA5A5A5A5u;
    enum wal_frame_status s = wal_frame_decode(data, size, &f, &frame_len);
    enum wal_frame_status x = wal_frame_decode_exact(data, size, &e);
    FUZZ_CHECK(s >= WAL_FRAME_OK && s < WAL_FRAME_TRAILING);
    FUZZ_CHECK(strcmp(wal_frame_status_name(s), "unknown") != 0);

    if (s != WAL_FRAME_OK) {
        FUZZ_CHECK(x == s);
        FUZZ_CHECK(frame_len == 0xA5A5A5A5u);
        return s;
    }
    FUZZ_CHECK(x == (frame_len == size ? WAL_FRAME_OK : WAL_FRAME_TRAILING));
    check_accepted(data, size, &f, frame_len);
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_input(data, size);
    u8 *copy = fuzz_resealed(data, size, WAL_FRAME_HEADER_SIZE, OFF_LEN, OFF_CRC, WAL_PAYLOAD_MAX);
    if (copy != NULL) {
        FUZZ_CHECK(check_input(copy, size) != WAL_FRAME_BAD_CHECKSUM);
        free(copy);
    }
    return 0;
}
