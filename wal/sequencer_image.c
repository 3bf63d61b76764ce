/*
 * wal/sequencer_image.c — the sequencer's state transfer (replica/vsr.h): the images this replica
 * serves to peers behind its pruned WAL, and the one it receives and installs when it is behind
 * theirs. Files are replica/image.h's.
 *
 * Serving: the core asks for chunks of this replica's newest image. The image of the newest
 * snapshot is built when a peer first asks for it (the snapshot leaves the operation records
 * out, so a checkpoint never pays for an image nobody needs), on a thread: a large one takes
 * seconds, and the sequencer's loop (the WAL, the core's timers) must not wait. Until it is
 * built the image before it is served, or none. The entry header it starts with is read from
 * the WAL before a checkpoint can prune that entry. An image found at start (built or
 * installed before) is checked on the thread and served.
 *
 * Receiving: chunks go to image-<lsn>.recv. Installing, once the file is synced and checked
 * (size, CRC, replica/image.h's image_check), in an order a crash anywhere recovers from
 * (seq_image_open finishes or forgets it; the install_crash fault hook dies after step N):
 *   1. the metadata records the install (meta_install_begin: the image's entry);
 *   2. the file is renamed image-<lsn>.img and the directory synced: the state is durable;
 *   3. the WAL restarts empty after the entry (wal_log_restart);
 *   4. the metadata makes the entry the base (meta_install_done, the commit point at least it).
 * Then the shared log goes on after the entry and the applier, behind it, reloads its state
 * from the image (seg_sequencer.base_lsn; replica/applier.c).
 */
#include "config.h"

#include "wal/sequencer_shell.h"

#include "common/crc32c.h"
#include "common/why.h"
#include "net/proto.h"
#include "replica/image.h"
#include "supervisor/log.h"
#include "wal/frame.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#define BUILD_RETRY_NS ((u64)2000000000)  /* after a failed build */
#define WANTED_NS ((u64)30000000000)      /* a peer asked within this: keep the newest built */

static const char *dir_of(const struct seq *q)
{
    return q->w->cfg->data_dir;
}

static void entry_of(const struct meta_entry *m, struct vsr_entry_header *h)
{
    *h = (struct vsr_entry_header){ .lsn = m->lsn, .view = m->view, .request_slot = m->request_slot,
                                    .crc = m->crc, .prev_crc = m->prev_crc };
}

static void meta_of(const struct vsr_entry_header *h, struct meta_entry *m)
{
    *m = (struct meta_entry){ .lsn = h->lsn, .view = h->view, .request_slot = h->request_slot, .crc = h->crc,
                              .prev_crc = h->prev_crc };
}

/* ---- the thread ------------------------------------------------------------------------- */

/* An image file already there: checked like a received one, and its size, CRC and entry header
 * (which the main thread compares with the WAL's or the metadata's: nothing else covers it). */
static int adopt(const char *dir, const struct sm_config *smc, u64 lsn, struct image_id *out,
                 struct vsr_entry_header *file_at, char *why, size_t why_len)
{
    char path[4096];
    if (!image_path(dir, lsn, IMAGE_IMG, path, sizeof(path)))
        return -ENAMETOOLONG;
    struct io_view v;
    int rc = io_view_file(&io_posix, path, &v);
    if (rc != 0) {
        why_set(why, why_len, "%s: cannot read: %s", path, strerror(-rc));
        return rc;
    }
    char reason[256];
    enum snapshot_status st = image_check(v.buf, v.len, smc, file_at, reason, sizeof(reason));
    if (st == SNAPSHOT_OK && file_at->lsn == lsn)
        *out = (struct image_id){ .lsn = lsn, .size = v.len, .crc = crc32c(0, v.buf, (size_t)v.len) };
    else
        why_set(why, why_len, "%s: %s: %s", path, snapshot_status_name(st), reason);
    io_view_release(&io_posix, &v);
    return st == SNAPSHOT_OK && file_at->lsn == lsn ? 0 : -EUCLEAN;
}

static void *job_main(void *arg)
{
    struct seq_images *m = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL); /* the worker's signals are the main thread's */
    struct image_job *j = &m->job;
    if (j->adopt)
        j->rc = adopt(m->dir, &m->smc, j->at.lsn, &j->out, &j->at, j->why, sizeof(j->why));
    else
        j->rc = image_build(&io_posix, m->dir, &j->at, &j->out, j->why, sizeof(j->why));
    atomic_store_explicit(&j->done, true, memory_order_release);
    return NULL;
}

