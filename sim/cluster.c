/*
 * sim/cluster.c — the simulated world around the replicas: time, the network, clients, faults
 * drawn from the seed, and the checks (sim/sim.h). The replicas are sim/replica.c shells over
 * the production cores.
 */
#include "config.h"

#include "sim/internal.h"

#include "common/assert.h"
#include "common/splitmix.h"
#include "tests/model.h"
#include "wal/command.h"
#include "wal/frame.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define TICK_NS 10000000ull        /* replicas and clients tick every 10 ms */
#define CLIENT_TIMEOUT_NS 300000000ull
#define CLIENT_ATTEMPTS_MAX 60

struct op_record {
    u64 invoke_ns;
    u64 ttl_ms;
    u64 executed_lsn;
    bool abandoned;
    bool indefinite; /* an attempt got no answer: it may have been logged */
    bool acked;
};

struct sim_client {
    u32 node;
    u32 index;
    u64 serial;
    bool busy;
    u32 type; /* SIM_REQ_* */
    struct sm_command cmd;
    u64 attempt;
    u64 sent_ns;
    bool definite_wait; /* the last attempt was refused definitely: resend soon */
    bool eager;         /* resend after eager_ns without waiting for an answer */
    u64 eager_ns;
    u32 target;
    u64 stale_floor;
    u64 next_ns;
    u128 held[4];
    u32 nheld;
    struct op_record *ops;
};

struct seq_time {
    u32 crc;
    u64 ns;
};

struct sim_world {
    struct sim_options opt;
    struct prng rng_faults, rng_clients;
    u64 now;
    u64 tick_next;
    struct sim_net *net;  /* between replicas */
    struct sim_net *cnet; /* client connections */
    struct sim_net_config netcfg, cnetcfg;
    u32 n;
    struct sim_replica replicas[SIM_REPLICAS_MAX];
    u32 nclients;
    struct sim_client clients[SIM_CLIENTS_MAX];
    struct sm_config smc;
    /* fault mix (ppm per tick) */
    u32 crash_ppm, partition_ppm, pause_ppm, clock_jump_ppm, persist_ppm, io_crash_ppm;
    u32 faulty; /* replicas (bits) whose clock may jump and whose disk may rot: at most f */
    bool clock_focus; /* the faulty ones start with a clock an hour off, maybe */
    u32 fsync_fail_ppm, bitrot_ppm, disk_loss_ppm;
    u32 read_fault_ppm, misdirect_ppm; /* the faulty replicas' disks */
    u64 segment_bytes, checkpoint_every;
    u64 partition_heal_ns;
    bool partitioned;
    bool liveness;
    u64 liveness_acked_at_start;
    /* checks */
    struct model model;
    u64 model_next;
    struct sm_outcome *model_out;
    u128 *model_op;
    u64 *creator;            /* reserve at lsn: (client index << 32) | serial */
    u8 (*frames)[WAL_FRAME_MAX];
    u32 *frame_len;
    struct seq_time (*seqt)[4];
    struct sm_digest *state; /* by LSN: the state after it, as a replica found it (0: none yet) */
    u64 max_acked_lsn;
    bool failed;
    char *why;
    size_t why_len;
    struct sim_stats *stats;
    u64 digest;
};

/* ---- what replicas ask of the world ------------------------------------------------------ */

u64 sim_now(const struct sim_world *w)
{
    return w->now;
}

struct sim_net *sim_network(struct sim_world *w)
{
    return w->net;
}

struct sim_net *sim_client_network(struct sim_world *w)
{
    return w->cnet;
}

u32 sim_replica_count(const struct sim_world *w)
{
    return w->n;
}

const struct sm_config *sim_sm_config(const struct sim_world *w)
{
    return &w->smc;
}

struct vsr_config sim_vsr_config(const struct sim_world *w, u8 id)
{
    return (struct vsr_config){ .cluster_id = 0xadb5, .replica = id, .replica_count = (u8)w->n,
                                .pipeline_max = w->opt.pipeline ? w->opt.pipeline : 32, .heartbeat_ns = 50000000,
                                .ping_ns = 100000000, .primary_timeout_ns = 500000000,
                                .view_change_timeout_ns = 800000000, .repair_ns = 50000000,
                                .clock_window_ns = 2000000000ull,
                                .clock_tolerance_ns = 200000000ull, .lag_max = 256,
                                .seed = w->opt.seed * 31 + id };
}

void sim_count_protocol(struct sim_world *w, const struct vsr_counters *c)
{
    struct sim_stats *s = w->stats;
    s->view_changes += c->view_changes;
    s->repairs += c->repairs_appended;
    s->truncations += c->truncations;
    s->nack_truncations += c->nack_truncations;
    s->transfers += c->transfers_installed;
    s->recoveries += c->recoveries;
}

void sim_count_checkpoint(struct sim_world *w)
{
    w->stats->checkpoints++;
}

u64 sim_segment_bytes(const struct sim_world *w)
{
    return w->segment_bytes;
}

u64 sim_checkpoint_every(const struct sim_world *w)
{
    return w->checkpoint_every;
}

bool sim_persist_fault(struct sim_world *w)
{
    if (w->liveness || !prng_chance(&w->rng_faults, w->persist_ppm))
        return false;
    w->stats->persist_faults++;
    return true;
}

static void mix(struct sim_world *w, u64 x)
{
    w->digest ^= x + 0x9e3779b97f4a7c15ull + (w->digest << 6) + (w->digest >> 2);
}

