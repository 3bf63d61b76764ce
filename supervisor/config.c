/*
 * supervisor/config.c — the key table, value parsers, allocdb.conf reader (see config.h).
 *
 * Everything is driven by one static table, `keys`: name, type, where the value lives in
 * struct config, its default as text, its range and one line of help. Defaults are applied by
 * parsing the default text through config_set, so a default can never be out of its own range
 * or in a form the parser would reject; config_print writes each value in the form the parser
 * reads back (durations and sizes in their largest exact unit), so print -> load is the
 * identity.
 *
 * NOTES
 *   The file is read with inih (ini_parse_stream) through our own line reader, because the
 *   packaged library (Debian libinih r55) is built without INI_HANDLER_LINENO, so the handler
 *   gets no line number, and defining it on our side would change the handler's signature
 *   against the compiled library. The reader hands inih exactly one physical line per call and
 *   counts them, so when inih calls the handler the count is the line of that key. The reader
 *   also does the checks inih cannot report to us:
 *     - a "[section]" line is rejected where it stands (inih would accept it silently, and call
 *       nothing for a section with no keys);
 *     - leading whitespace is stripped, so an indented line is never taken as a continuation of
 *       the previous key's value (inih's multi-line values, on in the packaged build);
 *     - a line that does not fit inih's fixed line buffer (199 bytes, INI_MAX_LINE) is rejected;
 *       inih would silently split it and parse the halves as two lines;
 *     - NUL bytes in a line are rejected.
 *   Comments are whole lines starting with '#' or ';', and "; text" after a value (inih's
 *   inline comments). inih's library-wide option globals are never touched.
 *
 *   Loading works on a copy and stores it only when the whole file is good, so nothing is
 *   partially applied. A key set twice in one file is an error (naming both lines): it is
 *   almost always an edit that forgot the first one.
 *
 *   The autoconf config.h is force-included (AM_CPPFLAGS -include), and an `#include
 *   "config.h"` here would find this directory's header first; so there is none.
 */
#include "supervisor/config.h"

#include "common/assert.h"
#include "common/why.h"
#include "net/proto.h"
#include "replica/meta.h"
#include "wal/log.h"

#include <ini.h>

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* ---- the table -------------------------------------------------------------------------- */

enum key_type {
    KEY_PATH,      /* non-empty path */
    KEY_ADDR,      /* HOST:PORT */
    KEY_ADDR_OPT,  /* HOST:PORT, or empty */
    KEY_ADDR_LIST, /* HOST:PORT,HOST:PORT,... (1, 3 or 5 distinct ones), or empty */
    KEY_U32,       /* plain count */
    KEY_U64,       /* plain count */
    KEY_POW2,      /* u32 count, a power of two */
    KEY_DURATION,  /* u64 milliseconds, written with ms/s/m/h */
    KEY_SIZE,      /* u64 bytes, written with k/M/G */
    KEY_LOG_LEVEL, /* enum log_level, by name */
};

struct key {
    const char *name;
    enum key_type type;
    size_t offset; /* into struct config */
    size_t size;   /* of that member */
    const char *default_text;
    u64 min, max;  /* numeric types; strings ignore them */
    const char *help;
};

#define MS_SECOND ((u64)1000)
#define MS_MINUTE (60 * MS_SECOND)
#define MS_HOUR (60 * MS_MINUTE)
#define MS_DAY (24 * MS_HOUR)

#define WINDOW_MS_MAX (30 * MS_DAY)
#define TIMEOUT_MS_MAX MS_DAY
#define POW2_MIN 1024
#define POW2_MAX ((u64)1 << 24)

#define KEY(field, type, def, lo, hi, help)                                                 \
    { #field, type, offsetof(struct config, field), sizeof(((struct config *)0)->field), def, \
      lo, hi, help }

