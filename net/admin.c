/*
 * net/admin.c — the admin HTTP endpoint, served by the ingress on the admin socket (libevent
 * evhttp on the ingress's event base):
 *
 *   GET /metrics   Prometheus text exposition format (HELP and TYPE for every family)
 *   GET /status    the status JSON (as the protocol's STATUS request)
 *   GET /health    200 "ok" while every worker is ready, fresh, storage is not halted and no
 *                  metadata or snapshot write is failing; else 503 with the reason
 *   POST /fault/peer_block/MASK   (only with fault_hooks = 1) the peer worker cuts replica r,
 *                  both ways, for each bit r of MASK; 0 heals (a partition without namespaces)
 *   POST /fault/install_crash/STEP   (only with fault_hooks = 1) the sequencer kills itself
 *                  during its next state-transfer install, after step STEP (1..4; 0: never)
 *
 * Everything is read from the shared segment's counters; nothing here touches the rings.
 * NOTES: the listening socket is inherited from the supervisor; freeing evhttp closes only this
 * process's copy, so a restarted ingress serves the same port. Out of descriptors (EMFILE,
 * ENFILE) or memory, the listener stops accepting for ADMIN_ACCEPT_RETRY_MS instead of spinning
 * on a readable socket (libevent's default logs every failed accept, hundreds of thousands a
 * second), and says so once per ADMIN_LOG_INTERVAL_MS with the count.
 */
#include "net/admin.h"

#include "net/ingress_internal.h"
#include "net/proto.h"
#include "supervisor/log.h"
#include "supervisor/worker.h"
#include "vocab/vocab.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)

static void family(struct evbuffer *b, const char *name, const char *type, const char *help)
{
    evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void gauge(struct evbuffer *b, const char *name, const char *help, u64 v)
{
    family(b, name, "gauge", help);
    evbuffer_add_printf(b, "%s %llu\n", name, (unsigned long long)v);
}

static void counter(struct evbuffer *b, const char *name, const char *help, u64 v)
{
    family(b, name, "counter", help);
    evbuffer_add_printf(b, "%s %llu\n", name, (unsigned long long)v);
}

/* A log2 seg_histogram as a Prometheus histogram: bucket i holds values below 2^i. */
static void histogram(struct evbuffer *b, const char *name, const char *help, struct seg_histogram *h)
{
    family(b, name, "histogram", help);
    u64 cum = 0;
    for (u32 i = 0; i + 1 < HIST_BUCKETS; i++) {
        cum += LOAD(h->bucket[i]);
        evbuffer_add_printf(b, "%s_bucket{le=\"%llu\"} %llu\n", name, (unsigned long long)((1ull << i) - 1),
                            (unsigned long long)cum);
    }
    evbuffer_add_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)LOAD(h->count));
    evbuffer_add_printf(b, "%s_sum %llu\n%s_count %llu\n", name, (unsigned long long)LOAD(h->sum), name,
                        (unsigned long long)LOAD(h->count));
}

/* A cluster's replica (DESIGN.md §8): its view and role, the core's counters, per-peer lag and
 * connectivity, and the read-index rounds. Nothing on a single node. */
