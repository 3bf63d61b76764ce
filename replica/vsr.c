/*
 * replica/vsr.c — the replication protocol core (replica/vsr.h has the rules).
 */
#include "config.h"

#include "replica/vsr.h"

#include "common/assert.h"
#include "common/splitmix.h"

#include <errno.h>
#include <string.h>

/* Prepares one retransmission tick resends to each backup that lacks them (a backup that lost
 * a burst of them gets the pipeline back within a few ticks). */
#define REPAIR_BATCH 64

const char *vsr_status_name(enum vsr_status s)
{
    switch (s) {
    case VSR_NORMAL: return "normal";
    case VSR_VIEW_CHANGE: return "view_change";
    }
    return "unknown";
}

/* ---- small helpers ------------------------------------------------------------------------- */

static u8 bit(u8 replica)
{
    return (u8)(1u << replica);
}

static u32 popcount8(u8 x)
{
    return (u32)__builtin_popcount(x);
}

static struct vsr_entry_header *jget(struct vsr *v, u64 lsn)
{
    if (lsn == 0)
        return NULL;
    struct vsr_entry_header *h = &v->journal[lsn % VSR_JOURNAL];
    return h->lsn == lsn ? h : NULL;
}

static void jput(struct vsr *v, const struct vsr_entry_header *h)
{
    ADB_ASSERT(h->lsn != 0);
    v->journal[h->lsn % VSR_JOURNAL] = *h;
    v->acks[h->lsn % VSR_JOURNAL] = 0;
}

static void jclear(struct vsr *v, u64 lsn)
{
    struct vsr_entry_header *h = jget(v, lsn);
    if (h)
        memset(h, 0, sizeof(*h));
}

/* Headers beyond the WAL's head may be learned at most this far ahead, so the ring always holds
 * the WAL's top entries next to them. */
static bool within_reach(const struct vsr *v, u64 lsn)
{
    return lsn <= v->wal_head + VSR_JOURNAL / 2;
}

static u64 mono_jitter(struct vsr *v, u64 range)
{
    return range ? splitmix_next(&v->rng) % range : 0;
}

static void send(struct vsr *v, u8 to, struct vsr_header *h, const u8 *body, u32 body_len)
{
    ADB_ASSERT(to != v->cfg.replica && to < v->cfg.replica_count);
    h->replica = v->cfg.replica;
    h->replica_count = v->cfg.replica_count;
    h->cluster_id = v->cfg.cluster_id;
    if (h->view == 0)
        h->view = v->view;
    u32 len = vsr_message_encode(v->msg, sizeof(v->msg), h, body, body_len);
    v->env.send(v->env.ctx, to, v->msg, len);
}

static void broadcast(struct vsr *v, struct vsr_header *h, const u8 *body, u32 body_len)
{
    for (u8 r = 0; r < v->cfg.replica_count; r++) {
        if (r == v->cfg.replica)
            continue;
        struct vsr_header copy = *h;
        send(v, r, &copy, body, body_len);
    }
}

static int persist(struct vsr *v, u64 view, u64 log_view)
{
    ADB_ASSERT(view >= v->view && log_view >= v->log_view && log_view <= view);
    struct vsr_durable d = { .view = view, .log_view = log_view, .recovering = v->recovering };
#ifdef ADB_CANARY_DURABLE_VOTE
    int rc = 0; /* canary: the view and vote stay in memory, lost at a restart */
    (void)d;
#else
    int rc = v->env.persist(v->env.ctx, &d);
#endif
    if (rc != 0) {
        v->count.persist_failures++;
        return rc;
    }
    v->view = view;
    v->log_view = log_view;
    return 0;
}

/* Publish what this replica may apply: committed and durable here. */
static void publish(struct vsr *v)
{
    u64 c = v->commit_max < v->durable ? v->commit_max : v->durable;
    if (c > v->verified)
        c = v->verified; /* only entries known to be the canonical ones */
    if (c > v->commit) {
        v->commit = c;
        v->env.commit(v->env.ctx, c);
    }
}

/* Reads this replica's entry lsn from its WAL into frame_buf, intact and at that LSN. */
static bool read_own(struct vsr *v, u64 lsn, struct wal_frame *f)
{
    u32 len = 0;
    return v->env.read(v->env.ctx, lsn, v->frame_buf, sizeof(v->frame_buf), &len) == 0 &&
           wal_frame_decode_exact(v->frame_buf, len, f) == WAL_FRAME_OK && f->lsn == lsn;
}

static bool own_header(struct vsr *v, u64 lsn, struct vsr_entry_header *out);

/* Headers of this replica's own log, contiguous, ending at `top` (<= wal_head), into out
 * (ascending). Returns the count. */
static u32 own_top_headers(struct vsr *v, u64 top, struct vsr_entry_header *out)
{
    u32 n = 0;
    for (u64 lsn = top; lsn >= 1 && n < VSR_HEADERS_MAX; lsn--) {
        if (!own_header(v, lsn, &out[n]))
            break;
        n++;
    }
    for (u32 i = 0; i < n / 2; i++) { /* gathered from the top down */
        struct vsr_entry_header t = out[i];
        out[i] = out[n - 1 - i];
        out[n - 1 - i] = t;
    }
    return n;
}

/* Which of this replica's uncommitted entries (above commit_max, up to top, at most
 * VSR_HEADERS_MAX of them) its WAL cannot read back: *lowest (0: none) and, in *above, bit i
 * for entry lowest + 1 + i. */
static void unreadable_entries(struct vsr *v, u64 top, u64 *lowest, u64 *above)
{
    *lowest = *above = 0;
    u64 from = v->commit_max + 1;
    if (top >= VSR_HEADERS_MAX && from < top - VSR_HEADERS_MAX + 1)
        from = top - VSR_HEADERS_MAX + 1;
    for (u64 lsn = from; lsn <= top; lsn++) {
        struct wal_frame f;
        if (read_own(v, lsn, &f))
            continue;
        if (*lowest == 0)
            *lowest = lsn;
        else if (lsn - *lowest - 1 < 64)
            *above |= 1ull << (lsn - *lowest - 1);
    }
}

/* Headers of the top of the log, contiguous, ending at `top`, into body; returns the count. */
static u32 top_headers(struct vsr *v, u64 top, u8 *body)
{
    struct vsr_entry_header hs[VSR_HEADERS_MAX];
    u32 n = 0;
    for (u64 lsn = top; lsn >= 1 && n < VSR_HEADERS_MAX; lsn--) {
        struct vsr_entry_header *h = jget(v, lsn);
        if (!h)
            break;
        n++;
        hs[VSR_HEADERS_MAX - n] = *h;
    }
    vsr_entry_headers_encode(body, hs + VSR_HEADERS_MAX - n, n);
    return n;
}

/* ---- init and restart ---------------------------------------------------------------------- */

void vsr_init(struct vsr *v, const struct vsr_config *cfg, const struct vsr_env *env)
{
    ADB_ASSERT(cfg->replica_count >= 1 && cfg->replica_count <= VSR_REPLICAS_MAX);
    ADB_ASSERT(cfg->replica < cfg->replica_count);
    ADB_ASSERT(cfg->pipeline_max >= 1 && cfg->pipeline_max <= VSR_PIPELINE_MAX);
    memset(v, 0, sizeof(*v));
    v->cfg = *cfg;
    v->env = *env;
    v->quorum = (u8)(cfg->replica_count / 2 + 1);
    v->rng = cfg->seed ^ ((u64)cfg->replica << 56);
    v->timeout_jitter_ns = mono_jitter(v, cfg->primary_timeout_ns / 2 + 1);
}

void vsr_load_entry(struct vsr *v, const struct vsr_entry_header *h)
{
    jput(v, h);
    if (h->view > v->max_entry_view)
        v->max_entry_view = h->view;
}

static void vote(struct vsr *v, u64 view);

