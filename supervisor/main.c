/*
 * supervisor/main.c — the allocdbd command line: format, start, stop, check-config, --version,
 * --help.
 *
 * Every config key is also a flag (slot_duration_ms <-> --slot-duration-ms); flags override the
 * file given with --config. Errors are one line on stderr and a distinct exit code
 * (supervisor/supervisor.h, allocdbd(8)).
 */

#include "common/why.h"
#include "replica/meta.h"
#include "supervisor/config.h"
#include "supervisor/log.h"
#include "supervisor/supervisor.h"
#include "wal/io.h"
#include "wal/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>


#define STOP_DEFAULT_TIMEOUT_MS 60000u
#define REPLICAS_MAX 5 /* a cluster has 1, 3 or 5 replicas */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: allocdbd format --data-dir DIR [--cluster-id ID] [--replica I --replica-count N]\n"
            "       allocdbd recover --data-dir DIR --cluster-id ID --replica I --replica-count N\n"
            "       allocdbd start --data-dir DIR [--config FILE] [--listen HOST:PORT]\n"
            "                      [--admin-listen HOST:PORT] [--KEY VALUE ...]\n"
            "       allocdbd stop --data-dir DIR [--config FILE] [--timeout DUR]\n"
            "       allocdbd check-config [--config FILE] [--KEY VALUE ...]\n"
            "       allocdbd --version | --help\n"
            "\n"
            "AllocDB daemon: a supervisor that runs the sequencer, applier and ingress workers in the\n"
            "foreground (no self-daemonizing; use the systemd unit). See allocdbd(8), allocdb.conf(5).\n"
            "stop sends SIGTERM to the daemon that holds DIR/LOCK (if one does) and waits up to DUR\n"
            "(default 60s) until it has exited.\n"
            "format makes an empty DIR replica I (default 0) of an N-replica cluster (1, 3 or 5;\n"
            "default 1); every replica of a cluster is formatted with the same --cluster-id (required\n"
            "when N > 1). recover formats the empty DIR of a replica whose disk was lost: it may have\n"
            "acknowledged writes and voted before, so it neither votes nor acknowledges until it has\n"
            "caught up from the others.\n"
            "\n"
            "Configuration keys (file: key = value; flag: --key-with-dashes VALUE):\n");
    const char *name, *help, *def;
    for (u32 i = 0; config_key_info(i, &name, &help, &def); i++) {
        char flag[96];
        config_key_to_flag(name, flag, sizeof(flag));
        fprintf(out, "  --%-30s %s (default %s)\n", flag, help, def[0] != 0 ? def : "empty");
    }
    fprintf(out, "\nExit codes: 0 stopped cleanly (stop: stopped, or was not running); 1 worker failure;\n"
                 "2 data dir missing or not formatted; 3 data dir locked; 4 metadata contradicts the WAL;\n"
                 "5 corruption or storage failure; 6 restart intensity exceeded; 7 data written under\n"
                 "another config (a pinned setting differs); 8 shared memory failed its checks (restart:\n"
                 "the disk is intact); 9 format: the directory is not empty; 10 stop: still running after\n"
                 "--timeout; 64 usage; 71 OS error; 78 invalid configuration.\n");
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "allocdbd: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n(allocdbd --help for usage)\n");
    va_end(ap);
    return ADBD_EXIT_USAGE;
}

/* A rejected config: for `start` an error event line like every other (journald keeps it),
 * for check-config a plain message. Both give file:line or the flag, and the reason. */
