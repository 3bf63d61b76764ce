/*
 * supervisor/supervisor.c — the supervision loop (states and rules in supervisor.h).
 */

#include "supervisor/supervisor.h"

#include "common/why.h"
#include "replica/meta.h"
#include "supervisor/lifecycle.h"
#include "supervisor/log.h"
#include "supervisor/segment.h"
#include "supervisor/worker.h"
#include "wal/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#define RESTART_HISTORY 1024
#define STARTUP_GRACE_FACTOR 20 /* recovery may take a while: heartbeat limit x this while starting */

struct sup {
    const struct config *cfg;
    struct segment seg;
    enum sup_state state;
    int exit_code;
    int listen_fd, admin_fd, lock_fd, peer_fd;
    bool clustered;
    int pipe_rd, pipe_wr;
    u64 restart_at[ROLE_COUNT];   /* 0: no restart pending */
    u32 recent_restarts[ROLE_COUNT]; /* for backoff */
    u64 history[RESTART_HISTORY];
    u32 history_count, history_head;
    u64 state_since_ms;
    u64 stop_sent_ms;
    int stop_role; /* role being stopped in SUP_STOPPING / SUP_FAILING, -1 when none */
    bool notified_ready;
    u64 kill_sent_ms[ROLE_COUNT];  /* hung worker killed at, until reaped; 0: none */
    u64 watchdog_every_ms;   /* 0: systemd's watchdog is off */
    u64 watchdog_last_ms;
    char listen_actual[CONFIG_ADDR_MAX], admin_actual[CONFIG_ADDR_MAX]; /* port 0 resolved */
};

static volatile sig_atomic_t got_term, got_child;
static int self_pipe_wr = -1;

static void on_signal(int sig)
{
    int saved = errno;
    if (sig == SIGCHLD)
        got_child = 1;
    else
        got_term = 1;
    if (self_pipe_wr >= 0) {
        char c = 0;
        ssize_t n = write(self_pipe_wr, &c, 1); /* wakes the loop's poll */
        (void)n;
    }
    errno = saved;
}

static void perform(struct sup *s, enum sup_action action);

/* Takes the row of supervisor/lifecycle.h for the event, if the state has one; `why` explains
 * events the table cannot (which failure). Returns whether the state changed. */
static bool fire(struct sup *s, enum sup_event ev, const char *why)
{
    const struct sup_transition *t = sup_transition(s->state, ev);
    if (t == NULL)
        return false;
    log_info("supervisor_state", "from=%s to=%s why=\"%s\"", sup_state_name(s->state), sup_state_name(t->to),
             t->why != NULL ? t->why : why);
    s->state = t->to;
    s->state_since_ms = mono_ms();
    perform(s, t->action);
    return true;
}

/* ---- start-up checks -------------------------------------------------------------------- */

static bool has_wal(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return false;
    struct dirent *e;
    bool found = false;
    u64 lsn;
    while (!found && (e = readdir(d)) != NULL)
        found = wal_segment_parse_name(e->d_name, &lsn);
    closedir(d);
    return found;
}

static int lock_data_dir(struct sup *s)
{
    char path[CONFIG_PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/LOCK", s->cfg->data_dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        log_error("start_refused", "reason=\"cannot open %s: %s\"", path, strerror(errno));
        return ADBD_EXIT_NOT_FORMATTED;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        char other[32] = "";
        ssize_t n = pread(fd, other, sizeof(other) - 1, 0);
        other[n > 0 ? n : 0] = 0;
        other[strcspn(other, "\n")] = 0;
        log_error("start_refused", "reason=\"data dir %s is locked by another allocdbd (pid %s)\"",
                  s->cfg->data_dir, other[0] ? other : "?");
        close(fd);
        return ADBD_EXIT_LOCKED;
    }
    char pid[32];
    int len = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)len, 0) != len)
        log_warn("lock_pid_not_written", "path=%s", path);
    s->lock_fd = fd; /* held (and inherited by the workers) until the daemon exits */
    return 0;
}

