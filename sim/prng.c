/*
 * sim/prng.c — xoshiro256** seeded through SplitMix64 (see prng.h).
 *
 * xoshiro256** is the generator Blackman and Vigna recommend for 64-bit output ("Scrambled
 * Linear Pseudorandom Number Generators", 2021): 256 bits of state, period 2^256 - 1, passes
 * BigCrush. Seeding through SplitMix64 is the authors' own recommendation, so that nearby
 * seeds (1, 2, 3, ...) give unrelated streams.
 */
#include "sim/prng.h"

#include "common/assert.h"
#include "common/splitmix.h"

/* A distinct constant mixed into a child's seed, so that a child never starts as a copy of a
 * stream the parent's seed space also reaches with prng_init(parent draw). */
#define PRNG_FORK_SALT 0x6a09e667f3bcc909ULL

static inline u64 rotl(u64 x, int k)
{
    return (x << k) | (x >> (64 - k));
}

void prng_init(struct prng *p, u64 seed)
{
    u64 sm = seed;
    for (u32 i = 0; i < 4; i++)
        p->s[i] = splitmix_next(&sm);
    /* xoshiro's one forbidden state; SplitMix64 is a bijection of its counter, so four
     * consecutive outputs are never all zero. */
    ADB_ASSERT((p->s[0] | p->s[1] | p->s[2] | p->s[3]) != 0);
}

u64 prng_u64(struct prng *p)
{
    u64 *s = p->s;
    u64 result = rotl(s[1] * 5, 7) * 9;
    u64 t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/*
 * Lemire, "Fast Random Integer Generation in an Interval" (2019): the high word of x * n is
 * uniform in [0, n) once the products whose low word falls below 2^64 mod n are rejected.
 * threshold = 2^64 mod n = (2^64 - n) mod n, computed in 64 bits as (-n) % n.
 */
u64 prng_below(struct prng *p, u64 n)
{
    ADB_ASSERT(n > 0);
    u128 m = (u128)prng_u64(p) * n;
    u64 low = U128_LO(m);
    if (low < n) {
        u64 threshold = (0 - n) % n;
        while (low < threshold) {
            m = (u128)prng_u64(p) * n;
            low = U128_LO(m);
        }
    }
    u64 r = U128_HI(m);
    ADB_ASSERT(r < n);
    return r;
}

u64 prng_range(struct prng *p, u64 lo, u64 hi)
{
    ADB_ASSERT(lo <= hi);
    if (hi - lo == UINT64_MAX)
        return prng_u64(p);
    return lo + prng_below(p, hi - lo + 1);
}

bool prng_chance(struct prng *p, u32 ppm)
{
    ADB_ASSERT(ppm <= PRNG_PPM);
    return prng_below(p, PRNG_PPM) < ppm;
}

struct prng prng_fork(struct prng *p)
{
    struct prng child;
    prng_init(&child, prng_u64(p) ^ PRNG_FORK_SALT);
    return child;
}
