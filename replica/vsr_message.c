/*
 * replica/vsr_message.c — encode and decode replication messages. The layout is documented in
 * replica/vsr_message.h and, with every check the decoder applies, in docs/replication.md.
 *
 * NOTES
 *   The decoder reads the header into a struct vsr_header only after the checksum passed; the
 *   command, replica, field and body rules then run on that struct (check_sender,
 *   check_fields, check_body), and the encoder asserts that the same functions accept what it
 *   is asked to send, so sender and receiver cannot disagree on what a valid message is.
 */
#include "config.h"

#include "replica/vsr_message.h"

#include "common/assert.h"
#include "common/crc32c.h"
#include "common/le.h"

#define OFF_MAGIC 0
#define OFF_VERSION 4
#define OFF_COMMAND 6
#define OFF_REPLICA 7
#define OFF_CLUSTER 8
#define OFF_VIEW 24
#define OFF_OP 32
#define OFF_COMMIT 40
#define OFF_A 48
#define OFF_B 56
#define OFF_C 64
#define OFF_SIZE 72
#define OFF_REPLICA_COUNT 76
#define OFF_RESERVED 77
#define OFF_CRC 92
#define RESERVED_SIZE (OFF_CRC - OFF_RESERVED)
ADB_STATIC_ASSERT(OFF_CRC + 4 == VSR_HEADER_SIZE, "crc is the last header field");
ADB_STATIC_ASSERT(RESERVED_SIZE == 15, "reserved bytes 77..91");

/* Entry header on the wire (VSR_ENTRY_HEADER_SIZE bytes). */
#define ENTRY_OFF_LSN 0
#define ENTRY_OFF_VIEW 8
#define ENTRY_OFF_SLOT 16
#define ENTRY_OFF_CRC 24
#define ENTRY_OFF_PREV 28
ADB_STATIC_ASSERT(ENTRY_OFF_PREV + 4 == VSR_ENTRY_HEADER_SIZE, "entry header is 32 bytes");

ADB_STATIC_ASSERT(VSR_BODY_MAX >= WAL_FRAME_MAX, "a prepare body holds the largest frame");
ADB_STATIC_ASSERT(VSR_BODY_MAX >= VSR_HEADERS_MAX * VSR_ENTRY_HEADER_SIZE,
                  "a view change body holds VSR_HEADERS_MAX entry headers");
ADB_STATIC_ASSERT(VSR_BODY_MAX >= VSR_CHUNK_MAX, "a chunk body holds VSR_CHUNK_MAX bytes");
ADB_STATIC_ASSERT(VSR_REPLICAS_MAX <= 255, "replica indexes fit a byte");

/* Which of op, a, b, c a command uses (the others must be zero), and its body. */
#define USES_OP 1u
#define USES_A 2u
#define USES_B 4u
#define USES_C 8u

enum body_kind {
    BODY_NONE = 0,
    BODY_FRAME,   /* exactly one WAL frame */
    BODY_HEADERS, /* entry headers */
    BODY_CHUNK,   /* snapshot bytes */
    BODY_FRAMES,  /* WAL frames, consecutive and chained */
};

struct command_rule {
    const char *name;
    u8 uses;
    u8 body;
};

static const struct command_rule command_rules[VSR_COMMAND_MAX + 1] = {
    [VSR_PING] = {"ping", USES_OP | USES_A | USES_B | USES_C, BODY_NONE},
    [VSR_PONG] = {"pong", USES_A | USES_B, BODY_NONE},
    [VSR_PREPARE] = {"prepare", USES_OP | USES_A, BODY_FRAME},
    [VSR_PREPARE_OK] = {"prepare_ok", USES_OP | USES_A, BODY_NONE},
    [VSR_COMMIT] = {"commit", USES_A, BODY_NONE},
    [VSR_COMMIT_OK] = {"commit_ok", USES_OP | USES_A, BODY_NONE},
    [VSR_START_VIEW_CHANGE] = {"start_view_change", 0, BODY_NONE},
    [VSR_DO_VIEW_CHANGE] = {"do_view_change", USES_OP | USES_A | USES_B | USES_C, BODY_HEADERS},
    [VSR_START_VIEW] = {"start_view", USES_OP | USES_A, BODY_HEADERS},
    [VSR_REQUEST_START_VIEW] = {"request_start_view", USES_A, BODY_NONE},
    [VSR_REQUEST_PREPARE] = {"request_prepare", USES_OP | USES_A, BODY_NONE},
    [VSR_REQUEST_SNAPSHOT] = {"request_snapshot", USES_OP | USES_A, BODY_NONE},
    [VSR_SNAPSHOT_CHUNK] = {"snapshot_chunk", USES_OP | USES_A | USES_B | USES_C, BODY_CHUNK},
    [VSR_PREPARES] = {"prepares", USES_OP | USES_A, BODY_FRAMES},
};

