/*
 * test_manifest.c: unit tests of the manifest stream (repo/manifest.c):
 * round trips of every header field and entry kind, block lists streamed in
 * chunks with zero runs, block-list groups (g lines) expanded through a
 * resolver or read as lines, path order, every rejection of writer and reader,
 * truncation and flipped bytes, and bounded memory for a 1 GiB file's blocks.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../repo/manifest.h"
#include "../../src/error.h"
#include "../../src/mem.h"
#include "harness.h"

#define WHAT "manifest of backup T"
#define GIB (UINT64_C(1) << 30)
#define BIG_BLOCKS (GIB / 8192)

/* ---- an io_reader over memory that returns at most chunk bytes per read ---- */

typedef struct mem_reader
{
	io_reader	base;
	const uint8_t *data;
	size_t		len;
	size_t		pos;
	size_t		chunk;
} mem_reader;

static int
mem_read(io_reader *r, void *buf, size_t n, size_t *got)
{
	mem_reader *m = (mem_reader *) r;
	size_t		k = m->len - m->pos;

	if (k > n)
		k = n;
	if (k > m->chunk)
		k = m->chunk;
	memcpy(buf, m->data + m->pos, k);
	m->pos += k;
	*got = k;
	return 0;
}

static void
mem_reader_free(io_reader *r)
{
	free(r);
}

static io_reader *
mem_reader_new(const void *data, size_t len, size_t chunk)
{
	mem_reader *m = xcalloc(1, sizeof(*m));

	m->base.read = mem_read;
	m->base.free = mem_reader_free;
	m->data = data;
	m->len = len;
	m->chunk = chunk;
	return &m->base;
}

static int
verify(const void *data, size_t len)
{
	io_reader  *r = mem_reader_new(data, len, 4096);
	int			rc = manifest_verify_stream(r, WHAT);

	io_reader_free(r);
	return rc;
}

/* ---- the sample backup: a header with every field and one entry of each shape ---- */

static void
sample_header(manifest_header *h)
{
	memset(h, 0, sizeof(*h));
	h->label = xstrdup("20261127-014923F_20261128-020000I");
	h->type = xstrdup("incr");
	h->prior = xstrdup("20261127-014923F");
	h->start_time = 1795745363;
	h->stop_time = -1;
	h->start_lsn = UINT64_C(0x1A2B3C4D5E6F7081);
	h->stop_lsn = UINT64_MAX;
	h->timeline = 3;
	h->wal_start = xstrdup("000000030000001A0000002B");
	h->wal_stop = xstrdup("000000030000001A0000002C");
	h->system_id = UINT64_C(18446744073709551000);
	h->pg_version = 150004;
	h->block_size = 8192;
	h->compress = xstrdup("zst");
	h->compress_level = -7;
	h->db_size = GIB + 123;
	h->repo_size = 987654321;
	h->repo_new = 12345;
	h->file_count = 7;
	h->checksum_errors = 1502;
	h->checksum_page = true;
	h->backup_label = xstrdup("START WAL LOCATION: 1A/2B000028 (file 000000030000001A0000002B)\n"
							  "LABEL:\tpgkeep\\backup\\t\r\nSTART TIMELINE: 3\n");
	h->tablespace_map = xstrdup("16385 /mnt/ts one\n16386 /mnt/ts\\two\n");
	h->ntablespaces = 2;
	h->tablespaces = xcalloc(2, sizeof(manifest_tablespace));
	h->tablespaces[0] = (manifest_tablespace) {16385, xstrdup("ts one"), xstrdup("/mnt/ts one")};
	h->tablespaces[1] = (manifest_tablespace) {16386, xstrdup("ts\ttwo"), xstrdup("/mnt/ts\\two")};
}

static void
check_header(const manifest_header *h)
{
	manifest_header w;

	sample_header(&w);
	CHECK_EQ_STR(h->label, w.label);
	CHECK_EQ_STR(h->type, w.type);
	CHECK_EQ_STR(h->prior, w.prior);
	CHECK(h->start_time == w.start_time && h->stop_time == w.stop_time);
	CHECK(h->start_lsn == w.start_lsn && h->stop_lsn == w.stop_lsn);
	CHECK_EQ_INT(h->timeline, w.timeline);
	CHECK_EQ_STR(h->wal_start, w.wal_start);
	CHECK_EQ_STR(h->wal_stop, w.wal_stop);
	CHECK(h->system_id == w.system_id);
	CHECK_EQ_INT(h->pg_version, w.pg_version);
	CHECK_EQ_INT(h->block_size, w.block_size);
	CHECK_EQ_STR(h->compress, w.compress);
	CHECK_EQ_INT(h->compress_level, w.compress_level);
	CHECK(h->db_size == w.db_size && h->repo_size == w.repo_size && h->repo_new == w.repo_new);
	CHECK(h->file_count == w.file_count && h->checksum_errors == w.checksum_errors);
	CHECK(h->checksum_page);
	CHECK_EQ_STR(h->backup_label, w.backup_label);
	CHECK_EQ_STR(h->tablespace_map, w.tablespace_map);
	CHECK_EQ_INT(h->ntablespaces, 2);
	for (int i = 0; i < h->ntablespaces && i < 2; i++)
	{
		CHECK_EQ_INT(h->tablespaces[i].oid, w.tablespaces[i].oid);
		CHECK_EQ_STR(h->tablespaces[i].name, w.tablespaces[i].name);
		CHECK_EQ_STR(h->tablespaces[i].location, w.tablespaces[i].location);
	}
	manifest_header_free(&w);
}

typedef struct spec
{
	manifest_kind kind;
	const char *path;
	mode_t		mode;
	const char *group;
	int64_t		mtime;
	uint64_t	size;
	const char *target;
	uint64_t	nbad;
	size_t		chunk;          /* ids per manifest_write_blocks / read_blocks call */
	size_t		read;           /* blocks the reader takes before moving on */
} spec;

#define ALL SIZE_MAX

static const spec specs[] = {
	{MF_FILE, "PG_VERSION", 0600, "postgres", 1795745000, 3, NULL, 0, 1, ALL},
	{MF_DIR, "base", 0700, "postgres", 1795745001, 0, NULL, 0, 0, 0},
	{MF_DIR, "base/1", 0700, "grp\twith tab", 1795745002, 0, NULL, 0, 0, 0},
	{MF_FILE, "base/1/1259", 0600, "postgres", 0, 0, NULL, 0, 1, ALL},
	{MF_FILE, "base/1/2608", 0640, "postgres", 1795745003, 16384, NULL, 2, 3, ALL},
	{MF_FILE, "base/1/big", 0600, "postgres", 1795745004, GIB, NULL, 1500, 1000, ALL},
	{MF_FILE, "base/1/we ird\\name", 0600, "postgres", 1795745005, 10 * 8192 - 5, NULL, 0, 1, 3},
	{MF_LINK, "pg_tblspc/16385", 0777, "postgres", 1795745006, 0, "/mnt/ts one", 0, 0, 0},
	{MF_LINK, "pg_tblspc/16386", 0777, "postgres", 1795745007, 0, "/mnt/ts\\two", 0, 0, 0},
	{MF_DIR, "pg_wal", 07755, "postgres", -86400, 0, NULL, 0, 0, 0},
};

#define NSPECS (sizeof(specs) / sizeof(specs[0]))

static uint64_t
spec_blocks(const spec *s)
{
	return (s->size + 8191) / 8192;
}

/* Block i of file f: zero in runs (within and across write calls, at the end of a file), else distinct. */
static void
block_id(size_t f, uint64_t i, uint8_t id[HASH_LEN])
{
	uint64_t	key[2] = {f, i};

	if (i % 7 == 3 || (i >= 8 && i < 10) || (i >= 500 && i < 2500) || i >= 131000)
		memset(id, 0, HASH_LEN);
	else
		hash_buf(key, sizeof(key), id);
}

static void
spec_entry(const spec *s, manifest_entry *e)
{
	memset(e, 0, sizeof(*e));
	e->kind = s->kind;
	e->path = xstrdup(s->path);
	e->mode = s->mode;
	e->user = xstrdup("postgres");
	e->group = xstrdup(s->group);
	e->mtime = s->mtime;
	e->size = s->size;
	e->nblocks = spec_blocks(s);
	e->link_target = s->target ? xstrdup(s->target) : NULL;
	e->nbad = s->nbad;
	if (s->nbad > 0)
	{
		e->bad = xcalloc(MANIFEST_MAX_BAD_PAGES, sizeof(uint32_t));
		for (uint64_t i = 0; i < s->nbad && i < MANIFEST_MAX_BAD_PAGES; i++)
			e->bad[i] = (uint32_t) (i * 3 + 1);
	}
}

/* Write the sample (without the 1 GiB file unless big) to out; 0 or the first error. */
static int
write_sample(io_writer *out, bool big)
{
	manifest_writer *m = manifest_writer_new(out);
	manifest_header h;
	uint8_t		(*ids)[HASH_LEN] = xmalloc(1000 * HASH_LEN);
	int			rc;

	sample_header(&h);
	rc = manifest_write_header(m, &h);
	for (size_t f = 0; f < NSPECS && rc == 0; f++)
	{
		manifest_entry e;

		if (!big && specs[f].size == GIB)
			continue;
		spec_entry(&specs[f], &e);
		rc = manifest_write_entry(m, &e);
		for (uint64_t i = 0; i < e.nblocks && rc == 0; i += specs[f].chunk)
		{
			size_t		n = 0;

			for (; n < specs[f].chunk && i + n < e.nblocks; n++)
				block_id(f, i + n, ids[n]);
			rc = manifest_write_blocks(m, (const uint8_t (*)[HASH_LEN]) ids, n);
		}
		manifest_entry_free(&e);
	}
	if (rc == 0)
		rc = manifest_write_end(m);
	manifest_writer_free(m);
	manifest_header_free(&h);
	free(ids);
	return rc;
}

/* The sample as bytes in memory; caller frees. */
static char *
sample_text(bool big, size_t *len)
{
	io_writer  *w = io_mem_writer_new();
	const uint8_t *data;
	char	   *copy;

	CHECK_EQ_INT(write_sample(w, big), 0);
	CHECK_EQ_INT(io_close(w), 0);
	data = io_mem_writer_data(w, len);
	copy = xmalloc(*len + 1);
	memcpy(copy, data, *len);
	copy[*len] = '\0';
	io_free(w);
	return copy;
}

