/*
 * cli/main.c — allocdb, the command-line client (allocdb(1)).
 *
 * NOTES
 *   A thin shell over liballocdb's synchronous calls: parse, call, print, exit with a code that
 *   tells the outcome class apart (0 ok, 1 committed domain failure or read miss, 2 definite
 *   rejection, 3 indefinite, 64 usage, 69 no server, 70 internal). Writes are retried by the
 *   library with the same operation id until --timeout; an indefinite outcome prints the exact
 *   command line to retry it with (--op-id, and the client id, which the server's dedupe
 *   fingerprint covers).
 *
 *   A read fenced with --min-lsn that the server has not applied yet ("fence_not_applied") is a
 *   "not yet": the CLI asks again until --timeout, then exits 3 like any other answer that did
 *   not come in time (reads are always safe to repeat).
 *
 *   Text output annotates slots (a deadline, a retirement) with about how long from now and
 *   when, from the server's current slot and slot length; --json keeps the bare numbers and
 *   prints the server's metrics and status objects as they came. The annotation is best
 *   effort: a server that does not answer for it leaves the slot alone, never the exit status.
 *
 *   Global options may appear before or after the command. Options take "--opt VALUE" or
 *   "--opt=VALUE"; "--" ends options.
 */
#include "net/allocdb.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum {
    EXIT_OK_ = 0,
    EXIT_DOMAIN = 1,
    EXIT_REJECTED = 2,
    EXIT_INDEFINITE = 3,
    EXIT_USAGE = 64,
    EXIT_UNAVAILABLE = 69,
    EXIT_SOFTWARE = 70,
};

#define DEFAULT_TIMEOUT_MS 10000u

enum { OPT_TTL = 1, OPT_MIN_LSN = 2, OPT_WRITE = 4 };

/* The longest the CLI waits for what it asks only to annotate its output (the server's current
 * slot, its max_ttl_ms): an answer already in hand is never held up for long. */
#define ANNOTATE_TIMEOUT_MS 2000u

struct command {
    const char *name;
    int nargs;
    const char *synopsis; /* after the name */
    const char *summary;
    const char *help;     /* the command's own help text */
    unsigned opts;
    const char *argnames[2];
};

static const struct command commands[] = {
    { "create-resource", 1, "ID", "create a resource",
      "Creates resource ID (available, version 0).\n"
      "Committed results: ok; already_exists or resource_table_full (exit 1).\n",
      OPT_WRITE, { "ID" } },
    { "reserve", 2, "RESOURCE HOLDER --ttl DUR", "reserve a resource for a holder",
      "Reserves RESOURCE for HOLDER for DUR (rounded up to whole slots). On ok, prints the\n"
      "reservation id (a fencing token: later reservations get larger ids) and the slot after\n"
      "which it expires unless confirmed, with about how long that is from now and when\n"
      "(from the server's current slot and slot length).\n"
      "Committed failures (exit 1): ttl_out_of_range (with the server's maximum if it\n"
      "reports one), resource_not_found, resource_busy, reservation_table_full,\n"
      "slot_overflow, expiration_index_full, operation_table_full, operation_conflict.\n"
      "\n"
      "  --ttl DUR    how long the reservation holds before it expires (required)\n"
      "  --print-id   print only the reservation id on standard output (nothing unless ok);\n"
      "               the usual report goes to standard error:\n"
      "               rid=$(allocdb reserve 7 1001 --ttl 30s --print-id)\n",
      OPT_WRITE | OPT_TTL, { "RESOURCE", "HOLDER" } },
    { "confirm", 2, "RESERVATION HOLDER", "confirm a reservation (it no longer expires)",
      "Confirms RESERVATION held by HOLDER: the reservation and its resource become confirmed\n"
      "and never expire.\n"
      "Committed failures (exit 1): reservation_retired, reservation_not_found, holder_mismatch,\n"
      "invalid_state, operation_table_full, operation_conflict.\n",
      OPT_WRITE, { "RESERVATION", "HOLDER" } },
    { "release", 2, "RESERVATION HOLDER", "release a reservation",
      "Releases RESERVATION held by HOLDER (reserved or confirmed): the resource becomes\n"
      "available; the reservation stays readable as released until it retires.\n"
      "Committed failures (exit 1): as for confirm.\n",
      OPT_WRITE, { "RESERVATION", "HOLDER" } },
    { "get-resource", 1, "ID [--min-lsn N]", "read a resource",
      "Prints resource ID: state, version, current reservation. Exit 0 if found, 1 if not.\n"
      "\n"
      "  --min-lsn N  answer only once the server has applied LSN N (read your writes: pass\n"
      "               the applied_lsn of your last write); waits up to --timeout, then exit 3\n",
      OPT_MIN_LSN, { "ID" } },
    { "get-reservation", 1, "ID [--min-lsn N]", "read a reservation",
      "Prints reservation ID: state, resource, holder, LSNs and slots (a slot still to come\n"
      "with about how long until then). Exit 0 if found, 1 if not_found or retired (aged out\n"
      "of history).\n"
      "\n"
      "  --min-lsn N  answer only once the server has applied LSN N; waits up to --timeout,\n"
      "               then exit 3\n",
      OPT_MIN_LSN, { "ID" } },
    { "tick", 0, "", "force an expiration tick",
      "Asks the server for an expiration tick now; prints its current slot and how many\n"
      "expirations the tick proposed.\n",
      0, { NULL } },
    { "metrics", 0, "", "print the server's metrics (JSON)",
      "Prints the server's metrics object (pretty-printed, or compact with --json).\n", 0,
      { NULL } },
    { "status", 0, "", "print the server's status",
      "Prints the server's status: role, view, LSNs, settings, what the last recovery did, and\n"
      "a table of the workers (pid, generation, state, restarts, heartbeat age); roles never\n"
      "started (the peer of a single node) are left out. With --json, the server's status\n"
      "object as it sent it.\n",
      0, { NULL } },
    { "help", -1, "[COMMAND]", "this help, or a command's", "Prints help.\n", 0, { NULL } },
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static const char *const global_options =
    "Options (before or after the command):\n"
    "  --addr HOST:PORT[,HOST:PORT...]\n"
    "                  servers to use (default: $ALLOCDB_ADDR, else " ALLOCDB_DEFAULT_ADDR ")\n"
    "  --timeout DUR   keep retrying for at most DUR (default 10s)\n"
    "  --op-id ID      the operation id of a write: retry exactly that operation\n"
    "  --client-id ID  the client id of a write (default 0); a retry needs the original's\n"
    "  --json          print one JSON object on standard output\n"
    "  -h, --help      help (after a command: that command's)\n"
    "  --version       print the version\n"
    "\n"
    "IDs are unsigned 128-bit integers, in decimal or 0x-prefixed hex.\n"
    "DUR is a whole number with a unit: ms, s, m or h (30s, 1500ms, 5m).\n";

static const char *const exit_help =
    "Exit status:\n"
    "  0   committed ok or noop; read found; tick, metrics, status answered\n"
    "  1   committed domain failure (resource_busy, ...); read not_found or retired\n"
    "  2   definite rejection: certainly not executed (overloaded, not_primary, ...)\n"
    "  3   indefinite: may or may not have executed; retry with the printed --op-id.\n"
    "      Also a read (or tick, metrics, status) with no answer within --timeout\n"
    "  64  usage error\n"
    "  69  no server reachable within --timeout (nothing was sent)\n"
    "  70  internal error\n";

static const char *prog = "allocdb";

static void print_usage(FILE *f)
{
    fprintf(f, "Usage: %s [OPTIONS] COMMAND [ARGS]\n\nCommands:\n", prog);
    for (size_t i = 0; i < NCOMMANDS; i++) {
        char left[64];
        snprintf(left, sizeof left, "%s %s", commands[i].name, commands[i].synopsis);
        fprintf(f, "  %-38s %s\n", left, commands[i].summary);
    }
    fprintf(f, "\n%s\n%s", global_options, exit_help);
    fprintf(f, "\nRun '%s COMMAND --help' for a command's details; see allocdb(1).\n", prog);
}

static void print_command_help(const struct command *cmd)
{
    printf("Usage: %s [OPTIONS] %s %s\n\n%s\n%s\n%s", prog, cmd->name, cmd->synopsis,
           cmd->summary, cmd->help, global_options);
    if (cmd->opts & OPT_WRITE)
        printf("\nWithout --op-id a new random operation id is used (and printed). An\n"
               "indefinite outcome is retried with the same id until --timeout; if it is still\n"
               "open then, the command to retry it with is printed and the exit status is 3.\n");
    printf("\n%s", exit_help);
}

__attribute__((format(printf, 1, 2), noreturn)) static void usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", prog);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry '%s --help' or '%s COMMAND --help'.\n", prog, prog);
    exit(EXIT_USAGE);
}

