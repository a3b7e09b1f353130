/*
 * test_compress.c: block codec round trips and corruption detection, and the
 * io.h stream chain (hash, compress, decompress, file, copy).
 */
#include "harness.h"

#include "compress.h"
#include "error.h"
#include "fileio.h"
#include "hash.h"
#include "io.h"
#include "mem.h"

#include <fcntl.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/test_compress.XXXXXX";

static const compress_type all_types[] = {COMPRESS_NONE, COMPRESS_ZST, COMPRESS_LZ4};

/* Deterministic pseudo-random bytes (xorshift), so a failure reproduces. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t
rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* Page-like data: text and numbers, a run of zeros, some noise. */
static void
fill_page_like(uint8_t *buf, size_t n)
{
	for (size_t i = 0; i < n; i++)
	{
		size_t		in_page = i % 8192;

		if (in_page >= 6000)
			buf[i] = 0;
		else if (in_page % 64 < 8)
			buf[i] = (uint8_t) rng();
		else
			buf[i] = (uint8_t) "customer 12345 order shipped "[in_page % 29];
	}
}

static void
fill_random(uint8_t *buf, size_t n)
{
	for (size_t i = 0; i < n; i++)
		buf[i] = (uint8_t) rng();
}

static void
test_names(void)
{
	CHECK_EQ_INT(compress_type_parse("none"), COMPRESS_NONE);
	CHECK_EQ_INT(compress_type_parse("zst"), COMPRESS_ZST);
	CHECK_EQ_INT(compress_type_parse("lz4"), COMPRESS_LZ4);
	CHECK_EQ_INT(compress_type_parse("gzip"), -1);
	CHECK_EQ_INT(compress_type_parse(""), -1);
	CHECK_EQ_STR(compress_type_name(COMPRESS_ZST), "zst");
	CHECK_EQ_STR(compress_type_name(COMPRESS_NONE), "none");
	CHECK_EQ_STR(compress_type_ext(COMPRESS_NONE), "raw");
	CHECK_EQ_STR(compress_type_ext(COMPRESS_LZ4), "lz4");
	CHECK_EQ_STR(compress_type_ext(COMPRESS_ZST), "zst");
	CHECK_EQ_INT(compress_default_level(COMPRESS_ZST), 3);
	CHECK_EQ_INT(compress_default_level(COMPRESS_LZ4), 1);
	CHECK_EQ_INT(compress_default_level(COMPRESS_NONE), 0);
}

/* Compress and decompress one buffer; returns the compressed size. */
static size_t
block_roundtrip(block_codec *c, compress_type type, const uint8_t *src, size_t n)
{
	size_t		cap = block_codec_bound(c, n);
	uint8_t    *z = xmalloc(cap);
	uint8_t    *back = xmalloc(n + 1);
	size_t		zlen = 0;

	CHECK_EQ_INT(block_compress(c, src, n, z, cap, &zlen), 0);
	CHECK(zlen <= cap);
	CHECK_EQ_INT(block_decompress(c, type, z, zlen, back, n), 0);
	CHECK(memcmp(back, src, n) == 0);
	free(z);
	free(back);
	return zlen;
}

static void
test_block_roundtrip(void)
{
	static const size_t sizes[] = {0, 1, 100, 8191, 8192, 8193, 65536, 1 << 20};
	uint8_t    *page = xmalloc(1 << 20);
	uint8_t    *noise = xmalloc(1 << 20);

	fill_page_like(page, 1 << 20);
	fill_random(noise, 1 << 20);
	for (size_t t = 0; t < 3; t++)
	{
		block_codec *c = block_codec_new(all_types[t], compress_default_level(all_types[t]));

		for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++)
		{
			size_t		zp = block_roundtrip(c, all_types[t], page, sizes[s]);

			block_roundtrip(c, all_types[t], noise, sizes[s]);
			/* Page-like data must actually shrink when compressed. */
			if (all_types[t] != COMPRESS_NONE && sizes[s] >= 8192)
				CHECK(zp < sizes[s] / 2);
			if (all_types[t] == COMPRESS_NONE)
				CHECK_EQ_INT(zp, sizes[s]);
		}
		/* Many blocks through one codec: contexts are reused correctly. */
		for (int i = 0; i < 200; i++)
			block_roundtrip(c, all_types[t], page + (i * 4099) % (1 << 19), 8192);
		block_codec_free(c);
	}
	free(page);
	free(noise);
}