/*
 * The settings that change what replay computes must be the ones the data was formatted with
 * (DESIGN.md §3). A data dir formatted before they were stored gets this config's values now.
 * The replicas key must fit the replica the data dir is. LMDB is opened and closed here,
 * before any fork (an environment must not cross one).
 */
static int check_meta(const struct config *cfg, u64 *replica)
{
    struct meta *m;
    struct meta_record rec;
    char why[512];
    int rc = meta_open(cfg->data_dir, false, &m, why, sizeof(why));
    if (rc == 0) {
        rc = meta_read(m, &rec, why, sizeof(why));
        if (rc == 0 && !meta_pins_set(&rec.pins)) {
            struct meta_pins pins;
            config_pins(cfg, &pins);
            rc = meta_set_pins(m, &pins, why, sizeof(why));
            if (rc == 0)
                log_always_warn("config_pinned", "reason=\"the data directory predates pinned settings: this "
                                "configuration's slot_duration_ms, capacities and windows are now fixed\"");
        }
        meta_close(m);
    }
    if (rc != 0) {
        log_error("meta_unreadable", "reason=\"%s\"", why);
        return ADBD_EXIT_META;
    }
    if (meta_pins_set(&rec.pins) && config_pins_check(cfg, &rec.pins, why, sizeof(why)) != 0) {
        log_error("start_refused", "reason=\"%s\"", why);
        return ADBD_EXIT_CONFIG_MISMATCH;
    }
    if (config_cluster_check(cfg, rec.replica_id, rec.replica_count, why, sizeof(why)) != 0) {
        log_error("start_refused", "reason=\"%s\"", why);
        return ADBD_EXIT_CONFIG;
    }
    *replica = rec.replica_id;
    if (rec.replica_count > 1)
        log_always_info("replica", "replica=%" PRIu64 " of=%" PRIu64 " status=%s", rec.replica_id, rec.replica_count,
                        meta_status_name((enum meta_status)rec.status));
    return 0;
}

/*
 * Tables are allocated in full at start: a configuration this machine cannot hold would only
 * crash-loop the workers (and the service manager would restart it forever). Refused with the
 * figures instead, as a configuration error.
 */
bool supervisor_memory(const struct config *cfg, char *text, size_t cap)
{
    struct segment_layout l;
    char why[256];
    if (!segment_layout(cfg, &l, why, sizeof(why))) {
        snprintf(text, cap, "%s", why);
        return false;
    }
    u64 state = applier_memory(cfg), cache = sequencer_memory(cfg), need = state + cache + l.total;
    struct sysinfo si;
    u64 have = sysinfo(&si) == 0 ? ((u64)si.totalram + si.totalswap) * si.mem_unit : UINT64_MAX;
    const u64 mib = 1u << 20;
    bool fits = state != UINT64_MAX && need <= have;
    snprintf(text, cap,
             "the configuration needs %" PRIu64 " MiB (state machine %" PRIu64 " MiB, retry cache %" PRIu64
             " MiB, shared memory %" PRIu64 " MiB)%s this machine's %" PRIu64 " MiB of RAM and swap%s",
             need / mib, state / mib, cache / mib, l.total / mib, fits ? "; it fits in" : ", more than", have / mib,
             fits ? "" : ": lower the capacities (allocdb.conf(5))");
    return fits;
}

static int check_memory(const struct config *cfg)
{
    char text[512];
    if (!supervisor_memory(cfg, text, sizeof(text))) {
        log_error("start_refused", "reason=\"%s\"", text);
        return ADBD_EXIT_CONFIG;
    }
    log_info("memory", "text=\"%s\"", text);
    return 0;
}

/*
 * Every client connection is a descriptor of the ingress, which also needs a few of its own
 * (listeners, eventfd, admin connections, logs): max_connections must fit under RLIMIT_NOFILE,
 * or the ingress meets EMFILE instead of its own, explicit limit. The soft limit is raised as
 * far as the hard one allows; beyond that max_connections is lowered, saying so.
 */
