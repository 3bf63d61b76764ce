/*
 * replica/retry_cache.c — see retry_cache.h.
 */
#include "config.h"

#include "replica/retry_cache.h"

#include "common/assert.h"
#include "common/hash.h"
#include "replica/sm.h" /* sm_fingerprint */

#include <string.h>

static inline u128 entry_id(const struct retry_entry *e)
{
    return U128_MAKE(e->id_hi, e->id_lo);
}

u64 retry_cache_bytes(u32 capacity)
{
    return (u64)capacity * sizeof(struct retry_entry) + index_slot_count(capacity) * sizeof(struct index_slot);
}

void retry_cache_init(struct retry_cache *c, void *memory, u32 capacity, u64 window_slots)
{
    ADB_ASSERT(capacity > 0);
    memset(c, 0, sizeof(*c));
    c->capacity = capacity;
    c->window_slots = window_slots;
    c->margin_slots = window_slots / 8 + 1;
    c->entries = memory;
    index_init_zeroed(&c->ix, (struct index_slot *)((char *)memory + (u64)capacity * sizeof(struct retry_entry)),
                      capacity);
}

static void drop_oldest(struct retry_cache *c)
{
    ADB_ASSERT(c->count > 0);
    struct retry_entry *e = &c->entries[c->head];
    index_remove(&c->ix, hash_u128(entry_id(e)), c->head + 1);
    e->id_lo = e->id_hi = 0;
    c->head = c->head + 1 == c->capacity ? 0 : c->head + 1;
    c->count--;
}

void retry_cache_retire(struct retry_cache *c, u64 slot)
{
    while (c->count > 0 && c->entries[c->head].retire_after_slot < slot)
        drop_oldest(c);
}

const struct retry_entry *retry_cache_find(const struct retry_cache *c, u128 id)
{
    u64 h = hash_u128(id);
    struct index_probe p = index_probe_start(&c->ix, h);
    u32 ref;
    while ((ref = index_probe_next(&c->ix, &p, h)) != 0)
        if (entry_id(&c->entries[ref - 1]) == id)
            return &c->entries[ref - 1];
    return NULL;
}

void retry_cache_add(struct retry_cache *c, const struct sm_command *cmd, u64 lsn, u64 slot, bool known_absent)
{
    if (!known_absent && retry_cache_find(c, cmd->operation_id) != NULL)
        return; /* keep the first: it is what the state machine recorded first */
    if (c->count == c->capacity)
        drop_oldest(c);
    u64 at = (u64)c->head + c->count;
    u32 pos = (u32)(at >= c->capacity ? at - c->capacity : at);
    struct retry_entry *e = &c->entries[pos];
    e->id_lo = U128_LO(cmd->operation_id);
    e->id_hi = U128_HI(cmd->operation_id);
    e->fp = sm_fingerprint(cmd);
    e->lsn = lsn;
    e->retire_after_slot = slot + c->window_slots;
    index_insert(&c->ix, hash_u128(cmd->operation_id), pos + 1);
    c->count++;
}

u64 retry_cache_answer(const struct retry_cache *c, const struct retry_entry *e, const struct sm_command *cmd,
                       u64 slot, u64 durable_lsn)
{
    if (e == NULL || e->lsn > durable_lsn || e->retire_after_slot < slot + c->margin_slots)
        return 0;
    return sm_fingerprint(cmd) == e->fp ? e->lsn : 0;
}
