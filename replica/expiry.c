/*
 * replica/expiry.c — timing wheel plus due list (see expiry.h for the invariants).
 *
 * NOTES
 *   Lists are circular and doubly linked through expiry_node.prev/next, which hold pool
 *   position + 1 so that 0 can mean "not on any list". The head's prev is the tail, which makes
 *   append and whole-list splice O(1).
 */
#include "replica/expiry.h"

#include "common/assert.h"

#include <string.h>

#define EXPIRY_WHEEL_MIN 64

u64 expiry_wheel_size(u64 max_ttl_slots)
{
    u64 w = EXPIRY_WHEEL_MIN;
    while (w <= max_ttl_slots)
        w <<= 1;
    return w;
}

void expiry_sizes(u32 node_count, u64 max_ttl_slots, struct expiry_sizes *out)
{
    u64 w = expiry_wheel_size(max_ttl_slots);
    out->nodes = (u64)node_count * sizeof(struct expiry_node);
    out->buckets = w * sizeof(u32);
    out->bitmap = (w / 64) * sizeof(u64);
}

void expiry_init(struct expiry *ex, u32 node_count, u32 capacity, u64 max_ttl_slots,
                 struct expiry_node *nodes, u32 *buckets, u64 *bitmap)
{
    u64 w = expiry_wheel_size(max_ttl_slots);
    memset(nodes, 0, (size_t)node_count * sizeof(*nodes));
    memset(buckets, 0, (size_t)w * sizeof(*buckets));
    memset(bitmap, 0, (size_t)(w / 64) * sizeof(*bitmap));
    expiry_init_zeroed(ex, node_count, capacity, max_ttl_slots, nodes, buckets, bitmap);
}

void expiry_init_zeroed(struct expiry *ex, u32 node_count, u32 capacity, u64 max_ttl_slots,
                        struct expiry_node *nodes, u32 *buckets, u64 *bitmap)
{
    ADB_ASSERT(capacity <= node_count);
    u64 w = expiry_wheel_size(max_ttl_slots);
    ex->nodes = nodes;
    ex->buckets = buckets;
    ex->bitmap = bitmap;
    ex->wheel_mask = w - 1;
    ex->node_count = node_count;
    ex->capacity = capacity;
    ex->count = 0;
    ex->due_head = 0;
    ex->due_count = 0;
    ex->due_through = 0;
}

static struct expiry_node *node_at(const struct expiry *ex, u32 ref)
{
    ADB_ASSERT(ref != 0 && ref <= ex->node_count);
    return &ex->nodes[ref - 1];
}

static void list_append(struct expiry *ex, u32 *head, u32 ref)
{
    struct expiry_node *n = node_at(ex, ref);
    if (*head == 0) {
        n->prev = n->next = ref;
        *head = ref;
        return;
    }
    struct expiry_node *h = node_at(ex, *head);
    u32 tail = h->prev;
    n->prev = tail;
    n->next = *head;
    node_at(ex, tail)->next = ref;
    h->prev = ref;
}

static void list_remove(struct expiry *ex, u32 *head, u32 ref)
{
    struct expiry_node *n = node_at(ex, ref);
    if (n->next == ref) {
        ADB_ASSERT(*head == ref);
        *head = 0;
    } else {
        node_at(ex, n->prev)->next = n->next;
        node_at(ex, n->next)->prev = n->prev;
        if (*head == ref)
            *head = n->next;
    }
    n->prev = n->next = 0;
}

/* Appends the whole circular list `src` to the end of `*dst`. */
static void list_splice(struct expiry *ex, u32 *dst, u32 src)
{
    if (*dst == 0) {
        *dst = src;
        return;
    }
    struct expiry_node *d = node_at(ex, *dst);
    struct expiry_node *s = node_at(ex, src);
    u32 dtail = d->prev, stail = s->prev;
    node_at(ex, dtail)->next = src;
    s->prev = dtail;
    node_at(ex, stail)->next = *dst;
    d->prev = stail;
}

static void bit_set(struct expiry *ex, u64 b) { ex->bitmap[b >> 6] |= (u64)1 << (b & 63); }
static void bit_clear(struct expiry *ex, u64 b) { ex->bitmap[b >> 6] &= ~((u64)1 << (b & 63)); }
static bool bit_get(const struct expiry *ex, u64 b) { return (ex->bitmap[b >> 6] >> (b & 63)) & 1; }

