/*
 * replica/sm.c — apply, reads, queries, digest and invariants of the allocator state machine.
 *
 * NOTES
 *   Check order inside sm_apply follows DESIGN.md §2 exactly:
 *     1. request slot valid (slot + max(dedupe, history) window fits in u64) else slot_overflow;
 *     2. retire reservations and operation records with retire_after_slot < request_slot;
 *     3. dedupe: same operation id + same fingerprint -> stored result (from_retry_cache);
 *        different fingerprint -> operation_conflict;
 *     4. operation_table_full if a new record cannot be stored;
 *     5. the command's own checks, in the order of the table in DESIGN.md;
 *     6. record the result (every result reaching this step is recorded).
 *   Steps 1, 3 (conflict) and 4 change nothing but the applied LSN and slot.
 *
 *   Pools: resources are never removed, so their pool is dense. Reservations come from a LIFO
 *   free stack (deterministic reuse) and are zeroed when freed, which lets the invariant check
 *   tell live from free positions. Operation records live in a ring in LSN order, which is
 *   also their retirement order: a record is appended at the tail and retired from the head.
 */
#include "replica/sm.h"

#include "common/assert.h"
#include "common/hash.h"
#include "common/prefetch.h"
#include "common/table_memory.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

ADB_STATIC_ASSERT(sizeof(struct sm_reservation) == ADB_CACHE_LINE, "a reservation is one cache line");

/* ---- layout ---------------------------------------------------------------------------- */

static bool layout_add(u64 *total, u64 *part, u64 bytes)
{
    u64 aligned;
    if (__builtin_add_overflow(bytes, (u64)ADB_CACHE_LINE - 1, &aligned))
        return false;
    aligned &= ~((u64)ADB_CACHE_LINE - 1);
    *part = aligned;
    return !__builtin_add_overflow(*total, aligned, total);
}

bool sm_layout(const struct sm_config *cfg, struct sm_layout *out)
{
    if (!sm_config_validate(cfg, NULL, 0))
        return false;
    memset(out, 0, sizeof(*out));
    u64 t = 0, unused;
    struct expiry_sizes es;
    expiry_sizes(cfg->reservation_capacity, cfg->max_ttl_slots, &es);
    bool ok = layout_add(&t, &out->resources,
                         index_slot_count(cfg->resource_capacity) * sizeof(struct sm_resource)) &&
              layout_add(&t, &out->reservations,
                         (u64)cfg->reservation_capacity * sizeof(struct sm_reservation)) &&
              layout_add(&t, &out->reservation_index,
                         index_slot_count(cfg->reservation_capacity) * sizeof(struct index_slot)) &&
              layout_add(&t, &out->reservation_free, (u64)cfg->reservation_capacity * sizeof(u32)) &&
              layout_add(&t, &out->reservation_retire, (u64)cfg->reservation_capacity * sizeof(u32));
    u64 expiry_total = 0;
    ok = ok && layout_add(&expiry_total, &unused, es.nodes) && layout_add(&expiry_total, &unused, es.buckets) &&
         layout_add(&expiry_total, &unused, es.bitmap) && layout_add(&t, &out->expiry, expiry_total);
    /* The operation records last, from a 2 MiB boundary: sm_keep_operations_from_fork() can
     * then leave them out of a forked child as whole huge pages. */
    ok = ok && !__builtin_add_overflow(t, SM_OPERATIONS_ALIGN - 1, &out->operations_at);
    out->operations_at &= ~(SM_OPERATIONS_ALIGN - 1);
    t = out->operations_at;
    ok = ok && layout_add(&t, &out->operations, (u64)cfg->operation_capacity * sizeof(struct sm_operation)) &&
         layout_add(&t, &out->operation_index, index_slot_count(cfg->operation_capacity) * sizeof(struct index_slot));
    out->total = t;
    return ok;
}

/* ---- init ------------------------------------------------------------------------------ */

static void fifo_init(struct sm_fifo *q, u32 *items, u32 capacity)
{
    q->items = items;
    q->capacity = capacity;
    q->head = 0;
    q->count = 0;
}

static void fifo_push(struct sm_fifo *q, u32 item)
{
    ADB_ASSERT(q->count < q->capacity);
    u32 tail = q->head + q->count;
    if (tail >= q->capacity)
        tail -= q->capacity;
    q->items[tail] = item;
    q->count++;
}

static u32 fifo_peek(const struct sm_fifo *q, u32 i)
{
    ADB_ASSERT(i < q->count);
    u32 at = q->head + i;
    if (at >= q->capacity)
        at -= q->capacity;
    return q->items[at];
}

static void fifo_pop(struct sm_fifo *q)
{
    ADB_ASSERT(q->count > 0);
    q->head = q->head + 1 == q->capacity ? 0 : q->head + 1;
    q->count--;
}

/* Fills a free stack so positions are handed out 0, 1, 2, ... */
static void free_stack_init(u32 *stack, u32 capacity)
{
    for (u32 i = 0; i < capacity; i++)
        stack[i] = capacity - 1 - i;
}

/* `zeroed`: the block is known to be all zero (fresh from mmap), so the tables, indexes and
 * wheel need no memset; the kernel hands out zero pages as they are first touched. */
static void sm_init_memory(sm_t *sm, const struct sm_config *cfg, void *memory, bool zeroed)
{
    struct sm_layout l;
    ADB_ASSERT(sm_layout(cfg, &l));
    ADB_ASSERT(((uintptr_t)memory & (ADB_CACHE_LINE - 1)) == 0);
    memset(sm, 0, sizeof(*sm));
    sm->cfg = *cfg;
    sm->memory = memory;
    char *p = memory;
#define CARVE(field, part)                                                                 \
    do {                                                                                   \
        field = (void *)p;                                                                 \
        p += l.part;                                                                       \
    } while (0)
    struct index_slot *reservation_slots, *operation_slots;
    u32 *reservation_retire;
    CARVE(sm->resources, resources);
    CARVE(sm->reservations, reservations);
    CARVE(reservation_slots, reservation_index);
    CARVE(sm->reservation_free, reservation_free);
    CARVE(reservation_retire, reservation_retire);
    struct expiry_sizes es;
    expiry_sizes(cfg->reservation_capacity, cfg->max_ttl_slots, &es);
    u64 nodes_bytes = (es.nodes + ADB_CACHE_LINE - 1) & ~(u64)(ADB_CACHE_LINE - 1);
    u64 buckets_bytes = (es.buckets + ADB_CACHE_LINE - 1) & ~(u64)(ADB_CACHE_LINE - 1);
    struct expiry_node *nodes = (void *)p;
    u32 *buckets = (void *)(p + nodes_bytes);
    u64 *bitmap = (void *)(p + nodes_bytes + buckets_bytes);
    p = (char *)memory + l.operations_at;
    CARVE(sm->operations, operations);
    CARVE(operation_slots, operation_index);
#undef CARVE
    ADB_ASSERT((u64)(p - (char *)memory) == l.total);

    if (!zeroed) {
        memset(sm->resources, 0, (size_t)l.resources);
        memset(sm->reservations, 0, (size_t)l.reservations);
        memset(sm->operations, 0, (size_t)l.operations);
    }
    sm->resource_mask = (u32)(index_slot_count(cfg->resource_capacity) - 1);
    (zeroed ? index_init_zeroed : index_init)(&sm->reservation_index, reservation_slots, cfg->reservation_capacity);
    (zeroed ? index_init_zeroed : index_init)(&sm->operation_index, operation_slots, cfg->operation_capacity);
    free_stack_init(sm->reservation_free, cfg->reservation_capacity);
    sm->reservation_free_count = cfg->reservation_capacity;
    fifo_init(&sm->reservation_retire, reservation_retire, cfg->reservation_capacity);
    (zeroed ? expiry_init_zeroed : expiry_init)(&sm->expiry, cfg->reservation_capacity, cfg->expiration_capacity,
                                                cfg->max_ttl_slots, nodes, buckets, bitmap);
}

