/*
 * common/table_memory.c — see table_memory.h.
 */
#include "common/table_memory.h"

#include <sys/mman.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14; older kernels refuse it and the loop below runs */
#endif

void table_memory_populate(void *p, u64 bytes)
{
    if (bytes == 0 || madvise(p, (size_t)bytes, MADV_POPULATE_WRITE) == 0)
        return;
    long page = sysconf(_SC_PAGESIZE);
    volatile char *c = p;
    for (u64 off = 0; off < bytes; off += (u64)(page > 0 ? page : 4096))
        c[off] = 0; /* zero already: the write only faults the page in */
}

void *table_memory_map(u64 bytes, bool populate)
{
    void *p = mmap(NULL, (size_t)bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    (void)madvise(p, (size_t)bytes, MADV_HUGEPAGE); /* advice only: fine if refused */
    if (populate)
        table_memory_populate(p, bytes);
    return p;
}

void table_memory_unmap(void *p, u64 bytes)
{
    if (p != NULL && bytes > 0)
        munmap(p, (size_t)bytes);
}
