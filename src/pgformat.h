/*
 * pgformat.h: PostgreSQL's on-disk formats that pgkeep reads:
 * pg_control, WAL page headers and segment names, data-page checksums.
 * Supported: PostgreSQL 10 to 16 (pg_control version 1002 to 1300).
 * Every parser validates lengths and magic numbers and returns ERR_FORMAT
 * with a message naming the file and the field that is wrong.
 */
#ifndef PGKEEP_PGFORMAT_H
#define PGKEEP_PGFORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct pg_control_info
{
	uint64_t	system_id;
	uint32_t	control_version;    /* pg_control_version, e.g. 1300 */
	uint32_t	catalog_version;    /* catalog_version_no, e.g. 202209061 */
	uint32_t	pg_version;         /* major version derived from the catalog version: 150000 for 15 */
	uint32_t	block_size;         /* BLCKSZ */
	uint32_t	wal_block_size;     /* XLOG_BLCKSZ */
	uint32_t	wal_segment_size;   /* bytes */
	uint32_t	data_checksum_version;  /* 0 when checksums are off */
	uint32_t	timeline;           /* of the latest checkpoint */
	uint64_t	checkpoint_lsn;
} pg_control_info;

/* Parse the bytes of global/pg_control (checks its CRC). */
int			pg_control_parse(const uint8_t *buf, size_t len, pg_control_info *out);
/* Read and parse DATADIR/global/pg_control. */
int			pg_control_read(const char *datadir, pg_control_info *out);
/* "15" from 150000, "9.6" from 90600; static buffer-free: writes into out (16 bytes). */
void		pg_version_str(uint32_t pg_version, char out[16]);

/* WAL */
#define WAL_SEG_NAME_LEN 24

typedef enum
{
	WAL_FILE_SEGMENT,      /* 000000010000000000000001 */
	WAL_FILE_PARTIAL,      /* 000000010000000000000001.partial */
	WAL_FILE_HISTORY,      /* 00000002.history */
	WAL_FILE_BACKUP,       /* 000000010000000000000001.00000028.backup */
	WAL_FILE_INVALID
} wal_file_kind;

/* Classify a WAL file name (no directory part). */
wal_file_kind wal_file_classify(const char *name);

/* Parse a 24-hex segment name; false when malformed. */
bool		wal_segname_parse(const char *name, uint32_t *tli, uint64_t *segno, uint32_t seg_size);
/* Write the name of segment segno on timeline tli (25 bytes with NUL). */
void		wal_segname(char out[WAL_SEG_NAME_LEN + 1], uint32_t tli, uint64_t segno, uint32_t seg_size);
/* Segment number holding lsn. */
uint64_t	wal_lsn_to_segno(uint64_t lsn, uint32_t seg_size);
/* Parse "16/B374D848"; false when malformed. */
bool		wal_lsn_parse(const char *text, uint64_t *lsn);
void		wal_lsn_format(uint64_t lsn, char out[32]);

typedef struct wal_long_header
{
	uint16_t	magic;
	uint16_t	info;
	uint32_t	timeline;
	uint64_t	page_addr;
	uint64_t	system_id;
	uint32_t	seg_size;
	uint32_t	block_size;
} wal_long_header;

/* Parse the long page header at the start of a segment (at least 40 bytes). */
int			wal_long_header_parse(const uint8_t *buf, size_t len, wal_long_header *out);
/*
 * Check the first page of segment file `name` against the stanza: system id,
 * segment size, and page address equal to the segment's start.  `what` names
 * the file in messages.  ERR_FORMAT for a malformed header, ERR_STANZA for a
 * header of another cluster.
 */
int			wal_check_segment_header(const uint8_t *buf, size_t len, const char *name, uint64_t system_id, uint32_t seg_size);

/* Data pages */
/* The checksum PostgreSQL stores in a page (pd_checksum) for block blkno of a relation. */
uint16_t	page_checksum(const uint8_t *page, uint32_t blkno, uint32_t block_size);

typedef enum
{
	PAGE_OK,           /* checksum matches */
	PAGE_NEW,          /* all-zero or never initialized: nothing to check */
	PAGE_SKIP,         /* LSN at or after the backup start: WAL replay rewrites it */
	PAGE_BAD           /* checksum or header mismatch */
} page_verdict;

/*
 * Verify a page of a relation file: blkno is the block's number within the
 * relation (segment number * blocks per segment + block within the file).
 */
page_verdict page_verify(const uint8_t *page, uint32_t blkno, uint32_t block_size, uint64_t backup_start_lsn);

/*
 * Whether a path relative to the data directory is a relation data file whose
 * pages carry checksums (base/, global/, pg_tblspc/ main, fsm, vm and init
 * forks, with optional .N segment suffix).  *segno is the .N suffix (0 if none).
 */
bool		pg_path_is_relation(const char *relpath, uint32_t *segno);

#endif
