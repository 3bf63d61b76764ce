/*
 * bench/bench.h — allocdb-bench subcommands.
 */
#ifndef ADB_BENCH_BENCH_H
#define ADB_BENCH_BENCH_H

#include <stdio.h>

/* `allocdb-bench core ...`: in-process state-machine scenarios. Returns an exit status. */
int bench_core_main(int argc, char **argv);
void bench_core_usage(FILE *out);

#endif
