/*
 * tests/test_io_fault.c — the fault-injecting file system (tests/io_fault.h) against its
 * contract.
 *
 * io_fault is the ground truth every durability test stands on, so it gets its own tests: the
 * plain file-system semantics (open/create, pwrite past the end, truncate, allocate, rename,
 * unlink, descriptors that outlive their name), what each kind of power loss keeps (checked
 * against a small reference model written independently here, over many seeds), directory
 * durability (create, mkdir, rename and unlink undone without sync_dir), and the fault plan
 * (failed and short writes, failed syncs with Linux semantics, the crash point).
 */
#include "tests/io_fault.h"
#include "common/splitmix.h"
#include "tests/check_main.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ----------------------------------------------------------------------------- */

static struct io_fault *F;
static struct io *IO;

static void fs_new(u64 seed)
{
    F = io_fault_create(seed);
    IO = io_fault_io(F);
}

static void fs_free(void)
{
    io_fault_destroy(F);
    F = NULL;
    IO = NULL;
}

static int open_rw(const char *path)
{
    int fd = -1;
    ck_assert_int_eq(IO->ops->open(IO, path, IO_WRITE | IO_CREATE, &fd), 0);
    ck_assert_int_ge(fd, 3);
    return fd;
}

static void put(const char *path, const char *s)
{
    ck_assert_int_eq(io_fault_put_file(F, path, (const u8 *)s, strlen(s)), 0);
}

static void write_str(int fd, u64 off, const char *s)
{
    ck_assert_int_eq(io_write_all(IO, fd, s, strlen(s), off), 0);
}

/* The file holds exactly len bytes equal to exp. */
static void expect_bytes(const char *path, const void *exp, u64 len)
{
    const u8 *data;
    u64 n;
    ck_assert_msg(io_fault_contents(F, path, &data, &n), "%s missing", path);
    ck_assert_uint_eq(n, len);
    if (len > 0)
        ck_assert_int_eq(memcmp(data, exp, (size_t)len), 0);
}

static void expect_str(const char *path, const char *s)
{
    expect_bytes(path, s, strlen(s));
}

/* list_dir into a bitmask over names "n0".."n15" and "r0".."r15" (bit 16 + i). */
static int collect_cb(void *ctx, const char *name)
{
    u32 *mask = ctx;
    ck_assert(name[0] == 'n' || name[0] == 'r');
    int i = atoi(name + 1);
    ck_assert(i >= 0 && i < 16);
    *mask |= 1u << (i + (name[0] == 'r' ? 16 : 0));
    return 0;
}

/* The root also holds "d", which collect_cb does not know. */
static int root_cb(void *ctx, const char *name)
{
    if (strcmp(name, "d") == 0)
        return 0;
    return collect_cb(ctx, name);
}

static int ignore_cb(void *ctx, const char *name)
{
    (void)ctx;
    (void)name;
    return 0;
}

static u32 list_mask(const char *dir)
{
    u32 mask = 0;
    ck_assert_int_eq(IO->ops->list_dir(IO, dir, collect_cb, &mask), 0);
    return mask;
}

/* ---- plain file-system semantics --------------------------------------------------------- */

START_TEST(test_open_semantics)
{
    fs_new(1);
    int fd = -1;
    ck_assert_int_eq(IO->ops->open(IO, "a", IO_WRITE, &fd), -ENOENT);
    ck_assert_int_eq(IO->ops->open(IO, "nodir/a", IO_WRITE | IO_CREATE, &fd), -ENOENT);
    ck_assert_int_eq(IO->ops->open(IO, "", IO_WRITE | IO_CREATE, &fd), -ENOENT);
    ck_assert_uint_eq(io_fault_mutations(F), 0);

    int a = open_rw("a");
    ck_assert_uint_eq(io_fault_mutations(F), 1);
    ck_assert(io_fault_exists(F, "a"));
    ck_assert_int_eq(IO->ops->open(IO, "a", IO_WRITE | IO_CREATE | IO_EXCL, &fd), -EEXIST);
    int b = -1;
    ck_assert_int_eq(IO->ops->open(IO, "a", IO_READ, &b), 0);
    ck_assert_int_ne(a, b);
    ck_assert_uint_eq(io_fault_mutations(F), 1); /* opening an existing file changes nothing */

    /* A read-only descriptor reads but does not write, truncate or allocate. */
    size_t done = 0;
    ck_assert_int_eq(IO->ops->pwrite(IO, b, "x", 1, 0, &done), -EBADF);
    ck_assert_int_eq(IO->ops->truncate(IO, b, 0), -EBADF);
    ck_assert_int_eq(IO->ops->allocate(IO, b, 8), -EBADF);
    ck_assert_int_eq(IO->ops->datasync(IO, b), 0); /* syncing a read-only fd is allowed */

    ck_assert_int_eq(IO->ops->close(IO, b), 0);
    ck_assert_int_eq(IO->ops->close(IO, b), -EBADF);
    char c;
    ck_assert_int_eq(IO->ops->pread(IO, b, &c, 1, 0, &done), -EBADF);
    ck_assert_int_eq(IO->ops->close(IO, 0), -EBADF);
    ck_assert_int_eq(IO->ops->close(IO, 1000), -EBADF);

    ck_assert_int_eq(IO->ops->mkdir(IO, "d"), 0);
    ck_assert_int_eq(IO->ops->mkdir(IO, "d"), -EEXIST);
    ck_assert_int_eq(IO->ops->mkdir(IO, "a"), -EEXIST);
    ck_assert_int_eq(IO->ops->mkdir(IO, "x/y"), -ENOENT);
    ck_assert_int_eq(IO->ops->open(IO, "d", IO_READ, &fd), -EISDIR);
    ck_assert_int_eq(IO->ops->unlink(IO, "d"), -EISDIR);
    ck_assert_int_eq(IO->ops->sync_dir(IO, "nodir"), -ENOENT);
    ck_assert_int_eq(IO->ops->close(IO, a), 0);
    fs_free();
}
END_TEST

START_TEST(test_read_write_size)
{
    fs_new(2);
    int fd = open_rw("f");
    u64 size = 99;
    ck_assert_int_eq(IO->ops->size(IO, fd, &size), 0);
    ck_assert_uint_eq(size, 0);

    /* A write past the end fills the gap with zeros. */
    write_str(fd, 5, "abc");
    expect_bytes("f", "\0\0\0\0\0abc", 8);

    /* Reads stop at the end; past it they report 0 bytes. */
    char buf[16];
    size_t done = 99;
    ck_assert_int_eq(IO->ops->pread(IO, fd, buf, sizeof(buf), 6, &done), 0);
    ck_assert_uint_eq(done, 2);
    ck_assert_int_eq(memcmp(buf, "bc", 2), 0);
    ck_assert_int_eq(IO->ops->pread(IO, fd, buf, sizeof(buf), 8, &done), 0);
    ck_assert_uint_eq(done, 0);
    ck_assert_int_eq(IO->ops->pread(IO, fd, buf, sizeof(buf), 1000, &done), 0);
    ck_assert_uint_eq(done, 0);
    ck_assert_int_eq(io_read_all(IO, fd, buf, 9, 0), -ENODATA);

    /* allocate extends with zeros and never shrinks. */
    ck_assert_int_eq(IO->ops->allocate(IO, fd, 16), 0);
    ck_assert_int_eq(IO->ops->size(IO, fd, &size), 0);
    ck_assert_uint_eq(size, 16);
    ck_assert_int_eq(IO->ops->allocate(IO, fd, 4), 0);
    ck_assert_int_eq(IO->ops->size(IO, fd, &size), 0);
    ck_assert_uint_eq(size, 16);
    ck_assert_int_eq(IO->ops->allocate(IO, fd, 0), -EINVAL);
    expect_bytes("f", "\0\0\0\0\0abc\0\0\0\0\0\0\0\0", 16);

    /* truncate shrinks; growing again must not resurrect the cut bytes. */
    ck_assert_int_eq(IO->ops->truncate(IO, fd, 3), 0);
    ck_assert_int_eq(IO->ops->truncate(IO, fd, 7), 0);
    expect_bytes("f", "\0\0\0\0\0\0\0", 7);

    ck_assert_int_eq(IO->ops->truncate(IO, fd, IO_FAULT_FILE_MAX + 1), -EFBIG);
    ck_assert_int_eq(IO->ops->pwrite(IO, fd, "x", 1, IO_FAULT_FILE_MAX, &done), -EFBIG);
    ck_assert_int_eq(IO->ops->close(IO, fd), 0);
    fs_free();
}
END_TEST

