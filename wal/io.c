/*
 * wal/io.c — helpers shared by every struct io implementation.
 */
#include "config.h"

#include "wal/io.h"

#include <errno.h>
#include <stdio.h>

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
