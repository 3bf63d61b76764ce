/*
 * tests/io_fault.c — the fault-injecting in-memory file system (see io_fault.h).
 *
 * Model: inodes hold the bytes reads see (cur), the bytes a power loss keeps for sure (dur) and
 * the operations issued since the last successful sync (ops). Directories hold current names,
 * durable names and the name operations since the last sync_dir. A power loss replays a chosen
 * prefix of each pending list onto the durable state; that result becomes the new current and
 * durable state of the rebooted file system.
 *
 * NOTES
 *   Invariants, asserted where they are cheap to check:
 *     - directory: durable entries + every pending operation == current entries (at sync_dir);
 *     - inode: durable + every pending operation == current bytes, unless a failed sync made
 *       the inode "diverged" (reads keep data that no sync will ever write);
 *     - every directory but the root is named (as IOF_DIR) in its parent's current entries.
 *   Inode numbers are 1-based indexes into f->inodes; entry number IOF_DIR marks a directory.
 *   Inodes are freed only at power loss (when no fd and no name can refer to them) and at
 *   destroy, so an unlinked file stays usable through its descriptors.
 *
 *   Every random choice comes from one SplitMix64 stream seeded at create, drawn in a fixed
 *   order (inodes by number, then directories by index), so a seed reproduces a run exactly.
 */
#include "tests/io_fault.h"

#include "common/assert.h"
#include "common/splitmix.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define IOF_DIR 0u         /* entry "inode number" of a subdirectory */
#define IOF_FD_BASE 3      /* like a process, never hand out 0-2 */
#define IOF_FDS_MAX 1024   /* -EMFILE beyond: a leak in the code under test shows up */
#define IOF_FAULTS_MAX 16  /* planned faults at one time */
#define IOF_NAME_MAX 255   /* one path component */

/* ---- allocation ------------------------------------------------------------------------- */

/* Test code: running out of memory is not a condition to handle, so abort loudly. */
static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n == 0 ? 1 : n);
    ADB_ASSERT(q != NULL);
    return q;
}

static char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = xrealloc(NULL, n);
    memcpy(d, s, n);
    return d;
}

/* Returns v grown (doubling) so it holds at least need elements of size bytes. */
static void *grow(void *v, u32 *cap, u32 need, size_t size)
{
    if (need <= *cap)
        return v;
    u32 c = *cap < 8 ? 8 : *cap;
    while (c < need)
        c *= 2;
    *cap = c;
    return xrealloc(v, (size_t)c * size);
}

/* ---- byte buffers ----------------------------------------------------------------------- */

struct iof_buf {
    u8 *p;
    u64 len;
    u64 cap;
};

/* Sets the length; bytes gained read as zeros (also after an earlier shrink). */
static void buf_resize(struct iof_buf *b, u64 len)
{
    if (len > b->cap) {
        u64 cap = b->cap < 64 ? 64 : b->cap;
        while (cap < len)
            cap *= 2;
        b->p = xrealloc(b->p, (size_t)cap);
        b->cap = cap;
    }
    if (len > b->len)
        memset(b->p + b->len, 0, (size_t)(len - b->len));
    b->len = len;
}

/* pwrite semantics: a write past the end fills the gap with zeros. */
static void buf_write(struct iof_buf *b, u64 off, const u8 *data, u64 n)
{
    if (n == 0)
        return;
    if (off + n > b->len)
        buf_resize(b, off + n);
    memcpy(b->p + off, data, (size_t)n);
}

static void buf_copy(struct iof_buf *dst, const struct iof_buf *src)
{
    dst->len = 0;
    buf_resize(dst, src->len);
    if (src->len > 0)
        memcpy(dst->p, src->p, (size_t)src->len);
}

static bool buf_equal(const struct iof_buf *a, const struct iof_buf *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->p, b->p, (size_t)a->len) == 0);
}

