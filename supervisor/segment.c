/*
 * supervisor/segment.c — sizing, building and stamping the shared segment (segment.h).
 */

#include "supervisor/segment.h"

#include "common/assert.h"
#include "common/why.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

const char *worker_role_name(enum worker_role r)
{
    switch (r) {
    case ROLE_SEQUENCER: return "sequencer";
    case ROLE_APPLIER: return "applier";
    case ROLE_INGRESS: return "ingress";
    case ROLE_PEER: return "peer";
    }
    return "unknown";
}

const char *worker_state_name(enum worker_state s)
{
    switch (s) {
    case WORKER_EMPTY: return "empty";
    case WORKER_STARTING: return "starting";
    case WORKER_READY: return "ready";
    case WORKER_STOPPING: return "stopping";
    case WORKER_EXITED: return "exited";
    }
    return "unknown";
}

void seg_histogram_add(struct seg_histogram *h, u64 v)
{
    u32 b = v == 0 ? 0 : 64 - (u32)__builtin_clzll(v);
    if (b >= HIST_BUCKETS)
        b = HIST_BUCKETS - 1;
    /* One writer: relaxed read-modify-write without a locked instruction. */
    atomic_store_explicit(&h->bucket[b], atomic_load_explicit(&h->bucket[b], memory_order_relaxed) + 1,
                          memory_order_relaxed);
    atomic_store_explicit(&h->count, atomic_load_explicit(&h->count, memory_order_relaxed) + 1, memory_order_relaxed);
    atomic_store_explicit(&h->sum, atomic_load_explicit(&h->sum, memory_order_relaxed) + v, memory_order_relaxed);
    if (v > atomic_load_explicit(&h->max, memory_order_relaxed))
        atomic_store_explicit(&h->max, v, memory_order_relaxed);
}

u64 segment_layout_signature(void)
{
    /* Struct sizes and the cache line: a build that disagrees on any of them must not attach. */
    const u64 parts[] = { ADB_CACHE_LINE,
                          sizeof(struct segment_header),
                          sizeof(struct worker_slot),
                          sizeof(struct seg_sequencer),
                          sizeof(struct seg_applier),
                          sizeof(struct seg_ingress),
                          sizeof(struct seg_replica),
                          sizeof(struct seg_peer),
                          sizeof(struct msg_peer),
                          sizeof(struct doorbell),
                          sizeof(struct msg_write),
                          sizeof(struct msg_read),
                          sizeof(struct msg_retry),
                          sizeof(struct msg_expire),
                          sizeof(struct msg_result),
                          sizeof(struct shlog_entry),
                          ROLE_COUNT };
    u64 h = 0xcbf29ce484222325ull; /* FNV-1a over the words */
    for (size_t i = 0; i < ADB_ARRAY_LEN(parts); i++) {
        h ^= parts[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static u64 align_line(u64 n)
{
    return (n + ADB_CACHE_LINE - 1) & ~(u64)(ADB_CACHE_LINE - 1);
}

static u32 slot_of(size_t n)
{
    return (u32)((n + 7) & ~(size_t)7);
}

static u32 expire_capacity(const struct config *cfg)
{
    u32 c = 1024;
    while (c < 2 * cfg->max_expirations_per_tick && c < (1u << 24))
        c <<= 1;
    return c;
}

/* The peer rings: room for bursts of a cluster's messages; a single node has none to move. */
static u32 peer_ring_capacity(const struct config *cfg)
{
    char addrs[CONFIG_REPLICAS_MAX][CONFIG_ADDR_MAX];
    return config_replicas(cfg, addrs, CONFIG_REPLICAS_MAX) > 1 ? 2048 : 2; /* 8 KiB slots: 16 MiB */
}

static bool add(u64 *total, u64 part)
{
    if (part == 0 || *total > UINT64_MAX - part)
        return false;
    *total += part;
    return true;
}

bool segment_layout(const struct config *cfg, struct segment_layout *o, char *why, size_t why_len)
{
    memset(o, 0, sizeof(*o));
    o->header = align_line(sizeof(struct segment_header));
    o->workers = align_line(ROLE_COUNT * sizeof(struct worker_slot));
    o->counters = align_line(sizeof(struct seg_sequencer)) + align_line(sizeof(struct seg_applier)) +
                  align_line(sizeof(struct seg_ingress)) + align_line(sizeof(struct seg_replica)) +
                  align_line(sizeof(struct seg_peer));
    o->doorbells = 4 * ADB_CACHE_LINE;
    u32 rc = cfg->ring_capacity;
    o->write = ring_size(rc, slot_of(sizeof(struct msg_write)));
    o->read = ring_size(rc, slot_of(sizeof(struct msg_read)));
    o->retry = ring_size(rc, slot_of(sizeof(struct msg_retry)));
    o->expire = ring_size(expire_capacity(cfg), slot_of(sizeof(struct msg_expire)));
    o->result = ring_size(rc, slot_of(sizeof(struct msg_result)));
    o->reject = ring_size(rc, slot_of(sizeof(struct msg_result)));
    o->shlog = ring_size(cfg->shared_log_capacity, slot_of(sizeof(struct shlog_entry)));
    o->peer_in = ring_size(peer_ring_capacity(cfg), slot_of(sizeof(struct msg_peer)));
    o->peer_out = o->peer_in;
    u64 parts[] = { o->header, o->workers, o->counters, o->doorbells, o->write, o->read,
                    o->retry, o->expire, o->result, o->reject, o->shlog, o->peer_in, o->peer_out };
    u64 total = 0;
    for (size_t i = 0; i < ADB_ARRAY_LEN(parts); i++) {
        if (!add(&total, align_line(parts[i]))) {
            why_set(why, why_len, "shared segment: ring_capacity %u or shared_log_capacity %u gives an invalid size",
                    cfg->ring_capacity, cfg->shared_log_capacity);
            return false;
        }
    }
    o->total = total;
    return true;
}

u64 mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (u64)ts.tv_sec * 1000 + (u64)ts.tv_nsec / 1000000;
}

u64 wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (u64)ts.tv_sec * 1000 + (u64)ts.tv_nsec / 1000000;
}

u64 boot_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_BOOTTIME, &ts);
    return (u64)ts.tv_sec * 1000 + (u64)ts.tv_nsec / 1000000;
}

