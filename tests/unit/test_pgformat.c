/*
 * test_pgformat.c: unit tests for pgformat.c (pg_control, WAL names and
 * headers, page checksums, relation paths) and pgclient.c (libpq wrapper).
 *
 * Synthetic inputs cover every version layout and error path.  When the
 * PostgreSQL 15 binaries are installed (PG_BINDIR, default
 * /usr/lib/postgresql/15/bin), the test also initdbs a checksummed cluster
 * with 512 MB WAL segments and checks the parsers against it and against
 * pg_controldata, then starts it on a private unix socket to exercise the
 * client.  Without the binaries those parts print a note and are skipped.
 */
#include "error.h"
#include "mem.h"
#include "pgclient.h"
#include "pgformat.h"
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#define TEST_PORT 54399
#define SEG_512MB (512u * 1024 * 1024)
#define SEG_16MB (16u * 1024 * 1024)

/* The scratch cluster; NULL when the PostgreSQL binaries are missing. */
static char *pg_bindir;
static char *scratch_dir;
static char *data_dir;

/* ------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------ */

/* An independent CRC-32C (table-driven, unlike pgformat.c's) to build inputs. */
static uint32_t
test_crc32c(const uint8_t *data, size_t len)
{
	static uint32_t table[256];
	uint32_t	crc = 0xFFFFFFFFu;

	if (table[1] == 0)
		for (uint32_t i = 0; i < 256; i++)
		{
			uint32_t	c = i;

			for (int k = 0; k < 8; k++)
				c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1)));
			table[i] = c;
		}
	for (size_t i = 0; i < len; i++)
		crc = table[(crc ^ data[i]) & 0xFF] ^ (crc >> 8);
	return ~crc;
}

static void
put_u16(uint8_t *p, uint16_t v)
{
	memcpy(p, &v, sizeof(v));
}

static void
put_u32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, sizeof(v));
}

static void
put_u64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, sizeof(v));
}

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

/* Read a whole small file; NULL when it cannot be read. */
static uint8_t *
slurp(const char *path, size_t *len)
{
	FILE	   *f = fopen(path, "rb");
	strbuf		sb = STRBUF_INIT;
	char		chunk[65536];
	size_t		n;

	*len = 0;
	if (f == NULL)
		return NULL;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		sb_appendn(&sb, chunk, n);
	fclose(f);
	*len = sb.len;
	if (sb.buf == NULL)
		return xcalloc(1, 1);
	return (uint8_t *) sb_detach(&sb);
}

/* Read the first len bytes of a file into buf; false on error or short file. */
static bool
read_head(const char *path, uint8_t *buf, size_t len)
{
	FILE	   *f = fopen(path, "rb");
	size_t		n;

	if (f == NULL)
		return false;
	n = fread(buf, 1, len, f);
	fclose(f);
	return n == len;
}

/*
 * Run a shell command as the cluster owner: initdb and postgres refuse to
 * run as root, so as root go through runuser.  Output goes to a log file in
 * the scratch directory.  Returns the exit status.
 */
static int
run_as_postgres(const char *fmt, ...)
{
	va_list		ap;
	char	   *cmd;
	char	   *full;
	int			rc;

	va_start(ap, fmt);
	cmd = xvasprintf(fmt, ap);
	va_end(ap);
	full = xasprintf("%s%s >>%s/commands.log 2>&1", geteuid() == 0 ? "runuser -u postgres -- " : "",
					 cmd, scratch_dir);
	rc = system(full);
	free(full);
	free(cmd);
	return rc;
}

/*
 * Make the scratch cluster.  Returns false (and prints why) when the
 * PostgreSQL binaries are missing; a failure with them present is a test
 * failure.
 */
static bool
cluster_create(void)
{
	const char *env_bindir = getenv("PG_BINDIR");
	const char *env_tmp = getenv("PGKEEP_TEST_TMP");
	char	   *initdb;
	char	   *tmpl;
	bool		ok;

	pg_bindir = xstrdup(env_bindir != NULL ? env_bindir : "/usr/lib/postgresql/15/bin");
	initdb = xasprintf("%s/initdb", pg_bindir);
	ok = access(initdb, X_OK) == 0;
	free(initdb);
	if (!ok)
	{
		printf("note: no PostgreSQL binaries in %s: skipping the live-cluster tests\n", pg_bindir);
		return false;
	}

	if (env_tmp == NULL)
		env_tmp = "/tmp/pgf";
	if (mkdir(env_tmp, 0755) != 0 && errno != EEXIST)
	{
		fprintf(stderr, "could not create \"%s\": %s\n", env_tmp, strerror(errno));
		CHECK(false);
		return false;
	}
	tmpl = xasprintf("%s/pgformat-XXXXXX", env_tmp);
	if (mkdtemp(tmpl) == NULL)
	{
		fprintf(stderr, "could not create a directory in \"%s\": %s\n", env_tmp, strerror(errno));
		CHECK(false);
		free(tmpl);
		return false;
	}
	scratch_dir = tmpl;
	if (geteuid() == 0)
	{
		struct passwd *pw = getpwnam("postgres");

		CHECK(pw != NULL);
		CHECK(pw != NULL && chown(scratch_dir, pw->pw_uid, pw->pw_gid) == 0);
	}
	data_dir = xasprintf("%s/data", scratch_dir);
	CHECK_EQ_INT(run_as_postgres("%s/initdb -D %s -U postgres -A trust --wal-segsize=512 --data-checksums -N",
								 pg_bindir, data_dir), 0);
	return true;
}

static void
cluster_remove(void)
{
	if (scratch_dir != NULL)
	{
		char	   *cmd = xasprintf("rm -rf %s", scratch_dir);

		CHECK_EQ_INT(system(cmd), 0);
		free(cmd);
	}
	free(data_dir);
	free(scratch_dir);
	free(pg_bindir);
}

/* The value of "Label:" in pg_controldata's output (English), or NULL. */
static char *
controldata_value(const char *output, const char *label)
{
	const char *p = output;
	size_t		n = strlen(label);

	while (p != NULL && *p != '\0')
	{
		if (strncmp(p, label, n) == 0 && p[n] == ':')
		{
			const char *v = p + n + 1;

			while (*v == ' ')
				v++;
			return xstrndup(v, strcspn(v, "\n"));
		}
		p = strchr(p, '\n');
		if (p != NULL)
			p++;
	}
	return NULL;
}