const char *vsr_command_name(u8 command)
{
    if (command < 1 || command > VSR_COMMAND_MAX)
        return "unknown";
    return command_rules[command].name;
}

const char *vsr_decode_status_name(enum vsr_decode_status s)
{
    switch (s) {
    case VSR_DECODE_OK: return "ok";
    case VSR_DECODE_SHORT: return "short message";
    case VSR_DECODE_BAD_MAGIC: return "bad magic";
    case VSR_DECODE_BAD_VERSION: return "unsupported version";
    case VSR_DECODE_BAD_SIZE: return "size out of range";
    case VSR_DECODE_BAD_CHECKSUM: return "checksum mismatch";
    case VSR_DECODE_BAD_COMMAND: return "unknown command";
    case VSR_DECODE_BAD_REPLICA: return "bad replica";
    case VSR_DECODE_BAD_RESERVED: return "reserved bytes not zero";
    case VSR_DECODE_BAD_FIELD: return "bad field for the command";
    case VSR_DECODE_BAD_BODY: return "bad body for the command";
    case VSR_DECODE_TRAILING: return "trailing bytes";
    }
    return "unknown";
}

static u32 message_crc(const u8 *header, const u8 *body, u32 body_len)
{
    return crc32c(crc32c(0, header, OFF_CRC), body, body_len);
}

/* ---- entry headers ------------------------------------------------------------------------- */

static void entry_put(u8 *p, const struct vsr_entry_header *e)
{
    le_put_u64(p + ENTRY_OFF_LSN, e->lsn);
    le_put_u64(p + ENTRY_OFF_VIEW, e->view);
    le_put_u64(p + ENTRY_OFF_SLOT, e->request_slot);
    le_put_u32(p + ENTRY_OFF_CRC, e->crc);
    le_put_u32(p + ENTRY_OFF_PREV, e->prev_crc);
}

static void entry_get(const u8 *p, struct vsr_entry_header *e)
{
    e->lsn = le_get_u64(p + ENTRY_OFF_LSN);
    e->view = le_get_u64(p + ENTRY_OFF_VIEW);
    e->request_slot = le_get_u64(p + ENTRY_OFF_SLOT);
    e->crc = le_get_u32(p + ENTRY_OFF_CRC);
    e->prev_crc = le_get_u32(p + ENTRY_OFF_PREV);
}

void vsr_entry_headers_encode(u8 *out, const struct vsr_entry_header *hs, u32 count)
{
    ADB_ASSERT(count <= VSR_HEADERS_MAX);
    for (u32 i = 0; i < count; i++)
        entry_put(out + (size_t)i * VSR_ENTRY_HEADER_SIZE, &hs[i]);
}

void vsr_entry_header_decode(const u8 *p, struct vsr_entry_header *out)
{
    entry_get(p, out);
}

void vsr_entry_header_get(const struct vsr_message *m, u32 i, struct vsr_entry_header *out)
{
    ADB_ASSERT(m->h.command == VSR_DO_VIEW_CHANGE || m->h.command == VSR_START_VIEW);
    ADB_ASSERT(i < m->header_count);
    entry_get(m->body + (size_t)i * VSR_ENTRY_HEADER_SIZE, out);
}

void vsr_entry_header_of_frame(const struct wal_frame *f, struct vsr_entry_header *out)
{
    out->lsn = f->lsn;
    out->view = f->view;
    out->request_slot = f->request_slot;
    out->crc = f->crc;
    out->prev_crc = f->prev_crc;
}

/* ---- the rules after the checksum ---------------------------------------------------------- */

