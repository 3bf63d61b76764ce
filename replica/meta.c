/*
 * replica/meta.c — durable replica metadata in LMDB (see meta.h, DESIGN.md §6).
 *
 * Layout: DATA_DIR/meta/ is an LMDB environment (data.mdb, lock.mdb; directory 0700, files
 * 0600) with one unnamed database holding one key per field of struct meta_record, named as
 * the field ("cluster_id", "view", ...). Values are little-endian and fixed width: u8 status,
 * u32 format_version, u128 cluster_id (low half first), u64 everything else. A key that is
 * missing, unknown or of the wrong size makes the record untrusted (-EUCLEAN).
 *
 * What must hold (the invariants of meta.h, in the order checked):
 *   every stored record   format_version == 1; replica_count >= 1; replica_id and voted_for
 *                         < replica_count; last_normal_view <= view; voted_view <= view;
 *                         snapshot_lsn <= commit_lsn; status is a known value.
 *   every write           identity (cluster_id, replica_id, replica_count) unchanged; view,
 *                         last_normal_view, voted_view, commit_lsn, snapshot_lsn never go
 *                         back; at most one vote per view (same voted_view => same voted_for);
 *                         a faulted record stays faulted (and casts no vote) unless the clear
 *                         is forced by an operator through meta_set_status.
 * The stored record is checked when opened and re-read inside every write transaction, so the
 * comparison is always against what is durable, never against a cached copy.
 *
 * NOTES
 *   Initialization: meta_format builds the environment in DATA_DIR/meta.tmp, commits the first
 *   record (synced), fsyncs the directory, renames it to DATA_DIR/meta (never over an existing
 *   one) and fsyncs DATA_DIR. A crash part way leaves no meta/ (the data dir still reads as
 *   unformatted) and a meta.tmp/ that the next format removes.
 *
 *   Durability: every write is one LMDB transaction with the default flags, so the commit
 *   fsyncs before it returns. If a commit fails (it may have been the fsync), the handle
 *   refuses all further work: after a failed sync the page cache is not trusted (LMDB marks
 *   its environment the same way); close and reopen.
 *
 *   Processes: an LMDB environment must not cross fork() (lmdb.h, caveats): its lock-file
 *   state and memory map belong to the process that opened it. Open in the worker that uses it,
 *   close before exiting; the handle records its opener's pid and every call asserts it. Read
 *   slots left by a crashed worker are cleared at open (mdb_reader_check). A handle is used by
 *   one thread; no transaction stays open between calls.
 *
 *   Errors: 0 or a negative errno, with a reason naming DATA_DIR/meta and the field in `why`.
 *   LMDB's own codes map to errno: corruption -> -EUCLEAN, map full -> -ENOSPC, others -EIO.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* renameat2 (RENAME_NOREPLACE); config.h may define it already */
#endif
#include "config.h"

#include "replica/meta.h"

#include "common/assert.h"
#include "common/le.h"
#include "common/why.h"

#include <lmdb.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define META_FORMAT_VERSION 3 /* 2: pins and the clock anchor; 3: state transfer; older are read */
#define META_MAP_BYTES ((size_t)1 << 20) /* a dozen small keys: LMDB's minimum would do */
#define META_PATH_MAX 4096
#define META_DIR "meta"
#define META_TMP_DIR "meta.tmp"

struct meta {
    MDB_env *env;
    bool read_only;
    bool failed; /* a commit failed: refuse everything (see NOTES) */
    pid_t pid;   /* of the opener: the env must not cross fork() */
    char path[META_PATH_MAX]; /* DATA_DIR/meta, for reasons */
};

const char *meta_status_name(enum meta_status s)
{
    switch (s) {
    case META_STATUS_NORMAL: return "normal";
    case META_STATUS_RECOVERING: return "recovering";
    case META_STATUS_FAULTED: return "faulted";
    }
    return "unknown";
}

/* ---- fields ----------------------------------------------------------------------------- */

struct field {
    const char *key;
    size_t offset; /* into struct meta_record */
    size_t size;   /* stored width = member width */
    u32 since;     /* the format version that added it: older records lack it (read as 0) */
};

