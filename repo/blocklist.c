/* blocklist.c: block-list objects of manifests, full and delta (see blocklist.h). */
#include "blocklist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/error.h"
#include "../src/log.h"
#include "../src/mem.h"

#define LIST_BYTES (MANIFEST_GROUP_BLOCKS * HASH_LEN)
#define DELTA_MAGIC_LEN 8

static bool
group_is_zero(const uint8_t (*ids)[HASH_LEN], size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!manifest_is_zero_id(ids[i]))
			return false;
	return true;
}

static void
put_u16(uint8_t *p, size_t v)
{
	p[0] = (uint8_t) (v & 0xff);
	p[1] = (uint8_t) (v >> 8);
}

static size_t
get_u16(const uint8_t *p)
{
	return (size_t) p[0] | (size_t) p[1] << 8;
}

void
blocklist_reader_init(blocklist_reader *b, repo *r)
{
	b->r = r;
	b->codec = block_codec_new(COMPRESS_NONE, 0);
	b->stored_cap = 2 * LIST_BYTES + 1024;
	b->stored = xmalloc(b->stored_cap);
	b->raw = xmalloc(LIST_BYTES);
	b->base_ids = xmalloc(LIST_BYTES);
	b->follow = NULL;
	b->base_r = NULL;
	b->own = NULL;
	b->ahead = NULL;
	b->ahead_pos = b->ahead_n = 0;
}

void
blocklist_reader_free(blocklist_reader *b)
{
	block_codec_free(b->codec);
	free(b->stored);
	free(b->raw);
	free(b->base_ids);
	free(b->ahead);
	repo_close(b->own);
}

int
blocklist_reader_follow(blocklist_reader *b, manifest_reader *m, const char *stanza)
{
	repo	   *own = NULL;
	int			rc;

	if (b->follow != NULL || !repo_prefetches(b->r))
		return 0;
	if ((rc = repo_open(stanza, &own)) != 0)
		return error_wrap(rc, "could not open a connection for block lists");
	b->follow = m;
	b->base_r = b->r;
	b->r = b->own = own;
	b->ahead = xmalloc(BLOCKLIST_AHEAD * HASH_LEN);
	b->ahead_pos = b->ahead_n = 0;
	return 0;
}

/*
 * Following a manifest reader, before list id is read: take it off the
 * prefetched lists, or, when none are left, prefetch it with the lists of
 * the `g` lines buffered after it.  A list other than the next prefetched
 * one (its file's blocks were skipped) is read on its own, which drops
 * the prefetched reads; the next resolve prefetches again.
 */
static int
ahead_take(blocklist_reader *b, const uint8_t id[HASH_LEN])
{
	uint8_t		ids[BLOCKLIST_AHEAD + 1][HASH_LEN];
	size_t		n;
	int			rc;

	if (b->follow == NULL)
		return 0;
	if (b->ahead_pos < b->ahead_n)
	{
		if (memcmp(b->ahead[b->ahead_pos], id, HASH_LEN) == 0)
			b->ahead_pos++;
		else
			b->ahead_pos = b->ahead_n = 0;
		return 0;
	}
	memcpy(ids[0], id, HASH_LEN);
	n = 1 + manifest_peek_groups(b->follow, ids + 1, BLOCKLIST_AHEAD);
	if ((rc = repo_block_prefetch(b->r, (const uint8_t (*)[HASH_LEN]) ids, n)) != 0)
		return rc;
	memcpy(b->ahead, ids + 1, (n - 1) * HASH_LEN);
	b->ahead_pos = 0;
	b->ahead_n = n - 1;
	return 0;
}

/*
 * Fetch object id of at most max plain bytes into out, checking its hash;
 * *len gets its size.  Errors name the list (what: "block list X" or "its base X").
 */
static int
list_fetch(blocklist_reader *b, repo *r, const uint8_t id[HASH_LEN], const char *what, void *out, size_t max, size_t *len)
{
	uint32_t	n = 0;
	int			rc = repo_block_load(r, b->codec, id, b->stored, b->stored_cap, out, max, &n);

	if (rc == ERR_NOT_FOUND)
		return error_set(ERR_CORRUPT, "%s is missing from the repository", what);
	if (rc != 0)
		return error_wrap(rc, "%s", what);
	*len = n;
	return 0;
}

