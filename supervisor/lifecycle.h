/*
 * supervisor/lifecycle.h — the supervisor's life as a table of state x event (in the manner of
 * s6-supervise): every transition the daemon can make is one row, and nothing else moves it.
 *
 *   state            what the supervisor does in it
 *   start_sequencer  starts the sequencer, waits until it is ready (WAL recovered)
 *   start_applier    the same for the applier (state recovered)
 *   start_ingress    the same for the ingress; then the daemon is ready
 *   running          restarts crashed or hung workers
 *   draining         the ingress answers what is in flight and exits
 *   stopping         stops the other workers, one at a time
 *   failing          stops every worker after a failure (exit code set by the failure)
 *   done             exits
 *
 * Pure: no I/O, no clock. supervisor.c turns what it observes into events and performs the
 * action of the row it gets. tests/test_lifecycle.c checks the table row by row.
 */
#ifndef ADB_SUPERVISOR_LIFECYCLE_H
#define ADB_SUPERVISOR_LIFECYCLE_H

enum sup_state {
    SUP_START_SEQUENCER,
    SUP_START_APPLIER,
    SUP_START_INGRESS,
    SUP_RUNNING,
    SUP_DRAINING,
    SUP_STOPPING,
    SUP_FAILING,
    SUP_DONE,
    SUP_STATE_COUNT
};

enum sup_event {
    SUP_EV_STARTING_READY, /* the worker the current start_* state waits for is ready */
    SUP_EV_STOP_SIGNAL,    /* SIGTERM or SIGINT */
    SUP_EV_FAILURE,        /* a worker found corruption, a restart limit, a failed fork, ... */
    SUP_EV_DRAINED,        /* the ingress exited (or its drain time ran out) */
    SUP_EV_ALL_STOPPED,    /* every worker has exited */
    SUP_EVENT_COUNT
};

/* What the supervisor does on taking a transition (besides logging it). */
enum sup_action {
    SUP_ACT_NONE,
    SUP_ACT_START_NEXT,   /* start the worker of the new start_* state */
    SUP_ACT_NOTIFY_READY, /* the daemon is ready: sd_notify READY=1, the ready log line */
    SUP_ACT_DRAIN,        /* sd_notify STOPPING=1, flag shutting_down, SIGTERM the ingress */
    SUP_ACT_STOP_WORKERS, /* stop the remaining workers, one at a time */
};

struct sup_transition {
    enum sup_state to;
    enum sup_action action;
    const char *why; /* for the supervisor_state log line */
};

/* The row for (state, event), or NULL: the event changes nothing in that state. */
const struct sup_transition *sup_transition(enum sup_state state, enum sup_event event);

const char *sup_state_name(enum sup_state s);
const char *sup_event_name(enum sup_event e);

#endif