void sim_fail(struct sim_world *w, const char *fmt, ...)
{
    if (w->failed)
        return;
    w->failed = true;
    va_list ap;
    va_start(ap, fmt);
    int k = snprintf(w->why, w->why_len, "at %llu ms: ", (unsigned long long)(w->now / 1000000));
    if (k > 0 && (size_t)k < w->why_len)
        vsnprintf(w->why + k, w->why_len - (size_t)k, fmt, ap);
    va_end(ap);
    sim_trace(w, "FAIL %s", w->why);
}

void sim_trace(struct sim_world *w, const char *fmt, ...)
{
    if (!w->opt.trace)
        return;
    fprintf(w->opt.trace, "%10.3f ", (double)w->now / 1e6);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(w->opt.trace, fmt, ap);
    va_end(ap);
    fputc('\n', w->opt.trace);
}

/* ---- checks -------------------------------------------------------------------------------- */

void sim_note_sequenced(struct sim_world *w, const u8 *frame, u32 len)
{
    struct wal_frame f;
    ADB_ASSERT(wal_frame_decode_exact(frame, len, &f) == WAL_FRAME_OK);
    if (f.lsn >= SIM_LSN_CAP)
        return;
    struct seq_time *t = w->seqt[f.lsn];
    u32 i = 0;
    while (i < 3 && t[i].crc != 0 && t[i].crc != f.crc)
        i++;
    t[i] = (struct seq_time){ .crc = f.crc, .ns = w->now };
}

static u64 sequenced_at(struct sim_world *w, u64 lsn, u32 crc)
{
    for (u32 i = 0; i < 4; i++)
        if (w->seqt[lsn][i].crc == crc)
            return w->seqt[lsn][i].ns;
    return UINT64_MAX;
}

static struct op_record *op_of(struct sim_world *w, u128 op_id, struct sim_client **client)
{
    u64 hi = (u64)(op_id >> 64), serial = U128_LO(op_id);
    if (hi == 0 || hi > w->nclients || serial >= SIM_OPS_PER_CLIENT)
        return NULL;
    struct sim_client *c = &w->clients[hi - 1];
    if (client)
        *client = c;
    return &c->ops[serial];
}

static bool same_outcome(const struct sm_outcome *a, const struct sm_outcome *b)
{
    return a->result == b->result && a->reservation_id == b->reservation_id &&
           a->deadline_slot == b->deadline_slot && a->applied_lsn == b->applied_lsn;
}

/* The early-expiry check (DESIGN.md §3): an expire that freed a reservation was sequenced no
 * earlier, in simulated real time, than the reserve's first invocation plus its TTL. */
static void check_expiry(struct sim_world *w, u64 lsn, u32 crc, const struct sm_command *cmd)
{
    u64 created = U128_LO(cmd->reservation_id);
    if (created >= SIM_LSN_CAP || w->creator[created] == 0)
        return;
    u64 who = w->creator[created];
    struct sim_client *c = &w->clients[(who >> 32) - 1];
    struct op_record *op = &c->ops[who & 0xffffffffu];
    u64 at = sequenced_at(w, lsn, crc);
    if (at == UINT64_MAX) {
        sim_fail(w, "expire at lsn %llu: no primary sequenced it", (unsigned long long)lsn);
        return;
    }
    u64 due = op->invoke_ns + op->ttl_ms * 1000000u;
    if (at < due)
        sim_fail(w, "early expiry: reservation %llu (ttl %llu ms, invoked at %llu ms) expired by "
                 "lsn %llu sequenced at %llu ms", (unsigned long long)created,
                 (unsigned long long)op->ttl_ms, (unsigned long long)(op->invoke_ns / 1000000),
                 (unsigned long long)lsn, (unsigned long long)(at / 1000000));
}

static void model_feed(struct sim_world *w, u64 lsn, const u8 *frame, u32 len)
{
    struct wal_frame f;
    struct sm_command cmd;
    ADB_ASSERT(wal_frame_decode_exact(frame, len, &f) == WAL_FRAME_OK);
    ADB_ASSERT(wal_cmd_decode(f.record_type, f.payload, f.payload_len, &cmd) == WAL_CMD_OK);
    struct sm_outcome out = model_apply(&w->model, lsn, f.request_slot, &cmd);
    w->model_out[lsn] = out;
    w->model_op[lsn] = cmd.operation_id;
    w->model_next = lsn + 1;
    w->stats->committed = lsn;
    if (cmd.kind == SM_CMD_EXPIRE) {
        if (out.result == SM_OK)
            check_expiry(w, lsn, f.crc, &cmd);
        return;
    }
    struct sim_client *c = NULL;
    struct op_record *op = op_of(w, cmd.operation_id, &c);
    if (!op) {
        sim_fail(w, "lsn %llu carries an operation no client made", (unsigned long long)lsn);
        return;
    }
    if (out.applied_lsn == lsn) { /* executed here, not answered from its dedupe record */
        if (op->executed_lsn != 0)
            sim_fail(w, "duplicate execution: operation %llu/%llu executed at lsn %llu and %llu",
                     (unsigned long long)(cmd.operation_id >> 64),
                     (unsigned long long)U128_LO(cmd.operation_id),
                     (unsigned long long)op->executed_lsn, (unsigned long long)lsn);
        op->executed_lsn = lsn;
        if (cmd.kind == SM_CMD_RESERVE && out.result == SM_OK)
            w->creator[lsn] = ((u64)(c->index + 1) << 32) | U128_LO(cmd.operation_id);
    }
}