static const struct key keys[] = {
    KEY(data_dir, KEY_PATH, "/var/lib/allocdb", 0, 0,
        "data directory: WAL segments, snapshots, meta/ (created by allocdbd format)"),
    KEY(listen, KEY_ADDR, "127.0.0.1:7400", 0, 0, "client protocol address, HOST:PORT"),
    KEY(admin_listen, KEY_ADDR, "127.0.0.1:7402", 0, 0, "admin HTTP address (metrics, status), HOST:PORT"),

    KEY(slot_duration_ms, KEY_DURATION, "100ms", 1, 60000, "length of one logical time slot"),
    KEY(resource_capacity, KEY_U32, "1048576", 1, SM_CAPACITY_MAX, "most resources"),
    KEY(reservation_capacity, KEY_U32, "16777216", 1, SM_CAPACITY_MAX,
        "most reservations held at once, live or in history"),
    KEY(expiration_capacity, KEY_U32, "0", 0, SM_CAPACITY_MAX,
        "most reservations awaiting expiry at once (0 = reservation_capacity)"),
    KEY(operation_capacity, KEY_U32, "67108864", 1, SM_CAPACITY_MAX,
        "most operation records (retry dedupe): capacity / dedupe_window_ms is the sustained rate"),
    KEY(max_ttl_ms, KEY_DURATION, "1h", 1, WINDOW_MS_MAX, "longest reservation TTL a client may ask for"),
    KEY(dedupe_window_ms, KEY_DURATION, "60s", 1, WINDOW_MS_MAX,
        "how long a retried operation_id gets its original result (1m or more recommended)"),
    KEY(history_window_ms, KEY_DURATION, "60s", 1, WINDOW_MS_MAX,
        "how long released or expired reservations stay readable"),
    KEY(prefault_memory, KEY_U32, "1", 0, 1,
        "1: the state machine and retry cache take their memory at start; 0: as first touched"),
    KEY(max_expirations_per_tick, KEY_U32, "1024", 1, SM_CAPACITY_MAX, "most expirations proposed per tick"),

    KEY(max_connections, KEY_U32, "1024", 1, 1000000, "most client connections at once"),
    KEY(max_batch, KEY_U32, "1024", 1, PROTO_BATCH_MAX, "most commands in one submit"),
    KEY(max_inflight, KEY_U32, "8192", 1, (u64)1 << 20, "most requests awaiting a reply, whole daemon"),
    KEY(request_timeout_ms, KEY_DURATION, "5s", 1, TIMEOUT_MS_MAX,
        "a write without a result by then is answered indefinite"),
    KEY(idle_timeout_ms, KEY_DURATION, "5m", 1, TIMEOUT_MS_MAX,
        "close a connection with nothing in flight and no bytes for this long"),
    KEY(header_timeout_ms, KEY_DURATION, "10s", 1, TIMEOUT_MS_MAX, "a started frame must complete within this"),

    KEY(ring_capacity, KEY_POW2, "65536", POW2_MIN, POW2_MAX, "entries per worker ring (power of two)"),
    KEY(shared_log_capacity, KEY_POW2, "65536", POW2_MIN, POW2_MAX,
        "WAL frames in the shared log (power of two)"),

    KEY(wal_segment_bytes, KEY_SIZE, "64M", WAL_SEGMENT_BYTES_MIN, WAL_SEGMENT_BYTES_MAX,
        "capacity of a WAL segment file (k/M/G suffixes)"),
    KEY(checkpoint_interval_ms, KEY_DURATION, "60s", 1, TIMEOUT_MS_MAX,
        "snapshot at most this often when there are new entries"),
    KEY(checkpoint_min_entries, KEY_U64, "100000", 1, (u64)1 << 32,
        "and only once at least this many entries are new"),

    KEY(heartbeat_timeout_ms, KEY_DURATION, "3s", 1, TIMEOUT_MS_MAX,
        "a worker silent this long is killed and restarted"),
    KEY(restart_intensity_max, KEY_U32, "10", 1, 1000,
        "more than this many restarts within restart_intensity_window_ms stops the daemon"),
    KEY(restart_intensity_window_ms, KEY_DURATION, "60s", 1, TIMEOUT_MS_MAX,
        "the window restart_intensity_max counts in"),
    KEY(restart_backoff_max_ms, KEY_DURATION, "2s", 1, TIMEOUT_MS_MAX,
        "restarts after the first are delayed, doubling up to this"),
    KEY(shutdown_timeout_ms, KEY_DURATION, "5s", 1, TIMEOUT_MS_MAX,
        "on SIGTERM, drain this long, then SIGKILL stragglers"),

    KEY(replicas, KEY_ADDR_LIST, "", 0, 0,
        "the cluster's replicas, HOST:PORT,... in replica order (empty: a single node)"),
    KEY(clients, KEY_ADDR_LIST, "", 0, 0,
        "every replica's client address, HOST:PORT,... in replica order: a not_primary answer names the primary's"),
    KEY(peer_listen, KEY_ADDR_OPT, "", 0, 0,
        "where this replica accepts its peers, HOST:PORT (empty: its own entry in replicas)"),
    KEY(peer_heartbeat_ms, KEY_DURATION, "50ms", 1, 60000, "commit heartbeats and clock pings between replicas"),
    KEY(primary_timeout_ms, KEY_DURATION, "1s", 1, TIMEOUT_MS_MAX,
        "a backup that hears nothing from the primary this long asks for a new view"),
    KEY(view_change_timeout_ms, KEY_DURATION, "2s", 1, TIMEOUT_MS_MAX,
        "a view change not finished by then tries the next view"),
    KEY(repair_interval_ms, KEY_DURATION, "100ms", 1, 60000,
        "between requests for missing entries and resends of unacknowledged ones"),
    KEY(clock_tolerance_ms, KEY_DURATION, "500ms", 1, 60000,
        "a quorum's clocks must agree this closely for a cluster time (and new entries)"),
    KEY(pipeline_max, KEY_U32, "256", 1, 256,
        "most entries the primary has beyond the commit point (a view change carries 256 headers)"),
    KEY(fault_hooks, KEY_U32, "0", 0, 1,
        "1: the admin endpoint takes POST /fault/peer_block/MASK and /fault/install_crash/STEP (tests)"),

    KEY(log_level, KEY_LOG_LEVEL, "info", 0, 0, "error, warn, info or debug"),
};

