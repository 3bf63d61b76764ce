/*
 * supervisor/segment.h — the one MAP_SHARED segment the supervisor creates before forking the
 * workers: a stamped header, the worker table, per-worker counters, doorbells, the rings and the
 * shared log.
 *
 *   header       magic, layout signature, total size, supervisor pid, generation, flags
 *   workers      one cache line per role: pid, generation, state, heartbeat, restarts, exit
 *   counters     one block per writer (sequencer, applier, ingress), each on its own lines
 *   doorbells    one per consuming worker: sequencer and applier futex, ingress eventfd
 *   rings        write, read, retry, expire, result, reject (supervisor/msg.h) and the shared log
 *
 * NOTES
 *   Size first, then build (PostgreSQL's CalculateShmemSize): segment_layout() asks every part
 *   for its size from the config (overflow-checked), segment_create() maps the total once and
 *   initialises each part. Nothing in it is resized later.
 *   The layout signature folds in the struct sizes and the cache line, so a different build
 *   refuses to attach (LMDB's MDB_LOCK_FORMAT).
 *   Ownership: every word has one writer. The supervisor writes the header, the worker table's
 *   pid/generation/state/restarts/exit fields and nothing else; it only reads heartbeats and
 *   counters (it stays out of the shared state, like the postmaster). Each worker writes its
 *   own heartbeat and counter block and the ring positions it owns.
 *   Pointers inside the segment are valid in every worker: the mapping is inherited by fork at
 *   the same address. Rings keep doorbells as offsets anyway.
 */
#ifndef ADB_SUPERVISOR_SEGMENT_H
#define ADB_SUPERVISOR_SEGMENT_H

#include "common/types.h"
#include "supervisor/config.h"
#include "supervisor/doorbell.h"
#include "supervisor/msg.h"
#include "supervisor/ring.h"
#include "wal/frame.h"
#include "wal/command.h"
#include "wal/slot_clock.h"
#include "replica/vsr_message.h"

#include <stdatomic.h>

#define SEGMENT_MAGIC 0x31304d4853424441ull /* "ADBSHM01" */

enum worker_role {
    ROLE_SEQUENCER = 0,
    ROLE_APPLIER = 1,
    ROLE_INGRESS = 2,
    ROLE_PEER = 3, /* replication: not started on a single node; its slot and cursor wait */
};
#define ROLE_COUNT 4

const char *worker_role_name(enum worker_role r);

enum worker_state {
    WORKER_EMPTY = 0,    /* never started (or not used: the peer on a single node) */
    WORKER_STARTING = 1, /* forked, recovering */
    WORKER_READY = 2,    /* serving (set by the worker) */
    WORKER_STOPPING = 3, /* asked to stop */
    WORKER_EXITED = 4,   /* reaped; waiting to be restarted or the daemon is stopping */
};

const char *worker_state_name(enum worker_state s);

/* Each word has one writer: (S) the supervisor, (W) the worker of the slot. */
struct worker_slot {
    _Atomic i32 pid;          /* S */
    _Atomic u32 generation;   /* S: bumped at every fork of this role */
    _Atomic u32 state;        /* S: enum worker_state (ready once the worker says so, below) */
    _Atomic u32 restarts;     /* S */
    _Atomic i32 last_exit;    /* S: raw wait status of the previous instance */
    _Atomic u64 heartbeat_ms; /* W: CLOCK_MONOTONIC ms */
    _Atomic u64 started_ms;   /* S: when it was forked (a heartbeat older than this is the last instance's) */
    _Atomic u64 ready_ms;     /* W */
    _Atomic u32 ready_generation; /* W: its generation, stored (release) once it is ready */
} __attribute__((aligned(64)));

#define HIST_BUCKETS 24 /* log2 buckets: bucket i counts values in [2^(i-1), 2^i) (0: value 0) */

struct seg_histogram {
    _Atomic u64 bucket[HIST_BUCKETS];
    _Atomic u64 count, sum, max;
};

void seg_histogram_add(struct seg_histogram *h, u64 v); /* one writer */

