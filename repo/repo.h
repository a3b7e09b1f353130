/*
 * repo.h: the repository client interface.
 *
 * Every command reaches the repository through these functions.  A repo
 * handle is bound to one stanza and dispatches to a driver: local (this
 * process opens repo1-path, repo/local.c) or remote (requests to
 * `pgkeep server` on repo1-host, repo/remote.c).  A handle is used by one thread at a time; parallel
 * workers each open their own.
 *
 * Commit points: blocks are durable after repo_block_flush(); a WAL file
 * exists once repo_wal_put_commit() returns 0; a backup exists exactly when
 * repo_backup_put_commit() returns 0.  Nothing is visible before its commit.
 */
#ifndef PGKEEP_REPO_H
#define PGKEEP_REPO_H

#include <stdbool.h>
#include <stdint.h>

#include "../src/compress.h"
#include "../src/hash.h"
#include "../src/io.h"

#define REPO_FORMAT_VERSION 1

typedef struct stanza_info
{
	uint64_t	system_id;
	uint32_t	pg_version;          /* 150000 */
	uint32_t	control_version;
	uint32_t	catalog_version;
	uint32_t	wal_segment_size;
	uint32_t	block_size;          /* store block size in bytes */
	int64_t		created;             /* unix time */
} stanza_info;

typedef struct wal_object
{
	char		name[64];            /* WAL file name as PostgreSQL knows it */
	uint8_t		hash[HASH_LEN];      /* SHA-256 of the plain content */
	compress_type ctype;
	uint64_t	stored_size;         /* bytes in the repository */
} wal_object;

/* Where a stored block is: what repo_block_read returns. */
typedef struct block_data
{
	compress_type ctype;
	uint32_t	raw_len;
	uint32_t	stored_len;
} block_data;

typedef struct repo repo;
typedef struct repo_put repo_put;

/* Open the repository configured by the options (repo1-*), for stanza. */
int			repo_open(const char *stanza, repo **out);
/* Open a handle on the repository server repo1-host (the remote driver). */
int			repo_remote_open(const char *stanza, repo **out);
/* Ask the server on host (port, certificates: repo1-host-* options) for its version (caller frees). */
int			repo_remote_ping(const char *host, char **version);
/* Open a local repository at path directly. */
int			repo_open_local(const char *path, const char *stanza, repo **out);
void		repo_close(repo *r);
const char *repo_stanza(repo *r);
/* For drivers: ERR_OPTION when the handle was opened without a stanza. */
int			repo_need_stanza(repo *r);

/* Stanza.  create: 0 when created or identical already; ERR_STANZA when it exists for another cluster. */
int			repo_stanza_create(repo *r, const stanza_info *info);
/* ERR_STANZA "stanza ... does not exist" when missing. */
int			repo_stanza_get(repo *r, stanza_info *info);
/* All stanza names in the repository (sorted); free with repo_names_free. */
int			repo_stanza_list(repo *r, char ***names, int *count);
void		repo_names_free(char **names, int count);

/*
 * WAL.  put_begin gives a writer for the compressed bytes; commit with the
 * SHA-256 of the plain bytes.  commit returns 0 when stored, and also 0 with
 * *existed = true when the same content was already there; ERR_CONFLICT when
 * another content exists under the name (the stored copy is untouched).
 * abort discards the partial object.
 */
int			repo_wal_put_begin(repo *r, const char *name, compress_type ctype, repo_put **put, io_writer **w);
int			repo_wal_put_commit(repo_put *put, const uint8_t plain_hash[HASH_LEN], bool *existed);
void		repo_wal_put_abort(repo_put *put);
/* ERR_NOT_FOUND when the repository does not have the file. */
int			repo_wal_find(repo *r, const char *name, wal_object *out);
/* Wait until WAL file name is in the repository, up to timeout_s seconds (then ERR_TIMEOUT). */
int			repo_wal_wait(repo *r, const char *name, int64_t timeout_s);
/* A reader of the stored (compressed) bytes. */
int			repo_wal_open(repo *r, const wal_object *obj, io_reader **rd);
/*
 * Call fn for every WAL object: history files first, then the others in name
 * order; fn returning non-zero stops with that code.  fn may delete the
 * object it is given (repo_wal_delete) and no other.
 */
