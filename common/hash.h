/*
 * common/hash.h — fixed, seedless hashing for deterministic data structures.
 *
 * NOTES
 *   Every replica must build byte-identical tables from the same log, so hashes take no
 *   random seed. The mixer is the 64-bit finalizer of MurmurHash3 (fmix64), which spreads
 *   sequential IDs (the common case: LSN-derived reservation ids, counters as operation ids)
 *   evenly over the table. A fixed hash means a client that picks IDs adversarially can
 *   lengthen probe chains for its own keys; tables keep a load factor of at most 1/2 and
 *   probes are bounded by the table size, so the cost is latency, never correctness.
 */
#ifndef ADB_COMMON_HASH_H
#define ADB_COMMON_HASH_H

#include "common/types.h"

static inline u64 hash_mix64(u64 x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

/* Combines a running hash with one more 64-bit word; order-sensitive. */
static inline u64 hash_step(u64 h, u64 word)
{
    return hash_mix64(h ^ (word + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2)));
}

static inline u64 hash_u128(u128 key)
{
    return hash_mix64(U128_LO(key) ^ hash_mix64(U128_HI(key) ^ 0x2545f4914f6cdd1dULL));
}

#endif