/* Check the header of a delta list of len bytes (not a full list of count ids): its base and pair count. */
static int
delta_header(const uint8_t *raw, size_t len, uint64_t count, const char *hex, uint8_t base[HASH_LEN], size_t *npairs)
{
	size_t		full = (size_t) count * HASH_LEN;

	if (len < BLOCKLIST_DELTA_HEADER || memcmp(raw, BLOCKLIST_DELTA_MAGIC, DELTA_MAGIC_LEN) != 0)
		return error_set(ERR_CORRUPT, "block list %s: %zu bytes, neither a full list of %llu ids (%zu bytes) nor a delta list",
						 hex, len, (unsigned long long) count, full);
	if (get_u16(raw + 8) != count)
		return error_set(ERR_CORRUPT, "block list %s: delta of %zu ids, the manifest says %llu",
						 hex, get_u16(raw + 8), (unsigned long long) count);
	*npairs = get_u16(raw + 10);
	if (*npairs == 0 || len != BLOCKLIST_DELTA_HEADER + *npairs * BLOCKLIST_DELTA_PAIR)
		return error_set(ERR_CORRUPT, "block list %s: delta of %zu pairs has %zu bytes", hex, *npairs, len);
	memcpy(base, raw + 16, HASH_LEN);
	if (manifest_is_zero_id(base))
		return error_set(ERR_CORRUPT, "block list %s: its base is the zero id", hex);
	return 0;
}

int
blocklist_resolve_base(blocklist_reader *b, const uint8_t list_id[HASH_LEN], uint64_t count, uint8_t (*ids)[HASH_LEN],
					   uint8_t base[HASH_LEN])
{
	char		hex[HASH_HEX_LEN + 1], bhex[HASH_HEX_LEN + 1];
	char		what[2 * HASH_HEX_LEN + 64];
	size_t		full = (size_t) count * HASH_LEN, len, npairs, prev = 0;
	int			rc;

	hash_to_hex(list_id, hex);
	if (count == 0 || count > MANIFEST_GROUP_BLOCKS)
		return error_set(ERR_FORMAT, "block list %s: invalid count %llu", hex, (unsigned long long) count);
	snprintf(what, sizeof(what), "block list %s", hex);
	if ((rc = ahead_take(b, list_id)) != 0 || (rc = list_fetch(b, b->r, list_id, what, b->raw, full, &len)) != 0)
		return rc;
	if (len == full)
	{
		memcpy(ids, b->raw, full);
		memcpy(b->base_ids, b->raw, full);
		memcpy(base, list_id, HASH_LEN);
		return 0;
	}
	/* Smaller than a full list: it must be a delta of this count. */
	if ((rc = delta_header(b->raw, len, count, hex, base, &npairs)) != 0)
		return rc;
	hash_to_hex(base, bhex);
	snprintf(what, sizeof(what), "block list %s: its base %s", hex, bhex);
	if ((rc = list_fetch(b, b->follow ? b->base_r : b->r, base, what, b->base_ids, full, &len)) != 0)
		return rc;
	if (len != full)
		return error_set(ERR_CORRUPT, "block list %s: its base %s is not a full list of %llu ids (%s, %zu bytes)",
						 hex, bhex, (unsigned long long) count,
						 len >= DELTA_MAGIC_LEN && memcmp(b->base_ids, BLOCKLIST_DELTA_MAGIC, DELTA_MAGIC_LEN) == 0 ?
						 "a delta list: chains are not allowed" : "another size", len);
	memcpy(ids, b->base_ids, full);
	for (size_t i = 0; i < npairs; i++)
	{
		const uint8_t *p = b->raw + BLOCKLIST_DELTA_HEADER + i * BLOCKLIST_DELTA_PAIR;
		size_t		idx = get_u16(p);

		if (idx >= count || (i > 0 && idx <= prev))
			return error_set(ERR_CORRUPT, "block list %s: delta pair %zu has index %zu (%s)", hex, i, idx,
							 idx >= count ? "out of range" : "not after the previous one");
		memcpy(ids[idx], p + 2, HASH_LEN);
		prev = idx;
	}
	return 0;
}