/* ---- parsing --------------------------------------------------------------------------------- */

static allocdb_u128 parse_id(const char *what, const char *s)
{
    allocdb_u128 v;
    if (allocdb_u128_parse(s, &v) != ALLOCDB_OK)
        usage_error("%s: '%s' is not an id (an unsigned 128-bit integer, decimal or 0x-hex)",
                    what, s);
    return v;
}

static uint64_t parse_u64(const char *what, const char *s)
{
    allocdb_u128 v;
    if (allocdb_u128_parse(s, &v) != ALLOCDB_OK || v > UINT64_MAX)
        usage_error("%s: '%s' is not an unsigned 64-bit integer", what, s);
    return (uint64_t)v;
}

/* A whole number above zero and a unit (ms, s, m, h), in milliseconds, at most max_ms. */
static uint64_t parse_duration(const char *what, const char *s, uint64_t max_ms)
{
    const char *p = s;
    uint64_t n = 0;
    if (*p < '0' || *p > '9')
        usage_error("%s: '%s' is not a duration (a whole number with ms, s, m or h: 30s)", what,
                    s);
    for (; *p >= '0' && *p <= '9'; p++) {
        if (n > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
            usage_error("%s: '%s' is out of range", what, s);
        n = n * 10 + (uint64_t)(*p - '0');
    }
    uint64_t mul;
    if (strcmp(p, "ms") == 0)
        mul = 1;
    else if (strcmp(p, "s") == 0)
        mul = 1000;
    else if (strcmp(p, "m") == 0)
        mul = 60000;
    else if (strcmp(p, "h") == 0)
        mul = 3600000;
    else if (*p == '\0')
        usage_error("%s: '%s' needs a unit: ms, s, m or h (e.g. %ss)", what, s, s);
    else
        usage_error("%s: '%s' has an unknown unit '%s' (use ms, s, m or h)", what, s, p);
    if (n > max_ms / mul)
        usage_error("%s: '%s' is out of range (at most %llu ms)", what, s,
                    (unsigned long long)max_ms);
    if (n == 0)
        usage_error("%s: must be more than zero", what);
    return n * mul;
}

struct args {
    const char *addr;
    bool json;
    bool print_id;
    bool help;
    bool version;
    uint64_t timeout_ms;
    bool has_op_id;
    allocdb_u128 op_id;
    allocdb_u128 client_id;
    bool has_ttl;
    uint64_t ttl_ms;
    const char *ttl_arg; /* as given */
    bool has_min_lsn;
    uint64_t min_lsn;
    const struct command *cmd;
    const char *pos[8];
    int npos;
    allocdb_u128 ids[2]; /* the positional ids, parsed */
};

static const struct command *find_command(const char *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static void parse_args(int argc, char **argv, struct args *a)
{
    memset(a, 0, sizeof *a);
    a->timeout_ms = DEFAULT_TIMEOUT_MS;
    const char *pending_cmd = NULL;
    bool options_done = false;
    /* The first pass records everything; usage errors wait until --help had a chance. */
    const char *bad = NULL;
    char badbuf[300];
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
            a->help = true;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (!options_done && strcmp(s, "--") == 0) {
            options_done = true;
            continue;
        }
        if (!options_done && (strcmp(s, "-h") == 0 || strcmp(s, "--help") == 0)) {
            a->help = true;
            continue;
        }
        if (!options_done && s[0] == '-' && s[1] == '-') {
            const char *name = s + 2;
            const char *eq = strchr(name, '=');
            size_t nlen = eq != NULL ? (size_t)(eq - name) : strlen(name);
            static const char *const valued[] = { "addr", "timeout", "op-id", "client-id", "ttl",
                                                  "min-lsn" };
            static const char *const flags[] = { "json", "version", "print-id" };
            int which = -1;
            for (int k = 0; k < 6; k++)
                if (strlen(valued[k]) == nlen && strncmp(name, valued[k], nlen) == 0)
                    which = k;
            int flag = -1;
            for (int k = 0; k < 3; k++)
                if (strlen(flags[k]) == nlen && strncmp(name, flags[k], nlen) == 0)
                    flag = k;
            if (flag >= 0) {
                if (eq != NULL && bad == NULL) {
                    snprintf(badbuf, sizeof badbuf, "option --%s takes no value", flags[flag]);
                    bad = badbuf;
                }
                if (flag == 0)
                    a->json = true;
                else if (flag == 1)
                    a->version = true;
                else
                    a->print_id = true;
                continue;
            }
            if (which < 0) {
                if (bad == NULL) {
                    snprintf(badbuf, sizeof badbuf, "unknown option '%.*s'", (int)(nlen + 2), s);
                    bad = badbuf;
                }
                continue;
            }
            const char *val;
            if (eq != NULL) {
                val = eq + 1;
            } else if (i + 1 < argc) {
                val = argv[++i];
            } else {
                if (bad == NULL) {
                    snprintf(badbuf, sizeof badbuf, "option --%s needs a value", valued[which]);
                    bad = badbuf;
                }
                continue;
            }
            if (a->help)
                continue; /* values are not checked when only help was asked for */
            switch (which) {
            case 0:
                a->addr = val;
                break;
            case 1:
                a->timeout_ms = parse_duration("--timeout", val, UINT32_MAX);
                break;
            case 2:
                a->op_id = parse_id("--op-id", val);
                if (a->op_id == 0)
                    usage_error("--op-id: operation ids are never 0");
                a->has_op_id = true;
                break;
            case 3:
                a->client_id = parse_id("--client-id", val);
                break;
            case 4:
                a->ttl_ms = parse_duration("--ttl", val, UINT64_MAX);
                a->ttl_arg = val;
                a->has_ttl = true;
                break;
            case 5:
                a->min_lsn = parse_u64("--min-lsn", val);
                a->has_min_lsn = true;
                break;
            }
            continue;
        }
        if (!options_done && s[0] == '-' && s[1] != '\0') {
            if (bad == NULL) {
                snprintf(badbuf, sizeof badbuf, "unknown option '%s'", s);
                bad = badbuf;
            }
            continue;
        }
        if (pending_cmd == NULL) {
            pending_cmd = s;
            continue;
        }
        if (a->npos < (int)(sizeof a->pos / sizeof a->pos[0]))
            a->pos[a->npos] = s;
        a->npos++;
    }
    if (pending_cmd != NULL) {
        a->cmd = find_command(pending_cmd);
        if (a->cmd == NULL)
            usage_error("unknown command '%s'", pending_cmd);
    }
    if (a->help || a->version)
        return;
    if (bad != NULL)
        usage_error("%s", bad);
}

/* ---- output ---------------------------------------------------------------------------------- */

static char idbuf[4][ALLOCDB_U128_STRLEN];
static const char *id_str(int k, allocdb_u128 v)
{
    return allocdb_u128_format(v, idbuf[k]);
}

static json_t *json_u128(allocdb_u128 v)
{
    char b[ALLOCDB_U128_STRLEN];
    return json_string(allocdb_u128_format(v, b));
}

/* u64 as a JSON integer (values above 2^63 - 1, which the server never produces for LSNs and
 * slots, become decimal strings rather than wrap). */
static json_t *json_u64(uint64_t v)
{
    if (v <= (uint64_t)INT64_MAX)
        return json_integer((json_int_t)v);
    char b[ALLOCDB_U128_STRLEN];
    return json_string(allocdb_u128_format(v, b));
}

static int print_json(json_t *o)
{
    if (o == NULL) {
        fprintf(stderr, "%s: out of memory\n", prog);
        return EXIT_SOFTWARE;
    }
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (s == NULL) {
        fprintf(stderr, "%s: out of memory\n", prog);
        return EXIT_SOFTWARE;
    }
    puts(s);
    free(s);
    return 0;
}

static void set(json_t *o, const char *k, json_t *v)
{
    json_object_set_new(o, k, v);
}

/* Prints the command line that retries this write: the original arguments with --op-id. */
static void print_retry_hint(int argc, char **argv, allocdb_u128 op_id, bool had_op_id)
{
    fprintf(stderr, "%s: retry with: %s", prog, prog);
    if (!had_op_id)
        fprintf(stderr, " --op-id %s", id_str(0, op_id));
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        static const char safe[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                   "0123456789_.,:/=@%+-[]";
        bool plain = *s != '\0' && strspn(s, safe) == strlen(s);
        if (plain) {
            fprintf(stderr, " %s", s);
        } else {
            fputs(" '", stderr);
            for (const char *p = s; *p != '\0'; p++) {
                if (*p == '\'')
                    fputs("'\\''", stderr);
                else
                    fputc(*p, stderr);
            }
            fputc('\'', stderr);
        }
    }
    fputc('\n', stderr);
}

/* ---- commands -------------------------------------------------------------------------------- */

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Sets the library's timeouts so every call ends by the CLI's deadline. False if it passed. */
static bool arm(allocdb_client *c, uint64_t deadline)
{
    uint64_t now = mono_ms();
    if (now >= deadline)
        return false;
    uint64_t left = deadline - now;
    uint32_t connect = ALLOCDB_DEFAULT_CONNECT_TIMEOUT_MS;
    uint32_t request = ALLOCDB_DEFAULT_REQUEST_TIMEOUT_MS;
    if (left < connect)
        connect = (uint32_t)left;
    if (left < request)
        request = (uint32_t)left;
    allocdb_set_timeouts(c, connect, request, (uint32_t)left);
    return true;
}

/* Like arm(), for a request that only annotates the output: at most ANNOTATE_TIMEOUT_MS. */
static bool arm_annotation(allocdb_client *c, uint64_t deadline)
{
    uint64_t now = mono_ms();
    uint64_t cap = now + ANNOTATE_TIMEOUT_MS;
    return arm(c, deadline < cap ? deadline : cap);
}

/* ---- slots as durations ---------------------------------------------------------------------- */

/*
 * Request slots are the server's logical time: slot_duration_ms long, numbered from a timeline
 * that started near Unix time / slot_duration_ms but advances with the server's boot clock, not
 * its wall clock. So a slot is turned into a duration from the server's current slot (the
 * applier's, from its metrics), never from this machine's clock; the time of day is this
 * machine's clock plus that duration. Both are "about": the current slot is whole slots and a
 * slot or so old, and an expiry is logged a little after its slot ends.
 */
struct server_clock {
    bool known;
    uint64_t slot_ms;  /* the server's slot_duration_ms (from the hello) */
    uint64_t cur_slot; /* the applier's current slot (from the metrics) */
};

static void fetch_clock(allocdb_client *c, uint64_t deadline, struct server_clock *k)
{
    memset(k, 0, sizeof *k);
    if (!arm_annotation(c, deadline))
        return;
    char *text = NULL;
    size_t len = 0;
    if (allocdb_metrics(c, &text, &len) != ALLOCDB_OK)
        return;
    json_t *o = json_loadb(text, len, 0, NULL);
    free(text);
    json_t *cur = json_object_get(json_object_get(o, "applier"), "current_slot");
    struct allocdb_server_info info;
    if (json_is_integer(cur) && json_integer_value(cur) > 0 &&
        allocdb_server_info(c, &info) == ALLOCDB_OK && info.slot_duration_ms > 0) {
        k->known = true;
        k->slot_ms = info.slot_duration_ms;
        k->cur_slot = (uint64_t)json_integer_value(cur);
    }
    json_decref(o);
}

/* "0.4s", "29.9s", "4m 05s", "2h 03m", "3d 04h". */
static const char *human_ms(uint64_t ms, char *buf, size_t cap)
{
    if (ms < 60000)
        snprintf(buf, cap, "%llu.%llus", (unsigned long long)(ms / 1000),
                 (unsigned long long)(ms % 1000 / 100));
    else if (ms < 3600000)
        snprintf(buf, cap, "%llum %02llus", (unsigned long long)(ms / 60000),
                 (unsigned long long)(ms % 60000 / 1000));
    else if (ms < 86400000)
        snprintf(buf, cap, "%lluh %02llum", (unsigned long long)(ms / 3600000),
                 (unsigned long long)(ms % 3600000 / 60000));
    else
        snprintf(buf, cap, "%llud %02lluh", (unsigned long long)(ms / 86400000),
                 (unsigned long long)(ms % 86400000 / 3600000));
    return buf;
}

/* This machine's wall clock plus (or minus) ms, as "2026-11-24 09:31:35 UTC". */
static const char *wall_plus(uint64_t ms, bool past, char *buf, size_t cap)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    int64_t t = past ? now - (int64_t)ms : now + (int64_t)ms;
    time_t secs = (time_t)(t / 1000);
    struct tm tm;
    if (gmtime_r(&secs, &tm) == NULL || strftime(buf, cap, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
        snprintf(buf, cap, "?");
    return buf;
}

/*
 * How far the end of `slot` is from now: *ms and whether it has passed. A deadline slot holds
 * to its end, so "expires in" counts to the end of the slot. False if unknown or absurd.
 */
static bool slot_end_from_now(const struct server_clock *k, uint64_t slot, uint64_t *ms,
                              bool *past)
{
    if (!k->known || slot == UINT64_MAX)
        return false;
    uint64_t end = slot + 1, diff;
    *past = end <= k->cur_slot;
    diff = *past ? k->cur_slot - end : end - k->cur_slot;
    if (diff > UINT64_MAX / k->slot_ms / 2)
        return false;
    *ms = diff * k->slot_ms;
    return true;
}

/* Prints "NAME: SLOT" and, when the server's clock is known, what the slot means now:
 * FUTURE ("expires") with the duration and time, or PAST_NOTE once it has ended. */
static void print_slot(FILE *out, const char *name, uint64_t slot, const struct server_clock *k,
                       const char *future, const char *future_tail, const char *past_note)
{
    fprintf(out, "%s: %llu", name, (unsigned long long)slot);
    uint64_t ms;
    bool past;
    char d[32], w[40];
    if (slot_end_from_now(k, slot, &ms, &past)) {
        if (!past)
            fprintf(out, " (%s in about %s, about %s%s)", future, human_ms(ms, d, sizeof d),
                    wall_plus(ms, false, w, sizeof w), future_tail);
        else if (past_note != NULL && ms == 0)
            fprintf(out, " (ended within the last slot%s)", past_note);
        else if (past_note != NULL)
            fprintf(out, " (ended about %s ago%s)", human_ms(ms, d, sizeof d), past_note);
    }
    fputc('\n', out);
}

static int unreachable(const struct args *a, allocdb_client *c, const char *addrs)
{
    if (a->json) {
        json_t *o = json_object();
        set(o, "error", json_string("unreachable"));
        set(o, "message", json_string(allocdb_last_error(c)));
        print_json(o);
    }
    fprintf(stderr, "%s: no server reachable at %s within the timeout: %s\n", prog, addrs,
            allocdb_last_error(c));
    if (a->has_op_id)
        fprintf(stderr, "%s: operation %s was not sent; its earlier attempts (if any) are "
                        "still unresolved\n", prog, id_str(0, a->op_id));
    return EXIT_UNAVAILABLE;
}

static int call_failed(const struct args *a, allocdb_client *c, const char *addrs, int rc)
{
    if (rc == ALLOCDB_ERR_UNREACHABLE)
        return unreachable(a, c, addrs);
    const char *kind = rc == ALLOCDB_ERR_TIMEOUT ? "timeout"
                       : rc == ALLOCDB_ERR_SERVER ? "refused"
                                                  : "error";
    if (a->json) {
        json_t *o = json_object();
        set(o, "error", json_string(kind));
        set(o, "message", json_string(allocdb_last_error(c)));
        print_json(o);
    }
    const char *detail = allocdb_last_error(c);
    fprintf(stderr, "%s: %s%s%s\n", prog, allocdb_strerror(rc), *detail ? ": " : "", detail);
    if (rc == ALLOCDB_ERR_TIMEOUT) {
        fprintf(stderr, "%s: no answer within the timeout; it is safe to run the same command "
                        "again\n", prog);
        return EXIT_INDEFINITE;
    }
    if (rc == ALLOCDB_ERR_SERVER)
        return EXIT_REJECTED;
    return EXIT_SOFTWARE;
}

/*
 * After ttl_out_of_range: says how the TTL compares with the server's limit. The limit
 * (max_ttl_ms) is named when the server's status reports it; the TTL in slots when the hello
 * gave the slot length.
 */
static void ttl_hint(const struct args *a, allocdb_client *c, uint64_t deadline)
{
    const char *ttl = a->ttl_arg;
    char max[32], slots[96] = "";
    struct allocdb_server_info info;
    if (allocdb_server_info(c, &info) == ALLOCDB_OK && info.slot_duration_ms > 0)
        snprintf(slots, sizeof slots, " (%llu slots of %llu ms)",
                 (unsigned long long)((a->ttl_ms + info.slot_duration_ms - 1) /
                                      info.slot_duration_ms),
                 (unsigned long long)info.slot_duration_ms);
    json_t *st = NULL;
    char *text = NULL;
    size_t len = 0;
    if (arm_annotation(c, deadline) && allocdb_status(c, &text, &len) == ALLOCDB_OK) {
        st = json_loadb(text, len, 0, NULL);
        free(text);
    }
    json_t *m = json_object_get(st, "max_ttl_ms");
    if (json_is_integer(m) && json_integer_value(m) > 0)
        fprintf(stderr, "%s: --ttl %s%s is longer than this server allows: max_ttl_ms is %s "
                        "(%lld ms)\n",
                prog, ttl, slots, human_ms((uint64_t)json_integer_value(m), max, sizeof max),
                (long long)json_integer_value(m));
    else
        fprintf(stderr, "%s: --ttl %s%s is longer than this server allows (its max_ttl_ms, "
                        "see allocdb.conf(5); this server does not report the value)\n",
                prog, ttl, slots);
    json_decref(st);
}

static int do_write(const struct args *a, allocdb_client *c, const char *addrs, int argc,
                    char **argv, uint64_t deadline)
{
    const struct command *cmd = a->cmd;
    allocdb_u128 op = a->has_op_id ? a->op_id : 0;
    if (op == 0 && allocdb_operation_id_new(&op) != ALLOCDB_OK) {
        fprintf(stderr, "%s: getrandom: cannot make an operation id\n", prog);
        return EXIT_SOFTWARE;
    }
    struct allocdb_result r;
    int rc;
    if (strcmp(cmd->name, "create-resource") == 0)
        rc = allocdb_create_resource(c, op, a->ids[0], &r);
    else if (strcmp(cmd->name, "reserve") == 0)
        rc = allocdb_reserve(c, op, a->ids[0], a->ids[1], a->ttl_ms, &r);
    else if (strcmp(cmd->name, "confirm") == 0)
        rc = allocdb_confirm(c, op, a->ids[0], a->ids[1], &r);
    else
        rc = allocdb_release(c, op, a->ids[0], a->ids[1], &r);
    if (rc == ALLOCDB_ERR_UNREACHABLE)
        return unreachable(a, c, addrs);
    if (rc != ALLOCDB_OK)
        return call_failed(a, c, addrs, rc);

    const char *result = allocdb_result_name(r.outcome, r.code);
    bool reserve_ok = strcmp(cmd->name, "reserve") == 0 && r.outcome == ALLOCDB_COMMITTED &&
                      r.code == ALLOCDB_RESULT_OK;
    int status;
    if (r.outcome == ALLOCDB_COMMITTED)
        status = r.code == ALLOCDB_RESULT_OK || r.code == ALLOCDB_RESULT_NOOP ? EXIT_OK_
                                                                             : EXIT_DOMAIN;
    else if (r.outcome == ALLOCDB_REJECTED)
        status = EXIT_REJECTED;
    else
        status = EXIT_INDEFINITE;

    struct server_clock clk = { .known = false };
    if (reserve_ok && !a->json)
        fetch_clock(c, deadline, &clk);
    if (a->json) {
        json_t *o = json_object();
        set(o, "command", json_string(cmd->name));
        set(o, "result", json_string(result));
        set(o, "outcome", json_string(allocdb_outcome_name(r.outcome)));
        set(o, "applied_lsn", json_u64(r.applied_lsn));
        set(o, "reservation_id", json_u128(r.reservation_id));
        set(o, "deadline_slot", json_u64(r.deadline_slot));
        set(o, "from_retry_cache", json_boolean(r.from_retry_cache));
        set(o, "operation_id", json_u128(r.operation_id));
        set(o, "attempts", json_integer(r.attempts));
        if (print_json(o) != 0)
            return EXIT_SOFTWARE;
    } else {
        /* With --print-id the report goes to standard error, the id alone to standard output. */
        FILE *out = a->print_id ? stderr : stdout;
        fprintf(out, "%s: %s\n", allocdb_outcome_name(r.outcome), result);
        fprintf(out, "operation_id: %s\n", id_str(0, r.operation_id));
        if (r.outcome == ALLOCDB_COMMITTED) {
            fprintf(out, "applied_lsn: %llu\n", (unsigned long long)r.applied_lsn);
            if (reserve_ok) {
                fprintf(out, "reservation_id: %s\n", id_str(1, r.reservation_id));
                print_slot(out, "deadline_slot", r.deadline_slot, &clk, "expires",
                           ", unless confirmed", ": expiry is due");
            }
            fprintf(out, "from_retry_cache: %s\n", r.from_retry_cache ? "yes" : "no");
        }
        if (reserve_ok && a->print_id)
            printf("%s\n", id_str(1, r.reservation_id));
    }
    if (r.outcome == ALLOCDB_COMMITTED && r.code == ALLOCDB_RESULT_TTL_OUT_OF_RANGE)
        ttl_hint(a, c, deadline);
    if (status == EXIT_INDEFINITE) {
        fprintf(stderr, "%s: outcome unknown (%s): operation %s may or may not have been "
                        "applied; %s\n",
                prog, result, id_str(0, r.operation_id), allocdb_last_error(c));
        print_retry_hint(argc, argv, r.operation_id, a->has_op_id);
    } else if (status == EXIT_REJECTED) {
        fprintf(stderr, "%s: rejected (%s): not executed\n", prog, result);
    }
    return status;
}

static json_t *json_state(uint8_t read, const char *name)
{
    return read == ALLOCDB_READ_FOUND ? json_string(name) : json_null();
}

/* Exit status and message of a read's answer; fence_not_applied is handled by the caller. */
static int read_status(uint8_t read)
{
    return read == ALLOCDB_READ_FOUND ? EXIT_OK_ : EXIT_DOMAIN;
}

static int do_read(const struct args *a, allocdb_client *c, const char *addrs, uint64_t deadline)
{
    bool resource = strcmp(a->cmd->name, "get-resource") == 0;
    allocdb_u128 id = a->ids[0];
    struct allocdb_resource res;
    struct allocdb_reservation rsv;
    uint8_t read;
    uint64_t applied;
    uint32_t backoff = 10;
    for (;;) {
        int rc = resource ? allocdb_get_resource(c, id, a->min_lsn, &res)
                          : allocdb_get_reservation(c, id, a->min_lsn, &rsv);
        if (rc != ALLOCDB_OK)
            return call_failed(a, c, addrs, rc);
        read = resource ? res.read : rsv.read;
        applied = resource ? res.applied_lsn : rsv.applied_lsn;
        if (read != ALLOCDB_READ_FENCE_NOT_APPLIED)
            break;
        uint64_t now = mono_ms();
        if (now + backoff >= deadline)
            break;
        struct timespec ts = { .tv_sec = 0, .tv_nsec = (long)backoff * 1000000L };
        nanosleep(&ts, NULL);
        backoff = backoff * 2 > 200 ? 200 : backoff * 2;
        if (!arm(c, deadline))
            break;
    }
    if (a->json) {
        json_t *o = json_object();
        set(o, "read", json_string(allocdb_read_name(read)));
        if (resource) {
            set(o, "resource_id", json_u128(id));
            set(o, "state", json_state(read, allocdb_resource_state_name(res.state)));
            set(o, "version", json_u64(res.version));
            set(o, "current_reservation_id", json_u128(res.current_reservation_id));
        } else {
            set(o, "reservation_id", json_u128(id));
            set(o, "state", json_state(read, allocdb_reservation_state_name(rsv.state)));
            set(o, "resource_id", json_u128(rsv.resource_id));
            set(o, "holder_id", json_u128(rsv.holder_id));
            set(o, "created_lsn", json_u64(rsv.created_lsn));
            set(o, "deadline_slot", json_u64(rsv.deadline_slot));
            set(o, "released_lsn", json_u64(rsv.released_lsn));
            set(o, "retire_after_slot", json_u64(rsv.retire_after_slot));
        }
        set(o, "applied_lsn", json_u64(applied));
        if (a->has_min_lsn)
            set(o, "min_lsn", json_u64(a->min_lsn));
        if (print_json(o) != 0)
            return EXIT_SOFTWARE;
    } else {
        printf("%s\n", allocdb_read_name(read));
        if (resource) {
            printf("resource_id: %s\n", id_str(0, id));
            if (read == ALLOCDB_READ_FOUND) {
                printf("state: %s\n", allocdb_resource_state_name(res.state));
                printf("version: %llu\n", (unsigned long long)res.version);
                printf("current_reservation_id: %s\n", id_str(1, res.current_reservation_id));
            }
        } else {
            printf("reservation_id: %s\n", id_str(0, id));
            if (read == ALLOCDB_READ_FOUND) {
                printf("state: %s\n", allocdb_reservation_state_name(rsv.state));
                printf("resource_id: %s\n", id_str(1, rsv.resource_id));
                printf("holder_id: %s\n", id_str(2, rsv.holder_id));
                printf("created_lsn: %llu\n", (unsigned long long)rsv.created_lsn);
                struct server_clock clk;
                fetch_clock(c, deadline, &clk);
                if (rsv.state == ALLOCDB_RESERVATION_RESERVED)
                    print_slot(stdout, "deadline_slot", rsv.deadline_slot, &clk, "expires",
                               ", unless confirmed", ": expiry is due");
                else if (rsv.state == ALLOCDB_RESERVATION_CONFIRMED)
                    printf("deadline_slot: %llu (confirmed: does not expire)\n",
                           (unsigned long long)rsv.deadline_slot);
                else if (rsv.state == ALLOCDB_RESERVATION_EXPIRED)
                    print_slot(stdout, "deadline_slot", rsv.deadline_slot, &clk, "ends", "", "");
                else
                    printf("deadline_slot: %llu\n", (unsigned long long)rsv.deadline_slot);
                printf("released_lsn: %llu\n", (unsigned long long)rsv.released_lsn);
                if (rsv.retire_after_slot != 0)
                    print_slot(stdout, "retire_after_slot", rsv.retire_after_slot, &clk,
                               "leaves the history", "", ": retirement is due");
                else
                    printf("retire_after_slot: 0\n");
            }
        }
        printf("applied_lsn: %llu\n", (unsigned long long)applied);
    }
    if (read == ALLOCDB_READ_FENCE_NOT_APPLIED) {
        fprintf(stderr, "%s: not yet: the server did not reach LSN %llu within the timeout "
                        "(it has applied %llu); run the same command again later\n",
                prog, (unsigned long long)a->min_lsn, (unsigned long long)applied);
        return EXIT_INDEFINITE;
    }
    return read_status(read);
}

static int do_tick(const struct args *a, allocdb_client *c, const char *addrs)
{
    struct allocdb_tick t;
    int rc = allocdb_tick(c, &t);
    if (rc != ALLOCDB_OK)
        return call_failed(a, c, addrs, rc);
    if (a->json) {
        json_t *o = json_object();
        set(o, "slot", json_u64(t.slot));
        set(o, "expirations_proposed", json_u64(t.expirations_proposed));
        return print_json(o) != 0 ? EXIT_SOFTWARE : EXIT_OK_;
    }
    printf("slot: %llu\nexpirations_proposed: %llu\n", (unsigned long long)t.slot,
           (unsigned long long)t.expirations_proposed);
    return EXIT_OK_;
}

/* A JSON scalar as text: strings bare, booleans yes/no, null "-". */
static void print_scalar(FILE *out, json_t *v)
{
    if (json_is_string(v))
        fputs(json_string_value(v), out);
    else if (json_is_integer(v))
        fprintf(out, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v))
        fprintf(out, "%g", json_real_value(v));
    else if (json_is_true(v))
        fputs("yes", out);
    else if (json_is_false(v))
        fputs("no", out);
    else if (json_is_null(v))
        fputs("-", out);
    else {
        char *s = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
        fputs(s != NULL ? s : "?", out);
        free(s);
    }
}

/* One line per field of a nested object: "PREFIX: key=value key=value ..."; objects inside it
 * get a line of their own ("recovery.sequencer: ..."). */
static void print_nested(const char *prefix, json_t *o)
{
    const char *k;
    json_t *v;
    bool any = false;
    json_object_foreach(o, k, v) {
        if (json_is_object(v) || json_is_array(v))
            continue;
        if (!any)
            printf("%s:", prefix);
        printf(" %s=", k);
        print_scalar(stdout, v);
        any = true;
    }
    if (any)
        putchar('\n');
    json_object_foreach(o, k, v) {
        if (!json_is_object(v))
            continue;
        char sub[128];
        snprintf(sub, sizeof sub, "%s.%s", prefix, k);
        print_nested(sub, v);
    }
}

/*
 * The status object as text: its scalar fields as "key: value" lines in the server's order
 * (uptime also as a duration), nested objects (recovery) a line each, then the workers as a
 * table. A worker slot never started (state "empty", no pid: the peer role of a single node,
 * which replication will use) is left out; --json shows the object as the server sent it.
 */
static void print_status(json_t *o)
{
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v) {
        if (json_is_object(v) || json_is_array(v))
            continue;
        printf("%s: ", k);
        print_scalar(stdout, v);
        if (strcmp(k, "uptime_ms") == 0 && json_is_integer(v) && json_integer_value(v) >= 0) {
            char d[32];
            printf(" (%s)", human_ms((uint64_t)json_integer_value(v), d, sizeof d));
        }
        putchar('\n');
    }
    json_object_foreach(o, k, v) {
        if (json_is_object(v))
            print_nested(k, v);
    }
    json_t *workers = json_object_get(o, "workers");
    if (!json_is_array(workers))
        return;
    static const char *const cols[] = { "role", "pid", "generation", "state", "restarts",
                                        "heartbeat_age_ms" };
    static const int width[] = { -10, 8, 11, 9, 9, 17 };
    printf("\n");
    for (size_t i = 0; i < sizeof cols / sizeof cols[0]; i++)
        printf("%s%*s", i ? " " : "", width[i], cols[i]);
    printf("\n");
    size_t idx;
    json_t *w;
    json_array_foreach(workers, idx, w) {
        const char *state = json_string_value(json_object_get(w, "state"));
        json_t *pid = json_object_get(w, "pid");
        if (state != NULL && strcmp(state, "empty") == 0 &&
            (!json_is_integer(pid) || json_integer_value(pid) == 0))
            continue; /* never started: not used here */
        for (size_t i = 0; i < sizeof cols / sizeof cols[0]; i++) {
            json_t *cell = json_object_get(w, cols[i]);
            char buf[64];
            if (json_is_string(cell))
                snprintf(buf, sizeof buf, "%s", json_string_value(cell));
            else if (json_is_integer(cell))
                snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(cell));
            else
                snprintf(buf, sizeof buf, "-");
            printf("%s%*s", i ? " " : "", width[i], buf);
        }
        printf("\n");
    }
}

