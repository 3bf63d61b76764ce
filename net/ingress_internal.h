/*
 * net/ingress_internal.h — the ingress worker's private pieces, shared by its files:
 *   net/ingress.c        the libevent loop: accept, framing, requests, results, timeouts, drain
 *   net/ingress_table.c  the pending-request table and the per-command record pool
 *   net/ingress_json.c   metrics and status as JSON, read from the segment's counters
 * The entry point, ingress_main(), is declared in supervisor/worker.h.
 *
 * NOTES
 *   Memory: both tables are allocated once at start from the config (max_inflight pending
 *   entries; a power-of-two pool of command records at least max(ring_capacity, 2 * max_batch))
 *   and never grow. A submit takes one contiguous block of records from a buddy allocator
 *   (block = the next power of two >= its command count), so the record of command i is
 *   rec[block + i]: O(1) from a result's tag, O(log pool) to allocate and free, no
 *   fragmentation that outlives the requests holding it.
 *
 *   Generations: a pending entry's generation moves on every time it is freed, and it travels
 *   in every tag (msg_tag.pending_gen). A result whose tag names a free entry, or an entry since
 *   reused, is dropped. Connections have generations too; closing a connection frees its
 *   pending entries at once, so nothing ever points at a dead connection.
 *
 *   Single-threaded: everything here runs on the ingress's one event loop.
 */
#ifndef ADB_NET_INGRESS_INTERNAL_H
#define ADB_NET_INGRESS_INTERNAL_H

#include "common/types.h"
#include "supervisor/config.h"
#include "supervisor/segment.h"
#include "vocab/vocab.h" /* commands, results, read views: not the state machine */

#include <stddef.h>

#define ING_NIL UINT32_MAX

/* ---- command records ---------------------------------------------------------------------- */

enum ing_record_state {
    REC_DONE = 0,      /* result stored (from a worker, or decided here) */
    REC_WAITING = 1,   /* pushed on the write ring, its result not yet in */
    REC_RESUBMIT = 2,  /* the applier asked for a resubmit; queued until the write ring has room */
};

/* One command of a submit, kept until the submit's response is written: the command itself (a
 * RESUBMIT pushes it again) and then its result. */
struct ing_record {
    struct sm_command cmd;
    u128 reservation_id;
    u64 applied_lsn;
    u64 deadline_slot;
    u8 state; /* enum ing_record_state */
    u8 outcome;
    u8 code;
    u8 from_retry_cache;
};

/* ---- pending requests --------------------------------------------------------------------- */

/* A request waiting for a worker's answer. kind == 0: free. */
struct ing_pending {
    u32 gen;                /* bumped at every free; msg_tag.pending_gen */
    u8 kind;                /* PROTO_SUBMIT, PROTO_GET_RESOURCE, PROTO_GET_RESERVATION, PROTO_TICK */
    u8 rec_order;           /* submits: log2 of the record block's size */
    u32 conn, conn_gen;     /* the connection that asked */
    u32 age_prev, age_next; /* in use: the age list (oldest first); free: the free list */
    u32 conn_prev, conn_next; /* the connection's own list */
    u64 request_id;
    u64 deadline_ms;        /* CLOCK_MONOTONIC: answered by timeout from then on */
    u128 read_id;           /* reads: the id asked about */
    u32 rec;                /* submits: first record of the block */
    u32 count;              /* submits: commands */
    u32 resolved;           /* submits: records in REC_DONE */
};

struct ing_table {
    struct ing_pending *pend;
    u32 pend_cap, pend_used;
    u32 pend_free;            /* free list head */
    u32 age_head, age_tail;   /* in-use entries, in allocation order (deadlines ascend) */

    struct ing_record *rec;
    u32 rec_cap;              /* power of two */
    u32 rec_used;             /* records in allocated blocks (block sizes, not counts) */
    u8 rec_max_order;         /* rec_cap == 1 << rec_max_order */
    /* Buddy allocator bookkeeping, indexed by a block's first record. blk_free[i] is set iff i
     * starts a free block; blk_order[i] is that block's order (also kept for allocated blocks). */
    u8 *blk_order;
    u8 *blk_free;
    u32 *blk_next, *blk_prev;
    u32 free_head[32];        /* per order */
};

/* Sizes and allocates both tables (malloc once). false if memory is short. */
bool ing_table_init(struct ing_table *t, u32 pending_cap, u32 record_cap);
void ing_table_free(struct ing_table *t);

/* Takes a free entry and, for count > 0, a block of count records (all REC_DONE, zeroed);
 * links it at the young end of the age list. NULL if either is exhausted (nothing taken). */
struct ing_pending *ing_pending_alloc(struct ing_table *t, u8 kind, u32 count);
/* Frees the entry and its records, bumps its generation, unlinks it from the age list (the
 * caller unlinks it from its connection's list first). */
void ing_pending_release(struct ing_table *t, struct ing_pending *p);
/* The in-use entry named by a tag, or NULL if it is free or its generation moved on. */
struct ing_pending *ing_pending_find(struct ing_table *t, u32 index, u32 gen);

static inline u32 ing_pending_index(const struct ing_table *t, const struct ing_pending *p)
{
    return (u32)(p - t->pend);
}

static inline struct ing_record *ing_pending_record(struct ing_table *t, const struct ing_pending *p, u32 i)
{
    return &t->rec[p->rec + i];
}

/* Records the pool must hold for a config (the tables' record_cap argument). */
u32 ing_record_capacity(const struct config *cfg);

/* ---- JSON --------------------------------------------------------------------------------- */

/* The metrics or status document as compact JSON (malloc'd, caller frees; *len set), or NULL
 * if jansson ran out of memory. */
char *ing_metrics_json(struct segment *seg, size_t *len);
char *ing_status_json(struct segment *seg, size_t *len);

/* Resident memory of the daemon's processes, for the status document and /metrics: the
 * supervisor and every worker that is running, each read from /proc/PID/statm (resident pages x
 * page size) when called. A process whose statm cannot be read is left out. Returns the count. */
struct ing_rss {
    const char *role; /* "supervisor", "sequencer", "applier", "ingress" (or "peer") */
    u64 bytes;
};
u32 ing_process_rss(struct segment *seg, struct ing_rss out[ROLE_COUNT + 1]);

#endif