u128 boot_id(void)
{
    /* "8-4-4-4-12" hex; 0 (unknown) if unreadable, which only costs the exact same-boot rule. */
    char buf[64] = "";
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");
    if (f == NULL)
        return 0;
    bool ok = fgets(buf, sizeof(buf), f) != NULL;
    fclose(f);
    u128 v = 0;
    int digits = 0;
    for (const char *p = buf; ok && *p != 0 && *p != '\n'; p++) {
        if (*p == '-')
            continue;
        int d = (*p >= '0' && *p <= '9') ? *p - '0' : (*p >= 'a' && *p <= 'f') ? *p - 'a' + 10 : -1;
        if (d < 0 || digits == 32)
            return 0;
        v = (v << 4) | (u128)d;
        digits++;
    }
    return digits == 32 ? v : 0;
}

struct clock_reading clock_read(void)
{
    static u128 id; /* the boot id does not change while the process lives */
    if (id == 0)
        id = boot_id();
    return (struct clock_reading){ .wall_ms = wall_ms(), .boot_ms = boot_ms(), .boot_id = id };
}

int segment_create(struct segment *seg, const struct config *cfg, char *why, size_t why_len)
{
    memset(seg, 0, sizeof(*seg));
    seg->ingress_eventfd = -1;
    seg->peer_eventfd = -1;
    struct segment_layout l;
    if (!segment_layout(cfg, &l, why, why_len))
        return -EINVAL;
    void *base = mmap(NULL, l.total, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) {
        int e = errno;
        why_set(why, why_len, "mmap of the %llu-byte shared segment: %s", (unsigned long long)l.total, strerror(e));
        return -e;
    }
    int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    int pfd = efd < 0 ? -1 : eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (efd < 0 || pfd < 0) {
        int e = errno;
        if (efd >= 0)
            close(efd);
        munmap(base, l.total);
        why_set(why, why_len, "eventfd: %s", strerror(e));
        return -e;
    }
    seg->peer_eventfd = pfd;
    seg->base = base;
    seg->size = l.total;
    seg->ingress_eventfd = efd;
    u8 *p = base;
    seg->hdr = (struct segment_header *)p;
    p += align_line(l.header);
    seg->workers = (struct worker_slot *)p;
    p += align_line(l.workers);
    seg->seq = (struct seg_sequencer *)p;
    p += align_line(sizeof(struct seg_sequencer));
    seg->app = (struct seg_applier *)p;
    p += align_line(sizeof(struct seg_applier));
    seg->ing = (struct seg_ingress *)p;
    p += align_line(sizeof(struct seg_ingress));
    seg->rep = (struct seg_replica *)p;
    p += align_line(sizeof(struct seg_replica));
    seg->peer = (struct seg_peer *)p;
    p += align_line(sizeof(struct seg_peer));
    seg->bell_sequencer = (struct doorbell *)p;
    seg->bell_applier = (struct doorbell *)(p + ADB_CACHE_LINE);
    seg->bell_ingress = (struct doorbell *)(p + 2 * ADB_CACHE_LINE);
    seg->bell_peer = (struct doorbell *)(p + 3 * ADB_CACHE_LINE);
    p += align_line(l.doorbells);
    doorbell_init(seg->bell_sequencer, -1);
    doorbell_init(seg->bell_applier, -1);
    doorbell_init(seg->bell_ingress, efd);
    doorbell_init(seg->bell_peer, pfd);

    u32 rc = cfg->ring_capacity;
#define RING(field, cap, type, consumers, bell)                                                  \
    do {                                                                                         \
        seg->field = ring_init_multi(p, cap, slot_of(sizeof(type)), consumers);                 \
        ring_set_doorbell(seg->field, 0, bell);                                                  \
        p += align_line(l.field);                                                                \
    } while (0)
    RING(write, rc, struct msg_write, 1, seg->bell_sequencer);
    RING(read, rc, struct msg_read, 1, seg->bell_applier);
    RING(retry, rc, struct msg_retry, 1, seg->bell_applier);
    RING(expire, expire_capacity(cfg), struct msg_expire, 1, seg->bell_sequencer);
    RING(result, rc, struct msg_result, 1, seg->bell_ingress);
    RING(reject, rc, struct msg_result, 1, seg->bell_ingress);
    RING(shlog, cfg->shared_log_capacity, struct shlog_entry, 2, seg->bell_applier);
    RING(peer_in, peer_ring_capacity(cfg), struct msg_peer, 1, seg->bell_sequencer);
    RING(peer_out, peer_ring_capacity(cfg), struct msg_peer, 1, seg->bell_peer);
#undef RING
    ADB_ASSERT((u64)(p - (u8 *)base) <= l.total);
    ring_set_active(seg->shlog, SHLOG_PEER, false); /* single node: no peer cursor yet */

    struct segment_header *h = seg->hdr;
    h->magic = SEGMENT_MAGIC;
    h->layout_signature = segment_layout_signature();
    h->total_size = l.total;
    atomic_store(&h->supervisor_pid, (i32)getpid());
    atomic_store(&h->shutting_down, 0);
    atomic_store(&h->generation, 0);
    h->started_wall_ms = wall_ms();
    h->started_mono_ms = mono_ms();
    h->ring_capacity = rc;
    h->shared_log_capacity = cfg->shared_log_capacity;
    h->slot_duration_ms = cfg->slot_duration_ms;
    h->dedupe_window_ms = cfg->dedupe_window_ms;
    h->history_window_ms = cfg->history_window_ms;
    h->reservation_capacity = cfg->reservation_capacity;
    h->max_ttl_ms = cfg->max_ttl_ms;
    h->operation_capacity = cfg->operation_capacity;
    h->fault_hooks = cfg->fault_hooks;
    char addrs[CONFIG_REPLICAS_MAX][CONFIG_ADDR_MAX];
    u32 n = config_replicas(cfg, addrs, CONFIG_REPLICAS_MAX);
    atomic_store(&seg->rep->replica_count, n > 1 ? n : 1);
    atomic_store(&seg->rep->serving, n > 1 ? 0 : 1);
    return 0;
}

void segment_destroy(struct segment *seg)
{
    if (seg->base != NULL)
        munmap(seg->base, seg->size);
    if (seg->ingress_eventfd >= 0)
        close(seg->ingress_eventfd);
    if (seg->peer_eventfd >= 0)
        close(seg->peer_eventfd);
    memset(seg, 0, sizeof(*seg));
    seg->ingress_eventfd = -1;
    seg->peer_eventfd = -1;
}

bool segment_check(const struct segment *seg, char *why, size_t why_len)
{
    const struct segment_header *h = seg->hdr;
    if (h == NULL || h->magic != SEGMENT_MAGIC) {
        why_set(why, why_len, "shared segment: bad magic");
        return false;
    }
    if (h->layout_signature != segment_layout_signature()) {
        why_set(why, why_len, "shared segment: layout signature %016llx, this build has %016llx",
                (unsigned long long)h->layout_signature, (unsigned long long)segment_layout_signature());
        return false;
    }
    if (h->total_size != seg->size) {
        why_set(why, why_len, "shared segment: size %llu, mapped %llu", (unsigned long long)h->total_size,
                (unsigned long long)seg->size);
        return false;
    }
    return true;
}
