/*
 * wal/io.c — helpers shared by every struct io implementation.
 */
#include "config.h"

#include "wal/io.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

void io_writeback(struct io *io, int fd, u64 off, u64 len, bool wait)
{
    if (io->ops->writeback != NULL && len > 0)
        (void)io->ops->writeback(io, fd, off, len, wait);
}

void io_writeback_step(struct io *io, int fd, u64 off, u64 len)
{
    io_writeback(io, fd, off, len, false);
    if (off >= IO_WRITEBACK_CHUNK)
        io_writeback(io, fd, off - IO_WRITEBACK_CHUNK, IO_WRITEBACK_CHUNK, true);
}

struct numbered {
    const char *prefix, *suffix;
    u64 *out;
    u32 cap, count;
    bool overflow;
};

static int numbered_one(void *ctx, const char *name)
{
    struct numbered *l = ctx;
    u64 n;
    if (!io_name_parse(name, l->prefix, l->suffix, &n))
        return 0;
    if (l->count == l->cap) {
        l->overflow = true;
        return 1;
    }
    l->out[l->count++] = n;
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    u64 x = *(const u64 *)a, y = *(const u64 *)b;
    return (x > y) - (x < y);
}

int io_list_numbered(struct io *io, const char *dir, const char *prefix, const char *suffix, const char *what,
                     u64 *out, u32 cap, u32 *count, char *why, size_t why_len)
{
    struct numbered l = { prefix, suffix, out, cap, 0, false };
    int rc = io->ops->list_dir(io, dir, numbered_one, &l);
    *count = 0;
    if (l.overflow) {
        if (why != NULL && why_len > 0)
            snprintf(why, why_len, "%s: more than %u %s", dir, cap, what);
        return -EMFILE;
    }
    if (rc != 0) {
        if (why != NULL && why_len > 0)
            snprintf(why, why_len, "%s: cannot list directory: %s", dir, strerror(-rc));
        return rc;
    }
    qsort(out, l.count, sizeof(u64), cmp_u64);
    *count = l.count;
    return 0;
}

int io_write_all(struct io *io, int fd, const void *buf, size_t len, u64 off)
{
    const u8 *p = buf;
    while (len > 0) {
        size_t done = 0;
        int rc = io->ops->pwrite(io, fd, p, len, off, &done);
        if (rc != 0)
            return rc;
        if (done == 0 || done > len)
            return -EIO;
        p += done;
        off += done;
        len -= done;
    }
    return 0;
}

int io_read_all(struct io *io, int fd, void *buf, size_t len, u64 off)
{
    u8 *p = buf;
    while (len > 0) {
        size_t done = 0;
        int rc = io->ops->pread(io, fd, p, len, off, &done);
        if (rc != 0)
            return rc;
        if (done == 0)
            return -ENODATA;
        if (done > len)
            return -EIO;
        p += done;
        off += done;
        len -= done;
    }
    return 0;
}

bool io_path(char *out, size_t cap, const char *dir, const char *name)
{
    int n = snprintf(out, cap, "%s/%s", dir, name);
    return n > 0 && (size_t)n < cap;
}

bool io_name_make(char *out, size_t cap, const char *prefix, u64 number, const char *suffix)
{
    int n = snprintf(out, cap, "%s%020" PRIu64 "%s", prefix, number, suffix);
    return n > 0 && (size_t)n < cap;
}

bool io_name_parse(const char *name, const char *prefix, const char *suffix, u64 *number)
{
    size_t plen = strlen(prefix);
    if (strncmp(name, prefix, plen) != 0)
        return false;
    const char *digits = name + plen;
    u64 v = 0;
    for (int i = 0; i < IO_NAME_DIGITS; i++) {
        char c = digits[i]; /* stops at the terminator, which is no digit */
        if (c < '0' || c > '9')
            return false;
        u64 d = (u64)(c - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    if (strcmp(digits + IO_NAME_DIGITS, suffix) != 0)
        return false;
    *number = v;
    return true;
}

int io_read_file(struct io *io, const char *path, u8 **buf, u64 *len)
{
    *buf = NULL;
    *len = 0;
    int fd, rc = io->ops->open(io, path, IO_READ, &fd);
    if (rc != 0)
        return rc;
    u64 size = 0;
    u8 *b = NULL;
    rc = io->ops->size(io, fd, &size);
    if (rc == 0 && size > SIZE_MAX - 1)
        rc = -EFBIG;
    if (rc == 0 && (b = malloc(size > 0 ? (size_t)size : 1)) == NULL)
        rc = -ENOMEM;
    if (rc == 0)
        rc = io_read_all(io, fd, b, (size_t)size, 0);
    int crc = io->ops->close(io, fd);
    if (rc == 0)
        rc = crc;
    if (rc != 0) {
        free(b);
        return rc;
    }
    *buf = b;
    *len = size;
    return 0;
}

int io_view_file(struct io *io, const char *path, struct io_view *v)
{
    memset(v, 0, sizeof(*v));
    if (io->ops->map != NULL && io->ops->map(io, path, &v->buf, &v->len) == 0) {
        v->mapped = true;
        return 0;
    }
    u8 *copy;
    int rc = io_read_file(io, path, &copy, &v->len); /* also reports why a map failed */
    v->buf = copy;
    return rc;
}

void io_view_release(struct io *io, struct io_view *v)
{
    if (v->mapped)
        io->ops->unmap(io, v->buf, v->len);
    else
        free((void *)v->buf);
    memset(v, 0, sizeof(*v));
}