void sim_check_apply(struct sim_world *w, u8 replica, const u8 *frame, u32 len,
                     const struct applying_result *res)
{
    u64 lsn = res->lsn;
    mix(w, ((u64)replica << 56) ^ lsn);
    if (w->opt.trace) {
        struct wal_frame tf;
        if (wal_frame_decode_exact(frame, len, &tf) == WAL_FRAME_OK)
            sim_trace(w, "r%u applied lsn %llu (view %llu, crc %08x)", replica,
                      (unsigned long long)lsn, (unsigned long long)tf.view, tf.crc);
    }
    if (lsn >= SIM_LSN_CAP) {
        sim_fail(w, "the run passed %u committed entries (SIM_LSN_CAP)", SIM_LSN_CAP);
        return;
    }
    if (w->frame_len[lsn] == 0) {
        ADB_ASSERT(len <= WAL_FRAME_MAX);
        memcpy(w->frames[lsn], frame, len);
        w->frame_len[lsn] = len;
    } else if (w->frame_len[lsn] != len || memcmp(w->frames[lsn], frame, len) != 0) {
        sim_fail(w, "committed entries differ: r%u applied another entry at lsn %llu", replica,
                 (unsigned long long)lsn);
        return;
    }
    if (lsn == w->model_next)
        model_feed(w, lsn, frame, len);
    else if (lsn > w->model_next) {
        sim_fail(w, "r%u applied lsn %llu before anyone applied %llu", replica,
                 (unsigned long long)lsn, (unsigned long long)w->model_next);
        return;
    }
    if (!same_outcome(&res->outcome, &w->model_out[lsn]))
        sim_fail(w, "r%u's state machine differs from the model at lsn %llu: result %s vs %s",
                 replica, (unsigned long long)lsn, sm_result_name(res->outcome.result),
                 sm_result_name(w->model_out[lsn].result));
}

void sim_check_state(struct sim_world *w, u8 replica, u64 lsn, const sm_t *sm, const char *what)
{
    if (lsn >= SIM_LSN_CAP)
        return;
    struct sm_digest d = sm_digest(sm);
    if (d.lo == 0 && d.hi == 0)
        d.lo = 1; /* 0 means "none yet" */
    struct sm_digest *known = &w->state[lsn];
    if (known->lo == 0 && known->hi == 0)
        *known = d;
    else if (known->lo != d.lo || known->hi != d.hi)
        sim_fail(w, "r%u's state after lsn %llu (%s) differs from another replica's", replica,
                 (unsigned long long)lsn, what);
    mix(w, d.lo ^ ((u64)replica << 56));
}

static void check_invariants(struct sim_world *w)
{
    char why[256];
    for (u32 i = 0; i < w->n; i++) {
        struct sim_replica *r = &w->replicas[i];
        if (r->up && !sm_check_invariants(&r->sm, why, sizeof(why)))
            sim_fail(w, "r%u state machine invariant: %s", i, why);
    }
}

/* ---- clients ------------------------------------------------------------------------------- */

static void client_send(struct sim_world *w, struct sim_client *c)
{
    struct sim_msg m;
    memset(&m, 0, sizeof(m)); /* padding too: the run's digest covers every byte sent */
    m.magic = SIM_MSG_MAGIC;
    m.type = c->type;
    m.attempt = ++c->attempt;
    m.cmd = c->cmd;
    c->sent_ns = w->now;
    sim_trace(w, "c%u op %llu attempt %llu -> r%u (%s)", c->node, (unsigned long long)c->serial,
              (unsigned long long)c->attempt, c->target,
              c->type == SIM_REQ_READ ? "read" : sm_command_name(c->cmd.kind));
    sim_net_send(w->cnet, w->now, c->node, c->target, &m, sizeof(m));
}

static u128 resource_id(u32 k)
{
    return 1000 + k;
}

static void client_start(struct sim_world *w, struct sim_client *c)
{
    if (c->serial + 1 >= SIM_OPS_PER_CLIENT)
        return;
    struct prng *p = &w->rng_clients;
    struct sm_command cmd;
    memset(&cmd, 0, sizeof(cmd));
    u64 pick = prng_below(p, 100);
    u32 type = SIM_REQ_WRITE;
    u64 ttl_ms = 0;
    if (pick < 10) {
        cmd.kind = SM_CMD_CREATE_RESOURCE;
        cmd.resource_id = resource_id((u32)prng_below(p, SIM_RESOURCES));
    } else if (pick < 55 || c->nheld == 0) {
        cmd.kind = SM_CMD_RESERVE;
        cmd.resource_id = resource_id((u32)prng_below(p, SIM_RESOURCES));
        cmd.holder_id = c->node;
        cmd.ttl_slots = prng_range(p, 1, 20);
        ttl_ms = cmd.ttl_slots * SIM_SLOT_MS;
    } else if (pick < 85) {
        /* Confirm or release one it holds (it may have expired meanwhile: then the state
         * machine says so). A confirmed one stays held until released. */
        u32 k = (u32)prng_below(p, c->nheld);
        cmd.kind = prng_chance(p, 300000) ? SM_CMD_CONFIRM : SM_CMD_RELEASE;
        cmd.reservation_id = c->held[k];
        cmd.holder_id = c->node;
        if (cmd.kind == SM_CMD_RELEASE)
            c->held[k] = c->held[--c->nheld];
    } else {
        type = SIM_REQ_READ;
        cmd.resource_id = resource_id((u32)prng_below(p, SIM_RESOURCES));
    }
    c->serial++;
    cmd.operation_id = U128_MAKE(c->index + 1, c->serial);
    cmd.client_id = c->node;
    if (type == SIM_REQ_READ) {
        cmd.kind = 0;
        cmd.holder_id = 0;
    }
    c->cmd = cmd;
    c->type = type;
    c->busy = true;
    c->attempt = 0;
    c->eager = type == SIM_REQ_WRITE && prng_chance(p, 100000);
    c->eager_ns = prng_range(p, 1, 30) * 1000000ull;
    c->stale_floor = w->max_acked_lsn;
    struct op_record *op = &c->ops[c->serial];
    *op = (struct op_record){ .invoke_ns = w->now, .ttl_ms = ttl_ms };
    w->stats->requests++;
    client_send(w, c);
}

