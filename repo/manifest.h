/*
 * manifest.h: the manifest of a backup, written and read as a stream.
 *
 * A manifest lists every file, directory and link of the data directory with
 * its metadata and, for files, the ids of its blocks in order.  It is text
 * (format in doc/repository-format.md):
 *
 *   pgkeep-manifest 1
 *   KEY<TAB>VALUE              header lines (label, type, LSNs, ...)
 *   files
 *   d<TAB>PATH<TAB>MODE<TAB>USER<TAB>GROUP<TAB>MTIME
 *   l<TAB>PATH<TAB>MODE<TAB>USER<TAB>GROUP<TAB>MTIME<TAB>TARGET
 *   f<TAB>PATH<TAB>MODE<TAB>USER<TAB>GROUP<TAB>MTIME<TAB>SIZE<TAB>NBLOCKS<TAB>BADPAGES
 *   <64 hex>                   one line per block of the file above, in order
 *   z<TAB>COUNT                COUNT all-zero blocks (not stored)
 *   g<TAB><64 hex><TAB>COUNT   COUNT blocks (1..MANIFEST_GROUP_BLOCKS) whose ids are
 *                              listed in that block-list object of the block store
 *   end<TAB>SHA256             hash of every byte before this line
 *
 * Entries come in manifest_path_cmp order.
 *
 * Values are escaped (\\ \t \n \r).  Paths are relative to the data
 * directory, in manifest_path_cmp order, and never absolute, empty, or containing "."
 * or ".." components.  Memory use of reader and writer is bounded: block
 * lists are streamed, never held whole (a reader holds at most one group,
 * MANIFEST_GROUP_BLOCKS ids).
 */
#ifndef PGKEEP_MANIFEST_H
#define PGKEEP_MANIFEST_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "../src/hash.h"
#include "../src/io.h"

#define MANIFEST_VERSION 1
#define MANIFEST_MAX_TABLESPACES 256
#define MANIFEST_MAX_BAD_PAGES 1000   /* list kept per file; the count is exact */

/*
 * Most blocks one `g` line stands for.  A backup cuts a file's ids into
 * aligned groups (group k: blocks 256k .. 256k+255) and stores each group's
 * ids, concatenated as COUNT * HASH_LEN binary bytes, as a "block list"
 * object in the block store; its id is the SHA-256 of those bytes.  (A list
 * may also be a delta against such a full list: blocklist.h.)
 */
#define MANIFEST_GROUP_BLOCKS 256

typedef struct manifest_tablespace
{
	uint32_t	oid;
	char	   *name;
	char	   *location;       /* absolute path of the tablespace's directory on the origin */
} manifest_tablespace;

typedef struct manifest_header
{
	char	   *label;          /* 20261127-014923F */
	char	   *type;           /* "full", "diff", "incr" */
	char	   *prior;          /* label the backup was compared with, or NULL */
	int64_t		start_time;     /* unix seconds */
	int64_t		stop_time;
	uint64_t	start_lsn;
	uint64_t	stop_lsn;
	uint32_t	timeline;
	char	   *wal_start;      /* segment names */
	char	   *wal_stop;
	uint64_t	system_id;
	uint32_t	pg_version;
	uint32_t	block_size;
	char	   *compress;       /* "zst", ... */
	int			compress_level;
	uint64_t	db_size;        /* sum of file sizes */
	uint64_t	repo_size;      /* stored bytes of all blocks the backup references */
	uint64_t	repo_new;       /* stored bytes this backup added */
	uint64_t	file_count;
	uint64_t	checksum_errors;    /* pages that failed verification */
	bool		checksum_page;
	char	   *backup_label;   /* content of backup_label from pg_backup_stop */
	char	   *tablespace_map; /* content of tablespace_map, or NULL */
	int			ntablespaces;
	manifest_tablespace *tablespaces;
} manifest_header;

typedef enum
{
	MF_FILE = 'f',
	MF_DIR = 'd',
	MF_LINK = 'l'
} manifest_kind;

typedef struct manifest_entry
{
	manifest_kind kind;
	char	   *path;
	mode_t		mode;           /* permission bits only (07777) */
	char	   *user;
	char	   *group;
	int64_t		mtime;
	uint64_t	size;           /* files */
	uint64_t	nblocks;        /* files: number of block lines that follow (zero runs count each block) */
	char	   *link_target;    /* links */
	uint64_t	nbad;           /* files: pages with checksum errors */
	uint32_t   *bad;            /* first min(nbad, MANIFEST_MAX_BAD_PAGES) page numbers */
} manifest_entry;

/* One block line of a file, as written. */
typedef enum
{
	MREF_BLOCK,                 /* an id line */
	MREF_ZERO,                  /* a zero run (z) */
	MREF_GROUP                  /* a block-list group (g) */
} manifest_ref_kind;

typedef struct manifest_ref
{
	manifest_ref_kind kind;
	uint8_t		id[HASH_LEN];   /* MREF_BLOCK: the block id; MREF_GROUP: the block-list object id */
	uint64_t	count;          /* blocks this line stands for (1 for MREF_BLOCK) */
} manifest_ref;