static void job_start(struct seq *q, const struct vsr_entry_header *at, bool adopting)
{
    struct seq_images *m = &q->cl->img;
    m->job = (struct image_job){ .at = *at, .adopt = adopting };
    atomic_store(&m->job.done, false);
    int rc = pthread_create(&m->job.thread, NULL, job_main, m);
    if (rc != 0) {
        log_warn("image_build_failed", "lsn=%" PRIu64 " errno=%d reason=\"cannot start a thread\"", at->lsn, rc);
        m->failed_lsn = at->lsn;
        m->retry_ns = mono_ns() + BUILD_RETRY_NS;
        return;
    }
    m->running = true;
    log_info(adopting ? "image_check_started" : "image_build_started", "lsn=%" PRIu64, at->lsn);
}

/* The image to serve is now `id` (its file complete and durable). */
static void serve(struct seq *q, const struct image_id *id)
{
    struct seq_images *m = &q->cl->img;
    char path[4096];
    int fd = -1;
    if (!image_path(dir_of(q), id->lsn, IMAGE_IMG, path, sizeof(path)) ||
        io_posix.ops->open(&io_posix, path, IO_READ, &fd) != 0) {
        log_warn("image_unreadable", "lsn=%" PRIu64, id->lsn);
        return;
    }
    if (m->served_fd >= 0)
        io_posix.ops->close(&io_posix, m->served_fd);
    m->served_fd = fd;
    m->served = *id;
    int removed = image_remove_others(&io_posix, dir_of(q), id->lsn, m->recv_fd >= 0 ? m->recv.lsn : 0);
    struct seg_sequencer *c = q->seg->seq;
    atomic_store_explicit(&c->image_lsn, id->lsn, memory_order_relaxed);
    atomic_store_explicit(&c->image_bytes, id->size, memory_order_relaxed);
    log_always_info("image_ready", "lsn=%" PRIu64 " bytes=%" PRIu64 " crc=%08x older_removed=%d", id->lsn, id->size,
                    id->crc, removed);
}

static void job_finish(struct seq *q)
{
    struct seq_images *m = &q->cl->img;
    if (!m->running || !atomic_load_explicit(&m->job.done, memory_order_acquire))
        return;
    pthread_join(m->job.thread, NULL);
    m->running = false;
    struct image_job *j = &m->job;
    struct vsr_entry_header known;
    if (j->rc == 0 && j->adopt) {
        bool have = seq_header_at(q, j->at.lsn, &known) || (m->base.lsn == j->at.lsn && (known = m->base, true));
        if (!have || memcmp(&known, &j->at, sizeof(known)) != 0) {
            j->rc = -EUCLEAN;
            snprintf(j->why, sizeof(j->why), "its entry header %s", have ? "differs from this replica's" : "cannot be checked");
        }
    }
    if (j->rc != 0) {
        atomic_fetch_add_explicit(&q->seg->seq->image_build_failures, 1, memory_order_relaxed);
        log_warn(j->adopt ? "image_rejected" : "image_build_failed", "lsn=%" PRIu64 " errno=%d reason=\"%s\"",
                 j->at.lsn, -j->rc, j->why);
        m->failed_lsn = j->at.lsn;
        m->retry_ns = mono_ns() + BUILD_RETRY_NS;
        return;
    }
    if (!j->adopt)
        atomic_fetch_add_explicit(&q->seg->seq->images_built, 1, memory_order_relaxed);
    if (j->out.lsn > m->served.lsn)
        serve(q, &j->out);
}

void seq_image_step(struct seq *q)
{
    struct seq_images *m = &q->cl->img;
    job_finish(q);
    if (m->running)
        return;
    u64 now = mono_ns();
    if (m->found_lsn > m->served.lsn && (m->failed_lsn != m->found_lsn || now >= m->retry_ns)) {
        struct vsr_entry_header at = { .lsn = m->found_lsn };
        m->found_lsn = 0; /* checked once */
        job_start(q, &at, true);
        return;
    }
    /* Build the newest snapshot's image once a peer wants one. */
    bool wanted = m->wanted_ns != 0 && now - m->wanted_ns < WANTED_NS;
    if (wanted && m->snap_at.lsn > m->served.lsn && (m->failed_lsn != m->snap_at.lsn || now >= m->retry_ns))
        job_start(q, &m->snap_at, false);
}

/* ---- serving ---------------------------------------------------------------------------- */