int			repo_wal_list(repo *r, int (*fn) (const wal_object *obj, void *arg), void *arg);
/*
 * Remove a stored WAL object (as repo_wal_list or repo_wal_find gave it),
 * durably; removing one that is already gone is 0.  Serialized with the
 * commits of archive-push.  Only expire calls it.
 */
int			repo_wal_delete(repo *r, const wal_object *obj);

/*
 * Blocks.  exists answers from durable state and from this handle's own
 * unflushed puts (which become durable at its next flush).  put stores a compressed
 * block unless the id is known; it becomes durable at the next flush (and
 * close flushes).  A remote repository sends puts in batches and reports a
 * failed put at the next flush: when flush fails, the blocks put since the
 * last flush that succeeded may be missing, and a remote handle fails every
 * later put and flush.  read copies the stored bytes of a block into buf
 * (capacity cap); ERR_NOT_FOUND when missing.
 */
int			repo_block_exists(repo *r, const uint8_t id[HASH_LEN], bool *exists, uint32_t *stored_len);
/*
 * The same for n ids at once (1 <= n <= REPO_EXISTS_MAX): exists[i] and
 * stored_len[i] answer ids[i].  One round trip on a remote repository, so a
 * backup asks which blocks the repository lacks before it sends any.
 */
#define REPO_EXISTS_MAX 1024
int			repo_block_exists_many(repo *r, const uint8_t (*ids)[HASH_LEN], size_t n, bool *exists, uint32_t *stored_len);
/*
 * repo_block_exists_many in two halves, so that the caller goes on working
 * while a repository server answers: ask sends the question about ids
 * (which must stay unchanged until the answer), answer waits for it and
 * fills exists and stored_len.  Nothing else may use r between the two.
 * An ask left unanswered (the caller failed in between) is dropped by the
 * next ask, and on a repository server by any other request too.
 */
int			repo_block_exists_ask(repo *r, const uint8_t (*ids)[HASH_LEN], size_t n);
int			repo_block_exists_answer(repo *r, bool *exists, uint32_t *stored_len);
int			repo_block_put(repo *r, const uint8_t id[HASH_LEN], compress_type ctype, const void *data,
						   uint32_t stored_len, uint32_t raw_len);
int			repo_block_flush(repo *r);
int			repo_block_read(repo *r, const uint8_t id[HASH_LEN], void *buf, size_t cap, block_data *out);
/*
 * A hint before reading blocks: the reads that follow will ask for these ids
 * in this order.  A remote repository sends the read requests at once (at
 * most REPO_PREFETCH_MAX unanswered), so the server reads while the caller
 * handles earlier blocks instead of one round trip per block; a read of
 * another id, or any other operation, first drops the answers not yet
 * asked for.  A no-op on a local repository.
 */
#define REPO_PREFETCH_MAX 512
int			repo_block_prefetch(repo *r, const uint8_t (*ids)[HASH_LEN], size_t n);
/* Whether repo_block_prefetch does anything on r (a remote repository). */
bool		repo_prefetches(const repo *r);
/*
 * Check that a block is stored without reading it (verify --fast): the
 * repository knows the id and the file holding it exists and is long enough.
 * *raw_len gets its plain size.  ERR_NOT_FOUND when the repository lacks it,
 * ERR_CORRUPT when the file holding it is missing or too short.  Damaged
 * bytes are not detected: that takes repo_block_fetch.
 */
int			repo_block_check(repo *r, const uint8_t id[HASH_LEN], uint32_t *raw_len);
/*
 * repo_block_check of n ids at once (1 <= n <= REPO_EXISTS_MAX), in one
 * round trip to a repository server: rc[i] and raw_len[i] answer ids[i], and
 * msg[i] is the message of a failed one (malloc'd, or NULL when rc[i] is 0;
 * the caller frees them).  Returns non-zero only when the repository could
 * not answer at all (then no rc[i] is set).
 */