static bool config_errors_as_events;
static int config_rejected(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int config_rejected(const char *fmt, ...)
{
    char why[640];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    if (config_errors_as_events)
        log_error("config_rejected", "reason=\"%s\"", why);
    else
        fprintf(stderr, "allocdbd: %s\n", why);
    return ADBD_EXIT_CONFIG;
}

/* format's and recover's own flags: which replica of which cluster the data dir becomes. */
struct format_args {
    u128 cluster_id; /* 0: not given */
    u64 replica;
    u64 replica_count;
};

/* A --replica or --replica-count value: a plain decimal below limit. */
static bool parse_small(const char *value, u64 limit, u64 *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(value, &end, 10);
    if (errno != 0 || *end != 0 || value[0] < '0' || value[0] > '9' || v >= limit)
        return false;
    *out = v;
    return true;
}

/* Parses --config first, then every --key VALUE / --key=VALUE over it; fa: format's and
 * recover's flags (NULL: not accepted). */
static int parse_config(int argc, char **argv, int first, struct config *cfg, struct format_args *fa)
{
    config_defaults(cfg);
    char why[512];
    for (int i = first; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 || strncmp(argv[i], "--config=", 9) == 0) {
            const char *path = argv[i][8] == '=' ? argv[i] + 9 : (i + 1 < argc ? argv[++i] : NULL);
            if (path == NULL)
                return usage_error("%s needs a value", "--config");
            if (config_load_file(cfg, path, why, sizeof(why)) != 0)
                return config_rejected("%s", why);
        }
    }
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0)
            return usage_error("unexpected argument '%s'", a);
        char flag[128];
        snprintf(flag, sizeof(flag), "%s", a + 2);
        const char *value = NULL;
        char *eq = strchr(flag, '=');
        if (eq != NULL) {
            *eq = 0;
            value = a + 2 + (eq - flag) + 1;
        }
        if (strcmp(flag, "config") == 0) {
            if (value == NULL)
                i++;
            continue;
        }
        if (value == NULL) {
            if (i + 1 >= argc)
                return usage_error("--%s needs a value", flag);
            value = argv[++i];
        }
        if (fa != NULL && strcmp(flag, "replica") == 0) {
            if (!parse_small(value, REPLICAS_MAX, &fa->replica))
                return usage_error("--replica %s: not a replica index (0 to %d)", value, REPLICAS_MAX - 1);
            continue;
        }
        if (fa != NULL && strcmp(flag, "replica-count") == 0) {
            if (!parse_small(value, REPLICAS_MAX + 1, &fa->replica_count) ||
                (fa->replica_count != 1 && fa->replica_count != 3 && fa->replica_count != 5))
                return usage_error("--replica-count %s: a cluster has 1, 3 or 5 replicas", value);
            continue;
        }
        if (strcmp(flag, "cluster-id") == 0 && fa != NULL) {
            u128 *cluster_id = &fa->cluster_id;
            char *end;
            errno = 0;
            unsigned long long hi = 0, lo;
            if (strncmp(value, "0x", 2) == 0 && strlen(value) > 18) { /* up to 128 bits of hex */
                char h[32];
                size_t n = strlen(value + 2) - 16;
                if (n > 16)
                    return usage_error("--cluster-id %s: more than 128 bits", value);
                snprintf(h, sizeof(h), "%.*s", (int)n, value + 2);
                hi = strtoull(h, &end, 16);
                if (*end != 0)
                    return usage_error("--cluster-id %s: not a number", value);
                lo = strtoull(value + 2 + n, &end, 16);
            } else {
                lo = strtoull(value, &end, 0);
            }
            if (errno != 0 || *end != 0 || value[0] == '-' || value[0] == 0)
                return usage_error("--cluster-id %s: not a number (decimal or 0x-hex)", value);
            *cluster_id = U128_MAKE(hi, lo);
            continue;
        }
        char key[128];
        if (!config_flag_to_key(flag, key, sizeof(key)))
            return usage_error("unknown option --%s", flag);
        if (config_set(cfg, key, value, why, sizeof(why)) != 0)
            return config_rejected("--%s: %s", flag, why);
    }
    if (config_validate(cfg, why, sizeof(why)) != 0)
        return config_rejected("invalid configuration: %s", why);
    return 0;
}

