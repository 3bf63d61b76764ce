/*
 * bench/bench.h — allocdb-bench subcommands.
 */
#ifndef ADB_BENCH_BENCH_H
#define ADB_BENCH_BENCH_H

#include <stdio.h>

#include "common/types.h"

/* `allocdb-bench core ...`: in-process state-machine scenarios. Returns an exit status. */
int bench_core_main(int argc, char **argv);
void bench_core_usage(FILE *out);

/* `allocdb-bench recovery ...`: WAL replay and snapshot load on real files. */
int bench_recovery_main(int argc, char **argv);
void bench_recovery_usage(FILE *out);

/* `allocdb-bench net ...`: load a running allocdbd through the wire protocol (bench/net.c). */
int bench_net_main(int argc, char **argv);
void bench_net_usage(FILE *out);

/* `allocdb-bench reads ...`: read-index reads against a running allocdbd (bench/reads.c). */
int bench_reads_main(int argc, char **argv);
void bench_reads_usage(FILE *out);

/* "500ms", "10s", "2m", "1h" (a unit is required) into milliseconds, at least min_ms. */
bool bench_parse_duration(const char *opt, const char *s, u64 min_ms, u64 *out);

/* Parses a decimal in [min, max] for option opt; prints the reason and returns false if not. */
bool bench_parse_u64(const char *opt, const char *s, u64 min, u64 max, u64 *out);

#endif
