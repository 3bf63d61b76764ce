/*
 * tests/sm_fixture.h — a state machine plus a tiny "sequencer" for tests: it hands out
 * increasing LSNs and operation ids and lets a test set the request slot.
 */
#ifndef ADB_TESTS_SM_FIXTURE_H
#define ADB_TESTS_SM_FIXTURE_H

#include "replica/sm.h"

struct fx {
    sm_t sm;
    u64 lsn;  /* last LSN handed out */
    u64 slot; /* request slot for the next command */
    u128 next_op;
    u128 client;
};

/* A small config: 8 resources, 8 reservations, 16 operations, 8 expiring, ttl <= 16,
 * dedupe window 10, history window 5. */
struct sm_config fx_small_config(void);

/* Creates the state machine (fails the test on error). */
void fx_init(struct fx *f, const struct sm_config *cfg);
void fx_free(struct fx *f);

/* Applies a command as the next log entry at f->slot, with a fresh operation id. */
struct sm_outcome fx_apply(struct fx *f, struct sm_command c);
/* Applies with a given operation id (retries). */
struct sm_outcome fx_apply_op(struct fx *f, u128 op, struct sm_command c);

struct sm_command fx_create_cmd(u128 resource);
struct sm_command fx_reserve_cmd(u128 resource, u128 holder, u64 ttl);
struct sm_command fx_confirm_cmd(u128 reservation, u128 holder);
struct sm_command fx_release_cmd(u128 reservation, u128 holder);
struct sm_command fx_expire_cmd(u128 reservation, u64 deadline);

/* Asserts the full invariant check passes (fails the test with the reason otherwise). */
void fx_check(const struct fx *f);

#endif
