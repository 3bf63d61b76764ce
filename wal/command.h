/*
 * wal/command.h — the payload of a WAL frame: one state-machine command.
 *
 * Byte layout, little-endian, fixed width; the length is exact for each kind:
 *
 *   offset size field
 *        0    1 kind            enum sm_command_kind
 *        1    7 reserved        zero
 *   client commands (record type WAL_RECORD_COMMAND):
 *        8   16 operation_id    non-zero
 *       24   16 client_id
 *       40      by kind:
 *               create_resource  resource_id(16)                          total 56
 *               reserve          resource_id(16) holder_id(16) ttl(8)
 *                                reserved(8) zero                         total 88
 *               confirm, release reservation_id(16) holder_id(16)         total 72
 *   internal expire (record type WAL_RECORD_EXPIRE):
 *        8   16 reservation_id
 *       24    8 deadline_slot                                            total 32
 *
 * The record type of the frame and the kind must agree. Values of the domain (ttl range,
 * unknown ids) are not checked here: the state machine turns them into results, and those
 * results are part of the log's meaning.
 *
 * Pure: no I/O, no allocation.
 */
#ifndef ADB_WAL_COMMAND_H
#define ADB_WAL_COMMAND_H

#include "common/types.h"
#include "vocab/vocab.h"

#define WAL_CMD_SIZE_MAX 88

enum wal_cmd_status {
    WAL_CMD_OK = 0,
    WAL_CMD_EMPTY,         /* no kind byte */
    WAL_CMD_BAD_KIND,      /* unknown kind */
    WAL_CMD_WRONG_RECORD,  /* kind does not belong to the frame's record type */
    WAL_CMD_BAD_LENGTH,    /* not the exact length of the kind */
    WAL_CMD_BAD_RESERVED,  /* reserved bytes not zero */
    WAL_CMD_ZERO_OPERATION /* a client command with operation_id 0 */
};

const char *wal_cmd_status_name(enum wal_cmd_status s);

/* The record type a command is logged as. */
u16 wal_cmd_record_type(const struct sm_command *cmd);

/* Encoded size of cmd (its kind decides). */
u32 wal_cmd_size(const struct sm_command *cmd);

/*
 * Encodes cmd into buf (cap >= wal_cmd_size) and returns the size. Asserts the command is well
 * formed (known kind, operation_id set for client commands).
 */
u32 wal_cmd_encode(u8 *buf, size_t cap, const struct sm_command *cmd);

/* Decodes a payload of a frame of `record_type`; on WAL_CMD_OK fills *out (OUT), fields of
 * other kinds zeroed; on any other status *out is left unchanged. Client kinds belong to
 * WAL_RECORD_COMMAND and expire to WAL_RECORD_EXPIRE; any other pairing is WRONG_RECORD. */
enum wal_cmd_status wal_cmd_decode(u16 record_type, const u8 *buf, size_t len,
                                   struct sm_command *out);

#endif
