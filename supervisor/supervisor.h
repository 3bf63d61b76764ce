/*
 * supervisor/supervisor.h — allocdbd's supervisor: starts the workers in order, restarts the
 * ones that crash or hang, limits restart intensity, drains on SIGTERM.
 *
 * States (every transition is logged):
 *   start_sequencer -> start_applier -> start_ingress -> running     each waits for the
 *                                                                    previous worker's READY
 *   any -> draining (SIGTERM/SIGINT: ingress drains and exits) -> stopping (applier, then
 *          sequencer, SIGTERM then SIGKILL after shutdown_timeout_ms) -> exit 0
 *   any -> failing (a worker exited "fatal", or restart intensity exceeded) -> stop all
 *          -> exit non-zero
 *
 * NOTES
 *   Signal handlers only set flags and write a byte to a self-pipe; the loop does the work
 *   (reaping with waitpid(WNOHANG) until empty, heartbeat checks, restarts, state changes).
 *   The supervisor never touches the rings or the shared log: it writes the worker table's
 *   bookkeeping fields and reads heartbeats.
 */
#ifndef ADB_SUPERVISOR_SUPERVISOR_H
#define ADB_SUPERVISOR_SUPERVISOR_H

#include "supervisor/config.h"

/* allocdbd exit codes (allocdbd(8) lists them). */
enum allocdbd_exit {
    ADBD_EXIT_OK = 0,
    ADBD_EXIT_WORKER_FAILED = 1,   /* a worker failed in a way a restart cannot fix */
    ADBD_EXIT_NOT_FORMATTED = 2,   /* no data dir, or not formatted */
    ADBD_EXIT_LOCKED = 3,          /* another allocdbd holds the data dir */
    ADBD_EXIT_META = 4,            /* replica metadata contradicts the WAL, or faulted */
    ADBD_EXIT_CORRUPT = 5,         /* corruption or a storage failure (fail closed) */
    ADBD_EXIT_RESTARTS = 6,        /* restart intensity exceeded */
    ADBD_EXIT_CONFIG_MISMATCH = 7, /* the data was written under a different config */
    ADBD_EXIT_SHM_CORRUPT = 8,     /* shared memory failed its checks; the service manager restarts */
    /* 9 and 10 come only from format and stop, never from start (the units are not concerned) */
    ADBD_EXIT_NOT_EMPTY = 9,       /* format: the directory is not empty */
    ADBD_EXIT_STOP_TIMEOUT = 10,   /* stop: the daemon still runs after --timeout */
    ADBD_EXIT_USAGE = 64,
    ADBD_EXIT_OSERR = 71,          /* cannot listen, map memory, fork, ... */
    ADBD_EXIT_CONFIG = 78,         /* invalid configuration */
};

/* Whether the tables this configuration allocates at start fit the machine's RAM and swap;
 * text says the figures either way. */
bool supervisor_memory(const struct config *cfg, char *text, size_t cap);

/* Runs the daemon in the foreground until it stops; returns the process exit code. argc/argv
 * are for process titles. */
int supervisor_run(const struct config *cfg, int argc, char **argv);

#endif