int
blocklist_base(blocklist_reader *b, const uint8_t list_id[HASH_LEN], uint64_t count, bool *is_delta, uint8_t base[HASH_LEN])
{
	char		hex[HASH_HEX_LEN + 1];
	char		what[HASH_HEX_LEN + 16];
	uint32_t	raw_len;
	size_t		len, npairs;
	int			rc;

	*is_delta = false;
	hash_to_hex(list_id, hex);
	if (count == 0 || count > MANIFEST_GROUP_BLOCKS)
		return error_set(ERR_FORMAT, "block list %s: invalid count %llu", hex, (unsigned long long) count);
	if ((rc = repo_block_check(b->r, list_id, &raw_len)) != 0)
		return error_wrap(rc, "block list %s", hex);
	if (raw_len == count * HASH_LEN)
		return 0;
	snprintf(what, sizeof(what), "block list %s", hex);
	if ((rc = list_fetch(b, b->r, list_id, what, b->raw, (size_t) count * HASH_LEN, &len)) != 0 ||
		(rc = delta_header(b->raw, len, count, hex, base, &npairs)) != 0)
		return rc;
	*is_delta = true;
	return 0;
}

int
blocklist_resolve(void *arg, const uint8_t list_id[HASH_LEN], uint64_t count, uint8_t (*ids)[HASH_LEN])
{
	uint8_t		base[HASH_LEN];

	return blocklist_resolve_base(arg, list_id, count, ids, base);
}

bool
blocklist_encode_delta(const uint8_t (*ids)[HASH_LEN], const uint8_t (*base_ids)[HASH_LEN], size_t count,
					   const uint8_t base[HASH_LEN], uint8_t *out, size_t *len)
{
	size_t		n = 0;

	for (size_t i = 0; i < count; i++)
	{
		if (memcmp(ids[i], base_ids[i], HASH_LEN) == 0)
			continue;
		if (n == BLOCKLIST_DELTA_MAX)
			return false;
		uint8_t    *p = out + BLOCKLIST_DELTA_HEADER + n++ * BLOCKLIST_DELTA_PAIR;

		put_u16(p, i);
		memcpy(p + 2, ids[i], HASH_LEN);
	}
	*len = BLOCKLIST_DELTA_HEADER + n * BLOCKLIST_DELTA_PAIR;
	if (n == 0 || *len >= count * HASH_LEN)
		return false;
	memset(out, 0, BLOCKLIST_DELTA_HEADER);
	memcpy(out, BLOCKLIST_DELTA_MAGIC, DELTA_MAGIC_LEN);
	put_u16(out + 8, count);
	put_u16(out + 10, n);
	memcpy(out + 16, base, HASH_LEN);
	return true;
}

void
blocklist_writer_init(blocklist_writer *w, repo *r, block_codec *codec, compress_type ctype)
{
	w->r = r;
	w->codec = codec;
	w->ctype = ctype;
	blocklist_reader_init(&w->prior, r);
	w->prior_ids = xmalloc(LIST_BYTES);
	w->buf = xmalloc(BLOCKLIST_DELTA_HEADER + MANIFEST_GROUP_BLOCKS * BLOCKLIST_DELTA_PAIR);
	w->ccap = block_codec_bound(codec, LIST_BYTES);
	w->cbuf = xmalloc(w->ccap);
	w->known_n = 0;
}

void
blocklist_writer_free(blocklist_writer *w)
{
	blocklist_reader_free(&w->prior);
	free(w->prior_ids);
	free(w->buf);
	free(w->cbuf);
}

void
blocklist_writer_known(blocklist_writer *w, const uint8_t id[HASH_LEN], bool exists, uint32_t stored_len)
{
	if (w->known_n == BLOCKLIST_KNOWN_MAX)
		return;
	memcpy(w->known[w->known_n].id, id, HASH_LEN);
	w->known[w->known_n].exists = exists;
	w->known[w->known_n].stored_len = stored_len;
	w->known_n++;
}

