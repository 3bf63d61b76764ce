/*
 * supervisor/worker.h — what every worker process shares: its context, heartbeat, readiness,
 * stop request, parent-death detection, exit codes, and the entry points of the roles.
 *
 * NOTES
 *   A worker is forked by the supervisor and calls worker_enter() first: process title
 *   ("allocdbd: sequencer"), PR_SET_PDEATHSIG(SIGKILL), a check that the parent did not die
 *   before that, signal handlers that only set flags, the segment stamp check. Its loop calls
 *   worker_heartbeat() at least every WORKER_HEARTBEAT_MS and leaves when worker_should_stop().
 *   A worker whose heartbeat is older than heartbeat_timeout_ms is killed (SIGKILL) and
 *   restarted by the supervisor: blocking waits use timeouts shorter than that.
 *
 *   Exit codes: 0 asked to stop; WORKER_EXIT_FATAL: corruption or a condition a restart cannot
 *   fix (the supervisor stops the daemon, fail-closed); WORKER_EXIT_RESTART: the shared segment
 *   cannot be trusted, but the disk can (the daemon exits with a code its service manager
 *   restarts); anything else (or a signal) is a crash and the worker is restarted.
 */
#ifndef ADB_SUPERVISOR_WORKER_H
#define ADB_SUPERVISOR_WORKER_H

#include "common/types.h"
#include "supervisor/config.h"
#include "supervisor/segment.h"

#include <signal.h>
#include <sys/types.h>

#define WORKER_HEARTBEAT_MS 100

enum worker_exit {
    WORKER_EXIT_OK = 0,
    WORKER_EXIT_CRASH = 70,        /* unexpected error: restart me */
    WORKER_EXIT_FATAL = 100,       /* corruption found or storage failed: stop the daemon */
    WORKER_EXIT_META = 101,        /* replica metadata contradicts the WAL: stop the daemon */
    WORKER_EXIT_CONFIG = 102,      /* the data does not match the config (e.g. capacities) */
    WORKER_EXIT_RESTART = 103,     /* shared memory failed its checks: restart the whole daemon */
    WORKER_EXIT_RELOAD = 104,      /* the applier's state was replaced on disk (a state transfer):
                                      start me again at once, not counted as a failure */
};

struct worker_ctx {
    const struct config *cfg;
    struct segment *seg;
    enum worker_role role;
    u32 generation;
    int listen_fd;       /* clients: a listening, non-blocking TCP socket (ingress) */
    int admin_fd;        /* admin HTTP: listening socket or -1 (ingress) */
    int peer_fd;         /* replication: listening socket or -1 (peer; a single node has none) */
    pid_t supervisor_pid;
};

/* Sets up the process (see NOTES); false if the supervisor is already gone. */
bool worker_enter(const struct worker_ctx *w);

void worker_heartbeat(const struct worker_ctx *w);
/* The worker has recovered and serves: the supervisor starts the next role. */
void worker_set_ready(const struct worker_ctx *w);
/* SIGTERM/SIGINT received, or the supervisor vanished (getppid changed). */
bool worker_should_stop(const struct worker_ctx *w);
/* True once the supervisor has asked the daemon to drain (SIGTERM to the supervisor). */
bool worker_draining(const struct worker_ctx *w);

/* Sets the title ps shows: "allocdbd: sequencer". proc_title_init keeps argv's area. */
void proc_title_init(int argc, char **argv);
void proc_title_set(const char *title);

/* Bytes a role allocates at start for this config (its tables; the applier's is the state
 * machine's layout), so a start can refuse what the machine cannot hold. */
u64 sequencer_memory(const struct config *cfg);
u64 applier_memory(const struct config *cfg);

/* Role entry points: return the process exit code. */
int sequencer_main(const struct worker_ctx *w);
int applier_main(const struct worker_ctx *w);
int ingress_main(const struct worker_ctx *w);
int peer_main(const struct worker_ctx *w);

#endif