void vsr_start(struct vsr *v, const struct vsr_start *s, struct vsr_time t)
{
    ADB_ASSERT(s->durable.log_view <= s->durable.view);
    /* An entry of a view this replica never made durable: the metadata went backwards
     * (corruption, or a lost write): fail closed rather than vote again in an old view. */
    ADB_ASSERT(v->max_entry_view <= s->durable.view);
    v->now_ns = t.mono_ns;
    v->clock_ms = t.clock_ms;
    v->view = s->durable.view;
    v->log_view = s->durable.log_view;
    v->view_started = s->durable.view;
    v->wal_head = s->wal_head;
    v->verified = s->wal_head; /* the log its log_view claims */
    v->durable = s->wal_head;
    v->op = s->wal_head;
    struct vsr_entry_header *h = jget(v, s->wal_head);
    ADB_ASSERT(s->wal_head == 0 || h != NULL);
    v->wal_head_crc = h ? h->crc : 0;
    v->image_lsn = s->image_lsn;
    v->wal_first = s->wal_first ? s->wal_first : 1;
    v->commit_max = s->commit;
    v->commit = 0;
    publish(v);
    v->primary_seen_ns = t.mono_ns;
    v->vc_started_ns = t.mono_ns;
    v->view_start_op = v->op;
    v->started_ns = t.mono_ns;
    v->recovering = s->durable.recovering;
#ifdef ADB_CANARY_RECOVER
    /* canary: a replica that lost its disk votes and acks at once, as if freshly formatted */
    v->recovering = false;
    if (s->durable.recovering)
        (void)persist(v, v->view, v->log_view);
#endif
    if (v->recovering) {
        /* Lost its disk: it waits to learn the view from a quorum of others (no vote). */
        ADB_ASSERT(v->cfg.replica_count > 1);
        v->status = VSR_VIEW_CHANGE;
        return;
    }
    if (v->cfg.replica_count == 1) {
        v->status = VSR_NORMAL;
        v->commit_max = v->durable; /* a single replica: durable is committed */
        publish(v);
    } else if (v->log_view == v->view && (!vsr_is_primary(v) || s->fresh)) {
        v->status = VSR_NORMAL;
    } else {
        /* A primary that restarts may have lost entries a quorum committed without it; one that
         * crashed in a view change does not know how it ended: ask for the next view. */
        v->status = VSR_VIEW_CHANGE;
        vote(v, v->view + 1);
    }
}

/* ---- view change --------------------------------------------------------------------------- */

static void send_dvc(struct vsr *v, bool everyone);
static void try_commit(struct vsr *v);
static void send_prepare_ok(struct vsr *v);
static void check_dvc_quorum(struct vsr *v);

static void enter_view_change(struct vsr *v, u64 view)
{
    ADB_ASSERT(view > v->view);
    if (v->recovering)
        return;
    if (persist(v, view, v->log_view) != 0)
        return; /* not in it until durable: the next vote or timeout tries again */
    v->status = VSR_VIEW_CHANGE;
    v->vc_started_ns = v->now_ns;
    v->count.view_changes++;
    memset(v->dvc, 0, sizeof(v->dvc));
    /* Reads waiting on the old view fail; rounds start again. */
    v->round_floor = v->round_wanted;
    v->round_sent = v->round_confirmed = v->round_wanted;
    if (v->svc_view < view) {
        v->svc_view = view;
        v->svc_from = 0;
    }
    v->svc_from |= bit(v->cfg.replica);
    struct vsr_header h = { .command = VSR_START_VIEW_CHANGE };
    broadcast(v, &h, NULL, 0);
    send_dvc(v, false);
}

static void check_svc_quorum(struct vsr *v)
{
    if (v->svc_view > v->view && popcount8(v->svc_from) >= v->quorum)
        enter_view_change(v, v->svc_view);
}

/* This replica votes to leave its view for `view`. */
static void vote(struct vsr *v, u64 view)
{
    if (v->recovering)
        return; /* it may have voted before its disk was lost: never again until caught up */
    v->voted = true;
    if (view > v->svc_view) {
        v->svc_view = view;
        v->svc_from = 0;
    }
    v->svc_from |= bit(v->cfg.replica);
    v->vc_started_ns = v->now_ns;
    struct vsr_header h = { .command = VSR_START_VIEW_CHANGE, .view = v->svc_view };
    broadcast(v, &h, NULL, 0);
    check_svc_quorum(v);
}

static void record_dvc(struct vsr *v, u8 from, u64 log_view, u64 op, u64 commit, u64 unreadable,
                       u64 unreadable_above, const struct vsr_entry_header *hs, u32 count)
{
    struct vsr_dvc *d = &v->dvc[from];
    d->have = true;
    d->log_view = log_view;
    d->op = op;
    d->commit = commit;
    d->unreadable = unreadable;
    d->unreadable_above = unreadable_above;
    d->count = count;
    memcpy(d->headers, hs, count * sizeof(*hs));
}

/* To the new view's primary; with everyone, to every replica: a do_view_change for a view is
 * proof that a quorum voted for it, and a replica that receives one follows (so a replica that
 * entered a view the others forgot they voted for is not left behind in it). */
static void send_dvc(struct vsr *v, bool everyone)
{
    if (v->status != VSR_VIEW_CHANGE || v->recovering)
        return;
    u8 primary = vsr_primary_of(v, v->view);
    u8 body[VSR_HEADERS_MAX * VSR_ENTRY_HEADER_SIZE];
    struct vsr_entry_header hs[VSR_HEADERS_MAX] = { 0 }; /* (gcc cannot tell n of them are set) */
    /* The durable log, claimed under log_view (settle_log_view: it holds that view's whole start
     * log). Entries heard of only from prepares that ran ahead are left out: a committed one is
     * durable on a quorum, and every quorum of do_view_changes includes one of them. */
    u64 head = v->durable;
    u32 n = own_top_headers(v, head, hs);
    vsr_entry_headers_encode(body, hs, n);
    /* Uncommitted entries it cannot read back (damaged): it can neither supply them nor say it
     * lacks them. */
    u64 unreadable, unreadable_above;
    unreadable_entries(v, head, &unreadable, &unreadable_above);
    /* Entries of a newer view than log_view (appended while catching up to a view's start
     * log): the log is a prefix of that view's primary's log (the hash chain), so that is the
     * view it is claimed under. */
    u64 claim = v->log_view;
    if (n > 0 && hs[n - 1].view > claim) /* hs[n - 1] is the head's */
        claim = hs[n - 1].view;
    struct vsr_header h = { .command = VSR_DO_VIEW_CHANGE, .op = head, .a = claim,
                            .b = unreadable, .c = unreadable_above, .commit = v->commit_max };
    if (everyone)
        broadcast(v, &h, body, n * VSR_ENTRY_HEADER_SIZE);
    else if (primary != v->cfg.replica)
        send(v, primary, &h, body, n * VSR_ENTRY_HEADER_SIZE);
    if (primary == v->cfg.replica && !v->dvc[primary].have) {
        record_dvc(v, primary, claim, head, v->commit_max, unreadable, unreadable_above, hs, n);
        check_dvc_quorum(v);
    }
}

/* Remove this replica's entries after keep (never at or below its commit point). */
static int truncate_to(struct vsr *v, u64 keep)
{
    ADB_ASSERT(keep >= (v->commit < v->wal_head ? v->commit : v->wal_head) && keep < v->wal_head);
    struct vsr_entry_header h = { 0 };
    if (keep > 0 && !own_header(v, keep, &h))
        return -EIO; /* tried again at the next start_view or prepare */
    u32 crc = h.crc;
    int rc = v->env.truncate(v->env.ctx, keep);
    if (rc != 0) {
        v->count.append_failures++;
        return rc;
    }
    v->count.truncations++;
    v->count.truncated_entries += v->wal_head - keep;
    for (u64 lsn = keep + 1; lsn <= v->wal_head && lsn <= keep + VSR_JOURNAL; lsn++)
        jclear(v, lsn);
    v->wal_head = keep;
    v->wal_head_crc = crc;
    if (v->durable > keep)
        v->durable = keep;
    if (v->verified > keep)
        v->verified = keep;
    return 0;
}


/* The header of this replica's own entry lsn (<= wal_head): from the journal up to verified
 * (there it is canonical and ours alike), read back from the WAL above (the journal holds the
 * canonical headers there, which are not necessarily ours). */
static bool own_header(struct vsr *v, u64 lsn, struct vsr_entry_header *out)
{
    if (lsn == 0 || lsn > v->wal_head)
        return false;
    if (lsn <= v->verified) {
        struct vsr_entry_header *h = jget(v, lsn);
        if (h) {
            *out = *h;
            return true;
        }
    }
    struct wal_frame f;
    if (!read_own(v, lsn, &f))
        return false;
    vsr_entry_header_of_frame(&f, out);
    return true;
}

/*
 * Adopt a canonical log: headers hs[0..count) (the top of it, maybe none) ending at op, from a
 * replica whose log it is. ours_canonical: this replica's log is known to be a prefix of it.
 * Only entries proven not to be in it are truncated — above its head, or differing from a
 * canonical header — never one that only cannot be checked yet: a committed entry truncated on
 * a replica of its quorum could end up on too few to survive the next view change. Entries
 * above `verified` are checked along the hash chain afterwards (verify), and neither served,
 * acked nor extended before.
 */
