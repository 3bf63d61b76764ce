/*
 * bench/durable.c — a WAL for the benchmark scenarios (see durable.h).
 */
#include "config.h"

#include "bench/durable.h"

#include "common/assert.h"
#include "wal/log.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct bench_wal {
    struct wal_log log;
    char dir[WAL_PATH_MAX];
    u64 group, pending, syncs;
};

struct bench_wal *bench_wal_open(const char *parent, u64 group, u64 segment_bytes, char *why, size_t why_len)
{
    ADB_ASSERT(group >= 1);
    struct bench_wal *b = calloc(1, sizeof(*b));
    if (b == NULL) {
        snprintf(why, why_len, "out of memory");
        return NULL;
    }
    b->group = group;
    if (snprintf(b->dir, sizeof(b->dir), "%s/allocdb-bench.XXXXXX", parent) >= (int)sizeof(b->dir) ||
        mkdtemp(b->dir) == NULL) {
        snprintf(why, why_len, "cannot create a directory in %s: %s", parent, strerror(errno));
        free(b);
        return NULL;
    }
    struct wal_log_options opt = { .segment_bytes = segment_bytes };
    struct wal_open_report rep;
    if (wal_log_format(&io_posix, b->dir, &opt, why, why_len) != 0 ||
        wal_log_open(&b->log, &io_posix, b->dir, &opt, 1, NULL, NULL, &rep, why, why_len) != 0) {
        bench_remove_dir(b->dir);
        free(b);
        return NULL;
    }
    return b;
}

bool bench_wal_commit(struct bench_wal *b, char *why, size_t why_len)
{
    if (b->pending == 0)
        return true;
    int rc = wal_log_commit(&b->log);
    if (rc != 0) {
        snprintf(why, why_len, "WAL commit: %s", b->log.halt_reason);
        return false;
    }
    b->syncs++;
    b->pending = 0;
    return true;
}

bool bench_wal_log(struct bench_wal *b, u64 lsn, u64 slot, const struct sm_command *cmd, char *why, size_t why_len)
{
    u64 got;
    int rc = wal_log_append(&b->log, slot, 0, cmd, &got);
    if (rc != 0) {
        snprintf(why, why_len, "WAL append: %s", b->log.halted ? b->log.halt_reason : strerror(-rc));
        return false;
    }
    ADB_ASSERT(got == lsn);
    if (++b->pending == b->group)
        return bench_wal_commit(b, why, why_len);
    return true;
}

u64 bench_wal_syncs(const struct bench_wal *b)
{
    return b->syncs;
}

u64 bench_wal_bytes(const struct bench_wal *b)
{
    u64 full = b->log.segment_count > 0 ? (u64)(b->log.segment_count - 1) * b->log.opt.segment_bytes : 0;
    return full + b->log.write_offset;
}

const char *bench_wal_dir(const struct bench_wal *b)
{
    return b->dir;
}

void bench_wal_close(struct bench_wal *b, bool keep)
{
    if (b == NULL)
        return;
    wal_log_close(&b->log);
    if (!keep)
        bench_remove_dir(b->dir);
    free(b);
}

void bench_remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            char path[WAL_PATH_MAX];
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 &&
                io_path(path, sizeof(path), dir, e->d_name))
                unlink(path);
        }
        closedir(d);
    }
    rmdir(dir);
}