static char *
controldata_output(void)
{
	char	   *cmd = xasprintf("LC_ALL=C %s/pg_controldata %s", pg_bindir, data_dir);
	FILE	   *f = popen(cmd, "r");
	strbuf		sb = STRBUF_INIT;
	char		chunk[4096];
	size_t		n;

	free(cmd);
	if (f == NULL)
		return xstrdup("");
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		sb_appendn(&sb, chunk, n);
	CHECK_EQ_INT(pclose(f), 0);
	return sb_detach(&sb);
}

/* ------------------------------------------------------------------------
 * pg_control, synthetic
 * ------------------------------------------------------------------------ */

/* Where the fields pgformat reads sit in each version (LP64). */
typedef struct
{
	uint32_t	control_version;
	uint32_t	catalog_version;
	size_t		tli, blcksz, xlog_blcksz, seg_size, checksum_version, crc;
} control_fields;

static const control_fields layout_10 = {1002, 201707211, 56, 216, 224, 228, 252, 288};
static const control_fields layout_11 = {1100, 201809051, 48, 208, 216, 220, 244, 280};
static const control_fields layout_12 = {1201, 201909212, 48, 216, 224, 228, 252, 288};
static const control_fields layout_15 = {1300, 202209061, 48, 216, 224, 228, 252, 288};

static void
control_seal(uint8_t *buf, const control_fields *l)
{
	put_u32(buf + l->crc, test_crc32c(buf, l->crc));
}

/* A consistent 8192-byte pg_control of the given layout. */
static void
control_make(uint8_t *buf, const control_fields *l)
{
	memset(buf, 0, 8192);
	put_u64(buf + 0, UINT64_C(7000000000000000001));
	put_u32(buf + 8, l->control_version);
	put_u32(buf + 12, l->catalog_version);
	put_u64(buf + 32, UINT64_C(0x16B374D848));
	put_u32(buf + l->tli, 3);
	put_u32(buf + l->blcksz, 8192);
	put_u32(buf + l->xlog_blcksz, 8192);
	put_u32(buf + l->seg_size, SEG_16MB);
	put_u32(buf + l->checksum_version, 1);
	control_seal(buf, l);
}

static void
test_crc_reference(void)
{
	/* The standard CRC-32C check value, so the test's own CRC is trustworthy. */
	CHECK_EQ_INT(test_crc32c((const uint8_t *) "123456789", 9), 0xE3069283u);
}

static void
test_control_layouts(void)
{
	const control_fields *layouts[] = {&layout_10, &layout_11, &layout_12, &layout_15};
	const uint32_t versions[] = {100000, 110000, 120000, 150000};
	uint8_t		buf[8192];
	pg_control_info info;

	for (size_t i = 0; i < 4; i++)
	{
		control_make(buf, layouts[i]);
		CHECK_EQ_INT(pg_control_parse(buf, sizeof(buf), &info), 0);
		CHECK_EQ_INT(info.system_id == UINT64_C(7000000000000000001), 1);
		CHECK_EQ_INT(info.control_version, layouts[i]->control_version);
		CHECK_EQ_INT(info.catalog_version, layouts[i]->catalog_version);
		CHECK_EQ_INT(info.pg_version, versions[i]);
		CHECK_EQ_INT(info.checkpoint_lsn, UINT64_C(0x16B374D848));
		CHECK_EQ_INT(info.timeline, 3);
		CHECK_EQ_INT(info.block_size, 8192);
		CHECK_EQ_INT(info.wal_block_size, 8192);
		CHECK_EQ_INT(info.wal_segment_size, SEG_16MB);
		CHECK_EQ_INT(info.data_checksum_version, 1);
		/* Only the bytes up to the CRC are needed. */
		CHECK_EQ_INT(pg_control_parse(buf, layouts[i]->crc + 4, &info), 0);
	}
}

static void
test_control_catalog_versions(void)
{
	/* 1300 is shared by 13 to 16: the catalog version tells them apart. */
	static const struct
	{
		uint32_t	catalog;
		uint32_t	pg_version;
	} cases[] = {
		{202007201, 130000}, {202107181, 140000}, {202209061, 150000},
		{202307071, 160000}, {202108000, 150000}, {202007202, 140000},
	};
	control_fields l = layout_15;
	uint8_t		buf[8192];
	pg_control_info info;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		l.catalog_version = cases[i].catalog;
		control_make(buf, &l);
		CHECK_EQ_INT(pg_control_parse(buf, sizeof(buf), &info), 0);
		CHECK_EQ_INT(info.pg_version, cases[i].pg_version);
	}

	/* 12's catalog with 13's control version, and a catalog newer than 16. */
	l.catalog_version = 201909212;
	control_make(buf, &l);
	CHECK_EQ_INT(pg_control_parse(buf, sizeof(buf), &info), ERR_FORMAT);
	CHECK_CONTAINS(error_msg(), "catalog version 201909212");
	l.catalog_version = 202407011;
	control_make(buf, &l);
	CHECK_EQ_INT(pg_control_parse(buf, sizeof(buf), &info), ERR_FORMAT);
	/* 9.6 */
	l = layout_10;
	l.catalog_version = 201608131;
	control_make(buf, &l);
	CHECK_EQ_INT(pg_control_parse(buf, sizeof(buf), &info), ERR_FORMAT);
}