/* A codec decompresses any type, not only its own. */
static void
test_block_cross_type(void)
{
	block_codec *zc = block_codec_new(COMPRESS_ZST, 3);
	block_codec *lc = block_codec_new(COMPRESS_LZ4, 1);
	uint8_t		page[8192];
	uint8_t		z[9000];
	uint8_t		back[8192];
	size_t		zlen;

	fill_page_like(page, sizeof(page));
	CHECK_EQ_INT(block_compress(lc, page, sizeof(page), z, sizeof(z), &zlen), 0);
	CHECK_EQ_INT(block_decompress(zc, COMPRESS_LZ4, z, zlen, back, sizeof(back)), 0);
	CHECK(memcmp(back, page, sizeof(page)) == 0);
	CHECK_EQ_INT(block_compress(zc, page, sizeof(page), z, sizeof(z), &zlen), 0);
	CHECK_EQ_INT(block_decompress(lc, COMPRESS_ZST, z, zlen, back, sizeof(back)), 0);
	CHECK(memcmp(back, page, sizeof(page)) == 0);
	block_codec_free(zc);
	block_codec_free(lc);
}

static void
test_block_corrupt(void)
{
	uint8_t		page[8192];
	uint8_t		z[9000];
	/* Guard bytes after the output catch any overrun past raw_len. */
	uint8_t		back[8192 + 64];

	fill_page_like(page, sizeof(page));
	for (size_t t = 1; t < 3; t++)
	{
		compress_type type = all_types[t];
		block_codec *c = block_codec_new(type, compress_default_level(type));
		size_t		zlen;
		uint8_t		bad[9000];

		CHECK_EQ_INT(block_compress(c, page, sizeof(page), z, sizeof(z), &zlen), 0);

		/* Wrong raw_len either way; no byte written past raw_len. */
		memset(back, 0xee, sizeof(back));
		CHECK_EQ_INT(block_decompress(c, type, z, zlen, back, 4096), ERR_CORRUPT);
		for (size_t i = 4096; i < sizeof(back); i++)
			if (back[i] != 0xee)
			{
				CHECK(back[i] == 0xee);
				break;
			}
		CHECK_EQ_INT(block_decompress(c, type, z, zlen, back, 8193), ERR_CORRUPT);
		CHECK_CONTAINS(error_msg(), compress_type_name(type));

		/* Truncated at several points. */
		for (size_t cut = 0; cut < zlen; cut += 1 + zlen / 7)
			CHECK_EQ_INT(block_decompress(c, type, z, cut, back, 8192), ERR_CORRUPT);
		CHECK_EQ_INT(block_decompress(c, type, z, zlen - 1, back, 8192), ERR_CORRUPT);

		/* Garbage instead of a frame, and a damaged frame header. */
		fill_random(bad, sizeof(bad));
		CHECK_EQ_INT(block_decompress(c, type, bad, 500, back, 8192), ERR_CORRUPT);
		memcpy(bad, z, zlen);
		bad[0] ^= 0xff;
		CHECK_EQ_INT(block_decompress(c, type, bad, zlen, back, 8192), ERR_CORRUPT);

		/* Trailing bytes after the frame. */
		memcpy(bad, z, zlen);
		bad[zlen] = 0x42;
		CHECK_EQ_INT(block_decompress(c, type, bad, zlen + 1, back, 8192), ERR_CORRUPT);

		/* After all those errors the codec still works. */
		CHECK_EQ_INT(block_decompress(c, type, z, zlen, back, 8192), 0);
		CHECK(memcmp(back, page, sizeof(page)) == 0);
		block_codec_free(c);
	}

	block_codec *n = block_codec_new(COMPRESS_NONE, 0);
	size_t		len;

	CHECK_EQ_INT(block_decompress(n, COMPRESS_NONE, page, 100, back, 101), ERR_CORRUPT);
	CHECK_EQ_INT(block_decompress(n, (compress_type) 7, page, 100, back, 100), ERR_FORMAT);
	CHECK_EQ_INT(block_compress(n, page, 100, back, 99, &len), ERR_COMPRESS);
	block_codec_free(n);
}

