/*
 * supervisor/config.h — allocdbd's configuration: one table of keys, read from allocdb.conf
 * (key = value, '#' comments, parsed with inih) and overridden by command-line flags
 * (slot_duration_ms <-> --slot-duration-ms). Every key has a default, a range and a one-line
 * description; the table drives parsing, validation, --help, `allocdbd check-config` output and
 * allocdb.conf(5).
 *
 * Durations are written with a unit where the key says so (ms/s/m/h: "30s", "100ms", "2m");
 * sizes accept k/M/G suffixes (powers of 1024); counts are plain integers.
 *
 * NOTES
 *   Errors: unknown keys, malformed values and out-of-range values are rejected with
 *   "FILE:LINE: reason" (file) or "--flag: reason" (command line) in `why`. Nothing is
 *   partially applied: on error the caller exits.
 *   Pure apart from reading the file: no globals.
 */
#ifndef ADB_SUPERVISOR_CONFIG_H
#define ADB_SUPERVISOR_CONFIG_H

#include "common/types.h"
#include "vocab/vocab.h"

#include <netdb.h>
#include <stdio.h>

#define CONFIG_ADDR_MAX 256
#define CONFIG_PATH_MAX 4096
#define CONFIG_REPLICAS_MAX 5            /* a cluster has 1, 3 or 5 replicas */
#define CONFIG_REPLICAS_TEXT_MAX 1024    /* the replicas key: HOST:PORT,HOST:PORT,... */

enum log_level { LOG_LEVEL_ERROR = 0, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

struct config {
    /* where */
    char data_dir[CONFIG_PATH_MAX];
    char listen[CONFIG_ADDR_MAX];       /* clients, HOST:PORT, default 127.0.0.1:7400 */
    char admin_listen[CONFIG_ADDR_MAX]; /* admin HTTP, default 127.0.0.1:7402 */

    /* state machine (sm_config is derived: see config_sm) */
    u64 slot_duration_ms;       /* default 100 */
    u32 resource_capacity;      /* default 1048576 */
    u32 reservation_capacity;   /* default 16777216 */
    u32 expiration_capacity;    /* default = reservation_capacity (0 in the file means that) */
    u32 operation_capacity;     /* default 67108864 */
    u64 max_ttl_ms;             /* default 1h */
    u64 dedupe_window_ms;       /* default 60s; >= 1 minute recommended */
    u64 history_window_ms;      /* default 60s */
    u32 max_expirations_per_tick; /* default 1024 */
    u32 prefault_memory;        /* 1 (default): tables faulted in at start; 0: on first touch */

    /* client-facing limits */
    u32 max_connections;        /* default 1024 */
    u32 max_batch;              /* commands per submit, default 1024, <= PROTO_BATCH_MAX */
    u32 max_inflight;           /* requests awaiting a reply, whole daemon, default 8192 */
    u64 request_timeout_ms;     /* a write without a result by then is answered indefinite; 5s */
    u64 idle_timeout_ms;        /* connection with nothing in flight and no bytes: 5m */
    u64 header_timeout_ms;      /* a started frame must complete within: 10s */

    /* shared memory */
    u32 ring_capacity;          /* entries per worker ring (power of two), default 65536 */
    u32 shared_log_capacity;    /* WAL frames in the shared log (power of two), default 65536 */

    /* storage */
    u64 wal_segment_bytes;      /* default 64M */
    u64 checkpoint_interval_ms; /* snapshot at most this often when there are new entries: 60s */
    u64 checkpoint_min_entries; /* ... and at least this many new entries: 100000 */

    /* supervision */
    u64 heartbeat_timeout_ms;   /* a worker silent this long is killed and restarted: 3s */
    u32 restart_intensity_max;  /* more than this many restarts ... default 10 */
    u64 restart_intensity_window_ms; /* ... within this window stops the daemon: 60s */
    u64 restart_backoff_max_ms; /* restarts after the first are delayed, doubling up to: 2s */
    u64 shutdown_timeout_ms;    /* SIGTERM: drain this long, then SIGKILL stragglers: 5s */

