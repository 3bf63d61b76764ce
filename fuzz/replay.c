/*
 * fuzz/replay.c — runs a fuzz target on saved inputs, without libFuzzer; TAP on stdout.
 *
 * Linked with one fuzz/fuzz_<name>.c as fuzz/replay_<name>. Usage:
 *
 *   fuzz/replay_<name> [PATH...]
 *
 * Each PATH is a file or a directory (its regular files, recursively, in name order). Every file
 * is read into a buffer of exactly its size (so sanitizers catch a read past the end) and
 * passed to LLVMFuzzerTestOneInput; each prints "ok N - path". A target that finds a broken
 * property aborts, which the test driver reports. With no PATH the seed corpus is used:
 * $top_srcdir/fuzz/corpus/<name>, <name> taken from the program name (top_srcdir defaults to
 * "."; `make check` exports it). An empty or missing corpus is a failure.
 */
#include "config.h"

#include "common/types.h"
#include "fuzz/fuzz.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define REPLAY_MAX_INPUT (16u << 20) /* far above libFuzzer's -max_len; a sanity bound */

struct path_list {
    char **paths;
    size_t count, cap;
    int errors; /* paths that could not be listed */
};

static void list_push(struct path_list *l, const char *path)
{
    if (l->count == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->paths = realloc(l->paths, l->cap * sizeof(*l->paths));
        if (l->paths == NULL) {
            perror("replay");
            exit(EXIT_FAILURE);
        }
    }
    l->paths[l->count] = strdup(path);
    if (l->paths[l->count] == NULL) {
        perror("replay");
        exit(EXIT_FAILURE);
    }
    l->count++;
}

static void collect(struct path_list *l, const char *path);

static void collect_dir(struct path_list *l, const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        printf("# %s: %s\n", dir, strerror(errno));
        l->errors++;
        return;
    }
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.') /* ., .. and hidden files */
            continue;
        char child[PATH_MAX];
        if (snprintf(child, sizeof(child), "%s/%s", dir, e->d_name) >= (int)sizeof(child)) {
            printf("# %s/%s: path too long\n", dir, e->d_name);
            l->errors++;
            continue;
        }
        collect(l, child);
    }
    closedir(d);
}

static void collect(struct path_list *l, const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        printf("# %s: %s\n", path, strerror(errno));
        l->errors++;
    } else if (S_ISDIR(st.st_mode)) {
        collect_dir(l, path);
    } else if (S_ISREG(st.st_mode)) {
        list_push(l, path);
    }
}

static int compare_paths(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Reads the whole file into a malloc'd buffer of exactly its size; false on error. */
static bool read_file(const char *path, u8 **data, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return false;
    struct stat st;
    bool ok = fstat(fileno(f), &st) == 0 && st.st_size >= 0 && st.st_size <= REPLAY_MAX_INPUT;
    *size = ok ? (size_t)st.st_size : 0;
    *data = ok ? malloc(*size ? *size : 1) : NULL;
    ok = ok && *data != NULL && fread(*data, 1, *size, f) == *size;
    fclose(f);
    if (!ok) {
        free(*data);
        *data = NULL;
    }
    return ok;
}

/* One input: runs the target on it and prints its TAP line; false if it could not be read. */
static bool replay_one(size_t n, const char *path)
{
    u8 *data;
    size_t size;
    if (!read_file(path, &data, &size)) {
        printf("not ok %zu - %s: cannot read\n", n, path);
        return false;
    }
    printf("# %s (%zu bytes)\n", path, size);
    fflush(stdout); /* if the target crashes, the log shows which input it was */
    int rc = LLVMFuzzerTestOneInput(data, size);
    free(data);
    if (rc != 0) {
        printf("not ok %zu - %s: target returned %d\n", n, path, rc);
        return false;
    }
    printf("ok %zu - %s\n", n, path);
    return true;
}

/* The default corpus, from the program name: replay_<name> -> $top_srcdir/fuzz/corpus/<name>. */
static bool default_corpus(const char *argv0, char *out, size_t cap)
{
    const char *base = strrchr(argv0, '/');
    base = base ? base + 1 : argv0;
    if (strncmp(base, "lt-", 3) == 0) /* a libtool wrapper's real program */
        base += 3;
    if (strncmp(base, "replay_", 7) != 0 || base[7] == '\0')
        return false;
    const char *top = getenv("top_srcdir");
    int n = snprintf(out, cap, "%s/fuzz/corpus/%s", top && *top ? top : ".", base + 7);
    return n > 0 && (size_t)n < cap;
}

int main(int argc, char **argv)
{
    struct path_list l = {0};
    char corpus[PATH_MAX];
    if (argc > 1) {
        for (int i = 1; i < argc; i++)
            collect(&l, argv[i]);
    } else if (default_corpus(argv[0], corpus, sizeof(corpus))) {
        collect(&l, corpus);
    } else {
        fprintf(stderr, "usage: replay_<name> [FILE|DIR]...\n");
        return EXIT_FAILURE;
    }
    if (l.count != 0)
        qsort(l.paths, l.count, sizeof(*l.paths), compare_paths);

    size_t failed = 0;
    printf("1..%zu\n", l.count + (l.errors || l.count == 0 ? 1 : 0));
    for (size_t i = 0; i < l.count; i++) {
        failed += !replay_one(i + 1, l.paths[i]);
        free(l.paths[i]);
    }
    if (l.errors || l.count == 0) {
        printf("not ok %zu - inputs: %d path(s) unreadable, %zu file(s) found\n", l.count + 1,
               l.errors, l.count);
        failed++;
    }
    free(l.paths);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