void sm_init(sm_t *sm, const struct sm_config *cfg, void *memory)
{
    sm_init_memory(sm, cfg, memory, false);
}

bool sm_create(sm_t *sm, const struct sm_config *cfg, char *why, size_t why_len)
{
    struct sm_layout l;
    if (!sm_config_validate(cfg, why, why_len))
        return false;
    if (!sm_layout(cfg, &l)) {
        if (why)
            snprintf(why, why_len, "state machine size overflows 64 bits");
        return false;
    }
    /* Its own mapping, backed by transparent huge pages where the kernel allows: the lookups
     * are random over hundreds of MB, so 2 MB pages save most TLB misses, and filling the
     * tables at recovery takes one fault per 2 MB instead of per 4 KB. */
    void *mem = table_memory_map(l.total, false);
    if (mem == NULL) {
        if (why)
            snprintf(why, why_len, "cannot allocate %llu bytes for the state machine",
                     (unsigned long long)l.total);
        return false;
    }
    sm_init_memory(sm, cfg, mem, true);
    sm->memory_mapped = l.total;
    return true;
}

bool sm_keep_operations_from_fork(sm_t *sm)
{
    struct sm_layout l;
    ADB_ASSERT(sm_layout(&sm->cfg, &l));
    if (sm->memory_mapped == 0)
        return false;
    return madvise((char *)sm->memory + l.operations_at, (size_t)(l.total - l.operations_at), MADV_DONTFORK) == 0;
}

void sm_populate(sm_t *sm)
{
    if (sm->memory_mapped > 0)
        table_memory_populate(sm->memory, sm->memory_mapped);
}

void sm_reset(sm_t *sm, const struct sm_config *cfg)
{
    if (!sm->used && memcmp(&sm->cfg, cfg, sizeof(*cfg)) == 0)
        return; /* nothing to undo: a reset of gigabytes would write every page for nothing */
    u64 mapped = sm->memory_mapped;
    void *memory = sm->memory;
    if (mapped > 0 && madvise(memory, (size_t)mapped, MADV_DONTNEED) == 0) /* zero pages again */
        sm_init_memory(sm, cfg, memory, true);
    else
        sm_init(sm, cfg, memory);
    sm->memory_mapped = mapped;
}

void sm_destroy(sm_t *sm)
{
    if (sm->memory_mapped != 0)
        table_memory_unmap(sm->memory, sm->memory_mapped);
    else
        free(sm->memory);
    memset(sm, 0, sizeof(*sm));
}

/* ---- lookups --------------------------------------------------------------------------- */

/*
 * Linear probe for a resource. Returns true and its position if present; otherwise false and
 * the empty position where it would go. The table is at most half full, so an empty slot
 * always ends the probe.
 */
static bool probe_resource(const sm_t *sm, u128 id, u32 *pos_out)
{
    u32 pos = (u32)(hash_u128(id) & sm->resource_mask);
    for (u32 steps = 0;; steps++) {
        ADB_ASSERT(steps <= sm->resource_mask);
        const struct sm_resource *r = &sm->resources[pos];
        if (!r->used || r->resource_id == id) {
            *pos_out = pos;
            return r->used;
        }
        pos = (pos + 1) & sm->resource_mask;
    }
}

/* Position + 1 of the resource, or 0. */
static u32 find_resource(const sm_t *sm, u128 id)
{
    u32 pos;
    return probe_resource(sm, id, &pos) ? pos + 1 : 0;
}

static u32 find_reservation_ref(const sm_t *sm, u128 id)
{
    u64 h = hash_u128(id);
    struct index_probe p = index_probe_start(&sm->reservation_index, h);
    for (u32 ref; (ref = index_probe_next(&sm->reservation_index, &p, h)) != 0;)
        if (sm->reservations[ref - 1].reservation_id == id)
            return ref;
    return 0;
}

static u32 find_operation(const sm_t *sm, u128 id)
{
    u64 h = hash_u128(id);
    struct index_probe p = index_probe_start(&sm->operation_index, h);
    for (u32 ref; (ref = index_probe_next(&sm->operation_index, &p, h)) != 0;)
        if (sm->operations[ref - 1].operation_id == id)
            return ref;
    return 0;
}

/*
 * The one reservation lookup used by reads and commands: a live record, or retired (the id
 * belongs to this shard and is at or below the retired watermark), or not found.
 */
static enum sm_read lookup_reservation(const sm_t *sm, u128 id, u32 *ref_out)
{
    *ref_out = 0;
    if (U128_HI(id) != sm->cfg.shard_id || U128_LO(id) == 0)
        return SM_READ_NOT_FOUND;
    u32 ref = find_reservation_ref(sm, id);
    if (ref != 0) {
        *ref_out = ref;
        return SM_READ_FOUND;
    }
    if (U128_LO(id) <= sm->retired_watermark_lsn)
        return SM_READ_RETIRED;
    return SM_READ_NOT_FOUND;
}

static void prefetch_index(const struct index *ix, u128 key)
{
    adb_prefetch(&ix->slots[hash_u128(key) & ix->mask]);
}

/* ---- retirement ------------------------------------------------------------------------ */

/* Position i after `pos` in a ring of `cap`. */
static inline u32 ring_at(u32 pos, u32 i, u32 cap)
{
    u64 p = (u64)pos + i;
    return (u32)(p >= cap ? p - cap : p);
}

/* How far ahead retirement prefetches the index slots of the records it will drop next. */
#define RETIRE_PREFETCH 4

