/*
 * io.c: the writer stages (sinks and filters) and the file reader of io.h.
 *
 * Every stage embeds io_writer as its first member.  A stage's close
 * finishes its own output and then closes the next stage; its free frees
 * itself and then the next stage, so one call on the head handles the chain.
 * Each stage holds one fixed buffer (at most a few hundred KiB) besides the
 * compression library's own state, whatever the length of the stream.
 */
#include "io.h"
#include "error.h"
#include "fileio.h"
#include "log.h"
#include "mem.h"

#include <lz4frame.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

/* io_copy's buffer: large enough that each write reaches the next stage in big pieces. */
#define COPY_BUF_SIZE (1024 * 1024)
/* Input per zstd worker job when a stream is compressed by several threads. */
#define IO_ZSTD_JOB_SIZE (2 * 1024 * 1024)
/* Input fed to LZ4F_compressUpdate per call; it bounds the lz4 writer's output buffer. */
#define LZ4_IN_CHUNK (64 * 1024)
/* lz4 decompressor output; frames with blocks up to this size decode straight into it. */
#define LZ4_OUT_SIZE (256 * 1024)

int
io_write(io_writer *w, const void *buf, size_t n)
{
	return n == 0 ? 0 : w->write(w, buf, n);
}

int
io_close(io_writer *w)
{
	return w->close(w);
}

void
io_free(io_writer *w)
{
	if (w != NULL)
		w->free(w);
}

/*
 * The constructors cannot return an error: a library context that cannot be
 * made is out of memory, and a type outside compress_type is a caller's bug.
 * Both are fatal, like xmalloc failing.
 */
__attribute__((noreturn)) static void
fatal(const char *msg)
{
	fprintf(stderr, "pgkeep: %s\n", msg);
	abort();
}

static void *
stage_new(size_t size, int (*write) (io_writer *, const void *, size_t), int (*close) (io_writer *),
		  void (*free_fn) (io_writer *), io_writer *next)
{
	io_writer  *w = xcalloc(1, size);

	w->write = write;
	w->close = close;
	w->free = free_fn;
	w->next = next;
	return w;
}

/* close: the rest of the chain (a stage flushes its own output first). */
static int
stage_close(io_writer *w)
{
	return w->next ? io_close(w->next) : 0;
}

/* free: the rest of the chain, then this struct (a stage frees what it owns first). */
static void
stage_free(io_writer *w)
{
	io_free(w->next);
	free(w);
}

/* File sink. */

typedef struct
{
	io_writer	w;
	int			fd;
	char	   *path;
} file_writer;

static int
file_write(io_writer *w, const void *buf, size_t n)
{
	file_writer *f = (file_writer *) w;

	return fio_write_full(f->fd, buf, n, f->path);
}

static void
file_free(io_writer *w)
{
	free(((file_writer *) w)->path);
	stage_free(w);
}

io_writer *
io_file_writer_new(int fd, const char *path)
{
	file_writer *f = stage_new(sizeof(*f), file_write, stage_close, file_free, NULL);

	f->fd = fd;
	f->path = xstrdup(path);
	return &f->w;
}

/* Memory sink. */

typedef struct
{
	io_writer	w;
	strbuf		data;
} mem_writer;

static int
mem_write(io_writer *w, const void *buf, size_t n)
{
	sb_appendn(&((mem_writer *) w)->data, buf, n);
	return 0;
}

static void
mem_free(io_writer *w)
{
	sb_free(&((mem_writer *) w)->data);
	stage_free(w);
}

io_writer *
io_mem_writer_new(void)
{
	mem_writer *m = stage_new(sizeof(*m), mem_write, stage_close, mem_free, NULL);

	/* stage_new zeroed the strbuf, which is STRBUF_INIT. */
	return &m->w;
}

const uint8_t *
io_mem_writer_data(io_writer *w, size_t *len)
{
	mem_writer *m = (mem_writer *) w;

	*len = m->data.len;
	return (const uint8_t *) sb_str(&m->data);
}

/* Null sink, and the pass-through used for COMPRESS_NONE. */

static int
null_write(io_writer *w, const void *buf, size_t n)
{
	return 0;
}

io_writer *
io_null_writer_new(void)
{
	return stage_new(sizeof(io_writer), null_write, stage_close, stage_free, NULL);
}

static int
pass_write(io_writer *w, const void *buf, size_t n)
{
	return io_write(w->next, buf, n);
}

static io_writer *
pass_writer_new(io_writer *next)
{
	return stage_new(sizeof(io_writer), pass_write, stage_close, stage_free, next);
}

/* Forwarder to a writer owned elsewhere: kept out of next, so close and free stop here. */

