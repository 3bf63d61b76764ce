/*
 * wal/command.c — encode and decode command payloads. The layout is in wal/command.h.
 */
#include "config.h"

#include "wal/command.h"

#include "common/assert.h"
#include "common/le.h"
#include "wal/frame.h"

#define CMD_HEADER 8 /* kind + reserved */
#define RESERVE_TAIL 80 /* reserve: 8 reserved bytes after ttl */

const char *wal_cmd_status_name(enum wal_cmd_status s)
{
    switch (s) {
    case WAL_CMD_OK: return "ok";
    case WAL_CMD_EMPTY: return "empty payload";
    case WAL_CMD_BAD_KIND: return "unknown command kind";
    case WAL_CMD_WRONG_RECORD: return "command kind does not match record type";
    case WAL_CMD_BAD_LENGTH: return "wrong payload length for the command kind";
    case WAL_CMD_BAD_RESERVED: return "reserved bytes not zero";
    case WAL_CMD_ZERO_OPERATION: return "operation_id 0";
    }
    return "unknown";
}

static u32 kind_size(u8 kind)
{
    switch (kind) {
    case SM_CMD_CREATE_RESOURCE: return 56;
    case SM_CMD_RESERVE: return 88;
    case SM_CMD_CONFIRM:
    case SM_CMD_RELEASE: return 72;
    case SM_CMD_EXPIRE: return 32;
    }
    return 0;
}
ADB_STATIC_ASSERT(WAL_CMD_SIZE_MAX <= WAL_PAYLOAD_MAX, "a command fits a frame");

u16 wal_cmd_record_type(const struct sm_command *cmd)
{
    return cmd->kind == SM_CMD_EXPIRE ? WAL_RECORD_EXPIRE : WAL_RECORD_COMMAND;
}

u32 wal_cmd_size(const struct sm_command *cmd)
{
    u32 size = kind_size(cmd->kind);
    ADB_ASSERT(size != 0);
    return size;
}

u32 wal_cmd_encode(u8 *buf, size_t cap, const struct sm_command *c)
{
    u32 size = wal_cmd_size(c);
    ADB_ASSERT(cap >= size);
    memset(buf, 0, CMD_HEADER);
    buf[0] = c->kind;
    if (c->kind == SM_CMD_EXPIRE) {
        le_put_u128(buf + 8, c->reservation_id);
        le_put_u64(buf + 24, c->deadline_slot);
        return size;
    }
    ADB_ASSERT(c->operation_id != 0);
    le_put_u128(buf + 8, c->operation_id);
    le_put_u128(buf + 24, c->client_id);
    switch (c->kind) {
    case SM_CMD_CREATE_RESOURCE:
        le_put_u128(buf + 40, c->resource_id);
        break;
    case SM_CMD_RESERVE:
        le_put_u128(buf + 40, c->resource_id);
        le_put_u128(buf + 56, c->holder_id);
        le_put_u64(buf + 72, c->ttl_slots);
        le_put_u64(buf + RESERVE_TAIL, 0);
        break;
    default: /* confirm, release */
        le_put_u128(buf + 40, c->reservation_id);
        le_put_u128(buf + 56, c->holder_id);
        break;
    }
    return size;
}

enum wal_cmd_status wal_cmd_decode(u16 record_type, const u8 *buf, size_t len,
                                   struct sm_command *out)
{
    if (len < 1)
        return WAL_CMD_EMPTY;
    u8 kind = buf[0];
    u32 size = kind_size(kind);
    if (size == 0)
        return WAL_CMD_BAD_KIND;
    /* An expire must come from the primary's expiry proposal, never from a client frame; a
     * client command only from a command frame (not from any other record type). */
    bool expire = kind == SM_CMD_EXPIRE;
    if (record_type != (expire ? WAL_RECORD_EXPIRE : WAL_RECORD_COMMAND))
        return WAL_CMD_WRONG_RECORD;
    if (len != size)
        return WAL_CMD_BAD_LENGTH;
    if (!le_all_zero(buf + 1, CMD_HEADER - 1))
        return WAL_CMD_BAD_RESERVED;
    if (kind == SM_CMD_RESERVE && !le_all_zero(buf + RESERVE_TAIL, size - RESERVE_TAIL))
        return WAL_CMD_BAD_RESERVED;
    /* Checked before *out is touched: on failure *out is left as it was. */
    if (!expire && le_get_u128(buf + 8) == 0)
        return WAL_CMD_ZERO_OPERATION;

    memset(out, 0, sizeof(*out));
    out->kind = kind;
    if (expire) {
        out->reservation_id = le_get_u128(buf + 8);
        out->deadline_slot = le_get_u64(buf + 24);
        return WAL_CMD_OK;
    }
    out->operation_id = le_get_u128(buf + 8);
    out->client_id = le_get_u128(buf + 24);
    switch (kind) {
    case SM_CMD_CREATE_RESOURCE:
        out->resource_id = le_get_u128(buf + 40);
        break;
    case SM_CMD_RESERVE:
        out->resource_id = le_get_u128(buf + 40);
        out->holder_id = le_get_u128(buf + 56);
        out->ttl_slots = le_get_u64(buf + 72);
        break;
    default:
        out->reservation_id = le_get_u128(buf + 40);
        out->holder_id = le_get_u128(buf + 56);
        break;
    }
    return WAL_CMD_OK;
}