#define FIELD(name) { #name, offsetof(struct meta_record, name), sizeof(((struct meta_record *)0)->name), 1 }
#define FIELD2(name) { #name, offsetof(struct meta_record, name), sizeof(((struct meta_record *)0)->name), 2 }
#define FIELD3(name) { #name, offsetof(struct meta_record, name), sizeof(((struct meta_record *)0)->name), 3 }
static const struct field fields[] = {
    FIELD(format_version), FIELD(cluster_id), FIELD(replica_id), FIELD(replica_count),
    FIELD(view),           FIELD(last_normal_view), FIELD(voted_view), FIELD(voted_for),
    FIELD(commit_lsn),     FIELD(snapshot_lsn), FIELD(status),
    FIELD2(pins.slot_duration_ms), FIELD2(pins.resource_capacity), FIELD2(pins.reservation_capacity),
    FIELD2(pins.operation_capacity), FIELD2(pins.expiration_capacity), FIELD2(pins.max_ttl_ms),
    FIELD2(pins.dedupe_window_ms), FIELD2(pins.history_window_ms), FIELD2(pins.wal_segment_bytes),
    FIELD2(clock.logical_ms), FIELD2(clock.wall_ms), FIELD2(clock.boot_ms), FIELD2(clock.boot_id),
    FIELD3(base.lsn), FIELD3(base.view), FIELD3(base.request_slot), FIELD3(base.crc), FIELD3(base.prev_crc),
    FIELD3(installing.lsn), FIELD3(installing.view), FIELD3(installing.request_slot), FIELD3(installing.crc),
    FIELD3(installing.prev_crc),
};
#undef FIELD
#undef FIELD2
#undef FIELD3

/* Fields a record of this format version holds. */
static size_t fields_in(u32 version)
{
    size_t n = 0;
    for (size_t i = 0; i < ADB_ARRAY_LEN(fields); i++)
        n += fields[i].since <= version;
    return n;
}
#define FIELD_BYTES_MAX 16

ADB_STATIC_ASSERT(sizeof(((struct meta_record *)0)->format_version) == 4, "format_version is a u32");
ADB_STATIC_ASSERT(sizeof(((struct meta_record *)0)->cluster_id) == 16, "cluster_id is a u128");
ADB_STATIC_ASSERT(sizeof(((struct meta_record *)0)->status) == 1, "status is a u8");

static void field_encode(const struct meta_record *r, const struct field *f, u8 *out)
{
    const char *p = (const char *)r + f->offset;
    switch (f->size) {
    case 1: out[0] = (u8)*p; return;
    case 4: { u32 v; memcpy(&v, p, 4); le_put_u32(out, v); return; }
    case 8: { u64 v; memcpy(&v, p, 8); le_put_u64(out, v); return; }
    case 16: { u128 v; memcpy(&v, p, 16); le_put_u128(out, v); return; }
    }
    ADB_ASSERT(!"unreachable: field width");
}

static void field_decode(struct meta_record *r, const struct field *f, const u8 *in)
{
    char *p = (char *)r + f->offset;
    switch (f->size) {
    case 1: *p = (char)in[0]; return;
    case 4: { u32 v = le_get_u32(in); memcpy(p, &v, 4); return; }
    case 8: { u64 v = le_get_u64(in); memcpy(p, &v, 8); return; }
    case 16: { u128 v = le_get_u128(in); memcpy(p, &v, 16); return; }
    }
    ADB_ASSERT(!"unreachable: field width");
}

static const struct field *field_find(const void *key, size_t len)
{
    for (size_t i = 0; i < ADB_ARRAY_LEN(fields); i++)
        if (strlen(fields[i].key) == len && memcmp(fields[i].key, key, len) == 0)
            return &fields[i];
    return NULL;
}

/* ---- invariants ------------------------------------------------------------------------- */

