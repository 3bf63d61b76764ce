/*
 * common/types.h — fixed-width types shared by every module.
 *
 * NOTES
 *   IDs (resource, holder, operation, client, reservation) are unsigned 128-bit integers.
 *   We use the compiler's unsigned __int128 (gcc and clang on every 64-bit target we build
 *   for) rather than a two-word struct: comparisons and shifts stay plain C expressions.
 *   Wire and file codecs never memcpy a u128; they write its two little-endian halves.
 */
#ifndef ADB_COMMON_TYPES_H
#define ADB_COMMON_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;
typedef int32_t i32;
typedef int64_t i64;
__extension__ typedef unsigned __int128 u128;

#define U128_HI(x) ((u64)((u128)(x) >> 64))
#define U128_LO(x) ((u64)(x))
#define U128_MAKE(hi, lo) (((u128)(u64)(hi) << 64) | (u128)(u64)(lo))

#define ADB_CACHE_LINE 64

#define ADB_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#define ADB_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
