/*
 * store.h: the content-addressed block store of one stanza (used by the
 * local repository driver).
 *
 * On disk, under DIR (= REPO/STANZA/store):
 *   pack/XX/PACKID.pack   append-only pack files of block records
 *   index                 open-addressing hash table: block id -> pack, offset, lengths
 *   index.lock            flock taken by writers of the index
 *   gc.lock               the lease: every handle holds a shared flock on it
 *                         from open to close; garbage collection takes it
 *                         exclusively, so it never runs beside a handle
 * The format is specified in doc/repository-format.md.
 *
 * Durability order: a pack is written, fsynced, renamed into place and its
 * directory fsynced before its entries are inserted into the index; the
 * index is fsynced before store_flush() returns.  So an id found in the index
 * always names durable bytes.  The index is derived data: store_reindex()
 * rebuilds it from the packs.
 *
 * A handle belongs to one thread.  Several handles (threads or processes)
 * may use one store at once: lookups read the index without locks (a torn or
 * stale slot reads as "not found", which only costs a duplicate copy),
 * inserts take index.lock.
 */
#ifndef PGKEEP_STORE_H
#define PGKEEP_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "../src/compress.h"
#include "../src/hash.h"

typedef struct store store;

typedef struct store_loc
{
	uint64_t	pack_id;
	uint64_t	offset;          /* of the record header in the pack */
	uint32_t	stored_len;
	uint32_t	raw_len;
	compress_type ctype;
} store_loc;

/* Target size of a pack file before it is sealed. */
#define STORE_PACK_TARGET (32u * 1024 * 1024)

/* Open (creating DIR's layout if create). */
int			store_open(const char *dir, bool create, store **out);
/* Flushes, then frees.  Returns the flush's result. */
int			store_close(store *s);

/* Look an id up in the durable index (and this handle's packs not yet indexed). */
int			store_lookup(store *s, const uint8_t id[HASH_LEN], bool *found, store_loc *loc);
/*
 * Append a block record to this handle's open pack unless the id is already
 * stored or pending.  The pack is sealed when it reaches
 * STORE_PACK_TARGET, or at store_flush(); its entries reach the index then,
 * or at a later seal when another handle holds the index lock (at the
 * latest at store_flush(), which waits for it).
 */
int			store_put(store *s, const uint8_t id[HASH_LEN], compress_type ctype, const void *data,
					  uint32_t stored_len, uint32_t raw_len);
/* Seal the open pack (if any), make it durable, index it. */
int			store_flush(store *s);
/*
 * Read a block's stored bytes into buf (capacity cap >= stored_len).
 * ERR_NOT_FOUND when the id is unknown; ERR_CORRUPT when the record header
 * in the pack does not match the index.  The caller decompresses and checks
 * the hash against the id.
 */
int			store_read(store *s, const uint8_t id[HASH_LEN], void *buf, size_t cap, store_loc *loc);
/*
 * Check that a block is stored without reading it: the index (or this
 * handle's own packs) has the id, and its pack file exists and is long
 * enough to hold the record.  Reads neither the record nor its header, so a
 * damaged record passes.  ERR_NOT_FOUND when the id is unknown; ERR_CORRUPT
 * when the pack file is missing or too short (naming it).
 */
int			store_check(store *s, const uint8_t id[HASH_LEN], store_loc *loc);

/* Rebuild the index from all packs (after a crash or for repair). */
int			store_reindex(store *s);

/*
 * Garbage collection.  store_gc_begin() turns this handle's shared lease
 * into the exclusive one; when another handle holds the store it keeps the
 * shared lease and sets *busy (and returns 0 with *out NULL).  Then every
 * live id is marked (ERR_NOT_FOUND, naming it, when the index lacks it) and
 * store_gc_sweep() drops every unmarked index entry, deletes packs without
 * live blocks and copies the live blocks of packs that are mostly garbage
 * into new packs; with dry_run it only counts.  Crash safety: new packs are
 * durable before the new index names them, the new index is durable before
 * a pack it no longer names is deleted, and packs the index does not name
 * are deleted by the next collection.  Memory: a bounded cache over a mark
 * file (one bit per index slot) and a few words per pack.
 * store_gc_end() returns to the shared lease and frees g.
 */
typedef struct store_gc store_gc;
typedef struct store_gc_stats
{
	uint64_t	packs;               /* pack files before */
	uint64_t	packs_deleted;
	uint64_t	packs_rewritten;
	uint64_t	blocks_live;
	uint64_t	blocks_removed;      /* index entries dropped */
	uint64_t	bytes_before;        /* bytes of pack files before */
	uint64_t	bytes_after;         /* after (dry run: what would remain) */
} store_gc_stats;

int			store_gc_begin(store *s, bool *busy, store_gc **out);
/* Mark id live; *was_marked tells whether it already was. */
int			store_gc_mark(store_gc *g, const uint8_t id[HASH_LEN], bool *was_marked);
int			store_gc_sweep(store_gc *g, bool dry_run, store_gc_stats *st);
void		store_gc_end(store_gc *g);

/* Counters of what this handle stored: new blocks and their stored bytes. */
void		store_stats(store *s, uint64_t *blocks, uint64_t *bytes);

/*
 * CRC-32C of n bytes as the store computes it: with the CPU's crc32
 * instruction when hw is true and the CPU has SSE 4.2, else from tables.
 * Both give the same result; exported so that tests check both.
 */
uint32_t	store_crc32c(const void *data, size_t n, bool hw);

#endif
