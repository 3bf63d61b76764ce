/*
 * supervisor/log.h — one line per event to stderr (journald captures it):
 *
 *   2026-11-24T10:15:02.123Z info  sequencer wal_recovered last_lsn=42 torn=no
 *
 * time (UTC, ms), level, the process's role, an event name, then key=value fields. Values with
 * spaces are the caller's to quote. No line per command at the default level (info).
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
void log_event(enum log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_error(ev, ...) log_event(LOG_LEVEL_ERROR, ev, __VA_ARGS__)
#define log_warn(ev, ...) log_event(LOG_LEVEL_WARN, ev, __VA_ARGS__)
#define log_info(ev, ...) log_event(LOG_LEVEL_INFO, ev, __VA_ARGS__)
#define log_debug(ev, ...) log_event(LOG_LEVEL_DEBUG, ev, __VA_ARGS__)

#endif