static void retire_due(sm_t *sm, u64 request_slot)
{
    sm->retired_through_slot = request_slot;
    struct sm_fifo *rq = &sm->reservation_retire;
    while (rq->count > 0) {
        u32 pos = fifo_peek(rq, 0);
        struct sm_reservation *r = &sm->reservations[pos];
        ADB_ASSERT(r->state == SM_RESERVATION_RELEASED || r->state == SM_RESERVATION_EXPIRED);
        if (r->retire_after_slot >= request_slot)
            break;
        if (rq->count > RETIRE_PREFETCH)
            prefetch_index(&sm->reservation_index,
                           sm->reservations[fifo_peek(rq, RETIRE_PREFETCH)].reservation_id);
        if (U128_LO(r->reservation_id) > sm->retired_watermark_lsn)
            sm->retired_watermark_lsn = U128_LO(r->reservation_id);
        index_remove(&sm->reservation_index, hash_u128(r->reservation_id), pos + 1);
        memset(r, 0, sizeof(*r));
        sm->reservation_free[sm->reservation_free_count++] = pos;
        sm->reservation_count--;
        fifo_pop(rq);
    }
    const u32 cap = sm->cfg.operation_capacity;
    while (sm->operation_count > 0) {
        u32 pos = sm->operation_head;
        const struct sm_operation *o = &sm->operations[pos];
        if (o->retire_after_slot >= request_slot)
            break;
        if (sm->operation_count > RETIRE_PREFETCH)
            prefetch_index(&sm->operation_index, sm->operations[ring_at(pos, RETIRE_PREFETCH, cap)].operation_id);
        index_remove(&sm->operation_index, hash_u128(o->operation_id), pos + 1);
        sm->operation_sum -= sm_operation_hash(o);
        sm->operation_head = ring_at(pos, 1, cap);
        sm->operation_count--;
        sm->operation_oldest_lsn = sm->operation_count > 0 ? sm->operations[sm->operation_head].applied_lsn : 0;
    }
}

/* ---- fingerprint ----------------------------------------------------------------------- */

/* Fingerprint of everything a retry must repeat: kind, client and the kind's fields. */
u64 sm_fingerprint(const struct sm_command *c)
{
    u64 words[8];
    unsigned n = 0;
    words[n++] = c->kind;
    words[n++] = U128_LO(c->client_id);
    words[n++] = U128_HI(c->client_id);
    switch ((enum sm_command_kind)c->kind) {
    case SM_CMD_CREATE_RESOURCE:
        words[n++] = U128_LO(c->resource_id);
        words[n++] = U128_HI(c->resource_id);
        break;
    case SM_CMD_RESERVE:
        words[n++] = U128_LO(c->resource_id);
        words[n++] = U128_HI(c->resource_id);
        words[n++] = U128_LO(c->holder_id);
        words[n++] = U128_HI(c->holder_id);
        words[n++] = c->ttl_slots;
        break;
    case SM_CMD_CONFIRM:
    case SM_CMD_RELEASE:
        words[n++] = U128_LO(c->reservation_id);
        words[n++] = U128_HI(c->reservation_id);
        words[n++] = U128_LO(c->holder_id);
        words[n++] = U128_HI(c->holder_id);
        break;
    case SM_CMD_EXPIRE:
        ADB_ASSERT(!"expire has no fingerprint");
    }
    u64 a = 0x243f6a8885a308d3ULL;
    for (unsigned i = 0; i < n; i++)
        a = hash_step(a, words[i]);
    return a & ~(u64)0xff;
}

/* ---- commands -------------------------------------------------------------------------- */

static struct sm_outcome result_only(u64 lsn, enum sm_result r)
{
    struct sm_outcome o = { 0 };
    o.applied_lsn = lsn;
    o.result = (u8)r;
    return o;
}

static struct sm_outcome create_resource(sm_t *sm, u64 lsn, const struct sm_command *c)
{
    u32 pos;
    if (probe_resource(sm, c->resource_id, &pos))
        return result_only(lsn, SM_ALREADY_EXISTS);
    if (sm->resource_count >= sm->cfg.resource_capacity)
        return result_only(lsn, SM_RESOURCE_TABLE_FULL);
    struct sm_resource *r = &sm->resources[pos];
    r->resource_id = c->resource_id;
    r->current_reservation_id = 0;
    r->version = 0;
    r->state = SM_RESOURCE_AVAILABLE;
    r->used = 1;
    sm->resource_count++;
    return result_only(lsn, SM_OK);
}

static struct sm_outcome reserve(sm_t *sm, u64 lsn, u64 slot, const struct sm_command *c)
{
    if (c->ttl_slots < 1 || c->ttl_slots > sm->cfg.max_ttl_slots)
        return result_only(lsn, SM_TTL_OUT_OF_RANGE);
    u32 rref = find_resource(sm, c->resource_id);
    if (rref == 0)
        return result_only(lsn, SM_RESOURCE_NOT_FOUND);
    struct sm_resource *res = &sm->resources[rref - 1];
    if (res->state != SM_RESOURCE_AVAILABLE)
        return result_only(lsn, SM_RESOURCE_BUSY);
    if (sm->reservation_count >= sm->cfg.reservation_capacity)
        return result_only(lsn, SM_RESERVATION_TABLE_FULL);
    u64 deadline;
    if (__builtin_add_overflow(slot, c->ttl_slots, &deadline))
        return result_only(lsn, SM_SLOT_OVERFLOW);
    if (expiry_full(&sm->expiry))
        return result_only(lsn, SM_EXPIRATION_INDEX_FULL);

    ADB_ASSERT(sm->reservation_free_count > 0);
    u32 pos = sm->reservation_free[--sm->reservation_free_count];
    struct sm_reservation *r = &sm->reservations[pos];
    ADB_ASSERT(r->reservation_id == 0);
    r->reservation_id = sm_reservation_id(sm, lsn);
    r->holder_id = c->holder_id;
    r->deadline_slot = deadline;
    r->released_lsn = 0;
    r->retire_after_slot = 0;
    r->resource_ref = rref - 1;
    r->state = SM_RESERVATION_RESERVED;
    sm->reservation_count++;
    index_insert(&sm->reservation_index, hash_u128(r->reservation_id), pos + 1);
    expiry_schedule(&sm->expiry, pos, deadline);

    res->state = SM_RESOURCE_RESERVED;
    res->current_reservation_id = r->reservation_id;
    res->version++;

    struct sm_outcome o = result_only(lsn, SM_OK);
    o.reservation_id = r->reservation_id;
    o.deadline_slot = deadline;
    return o;
}

