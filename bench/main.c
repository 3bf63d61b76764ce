/*
 * bench/main.c — allocdb-bench: AllocDB's own benchmark tool. Dispatches to subcommands.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "bench/bench.h"

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: allocdb-bench COMMAND [OPTIONS]\n"
            "\n"
            "Commands:\n"
            "  core     drive the state machine in-process (no I/O): hot-spot contention,\n"
            "           retry pressure and a uniform workload; --durable adds the WAL\n"
            "  recovery measure WAL replay and snapshot load on real files\n"
            "  net      load a running allocdbd over TCP (hotspot, uniform, retry-storm,\n"
            "           expiry): commands/s, latency percentiles, results, server fsyncs\n"
            "  reads    strict reads from many threads (a cluster's read index): reads/s, latency\n"
            "\n"
            "Run 'allocdb-bench COMMAND --help' for a command's options.\n"
            "  -h, --help     show this help\n"
            "  -V, --version  show the version\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 64;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "-V") == 0 || strcmp(argv[1], "--version") == 0) {
        printf("allocdb-bench %s\n", PACKAGE_VERSION);
        return 0;
    }
    if (strcmp(argv[1], "core") == 0)
        return bench_core_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "recovery") == 0)
        return bench_recovery_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "net") == 0)
        return bench_net_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "reads") == 0)
        return bench_reads_main(argc - 1, argv + 1);
    fprintf(stderr, "allocdb-bench: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 64;
}
