/*
 * io.h: streams with a filter chain.
 *
 * An io_writer consumes bytes; a filter is a writer that transforms bytes and
 * passes them to the next writer (hash, compress, decompress, count).  A
 * chain is built from the sink outward:
 *
 *     io_writer *file = io_file_writer_new(fd, path);
 *     io_writer *zst  = io_compress_writer_new(COMPRESS_ZST, 3, 0, file);
 *     io_writer *sha  = io_hash_writer_new(zst);
 *     io_write(sha, buf, n); ... io_close(sha);   // flushes every stage
 *     io_hash_writer_result(sha, digest);
 *     io_free(sha);                                // frees the whole chain
 *
 * Memory of every stage is bounded and independent of the stream length.
 * Readers are the pull side: io_reader with read() returning bytes read
 * (0 at end) through *got.
 */
#ifndef PGKEEP_IO_H
#define PGKEEP_IO_H

#include <stddef.h>
#include <stdint.h>

#include "compress.h"
#include "hash.h"

typedef struct io_writer io_writer;
struct io_writer
{
	int			(*write) (io_writer *w, const void *buf, size_t n);
	int			(*close) (io_writer *w);    /* flush; does not free */
	void		(*free) (io_writer *w);     /* frees this stage and next */
	io_writer  *next;
};

int			io_write(io_writer *w, const void *buf, size_t n);
int			io_close(io_writer *w);
void		io_free(io_writer *w);

/* Writes to an open fd (not closed by the writer).  path is for messages. */
io_writer  *io_file_writer_new(int fd, const char *path);
/* Accumulates into memory (for tests and small objects); the buffer is owned by the writer. */
io_writer  *io_mem_writer_new(void);
const uint8_t *io_mem_writer_data(io_writer *w, size_t *len);
/*
 * Forwards writes to target without owning it: closing or freeing the
 * borrowing writer leaves target open and allocated (for chaining filters in
 * front of a writer that another object owns).
 */
io_writer  *io_borrow_writer_new(io_writer *target);
/* Discards bytes. */
io_writer  *io_null_writer_new(void);

/* Pass-through filter that computes SHA-256 and counts bytes of what passes. */
io_writer  *io_hash_writer_new(io_writer *next);
void		io_hash_writer_result(io_writer *w, uint8_t digest[HASH_LEN], uint64_t *bytes);

/*
 * Compress what passes.  threads > 1 lets zstd use that many worker threads
 * for one stream (ignored for lz4 and none).
 */
io_writer  *io_compress_writer_new(compress_type type, int level, int threads, io_writer *next);
/* Decompress what passes; malformed input is ERR_CORRUPT. */
io_writer  *io_decompress_writer_new(compress_type type, io_writer *next);

typedef struct io_reader io_reader;
struct io_reader
{
	int			(*read) (io_reader *r, void *buf, size_t n, size_t *got);
	void		(*free) (io_reader *r);
};

int			io_read(io_reader *r, void *buf, size_t n, size_t *got);
void		io_reader_free(io_reader *r);
io_reader  *io_file_reader_new(int fd, const char *path);

/* Copy everything from r into w (does not close w).  Bounded buffer. */
int			io_copy(io_reader *r, io_writer *w);

#endif