static int adopt_log(struct vsr *v, const struct vsr_entry_header *hs, u32 count, u64 op,
                     bool ours_canonical)
{
    u64 keep = v->wal_head;
    u64 verified = v->commit < v->wal_head ? v->commit : v->wal_head;
    if (ours_canonical) {
        verified = v->wal_head;
    } else {
        if (keep > op)
            keep = op; /* not in the canonical log, so never committed */
        for (u32 i = 0; i < count; i++) {
            u64 lsn = hs[i].lsn;
            if (lsn > keep)
                break;
            struct vsr_entry_header own, *mine = own_header(v, lsn, &own) ? &own : NULL;
            if (!mine)
                continue;
            if (mine->crc != hs[i].crc) {
                keep = lsn - 1; /* proven divergent from here */
                break;
            }
            if (lsn > verified)
                verified = lsn; /* and everything below it: the chain */
        }
        /* The entry just below the window, by the chain. */
        if (count > 0 && hs[0].lsn >= 2 && hs[0].lsn - 1 <= keep) {
            struct vsr_entry_header own, *below = own_header(v, hs[0].lsn - 1, &own) ? &own : NULL;
            if (below && below->crc != hs[0].prev_crc)
                keep = hs[0].lsn - 2;
            else if (below && hs[0].lsn - 1 > verified)
                verified = hs[0].lsn - 1;
        }
        if (verified > keep)
            verified = keep;
    }
    if (keep < v->wal_head) {
        int rc = truncate_to(v, keep);
        if (rc != 0)
            return rc;
    }
    v->verified = verified;
    memset(v->ahead, 0, sizeof(v->ahead));
    /* Above what is verified the journal holds canonical headers only (our own unverified
     * entries are read back from the WAL when they are checked). */
    for (u64 lsn = verified + 1; lsn <= verified + VSR_JOURNAL; lsn++)
        jclear(v, lsn); /* all of it: headers learned in an older view, ahead of op too */
    for (u32 i = 0; i < count; i++)
        if (hs[i].lsn > verified && within_reach(v, hs[i].lsn))
            jput(v, &hs[i]);
    /* The log's head: the canonical one, or ours where ours extends it. Headers we only heard
     * of (prepares that ran ahead of our WAL) are not in it: if no quorum member held them
     * durable, they were never committed. */
    v->op = op;
    if (ours_canonical && v->wal_head > v->op)
        v->op = v->wal_head;
    return 0;
}

/*
 * Check this replica's unverified entries (verified, wal_head] against the canonical log, from
 * the bottom, as canonical headers become known (repair asks the view's canonical source for
 * them): a match verifies the entry and everything below it (the chain); a mismatch proves it
 * and everything above it divergent, and they are truncated.
 */
static void verify(struct vsr *v)
{
    while (v->verified < v->wal_head) {
        u64 lsn = v->verified + 1;
        struct vsr_entry_header *c = jget(v, lsn);
        if (!c)
            return;
        struct vsr_entry_header mine;
        if (!own_header(v, lsn, &mine)) {
            /* Our own copy cannot be read: it can be neither checked nor served. Never cut it:
             * it may have been acked in an earlier view and committed, and a do_view_change
             * from here must keep claiming it (the canonical log is the highest log_view's, and
             * a claim cut short would drop a committed entry). A primary stuck on it steps down
             * (the progress rule); the entry is then repaired from an intact copy elsewhere. */
            return;
        }
        if (mine.crc != c->crc) {
            truncate_to(v, lsn - 1);
            return;
        }
        v->verified = lsn;
    }
}

/*
 * A replica normal in a view makes it its last normal view (log_view) only once its WAL holds
 * the log the view started with. Before that its durable log is still a prefix of its old one
 * (adoption only truncates, then appends canonical entries), claimed under the old log_view,
 * and it acks nothing: so whoever claims the newest log_view in a do_view_change holds that
 * view's whole start log, and every entry committed in the view.
 */
static void settle_log_view(struct vsr *v)
{
    if (v->status != VSR_NORMAL || (v->log_view == v->view && !v->recovering) ||
        v->durable < v->view_start_op || v->verified < v->view_start_op)
        return;
    if (v->recovering) {
        /* Caught up with the log it adopted: recovery ends with the view and log_view. */
        if (!v->recovery_adopted || v->durable < v->recovery_target || v->verified < v->recovery_target)
            return;
        v->recovering = false;
        if (persist(v, v->view, v->view) != 0) {
            v->recovering = true;
            return;
        }
        v->count.recoveries++;
    } else if (persist(v, v->view, v->view) != 0)
        return;
    if (vsr_is_primary(v))
        try_commit(v);
    else
        send_prepare_ok(v);
}

/* to == VSR_REPLICAS_MAX: every other replica. */
static void send_start_view(struct vsr *v, u8 to, u64 nonce)
{
    u8 body[VSR_HEADERS_MAX * VSR_ENTRY_HEADER_SIZE];
    u32 n = top_headers(v, v->op, body);
    struct vsr_header h = { .command = VSR_START_VIEW, .op = v->op, .a = nonce,
                            .commit = v->commit_max };
    if (to == VSR_REPLICAS_MAX)
        broadcast(v, &h, body, n * VSR_ENTRY_HEADER_SIZE);
    else
        send(v, to, &h, body, n * VSR_ENTRY_HEADER_SIZE);
}

/* The header d carries for lsn, or NULL (outside its window). */
static const struct vsr_entry_header *dvc_header(const struct vsr_dvc *d, u64 lsn)
{
    u64 first = d->op - d->count + 1;
    if (d->count == 0 || lsn < first || lsn > d->op)
        return NULL;
    return &d->headers[lsn - first];
}

/* By its do_view_change, the sender does not hold the canonical entry at lsn (canon: its
 * header, NULL if unknown): its durable log ends below it, or holds another entry there. Its
 * log is a chain, so it holds none of the canonical entries above either. A replica that
 * acked the entry in its view still holds it unless a later view's log left it out (and then
 * it was not committed): lacking it, the sender never acked it. */
static bool dvc_lacks(const struct vsr_dvc *d, u64 lsn, const struct vsr_entry_header *canon)
{
    if (d->op < lsn)
        return true;
    const struct vsr_entry_header *h = dvc_header(d, lsn);
    return h && canon && h->crc != canon->crc;
}

/* The sender said it cannot read back its entry at lsn. */
static bool dvc_unreadable(const struct vsr_dvc *d, u64 lsn)
{
    if (d->unreadable == 0 || lsn < d->unreadable)
        return false;
    if (lsn == d->unreadable)
        return true;
    return lsn - d->unreadable - 1 < 64 && (d->unreadable_above >> (lsn - d->unreadable - 1) & 1);
}

/* The sender may hold the canonical entry at lsn intact (repair will ask it). */
static bool dvc_may_hold(const struct vsr_dvc *d, u64 lsn, const struct vsr_entry_header *canon)
{
    return d->op >= lsn && !dvc_unreadable(d, lsn) && !dvc_lacks(d, lsn, canon);
}

/*
 * Protocol-aware recovery of the canonical log's uncommitted entries (above commit), before
 * the view starts. An entry that replicas enough that no replication quorum remains without
 * them lack (n - quorum + 1) was never committed: the log is cut below it (and so below every
 * entry after it, which those replicas lack too). An entry that no do_view_change received
 * may hold intact (its only copies damaged, say) cannot be repaired once the view starts, nor
 * dropped unless it is proven uncommitted: the primary waits for the do_view_changes of the
 * other replicas (resent until the view starts; the view change times out otherwise).
 * Returns false to wait; else *cut is the canonical log's head.
 */
static bool recover_uncommitted(const struct vsr *v, const struct vsr_dvc *c, u64 commit, u64 *cut)
{
    u32 have = 0;
    for (u8 r = 0; r < v->cfg.replica_count; r++)
        have += v->dvc[r].have;
    u32 nack_quorum = v->cfg.replica_count - v->quorum + 1;
#ifdef ADB_CANARY_NACK
    nack_quorum = 1; /* canary: one replica lacking an entry proves it uncommitted */
#endif
    *cut = c->op;
    for (u64 lsn = commit + 1; lsn <= c->op; lsn++) {
        const struct vsr_entry_header *canon = dvc_header(c, lsn);
        u32 lack = 0, hold = 0;
        for (u8 r = 0; r < v->cfg.replica_count; r++) {
            const struct vsr_dvc *d = &v->dvc[r];
            if (!d->have)
                continue;
            lack += dvc_lacks(d, lsn, canon);
            hold += dvc_may_hold(d, lsn, canon);
        }
        if (lack >= nack_quorum) {
            *cut = lsn - 1;
            return true;
        }
        if (hold == 0 && have < v->cfg.replica_count)
            return false;
    }
    return true;
}