#undef KEY

#define KEY_COUNT ADB_ARRAY_LEN(keys)

static const struct key *key_find(const char *name)
{
    for (size_t i = 0; i < KEY_COUNT; i++)
        if (strcmp(keys[i].name, name) == 0)
            return &keys[i];
    return NULL;
}

/* The member size each type stores into; checked against the table once per config_defaults. */
static size_t key_type_size(enum key_type t)
{
    switch (t) {
    case KEY_PATH: return CONFIG_PATH_MAX;
    case KEY_ADDR: return CONFIG_ADDR_MAX;
    case KEY_ADDR_OPT: return CONFIG_ADDR_MAX;
    case KEY_ADDR_LIST: return CONFIG_REPLICAS_TEXT_MAX;
    case KEY_U32: return sizeof(u32);
    case KEY_POW2: return sizeof(u32);
    case KEY_U64: return sizeof(u64);
    case KEY_DURATION: return sizeof(u64);
    case KEY_SIZE: return sizeof(u64);
    case KEY_LOG_LEVEL: return sizeof(enum log_level);
    }
    return 0;
}

/* ---- value parsers ---------------------------------------------------------------------- */

/* One or more decimal digits from s; *end is the first non-digit. False on none or overflow. */
static bool parse_digits(const char *s, u64 *out, const char **end)
{
    u64 v = 0;
    const char *p = s;
    for (; *p >= '0' && *p <= '9'; p++)
        if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, (u64)(*p - '0'), &v))
            return false;
    if (p == s)
        return false;
    *out = v;
    *end = p;
    return true;
}

static bool parse_count(const char *s, u64 *out)
{
    const char *end;
    return parse_digits(s, out, &end) && *end == '\0';
}

bool config_parse_duration_ms(const char *s, u64 *out)
{
    static const struct {
        const char *unit;
        u64 ms;
    } units[] = { { "", 1 }, { "ms", 1 }, { "s", MS_SECOND }, { "m", MS_MINUTE }, { "h", MS_HOUR } };
    u64 v;
    const char *end;
    if (s == NULL || !parse_digits(s, &v, &end))
        return false;
    for (size_t i = 0; i < ADB_ARRAY_LEN(units); i++) {
        u64 ms;
        if (strcmp(end, units[i].unit) == 0) {
            if (__builtin_mul_overflow(v, units[i].ms, &ms))
                return false;
            *out = ms;
            return true;
        }
    }
    return false;
}

/* Bytes, with an optional k/M/G suffix (powers of 1024; either case). */
static bool parse_size(const char *s, u64 *out)
{
    u64 v;
    const char *end;
    if (!parse_digits(s, &v, &end))
        return false;
    unsigned shift;
    switch (end[0]) {
    case '\0': shift = 0; break;
    case 'k': case 'K': shift = 10; break;
    case 'm': case 'M': shift = 20; break;
    case 'g': case 'G': shift = 30; break;
    default: return false;
    }
    if (shift != 0 && end[1] != '\0')
        return false;
    if (v > (UINT64_MAX >> shift))
        return false;
    *out = v << shift;
    return true;
}

static const char *const level_names[] = { "error", "warn", "info", "debug" };

const char *log_level_name(enum log_level l)
{
    if ((unsigned)l < ADB_ARRAY_LEN(level_names))
        return level_names[l];
    return "unknown";
}

/*
 * HOST:PORT. The port is after the last ':'; a host containing ':' (IPv6) must be bracketed,
 * "[::1]:7400", so the split is never ambiguous.
 */
static bool check_addr(const char *s, char *why, size_t why_len)
{
    const char *colon = strrchr(s, ':');
    if (colon == NULL) {
        why_set(why, why_len, "'%s' is not HOST:PORT", s);
        return false;
    }
    size_t host_len = (size_t)(colon - s);
    if (host_len == 0) {
        why_set(why, why_len, "'%s': the host is empty", s);
        return false;
    }
    bool bracketed = s[0] == '[';
    if (bracketed ? host_len < 3 || s[host_len - 1] != ']' || memchr(s + 1, ']', host_len - 2) != NULL
                  : memchr(s, ':', host_len) != NULL || memchr(s, ']', host_len) != NULL) {
        why_set(why, why_len, "'%s': bad host (an IPv6 address is written [ADDR]:PORT)", s);
        return false;
    }
    u64 port;
    if (!parse_count(colon + 1, &port)) {
        why_set(why, why_len, "'%s': the port is not a number", s);
        return false;
    }
    if (port > 65535) { /* 0: any free port (the ready log line names the one bound) */
        why_set(why, why_len, "'%s': port %" PRIu64 " is out of range 0..65535", s, port);
        return false;
    }
    return true;
}

/*
 * Text that allocdb.conf can carry unchanged: no control bytes (a newline would end the line;
 * tabs included), no surrounding spaces (inih strips them) and no space followed by ';' (inih
 * starts an inline comment there). Without this, config_print could write a value that loads differently.
 */