static void buf_free(struct iof_buf *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

/* ---- inodes ----------------------------------------------------------------------------- */

enum iof_op_kind { IOF_OP_WRITE, IOF_OP_TRUNCATE, IOF_OP_ALLOCATE };

/* One unsynced file operation. */
struct iof_op {
    enum iof_op_kind kind;
    bool forgotten; /* issued before a failed sync: no later sync makes it durable */
    u64 off;        /* write offset */
    u64 len;        /* write length, or the truncate/allocate length */
    u8 *data;       /* write bytes (owned) */
};

struct iof_inode {
    struct iof_buf cur; /* what reads see */
    struct iof_buf dur; /* what IO_FAULT_KEEP_SYNCED keeps */
    struct iof_op *ops; /* issued since the last successful sync, in order */
    u32 nops;
    u32 ops_cap;
    bool diverged; /* a sync skipped forgotten operations: cur != dur + ops */
};

/* Applies op to b; a write keeps only its first write_bytes bytes (a torn write). */
static void op_apply(const struct iof_op *op, u64 write_bytes, struct iof_buf *b)
{
    switch (op->kind) {
    case IOF_OP_WRITE:
        buf_write(b, op->off, op->data, write_bytes < op->len ? write_bytes : op->len);
        break;
    case IOF_OP_TRUNCATE:
        buf_resize(b, op->len);
        break;
    case IOF_OP_ALLOCATE: /* never shrinks */
        if (b->len < op->len)
            buf_resize(b, op->len);
        break;
    }
}

/* Records op as pending and applies it to what reads see. Takes ownership of op->data. */
static void inode_do(struct iof_inode *in, struct iof_op op)
{
    in->ops = grow(in->ops, &in->ops_cap, in->nops + 1, sizeof(*in->ops));
    in->ops[in->nops++] = op;
    op_apply(&op, op.len, &in->cur);
}

static void inode_clear_ops(struct iof_inode *in)
{
    for (u32 i = 0; i < in->nops; i++)
        free(in->ops[i].data);
    in->nops = 0;
}

/* Where a power loss cuts an inode's pending list: ops[0, whole) survive entirely and, if
 * ops[whole] is a write, its first `partial` bytes too. */
struct iof_cut {
    u32 whole;
    u64 partial;
};

/* out = durable bytes + the pending operations before the cut. */
static void inode_replay(const struct iof_inode *in, struct iof_cut cut, struct iof_buf *out)
{
    ADB_ASSERT(cut.whole <= in->nops);
    buf_copy(out, &in->dur);
    for (u32 i = 0; i < cut.whole; i++)
        op_apply(&in->ops[i], in->ops[i].len, out);
    if (cut.whole < in->nops && in->ops[cut.whole].kind == IOF_OP_WRITE) {
        ADB_ASSERT(cut.partial < in->ops[cut.whole].len);
        op_apply(&in->ops[cut.whole], cut.partial, out);
    }
}

/* out = durable bytes + the pending operations, where each page the pending writes touched
 * keeps all of its writes or none (IO_FAULT_TEAR_PAGES); truncates and allocates all apply. */
static void inode_replay_pages(const struct iof_inode *in, const bool *keep, struct iof_buf *out)
{
    buf_copy(out, &in->dur);
    for (u32 i = 0; i < in->nops; i++) {
        const struct iof_op *op = &in->ops[i];
        if (op->kind != IOF_OP_WRITE) {
            op_apply(op, op->len, out);
            continue;
        }
        for (u64 at = op->off; at < op->off + op->len;) {
            u64 page_end = (at / IO_FAULT_PAGE_BYTES + 1) * IO_FAULT_PAGE_BYTES;
            u64 n = (page_end < op->off + op->len ? page_end : op->off + op->len) - at;
            if (keep[at / IO_FAULT_PAGE_BYTES])
                buf_write(out, at, op->data + (at - op->off), n);
            at += n;
        }
    }
}

/* A successful sync: pending operations become durable, except those a failed sync gave up
 * on (Linux marked their pages clean, so this sync does not write them). */
static void inode_sync(struct iof_inode *in)
{
    for (u32 i = 0; i < in->nops; i++) {
        if (in->ops[i].forgotten)
            in->diverged = true;
        else
            op_apply(&in->ops[i], in->ops[i].len, &in->dur);
    }
    if (!in->diverged)
        ADB_ASSERT(buf_equal(&in->dur, &in->cur));
    inode_clear_ops(in);
}

/* Reboot: the surviving bytes become both the current and the durable contents. */
static void inode_reset(struct iof_inode *in, struct iof_buf *survivor)
{
    buf_free(&in->cur);
    in->cur = *survivor;
    buf_copy(&in->dur, &in->cur);
    inode_clear_ops(in);
    in->diverged = false;
}

static void inode_free(struct iof_inode *in)
{
    inode_clear_ops(in);
    free(in->ops);
    buf_free(&in->cur);
    buf_free(&in->dur);
    free(in);
}

static u64 inode_unsynced_bytes(const struct iof_inode *in)
{
    u64 n = 0;
    for (u32 i = 0; i < in->nops; i++)
        if (in->ops[i].kind == IOF_OP_WRITE)
            n += in->ops[i].len;
    return n;
}

/* The cut that keeps exactly keep bytes of write data; operations that carry no data are kept
 * if they come before the first dropped byte. */
static struct iof_cut cut_at_byte(const struct iof_inode *in, u64 keep)
{
    struct iof_cut c = { 0, 0 };
    for (; c.whole < in->nops; c.whole++) {
        const struct iof_op *op = &in->ops[c.whole];
        if (op->kind != IOF_OP_WRITE)
            continue;
        if (op->len > keep) {
            c.partial = keep;
            return c;
        }
        keep -= op->len;
    }
    ADB_ASSERT(keep == 0);
    return c;
}

/* ---- directories ------------------------------------------------------------------------ */

struct iof_ent {
    char *name;
    u32 ino; /* IOF_DIR for a subdirectory */
};

struct iof_ents {
    struct iof_ent *v;
    u32 n;
    u32 cap;
};

static struct iof_ent *ents_find(const struct iof_ents *e, const char *name)
{
    for (u32 i = 0; i < e->n; i++)
        if (strcmp(e->v[i].name, name) == 0)
            return &e->v[i];
    return NULL;
}

/* Adds name, or points an existing name at ino (rename over a target replaces it). */
static void ents_set(struct iof_ents *e, const char *name, u32 ino)
{
    struct iof_ent *old = ents_find(e, name);
    if (old != NULL) {
        old->ino = ino;
        return;
    }
    e->v = grow(e->v, &e->cap, e->n + 1, sizeof(*e->v));
    e->v[e->n].name = xstrdup(name);
    e->v[e->n].ino = ino;
    e->n++;
}

static void ents_remove(struct iof_ents *e, const char *name)
{
    struct iof_ent *x = ents_find(e, name);
    ADB_ASSERT(x != NULL);
    free(x->name);
    *x = e->v[--e->n];
}

static void ents_free(struct iof_ents *e)
{
    for (u32 i = 0; i < e->n; i++)
        free(e->v[i].name);
    free(e->v);
    memset(e, 0, sizeof(*e));
}

static void ents_copy(struct iof_ents *dst, const struct iof_ents *src)
{
    ents_free(dst);
    for (u32 i = 0; i < src->n; i++)
        ents_set(dst, src->v[i].name, src->v[i].ino);
}

static bool ents_equal(const struct iof_ents *a, const struct iof_ents *b)
{
    if (a->n != b->n)
        return false;
    for (u32 i = 0; i < a->n; i++) {
        const struct iof_ent *x = ents_find(b, a->v[i].name);
        if (x == NULL || x->ino != a->v[i].ino)
            return false;
    }
    return true;
}

enum iof_dop_kind { IOF_DOP_CREATE, IOF_DOP_RENAME, IOF_DOP_UNLINK };

/* One name operation not yet made durable by sync_dir. mkdir is a create of IOF_DIR. */
struct iof_dop {
    enum iof_dop_kind kind;
    char *name; /* created, renamed (source) or unlinked name */
    char *to;   /* rename target, else NULL */
    u32 ino;    /* what the created or renamed name refers to */
};

struct iof_dir {
    char *path; /* "" for the root */
    struct iof_ents cur;
    struct iof_ents dur;
    struct iof_dop *ops; /* since the last sync_dir, in order */
    u32 nops;
    u32 ops_cap;
};

static void dop_apply(const struct iof_dop *op, struct iof_ents *e)
{
    switch (op->kind) {
    case IOF_DOP_CREATE:
        ents_set(e, op->name, op->ino);
        break;
    case IOF_DOP_RENAME:
        ents_set(e, op->to, op->ino);
        ents_remove(e, op->name);
        break;
    case IOF_DOP_UNLINK:
        ents_remove(e, op->name);
        break;
    }
}

/* Records a name operation as pending and applies it to the current entries. */
static void dir_do(struct iof_dir *d, enum iof_dop_kind kind, const char *name, const char *to,
                   u32 ino)
{
    d->ops = grow(d->ops, &d->ops_cap, d->nops + 1, sizeof(*d->ops));
    struct iof_dop *op = &d->ops[d->nops++];
    op->kind = kind;
    op->name = xstrdup(name);
    op->to = to != NULL ? xstrdup(to) : NULL;
    op->ino = ino;
    dop_apply(op, &d->cur);
}

/* True if an unsynced operation mentions name: its durable and current entries may differ. */
static bool dir_busy(const struct iof_dir *d, const char *name)
{
    for (u32 i = 0; i < d->nops; i++) {
        const struct iof_dop *op = &d->ops[i];
        if (strcmp(op->name, name) == 0 || (op->to != NULL && strcmp(op->to, name) == 0))
            return true;
    }
    return false;
}

/* out = durable entries + the first k pending operations. */
static void dir_replay(const struct iof_dir *d, u32 k, struct iof_ents *out)
{
    ADB_ASSERT(k <= d->nops);
    ents_copy(out, &d->dur);
    for (u32 i = 0; i < k; i++)
        dop_apply(&d->ops[i], out);
}

static void dir_clear_ops(struct iof_dir *d)
{
    for (u32 i = 0; i < d->nops; i++) {
        free(d->ops[i].name);
        free(d->ops[i].to);
    }
    d->nops = 0;
}

static void dir_sync(struct iof_dir *d)
{
    struct iof_ents check = { 0 };
    dir_replay(d, d->nops, &check);
    ADB_ASSERT(ents_equal(&check, &d->cur));
    ents_free(&check);
    ents_copy(&d->dur, &d->cur);
    dir_clear_ops(d);
}

/* Reboot: the first k pending operations survive and become current and durable. */
static void dir_reset(struct iof_dir *d, u32 k)
{
    struct iof_ents survivor = { 0 };
    dir_replay(d, k, &survivor);
    ents_free(&d->cur);
    d->cur = survivor;
    ents_copy(&d->dur, &d->cur);
    dir_clear_ops(d);
}

static void dir_free(struct iof_dir *d)
{
    dir_clear_ops(d);
    free(d->ops);
    ents_free(&d->cur);
    ents_free(&d->dur);
    free(d->path);
    free(d);
}

/* ---- the file system -------------------------------------------------------------------- */

struct iof_fd {
    bool used;
    bool writable;
    u32 ino;
};

enum iof_fault_kind { IOF_FAIL_WRITE, IOF_SHORT_WRITE, IOF_FAIL_SYNC };

struct iof_fault {
    enum iof_fault_kind kind;
    u64 at; /* value of the write or sync counter of the call that faults */
    int err;
};

struct io_fault {
    struct io io; /* first: the ops get a struct io * and cast back */
    u64 rng;
    struct iof_inode **inodes; /* [0] unused; NULL = free number */
    u32 ninodes;
    u32 inodes_cap;
    struct iof_dir **dirs; /* [0] is the root */
    u32 ndirs;
    u32 dirs_cap;
    struct iof_fd *fds; /* fd = index + IOF_FD_BASE */
    u32 nfds;
    u32 fds_cap;
    struct iof_fault faults[IOF_FAULTS_MAX];
    u32 nfaults;
    u64 mutations; /* mutating calls since create or power loss */
    u64 writes;    /* pwrite calls, for the fault plan */
    u64 syncs;     /* datasync/fsync calls, for the fault plan */
    bool crash_armed;
    u64 crash_at; /* value of mutations at which the next mutating call dies */
    bool crashed;
    u32 read_ppm, misdirect_ppm; /* a bad disk (io_fault_bad_disk), kept across power loss */
    u64 read_errors, misdirected;
};

ADB_STATIC_ASSERT(offsetof(struct io_fault, io) == 0, "struct io must come first");

static struct io_fault *iof_of(struct io *io)
{
    return (struct io_fault *)(void *)io;
}

static u64 rng(struct io_fault *f)
{
    return splitmix_next(&f->rng);
}

/* Called by every mutating call once its arguments are valid: counts it or, at the planned
 * crash point, kills the "process" so nothing from here on reaches the disk. */
static int mutation(struct io_fault *f)
{
    if (f->crash_armed && f->mutations == f->crash_at) {
        f->crashed = true;
        return -EIO;
    }
    f->mutations++;
    return 0;
}

/* Removes the planned fault of this kind for call number at, if any. OUT: *err. */
static bool fault_take(struct io_fault *f, enum iof_fault_kind kind, u64 at, int *err)
{
    for (u32 i = 0; i < f->nfaults; i++) {
        if (f->faults[i].kind != kind || f->faults[i].at != at)
            continue;
        *err = f->faults[i].err;
        f->faults[i] = f->faults[--f->nfaults];
        return true;
    }
    return false;
}

static void fault_plan(struct io_fault *f, enum iof_fault_kind kind, u64 at, int err)
{
    ADB_ASSERT(f->nfaults < IOF_FAULTS_MAX);
    f->faults[f->nfaults++] = (struct iof_fault){ .kind = kind, .at = at, .err = err };
}

/* Finds a directory by path (n bytes of p); "." is the root. */
static struct iof_dir *dir_find(const struct io_fault *f, const char *p, size_t n)
{
    if (n == 1 && p[0] == '.')
        n = 0;
    for (u32 i = 0; i < f->ndirs; i++)
        if (strlen(f->dirs[i]->path) == n && memcmp(f->dirs[i]->path, p, n) == 0)
            return f->dirs[i];
    return NULL;
}

static struct iof_dir *dir_new(struct io_fault *f, const char *p, size_t n)
{
    struct iof_dir *d = xrealloc(NULL, sizeof(*d));
    memset(d, 0, sizeof(*d));
    d->path = xrealloc(NULL, n + 1);
    memcpy(d->path, p, n);
    d->path[n] = '\0';
    f->dirs = grow(f->dirs, &f->dirs_cap, f->ndirs + 1, sizeof(*f->dirs));
    f->dirs[f->ndirs++] = d;
    return d;
}

/* Splits path into its directory (which must exist) and its last component. */
static int path_split(const struct io_fault *f, const char *path, struct iof_dir **dir /* OUT */,
                      const char **name /* OUT */)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash != NULL ? slash + 1 : path;
    if (base[0] == '\0')
        return -ENOENT;
    if (strcmp(base, ".") == 0 || strcmp(base, "..") == 0)
        return -EINVAL;
    if (strlen(base) > IOF_NAME_MAX)
        return -ENAMETOOLONG;
    *dir = dir_find(f, path, slash != NULL ? (size_t)(slash - path) : 0);
    if (*dir == NULL)
        return -ENOENT;
    *name = base;
    return 0;
}