static void start_view_as_primary(struct vsr *v)
{
    /* The canonical log: highest log_view, then highest op. */
    int best = -1;
    u64 commit = v->commit_max;
    for (u8 r = 0; r < v->cfg.replica_count; r++) {
        struct vsr_dvc *d = &v->dvc[r];
        if (!d->have)
            continue;
        if (d->commit > commit)
            commit = d->commit;
#ifdef ADB_CANARY_LOG_VIEW
        if (best < 0 || d->op > v->dvc[best].op) /* canary: the longest log, whatever its view */
            best = r;
#else
        if (best < 0 || d->log_view > v->dvc[best].log_view ||
            (d->log_view == v->dvc[best].log_view && d->op > v->dvc[best].op))
            best = r;
#endif
    }
    ADB_ASSERT(best >= 0);
    struct vsr_dvc *c = &v->dvc[best];
#ifdef ADB_CANARY_TRUNCATE
    /* canary: drop every op above the highest commit point reported, whether or not a quorum
     * lacks it */
    while (c->count > 0 && c->headers[c->count - 1].lsn > commit)
        c->count--;
    if (c->op > commit)
        c->op = commit;
    bool ours = false;
#else
    bool ours = v->log_view == c->log_view;
#endif
    u64 cut;
    if (!recover_uncommitted(v, c, commit, &cut))
        return;
    if (cut < c->op) {
        /* Ours is the same view's log: a prefix of the canonical one or an extension of it. */
        if (ours && v->wal_head > cut && truncate_to(v, cut) != 0)
            return; /* tried again with the next do_view_change */
        v->count.nack_truncations++;
        while (c->count > 0 && c->headers[c->count - 1].lsn > cut)
            c->count--;
        c->op = cut;
    }
    if (adopt_log(v, c->headers, c->count, c->op, ours) != 0)
        return;
    v->view_started = v->view;
    v->status = VSR_NORMAL;
    v->voted = false;
    v->commit_max = commit > v->commit_max ? commit : v->commit_max;
    v->view_start_op = v->op;
    for (u64 lsn = v->commit_max + 1; lsn <= v->op; lsn++)
        v->acks[lsn % VSR_JOURNAL] = 0;
    v->last_repair_ns = 0;
    publish(v);
    send_start_view(v, VSR_REPLICAS_MAX, 0);
    settle_log_view(v);
}

static void check_dvc_quorum(struct vsr *v)
{
    /* A view is started at most once: a second start_view could install another log over the
     * one backups already took. A replica restarted in a view it leads may have started it
     * before the crash, so it never starts that view at all. */
    if (v->status != VSR_VIEW_CHANGE || !vsr_is_primary(v) || v->view <= v->view_started ||
        v->recovering)
        return;
    u32 n = 0;
    for (u8 r = 0; r < v->cfg.replica_count; r++)
        n += v->dvc[r].have;
    if (n >= v->quorum)
        start_view_as_primary(v);
}

/* ---- normal case --------------------------------------------------------------------------- */

/* Ask `primary` for the log of `view` (this replica is behind it, or missed its start). */
static void request_start_view(struct vsr *v, u8 primary, u64 view)
{
    if (v->nonce == 0)
        v->nonce = splitmix_next(&v->rng) | 1;
    struct vsr_header h = { .command = VSR_REQUEST_START_VIEW, .a = v->nonce, .view = view };
    send(v, primary, &h, NULL, 0);
}

static void send_prepare_ok(struct vsr *v)
{
    if (v->status != VSR_NORMAL || vsr_is_primary(v) || v->durable == 0 ||
        v->log_view != v->view || v->recovering)
        return;
    u64 ack = v->durable < v->verified ? v->durable : v->verified;
    struct vsr_entry_header *h = jget(v, ack);
    if (ack == 0 || !h)
        return;
    struct vsr_header m = { .command = VSR_PREPARE_OK, .op = ack, .a = h->crc };
    send(v, vsr_primary_of(v, v->view), &m, NULL, 0);
}

static void try_commit(struct vsr *v)
{
    if (!vsr_serving(v) || v->log_view != v->view)
        return;
    while (v->commit_max < v->op) {
        u64 next = v->commit_max + 1;
        if (next > v->wal_head)
            break; /* still repairing it */
        u32 have = popcount8(v->acks[next % VSR_JOURNAL]) +
                   (v->durable >= next && v->verified >= next ? 1 : 0);
#ifdef ADB_CANARY_QUORUM
        have = v->quorum; /* canary: commit without a quorum */
#endif
        if (have < v->quorum)
            break;
        v->commit_max = next;
    }
    publish(v);
}

/* Append a frame that extends this replica's chain (checked by the caller). */
static bool append_frame(struct vsr *v, const struct wal_frame *f, const u8 *bytes, u32 len)
{
    int rc = v->env.append(v->env.ctx, bytes, len);
    if (rc != 0) {
        v->count.append_failures++;
        return false;
    }
    struct vsr_entry_header h;
    vsr_entry_header_of_frame(f, &h);
    jput(v, &h);
    v->wal_head = f->lsn;
    v->wal_head_crc = f->crc;
    if (v->op < f->lsn)
        v->op = f->lsn;
    return true;
}

/* The next entry (LSN wal_head + 1): appended if it extends the chain and matches what we know
 * of it; from another view only when we know its crc. */
static bool take_next(struct vsr *v, const struct wal_frame *f, const u8 *bytes, u32 len,
                      u64 msg_view)
{
    struct vsr_entry_header *known = jget(v, f->lsn);
    if (known && known->crc != f->crc) {
        v->count.dropped_status++;
        return false;
    }
    if (!known && msg_view != v->view) {
        v->count.dropped_view++;
        return false;
    }
    if (f->prev_crc != v->wal_head_crc || v->verified < v->wal_head) {
        v->count.dropped_status++; /* our head is not (yet) known canonical: verify first */
        return false;
    }
    if (!append_frame(v, f, bytes, len))
        return false;
    v->verified = f->lsn;
    return true;
}

/* Whether m's frame is the canonical entry at its LSN: from this view's primary, or — for the
 * primary — from any replica in this view (a replica answers without a crc only from the
 * prefix it verified in normal status, which only a start_view of this view gives). */
static bool canonical_source(const struct vsr *v, const struct vsr_message *m)
{
    if (m->h.view != v->view)
        return false;
    return m->h.replica == vsr_primary_of(v, v->view) || vsr_is_primary(v) || m->h.a == 1;
}

/* A frame from the canonical source names the canonical entry at its LSN. */
static void learn_canonical(struct vsr *v, const struct vsr_message *m)
{
    const struct wal_frame *f = &m->frame;
    if (f->lsn <= v->verified || jget(v, f->lsn) || !within_reach(v, f->lsn) ||
        !canonical_source(v, m))
        return;
    struct vsr_entry_header h;
    vsr_entry_header_of_frame(f, &h);
    jput(v, &h);
}

/* Append what arrived ahead and now follows. */
static void drain_ahead(struct vsr *v)
{
    for (;;) {
        u64 next = v->wal_head + 1;
        struct vsr_ahead *a = &v->ahead[next % VSR_REORDER];
        if (a->lsn != next)
            return;
        struct wal_frame f;
        a->lsn = 0;
        if (wal_frame_decode_exact(a->bytes, a->len, &f) != WAL_FRAME_OK)
            return;
        if (!take_next(v, &f, a->bytes, a->len, a->view))
            return;
    }
}

static void on_prepare(struct vsr *v, const struct vsr_message *m)
{
    const struct wal_frame *f = &m->frame;
    learn_canonical(v, m);
    struct vsr_entry_header *known = jget(v, f->lsn);
    bool from_primary = m->h.view == v->view && m->h.replica == vsr_primary_of(v, v->view);
    if (m->h.view < v->view && !(known && known->crc == f->crc)) {
        v->count.dropped_view++;
        return;
    }
    if (from_primary && v->status == VSR_NORMAL && !vsr_is_primary(v)) {
        v->primary_seen_ns = v->now_ns;
        if (m->h.commit > v->commit_max)
            v->commit_max = m->h.commit;
    }
    if (v->status != VSR_NORMAL) {
        v->count.dropped_status++;
        if (from_primary && !vsr_is_primary(v))
            request_start_view(v, m->h.replica, v->view); /* the view started without us */
        return;
    }
    if (f->lsn <= v->wal_head) {
        if (f->lsn > v->verified) {
            verify(v);
            drain_ahead(v);
        } else if (known && known->crc == f->crc && f->lsn <= v->durable)
            send_prepare_ok(v); /* a retransmission: ack again */
        return;
    }
    if (f->lsn > v->wal_head + 1) {
        /* Ahead of the next one: hold it (bounded) and remember the header if it is the
         * primary's; the gap is repaired. */
        if (from_primary && !known && within_reach(v, f->lsn)) {
            struct vsr_entry_header h;
            vsr_entry_header_of_frame(f, &h);
            jput(v, &h);
            if (v->op < f->lsn)
                v->op = f->lsn;
        }
        if (f->lsn <= v->wal_head + VSR_REORDER) {
            struct vsr_ahead *a = &v->ahead[f->lsn % VSR_REORDER];
            a->lsn = f->lsn;
            a->view = m->h.view;
            a->len = m->body_len;
            memcpy(a->bytes, m->body, m->body_len);
        }
        return;
    }
    if (!take_next(v, f, m->body, m->body_len, m->h.view))
        return;
    if (!from_primary)
        v->count.repairs_appended++;
    drain_ahead(v);
}