/* A pipe of stages: (hash ->) compress -> mem, then decompress -> mem. */
static void
stream_roundtrip(compress_type type, int threads, const uint8_t *data, size_t n)
{
	io_writer  *zmem = io_mem_writer_new();
	io_writer  *head = io_hash_writer_new(io_compress_writer_new(type, compress_default_level(type), threads, zmem));
	io_writer  *out = io_mem_writer_new();
	io_writer  *dec = io_decompress_writer_new(type, out);
	uint8_t		digest[HASH_LEN];
	uint8_t		expect[HASH_LEN];
	uint64_t	bytes = 0;
	const uint8_t *z;
	const uint8_t *back;
	size_t		zlen;
	size_t		back_len;

	for (size_t off = 0; off < n;)
	{
		size_t		chunk = rng() % 300000;

		chunk = chunk > n - off ? n - off : chunk;
		CHECK_EQ_INT(io_write(head, data + off, chunk), 0);
		off += chunk;
	}
	CHECK_EQ_INT(io_close(head), 0);
	io_hash_writer_result(head, digest, &bytes);
	hash_buf(data, n, expect);
	CHECK(memcmp(digest, expect, HASH_LEN) == 0);
	CHECK_EQ_INT(bytes, n);

	z = io_mem_writer_data(zmem, &zlen);
	if (type != COMPRESS_NONE)
		CHECK(zlen < n / 2);
	/* Feed the compressed stream in random pieces, down to single bytes. */
	for (size_t off = 0; off < zlen;)
	{
		size_t		chunk = rng() % 4 == 0 ? 1 : rng() % 70000;

		chunk = chunk > zlen - off ? zlen - off : chunk;
		CHECK_EQ_INT(io_write(dec, z + off, chunk), 0);
		off += chunk;
	}
	CHECK_EQ_INT(io_close(dec), 0);
	back = io_mem_writer_data(out, &back_len);
	CHECK_EQ_INT(back_len, n);
	CHECK(back_len == n && memcmp(back, data, n) == 0);
	io_free(head);
	io_free(dec);
}

static void
test_stream_roundtrip(void)
{
	size_t		n = 20 << 20;
	uint8_t    *data = xmalloc(n);

	fill_page_like(data, n);
	stream_roundtrip(COMPRESS_ZST, 1, data, n);
	stream_roundtrip(COMPRESS_ZST, 2, data, n);
	stream_roundtrip(COMPRESS_LZ4, 0, data, n);
	stream_roundtrip(COMPRESS_NONE, 0, data, n);
	free(data);
}

/* Compress a buffer in one write; returns the compressed stream (caller frees) and its length. */
static uint8_t *
compress_stream(compress_type type, const uint8_t *data, size_t n, size_t *zlen)
{
	io_writer  *mem = io_mem_writer_new();
	io_writer  *w = io_compress_writer_new(type, compress_default_level(type), 1, mem);
	const uint8_t *z;
	uint8_t    *copy;
	size_t		again;

	CHECK_EQ_INT(io_write(w, data, n), 0);
	CHECK_EQ_INT(io_close(w), 0);
	z = io_mem_writer_data(mem, zlen);
	copy = xmalloc(*zlen + 1);
	memcpy(copy, z, *zlen);
	/* Closing twice adds nothing (no second, empty frame). */
	CHECK_EQ_INT(io_close(w), 0);
	io_mem_writer_data(mem, &again);
	CHECK_EQ_INT(again, *zlen);
	io_free(w);
	return copy;
}