/* Written by the sequencer only. */
struct seg_sequencer {
    _Atomic u64 durable_lsn;   /* last LSN on disk (fsynced); the applier applies up to it */
    _Atomic u64 sequenced_lsn; /* last LSN assigned (may not be durable yet) */
    _Atomic u64 published_lsn; /* last LSN put in the shared log */
    _Atomic u64 last_slot;     /* request slot of the last entry */
    _Atomic u64 fsyncs;
    _Atomic u64 writes;        /* client commands logged */
    _Atomic u64 expires_logged;
    _Atomic u64 retries_answered; /* retries sent to the applier without a new frame */
    _Atomic u64 rejected[8];   /* by enum proto_reject */
    _Atomic u32 halted;        /* storage failure: nothing more is written until restart */
    _Atomic u64 wal_segments_removed;
    _Atomic u64 cluster_id_lo, cluster_id_hi; /* from the replica metadata, set at start */
    _Atomic u64 replica_id;
    _Atomic u64 recovery_frames;   /* WAL frames read at the last start (after the newest snapshot) */
    _Atomic u64 recovery_ms;
    _Atomic u32 recovery_torn;     /* a torn tail was truncated */
    _Atomic u32 recovery_damaged;  /* damaged regions below the snapshot passed over at start */
    _Atomic u64 recovery_damage_lsn;
    /* The slot timeline (wal/slot_clock.h), decided by the first sequencer of this daemon and
     * published before its first READY: logical ms = clock_logical0_ms + (CLOCK_BOOTTIME ms -
     * clock_boot0_ms). A restarted sequencer and the applier join it. */
    _Atomic u64 clock_logical0_ms, clock_boot0_ms;
    _Atomic u32 clock_basis;       /* enum slot_clock_basis of that start */
    _Atomic u32 ever_ready;        /* a sequencer of this daemon has been ready */
    _Atomic u32 no_space;          /* the disk is full: 1 the spare cannot grow, 2 writes refused */
    _Atomic u64 meta_failures;     /* replica metadata writes that failed */
    _Atomic u32 meta_failing;      /* the last one failed (retried with backoff) */
    /* A cluster: the state transfer last installed the state after this entry (image-<lsn>.img,
     * replica/image.h) and the WAL restarted after it; an applier behind it reloads. */
    _Atomic u64 base_lsn;
    _Atomic u64 images_built;      /* images built to serve, and failed builds or checks */
    _Atomic u64 image_build_failures;
    _Atomic u64 images_installed;  /* state transfers this replica installed */
    _Atomic u64 image_bytes;       /* size of the image served (0: none) */
    _Atomic u64 image_lsn;         /* and its entry */
    struct seg_histogram fsync_us; /* fsync latency */
    struct seg_histogram batch;    /* entries per fsync */
} __attribute__((aligned(64)));

/* Written by the applier only. */
struct seg_applier {
    _Atomic u64 applied_lsn;
    _Atomic u64 current_slot;
    _Atomic u64 snapshot_lsn;     /* newest durable snapshot */
    _Atomic u64 prune_below_lsn;  /* the sequencer may remove WAL segments wholly below it */
    _Atomic u64 snapshots_written;
    _Atomic u64 snapshot_failures; /* snapshot attempts that failed */
    _Atomic u64 snapshots_rejected; /* newer snapshots that failed validation at a recovery */
    _Atomic u64 snapshot_rejected_lsn; /* the newest of them (0: none) */
    _Atomic u32 snapshot_failing;  /* the last one failed (retried with backoff) */
    _Atomic u64 recovery_kind;    /* enum recovery_kind of the last start */
    _Atomic u64 recovery_frames;
    _Atomic u64 recovery_ms;
    _Atomic u64 results[SM_RESULT_COUNT];     /* committed results by code */
    _Atomic u64 commands[SM_CMD_KIND_MAX + 1]; /* applied entries by kind */
    _Atomic u64 expirations_proposed;
    _Atomic u64 expiration_backlog; /* reserved reservations past their deadline */
    _Atomic u64 reads;
    _Atomic u32 resources_used, reservations_used, operations_used, expirations_used;
    _Atomic u32 resource_capacity, reservation_capacity, operation_capacity, expiration_capacity;
    /* Read index (a cluster): every read taken is numbered; the sequencer answers with rounds. */
    _Atomic u64 reads_wanted; /* the number of the last read that waits for a round */
    _Atomic u64 reads_held;   /* reads waiting now (a round, or the applier to reach the index) */
} __attribute__((aligned(64)));

