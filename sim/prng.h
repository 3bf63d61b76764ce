/*
 * sim/prng.h — the simulator's seeded pseudo-random generator: xoshiro256** (Blackman and
 * Vigna), seeded through SplitMix64 (common/splitmix.h).
 *
 * Every random choice the simulator makes (fault rates, delays, which packet to replay, when a
 * replica crashes) is drawn from a struct prng, so a run is a pure function of its seed and a
 * failing seed replays exactly, on any platform: the generator uses only 64-bit integer
 * arithmetic and no floating point. Probabilities are integers in parts per million
 * (PRNG_PPM = certainty), so a fault rate from a config is exact, never rounded.
 *
 * NOTES
 *   Initialization: prng_init(&p, seed) accepts every seed, 0 included: the state is four
 *   consecutive SplitMix64 outputs, a bijection of distinct counters, so never all zero
 *   (xoshiro's one forbidden state).
 *
 *   Streams: prng_fork(&p) consumes exactly one draw of p and returns a child generator
 *   seeded from it. After the fork the two never influence each other: the parent's next
 *   values are the same whether the child draws nothing or a million values, and the
 *   same as if the fork had been a plain prng_u64(&p). So the driver forks one stream per
 *   subsystem (network, each disk, the workload) at the start, and adding a draw to one
 *   subsystem does not shift what another one sees.
 *
 *   Cost: every function is O(1) except prng_below, which loops only on a rejection
 *   (probability < n / 2^64 per draw), so it terminates with probability 1 and in practice
 *   after one draw.
 *
 *   Thread safety: none; a struct prng is a plain value owned by its caller. Copying it
 *   copies the stream (both copies then produce the same values).
 */
#ifndef ADB_SIM_PRNG_H
#define ADB_SIM_PRNG_H

#include "common/types.h"

/* Certainty, in parts per million. */
#define PRNG_PPM 1000000u

struct prng {
    u64 s[4];
};

/* Seeds p; every seed gives a distinct stream. */
void prng_init(struct prng *p, u64 seed);
/* The next 64 uniformly distributed bits. */
u64 prng_u64(struct prng *p);
/* Uniform in [0, n); n > 0. Unbiased (Lemire's multiply-and-reject). */
u64 prng_below(struct prng *p, u64 n);
/* Uniform in [lo, hi], both inclusive; lo <= hi (lo = 0, hi = UINT64_MAX is allowed). */
u64 prng_range(struct prng *p, u64 lo, u64 hi);
/* True with probability ppm / PRNG_PPM; ppm <= PRNG_PPM. Draws once even for 0 and PRNG_PPM,
 * so a rate of 0 or certainty consumes the stream like any other rate. */
bool prng_chance(struct prng *p, u32 ppm);
/* A child stream: consumes exactly one draw of p (see NOTES). */
struct prng prng_fork(struct prng *p);

#endif