static void metrics_replication(struct evbuffer *b, struct segment *seg)
{
    const struct seg_replica *r = seg->rep;
    const struct seg_peer *p = seg->peer;
    u32 count = LOAD(r->replica_count), self = LOAD(r->replica);
    if (count <= 1)
        return;
    gauge(b, "allocdb_replica_view", "The view this replica is in.", LOAD(r->view));
    gauge(b, "allocdb_replica_serving", "1 while this replica is the serving primary.", LOAD(r->serving));
    gauge(b, "allocdb_replica_commit_lsn", "The commit point this replica knows.", LOAD(r->commit_lsn));
    u64 op = LOAD(r->op_lsn), commit = LOAD(r->commit_lsn);
    gauge(b, "allocdb_replica_prepares_in_flight", "Log entries beyond the commit point.", op > commit ? op - commit : 0);
    gauge(b, "allocdb_replica_clock_synced", "1 while a quorum's clocks agree (a cluster time).", LOAD(r->clock_synced));
    counter(b, "allocdb_replica_view_changes_total", "Views entered.", LOAD(r->view_changes));
    counter(b, "allocdb_replica_prepares_total", "Prepares sent to backups.", LOAD(r->prepares_sent));
    counter(b, "allocdb_replica_prepares_resent_total", "Prepares sent again to backups that had not acknowledged.",
            LOAD(r->prepares_resent));
    counter(b, "allocdb_replica_repairs_total", "Missing entries fetched from peers and appended.",
            LOAD(r->repairs_appended));
    counter(b, "allocdb_replica_repairs_served_total", "Entries served to peers that asked for them.",
            LOAD(r->repairs_served));
    counter(b, "allocdb_replica_truncated_entries_total", "Uncommitted entries a view change removed.",
            LOAD(r->truncated_entries));
    const struct seg_sequencer *q = seg->seq;
    counter(b, "allocdb_replica_state_transfers_total", "Snapshot images this replica installed (state transfers).",
            LOAD(q->images_installed));
    counter(b, "allocdb_replica_state_transfers_started_total",
            "State transfers begun by this sequencer (behind every peer's pruned WAL).", LOAD(r->transfers_started));
    counter(b, "allocdb_replica_state_transfers_abandoned_total",
            "State transfers given up (stalled, caught up otherwise, or a view change).", LOAD(r->transfers_abandoned));
    counter(b, "allocdb_replica_state_transfer_failures_total",
            "Received images that could not be written or installed.", LOAD(r->transfer_failures));
    counter(b, "allocdb_replica_image_chunks_served_total", "Snapshot image chunks sent to peers.", LOAD(r->chunks_served));
    counter(b, "allocdb_replica_image_chunks_received_total", "Snapshot image chunks received.", LOAD(r->chunks_received));
    counter(b, "allocdb_replica_images_built_total", "Images built from a snapshot to serve to peers.",
            LOAD(q->images_built));
    counter(b, "allocdb_replica_image_build_failures_total", "Image builds (or checks of one found at start) that failed.",
            LOAD(q->image_build_failures));
    gauge(b, "allocdb_replica_image_lsn", "The entry the image this replica serves ends at (0: none).", LOAD(q->image_lsn));
    gauge(b, "allocdb_replica_image_bytes", "The size of the image this replica serves.", LOAD(q->image_bytes));
    counter(b, "allocdb_replica_not_primary_total", "Writes the sequencer answered not_primary.", LOAD(r->not_primary));
    counter(b, "allocdb_replica_read_rounds_total", "Read-index rounds a quorum confirmed.",
            LOAD(r->read_round_us_count));
    family(b, "allocdb_replica_read_round_seconds_sum", "counter",
           "Time from the start of confirmed read-index rounds to their confirmation, summed.");
    evbuffer_add_printf(b, "allocdb_replica_read_round_seconds_sum %.6f\n", (double)LOAD(r->read_round_us_sum) / 1e6);
    family(b, "allocdb_replica_dropped_messages_total", "counter", "Replication messages dropped, by cause.");
    const struct {
        const char *cause;
        u64 v;
    } drops[] = {
        { "undecodable", LOAD(r->dropped_decode) },   { "other_cluster", LOAD(r->dropped_cluster) },
        { "unknown_replica", LOAD(r->dropped_replica) }, { "old_view", LOAD(r->dropped_view) },
        { "wrong_status", LOAD(r->dropped_status) },  { "send_ring_full", LOAD(r->messages_out_dropped) },
        { "receive_ring_full", LOAD(p->dropped_inbound_full) }, { "queue_full", LOAD(p->dropped_queue_full) },
        { "not_connected", LOAD(p->dropped_not_connected) }, { "bad_stream", LOAD(p->dropped_bad) },
        { "fault_hook", LOAD(p->dropped_blocked) },
    };
    for (size_t i = 0; i < ADB_ARRAY_LEN(drops); i++)
        evbuffer_add_printf(b, "allocdb_replica_dropped_messages_total{cause=\"%s\"} %llu\n", drops[i].cause,
                            (unsigned long long)drops[i].v);
    u32 connected = LOAD(p->connected);
    u64 own = LOAD(r->peer_op[self < VSR_REPLICAS_MAX ? self : 0]);
    family(b, "allocdb_peer_connected", "gauge", "1 while the connection to a peer replica is up.");
    for (u32 i = 0; i < count && i < VSR_REPLICAS_MAX; i++)
        if (i != self)
            evbuffer_add_printf(b, "allocdb_peer_connected{replica=\"%u\"} %u\n", i, (connected >> i) & 1u);
    family(b, "allocdb_peer_lag_entries", "gauge", "How far a peer's log is behind this replica's.");
    for (u32 i = 0; i < count && i < VSR_REPLICAS_MAX; i++) {
        u64 o = LOAD(r->peer_op[i]);
        if (i != self)
            evbuffer_add_printf(b, "allocdb_peer_lag_entries{replica=\"%u\"} %llu\n", i,
                                (unsigned long long)(own > o ? own - o : 0));
    }
    family(b, "allocdb_peer_messages_sent_total", "counter", "Replication messages queued to a peer.");
    for (u32 i = 0; i < count && i < VSR_REPLICAS_MAX; i++)
        if (i != self)
            evbuffer_add_printf(b, "allocdb_peer_messages_sent_total{replica=\"%u\"} %llu\n", i,
                                (unsigned long long)LOAD(p->msgs_sent[i]));
    family(b, "allocdb_peer_messages_received_total", "counter", "Replication messages received from a peer.");
    for (u32 i = 0; i < count && i < VSR_REPLICAS_MAX; i++)
        if (i != self)
            evbuffer_add_printf(b, "allocdb_peer_messages_received_total{replica=\"%u\"} %llu\n", i,
                                (unsigned long long)LOAD(p->msgs_received[i]));
}

