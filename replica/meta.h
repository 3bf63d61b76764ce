/*
 * replica/meta.h — durable replica metadata in LMDB (DESIGN.md §6): cluster id, replica id and
 * replica count, current view, last normal view, durable vote, commit point, snapshot anchor,
 * status. LMDB holds nothing else — never allocator state, never the log.
 *
 * Files: DATA_DIR/meta/ (an LMDB environment: data.mdb, lock.mdb), one unnamed database, one
 * key per field, values little-endian fixed width.
 *
 * Invariants (asserted on every write, checked on every open):
 *   - cluster_id, replica_id and replica_count never change after format;
 *     replica_id < replica_count;
 *   - view, last_normal_view and commit_lsn only grow; last_normal_view <= view;
 *     voted_view <= view;
 *   - the snapshot anchor (snapshot_lsn) only grows and is <= commit_lsn... unless 0.
 *   - the pinned settings (pins) are set at format and never change (a format-1 record has
 *     none: its data dir was formatted before they were pinned, and the first start pins them);
 *   - the clock anchor's logical time (clock_logical_ms) only grows.
 *   - the state-transfer base (base.lsn) only grows and is <= commit_lsn; an install under way
 *     (installing.lsn != 0) is above it.
 *   - a faulted status is only cleared by an operator (meta_set_status with force).
 *
 * NOTES
 *   LMDB environments must not cross fork(): open in the process that uses it (a worker),
 *   close before exiting. A meta handle is used by one thread.
 *   Every meta_* call returns 0 or a negative errno with a one-line reason in why.
 */
#ifndef ADB_REPLICA_META_H
#define ADB_REPLICA_META_H

#include "common/types.h"

enum meta_status {
    META_STATUS_NORMAL = 0,
    META_STATUS_RECOVERING = 1,
    META_STATUS_FAULTED = 2, /* no vote, no serve, until an operator repairs it */
};

const char *meta_status_name(enum meta_status s);

/*
 * Settings that change what replay computes (DESIGN.md §3), stored at format so a start with
 * other values is refused instead of silently computing other results. Named as the config keys;
 * all zero: not pinned. expiration_capacity is the effective value (the key's 0 means
 * reservation_capacity).
 */
struct meta_pins {
    u64 slot_duration_ms;
    u64 resource_capacity;
    u64 reservation_capacity;
    u64 operation_capacity;
    u64 expiration_capacity;
    u64 max_ttl_ms;
    u64 dedupe_window_ms;
    u64 history_window_ms;
    u64 wal_segment_bytes; /* not a replay setting, but what format sized the WAL for */
};

/* A point of the node's slot timeline (wal/slot_clock.h): logical ms and the clocks then. */
struct meta_clock {
    u64 logical_ms;
    u64 wall_ms;
    u64 boot_ms;
    u128 boot_id;
};

/* A log entry's identity: LSN, view, request slot, the frame's crc and its predecessor's (as
 * replica/vsr_message.h's struct vsr_entry_header, which this layer does not include). */
struct meta_entry {
    u64 lsn;
    u64 view;
    u64 request_slot;
    u32 crc;
    u32 prev_crc;
};

struct meta_record {
    u32 format_version; /* 3 (1: before pins and the clock anchor; 2: before the state-transfer
                         * entries; both read, upgraded on a write) */
    u128 cluster_id;
    u64 replica_id;
    u64 replica_count;
    u64 view;
    u64 last_normal_view;
    u64 voted_view;     /* durable vote: at most one per view */
    u64 voted_for;
    u64 commit_lsn;     /* highest LSN known committed (a lower bound; written lazily) */
    u64 snapshot_lsn;   /* snapshot anchor: LSN of the newest durable snapshot */
    u8 status;          /* enum meta_status */
    struct meta_pins pins;   /* format 2 */
    struct meta_clock clock; /* format 2; all zero: no anchor recorded yet */
    /* format 3. State transfer (replica/vsr.h): the entry a state transfer restarted the WAL
     * after (lsn 0: none), whose header the WAL no longer holds; and an image being installed
     * (lsn 0: none) — a restart that finds one finishes the install if the image's snapshot is
     * durable, else forgets it. */
    struct meta_entry base;
    struct meta_entry installing;
};

static inline bool meta_pins_set(const struct meta_pins *p)
{
    return p->slot_duration_ms != 0;
}

struct meta; /* opaque: an open LMDB environment */

/* Creates DIR/meta and writes a fresh record (view 0, commit 0, the given status and pins;
 * NULL: none) at once: status recovering for a replica formatted again after losing its disk,
 * which must never vote as a fresh one. Fails with -EEXIST if it already exists. */
int meta_format(const char *data_dir, u128 cluster_id, u64 replica_id, u64 replica_count,
                enum meta_status status, const struct meta_pins *pins, char *why, size_t why_len);

/* True if DIR/meta exists (a formatted data dir), without opening LMDB. */
bool meta_exists(const char *data_dir);

int meta_open(const char *data_dir, bool read_only, struct meta **out, char *why, size_t why_len);
void meta_close(struct meta *m);

int meta_read(struct meta *m, struct meta_record *out, char *why, size_t why_len);

/* Writes the fields that changed in one transaction (synced). Rejects (-EINVAL) a record that
 * breaks an invariant against the stored one, with the reason. */
int meta_write(struct meta *m, const struct meta_record *rec, char *why, size_t why_len);

/* Convenience for the common updates. */
int meta_advance_commit(struct meta *m, u64 commit_lsn, char *why, size_t why_len);
int meta_set_snapshot(struct meta *m, u64 snapshot_lsn, char *why, size_t why_len);
int meta_set_status(struct meta *m, enum meta_status s, bool force, char *why, size_t why_len);
/* The replication core's durable state (replica/vsr.h struct vsr_durable): view and last normal
 * view (each only grows: the record's invariants refuse less), and the end of a recovery
 * (recovering false turns a recovering status normal; it is never set again here). */
int meta_set_views(struct meta *m, u64 view, u64 log_view, bool recovering, char *why, size_t why_len);
/* Pins the settings of a record that has none (a format-1 data dir); -EINVAL if already pinned
 * to other values. Upgrades the record to format 2. */
int meta_set_pins(struct meta *m, const struct meta_pins *pins, char *why, size_t why_len);
/* State transfer, in the order a crash anywhere recovers from: install_begin records the
 * entry the image ends at (before its snapshot is written); install_done makes it the base
 * (after the WAL restarted after it), with the commit point at least there; install_forget
 * drops an install that will not finish. */
int meta_install_begin(struct meta *m, const struct meta_entry *at, char *why, size_t why_len);
int meta_install_done(struct meta *m, char *why, size_t why_len);
int meta_install_forget(struct meta *m, char *why, size_t why_len);
/* The sequencer's periodic write: the commit point and the clock anchor in one transaction. */
int meta_advance(struct meta *m, u64 commit_lsn, const struct meta_clock *clock, char *why, size_t why_len);

#endif
