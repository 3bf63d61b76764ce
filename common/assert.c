/*
 * common/assert.c — the failure path of ADB_ASSERT.
 *
 * NOTES
 *   Kept out of line and marked cold so the check in the hot path is one compare and one
 *   predictable branch. Uses only async-signal-safe-ish stdio to stderr, then abort(), so a
 *   core dump (if enabled) shows the failing frame.
 */
#include "common/assert.h"

#include <stdio.h>
#include <stdlib.h>

void adb_assert_fail(const char *expr, const char *file, int line, const char *func)
{
    fprintf(stderr, "allocdb: assertion failed: %s (%s:%d, %s)\n", expr, file, line, func);
    fflush(stderr);
    abort();
}
