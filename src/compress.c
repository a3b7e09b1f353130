/*
 * compress.c: compression type names and the block codec.
 *
 * A backup compresses every 8 KiB block, so the codec keeps its library
 * contexts and reuses them: creating a zstd or lz4 context costs more than
 * compressing one block.  Each block is a complete standard frame (zstd frame
 * or LZ4 frame), so any zstd or lz4 tool can read a stored block.  Blocks
 * carry no frame checksum: the caller's SHA-256 of the block covers it.
 */
#include "compress.h"
#include "error.h"
#include "mem.h"

#include <lz4frame.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zdict.h>
#include <zstd.h>

struct block_codec
{
	compress_type type;
	ZSTD_CCtx  *zst_c;			/* compression contexts, for the codec's type */
	LZ4F_cctx  *lz4_c;
	LZ4F_preferences_t lz4_prefs;
	ZSTD_DCtx  *zst_d;			/* decompression contexts, made on first use of each type */
	LZ4F_dctx  *lz4_d;
	const block_dict *dict;		/* zst: compress with it, and decompress the frames naming it */
};

struct block_dict
{
	uint32_t	id;
	int			level;
	ZSTD_CDict *cdict;
	ZSTD_DDict *ddict;
};

static const char *const type_names[] = {[COMPRESS_NONE] = "none", [COMPRESS_ZST] = "zst", [COMPRESS_LZ4] = "lz4"};

static bool
type_valid(compress_type type)
{
	return type == COMPRESS_NONE || type == COMPRESS_ZST || type == COMPRESS_LZ4;
}

int
compress_type_parse(const char *name)
{
	for (int t = COMPRESS_NONE; t <= COMPRESS_LZ4; t++)
		if (strcmp(name, type_names[t]) == 0)
			return t;
	return -1;
}

const char *
compress_type_name(compress_type type)
{
	return type_valid(type) ? type_names[type] : "unknown";
}

const char *
compress_type_ext(compress_type type)
{
	return type == COMPRESS_NONE ? "raw" : compress_type_name(type);
}

int
compress_default_level(compress_type type)
{
	return type == COMPRESS_ZST ? 3 : type == COMPRESS_LZ4 ? 1 : 0;
}

/* Conditions the API cannot report are bugs or out of memory: fatal, like xmalloc. */
static void
fatal(const char *msg)
{
	fprintf(stderr, "pgkeep: %s\n", msg);
	abort();
}

static void *
ctx_check(void *ctx)
{
	if (ctx == NULL)
		fatal("out of memory (compression context)");
	return ctx;
}

static LZ4F_dctx *
lz4_dctx_new(void)
{
	LZ4F_dctx  *d = NULL;

	if (LZ4F_isError(LZ4F_createDecompressionContext(&d, LZ4F_VERSION)))
		d = NULL;
	return ctx_check(d);
}

block_codec *
block_codec_new(compress_type type, int level)
{
	block_codec *c;

	if (!type_valid(type))
		fatal("block codec of an unknown compression type");
	c = xcalloc(1, sizeof(*c));
	c->type = type;
	if (type == COMPRESS_ZST)
	{
		c->zst_c = ctx_check(ZSTD_createCCtx());
		ZSTD_CCtx_setParameter(c->zst_c, ZSTD_c_compressionLevel, level);
	}
	else if (type == COMPRESS_LZ4)
	{
		if (LZ4F_isError(LZ4F_createCompressionContext(&c->lz4_c, LZ4F_VERSION)))
			c->lz4_c = NULL;
		ctx_check(c->lz4_c);
		c->lz4_prefs.compressionLevel = level;
		/* Compress straight from the caller's block instead of copying it into the frame buffer first. */
		c->lz4_prefs.autoFlush = 1;
	}
	return c;
}

void
block_codec_free(block_codec *c)
{
	if (c == NULL)
		return;
	ZSTD_freeCCtx(c->zst_c);
	ZSTD_freeDCtx(c->zst_d);
	LZ4F_freeCompressionContext(c->lz4_c);
	LZ4F_freeDecompressionContext(c->lz4_d);
	free(c);
}