/* Moves an active reservation to a terminal state and frees its resource. */
static void terminate(sm_t *sm, u32 pos, enum sm_reservation_state to, u64 lsn, u64 slot)
{
    struct sm_reservation *r = &sm->reservations[pos];
    struct sm_resource *res = &sm->resources[r->resource_ref];
    ADB_ASSERT(to == SM_RESERVATION_RELEASED || to == SM_RESERVATION_EXPIRED);
    ADB_ASSERT(res->current_reservation_id == r->reservation_id);
    if (r->state == SM_RESERVATION_RESERVED)
        expiry_unschedule(&sm->expiry, pos);
    r->state = (u8)to;
    r->released_lsn = lsn;
    /* Cannot overflow: sm_apply rejected slots where slot + history window overflows. */
    r->retire_after_slot = slot + sm->cfg.history_window_slots;
    fifo_push(&sm->reservation_retire, pos);
    res->state = SM_RESOURCE_AVAILABLE;
    res->current_reservation_id = 0;
    res->version++;
}

static struct sm_outcome confirm_or_release(sm_t *sm, u64 lsn, u64 slot, const struct sm_command *c)
{
    u32 ref;
    switch (lookup_reservation(sm, c->reservation_id, &ref)) {
    case SM_READ_RETIRED: return result_only(lsn, SM_RESERVATION_RETIRED);
    case SM_READ_NOT_FOUND: return result_only(lsn, SM_RESERVATION_NOT_FOUND);
    default: break;
    }
    u32 pos = ref - 1;
    struct sm_reservation *r = &sm->reservations[pos];
    if (r->holder_id != c->holder_id)
        return result_only(lsn, SM_HOLDER_MISMATCH);
    if (c->kind == SM_CMD_CONFIRM) {
        if (r->state != SM_RESERVATION_RESERVED)
            return result_only(lsn, SM_INVALID_STATE);
        struct sm_resource *res = &sm->resources[r->resource_ref];
        expiry_unschedule(&sm->expiry, pos);
        r->state = SM_RESERVATION_CONFIRMED;
        res->state = SM_RESOURCE_CONFIRMED;
        res->version++;
    } else {
        if (r->state != SM_RESERVATION_RESERVED && r->state != SM_RESERVATION_CONFIRMED)
            return result_only(lsn, SM_INVALID_STATE);
        terminate(sm, pos, SM_RESERVATION_RELEASED, lsn, slot);
    }
    struct sm_outcome o = result_only(lsn, SM_OK);
    o.reservation_id = r->reservation_id;
    o.deadline_slot = r->deadline_slot;
    return o;
}

/*
 * Internal expire: only a reservation still reserved with exactly the logged deadline, and
 * only once that deadline has been reached — an expire logged early is a no-op, so a faulty
 * proposer can delay expiration but never make it early.
 */
static struct sm_outcome expire(sm_t *sm, u64 lsn, u64 slot, const struct sm_command *c)
{
    u32 ref;
    if (lookup_reservation(sm, c->reservation_id, &ref) != SM_READ_FOUND)
        return result_only(lsn, SM_RESERVATION_NOT_FOUND);
    u32 pos = ref - 1;
    struct sm_reservation *r = &sm->reservations[pos];
    struct sm_outcome o = result_only(lsn, SM_NOOP);
    o.reservation_id = r->reservation_id;
    o.deadline_slot = r->deadline_slot;
    if (r->state != SM_RESERVATION_RESERVED || r->deadline_slot != c->deadline_slot ||
        slot < r->deadline_slot)
        return o;
    terminate(sm, pos, SM_RESERVATION_EXPIRED, lsn, slot);
    o.result = SM_OK;
    return o;
}

u64 sm_operation_hash(const struct sm_operation *o)
{
    u64 h = hash_step(0x3c6ef372fe94f82bULL, U128_LO(o->operation_id));
    h = hash_step(h, U128_HI(o->operation_id));
    h = hash_step(h, o->fingerprint_code);
    h = hash_step(h, o->result_deadline_slot);
    h = hash_step(h, o->applied_lsn);
    return hash_step(h, o->retire_after_slot);
}

/* The outcome a retry of `c` gets from its record. */
static struct sm_outcome stored_outcome(const sm_t *sm, const struct sm_operation *op, const struct sm_command *c)
{
    struct sm_outcome o;
    o.result = sm_operation_code(op);
    o.applied_lsn = op->applied_lsn;
    o.deadline_slot = op->result_deadline_slot;
    o.reservation_id = 0;
    if (o.result == SM_OK)
        o.reservation_id = c->kind == SM_CMD_RESERVE ? sm_reservation_id(sm, op->applied_lsn)
                         : c->kind == SM_CMD_CREATE_RESOURCE ? 0
                                                             : c->reservation_id;
    o.from_retry_cache = true;
    return o;
}

static void record_operation(sm_t *sm, const struct sm_command *c, u64 fp, u64 slot, const struct sm_outcome *o)
{
    ADB_ASSERT(sm->operation_count < sm->cfg.operation_capacity);
    ADB_ASSERT((fp & 0xff) == 0 && o->result < SM_RESULT_COUNT);
    u32 pos = ring_at(sm->operation_head, sm->operation_count, sm->cfg.operation_capacity);
    struct sm_operation *op = &sm->operations[pos];
    op->operation_id = c->operation_id;
    op->fingerprint_code = fp | o->result;
    op->result_deadline_slot = o->deadline_slot;
    op->applied_lsn = o->applied_lsn;
    op->retire_after_slot = slot + sm->cfg.dedupe_window_slots; /* checked in sm_apply */
    if (sm->operation_count++ == 0)
        sm->operation_oldest_lsn = op->applied_lsn;
    sm->operation_appended++;
    sm->operation_sum += sm_operation_hash(op);
    index_insert(&sm->operation_index, hash_u128(c->operation_id), pos + 1);
#ifdef ADB_DEBUG
    struct sm_outcome back = stored_outcome(sm, op, c); /* what is derived must be what was */
    ADB_ASSERT(back.reservation_id == o->reservation_id && back.deadline_slot == o->deadline_slot);
#endif
}

static struct sm_outcome apply_entry(sm_t *sm, u64 lsn, u64 request_slot, const struct sm_command *c)
{
    bool client = c->kind != SM_CMD_EXPIRE;
    ADB_ASSERT(!client || c->operation_id != 0);
    sm->used = true;
    sm->last_applied_lsn = lsn;
    sm->last_request_slot = request_slot;
    expiry_advance(&sm->expiry, request_slot);

    u64 end;
    if (__builtin_add_overflow(request_slot, sm->cfg.dedupe_window_slots, &end) ||
        __builtin_add_overflow(request_slot, sm->cfg.history_window_slots, &end))
        return result_only(lsn, SM_SLOT_OVERFLOW);

    retire_due(sm, request_slot);