static void client_done(struct sim_world *w, struct sim_client *c)
{
    c->busy = false;
    c->definite_wait = false;
    c->next_ns = w->now + prng_range(&w->rng_clients, 0, 50) * 1000000ull;
    mix(w, ((u64)c->node << 48) ^ c->serial);
}

static void client_tick(struct sim_world *w, struct sim_client *c)
{
    if (!c->busy) {
        if (w->now >= c->next_ns)
            client_start(w, c);
        return;
    }
    if (c->definite_wait) {
        if (w->now - c->sent_ns >= 20000000ull) {
            c->definite_wait = false;
            client_send(w, c);
        }
        return;
    }
    if (c->eager && w->now - c->sent_ns >= c->eager_ns) {
        /* An impatient client: the same request again before its answer could come back. */
        c->eager = false;
        c->ops[c->serial].indefinite = true;
        client_send(w, c);
        return;
    }
    if (w->now - c->sent_ns < CLIENT_TIMEOUT_NS)
        return;
    /* No answer: indefinite. Retry the same operation elsewhere. */
    c->ops[c->serial].indefinite = true;
    if (c->attempt >= CLIENT_ATTEMPTS_MAX) {
        client_done(w, c); /* unresolved: allowed, it was never acknowledged */
        return;
    }
    c->target = (c->target + 1) % w->n;
    client_send(w, c);
}

static void client_receive(struct sim_world *w, struct sim_client *c, const u8 *bytes, u32 len)
{
    struct sim_msg m;
    if (len != sizeof(m))
        return;
    memcpy(&m, bytes, sizeof(m));
    if (!c->busy || m.cmd.operation_id != c->cmd.operation_id)
        return; /* a late answer to an operation already finished */
    struct op_record *op = &c->ops[c->serial];
    static const char *names[] = { "?", "?", "?", "committed", "not_primary", "busy", "read" };
    sim_trace(w, "c%u op %llu attempt %llu <- %s", c->node, (unsigned long long)c->serial,
              (unsigned long long)m.attempt, names[m.type < 7 ? m.type : 0]);
    switch (m.type) {
    case SIM_REP_NOT_PRIMARY:
    case SIM_REP_BUSY:
        /* Definite: this attempt was not logged. Sometimes give up on it for good. */
        if (m.type == SIM_REP_NOT_PRIMARY)
            c->target = (u32)(m.view % w->n);
        if (m.attempt == c->attempt && c->type == SIM_REQ_WRITE && !op->indefinite &&
            prng_chance(&w->rng_clients, 100000)) {
            op->abandoned = true;
            w->stats->abandoned++;
            client_done(w, c);
            return;
        }
        if (m.attempt == c->attempt) {
            c->definite_wait = true; /* resend in 20 ms */
            c->sent_ns = w->now;
        }
        w->stats->rejected++;
        return;
    case SIM_REP_READ:
        if (c->type != SIM_REQ_READ)
            return;
        if (m.served_lsn < c->stale_floor)
            sim_fail(w, "stale read: client %u read at lsn %llu after lsn %llu was acknowledged",
                     c->node, (unsigned long long)m.served_lsn,
                     (unsigned long long)c->stale_floor);
        w->stats->reads++;
        client_done(w, c);
        return;
    case SIM_REP_COMMITTED: {
        if (c->type != SIM_REQ_WRITE)
            return;
        u64 lsn = m.out.applied_lsn;
        if (lsn == 0 || lsn >= w->model_next) {
            sim_fail(w, "client %u: a reply names lsn %llu, not committed", c->node,
                     (unsigned long long)lsn);
            return;
        }
        if (w->model_op[lsn] != c->cmd.operation_id || !same_outcome(&m.out, &w->model_out[lsn])) {
            sim_fail(w, "client %u: the reply for operation %llu (lsn %llu, %s) is not the "
                     "committed result (%s)", c->node, (unsigned long long)c->serial,
                     (unsigned long long)lsn, sm_result_name(m.out.result),
                     sm_result_name(w->model_out[lsn].result));
            return;
        }
        op->acked = true;
        if (lsn > w->max_acked_lsn)
            w->max_acked_lsn = lsn;
        if (c->cmd.kind == SM_CMD_RESERVE && m.out.result == SM_OK && c->nheld < 4)
            c->held[c->nheld++] = m.out.reservation_id;
        w->stats->acked++;
        client_done(w, c);
        return;
    }
    default:
        return;
    }
}

/* ---- faults -------------------------------------------------------------------------------- */

