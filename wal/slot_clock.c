/*
 * wal/slot_clock.c — logical time for request slots (see slot_clock.h for the rules).
 */
#include "config.h"

#include "wal/slot_clock.h"

#include "common/assert.h"

const char *slot_clock_basis_name(enum slot_clock_basis b)
{
    switch (b) {
    case SLOT_CLOCK_INITIAL: return "initial";
    case SLOT_CLOCK_BOOT: return "boot";
    case SLOT_CLOCK_WALL: return "wall";
    }
    return "unknown";
}

static u64 sat_add(u64 a, u64 b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static u64 slot_start_ms(u64 slot, u64 slot_ms)
{
    return slot > UINT64_MAX / slot_ms ? UINT64_MAX : slot * slot_ms;
}

void slot_clock_start(struct slot_clock *c, u64 slot_ms, u64 last_slot, const struct clock_anchor *saved,
                      const struct clock_reading *now)
{
    ADB_ASSERT(slot_ms > 0);
    u64 logical;
    enum slot_clock_basis basis;
    if (saved == NULL) {
        logical = now->wall_ms;
        basis = SLOT_CLOCK_INITIAL;
    } else if (saved->boot_id != 0 && saved->boot_id == now->boot_id && now->boot_ms >= saved->boot_ms) {
        /* The same boot: the boot clock measured the gap exactly. */
        logical = sat_add(saved->logical_ms, now->boot_ms - saved->boot_ms);
        basis = SLOT_CLOCK_BOOT;
    } else {
        /* Another boot: the wall clock is all there is, and it only ever moves time forward. */
        logical = sat_add(saved->logical_ms, now->wall_ms > saved->wall_ms ? now->wall_ms - saved->wall_ms : 0);
        basis = SLOT_CLOCK_WALL;
    }
    u64 floor_ms = slot_start_ms(last_slot, slot_ms);
    if (logical < floor_ms)
        logical = floor_ms; /* the log already reached that slot: never go back from it */
    *c = (struct slot_clock){ .slot_ms = slot_ms, .logical0_ms = logical, .boot0_ms = now->boot_ms,
                              .boot_id = now->boot_id, .floor_slot = last_slot, .basis = basis };
}

void slot_clock_join(struct slot_clock *c, u64 slot_ms, u64 logical0_ms, u64 boot0_ms, u64 last_slot)
{
    ADB_ASSERT(slot_ms > 0);
    *c = (struct slot_clock){ .slot_ms = slot_ms, .logical0_ms = logical0_ms, .boot0_ms = boot0_ms,
                              .floor_slot = last_slot, .basis = SLOT_CLOCK_BOOT };
}

u64 slot_clock_logical_ms(const struct slot_clock *c, u64 boot_ms)
{
    return sat_add(c->logical0_ms, boot_ms > c->boot0_ms ? boot_ms - c->boot0_ms : 0);
}

u64 slot_clock_slot(const struct slot_clock *c, u64 boot_ms)
{
    u64 s = slot_clock_logical_ms(c, boot_ms) / c->slot_ms;
    return s > c->floor_slot ? s : c->floor_slot;
}

void slot_clock_note_slot(struct slot_clock *c, u64 slot)
{
    if (slot > c->floor_slot)
        c->floor_slot = slot;
}

u64 slot_clock_ms_to_next(const struct slot_clock *c, u64 boot_ms)
{
    return c->slot_ms - slot_clock_logical_ms(c, boot_ms) % c->slot_ms;
}

struct clock_anchor slot_clock_anchor(const struct slot_clock *c, const struct clock_reading *now)
{
    return (struct clock_anchor){ .logical_ms = slot_clock_logical_ms(c, now->boot_ms), .wall_ms = now->wall_ms,
                                  .boot_ms = now->boot_ms, .boot_id = now->boot_id };
}