static void send_prepare_from_wal(struct vsr *v, u8 to, u64 lsn, u32 expect_crc)
{
    if (expect_crc == 0 && (lsn > v->verified || v->status != VSR_NORMAL)) {
        v->count.repairs_unreadable++; /* not known canonical: only for who names its crc */
        return;
    }
    struct wal_frame f;
    if (!read_own(v, lsn, &f) || (expect_crc != 0 && f.crc != expect_crc)) {
        v->count.repairs_unreadable++;
        return;
    }
    u32 len = wal_frame_size(f.payload_len);
    /* a: the entry is canonical in this view (verified here), so the asker may learn its header
     * from it as from the primary. */
    struct vsr_header h = { .command = VSR_PREPARE, .op = lsn, .commit = v->commit_max,
                            .a = v->status == VSR_NORMAL && lsn <= v->verified };
    if (f.view > v->view)
        return; /* cannot happen for an intact log; never send what would not decode */
    send(v, to, &h, v->frame_buf, len);
}

/* A replica to ask for entry lsn. With its crc known, any other replica (each answers only
 * with an intact copy of that very entry). Without: a backup asks its primary (and repair asks
 * another in turn: the primary's copy may be unreadable), the primary any other replica; an
 * answer without a crc comes only from a replica's verified prefix in normal status, and is
 * taken only from this view. */
static int repair_source(struct vsr *v, u64 lsn, bool known)
{
    if (!vsr_is_primary(v) && !known)
        return vsr_primary_of(v, v->view);
    (void)lsn;
    u8 r = (u8)(splitmix_next(&v->rng) % v->cfg.replica_count);
    if (r == v->cfg.replica)
        r = (u8)((r + 1) % v->cfg.replica_count);
    return r;
}

static bool transfer_begin(struct vsr *v, u64 need, bool canonical);
static void transfer_tick(struct vsr *v);

/* A backup asks one more replica than `from` for entry lsn without a crc: any of the others,
 * drawn (a rotation in step with the requests per tick could keep asking the same one, which
 * may have pruned the entry or hold a damaged copy). */
static void ask_another(struct vsr *v, u8 from, u64 lsn)
{
    if (vsr_is_primary(v))
        return;
    u8 other = (u8)((from + 1 + splitmix_next(&v->rng) % (v->cfg.replica_count - 1)) % v->cfg.replica_count);
    if (other == v->cfg.replica || other == from)
        return;
    struct vsr_header m = { .command = VSR_REQUEST_PREPARE, .op = lsn };
    send(v, other, &m, NULL, 0);
}

static void repair(struct vsr *v)
{
    v->repair_mark = v->wal_head;
    v->verify_mark = v->verified;
    if (v->wal_head != v->head_seen || v->verified != v->verified_seen) {
        v->head_seen = v->wal_head;
        v->verified_seen = v->verified;
        v->head_moved_ns = v->now_ns;
    }
    verify(v);
    if (v->transfer.active) {
        transfer_tick(v);
        return;
    }
    if (v->verified < v->wal_head) {
        if (transfer_begin(v, v->verified + 1, true))
            return; /* nobody can tell ours from the canonical entries any more */
        /* Ask the canonical source for our unverified entries, to compare: the primary, and one
         * other drawn at random (its copy is canonical if verified in this view, which its answer
         * says; the primary's own copy may be damaged). */
        for (u64 lsn = v->verified + 1; lsn <= v->wal_head && lsn <= v->verified + VSR_REORDER;
             lsn++) {
            if (jget(v, lsn))
                continue;
            int from = repair_source(v, lsn, false);
            if (from < 0 || from == v->cfg.replica)
                break;
            struct vsr_header m = { .command = VSR_REQUEST_PREPARE, .op = lsn };
            send(v, (u8)from, &m, NULL, 0);
            v->count.repairs_requested++;
            ask_another(v, (u8)from, lsn);
        }
        return;
    }
    u64 want = v->op > v->commit_max ? v->op : v->commit_max;
    if (v->wal_head < want && transfer_begin(v, v->wal_head + 1, false))
        return;
    for (u64 lsn = v->wal_head + 1; lsn <= want && lsn <= v->wal_head + VSR_REORDER; lsn++) {
        if (v->ahead[lsn % VSR_REORDER].lsn == lsn)
            continue; /* here already, waiting for the ones before it */
        struct vsr_entry_header *h = jget(v, lsn);
        int from = repair_source(v, lsn, h != NULL);
        if (from < 0 || from == v->cfg.replica)
            break;
        struct vsr_header m = { .command = VSR_REQUEST_PREPARE, .op = lsn, .a = h ? h->crc : 0 };
        send(v, (u8)from, &m, NULL, 0);
        v->count.repairs_requested++;
        if (!h)
            ask_another(v, (u8)from, lsn);
    }
}

/* ---- state transfer ------------------------------------------------------------------------ */

/* Whether peer r was heard from lately (its ping's reach is current). */
static bool peer_recent(const struct vsr *v, u8 r)
{
    return v->peer_pinged_ns[r] != 0 && v->now_ns - v->peer_pinged_ns[r] <= v->cfg.primary_timeout_ns;
}

/* Whether an image at lsn would bring this replica anything: entries past its log, or the
 * committed version of its own head entry that nobody can check any more. */
static bool image_helps(const struct vsr *v, u64 lsn)
{
    return lsn > v->wal_head || (lsn == v->wal_head && v->verified < v->wal_head);
}

static void transfer_request(struct vsr *v)
{
    struct vsr_header h = { .command = VSR_REQUEST_SNAPSHOT, .op = v->transfer.img.lsn,
                            .a = v->transfer.offset };
    send(v, v->transfer.from, &h, NULL, 0);
}

static void transfer_abandon(struct vsr *v)
{
    v->transfer.active = false;
    v->count.transfers_abandoned++;
}

/* Entry `need` is wanted (from the view's canonical source, with `canonical`): if no replica
 * heard from lately that could give it still holds it in its WAL, and one pruned it below an
 * image that reaches past our whole log, ask that one for its image. */
static bool transfer_begin(struct vsr *v, u64 need, bool canonical)
{
    /* A replica that says it holds the entry may hold a copy it cannot read back: once repair
     * has made no headway for a view-change timeout, an image is taken all the same. */
    bool stuck = v->now_ns - v->head_moved_ns > v->cfg.view_change_timeout_ns;
    struct vsr_entry_header own;
    bool own_damaged = stuck && canonical && need <= v->wal_head && !own_header(v, need, &own);
    int best = -1;
    for (u8 r = 0; r < v->cfg.replica_count; r++) {
        if (r == v->cfg.replica || !peer_recent(v, r) || v->peer_wal_first[r] == 0)
            continue;
        bool source = !canonical || vsr_is_primary(v) || r == vsr_primary_of(v, v->view);
        if (source && !stuck && v->peer_wal_first[r] <= need && v->peer_op[r] >= need)
            return false; /* it can be repaired */
        /* A peer that pruned the entry; or any, when our own copy of it is damaged (never cut:
         * an image above our whole log replaces it with the committed prefix). */
        if ((v->peer_wal_first[r] > need || own_damaged) && image_helps(v, v->peer_image_lsn[r]) &&
            (best < 0 || v->peer_image_lsn[r] > v->peer_image_lsn[best]))
            best = r;
    }
    if (best < 0)
        return false;
    v->transfer = (struct vsr_transfer){ .active = true, .from = (u8)best, .progress_ns = v->now_ns };
    v->count.transfers_started++;
    transfer_request(v);
    return true;
}

/* Repair tick with a transfer under way: ask again, or give it up when it stalls. */
static void transfer_tick(struct vsr *v)
{
    if (!v->transfer.active)
        return;
    if (v->status != VSR_NORMAL || v->now_ns - v->transfer.progress_ns > v->cfg.view_change_timeout_ns) {
        transfer_abandon(v);
        return;
    }
    transfer_request(v);
}

static void on_request_snapshot(struct vsr *v, const struct vsr_message *m)
{
    struct vsr_image img;
    u32 len = 0;
    u64 offset = m->h.a;
    int rc = v->env.image_read(v->env.ctx, offset, v->chunk_buf, sizeof(v->chunk_buf), &len, &img);
    if (rc == 0 && m->h.op != 0 && m->h.op != img.lsn && offset != 0) {
        /* Not the image it was receiving (a newer one replaced it): from the start. */
        offset = 0;
        rc = v->env.image_read(v->env.ctx, 0, v->chunk_buf, sizeof(v->chunk_buf), &len, &img);
    }
    if (rc != 0 || len == 0 || offset + len > img.size)
        return;
    struct vsr_header h = { .command = VSR_SNAPSHOT_CHUNK, .op = img.lsn, .a = offset, .b = img.size,
                            .c = img.crc };
    send(v, m->h.replica, &h, v->chunk_buf, len);
    v->count.chunks_served++;
}