/* A bad disk: reads fail at the rate set (and succeed again), misdirected writes report success
 * while their range keeps its old bytes and their bytes land pages away; power loss keeps the
 * rates. */
START_TEST(test_bad_disk)
{
    fs_new(7);
    int fd = open_rw("f");
    static u8 zeros[16 * IO_FAULT_PAGE_BYTES];
    size_t done;
    ck_assert_int_eq(IO->ops->pwrite(IO, fd, zeros, sizeof(zeros), 0, &done), 0);
    io_fault_bad_disk(F, 250000, 0);
    u32 errors = 0;
    u8 b;
    for (int i = 0; i < 400; i++)
        errors += IO->ops->pread(IO, fd, &b, 1, 0, &done) == -EIO;
    ck_assert_msg(errors > 50 && errors < 150, "%u of 400 reads failed at 25%%", errors);
    u64 re, mis;
    io_fault_bad_disk_counts(F, &re, &mis);
    ck_assert_uint_eq(re, errors);

    io_fault_bad_disk(F, 0, 1000000); /* every write misdirected */
    u64 at = 8 * IO_FAULT_PAGE_BYTES;
    ck_assert_int_eq(IO->ops->pwrite(IO, fd, "abcd", 4, at, &done), 0);
    ck_assert_uint_eq(done, 4);
    const u8 *data;
    u64 len;
    ck_assert(io_fault_contents(F, "f", &data, &len));
    ck_assert_int_eq(memcmp(data + at, zeros, 4), 0); /* not where it was asked */
    u32 found = 0;
    for (u64 k = 1; k <= 8; k++) {
        found += memcmp(data + at + k * IO_FAULT_PAGE_BYTES, "abcd", 4) == 0;
        found += memcmp(data + at - k * IO_FAULT_PAGE_BYTES, "abcd", 4) == 0;
    }
    ck_assert_uint_eq(found, 1);
    io_fault_bad_disk_counts(F, &re, &mis);
    ck_assert_uint_eq(mis, 1);
    /* The rates outlive a power loss (they are the disk's). */
    io_fault_bad_disk(F, 1000000, 0);
    io_fault_power_loss(F, IO_FAULT_KEEP_SYNCED);
    fd = open_rw("f");
    ck_assert_int_eq(IO->ops->pread(IO, fd, &b, 1, 0, &done), -EIO);
    io_fault_bad_disk(F, 0, 0);
    ck_assert_int_eq(IO->ops->pread(IO, fd, &b, 1, 0, &done), 0);
    fs_free();
}
END_TEST

START_TEST(test_rename_semantics)
{
    fs_new(3);
    put("d/a", "old");
    put("d/b", "new");
    put("e/c", "other");
    ck_assert_int_eq(IO->ops->rename(IO, "d/b", "d/a"), 0);
    expect_str("d/a", "new");
    ck_assert(!io_fault_exists(F, "d/b"));
    ck_assert_int_eq(IO->ops->rename(IO, "d/b", "d/a"), -ENOENT);
    ck_assert_int_eq(IO->ops->rename(IO, "d/a", "e/a"), -EXDEV);
    ck_assert_int_eq(IO->ops->rename(IO, "d/a", "nodir/a"), -ENOENT);
    ck_assert_int_eq(IO->ops->rename(IO, "d", "z"), -ENOTSUP);
    ck_assert_int_eq(IO->ops->rename(IO, "d/a", "d/a"), 0);
    expect_str("d/a", "new");
    ck_assert_int_eq(IO->ops->mkdir(IO, "d/sub"), 0);
    ck_assert_int_eq(IO->ops->rename(IO, "d/a", "d/sub"), -EISDIR);
    fs_free();
}
END_TEST

static int stop_cb(void *ctx, const char *name)
{
    (void)name;
    int *calls = ctx;
    return ++*calls == 2 ? 42 : 0;
}

START_TEST(test_list_dir)
{
    fs_new(4);
    put("d/n1", "1");
    put("d/n2", "2");
    put("d/n3", "3");
    ck_assert_uint_eq(list_mask("d"), 0xe);
    ck_assert_int_eq(IO->ops->unlink(IO, "d/n2"), 0);
    ck_assert_uint_eq(list_mask("d"), 0xa);
    int calls = 0;
    ck_assert_int_eq(IO->ops->list_dir(IO, "d", stop_cb, &calls), 42);
    ck_assert_int_eq(calls, 2);
    ck_assert_int_eq(IO->ops->list_dir(IO, "nodir", stop_cb, &calls), -ENOENT);
    /* The root lists files and subdirectories; "." names it too. */
    put("n5", "5");
    ck_assert_int_eq(IO->ops->mkdir(IO, "n6"), 0);
    u32 mask = 0;
    ck_assert_int_eq(IO->ops->list_dir(IO, "", root_cb, &mask), 0);
    ck_assert_uint_eq(mask, 0x60);
    fs_free();
}
END_TEST

START_TEST(test_root_alias)
{
    fs_new(5);
    put("d/n1", "1");
    int fd = open_rw("n2");
    u32 mask = 0;
    ck_assert_int_eq(IO->ops->list_dir(IO, ".", root_cb, &mask), 0);
    ck_assert_uint_eq(mask, 0x4);
    ck_assert_int_eq(IO->ops->sync_dir(IO, "."), 0);
    io_fault_power_loss(F, IO_FAULT_KEEP_SYNCED);
    ck_assert(io_fault_exists(F, "n2"));
    ck_assert(io_fault_exists(F, "./n2"));
    (void)fd;
    fs_free();
}
END_TEST