static void metrics(struct evbuffer *b, struct segment *seg)
{
    struct seg_sequencer *q = seg->seq;
    struct seg_applier *a = seg->app;
    struct seg_ingress *g = seg->ing;
    gauge(b, "allocdb_durable_lsn", "Last LSN made durable by the sequencer's fsync.", LOAD(q->durable_lsn));
    gauge(b, "allocdb_applied_lsn", "Last LSN applied to the state machine.", LOAD(a->applied_lsn));
    gauge(b, "allocdb_sequenced_lsn", "Last LSN assigned by the sequencer.", LOAD(q->sequenced_lsn));
    gauge(b, "allocdb_snapshot_lsn", "LSN of the newest durable snapshot.", LOAD(a->snapshot_lsn));
    gauge(b, "allocdb_view", "Current view (always 0 on a single node).", 0);
    family(b, "allocdb_role", "gauge", "1 for the role this node holds.");
    evbuffer_add_printf(b, "allocdb_role{role=\"primary\"} 1\n");
    gauge(b, "allocdb_storage_halted", "1 if a storage failure halted writes.", LOAD(q->halted));
    gauge(b, "allocdb_no_space", "The data disk is full: 1 the next WAL segment cannot be prepared, 2 writes refused.",
          LOAD(q->no_space));
    counter(b, "allocdb_fsyncs_total", "WAL fsyncs (one per group-commit batch).", LOAD(q->fsyncs));
    counter(b, "allocdb_meta_write_failures_total", "Replica metadata (LMDB) writes that failed.",
            LOAD(q->meta_failures));
    counter(b, "allocdb_snapshot_failures_total", "Snapshot attempts that failed.", LOAD(a->snapshot_failures));
    gauge(b, "allocdb_wal_damage_below_snapshot",
          "Damaged WAL regions the newest snapshot covers, passed over at the last start (fallback below them "
          "is refused).", LOAD(q->recovery_damaged));
    counter(b, "allocdb_snapshots_rejected_total",
            "Snapshots that failed validation when the applier recovered (an older one was used).",
            LOAD(a->snapshots_rejected));
    gauge(b, "allocdb_slot_clock_basis", "How the slot timeline resumed at start: 0 initial (wall clock), "
          "1 boot clock (exact), 2 wall-clock downtime across a reboot.", LOAD(q->clock_basis));
    histogram(b, "allocdb_fsync_duration_microseconds", "WAL fdatasync latency.", &q->fsync_us);
    histogram(b, "allocdb_batch_commands", "Entries per group-commit batch.", &q->batch);
    counter(b, "allocdb_retries_answered_total", "Retries answered from the retry cache without a new entry.",
            LOAD(q->retries_answered));
    family(b, "allocdb_rejections_total", "counter", "Definite rejections by the sequencer, by code.");
    for (u32 i = 1; i < ADB_ARRAY_LEN(q->rejected); i++)
        if (strcmp(proto_reject_name((u8)i), "unknown") != 0)
            evbuffer_add_printf(b, "allocdb_rejections_total{code=\"%s\"} %llu\n", proto_reject_name((u8)i),
                                (unsigned long long)LOAD(q->rejected[i]));
    family(b, "allocdb_commands_total", "counter", "Applied log entries, by command kind.");
    for (u32 k = 1; k <= SM_CMD_KIND_MAX; k++)
        evbuffer_add_printf(b, "allocdb_commands_total{kind=\"%s\"} %llu\n", sm_command_name((enum sm_command_kind)k),
                            (unsigned long long)LOAD(a->commands[k]));
    family(b, "allocdb_results_total", "counter", "Committed results, by result code.");
    for (u32 r = 0; r < SM_RESULT_COUNT; r++)
        evbuffer_add_printf(b, "allocdb_results_total{result=\"%s\"} %llu\n", sm_result_name((enum sm_result)r),
                            (unsigned long long)LOAD(a->results[r]));
    gauge(b, "allocdb_expiration_backlog", "Reserved reservations past their deadline, not yet expired.",
          LOAD(a->expiration_backlog));
    counter(b, "allocdb_expirations_proposed_total", "Expirations the applier sent to be logged.",
            LOAD(a->expirations_proposed));
    const struct {
        const char *name;
        u32 used, cap;
    } tables[] = {
        { "resources", LOAD(a->resources_used), LOAD(a->resource_capacity) },
        { "reservations", LOAD(a->reservations_used), LOAD(a->reservation_capacity) },
        { "operations", LOAD(a->operations_used), LOAD(a->operation_capacity) },
        { "expirations", LOAD(a->expirations_used), LOAD(a->expiration_capacity) },
    };
    family(b, "allocdb_table_used", "gauge", "Entries in use, by table (operations: the dedupe table).");
    for (size_t i = 0; i < ADB_ARRAY_LEN(tables); i++)
        evbuffer_add_printf(b, "allocdb_table_used{table=\"%s\"} %u\n", tables[i].name, tables[i].used);
    family(b, "allocdb_table_capacity", "gauge", "Configured capacity, by table.");
    for (size_t i = 0; i < ADB_ARRAY_LEN(tables); i++)
        evbuffer_add_printf(b, "allocdb_table_capacity{table=\"%s\"} %u\n", tables[i].name, tables[i].cap);
    gauge(b, "allocdb_dedupe_window_milliseconds", "How long an operation id is remembered.",
          seg->hdr->dedupe_window_ms);
    const struct {
        const char *name;
        struct ring *r;
    } queues[] = { { "write", seg->write },   { "read", seg->read },     { "retry", seg->retry },
                   { "expire", seg->expire }, { "result", seg->result }, { "reject", seg->reject },
                   { "shared_log", seg->shlog } };
    family(b, "allocdb_queue_depth", "gauge", "Entries waiting in each shared-memory ring.");
    for (size_t i = 0; i < ADB_ARRAY_LEN(queues); i++)
        evbuffer_add_printf(b, "allocdb_queue_depth{queue=\"%s\"} %llu\n", queues[i].name,
                            (unsigned long long)ring_depth(queues[i].r));
    gauge(b, "allocdb_connections", "Client connections open.", LOAD(g->connections));
    counter(b, "allocdb_connections_refused_total", "Connections refused over max_connections.",
            LOAD(g->connections_refused));
    counter(b, "allocdb_connections_evicted_total",
            "Idle connections closed to make room for a new client at max_connections.", LOAD(g->connections_evicted));
    counter(b, "allocdb_requests_total", "Client frames received.", LOAD(g->requests));
    counter(b, "allocdb_bad_frames_total", "Connections closed for a malformed frame.", LOAD(g->bad_frames));
    counter(b, "allocdb_timeouts_total", "Writes answered indefinite by timeout.", LOAD(g->timeouts));
    gauge(b, "allocdb_inflight_requests", "Requests awaiting a reply.", LOAD(g->inflight));
    family(b, "allocdb_worker_restarts_total", "counter", "Worker restarts, by role.");
    u32 roles = LOAD(seg->rep->replica_count) > 1 ? ROLE_COUNT : ROLE_PEER; /* a single node has no peer */
    for (u32 r = 0; r < roles; r++)
        evbuffer_add_printf(b, "allocdb_worker_restarts_total{role=\"%s\"} %u\n", worker_role_name((enum worker_role)r),
                            LOAD(seg->workers[r].restarts));
    metrics_replication(b, seg);
    struct ing_rss rss[ROLE_COUNT + 1];
    u32 nrss = ing_process_rss(seg, rss);
    family(b, "allocdb_process_resident_bytes", "gauge",
           "Resident memory of each running process (from /proc/PID/statm), by role.");
    for (u32 i = 0; i < nrss; i++)
        evbuffer_add_printf(b, "allocdb_process_resident_bytes{role=\"%s\"} %llu\n", rss[i].role,
                            (unsigned long long)rss[i].bytes);
}

