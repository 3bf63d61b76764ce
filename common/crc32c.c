/*
 * common/crc32c.c — CRC32C with an SSE4.2 fast path and a portable slicing-by-8 fallback.
 *
 * The portable version processes 8 bytes per step with eight 256-entry tables (table[k][b] is
 * the CRC of byte b followed by k zero bytes), the usual slicing-by-8 technique. The hardware
 * version feeds 8 bytes per crc32q instruction. Both work on the inverted register internally
 * and invert on entry and exit, so partial CRCs chain.
 */
#include "config.h"

#include "common/crc32c.h"

#include <pthread.h>
#include <string.h>

#define CRC32C_POLY 0x82F63B78u /* reflected Castagnoli polynomial */

static u32 crc_table[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;
static bool crc_hw;

static void crc32c_setup(void)
{
    for (u32 b = 0; b < 256; b++) {
        u32 c = b;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ CRC32C_POLY : c >> 1;
        crc_table[0][b] = c;
    }
    for (u32 b = 0; b < 256; b++)
        for (int k = 1; k < 8; k++)
            crc_table[k][b] = (crc_table[k - 1][b] >> 8) ^ crc_table[0][crc_table[k - 1][b] & 0xff];
#if defined(__x86_64__)
    __builtin_cpu_init();
    crc_hw = __builtin_cpu_supports("sse4.2");
#else
    crc_hw = false;
#endif
}

bool crc32c_hw_available(void)
{
    pthread_once(&crc_once, crc32c_setup);
    return crc_hw;
}

u32 crc32c_portable(u32 crc, const void *buf, size_t len)
{
    pthread_once(&crc_once, crc32c_setup);
    const u8 *p = buf;
    u32 c = ~crc;
    while (len >= 8) {
        u64 w;
        memcpy(&w, p, 8); /* little-endian host (configure checks) */
        w ^= c;
        c = crc_table[7][w & 0xff] ^ crc_table[6][(w >> 8) & 0xff] ^
            crc_table[5][(w >> 16) & 0xff] ^ crc_table[4][(w >> 24) & 0xff] ^
            crc_table[3][(w >> 32) & 0xff] ^ crc_table[2][(w >> 40) & 0xff] ^
            crc_table[1][(w >> 48) & 0xff] ^ crc_table[0][w >> 56];
        p += 8;
        len -= 8;
    }
    while (len--)
        c = (c >> 8) ^ crc_table[0][(c ^ *p++) & 0xff];
    return ~c;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) u32 crc32c_hw(u32 crc, const void *buf, size_t len)
{
    const u8 *p = buf;
    u64 c = (u32)~crc;
    while (len >= 8) {
        u64 w;
        memcpy(&w, p, 8);
        c = __builtin_ia32_crc32di(c, w);
        p += 8;
        len -= 8;
    }
    u32 c32 = (u32)c;
    while (len--)
        c32 = __builtin_ia32_crc32qi(c32, *p++);
    return ~c32;
}
#else
u32 crc32c_hw(u32 crc, const void *buf, size_t len)
{
    return crc32c_portable(crc, buf, len);
}
#endif

u32 crc32c(u32 crc, const void *buf, size_t len)
{
    if (crc32c_hw_available())
        return crc32c_hw(crc, buf, len);
    return crc32c_portable(crc, buf, len);
}