/* The invariants of one record on its own. False with the reason (field first). */
static bool record_check(const struct meta_record *r, char *why, size_t why_len)
{
    if (r->format_version < 1 || r->format_version > META_FORMAT_VERSION) {
        why_set(why, why_len, "format_version: %" PRIu32 " (this build reads 1 to %d)", r->format_version,
                META_FORMAT_VERSION);
        return false;
    }
    if (r->replica_count < 1) {
        why_set(why, why_len, "replica_count: 0");
        return false;
    }
    if (r->replica_id >= r->replica_count) {
        why_set(why, why_len, "replica_id: %" PRIu64 " is not below replica_count %" PRIu64, r->replica_id,
                r->replica_count);
        return false;
    }
    if (r->voted_for >= r->replica_count) {
        why_set(why, why_len, "voted_for: %" PRIu64 " is not below replica_count %" PRIu64, r->voted_for,
                r->replica_count);
        return false;
    }
    if (r->last_normal_view > r->view) {
        why_set(why, why_len, "last_normal_view: %" PRIu64 " is above view %" PRIu64, r->last_normal_view, r->view);
        return false;
    }
    if (r->voted_view > r->view) {
        why_set(why, why_len, "voted_view: %" PRIu64 " is above view %" PRIu64, r->voted_view, r->view);
        return false;
    }
    if (r->snapshot_lsn > r->commit_lsn) {
        why_set(why, why_len, "snapshot_lsn: %" PRIu64 " is above commit_lsn %" PRIu64
                " (only committed entries are snapshotted)", r->snapshot_lsn, r->commit_lsn);
        return false;
    }
    if (r->base.lsn > r->commit_lsn) {
        why_set(why, why_len, "base.lsn: %" PRIu64 " is above commit_lsn %" PRIu64
                " (an image holds only committed entries)", r->base.lsn, r->commit_lsn);
        return false;
    }
    if (r->installing.lsn != 0 && r->installing.lsn <= r->base.lsn) {
        why_set(why, why_len, "installing.lsn: %" PRIu64 " is not above base.lsn %" PRIu64, r->installing.lsn,
                r->base.lsn);
        return false;
    }
    if (r->status > META_STATUS_FAULTED) {
        why_set(why, why_len, "status: %u is not a status", (unsigned)r->status);
        return false;
    }
    static const struct meta_pins none;
    if (!meta_pins_set(&r->pins) && memcmp(&r->pins, &none, sizeof(none)) != 0) {
        why_set(why, why_len, "pins.slot_duration_ms: 0 while other settings are pinned");
        return false;
    }
    return true;
}

/* Checks that `next` may replace the durable record `cur`. force: an operator clears faulted. */
static bool transition_check(const struct meta_record *cur, const struct meta_record *next, bool force,
                             char *why, size_t why_len)
{
    if (!record_check(next, why, why_len))
        return false;
    if (next->cluster_id != cur->cluster_id) {
        why_set(why, why_len, "cluster_id: never changes after format");
        return false;
    }
    if (next->replica_id != cur->replica_id) {
        why_set(why, why_len, "replica_id: never changes after format (%" PRIu64 " -> %" PRIu64 ")",
                cur->replica_id, next->replica_id);
        return false;
    }
    if (next->replica_count != cur->replica_count) {
        why_set(why, why_len, "replica_count: never changes after format (%" PRIu64 " -> %" PRIu64 ")",
                cur->replica_count, next->replica_count);
        return false;
    }
    if (next->format_version < cur->format_version) {
        why_set(why, why_len, "format_version: only grows (%" PRIu32 " -> %" PRIu32 ")", cur->format_version,
                next->format_version);
        return false;
    }
    if (meta_pins_set(&cur->pins) && memcmp(&next->pins, &cur->pins, sizeof(cur->pins)) != 0) {
        why_set(why, why_len, "pins: the pinned settings never change after format");
        return false;
    }
    static const struct {
        const char *name;
        size_t offset;
    } grow[] = {
        { "view", offsetof(struct meta_record, view) },
        { "last_normal_view", offsetof(struct meta_record, last_normal_view) },
        { "voted_view", offsetof(struct meta_record, voted_view) },
        { "commit_lsn", offsetof(struct meta_record, commit_lsn) },
        { "snapshot_lsn", offsetof(struct meta_record, snapshot_lsn) },
        { "clock.logical_ms", offsetof(struct meta_record, clock.logical_ms) },
        { "base.lsn", offsetof(struct meta_record, base.lsn) },
    };
    for (size_t i = 0; i < ADB_ARRAY_LEN(grow); i++) {
        u64 a, b;
        memcpy(&a, (const char *)cur + grow[i].offset, sizeof(a));
        memcpy(&b, (const char *)next + grow[i].offset, sizeof(b));
        if (b < a) {
            why_set(why, why_len, "%s: only grows (%" PRIu64 " -> %" PRIu64 ")", grow[i].name, a, b);
            return false;
        }
    }
    /* The durable vote is what makes a view change safe: one vote per view, never changed. */
    if (next->voted_view == cur->voted_view && next->voted_for != cur->voted_for) {
        why_set(why, why_len, "voted_for: already voted for %" PRIu64 " in view %" PRIu64 ", not %" PRIu64,
                cur->voted_for, cur->voted_view, next->voted_for);
        return false;
    }
    if (cur->status == META_STATUS_FAULTED) {
        if (next->status != META_STATUS_FAULTED && !force) {
            why_set(why, why_len, "status: faulted is cleared only by an operator (meta_set_status with force)");
            return false;
        }
        if (next->status == META_STATUS_FAULTED &&
            (next->voted_view != cur->voted_view || next->voted_for != cur->voted_for)) {
            why_set(why, why_len, "voted_view: a faulted replica does not vote");
            return false;
        }
    }
    return true;
}

