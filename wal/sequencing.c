/*
 * wal/sequencing.c — the sequencer's decisions and its WAL (wal/sequencing.h has the rules).
 */
#include "config.h"

#include "wal/sequencing.h"

#include "common/assert.h"

#include <string.h>

void sequencing_init(struct sequencing *s, const struct sequencing_config *cfg, struct retry_cache *cache,
                     struct sequencing_frame *batch)
{
    ADB_ASSERT(cfg->batch_max > 0 && cfg->slot_ms > 0);
    memset(s, 0, sizeof(*s));
    s->cfg = *cfg;
    s->cache = cache;
    s->batch = batch;
    s->cluster_ms = UINT64_MAX;
}

void sequencing_close(struct sequencing *s)
{
    if (s->wal_open)
        wal_log_close(&s->wal);
    s->wal_open = false;
}

/* ---- restart ----------------------------------------------------------------------------- */

static void plan_restart(struct sequencing *s, const struct sequencing_restart *in, struct sequencing_open *out)
{
    memset(out, 0, sizeof(*out));
    out->first_start = !in->ever_ready;
    s->meta_commit = in->meta_commit_lsn;
    s->meta_snapshot = in->meta_snapshot_lsn;
    /* First start: no applier has read the shared log; it recovers everything from disk. */
    s->publish_after = out->first_start ? UINT64_MAX : in->published_lsn;
    u64 snap = in->newest_snapshot_lsn;
    if (!out->first_start && snap > s->publish_after)
        snap = s->publish_after; /* what must be published again is read */
    out->read_from_lsn = snap == 0 ? 0 : snap + 1;
    out->synced_lsn = in->meta_commit_lsn;
    if (!out->first_start && in->published_lsn > out->synced_lsn)
        out->synced_lsn = in->published_lsn; /* published only ever after its fsync */
}

struct replay_ctx {
    struct sequencing *s;
    sequencing_republish_fn republish;
    void *ctx;
};

static int replayed(void *arg, const struct wal_frame *f, const struct sm_command *cmd)
{
    struct replay_ctx *r = arg;
    struct sequencing *s = r->s;
    if (cmd->kind != SM_CMD_EXPIRE) {
        retry_cache_retire(s->cache, f->request_slot);
        retry_cache_add(s->cache, cmd, f->lsn, f->request_slot, false);
    }
    if (f->lsn <= s->publish_after)
        return 0;
    /* Durable but never published (a crash between fsync and publish): published again. */
    u8 payload[WAL_CMD_SIZE_MAX];
    struct sequencing_frame out;
    struct wal_frame g = *f;
    g.payload_len = wal_cmd_encode(payload, sizeof(payload), cmd);
    g.payload = payload;
    out.len = wal_frame_encode(out.bytes, sizeof(out.bytes), &g);
    ADB_ASSERT(out.len > 0);
    return r->republish(r->ctx, out.bytes, out.len, f->lsn);
}

int sequencing_open(struct sequencing *s, struct io *io, const char *dir, const struct sequencing_restart *seen,
                    sequencing_republish_fn republish, void *ctx, struct sequencing_open *plan,
                    struct wal_open_report *rep, enum sequencing_opened *verdict, char *why, size_t why_len)
{
    ADB_ASSERT(!s->wal_open);
    plan_restart(s, seen, plan);
    struct wal_log_options opt = { .segment_bytes = s->cfg.segment_bytes, .synced_lsn = plan->synced_lsn };
    struct replay_ctx r = { .s = s, .republish = republish, .ctx = ctx };
    int rc = wal_log_open(&s->wal, io, dir, &opt, plan->read_from_lsn, replayed, &r, rep, why, why_len);
    if (rc != 0)
        return rc;
    s->wal_open = true;
    if (s->meta_commit > rep->last_lsn)
        *verdict = SEQUENCING_META_AHEAD_OF_WAL;
    else if (!plan->first_start && rep->last_lsn < s->publish_after)
        *verdict = SEQUENCING_WAL_BEHIND_SHARED_LOG;
    else
        *verdict = SEQUENCING_OPENED;
    return 0;
}

