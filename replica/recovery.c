/*
 * replica/recovery.c — newest valid snapshot + WAL replay; checkpoints (see recovery.h).
 */
#include "config.h"

#include "replica/recovery.h"

#include "common/assert.h"
#include "common/why.h"
#include "replica/image.h"
#include "replica/oplog.h"
#include "replica/snapshot.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SNAPSHOTS_MAX 256 /* a checkpoint keeps two; more means an operator copied files in */

const char *recovery_kind_name(enum recovery_kind k)
{
    switch (k) {
    case RECOVERY_FRESH: return "fresh";
    case RECOVERY_WAL_ONLY: return "wal_only";
    case RECOVERY_SNAPSHOT_ONLY: return "snapshot_only";
    case RECOVERY_SNAPSHOT_AND_WAL: return "snapshot_and_wal";
    }
    return "unknown";
}

/* ---- the directory's snapshots ------------------------------------------------------------ */

struct snap_list {
    u64 lsn[SNAPSHOTS_MAX]; /* sorted newest first after list_snapshots */
    u32 count;
    bool overflow;
    char temps[8][64];      /* interrupted writes found (up to 8 per pass) */
    u32 temp_count;
};

static int list_one(void *ctx, const char *name)
{
    struct snap_list *l = ctx;
    u64 lsn;
    if (snapshot_parse_name(name, &lsn)) {
        if (l->count == SNAPSHOTS_MAX) {
            l->overflow = true;
            return 1;
        }
        l->lsn[l->count++] = lsn;
    } else if (snapshot_parse_temp_name(name, &lsn) && l->temp_count < ADB_ARRAY_LEN(l->temps)) {
        snprintf(l->temps[l->temp_count++], sizeof(l->temps[0]), "%s", name);
    }
    return 0;
}

static int cmp_desc(const void *a, const void *b)
{
    u64 x = *(const u64 *)a, y = *(const u64 *)b;
    return (x < y) - (x > y);
}

static int list_snapshots(struct io *io, const char *dir, struct snap_list *l, char *why, size_t why_len)
{
    memset(l, 0, sizeof(*l));
    int rc = io->ops->list_dir(io, dir, list_one, l);
    if (l->overflow) {
        why_set(why, why_len, "%s: more than %d snapshots", dir, SNAPSHOTS_MAX);
        return -EMFILE;
    }
    if (rc != 0) {
        why_set(why, why_len, "%s: cannot list directory: %s", dir, strerror(-rc));
        return rc;
    }
    qsort(l->lsn, l->count, sizeof(l->lsn[0]), cmp_desc);
    return 0;
}

static bool snap_path(const char *dir, u64 lsn, char *out, size_t cap)
{
    char name[64];
    return snapshot_file_name(name, sizeof(name), lsn) && io_path(out, cap, dir, name);
}

/* The operation log as a snapshot's source of operation records (ctx: the reader). */
static int log_next(void *ctx, struct sm_operation *out, char *why, size_t why_len)
{
    return oplog_reader_next(ctx, out, why, why_len);
}

static const char *log_damage(void *ctx)
{
    return ((const struct oplog_reader *)ctx)->damage;
}

enum snapshot_status recovery_decode_snapshot(struct io *io, const char *dir, const u8 *buf, u64 len,
                                              const struct sm_config *cfg, sm_t *sm, char *why, size_t why_len)
{
    struct snapshot_info info;
    enum snapshot_status st = snapshot_decode_info(buf, len, &info, why, why_len);
    if (st != SNAPSHOT_OK)
        return st;
    struct oplog_reader *r = malloc(sizeof(*r)); /* a 4 KiB path in it: not on the stack */
    if (r == NULL) {
        why_set(why, why_len, "out of memory");
        return SNAPSHOT_OPERATIONS_MISSING;
    }
    if (oplog_reader_open(r, io, dir, info.last_applied_lsn, why, why_len) != 0) {
        free(r);
        return SNAPSHOT_OPERATIONS_MISSING;
    }
    struct snapshot_ops ops = { log_next, log_damage, r };
    st = snapshot_decode(buf, len, cfg, &ops, sm, why, why_len);
    oplog_reader_close(r);
    free(r);
    return st;
}

/* Loads one state file — a snapshot (its operation records from the log) or an image file (a
 * state transfer installed it, or one built to serve; replica/image.h) — into a freshly
 * initialised sm. */
