/*
 * tests/test_lifecycle.c — the supervisor's state x event table (supervisor/lifecycle.h), row
 * by row, and the walks through it the daemon takes: start, stop, a failure at each stage.
 */
#include "config.h"

#include "common/types.h"
#include "supervisor/lifecycle.h"
#include "tests/check_main.h"

#include <stdio.h>
#include <string.h>

/* The whole table, as the daemon's behaviour: (state, event) -> state and action; -1 = no row. */
struct row {
    enum sup_state from;
    enum sup_event ev;
    int to;
    enum sup_action action;
};

static const struct row expected[] = {
    { SUP_START_SEQUENCER, SUP_EV_STARTING_READY, SUP_START_APPLIER, SUP_ACT_START_NEXT },
    { SUP_START_APPLIER, SUP_EV_STARTING_READY, SUP_START_INGRESS, SUP_ACT_START_NEXT },
    { SUP_START_INGRESS, SUP_EV_STARTING_READY, SUP_RUNNING, SUP_ACT_NOTIFY_READY },
    { SUP_RUNNING, SUP_EV_STARTING_READY, -1, SUP_ACT_NONE },
    /* A stop signal drains from any state before draining, a start included. */
    { SUP_START_SEQUENCER, SUP_EV_STOP_SIGNAL, SUP_DRAINING, SUP_ACT_DRAIN },
    { SUP_START_APPLIER, SUP_EV_STOP_SIGNAL, SUP_DRAINING, SUP_ACT_DRAIN },
    { SUP_START_INGRESS, SUP_EV_STOP_SIGNAL, SUP_DRAINING, SUP_ACT_DRAIN },
    { SUP_RUNNING, SUP_EV_STOP_SIGNAL, SUP_DRAINING, SUP_ACT_DRAIN },
    { SUP_DRAINING, SUP_EV_STOP_SIGNAL, -1, SUP_ACT_NONE },
    { SUP_STOPPING, SUP_EV_STOP_SIGNAL, -1, SUP_ACT_NONE },
    { SUP_FAILING, SUP_EV_STOP_SIGNAL, -1, SUP_ACT_NONE },
    /* A failure stops everything, once: while stopping it changes nothing (the exit code of the
     * first failure, or 0 for a requested stop, stays). */
    { SUP_START_SEQUENCER, SUP_EV_FAILURE, SUP_FAILING, SUP_ACT_STOP_WORKERS },
    { SUP_START_APPLIER, SUP_EV_FAILURE, SUP_FAILING, SUP_ACT_STOP_WORKERS },
    { SUP_START_INGRESS, SUP_EV_FAILURE, SUP_FAILING, SUP_ACT_STOP_WORKERS },
    { SUP_RUNNING, SUP_EV_FAILURE, SUP_FAILING, SUP_ACT_STOP_WORKERS },
    { SUP_DRAINING, SUP_EV_FAILURE, -1, SUP_ACT_NONE },
    { SUP_STOPPING, SUP_EV_FAILURE, -1, SUP_ACT_NONE },
    { SUP_FAILING, SUP_EV_FAILURE, -1, SUP_ACT_NONE },
    /* Draining ends when the ingress is gone; then the rest stop; then done. */
    { SUP_DRAINING, SUP_EV_DRAINED, SUP_STOPPING, SUP_ACT_STOP_WORKERS },
    { SUP_RUNNING, SUP_EV_DRAINED, -1, SUP_ACT_NONE },
    { SUP_STOPPING, SUP_EV_ALL_STOPPED, SUP_DONE, SUP_ACT_NONE },
    { SUP_FAILING, SUP_EV_ALL_STOPPED, SUP_DONE, SUP_ACT_NONE },
    { SUP_RUNNING, SUP_EV_ALL_STOPPED, -1, SUP_ACT_NONE },
    { SUP_DRAINING, SUP_EV_ALL_STOPPED, -1, SUP_ACT_NONE },
};

static const struct row *find(enum sup_state s, enum sup_event e)
{
    for (size_t i = 0; i < ADB_ARRAY_LEN(expected); i++)
        if (expected[i].from == s && expected[i].ev == e)
            return &expected[i];
    return NULL;
}