/* Read the sample back through a reader returning chunk bytes at a time and compare everything. */
static void
check_sample(const char *text, size_t len, size_t chunk, bool big)
{
	io_reader  *r = mem_reader_new(text, len, chunk);
	manifest_reader *m = manifest_reader_new(r, WHAT);
	uint8_t		(*ids)[HASH_LEN] = xmalloc(1000 * HASH_LEN);
	uint8_t		want[HASH_LEN];
	manifest_header h;
	manifest_entry e;
	bool		done = false;
	size_t		n;

	CHECK_EQ_INT(manifest_read_header(m, &h), 0);
	check_header(&h);
	for (size_t f = 0; f < NSPECS; f++)
	{
		const spec *s = &specs[f];
		uint64_t	got = 0;

		if (!big && s->size == GIB)
			continue;
		CHECK_EQ_INT(manifest_read_entry(m, &e, &done), 0);
		CHECK(!done);
		CHECK_EQ_INT(e.kind, s->kind);
		CHECK_EQ_STR(e.path, s->path);
		CHECK_EQ_INT(e.mode, s->mode);
		CHECK_EQ_STR(e.user, "postgres");
		CHECK_EQ_STR(e.group, s->group);
		CHECK_EQ_INT(e.mtime, s->mtime);
		CHECK(e.size == s->size && e.nblocks == spec_blocks(s));
		CHECK_EQ_STR(e.kind == MF_LINK ? e.link_target : "", s->target ? s->target : "");
		CHECK_EQ_INT(e.nbad, s->nbad);
		for (uint64_t i = 0; i < s->nbad && i < MANIFEST_MAX_BAD_PAGES; i++)
			CHECK_EQ_INT(e.bad[i], i * 3 + 1);
		while (got < s->read)
		{
			CHECK_EQ_INT(manifest_read_blocks(m, ids, s->chunk ? s->chunk : 1, &n), 0);
			if (n == 0)
				break;
			for (size_t i = 0; i < n; i++)
			{
				block_id(f, got + i, want);
				if (memcmp(ids[i], want, HASH_LEN) != 0)
				{
					CHECK(!"block id differs");
					break;
				}
			}
			got += n;
		}
		CHECK_EQ_INT(got, s->read == ALL ? spec_blocks(s) : s->read);
		manifest_entry_free(&e);
	}
	CHECK_EQ_INT(manifest_read_entry(m, &e, &done), 0);
	CHECK(done);
	CHECK_EQ_INT(manifest_read_entry(m, &e, &done), 0);
	CHECK(done);
	manifest_header_free(&h);
	manifest_reader_free(m);
	io_reader_free(r);
	free(ids);
}

static void
test_roundtrip(void)
{
	size_t		len;
	char	   *text = sample_text(false, &len);

	CHECK(str_starts_with(text, "pgkeep-manifest 1\nlabel\t20261127-014923F_20261128-020000I\ntype\tincr\n"));
	CHECK_CONTAINS(text, "\nstart-lsn\t1A2B3C4D/5E6F7081\nstop-lsn\tFFFFFFFF/FFFFFFFF\n");
	CHECK_CONTAINS(text, "\nbackup-label\tSTART WAL LOCATION: 1A/2B000028 (file 000000030000001A0000002B)\\n"
				   "LABEL:\\tpgkeep\\\\backup\\\\t\\r\\nSTART TIMELINE: 3\\n\n");
	CHECK_CONTAINS(text, "\ntablespace\t16386\tts\\ttwo\t/mnt/ts\\\\two\nfiles\n");
	CHECK_CONTAINS(text, "\nd\tbase/1\t0700\tpostgres\tgrp\\twith tab\t1795745002\n");
	CHECK_CONTAINS(text, "\nf\tbase/1/1259\t0600\tpostgres\tpostgres\t0\t0\t0\t-\nf\tbase/1/2608\t");
	CHECK_CONTAINS(text, "\t16384\t2\t2:1,4\n");
	CHECK_CONTAINS(text, "\nl\tpg_tblspc/16386\t0777\tpostgres\tpostgres\t1795745007\t/mnt/ts\\\\two\n");
	CHECK_CONTAINS(text, "\nd\tpg_wal\t7755\tpostgres\tpostgres\t-86400\nend\t");
	/* "we ird" has zeros at 3, 8 and 9, written one id per call: runs are merged and end the file. */
	CHECK_CONTAINS(text, "\nz\t1\n");
	CHECK_CONTAINS(text, "\nz\t2\nl\tpg_tblspc/16385\t");
	CHECK(strstr(text, "0000000000000000000000000000000000000000000000000000000000000000") == NULL);
	check_sample(text, len, 1, false);
	check_sample(text, len, 4096, false);
	CHECK_EQ_INT(verify(text, len), 0);
	free(text);
}

static void
test_roundtrip_big(void)
{
	size_t		len;
	char	   *text = sample_text(true, &len);

	/* The 1 GiB file's list: 1000 bad pages listed of 1500, zero runs inside and at its end. */
	CHECK_CONTAINS(text, "\t1073741824\t131072\t1500:1,4,7,");
	CHECK_CONTAINS(text, ",2998\n");
	CHECK_CONTAINS(text, "\nz\t2000\n");
	CHECK_CONTAINS(text, "\nz\t72\nf\tbase/1/we ird\\\\name\t");
	check_sample(text, len, 4096, true);
	free(text);
}

static void
test_file_stream(void)
{
	char		path[] = "/tmp/test_manifest.XXXXXX";
	int			fd = mkstemp(path);
	io_writer  *w;
	io_reader  *r;

	CHECK(fd >= 0);
	if (fd < 0)
		return;
	unlink(path);
	w = io_file_writer_new(fd, path);
	CHECK_EQ_INT(write_sample(w, false), 0);
	CHECK_EQ_INT(io_close(w), 0);
	io_free(w);
	CHECK(lseek(fd, 0, SEEK_SET) == 0);
	r = io_file_reader_new(fd, path);
	CHECK_EQ_INT(manifest_verify_stream(r, WHAT), 0);
	io_reader_free(r);
	close(fd);
}

static void
test_path_order(void)
{
	CHECK(manifest_path_cmp("base/1/2", "base/1/2") == 0);
	CHECK(manifest_path_cmp("", "") == 0);
	CHECK(manifest_path_cmp("a", "a/b") < 0);
	CHECK(manifest_path_cmp("a/b", "a") > 0);
	CHECK(manifest_path_cmp("a/b", "a-b") < 0);         /* '/' before '-' (0x2d) */
	CHECK(manifest_path_cmp("a/zzz", "a.b") < 0);       /* a's subtree before its siblings */
	CHECK(manifest_path_cmp("base/10", "base/1/2") > 0);
	CHECK(manifest_path_cmp("a\x01", "a/") > 0);         /* '/' before every byte */
	CHECK(manifest_path_cmp("a\xff", "ab") > 0);         /* bytes compare unsigned */
	CHECK(manifest_path_cmp("PG_VERSION", "base") < 0);
}

