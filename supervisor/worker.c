/*
 * supervisor/worker.c — the process-level plumbing every worker shares (worker.h).
 */

#include "supervisor/worker.h"

#include "supervisor/log.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

static volatile sig_atomic_t stop_requested;

static void on_stop(int sig)
{
    (void)sig;
    stop_requested = 1; /* the loop notices; nothing else happens in a handler */
}

bool worker_enter(const struct worker_ctx *w)
{
    char title[64];
    snprintf(title, sizeof(title), "allocdbd: %s", worker_role_name(w->role));
    proc_title_set(title);
    prctl(PR_SET_NAME, worker_role_name(w->role), 0, 0, 0);
    /* Die with the supervisor; and if it died before the prctl took effect, notice now. */
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (getppid() != w->supervisor_pid)
        return false;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGCHLD, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL); /* the supervisor blocks some around fork */
    log_init(worker_role_name(w->role), w->cfg->log_level);
    char why[256];
    if (!segment_check(w->seg, why, sizeof(why))) {
        log_error("segment_rejected", "reason=\"%s\"", why);
        return false;
    }
    worker_heartbeat(w);
    return true;
}

void worker_heartbeat(const struct worker_ctx *w)
{
    atomic_store_explicit(&w->seg->workers[w->role].heartbeat_ms, mono_ms(), memory_order_relaxed);
}

void worker_set_ready(const struct worker_ctx *w)
{
    struct worker_slot *s = &w->seg->workers[w->role];
    atomic_store_explicit(&s->ready_ms, mono_ms(), memory_order_relaxed);
    /* Not s->state: that is the supervisor's word (it may be marking this worker stopping right
     * now); it reads this one and moves the state itself. */
    atomic_store_explicit(&s->ready_generation, w->generation, memory_order_release);
}

bool worker_should_stop(const struct worker_ctx *w)
{
    return stop_requested || getppid() != w->supervisor_pid;
}

bool worker_draining(const struct worker_ctx *w)
{
    return atomic_load_explicit(&w->seg->hdr->shutting_down, memory_order_acquire) != 0;
}

/* ---- process title -------------------------------------------------------------------- */
/* ps reads /proc/PID/cmdline, i.e. the argv area: we overwrite it in place (PostgreSQL's
 * ps_status.c does the same on Linux). The area is argv[0..argc) contiguous; environ that
 * follows it is left alone, so titles are limited to the original argv's length. */

static char *title_area;
static size_t title_cap;

void proc_title_init(int argc, char **argv)
{
    if (argc <= 0 || argv == NULL || argv[0] == NULL)
        return;
    char *end = argv[0] + strlen(argv[0]);
    for (int i = 1; i < argc; i++)
        if (argv[i] == end + 1)
            end = argv[i] + strlen(argv[i]);
    title_area = argv[0];
    title_cap = (size_t)(end - argv[0]) + 1;
}

void proc_title_set(const char *title)
{
    if (title_area == NULL || title_cap < 2)
        return;
    size_t n = strlen(title);
    if (n > title_cap - 1)
        n = title_cap - 1;
    memcpy(title_area, title, n);
    memset(title_area + n, 0, title_cap - n);
}