/* The image is whole: install it, if this replica still needs it. */
static void transfer_install(struct vsr *v)
{
    struct vsr_image img = v->transfer.img;
    if (v->status != VSR_NORMAL || !image_helps(v, img.lsn)) {
        transfer_abandon(v);
        return;
    }
    v->transfer.active = false;
    struct vsr_entry_header at;
    if (v->env.image_install(v->env.ctx, &img, &at) != 0) {
        v->count.transfer_failures++;
        return;
    }
    ADB_ASSERT(at.lsn == img.lsn && at.view <= v->view);
    /* The log restarts after the image's entry: a committed prefix, everything we held (a
     * verified prefix of it) included. */
    memset(v->journal, 0, sizeof(v->journal));
    memset(v->acks, 0, sizeof(v->acks));
    memset(v->ahead, 0, sizeof(v->ahead));
    jput(v, &at);
    v->wal_head = v->durable = v->verified = at.lsn;
    v->wal_head_crc = at.crc;
    v->wal_first = at.lsn + 1;
    v->image_lsn = at.lsn;
    if (v->op < at.lsn)
        v->op = at.lsn;
    if (v->commit_max < at.lsn)
        v->commit_max = at.lsn;
    v->commit = at.lsn; /* the state installed is at it */
    v->count.transfers_installed++;
    v->last_repair_ns = 0;
    publish(v);
    settle_log_view(v); /* the image may hold all the view started with (or recovery's target) */
    send_prepare_ok(v);
}

static void on_snapshot_chunk(struct vsr *v, const struct vsr_message *m)
{
    struct vsr_transfer *t = &v->transfer;
    if (!t->active || m->h.replica != t->from)
        return;
    struct vsr_image img = { .lsn = m->h.op, .size = m->h.b, .crc = (u32)m->h.c };
    bool same = img.lsn == t->img.lsn && img.size == t->img.size && img.crc == t->img.crc;
    if (!same && m->h.a == 0) {
        t->img = img; /* the first chunk, or a newer image: from the start */
        t->offset = 0;
        same = true;
    }
    if (!same || m->h.a != t->offset)
        return; /* a duplicate, or of another image */
    if (!image_helps(v, img.lsn)) {
        transfer_abandon(v); /* caught up otherwise */
        return;
    }
    if (v->env.image_write(v->env.ctx, &img, t->offset, m->body, m->body_len) != 0) {
        v->count.transfer_failures++;
        t->active = false;
        return;
    }
    v->count.chunks_received++;
    t->offset += m->body_len;
    t->progress_ns = v->now_ns;
    if (t->offset == img.size)
        transfer_install(v);
    else
        transfer_request(v);
}

u64 vsr_prune_floor(const struct vsr *v)
{
    u64 floor = UINT64_MAX;
    for (u8 r = 0; r < v->cfg.replica_count; r++) {
        if (r == v->cfg.replica || !peer_recent(v, r))
            continue;
        u64 next = v->peer_op[r] + 1;
        if (next + v->cfg.lag_max >= v->wal_head && next < floor)
            floor = next;
    }
    return floor;
}

u64 vsr_prune_floor_all(const struct vsr *v)
{
    u64 floor = UINT64_MAX;
    for (u8 r = 0; r < v->cfg.replica_count; r++)
        if (r != v->cfg.replica && v->peer_op[r] + 1 < floor)
            floor = v->peer_op[r] + 1;
    return floor;
}

void vsr_on_checkpoint(struct vsr *v, u64 image_lsn, u64 wal_first)
{
    ADB_ASSERT(image_lsn >= v->image_lsn && wal_first <= image_lsn + 1);
    v->image_lsn = image_lsn;
    if (wal_first > v->wal_first)
        v->wal_first = wal_first;
}

/* Primary: resend unacknowledged prepares to the backups that lack them. */
static void retransmit(struct vsr *v)
{
    for (u64 lsn = v->commit_max + 1; lsn <= v->verified && lsn <= v->commit_max + REPAIR_BATCH;
         lsn++) {
        struct vsr_entry_header *h = jget(v, lsn);
        if (!h)
            break;
        for (u8 r = 0; r < v->cfg.replica_count; r++) {
            if (r == v->cfg.replica || (v->acks[lsn % VSR_JOURNAL] & bit(r)))
                continue;
            send_prepare_from_wal(v, r, lsn, h->crc);
            v->count.prepares_resent++;
        }
    }
}

static void send_commit(struct vsr *v, u64 round)
{
    struct vsr_header h = { .command = VSR_COMMIT, .commit = v->commit_max, .a = round };
    broadcast(v, &h, NULL, 0);
    v->last_heartbeat_ns = v->now_ns;
}

static void confirm_round(struct vsr *v)
{
    if (popcount8(v->round_acks) + 1 < v->quorum)
        return;
    v->round_confirmed = v->round_sent;
    v->count.read_rounds++;
    if (v->round_wanted > v->round_sent) {
        v->round_sent = v->round_wanted;
        v->round_acks = 0;
        send_commit(v, v->round_sent);
    }
}

/* ---- events -------------------------------------------------------------------------------- */

/* The sender is in a later view (a start_view_change names a view asked for, not one entered):
 * stop serving at once, and let the view-change timer aim past it. */
static void saw_higher_view(struct vsr *v, u64 view)
{
    if (view > v->higher_view)
        v->higher_view = view;
    if (v->status == VSR_NORMAL) {
        v->status = VSR_VIEW_CHANGE;
        v->vc_started_ns = v->now_ns;
    }
}


static void set_time(struct vsr *v, struct vsr_time t)
{
    if (t.mono_ns > v->now_ns)
        v->now_ns = t.mono_ns;
    v->clock_ms = t.clock_ms;
}

void vsr_tick(struct vsr *v, struct vsr_time t)
{
    set_time(v, t);
    if (v->cfg.replica_count == 1)
        return;
    u64 now = v->now_ns;
    if (now - v->last_ping_ns >= v->cfg.ping_ns || v->last_ping_ns == 0) {
        /* What this replica's WAL holds, [c, op]: peers that need an entry no one holds take
         * an image instead. */
        struct vsr_header h = { .command = VSR_PING, .op = v->wal_head, .a = now, .b = v->image_lsn,
                                .c = v->wal_first <= v->image_lsn + 1 ? v->wal_first : 0 };
        broadcast(v, &h, NULL, 0);
        v->last_ping_ns = now;
    }
    bool repair_due = now - v->last_repair_ns >= v->cfg.repair_ns;
    if (repair_due)
        v->last_repair_ns = now;
    if (v->status == VSR_NORMAL) {
        /* A view that commits nothing of what it has stops the cluster as surely as a silent
         * primary: a primary that cannot get entries of its log back (their only copies lost
         * with a disk, say), or one heard from that cannot give its backups what they lack.
         * After twice the timeout without progress, primary and backups alike ask for the
         * next view; its do_view_changes carry only what replicas hold. */
        u8 p = vsr_primary_of(v, v->view);
        u64 pending = v->peer_op[p] > v->op ? v->peer_op[p] : v->op; /* what it and we hold */
        /* A primary must also hold what is committed, as far as it and its backups can tell
         * (a backup behind it is its own business: it repairs or takes an image). */
        bool behind = vsr_is_primary(v) ? v->commit < v->commit_max
                                        : v->peer_pinged_ns[p] != 0 && v->peer_op[p] < v->commit_max;
        u64 mark = v->commit_max + v->commit + v->peer_op[p]; /* moves as any of them does */
        if (mark != v->progress_commit || (pending <= v->commit_max && !behind)) {
            v->progress_commit = mark;
            v->progress_ns = now;
        } else if (now - v->progress_ns >= 2 * v->cfg.primary_timeout_ns + v->timeout_jitter_ns) {
            v->progress_ns = now;
            vote(v, v->view + 1);
            return;
        }
        if (vsr_is_primary(v)) {
            if (now - v->last_heartbeat_ns >= v->cfg.heartbeat_ns)
                send_commit(v, v->round_sent > v->round_confirmed ? v->round_sent : 0);
            if (repair_due) {
                retransmit(v);
                repair(v);
            }
        } else {
            if (now - v->primary_seen_ns >= v->cfg.primary_timeout_ns + v->timeout_jitter_ns) {
                v->primary_seen_ns = now; /* vote again only after another timeout */
                vote(v, v->view + 1);
                return;
            }
            /* A backup far behind repairs as fast as the answers come, not one window per
             * repair interval: once half the window it asked for is in, it asks again. */
            u64 want = v->op > v->commit_max ? v->op : v->commit_max;
            bool fetched = v->wal_head >= v->repair_mark + VSR_REORDER / 2 && v->wal_head < want;
            bool checked = v->verified >= v->verify_mark + VSR_REORDER / 2 && v->verified < v->wal_head;
            if (repair_due || fetched || checked)
                repair(v);
        }
        return;
    }
    if (v->recovering) {
        /* Ask the primary of the highest view a quorum of others is in for its log. */
        if (repair_due && popcount8(v->recovery_from) >= v->quorum) {
            u64 view = v->recovery_view > v->higher_view ? v->recovery_view : v->higher_view;
            if (view < v->view)
                view = v->view;
            if (vsr_primary_of(v, view) != v->cfg.replica)
                request_start_view(v, vsr_primary_of(v, view), view);
        }
        return;
    }
    /* A view change. */
    if (now - v->vc_started_ns >= v->cfg.view_change_timeout_ns + v->timeout_jitter_ns) {
        u64 next = v->svc_view > v->view ? v->svc_view : v->view;
        if (v->higher_view > next)
            next = v->higher_view;
        next++;
        vote(v, next);
        return;
    }
    if (repair_due) {
        if (v->svc_from & bit(v->cfg.replica)) {
            struct vsr_header h = { .command = VSR_START_VIEW_CHANGE, .view = v->svc_view };
            broadcast(v, &h, NULL, 0);
        }
        if (v->log_view < v->view)
            send_dvc(v, true);
        else if (v->higher_view > v->view) {
            if (vsr_primary_of(v, v->higher_view) != v->cfg.replica)
                request_start_view(v, vsr_primary_of(v, v->higher_view), v->higher_view);
        }
        else if (!vsr_is_primary(v))
            request_start_view(v, vsr_primary_of(v, v->view), v->view);
    }
}

