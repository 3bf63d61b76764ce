/*
 * bench/recovery.c — `allocdb-bench recovery`: how fast a node comes back.
 *
 * Two measurements, each on a fresh directory under --dir (removed afterwards):
 *   replay    a WAL of --commands entries (written with group commit, applied live so the
 *             replayed state can be compared), then a timed WAL-only recovery: frames/s.
 *   snapshot  a state holding --reservations reserved reservations (one per resource), a timed
 *             checkpoint (snapshot write), then a timed snapshot-only recovery.
 * Both recovered states must have the live state's digest, or the run fails (exit 1).
 */
#include "config.h"

#include "bench/bench.h"
#include "bench/durable.h"
#include "common/assert.h"
#include "replica/recovery.h"
#include "replica/snapshot.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct recovery_opts {
    const char *dir;
    u64 commands, reservations, group;
    u64 reserves_per_slot; /* 0: all at slot 1, so every operation record is in the window */
    bool keep;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A fresh data directory with an empty WAL and an open log. */
static bool fresh_dir(const char *parent, char *dir, size_t n, struct wal_log *w, char *why, size_t why_len)
{
    if (snprintf(dir, n, "%s/allocdb-bench.XXXXXX", parent) >= (int)n || mkdtemp(dir) == NULL) {
        snprintf(why, why_len, "cannot create a directory in %s: %s", parent, strerror(errno));
        return false;
    }
    struct wal_open_report rep;
    return wal_log_format(&io_posix, dir, NULL, why, why_len) == 0 &&
           wal_log_open(w, &io_posix, dir, NULL, 1, NULL, NULL, &rep, why, why_len) == 0;
}

static void finish_dir(const struct recovery_opts *o, const char *dir)
{
    if (o->keep)
        printf("  kept        %s\n", dir);
    else
        bench_remove_dir(dir);
}

/* Appends, applies, commits every `group`. */
static bool step(sm_t *sm, struct wal_log *w, u64 slot, struct sm_command *c, u64 group, struct sm_outcome *out)
{
    u64 lsn;
    if (wal_log_append(w, slot, 0, c, &lsn) != 0)
        return false;
    *out = sm_apply(sm, lsn, slot, c);
    return lsn % group != 0 || wal_log_commit(w) == 0;
}

/* Creates resources 1..n at slot 1 (operation ids from *op on). */
static bool create_resources(sm_t *sm, struct wal_log *w, u64 n, u64 group, u64 *op)
{
    struct sm_outcome out;
    for (u64 i = 0; i < n; i++) {
        struct sm_command c = { .kind = SM_CMD_CREATE_RESOURCE, .operation_id = ++*op, .client_id = 1, .resource_id = i + 1 };
        if (!step(sm, w, 1, &c, group, &out))
            return false;
    }
    return true;
}

static bool same_digest(const sm_t *a, const sm_t *b)
{
    struct sm_digest x = sm_digest(a), y = sm_digest(b);
    return x.lo == y.lo && x.hi == y.hi;
}

static bool timed_recovery(const char *dir, const struct sm_config *cfg, const sm_t *live, double *secs,
                           struct recovery_report *rep, char *why, size_t why_len)
{
    sm_t sm;
    if (!sm_create(&sm, cfg, why, why_len))
        return false;
    struct wal_log w;
    double t0 = now_s();
    int rc = recovery_run(&io_posix, dir, cfg, NULL, &sm, &w, rep, why, why_len);
    *secs = now_s() - t0;
    if (rc == 0)
        wal_log_close(&w);
    bool ok = rc == 0;
    if (ok && !same_digest(&sm, live)) {
        snprintf(why, why_len, "the recovered state differs from the live one");
        ok = false;
    }
    sm_destroy(&sm);
    return ok;
}