/* The command and the sender of h. */
static enum vsr_decode_status check_sender(const struct vsr_header *h)
{
    /* A command this build does not know: never guess what its fields mean. */
    if (h->command < 1 || h->command > VSR_COMMAND_MAX)
        return VSR_DECODE_BAD_COMMAND;
    /* A cluster has 1..VSR_REPLICAS_MAX replicas and the sender is one of them. Whether it is
     * one of *ours* (the receiver's configuration) is the protocol core's decision. */
    if (h->replica_count < 1 || h->replica_count > VSR_REPLICAS_MAX)
        return VSR_DECODE_BAD_REPLICA;
    if (h->replica >= h->replica_count)
        return VSR_DECODE_BAD_REPLICA;
    return VSR_DECODE_OK;
}

/* op, a, b and c of h for its command (h passed check_sender). */
static enum vsr_decode_status check_fields(const struct vsr_header *h)
{
    /* Fields the command does not use are zero, so a later version can give them meaning and
     * a message has exactly one encoding. view and commit are always free. */
    u8 uses = command_rules[h->command].uses;
    if (!(uses & USES_OP) && h->op != 0)
        return VSR_DECODE_BAD_FIELD;
    if (!(uses & USES_A) && h->a != 0)
        return VSR_DECODE_BAD_FIELD;
    if (!(uses & USES_B) && h->b != 0)
        return VSR_DECODE_BAD_FIELD;
    if (!(uses & USES_C) && h->c != 0)
        return VSR_DECODE_BAD_FIELD;
    /* Ranges of the fields that are used. */
    switch (h->command) {
    case VSR_PREPARE_OK:
    case VSR_REQUEST_PREPARE:
        /* LSN 0 is "none": there is no such entry to acknowledge or to ask for. */
        if (h->op == 0)
            return VSR_DECODE_BAD_FIELD;
        break;
    case VSR_PREPARE:
        /* a: a flag. */
        if (h->a > 1)
            return VSR_DECODE_BAD_FIELD;
        break;
    case VSR_PREPARES:
        /* a: the count, of entries op - a + 1 .. op (a single entry is a prepare). */
        if (h->a < 2 || h->a > h->op)
            return VSR_DECODE_BAD_FIELD;
        break;
    case VSR_REQUEST_START_VIEW:
        /* The nonce tells the answer to this request from an older start_view. */
        if (h->a == 0)
            return VSR_DECODE_BAD_FIELD;
        break;
    case VSR_DO_VIEW_CHANGE:
        /* log_view is the last view the sender was normal in: never above the view it is
         * changing to. */
        if (h->a > h->view)
            return VSR_DECODE_BAD_FIELD;
        /* The entries it cannot read are in its log: b, and c's bits for the 64 above it. */
        if (h->b > h->op || (h->b == 0 && h->c != 0))
            return VSR_DECODE_BAD_FIELD;
        if (h->c != 0 && h->op - h->b < 64 && (h->c >> (h->op - h->b)) != 0)
            return VSR_DECODE_BAD_FIELD; /* bits 0 .. op - b - 1 name entries up to op */
        break;
    case VSR_PING:
        /* A WAL reaches back at least to the entry after the sender's newest image (one is
         * pruned only below an image). */
        if (h->b != UINT64_MAX && h->c > h->b + 1)
            return VSR_DECODE_BAD_FIELD;
        break;
    case VSR_SNAPSHOT_CHUNK:
        /* A chunk of an empty snapshot: there is no such file. */
        if (h->b == 0)
            return VSR_DECODE_BAD_FIELD;
        break;
    default: break;
    }
    return VSR_DECODE_OK;
}

/*
 * Entry headers of a do_view_change or start_view: one contiguous, hash-chained stretch of the
 * sender's log ending at its op head, never from a later view than the message's (nor, for
 * do_view_change, than the sender's log_view). *count: OUT.
 */
static enum vsr_decode_status check_headers(const struct vsr_header *h, const u8 *body,
                                            u32 body_len, u32 *count)
{
    if (body_len % VSR_ENTRY_HEADER_SIZE != 0)
        return VSR_DECODE_BAD_BODY;
    u32 n = body_len / VSR_ENTRY_HEADER_SIZE;
    if (n > VSR_HEADERS_MAX)
        return VSR_DECODE_BAD_BODY;
    u64 view_max = h->command == VSR_DO_VIEW_CHANGE ? h->a : h->view;
    struct vsr_entry_header prev = {0}, e;
    for (u32 i = 0; i < n; i++) {
        entry_get(body + (size_t)i * VSR_ENTRY_HEADER_SIZE, &e);
        if (e.lsn == 0)
            return VSR_DECODE_BAD_BODY;
        if (e.view > view_max)
            return VSR_DECODE_BAD_BODY;
        if (i > 0) {
            /* prev.lsn + 1 cannot wrap here: it would be lsn 0, refused above. */
            if (e.lsn != prev.lsn + 1)
                return VSR_DECODE_BAD_BODY;
            if (e.view < prev.view)
                return VSR_DECODE_BAD_BODY;
            if (e.request_slot < prev.request_slot)
                return VSR_DECODE_BAD_BODY;
            if (e.prev_crc != prev.crc)
                return VSR_DECODE_BAD_BODY;
        }
        prev = e;
    }
    if (n > 0 && prev.lsn != h->op)
        return VSR_DECODE_BAD_BODY;
    *count = n;
    return VSR_DECODE_OK;
}

