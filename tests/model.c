/*
 * tests/model.c — see model.h. Straight from the spec (docs/state-machine.md, DESIGN.md §2).
 */
#include "tests/model.h"

#include <stdlib.h>
#include <string.h>

static bool add_overflows(u64 a, u64 b)
{
    return a > UINT64_MAX - b;
}

bool model_init(struct model *m, const struct sm_config *cfg)
{
    memset(m, 0, sizeof(*m));
    m->cfg = *cfg;
    m->resources = calloc(cfg->resource_capacity, sizeof(*m->resources));
    m->reservations = calloc(cfg->reservation_capacity, sizeof(*m->reservations));
    m->operations = calloc(cfg->operation_capacity, sizeof(*m->operations));
    if (m->resources == NULL || m->reservations == NULL || m->operations == NULL) {
        model_free(m);
        return false;
    }
    return true;
}

void model_free(struct model *m)
{
    free(m->resources);
    free(m->reservations);
    free(m->operations);
    memset(m, 0, sizeof(*m));
}

/* ---- lookups (linear) ------------------------------------------------------------------- */

static struct model_resource *find_resource(const struct model *m, u128 resource_id)
{
    for (u32 i = 0; i < m->resource_count; i++)
        if (m->resources[i].resource_id == resource_id)
            return &m->resources[i];
    return NULL;
}

static struct model_reservation *find_reservation_in_table(const struct model *m, u128 reservation_id)
{
    for (u32 i = 0; i < m->reservation_count; i++)
        if (m->reservations[i].reservation_id == reservation_id)
            return &m->reservations[i];
    return NULL;
}

static struct model_operation *find_operation(const struct model *m, u128 operation_id)
{
    for (u32 i = 0; i < m->operation_count; i++)
        if (m->operations[i].command.operation_id == operation_id)
            return &m->operations[i];
    return NULL;
}

enum lookup { LOOKUP_FOUND, LOOKUP_NOT_FOUND, LOOKUP_RETIRED };

/* The one reservation lookup (docs/state-machine.md "Reservation lookup"). */
static enum lookup lookup_reservation(const struct model *m, u128 reservation_id,
                                      struct model_reservation **out)
{
    *out = NULL;
    if (U128_HI(reservation_id) != m->cfg.shard_id || U128_LO(reservation_id) == 0)
        return LOOKUP_NOT_FOUND;
    *out = find_reservation_in_table(m, reservation_id);
    if (*out != NULL)
        return LOOKUP_FOUND;
    if (U128_LO(reservation_id) <= m->retired_watermark_lsn)
        return LOOKUP_RETIRED;
    return LOOKUP_NOT_FOUND;
}

static u32 count_reserved(const struct model *m)
{
    u32 n = 0;
    for (u32 i = 0; i < m->reservation_count; i++)
        if (m->reservations[i].state == SM_RESERVATION_RESERVED)
            n++;
    return n;
}

static bool is_terminal(const struct model_reservation *r)
{
    return r->state == SM_RESERVATION_RELEASED || r->state == SM_RESERVATION_EXPIRED;
}

/* Same payload: kind, client_id and the fields of that kind, compared exactly. */
static bool same_payload(const struct sm_command *a, const struct sm_command *b)
{
    if (a->kind != b->kind || a->client_id != b->client_id)
        return false;
    switch (a->kind) {
    case SM_CMD_CREATE_RESOURCE:
        return a->resource_id == b->resource_id;
    case SM_CMD_RESERVE:
        return a->resource_id == b->resource_id && a->holder_id == b->holder_id &&
               a->ttl_slots == b->ttl_slots;
    case SM_CMD_CONFIRM:
    case SM_CMD_RELEASE:
        return a->reservation_id == b->reservation_id && a->holder_id == b->holder_id;
    default:
        return false;
    }
}

/* ---- apply ------------------------------------------------------------------------------ */

