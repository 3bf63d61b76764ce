/*
 * supervisor/log.c — event lines to stderr (format in log.h).
 */

#include "supervisor/log.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char log_who[32] = "allocdbd";
static enum log_level log_level_now = LOG_LEVEL_INFO;

static int log_to_journal = -1; /* unknown until log_init or the first line */

static const char *const level_names[] = { "error", "warn", "info", "debug" };
static const int level_priorities[] = { 3, 4, 6, 7 }; /* syslog: err, warning, info, debug */

/* systemd sets JOURNAL_STREAM=DEV:INODE for the stream it connected; it counts only if that is
 * still our stderr (not, say, a file a test redirected it to). */
static bool stderr_is_journal(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    uintmax_t dev, ino;
    struct stat st;
    if (js == NULL || sscanf(js, "%ju:%ju", &dev, &ino) != 2 || fstat(STDERR_FILENO, &st) != 0)
        return false;
    return (uintmax_t)st.st_dev == dev && (uintmax_t)st.st_ino == ino;
}

void log_init(const char *who, enum log_level level)
{
    snprintf(log_who, sizeof(log_who), "%s", who);
    log_level_now = level;
    log_to_journal = stderr_is_journal();
}

bool log_enabled(enum log_level level)
{
    return level <= log_level_now;
}

void log_event(enum log_level level, bool always, const char *event, const char *fmt, ...)
{
    if (!always && !log_enabled(level))
        return;
    char line[2048];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char prio[8] = "";
    if (log_to_journal < 0)
        log_to_journal = stderr_is_journal();
    if (log_to_journal)
        snprintf(prio, sizeof(prio), "<%d>", level_priorities[level]);
    int n = snprintf(line, sizeof(line), "%s%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s %s %s ", prio,
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, level_names[level], log_who, event);
    if (n < 0 || (size_t)n >= sizeof(line))
        return;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2;
    while (len > 0 && line[len - 1] == ' ')
        len--;
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len); /* one write: lines never interleave */
    (void)w;
}