#define FD_RESERVE 128

static void fit_descriptors(struct config *cfg)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    rlim_t need = (rlim_t)cfg->max_connections + FD_RESERVE;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
        rlim_t before = rl.rlim_cur;
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= need ? need : rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
            log_info("nofile_raised", "from=%llu to=%llu", (unsigned long long)before, (unsigned long long)rl.rlim_cur);
        else if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
            return;
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
        u32 fit = rl.rlim_cur > 2 * FD_RESERVE ? (u32)(rl.rlim_cur - FD_RESERVE) : (u32)(rl.rlim_cur / 2);
        log_always_warn("max_connections_lowered",
                        "from=%u to=%u reason=\"RLIMIT_NOFILE allows %llu descriptors and the daemon keeps %d for "
                        "itself; raise it (ulimit -n, LimitNOFILE=) to serve max_connections\"",
                        cfg->max_connections, fit, (unsigned long long)rl.rlim_cur, FD_RESERVE);
        cfg->max_connections = fit;
    }
}

/* "HOST:PORT" of a bound socket (port 0 in the config becomes the real one). */
static void bound_address(int fd, char *out, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char h[NI_MAXHOST], p[NI_MAXSERV];
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0 ||
        getnameinfo((struct sockaddr *)&ss, len, h, sizeof(h), p, sizeof(p), NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        snprintf(out, cap, "?");
        return;
    }
    snprintf(out, cap, ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", h, p);
}

static int open_listener(const char *addr, const char *what, int *out)
{
    char why[256];
    struct addrinfo *res = config_addr_lookup(addr, true, why, sizeof(why));
    if (res == NULL) {
        log_error("listen_failed", "%s=%s reason=\"%s\"", what, addr, why);
        return ADBD_EXIT_CONFIG;
    }
    int fd = -1, err = 0;
    for (struct addrinfo *ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 1024) != 0) {
            err = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0) {
        log_error("listen_failed", "%s=%s reason=\"%s\"", what, addr, strerror(err));
        return ADBD_EXIT_OSERR;
    }
    *out = fd;
    return 0;
}

/* ---- workers ---------------------------------------------------------------------------- */

static int role_main(enum worker_role r, const struct worker_ctx *w)
{
    switch (r) {
    case ROLE_SEQUENCER: return sequencer_main(w);
    case ROLE_APPLIER: return applier_main(w);
    case ROLE_INGRESS: return ingress_main(w);
    case ROLE_PEER: return peer_main(w);
    }
    return WORKER_EXIT_CRASH;
}

static bool spawn(struct sup *s, enum worker_role r)
{
    struct worker_slot *slot = &s->seg.workers[r];
    u32 gen = atomic_load(&slot->generation) + 1;
    atomic_store(&slot->generation, gen);
    atomic_fetch_add(&s->seg.hdr->generation, 1);
    atomic_store(&slot->state, WORKER_STARTING);
    atomic_store(&slot->started_ms, mono_ms()); /* the heartbeat is the worker's word: not reset here */
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &old); /* no handler runs in the child before it sets its own */
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGCHLD, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        close(s->pipe_rd);
        close(s->pipe_wr);
        self_pipe_wr = -1;
        struct worker_ctx w = { .cfg = s->cfg, .seg = &s->seg, .role = r, .generation = gen,
                                .listen_fd = s->listen_fd, .admin_fd = s->admin_fd, .peer_fd = s->peer_fd,
                                .supervisor_pid = getppid() };
        _exit(role_main(r, &w));
    }
    int err = errno;
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (pid < 0) {
        log_error("fork_failed", "role=%s reason=\"%s\"", worker_role_name(r), strerror(err));
        atomic_store(&slot->state, WORKER_EXITED);
        return false;
    }
    atomic_store(&slot->pid, (i32)pid);
    log_always_info("worker_started", "role=%s pid=%d generation=%u restarts=%u", worker_role_name(r), (int)pid, gen,
             atomic_load(&slot->restarts));
    return true;
}

