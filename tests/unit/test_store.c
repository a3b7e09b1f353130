/*
 * test_store.c: the block store: round trips across packs and index growth,
 * deduplication, visibility, crashes, corruption, reindex, concurrent
 * handles, index inserts deferred while another handle holds the lock,
 * batched inserts and growth checked against a model, reads through the
 * read-ahead windows, store_check (present without reading), the CRC-32C, and the byte layout of
 * doc/repository-format.md (section "Block store") read independently.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../repo/store.h"
#include "error.h"
#include "fileio.h"
#include "harness.h"
#include "mem.h"

#define SMALL 64, 575           /* block sizes: min, max */
#define PAGE 8192, 8192
#define MIXED 1024, 8192

/* ---- helpers ---- */

static uint64_t
mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

/* Block i of a family: deterministic bytes, so tests check them without keeping them. */
static uint32_t
make_block(uint64_t family, uint64_t i, uint32_t min, uint32_t max, uint8_t *buf, uint8_t id[HASH_LEN])
{
	uint64_t	x = mix(family * 1000003 + i + 1);
	uint32_t	len = min + (uint32_t) (x % (max - min + 1));

	for (uint32_t k = 0; k < len; k += 8)
	{
		x = mix(x + k);
		memcpy(buf + k, &x, len - k < 8 ? len - k : 8);
	}
	hash_buf(buf, len, id);
	return len;
}

static int
put_blocks(store *s, uint64_t family, uint64_t from, uint64_t to, uint32_t min, uint32_t max)
{
	uint8_t    *buf = xmalloc(max);
	uint8_t		id[HASH_LEN];
	int			rc = 0;

	for (uint64_t i = from; i < to && rc == 0; i++)
	{
		uint32_t	len = make_block(family, i, min, max, buf, id);

		rc = store_put(s, id, COMPRESS_NONE, buf, len, len);
	}
	free(buf);
	return rc;
}

/* How many blocks of the range the store finds (lookup), and how many of those read back intact. */
static void
check_blocks(store *s, uint64_t family, uint64_t from, uint64_t to, uint32_t min, uint32_t max,
			 uint64_t *found_out, uint64_t *intact_out)
{
	uint8_t    *want = xmalloc(max);
	uint8_t    *got = xmalloc(max);
	uint8_t		id[HASH_LEN];
	uint64_t	found_n = 0;
	uint64_t	intact = 0;

	for (uint64_t i = from; i < to; i++)
	{
		uint32_t	len = make_block(family, i, min, max, want, id);
		store_loc	loc;
		bool		found;

		if (store_lookup(s, id, &found, &loc) != 0 || !found)
			continue;
		found_n++;
		if (store_read(s, id, got, max, &loc) == 0 && loc.stored_len == len && loc.raw_len == len &&
			memcmp(got, want, len) == 0)
			intact++;
	}
	free(want);
	free(got);
	*found_out = found_n;
	*intact_out = intact;
}

/* Blocks of the range that are found, each of which must read back intact. */
static uint64_t
found_intact(store *s, uint64_t family, uint64_t from, uint64_t to, uint32_t min, uint32_t max)
{
	uint64_t	found;
	uint64_t	intact;

	check_blocks(s, family, from, to, min, max, &found, &intact);
	CHECK_EQ_INT(intact, found);
	return intact;
}

static char *
make_dir(void)
{
	const char *tmp = getenv("TMPDIR");
	char	   *dir = xasprintf("%s/pgkeep-test-store-XXXXXX", tmp != NULL ? tmp : "/tmp");

	if (mkdtemp(dir) == NULL)
	{
		perror("mkdtemp");
		exit(1);
	}
	return dir;
}

static void
remove_dir(char *dir)
{
	CHECK_EQ_INT(fio_remove_tree(dir), 0);
	free(dir);
}

/* Count files in DIR/pack/XX/ whose names end with suffix; *first gets one's path. */
static int
count_files(const char *dir, const char *suffix, char **first)
{
	char	   *pack = xasprintf("%s/pack", dir);
	DIR		   *d = opendir(pack);
	struct dirent *e;
	int			n = 0;

	while (d != NULL && (e = readdir(d)) != NULL)
	{
		char	   *sub = xasprintf("%s/%s", pack, e->d_name);
		DIR		   *d2 = e->d_name[0] == '.' ? NULL : opendir(sub);
		struct dirent *f;

		while (d2 != NULL && (f = readdir(d2)) != NULL)
		{
			if (!str_ends_with(f->d_name, suffix))
				continue;
			if (n++ == 0 && first != NULL)
				*first = xasprintf("%s/%s", sub, f->d_name);
		}
		if (d2 != NULL)
			closedir(d2);
		free(sub);
	}
	if (d != NULL)
		closedir(d);
	free(pack);
	return n;
}

static off_t
file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? st.st_size : -1;
}

static void
patch_file(const char *path, off_t off, const void *data, size_t n)
{
	int			fd = open(path, O_WRONLY | O_CREAT, 0640);

	CHECK(fd >= 0);
	CHECK(pwrite(fd, data, n, off) == (ssize_t) n);
	close(fd);
}

static void
flip_byte(const char *path, off_t off)
{
	int			fd = open(path, O_RDWR);
	uint8_t		b = 0;

	CHECK(fd >= 0);
	CHECK(pread(fd, &b, 1, off) == 1);
	b ^= 0x5a;
	CHECK(pwrite(fd, &b, 1, off) == 1);
	close(fd);
}

