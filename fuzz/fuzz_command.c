/*
 * fuzz/fuzz_command.c — fuzz target: the command payload decoder (wal/command.h).
 *
 * Input: the first byte is the record type of the frame carrying the payload (any value 0..255,
 * so types no frame carries are tried too); the rest is the payload. Properties:
 *   - decoding never reads outside the payload and returns a known status;
 *   - on failure *out is left unchanged;
 *   - an accepted command has the record type it was decoded for, the exact size of its kind,
 *     zero in every field its kind does not use, and re-encodes to the identical bytes.
 */
#include "config.h"

#include "fuzz/fuzz.h"
#include "wal/command.h"

#include <string.h>

/* The fields a kind does not use are zero (wal/command.h, replica/sm.h). */
static void check_unused_zero(const struct sm_command *c)
{
    bool client = c->kind != SM_CMD_EXPIRE;
    bool has_resource = c->kind == SM_CMD_CREATE_RESOURCE || c->kind == SM_CMD_RESERVE;
    if (!client)
        FUZZ_CHECK(c->operation_id == 0 && c->client_id == 0);
    if (!has_resource)
        FUZZ_CHECK(c->resource_id == 0);
    if (has_resource)
        FUZZ_CHECK(c->reservation_id == 0);
    if (!client || c->kind == SM_CMD_CREATE_RESOURCE)
        FUZZ_CHECK(c->holder_id == 0);
    if (c->kind != SM_CMD_RESERVE)
        FUZZ_CHECK(c->ttl_slots == 0);
    if (client)
        FUZZ_CHECK(c->deadline_slot == 0);
}

static void check_accepted(u16 record_type, const u8 *payload, size_t len,
                           const struct sm_command *c)
{
    FUZZ_CHECK(c->kind >= 1 && c->kind <= SM_CMD_KIND_MAX);
    FUZZ_CHECK(wal_cmd_record_type(c) == record_type);
    FUZZ_CHECK(wal_cmd_size(c) == len);
    FUZZ_CHECK(c->kind == SM_CMD_EXPIRE || c->operation_id != 0);
    check_unused_zero(c);

    u8 buf[WAL_CMD_SIZE_MAX];
    FUZZ_CHECK(wal_cmd_encode(buf, sizeof(buf), c) == len);
    FUZZ_CHECK(memcmp(buf, payload, len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    u16 record_type = data[0];
    const u8 *payload = data + 1;
    size_t len = size - 1;

    struct sm_command c, before;
    memset(&c, 0xA5, sizeof(c));
    memcpy(&before, &c, sizeof(c));
    enum wal_cmd_status s = wal_cmd_decode(record_type, payload, len, &c);
    FUZZ_CHECK(s >= WAL_CMD_OK && s <= WAL_CMD_ZERO_OPERATION);
    FUZZ_CHECK(strcmp(wal_cmd_status_name(s), "unknown") != 0);
    if (s != WAL_CMD_OK) {
        FUZZ_CHECK(memcmp(&c, &before, sizeof(c)) == 0);
        return 0;
    }
    check_accepted(record_type, payload, len, &c);
    return 0;
}