int			repo_block_check_many(repo *r, const uint8_t (*ids)[HASH_LEN], size_t n, int *rc, uint32_t *raw_len,
								  char **msg);
/*
 * Read a block and prove it is the one its id names: its plain size must be
 * len, it is decompressed with codec into out (len bytes) and its SHA-256
 * must equal id.  stored (capacity cap) holds the stored bytes meanwhile.
 * ERR_NOT_FOUND when the repository lacks it, ERR_CORRUPT when it differs.
 */
int			repo_block_fetch(repo *r, block_codec *codec, const uint8_t id[HASH_LEN], void *stored, size_t cap,
							 void *out, uint32_t len);
/* The same for an object of any plain size up to max (block lists); *len gets its size. */
int			repo_block_load(repo *r, block_codec *codec, const uint8_t id[HASH_LEN], void *stored, size_t cap,
							void *out, size_t max, uint32_t *len);

/*
 * The stanza's block compression dictionary (a zstd dictionary; format in
 * doc/repository-format.md).  The first backup that compresses with zst
 * trains it from samples of the data directory and stores it; from then on
 * it is never replaced or removed, because stored blocks name it.
 * get: the dictionary's bytes (caller frees); ERR_NOT_FOUND when the stanza
 * has none yet, ERR_CORRUPT when its file is damaged.  put: stores it unless
 * the stanza has one already (then 0 too: the first one stays, and the
 * caller gets it again).
 */
int			repo_dict_get(repo *r, void **data, size_t *len);
int			repo_dict_put(repo *r, const void *data, size_t len);
/*
 * The stanza's dictionary digested for compression at level, loaded once per
 * handle (and again for another level); *out is NULL when the stanza has
 * none.  It lives until repo_close.
 */
int			repo_block_dict(repo *r, int level, const block_dict **out);

/*
 * Backups.  put_begin gives a writer for the manifest bytes; commit makes the
 * backup exist (durably).  list returns labels sorted oldest first.
 */
int			repo_backup_put_begin(repo *r, const char *label, repo_put **put, io_writer **w);
int			repo_backup_put_commit(repo_put *put);
void		repo_backup_put_abort(repo_put *put);
int			repo_backup_list(repo *r, char ***labels, int *count);
int			repo_backup_open(repo *r, const char *label, io_reader **rd);
/* Remove a backup durably: its manifest first (from then on it does not exist), then the rest of its directory. */
int			repo_backup_delete(repo *r, const char *label);
/*
 * Read the header of backup label's manifest into *h (free it with
 * manifest_header_free, also after an error).  Errors name the manifest.
 */
struct manifest_header;
int			repo_backup_header(repo *r, const char *label, struct manifest_header *h);

/*
 * Garbage collection and its lease.  A handle that will reference stored
 * blocks (backup, restore, verify) calls repo_blocks_hold() before it reads
 * a manifest whose blocks it will use: from then until repo_close() garbage
 * collection cannot run (it is deferred; a hold taken while collection runs
 * waits for it to end).  repo_gc() removes blocks and packs that no backup
 * in the repository references, and rewrites packs that are mostly garbage;
 * with dry_run it only counts.  When a hold keeps it from running it
 * returns 0 with deferred set.  Safety argument: doc/expire.md.
 */
typedef struct repo_gc_result
{
	bool		deferred;            /* a backup, restore or verify held the store */
	uint64_t	packs;               /* packs before collection */
	uint64_t	packs_deleted;       /* packs holding only garbage */
	uint64_t	packs_rewritten;     /* packs whose live blocks were copied to new packs */
	uint64_t	blocks_live;
	uint64_t	blocks_removed;
	uint64_t	bytes_before;        /* pack bytes before */
	uint64_t	bytes_after;         /* pack bytes after (dry run: what would remain) */
} repo_gc_result;

