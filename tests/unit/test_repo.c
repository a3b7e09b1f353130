/*
 * test_repo.c: the local repository driver through the repo.h interface:
 * stanza identity, WAL commit rules (same content is a no-op, other content
 * is refused and the stored copy kept), WAL delete (from inside a listing,
 * an emptied segment directory goes, history files' directory stays), backup
 * commit points, name checks; block-list objects (blocklist.h): full and
 * delta lists written against a prior list, resolved back, and malformed
 * deltas refused.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "fileio.h"
#include "harness.h"
#include "log.h"
#include "mem.h"
#include "../repo/blocklist.h"
#include "../repo/repo.h"

static char tmpdir[] = "/tmp/pgkeep-test-repo.XXXXXX";

static stanza_info
sample_stanza(uint64_t sysid)
{
	stanza_info st = {0};

	st.system_id = sysid;
	st.pg_version = 150004;
	st.control_version = 1300;
	st.catalog_version = 202209061;
	st.wal_segment_size = 16 * 1024 * 1024;
	st.block_size = 8192;
	st.created = 1764201600;
	return st;
}

static repo *
open_repo(const char *stanza)
{
	repo	   *r = NULL;

	CHECK_EQ_INT(repo_open_local(tmpdir, stanza, &r), 0);
	return r;
}

static void
test_stanza(void)
{
	repo	   *r = open_repo("main");
	stanza_info st = sample_stanza(42), got;

	CHECK_EQ_INT(repo_stanza_get(r, &got), ERR_STANZA);
	CHECK_CONTAINS(error_msg(), "does not exist");
	CHECK_EQ_INT(repo_stanza_create(r, &st), 0);
	CHECK_EQ_INT(repo_stanza_create(r, &st), 0);    /* again: harmless */
	CHECK_EQ_INT(repo_stanza_get(r, &got), 0);
	CHECK_EQ_INT(got.system_id, 42);
	CHECK_EQ_INT(got.wal_segment_size, 16 * 1024 * 1024);
	stanza_info other = sample_stanza(43);

	CHECK_EQ_INT(repo_stanza_create(r, &other), ERR_STANZA);
	CHECK_CONTAINS(error_msg(), "system identifier 42");
	CHECK_EQ_INT(repo_stanza_get(r, &got), 0);
	CHECK_EQ_INT(got.system_id, 42);    /* unchanged */
	repo_close(r);

	r = NULL;
	CHECK_EQ_INT(repo_open_local(tmpdir, "../evil", &r), ERR_OPTION);
	CHECK(r == NULL);
	CHECK_EQ_INT(repo_open_local("relative/path", "main", &r), ERR_OPTION);
}

/* Push plain bytes as WAL file name (stored uncompressed for the test). */
static int
push(repo *r, const char *name, const char *content, bool *existed)
{
	repo_put   *put;
	io_writer  *w;
	uint8_t		h[HASH_LEN];
	int			rc;

	if ((rc = repo_wal_put_begin(r, name, COMPRESS_NONE, &put, &w)) != 0)
		return rc;
	if ((rc = io_write(w, content, strlen(content))) != 0)
	{
		repo_wal_put_abort(put);
		return rc;
	}
	hash_buf(content, strlen(content), h);
	return repo_wal_put_commit(put, h, existed);
}

static char *
get(repo *r, const char *name)
{
	wal_object	obj;
	io_reader  *rd;
	io_writer  *mem = io_mem_writer_new();
	size_t		len;
	char	   *out = NULL;

	if (repo_wal_find(r, name, &obj) == 0 && repo_wal_open(r, &obj, &rd) == 0)
	{
		if (io_copy(rd, mem) == 0)
		{
			const uint8_t *d = io_mem_writer_data(mem, &len);

			out = xstrndup((const char *) d, len);
		}
		io_reader_free(rd);
	}
	io_free(mem);
	return out;
}

static int
count_wal(const wal_object *obj, void *arg)
{
	(void) obj;
	(*(int *) arg)++;
	return 0;
}