/* The inode number of the file path names now. */
static int file_ino(const struct io_fault *f, const char *path, u32 *ino /* OUT */)
{
    struct iof_dir *d;
    const char *name;
    int rc = path_split(f, path, &d, &name);
    if (rc != 0)
        return rc;
    const struct iof_ent *e = ents_find(&d->cur, name);
    if (e == NULL)
        return -ENOENT;
    if (e->ino == IOF_DIR)
        return -EISDIR;
    *ino = e->ino;
    return 0;
}

/* A new empty inode, reusing numbers freed at power loss. */
static u32 inode_new(struct io_fault *f)
{
    u32 ino = 1;
    while (ino < f->ninodes && f->inodes[ino] != NULL)
        ino++;
    if (ino == f->ninodes) {
        f->inodes = grow(f->inodes, &f->inodes_cap, f->ninodes + 1, sizeof(*f->inodes));
        f->ninodes++;
    }
    f->inodes[ino] = xrealloc(NULL, sizeof(struct iof_inode));
    memset(f->inodes[ino], 0, sizeof(struct iof_inode));
    return ino;
}

/* The inode behind an open descriptor; writable descriptors only if want_write. */
static int fd_inode(struct io_fault *f, int fd, bool want_write, struct iof_inode **in /* OUT */)
{
    if (fd < IOF_FD_BASE || (u32)(fd - IOF_FD_BASE) >= f->nfds)
        return -EBADF;
    const struct iof_fd *d = &f->fds[fd - IOF_FD_BASE];
    if (!d->used || (want_write && !d->writable))
        return -EBADF;
    *in = f->inodes[d->ino];
    return 0;
}