/* The replica's place in its cluster, written by the sequencer only (whose process runs the
 * replication core, replica/vsr.h). A single node: replica_count 1, always serving. */
struct seg_replica {
    _Atomic u32 replica_count, replica;
    _Atomic u32 status;     /* enum vsr_status */
    _Atomic u32 serving;    /* 1: the serving primary: writes and reads are taken */
    _Atomic u32 primary;    /* the primary of view */
    _Atomic u32 recovering; /* formatted by `recover` and not yet caught up */
    _Atomic u32 clock_synced; /* a quorum's clocks agree (cluster_ms valid) */
    _Atomic u64 view, log_view, commit_lsn, op_lsn;
    _Atomic u64 cluster_ms;
    _Atomic u64 expire_slot; /* deadlines before it may expire now (cluster time less its error) */
    /* Read index: the last read number (seg_applier.reads_wanted) a confirmed round covers and
     * the index it is served at (stored before it); reads up to failed_for lost their view. */
    _Atomic u64 read_ready_for, read_index, read_failed_for;
    /* Per replica: the last LSN its WAL holds as it told us, and when we last heard from it
     * (CLOCK_MONOTONIC ms, 0: never). */
    _Atomic u64 peer_op[VSR_REPLICAS_MAX];
    _Atomic u64 peer_seen_ms[VSR_REPLICAS_MAX];
    /* The core's counters (replica/vsr.h struct vsr_counters), copied after every event. */
    _Atomic u64 view_changes, prepares_sent, prepares_resent, prepare_oks;
    _Atomic u64 repairs_requested, repairs_served, repairs_appended, truncations, truncated_entries;
    _Atomic u64 dropped_decode, dropped_cluster, dropped_replica, dropped_view, dropped_status;
    _Atomic u64 read_rounds, clock_unsynced_refusals, transfers_started, transfers_installed;
    _Atomic u64 transfers_abandoned, transfer_failures, chunks_served, chunks_received;
    _Atomic u64 recoveries, persist_failures;
    _Atomic u64 messages_in, messages_out, messages_out_dropped; /* through the peer rings */
    _Atomic u64 read_round_us_sum, read_round_us_count; /* from a round's request to its confirmation */
    _Atomic u64 not_primary; /* writes answered not_primary by the sequencer */
} __attribute__((aligned(64)));

/* Written by the peer worker only (its transport's counters, net/peer.h). */
struct seg_peer {
    _Atomic u32 connected; /* bit r: replica r's connection passed its handshake */
    _Atomic u64 msgs_sent[VSR_REPLICAS_MAX], msgs_received[VSR_REPLICAS_MAX];
    _Atomic u64 bytes_sent[VSR_REPLICAS_MAX], bytes_received[VSR_REPLICAS_MAX];
    _Atomic u64 connects[VSR_REPLICAS_MAX], disconnects[VSR_REPLICAS_MAX];
    _Atomic u64 dropped_queue_full, dropped_not_connected, dropped_bad, dropped_blocked;
    _Atomic u64 dropped_inbound_full; /* received while the peer_in ring was full */
    _Atomic u32 blocked_out, blocked_in; /* bit r: the test hook cut replica r (allocdb-cluster isolate) */
} __attribute__((aligned(64)));

/* Written by the ingress only. */
struct seg_ingress {
    _Atomic u64 connections;       /* open now */
    _Atomic u64 connections_total; /* accepted since start */
    _Atomic u64 connections_refused;
    _Atomic u64 connections_evicted; /* idle ones closed to make room for a new client */
    _Atomic u64 requests;          /* frames received */
    _Atomic u64 commands;          /* commands submitted */
    _Atomic u64 bad_frames;        /* closed for a malformed/oversize/bad-checksum frame */
    _Atomic u64 timeouts;          /* writes answered indefinite by timeout */
    _Atomic u64 inflight;          /* pending requests now */
    _Atomic u64 overloaded;        /* requests refused for lack of room */
} __attribute__((aligned(64)));