static void
test_wal(void)
{
	repo	   *r = open_repo("main");
	bool		existed = true;
	char	   *s;
	int			n = 0;

	CHECK_EQ_INT(push(r, "000000010000000000000001", "first", &existed), 0);
	CHECK(!existed);
	CHECK_EQ_INT(push(r, "000000010000000000000001", "first", &existed), 0);
	CHECK(existed);
	CHECK_EQ_INT(push(r, "000000010000000000000001", "other", &existed), ERR_CONFLICT);
	CHECK_CONTAINS(error_msg(), "000000010000000000000001");
	s = get(r, "000000010000000000000001");
	CHECK_EQ_STR(s, "first");
	free(s);
	CHECK_EQ_INT(push(r, "00000002.history", "1\t0/3000000\tno recovery target\n", &existed), 0);
	CHECK_EQ_INT(push(r, "000000010000000000000002.partial", "partial", &existed), 0);

	wal_object	obj;

	CHECK_EQ_INT(repo_wal_find(r, "000000010000000000000002", &obj), ERR_NOT_FOUND);
	CHECK_EQ_INT(repo_wal_find(r, "000000010000000000000002.partial", &obj), 0);
	CHECK_EQ_INT(repo_wal_find(r, "00000002.history", &obj), 0);
	CHECK_EQ_INT(repo_wal_find(r, "../../etc/passwd", &obj), ERR_FORMAT);
	CHECK_EQ_INT(push(r, "pg_wal/../x", "x", &existed), ERR_FORMAT);
	CHECK_EQ_INT(repo_wal_list(r, count_wal, &n), 0);
	CHECK_EQ_INT(n, 3);

	/* An aborted put leaves nothing behind. */
	repo_put   *put;
	io_writer  *w;

	CHECK_EQ_INT(repo_wal_put_begin(r, "000000010000000000000003", COMPRESS_NONE, &put, &w), 0);
	CHECK_EQ_INT(io_write(w, "abc", 3), 0);
	repo_wal_put_abort(put);
	CHECK_EQ_INT(repo_wal_find(r, "000000010000000000000003", &obj), ERR_NOT_FOUND);
	char	   *dir = xasprintf("%s/main/wal/0000000100000000", tmpdir);
	DIR		   *d = opendir(dir);
	struct dirent *de;
	int			files = 0;

	while (d && (de = readdir(d)) != NULL)
		files += de->d_name[0] != '.';
	if (d)
		closedir(d);
	CHECK_EQ_INT(files, 2);     /* segment 1 and the partial of 2; no temp file */
	free(dir);
	repo_close(r);
}

typedef struct prefix_delete
{
	repo	   *r;
	const char *prefix;
} prefix_delete;

/* Delete every WAL object the listing gives whose name starts with the prefix. */
static int
delete_prefix(const wal_object *obj, void *arg)
{
	prefix_delete *d = arg;

	if (strncmp(obj->name, d->prefix, strlen(d->prefix)) != 0)
		return 0;
	return repo_wal_delete(d->r, obj);
}

static void
test_wal_delete(void)
{
	repo	   *r = open_repo("del");
	stanza_info st = sample_stanza(42);
	bool		existed;
	wal_object	obj;
	int			n = 0;
	char	   *dir1 = xasprintf("%s/del/wal/0000000100000001", tmpdir);
	char	   *hist = xasprintf("%s/del/wal/history", tmpdir);

	CHECK_EQ_INT(repo_stanza_create(r, &st), 0);
	CHECK_EQ_INT(push(r, "0000000100000000000000FF", "a", &existed), 0);
	CHECK_EQ_INT(push(r, "000000010000000100000000", "b", &existed), 0);
	CHECK_EQ_INT(push(r, "000000010000000100000001", "c", &existed), 0);
	CHECK_EQ_INT(push(r, "00000002.history", "h", &existed), 0);

	prefix_delete del = {r, "0000000100000001"};

	CHECK_EQ_INT(repo_wal_list(r, delete_prefix, &del), 0);
	CHECK_EQ_INT(repo_wal_find(r, "000000010000000100000000", &obj), ERR_NOT_FOUND);
	CHECK_EQ_INT(repo_wal_find(r, "000000010000000100000001", &obj), ERR_NOT_FOUND);
	CHECK(!fio_exists(dir1));  /* emptied: removed */
	CHECK_EQ_INT(repo_wal_find(r, "0000000100000000000000FF", &obj), 0);
	CHECK_EQ_INT(repo_wal_delete(r, &obj), 0);
	CHECK_EQ_INT(repo_wal_delete(r, &obj), 0);  /* already gone: fine */
	CHECK_EQ_INT(repo_wal_find(r, "00000002.history", &obj), 0);
	CHECK_EQ_INT(repo_wal_delete(r, &obj), 0);
	CHECK(fio_exists(hist));
	CHECK_EQ_INT(repo_wal_list(r, count_wal, &n), 0);
	CHECK_EQ_INT(n, 0);
	snprintf(obj.name, sizeof(obj.name), "../../stanza.info");
	CHECK_EQ_INT(repo_wal_delete(r, &obj), ERR_FORMAT);
	free(dir1);
	free(hist);
	repo_close(r);
}

static int fsync_calls_left;

/* fsync that fails with EIO once fsync_calls_left calls have passed. */
static int
failing_fsync(int fd)
{
	if (fsync_calls_left-- > 0)
		return fsync(fd);
	errno = EIO;
	return -1;
}

/*
 * Invariant 1: a WAL push reports success only once the file is durable.
 * A failing fsync at any step of the commit makes the push fail, and the
 * repository then does not have the file (never a partial one, nor a whole
 * one whose directory entry may not be durable), so PostgreSQL's retry
 * writes it anew and succeeds.
 */