static void
test_check_path(void)
{
	static const char *const good[] = {"base/1/1259", "a..b/c.", ".hidden/x", "...", "a\\b", "PG_VERSION"};
	static const struct
	{
		const char *path;
		const char *msg;
	}			bad[] = {
		{"", "invalid path \"\": empty"},
		{"/etc/passwd", "absolute"},
		{"a//b", "contains \"//\""},
		{"a/./b", "\".\" component"},
		{"./a", "\".\" component"},
		{".", "\".\" component"},
		{"a/..", "\"..\" component"},
		{"../x", "\"..\" component"},
		{"base/../../etc", "invalid path \"base/../../etc\": contains a \"..\" component"},
		{"a/", "ends with \"/\""},
		{"a\nb", "invalid path \"a\\nb\": contains a control character"},
		{"a\001b", "invalid path \"a\\x01b\""},
	};
	char		longp[4098];

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		CHECK_EQ_INT(manifest_check_path(good[i]), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
	{
		CHECK_EQ_INT(manifest_check_path(bad[i].path), ERR_FORMAT);
		CHECK_CONTAINS(error_msg(), bad[i].msg);
	}
	memset(longp, 'a', sizeof(longp) - 1);
	longp[4097] = '\0';
	CHECK_EQ_INT(manifest_check_path(longp), ERR_FORMAT);
	CHECK_CONTAINS(error_msg(), "longer than 4096 bytes");
	longp[4096] = '\0';
	CHECK_EQ_INT(manifest_check_path(longp), 0);
}

/* ---- writer refusals ---- */

static void
test_writer_refusals(void)
{
	io_writer  *w = io_mem_writer_new();
	manifest_writer *m = manifest_writer_new(w);
	manifest_header h;
	manifest_entry e;
	uint8_t		ids[3][HASH_LEN] = {{1}, {2}, {3}};
	const uint8_t *data;
	size_t		len;

	spec_entry(&specs[4], &e);  /* base/1/2608: 2 blocks */
	CHECK_EQ_INT(manifest_write_entry(m, &e), ERR_INTERNAL);
	sample_header(&h);
	free(h.label);
	h.label = NULL;
	CHECK_EQ_INT(manifest_write_header(m, &h), ERR_FORMAT);
	CHECK_CONTAINS(error_msg(), "no value for \"label\"");
	h.label = xstrdup("L");
	free(h.type);
	h.type = xstrdup("partial");
	CHECK_EQ_INT(manifest_write_header(m, &h), ERR_FORMAT);
	CHECK_CONTAINS(error_msg(), "type is not");
	free(h.type);
	h.type = xstrdup("full");
	CHECK_EQ_INT(manifest_write_header(m, &h), 0);
	CHECK_EQ_INT(manifest_write_header(m, &h), ERR_INTERNAL);
	manifest_header_free(&h);

	CHECK_EQ_INT(manifest_write_blocks(m, (const uint8_t (*)[HASH_LEN]) ids, 1), ERR_INTERNAL);
	CHECK_EQ_INT(manifest_write_entry(m, &e), 0);
	CHECK_EQ_INT(manifest_write_blocks(m, (const uint8_t (*)[HASH_LEN]) ids, 3), ERR_INTERNAL);
	CHECK_EQ_INT(manifest_write_blocks(m, (const uint8_t (*)[HASH_LEN]) ids, 1), 0);
	CHECK_EQ_INT(manifest_write_end(m), ERR_INTERNAL);
	CHECK_CONTAINS(error_msg(), "lacks 1 blocks");
	manifest_entry_free(&e);
	spec_entry(&specs[5], &e);  /* base/1/big, after base/1/2608 */
	CHECK_EQ_INT(manifest_write_entry(m, &e), ERR_INTERNAL);
	CHECK_CONTAINS(error_msg(), "lacks 1 blocks");
	CHECK_EQ_INT(manifest_write_blocks(m, (const uint8_t (*)[HASH_LEN]) ids + 1, 1), 0);
	manifest_entry_free(&e);

	/* Refused entries change nothing: the manifest stays valid. */
	spec_entry(&specs[4], &e);
	CHECK_EQ_INT(manifest_write_entry(m, &e), ERR_INTERNAL);      /* the same path again */
	free(e.path);
	e.path = xstrdup("base/1/../x");
	CHECK_EQ_INT(manifest_write_entry(m, &e), ERR_FORMAT);
	CHECK_CONTAINS(error_msg(), "\"..\" component");
	free(e.path);
	e.path = xstrdup("base/2/1");
	e.nblocks = 3;
	CHECK_EQ_INT(manifest_write_entry(m, &e), ERR_INTERNAL);
	CHECK_CONTAINS(error_msg(), "3 blocks for 16384 bytes (expected 2)");
	e.nblocks = 2;
	e.mode = 010000;
	CHECK_EQ_INT(manifest_write_entry(m, &e), ERR_INTERNAL);
	e.mode = 0600;
	free(e.user);
	e.user = xstrdup("");
	CHECK_EQ_INT(manifest_write_entry(m, &e), ERR_INTERNAL);
	manifest_entry_free(&e);
	spec_entry(&specs[7], &e);
	free(e.link_target);
	e.link_target = NULL;
	CHECK_EQ_INT(manifest_write_entry(m, &e), ERR_INTERNAL);
	CHECK_CONTAINS(error_msg(), "empty link target");
	manifest_entry_free(&e);

	CHECK_EQ_INT(manifest_write_end(m), 0);
	CHECK_EQ_INT(manifest_write_end(m), ERR_INTERNAL);
	manifest_writer_free(m);
	data = io_mem_writer_data(w, &len);
	CHECK_EQ_INT(verify(data, len), 0);
	io_free(w);
}

static void
test_writer_long_line(void)
{
	io_writer  *w = io_mem_writer_new();
	manifest_writer *m = manifest_writer_new(w);
	manifest_header h;
	const uint8_t *data;
	size_t		len;

	sample_header(&h);
	free(h.backup_label);
	h.backup_label = xmalloc(1024 * 1024 + 2);
	memset(h.backup_label, 'x', 1024 * 1024 + 1);
	h.backup_label[1024 * 1024 + 1] = '\0';
	CHECK_EQ_INT(manifest_write_header(m, &h), ERR_FORMAT);
	CHECK_CONTAINS(error_msg(), "line too long");
	CHECK_EQ_INT(manifest_write_end(m), ERR_INTERNAL);   /* unusable once output was produced */
	manifest_header_free(&h);
	manifest_writer_free(m);
	io_free(w);

	/* A line of exactly 1 MiB is written and read back. */
	w = io_mem_writer_new();
	m = manifest_writer_new(w);
	sample_header(&h);
	free(h.backup_label);
	h.backup_label = xmalloc(1024 * 1024 + 1);
	memset(h.backup_label, 'x', 1024 * 1024 - strlen("backup-label\t"));
	h.backup_label[1024 * 1024 - strlen("backup-label\t")] = '\0';
	CHECK_EQ_INT(manifest_write_header(m, &h), 0);
	CHECK_EQ_INT(manifest_write_end(m), 0);
	data = io_mem_writer_data(w, &len);
	CHECK_EQ_INT(verify(data, len), 0);
	manifest_header_free(&h);
	manifest_writer_free(m);
	io_free(w);
}

/* ---- reader rejections, on hand-made manifests whose end hash is right ---- */

#define HDR "pgkeep-manifest 1\n" \
	"label\t20261127-014923F\n" \
	"type\tfull\n" \
	"start-time\t1795745363\n" \
	"stop-time\t1795745400\n" \
	"start-lsn\t1A/2B000028\n" \
	"stop-lsn\t1A/2C000100\n" \
	"timeline\t1\n" \
	"wal-start\t000000010000001A0000002B\n" \
	"wal-stop\t000000010000001A0000002C\n" \
	"system-id\t7312345678901234567\n" \
	"pg-version\t150004\n" \
	"block-size\t8192\n" \
	"compress\tzst\n" \
	"compress-level\t3\n" \
	"db-size\t8193\n" \
	"repo-size\t100\n" \
	"repo-new\t100\n" \
	"file-count\t1\n" \
	"checksum-errors\t0\n" \
	"checksum-page\tn\n" \
	"backup-label\tSTART WAL LOCATION: 1A/2B000028\\n\n" \
	"files\n"
#define ID1 "1111111111111111111111111111111111111111111111111111111111111111\n"
#define ID2 "2222222222222222222222222222222222222222222222222222222222222222\n"
#define FILE2 "f\tbase/1\t0600\tpostgres\tpostgres\t0\t8193\t2\t-\n"

/* text followed by its end line. */
static char *
seal(const char *text)
{
	uint8_t		digest[HASH_LEN];
	char		hex[HASH_HEX_LEN + 1];

	hash_buf(text, strlen(text), digest);
	hash_to_hex(digest, hex);
	return xasprintf("%send\t%s\n", text, hex);
}

/* s with its first from replaced by to (which must be there). */
static char *
replace(const char *s, const char *from, const char *to)
{
	const char *at = strstr(s, from);

	if (at == NULL)
	{
		fprintf(stderr, "test bug: \"%s\" not found\n", from);
		abort();
	}
	return xasprintf("%.*s%s%s", (int) (at - s), s, to, at + strlen(from));
}

#define REJECT(text, code, frag) reject(__LINE__, (text), (code), (frag))

static void
reject(int line, const char *text, int code, const char *frag)
{
	int			rc = verify(text, strlen(text));

	if (rc != code || strstr(error_msg(), frag) == NULL)
		fprintf(stderr, "  rejection case at line %d: code %d, \"%s\"\n", line, rc, error_msg());
	CHECK_EQ_INT(rc, code);
	CHECK_CONTAINS(error_msg(), frag);
	CHECK_CONTAINS(error_msg(), WHAT);
}

/* HDR with from replaced by to, then body, sealed. */
#define REJECT_HDR(from, to, body, code, frag) do { \
	char *_h = replace(HDR, (from), (to)); char *_b = xasprintf("%s%s", _h, (body)); char *_t = seal(_b); \
	REJECT(_t, (code), (frag)); free(_h); free(_b); free(_t); \
} while (0)
#define REJECT_BODY(body, code, frag) REJECT_HDR("files\n", "files\n", (body), (code), (frag))

static void
test_reader_accepts(void)
{
	char	   *t = seal(HDR FILE2 ID1 "z\t1\n" "d\tbase/2\t0700\tpostgres\tpostgres\t0\n"
						 "d\tbase-x\t0700\tpostgres\tpostgres\t0\n");
	char	   *h1,
			   *h2;

	CHECK_EQ_INT(verify(t, strlen(t)), 0);
	free(t);
	/* Optional keys may be absent; order of keys is free; an all-zero id in hex is an id. */
	h1 = replace(HDR FILE2 ID1 "0000000000000000000000000000000000000000000000000000000000000000\n",
				 "type\tfull\n", "");
	h2 = replace(h1, "files\n", "type\tfull\nfiles\n");
	t = seal(h2);
	CHECK_EQ_INT(verify(t, strlen(t)), 0);
	free(h1);
	free(h2);
	free(t);
}

static void
test_reader_rejects_header(void)
{
	REJECT_HDR("pgkeep-manifest 1", "pgkeep-manifest 2", "", ERR_FORMAT, "line 1: unsupported manifest version 2");
	REJECT_HDR("pgkeep-manifest 1", "pgkeep-manifest x", "", ERR_FORMAT, "not a pgkeep manifest");
	REJECT_HDR("pgkeep-manifest 1\n", "{\"json\": 1}\n", "", ERR_FORMAT, "not a pgkeep manifest");
	REJECT_HDR("timeline\t1\n", "", "", ERR_FORMAT, "line 22: missing header key \"timeline\"");
	REJECT_HDR("backup-label\tSTART WAL LOCATION: 1A/2B000028\\n\n", "", "", ERR_FORMAT,
			   "missing header key \"backup-label\"");
	REJECT_HDR("files\n", "colour\tblue\nfiles\n", "", ERR_FORMAT, "line 23: unknown header key \"colour\"");
	REJECT_HDR("files\n", "timeline\t2\nfiles\n", "", ERR_FORMAT, "duplicate header key \"timeline\"");
	REJECT_HDR("LOCATION: 1A", "LOCATION:\\q1A", "", ERR_FORMAT, "line 22: invalid escape sequence in field 2");
	REJECT_HDR("2B000028\\n\n", "2B000028\\\n", "", ERR_FORMAT, "invalid escape sequence");
	REJECT_HDR("timeline\t1\n", "timeline\t1\textra\n", "", ERR_FORMAT, "expected 2 fields, found 3");
	REJECT_HDR("timeline\t1\n", "timeline\t4294967296\n", "", ERR_FORMAT, "invalid value of \"timeline\"");
	REJECT_HDR("timeline\t1\n", "timeline\t-1\n", "", ERR_FORMAT, "invalid value of \"timeline\"");
	REJECT_HDR("timeline\t1\n", "timeline\t+1\n", "", ERR_FORMAT, "invalid value of \"timeline\"");
	REJECT_HDR("timeline\t1\n", "timeline\t\n", "", ERR_FORMAT, "invalid value of \"timeline\"");
	REJECT_HDR("start-lsn\t1A/2B000028", "start-lsn\t1A2B000028", "", ERR_FORMAT, "invalid value of \"start-lsn\"");
	REJECT_HDR("start-lsn\t1A/2B000028", "start-lsn\t1A/G", "", ERR_FORMAT, "invalid value of \"start-lsn\"");
	REJECT_HDR("start-lsn\t1A/2B000028", "start-lsn\t1A/100000000", "", ERR_FORMAT, "invalid value");
	REJECT_HDR("stop-time\t1795745400", "stop-time\t-0", "", ERR_FORMAT, "invalid value of \"stop-time\"");
	REJECT_HDR("stop-time\t1795745400", "stop-time\t9223372036854775808", "", ERR_FORMAT, "invalid value");
	REJECT_HDR("compress-level\t3", "compress-level\t2147483648", "", ERR_FORMAT, "invalid value");
	REJECT_HDR("checksum-page\tn", "checksum-page\tyes", "", ERR_FORMAT, "invalid value of \"checksum-page\"");
	REJECT_HDR("type\tfull", "type\tpartial", "", ERR_FORMAT, "type is not");
	REJECT_HDR("label\t20261127-014923F", "label\t", "", ERR_FORMAT, "empty label");
	REJECT_HDR("block-size\t8192", "block-size\t0", "", ERR_FORMAT, "block size is 0");
	REJECT_HDR("files\n", "tablespace\t16385\tts\t/mnt/a\ntablespace\t16385\tts2\t/mnt/b\nfiles\n", "",
			   ERR_FORMAT, "tablespace 16385 is listed twice");
	REJECT_HDR("files\n", "tablespace\t16385\tts\trelative\nfiles\n", "", ERR_FORMAT, "absolute location");
	REJECT_HDR("files\n", "tablespace\tx\tts\t/mnt/a\nfiles\n", "", ERR_FORMAT, "invalid tablespace oid");
	REJECT_HDR("files\n", "tablespace\t1\tts\n", "", ERR_FORMAT, "expected 4 fields, found 3");
	REJECT_HDR("files\n", "end\t0\n", "", ERR_FORMAT, "unknown header key \"end\"");
}