int			repo_blocks_hold(repo *r);
int			repo_gc(repo *r, bool dry_run, repo_gc_result *res);

/* The driver behind a handle: repo/local.c and repo/remote.c implement it. */
typedef struct repo_driver
{
	const char *name;
	void		(*close) (repo *r);
	int			(*stanza_create) (repo *r, const stanza_info *info);
	int			(*stanza_get) (repo *r, stanza_info *info);
	int			(*stanza_list) (repo *r, char ***names, int *count);
	int			(*wal_put_begin) (repo *r, const char *name, compress_type ctype, repo_put **put, io_writer **w);
	int			(*wal_put_commit) (repo_put *put, const uint8_t plain_hash[HASH_LEN], bool *existed);
	void		(*wal_put_abort) (repo_put *put);
	int			(*wal_find) (repo *r, const char *name, wal_object *out);
	int			(*wal_open) (repo *r, const wal_object *obj, io_reader **rd);
	int			(*wal_list) (repo *r, int (*fn) (const wal_object *obj, void *arg), void *arg);
	int			(*wal_delete) (repo *r, const wal_object *obj);
	int			(*block_exists) (repo *r, const uint8_t id[HASH_LEN], bool *exists, uint32_t *stored_len);
	/* Optional: NULL asks block_exists for each id. */
	int			(*block_exists_many) (repo *r, const uint8_t (*ids)[HASH_LEN], size_t n, bool *exists, uint32_t *stored_len);
	/* Optional, both or neither: NULL makes the answer ask block_exists_many then. */
	int			(*block_exists_ask) (repo *r, const uint8_t (*ids)[HASH_LEN], size_t n);
	int			(*block_exists_answer) (repo *r, bool *exists, uint32_t *stored_len);
	int			(*block_put) (repo *r, const uint8_t id[HASH_LEN], compress_type ctype, const void *data,
							  uint32_t stored_len, uint32_t raw_len);
	int			(*block_flush) (repo *r);
	int			(*block_read) (repo *r, const uint8_t id[HASH_LEN], void *buf, size_t cap, block_data *out);
	/* Optional: NULL makes repo_block_prefetch a no-op. */
	int			(*block_prefetch) (repo *r, const uint8_t (*ids)[HASH_LEN], size_t n);
	int			(*block_check) (repo *r, const uint8_t id[HASH_LEN], uint32_t *raw_len);
	/* Optional: NULL asks block_check for each id. */
	int			(*block_check_many) (repo *r, const uint8_t (*ids)[HASH_LEN], size_t n, int *rc, uint32_t *raw_len,
									 char **msg);
	int			(*backup_put_begin) (repo *r, const char *label, repo_put **put, io_writer **w);
	int			(*backup_put_commit) (repo_put *put);
	void		(*backup_put_abort) (repo_put *put);
	int			(*backup_list) (repo *r, char ***labels, int *count);
	int			(*backup_open) (repo *r, const char *label, io_reader **rd);
	int			(*backup_delete) (repo *r, const char *label);
	int			(*blocks_hold) (repo *r);
	int			(*gc) (repo *r, bool dry_run, repo_gc_result *res);
	int			(*dict_get) (repo *r, void **data, size_t *len);
	int			(*dict_put) (repo *r, const void *data, size_t len);
} repo_driver;

struct repo
{
	const repo_driver *drv;
	char	   *stanza;
	void	   *impl;
	block_dict *dict;            /* repo_block_dict's, once dict_known */
	bool		dict_known;
	bool		dict_damaged;        /* it failed to load: not read again */
	/* repo_block_exists_ask's question, for a driver that answers it at once */
	const uint8_t (*ask_ids)[HASH_LEN];
	size_t		ask_n;
};

/* Compression type and level from compress-type and compress-level (gz and bz2 read as zst, warned once). */
void		repo_compress_settings(compress_type *type, int *level);

/* Validate a stanza name: [A-Za-z0-9_.-]{1,64}, not starting with '.' */
int			repo_check_stanza_name(const char *name);

#endif