static void
test_wal_fsync_failure(void)
{
	repo	   *r = open_repo("main");
	bool		existed;
	int			failures = 0;

	for (int step = 0; step < 8; step++)
	{
		char		name[32];
		char	   *s;
		int			rc;

		snprintf(name, sizeof(name), "0000000100000000000000%02X", 0x40 + step);
		fsync_calls_left = step;
		fio_sys.fsync = failing_fsync;
		rc = push(r, name, "durable content", &existed);
		fio_sys_reset();
		if (rc != 0)
		{
			CHECK_EQ_INT(rc, ERR_FILE);
			CHECK_CONTAINS(error_msg(), "Input/output error");
		}
		s = get(r, name);
		if (rc != 0)
		{
			failures++;
			/*
			 * Not acknowledged: the file is absent (when only its directory's
			 * fsync failed, the new name is taken away again), so that the
			 * retry writes it anew.
			 */
			CHECK(s == NULL);
			/* The retry succeeds and the content is intact. */
			CHECK_EQ_INT(push(r, name, "durable content", &existed), 0);
			CHECK(!existed);
			free(s);
			s = get(r, name);
		}
		CHECK_EQ_STR(s, "durable content");
		free(s);
		/* A push of what is stored already is acknowledged only once the stored file is fsynced again. */
		fsync_calls_left = 0;
		fio_sys.fsync = failing_fsync;
		rc = push(r, name, "durable content", &existed);
		fio_sys_reset();
		CHECK_EQ_INT(rc, ERR_FILE);
		CHECK(!existed);
		CHECK_EQ_INT(push(r, name, "durable content", &existed), 0);
		CHECK(existed);
	}
	/* The first steps fail on the file's own fsync: the injection did reach the commit. */
	CHECK(failures >= 2);
	repo_close(r);
}

static int
put_backup(repo *r, const char *label, const char *content)
{
	repo_put   *put;
	io_writer  *w;
	int			rc;

	if ((rc = repo_backup_put_begin(r, label, &put, &w)) != 0)
		return rc;
	if ((rc = io_write(w, content, strlen(content))) != 0)
	{
		repo_backup_put_abort(put);
		return rc;
	}
	return repo_backup_put_commit(put);
}

static void
test_backups(void)
{
	repo	   *r = open_repo("main");
	char	  **labels;
	int			n;
	repo_put   *put;
	io_writer  *w;

	CHECK_EQ_INT(put_backup(r, "20261127-014923F", "m1"), 0);
	CHECK_EQ_INT(put_backup(r, "20261127-014923F", "again"), ERR_CONFLICT);
	CHECK_EQ_INT(put_backup(r, "../20261127-014923F", "x"), ERR_FORMAT);
	CHECK_EQ_INT(put_backup(r, "20261127-014923F_20261128-014923I", "m2"), 0);
	/* Not committed: not a backup. */
	CHECK_EQ_INT(repo_backup_put_begin(r, "20261129-014923F", &put, &w), 0);
	CHECK_EQ_INT(io_write(w, "partial", 7), 0);
	CHECK_EQ_INT(repo_backup_list(r, &labels, &n), 0);
	CHECK_EQ_INT(n, 2);
	CHECK_EQ_STR(labels[0], "20261127-014923F");
	repo_names_free(labels, n);
	repo_backup_put_abort(put);

	io_reader  *rd;

	CHECK_EQ_INT(repo_backup_open(r, "20261130-000000F", &rd), ERR_NOT_FOUND);
	CHECK_EQ_INT(repo_backup_delete(r, "20261127-014923F"), 0);
	CHECK_EQ_INT(repo_backup_list(r, &labels, &n), 0);
	CHECK_EQ_INT(n, 1);
	repo_names_free(labels, n);
	repo_close(r);
}

static void
test_blocks(void)
{
	repo	   *r = open_repo("main");
	uint8_t		data[8192], id[HASH_LEN], buf[8192];
	bool		exists;
	uint32_t	len;
	block_data	bd;

	memset(data, 7, sizeof(data));
	hash_buf(data, sizeof(data), id);
	CHECK_EQ_INT(repo_block_exists(r, id, &exists, &len), 0);
	CHECK(!exists);
	CHECK_EQ_INT(repo_block_put(r, id, COMPRESS_NONE, data, sizeof(data), sizeof(data)), 0);
	CHECK_EQ_INT(repo_block_flush(r), 0);
	repo_close(r);
	r = open_repo("main");
	CHECK_EQ_INT(repo_block_exists(r, id, &exists, &len), 0);
	CHECK(exists);
	CHECK_EQ_INT(len, 8192);
	CHECK_EQ_INT(repo_block_read(r, id, buf, sizeof(buf), &bd), 0);
	CHECK_EQ_INT(bd.raw_len, 8192);
	CHECK(memcmp(buf, data, sizeof(data)) == 0);
	repo_close(r);
}

