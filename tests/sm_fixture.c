/*
 * tests/sm_fixture.c — see sm_fixture.h.
 */
#include "tests/sm_fixture.h"

#include <check.h>
#include <string.h>

struct sm_config fx_small_config(void)
{
    struct sm_config c;
    memset(&c, 0, sizeof(c));
    c.shard_id = 0;
    c.resource_capacity = 8;
    c.reservation_capacity = 8;
    c.operation_capacity = 16;
    c.expiration_capacity = 8;
    c.max_ttl_slots = 16;
    c.dedupe_window_slots = 10;
    c.history_window_slots = 5;
    return c;
}

void fx_init(struct fx *f, const struct sm_config *cfg)
{
    char why[200];
    memset(f, 0, sizeof(*f));
    ck_assert_msg(sm_create(&f->sm, cfg, why, sizeof(why)), "sm_create: %s", why);
    f->slot = 1;
    f->next_op = 1000;
    f->client = 7;
}

void fx_free(struct fx *f)
{
    sm_destroy(&f->sm);
}

struct sm_outcome fx_apply_op(struct fx *f, u128 op, struct sm_command c)
{
    if (c.kind != SM_CMD_EXPIRE) {
        c.operation_id = op;
        c.client_id = f->client;
    }
    return sm_apply(&f->sm, ++f->lsn, f->slot, &c);
}

struct sm_outcome fx_apply(struct fx *f, struct sm_command c)
{
    return fx_apply_op(f, c.kind == SM_CMD_EXPIRE ? 0 : ++f->next_op, c);
}

struct sm_command fx_create_cmd(u128 resource)
{
    struct sm_command c;
    memset(&c, 0, sizeof(c));
    c.kind = SM_CMD_CREATE_RESOURCE;
    c.resource_id = resource;
    return c;
}

struct sm_command fx_reserve_cmd(u128 resource, u128 holder, u64 ttl)
{
    struct sm_command c;
    memset(&c, 0, sizeof(c));
    c.kind = SM_CMD_RESERVE;
    c.resource_id = resource;
    c.holder_id = holder;
    c.ttl_slots = ttl;
    return c;
}

static struct sm_command holder_cmd(u8 kind, u128 reservation, u128 holder)
{
    struct sm_command c;
    memset(&c, 0, sizeof(c));
    c.kind = kind;
    c.reservation_id = reservation;
    c.holder_id = holder;
    return c;
}

struct sm_command fx_confirm_cmd(u128 reservation, u128 holder)
{
    return holder_cmd(SM_CMD_CONFIRM, reservation, holder);
}

struct sm_command fx_release_cmd(u128 reservation, u128 holder)
{
    return holder_cmd(SM_CMD_RELEASE, reservation, holder);
}

struct sm_command fx_expire_cmd(u128 reservation, u64 deadline)
{
    struct sm_command c;
    memset(&c, 0, sizeof(c));
    c.kind = SM_CMD_EXPIRE;
    c.reservation_id = reservation;
    c.deadline_slot = deadline;
    return c;
}

void fx_check(const struct fx *f)
{
    char why[200];
    ck_assert_msg(sm_check_invariants(&f->sm, why, sizeof(why)), "invariant: %s", why);
}