/* The lowest free descriptor slot, or -EMFILE. */
static int fd_alloc(struct io_fault *f)
{
    u32 i = 0;
    while (i < f->nfds && f->fds[i].used)
        i++;
    if (i == IOF_FDS_MAX)
        return -EMFILE;
    if (i == f->nfds) {
        f->fds = grow(f->fds, &f->fds_cap, f->nfds + 1, sizeof(*f->fds));
        f->fds[f->nfds++].used = false;
    }
    return (int)i;
}

/* ---- struct io operations --------------------------------------------------------------- */

static int iof_open(struct io *io, const char *path, int flags, int *fd_out)
{
    struct io_fault *f = iof_of(io);
    if (f->crashed)
        return -EIO;
    struct iof_dir *d;
    const char *name;
    int rc = path_split(f, path, &d, &name);
    if (rc != 0)
        return rc;
    const struct iof_ent *e = ents_find(&d->cur, name);
    if (e != NULL && e->ino == IOF_DIR)
        return -EISDIR;
    if (e != NULL && (flags & IO_CREATE) && (flags & IO_EXCL))
        return -EEXIST;
    if (e == NULL && !(flags & IO_CREATE))
        return -ENOENT;
    int slot = fd_alloc(f);
    if (slot < 0)
        return slot;
    u32 ino;
    if (e != NULL) {
        ino = e->ino;
    } else { /* only an open that creates changes the disk */
        if ((rc = mutation(f)) != 0)
            return rc;
        ino = inode_new(f);
        dir_do(d, IOF_DOP_CREATE, name, NULL, ino);
    }
    f->fds[slot] = (struct iof_fd){ .used = true, .writable = (flags & IO_WRITE) != 0, .ino = ino };
    *fd_out = slot + IOF_FD_BASE;
    return 0;
}