/* ---- LMDB plumbing ---------------------------------------------------------------------- */

static int errno_of(int mdb_rc)
{
    if (mdb_rc > 0)
        return -mdb_rc; /* LMDB passes system errors through */
    switch (mdb_rc) {
    case MDB_NOTFOUND: return -ENOENT;
    case MDB_MAP_FULL: return -ENOSPC;
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID:
    case MDB_VERSION_MISMATCH: return -EUCLEAN;
    default: return -EIO;
    }
}

static int lmdb_fail(const char *path, const char *step, int mdb_rc, char *why, size_t why_len)
{
    why_set(why, why_len, "%s: %s: %s", path, step, mdb_strerror(mdb_rc));
    return errno_of(mdb_rc);
}

static int env_open(const char *path, bool read_only, MDB_env **out, char *why, size_t why_len)
{
    MDB_env *env;
    int rc = mdb_env_create(&env);
    if (rc != 0)
        return lmdb_fail(path, "mdb_env_create", rc, why, why_len);
    rc = mdb_env_set_mapsize(env, META_MAP_BYTES);
    if (rc == 0)
        rc = mdb_env_open(env, path, read_only ? MDB_RDONLY : 0, 0600);
    if (rc != 0) {
        mdb_env_close(env);
        return lmdb_fail(path, "cannot open LMDB environment", rc, why, why_len);
    }
    *out = env;
    return 0;
}

/* Reads every field in txn. -EUCLEAN if one is missing, of the wrong size or unknown. */
static int record_read(MDB_txn *txn, const char *path, struct meta_record *out, char *why, size_t why_len)
{
    MDB_dbi dbi;
    int rc = mdb_dbi_open(txn, NULL, 0, &dbi);
    if (rc != 0)
        return lmdb_fail(path, "mdb_dbi_open", rc, why, why_len);
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < ADB_ARRAY_LEN(fields); i++) {
        const struct field *f = &fields[i];
        MDB_val k = { .mv_size = strlen(f->key), .mv_data = (void *)f->key }, v;
        rc = mdb_get(txn, dbi, &k, &v);
        /* format_version is the first field: a field newer than the record is absent (0). */
        if (rc == MDB_NOTFOUND && i > 0 && f->since > out->format_version)
            continue;
        if (rc == MDB_NOTFOUND) {
            why_set(why, why_len, "%s: %s: missing", path, f->key);
            return -EUCLEAN;
        }
        if (rc != 0)
            return lmdb_fail(path, f->key, rc, why, why_len);
        if (v.mv_size != f->size) {
            why_set(why, why_len, "%s: %s: stored value is %zu bytes, expected %zu", path, f->key, v.mv_size,
                    f->size);
            return -EUCLEAN;
        }
        field_decode(out, f, v.mv_data);
    }
    /* Anything else in the database was not written by this format version. */
    MDB_stat st;
    rc = mdb_stat(txn, dbi, &st);
    if (rc != 0)
        return lmdb_fail(path, "mdb_stat", rc, why, why_len);
    size_t expected = fields_in(out->format_version);
    if (st.ms_entries != expected) {
        MDB_cursor *cur;
        rc = mdb_cursor_open(txn, dbi, &cur);
        if (rc != 0)
            return lmdb_fail(path, "mdb_cursor_open", rc, why, why_len);
        MDB_val k, v;
        size_t seen = 0;
        for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && seen <= st.ms_entries;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT), seen++) {
            if (field_find(k.mv_data, k.mv_size) == NULL) {
                why_set(why, why_len, "%s: unknown key '%.*s'", path, (int)(k.mv_size > 64 ? 64 : k.mv_size),
                        (const char *)k.mv_data);
                mdb_cursor_close(cur);
                return -EUCLEAN;
            }
        }
        mdb_cursor_close(cur);
        why_set(why, why_len, "%s: %zu entries, expected %zu", path, st.ms_entries, expected);
        return -EUCLEAN;
    }
    char reason[256];
    if (!record_check(out, reason, sizeof(reason))) {
        why_set(why, why_len, "%s: %s", path, reason);
        return -EUCLEAN;
    }
    return 0;
}