static bool check_text(const char *s, size_t cap, char *why, size_t why_len)
{
    size_t len = strlen(s);
    if (len == 0) {
        why_set(why, why_len, "empty");
        return false;
    }
    if (len >= cap) {
        why_set(why, why_len, "longer than %zu bytes", cap - 1);
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 || ch == 0x7f) {
            why_set(why, why_len, "contains a control character (byte %zu)", i);
            return false;
        }
        if (ch == ';' && i > 0 && s[i - 1] == ' ') {
            why_set(why, why_len, "' ;' would start a comment in allocdb.conf");
            return false;
        }
    }
    if (s[0] == ' ' || s[len - 1] == ' ') {
        why_set(why, why_len, "'%s' begins or ends with a blank", s);
        return false;
    }
    return true;
}

/* A list of 1, 3 or 5 distinct HOST:PORTs separated by commas (no blanks). Returns the count, or
 * 0 with a reason. Each address goes to out[i] unless out is NULL. */
static u32 split_addrs(const char *s, char out[][CONFIG_ADDR_MAX], char *why, size_t why_len)
{
    char one[CONFIG_REPLICAS_MAX][CONFIG_ADDR_MAX];
    u32 n = 0;
    for (const char *p = s;; n++) {
        const char *comma = strchr(p, ',');
        size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);
        if (n == CONFIG_REPLICAS_MAX) {
            why_set(why, why_len, "more than %d addresses: a cluster has 1, 3 or 5 replicas", CONFIG_REPLICAS_MAX);
            return 0;
        }
        if (len == 0 || len >= CONFIG_ADDR_MAX) {
            why_set(why, why_len, "address %u is %s", n, len == 0 ? "empty" : "too long");
            return 0;
        }
        memcpy(one[n], p, len);
        one[n][len] = 0;
        if (strpbrk(one[n], " \t") != NULL) {
            why_set(why, why_len, "address %u: '%s' contains a blank (separate addresses by commas alone)", n, one[n]);
            return 0;
        }
        char reason[CONFIG_ADDR_MAX + 64];
        if (!check_addr(one[n], reason, sizeof(reason))) {
            why_set(why, why_len, "address %u: %s", n, reason);
            return 0;
        }
        for (u32 i = 0; i < n; i++) {
            if (strcmp(one[i], one[n]) == 0) {
                why_set(why, why_len, "replicas %u and %u are both %s", i, n, one[n]);
                return 0;
            }
        }
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    n++;
    if (n != 1 && n != 3 && n != 5) {
        why_set(why, why_len, "%u addresses: a cluster has 1, 3 or 5 replicas", n);
        return 0;
    }
    if (out != NULL)
        memcpy(out, one, n * sizeof(one[0]));
    return n;
}

/* ---- set, defaults ---------------------------------------------------------------------- */

static void store_u64(struct config *c, const struct key *k, u64 v)
{
    char *p = (char *)c + k->offset;
    if (k->size == sizeof(u32)) {
        ADB_ASSERT(v <= UINT32_MAX);
        u32 w = (u32)v;
        memcpy(p, &w, sizeof(w));
    } else {
        ADB_ASSERT(k->size == sizeof(u64));
        memcpy(p, &v, sizeof(v));
    }
}

static u64 load_u64(const struct config *c, const struct key *k)
{
    const char *p = (const char *)c + k->offset;
    if (k->size == sizeof(u32)) {
        u32 w;
        memcpy(&w, p, sizeof(w));
        return w;
    }
    u64 v;
    memcpy(&v, p, sizeof(v));
    return v;
}

int config_set(struct config *c, const char *key, const char *value, char *why, size_t why_len)
{
    ADB_ASSERT(c != NULL && key != NULL && value != NULL);
    const struct key *k = key_find(key);
    if (k == NULL) {
        why_set(why, why_len, "unknown key '%s'", key);
        return -1;
    }
    char reason[CONFIG_ADDR_MAX + 64];
    u64 v = 0;
    switch (k->type) {
    case KEY_ADDR_OPT:
    case KEY_ADDR_LIST:
        if (value[0] == 0) {
            memset((char *)c + k->offset, 0, k->size);
            return 0;
        }
        if (!check_text(value, k->size, reason, sizeof(reason)) ||
            (k->type == KEY_ADDR_OPT && !check_addr(value, reason, sizeof(reason))) ||
            (k->type == KEY_ADDR_LIST && split_addrs(value, NULL, reason, sizeof(reason)) == 0)) {
            why_set(why, why_len, "%s: %s", k->name, reason);
            return -1;
        }
        memcpy((char *)c + k->offset, value, strlen(value) + 1);
        return 0;
    case KEY_PATH:
    case KEY_ADDR:
        if (!check_text(value, k->size, reason, sizeof(reason)) ||
            (k->type == KEY_ADDR && !check_addr(value, reason, sizeof(reason)))) {
            why_set(why, why_len, "%s: %s", k->name, reason);
            return -1;
        }
        memcpy((char *)c + k->offset, value, strlen(value) + 1);
        return 0;
    case KEY_LOG_LEVEL:
        for (size_t i = 0; i < ADB_ARRAY_LEN(level_names); i++) {
            if (strcmp(value, level_names[i]) == 0) {
                c->log_level = (enum log_level)i;
                return 0;
            }
        }
        why_set(why, why_len, "%s: '%s' is not a log level (error, warn, info, debug)", k->name, value);
        return -1;
    case KEY_U32:
    case KEY_U64:
    case KEY_POW2:
        if (!parse_count(value, &v)) {
            why_set(why, why_len, "%s: '%s' is not a number", k->name, value);
            return -1;
        }
        break;
    case KEY_DURATION:
        if (!config_parse_duration_ms(value, &v)) {
            why_set(why, why_len, "%s: '%s' is not a duration (e.g. 250ms, 30s, 2m, 1h; a bare number is ms)",
                    k->name, value);
            return -1;
        }
        break;
    case KEY_SIZE:
        if (!parse_size(value, &v)) {
            why_set(why, why_len, "%s: '%s' is not a size (bytes, or with a k, M or G suffix)", k->name, value);
            return -1;
        }
        break;
    }
    if (v < k->min || v > k->max) {
        why_set(why, why_len, "%s: %s is out of range %" PRIu64 "..%" PRIu64, k->name, value, k->min, k->max);
        return -1;
    }
    if (k->type == KEY_POW2 && (v & (v - 1)) != 0) {
        why_set(why, why_len, "%s: %s is not a power of two", k->name, value);
        return -1;
    }
    store_u64(c, k, v);
    return 0;
}

