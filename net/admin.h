/*
 * net/admin.h — the admin HTTP endpoint (/metrics, /status, /health) on the ingress's event
 * base (net/admin.c).
 */
#ifndef ADB_NET_ADMIN_H
#define ADB_NET_ADMIN_H

#include "supervisor/segment.h"

#include <event2/event.h>
#include <event2/http.h>

/* Serves the admin socket fd (listening, inherited from the supervisor) on base; NULL if
 * fd < 0 or on failure. Free with evhttp_free: it closes this process's copy of fd only. */
struct evhttp *admin_start(struct event_base *base, int fd, struct segment *seg);

#endif