    if (!client)
        return expire(sm, lsn, request_slot, c);

    u64 fp = sm_fingerprint(c);
    u32 oref = find_operation(sm, c->operation_id);
#ifdef ADB_CANARY_DEDUPE
    if (oref != 0) { /* canary: a retry executes again */
        switch ((enum sm_command_kind)c->kind) {
        case SM_CMD_CREATE_RESOURCE: return create_resource(sm, lsn, c);
        case SM_CMD_RESERVE: return reserve(sm, lsn, request_slot, c);
        default: return confirm_or_release(sm, lsn, request_slot, c);
        }
    }
#endif
    if (oref != 0) {
        const struct sm_operation *op = &sm->operations[oref - 1];
        if ((op->fingerprint_code & ~(u64)0xff) != fp)
            return result_only(lsn, SM_OPERATION_CONFLICT);
        return stored_outcome(sm, op, c);
    }
    if (sm->operation_count >= sm->cfg.operation_capacity)
        return result_only(lsn, SM_OPERATION_TABLE_FULL);
    struct sm_outcome o;
    switch ((enum sm_command_kind)c->kind) {
    case SM_CMD_CREATE_RESOURCE: o = create_resource(sm, lsn, c); break;
    case SM_CMD_RESERVE: o = reserve(sm, lsn, request_slot, c); break;
    default: o = confirm_or_release(sm, lsn, request_slot, c); break;
    }
    record_operation(sm, c, fp, request_slot, &o);
    return o;
}

bool sm_get_operation(const sm_t *sm, const struct sm_command *cmd, struct sm_outcome *out)
{
    if (cmd->kind == SM_CMD_EXPIRE || cmd->kind > SM_CMD_KIND_MAX || cmd->operation_id == 0)
        return false;
    u32 oref = find_operation(sm, cmd->operation_id);
    if (oref == 0)
        return false;
    const struct sm_operation *op = &sm->operations[oref - 1];
    if ((op->fingerprint_code & ~(u64)0xff) != sm_fingerprint(cmd))
        return false;
    *out = stored_outcome(sm, op, cmd);
    return true;
}

struct sm_outcome sm_apply(sm_t *sm, u64 lsn, u64 request_slot, const struct sm_command *c)
{
    ADB_ASSERT(c->kind >= SM_CMD_CREATE_RESOURCE && c->kind <= SM_CMD_KIND_MAX);
    ADB_ASSERT(lsn > sm->last_applied_lsn);
    ADB_ASSERT(request_slot >= sm->last_request_slot);
    struct sm_outcome o = apply_entry(sm, lsn, request_slot, c);
#ifdef ADB_DEBUG
    char why[160];
    if (!sm_check_invariants(sm, why, sizeof(why))) {
        fprintf(stderr, "allocdb: invariant violated after lsn %llu: %s\n", (unsigned long long)lsn, why);
        ADB_ASSERT(!"state machine invariant");
    }
#endif
    return o;
}

static void prefetch_resource_slot(const sm_t *sm, u128 resource_id)
{
    const struct sm_resource *r = &sm->resources[hash_u128(resource_id) & sm->resource_mask];
    adb_prefetch(r);
    adb_prefetch((const char *)(r + 1) - 1); /* a slot may straddle two lines */
}

void sm_restore_prefetch_resource(const sm_t *sm, u128 resource_id)
{
    prefetch_resource_slot(sm, resource_id);
}

void sm_restore_prefetch_reservation(const sm_t *sm, u128 reservation_id, u128 resource_id)
{
    prefetch_resource_slot(sm, resource_id);
    prefetch_index(&sm->reservation_index, reservation_id);
}

void sm_restore_prefetch_operation(const sm_t *sm, u128 operation_id)
{
    prefetch_index(&sm->operation_index, operation_id);
}

void sm_prefetch(const sm_t *sm, u64 lsn, const struct sm_command *c)
{
    switch ((enum sm_command_kind)c->kind) {
    case SM_CMD_CREATE_RESOURCE:
    case SM_CMD_RESERVE: {
        prefetch_resource_slot(sm, c->resource_id);
        if (c->kind == SM_CMD_RESERVE)
            prefetch_index(&sm->reservation_index, sm_reservation_id(sm, lsn));
        break;
    }
    case SM_CMD_CONFIRM:
    case SM_CMD_RELEASE:
    case SM_CMD_EXPIRE:
        prefetch_index(&sm->reservation_index, c->reservation_id);
        break;
    }
    if (c->kind != SM_CMD_EXPIRE)
        prefetch_index(&sm->operation_index, c->operation_id);
}

/* ---- reads and queries ----------------------------------------------------------------- */

enum sm_read sm_get_resource(const sm_t *sm, u128 resource_id, u64 min_lsn, struct sm_resource_view *out)
{
    if (min_lsn > sm->last_applied_lsn)
        return SM_READ_FENCE_NOT_APPLIED;
    u32 ref = find_resource(sm, resource_id);
    if (ref == 0)
        return SM_READ_NOT_FOUND;
    const struct sm_resource *r = &sm->resources[ref - 1];
    out->resource_id = r->resource_id;
    out->current_reservation_id = r->current_reservation_id;
    out->version = r->version;
    out->state = r->state;
    return SM_READ_FOUND;
}

enum sm_read sm_get_reservation(const sm_t *sm, u128 reservation_id, u64 min_lsn,
                                struct sm_reservation_view *out)
{
    if (min_lsn > sm->last_applied_lsn)
        return SM_READ_FENCE_NOT_APPLIED;
    u32 ref;
    enum sm_read rd = lookup_reservation(sm, reservation_id, &ref);
    if (rd != SM_READ_FOUND)
        return rd;
    const struct sm_reservation *r = &sm->reservations[ref - 1];
    out->reservation_id = r->reservation_id;
    out->resource_id = sm->resources[r->resource_ref].resource_id;
    out->holder_id = r->holder_id;
    out->created_lsn = U128_LO(r->reservation_id);
    out->deadline_slot = r->deadline_slot;
    out->released_lsn = r->released_lsn;
    out->retire_after_slot = r->retire_after_slot;
    out->state = r->state;
    return SM_READ_FOUND;
}

struct due_ctx {
    const sm_t *sm;
    struct sm_due *out;
};

static void emit_due(void *ctx, u32 i, u32 pos)
{
    struct due_ctx *d = ctx;
    const struct sm_reservation *r = &d->sm->reservations[pos];
    d->out[i].reservation_id = r->reservation_id;
    d->out[i].deadline_slot = r->deadline_slot;
}

u32 sm_due_expirations(const sm_t *sm, u64 slot, struct sm_due *out, u32 max)
{
    struct due_ctx d = { sm, out };
    return expiry_due(&sm->expiry, slot, max, emit_due, &d);
}

