/*
 * common/assert.h — assertions that stay on in production builds.
 *
 * NOTES
 *   ADB_ASSERT guards programmer errors and corrupted data; it is never compiled out
 *   (NDEBUG does not touch it), because continuing with a broken invariant in a database
 *   means handing out a resource twice. A failed assertion prints the expression, file and
 *   line to stderr and aborts, so the supervisor sees a crash and recovery starts from disk.
 *   Operating conditions (full tables, bad input, I/O errors) are result codes, never asserts.
 *
 *   ADB_DEBUG_ASSERT is for checks too expensive for the hot path (full invariant scans);
 *   it is active only when configured with --enable-debug.
 */
#ifndef ADB_COMMON_ASSERT_H
#define ADB_COMMON_ASSERT_H

#if defined(__GNUC__)
#define ADB_LIKELY(x) __builtin_expect(!!(x), 1)
#define ADB_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define ADB_LIKELY(x) (x)
#define ADB_UNLIKELY(x) (x)
#endif

__attribute__((noreturn, cold)) void adb_assert_fail(const char *expr, const char *file, int line,
                                                     const char *func);

#define ADB_ASSERT(cond)                                                                  \
    do {                                                                                  \
        if (ADB_UNLIKELY(!(cond)))                                                        \
            adb_assert_fail(#cond, __FILE__, __LINE__, __func__);                         \
    } while (0)

#ifdef ADB_DEBUG
#define ADB_DEBUG_ASSERT(cond) ADB_ASSERT(cond)
#else
#define ADB_DEBUG_ASSERT(cond) ((void)0)
#endif

#endif