/* The body's shape for h's command (h passed check_fields). frame, count: OUT. */
static enum vsr_decode_status check_body(const struct vsr_header *h, const u8 *body,
                                         u32 body_len, struct wal_frame *frame, u32 *count)
{
    switch (command_rules[h->command].body) {
    case BODY_NONE:
        return body_len == 0 ? VSR_DECODE_OK : VSR_DECODE_BAD_BODY;
    case BODY_FRAME:
        /* One intact frame, nothing after it, of the entry op, proposed no later than now. */
        if (wal_frame_decode_exact(body, body_len, frame) != WAL_FRAME_OK)
            return VSR_DECODE_BAD_BODY;
        if (frame->lsn != h->op)
            return VSR_DECODE_BAD_BODY;
        if (frame->view > h->view)
            return VSR_DECODE_BAD_BODY;
        return VSR_DECODE_OK;
    case BODY_HEADERS:
        return check_headers(h, body, body_len, count);
    case BODY_FRAMES: {
        /* h->a intact frames exactly filling the body: op - a + 1 .. op, chained. */
        u32 at = 0, n = 0;
        struct wal_frame f, prev = { 0 };
        while (at < body_len) {
            u32 used;
            if (n == h->a || wal_frame_decode(body + at, body_len - at, &f, &used) != WAL_FRAME_OK)
                return VSR_DECODE_BAD_BODY;
            if (f.lsn != h->op - h->a + 1 + n || f.view > h->view || (n > 0 && f.prev_crc != prev.crc))
                return VSR_DECODE_BAD_BODY;
            if (n == 0)
                *frame = f;
            prev = f;
            at += used;
            n++;
        }
        if (n != h->a)
            return VSR_DECODE_BAD_BODY;
        *count = n;
        return VSR_DECODE_OK;
    }
    case BODY_CHUNK:
        /* (VSR_CHUNK_MAX is VSR_BODY_MAX today, so only an empty chunk fails here; the bound
         * stays in case the body maximum grows for another command.) */
        if (body_len < 1 || body_len > VSR_CHUNK_MAX)
            return VSR_DECODE_BAD_BODY;
        /* [a, a + len) inside [0, b), without computing a + len (it could wrap). */
        if (body_len > h->b || h->a > h->b - body_len)
            return VSR_DECODE_BAD_BODY;
        return VSR_DECODE_OK;
    }
    return VSR_DECODE_BAD_BODY;
}

/* ---- encode and decode --------------------------------------------------------------------- */

u32 vsr_message_encode(u8 *buf, size_t cap, struct vsr_header *h, const u8 *body, u32 body_len)
{
    ADB_ASSERT(body_len <= VSR_BODY_MAX);
    ADB_ASSERT(body_len == 0 || body != NULL);
    u32 size = VSR_HEADER_SIZE + body_len;
    ADB_ASSERT(cap >= size);
    /* Sending a message the receiver would drop is a programming error. */
    ADB_ASSERT(check_sender(h) == VSR_DECODE_OK);
    ADB_ASSERT(check_fields(h) == VSR_DECODE_OK);
    struct wal_frame frame;
    u32 count;
    ADB_ASSERT(check_body(h, body, body_len, &frame, &count) == VSR_DECODE_OK);

    le_put_u32(buf + OFF_MAGIC, VSR_MESSAGE_MAGIC);
    le_put_u16(buf + OFF_VERSION, VSR_MESSAGE_VERSION);
    buf[OFF_COMMAND] = h->command;
    buf[OFF_REPLICA] = h->replica;
    le_put_u128(buf + OFF_CLUSTER, h->cluster_id);
    le_put_u64(buf + OFF_VIEW, h->view);
    le_put_u64(buf + OFF_OP, h->op);
    le_put_u64(buf + OFF_COMMIT, h->commit);
    le_put_u64(buf + OFF_A, h->a);
    le_put_u64(buf + OFF_B, h->b);
    le_put_u64(buf + OFF_C, h->c);
    le_put_u32(buf + OFF_SIZE, size);
    buf[OFF_REPLICA_COUNT] = h->replica_count;
    memset(buf + OFF_RESERVED, 0, RESERVED_SIZE);
    if (body_len != 0 && buf + VSR_HEADER_SIZE != body)
        memmove(buf + VSR_HEADER_SIZE, body, body_len);
    h->size = size;
    h->crc = message_crc(buf, buf + VSR_HEADER_SIZE, body_len);
    le_put_u32(buf + OFF_CRC, h->crc);
    return size;
}