size_t
block_codec_bound(block_codec *c, size_t n)
{
	switch (c->type)
	{
		case COMPRESS_ZST:
			return ZSTD_compressBound(n);
		case COMPRESS_LZ4:
			return LZ4F_compressFrameBound(n, &c->lz4_prefs);
		case COMPRESS_NONE:
			break;
	}
	return n;
}

static int
lz4_compress(block_codec *c, const void *src, size_t n, uint8_t *dst, size_t cap, size_t *out_len)
{
	size_t		pos = LZ4F_compressBegin(c->lz4_c, dst, cap, &c->lz4_prefs);
	size_t		r;

	if (LZ4F_isError(pos))
		return error_set(ERR_COMPRESS, "could not compress lz4 block: %s", LZ4F_getErrorName(pos));
	r = LZ4F_compressUpdate(c->lz4_c, dst + pos, cap - pos, src, n, NULL);
	if (LZ4F_isError(r))
		return error_set(ERR_COMPRESS, "could not compress lz4 block: %s", LZ4F_getErrorName(r));
	pos += r;
	r = LZ4F_compressEnd(c->lz4_c, dst + pos, cap - pos, NULL);
	if (LZ4F_isError(r))
		return error_set(ERR_COMPRESS, "could not compress lz4 block: %s", LZ4F_getErrorName(r));
	*out_len = pos + r;
	return 0;
}

int
block_compress(block_codec *c, const void *src, size_t n, void *dst, size_t cap, size_t *out_len)
{
	size_t		r;

	switch (c->type)
	{
		case COMPRESS_ZST:
			if (c->dict)
				r = ZSTD_compress_usingCDict(c->zst_c, dst, cap, src, n, c->dict->cdict);
			else
				r = ZSTD_compress2(c->zst_c, dst, cap, src, n);
			if (ZSTD_isError(r))
				return error_set(ERR_COMPRESS, "could not compress zst block: %s", ZSTD_getErrorName(r));
			*out_len = r;
			return 0;
		case COMPRESS_LZ4:
			return lz4_compress(c, src, n, dst, cap, out_len);
		case COMPRESS_NONE:
			break;
	}
	if (n > cap)
		return error_set(ERR_COMPRESS, "could not store block: %zu bytes do not fit in %zu", n, cap);
	memcpy(dst, src, n);
	*out_len = n;
	return 0;
}

static int
zst_decompress(block_codec *c, const void *src, size_t n, void *dst, size_t raw_len)
{
	size_t		r;

	if (c->zst_d == NULL)
		c->zst_d = ctx_check(ZSTD_createDCtx());
	uint32_t	did = ZSTD_getDictID_fromFrame(src, n);

	if (did != 0 && (c->dict == NULL || c->dict->id != did))
	{
		if (c->dict == NULL)
			return error_set(ERR_CORRUPT, "zst block compressed with dictionary %08x, but the stanza has no dictionary", did);
		return error_set(ERR_CORRUPT, "zst block compressed with dictionary %08x, but the stanza's dictionary is %08x",
						 did, c->dict->id);
	}
	/* A frame holding more than raw_len bytes fails here (dstSize_tooSmall) instead of overrunning dst. */
	if (did != 0)
		r = ZSTD_decompress_usingDDict(c->zst_d, dst, raw_len, src, n, c->dict->ddict);
	else
		r = ZSTD_decompressDCtx(c->zst_d, dst, raw_len, src, n);
	if (ZSTD_isError(r))
		return error_set(ERR_CORRUPT, "could not decompress zst block: %s", ZSTD_getErrorName(r));
	if (r != raw_len)
		return error_set(ERR_CORRUPT, "corrupt zst block: %zu bytes, expected %zu", r, raw_len);
	return 0;
}

/*
 * LZ4F_decompress works in steps (header, blocks, end mark); call it until
 * the frame ends or it makes no progress, which means the frame is truncated
 * or holds more than raw_len bytes.
 */
