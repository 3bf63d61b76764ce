/*
 * bench/durable.h — the WAL side of `allocdb-bench core --durable`.
 *
 * A bench_wal is a fresh WAL in a temporary directory under a parent the user names. Every
 * command the scenario applies is appended first; every `group` commands (and at the end) the
 * log is committed with one fdatasync. The scenario sees each result as it is applied, the way
 * a pipelined sequencer and applier would; a real server releases the replies of a group only
 * after its sync, so the figure is the throughput of durable commits, not of acknowledgements
 * to one waiting client.
 */
#ifndef ADB_BENCH_DURABLE_H
#define ADB_BENCH_DURABLE_H

#include "common/types.h"
#include "replica/sm.h"

struct bench_wal;

/* Creates parent/allocdb-bench.XXXXXX with a formatted WAL; NULL and a reason on failure. */
struct bench_wal *bench_wal_open(const char *parent, u64 group, u64 segment_bytes, char *why, size_t why_len);

/* Appends the entry the state machine is about to apply; commits when a group is full. */
bool bench_wal_log(struct bench_wal *b, u64 lsn, u64 slot, const struct sm_command *cmd, char *why, size_t why_len);

/* Commits whatever is pending. */
bool bench_wal_commit(struct bench_wal *b, char *why, size_t why_len);

u64 bench_wal_syncs(const struct bench_wal *b);
u64 bench_wal_bytes(const struct bench_wal *b);
const char *bench_wal_dir(const struct bench_wal *b);

/* Closes the log; removes the directory unless keep. */
void bench_wal_close(struct bench_wal *b, bool keep);

/* Removes a directory holding only plain files (the bench's own data dirs). */
void bench_remove_dir(const char *dir);

#endif
