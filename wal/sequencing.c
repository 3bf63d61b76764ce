/*
 * wal/sequencing.c — the sequencer's decisions (wal/sequencing.h has the rules).
 */
#include "config.h"

#include "wal/sequencing.h"

#include "common/assert.h"

#include <string.h>

void sequencing_init(struct sequencing *s, const struct sequencing_config *cfg, struct retry_cache *cache)
{
    ADB_ASSERT(cfg->batch_max > 0 && cfg->slot_ms > 0);
    memset(s, 0, sizeof(*s));
    s->cfg = *cfg;
    s->cache = cache;
}

/* ---- restart ----------------------------------------------------------------------------- */

void sequencing_plan_restart(struct sequencing *s, const struct sequencing_restart *in, struct sequencing_open *out)
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

bool sequencing_replayed(struct sequencing *s, const struct sm_command *cmd, u64 lsn, u64 slot)
{
    if (cmd->kind != SM_CMD_EXPIRE) {
        retry_cache_retire(s->cache, slot);
        retry_cache_add(s->cache, cmd, lsn, slot, false);
    }
    return lsn > s->publish_after;
}

enum sequencing_opened sequencing_check_opened(const struct sequencing *s, const struct sequencing_open *plan,
                                               u64 last_lsn)
{
    if (s->meta_commit > last_lsn)
        return SEQUENCING_META_AHEAD_OF_WAL;
    if (!plan->first_start && last_lsn < s->publish_after)
        return SEQUENCING_WAL_BEHIND_SHARED_LOG;
    return SEQUENCING_OPENED;
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
    retry_cache_retire(s->cache, slot);
    return slot;
}

struct sequencing_write sequencing_take_write(const struct sequencing *s, const struct sm_command *cmd,
                                              bool force_log, u64 slot, u64 next_lsn, u64 durable_lsn,
                                              u64 now_ms)
{
    struct sequencing_write w = { .action = SEQUENCING_APPEND };
    if (next_lsn == UINT64_MAX) {
        w.action = SEQUENCING_REJECT_EXHAUSTED;
        return w;
    }
    const struct retry_entry *e = retry_cache_find(s->cache, cmd->operation_id);
    if (!force_log && (w.retry_lsn = retry_cache_answer(s->cache, e, cmd, slot, durable_lsn)) != 0) {
        w.action = SEQUENCING_ANSWER_RETRY;
        return w;
    }
    /* The metadata is retried by maintenance; the next segment by the next write that needs it,
     * once a retry interval has passed. */
    if (s->no_space[SEQUENCING_META] || (s->no_space[SEQUENCING_SEGMENT] && now_ms < s->space_retry_at_ms)) {
        w.action = SEQUENCING_REFUSE_NO_SPACE;
        return w;
    }
    w.known_absent = e == NULL;
    return w;
}

bool sequencing_take_expire(const struct sequencing *s)
{
    return !sequencing_writes_refused(s);
}

void sequencing_appended(struct sequencing *s, const struct sm_command *cmd, u64 lsn, u64 slot, bool known_absent)
{
    slot_clock_note_slot(&s->clock, slot);
    if (cmd->kind != SM_CMD_EXPIRE)
        retry_cache_add(s->cache, cmd, lsn, slot, known_absent);
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

bool sequencing_prepare_due(const struct sequencing *s, u64 now_ms)
{
    return !s->no_space[SEQUENCING_SPARE] || now_ms >= s->space_retry_at_ms;
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

bool sequencing_prune_due(const struct sequencing *s, u64 prune_below_lsn)
{
    return prune_below_lsn > s->pruned_below;
}

void sequencing_pruned(struct sequencing *s, u64 prune_below_lsn)
{
    s->pruned_below = prune_below_lsn;
}