static void on_start_view(struct vsr *v, const struct vsr_message *m)
{
    u64 w = m->h.view;
    if (m->h.replica != vsr_primary_of(v, w) || w < v->view)
        return;
    if (w == v->view && vsr_is_primary(v))
        return;
    /* In our own view, only one we still wait for (or asked for): an old start_view replayed
     * later would take the log back to the view's start. */
    if (w == v->view && v->status == VSR_NORMAL && !(v->nonce != 0 && m->h.a == v->nonce))
        return;
    /* Recovering: only the log of a view at least as high as a quorum of others is in. */
    if (v->recovering && (popcount8(v->recovery_from) < v->quorum || w < v->recovery_view))
        return;
    struct vsr_entry_header hs[VSR_HEADERS_MAX];
    for (u32 i = 0; i < m->header_count; i++)
        vsr_entry_header_get(m, i, &hs[i]);
    bool ours = v->log_view == w;
    u64 op = m->h.op;
    if (adopt_log(v, hs, m->header_count, op, ours) != 0)
        return;
    bool entering = w > v->view || v->log_view < w;
    if (w > v->view) {
        if (persist(v, w, v->log_view) != 0)
            return;
        v->count.view_changes++;
        v->round_floor = v->round_wanted;
        v->round_sent = v->round_confirmed = v->round_wanted;
    }
    v->status = VSR_NORMAL;
    v->voted = false;
    v->nonce = 0;
    v->primary_seen_ns = v->now_ns;
    if (m->h.commit > v->commit_max)
        v->commit_max = m->h.commit;
    if (entering && v->log_view < w)
        v->view_start_op = v->op;
    if (v->recovering && (!v->recovery_adopted || op > v->recovery_target)) {
        v->recovery_target = op; /* every entry it may have acked before is in that log */
        v->recovery_adopted = true;
    }
    publish(v);
    settle_log_view(v);
    send_prepare_ok(v);
    v->last_repair_ns = 0;
}

void vsr_on_message(struct vsr *v, struct vsr_time t, const u8 *bytes, u32 len)
{
    set_time(v, t);
    struct vsr_message m;
    if (vsr_message_decode_exact(bytes, len, &m) != VSR_DECODE_OK) {
        v->count.dropped_decode++;
        return;
    }
    if (m.h.cluster_id != v->cfg.cluster_id) {
        v->count.dropped_cluster++;
        return;
    }
    if (m.h.replica_count != v->cfg.replica_count || m.h.replica == v->cfg.replica) {
        v->count.dropped_replica++;
        return;
    }
    u8 from = m.h.replica;
    if (m.h.view > v->view && m.h.command != VSR_START_VIEW_CHANGE &&
        m.h.command != VSR_DO_VIEW_CHANGE && m.h.command != VSR_START_VIEW)
        saw_higher_view(v, m.h.view);
    switch (m.h.command) {
    case VSR_PING: {
        v->peer_op[from] = m.h.op;
        v->peer_image_lsn[from] = m.h.b;
        v->peer_wal_first[from] = m.h.c;
        v->peer_pinged_ns[from] = v->now_ns;
        struct vsr_header h = { .command = VSR_PONG, .a = m.h.a, .b = v->clock_ms };
        send(v, from, &h, NULL, 0);
        return;
    }
    case VSR_PONG:
        /* Only an answer to a ping newer than the last one answered: a replayed pong would pass
         * an old clock reading off as fresh. */
        if (m.h.a > v->now_ns || m.h.a <= v->peer_ping_ns[from])
            return;
        /* A slow round trip makes a poor sample: its reading may be that much old. */
        if (v->now_ns - m.h.a > v->cfg.clock_tolerance_ns / 2)
            return;
        v->peer_ping_ns[from] = m.h.a;
        if (v->recovering && m.h.a >= v->started_ns) {
            v->recovery_from |= bit(from);
            if (m.h.view > v->recovery_view)
                v->recovery_view = m.h.view;
        }
        v->peer_clock_ms[from] = m.h.b;
        v->peer_seen_ns[from] = v->now_ns;
        v->peer_clock_valid[from] = true;
        return;
    case VSR_PREPARE:
        if (m.h.view > v->view)
            break; /* a higher view: below */
        on_prepare(v, &m);
        return;
    case VSR_PREPARES: {
        if (m.h.view > v->view)
            break;
        /* Each frame as the prepare that would have carried it (the decoder checked them). */
        struct vsr_message one = m;
        one.h.command = VSR_PREPARE;
        one.h.a = 0;
        u32 at = 0;
        for (u32 i = 0; i < m.header_count; i++) {
            u32 used;
            ADB_ASSERT(wal_frame_decode(m.body + at, m.body_len - at, &one.frame, &used) == WAL_FRAME_OK);
            one.h.op = one.frame.lsn;
            one.body = m.body + at;
            one.body_len = used;
            on_prepare(v, &one);
            at += used;
        }
        return;
    }
    case VSR_REQUEST_SNAPSHOT:
        if (m.h.view < v->view) {
            v->count.dropped_view++;
            return;
        }
        on_request_snapshot(v, &m);
        return;
    case VSR_SNAPSHOT_CHUNK:
        /* Committed state, whatever the view: taken from the replica it was asked of. */
        on_snapshot_chunk(v, &m);
        return;
    case VSR_REQUEST_PREPARE:
        if (m.h.view < v->view) {
            v->count.dropped_view++;
            return;
        }
        send_prepare_from_wal(v, from, m.h.op, (u32)m.h.a);
        v->count.repairs_served++;
        return;
    case VSR_START_VIEW_CHANGE:
        if (m.h.view <= v->view)
            return;
        if (m.h.view > v->svc_view) {
            v->svc_view = m.h.view;
            v->svc_from = 0;
            /* One that wants a change itself joins the highest view asked for, rather than
             * asking for one higher again later: candidates converge instead of leapfrogging. */
            if (v->status == VSR_VIEW_CHANGE || v->voted) {
                v->svc_from |= bit(from);
                vote(v, m.h.view);
                return;
            }
        }
        if (m.h.view == v->svc_view) {
            v->svc_from |= bit(from);
            check_svc_quorum(v);
        }
        return;
    case VSR_DO_VIEW_CHANGE: {
        if (m.h.view < v->view) {
            v->count.dropped_view++;
            return;
        }
        if (m.h.view > v->view) {
            enter_view_change(v, m.h.view); /* a quorum voted for it: follow */
            if (v->view != m.h.view)
                return;
        }
        if (vsr_primary_of(v, m.h.view) != v->cfg.replica)
            return;
        if (v->status != VSR_VIEW_CHANGE) {
            if (vsr_serving(v))
                send_start_view(v, from, 0); /* the view started without it */
            return;
        }
        struct vsr_entry_header hs[VSR_HEADERS_MAX];
        for (u32 i = 0; i < m.header_count; i++)
            vsr_entry_header_get(&m, i, &hs[i]);
        record_dvc(v, from, m.h.a, m.h.op, m.h.commit, m.h.b, m.h.c, hs, m.header_count);
        check_dvc_quorum(v);
        return;
    }
    case VSR_START_VIEW:
        on_start_view(v, &m);
        return;
    default:
        break;
    }
    if (m.h.view < v->view) {
        v->count.dropped_view++;
        return;
    }
    if (m.h.view > v->view) {
        /* A higher view is under way or done: stop serving; ask its primary for the log. */
        if (m.h.replica == vsr_primary_of(v, m.h.view) &&
            (m.h.command == VSR_PREPARE || m.h.command == VSR_COMMIT)) {
            request_start_view(v, m.h.replica, m.h.view);
        }
        return;
    }
    switch (m.h.command) {
    case VSR_PREPARE_OK:
        if (!vsr_serving(v) || m.h.op > v->op || m.h.op <= v->commit_max)
            return;
        {
            struct vsr_entry_header *h = jget(v, m.h.op);
            if (!h || h->crc != (u32)m.h.a)
                return;
            v->count.prepare_oks++;
            for (u64 lsn = v->commit_max + 1; lsn <= m.h.op; lsn++)
                v->acks[lsn % VSR_JOURNAL] |= bit(from);
        }
        try_commit(v);
        return;
    case VSR_COMMIT:
        if (vsr_is_primary(v) || from != vsr_primary_of(v, v->view))
            return;
        if (v->status != VSR_NORMAL) {
            request_start_view(v, from, v->view); /* the view started without us */
            return;
        }
        v->primary_seen_ns = v->now_ns;
        v->voted = false; /* its primary is back */
        if (m.h.commit > v->commit_max)
            v->commit_max = m.h.commit;
        publish(v);
        if (!v->recovering) { /* it cannot vouch that no later view started */
            struct vsr_header h = { .command = VSR_COMMIT_OK, .a = m.h.a, .op = v->durable };
            send(v, from, &h, NULL, 0);
        }
        return;
    case VSR_COMMIT_OK:
        if (!vsr_serving(v))
            return;
        if (m.h.a != 0 && m.h.a == v->round_sent && v->round_sent > v->round_confirmed) {
            v->round_acks |= bit(from);
            confirm_round(v);
        }
        return;
    case VSR_REQUEST_START_VIEW:
        if (vsr_serving(v))
            send_start_view(v, from, m.h.a);
        return;
    default:
        return;
    }
}