static void crash(struct sim_world *w, struct sim_replica *r)
{
    struct prng *p = &w->rng_faults;
    static const enum io_fault_loss modes[] = { IO_FAULT_KEEP_SYNCED, IO_FAULT_TEAR,
                                                IO_FAULT_TEAR_PAGES, IO_FAULT_KEEP_ALL };
    enum io_fault_loss mode = modes[prng_below(p, 4)];
    sim_replica_stop(r);
    io_fault_power_loss(r->disk, mode);
    sim_net_drop_node(w->net, r->id);
    sim_net_drop_node(w->cnet, r->id);
    r->down_until_ns = w->now + prng_range(p, 50, 3000) * 1000000ull;
    w->stats->crashes++;
    if (mode == IO_FAULT_TEAR || mode == IO_FAULT_TEAR_PAGES)
        w->stats->torn_crashes++;
    if (prng_chance(p, w->clock_jump_ppm)) {
        /* A wall clock set an hour wrong (or put right) across the restart. A timeline that
         * jumped never comes back (slots never go backwards), so a replica whose clock was
         * ever wrong stays wrong: only the f faulty replicas get jumps — a quorum of wrong
         * clocks is wrong cluster time, which no protocol can see. A single node has nothing
         * to check its wall clock against (DESIGN.md §3 names that risk). */
        static const i64 jumps[] = { 3600000, -3600000, 0 };
        if (w->faulty & (1u << r->id))
            r->wall_offset_ms = jumps[prng_below(p, 3)];
        w->stats->clock_jumps++;
    }
    sim_trace(w, "r%u crash (power loss mode %d), down until %llu ms, wall offset %lld ms", r->id,
              (int)mode, (unsigned long long)(r->down_until_ns / 1000000),
              (long long)r->wall_offset_ms);
}

static void restart(struct sim_world *w, struct sim_replica *r)
{
    w->stats->restarts++;
    if (!sim_replica_start(r)) {
        w->stats->faulted++;
        r->down_until_ns = w->now + 2000000000ull; /* an operator wipes it then: recover */
    }
}

/* A faulty replica's disk is a bad one (it keeps the rates across power losses). */
static void bad_disk(struct sim_world *w, struct sim_replica *r)
{
    if (w->faulty & (1u << r->id))
        io_fault_bad_disk(r->disk, w->read_fault_ppm, w->misdirect_ppm);
}

void sim_count_disk(struct sim_world *w, struct io_fault *disk)
{
    u64 re, mis;
    io_fault_bad_disk_counts(disk, &re, &mis);
    w->stats->read_faults += re;
    w->stats->misdirected_writes += mis;
}

static bool any_recovering(const struct sim_world *w)
{
    for (u32 i = 0; i < w->n; i++)
        if (w->replicas[i].meta.recovering)
            return true;
    return false;
}

/* The disk is gone (lost, or wiped by an operator because it would not open): formatted again
 * as recovering, which `allocdbd recover` does. At most f replicas ever lose data (the faulty
 * ones), one at a time: more is data loss no protocol survives. */
static void lose_disk(struct sim_world *w, struct sim_replica *r)
{
    if (r->up)
        sim_replica_stop(r);
    sim_net_drop_node(w->net, r->id);
    sim_net_drop_node(w->cnet, r->id);
    sim_replica_wipe(r, prng_u64(&w->rng_faults));
    if (!w->liveness)
        bad_disk(w, r);
    r->disk_lost_ns = w->now;
    r->down_until_ns = w->now + prng_range(&w->rng_faults, 50, 1000) * 1000000ull;
    w->stats->disk_losses++;
    sim_trace(w, "r%u lost its disk: formatted to recover", r->id);
}

static void faults_tick(struct sim_world *w)
{
    struct prng *p = &w->rng_faults;
    for (u32 i = 0; i < w->n; i++) {
        struct sim_replica *r = &w->replicas[i];
        if (r->faulted && w->now >= r->down_until_ns && !any_recovering(w))
            lose_disk(w, r);
        if (!r->up && !r->faulted && w->now >= r->down_until_ns)
            restart(w, r);
    }
    if (!w->opt.faults || w->liveness)
        return;
    if (prng_chance(p, w->crash_ppm)) {
        struct sim_replica *r = &w->replicas[prng_below(p, w->n)];
        if (r->up)
            crash(w, r);
    }
    if (prng_chance(p, w->io_crash_ppm)) {
        /* Die inside the next few disk operations: between a write and its fsync. */
        struct sim_replica *r = &w->replicas[prng_below(p, w->n)];
        if (r->up) {
            io_fault_crash_after(r->disk, prng_below(p, 4));
            w->stats->io_crashes++;
        }
    }
    if (prng_chance(p, w->fsync_fail_ppm)) {
        /* An fsync fails: the WAL halts, the process dies and restarts from what is durable. */
        struct sim_replica *r = &w->replicas[prng_below(p, w->n)];
        if (r->up) {
            io_fault_fail_sync(r->disk, prng_range(p, 1, 3), -EIO);
            w->stats->fsync_failures++;
        }
    }
    if (prng_chance(p, w->bitrot_ppm)) {
        /* A bit rots on the medium (of one of the f faulty replicas): the replica must not
         * serve that entry, and a restart that finds it fails closed (it stays down: never
         * auto-repaired). */
        struct sim_replica *r = &w->replicas[prng_below(p, w->n)];
        if ((w->faulty & (1u << r->id)) && sim_replica_bitrot(r, p)) {
            w->stats->bit_flips++;
            sim_trace(w, "r%u bit flip in its WAL", r->id);
        }
    }
    if (w->n > 1 && prng_chance(p, w->disk_loss_ppm)) {
        struct sim_replica *r = &w->replicas[prng_below(p, w->n)];
        if ((w->faulty & (1u << r->id)) && !any_recovering(w))
            lose_disk(w, r);
    }
    if (w->n == 1)
        return; /* nothing to partition or pause against */
    if (w->partitioned && w->now >= w->partition_heal_ns) {
        sim_net_heal(w->net);
        w->partitioned = false;
        sim_trace(w, "network healed");
    }
    if (!w->partitioned && prng_chance(p, w->partition_ppm)) {
        u64 kind = prng_below(p, 3);
        if (kind == 0) {
            u32 mask = (u32)prng_range(p, 1, (1u << w->n) - 2);
            sim_net_partition(w->net, mask);
            sim_trace(w, "partition: mask %x", mask);
        } else if (kind == 1) {
            u32 a = (u32)prng_below(p, w->n), b = (u32)prng_below(p, w->n);
            if (a != b)
                sim_net_cut_one_way(w->net, a, b);
            sim_trace(w, "one-way cut r%u -> r%u", a, b);
        } else {
            u32 a = (u32)prng_below(p, w->n);
            sim_net_isolate(w->net, a);
            sim_trace(w, "isolate r%u", a);
        }
        w->partitioned = true;
        w->partition_heal_ns = w->now + prng_range(p, 100, 4000) * 1000000ull;
        w->stats->partitions++;
    }
    if (prng_chance(p, w->pause_ppm)) {
        struct sim_replica *r = &w->replicas[prng_below(p, w->n)];
        r->paused_until_ns = w->now + prng_range(p, 100, 2000) * 1000000ull;
        w->stats->pauses++;
        sim_trace(w, "r%u paused until %llu ms", r->id,
                  (unsigned long long)(r->paused_until_ns / 1000000));
    }
}

