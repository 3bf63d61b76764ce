/*
 * net/ingress_json.c — the METRICS and STATUS answers: every counter of the shared segment as
 * one JSON object (jansson), built by the ingress without asking any other worker.
 *
 * NOTES
 *   The counters are read with relaxed loads while their writers keep going: each value is a
 *   consistent word, the document as a whole is a near-instant snapshot, not an atomic one.
 *   Histograms (log2 buckets, segment.h) are summarised as count, sum, mean, max and the
 *   p50/p90/p99 bucket upper bounds (capped by max), plus the non-empty buckets.
 *   Error reporting: NULL when jansson cannot allocate; the caller answers overloaded.
 *   Memory: the status document's "memory" object gives each running process's resident set
 *   (supervisor and workers, /proc/PID/statm read while the document is built); a process
 *   whose statm cannot be read (exited, /proc mounted hidepid) is left out.
 *   Not on the hot path: jansson allocates per call, which is fine for an operator's request.
 */
#include "config.h"

#include "net/ingress_internal.h"

#include "net/proto.h"
#include "replica/recovery.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)

/* json_object_set_new that remembers a failure instead of checking every call. */
struct jb {
    bool failed;
};

static void put(struct jb *b, json_t *obj, const char *key, json_t *v)
{
    /* jansson steals v even on failure (and fails on a NULL object or value). */
    if (json_object_set_new(obj, key, v) != 0)
        b->failed = true;
}

static json_t *num(u64 v)
{
    /* JSON integers are signed 64-bit in jansson; counters never get near 2^63. */
    return json_integer((json_int_t)(v > (u64)INT64_MAX ? (u64)INT64_MAX : v));
}

static u64 bucket_upper(u32 i)
{
    return i == 0 ? 0 : (i >= 64 ? UINT64_MAX : (1ull << i) - 1);
}

static json_t *histogram(struct jb *b, const struct seg_histogram *h)
{
    json_t *o = json_object();
    u64 count = LOAD(h->count), sum = LOAD(h->sum), max = LOAD(h->max);
    u64 bucket[HIST_BUCKETS];
    u64 total = 0;
    for (u32 i = 0; i < HIST_BUCKETS; i++) {
        bucket[i] = LOAD(h->bucket[i]);
        total += bucket[i];
    }
    put(b, o, "count", num(count));
    put(b, o, "sum", num(sum));
    put(b, o, "max", num(max));
    put(b, o, "mean", json_real(count ? (double)sum / (double)count : 0.0));
    static const struct {
        const char *name;
        u32 per_mille;
    } q[] = { { "p50", 500 }, { "p90", 900 }, { "p99", 990 } };
    for (size_t k = 0; k < ADB_ARRAY_LEN(q); k++) {
        u64 want = (total * q[k].per_mille + 999) / 1000, seen = 0, v = 0;
        for (u32 i = 0; i < HIST_BUCKETS && total > 0; i++) {
            seen += bucket[i];
            if (seen >= want) {
                v = bucket_upper(i);
                break;
            }
        }
        put(b, o, q[k].name, num(v < max ? v : max));
    }
    json_t *buckets = json_object();
    for (u32 i = 0; i < HIST_BUCKETS; i++) {
        if (bucket[i] == 0)
            continue;
        char key[32];
        snprintf(key, sizeof(key), "le_%llu", (unsigned long long)bucket_upper(i));
        put(b, buckets, key, num(bucket[i]));
    }
    put(b, o, "buckets", buckets);
    return o;
}

static json_t *table_use(struct jb *b, u32 used, u32 capacity)
{
    json_t *o = json_object();
    put(b, o, "used", num(used));
    put(b, o, "capacity", num(capacity));
    put(b, o, "utilization", json_real(capacity ? (double)used / (double)capacity : 0.0));
    return o;
}

static json_t *sequencer_metrics(struct jb *b, struct seg_sequencer *s)
{
    json_t *o = json_object();
    put(b, o, "durable_lsn", num(LOAD(s->durable_lsn)));
    put(b, o, "sequenced_lsn", num(LOAD(s->sequenced_lsn)));
    put(b, o, "published_lsn", num(LOAD(s->published_lsn)));
    put(b, o, "last_slot", num(LOAD(s->last_slot)));
    put(b, o, "fsyncs", num(LOAD(s->fsyncs)));
    put(b, o, "writes", num(LOAD(s->writes)));
    put(b, o, "expires_logged", num(LOAD(s->expires_logged)));
    put(b, o, "retries_answered", num(LOAD(s->retries_answered)));
    json_t *rej = json_object();
    for (u32 i = 0; i < ADB_ARRAY_LEN(s->rejected); i++) {
        const char *name = proto_reject_name((u8)i);
        if (strcmp(name, "unknown") != 0)
            put(b, rej, name, num(LOAD(s->rejected[i])));
    }
    put(b, o, "rejected", rej);
    put(b, o, "halted", json_boolean(LOAD(s->halted) != 0));
    put(b, o, "wal_segments_removed", num(LOAD(s->wal_segments_removed)));
    put(b, o, "fsync_us", histogram(b, &s->fsync_us));
    put(b, o, "batch", histogram(b, &s->batch));
    return o;
}