static int iof_close(struct io *io, int fd)
{
    struct io_fault *f = iof_of(io);
    if (f->crashed)
        return -EIO;
    struct iof_inode *in;
    int rc = fd_inode(f, fd, false, &in);
    if (rc != 0)
        return rc;
    f->fds[fd - IOF_FD_BASE].used = false;
    return 0;
}

static int iof_pread(struct io *io, int fd, void *buf, size_t len, u64 off, size_t *done)
{
    struct io_fault *f = iof_of(io);
    if (f->crashed)
        return -EIO;
    struct iof_inode *in;
    int rc = fd_inode(f, fd, false, &in);
    if (rc != 0)
        return rc;
    if (f->read_ppm != 0 && rng(f) % 1000000 < f->read_ppm) {
        f->read_errors++;
        return -EIO; /* a transient read error: the next read may succeed */
    }
    size_t n = 0;
    if (off < in->cur.len)
        n = in->cur.len - off < len ? (size_t)(in->cur.len - off) : len;
    if (n > 0)
        memcpy(buf, in->cur.p + off, n);
    *done = n;
    return 0;
}

/* Where a misdirected write lands: 1 to 8 pages off, forward or back, within the file; or
 * UINT64_MAX, nowhere (a lost write). */
static u64 misdirect(struct io_fault *f, const struct iof_inode *in, u64 off, size_t len)
{
    u64 shift = (1 + rng(f) % 8) * IO_FAULT_PAGE_BYTES;
    bool back = rng(f) & 1;
    if (back && off >= shift)
        return off - shift;
    if (!back && off + shift + len <= in->cur.len)
        return off + shift;
    return UINT64_MAX;
}

/* The short-write length: a strict non-empty prefix, or nothing for a one-byte write. */
static size_t short_len(struct io_fault *f, size_t len)
{
    if (len <= 1)
        return 0;
    return 1 + (size_t)(rng(f) % (len - 1));
}

static int iof_pwrite(struct io *io, int fd, const void *buf, size_t len, u64 off, size_t *done)
{
    struct io_fault *f = iof_of(io);
    if (f->crashed)
        return -EIO;
    struct iof_inode *in;
    int rc = fd_inode(f, fd, true, &in);
    if (rc != 0)
        return rc;
    if (off > IO_FAULT_FILE_MAX || len > IO_FAULT_FILE_MAX - off)
        return -EFBIG;
    if ((rc = mutation(f)) != 0)
        return rc;
    f->writes++;
    int err = 0, unused;
    bool fail = fault_take(f, IOF_FAIL_WRITE, f->writes, &err);
    bool shrt = fault_take(f, IOF_SHORT_WRITE, f->writes, &unused);
    if (fail)
        return err;
    size_t n = shrt ? short_len(f, len) : len;
    u64 at = off;
    if (n > 0 && f->misdirect_ppm != 0 && rng(f) % 1000000 < f->misdirect_ppm) {
        f->misdirected++;
        at = misdirect(f, in, off, n); /* reported as written where it was asked */
    }
    if (n > 0 && at != UINT64_MAX) {
        u8 *copy = xrealloc(NULL, n);
        memcpy(copy, buf, n);
        inode_do(in, (struct iof_op){ .kind = IOF_OP_WRITE, .off = at, .len = n, .data = copy });
    }
    *done = n;
    return 0;
}

/* datasync and fsync: this model has no separate metadata, so both sync everything. */
static int iof_sync(struct io *io, int fd)
{
    struct io_fault *f = iof_of(io);
    if (f->crashed)
        return -EIO;
    struct iof_inode *in;
    int rc = fd_inode(f, fd, false, &in);
    if (rc != 0)
        return rc;
    if ((rc = mutation(f)) != 0)
        return rc;
    f->syncs++;
    int err;
    if (fault_take(f, IOF_FAIL_SYNC, f->syncs, &err)) {
        /* Linux: the error is reported once and the dirty pages are dropped from writeback. */
        for (u32 i = 0; i < in->nops; i++)
            in->ops[i].forgotten = true;
        return err;
    }
    inode_sync(in);
    return 0;
}

/* truncate and allocate: a size change recorded as a pending operation. */
static int iof_resize(struct io *io, int fd, u64 len, enum iof_op_kind kind)
{
    struct io_fault *f = iof_of(io);
    if (f->crashed)
        return -EIO;
    struct iof_inode *in;
    int rc = fd_inode(f, fd, true, &in);
    if (rc != 0)
        return rc;
    if (kind == IOF_OP_ALLOCATE && len == 0)
        return -EINVAL; /* posix_fallocate rejects an empty range */
    if (len > IO_FAULT_FILE_MAX)
        return -EFBIG;
    if ((rc = mutation(f)) != 0)
        return rc;
    inode_do(in, (struct iof_op){ .kind = kind, .len = len });
    return 0;
}

static int iof_truncate(struct io *io, int fd, u64 len)
{
    return iof_resize(io, fd, len, IOF_OP_TRUNCATE);
}

static int iof_allocate(struct io *io, int fd, u64 len)
{
    return iof_resize(io, fd, len, IOF_OP_ALLOCATE);
}

static int iof_size(struct io *io, int fd, u64 *size_out)
{
    struct io_fault *f = iof_of(io);
    if (f->crashed)
        return -EIO;
    struct iof_inode *in;
    int rc = fd_inode(f, fd, false, &in);
    if (rc != 0)
        return rc;
    *size_out = in->cur.len;
    return 0;
}

