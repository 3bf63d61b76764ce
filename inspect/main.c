/*
 * inspect/main.c — allocdb-inspect: read a data directory's WAL and snapshots offline, print
 * them for an operator and verify them with the same code recovery uses. Never writes.
 *
 *   allocdb-inspect wal PATH [--frames] [--from LSN] [--to LSN]
 *   allocdb-inspect snapshot FILE
 *   allocdb-inspect verify DIR
 *
 * Exit status: 0 valid (a torn tail, which a start repairs, counts as valid and is reported, and
 * so does damage in WAL frames the snapshot covers, which a start passes over); 1 damage found
 * (the daemon would refuse to start); 64 usage error; 66 a path that cannot be read.
 */
#include "config.h"

#include "replica/recovery.h"
#include "replica/snapshot.h"
#include "wal/command.h"
#include "wal/log.h"
#include "wal/scan.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define EXIT_DAMAGED 1
#define EXIT_USAGE 64
#define EXIT_NOINPUT 66

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: allocdb-inspect COMMAND [OPTIONS] PATH\n"
            "\n"
            "Reads AllocDB's files offline and verifies them; never modifies anything.\n"
            "\n"
            "Commands:\n"
            "  wal PATH        check the WAL of a data directory, or one segment file, and\n"
            "                  summarise each segment\n"
            "      --frames    also print every frame\n"
            "      --from LSN  with --frames: start at this LSN\n"
            "      --to LSN    with --frames: stop after this LSN\n"
            "  snapshot FILE   print a snapshot's header and validate all of it\n"
            "  verify DIR      dry-run recovery of a data directory: validate the snapshots and\n"
            "                  replay the WAL after the newest valid one, as a start would\n"
            "\n"
            "  -h, --help      show this help\n"
            "  -V, --version   show the version\n"
            "\n"
            "Exit status: 0 valid (a torn WAL tail, which the next start truncates, is reported\n"
            "but valid), 1 damage found, 64 usage error, 66 a path cannot be read.\n");
}

/* ---- printing --------------------------------------------------------------------------- */

/* u128 ids: decimal when they fit 64 bits, else 0x-hex. */
static const char *id_str(char *buf, size_t n, u128 v)
{
    if (U128_HI(v) == 0)
        snprintf(buf, n, "%" PRIu64, U128_LO(v));
    else
        snprintf(buf, n, "0x%" PRIx64 "%016" PRIx64, U128_HI(v), U128_LO(v));
    return buf;
}

static void print_frame(const struct wal_frame *f, const struct sm_command *c)
{
    char a[48], b[48], d[48];
    printf("lsn=%" PRIu64 " slot=%" PRIu64 " view=%" PRIu64 " crc=%08x %s", f->lsn, f->request_slot, f->view,
           f->crc, sm_command_name(c->kind));
    switch (c->kind) {
    case SM_CMD_CREATE_RESOURCE:
        printf(" resource=%s", id_str(a, sizeof(a), c->resource_id));
        break;
    case SM_CMD_RESERVE:
        printf(" resource=%s holder=%s ttl_slots=%" PRIu64, id_str(a, sizeof(a), c->resource_id),
               id_str(b, sizeof(b), c->holder_id), c->ttl_slots);
        break;
    case SM_CMD_CONFIRM:
    case SM_CMD_RELEASE:
        printf(" reservation=%s holder=%s", id_str(a, sizeof(a), c->reservation_id), id_str(b, sizeof(b), c->holder_id));
        break;
    case SM_CMD_EXPIRE:
        printf(" reservation=%s deadline_slot=%" PRIu64, id_str(a, sizeof(a), c->reservation_id), c->deadline_slot);
        break;
    }
    if (c->kind != SM_CMD_EXPIRE)
        printf(" op=%s client=%s", id_str(d, sizeof(d), c->operation_id), id_str(b, sizeof(b), c->client_id));
    printf("\n");
}

/* ---- wal -------------------------------------------------------------------------------- */

struct frame_printer {
    bool frames;
    u64 from, to;
};

static int show_frame(void *ctx, const struct wal_frame *f, const struct sm_command *c)
{
    const struct frame_printer *p = ctx;
    if (p->frames && f->lsn >= p->from && f->lsn <= p->to)
        print_frame(f, c);
    return 0;
}