START_TEST(test_fd_after_unlink)
{
    fs_new(6);
    ck_assert_int_eq(IO->ops->mkdir(IO, "d"), 0);
    int fd = open_rw("d/f");
    write_str(fd, 0, "abc");
    ck_assert_int_eq(IO->ops->unlink(IO, "d/f"), 0);
    ck_assert(!io_fault_exists(F, "d/f"));
    ck_assert_uint_eq(list_mask("d"), 0);

    /* The inode lives on through its descriptor. */
    write_str(fd, 3, "def");
    char buf[6];
    ck_assert_int_eq(io_read_all(IO, fd, buf, 6, 0), 0);
    ck_assert_int_eq(memcmp(buf, "abcdef", 6), 0);
    u64 size = 0;
    ck_assert_int_eq(IO->ops->size(IO, fd, &size), 0);
    ck_assert_uint_eq(size, 6);
    ck_assert_int_eq(IO->ops->datasync(IO, fd), 0);

    /* A new file of the same name is a different inode. */
    int fd2 = open_rw("d/f");
    expect_str("d/f", "");
    write_str(fd2, 0, "X");
    ck_assert_int_eq(io_read_all(IO, fd, buf, 1, 0), 0);
    ck_assert_int_eq(buf[0], 'a');

    /* Renaming over an open file leaves that descriptor on the old inode. */
    put("d/g", "ggg");
    ck_assert_int_eq(IO->ops->rename(IO, "d/f", "d/g"), 0);
    expect_str("d/g", "X");
    ck_assert_int_eq(IO->ops->close(IO, fd), 0);
    ck_assert_int_eq(IO->ops->close(IO, fd2), 0);
    fs_free();
}
END_TEST

START_TEST(test_mutation_counting)
{
    fs_new(7);
    put("p", "existing"); /* outside the counters */
    ck_assert_uint_eq(io_fault_mutations(F), 0);
    int fd = -1;
    ck_assert_int_eq(IO->ops->open(IO, "p", IO_WRITE, &fd), 0);
    ck_assert_uint_eq(io_fault_mutations(F), 0);
    size_t done;
    char buf[4];
    ck_assert_int_eq(IO->ops->pread(IO, fd, buf, 4, 0, &done), 0);
    u64 size;
    ck_assert_int_eq(IO->ops->size(IO, fd, &size), 0);
    ck_assert_int_eq(IO->ops->list_dir(IO, "", ignore_cb, NULL), 0);
    ck_assert_uint_eq(io_fault_mutations(F), 0);

    u64 m = 0;
    ck_assert_int_eq(IO->ops->pwrite(IO, fd, "x", 1, 0, &done), 0);
    ck_assert_uint_eq(io_fault_mutations(F), ++m);
    ck_assert_int_eq(IO->ops->datasync(IO, fd), 0);
    ck_assert_uint_eq(io_fault_mutations(F), ++m);
    ck_assert_int_eq(IO->ops->fsync(IO, fd), 0);
    ck_assert_uint_eq(io_fault_mutations(F), ++m);
    ck_assert_int_eq(IO->ops->truncate(IO, fd, 2), 0);
    ck_assert_uint_eq(io_fault_mutations(F), ++m);
    ck_assert_int_eq(IO->ops->allocate(IO, fd, 8), 0);
    ck_assert_uint_eq(io_fault_mutations(F), ++m);
    ck_assert_int_eq(IO->ops->rename(IO, "p", "q"), 0);
    ck_assert_uint_eq(io_fault_mutations(F), ++m);
    ck_assert_int_eq(IO->ops->unlink(IO, "q"), 0);
    ck_assert_uint_eq(io_fault_mutations(F), ++m);
    ck_assert_int_eq(IO->ops->mkdir(IO, "d"), 0);
    ck_assert_uint_eq(io_fault_mutations(F), ++m);
    ck_assert_int_eq(IO->ops->sync_dir(IO, ""), 0);
    ck_assert_uint_eq(io_fault_mutations(F), ++m);
    int fd2 = open_rw("d/new");
    ck_assert_uint_eq(io_fault_mutations(F), ++m);
    ck_assert_int_eq(IO->ops->close(IO, fd2), 0);

    /* Calls rejected for their arguments change nothing and do not count. */
    ck_assert_int_eq(IO->ops->unlink(IO, "q"), -ENOENT);
    ck_assert_int_eq(IO->ops->rename(IO, "q", "r"), -ENOENT);
    ck_assert_int_eq(IO->ops->pwrite(IO, 999, "x", 1, 0, &done), -EBADF);
    ck_assert_int_eq(IO->ops->datasync(IO, 999), -EBADF);
    ck_assert_int_eq(IO->ops->mkdir(IO, "d"), -EEXIST);
    ck_assert_uint_eq(io_fault_mutations(F), m);

    io_fault_power_loss(F, IO_FAULT_KEEP_ALL);
    ck_assert_uint_eq(io_fault_mutations(F), 0);
    fs_free();
}
END_TEST

START_TEST(test_put_file)
{
    fs_new(8);
    put("a/b/c", "deep");
    io_fault_power_loss(F, IO_FAULT_KEEP_SYNCED);
    expect_str("a/b/c", "deep"); /* parents and file are all durable */
    put("a/b/c", "replaced");
    io_fault_power_loss(F, IO_FAULT_KEEP_SYNCED);
    expect_str("a/b/c", "replaced");
    ck_assert_int_eq(io_fault_put_file(F, "a/b", (const u8 *)"x", 1), -EISDIR);
    ck_assert_int_eq(io_fault_put_file(F, "a/b/c/d", (const u8 *)"x", 1), -ENOTDIR);
    /* A name with an unsynced operation pending is refused: its durable state is unclear. */
    int fd = open_rw("a/pending");
    ck_assert_int_eq(io_fault_put_file(F, "a/pending", (const u8 *)"x", 1), -EBUSY);
    (void)fd;
    fs_free();
}
END_TEST

/* ---- power loss: what survives ------------------------------------------------------------ */

START_TEST(test_sync_survives)
{
    fs_new(10);
    ck_assert_int_eq(IO->ops->mkdir(IO, "db"), 0);
    ck_assert_int_eq(IO->ops->sync_dir(IO, ""), 0);
    int fd = open_rw("db/wal");
    write_str(fd, 0, "frame-1");
    ck_assert_int_eq(IO->ops->datasync(IO, fd), 0);
    ck_assert_int_eq(IO->ops->sync_dir(IO, "db"), 0);
    ck_assert_uint_eq(io_fault_unsynced_bytes(F, "db/wal"), 0);
    io_fault_power_loss(F, IO_FAULT_KEEP_SYNCED);
    expect_str("db/wal", "frame-1");
    /* Reboot closed every descriptor. */
    size_t done;
    char c;
    ck_assert_int_eq(IO->ops->pread(IO, fd, &c, 1, 0, &done), -EBADF);
    fs_free();
}
END_TEST

START_TEST(test_unsynced_dropped)
{
    for (int keep_all = 0; keep_all <= 1; keep_all++) {
        fs_new(11);
        put("d/a", "hello");
        int fd = -1;
        ck_assert_int_eq(IO->ops->open(IO, "d/a", IO_WRITE, &fd), 0);
        write_str(fd, 0, "HELLO WORLD");
        ck_assert_uint_eq(io_fault_unsynced_bytes(F, "d/a"), 11);
        ck_assert_int_eq(IO->ops->truncate(IO, fd, 8), 0);
        expect_str("d/a", "HELLO WO");
        io_fault_power_loss(F, keep_all ? IO_FAULT_KEEP_ALL : IO_FAULT_KEEP_SYNCED);
        expect_str("d/a", keep_all ? "HELLO WO" : "hello");
        ck_assert_uint_eq(io_fault_unsynced_bytes(F, "d/a"), 0);
        fs_free();
    }
}
END_TEST