static bool dir_empty(const char *path)
{
    DIR *d = opendir(path);
    if (d == NULL)
        return false;
    struct dirent *e;
    bool empty = true;
    while (empty && (e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            empty = false;
    closedir(d);
    return empty;
}

/* format, and recover (a replica formatted again after its disk was lost). */
static int cmd_format(int argc, char **argv, bool recover)
{
    struct config cfg;
    struct format_args fa = { .replica_count = recover ? 0 : 1 };
    int rc = parse_config(argc, argv, 2, &cfg, &fa);
    if (rc != 0)
        return rc;
    const char *cmd = recover ? "recover" : "format";
    /* Never the default directory by accident: the operator names it, or a config file does. */
    bool named = false;
    for (int i = 2; i < argc; i++)
        named |= strncmp(argv[i], "--data-dir", 10) == 0 || strncmp(argv[i], "--config", 8) == 0;
    if (cfg.data_dir[0] == 0 || !named)
        return usage_error("%s needs --data-dir DIR (or a --config whose data_dir it formats)", cmd);
    if (recover && fa.replica_count == 0)
        return usage_error("%s", "recover needs --replica I --replica-count N: the replica it was");
    if (recover && fa.replica_count == 1)
        return usage_error("%s", "recover: a single replica has no others to recover from; its data is lost "
                           "(format a new one, or restore a backup of its data dir)");
    if (fa.replica >= fa.replica_count)
        return usage_error("--replica %" PRIu64 ": a %" PRIu64 "-replica cluster has replicas 0 to %" PRIu64,
                           fa.replica, fa.replica_count, fa.replica_count - 1);
    if (fa.replica_count > 1 && fa.cluster_id == 0)
        return usage_error("%s of a %" PRIu64 "-replica cluster needs --cluster-id ID: the same on every replica",
                           cmd, fa.replica_count);
    u128 cluster_id = fa.cluster_id;
    const char *dir = cfg.data_dir;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "allocdbd: cannot create %s: %s\n", dir, strerror(errno));
        return ADBD_EXIT_OSERR;
    }
    if (!dir_empty(dir)) {
        fprintf(stderr, "allocdbd: %s is not empty; format refuses to touch existing data\n", dir);
        return ADBD_EXIT_NOT_EMPTY;
    }
    chmod(dir, 0700);
    /* The first segment and the spare prepared at start must fit, with room for the metadata
     * and a first snapshot; a node that could not write from its first minute is no use. */
    struct statvfs vfs;
    u64 need = 2 * cfg.wal_segment_bytes + (8u << 20);
    if (statvfs(dir, &vfs) == 0 && (u64)vfs.f_bavail * vfs.f_frsize < need) {
        fprintf(stderr,
                "allocdbd: %s: %llu MiB free, but the first WAL segment and its spare (wal_segment_bytes = %llu "
                "MiB, twice) and the metadata need %llu MiB\n",
                dir, (unsigned long long)((u64)vfs.f_bavail * vfs.f_frsize >> 20),
                (unsigned long long)(cfg.wal_segment_bytes >> 20), (unsigned long long)(need >> 20));
        return ADBD_EXIT_OSERR;
    }
    while (cluster_id == 0) {
        u64 r[2];
        if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
            fprintf(stderr, "allocdbd: getrandom: %s\n", strerror(errno));
            return ADBD_EXIT_OSERR;
        }
        cluster_id = U128_MAKE(r[1], r[0]);
    }
    char why[512];
    struct wal_log_options opt = { .segment_bytes = cfg.wal_segment_bytes };
    struct meta_pins pins;
    config_pins(&cfg, &pins);
    rc = wal_log_format(&io_posix, dir, &opt, why, sizeof(why));
    if (rc == 0)
        rc = meta_format(dir, cluster_id, fa.replica, fa.replica_count,
                         recover ? META_STATUS_RECOVERING : META_STATUS_NORMAL, &pins, why, sizeof(why));
    if (rc != 0) {
        fprintf(stderr, "allocdbd: %s %s: %s\n", cmd, dir, why);
        return ADBD_EXIT_OSERR;
    }
    printf("%s %s cluster_id=0x%016" PRIx64 "%016" PRIx64 " replica_id=%" PRIu64 " replica_count=%" PRIu64 "%s\n",
           recover ? "formatted to recover" : "formatted", dir, U128_HI(cluster_id), U128_LO(cluster_id),
           fa.replica, fa.replica_count, recover ? " status=recovering" : "");
    return 0;
}

/* ---- stop ----------------------------------------------------------------------------------- */

static u64 stop_clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (u64)ts.tv_sec * 1000u + (u64)ts.tv_nsec / 1000000u;
}

/*
 * Whether a process holds the lock on fd's file: a non-blocking shared flock probe, released at
 * once. The running daemon (supervisor and workers) holds it exclusively for as long as any of
 * them lives, whatever pid the file names. (A start racing the probe may find the lock busy for
 * that instant and refuse with exit 3.)
 */
