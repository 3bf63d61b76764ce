/*
 * common/splitmix.h — SplitMix64, a small seeded pseudo-random generator.
 *
 * NOTES
 *   For tests, the simulator and benchmarks only: the state machine and codecs never draw
 *   randomness. Seeded and platform-independent, so a failing seed reproduces anywhere.
 */
#ifndef ADB_COMMON_SPLITMIX_H
#define ADB_COMMON_SPLITMIX_H

#include "common/types.h"

static inline u64 splitmix_next(u64 *state)
{
    u64 z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

#endif