static void
test_reader_rejects_entries(void)
{
	REJECT_BODY("f\tbase/../x\t0600\tpostgres\tpostgres\t0\t0\t0\t-\n", ERR_FORMAT,
				WHAT ", line 24: invalid path \"base/../x\": contains a \"..\" component");
	REJECT_BODY("d\t/etc\t0700\tpostgres\tpostgres\t0\n", ERR_FORMAT, "absolute");
	REJECT_BODY("d\tbase/\t0700\tpostgres\tpostgres\t0\n", ERR_FORMAT, "ends with");
	REJECT_BODY("d\tb\\001\t0700\tpostgres\tpostgres\t0\n", ERR_FORMAT, "invalid escape");
	REJECT_BODY("d\tb\t0700\tpostgres\tpostgres\t0\nd\ta\t0700\tpostgres\tpostgres\t0\n", ERR_FORMAT,
				"line 25: \"a\" is not after \"b\"");
	REJECT_BODY("d\ta\t0700\tpostgres\tpostgres\t0\nd\ta\t0700\tpostgres\tpostgres\t0\n", ERR_FORMAT,
				"\"a\" is not after \"a\"");
	REJECT_BODY("d\ta-b\t0700\tpostgres\tpostgres\t0\nd\ta/b\t0700\tpostgres\tpostgres\t0\n", ERR_FORMAT,
				"\"a/b\" is not after \"a-b\"");   /* '/' sorts first */
	REJECT_BODY("f\tbase/1\t0600\tpostgres\tpostgres\t0\t8193\t1\t-\n" ID1, ERR_FORMAT,
				"1 blocks for 8193 bytes (expected 2)");
	REJECT_BODY("f\tbase/1\t0600\tpostgres\tpostgres\t0\t0\t1\t-\n" ID1, ERR_FORMAT, "expected 0");
	REJECT_BODY(FILE2 ID1 "111111111111111111111111111111111111111111111111111111111111111g\n", ERR_FORMAT,
				"line 26: invalid block id");
	REJECT_BODY(FILE2 ID1 "11111111111111111111111111111111111111111111111111111111111111\n", ERR_FORMAT,
				"\"base/1\" has 1 blocks, expected 2");
	REJECT_BODY(FILE2 ID1 "d\tbase/2\t0700\tpostgres\tpostgres\t0\n", ERR_FORMAT, "\"base/1\" has 1 blocks, expected 2");
	REJECT_BODY(FILE2 ID1 ID2 ID1, ERR_FORMAT, "line 27: expected an entry or the end line");
	REJECT_BODY(FILE2 ID1 "z\t2\n", ERR_FORMAT, "invalid zero run \"2\"");
	REJECT_BODY(FILE2 "z\t0\n" ID1 ID2, ERR_FORMAT, "invalid zero run \"0\"");
	REJECT_BODY(FILE2 "z\tx\n", ERR_FORMAT, "invalid zero run");
	REJECT_BODY(FILE2, ERR_FORMAT, "\"base/1\" has 0 blocks, expected 2");
	REJECT_BODY(ID1, ERR_FORMAT, "expected an entry or the end line");
	REJECT_BODY("x\tbase\n", ERR_FORMAT, "expected an entry or the end line");
	REJECT_BODY("d\tbase\t0700\tpostgres\tpostgres\n", ERR_FORMAT, "expected 6 fields, found 5");
	REJECT_BODY("d\tbase\t010000\tpostgres\tpostgres\t0\n", ERR_FORMAT, "invalid mode \"010000\"");
	REJECT_BODY("d\tbase\t0800\tpostgres\tpostgres\t0\n", ERR_FORMAT, "invalid mode");
	REJECT_BODY("d\tbase\t0700\tpostgres\tpostgres\t1.5\n", ERR_FORMAT, "invalid mtime \"1.5\"");
	REJECT_BODY("d\tbase\t0700\t\tpostgres\t0\n", ERR_FORMAT, "empty user or group");
	REJECT_BODY("l\tbase\t0777\tpostgres\tpostgres\t0\t\n", ERR_FORMAT, "empty link target");
	REJECT_BODY("f\tbase\t0600\tpostgres\tpostgres\t0\t-1\t0\t-\n", ERR_FORMAT, "invalid size or block count");
	REJECT_BODY("f\tbase\t0600\tpostgres\tpostgres\t0\t0\t0\t2:1\n", ERR_FORMAT, "invalid bad page list \"2:1\"");
	REJECT_BODY("f\tbase\t0600\tpostgres\tpostgres\t0\t0\t0\t1:1,2\n", ERR_FORMAT, "invalid bad page list");
	REJECT_BODY("f\tbase\t0600\tpostgres\tpostgres\t0\t0\t0\t0:\n", ERR_FORMAT, "invalid bad page list");
	REJECT_BODY("f\tbase\t0600\tpostgres\tpostgres\t0\t0\t0\t\n", ERR_FORMAT, "invalid bad page list");
	REJECT_BODY("f\tbase\t0600\tpostgres\tpostgres\t0\t0\t0\t2:1,\n", ERR_FORMAT, "invalid bad page list");
}

static void
test_reader_rejects_stream(void)
{
	char	   *ok = seal(HDR FILE2 ID1 ID2);
	char	   *t;
	char	   *big;
	const char *end = strstr(ok, "\nend\t") + 1;

	REJECT("", ERR_CORRUPT, WHAT " is truncated at line 1");
	REJECT(HDR FILE2 ID1 ID2, ERR_CORRUPT, "is truncated at line 27");
	t = xasprintf("%s\n", ok);
	REJECT(t, ERR_FORMAT, "line 27: data after the end line");
	free(t);
	t = xasprintf("%send\t00\n", ok);
	REJECT(t, ERR_FORMAT, "data after the end line");
	free(t);
	t = replace(ok, ID2, "2222222222222222222222222222222222222222222222222222222222222223\n");
	REJECT(t, ERR_CORRUPT, WHAT ", line 27: checksum mismatch");
	free(t);
	t = xasprintf("%.*send\t%s\n", (int) (end - ok), ok, "00");
	REJECT(t, ERR_CORRUPT, "checksum mismatch");
	free(t);
	/* The end hash is compared as written: an uppercase spelling is not the writer's. */
	t = xstrdup(ok);
	for (char *c = t + (end - ok) + strlen("end\t"); *c; c++)
		if (*c >= 'a' && *c <= 'f')
			*c -= 'a' - 'A';
	REJECT(t, ERR_CORRUPT, "checksum mismatch");
	free(t);
	/* A NUL inside a line. */
	t = xstrdup(ok);
	t[strlen(HDR) + 3] = '\0';
	CHECK_EQ_INT(verify(t, strlen(ok)), ERR_FORMAT);
	CHECK_CONTAINS(error_msg(), "line 24: line contains a NUL byte");
	free(t);
	/* Lines beyond 1 MiB, with or without a newline. */
	big = xmalloc(1024 * 1024 + 2);
	memset(big, 'x', 1024 * 1024 + 1);
	big[1024 * 1024 + 1] = '\0';
	t = xasprintf(HDR "%s\n", big);
	REJECT(t, ERR_FORMAT, "line 24: line longer than 1048576 bytes");
	free(t);
	t = xasprintf(HDR "%s", big);
	REJECT(t, ERR_FORMAT, "line longer than");
	free(t);
	free(big);
	free(ok);
}

/* ---- block-list groups: g lines mixed with id lines and zero runs ---- */

#define GROUP_MAX 16

/* The test's block store of block-list objects, and a resolver over it. */
typedef struct group_table
{
	int			n;
	uint8_t		list_id[GROUP_MAX][HASH_LEN];
	uint64_t	count[GROUP_MAX];
	uint8_t		ids[GROUP_MAX][MANIFEST_GROUP_BLOCKS][HASH_LEN];
	int			calls;
	int			fail;           /* code every call fails with, or 0 */
} group_table;

static group_table table;

/* Store ids[0..count) as a block-list object; its id into list_id. */
static void
table_add(group_table *t, const uint8_t (*ids)[HASH_LEN], uint64_t count, uint8_t list_id[HASH_LEN])
{
	hash_buf(ids, (size_t) count * HASH_LEN, list_id);
	if (t->n == GROUP_MAX)
	{
		fprintf(stderr, "test bug: group table full\n");
		abort();
	}
	memcpy(t->list_id[t->n], list_id, HASH_LEN);
	memcpy(t->ids[t->n], ids, (size_t) count * HASH_LEN);
	t->count[t->n++] = count;
}

static int
table_resolve(void *arg, const uint8_t list_id[HASH_LEN], uint64_t count, uint8_t (*ids)[HASH_LEN])
{
	group_table *t = arg;
	char		hex[HASH_HEX_LEN + 1];

	t->calls++;
	hash_to_hex(list_id, hex);
	if (t->fail != 0)
		return error_set(t->fail, "block list %s is damaged (test)", hex);
	for (int i = 0; i < t->n; i++)
	{
		if (memcmp(t->list_id[i], list_id, HASH_LEN) != 0)
			continue;
		if (count != t->count[i])
			return error_set(ERR_CORRUPT, "block list %s holds %" PRIu64 " ids, not %" PRIu64,
							 hex, t->count[i], count);
		memcpy(ids, t->ids[i], (size_t) count * HASH_LEN);
		return 0;
	}
	return error_set(ERR_NOT_FOUND, "block list %s is not in the repository (test)", hex);
}

/*
 * How the sample's files are written, segment by segment: 'g' one group
 * (manifest_write_ref), 'b' ids through manifest_write_blocks, 'r' id refs,
 * 'z' one zero-run ref.
 */
typedef struct seg
{
	char		how;
	uint64_t	count;
} seg;

typedef struct gspec
{
	manifest_kind kind;
	const char *path;
	uint64_t	size;
	seg			segs[8];
} gspec;

static const gspec gspecs[] = {
	{MF_FILE, "base/1/a", 702 * 8192, {{'g', 256}, {'r', 4}, {'z', 40}, {'g', 256}, {'b', 45}, {'g', 100}, {'z', 1}}},
	{MF_FILE, "base/1/b", 512 * 8192, {{'g', 256}, {'g', 256}}},
	{MF_FILE, "base/1/c", 3 * 8192 - 100, {{'g', 3}}},
	{MF_DIR, "base/2", 0, {{0, 0}}},
	{MF_FILE, "base/2/e", 0, {{0, 0}}},
	{MF_FILE, "base/2/f", 1000 * 8192, {{'z', 300}, {'g', 256}, {'b', 188}, {'g', 256}}},
};

#define NGSPECS (sizeof(gspecs) / sizeof(gspecs[0]))
#define NGROUPS 8               /* g segments above */

static uint64_t
gspec_blocks(const gspec *s)
{
	return (s->size + 8191) / 8192;
}