static void after_event(struct sim_world *w, struct sim_replica *r)
{
    if (r->up && r->dead) {
        sim_replica_stop(r);
        io_fault_power_loss(r->disk, IO_FAULT_KEEP_SYNCED);
        sim_net_drop_node(w->net, r->id);
        sim_net_drop_node(w->cnet, r->id);
        r->down_until_ns = w->now + 200000000ull;
        w->stats->crashes++;
    }
}

/* ---- the run ------------------------------------------------------------------------------- */

static void draw(struct sim_world *w, struct prng *p)
{
    static const u32 sizes[] = { 1, 3, 3, 3, 5, 5 };
    w->n = w->opt.replicas ? w->opt.replicas : sizes[prng_below(p, 6)];
    w->nclients = w->opt.clients ? w->opt.clients : (u32)prng_range(p, 2, SIM_CLIENTS_MAX);
    bool faults = w->opt.faults;
    w->netcfg = (struct sim_net_config){
        .nodes = w->n + w->nclients,
        .packets_max = 8192,
        .packet_bytes_max = VSR_MESSAGE_MAX > sizeof(struct sim_msg) ? VSR_MESSAGE_MAX
                                                                    : sizeof(struct sim_msg),
        .loss_ppm = faults ? (u32)prng_below(p, 300001) : 0,
        .dup_ppm = faults ? (u32)prng_below(p, 500001) : 0,
        .replay_ppm = faults ? (u32)prng_below(p, 50001) : 0,
        .replay_ring = faults ? 32 : 0,
        .delay_min_ns = 100000,
        .delay_max_ns = faults ? prng_range(p, 1, 40) * 1000000ull : 1000000,
        .late_max_ns = faults ? 500000000ull : 0,
        .seed = prng_u64(p),
    };
    w->cnetcfg = w->netcfg;
    w->cnetcfg.loss_ppm /= 4;
    w->cnetcfg.dup_ppm = 0;
    w->cnetcfg.replay_ppm = 0;
    w->cnetcfg.replay_ring = 0;
    w->cnetcfg.late_max_ns = 0;
    w->cnetcfg.seed = prng_u64(p);
    w->crash_ppm = faults ? (u32)prng_below(p, 3001) : 0;
    w->io_crash_ppm = faults ? (u32)prng_below(p, 1001) : 0;
    w->partition_ppm = faults ? (u32)prng_below(p, 5001) : 0;
    w->pause_ppm = faults ? (u32)prng_below(p, 2001) : 0;
    w->clock_jump_ppm = faults ? (u32)prng_below(p, 500001) : 0;
    w->persist_ppm = faults ? (u32)prng_below(p, 20001) : 0;
    w->fsync_fail_ppm = faults ? (u32)prng_below(p, 1001) : 0;
    w->bitrot_ppm = faults ? (u32)prng_below(p, 501) : 0;
    for (u32 k = 0; faults && k < (w->n - 1) / 2; k++)
        w->faulty |= 1u << prng_below(p, w->n);
    /* Small segments and frequent checkpoints: WALs are pruned within a run, so replicas fall
     * behind them and catch up by state transfer. */
    w->segment_bytes = prng_range(p, 4, 64) * 1024;
    w->checkpoint_every = prng_range(p, 20, 400);
    w->disk_loss_ppm = faults ? (u32)prng_below(p, 2001) : 0;
    /* Bad disks on the faulty minority: read errors and misdirected writes up to 10% (half
     * the seeds without). */
    bool bad = faults && prng_below(p, 2);
    w->read_fault_ppm = bad ? (u32)prng_below(p, 100001) : 0;
    w->misdirect_ppm = bad ? (u32)prng_below(p, 100001) : 0;
    /* What the faulty minority suffers: its clocks, its disks, or both (a third of the seeds
     * each). A replica whose disk keeps failing is seldom up long enough to lead with a clock
     * an hour fast, the case the early-expiry check is for. */
    u64 focus = faults ? prng_below(p, 3) : 2;
    if (focus == 0) {
        w->disk_loss_ppm = w->read_fault_ppm = w->misdirect_ppm = 0;
        w->bitrot_ppm = 0;
        w->clock_focus = true;
    } else if (focus == 1) {
        w->clock_jump_ppm = 0;
    }
}

