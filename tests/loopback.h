/*
 * tests/loopback.h — for tests of event-loop code over 127.0.0.1 (net/peer, net/replication): a
 * listening socket at a port the kernel picks, one short turn of a libevent loop, and running
 * the loop until a condition holds. Failures are check assertions.
 */
#ifndef ADB_TESTS_LOOPBACK_H
#define ADB_TESTS_LOOPBACK_H

#include "common/types.h"

#include <event2/event.h>
#include <sys/socket.h>

/* CLOCK_MONOTONIC in ms. */
u64 loopback_now_ms(void);

/* One short turn of the loop (about a millisecond). */
void loopback_spin(struct event_base *base);

/* Runs base until cond holds or ms pass; the caller asserts cond afterwards. */
#define LOOPBACK_RUN_UNTIL(base, cond, ms)                                                         \
    for (u64 dl_ = loopback_now_ms() + (ms); !(cond) && loopback_now_ms() < dl_;)                  \
    loopback_spin(base)

/* A socket listening on 127.0.0.1 at a free port, its address in *addr and *addr_len.
 * rcvbuf > 0: SO_RCVBUF before listen (accepted sockets inherit it, and the TCP window). */
int loopback_listener(int rcvbuf, struct sockaddr_storage *addr, socklen_t *addr_len);

#endif