/* The segment block i of file f falls in. */
static char
gseg(size_t f, uint64_t i)
{
	for (const seg *s = gspecs[f].segs; s->how != 0; s++)
	{
		if (i < s->count)
			return s->how;
		i -= s->count;
	}
	return 0;
}

/* Block i of file f: zero in z segments and now and then in groups and id lists; else distinct. */
static void
gblock(size_t f, uint64_t i, uint8_t id[HASH_LEN])
{
	uint64_t	key[3] = {f, i, 0x67};
	char		how = gseg(f, i);

	if (how == 'z' || (how != 'r' && i % 11 == 5))
		memset(id, 0, HASH_LEN);
	else
		hash_buf(key, sizeof(key), id);
}

static void
gspec_entry(const gspec *s, manifest_entry *e)
{
	memset(e, 0, sizeof(*e));
	e->kind = s->kind;
	e->path = xstrdup(s->path);
	e->mode = s->kind == MF_DIR ? 0700 : 0600;
	e->user = xstrdup("postgres");
	e->group = xstrdup("postgres");
	e->mtime = 1795745000;
	e->size = s->size;
	e->nblocks = s->kind == MF_FILE ? gspec_blocks(s) : 0;
}

/*
 * The refs a reader sees for file f, as the writer emits them (zero blocks
 * outside groups merged into runs), into refs; returns how many.
 */
static size_t
expected_refs(size_t f, manifest_ref *refs)
{
	const gspec *s = &gspecs[f];
	uint64_t	i = 0,
				run = 0;
	size_t		n = 0;

	for (const seg *sg = s->segs; sg->how != 0; sg++)
	{
		if (sg->how == 'g')
		{
			uint8_t		ids[MANIFEST_GROUP_BLOCKS][HASH_LEN];

			if (run > 0)
				refs[n++] = (manifest_ref) {MREF_ZERO, {0}, run};
			run = 0;
			for (uint64_t k = 0; k < sg->count; k++)
				gblock(f, i + k, ids[k]);
			refs[n].kind = MREF_GROUP;
			refs[n].count = sg->count;
			hash_buf(ids, (size_t) sg->count * HASH_LEN, refs[n++].id);
			i += sg->count;
			continue;
		}
		for (uint64_t k = 0; k < sg->count; k++, i++)
		{
			refs[n].kind = MREF_BLOCK;
			refs[n].count = 1;
			gblock(f, i, refs[n].id);
			if (manifest_is_zero_id(refs[n].id))
			{
				run++;
				continue;
			}
			if (run > 0)
			{
				refs[n + 1] = refs[n];
				refs[n++] = (manifest_ref) {MREF_ZERO, {0}, run};
			}
			run = 0;
			n++;
		}
	}
	if (run > 0)
		refs[n++] = (manifest_ref) {MREF_ZERO, {0}, run};
	return n;
}

/* Write one file's blocks segment by segment, storing its groups in t. */
static int
write_gfile(manifest_writer *m, size_t f, group_table *t)
{
	uint8_t		ids[MANIFEST_GROUP_BLOCKS][HASH_LEN];
	uint64_t	i = 0;
	int			rc = 0;

	for (const seg *sg = gspecs[f].segs; sg->how != 0 && rc == 0; sg++)
	{
		manifest_ref ref = {MREF_BLOCK, {0}, 1};

		switch (sg->how)
		{
			case 'g':
				for (uint64_t k = 0; k < sg->count; k++)
					gblock(f, i + k, ids[k]);
				ref.kind = MREF_GROUP;
				ref.count = sg->count;
				table_add(t, (const uint8_t (*)[HASH_LEN]) ids, sg->count, ref.id);
				rc = manifest_write_ref(m, &ref);
				break;
			case 'b':
				/* In calls of 10 ids. */
				for (uint64_t k = 0; k < sg->count && rc == 0; k += 10)
				{
					size_t		n = 0;

					for (; n < 10 && k + n < sg->count; n++)
						gblock(f, i + k + n, ids[n]);
					rc = manifest_write_blocks(m, (const uint8_t (*)[HASH_LEN]) ids, n);
				}
				break;
			case 'r':
				for (uint64_t k = 0; k < sg->count && rc == 0; k++)
				{
					gblock(f, i + k, ref.id);
					rc = manifest_write_ref(m, &ref);
				}
				break;
			case 'z':
				ref.kind = MREF_ZERO;
				ref.count = sg->count;
				rc = manifest_write_ref(m, &ref);
				break;
		}
		i += sg->count;
	}
	return rc;
}

/* The group sample as bytes in memory, its groups in table; caller frees. */
static char *
gsample_text(size_t *len)
{
	io_writer  *w = io_mem_writer_new();
	manifest_writer *m = manifest_writer_new(w);
	manifest_header h;
	const uint8_t *data;
	char	   *copy;
	int			rc;

	memset(&table, 0, sizeof(table));
	sample_header(&h);
	rc = manifest_write_header(m, &h);
	for (size_t f = 0; f < NGSPECS && rc == 0; f++)
	{
		manifest_entry e;

		gspec_entry(&gspecs[f], &e);
		rc = manifest_write_entry(m, &e);
		if (rc == 0)
			rc = write_gfile(m, f, &table);
		manifest_entry_free(&e);
	}
	if (rc == 0)
		rc = manifest_write_end(m);
	CHECK_EQ_INT(rc, 0);
	CHECK_EQ_INT(io_close(w), 0);
	CHECK_EQ_INT(table.n, NGROUPS);
	manifest_writer_free(m);
	manifest_header_free(&h);
	data = io_mem_writer_data(w, len);
	copy = xmalloc(*len + 1);
	memcpy(copy, data, *len);
	copy[*len] = '\0';
	io_free(w);
	return copy;
}

/*
 * Read the group sample with manifest_read_blocks in calls of chunk ids
 * (the input in reads of ichunk bytes), taking at most limit blocks of each
 * file, and compare every id.
 */
static void
check_gsample(const char *text, size_t len, size_t ichunk, size_t chunk, uint64_t limit)
{
	io_reader  *r = mem_reader_new(text, len, ichunk);
	manifest_reader *m = manifest_reader_new(r, WHAT);
	uint8_t		(*ids)[HASH_LEN] = xmalloc(chunk * HASH_LEN);
	uint8_t		want[HASH_LEN];
	manifest_header h;
	manifest_entry e;
	bool		done = false;
	int			mismatches = 0;
	size_t		n;

	manifest_reader_set_group_fn(m, table_resolve, &table);
	CHECK_EQ_INT(manifest_read_header(m, &h), 0);
	for (size_t f = 0; f < NGSPECS; f++)
	{
		uint64_t	got = 0,
					need = gspecs[f].kind == MF_FILE ? gspec_blocks(&gspecs[f]) : 0;

		CHECK_EQ_INT(manifest_read_entry(m, &e, &done), 0);
		CHECK(!done);
		CHECK_EQ_STR(e.path, gspecs[f].path);
		CHECK(e.nblocks == need);
		while (got < limit)
		{
			CHECK_EQ_INT(manifest_read_blocks(m, ids, limit - got < chunk ? (size_t) (limit - got) : chunk, &n), 0);
			if (n == 0)
				break;
			CHECK(n <= chunk);
			for (size_t i = 0; i < n; i++)
			{
				gblock(f, got + i, want);
				mismatches += memcmp(ids[i], want, HASH_LEN) != 0;
			}
			got += n;
		}
		CHECK_EQ_INT(got, limit < need ? limit : need);
		manifest_entry_free(&e);
	}
	CHECK_EQ_INT(mismatches, 0);
	CHECK_EQ_INT(manifest_read_entry(m, &e, &done), 0);
	CHECK(done);
	manifest_header_free(&h);
	manifest_reader_free(m);
	io_reader_free(r);
	free(ids);
}

static void
test_groups_roundtrip(void)
{
	static const size_t chunks[] = {1, 7, 255, 256, 1000};
	size_t		len;
	char	   *text = gsample_text(&len);
	char		hex[HASH_HEX_LEN + 1];
	char	   *line;
	uint8_t		id[HASH_LEN];

	/* Groups are single lines; ids inside a group appear nowhere in the manifest. */
	hash_to_hex(table.list_id[0], hex);
	line = xasprintf("\nf\tbase/1/a\t0600\tpostgres\tpostgres\t1795745000\t5750784\t702\t-\ng\t%s\t256\n", hex);
	CHECK_CONTAINS(text, line);
	free(line);
	hash_to_hex(table.list_id[2], hex);
	line = xasprintf("\ng\t%s\t100\nz\t1\nf\tbase/1/b\t", hex);
	CHECK_CONTAINS(text, line);
	free(line);
	hash_to_hex(table.list_id[5], hex);
	line = xasprintf("\t24476\t3\t-\ng\t%s\t3\nd\tbase/2\t", hex);
	CHECK_CONTAINS(text, line);
	free(line);
	CHECK_CONTAINS(text, "\t1795745000\t0\t0\t-\nf\tbase/2/f\t0600\tpostgres\tpostgres\t1795745000\t8192000\t1000\t-\nz\t300\ng\t");
	gblock(1, 1, id);
	hash_to_hex(id, hex);
	CHECK(strstr(text, hex) == NULL);

	/* Every chunk size, each splitting groups differently; each group resolved once. */
	for (size_t i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++)
	{
		table.calls = 0;
		check_gsample(text, len, 4096, chunks[i], UINT64_MAX);
		CHECK_EQ_INT(table.calls, NGROUPS);
	}
	check_gsample(text, len, 1, 7, UINT64_MAX);
	/* Files left in the middle of a group, of a zero run, or unread: the rest is skipped, unresolved. */
	table.calls = 0;
	check_gsample(text, len, 4096, 7, 301);
	CHECK_EQ_INT(table.calls, 6);   /* a: 2 groups (block 300 starts one), b: 2, c: 1, f: 1 */
	table.calls = 0;
	check_gsample(text, len, 4096, 7, 270);
	CHECK_EQ_INT(table.calls, 4);   /* a: 1 (then inside a zero run), b: 2, c: 1, f: 0 */
	table.calls = 0;
	check_gsample(text, len, 4096, 100, 0);
	CHECK_EQ_INT(table.calls, 0);

	/* Checking the stream needs no resolver. */
	CHECK_EQ_INT(verify(text, len), 0);
	free(text);
}

/*
 * manifest_peek_groups: the list ids of the `g` lines buffered after the
 * reader's position, in manifest order, whole lines only, at most max.
 */