static bool alive(const struct sup *s, enum worker_role r)
{
    u32 st = atomic_load(&s->seg.workers[r].state);
    return st == WORKER_STARTING || st == WORKER_READY || st == WORKER_STOPPING;
}

static void describe_status(int status, char *out, size_t cap)
{
    if (WIFEXITED(status))
        snprintf(out, cap, "exit=%d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(out, cap, "signal=%s", sigabbrev_np(WTERMSIG(status)) ? sigabbrev_np(WTERMSIG(status)) : "?");
    else
        snprintf(out, cap, "status=%d", status);
}

static void fail(struct sup *s, int code, const char *why)
{
    if (sup_transition(s->state, SUP_EV_FAILURE) == NULL)
        return; /* stopping anyway: the first exit code stays */
    s->exit_code = code;
    fire(s, SUP_EV_FAILURE, why);
}

/* Decides what a worker's exit means. */
static void worker_exited(struct sup *s, enum worker_role r, int status)
{
    struct worker_slot *slot = &s->seg.workers[r];
    u32 prev = atomic_load(&slot->state);
    atomic_store(&slot->state, WORKER_EXITED);
    atomic_store(&slot->last_exit, status);
    atomic_store(&slot->pid, 0);
    s->kill_sent_ms[r] = 0;
    char how[48];
    describe_status(status, how, sizeof(how));
    bool asked = prev == WORKER_STOPPING;
    /* A clean exit is a stop, not a failure, when the supervisor asked for it or when the
     * daemon's own stop signal reached the worker too: a signal to the process group (Ctrl-C in
     * a terminal sends SIGINT to every process in it) stops workers the supervisor has not
     * asked yet. got_term is already set then: the group's signal was pending for the
     * supervisor before the worker could act on its copy, and is handled before waitpid
     * returns. */
    bool stop_signal = s->state >= SUP_DRAINING || got_term;
    if ((asked || stop_signal) && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        log_info("worker_stopped", "role=%s %s%s", worker_role_name(r), how,
                 asked ? "" : " cause=stop_signal");
        return;
    }
    if (s->state < SUP_DRAINING && WIFEXITED(status) && WEXITSTATUS(status) == WORKER_EXIT_RELOAD) {
        /* Not a failure: the state it held was replaced on disk. Restarted now, uncounted. */
        log_always_info("worker_reload", "role=%s", worker_role_name(r));
        s->restart_at[r] = mono_ms();
        atomic_fetch_add(&slot->restarts, 1);
        return;
    }
    log_always_warn("worker_exited", "role=%s %s state=%s", worker_role_name(r), how, worker_state_name(prev));
    if (s->state >= SUP_DRAINING)
        return; /* stopping anyway */
    if (WIFEXITED(status)) {
        switch (WEXITSTATUS(status)) {
        case WORKER_EXIT_FATAL:
            fail(s, ADBD_EXIT_CORRUPT, "a worker found corruption or a storage failure");
            return;
        case WORKER_EXIT_META:
            fail(s, ADBD_EXIT_META, "the replica metadata contradicts the data");
            return;
        case WORKER_EXIT_CONFIG:
            fail(s, ADBD_EXIT_CONFIG_MISMATCH, "the data was written under a different config");
            return;
        case WORKER_EXIT_RESTART:
            fail(s, ADBD_EXIT_SHM_CORRUPT, "the shared memory failed its checks: restart from disk");
            return;
        default:
            break;
        }
    }
    /* Restart intensity: more than N restarts within the window stops the daemon. */
    u64 now = mono_ms();
    s->history[s->history_head] = now;
    s->history_head = (s->history_head + 1) % RESTART_HISTORY;
    if (s->history_count < RESTART_HISTORY)
        s->history_count++;
    u32 recent = 0;
    for (u32 i = 0; i < s->history_count; i++)
        if (now - s->history[i] <= s->cfg->restart_intensity_window_ms)
            recent++;
    if (recent > s->cfg->restart_intensity_max) {
        char why[160];
        snprintf(why, sizeof(why), "restart intensity exceeded: %u restarts within %" PRIu64 " ms (limit %u)", recent,
                 s->cfg->restart_intensity_window_ms, s->cfg->restart_intensity_max);
        log_error("restart_intensity_exceeded", "restarts=%u window_ms=%" PRIu64 " limit=%u last_role=%s", recent,
                  s->cfg->restart_intensity_window_ms, s->cfg->restart_intensity_max, worker_role_name(r));
        fail(s, ADBD_EXIT_RESTARTS, why);
        return;
    }
    /* The first restart is immediate; more within the window back off, doubling. */
    u64 delay = 0;
    if (s->recent_restarts[r] > 0) {
        delay = 100;
        for (u32 i = 1; i < s->recent_restarts[r] && delay < s->cfg->restart_backoff_max_ms; i++)
            delay *= 2;
        if (delay > s->cfg->restart_backoff_max_ms)
            delay = s->cfg->restart_backoff_max_ms;
    }
    s->recent_restarts[r]++;
    s->restart_at[r] = now + delay;
    atomic_fetch_add(&slot->restarts, 1);
    log_always_info("worker_restart_scheduled", "role=%s delay_ms=%" PRIu64, worker_role_name(r), delay);
}

static void reap(struct sup *s)
{
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid <= 0)
            return;
        for (int r = 0; r < ROLE_COUNT; r++)
            if (atomic_load(&s->seg.workers[r].pid) == (i32)pid)
                worker_exited(s, (enum worker_role)r, status);
    }
}