enum vsr_decode_status vsr_message_decode(const u8 *buf, size_t len, struct vsr_message *out,
                                          u32 *msg_len)
{
    /* Not even a header: a partial read, or the end of the data. */
    if (len < VSR_HEADER_SIZE)
        return VSR_DECODE_SHORT;
    /* Not a replication message (another protocol on the port, or garbage). */
    if (le_get_u32(buf + OFF_MAGIC) != VSR_MESSAGE_MAGIC)
        return VSR_DECODE_BAD_MAGIC;
    /* A format this build does not understand (a replica of another version): never guess. */
    if (le_get_u16(buf + OFF_VERSION) != VSR_MESSAGE_VERSION)
        return VSR_DECODE_BAD_VERSION;
    /* The bound is checked before the size is used for anything. */
    u32 size = le_get_u32(buf + OFF_SIZE);
    if (size < VSR_HEADER_SIZE || size > VSR_MESSAGE_MAX)
        return VSR_DECODE_BAD_SIZE;
    /* The header claims more than there is: the rest has not arrived (or never will). */
    if (len < size)
        return VSR_DECODE_SHORT;
    /* The checksum covers every header byte before it and the body; nothing after this point
     * reads a field that it did not vouch for. */
    u32 body_len = size - VSR_HEADER_SIZE;
    const u8 *body = buf + VSR_HEADER_SIZE;
    u32 crc = le_get_u32(buf + OFF_CRC);
    if (message_crc(buf, body, body_len) != crc)
        return VSR_DECODE_BAD_CHECKSUM;

    struct vsr_message m;
    memset(&m, 0, sizeof(m));
    m.h.command = buf[OFF_COMMAND];
    m.h.replica = buf[OFF_REPLICA];
    m.h.replica_count = buf[OFF_REPLICA_COUNT];
    m.h.cluster_id = le_get_u128(buf + OFF_CLUSTER);
    m.h.view = le_get_u64(buf + OFF_VIEW);
    m.h.op = le_get_u64(buf + OFF_OP);
    m.h.commit = le_get_u64(buf + OFF_COMMIT);
    m.h.a = le_get_u64(buf + OFF_A);
    m.h.b = le_get_u64(buf + OFF_B);
    m.h.c = le_get_u64(buf + OFF_C);
    m.h.size = size;
    m.h.crc = crc;
    enum vsr_decode_status s = check_sender(&m.h);
    if (s != VSR_DECODE_OK)
        return s;
    /* Reserved bytes must be zero so a later version can give them meaning. */
    if (!le_all_zero(buf + OFF_RESERVED, RESERVED_SIZE))
        return VSR_DECODE_BAD_RESERVED;
    s = check_fields(&m.h);
    if (s != VSR_DECODE_OK)
        return s;
    s = check_body(&m.h, body, body_len, &m.frame, &m.header_count);
    if (s != VSR_DECODE_OK)
        return s;

    m.body = body;
    m.body_len = body_len;
    *out = m;
    *msg_len = size;
    return VSR_DECODE_OK;
}

enum vsr_decode_status vsr_message_decode_exact(const u8 *buf, size_t len,
                                                struct vsr_message *out)
{
    u32 msg_len;
    struct vsr_message m;
    enum vsr_decode_status s = vsr_message_decode(buf, len, &m, &msg_len);
    if (s != VSR_DECODE_OK)
        return s;
    /* out stays untouched on TRAILING too, as on every other failure. */
    if (msg_len != len)
        return VSR_DECODE_TRAILING;
    *out = m;
    return VSR_DECODE_OK;
}
