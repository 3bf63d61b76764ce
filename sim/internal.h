/*
 * sim/internal.h — what sim/replica.c (a replica's shell) and sim/cluster.c (the world: network,
 * clients, faults, checks) share. Not an interface for anyone else.
 */
#ifndef ADB_SIM_INTERNAL_H
#define ADB_SIM_INTERNAL_H

#include "common/types.h"
#include "replica/applying.h"
#include "replica/retry_cache.h"
#include "replica/sm.h"
#include "replica/vsr.h"
#include "sim/network.h"
#include "sim/prng.h"
#include "sim/sim.h"
#include "tests/io_fault.h"
#include "wal/frame.h"
#include "wal/sequencing.h"
#include "wal/slot_clock.h"

#define SIM_REPLICAS_MAX 5
#define SIM_CLIENTS_MAX 8
#define SIM_SLOT_MS 100           /* short slots: expirations happen within a run */
#define SIM_EPOCH_MS 1800000000000ull /* the simulated wall clock's start (2027) */
#define SIM_PENDING_MAX 64
#define SIM_BATCH_MAX 512
#define SIM_DUE_MAX 32
#define SIM_LSN_CAP 65536         /* committed entries a run may reach */
#define SIM_OPS_PER_CLIENT 8192
#define SIM_RESOURCES 16
#define SIM_SHARED_LOG 4096       /* durable frames kept in memory for the applier */

/* Client <-> replica messages (not the wire protocol: the ingress is a daemon shell). */
enum sim_msg_type {
    SIM_REQ_WRITE = 1,
    SIM_REQ_READ,
    SIM_REP_COMMITTED,
    SIM_REP_NOT_PRIMARY,
    SIM_REP_BUSY,
    SIM_REP_READ,
};

#define SIM_MSG_MAGIC 0x4d495341u /* "ASIM": never a replication message's magic */

struct sim_msg {
    u32 magic;
    u32 type;
    u64 attempt; /* the client's attempt number, echoed */
    u64 view;
    u64 served_lsn;
    struct sm_command cmd;
    struct sm_outcome out;
    struct sm_resource_view res;
    u32 read_status; /* enum sm_read */
};

struct sim_pending {
    bool used;
    u8 kind;      /* 1 write waiting for its LSN, 2 retry waiting, 3 read */
    u32 client;   /* node */
    u64 attempt;
    struct sm_command cmd;
    u64 lsn;
    u64 ticket, index;
};

struct sim_world;

/* A durable frame as the daemon's shared log holds it (the applier reads these, not the disk). */
struct sim_logged {
    u64 lsn; /* 0: empty */
    u32 len;
    u8 bytes[WAL_FRAME_MAX];
};

struct sim_replica {
    struct sim_world *w;
    u8 id;
    bool up;
    bool faulted;          /* its disk cannot be opened: wiped and recovered later */
    u64 disk_lost_ns;      /* when it last lost its disk (wiped) */
    u64 down_until_ns;     /* when to restart (down) */
    u64 paused_until_ns;
    struct io_fault *disk;
    /* durable metadata (the daemon keeps it in LMDB) */
    struct vsr_durable meta;
    u64 meta_commit;
    struct vsr_entry_header base;       /* the entry a state transfer restarted the WAL after (0: none) */
    struct vsr_entry_header installing; /* an install under way: its entry (0: none) */
    struct clock_anchor anchor;
    bool anchor_set;
    /* clocks */
    i64 wall_offset_ms;
    u64 boot_ns;           /* simulated time at this boot */
    u128 boot_id;
    /* volatile: rebuilt at every start */
    struct sequencing seq;
    struct retry_cache cache;
    void *cache_mem;
    struct sequencing_frame *batch;
    struct vsr vsr;
    sm_t sm;
    bool sm_made;
    struct applying applying;
    struct sm_due due[SIM_DUE_MAX];
    u64 applied;
    u64 commit_target;
    u64 expire_barrier;    /* proposals wait until this LSN is applied */
    struct sim_pending pending[SIM_PENDING_MAX];
    struct sim_logged *shared_log; /* SIM_SHARED_LOG, by LSN */
    /* State transfer: the image this replica serves (made at its last checkpoint: the header
     * of the entry, then the snapshot image) and one being received. */
    u8 *image;
    struct vsr_image image_at;
    u8 *rx;
    u64 rx_cap;
    bool dead;             /* a storage failure: crash at the end of the event */
    bool started;          /* ran before (a restart is not a fresh start) */
};

/* ---- sim/replica.c ---- */
void sim_replica_format(struct sim_replica *r, struct sim_world *w, u8 id, u64 seed);
/* Starts (or restarts) the replica from its disk and metadata; false if it cannot open. */
bool sim_replica_start(struct sim_replica *r);
/* Process death: volatile state gone (the disk's fate is the caller's: io_fault). */
void sim_replica_stop(struct sim_replica *r);
void sim_replica_destroy(struct sim_replica *r);
/* The disk is lost: a new one, formatted, and metadata that says recovering (`recover`). */
void sim_replica_wipe(struct sim_replica *r, u64 seed);
void sim_replica_tick(struct sim_replica *r);
/* Bit rot: flips one bit of the WAL's synced bytes; false if there were none. */
bool sim_replica_bitrot(struct sim_replica *r, struct prng *p);
void sim_replica_receive(struct sim_replica *r, u32 from, const u8 *bytes, u32 len);
u64 sim_replica_clock_ms(const struct sim_replica *r);
struct vsr_time sim_replica_time(const struct sim_replica *r);

/* ---- sim/cluster.c: what replicas report to the world ---- */
u64 sim_now(const struct sim_world *w);
struct sim_net *sim_network(struct sim_world *w);
/* Client connections: lost or delayed, never duplicated or replayed (TCP). */
struct sim_net *sim_client_network(struct sim_world *w);
u32 sim_replica_count(const struct sim_world *w);
struct vsr_config sim_vsr_config(const struct sim_world *w, u8 id);
const struct sm_config *sim_sm_config(const struct sim_world *w);
bool sim_persist_fault(struct sim_world *w);
/* Segment size of the replicas' WALs, and how many applied entries between checkpoints. */
u64 sim_segment_bytes(const struct sim_world *w);
u64 sim_checkpoint_every(const struct sim_world *w);
void sim_count_checkpoint(struct sim_world *w);
/* A disk is destroyed: its bad-disk counts go into the run's. */
void sim_count_disk(struct sim_world *w, struct io_fault *disk);
/* What a replica's protocol core counted in one incarnation (at its stop, and at the end). */
void sim_count_protocol(struct sim_world *w, const struct vsr_counters *c);
/* A replica's state machine after entry lsn has this digest (a checkpoint, an installed image,
 * a recovery): every replica's must be the same. */
void sim_check_state(struct sim_world *w, u8 replica, u64 lsn, const sm_t *sm, const char *what);
/* A replica applied entry lsn (frame bytes) with this result: checked against the others and
 * the model. */
void sim_check_apply(struct sim_world *w, u8 replica, const u8 *frame, u32 len,
                     const struct applying_result *res);
/* A primary sequenced this frame now (for the early-expiry check). */
void sim_note_sequenced(struct sim_world *w, const u8 *frame, u32 len);
void sim_fail(struct sim_world *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sim_trace(struct sim_world *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