static json_t *applier_metrics(struct jb *b, struct seg_applier *a)
{
    json_t *o = json_object();
    put(b, o, "applied_lsn", num(LOAD(a->applied_lsn)));
    put(b, o, "current_slot", num(LOAD(a->current_slot)));
    put(b, o, "snapshot_lsn", num(LOAD(a->snapshot_lsn)));
    put(b, o, "prune_below_lsn", num(LOAD(a->prune_below_lsn)));
    put(b, o, "snapshots_written", num(LOAD(a->snapshots_written)));
    put(b, o, "recovery_kind", json_string(recovery_kind_name((enum recovery_kind)LOAD(a->recovery_kind))));
    put(b, o, "recovery_frames", num(LOAD(a->recovery_frames)));
    put(b, o, "recovery_ms", num(LOAD(a->recovery_ms)));
    json_t *res = json_object();
    for (u32 i = 0; i < SM_RESULT_COUNT; i++)
        put(b, res, sm_result_name((enum sm_result)i), num(LOAD(a->results[i])));
    put(b, o, "results", res);
    json_t *cmds = json_object();
    for (u32 k = 1; k <= SM_CMD_KIND_MAX; k++)
        put(b, cmds, sm_command_name((enum sm_command_kind)k), num(LOAD(a->commands[k])));
    put(b, o, "commands", cmds);
    put(b, o, "expirations_proposed", num(LOAD(a->expirations_proposed)));
    put(b, o, "expiration_backlog", num(LOAD(a->expiration_backlog)));
    put(b, o, "reads", num(LOAD(a->reads)));
    json_t *tables = json_object();
    put(b, tables, "resources", table_use(b, LOAD(a->resources_used), LOAD(a->resource_capacity)));
    put(b, tables, "reservations", table_use(b, LOAD(a->reservations_used), LOAD(a->reservation_capacity)));
    put(b, tables, "operations", table_use(b, LOAD(a->operations_used), LOAD(a->operation_capacity)));
    put(b, tables, "expirations", table_use(b, LOAD(a->expirations_used), LOAD(a->expiration_capacity)));
    put(b, o, "tables", tables);
    return o;
}

static json_t *ingress_metrics(struct jb *b, struct seg_ingress *g)
{
    json_t *o = json_object();
    put(b, o, "connections", num(LOAD(g->connections)));
    put(b, o, "connections_total", num(LOAD(g->connections_total)));
    put(b, o, "connections_refused", num(LOAD(g->connections_refused)));
    put(b, o, "connections_evicted", num(LOAD(g->connections_evicted)));
    put(b, o, "requests", num(LOAD(g->requests)));
    put(b, o, "commands", num(LOAD(g->commands)));
    put(b, o, "bad_frames", num(LOAD(g->bad_frames)));
    put(b, o, "timeouts", num(LOAD(g->timeouts)));
    put(b, o, "inflight", num(LOAD(g->inflight)));
    put(b, o, "overloaded", num(LOAD(g->overloaded)));
    return o;
}

static json_t *queue(struct jb *b, struct ring *r)
{
    json_t *o = json_object();
    put(b, o, "depth", num(ring_depth(r)));
    put(b, o, "capacity", num(ring_capacity(r)));
    return o;
}

