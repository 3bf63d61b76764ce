/*
 * tests/io_fault.h — an in-memory struct io that injects faults and simulates power loss.
 *
 * The WAL, snapshot and recovery tests run the real code against this file system instead of
 * io_posix. It keeps, per file, what a reader sees, what is durable, and the operations issued
 * since the last successful sync; per directory, the current names, the durable names, and the
 * create/rename/unlink operations since the last sync_dir. A test can make the nth write or
 * sync fail, make a write short, stop the "process" after a number of mutating operations, and
 * then cut the power, choosing what survives: only synced state, everything, a torn prefix of
 * the unsynced operations, or unsynced pages in any order (SQLite's src/test6.c is the model;
 * the code is our own).
 *
 * NOTES
 *   Initialization: io_fault_create(seed) gives an empty file system whose root directory ""
 *   exists; the seed drives every random choice (short-write lengths, tear points), so a
 *   failing seed reproduces. io_fault_put_file() sets up files (and their parent directories)
 *   durably without touching the counters or the fault plan.
 *
 *   Paths: "dir/name"; a file's directory is its path up to the last '/', "" (or ".") when there
 *   is none. A directory exists if it is the root, was made by mkdir (whose parent must exist)
 *   or is an ancestor of a put_file path. Directories are names in their parent like files, so
 *   a mkdir is durable only after sync_dir of the parent, and a directory that loses its name
 *   at power loss loses its files. rename works within one directory (-EXDEV otherwise) and on
 *   files only (-ENOTSUP for a directory); unlink of a directory is -EISDIR. Spell a directory
 *   the same way everywhere ("." is the only alias, for the root).
 *
 *   Durability (wal/io.h): file data after datasync/fsync of that file (size included: this
 *   model has no separate metadata); a name after sync_dir of its directory. A failed sync
 *   behaves like Linux: the file's pending operations are not made durable and a later
 *   successful sync does not make them durable either, yet reads still see them.
 *
 *   Crash: io_fault_crash_after(f, n) lets n further mutating operations run; the next one
 *   "kills the process": it and every later call of any kind return -EIO and change nothing,
 *   until io_fault_power_loss() or io_fault_process_restart(). A call counts as a mutation once
 *   its arguments are valid (bad fds and missing names fail without counting); an injected
 *   fault still counts.
 *
 *   Process restart: io_fault_process_restart() is a crash the machine survives. Descriptors
 *   close, but the page cache stays exactly as it was: what was written but not synced is still
 *   read back, and still lost by a later power loss unless someone syncs it first.
 *
 *   Limits: files are capped at IO_FAULT_FILE_MAX bytes (-EFBIG beyond), so a test that
 *   preallocates by mistake fails instead of exhausting memory. Allocation failure aborts.
 *
 *   Thread safety: none; one io_fault belongs to one test thread.
 */
#ifndef ADB_TESTS_IO_FAULT_H
#define ADB_TESTS_IO_FAULT_H

#include "common/types.h"
#include "wal/io.h"

#define IO_FAULT_FILE_MAX ((u64)1 << 30)

struct io_fault; /* opaque */

/* An empty file system (the root "" exists); seed drives short writes and tear points. */
struct io_fault *io_fault_create(u64 seed);
void io_fault_destroy(struct io_fault *f);
/* The struct io to hand to the code under test; valid until io_fault_destroy(). */
struct io *io_fault_io(struct io_fault *f);

/* ---- fault plan: counts are 1-based and start at the moment of the call ---------------- */

/* The nth pwrite from now fails with neg_errno and writes nothing. */
void io_fault_fail_write(struct io_fault *f, u64 nth, int neg_errno);
/* The nth pwrite from now writes a strict non-empty prefix (0 bytes if len == 1) and
 * returns 0 with *done < len. */
void io_fault_short_write(struct io_fault *f, u64 nth);
/* The nth datasync/fsync from now fails with neg_errno. The file's unsynced operations are not
 * made durable and are no longer pending for later syncs (Linux marks the pages clean): a later
 * successful sync does not make them durable. Until that sync, IO_FAULT_TEAR may keep a
 * prefix of them like any unsynced data; after it, only IO_FAULT_KEEP_ALL keeps them. Reads
 * still see them. */
void io_fault_fail_sync(struct io_fault *f, u64 nth, int neg_errno);
/* Lets `mutations` further mutating operations run; the next one and every later call return
 * -EIO and change nothing (the process died). */