static bool lock_held(int fd)
{
    if (flock(fd, LOCK_SH | LOCK_NB) == 0) {
        flock(fd, LOCK_UN);
        return false;
    }
    return errno == EWOULDBLOCK;
}

/* The pid the LOCK file names (0 if none). */
static pid_t lock_pid(int fd)
{
    char buf[32];
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    char *end;
    long v = strtol(buf, &end, 10);
    return v > 0 && (*end == '\n' || *end == 0) ? (pid_t)v : 0;
}

/* 1 if process pid has the file (dev, ino) open, 0 if not, -1 (errno) if that cannot be seen. */
static int pid_has_open(pid_t pid, dev_t dev, ino_t ino)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    if (d == NULL)
        return -1;
    struct dirent *e;
    int found = 0;
    while (found == 0 && (e = readdir(d)) != NULL) {
        struct stat st;
        if (e->d_name[0] != '.' && fstatat(dirfd(d), e->d_name, &st, 0) == 0 && st.st_dev == dev &&
            st.st_ino == ino)
            found = 1;
    }
    closedir(d);
    return found;
}

/*
 * allocdbd stop: signals the daemon that holds DIR/LOCK and waits until the lock is free, i.e.
 * the supervisor and every worker have exited. The pid in LOCK is signalled only while the lock
 * is held and only if that process has LOCK open (a stale pid from an earlier run, or a pid
 * reused by another program, is never signalled).
 */
static int cmd_stop(int argc, char **argv)
{
    struct config cfg;
    config_defaults(&cfg);
    const char *dir = NULL;
    u64 timeout_ms = STOP_DEFAULT_TIMEOUT_MS;
    char why[512];
    for (int pass = 0; pass < 2; pass++) /* --config first, so --data-dir wins over its data_dir */
        for (int i = 2; i < argc; i++) {
            const char *a = argv[i];
            if (strncmp(a, "--", 2) != 0)
                return usage_error("stop: unexpected argument '%s'", a);
            const char *eq = strchr(a, '=');
            size_t nlen = eq != NULL ? (size_t)(eq - a) : strlen(a);
            const char *value = eq != NULL ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
            bool is_dir = nlen == 10 && strncmp(a, "--data-dir", nlen) == 0;
            bool is_config = nlen == 8 && strncmp(a, "--config", nlen) == 0;
            bool is_timeout = nlen == 9 && strncmp(a, "--timeout", nlen) == 0;
            if (!is_dir && !is_config && !is_timeout)
                return usage_error("stop takes --data-dir DIR, --config FILE and --timeout DUR; not %.*s",
                                   (int)nlen, a);
            if (value == NULL)
                return usage_error("%.*s needs a value", (int)nlen, a);
            if (pass == 0 && is_config && config_load_file(&cfg, value, why, sizeof(why)) != 0) {
                fprintf(stderr, "allocdbd: %s\n", why);
                return ADBD_EXIT_CONFIG;
            }
            if (pass == 1 && is_dir)
                dir = value;
            if (pass == 1 && is_timeout && (!config_parse_duration_ms(value, &timeout_ms) || timeout_ms == 0))
                return usage_error("--timeout %s: not a duration above zero (30s, 1500ms, 2m)", value);
        }
    if (dir == NULL)
        dir = cfg.data_dir;
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "allocdbd: stop: no data directory %s: %s\n", dir,
                access(dir, F_OK) == 0 ? "not a directory" : strerror(errno));
        return ADBD_EXIT_NOT_FORMATTED;
    }
    char path[CONFIG_PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/LOCK", dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        printf("allocdbd: not running: %s has no LOCK file (never started)\n", dir);
        return 0;
    }
    if (fd < 0) {
        fprintf(stderr, "allocdbd: stop: cannot open %s: %s\n", path, strerror(errno));
        return ADBD_EXIT_OSERR;
    }
    struct stat lst;
    if (fstat(fd, &lst) != 0) {
        fprintf(stderr, "allocdbd: stop: %s: %s\n", path, strerror(errno));
        close(fd);
        return ADBD_EXIT_OSERR;
    }
    pid_t pid = lock_pid(fd);
    if (!lock_held(fd)) {
        if (pid > 0)
            printf("allocdbd: not running: nothing holds %s (pid %d in it is from an earlier run)\n", path,
                   (int)pid);
        else
            printf("allocdbd: not running: nothing holds %s\n", path);
        close(fd);
        return 0;
    }
    /* The lock is held. A daemon that just took it writes its pid right after: look again. */
    for (int i = 0; i < 50 && pid <= 0; i++) {
        usleep(20000);
        pid = lock_pid(fd);
    }
    u64 start = stop_clock_ms();
    bool signalled = false;
    if (pid > 0) {
        int has = pid_has_open(pid, lst.st_dev, lst.st_ino);
        if (has < 0 && errno == EACCES) {
            fprintf(stderr, "allocdbd: stop: cannot inspect pid %d (holding %s?): permission denied; run as the "
                    "daemon's user or root\n", (int)pid, path);
            close(fd);
            return ADBD_EXIT_OSERR;
        }
        if (has == 1) {
            if (kill(pid, SIGTERM) != 0 && errno != ESRCH) {
                fprintf(stderr, "allocdbd: stop: cannot signal pid %d: %s\n", (int)pid, strerror(errno));
                close(fd);
                return ADBD_EXIT_OSERR;
            }
            signalled = true;
            printf("allocdbd: sent SIGTERM to pid %d (holds %s); waiting up to %" PRIu64 " ms\n", (int)pid, path,
                   timeout_ms);
        }
    }
    if (!signalled)
        printf("allocdbd: %s is held, but not by the pid it names (%d): signalling nothing, waiting up to %" PRIu64
               " ms for the holders to exit\n", path, (int)pid, timeout_ms);
    fflush(stdout);
    while (lock_held(fd)) {
        if (stop_clock_ms() - start >= timeout_ms) {
            fprintf(stderr, "allocdbd: stop: %s is still held after %" PRIu64 " ms%s; the daemon's log says what "
                    "it is doing (SIGKILL is left to you)\n", path, timeout_ms,
                    signalled ? " (SIGTERM was sent once)" : "");
            close(fd);
            return ADBD_EXIT_STOP_TIMEOUT;
        }
        usleep(20000);
    }
    close(fd);
    if (signalled)
        printf("allocdbd: stopped: pid %d and its workers have exited (%s is free) after %" PRIu64 " ms\n",
               (int)pid, path, stop_clock_ms() - start);
    else
        printf("allocdbd: stopped: %s is free after %" PRIu64 " ms\n", path, stop_clock_ms() - start);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return ADBD_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        /* Build features, so tests can size their loads (a debug build checks every invariant
         * after every apply: its cost grows with the table capacities). */
        char features[32] = "";