/* Puts the fields of `next` that differ from `cur` (all of them if cur is NULL). */
static int record_put(MDB_txn *txn, const char *path, const struct meta_record *cur,
                      const struct meta_record *next, u32 *changed, char *why, size_t why_len)
{
    MDB_dbi dbi;
    int rc = mdb_dbi_open(txn, NULL, 0, &dbi);
    if (rc != 0)
        return lmdb_fail(path, "mdb_dbi_open", rc, why, why_len);
    *changed = 0;
    if (cur != NULL && cur->format_version != next->format_version)
        cur = NULL; /* an upgrade writes every field, the new ones included */
    for (size_t i = 0; i < ADB_ARRAY_LEN(fields); i++) {
        const struct field *f = &fields[i];
        if (f->since > next->format_version)
            continue;
        u8 a[FIELD_BYTES_MAX], b[FIELD_BYTES_MAX];
        field_encode(next, f, b);
        if (cur != NULL) {
            field_encode(cur, f, a);
            if (memcmp(a, b, f->size) == 0)
                continue;
        }
        MDB_val k = { .mv_size = strlen(f->key), .mv_data = (void *)f->key };
        MDB_val v = { .mv_size = f->size, .mv_data = b };
        rc = mdb_put(txn, dbi, &k, &v, 0);
        if (rc != 0)
            return lmdb_fail(path, f->key, rc, why, why_len);
        (*changed)++;
    }
    return 0;
}

static bool path_join(char *out, size_t cap, const char *dir, const char *name)
{
    int n = snprintf(out, cap, "%s/%s", dir, name);
    return n > 0 && (size_t)n < cap;
}

static int sync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    return rc;
}

/* Removes what a crashed format left in meta.tmp/ (only LMDB's two files; anything else stays
 * and makes the rmdir fail, for an operator to look at). */
static int remove_tmp(const char *tmp, char *why, size_t why_len)
{
    static const char *const files[] = { "data.mdb", "lock.mdb" };
    char p[META_PATH_MAX];
    for (size_t i = 0; i < ADB_ARRAY_LEN(files); i++) {
        if (!path_join(p, sizeof(p), tmp, files[i]))
            return -ENAMETOOLONG;
        if (unlink(p) != 0 && errno != ENOENT) {
            int rc = -errno;
            why_set(why, why_len, "%s: cannot remove: %s", p, strerror(-rc));
            return rc;
        }
    }
    if (rmdir(tmp) != 0 && errno != ENOENT) {
        int rc = -errno;
        why_set(why, why_len, "%s: cannot remove an interrupted format: %s", tmp, strerror(-rc));
        return rc;
    }
    return 0;
}

/* rename that never replaces an existing target (plain rename would replace an empty dir). */
static int rename_noreplace(const char *from, const char *to)
{
    if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS)
        return -errno;
    /* A file system without RENAME_NOREPLACE: check, then rename. */
    struct stat st;
    if (lstat(to, &st) == 0)
        return -EEXIST;
    return rename(from, to) == 0 ? 0 : -errno;
}

/* ---- public ----------------------------------------------------------------------------- */