static void
test_control_errors(void)
{
	uint8_t		buf[8192];
	pg_control_info info;

	/* Too short to hold even the version. */
	control_make(buf, &layout_15);
	CHECK_EQ_INT(pg_control_parse(buf, 10, &info), ERR_FORMAT);
	CHECK_CONTAINS(error_msg(), "too short");
	/* Cut before the CRC. */
	CHECK_EQ_INT(pg_control_parse(buf, 290, &info), ERR_FORMAT);
	CHECK_CONTAINS(error_msg(), "too short");

	/* One flipped bit anywhere under the CRC. */
	buf[100] ^= 0x10;
	CHECK_EQ_INT(pg_control_parse(buf, sizeof(buf), &info), ERR_FORMAT);
	CHECK_CONTAINS(error_msg(), "incorrect CRC");
	CHECK_EQ_INT(info.system_id, 0);

	/* Unknown version: 17's, and 1300 byte-swapped. */
	control_make(buf, &layout_15);
	put_u32(buf + 8, 1700);
	control_seal(buf, &layout_15);
	CHECK_EQ_INT(pg_control_parse(buf, sizeof(buf), &info), ERR_FORMAT);
	CHECK_CONTAINS(error_msg(), "unsupported version 1700");
	put_u32(buf + 8, __builtin_bswap32(1300));
	CHECK_EQ_INT(pg_control_parse(buf, sizeof(buf), &info), ERR_FORMAT);
	CHECK_CONTAINS(error_msg(), "byte order");

	/* Sizes with a correct CRC. */
	control_make(buf, &layout_15);
	put_u32(buf + layout_15.blcksz, 3000);
	control_seal(buf, &layout_15);
	CHECK_EQ_INT(pg_control_parse(buf, sizeof(buf), &info), ERR_FORMAT);
	CHECK_CONTAINS(error_msg(), "invalid block size 3000");

	control_make(buf, &layout_15);
	put_u32(buf + layout_15.blcksz, 65536);
	control_seal(buf, &layout_15);
	CHECK_EQ_INT(pg_control_parse(buf, sizeof(buf), &info), ERR_FORMAT);

	control_make(buf, &layout_15);
	put_u32(buf + layout_15.xlog_blcksz, 512);
	control_seal(buf, &layout_15);
	CHECK_EQ_INT(pg_control_parse(buf, sizeof(buf), &info), ERR_FORMAT);
	CHECK_CONTAINS(error_msg(), "invalid WAL block size 512");

	control_make(buf, &layout_15);
	put_u32(buf + layout_15.seg_size, 512 * 1024);
	control_seal(buf, &layout_15);
	CHECK_EQ_INT(pg_control_parse(buf, sizeof(buf), &info), ERR_FORMAT);
	CHECK_CONTAINS(error_msg(), "invalid WAL segment size 524288");

	control_make(buf, &layout_15);
	put_u32(buf + layout_15.seg_size, 3u * 1024 * 1024);
	control_seal(buf, &layout_15);
	CHECK_EQ_INT(pg_control_parse(buf, sizeof(buf), &info), ERR_FORMAT);

	control_make(buf, &layout_15);
	put_u32(buf + layout_15.seg_size, 1024u * 1024 * 1024);
	control_seal(buf, &layout_15);
	CHECK_EQ_INT(pg_control_parse(buf, sizeof(buf), &info), 0);
	CHECK_EQ_INT(info.wal_segment_size, 1024u * 1024 * 1024);
}

static void
test_control_read_missing(void)
{
	pg_control_info info;

	CHECK_EQ_INT(pg_control_read("/nonexistent/pgkeep-test", &info), ERR_FILE);
	CHECK_CONTAINS(error_msg(), "could not open file \"/nonexistent/pgkeep-test/global/pg_control\"");
	CHECK_CONTAINS(error_msg(), "No such file or directory");
}

static void
test_version_str(void)
{
	char		s[16];

	pg_version_str(150000, s);
	CHECK_EQ_STR(s, "15");
	pg_version_str(160002, s);
	CHECK_EQ_STR(s, "16");
	pg_version_str(100000, s);
	CHECK_EQ_STR(s, "10");
	pg_version_str(90600, s);
	CHECK_EQ_STR(s, "9.6");
	pg_version_str(90624, s);
	CHECK_EQ_STR(s, "9.6");
}

/* ------------------------------------------------------------------------
 * WAL names and LSNs
 * ------------------------------------------------------------------------ */

static void
test_wal_classify(void)
{
	CHECK_EQ_INT(wal_file_classify("000000010000000000000001"), WAL_FILE_SEGMENT);
	CHECK_EQ_INT(wal_file_classify("0000000A00000016000000B3"), WAL_FILE_SEGMENT);
	CHECK_EQ_INT(wal_file_classify("000000010000000000000001.partial"), WAL_FILE_PARTIAL);
	CHECK_EQ_INT(wal_file_classify("00000002.history"), WAL_FILE_HISTORY);
	CHECK_EQ_INT(wal_file_classify("000000010000000000000001.00000028.backup"), WAL_FILE_BACKUP);

	CHECK_EQ_INT(wal_file_classify(""), WAL_FILE_INVALID);
	CHECK_EQ_INT(wal_file_classify("0000000a00000016000000b3"), WAL_FILE_INVALID);
	CHECK_EQ_INT(wal_file_classify("00000001000000000000001"), WAL_FILE_INVALID);
	CHECK_EQ_INT(wal_file_classify("0000000100000000000000011"), WAL_FILE_INVALID);
	CHECK_EQ_INT(wal_file_classify("../00000001000000000000001"), WAL_FILE_INVALID);
	CHECK_EQ_INT(wal_file_classify("0000000100000000/0000001"), WAL_FILE_INVALID);
	CHECK_EQ_INT(wal_file_classify("00000001000000000000000G"), WAL_FILE_INVALID);
	CHECK_EQ_INT(wal_file_classify("000000010000000000000001.partia"), WAL_FILE_INVALID);
	CHECK_EQ_INT(wal_file_classify("000000010000000000000001.partialx"), WAL_FILE_INVALID);
	CHECK_EQ_INT(wal_file_classify("0000002.history"), WAL_FILE_INVALID);
	CHECK_EQ_INT(wal_file_classify("0000000a.history"), WAL_FILE_INVALID);
	CHECK_EQ_INT(wal_file_classify("000000010000000000000001.0000028.backup"), WAL_FILE_INVALID);
	CHECK_EQ_INT(wal_file_classify("000000010000000000000001_00000028.backup"), WAL_FILE_INVALID);
	CHECK_EQ_INT(wal_file_classify("000000010000000000000001.ready"), WAL_FILE_INVALID);
	CHECK_EQ_INT(wal_file_classify("archive_status"), WAL_FILE_INVALID);
}