/* The newer of its heartbeat and its fork: a new instance's first heartbeat may not be there. */
static u64 last_sign_of_life(struct worker_slot *slot)
{
    u64 hb = atomic_load(&slot->heartbeat_ms), started = atomic_load(&slot->started_ms);
    return hb > started ? hb : started;
}

/* A running or recovering worker silent for longer than the heartbeat limit (times the startup
 * grace while it recovers). */
static bool heartbeat_stale(const struct sup *s, struct worker_slot *slot, u64 now)
{
    u32 st = atomic_load(&slot->state);
    if (st != WORKER_READY && st != WORKER_STARTING)
        return false;
    u64 limit = s->cfg->heartbeat_timeout_ms * (st == WORKER_STARTING ? STARTUP_GRACE_FACTOR : 1);
    u64 hb = last_sign_of_life(slot);
    return now > hb && now - hb > limit;
}

/* A worker that said it is ready (in its own word) becomes ready in the supervisor's. */
static void note_ready(struct sup *s)
{
    for (int r = 0; r < ROLE_COUNT; r++) {
        struct worker_slot *slot = &s->seg.workers[r];
        if (atomic_load(&slot->state) == WORKER_STARTING &&
            atomic_load_explicit(&slot->ready_generation, memory_order_acquire) == atomic_load(&slot->generation))
            atomic_store(&slot->state, WORKER_READY);
    }
}

static void check_heartbeats(struct sup *s)
{
    u64 now = mono_ms();
    for (int r = 0; r < ROLE_COUNT; r++) {
        struct worker_slot *slot = &s->seg.workers[r];
        if (!heartbeat_stale(s, slot, now))
            continue;
        /* Kill once per hang; the reap restarts it. A worker that outlives its SIGKILL (stuck in
         * the kernel on a dead disk) stays stale, so the watchdog stops and systemd steps in. */
        u64 since = s->kill_sent_ms[r];
        if (since != 0 && now - since < s->cfg->heartbeat_timeout_ms)
            continue;
        u64 hb = last_sign_of_life(slot);
        i32 pid = atomic_load(&slot->pid);
        log_always_warn(since == 0 ? "worker_hung" : "worker_not_dying", "role=%s pid=%d heartbeat_age_ms=%" PRIu64 " action=kill",
                 worker_role_name(r), pid, now - hb);
        if (pid > 0)
            kill(pid, SIGKILL);
        s->kill_sent_ms[r] = now;
    }
    /* A worker that stayed up a whole window earns a fresh backoff. */
    for (int r = 0; r < ROLE_COUNT; r++) {
        struct worker_slot *slot = &s->seg.workers[r];
        if (atomic_load(&slot->state) == WORKER_READY &&
            now - atomic_load(&slot->started_ms) > s->cfg->restart_intensity_window_ms)
            s->recent_restarts[r] = 0;
    }
}