/* Step 2: drop terminal reservations and operation records with retire_after_slot < slot. */
static void retire(struct model *m, u64 slot)
{
    for (u32 i = 0; i < m->reservation_count;) {
        struct model_reservation *r = &m->reservations[i];
        if (is_terminal(r) && r->retire_after_slot < slot) {
            u64 lsn = U128_LO(r->reservation_id);
            if (lsn > m->retired_watermark_lsn)
                m->retired_watermark_lsn = lsn;
            m->reservations[i] = m->reservations[--m->reservation_count];
        } else {
            i++;
        }
    }
    for (u32 i = 0; i < m->operation_count;) {
        if (m->operations[i].retire_after_slot < slot)
            m->operations[i] = m->operations[--m->operation_count];
        else
            i++;
    }
}

/*
 * Each command returns its result code and, through `target`, the reservation it names
 * (ok/noop only): new for reserve, the target for the others, none for create_resource.
 */
static enum sm_result do_create(struct model *m, const struct sm_command *c)
{
    if (find_resource(m, c->resource_id) != NULL)
        return SM_ALREADY_EXISTS;
    if (m->resource_count == m->cfg.resource_capacity)
        return SM_RESOURCE_TABLE_FULL;
    struct model_resource *r = &m->resources[m->resource_count++];
    memset(r, 0, sizeof(*r));
    r->resource_id = c->resource_id;
    r->state = SM_RESOURCE_AVAILABLE;
    return SM_OK;
}

static enum sm_result do_reserve(struct model *m, u64 lsn, u64 slot, const struct sm_command *c,
                                 const struct model_reservation **target)
{
    if (c->ttl_slots < 1 || c->ttl_slots > m->cfg.max_ttl_slots)
        return SM_TTL_OUT_OF_RANGE;
    struct model_resource *res = find_resource(m, c->resource_id);
    if (res == NULL)
        return SM_RESOURCE_NOT_FOUND;
    if (res->state != SM_RESOURCE_AVAILABLE)
        return SM_RESOURCE_BUSY;
    if (m->reservation_count == m->cfg.reservation_capacity)
        return SM_RESERVATION_TABLE_FULL;
    if (add_overflows(slot, c->ttl_slots))
        return SM_SLOT_OVERFLOW;
    if (count_reserved(m) == m->cfg.expiration_capacity)
        return SM_EXPIRATION_INDEX_FULL;
    struct model_reservation *r = &m->reservations[m->reservation_count++];
    memset(r, 0, sizeof(*r));
    r->reservation_id = U128_MAKE(m->cfg.shard_id, lsn);
    r->resource_id = c->resource_id;
    r->holder_id = c->holder_id;
    r->created_lsn = lsn;
    r->deadline_slot = slot + c->ttl_slots;
    r->state = SM_RESERVATION_RESERVED;
    res->state = SM_RESOURCE_RESERVED;
    res->current_reservation_id = r->reservation_id;
    res->version++;
    *target = r;
    return SM_OK;
}

/* Confirm and release share the checks; `release` selects the transition. */
/* Released or expired: the reservation becomes terminal and keeps its history; the resource is free. */
static void end_reservation(const struct model *m, struct model_reservation *r, struct model_resource *res,
                            u8 state, u64 lsn, u64 slot)
{
    r->state = state;
    r->released_lsn = lsn;
    r->retire_after_slot = slot + m->cfg.history_window_slots;
    res->state = SM_RESOURCE_AVAILABLE;
    res->current_reservation_id = 0;
    res->version++;
}

