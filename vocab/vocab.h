/*
 * vocab/vocab.h — the vocabulary every layer above common/ speaks: command kinds and the
 * logged command, result codes and outcomes, resource and reservation states and their read
 * views, read results, and the state machine's configuration with its limits.
 *
 * Layering (DESIGN.md §10, one way): common/ -> vocab/ -> the state machine (replica/sm.h),
 * the WAL codec and scan (wal/) and the wire codec (net/proto.h) -> cores -> worker shells ->
 * tools. This header knows nothing of how the state machine stores or applies anything, so the
 * codecs, the client library and the tools take the types from here without the state machine;
 * vocab/vocab.c holds only the names and sm_config_validate.
 *
 * NOTES
 *   The sm_ prefix is kept: these are the state machine's types (DESIGN.md §2), defined below
 *   it so that what only encodes, decodes or prints them does not link it.
 *   Values are stable: result codes, command kinds and states are logged and travel on the
 *   wire.
 */
#ifndef ADB_VOCAB_VOCAB_H
#define ADB_VOCAB_VOCAB_H

#include "common/types.h"

/* Result codes. Values are stable: they are logged and travel on the wire. */
enum sm_result {
    SM_OK = 0,
    SM_NOOP = 1,
    SM_ALREADY_EXISTS = 2,
    SM_RESOURCE_TABLE_FULL = 3,
    SM_RESOURCE_NOT_FOUND = 4,
    SM_RESOURCE_BUSY = 5,
    SM_TTL_OUT_OF_RANGE = 6,
    SM_RESERVATION_TABLE_FULL = 7,
    SM_RESERVATION_NOT_FOUND = 8,
    SM_RESERVATION_RETIRED = 9,
    SM_EXPIRATION_INDEX_FULL = 10,
    SM_OPERATION_TABLE_FULL = 11,
    SM_OPERATION_CONFLICT = 12,
    SM_INVALID_STATE = 13,
    SM_HOLDER_MISMATCH = 14,
    SM_SLOT_OVERFLOW = 15,
};
#define SM_RESULT_COUNT 16

const char *sm_result_name(enum sm_result r);

enum sm_command_kind {
    SM_CMD_CREATE_RESOURCE = 1,
    SM_CMD_RESERVE = 2,
    SM_CMD_CONFIRM = 3,
    SM_CMD_RELEASE = 4,
    SM_CMD_EXPIRE = 5, /* internal: proposed by the primary, no operation id */
};
#define SM_CMD_KIND_MAX 5

const char *sm_command_name(enum sm_command_kind k);

/*
 * A command as it is logged. Only the fields of its kind are meaningful; the others must be
 * zero (codecs enforce this, and the fingerprint covers only the meaningful ones).
 *   create_resource: resource_id
 *   reserve:         resource_id, holder_id, ttl_slots
 *   confirm/release: reservation_id, holder_id
 *   expire:          reservation_id, deadline_slot (operation_id and client_id are zero)
 */
struct sm_command {
    u128 operation_id;
    u128 client_id;
    u128 resource_id;
    u128 reservation_id;
    u128 holder_id;
    u64 ttl_slots;
    u64 deadline_slot;
    u8 kind; /* enum sm_command_kind */
};

/* The committed result of one command. */
struct sm_outcome {
    u128 reservation_id; /* reserve ok: the new id; confirm/release/expire: the target */
    u64 deadline_slot;   /* deadline of that reservation, when there is one */
    u64 applied_lsn;     /* LSN of the entry that produced the result (original on a retry) */
    u8 result;           /* enum sm_result */
    bool from_retry_cache;
};

enum sm_resource_state { SM_RESOURCE_AVAILABLE = 0, SM_RESOURCE_RESERVED = 1, SM_RESOURCE_CONFIRMED = 2 };

enum sm_reservation_state {
    SM_RESERVATION_RESERVED = 0,
    SM_RESERVATION_CONFIRMED = 1,
    SM_RESERVATION_RELEASED = 2,
    SM_RESERVATION_EXPIRED = 3,
};

const char *sm_resource_state_name(enum sm_resource_state s);
const char *sm_reservation_state_name(enum sm_reservation_state s);

struct sm_resource_view {
    u128 resource_id;
    u128 current_reservation_id; /* 0 = none */
    u64 version;                 /* +1 on every state transition */
    u8 state;                    /* enum sm_resource_state */
};

struct sm_reservation_view {
    u128 reservation_id;
    u128 resource_id;
    u128 holder_id;
    u64 created_lsn;
    u64 deadline_slot;
    u64 released_lsn;      /* 0 = none */
    u64 retire_after_slot; /* 0 = none */
    u8 state;              /* enum sm_reservation_state */
};

enum sm_read {
    SM_READ_FOUND = 0,
    SM_READ_NOT_FOUND = 1,
    SM_READ_RETIRED = 2,
    SM_READ_FENCE_NOT_APPLIED = 3,
};

const char *sm_read_name(enum sm_read r);

struct sm_config {
    u64 shard_id;             /* high 64 bits of every reservation id; 0 for now */
    u32 resource_capacity;    /* most resources */
    u32 reservation_capacity; /* most reservations held at once, live or in history */
    u32 operation_capacity;   /* most operation records (dedupe table) */
    u32 expiration_capacity;  /* most reserved (expiring) reservations at once */
    u64 max_ttl_slots;        /* reserve accepts 1..max_ttl_slots */
    u64 dedupe_window_slots;  /* operation records live this many slots after apply */
    u64 history_window_slots; /* terminal reservations stay readable this many slots */
};

/* Largest values the config accepts (tables index with u32; the wheel is an array). */
#define SM_CAPACITY_MAX ((u32)1 << 30)
#define SM_MAX_TTL_SLOTS_MAX ((u64)1 << 24)

/*
 * Checks a config. Returns true if usable; otherwise false and a one-line reason in `why`
 * (which may be NULL).
 */
bool sm_config_validate(const struct sm_config *cfg, char *why, size_t why_len);

#endif