static int load_state(struct io *io, const char *dir, u64 lsn, bool image, const struct sm_config *cfg, sm_t *sm,
                      char *why, size_t why_len)
{
    char name[64], path[WAL_PATH_MAX];
    if (!(image ? image_file_name(name, sizeof(name), lsn) : snapshot_file_name(name, sizeof(name), lsn)) ||
        !io_path(path, sizeof(path), dir, name)) {
        why_set(why, why_len, "%s: path too long", dir);
        return -ENAMETOOLONG;
    }
    struct io_view v;
    int rc = io_view_file(io, path, &v);
    if (rc != 0) {
        why_set(why, why_len, "%s: cannot read: %s", path, strerror(-rc));
        return rc;
    }
    sm_reset(sm, cfg);
    char reason[512];
    struct vsr_entry_header at;
    enum snapshot_status st = image ? image_decode(v.buf, v.len, cfg, sm, &at, reason, sizeof(reason))
                                    : recovery_decode_snapshot(io, dir, v.buf, v.len, cfg, sm, reason, sizeof(reason));
    io_view_release(io, &v);
    if (st != SNAPSHOT_OK) {
        why_set(why, why_len, "%s: %s: %s", path, snapshot_status_name(st), reason);
        /* A different config is the operator's choice, not damage: never fall back over it. */
        return st == SNAPSHOT_CONFIG_MISMATCH ? -EINVAL : -EUCLEAN;
    }
    if (sm->last_applied_lsn != lsn) {
        why_set(why, why_len, "%s: holds LSN %" PRIu64 ", not the LSN of its name", path, sm->last_applied_lsn);
        return -EUCLEAN;
    }
    return 0;
}

/* ---- replay ----------------------------------------------------------------------------- */

struct replay {
    sm_t *sm;
    u64 frames;
    u64 last_lsn;
    char reason[200];
};

static int replay_frame(void *ctx, const struct wal_frame *f, const struct sm_command *cmd)
{
    struct replay *r = ctx;
    /* What sm_apply asserts must be a checked condition here: the bytes come from disk. */
    if (f->lsn != r->sm->last_applied_lsn + 1) {
        snprintf(r->reason, sizeof(r->reason), "LSN %" PRIu64 " does not follow the state's LSN %" PRIu64,
                 f->lsn, r->sm->last_applied_lsn);
        return 1;
    }
    if (f->request_slot < r->sm->last_request_slot) {
        snprintf(r->reason, sizeof(r->reason), "LSN %" PRIu64 " slot %" PRIu64 " is below the state's slot %" PRIu64,
                 f->lsn, f->request_slot, r->sm->last_request_slot);
        return 1;
    }
    sm_apply(r->sm, f->lsn, f->request_slot, cmd);
    r->frames++;
    r->last_lsn = f->lsn;
    return 0;
}

static void remove_temps(struct io *io, const char *dir, const struct snap_list *l, struct recovery_report *rep)
{
    for (u32 i = 0; i < l->temp_count; i++) {
        char path[WAL_PATH_MAX];
        if (io_path(path, sizeof(path), dir, l->temps[i]) && io->ops->unlink(io, path) == 0)
            rep->temp_files_removed++;
    }
    if (rep->temp_files_removed > 0)
        io->ops->sync_dir(io, dir); /* best effort: a leftover temp file is harmless */
}

int recovery_run(struct io *io, const char *dir, const struct sm_config *cfg,
                 const struct recovery_options *opt, sm_t *sm, struct wal_log *wal,
                 struct recovery_report *rep, char *why, size_t why_len)
{
    memset(rep, 0, sizeof(*rep));
    const struct sm_config cfg_copy = *cfg; /* cfg may point into sm, which is re-initialised */
    cfg = &cfg_copy;
    struct recovery_options o = opt != NULL ? *opt : (struct recovery_options){ 0 };
    o.wal.read_only = o.read_only;

    struct snap_list *l = malloc(sizeof(*l));
    if (l == NULL)
        return -ENOMEM;
    int rc = list_snapshots(io, dir, l, why, why_len);
    if (rc != 0) {
        free(l);
        return rc;
    }
    if (!o.read_only)
        remove_temps(io, dir, l, rep);
    rep->snapshots_found = l->count;
    /* Image files (replica/image.h) are states too, ascending here; at an LSN both hold, the
     * snapshot is tried first. */
    u64 images[SNAPSHOTS_MAX];
    u32 image_count = 0;
    rc = io_list_numbered(io, dir, "image-", ".img", "images", images, SNAPSHOTS_MAX, &image_count, why, why_len);
    if (rc != 0) {
        free(l);
        return rc;
    }
    rep->snapshots_found += image_count;

