/*
 * common/crc32c.h — CRC32C (Castagnoli), the checksum of WAL frames, snapshots and wire frames.
 *
 * crc32c(0, buf, len) is the standard CRC-32C (reflected, polynomial 0x82F63B78, initial and
 * final XOR 0xFFFFFFFF): "123456789" gives 0xE3069283. Calls chain: crc32c(crc32c(0, a), b)
 * equals the CRC of a followed by b.
 *
 * NOTES
 *   The x86-64 SSE4.2 crc32 instruction is used when the CPU has it (checked once, at the first
 *   call); otherwise a portable slicing-by-8 table version. Both are always compiled and tested
 *   against the same vectors. Thread safe: the only shared state is set up under pthread_once.
 */
#ifndef ADB_COMMON_CRC32C_H
#define ADB_COMMON_CRC32C_H

#include "common/types.h"

u32 crc32c(u32 crc, const void *buf, size_t len);

/* The two implementations, for tests and benchmarks. crc32c_hw requires crc32c_hw_available(). */
u32 crc32c_portable(u32 crc, const void *buf, size_t len);
u32 crc32c_hw(u32 crc, const void *buf, size_t len);
bool crc32c_hw_available(void);

#endif
