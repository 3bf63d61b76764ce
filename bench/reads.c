/*
 * bench/reads.c — `allocdb-bench reads`: strict reads against a running allocdbd or cluster.
 * T threads, each with its own liballocdb client and connection, read resources chosen at
 * random for a while, one synchronous read at a time; the report is reads/s and the latency of
 * each (p50/p99/max). On a cluster every read waits for a read-index round (a heartbeat round a
 * quorum answers), and one round answers every read waiting for it, so reads/s grows with the
 * threads; run `allocdb-bench net` beside it to see reads against writes.
 */
#include "config.h"

#include "bench/bench.h"
#include "bench/hist.h"
#include "common/splitmix.h"
#include "net/allocdb.h"

#include <getopt.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct reads_opts {
    const char *addr;
    u64 threads, duration_ms, resources;
};

struct reader {
    const struct reads_opts *o;
    pthread_t tid;
    u64 seed, reads, found, failed;
    struct hist lat;
};

static u64 now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (u64)ts.tv_sec * 1000000000u + (u64)ts.tv_nsec;
}

static void *reader_run(void *arg)
{
    struct reader *r = arg;
    allocdb_client *c = allocdb_new();
    if (c == NULL || allocdb_set_addresses(c, r->o->addr) != ALLOCDB_OK) {
        r->failed++;
        allocdb_free(c);
        return NULL;
    }
    u64 end = now_ns() + r->o->duration_ms * 1000000u;
    u64 rng = r->seed;
    for (u64 t = now_ns(); t < end; t = now_ns()) {
        struct allocdb_resource out;
        allocdb_u128 id = (allocdb_u128)(splitmix_next(&rng) % r->o->resources) + 1;
        int rc = allocdb_get_resource(c, id, 0, &out);
        if (rc != ALLOCDB_OK) {
            r->failed++;
            continue;
        }
        hist_record(&r->lat, now_ns() - t);
        r->reads++;
        r->found += out.read == ALLOCDB_READ_FOUND;
    }
    allocdb_free(c);
    return NULL;
}

void bench_reads_usage(FILE *out)
{
    fprintf(out,
            "Usage: allocdb-bench reads [OPTIONS]\n\n"
            "Strict reads (get_resource of random ids) from T threads, one synchronous read each\n"
            "at a time, against a running allocdbd; on a cluster each waits for a read-index round.\n"
            "Reports reads/s and the latency per read (p50/p99/max).\n\n"
            "  --addr HOST:PORT[,...]  the server or the cluster's servers (default 127.0.0.1:7400)\n"
            "  --threads T             readers, each with its own connection (default 16)\n"
            "  --duration D            how long (500ms, 10s, 2m; default 10s)\n"
            "  --resources N           ids 1..N are read (default 1000; missing ones are answers too)\n"
            "  -h, --help              show this help\n\n"
            "Exit status: 0, 1 if some read got no answer, 64 on a usage error.\n");
}

int bench_reads_main(int argc, char **argv)
{
    struct reads_opts o = { .addr = "127.0.0.1:7400", .threads = 16, .duration_ms = 10000, .resources = 1000 };
    static const struct option longs[] = { { "addr", required_argument, NULL, 'a' },
                                           { "threads", required_argument, NULL, 't' },
                                           { "duration", required_argument, NULL, 'd' },
                                           { "resources", required_argument, NULL, 'r' },
                                           { "help", no_argument, NULL, 'h' },
                                           { NULL, 0, NULL, 0 } };
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        bool ok = true;
        switch (ch) {
        case 'a': o.addr = optarg; break;
        case 't': ok = bench_parse_u64("--threads", optarg, 1, 1024, &o.threads); break;
        case 'd': ok = bench_parse_duration("--duration", optarg, 1, &o.duration_ms); break;
        case 'r': ok = bench_parse_u64("--resources", optarg, 1, UINT64_MAX / 2, &o.resources); break;
        case 'h': bench_reads_usage(stdout); return 0;
        default: ok = false; break;
        }
        if (!ok) {
            bench_reads_usage(stderr);
            return 64;
        }
    }
    if (optind != argc) {
        bench_reads_usage(stderr);
        return 64;
    }
    struct reader *rs = calloc(o.threads, sizeof(*rs));
    if (rs == NULL)
        return 70;
    u64 t0 = now_ns();
    for (u64 i = 0; i < o.threads; i++) {
        rs[i].o = &o;
        rs[i].seed = t0 ^ (i * 0x9e3779b97f4a7c15ull);
        hist_reset(&rs[i].lat);
        if (pthread_create(&rs[i].tid, NULL, reader_run, &rs[i]) != 0) {
            fprintf(stderr, "allocdb-bench reads: cannot start thread %llu\n", (unsigned long long)i);
            return 70;
        }
    }
    struct hist all;
    hist_reset(&all);
    u64 reads = 0, found = 0, failed = 0;
    for (u64 i = 0; i < o.threads; i++) {
        pthread_join(rs[i].tid, NULL);
        hist_merge(&all, &rs[i].lat);
        reads += rs[i].reads;
        found += rs[i].found;
        failed += rs[i].failed;
    }
    double s = (double)(now_ns() - t0) / 1e9;
    printf("allocdb-bench reads: %llu threads against %s for %.1f s\n", (unsigned long long)o.threads, o.addr, s);
    printf("  reads/s     %.0f (%llu reads, %llu found, %llu without an answer)\n", (double)reads / s,
           (unsigned long long)reads, (unsigned long long)found, (unsigned long long)failed);
    printf("  latency     p50 %.3f ms  p99 %.3f ms  max %.3f ms (per read)\n", (double)hist_quantile(&all, 0.5) / 1e6,
           (double)hist_quantile(&all, 0.99) / 1e6, (double)hist_quantile(&all, 1.0) / 1e6);
    free(rs);
    return failed > 0 ? 1 : 0;
}