static void
test_groups_peek(void)
{
	static const size_t chunks[] = {1, 100, 1000, 1 << 20};
	size_t		len;
	char	   *text = gsample_text(&len);
	uint8_t		want[NGROUPS][HASH_LEN];
	uint8_t		got[NGROUPS + 1][HASH_LEN];
	size_t		nwant = 0;

	/* The g lines of the sample, found by the test's own scan. */
	for (const char *p = strstr(text, "\ng\t"); p != NULL; p = strstr(p + 1, "\ng\t"))
	{
		char		hex[HASH_HEX_LEN + 1];

		memcpy(hex, p + 3, HASH_HEX_LEN);
		hex[HASH_HEX_LEN] = '\0';
		CHECK(nwant < NGROUPS && hash_from_hex(hex, want[nwant]));
		nwant++;
	}
	CHECK_EQ_INT(nwant, NGROUPS);
	for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++)
	{
		io_reader  *r = mem_reader_new(text, len, chunks[c]);
		manifest_reader *m = manifest_reader_new(r, WHAT);
		manifest_header h;
		manifest_entry e;
		bool		done;
		size_t		n;

		CHECK_EQ_INT(manifest_read_header(m, &h), 0);
		CHECK_EQ_INT(manifest_read_entry(m, &e, &done), 0);
		n = manifest_peek_groups(m, got, NGROUPS + 1);
		/* what is buffered: all when the chunk holds the whole text, never a part of a line */
		if (chunks[c] >= len)
			CHECK_EQ_INT(n, NGROUPS);
		CHECK(n <= NGROUPS);
		for (size_t i = 0; i < n; i++)
			CHECK(memcmp(got[i], want[i], HASH_LEN) == 0);
		/* max is kept */
		CHECK_EQ_INT(manifest_peek_groups(m, got, 2), n < 2 ? n : 2);
		CHECK_EQ_INT(manifest_peek_groups(m, got, 0), 0);
		manifest_entry_free(&e);
		manifest_header_free(&h);
		manifest_reader_free(m);
		io_reader_free(r);
	}
	free(text);
}

static void
test_groups_read_ref(void)
{
	size_t		len;
	char	   *text = gsample_text(&len);
	io_reader  *r = mem_reader_new(text, len, 100);
	manifest_reader *m = manifest_reader_new(r, WHAT);
	manifest_ref *want = xcalloc(1000, sizeof(manifest_ref));
	manifest_ref ref;
	manifest_header h;
	manifest_entry e;
	bool		done,
				end;
	int			mismatches = 0;

	CHECK_EQ_INT(manifest_read_header(m, &h), 0);
	for (size_t f = 0; f < NGSPECS; f++)
	{
		size_t		nwant = gspecs[f].kind == MF_FILE ? expected_refs(f, want) : 0,
					got = 0;
		uint64_t	blocks = 0;

		CHECK_EQ_INT(manifest_read_entry(m, &e, &done), 0);
		CHECK_EQ_STR(e.path, gspecs[f].path);
		for (;;)
		{
			CHECK_EQ_INT(manifest_read_ref(m, &ref, &end), 0);
			if (end)
				break;
			if (got < nwant)
				mismatches += ref.kind != want[got].kind || ref.count != want[got].count ||
					memcmp(ref.id, want[got].id, HASH_LEN) != 0;
			blocks += ref.count;
			got++;
		}
		CHECK_EQ_INT(got, nwant);
		CHECK(blocks == e.nblocks);
		CHECK_EQ_INT(manifest_read_ref(m, &ref, &end), 0);
		CHECK(end);
		manifest_entry_free(&e);
	}
	CHECK_EQ_INT(mismatches, 0);
	CHECK_EQ_INT(table.calls, 0);
	CHECK_EQ_INT(manifest_read_entry(m, &e, &done), 0);
	CHECK(done);
	CHECK_EQ_INT(manifest_read_ref(m, &ref, &end), ERR_INTERNAL);
	manifest_header_free(&h);
	manifest_reader_free(m);
	io_reader_free(r);
	free(want);
	free(text);
}

/* Read a whole manifest, every block through the table's resolver, in calls of 100 ids. */
static int
read_all(const char *text, size_t len)
{
	io_reader  *r = mem_reader_new(text, len, 4096);
	manifest_reader *m = manifest_reader_new(r, WHAT);
	uint8_t		ids[100][HASH_LEN];
	manifest_header h;
	manifest_entry e;
	bool		done = false;
	size_t		n;
	int			rc;

	manifest_reader_set_group_fn(m, table_resolve, &table);
	rc = manifest_read_header(m, &h);
	manifest_header_free(&h);
	while (rc == 0 && !done)
	{
		rc = manifest_read_entry(m, &e, &done);
		while (rc == 0 && !done && (rc = manifest_read_blocks(m, ids, 100, &n)) == 0 && n > 0)
			;
		manifest_entry_free(&e);
	}
	manifest_reader_free(m);
	io_reader_free(r);
	return rc;
}

#define GID1 "g\t1111111111111111111111111111111111111111111111111111111111111111\t"
#define FILE300 "f\tbase/1\t0600\tpostgres\tpostgres\t0\t2457600\t300\t-\n"

static void
test_groups_reader_rejects(void)
{
	char	   *t;

	/* Accepted: a group of a whole file, groups next to runs and ids, a group of 256. */
	t = seal(HDR FILE2 GID1 "2\n");
	CHECK_EQ_INT(verify(t, strlen(t)), 0);
	free(t);
	t = seal(HDR FILE300 "z\t3\n" GID1 "256\n" ID1 GID1 "39\n" "z\t1\n");
	CHECK_EQ_INT(verify(t, strlen(t)), 0);
	free(t);

	/* NBLOCKS counts the blocks of groups and runs. */
	REJECT_BODY(FILE2 GID1 "1\n" "d\tbase/2\t0700\tpostgres\tpostgres\t0\n", ERR_FORMAT,
				"line 26: \"base/1\" has 1 blocks, expected 2");
	REJECT_BODY(FILE2 GID1 "1\n", ERR_FORMAT, "\"base/1\" has 1 blocks, expected 2");
	REJECT_BODY(FILE2 GID1 "2\n" ID1, ERR_FORMAT, "line 26: expected an entry or the end line");
	REJECT_BODY(FILE2 GID1 "2\n" GID1 "1\n", ERR_FORMAT, "expected an entry or the end line");
	REJECT_BODY(FILE2 GID1 "3\n", ERR_FORMAT,
				"line 25: invalid group count \"3\": \"base/1\" lacks 2 blocks, a group holds 1 to 256");
	REJECT_BODY(FILE2 ID1 GID1 "2\n", ERR_FORMAT, "invalid group count \"2\": \"base/1\" lacks 1 blocks");
	REJECT_BODY(FILE2 GID1 "1\n" "z\t2\n", ERR_FORMAT, "invalid zero run \"2\": \"base/1\" lacks 1 blocks");
	REJECT_BODY(FILE300 GID1 "256\n" GID1 "45\n", ERR_FORMAT, "line 26: invalid group count \"45\"");
	/* COUNT 0 or above 256, or not a number. */
	REJECT_BODY(FILE2 GID1 "0\n" ID1 ID2, ERR_FORMAT, "line 25: invalid group count \"0\"");
	REJECT_BODY(FILE300 GID1 "257\n", ERR_FORMAT, "invalid group count \"257\": \"base/1\" lacks 300 blocks");
	REJECT_BODY(FILE300 GID1 "300\n", ERR_FORMAT, "invalid group count \"300\"");
	REJECT_BODY(FILE2 GID1 "-1\n", ERR_FORMAT, "invalid group count \"-1\"");
	REJECT_BODY(FILE2 GID1 "\n", ERR_FORMAT, "invalid group count \"\"");
	REJECT_BODY(FILE2 GID1 "18446744073709551617\n", ERR_FORMAT, "invalid group count");
	/* Bad list ids and field counts. */
	REJECT_BODY(FILE2 "g\t111111111111111111111111111111111111111111111111111111111111111g\t2\n", ERR_FORMAT,
				"line 25: invalid block list id \"111111111111111111111111111111111111111111111111111111111111111g\"");
	REJECT_BODY(FILE2 "g\t111111111111111111111111111111111111111111111111111111111111111\t2\n", ERR_FORMAT,
				"invalid block list id");
	REJECT_BODY(FILE2 "g\t11111111111111111111111111111111111111111111111111111111111111111\t2\n", ERR_FORMAT,
				"invalid block list id");
	REJECT_BODY(FILE2 "g\t\t2\n", ERR_FORMAT, "invalid block list id \"\"");
	REJECT_BODY(FILE2 "g\t0000000000000000000000000000000000000000000000000000000000000000\t2\n", ERR_FORMAT,
				"line 25: block list id is the zero id");
	REJECT_BODY(FILE2 GID1 "2\textra\n", ERR_FORMAT, "line 25: expected 3 fields, found 4");
	REJECT_BODY(FILE2 "g\t1111111111111111111111111111111111111111111111111111111111111111\n", ERR_FORMAT,
				"expected 3 fields, found 2");
	REJECT_BODY(FILE2 "g\n", ERR_FORMAT, "\"base/1\" has 0 blocks, expected 2");
	REJECT_BODY(FILE2 "G\t1111111111111111111111111111111111111111111111111111111111111111\t2\n", ERR_FORMAT,
				"\"base/1\" has 0 blocks, expected 2");
	/* A g line where no blocks are due is not an entry. */
	REJECT_BODY("d\tbase\t0700\tpostgres\tpostgres\t0\n" GID1 "1\n", ERR_FORMAT,
				"line 25: expected an entry or the end line");
}