/*
 * Offset (>= off, < span) from `base` of the next non-empty bucket, or span if none.
 * Skips 64 empty buckets per bitmap word.
 */
static u64 scan_next(const struct expiry *ex, u64 base, u64 off, u64 span)
{
    while (off < span) {
        u64 b = (base + off) & ex->wheel_mask;
        u64 word = ex->bitmap[b >> 6] >> (b & 63);
        if (word != 0) {
            off += (u64)__builtin_ctzll(word);
            return off < span ? off : span;
        }
        off += 64 - (b & 63);
    }
    return span;
}

/* Number of wheel offsets from due_through+1 that can hold deadlines <= slot. */
static u64 wheel_span(const struct expiry *ex, u64 slot)
{
    if (slot <= ex->due_through)
        return 0;
    u64 span = slot - ex->due_through;
    return span < ex->wheel_mask + 1 ? span : ex->wheel_mask + 1;
}

void expiry_advance(struct expiry *ex, u64 slot)
{
    if (slot <= ex->due_through)
        return;
    if (ex->count > ex->due_count) {
        u64 base = ex->due_through + 1;
        u64 span = wheel_span(ex, slot);
        for (u64 off = scan_next(ex, base, 0, span); off < span;
             off = scan_next(ex, base, off + 1, span)) {
            u64 b = (base + off) & ex->wheel_mask;
            u32 head = ex->buckets[b];
            ADB_ASSERT(head != 0);
            /* Count while checking the one-deadline-per-bucket invariant; each node is moved
             * once in its life, so this walk is O(1) amortized per reservation. */
            u32 moved = 0, ref = head;
            do {
                ADB_ASSERT(node_at(ex, ref)->deadline_slot == base + off);
                moved++;
                ref = node_at(ex, ref)->next;
            } while (ref != head);
            list_splice(ex, &ex->due_head, head);
            ex->buckets[b] = 0;
            bit_clear(ex, b);
            ex->due_count += moved;
        }
    }
    ex->due_through = slot;
}

void expiry_schedule(struct expiry *ex, u32 pos, u64 deadline_slot)
{
    ADB_ASSERT(pos < ex->node_count);
    ADB_ASSERT(ex->count < ex->capacity);
    ADB_ASSERT(deadline_slot > ex->due_through);
    ADB_ASSERT(deadline_slot - ex->due_through <= ex->wheel_mask);
    struct expiry_node *n = &ex->nodes[pos];
    ADB_ASSERT(n->next == 0);
    n->deadline_slot = deadline_slot;
    u64 b = deadline_slot & ex->wheel_mask;
    list_append(ex, &ex->buckets[b], pos + 1);
    bit_set(ex, b);
    ex->count++;
}

void expiry_unschedule(struct expiry *ex, u32 pos)
{
    ADB_ASSERT(pos < ex->node_count);
    struct expiry_node *n = &ex->nodes[pos];
    ADB_ASSERT(n->next != 0);
    if (n->deadline_slot <= ex->due_through) {
        list_remove(ex, &ex->due_head, pos + 1);
        ex->due_count--;
    } else {
        u64 b = n->deadline_slot & ex->wheel_mask;
        list_remove(ex, &ex->buckets[b], pos + 1);
        if (ex->buckets[b] == 0)
            bit_clear(ex, b);
    }
    ex->count--;
}

/*
 * Visits scheduled nodes with deadline <= slot in order, at most `max` of them; calls
 * emit(ctx, pos, deadline) for each when emit is non-NULL. Returns the number visited.
 */
static u64 collect(const struct expiry *ex, u64 slot, u64 max,
                   void (*emit)(void *ctx, u32 i, u32 pos), void *ctx)
{
    u64 n = 0;
    if (ex->due_head != 0) {
        u32 ref = ex->due_head;
        do {
            const struct expiry_node *node = &ex->nodes[ref - 1];
            if (node->deadline_slot > slot || n >= max)
                return n;
            if (emit)
                emit(ctx, (u32)n, ref - 1);
            n++;
            ref = node->next;
        } while (ref != ex->due_head);
    }
    if (ex->count == ex->due_count)
        return n;
    u64 base = ex->due_through + 1;
    u64 span = wheel_span(ex, slot);
    for (u64 off = scan_next(ex, base, 0, span); off < span && n < max;
         off = scan_next(ex, base, off + 1, span)) {
        u32 head = ex->buckets[(base + off) & ex->wheel_mask];
        u32 ref = head;
        do {
            if (n >= max)
                return n;
            if (emit)
                emit(ctx, (u32)n, ref - 1);
            n++;
            ref = ex->nodes[ref - 1].next;
        } while (ref != head);
    }
    return n;
}