struct segment_header {
    u64 magic;
    u64 layout_signature;
    u64 total_size;
    _Atomic i32 supervisor_pid;
    _Atomic u32 shutting_down; /* set by the supervisor on SIGTERM: stop accepting, drain */
    _Atomic u64 generation;    /* bumped at every worker fork (any role) */
    u64 started_wall_ms;
    u64 started_mono_ms;       /* uptime is measured on this, not on the wall clock */
    u32 ring_capacity;
    u32 shared_log_capacity;
    /* Config every client report must state (DESIGN.md §2: the dedupe trade-off). */
    u64 slot_duration_ms;
    u64 dedupe_window_ms;
    u64 max_ttl_ms;
    u32 operation_capacity;
    u32 reservation_capacity;
    u64 history_window_ms;
    /* Fault hook (tests, allocdb-cluster isolate): set by the admin endpoint, read by the peer
     * worker: bit r cuts replica r in both directions. */
    _Atomic u32 peer_block;
    /* Fault hook (tests): the sequencer kills itself during its next state-transfer install,
     * after step N of wal/sequencer_image.c's order (1..4; 0: never). */
    _Atomic u32 install_crash;
    u32 fault_hooks; /* the config's: the admin endpoint takes fault requests */
} __attribute__((aligned(64)));

/* One entry of the shared log: a WAL frame exactly as written to disk, plus the tag of the
 * request it answers (not on disk; MSG_TAG_VALID unset for entries read back from the WAL). */
struct shlog_entry {
    struct msg_tag tag;
    u32 frame_len;
    u8 frame[WAL_FRAME_HEADER_SIZE + WAL_CMD_SIZE_MAX];
};

/* A replication message between the sequencer (the core) and the peer worker (the transport):
 * peer_in carries received ones (replica: the sender), peer_out ones to send (the recipient). */
struct msg_peer {
    u8 replica;
    u8 pad[3];
    u32 len;
    u8 bytes[VSR_MESSAGE_MAX];
};

/* Consumer cursors of the shared log. */
#define SHLOG_APPLIER 0
#define SHLOG_PEER 1

/* Process-local handle; built by segment_create, inherited by fork. */
struct segment {
    void *base;
    u64 size;
    struct segment_header *hdr;
    struct worker_slot *workers; /* [ROLE_COUNT] */
    struct seg_sequencer *seq;
    struct seg_applier *app;
    struct seg_ingress *ing;
    struct seg_replica *rep;
    struct seg_peer *peer;
    struct doorbell *bell_sequencer, *bell_applier, *bell_ingress, *bell_peer;
    struct ring *write;   /* ingress -> sequencer: msg_write */
    struct ring *read;    /* ingress -> applier: msg_read */
    struct ring *retry;   /* sequencer -> applier: msg_retry */
    struct ring *expire;  /* applier -> sequencer: msg_expire */
    struct ring *result;  /* applier -> ingress: msg_result */
    struct ring *reject;  /* sequencer -> ingress: msg_result */
    struct ring *shlog;   /* sequencer -> applier (+ peer): shlog_entry */
    struct ring *peer_in;  /* peer -> sequencer: msg_peer received */
    struct ring *peer_out; /* sequencer -> peer: msg_peer to send */
    int ingress_eventfd;
    int peer_eventfd;
};

struct segment_layout {
    u64 header, workers, counters, doorbells;
    u64 write, read, retry, expire, result, reject, shlog, peer_in, peer_out;
    u64 total;
};

/* Sizes every part from the config. false (with a reason) if a ring shape is invalid or the
 * total overflows. */
bool segment_layout(const struct config *cfg, struct segment_layout *out, char *why, size_t why_len);

/* Maps and initialises the segment (supervisor, before forking). Creates the ingress eventfd.
 * 0 or a negative errno with a reason. */
int segment_create(struct segment *seg, const struct config *cfg, char *why, size_t why_len);
void segment_destroy(struct segment *seg);

/* Checks the header stamp (a worker, before touching anything else). */
bool segment_check(const struct segment *seg, char *why, size_t why_len);

u64 segment_layout_signature(void);

/* CLOCK_MONOTONIC, CLOCK_REALTIME and CLOCK_BOOTTIME in ms (the I/O shells' clocks; the cores
 * read none), the kernel's boot id, and the three readings a slot clock takes. */
u64 mono_ms(void);
u64 wall_ms(void);
u64 boot_ms(void);
u128 boot_id(void);
struct clock_reading clock_read(void);

#endif