    /* replication (DESIGN.md §8); the data dir says which replica of how many this is */
    char replicas[CONFIG_REPLICAS_TEXT_MAX]; /* HOST:PORT,... in replica order; "" single node */
    char clients[CONFIG_REPLICAS_TEXT_MAX];  /* every replica's client address (not_primary hints) */
    char peer_listen[CONFIG_ADDR_MAX]; /* where peers connect; "": this replica's replicas entry */
    u64 peer_heartbeat_ms;      /* commit heartbeats and pings (clock samples): 50ms */
    u64 primary_timeout_ms;     /* a backup that hears no primary this long votes: 1s */
    u64 view_change_timeout_ms; /* a view change not done by then tries the next view: 2s */
    u64 repair_interval_ms;     /* between repair requests and prepare resends: 100ms */
    u32 fault_hooks;            /* 1: POST /fault/peer_block/MASK and /fault/install_crash/STEP on admin */
    u64 clock_tolerance_ms;     /* a quorum's clocks must agree this closely: 500ms */
    u32 pipeline_max;           /* entries beyond the commit point: 128 */

    enum log_level log_level;   /* error|warn|info|debug, default info */
};

/* Fills every key with its default. */
void config_defaults(struct config *c);

/*
 * Reads FILE (key = value lines) over c. Returns 0, or -1 with "FILE:LINE: reason" in why
 * (unknown key, bad value, out of range, unreadable file).
 */
int config_load_file(struct config *c, const char *path, char *why, size_t why_len);

/*
 * Sets one key from its name ("slot_duration_ms") and text value, as the file and the flags
 * do. Returns 0, or -1 with a reason (without location) in why.
 */
int config_set(struct config *c, const char *key, const char *value, char *why, size_t why_len);

/* Cross-key checks after everything is set (e.g. expiration_capacity <= reservation_capacity,
 * the derived sm_config validates). 0 or -1 with a reason. */
int config_validate(const struct config *c, char *why, size_t why_len);

/* The replicas key's addresses, in replica order, into out (cap of them); returns how many
 * (0: the key is empty, a single node). */
u32 config_replicas(const struct config *c, char out[][CONFIG_ADDR_MAX], u32 cap);
/* Resolves HOST:PORT ([V6]:PORT brackets taken off; with passive, an empty host is every
 * address) for a TCP socket: getaddrinfo's list (freeaddrinfo it), or NULL with the reason. */
struct addrinfo *config_addr_lookup(const char *addr, bool passive, char *why, size_t why_len);
/* The clients key's addresses likewise (0: not set: not_primary answers carry no hint). */
u32 config_clients(const struct config *c, char out[][CONFIG_ADDR_MAX], u32 cap);

/* Whether this config fits replica `replica` of a `count`-replica cluster (what the data dir
 * was formatted as): replicas lists count addresses (or none, for a single replica), and
 * peer_listen, if set, has the port of the replica's own entry and its host or a wildcard
 * host (a config meant for another replica is refused). 0 or -1 with a reason. */
int config_cluster_check(const struct config *c, u64 replica, u64 count, char *why, size_t why_len);

/* The state machine's config, converting windows from ms to slots (rounding up). */
void config_sm(const struct config *c, struct sm_config *out);

/* The settings pinned at format (replica/meta.h: struct meta_pins) as this config gives them. */
struct meta_pins;
void config_pins(const struct config *c, struct meta_pins *out);
/* 0 if the config gives the pinned values; otherwise -1 and a reason naming the first key that
 * differs, the stored value and the given one. */
int config_pins_check(const struct config *c, const struct meta_pins *stored, char *why, size_t why_len);

/* Writes "key = value" for every key, in table order (check-config, status). */
void config_print(const struct config *c, FILE *out);

/* Key table iteration for --help and getopt: name ("slot_duration_ms"), one-line help,
 * default as text. Returns false past the end. */
bool config_key_info(u32 i, const char **name, const char **help, const char **default_text);

/* "slot_duration_ms" -> "slot-duration-ms" (and back), into out (cap bytes). */
void config_key_to_flag(const char *key, char *out, size_t cap);
bool config_flag_to_key(const char *flag, char *out, size_t cap);

/* Parses a duration ("250ms", "30s", "2m", "1h", plain number = ms). */
bool config_parse_duration_ms(const char *s, u64 *out);

const char *log_level_name(enum log_level l);

#endif