static void sim_sm_defaults(struct sm_config *c)
{
    memset(c, 0, sizeof(*c));
    c->resource_capacity = 64;
    c->reservation_capacity = 4096;
    c->operation_capacity = 16384;
    c->expiration_capacity = 4096;
    c->max_ttl_slots = 64;
    c->dedupe_window_slots = 36000; /* an hour: longer than any client retries */
    c->history_window_slots = 50;
}

static void deliver(struct sim_world *w, const struct sim_net_packet *pk)
{
    if (pk->to < w->n) {
        struct sim_replica *r = &w->replicas[pk->to];
        sim_replica_receive(r, pk->from, pk->bytes, pk->len);
        after_event(w, r);
    } else {
        client_receive(w, &w->clients[pk->to - w->n], pk->bytes, pk->len);
    }
}

static void tick(struct sim_world *w)
{
    faults_tick(w);
    for (u32 i = 0; i < w->n; i++) {
        sim_replica_tick(&w->replicas[i]);
        after_event(w, &w->replicas[i]);
    }
    for (u32 i = 0; i < w->nclients; i++)
        client_tick(w, &w->clients[i]);
    w->stats->steps++;
    if (w->stats->steps % 100 == 0) {
        check_invariants(w);
        for (u32 i = 0; i < w->n && w->opt.trace; i++) {
            struct sim_replica *r = &w->replicas[i];
            if (!r->up)
                continue;
            struct vsr *v = &r->vsr;
            sim_trace(w, "r%u %s view=%llu log_view=%llu op=%llu wal_head=%llu durable=%llu "
                      "verified=%llu commit=%llu/%llu applied=%llu", i, vsr_status_name(v->status),
                      (unsigned long long)v->view, (unsigned long long)v->log_view,
                      (unsigned long long)v->op, (unsigned long long)v->wal_head,
                      (unsigned long long)v->durable, (unsigned long long)v->verified,
                      (unsigned long long)v->commit,
                      (unsigned long long)v->commit_max, (unsigned long long)r->applied);
        }
    }
}

static void begin_liveness(struct sim_world *w)
{
    w->liveness = true;
    sim_net_heal(w->net);
    w->partitioned = false;
    for (u32 i = 0; i < w->n; i++) {
        struct sim_replica *r = &w->replicas[i];
        r->paused_until_ns = 0;
        if (!r->up && !r->faulted)
            r->down_until_ns = w->now;
    }
    /* Bad disks are replaced too (damage they did stays: a replica that cannot open its disk
     * is wiped and recovers). */
    for (u32 i = 0; i < w->n; i++)
        io_fault_bad_disk(w->replicas[i].disk, 0, 0);
    w->liveness_acked_at_start = w->stats->acked;
    sim_trace(w, "liveness phase: faults healed");
}

static void check_liveness(struct sim_world *w)
{
    u32 faulted = 0;
    for (u32 i = 0; i < w->n; i++)
        faulted += w->replicas[i].faulted;
    if (faulted > (w->n - 1) / 2)
        return; /* no quorum of intact disks: nothing to require */
    if (w->stats->acked == w->liveness_acked_at_start) {
        sim_fail(w, "liveness: no write acknowledged within %llu ms after the heal",
                 (unsigned long long)w->opt.liveness_ms);
        return;
    }
    /* Converged: every running replica applied the same prefix to the same state. */
    u64 top = 0;
    for (u32 i = 0; i < w->n; i++)
        if (w->replicas[i].up && w->replicas[i].applied > top)
            top = w->replicas[i].applied;
    for (u32 i = 0; i < w->n; i++) {
        struct sim_replica *r = &w->replicas[i];
        if (!r->up)
            continue;
        /* A disk lost in the last half of the liveness time (damage from before the heal found
         * at a restart) may still be recovering, and catching up. */
        if (r->disk_lost_ns != 0 && r->disk_lost_ns + w->opt.liveness_ms * 500000ull > w->now)
            continue;
        if (r->meta.recovering)
            sim_fail(w, "liveness: r%u lost its disk and has not recovered", i);
        if (r->applied + 64 < top) /* within a pipeline of the others */
            sim_fail(w, "liveness: r%u applied %llu, others %llu", i,
                     (unsigned long long)r->applied, (unsigned long long)top);
    }
}

static u64 final_digest(struct sim_world *w)
{
    /* Every replica message (encoded: no padding), every entry applied, every client answer
     * taken. Client messages are structs whose padding is not ours to hash. */
    mix(w, sim_net_digest(w->net));
    for (u32 i = 0; i < w->n; i++) {
        struct sim_replica *r = &w->replicas[i];
        mix(w, r->applied);
        mix(w, r->vsr.view);
        if (r->up) {
            struct sm_digest d = sm_digest(&r->sm);
            u64 x[sizeof(d) / 8 + 1];
            memset(x, 0, sizeof(x));
            memcpy(x, &d, sizeof(d));
            for (u32 k = 0; k < sizeof(d) / 8; k++)
                mix(w, x[k]);
        }
    }
    return w->digest;
}

