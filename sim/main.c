/*
 * sim/main.c — allocdb-sim: runs seeds of the deterministic cluster simulator (sim/sim.h).
 */
#include "config.h"

#include "sim/sim.h"

#include "replica/vsr.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <unistd.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The seed running, for the abort handler: an assertion in a core ends the process, and the
 * line to replay it must still be printed. */
static volatile u64 running_seed;

static void on_abort(int sig)
{
    char line[160];
    int n = snprintf(line, sizeof(line),
                     "FAIL seed %llu: the process aborted (an assertion, above)\n"
                     "  replay: allocdb-sim --seed %llu --trace\n",
                     (unsigned long long)running_seed, (unsigned long long)running_seed);
    if (n > 0)
        (void)!write(STDOUT_FILENO, line, (size_t)n);
    signal(sig, SIG_DFL);
    raise(sig);
}

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: allocdb-sim [OPTIONS]\n"
            "Runs a whole AllocDB cluster in one process on the production cores (replication,\n"
            "sequencing, WAL, applier, state machine) over a simulated network, disk and clocks,\n"
            "with faults drawn from a seed, and checks every step. The same seed gives the same\n"
            "run, byte for byte.\n"
            "\n"
            "  --seed N          the first seed (default 1)\n"
            "  --count N         seeds to run: N, N+1, ... (default 1)\n"
            "  --seeds-file F    run the seeds listed in F (one per line, '#' comments)\n"
            "  --replicas N      1, 3 or 5 (default: drawn from each seed)\n"
            "  --clients N       1..8 (default: drawn)\n"
            "  --pipeline N      the primary's pipeline, 1..256 entries beyond the commit point\n"
            "                    (default 32; the daemon's pipeline_max)\n"
            "  --safety-ms N     simulated time with faults (default 20000)\n"
            "  --liveness-ms N   then healed: the bound to converge and serve (default 10000)\n"
            "  --no-faults       a clean run: no network, disk, process or clock faults\n"
            "  --determinism     run every seed twice and require the same digest\n"
            "  --stop            stop at the first failing seed\n"
            "  --trace           print a readable trace of the run to stderr\n"
            "  --quiet           print only failures and the summary\n"
            "  --help            this text\n"
            "\n"
            "Faults (each with a rate drawn per seed): packet loss 0-30%%, duplication 0-50%%,\n"
            "replay of old packets, delay and reordering, symmetric, one-way and isolating\n"
            "partitions, crashes with power loss (keeping synced data, torn writes, pages in any\n"
            "order), crashes inside a disk operation (between a write and its fsync), pauses,\n"
            "wall-clock jumps of +-1 h across a restart, failed metadata writes, failed fsyncs,\n"
            "bits flipped in a WAL's synced bytes, bad disks (read errors, misdirected and lost\n"
            "writes) and disks lost outright (formatted again and recovered), the disk and clock\n"
            "faults on a minority only. Replicas checkpoint and prune, so some catch up by state\n"
            "transfer.\n"
            "Checks: committed entries identical across replicas byte for byte; each replica's\n"
            "results equal to a reference model's; no duplicate execution; no early expiry in\n"
            "simulated real time; no stale read; no definite rejection that took effect; the\n"
            "state machine's invariants; the same state digest at the same LSN everywhere; then,\n"
            "healed, the cluster converges and serves.\n"
            "\n"
            "Exit status: 0 every seed passed, 1 a seed failed (the line to replay it is\n"
            "printed), 2 usage.\n");
}

static bool parse_u64(const char *s, u64 *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-')
        return false;
    *out = v;
    return true;
}

struct totals {
    u64 seeds, failed;
    struct sim_stats sum;
};

