/*
 * blocklist.h: block-list objects.  A file's block ids are cut into groups
 * of MANIFEST_GROUP_BLOCKS; each group's ids (32 bytes each, in order) are
 * stored in the block store as one object, and the manifest names the group
 * by that object's id (a `g` line).  Unchanged groups are shared between
 * backups, so a manifest stays small (doc/repository-format.md).
 */
#ifndef PGKEEP_BLOCKLIST_H
#define PGKEEP_BLOCKLIST_H

#include "manifest.h"
#include "repo.h"
#include "../src/compress.h"

/*
 * Turn the ids of blocks first .. first+n-1 of a file (first a multiple of
 * MANIFEST_GROUP_BLOCKS) into manifest refs: all-zero groups become zero
 * runs, the others block-list objects stored through r (compressed with
 * codec, whose type is ctype) unless already stored.  refs needs room for n / MANIFEST_GROUP_BLOCKS
 * + 1 entries; *nrefs is how many were made.  Stored bytes of the lists are
 * added to *stored, and those newly stored to *added.
 */
int			blocklist_make_refs(repo *r, block_codec *codec, compress_type ctype, const uint8_t (*ids)[HASH_LEN], size_t n,
								manifest_ref *refs, size_t *nrefs, uint64_t *stored, uint64_t *added);

/* Resolver state for manifest_reader_set_group_fn: reads lists through its own repository handle. */
typedef struct blocklist_reader
{
	repo	   *r;
	block_codec *codec;
	uint8_t    *stored;
	size_t		stored_cap;
} blocklist_reader;

void		blocklist_reader_init(blocklist_reader *b, repo *r);
void		blocklist_reader_free(blocklist_reader *b);
/* manifest_group_fn: fetch list list_id into ids, checking its size and hash (repo_block_fetch). */
int			blocklist_resolve(void *arg, const uint8_t list_id[HASH_LEN], uint64_t count, uint8_t (*ids)[HASH_LEN]);

#endif
