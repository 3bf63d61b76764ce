/*
 * replica/apply_policy.h — the applier's decisions outside the state machine, as pure code:
 * when to look for due expirations and whether to propose them (the expiry hold), when to take
 * a checkpoint, how long to back off after a failed one, and what the WAL may be pruned below.
 *
 * The applier worker (replica/applier.c) is the shell: it reads the clock, the rings and the
 * shared segment, feeds what it saw here as arguments, and performs what comes back (scan and
 * propose, fork the snapshot child, publish prune_below_lsn). No clock, no I/O, no globals, so
 * tests/test_apply_policy.c drives it event by event (DESIGN.md §10, "Cores and shells").
 *
 * Rules:
 *   - Expiration is looked at once per slot (and on a forced tick). A round of proposals is
 *     held: no new round until the sequencer has taken every proposal (the expire ring is
 *     empty; its sequenced LSN then bounds their entries) and that LSN has been applied — or
 *     until expire_hold_max_ms has passed, in case a proposal was dropped (a no-op expire is
 *     harmless; a reservation proposed twice in one round is not possible).
 *   - A checkpoint is due once checkpoint_interval_ms (plus any backoff) has passed since the
 *     last one started and at least checkpoint_min_entries entries are newer than the newest
 *     snapshot; never while one is running.
 *   - A failed checkpoint waits max(checkpoint_interval_ms, 1 s), doubling per failure up to
 *     snapshot_backoff_max_ms; a success resets it.
 *   - The WAL is pruned only behind the older of the two newest snapshots (one checkpoint of
 *     overlap, replica/recovery.h): after a success, prune_below_lsn = older + 1, or 0 (nothing)
 *     while there is no older one.
 *   - Apply and restart. Entries come in LSN order: one at or below the applied LSN is skipped
 *     (a restarted sequencer publishes again what a crash left unpublished or half published,
 *     and a restarted applier meets entries its predecessor applied); one that does not follow
 *     it exactly, or whose slot is below the last applied slot, is shared-memory damage (the
 *     daemon restarts and trusts the disk). A restarted applier recovers up to the applied LSN
 *     its predecessor published (published only once durable); on the daemon's first start, up
 *     to the LSN the sequencer's recovery made durable — never a frame only the page cache holds.
 *     A retry the sequencer answered from its cache waits until its LSN is applied.
 *   - A reservation is due once its deadline slot has ended: at slot s, deadlines up to s - 1.
 */
#ifndef ADB_REPLICA_APPLY_POLICY_H
#define ADB_REPLICA_APPLY_POLICY_H

#include "common/types.h"

struct apply_policy_config {
    u64 checkpoint_interval_ms;
    u64 checkpoint_min_entries;
    u64 expire_hold_max_ms;
    u64 snapshot_backoff_max_ms;
};

struct apply_policy {
    struct apply_policy_config cfg;
    u64 last_scan_slot;
    bool holding;        /* a round of proposals is on its way */
    u64 hold_until_lsn;  /* UINT64_MAX: not known yet (the sequencer has not taken them all) */
    u64 hold_since_ms;
    u64 snap_lsns[2];    /* the newest two snapshots: [0] newest, 0 = none */
    u64 last_snap_ms;    /* when the last checkpoint started (or recovery ended) */
    u64 backoff_ms;
    bool snap_running;
    u64 snap_pending_lsn;
};

/* After recovery at now_ms, from a snapshot at snapshot_lsn (0: none). */
void apply_policy_init(struct apply_policy *p, const struct apply_policy_config *cfg, u64 now_ms, u64 snapshot_lsn);

/* What to do about expiration now (bits). */
#define APPLY_POLICY_NEW_SLOT 1u /* a new slot (or a forced tick): publish health */
#define APPLY_POLICY_PROPOSE 2u  /* scan for due reservations and propose them */

/*
 * queue_empty: the expire ring is empty (the sequencer took every proposal); sequenced_lsn: the
 * sequencer's last LSN as read after seeing it empty; applied_lsn: the state's.
 */
unsigned apply_policy_expiration(struct apply_policy *p, u64 now_ms, u64 slot, bool forced, u64 applied_lsn,
                                 bool queue_empty, u64 sequenced_lsn);
/* `sent` proposals went out at now_ms (0: none, nothing is held). */
void apply_policy_proposed(struct apply_policy *p, u32 sent, u64 now_ms);

/* Whether to start a checkpoint of the state at applied_lsn now. */
bool apply_policy_checkpoint_due(const struct apply_policy *p, u64 now_ms, u64 applied_lsn);
void apply_policy_checkpoint_started(struct apply_policy *p, u64 lsn, u64 now_ms);
/* The running checkpoint succeeded: returns prune_below_lsn (0: prune nothing). */
u64 apply_policy_checkpoint_done(struct apply_policy *p);
/* It failed (or could not start): returns the wait before the next attempt, beyond the interval. */
u64 apply_policy_checkpoint_failed(struct apply_policy *p);

/* What an entry of the shared log at lsn, slot is to an applier at applied_lsn, applied_slot. */
enum apply_entry { APPLY_ENTRY_APPLY = 0, APPLY_ENTRY_SKIP, APPLY_ENTRY_GAP };
enum apply_entry apply_policy_entry(u64 applied_lsn, u64 applied_slot, u64 lsn, u64 slot);

/* How far recovery reads at start (0: nothing). first_start: no applier of this daemon ran.
 * base_lsn: a state transfer installed the state after it (a cluster; else 0): never less. */
u64 apply_policy_recovery_limit(bool first_start, u64 durable_lsn, u64 published_applied_lsn, u64 base_lsn);

/* Whether a retry answered from the sequencer's cache (first logged at retry_lsn) can be answered. */
bool apply_policy_retry_ready(u64 applied_lsn, u64 retry_lsn);

/* The last deadline slot due at `slot`; false: none (slot 0). */
bool apply_policy_due_through(u64 slot, u64 *deadline_slot);

#endif