static void
test_wal_segname(void)
{
	char		name[WAL_SEG_NAME_LEN + 1];
	uint32_t	tli;
	uint64_t	segno;

	/* 16 MB: 256 segments per 4 GiB "log". */
	wal_segname(name, 1, 1, SEG_16MB);
	CHECK_EQ_STR(name, "000000010000000000000001");
	wal_segname(name, 0x2A, 0x16B3, SEG_16MB);
	CHECK_EQ_STR(name, "0000002A00000016000000B3");
	CHECK(wal_segname_parse("0000002A00000016000000B3", &tli, &segno, SEG_16MB));
	CHECK_EQ_INT(tli, 0x2A);
	CHECK_EQ_INT(segno, 0x16B3);

	/* 512 MB: 8 per log; 1 GiB: 4 per log. */
	wal_segname(name, 1, 17, SEG_512MB);
	CHECK_EQ_STR(name, "000000010000000200000001");
	CHECK(wal_segname_parse(name, &tli, &segno, SEG_512MB));
	CHECK_EQ_INT(segno, 17);
	wal_segname(name, 0xFFFFFFFFu, UINT64_C(0xFFFFFFFF) * 4 + 3, 1024u * 1024 * 1024);
	CHECK_EQ_STR(name, "FFFFFFFFFFFFFFFF00000003");

	/* A seg part that cannot exist for the size, TLI 0, and malformed names. */
	CHECK(!wal_segname_parse("000000010000000000000008", &tli, &segno, SEG_512MB));
	CHECK(wal_segname_parse("000000010000000000000008", &tli, &segno, SEG_16MB));
	CHECK(!wal_segname_parse("000000000000000000000001", &tli, &segno, SEG_16MB));
	CHECK(!wal_segname_parse("0000000100000000000000ab", &tli, &segno, SEG_16MB));
	CHECK(!wal_segname_parse("000000010000000000000001.partial", &tli, &segno, SEG_16MB));
	CHECK(!wal_segname_parse("00000001000000000000001", &tli, &segno, SEG_16MB));
	CHECK(!wal_segname_parse("000000010000000000000001", &tli, &segno, 3000000));

	CHECK_EQ_INT(wal_lsn_to_segno(UINT64_C(0x16B374D848), SEG_16MB), 0x16B3);
	CHECK_EQ_INT(wal_lsn_to_segno(UINT64_C(0x20000000), SEG_512MB), 1);
	CHECK_EQ_INT(wal_lsn_to_segno(UINT64_C(0x1FFFFFFF), SEG_512MB), 0);
}

static void
test_wal_lsn(void)
{
	uint64_t	lsn = 0;
	char		s[32];

	CHECK(wal_lsn_parse("16/B374D848", &lsn));
	CHECK_EQ_INT(lsn, UINT64_C(0x16B374D848));
	CHECK(wal_lsn_parse("0/0", &lsn));
	CHECK_EQ_INT(lsn, 0);
	CHECK(wal_lsn_parse("ffffffff/ffffffff", &lsn));
	CHECK(lsn == UINT64_MAX);

	wal_lsn_format(UINT64_C(0x16B374D848), s);
	CHECK_EQ_STR(s, "16/B374D848");
	wal_lsn_format(0, s);
	CHECK_EQ_STR(s, "0/0");
	wal_lsn_format(UINT64_MAX, s);
	CHECK_EQ_STR(s, "FFFFFFFF/FFFFFFFF");
	CHECK(wal_lsn_parse(s, &lsn) && lsn == UINT64_MAX);

	CHECK(!wal_lsn_parse("", &lsn));
	CHECK(!wal_lsn_parse("16", &lsn));
	CHECK(!wal_lsn_parse("/B374D848", &lsn));
	CHECK(!wal_lsn_parse("16/", &lsn));
	CHECK(!wal_lsn_parse("16/B374D848 ", &lsn));
	CHECK(!wal_lsn_parse(" 16/B374D848", &lsn));
	CHECK(!wal_lsn_parse("16/-1", &lsn));
	CHECK(!wal_lsn_parse("100000000/0", &lsn));
	CHECK(!wal_lsn_parse("16/B374D848/1", &lsn));
	CHECK(!wal_lsn_parse("0x16/B3", &lsn));
}

/* A long page header as PostgreSQL 15 writes it for the segment starting at addr. */
static void
wal_header_make(uint8_t *buf, uint64_t addr, uint64_t sysid, uint32_t seg_size)
{
	memset(buf, 0, 8192);
	put_u16(buf + 0, 0xD110);
	put_u16(buf + 2, 0x0002);
	put_u32(buf + 4, 1);
	put_u64(buf + 8, addr);
	put_u64(buf + 24, sysid);
	put_u32(buf + 32, seg_size);
	put_u32(buf + 36, 8192);
}

static void
test_wal_header_synthetic(void)
{
	static const uint16_t magics[] = {0xD097, 0xD098, 0xD101, 0xD106, 0xD10D, 0xD110, 0xD113};
	const char *name = "000000010000000000000003";
	uint8_t		buf[8192];
	wal_long_header h;

	wal_header_make(buf, 3 * (uint64_t) SEG_16MB, 42, SEG_16MB);
	CHECK_EQ_INT(wal_long_header_parse(buf, sizeof(buf), &h), 0);
	CHECK_EQ_INT(h.magic, 0xD110);
	CHECK_EQ_INT(h.info, 2);
	CHECK_EQ_INT(h.timeline, 1);
	CHECK_EQ_INT(h.page_addr, 3 * (uint64_t) SEG_16MB);
	CHECK_EQ_INT(h.system_id, 42);
	CHECK_EQ_INT(h.seg_size, SEG_16MB);
	CHECK_EQ_INT(h.block_size, 8192);
	CHECK_EQ_INT(wal_check_segment_header(buf, sizeof(buf), name, 42, SEG_16MB), 0);
	CHECK_EQ_INT(wal_check_segment_header(buf, 40, "000000010000000000000003.partial", 42, SEG_16MB), 0);

	for (size_t i = 0; i < sizeof(magics) / sizeof(magics[0]); i++)
	{
		put_u16(buf, magics[i]);
		CHECK_EQ_INT(wal_long_header_parse(buf, 40, &h), 0);
	}
	put_u16(buf, 0xD111);
	CHECK_EQ_INT(wal_long_header_parse(buf, 40, &h), ERR_FORMAT);
	CHECK_CONTAINS(error_msg(), "magic number D111");
	put_u16(buf, 0xD110);

	CHECK_EQ_INT(wal_long_header_parse(buf, 39, &h), ERR_FORMAT);
	CHECK_CONTAINS(error_msg(), "too short");

	/* XLP_FIRST_IS_CONTRECORD (1) alone: a short header. */
	put_u16(buf + 2, 0x0001);
	CHECK_EQ_INT(wal_long_header_parse(buf, 40, &h), ERR_FORMAT);
	CHECK_CONTAINS(error_msg(), "not a long header");
	put_u16(buf + 2, 0x0012);
	CHECK_EQ_INT(wal_long_header_parse(buf, 40, &h), ERR_FORMAT);
	put_u16(buf + 2, 0x0006);
	CHECK_EQ_INT(wal_long_header_parse(buf, 40, &h), 0);

	wal_header_make(buf, 3 * (uint64_t) SEG_16MB, 42, SEG_16MB);
	put_u32(buf + 4, 0);
	CHECK_EQ_INT(wal_long_header_parse(buf, 40, &h), ERR_FORMAT);

	wal_header_make(buf, 3 * (uint64_t) SEG_16MB + 8192, 42, SEG_16MB);
	CHECK_EQ_INT(wal_long_header_parse(buf, 40, &h), ERR_FORMAT);
	CHECK_CONTAINS(error_msg(), "not the start of a segment");

	wal_header_make(buf, 0, 42, 12345);
	CHECK_EQ_INT(wal_long_header_parse(buf, 40, &h), ERR_FORMAT);
	CHECK_CONTAINS(error_msg(), "segment size 12345");
	wal_header_make(buf, 0, 42, SEG_16MB);
	put_u32(buf + 36, 100);
	CHECK_EQ_INT(wal_long_header_parse(buf, 40, &h), ERR_FORMAT);

	/* Not a segment name at all. */
	wal_header_make(buf, 3 * (uint64_t) SEG_16MB, 42, SEG_16MB);
	CHECK_EQ_INT(wal_check_segment_header(buf, 40, "00000002.history", 42, SEG_16MB), ERR_FORMAT);
	CHECK_EQ_INT(wal_check_segment_header(buf, 40, "0000000100000000000000FF", 42, SEG_512MB), ERR_STANZA);
}

