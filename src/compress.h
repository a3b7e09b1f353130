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

/*
 * A zstd dictionary for blocks (a stanza has at most one: repo.h), digested
 * once for compression at one level and for decompression.  Read-only once
 * loaded, so the workers of a command share it.  Each block compressed with
 * it is still a standard zstd frame; its header names the dictionary's id.
 */
typedef struct block_dict block_dict;

/* Largest dictionary accepted. */
#define BLOCK_DICT_MAX (1024 * 1024)

/*
 * Make a dictionary (at most cap bytes) from content, a few representative
 * blocks laid end to end, and entropy statistics gathered from n samples
 * (sizes[i] bytes each, end to end in samples).  ERR_COMPRESS when they cannot
 * make one.
 */
int			block_dict_build(const void *content, size_t content_len, const void *samples, const size_t *sizes,
							 unsigned n, int level, void *dict, size_t cap, size_t *len);
/* Digest a dictionary (zstd dictionary format, non-zero id) for level; ERR_FORMAT naming what when it is not one. */
int			block_dict_load(const void *data, size_t len, int level, block_dict **out);
void		block_dict_free(block_dict *d);
uint32_t	block_dict_id(const block_dict *d);
int			block_dict_level(const block_dict *d);
/* The dictionary id a stored block's frame names; 0 when none (and for lz4 and none). */
uint32_t	block_frame_dict_id(compress_type type, const void *src, size_t n);

block_codec *block_codec_new(compress_type type, int level);
void		block_codec_free(block_codec *c);
/*
 * Compress zst blocks with d from now on (NULL: without), and decompress the
 * zst frames that name it.  d must outlive the codec's use of it.  A frame
 * naming another dictionary than the codec's is ERR_CORRUPT.
 */
void		block_codec_use_dict(block_codec *c, const block_dict *d);
const block_dict *block_codec_dict(const block_codec *c);
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
