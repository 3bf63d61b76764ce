/*
 * wal/io_posix.c — struct io over the real file system (POSIX calls, retried on EINTR).
 *
 * allocate() uses posix_fallocate: it reserves blocks and writes the size, so frames appended
 * later land in already-allocated zeroed space and fdatasync has no metadata to flush. Every
 * descriptor is opened O_CLOEXEC so forked workers do not inherit WAL files by accident.
 */
#include "config.h"

#include "wal/io.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define RETRY(expr)                                                                                \
    ({                                                                                             \
        long r_;                                                                                   \
        do                                                                                         \
            r_ = (long)(expr);                                                                     \
        while (r_ == -1 && errno == EINTR);                                                        \
        r_;                                                                                        \
    })

static int px_open(struct io *io, const char *path, int flags, int *fd_out)
{
    (void)io;
    int oflags = O_CLOEXEC | ((flags & IO_WRITE) ? O_RDWR : O_RDONLY);
    if (flags & IO_CREATE)
        oflags |= O_CREAT;
    if (flags & IO_EXCL)
        oflags |= O_EXCL;
    int fd = (int)RETRY(open(path, oflags, 0600));
    if (fd < 0)
        return -errno;
    *fd_out = fd;
    return 0;
}

static int px_close(struct io *io, int fd)
{
    (void)io;
    /* No retry on EINTR: on Linux the descriptor is gone either way. */
    return close(fd) == 0 ? 0 : -errno;
}

static int px_pread(struct io *io, int fd, void *buf, size_t len, u64 off, size_t *done)
{
    (void)io;
    ssize_t n = RETRY(pread(fd, buf, len, (off_t)off));
    if (n < 0)
        return -errno;
    *done = (size_t)n;
    return 0;
}

static int px_pwrite(struct io *io, int fd, const void *buf, size_t len, u64 off, size_t *done)
{
    (void)io;
    ssize_t n = RETRY(pwrite(fd, buf, len, (off_t)off));
    if (n < 0)
        return -errno;
    *done = (size_t)n;
    return 0;
}

static int px_datasync(struct io *io, int fd)
{
    (void)io;
    return RETRY(fdatasync(fd)) == 0 ? 0 : -errno;
}

static int px_fsync(struct io *io, int fd)
{
    (void)io;
    return RETRY(fsync(fd)) == 0 ? 0 : -errno;
}

static int px_truncate(struct io *io, int fd, u64 len)
{
    (void)io;
    return RETRY(ftruncate(fd, (off_t)len)) == 0 ? 0 : -errno;
}

/*
 * Reserves the blocks, then writes real zeros over the new range. fallocate alone leaves
 * "unwritten" extents on ext4 and XFS: the first write into each one converts it, which is a
 * metadata change, so every fdatasync would commit the journal too (measured here: about 280
 * syncs/s instead of thousands). Zeros written once at segment creation avoid that for the
 * segment's whole life.
 */
static int px_allocate(struct io *io, int fd, u64 len)
{
    (void)io;
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -errno;
    u64 from = (u64)st.st_size;
    if (from >= len)
        return 0;
    int rc;
    do
        rc = posix_fallocate(fd, (off_t)from, (off_t)(len - from));
    while (rc == EINTR);
    if (rc != 0 && rc != EOPNOTSUPP && rc != EINVAL)
        return -rc;
    static const char zeros[1 << 16];
    while (from < len) {
        size_t n = len - from < sizeof(zeros) ? (size_t)(len - from) : sizeof(zeros);
        ssize_t w = RETRY(pwrite(fd, zeros, n, (off_t)from));
        if (w < 0)
            return -errno;
        if (w == 0)
            return -EIO;
        from += (u64)w;
    }
    return 0;
}

static int px_size(struct io *io, int fd, u64 *size_out)
{
    (void)io;
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -errno;
    *size_out = (u64)st.st_size;
    return 0;
}

static int px_rename(struct io *io, const char *from, const char *to)
{
    (void)io;
    return rename(from, to) == 0 ? 0 : -errno;
}

static int px_unlink(struct io *io, const char *path)
{
    (void)io;
    return unlink(path) == 0 ? 0 : -errno;
}

static int px_mkdir(struct io *io, const char *path)
{
    (void)io;
    return mkdir(path, 0700) == 0 ? 0 : -errno;
}

static int px_sync_dir(struct io *io, const char *dir)
{
    (void)io;
    int fd = (int)RETRY(open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (fd < 0)
        return -errno;
    int rc = RETRY(fsync(fd)) == 0 ? 0 : -errno;
    close(fd);
    return rc;
}

static int px_list_dir(struct io *io, const char *dir, int (*each)(void *ctx, const char *name),
                       void *ctx)
{
    (void)io;
    DIR *d = opendir(dir);
    if (d == NULL)
        return -errno;
    int rc = 0;
    struct dirent *e;
    errno = 0;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        rc = each(ctx, e->d_name);
    }
    if (rc == 0 && errno != 0)
        rc = -errno;
    closedir(d);
    return rc;
}

/* Populated up front: the caller reads every byte once, in order. */
static int px_map(struct io *io, const char *path, const u8 **buf, u64 *len)
{
    (void)io;
    int fd;
    do
        fd = open(path, O_RDONLY | O_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return -errno;
    struct stat st;
    int rc = fstat(fd, &st) != 0 ? -errno : 0;
    if (rc == 0 && (st.st_size <= 0 || (u64)st.st_size > SIZE_MAX))
        rc = -EINVAL; /* nothing to map (or too much): the caller reads instead */
    void *p = MAP_FAILED;
    if (rc == 0 && (p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0)) == MAP_FAILED)
        rc = -errno;
    close(fd);
    if (rc != 0)
        return rc;
    *buf = p;
    *len = (u64)st.st_size;
    return 0;
}

static void px_unmap(struct io *io, const u8 *buf, u64 len)
{
    (void)io;
    munmap((void *)buf, (size_t)len);
}

static int px_writeback(struct io *io, int fd, u64 off, u64 len, bool wait)
{
    (void)io;
    unsigned flags = SYNC_FILE_RANGE_WRITE;
    if (wait)
        flags |= SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WAIT_AFTER;
    return RETRY(sync_file_range(fd, (off_t)off, (off_t)len, flags)) == 0 ? 0 : -errno;
}

static const struct io_ops posix_ops = {
    .open = px_open,
    .close = px_close,
    .pread = px_pread,
    .pwrite = px_pwrite,
    .datasync = px_datasync,
    .fsync = px_fsync,
    .truncate = px_truncate,
    .allocate = px_allocate,
    .size = px_size,
    .rename = px_rename,
    .unlink = px_unlink,
    .mkdir = px_mkdir,
    .sync_dir = px_sync_dir,
    .list_dir = px_list_dir,
    .map = px_map,
    .unmap = px_unmap,
    .writeback = px_writeback,
};

struct io io_posix = { .ops = &posix_ops };
