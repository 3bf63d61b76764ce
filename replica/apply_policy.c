/*
 * replica/apply_policy.c — see apply_policy.h.
 */
#include "config.h"

#include "replica/apply_policy.h"

#include <string.h>

void apply_policy_init(struct apply_policy *p, const struct apply_policy_config *cfg, u64 now_ms, u64 snapshot_lsn)
{
    memset(p, 0, sizeof(*p));
    p->cfg = *cfg;
    p->snap_lsns[0] = snapshot_lsn;
    p->last_snap_ms = now_ms;
    p->hold_until_lsn = UINT64_MAX;
}

unsigned apply_policy_expiration(struct apply_policy *p, u64 now_ms, u64 slot, bool forced, u64 applied_lsn,
                                 bool queue_empty, u64 sequenced_lsn)
{
    if (p->holding) {
        if (p->hold_until_lsn == UINT64_MAX && queue_empty)
            p->hold_until_lsn = sequenced_lsn; /* every proposal has an LSN at or below this */
        if ((p->hold_until_lsn != UINT64_MAX && applied_lsn >= p->hold_until_lsn) ||
            now_ms - p->hold_since_ms > p->cfg.expire_hold_max_ms)
            p->holding = false;
    }
    if (!forced && slot == p->last_scan_slot)
        return 0;
    p->last_scan_slot = slot;
    return APPLY_POLICY_NEW_SLOT | (p->holding ? 0 : APPLY_POLICY_PROPOSE);
}

void apply_policy_proposed(struct apply_policy *p, u32 sent, u64 now_ms)
{
    if (sent == 0)
        return;
    p->holding = true;
    p->hold_until_lsn = UINT64_MAX;
    p->hold_since_ms = now_ms;
}

bool apply_policy_checkpoint_due(const struct apply_policy *p, u64 now_ms, u64 applied_lsn)
{
    return !p->snap_running && now_ms - p->last_snap_ms >= p->cfg.checkpoint_interval_ms + p->backoff_ms &&
           applied_lsn >= p->snap_lsns[0] + p->cfg.checkpoint_min_entries;
}

void apply_policy_checkpoint_started(struct apply_policy *p, u64 lsn, u64 now_ms)
{
    p->snap_running = true;
    p->snap_pending_lsn = lsn;
    p->last_snap_ms = now_ms;
}

u64 apply_policy_checkpoint_done(struct apply_policy *p)
{
    p->snap_running = false;
    p->backoff_ms = 0;
    if (p->snap_lsns[0] != 0 && p->snap_lsns[0] < p->snap_pending_lsn)
        p->snap_lsns[1] = p->snap_lsns[0];
    p->snap_lsns[0] = p->snap_pending_lsn;
    return p->snap_lsns[1] != 0 ? p->snap_lsns[1] + 1 : 0;
}

u64 apply_policy_checkpoint_failed(struct apply_policy *p)
{
    p->snap_running = false;
    u64 base = p->cfg.checkpoint_interval_ms > 1000 ? p->cfg.checkpoint_interval_ms : 1000;
    p->backoff_ms = p->backoff_ms == 0 ? base : p->backoff_ms * 2;
    if (p->backoff_ms > p->cfg.snapshot_backoff_max_ms)
        p->backoff_ms = p->cfg.snapshot_backoff_max_ms;
    return p->backoff_ms;
}

enum apply_entry apply_policy_entry(u64 applied_lsn, u64 applied_slot, u64 lsn, u64 slot)
{
    if (lsn <= applied_lsn)
        return APPLY_ENTRY_SKIP;
    if (lsn != applied_lsn + 1 || slot < applied_slot)
        return APPLY_ENTRY_GAP;
    return APPLY_ENTRY_APPLY;
}

u64 apply_policy_recovery_limit(bool first_start, u64 durable_lsn, u64 published_applied_lsn, u64 base_lsn)
{
    u64 limit = first_start ? durable_lsn : published_applied_lsn;
    return limit > base_lsn ? limit : base_lsn;
}

bool apply_policy_retry_ready(u64 applied_lsn, u64 retry_lsn)
{
    return retry_lsn <= applied_lsn;
}

bool apply_policy_due_through(u64 slot, u64 *deadline_slot)
{
    /* The reservation's first slot had already begun when it was stamped: expiring at the start
     * of the deadline slot could cut up to one slot off the TTL in wall-clock time. */
    if (slot == 0)
        return false;
    *deadline_slot = slot - 1;
    return true;
}