#ifdef ADB_DEBUG
        strcat(features, " debug");
#endif
#ifdef __SANITIZE_ADDRESS__
        strcat(features, " asan");
#endif
        printf("allocdbd %s%s%s%s\n", PACKAGE_VERSION, features[0] ? " (" : "", features[0] ? features + 1 : "",
               features[0] ? ")" : "");
        return 0;
    }
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    for (int i = 2; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        }
    if (strcmp(cmd, "format") == 0 || strcmp(cmd, "recover") == 0)
        return cmd_format(argc, argv, strcmp(cmd, "recover") == 0);
    if (strcmp(cmd, "stop") == 0)
        return cmd_stop(argc, argv);
    struct config cfg;
    if (strcmp(cmd, "check-config") == 0) {
        int rc = parse_config(argc, argv, 2, &cfg, NULL);
        if (rc != 0)
            return rc;
        config_print(&cfg, stdout);
        char mem[512];
        bool fits = supervisor_memory(&cfg, mem, sizeof(mem));
        printf("# memory: %s\n", mem); /* a comment: the output stays a valid config file */
        if (!fits) {
            fprintf(stderr, "allocdbd: %s\n", mem);
            return ADBD_EXIT_CONFIG;
        }
        return 0;
    }
    if (strcmp(cmd, "start") == 0) {
        config_errors_as_events = true;
        int rc = parse_config(argc, argv, 2, &cfg, NULL);
        if (rc != 0)
            return rc;
        if (cfg.data_dir[0] == 0)
            return usage_error("%s", "start needs --data-dir DIR (or data_dir in the config file)");
        return supervisor_run(&cfg, argc, argv);
    }
    return usage_error("unknown command '%s'", cmd);
}
