/*
 * blocklist.h: block-list objects.  A file's block ids are cut into groups
 * of MANIFEST_GROUP_BLOCKS; each group's ids are stored in the block store as
 * one object, and the manifest names the group by that object's id (a `g`
 * line).  Unchanged groups are shared between backups, so a manifest stays
 * small (doc/repository-format.md, "Block lists").
 *
 * A list object is either full (COUNT * HASH_LEN bytes: the ids in order) or
 * a delta: a header naming a full base list of the same COUNT, then the
 * (index, id) pairs that differ from it.  A delta is always smaller than the
 * full list of its COUNT, which tells the two apart; its base is always a
 * full list (no chains), so resolving one costs at most two fetches.
 */
#ifndef PGKEEP_BLOCKLIST_H
#define PGKEEP_BLOCKLIST_H

#include "manifest.h"
#include "repo.h"
#include "../src/compress.h"

/* Delta lists: magic, header size, bytes per pair, most pairs a writer stores in one. */
#define BLOCKLIST_DELTA_MAGIC "pgkdelta"
#define BLOCKLIST_DELTA_HEADER 48
#define BLOCKLIST_DELTA_PAIR (2 + HASH_LEN)
#define BLOCKLIST_DELTA_MAX 64

/* Lists a following reader prefetches at once (blocklist_reader_follow); under REPO_PREFETCH_MAX. */
#define BLOCKLIST_AHEAD 256

/* Resolver state: reads lists through its own repository handle (one per thread). */
typedef struct blocklist_reader
{
	repo	   *r;
	block_codec *codec;
	uint8_t    *stored;
	size_t		stored_cap;
	uint8_t    *raw;            /* the object being read */
	uint8_t		(*base_ids)[HASH_LEN];  /* after a resolve: the ids of its full base list */
	/* Following a manifest reader (blocklist_reader_follow), else NULL. */
	manifest_reader *follow;
	repo	   *base_r;         /* reads the bases of delta lists, so that r keeps its prefetched reads */
	repo	   *own;            /* the handle following opened (then r), closed with the reader */
	uint8_t		(*ahead)[HASH_LEN]; /* lists prefetched on r: ahead[ahead_pos..ahead_n) are not resolved yet */
	size_t		ahead_pos;
	size_t		ahead_n;
} blocklist_reader;

void		blocklist_reader_init(blocklist_reader *b, repo *r);
void		blocklist_reader_free(blocklist_reader *b);

/*
 * When b's handle prefetches (repo_prefetches: a repository server),
 * resolve the groups of manifest reader m (whose resolver b is) with
 * prefetched reads: a resolve that finds nothing prefetched asks for its
 * list and those of the next BLOCKLIST_AHEAD `g` lines m has buffered
 * (manifest_peek_groups) in one go, so that the server sends them together
 * instead of one round trip per list.  The lists then come through a
 * handle of stanza's that b opens and owns (any other read on a handle
 * drops its prefetched ones); bases of delta lists still come through the
 * handle b was made with.  Does nothing for a local repository.  Fails
 * only when the handle cannot be opened (a server refusing a connection),
 * leaving b as it was.
 */
int			blocklist_reader_follow(blocklist_reader *b, manifest_reader *m, const char *stanza);

/*
 * manifest_group_fn: fill ids[0..count) with the ids of list list_id, a full
 * or a delta list, fetching and checking its size and hash (and, for a delta,
 * its base's).  A list that is missing, damaged, of another size, a delta
 * whose base is not a full list of the same count, or whose pairs are out of
 * range or order, is ERR_CORRUPT naming the list.
 */
int			blocklist_resolve(void *arg, const uint8_t list_id[HASH_LEN], uint64_t count, uint8_t (*ids)[HASH_LEN]);

/*
 * The same; base gets the id of the full list the ids come from: list_id
 * itself for a full list, the base for a delta (which is then referenced by
 * list_id and must be kept with it).  b->base_ids then holds the base's ids.
 */
int			blocklist_resolve_base(blocklist_reader *b, const uint8_t list_id[HASH_LEN], uint64_t count,
								   uint8_t (*ids)[HASH_LEN], uint8_t base[HASH_LEN]);

