/*
 * restore.c: the restore command (see restore.h and doc/restore.md).
 * This file holds the checks before anything is written, owners and
 * metadata, and the restore itself; walk.c the walk over the manifest
 * (directories, links, files); write.c the job queue and the worker
 * threads.  restore_int.h is what they share.
 *
 * The manifest is read twice.  The first pass checks all of it (syntax, end
 * hash, a directory entry before anything under it) before the target is
 * touched.  The second pass restores: the main thread creates directories,
 * links and files in manifest order and hands the block ids of each file,
 * in chunks, to worker threads that fetch, verify and write the blocks.  The
 * worker that ends a file gives it its metadata and closes it.
 *
 * Durability: files and directories are not fsynced one by one (each fsync
 * is a flush of the device's cache, and a data directory has about a
 * thousand files).  Workers start the writeback of each run they write
 * (sync_file_range), and once all files are written, one syncfs per file
 * system the restore wrote to (the data directory's, each tablespace's)
 * makes everything durable, reporting any file's writeback error since the
 * restore opened that file system (Linux 5.8 and later).
 *
 * The manifest's depth-first order keeps the walk's state small: the open
 * directories are the current entry's ancestors, a stack.  Everything under
 * a directory D comes right after D, so D is complete at the first path not
 * under it: then what the backup does not have is removed from it (--force,
 * --delta) and it gets its mode, owner and mtime.
 *
 * --delta keeps an existing regular file and has the workers compare it
 * block by block with the manifest's ids: only the blocks that differ are
 * fetched and written.  Metadata is changed only where it differs, so an
 * unchanged file is left as it was.
 *
 * Crash safety: global/pg_control is restored under a temporary name and
 * put in place after everything else (backup_label, recovery settings): a
 * restore that stops half-way leaves a directory PostgreSQL refuses to
 * start, and a new restore (--delta compares again from scratch) completes it.
 */
#include "restore.h"
#include "restore_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "recovery.h"
#include "../repo/manifest.h"
#include "../repo/repo.h"
#include "../src/error.h"
#include "../src/fileio.h"
#include "../src/log.h"
#include "../src/mem.h"
#include "../src/option.h"
#include "../src/progress.h"

/* A meta's mtime that means "leave the modification time as it is". */
#define MTIME_KEEP INT64_MIN

char *
path_join(const char *dir, const char *name)
{
	return name[0] == '\0' ? xstrdup(dir) : xasprintf("%s/%s", dir, name);
}

/*
 * Note the file system of directory path, which the restore is about to
 * write to: the first time, open it (before any write, so that syncfs sees
 * every writeback error from then on).
 */