/* Replay: resources 1..R (a tenth of the commands, at most 100,000); each command reserves a resource or releases its reservation. */
static bool bench_replay(const struct recovery_opts *o, char *why, size_t why_len)
{
    const u32 R = o->commands / 10 < 100000 ? (u32)(o->commands / 10) : 100000;
    const u64 per_slot = R / 10; /* with the windows below, tables stay within capacity */
    struct sm_config cfg = { .resource_capacity = R, .reservation_capacity = 2 * R + 16, .operation_capacity = 8 * R + 16,
                             .expiration_capacity = R, .max_ttl_slots = 1000, .dedupe_window_slots = 60,
                             .history_window_slots = 4 };
    char dir[WAL_PATH_MAX];
    sm_t live;
    struct wal_log w;
    if (!sm_create(&live, &cfg, why, why_len))
        return false;
    u128 *held = calloc(R, sizeof(*held));
    bool ok = held != NULL && fresh_dir(o->dir, dir, sizeof(dir), &w, why, why_len);
    double t0 = now_s();
    u64 op = 0, slot = 1;
    struct sm_outcome out;
    ok = ok && create_resources(&live, &w, R, o->group, &op);
    for (u64 i = R; ok && i < o->commands; i++) {
        if (i % per_slot == 0)
            slot++; /* the dedupe window holds 60 slots of operations: 6R records */
        u64 r = (i * 7919) % R;
        struct sm_command c = { .operation_id = ++op, .client_id = 1, .holder_id = r + 1 };
        if (held[r] == 0) {
            c.kind = SM_CMD_RESERVE;
            c.resource_id = r + 1;
            c.ttl_slots = 1000;
        } else {
            c.kind = SM_CMD_RELEASE;
            c.reservation_id = held[r];
        }
        ok = step(&live, &w, slot, &c, o->group, &out);
        if (ok && out.result != SM_OK) {
            snprintf(why, why_len, "unexpected %s while writing the WAL", sm_result_name(out.result));
            ok = false;
        }
        held[r] = c.kind == SM_CMD_RESERVE ? out.reservation_id : 0;
    }
    ok = ok && wal_log_commit(&w) == 0;
    double write_s = now_s() - t0;
    u64 wal_bytes = (u64)(w.segment_count - 1) * WAL_SEGMENT_BYTES_DEFAULT + w.write_offset;
    if (held != NULL)
        wal_log_close(&w);
    free(held);
    double replay_s = 0;
    struct recovery_report rep;
    ok = ok && timed_recovery(dir, &cfg, &live, &replay_s, &rep, why, why_len);
    if (ok)
        printf("replay\n  wal         %" PRIu64 " frames, %.1f MiB, written in %.2f s (group commit %" PRIu64 ")\n"
               "  recovery    %s: %" PRIu64 " frames replayed in %.3f s\n  frames/s    %.0f\n",
               live.last_applied_lsn, (double)wal_bytes / (1 << 20), write_s, o->group, recovery_kind_name(rep.kind),
               rep.frames_replayed, replay_s, (double)rep.frames_replayed / replay_s);
    sm_destroy(&live);
    finish_dir(o, dir);
    return ok;
}

/* The two big parts of a snapshot load, timed on their own. */
static bool time_snapshot_parts(const char *dir, u64 lsn, const struct sm_config *cfg, double *read_s,
                                double *decode_s, char *why, size_t why_len)
{
    char name[64], path[WAL_PATH_MAX];
    if (!snapshot_file_name(name, sizeof(name), lsn) || !io_path(path, sizeof(path), dir, name))
        return false;
    sm_t sm;
    if (!sm_create(&sm, cfg, why, why_len))
        return false;
    u8 *buf = NULL;
    u64 len = 0;
    double t0 = now_s();
    int rc = io_read_file(&io_posix, path, &buf, &len);
    double t1 = now_s();
    enum snapshot_status st = rc == 0 ? recovery_decode_snapshot(&io_posix, dir, buf, len, cfg, &sm, why, why_len) : SNAPSHOT_SHORT;
    *decode_s = now_s() - t1;
    *read_s = t1 - t0;
    free(buf);
    sm_destroy(&sm);
    if (rc != 0)
        snprintf(why, why_len, "%s: %s", path, strerror(-rc));
    return rc == 0 && st == SNAPSHOT_OK;
}

