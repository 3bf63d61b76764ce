/*
 * wal/slot_clock.h — where request slots come from: logical time that never runs ahead of real
 * elapsed time, whatever the wall clock does (DESIGN.md §3).
 *
 * The node keeps one timeline of logical milliseconds. Within a boot of the machine it advances
 * exactly with CLOCK_BOOTTIME (monotonic, counts suspend, immune to NTP steps and to anyone
 * setting the date); the slot of an entry is logical_ms / slot_duration_ms, never below the last
 * logged slot. The wall clock is read only to learn how long the node was down across a reboot,
 * and then only moves the timeline forward from the last point recorded.
 *
 * A point of the timeline (an anchor) is recorded in the replica metadata when a node starts and
 * about once a second after: logical ms, and the wall clock, the boot clock and the boot id at
 * that moment. A start decides where the timeline resumes, by the first row that applies:
 *
 *   what is known at start                    logical now                          basis
 *   ----------------------------------------  -----------------------------------  -------
 *   an anchor from this boot (same boot_id,    anchor.logical + (boot - anchor.boot)  boot
 *     boot clock not behind it)                  (exact: a worker or daemon restart,
 *                                                  however the wall clock moved)
 *   an anchor from an earlier boot             anchor.logical + max(0, wall -         wall
 *                                                anchor.wall) (the downtime, as well as
 *                                                the wall clock can tell; never back)
 *   no anchor (a fresh data directory)         wall (slots start near Unix time)      initial
 *
 * and in every row at least the start of the last logged slot, so slots never go backwards.
 * The residual risk is named, not hidden: across a reboot the wall clock is all a single node
 * has, so a wall clock that was wrong before the reboot and corrected after it shortens the
 * downtime's contribution or lengthens it by that error. In a cluster, cluster time bounds it.
 *
 * Pure: the caller reads the clocks and passes their values; no I/O, no globals.
 */
#ifndef ADB_WAL_SLOT_CLOCK_H
#define ADB_WAL_SLOT_CLOCK_H

#include "common/types.h"

/* A point of the timeline and the clocks' readings at that moment. */
struct clock_anchor {
    u64 logical_ms;
    u64 wall_ms;  /* CLOCK_REALTIME */
    u64 boot_ms;  /* CLOCK_BOOTTIME */
    u128 boot_id; /* which boot boot_ms belongs to (0: unknown) */
};

/* The clocks' readings now (what a shell passes in; logical_ms is not read). */
struct clock_reading {
    u64 wall_ms;
    u64 boot_ms;
    u128 boot_id;
};

enum slot_clock_basis {
    SLOT_CLOCK_INITIAL = 0, /* no anchor: started from the wall clock */
    SLOT_CLOCK_BOOT = 1,    /* continued exactly from an anchor of this boot */
    SLOT_CLOCK_WALL = 2,    /* continued across a reboot by the wall clock's downtime */
};

const char *slot_clock_basis_name(enum slot_clock_basis b);

struct slot_clock {
    u64 slot_ms;
    u64 logical0_ms; /* logical time at boot0_ms */
    u64 boot0_ms;
    u128 boot_id;
    u64 floor_slot;  /* never answer below this (the last logged slot) */
    enum slot_clock_basis basis;
};

/*
 * Decides where the timeline resumes (the table above). saved may be NULL (no anchor);
 * last_slot is the slot of the last logged entry (0 if none).
 */
void slot_clock_start(struct slot_clock *c, u64 slot_ms, u64 last_slot, const struct clock_anchor *saved,
                      const struct clock_reading *now);

/* Continues a timeline another process of this boot already decided (a restarted worker). */
void slot_clock_join(struct slot_clock *c, u64 slot_ms, u64 logical0_ms, u64 boot0_ms, u64 last_slot);

/* Logical ms at boot clock reading boot_ms (a boot clock behind boot0 counts as boot0). */
u64 slot_clock_logical_ms(const struct slot_clock *c, u64 boot_ms);

/* The slot now: never below the floor, never ahead of real elapsed time. */
u64 slot_clock_slot(const struct slot_clock *c, u64 boot_ms);

/* Raises the floor (a slot was logged). */
void slot_clock_note_slot(struct slot_clock *c, u64 slot);

/* Milliseconds from boot_ms until the next slot begins (>= 1). */
u64 slot_clock_ms_to_next(const struct slot_clock *c, u64 boot_ms);

/* The point of the timeline now, to record. */
struct clock_anchor slot_clock_anchor(const struct slot_clock *c, const struct clock_reading *now);

#endif