static bool healthy(struct segment *seg, const char **why)
{
    u64 now = mono_ms();
    u32 roles = LOAD(seg->rep->replica_count) > 1 ? ROLE_COUNT : ROLE_PEER; /* a single node has no peer */
    for (u32 r = 0; r < roles; r++) {
        if (LOAD(seg->workers[r].state) != WORKER_READY) {
            *why = worker_role_name((enum worker_role)r);
            return false;
        }
        u64 hb = LOAD(seg->workers[r].heartbeat_ms);
        if (now > hb && now - hb > 2000) {
            *why = "a worker's heartbeat is stale";
            return false;
        }
    }
    if (LOAD(seg->seq->halted) != 0 || LOAD(seg->hdr->shutting_down) != 0) {
        *why = LOAD(seg->seq->halted) != 0 ? "storage halted" : "shutting down";
        return false;
    }
    if (LOAD(seg->seq->no_space) == 2) {
        *why = "no space left on the data directory's disk: writes are refused (no_space), reads served";
        return false;
    }
    if (LOAD(seg->seq->meta_failing) != 0) {
        *why = "replica metadata writes are failing (retrying; see the log)";
        return false;
    }
    if (LOAD(seg->app->snapshot_failing) != 0) {
        *why = "snapshot writes are failing (retrying; the WAL is kept; see the log)";
        return false;
    }
    return true;
}