static void
test_groups_resolver(void)
{
	char	   *t = seal(HDR FILE2 GID1 "2\n" "d\tbase/2\t0700\tpostgres\tpostgres\t0\n");
	uint8_t		list[HASH_LEN];
	uint8_t		ids[4][HASH_LEN];
	char		hex[HASH_HEX_LEN + 1];
	char	   *body;
	io_reader  *r;
	manifest_reader *m;
	manifest_header h;
	manifest_entry e;
	bool		done;
	size_t		n;

	/* Without a resolver: ERR_FORMAT naming the line, and the reader stops. */
	r = mem_reader_new(t, strlen(t), 100);
	m = manifest_reader_new(r, WHAT);
	CHECK_EQ_INT(manifest_read_header(m, &h), 0);
	CHECK_EQ_INT(manifest_read_entry(m, &e, &done), 0);
	CHECK_EQ_INT(manifest_read_blocks(m, ids, 4, &n), ERR_FORMAT);
	CHECK_EQ_INT(n, 0);
	CHECK_CONTAINS(error_msg(), WHAT ", line 25: block list group "
				   "1111111111111111111111111111111111111111111111111111111111111111 of \"base/1\" cannot be expanded");
	manifest_entry_free(&e);
	CHECK_EQ_INT(manifest_read_entry(m, &e, &done), ERR_INTERNAL);
	manifest_header_free(&h);
	manifest_reader_free(m);
	io_reader_free(r);

	/* The resolver's error comes back as it is, code and message. */
	memset(&table, 0, sizeof(table));
	table.fail = ERR_FILE;
	CHECK_EQ_INT(read_all(t, strlen(t)), ERR_FILE);
	CHECK_EQ_STR(error_msg(), "block list 1111111111111111111111111111111111111111111111111111111111111111 "
				 "is damaged (test)");
	CHECK_EQ_INT(table.calls, 1);
	table.fail = 0;
	CHECK_EQ_INT(read_all(t, strlen(t)), ERR_NOT_FOUND);
	CHECK_CONTAINS(error_msg(), "is not in the repository (test)");

	/*
	 * The resolver gets the line's id (written in upper case here, which is
	 * the same id) and count; its ids come out, a zero id as a zero block.
	 */
	memset(ids, 0, sizeof(ids));
	memset(ids[0], 0x33, HASH_LEN);
	table_add(&table, (const uint8_t (*)[HASH_LEN]) ids, 2, list);
	hash_to_hex(list, hex);
	for (char *c = hex; *c; c++)
		if (*c >= 'a' && *c <= 'f')
			*c -= 'a' - 'A';
	body = xasprintf(HDR FILE2 "g\t%s\t2\n", hex);
	free(t);
	t = seal(body);
	free(body);
	r = mem_reader_new(t, strlen(t), 100);
	m = manifest_reader_new(r, WHAT);
	manifest_reader_set_group_fn(m, table_resolve, &table);
	table.calls = 0;
	CHECK_EQ_INT(manifest_read_header(m, &h), 0);
	CHECK_EQ_INT(manifest_read_entry(m, &e, &done), 0);
	memset(ids, 0xee, sizeof(ids));
	CHECK_EQ_INT(manifest_read_blocks(m, ids, 1, &n), 0);
	CHECK_EQ_INT(n, 1);
	CHECK(ids[0][0] == 0x33 && ids[0][31] == 0x33);
	CHECK_EQ_INT(manifest_read_blocks(m, ids + 1, 3, &n), 0);
	CHECK_EQ_INT(n, 1);
	CHECK(manifest_is_zero_id(ids[1]) && ids[2][0] == 0xee);
	CHECK_EQ_INT(manifest_read_blocks(m, ids, 3, &n), 0);
	CHECK_EQ_INT(n, 0);
	CHECK_EQ_INT(table.calls, 1);
	manifest_entry_free(&e);
	CHECK_EQ_INT(manifest_read_entry(m, &e, &done), 0);
	CHECK(done);
	manifest_header_free(&h);
	manifest_reader_free(m);
	io_reader_free(r);
	free(t);
}

static void
test_groups_one_way_per_file(void)
{
	char	   *t = seal(HDR FILE300 GID1 "256\n" ID1 "z\t43\n" "f\tbase/2\t0600\tpostgres\tpostgres\t0\t16384\t2\t-\n"
						 ID1 ID2);
	io_reader  *r = mem_reader_new(t, strlen(t), 100);
	manifest_reader *m = manifest_reader_new(r, WHAT);
	uint8_t		ids[2][HASH_LEN];
	manifest_ref ref;
	manifest_header h;
	manifest_entry e;
	bool		done,
				end;
	size_t		n;

	CHECK_EQ_INT(manifest_read_header(m, &h), 0);
	CHECK_EQ_INT(manifest_read_entry(m, &e, &done), 0);
	CHECK_EQ_INT(manifest_read_ref(m, &ref, &end), 0);
	CHECK(!end && ref.kind == MREF_GROUP && ref.count == 256 && ref.id[0] == 0x11);
	CHECK_EQ_INT(manifest_read_blocks(m, ids, 2, &n), ERR_INTERNAL);
	CHECK_CONTAINS(error_msg(), "blocks of \"base/1\" in " WHAT " read both as ids and as lines");
	CHECK_EQ_INT(manifest_read_ref(m, &ref, &end), 0);       /* refused calls change nothing */
	CHECK(!end && ref.kind == MREF_BLOCK && ref.count == 1 && ref.id[31] == 0x11);
	manifest_entry_free(&e);
	/* The next file starts afresh; the rest of this one (z 43) is skipped. */
	CHECK_EQ_INT(manifest_read_entry(m, &e, &done), 0);
	CHECK_EQ_STR(e.path, "base/2");
	CHECK_EQ_INT(manifest_read_blocks(m, ids, 1, &n), 0);
	CHECK_EQ_INT(n, 1);
	CHECK_EQ_INT(manifest_read_ref(m, &ref, &end), ERR_INTERNAL);
	CHECK_EQ_INT(manifest_read_blocks(m, ids, 2, &n), 0);
	CHECK(n == 1 && ids[0][0] == 0x22);
	manifest_entry_free(&e);
	CHECK_EQ_INT(manifest_read_entry(m, &e, &done), 0);
	CHECK(done);
	manifest_header_free(&h);
	manifest_reader_free(m);
	io_reader_free(r);
	free(t);
}

static void
test_groups_writer(void)
{
	io_writer  *w = io_mem_writer_new();
	manifest_writer *m = manifest_writer_new(w);
	manifest_header h;
	manifest_entry e;
	manifest_ref ref = {MREF_GROUP, {0}, 2};
	uint8_t		id2[1][HASH_LEN] = {{2}};
	const uint8_t *data;
	char	   *text;
	size_t		len;

	memset(ref.id, 0xab, HASH_LEN);
	sample_header(&h);
	CHECK_EQ_INT(manifest_write_ref(m, &ref), ERR_INTERNAL);   /* before the header */
	CHECK_EQ_INT(manifest_write_header(m, &h), 0);
	e = (manifest_entry) {MF_FILE, xstrdup("base/1"), 0600, xstrdup("postgres"), xstrdup("postgres"), 0,
		300 * 8192, 300, NULL, 0, NULL};
	CHECK_EQ_INT(manifest_write_ref(m, &ref), ERR_INTERNAL);   /* no file yet */
	CHECK_CONTAINS(error_msg(), "lacks 0");
	CHECK_EQ_INT(manifest_write_entry(m, &e), 0);
	/* Refusals change nothing. */
	ref.count = 0;
	CHECK_EQ_INT(manifest_write_ref(m, &ref), ERR_INTERNAL);
	CHECK_CONTAINS(error_msg(), "a block list group must count 1 to 256 blocks");
	ref.count = 257;
	CHECK_EQ_INT(manifest_write_ref(m, &ref), ERR_INTERNAL);
	CHECK_CONTAINS(error_msg(), "invalid block line for manifest entry \"base/1\"");
	ref.count = 256;
	memset(ref.id, 0, HASH_LEN);
	CHECK_EQ_INT(manifest_write_ref(m, &ref), ERR_INTERNAL);
	CHECK_CONTAINS(error_msg(), "zero id");
	memset(ref.id, 0xab, HASH_LEN);
	ref.kind = MREF_BLOCK;
	CHECK_EQ_INT(manifest_write_ref(m, &ref), ERR_INTERNAL);
	CHECK_CONTAINS(error_msg(), "must count 1 block");
	ref.kind = MREF_ZERO;
	ref.count = 0;
	CHECK_EQ_INT(manifest_write_ref(m, &ref), ERR_INTERNAL);
	ref.count = 301;
	CHECK_EQ_INT(manifest_write_ref(m, &ref), ERR_INTERNAL);
	CHECK_CONTAINS(error_msg(), "301 blocks written for manifest entry \"base/1\", which lacks 300");
	ref.kind = (manifest_ref_kind) 99;
	ref.count = 1;
	CHECK_EQ_INT(manifest_write_ref(m, &ref), ERR_INTERNAL);
	CHECK_CONTAINS(error_msg(), "unknown");

	/* 2 zero blocks, a zero id ref, a zero run of 3: one run; then a group, ids, a group. */
	ref = (manifest_ref) {MREF_ZERO, {0}, 2};
	CHECK_EQ_INT(manifest_write_ref(m, &ref), 0);
	ref = (manifest_ref) {MREF_BLOCK, {0}, 1};
	CHECK_EQ_INT(manifest_write_ref(m, &ref), 0);
	ref = (manifest_ref) {MREF_ZERO, {0}, 3};
	CHECK_EQ_INT(manifest_write_ref(m, &ref), 0);
	ref.kind = MREF_GROUP;
	ref.count = 256;
	memset(ref.id, 0xab, HASH_LEN);
	CHECK_EQ_INT(manifest_write_ref(m, &ref), 0);
	CHECK_EQ_INT(manifest_write_blocks(m, (const uint8_t (*)[HASH_LEN]) id2, 1), 0);
	ref.count = 38;
	CHECK_EQ_INT(manifest_write_ref(m, &ref), ERR_INTERNAL);   /* 1 block too many */
	CHECK_EQ_INT(manifest_write_end(m), ERR_INTERNAL);
	CHECK_CONTAINS(error_msg(), "lacks 37 blocks");
	ref.count = 37;
	CHECK_EQ_INT(manifest_write_ref(m, &ref), 0);
	CHECK_EQ_INT(manifest_write_ref(m, &ref), ERR_INTERNAL);   /* the file is complete */
	CHECK_EQ_INT(manifest_write_end(m), 0);
	manifest_writer_free(m);
	manifest_entry_free(&e);
	manifest_header_free(&h);

	data = io_mem_writer_data(w, &len);
	text = xasprintf("%.*s", (int) len, (const char *) data);
	CHECK_CONTAINS(text, "\t300\t-\nz\t6\n"
				   "g\tabababababababababababababababababababababababababababababababab\t256\n"
				   "0200000000000000000000000000000000000000000000000000000000000000\n"
				   "g\tabababababababababababababababababababababababababababababababab\t37\nend\t");
	CHECK_EQ_INT(verify(data, len), 0);
	free(text);
	io_free(w);
}

/* Cut text at 200 places spread over it and after every line: each cut is refused. */
static void
truncate_loop(const char *text, size_t len)
{
	int			failures = 0;

	for (size_t i = 0; i < len; i++)
	{
		int			rc;

		if (i % (len / 200 + 1) != 0 && text[i - 1] != '\n')
			continue;
		rc = verify(text, i);
		if (rc != ERR_CORRUPT && rc != ERR_FORMAT)
		{
			if (failures++ < 5)
				fprintf(stderr, "  cut at %zu of %zu: code %d, \"%s\"\n", i, len, rc, error_msg());
		}
	}
	CHECK_EQ_INT(failures, 0);
}

static void
test_truncated(void)
{
	size_t		len;
	char	   *text = sample_text(false, &len);

	truncate_loop(text, len);
	free(text);
	text = gsample_text(&len);
	truncate_loop(text, len);
	free(text);
}

/*
 * A changed manifest is refused by manifest_verify_stream and, when groups
 * resolves them through the table, by a full read of every block: there a
 * changed list id or count may first meet the resolver (ERR_NOT_FOUND,
 * ERR_CORRUPT), as a restore would.
 */
static int
changed(const char *text, size_t len, bool groups)
{
	int			rc = verify(text, len);

	if (rc != ERR_CORRUPT && rc != ERR_FORMAT)
		return rc;
	if (groups)
	{
		rc = read_all(text, len);
		if (rc != ERR_CORRUPT && rc != ERR_FORMAT && rc != ERR_NOT_FOUND)
			return rc;
	}
	return ERR_CORRUPT;
}

