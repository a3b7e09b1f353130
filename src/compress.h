/*
 * compress.h: block and stream compression with zstd, lz4 or none.
 *
 * Blocks (backup data) are compressed one at a time with a reusable context.
 * WAL files are compressed as a stream, written through io.h filters.
 * Stored formats: zst is the standard zstd frame format, lz4 the standard LZ4
 * frame format, none is the data itself; any zstd or lz4 tool reads them.
 */
#ifndef PGKEEP_COMPRESS_H
#define PGKEEP_COMPRESS_H

#include <stddef.h>
#include <stdint.h>

typedef enum
{
	COMPRESS_NONE = 0,
	COMPRESS_ZST = 1,
	COMPRESS_LZ4 = 2
} compress_type;

/* "none", "zst", "lz4" <-> type; parse returns -1 when unknown. */
int			compress_type_parse(const char *name);
const char *compress_type_name(compress_type type);
/* File name extension without dot: "zst", "lz4", "raw". */
const char *compress_type_ext(compress_type type);
/* Default level: 3 for zst, 1 for lz4, 0 for none. */
int			compress_default_level(compress_type type);

/* Reusable block compressor/decompressor; one per thread. */
typedef struct block_codec block_codec;

block_codec *block_codec_new(compress_type type, int level);
void		block_codec_free(block_codec *c);
/* Worst-case compressed size of n bytes. */
size_t		block_codec_bound(block_codec *c, size_t n);
/* Compress src into dst (capacity cap, at least the bound). 0 or ERR_COMPRESS. */
int			block_compress(block_codec *c, const void *src, size_t n, void *dst, size_t cap, size_t *out_len);
/*
 * Decompress exactly raw_len bytes of the given type into dst (capacity cap >= raw_len).
 * Any other size, or malformed input, is ERR_CORRUPT.  The type may differ from the codec's.
 */
int			block_decompress(block_codec *c, compress_type type, const void *src, size_t n, void *dst, size_t raw_len);

#endif