void config_defaults(struct config *c)
{
    memset(c, 0, sizeof(*c));
    for (size_t i = 0; i < KEY_COUNT; i++) {
        const struct key *k = &keys[i];
        ADB_ASSERT(k->size == key_type_size(k->type));
        ADB_ASSERT(k->offset + k->size <= sizeof(*c));
        ADB_ASSERT(key_find(k->name) == k); /* names are unique */
        char why[256];
        int rc = config_set(c, k->name, k->default_text, why, sizeof(why));
        ADB_ASSERT(rc == 0); /* a default the parser rejects is a bug in the table */
    }
}

/* ---- printing --------------------------------------------------------------------------- */

/* The largest unit that divides v exactly, so the text parses back to v. */
static void format_duration(u64 ms, char *out, size_t cap)
{
    if (ms != 0 && ms % MS_HOUR == 0)
        snprintf(out, cap, "%" PRIu64 "h", ms / MS_HOUR);
    else if (ms != 0 && ms % MS_MINUTE == 0)
        snprintf(out, cap, "%" PRIu64 "m", ms / MS_MINUTE);
    else if (ms != 0 && ms % MS_SECOND == 0)
        snprintf(out, cap, "%" PRIu64 "s", ms / MS_SECOND);
    else
        snprintf(out, cap, "%" PRIu64 "ms", ms);
}

static void format_size(u64 bytes, char *out, size_t cap)
{
    static const char suffix[] = { 'G', 'M', 'k' };
    for (size_t i = 0; i < sizeof(suffix); i++) {
        unsigned shift = 30 - 10 * (unsigned)i;
        if (bytes != 0 && bytes % ((u64)1 << shift) == 0) {
            snprintf(out, cap, "%" PRIu64 "%c", bytes >> shift, suffix[i]);
            return;
        }
    }
    snprintf(out, cap, "%" PRIu64, bytes);
}

static void format_value(const struct config *c, const struct key *k, char *out, size_t cap)
{
    switch (k->type) {
    case KEY_PATH:
    case KEY_ADDR:
    case KEY_ADDR_OPT:
    case KEY_ADDR_LIST: snprintf(out, cap, "%s", (const char *)c + k->offset); return;
    case KEY_LOG_LEVEL: snprintf(out, cap, "%s", log_level_name(c->log_level)); return;
    case KEY_DURATION: format_duration(load_u64(c, k), out, cap); return;
    case KEY_SIZE: format_size(load_u64(c, k), out, cap); return;
    case KEY_U32:
    case KEY_U64:
    case KEY_POW2: snprintf(out, cap, "%" PRIu64, load_u64(c, k)); return;
    }
    ADB_ASSERT(!"unreachable: key type");
}

void config_print(const struct config *c, FILE *out)
{
    char value[CONFIG_PATH_MAX];
    for (size_t i = 0; i < KEY_COUNT; i++) {
        format_value(c, &keys[i], value, sizeof(value));
        fprintf(out, "%s = %s\n", keys[i].name, value);
    }
}

bool config_key_info(u32 i, const char **name, const char **help, const char **default_text)
{
    if (i >= KEY_COUNT)
        return false;
    if (name != NULL)
        *name = keys[i].name;
    if (help != NULL)
        *help = keys[i].help;
    if (default_text != NULL)
        *default_text = keys[i].default_text;
    return true;
}

/* ---- flags ------------------------------------------------------------------------------ */

void config_key_to_flag(const char *key, char *out, size_t cap)
{
    ADB_ASSERT(cap > 0);
    size_t i = 0;
    for (; key[i] != '\0' && i + 1 < cap; i++)
        out[i] = key[i] == '_' ? '-' : key[i];
    out[i] = '\0';
}