void sm_health(const sm_t *sm, u64 current_slot, struct sm_health *h)
{
    memset(h, 0, sizeof(*h));
    h->last_applied_lsn = sm->last_applied_lsn;
    h->last_request_slot = sm->last_request_slot;
    h->logical_slot_lag = current_slot > sm->last_request_slot ? current_slot - sm->last_request_slot : 0;
    h->expiration_backlog = expiry_backlog(&sm->expiry, current_slot);
    h->resources_used = sm->resource_count;
    h->resource_capacity = sm->cfg.resource_capacity;
    h->reservations_used = sm->reservation_count;
    h->reservation_capacity = sm->cfg.reservation_capacity;
    h->operations_used = sm->operation_count;
    h->operation_capacity = sm->cfg.operation_capacity;
    h->expirations_used = sm->expiry.count;
    h->expiration_capacity = sm->cfg.expiration_capacity;
    h->operation_utilization_pct =
        (u32)(((u64)sm->operation_count * 100 + sm->cfg.operation_capacity - 1) / sm->cfg.operation_capacity);
    h->retired_watermark_lsn = sm->retired_watermark_lsn;
}

/* ---- digest ---------------------------------------------------------------------------- */

/*
 * The digest is a function of the logical state only: the scalars plus, per table, the sum of
 * a strong hash of each record. Sums do not depend on pool positions or probe order, so a
 * state rebuilt from a snapshot digests the same as the live one. Queue and wheel orders are
 * not hashed because they are determined by record fields (retire_after_slot and
 * released_lsn, applied_lsn, deadline_slot and id).
 */
struct digest_lane {
    u64 seed, sum;
};

static u64 lane_hash(u64 seed, const u64 *w, unsigned n)
{
    u64 h = seed;
    for (unsigned i = 0; i < n; i++)
        h = hash_step(h, w[i]);
    return h;
}

static void digest_add(struct digest_lane lanes[2], u64 tag, const u64 *w, unsigned n)
{
    for (int i = 0; i < 2; i++)
        lanes[i].sum += lane_hash(lanes[i].seed ^ tag, w, n);
}

struct sm_digest sm_digest(const sm_t *sm)
{
    struct digest_lane lanes[2] = { { 0x6a09e667f3bcc908ULL, 0 }, { 0xbb67ae8584caa73bULL, 0 } };
    for (u64 i = 0; i <= sm->resource_mask; i++) {
        const struct sm_resource *r = &sm->resources[i];
        if (!r->used)
            continue;
        u64 w[] = { U128_LO(r->resource_id), U128_HI(r->resource_id), U128_LO(r->current_reservation_id),
                    U128_HI(r->current_reservation_id), r->version, r->state };
        digest_add(lanes, 1, w, ADB_ARRAY_LEN(w));
    }
    const struct index *rix = &sm->reservation_index;
    for (u64 s = 0; s <= rix->mask; s++) {
        if (rix->slots[s].ref == 0)
            continue;
        const struct sm_reservation *r = &sm->reservations[rix->slots[s].ref - 1];
        u128 resource_id = sm->resources[r->resource_ref].resource_id;
        u64 w[] = { U128_LO(r->reservation_id), U128_HI(r->reservation_id), U128_LO(resource_id),
                    U128_HI(resource_id), U128_LO(r->holder_id), U128_HI(r->holder_id),
                    r->deadline_slot, r->released_lsn, r->retire_after_slot, r->state };
        digest_add(lanes, 2, w, ADB_ARRAY_LEN(w));
    }
    const struct index *oix = &sm->operation_index;
    for (u64 s = 0; s <= oix->mask; s++) {
        if (oix->slots[s].ref == 0)
            continue;
        const struct sm_operation *o = &sm->operations[oix->slots[s].ref - 1];
        u64 w[] = { U128_LO(o->operation_id), U128_HI(o->operation_id), o->fingerprint_code,
                    o->result_deadline_slot, o->applied_lsn, o->retire_after_slot };
        digest_add(lanes, 3, w, ADB_ARRAY_LEN(w));
    }
    u64 scalars[] = { sm->cfg.shard_id, sm->last_applied_lsn, sm->last_request_slot, sm->retired_watermark_lsn,
                      sm->resource_count, sm->reservation_count, sm->operation_count, sm->expiry.count };
    struct sm_digest d;
    d.lo = hash_step(lane_hash(lanes[0].seed, scalars, ADB_ARRAY_LEN(scalars)), lanes[0].sum);
    d.hi = hash_step(lane_hash(lanes[1].seed, scalars, ADB_ARRAY_LEN(scalars)), lanes[1].sum);
    return d;
}

/* ---- invariants ------------------------------------------------------------------------ */

struct walk_ctx {
    const sm_t *sm;
    u32 seen;
    bool ok;
};

static bool check_scheduled(void *ctx, u32 pos, u64 deadline)
{
    struct walk_ctx *w = ctx;
    const struct sm_reservation *r = &w->sm->reservations[pos];
    if (r->reservation_id == 0 || r->state != SM_RESERVATION_RESERVED || r->deadline_slot != deadline) {
        w->ok = false;
        return false;
    }
    w->seen++;
    return true;
}

/* How many records ahead the invariant check prefetches its random index lookups. */
#define CHECK_PREFETCH 16

