/*
 * net/ingress_table.c — the ingress's pending-request table and its pool of command records
 * (ingress_internal.h).
 *
 * NOTES
 *   Initialization: ing_table_init allocates everything once; nothing grows afterwards.
 *   Records: a binary buddy allocator over a power-of-two pool. A submit of n commands takes
 *   one block of 2^ceil(log2 n) records, so its records are contiguous and command i is found
 *   from (pending, index) in O(1). Freeing merges a block with its buddy while the buddy is a
 *   free block of the same order. Worst case half a block is wasted; in exchange, completion
 *   order never matters (a long-waiting request holds only its own block).
 *   Error reporting: exhaustion returns NULL; the caller answers overloaded. Misuse asserts.
 */
#include "config.h"

#include "net/ingress_internal.h"

#include "common/assert.h"

#include <stdlib.h>
#include <string.h>

static u32 next_pow2(u32 v)
{
    u32 p = 1;
    while (p < v) {
        ADB_ASSERT(p <= (1u << 30));
        p <<= 1;
    }
    return p;
}

static u8 order_of(u32 count)
{
    u8 o = 0;
    while ((1u << o) < count)
        o++;
    return o;
}

u32 ing_record_capacity(const struct config *cfg)
{
    u32 want = cfg->ring_capacity;
    if (want < 2 * cfg->max_batch)
        want = 2 * cfg->max_batch;
    return next_pow2(want < 2 ? 2 : want);
}

/* ---- buddy lists -------------------------------------------------------------------------- */

static void blk_push(struct ing_table *t, u32 b, u8 order)
{
    t->blk_order[b] = order;
    t->blk_free[b] = 1;
    t->blk_prev[b] = ING_NIL;
    t->blk_next[b] = t->free_head[order];
    if (t->free_head[order] != ING_NIL)
        t->blk_prev[t->free_head[order]] = b;
    t->free_head[order] = b;
}

static void blk_unlink(struct ing_table *t, u32 b)
{
    ADB_ASSERT(t->blk_free[b]);
    u8 order = t->blk_order[b];
    if (t->blk_prev[b] != ING_NIL)
        t->blk_next[t->blk_prev[b]] = t->blk_next[b];
    else
        t->free_head[order] = t->blk_next[b];
    if (t->blk_next[b] != ING_NIL)
        t->blk_prev[t->blk_next[b]] = t->blk_prev[b];
    t->blk_free[b] = 0;
}

static u32 blk_alloc(struct ing_table *t, u8 order)
{
    u8 o = order;
    while (o <= t->rec_max_order && t->free_head[o] == ING_NIL)
        o++;
    if (o > t->rec_max_order)
        return ING_NIL;
    u32 b = t->free_head[o];
    blk_unlink(t, b);
    /* Split down: the upper halves go back as free blocks of the lower orders. */
    while (o > order) {
        o--;
        blk_push(t, b + (1u << o), o);
    }
    t->blk_order[b] = order;
    t->rec_used += 1u << order;
    return b;
}

static void blk_release(struct ing_table *t, u32 b, u8 order)
{
    ADB_ASSERT(!t->blk_free[b] && t->blk_order[b] == order);
    t->rec_used -= 1u << order;
    while (order < t->rec_max_order) {
        u32 buddy = b ^ (1u << order);
        if (!t->blk_free[buddy] || t->blk_order[buddy] != order)
            break;
        blk_unlink(t, buddy);
        b = b < buddy ? b : buddy;
        order++;
    }
    blk_push(t, b, order);
}

/* ---- the table ---------------------------------------------------------------------------- */