static int iof_rename(struct io *io, const char *from, const char *to)
{
    struct io_fault *f = iof_of(io);
    if (f->crashed)
        return -EIO;
    struct iof_dir *fdir, *tdir;
    const char *fname, *tname;
    int rc = path_split(f, from, &fdir, &fname);
    if (rc == 0)
        rc = path_split(f, to, &tdir, &tname);
    if (rc != 0)
        return rc;
    const struct iof_ent *fe = ents_find(&fdir->cur, fname);
    const struct iof_ent *te = ents_find(&tdir->cur, tname);
    if (fe == NULL)
        return -ENOENT;
    if (fdir != tdir)
        return -EXDEV; /* one directory keeps the rename atomic in this model */
    if (fe->ino == IOF_DIR)
        return -ENOTSUP;
    if (te != NULL && te->ino == IOF_DIR)
        return -EISDIR;
    u32 ino = fe->ino;
    bool same = te != NULL && te->ino == ino;
    if ((rc = mutation(f)) != 0)
        return rc;
    if (!same) /* POSIX: renaming a file onto itself does nothing */
        dir_do(fdir, IOF_DOP_RENAME, fname, tname, ino);
    return 0;
}

static int iof_unlink(struct io *io, const char *path)
{
    struct io_fault *f = iof_of(io);
    if (f->crashed)
        return -EIO;
    struct iof_dir *d;
    const char *name;
    int rc = path_split(f, path, &d, &name);
    if (rc != 0)
        return rc;
    const struct iof_ent *e = ents_find(&d->cur, name);
    if (e == NULL)
        return -ENOENT;
    if (e->ino == IOF_DIR)
        return -EISDIR; /* no rmdir in this interface */
    u32 ino = e->ino;
    if ((rc = mutation(f)) != 0)
        return rc;
    dir_do(d, IOF_DOP_UNLINK, name, NULL, ino);
    return 0;
}

static int iof_mkdir(struct io *io, const char *path)
{
    struct io_fault *f = iof_of(io);
    if (f->crashed)
        return -EIO;
    struct iof_dir *parent;
    const char *name;
    int rc = path_split(f, path, &parent, &name);
    if (rc != 0)
        return rc;
    if (ents_find(&parent->cur, name) != NULL)
        return -EEXIST;
    if ((rc = mutation(f)) != 0)
        return rc;
    dir_new(f, path, strlen(path));
    dir_do(parent, IOF_DOP_CREATE, name, NULL, IOF_DIR);
    return 0;
}

static int iof_sync_dir(struct io *io, const char *dir)
{
    struct io_fault *f = iof_of(io);
    if (f->crashed)
        return -EIO;
    struct iof_dir *d = dir_find(f, dir, strlen(dir));
    if (d == NULL)
        return -ENOENT;
    int rc = mutation(f);
    if (rc != 0)
        return rc;
    dir_sync(d);
    return 0;
}

static int iof_list_dir(struct io *io, const char *dir, int (*each)(void *ctx, const char *name),
                        void *ctx)
{
    struct io_fault *f = iof_of(io);
    if (f->crashed)
        return -EIO;
    const struct iof_dir *d = dir_find(f, dir, strlen(dir));
    if (d == NULL)
        return -ENOENT;
    /* Iterate over a copy: the callback may create or unlink names in this directory. */
    struct iof_ents names = { 0 };
    ents_copy(&names, &d->cur);
    int rc = 0;
    for (u32 i = 0; i < names.n && rc == 0; i++)
        rc = each(ctx, names.v[i].name);
    ents_free(&names);
    return rc;
}

static const struct io_ops iof_ops = {
    .open = iof_open,
    .close = iof_close,
    .pread = iof_pread,
    .pwrite = iof_pwrite,
    .datasync = iof_sync,
    .fsync = iof_sync,
    .truncate = iof_truncate,
    .allocate = iof_allocate,
    .size = iof_size,
    .rename = iof_rename,
    .unlink = iof_unlink,
    .mkdir = iof_mkdir,
    .sync_dir = iof_sync_dir,
    .list_dir = iof_list_dir,
};

/* ---- lifecycle and fault plan ----------------------------------------------------------- */

struct io_fault *io_fault_create(u64 seed)
{
    struct io_fault *f = xrealloc(NULL, sizeof(*f));
    memset(f, 0, sizeof(*f));
    f->io.ops = &iof_ops;
    f->rng = seed;
    f->inodes = grow(NULL, &f->inodes_cap, 1, sizeof(*f->inodes));
    f->inodes[0] = NULL;
    f->ninodes = 1;
    dir_new(f, "", 0);
    return f;
}

void io_fault_destroy(struct io_fault *f)
{
    if (f == NULL)
        return;
    for (u32 i = 1; i < f->ninodes; i++)
        if (f->inodes[i] != NULL)
            inode_free(f->inodes[i]);
    for (u32 i = 0; i < f->ndirs; i++)
        dir_free(f->dirs[i]);
    free(f->inodes);
    free(f->dirs);
    free(f->fds);
    free(f);
}

struct io *io_fault_io(struct io_fault *f)
{
    return &f->io;
}

void io_fault_fail_write(struct io_fault *f, u64 nth, int neg_errno)
{
    ADB_ASSERT(nth >= 1);
    ADB_ASSERT(neg_errno < 0);
    fault_plan(f, IOF_FAIL_WRITE, f->writes + nth, neg_errno);
}

void io_fault_short_write(struct io_fault *f, u64 nth)
{
    ADB_ASSERT(nth >= 1);
    fault_plan(f, IOF_SHORT_WRITE, f->writes + nth, 0);
}

void io_fault_fail_sync(struct io_fault *f, u64 nth, int neg_errno)
{
    ADB_ASSERT(nth >= 1);
    ADB_ASSERT(neg_errno < 0);
    fault_plan(f, IOF_FAIL_SYNC, f->syncs + nth, neg_errno);
}