/*
 * A question asked in two halves (repo_block_exists_ask, _answer) gets the
 * answer repo_block_exists_many gives; an answer without a question is an
 * error; a question left unanswered is dropped by the next one.
 */
static void
test_blocks_ask(void)
{
	repo	   *r = open_repo("main");
	uint8_t		data[4096], ids[3][HASH_LEN];
	bool		exists[3] = {true, true, true};
	uint32_t	lens[3] = {0};

	for (int i = 0; i < 3; i++)
	{
		memset(data, 'a' + i, sizeof(data));
		hash_buf(data, sizeof(data), ids[i]);
		if (i == 1)
			CHECK_EQ_INT(repo_block_put(r, ids[i], COMPRESS_NONE, data, sizeof(data), sizeof(data)), 0);
	}
	CHECK_EQ_INT(repo_block_exists_answer(r, exists, lens), ERR_INTERNAL);
	CHECK_EQ_INT(repo_block_exists_ask(r, (const uint8_t (*)[HASH_LEN]) ids, 0), ERR_INTERNAL);
	CHECK_EQ_INT(repo_block_exists_ask(r, (const uint8_t (*)[HASH_LEN]) ids, REPO_EXISTS_MAX + 1), ERR_INTERNAL);
	error_clear();
	/* unanswered, then asked again about the last two */
	CHECK_EQ_INT(repo_block_exists_ask(r, (const uint8_t (*)[HASH_LEN]) ids, 3), 0);
	CHECK_EQ_INT(repo_block_exists_ask(r, (const uint8_t (*)[HASH_LEN]) ids + 1, 2), 0);
	CHECK_EQ_INT(repo_block_exists_answer(r, exists, lens), 0);
	CHECK(exists[0]);           /* the put block */
	CHECK_EQ_INT(lens[0], 4096);
	CHECK(!exists[1]);
	CHECK(exists[2]);           /* untouched: the answer was about two ids */
	CHECK_EQ_INT(repo_block_exists_answer(r, exists, lens), ERR_INTERNAL);   /* answered once */
	error_clear();
	repo_close(r);
}

/* repo_block_check_many answers each id on its own: a stored one with its size, a missing one with a message. */
static void
test_blocks_check_many(void)
{
	repo	   *r = open_repo("main");
	uint8_t		data[4096], ids[2][HASH_LEN];
	int			rcs[2] = {-1, -1};
	uint32_t	lens[2] = {0};
	char	   *msgs[2] = {NULL, NULL};

	memset(data, 'x', sizeof(data));
	hash_buf(data, sizeof(data), ids[0]);
	memset(data, 'y', sizeof(data));
	hash_buf(data, sizeof(data), ids[1]);
	memset(data, 'x', sizeof(data));
	CHECK_EQ_INT(repo_block_put(r, ids[0], COMPRESS_NONE, data, sizeof(data), sizeof(data)), 0);
	CHECK_EQ_INT(repo_block_flush(r), 0);
	CHECK_EQ_INT(repo_block_check_many(r, (const uint8_t (*)[HASH_LEN]) ids, 2, rcs, lens, msgs), 0);
	CHECK_EQ_INT(rcs[0], 0);
	CHECK_EQ_INT(lens[0], 4096);
	CHECK(msgs[0] == NULL);
	CHECK_EQ_INT(rcs[1], ERR_NOT_FOUND);
	CHECK(msgs[1] != NULL && msgs[1][0] != '\0');
	free(msgs[1]);
	CHECK_EQ_INT(repo_block_check_many(r, (const uint8_t (*)[HASH_LEN]) ids, 0, rcs, lens, msgs), ERR_INTERNAL);
	error_clear();
	repo_close(r);
}

/* Page-like block i: repeated text with numbers. */
static void
dict_page(uint8_t *p, int i)
{
	char		line[33];

	for (int k = 0; k < 8192; k += 32)
	{
		snprintf(line, sizeof(line), "row %08d balance %010d|", i * 256 + k / 32, (i * 7919 + k) % 100000);
		memcpy(p + k, line, 32);
	}
}

/* A dictionary made from 64 page-like blocks; *len gets its size (caller frees). */
static uint8_t *
dict_make(size_t *len, int seed)
{
	uint8_t    *samples = xmalloc(64 * 8192), *dict = xmalloc(65536);
	size_t		sizes[64];

	for (int i = 0; i < 64; i++)
	{
		dict_page(samples + (size_t) i * 8192, seed * 1000 + i);
		sizes[i] = 8192;
	}
	CHECK_EQ_INT(block_dict_build(samples, 2 * 8192, samples, sizes, 64, 3, dict, 65536, len), 0);
	free(samples);
	return dict;
}