/* The fault hooks (fault_hooks = 1): POST PREFIX<N>, N decimal in 0..max, into a word of the
 * segment's header. */
static _Atomic u32 *peer_block_of(struct segment *seg) { return &seg->hdr->peer_block; }
static _Atomic u32 *install_crash_of(struct segment *seg) { return &seg->hdr->install_crash; }
struct fault_hook {
    const char *prefix, *usage, *event, *arg;
    unsigned long max;
    _Atomic u32 *(*field)(struct segment *seg);
};
static const struct fault_hook fault_hooks[] = {
    { "/fault/peer_block/", "MASK, MASK a decimal replica bitmask", "fault_peer_block", "mask",
      (1ul << VSR_REPLICAS_MAX) - 1, peer_block_of },
    { "/fault/install_crash/", "STEP, STEP 0..4", "fault_install_crash", "step", 4, install_crash_of },
};

static void handle(struct evhttp_request *req, void *arg)
{
    struct segment *seg = arg;
    const char *uri = evhttp_request_get_uri(req);
    struct evbuffer *out = evbuffer_new();
    if (out == NULL) {
        evhttp_send_error(req, HTTP_INTERNAL, NULL);
        return;
    }
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    int code = HTTP_OK;
    const char *reason = "OK";
    const struct fault_hook *hook = NULL;
    if (evhttp_request_get_command(req) == EVHTTP_REQ_POST && seg->hdr->fault_hooks)
        for (size_t i = 0; i < ADB_ARRAY_LEN(fault_hooks) && hook == NULL; i++)
            if (strncmp(uri, fault_hooks[i].prefix, strlen(fault_hooks[i].prefix)) == 0)
                hook = &fault_hooks[i];
    if (hook != NULL) {
        const char *num = uri + strlen(hook->prefix);
        char *end;
        unsigned long v = strtoul(num, &end, 10);
        if (*end != 0 || *num == 0 || v > hook->max) {
            code = HTTP_BADREQUEST;
            reason = "Bad Request";
            evbuffer_add_printf(out, "expected %s%s\n", hook->prefix, hook->usage);
        } else {
            atomic_store(hook->field(seg), (u32)v);
            log_always_warn(hook->event, "%s=%lu", hook->arg, v);
            evbuffer_add_printf(out, "%s %lu\n", hook->event + strlen("fault_"), v);
        }
    } else if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
        code = 405;
        reason = "Method Not Allowed";
        evbuffer_add_printf(out, "only GET\n");
    } else if (strcmp(uri, "/metrics") == 0) {
        evhttp_add_header(h, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
        metrics(out, seg);
    } else if (strcmp(uri, "/status") == 0) {
        size_t len = 0;
        char *json = ing_status_json(seg, &len);
        evhttp_add_header(h, "Content-Type", "application/json");
        if (json != NULL) {
            evbuffer_add(out, json, len);
            evbuffer_add(out, "\n", 1);
            free(json);
        }
    } else if (strcmp(uri, "/health") == 0) {
        const char *why = "";
        evhttp_add_header(h, "Content-Type", "text/plain");
        if (healthy(seg, &why)) {
            evbuffer_add_printf(out, "ok\n");
        } else {
            code = 503;
            reason = "Service Unavailable";
            evbuffer_add_printf(out, "unavailable: %s\n", why);
        }
    } else {
        code = HTTP_NOTFOUND;
        reason = "Not Found";
        evbuffer_add_printf(out, "not found; try /metrics, /status or /health\n");
    }
    evhttp_send_reply(req, code, reason, out);
    evbuffer_free(out);
}

