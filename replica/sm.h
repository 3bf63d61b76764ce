/*
 * replica/sm.h — the deterministic allocator state machine (the trusted core).
 *
 * One resource, one winner. This module owns resources, reservations, operation records
 * (dedupe), the expiration index and the retirement queues, and applies logged commands to
 * them. It does no I/O, reads no clock and draws no randomness: the same sequence of
 * (lsn, request_slot, command) gives the same results and the same state digest everywhere —
 * in the applier worker, in the simulator and in unit tests. Semantics: DESIGN.md §2–§3.
 *
 * NOTES
 *   Initialization: sm_layout() sizes every table, index and queue from an sm_config (each part
 *   reports its size, overflow-checked); sm_init() takes one block of that size and carves it.
 *   Nothing is allocated afterwards: apply, reads and queries work in the block.
 *
 *   Time: request_slot is stamped by the sequencer and never decreases; LSNs strictly increase.
 *   Both are asserted, because a violation means the log is corrupt or the caller is broken.
 *
 *   Retirement is eager and happens first in every apply: records whose retire_after_slot is
 *   below the request slot are dropped, oldest first, from FIFO queues (each record is retired
 *   once, so the cost is O(1) amortized per record; a large slot jump retires its backlog in
 *   that one apply). Reads see the state as of the last applied command.
 *
 *   Expiration: reserved reservations sit in a timing wheel keyed by deadline slot; apply
 *   moves buckets whose deadline has passed onto an ordered due list. See expiry.h.
 *
 *   Thread safety: none. One owner (the applier) mutates and reads it.
 */
#ifndef ADB_REPLICA_SM_H
#define ADB_REPLICA_SM_H

#include "common/types.h"
#include "replica/expiry.h"
#include "replica/index.h"
#include "vocab/vocab.h" /* commands, results, views, sm_config */

/* Sizes of the parts of the state machine's memory block (bytes, each 64-byte aligned). */
struct sm_layout {
    u64 resources;
    u64 reservations, reservation_index, reservation_free, reservation_retire;
    u64 operations, operation_index;
    u64 expiry;
    u64 operations_at; /* offset of the operation records (a multiple of SM_OPERATIONS_ALIGN) */
    u64 total;
};

#define SM_OPERATIONS_ALIGN ((u64)2 << 20)

/* Computes the layout; false if the config is invalid or the total overflows. */
bool sm_layout(const struct sm_config *cfg, struct sm_layout *out);

/* Internal record types: public only so sm_t can be embedded; use the accessors. */
/* Resources live directly in an open-addressed table (never removed, so positions are stable
 * and a lookup is one cache miss, not two). */
struct sm_resource {
    u128 resource_id;
    u128 current_reservation_id;
    u64 version;
    u8 state;
    u8 used; /* slot occupied */
};

/* One cache line: created_lsn is the id's low half and resource_id is reached through
 * resource_ref, so neither is stored. */
struct sm_reservation {
    u128 reservation_id;
    u128 holder_id;
    u64 deadline_slot;
    u64 released_lsn;
    u64 retire_after_slot;
    u32 resource_ref; /* position of the resource in the resource table */
    u8 state;
} __attribute__((aligned(64)));

/* An operation record (dedupe), 48 bytes: what a retry needs and nothing it can derive. The
 * result's reservation id is the new one for a reserve (from applied_lsn) and the target for
 * a confirm or release (the retried command carries it: same fingerprint, same target); the
 * request slot is retire_after_slot - dedupe_window_slots. */
struct sm_operation {
    u128 operation_id;
    u64 fingerprint_code;     /* sm_fingerprint (low 8 bits zero) | result code */
    u64 applied_lsn;
    u64 retire_after_slot;
    u64 result_deadline_slot; /* deadline of the result's reservation (0 on a failure) */
};

static inline u8 sm_operation_code(const struct sm_operation *op)
{
    return (u8)op->fingerprint_code;
}

/* A hash of every field of a record: the state keeps the sum over its live records, which a
 * snapshot stores to check the records it leaves to the operation log (replica/oplog.h). */
u64 sm_operation_hash(const struct sm_operation *op);

/* Bounded FIFO of pool positions (retirement order). */
struct sm_fifo {
    u32 *items;
    u32 capacity;
    u32 head;  /* position of the oldest item */
    u32 count; /* items in the queue */
};

