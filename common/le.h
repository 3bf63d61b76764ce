/*
 * common/le.h — little-endian fixed-width field access for codecs.
 *
 * Every file and wire format in AllocDB is little-endian and fixed-width. Codecs read and write
 * fields one at a time through these helpers instead of casting buffers to structs, so the
 * encoding never depends on struct padding or alignment. (configure refuses big-endian hosts,
 * so memcpy of the native representation is the little-endian encoding.)
 */
#ifndef ADB_COMMON_LE_H
#define ADB_COMMON_LE_H

#include "common/types.h"

#include <string.h>

static inline void le_put_u16(u8 *p, u16 v) { memcpy(p, &v, 2); }
static inline void le_put_u32(u8 *p, u32 v) { memcpy(p, &v, 4); }
static inline void le_put_u64(u8 *p, u64 v) { memcpy(p, &v, 8); }
static inline void le_put_u128(u8 *p, u128 v)
{
    le_put_u64(p, U128_LO(v));
    le_put_u64(p + 8, U128_HI(v));
}

static inline u16 le_get_u16(const u8 *p)
{
    u16 v;
    memcpy(&v, p, 2);
    return v;
}
static inline u32 le_get_u32(const u8 *p)
{
    u32 v;
    memcpy(&v, p, 4);
    return v;
}
static inline u64 le_get_u64(const u8 *p)
{
    u64 v;
    memcpy(&v, p, 8);
    return v;
}
static inline u128 le_get_u128(const u8 *p)
{
    return U128_MAKE(le_get_u64(p + 8), le_get_u64(p));
}

/* True if all `len` bytes at p are zero. Word at a time: it also runs over the megabytes of a
 * preallocated WAL segment's tail. */
static inline bool le_all_zero(const u8 *p, size_t len)
{
    while (len > 0 && ((uintptr_t)p & 7) != 0) {
        if (*p++ != 0)
            return false;
        len--;
    }
    while (len >= 64) {
        u64 w[8];
        memcpy(w, p, 64);
        if ((w[0] | w[1] | w[2] | w[3] | w[4] | w[5] | w[6] | w[7]) != 0)
            return false;
        p += 64;
        len -= 64;
    }
    while (len-- > 0)
        if (*p++ != 0)
            return false;
    return true;
}

#endif