/*
 * Decompress src[0..n) in one write; returns write's code, or close's when
 * write succeeded.  The output is appended to out when out is not NULL.
 */
static int
decompress_stream(compress_type type, const uint8_t *src, size_t n, strbuf *out)
{
	io_writer  *mem = io_mem_writer_new();
	io_writer  *w = io_decompress_writer_new(type, mem);
	int			rc = io_write(w, src, n);
	const uint8_t *data;
	size_t		len;

	if (rc == 0)
		rc = io_close(w);
	data = io_mem_writer_data(mem, &len);
	if (out != NULL)
		sb_appendn(out, data, len);
	io_free(w);
	return rc;
}

static void
test_stream_corrupt(void)
{
	size_t		n = 1 << 20;
	uint8_t    *data = xmalloc(n);

	fill_page_like(data, n);
	for (size_t t = 1; t < 3; t++)
	{
		compress_type type = all_types[t];
		size_t		zlen = 0;
		uint8_t    *z = compress_stream(type, data, n, &zlen);
		strbuf		out = STRBUF_INIT;

		CHECK_EQ_INT(decompress_stream(type, z, zlen, &out), 0);
		CHECK(out.len == n && memcmp(out.buf, data, n) == 0);
		sb_free(&out);

		/* Truncation anywhere, even just the last byte, is detected by close. */
		CHECK_EQ_INT(decompress_stream(type, z, zlen - 1, NULL), ERR_CORRUPT);
		CHECK_CONTAINS(error_msg(), "truncated");
		CHECK_EQ_INT(decompress_stream(type, z, zlen / 2, NULL), ERR_CORRUPT);
		CHECK_EQ_INT(decompress_stream(type, z, 0, NULL), ERR_CORRUPT);

		/* A flipped byte in the data fails the content checksum or the decoder. */
		z[zlen / 2] ^= 0x55;
		CHECK_EQ_INT(decompress_stream(type, z, zlen, NULL), ERR_CORRUPT);
		CHECK_CONTAINS(error_msg(), compress_type_name(type));
		z[zlen / 2] ^= 0x55;
		z[0] ^= 0xff;
		CHECK_EQ_INT(decompress_stream(type, z, zlen, NULL), ERR_CORRUPT);
		free(z);

		/* An empty stream is still a valid frame. */
		z = compress_stream(type, data, 0, &zlen);
		CHECK(zlen > 0);
		CHECK_EQ_INT(decompress_stream(type, z, zlen, &out), 0);
		CHECK_EQ_INT(out.len, 0);
		sb_free(&out);
		free(z);
	}
	free(data);
}

/* A sink that fails, to check errors travel back up the chain. */
static int
failing_write(io_writer *w, const void *buf, size_t n)
{
	return error_set(ERR_FILE, "could not write file \"sink\": disk on fire");
}

static int
failing_close(io_writer *w)
{
	return 0;
}

static void
failing_free(io_writer *w)
{
	free(w);
}

static void
test_stream_errors(void)
{
	uint8_t		buf[100000];

	fill_page_like(buf, sizeof(buf));
	for (size_t t = 0; t < 3; t++)
	{
		io_writer  *sink = xcalloc(1, sizeof(*sink));
		io_writer  *w;
		int			rc;

		sink->write = failing_write;
		sink->close = failing_close;
		sink->free = failing_free;
		w = io_compress_writer_new(all_types[t], 1, 1, sink);
		/* zst and lz4 may buffer the first write; the close must then fail. */
		rc = io_write(w, buf, sizeof(buf));
		if (rc == 0)
			rc = io_close(w);
		CHECK_EQ_INT(rc, ERR_FILE);
		CHECK_CONTAINS(error_msg(), "disk on fire");
		io_free(w);
	}
}

