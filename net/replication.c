/*
 * net/replication.c — the peer worker's loop (net/replication.h): transport in, core, transport
 * out, with the time read here. The core's environment is wrapped so that its send goes to the
 * transport and everything else to the caller's storage, with the caller's context.
 */
#include "config.h"

#include "net/replication.h"

#include "common/assert.h"
#include "common/why.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct replication {
    struct vsr core; /* first: the environment's context is the loop */
    struct vsr_env storage;
    struct replication_clock clock;
    struct peer_link *link;
    struct event *tick;
    u64 tick_ms;
    bool started;
};

static struct vsr_time now(const struct replication *r)
{
    return (struct vsr_time){ .mono_ns = r->clock.mono_ns(r->clock.ctx), .clock_ms = r->clock.clock_ms(r->clock.ctx) };
}

/* ---- the core's environment: send to the transport, the rest to storage -------------------- */

static void env_send(void *ctx, u8 to, const u8 *msg, u32 len)
{
    struct replication *r = ctx;
    peer_link_send(r->link, to, msg, len);
}

static int env_persist(void *ctx, const struct vsr_durable *d)
{
    struct replication *r = ctx;
    return r->storage.persist(r->storage.ctx, d);
}

static int env_append(void *ctx, const u8 *frame, u32 len)
{
    struct replication *r = ctx;
    return r->storage.append(r->storage.ctx, frame, len);
}

static int env_truncate(void *ctx, u64 after_lsn)
{
    struct replication *r = ctx;
    return r->storage.truncate(r->storage.ctx, after_lsn);
}

static int env_read(void *ctx, u64 lsn, u8 *buf, u32 cap, u32 *len)
{
    struct replication *r = ctx;
    return r->storage.read(r->storage.ctx, lsn, buf, cap, len);
}

static void env_commit(void *ctx, u64 commit)
{
    struct replication *r = ctx;
    r->storage.commit(r->storage.ctx, commit);
}

static int env_image_read(void *ctx, u64 offset, u8 *buf, u32 cap, u32 *len, struct vsr_image *img)
{
    struct replication *r = ctx;
    return r->storage.image_read(r->storage.ctx, offset, buf, cap, len, img);
}

static int env_image_write(void *ctx, const struct vsr_image *img, u64 offset, const u8 *bytes, u32 len)
{
    struct replication *r = ctx;
    return r->storage.image_write(r->storage.ctx, img, offset, bytes, len);
}

static int env_image_install(void *ctx, const struct vsr_image *img, struct vsr_entry_header *at)
{
    struct replication *r = ctx;
    return r->storage.image_install(r->storage.ctx, img, at);
}

/* ---- events --------------------------------------------------------------------------------- */

static void on_message(void *ctx, u8 from, const u8 *msg, u32 len)
{
    struct replication *r = ctx;
    (void)from; /* the transport checked it is the message's sender */
    vsr_on_message(&r->core, now(r), msg, len);
}

static void on_tick(evutil_socket_t fd, short what, void *ctx)
{
    (void)fd;
    (void)what;
    struct replication *r = ctx;
    vsr_tick(&r->core, now(r));
}

/* ---- public --------------------------------------------------------------------------------- */

int replication_create(struct event_base *base, const struct replication_config *cfg,
                       const struct vsr_env *storage, const struct replication_clock *clock, int listen_fd,
                       struct replication **out, char *why, size_t why_len)
{
    *out = NULL;
    if (cfg->vsr.cluster_id != cfg->peer.cluster_id || cfg->vsr.replica != cfg->peer.replica ||
        cfg->vsr.replica_count != cfg->peer.replica_count || cfg->vsr.replica_count < 2 ||
        cfg->vsr.replica >= cfg->vsr.replica_count || cfg->tick_ms == 0) {
        why_set(why, why_len, "replication: the core's and the transport's configs disagree, or a cluster of "
                "%u replicas, or no tick", (unsigned)cfg->vsr.replica_count);
        return -EINVAL;
    }
    struct replication *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        why_set(why, why_len, "replication: out of memory");
        return -ENOMEM;
    }
    r->storage = *storage;
    r->clock = *clock;
    r->tick_ms = cfg->tick_ms;
    r->tick = event_new(base, -1, EV_PERSIST, on_tick, r);
    if (r->tick == NULL) {
        free(r);
        why_set(why, why_len, "replication: event_new failed");
        return -ENOMEM;
    }
    int rc = peer_link_create(base, &cfg->peer, listen_fd, on_message, r, &r->link, why, why_len);
    if (rc != 0) {
        event_free(r->tick);
        free(r);
        return rc;
    }
    const struct vsr_env env = { .ctx = r, .send = env_send, .persist = env_persist, .append = env_append,
                                 .truncate = env_truncate, .read = env_read, .commit = env_commit,
                                 .image_read = env_image_read, .image_write = env_image_write,
                                 .image_install = env_image_install };
    vsr_init(&r->core, &cfg->vsr, &env);
    *out = r;
    return 0;
}

struct vsr *replication_core(struct replication *r)
{
    return &r->core;
}

struct peer_link *replication_link(struct replication *r)
{
    return r->link;
}

void replication_start(struct replication *r, const struct vsr_start *s)
{
    ADB_ASSERT(!r->started);
    r->started = true;
    vsr_start(&r->core, s, now(r));
    struct timeval tv = { .tv_sec = (time_t)(r->tick_ms / 1000), .tv_usec = (suseconds_t)(r->tick_ms % 1000 * 1000) };
    event_add(r->tick, &tv);
    vsr_tick(&r->core, now(r));
}

void replication_durable(struct replication *r, u64 lsn)
{
    ADB_ASSERT(r->started);
    vsr_on_durable(&r->core, now(r), lsn);
}

void replication_sequenced(struct replication *r, const u8 *frame, u32 len)
{
    ADB_ASSERT(r->started);
    vsr_on_sequenced(&r->core, now(r), frame, len);
}

u32 replication_prepare_room(struct replication *r)
{
    return r->started ? vsr_prepare_room(&r->core, now(r)) : 0;
}

void replication_destroy(struct replication *r)
{
    if (r == NULL)
        return;
    event_free(r->tick);
    peer_link_destroy(r->link);
    free(r);
}