bool meta_exists(const char *data_dir)
{
    char path[META_PATH_MAX];
    struct stat st;
    return path_join(path, sizeof(path), data_dir, META_DIR) && stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int meta_format(const char *data_dir, u128 cluster_id, u64 replica_id, u64 replica_count,
                enum meta_status status, const struct meta_pins *pins, char *why, size_t why_len)
{
    char path[META_PATH_MAX], tmp[META_PATH_MAX];
    if (!path_join(path, sizeof(path), data_dir, META_DIR) || !path_join(tmp, sizeof(tmp), data_dir, META_TMP_DIR)) {
        why_set(why, why_len, "%s: path too long", data_dir);
        return -ENAMETOOLONG;
    }
    if (replica_count < 1 || replica_id >= replica_count) {
        why_set(why, why_len, "%s: replica_id %" PRIu64 " is not below replica_count %" PRIu64, path, replica_id,
                replica_count);
        return -EINVAL;
    }
    struct stat st;
    if (stat(data_dir, &st) != 0) {
        int rc = -errno;
        why_set(why, why_len, "%s: %s", data_dir, strerror(-rc));
        return rc;
    }
    if (!S_ISDIR(st.st_mode)) {
        why_set(why, why_len, "%s: not a directory", data_dir);
        return -ENOTDIR;
    }
    if (lstat(path, &st) == 0) {
        why_set(why, why_len, "%s: already exists: the data dir is formatted", path);
        return -EEXIST;
    }
    if (errno != ENOENT) {
        int rc = -errno;
        why_set(why, why_len, "%s: %s", path, strerror(-rc));
        return rc;
    }
    int rc = remove_tmp(tmp, why, why_len);
    if (rc != 0)
        return rc;
    if (mkdir(tmp, 0700) != 0) {
        rc = -errno;
        why_set(why, why_len, "%s: cannot create: %s", tmp, strerror(-rc));
        return rc;
    }

    const struct meta_record rec = {
        .format_version = META_FORMAT_VERSION,
        .cluster_id = cluster_id,
        .replica_id = replica_id,
        .replica_count = replica_count,
        .status = (u8)status,
        .pins = pins != NULL ? *pins : (struct meta_pins){ 0 },
    };
    if (!record_check(&rec, why, why_len))
        return -EINVAL;
    MDB_env *env;
    rc = env_open(tmp, false, &env, why, why_len);
    if (rc == 0) {
        MDB_txn *txn;
        u32 changed;
        int mrc = mdb_txn_begin(env, NULL, 0, &txn);
        if (mrc != 0) {
            rc = lmdb_fail(tmp, "mdb_txn_begin", mrc, why, why_len);
        } else if ((rc = record_put(txn, tmp, NULL, &rec, &changed, why, why_len)) != 0) {
            mdb_txn_abort(txn);
        } else if ((mrc = mdb_txn_commit(txn)) != 0) {
            rc = lmdb_fail(tmp, "commit", mrc, why, why_len);
        }
        mdb_env_close(env);
    }
    if (rc == 0 && (rc = sync_dir(tmp)) != 0)
        why_set(why, why_len, "%s: fsync directory: %s", tmp, strerror(-rc));
    if (rc == 0 && (rc = rename_noreplace(tmp, path)) != 0)
        why_set(why, why_len, "%s: %s: %s", path, rc == -EEXIST ? "appeared while formatting" : "rename",
                strerror(-rc));
    if (rc != 0) {
        char ignored[8];
        remove_tmp(tmp, ignored, sizeof(ignored)); /* best effort: the next format retries it */
        return rc;
    }
    rc = sync_dir(data_dir);
    if (rc != 0) {
        /* meta/ is complete and in place, but its name may not be durable yet. */
        why_set(why, why_len, "%s: fsync directory: %s", data_dir, strerror(-rc));
        return rc;
    }
    return 0;
}

int meta_open(const char *data_dir, bool read_only, struct meta **out, char *why, size_t why_len)
{
    *out = NULL;
    struct meta *m = calloc(1, sizeof(*m));
    if (m == NULL) {
        why_set(why, why_len, "%s: out of memory", data_dir);
        return -ENOMEM;
    }
    if (!path_join(m->path, sizeof(m->path), data_dir, META_DIR)) {
        why_set(why, why_len, "%s: path too long", data_dir);
        free(m);
        return -ENAMETOOLONG;
    }
    /* Checked before LMDB, which would create an environment where there was none. */
    struct stat st;
    int rc = stat(m->path, &st) != 0 ? -errno : !S_ISDIR(st.st_mode) ? -ENOTDIR : 0;
    if (rc != 0) {
        if (rc == -ENOENT)
            why_set(why, why_len, "%s: missing: the data dir is not formatted (allocdbd format)", m->path);
        else
            why_set(why, why_len, "%s: %s", m->path, strerror(-rc));
        free(m);
        return rc;
    }
    /* A meta/ without its data file is damage (LMDB would quietly create an empty one). */
    char data_file[META_PATH_MAX];
    if (!path_join(data_file, sizeof(data_file), m->path, "data.mdb") || stat(data_file, &st) != 0) {
        why_set(why, why_len, "%s: data.mdb is missing", m->path);
        free(m);
        return -EUCLEAN;
    }
    m->read_only = read_only;
    m->pid = getpid();
    rc = env_open(m->path, read_only, &m->env, why, why_len);
    if (rc != 0) {
        free(m);
        return rc;
    }
    int dead;
    mdb_reader_check(m->env, &dead); /* best effort: read slots of crashed workers */
    struct meta_record rec;
    rc = meta_read(m, &rec, why, why_len);
    if (rc != 0) {
        meta_close(m);
        return rc;
    }
    *out = m;
    return 0;
}

void meta_close(struct meta *m)
{
    if (m == NULL)
        return;
    ADB_ASSERT(m->pid == getpid());
    mdb_env_close(m->env);
    free(m);
}

int meta_read(struct meta *m, struct meta_record *out, char *why, size_t why_len)
{
    ADB_ASSERT(m != NULL && out != NULL);
    ADB_ASSERT(m->pid == getpid());
    if (m->failed) {
        why_set(why, why_len, "%s: an earlier write failed; reopen", m->path);
        return -EIO;
    }
    MDB_txn *txn;
    int mrc = mdb_txn_begin(m->env, NULL, MDB_RDONLY, &txn);
    if (mrc != 0)
        return lmdb_fail(m->path, "mdb_txn_begin", mrc, why, why_len);
    int rc = record_read(txn, m->path, out, why, why_len);
    mdb_txn_abort(txn);
    return rc;
}

/* Part of a record to replace: size bytes at offset. */
struct patch {
    size_t offset;
    const void *value;
    size_t size;
};

/*
 * The one write path: in one transaction, read the durable record, build the next one (`rec`,
 * or the durable one with the patches applied), check the transition, put the fields that
 * changed and commit (synced). A patched format-1 record is upgraded to the current format.
 */
static int write_record(struct meta *m, const struct meta_record *rec, const struct patch *patches, size_t n,
                        bool (*fixup)(struct meta_record *next, char *why, size_t why_len), bool force,
                        char *why, size_t why_len)
{
    ADB_ASSERT(m != NULL);
    ADB_ASSERT((rec != NULL) != (n != 0 || fixup != NULL));
    for (size_t i = 0; i < n; i++)
        ADB_ASSERT(patches[i].offset + patches[i].size <= sizeof(struct meta_record));
    ADB_ASSERT(m->pid == getpid());
    if (m->read_only) {
        why_set(why, why_len, "%s: opened read-only", m->path);
        return -EROFS;
    }
    if (m->failed) {
        why_set(why, why_len, "%s: an earlier write failed; reopen", m->path);
        return -EIO;
    }
    MDB_txn *txn;
    int mrc = mdb_txn_begin(m->env, NULL, 0, &txn);
    if (mrc != 0)
        return lmdb_fail(m->path, "mdb_txn_begin", mrc, why, why_len);
    struct meta_record cur, next;
    int rc = record_read(txn, m->path, &cur, why, why_len);
    if (rc != 0) {
        mdb_txn_abort(txn);
        return rc;
    }
    if (rec != NULL) {
        next = *rec;
    } else {
        next = cur;
        next.format_version = META_FORMAT_VERSION;
        for (size_t i = 0; i < n; i++)
            memcpy((char *)&next + patches[i].offset, patches[i].value, patches[i].size);
    }
    char reason[256];
    if ((fixup != NULL && !fixup(&next, reason, sizeof(reason))) || /* from the durable record */
        !transition_check(&cur, &next, force, reason, sizeof(reason))) {
        why_set(why, why_len, "%s: %s", m->path, reason);
        mdb_txn_abort(txn);
        return -EINVAL;
    }
    u32 changed;
    rc = record_put(txn, m->path, &cur, &next, &changed, why, why_len);
    if (rc != 0 || changed == 0) {
        mdb_txn_abort(txn);
        return rc;
    }
    mrc = mdb_txn_commit(txn);
    if (mrc != 0) {
        m->failed = true;
        return lmdb_fail(m->path, "commit", mrc, why, why_len);
    }
    return 0;
}

#define PATCH(member, ptr) { offsetof(struct meta_record, member), (ptr), sizeof(((struct meta_record *)0)->member) }

int meta_write(struct meta *m, const struct meta_record *rec, char *why, size_t why_len)
{
    ADB_ASSERT(rec != NULL);
    return write_record(m, rec, NULL, 0, NULL, false, why, why_len);
}

int meta_advance_commit(struct meta *m, u64 commit_lsn, char *why, size_t why_len)
{
    const struct patch p[] = { PATCH(commit_lsn, &commit_lsn) };
    return write_record(m, NULL, p, ADB_ARRAY_LEN(p), NULL, false, why, why_len);
}

int meta_advance(struct meta *m, u64 commit_lsn, const struct meta_clock *clock, char *why, size_t why_len)
{
    const struct patch p[] = { PATCH(commit_lsn, &commit_lsn), PATCH(clock, clock) };
    return write_record(m, NULL, p, ADB_ARRAY_LEN(p), NULL, false, why, why_len);
}

int meta_set_snapshot(struct meta *m, u64 snapshot_lsn, char *why, size_t why_len)
{
    const struct patch p[] = { PATCH(snapshot_lsn, &snapshot_lsn) };
    return write_record(m, NULL, p, ADB_ARRAY_LEN(p), NULL, false, why, why_len);
}

int meta_set_status(struct meta *m, enum meta_status s, bool force, char *why, size_t why_len)
{
    ADB_ASSERT((unsigned)s <= META_STATUS_FAULTED);
    u8 status = (u8)s;
    const struct patch p[] = { PATCH(status, &status) };
    return write_record(m, NULL, p, ADB_ARRAY_LEN(p), NULL, force, why, why_len);
}

static bool views_recovered(struct meta_record *next, char *why, size_t why_len)
{
    (void)why, (void)why_len;
    if (next->status == META_STATUS_RECOVERING)
        next->status = META_STATUS_NORMAL;
    return true;
}

int meta_set_views(struct meta *m, u64 view, u64 log_view, bool recovering, char *why, size_t why_len)
{
    const struct patch p[] = { PATCH(view, &view), PATCH(last_normal_view, &log_view) };
    return write_record(m, NULL, p, ADB_ARRAY_LEN(p), recovering ? NULL : views_recovered, false, why, why_len);
}

int meta_install_begin(struct meta *m, const struct meta_entry *at, char *why, size_t why_len)
{
    ADB_ASSERT(at->lsn != 0);
    const struct patch p[] = { PATCH(installing, at) };
    return write_record(m, NULL, p, ADB_ARRAY_LEN(p), NULL, false, why, why_len);
}

/* The install under way becomes the base; the commit point is at least its entry. */
static bool install_finish(struct meta_record *next, char *why, size_t why_len)
{
    if (next->installing.lsn == 0) {
        why_set(why, why_len, "no install under way");
        return false;
    }
    next->base = next->installing;
    next->installing = (struct meta_entry){ 0 };
    if (next->commit_lsn < next->base.lsn)
        next->commit_lsn = next->base.lsn;
    return true;
}

int meta_install_done(struct meta *m, char *why, size_t why_len)
{
    return write_record(m, NULL, NULL, 0, install_finish, false, why, why_len);
}

int meta_install_forget(struct meta *m, char *why, size_t why_len)
{
    static const struct meta_entry none;
    const struct patch p[] = { PATCH(installing, &none) };
    return write_record(m, NULL, p, ADB_ARRAY_LEN(p), NULL, false, why, why_len);
}

int meta_set_pins(struct meta *m, const struct meta_pins *pins, char *why, size_t why_len)
{
    ADB_ASSERT(meta_pins_set(pins));
    const struct patch p[] = { PATCH(pins, pins) };
    return write_record(m, NULL, p, ADB_ARRAY_LEN(p), NULL, false, why, why_len);
}
#undef PATCH
