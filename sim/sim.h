/*
 * sim/sim.h — the deterministic cluster simulator (DESIGN.md §9): a whole cluster in one
 * process on the production cores — the replication core (replica/vsr.h), the sequencer's core
 * and the WAL (wal/sequencing.h over wal/log.h), the applier's core and the state machine
 * (replica/applying.h) — wired to a simulated network (sim/network.h), disk (tests/io_fault.h)
 * and clocks. Nothing of the protocol is re-implemented here: a replica (sim/replica.c) is a
 * shell like the daemon's workers, doing what the cores ask.
 *
 * One run = one seed: the seed draws the cluster's size, the fault mix and every random choice,
 * so the same seed gives the same run byte for byte (sim_run's digest). A run has a safety
 * phase (faults) and a liveness phase (faults healed; the cluster must converge and serve).
 * Every step is checked (sim/cluster.c): committed entries identical across replicas byte for
 * byte, each replica's results equal to a reference model's (tests/model.c), and every client
 * reply — no duplicate execution, no early expiry in simulated real time, no stale read, no
 * definite rejection that took effect. A failure prints the command that replays it.
 */
#ifndef ADB_SIM_SIM_H
#define ADB_SIM_SIM_H

#include "common/types.h"
#include "replica/vsr.h"

#include <stdio.h>

struct sim_options {
    u64 seed;
    u32 replicas;      /* 0: drawn from the seed (1, 3 or 5) */
    u32 clients;       /* 0: drawn */
    u32 pipeline;      /* the primary's pipeline_max (0: 32) */
    u64 safety_ms;     /* simulated time with faults */
    u64 liveness_ms;   /* then healed: the bound to converge and serve */
    bool faults;       /* false: a clean run (no faults at all) */
    FILE *trace;       /* a readable trace of the run, or NULL */
};

struct sim_stats {
    u64 steps, sim_ms;
    u64 requests, acked, reads, rejected, abandoned;
    u64 crashes, restarts, faulted, partitions, pauses, clock_jumps, persist_faults,
        torn_crashes, io_crashes, fsync_failures, bit_flips, disk_losses, read_faults,
        misdirected_writes;
    u64 view_changes, repairs, truncations, nack_truncations, transfers, recoveries, checkpoints;
    u64 net_sent, net_lost, net_duplicated, net_replayed, net_dropped_partition;
    u64 committed; /* highest LSN committed */
    u32 replicas, clients;
};

/* Runs one seed. Returns 0 if every check held, else 1 with the failure in why. */
int sim_run(const struct sim_options *opt, struct sim_stats *stats, u64 *digest, char *why,
            size_t why_len);

#endif
