/*
 * supervisor/ring.h — a single-producer, single-consumer ring of fixed-size slots that lives in
 * shared memory and is used by two different processes (e.g. ingress -> sequencer).
 *
 * A ring may have up to RING_CONSUMERS_MAX consumers, each with its own cursor: the shared log
 * (sequencer -> applier and, later, the replication peer) is such a ring. Every active consumer
 * reads every entry; the slowest active cursor holds the producer back (backpressure: never
 * overwrite, never drop). A consumer can be inactive (an absent peer) and is then ignored.
 *
 * Layout (all in the shared block, sized by ring_size()):
 *   header line 0: magic, slot size, capacity (a power of two), consumers
 *   header line 1: head — next position the producer publishes     (written by the producer only)
 *   lines 2..:     one cursor per consumer: tail — next position it reads (written by it only),
 *                  active flag, its doorbell (supervisor/doorbell.h)
 *   slots:         capacity x (16-byte slot header + slot_size payload bytes)
 * Positions are 64-bit and never wrap (2^64 entries at 10^9/s is 584 years); the slot of a
 * position is position & (capacity - 1). Each counter has its own cache line so the producer
 * and consumer do not invalidate each other's lines on every update.
 *
 * Protocol — claim, write, publish:
 *   producer: ring_claim() returns the payload area of slot `head` if head - tail < capacity
 *             (else NULL: full, backpressure), the producer writes it in place, then
 *             ring_publish(len) stamps the slot header (position, length, CRC32C) and makes it
 *             visible with one release store of head + 1.
 *   consumer: ring_peek() returns the payload of slot `tail` if tail < head; ring_release()
 *             frees it with one release store of tail + 1. The slot is reused only when every
 *             active consumer has released it.
 * Ordering edges (named where they are used in ring.c):
 *   R1 (producer, release store of head) pairs with A1 (consumer, acquire load of head): the
 *      consumer sees the slot's payload and header written before R1.
 *   R2 (consumer, release store of tail) pairs with A2 (producer, acquire load of tail): the
 *      producer reuses a slot only after the consumer is done reading it.
 *
 * Crash of either side: all shared state changes with a single store (R1 or R2), so a process
 * killed at any instruction leaves the ring consistent. A slot claimed but not published is
 * simply claimed again by the restarted producer (a claim writes no shared counter); an entry
 * peeked but not released is read again by the restarted consumer (at-least-once delivery: the
 * consumer's own state must make reprocessing harmless).
 *
 * Corruption: ring_peek() checks the slot's position stamp, length and CRC32C; a mismatch is
 * RING_CORRUPT and the caller fails closed (whole-daemon restart; DESIGN.md §5).
 *
 * Sleeping: each consumer cursor names a doorbell (supervisor/doorbell.h): its own futex word by
 * default, or one shared by all the rings a worker consumes, futex or eventfd (the ingress needs
 * an fd for libevent). ring_publish() fences after its store of head and wakes a consumer only
 * if it sleeps, so a busy consumer costs the producer one fence per publish and no system call;
 * ring_publish_quiet() + one ring_notify() per batch costs one fence per batch.
 */
#ifndef ADB_SUPERVISOR_RING_H
#define ADB_SUPERVISOR_RING_H

#include "common/types.h"
#include "supervisor/doorbell.h"

#define RING_MAGIC 0x474e495242444141ull /* "AADBRING" */
#define RING_SLOT_HEADER 16
#define RING_CONSUMERS_MAX 2

struct ring; /* the shared block */

enum ring_status {
    RING_OK = 0,
    RING_EMPTY,   /* peek: nothing published */
    RING_CORRUPT, /* peek: the slot at tail fails its checks */
};

/* Bytes needed for capacity slots of slot_size payload bytes; 0 if the arguments are invalid
 * (capacity not a power of two in 2..2^24, slot_size not a multiple of 8 in 8..65536). */
u64 ring_size(u32 capacity, u32 slot_size);

/* Builds an empty ring in mem (ring_size bytes, 64-byte aligned). Done once, by the creator of
 * the shared segment, before any producer or consumer attaches. ring_init has one consumer. */
struct ring *ring_init(void *mem, u32 capacity, u32 slot_size);
struct ring *ring_init_multi(void *mem, u32 capacity, u32 slot_size, u32 consumers);
u32 ring_consumers(const struct ring *r);

/* Setup, by the segment's creator: consumer c sleeps on doorbell d, which must live in the same
 * shared mapping as the ring (it is stored as an offset). NULL: the cursor's own futex word. */
void ring_set_doorbell(struct ring *r, u32 c, struct doorbell *d);

/* Consumer c joins (starting at the current head) or leaves the producer's flow control. */
void ring_set_active(struct ring *r, u32 c, bool active);

/* Checks that mem holds a ring of this shape (a restarted worker attaching again). */
struct ring *ring_attach(void *mem, u32 capacity, u32 slot_size);

u32 ring_slot_size(const struct ring *r);
u32 ring_capacity(const struct ring *r);

/* Producer. The payload pointer is valid until ring_publish. ring_head is the position the
 * next published entry gets (a restarted producer resumes its numbering from it). */
u64 ring_head(const struct ring *r);
void *ring_claim(struct ring *r);
void ring_publish(struct ring *r, u32 len);
/* Publishes without waking anyone; call ring_notify once after a batch of them. */
void ring_publish_quiet(struct ring *r, u32 len);
void ring_notify(struct ring *r);

/* Consumer c. *payload and *len (OUT) are valid until ring_release_at. */
enum ring_status ring_peek_at(struct ring *r, u32 c, const void **payload, u32 *len);
void ring_release_at(struct ring *r, u32 c);
bool ring_has(struct ring *r, u32 c); /* something published that c has not read */
u64 ring_tail(const struct ring *r, u32 c);
/* Consumer 0 (the only one of most rings). */
enum ring_status ring_peek(struct ring *r, const void **payload, u32 *len);
void ring_release(struct ring *r);

/*
 * Consumer 0: blocks on its doorbell (futex) until something is published or timeout_ms passes (< 0: no limit). Returns
 * true if an entry is available. Drain everything available after each wake-up: a cross-core
 * wake-up costs tens of microseconds on this VM.
 */
bool ring_wait(struct ring *r, int timeout_ms);

/* Entries published and not yet released by the slowest active consumer (a snapshot; any
 * party may call it). */
u64 ring_depth(const struct ring *r);

#endif