int
fs_register(restore *rs, const char *path)
{
	struct stat st;
	int			fd;

	if (stat(path, &st) != 0)
		return error_set(ERR_FILE, "could not stat \"%s\": %s", path, strerror(errno));
	for (int i = 0; i < rs->nfs; i++)
		if (rs->fs[i].dev == st.st_dev)
			return 0;
	if ((fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return error_set(ERR_FILE, "could not open directory \"%s\": %s", path, strerror(errno));
	rs->fs = xrealloc(rs->fs, sizeof(restore_fs) * (size_t) (rs->nfs + 1));
	rs->fs[rs->nfs++] = (restore_fs) {.dev = st.st_dev, .fd = fd, .path = xstrdup(path)};
	return 0;
}

/* Make everything the restore wrote durable: one syncfs per file system; then forget them. */
static int
fs_sync(restore *rs, bool sync)
{
	int			rc = 0;

	for (int i = 0; i < rs->nfs; i++)
	{
		if (sync && rc == 0)
			rc = fio_syncfs(rs->fs[i].fd, rs->fs[i].path);
		close(rs->fs[i].fd);
		free(rs->fs[i].path);
	}
	free(rs->fs);
	rs->fs = NULL;
	rs->nfs = 0;
	return rc;
}

/* Whether path is dir or under it. */
static bool
path_within(const char *path, const char *dir)
{
	size_t		n = strlen(dir);

	return strncmp(path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

bool
name_is_dot(const char *name)
{
	return strcmp(name, ".") == 0 || strcmp(name, "..") == 0;
}

/* ---- checks before anything is written ---- */

/*
 * A directory to restore into must be missing or empty; with --force or
 * --delta it may hold something, but only what looks like the thing
 * restored (an entry whose name starts with marker), so that a mistyped
 * path is not wiped.
 */
static int
dir_check(const restore *rs, const char *what, const char *path, const char *marker)
{
	struct stat st;
	struct dirent *de;
	DIR		   *d;
	bool		empty = true;
	bool		marked = false;

	if (stat(path, &st) != 0)
		return errno == ENOENT ? 0 : error_set(ERR_FILE, "could not stat \"%s\": %s", path, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return error_set(ERR_INVALID, "%s \"%s\" is not a directory", what, path);
	if ((d = opendir(path)) == NULL)
		return error_set(ERR_FILE, "could not open directory \"%s\": %s", path, strerror(errno));
	while ((de = readdir(d)) != NULL)
	{
		empty = empty && name_is_dot(de->d_name);
		marked = marked || str_starts_with(de->d_name, marker);
	}
	closedir(d);
	if (!empty && !rs->overwrite)
		return error_set(ERR_INVALID, "%s \"%s\" is not empty. Use --delta or --force to overwrite it.", what, path);
	if (!empty && !marked)
		return error_set(ERR_INVALID, "%s \"%s\" is not empty and does not look like one (no entry named %s*): "
						 "restore does not overwrite it", what, path, marker);
	return 0;
}

static int
target_check(const restore *rs)
{
	char	   *pid = path_join(rs->target, "postmaster.pid");
	bool		running = fio_exists(pid);

	free(pid);
	if (running)
		return error_set(ERR_INVALID, "the cluster in \"%s\" appears to be running (postmaster.pid exists); "
						 "stop it first", rs->target);
	return dir_check(rs, "data directory", rs->target, "PG_VERSION");
}

/* The backup set of --set: "latest" is the newest. */
static int
backup_choose(restore *rs)
{
	const char *set = opt_str(OPT_SET);
	char	  **labels = NULL;
	int			n = 0;
	int			rc;

	if ((rc = repo_backup_list(rs->repo, &labels, &n)) != 0)
		return rc;
	if (n == 0)
		rc = error_set(ERR_INVALID, "no backup exists in stanza \"%s\"", rs->stanza);
	else if (strcmp(set, "latest") == 0)
		rs->label = xstrdup(labels[n - 1]);
	else
	{
		for (int i = 0; i < n && rs->label == NULL; i++)
			if (strcmp(labels[i], set) == 0)
				rs->label = xstrdup(set);
		if (rs->label == NULL)
			rc = error_set(ERR_INVALID, "backup set %s does not exist in stanza \"%s\"", set, rs->stanza);
	}
	repo_names_free(labels, n);
	return rc;
}

/* The tablespace whose name or OID (by_name false) is key[0..len). */
static tablespace *
tablespace_find(const restore *rs, const char *key, size_t len, bool by_name)
{
	for (int i = 0; i < rs->nts; i++)
	{
		const char *k = by_name ? rs->ts[i].name : rs->ts[i].oid;

		if (strlen(k) == len && memcmp(k, key, len) == 0)
			return &rs->ts[i];
	}
	return NULL;
}

/* The tablespace whose link is at path ("pg_tblspc/OID"), or NULL. */
tablespace *
tablespace_of(const restore *rs, const char *path)
{
	const char *oid = path + strlen("pg_tblspc/");

	if (!str_starts_with(path, "pg_tblspc/") || strchr(oid, '/') != NULL)
		return NULL;
	return tablespace_find(rs, oid, strlen(oid), false);
}

/* Where each tablespace goes: its location, or --tablespace-map-all/NAME, or its --tablespace-map. */
int
tablespaces_resolve(restore *rs)
{
	const char *all = opt_str(OPT_TABLESPACE_MAP_ALL);

	rs->nts = rs->hdr.ntablespaces;
	rs->ts = xcalloc((size_t) rs->nts, sizeof(tablespace));
	for (int i = 0; i < rs->nts; i++)
	{
		const manifest_tablespace *mt = &rs->hdr.tablespaces[i];

		snprintf(rs->ts[i].oid, sizeof(rs->ts[i].oid), "%" PRIu32, mt->oid);
		rs->ts[i].name = mt->name;
		rs->ts[i].dest = all ? path_join(all, mt->name) : xstrdup(mt->location);
	}
	for (int i = 0; i < opt_list_count(OPT_TABLESPACE_MAP); i++)
	{
		const char *map = opt_list_get(OPT_TABLESPACE_MAP, i);
		const char *eq = strchr(map, '=');
		size_t		len = (size_t) (eq - map);
		tablespace *t = tablespace_find(rs, map, len, true);

		if (t == NULL)
			t = tablespace_find(rs, map, len, false);
		if (t == NULL)
			return error_set(ERR_OPTION, "--tablespace-map=%s: backup set %s has no tablespace named or numbered "
							 "\"%.*s\"", map, rs->label, (int) len, map);
		if (eq[1] != '/')
			return error_set(ERR_OPTION, "--tablespace-map=%s: the path must be absolute", map);
		free(t->dest);
		t->dest = xstrdup(eq + 1);
	}
	return 0;
}

static int
tablespaces_check(const restore *rs)
{
	int			rc = 0;

	for (int i = 0; i < rs->nts && rc == 0; i++)
	{
		if (path_within(rs->ts[i].dest, rs->target))
			return error_set(ERR_INVALID, "tablespace %s would be restored to \"%s\", inside the data directory",
							 rs->ts[i].name, rs->ts[i].dest);
		rc = dir_check(rs, "tablespace directory", rs->ts[i].dest, "PG_");
	}
	return rc;
}

/* ---- owners and metadata ---- */

/* The id of a user or group name of the backup; -1 (warned once) when this host does not know it. */
static long
owner_id(restore *rs, const char *name, bool group)
{
	owner_name *o;

	for (o = rs->owners; o != NULL; o = o->next)
		if (o->group == group && strcmp(o->name, name) == 0)
			return o->id;
	o = xcalloc(1, sizeof(*o));
	o->name = xstrdup(name);
	o->group = group;
	o->next = rs->owners;
	rs->owners = o;
	/* Only the main thread looks names up, so the non-reentrant calls are safe. */
	if (group)
	{
		struct group *g = getgrnam(name);

		o->id = g ? (long) g->gr_gid : -1;
	}
	else
	{
		struct passwd *p = getpwnam(name);

		o->id = p ? (long) p->pw_uid : -1;
	}
	if (o->id < 0)
		log_warn("%s \"%s\" of backup set %s does not exist on this host: its entries keep the restoring %s",
				 group ? "group" : "user", name, rs->label, group ? "group" : "user");
	return o->id;
}

meta
meta_of(restore *rs, const manifest_entry *e)
{
	meta		m = {.mode = e->mode, .uid = (uid_t) -1, .gid = (gid_t) -1, .mtime = e->mtime};

	if (rs->as_root && rs->writing)
	{
		m.uid = (uid_t) owner_id(rs, e->user, false);
		m.gid = (gid_t) owner_id(rs, e->group, true);
	}
	return m;
}

bool
meta_has_owner(const meta *m)
{
	return m->uid != (uid_t) -1 || m->gid != (gid_t) -1;
}

static bool
owner_differs(const meta *m, const struct stat *st)
{
	return (m->uid != (uid_t) -1 && m->uid != st->st_uid) || (m->gid != (gid_t) -1 && m->gid != st->st_gid);
}

static bool
mtime_differs(const meta *m, const struct stat *st)
{
	return m->mtime != MTIME_KEEP && (st->st_mtim.tv_sec != m->mtime || st->st_mtim.tv_nsec != 0);
}

/*
 * Give an open file or directory its owner, mode and mtime, changing only
 * what differs, so that an entry --delta keeps is left untouched (chown
 * first: it clears set-id bits).
 */
int
meta_apply(int fd, const char *path, const meta *m)
{
	struct timespec times[2] = {{.tv_sec = m->mtime}, {.tv_sec = m->mtime}};
	struct stat st;
	bool		chowned = false;

	if (fstat(fd, &st) != 0)
		return error_set(ERR_FILE, "could not stat \"%s\": %s", path, strerror(errno));
	if (owner_differs(m, &st))
	{
		if (fchown(fd, m->uid, m->gid) != 0)
			return error_set(ERR_FILE, "could not change owner of \"%s\": %s", path, strerror(errno));
		chowned = true;
	}
	if ((chowned || (st.st_mode & 07777) != m->mode) && fchmod(fd, m->mode) != 0)
		return error_set(ERR_FILE, "could not change mode of \"%s\": %s", path, strerror(errno));
	if (mtime_differs(m, &st) && futimens(fd, times) != 0)
		return error_set(ERR_FILE, "could not set the modification time of \"%s\": %s", path, strerror(errno));
	return 0;
}

/* The same for a link itself (its mode means nothing on Linux). */
int
link_meta_apply(const char *path, const meta *m)
{
	struct timespec times[2] = {{.tv_sec = m->mtime}, {.tv_sec = m->mtime}};
	struct stat st;

	if (lstat(path, &st) != 0)
		return error_set(ERR_FILE, "could not stat link \"%s\": %s", path, strerror(errno));
	if (owner_differs(m, &st) && lchown(path, m->uid, m->gid) != 0)
		return error_set(ERR_FILE, "could not change owner of link \"%s\": %s", path, strerror(errno));
	if (mtime_differs(m, &st) && utimensat(AT_FDCWD, path, times, AT_SYMLINK_NOFOLLOW) != 0)
		return error_set(ERR_FILE, "could not set the modification time of link \"%s\": %s", path, strerror(errno));
	return 0;
}

/* ---- the restore ---- */

static int
root_meta_init(restore *rs)
{
	struct stat st;

	if (stat(rs->target, &st) != 0)
		return error_set(ERR_FILE, "could not stat directory \"%s\": %s", rs->target, strerror(errno));
	rs->root_meta = (meta) {.mode = st.st_mode & 07777, .uid = (uid_t) -1, .gid = (gid_t) -1, .mtime = st.st_mtime};
	if (rs->as_root)
	{
		rs->root_meta.uid = st.st_uid;
		rs->root_meta.gid = st.st_gid;
	}
	return 0;
}

/*
 * pg_control is restored as PG_CONTROL_TMP and renamed last (see the top of
 * this file).  With --force or --delta the one in place is moved to that
 * name before anything else changes: --delta compares it like any file.
 */
static int
pg_control_park(const restore *rs)
{
	char	   *from = path_join(rs->target, PG_CONTROL);
	char	   *to = path_join(rs->target, PG_CONTROL_TMP);
	struct stat st;
	int			rc = 0;

	if (rs->overwrite && rs->has_pg_control && lstat(from, &st) == 0 && S_ISREG(st.st_mode))
		rc = fio_rename_durable(from, to);
	free(from);
	free(to);
	return rc;
}

static int
pg_control_commit(const restore *rs)
{
	char	   *from = path_join(rs->target, PG_CONTROL_TMP);
	char	   *to = path_join(rs->target, PG_CONTROL);
	int			rc = rs->has_pg_control ? fio_rename_durable(from, to) : 0;

	free(from);
	free(to);
	return rc;
}

/* Create the data directory if needed and restore every entry of the backup into it. */
static int
restore_files(restore *rs)
{
	char	   *what = xasprintf("restore %s", rs->label);
	double		t0 = progress_now(), t1;
	int			nfs;
	int			rc, rc2;

	/* Two chunks' worth of blocks per worker, and room for each worker's bundle of small files. */
	queue_init(&rs->q, (RESTORE_BUNDLE_MAX + 2) * (int) opt_int(OPT_PROCESS_MAX),
			   2 * (uint64_t) RESTORE_CHUNK_BLOCKS * (uint64_t) opt_int(OPT_PROCESS_MAX));
	rs->progress = progress_start(what, rs->hdr.db_size, NULL);
	rs->writing = true;
	rs->target_missing = missing_from(rs->target);
	if ((rc = fio_mkdir_durable(rs->target, 0700)) == 0 && (rc = fs_register(rs, rs->target)) == 0 &&
		(rc = root_meta_init(rs)) == 0 && (rc = pg_control_park(rs)) == 0 && (rc = workers_start(rs)) == 0)
		rc = manifest_pass(rs);
	/* The main thread's failure goes through the queue too: the first failure of any thread is the one reported. */
	if (rc != 0)
		queue_fail(&rs->q, rc);
	rc = workers_stop(rs);
	/* The final sync can take as long as the writing (the disk's cache): the log tells the two apart. */
	t1 = progress_now();
	nfs = rs->nfs;
	rc2 = fs_sync(rs, rc == 0);
	if (rc == 0 && rc2 == 0)
		log_detail("restore %s: files written in %.2f s, then synced (%d file system%s) in %.2f s", rs->label,
				   t1 - t0, nfs, nfs == 1 ? "" : "s", progress_now() - t1);
	rc = rc ? rc : rc2;
	progress_finish(rs->progress);
	free(what);
	return rc;
}

/*
 * Make the file at path hold the text data, durably, with metadata m.  With
 * keep_same a regular file holding data already is kept (*kept), else the
 * file is written atomically.
 */
static int
file_put(const char *path, const char *data, const meta *m, bool keep_same, bool *kept)
{
	size_t		n = strlen(data);
	struct stat st;
	char	   *cur = NULL;
	size_t		len = 0;
	int			fd;
	int			rc;

	*kept = keep_same && lstat(path, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t) st.st_size == n &&
		fio_read_file(path, n, &cur, &len) == 0 && len == n && memcmp(cur, data, n) == 0;
	free(cur);
	if (!*kept && (rc = fio_write_file_atomic(path, data, n, m->mode)) != 0)
		return rc;
	if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		return error_set(ERR_FILE, "could not open file \"%s\": %s", path, strerror(errno));
	if ((rc = meta_apply(fd, path, m)) == 0)
		rc = fio_fsync(fd, path);
	close(fd);
	return rc;
}

/* Write a file of restore's own into the data directory, durably, with the mode and owner of its files. */
static int
put_file(const restore *rs, const char *name, const char *data)
{
	char	   *path = path_join(rs->target, name);
	meta		m = rs->root_meta;
	bool		kept;
	int			rc;

	m.mode &= 0660;
	m.mtime = MTIME_KEEP;
	rc = file_put(path, data, &m, false, &kept);
	free(path);
	return rc;
}

/* The backup's tablespace_map ("OID PATH" lines) with each path where the tablespace is restored. */
static char *
tablespace_map_text(const restore *rs)
{
	strbuf		sb = STRBUF_INIT;

	for (const char *line = rs->hdr.tablespace_map; *line != '\0';)
	{
		size_t		len = strcspn(line, "\n");
		size_t		oidlen = strcspn(line, " \n");
		const tablespace *t = tablespace_find(rs, line, oidlen, false);

		if (t == NULL || line[oidlen] != ' ')
			sb_appendn(&sb, line, len);
		else
		{
			sb_appendn(&sb, line, oidlen + 1);
			/* Escaped as PostgreSQL writes the file. */
			for (const char *c = t->dest; *c != '\0'; c++)
			{
				if (*c == '\n' || *c == '\r' || *c == '\\')
					sb_appendc(&sb, '\\');
				sb_appendc(&sb, *c);
			}
		}
		sb_appendc(&sb, '\n');
		line += len + (line[len] == '\n');
	}
	return sb_detach(&sb);
}

/*
 * Write postgresql.auto.conf: the backup's (auto_conf_load) with the
 * settings of the recovery type.  It gets the backup's mode and owner, and
 * its mtime when the text is the backup's.  --delta keeps a file that holds
 * the text already.  Then the signal file.
 */
static int
recovery_write(restore *rs, const recovery_settings *rec)
{
	char	   *path = path_join(rs->target, AUTO_CONF);
	const char *signal = recovery_signal_file(rec);
	const char *backup = rs->auto_conf ? rs->auto_conf : "";
	char	   *next = NULL;
	meta		m = rs->auto_conf ? rs->auto_conf_meta : rs->root_meta;
	bool		existed = fio_exists(path);
	bool		kept = false;
	int			rc = recovery_conf_update(rec, backup, &next);

	if (rs->auto_conf == NULL)
		m.mode &= 0660;
	if (rc == 0 && strcmp(next, backup) != 0)
		m.mtime = MTIME_KEEP;
	if (rc == 0 && (rs->auto_conf != NULL || next[0] != '\0'))
		rc = file_put(path, next, &m, rs->delta, &kept);
	if (rc == 0 && rs->auto_conf != NULL)
	{
		uint64_t	n = strlen(next);

		if (kept)
			atomic_fetch_add(&rs->counts.unchanged, 1);
		else if (!existed)
			atomic_fetch_add(&rs->counts.created, 1);
		else
		{
			atomic_fetch_add(&rs->counts.changed, 1);
			atomic_fetch_add(&rs->counts.blocks, (n + rs->hdr.block_size - 1) / rs->hdr.block_size);
			atomic_fetch_add(&rs->counts.bytes, n);
			log_detail("file \"%s\": rewritten", path);
		}
	}
	if (rc == 0 && signal != NULL)
		rc = put_file(rs, signal, "");
	free(path);
	free(next);
	return rc;
}

/*
 * What restore writes beside the backup's files: backup_label,
 * tablespace_map, recovery settings; pg_control last.
 */
static int
restore_extras(restore *rs, const recovery_settings *rec)
{
	int			rc = put_file(rs, "backup_label", rs->hdr.backup_label);

	if (rc == 0 && rs->hdr.tablespace_map != NULL)
	{
		char	   *map = tablespace_map_text(rs);

		rc = put_file(rs, "tablespace_map", map);
		free(map);
	}
	if (rc == 0)
		rc = recovery_write(rs, rec);
	return rc ? rc : pg_control_commit(rs);
}

/*
 * The recovery settings from the options; *options and *cmd are the
 * caller's to free.  restore_command runs archive-get with this binary and
 * what archive-get could not find by itself: --config when given, and
 * --repo1-path when set (option.h does not tell whether the configuration
 * file or the command line set it; archive-get reading the same value twice
 * is harmless).
 */
static int
recovery_from_options(const restore *rs, recovery_settings *s, const char ***options, char **cmd)
{
	int			n = opt_list_count(OPT_RECOVERY_OPTION);
	char	   *bin = NULL;
	int			rc;

	*options = xcalloc((size_t) n, sizeof(char *));
	for (int i = 0; i < n; i++)
		(*options)[i] = opt_list_get(OPT_RECOVERY_OPTION, i);
	if ((rc = link_read("/proc/self/exe", &bin)) != 0)
		return rc;
	*cmd = recovery_restore_command(bin, opt_given(OPT_CONFIG) ? opt_str(OPT_CONFIG) : NULL,
									opt_given(OPT_REPO_PATH) ? opt_str(OPT_REPO_PATH) : NULL, rs->stanza);
	free(bin);
	*s = (recovery_settings) {
		.type = opt_str(OPT_TYPE),
		.target = opt_str(OPT_TARGET),
		.target_action = opt_str(OPT_TARGET_ACTION),
		.target_timeline = opt_str(OPT_TARGET_TIMELINE),
		.target_exclusive = opt_bool(OPT_TARGET_EXCLUSIVE),
		.restore_command = *cmd,
		.noptions = n,
		.options = *options,
	};
	return recovery_check(s);
}

static void
restore_free(restore *rs)
{
	repo_close(rs->repo);
	for (int i = 0; i < rs->nts; i++)
		free(rs->ts[i].dest);
	free(rs->ts);
	manifest_header_free(&rs->hdr);
	while (rs->owners != NULL)
	{
		owner_name *next = rs->owners->next;

		free(rs->owners->name);
		free(rs->owners);
		rs->owners = next;
	}
	free(rs->frames);
	free(rs->workers);
	free(rs->label);
	free(rs->target);
	free(rs->auto_conf);
}

int
cmd_restore(void)
{
	const char *pg = opt_str(OPT_PG_PATH);
	restore		rs = {0};
	recovery_settings rec = {0};
	const char **rec_options = NULL;
	char	   *restore_cmd = NULL;
	stanza_info st;
	bool		touched = false;
	size_t		n;
	int			rc;

	if (pg == NULL)
		return error_set(ERR_OPTION, "restore requires option pg1-path");
	if ((rs.stanza = opt_str(OPT_STANZA)) == NULL)
		return error_set(ERR_OPTION, "restore requires option stanza");
	for (n = strlen(pg); n > 1 && pg[n - 1] == '/'; n--)
		;
	rs.target = xstrndup(pg, n);
	rs.delta = opt_bool(OPT_DELTA);
	rs.overwrite = opt_bool(OPT_FORCE) || rs.delta;
	rs.as_root = geteuid() == 0;
	if ((rc = recovery_from_options(&rs, &rec, &rec_options, &restore_cmd)) != 0 || (rc = target_check(&rs)) != 0 ||
		(rc = repo_open(rs.stanza, &rs.repo)) != 0 || (rc = repo_stanza_get(rs.repo, &st)) != 0 ||
		(rc = repo_blocks_hold(rs.repo)) != 0 || (rc = backup_choose(&rs)) != 0)
		goto out;
	rs.signal = recovery_signal_file(&rec);
	log_info("restore backup set %s to \"%s\"", rs.label, rs.target);
	if ((rc = manifest_pass(&rs)) != 0 || (rc = tablespaces_check(&rs)) != 0)
		goto out;
	touched = true;
	if ((rc = restore_files(&rs)) != 0 || (rc = restore_extras(&rs, &rec)) != 0)
		goto out;
	if (rs.delta)
		log_info("delta restore: %" PRIu64 " files unchanged, %" PRIu64 " files changed (%" PRIu64 " blocks rewritten, "
				 "%.1f MiB), %" PRIu64 " files created, %" PRIu64 " removed", (uint64_t) rs.counts.unchanged,
				 (uint64_t) rs.counts.changed, (uint64_t) rs.counts.blocks, (double) rs.counts.bytes / (1024 * 1024),
				 (uint64_t) rs.counts.created, rs.counts.removed);
	log_info("restore complete: %" PRIu64 " files, %.1f MB", rs.files, (double) rs.bytes / 1e6);
out:
	if (rc != 0 && touched)
		log_warn("restore of backup set %s into \"%s\" failed: the data directory is incomplete", rs.label, rs.target);
	restore_free(&rs);
	free(rec_options);
	free(restore_cmd);
	return rc;
}