/* A borrowed writer is written through but neither closed nor freed with the chain. */
static void
test_borrow(void)
{
	io_writer  *owned = io_hash_writer_new(io_mem_writer_new());
	io_writer  *chain = io_compress_writer_new(COMPRESS_ZST, 3, 1, io_borrow_writer_new(owned));
	io_writer  *check = io_mem_writer_new();
	io_writer  *dec = io_decompress_writer_new(COMPRESS_ZST, check);
	uint8_t		digest[HASH_LEN];
	uint64_t	bytes = 0;
	size_t		len;
	const uint8_t *z;

	CHECK_EQ_INT(io_write(owned, "head:", 5), 0);
	CHECK_EQ_INT(io_write(chain, "payload", 7), 0);
	CHECK_EQ_INT(io_close(chain), 0);
	io_free(chain);
	/* owned is still open: more goes in after the borrowed part. */
	CHECK_EQ_INT(io_write(owned, ":tail", 5), 0);
	CHECK_EQ_INT(io_close(owned), 0);
	io_hash_writer_result(owned, digest, &bytes);
	z = io_mem_writer_data(owned->next, &len);
	CHECK_EQ_INT(bytes, len);
	CHECK(len > 10 && memcmp(z, "head:", 5) == 0 && memcmp(z + len - 5, ":tail", 5) == 0);
	CHECK_EQ_INT(io_write(dec, z + 5, len - 10), 0);
	CHECK_EQ_INT(io_close(dec), 0);
	z = io_mem_writer_data(check, &len);
	CHECK(len == 7 && memcmp(z, "payload", 7) == 0);
	io_free(dec);
	io_free(owned);
}

/* io_copy from a file through compress into a file; the result is read back by the zstd tool. */
static void
test_copy_and_zstd_tool(void)
{
	size_t		n = 3 << 20;
	uint8_t    *data = xmalloc(n);
	char	   *src_path = xasprintf("%s/src", tmpdir);
	char	   *zst_path = xasprintf("%s/src.zst", tmpdir);
	char	   *out_path = xasprintf("%s/out", tmpdir);
	char	   *cmd;
	char	   *back = NULL;
	size_t		back_len = 0;
	int			in_fd;
	int			out_fd;
	io_reader  *r;
	io_writer  *w;

	fill_page_like(data, n);
	CHECK_EQ_INT(fio_write_file_atomic(src_path, data, n, 0600), 0);
	in_fd = open(src_path, O_RDONLY | O_CLOEXEC);
	out_fd = open(zst_path, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0600);
	CHECK(in_fd >= 0 && out_fd >= 0);
	r = io_file_reader_new(in_fd, src_path);
	w = io_compress_writer_new(COMPRESS_ZST, 3, 2, io_file_writer_new(out_fd, zst_path));
	CHECK_EQ_INT(io_copy(r, w), 0);
	CHECK_EQ_INT(io_close(w), 0);
	io_free(w);
	io_reader_free(r);
	close(in_fd);
	close(out_fd);

	if (system("zstd --version >/dev/null 2>&1") != 0)
		printf("# zstd tool not found: skipping its check\n");
	else
	{
		cmd = xasprintf("zstd -q -d -f '%s' -o '%s'", zst_path, out_path);
		CHECK_EQ_INT(system(cmd), 0);
		free(cmd);
		CHECK_EQ_INT(fio_read_file(out_path, n, &back, &back_len), 0);
		CHECK_EQ_INT(back_len, n);
		CHECK(back != NULL && memcmp(back, data, n) == 0);
		free(back);
	}

	/* A reader error carries the path. */
	r = io_file_reader_new(-1, "/no/such/fd");
	w = io_null_writer_new();
	CHECK_EQ_INT(io_copy(r, w), ERR_FILE);
	CHECK_CONTAINS(error_msg(), "/no/such/fd");
	io_free(w);
	io_reader_free(r);

	free(data);
	free(src_path);
	free(zst_path);
	free(out_path);
}

/*
 * Interchange with the command line tools both ways.  Tool frames come
 * without a content checksum and, for lz4, with 4 MiB blocks: larger than
 * the decompressor's output buffer, so the end of the frame arrives while
 * decoded output is still pending.
 */