/*
 * The stanza's dictionary: none at first, set once (a second put keeps the
 * first), blocks compressed with it read back through a codec that has never
 * seen it, and a damaged or missing dictionary file is corruption.
 */
static void
test_dict(void)
{
	repo	   *r = open_repo("main");
	size_t		len1 = 0, len2 = 0, got_len = 0;
	uint8_t    *d1 = dict_make(&len1, 1), *d2 = dict_make(&len2, 2);
	void	   *got = NULL;
	const block_dict *bd = NULL;
	block_codec *c = block_codec_new(COMPRESS_ZST, 3);
	uint8_t		page[8192], id[HASH_LEN], back[8192], z[9000];
	size_t		zlen = 0;
	char	   *path = xasprintf("%s/main/store/dict", tmpdir);

	CHECK_EQ_INT(repo_dict_get(r, &got, &got_len), ERR_NOT_FOUND);
	CHECK_EQ_INT(repo_block_dict(r, 3, &bd), 0);
	CHECK(bd == NULL);
	CHECK_EQ_INT(repo_dict_put(r, d1, 0), ERR_FORMAT);
	CHECK_EQ_INT(repo_dict_put(r, d1, len1), 0);
	CHECK_EQ_INT(repo_dict_put(r, d2, len2), 0);
	CHECK_EQ_INT(repo_dict_get(r, &got, &got_len), 0);
	CHECK(got_len == len1 && got != NULL && memcmp(got, d1, len1) == 0);
	free(got);
	repo_close(r);

	/* A backup's worker: compress with the stanza's dictionary, store. */
	r = open_repo("main");
	CHECK_EQ_INT(repo_block_dict(r, 3, &bd), 0);
	CHECK(bd != NULL);
	block_codec_use_dict(c, bd);
	dict_page(page, 5555);
	hash_buf(page, sizeof(page), id);
	CHECK_EQ_INT(block_compress(c, page, sizeof(page), z, sizeof(z), &zlen), 0);
	CHECK(block_frame_dict_id(COMPRESS_ZST, z, zlen) == block_dict_id(bd));
	CHECK_EQ_INT(repo_block_put(r, id, COMPRESS_ZST, z, (uint32_t) zlen, sizeof(page)), 0);
	CHECK_EQ_INT(repo_block_flush(r), 0);
	repo_close(r);
	block_codec_free(c);

	/* A restore's worker: a fresh codec gets the dictionary from the repository. */
	r = open_repo("main");
	c = block_codec_new(COMPRESS_ZST, 3);
	CHECK_EQ_INT(repo_block_fetch(r, c, id, z, sizeof(z), back, sizeof(back)), 0);
	CHECK(memcmp(back, page, sizeof(page)) == 0);
	repo_close(r);
	block_codec_free(c);

	/* One flipped byte in the dictionary file. */
	{
		char	   *text = NULL;
		size_t		n = 0;

		CHECK_EQ_INT(fio_read_file(path, 1 << 20, &text, &n), 0);
		text[n / 2] ^= 1;
		CHECK_EQ_INT(fio_write_file_atomic(path, text, n, 0640), 0);
		free(text);
	}
	r = open_repo("main");
	c = block_codec_new(COMPRESS_ZST, 3);
	CHECK_EQ_INT(repo_dict_get(r, &got, &got_len), ERR_CORRUPT);
	CHECK_CONTAINS(error_msg(), "checksum does not match");
	CHECK_EQ_INT(repo_block_fetch(r, c, id, z, sizeof(z), back, sizeof(back)), ERR_CORRUPT);
	CHECK_CONTAINS(error_msg(), "compression dictionary");
	CHECK_EQ_INT(repo_block_fetch(r, c, id, z, sizeof(z), back, sizeof(back)), ERR_CORRUPT);
	CHECK_CONTAINS(error_msg(), "reported before");
	repo_close(r);
	block_codec_free(c);

	/* No dictionary file at all: the block cannot be read, and says why. */
	CHECK_EQ_INT(fio_unlink(path), 0);
	r = open_repo("main");
	c = block_codec_new(COMPRESS_ZST, 3);
	CHECK_EQ_INT(repo_block_fetch(r, c, id, z, sizeof(z), back, sizeof(back)), ERR_CORRUPT);
	CHECK_CONTAINS(error_msg(), "has no dictionary");
	repo_close(r);
	block_codec_free(c);
	error_clear();
	free(path);
	free(d1);
	free(d2);
}

/* Store bytes as an object of their own; returns its id. */
static void
put_object(repo *r, const void *data, size_t len, uint8_t id[HASH_LEN])
{
	hash_buf(data, len, id);
	CHECK_EQ_INT(repo_block_put(r, id, COMPRESS_NONE, data, (uint32_t) len, (uint32_t) len), 0);
	CHECK_EQ_INT(repo_block_flush(r), 0);
}