static enum sm_result do_confirm_release(struct model *m, u64 lsn, u64 slot,
                                         const struct sm_command *c, bool release,
                                         const struct model_reservation **target)
{
    struct model_reservation *r;
    switch (lookup_reservation(m, c->reservation_id, &r)) {
    case LOOKUP_RETIRED:
        return SM_RESERVATION_RETIRED;
    case LOOKUP_NOT_FOUND:
        return SM_RESERVATION_NOT_FOUND;
    case LOOKUP_FOUND:
        break;
    }
    if (r->holder_id != c->holder_id)
        return SM_HOLDER_MISMATCH;
    struct model_resource *res = find_resource(m, r->resource_id);
    if (!release) {
        if (r->state != SM_RESERVATION_RESERVED)
            return SM_INVALID_STATE;
        r->state = SM_RESERVATION_CONFIRMED;
        res->state = SM_RESOURCE_CONFIRMED;
        res->version++;
    } else {
        if (r->state != SM_RESERVATION_RESERVED && r->state != SM_RESERVATION_CONFIRMED)
            return SM_INVALID_STATE;
        end_reservation(m, r, res, SM_RESERVATION_RELEASED, lsn, slot);
    }
    *target = r;
    return SM_OK;
}

static enum sm_result do_expire(struct model *m, u64 lsn, u64 slot, const struct sm_command *c,
                                const struct model_reservation **target)
{
    struct model_reservation *r;
    if (lookup_reservation(m, c->reservation_id, &r) != LOOKUP_FOUND)
        return SM_RESERVATION_NOT_FOUND;
    if (r->state != SM_RESERVATION_RESERVED || r->deadline_slot != c->deadline_slot ||
        slot < r->deadline_slot) {
        *target = r;
        return SM_NOOP;
    }
    end_reservation(m, r, find_resource(m, r->resource_id), SM_RESERVATION_EXPIRED, lsn, slot);
    *target = r;
    return SM_OK;
}

struct sm_outcome model_apply(struct model *m, u64 lsn, u64 request_slot, const struct sm_command *cmd)
{
    struct sm_outcome o;
    memset(&o, 0, sizeof(o));
    o.applied_lsn = lsn;
    m->last_applied_lsn = lsn;
    m->last_request_slot = request_slot;

    /* 1. Slot validation: nothing else changes, nothing is recorded. */
    if (add_overflows(request_slot, m->cfg.dedupe_window_slots) ||
        add_overflows(request_slot, m->cfg.history_window_slots)) {
        o.result = SM_SLOT_OVERFLOW;
        return o;
    }
    /* 2. Retirement. */
    retire(m, request_slot);

    bool client = cmd->kind != SM_CMD_EXPIRE;
    if (client) {
        /* 3. Dedupe. */
        const struct model_operation *op = find_operation(m, cmd->operation_id);
        if (op != NULL) {
            if (!same_payload(&op->command, cmd)) {
                o.result = SM_OPERATION_CONFLICT;
                return o;
            }
            o.result = op->result;
            o.reservation_id = op->result_reservation_id;
            o.deadline_slot = op->result_deadline_slot;
            o.applied_lsn = op->applied_lsn;
            o.from_retry_cache = true;
            return o;
        }
        /* 4. Room for the new record. */
        if (m->operation_count == m->cfg.operation_capacity) {
            o.result = SM_OPERATION_TABLE_FULL;
            return o;
        }
    }

    /* 5. The command. Failures carry no reservation id or deadline. */
    const struct model_reservation *target = NULL;
    enum sm_result r;
    switch (cmd->kind) {
    case SM_CMD_CREATE_RESOURCE:
        r = do_create(m, cmd);
        break;
    case SM_CMD_RESERVE:
        r = do_reserve(m, lsn, request_slot, cmd, &target);
        break;
    case SM_CMD_CONFIRM:
        r = do_confirm_release(m, lsn, request_slot, cmd, false, &target);
        break;
    case SM_CMD_RELEASE:
        r = do_confirm_release(m, lsn, request_slot, cmd, true, &target);
        break;
    case SM_CMD_EXPIRE:
        r = do_expire(m, lsn, request_slot, cmd, &target);
        break;
    default:
        abort(); /* the test never generates other kinds */
    }
    o.result = (u8)r;
    if ((r == SM_OK || r == SM_NOOP) && target != NULL) {
        o.reservation_id = target->reservation_id;
        o.deadline_slot = target->deadline_slot;
    }