static void print_wal_report(const struct wal_open_report *rep)
{
    printf("wal: %u segment(s), LSN %" PRIu64 "..%" PRIu64 " (%" PRIu64 " frames), last slot %" PRIu64 "\n",
           rep->segments, rep->first_lsn, rep->last_lsn, rep->frames, rep->last_slot);
    if (rep->torn)
        printf("wal: torn tail in %s at offset %" PRIu64 " (%" PRIu64
               " bytes never synced): the next start truncates it\n",
               rep->torn_file, rep->torn_offset, rep->torn_bytes);
    if (rep->removed_empty_segment)
        printf("wal: the newest segment was cut short while being created; the next start removes it\n");
    if (rep->damaged > 0) /* a start passes over it (wal/scan.h, note (**)); a fallback cannot */
        printf("wal: damage below the snapshot, passed over: %u region(s), the first in %s at offset %" PRIu64 " (LSN %" PRIu64
               "): %s; a start continues, recovery from a snapshot below LSN %" PRIu64 " would fail\n",
               rep->damaged, rep->damage_file, rep->damage_offset, rep->damage_lsn, rep->damage_reason,
               rep->damage_floor_lsn);
}

/* A whole directory: exactly the scan a start performs, read-only. */
static int wal_dir(const char *dir, const struct frame_printer *p)
{
    struct wal_log w;
    struct wal_open_report rep;
    struct wal_log_options opt = { .read_only = true };
    char why[WAL_PATH_MAX + 256];
    struct frame_printer pp = *p;
    int rc = wal_log_open(&w, &io_posix, dir, &opt, 0, show_frame, &pp, &rep, why, sizeof(why));
    wal_log_close(&w);
    if (rc == -ENOENT || rc == -EACCES || rc == -ENOTDIR) {
        fprintf(stderr, "allocdb-inspect: %s\n", why);
        return EXIT_NOINPUT;
    }
    if (rc != 0) {
        printf("wal: DAMAGED: %s\n", why);
        return EXIT_DAMAGED;
    }
    print_wal_report(&rep);
    printf("wal: ok\n");
    return 0;
}

/* One segment file on its own: its header, then its frames scanned as the newest segment. */
static int wal_file(const char *path, const struct frame_printer *p)
{
    u8 *buf = NULL;
    u64 len = 0;
    int rc = io_read_file(&io_posix, path, &buf, &len);
    if (rc != 0) {
        fprintf(stderr, "allocdb-inspect: %s: %s\n", path, strerror(-rc));
        return EXIT_NOINPUT;
    }
    struct wal_segment_header h;
    enum wal_segment_status hs = wal_segment_header_decode(buf, len, &h);
    if (hs != WAL_SEGMENT_OK) {
        printf("%s: DAMAGED: offset 0: %s\n", path, wal_segment_status_name(hs));
        free(buf);
        return EXIT_DAMAGED;
    }
    printf("%s: segment first_lsn=%" PRIu64 " prev_slot=%" PRIu64 " prev_crc=%08x capacity=%" PRIu64
           " size=%" PRIu64 "%s\n",
           path, h.first_lsn, h.prev_slot, h.prev_crc, h.capacity, len,
           (h.flags & WAL_SEGMENT_RESTART) ? " restart (older segments are obsolete)" : "");
    struct wal_cursor cur = { .next_lsn = h.first_lsn, .last_slot = h.prev_slot, .prev_crc = h.prev_crc };
    struct frame_printer pp = *p;
    struct wal_scan_result res;
    struct wal_scan_options so = { .last = true, .sync_window = h.sync_window };
    enum wal_scan_end end = wal_scan_segment(buf, len, &so, &cur, NULL, NULL, &res);
    if (p->frames) { /* the scan validated res.frames frames: walk them again to print */
        struct wal_frame f;
        u32 flen;
        for (u64 off = WAL_SEGMENT_HEADER_SIZE, n = 0; n < res.frames; n++, off += flen) {
            if (wal_frame_decode(buf + off, len - off, &f, &flen) != WAL_FRAME_OK)
                break;
            struct sm_command c;
            if (wal_cmd_decode(f.record_type, f.payload, f.payload_len, &c) == WAL_CMD_OK)
                show_frame(&pp, &f, &c);
        }
    }
    printf("%s: %" PRIu64 " frames, LSN %" PRIu64 "..%" PRIu64 ", data ends at offset %" PRIu64 ": %s\n", path,
           res.frames, h.first_lsn, cur.next_lsn - 1, res.valid_end, wal_scan_end_name(end));
    free(buf);
    if (end == WAL_SCAN_CORRUPT) {
        printf("%s: DAMAGED: offset %" PRIu64 ": %s\n", path, res.bad_offset, res.reason);
        return EXIT_DAMAGED;
    }
    if (end == WAL_SCAN_TORN)
        printf("%s: torn tail at offset %" PRIu64 ": %s (valid only as the newest segment)\n", path,
               res.bad_offset, res.reason);
    return 0;
}

static bool parse_lsn(const char *opt, const char *s, u64 *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (s[0] == '-' || s[0] == '\0' || errno != 0 || *end != '\0') {
        fprintf(stderr, "allocdb-inspect: %s expects an LSN (a whole number), got '%s'\n", opt, s);
        return false;
    }
    *out = v;
    return true;
}

