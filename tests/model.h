/*
 * tests/model.h — a reference model of the state machine, for model-based tests.
 *
 * Written from DESIGN.md §2-§3 and docs/state-machine.md only, independently of replica/sm.c:
 * plain arrays, linear search, no hashing, no wheel. It is meant to be obviously correct, not
 * fast; test tables hold tens to a few hundred records. It speaks the public types of
 * replica/sm.h (commands, outcomes, views, due entries) so results compare field by field.
 *
 * NOTES
 *   The dedupe "fingerprint" is the command itself: kind, client_id and the fields of its kind
 *   are stored and compared exactly (the real state machine compares a 128-bit hash of them).
 *
 *   Record order in the arrays is meaningless (removal swaps in the last record); every query
 *   that promises an order sorts.
 */
#ifndef ADB_TESTS_MODEL_H
#define ADB_TESTS_MODEL_H

#include "replica/sm.h"

struct model_resource {
    u128 resource_id;
    u128 current_reservation_id; /* 0 = none */
    u64 version;
    u8 state; /* enum sm_resource_state */
};

struct model_reservation {
    u128 reservation_id;
    u128 resource_id;
    u128 holder_id;
    u64 created_lsn;
    u64 deadline_slot;
    u64 released_lsn;      /* 0 = none */
    u64 retire_after_slot; /* 0 = none (reserved or confirmed) */
    u8 state;              /* enum sm_reservation_state */
};

struct model_operation {
    struct sm_command command; /* the payload: only kind, client_id and the kind's fields count */
    u8 result;
    u128 result_reservation_id;
    u64 result_deadline_slot;
    u64 applied_lsn;
    u64 retire_after_slot;
};

struct model {
    struct sm_config cfg;
    struct model_resource *resources; /* resource_count used of cfg.resource_capacity */
    u32 resource_count;
    struct model_reservation *reservations; /* reservation_count used of cfg.reservation_capacity */
    u32 reservation_count;
    struct model_operation *operations; /* operation_count used of cfg.operation_capacity */
    u32 operation_count;
    u64 last_applied_lsn;
    u64 last_request_slot;
    u64 retired_watermark_lsn;
};

/* Allocates the tables for a (valid) config; false on out of memory. */
bool model_init(struct model *m, const struct sm_config *cfg);
void model_free(struct model *m);

/* Applies one log entry; same contract and results as sm_apply. */
struct sm_outcome model_apply(struct model *m, u64 lsn, u64 request_slot, const struct sm_command *cmd);

/* Reads; same contract and results as sm_get_resource / sm_get_reservation. */
enum sm_read model_get_resource(const struct model *m, u128 resource_id, u64 min_lsn,
                                struct sm_resource_view *out);
enum sm_read model_get_reservation(const struct model *m, u128 reservation_id, u64 min_lsn,
                                   struct sm_reservation_view *out);

/* Reserved reservations with deadline <= slot, sorted by (deadline, id), the first `max`. */
u32 model_due_expirations(const struct model *m, u64 slot, struct sm_due *out, u32 max);

/* Reservations in state reserved (what the expiration capacity bounds). */
u32 model_expirations_used(const struct model *m);

/* Reserved reservations with deadline <= slot. */
u64 model_expiration_backlog(const struct model *m, u64 slot);

#endif