static void
test_tool_frames(void)
{
	static const struct
	{
		compress_type type;
		const char *tool;
		const char *no_check;
		const char *out_flag;
	}			tools[] = {
		{COMPRESS_ZST, "zstd", "--no-check", "-o"},
		{COMPRESS_LZ4, "lz4", "--no-frame-crc", ""},
	};
	size_t		n = (5 << 20) + 12345;
	uint8_t    *data = xmalloc(n);
	char	   *raw_path = xasprintf("%s/tool", tmpdir);
	char	   *z_path = xasprintf("%s/tool.z", tmpdir);

	fill_page_like(data, n);
	for (size_t i = 0; i < sizeof(tools) / sizeof(tools[0]); i++)
	{
		char	   *cmd;
		char	   *z;
		size_t		zlen;
		strbuf		out = STRBUF_INIT;

		cmd = xasprintf("%s --version >/dev/null 2>&1", tools[i].tool);
		if (system(cmd) != 0)
		{
			printf("# %s not found: skipping\n", tools[i].tool);
			free(cmd);
			continue;
		}
		free(cmd);
		/* Tool frame -> pgkeep. */
		CHECK_EQ_INT(fio_write_file_atomic(raw_path, data, n, 0600), 0);
		cmd = xasprintf("%s -q -f %s '%s' %s '%s'", tools[i].tool, tools[i].no_check, raw_path, tools[i].out_flag,
						z_path);
		CHECK_EQ_INT(system(cmd), 0);
		free(cmd);
		CHECK_EQ_INT(fio_read_file(z_path, n, &z, &zlen), 0);
		CHECK_EQ_INT(decompress_stream(tools[i].type, (uint8_t *) z, zlen, &out), 0);
		CHECK(out.len == n && memcmp(out.buf, data, n) == 0);
		sb_free(&out);
		free(z);

		/* pgkeep stream -> tool. */
		z = (char *) compress_stream(tools[i].type, data, n, &zlen);
		CHECK_EQ_INT(fio_write_file_atomic(z_path, z, zlen, 0600), 0);
		free(z);
		CHECK_EQ_INT(fio_unlink(raw_path), 0);
		cmd = xasprintf("%s -q -d -f '%s' %s '%s'", tools[i].tool, z_path, tools[i].out_flag, raw_path);
		CHECK_EQ_INT(system(cmd), 0);
		free(cmd);
		CHECK_EQ_INT(fio_read_file(raw_path, n, &z, &zlen), 0);
		CHECK(zlen == n && memcmp(z, data, n) == 0);
		free(z);
	}
	free(data);
	free(raw_path);
	free(z_path);
}

/* Make a dictionary from page-like samples (the first blocks are its content). */
static block_dict *
make_dict(uint8_t *samples, size_t *sizes, unsigned n, uint64_t seed)
{
	size_t		cap = 4 * 8192 + 16384, len = 0;
	uint8_t    *dict = xmalloc(cap);
	block_dict *d = NULL;

	rng_state = seed;
	fill_page_like(samples, (size_t) n * 8192);
	for (unsigned i = 0; i < n; i++)
		sizes[i] = 8192;
	CHECK_EQ_INT(block_dict_build(samples, 4 * 8192, samples, sizes, n, 3, dict, cap, &len), 0);
	CHECK(len > 4 * 8192 && len <= cap);
	CHECK_EQ_INT(block_dict_load(dict, len, 3, &d), 0);
	CHECK(d != NULL && block_dict_id(d) != 0);
	free(dict);
	return d;
}

/*
 * Blocks compressed with a dictionary: smaller, round trip, their frame names
 * it, and a codec without it or with another one refuses them.
 */
