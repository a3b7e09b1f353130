/*
 * gc.c: garbage collection of the local block store (gc.h).
 *
 * Mark: under the store's exclusive lease (no backup, restore or verify
 * holds the store, so no manifest can appear and no block can be taken
 * over while we look), every manifest in the repository is read and every
 * block it names is marked: its id lines, its block-list objects and the ids
 * those lists hold.  A list already marked was expanded before (lists are
 * content-addressed, so the same list holds the same ids): it is skipped,
 * which makes marking many similar backups cheap.
 *
 * A delta list's base is referenced by the delta, not by a manifest, and
 * only the ids the delta resolves to are live through it: those a delta
 * replaces may be garbage.  So the base is marked in a second pass over the
 * manifests, without its ids: the first pass has marked and expanded every
 * list a manifest names (a base named by a manifest too included), and a
 * list marked in the second pass alone is never expanded, so the "marked
 * means expanded" rule of the first pass is never fooled.  The second pass
 * tells deltas by their stored size (no read of full lists).  Sweep:
 * store_gc_sweep.
 *
 * Anything wrong while marking (a manifest that does not read, a block the
 * store lacks) stops the collection before anything is removed: collecting
 * with an incomplete mark would delete live blocks.  The safety argument
 * is written out in doc/expire.md.
 */
#include "gc.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "blocklist.h"
#include "manifest.h"
#include "../src/error.h"
#include "../src/log.h"
#include "../src/mem.h"

typedef struct marker
{
	store_gc   *g;
	blocklist_reader lists;
	uint8_t		(*ids)[HASH_LEN];
	bool		bases;          /* second pass: mark the bases of delta lists only */
	uint64_t	missing;        /* referenced ids the store lacks */
	char	   *first_missing;  /* the first of them, for the message */
} marker;

/* Mark one id; a missing one is counted (and named once), not fatal yet. */
static int
mark_id(marker *mk, const uint8_t id[HASH_LEN], const char *label, const char *path, bool *was)
{
	int			rc = store_gc_mark(mk->g, id, was);

	if (rc == ERR_NOT_FOUND)
	{
		if (mk->missing++ == 0)
			mk->first_missing = xasprintf("backup %s, file \"%s\": %s", label, path, error_msg());
		error_clear();
		*was = true;            /* nothing to expand */
		return 0;
	}
	return rc;
}

/* Mark the non-zero ids of a list. */
static int
mark_ids(marker *mk, const uint8_t (*ids)[HASH_LEN], uint64_t count, const char *label, const char *path)
{
	bool		was;
	int			rc = 0;

	for (uint64_t i = 0; rc == 0 && i < count; i++)
		if (!manifest_is_zero_id(ids[i]))
			rc = mark_id(mk, ids[i], label, path, &was);
	return rc;
}

static int
mark_file(marker *mk, manifest_reader *m, const char *label, const char *path)
{
	manifest_ref ref;
	uint8_t		base[HASH_LEN];
	bool		end = false;
	bool		was, is_delta;
	int			rc = 0;

	while (rc == 0 && (rc = manifest_read_ref(m, &ref, &end)) == 0 && !end)
	{
		if (mk->bases)
		{
			/* Second pass: the base of a delta (resolving the delta in the first pass proved it stored). */
			if (ref.kind != MREF_GROUP)
				continue;
			if ((rc = blocklist_base(&mk->lists, ref.id, ref.count, &is_delta, base)) == ERR_NOT_FOUND)
			{
				error_clear();  /* counted as missing by the first pass */
				rc = 0;
			}
			else if (rc != 0)
				rc = error_wrap(rc, "backup %s, file \"%s\"", label, path);
			else if (is_delta)
				rc = mark_id(mk, base, label, path, &was);
		}
		else if (ref.kind == MREF_BLOCK && !manifest_is_zero_id(ref.id))
			rc = mark_id(mk, ref.id, label, path, &was);
		else if (ref.kind == MREF_GROUP && (rc = mark_id(mk, ref.id, label, path, &was)) == 0 && !was)
		{
			if ((rc = blocklist_resolve(&mk->lists, ref.id, ref.count, mk->ids)) != 0)
				return error_wrap(rc, "backup %s, file \"%s\"", label, path);
			rc = mark_ids(mk, (const uint8_t (*)[HASH_LEN]) mk->ids, ref.count, label, path);
		}
	}
	return rc;
}

static int
mark_backup(marker *mk, repo *r, const char *label)
{
	char	   *what = xasprintf("manifest of backup %s", label);
	io_reader  *rd = NULL;
	manifest_reader *m = NULL;
	manifest_header h = {0};
	manifest_entry e = {0};
	bool		done = false;
	int			rc = repo_backup_open(r, label, &rd);

	if (rc == 0)
	{
		m = manifest_reader_new(rd, what);
		rc = manifest_read_header(m, &h);
	}
	while (rc == 0 && !done)
	{
		if ((rc = manifest_read_entry(m, &e, &done)) == 0 && !done && e.kind == MF_FILE)
			rc = mark_file(mk, m, label, e.path);
		manifest_entry_free(&e);
	}
	manifest_header_free(&h);
	manifest_reader_free(m);
	io_reader_free(rd);
	free(what);
	return rc;
}

int
gc_run(repo *r, store *s, bool dry_run, repo_gc_result *res)
{
	marker		mk = {0};
	store_gc_stats st;
	char	  **labels = NULL;
	int			count = 0;
	bool		busy;
	int			rc = store_gc_begin(s, &busy, &mk.g);

	if (rc != 0)
		return rc;
	if (busy)
	{
		res->deferred = true;
		log_info("garbage collection deferred: a backup, restore or verify is using the block store");
		return 0;
	}
	blocklist_reader_init(&mk.lists, r);
	mk.ids = xmalloc(MANIFEST_GROUP_BLOCKS * HASH_LEN);
	if ((rc = repo_backup_list(r, &labels, &count)) != 0)
		goto out;
	for (int pass = 0; pass < 2; pass++)
	{
		mk.bases = pass == 1;
		for (int i = 0; rc == 0 && i < count; i++)
			if ((rc = mark_backup(&mk, r, labels[i])) != 0)
				rc = error_wrap(rc, "garbage collection stopped, nothing was removed");
	}
	if (rc == 0 && mk.missing > 0)
		rc = error_set(ERR_CORRUPT, "garbage collection stopped, nothing was removed: %" PRIu64
					   " blocks referenced by backups are missing from the block store (the first: %s); run verify",
					   mk.missing, mk.first_missing);
	if (rc == 0 && (rc = store_gc_sweep(mk.g, dry_run, &st)) == 0)
	{
		res->packs = st.packs;
		res->packs_deleted = st.packs_deleted;
		res->packs_rewritten = st.packs_rewritten;
		res->blocks_live = st.blocks_live;
		res->blocks_removed = st.blocks_removed;
		res->bytes_before = st.bytes_before;
		res->bytes_after = st.bytes_after;
	}
out:
	repo_names_free(labels, count);
	blocklist_reader_free(&mk.lists);
	free(mk.ids);
	free(mk.first_missing);
	store_gc_end(mk.g);
	return rc;
}
