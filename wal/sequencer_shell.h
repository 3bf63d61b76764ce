/*
 * wal/sequencer_shell.h — what the sequencer worker's two files share: the worker's state and
 * the cluster half (wal/sequencer_cluster.c), which runs the replication core (replica/vsr.h)
 * next to the WAL it drives. Internal to the sequencer: nothing else includes it.
 *
 * Why the core lives with the sequencer, not in the peer worker: every storage action the core
 * takes (append a primary's frame, truncate an uncommitted suffix, read a frame for a peer,
 * learn what is durable) is a call on the WAL, which only the sequencer owns. In this process
 * they stay the synchronous calls the simulator proves (sim/replica.c wires the same three
 * cores the same way); the peer worker is the transport (net/peer.h) and moves messages
 * through two rings of the segment.
 */
#ifndef ADB_WAL_SEQUENCER_SHELL_H
#define ADB_WAL_SEQUENCER_SHELL_H

#include "replica/image.h"
#include "replica/meta.h"
#include "replica/retry_cache.h"
#include "replica/vsr.h"
#include "supervisor/worker.h"
#include "wal/sequencing.h"

#include <pthread.h>

/* A durable frame waiting for the commit point (a cluster), with the request it answers. */
struct seq_pending {
    u64 lsn; /* 0: empty */
    struct msg_tag tag;
    u32 len;
    u8 frame[WAL_FRAME_HEADER_SIZE + WAL_CMD_SIZE_MAX];
};
#define SEQ_PENDING 4096 /* a ring by LSN; a frame pushed out is read back from the WAL */

/* A read-index round under way (replica/vsr.h vsr_read_begin). */
struct seq_round {
    bool active;
    u64 ticket, index;
    u64 covers;   /* the last read number it answers */
    u64 began_ns;
};

/* A job of the image thread (wal/sequencer_image.c): build the image of a snapshot, or check
 * an image file found at start. */
struct image_job {
    pthread_t thread;
    bool adopt;                  /* check image-<at.lsn>.img; else build it */
    struct vsr_entry_header at;  /* build: its header; check: at.lsn, then the file's header */
    struct image_id out;
    int rc;
    char why[512];
    _Atomic bool done;
};

/* State transfer (wal/sequencer_image.c). */
struct seq_images {
    const char *dir;
    struct sm_config smc;
    struct vsr_entry_header base;    /* the WAL restarted after it (metadata), lsn 0: never */
    struct vsr_entry_header snap_at; /* the header of the newest snapshot's entry (lsn 0: unknown) */
    struct image_id served;          /* the image served (lsn 0: none), read through served_fd */
    int served_fd;
    u64 found_lsn;                   /* an image file found at start, to check (0: none) */
    u64 wanted_ns;                   /* a peer last asked for an image */
    bool running;                    /* the job's thread */
    struct image_job job;
    u64 failed_lsn, retry_ns;        /* the last job that failed, and when to try it again */
    int recv_fd;                     /* image-<recv.lsn>.recv, -1: none */
    struct image_id recv;
    u32 recv_crc;                    /* of the chunks received so far */
    u64 recv_started_ns;
};

struct seq_cluster {
    struct vsr core;
    u64 commit;          /* the core's published commit point */
    u64 last_tick_ns;
    bool synced;         /* a quorum's clocks agree (as of this step's receive) */
    u64 cluster_ms;      /* cluster time then (0: none) */
    u64 expire_slot;     /* deadlines before it may expire (0 unless the serving primary) */
    bool serving;        /* as of the last step */
    bool dead;           /* storage failed inside a core call: stop */
    int dead_rc;
    struct seq_round round;
    u64 reads_seen;      /* reads_wanted handled up to */
    u64 pruned_first;    /* the WAL's first LSN told to the core */
    u64 image_lsn;
    struct seq_images img;
    struct seq_pending *pending; /* [SEQ_PENDING] */
};