static void restarts_due(struct sup *s)
{
    u64 now = mono_ms();
    for (int r = 0; r < ROLE_COUNT; r++) {
        if (s->restart_at[r] != 0 && now >= s->restart_at[r]) {
            s->restart_at[r] = 0;
            if (!spawn(s, (enum worker_role)r))
                s->restart_at[r] = now + 1000;
        }
    }
}

static void notify_status(struct sup *s)
{
    char st[160];
    snprintf(st, sizeof(st), "STATUS=primary durable_lsn=%" PRIu64 " applied_lsn=%" PRIu64,
             (u64)atomic_load(&s->seg.seq->durable_lsn), (u64)atomic_load(&s->seg.app->applied_lsn));
    sd_notify(0, st);
}

/* Fresh: every worker that should be running has a recent heartbeat (a recovering one gets the
 * same grace check_heartbeats gives it); none is down awaiting a restart. */
static bool workers_fresh(struct sup *s)
{
    u64 now = mono_ms();
    for (int r = 0; r < ROLE_COUNT; r++) {
        struct worker_slot *slot = &s->seg.workers[r];
        u32 st = atomic_load(&slot->state);
        if (s->restart_at[r] != 0 || st == WORKER_EXITED || heartbeat_stale(s, slot, now))
            return false; /* EMPTY is fine: not started yet, or the peer on a single node */
    }
    return true;
}

/* systemd's watchdog hears from the supervisor loop only while the workers are healthy, so a
 * worker the supervisor cannot heal (or a stuck supervisor) gets the whole service restarted. */
static void watchdog_ping(struct sup *s)
{
    if (s->watchdog_every_ms == 0 || mono_ms() - s->watchdog_last_ms < s->watchdog_every_ms)
        return;
    if (!workers_fresh(s))
        return; /* tried again on the next loop turn */
    sd_notify(0, "WATCHDOG=1");
    s->watchdog_last_ms = mono_ms();
}

/* Stops workers in reverse start order: SIGTERM, then SIGKILL after the shutdown timeout. */
static bool stop_next(struct sup *s, bool force_now)
{
    /* The peer after the ingress: what the ingress drains may still need a quorum. */
    static const enum worker_role order[] = { ROLE_INGRESS, ROLE_PEER, ROLE_APPLIER, ROLE_SEQUENCER };
    u64 now = mono_ms();
    for (size_t i = 0; i < ADB_ARRAY_LEN(order); i++) {
        enum worker_role r = order[i];
        s->restart_at[r] = 0;
        if (!alive(s, r))
            continue;
        struct worker_slot *slot = &s->seg.workers[r];
        i32 pid = atomic_load(&slot->pid);
        if (s->stop_role != (int)r) {
            s->stop_role = (int)r;
            s->stop_sent_ms = now;
            atomic_store(&slot->state, WORKER_STOPPING);
            log_info("worker_stopping", "role=%s pid=%d signal=%s", worker_role_name(r), pid,
                     force_now ? "KILL" : "TERM");
            kill(pid, force_now ? SIGKILL : SIGTERM);
        } else if (now - s->stop_sent_ms > s->cfg->shutdown_timeout_ms) {
            log_warn("worker_stop_timeout", "role=%s pid=%d action=kill", worker_role_name(r), pid);
            kill(pid, SIGKILL);
            s->stop_sent_ms = now;
        }
        return false; /* one at a time */
    }
    return true;
}

