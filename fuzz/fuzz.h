/*
 * fuzz/fuzz.h — what every fuzz target defines, and the check it uses for its properties.
 *
 * A target is one file fuzz/fuzz_<name>.c defining LLVMFuzzerTestOneInput. It is linked either
 * with libFuzzer (fuzz/fuzz_<name>, --enable-fuzzing) or with fuzz/replay.c (fuzz/replay_<name>,
 * a check program). A property that does not hold aborts: libFuzzer saves the input as a crash,
 * and the replay test fails.
 */
#ifndef ADB_FUZZ_FUZZ_H
#define ADB_FUZZ_FUZZ_H

#include <stddef.h>
#include <stdint.h>

#include "common/assert.h"
#include "common/crc32c.h"
#include "common/le.h"

#include <stdlib.h>
#include <string.h>

/* Must return 0. `data` holds exactly `size` bytes. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A property of the code under test: stays on in every build, aborts with file and line. */
#define FUZZ_CHECK(cond) ADB_ASSERT(cond)

/*
 * For formats whose CRC32C covers the header up to the crc field and then a body whose length
 * is a u32 in the header (WAL frames, wire frames): a malloc'd copy of the input with that crc
 * recomputed, so the decoder's checks behind the checksum get exercised too. NULL if the input
 * has no complete header, or its declared body is above body_max or not all there.
 */
static inline u8 *fuzz_resealed(const uint8_t *data, size_t size, size_t header_size, size_t len_off,
                                size_t crc_off, u32 body_max)
{
    if (size < header_size)
        return NULL;
    u32 body_len = le_get_u32(data + len_off);
    if (body_len > body_max || body_len > size - header_size)
        return NULL;
    u8 *copy = malloc(size);
    FUZZ_CHECK(copy != NULL);
    memcpy(copy, data, size);
    le_put_u32(copy + crc_off, crc32c(crc32c(0, copy, crc_off), copy + header_size, body_len));
    return copy;
}

#endif