bool ing_table_init(struct ing_table *t, u32 pending_cap, u32 record_cap)
{
    ADB_ASSERT(pending_cap >= 1 && pending_cap < ING_NIL);
    ADB_ASSERT(record_cap >= 2 && (record_cap & (record_cap - 1)) == 0 && record_cap <= (1u << 30));
    memset(t, 0, sizeof(*t));
    t->pend = calloc(pending_cap, sizeof(*t->pend));
    t->rec = calloc(record_cap, sizeof(*t->rec));
    t->blk_order = calloc(record_cap, 1);
    t->blk_free = calloc(record_cap, 1);
    t->blk_next = calloc(record_cap, sizeof(u32));
    t->blk_prev = calloc(record_cap, sizeof(u32));
    if (t->pend == NULL || t->rec == NULL || t->blk_order == NULL || t->blk_free == NULL ||
        t->blk_next == NULL || t->blk_prev == NULL) {
        ing_table_free(t);
        return false;
    }
    t->pend_cap = pending_cap;
    for (u32 i = 0; i < pending_cap; i++) {
        t->pend[i].age_next = i + 1 < pending_cap ? i + 1 : ING_NIL;
        t->pend[i].gen = 1;
    }
    t->pend_free = 0;
    t->age_head = t->age_tail = ING_NIL;

    t->rec_cap = record_cap;
    t->rec_max_order = order_of(record_cap);
    for (u32 o = 0; o < ADB_ARRAY_LEN(t->free_head); o++)
        t->free_head[o] = ING_NIL;
    blk_push(t, 0, t->rec_max_order);
    return true;
}

void ing_table_free(struct ing_table *t)
{
    free(t->pend);
    free(t->rec);
    free(t->blk_order);
    free(t->blk_free);
    free(t->blk_next);
    free(t->blk_prev);
    memset(t, 0, sizeof(*t));
}

struct ing_pending *ing_pending_alloc(struct ing_table *t, u8 kind, u32 count)
{
    ADB_ASSERT(kind != 0);
    if (t->pend_free == ING_NIL)
        return NULL;
    u32 rec = ING_NIL;
    u8 order = 0;
    if (count > 0) {
        if (count > t->rec_cap)
            return NULL;
        order = order_of(count);
        rec = blk_alloc(t, order);
        if (rec == ING_NIL)
            return NULL;
        memset(&t->rec[rec], 0, (size_t)count * sizeof(*t->rec));
    }
    u32 i = t->pend_free;
    struct ing_pending *p = &t->pend[i];
    t->pend_free = p->age_next;
    u32 gen = p->gen;
    memset(p, 0, sizeof(*p));
    p->gen = gen;
    p->kind = kind;
    p->rec = rec;
    p->rec_order = order;
    p->count = count;
    p->conn = p->conn_prev = p->conn_next = ING_NIL;
    /* Young end of the age list. */
    p->age_next = ING_NIL;
    p->age_prev = t->age_tail;
    if (t->age_tail != ING_NIL)
        t->pend[t->age_tail].age_next = i;
    else
        t->age_head = i;
    t->age_tail = i;
    t->pend_used++;
    return p;
}

void ing_pending_release(struct ing_table *t, struct ing_pending *p)
{
    ADB_ASSERT(p->kind != 0);
    u32 i = ing_pending_index(t, p);
    if (p->count > 0)
        blk_release(t, p->rec, p->rec_order);
    if (p->age_prev != ING_NIL)
        t->pend[p->age_prev].age_next = p->age_next;
    else
        t->age_head = p->age_next;
    if (p->age_next != ING_NIL)
        t->pend[p->age_next].age_prev = p->age_prev;
    else
        t->age_tail = p->age_prev;
    p->kind = 0;
    p->gen++;
    if (p->gen == 0) /* 0 never names a live entry */
        p->gen = 1;
    p->age_next = t->pend_free;
    p->age_prev = ING_NIL;
    t->pend_free = i;
    t->pend_used--;
}

struct ing_pending *ing_pending_find(struct ing_table *t, u32 index, u32 gen)
{
    if (index >= t->pend_cap)
        return NULL;
    struct ing_pending *p = &t->pend[index];
    if (p->kind == 0 || p->gen != gen)
        return NULL;
    return p;
}
