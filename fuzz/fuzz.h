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

/* Must return 0. `data` holds exactly `size` bytes. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A property of the code under test: stays on in every build, aborts with file and line. */
#define FUZZ_CHECK(cond) ADB_ASSERT(cond)

#endif