void io_fault_crash_after(struct io_fault *f, u64 mutations)
{
    f->crash_armed = true;
    f->crash_at = f->mutations + mutations;
}

u64 io_fault_mutations(const struct io_fault *f)
{
    return f->mutations;
}

bool io_fault_crashed(const struct io_fault *f)
{
    return f->crashed;
}

/* ---- power loss ------------------------------------------------------------------------- */

/* A seed-chosen cut: any number of whole operations, then any strict prefix of a write. */
static struct iof_cut cut_random(struct io_fault *f, const struct iof_inode *in)
{
    struct iof_cut c = { (u32)(rng(f) % ((u64)in->nops + 1)), 0 };
    if (c.whole < in->nops && in->ops[c.whole].kind == IOF_OP_WRITE)
        c.partial = rng(f) % in->ops[c.whole].len;
    return c;
}

/* Which pages of in survive IO_FAULT_TEAR_PAGES: a per-file probability, then a draw for each
 * page a pending write touched, in page order. Returns a malloc'd array indexed by page. */
static bool *pages_random(struct io_fault *f, const struct iof_inode *in)
{
    u64 pages = 0;
    for (u32 i = 0; i < in->nops; i++) {
        u64 end = in->ops[i].off + in->ops[i].len;
        if (in->ops[i].kind == IOF_OP_WRITE && (end + IO_FAULT_PAGE_BYTES - 1) / IO_FAULT_PAGE_BYTES > pages)
            pages = (end + IO_FAULT_PAGE_BYTES - 1) / IO_FAULT_PAGE_BYTES;
    }
    bool *keep = xrealloc(NULL, (size_t)pages * sizeof(*keep));
    memset(keep, 0, (size_t)pages * sizeof(*keep));
    for (u32 i = 0; i < in->nops; i++) {
        if (in->ops[i].kind != IOF_OP_WRITE)
            continue;
        for (u64 p = in->ops[i].off / IO_FAULT_PAGE_BYTES; p * IO_FAULT_PAGE_BYTES < in->ops[i].off + in->ops[i].len; p++)
            keep[p] = true; /* touched; decided below */
    }
    u64 sixteenths = rng(f) % 17;
    for (u64 p = 0; p < pages; p++)
        if (keep[p])
            keep[p] = rng(f) % 16 < sixteenths;
    return keep;
}

/* What survives of one inode; torn (non-zero) gets exactly keep_bytes of write data. */
static void loss_inode(struct io_fault *f, u32 ino, enum io_fault_loss mode, u32 torn,
                       u64 keep_bytes)
{
    struct iof_inode *in = f->inodes[ino];
    struct iof_buf survivor = { 0 };
    if (ino == torn)
        inode_replay(in, cut_at_byte(in, keep_bytes), &survivor);
    else if (mode == IO_FAULT_KEEP_ALL)
        buf_copy(&survivor, &in->cur); /* includes data a failed sync gave up on */
    else if (mode == IO_FAULT_TEAR)
        inode_replay(in, cut_random(f, in), &survivor);
    else if (mode == IO_FAULT_TEAR_PAGES) {
        bool *keep = pages_random(f, in);
        inode_replay_pages(in, keep, &survivor);
        free(keep);
    } else
        inode_replay(in, (struct iof_cut){ 0, 0 }, &survivor);
    inode_reset(in, &survivor);
}

static void loss_dir(struct io_fault *f, struct iof_dir *d, enum io_fault_loss mode)
{
    u32 k = 0;
    if (mode == IO_FAULT_KEEP_ALL)
        k = d->nops;
    else if (mode == IO_FAULT_TEAR || mode == IO_FAULT_TEAR_PAGES)
        k = (u32)(rng(f) % ((u64)d->nops + 1));
    dir_reset(d, k);
}

/* True if d's name survives (as a directory) in its parent. */
static bool dir_named(const struct io_fault *f, const struct iof_dir *d)
{
    const char *slash = strrchr(d->path, '/');
    const char *base = slash != NULL ? slash + 1 : d->path;
    const struct iof_dir *parent = dir_find(f, d->path, slash != NULL ? (size_t)(slash - d->path) : 0);
    if (parent == NULL)
        return false;
    const struct iof_ent *e = ents_find(&parent->cur, base);
    return e != NULL && e->ino == IOF_DIR;
}

/* A directory whose creation did not survive is gone with everything in it; repeat until
 * stable because losing a directory orphans its subdirectories. */
static void drop_orphan_dirs(struct io_fault *f)
{
    bool changed = true;
    while (changed) {
        changed = false;
        for (u32 i = 1; i < f->ndirs;) {
            if (dir_named(f, f->dirs[i])) {
                i++;
                continue;
            }
            dir_free(f->dirs[i]);
            f->dirs[i] = f->dirs[--f->ndirs];
            changed = true;
        }
    }
}

/* After reboot no fd is open, so an inode no surviving name refers to is gone for good. */
static void drop_unnamed_inodes(struct io_fault *f)
{
    bool *named = xrealloc(NULL, f->ninodes);
    memset(named, 0, f->ninodes);
    for (u32 i = 0; i < f->ndirs; i++)
        for (u32 j = 0; j < f->dirs[i]->cur.n; j++)
            named[f->dirs[i]->cur.v[j].ino] = true;
    for (u32 ino = 1; ino < f->ninodes; ino++) {
        if (f->inodes[ino] != NULL && !named[ino]) {
            inode_free(f->inodes[ino]);
            f->inodes[ino] = NULL;
        }
    }
    free(named);
}

/* What dies with the process: descriptors, the fault plan, the crash and the counters. */
static void process_reset(struct io_fault *f)
{
    f->nfds = 0;
    f->nfaults = 0;
    f->crash_armed = false;
    f->crashed = false;
    f->mutations = 0;
    f->writes = 0;
    f->syncs = 0;
}

