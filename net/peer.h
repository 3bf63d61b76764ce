/*
 * net/peer.h — the peer transport: one TCP connection to each other replica of a cluster, moving
 * replication messages (replica/vsr_message.h: already encoded, self-delimiting) between them
 * on a libevent event_base the caller runs. It decides nothing about the protocol: it is the
 * `send` of the replication core's environment (replica/vsr.h; delivery is not assured) and the
 * source of the messages fed to vsr_on_message. The networking half of the peer worker
 * (DESIGN.md §5, §8).
 *
 * NOTES
 *   One connection per pair: the replica with the lower index dials, the higher one accepts.
 *   So replica 0 only dials, the last one only accepts, and there is never a race between two
 *   connections of the same pair. A new inbound connection from a replica that already has one
 *   replaces it (the old one is probably half-dead: its dialer gave up on it).
 *
 *   Handshake: the first message on a connection, in each direction, is a hello — an ordinary
 *   VSR_PING with every per-command field zero, from the sender's index, with the cluster's id
 *   and replica count. The dialer sends its hello as soon as TCP connects; the acceptor checks
 *   it (it decodes, it is a ping, the cluster id and replica count are ours, the index is below
 *   ours) and answers with its own; the dialer checks that one names the replica it dialed.
 *   A hello is the transport's own and is never delivered to the core (a zeroed ping would tell
 *   it the sender's WAL is empty). The source address is not checked (NAT, multi-homed hosts,
 *   wildcard binds): a replica's identity is its hello, on a network the cluster trusts.
 *   Until both hellos passed a peer is not connected: messages to it are dropped (counted).
 *
 *   Framing: a message is exactly what vsr_message_decode accepts. Complete messages are
 *   delivered as they arrive, partial ones wait in the input buffer (at most two maximum
 *   messages are read ahead). What closes a connection, counted in dropped_bad (or, before a
 *   hello passed, in hello_rejected): bytes that are not a message (bad magic, version, size,
 *   checksum, fields: the stream is out of sync or hostile, nothing after it can be trusted), a
 *   message of another cluster or replica count (a misconfigured or foreign node: nothing it
 *   says is ever useful), a message whose sender is not the replica at the other end, and
 *   silence: nothing received for idle_timeout_ms (replicas ping every tick), or output that
 *   makes no progress for as long.
 *
 *   Backpressure: each peer's output (the bufferevent's output buffer) holds at most
 *   queue_bytes; a message that does not fit is dropped and counted, never queued: the protocol
 *   retransmits what matters, and a slow or stalled peer costs bounded memory. peer_link_send
 *   never blocks and never closes a connection.
 *
 *   Reconnecting (dialer side only): after a failed dial, or a connection that closed, the next
 *   dial waits a backoff that starts at backoff_min_ms and doubles up to backoff_max_ms, each
 *   wait jittered by +-25% (a PRNG seeded from the cluster id and replica index: deterministic).
 *   The backoff starts over once a connection's peer hello passes, so a peer that accepts and
 *   then refuses us (another cluster, another index) is retried ever more slowly.
 *
 *   Memory: the link, its peers, their timers and a small table of inbound connections still
 *   waiting for their hello (PEER_PENDING_MAX; when it is full the oldest is dropped) are
 *   allocated by peer_link_create. Per connection, libevent allocates the bufferevent and its
 *   buffers' chains; nothing else allocates after create.
 *
 *   Threading: none. Every function and every callback runs on the thread that runs the
 *   event_base; callbacks are only called from inside the base's loop, never from a function
 *   of this file called by the caller.
 */
#ifndef ADB_NET_PEER_H
#define ADB_NET_PEER_H

#include "common/types.h"
#include "replica/vsr_message.h"

#include <event2/event.h>

#include <stddef.h>
#include <sys/socket.h>

#define PEER_PENDING_MAX (2 * VSR_REPLICAS_MAX) /* inbound connections before their hello */