START_TEST(test_create_needs_sync_dir)
{
    for (int sync_dir = 0; sync_dir <= 1; sync_dir++) {
        fs_new(12);
        put("d/keep", "k");
        int fd = open_rw("d/f");
        write_str(fd, 0, "data");
        ck_assert_int_eq(IO->ops->fsync(IO, fd), 0); /* data durable, name not (yet) */
        if (sync_dir)
            ck_assert_int_eq(IO->ops->sync_dir(IO, "d"), 0);
        io_fault_power_loss(F, IO_FAULT_KEEP_SYNCED);
        ck_assert(io_fault_exists(F, "d/f") == (sync_dir == 1));
        if (sync_dir)
            expect_str("d/f", "data");
        else
            ck_assert_int_eq(IO->ops->open(IO, "d/f", IO_READ, &fd), -ENOENT);
        expect_str("d/keep", "k");
        fs_free();
    }
}
END_TEST

START_TEST(test_mkdir_needs_parent_sync)
{
    for (int mode = 0; mode < 3; mode++) {
        fs_new(13);
        ck_assert_int_eq(IO->ops->mkdir(IO, "m"), 0);
        int fd = open_rw("m/f");
        write_str(fd, 0, "x");
        ck_assert_int_eq(IO->ops->fsync(IO, fd), 0);
        ck_assert_int_eq(IO->ops->sync_dir(IO, "m"), 0);
        if (mode == 1)
            ck_assert_int_eq(IO->ops->sync_dir(IO, ""), 0);
        io_fault_power_loss(F, mode == 2 ? IO_FAULT_KEEP_ALL : IO_FAULT_KEEP_SYNCED);
        bool kept = mode != 0;
        ck_assert(io_fault_exists(F, "m") == kept);
        ck_assert(io_fault_exists(F, "m/f") == kept);
        if (kept) {
            expect_str("m/f", "x");
        } else {
            ck_assert_int_eq(IO->ops->open(IO, "m/f", IO_WRITE | IO_CREATE, &fd), -ENOENT);
            ck_assert_int_eq(IO->ops->mkdir(IO, "m"), 0);
        }
        fs_free();
    }
}
END_TEST

START_TEST(test_rename_needs_sync_dir)
{
    for (int sync_dir = 0; sync_dir <= 1; sync_dir++) {
        fs_new(14);
        put("d/snap", "old");
        int fd = open_rw("d/snap.tmp");
        write_str(fd, 0, "new");
        ck_assert_int_eq(IO->ops->fsync(IO, fd), 0);
        ck_assert_int_eq(IO->ops->rename(IO, "d/snap.tmp", "d/snap"), 0);
        expect_str("d/snap", "new");
        ck_assert(!io_fault_exists(F, "d/snap.tmp"));
        if (sync_dir)
            ck_assert_int_eq(IO->ops->sync_dir(IO, "d"), 0);
        io_fault_power_loss(F, IO_FAULT_KEEP_SYNCED);
        expect_str("d/snap", sync_dir ? "new" : "old");
        ck_assert(!io_fault_exists(F, "d/snap.tmp")); /* its creation was never durable */
        fs_free();
    }
}
END_TEST

START_TEST(test_unlink_needs_sync_dir)
{
    for (int sync_dir = 0; sync_dir <= 1; sync_dir++) {
        fs_new(15);
        put("d/x", "still here");
        ck_assert_int_eq(IO->ops->unlink(IO, "d/x"), 0);
        ck_assert(!io_fault_exists(F, "d/x"));
        if (sync_dir)
            ck_assert_int_eq(IO->ops->sync_dir(IO, "d"), 0);
        io_fault_power_loss(F, IO_FAULT_KEEP_SYNCED);
        ck_assert(io_fault_exists(F, "d/x") == !sync_dir);
        if (!sync_dir)
            expect_str("d/x", "still here");
        fs_free();
    }
}
END_TEST

/* ---- tearing: checked against an independent reference model ----------------------------- */

#define REF_MAX 256
#define OPS_MAX 12

/* A file in the reference model, and the operations the test issued. */
struct ref {
    u8 b[REF_MAX];
    u64 len;
};

enum rop_kind { ROP_WRITE, ROP_TRUNCATE, ROP_ALLOCATE };

struct rop {
    enum rop_kind kind;
    u64 off;
    u64 len;
    u8 data[32];
};

/* Applies op keeping at most `bytes` of a write. */
static void ref_apply(struct ref *r, const struct rop *op, u64 bytes)
{
    u64 n = bytes < op->len ? bytes : op->len;
    switch (op->kind) {
    case ROP_WRITE:
        if (n == 0)
            return;
        for (u64 i = r->len; i < op->off; i++)
            r->b[i] = 0;
        memcpy(r->b + op->off, op->data, (size_t)n);
        if (op->off + n > r->len)
            r->len = op->off + n;
        return;
    case ROP_TRUNCATE:
    case ROP_ALLOCATE:
        if (op->kind == ROP_ALLOCATE && op->len <= r->len)
            return;
        for (u64 i = r->len; i < op->len; i++)
            r->b[i] = 0;
        r->len = op->len;
        return;
    }
}

/* Issues op through the struct io and records it. */
static void issue(int fd, const struct rop *op)
{
    if (op->kind == ROP_WRITE)
        ck_assert_int_eq(io_write_all(IO, fd, op->data, (size_t)op->len, op->off), 0);
    else if (op->kind == ROP_TRUNCATE)
        ck_assert_int_eq(IO->ops->truncate(IO, fd, op->len), 0);
    else
        ck_assert_int_eq(IO->ops->allocate(IO, fd, op->len), 0);
}

static struct rop random_op(u64 *rs)
{
    struct rop op;
    memset(&op, 0, sizeof(op));
    u64 r = splitmix_next(rs) % 8;
    op.kind = r == 0 ? ROP_TRUNCATE : r == 1 ? ROP_ALLOCATE : ROP_WRITE;
    if (op.kind == ROP_WRITE) {
        op.off = splitmix_next(rs) % 64;
        op.len = 1 + splitmix_next(rs) % sizeof(op.data);
        for (u64 i = 0; i < op.len; i++)
            op.data[i] = (u8)(1 + splitmix_next(rs) % 255);
    } else {
        op.len = 1 + splitmix_next(rs) % 96;
    }
    return op;
}

static bool ref_matches(const struct ref *r, const u8 *data, u64 len)
{
    return r->len == len && (len == 0 || memcmp(r->b, data, (size_t)len) == 0);
}

/* Which cut of ops[] (over durable) gives data: CUT_NONE (no op kept), CUT_ALL (all kept),
 * CUT_WHOLE (some whole ops kept), CUT_PARTIAL (a write kept in part), or -1 if no cut does. */
enum { CUT_NONE, CUT_WHOLE, CUT_PARTIAL, CUT_ALL };
static int find_cut(const struct ref *durable, const struct rop *ops, int n, const u8 *data,
                    u64 len)
{
    struct ref r = *durable;
    for (int whole = 0; whole <= n; whole++) {
        if (whole > 0)
            ref_apply(&r, &ops[whole - 1], ops[whole - 1].len);
        if (ref_matches(&r, data, len))
            return whole == 0 ? CUT_NONE : whole == n ? CUT_ALL : CUT_WHOLE;
        if (whole == n || ops[whole].kind != ROP_WRITE)
            continue;
        for (u64 p = 1; p < ops[whole].len; p++) {
            struct ref t = r;
            ref_apply(&t, &ops[whole], p);
            if (ref_matches(&t, data, len))
                return CUT_PARTIAL;
        }
    }
    return -1;
}

