/*
 * bench/hist.h — a small log-linear latency histogram (HDR-style) for allocdb-bench.
 *
 * Values are nanoseconds. Each power of two is split into HIST_SUB linear buckets, so a bucket
 * is at most 1/128 (0.8%) of its values wide; values below HIST_SUB ns are exact. Recording is a
 * count-leading-zeros and an increment, no allocation; the range covers 0 to 2^37 ns (about
 * 137 s), larger values land in the last bucket (max keeps the true value). 31 KiB.
 *
 * NOTES
 *   Percentiles report the upper bound of the bucket that holds them (like HdrHistogram's
 *   highest equivalent value), capped by the largest recorded value: a figure is never below
 *   the true one, above it by at most a bucket's width (0.8%), and never above the maximum.
 */
#ifndef ADB_BENCH_HIST_H
#define ADB_BENCH_HIST_H

#include "common/types.h"

#define HIST_SUB_BITS 7
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_MAX_BIT 36 /* the highest bucketed power of two: values >= 2^37 ns share the last bucket */
#define HIST_BUCKETS ((HIST_MAX_BIT - HIST_SUB_BITS + 2) * HIST_SUB)

struct hist {
    u64 count;
    u64 max;
    u64 sum;
    u64 bucket[HIST_BUCKETS];
};

void hist_reset(struct hist *h);
void hist_record(struct hist *h, u64 ns);
/* Adds every count of src to dst. */
void hist_merge(struct hist *dst, const struct hist *src);
/* The value (ns) at quantile q in [0, 1]; 0 for an empty histogram. */
u64 hist_quantile(const struct hist *h, double q);

#endif