static void add(struct totals *t, const struct sim_stats *s)
{
    t->sum.requests += s->requests;
    t->sum.acked += s->acked;
    t->sum.reads += s->reads;
    t->sum.crashes += s->crashes;
    t->sum.io_crashes += s->io_crashes;
    t->sum.torn_crashes += s->torn_crashes;
    t->sum.fsync_failures += s->fsync_failures;
    t->sum.bit_flips += s->bit_flips;
    t->sum.restarts += s->restarts;
    t->sum.faulted += s->faulted;
    t->sum.partitions += s->partitions;
    t->sum.pauses += s->pauses;
    t->sum.clock_jumps += s->clock_jumps;
    t->sum.persist_faults += s->persist_faults;
    t->sum.view_changes += s->view_changes;
    t->sum.repairs += s->repairs;
    t->sum.truncations += s->truncations;
    t->sum.nack_truncations += s->nack_truncations;
    t->sum.transfers += s->transfers;
    t->sum.recoveries += s->recoveries;
    t->sum.checkpoints += s->checkpoints;
    t->sum.disk_losses += s->disk_losses;
    t->sum.read_faults += s->read_faults;
    t->sum.misdirected_writes += s->misdirected_writes;
    t->sum.net_sent += s->net_sent;
    t->sum.net_lost += s->net_lost;
    t->sum.net_duplicated += s->net_duplicated;
    t->sum.net_replayed += s->net_replayed;
    t->sum.net_dropped_partition += s->net_dropped_partition;
    t->sum.committed += s->committed;
    t->sum.sim_ms += s->sim_ms;
}

static int run_seed(struct sim_options *o, bool determinism, bool quiet, struct totals *t)
{
    struct sim_stats s;
    u64 digest = 0;
    char why[1024];
    running_seed = o->seed;
    int rc = sim_run(o, &s, &digest, why, sizeof(why));
    if (rc == 0 && determinism) {
        struct sim_stats s2;
        u64 digest2 = 0;
        struct sim_options o2 = *o;
        o2.trace = NULL;
        rc = sim_run(&o2, &s2, &digest2, why, sizeof(why));
        if (rc == 0 && digest2 != digest) {
            snprintf(why, sizeof(why), "not deterministic: digest %016" PRIx64 " then %016" PRIx64,
                     digest, digest2);
            rc = 1;
        }
    }
    t->seeds++;
    add(t, &s);
    if (rc != 0) {
        t->failed++;
        printf("FAIL seed %" PRIu64 " (%u replicas): %s\n", o->seed, s.replicas, why);
        char pipe[32] = "";
        if (o->pipeline)
            snprintf(pipe, sizeof(pipe), " --pipeline %u", o->pipeline);
        printf("  replay: allocdb-sim --seed %" PRIu64 " --safety-ms %" PRIu64
               " --liveness-ms %" PRIu64 "%s%s%s --trace\n",
               o->seed, o->safety_ms, o->liveness_ms, o->faults ? "" : " --no-faults",
               o->replicas ? (o->replicas == 1 ? " --replicas 1" : o->replicas == 3 ? " --replicas 3" : " --replicas 5") : "",
               pipe);
    } else if (!quiet) {
        printf("ok seed %" PRIu64 ": %u replicas, %u clients, committed %" PRIu64 ", acked %" PRIu64
               ", views %" PRIu64 ", crashes %" PRIu64 ", digest %016" PRIx64 "\n",
               o->seed, s.replicas, s.clients, s.committed, s.acked, s.view_changes, s.crashes,
               digest);
    }
    fflush(stdout);
    return rc;
}

