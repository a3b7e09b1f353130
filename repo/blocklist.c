/* blocklist.c: block-list objects of manifests (see blocklist.h). */
#include "blocklist.h"

#include <stdlib.h>
#include <string.h>

#include "../src/error.h"
#include "../src/mem.h"

#define LIST_BYTES (MANIFEST_GROUP_BLOCKS * HASH_LEN)

static bool
group_is_zero(const uint8_t (*ids)[HASH_LEN], size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!manifest_is_zero_id(ids[i]))
			return false;
	return true;
}

/* Store one list unless the repository has it; its id goes to list_id. */
static int
list_put(repo *r, block_codec *codec, compress_type ctype, const uint8_t (*ids)[HASH_LEN], size_t n, uint8_t list_id[HASH_LEN],
		 uint64_t *stored, uint64_t *added)
{
	size_t		len = n * HASH_LEN;
	size_t		cap = block_codec_bound(codec, LIST_BYTES);
	uint8_t    *buf;
	bool		exists;
	uint32_t	have;
	size_t		clen;
	int			rc;

	hash_buf(ids, len, list_id);
	if ((rc = repo_block_exists(r, list_id, &exists, &have)) != 0)
		return rc;
	if (exists)
	{
		*stored += have;
		return 0;
	}
	buf = xmalloc(cap);
	if ((rc = block_compress(codec, ids, len, buf, cap, &clen)) == 0)
	{
		/* Ids are random bytes: they rarely compress, and then they are stored as they are. */
		if (clen < len)
			rc = repo_block_put(r, list_id, ctype, buf, (uint32_t) clen, (uint32_t) len);
		else
			rc = repo_block_put(r, list_id, COMPRESS_NONE, ids, (uint32_t) (clen = len), (uint32_t) len);
		*stored += clen;
		*added += clen;
	}
	free(buf);
	return rc;
}

int
blocklist_make_refs(repo *r, block_codec *codec, compress_type ctype, const uint8_t (*ids)[HASH_LEN], size_t n,
					manifest_ref *refs, size_t *nrefs, uint64_t *stored, uint64_t *added)
{
	*nrefs = 0;
	for (size_t at = 0; at < n; at += MANIFEST_GROUP_BLOCKS)
	{
		size_t		k = n - at < MANIFEST_GROUP_BLOCKS ? n - at : MANIFEST_GROUP_BLOCKS;
		manifest_ref *ref = &refs[(*nrefs)++];
		int			rc;

		memset(ref, 0, sizeof(*ref));
		ref->count = k;
		if (group_is_zero(ids + at, k))
		{
			ref->kind = MREF_ZERO;
			continue;
		}
		ref->kind = MREF_GROUP;
		if ((rc = list_put(r, codec, ctype, ids + at, k, ref->id, stored, added)) != 0)
			return rc;
	}
	return 0;
}

void
blocklist_reader_init(blocklist_reader *b, repo *r)
{
	b->r = r;
	b->codec = block_codec_new(COMPRESS_NONE, 0);
	b->stored_cap = 2 * LIST_BYTES + 1024;
	b->stored = xmalloc(b->stored_cap);
}

void
blocklist_reader_free(blocklist_reader *b)
{
	block_codec_free(b->codec);
	free(b->stored);
}

int
blocklist_resolve(void *arg, const uint8_t list_id[HASH_LEN], uint64_t count, uint8_t (*ids)[HASH_LEN])
{
	blocklist_reader *b = arg;
	char		hex[HASH_HEX_LEN + 1];
	int			rc;

	hash_to_hex(list_id, hex);
	if (count == 0 || count > MANIFEST_GROUP_BLOCKS)
		return error_set(ERR_FORMAT, "block list %s: invalid count %llu", hex, (unsigned long long) count);
	rc = repo_block_fetch(b->r, b->codec, list_id, b->stored, b->stored_cap, ids, (uint32_t) (count * HASH_LEN));
	if (rc == ERR_NOT_FOUND)
		return error_set(ERR_CORRUPT, "block list %s is missing from the repository", hex);
	if (rc != 0)
		return error_wrap(rc, "block list %s", hex);
	return 0;
}