static uint64_t
le64(const uint8_t *p)
{
	uint64_t	v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint32_t
le32(const uint8_t *p)
{
	return (uint32_t) le64((const uint8_t[8]) {p[0], p[1], p[2], p[3]});
}

/* Bitwise CRC-32C straight from its definition, independent of the store's table-driven one. */
static uint32_t
crc32c_ref(const void *data, size_t n)
{
	const uint8_t *p = data;
	uint32_t	c = 0xffffffffu;

	while (n-- > 0)
	{
		c ^= *p++;
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
	}
	return ~c;
}

/* Offset of the index slot holding id (found by the spec's probing), or -1. */
static off_t
index_slot_of(const char *index_path, const uint8_t id[HASH_LEN])
{
	int			fd = open(index_path, O_RDONLY);
	uint8_t		h[64];
	uint8_t		slot[64];
	off_t		found = -1;

	if (fd < 0 || pread(fd, h, sizeof(h), 0) != (ssize_t) sizeof(h))
		return -1;
	for (uint64_t n = 0, slots = le64(h + 16), i = le64(id) & (slots - 1); n < slots; n++, i = (i + 1) & (slots - 1))
	{
		if (pread(fd, slot, sizeof(slot), (off_t) (64 + i * 64)) != (ssize_t) sizeof(slot) ||
			le32(slot + 60) != crc32c_ref(slot, 60))
			break;
		if (memcmp(slot, id, HASH_LEN) == 0)
		{
			found = (off_t) (64 + i * 64);
			break;
		}
	}
	close(fd);
	return found;
}

/* Encode a valid index slot (the spec's layout and check) for id at loc. */
static void
encode_slot(uint8_t slot[64], const uint8_t id[HASH_LEN], const store_loc *loc)
{
	uint32_t	crc;

	memset(slot, 0, 64);
	memcpy(slot, id, HASH_LEN);
	for (int i = 0; i < 8; i++)
	{
		slot[32 + i] = (uint8_t) (loc->pack_id >> (8 * i));
		slot[40 + i] = (uint8_t) (loc->offset >> (8 * i));
	}
	for (int i = 0; i < 4; i++)
	{
		slot[48 + i] = (uint8_t) (loc->stored_len >> (8 * i));
		slot[52 + i] = (uint8_t) (loc->raw_len >> (8 * i));
	}
	slot[56] = (uint8_t) loc->ctype;
	crc = crc32c_ref(slot, 60);
	memcpy(slot + 60, (uint8_t[4]) {crc, crc >> 8, crc >> 16, crc >> 24}, 4);
}

/* Overwrite an index slot with a valid entry for id at loc. */
static void
write_slot(const char *index_path, off_t at, const uint8_t id[HASH_LEN], const store_loc *loc)
{
	uint8_t		slot[64];

	encode_slot(slot, id, loc);
	patch_file(index_path, at, slot, sizeof(slot));
}

/* ---- tests ---- */

/* 45000 blocks: several packs (sealed by block count), the index doubles, a handle opened before sees it. */
static void
test_roundtrip_growth(void)
{
	char	   *dir = make_dir();
	char	   *sdir = xasprintf("%s/store", dir);
	char	   *index = xasprintf("%s/index", sdir);
	store	   *w;
	store	   *r = NULL;
	uint64_t	blocks;
	uint64_t	bytes;
	uint64_t	want_bytes = 0;
	uint64_t	found;
	uint64_t	intact;
	uint8_t		buf[600];
	uint8_t		id[HASH_LEN];
	const uint64_t n = 45000;

	CHECK_EQ_INT(store_open(sdir, true, &w), 0);
	CHECK_EQ_INT(store_open(sdir, false, &r), 0);
	CHECK_EQ_INT(file_size(index), 64 + 65536 * 64);
	CHECK_EQ_INT(put_blocks(w, 1, 0, n, SMALL), 0);
	CHECK_EQ_INT(store_flush(w), 0);
	for (uint64_t i = 0; i < n; i++)
		want_bytes += make_block(1, i, SMALL, buf, id);
	store_stats(w, &blocks, &bytes);
	CHECK_EQ_INT(blocks, n);
	CHECK_EQ_INT(bytes, want_bytes);
	CHECK_EQ_INT(file_size(index), 64 + 131072 * 64);
	CHECK_EQ_INT(count_files(sdir, ".pack", NULL), 6);
	CHECK_EQ_INT(count_files(sdir, ".pack.tmp", NULL), 0);

	check_blocks(w, 1, 0, n, SMALL, &found, &intact);
	CHECK_EQ_INT(found, n);
	CHECK_EQ_INT(intact, n);

	/* r still holds the replaced index: correct but stale, until its periodic check reopens. */
	check_blocks(r, 1, 0, n, SMALL, &found, &intact);
	CHECK(found >= n - 1024);
	CHECK_EQ_INT(intact, found);
	check_blocks(r, 1, 0, n, SMALL, &found, &intact);
	CHECK_EQ_INT(intact, n);

	/* r's inserts go to the current index. */
	CHECK_EQ_INT(put_blocks(r, 2, 0, 1, SMALL), 0);
	CHECK_EQ_INT(store_close(r), 0);
	CHECK_EQ_INT(found_intact(w, 2, 0, 1, SMALL), 1);
	CHECK_EQ_INT(store_close(w), 0);
	free(index);
	free(sdir);
	remove_dir(dir);
}

/* 36 MiB of 8 KiB blocks seal a pack at STORE_PACK_TARGET bytes; a 1 MiB block goes around the buffer. */
static void
test_pack_rollover(void)
{
	char	   *dir = make_dir();
	store	   *s;
	store	   *other;
	uint64_t	found;
	uint64_t	intact;
	uint8_t    *big = xmalloc(1024 * 1024 + 100);
	uint8_t    *got = xmalloc(1024 * 1024 + 100);
	uint8_t		big_id[HASH_LEN];
	char	   *first = NULL;
	store_loc	loc;

	memset(big, 0xab, 1024 * 1024 + 100);
	hash_buf("big", 3, big_id);
	CHECK_EQ_INT(store_open(dir, true, &s), 0);
	CHECK_EQ_INT(put_blocks(s, 3, 0, 2000, PAGE), 0);
	CHECK_EQ_INT(store_put(s, big_id, COMPRESS_ZST, big, 1024 * 1024 + 100, 1024 * 1024), 0);
	CHECK_EQ_INT(put_blocks(s, 3, 2000, 4500, PAGE), 0);
	CHECK_EQ_INT(count_files(dir, ".pack", &first), 1);
	CHECK(first != NULL && file_size(first) >= (off_t) STORE_PACK_TARGET);
	CHECK(first != NULL && file_size(first) < (off_t) STORE_PACK_TARGET + 8192 + 56);
	/* The sealed pack is indexed at once; the open one only at the flush. */
	CHECK_EQ_INT(store_open(dir, false, &other), 0);
	CHECK_EQ_INT(found_intact(other, 3, 0, 100, PAGE), 100);
	check_blocks(other, 3, 4400, 4500, PAGE, &found, &intact);
	CHECK_EQ_INT(found, 0);
	CHECK_EQ_INT(store_close(other), 0);
	CHECK_EQ_INT(store_flush(s), 0);
	CHECK_EQ_INT(count_files(dir, ".pack", NULL), 2);
	CHECK_EQ_INT(found_intact(s, 3, 0, 4500, PAGE), 4500);
	CHECK_EQ_INT(store_read(s, big_id, got, 1024 * 1024 + 100, &loc), 0);
	CHECK_EQ_INT(loc.ctype, COMPRESS_ZST);
	CHECK_EQ_INT(loc.raw_len, 1024 * 1024);
	CHECK(memcmp(got, big, 1024 * 1024 + 100) == 0);
	CHECK_EQ_INT(store_close(s), 0);
	free(first);
	free(big);
	free(got);
	remove_dir(dir);
}

static void
test_invalid_put(void)
{
	char	   *dir = make_dir();
	store	   *s;
	static uint8_t data[1024 * 1024 + 1];
	uint8_t		id[HASH_LEN];
	uint8_t		small[4];
	uint64_t	blocks;
	uint64_t	bytes;

	hash_buf("x", 1, id);
	CHECK_EQ_INT(store_open(dir, true, &s), 0);
	CHECK_EQ_INT(store_put(s, id, COMPRESS_NONE, data, 1024 * 1024 + 1, 1024 * 1024 + 1), ERR_INVALID);
	CHECK_CONTAINS(error_msg(), "at most 1 MiB");
	CHECK_EQ_INT(store_put(s, id, (compress_type) 7, data, 10, 10), ERR_INVALID);
	CHECK_EQ_INT(store_put(s, id, COMPRESS_NONE, data, 10, 20), ERR_INVALID);
	store_stats(s, &blocks, &bytes);
	CHECK_EQ_INT(blocks, 0);
	CHECK_EQ_INT(count_files(dir, ".pack.tmp", NULL), 0);
	CHECK_EQ_INT(store_put(s, id, COMPRESS_NONE, data, 1024 * 1024, 1024 * 1024), 0);
	CHECK_EQ_INT(store_read(s, id, small, sizeof(small), NULL), ERR_INVALID);
	CHECK_EQ_INT(store_close(s), 0);
	remove_dir(dir);
}

static void
test_duplicate(void)
{
	char	   *dir = make_dir();
	store	   *s;
	uint8_t		buf[8192];
	uint8_t		id[HASH_LEN];
	uint32_t	len = make_block(4, 0, MIXED, buf, id);
	uint64_t	blocks;
	uint64_t	bytes;
	char	   *pack = NULL;
	off_t		size;

	CHECK_EQ_INT(store_open(dir, true, &s), 0);
	CHECK_EQ_INT(store_put(s, id, COMPRESS_NONE, buf, len, len), 0);
	CHECK_EQ_INT(store_put(s, id, COMPRESS_NONE, buf, len, len), 0);       /* pending */
	CHECK_EQ_INT(store_flush(s), 0);
	CHECK_EQ_INT(count_files(dir, ".pack", &pack), 1);
	size = pack != NULL ? file_size(pack) : -1;
	CHECK_EQ_INT(size, 16 + 56 + len);
	CHECK_EQ_INT(store_put(s, id, COMPRESS_NONE, buf, len, len), 0);       /* indexed */
	CHECK_EQ_INT(store_flush(s), 0);
	store_stats(s, &blocks, &bytes);
	CHECK_EQ_INT(blocks, 1);
	CHECK_EQ_INT(bytes, len);
	CHECK_EQ_INT(count_files(dir, ".pack", NULL), 1);
	CHECK_EQ_INT(count_files(dir, ".pack.tmp", NULL), 0);
	CHECK_EQ_INT(store_close(s), 0);
	free(pack);
	remove_dir(dir);
}

/*
 * Puts after a batch of lookups (as a backup does them): each missing block
 * is stored once, also when the batch names it twice, when it is put
 * twice, or when another handle stored it between the lookup and the put
 * (the stale miss costs a second copy in the pack; the index keeps one
 * entry and both handles read the block).
 */
static void
test_puts_after_lookups(void)
{
	char	   *dir = make_dir();
	store	   *a;
	store	   *b;
	uint8_t		buf[4][8192];
	uint8_t		id[4][HASH_LEN];
	uint32_t	len[4];
	uint8_t		out[8192];
	store_loc	loc;
	uint64_t	blocks;
	uint64_t	bytes;
	bool		found;
	char	   *pack = NULL;

	for (int i = 0; i < 4; i++)
		len[i] = make_block(21, (uint64_t) i, MIXED, buf[i], id[i]);
	CHECK_EQ_INT(store_open(dir, true, &a), 0);
	CHECK_EQ_INT(store_open(dir, false, &b), 0);
	/* a asks about 0, 1, 1 (twice in the batch), 2, 3: all missing */
	for (int k = 0; k < 5; k++)
	{
		CHECK_EQ_INT(store_lookup(a, id[k < 2 ? k : k - 1], &found, NULL), 0);
		CHECK(!found);
	}
	/* meanwhile b stores block 2 */
	CHECK_EQ_INT(store_put(b, id[2], COMPRESS_NONE, buf[2], len[2], len[2]), 0);
	CHECK_EQ_INT(store_flush(b), 0);
	/* a puts every missing one in order, 1 twice */
	CHECK_EQ_INT(store_put(a, id[0], COMPRESS_NONE, buf[0], len[0], len[0]), 0);
	CHECK_EQ_INT(store_put(a, id[1], COMPRESS_NONE, buf[1], len[1], len[1]), 0);
	CHECK_EQ_INT(store_put(a, id[1], COMPRESS_NONE, buf[1], len[1], len[1]), 0);
	CHECK_EQ_INT(store_put(a, id[2], COMPRESS_NONE, buf[2], len[2], len[2]), 0);
	CHECK_EQ_INT(store_put(a, id[3], COMPRESS_NONE, buf[3], len[3], len[3]), 0);
	CHECK_EQ_INT(store_flush(a), 0);
	/* a's pack holds 0, 1, 2 (the stale miss) and 3 once each */
	CHECK_EQ_INT(count_files(dir, ".pack", NULL), 2);
	store_stats(a, &blocks, &bytes);
	CHECK_EQ_INT(blocks, 4);
	for (int i = 0; i < 4; i++)
	{
		memset(out, 0, sizeof(out));
		CHECK_EQ_INT(store_read(a, id[i], out, sizeof(out), &loc), 0);
		CHECK(loc.stored_len == len[i] && memcmp(out, buf[i], len[i]) == 0);
		CHECK_EQ_INT(store_read(b, id[i], out, sizeof(out), &loc), 0);
		CHECK(memcmp(out, buf[i], len[i]) == 0);
	}
	/* a miss is used once: a put of 0 after it was taken finds the index entry */
	CHECK_EQ_INT(store_put(a, id[0], COMPRESS_NONE, buf[0], len[0], len[0]), 0);
	CHECK_EQ_INT(store_flush(a), 0);
	CHECK_EQ_INT(count_files(dir, ".pack", &pack), 2);
	CHECK_EQ_INT(store_close(a), 0);
	CHECK_EQ_INT(store_close(b), 0);
	free(pack);
	remove_dir(dir);
}

/* A handle sees its own pending blocks; others see them only after its flush. */
static void
test_visibility(void)
{
	char	   *dir = make_dir();
	store	   *a;
	store	   *b;
	uint64_t	found;
	uint64_t	intact;

	CHECK_EQ_INT(store_open(dir, true, &a), 0);
	CHECK_EQ_INT(store_open(dir, false, &b), 0);
	CHECK_EQ_INT(put_blocks(a, 5, 0, 300, MIXED), 0);
	CHECK_EQ_INT(count_files(dir, ".pack.tmp", NULL), 1);
	/* Reads of pending blocks come from the open pack, some still buffered. */
	check_blocks(a, 5, 0, 300, MIXED, &found, &intact);
	CHECK_EQ_INT(intact, 300);
	check_blocks(b, 5, 0, 300, MIXED, &found, &intact);
	CHECK_EQ_INT(found, 0);
	CHECK_EQ_INT(store_flush(a), 0);
	check_blocks(b, 5, 0, 300, MIXED, &found, &intact);
	CHECK_EQ_INT(intact, 300);
	CHECK_EQ_INT(store_close(a), 0);
	CHECK_EQ_INT(store_close(b), 0);
	remove_dir(dir);
}

/* A writer that exits without flushing leaves a .tmp pack and no index entries; reindex removes it. */
static void
test_crash_unflushed(void)
{
	char	   *dir = make_dir();
	store	   *s;
	int			status = -1;
	pid_t		pid;

	CHECK_EQ_INT(store_open(dir, true, &s), 0);
	CHECK_EQ_INT(store_close(s), 0);
	pid = fork();
	if (pid == 0)
	{
		if (store_open(dir, false, &s) != 0 || put_blocks(s, 6, 0, 300, MIXED) != 0 || store_flush(s) != 0 ||
			put_blocks(s, 6, 300, 1300, MIXED) != 0)
			_exit(2);
		_exit(0);
	}
	CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK_EQ_INT(store_open(dir, false, &s), 0);
	CHECK_EQ_INT(found_intact(s, 6, 0, 1300, MIXED), 300);
	CHECK_EQ_INT(count_files(dir, ".pack.tmp", NULL), 1);
	CHECK_EQ_INT(store_reindex(s), 0);
	CHECK_EQ_INT(count_files(dir, ".pack.tmp", NULL), 0);
	CHECK_EQ_INT(count_files(dir, ".pack", NULL), 1);
	CHECK_EQ_INT(found_intact(s, 6, 0, 1300, MIXED), 300);
	CHECK_EQ_INT(store_close(s), 0);
	remove_dir(dir);
}

/* SIGKILL at an arbitrary point: everything flushed is there, nothing found is broken. */
static void
test_crash_killed(void)
{
	char	   *dir = make_dir();
	store	   *s;
	int			fds[2];
	int			status;
	int64_t		batch = -1;
	pid_t		pid;

	CHECK_EQ_INT(store_open(dir, true, &s), 0);
	CHECK_EQ_INT(store_close(s), 0);
	CHECK(pipe(fds) == 0);
	pid = fork();
	if (pid == 0)
	{
		close(fds[0]);
		if (store_open(dir, false, &s) != 0)
			_exit(2);
		for (int64_t b = 0;; b++)
		{
			if (put_blocks(s, 7, (uint64_t) b * 200, (uint64_t) b * 200 + 200, MIXED) != 0 || store_flush(s) != 0 ||
				write(fds[1], &b, sizeof(b)) != sizeof(b))
				_exit(2);
		}
	}
	close(fds[1]);
	while (batch < 5 && read(fds[0], &batch, sizeof(batch)) == sizeof(batch))
		;
	kill(pid, SIGKILL);
	CHECK(waitpid(pid, &status, 0) == pid && WIFSIGNALED(status));
	close(fds[0]);
	CHECK_EQ_INT(batch, 5);

	CHECK_EQ_INT(store_open(dir, false, &s), 0);
	CHECK_EQ_INT(found_intact(s, 7, 0, 1200, MIXED), 1200);
	found_intact(s, 7, 1200, 6000, MIXED);
	CHECK_EQ_INT(store_reindex(s), 0);
	CHECK_EQ_INT(count_files(dir, ".pack.tmp", NULL), 0);
	CHECK_EQ_INT(found_intact(s, 7, 0, 1200, MIXED), 1200);
	found_intact(s, 7, 1200, 6000, MIXED);
	CHECK_EQ_INT(store_close(s), 0);
	remove_dir(dir);
}

static void
test_corrupt_record(void)
{
	char	   *dir = make_dir();
	store	   *s;
	uint8_t		buf[8192];
	char	   *index = xasprintf("%s/index", dir);
	uint8_t		id[5][HASH_LEN];
	store_loc	loc[5];
	store_loc	wrong;
	char	   *pack = NULL;
	bool		found;

	CHECK_EQ_INT(store_open(dir, true, &s), 0);
	CHECK_EQ_INT(put_blocks(s, 8, 0, 10, MIXED), 0);
	CHECK_EQ_INT(store_flush(s), 0);
	CHECK_EQ_INT(count_files(dir, ".pack", &pack), 1);
	for (int i = 0; i < 5; i++)
	{
		make_block(8, (uint64_t) i, MIXED, buf, id[i]);
		CHECK_EQ_INT(store_lookup(s, id[i], &found, &loc[i]), 0);
		CHECK(found);
	}
	if (pack == NULL)
		goto out;
	flip_byte(pack, (off_t) loc[0].offset + 40);    /* raw_len */
	CHECK_EQ_INT(store_read(s, id[0], buf, sizeof(buf), NULL), ERR_CORRUPT);
	CHECK_CONTAINS(error_msg(), pack);
	CHECK_CONTAINS(error_msg(), "record header does not match the index");
	flip_byte(pack, (off_t) loc[1].offset + 56 + 3);        /* a stored byte */
	CHECK_EQ_INT(store_read(s, id[1], buf, sizeof(buf), NULL), ERR_CORRUPT);
	CHECK_CONTAINS(error_msg(), pack);
	CHECK_CONTAINS(error_msg(), "checksum");
	/* Index entries with valid checks that disagree with the record: another id, another length. */
	write_slot(index, index_slot_of(index, id[2]), id[2], &loc[3]);
	CHECK_EQ_INT(store_read(s, id[2], buf, sizeof(buf), NULL), ERR_CORRUPT);
	CHECK_CONTAINS(error_msg(), "record header does not match the index");
	wrong = loc[3];
	wrong.raw_len++;
	write_slot(index, index_slot_of(index, id[3]), id[3], &wrong);
	CHECK_EQ_INT(store_read(s, id[3], buf, sizeof(buf), NULL), ERR_CORRUPT);
	CHECK_CONTAINS(error_msg(), pack);
	CHECK_EQ_INT(store_read(s, id[4], buf, sizeof(buf), NULL), 0);
	/* Reindex refuses to index a corrupt pack and keeps the index it has. */
	CHECK_EQ_INT(store_reindex(s), ERR_CORRUPT);
	CHECK_CONTAINS(error_msg(), pack);
	CHECK_EQ_INT(store_read(s, id[4], buf, sizeof(buf), NULL), 0);
out:
	CHECK_EQ_INT(store_close(s), 0);
	free(pack);
	free(index);
	remove_dir(dir);
}

static void
test_missing_pack(void)
{
	char	   *dir = make_dir();
	store	   *s;
	uint8_t		buf[8192];
	uint8_t		id[HASH_LEN];
	char	   *pack = NULL;
	bool		found;

	CHECK_EQ_INT(store_open(dir, true, &s), 0);
	CHECK_EQ_INT(put_blocks(s, 9, 0, 10, MIXED), 0);
	CHECK_EQ_INT(store_close(s), 0);
	CHECK_EQ_INT(count_files(dir, ".pack", &pack), 1);
	CHECK(pack != NULL && unlink(pack) == 0);
	make_block(9, 0, MIXED, buf, id);
	CHECK_EQ_INT(store_open(dir, false, &s), 0);
	CHECK_EQ_INT(store_lookup(s, id, &found, NULL), 0);
	CHECK(found);
	CHECK_EQ_INT(store_read(s, id, buf, sizeof(buf), NULL), ERR_CORRUPT);
	CHECK_CONTAINS(error_msg(), pack != NULL ? pack : "?");
	CHECK_CONTAINS(error_msg(), "missing");
	CHECK_EQ_INT(store_close(s), 0);
	free(pack);
	remove_dir(dir);
}

/* store_check: stored or pending blocks pass without being read; a short or missing pack does not. */
static void
test_check(void)
{
	char	   *dir = make_dir();
	store	   *s;
	uint8_t		buf[8192];
	uint8_t		id[3][HASH_LEN];
	uint8_t		unknown[HASH_LEN];
	store_loc	loc;
	char	   *pack = NULL;
	uint32_t	len2 = 0;
	off_t		size;

	CHECK_EQ_INT(store_open(dir, true, &s), 0);
	CHECK_EQ_INT(put_blocks(s, 11, 0, 10, MIXED), 0);
	for (int i = 0; i < 3; i++)
		len2 = make_block(11, (uint64_t) (i == 2 ? 9 : i), MIXED, buf, id[i]);
	/* Not flushed yet: this handle's own pending blocks pass. */
	CHECK_EQ_INT(store_check(s, id[2], &loc), 0);
	CHECK_EQ_INT(store_flush(s), 0);
	CHECK_EQ_INT(count_files(dir, ".pack", &pack), 1);
	if (pack == NULL)
		goto out;
	CHECK_EQ_INT(store_close(s), 0);
	CHECK_EQ_INT(store_open(dir, false, &s), 0);
	CHECK_EQ_INT(store_check(s, id[2], &loc), 0);
	CHECK_EQ_INT(loc.raw_len, len2);
	/* A flipped stored byte is not seen: nothing is read (store_read sees it). */
	CHECK_EQ_INT(store_check(s, id[0], &loc), 0);
	flip_byte(pack, (off_t) loc.offset + 56 + 3);
	CHECK_EQ_INT(store_check(s, id[0], NULL), 0);
	CHECK_EQ_INT(store_read(s, id[0], buf, sizeof(buf), NULL), ERR_CORRUPT);
	hash_buf("unknown", 7, unknown);
	CHECK_EQ_INT(store_check(s, unknown, NULL), ERR_NOT_FOUND);
	/* The last record cut short; the first still whole. */
	CHECK_EQ_INT(store_check(s, id[2], &loc), 0);
	size = (off_t) (loc.offset + 56 + loc.stored_len - 1);
	CHECK(truncate(pack, size) == 0);
	CHECK_EQ_INT(store_close(s), 0);
	CHECK_EQ_INT(store_open(dir, false, &s), 0);
	CHECK_EQ_INT(store_check(s, id[2], NULL), ERR_CORRUPT);
	CHECK_CONTAINS(error_msg(), "beyond the end");
	CHECK_CONTAINS(error_msg(), pack);
	CHECK_EQ_INT(store_check(s, id[1], NULL), 0);
	/* The pack gone: every block of it fails, naming it. */
	CHECK(unlink(pack) == 0);
	CHECK_EQ_INT(store_close(s), 0);
	CHECK_EQ_INT(store_open(dir, false, &s), 0);
	CHECK_EQ_INT(store_check(s, id[1], NULL), ERR_CORRUPT);
	CHECK_CONTAINS(error_msg(), pack);
	CHECK_CONTAINS(error_msg(), "missing");
out:
	CHECK_EQ_INT(store_close(s), 0);
	free(pack);
	remove_dir(dir);
}

static void
test_not_found(void)
{
	char	   *dir = make_dir();
	char	   *missing = xasprintf("%s/nothing", dir);
	store	   *s;
	uint8_t		buf[16];
	uint8_t		id[HASH_LEN];
	char		hex[HASH_HEX_LEN + 1];
	bool		found = true;

	CHECK_EQ_INT(store_open(missing, false, &s), ERR_NOT_FOUND);
	CHECK(s == NULL);
	hash_buf("unknown", 7, id);
	hash_to_hex(id, hex);
	CHECK_EQ_INT(store_open(dir, true, &s), 0);
	CHECK_EQ_INT(put_blocks(s, 10, 0, 5, SMALL), 0);
	CHECK_EQ_INT(store_lookup(s, id, &found, NULL), 0);
	CHECK(!found);
	CHECK_EQ_INT(store_flush(s), 0);
	CHECK_EQ_INT(store_read(s, id, buf, sizeof(buf), NULL), ERR_NOT_FOUND);
	CHECK_CONTAINS(error_msg(), hex);
	CHECK_EQ_INT(store_close(s), 0);
	free(missing);
	remove_dir(dir);
}

/* Garbage in index slots reads as empty: the block is "not found" (stored again), never misread. */
static void
test_torn_slots(void)
{
	char	   *dir = make_dir();
	char	   *index = xasprintf("%s/index", dir);
	store	   *s;
	uint8_t		buf[600];
	uint8_t		id[HASH_LEN];
	uint8_t		garbage[32] = {0};
	uint8_t    *slots;
	uint32_t	len = make_block(11, 0, SMALL, buf, id);
	uint64_t	found;
	uint64_t	intact;
	bool		f = true;
	off_t		slot;

	CHECK_EQ_INT(store_open(dir, true, &s), 0);
	CHECK_EQ_INT(put_blocks(s, 11, 0, 2000, SMALL), 0);
	CHECK_EQ_INT(store_close(s), 0);
	slot = index_slot_of(index, id);
	CHECK(slot > 0);
	/* Torn: the second half of the slot lost. */
	patch_file(index, slot + 32, garbage, sizeof(garbage));
	CHECK_EQ_INT(store_open(dir, false, &s), 0);
	CHECK_EQ_INT(store_lookup(s, id, &f, NULL), 0);
	CHECK(!f);
	CHECK_EQ_INT(store_read(s, id, buf, sizeof(buf), NULL), ERR_NOT_FOUND);
	/* Storing it again repairs the slot. */
	CHECK_EQ_INT(store_put(s, id, COMPRESS_NONE, buf, len, len), 0);
	CHECK_EQ_INT(store_close(s), 0);
	CHECK_EQ_INT(store_open(dir, false, &s), 0);
	CHECK_EQ_INT(found_intact(s, 11, 0, 2000, SMALL), 2000);
	CHECK_EQ_INT(store_close(s), 0);

	/* Every slot garbage, a third of them with real ids: nothing is found, nothing crashes. */
	slots = xmalloc(65536 * 64);
	for (uint64_t i = 0; i < 65536 * 8; i++)
	{
		uint64_t	x = mix(i);

		memcpy(slots + 8 * i, &x, 8);
	}
	for (uint64_t i = 0; i < 2000; i += 3)
	{
		make_block(11, i, SMALL, buf, id);
		memcpy(slots + 64 * (le64(id) & 65535), id, HASH_LEN);
	}
	patch_file(index, 64, slots, 65536 * 64);
	free(slots);
	CHECK_EQ_INT(store_open(dir, false, &s), 0);
	check_blocks(s, 11, 0, 2000, SMALL, &found, &intact);
	CHECK_EQ_INT(found, 0);
	CHECK_EQ_INT(store_reindex(s), 0);
	CHECK_EQ_INT(found_intact(s, 11, 0, 2000, SMALL), 2000);
	CHECK_EQ_INT(store_close(s), 0);

	/* An invalid header makes open rebuild the index. */
	patch_file(index, 0, "XXXX", 4);
	CHECK_EQ_INT(store_open(dir, false, &s), 0);
	CHECK_EQ_INT(found_intact(s, 11, 0, 2000, SMALL), 2000);
	CHECK_EQ_INT(store_close(s), 0);
	free(index);
	remove_dir(dir);
}

static bool
same_locs(store *s, uint64_t family, uint64_t n, const store_loc *want)
{
	uint8_t		buf[8192];
	uint8_t		id[HASH_LEN];

	for (uint64_t i = 0; i < n; i++)
	{
		store_loc	loc;
		bool		found;

		make_block(family, i, MIXED, buf, id);
		if (store_lookup(s, id, &found, &loc) != 0 || !found || loc.pack_id != want[i].pack_id ||
			loc.offset != want[i].offset || loc.stored_len != want[i].stored_len ||
			loc.raw_len != want[i].raw_len || loc.ctype != want[i].ctype)
			return false;
	}
	return true;
}

static void
test_reindex(void)
{
	char	   *dir = make_dir();
	char	   *index = xasprintf("%s/index", dir);
	char	   *grow_left = xasprintf("%s/index.new", dir);
	store	   *s;
	store	   *live;
	store_loc  *locs = xcalloc(3000, sizeof(store_loc));
	uint8_t		buf[8192];
	uint8_t		id[HASH_LEN];
	bool		found;

	CHECK_EQ_INT(store_open(dir, true, &s), 0);
	CHECK_EQ_INT(put_blocks(s, 12, 0, 1500, MIXED), 0);
	CHECK_EQ_INT(store_flush(s), 0);
	CHECK_EQ_INT(put_blocks(s, 12, 1500, 3000, MIXED), 0);
	CHECK_EQ_INT(store_close(s), 0);
	CHECK_EQ_INT(count_files(dir, ".pack", NULL), 2);
	CHECK_EQ_INT(store_open(dir, false, &s), 0);
	for (uint64_t i = 0; i < 3000; i++)
	{
		make_block(12, i, MIXED, buf, id);
		CHECK_EQ_INT(store_lookup(s, id, &found, &locs[i]), 0);
	}
	CHECK_EQ_INT(store_close(s), 0);

	/* A missing index is rebuilt by open. */
	CHECK(unlink(index) == 0);
	CHECK_EQ_INT(store_open(dir, false, &s), 0);
	CHECK(same_locs(s, 12, 3000, locs));

	/* Reindex keeps a live writer's open pack and removes a crashed growth's leftover. */
	CHECK_EQ_INT(store_open(dir, false, &live), 0);
	CHECK_EQ_INT(put_blocks(live, 13, 0, 10, MIXED), 0);
	patch_file(grow_left, 0, "left", 4);
	CHECK_EQ_INT(store_reindex(s), 0);
	CHECK(!fio_exists(grow_left));
	CHECK(same_locs(s, 12, 3000, locs));
	CHECK_EQ_INT(count_files(dir, ".pack.tmp", NULL), 1);
	CHECK_EQ_INT(store_close(live), 0);
	CHECK_EQ_INT(found_intact(s, 13, 0, 10, MIXED), 10);
	CHECK_EQ_INT(store_close(s), 0);
	free(locs);
	free(grow_left);
	free(index);
	remove_dir(dir);
}

typedef struct worker_arg
{
	const char *dir;
	uint64_t	from;
	int			rc;
	uint64_t	found;          /* reader: blocks found */
	uint64_t	intact;         /* reader: of those, read back intact */
	volatile int *stop;
} worker_arg;

#define CONCURRENT_IDS 40000
#define CONCURRENT_EACH 27000

static void *
writer(void *p)
{
	worker_arg *a = p;
	store	   *s;

	a->rc = store_open(a->dir, false, &s);
	for (uint64_t i = a->from; i < a->from + CONCURRENT_EACH && a->rc == 0; i += 1000)
	{
		a->rc = put_blocks(s, 14, i, i + 1000, SMALL);
		if (a->rc == 0)
			a->rc = store_flush(s);
	}
	if (a->rc == 0)
		a->rc = store_close(s);
	return NULL;
}

/* Looks blocks up while the writers insert: whatever it finds must read back intact. */
static void *
reader(void *p)
{
	worker_arg *a = p;
	store	   *s;

	a->rc = store_open(a->dir, false, &s);
	while (a->rc == 0 && !__atomic_load_n(a->stop, __ATOMIC_ACQUIRE))
	{
		uint64_t	found;
		uint64_t	intact;

		check_blocks(s, 14, 0, CONCURRENT_IDS, SMALL, &found, &intact);
		a->found += found;
		a->intact += intact;
	}
	if (a->rc == 0)
		a->rc = store_close(s);
	return NULL;
}

/* Two handles put overlapping id sets at once, through an index growth: every id reads back intact. */
static void
test_concurrent(void)
{
	char	   *dir = make_dir();
	char	   *index = xasprintf("%s/index", dir);
	store	   *s;
	pthread_t	t[3];
	volatile int stop = 0;
	worker_arg	a[3] = {
		{dir, 0, -1, 0, 0, &stop},
		{dir, CONCURRENT_IDS - CONCURRENT_EACH, -1, 0, 0, &stop},
		{dir, 0, -1, 0, 0, &stop},
	};

	CHECK_EQ_INT(store_open(dir, true, &s), 0);
	for (int i = 0; i < 3; i++)
		CHECK(pthread_create(&t[i], NULL, i < 2 ? writer : reader, &a[i]) == 0);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	__atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
	pthread_join(t[2], NULL);
	for (int i = 0; i < 3; i++)
		CHECK_EQ_INT(a[i].rc, 0);
	CHECK(a[2].found > 0);
	CHECK_EQ_INT(a[2].intact, a[2].found);
	CHECK_EQ_INT(found_intact(s, 14, 0, CONCURRENT_IDS, SMALL), CONCURRENT_IDS);
	CHECK_EQ_INT(count_files(dir, ".pack.tmp", NULL), 0);
	CHECK_EQ_INT(file_size(index), 64 + 131072 * 64);
	CHECK_EQ_INT(store_close(s), 0);
	free(index);
	remove_dir(dir);
}

/* ---- deferred, batched index inserts and growth ---- */

/* Take index.lock as another process would: an exclusive flock on its own open file. */
static int
hold_index_lock(const char *dir)
{
	char	   *path = xasprintf("%s/index.lock", dir);
	int			fd = open(path, O_RDWR | O_CREAT, 0640);

	CHECK(fd >= 0 && flock(fd, LOCK_EX) == 0);
	free(path);
	return fd;
}

/* Puts (then a flush, if asked) run by another thread, to see whether they wait. */
typedef struct async_put
{
	pthread_t	thread;
	store	   *s;
	uint64_t	family;
	uint64_t	from;
	uint64_t	to;
	bool		flush;
	int			rc;
	int			done;
} async_put;

static void *
async_put_run(void *p)
{
	async_put  *a = p;

	a->rc = put_blocks(a->s, a->family, a->from, a->to, SMALL);
	if (a->rc == 0 && a->flush)
		a->rc = store_flush(a->s);
	__atomic_store_n(&a->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void
async_start(async_put *a, store *s, uint64_t family, uint64_t from, uint64_t to, bool flush)
{
	*a = (async_put) {.s = s, .family = family, .from = from, .to = to, .flush = flush, .rc = -1};
	CHECK(pthread_create(&a->thread, NULL, async_put_run, a) == 0);
}

/* Has it finished within ms milliseconds? */
static bool
async_done_within(async_put *a, int ms)
{
	for (int i = 0; i < ms / 10 && !__atomic_load_n(&a->done, __ATOMIC_ACQUIRE); i++)
		usleep(10000);
	return __atomic_load_n(&a->done, __ATOMIC_ACQUIRE);
}

/*
 * While another process holds index.lock, a writer's puts go on through
 * sealed packs: it finds and reads its blocks (from the sealed packs, no
 * .tmp is left), another handle does not find them until they are inserted;
 * the seal that would leave 4 packs pending waits for the lock, and so does
 * store_flush; then everything is found everywhere.
 */
static void
test_deferred_insert(void)
{
	const uint64_t pack = 8192;
	char	   *dir = make_dir();
	store	   *a;
	store	   *b;
	async_put	op;
	uint64_t	found;
	uint64_t	intact;
	int			lock;

	CHECK_EQ_INT(store_open(dir, true, &a), 0);
	CHECK_EQ_INT(store_open(dir, false, &b), 0);
	lock = hold_index_lock(dir);
	async_start(&op, a, 60, 0, 3 * pack, false);
	CHECK(async_done_within(&op, 30000));
	if (!op.done)
		close(lock);
	pthread_join(op.thread, NULL);
	CHECK_EQ_INT(op.rc, 0);
	CHECK_EQ_INT(count_files(dir, ".pack", NULL), 3);
	CHECK_EQ_INT(count_files(dir, ".pack.tmp", NULL), 0);
	CHECK_EQ_INT(found_intact(a, 60, 0, 3 * pack, SMALL), 3 * pack);
	check_blocks(b, 60, 0, 3 * pack, SMALL, &found, &intact);
	CHECK_EQ_INT(found, 0);
	/* Putting them again stores nothing. */
	CHECK_EQ_INT(put_blocks(a, 60, 0, 3 * pack, SMALL), 0);
	CHECK_EQ_INT(count_files(dir, ".pack.tmp", NULL), 0);

	/* The 4th pending pack waits for the lock at its seal, then all four go in. */
	async_start(&op, a, 60, 3 * pack, 4 * pack + 10, false);
	CHECK(!async_done_within(&op, 300));
	check_blocks(b, 60, 0, 4 * pack, SMALL, &found, &intact);
	CHECK_EQ_INT(found, 0);
	close(lock);
	pthread_join(op.thread, NULL);
	CHECK_EQ_INT(op.rc, 0);
	CHECK_EQ_INT(found_intact(b, 60, 0, 4 * pack + 10, SMALL), 4 * pack);
	CHECK_EQ_INT(found_intact(a, 60, 0, 4 * pack + 10, SMALL), 4 * pack + 10);

	/* store_flush waits for the lock and inserts the deferred packs and the open one. */
	lock = hold_index_lock(dir);
	CHECK_EQ_INT(put_blocks(a, 61, 0, 2 * pack + 500, SMALL), 0);
	CHECK_EQ_INT(count_files(dir, ".pack.tmp", NULL), 1);
	CHECK_EQ_INT(found_intact(a, 61, 0, 2 * pack + 500, SMALL), 2 * pack + 500);
	check_blocks(b, 61, 0, 2 * pack + 500, SMALL, &found, &intact);
	CHECK_EQ_INT(found, 0);
	async_start(&op, a, 61, 0, 0, true);
	CHECK(!async_done_within(&op, 300));
	close(lock);
	pthread_join(op.thread, NULL);
	CHECK_EQ_INT(op.rc, 0);
	CHECK_EQ_INT(count_files(dir, ".pack.tmp", NULL), 0);
	/* That insert grew the index: b, holding the replaced file, catches up within 1024 lookups. */
	check_blocks(b, 61, 0, 2 * pack + 500, SMALL, &found, &intact);
	CHECK(found >= 2 * pack + 500 - 1024);
	CHECK_EQ_INT(found_intact(b, 61, 0, 2 * pack + 500, SMALL), 2 * pack + 500);
	CHECK_EQ_INT(found_intact(b, 60, 0, 4 * pack + 10, SMALL), 4 * pack + 10);
	CHECK_EQ_INT(store_close(a), 0);
	CHECK_EQ_INT(store_close(b), 0);

	/* With the lock free, a sealed pack goes in at once. */
	CHECK_EQ_INT(store_open(dir, false, &a), 0);
	CHECK_EQ_INT(store_open(dir, false, &b), 0);
	CHECK_EQ_INT(put_blocks(a, 62, 0, pack + 5, SMALL), 0);
	check_blocks(b, 62, 0, pack + 5, SMALL, &found, &intact);
	CHECK_EQ_INT(found, pack);
	CHECK_EQ_INT(store_close(a), 0);
	CHECK_EQ_INT(store_close(b), 0);
	remove_dir(dir);
}

/*
 * Another handle grows the index while a writer's packs are deferred; then
 * the writer's own deferred insert grows it again.  Every block is found
 * through the final index.
 */
static void
test_deferred_growth(void)
{
	const uint64_t pack = 8192;
	char	   *dir = make_dir();
	char	   *index = xasprintf("%s/index", dir);
	store	   *a;
	store	   *b;
	store	   *c;
	uint64_t	found;
	uint64_t	intact;
	int			lock;

	CHECK_EQ_INT(store_open(dir, true, &a), 0);
	CHECK_EQ_INT(store_open(dir, false, &b), 0);
	lock = hold_index_lock(dir);
	CHECK_EQ_INT(put_blocks(a, 63, 0, 3 * pack, SMALL), 0);
	close(lock);
	CHECK_EQ_INT(put_blocks(b, 64, 0, 50000, SMALL), 0);
	CHECK_EQ_INT(store_close(b), 0);
	CHECK_EQ_INT(file_size(index), 64 + 131072 * 64);
	/* a still has the replaced index open: its own blocks are pending, found all the same. */
	CHECK_EQ_INT(found_intact(a, 63, 0, 3 * pack, SMALL), 3 * pack);
	CHECK_EQ_INT(put_blocks(a, 63, 3 * pack, 3 * pack + 5000, SMALL), 0);
	CHECK_EQ_INT(store_open(dir, false, &c), 0);
	check_blocks(c, 63, 0, 3 * pack + 5000, SMALL, &found, &intact);
	CHECK_EQ_INT(found, 0);
	CHECK_EQ_INT(store_flush(a), 0);
	/* 50000 + 29576 entries pass 0.6 of 131072 slots. */
	CHECK_EQ_INT(file_size(index), 64 + 262144 * 64);
	CHECK_EQ_INT(store_close(c), 0);
	CHECK_EQ_INT(store_open(dir, false, &c), 0);
	CHECK_EQ_INT(found_intact(c, 63, 0, 3 * pack + 5000, SMALL), 3 * pack + 5000);
	CHECK_EQ_INT(found_intact(c, 64, 0, 50000, SMALL), 50000);
	CHECK_EQ_INT(store_close(c), 0);
	CHECK_EQ_INT(store_close(a), 0);
	free(index);
	remove_dir(dir);
}

/*
 * A writer killed while its sealed packs wait for the lock: their blocks are
 * not in the index (nothing it names is missing), its open pack is left as
 * .tmp; the store reopens, and reindex finds every block of the sealed packs.
 * Then a writer killed at a random instant while the lock comes and goes.
 */
static void
test_deferred_crash(void)
{
	const uint64_t pack = 8192;
	char	   *dir = make_dir();
	store	   *s;
	int			fds[2];
	int			status;
	uint64_t	child_found = 0;
	uint64_t	found;
	uint64_t	intact;
	int			lock;
	pid_t		pid;

	CHECK_EQ_INT(store_open(dir, true, &s), 0);
	CHECK_EQ_INT(put_blocks(s, 65, 0, 100, SMALL), 0);
	CHECK_EQ_INT(store_close(s), 0);
	lock = hold_index_lock(dir);
	CHECK(pipe(fds) == 0);
	pid = fork();
	if (pid == 0)
	{
		uint64_t	n = 0;

		close(fds[0]);
		if (store_open(dir, false, &s) != 0 || put_blocks(s, 66, 0, 2 * pack + 300, SMALL) != 0)
			_exit(2);
		check_blocks(s, 66, 0, 2 * pack + 300, SMALL, &n, &found);
		if (found != n || write(fds[1], &n, sizeof(n)) != sizeof(n))
			_exit(2);
		for (;;)
			pause();
	}
	close(fds[1]);
	CHECK(read(fds[0], &child_found, sizeof(child_found)) == sizeof(child_found));
	CHECK_EQ_INT(child_found, 2 * pack + 300);
	kill(pid, SIGKILL);
	CHECK(waitpid(pid, &status, 0) == pid && WIFSIGNALED(status));
	close(fds[0]);
	close(lock);

	CHECK_EQ_INT(store_open(dir, false, &s), 0);
	CHECK_EQ_INT(count_files(dir, ".pack", NULL), 3);
	CHECK_EQ_INT(count_files(dir, ".pack.tmp", NULL), 1);
	check_blocks(s, 66, 0, 2 * pack + 300, SMALL, &found, &intact);
	CHECK_EQ_INT(found, 0);
	CHECK_EQ_INT(found_intact(s, 65, 0, 100, SMALL), 100);
	CHECK_EQ_INT(store_reindex(s), 0);
	CHECK_EQ_INT(count_files(dir, ".pack.tmp", NULL), 0);
	CHECK_EQ_INT(found_intact(s, 66, 0, 2 * pack + 300, SMALL), 2 * pack);
	CHECK_EQ_INT(found_intact(s, 65, 0, 100, SMALL), 100);
	CHECK_EQ_INT(store_close(s), 0);

	/*
	 * Killed at a random instant (up to 40000 blocks put, a little at a
	 * time), the lock held and released by another process meanwhile.
	 */
	for (int round = 0; round < 2; round++)
	{
		pid = fork();
		if (pid == 0)
		{
			if (store_open(dir, false, &s) != 0)
				_exit(2);
			for (uint64_t i = 0; i < 40000; i += 1000)
			{
				if (put_blocks(s, 67 + (uint64_t) round, i, i + 1000, SMALL) != 0)
					_exit(2);
				usleep(4000);
			}
			for (;;)
				pause();
		}
		for (int k = 0; k < 5 + round * 3; k++)
		{
			lock = hold_index_lock(dir);
			usleep(40000);
			close(lock);
			usleep(20000 + 7000 * (useconds_t) round);
		}
		kill(pid, SIGKILL);
		CHECK(waitpid(pid, &status, 0) == pid && WIFSIGNALED(status));
		CHECK_EQ_INT(store_open(dir, false, &s), 0);
		found_intact(s, 67 + (uint64_t) round, 0, 40000, SMALL);
		CHECK_EQ_INT(store_reindex(s), 0);
		CHECK_EQ_INT(count_files(dir, ".pack.tmp", NULL), 0);
		found = found_intact(s, 67 + (uint64_t) round, 0, 40000, SMALL);
		/* Whole packs: a prefix of what it put. */
		CHECK_EQ_INT(found % pack, 0);
		CHECK_EQ_INT(found_intact(s, 67 + (uint64_t) round, 0, found, SMALL), found);
		CHECK_EQ_INT(found_intact(s, 66, 0, 2 * pack, SMALL), 2 * pack);
		CHECK_EQ_INT(store_close(s), 0);
	}
	remove_dir(dir);
}

/* An entry of the model of an index: what the store said of id when it was put. */
typedef struct model_entry
{
	uint8_t		id[HASH_LEN];
	store_loc	loc;
} model_entry;

static int
cmp_id(const void *x, const void *y)
{
	return memcmp(x, y, HASH_LEN);
}

/*
 * Read the index file with the layout of the spec and compare it with the
 * model: the valid slots hold exactly the model's ids, once each, at their
 * locations; every slot from an entry's home to the entry holds an entry (so
 * the spec's lookup finds it); the header counts the entries.
 */
static void
check_index_model(const char *index, model_entry *model, uint64_t n, uint64_t want_slots)
{
	int			fd = open(index, O_RDONLY);
	uint8_t		h[64];
	uint64_t	slots;
	uint8_t    *t;
	uint8_t    *valid;
	model_entry *got;
	uint64_t	count = 0;
	uint64_t	bad_runs = 0;
	uint64_t	mismatches = 0;

	CHECK(fd >= 0 && pread(fd, h, 64, 0) == 64);
	slots = le64(h + 16);
	CHECK_EQ_INT(slots, want_slots);
	CHECK_EQ_INT(file_size(index), (off_t) (64 + slots * 64));
	t = xmalloc(slots * 64);
	valid = xcalloc(slots, 1);
	got = xcalloc(slots, sizeof(model_entry));
	CHECK(pread(fd, t, slots * 64, 64) == (ssize_t) (slots * 64));
	close(fd);
	for (uint64_t i = 0; i < slots; i++)
		valid[i] = le32(t + i * 64 + 60) == store_crc32c(t + i * 64, 60, true);
	for (uint64_t i = 0; i < slots; i++)
	{
		const uint8_t *p = t + i * 64;

		if (!valid[i])
			continue;
		for (uint64_t k = le64(p) & (slots - 1); k != i; k = (k + 1) & (slots - 1))
			if (!valid[k])
			{
				bad_runs++;
				break;
			}
		memcpy(got[count].id, p, HASH_LEN);
		got[count].loc = (store_loc) {le64(p + 32), le64(p + 40), le32(p + 48), le32(p + 52), (compress_type) p[56]};
		count++;
	}
	CHECK_EQ_INT(bad_runs, 0);
	CHECK_EQ_INT(count, n);
	CHECK_EQ_INT(le64(h + 32), n);
	qsort(got, count, sizeof(model_entry), cmp_id);
	qsort(model, n, sizeof(model_entry), cmp_id);
	for (uint64_t i = 0; i < n && i < count; i++)
		mismatches += memcmp(got[i].id, model[i].id, HASH_LEN) != 0 || got[i].loc.pack_id != model[i].loc.pack_id ||
			got[i].loc.offset != model[i].loc.offset || got[i].loc.stored_len != model[i].loc.stored_len ||
			got[i].loc.raw_len != model[i].loc.raw_len || got[i].loc.ctype != model[i].loc.ctype;
	CHECK_EQ_INT(mismatches, 0);
	free(t);
	free(valid);
	free(got);
}

/* A chosen id: its first 8 bytes (the home, little-endian) are key; the rest from seed. */
static void
make_id(uint64_t key, uint64_t seed, uint8_t id[HASH_LEN])
{
	for (int i = 0; i < 8; i++)
		id[i] = (uint8_t) (key >> (8 * i));
	for (int k = 1; k < 4; k++)
	{
		uint64_t	x = mix(seed * 4 + (uint64_t) k);

		memcpy(id + 8 * k, &x, 8);
	}
}

/* Put a chosen id (its stored bytes: the id itself) and note where the store says it is. */
static void
put_model(store *s, const uint8_t id[HASH_LEN], model_entry *m, uint64_t *n)
{
	bool		found;

	CHECK_EQ_INT(store_put(s, id, COMPRESS_NONE, id, HASH_LEN, HASH_LEN), 0);
	memcpy(m[*n].id, id, HASH_LEN);
	CHECK_EQ_INT(store_lookup(s, id, &found, &m[*n].loc), 0);
	CHECK(found);
	(*n)++;
}

/* Every id of the model is found by lookup (through the store) at its location. */
static uint64_t
model_found(store *s, const model_entry *m, uint64_t n)
{
	uint64_t	ok = 0;

	for (uint64_t i = 0; i < n; i++)
	{
		store_loc	loc;
		bool		found;

		ok += store_lookup(s, m[i].id, &found, &loc) == 0 && found && loc.pack_id == m[i].loc.pack_id &&
			loc.offset == m[i].loc.offset;
	}
	return ok;
}

/*
 * Batched inserts of many ids, in clusters, with probe runs longer than a
 * read (up to past its buffer), runs wrapping at the end of the table, ids
 * stored by two handles at once (the second insert finds them present), and
 * garbage in empty slots: the index holds exactly the model, each id once.
 */
static void
test_batch_model(void)
{
	const uint64_t slots = 65536;
	char	   *dir = make_dir();
	char	   *index = xasprintf("%s/index", dir);
	model_entry *m = xcalloc(40000, sizeof(model_entry));
	model_entry *dup = xcalloc(600, sizeof(model_entry));
	uint64_t	n = 0;
	uint64_t	ndup = 0;
	uint8_t		garbage[64 * 8];
	uint8_t		id[HASH_LEN];
	store	   *a;
	store	   *b;

	for (size_t i = 0; i < sizeof(garbage); i++)
		garbage[i] = (uint8_t) mix(i + 77);
	CHECK_EQ_INT(store_open(dir, true, &a), 0);
	CHECK_EQ_INT(store_open(dir, false, &b), 0);
	/* Garbage in a few empty slots, where the entries below land: it is overwritten. */
	patch_file(index, 64 + 64 * 1000, garbage, sizeof(garbage));
	patch_file(index, 64 + 64 * (slots - 4), garbage, 4 * 64);
	/* Uniform ids. */
	for (uint64_t i = 0; i < 20000; i++)
	{
		make_id(mix(i + 1), 100 + i, id);
		put_model(a, id, m, &n);
	}
	/* Clusters: 1300 on one home (a run past the read buffer), 300 on another, 50 near the end. */
	for (uint64_t i = 0; i < 1300; i++)
	{
		make_id(mix(i + 900000) << 16 | 1000, 200000 + i, id);
		put_model(a, id, m, &n);
	}
	for (uint64_t i = 0; i < 300; i++)
	{
		make_id(mix(i + 800000) << 16 | 30000, 300000 + i, id);
		put_model(a, id, m, &n);
	}
	for (uint64_t i = 0; i < 50; i++)
	{
		make_id(mix(i + 700000) << 16 | (slots - 1 - i % 3), 400000 + i, id);
		put_model(a, id, m, &n);
	}
	/* Dense homes: every home of a range once, then again. */
	for (uint64_t i = 0; i < 1000; i++)
	{
		make_id(mix(i + 600000) << 16 | (40000 + i % 500), 500000 + i, id);
		put_model(a, id, m, &n);
	}
	/* The same ids put by both: b's insert, after a's, finds them. */
	for (uint64_t i = 0; i < 600; i++)
	{
		make_id(mix(i + 500000) << 16 | (50000 + i % 300), 600000 + i, id);
		put_model(a, id, m, &n);
		put_model(b, id, dup, &ndup);
	}
	CHECK_EQ_INT(store_flush(a), 0);
	CHECK_EQ_INT(store_flush(b), 0);
	CHECK_EQ_INT(n, 23250);
	check_index_model(index, m, n, slots);
	CHECK_EQ_INT(model_found(b, m, n), n);
	/* Another round into the same table, with deferred packs in the batch. */
	{
		int			lock = hold_index_lock(dir);

		for (uint64_t i = 0; i < 11000; i++)
		{
			make_id(mix(i + 7777777), 700000 + i, id);
			put_model(a, id, m, &n);
		}
		close(lock);
	}
	CHECK_EQ_INT(store_flush(a), 0);
	check_index_model(index, m, n, slots);
	CHECK_EQ_INT(store_close(a), 0);
	CHECK_EQ_INT(store_close(b), 0);
	CHECK_EQ_INT(store_open(dir, false, &a), 0);
	CHECK_EQ_INT(model_found(a, m, n), n);
	CHECK_EQ_INT(store_close(a), 0);
	free(m);
	free(dup);
	free(index);
	remove_dir(dir);
}

/* Set the advisory entry count of the index header (outside its checksum). */
static void
set_index_count(const char *index, uint64_t count)
{
	uint8_t		b[8];

	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t) (count >> (8 * i));
	patch_file(index, 32, b, 8);
}

/*
 * Growth by 2 and by 4 at once, with probe runs wrapping at the end of the
 * old table and of the new one, long runs, and garbage slots in the old
 * table: the grown table holds exactly the model, recounted; then reindex
 * (which grows from scratch) gives the same.
 */
static void
test_growth_model(void)
{
	char	   *dir = make_dir();
	char	   *index = xasprintf("%s/index", dir);
	model_entry *m = xcalloc(80000, sizeof(model_entry));
	uint8_t		garbage[64];
	uint8_t		id[HASH_LEN];
	uint64_t	n = 0;
	store	   *s;

	for (size_t i = 0; i < sizeof(garbage); i++)
		garbage[i] = (uint8_t) mix(i + 99);
	CHECK_EQ_INT(store_open(dir, true, &s), 0);
	/* Homes at the last slots of every table size up to 2^20: runs wrap in the old table and the new ones. */
	for (uint64_t i = 0; i < 60; i++)
	{
		make_id(mix(i + 1) << 20 | (0xfffff - i % 4), 1000 + i, id);
		put_model(s, id, m, &n);
	}
	for (uint64_t i = 0; i < 400; i++)
	{
		make_id(mix(i + 2000) << 16 | 12345, 2000 + i, id);
		put_model(s, id, m, &n);
	}
	for (uint64_t i = 0; n < 39000; i++)
	{
		make_id(mix(i + 3000000), 3000000 + i, id);
		put_model(s, id, m, &n);
	}
	CHECK_EQ_INT(store_flush(s), 0);
	check_index_model(index, m, n, 65536);
	/* Garbage in some empty slots of the old table: it is not copied. */
	for (uint64_t k = 0; k < 65536; k += 4099)
		if (index_slot_of(index, m[k % n].id) != (off_t) (64 + 64 * k))
		{
			uint8_t		slot[64];
			int			fd = open(index, O_RDONLY);

			CHECK(fd >= 0 && pread(fd, slot, 64, (off_t) (64 + 64 * k)) == 64);
			close(fd);
			if (le32(slot + 60) != store_crc32c(slot, 60, true))
				patch_file(index, (off_t) (64 + 64 * k), garbage, sizeof(garbage));
		}
	for (uint64_t i = 0; i < 1000; i++)
	{
		make_id(mix(i + 4000000), 4000000 + i, id);
		put_model(s, id, m, &n);
	}
	CHECK_EQ_INT(store_flush(s), 0);
	check_index_model(index, m, n, 131072);
	CHECK_EQ_INT(model_found(s, m, n), n);

	/*
	 * A count that says the table is full (it is read as at most the
	 * slots), and a batch of 28000 (deferred packs and the open one): it
	 * grows by 4 at once, then counts right.
	 */
	set_index_count(index, 1000000);
	{
		int			lock = hold_index_lock(dir);

		for (uint64_t i = 0; i < 10; i++)
		{
			make_id(mix(i + 5000000) << 20 | 0xfffff, 5000000 + i, id);
			put_model(s, id, m, &n);
		}
		for (uint64_t i = 10; i < 28000; i++)
		{
			make_id(mix(i + 5000000), 5000000 + i, id);
			put_model(s, id, m, &n);
		}
		close(lock);
	}
	CHECK_EQ_INT(store_flush(s), 0);
	check_index_model(index, m, n, 524288);
	CHECK_EQ_INT(model_found(s, m, n), n);
	CHECK_EQ_INT(store_close(s), 0);

	CHECK_EQ_INT(store_open(dir, false, &s), 0);
	CHECK_EQ_INT(model_found(s, m, n), n);
	CHECK_EQ_INT(store_reindex(s), 0);
	check_index_model(index, m, n, 131072);
	CHECK_EQ_INT(model_found(s, m, n), n);
	CHECK_EQ_INT(store_close(s), 0);
	free(m);
	free(index);
	remove_dir(dir);
}

/*
 * Growth of an index written by hand: a run of 30000 entries without an
 * empty slot (longer than the write-back window), a run wrapping from the
 * last slot to the first, an id twice (its second copy past an empty slot),
 * and garbage.  The grown table holds each id once, with its first copy's
 * location, and is a valid table.
 */
static void
test_growth_crafted(void)
{
	const uint64_t slots = 65536;
	char	   *dir = make_dir();
	char	   *index = xasprintf("%s/index", dir);
	model_entry *m = xcalloc(40000, sizeof(model_entry));
	uint8_t    *t = xcalloc(slots, 64);
	uint8_t		h[64] = {0};
	uint8_t		id[HASH_LEN];
	uint64_t	n = 0;
	uint32_t	crc;
	store	   *s;

	CHECK_EQ_INT(store_open(dir, true, &s), 0);
	CHECK_EQ_INT(store_close(s), 0);
	for (uint64_t k = 0; k < 30000; k++)
	{
		make_id(mix(k + 1) << 16 | (1000 + k), 10000000 + k, m[n].id);
		m[n].loc = (store_loc) {mix(k + 5), 16 + k * 100, 32, 32, COMPRESS_NONE};
		encode_slot(t + (1000 + k) * 64, m[n].id, &m[n].loc);
		n++;
	}
	for (uint64_t k = 0; k < 200; k++)
	{
		make_id(mix(k + 40000) << 16 | (slots - 100), 20000000 + k, m[n].id);
		m[n].loc = (store_loc) {mix(k + 6), 16 + k * 100, 32, 32, COMPRESS_ZST};
		encode_slot(t + ((slots - 100 + k) % slots) * 64, m[n].id, &m[n].loc);
		n++;
	}
	make_id(40000, 30000000, id);
	memcpy(m[n].id, id, HASH_LEN);
	m[n].loc = (store_loc) {77, 16, 32, 32, COMPRESS_NONE};
	encode_slot(t + 40000 * 64, id, &m[n].loc);
	encode_slot(t + 40002 * 64, id, &(store_loc) {78, 16, 32, 32, COMPRESS_NONE});
	n++;
	for (int k = 0; k < 64; k++)
		t[50000 * 64 + k] = (uint8_t) mix((uint64_t) k);
	memcpy(h, "PGKINDX1", 8);
	h[8] = 1;
	h[16 + 2] = 1;              /* 65536 slots */
	crc = crc32c_ref(h, 24);
	memcpy(h + 24, (uint8_t[4]) {crc, crc >> 8, crc >> 16, crc >> 24}, 4);
	h[32 + 2] = 1;              /* entries: the table is full, so it grows at the next insert */
	patch_file(index, 0, h, 64);
	patch_file(index, 64, t, slots * 64);

	CHECK_EQ_INT(store_open(dir, false, &s), 0);
	make_id(mix(99) << 16 | 1000, 40000000, id);
	put_model(s, id, m, &n);
	CHECK_EQ_INT(store_close(s), 0);
	check_index_model(index, m, n, 2 * slots);
	CHECK_EQ_INT(store_open(dir, false, &s), 0);
	CHECK_EQ_INT(model_found(s, m, n), n);
	CHECK_EQ_INT(store_close(s), 0);
	free(t);
	free(m);
	free(index);
	remove_dir(dir);
}

static ssize_t
write_enospc(int fd, const void *buf, size_t n)
{
	errno = ENOSPC;
	return -1;
}

/*
 * A write error in the open pack drops that pack and its blocks, not the
 * sealed packs waiting for the lock: the handle still finds and reads those,
 * and its flush inserts them.
 */
static void
test_deferred_write_error(void)
{
	const uint64_t pack = 8192;
	char	   *dir = make_dir();
	store	   *a;
	store	   *b;
	uint64_t	found;
	uint64_t	intact;
	int			lock;

	CHECK_EQ_INT(store_open(dir, true, &a), 0);
	lock = hold_index_lock(dir);
	CHECK_EQ_INT(put_blocks(a, 70, 0, 2 * pack, SMALL), 0);
	CHECK_EQ_INT(put_blocks(a, 70, 2 * pack, 2 * pack + 100, PAGE), 0);
	fio_sys.write = write_enospc;
	/* The 1 MiB write buffer fills up: its write fails. */
	CHECK_EQ_INT(put_blocks(a, 70, 2 * pack + 100, 2 * pack + 300, PAGE), ERR_FILE);
	fio_sys_reset();
	CHECK_EQ_INT(count_files(dir, ".pack.tmp", NULL), 0);
	CHECK_EQ_INT(found_intact(a, 70, 0, 2 * pack, SMALL), 2 * pack);
	check_blocks(a, 70, 2 * pack, 2 * pack + 300, PAGE, &found, &intact);
	CHECK_EQ_INT(found, 0);
	/* Later blocks go to a new pack. */
	CHECK_EQ_INT(put_blocks(a, 71, 0, 100, SMALL), 0);
	close(lock);
	CHECK_EQ_INT(store_flush(a), 0);
	CHECK_EQ_INT(store_open(dir, false, &b), 0);
	CHECK_EQ_INT(found_intact(b, 70, 0, 2 * pack, SMALL), 2 * pack);
	CHECK_EQ_INT(found_intact(b, 71, 0, 100, SMALL), 100);
	CHECK_EQ_INT(count_files(dir, ".pack", NULL), 3);
	CHECK_EQ_INT(store_close(b), 0);
	CHECK_EQ_INT(store_close(a), 0);
	remove_dir(dir);
}

/* What the open hook does to a new .pack.tmp, as a reindex could between its creation and its flock. */
static int race_removals;
static int race_locks;
static int race_lock_fd = -1;
static char *race_locked_path;

static int
racing_open(const char *path, int flags, mode_t mode)
{
	int			fd = open(path, flags, mode);

	if (fd < 0 || !str_ends_with(path, ".pack.tmp"))
		return fd;
	if (race_removals > 0)
	{
		race_removals--;
		CHECK(unlink(path) == 0);
	}
	else if (race_locks > 0)
	{
		race_locks--;
		race_lock_fd = open(path, O_RDONLY);
		CHECK(race_lock_fd >= 0 && flock(race_lock_fd, LOCK_EX | LOCK_NB) == 0);
		race_locked_path = xstrdup(path);
	}
	return fd;
}

/*
 * A writer creates its .pack.tmp without index.lock: if a reindex removes it
 * before the writer's flock, or holds its flock (about to remove it), the
 * writer starts another pack; the blocks are stored once, in one pack.
 */
static void
test_pack_create_race(void)
{
	char	   *dir = make_dir();
	store	   *s;

	CHECK_EQ_INT(store_open(dir, true, &s), 0);
	race_removals = 2;
	fio_sys.open = racing_open;
	CHECK_EQ_INT(put_blocks(s, 72, 0, 100, SMALL), 0);
	fio_sys_reset();
	CHECK_EQ_INT(race_removals, 0);
	CHECK_EQ_INT(count_files(dir, ".pack.tmp", NULL), 1);
	CHECK_EQ_INT(store_flush(s), 0);
	CHECK_EQ_INT(count_files(dir, ".pack", NULL), 1);

	race_locks = 1;
	fio_sys.open = racing_open;
	CHECK_EQ_INT(put_blocks(s, 73, 0, 100, SMALL), 0);
	fio_sys_reset();
	CHECK_EQ_INT(race_locks, 0);
	/* The "reindex" removes the file it locked. */
	CHECK_EQ_INT(count_files(dir, ".pack.tmp", NULL), 2);
	if (race_locked_path != NULL)
		CHECK(unlink(race_locked_path) == 0);
	close(race_lock_fd);
	CHECK_EQ_INT(store_flush(s), 0);
	CHECK_EQ_INT(count_files(dir, ".pack.tmp", NULL), 0);
	CHECK_EQ_INT(count_files(dir, ".pack", NULL), 2);
	CHECK_EQ_INT(store_close(s), 0);
	CHECK_EQ_INT(store_open(dir, false, &s), 0);
	CHECK_EQ_INT(found_intact(s, 72, 0, 100, SMALL), 100);
	CHECK_EQ_INT(found_intact(s, 73, 0, 100, SMALL), 100);
	CHECK_EQ_INT(store_reindex(s), 0);
	CHECK_EQ_INT(found_intact(s, 72, 0, 100, SMALL), 100);
	CHECK_EQ_INT(found_intact(s, 73, 0, 100, SMALL), 100);
	CHECK_EQ_INT(store_close(s), 0);
	free(race_locked_path);
	remove_dir(dir);
}

/* ---- reads through the read-ahead windows ---- */

/* Counts of the preads the store makes (index and packs), through the fio_sys hook. */
static uint64_t pread_calls;
static uint64_t pread_bytes;

static ssize_t
counting_pread(int fd, void *buf, size_t n, off_t off)
{
	ssize_t		r = pread(fd, buf, n, off);

	pread_calls++;
	if (r > 0)
		pread_bytes += (uint64_t) r;
	return r;
}

static void
count_preads(void)
{
	pread_calls = 0;
	pread_bytes = 0;
	fio_sys.pread = counting_pread;
}

/* Does block i of the family read back intact (and with the right lengths)? */
static bool
read_intact(store *s, uint64_t family, uint64_t i, uint32_t min, uint32_t max)
{
	uint8_t    *want = xmalloc(max);
	uint8_t    *got = xmalloc(max);
	uint8_t		id[HASH_LEN];
	uint32_t	len = make_block(family, i, min, max, want, id);
	store_loc	loc;
	bool		ok = store_read(s, id, got, max, &loc) == 0 && loc.stored_len == len && loc.raw_len == len &&
		loc.ctype == COMPRESS_NONE && memcmp(got, want, len) == 0;

	free(want);
	free(got);
	return ok;
}

/* Stored bytes of the records of blocks [from, to) of a family, headers included. */
static uint64_t
record_bytes(uint64_t family, uint64_t from, uint64_t to, uint32_t min, uint32_t max)
{
	uint8_t    *buf = xmalloc(max);
	uint8_t		id[HASH_LEN];
	uint64_t	n = 0;

	for (uint64_t i = from; i < to; i++)
		n += 56 + make_block(family, i, min, max, buf, id);
	free(buf);
	return n;
}

/*
 * 3000 blocks in one pack (24 MiB), read by fresh handles in put order (as
 * restore does), backwards, at random and with gaps.  Records of 8248 bytes
 * never end exactly where a window of 2^k bytes does, so reads in order
 * cross every window boundary with a record straddling it.  In order, the
 * reads cost a few preads in all (not three per block) and read each byte
 * about once; backwards or at random, they read little more than the
 * records themselves.
 */
static void
test_read_ahead(void)
{
	char	   *dir = make_dir();
	store	   *s;
	const uint64_t n = 3000;
	uint64_t	bytes = record_bytes(20, 0, n, PAGE);
	uint64_t	ok;

	CHECK_EQ_INT(store_open(dir, true, &s), 0);
	CHECK_EQ_INT(put_blocks(s, 20, 0, n, PAGE), 0);
	CHECK_EQ_INT(store_close(s), 0);
	CHECK_EQ_INT(count_files(dir, ".pack", NULL), 1);

	CHECK_EQ_INT(store_open(dir, false, &s), 0);
	count_preads();
	ok = 0;
	for (uint64_t i = 0; i < n; i++)
		ok += read_intact(s, 20, i, PAGE);
	fio_sys_reset();
	CHECK_EQ_INT(ok, n);
	CHECK(pread_calls <= 100);
	CHECK(pread_bytes <= bytes + bytes / 50);
	/* The next record in a window, for a buffer too small for it. */
	{
		uint8_t    *small = xmalloc(8191);
		uint8_t    *block = xmalloc(8192);
		uint8_t		id[HASH_LEN];

		for (uint64_t i = 10; i < 13; i++)
			CHECK(read_intact(s, 20, i, PAGE));
		make_block(20, 13, PAGE, block, id);
		CHECK_EQ_INT(store_read(s, id, small, 8191, NULL), ERR_INVALID);
		CHECK(read_intact(s, 20, 13, PAGE));
		free(small);
		free(block);
	}
	/* Again with the windows full. */
	ok = 0;
	for (uint64_t i = 0; i < n; i++)
		ok += read_intact(s, 20, i, PAGE);
	CHECK_EQ_INT(ok, n);
	CHECK_EQ_INT(store_close(s), 0);

	CHECK_EQ_INT(store_open(dir, false, &s), 0);
	count_preads();
	ok = 0;
	for (uint64_t i = n; i-- > 0;)
		ok += read_intact(s, 20, i, PAGE);
	fio_sys_reset();
	CHECK_EQ_INT(ok, n);
	CHECK(pread_calls <= 2 * n + 10);
	CHECK(pread_bytes <= 2 * bytes + n * 512);
	CHECK_EQ_INT(store_close(s), 0);

	CHECK_EQ_INT(store_open(dir, false, &s), 0);
	count_preads();
	ok = 0;
	for (uint64_t k = 0; k < n; k++)
		ok += read_intact(s, 20, mix(k) % n, PAGE);
	fio_sys_reset();
	CHECK_EQ_INT(ok, n);
	CHECK(pread_bytes <= 4 * bytes + n * 512);
	/* Every third, every other, then runs with growing gaps: all skips forward. */
	ok = 0;
	for (uint64_t i = 0; i < n; i += 3)
		ok += read_intact(s, 20, i, PAGE);
	CHECK_EQ_INT(ok, n / 3);
	ok = 0;
	for (uint64_t i = 0; i < n; i += 2)
		ok += read_intact(s, 20, i, PAGE);
	CHECK_EQ_INT(ok, n / 2);
	ok = 0;
	for (uint64_t i = 0, gap = 1; i < n; i += gap++)
		ok += read_intact(s, 20, i, PAGE);
	CHECK_EQ_INT(ok, 77);
	CHECK_EQ_INT(store_close(s), 0);
	remove_dir(dir);
}

/*
 * Records around the window size: those up to it are read through a
 * window, larger ones (up to the 1 MiB + 64 KiB limit) straight from the
 * file.  Small blocks sit between them; a flipped byte in a large record is
 * still detected.
 */
static void
test_read_large_records(void)
{
	char	   *dir = make_dir();
	store	   *s;
	const uint32_t sizes[] = {1048576 - 57, 1048576 - 56, 1048576 - 55, 1048576, 1048576 + 65536, 600000};
	const int nsizes = (int) (sizeof(sizes) / sizeof(sizes[0]));
	uint8_t    *data = xmalloc(1048576 + 65536);
	uint8_t    *got = xmalloc(1048576 + 65536);
	uint8_t		ids[6][HASH_LEN];
	char	   *pack = NULL;
	store_loc	loc;
	uint64_t	ok = 0;

	CHECK_EQ_INT(store_open(dir, true, &s), 0);
	for (int k = 0; k < nsizes; k++)
	{
		/* Stored as "zstd" so that stored_len may pass raw_len: the store does not decompress. */
		memset(data, 'a' + k, sizes[k]);
		hash_buf(data, sizes[k], ids[k]);
		CHECK_EQ_INT(put_blocks(s, 21, (uint64_t) k * 10, (uint64_t) k * 10 + 10, MIXED), 0);
		CHECK_EQ_INT(store_put(s, ids[k], COMPRESS_ZST, data, sizes[k], 1048576), 0);
	}
	CHECK_EQ_INT(put_blocks(s, 21, 60, 70, MIXED), 0);
	CHECK_EQ_INT(store_close(s), 0);
	CHECK_EQ_INT(count_files(dir, ".pack", &pack), 1);

	for (int pass = 0; pass < 2; pass++)
	{
		CHECK_EQ_INT(store_open(dir, false, &s), 0);
		for (int j = 0; j < nsizes; j++)
		{
			int			k = pass == 0 ? j : nsizes - 1 - j;

			for (uint64_t i = (uint64_t) k * 10; i < (uint64_t) k * 10 + 10; i++)
				ok += read_intact(s, 21, i, MIXED);
			memset(data, 'a' + k, sizes[k]);
			CHECK_EQ_INT(store_read(s, ids[k], got, 1048576 + 65536, &loc), 0);
			CHECK_EQ_INT(loc.stored_len, sizes[k]);
			CHECK(memcmp(got, data, sizes[k]) == 0);
			CHECK_EQ_INT(store_read(s, ids[k], got, sizes[k] - 1, NULL), ERR_INVALID);
		}
		for (uint64_t i = 60; i < 70; i++)
			ok += read_intact(s, 21, i, MIXED);
		CHECK_EQ_INT(store_close(s), 0);
	}
	CHECK_EQ_INT(ok, 140);

	/* The largest record (read around the windows) and one that just fits a window. */
	CHECK_EQ_INT(store_open(dir, false, &s), 0);
	for (int k = 4; k >= 1; k -= 3)
	{
		CHECK_EQ_INT(store_read(s, ids[k], got, 1048576 + 65536, &loc), 0);
		if (pack != NULL)
			flip_byte(pack, (off_t) (loc.offset + 56 + sizes[k] - 1));
	}
	CHECK_EQ_INT(store_close(s), 0);
	CHECK_EQ_INT(store_open(dir, false, &s), 0);
	for (int k = 4; k >= 1; k -= 3)
	{
		CHECK_EQ_INT(store_read(s, ids[k], got, 1048576 + 65536, NULL), ERR_CORRUPT);
		CHECK_CONTAINS(error_msg(), "checksum");
	}
	CHECK(read_intact(s, 21, 40, MIXED));
	CHECK_EQ_INT(store_close(s), 0);
	free(pack);
	free(data);
	free(got);
	remove_dir(dir);
}

/*
 * Reads alternating between packs, as for a file whose unchanged blocks are
 * in an older backup's pack: with two packs, each run keeps its window (a
 * few preads beyond one index lookup per block); with seven, more runs than
 * windows, everything still reads back intact.
 */
static void
test_read_alternating(void)
{
	char	   *dir = make_dir();
	store	   *w[7];
	store	   *s;
	const uint64_t n = 1000;
	uint64_t	ok = 0;

	CHECK_EQ_INT(store_open(dir, true, &s), 0);
	CHECK_EQ_INT(store_close(s), 0);
	for (int k = 0; k < 7; k++)
	{
		CHECK_EQ_INT(store_open(dir, false, &w[k]), 0);
		CHECK_EQ_INT(put_blocks(w[k], 30 + (uint64_t) k, 0, n, MIXED), 0);
	}
	for (int k = 0; k < 7; k++)
		CHECK_EQ_INT(store_close(w[k]), 0);
	CHECK_EQ_INT(count_files(dir, ".pack", NULL), 7);

	CHECK_EQ_INT(store_open(dir, false, &s), 0);
	count_preads();
	for (uint64_t i = 0; i < n; i++)
		ok += read_intact(s, 30, i, MIXED) + read_intact(s, 31, i, MIXED);
	fio_sys_reset();
	CHECK_EQ_INT(ok, 2 * n);
	CHECK(pread_calls <= 2 * n + 100);
	CHECK_EQ_INT(store_close(s), 0);

	ok = 0;
	CHECK_EQ_INT(store_open(dir, false, &s), 0);
	for (uint64_t i = 0; i < n; i++)
		for (uint64_t k = 0; k < 7; k++)
			ok += read_intact(s, 30 + k, i, MIXED);
	for (uint64_t i = n; i-- > 0;)
		for (uint64_t k = 0; k < 7; k++)
			ok += read_intact(s, 30 + (i + k) % 7, i, MIXED);
	CHECK_EQ_INT(ok, 14 * n);
	CHECK_EQ_INT(store_close(s), 0);
	remove_dir(dir);
}

/*
 * A handle's own pending blocks are read from its open pack (some still in
 * the write buffer), between reads of sealed packs, while the pack grows and
 * after it is sealed at STORE_PACK_TARGET and read through the windows.
 */
static void
test_read_pending(void)
{
	char	   *dir = make_dir();
	store	   *s;
	uint64_t	ok = 0;
	uint64_t	pend_ok = 0;
	uint64_t	sealed_ok = 0;
	const uint64_t n = 4500;

	CHECK_EQ_INT(store_open(dir, true, &s), 0);
	CHECK_EQ_INT(put_blocks(s, 40, 0, 500, MIXED), 0);
	CHECK_EQ_INT(store_flush(s), 0);
	for (uint64_t i = 0; i < n; i++)
	{
		CHECK_EQ_INT(put_blocks(s, 41, i, i + 1, PAGE), 0);
		/* The block just put, one put a little before, one far back, one of the sealed pack. */
		pend_ok += read_intact(s, 41, i, PAGE);
		pend_ok += read_intact(s, 41, i - i % 7, PAGE);
		pend_ok += read_intact(s, 41, i / 2, PAGE);
		ok += read_intact(s, 40, i % 500, MIXED);
	}
	CHECK_EQ_INT(pend_ok, 3 * n);
	CHECK_EQ_INT(ok, n);
	/* The first pack of family 41 was sealed on the way; the rest is still pending. */
	CHECK_EQ_INT(count_files(dir, ".pack", NULL), 2);
	CHECK_EQ_INT(count_files(dir, ".pack.tmp", NULL), 1);
	for (uint64_t i = 0; i < n; i++)
		sealed_ok += read_intact(s, 41, i, PAGE);
	CHECK_EQ_INT(sealed_ok, n);
	CHECK_EQ_INT(store_flush(s), 0);
	sealed_ok = 0;
	for (uint64_t i = n; i-- > 0;)
		sealed_ok += read_intact(s, 41, i, PAGE);
	CHECK_EQ_INT(sealed_ok, n);
	CHECK_EQ_INT(store_close(s), 0);
	remove_dir(dir);
}

/*
 * Bytes flipped in a pack after a handle read it (so they are in its
 * windows): a fresh handle detects each, in order or not, and reads the
 * records around them; a retry still fails, and succeeds once the byte is
 * repaired.  The first handle never returns wrong bytes.
 */
static void
test_read_corrupt_window(void)
{
	char	   *dir = make_dir();
	store	   *a;
	store	   *b;
	uint8_t		buf[8192];
	uint8_t		want[8192];
	uint8_t		id[HASH_LEN];
	uint8_t		bad_id[HASH_LEN];
	const uint64_t n = 2000;
	const uint64_t bad_data = 700;
	const uint64_t bad_header = 701;
	const uint64_t bad_after_gap = 1500;
	char	   *pack = NULL;
	store_loc	loc;
	uint64_t	ok = 0;
	bool		found;

	CHECK_EQ_INT(store_open(dir, true, &a), 0);
	CHECK_EQ_INT(put_blocks(a, 50, 0, n, MIXED), 0);
	CHECK_EQ_INT(store_close(a), 0);
	CHECK_EQ_INT(count_files(dir, ".pack", &pack), 1);
	CHECK_EQ_INT(store_open(dir, false, &a), 0);
	for (uint64_t i = 0; i < n; i++)
		ok += read_intact(a, 50, i, MIXED);
	CHECK_EQ_INT(ok, n);
	if (pack == NULL)
		goto out;
	make_block(50, bad_data, MIXED, buf, bad_id);
	CHECK_EQ_INT(store_lookup(a, bad_id, &found, &loc), 0);
	flip_byte(pack, (off_t) loc.offset + 56 + 10);
	make_block(50, bad_header, MIXED, buf, id);
	CHECK_EQ_INT(store_lookup(a, id, &found, &loc), 0);
	flip_byte(pack, (off_t) loc.offset + 50);       /* data_crc */
	make_block(50, bad_after_gap, MIXED, buf, id);
	CHECK_EQ_INT(store_lookup(a, id, &found, &loc), 0);
	flip_byte(pack, (off_t) loc.offset + 56 + loc.stored_len - 1);

	for (int pass = 0; pass < 3; pass++)
	{
		CHECK_EQ_INT(store_open(dir, false, &b), 0);
		ok = 0;
		for (uint64_t k = 0; k < n; k++)
		{
			/* In order; backwards; in order skipping the block before the last bad one. */
			uint64_t	i = pass == 1 ? n - 1 - k : k;
			uint32_t	len = make_block(50, i, MIXED, want, id);
			int			rc;

			if (pass == 2 && i == bad_after_gap - 1)
				continue;
			rc = store_read(b, id, buf, sizeof(buf), &loc);
			if (i == bad_data || i == bad_after_gap)
			{
				CHECK_EQ_INT(rc, ERR_CORRUPT);
				CHECK_CONTAINS(error_msg(), "checksum");
				CHECK_CONTAINS(error_msg(), pack);
				CHECK_EQ_INT(store_read(b, id, buf, sizeof(buf), NULL), ERR_CORRUPT);
			}
			else if (i == bad_header)
			{
				CHECK_EQ_INT(rc, ERR_CORRUPT);
				CHECK_CONTAINS(error_msg(), "record header does not match the index");
				CHECK_EQ_INT(store_read(b, id, buf, sizeof(buf), NULL), ERR_CORRUPT);
			}
			else
				ok += rc == 0 && loc.stored_len == len && memcmp(buf, want, len) == 0;
		}
		CHECK_EQ_INT(ok, pass == 2 ? n - 4 : n - 3);
		CHECK_EQ_INT(store_close(b), 0);
	}

	/* A retry reads the file again: once the byte is repaired, the block reads back. */
	CHECK_EQ_INT(store_open(dir, false, &b), 0);
	CHECK(read_intact(b, 50, bad_data - 1, MIXED));
	CHECK_EQ_INT(store_read(b, bad_id, buf, sizeof(buf), NULL), ERR_CORRUPT);
	CHECK_EQ_INT(store_lookup(b, bad_id, &found, &loc), 0);
	flip_byte(pack, (off_t) loc.offset + 56 + 10);
	CHECK(read_intact(b, 50, bad_data, MIXED));
	CHECK(read_intact(b, 50, bad_data + 2, MIXED));
	CHECK_EQ_INT(store_close(b), 0);

	/* The handle that read the pack before: intact bytes or an error, never wrong bytes. */
	for (uint64_t i = 0; i < n; i++)
	{
		uint32_t	len = make_block(50, i, MIXED, want, id);
		int			rc = store_read(a, id, buf, sizeof(buf), &loc);

		CHECK(rc == ERR_CORRUPT || (rc == 0 && loc.stored_len == len && memcmp(buf, want, len) == 0));
	}
out:
	CHECK_EQ_INT(store_close(a), 0);
	free(pack);
	remove_dir(dir);
}

/* The CRC-32C, with the crc32 instruction and with tables: check values, then against the definition. */
static void
test_crc32c(void)
{
	uint8_t		buf[8192 + 16];
	uint8_t		v[32];

#if defined(__x86_64__)
	printf("# crc32 instruction %s\n", __builtin_cpu_supports("sse4.2") ? "available" : "not available");
#endif
	for (int hw = 0; hw < 2; hw++)
	{
		CHECK_EQ_INT(store_crc32c("123456789", 9, hw), 0xe3069283u);
		CHECK_EQ_INT(store_crc32c("", 0, hw), 0);
		/* RFC 3720, B.4. */
		memset(v, 0, sizeof(v));
		CHECK_EQ_INT(store_crc32c(v, 32, hw), 0x8a9136aau);
		memset(v, 0xff, sizeof(v));
		CHECK_EQ_INT(store_crc32c(v, 32, hw), 0x62a8ab43u);
		for (int i = 0; i < 32; i++)
			v[i] = (uint8_t) i;
		CHECK_EQ_INT(store_crc32c(v, 32, hw), 0x46dd794eu);
		for (int i = 0; i < 32; i++)
			v[i] = (uint8_t) (31 - i);
		CHECK_EQ_INT(store_crc32c(v, 32, hw), 0x113fdb5cu);
	}
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t) mix(i);
	for (size_t len = 0; len < 300; len++)
		for (size_t at = 0; at < 8; at++)
		{
			uint32_t	want = crc32c_ref(buf + at, len);

			CHECK_EQ_INT(store_crc32c(buf + at, len, false), want);
			CHECK_EQ_INT(store_crc32c(buf + at, len, true), want);
		}
	CHECK_EQ_INT(store_crc32c(buf + 3, 8192, true), crc32c_ref(buf + 3, 8192));
	CHECK_EQ_INT(store_crc32c(buf + 3, 8192, false), crc32c_ref(buf + 3, 8192));
}

/* Read one block's record and index slot with the layout of doc/repository-format.md alone. */
static void
test_format_spec(void)
{
	char	   *dir = make_dir();
	char	   *index = xasprintf("%s/index", dir);
	char	   *pack = NULL;
	store	   *s;
	uint8_t		id[HASH_LEN];
	uint8_t		h[64];
	uint8_t		slot[64];
	uint8_t		rec[56 + 5];
	off_t		at;
	uint64_t	pack_id;
	int			fd;

	CHECK_EQ_INT(crc32c_ref("123456789", 9), 0xe3069283u);
	hash_buf("hello", 5, id);
	CHECK_EQ_INT(store_open(dir, true, &s), 0);
	CHECK_EQ_INT(store_put(s, id, COMPRESS_LZ4, "hello", 5, 100), 0);
	CHECK_EQ_INT(store_close(s), 0);

	CHECK_EQ_INT(count_files(dir, ".pack", &pack), 1);
	if (pack == NULL)
		goto out;
	pack_id = strtoull(strrchr(pack, '/') + 1, NULL, 16);
	CHECK_EQ_INT(file_size(pack), 16 + 56 + 5);
	fd = open(pack, O_RDONLY);
	CHECK(pread(fd, h, 16, 0) == 16 && pread(fd, rec, sizeof(rec), 16) == (ssize_t) sizeof(rec));
	close(fd);
	CHECK(memcmp(h, "PGKPACK1", 8) == 0);
	CHECK_EQ_INT(le32(h + 8), 1);
	CHECK_EQ_INT(le32(h + 12), 0);
	CHECK(memcmp(rec, "PGKR", 4) == 0);
	CHECK(memcmp(rec + 4, id, HASH_LEN) == 0);
	CHECK_EQ_INT(rec[36], COMPRESS_LZ4);
	CHECK(rec[37] == 0 && rec[38] == 0 && rec[39] == 0);
	CHECK_EQ_INT(le32(rec + 40), 100);
	CHECK_EQ_INT(le32(rec + 44), 5);
	CHECK_EQ_INT(le32(rec + 48), crc32c_ref("hello", 5));
	CHECK_EQ_INT(le32(rec + 52), crc32c_ref(rec, 52));
	CHECK(memcmp(rec + 56, "hello", 5) == 0);

	fd = open(index, O_RDONLY);
	CHECK(pread(fd, h, 64, 0) == 64);
	close(fd);
	CHECK(memcmp(h, "PGKINDX1", 8) == 0);
	CHECK_EQ_INT(le32(h + 8), 1);
	CHECK_EQ_INT(le64(h + 16), 65536);
	CHECK_EQ_INT(le32(h + 24), crc32c_ref(h, 24));
	CHECK_EQ_INT(le64(h + 32), 1);
	at = index_slot_of(index, id);
	CHECK_EQ_INT(at, 64 + (off_t) (le64(id) & 65535) * 64);
	fd = open(index, O_RDONLY);
	CHECK(pread(fd, slot, 64, at) == 64);
	close(fd);
	CHECK(le64(slot + 32) == pack_id);
	CHECK_EQ_INT(le64(slot + 40), 16);
	CHECK_EQ_INT(le32(slot + 48), 5);
	CHECK_EQ_INT(le32(slot + 52), 100);
	CHECK_EQ_INT(slot[56], COMPRESS_LZ4);
out:
	free(pack);
	free(index);
	remove_dir(dir);
}


/* ---- garbage collection ---- */

/*
 * The GC fixture: four packs of GC_N blocks each (families 31..34), marked
 * live: all of 31, none of 32, blocks 0..39 of 33 (so it is rewritten) and
 * 0..159 of 34 (kept, its 40 dead entries dropped).
 */
#define GC_N 200

static char *
gc_fixture(void)
{
	char	   *dir = make_dir();
	store	   *s;

	CHECK_EQ_INT(store_open(dir, true, &s), 0);
	for (uint64_t f = 31; f <= 34; f++)
		CHECK(put_blocks(s, f, 0, GC_N, MIXED) == 0 && store_flush(s) == 0);
	CHECK_EQ_INT(store_close(s), 0);
	CHECK_EQ_INT(count_files(dir, ".pack", NULL), 4);
	return dir;
}

static uint64_t gc_live_to[4] = {GC_N, 0, 40, 160};

static int
gc_mark_family(store_gc *g, uint64_t family, uint64_t to)
{
	uint8_t    *buf = xmalloc(8192);
	uint8_t		id[HASH_LEN];
	bool		was;
	int			rc = 0;

	for (uint64_t i = 0; i < to && rc == 0; i++)
	{
		make_block(family, i, MIXED, buf, id);
		rc = store_gc_mark(g, id, &was);
		if (rc == 0 && was)
			rc = ERR_INTERNAL;
	}
	free(buf);
	return rc;
}

/* A whole collection of dir with the fixture's marks; 0 or the first error. */
static int
gc_collect(const char *dir, bool dry_run, store_gc_stats *st, bool *busy)
{
	store	   *s;
	store_gc   *g = NULL;
	bool		b = false;
	int			rc = store_open(dir, false, &s);

	if (rc == 0)
		rc = store_gc_begin(s, &b, &g);
	for (uint64_t f = 0; rc == 0 && !b && f < 4; f++)
		rc = gc_mark_family(g, 31 + f, gc_live_to[f]);
	if (rc == 0 && !b)
		rc = store_gc_sweep(g, dry_run, st);
	store_gc_end(g);
	if (busy != NULL)
		*busy = b;
	if (s != NULL && store_close(s) != 0 && rc == 0)
		rc = ERR_FILE;
	return rc;
}

/* After a finished collection: live blocks intact, dead ones gone. */
static void
gc_check_final(const char *dir, int packs)
{
	store	   *s;

	CHECK_EQ_INT(store_open(dir, false, &s), 0);
	for (uint64_t f = 0; f < 4; f++)
	{
		uint64_t	found;
		uint64_t	intact;

		check_blocks(s, 31 + f, 0, GC_N, MIXED, &found, &intact);
		CHECK_EQ_INT(found, gc_live_to[f]);
		CHECK_EQ_INT(intact, gc_live_to[f]);
	}
	CHECK_EQ_INT(store_close(s), 0);
	CHECK_EQ_INT(count_files(dir, ".pack", NULL), packs);
	CHECK_EQ_INT(count_files(dir, ".pack.tmp", NULL), 0);
}

/* Every live block intact (dead ones may or may not be there yet). */
static void
gc_check_live(const char *dir)
{
	store	   *s;

	CHECK_EQ_INT(store_open(dir, false, &s), 0);
	for (uint64_t f = 0; f < 4; f++)
		if (gc_live_to[f] > 0)
			CHECK_EQ_INT(found_intact(s, 31 + f, 0, gc_live_to[f], MIXED), gc_live_to[f]);
	CHECK_EQ_INT(store_close(s), 0);
}

static void
test_gc_sweep(void)
{
	char	   *dir = gc_fixture();
	store_gc_stats st;
	store_gc_stats dry;
	bool		busy;

	/* A dry run counts what the real one does, and changes nothing. */
	CHECK_EQ_INT(gc_collect(dir, true, &dry, &busy), 0);
	CHECK(!busy);
	CHECK_EQ_INT(count_files(dir, ".pack", NULL), 4);
	{
		store	   *s;

		CHECK_EQ_INT(store_open(dir, false, &s), 0);
		CHECK_EQ_INT(found_intact(s, 32, 0, GC_N, MIXED), GC_N);
		CHECK_EQ_INT(store_close(s), 0);
	}
	CHECK_EQ_INT(gc_collect(dir, false, &st, &busy), 0);
	CHECK_EQ_INT(st.packs, 4);
	CHECK_EQ_INT(st.packs_deleted, 1);
	CHECK_EQ_INT(st.packs_rewritten, 1);
	CHECK_EQ_INT(st.blocks_live, GC_N + 40 + 160);
	CHECK_EQ_INT(st.blocks_removed, GC_N + 160 + 40);
	CHECK(st.bytes_after < st.bytes_before);
	CHECK_EQ_INT(dry.packs_deleted, st.packs_deleted);
	CHECK_EQ_INT(dry.packs_rewritten, st.packs_rewritten);
	CHECK_EQ_INT(dry.blocks_removed, st.blocks_removed);
	CHECK_EQ_INT(dry.bytes_before, st.bytes_before);
	/* Packs 31 and 34 stay, 32 and 33 go, and 33's live blocks are in a new pack. */
	gc_check_final(dir, 3);
	/* Again: nothing left to collect. */
	CHECK_EQ_INT(gc_collect(dir, false, &st, &busy), 0);
	CHECK_EQ_INT(st.blocks_removed + st.packs_deleted + st.packs_rewritten, 0);
	gc_check_final(dir, 3);
	/* Reindexing from the packs finds the live blocks where they are now. */
	{
		store	   *s;

		CHECK_EQ_INT(store_open(dir, false, &s), 0);
		CHECK_EQ_INT(store_reindex(s), 0);
		CHECK_EQ_INT(found_intact(s, 33, 0, 40, MIXED), 40);
		CHECK_EQ_INT(store_close(s), 0);
	}
	remove_dir(dir);
}

/* A mark of an id the store lacks is ERR_NOT_FOUND, and a store another handle holds is busy. */
static void
test_gc_lease(void)
{
	char	   *dir = gc_fixture();
	store	   *s;
	store	   *other;
	store_gc   *g;
	store_gc_stats st;
	uint8_t		id[HASH_LEN] = {1, 2, 3};
	bool		busy;
	bool		was;
	int			fds[2];
	int			status;
	char		c;
	pid_t		pid;

	CHECK_EQ_INT(store_open(dir, false, &s), 0);
	CHECK_EQ_INT(store_open(dir, false, &other), 0);
	CHECK_EQ_INT(store_gc_begin(s, &busy, &g), 0);
	CHECK(busy && g == NULL);
	CHECK_EQ_INT(store_close(other), 0);
	CHECK_EQ_INT(store_gc_begin(s, &busy, &g), 0);
	CHECK(!busy && g != NULL);
	CHECK_EQ_INT(store_gc_mark(g, id, &was), ERR_NOT_FOUND);
	CHECK_CONTAINS(error_msg(), "is not in block store");

	/* A handle opened during a collection waits for it to end. */
	CHECK(pipe(fds) == 0);
	pid = fork();
	if (pid == 0)
	{
		store	   *w;

		close(fds[0]);
		_exit(store_open(dir, false, &w) == 0 && write(fds[1], "o", 1) == 1 && store_close(w) == 0 ? 0 : 1);
	}
	close(fds[1]);
	usleep(300 * 1000);
	CHECK_EQ_INT(fcntl(fds[0], F_SETFL, O_NONBLOCK), 0);
	CHECK(read(fds[0], &c, 1) < 0 && errno == EAGAIN);
	store_gc_end(g);
	CHECK_EQ_INT(fcntl(fds[0], F_SETFL, 0), 0);
	CHECK(read(fds[0], &c, 1) == 1 && c == 'o');
	CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
	close(fds[0]);
	CHECK_EQ_INT(store_close(s), 0);
	/* Nothing was swept. */
	CHECK_EQ_INT(gc_collect(dir, true, &st, &busy), 0);
	CHECK_EQ_INT(st.blocks_removed, GC_N + 160 + 40);
	remove_dir(dir);
}

/* Counting wrappers: how many file-changing calls a whole collection makes. */
static uint64_t gc_calls;

static ssize_t
count_write(int fd, const void *b, size_t n)
{
	gc_calls++;
	return write(fd, b, n);
}

static ssize_t
count_pwrite(int fd, const void *b, size_t n, off_t off)
{
	gc_calls++;
	return pwrite(fd, b, n, off);
}

static int
count_fsync(int fd)
{
	gc_calls++;
	return fsync(fd);
}

static int
count_rename(const char *a, const char *b)
{
	gc_calls++;
	return rename(a, b);
}

static int
count_unlink(const char *p)
{
	gc_calls++;
	return unlink(p);
}

static void
copy_dir(const char *from, const char *to)
{
	char	   *cmd = xasprintf("rm -rf '%s' && cp -a '%s' '%s'", to, from, to);

	CHECK_EQ_INT(system(cmd), 0);
	free(cmd);
}

/* The file-changing calls of an uninterrupted collection of a copy of pristine in dir. */
static uint64_t
gc_count_calls(const char *pristine, const char *dir)
{
	store_gc_stats st;

	copy_dir(pristine, dir);
	gc_calls = 0;
	fio_sys.write = count_write;
	fio_sys.pwrite = count_pwrite;
	fio_sys.fsync = count_fsync;
	fio_sys.rename = count_rename;
	fio_sys.unlink = count_unlink;
	CHECK_EQ_INT(gc_collect(dir, false, &st, NULL), 0);
	fio_sys_reset();
	return gc_calls;
}

/*
 * SIGKILL at many points of a collection (every file-changing call near the
 * commit points, evenly spread in between): after each, every live block
 * reads back intact, and a collection run to its end reaches the same
 * final state as an uninterrupted one.
 */
/*
 * A collection of a copy of the fixture for each fault point k (every
 * file-changing call near both ends, where set-up, install and deletes are,
 * and about 50 in between), fault(dir, k) running it with the fault at the
 * k-th call and saying whether the fault hit.  After each, every live block
 * reads back intact and a collection run to its end reaches the same final
 * state as an uninterrupted one.  Returns how many faults hit.
 */
static int
gc_fault_points(const char *suffix, bool (*fault) (const char *dir, uint64_t k), uint64_t *total_out)
{
	char	   *pristine = gc_fixture();
	char	   *dir = xasprintf("%s.%s", pristine, suffix);
	store_gc_stats st;
	uint64_t	total = gc_count_calls(pristine, dir);
	int			hits = 0;

	CHECK(total > 100);
	for (uint64_t k = 1; k <= total;)
	{
		copy_dir(pristine, dir);
		if (fault(dir, k))
			hits++;
		gc_check_live(dir);
		CHECK_EQ_INT(gc_collect(dir, false, &st, NULL), 0);
		gc_check_final(dir, 3);
		k += k < 30 || k + 40 > total ? 1 : (total - 70) / 50 + 1;
	}
	remove_dir(dir);
	remove_dir(pristine);
	*total_out = total;
	return hits;
}

/* A collection killed with SIGKILL just before its k-th file-changing call: whether it was. */
static bool
gc_kill_at(const char *dir, uint64_t k)
{
	store_gc_stats st;
	int			status;
	pid_t		pid = fork();

	if (pid == 0)
	{
		fio_sys_kill_at(k);
		_exit(gc_collect(dir, false, &st, NULL) == 0 ? 0 : 1);
	}
	CHECK(waitpid(pid, &status, 0) == pid);
	if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
		return true;
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	return false;
}

/* SIGKILL at many points of a collection (gc_fault_points). */
static void
test_gc_killed(void)
{
	uint64_t	total;
	int			kills = gc_fault_points("run", gc_kill_at, &total);

	CHECK(kills >= 50);
	printf("# %d kills over %" PRIu64 " file-changing calls\n", kills, total);
}

/* The k-th file-changing call fails: writes with ENOSPC (a full disk), the others with EIO. */
static uint64_t fail_at;

static bool
fail_now(int err)
{
	if (++gc_calls != fail_at)
		return false;
	errno = err;
	return true;
}

static ssize_t
fail_write(int fd, const void *b, size_t n)
{
	return fail_now(ENOSPC) ? -1 : write(fd, b, n);
}

static ssize_t
fail_pwrite(int fd, const void *b, size_t n, off_t off)
{
	return fail_now(ENOSPC) ? -1 : pwrite(fd, b, n, off);
}

static int
fail_fsync(int fd)
{
	return fail_now(EIO) ? -1 : fsync(fd);
}

static int
fail_rename(const char *a, const char *b)
{
	return fail_now(EIO) ? -1 : rename(a, b);
}

static int
fail_unlink(const char *p)
{
	return fail_now(EIO) ? -1 : unlink(p);
}

/* A collection whose k-th file-changing call fails: whether the collection failed, with a message. */
static bool
gc_fail_at(const char *dir, uint64_t k)
{
	store_gc_stats st;
	int			rc;

	gc_calls = 0;
	fail_at = k;
	fio_sys.write = fail_write;
	fio_sys.pwrite = fail_pwrite;
	fio_sys.fsync = fail_fsync;
	fio_sys.rename = fail_rename;
	fio_sys.unlink = fail_unlink;
	rc = gc_collect(dir, false, &st, NULL);
	fio_sys_reset();
	if (rc == 0)
		return false;
	CHECK(strlen(error_msg()) > 0);
	error_clear();
	return true;
}

/*
 * A full disk or an I/O error at any file-changing call of a collection
 * (rewriting packs, building index.gc, installing it, deleting packs): the
 * collection fails with an error or finishes, every live block still reads
 * back, and the next collection completes (gc_fault_points).
 */
static void
test_gc_errors(void)
{
	uint64_t	total;
	int			failed = gc_fault_points("err", gc_fail_at, &total);

	CHECK(failed >= 50);
	printf("# %d failed collections over %" PRIu64 " file-changing calls\n", failed, total);
}

int
main(void)
{
	RUN(test_format_spec);
	RUN(test_roundtrip_growth);
	RUN(test_pack_rollover);
	RUN(test_invalid_put);
	RUN(test_duplicate);
	RUN(test_puts_after_lookups);
	RUN(test_visibility);
	RUN(test_crash_unflushed);
	RUN(test_crash_killed);
	RUN(test_corrupt_record);
	RUN(test_missing_pack);
	RUN(test_check);
	RUN(test_not_found);
	RUN(test_torn_slots);
	RUN(test_reindex);
	RUN(test_concurrent);
	RUN(test_deferred_insert);
	RUN(test_deferred_growth);
	RUN(test_deferred_crash);
	RUN(test_batch_model);
	RUN(test_growth_model);
	RUN(test_growth_crafted);
	RUN(test_deferred_write_error);
	RUN(test_pack_create_race);
	RUN(test_read_ahead);
	RUN(test_read_large_records);
	RUN(test_read_alternating);
	RUN(test_read_pending);
	RUN(test_read_corrupt_window);
	RUN(test_crc32c);
	RUN(test_gc_sweep);
	RUN(test_gc_lease);
	RUN(test_gc_killed);
	RUN(test_gc_errors);
	return harness_done();
}