    /* 6. Record the result. */
    if (client) {
        struct model_operation *op = &m->operations[m->operation_count++];
        memset(op, 0, sizeof(*op));
        op->command = *cmd;
        op->result = o.result;
        op->result_reservation_id = o.reservation_id;
        op->result_deadline_slot = o.deadline_slot;
        op->applied_lsn = lsn;
        op->retire_after_slot = request_slot + m->cfg.dedupe_window_slots;
    }
    return o;
}

/* ---- reads and queries ------------------------------------------------------------------ */

enum sm_read model_get_resource(const struct model *m, u128 resource_id, u64 min_lsn,
                                struct sm_resource_view *out)
{
    if (min_lsn > m->last_applied_lsn)
        return SM_READ_FENCE_NOT_APPLIED;
    const struct model_resource *r = find_resource(m, resource_id);
    if (r == NULL)
        return SM_READ_NOT_FOUND;
    memset(out, 0, sizeof(*out));
    out->resource_id = r->resource_id;
    out->current_reservation_id = r->current_reservation_id;
    out->version = r->version;
    out->state = r->state;
    return SM_READ_FOUND;
}

enum sm_read model_get_reservation(const struct model *m, u128 reservation_id, u64 min_lsn,
                                   struct sm_reservation_view *out)
{
    if (min_lsn > m->last_applied_lsn)
        return SM_READ_FENCE_NOT_APPLIED;
    struct model_reservation *r;
    switch (lookup_reservation(m, reservation_id, &r)) {
    case LOOKUP_RETIRED:
        return SM_READ_RETIRED;
    case LOOKUP_NOT_FOUND:
        return SM_READ_NOT_FOUND;
    case LOOKUP_FOUND:
        break;
    }
    memset(out, 0, sizeof(*out));
    out->reservation_id = r->reservation_id;
    out->resource_id = r->resource_id;
    out->holder_id = r->holder_id;
    out->created_lsn = r->created_lsn;
    out->deadline_slot = r->deadline_slot;
    out->released_lsn = r->released_lsn;
    out->retire_after_slot = r->retire_after_slot;
    out->state = r->state;
    return SM_READ_FOUND;
}

static int due_cmp(const void *a, const void *b)
{
    const struct sm_due *x = a, *y = b;
    if (x->deadline_slot != y->deadline_slot)
        return x->deadline_slot < y->deadline_slot ? -1 : 1;
    if (x->reservation_id != y->reservation_id)
        return x->reservation_id < y->reservation_id ? -1 : 1;
    return 0;
}

u32 model_due_expirations(const struct model *m, u64 slot, struct sm_due *out, u32 max)
{
    struct sm_due *all = calloc(m->reservation_count + 1, sizeof(*all));
    if (all == NULL)
        abort();
    u32 n = 0;
    for (u32 i = 0; i < m->reservation_count; i++) {
        const struct model_reservation *r = &m->reservations[i];
        if (r->state == SM_RESERVATION_RESERVED && r->deadline_slot <= slot) {
            all[n].reservation_id = r->reservation_id;
            all[n].deadline_slot = r->deadline_slot;
            n++;
        }
    }
    qsort(all, n, sizeof(*all), due_cmp);
    if (n > max)
        n = max;
    if (n > 0)
        memcpy(out, all, n * sizeof(*all));
    free(all);
    return n;
}

u32 model_expirations_used(const struct model *m)
{
    return count_reserved(m);
}

u64 model_expiration_backlog(const struct model *m, u64 slot)
{
    u64 n = 0;
    for (u32 i = 0; i < m->reservation_count; i++)
        if (m->reservations[i].state == SM_RESERVATION_RESERVED && m->reservations[i].deadline_slot <= slot)
            n++;
    return n;
}