typedef struct
{
	io_writer	w;
	io_writer  *target;
} borrow_writer;

static int
borrow_write(io_writer *w, const void *buf, size_t n)
{
	return io_write(((borrow_writer *) w)->target, buf, n);
}

static int
borrow_close(io_writer *w)
{
	return 0;
}

io_writer *
io_borrow_writer_new(io_writer *target)
{
	borrow_writer *b = stage_new(sizeof(*b), borrow_write, borrow_close, stage_free, NULL);

	b->target = target;
	return &b->w;
}

/* SHA-256 and byte count of what passes. */

typedef struct
{
	io_writer	w;
	hash_ctx   *hash;
	uint64_t	bytes;
	bool		finished;
	uint8_t		digest[HASH_LEN];
} hash_writer;

static int
hash_write(io_writer *w, const void *buf, size_t n)
{
	hash_writer *h = (hash_writer *) w;

	hash_update(h->hash, buf, n);
	h->bytes += n;
	return io_write(w->next, buf, n);
}

static void
hash_finish(hash_writer *h)
{
	if (!h->finished)
		hash_final(h->hash, h->digest);
	h->finished = true;
}

static int
hash_close(io_writer *w)
{
	hash_finish((hash_writer *) w);
	return stage_close(w);
}

static void
hash_writer_free(io_writer *w)
{
	hash_free(((hash_writer *) w)->hash);
	stage_free(w);
}

io_writer *
io_hash_writer_new(io_writer *next)
{
	hash_writer *h = stage_new(sizeof(*h), hash_write, hash_close, hash_writer_free, next);

	h->hash = hash_new();
	return &h->w;
}

void
io_hash_writer_result(io_writer *w, uint8_t digest[HASH_LEN], uint64_t *bytes)
{
	hash_writer *h = (hash_writer *) w;

	hash_finish(h);
	memcpy(digest, h->digest, HASH_LEN);
	if (bytes != NULL)
		*bytes = h->bytes;
}

/* zstd compression. */

typedef struct
{
	io_writer	w;
	ZSTD_CCtx  *cctx;
	bool		ended;
	size_t		cap;
	uint8_t		out[];
} zst_writer;

/* Feed in to the compressor and pass on all it produces: until in is consumed, or with e_end until the frame is complete. */
static int
zst_run(zst_writer *z, ZSTD_inBuffer *in, ZSTD_EndDirective mode)
{
	size_t		left;

	do
	{
		ZSTD_outBuffer out = {z->out, z->cap, 0};
		int			rc;

		left = ZSTD_compressStream2(z->cctx, &out, in, mode);
		if (ZSTD_isError(left))
			return error_set(ERR_COMPRESS, "could not compress zst stream: %s", ZSTD_getErrorName(left));
		rc = io_write(z->w.next, z->out, out.pos);
		if (rc != 0)
			return rc;
	} while (mode == ZSTD_e_end ? left != 0 : in->pos < in->size);
	return 0;
}

static int
zst_write(io_writer *w, const void *buf, size_t n)
{
	ZSTD_inBuffer in = {buf, n, 0};

	return zst_run((zst_writer *) w, &in, ZSTD_e_continue);
}

static int
zst_close(io_writer *w)
{
	zst_writer *z = (zst_writer *) w;
	ZSTD_inBuffer in = {NULL, 0, 0};

	/* Ending twice would append a second, empty frame. */
	if (!z->ended)
	{
		int			rc = zst_run(z, &in, ZSTD_e_end);

		z->ended = true;
		if (rc != 0)
			return rc;
	}
	return stage_close(w);
}

static void
zst_free(io_writer *w)
{
	ZSTD_freeCCtx(((zst_writer *) w)->cctx);
	stage_free(w);
}

static io_writer *
zst_writer_new(int level, int threads, io_writer *next)
{
	size_t		cap = ZSTD_CStreamOutSize();
	zst_writer *z = stage_new(sizeof(*z) + cap, zst_write, zst_close, zst_free, next);

	z->cap = cap;
	z->cctx = ZSTD_createCCtx();
	if (z->cctx == NULL)
		fatal("out of memory (zstd context)");
	ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_compressionLevel, level);
	/* Lets zstd -t and the decompress writer detect corruption without the caller's hash. */
	ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_checksumFlag, 1);
	if (threads > 1 && ZSTD_isError(ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_nbWorkers, threads)))
		log_debug("zstd library built without threads: compressing in one thread");
	else if (threads > 1)
	{
		/*
		 * Small jobs keep memory near threads * (job + window) instead of the
		 * default of four windows per job: bounded whatever the stream's length.
		 */
		ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_jobSize, IO_ZSTD_JOB_SIZE);
	}
	return &z->w;
}