static uint32_t
object_size(repo *r, const uint8_t id[HASH_LEN])
{
	uint8_t		buf[16384];
	block_data	bd = {0};

	CHECK_EQ_INT(repo_block_read(r, id, buf, sizeof(buf), &bd), 0);
	return bd.raw_len;
}

/* A distinct id for (tag, i). */
static void
test_id(char tag, int i, uint8_t id[HASH_LEN])
{
	int			v[2] = {tag, i};

	hash_buf(v, sizeof(v), id);
}

/* One group through the writer; bases NULL or one candidate. */
static void
make_group(blocklist_writer *w, uint8_t (*ids)[HASH_LEN], size_t n, const manifest_ref *cand, uint8_t id[HASH_LEN],
		   blocklist_tally *t)
{
	manifest_ref refs[2];
	size_t		nrefs = 0;

	memset(t, 0, sizeof(*t));
	CHECK_EQ_INT(blocklist_make_refs(w, (const uint8_t (*)[HASH_LEN]) ids, n, cand, refs, &nrefs, t), 0);
	CHECK_EQ_INT(nrefs, 1);
	CHECK_EQ_INT(refs[0].kind, MREF_GROUP);
	CHECK_EQ_INT(refs[0].count, n);
	CHECK_EQ_INT(repo_block_flush(w->r), 0);
	memcpy(id, refs[0].id, HASH_LEN);
}