bool sm_check_invariants(const sm_t *sm, char *why, size_t why_len)
{
    char scratch[8];
    if (why == NULL) {
        why = scratch;
        why_len = sizeof(scratch);
    }
#define FAIL(...)                                                                          \
    do {                                                                                   \
        snprintf(why, why_len, __VA_ARGS__);                                               \
        return false;                                                                      \
    } while (0)
    const struct sm_config *cfg = &sm->cfg;
    if (!index_check(&sm->reservation_index) || sm->reservation_index.count != sm->reservation_count)
        FAIL("reservation index inconsistent");
    if (!index_check(&sm->operation_index) || sm->operation_index.count != sm->operation_count)
        FAIL("operation index inconsistent");
    if (sm->reservation_count + sm->reservation_free_count != cfg->reservation_capacity)
        FAIL("reservation pool: used + free != capacity");
    if (sm->operation_count > cfg->operation_capacity || sm->operation_head >= cfg->operation_capacity)
        FAIL("operation ring: %u records from %u, capacity %u", sm->operation_count, sm->operation_head,
             cfg->operation_capacity);
    for (u32 i = 0; i < sm->reservation_free_count; i++)
        if (sm->reservations[sm->reservation_free[i]].reservation_id != 0)
            FAIL("reservation free stack names a live position");

    /* Resources: state and back-pointers. Count active ones. */
    u32 active_resources = 0, used_resources = 0;
    for (u32 i = 0; i <= sm->resource_mask; i++) {
        const struct sm_resource *r = &sm->resources[i];
        if (i + CHECK_PREFETCH <= sm->resource_mask && sm->resources[i + CHECK_PREFETCH].current_reservation_id != 0)
            prefetch_index(&sm->reservation_index, sm->resources[i + CHECK_PREFETCH].current_reservation_id);
        if (!r->used)
            continue;
        used_resources++;
        if (find_resource(sm, r->resource_id) != i + 1)
            FAIL("resource %u not reachable from its home slot", i);
        if (r->state > SM_RESOURCE_CONFIRMED)
            FAIL("resource %u has state %u", i, r->state);
        if ((r->state == SM_RESOURCE_AVAILABLE) != (r->current_reservation_id == 0))
            FAIL("resource %u: available iff no current reservation", i);
        if (r->state == SM_RESOURCE_AVAILABLE)
            continue;
        active_resources++;
        u32 ref = find_reservation_ref(sm, r->current_reservation_id);
        if (ref == 0)
            FAIL("resource %u points at a missing reservation", i);
        const struct sm_reservation *v = &sm->reservations[ref - 1];
        if (v->resource_ref != i)
            FAIL("resource %u: its reservation points elsewhere", i);
        bool match = (r->state == SM_RESOURCE_RESERVED && v->state == SM_RESERVATION_RESERVED) ||
                     (r->state == SM_RESOURCE_CONFIRMED && v->state == SM_RESERVATION_CONFIRMED);
        if (!match)
            FAIL("resource %u state disagrees with its reservation", i);
    }

    /* Reservations: ids, lifecycle fields, one active per resource. */
    u32 active = 0, reserved = 0, terminal = 0;
    const struct index *rix = &sm->reservation_index;
    for (u64 s = 0; s <= rix->mask; s++) {
        u32 ref = rix->slots[s].ref;
        if (ref == 0)
            continue;
        const struct sm_reservation *v = &sm->reservations[ref - 1];
        u64 lsn = U128_LO(v->reservation_id);
        if (U128_HI(v->reservation_id) != cfg->shard_id || lsn == 0 ||
            lsn > sm->last_applied_lsn)
            FAIL("reservation at %u has a bad id", ref - 1);
        if (v->resource_ref > sm->resource_mask || !sm->resources[v->resource_ref].used)
            FAIL("reservation lsn %llu points at a missing resource", (unsigned long long)lsn);
        bool is_active = v->state == SM_RESERVATION_RESERVED || v->state == SM_RESERVATION_CONFIRMED;
        if (v->state > SM_RESERVATION_EXPIRED)
            FAIL("reservation lsn %llu has state %u", (unsigned long long)lsn, v->state);
        if (expiry_scheduled(&sm->expiry, ref - 1) != (v->state == SM_RESERVATION_RESERVED))
            FAIL("reservation lsn %llu: scheduled for expiry iff reserved", (unsigned long long)lsn);
        if (is_active) {
            active++;
            reserved += v->state == SM_RESERVATION_RESERVED;
            if (sm->resources[v->resource_ref].current_reservation_id != v->reservation_id)
                FAIL("active reservation lsn %llu is not its resource's current one", (unsigned long long)lsn);
            if (v->released_lsn != 0 || v->retire_after_slot != 0)
                FAIL("active reservation lsn %llu has terminal fields", (unsigned long long)lsn);
        } else {
            terminal++;
            if (v->released_lsn <= lsn || v->released_lsn > sm->last_applied_lsn)
                FAIL("terminal reservation lsn %llu has a bad released_lsn", (unsigned long long)lsn);
            if (v->retire_after_slot < sm->retired_through_slot)
                FAIL("terminal reservation lsn %llu outlived its retirement", (unsigned long long)lsn);
        }
    }
    if (used_resources != sm->resource_count)
        FAIL("%u resources in the table, count says %u", used_resources, sm->resource_count);
    if (active != active_resources)
        FAIL("%u active reservations but %u busy resources", active, active_resources);

    /* Retirement queue: exactly the terminal reservations, in retirement order. */
    if (sm->reservation_retire.count != terminal)
        FAIL("retirement queue holds %u, %u reservations are terminal", sm->reservation_retire.count, terminal);
    u64 prev_retire = 0, prev_released = 0;
    for (u32 i = 0; i < sm->reservation_retire.count; i++) {
        const struct sm_reservation *v = &sm->reservations[fifo_peek(&sm->reservation_retire, i)];
        if (v->reservation_id == 0 || v->retire_after_slot == 0)
            FAIL("retirement queue names a non-terminal reservation");
        if (v->retire_after_slot < prev_retire ||
            (v->retire_after_slot == prev_retire && v->released_lsn <= prev_released))
            FAIL("retirement queue out of order");
        prev_retire = v->retire_after_slot;
        prev_released = v->released_lsn;
    }

    /* Operation records. */
    const u32 ocap = cfg->operation_capacity;
    u64 prev_lsn = 0, prev_op_retire = 0, op_sum = 0;
    for (u32 i = 0; i < sm->operation_count; i++) {
        u32 pos = ring_at(sm->operation_head, i, ocap);
        const struct sm_operation *o = &sm->operations[pos];
        if (i + CHECK_PREFETCH < sm->operation_count) /* the lookups are random: start early */
            prefetch_index(&sm->operation_index,
                           sm->operations[ring_at(sm->operation_head, i + CHECK_PREFETCH, ocap)].operation_id);
        if (o->operation_id == 0 || find_operation(sm, o->operation_id) != pos + 1)
            FAIL("operation ring names a record the index does not find there");
        if (o->applied_lsn <= prev_lsn || o->applied_lsn > sm->last_applied_lsn)
            FAIL("operation ring not in LSN order");
        if (o->retire_after_slot < prev_op_retire)
            FAIL("operation ring not in retirement order");
        if (o->retire_after_slot < sm->retired_through_slot)
            FAIL("operation record outlived its retirement");
        u8 code = sm_operation_code(o);
        if (code >= SM_RESULT_COUNT || code == SM_OPERATION_TABLE_FULL || code == SM_OPERATION_CONFLICT)
            FAIL("operation record stores result %u", code);
        prev_lsn = o->applied_lsn;
        prev_op_retire = o->retire_after_slot;
        op_sum += sm_operation_hash(o);
    }
    if (op_sum != sm->operation_sum)
        FAIL("operation record hash sum is not the sum of the live records' hashes");
    if (sm->operation_oldest_lsn != (sm->operation_count > 0 ? sm_operation_at(sm, 0)->applied_lsn : 0))
        FAIL("operation_oldest_lsn is not the oldest record's");

    /* Expiration index: exactly the reserved reservations, ordered. */
    const char *ewhy = NULL;
    if (!expiry_check(&sm->expiry, &ewhy))
        FAIL("%s", ewhy);
    if (sm->expiry.due_through != sm->last_request_slot)
        FAIL("expiration index not advanced to the last request slot");
    struct walk_ctx w = { sm, 0, true };
    expiry_walk(&sm->expiry, check_scheduled, &w);
    if (!w.ok || w.seen != reserved || sm->expiry.count != reserved)
        FAIL("expiration index does not hold exactly the reserved reservations");
    return true;
#undef FAIL
}