void io_fault_crash_after(struct io_fault *f, u64 mutations);
/* Mutating operations run since create or the last power loss or process restart: open that
 * creates, pwrite,
 * datasync, fsync, truncate, allocate, rename, unlink, mkdir, sync_dir. */
u64 io_fault_mutations(const struct io_fault *f);
bool io_fault_crashed(const struct io_fault *f);

/* ---- a bad disk: faults at a rate (simulators), kept across power loss and restarts ------- */

/* From now on each pread fails with -EIO with probability read_ppm / 10^6 (transient: the next
 * read may succeed), and each pwrite is misdirected with probability misdirect_ppm / 10^6: it
 * reports success, the range it named keeps what it held, and its bytes land 1 to 8 pages
 * away in the same file (or nowhere, when that falls outside the file: a lost write). 0, 0:
 * a good disk again. */
void io_fault_bad_disk(struct io_fault *f, u32 read_ppm, u32 misdirect_ppm);
void io_fault_bad_disk_counts(const struct io_fault *f, u64 *read_errors, u64 *misdirected);

/* ---- power loss and reboot -------------------------------------------------------------- */

enum io_fault_loss {
    IO_FAULT_KEEP_SYNCED, /* only durable data and durable directory entries survive */
    IO_FAULT_KEEP_ALL,    /* everything written survives */
    /* Per file, the unsynced operations (writes, truncates, allocates, in issue order) are
     * applied up to a seed-chosen cut: whole operations before it, a byte prefix of a write
     * at it, nothing after. Per directory, a seed-chosen prefix of the unsynced directory
     * operations (create, mkdir, rename, unlink) survives. */
    IO_FAULT_TEAR,
    /* A disk that writes pages back in any order: per file, each IO_FAULT_PAGE_BYTES page that
     * unsynced writes touched keeps either all of them (its current contents) or none (its
     * durable contents), independently, each with a seed-chosen probability drawn per file
     * (0, 1/16, ..., 1). Size changes (truncate, allocate) are all kept. Directories as for
     * IO_FAULT_TEAR. */
    IO_FAULT_TEAR_PAGES,
};

#define IO_FAULT_PAGE_BYTES 4096

/* Decides what survives, then reboots: closes every fd, clears the fault plan and the crash,
 * resets the mutation counter. Afterwards every file and directory is fully durable. */
void io_fault_power_loss(struct io_fault *f, enum io_fault_loss mode);

/* The process was killed, the machine kept running: closes every fd, clears the fault plan and
 * the crash, resets the mutation counter, and changes nothing else. Unsynced writes and
 * directory operations stay visible and pending, so a later sync makes them durable and a
 * later power loss treats them like any unsynced state. */
void io_fault_process_restart(struct io_fault *f);

/* A power loss for "torn at every byte" tests: the file path names now keeps exactly
 * keep_bytes bytes of its unsynced write data (operations in issue order, the last write
 * kept partially; truncates and allocates before the cut are applied). Every other file and
 * every directory is treated as IO_FAULT_KEEP_SYNCED, so the torn file is visible afterwards
 * only if its name was durable (created, then its directory synced). keep_bytes must not
 * exceed io_fault_unsynced_bytes(f, path). */
void io_fault_power_loss_tear_file(struct io_fault *f, const char *path, u64 keep_bytes);

/* Total length of the pending writes of the file path names now (0 if there is none). */
u64 io_fault_unsynced_bytes(const struct io_fault *f, const char *path);

/* ---- direct access for tests: outside the fault plan, the counters and the crash -------- */

/* True if path names a file or directory in the current view. */
bool io_fault_exists(const struct io_fault *f, const char *path);
/* The current contents of a file. OUT: *data (valid until the next call that changes the
 * file system), *len. False if path is missing or a directory. */
bool io_fault_contents(const struct io_fault *f, const char *path, const u8 **data /* OUT */,
                       u64 *len /* OUT */);
/* Flips one bit in the current contents and, where the byte is durable, in the durable
 * contents (bit rot on the medium). Pending writes are not changed, so use it on synced
 * files. -ENOENT, -EISDIR, or -EINVAL if byte_offset is past the end or bit > 7. */
int io_fault_flip_bit(struct io_fault *f, const char *path, u64 byte_offset, unsigned bit);
/* Creates or replaces a file durably (data and name), making missing parent directories
 * durably too. -EISDIR if path is a directory, -ENOTDIR if a parent is a file, -EBUSY if the
 * directory has an unsynced operation on that name, -EFBIG past IO_FAULT_FILE_MAX. */
int io_fault_put_file(struct io_fault *f, const char *path, const u8 *data, u64 len);

#endif