u32 expiry_due(const struct expiry *ex, u64 slot, u32 max, void (*emit)(void *ctx, u32 i, u32 pos),
               void *ctx)
{
    return (u32)collect(ex, slot, max, emit, ctx);
}

u64 expiry_backlog(const struct expiry *ex, u64 slot)
{
    if (slot == ex->due_through)
        return ex->due_count;
    return collect(ex, slot, UINT64_MAX, NULL, NULL);
}

void expiry_walk(const struct expiry *ex, bool (*fn)(void *ctx, u32 pos, u64 deadline), void *ctx)
{
    if (ex->due_head != 0) {
        u32 ref = ex->due_head;
        do {
            if (!fn(ctx, ref - 1, ex->nodes[ref - 1].deadline_slot))
                return;
            ref = ex->nodes[ref - 1].next;
        } while (ref != ex->due_head);
    }
    if (ex->due_through == UINT64_MAX)
        return;
    u64 base = ex->due_through + 1, span = ex->wheel_mask + 1;
    for (u64 off = scan_next(ex, base, 0, span); off < span; off = scan_next(ex, base, off + 1, span)) {
        u32 head = ex->buckets[(base + off) & ex->wheel_mask];
        u32 ref = head;
        do {
            if (!fn(ctx, ref - 1, ex->nodes[ref - 1].deadline_slot))
                return;
            ref = ex->nodes[ref - 1].next;
        } while (ref != head);
    }
}

/* Checks one circular list; returns its length or -1 if broken. */
static i64 check_list(const struct expiry *ex, u32 head)
{
    if (head == 0)
        return 0;
    i64 len = 0;
    u32 ref = head;
    do {
        if (ref == 0 || ref > ex->node_count)
            return -1;
        const struct expiry_node *n = &ex->nodes[ref - 1];
        if (n->next == 0 || n->next > ex->node_count || ex->nodes[n->next - 1].prev != ref)
            return -1;
        if (++len > ex->node_count)
            return -1;
        ref = n->next;
    } while (ref != head);
    return len;
}

bool expiry_check(const struct expiry *ex, const char **why)
{
#define FAIL(msg)                                                                         \
    do {                                                                                  \
        *why = msg;                                                                       \
        return false;                                                                     \
    } while (0)
    if (ex->count > ex->capacity)
        FAIL("expiry: count above capacity");
    i64 due = check_list(ex, ex->due_head);
    if (due < 0)
        FAIL("expiry: due list links broken");
    if ((u64)due != ex->due_count)
        FAIL("expiry: due_count does not match the due list");
    if (ex->due_head != 0) {
        u64 last = 0;
        u32 ref = ex->due_head;
        do {
            u64 d = ex->nodes[ref - 1].deadline_slot;
            if (d > ex->due_through || d < last)
                FAIL("expiry: due list out of order or not yet due");
            last = d;
            ref = ex->nodes[ref - 1].next;
        } while (ref != ex->due_head);
    }
    u64 total = (u64)due;
    for (u64 b = 0; b <= ex->wheel_mask; b++) {
        u32 head = ex->buckets[b];
        if ((head != 0) != bit_get(ex, b))
            FAIL("expiry: bitmap disagrees with bucket");
        i64 len = check_list(ex, head);
        if (len < 0)
            FAIL("expiry: bucket links broken");
        if (len == 0)
            continue;
        u64 d = ex->nodes[head - 1].deadline_slot;
        if ((d & ex->wheel_mask) != b || d <= ex->due_through || d - ex->due_through > ex->wheel_mask)
            FAIL("expiry: bucket holds a deadline outside the wheel window");
        u32 ref = head;
        do {
            if (ex->nodes[ref - 1].deadline_slot != d)
                FAIL("expiry: bucket holds two deadlines");
            ref = ex->nodes[ref - 1].next;
        } while (ref != head);
        total += (u64)len;
    }
    if (total != ex->count)
        FAIL("expiry: count does not match the lists");
    u64 linked = 0;
    for (u32 i = 0; i < ex->node_count; i++)
        linked += ex->nodes[i].next != 0;
    if (linked != ex->count)
        FAIL("expiry: stray linked node");
    return true;
#undef FAIL
}