static int cmd_wal(int argc, char **argv)
{
    struct frame_printer p = { .frames = false, .from = 0, .to = UINT64_MAX };
    static const struct option longopts[] = {
        { "frames", no_argument, NULL, 'f' },
        { "from", required_argument, NULL, 'F' },
        { "to", required_argument, NULL, 'T' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'f': p.frames = true; break;
        case 'F': if (!parse_lsn("--from", optarg, &p.from)) return EXIT_USAGE; break;
        case 'T': if (!parse_lsn("--to", optarg, &p.to)) return EXIT_USAGE; break;
        case 'h': usage(stdout); return 0;
        default: return EXIT_USAGE;
        }
    }
    if (optind + 1 != argc) {
        fprintf(stderr, "allocdb-inspect wal: expects one PATH (a data directory or a wal-*.log file)\n");
        return EXIT_USAGE;
    }
    struct stat st;
    if (stat(argv[optind], &st) != 0) {
        fprintf(stderr, "allocdb-inspect: %s: %s\n", argv[optind], strerror(errno));
        return EXIT_NOINPUT;
    }
    return S_ISDIR(st.st_mode) ? wal_dir(argv[optind], &p) : wal_file(argv[optind], &p);
}

/* ---- snapshot --------------------------------------------------------------------------- */

static void print_info(const char *path, const struct snapshot_info *in)
{
    printf("%s: snapshot version %u, %" PRIu64 " bytes\n", path, in->version, in->size);
    printf("  lsn=%" PRIu64 " slot=%" PRIu64 " retired_watermark_lsn=%" PRIu64 " retired_through_slot=%" PRIu64 "\n",
           in->last_applied_lsn, in->last_request_slot, in->retired_watermark_lsn, in->retired_through_slot);
    printf("  resources=%u reservations=%u (reserved=%u terminal=%u) operations=%u\n", in->resources,
           in->reservations, in->reserved_reservations, in->terminal_reservations, in->operations);
    printf("  config shard_id=%" PRIu64 " resource_capacity=%u reservation_capacity=%u operation_capacity=%u"
           " expiration_capacity=%u max_ttl_slots=%" PRIu64 " dedupe_window_slots=%" PRIu64
           " history_window_slots=%" PRIu64 "\n",
           in->cfg.shard_id, in->cfg.resource_capacity, in->cfg.reservation_capacity, in->cfg.operation_capacity,
           in->cfg.expiration_capacity, in->cfg.max_ttl_slots, in->cfg.dedupe_window_slots,
           in->cfg.history_window_slots);
}

/* Full validation of one snapshot file under its own embedded config. */
static int check_snapshot(const char *path, bool print, struct snapshot_info *info_out)
{
    u8 *buf = NULL;
    u64 len = 0;
    int rc = io_read_file(&io_posix, path, &buf, &len);
    if (rc != 0) {
        fprintf(stderr, "allocdb-inspect: %s: %s\n", path, strerror(-rc));
        return EXIT_NOINPUT;
    }
    char why[512];
    struct snapshot_info info;
    enum snapshot_status st = snapshot_decode_info(buf, len, &info, why, sizeof(why));
    if (st != SNAPSHOT_OK) {
        printf("%s: DAMAGED: %s: %s\n", path, snapshot_status_name(st), why);
        free(buf);
        return EXIT_DAMAGED;
    }
    if (print)
        print_info(path, &info);
    sm_t sm;
    if (!sm_create(&sm, &info.cfg, why, sizeof(why))) {
        printf("%s: cannot allocate the state for validation: %s\n", path, why);
        free(buf);
        return EXIT_DAMAGED;
    }
    /* Its operation records are in the operation log beside it (replica/oplog.h). */
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == NULL)
        snprintf(dir, sizeof(dir), ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    st = recovery_decode_snapshot(&io_posix, dir, buf, len, &info.cfg, &sm, why, sizeof(why));
    sm_destroy(&sm);
    free(buf);
    if (st != SNAPSHOT_OK) {
        printf("%s: DAMAGED: %s: %s\n", path, snapshot_status_name(st), why);
        return EXIT_DAMAGED;
    }
    if (info_out != NULL)
        *info_out = info;
    printf("%s: ok\n", path);
    return 0;
}

static int cmd_snapshot(int argc, char **argv)
{
    if (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        usage(stdout);
        return 0;
    }
    if (argc != 2) {
        fprintf(stderr, "allocdb-inspect snapshot: expects one FILE (snapshot-*.snap)\n");
        return EXIT_USAGE;
    }
    return check_snapshot(argv[1], true, NULL);
}

/* ---- verify ----------------------------------------------------------------------------- */