static void
test_dict(void)
{
	enum { N = 128 };
	uint8_t    *samples = xmalloc((size_t) N * 8192);
	size_t		sizes[N];
	block_dict *d = make_dict(samples, sizes, N, 11);
	block_dict *other = make_dict(samples, sizes, N, 12);
	block_codec *plain = block_codec_new(COMPRESS_ZST, 3);
	block_codec *with = block_codec_new(COMPRESS_ZST, 3);
	block_codec *wrong = block_codec_new(COMPRESS_ZST, 3);
	uint8_t		page[8192], back[8192];
	size_t		cap = block_codec_bound(plain, sizeof(page));
	uint8_t    *z1 = xmalloc(cap), *z2 = xmalloc(cap);
	size_t		n1 = 0, n2 = 0;

	if (d == NULL || other == NULL)
		goto out;
	block_codec_use_dict(with, d);
	block_codec_use_dict(wrong, other);
	CHECK(block_codec_dict(with) == d);
	rng_state = 99;
	fill_page_like(page, sizeof(page));
	CHECK_EQ_INT(block_compress(plain, page, sizeof(page), z1, cap, &n1), 0);
	CHECK_EQ_INT(block_compress(with, page, sizeof(page), z2, cap, &n2), 0);
	CHECK(n2 < n1);
	CHECK_EQ_INT(block_frame_dict_id(COMPRESS_ZST, z1, n1), 0);
	CHECK_EQ_INT(block_frame_dict_id(COMPRESS_ZST, z2, n2), block_dict_id(d));
	CHECK_EQ_INT(block_frame_dict_id(COMPRESS_LZ4, z2, n2), 0);

	memset(back, 0, sizeof(back));
	CHECK_EQ_INT(block_decompress(with, COMPRESS_ZST, z2, n2, back, sizeof(back)), 0);
	CHECK(memcmp(back, page, sizeof(page)) == 0);
	/* A codec with the dictionary still reads blocks stored without one. */
	CHECK_EQ_INT(block_decompress(with, COMPRESS_ZST, z1, n1, back, sizeof(back)), 0);
	CHECK(memcmp(back, page, sizeof(page)) == 0);

	CHECK_EQ_INT(block_decompress(plain, COMPRESS_ZST, z2, n2, back, sizeof(back)), ERR_CORRUPT);
	CHECK_CONTAINS(error_msg(), "has no dictionary");
	CHECK_EQ_INT(block_decompress(wrong, COMPRESS_ZST, z2, n2, back, sizeof(back)), ERR_CORRUPT);
	CHECK_CONTAINS(error_msg(), "the stanza's dictionary is");
	error_clear();
out:
	block_codec_free(plain);
	block_codec_free(with);
	block_codec_free(wrong);
	block_dict_free(d);
	block_dict_free(other);
	free(samples);
	free(z1);
	free(z2);
}

/* What is not a dictionary is refused with a message, not loaded as raw content. */
static void
test_dict_bad(void)
{
	uint8_t		junk[4096];
	block_dict *d = (block_dict *) 1;

	memset(junk, 'x', sizeof(junk));
	CHECK_EQ_INT(block_dict_load(junk, sizeof(junk), 3, &d), ERR_FORMAT);
	CHECK(d == NULL);
	CHECK_CONTAINS(error_msg(), "not a zstd dictionary");
	/* A dictionary header with an id but garbage tables. */
	memcpy(junk, "\x37\xa4\x30\xec\x01\x02\x03\x04", 8);
	CHECK_EQ_INT(block_dict_load(junk, sizeof(junk), 3, &d), ERR_FORMAT);
	CHECK(d == NULL);
	CHECK_CONTAINS(error_msg(), "malformed");
	CHECK_EQ_INT(block_dict_load(junk, 4, 3, &d), ERR_FORMAT);
	error_clear();
}

int
main(void)
{
	if (mkdtemp(tmpdir) == NULL)
	{
		perror("mkdtemp");
		return 1;
	}
	RUN(test_names);
	RUN(test_block_roundtrip);
	RUN(test_block_cross_type);
	RUN(test_block_corrupt);
	RUN(test_stream_roundtrip);
	RUN(test_stream_corrupt);
	RUN(test_stream_errors);
	RUN(test_borrow);
	RUN(test_copy_and_zstd_tool);
	RUN(test_tool_frames);
	RUN(test_dict);
	RUN(test_dict_bad);
	CHECK_EQ_INT(fio_remove_tree(tmpdir), 0);
	return harness_done();
}