/* Random writes/truncates/allocates, some synced; TEAR must leave durable + a prefix. A second
 * file, fully synced, must survive intact every time. */
START_TEST(test_tear_keeps_prefix)
{
    int seen[4] = { 0, 0, 0, 0 }; /* by CUT_* */
    for (u64 seed = 0; seed < 2000; seed++) {
        fs_new(seed);
        u64 rs = seed * 7919 + 1;
        put("d/other", "synced");
        put("d/f", "0123456789abcdef");
        struct ref durable = { .len = 16 };
        memcpy(durable.b, "0123456789abcdef", 16);
        int fd = -1;
        ck_assert_int_eq(IO->ops->open(IO, "d/f", IO_WRITE, &fd), 0);
        int fd_other = -1;
        ck_assert_int_eq(IO->ops->open(IO, "d/other", IO_WRITE, &fd_other), 0);

        /* A synced prefix of operations moves the durable state... */
        int synced = (int)(splitmix_next(&rs) % 4);
        for (int i = 0; i < synced; i++) {
            struct rop op = random_op(&rs);
            issue(fd, &op);
            ref_apply(&durable, &op, op.len);
        }
        ck_assert_int_eq(IO->ops->datasync(IO, fd), 0);
        /* ...then unsynced ones are at the mercy of the tear. */
        struct rop ops[OPS_MAX];
        int n = 1 + (int)(splitmix_next(&rs) % OPS_MAX);
        for (int i = 0; i < n; i++) {
            ops[i] = random_op(&rs);
            issue(fd, &ops[i]);
        }
        io_fault_power_loss(F, IO_FAULT_TEAR);

        const u8 *data;
        u64 len;
        ck_assert(io_fault_contents(F, "d/f", &data, &len));
        int cut = find_cut(&durable, ops, n, data, len);
        ck_assert_msg(cut >= 0, "seed %llu: survivor is not durable + a prefix",
                      (unsigned long long)seed);
        seen[cut]++;
        expect_str("d/other", "synced");
        fs_free();
    }
    /* The seed really explores: each outcome shows up often. */
    for (int i = 0; i < 4; i++)
        ck_assert_msg(seen[i] > 100, "outcome %d seen %d times", i, seen[i]);
}
END_TEST

/* The torn-at-every-byte scenario: durable header, then a pending log of writes with an
 * allocate in the middle; another file and an undurable file alongside. */
static const struct rop tear_log[] = {
    { ROP_WRITE, 8, 4, "aaaa" },
    { ROP_WRITE, 12, 6, "bbbbbb" },
    { ROP_ALLOCATE, 0, 24, "" },
    { ROP_WRITE, 2, 2, "cc" },
    { ROP_WRITE, 18, 3, "ddd" },
    { ROP_TRUNCATE, 0, 20, "" },
};
#define TEAR_LOG_OPS ((int)ADB_ARRAY_LEN(tear_log))

static void tear_scenario(u64 seed)
{
    fs_new(seed);
    put("w/log", "HEADER__");
    put("w/other", "other");
    int fd = -1;
    ck_assert_int_eq(IO->ops->open(IO, "w/log", IO_WRITE, &fd), 0);
    for (int i = 0; i < TEAR_LOG_OPS; i++)
        issue(fd, &tear_log[i]);
    int fd2 = -1;
    ck_assert_int_eq(IO->ops->open(IO, "w/other", IO_WRITE, &fd2), 0);
    write_str(fd2, 0, "OTHER");
    int fd3 = open_rw("w/new");
    write_str(fd3, 0, "new");
    ck_assert_int_eq(IO->ops->fsync(IO, fd3), 0);
}

START_TEST(test_tear_file_every_byte)
{
    tear_scenario(0);
    u64 total = io_fault_unsynced_bytes(F, "w/log");
    ck_assert_uint_eq(total, 4 + 6 + 2 + 3);
    ck_assert_uint_eq(io_fault_unsynced_bytes(F, "w/missing"), 0);
    fs_free();
    for (u64 k = 0; k <= total; k++) {
        tear_scenario(k);
        io_fault_power_loss_tear_file(F, "w/log", k);
        /* Expected: whole ops while their bytes fit in k (data-less ops before the cut
         * included), then the first k-left bytes of the write at the cut. */
        struct ref exp = { .len = 8 };
        memcpy(exp.b, "HEADER__", 8);
        u64 left = k;
        for (int i = 0; i < TEAR_LOG_OPS; i++) {
            const struct rop *op = &tear_log[i];
            if (op->kind == ROP_WRITE && op->len > left) {
                ref_apply(&exp, op, left);
                break;
            }
            ref_apply(&exp, op, op->len);
            if (op->kind == ROP_WRITE)
                left -= op->len;
        }
        expect_bytes("w/log", exp.b, exp.len);
        expect_str("w/other", "other");
        ck_assert(!io_fault_exists(F, "w/new"));
        ck_assert_uint_eq(io_fault_mutations(F), 0);
        fs_free();
    }
}
END_TEST

/* TEAR_PAGES: every page of the survivor is the page as written or as it was durable, pages
 * survive out of order, and the seed explores all-kept, none-kept and mixed outcomes. A synced
 * file alongside is untouched. */
START_TEST(test_tear_pages_out_of_order)
{
    enum { PAGES = 12 };
    const u64 size = PAGES * IO_FAULT_PAGE_BYTES;
    static u8 durable[PAGES * IO_FAULT_PAGE_BYTES], written[PAGES * IO_FAULT_PAGE_BYTES];
    static u8 data[3 * IO_FAULT_PAGE_BYTES];
    int all = 0, none = 0, out_of_order = 0;
    for (u64 seed = 0; seed < 300; seed++) {
        fs_new(seed);
        u64 rs = seed * 104729 + 7;
        for (u64 i = 0; i < size; i++)
            durable[i] = (u8)(i / IO_FAULT_PAGE_BYTES + 1);
        ck_assert_int_eq(io_fault_put_file(F, "d/f", durable, size), 0);
        put("d/other", "synced");
        int fd = -1;
        ck_assert_int_eq(IO->ops->open(IO, "d/f", IO_WRITE, &fd), 0);
        int n = 1 + (int)(splitmix_next(&rs) % 6);
        for (int i = 0; i < n; i++) { /* writes that straddle pages, some overlapping */
            u64 len = 1 + splitmix_next(&rs) % sizeof(data);
            u64 off = splitmix_next(&rs) % (size - len);
            for (u64 j = 0; j < len; j++)
                data[j] = (u8)(0x80 | splitmix_next(&rs));
            ck_assert_int_eq(io_write_all(IO, fd, data, (size_t)len, off), 0);
        }
        const u8 *now;
        u64 len;
        ck_assert(io_fault_contents(F, "d/f", &now, &len));
        ck_assert_uint_eq(len, size);
        memcpy(written, now, size);
        io_fault_power_loss(F, IO_FAULT_TEAR_PAGES);

        ck_assert(io_fault_contents(F, "d/f", &now, &len));
        ck_assert_uint_eq(len, size);
        int kept = 0, lost = 0;
        bool lost_before_kept = false;
        for (u64 p = 0; p < PAGES; p++) {
            const u64 at = p * IO_FAULT_PAGE_BYTES;
            if (memcmp(written + at, durable + at, IO_FAULT_PAGE_BYTES) == 0)
                continue; /* not written: nothing to decide */
            bool is_written = memcmp(now + at, written + at, IO_FAULT_PAGE_BYTES) == 0;
            bool is_durable = memcmp(now + at, durable + at, IO_FAULT_PAGE_BYTES) == 0;
            ck_assert_msg(is_written || is_durable, "seed %llu page %llu: neither as written nor as durable",
                          (unsigned long long)seed, (unsigned long long)p);
            if (is_written) {
                kept++;
                lost_before_kept |= lost > 0;
            } else {
                lost++;
            }
        }
        all += lost == 0;
        none += kept == 0;
        out_of_order += lost_before_kept;
        expect_str("d/other", "synced");
        fs_free();
    }
    ck_assert_msg(all > 20 && none > 20 && out_of_order > 20, "all %d, none %d, out of order %d", all, none,
                  out_of_order);
}
END_TEST

