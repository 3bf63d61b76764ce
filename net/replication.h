/*
 * net/replication.h — the peer worker's loop: the peer transport (net/peer.h) and the
 * replication core (replica/vsr.h) on one libevent event_base (DESIGN.md §5, §8). Messages the
 * transport delivers go to vsr_on_message, a timer drives vsr_tick, and the core's sends go out
 * through the transport. Storage stays the caller's: the core's environment (the WAL, the
 * metadata, images, the commit point) minus send, which this loop provides. What the loop adds
 * is time: every event it feeds the core is stamped with the monotonic clock and this
 * replica's clock, read through the injected clock (the core reads none).
 *
 * NOTES
 *   Order of use: replication_create; vsr_load_entry on replication_core for the WAL's last
 *   entries; replication_start (vsr_start, then the first tick); the caller runs the base.
 *   Storage callbacks are called from inside the core, so they must not call back into this
 *   loop: a write that becomes durable is reported later (replication_durable, from the
 *   caller's own event), as an fsync completes.
 *
 *   Memory: the loop, its core and its transport are allocated by replication_create; nothing
 *   after (the transport's per-connection buffers aside: net/peer.h).
 *
 *   Threading: none; everything runs on the base's thread.
 */
#ifndef ADB_NET_REPLICATION_H
#define ADB_NET_REPLICATION_H

#include "common/types.h"
#include "net/peer.h"
#include "replica/vsr.h"

#include <event2/event.h>

#include <stddef.h>

/* Where the loop reads time: the monotonic clock (ns) and this replica's clock (logical ms, the
 * node's slot timeline: wal/slot_clock.h). */
struct replication_clock {
    void *ctx;
    u64 (*mono_ns)(void *ctx);
    u64 (*clock_ms)(void *ctx);
};

struct replication_config {
    struct vsr_config vsr;   /* cluster_id, replica and replica_count as in peer */
    struct peer_config peer;
    u64 tick_ms;             /* vsr_tick this often, >= 1 (a few ms: timeouts are in tens) */
};

struct replication;

/* Creates the loop on base and its transport (listen_fd: as peer_link_create). storage: the
 * core's environment; its send is not used. 0 and *out, or a negative errno and text in why
 * (-EINVAL for a config whose two halves disagree on the cluster or this replica). */
int replication_create(struct event_base *base, const struct replication_config *cfg,
                       const struct vsr_env *storage, const struct replication_clock *clock, int listen_fd,
                       struct replication **out, char *why, size_t why_len);

/* The core: vsr_load_entry before start; its state for status and tests afterwards (read only). */
struct vsr *replication_core(struct replication *r);
/* The transport: its counters, and its block hook (a partition, for tests). */
struct peer_link *replication_link(struct replication *r);

/* Starts the core from what the disk holds, and the ticks. */
void replication_start(struct replication *r, const struct vsr_start *s);

/* Storage events, stamped with the time: the WAL is durable up to lsn; the sequencer appended
 * this frame (primary); and how many entries it may sequence now (vsr_prepare_room). */
void replication_durable(struct replication *r, u64 lsn);
void replication_sequenced(struct replication *r, const u8 *frame, u32 len);
u32 replication_prepare_room(struct replication *r);

/* Stops the ticks, closes the transport and frees everything. NULL is a no-op. */
void replication_destroy(struct replication *r);

#endif