struct peer_config {
    u128 cluster_id;
    u8 replica;       /* this replica's index, < replica_count */
    u8 replica_count; /* 1..VSR_REPLICAS_MAX */
    /* Every replica's peer address (AF_INET or AF_INET6), in replica order; addr[replica] is
     * where this one listens (used only when peer_link_create creates the listening socket). */
    struct sockaddr_storage addr[VSR_REPLICAS_MAX];
    socklen_t addr_len[VSR_REPLICAS_MAX];
    u32 queue_bytes;     /* per peer: output bytes queued at most, >= VSR_MESSAGE_MAX */
    u64 backoff_min_ms;  /* reconnect backoff, doubling: >= 1 */
    u64 backoff_max_ms;  /* >= backoff_min_ms */
    u64 idle_timeout_ms; /* nothing received (or no output progress) this long: closed. 0: never */
};

/* Per peer. "Sent" means queued on the connection (what TCP does with it is not known). */
struct peer_counters {
    u64 connects;              /* connections whose handshake passed */
    u64 disconnects;           /* connected connections closed (error, EOF, timeout, replaced, bad) */
    u64 dial_failures;         /* dialer: dials that failed or closed before the peer's hello */
    u64 msgs_sent, bytes_sent;
    u64 msgs_received, bytes_received; /* checked messages (delivered or blocked), hellos excluded */
    u64 dropped_queue_full;    /* send: the message did not fit in queue_bytes */
    u64 dropped_not_connected; /* send: no connected connection */
    u64 dropped_blocked;       /* peer_link_block: sends not queued plus messages not delivered */
    u64 dropped_bad;           /* received: undecodable, foreign or misattributed (and closed) */
    u32 queued_bytes;          /* now: output bytes waiting (<= queue_bytes) */
    bool connected;            /* now: the handshake passed and the connection is open */
};

struct peer_link_counters {
    struct peer_counters peer[VSR_REPLICAS_MAX]; /* [replica] is all zero */
    u64 accepted;        /* inbound TCP connections */
    u64 hello_rejected;  /* inbound connections closed before a valid hello (bad, timeout, EOF, evicted) */
    u64 accept_failures; /* accept() errors other than "nothing to accept" */
};

/* Called for every checked message from replica `from` (never this replica, never a hello).
 * msg (len bytes, one whole message that vsr_message_decode accepts) is valid only during the
 * call. It may call peer_link_send and peer_link_block; it must not destroy the link. */
typedef void (*peer_deliver_fn)(void *ctx, u8 from, const u8 *msg, u32 len);

struct peer_link;

/*
 * Creates the link for cfg on base (copied; base must outlive the link) and starts it: dials
 * every higher replica at once (from the loop, not from this call) and accepts the lower ones.
 * listen_fd: a socket already bound to this replica's address and listening (the supervisor's,
 * so a restarted worker keeps the port); it is made non-blocking and is never closed by the link.
 * Or -1: the link creates one on addr[replica] (SO_REUSEADDR) and closes it at destroy.
 * 0 and *out, or a negative errno and text in why: -EINVAL (cfg invalid), -ENOMEM, or the errno
 * of socket/bind/listen.
 */
int peer_link_create(struct event_base *base, const struct peer_config *cfg, int listen_fd, peer_deliver_fn deliver,
                     void *ctx, struct peer_link **out, char *why, size_t why_len);

/*
 * Queues msg (len bytes: one encoded vsr message, VSR_HEADER_SIZE..VSR_MESSAGE_MAX) for replica
 * `to` (< replica_count, not this one: asserted). Never blocks, never closes: a peer not
 * connected, blocked, or whose output would pass queue_bytes gets nothing, and the drop is
 * counted. The bytes are copied.
 */
void peer_link_send(struct peer_link *l, u8 to, const u8 *msg, u32 len);

/*
 * Test and fault hook: while out, nothing is sent to replica r; while in, nothing received from
 * it is delivered (it is still read and checked, so the stream stays in sync and the connection
 * stays up: a partition, not a crash). Each call sets both directions; (false, false) heals.
 * Hellos are not affected.
 */
void peer_link_block(struct peer_link *l, u8 r, bool out, bool in);

/* The counters as of now. */
void peer_link_counters(const struct peer_link *l, struct peer_link_counters *out);

/* Closes every connection (unsent output is lost), frees the link, and closes the listening
 * socket if the link created it. NULL is a no-op. Not from inside a deliver callback. */
void peer_link_destroy(struct peer_link *l);

#endif