/* Directory operations under TEAR: the surviving names are the durable ones plus a prefix of
 * the pending creates, renames and unlinks. */
START_TEST(test_tear_dir_prefix)
{
    int seen[3] = { 0, 0, 0 };
    for (u64 seed = 0; seed < 500; seed++) {
        fs_new(seed);
        put("d/n0", "0");
        put("d/n1", "1");
        /* Pending dir ops, and the names after each prefix of them. */
        u32 after[8];
        int nops = 0;
        u32 mask = 0x3;
        after[nops++] = mask;
        for (int i = 2; i < 5; i++) {
            int fd = open_rw(i == 2 ? "d/n2" : i == 3 ? "d/n3" : "d/n4");
            ck_assert_int_eq(IO->ops->close(IO, fd), 0);
            mask |= 1u << i;
            after[nops++] = mask;
        }
        ck_assert_int_eq(IO->ops->rename(IO, "d/n3", "d/r3"), 0);
        mask = (mask & ~(1u << 3)) | (1u << 19);
        after[nops++] = mask;
        ck_assert_int_eq(IO->ops->unlink(IO, "d/n0"), 0);
        mask &= ~1u;
        after[nops++] = mask;
        ck_assert_int_eq(IO->ops->rename(IO, "d/n1", "d/n2"), 0); /* replaces n2 */
        mask &= ~2u;
        after[nops++] = mask;
        ck_assert_uint_eq(list_mask("d"), mask);

        io_fault_power_loss(F, IO_FAULT_TEAR);
        u32 got = list_mask("d");
        int k = -1;
        for (int i = 0; i < nops && k < 0; i++)
            if (after[i] == got)
                k = i;
        ck_assert_msg(k >= 0, "seed %llu: names 0x%x are not a prefix", (unsigned long long)seed,
                      got);
        seen[k == 0 ? 0 : k == nops - 1 ? 2 : 1]++;
        /* After the final rename, n2 holds n1's content. */
        if (k == nops - 1)
            expect_str("d/n2", "1");
        fs_free();
    }
    ck_assert_int_gt(seen[0], 20);
    ck_assert_int_gt(seen[1], 20);
    ck_assert_int_gt(seen[2], 20);
}
END_TEST

/* A subdirectory whose creation is torn away takes its files with it, whatever TEAR chose for
 * them; one that survives keeps them. */
START_TEST(test_tear_nested_dirs)
{
    int lost = 0, kept = 0;
    for (u64 seed = 0; seed < 200; seed++) {
        fs_new(seed);
        ck_assert_int_eq(IO->ops->mkdir(IO, "top"), 0);
        int fd = open_rw("top/f");
        write_str(fd, 0, "payload");
        ck_assert_int_eq(IO->ops->fsync(IO, fd), 0);
        ck_assert_int_eq(IO->ops->sync_dir(IO, "top"), 0);
        io_fault_power_loss(F, IO_FAULT_TEAR);
        if (io_fault_exists(F, "top")) {
            kept++;
            expect_str("top/f", "payload");
        } else {
            lost++;
            ck_assert(!io_fault_exists(F, "top/f"));
            ck_assert_int_eq(IO->ops->list_dir(IO, "top", collect_cb, NULL), -ENOENT);
        }
        fs_free();
    }
    ck_assert_int_gt(lost, 20);
    ck_assert_int_gt(kept, 20);
}
END_TEST

/* ---- the fault plan ---------------------------------------------------------------------- */

START_TEST(test_fail_write)
{
    fs_new(20);
    int fd = open_rw("f");
    write_str(fd, 0, "aa"); /* writes before the plan do not count */
    io_fault_fail_write(F, 2, -ENOSPC);
    write_str(fd, 2, "bb");
    size_t done = 77;
    ck_assert_int_eq(IO->ops->pwrite(IO, fd, "cc", 2, 4, &done), -ENOSPC);
    expect_str("f", "aabb"); /* nothing written */
    ck_assert_uint_eq(io_fault_unsynced_bytes(F, "f"), 4);
    write_str(fd, 4, "dd"); /* only the nth write fails */
    expect_str("f", "aabbdd");
    ck_assert_uint_eq(io_fault_mutations(F), 5); /* the failed write was issued */
    fs_free();
}
END_TEST

START_TEST(test_short_write)
{
    for (u64 seed = 0; seed < 200; seed++) {
        fs_new(seed);
        int fd = open_rw("f");
        io_fault_short_write(F, 1);
        size_t done = 0;
        ck_assert_int_eq(IO->ops->pwrite(IO, fd, "0123456789", 10, 0, &done), 0);
        ck_assert_uint_ge(done, 1);
        ck_assert_uint_lt(done, 10);
        expect_bytes("f", "0123456789", done);
        ck_assert_uint_eq(io_fault_unsynced_bytes(F, "f"), done);
        /* io_write_all loops over a short write and completes the rest. */
        io_fault_short_write(F, 1);
        ck_assert_int_eq(io_write_all(IO, fd, "abcdefgh", 8, 10), 0);
        const u8 *data;
        u64 len;
        ck_assert(io_fault_contents(F, "f", &data, &len));
        ck_assert_uint_eq(len, 18);
        ck_assert_int_eq(memcmp(data + 10, "abcdefgh", 8), 0);
        /* A one-byte write cut short writes nothing, which io_write_all reports as -EIO. */
        io_fault_short_write(F, 1);
        ck_assert_int_eq(IO->ops->pwrite(IO, fd, "z", 1, 0, &done), 0);
        ck_assert_uint_eq(done, 0);
        io_fault_short_write(F, 1);
        ck_assert_int_eq(io_write_all(IO, fd, "z", 1, 0), -EIO);
        ck_assert(io_fault_contents(F, "f", &data, &len));
        ck_assert_uint_eq(data[0], '0');
        fs_free();
    }
}
END_TEST