    /* Newest first; fall back only as recovery.h describes. */
    u64 base = 0;
    bool loaded = false;
    u32 si = 0, ii = image_count;
    while (!loaded && (si < l->count || ii > 0)) {
        bool image = ii > 0 && (si == l->count || images[ii - 1] > l->lsn[si]);
        u64 lsn = image ? images[--ii] : l->lsn[si++];
        char reason[sizeof(rep->rejected_reason)];
        rc = load_state(io, dir, lsn, image, cfg, sm, reason, sizeof(reason));
        if (rc == 0) {
            loaded = true;
            base = lsn;
            rep->from_image = image;
        } else if (rc == -EUCLEAN || rc == -ENODATA) {
            if (rep->snapshots_rejected++ == 0) {
                rep->rejected_lsn = lsn;
                snprintf(rep->rejected_reason, sizeof(rep->rejected_reason), "%s", reason);
            }
        } else {
            why_set(why, why_len, "%s", reason);
            free(l);
            return rc;
        }
    }
    free(l);
    if (!loaded)
        sm_reset(sm, cfg);
    rep->snapshot_lsn = base;

    /* Every frame up to the newest snapshot's LSN, even a rejected one's, was durable before it
     * was taken (snapshots are of applied state, applied only once synced): damage there is never
     * a torn tail, so a fallback that meets it fails closed instead of cutting synced frames. */
    u64 known = rep->snapshots_rejected > 0 && rep->rejected_lsn > base ? rep->rejected_lsn : base;
    if (known > o.wal.synced_lsn)
        o.wal.synced_lsn = known;
    /* Frames up to base are the snapshot's: damage in them is passed over and reported in
     * rep->wal (wal/scan.h, note (**)); damage after base fails closed. */
    struct replay r = { .sm = sm };
    rc = wal_log_open(wal, io, dir, &o.wal, base + 1, replay_frame, &r, &rep->wal, why, why_len);
    if (rc == -ECANCELED)
        why_append(why, why_len, ": %s", r.reason);
    if (rc != 0) {
        wal_log_close(wal);
        if (rep->snapshots_rejected > 0) {
            /* The fallback would replay across damage (or a gap): refuse it, saying which. */
            char inner[1024];
            snprintf(inner, sizeof(inner), "%s", why);
            char to[64];
            if (loaded)
                snprintf(to, sizeof(to), "the older snapshot %" PRIu64, base);
            else
                snprintf(to, sizeof(to), "the start of the WAL");
            /* The damage first: the rejected snapshot's reason may be long. */
            why_set(why, why_len,
                "snapshot %" PRIu64 " is invalid and falling back to %s is refused: replaying the WAL from LSN %" PRIu64
                " fails: %s (snapshot %" PRIu64 ": %s)",
                rep->rejected_lsn, to, base + 1, inner, rep->rejected_lsn, rep->rejected_reason);
        }
        return rc;
    }
    rep->frames_replayed = r.frames;
    rep->last_replayed_lsn = r.last_lsn;

    /* A rejected snapshot held entries up to its LSN; the fallback must have replayed them. */
    if (rep->snapshots_rejected > 0 && sm->last_applied_lsn < rep->rejected_lsn) {
        why_set(why, why_len,
            "snapshot %" PRIu64 " is invalid (%s) and the WAL ends at LSN %" PRIu64 ": state up to LSN %" PRIu64
            " cannot be recovered",
            rep->rejected_lsn, rep->rejected_reason, sm->last_applied_lsn, rep->rejected_lsn);
        wal_log_close(wal);
        return -EUCLEAN;
    }
    if (loaded)
        rep->kind = r.frames > 0 ? RECOVERY_SNAPSHOT_AND_WAL : RECOVERY_SNAPSHOT_ONLY;
    else
        rep->kind = r.frames > 0 ? RECOVERY_WAL_ONLY : RECOVERY_FRESH;
    if (o.read_only)
        wal_log_close(wal);
    return 0;
}

/* ---- checkpoint ------------------------------------------------------------------------- */

/* Records a snapshot needs start here: its oldest live operation record (or past its LSN). */
static u64 operations_from(u64 lsn, u64 oldest)
{
    return oldest != 0 ? oldest : lsn + 1;
}