/* "slot-duration-ms" (or "--slot-duration-ms") -> "slot_duration_ms"; false unless that is a key. */
bool config_flag_to_key(const char *flag, char *out, size_t cap)
{
    ADB_ASSERT(cap > 0);
    if (strncmp(flag, "--", 2) == 0)
        flag += 2;
    size_t len = strlen(flag);
    if (len + 1 > cap)
        return false;
    for (size_t i = 0; i <= len; i++) {
        if (flag[i] == '_') /* flags are spelled with dashes only */
            return false;
        out[i] = flag[i] == '-' ? '_' : flag[i];
    }
    if (key_find(out) == NULL) {
        out[0] = '\0';
        return false;
    }
    return true;
}

/* ---- cross-key checks ------------------------------------------------------------------- */

static u64 ms_to_slots(u64 ms, u64 slot_ms)
{
    ADB_ASSERT(slot_ms >= 1);
    return ms / slot_ms + (ms % slot_ms != 0);
}

void config_sm(const struct config *c, struct sm_config *out)
{
    memset(out, 0, sizeof(*out));
    out->shard_id = 0;
    out->resource_capacity = c->resource_capacity;
    out->reservation_capacity = c->reservation_capacity;
    out->operation_capacity = c->operation_capacity;
    out->expiration_capacity = c->expiration_capacity != 0 ? c->expiration_capacity : c->reservation_capacity;
    out->max_ttl_slots = ms_to_slots(c->max_ttl_ms, c->slot_duration_ms);
    out->dedupe_window_slots = ms_to_slots(c->dedupe_window_ms, c->slot_duration_ms);
    out->history_window_slots = ms_to_slots(c->history_window_ms, c->slot_duration_ms);
}

void config_pins(const struct config *c, struct meta_pins *out)
{
    struct sm_config sm;
    config_sm(c, &sm);
    *out = (struct meta_pins){
        .slot_duration_ms = c->slot_duration_ms,
        .resource_capacity = c->resource_capacity,
        .reservation_capacity = c->reservation_capacity,
        .operation_capacity = c->operation_capacity,
        .expiration_capacity = sm.expiration_capacity, /* effective: 0 in the config means "as reservations" */
        .max_ttl_ms = c->max_ttl_ms,
        .dedupe_window_ms = c->dedupe_window_ms,
        .history_window_ms = c->history_window_ms,
        .wal_segment_bytes = c->wal_segment_bytes,
    };
}

