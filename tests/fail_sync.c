/*
 * tests/fail_sync.c — an LD_PRELOAD shim for tests: fsync and fdatasync of one file fail with
 * EIO while a trigger file exists. The daemon's storage-failure paths are exercised on the real
 * binary without touching the machine's disks (tests/daemon_faults.sh).
 *
 *   ALLOCDB_FAIL_SYNC_PATH     the failing file: any path ending with this ("/meta/data.mdb")
 *   ALLOCDB_FAIL_SYNC_TRIGGER  a path; the syncs fail only while it exists
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static bool armed(int fd)
{
    const char *suffix = getenv("ALLOCDB_FAIL_SYNC_PATH"), *trigger = getenv("ALLOCDB_FAIL_SYNC_TRIGGER");
    if (suffix == NULL || trigger == NULL || access(trigger, F_OK) != 0)
        return false;
    char link[64], path[4096];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof(path) - 1);
    if (n < 0)
        return false;
    path[n] = 0;
    size_t a = strlen(path), b = strlen(suffix);
    return a >= b && strcmp(path + a - b, suffix) == 0;
}

int fdatasync(int fd)
{
    static int (*real)(int);
    if (armed(fd)) {
        errno = EIO;
        return -1;
    }
    if (real == NULL)
        real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    return real(fd);
}

int fsync(int fd)
{
    static int (*real)(int);
    if (armed(fd)) {
        errno = EIO;
        return -1;
    }
    if (real == NULL)
        real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    return real(fd);
}
