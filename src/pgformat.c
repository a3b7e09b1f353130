/*
 * pgformat.c: readers for the PostgreSQL on-disk formats pgkeep relies on:
 * global/pg_control, WAL segment names and long page headers, LSN text, and
 * data-page checksums (see pgformat.h).
 *
 * PostgreSQL writes these structures in the native byte order and alignment
 * of the machine that runs the server.  pgkeep reads them on that same
 * machine, so fields are read with memcpy into native integers; the offsets
 * below are those of the x86_64 (LP64) ABI, which aarch64 and other 64-bit
 * Linux ports share.
 */
#include "pgformat.h"
#include "error.h"
#include "mem.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------------ */

static uint16_t
get_u16(const uint8_t *p)
{
	uint16_t	v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static uint32_t
get_u32(const uint8_t *p)
{
	uint32_t	v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static uint64_t
get_u64(const uint8_t *p)
{
	uint64_t	v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static bool
is_pow2_between(uint32_t v, uint32_t lo, uint32_t hi)
{
	return v >= lo && v <= hi && (v & (v - 1)) == 0;
}

/* BLCKSZ and XLOG_BLCKSZ: configure accepts powers of two from 1 to 32 KiB. */
static bool
block_size_valid(uint32_t size)
{
	return is_pow2_between(size, 1024, 32768);
}

/* --wal-segsize: powers of two from 1 MiB to 1 GiB. */
static bool
wal_seg_size_valid(uint32_t size)
{
	return is_pow2_between(size, 1024 * 1024, 1024 * 1024 * 1024);
}

static bool
is_upper_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F');
}

/* Whether s starts with n uppercase hex digits. */
static bool
upper_hex_run(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!is_upper_hex(s[i]))
			return false;
	return true;
}

/* Value of n hex digits (already validated). */
static uint32_t
hex_value(const char *s, size_t n)
{
	uint32_t	v = 0;

	for (size_t i = 0; i < n; i++)
	{
		char		c = s[i];
		uint32_t	d;

		if (c >= '0' && c <= '9')
			d = (uint32_t) (c - '0');
		else if (c >= 'A' && c <= 'F')
			d = (uint32_t) (c - 'A' + 10);
		else
			d = (uint32_t) (c - 'a' + 10);
		v = (v << 4) | d;
	}
	return v;
}

/* ------------------------------------------------------------------------
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as PostgreSQL's
 * pg_crc32c: initial value and final XOR of 0xFFFFFFFF.  Bit at a time:
 * it only ever covers the 300 bytes of pg_control, so a table or SSE4.2
 * would buy nothing.
 * ------------------------------------------------------------------------ */

static uint32_t
crc32c(const uint8_t *data, size_t len)
{
	uint32_t	crc = 0xFFFFFFFFu;

	for (size_t i = 0; i < len; i++)
	{
		crc ^= data[i];
		for (int k = 0; k < 8; k++)
			crc = (crc & 1) ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
	}
	return crc ^ 0xFFFFFFFFu;
}

/* ------------------------------------------------------------------------
 * pg_control
 *
 * ControlFileData starts the same in every version: system_identifier (0),
 * pg_control_version (8), catalog_version_no (12), state (16), time (24),
 * checkPoint (32).  What follows moved between versions:
 *
 *  - 10 (1002) still has prevCheckPoint at 40, pushing checkPointCopy to 48;
 *  - 12 (1201) made CheckPoint.nextXid a FullTransactionId (8-byte aligned),
 *    growing CheckPoint from 80 to 88 bytes, and added max_wal_senders;
 *  - 13 (1300) dropped float4ByVal, which fit in padding, so nothing moved.
 *
 * The timeline we want is CheckPoint.ThisTimeLineID, 8 bytes into
 * checkPointCopy (after the redo pointer).  Offsets computed for LP64:
 * 8-byte alignment for uint64 and double, 4 for uint32 and int, 1 for bool.
 * The CRC covers every byte before the crc field.
 * ------------------------------------------------------------------------ */

#define PG_CONTROL_FILE_SIZE 8192

typedef struct control_layout
{
	uint32_t	control_version;
	uint32_t	pg_version_min;     /* major versions that use this layout */
	uint32_t	pg_version_max;
	size_t		off_checkpoint_tli;
	size_t		off_blcksz;
	size_t		off_xlog_blcksz;
	size_t		off_xlog_seg_size;
	size_t		off_data_checksum_version;
	size_t		off_crc;
} control_layout;

static const control_layout control_layouts[] = {
	{1002, 100000, 100000, 56, 216, 224, 228, 252, 288},
	{1100, 110000, 110000, 48, 208, 216, 220, 244, 280},
	{1201, 120000, 120000, 48, 216, 224, 228, 252, 288},
	{1300, 130000, 160000, 48, 216, 224, 228, 252, 288},
};

#define OFF_SYSTEM_ID 0
#define OFF_CONTROL_VERSION 8
#define OFF_CATALOG_VERSION 12
#define OFF_CHECKPOINT 32

/*
 * Catalog version of each release.  It never changes within a major
 * version, and later development only raises it, so a catalog version
 * belongs to the first release whose value is at least as large.
 */
static const struct
{
	uint32_t	catalog_version;
	uint32_t	pg_version;
} catalog_versions[] = {
	{201608131, 90600},
	{201707211, 100000},
	{201809051, 110000},
	{201909212, 120000},
	{202007201, 130000},
	{202107181, 140000},
	{202209061, 150000},
	{202307071, 160000},
};

#define N_CATALOG_VERSIONS (sizeof(catalog_versions) / sizeof(catalog_versions[0]))

/* Major version of a catalog version, or 0 when it is outside 10..16. */
static uint32_t
pg_version_of_catalog(uint32_t catalog_version)
{
	/* Older than the first supported release's development cycle. */
	if (catalog_version <= catalog_versions[0].catalog_version)
		return 0;
	for (size_t i = 1; i < N_CATALOG_VERSIONS; i++)
		if (catalog_version <= catalog_versions[i].catalog_version)
			return catalog_versions[i].pg_version;
	return 0;
}

static const control_layout *
control_layout_find(uint32_t control_version)
{
	for (size_t i = 0; i < sizeof(control_layouts) / sizeof(control_layouts[0]); i++)
		if (control_layouts[i].control_version == control_version)
			return &control_layouts[i];
	return NULL;
}

static int
control_version_unsupported(uint32_t control_version)
{
	/*
	 * A value that is a multiple of 65536 is a small version number read in
	 * the other byte order: the file comes from another architecture.
	 */
	if (control_version % 65536 == 0 && control_version / 65536 != 0)
		return error_set(ERR_FORMAT, "pg_control has version %" PRIu32 " in the wrong byte order: "
						 "the cluster was created on another architecture", control_version);
	return error_set(ERR_FORMAT, "pg_control has unsupported version %" PRIu32
					 " (supported: 1002 to 1300, PostgreSQL 10 to 16)", control_version);
}

/* The sizes the rest of pgkeep divides by and allocates with. */
static int
control_check_sizes(const pg_control_info *c)
{
	if (!block_size_valid(c->block_size))
		return error_set(ERR_FORMAT, "pg_control has invalid block size %" PRIu32, c->block_size);
	if (!block_size_valid(c->wal_block_size))
		return error_set(ERR_FORMAT, "pg_control has invalid WAL block size %" PRIu32, c->wal_block_size);
	if (!wal_seg_size_valid(c->wal_segment_size))
		return error_set(ERR_FORMAT, "pg_control has invalid WAL segment size %" PRIu32,
						 c->wal_segment_size);
	if (c->data_checksum_version > 1)
		return error_set(ERR_FORMAT, "pg_control has unknown data checksum version %" PRIu32,
						 c->data_checksum_version);
	if (c->timeline == 0)
		return error_set(ERR_FORMAT, "pg_control has invalid checkpoint timeline 0");
	return 0;
}

int
pg_control_parse(const uint8_t *buf, size_t len, pg_control_info *out)
{
	const control_layout *layout;
	pg_control_info c;
	uint32_t	stored_crc;
	uint32_t	computed_crc;

	memset(out, 0, sizeof(*out));
	if (len < OFF_CATALOG_VERSION + 4)
		return error_set(ERR_FORMAT, "pg_control is too short (%zu bytes)", len);

	memset(&c, 0, sizeof(c));
	c.system_id = get_u64(buf + OFF_SYSTEM_ID);
	c.control_version = get_u32(buf + OFF_CONTROL_VERSION);
	c.catalog_version = get_u32(buf + OFF_CATALOG_VERSION);

	layout = control_layout_find(c.control_version);
	if (layout == NULL)
		return control_version_unsupported(c.control_version);
	if (len < layout->off_crc + 4)
		return error_set(ERR_FORMAT, "pg_control is too short (%zu bytes, version %" PRIu32 " needs %zu)",
						 len, c.control_version, layout->off_crc + 4);

	/* Check the CRC before trusting any other field. */
	stored_crc = get_u32(buf + layout->off_crc);
	computed_crc = crc32c(buf, layout->off_crc);
	if (stored_crc != computed_crc)
		return error_set(ERR_FORMAT, "pg_control has an incorrect CRC (stored %08" PRIX32
						 ", computed %08" PRIX32 "): the file is corrupt", stored_crc, computed_crc);

	c.pg_version = pg_version_of_catalog(c.catalog_version);
	if (c.pg_version < layout->pg_version_min || c.pg_version > layout->pg_version_max)
		return error_set(ERR_FORMAT, "pg_control has catalog version %" PRIu32
						 ", which does not match control version %" PRIu32 " of PostgreSQL 10 to 16",
						 c.catalog_version, c.control_version);

	c.checkpoint_lsn = get_u64(buf + OFF_CHECKPOINT);
	c.timeline = get_u32(buf + layout->off_checkpoint_tli);
	c.block_size = get_u32(buf + layout->off_blcksz);
	c.wal_block_size = get_u32(buf + layout->off_xlog_blcksz);
	c.wal_segment_size = get_u32(buf + layout->off_xlog_seg_size);
	c.data_checksum_version = get_u32(buf + layout->off_data_checksum_version);

	if (control_check_sizes(&c) != 0)
		return ERR_FORMAT;
	*out = c;
	return 0;
}

/* Read up to cap bytes of fd into buf, over short reads and EINTR. */
static ssize_t
read_full(int fd, uint8_t *buf, size_t cap)
{
	size_t		done = 0;

	while (done < cap)
	{
		ssize_t		n = read(fd, buf + done, cap - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		done += (size_t) n;
	}
	return (ssize_t) done;
}

int
pg_control_read(const char *datadir, pg_control_info *out)
{
	char	   *path = xasprintf("%s/global/pg_control", datadir);
	uint8_t	   *buf = xmalloc(PG_CONTROL_FILE_SIZE);
	ssize_t		n;
	int			fd;
	int			rc;

	memset(out, 0, sizeof(*out));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
	{
		rc = error_set(ERR_FILE, "could not open file \"%s\": %s", path, strerror(errno));
		goto out;
	}
	n = read_full(fd, buf, PG_CONTROL_FILE_SIZE);
	if (n < 0)
	{
		rc = error_set(ERR_FILE, "could not read file \"%s\": %s", path, strerror(errno));
		close(fd);
		goto out;
	}
	close(fd);

	rc = pg_control_parse(buf, (size_t) n, out);
	if (rc != 0)
		error_wrap(rc, "file \"%s\"", path);
out:
	free(buf);
	free(path);
	return rc;
}

void
pg_version_str(uint32_t pg_version, char out[16])
{
	/* From 10 on the major version is one number; before, two. */
	if (pg_version >= 100000)
		snprintf(out, 16, "%" PRIu32, pg_version / 10000);
	else
		snprintf(out, 16, "%" PRIu32 ".%" PRIu32, pg_version / 10000, (pg_version / 100) % 100);
}

/* ------------------------------------------------------------------------
 * WAL file names and LSNs
 *
 * A segment name is TLI, then the segment number split into a "log" part
 * and a "seg" part, each as 8 uppercase hex digits.  The log part counts
 * 4 GiB units of WAL, so the seg part runs to 4 GiB / segment size.
 * ------------------------------------------------------------------------ */

static uint64_t
segs_per_xlogid(uint32_t seg_size)
{
	assert(wal_seg_size_valid(seg_size));
	return UINT64_C(0x100000000) / seg_size;
}

wal_file_kind
wal_file_classify(const char *name)
{
	size_t		len = strlen(name);

	if (len == WAL_SEG_NAME_LEN && upper_hex_run(name, WAL_SEG_NAME_LEN))
		return WAL_FILE_SEGMENT;
	if (len == WAL_SEG_NAME_LEN + strlen(".partial") && upper_hex_run(name, WAL_SEG_NAME_LEN) &&
		strcmp(name + WAL_SEG_NAME_LEN, ".partial") == 0)
		return WAL_FILE_PARTIAL;
	if (len == 8 + strlen(".history") && upper_hex_run(name, 8) && strcmp(name + 8, ".history") == 0)
		return WAL_FILE_HISTORY;
	/* 000000010000000000000001.00000028.backup: segment, then start offset */
	if (len == WAL_SEG_NAME_LEN + 1 + 8 + strlen(".backup") && upper_hex_run(name, WAL_SEG_NAME_LEN) &&
		name[WAL_SEG_NAME_LEN] == '.' && upper_hex_run(name + WAL_SEG_NAME_LEN + 1, 8) &&
		strcmp(name + WAL_SEG_NAME_LEN + 1 + 8, ".backup") == 0)
		return WAL_FILE_BACKUP;
	return WAL_FILE_INVALID;
}

bool
wal_segname_parse(const char *name, uint32_t *tli, uint64_t *segno, uint32_t seg_size)
{
	uint32_t	t;
	uint32_t	log;
	uint32_t	seg;

	if (!wal_seg_size_valid(seg_size))
		return false;
	if (strlen(name) != WAL_SEG_NAME_LEN || !upper_hex_run(name, WAL_SEG_NAME_LEN))
		return false;
	t = hex_value(name, 8);
	log = hex_value(name + 8, 8);
	seg = hex_value(name + 16, 8);
	/* Timeline 0 does not exist; a seg part past 4 GiB is not a name PostgreSQL writes. */
	if (t == 0 || seg >= segs_per_xlogid(seg_size))
		return false;
	*tli = t;
	*segno = (uint64_t) log * segs_per_xlogid(seg_size) + seg;
	return true;
}

void
wal_segname(char out[WAL_SEG_NAME_LEN + 1], uint32_t tli, uint64_t segno, uint32_t seg_size)
{
	uint64_t	per = segs_per_xlogid(seg_size);

	snprintf(out, WAL_SEG_NAME_LEN + 1, "%08" PRIX32 "%08" PRIX32 "%08" PRIX32, tli,
			 (uint32_t) (segno / per), (uint32_t) (segno % per));
}

uint64_t
wal_lsn_to_segno(uint64_t lsn, uint32_t seg_size)
{
	assert(wal_seg_size_valid(seg_size));
	return lsn / seg_size;
}

/* One half of an LSN: 1 to 8 hex digits of either case, as pg_lsn_in accepts. */
static const char *
lsn_half_parse(const char *s, uint32_t *out)
{
	size_t		n = strspn(s, "0123456789abcdefABCDEF");

	if (n == 0 || n > 8)
		return NULL;
	*out = hex_value(s, n);
	return s + n;
}

bool
wal_lsn_parse(const char *text, uint64_t *lsn)
{
	uint32_t	hi;
	uint32_t	lo;
	const char *p = lsn_half_parse(text, &hi);

	if (p == NULL || *p != '/')
		return false;
	p = lsn_half_parse(p + 1, &lo);
	if (p == NULL || *p != '\0')
		return false;
	*lsn = ((uint64_t) hi << 32) | lo;
	return true;
}

void
wal_lsn_format(uint64_t lsn, char out[32])
{
	snprintf(out, 32, "%" PRIX32 "/%" PRIX32, (uint32_t) (lsn >> 32), (uint32_t) lsn);
}

/* ------------------------------------------------------------------------
 * WAL long page header (XLogLongPageHeaderData): the short header
 * (magic 0, info 2, tli 4, pageaddr 8, rem_len 16, padded to 24), then
 * sysid 24, seg_size 32, xlog_blcksz 36; 40 bytes in all.
 * ------------------------------------------------------------------------ */

#define WAL_LONG_HEADER_SIZE 40
#define XLP_LONG_HEADER 0x0002
#define XLP_ALL_FLAGS 0x000F

/* XLOG_PAGE_MAGIC of PostgreSQL 10 to 16. */
static const uint16_t wal_page_magics[] = {0xD097, 0xD098, 0xD101, 0xD106, 0xD10D, 0xD110, 0xD113};

static bool
wal_magic_known(uint16_t magic)
{
	for (size_t i = 0; i < sizeof(wal_page_magics) / sizeof(wal_page_magics[0]); i++)
		if (wal_page_magics[i] == magic)
			return true;
	return false;
}

int
wal_long_header_parse(const uint8_t *buf, size_t len, wal_long_header *out)
{
	wal_long_header h;

	memset(out, 0, sizeof(*out));
	if (len < WAL_LONG_HEADER_SIZE)
		return error_set(ERR_FORMAT, "WAL page header is too short (%zu bytes, need %d)",
						 len, WAL_LONG_HEADER_SIZE);
	h.magic = get_u16(buf + 0);
	h.info = get_u16(buf + 2);
	h.timeline = get_u32(buf + 4);
	h.page_addr = get_u64(buf + 8);
	h.system_id = get_u64(buf + 24);
	h.seg_size = get_u32(buf + 32);
	h.block_size = get_u32(buf + 36);

	if (!wal_magic_known(h.magic))
		return error_set(ERR_FORMAT, "WAL page header has unknown magic number %04X "
						 "(not PostgreSQL 10 to 16 WAL)", h.magic);
	if ((h.info & ~XLP_ALL_FLAGS) != 0)
		return error_set(ERR_FORMAT, "WAL page header has invalid info bits %04X", h.info);
	if ((h.info & XLP_LONG_HEADER) == 0)
		return error_set(ERR_FORMAT, "WAL page header is not a long header (info %04X): "
						 "not the first page of a segment", h.info);
	if (h.timeline == 0)
		return error_set(ERR_FORMAT, "WAL page header has invalid timeline 0");
	if (!wal_seg_size_valid(h.seg_size))
		return error_set(ERR_FORMAT, "WAL page header has invalid segment size %" PRIu32, h.seg_size);
	if (!block_size_valid(h.block_size))
		return error_set(ERR_FORMAT, "WAL page header has invalid block size %" PRIu32, h.block_size);
	if (h.page_addr % h.seg_size != 0)
		return error_set(ERR_FORMAT, "WAL page header has page address %" PRIX32 "/%" PRIX32
						 ", not the start of a segment",
						 (uint32_t) (h.page_addr >> 32), (uint32_t) h.page_addr);
	*out = h;
	return 0;
}

int
wal_check_segment_header(const uint8_t *buf, size_t len, const char *name, uint64_t system_id, uint32_t seg_size)
{
	wal_long_header h;
	wal_file_kind kind = wal_file_classify(name);
	char		segname[WAL_SEG_NAME_LEN + 1];
	uint32_t	tli;
	uint64_t	segno;
	char		want[32];
	char		have[32];

	if (kind != WAL_FILE_SEGMENT && kind != WAL_FILE_PARTIAL)
		return error_set(ERR_FORMAT, "\"%s\" is not a WAL segment file name", name);
	/* A .partial file holds the first part of the segment its name starts with. */
	memcpy(segname, name, WAL_SEG_NAME_LEN);
	segname[WAL_SEG_NAME_LEN] = '\0';

	if (wal_long_header_parse(buf, len, &h) != 0)
		return error_wrap(ERR_FORMAT, "WAL file \"%s\"", name);

	if (h.system_id != system_id)
		return error_set(ERR_STANZA, "WAL file \"%s\" belongs to system identifier %" PRIu64
						 ", the stanza has %" PRIu64, name, h.system_id, system_id);
	if (h.seg_size != seg_size)
		return error_set(ERR_STANZA, "WAL file \"%s\" has segment size %" PRIu32
						 ", the stanza has %" PRIu32, name, h.seg_size, seg_size);

	if (!wal_segname_parse(segname, &tli, &segno, seg_size))
		return error_set(ERR_FORMAT, "\"%s\" is not a valid WAL segment name for segment size %" PRIu32,
						 name, seg_size);
	if (h.page_addr != segno * seg_size)
	{
		wal_lsn_format(segno * seg_size, want);
		wal_lsn_format(h.page_addr, have);
		return error_set(ERR_FORMAT, "WAL file \"%s\" starts at %s, its name says %s: "
						 "the file was renamed or is corrupt", name, have, want);
	}
	return 0;
}

/* ------------------------------------------------------------------------
 * Data pages
 *
 * PageHeaderData: pd_lsn (xlogid 0, xrecoff 4), pd_checksum 8, pd_flags 10,
 * pd_lower 12, pd_upper 14, pd_special 16, pd_pagesize_version 18,
 * pd_prune_xid 20; 24 bytes.
 * ------------------------------------------------------------------------ */

#define PD_CHECKSUM_OFF 8
#define PD_FLAGS_OFF 10
#define PD_LOWER_OFF 12
#define PD_UPPER_OFF 14
#define PD_SPECIAL_OFF 16
#define PD_VALID_FLAG_BITS 0x0007
#define MAXIMUM_ALIGNOF 8

/*
 * The page checksum is a 32-lane FNV-1a variant: the page is read as rows of
 * 32 uint32 words; lane j mixes word j of each row into its running sum with
 * sum = (sum ^ w) * prime ^ ((sum ^ w) >> 17), starting from a fixed offset
 * per lane.  Two rounds of zero words finish the mixing; the lanes are then
 * XORed together.  Independent lanes let the compiler vectorize the loop.
 */
#define CKSUM_LANES 32
#define CKSUM_FNV_PRIME 16777619u

static const uint32_t cksum_base_offsets[CKSUM_LANES] = {
	0x5B1F36E9, 0xB8525960, 0x02AB50AA, 0x1DE66D2A,
	0x79FF467A, 0x9BB9F8A3, 0x217E7CD2, 0x83E13D2C,
	0xF8D4474F, 0xE39EB970, 0x42C6AE16, 0x993216FA,
	0x7B093B5D, 0x98DAFF3C, 0xF718902A, 0x0B1C9CDB,
	0xE58F764B, 0x187636BC, 0x5D7B3BB1, 0xE73DE7DE,
	0x92BEC979, 0xCCA6C0B2, 0x304A0979, 0x85AA43D4,
	0x783125BB, 0x6CA8EAA2, 0xE407EAC6, 0x4B5CFC3E,
	0x9FBF8C76, 0x15CA20BE, 0xF2CA9FD3, 0x959BD756,
};

static inline uint32_t
cksum_mix(uint32_t sum, uint32_t value)
{
	uint32_t	tmp = sum ^ value;

	return tmp * CKSUM_FNV_PRIME ^ (tmp >> 17);
}

/* Mix one row of CKSUM_LANES words into the lanes (copied: the page need not be aligned). */
static inline void
cksum_row(uint32_t sums[CKSUM_LANES], const uint8_t *row, bool is_first)
{
	uint32_t	w[CKSUM_LANES];

	memcpy(w, row, sizeof(w));
	/* The word holding pd_checksum counts with those two bytes zeroed: the stored value does not feed into itself. */
	if (is_first)
	{
		uint8_t    *b = (uint8_t *) w + PD_CHECKSUM_OFF;

		b[0] = b[1] = 0;
	}
	for (size_t j = 0; j < CKSUM_LANES; j++)
		sums[j] = cksum_mix(sums[j], w[j]);
}

/*
 * The lanes are independent, so the compiler vectorizes the rows; the AVX2
 * clone does eight lanes per instruction where the CPU has it.
 */
__attribute__((target_clones("avx2", "default")))
uint16_t
page_checksum(const uint8_t *page, uint32_t blkno, uint32_t block_size)
{
	uint32_t	sums[CKSUM_LANES];
	uint32_t	result = 0;
	size_t		rows = block_size / (4 * CKSUM_LANES);

	assert(block_size_valid(block_size));
	memcpy(sums, cksum_base_offsets, sizeof(sums));
	cksum_row(sums, page, true);
	for (size_t r = 1; r < rows; r++)
		cksum_row(sums, page + r * 4 * CKSUM_LANES, false);
	for (int round = 0; round < 2; round++)
		for (size_t j = 0; j < CKSUM_LANES; j++)
			sums[j] = cksum_mix(sums[j], 0);
	for (size_t j = 0; j < CKSUM_LANES; j++)
		result ^= sums[j];

	/* Mix in the block number so a page written at the wrong place fails. */
	result ^= blkno;
	/* 1..65535: zero is never a valid checksum. */
	return (uint16_t) (result % 65535 + 1);
}

/* The header checks PostgreSQL applies before it trusts a page. */
static bool
page_header_sane(const uint8_t *page, uint32_t block_size)
{
	uint16_t	flags = get_u16(page + PD_FLAGS_OFF);
	uint16_t	lower = get_u16(page + PD_LOWER_OFF);
	uint16_t	upper = get_u16(page + PD_UPPER_OFF);
	uint16_t	special = get_u16(page + PD_SPECIAL_OFF);

	return (flags & ~PD_VALID_FLAG_BITS) == 0 &&
		lower <= upper && upper <= special && (uint32_t) special <= block_size &&
		special % MAXIMUM_ALIGNOF == 0;
}

page_verdict
page_verify(const uint8_t *page, uint32_t blkno, uint32_t block_size, uint64_t backup_start_lsn)
{
	uint64_t	lsn;

	assert(block_size_valid(block_size));
	/*
	 * pd_upper is zero only on a page that was extended but never
	 * initialized, which covers the all-zero page; an initialized page
	 * always has its free space end past the header.
	 */
	if (get_u16(page + PD_UPPER_OFF) == 0)
		return PAGE_NEW;

	/*
	 * A page changed after the backup started may be torn in our copy; WAL
	 * replay restores it from a full-page image, so it cannot be judged.
	 */
	lsn = ((uint64_t) get_u32(page) << 32) | get_u32(page + 4);
	if (lsn >= backup_start_lsn)
		return PAGE_SKIP;

	if (!page_header_sane(page, block_size))
		return PAGE_BAD;
	if (get_u16(page + PD_CHECKSUM_OFF) != page_checksum(page, blkno, block_size))
		return PAGE_BAD;
	return PAGE_OK;
}

/* ------------------------------------------------------------------------
 * Relation paths
 * ------------------------------------------------------------------------ */

/*
 * Parse a positive decimal uint32 without sign or leading zero (how
 * PostgreSQL prints OIDs and segment numbers) ending at one of the stop
 * characters (or at the end of the string).  Returns the end, or NULL.
 */
static const char *
oid_parse(const char *s, const char *stops, uint32_t *out)
{
	uint64_t	v = 0;
	const char *p = s;

	if (*p < '1' || *p > '9')
		return NULL;
	while (*p >= '0' && *p <= '9')
	{
		v = v * 10 + (uint64_t) (*p - '0');
		if (v > UINT32_MAX)
			return NULL;
		p++;
	}
	if (*p != '\0' && strchr(stops, *p) == NULL)
		return NULL;
	*out = (uint32_t) v;
	return p;
}

/* Skip a fork suffix (_fsm, _vm, _init) at p; NULL when p has another one. */
static const char *
fork_suffix_skip(const char *p)
{
	static const char *const forks[] = {"_fsm", "_vm", "_init"};

	for (size_t i = 0; i < sizeof(forks) / sizeof(forks[0]); i++)
	{
		size_t		n = strlen(forks[i]);

		if (strncmp(p, forks[i], n) == 0 && (p[n] == '\0' || p[n] == '.'))
			return p + n;
	}
	return NULL;
}

/* RELFILENODE[_fsm|_vm|_init][.N], the whole remaining string. */
static bool
relation_file_parse(const char *s, uint32_t *segno)
{
	uint32_t	relfilenode;
	const char *p = oid_parse(s, "_.", &relfilenode);

	if (p != NULL && *p == '_')
		p = fork_suffix_skip(p);
	if (p == NULL)
		return false;
	*segno = 0;
	if (*p == '.')
		return oid_parse(p + 1, "", segno) != NULL;
	return *p == '\0';
}

/* Skip "OID/" at s (NULL passes through); returns what follows the slash, or NULL. */
static const char *
oid_dir_skip(const char *s)
{
	uint32_t	oid;
	const char *p = s != NULL ? oid_parse(s, "/", &oid) : NULL;

	return p != NULL && *p == '/' ? p + 1 : NULL;
}

/* Skip "PG_15_202209061/", the per-version directory inside a tablespace. */
static const char *
tablespace_version_dir_skip(const char *s)
{
	uint32_t	number;

	if (s == NULL || strncmp(s, "PG_", 3) != 0)
		return NULL;
	s = oid_parse(s + 3, "_", &number);
	if (s == NULL || *s != '_')
		return NULL;
	return oid_dir_skip(s + 1);
}

bool
pg_path_is_relation(const char *relpath, uint32_t *segno)
{
	const char *file = NULL;
	uint32_t	seg;

	*segno = 0;
	if (str_starts_with(relpath, "global/"))
		file = relpath + strlen("global/");
	else if (str_starts_with(relpath, "base/"))
		file = oid_dir_skip(relpath + strlen("base/"));
	else if (str_starts_with(relpath, "pg_tblspc/"))
		file = oid_dir_skip(tablespace_version_dir_skip(oid_dir_skip(relpath + strlen("pg_tblspc/"))));

	if (file == NULL || !relation_file_parse(file, &seg))
		return false;
	*segno = seg;
	return true;
}