/* lz4 frame compression. */

typedef struct
{
	io_writer	w;
	LZ4F_cctx  *cctx;
	LZ4F_preferences_t prefs;
	bool		started;
	bool		ended;
	size_t		cap;
	uint8_t		out[];
} lz4_writer;

static int
lz4_error(size_t r)
{
	return error_set(ERR_COMPRESS, "could not compress lz4 stream: %s", LZ4F_getErrorName(r));
}

/* The frame header goes out with the first write or at close, so an empty stream is still a valid frame. */
static int
lz4_start(lz4_writer *l)
{
	size_t		r;

	if (l->started)
		return 0;
	l->started = true;
	r = LZ4F_compressBegin(l->cctx, l->out, l->cap, &l->prefs);
	return LZ4F_isError(r) ? lz4_error(r) : io_write(l->w.next, l->out, r);
}

static int
lz4_write(io_writer *w, const void *buf, size_t n)
{
	lz4_writer *l = (lz4_writer *) w;
	const uint8_t *p = buf;
	int			rc = lz4_start(l);

	while (rc == 0 && n > 0)
	{
		size_t		chunk = n < LZ4_IN_CHUNK ? n : LZ4_IN_CHUNK;
		size_t		r = LZ4F_compressUpdate(l->cctx, l->out, l->cap, p, chunk, NULL);

		if (LZ4F_isError(r))
			return lz4_error(r);
		rc = io_write(w->next, l->out, r);
		p += chunk;
		n -= chunk;
	}
	return rc;
}

static int
lz4_close(io_writer *w)
{
	lz4_writer *l = (lz4_writer *) w;

	if (!l->ended)
	{
		int			rc = lz4_start(l);
		size_t		r;

		l->ended = true;
		if (rc != 0)
			return rc;
		r = LZ4F_compressEnd(l->cctx, l->out, l->cap, NULL);
		if (LZ4F_isError(r))
			return lz4_error(r);
		rc = io_write(w->next, l->out, r);
		if (rc != 0)
			return rc;
	}
	return stage_close(w);
}

static void
lz4_free(io_writer *w)
{
	LZ4F_freeCompressionContext(((lz4_writer *) w)->cctx);
	stage_free(w);
}

static io_writer *
lz4_writer_new(int level, io_writer *next)
{
	LZ4F_preferences_t prefs = LZ4F_INIT_PREFERENCES;
	size_t		cap;
	lz4_writer *l;

	prefs.compressionLevel = level;
	prefs.frameInfo.contentChecksumFlag = LZ4F_contentChecksumEnabled;
	/* Bounds one LZ4_IN_CHUNK update with what the context buffers, and the end of the frame. */
	cap = LZ4F_compressBound(LZ4_IN_CHUNK, &prefs);
	l = stage_new(sizeof(*l) + cap, lz4_write, lz4_close, lz4_free, next);
	l->prefs = prefs;
	l->cap = cap;
	if (LZ4F_isError(LZ4F_createCompressionContext(&l->cctx, LZ4F_VERSION)))
		fatal("out of memory (lz4 context)");
	return &l->w;
}

io_writer *
io_compress_writer_new(compress_type type, int level, int threads, io_writer *next)
{
	switch (type)
	{
		case COMPRESS_ZST:
			return zst_writer_new(level, threads, next);
		case COMPRESS_LZ4:
			return lz4_writer_new(level, next);
		case COMPRESS_NONE:
			return pass_writer_new(next);
	}
	fatal("stream of an unknown compression type");
}

/*
 * Decompression.  Both libraries return 0 exactly when a frame is complete
 * and flushed; a stream whose last call returned anything else is truncated.
 * When a call fills the output buffer the library may hold more output: as
 * both documentations ask, it is called again, with no new input, so that
 * everything decoded from this write reaches the next stage now.
 */

typedef struct
{
	io_writer	w;
	ZSTD_DCtx  *dctx;
	size_t		hint;			/* last return: 0 at the end of a frame */
	size_t		cap;
	uint8_t		out[];
} zst_dwriter;

static int
zst_dwrite(io_writer *w, const void *buf, size_t n)
{
	zst_dwriter *z = (zst_dwriter *) w;
	ZSTD_inBuffer in = {buf, n, 0};
	ZSTD_outBuffer out;

	do
	{
		int			rc;

		out = (ZSTD_outBuffer) {z->out, z->cap, 0};
		z->hint = ZSTD_decompressStream(z->dctx, &out, &in);
		if (ZSTD_isError(z->hint))
			return error_set(ERR_CORRUPT, "could not decompress zst stream: %s", ZSTD_getErrorName(z->hint));
		rc = io_write(w->next, z->out, out.pos);
		if (rc != 0)
			return rc;
	} while (in.pos < in.size || (z->hint != 0 && out.pos == out.size));
	return 0;
}