typedef struct sm {
    struct sm_config cfg;
    void *memory;
    u64 memory_mapped; /* bytes sm_create mapped (0: the caller's memory) */
    bool used;         /* anything applied or restored since init (sm_reset has work to do) */

    struct sm_resource *resources; /* open-addressed table, resource_mask + 1 slots */
    u32 resource_mask;
    u32 resource_count;

    struct sm_reservation *reservations;
    u32 *reservation_free; /* stack of free pool positions */
    u32 reservation_free_count;
    u32 reservation_count;
    struct index reservation_index;
    struct sm_fifo reservation_retire;

    /* Operation records in a ring in LSN order (also retirement order: request slots never
     * decrease and every record lives dedupe_window_slots), so no free stack or queue. */
    struct sm_operation *operations;
    u32 operation_head;  /* ring position of the oldest record */
    u32 operation_count;
    struct index operation_index;
    u64 operation_appended; /* records ever appended by apply (what the operation log exports) */
    u64 operation_sum;      /* sum of sm_operation_hash over the live records (snapshot check) */
    u64 operation_oldest_lsn; /* applied_lsn of the oldest live record, 0 if none */

    struct expiry expiry;

    u64 last_applied_lsn;
    u64 last_request_slot;
    u64 retired_watermark_lsn; /* highest LSN of a retired reservation of this shard */
    u64 retired_through_slot;  /* request slot of the last retirement pass (a slot_overflow
                                * entry advances last_request_slot but retires nothing) */
} sm_t;

/*
 * Initialises `sm` in `memory`, which must be at least sm_layout().total bytes, 64-byte
 * aligned, and stay valid until sm_deinit. The config must validate.
 */
void sm_init(sm_t *sm, const struct sm_config *cfg, void *memory);

/* Convenience: maps the block (huge pages advised); false on invalid config or ENOMEM. */
bool sm_create(sm_t *sm, const struct sm_config *cfg, char *why, size_t why_len);
/*
 * Leaves the operation records (ring and index) out of processes forked from now on: a snapshot
 * child, which never reads them (they are in the operation log, replica/oplog.h), then shares
 * no pages of them, so the parent's writes to them cost no copy-on-write faults while it runs.
 * Such a child may read every other part and sm->operation_* scalars, never sm->operations.
 * Only for a block sm_create mapped; false if the kernel refuses (then nothing changes).
 */
bool sm_keep_operations_from_fork(sm_t *sm);

/* Faults in every page of a block sm_create mapped (a long-running owner calls it once at start:
 * see common/table_memory.h). No effect on state. */
void sm_populate(sm_t *sm);
/* Empties `sm` in place, keeping its memory block and how it was allocated. */
void sm_reset(sm_t *sm, const struct sm_config *cfg);
void sm_destroy(sm_t *sm);

/*
 * Applies one committed log entry. lsn must exceed every earlier one and request_slot must not
 * be below the previous one (asserted). Never fails: every operating condition is a result.
 */
struct sm_outcome sm_apply(sm_t *sm, u64 lsn, u64 request_slot, const struct sm_command *cmd);

/*
 * Hints the CPU to start loading what applying `cmd` at `lsn` will touch first (the home slot
 * of its resource or reservation, its operation record, and for reserve the slot its new
 * reservation id will take). An applier holding a batch of committed entries calls this a few
 * entries ahead; it changes no state and is never required for correctness.
 */
void sm_prefetch(const sm_t *sm, u64 lsn, const struct sm_command *cmd);

/* The fingerprint dedupe compares: a 56-bit hash (the low 8 bits are zero, where a record keeps
 * its result code) of kind, client id and the kind's fields (not the operation id). Client
 * commands only. */
u64 sm_fingerprint(const struct sm_command *cmd);

/*
 * The stored result of cmd's operation id if its record is still in the dedupe window and has
 * cmd's fingerprint: what a retry of cmd returns (from_retry_cache set), without applying
 * anything. false if there is no such record (retired, never recorded, or a different
 * fingerprint).
 */
bool sm_get_operation(const sm_t *sm, const struct sm_command *cmd, struct sm_outcome *out);

/* The i-th oldest live operation record (i < operation_count). */
static inline const struct sm_operation *sm_operation_at(const sm_t *sm, u32 i)
{
    u64 pos = (u64)sm->operation_head + i;
    return &sm->operations[pos >= sm->cfg.operation_capacity ? pos - sm->cfg.operation_capacity : pos];
}

/* The reservation id an entry at `lsn` creates. */
static inline u128 sm_reservation_id(const sm_t *sm, u64 lsn)
{
    return U128_MAKE(sm->cfg.shard_id, lsn);
}

