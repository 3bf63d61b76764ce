/*
 * supervisor/doorbell.h — how an idle worker sleeps and how a producer wakes it.
 *
 * A doorbell is one word in shared memory per sleeping consumer (a worker may consume several
 * rings and sleeps on one doorbell for all of them). The consumer announces that it is about to
 * sleep by setting `sleeping`, issues a full fence, re-checks every input, and only then blocks;
 * a producer publishes (release store of its head), issues a full fence, and wakes only if the
 * word is set. With both fences (F1 in doorbell_ring, F2 in doorbell_arm) at least one side sees
 * the other's store, so a wake-up is never lost, and a busy consumer costs a producer one fence
 * and no system call per message (liburing's sq_ring_needs_enter has the same shape).
 *
 * Two ways to block:
 *   futex   (eventfd < 0): doorbell_sleep waits on the word itself (FUTEX_WAIT, shared).
 *   eventfd (eventfd >= 0): the producer writes the eventfd; the consumer's event loop (the
 *           ingress's libevent base) watches it. The descriptor is created by the supervisor
 *           before fork, so it has the same number in every worker.
 *
 * Waking costs tens of microseconds across cores on this VM: consumers drain everything
 * available per wake-up.
 */
#ifndef ADB_SUPERVISOR_DOORBELL_H
#define ADB_SUPERVISOR_DOORBELL_H

#include "common/types.h"

#include <stdatomic.h>

struct doorbell {
    _Atomic u32 sleeping; /* 1 while the consumer is (about to be) blocked */
    i32 eventfd;          /* -1: futex on `sleeping` */
    _Atomic u64 wakeups;  /* system calls made to wake it (a metric) */
};

void doorbell_init(struct doorbell *d, int eventfd);

/* Producer, after its release store: F1, then wake the consumer if it sleeps. */
void doorbell_ring(struct doorbell *d);
/* Same without the fence, for a producer that already fenced (several doorbells at once). */
void doorbell_ring_fenced(struct doorbell *d);

/* Consumer: set `sleeping`, then F2. Re-check every input after this; if anything is there,
 * doorbell_disarm and process it, else doorbell_sleep (futex) or return to the event loop
 * (eventfd). */
void doorbell_arm(struct doorbell *d);
void doorbell_disarm(struct doorbell *d);

/* Futex doorbells: blocks while armed, until woken, a signal or timeout_ms (< 0: no limit),
 * then disarms. */
void doorbell_sleep(struct doorbell *d, int timeout_ms);

/* Eventfd doorbells: consumes pending wake-ups (non-blocking read) and disarms. */
void doorbell_drain(struct doorbell *d);

#endif