/* Whether the caller passed the answer about id; then *exists and *have, and the answer is used up. */
static bool
known_answer(blocklist_writer *w, const uint8_t id[HASH_LEN], bool *exists, uint32_t *have)
{
	for (size_t i = 0; i < w->known_n; i++)
		if (memcmp(w->known[i].id, id, HASH_LEN) == 0)
		{
			*exists = w->known[i].exists;
			*have = w->known[i].stored_len;
			w->known[i] = w->known[--w->known_n];
			return true;
		}
	return false;
}

/* Store one list object (len bytes) unless the repository has it; its id goes to list_id. */
static int
list_put(blocklist_writer *w, const void *data, size_t len, uint8_t list_id[HASH_LEN], blocklist_tally *t)
{
	bool		exists;
	uint32_t	have;
	size_t		clen;
	int			rc;

	hash_buf(data, len, list_id);
	if (!known_answer(w, list_id, &exists, &have) && (rc = repo_block_exists(w->r, list_id, &exists, &have)) != 0)
		return rc;
	if (exists)
	{
		t->stored += have;
		return 0;
	}
	if ((rc = block_compress(w->codec, data, len, w->cbuf, w->ccap, &clen)) != 0)
		return rc;
	/* Ids are random bytes: they rarely compress, and then they are stored as they are. */
	if (clen < len)
		rc = repo_block_put(w->r, list_id, w->ctype, w->cbuf, (uint32_t) clen, (uint32_t) len);
	else
		rc = repo_block_put(w->r, list_id, COMPRESS_NONE, data, (uint32_t) (clen = len), (uint32_t) len);
	t->stored += clen;
	t->added += clen;
	t->lists++;
	return rc;
}

/*
 * Store a group of k ids as a delta against the prior's list cand when it is
 * smaller (*done then), else leave it to the caller.
 */
static int
group_put_delta(blocklist_writer *w, const uint8_t (*ids)[HASH_LEN], size_t k, const manifest_ref *cand,
				uint8_t list_id[HASH_LEN], blocklist_tally *t, bool *done)
{
	uint8_t		base[HASH_LEN];
	size_t		len;
	uint64_t	before;
	int			rc;

	*done = false;
	/* Unchanged since the prior and a full list: no need to read it. */
	hash_buf(ids, k * HASH_LEN, list_id);
	if (memcmp(list_id, cand->id, HASH_LEN) == 0)
		return 0;
	if (blocklist_resolve_base(&w->prior, cand->id, k, w->prior_ids, base) != 0)
	{
		log_detail("prior %s: storing a full list", error_msg());
		error_clear();
		return 0;
	}
	if (!blocklist_encode_delta(ids, (const uint8_t (*)[HASH_LEN]) w->prior.base_ids, k, base, w->buf, &len))
		return 0;
	before = t->lists;
	if ((rc = list_put(w, w->buf, len, list_id, t)) != 0)
		return rc;
	t->deltas += t->lists - before;
	*done = true;
	return 0;
}

int
blocklist_make_refs(blocklist_writer *w, const uint8_t (*ids)[HASH_LEN], size_t n, const manifest_ref *bases,
					manifest_ref *refs, size_t *nrefs, blocklist_tally *t)
{
	int			rc = 0;

	*nrefs = 0;
	for (size_t at = 0; at < n; at += MANIFEST_GROUP_BLOCKS)
	{
		size_t		k = n - at < MANIFEST_GROUP_BLOCKS ? n - at : MANIFEST_GROUP_BLOCKS;
		const manifest_ref *cand = bases ? &bases[at / MANIFEST_GROUP_BLOCKS] : NULL;
		manifest_ref *ref = &refs[(*nrefs)++];
		bool		done = false;

		memset(ref, 0, sizeof(*ref));
		ref->count = k;
		if (group_is_zero(ids + at, k))
		{
			ref->kind = MREF_ZERO;
			continue;
		}
		ref->kind = MREF_GROUP;
		if (cand && cand->kind == MREF_GROUP && cand->count == k &&
			(rc = group_put_delta(w, ids + at, k, cand, ref->id, t, &done)) != 0)
			break;
		if (!done && (rc = list_put(w, ids + at, k * HASH_LEN, ref->id, t)) != 0)
			break;
	}
	return rc;
}
