/*
 * walk.c: restore's walk over the manifest (see the top of restore.c): the
 * stack of open directories (frames), directories and links made as the
 * walk passes them and completed when it is past them, and the files, whose
 * blocks go in jobs to the workers (write.c).
 */
#include "restore_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../repo/blocklist.h"
#include "../repo/manifest.h"
#include "../repo/repo.h"
#include "../src/error.h"
#include "../src/fileio.h"
#include "../src/log.h"
#include "../src/mem.h"
#include "../src/progress.h"

/* postgresql.auto.conf is small; this only bounds a broken one. */
#define AUTO_CONF_MAX (16 * 1024 * 1024)

/*
 * Top-level files of a backup that are not restored: backup_label and
 * tablespace_map are written from the manifest header; the others would
 * tell PostgreSQL that it is running or how to recover (restore's job), or
 * are leftovers of an earlier recovery.
 */
static const char *const top_skipped[] = {
	"backup_label", "backup_label.old", "postmaster.pid", "recovery.signal", "standby.signal", "tablespace_map",
};

/* ---- files ---- */

/* Read exactly n block ids of the current file. */
static int
ids_read(manifest_reader *m, uint8_t (*ids)[HASH_LEN], size_t n)
{
	for (size_t have = 0, got; have < n; have += got)
	{
		int			rc = manifest_read_blocks(m, ids + have, n - have, &got);

		if (rc != 0)
			return rc;
		if (got == 0)
			return error_set(ERR_FORMAT, "the manifest ended the block list of a file early");
	}
	return 0;
}

/* Queue the blocks of f in jobs of at most RESTORE_CHUNK_BLOCKS, each holding a reference to f. */
static int
file_queue_blocks(restore *rs, manifest_reader *m, rfile *f, uint64_t nblocks)
{
	for (uint64_t first = 0; first < nblocks; first += RESTORE_CHUNK_BLOCKS)
	{
		size_t		n = nblocks - first < RESTORE_CHUNK_BLOCKS ? (size_t) (nblocks - first) : RESTORE_CHUNK_BLOCKS;
		job		   *j = xmalloc(sizeof(job) + n * HASH_LEN);
		int			rc;

		j->file = f;
		j->first = first;
		j->n = n;
		if ((rc = ids_read(m, j->ids, n)) == 0)
		{
			atomic_fetch_add(&f->refs, 1);
			if ((rc = queue_push(&rs->q, j)) != 0)
				atomic_fetch_sub(&f->refs, 1);
		}
		if (rc != 0)
		{
			free(j);
			return rc;
		}
	}
	return 0;
}

static int
file_restore(restore *rs, manifest_reader *m, const manifest_entry *e, const char *path)
{
	rfile	   *f = xcalloc(1, sizeof(*f));
	int			rc;

	f->path = xstrdup(path);
	f->fd = -1;
	f->size = e->size;
	f->meta = meta_of(rs, e);
	if ((rc = file_open(rs, f)) != 0)
	{
		file_free(f);
		return rc;
	}
	/* The main thread's reference keeps f open until all its jobs are queued. */
	atomic_init(&f->refs, 1);
	atomic_init(&f->written, 0);
	atomic_init(&f->written_bytes, 0);
	atomic_init(&f->writers, 0);
	rs->files++;
	rs->bytes += e->size;
	rc = file_queue_blocks(rs, m, f, e->nblocks);
	file_release(rs, f);
	return rc;
}

/*
 * postgresql.auto.conf is not written by the workers: its backup copy is
 * read into memory here (verified like every block), and written once with
 * the recovery settings (recovery_write), so that --delta can keep a file
 * that already holds the result.
 */