/* Power loss then reboot; torn != 0 is the one file io_fault_power_loss_tear_file tears. */
static void loss(struct io_fault *f, enum io_fault_loss mode, u32 torn, u64 keep_bytes)
{
    for (u32 ino = 1; ino < f->ninodes; ino++)
        if (f->inodes[ino] != NULL)
            loss_inode(f, ino, mode, torn, keep_bytes);
    for (u32 i = 0; i < f->ndirs; i++)
        loss_dir(f, f->dirs[i], mode);
    drop_orphan_dirs(f);
    drop_unnamed_inodes(f);
    process_reset(f);
}

void io_fault_bad_disk(struct io_fault *f, u32 read_ppm, u32 misdirect_ppm)
{
    f->read_ppm = read_ppm;
    f->misdirect_ppm = misdirect_ppm;
}

void io_fault_bad_disk_counts(const struct io_fault *f, u64 *read_errors, u64 *misdirected)
{
    *read_errors = f->read_errors;
    *misdirected = f->misdirected;
}

void io_fault_power_loss(struct io_fault *f, enum io_fault_loss mode)
{
    ADB_ASSERT(mode == IO_FAULT_KEEP_SYNCED || mode == IO_FAULT_KEEP_ALL || mode == IO_FAULT_TEAR ||
               mode == IO_FAULT_TEAR_PAGES);
    loss(f, mode, 0, 0);
}

/* Inodes stay: an unlinked file whose unlink is not durable comes back at a power loss. */
void io_fault_process_restart(struct io_fault *f)
{
    process_reset(f);
}

void io_fault_power_loss_tear_file(struct io_fault *f, const char *path, u64 keep_bytes)
{
    u32 ino = 0;
    int rc = file_ino(f, path, &ino);
    ADB_ASSERT(rc == 0);
    ADB_ASSERT(keep_bytes <= inode_unsynced_bytes(f->inodes[ino]));
    loss(f, IO_FAULT_KEEP_SYNCED, ino, keep_bytes);
}

u64 io_fault_unsynced_bytes(const struct io_fault *f, const char *path)
{
    u32 ino;
    if (file_ino(f, path, &ino) != 0)
        return 0;
    return inode_unsynced_bytes(f->inodes[ino]);
}

/* ---- direct access ---------------------------------------------------------------------- */

bool io_fault_exists(const struct io_fault *f, const char *path)
{
    struct iof_dir *d;
    const char *name;
    return path_split(f, path, &d, &name) == 0 && ents_find(&d->cur, name) != NULL;
}

bool io_fault_contents(const struct io_fault *f, const char *path, const u8 **data, u64 *len)
{
    u32 ino;
    if (file_ino(f, path, &ino) != 0)
        return false;
    *data = f->inodes[ino]->cur.p;
    *len = f->inodes[ino]->cur.len;
    return true;
}

int io_fault_flip_bit(struct io_fault *f, const char *path, u64 byte_offset, unsigned bit)
{
    u32 ino;
    int rc = file_ino(f, path, &ino);
    if (rc != 0)
        return rc;
    struct iof_inode *in = f->inodes[ino];
    if (bit > 7 || byte_offset >= in->cur.len)
        return -EINVAL;
    in->cur.p[byte_offset] ^= (u8)(1u << bit);
    if (byte_offset < in->dur.len)
        in->dur.p[byte_offset] ^= (u8)(1u << bit);
    return 0;
}

/* Makes directory p[0, n) exist durably, parents first. */
static int dir_ensure(struct io_fault *f, const char *p, size_t n)
{
    if (dir_find(f, p, n) != NULL)
        return 0;
    size_t base = n; /* start of the last component */
    while (base > 0 && p[base - 1] != '/')
        base--;
    int rc = dir_ensure(f, p, base > 0 ? base - 1 : 0);
    if (rc != 0)
        return rc;
    struct iof_dir *parent = dir_find(f, p, base > 0 ? base - 1 : 0);
    char name[IOF_NAME_MAX + 1];
    if (n - base > IOF_NAME_MAX)
        return -ENAMETOOLONG;
    memcpy(name, p + base, n - base);
    name[n - base] = '\0';
    if (name[0] == '\0' || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return -EINVAL;
    if (ents_find(&parent->cur, name) != NULL)
        return -ENOTDIR; /* a directory of that name would have been found above */
    if (dir_busy(parent, name))
        return -EBUSY;
    dir_new(f, p, n);
    ents_set(&parent->cur, name, IOF_DIR);
    ents_set(&parent->dur, name, IOF_DIR);
    return 0;
}

int io_fault_put_file(struct io_fault *f, const char *path, const u8 *data, u64 len)
{
    if (len > IO_FAULT_FILE_MAX)
        return -EFBIG;
    const char *slash = strrchr(path, '/');
    int rc = dir_ensure(f, path, slash != NULL ? (size_t)(slash - path) : 0);
    struct iof_dir *d;
    const char *name;
    if (rc == 0)
        rc = path_split(f, path, &d, &name);
    if (rc != 0)
        return rc;
    const struct iof_ent *e = ents_find(&d->cur, name);
    if (e != NULL && e->ino == IOF_DIR)
        return -EISDIR;
    /* With no pending operation on the name, durable and current entries agree; keep it so. */
    if (dir_busy(d, name))
        return -EBUSY;
    u32 ino = inode_new(f);
    buf_write(&f->inodes[ino]->cur, 0, data, len);
    buf_copy(&f->inodes[ino]->dur, &f->inodes[ino]->cur);
    ents_set(&d->cur, name, ino);
    ents_set(&d->dur, name, ino);
    return 0;
}