/* ---- restore (used by replica/snapshot.c; see sm.h) ------------------------------------ */

void sm_restore_begin(sm_t *sm, u64 last_applied_lsn, u64 last_request_slot, u64 retired_watermark_lsn,
                      u64 retired_through_slot)
{
    /* Restoring into a used state is a programming error, not bad input. */
    ADB_ASSERT(sm->last_applied_lsn == 0 && sm->resource_count == 0 && sm->reservation_count == 0 &&
               sm->operation_count == 0 && sm->expiry.count == 0 && sm->expiry.due_through == 0);
    sm->used = true;
    sm->last_applied_lsn = last_applied_lsn;
    sm->last_request_slot = last_request_slot;
    sm->retired_watermark_lsn = retired_watermark_lsn;
    sm->retired_through_slot = retired_through_slot;
}

enum sm_restore_result sm_restore_resource(sm_t *sm, const struct sm_resource_view *v)
{
    if (v->state > SM_RESOURCE_CONFIRMED)
        return SM_RESTORE_INVALID;
    u32 pos;
    /* Terminates: count <= capacity keeps the table at most half full. */
    if (probe_resource(sm, v->resource_id, &pos))
        return SM_RESTORE_DUPLICATE;
    if (sm->resource_count >= sm->cfg.resource_capacity)
        return SM_RESTORE_FULL;
    struct sm_resource *r = &sm->resources[pos];
    r->resource_id = v->resource_id;
    r->current_reservation_id = v->current_reservation_id;
    r->version = v->version;
    r->state = v->state;
    r->used = 1;
    sm->resource_count++;
    return SM_RESTORE_OK;
}

/*
 * Schedules a restored reserved reservation; deadlines arrive in ascending order. The index must
 * end as live apply leaves it: advanced to last_request_slot, deadlines <= that slot on the due
 * list in (deadline, id) order, later ones in their wheel buckets. expiry_schedule only takes
 * deadlines above the advance point, so a due deadline d is scheduled with the index at d - 1
 * and its bucket moves to the due list (advance to d) when a larger deadline arrives or in
 * sm_restore_end. The wheel then holds at most that one bucket, so no advance scans the wheel.
 * Checks everything expiry_schedule asserts before changing anything.
 */
static enum sm_restore_result restore_schedule(sm_t *sm, u32 pos, u64 deadline)
{
    struct expiry *ex = &sm->expiry;
    u64 last = sm->last_request_slot;
    bool bucket_open = ex->count > ex->due_count;
    if (deadline == 0)
        return SM_RESTORE_INVALID;
    if (expiry_full(ex))
        return SM_RESTORE_FULL;
    if (deadline <= last) {
        if (deadline <= ex->due_through)
            return SM_RESTORE_INVALID; /* below a deadline already moved to the due list */
        if (bucket_open && deadline - 1 > ex->due_through)
            expiry_advance(ex, ex->due_through + 1); /* close the previous deadline's bucket */
        expiry_advance(ex, deadline - 1);
    } else {
        if (deadline - last > sm->cfg.max_ttl_slots)
            return SM_RESTORE_INVALID; /* no reserve could have set it: outside the wheel */
        if (bucket_open && ex->due_through < last)
            expiry_advance(ex, ex->due_through + 1);
        expiry_advance(ex, last);
    }
    expiry_schedule(ex, pos, deadline);
    return SM_RESTORE_OK;
}

enum sm_restore_result sm_restore_reservation(sm_t *sm, const struct sm_reservation_view *v)
{
    if (v->state > SM_RESERVATION_EXPIRED || v->reservation_id == 0)
        return SM_RESTORE_INVALID;
    if (sm->reservation_count >= sm->cfg.reservation_capacity)
        return SM_RESTORE_FULL;
    u32 rref = find_resource(sm, v->resource_id);
    if (rref == 0)
        return SM_RESTORE_NO_RESOURCE;
    if (find_reservation_ref(sm, v->reservation_id) != 0)
        return SM_RESTORE_DUPLICATE;
    u32 pos = sm->reservation_free[sm->reservation_free_count - 1];
    if (v->state == SM_RESERVATION_RESERVED) {
        enum sm_restore_result rc = restore_schedule(sm, pos, v->deadline_slot);
        if (rc != SM_RESTORE_OK)
            return rc;
    }
    sm->reservation_free_count--;
    struct sm_reservation *r = &sm->reservations[pos];
    r->reservation_id = v->reservation_id;
    r->holder_id = v->holder_id;
    r->deadline_slot = v->deadline_slot;
    r->released_lsn = v->released_lsn;
    r->retire_after_slot = v->retire_after_slot;
    r->resource_ref = rref - 1;
    r->state = v->state;
    sm->reservation_count++;
    index_insert(&sm->reservation_index, hash_u128(r->reservation_id), pos + 1);
    if (r->state == SM_RESERVATION_RELEASED || r->state == SM_RESERVATION_EXPIRED)
        fifo_push(&sm->reservation_retire, pos); /* terminal ones arrive in queue order */
    return SM_RESTORE_OK;
}

enum sm_restore_result sm_restore_operation(sm_t *sm, const struct sm_operation *op)
{
    if (op->operation_id == 0)
        return SM_RESTORE_INVALID;
    if (find_operation(sm, op->operation_id) != 0)
        return SM_RESTORE_DUPLICATE;
    if (sm->operation_count >= sm->cfg.operation_capacity)
        return SM_RESTORE_FULL;
    u32 pos = ring_at(sm->operation_head, sm->operation_count, sm->cfg.operation_capacity);
    sm->operations[pos] = *op; /* records arrive in LSN order */
    if (sm->operation_count++ == 0)
        sm->operation_oldest_lsn = op->applied_lsn;
    sm->operation_sum += sm_operation_hash(op);
    index_insert(&sm->operation_index, hash_u128(op->operation_id), pos + 1);
    return SM_RESTORE_OK;
}

void sm_restore_end(sm_t *sm)
{
    struct expiry *ex = &sm->expiry;
    if (ex->count > ex->due_count && ex->due_through < sm->last_request_slot)
        expiry_advance(ex, ex->due_through + 1);
    expiry_advance(ex, sm->last_request_slot);
}