void seq_image_snapshot(struct seq *q, u64 snapshot_lsn)
{
    struct seq_images *m = &q->cl->img;
    if (snapshot_lsn <= m->snap_at.lsn)
        return;
    struct vsr_entry_header h;
    if (seq_header_at(q, snapshot_lsn, &h))
        m->snap_at = h;
    else if (m->base.lsn == snapshot_lsn)
        m->snap_at = m->base; /* the WAL restarted after it: the metadata holds its header */
}

int seq_image_read(struct seq *q, u64 offset, u8 *buf, u32 cap, u32 *len, struct vsr_image *img)
{
    struct seq_images *m = &q->cl->img;
    m->wanted_ns = mono_ns();
    if (m->served.lsn == 0 || m->served_fd < 0)
        return -ENOENT; /* being built, or nothing to build from yet */
    *img = (struct vsr_image){ .lsn = m->served.lsn, .size = m->served.size, .crc = m->served.crc };
    *len = 0;
    if (offset >= m->served.size)
        return 0;
    u64 n = m->served.size - offset < cap ? m->served.size - offset : cap;
    int rc = io_read_all(&io_posix, m->served_fd, buf, (size_t)n, offset);
    if (rc != 0)
        return rc;
    *len = (u32)n;
    return 0;
}

/* ---- receiving and installing --------------------------------------------------------------- */

static void recv_close(struct seq *q, bool remove)
{
    struct seq_images *m = &q->cl->img;
    if (m->recv_fd >= 0)
        io_posix.ops->close(&io_posix, m->recv_fd);
    m->recv_fd = -1;
    char path[4096];
    if (remove && m->recv.lsn != 0 && image_path(dir_of(q), m->recv.lsn, IMAGE_RECV, path, sizeof(path)))
        (void)io_posix.ops->unlink(&io_posix, path);
    m->recv = (struct image_id){ 0 };
}

int seq_image_write(struct seq *q, const struct vsr_image *img, u64 offset, const u8 *bytes, u32 len)
{
    struct seq_images *m = &q->cl->img;
    if (offset == 0) {
        recv_close(q, true);
        char path[4096];
        if (!image_path(dir_of(q), img->lsn, IMAGE_RECV, path, sizeof(path)))
            return -ENAMETOOLONG;
        (void)io_posix.ops->unlink(&io_posix, path);
        int rc = io_posix.ops->open(&io_posix, path, IO_WRITE | IO_CREATE | IO_EXCL, &m->recv_fd);
        if (rc != 0) {
            m->recv_fd = -1;
            log_warn("image_receive_failed", "lsn=%" PRIu64 " errno=%d step=create", img->lsn, -rc);
            return rc;
        }
        m->recv = (struct image_id){ .lsn = img->lsn, .size = img->size, .crc = img->crc };
        m->recv_crc = 0;
        m->recv_started_ns = mono_ns();
        log_always_info("image_receive_started", "lsn=%" PRIu64 " bytes=%" PRIu64, img->lsn, img->size);
    }
    if (m->recv_fd < 0 || m->recv.lsn != img->lsn || m->recv.size != img->size || m->recv.crc != img->crc)
        return -EINVAL; /* the core restarts a changed image at offset 0 */
    int rc = io_write_all(&io_posix, m->recv_fd, bytes, len, offset);
    if (rc != 0) {
        log_warn("image_receive_failed", "lsn=%" PRIu64 " offset=%" PRIu64 " errno=%d step=write", img->lsn, offset, -rc);
        recv_close(q, true);
        return rc;
    }
    m->recv_crc = crc32c(m->recv_crc, bytes, len); /* chunks come in order */
    return 0;
}

/* The install_crash fault hook (tests): dies here as a SIGKILL would, once. */
static void crash_point(struct seq *q, u32 step)
{
    u32 want = step;
    if (atomic_compare_exchange_strong(&q->seg->hdr->install_crash, &want, 0)) {
        log_always_warn("fault_install_crash_now", "step=%u", step);
        raise(SIGKILL);
    }
}

/* Steps 1 and 2: the received file checked, recorded and made the durable state. 0, or an errno
 * with nothing changed but the metadata's `installing` (forgotten again). */