static int
auto_conf_load(restore *rs, manifest_reader *m, const manifest_entry *e)
{
	uint32_t	bs = rs->hdr.block_size;
	size_t		cap = 2 * (size_t) bs;
	block_codec *codec;
	uint8_t    *stored;
	uint8_t		id[1][HASH_LEN];
	int			rc = 0;

	if (e->size > AUTO_CONF_MAX)
		return error_set(ERR_FORMAT, "file \"%s\" of backup set %s has %" PRIu64 " bytes, more than restore reads (%d)",
						 e->path, rs->label, e->size, AUTO_CONF_MAX);
	codec = block_codec_new(COMPRESS_NONE, 0);
	stored = xmalloc(cap);
	rs->auto_conf = xmalloc(e->size + 1);
	for (uint64_t b = 0; b < e->nblocks && rc == 0; b++)
	{
		uint64_t	left = e->size - b * bs;
		uint32_t	len = left < bs ? (uint32_t) left : bs;
		char	   *out = rs->auto_conf + b * bs;

		if ((rc = ids_read(m, id, 1)) != 0)
			break;
		if (manifest_is_zero_id(id[0]))
			memset(out, 0, len);
		else if ((rc = repo_block_fetch(rs->repo, codec, id[0], stored, cap, out, len)) != 0)
			rc = block_error(rs, e->path, b, id[0], rc);
	}
	rs->auto_conf[e->size] = '\0';
	rs->auto_conf_meta = meta_of(rs, e);
	progress_add(rs->progress, e->size);
	rs->files++;
	rs->bytes += e->size;
	block_codec_free(codec);
	free(stored);
	return rc;
}

/* ---- directories and links ---- */

/*
 * Create a directory 0700, so that its entries can be made whatever its
 * final mode (frame_finish sets that).  With --force or --delta an existing
 * directory is kept (with its owner's permissions added until then) and
 * anything else at path goes.
 */
static int
dir_create(const restore *rs, const char *path)
{
	struct stat st;
	int			rc;

	if (rs->overwrite && lstat(path, &st) == 0)
	{
		if (S_ISDIR(st.st_mode))
		{
			if ((st.st_mode & S_IRWXU) != S_IRWXU && chmod(path, (st.st_mode & 07777) | S_IRWXU) != 0)
				return error_set(ERR_FILE, "could not change mode of \"%s\": %s", path, strerror(errno));
			return 0;
		}
		if ((rc = fio_remove_tree(path)) != 0)
			return rc;
	}
	if (mkdir(path, 0700) != 0)
		return error_set(ERR_FILE, "could not create directory \"%s\": %s", path, strerror(errno));
	return 0;
}

/* The target of link path into *out (caller frees). */
int
link_read(const char *path, char **out)
{
	for (size_t cap = 256;; cap *= 2)
	{
		char	   *buf = xmalloc(cap);
		ssize_t		n = readlink(path, buf, cap);

		if (n >= 0 && (size_t) n < cap)
		{
			buf[n] = '\0';
			*out = buf;
			return 0;
		}
		free(buf);
		if (n < 0)
			return error_set(ERR_FILE, "could not read link \"%s\": %s", path, strerror(errno));
	}
}

/* Whether path is a link to target already. */
static bool
link_is(const char *path, const char *target)
{
	struct stat st;
	char	   *cur = NULL;
	bool		same = lstat(path, &st) == 0 && S_ISLNK(st.st_mode) && link_read(path, &cur) == 0 &&
		strcmp(cur, target) == 0;

	free(cur);
	return same;
}

/* A link; with --force or --delta whatever is at path goes first, except that --delta keeps the same link. */
static int
link_create(const restore *rs, const char *path, const char *target, const meta *m)
{
	int			rc;

	if (rs->delta && link_is(path, target))
		return link_meta_apply(path, m);
	if (rs->overwrite && (rc = fio_remove_tree(path)) != 0)
		return rc;
	if (symlink(target, path) != 0)
		return error_set(ERR_FILE, "could not create link \"%s\" to \"%s\": %s", path, target, strerror(errno));
	return link_meta_apply(path, m);
}

/*
 * The length of the topmost missing directory of path, which mkdir -p
 * creates along with those below it; more than path's length when path exists.
 */
size_t
missing_from(const char *path)
{
	char	   *p = xstrdup(path);
	size_t		len = strlen(p) + 1;
	char	   *slash;

	while (!fio_exists(p))
	{
		len = strlen(p);
		if ((slash = strrchr(p, '/')) == NULL || slash == p)
			break;
		*slash = '\0';
	}
	free(p);
	return len;
}

/*
 * Give the directories of path that restore created (missing_from said
 * which) the owner m, so that PostgreSQL's user can reach what is in them.
 */
static int
chown_created(const char *path, size_t missing_len, const meta *m)
{
	char	   *p = xstrdup(path);
	int			rc = 0;

	for (; rc == 0 && meta_has_owner(m) && strlen(p) >= missing_len; *strrchr(p, '/') = '\0')
		if (chown(p, m->uid, m->gid) != 0)
			rc = error_set(ERR_FILE, "could not change owner of \"%s\": %s", p, strerror(errno));
	free(p);
	return rc;
}