int main(int argc, char **argv)
{
    struct sim_options o = { .seed = 1, .safety_ms = 20000, .liveness_ms = 10000, .faults = true };
    u64 count = 1, v;
    const char *seeds_file = NULL;
    bool determinism = false, quiet = false, stop = false;
    static const struct option longs[] = {
        { "seed", required_argument, NULL, 's' },
        { "count", required_argument, NULL, 'n' },
        { "seeds-file", required_argument, NULL, 'f' },
        { "replicas", required_argument, NULL, 'r' },
        { "clients", required_argument, NULL, 'c' },
        { "pipeline", required_argument, NULL, 'p' },
        { "safety-ms", required_argument, NULL, 'S' },
        { "liveness-ms", required_argument, NULL, 'L' },
        { "no-faults", no_argument, NULL, 'N' },
        { "determinism", no_argument, NULL, 'D' },
        { "stop", no_argument, NULL, 'X' },
        { "trace", no_argument, NULL, 't' },
        { "quiet", no_argument, NULL, 'q' },
        { "help", no_argument, NULL, 'h' },
        { 0, 0, 0, 0 },
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        switch (ch) {
        case 's':
            if (!parse_u64(optarg, &o.seed))
                goto bad;
            break;
        case 'n':
            if (!parse_u64(optarg, &count) || count == 0)
                goto bad;
            break;
        case 'f': seeds_file = optarg; break;
        case 'r':
            if (!parse_u64(optarg, &v) || (v != 1 && v != 3 && v != 5))
                goto bad;
            o.replicas = (u32)v;
            break;
        case 'c':
            if (!parse_u64(optarg, &v) || v < 1 || v > 8)
                goto bad;
            o.clients = (u32)v;
            break;
        case 'p':
            if (!parse_u64(optarg, &v) || v < 1 || v > VSR_PIPELINE_MAX)
                goto bad;
            o.pipeline = (u32)v;
            break;
        case 'S':
            if (!parse_u64(optarg, &o.safety_ms))
                goto bad;
            break;
        case 'L':
            if (!parse_u64(optarg, &o.liveness_ms) || o.liveness_ms == 0)
                goto bad;
            break;
        case 'N': o.faults = false; break;
        case 'D': determinism = true; break;
        case 'X': stop = true; break;
        case 't': o.trace = stderr; break;
        case 'q': quiet = true; break;
        case 'h': usage(stdout); return 0;
        default: goto bad;
        }
    }
    if (optind != argc)
        goto bad;

    signal(SIGABRT, on_abort);
    struct totals t;
    memset(&t, 0, sizeof(t));
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (seeds_file) {
        FILE *f = fopen(seeds_file, "r");
        if (!f) {
            fprintf(stderr, "allocdb-sim: %s: %s\n", seeds_file, strerror(errno));
            return 2;
        }
        char line[256];
        while (fgets(line, sizeof(line), f)) {
            char *hash = strchr(line, '#');
            if (hash)
                *hash = 0;
            char *tok = strtok(line, " \t\r\n");
            if (!tok)
                continue;
            if (!parse_u64(tok, &o.seed)) {
                fprintf(stderr, "allocdb-sim: %s: not a seed: %s\n", seeds_file, tok);
                fclose(f);
                return 2;
            }
            if (run_seed(&o, determinism, quiet, &t) != 0 && stop)
                break;
        }
        fclose(f);
    } else {
        u64 first = o.seed;
        for (u64 i = 0; i < count; i++) {
            o.seed = first + i;
            if (run_seed(&o, determinism, quiet, &t) != 0 && stop)
                break;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    struct sim_stats *s = &t.sum;
    printf("seeds %" PRIu64 ", failed %" PRIu64 ", %.1f s (%.1f simulated s)\n", t.seeds, t.failed,
           secs, (double)s->sim_ms / 1000.0);
    printf("requests %" PRIu64 ", acked %" PRIu64 ", reads %" PRIu64 ", committed entries %" PRIu64
           "\n", s->requests, s->acked, s->reads, s->committed);
    printf("faults: crashes %" PRIu64 " (torn %" PRIu64 ", inside a disk operation %" PRIu64
           "), restarts %" PRIu64 ", disks that could not open %" PRIu64 ", partitions %" PRIu64
           ", pauses %" PRIu64 ", clock jumps %" PRIu64 ", metadata write failures %" PRIu64
           ", fsync failures %" PRIu64 ", bit flips %" PRIu64 ", read errors %" PRIu64
           ", misdirected writes %" PRIu64 ", disks lost %" PRIu64 "\n",
           s->crashes, s->torn_crashes, s->io_crashes, s->restarts, s->faulted, s->partitions,
           s->pauses, s->clock_jumps, s->persist_faults, s->fsync_failures, s->bit_flips, s->read_faults,
           s->misdirected_writes, s->disk_losses);
    printf("network: sent %" PRIu64 ", lost %" PRIu64 ", duplicated %" PRIu64 ", replayed %" PRIu64
           ", dropped by partitions %" PRIu64 "\n", s->net_sent, s->net_lost, s->net_duplicated,
           s->net_replayed, s->net_dropped_partition);
    printf("protocol: view changes %" PRIu64 ", entries repaired %" PRIu64 ", truncations %" PRIu64
           " (logs cut on nacks %" PRIu64 "), checkpoints %" PRIu64 ", state transfers %" PRIu64
           ", recoveries %" PRIu64 "\n", s->view_changes, s->repairs, s->truncations,
           s->nack_truncations, s->checkpoints, s->transfers, s->recoveries);
    return t.failed ? 1 : 0;
bad:
    usage(stderr);
    return 2;
}