static void step(struct sup *s)
{
    switch (s->state) {
    case SUP_START_SEQUENCER:
    case SUP_START_APPLIER:
    case SUP_START_INGRESS: {
        enum worker_role r = s->state == SUP_START_SEQUENCER ? ROLE_SEQUENCER
                             : s->state == SUP_START_APPLIER ? ROLE_APPLIER
                                                             : ROLE_INGRESS;
        if (atomic_load(&s->seg.workers[r].state) == WORKER_EMPTY) {
            if (!spawn(s, r))
                fail(s, ADBD_EXIT_OSERR, "cannot fork a worker");
            break;
        }
        if (atomic_load(&s->seg.workers[r].state) == WORKER_READY)
            fire(s, SUP_EV_STARTING_READY, NULL);
        break;
    }
    case SUP_RUNNING:
        /* A cluster's transport, once the sequencer has published which replica this is. */
        if (s->clustered && atomic_load(&s->seg.workers[ROLE_PEER].state) == WORKER_EMPTY && !spawn(s, ROLE_PEER))
            fail(s, ADBD_EXIT_OSERR, "cannot fork a worker");
        break;
    case SUP_DRAINING:
        /* The ingress answers what is in flight and exits; then the rest stop. */
        if (alive(s, ROLE_INGRESS) && mono_ms() - s->state_since_ms <= s->cfg->shutdown_timeout_ms + 1000)
            break;
        fire(s, SUP_EV_DRAINED, NULL);
        /* fall through */
    case SUP_STOPPING:
    case SUP_FAILING:
        if (stop_next(s, false))
            fire(s, SUP_EV_ALL_STOPPED, NULL);
        break;
    case SUP_DONE:
    case SUP_STATE_COUNT:
        break;
    }
}

/* What a transition's row asks for (supervisor/lifecycle.h). */
static void perform(struct sup *s, enum sup_action action)
{
    switch (action) {
    case SUP_ACT_NONE:
    case SUP_ACT_START_NEXT: /* step() starts the worker of the new start_* state */
        break;
    case SUP_ACT_NOTIFY_READY:
        if (!s->notified_ready) {
            sd_notify(0, "READY=1");
            s->notified_ready = true;
            log_always_info("ready", "listen=%s admin_listen=%s durable_lsn=%" PRIu64 " applied_lsn=%" PRIu64,
                            s->listen_actual, s->admin_actual, (u64)atomic_load(&s->seg.seq->durable_lsn),
                            (u64)atomic_load(&s->seg.app->applied_lsn));
        }
        break;
    case SUP_ACT_DRAIN:
        sd_notify(0, "STOPPING=1");
        atomic_store(&s->seg.hdr->shutting_down, 1);
        s->stop_role = -1;
        if (alive(s, ROLE_INGRESS)) {
            struct worker_slot *slot = &s->seg.workers[ROLE_INGRESS];
            atomic_store(&slot->state, WORKER_STOPPING);
            s->stop_role = ROLE_INGRESS;
            s->stop_sent_ms = mono_ms();
            kill(atomic_load(&slot->pid), SIGTERM);
        }
        break;
    case SUP_ACT_STOP_WORKERS:
        s->stop_role = -1;
        break;
    }
}