int config_pins_check(const struct config *c, const struct meta_pins *stored, char *why, size_t why_len)
{
    struct meta_pins given;
    config_pins(c, &given);
#define PIN(key)                                                                                                 \
    { #key, stored->key, given.key }
    const struct {
        const char *key;
        u64 stored, given;
    } pins[] = { PIN(slot_duration_ms), PIN(resource_capacity), PIN(reservation_capacity), PIN(operation_capacity),
                 PIN(expiration_capacity), PIN(max_ttl_ms), PIN(dedupe_window_ms), PIN(history_window_ms),
                 PIN(wal_segment_bytes) };
#undef PIN
    for (size_t i = 0; i < ADB_ARRAY_LEN(pins); i++) {
        if (pins[i].stored != pins[i].given) {
            why_set(why, why_len,
                    "%s: the data directory was formatted with %" PRIu64 ", the configuration gives %" PRIu64
                    " (settings that change what replay computes are fixed at format; use %" PRIu64 ")",
                    pins[i].key, pins[i].stored, pins[i].given, pins[i].stored);
            return -1;
        }
    }
    return 0;
}

int config_validate(const struct config *c, char *why, size_t why_len)
{
    /* Every key within its own range first: a struct filled by hand (or a bug) could skip
     * config_set, and the derived checks below divide by slot_duration_ms. */
    for (size_t i = 0; i < KEY_COUNT; i++) {
        const struct key *k = &keys[i];
        char text[CONFIG_PATH_MAX], reason[CONFIG_PATH_MAX + 256];
        if (k->type == KEY_PATH || k->type == KEY_ADDR || k->type == KEY_ADDR_OPT || k->type == KEY_ADDR_LIST) {
            const char *s = (const char *)c + k->offset;
            if (memchr(s, '\0', k->size) == NULL) {
                why_set(why, why_len, "%s: not terminated", k->name);
                return -1;
            }
        }
        format_value(c, k, text, sizeof(text));
        struct config scratch;
        if (config_set(&scratch, k->name, text, reason, sizeof(reason)) != 0) {
            why_set(why, why_len, "%s", reason);
            return -1;
        }
    }
    u32 expiration = c->expiration_capacity != 0 ? c->expiration_capacity : c->reservation_capacity;
    if (expiration > c->reservation_capacity) {
        why_set(why, why_len,
                "expiration_capacity = %" PRIu32 " exceeds reservation_capacity = %" PRIu32
                ": every expiring reservation is also a reservation",
                expiration, c->reservation_capacity);
        return -1;
    }
    struct sm_config sm;
    config_sm(c, &sm);
    if (sm.max_ttl_slots > SM_MAX_TTL_SLOTS_MAX) {
        why_set(why, why_len,
                "max_ttl_ms = %" PRIu64 " is %" PRIu64 " slots of slot_duration_ms = %" PRIu64
                "; at most %" PRIu64 " slots (lower max_ttl_ms or raise slot_duration_ms)",
                c->max_ttl_ms, sm.max_ttl_slots, c->slot_duration_ms, (u64)SM_MAX_TTL_SLOTS_MAX);
        return -1;
    }
    char reason[256];
    if (!sm_config_validate(&sm, reason, sizeof(reason))) {
        why_set(why, why_len, "state machine config: %s", reason);
        return -1;
    }
    if (c->max_batch > PROTO_BATCH_MAX) {
        why_set(why, why_len, "max_batch = %" PRIu32 " exceeds the protocol's %d", c->max_batch, PROTO_BATCH_MAX);
        return -1;
    }
    if (c->peer_heartbeat_ms * 4 > c->primary_timeout_ms) {
        why_set(why, why_len,
                "primary_timeout_ms = %" PRIu64 " is under four peer_heartbeat_ms (%" PRIu64
                "): a backup would vote out a primary it only missed a heartbeat or two from",
                c->primary_timeout_ms, c->peer_heartbeat_ms);
        return -1;
    }
    if (c->view_change_timeout_ms < c->primary_timeout_ms) {
        why_set(why, why_len, "view_change_timeout_ms = %" PRIu64 " is under primary_timeout_ms = %" PRIu64,
                c->view_change_timeout_ms, c->primary_timeout_ms);
        return -1;
    }
    size_t ll = strlen(c->listen);
    bool any_port = ll >= 2 && strcmp(c->listen + ll - 2, ":0") == 0; /* two free ports differ */
    if (strcmp(c->listen, c->admin_listen) == 0 && !any_port) {
        why_set(why, why_len, "listen and admin_listen are both %s", c->listen);
        return -1;
    }
    return 0;
}

/* An address-list key's value (checked by config_set) split into out; 0 if it is empty. */
static u32 addr_list(const char *text, char out[][CONFIG_ADDR_MAX], u32 cap)
{
    ADB_ASSERT(cap >= CONFIG_REPLICAS_MAX);
    if (text[0] == 0)
        return 0;
    char why[CONFIG_ADDR_MAX + 128];
    u32 n = split_addrs(text, out, why, sizeof(why));
    ADB_ASSERT(n != 0); /* config_set checked it */
    return n;
}

u32 config_replicas(const struct config *c, char out[][CONFIG_ADDR_MAX], u32 cap)
{
    return addr_list(c->replicas, out, cap);
}

u32 config_clients(const struct config *c, char out[][CONFIG_ADDR_MAX], u32 cap)
{
    return addr_list(c->clients, out, cap);
}

struct addrinfo *config_addr_lookup(const char *addr, bool passive, char *why, size_t why_len)
{
    char host[CONFIG_ADDR_MAX];
    snprintf(host, sizeof(host), "%s", addr);
    char *colon = strrchr(host, ':');
    if (colon == NULL) {
        why_set(why, why_len, "expected HOST:PORT");
        return NULL;
    }
    *colon = 0;
    char *h = host;
    size_t n = strlen(h);
    if (n >= 2 && h[0] == '[' && h[n - 1] == ']') { /* [::1]:7400 */
        h[n - 1] = 0;
        h++;
    }
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = passive ? AI_PASSIVE : 0 };
    struct addrinfo *res;
    int rc = getaddrinfo(h[0] || !passive ? h : NULL, colon + 1, &hints, &res);
    if (rc != 0) {
        why_set(why, why_len, "%s", gai_strerror(rc));
        return NULL;
    }
    return res;
}

/* The host part of HOST:PORT (checked) into out, and a pointer to its port. */
static const char *addr_split(const char *addr, char *host, size_t cap)
{
    const char *colon = strrchr(addr, ':');
    ADB_ASSERT(colon != NULL);
    snprintf(host, cap, "%.*s", (int)(colon - addr), addr);
    return colon + 1;
}

int config_cluster_check(const struct config *c, u64 replica, u64 count, char *why, size_t why_len)
{
    ADB_ASSERT(replica < count);
    char addrs[CONFIG_REPLICAS_MAX][CONFIG_ADDR_MAX];
    u32 n = config_replicas(c, addrs, CONFIG_REPLICAS_MAX);
    if (count == 1 && n <= 1)
        return 0;
    if (n != count) {
        why_set(why, why_len,
                "replicas lists %u address%s, but the data directory is replica %" PRIu64 " of a %" PRIu64
                "-replica cluster: list all %" PRIu64 ", in replica order",
                n, n == 1 ? "" : "es", replica, count, count);
        return -1;
    }
    char clients[CONFIG_REPLICAS_MAX][CONFIG_ADDR_MAX];
    u32 nc = config_clients(c, clients, CONFIG_REPLICAS_MAX);
    if (nc != 0 && nc != count) {
        why_set(why, why_len, "clients lists %u address%s, but the cluster has %" PRIu64 " replicas: list every "
                "replica's client address, in replica order", nc, nc == 1 ? "" : "es", count);
        return -1;
    }
    if (c->peer_listen[0] == 0)
        return 0;
    char own_host[CONFIG_ADDR_MAX], host[CONFIG_ADDR_MAX];
    const char *own_port = addr_split(addrs[replica], own_host, sizeof(own_host));
    const char *port = addr_split(c->peer_listen, host, sizeof(host));
    bool wildcard = strcmp(host, "0.0.0.0") == 0 || strcmp(host, "[::]") == 0;
    if (strcmp(port, own_port) != 0 || (!wildcard && strcmp(host, own_host) != 0)) {
        why_set(why, why_len,
                "peer_listen = %s is not replica %" PRIu64 "'s address in replicas (%s): is this the config "
                "of another replica?",
                c->peer_listen, replica, addrs[replica]);
        return -1;
    }
    return 0;
}

