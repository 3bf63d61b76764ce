/*
 * supervisor/lifecycle.c — the table (see lifecycle.h).
 */
#include "config.h"

#include "supervisor/lifecycle.h"

#include <stddef.h>

#define T(to, action, why) { to, action, why }
#define NOTHING { SUP_STATE_COUNT, SUP_ACT_NONE, NULL }

/* Failure and the stop signal win over starting; a failure while stopping changes nothing (the
 * workers are being stopped anyway, and the first exit code stays); done absorbs everything. */
static const struct sup_transition table[SUP_STATE_COUNT][SUP_EVENT_COUNT] = {
    [SUP_START_SEQUENCER] = {
        [SUP_EV_STARTING_READY] = T(SUP_START_APPLIER, SUP_ACT_START_NEXT, "sequencer ready (WAL recovered)"),
        [SUP_EV_STOP_SIGNAL] = T(SUP_DRAINING, SUP_ACT_DRAIN, "SIGTERM or SIGINT"),
        [SUP_EV_FAILURE] = T(SUP_FAILING, SUP_ACT_STOP_WORKERS, NULL),
        [SUP_EV_DRAINED] = NOTHING,
        [SUP_EV_ALL_STOPPED] = NOTHING,
    },
    [SUP_START_APPLIER] = {
        [SUP_EV_STARTING_READY] = T(SUP_START_INGRESS, SUP_ACT_START_NEXT, "applier ready (state recovered)"),
        [SUP_EV_STOP_SIGNAL] = T(SUP_DRAINING, SUP_ACT_DRAIN, "SIGTERM or SIGINT"),
        [SUP_EV_FAILURE] = T(SUP_FAILING, SUP_ACT_STOP_WORKERS, NULL),
        [SUP_EV_DRAINED] = NOTHING,
        [SUP_EV_ALL_STOPPED] = NOTHING,
    },
    [SUP_START_INGRESS] = {
        [SUP_EV_STARTING_READY] = T(SUP_RUNNING, SUP_ACT_NOTIFY_READY, "every worker is ready"),
        [SUP_EV_STOP_SIGNAL] = T(SUP_DRAINING, SUP_ACT_DRAIN, "SIGTERM or SIGINT"),
        [SUP_EV_FAILURE] = T(SUP_FAILING, SUP_ACT_STOP_WORKERS, NULL),
        [SUP_EV_DRAINED] = NOTHING,
        [SUP_EV_ALL_STOPPED] = NOTHING,
    },
    [SUP_RUNNING] = {
        [SUP_EV_STARTING_READY] = NOTHING,
        [SUP_EV_STOP_SIGNAL] = T(SUP_DRAINING, SUP_ACT_DRAIN, "SIGTERM or SIGINT"),
        [SUP_EV_FAILURE] = T(SUP_FAILING, SUP_ACT_STOP_WORKERS, NULL),
        [SUP_EV_DRAINED] = NOTHING,
        [SUP_EV_ALL_STOPPED] = NOTHING,
    },
    [SUP_DRAINING] = {
        [SUP_EV_STARTING_READY] = NOTHING,
        [SUP_EV_STOP_SIGNAL] = NOTHING,
        [SUP_EV_FAILURE] = NOTHING,
        [SUP_EV_DRAINED] = T(SUP_STOPPING, SUP_ACT_STOP_WORKERS, "ingress drained"),
        [SUP_EV_ALL_STOPPED] = NOTHING,
    },
    [SUP_STOPPING] = {
        [SUP_EV_STARTING_READY] = NOTHING,
        [SUP_EV_STOP_SIGNAL] = NOTHING,
        [SUP_EV_FAILURE] = NOTHING,
        [SUP_EV_DRAINED] = NOTHING,
        [SUP_EV_ALL_STOPPED] = T(SUP_DONE, SUP_ACT_NONE, "every worker stopped"),
    },
    [SUP_FAILING] = {
        [SUP_EV_STARTING_READY] = NOTHING,
        [SUP_EV_STOP_SIGNAL] = NOTHING,
        [SUP_EV_FAILURE] = NOTHING,
        [SUP_EV_DRAINED] = NOTHING,
        [SUP_EV_ALL_STOPPED] = T(SUP_DONE, SUP_ACT_NONE, "every worker stopped after a failure"),
    },
    [SUP_DONE] = {
        [SUP_EV_STARTING_READY] = NOTHING,
        [SUP_EV_STOP_SIGNAL] = NOTHING,
        [SUP_EV_FAILURE] = NOTHING,
        [SUP_EV_DRAINED] = NOTHING,
        [SUP_EV_ALL_STOPPED] = NOTHING,
    },
};

const struct sup_transition *sup_transition(enum sup_state state, enum sup_event event)
{
    if ((unsigned)state >= SUP_STATE_COUNT || (unsigned)event >= SUP_EVENT_COUNT)
        return NULL;
    const struct sup_transition *t = &table[state][event];
    return t->to == SUP_STATE_COUNT ? NULL : t;
}

const char *sup_state_name(enum sup_state s)
{
    static const char *const names[SUP_STATE_COUNT] = { "start_sequencer", "start_applier", "start_ingress",
                                                        "running",         "draining",      "stopping",
                                                        "failing",         "done" };
    return (unsigned)s < SUP_STATE_COUNT ? names[s] : "unknown";
}

const char *sup_event_name(enum sup_event e)
{
    static const char *const names[SUP_EVENT_COUNT] = { "starting_ready", "stop_signal", "failure", "drained",
                                                        "all_stopped" };
    return (unsigned)e < SUP_EVENT_COUNT ? names[e] : "unknown";
}
