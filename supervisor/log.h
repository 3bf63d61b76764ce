/*
 * supervisor/log.h — one line per event to stderr (journald captures it):
 *
 *   2026-11-24T10:15:02.123Z info  sequencer wal_recovered last_lsn=42 torn=no
 *
 * time (UTC, ms), level, the process's role, an event name, then key=value fields. Values with
 * spaces are the caller's to quote. No line per command at the default level (info).
 *
 * log_level filters by level, except for the events an operator must always see (recovery,
 * worker starts, exits with their status or signal, restarts, hangs): those use log_always_*
 * and print at any log_level. Errors print at any level anyway.
 *
 * Under systemd (JOURNAL_STREAM names our stderr) each line starts with a <N> syslog priority,
 * which journald strips and stores, so `journalctl -p warning` works.
 *
 * NOTES
 *   log_init() once per process (after fork, with the role name). Each line is written with one
 *   write(2), so lines from different workers never interleave.
 */
#ifndef ADB_SUPERVISOR_LOG_H
#define ADB_SUPERVISOR_LOG_H

#include "supervisor/config.h"

void log_init(const char *who, enum log_level level);
bool log_enabled(enum log_level level);
void log_event(enum log_level level, bool always, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define log_error(ev, ...) log_event(LOG_LEVEL_ERROR, false, ev, __VA_ARGS__)
#define log_warn(ev, ...) log_event(LOG_LEVEL_WARN, false, ev, __VA_ARGS__)
#define log_info(ev, ...) log_event(LOG_LEVEL_INFO, false, ev, __VA_ARGS__)
#define log_debug(ev, ...) log_event(LOG_LEVEL_DEBUG, false, ev, __VA_ARGS__)
#define log_always_warn(ev, ...) log_event(LOG_LEVEL_WARN, true, ev, __VA_ARGS__)
#define log_always_info(ev, ...) log_event(LOG_LEVEL_INFO, true, ev, __VA_ARGS__)

#endif