static void
test_blocklist_delta(void)
{
	repo	   *r = open_repo("lists");
	block_codec *codec = block_codec_new(COMPRESS_NONE, 0);
	blocklist_writer w;
	blocklist_reader rd;
	blocklist_tally t;
	uint8_t		(*ids)[HASH_LEN] = xmalloc(256 * HASH_LEN);
	uint8_t		(*got)[HASH_LEN] = xmalloc(256 * HASH_LEN);
	uint8_t		full[HASH_LEN], d1[HASH_LEN], d2[HASH_LEN], id[HASH_LEN], base[HASH_LEN];
	manifest_ref cand = {.kind = MREF_GROUP, .count = 256};

	blocklist_writer_init(&w, r, codec, COMPRESS_NONE);
	blocklist_reader_init(&rd, r);
	for (int i = 0; i < 256; i++)
		hash_buf(&i, sizeof(i), ids[i]);
	memset(ids[7], 0, HASH_LEN);     /* an all-zero block */

	/* No candidate: a full list, which resolves to itself. */
	make_group(&w, ids, 256, NULL, full, &t);
	CHECK_EQ_INT(t.lists, 1);
	CHECK_EQ_INT(t.deltas, 0);
	CHECK_EQ_INT(object_size(r, full), 256 * HASH_LEN);
	CHECK_EQ_INT(blocklist_resolve_base(&rd, full, 256, got, base), 0);
	CHECK(memcmp(got, ids, 256 * HASH_LEN) == 0);
	CHECK(memcmp(base, full, HASH_LEN) == 0);

	/* 10 changed ids against the full list: a delta of 10 pairs. */
	for (int i = 0; i < 10; i++)
		test_id('a', i, ids[i * 25]);
	memcpy(cand.id, full, HASH_LEN);
	make_group(&w, ids, 256, &cand, d1, &t);
	CHECK_EQ_INT(t.lists, 1);
	CHECK_EQ_INT(t.deltas, 1);
	CHECK_EQ_INT(object_size(r, d1), BLOCKLIST_DELTA_HEADER + 10 * BLOCKLIST_DELTA_PAIR);
	CHECK_EQ_INT(blocklist_resolve_base(&rd, d1, 256, got, base), 0);
	CHECK(memcmp(got, ids, 256 * HASH_LEN) == 0);
	CHECK(memcmp(base, full, HASH_LEN) == 0);
	CHECK(memcmp(rd.base_ids[0], ids[0], HASH_LEN) != 0);      /* the base's own ids */

	/* Against the delta: a new delta of the same full base (no chain), with all 15 changes. */
	for (int i = 0; i < 5; i++)
		test_id('b', i, ids[201 + i]);
	memcpy(cand.id, d1, HASH_LEN);
	make_group(&w, ids, 256, &cand, d2, &t);
	CHECK_EQ_INT(t.deltas, 1);
	CHECK_EQ_INT(object_size(r, d2), BLOCKLIST_DELTA_HEADER + 15 * BLOCKLIST_DELTA_PAIR);
	CHECK_EQ_INT(blocklist_resolve_base(&rd, d2, 256, got, base), 0);
	CHECK(memcmp(got, ids, 256 * HASH_LEN) == 0);
	CHECK(memcmp(base, full, HASH_LEN) == 0);

	/* Telling deltas from full lists without resolving them (garbage collection's second pass). */
	bool		is_delta = true;

	CHECK_EQ_INT(blocklist_base(&rd, full, 256, &is_delta, base), 0);
	CHECK(!is_delta);
	memset(base, 0, HASH_LEN);
	CHECK_EQ_INT(blocklist_base(&rd, d2, 256, &is_delta, base), 0);
	CHECK(is_delta);
	CHECK(memcmp(base, full, HASH_LEN) == 0);
	test_id('x', 0, id);
	CHECK_EQ_INT(blocklist_base(&rd, id, 256, &is_delta, base), ERR_NOT_FOUND);

	/* Unchanged against a delta: the same delta object, nothing stored. */
	memcpy(cand.id, d2, HASH_LEN);
	make_group(&w, ids, 256, &cand, id, &t);
	CHECK(memcmp(id, d2, HASH_LEN) == 0);
	CHECK_EQ_INT(t.lists, 0);

	/* Too many changes, another count, or an unreadable candidate: full lists. */
	for (int i = 0; i < BLOCKLIST_DELTA_MAX + 1; i++)
		test_id('c', i, ids[i]);
	make_group(&w, ids, 256, &cand, id, &t);
	CHECK_EQ_INT(t.deltas, 0);
	CHECK_EQ_INT(object_size(r, id), 256 * HASH_LEN);
	make_group(&w, ids, 255, &cand, id, &t);
	CHECK_EQ_INT(t.deltas, 0);
	CHECK_EQ_INT(object_size(r, id), 255 * HASH_LEN);
	hash_buf("nothing", 7, cand.id);
	make_group(&w, ids, 256, &cand, id, &t);
	CHECK_EQ_INT(t.deltas, 0);
	CHECK_EQ_INT(object_size(r, id), 256 * HASH_LEN);

	/* A short group: a delta only while smaller than its full list (10 ids: 320 bytes). */
	uint8_t		shortfull[HASH_LEN];
	manifest_ref scand = {.kind = MREF_GROUP, .count = 10};

	make_group(&w, ids, 10, NULL, shortfull, &t);
	memcpy(scand.id, shortfull, HASH_LEN);
	test_id('d', 0, ids[3]);
	make_group(&w, ids, 10, &scand, id, &t);
	CHECK_EQ_INT(t.deltas, 1);
	CHECK_EQ_INT(object_size(r, id), BLOCKLIST_DELTA_HEADER + BLOCKLIST_DELTA_PAIR);
	CHECK_EQ_INT(blocklist_resolve(&rd, id, 10, got), 0);
	CHECK(memcmp(got, ids, 10 * HASH_LEN) == 0);
	for (int i = 0; i < 8; i++)
		test_id('e', i, ids[i]);
	make_group(&w, ids, 10, &scand, id, &t);
	CHECK_EQ_INT(t.deltas, 0);
	CHECK_EQ_INT(object_size(r, id), 10 * HASH_LEN);

	/* Malformed deltas are refused, naming the list. */
	uint8_t		bad[BLOCKLIST_DELTA_HEADER + 2 * BLOCKLIST_DELTA_PAIR] = {0};
	char		hex[HASH_HEX_LEN + 1];

	memcpy(bad, BLOCKLIST_DELTA_MAGIC, 8);
	bad[8] = 0; bad[9] = 1;         /* count 256 */
	bad[10] = 1;                    /* one pair */
	memcpy(bad + 16, d1, HASH_LEN); /* base: a delta */
	put_object(r, bad, BLOCKLIST_DELTA_HEADER + BLOCKLIST_DELTA_PAIR, id);
	hash_to_hex(id, hex);
	CHECK_EQ_INT(blocklist_resolve(&rd, id, 256, got), ERR_CORRUPT);
	CHECK_CONTAINS(error_msg(), hex);
	CHECK_CONTAINS(error_msg(), "chains are not allowed");

	memcpy(bad + 16, full, HASH_LEN);
	bad[BLOCKLIST_DELTA_HEADER + 1] = 1;   /* index 256 */
	put_object(r, bad, BLOCKLIST_DELTA_HEADER + BLOCKLIST_DELTA_PAIR, id);
	hash_to_hex(id, hex);
	CHECK_EQ_INT(blocklist_resolve(&rd, id, 256, got), ERR_CORRUPT);
	CHECK_CONTAINS(error_msg(), hex);
	CHECK_CONTAINS(error_msg(), "out of range");

	bad[10] = 2;                    /* two pairs, the second not after the first */
	bad[BLOCKLIST_DELTA_HEADER + 1] = 0;
	bad[BLOCKLIST_DELTA_HEADER] = 5;
	bad[BLOCKLIST_DELTA_HEADER + BLOCKLIST_DELTA_PAIR] = 5;
	put_object(r, bad, sizeof(bad), id);
	CHECK_EQ_INT(blocklist_resolve(&rd, id, 256, got), ERR_CORRUPT);
	CHECK_CONTAINS(error_msg(), "not after the previous one");

	put_object(r, bad, sizeof(bad) - 1, id);     /* truncated */
	hash_to_hex(id, hex);
	CHECK_EQ_INT(blocklist_resolve(&rd, id, 256, got), ERR_CORRUPT);
	CHECK_CONTAINS(error_msg(), hex);
	CHECK_CONTAINS(error_msg(), "2 pairs has 115 bytes");
	CHECK_EQ_INT(blocklist_resolve(&rd, id, 255, got), ERR_CORRUPT);   /* another count */

	put_object(r, ids, 256 * HASH_LEN - 1, id);  /* a truncated full list */
	CHECK_EQ_INT(blocklist_resolve(&rd, id, 256, got), ERR_CORRUPT);
	CHECK_CONTAINS(error_msg(), "neither a full list");

	bad[10] = 1;
	hash_buf("gone", 4, bad + 16);   /* a base the repository lacks */
	put_object(r, bad, BLOCKLIST_DELTA_HEADER + BLOCKLIST_DELTA_PAIR, id);
	hash_to_hex(id, hex);
	CHECK_EQ_INT(blocklist_resolve(&rd, id, 256, got), ERR_CORRUPT);
	CHECK_CONTAINS(error_msg(), hex);
	CHECK_CONTAINS(error_msg(), "is missing from the repository");

	blocklist_reader_free(&rd);
	blocklist_writer_free(&w);
	block_codec_free(codec);
	free(ids);
	free(got);
	repo_close(r);
}

