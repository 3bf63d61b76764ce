/*
 * replica/expiry.h — the expiration index: reserved reservations ordered by deadline.
 *
 * A timing wheel of W buckets (W a power of two > max_ttl_slots) plus an ordered "due list".
 * Nodes are addressed by reservation pool position, so schedule and unschedule are O(1)
 * list operations with no search and no allocation.
 *
 * NOTES
 *   Invariant: `due_through` is the last slot the index has been advanced to. Every node with
 *   deadline <= due_through is on the due list; every other node is in the wheel bucket
 *   deadline & (W-1), with due_through < deadline < due_through + W. A new deadline is
 *   request_slot + ttl with ttl <= max_ttl < W, and the state machine advances to request_slot
 *   before scheduling, so each bucket holds exactly one deadline value.
 *
 *   Order: nodes are appended in apply order, which is LSN order, which is reservation-id
 *   order within a shard; buckets move to the due list whole, in deadline order. So the due
 *   list followed by the wheel from due_through+1 upwards is sorted by (deadline, id) without
 *   any sorting.
 *
 *   Work: advance(s) visits non-empty buckets via a bitmap (64 buckets per word) and splices
 *   each one in O(1); a query returns up to N nodes and skips empty buckets the same way.
 *   Neither walks the whole wheel per tick.
 */
#ifndef ADB_REPLICA_EXPIRY_H
#define ADB_REPLICA_EXPIRY_H

#include "common/types.h"

struct expiry_node {
    u64 deadline_slot;
    u32 prev, next; /* pool position + 1 in a circular list; 0 = not scheduled */
};

struct expiry {
    struct expiry_node *nodes; /* one per reservation pool position */
    u32 *buckets;              /* W list heads (pool position + 1; 0 = empty) */
    u64 *bitmap;               /* bit b set <=> bucket b non-empty */
    u64 wheel_mask;            /* W - 1 */
    u32 node_count;            /* reservation pool capacity */
    u32 capacity;              /* most scheduled nodes */
    u32 count;                 /* scheduled nodes */
    u32 due_head;              /* due list head (pool position + 1) */
    u32 due_count;
    u64 due_through;
};

struct expiry_sizes {
    u64 nodes, buckets, bitmap;
};

/* Bucket count for a maximum TTL: the smallest power of two > max_ttl_slots (at least 64). */
u64 expiry_wheel_size(u64 max_ttl_slots);
void expiry_sizes(u32 node_count, u64 max_ttl_slots, struct expiry_sizes *out);

void expiry_init(struct expiry *ex, u32 node_count, u32 capacity, u64 max_ttl_slots,
                 struct expiry_node *nodes, u32 *buckets, u64 *bitmap);
/* The same over arrays already all zero (a fresh anonymous mapping): touches none of them. */
void expiry_init_zeroed(struct expiry *ex, u32 node_count, u32 capacity, u64 max_ttl_slots,
                        struct expiry_node *nodes, u32 *buckets, u64 *bitmap);

/* Moves every node with deadline <= slot onto the due list. Slots never go back. */
void expiry_advance(struct expiry *ex, u64 slot);

static inline bool expiry_full(const struct expiry *ex)
{
    return ex->count >= ex->capacity;
}

/* Schedules pool position `pos` at deadline (due_through < deadline < due_through + W). */
void expiry_schedule(struct expiry *ex, u32 pos, u64 deadline_slot);

/* Unschedules a scheduled pool position. */
void expiry_unschedule(struct expiry *ex, u32 pos);

static inline bool expiry_scheduled(const struct expiry *ex, u32 pos)
{
    return ex->nodes[pos].next != 0;
}

/*
 * Calls emit(ctx, i, pos) for up to `max` scheduled nodes whose deadline <= slot, in
 * (deadline, id) order, i counting from 0. Read-only. Returns the count.
 */
u32 expiry_due(const struct expiry *ex, u64 slot, u32 max, void (*emit)(void *ctx, u32 i, u32 pos),
               void *ctx);

/* Number of scheduled nodes with deadline <= slot (a metric; O(due nodes)). */
u64 expiry_backlog(const struct expiry *ex, u64 slot);

/*
 * Visits every scheduled node in (deadline, id) order; stops early if fn returns false.
 * For invariant checks and tests.
 */
void expiry_walk(const struct expiry *ex, bool (*fn)(void *ctx, u32 pos, u64 deadline), void *ctx);

/* Internal consistency (lists, bitmap, counts, bucket deadlines). */
bool expiry_check(const struct expiry *ex, const char **why);

#endif
