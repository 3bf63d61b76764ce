/*
 * replica/applying.h — the applier's core over the state machine: what a shared-log entry does
 * to the state (applied, skipped as already applied, or damage), whether a retry the sequencer
 * answered from its cache can be answered now and with what, and which reservations are due.
 *
 * The applier worker (replica/applier.c) is the shell: it takes entries from the shared log and
 * requests from its rings, hands them here, and pushes results, publishes applied_lsn and
 * proposes what comes back; its other decisions (the expiry hold, checkpoints, pruning) are in
 * replica/apply_policy.h. No clock, no I/O, no globals: tests/test_applying.c drives it
 * (DESIGN.md §10), and a simulated node applies its log through the same calls.
 *
 * Rules: an entry must decode whole (frame checksum, command) and follow the applied LSN exactly
 * with a slot that does not go back (apply_policy_entry); one at or below it is skipped. A retry
 * waits until its first logging is applied, then gets the stored result, or — when the record
 * is gone (retired, or the state machine's table was full) — is sent back to be logged, and the
 * state machine's dedupe answers it. A reservation is due once its deadline slot has ended.
 */
#ifndef ADB_REPLICA_APPLYING_H
#define ADB_REPLICA_APPLYING_H

#include "common/types.h"
#include "replica/sm.h"
#include "vocab/vocab.h"

struct applying {
    sm_t *sm;          /* the caller's */
    struct sm_due *due; /* the caller's, due_max entries */
    u32 due_max;
};

void applying_init(struct applying *a, sm_t *sm, struct sm_due *due, u32 due_max);

enum applying_entry { APPLYING_APPLIED = 0, APPLYING_SKIPPED, APPLYING_DAMAGED };

struct applying_result {
    u64 lsn, slot; /* the entry's (APPLIED, SKIPPED) */
    u8 kind;       /* its enum sm_command_kind */
    struct sm_outcome outcome; /* APPLIED */
};

/* One shared-log entry (a WAL frame's bytes). DAMAGED: why says what (shared-memory damage:
 * the daemon restarts and trusts the disk). */
enum applying_entry applying_frame(struct applying *a, const u8 *frame, u32 len, struct applying_result *out,
                                   char *why, size_t why_len);

enum applying_retry { APPLYING_RETRY_WAIT = 0, APPLYING_RETRY_ANSWER, APPLYING_RETRY_RESUBMIT };

/* A retry of cmd the sequencer answered from its cache (first logged at lsn). */
enum applying_retry applying_retry(const struct applying *a, const struct sm_command *cmd, u64 lsn,
                                   struct sm_outcome *out);

/* Reservations due at `slot` (deadline slot ended), at most due_max: a->due[0, return). */
u32 applying_due(struct applying *a, u64 slot);

#endif