/* Resident bytes of pid from /proc/PID/statm (its second field, in pages). */
static bool statm_rss(i32 pid, u64 *bytes)
{
    char path[48], text[256];
    if (pid <= 0)
        return false;
    snprintf(path, sizeof(path), "/proc/%d/statm", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n;
    do
        n = read(fd, text, sizeof(text) - 1);
    while (n < 0 && errno == EINTR);
    close(fd);
    if (n <= 0)
        return false;
    text[n] = 0;
    unsigned long long size, resident;
    long page = sysconf(_SC_PAGESIZE);
    if (sscanf(text, "%llu %llu", &size, &resident) != 2 || page <= 0)
        return false;
    *bytes = (u64)resident * (u64)page;
    return true;
}

u32 ing_process_rss(struct segment *seg, struct ing_rss out[ROLE_COUNT + 1])
{
    u32 n = 0;
    u64 v;
    if (statm_rss(LOAD(seg->hdr->supervisor_pid), &v))
        out[n++] = (struct ing_rss){ "supervisor", v };
    for (u32 r = 0; r < ROLE_COUNT; r++) {
        u32 st = LOAD(seg->workers[r].state);
        /* Only a live worker: an exited one's pid may belong to another process by now. */
        if (st != WORKER_STARTING && st != WORKER_READY && st != WORKER_STOPPING)
            continue;
        if (statm_rss(LOAD(seg->workers[r].pid), &v))
            out[n++] = (struct ing_rss){ worker_role_name((enum worker_role)r), v };
    }
    return n;
}

static char *finish(struct jb *b, json_t *doc, size_t *len)
{
    char *text = NULL;
    if (!b->failed)
        text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (text != NULL)
        *len = strlen(text);
    return text;
}

char *ing_metrics_json(struct segment *seg, size_t *len)
{
    struct jb b = { false };
    json_t *doc = json_object();
    put(&b, doc, "dedupe_window_ms", num(seg->hdr->dedupe_window_ms));
    put(&b, doc, "operation_capacity", num(seg->hdr->operation_capacity));
    put(&b, doc, "sequencer", sequencer_metrics(&b, seg->seq));
    put(&b, doc, "applier", applier_metrics(&b, seg->app));
    put(&b, doc, "ingress", ingress_metrics(&b, seg->ing));
    json_t *q = json_object();
    put(&b, q, "write", queue(&b, seg->write));
    put(&b, q, "read", queue(&b, seg->read));
    put(&b, q, "retry", queue(&b, seg->retry));
    put(&b, q, "expire", queue(&b, seg->expire));
    put(&b, q, "result", queue(&b, seg->result));
    put(&b, q, "reject", queue(&b, seg->reject));
    put(&b, q, "shared_log", queue(&b, seg->shlog));
    put(&b, doc, "queues", q);
    json_t *restarts = json_object();
    for (u32 r = 0; r < ROLE_COUNT; r++)
        put(&b, restarts, worker_role_name((enum worker_role)r), num(LOAD(seg->workers[r].restarts)));
    put(&b, doc, "restarts", restarts);
    put(&b, doc, "doorbell_wakeups",
        num(LOAD(seg->bell_sequencer->wakeups) + LOAD(seg->bell_applier->wakeups) +
            LOAD(seg->bell_ingress->wakeups)));
    return finish(&b, doc, len);
}

char *ing_status_json(struct segment *seg, size_t *len)
{
    struct jb b = { false };
    u64 now = mono_ms();
    json_t *doc = json_object();
    put(&b, doc, "version", json_string(PACKAGE_VERSION));
    const struct seg_replica *rp = seg->rep;
    u32 count = LOAD(rp->replica_count);
    bool serving = LOAD(rp->serving) != 0;
    /* primary: serves; backup: follows a primary in normal status; view_change: between views;
     * recovering: formatted by `recover`, not yet caught up. */
    const char *role = count <= 1 || serving            ? "primary"
                       : LOAD(rp->recovering) != 0       ? "recovering"
                       : LOAD(rp->status) != 0           ? "view_change"
                       : LOAD(rp->primary) == LOAD(rp->replica) ? "view_change" /* its own view, not yet serving */
                                                          : "backup";
    put(&b, doc, "role", json_string(role));
    put(&b, doc, "view", num(LOAD(rp->view)));
    put(&b, doc, "replica_count", num(count));
    if (count > 1) {
        put(&b, doc, "log_view", num(LOAD(rp->log_view)));
        put(&b, doc, "primary", num(LOAD(rp->primary)));
        put(&b, doc, "commit_lsn", num(LOAD(rp->commit_lsn)));
        put(&b, doc, "op_lsn", num(LOAD(rp->op_lsn)));
        put(&b, doc, "clock_synced", json_boolean(LOAD(rp->clock_synced) != 0));
        /* State transfer: the entry the WAL restarted after (0: never), the image served. */
        put(&b, doc, "base_lsn", num(LOAD(seg->seq->base_lsn)));
        put(&b, doc, "image_lsn", num(LOAD(seg->seq->image_lsn)));
        json_t *peers = json_array();
        u32 connected = LOAD(seg->peer->connected), self = LOAD(rp->replica);
        u64 own = LOAD(rp->peer_op[self < VSR_REPLICAS_MAX ? self : 0]);
        for (u32 r = 0; r < count && r < VSR_REPLICAS_MAX; r++) {
            if (r == self)
                continue;
            json_t *o = json_object();
            u64 op = LOAD(rp->peer_op[r]), seen = LOAD(rp->peer_seen_ms[r]);
            put(&b, o, "replica", num(r));
            put(&b, o, "connected", json_boolean((connected >> r) & 1u));
            put(&b, o, "op_lsn", num(op));
            put(&b, o, "lag", num(own > op ? own - op : 0));
            put(&b, o, "heard_ms_ago", seen == 0 ? json_null() : num(now > seen ? now - seen : 0));
            if (json_array_append_new(peers, o) != 0)
                b.failed = true;
        }
        put(&b, doc, "peers", peers);
    }
    char cluster[40];
    snprintf(cluster, sizeof(cluster), "%016llx%016llx", (unsigned long long)LOAD(seg->seq->cluster_id_hi),
             (unsigned long long)LOAD(seg->seq->cluster_id_lo));
    put(&b, doc, "cluster_id", json_string(cluster));
    put(&b, doc, "replica_id", num(LOAD(seg->seq->replica_id)));
    put(&b, doc, "durable_lsn", num(LOAD(seg->seq->durable_lsn)));
    put(&b, doc, "applied_lsn", num(LOAD(seg->app->applied_lsn)));
    put(&b, doc, "sequenced_lsn", num(LOAD(seg->seq->sequenced_lsn)));
    put(&b, doc, "halted", json_boolean(LOAD(seg->seq->halted) != 0));
    put(&b, doc, "slot_duration_ms", num(seg->hdr->slot_duration_ms));
    put(&b, doc, "dedupe_window_ms", num(seg->hdr->dedupe_window_ms));
    put(&b, doc, "max_ttl_ms", num(seg->hdr->max_ttl_ms));
    put(&b, doc, "history_window_ms", num(seg->hdr->history_window_ms));
    put(&b, doc, "current_slot", num(LOAD(seg->app->current_slot)));
    put(&b, doc, "operation_capacity", num(seg->hdr->operation_capacity));
    put(&b, doc, "reservation_capacity", num(seg->hdr->reservation_capacity));
    put(&b, doc, "shutting_down", json_boolean(LOAD(seg->hdr->shutting_down) != 0));
    u64 started = seg->hdr->started_mono_ms, mono = mono_ms();
    put(&b, doc, "uptime_ms", num(mono > started ? mono - started : 0));
    /* What the last start of each worker recovered, and how long it took. */
    json_t *rec = json_object(), *rs = json_object(), *ra = json_object();
    put(&b, rs, "wal_frames_read", num(LOAD(seg->seq->recovery_frames)));
    put(&b, rs, "torn_tail_truncated", json_boolean(LOAD(seg->seq->recovery_torn) != 0));
    put(&b, rs, "damage_below_snapshot", num(LOAD(seg->seq->recovery_damaged)));
    put(&b, rs, "ms", num(LOAD(seg->seq->recovery_ms)));
    put(&b, ra, "kind", json_string(recovery_kind_name((enum recovery_kind)LOAD(seg->app->recovery_kind))));
    put(&b, ra, "frames_replayed", num(LOAD(seg->app->recovery_frames)));
    put(&b, ra, "ms", num(LOAD(seg->app->recovery_ms)));
    put(&b, ra, "snapshots_rejected", num(LOAD(seg->app->snapshots_rejected)));
    put(&b, ra, "snapshot_rejected_lsn", num(LOAD(seg->app->snapshot_rejected_lsn)));
    put(&b, rec, "sequencer", rs);
    put(&b, rec, "applier", ra);
    put(&b, doc, "recovery", rec);
    json_t *workers = json_array();
    for (u32 r = 0; r < ROLE_COUNT; r++) {
        struct worker_slot *s = &seg->workers[r];
        if (r == ROLE_PEER && LOAD(s->state) == WORKER_EMPTY)
            continue; /* a single node has no peer worker */
        json_t *o = json_object();
        put(&b, o, "role", json_string(worker_role_name((enum worker_role)r)));
        put(&b, o, "pid", json_integer(LOAD(s->pid)));
        put(&b, o, "generation", num(LOAD(s->generation)));
        put(&b, o, "state", json_string(worker_state_name((enum worker_state)LOAD(s->state))));
        put(&b, o, "restarts", num(LOAD(s->restarts)));
        u64 hb = LOAD(s->heartbeat_ms);
        put(&b, o, "heartbeat_age_ms", hb == 0 ? json_null() : num(now > hb ? now - hb : 0));
        if (json_array_append_new(workers, o) != 0) /* steals o, like put() */
            b.failed = true;
    }
    put(&b, doc, "workers", workers);
    struct ing_rss rss[ROLE_COUNT + 1];
    u32 nrss = ing_process_rss(seg, rss);
    json_t *memory = json_object();
    for (u32 i = 0; i < nrss; i++) {
        json_t *o = json_object();
        put(&b, o, "rss_bytes", num(rss[i].bytes));
        put(&b, memory, rss[i].role, o);
    }
    put(&b, doc, "memory", memory);
    return finish(&b, doc, len);
}