/* The link pg_tblspc/OID to where the tablespace is restored, creating that directory when missing. */
static int
tablespace_link_create(restore *rs, const manifest_entry *e, const char *path)
{
	const tablespace *t = tablespace_of(rs, e->path);
	meta		m = meta_of(rs, e);
	size_t		missing = missing_from(t->dest);
	int			rc;

	/* Created 0700 when missing, owned like the tablespace. */
	if ((rc = fio_mkdir_durable(t->dest, 0700)) != 0 || (rc = chown_created(t->dest, missing, &m)) != 0 ||
		(rc = fs_register(rs, t->dest)) != 0)
		return rc;
	return link_create(rs, path, t->dest, &m);
}

/*
 * Entries came under a link (its target's content was backed up): restore
 * it as a directory, as writing through a link could lead out of the data
 * directory.
 */
static int
link_to_dir(restore *rs, frame *f)
{
	char	   *path = path_join(rs->target, f->path);
	int			rc = dir_create(rs, path);

	if (rc == 0)
		log_info("link \"%s\" to \"%s\" is restored as a directory holding its content", f->path, f->link_target);
	f->made_dir = true;
	f->meta.mode = 0700;
	free(path);
	return rc;
}

static int
name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

/* Whether the directory path is missing or has no entries (false when it cannot be read). */
static bool
dir_is_empty(const char *path)
{
	DIR		   *d = opendir(path);
	struct dirent *de;
	bool		empty = true;

	if (d == NULL)
		return errno == ENOENT;
	while (empty && (de = readdir(d)) != NULL)
		empty = name_is_dot(de->d_name);
	closedir(d);
	return empty;
}

/* Whether name is a file of the top directory that restore_extras writes (replacing it) after the walk. */
static bool
own_file(const restore *rs, const char *name)
{
	return strcmp(name, "backup_label") == 0 || (rs->signal != NULL && strcmp(name, rs->signal) == 0) ||
		(rs->hdr.tablespace_map != NULL && strcmp(name, "tablespace_map") == 0);
}

/* With --force or --delta: remove from a complete directory what the backup does not have. */
static int
dir_clean(restore *rs, const frame *f, const char *path)
{
	struct dirent *de;
	DIR		   *d = opendir(path);
	int			rc = 0;

	if (d == NULL)
		return error_set(ERR_FILE, "could not open directory \"%s\": %s", path, strerror(errno));
	while (rc == 0 && (de = readdir(d)) != NULL)
	{
		const char *name = de->d_name;
		char	   *p;

		/* bsearch must not get the NULL of an empty list. */
		if (name_is_dot(name) || (f->nnames > 0 && bsearch(&name, f->names, f->nnames, sizeof(char *), name_cmp)) ||
			(f->kind == FR_ROOT && own_file(rs, name)))
			continue;
		p = path_join(path, name);
		log_detail("remove \"%s\": not in backup set %s", p, rs->label);
		rc = fio_remove_tree(p);
		rs->counts.removed++;
		free(p);
	}
	closedir(d);
	return rc;
}

/* ---- the walk ---- */

static void
frame_push(restore *rs, frame_kind kind, const manifest_entry *e)
{
	frame	   *f;

	if (rs->depth == rs->frames_cap)
	{
		rs->frames_cap = rs->frames_cap ? 2 * rs->frames_cap : 16;
		rs->frames = xrealloc(rs->frames, (size_t) rs->frames_cap * sizeof(frame));
	}
	f = &rs->frames[rs->depth++];
	memset(f, 0, sizeof(*f));
	f->kind = kind;
	f->path = xstrdup(e ? e->path : "");
	if (e != NULL)
		f->meta = meta_of(rs, e);
	if (kind == FR_LINK)
		f->link_target = xstrdup(e->link_target);
}

static void
frame_free(frame *f)
{
	for (size_t i = 0; i < f->nnames; i++)
		free(f->names[i]);
	free(f->names);
	free(f->path);
	free(f->link_target);
}