static int
lz4_decompress(block_codec *c, const uint8_t *src, size_t n, uint8_t *dst, size_t raw_len)
{
	size_t		in_pos = 0;
	size_t		out_pos = 0;
	size_t		r;

	if (c->lz4_d == NULL)
		c->lz4_d = lz4_dctx_new();
	/* A previous error leaves the context mid-frame. */
	LZ4F_resetDecompressionContext(c->lz4_d);
	do
	{
		size_t		in = n - in_pos;
		size_t		out = raw_len - out_pos;

		r = LZ4F_decompress(c->lz4_d, dst + out_pos, &out, src + in_pos, &in, NULL);
		if (LZ4F_isError(r))
			return error_set(ERR_CORRUPT, "could not decompress lz4 block: %s", LZ4F_getErrorName(r));
		in_pos += in;
		out_pos += out;
		if (r != 0 && in == 0 && out == 0)
			return error_set(ERR_CORRUPT, "corrupt lz4 block: frame truncated or larger than %zu bytes", raw_len);
	} while (r != 0);
	if (in_pos != n || out_pos != raw_len)
		return error_set(ERR_CORRUPT, "corrupt lz4 block: %zu bytes from %zu of %zu input bytes, expected %zu",
						 out_pos, in_pos, n, raw_len);
	return 0;
}

int
block_decompress(block_codec *c, compress_type type, const void *src, size_t n, void *dst, size_t raw_len)
{
	switch (type)
	{
		case COMPRESS_ZST:
			return zst_decompress(c, src, n, dst, raw_len);
		case COMPRESS_LZ4:
			return lz4_decompress(c, src, n, dst, raw_len);
		case COMPRESS_NONE:
			if (n != raw_len)
				return error_set(ERR_CORRUPT, "corrupt block: %zu bytes, expected %zu", n, raw_len);
			memcpy(dst, src, n);
			return 0;
	}
	return error_set(ERR_FORMAT, "unknown compression type %d", (int) type);
}

void
block_codec_use_dict(block_codec *c, const block_dict *d)
{
	c->dict = d;
}

const block_dict *
block_codec_dict(const block_codec *c)
{
	return c->dict;
}

int
block_dict_build(const void *content, size_t content_len, const void *samples, const size_t *sizes, unsigned n,
				 int level, void *dict, size_t cap, size_t *len)
{
	ZDICT_params_t params = {.compressionLevel = level};
	size_t		r = ZDICT_finalizeDictionary(dict, cap, content, content_len, samples, sizes, n, params);

	if (ZDICT_isError(r))
		return error_set(ERR_COMPRESS, "could not make a compression dictionary from %u blocks: %s", n,
						 ZDICT_getErrorName(r));
	*len = r;
	return 0;
}

int
block_dict_load(const void *data, size_t len, int level, block_dict **out)
{
	uint32_t	id = len >= 8 ? ZSTD_getDictID_fromDict(data, len) : 0;
	block_dict *d;

	*out = NULL;
	if (len > BLOCK_DICT_MAX)
		return error_set(ERR_FORMAT, "compression dictionary of %zu bytes is larger than %d", len, BLOCK_DICT_MAX);
	if (id == 0)
		return error_set(ERR_FORMAT, "not a zstd dictionary with an id (%zu bytes)", len);
	d = xcalloc(1, sizeof(*d));
	d->id = id;
	d->level = level;
	d->cdict = ZSTD_createCDict(data, len, level);
	d->ddict = ZSTD_createDDict(data, len);
	if (d->cdict == NULL || d->ddict == NULL)
	{
		block_dict_free(d);
		return error_set(ERR_FORMAT, "compression dictionary %08x (%zu bytes) is malformed", id, len);
	}
	*out = d;
	return 0;
}

void
block_dict_free(block_dict *d)
{
	if (d == NULL)
		return;
	ZSTD_freeCDict(d->cdict);
	ZSTD_freeDDict(d->ddict);
	free(d);
}

uint32_t
block_dict_id(const block_dict *d)
{
	return d->id;
}

int
block_dict_level(const block_dict *d)
{
	return d->level;
}

uint32_t
block_frame_dict_id(compress_type type, const void *src, size_t n)
{
	return type == COMPRESS_ZST ? ZSTD_getDictID_fromFrame(src, n) : 0;
}