#define VERIFY_SNAPSHOTS_MAX 256

struct snapshot_names {
    u64 lsn[VERIFY_SNAPSHOTS_MAX];
    u32 count;
};

static int collect_snapshot(void *ctx, const char *name)
{
    struct snapshot_names *n = ctx;
    u64 lsn;
    if (snapshot_parse_name(name, &lsn) && n->count < VERIFY_SNAPSHOTS_MAX)
        n->lsn[n->count++] = lsn;
    return 0;
}

/* The config a start runs under: the newest snapshot whose header reads. */
static bool newest_config(const char *dir, struct snapshot_names *n, struct snapshot_info *info)
{
    for (u32 pass = 0; pass < n->count; pass++) {
        u32 best = 0;
        for (u32 i = 1; i < n->count; i++)
            if (n->lsn[i] > n->lsn[best])
                best = i;
        char name[64], path[WAL_PATH_MAX], why[256];
        u8 *buf = NULL;
        u64 len = 0;
        bool ok = snapshot_file_name(name, sizeof(name), n->lsn[best]) && io_path(path, sizeof(path), dir, name) &&
                  io_read_file(&io_posix, path, &buf, &len) == 0 &&
                  snapshot_decode_info(buf, len, info, why, sizeof(why)) == SNAPSHOT_OK;
        free(buf);
        if (ok)
            return true;
        printf("verify: snapshot %s has no readable header; trying an older one for the config\n", path);
        n->lsn[best] = 0; /* skip it next pass */
    }
    return false;
}

static int cmd_verify(int argc, char **argv)
{
    if (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        usage(stdout);
        return 0;
    }
    if (argc != 2) {
        fprintf(stderr, "allocdb-inspect verify: expects one DIR\n");
        return EXIT_USAGE;
    }
    const char *dir = argv[1];
    struct snapshot_names n = { .count = 0 };
    int rc = io_posix.ops->list_dir(&io_posix, dir, collect_snapshot, &n);
    if (rc != 0) {
        fprintf(stderr, "allocdb-inspect: %s: %s\n", dir, strerror(-rc));
        return EXIT_NOINPUT;
    }
    struct snapshot_info info;
    if (!newest_config(dir, &n, &info)) {
        /* Without a snapshot the config is not on disk: check the WAL's structure only. */
        printf("verify: no readable snapshot in %s; checking the WAL (replay needs the daemon's config)\n", dir);
        struct frame_printer p = { .frames = false, .from = 0, .to = UINT64_MAX };
        return wal_dir(dir, &p);
    }
    char why[WAL_PATH_MAX + 768];
    sm_t sm;
    if (!sm_create(&sm, &info.cfg, why, sizeof(why))) {
        printf("verify: cannot allocate the state: %s\n", why);
        return EXIT_DAMAGED;
    }
    struct recovery_options opt = { .read_only = true };
    struct recovery_report rep;
    struct wal_log w;
    rc = recovery_run(&io_posix, dir, &info.cfg, &opt, &sm, &w, &rep, why, sizeof(why));
    if (rc != 0) {
        sm_destroy(&sm);
        printf("verify: DAMAGED: %s\n", why);
        return EXIT_DAMAGED;
    }
    struct sm_digest d = sm_digest(&sm);
    printf("verify: startup kind %s, snapshot LSN %" PRIu64 " (%u found, %u rejected), %" PRIu64
           " frames replayed, last LSN %" PRIu64 "\n",
           recovery_kind_name(rep.kind), rep.snapshot_lsn, rep.snapshots_found, rep.snapshots_rejected,
           rep.frames_replayed, sm.last_applied_lsn);
    if (rep.snapshots_rejected > 0)
        printf("verify: rejected snapshot %" PRIu64 ": %s\n", rep.rejected_lsn, rep.rejected_reason);
    print_wal_report(&rep.wal);
    printf("verify: state digest %016" PRIx64 "%016" PRIx64 ", %u resources, %u reservations, %u operations\n",
           d.hi, d.lo, sm.resource_count, sm.reservation_count, sm.operation_count);
    printf("verify: ok\n");
    sm_destroy(&sm);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "-V") == 0 || strcmp(cmd, "--version") == 0) {
        printf("allocdb-inspect %s\n", PACKAGE_VERSION);
        return 0;
    }
    if (strcmp(cmd, "wal") == 0)
        return cmd_wal(argc - 1, argv + 1);
    if (strcmp(cmd, "snapshot") == 0)
        return cmd_snapshot(argc - 1, argv + 1);
    if (strcmp(cmd, "verify") == 0)
        return cmd_verify(argc - 1, argv + 1);
    fprintf(stderr, "allocdb-inspect: unknown command '%s'\n", cmd);
    usage(stderr);
    return EXIT_USAGE;
}