/* Add a name to f's sorted list (names come in order, but for PG_CONTROL_TMP_NAME). */
static void
frame_add_name(frame *f, const char *name)
{
	size_t		i = f->nnames;

	if (f->nnames == f->cap)
	{
		f->cap = f->cap ? 2 * f->cap : 16;
		f->names = xrealloc(f->names, f->cap * sizeof(char *));
	}
	for (; i > 0 && strcmp(f->names[i - 1], name) > 0; i--)
		f->names[i] = f->names[i - 1];
	f->names[i] = xstrdup(name);
	f->nnames++;
}

/* Whether the walk, now at path, is past every entry under f (its subtree came right after it). */
static bool
frame_passed(const frame *f, const char *path)
{
	size_t		n = strlen(f->path);

	return f->kind != FR_ROOT && !(strncmp(path, f->path, n) == 0 && path[n] == '/');
}

static int
dir_finish(const char *path, bool follow, const meta *m)
{
	int			fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | (follow ? 0 : O_NOFOLLOW));
	int			rc;

	if (fd < 0)
		return error_set(ERR_FILE, "could not open directory \"%s\": %s", path, strerror(errno));
	rc = meta_apply(fd, path, m);
	close(fd);
	return rc;
}

/* A directory or link the walk is past is complete: clean it, give it its metadata (syncfs makes it durable). */
static int
frame_finish(restore *rs, const frame *f)
{
	char	   *path = path_join(rs->target, f->path);
	int			rc = 0;

	if (f->kind == FR_LINK && !f->made_dir)
	{
		rc = link_create(rs, path, f->link_target, &f->meta);
		/*
		 * pg_wal on another disk: a diverged primary's segments there would be
		 * replayed, but the link may as well lead to another cluster's live
		 * WAL (a copy restored on the origin's host), so restore does not
		 * empty it: it says so.
		 */
		if (rc == 0 && rs->overwrite && strcmp(f->path, "pg_wal") == 0 && !dir_is_empty(path))
			log_warn("pg_wal is a link to \"%s\", which restore does not clean: remove the WAL files there "
					 "before starting the cluster, unless they are another cluster's", f->link_target);
	}
	else if (rs->overwrite && f->kind != FR_TABLESPACE)
	{
		/*
		 * A tablespace's directory is not cleaned: only its version directory
		 * (PG_15_...) is this cluster's, and it is cleaned as a directory of
		 * its own.  Other versions' directories (pg_upgrade leaves the old
		 * cluster's) are not restore's to remove.
		 */
		rc = dir_clean(rs, f, path);
	}
	/* A tablespace's link got its metadata when it was made. */
	if (rc == 0 && f->kind == FR_ROOT)
	{
		/* The parents restore created are the owner's too; the data directory may be the user's link. */
		if ((rc = chown_created(rs->target, rs->target_missing, &rs->root_meta)) == 0)
			rc = dir_finish(path, true, &rs->root_meta);
	}
	else if (rc == 0 && f->kind != FR_TABLESPACE && (f->kind == FR_DIR || f->made_dir))
		rc = dir_finish(path, false, &f->meta);
	free(path);
	return rc;
}

static int
frame_leave(restore *rs)
{
	frame	   *f = &rs->frames[--rs->depth];
	int			rc = rs->writing ? frame_finish(rs, f) : 0;

	frame_free(f);
	return rc;
}

/*
 * Bring the walk to path: leave the frames it is past, and check that the
 * frame left on top is path's directory.  It is not (ERR_FORMAT, found by
 * the first pass) when the manifest did not list the directory first.
 */
static int
walk_to(restore *rs, const char *path)
{
	const char *slash = strrchr(path, '/');
	size_t		dirlen = slash ? (size_t) (slash - path) : 0;
	const char *dir;
	int			rc;

	while (frame_passed(&rs->frames[rs->depth - 1], path))
		if ((rc = frame_leave(rs)) != 0)
			return rc;
	dir = rs->frames[rs->depth - 1].path;
	if (strlen(dir) != dirlen)
		return error_set(ERR_FORMAT, "manifest of backup set %s: \"%s\" comes without an entry for its directory",
						 rs->label, path);
	return 0;
}

static bool
top_is_skipped(const char *name)
{
	for (size_t i = 0; i < sizeof(top_skipped) / sizeof(top_skipped[0]); i++)
		if (strcmp(name, top_skipped[i]) == 0)
			return true;
	return false;
}