static int do_text(const struct args *a, allocdb_client *c, const char *addrs)
{
    char *text = NULL;
    size_t len = 0;
    int rc = strcmp(a->cmd->name, "metrics") == 0 ? allocdb_metrics(c, &text, &len)
                                                   : allocdb_status(c, &text, &len);
    if (rc != ALLOCDB_OK)
        return call_failed(a, c, addrs, rc);
    json_error_t jerr;
    json_t *o = json_loadb(text, len, 0, &jerr);
    if (o == NULL) {
        /* Not JSON: show it as it came, but say so. */
        fprintf(stderr, "%s: the server's %s is not valid JSON (%s)\n", prog, a->cmd->name,
                jerr.text);
        fwrite(text, 1, len, stdout);
        fputc('\n', stdout);
        free(text);
        return EXIT_SOFTWARE;
    }
    free(text);
    if (!a->json && strcmp(a->cmd->name, "status") == 0) {
        print_status(o);
        json_decref(o);
        return EXIT_OK_;
    }
    char *s = json_dumps(o, (a->json ? JSON_COMPACT : JSON_INDENT(2)) | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (s == NULL)
        return EXIT_SOFTWARE;
    puts(s);
    free(s);
    return EXIT_OK_;
}

int main(int argc, char **argv)
{
    struct args a;
    parse_args(argc, argv, &a);
    if (a.version) {
        printf("allocdb %s (protocol %d)\n", PACKAGE_VERSION, 1);
        return 0;
    }
    if (a.cmd != NULL && strcmp(a.cmd->name, "help") == 0) {
        if (a.npos == 0) {
            print_usage(stdout);
            return 0;
        }
        const struct command *h = find_command(a.pos[0]);
        if (h == NULL || a.npos > 1)
            usage_error("help: unknown command '%s'", a.pos[0]);
        print_command_help(h);
        return 0;
    }
    if (a.help) {
        if (a.cmd != NULL)
            print_command_help(a.cmd);
        else
            print_usage(stdout);
        return 0;
    }
    if (a.cmd == NULL)
        usage_error("no command given");
    const struct command *cmd = a.cmd;
    if (a.npos != cmd->nargs)
        usage_error("%s takes %d argument%s (%s), got %d", cmd->name, cmd->nargs,
                    cmd->nargs == 1 ? "" : "s", *cmd->synopsis ? cmd->synopsis : "none", a.npos);
    if (a.has_ttl && !(cmd->opts & OPT_TTL))
        usage_error("--ttl is an option of reserve only");
    if (!a.has_ttl && (cmd->opts & OPT_TTL))
        usage_error("reserve needs --ttl DUR (e.g. --ttl 30s)");
    if (a.print_id && !(cmd->opts & OPT_TTL))
        usage_error("--print-id is an option of reserve only");
    if (a.print_id && a.json)
        usage_error("--print-id and --json exclude each other (the JSON has reservation_id)");
    if (a.has_min_lsn && !(cmd->opts & OPT_MIN_LSN))
        usage_error("--min-lsn is an option of get-resource and get-reservation only");
    if (a.has_op_id && !(cmd->opts & OPT_WRITE))
        usage_error("--op-id applies to writes only (create-resource, reserve, confirm, "
                    "release)");
    /* Check the ids before connecting, so a typo never waits for a server. */
    for (int i = 0; i < a.npos; i++)
        a.ids[i] = parse_id(cmd->argnames[i], a.pos[i]);

    const char *addrs = a.addr;
    if (addrs == NULL)
        addrs = getenv("ALLOCDB_ADDR");
    if (addrs == NULL || *addrs == '\0')
        addrs = ALLOCDB_DEFAULT_ADDR;
    allocdb_client *c = allocdb_new();
    if (c == NULL) {
        fprintf(stderr, "%s: out of memory\n", prog);
        return EXIT_SOFTWARE;
    }
    if (allocdb_set_addresses(c, addrs) != ALLOCDB_OK) {
        char msg[600];
        snprintf(msg, sizeof msg, "%s", allocdb_last_error(c));
        allocdb_free(c);
        usage_error("--addr: %s", msg);
    }
    allocdb_set_client_id(c, a.client_id);
    allocdb_set_retry_overloaded(c, true);
    uint64_t deadline = mono_ms() + a.timeout_ms;
    arm(c, deadline);

    int status;
    if (cmd->opts & OPT_WRITE)
        status = do_write(&a, c, addrs, argc, argv, deadline);
    else if (cmd->opts & OPT_MIN_LSN)
        status = do_read(&a, c, addrs, deadline);
    else if (strcmp(cmd->name, "tick") == 0)
        status = do_tick(&a, c, addrs);
    else
        status = do_text(&a, c, addrs);
    allocdb_free(c);
    if (fflush(stdout) != 0 && status == EXIT_OK_)
        status = EXIT_SOFTWARE;
    return status;
}