static void collect(struct sim_world *w)
{
    struct sim_stats *s = w->stats;
    struct sim_net_counters nc = sim_net_counters(w->net);
    s->net_sent = nc.sent;
    s->net_lost = nc.lost;
    s->net_duplicated = nc.duplicated;
    s->net_replayed = nc.replayed;
    s->net_dropped_partition = nc.dropped_partition;
    /* The replicas' protocol counters are added as each incarnation stops (the last ones at
     * sim_replica_destroy). */
    s->replicas = w->n;
    s->clients = w->nclients;
    s->sim_ms = w->now / 1000000;
}

int sim_run(const struct sim_options *opt, struct sim_stats *stats, u64 *digest, char *why,
            size_t why_len)
{
    struct sim_world *w = calloc(1, sizeof(*w));
    ADB_ASSERT(w);
    memset(stats, 0, sizeof(*stats));
    w->opt = *opt;
    w->stats = stats;
    w->why = why;
    w->why_len = why_len;
    why[0] = 0;
    struct prng root;
    prng_init(&root, opt->seed);
    struct prng rng_draw = prng_fork(&root);
    w->rng_faults = prng_fork(&root);
    w->rng_clients = prng_fork(&root);
    draw(w, &rng_draw);
    sim_sm_defaults(&w->smc);
    ADB_ASSERT(model_init(&w->model, &w->smc));
    w->model_next = 1;
    w->model_out = calloc(SIM_LSN_CAP, sizeof(*w->model_out));
    w->model_op = calloc(SIM_LSN_CAP, sizeof(*w->model_op));
    w->creator = calloc(SIM_LSN_CAP, sizeof(*w->creator));
    w->frames = calloc(SIM_LSN_CAP, sizeof(*w->frames));
    w->frame_len = calloc(SIM_LSN_CAP, sizeof(*w->frame_len));
    w->seqt = calloc(SIM_LSN_CAP, sizeof(*w->seqt));
    w->state = calloc(SIM_LSN_CAP, sizeof(*w->state));
    ADB_ASSERT(w->model_out && w->model_op && w->creator && w->frames && w->frame_len && w->seqt && w->state);
    w->net = sim_net_create(&w->netcfg);
    w->cnet = sim_net_create(&w->cnetcfg);
    ADB_ASSERT(w->net && w->cnet);
    sim_trace(w, "seed %llu: %u replicas, %u clients, loss %u ppm, dup %u ppm, delay <= %llu ms",
              (unsigned long long)opt->seed, w->n, w->nclients, w->netcfg.loss_ppm,
              w->netcfg.dup_ppm, (unsigned long long)(w->netcfg.delay_max_ns / 1000000));
    for (u32 i = 0; i < w->n; i++) {
        sim_replica_format(&w->replicas[i], w, (u8)i, prng_u64(&root));
        if (w->clock_focus && (w->faulty & (1u << i)) && prng_below(&w->rng_faults, 2))
            w->replicas[i].wall_offset_ms = prng_below(&w->rng_faults, 2) ? 3600000 : -3600000;
        ADB_ASSERT(sim_replica_start(&w->replicas[i]));
        bad_disk(w, &w->replicas[i]);
    }
    for (u32 i = 0; i < w->nclients; i++) {
        struct sim_client *c = &w->clients[i];
        c->node = w->n + i;
        c->index = i;
        c->ops = calloc(SIM_OPS_PER_CLIENT, sizeof(*c->ops));
        ADB_ASSERT(c->ops);
        c->next_ns = 0;
    }
    u64 safety_end = opt->safety_ms * 1000000ull;
    u64 end = safety_end + opt->liveness_ms * 1000000ull;
    w->tick_next = 0;
    while (w->now < end && !w->failed) {
        if (!w->liveness && w->now >= safety_end)
            begin_liveness(w);
        u64 next = sim_net_next_time(w->net);
        if (sim_net_next_time(w->cnet) < next)
            next = sim_net_next_time(w->cnet);
        if (next > w->tick_next)
            next = w->tick_next;
        if (next > w->now)
            w->now = next;
        struct sim_net_packet pk;
        while (!w->failed && sim_net_deliver(w->net, w->now, &pk))
            deliver(w, &pk);
        while (!w->failed && sim_net_deliver(w->cnet, w->now, &pk))
            deliver(w, &pk);
        if (w->now >= w->tick_next) {
            tick(w);
            w->tick_next += TICK_NS;
        }
    }
    if (!w->failed)
        check_invariants(w);
    if (!w->failed)
        check_liveness(w);
    if (!w->failed) {
        /* A definite rejection never took effect. */
        for (u32 i = 0; i < w->nclients && !w->failed; i++)
            for (u64 s = 1; s <= w->clients[i].serial; s++) {
                struct op_record *op = &w->clients[i].ops[s];
                if (op->abandoned && op->executed_lsn != 0) {
                    sim_fail(w, "client %u operation %llu was rejected definitely but executed "
                             "at lsn %llu", w->clients[i].node, (unsigned long long)s,
                             (unsigned long long)op->executed_lsn);
                    break;
                }
            }
    }
    collect(w);
    *digest = final_digest(w);
    int rc = w->failed ? 1 : 0;
    for (u32 i = 0; i < w->n; i++)
        sim_replica_destroy(&w->replicas[i]);
    for (u32 i = 0; i < w->nclients; i++)
        free(w->clients[i].ops);
    sim_net_destroy(w->net);
    sim_net_destroy(w->cnet);
    model_free(&w->model);
    free(w->model_out);
    free(w->model_op);
    free(w->creator);
    free(w->frames);
    free(w->frame_len);
    free(w->seqt);
    free(w->state);
    free(w);
    return rc;
}
