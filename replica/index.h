/*
 * replica/index.h — deterministic open-addressed hash index from a 64-bit hash to a pool slot.
 *
 * The state machine keeps its records in fixed pools (arrays allocated once at start-up) and
 * finds them through this index. A slot is 8 bytes: the low 32 bits of the key's hash (its
 * tag, which also gives the home slot) and ref, the pool position plus one (zero marks an empty
 * slot). At load <= 1/2 that is 16 bytes of index per record. Callers confirm a hit by comparing
 * the full key in the pool. A false candidate needs another key with the same 32-bit tag: about
 * records / 2^32 per lookup (1.6% of lookups at 64M records), each one extra pool read.
 *
 * NOTES
 *   Linear probing with backward-shift deletion: no tombstones, so probe chains never grow with
 *   churn and the table needs no rebuilds. The slot count is a power of two at least twice the
 *   pool capacity (load factor <= 1/2), and every probe loop is bounded by the slot count.
 *   Iteration order depends only on the sequence of inserts and deletes, never on addresses or
 *   seeds, so replicas that apply the same log hold identical indexes.
 */
#ifndef ADB_REPLICA_INDEX_H
#define ADB_REPLICA_INDEX_H

#include "common/assert.h"
#include "common/types.h"

struct index_slot {
    u32 tag; /* low 32 bits of the key's hash; tag & mask is the home slot */
    u32 ref; /* pool position + 1; 0 = empty */
};

struct index {
    struct index_slot *slots;
    u32 mask;     /* slot count - 1 */
    u32 count;    /* occupied slots */
    u32 capacity; /* most entries allowed (pool capacity) */
};

/* Number of slots used for a pool of `capacity` entries (power of two >= 2 * capacity, at most
 * 2^32 so a tag always holds the home slot). */
static inline u64 index_slot_count(u32 capacity)
{
    u64 n = 2;
    while (n < (u64)capacity * 2)
        n <<= 1;
    return n;
}

void index_init(struct index *ix, struct index_slot *slots, u32 capacity);
/* The same over slots already all zero (a fresh anonymous mapping): touches none of them. */
void index_init_zeroed(struct index *ix, struct index_slot *slots, u32 capacity);

/*
 * Probe cursor: start with index_probe_start, then call index_probe_next until it returns 0.
 * Each returned ref has the requested hash's tag; the caller compares keys.
 */
struct index_probe {
    u32 pos;
    u32 steps;
};

static inline struct index_probe index_probe_start(const struct index *ix, u64 hash)
{
    struct index_probe p = { (u32)hash & ix->mask, 0 };
    return p;
}

static inline u32 index_probe_next(const struct index *ix, struct index_probe *p, u64 hash)
{
    for (;;) {
        ADB_ASSERT(p->steps <= ix->mask); /* an empty slot always exists: load <= 1/2 */
        const struct index_slot *s = &ix->slots[p->pos];
        p->pos = (p->pos + 1) & ix->mask;
        p->steps++;
        if (s->ref == 0)
            return 0;
        if (s->tag == (u32)hash)
            return s->ref;
    }
}

/* Inserts (hash, ref); the caller has checked the key is absent and count < capacity. */
void index_insert(struct index *ix, u64 hash, u32 ref);

/* Removes the slot holding `ref` (which must be present under `hash`). */
void index_remove(struct index *ix, u64 hash, u32 ref);

/* Full consistency check for tests: every entry reachable from its home slot, count right. */
bool index_check(const struct index *ix);

#endif
