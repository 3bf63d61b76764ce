/*
 * supervisor/doorbell.c — sleeping and waking across processes (protocol in doorbell.h).
 */

#include "supervisor/doorbell.h"

#include <errno.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

void doorbell_init(struct doorbell *d, int eventfd)
{
    atomic_init(&d->sleeping, 0);
    d->eventfd = eventfd;
    atomic_init(&d->wakeups, 0);
}

void doorbell_ring_fenced(struct doorbell *d)
{
    if (atomic_load_explicit(&d->sleeping, memory_order_relaxed) == 0)
        return;
    /* Exactly one waker makes the call: the exchange clears the word. */
    if (atomic_exchange_explicit(&d->sleeping, 0, memory_order_relaxed) == 0)
        return;
    atomic_fetch_add_explicit(&d->wakeups, 1, memory_order_relaxed);
    if (d->eventfd >= 0) {
        u64 one = 1;
        ssize_t n = write(d->eventfd, &one, sizeof(one)); /* EAGAIN: the counter is already set */
        (void)n;
    } else {
        syscall(SYS_futex, &d->sleeping, FUTEX_WAKE, 1, NULL, NULL, 0); /* shared: not _PRIVATE */
    }
}

void doorbell_ring(struct doorbell *d)
{
    /* F1: orders the caller's release store of its head before our load of `sleeping`; pairs
     * with F2 in doorbell_arm. */
    atomic_thread_fence(memory_order_seq_cst);
    doorbell_ring_fenced(d);
}

void doorbell_arm(struct doorbell *d)
{
    atomic_store_explicit(&d->sleeping, 1, memory_order_relaxed);
    /* F2: our store of `sleeping` before the caller's re-check of the heads; pairs with F1. */
    atomic_thread_fence(memory_order_seq_cst);
}

void doorbell_disarm(struct doorbell *d)
{
    atomic_store_explicit(&d->sleeping, 0, memory_order_relaxed);
}

void doorbell_sleep(struct doorbell *d, int timeout_ms)
{
    struct timespec ts = { .tv_sec = timeout_ms / 1000, .tv_nsec = (long)(timeout_ms % 1000) * 1000000L };
    /* Returns at once if a producer already cleared the word (EAGAIN), on a wake-up, on a
     * signal or at the timeout: the caller re-checks its inputs in every case. */
    syscall(SYS_futex, &d->sleeping, FUTEX_WAIT, 1, timeout_ms >= 0 ? &ts : NULL, NULL, 0);
    doorbell_disarm(d);
}

void doorbell_drain(struct doorbell *d)
{
    u64 n;
    while (d->eventfd >= 0 && read(d->eventfd, &n, sizeof(n)) == (ssize_t)sizeof(n))
        ;
    doorbell_disarm(d);
}