/* ------------------------------------------------------------------------
 * Pages and paths
 * ------------------------------------------------------------------------ */

/* A plausible heap page: header, one line pointer, a tuple at the end. */
static void
page_make(uint8_t *page, uint64_t lsn, uint32_t blkno)
{
	memset(page, 0, 8192);
	put_u32(page + 0, (uint32_t) (lsn >> 32));
	put_u32(page + 4, (uint32_t) lsn);
	put_u16(page + 12, 28);       /* pd_lower */
	put_u16(page + 14, 8192 - 64);    /* pd_upper */
	put_u16(page + 16, 8192);     /* pd_special */
	put_u16(page + 18, 8192 | 4);     /* pd_pagesize_version */
	for (int i = 0; i < 64; i++)
		page[8192 - 64 + i] = (uint8_t) (i * 7 + 1);
	put_u16(page + 8, page_checksum(page, blkno, 8192));
}

static void
test_page_verify_synthetic(void)
{
	uint8_t    *page = xmalloc(8192);
	uint16_t	sum;

	page_make(page, UINT64_C(0x100000028), 5);
	sum = get_u16(page + 8);
	CHECK(sum != 0);
	CHECK_EQ_INT(page_verify(page, 5, 8192, UINT64_C(0x200000000)), PAGE_OK);
	/* The checksum does not depend on its own field. */
	put_u16(page + 8, (uint16_t) (sum ^ 0xFFFF));
	CHECK_EQ_INT(page_checksum(page, 5, 8192), sum);
	CHECK_EQ_INT(page_verify(page, 5, 8192, UINT64_C(0x200000000)), PAGE_BAD);
	put_u16(page + 8, sum);
	/* ... but on pd_flags, which shares its word, and on the block number. */
	page[10] ^= 1;
	CHECK(page_checksum(page, 5, 8192) != sum);
	page[10] ^= 1;
	CHECK_EQ_INT(page_verify(page, 6, 8192, UINT64_C(0x200000000)), PAGE_BAD);

	/* LSN at or past the backup start: skipped, even if corrupt. */
	CHECK_EQ_INT(page_verify(page, 5, 8192, UINT64_C(0x100000028)), PAGE_SKIP);
	CHECK_EQ_INT(page_verify(page, 5, 8192, UINT64_C(0x100000029)), PAGE_OK);
	page[4000] ^= 0x40;
	CHECK_EQ_INT(page_verify(page, 5, 8192, UINT64_C(0x100000029)), PAGE_BAD);
	CHECK_EQ_INT(page_verify(page, 5, 8192, 0), PAGE_SKIP);

	/* Header insanity with a checksum that matches it. */
	page_make(page, 0x28, 0);
	put_u16(page + 12, 9000);
	put_u16(page + 8, page_checksum(page, 0, 8192));
	CHECK_EQ_INT(page_verify(page, 0, 8192, UINT64_MAX), PAGE_BAD);
	page_make(page, 0x28, 0);
	put_u16(page + 16, 8188);
	put_u16(page + 8, page_checksum(page, 0, 8192));
	CHECK_EQ_INT(page_verify(page, 0, 8192, UINT64_MAX), PAGE_BAD);
	page_make(page, 0x28, 0);
	put_u16(page + 16, 8200);
	put_u16(page + 8, page_checksum(page, 0, 8192));
	CHECK_EQ_INT(page_verify(page, 0, 8192, UINT64_MAX), PAGE_BAD);
	page_make(page, 0x28, 0);
	put_u16(page + 10, 0x0100);
	put_u16(page + 8, page_checksum(page, 0, 8192));
	CHECK_EQ_INT(page_verify(page, 0, 8192, UINT64_MAX), PAGE_BAD);

	/* New pages. */
	memset(page, 0, 8192);
	CHECK_EQ_INT(page_verify(page, 0, 8192, UINT64_MAX), PAGE_NEW);
	page[100] = 1;
	CHECK_EQ_INT(page_verify(page, 0, 8192, UINT64_MAX), PAGE_NEW);

	/* Checksums are in 1..65535 and spread over block numbers. */
	page_make(page, 0x28, 0);
	for (uint32_t b = 0; b < 1000; b++)
	{
		uint16_t	c = page_checksum(page, b, 8192);

		CHECK(c != 0);
		if (b > 0)
			CHECK(c != page_checksum(page, b - 1, 8192));
	}
	free(page);

	/* Other block sizes work on the whole block. */
	page = xcalloc(1, 32768);
	put_u16(page + 14, 100);
	sum = page_checksum(page, 0, 32768);
	page[32767] = 1;
	CHECK(page_checksum(page, 0, 32768) != sum);
	free(page);
}

