/*
 * replica/index.c — insert and delete for the deterministic hash index (see index.h).
 */
#include "replica/index.h"

#include <string.h>

void index_init(struct index *ix, struct index_slot *slots, u32 capacity)
{
    memset(slots, 0, (size_t)index_slot_count(capacity) * sizeof(*slots));
    index_init_zeroed(ix, slots, capacity);
}

void index_init_zeroed(struct index *ix, struct index_slot *slots, u32 capacity)
{
    u64 n = index_slot_count(capacity);
    ADB_ASSERT(n <= ((u64)1 << 32));
    ix->slots = slots;
    ix->mask = (u32)(n - 1);
    ix->count = 0;
    ix->capacity = capacity;
}

void index_insert(struct index *ix, u64 hash, u32 ref)
{
    ADB_ASSERT(ref != 0);
    ADB_ASSERT(ix->count < ix->capacity);
    u32 pos = (u32)hash & ix->mask;
    for (u32 steps = 0;; steps++) {
        ADB_ASSERT(steps <= ix->mask);
        struct index_slot *s = &ix->slots[pos];
        if (s->ref == 0) {
            s->tag = (u32)hash;
            s->ref = ref;
            ix->count++;
            return;
        }
        ADB_ASSERT(s->ref != ref);
        pos = (pos + 1) & ix->mask;
    }
}

/* True when `home` lies cyclically in (hole, pos]: the entry at pos must not move to hole. */
static bool index_home_between(u32 hole, u32 home, u32 pos)
{
    if (hole <= pos)
        return hole < home && home <= pos;
    return hole < home || home <= pos;
}

void index_remove(struct index *ix, u64 hash, u32 ref)
{
    u32 hole = (u32)hash & ix->mask;
    for (u32 steps = 0;; steps++) {
        ADB_ASSERT(steps <= ix->mask);
        ADB_ASSERT(ix->slots[hole].ref != 0); /* removing an absent entry: caller bug */
        if (ix->slots[hole].ref == ref)
            break;
        hole = (hole + 1) & ix->mask;
    }
    /* Backward shift: pull later entries of the cluster into the hole when their home slot
     * allows it, so no tombstone is left and every entry stays reachable from its home. */
    u32 pos = hole;
    for (u32 steps = 0;; steps++) {
        ADB_ASSERT(steps <= ix->mask);
        pos = (pos + 1) & ix->mask;
        struct index_slot *s = &ix->slots[pos];
        if (s->ref == 0)
            break;
        u32 home = s->tag & ix->mask;
        if (index_home_between(hole, home, pos))
            continue;
        ix->slots[hole] = *s;
        hole = pos;
    }
    ix->slots[hole].ref = 0;
    ix->slots[hole].tag = 0;
    ix->count--;
}

bool index_check(const struct index *ix)
{
    u32 seen = 0;
    for (u64 i = 0; i <= ix->mask; i++) {
        const struct index_slot *s = &ix->slots[i];
        if (s->ref == 0)
            continue;
        seen++;
        /* Every slot from home to i must be occupied, or a lookup would stop early. */
        u32 pos = s->tag & ix->mask;
        while (pos != (u32)i) {
            if (ix->slots[pos].ref == 0)
                return false;
            pos = (pos + 1) & ix->mask;
        }
    }
    return seen == ix->count && ix->count <= ix->capacity;
}