/* Reads, fenced: fence_not_applied if min_lsn > last applied LSN (0 = no fence). */
enum sm_read sm_get_resource(const sm_t *sm, u128 resource_id, u64 min_lsn,
                             struct sm_resource_view *out);
enum sm_read sm_get_reservation(const sm_t *sm, u128 reservation_id, u64 min_lsn,
                                struct sm_reservation_view *out);

/* A reservation due for expiration. */
struct sm_due {
    u128 reservation_id;
    u64 deadline_slot;
};

/*
 * Fills `out` with up to `max` reserved reservations whose deadline is <= slot, earliest
 * deadline first, ties by reservation id. Work is O(max + slots scanned / 64), never a scan
 * of the whole table. Returns the number written.
 */
u32 sm_due_expirations(const sm_t *sm, u64 slot, struct sm_due *out, u32 max);

struct sm_health {
    u64 last_applied_lsn;
    u64 last_request_slot;
    u64 logical_slot_lag;   /* current_slot - last_request_slot, 0 if behind */
    u64 expiration_backlog; /* reserved reservations due at current_slot */
    u32 resources_used, resource_capacity;
    u32 reservations_used, reservation_capacity;
    u32 operations_used, operation_capacity;
    u32 expirations_used, expiration_capacity;
    u32 operation_utilization_pct; /* 0..100, rounded up so a non-empty table is >= 1 */
    u64 retired_watermark_lsn;
};

void sm_health(const sm_t *sm, u64 current_slot, struct sm_health *out);

/* A 128-bit digest of the whole logical state, independent of memory layout. */
struct sm_digest {
    u64 lo, hi;
};

struct sm_digest sm_digest(const sm_t *sm);

/*
 * Full invariant check (DESIGN.md §2 plus internal consistency of indexes, queues and the
 * expiration index). O(state size). Returns true if every invariant holds; otherwise false and
 * the first violation in `why`. Run after every apply when built with --enable-debug.
 */
bool sm_check_invariants(const sm_t *sm, char *why, size_t why_len);

/* ---- restore (used by replica/snapshot.c) ----------------------------------------------- */
/*
 * Rebuilds a state from a decoded snapshot. On an sm fresh from sm_init, call
 *   sm_restore_begin        once, with the scalars;
 *   sm_restore_resource     for each resource;
 *   sm_restore_reservation  for each reservation: first the terminal ones in retirement-queue
 *                           order, then the reserved ones in (deadline, id) order, then the
 *                           confirmed ones;
 *   sm_restore_operation    for each operation record, in LSN order;
 *   sm_restore_end          once.
 * A placement call that returns anything but SM_RESTORE_OK has changed nothing. The calls never
 * assert on record contents: what they cannot place they report (SM_RESTORE_INVALID covers a
 * state out of range, a deadline that is 0, out of order or beyond max_ttl_slots after the last
 * request slot, and operation id 0). Everything else (id shapes, LSN ranges, queue orders,
 * cross references) is the caller's to validate, and the result is trusted only once
 * sm_check_invariants passes. Pool positions are not restored: they do not affect outcomes or
 * the digest.
 */
enum sm_restore_result {
    SM_RESTORE_OK = 0,
    SM_RESTORE_DUPLICATE,   /* the id is already present */
    SM_RESTORE_FULL,        /* table (or, for reserved, the expiration index) at capacity */
    SM_RESTORE_NO_RESOURCE, /* a reservation names a resource not restored */
    SM_RESTORE_INVALID,     /* a field the state machine cannot hold (see above) */
};

void sm_restore_begin(sm_t *sm, u64 last_applied_lsn, u64 last_request_slot,
                      u64 retired_watermark_lsn, u64 retired_through_slot);
enum sm_restore_result sm_restore_resource(sm_t *sm, const struct sm_resource_view *v);
/*
 * Hints for a restore loop, called a few records ahead: start loading the table and index
 * slots the record with these ids will be looked up in and inserted into. No effect on state.
 */
void sm_restore_prefetch_resource(const sm_t *sm, u128 resource_id);
void sm_restore_prefetch_reservation(const sm_t *sm, u128 reservation_id, u128 resource_id);
void sm_restore_prefetch_operation(const sm_t *sm, u128 operation_id);

/* created_lsn is ignored (it is the id's low half). */
enum sm_restore_result sm_restore_reservation(sm_t *sm, const struct sm_reservation_view *v);
enum sm_restore_result sm_restore_operation(sm_t *sm, const struct sm_operation *op);
void sm_restore_end(sm_t *sm);

#endif