START_TEST(test_every_row)
{
    u32 rows = 0;
    for (int s = 0; s < SUP_STATE_COUNT; s++) {
        for (int e = 0; e < SUP_EVENT_COUNT; e++) {
            const struct sup_transition *t = sup_transition((enum sup_state)s, (enum sup_event)e);
            const struct row *want = find((enum sup_state)s, (enum sup_event)e);
            if (want == NULL || want->to < 0) {
                /* Not listed with a row: the event must change nothing here. */
                ck_assert_msg(t == NULL, "%s on %s: a row to %s, want none", sup_event_name((enum sup_event)e),
                              sup_state_name((enum sup_state)s), t ? sup_state_name(t->to) : "");
                continue;
            }
            ck_assert_msg(t != NULL, "%s on %s: no row, want one to %s", sup_event_name((enum sup_event)e),
                          sup_state_name((enum sup_state)s), sup_state_name((enum sup_state)want->to));
            ck_assert_msg((int)t->to == want->to && t->action == want->action, "%s on %s: to %s, want %s",
                          sup_event_name((enum sup_event)e), sup_state_name((enum sup_state)s),
                          sup_state_name(t->to), sup_state_name((enum sup_state)want->to));
            /* Every row but a failure's explains itself (a failure's reason comes with it). */
            ck_assert(e == SUP_EV_FAILURE || (t->why != NULL && t->why[0] != '\0'));
            rows++;
        }
    }
    ck_assert_uint_eq(rows, 14);
    /* done is final. */
    for (int e = 0; e < SUP_EVENT_COUNT; e++)
        ck_assert_ptr_null(sup_transition(SUP_DONE, (enum sup_event)e));
    ck_assert_ptr_null(sup_transition(SUP_STATE_COUNT, SUP_EV_FAILURE));
    ck_assert_ptr_null(sup_transition(SUP_RUNNING, SUP_EVENT_COUNT));
}
END_TEST

/* The walks: each event sequence ends in done, by the states the daemon's log shows. */
static enum sup_state walk(const enum sup_event *evs, size_t n, char *trace, size_t cap)
{
    enum sup_state s = SUP_START_SEQUENCER;
    snprintf(trace, cap, "%s", sup_state_name(s));
    for (size_t i = 0; i < n; i++) {
        const struct sup_transition *t = sup_transition(s, evs[i]);
        if (t == NULL)
            continue;
        s = t->to;
        size_t len = strlen(trace);
        snprintf(trace + len, cap - len, " %s", sup_state_name(s));
    }
    return s;
}

START_TEST(test_walks)
{
    char trace[256];
    static const enum sup_event start_stop[] = { SUP_EV_STARTING_READY, SUP_EV_STARTING_READY,
                                                 SUP_EV_STARTING_READY, SUP_EV_STOP_SIGNAL,
                                                 SUP_EV_FAILURE, SUP_EV_DRAINED, SUP_EV_ALL_STOPPED };
    ck_assert_int_eq(walk(start_stop, ADB_ARRAY_LEN(start_stop), trace, sizeof(trace)), SUP_DONE);
    ck_assert_str_eq(trace, "start_sequencer start_applier start_ingress running draining stopping done");
    static const enum sup_event fail_in_start[] = { SUP_EV_STARTING_READY, SUP_EV_FAILURE, SUP_EV_STOP_SIGNAL,
                                                    SUP_EV_STARTING_READY, SUP_EV_ALL_STOPPED };
    ck_assert_int_eq(walk(fail_in_start, ADB_ARRAY_LEN(fail_in_start), trace, sizeof(trace)), SUP_DONE);
    ck_assert_str_eq(trace, "start_sequencer start_applier failing done");
    static const enum sup_event stop_in_start[] = { SUP_EV_STOP_SIGNAL, SUP_EV_STARTING_READY, SUP_EV_DRAINED,
                                                    SUP_EV_ALL_STOPPED };
    ck_assert_int_eq(walk(stop_in_start, ADB_ARRAY_LEN(stop_in_start), trace, sizeof(trace)), SUP_DONE);
    ck_assert_str_eq(trace, "start_sequencer draining stopping done");
}
END_TEST

START_TEST(test_names)
{
    for (int s = 0; s < SUP_STATE_COUNT; s++)
        ck_assert_str_ne(sup_state_name((enum sup_state)s), "unknown");
    for (int e = 0; e < SUP_EVENT_COUNT; e++)
        ck_assert_str_ne(sup_event_name((enum sup_event)e), "unknown");
    ck_assert_str_eq(sup_state_name(SUP_STATE_COUNT), "unknown");
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("lifecycle");
    TCase *tc = tcase_create("lifecycle");
    tcase_add_test(tc, test_every_row);
    tcase_add_test(tc, test_walks);
    tcase_add_test(tc, test_names);
    suite_add_tcase(s, tc);
    return s;
}