/* The same for a snapshot on disk, from its header; 0 (keep everything) if it cannot be read. */
static u64 operations_from_file(struct io *io, const char *dir, u64 lsn)
{
    char path[WAL_PATH_MAX];
    struct io_view v;
    if (!snap_path(dir, lsn, path, sizeof(path)) || io_view_file(io, path, &v) != 0)
        return 0;
    struct snapshot_info info;
    u64 from = 0;
    if (snapshot_decode_info(v.buf, v.len, &info, NULL, 0) == SNAPSHOT_OK)
        from = info.version == 1 ? 0 : operations_from(info.last_applied_lsn, info.oldest_operation_lsn);
    io_view_release(io, &v);
    return from;
}

int checkpoint_run(struct io *io, const char *dir, const sm_t *sm, struct wal_log *wal,
                   const struct checkpoint_options *opt, struct checkpoint_report *rep, char *why, size_t why_len)
{
    struct oplog *ops = opt != NULL ? opt->ops : NULL;
    memset(rep, 0, sizeof(*rep));
    ADB_ASSERT(wal == NULL || sm->last_applied_lsn <= wal->durable_lsn);
    rep->snapshot_lsn = sm->last_applied_lsn;

    struct snap_list *l = malloc(sizeof(*l));
    if (l == NULL)
        return -ENOMEM;
    int rc = list_snapshots(io, dir, l, why, why_len);
    if (rc == 0 && (l->count == 0 || l->lsn[0] != sm->last_applied_lsn)) {
        /* Step 1: the new snapshot, durable (temp file, fsync, rename, directory fsync). The state
         * is never behind a snapshot on disk: recovery replays at least to every snapshot's LSN. */
        ADB_ASSERT(l->count == 0 || l->lsn[0] < sm->last_applied_lsn);
        /* The operation records the snapshot leaves out must be durable first. */
        rc = ops != NULL ? oplog_sync(ops, why, why_len) : oplog_write_all(io, dir, sm, why, why_len);
        if (rc == 0)
            rc = snapshot_write_then(io, dir, sm, opt != NULL ? opt->encoded : NULL, opt != NULL ? opt->ctx : NULL,
                                     why, why_len);
        rep->written = rc == 0;
        if (rc == 0 && l->count < SNAPSHOTS_MAX) { /* the new one is the newest: put it first */
            memmove(l->lsn + 1, l->lsn, l->count * sizeof(l->lsn[0]));
            l->lsn[0] = sm->last_applied_lsn;
            l->count++;
        }
    }
    if (rc != 0) {
        free(l);
        return rc;
    }
    /* Step 2: keep the newest two snapshots. */
    for (u32 i = 2; i < l->count; i++) {
        char path[WAL_PATH_MAX];
        if (!snap_path(dir, l->lsn[i], path, sizeof(path)))
            continue;
        rc = io->ops->unlink(io, path);
        if (rc != 0) {
            why_set(why, why_len, "%s: cannot remove old snapshot: %s", path, strerror(-rc));
            break;
        }
        rep->snapshots_removed++;
    }
    if (rc == 0 && rep->snapshots_removed > 0) {
        rc = io->ops->sync_dir(io, dir);
        if (rc != 0)
            why_set(why, why_len, "%s: fsync directory: %s", dir, strerror(-rc));
    }
    /* Step 3: operation log segments neither kept snapshot needs. */
    if (rc == 0 && l->count >= 1) {
        u64 keep = l->count >= 2 ? operations_from_file(io, dir, l->lsn[1])
                                 : operations_from(sm->last_applied_lsn, sm->operation_oldest_lsn);
        if (keep > 0)
            rc = oplog_prune(io, dir, keep, &rep->oplog_segments_removed, why, why_len);
    }
    /* Step 4: the WAL from the older kept snapshot on (one checkpoint of overlap). */
    if (rc == 0 && l->count >= 2) {
        rep->keep_from_lsn = l->lsn[1] + 1;
        if (wal != NULL) /* else the WAL's owner prunes up to keep_from_lsn itself */
            rc = wal_log_prune(wal, rep->keep_from_lsn, &rep->segments_removed);
        if (rc != 0)
            why_set(why, why_len, "%s: pruning the WAL: %s", dir, strerror(-rc));
    }
    free(l);
    return rc;
}
