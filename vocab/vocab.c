/*
 * vocab/vocab.c — the vocabulary's names and the check of a state machine configuration
 * (see vocab.h).
 */
#include "vocab/vocab.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

/* ---- names ----------------------------------------------------------------------------- */

static const char *const result_names[SM_RESULT_COUNT] = {
    "ok",
    "noop",
    "already_exists",
    "resource_table_full",
    "resource_not_found",
    "resource_busy",
    "ttl_out_of_range",
    "reservation_table_full",
    "reservation_not_found",
    "reservation_retired",
    "expiration_index_full",
    "operation_table_full",
    "operation_conflict",
    "invalid_state",
    "holder_mismatch",
    "slot_overflow",
};

const char *sm_result_name(enum sm_result r)
{
    return (unsigned)r < SM_RESULT_COUNT ? result_names[r] : "unknown";
}

const char *sm_command_name(enum sm_command_kind k)
{
    switch (k) {
    case SM_CMD_CREATE_RESOURCE: return "create_resource";
    case SM_CMD_RESERVE: return "reserve";
    case SM_CMD_CONFIRM: return "confirm";
    case SM_CMD_RELEASE: return "release";
    case SM_CMD_EXPIRE: return "expire";
    }
    return "unknown";
}

const char *sm_resource_state_name(enum sm_resource_state s)
{
    switch (s) {
    case SM_RESOURCE_AVAILABLE: return "available";
    case SM_RESOURCE_RESERVED: return "reserved";
    case SM_RESOURCE_CONFIRMED: return "confirmed";
    }
    return "unknown";
}

const char *sm_reservation_state_name(enum sm_reservation_state s)
{
    switch (s) {
    case SM_RESERVATION_RESERVED: return "reserved";
    case SM_RESERVATION_CONFIRMED: return "confirmed";
    case SM_RESERVATION_RELEASED: return "released";
    case SM_RESERVATION_EXPIRED: return "expired";
    }
    return "unknown";
}

const char *sm_read_name(enum sm_read r)
{
    switch (r) {
    case SM_READ_FOUND: return "found";
    case SM_READ_NOT_FOUND: return "not_found";
    case SM_READ_RETIRED: return "retired";
    case SM_READ_FENCE_NOT_APPLIED: return "fence_not_applied";
    }
    return "unknown";
}

/* ---- config ---------------------------------------------------------------------------- */

bool sm_config_validate(const struct sm_config *cfg, char *why, size_t why_len)
{
    char scratch[8];
    if (why == NULL) {
        why = scratch;
        why_len = sizeof(scratch);
    }
#define REJECT(...)                                                                        \
    do {                                                                                   \
        snprintf(why, why_len, __VA_ARGS__);                                               \
        return false;                                                                      \
    } while (0)
    static const struct {
        const char *name;
        size_t offset;
    } caps[] = {
        { "resource_capacity", offsetof(struct sm_config, resource_capacity) },
        { "reservation_capacity", offsetof(struct sm_config, reservation_capacity) },
        { "operation_capacity", offsetof(struct sm_config, operation_capacity) },
        { "expiration_capacity", offsetof(struct sm_config, expiration_capacity) },
    };
    for (size_t i = 0; i < ADB_ARRAY_LEN(caps); i++) {
        u32 v;
        memcpy(&v, (const char *)cfg + caps[i].offset, sizeof(v));
        if (v < 1 || v > SM_CAPACITY_MAX)
            REJECT("%s = %u is out of range (1..%u)", caps[i].name, v, SM_CAPACITY_MAX);
    }
    if (cfg->expiration_capacity > cfg->reservation_capacity)
        REJECT("expiration_capacity = %u exceeds reservation_capacity = %u: every expiring "
               "reservation is also a reservation",
               cfg->expiration_capacity, cfg->reservation_capacity);
    if (cfg->max_ttl_slots < 1 || cfg->max_ttl_slots > SM_MAX_TTL_SLOTS_MAX)
        REJECT("max_ttl_slots = %llu is out of range (1..%llu)",
               (unsigned long long)cfg->max_ttl_slots, (unsigned long long)SM_MAX_TTL_SLOTS_MAX);
    if (cfg->dedupe_window_slots < 1)
        REJECT("dedupe_window_slots must be at least 1: retries need a window to land in");
    if (cfg->history_window_slots < 1)
        REJECT("history_window_slots must be at least 1: released reservations must stay "
               "readable for at least one slot");
    /* The largest window is added to every request slot; it must leave room in u64. */
    if (cfg->dedupe_window_slots > UINT64_MAX / 2 || cfg->history_window_slots > UINT64_MAX / 2)
        REJECT("dedupe_window_slots and history_window_slots must be below 2^63");
    return true;
#undef REJECT
}
