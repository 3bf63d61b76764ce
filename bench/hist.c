/*
 * bench/hist.c — the log-linear latency histogram (bench/hist.h).
 */
#include "config.h"

#include <string.h>

#include "bench/hist.h"

void hist_reset(struct hist *h)
{
    memset(h, 0, sizeof(*h));
}

static u32 bucket_of(u64 v)
{
    if (v < HIST_SUB)
        return (u32)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v); /* v in [2^e, 2^(e+1)), e >= HIST_SUB_BITS */
    if (e > HIST_MAX_BIT)
        return HIST_BUCKETS - 1;
    u32 sub = (u32)(v >> (e - HIST_SUB_BITS)) & (HIST_SUB - 1);
    u32 i = (e - HIST_SUB_BITS + 1) * HIST_SUB + sub;
    return i < HIST_BUCKETS ? i : HIST_BUCKETS - 1;
}

/* The largest value that lands in bucket i. */
static u64 bucket_upper(u32 i)
{
    if (i < HIST_SUB)
        return i;
    u32 e = i / HIST_SUB - 1 + HIST_SUB_BITS, sub = i % HIST_SUB;
    u64 width = (u64)1 << (e - HIST_SUB_BITS);
    return ((u64)1 << e) + (u64)(sub + 1) * width - 1;
}

void hist_record(struct hist *h, u64 ns)
{
    h->bucket[bucket_of(ns)]++;
    h->count++;
    h->sum += ns;
    if (ns > h->max)
        h->max = ns;
}

void hist_merge(struct hist *dst, const struct hist *src)
{
    if (src->count == 0)
        return;
    for (u32 i = 0; i < HIST_BUCKETS; i++)
        dst->bucket[i] += src->bucket[i];
    dst->count += src->count;
    dst->sum += src->sum;
    if (src->max > dst->max)
        dst->max = src->max;
}

u64 hist_quantile(const struct hist *h, double q)
{
    if (h->count == 0)
        return 0;
    if (q < 0)
        q = 0;
    if (q > 1)
        q = 1;
    /* The rank of the value: ceil(q * count), at least 1. */
    u64 rank = (u64)(q * (double)h->count);
    if ((double)rank < q * (double)h->count)
        rank++;
    if (rank == 0)
        rank = 1;
    u64 seen = 0;
    for (u32 i = 0; i < HIST_BUCKETS; i++) {
        seen += h->bucket[i];
        if (seen >= rank) {
            u64 v = bucket_upper(i);
            return v < h->max ? v : h->max;
        }
    }
    return h->max;
}
