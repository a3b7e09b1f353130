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
 *   end<TAB>SHA256             hash of every byte before this line
 *
 * Entries come in manifest_path_cmp order.
 *
 * Values are escaped (\\ \t \n \r).  Paths are relative to the data
 * directory, in manifest_path_cmp order, and never absolute, empty, or containing "."
 * or ".." components.  Memory use of reader and writer is bounded: block
 * lists are streamed, never held whole.
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
/* Block ids of the current file, in order; n may be any part of its list. */
int			manifest_write_blocks(manifest_writer *m, const uint8_t (*ids)[HASH_LEN], size_t n);
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
 * (0 once the file's blocks are all read).  Unread blocks are skipped by the
 * next manifest_read_entry.
 */
int			manifest_read_blocks(manifest_reader *m, uint8_t (*ids)[HASH_LEN], size_t max, size_t *n);
void		manifest_reader_free(manifest_reader *m);

/* Read a whole manifest once to check its syntax and end hash (without keeping it). */
int			manifest_verify_stream(io_reader *in, const char *what);

#endif