/* Snapshot: N resources, each reserved once (N reserved reservations in the snapshot). */
static bool bench_snapshot(const struct recovery_opts *o, char *why, size_t why_len)
{
    u32 n = (u32)o->reservations;
    struct sm_config cfg = { .resource_capacity = n, .reservation_capacity = n, .operation_capacity = 2 * n + 16,
                             .expiration_capacity = n, .max_ttl_slots = 1 << 20, .dedupe_window_slots = 8,
                             .history_window_slots = 4 };
    char dir[WAL_PATH_MAX];
    sm_t live;
    struct wal_log w;
    if (!sm_create(&live, &cfg, why, why_len))
        return false;
    bool ok = fresh_dir(o->dir, dir, sizeof(dir), &w, why, why_len);
    u64 op = 0;
    struct sm_outcome out;
    ok = ok && create_resources(&live, &w, n, 10000, &op);
    for (u64 i = 0; ok && i < n; i++) {
        /* Spread over slots, older operation records leave the 8-slot dedupe window; TTLs
         * outlast the run either way. */
        u64 slot = o->reserves_per_slot ? 2 + i / o->reserves_per_slot : 1;
        struct sm_command c = { .kind = SM_CMD_RESERVE, .operation_id = ++op, .client_id = 1, .resource_id = i + 1,
                                .holder_id = i + 1, .ttl_slots = (1 << 19) + i % (1 << 19) };
        ok = step(&live, &w, slot, &c, 10000, &out) && out.result == SM_OK;
    }
    ok = ok && wal_log_commit(&w) == 0;
    struct checkpoint_report cp;
    double t0 = now_s();
    ok = ok && checkpoint_run(&io_posix, dir, &live, &w, NULL, &cp, why, why_len) == 0;
    double write_s = now_s() - t0;
    wal_log_close(&w);
    double load_s = 0, read_s = 0, decode_s = 0;
    struct recovery_report rep;
    ok = ok && timed_recovery(dir, &cfg, &live, &load_s, &rep, why, why_len);
    ok = ok && time_snapshot_parts(dir, cp.snapshot_lsn, &cfg, &read_s, &decode_s, why, why_len);
    if (ok)
        printf("snapshot\n  state       %u resources, %u reservations (reserved), %u operation records\n"
               "  write       %.3f s (checkpoint at LSN %" PRIu64 ")\n  recovery    %s in %.3f s"
               " (of which: file read %.3f s, decode and validation %.3f s)\n",
               live.resource_count, live.reservation_count, live.operation_count, write_s, cp.snapshot_lsn,
               recovery_kind_name(rep.kind), load_s, read_s, decode_s);
    sm_destroy(&live);
    finish_dir(o, dir);
    return ok;
}

void bench_recovery_usage(FILE *out)
{
    fprintf(out,
            "Usage: allocdb-bench recovery --dir DIR [OPTIONS]\n"
            "\n"
            "Measures WAL replay and snapshot load on real files in a new directory under DIR\n"
            "(removed afterwards).\n"
            "\n"
            "  --dir DIR              where to create the data directories (required)\n"
            "  --commands N           WAL entries for the replay measurement (default 10000000)\n"
            "  --reservations N       reservations in the snapshot measurement (default 1000000)\n"
            "  --group-commit G       commands per sync while writing (default 1000)\n"
            "  --reserves-per-slot S  snapshot state: S reserves per slot, so operation records\n"
            "                         older than the 8-slot dedupe window retire (default 0: all\n"
            "                         in one slot, every record kept)\n"
            "  --keep-data            keep both data directories (their paths are printed)\n"
            "  -h, --help             show this help\n"
            "\n"
            "Exit status: 0 when both recovered states equal the live ones, 1 otherwise, 64 on a\n"
            "usage error.\n");
}

int bench_recovery_main(int argc, char **argv)
{
    struct recovery_opts o = { .dir = NULL, .commands = 10000000, .reservations = 1000000, .group = 1000 };
    static const struct option longopts[] = {
        { "dir", required_argument, NULL, 'd' },
        { "commands", required_argument, NULL, 'c' },
        { "reservations", required_argument, NULL, 'r' },
        { "group-commit", required_argument, NULL, 'g' },
        { "keep-data", no_argument, NULL, 'k' },
        { "reserves-per-slot", required_argument, NULL, 's' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        bool ok = true;
        switch (ch) {
        case 'd': o.dir = optarg; break;
        case 'c': ok = bench_parse_u64("--commands", optarg, 1000, 1000000000, &o.commands); break;
        case 'r': ok = bench_parse_u64("--reservations", optarg, 1, SM_CAPACITY_MAX / 2, &o.reservations); break;
        case 'g': ok = bench_parse_u64("--group-commit", optarg, 1, 1 << 24, &o.group); break;
        case 'k': o.keep = true; break;
        case 's': ok = bench_parse_u64("--reserves-per-slot", optarg, 0, 1u << 30, &o.reserves_per_slot); break;
        case 'h': bench_recovery_usage(stdout); return 0;
        default: ok = false; break;
        }
        if (!ok) {
            fprintf(stderr, "Try 'allocdb-bench recovery --help'.\n");
            return 64;
        }
    }
    if (o.dir == NULL || optind < argc) {
        fprintf(stderr, "allocdb-bench recovery: %s\n", o.dir == NULL ? "--dir is required" : "unexpected argument");
        return 64;
    }
    char why[WAL_PATH_MAX + 256] = "";
    if (!bench_replay(&o, why, sizeof(why)) || !bench_snapshot(&o, why, sizeof(why))) {
        fprintf(stderr, "allocdb-bench recovery: %s\n", why);
        return 1;
    }
    return 0;
}