static void
flip_loop(char *text, size_t len, bool groups)
{
	int			failures = 0;
	uint64_t	rng = 0x9E3779B97F4A7C15;

	/* Every byte with its low bit flipped. */
	for (size_t i = 0; i < len; i++)
	{
		int			rc;

		text[i] ^= 1;
		rc = changed(text, len, groups);
		text[i] ^= 1;
		if (rc != ERR_CORRUPT && failures++ < 5)
			fprintf(stderr, "  bit flip at %zu: code %d\n", i, rc);
	}
	/* 1000 random bytes at random places (xorshift: reproducible). */
	for (int i = 0; i < 1000; i++)
	{
		size_t		at;
		char		old;
		int			rc;

		rng ^= rng << 13;
		rng ^= rng >> 7;
		rng ^= rng << 17;
		at = (size_t) (rng % len);
		old = text[at];
		text[at] = (char) (rng >> 32);
		if (text[at] == old)
			text[at] ^= (char) 0x80;
		rc = changed(text, len, groups);
		text[at] = old;
		if (rc != ERR_CORRUPT && failures++ < 5)
			fprintf(stderr, "  byte %zu set to 0x%02x: code %d\n", at, (unsigned char) (rng >> 32), rc);
	}
	CHECK_EQ_INT(failures, 0);
	CHECK_EQ_INT(verify(text, len), 0);
	if (groups)
		CHECK_EQ_INT(read_all(text, len), 0);
}

static void
test_flipped_bytes(void)
{
	size_t		len;
	char	   *text = sample_text(false, &len);

	flip_loop(text, len, false);
	free(text);
	text = gsample_text(&len);
	flip_loop(text, len, true);
	free(text);
}

/* ---- bounded memory: a 1 GiB file's list generated on the fly, never held by anyone ---- */

typedef struct gen_reader
{
	io_reader	base;
	hash_ctx   *hash;
	strbuf		pending;        /* generated but not yet read */
	size_t		pos;
	uint64_t	next;           /* next block to generate */
	bool		groups;         /* g lines of MANIFEST_GROUP_BLOCKS ids instead of id lines */
	bool		ended;
} gen_reader;

static void
gen_id(uint64_t i, uint8_t id[HASH_LEN])
{
	hash_buf(&i, sizeof(i), id);
}

/* The id of the block-list object of group k of the generated file. */
static void
gen_list_id(uint64_t k, uint8_t id[HASH_LEN])
{
	uint64_t	key[2] = {k, 0x6c697374};

	hash_buf(key, sizeof(key), id);
}

/* Resolver of the generated groups; *arg counts the groups resolved, which come in order. */
static int
gen_resolve(void *arg, const uint8_t list_id[HASH_LEN], uint64_t count, uint8_t (*ids)[HASH_LEN])
{
	uint64_t   *k = arg;
	uint8_t		want[HASH_LEN];

	gen_list_id(*k, want);
	if (memcmp(want, list_id, HASH_LEN) != 0 || count != MANIFEST_GROUP_BLOCKS)
		return error_set(ERR_CORRUPT, "unexpected group (test)");
	for (uint64_t i = 0; i < count; i++)
		gen_id(*k * MANIFEST_GROUP_BLOCKS + i, ids[i]);
	(*k)++;
	return 0;
}

static int
gen_read(io_reader *r, void *buf, size_t n, size_t *got)
{
	gen_reader *g = (gen_reader *) r;

	if (g->pos == g->pending.len)
	{
		uint8_t		id[HASH_LEN];
		char		hex[HASH_HEX_LEN + 1];

		sb_reset(&g->pending);
		g->pos = 0;
		for (int k = 0; k < 64 && g->next < BIG_BLOCKS; k++)
		{
			if (g->groups)
			{
				gen_list_id(g->next / MANIFEST_GROUP_BLOCKS, id);
				hash_to_hex(id, hex);
				sb_appendf(&g->pending, "g\t%s\t%d\n", hex, MANIFEST_GROUP_BLOCKS);
				g->next += MANIFEST_GROUP_BLOCKS;
				continue;
			}
			gen_id(g->next++, id);
			hash_to_hex(id, hex);
			sb_appendf(&g->pending, "%s\n", hex);
		}
		hash_update(g->hash, g->pending.buf, g->pending.len);
		if (g->pending.len == 0 && !g->ended)
		{
			hash_final(g->hash, id);
			hash_to_hex(id, hex);
			sb_appendf(&g->pending, "end\t%s\n", hex);
			g->ended = true;
		}
	}
	*got = g->pending.len - g->pos < n ? g->pending.len - g->pos : n;
	memcpy(buf, g->pending.buf + g->pos, *got);
	g->pos += *got;
	return 0;
}

static void
gen_free(io_reader *r)
{
	gen_reader *g = (gen_reader *) r;

	hash_free(g->hash);
	sb_free(&g->pending);
	free(g);
}

static io_reader *
gen_reader_new(bool groups)
{
	gen_reader *g = xcalloc(1, sizeof(*g));
	static const char prefix[] = HDR "f\tbase/1/big\t0600\tpostgres\tpostgres\t0\t1073741824\t131072\t-\n";

	g->base.read = gen_read;
	g->base.free = gen_free;
	g->hash = hash_new();
	g->groups = groups;
	sb_append(&g->pending, prefix);
	hash_update(g->hash, prefix, strlen(prefix));
	return &g->base;
}

/* Read the generated 1 GiB file's ids, as id lines or as groups, in calls of 1000 (which split groups). */
static void
bounded_memory(bool groups)
{
	io_reader  *r = gen_reader_new(groups);
	manifest_reader *m = manifest_reader_new(r, WHAT);
	uint64_t	resolved = 0;
	uint8_t		ids[1000][HASH_LEN];
	uint8_t		want[HASH_LEN];
	manifest_header h;
	manifest_entry e;
	bool		done;
	uint64_t	total = 0;
	size_t		n,
				base,
				peak = 0;
	int			mismatches = 0;

	manifest_reader_set_group_fn(m, gen_resolve, &resolved);
	CHECK_EQ_INT(manifest_read_header(m, &h), 0);
	CHECK_EQ_INT(manifest_read_entry(m, &e, &done), 0);
	CHECK(e.nblocks == BIG_BLOCKS);
	/* Heap in use stays flat while 4 MiB of ids pass (ASan's allocator reports nothing here). */
	base = mallinfo2().uordblks;
	do
	{
		size_t		used;

		CHECK_EQ_INT(manifest_read_blocks(m, ids, 1000, &n), 0);
		for (size_t i = 0; i < n; i++)
		{
			gen_id(total + i, want);
			mismatches += memcmp(ids[i], want, HASH_LEN) != 0;
		}
		total += n;
		used = mallinfo2().uordblks;
		if (used > base && used - base > peak)
			peak = used - base;
	} while (n > 0);
	CHECK(total == BIG_BLOCKS);
	CHECK_EQ_INT(mismatches, 0);
	CHECK(peak < 64 * 1024);
	CHECK(resolved == (groups ? BIG_BLOCKS / MANIFEST_GROUP_BLOCKS : 0));
	manifest_entry_free(&e);
	CHECK_EQ_INT(manifest_read_entry(m, &e, &done), 0);
	CHECK(done);
	manifest_entry_free(&e);
	manifest_header_free(&h);
	manifest_reader_free(m);
	io_reader_free(r);
}

static void
test_bounded_memory(void)
{
	bounded_memory(false);
	bounded_memory(true);
}

static void
test_reader_sequence(void)
{
	char	   *t = seal(HDR FILE2 ID1 ID2);
	io_reader  *r = mem_reader_new(t, strlen(t), 100);
	manifest_reader *m = manifest_reader_new(r, WHAT);
	uint8_t		ids[4][HASH_LEN];
	manifest_header h,
				h2;
	manifest_entry e;
	bool		done;
	size_t		n;

	CHECK_EQ_INT(manifest_read_entry(m, &e, &done), ERR_INTERNAL);
	CHECK_EQ_INT(manifest_read_blocks(m, ids, 4, &n), ERR_INTERNAL);
	CHECK_EQ_INT(manifest_read_header(m, &h), 0);
	CHECK_EQ_INT(manifest_read_header(m, &h2), ERR_INTERNAL);
	CHECK(h2.label == NULL);
	CHECK(h.prior == NULL && h.tablespace_map == NULL && h.ntablespaces == 0);
	CHECK_EQ_INT(manifest_read_entry(m, &e, &done), 0);
	CHECK_EQ_INT(manifest_read_blocks(m, ids, 4, &n), 0);
	CHECK_EQ_INT(n, 2);
	CHECK(ids[0][0] == 0x11 && ids[1][31] == 0x22);
	CHECK_EQ_INT(manifest_read_blocks(m, ids, 4, &n), 0);
	CHECK_EQ_INT(n, 0);
	manifest_entry_free(&e);
	CHECK_EQ_INT(manifest_read_entry(m, &e, &done), 0);
	CHECK(done);
	manifest_header_free(&h);
	manifest_reader_free(m);
	io_reader_free(r);
	free(t);

	/* After an error the reader refuses to go on. */
	t = seal(HDR FILE2 ID1 "z\t5\n");
	r = mem_reader_new(t, strlen(t), 100);
	m = manifest_reader_new(r, WHAT);
	CHECK_EQ_INT(manifest_read_header(m, &h), 0);
	CHECK_EQ_INT(manifest_read_entry(m, &e, &done), 0);
	CHECK_EQ_INT(manifest_read_blocks(m, ids, 4, &n), ERR_FORMAT);
	manifest_entry_free(&e);
	CHECK_EQ_INT(manifest_read_entry(m, &e, &done), ERR_INTERNAL);
	CHECK(e.path == NULL);
	manifest_header_free(&h);
	manifest_reader_free(m);
	io_reader_free(r);
	free(t);
}

int
main(void)
{
	RUN(test_path_order);
	RUN(test_check_path);
	RUN(test_bounded_memory);
	RUN(test_roundtrip);
	RUN(test_roundtrip_big);
	RUN(test_file_stream);
	RUN(test_writer_refusals);
	RUN(test_writer_long_line);
	RUN(test_reader_accepts);
	RUN(test_reader_rejects_header);
	RUN(test_reader_rejects_entries);
	RUN(test_reader_rejects_stream);
	RUN(test_reader_sequence);
	RUN(test_groups_roundtrip);
	RUN(test_groups_peek);
	RUN(test_groups_read_ref);
	RUN(test_groups_reader_rejects);
	RUN(test_groups_resolver);
	RUN(test_groups_one_way_per_file);
	RUN(test_groups_writer);
	RUN(test_truncated);
	RUN(test_flipped_bytes);
	return harness_done();
}
