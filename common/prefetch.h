/*
 * common/prefetch.h — start loading a cache line the code will need shortly.
 *
 * Not __builtin_prefetch: GCC 12's IPA mod-ref pass treats it as a call without effects and
 * deletes it, and with it every function that only prefetches (sm.c's hints compiled to a bare
 * `ret` at -O2). An asm volatile statement cannot be deleted.
 */
#ifndef ADB_COMMON_PREFETCH_H
#define ADB_COMMON_PREFETCH_H

static inline void adb_prefetch(const void *p)
{
#if defined(__x86_64__) || defined(__i386__)
    __asm__ volatile("prefetcht0 %0" : : "m"(*(const char *)p));
#else
    __builtin_prefetch(p);
#endif
}

#endif