/* Restore one entry into its directory, the frame on top. */
static int
entry_restore(restore *rs, manifest_reader *m, const manifest_entry *e)
{
	frame	   *pf = &rs->frames[rs->depth - 1];
	const char *slash = strrchr(e->path, '/');
	char	   *path;
	int			rc = 0;

	if (pf->kind == FR_ROOT && e->kind == MF_FILE && top_is_skipped(e->path))
		return 0;
	if (pf->kind == FR_LINK && !pf->made_dir && (rc = link_to_dir(rs, pf)) != 0)
		return rc;
	if (pf->kind == FR_ROOT && e->kind == MF_FILE && strcmp(e->path, AUTO_CONF) == 0)
	{
		if (rs->overwrite)
			frame_add_name(pf, e->path);
		return auto_conf_load(rs, m, e);
	}
	if (e->kind == MF_FILE && strcmp(e->path, PG_CONTROL) == 0)
	{
		if (rs->overwrite)
			frame_add_name(pf, PG_CONTROL_TMP_NAME);
		path = path_join(rs->target, PG_CONTROL_TMP);
	}
	else
	{
		if (rs->overwrite)
			frame_add_name(pf, slash ? slash + 1 : e->path);
		path = path_join(rs->target, e->path);
	}
	if (e->kind == MF_FILE)
		rc = file_restore(rs, m, e, path);
	else if (e->kind == MF_DIR)
		rc = dir_create(rs, path);
	else if (tablespace_of(rs, e->path) != NULL)
		rc = tablespace_link_create(rs, e, path);
	/* Other links are made when the walk is past them (frame_finish). */
	free(path);
	/*
	 * The manifest has no entry for the data directory itself; PostgreSQL
	 * makes its directories alike, so it takes the mode and owner of global.
	 */
	if (rc == 0 && e->kind == MF_DIR && strcmp(e->path, "global") == 0)
		rs->root_meta = meta_of(rs, e);
	return rc;
}

static int
entry_visit(restore *rs, manifest_reader *m, const manifest_entry *e)
{
	int			rc;

	if ((rc = walk_to(rs, e->path)) != 0)
		return rc;
	if (e->kind == MF_FILE && strcmp(e->path, PG_CONTROL) == 0)
		rs->has_pg_control = true;
	if (rs->writing && (rc = entry_restore(rs, m, e)) != 0)
		return rc;
	if (e->kind == MF_DIR)
		frame_push(rs, FR_DIR, e);
	else if (e->kind == MF_LINK)
		frame_push(rs, tablespace_of(rs, e->path) ? FR_TABLESPACE : FR_LINK, e);
	return 0;
}

/* One pass over the manifest: the first checks it all and keeps its header, the second restores it. */
int
manifest_pass(restore *rs)
{
	char	   *what = xasprintf("manifest of backup set %s", rs->label);
	io_reader  *rd = NULL;
	manifest_reader *m = NULL;
	manifest_header h;
	manifest_entry e;
	blocklist_reader lists;
	bool		done = false;
	int			rc = 0;

	/*
	 * Block lists are read on this thread.  From a repository server they
	 * come through a connection of their own, prefetched many at a time
	 * (blocklist_reader_follow), instead of a round trip per list between
	 * the manifest's reads.
	 */
	blocklist_reader_init(&lists, rs->repo);
	if ((rc = repo_backup_open(rs->repo, rs->label, &rd)) != 0)
		goto out;
	m = manifest_reader_new(rd, what);
	manifest_reader_set_group_fn(m, blocklist_resolve, &lists);
	if (rs->writing && (rc = blocklist_reader_follow(&lists, m, rs->stanza)) != 0)
		goto out;
	if ((rc = manifest_read_header(m, &h)) != 0)
		goto out;
	if (rs->writing)
		manifest_header_free(&h);
	else
	{
		rs->hdr = h;
		if ((rc = tablespaces_resolve(rs)) != 0)
			goto out;
	}
	frame_push(rs, FR_ROOT, NULL);
	while (rc == 0 && !done)
	{
		rc = manifest_read_entry(m, &e, &done);
		if (rc == 0 && !done)
			rc = entry_visit(rs, m, &e);
		manifest_entry_free(&e);
	}
	while (rc == 0 && rs->depth > 0)
		rc = frame_leave(rs);
out:
	/* After a failure the open frames are dropped without acting on them. */
	while (rs->depth > 0)
		frame_free(&rs->frames[--rs->depth]);
	manifest_reader_free(m);
	io_reader_free(rd);
	blocklist_reader_free(&lists);
	free(what);
	return rc;
}