START_TEST(test_fail_sync)
{
    for (int mode = 0; mode < 2; mode++) {
        fs_new(21);
        put("f", "");
        int fd = -1;
        ck_assert_int_eq(IO->ops->open(IO, "f", IO_WRITE, &fd), 0);
        write_str(fd, 0, "AAAA");
        io_fault_fail_sync(F, 1, -EIO);
        ck_assert_int_eq(IO->ops->datasync(IO, fd), -EIO);
        /* Reads still see the data; the retried sync "succeeds" without writing it. */
        char buf[4];
        ck_assert_int_eq(io_read_all(IO, fd, buf, 4, 0), 0);
        ck_assert_int_eq(memcmp(buf, "AAAA", 4), 0);
        ck_assert_int_eq(IO->ops->fsync(IO, fd), 0);
        /* Later writes are synced as usual. */
        write_str(fd, 4, "BB");
        ck_assert_int_eq(IO->ops->datasync(IO, fd), 0);
        expect_str("f", "AAAABB");
        io_fault_power_loss(F, mode == 0 ? IO_FAULT_KEEP_SYNCED : IO_FAULT_KEEP_ALL);
        if (mode == 0)
            expect_bytes("f", "\0\0\0\0BB", 6); /* fsyncgate: AAAA never reached the disk */
        else
            expect_str("f", "AAAABB");
        fs_free();
    }
}
END_TEST

/* Before any later sync, data a failed sync gave up on may or may not survive a tear. */
START_TEST(test_fail_sync_then_tear)
{
    int kept = 0, lost = 0;
    for (u64 seed = 0; seed < 200; seed++) {
        fs_new(seed);
        put("f", "old!");
        int fd = -1;
        ck_assert_int_eq(IO->ops->open(IO, "f", IO_WRITE, &fd), 0);
        write_str(fd, 0, "new!");
        io_fault_fail_sync(F, 1, -EIO);
        ck_assert_int_eq(IO->ops->fsync(IO, fd), -EIO);
        ck_assert_uint_eq(io_fault_unsynced_bytes(F, "f"), 4);
        io_fault_power_loss(F, IO_FAULT_TEAR);
        const u8 *data;
        u64 len;
        ck_assert(io_fault_contents(F, "f", &data, &len));
        ck_assert_uint_eq(len, 4);
        /* A prefix of "new!" over "old!". */
        u64 p = 0;
        while (p < 4 && data[p] == "new!"[p])
            p++;
        static const char old[] = "old!";
        ck_assert_int_eq(memcmp(data + p, old + p, 4 - p), 0);
        if (p == 4)
            kept++;
        if (p == 0)
            lost++;
        fs_free();
    }
    ck_assert_int_gt(kept, 20);
    ck_assert_int_gt(lost, 20);
}
END_TEST

/* A fixed workload; returns how many of its calls succeeded before the first failure. */
static int workload(void)
{
    static const char *const steps[] = { "mkdir", "syncroot", "create", "write", "write2",
                                         "sync", "create2", "write3", "sync2", "rename",
                                         "syncdir", "unlink", "syncdir", "allocate",
                                         "truncate" };
    int fd = -1, fd2 = -1, ok = 0;
    for (size_t i = 0; i < ADB_ARRAY_LEN(steps); i++) {
        const char *s = steps[i];
        size_t done;
        int rc;
        if (strcmp(s, "mkdir") == 0)
            rc = IO->ops->mkdir(IO, "db");
        else if (strcmp(s, "syncroot") == 0)
            rc = IO->ops->sync_dir(IO, "");
        else if (strcmp(s, "create") == 0)
            rc = IO->ops->open(IO, "db/wal", IO_WRITE | IO_CREATE, &fd);
        else if (strcmp(s, "write") == 0)
            rc = IO->ops->pwrite(IO, fd, "abcd", 4, 0, &done);
        else if (strcmp(s, "write2") == 0)
            rc = IO->ops->pwrite(IO, fd, "efgh", 4, 4, &done);
        else if (strcmp(s, "sync") == 0)
            rc = IO->ops->datasync(IO, fd);
        else if (strcmp(s, "create2") == 0)
            rc = IO->ops->open(IO, "db/snap.tmp", IO_WRITE | IO_CREATE, &fd2);
        else if (strcmp(s, "write3") == 0)
            rc = IO->ops->pwrite(IO, fd2, "snap", 4, 0, &done);
        else if (strcmp(s, "sync2") == 0)
            rc = IO->ops->fsync(IO, fd2);
        else if (strcmp(s, "rename") == 0)
            rc = IO->ops->rename(IO, "db/snap.tmp", "db/snap");
        else if (strcmp(s, "syncdir") == 0)
            rc = IO->ops->sync_dir(IO, "db");
        else if (strcmp(s, "unlink") == 0)
            rc = IO->ops->unlink(IO, "db/snap");
        else if (strcmp(s, "allocate") == 0)
            rc = IO->ops->allocate(IO, fd, 64);
        else
            rc = IO->ops->truncate(IO, fd, 8);
        if (rc != 0) {
            ck_assert_int_eq(rc, -EIO);
            return ok;
        }
        ok++;
    }
    return ok;
}

START_TEST(test_crash_after)
{
    fs_new(30);
    int total = workload();
    u64 mutations = io_fault_mutations(F);
    ck_assert_int_eq(total, 15);
    ck_assert_uint_eq(mutations, 15);
    fs_free();
    for (u64 k = 0; k <= mutations; k++) {
        fs_new(30);
        put("pre", "existing");
        io_fault_crash_after(F, k);
        int ok = workload();
        ck_assert_int_eq(ok, (int)k);
        ck_assert_uint_eq(io_fault_mutations(F), k);
        ck_assert(io_fault_crashed(F) == (k < mutations));
        if (k < mutations) {
            /* The process is dead: every call fails and changes nothing. */
            int fd = -1;
            size_t done;
            char c;
            u64 size;
            ck_assert_int_eq(IO->ops->open(IO, "pre", IO_READ, &fd), -EIO);
            ck_assert_int_eq(IO->ops->pread(IO, 3, &c, 1, 0, &done), -EIO);
            ck_assert_int_eq(IO->ops->size(IO, 3, &size), -EIO);
            ck_assert_int_eq(IO->ops->close(IO, 3), -EIO);
            ck_assert_int_eq(IO->ops->list_dir(IO, "", collect_cb, NULL), -EIO);
            ck_assert_int_eq(IO->ops->sync_dir(IO, ""), -EIO);
            ck_assert_uint_eq(io_fault_mutations(F), k);
        }
        /* Reboot clears the crash; the file system works again. */
        io_fault_power_loss(F, IO_FAULT_KEEP_ALL);
        ck_assert(!io_fault_crashed(F));
        ck_assert_uint_eq(io_fault_mutations(F), 0);
        expect_str("pre", "existing");
        ck_assert(io_fault_exists(F, "db") == (k >= 1));
        ck_assert(io_fault_exists(F, "db/wal") == (k >= 3));
        int fd = open_rw("after");
        ck_assert_int_eq(IO->ops->close(IO, fd), 0);
        fs_free();
    }
}
END_TEST

/* A killed process: descriptors and the crash are gone, the page cache is not. What it wrote
 * and named without a sync is read back, and a power loss still drops it unless a sync came in
 * between. */