/* ---- the file --------------------------------------------------------------------------- */

struct load {
    FILE *file;
    struct config cfg; /* the copy being filled; stored only if the whole file is good */
    char *line;        /* getline's buffer */
    size_t line_cap;
    u32 lineno;        /* of the line last handed to inih */
    u32 set_on[KEY_COUNT]; /* line each key was set on, 0 = not yet */
    bool failed;
    u32 error_line;
    char error[CONFIG_PATH_MAX + 256];
};

__attribute__((format(printf, 2, 3))) static void load_fail(struct load *l, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(l->error, sizeof(l->error), fmt, ap);
    va_end(ap);
    l->failed = true;
    l->error_line = l->lineno;
}

/* inih's ini_reader: one physical line per call (see NOTES). NULL ends the parse. */
static char *load_read_line(char *buf, int num, void *stream)
{
    struct load *l = stream;
    if (l->failed)
        return NULL; /* stop at the first error: later lines would only add noise */
    errno = 0;
    ssize_t n = getline(&l->line, &l->line_cap, l->file);
    if (n < 0) {
        if (ferror(l->file)) {
            l->lineno++;
            load_fail(l, "read error: %s", strerror(errno != 0 ? errno : EIO));
        }
        return NULL;
    }
    l->lineno++;
    char *p = l->line;
    if (strlen(p) != (size_t)n) {
        load_fail(l, "contains a NUL byte");
        return NULL;
    }
    while (n > 0 && (p[n - 1] == '\n' || p[n - 1] == '\r'))
        p[--n] = '\0';
    if (l->lineno == 1 && strncmp(p, "\xEF\xBB\xBF", 3) == 0) /* UTF-8 byte order mark */
        p += 3;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p == '[') {
        load_fail(l, "sections are not supported: allocdb.conf is flat key = value lines");
        return NULL;
    }
    size_t len = strlen(p);
    if (num < 2 || len > (size_t)num - 2) {
        load_fail(l, "line is longer than %d bytes", num - 2);
        return NULL;
    }
    memcpy(buf, p, len + 1);
    return buf;
}

/* inih's handler: called for every key = value, while l->lineno is its line. */
static int load_key(void *user, const char *section, const char *name, const char *value)
{
    struct load *l = user;
    if (l->failed)
        return 0;
    ADB_ASSERT(section[0] == '\0'); /* the reader never lets a [section] line through */
    const struct key *k = key_find(name);
    if (k == NULL) {
        load_fail(l, "unknown key '%s'", name);
        return 0;
    }
    size_t i = (size_t)(k - keys);
    if (l->set_on[i] != 0) {
        load_fail(l, "%s is set twice (first on line %" PRIu32 ")", name, l->set_on[i]);
        return 0;
    }
    char reason[sizeof(l->error)];
    if (config_set(&l->cfg, name, value, reason, sizeof(reason)) != 0) {
        load_fail(l, "%s", reason);
        return 0;
    }
    l->set_on[i] = l->lineno;
    return 1;
}

int config_load_file(struct config *c, const char *path, char *why, size_t why_len)
{
    struct load *l = calloc(1, sizeof(*l)); /* ~8 KiB: keep it off the caller's stack */
    if (l == NULL) {
        why_set(why, why_len, "%s: out of memory", path);
        return -1;
    }
    l->cfg = *c;
    l->file = fopen(path, "re");
    if (l->file == NULL) {
        why_set(why, why_len, "%s: cannot open: %s", path, strerror(errno));
        free(l);
        return -1;
    }
    int rc = ini_parse_stream(load_read_line, l, load_key, l);
    fclose(l->file);
    free(l->line);

    int result = -1;
    if (rc == -2) {
        why_set(why, why_len, "%s: out of memory", path);
    } else if (rc > 0 && (!l->failed || (u32)rc < l->error_line)) {
        /* inih's own complaint (a line with no '=' or ':'), before any of ours. */
        why_set(why, why_len, "%s:%d: expected key = value", path, rc);
    } else if (l->failed) {
        why_set(why, why_len, "%s:%" PRIu32 ": %s", path, l->error_line, l->error);
    } else {
        ADB_ASSERT(rc == 0);
        *c = l->cfg;
        result = 0;
    }
    free(l);
    return result;
}