#define ADMIN_ACCEPT_RETRY_MS 100
#define ADMIN_LOG_INTERVAL_MS 10000

/* One admin listener per ingress process. */
static struct {
    struct evconnlistener *listener;
    struct event *retry;
    u64 failures, last_log_ms;
} admin_accept;

static void admin_accept_resume(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    evconnlistener_enable(admin_accept.listener);
}

static void admin_accept_error(struct evconnlistener *l, void *arg)
{
    (void)arg;
    int e = EVUTIL_SOCKET_ERROR();
    admin_accept.failures++;
    u64 now = mono_ms();
    if (admin_accept.last_log_ms == 0 || now - admin_accept.last_log_ms >= ADMIN_LOG_INTERVAL_MS) {
        log_warn("admin_accept_failed", "error=\"%s\" failures=%llu retry_ms=%d", strerror(e),
                 (unsigned long long)admin_accept.failures, ADMIN_ACCEPT_RETRY_MS);
        admin_accept.last_log_ms = now;
    }
    /* The socket stays readable: stop watching it for a moment rather than spin on it. */
    evconnlistener_disable(l);
    struct timeval tv = { 0, ADMIN_ACCEPT_RETRY_MS * 1000 };
    event_add(admin_accept.retry, &tv);
}

struct evhttp *admin_start(struct event_base *base, int fd, struct segment *seg)
{
    if (fd < 0)
        return NULL;
    struct evhttp *http = evhttp_new(base);
    if (http == NULL)
        return NULL;
    evhttp_set_gencb(http, handle, seg);
    evhttp_set_timeout(http, 10);
    struct evhttp_bound_socket *bound = evhttp_accept_socket_with_handle(http, fd);
    admin_accept.retry = bound != NULL ? evtimer_new(base, admin_accept_resume, NULL) : NULL;
    if (admin_accept.retry == NULL) {
        evhttp_free(http);
        return NULL;
    }
    admin_accept.listener = evhttp_bound_socket_get_listener(bound);
    evconnlistener_set_error_cb(admin_accept.listener, admin_accept_error);
    return http;
}