int supervisor_run(const struct config *cfg, int argc, char **argv)
{
    proc_title_init(argc, argv);
    log_init("supervisor", cfg->log_level);
    static struct sup one; /* one supervisor per process: nothing to free on any exit path */
    struct sup *s = &one;
    memset(s, 0, sizeof(*s));
    static struct config effective; /* the config as run: max_connections may be lowered */
    effective = *cfg;
    fit_descriptors(&effective);
    cfg = &effective;
    s->cfg = cfg;
    s->listen_fd = s->admin_fd = s->lock_fd = s->peer_fd = -1;
    s->stop_role = -1;

    struct stat st;
    if (stat(cfg->data_dir, &st) != 0 || !S_ISDIR(st.st_mode) || !meta_exists(cfg->data_dir) ||
        !has_wal(cfg->data_dir)) {
        log_error("start_refused", "reason=\"%s is not a formatted AllocDB data directory; create one with "
                  "'allocdbd format --data-dir %s'\"", cfg->data_dir, cfg->data_dir);
        return ADBD_EXIT_NOT_FORMATTED;
    }
    u64 replica = 0;
    int rc = check_memory(cfg);
    if (rc == 0)
        rc = lock_data_dir(s);
    if (rc == 0)
        rc = check_meta(cfg, &replica);
    if (rc == 0)
        rc = open_listener(cfg->listen, "listen", &s->listen_fd);
    if (rc == 0 && cfg->admin_listen[0] != 0)
        rc = open_listener(cfg->admin_listen, "admin_listen", &s->admin_fd);
    char peers[CONFIG_REPLICAS_MAX][CONFIG_ADDR_MAX];
    u32 replicas = config_replicas(cfg, peers, CONFIG_REPLICAS_MAX);
    s->clustered = replicas > 1;
    if (rc == 0 && s->clustered) {
        /* Held here, like the client port, so a restarted peer worker never loses it. Which
         * entry is ours: the metadata's replica, checked against the config by check_meta. */
        const char *at = cfg->peer_listen[0] != 0 ? cfg->peer_listen : peers[replica < replicas ? replica : 0];
        rc = open_listener(at, "peer_listen", &s->peer_fd);
    }
    if (rc != 0)
        return rc;
    bound_address(s->listen_fd, s->listen_actual, sizeof(s->listen_actual));
    if (s->admin_fd >= 0)
        bound_address(s->admin_fd, s->admin_actual, sizeof(s->admin_actual));
    char why[256];
    if (segment_create(&s->seg, cfg, why, sizeof(why)) != 0) {
        log_error("start_failed", "reason=\"%s\"", why);
        return ADBD_EXIT_OSERR;
    }
    int p[2];
    if (pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0)
        return ADBD_EXIT_OSERR;
    s->pipe_rd = p[0];
    s->pipe_wr = p[1];
    self_pipe_wr = p[1];
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGCHLD, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN);

    log_always_info("starting", "version=%s data_dir=%s listen=%s admin_listen=%s shm_bytes=%" PRIu64, PACKAGE_VERSION,
             cfg->data_dir, s->listen_actual, s->admin_fd >= 0 ? s->admin_actual : "off", s->seg.size);
    uint64_t watchdog_usec = 0;
    if (sd_watchdog_enabled(0, &watchdog_usec) > 0 && watchdog_usec >= 2000) {
        s->watchdog_every_ms = watchdog_usec / 2000; /* ping at twice the rate systemd demands */
        log_info("watchdog", "interval_ms=%" PRIu64 " ping_every_ms=%" PRIu64, (u64)(watchdog_usec / 1000),
                 s->watchdog_every_ms);
    }
    s->state = SUP_START_SEQUENCER;
    s->state_since_ms = mono_ms();
    u64 last_status = 0;
    while (s->state != SUP_DONE) {
        struct pollfd pfd = { .fd = s->pipe_rd, .events = POLLIN };
        poll(&pfd, 1, 50);
        char buf[64];
        while (read(s->pipe_rd, buf, sizeof(buf)) > 0)
            ;
        if (got_term) {
            got_term = 0;
            fire(s, SUP_EV_STOP_SIGNAL, NULL);
        }
        got_child = 0;
        reap(s);
        note_ready(s);
        if (s->state < SUP_DRAINING) {
            check_heartbeats(s);
            restarts_due(s);
        }
        step(s);
        if (s->state < SUP_DRAINING)
            watchdog_ping(s);
        if (s->notified_ready && mono_ms() - last_status > 1000) {
            notify_status(s);
            last_status = mono_ms();
        }
    }
    /* Reap anything left (a worker killed in the last step). */
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
    log_always_info("exiting", "code=%d", s->exit_code);
    int code = s->exit_code;
    segment_destroy(&s->seg);
    close(s->listen_fd);
    if (s->admin_fd >= 0)
        close(s->admin_fd);
    if (s->peer_fd >= 0)
        close(s->peer_fd);
    close(s->lock_fd);
    return code;
}
