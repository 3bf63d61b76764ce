/*
 * supervisor/ring.c — the SPSC shared-memory ring (protocol and ordering in ring.h).
 */

#include "supervisor/ring.h"

#include "common/assert.h"
#include "common/crc32c.h"

#include <stdatomic.h>
#include <string.h>

struct ring_slot {
    u64 position; /* the position this slot was last published for */
    u32 len;
    u32 crc;      /* CRC32C of position, len and the payload */
    u8 payload[];
};
ADB_STATIC_ASSERT(sizeof(struct ring_slot) == RING_SLOT_HEADER, "slot header size");

/* One consumer's cursor, on its own cache line. */
struct ring_cursor {
    _Atomic u64 tail;     /* next position this consumer reads (written by it only) */
    _Atomic u32 active;   /* 0: ignored by the producer's flow control (an absent peer) */
    u32 pad;
    i64 bell_offset;      /* its doorbell, relative to the ring (0: `own`) */
    struct doorbell own;  /* the built-in doorbell ring_wait uses */
    u8 pad1[ADB_CACHE_LINE - 24 - sizeof(struct doorbell)];
};
ADB_STATIC_ASSERT(sizeof(struct ring_cursor) == ADB_CACHE_LINE, "one cache line per cursor");

struct ring {
    u64 magic;
    u32 slot_size;
    u32 capacity;
    u32 consumers;
    u8 pad0[ADB_CACHE_LINE - 20];
    _Atomic u64 head; /* producer-owned */
    u64 cached_min;   /* producer-private: slowest active tail when last read; re-read only when
                       * the ring looks full (disruptor's cached gating sequence) */
    u8 pad1[ADB_CACHE_LINE - 16];
    struct ring_cursor cursor[RING_CONSUMERS_MAX];
    u8 slots[];
};
ADB_STATIC_ASSERT(sizeof(struct ring) == (2 + RING_CONSUMERS_MAX) * ADB_CACHE_LINE, "line per party");

static struct doorbell *bell_of(struct ring *r, u32 c)
{
    struct ring_cursor *k = &r->cursor[c];
    return k->bell_offset == 0 ? &k->own : (struct doorbell *)((u8 *)r + k->bell_offset);
}

static bool shape_ok(u32 capacity, u32 slot_size)
{
    return capacity >= 2 && capacity <= (1u << 24) && (capacity & (capacity - 1)) == 0 && slot_size >= 8 &&
           slot_size <= 65536 && slot_size % 8 == 0;
}

u64 ring_size(u32 capacity, u32 slot_size)
{
    if (!shape_ok(capacity, slot_size))
        return 0;
    return sizeof(struct ring) + (u64)capacity * (RING_SLOT_HEADER + slot_size);
}

static struct ring_slot *slot_at(const struct ring *r, u64 position)
{
    u64 i = position & (r->capacity - 1);
    return (struct ring_slot *)((u8 *)r->slots + i * (RING_SLOT_HEADER + r->slot_size));
}

struct ring *ring_init(void *mem, u32 capacity, u32 slot_size)
{
    return ring_init_multi(mem, capacity, slot_size, 1);
}

struct ring *ring_init_multi(void *mem, u32 capacity, u32 slot_size, u32 consumers)
{
    ADB_ASSERT(shape_ok(capacity, slot_size));
    ADB_ASSERT(consumers >= 1 && consumers <= RING_CONSUMERS_MAX);
    ADB_ASSERT(((uintptr_t)mem & (ADB_CACHE_LINE - 1)) == 0);
    memset(mem, 0, ring_size(capacity, slot_size));
    struct ring *r = mem;
    r->magic = RING_MAGIC;
    r->slot_size = slot_size;
    r->capacity = capacity;
    r->consumers = consumers;
    atomic_init(&r->head, 0);
    for (u32 c = 0; c < RING_CONSUMERS_MAX; c++) {
        atomic_init(&r->cursor[c].tail, 0);
        atomic_init(&r->cursor[c].active, c < consumers ? 1 : 0);
        r->cursor[c].bell_offset = 0;
        doorbell_init(&r->cursor[c].own, -1);
    }
    return r;
}

struct ring *ring_attach(void *mem, u32 capacity, u32 slot_size)
{
    struct ring *r = mem;
    if (r->magic != RING_MAGIC || r->capacity != capacity || r->slot_size != slot_size)
        return NULL;
    return r;
}

u32 ring_slot_size(const struct ring *r)
{
    return r->slot_size;
}

u32 ring_capacity(const struct ring *r)
{
    return r->capacity;
}

u32 ring_consumers(const struct ring *r)
{
    return r->consumers;
}

void ring_set_doorbell(struct ring *r, u32 c, struct doorbell *d)
{
    ADB_ASSERT(c < r->consumers);
    r->cursor[c].bell_offset = d == NULL ? 0 : (i64)((u8 *)d - (u8 *)r);
}

void ring_set_active(struct ring *r, u32 c, bool active)
{
    ADB_ASSERT(c < r->consumers);
    if (active) /* a joining consumer starts at the head: it only reads what follows */
        atomic_store_explicit(&r->cursor[c].tail, atomic_load_explicit(&r->head, memory_order_acquire),
                              memory_order_release);
    atomic_store_explicit(&r->cursor[c].active, active ? 1 : 0, memory_order_release);
}

