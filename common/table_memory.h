/*
 * common/table_memory.h — one anonymous mapping for a large table sized at start-up.
 *
 * The big tables (state machine, retry cache) are read and written at random over gigabytes,
 * so they ask for transparent huge pages (fewer TLB misses, one fault per 2 MB). With
 * `populate`, every page is faulted in before the mapping is returned: the memory the config
 * asks for is then really held from start-up (no first-touch faults slowing the first window of
 * traffic, no overcommit surprise an hour later) at the cost of the time to zero it once.
 */
#ifndef ADB_COMMON_TABLE_MEMORY_H
#define ADB_COMMON_TABLE_MEMORY_H

#include "common/types.h"

/* Zeroed, page-aligned memory of `bytes`, or NULL (errno set). */
void *table_memory_map(u64 bytes, bool populate);
/* Faults in every page of [p, p + bytes) for writing (advice: errors are ignored). */
void table_memory_populate(void *p, u64 bytes);
void table_memory_unmap(void *p, u64 bytes);

#endif