START_TEST(test_process_restart_keeps_the_page_cache)
{
    for (int sync_after = 0; sync_after <= 1; sync_after++) {
        fs_new(32);
        put("d/old", "old");
        int fd = open_rw("d/new");
        write_str(fd, 0, "unsynced");
        int fd_old = -1;
        ck_assert_int_eq(IO->ops->open(IO, "d/old", IO_WRITE, &fd_old), 0);
        write_str(fd_old, 0, "OLD!");
        ck_assert_int_eq(IO->ops->unlink(IO, "d/old"), 0);
        io_fault_crash_after(F, 0);
        ck_assert_int_eq(IO->ops->datasync(IO, fd), -EIO);
        ck_assert(io_fault_crashed(F));

        io_fault_process_restart(F);
        ck_assert(!io_fault_crashed(F));
        ck_assert_uint_eq(io_fault_mutations(F), 0);
        size_t done;
        char c;
        ck_assert_int_eq(IO->ops->pread(IO, fd, &c, 1, 0, &done), -EBADF);
        expect_str("d/new", "unsynced");
        ck_assert(!io_fault_exists(F, "d/old"));
        ck_assert_uint_eq(io_fault_unsynced_bytes(F, "d/new"), 8);
        if (sync_after) {
            ck_assert_int_eq(IO->ops->open(IO, "d/new", IO_READ, &fd), 0);
            ck_assert_int_eq(IO->ops->fsync(IO, fd), 0);
            ck_assert_int_eq(IO->ops->sync_dir(IO, "d"), 0);
        }
        io_fault_power_loss(F, IO_FAULT_KEEP_SYNCED);
        if (sync_after) {
            expect_str("d/new", "unsynced");
            ck_assert(!io_fault_exists(F, "d/old"));
        } else {
            ck_assert(!io_fault_exists(F, "d/new"));
            expect_str("d/old", "old"); /* the unlink was never durable */
        }
        fs_free();
    }
}
END_TEST

/* Non-mutating calls before the crash point still work; the dying call is the first mutation
 * past it. */
START_TEST(test_crash_after_zero)
{
    fs_new(31);
    put("f", "abc");
    int fd = -1;
    ck_assert_int_eq(IO->ops->open(IO, "f", IO_WRITE, &fd), 0);
    io_fault_crash_after(F, 0);
    char buf[3];
    ck_assert_int_eq(io_read_all(IO, fd, buf, 3, 0), 0);
    ck_assert(!io_fault_crashed(F));
    size_t done;
    ck_assert_int_eq(IO->ops->pwrite(IO, fd, "X", 1, 0, &done), -EIO);
    ck_assert(io_fault_crashed(F));
    expect_str("f", "abc");
    io_fault_power_loss(F, IO_FAULT_KEEP_ALL);
    expect_str("f", "abc");
    fs_free();
}
END_TEST

START_TEST(test_flip_bit)
{
    fs_new(40);
    put("d/f", "abcd");
    ck_assert_int_eq(io_fault_flip_bit(F, "d/f", 2, 0), 0);
    expect_str("d/f", "abbd");
    io_fault_power_loss(F, IO_FAULT_KEEP_SYNCED);
    expect_str("d/f", "abbd"); /* the medium itself is corrupt */
    ck_assert_int_eq(io_fault_flip_bit(F, "d/f", 2, 0), 0);
    expect_str("d/f", "abcd");
    ck_assert_int_eq(io_fault_flip_bit(F, "d/f", 0, 7), 0);
    expect_str("d/f", "\xe1" "bcd");
    ck_assert_int_eq(io_fault_flip_bit(F, "d/f", 4, 0), -EINVAL);
    ck_assert_int_eq(io_fault_flip_bit(F, "d/f", 0, 8), -EINVAL);
    ck_assert_int_eq(io_fault_flip_bit(F, "d/missing", 0, 0), -ENOENT);
    ck_assert_int_eq(io_fault_flip_bit(F, "d", 0, 0), -EISDIR);
    /* A byte beyond the durable length flips only in the current view. */
    int fd = -1;
    ck_assert_int_eq(IO->ops->open(IO, "d/f", IO_WRITE, &fd), 0);
    write_str(fd, 4, "e");
    ck_assert_int_eq(io_fault_flip_bit(F, "d/f", 4, 1), 0);
    expect_str("d/f", "\xe1" "bcdg");
    io_fault_power_loss(F, IO_FAULT_KEEP_SYNCED);
    expect_str("d/f", "\xe1" "bcd");
    fs_free();
}
END_TEST

/* Same seed, same calls, same tear: a failing seed reproduces. */
START_TEST(test_deterministic)
{
    bool exists[2];
    u8 bytes[2][64];
    u64 lens[2] = { 0, 0 };
    for (int run = 0; run < 2; run++) {
        fs_new(12345);
        int fd = open_rw("f");
        for (int i = 0; i < 8; i++)
            write_str(fd, (u64)i * 4, "wxyz");
        io_fault_power_loss(F, IO_FAULT_TEAR);
        const u8 *data;
        exists[run] = io_fault_contents(F, "f", &data, &lens[run]);
        if (exists[run] && lens[run] > 0)
            memcpy(bytes[run], data, (size_t)lens[run]);
        fs_free();
    }
    ck_assert(exists[0] == exists[1]);
    ck_assert_uint_eq(lens[0], lens[1]);
    if (exists[0] && lens[0] > 0)
        ck_assert_int_eq(memcmp(bytes[0], bytes[1], (size_t)lens[0]), 0);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("io_fault");
    TCase *basic = tcase_create("semantics");
    tcase_add_test(basic, test_open_semantics);
    tcase_add_test(basic, test_read_write_size);
    tcase_add_test(basic, test_bad_disk);
    tcase_add_test(basic, test_rename_semantics);
    tcase_add_test(basic, test_list_dir);
    tcase_add_test(basic, test_root_alias);
    tcase_add_test(basic, test_fd_after_unlink);
    tcase_add_test(basic, test_mutation_counting);
    tcase_add_test(basic, test_put_file);
    suite_add_tcase(s, basic);

    TCase *loss = tcase_create("power_loss");
    tcase_add_test(loss, test_sync_survives);
    tcase_add_test(loss, test_unsynced_dropped);
    tcase_add_test(loss, test_create_needs_sync_dir);
    tcase_add_test(loss, test_mkdir_needs_parent_sync);
    tcase_add_test(loss, test_rename_needs_sync_dir);
    tcase_add_test(loss, test_unlink_needs_sync_dir);
    tcase_add_test(loss, test_tear_keeps_prefix);
    tcase_add_test(loss, test_tear_file_every_byte);
    tcase_add_test(loss, test_tear_pages_out_of_order);
    tcase_add_test(loss, test_tear_dir_prefix);
    tcase_add_test(loss, test_tear_nested_dirs);
    tcase_add_test(loss, test_deterministic);
    tcase_set_timeout(loss, TEST_LONG_TIMEOUT);
    suite_add_tcase(s, loss);

    TCase *faults = tcase_create("faults");
    tcase_add_test(faults, test_fail_write);
    tcase_add_test(faults, test_short_write);
    tcase_add_test(faults, test_fail_sync);
    tcase_add_test(faults, test_fail_sync_then_tear);
    tcase_add_test(faults, test_crash_after);
    tcase_add_test(faults, test_crash_after_zero);
    tcase_add_test(faults, test_process_restart_keeps_the_page_cache);
    tcase_add_test(faults, test_flip_bit);
    suite_add_tcase(s, faults);
    return s;
}