static int install_file(struct seq *q, const struct vsr_image *img, struct vsr_entry_header *at)
{
    struct seq_images *m = &q->cl->img;
    char recv[4096], final[4096], why[512] = "";
    if (!image_path(dir_of(q), img->lsn, IMAGE_RECV, recv, sizeof(recv)) ||
        !image_path(dir_of(q), img->lsn, IMAGE_IMG, final, sizeof(final)))
        return -ENAMETOOLONG;
    int rc = m->recv_crc == img->crc ? io_posix.ops->fsync(&io_posix, m->recv_fd) : -EBADMSG;
    if (rc != 0) {
        log_warn("image_refused", "lsn=%" PRIu64 " errno=%d reason=\"%s\"", img->lsn, -rc,
                 rc == -EBADMSG ? "CRC32C of the chunks does not match the image's" : "fsync");
        return rc;
    }
    struct io_view v;
    if ((rc = io_view_file(&io_posix, recv, &v)) != 0)
        return rc;
    enum snapshot_status st = v.len == img->size ? image_check(v.buf, v.len, &m->smc, at, why, sizeof(why))
                                                 : SNAPSHOT_SHORT;
    io_view_release(&io_posix, &v);
    if (st != SNAPSHOT_OK || at->lsn != img->lsn) {
        log_warn("image_refused", "lsn=%" PRIu64 " status=%s reason=\"%s\"", img->lsn, snapshot_status_name(st), why);
        return -EINVAL;
    }
    struct meta_entry e;
    meta_of(at, &e);
    if (q->meta == NULL && meta_open(dir_of(q), false, &q->meta, why, sizeof(why)) != 0) {
        q->meta = NULL;
        return -EIO;
    }
    if ((rc = meta_install_begin(q->meta, &e, why, sizeof(why))) != 0) {
        log_warn("image_install_failed", "lsn=%" PRIu64 " step=meta errno=%d reason=\"%s\"", img->lsn, -rc, why);
        return rc;
    }
    crash_point(q, 1);
    rc = io_posix.ops->rename(&io_posix, recv, final);
    if (rc == 0)
        rc = io_posix.ops->sync_dir(&io_posix, dir_of(q));
    if (rc == 0)
        crash_point(q, 2);
    if (rc != 0) {
        log_warn("image_install_failed", "lsn=%" PRIu64 " step=rename errno=%d", img->lsn, -rc);
        (void)io_posix.ops->unlink(&io_posix, final);
        (void)meta_install_forget(q->meta, why, sizeof(why));
        return rc;
    }
    return 0;
}

int seq_image_install(struct seq *q, const struct vsr_image *img, struct vsr_entry_header *at)
{
    struct seq_cluster *cl = q->cl;
    struct seq_images *m = &cl->img;
    u64 t0 = mono_ns();
    if (m->recv_fd < 0 || m->recv.lsn != img->lsn)
        return -EINVAL;
    int rc = install_file(q, img, at);
    recv_close(q, rc != 0);
    if (rc != 0)
        return rc;
    /* 3: the WAL. Frames still in the batch are below the image (the core asks for one only
     * above its log) and obsolete like the rest: their requests, a backup's, have no client. */
    for (u32 i = 0; i < q->core.batch_count; i++)
        if (q->tags[i].flags & MSG_TAG_VALID)
            seq_reply(q, &q->tags[i], PROTO_INDEFINITE, PROTO_INDEFINITE_VIEW_CHANGE);
    rc = sequencing_restart_log(&q->core, at->lsn, at->request_slot, at->crc);
    if (rc == 0)
        crash_point(q, 3);
    char why[512] = "";
    if (rc == 0 && (rc = meta_install_done(q->meta, why, sizeof(why))) != 0)
        log_error("image_install_failed", "lsn=%" PRIu64 " step=meta_done errno=%d reason=\"%s\"", at->lsn, -rc, why);
    if (rc != 0) {
        /* Half installed: a restart finishes it (the image is durable and recorded). */
        seq_storage_dead(q, rc);
        return rc;
    }
    m->base = *at;
    sequencing_committed(&q->core, at->lsn);
    /* What waited for a commit point is below the image: answered (indefinite) and gone. */
    for (u32 i = 0; i < SEQ_PENDING; i++) {
        seq_pending_abandon(q, &cl->pending[i]);
        cl->pending[i].lsn = 0;
    }
    struct seg_sequencer *c = q->seg->seq;
    atomic_store_explicit(&c->durable_lsn, at->lsn, memory_order_relaxed);
    atomic_store_explicit(&c->sequenced_lsn, at->lsn, memory_order_relaxed);
    atomic_store_explicit(&c->last_slot, at->request_slot, memory_order_relaxed);
    /* The applier reloads before it takes an entry after the base (both stores before any). */
    crash_point(q, 4);
    atomic_store_explicit(&c->base_lsn, at->lsn, memory_order_release);
    atomic_store_explicit(&c->published_lsn, at->lsn, memory_order_release);
    doorbell_ring(q->seg->bell_applier);
    if (cl->commit < at->lsn)
        cl->commit = at->lsn;
    struct image_id id = { .lsn = img->lsn, .size = img->size, .crc = img->crc };
    serve(q, &id); /* it serves what it installed */
    m->snap_at = *at;
    atomic_fetch_add_explicit(&c->images_installed, 1, memory_order_relaxed);
    log_always_info("image_installed", "lsn=%" PRIu64 " view=%" PRIu64 " bytes=%" PRIu64 " receive_ms=%" PRIu64
                    " install_ms=%" PRIu64, at->lsn, at->view, img->size, (t0 - m->recv_started_ns) / 1000000u,
                    (mono_ns() - t0) / 1000000u);
    return 0;
}