/* The id that stands for an all-zero block in block lists (32 zero bytes). */
extern const uint8_t manifest_zero_id[HASH_LEN];
bool		manifest_is_zero_id(const uint8_t id[HASH_LEN]);

void		manifest_header_free(manifest_header *h);
void		manifest_entry_free(manifest_entry *e);

/*
 * Manifest path order: bytewise, except that '/' sorts before every other
 * byte, so a directory's whole subtree comes right after it (depth-first
 * order with each directory's names sorted bytewise).  <0, 0, >0 like strcmp.
 */
int			manifest_path_cmp(const char *a, const char *b);

/* Check a relative path of a manifest or a request: ERR_FORMAT naming it when unsafe. */
int			manifest_check_path(const char *path);

/* Writer.  Entries must come in bytewise path order; blocks follow their file. */
typedef struct manifest_writer manifest_writer;

manifest_writer *manifest_writer_new(io_writer *out);
int			manifest_write_header(manifest_writer *m, const manifest_header *h);
int			manifest_write_entry(manifest_writer *m, const manifest_entry *e);
/*
 * Block ids of the current file, in order; n may be any part of its list.
 * Written as id lines and zero runs (all-zero ids), never as groups.
 */
int			manifest_write_blocks(manifest_writer *m, const uint8_t (*ids)[HASH_LEN], size_t n);
/*
 * One block line of the current file, standing for ref->count of the blocks
 * it still lacks (ERR_INTERNAL beyond them, as for manifest_write_blocks).
 * MREF_BLOCK needs count 1; MREF_ZERO a count of at least 1; MREF_GROUP a
 * count in 1..MANIFEST_GROUP_BLOCKS and a list id other than the zero id.
 * Zero blocks (MREF_ZERO, or MREF_BLOCK of the zero id) join the zero run in
 * progress, so adjacent ones come out as one `z` line.  May be mixed with
 * manifest_write_blocks within a file.
 */
int			manifest_write_ref(manifest_writer *m, const manifest_ref *ref);
/* Writes the end line; checks every file got exactly its nblocks blocks. */
int			manifest_write_end(manifest_writer *m);
void		manifest_writer_free(manifest_writer *m);

/* Reader.  Validates every field; ERR_FORMAT names the line and what is wrong. */
typedef struct manifest_reader manifest_reader;

manifest_reader *manifest_reader_new(io_reader *in, const char *what);
int			manifest_read_header(manifest_reader *m, manifest_header *h);
/* Next entry; *done = true (and 0) after the end line, whose hash is checked (ERR_CORRUPT). */
int			manifest_read_entry(manifest_reader *m, manifest_entry *e, bool *done);
/*
 * Next up to max block ids of the current file into ids; *n is how many
 * (0 once the file's blocks are all read).  Zero runs come out as zero ids;
 * a `g` line is expanded through the resolver (manifest_reader_set_group_fn)
 * into a buffer of MANIFEST_GROUP_BLOCKS ids, and a call may return part of
 * a group, the next continuing it.  Without a resolver a `g` line is
 * ERR_FORMAT; an error of the resolver is returned as it is.  Unread blocks
 * are skipped by the next manifest_read_entry (groups are not resolved).
 * A file's blocks are read either with this or with manifest_read_ref:
 * calling the other after one has read some of them is ERR_INTERNAL.
 */
int			manifest_read_blocks(manifest_reader *m, uint8_t (*ids)[HASH_LEN], size_t max, size_t *n);

/*
 * Reader, low level: the next block line of the current file as it is
 * written (an id line of 64 zeros is MREF_BLOCK of the zero id; MREF_ZERO's
 * id is the zero id); *end = true (and 0) after the file's last.  Groups are
 * not resolved.
 */
int			manifest_read_ref(manifest_reader *m, manifest_ref *ref, bool *end);

/*
 * Resolver of block-list groups: fills ids[0..count) with the ids listed in object list_id
 * (fetched from the repository and verified by the caller's function); returns 0 or an error code.
 */
typedef int (*manifest_group_fn) (void *arg, const uint8_t list_id[HASH_LEN], uint64_t count, uint8_t (*ids)[HASH_LEN]);

/*
 * A hint for prefetching: the list ids of up to max `g` lines after the
 * current position among the lines the reader has buffered (whole lines
 * only), in order; how many.  Nothing is read or checked: the lines are
 * validated when they are read.
 */
size_t		manifest_peek_groups(manifest_reader *m, uint8_t (*ids)[HASH_LEN], size_t max);

/* Set the resolver manifest_read_blocks uses to expand `g` lines; without one, a `g` line is ERR_FORMAT there. */
void		manifest_reader_set_group_fn(manifest_reader *m, manifest_group_fn fn, void *arg);
void		manifest_reader_free(manifest_reader *m);

/*
 * Read a whole manifest once to check its syntax and end hash (without
 * keeping it).  Groups are checked as lines, not resolved.
 */
int			manifest_verify_stream(io_reader *in, const char *what);

#endif
