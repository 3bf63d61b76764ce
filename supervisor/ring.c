/*
 * supervisor/ring.c — the SPSC shared-memory ring (protocol and ordering in ring.h).
 */
#include "config.h"

#include "supervisor/ring.h"

#include "common/assert.h"
#include "wal/crc32c.h"

#include <linux/futex.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

struct ring_slot {
    u64 position; /* the position this slot was last published for */
    u32 len;
    u32 crc;      /* CRC32C of position, len and the payload */
    u8 payload[];
};
ADB_STATIC_ASSERT(sizeof(struct ring_slot) == RING_SLOT_HEADER, "slot header size");

struct ring {
    u64 magic;
    u32 slot_size;
    u32 capacity;
    u8 pad0[ADB_CACHE_LINE - 16];
    _Atomic u64 head; /* producer-owned */
    u64 cached_tail;  /* producer-private copy of tail: re-read only when the ring looks full */
    u8 pad1[ADB_CACHE_LINE - 16];
    _Atomic u64 tail;     /* consumer-owned */
    _Atomic u32 sleeping; /* futex word: 1 while the consumer is (about to be) asleep */
    u8 pad2[ADB_CACHE_LINE - 12];
    u8 slots[];
};
ADB_STATIC_ASSERT(sizeof(struct ring) == 3 * ADB_CACHE_LINE, "one cache line per party");

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
    ADB_ASSERT(shape_ok(capacity, slot_size));
    ADB_ASSERT(((uintptr_t)mem & (ADB_CACHE_LINE - 1)) == 0);
    memset(mem, 0, ring_size(capacity, slot_size));
    struct ring *r = mem;
    r->magic = RING_MAGIC;
    r->slot_size = slot_size;
    r->capacity = capacity;
    atomic_init(&r->head, 0);
    atomic_init(&r->tail, 0);
    atomic_init(&r->sleeping, 0);
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

u64 ring_head(const struct ring *r)
{
    return atomic_load_explicit(&r->head, memory_order_relaxed); /* the producer's own counter */
}

void *ring_claim(struct ring *r)
{
    u64 head = atomic_load_explicit(&r->head, memory_order_relaxed); /* our own counter */
    if (head - r->cached_tail >= r->capacity) {
        /* A2: pairs with the consumer's R2; after it, the slot at head is no longer read. */
        r->cached_tail = atomic_load_explicit(&r->tail, memory_order_acquire);
        ADB_ASSERT(r->cached_tail <= head);
        if (head - r->cached_tail >= r->capacity)
            return NULL;
    }
    return slot_at(r, head)->payload;
}

static u32 slot_crc(const struct ring_slot *s)
{
    return crc32c(crc32c(0, s, 12), s->payload, s->len); /* position and len, then the payload */
}

void ring_publish(struct ring *r, u32 len)
{
    ADB_ASSERT(len <= r->slot_size);
    u64 head = atomic_load_explicit(&r->head, memory_order_relaxed);
    ADB_ASSERT(head - r->cached_tail < r->capacity); /* ring_claim said there was room */
    struct ring_slot *s = slot_at(r, head);
    s->position = head;
    s->len = len;
    s->crc = slot_crc(s);
    /* R1: pairs with the consumer's A1; publishes the payload and the slot header above. */
    atomic_store_explicit(&r->head, head + 1, memory_order_release);
    /* F1: full fence between our store of head and our load of `sleeping`; with the consumer's
     * F2 (store sleeping, fence, load head) at least one side sees the other's store, so a
     * wake-up is never lost. A busy consumer is not asleep: no system call. */
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&r->sleeping, memory_order_relaxed) != 0 &&
        atomic_exchange_explicit(&r->sleeping, 0, memory_order_relaxed) != 0)
        syscall(SYS_futex, &r->sleeping, FUTEX_WAKE, 1, NULL, NULL, 0); /* shared mapping: not _PRIVATE */
}

enum ring_status ring_peek(struct ring *r, const void **payload, u32 *len)
{
    u64 tail = atomic_load_explicit(&r->tail, memory_order_relaxed); /* our own counter */
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

void ring_release(struct ring *r)
{
    u64 tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    ADB_ASSERT(tail < atomic_load_explicit(&r->head, memory_order_relaxed));
    /* R2: pairs with the producer's A2; our reads of the slot happen before it may be reused. */
    atomic_store_explicit(&r->tail, tail + 1, memory_order_release);
}

bool ring_wait(struct ring *r, int timeout_ms)
{
    u64 tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    if (atomic_load_explicit(&r->head, memory_order_acquire) != tail)
        return true;
    atomic_store_explicit(&r->sleeping, 1, memory_order_relaxed);
    /* F2: pairs with the producer's F1 (see ring_publish). */
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&r->head, memory_order_acquire) == tail) {
        struct timespec ts = { .tv_sec = timeout_ms / 1000, .tv_nsec = (long)(timeout_ms % 1000) * 1000000L };
        /* Returns at once if the producer already cleared the word (EAGAIN), on a wake-up, on
         * a signal (EINTR) or at the timeout: the caller re-checks in every case. */
        syscall(SYS_futex, &r->sleeping, FUTEX_WAIT, 1, timeout_ms >= 0 ? &ts : NULL, NULL, 0);
    }
    atomic_store_explicit(&r->sleeping, 0, memory_order_relaxed);
    return atomic_load_explicit(&r->head, memory_order_acquire) != tail;
}

u64 ring_depth(const struct ring *r)
{
    u64 tail = atomic_load_explicit(&r->tail, memory_order_acquire);
    u64 head = atomic_load_explicit(&r->head, memory_order_acquire);
    return head >= tail ? head - tail : 0;
}