/*
 * Whether list list_id (of count ids) is a delta, and then its base: a full
 * list is told by its stored size alone, without reading it; a delta is read
 * and its header checked (not its base).  ERR_NOT_FOUND when the repository
 * lacks the list, ERR_CORRUPT as blocklist_resolve.
 */
int			blocklist_base(blocklist_reader *b, const uint8_t list_id[HASH_LEN], uint64_t count, bool *is_delta,
						   uint8_t base[HASH_LEN]);

/*
 * Encode a delta list of count ids against the full list base (whose ids
 * are base_ids) into out (room for BLOCKLIST_DELTA_HEADER + count *
 * BLOCKLIST_DELTA_PAIR bytes); *len is its size.  false (nothing written)
 * when ids equal base_ids, differ in more than BLOCKLIST_DELTA_MAX entries,
 * or the delta would not be smaller than the full list.
 */
bool		blocklist_encode_delta(const uint8_t (*ids)[HASH_LEN], const uint8_t (*base_ids)[HASH_LEN], size_t count,
								   const uint8_t base[HASH_LEN], uint8_t *out, size_t *len);

/* What a backup's lists cost: stored bytes of all lists, of those newly stored, new objects, new deltas. */
typedef struct blocklist_tally
{
	uint64_t	stored;
	uint64_t	added;
	uint64_t	lists;
	uint64_t	deltas;
} blocklist_tally;

/* Writer of lists (one per thread): stores through r, compressed with codec (of type ctype). */
/* Answers about lists a writer keeps (a chunk of a backup has 16 groups, a bundle of small files 32). */
#define BLOCKLIST_KNOWN_MAX 64

typedef struct blocklist_writer
{
	repo	   *r;
	block_codec *codec;
	compress_type ctype;
	blocklist_reader prior;     /* reads the prior backup's lists, the candidate bases */
	uint8_t		(*prior_ids)[HASH_LEN];
	uint8_t    *buf;            /* a delta being encoded */
	uint8_t    *cbuf;           /* compressed bytes */
	size_t		ccap;
	/* What the repository answered about lists the caller asked about with its blocks (blocklist_writer_known) */
	struct
	{
		uint8_t		id[HASH_LEN];
		bool		exists;
		uint32_t	stored_len;
	}			known[BLOCKLIST_KNOWN_MAX];
	size_t		known_n;
} blocklist_writer;

void		blocklist_writer_init(blocklist_writer *w, repo *r, block_codec *codec, compress_type ctype);
void		blocklist_writer_free(blocklist_writer *w);
/*
 * The repository's answer about list id (exists, and then its stored length),
 * asked by the caller along with the blocks of a group: the next
 * blocklist_make_refs uses it instead of asking again.  A full list's id is
 * the hash of its ids (see list_put), so a caller knows it as soon as it has
 * hashed a group.  An answer is used once; answers beyond BLOCKLIST_KNOWN_MAX
 * are dropped (the list is then asked about on its own).
 */
void		blocklist_writer_known(blocklist_writer *w, const uint8_t id[HASH_LEN], bool exists, uint32_t stored_len);

/*
 * Turn the ids of blocks first .. first+n-1 of a file (first a multiple of
 * MANIFEST_GROUP_BLOCKS) into manifest refs: all-zero groups become zero
 * runs, the others block-list objects stored unless already stored.  refs
 * needs room for n / MANIFEST_GROUP_BLOCKS + 1 entries; *nrefs is how many
 * were made.  bases is NULL or has an entry per group: one of kind
 * MREF_GROUP names the list the prior backup had for the same blocks; when
 * it has the same count, the group is stored as a delta against its full
 * list (the list itself, or its base) if blocklist_encode_delta allows, else
 * as a full list.  A candidate that cannot be read is only logged (the group
 * is stored full).  Costs are added to *t.
 */
int			blocklist_make_refs(blocklist_writer *w, const uint8_t (*ids)[HASH_LEN], size_t n, const manifest_ref *bases,
								manifest_ref *refs, size_t *nrefs, blocklist_tally *t);

#endif
