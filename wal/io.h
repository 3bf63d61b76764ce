/*
 * wal/io.h — the file-system interface every durable module goes through.
 *
 * The WAL, snapshots and recovery never call open/pwrite/fdatasync directly: they call these
 * operations on a `struct io`. Production uses io_posix (wal/io_posix.c); tests swap in a
 * fault-injecting in-memory implementation (tests/io_fault.h) that can return short writes, EIO
 * on write or sync, flip bits, and "crash" keeping only synced data (SQLite's src/test6.c is the
 * model). The same code therefore runs against real disks and against simulated power loss.
 *
 * NOTES
 *   Errors: every operation returns 0 or a negative errno. pwrite and pread report how many
 *   bytes they moved in *done; a short count is not an error by itself (io_write_all and
 *   io_read_all loop). Paths are full paths ("dir/name"); directories are flat.
 *
 *   Durability contract (what io_fault enforces and what the callers rely on):
 *     - file data is durable after datasync/fsync of that file;
 *     - creating, renaming or unlinking a name is durable after sync_dir of its directory;
 *     - allocate(fd, len) extends the file to at least len zero bytes and reserves the blocks,
 *       so later writes inside that length do not change metadata (fdatasync stays cheap).
 *
 *   Thread safety: io_posix is stateless. A fault-injecting io belongs to one thread.
 */
#ifndef ADB_WAL_IO_H
#define ADB_WAL_IO_H

#include "common/types.h"

/* Open flags (a small portable subset; io_posix maps them to O_*). */
#define IO_READ 0x0     /* read only */
#define IO_WRITE 0x1    /* read and write */
#define IO_CREATE 0x2   /* create if missing */
#define IO_EXCL 0x4     /* with IO_CREATE: fail with -EEXIST if it exists */

struct io;

struct io_ops {
    int (*open)(struct io *io, const char *path, int flags, int *fd_out /* OUT */);
    int (*close)(struct io *io, int fd);
    int (*pread)(struct io *io, int fd, void *buf, size_t len, u64 off, size_t *done /* OUT */);
    int (*pwrite)(struct io *io, int fd, const void *buf, size_t len, u64 off,
                  size_t *done /* OUT */);
    int (*datasync)(struct io *io, int fd);
    int (*fsync)(struct io *io, int fd);
    int (*truncate)(struct io *io, int fd, u64 len);
    int (*allocate)(struct io *io, int fd, u64 len);
    int (*size)(struct io *io, int fd, u64 *size_out /* OUT */);
    int (*rename)(struct io *io, const char *from, const char *to);
    int (*unlink)(struct io *io, const char *path);
    int (*mkdir)(struct io *io, const char *path);
    int (*sync_dir)(struct io *io, const char *dir);
    /* Calls each(ctx, name) for every entry of dir except "." and "..", in no given order;
     * stops early and returns the callback's value if it is non-zero. */
    int (*list_dir)(struct io *io, const char *dir, int (*each)(void *ctx, const char *name),
                    void *ctx);
    /* Optional (NULL where the implementation has no mappings): maps a whole, non-empty file
     * read-only, undone by unmap. io_view_file falls back to reading a copy without them. */
    int (*map)(struct io *io, const char *path, const u8 **buf /* OUT */, u64 *len /* OUT */);
    void (*unmap)(struct io *io, const u8 *buf, u64 len);
    /* Optional (NULL: nothing to do): start writing [off, off + len) back to the disk now, and
     * with `wait` first wait for that range's writeback to finish. A hint for pacing: it makes
     * nothing durable (the next datasync does), it only keeps big writes from piling up in the
     * page cache and then stalling every other sync on the disk while they flush. */
    int (*writeback)(struct io *io, int fd, u64 off, u64 len, bool wait);
};

/* Implementations embed this as their first member. */
struct io {
    const struct io_ops *ops;
};

/* The real file system. */
extern struct io io_posix;

/* io->ops->writeback if the io has one; errors are ignored (it is a hint). */
void io_writeback(struct io *io, int fd, u64 off, u64 len, bool wait);

/*
 * Paced writeback, IO_WRITEBACK_CHUNK at a time: queues [off, off + len) and waits for the
 * chunk before it, so at most two chunks of a big write are in the disk's queue ahead of
 * anyone else's fsync (the WAL's). Call it for each chunk as it is written, in order, or once
 * per chunk over data already written.
 */
#define IO_WRITEBACK_CHUNK ((u64)8 << 20)
void io_writeback_step(struct io *io, int fd, u64 off, u64 len);

/* Writes all len bytes at off, looping over short writes; -EIO if a write makes no progress. */
int io_write_all(struct io *io, int fd, const void *buf, size_t len, u64 off);

/* Reads exactly len bytes at off; -ENODATA if the file ends first. */
int io_read_all(struct io *io, int fd, void *buf, size_t len, u64 off);

/*
 * Names of numbered files (WAL segments, snapshots): prefix, the number as exactly 20 decimal
 * digits (UINT64_MAX has 20), suffix. io_name_make writes one; io_name_parse accepts exactly
 * that pattern and nothing else.
 */
#define IO_NAME_DIGITS 20
bool io_name_make(char *out, size_t cap, const char *prefix, u64 number, const char *suffix);
bool io_name_parse(const char *name, const char *prefix, const char *suffix, u64 *number /* OUT */);

/*
 * The numbers of dir's files named that way, ascending, into out (at most cap); *count (OUT).
 * -EMFILE if there are more than cap, or the list_dir error; `why` (may be NULL) says which.
 * what names the files in the message ("WAL segments").
 */
int io_list_numbered(struct io *io, const char *dir, const char *prefix, const char *suffix, const char *what,
                     u64 *out, u32 cap, u32 *count, char *why, size_t why_len);

/* Reads a whole file into a malloc'd buffer: *buf (OUT, caller frees), *len (OUT). 0 or -errno. */
int io_read_file(struct io *io, const char *path, u8 **buf, u64 *len);

/*
 * A whole file to read through once: mapped where the io can map (no copy, and no fresh pages
 * to fault in and zero: a snapshot is hundreds of MB), else read into a malloc'd copy. The
 * file must not change while viewed (snapshots never do). Release with io_view_release.
 */
struct io_view {
    const u8 *buf;
    u64 len;
    bool mapped;
};
int io_view_file(struct io *io, const char *path, struct io_view *v /* OUT */);
void io_view_release(struct io *io, struct io_view *v);

/* Joins dir and name into out (cap bytes); false if it does not fit. */
bool io_path(char *out, size_t cap, const char *dir, const char *name);

#endif
