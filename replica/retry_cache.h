/*
 * replica/retry_cache.h — the sequencer's retry shortcut as pure code: which writes are retries
 * it can answer without logging a frame.
 *
 * The state machine's dedupe (replica/sm.h) is the authority; this cache only saves the WAL a
 * frame per retry. It maps an operation id to the LSN it was first logged at and the command's
 * fingerprint, for dedupe_window_slots after its request slot, in a ring in insertion order
 * (slots never decrease, so that is also expiry order). A retry is answered from it only when
 * (1) the id is there with the same fingerprint, (2) its first frame is durable, and (3) the
 * record is well inside the window (at least window/8 + 1 slots left), so the state machine
 * still holds it when the applier looks. Anything else is logged, and the state machine answers.
 * When full, the oldest entry goes first: forgetting costs a frame later, never a wrong answer.
 *
 * Memory comes from the caller (retry_cache_bytes), zeroed; nothing is allocated afterwards.
 * No I/O, no clock: tests/test_retry_cache.c drives it.
 */
#ifndef ADB_REPLICA_RETRY_CACHE_H
#define ADB_REPLICA_RETRY_CACHE_H

#include "common/types.h"
#include "replica/index.h"
#include "vocab/vocab.h"

/* 40 bytes (the id as two words: a u128 member would pad the record to 48). */
struct retry_entry {
    u64 id_lo, id_hi;
    u64 fp; /* sm_fingerprint */
    u64 lsn;
    u64 retire_after_slot;
};

struct retry_cache {
    struct retry_entry *entries; /* ring in insertion order */
    u32 capacity, head, count;
    struct index ix;
    u64 window_slots, margin_slots;
};

/* Bytes of memory a cache of `capacity` entries needs (entries, then index slots). */
u64 retry_cache_bytes(u32 capacity);
/* Over `memory` (retry_cache_bytes(capacity), all zero, 8-byte aligned). */
void retry_cache_init(struct retry_cache *c, void *memory, u32 capacity, u64 window_slots);

/* Drops entries whose window ended before `slot`. */
void retry_cache_retire(struct retry_cache *c, u64 slot);

/* The first frame of cmd's operation id was logged at lsn, slot. A second logging of the same id
 * (a forced retry) keeps the first. known_absent: the caller just looked the id up and missed. */
void retry_cache_add(struct retry_cache *c, const struct sm_command *cmd, u64 lsn, u64 slot, bool known_absent);

/* The id's entry, or NULL. */
const struct retry_entry *retry_cache_find(const struct retry_cache *c, u128 operation_id);

/*
 * The LSN a retry of cmd (looked up as `e`, which may be NULL) can be answered from at `slot`
 * with the WAL durable to durable_lsn, or 0: log it.
 */
u64 retry_cache_answer(const struct retry_cache *c, const struct retry_entry *e, const struct sm_command *cmd,
                       u64 slot, u64 durable_lsn);

#endif