static int
zst_dclose(io_writer *w)
{
	if (((zst_dwriter *) w)->hint != 0)
		return error_set(ERR_CORRUPT, "could not decompress zst stream: truncated frame");
	return stage_close(w);
}

static void
zst_dfree(io_writer *w)
{
	ZSTD_freeDCtx(((zst_dwriter *) w)->dctx);
	stage_free(w);
}

static io_writer *
zst_dwriter_new(io_writer *next)
{
	size_t		cap = ZSTD_DStreamOutSize();
	zst_dwriter *z = stage_new(sizeof(*z) + cap, zst_dwrite, zst_dclose, zst_dfree, next);

	z->cap = cap;
	/* No frame yet: an empty stream is truncated too. */
	z->hint = 1;
	z->dctx = ZSTD_createDCtx();
	if (z->dctx == NULL)
		fatal("out of memory (zstd context)");
	return &z->w;
}

typedef struct
{
	io_writer	w;
	LZ4F_dctx  *dctx;
	size_t		hint;			/* last return: 0 at the end of a frame */
	uint8_t		out[LZ4_OUT_SIZE];
} lz4_dwriter;

static int
lz4_dwrite(io_writer *w, const void *buf, size_t n)
{
	lz4_dwriter *l = (lz4_dwriter *) w;
	const uint8_t *p = buf;
	size_t		out_len;

	do
	{
		size_t		in_len = n;
		int			rc;

		out_len = sizeof(l->out);
		l->hint = LZ4F_decompress(l->dctx, l->out, &out_len, p, &in_len, NULL);
		if (LZ4F_isError(l->hint))
			return error_set(ERR_CORRUPT, "could not decompress lz4 stream: %s", LZ4F_getErrorName(l->hint));
		p += in_len;
		n -= in_len;
		rc = io_write(w->next, l->out, out_len);
		if (rc != 0)
			return rc;
	} while (n > 0 || (l->hint != 0 && out_len == sizeof(l->out)));
	return 0;
}

static int
lz4_dclose(io_writer *w)
{
	if (((lz4_dwriter *) w)->hint != 0)
		return error_set(ERR_CORRUPT, "could not decompress lz4 stream: truncated frame");
	return stage_close(w);
}

static void
lz4_dfree(io_writer *w)
{
	LZ4F_freeDecompressionContext(((lz4_dwriter *) w)->dctx);
	stage_free(w);
}

static io_writer *
lz4_dwriter_new(io_writer *next)
{
	lz4_dwriter *l = stage_new(sizeof(*l), lz4_dwrite, lz4_dclose, lz4_dfree, next);

	l->hint = 1;
	if (LZ4F_isError(LZ4F_createDecompressionContext(&l->dctx, LZ4F_VERSION)))
		fatal("out of memory (lz4 context)");
	return &l->w;
}

io_writer *
io_decompress_writer_new(compress_type type, io_writer *next)
{
	switch (type)
	{
		case COMPRESS_ZST:
			return zst_dwriter_new(next);
		case COMPRESS_LZ4:
			return lz4_dwriter_new(next);
		case COMPRESS_NONE:
			return pass_writer_new(next);
	}
	fatal("stream of an unknown compression type");
}

/* File reader and copy. */

typedef struct
{
	io_reader	r;
	int			fd;
	char	   *path;
} file_reader;

static int
file_read(io_reader *r, void *buf, size_t n, size_t *got)
{
	file_reader *f = (file_reader *) r;

	return fio_read_full(f->fd, buf, n, got, f->path);
}

static void
file_reader_free(io_reader *r)
{
	free(((file_reader *) r)->path);
	free(r);
}

io_reader *
io_file_reader_new(int fd, const char *path)
{
	file_reader *f = xmalloc(sizeof(*f));

	f->r.read = file_read;
	f->r.free = file_reader_free;
	f->fd = fd;
	f->path = xstrdup(path);
	return &f->r;
}

int
io_read(io_reader *r, void *buf, size_t n, size_t *got)
{
	return r->read(r, buf, n, got);
}

void
io_reader_free(io_reader *r)
{
	if (r != NULL)
		r->free(r);
}

int
io_copy(io_reader *r, io_writer *w)
{
	uint8_t    *buf = xmalloc(COPY_BUF_SIZE);
	size_t		got;
	int			rc;

	while ((rc = io_read(r, buf, COPY_BUF_SIZE, &got)) == 0 && got > 0)
	{
		rc = io_write(w, buf, got);
		if (rc != 0)
			break;
	}
	free(buf);
	return rc;
}