/* ---- start and stop ------------------------------------------------------------------------ */

int seq_image_open(struct seq *q, struct meta_record *rec, u64 *wal_head, u64 *last_slot)
{
    const char *dir = dir_of(q);
    char why[512] = "";
    if (rec->installing.lsn != 0) {
        /* An install a crash cut: finished if its image is durable, else forgotten. */
        struct meta_entry e = rec->installing;
        char path[4096];
        int fd;
        bool durable = image_path(dir, e.lsn, IMAGE_IMG, path, sizeof(path)) &&
                       io_posix.ops->open(&io_posix, path, IO_READ, &fd) == 0;
        if (durable) /* (its contents are checked before it is served, and decoded by the applier) */
            io_posix.ops->close(&io_posix, fd);
        const struct wal_log *wal = &q->core.wal;
        bool restarted = *wal_head == e.lsn && wal->segment_count > 0 && wal->segments[0].first_lsn == e.lsn + 1;
        int rc = 0;
        if (durable && !restarted && e.lsn >= *wal_head) /* (at the head: a copy it could not check) */
            rc = sequencing_restart_log(&q->core, e.lsn, e.request_slot, e.crc);
        else if (durable && !restarted)
            rc = -EUCLEAN; /* the WAL went on past the image: never before install_done */
        if (rc == 0)
            rc = durable ? meta_install_done(q->meta, why, sizeof(why)) : meta_install_forget(q->meta, why, sizeof(why));
        if (rc != 0) {
            log_error("image_install_unfinished", "lsn=%" PRIu64 " errno=%d reason=\"%s\"", e.lsn, -rc, why);
            return WORKER_EXIT_FATAL;
        }
        log_always_info(durable ? "image_install_finished" : "image_install_forgotten", "lsn=%" PRIu64, e.lsn);
        if (durable) {
            rec->base = e;
            if (rec->commit_lsn < e.lsn)
                rec->commit_lsn = e.lsn;
            *wal_head = e.lsn;
            *last_slot = e.request_slot;
        }
        rec->installing = (struct meta_entry){ 0 };
    }
    /* The applier reloads if it is behind the base; the shared log goes on after it (a restart
     * of this worker alone after an install: what was published before is below it). */
    struct seg_sequencer *c = q->seg->seq;
    atomic_store(&c->base_lsn, rec->base.lsn);
    if (atomic_load(&c->published_lsn) < rec->base.lsn)
        atomic_store(&c->published_lsn, rec->base.lsn);
    return 0;
}

void seq_image_init(struct seq *q, const struct meta_record *rec)
{
    struct seq_images *m = &q->cl->img;
    m->dir = dir_of(q);
    config_sm(q->w->cfg, &m->smc);
    m->served_fd = m->recv_fd = -1;
    entry_of(&rec->base, &m->base);
    /* Leftovers of a build or a receive that were cut; the newest complete image is checked
     * and served. */
    m->found_lsn = image_newest(&io_posix, m->dir);
    int removed = image_remove_others(&io_posix, m->dir, m->found_lsn, 0);
    if (removed > 0)
        log_info("image_files_removed", "count=%d kept_lsn=%" PRIu64, removed, m->found_lsn);
}

void seq_image_stop(struct seq *q)
{
    struct seq_images *m = &q->cl->img;
    if (m->running) /* a build is a file of its own: a later start removes what it left */
        pthread_join(m->job.thread, NULL);
    m->running = false;
    recv_close(q, false);
    if (m->served_fd >= 0)
        io_posix.ops->close(&io_posix, m->served_fd);
    m->served_fd = -1;
}