void sequencing_start_clock(struct sequencing *s, u64 last_slot, const struct clock_anchor *saved,
                            const struct clock_reading *now)
{
    slot_clock_start(&s->clock, s->cfg.slot_ms, last_slot, saved, now);
}

void sequencing_join_clock(struct sequencing *s, u64 logical0_ms, u64 boot0_ms, u64 last_slot)
{
    slot_clock_join(&s->clock, s->cfg.slot_ms, logical0_ms, boot0_ms, last_slot);
}

/* ---- the batch --------------------------------------------------------------------------- */

u32 sequencing_batch_limit(const struct sequencing *s, u64 room)
{
    return room < s->cfg.batch_max ? (u32)room : s->cfg.batch_max;
}

u64 sequencing_slot(struct sequencing *s, u64 boot_ms)
{
    u64 slot = slot_clock_slot(&s->clock, boot_ms);
    /* In a cluster the slot is cluster time (DESIGN.md §3): what a quorum's clocks agree on,
     * not this replica's own clock, which may be an hour off either way. */
#ifdef ADB_CANARY_NEVER_EARLY
    if (false) { /* canary: stamp with this replica's own clock, not cluster time */
#else
    if (s->cluster_ms != UINT64_MAX) {
#endif
        u64 cluster = s->cluster_ms / s->cfg.slot_ms;
        slot = cluster > s->clock.floor_slot ? cluster : s->clock.floor_slot;
    }
    retry_cache_retire(s->cache, slot);
    return slot;
}

/* Appends cmd at slot: APPENDED, REFUSE_NO_SPACE (the next segment could not be had) or
 * STORAGE_FAILED. */
static struct sequencing_result append(struct sequencing *s, const struct sm_command *cmd, u64 slot,
                                       bool known_absent, u64 now_ms)
{
    ADB_ASSERT(s->wal_open && s->batch_count < s->cfg.batch_max);
    struct sequencing_result r = { .action = SEQUENCING_APPENDED };
    int rc = wal_log_append(&s->wal, slot, s->view, cmd, &r.lsn);
    if (wal_log_no_space(rc)) {
        s->no_space_rc = rc;
        sequencing_space(s, SEQUENCING_SEGMENT, true, now_ms);
        r.action = SEQUENCING_REFUSE_NO_SPACE;
        return r;
    }
    if (rc != 0) {
        r.action = SEQUENCING_STORAGE_FAILED;
        r.rc = rc;
        return r;
    }
    sequencing_space(s, SEQUENCING_SEGMENT, false, now_ms); /* it grew */
    slot_clock_note_slot(&s->clock, slot);
    if (cmd->kind != SM_CMD_EXPIRE)
        retry_cache_add(s->cache, cmd, r.lsn, slot, known_absent);
    r.index = s->batch_count++;
    struct sequencing_frame *f = &s->batch[r.index];
    const u8 *frame = wal_log_last_frame(&s->wal, &f->len);
    ADB_ASSERT(f->len <= sizeof(f->bytes));
    memcpy(f->bytes, frame, f->len);
    return r;
}

struct sequencing_result sequencing_write(struct sequencing *s, const struct sm_command *cmd, bool force_log,
                                          u64 boot_ms, u64 now_ms)
{
    struct sequencing_result r = { .action = SEQUENCING_REJECT_EXHAUSTED };
    if (wal_log_next_lsn(&s->wal) == UINT64_MAX)
        return r;
    /* The slot is read after the write was taken, never before: a write that arrived while
     * earlier ones were appended (a segment roll can sync for milliseconds) would otherwise
     * count its TTL from a slot that had ended before its client sent it — an early expiry. */
    u64 slot = sequencing_slot(s, boot_ms);
    const struct retry_entry *e = retry_cache_find(s->cache, cmd->operation_id);
    if (!force_log && (r.lsn = retry_cache_answer(s->cache, e, cmd, slot, s->wal.durable_lsn)) != 0) {
        r.action = SEQUENCING_ANSWER_RETRY;
        return r;
    }
    /* The metadata is retried by maintenance; the next segment by the next write that needs it,
     * once a retry interval has passed. */
    if (s->no_space[SEQUENCING_META] || (s->no_space[SEQUENCING_SEGMENT] && now_ms < s->space_retry_at_ms)) {
        r.action = SEQUENCING_REFUSE_NO_SPACE;
        return r;
    }
    return append(s, cmd, slot, e == NULL, now_ms);
}

struct sequencing_result sequencing_expire(struct sequencing *s, u128 reservation_id, u64 deadline_slot,
                                           u64 boot_ms, u64 now_ms)
{
    struct sequencing_result r = { .action = SEQUENCING_DROPPED };
    /* Not logged while writes are refused: the applier proposes it again after its hold. Late,
     * never early. */
    if (sequencing_writes_refused(s))
        return r;
    struct sm_command cmd = { .kind = SM_CMD_EXPIRE, .reservation_id = reservation_id,
                              .deadline_slot = deadline_slot };
    r = append(s, &cmd, sequencing_slot(s, boot_ms), false, now_ms);
    if (r.action == SEQUENCING_REFUSE_NO_SPACE)
        r.action = SEQUENCING_DROPPED;
    return r;
}

/* ---- replication ---------------------------------------------------------------------------- */

int sequencing_append_frame(struct sequencing *s, const u8 *frame, u32 len)
{
    ADB_ASSERT(s->wal_open && s->batch_count < s->cfg.batch_max);
    int rc = wal_log_append_frame(&s->wal, frame, len);
    if (rc != 0)
        return rc;
    struct wal_frame f;
    struct sm_command cmd;
    ADB_ASSERT(wal_frame_decode_exact(frame, len, &f) == WAL_FRAME_OK);
    slot_clock_note_slot(&s->clock, f.request_slot);
    if (wal_cmd_decode(f.record_type, f.payload, f.payload_len, &cmd) == WAL_CMD_OK &&
        cmd.kind != SM_CMD_EXPIRE) {
        retry_cache_retire(s->cache, f.request_slot);
        retry_cache_add(s->cache, &cmd, f.lsn, f.request_slot, false);
    }
    struct sequencing_frame *b = &s->batch[s->batch_count++];
    ADB_ASSERT(len <= sizeof(b->bytes));
    memcpy(b->bytes, frame, len);
    b->len = len;
    return 0;
}

static void forget_retries(struct sequencing *s)
{
    /* The cache may answer a retry with an LSN whose entry changed: start it over (it only
     * saves frames). */
    struct retry_cache *c = s->cache;
    memset(c->entries, 0, retry_cache_bytes(c->capacity));
    retry_cache_init(c, c->entries, c->capacity, c->window_slots);
}

int sequencing_truncate(struct sequencing *s, u64 after_lsn)
{
    int rc = wal_log_truncate(&s->wal, after_lsn);
    if (rc != 0)
        return rc;
    /* Drop the truncated frames from the batch (it is in LSN order). */
    u32 keep = 0;
    while (keep < s->batch_count) {
        struct wal_frame f;
        ADB_ASSERT(wal_frame_decode(s->batch[keep].bytes, s->batch[keep].len, &f, &(u32){ 0 }) ==
                   WAL_FRAME_OK);
        if (f.lsn > after_lsn)
            break;
        keep++;
    }
    s->batch_count = keep;
    forget_retries(s);
    return 0;
}

int sequencing_restart_log(struct sequencing *s, u64 after_lsn, u64 prev_slot, u32 prev_crc)
{
    int rc = wal_log_restart(&s->wal, after_lsn, prev_slot, prev_crc);
    if (rc != 0)
        return rc;
    s->batch_count = 0; /* the log dropped them: at or below after_lsn (asserted there), obsolete */
    if (s->pruned_below < after_lsn + 1)
        s->pruned_below = after_lsn + 1;
    forget_retries(s);
    return 0;
}

int sequencing_read(struct sequencing *s, u64 lsn, u8 *buf, u32 cap, u32 *len)
{
    return wal_log_read(&s->wal, lsn, buf, cap, len);
}

int sequencing_commit(struct sequencing *s, u32 *count)
{
    *count = 0;
    int rc = wal_log_commit(&s->wal);
    if (rc != 0)
        return rc;
    *count = s->batch_count;
    s->batch_count = 0;
    return 0;
}

int sequencing_prepare(struct sequencing *s, u64 budget_bytes, u64 now_ms)
{
    if (s->no_space[SEQUENCING_SPARE] && now_ms < s->space_retry_at_ms)
        return 0;
    int rc = wal_log_prepare(&s->wal, budget_bytes);
    if (wal_log_no_space(rc)) {
        s->no_space_rc = rc;
        sequencing_space(s, SEQUENCING_SPARE, true, now_ms);
        return 0;
    }
    if (rc != 0)
        return rc;
    sequencing_space(s, SEQUENCING_SPARE, false, now_ms);
    if (s->wal.spare_ready) /* the next roll takes the spare: it cannot fail for space */
        sequencing_space(s, SEQUENCING_SEGMENT, false, now_ms);
    return 0;
}

/* ---- space ------------------------------------------------------------------------------- */

enum sequencing_space_change sequencing_space(struct sequencing *s, enum sequencing_space part, bool full,
                                              u64 now_ms)
{
    ADB_ASSERT((unsigned)part < 3);
    if (full)
        s->space_retry_at_ms = now_ms + s->cfg.space_retry_ms;
    if (s->no_space[part] == full)
        return SEQUENCING_SPACE_SAME;
    s->no_space[part] = full;
    return full ? SEQUENCING_SPACE_FULL : SEQUENCING_SPACE_RETURNED;
}

bool sequencing_writes_refused(const struct sequencing *s)
{
    return s->no_space[SEQUENCING_SEGMENT] || s->no_space[SEQUENCING_META];
}

int sequencing_space_level(const struct sequencing *s)
{
    return sequencing_writes_refused(s) ? 2 : s->no_space[SEQUENCING_SPARE] ? 1 : 0;
}

/* ---- maintenance ------------------------------------------------------------------------- */

bool sequencing_meta_open_due(const struct sequencing *s, u64 now_ms)
{
    return now_ms >= s->meta_retry_at_ms;
}

bool sequencing_commit_due(struct sequencing *s, u64 now_ms, u64 durable_lsn, u64 *lsn)
{
    u64 every = s->no_space[SEQUENCING_META] ? s->cfg.space_retry_ms
              : durable_lsn > s->meta_commit ? s->cfg.meta_interval_ms
                                             : s->cfg.meta_idle_ms;
    if (now_ms - s->meta_at_ms < every)
        return false;
    s->meta_at_ms = now_ms;
    *lsn = durable_lsn > s->meta_commit ? durable_lsn : s->meta_commit; /* never backwards */
    return true;
}

void sequencing_committed(struct sequencing *s, u64 lsn)
{
    ADB_ASSERT(lsn >= s->meta_commit);
    s->meta_commit = lsn;
}

bool sequencing_anchor_due(const struct sequencing *s, u64 now_ms, u64 snapshot_lsn)
{
    /* The metadata's invariants: the snapshot anchor is never past the commit point. */
    return snapshot_lsn > s->meta_snapshot && snapshot_lsn <= s->meta_commit && now_ms >= s->meta_retry_at_ms;
}

void sequencing_anchored(struct sequencing *s, u64 snapshot_lsn)
{
    s->meta_snapshot = snapshot_lsn;
    s->meta_backoff_ms = 0;
}

u64 sequencing_meta_failed(struct sequencing *s, u64 now_ms)
{
    u64 b = s->meta_backoff_ms == 0 ? s->cfg.meta_interval_ms : s->meta_backoff_ms * 2;
    s->meta_backoff_ms = b > s->cfg.meta_backoff_max_ms ? s->cfg.meta_backoff_max_ms : b;
    s->meta_retry_at_ms = now_ms + s->meta_backoff_ms;
    return s->meta_backoff_ms;
}

int sequencing_prune(struct sequencing *s, u64 prune_below_lsn, u32 *removed)
{
    *removed = 0;
    if (prune_below_lsn <= s->pruned_below)
        return 0;
    int rc = wal_log_prune(&s->wal, prune_below_lsn, removed);
    if (rc == 0)
        s->pruned_below = prune_below_lsn;
    return rc;
}
