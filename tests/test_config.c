/*
 * tests/test_config.c — allocdbd's configuration: the key table, every value type's parser,
 * allocdb.conf through inih (with exact FILE:LINE reasons), flags, print -> load, and the
 * derived state-machine config.
 *
 * Files are written into a fresh mkdtemp directory per test and removed by the teardown.
 */
#include "config.h"

#include "common/splitmix.h"
#include "supervisor/config.h"
#include "tests/check_main.h"

#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmpdir[256];

/* One root per test program (an unchecked fixture, run by the parent process, so it is removed
 * even when a test fails and its process exits early) and a fresh directory per test in it. */
static char root[200];

static void root_setup(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(root, sizeof(root), "%s/adb-config-XXXXXX", base != NULL && base[0] != '\0' ? base : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(root));
}

static void setup(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "%s/test-XXXXXX", root);
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void teardown(void)
{
    nftw(tmpdir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void root_teardown(void)
{
    nftw(root, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Writes `text` to tmpdir/name; the path goes to out. */
static void write_file(const char *name, const char *text, size_t len, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", tmpdir, name);
    FILE *f = fopen(out, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(text, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
}

static void write_text(const char *name, const char *text, char *out, size_t cap)
{
    write_file(name, text, strlen(text), out, cap);
}

/* Loads `text` as a file over defaults; returns config_load_file's result, reason in why. */
static int load_text(const char *text, struct config *c, char *path, size_t path_cap, char *why, size_t why_len)
{
    config_defaults(c);
    write_text("allocdb.conf", text, path, path_cap);
    return config_load_file(c, path, why, why_len);
}

/* Prints c into a malloc'd string. */
static char *print_to_string(const struct config *c)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ck_assert_ptr_nonnull(f);
    config_print(c, f);
    ck_assert_int_eq(fclose(f), 0);
    return buf;
}

static void expect_set_fails(const char *key, const char *value, const char *reason_part)
{
    struct config c, before;
    config_defaults(&c);
    before = c;
    char why[512] = "";
    ck_assert_msg(config_set(&c, key, value, why, sizeof(why)) == -1, "%s = '%s' was accepted", key, value);
    ck_assert_msg(strstr(why, reason_part) != NULL, "%s = '%s': reason '%s' lacks '%s'", key, value, why,
                  reason_part);
    ck_assert_msg(memcmp(&c, &before, sizeof(c)) == 0, "%s = '%s': failed set changed the config", key, value);
}

/* ---- defaults and the table ------------------------------------------------------------- */

START_TEST(test_defaults_validate)
{
    struct config c;
    config_defaults(&c);
    char why[512] = "";
    ck_assert_msg(config_validate(&c, why, sizeof(why)) == 0, "%s", why);
    ck_assert_str_eq(c.data_dir, "/var/lib/allocdb");
    ck_assert_str_eq(c.listen, "127.0.0.1:7400");
    ck_assert_str_eq(c.admin_listen, "127.0.0.1:7402");
    ck_assert_uint_eq(c.slot_duration_ms, 100);
    ck_assert_uint_eq(c.resource_capacity, 1048576);
    ck_assert_uint_eq(c.reservation_capacity, 16777216);
    ck_assert_uint_eq(c.expiration_capacity, 0);
    ck_assert_uint_eq(c.operation_capacity, 67108864);
    ck_assert_uint_eq(c.prefault_memory, 1);
    ck_assert_uint_eq(c.max_ttl_ms, 3600000);
    ck_assert_uint_eq(c.dedupe_window_ms, 60000);
    ck_assert_uint_eq(c.history_window_ms, 60000);
    ck_assert_uint_eq(c.max_expirations_per_tick, 1024);
    ck_assert_uint_eq(c.max_connections, 1024);
    ck_assert_uint_eq(c.max_batch, 1024);
    ck_assert_uint_eq(c.max_inflight, 8192);
    ck_assert_uint_eq(c.request_timeout_ms, 5000);
    ck_assert_uint_eq(c.idle_timeout_ms, 300000);
    ck_assert_uint_eq(c.header_timeout_ms, 10000);
    ck_assert_uint_eq(c.ring_capacity, 65536);
    ck_assert_uint_eq(c.shared_log_capacity, 65536);
    ck_assert_uint_eq(c.wal_segment_bytes, 64u << 20);
    ck_assert_uint_eq(c.checkpoint_interval_ms, 60000);
    ck_assert_uint_eq(c.checkpoint_min_entries, 100000);
    ck_assert_uint_eq(c.heartbeat_timeout_ms, 3000);
    ck_assert_uint_eq(c.restart_intensity_max, 10);
    ck_assert_uint_eq(c.restart_intensity_window_ms, 60000);
    ck_assert_uint_eq(c.restart_backoff_max_ms, 2000);
    ck_assert_uint_eq(c.shutdown_timeout_ms, 5000);
    ck_assert_int_eq(c.log_level, LOG_LEVEL_INFO);
}
END_TEST

START_TEST(test_key_info)
{
    const char *name, *help, *def;
    u32 n = 0;
    while (config_key_info(n, &name, &help, &def)) {
        ck_assert_msg(name != NULL && help != NULL && def != NULL && help[0] != '\0', "key %u", n);
        for (u32 j = 0; j < n; j++) {
            const char *other;
            ck_assert(config_key_info(j, &other, NULL, NULL));
            ck_assert_str_ne(name, other);
        }
        /* The default text is a value the key accepts, and is what config_defaults stored. */
        struct config c, d;
        config_defaults(&c);
        d = c;
        char why[512];
        ck_assert_msg(config_set(&d, name, def, why, sizeof(why)) == 0, "%s: %s", name, why);
        ck_assert_msg(memcmp(&c, &d, sizeof(c)) == 0, "%s", name);
        n++;
    }
    ck_assert_uint_eq(n, 40); /* every member of struct config */
    ck_assert(!config_key_info(n, &name, &help, &def));
    ck_assert(!config_key_info(UINT32_MAX, NULL, NULL, NULL));
}
END_TEST

/* ---- value types ------------------------------------------------------------------------ */

START_TEST(test_parse_duration)
{
    static const struct {
        const char *text;
        u64 ms;
    } good[] = {
        { "250ms", 250 }, { "30s", 30000 }, { "2m", 120000 }, { "1h", 3600000 }, { "17", 17 },
        { "0", 0 }, { "0ms", 0 }, { "007s", 7000 }, { "18446744073709551615", UINT64_MAX },
        { "18446744073709551615ms", UINT64_MAX }, { "5124095576030h", 5124095576030ull * 3600000 },
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        u64 v = 12345;
        ck_assert_msg(config_parse_duration_ms(good[i].text, &v), "'%s' rejected", good[i].text);
        ck_assert_msg(v == good[i].ms, "'%s' -> %" PRIu64, good[i].text, v);
    }
    static const char *const bad[] = {
        "", "-1", "-1s", "+5", "1.5s", "s", "ms", "10x", " 10", "10 ", "10 s", "10S", "10H", "1d",
        "0x10", "10sec", "10mss", "1h1m", "18446744073709551616", "18446744073709551615s", "5124095576031h",
        "99999999999999999999999ms",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        u64 v = 12345;
        ck_assert_msg(!config_parse_duration_ms(bad[i], &v), "'%s' accepted", bad[i]);
        ck_assert_uint_eq(v, 12345);
    }
    u64 v;
    ck_assert(!config_parse_duration_ms(NULL, &v));
}
END_TEST

START_TEST(test_set_durations)
{
    struct config c;
    config_defaults(&c);
    char why[512] = "";
    ck_assert_int_eq(config_set(&c, "slot_duration_ms", "1s", why, sizeof(why)), 0);
    ck_assert_uint_eq(c.slot_duration_ms, 1000);
    ck_assert_int_eq(config_set(&c, "slot_duration_ms", "1m", why, sizeof(why)), 0);
    ck_assert_uint_eq(c.slot_duration_ms, 60000);
    ck_assert_int_eq(config_set(&c, "slot_duration_ms", "1", why, sizeof(why)), 0);
    ck_assert_uint_eq(c.slot_duration_ms, 1);
    ck_assert_int_eq(config_set(&c, "max_ttl_ms", "720h", why, sizeof(why)), 0); /* 30 days */
    ck_assert_uint_eq(c.max_ttl_ms, 720ull * 3600000);
    ck_assert_int_eq(config_set(&c, "idle_timeout_ms", "24h", why, sizeof(why)), 0);

    char expect[128];
    ck_assert_int_eq(config_set(&c, "slot_duration_ms", "0", why, sizeof(why)), -1);
    ck_assert_str_eq(why, "slot_duration_ms: 0 is out of range 1..60000");
    ck_assert_int_eq(config_set(&c, "slot_duration_ms", "2m", why, sizeof(why)), -1);
    ck_assert_str_eq(why, "slot_duration_ms: 2m is out of range 1..60000");
    ck_assert_uint_eq(c.slot_duration_ms, 1); /* unchanged */
    expect_set_fails("max_ttl_ms", "721h", "out of range 1..2592000000");
    expect_set_fails("dedupe_window_ms", "0ms", "out of range");
    expect_set_fails("request_timeout_ms", "25h", "out of range 1..86400000");
    expect_set_fails("header_timeout_ms", "10 s", "is not a duration");
    expect_set_fails("shutdown_timeout_ms", "", "is not a duration");
    expect_set_fails("heartbeat_timeout_ms", "-3s", "is not a duration");
    snprintf(expect, sizeof(expect), "history_window_ms: '%s' is not a duration", "1e3");
    expect_set_fails("history_window_ms", "1e3", expect);
}
END_TEST

START_TEST(test_set_counts)
{
    struct config c;
    config_defaults(&c);
    char why[512] = "";
    ck_assert_int_eq(config_set(&c, "resource_capacity", "12", why, sizeof(why)), 0);
    ck_assert_uint_eq(c.resource_capacity, 12);
    ck_assert_int_eq(config_set(&c, "resource_capacity", "1073741824", why, sizeof(why)), 0);
    ck_assert_uint_eq(c.resource_capacity, 1u << 30);
    ck_assert_int_eq(config_set(&c, "checkpoint_min_entries", "5", why, sizeof(why)), 0);
    ck_assert_uint_eq(c.checkpoint_min_entries, 5);
    ck_assert_int_eq(config_set(&c, "max_batch", "8192", why, sizeof(why)), 0);
    ck_assert_uint_eq(c.max_batch, 8192);
    ck_assert_int_eq(config_set(&c, "max_connections", "1000000", why, sizeof(why)), 0);
    ck_assert_int_eq(config_set(&c, "restart_intensity_max", "1000", why, sizeof(why)), 0);
    ck_assert_int_eq(config_set(&c, "expiration_capacity", "0", why, sizeof(why)), 0);

    ck_assert_int_eq(config_set(&c, "resource_capacity", "0", why, sizeof(why)), -1);
    ck_assert_str_eq(why, "resource_capacity: 0 is out of range 1..1073741824");
    expect_set_fails("resource_capacity", "1073741825", "out of range");
    expect_set_fails("reservation_capacity", "abc", "reservation_capacity: 'abc' is not a number");
    expect_set_fails("operation_capacity", "-1", "is not a number");
    expect_set_fails("operation_capacity", "", "is not a number");
    expect_set_fails("operation_capacity", "12 ", "is not a number");
    expect_set_fails("operation_capacity", "0x10", "is not a number");
    expect_set_fails("operation_capacity", "1k", "is not a number"); /* counts take no suffix */
    expect_set_fails("max_inflight", "99999999999999999999", "is not a number");
    expect_set_fails("max_inflight", "4294967296", "out of range 1..1048576");
    expect_set_fails("max_batch", "8193", "max_batch: 8193 is out of range 1..8192");
    expect_set_fails("max_connections", "1000001", "out of range");
    expect_set_fails("restart_intensity_max", "0", "out of range 1..1000");
    expect_set_fails("checkpoint_min_entries", "0", "out of range");
    expect_set_fails("nope", "1", "unknown key 'nope'");
    expect_set_fails("", "1", "unknown key ''");
}
END_TEST

START_TEST(test_set_sizes_and_powers)
{
    static const struct {
        const char *text;
        u64 bytes;
    } good[] = {
        { "4096", 4096 }, { "4k", 4096 }, { "8K", 8192 }, { "64M", 64u << 20 }, { "3m", 3u << 20 },
        { "1G", 1u << 30 }, { "2g", 2ull << 30 }, { "1024G", 1ull << 40 }, { "1099511627776", 1ull << 40 },
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        struct config c;
        config_defaults(&c);
        char why[512] = "";
        ck_assert_msg(config_set(&c, "wal_segment_bytes", good[i].text, why, sizeof(why)) == 0, "%s: %s",
                      good[i].text, why);
        ck_assert_uint_eq(c.wal_segment_bytes, good[i].bytes);
    }
    expect_set_fails("wal_segment_bytes", "4095", "out of range 4096..1099511627776");
    expect_set_fails("wal_segment_bytes", "3k", "out of range");
    expect_set_fails("wal_segment_bytes", "1025G", "out of range");
    expect_set_fails("wal_segment_bytes", "64MB", "is not a size");
    expect_set_fails("wal_segment_bytes", "64Q", "is not a size");
    expect_set_fails("wal_segment_bytes", "M", "is not a size");
    expect_set_fails("wal_segment_bytes", "1.5G", "is not a size");
    expect_set_fails("wal_segment_bytes", "1T", "is not a size");
    expect_set_fails("wal_segment_bytes", "-4k", "is not a size");
    expect_set_fails("wal_segment_bytes", "17179869184G", "is not a size"); /* 2^64 bytes */

    struct config c;
    config_defaults(&c);
    char why[512] = "";
    ck_assert_int_eq(config_set(&c, "ring_capacity", "1024", why, sizeof(why)), 0);
    ck_assert_uint_eq(c.ring_capacity, 1024);
    ck_assert_int_eq(config_set(&c, "shared_log_capacity", "16777216", why, sizeof(why)), 0);
    ck_assert_uint_eq(c.shared_log_capacity, 1u << 24);
    ck_assert_int_eq(config_set(&c, "ring_capacity", "3000", why, sizeof(why)), -1);
    ck_assert_str_eq(why, "ring_capacity: 3000 is not a power of two");
    expect_set_fails("ring_capacity", "3072", "is not a power of two");
    expect_set_fails("shared_log_capacity", "16777215", "is not a power of two");
    expect_set_fails("ring_capacity", "512", "out of range 1024..16777216");
    expect_set_fails("shared_log_capacity", "33554432", "out of range");
    expect_set_fails("shared_log_capacity", "64k", "is not a number");
}
END_TEST

START_TEST(test_set_strings_and_levels)
{
    static const char *const levels[] = { "error", "warn", "info", "debug" };
    for (int i = 0; i < 4; i++) {
        struct config c;
        config_defaults(&c);
        char why[512] = "";
        ck_assert_int_eq(config_set(&c, "log_level", levels[i], why, sizeof(why)), 0);
        ck_assert_int_eq(c.log_level, i);
        ck_assert_str_eq(log_level_name(c.log_level), levels[i]);
    }
    ck_assert_str_eq(log_level_name((enum log_level)9), "unknown");
    expect_set_fails("log_level", "loud", "log_level: 'loud' is not a log level");
    expect_set_fails("log_level", "INFO", "is not a log level");
    expect_set_fails("log_level", "", "is not a log level");

    static const char *const addrs[] = { "0.0.0.0:1", "127.0.0.1:65535", "localhost:7400", "[::1]:7400",
                                         "[fe80::1%eth0]:9", "db-1.example.com:80" };
    for (size_t i = 0; i < sizeof(addrs) / sizeof(addrs[0]); i++) {
        struct config c;
        config_defaults(&c);
        char why[512] = "";
        ck_assert_msg(config_set(&c, "listen", addrs[i], why, sizeof(why)) == 0, "%s: %s", addrs[i], why);
        ck_assert_str_eq(c.listen, addrs[i]);
        ck_assert_int_eq(config_set(&c, "admin_listen", addrs[i], why, sizeof(why)), 0);
        ck_assert_str_eq(c.admin_listen, addrs[i]);
    }
    expect_set_fails("listen", "7400", "is not HOST:PORT");
    expect_set_fails("listen", ":7400", "the host is empty");
    expect_set_fails("listen", "host:", "the port is not a number");
    expect_set_fails("listen", "host:7x", "the port is not a number");
    expect_set_fails("listen", "host:65537", "port 65537 is out of range 0..65535");
    expect_set_fails("admin_listen", "host:65536", "out of range 0..65535");
    expect_set_fails("admin_listen", "host:99999999999999999999999", "not a number");
    expect_set_fails("listen", "::1:7400", "bad host");
    expect_set_fails("listen", "[::1:7400", "bad host");
    expect_set_fails("listen", "[]:7400", "bad host");
    expect_set_fails("listen", "a]:7400", "bad host");
    expect_set_fails("listen", "", "listen: empty");
    expect_set_fails("listen", " host:1", "blank");

    struct config c;
    config_defaults(&c);
    char why[512] = "";
    ck_assert_int_eq(config_set(&c, "data_dir", "/srv/allocdb data;1", why, sizeof(why)), 0);
    ck_assert_str_eq(c.data_dir, "/srv/allocdb data;1");
    ck_assert_int_eq(config_set(&c, "data_dir", "relative/dir", why, sizeof(why)), 0);
    ck_assert_str_eq(c.data_dir, "relative/dir");
    expect_set_fails("data_dir", "", "data_dir: empty");
    expect_set_fails("data_dir", " /x", "begins or ends with a blank");
    expect_set_fails("data_dir", "/x ", "begins or ends with a blank");
    expect_set_fails("data_dir", "/x\ty", "control character");
    expect_set_fails("data_dir", "/a\nb", "control character");
    expect_set_fails("data_dir", "/a ;b", "would start a comment");
    char *long_path = malloc(CONFIG_PATH_MAX + 1);
    ck_assert_ptr_nonnull(long_path);
    memset(long_path, 'a', CONFIG_PATH_MAX);
    long_path[CONFIG_PATH_MAX] = '\0';
    expect_set_fails("data_dir", long_path, "longer than 4095 bytes");
    long_path[CONFIG_PATH_MAX - 1] = '\0'; /* exactly 4095: fits */
    ck_assert_int_eq(config_set(&c, "data_dir", long_path, why, sizeof(why)), 0);
    ck_assert_uint_eq(strlen(c.data_dir), CONFIG_PATH_MAX - 1);
    free(long_path);
}
END_TEST

/* ---- the file --------------------------------------------------------------------------- */

START_TEST(test_file_comments_blank_lines)
{
    static const char text[] = "# allocdb.conf\n"
                               "\n"
                               "; another comment style\n"
                               "slot_duration_ms = 250ms\n"
                               "   \n"
                               "\tmax_ttl_ms=90s\n"
                               "  listen = 0.0.0.0:7500   \n"
                               "   # indented comment\n"
                               "   max_batch = 64 ; inline comment\n" /* indented: a key, not a continuation */
                               "data_dir = /srv/allocdb\r\n"
                               "wal_segment_bytes : 8M\n"
                               "log_level = debug"; /* no final newline */
    struct config c;
    char path[512], why[512] = "";
    ck_assert_msg(load_text(text, &c, path, sizeof(path), why, sizeof(why)) == 0, "%s", why);
    ck_assert_uint_eq(c.slot_duration_ms, 250);
    ck_assert_uint_eq(c.max_ttl_ms, 90000);
    ck_assert_str_eq(c.listen, "0.0.0.0:7500");
    ck_assert_uint_eq(c.max_batch, 64);
    ck_assert_str_eq(c.data_dir, "/srv/allocdb");
    ck_assert_uint_eq(c.wal_segment_bytes, 8u << 20);
    ck_assert_int_eq(c.log_level, LOG_LEVEL_DEBUG);
    ck_assert_uint_eq(c.max_inflight, 8192); /* untouched keys keep their values */
    ck_assert_int_eq(config_validate(&c, why, sizeof(why)), 0);

    /* An empty file and a file of comments change nothing. */
    struct config d;
    config_defaults(&d);
    ck_assert_int_eq(load_text("", &c, path, sizeof(path), why, sizeof(why)), 0);
    ck_assert_int_eq(memcmp(&c, &d, sizeof(c)), 0);
    ck_assert_int_eq(load_text("# nothing\n\n;\n", &c, path, sizeof(path), why, sizeof(why)), 0);
    ck_assert_int_eq(memcmp(&c, &d, sizeof(c)), 0);

    /* A UTF-8 byte order mark on the first line is skipped. */
    ck_assert_int_eq(load_text("\xEF\xBB\xBFmax_batch = 7\n", &c, path, sizeof(path), why, sizeof(why)), 0);
    ck_assert_uint_eq(c.max_batch, 7);
}
END_TEST

/* Loads text that must fail, leaving c unchanged; the reason must be exactly PATH:want. */
static void expect_file_error(const char *text, size_t len, const char *want)
{
    struct config c, before;
    config_defaults(&c);
    ck_assert_int_eq(config_set(&c, "max_batch", "3", NULL, 0), 0); /* something not default */
    before = c;
    char path[512], why[1024] = "", expect[1024];
    write_file("bad.conf", text, len, path, sizeof(path));
    ck_assert_int_eq(config_load_file(&c, path, why, sizeof(why)), -1);
    snprintf(expect, sizeof(expect), "%s:%s", path, want);
    ck_assert_str_eq(why, expect);
    ck_assert_msg(memcmp(&c, &before, sizeof(c)) == 0, "failed load changed the config");
}

#define EXPECT_FILE_ERROR(text, want) expect_file_error(text, sizeof(text) - 1, want)

START_TEST(test_file_unknown_key)
{
    EXPECT_FILE_ERROR("slot_duration_ms = 50\n\n# x\nbogus = 1\nmax_batch = 9\n", "4: unknown key 'bogus'");
    EXPECT_FILE_ERROR("slot-duration-ms = 50\n", "1: unknown key 'slot-duration-ms'");
    EXPECT_FILE_ERROR("max_batch = 1\n= 5\n", "2: unknown key ''");
}
END_TEST

START_TEST(test_file_out_of_range)
{
    EXPECT_FILE_ERROR("# c\nmax_batch = 5\nslot_duration_ms = 0\n", "3: slot_duration_ms: 0 is out of range 1..60000");
    EXPECT_FILE_ERROR("ring_capacity = 5000\n", "1: ring_capacity: 5000 is not a power of two");
    EXPECT_FILE_ERROR("\n\nlisten = nowhere\n", "3: listen: 'nowhere' is not HOST:PORT");
    EXPECT_FILE_ERROR("max_ttl_ms =\n", "1: max_ttl_ms: '' is not a duration (e.g. 250ms, 30s, 2m, 1h; a bare "
                                        "number is ms)");
    /* '#' is a comment only at the start of a line. */
    EXPECT_FILE_ERROR("max_batch = 5 # five\n", "1: max_batch: '5 # five' is not a number");
}
END_TEST

START_TEST(test_file_section_rejected)
{
    static const char *const reason = "sections are not supported: allocdb.conf is flat key = value lines";
    char want[256];
    snprintf(want, sizeof(want), "1: %s", reason);
    EXPECT_FILE_ERROR("[server]\nlisten = 0.0.0.0:1\n", want);
    snprintf(want, sizeof(want), "3: %s", reason);
    EXPECT_FILE_ERROR("max_batch = 5\n\n  [empty]\n", want); /* even with no keys after it */
    EXPECT_FILE_ERROR("max_batch = 5\n# [not a section]\n[x\n", want);
}
END_TEST

START_TEST(test_file_other_errors)
{
    EXPECT_FILE_ERROR("max_batch = 5\njust some words\nmax_batch = 6\n", "2: expected key = value");
    EXPECT_FILE_ERROR("max_batch = 5\nmax_inflight = 5\n  max_batch = 6\n",
                      "3: max_batch is set twice (first on line 1)");

    /* inih's line buffer holds 198 bytes of text; a longer line is refused, never split. */
    char text[600];
    snprintf(text, sizeof(text), "max_batch = 5\ndata_dir = /%0250d\n", 7);
    expect_file_error(text, strlen(text), "2: line is longer than 198 bytes");
    char fits[256];
    memset(fits, 'p', sizeof(fits));
    int n = snprintf(text, sizeof(text), "data_dir = /");
    memcpy(text + n, fits, (size_t)(198 - n));
    text[198] = '\n';
    text[199] = '\0';
    struct config c;
    char path[512], why[512] = "";
    ck_assert_msg(load_text(text, &c, path, sizeof(path), why, sizeof(why)) == 0, "%s", why);
    ck_assert_uint_eq(strlen(c.data_dir), 198 - 11);

    EXPECT_FILE_ERROR("max_batch = 5\nmax_inflight = 5\0 7\n", "2: contains a NUL byte");

    config_defaults(&c);
    snprintf(path, sizeof(path), "%s/missing.conf", tmpdir);
    ck_assert_int_eq(config_load_file(&c, path, why, sizeof(why)), -1);
    char expect[600];
    snprintf(expect, sizeof(expect), "%s: cannot open: No such file or directory", path);
    ck_assert_str_eq(why, expect);
    ck_assert_int_eq(config_load_file(&c, tmpdir, why, sizeof(why)), -1); /* a directory */
    ck_assert_ptr_nonnull(strstr(why, tmpdir));
}
END_TEST

/* ---- flags, print, derived -------------------------------------------------------------- */

START_TEST(test_flags_map_keys)
{
    char flag[128], key[128];
    config_key_to_flag("slot_duration_ms", flag, sizeof(flag));
    ck_assert_str_eq(flag, "slot-duration-ms");
    ck_assert(config_flag_to_key("slot-duration-ms", key, sizeof(key)));
    ck_assert_str_eq(key, "slot_duration_ms");
    ck_assert(config_flag_to_key("--data-dir", key, sizeof(key)));
    ck_assert_str_eq(key, "data_dir");
    ck_assert(config_flag_to_key("listen", key, sizeof(key)));
    ck_assert_str_eq(key, "listen");

    const char *name;
    for (u32 i = 0; config_key_info(i, &name, NULL, NULL); i++) {
        config_key_to_flag(name, flag, sizeof(flag));
        ck_assert_ptr_null(strchr(flag, '_'));
        ck_assert_msg(config_flag_to_key(flag, key, sizeof(key)), "%s", flag);
        ck_assert_str_eq(key, name);
    }
    ck_assert(!config_flag_to_key("slot_duration_ms", key, sizeof(key))); /* flags use dashes */
    ck_assert(!config_flag_to_key("no-such-key", key, sizeof(key)));
    ck_assert(!config_flag_to_key("", key, sizeof(key)));
    ck_assert(!config_flag_to_key("--", key, sizeof(key)));
    ck_assert(!config_flag_to_key("slot-duration-ms", key, 8)); /* does not fit */

    config_key_to_flag("slot_duration_ms", flag, 5); /* truncated, terminated */
    ck_assert_str_eq(flag, "slot");
}
END_TEST

START_TEST(test_print_load_round_trip)
{
    u64 rng = 0x5eed + (u64)_i;
    struct config c;
    config_defaults(&c);
    char why[512] = "";
    if (_i > 0) {
        /* Random values of every numeric key, in range, so every unit and suffix gets printed. */
        static const struct {
            const char *key;
            u64 min, max;
            bool pow2;
        } ranges[] = {
            { "slot_duration_ms", 1, 60000, false }, { "resource_capacity", 1, 1u << 30, false },
            { "reservation_capacity", 1, 1u << 30, false }, { "expiration_capacity", 0, 1u << 30, false },
            { "operation_capacity", 1, 1u << 30, false }, { "max_ttl_ms", 1, 2592000000ull, false },
            { "dedupe_window_ms", 1, 2592000000ull, false }, { "history_window_ms", 1, 2592000000ull, false },
            { "max_expirations_per_tick", 1, 1u << 30, false }, { "max_connections", 1, 1000000, false },
            { "max_batch", 1, 8192, false }, { "max_inflight", 1, 1u << 20, false },
            { "request_timeout_ms", 1, 86400000, false }, { "idle_timeout_ms", 1, 86400000, false },
            { "header_timeout_ms", 1, 86400000, false }, { "ring_capacity", 10, 24, true },
            { "shared_log_capacity", 10, 24, true }, { "wal_segment_bytes", 4096, 1ull << 40, false },
            { "checkpoint_interval_ms", 1, 86400000, false }, { "checkpoint_min_entries", 1, 1ull << 32, false },
            { "heartbeat_timeout_ms", 1, 86400000, false }, { "restart_intensity_max", 1, 1000, false },
            { "restart_intensity_window_ms", 1, 86400000, false }, { "restart_backoff_max_ms", 1, 86400000, false },
            { "shutdown_timeout_ms", 1, 86400000, false },
        };
        for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++) {
            u64 span = ranges[i].max - ranges[i].min + 1;
            u64 v = ranges[i].min + splitmix_next(&rng) % span;
            /* Half the time a round number, so the larger units and suffixes come up. */
            static const u64 rounders[] = { 1000, 60000, 3600000, 1024, 1u << 20, 1u << 30 };
            u64 r = rounders[splitmix_next(&rng) % 6];
            if (!ranges[i].pow2 && (splitmix_next(&rng) & 1) && v / r * r >= ranges[i].min)
                v = v / r * r;
            if (ranges[i].pow2)
                v = (u64)1 << v;
            char text[32];
            snprintf(text, sizeof(text), "%" PRIu64, v);
            ck_assert_msg(config_set(&c, ranges[i].key, text, why, sizeof(why)) == 0, "%s", why);
        }
        static const char *const levels[] = { "error", "warn", "info", "debug" };
        ck_assert_int_eq(config_set(&c, "log_level", levels[_i % 4], why, sizeof(why)), 0);
        ck_assert_int_eq(config_set(&c, "data_dir", "/srv/alloc db/#1;x", why, sizeof(why)), 0);
        ck_assert_int_eq(config_set(&c, "listen", "[::1]:7400", why, sizeof(why)), 0);
    }
    char *printed = print_to_string(&c);
    char path[512];
    write_text("printed.conf", printed, path, sizeof(path));

    struct config d;
    config_defaults(&d);
    ck_assert_int_eq(config_set(&d, "data_dir", "/elsewhere", NULL, 0), 0);
    ck_assert_msg(config_load_file(&d, path, why, sizeof(why)) == 0, "%s\n%s", why, printed);
    char *again = print_to_string(&d);
    ck_assert_str_eq(printed, again);
    /* Field by field too: the text matching could hide a lossy formatter used both ways. */
    ck_assert_str_eq(c.data_dir, d.data_dir);
    ck_assert_str_eq(c.listen, d.listen);
    ck_assert_str_eq(c.admin_listen, d.admin_listen);
    struct config c2 = c, d2 = d;
    memset(c2.data_dir, 0, sizeof(c2.data_dir));
    memset(d2.data_dir, 0, sizeof(d2.data_dir));
    memset(c2.listen, 0, sizeof(c2.listen));
    memset(d2.listen, 0, sizeof(d2.listen));
    memset(c2.admin_listen, 0, sizeof(c2.admin_listen));
    memset(d2.admin_listen, 0, sizeof(d2.admin_listen));
    ck_assert_int_eq(memcmp(&c2, &d2, sizeof(c2)), 0);
    /* Every key appears, once, as "key = value". */
    const char *name;
    for (u32 i = 0; config_key_info(i, &name, NULL, NULL); i++) {
        char needle[128];
        snprintf(needle, sizeof(needle), "\n%s = ", name);
        const char *at = i == 0 ? (strncmp(printed, needle + 1, strlen(needle) - 1) == 0 ? printed : NULL)
                                : strstr(printed, needle);
        ck_assert_msg(at != NULL, "%s missing", name);
    }
    free(printed);
    free(again);
}
END_TEST

START_TEST(test_print_units)
{
    struct config c;
    config_defaults(&c);
    char *printed = print_to_string(&c);
    ck_assert_ptr_nonnull(strstr(printed, "slot_duration_ms = 100ms\n"));
    ck_assert_ptr_nonnull(strstr(printed, "max_ttl_ms = 1h\n"));
    ck_assert_ptr_nonnull(strstr(printed, "dedupe_window_ms = 1m\n"));
    ck_assert_ptr_nonnull(strstr(printed, "request_timeout_ms = 5s\n"));
    ck_assert_ptr_nonnull(strstr(printed, "wal_segment_bytes = 64M\n"));
    ck_assert_ptr_nonnull(strstr(printed, "expiration_capacity = 0\n"));
    ck_assert_ptr_nonnull(strstr(printed, "log_level = info\n"));
    ck_assert_ptr_nonnull(strstr(printed, "listen = 127.0.0.1:7400\n"));
    free(printed);
    ck_assert_int_eq(config_set(&c, "wal_segment_bytes", "1099511627776", NULL, 0), 0);
    ck_assert_int_eq(config_set(&c, "max_ttl_ms", "61001", NULL, 0), 0);
    ck_assert_int_eq(config_set(&c, "slot_duration_ms", "1500", NULL, 0), 0);
    printed = print_to_string(&c);
    ck_assert_ptr_nonnull(strstr(printed, "wal_segment_bytes = 1024G\n"));
    ck_assert_ptr_nonnull(strstr(printed, "max_ttl_ms = 61001ms\n"));
    ck_assert_ptr_nonnull(strstr(printed, "slot_duration_ms = 1500ms\n"));
    free(printed);
}
END_TEST

START_TEST(test_expiration_capacity_default)
{
    struct config c;
    struct sm_config sm;
    char why[512] = "";
    config_defaults(&c);
    config_sm(&c, &sm);
    ck_assert_uint_eq(sm.expiration_capacity, sm.reservation_capacity);
    ck_assert_uint_eq(sm.shard_id, 0);

    /* 0 follows reservation_capacity wherever it is set. */
    ck_assert_int_eq(config_set(&c, "reservation_capacity", "1000", why, sizeof(why)), 0);
    config_sm(&c, &sm);
    ck_assert_uint_eq(sm.expiration_capacity, 1000);
    ck_assert_int_eq(config_validate(&c, why, sizeof(why)), 0);

    ck_assert_int_eq(config_set(&c, "expiration_capacity", "500", why, sizeof(why)), 0);
    config_sm(&c, &sm);
    ck_assert_uint_eq(sm.expiration_capacity, 500);
    ck_assert_int_eq(config_validate(&c, why, sizeof(why)), 0);

    ck_assert_int_eq(config_set(&c, "expiration_capacity", "2000", why, sizeof(why)), 0);
    ck_assert_int_eq(config_validate(&c, why, sizeof(why)), -1);
    ck_assert_str_eq(why, "expiration_capacity = 2000 exceeds reservation_capacity = 1000: every expiring "
                          "reservation is also a reservation");
}
END_TEST

START_TEST(test_windows_round_up)
{
    static const struct {
        u64 slot_ms, window_ms, slots;
    } cases[] = {
        { 100, 1, 1 }, { 100, 99, 1 }, { 100, 100, 1 }, { 100, 101, 2 }, { 100, 250, 3 },
        { 100, 60000, 600 }, { 7, 50, 8 }, { 1, 1, 1 }, { 60000, 1, 1 }, { 60000, 2592000000ull, 43200 },
        { 3, 2592000000ull, 864000000 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct config c;
        config_defaults(&c);
        c.slot_duration_ms = cases[i].slot_ms;
        c.max_ttl_ms = cases[i].window_ms;
        c.dedupe_window_ms = cases[i].window_ms;
        c.history_window_ms = cases[i].window_ms;
        struct sm_config sm;
        config_sm(&c, &sm);
        ck_assert_msg(sm.max_ttl_slots == cases[i].slots && sm.dedupe_window_slots == cases[i].slots &&
                          sm.history_window_slots == cases[i].slots,
                      "case %zu: %" PRIu64 " %" PRIu64 " %" PRIu64, i, sm.max_ttl_slots, sm.dedupe_window_slots,
                      sm.history_window_slots);
    }
}
END_TEST

/* The replicas list, and whether a config fits replica i of n. */
START_TEST(test_replicas_and_cluster_check)
{
    struct config c;
    config_defaults(&c);
    char why[512], addrs[CONFIG_REPLICAS_MAX][CONFIG_ADDR_MAX];
    ck_assert_uint_eq(config_replicas(&c, addrs, CONFIG_REPLICAS_MAX), 0);
    ck_assert_int_eq(config_cluster_check(&c, 0, 1, why, sizeof(why)), 0); /* a single node */
    ck_assert_int_eq(config_cluster_check(&c, 0, 3, why, sizeof(why)), -1);
    ck_assert_ptr_nonnull(strstr(why, "replicas lists 0 addresses"));
    ck_assert_int_eq(config_set(&c, "replicas", "a:1,[::1]:2,c:3", why, sizeof(why)), 0);
    ck_assert_uint_eq(config_replicas(&c, addrs, CONFIG_REPLICAS_MAX), 3);
    ck_assert_str_eq(addrs[0], "a:1");
    ck_assert_str_eq(addrs[1], "[::1]:2");
    ck_assert_str_eq(addrs[2], "c:3");
    ck_assert_int_eq(config_cluster_check(&c, 2, 3, why, sizeof(why)), 0);
    ck_assert_int_eq(config_cluster_check(&c, 0, 5, why, sizeof(why)), -1);
    ck_assert_int_eq(config_cluster_check(&c, 0, 1, why, sizeof(why)), -1); /* three for one */
    /* peer_listen: the replica's own port, on its host or a wildcard */
    static const struct {
        const char *listen;
        u64 replica;
        int want;
    } cases[] = { { "[::1]:2", 1, 0 }, { "[::]:2", 1, 0 }, { "0.0.0.0:2", 1, 0 }, { "0.0.0.0:3", 1, -1 },
                  { "c:3", 1, -1 }, { "[::1]:3", 1, -1 }, { "c:3", 2, 0 }, { "a:3", 2, -1 } };
    for (size_t i = 0; i < ADB_ARRAY_LEN(cases); i++) {
        ck_assert_int_eq(config_set(&c, "peer_listen", cases[i].listen, why, sizeof(why)), 0);
        ck_assert_msg(config_cluster_check(&c, cases[i].replica, 3, why, sizeof(why)) == cases[i].want, "%s as %d",
                      cases[i].listen, (int)cases[i].replica);
    }
    /* An empty value clears either key. */
    ck_assert_int_eq(config_set(&c, "peer_listen", "", why, sizeof(why)), 0);
    ck_assert_str_eq(c.peer_listen, "");
    ck_assert_int_eq(config_set(&c, "replicas", "", why, sizeof(why)), 0);
    ck_assert_uint_eq(config_replicas(&c, addrs, CONFIG_REPLICAS_MAX), 0);
    /* Bad lists. */
    static const char *const bad[] = { "a:1,b:2", "a:1,,b:2", "a:1,b:2,a:1", "a:1,b:2,c:3,d:4,e:5,f:6",
                                       "a:1,b,c:3", "a:1, b:2,c:3", "a:1,b:2,c:3," };
    for (size_t i = 0; i < ADB_ARRAY_LEN(bad); i++)
        ck_assert_msg(config_set(&c, "replicas", bad[i], why, sizeof(why)) == -1, "%s", bad[i]);
    ck_assert_int_eq(config_set(&c, "peer_listen", "nohost", why, sizeof(why)), -1);
}
END_TEST

START_TEST(test_validate_cross_key)
{
    struct config c;
    char why[512] = "";

    /* max_ttl in slots above SM_MAX_TTL_SLOTS_MAX (2^24): 5h of 1ms slots is 18,000,000. */
    config_defaults(&c);
    ck_assert_int_eq(config_set(&c, "slot_duration_ms", "1", why, sizeof(why)), 0);
    ck_assert_int_eq(config_set(&c, "max_ttl_ms", "5h", why, sizeof(why)), 0);
    ck_assert_int_eq(config_validate(&c, why, sizeof(why)), -1);
    ck_assert_str_eq(why, "max_ttl_ms = 18000000 is 18000000 slots of slot_duration_ms = 1; at most 16777216 "
                          "slots (lower max_ttl_ms or raise slot_duration_ms)");
    ck_assert_int_eq(config_set(&c, "max_ttl_ms", "16777216", why, sizeof(why)), 0);
    ck_assert_int_eq(config_validate(&c, why, sizeof(why)), 0);
    ck_assert_int_eq(config_set(&c, "slot_duration_ms", "2", why, sizeof(why)), 0); /* longer slots: fewer */
    ck_assert_int_eq(config_set(&c, "max_ttl_ms", "720h", why, sizeof(why)), 0);
    ck_assert_int_eq(config_validate(&c, why, sizeof(why)), -1);
    ck_assert_int_eq(config_set(&c, "max_ttl_ms", "9h", why, sizeof(why)), 0);
    ck_assert_int_eq(config_validate(&c, why, sizeof(why)), 0);

    config_defaults(&c);
    ck_assert_int_eq(config_set(&c, "admin_listen", "127.0.0.1:7400", why, sizeof(why)), 0);
    ck_assert_int_eq(config_validate(&c, why, sizeof(why)), -1);
    ck_assert_str_eq(why, "listen and admin_listen are both 127.0.0.1:7400");

    /* A struct filled by hand is range-checked too. */
    config_defaults(&c);
    c.slot_duration_ms = 0;
    ck_assert_int_eq(config_validate(&c, why, sizeof(why)), -1);
    ck_assert_str_eq(why, "slot_duration_ms: 0ms is out of range 1..60000");
    config_defaults(&c);
    c.max_batch = 9000;
    ck_assert_int_eq(config_validate(&c, why, sizeof(why)), -1);
    ck_assert_str_eq(why, "max_batch: 9000 is out of range 1..8192");
    config_defaults(&c);
    c.ring_capacity = 3000;
    ck_assert_int_eq(config_validate(&c, why, sizeof(why)), -1);
    config_defaults(&c);
    c.log_level = (enum log_level)7;
    ck_assert_int_eq(config_validate(&c, why, sizeof(why)), -1);
    config_defaults(&c);
    memset(c.listen, 'x', sizeof(c.listen));
    ck_assert_int_eq(config_validate(&c, why, sizeof(why)), -1);
    ck_assert_str_eq(why, "listen: not terminated");
    config_defaults(&c);
    c.operation_capacity = (1u << 30) + 1;
    ck_assert_int_eq(config_validate(&c, why, sizeof(why)), -1);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("config");
    tcase_add_unchecked_fixture(tc, root_setup, root_teardown);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_defaults_validate);
    tcase_add_test(tc, test_key_info);
    tcase_add_test(tc, test_parse_duration);
    tcase_add_test(tc, test_set_durations);
    tcase_add_test(tc, test_set_counts);
    tcase_add_test(tc, test_set_sizes_and_powers);
    tcase_add_test(tc, test_set_strings_and_levels);
    tcase_add_test(tc, test_file_comments_blank_lines);
    tcase_add_test(tc, test_file_unknown_key);
    tcase_add_test(tc, test_file_out_of_range);
    tcase_add_test(tc, test_file_section_rejected);
    tcase_add_test(tc, test_file_other_errors);
    tcase_add_test(tc, test_flags_map_keys);
    tcase_add_loop_test(tc, test_print_load_round_trip, 0, 16);
    tcase_add_test(tc, test_print_units);
    tcase_add_test(tc, test_expiration_capacity_default);
    tcase_add_test(tc, test_windows_round_up);
    tcase_add_test(tc, test_validate_cross_key);
    tcase_add_test(tc, test_replicas_and_cluster_check);
    suite_add_tcase(s, tc);
    return s;
}