void vsr_on_durable(struct vsr *v, struct vsr_time t, u64 lsn)
{
    set_time(v, t);
    if (lsn > v->wal_head)
        lsn = v->wal_head;
    if (lsn <= v->durable)
        return;
    v->durable = lsn;
    if (v->cfg.replica_count == 1) {
        v->commit_max = v->durable;
        publish(v);
        return;
    }
    settle_log_view(v);
    if (vsr_serving(v))
        try_commit(v);
    else {
        send_prepare_ok(v);
        publish(v);
    }
}

/* ---- primary: new entries ------------------------------------------------------------------ */

bool vsr_cluster_clock(const struct vsr *v, struct vsr_time t, u64 *ms)
{
    u64 est[VSR_REPLICAS_MAX];
    u32 n = 0;
    for (u8 r = 0; r < v->cfg.replica_count; r++) {
        if (r == v->cfg.replica) {
            est[n++] = t.clock_ms;
            continue;
        }
        if (!v->peer_clock_valid[r] || t.mono_ns < v->peer_seen_ns[r] ||
            t.mono_ns - v->peer_seen_ns[r] > v->cfg.clock_window_ns)
            continue;
        /* A lower bound of its clock now: it read b before we received the pong. */
        est[n++] = v->peer_clock_ms[r] + (t.mono_ns - v->peer_seen_ns[r]) / 1000000u;
    }
    if (n < v->quorum)
        return false;
    for (u32 i = 1; i < n; i++)
        for (u32 j = i; j > 0 && est[j - 1] > est[j]; j--) {
            u64 x = est[j];
            est[j] = est[j - 1];
            est[j - 1] = x;
        }
    /* The lowest window of a quorum's clocks that agree within the tolerance. A quorum holds a
     * correct clock, so the window's lowest reading is neither ahead of real time nor more than
     * the tolerance behind it; clocks outside every such window (an hour fast or slow) count
     * for nothing. None: the clocks disagree and the cluster has no time. */
    u64 tolerance_ms = v->cfg.clock_tolerance_ns / 1000000u;
    for (u32 i = 0; i + v->quorum <= n; i++)
        if (est[i + v->quorum - 1] - est[i] <= tolerance_ms) {
            *ms = est[i];
            return true;
        }
    return false;
}

u64 vsr_clock_error_ms(const struct vsr *v)
{
#ifdef ADB_CANARY_NEVER_EARLY
    return 0; /* canary: expire as soon as the deadline slot ends, by the primary's own clock */
#endif
    if (v->cfg.replica_count == 1)
        return 0;
    /* The window, and the round trip a sample may take. */
    return (v->cfg.clock_tolerance_ns + v->cfg.clock_tolerance_ns / 2 + 999999u) / 1000000u;
}

u32 vsr_prepare_room(struct vsr *v, struct vsr_time t)
{
    set_time(v, t);
    if (!vsr_serving(v) || v->wal_head < v->op || v->verified < v->wal_head)
        return 0;
    u64 ms;
    if (!vsr_cluster_clock(v, t, &ms)) {
        v->count.clock_unsynced_refusals++;
        return 0;
    }
    u64 in_flight = v->op - v->commit_max;
    if (in_flight >= v->cfg.pipeline_max)
        return 0;
    return (u32)(v->cfg.pipeline_max - in_flight);
}

void vsr_on_sequenced(struct vsr *v, struct vsr_time t, const u8 *frame, u32 len)
{
    set_time(v, t);
    ADB_ASSERT(vsr_serving(v));
    struct wal_frame f;
    ADB_ASSERT(wal_frame_decode_exact(frame, len, &f) == WAL_FRAME_OK);
    ADB_ASSERT(f.lsn == v->op + 1 && f.lsn == v->wal_head + 1 && f.prev_crc == v->wal_head_crc);
    if (v->out_len + len > sizeof(v->out_frames))
        vsr_flush(v, t); /* full: what came before, while op is still its last */
    struct vsr_entry_header h;
    vsr_entry_header_of_frame(&f, &h);
    jput(v, &h);
    v->op = v->wal_head = v->verified = f.lsn;
    v->wal_head_crc = f.crc;
    if (v->cfg.replica_count == 1)
        return;
    /* Shipped by vsr_flush, with the others sequenced in this step. */
    if (v->out_count == 0)
        v->out_view = v->view;
    memcpy(v->out_frames + v->out_len, frame, len);
    v->out_len += len;
    v->out_count++;
    v->out_last = f.lsn;
}

void vsr_flush(struct vsr *v, struct vsr_time t)
{
    set_time(v, t);
    if (v->out_count == 0)
        return;
    /* Only in the view that sequenced them, still serving: a later view's log may not hold
     * them (the shell flushes in the step that sequenced them, so this is a corner). */
    if (vsr_serving(v) && v->view == v->out_view && v->out_last == v->op) {
        struct vsr_header m = { .command = v->out_count == 1 ? VSR_PREPARE : VSR_PREPARES, .op = v->out_last,
                                .commit = v->commit_max, .a = v->out_count == 1 ? 0 : v->out_count };
        broadcast(v, &m, v->out_frames, v->out_len);
        v->count.prepares_sent += v->out_count;
        v->count.prepare_messages++;
    }
    v->out_len = v->out_count = 0;
}

/* ---- reads --------------------------------------------------------------------------------- */

bool vsr_read_begin(struct vsr *v, struct vsr_time t, u64 *ticket, u64 *index)
{
    set_time(v, t);
    if (!vsr_serving(v) || v->wal_head < v->op || v->log_view != v->view)
        return false;
    *index = v->commit_max > v->view_start_op ? v->commit_max : v->view_start_op;
    if (v->cfg.replica_count == 1) {
        *ticket = ++v->round_wanted;
        v->round_sent = v->round_confirmed = v->round_wanted;
        return true;
    }
    *ticket = v->round_sent + 1;
    v->round_wanted = *ticket;
    if (v->round_sent == v->round_confirmed) {
        v->round_sent = *ticket;
        v->round_acks = 0;
        send_commit(v, v->round_sent);
    }
    return true;
}

bool vsr_read_ready(const struct vsr *v, u64 ticket)
{
#ifdef ADB_CANARY_READ_INDEX
    (void)v;
    (void)ticket;
    return true; /* canary: serve reads without a quorum's confirmation */
#else
    return ticket > v->round_floor && ticket <= v->round_confirmed;
#endif
}

bool vsr_read_failed(const struct vsr *v, u64 ticket)
{
    return ticket <= v->round_floor;
}
