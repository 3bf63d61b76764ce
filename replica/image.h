/*
 * replica/image.h — state-transfer images as files of a data directory.
 *
 * An image is what a replica behind its peers' pruned WALs takes instead of the entries it
 * lacks (replica/vsr.h, state transfer): the state after entry lsn, self-contained. Its bytes
 * are exactly what the core ships in snapshot chunks:
 *
 *   entry header  VSR_ENTRY_HEADER_SIZE bytes: the header of entry lsn (vsr_entry_headers_encode)
 *                 — the WAL of a replica that installs the image restarts chained to it
 *   image         snapshot_image_encode's bytes: a version 2 snapshot, its live operation
 *                 records, their CRC32C (replica/snapshot.h)
 *
 * Files: image-<lsn as 20 digits>.img, complete and durable; image-<lsn>.tmp while one is built
 * from a snapshot, image-<lsn>.recv while one is received from a peer.
 *
 * A replica serves an image it builds from its newest snapshot and the operation log (the
 * snapshot leaves the records out), or one it installed. Recovery (replica/recovery.h) takes an
 * image file like a snapshot: after an install the WAL restarts after the image's entry, so
 * until the applier's next snapshot the image is the only state the WAL follows.
 *
 * NOTES
 *   image_check reads no state machine: what can be checked of an image without one (sizes, the
 *   entry header against the snapshot's LSN and slot, the snapshot header, the config, every
 *   section's CRC and the records' CRC).
 *   image_decode checks everything snapshot_image_decode does on top. A replica installs an
 *   image that passed image_check, its applier decodes it (and stops the daemon if it does not
 *   decode: a CRC-valid image its peer built that does not decode is a bug, and the WAL no
 *   longer holds what came before it).
 */
#ifndef ADB_REPLICA_IMAGE_H
#define ADB_REPLICA_IMAGE_H

#include "common/types.h"
#include "replica/sm.h"
#include "replica/snapshot.h"
#include "replica/vsr_message.h"
#include "wal/io.h"

bool image_file_name(char *out, size_t cap, u64 lsn);
bool image_parse_name(const char *name, u64 *lsn);
/* dir/image-<lsn><suffix>: IMAGE_IMG complete, IMAGE_TMP being built, IMAGE_RECV being received. */
#define IMAGE_IMG ".img"
#define IMAGE_TMP ".tmp"
#define IMAGE_RECV ".recv"
bool image_path(const char *dir, u64 lsn, const char *suffix, char *out, size_t cap);

/* What an image file is: its entry's LSN, size and CRC32C of all its bytes (struct vsr_image). */
struct image_id {
    u64 lsn;
    u64 size;
    u32 crc;
};

/*
 * Builds dir/image-<at->lsn>.img from dir/snapshot-<at->lsn>.snap and the live records the
 * operation log holds for it, headed by *at: written to image-<lsn>.tmp, fsynced, renamed,
 * the directory synced. Checks the records against the snapshot's header (count, oldest LSN,
 * hash sum) as decoding would. 0 and *out, or a negative errno and `why` (nothing is left
 * behind: -ENOENT if the snapshot or records are gone, e.g. pruned meanwhile; -EUCLEAN if they
 * do not check).
 */
int image_build(struct io *io, const char *dir, const struct vsr_entry_header *at, struct image_id *out, char *why,
                size_t why_len);

/* The checks that need no state machine (see NOTES); *at (OUT) is the image's entry header. */
enum snapshot_status image_check(const u8 *buf, u64 len, const struct sm_config *cfg, struct vsr_entry_header *at,
                                 char *why, size_t why_len);

/* image_check, then the whole state into sm (fresh from sm_init/sm_create with cfg). */
enum snapshot_status image_decode(const u8 *buf, u64 len, const struct sm_config *cfg, sm_t *sm,
                                  struct vsr_entry_header *at, char *why, size_t why_len);

/* Removes dir's image files (complete or partial) but image-<keep>.img and image-<receiving>.recv
 * (0: none). Returns how many went, or a negative errno. */
int image_remove_others(struct io *io, const char *dir, u64 keep, u64 receiving);

/* The LSN of dir's newest complete image file, 0 if none. */
u64 image_newest(struct io *io, const char *dir);

#endif