static void
test_relation_paths(void)
{
	static const struct
	{
		const char *path;
		bool		rel;
		uint32_t	segno;
	} cases[] = {
		{"base/1/1259", true, 0},
		{"base/16384/16385.1", true, 1},
		{"base/16384/16385_fsm", true, 0},
		{"base/16384/16385_vm.12", true, 12},
		{"base/16384/16385_init", true, 0},
		{"global/1262", true, 0},
		{"global/1262.3", true, 3},
		{"pg_tblspc/16390/PG_15_202209061/16384/16391", true, 0},
		{"pg_tblspc/16390/PG_15_202209061/16384/16391_vm.2", true, 2},
		{"base/4294967295/4294967295.4294967295", true, 4294967295u},

		{"base/1/pg_internal.init", false, 0},
		{"base/1/PG_VERSION", false, 0},
		{"base/1/pg_filenode.map", false, 0},
		{"global/pg_control", false, 0},
		{"global/pg_filenode.map", false, 0},
		{"base/16384/t3_16400", false, 0},
		{"base/16384/t3_16400_fsm", false, 0},
		{"base/pgsql_tmp/pgsql_tmp123.0", false, 0},
		{"base/16384/16385_xyz", false, 0},
		{"base/16384/16385_fsmx", false, 0},
		{"base/16384/16385.", false, 0},
		{"base/16384/16385.0", false, 0},
		{"base/16384/16385.01", false, 0},
		{"base/16384/016385", false, 0},
		{"base/16384/0", false, 0},
		{"base/16384/4294967296", false, 0},
		{"base/16384/16385/x", false, 0},
		{"base/16384", false, 0},
		{"base//16385", false, 0},
		{"base/16384/", false, 0},
		{"base/1/1259 ", false, 0},
		{"./base/1/1259", false, 0},
		{"/base/1/1259", false, 0},
		{"pg_wal/000000010000000000000001", false, 0},
		{"pg_tblspc/16390/16384/16391", false, 0},
		{"pg_tblspc/16390/PG_15_202209061/16391", false, 0},
		{"pg_tblspc/16390/PG_15/16384/16391", false, 0},
		{"pg_tblspc/16390/PG_15_202209061/pgsql_tmp/x", false, 0},
		{"global/1262_vm.1x", false, 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		uint32_t	segno = 99;
		bool		rel = pg_path_is_relation(cases[i].path, &segno);

		if (rel != cases[i].rel)
			fprintf(stderr, "path \"%s\"\n", cases[i].path);
		CHECK_EQ_INT(rel, cases[i].rel);
		CHECK_EQ_INT(segno, cases[i].segno);
	}
}

/* ------------------------------------------------------------------------
 * Against the scratch cluster
 * ------------------------------------------------------------------------ */

static void
test_cluster_control(void)
{
	pg_control_info info;
	char	   *out;
	char	   *v;
	char		lsn[32];
	char	   *path;
	size_t		len;
	uint8_t    *raw;

	if (data_dir == NULL)
		return;
	CHECK_EQ_INT(pg_control_read(data_dir, &info), 0);
	out = controldata_output();

	v = controldata_value(out, "Database system identifier");
	CHECK(v != NULL && strtoull(v, NULL, 10) == info.system_id);
	free(v);
	v = controldata_value(out, "pg_control version number");
	CHECK(v != NULL && strtoul(v, NULL, 10) == info.control_version);
	free(v);
	v = controldata_value(out, "Catalog version number");
	CHECK(v != NULL && strtoul(v, NULL, 10) == info.catalog_version);
	free(v);
	wal_lsn_format(info.checkpoint_lsn, lsn);
	v = controldata_value(out, "Latest checkpoint location");
	CHECK_EQ_STR(v, lsn);
	free(v);
	v = controldata_value(out, "Latest checkpoint's TimeLineID");
	CHECK(v != NULL && strtoul(v, NULL, 10) == info.timeline);
	free(v);
	v = controldata_value(out, "Database block size");
	CHECK(v != NULL && strtoul(v, NULL, 10) == info.block_size);
	free(v);
	v = controldata_value(out, "WAL block size");
	CHECK(v != NULL && strtoul(v, NULL, 10) == info.wal_block_size);
	free(v);
	v = controldata_value(out, "Bytes per WAL segment");
	CHECK(v != NULL && strtoul(v, NULL, 10) == info.wal_segment_size);
	free(v);
	v = controldata_value(out, "Data page checksum version");
	CHECK(v != NULL && strtoul(v, NULL, 10) == info.data_checksum_version);
	free(v);
	free(out);

	/* Known for this cluster regardless of pg_controldata. */
	CHECK_EQ_INT(info.control_version, 1300);
	CHECK_EQ_INT(info.pg_version, 150000);
	CHECK_EQ_INT(info.wal_segment_size, SEG_512MB);
	CHECK_EQ_INT(info.data_checksum_version, 1);
	CHECK_EQ_INT(info.timeline, 1);
	CHECK(info.checkpoint_lsn > 0);

	/* The real file with one bit flipped fails its CRC. */
	path = xasprintf("%s/global/pg_control", data_dir);
	raw = slurp(path, &len);
	CHECK_EQ_INT(len, 8192);
	if (raw != NULL && len == 8192)
	{
		raw[40] ^= 1;
		CHECK_EQ_INT(pg_control_parse(raw, len, &info), ERR_FORMAT);
		CHECK_CONTAINS(error_msg(), "incorrect CRC");
	}
	free(raw);
	free(path);
}

static void
test_cluster_wal(void)
{
	const char *name = "000000010000000000000001";
	pg_control_info info;
	uint8_t		buf[8192];
	uint8_t		bad[8192];
	char	   *path;
	char	   *want;

	if (data_dir == NULL)
		return;
	CHECK_EQ_INT(pg_control_read(data_dir, &info), 0);
	path = xasprintf("%s/pg_wal/%s", data_dir, name);
	CHECK(read_head(path, buf, sizeof(buf)));
	free(path);

	CHECK_EQ_INT(wal_check_segment_header(buf, sizeof(buf), name, info.system_id, SEG_512MB), 0);

	/* Another cluster's segment. */
	CHECK_EQ_INT(wal_check_segment_header(buf, sizeof(buf), name, info.system_id + 1, SEG_512MB), ERR_STANZA);
	want = xasprintf("WAL file \"%s\" belongs to system identifier %" PRIu64 ", the stanza has %" PRIu64,
					 name, info.system_id, info.system_id + 1);
	CHECK_EQ_STR(error_msg(), want);
	free(want);
	memcpy(bad, buf, sizeof(bad));
	bad[24] ^= 0x01;
	CHECK_EQ_INT(wal_check_segment_header(bad, sizeof(bad), name, info.system_id, SEG_512MB), ERR_STANZA);

	/* A stanza with another segment size. */
	CHECK_EQ_INT(wal_check_segment_header(buf, sizeof(buf), name, info.system_id, SEG_16MB), ERR_STANZA);
	CHECK_CONTAINS(error_msg(), "segment size");

	/* Renamed: the page address is segment 1's, the name says 2 (or 9 = log 1, seg 1). */
	CHECK_EQ_INT(wal_check_segment_header(buf, sizeof(buf), "000000010000000000000002", info.system_id,
										  SEG_512MB), ERR_FORMAT);
	CHECK_CONTAINS(error_msg(), "starts at 0/20000000, its name says 0/40000000");
	CHECK_EQ_INT(wal_check_segment_header(buf, sizeof(buf), "000000010000000100000001", info.system_id,
										  SEG_512MB), ERR_FORMAT);

	/* Corrupted headers. */
	memcpy(bad, buf, sizeof(bad));
	bad[0] ^= 0xFF;
	CHECK_EQ_INT(wal_check_segment_header(bad, sizeof(bad), name, info.system_id, SEG_512MB), ERR_FORMAT);
	CHECK_CONTAINS(error_msg(), "WAL file \"000000010000000000000001\": ");
	CHECK_CONTAINS(error_msg(), "magic");
	memcpy(bad, buf, sizeof(bad));
	bad[2] &= (uint8_t) ~0x02;
	CHECK_EQ_INT(wal_check_segment_header(bad, sizeof(bad), name, info.system_id, SEG_512MB), ERR_FORMAT);
	memcpy(bad, buf, sizeof(bad));
	bad[9] ^= 0x01;
	CHECK_EQ_INT(wal_check_segment_header(bad, sizeof(bad), name, info.system_id, SEG_512MB), ERR_FORMAT);
	CHECK_EQ_INT(wal_check_segment_header(buf, 20, name, info.system_id, SEG_512MB), ERR_FORMAT);
	CHECK_CONTAINS(error_msg(), "too short");
	memset(bad, 0, sizeof(bad));
	CHECK_EQ_INT(wal_check_segment_header(bad, sizeof(bad), name, info.system_id, SEG_512MB), ERR_FORMAT);
}

/* Check every page of one relation file; returns the pages that carry data. */
static int
verify_relation_file(const char *relpath, int *mismatches)
{
	char	   *path = xasprintf("%s/%s", data_dir, relpath);
	size_t		len;
	uint8_t    *raw = slurp(path, &len);
	uint32_t	segno;
	int			pages = 0;

	CHECK(raw != NULL);
	CHECK(pg_path_is_relation(relpath, &segno));
	CHECK_EQ_INT(len % 8192, 0);
	for (size_t off = 0; raw != NULL && off + 8192 <= len; off += 8192)
	{
		const uint8_t *page = raw + off;
		/* 1 GB relation segments of 8 KB blocks hold 131072 blocks. */
		uint32_t	blkno = segno * 131072u + (uint32_t) (off / 8192);

		if (get_u16(page + 14) == 0)
			continue;
		pages++;
		if (get_u16(page + 8) != page_checksum(page, blkno, 8192) ||
			page_verify(page, blkno, 8192, UINT64_MAX) != PAGE_OK)
		{
			if (*mismatches == 0)
				fprintf(stderr, "checksum mismatch in \"%s\" block %" PRIu32 "\n", relpath, blkno);
			(*mismatches)++;
		}
	}
	free(raw);
	free(path);
	return pages;
}

/* Every relation page initdb wrote in dir (relative to the data directory). */
static int
verify_relation_dir(const char *dir, int *mismatches, int *files)
{
	char	   *path = xasprintf("%s/%s", data_dir, dir);
	DIR		   *d = opendir(path);
	struct dirent *e;
	int			pages = 0;

	CHECK(d != NULL);
	while (d != NULL && (e = readdir(d)) != NULL)
	{
		char	   *rel = xasprintf("%s/%s", dir, e->d_name);
		uint32_t	segno;

		if (pg_path_is_relation(rel, &segno))
		{
			pages += verify_relation_file(rel, mismatches);
			(*files)++;
		}
		free(rel);
	}
	if (d != NULL)
		closedir(d);
	free(path);
	return pages;
}

static void
test_cluster_checksums(void)
{
	int			mismatches = 0;
	int			files = 0;
	int			pages;
	char	   *path;
	size_t		len;
	uint8_t    *raw;

	if (data_dir == NULL)
		return;
	pages = verify_relation_dir("global", &mismatches, &files);
	pages += verify_relation_dir("base/1", &mismatches, &files);
	CHECK_EQ_INT(mismatches, 0);
	CHECK(files > 100);
	CHECK(pages > 300);

	/* Damage one real page of pg_class. */
	path = xasprintf("%s/base/1/1259", data_dir);
	raw = slurp(path, &len);
	free(path);
	CHECK(raw != NULL && len >= 8192);
	if (raw != NULL && len >= 8192)
	{
		uint64_t	lsn;

		CHECK_EQ_INT(page_verify(raw, 0, 8192, UINT64_MAX), PAGE_OK);
		CHECK_EQ_INT(page_verify(raw, 1, 8192, UINT64_MAX), PAGE_BAD);
		/* pd_lsn: xlogid, then xrecoff. */
		lsn = ((uint64_t) get_u32(raw) << 32) | get_u32(raw + 4);
		CHECK_EQ_INT(page_verify(raw, 0, 8192, lsn), PAGE_SKIP);
		raw[5000] ^= 0x01;
		CHECK_EQ_INT(page_verify(raw, 0, 8192, UINT64_MAX), PAGE_BAD);
	}
	free(raw);
}

/* ------------------------------------------------------------------------
 * pgclient
 * ------------------------------------------------------------------------ */

static void
test_client_no_server(void)
{
	pg_conn_params p = {"/nonexistent/pgkeep-socket", TEST_PORT, "postgres", "postgres", 2};
	pg_conn    *c = (pg_conn *) 1;

	setenv("PGPASSWORD", "hunter2-secret", 1);
	CHECK_EQ_INT(pg_connect(&p, &c), ERR_PG);
	CHECK(c == NULL);
	CHECK_CONTAINS(error_msg(), "could not connect to PostgreSQL");
	CHECK_CONTAINS(error_msg(), "/nonexistent/pgkeep-socket");
	CHECK(strchr(error_msg(), '\n') == NULL);
	CHECK(strstr(error_msg(), "hunter2") == NULL);
	unsetenv("PGPASSWORD");
	pg_disconnect(NULL);
}

static bool
server_start(void)
{
	int			rc = run_as_postgres("%s/pg_ctl -D %s -l %s/server.log -w -o \"-k %s -p %d -c listen_addresses=''\" start",
									 pg_bindir, data_dir, scratch_dir, scratch_dir, TEST_PORT);

	CHECK_EQ_INT(rc, 0);
	return rc == 0;
}

static void
server_stop(void)
{
	CHECK_EQ_INT(run_as_postgres("%s/pg_ctl -D %s -m fast -w stop", pg_bindir, data_dir), 0);
}

static void
client_queries(pg_conn *c)
{
	const char *params[] = {"41", "it's"};
	char	  **values;
	int			rows;
	int			cols;
	char	   *v = NULL;

	CHECK(pg_server_version(c) >= 150000);

	/* Parameters are passed, not spliced: a quote needs no escaping. */
	CHECK_EQ_INT(pg_query(c, "SELECT $1::int + 1, NULL::text, $2::text", 2, params, &values, &rows, &cols), 0);
	CHECK_EQ_INT(rows, 1);
	CHECK_EQ_INT(cols, 3);
	if (rows == 1 && cols == 3)
	{
		CHECK_EQ_STR(values[0], "42");
		CHECK(values[1] == NULL);
		CHECK_EQ_STR(values[2], "it's");
	}
	pg_result_free(values, rows, cols);

	CHECK_EQ_INT(pg_query(c, "SELECT g, g * 10 FROM generate_series(1, $1::int) g", 1, params,
						  &values, &rows, &cols), 0);
	CHECK_EQ_INT(rows, 41);
	CHECK_EQ_INT(cols, 2);
	if (rows == 41 && cols == 2)
		CHECK_EQ_STR(values[40 * 2 + 1], "410");
	pg_result_free(values, rows, cols);

	CHECK_EQ_INT(pg_query_value(c, "SHOW application_name", &v), 0);
	CHECK_EQ_STR(v, "pgkeep");
	free(v);
	CHECK_EQ_INT(pg_query_value(c, "SHOW statement_timeout", &v), 0);
	CHECK_EQ_STR(v, "5s");
	free(v);

	CHECK_EQ_INT(pg_query_value(c, "SELECT 1 UNION ALL SELECT 2", &v), ERR_PG);
	CHECK(v == NULL);
	CHECK_CONTAINS(error_msg(), "expected one value");
	CHECK_EQ_INT(pg_query_value(c, "SELECT NULL", &v), ERR_PG);
	CHECK(v == NULL);
}

static void
client_errors(pg_conn *c)
{
	char	  **values;
	int			rows;
	int			cols;
	char	   *v = NULL;

	CHECK_EQ_INT(pg_query(c, "SELECT * FROM no_such_table", 0, NULL, &values, &rows, &cols), ERR_PG);
	CHECK(values == NULL);
	CHECK_CONTAINS(error_msg(), "relation \"no_such_table\" does not exist");
	CHECK_CONTAINS(error_msg(), "42P01");
	CHECK(strchr(error_msg(), '\n') == NULL);
	CHECK_EQ_INT(pg_exec(c, "SELEC 1"), ERR_PG);
	CHECK_CONTAINS(error_msg(), "syntax error");

	/* The connection survives an error. */
	CHECK_EQ_INT(pg_exec(c, "CREATE TEMP TABLE t (a int)"), 0);
	CHECK_EQ_INT(pg_exec(c, "DO $$BEGIN RAISE NOTICE 'to the log, not stderr'; END$$"), 0);
	CHECK_EQ_INT(pg_query(c, "INSERT INTO t VALUES (1), (2)", 0, NULL, &values, &rows, &cols), 0);
	CHECK_EQ_INT(rows, 0);
	pg_result_free(values, rows, cols);
	CHECK_EQ_INT(pg_query_value(c, "SELECT count(*) FROM t", &v), 0);
	CHECK_EQ_STR(v, "2");
	free(v);
	CHECK_EQ_INT(pg_exec(c, "SELECT a FROM t"), ERR_PG);
	CHECK_CONTAINS(error_msg(), "returned 2 rows");
}

static void
test_client_live(void)
{
	pg_conn_params p = {NULL, TEST_PORT, "postgres", "postgres", 5};
	pg_conn_params bad_user;
	pg_conn    *c = NULL;

	if (data_dir == NULL)
		return;
	if (!server_start())
		return;
	p.socket_path = scratch_dir;

	CHECK_EQ_INT(pg_connect(&p, &c), 0);
	if (c != NULL)
	{
		client_queries(c);
		client_errors(c);
		pg_disconnect(c);
	}

	bad_user = p;
	bad_user.user = "no_such_role";
	CHECK_EQ_INT(pg_connect(&bad_user, &c), ERR_PG);
	CHECK_CONTAINS(error_msg(), "role \"no_such_role\" does not exist");

	/* The statement timeout is the one given. */
	p.timeout_s = 1;
	c = NULL;
	CHECK_EQ_INT(pg_connect(&p, &c), 0);
	if (c != NULL)
	{
		CHECK_EQ_INT(pg_exec(c, "SELECT pg_sleep(3)"), ERR_PG);
		CHECK_CONTAINS(error_msg(), "statement timeout");
		pg_disconnect(c);
	}
	server_stop();
}

int
main(void)
{
	RUN(test_crc_reference);
	RUN(test_control_layouts);
	RUN(test_control_catalog_versions);
	RUN(test_control_errors);
	RUN(test_control_read_missing);
	RUN(test_version_str);
	RUN(test_wal_classify);
	RUN(test_wal_segname);
	RUN(test_wal_lsn);
	RUN(test_wal_header_synthetic);
	RUN(test_page_verify_synthetic);
	RUN(test_relation_paths);
	RUN(test_client_no_server);

	if (cluster_create())
	{
		RUN(test_cluster_control);
		RUN(test_cluster_wal);
		RUN(test_cluster_checksums);
		RUN(test_client_live);
	}
	cluster_remove();
	return harness_done();
}