/* Slowest tail among active consumers (head if none is active). */
static u64 min_tail(const struct ring *r, u64 head)
{
    u64 m = head;
    for (u32 c = 0; c < r->consumers; c++) {
        if (atomic_load_explicit(&r->cursor[c].active, memory_order_acquire) == 0)
            continue;
        /* A2: pairs with that consumer's R2; after it, slots below its tail are not read. */
        u64 t = atomic_load_explicit(&r->cursor[c].tail, memory_order_acquire);
        if (t < m)
            m = t;
    }
    return m;
}

u64 ring_head(const struct ring *r)
{
    return atomic_load_explicit(&r->head, memory_order_relaxed); /* the producer's own counter */
}

void *ring_claim(struct ring *r)
{
    u64 head = atomic_load_explicit(&r->head, memory_order_relaxed); /* our own counter */
    if (head - r->cached_min >= r->capacity || r->cached_min > head) {
        r->cached_min = min_tail(r, head);
        ADB_ASSERT(r->cached_min <= head);
        if (head - r->cached_min >= r->capacity)
            return NULL;
    }
    return slot_at(r, head)->payload;
}

static u32 slot_crc(const struct ring_slot *s)
{
    return crc32c(crc32c(0, s, 12), s->payload, s->len); /* position and len, then the payload */
}

void ring_publish_quiet(struct ring *r, u32 len)
{
    ADB_ASSERT(len <= r->slot_size);
    u64 head = atomic_load_explicit(&r->head, memory_order_relaxed);
    ADB_ASSERT(head - r->cached_min < r->capacity); /* ring_claim said there was room */
    struct ring_slot *s = slot_at(r, head);
    s->position = head;
    s->len = len;
    s->crc = slot_crc(s);
    /* R1: pairs with the consumers' A1; publishes the payload and the slot header above. */
    atomic_store_explicit(&r->head, head + 1, memory_order_release);
}

void ring_notify(struct ring *r)
{
    /* F1 (doorbell.h): our store of head before our loads of the consumers' `sleeping`. */
    atomic_thread_fence(memory_order_seq_cst);
    for (u32 c = 0; c < r->consumers; c++)
        if (atomic_load_explicit(&r->cursor[c].active, memory_order_relaxed) != 0)
            doorbell_ring_fenced(bell_of(r, c));
}

void ring_publish(struct ring *r, u32 len)
{
    ring_publish_quiet(r, len);
    ring_notify(r);
}

bool ring_has(struct ring *r, u32 c)
{
    u64 tail = atomic_load_explicit(&r->cursor[c].tail, memory_order_relaxed);
    return atomic_load_explicit(&r->head, memory_order_acquire) != tail;
}

enum ring_status ring_peek_at(struct ring *r, u32 c, const void **payload, u32 *len)
{
    ADB_ASSERT(c < r->consumers);
    u64 tail = atomic_load_explicit(&r->cursor[c].tail, memory_order_relaxed); /* our own counter */
    /* A1: pairs with the producer's R1. */
    u64 head = atomic_load_explicit(&r->head, memory_order_acquire);
    if (tail == head)
        return RING_EMPTY;
    if (head < tail || head - tail > r->capacity)
        return RING_CORRUPT; /* counters no correct run produces */
    const struct ring_slot *s = slot_at(r, tail);
    if (s->position != tail || s->len > r->slot_size || slot_crc(s) != s->crc)
        return RING_CORRUPT;
    *payload = s->payload;
    *len = s->len;
    return RING_OK;
}

void ring_release_at(struct ring *r, u32 c)
{
    u64 tail = atomic_load_explicit(&r->cursor[c].tail, memory_order_relaxed);
    ADB_ASSERT(tail < atomic_load_explicit(&r->head, memory_order_relaxed));
    /* R2: pairs with the producer's A2; our reads of the slot happen before it may be reused. */
    atomic_store_explicit(&r->cursor[c].tail, tail + 1, memory_order_release);
}

u64 ring_tail(const struct ring *r, u32 c)
{
    return atomic_load_explicit(&r->cursor[c].tail, memory_order_acquire);
}

enum ring_status ring_peek(struct ring *r, const void **payload, u32 *len)
{
    return ring_peek_at(r, 0, payload, len);
}

void ring_release(struct ring *r)
{
    ring_release_at(r, 0);
}

bool ring_wait(struct ring *r, int timeout_ms)
{
    if (ring_has(r, 0))
        return true;
    struct doorbell *d = bell_of(r, 0);
    doorbell_arm(d);
    if (ring_has(r, 0)) {
        doorbell_disarm(d);
        return true;
    }
    doorbell_sleep(d, timeout_ms);
    return ring_has(r, 0);
}

u64 ring_depth(const struct ring *r)
{
    u64 tail = min_tail(r, atomic_load_explicit(&r->head, memory_order_acquire));
    u64 head = atomic_load_explicit(&r->head, memory_order_acquire);
    return head >= tail ? head - tail : 0;
}
