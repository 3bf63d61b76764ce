/*
 * replica/applying.c — the applier's core over the state machine (replica/applying.h).
 */
#include "config.h"

#include "replica/applying.h"

#include "common/why.h"
#include "replica/apply_policy.h"
#include "wal/command.h"
#include "wal/frame.h"

void applying_init(struct applying *a, sm_t *sm, struct sm_due *due, u32 due_max)
{
    a->sm = sm;
    a->due = due;
    a->due_max = due_max;
}

enum applying_entry applying_frame(struct applying *a, const u8 *frame, u32 len, struct applying_result *out,
                                   char *why, size_t why_len)
{
    struct wal_frame f;
    struct sm_command cmd;
    if (wal_frame_decode_exact(frame, len, &f) != WAL_FRAME_OK) {
        why_set(why, why_len, "a frame of %u bytes fails its checks", len);
        return APPLYING_DAMAGED;
    }
    if (wal_cmd_decode(f.record_type, f.payload, f.payload_len, &cmd) != WAL_CMD_OK) {
        why_set(why, why_len, "the command of LSN %llu does not decode", (unsigned long long)f.lsn);
        return APPLYING_DAMAGED;
    }
    out->lsn = f.lsn;
    out->slot = f.request_slot;
    out->kind = (u8)cmd.kind;
    sm_t *sm = a->sm;
    switch (apply_policy_entry(sm->last_applied_lsn, sm->last_request_slot, f.lsn, f.request_slot)) {
    case APPLY_ENTRY_SKIP:
        return APPLYING_SKIPPED;
    case APPLY_ENTRY_GAP:
        why_set(why, why_len, "LSN %llu (slot %llu) does not follow the applied LSN %llu (slot %llu)",
                (unsigned long long)f.lsn, (unsigned long long)f.request_slot,
                (unsigned long long)sm->last_applied_lsn, (unsigned long long)sm->last_request_slot);
        return APPLYING_DAMAGED;
    case APPLY_ENTRY_APPLY:
        break;
    }
    out->outcome = sm_apply(sm, f.lsn, f.request_slot, &cmd);
    return APPLYING_APPLIED;
}

enum applying_retry applying_retry(const struct applying *a, const struct sm_command *cmd, u64 lsn,
                                   struct sm_outcome *out)
{
    if (!apply_policy_retry_ready(a->sm->last_applied_lsn, lsn))
        return APPLYING_RETRY_WAIT; /* its entry is durable and on its way through the shared log */
    return sm_get_operation(a->sm, cmd, out) ? APPLYING_RETRY_ANSWER : APPLYING_RETRY_RESUBMIT;
}

u32 applying_due(struct applying *a, u64 slot)
{
    u64 through;
    if (!apply_policy_due_through(slot, &through))
        return 0;
    return sm_due_expirations(a->sm, through, a->due, a->due_max);
}