struct seq {
    const struct worker_ctx *w;
    struct segment *seg;
    struct meta *meta;
    struct retry_cache cache; /* replica/retry_cache.h */
    struct sequencing core;   /* every decision, and the WAL (wal/sequencing.h) */
    struct msg_tag *tags;     /* the requests of the core's batch, by position */
    bool notify_reject, notify_retry;
    struct seq_cluster *cl;   /* NULL: a single node */
};

/* sequencer.c, used by the cluster half. */
void seq_reply(struct seq *q, const struct msg_tag *tag, u8 outcome, u8 code);
u64 mono_ns(void);

/* ---- the cluster half (wal/sequencer_cluster.c) ------------------------------------------ */

/* Memory, opened WAL and metadata record: builds the core, loads the WAL's last headers and
 * starts it, committed up to `committed` (what the metadata and the newest snapshot know).
 * 0 or a worker exit code. */
int seq_cluster_start(struct seq *q, const struct meta_record *rec, u64 wal_head, u64 committed);
/* The time the core is fed. */
struct vsr_time seq_cluster_time(const struct seq *q);
/* Received messages, then the tick when due, then the step's cluster time. */
void seq_cluster_receive(struct seq *q);
/* Entries that may be sequenced now (0 unless the serving primary), with the slot stamping
 * set to cluster time. */
u32 seq_cluster_room(struct seq *q);
/* Whether a due expiration proposed for deadline_slot may be logged now. */
bool seq_cluster_expiry_due(struct seq *q, u64 deadline_slot);
/* A frame the sequencer just appended as primary: shipped to the backups before the fsync, by
 * seq_cluster_ship once the step's frames are all sequenced. */
void seq_cluster_sequenced(struct seq *q, u32 index);
void seq_cluster_ship(struct seq *q);
/* After a commit: the batch's frames wait for the commit point; the core learns what is durable. */
void seq_cluster_durable(struct seq *q, u32 count);
/* Committed frames into the shared log (as much as it has room for), reads, status. 0 or a
 * worker exit code. */
int seq_cluster_step(struct seq *q);
/* The commit point the metadata may record (never past what a quorum committed). */
u64 seq_cluster_commit(const struct seq *q);
/* The core wants a tick within this many ms. */
int seq_cluster_wait_ms(const struct seq *q);
/* A checkpoint pruned the WAL; how far back pruning may go for the peers. */
u64 seq_cluster_prune_floor(const struct seq *q, u64 applier_floor);
void seq_cluster_pruned(struct seq *q, u64 snapshot_lsn);
void seq_cluster_stop(struct seq *q);
/* Answers the request of a window entry indefinite (its entry may be gone or commit later). */
void seq_pending_abandon(struct seq *q, struct seq_pending *p);
/* The header of the WAL's entry lsn, if it holds it intact. */
bool seq_header_at(struct seq *q, u64 lsn, struct vsr_entry_header *h);
/* Storage failed inside a core call: the sequencer stops with rc. */
void seq_storage_dead(struct seq *q, int rc);

/* ---- state transfer (wal/sequencer_image.c) ------------------------------------------------ */

/* At start, before the core: finishes an install a crash cut (or forgets it); the WAL's head and
 * last slot, and rec, follow. 0 or a worker exit code. */
int seq_image_open(struct seq *q, struct meta_record *rec, u64 *wal_head, u64 *last_slot);
void seq_image_init(struct seq *q, const struct meta_record *rec);
/* Builds and checks finished or due. */
void seq_image_step(struct seq *q);
/* The applier's newest snapshot is at snapshot_lsn: its entry's header, while the WAL has it. */
void seq_image_snapshot(struct seq *q, u64 snapshot_lsn);
/* The core's image_read, image_write and image_install (replica/vsr.h). */
int seq_image_read(struct seq *q, u64 offset, u8 *buf, u32 cap, u32 *len, struct vsr_image *img);
int seq_image_write(struct seq *q, const struct vsr_image *img, u64 offset, const u8 *bytes, u32 len);
int seq_image_install(struct seq *q, const struct vsr_image *img, struct vsr_entry_header *at);
void seq_image_stop(struct seq *q);

#endif