/*
 * Answers about lists passed with blocklist_writer_known are used instead of
 * asking the repository, once: a list said to exist is not stored (and counts
 * as the stored length given), and the answers are forgotten after the call.
 */
static void
test_blocklist_known(void)
{
	repo	   *r = open_repo("known");
	block_codec *codec = block_codec_new(COMPRESS_NONE, 0);
	blocklist_writer w;
	blocklist_tally t;
	uint8_t		ids[4][HASH_LEN], list_id[HASH_LEN], other[HASH_LEN], id[HASH_LEN];
	bool		exists = true;

	blocklist_writer_init(&w, r, codec, COMPRESS_NONE);
	for (int i = 0; i < 4; i++)
		test_id('k', i, ids[i]);
	hash_buf(ids, sizeof(ids), list_id);

	/* Said to exist: nothing stored, the given length counted. */
	blocklist_writer_known(&w, list_id, true, 77);
	make_group(&w, ids, 4, NULL, id, &t);
	CHECK(memcmp(id, list_id, HASH_LEN) == 0);
	CHECK_EQ_INT(t.lists, 0);
	CHECK_EQ_INT(t.stored, 77);
	CHECK_EQ_INT(repo_block_exists(r, list_id, &exists, NULL), 0);
	CHECK(!exists);
	CHECK_EQ_INT(w.known_n, 0);

	/* Forgotten: the next call asks the repository, which lacks it, and stores it. */
	make_group(&w, ids, 4, NULL, id, &t);
	CHECK_EQ_INT(t.lists, 1);
	CHECK_EQ_INT(object_size(r, list_id), 4 * HASH_LEN);

	/* An answer about another id changes nothing: the repository is asked, and has it. */
	test_id('o', 0, other);
	blocklist_writer_known(&w, other, false, 0);
	make_group(&w, ids, 4, NULL, id, &t);
	CHECK_EQ_INT(t.lists, 0);
	CHECK_EQ_INT(t.stored, 4 * HASH_LEN);

	/* Said to be missing: stored, though the repository would have said it has it. */
	blocklist_writer_known(&w, list_id, false, 0);
	make_group(&w, ids, 4, NULL, id, &t);
	CHECK_EQ_INT(t.lists, 1);
	CHECK_EQ_INT(t.added, 4 * HASH_LEN);

	/* Beyond BLOCKLIST_KNOWN_MAX answers, more are dropped. */
	for (int i = 0; i < BLOCKLIST_KNOWN_MAX + 3; i++)
		blocklist_writer_known(&w, other, false, 0);
	CHECK_EQ_INT(w.known_n, BLOCKLIST_KNOWN_MAX);

	blocklist_writer_free(&w);
	repo_close(r);
	block_codec_free(codec);
}

int
main(void)
{
	log_init(LOG_OFF, LOG_OFF, LOG_OFF, NULL, NULL);
	if (mkdtemp(tmpdir) == NULL)
		return 1;
	RUN(test_stanza);
	RUN(test_wal);
	RUN(test_wal_delete);
	RUN(test_wal_fsync_failure);
	RUN(test_backups);
	RUN(test_blocks);
	RUN(test_blocks_ask);
	RUN(test_blocks_check_many);
	RUN(test_blocklist_delta);
	RUN(test_blocklist_known);
	RUN(test_dict);
	fio_remove_tree(tmpdir);
	return harness_done();
}
