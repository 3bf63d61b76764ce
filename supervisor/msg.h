/*
 * supervisor/msg.h — the messages workers exchange through the shared-memory rings.
 *
 *   ingress   --msg_write-->  sequencer      (ring "write")
 *   ingress   --msg_read--->  applier        (ring "read": reads, tick)
 *   applier   --msg_expire->  sequencer      (ring "expire": due reservations to log)
 *   sequencer --msg_retry-->  applier        (ring "retry": retries answered without a frame)
 *   sequencer ==shared log==> applier (peer) (WAL frames + the tag of the request, if any)
 *   applier   --msg_result->  ingress        (ring "result")
 *   sequencer --msg_result->  ingress        (ring "reject": definite/indefinite answers)
 *
 * Every message that needs an answer carries a msg_tag naming the ingress's pending request;
 * the answer carries it back. Tags from an older ingress generation, or for a pending entry
 * that was freed (its generation moved on), are dropped: late results are harmless.
 *
 * Plain structs copied into ring slots by the producer and out by the consumer (same build,
 * same layout: the segment header's layout signature guarantees it).
 */
#ifndef ADB_SUPERVISOR_MSG_H
#define ADB_SUPERVISOR_MSG_H

#include "common/types.h"
#include "vocab/vocab.h"

struct msg_tag {
    u32 ingress_gen; /* generation of the ingress worker that sent the request */
    u32 pending;     /* index in that ingress's pending-request table */
    u32 pending_gen; /* generation of that entry */
    u16 index;       /* command index within a submit batch */
    u16 flags;       /* enum msg_tag_flags */
};

enum msg_tag_flags {
    MSG_TAG_NONE = 0,
    MSG_TAG_VALID = 1,     /* an answer is expected (entries replayed from disk have none) */
    MSG_TAG_FORCE_LOG = 2, /* write: log it even if the sequencer thinks it is a retry */
};

/* ingress -> sequencer: one client command; ttl already converted to slots. */
struct msg_write {
    struct msg_tag tag;
    struct sm_command cmd;
};

enum msg_read_kind {
    MSG_READ_RESOURCE = 1,
    MSG_READ_RESERVATION = 2,
    MSG_READ_TICK = 3, /* find due expirations now and propose them */
};

/* ingress -> applier */
struct msg_read {
    struct msg_tag tag;
    u128 id;
    u64 min_lsn;
    u8 kind; /* enum msg_read_kind */
};

/* sequencer -> applier: a retry (same operation id and fingerprint) of a command sequenced at
 * lsn; the applier answers with the stored result once it has applied lsn. */
struct msg_retry {
    struct msg_tag tag;
    struct sm_command cmd; /* the retry: its fingerprint matched, its fields name the result */
    u64 lsn;
};

/* applier -> sequencer: a reservation due for expiration. */
struct msg_expire {
    u128 reservation_id;
    u64 deadline_slot;
};

enum msg_result_type {
    MSG_RESULT_WRITE = 1,       /* outcome/code as in net/proto.h (committed, rejected,
                                 * indefinite); write fields valid for committed */
    MSG_RESULT_RESOURCE = 2,    /* read result: code = enum sm_read */
    MSG_RESULT_RESERVATION = 3, /* read result: code = enum sm_read */
    MSG_RESULT_TICK = 4,        /* tick fields */
    MSG_RESULT_RESUBMIT = 5,    /* the retry shortcut missed: send the write again with
                                 * MSG_TAG_FORCE_LOG (never seen by clients) */
    MSG_RESULT_NOT_PRIMARY = 6, /* a read this replica may not serve (a cluster: not the serving
                                 * primary, or it lost its view before the read's round) */
};

/* applier or sequencer -> ingress */
struct msg_result {
    struct msg_tag tag;
    u8 type;    /* enum msg_result_type */
    u8 outcome; /* enum proto_outcome (writes) */
    u8 code;
    u8 from_retry_cache;
    u64 applied_lsn; /* writes: the entry's LSN; reads: the applier's applied LSN */
    union {
        struct {
            u128 reservation_id;
            u64 deadline_slot;
        } write;
        struct sm_resource_view resource;
        struct sm_reservation_view reservation;
        struct {
            u64 slot;
            u64 proposed;
        } tick;
    } u;
};

#endif
