/*
 * restore.c: the restore command (see restore.h and doc/restore.md).
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

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <pthread.h>
#include <pwd.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "recovery.h"
#include "../repo/blocklist.h"
#include "../repo/manifest.h"
#include "../repo/repo.h"
#include "../src/error.h"
#include "../src/fileio.h"
#include "../src/log.h"
#include "../src/mem.h"
#include "../src/option.h"
#include "../src/progress.h"

/* Blocks per job: big files are split so that they spread over the workers (128 MiB of 8 KiB blocks). */
#define CHUNK_BLOCKS 16384
/* Consecutive blocks a worker writes with one pwrite (1 MiB of 8 KiB blocks). */
#define WRITE_BLOCKS 128
/* postgresql.auto.conf is small; this only bounds a broken one. */
#define AUTO_CONF_MAX (16 * 1024 * 1024)
#define AUTO_CONF "postgresql.auto.conf"
/* pg_control and the name it is restored under until the restore is complete. */
#define PG_CONTROL "global/pg_control"
#define PG_CONTROL_TMP_NAME "pg_control.pgkeep-restore"
#define PG_CONTROL_TMP "global/" PG_CONTROL_TMP_NAME
/* A meta's mtime that means "leave the modification time as it is". */
#define MTIME_KEEP INT64_MIN

/*
 * Top-level files of a backup that are not restored: backup_label and
 * tablespace_map are written from the manifest header; the others would
 * tell PostgreSQL that it is running or how to recover (restore's job), or
 * are leftovers of an earlier recovery.
 */
static const char *const top_skipped[] = {
	"backup_label", "backup_label.old", "postmaster.pid", "recovery.signal", "standby.signal", "tablespace_map",
};

/* What a restored entry gets once it is complete.  uid and gid are -1 to keep the restoring user's. */
typedef struct meta
{
	mode_t		mode;
	uid_t		uid;
	gid_t		gid;
	int64_t		mtime;
} meta;

typedef enum
{
	FR_ROOT,            /* the data directory */
	FR_DIR,
	FR_TABLESPACE,      /* pg_tblspc/OID: a link to the tablespace's directory */
	FR_LINK             /* another link: made when the walk passes it, or a directory if entries come under it */
} frame_kind;

/* A directory of the walk whose entries may still come. */
typedef struct frame
{
	frame_kind	kind;
	char	   *path;           /* relative to the data directory; "" for the root */
	meta		meta;
	char	   *link_target;    /* FR_LINK */
	bool		made_dir;       /* FR_LINK restored as a directory */
	char	  **names;          /* --force, --delta: the names restored in it, sorted */
	size_t		nnames;
	size_t		cap;
} frame;

typedef struct tablespace
{
	char		oid[16];
	const char *name;           /* owned by the manifest header */
	char	   *dest;           /* directory it is restored to */
} tablespace;

/* A file being written, shared by the jobs of its blocks; the last reference completes it. */
typedef struct rfile
{
	char	   *path;
	int			fd;
	uint64_t	size;
	meta		meta;
	bool		existed;        /* something was at path before */
	bool		compare;        /* --delta: an existing file whose blocks are compared before any is written */
	bool		resized;        /* compare: its size was not the backup's */
	atomic_uint_fast64_t written;   /* blocks written */
	atomic_uint_fast64_t written_bytes;
	atomic_int	refs;
	atomic_int	writers;        /* workers running a job of it */
} rfile;

/* Consecutive blocks of a file for one worker. */
typedef struct job
{
	rfile	   *file;
	uint64_t	first;          /* block number of ids[0] */
	size_t		n;
	uint8_t		ids[][HASH_LEN];
} job;

/* Bounded queue of jobs for the workers, which also keeps the first failure of any thread. */
typedef struct queue
{
	pthread_mutex_t lock;
	pthread_cond_t nonempty;
	pthread_cond_t nonfull;
	job		  **items;          /* ring */
	int			cap;
	int			head;
	int			count;
	bool		closed;
	int			err;
	char	   *errmsg;
} queue;

struct restore;

typedef struct worker
{
	struct restore *rs;
	pthread_t	thread;
	bool		started;
	repo	   *repo;
	block_codec *codec;
	uint8_t    *stored;         /* a block as stored */
	size_t		stored_cap;
	uint8_t    *raw;            /* WRITE_BLOCKS consecutive blocks, written with one pwrite */
	uint64_t	raw_first;      /* block number of raw's first block */
	size_t		raw_len;        /* bytes in raw */
	uint8_t    *local;          /* --delta: WRITE_BLOCKS blocks of the existing file, read with one pread */
} worker;

/* What a delta restore did with the backup's files (the summary line). */
typedef struct delta_counts
{
	atomic_uint_fast64_t unchanged;
	atomic_uint_fast64_t changed;
	atomic_uint_fast64_t created;
	atomic_uint_fast64_t blocks;    /* blocks written into files that existed */
	atomic_uint_fast64_t bytes;
	uint64_t	removed;        /* entries removed (main thread only) */
} delta_counts;

/* A user or group name of the backup and its id on this host (-1: unknown). */
typedef struct owner_name
{
	struct owner_name *next;
	char	   *name;
	bool		group;
	long		id;
} owner_name;

/* A file system the restore writes to: a directory of it, open since before the first write. */
typedef struct restore_fs
{
	dev_t		dev;
	int			fd;
	char	   *path;
} restore_fs;

typedef struct restore
{
	const char *stanza;
	char	   *label;
	char	   *target;
	bool		overwrite;      /* --force or --delta */
	bool		delta;          /* --delta: keep what matches the backup */
	const char *signal;         /* the signal file of --type, or NULL */
	bool		as_root;        /* restore owners too */
	bool		writing;        /* second pass */
	repo	   *repo;
	manifest_header hdr;
	tablespace *ts;
	int			nts;
	meta		root_meta;      /* of the data directory and the files restore makes in it */
	size_t		target_missing; /* missing_from(target) before restore created it */
	frame	   *frames;
	int			depth;
	int			frames_cap;
	owner_name *owners;
	queue		q;
	worker	   *workers;
	int			nworkers;
	restore_fs *fs;             /* the file systems written to, for syncfs */
	int			nfs;
	progress   *progress;
	uint64_t	files;
	uint64_t	bytes;
	delta_counts counts;
	bool		has_pg_control; /* the backup has global/pg_control */
	char	   *auto_conf;      /* the backup's postgresql.auto.conf (NULL: it has none) */
	meta		auto_conf_meta;
} restore;

static char *
path_join(const char *dir, const char *name)
{
	return name[0] == '\0' ? xstrdup(dir) : xasprintf("%s/%s", dir, name);
}

/*
 * Note the file system of directory path, which the restore is about to
 * write to: the first time, open it (before any write, so that syncfs sees
 * every writeback error from then on).
 */
static int
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

static bool
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
static tablespace *
tablespace_of(const restore *rs, const char *path)
{
	const char *oid = path + strlen("pg_tblspc/");

	if (!str_starts_with(path, "pg_tblspc/") || strchr(oid, '/') != NULL)
		return NULL;
	return tablespace_find(rs, oid, strlen(oid), false);
}

/* Where each tablespace goes: its location, or --tablespace-map-all/NAME, or its --tablespace-map. */
static int
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

static meta
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

static bool
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
static int
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
static int
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

/* ---- the job queue ---- */

static void
queue_init(queue *q, int cap)
{
	memset(q, 0, sizeof(*q));
	pthread_mutex_init(&q->lock, NULL);
	pthread_cond_init(&q->nonempty, NULL);
	pthread_cond_init(&q->nonfull, NULL);
	q->items = xcalloc((size_t) cap, sizeof(job *));
	q->cap = cap;
}

static void
queue_destroy(queue *q)
{
	pthread_mutex_destroy(&q->lock);
	pthread_cond_destroy(&q->nonempty);
	pthread_cond_destroy(&q->nonfull);
	free(q->items);
	free(q->errmsg);
}

/* Add a job, waiting for room.  Once anything failed, returns that failure instead (the caller keeps j). */
static int
queue_push(queue *q, job *j)
{
	int			rc;

	pthread_mutex_lock(&q->lock);
	while (q->count == q->cap && q->err == 0)
		pthread_cond_wait(&q->nonfull, &q->lock);
	rc = q->err;
	if (rc == 0)
	{
		q->items[(q->head + q->count) % q->cap] = j;
		q->count++;
		pthread_cond_signal(&q->nonempty);
	}
	pthread_mutex_unlock(&q->lock);
	return rc;
}

/*
 * The next job; NULL once the queue is closed and empty: the oldest job of a
 * file no other worker is writing, and the oldest job when every queued
 * one's file is being written (workers that write the same file wait for
 * each other on its inode's lock, but a database that is one big file still
 * keeps them all busy).
 */
static job *
queue_pop(queue *q)
{
	job		   *j = NULL;
	int			k = 0;

	pthread_mutex_lock(&q->lock);
	while (q->count == 0 && !q->closed)
		pthread_cond_wait(&q->nonempty, &q->lock);
	if (q->count > 0)
	{
		while (k < q->count && atomic_load(&q->items[(q->head + k) % q->cap]->file->writers) > 0)
			k++;
		k = k < q->count ? k : 0;
		j = q->items[(q->head + k) % q->cap];
		/* The jobs before it move up one place. */
		for (; k > 0; k--)
			q->items[(q->head + k) % q->cap] = q->items[(q->head + k - 1) % q->cap];
		atomic_fetch_add(&j->file->writers, 1);
		q->head = (q->head + 1) % q->cap;
		q->count--;
		pthread_cond_signal(&q->nonfull);
	}
	pthread_mutex_unlock(&q->lock);
	return j;
}

static void
queue_close(queue *q)
{
	pthread_mutex_lock(&q->lock);
	q->closed = true;
	pthread_cond_broadcast(&q->nonempty);
	pthread_mutex_unlock(&q->lock);
}

/* Record a failure of the calling thread (the first one is kept, with its message); the others stop. */
static void
queue_fail(queue *q, int rc)
{
	pthread_mutex_lock(&q->lock);
	if (q->err == 0)
	{
		q->err = rc;
		q->errmsg = xstrdup(error_msg());
	}
	pthread_cond_broadcast(&q->nonfull);
	pthread_mutex_unlock(&q->lock);
}

static bool
queue_failed(queue *q)
{
	int			rc;

	pthread_mutex_lock(&q->lock);
	rc = q->err;
	pthread_mutex_unlock(&q->lock);
	return rc != 0;
}

/* ---- files and blocks ---- */

/*
 * Create the file empty at its size, so that the blocks never written (the
 * all-zero ones) are holes.  It is a new inode, never a write through a link
 * or into a file hard-linked elsewhere.
 */
static int
file_create(rfile *f)
{
	f->fd = open(f->path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (f->fd < 0)
		return error_set(ERR_FILE, "could not create file \"%s\": %s", f->path, strerror(errno));
	if (ftruncate(f->fd, (off_t) f->size) != 0)
		return error_set(ERR_FILE, "could not extend file \"%s\" to %" PRIu64 " bytes: %s", f->path, f->size,
						 strerror(errno));
	return 0;
}

/*
 * --delta: open an existing regular file for the workers to compare, and
 * cut or extend it to the backup's size (an extension reads as zeros).  A
 * file someone made read-only gets its owner's write permission back for the
 * time of the restore; file_release sets the backup's mode.
 */
static int
file_open_existing(rfile *f, const struct stat *st)
{
	struct stat now;

	f->fd = open(f->path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
	if (f->fd < 0 && errno == EACCES && chmod(f->path, (st->st_mode & 07777) | S_IRUSR | S_IWUSR) == 0)
		f->fd = open(f->path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
	if (f->fd < 0)
		return error_set(ERR_FILE, "could not open file \"%s\": %s", f->path, strerror(errno));
	if (fstat(f->fd, &now) != 0)
		return error_set(ERR_FILE, "could not stat file \"%s\": %s", f->path, strerror(errno));
	if (!S_ISREG(now.st_mode))
		return error_set(ERR_FILE, "\"%s\" changed into something else than a file during the restore", f->path);
	f->compare = true;
	f->resized = (uint64_t) now.st_size != f->size;
	if (f->resized && ftruncate(f->fd, (off_t) f->size) != 0)
		return error_set(ERR_FILE, "could not set the size of file \"%s\" to %" PRIu64 " bytes: %s", f->path, f->size,
						 strerror(errno));
	return 0;
}

/*
 * Open f->path for the workers.  With --force or --delta whatever is there
 * goes first, except that --delta keeps a regular file with a single link
 * (one with more links is shared with another file, which a write in place
 * would change too).
 */
static int
file_open(const restore *rs, rfile *f)
{
	struct stat st;
	int			rc;

	if (rs->overwrite && lstat(f->path, &st) == 0)
	{
		f->existed = true;
		if (rs->delta && S_ISREG(st.st_mode) && st.st_nlink == 1)
			return file_open_existing(f, &st);
		if ((rc = fio_remove_tree(f->path)) != 0)
			return rc;
	}
	else if (rs->overwrite && errno != ENOENT)
		return error_set(ERR_FILE, "could not stat \"%s\": %s", f->path, strerror(errno));
	return file_create(f);
}

static void
file_free(rfile *f)
{
	if (f->fd >= 0)
		close(f->fd);
	free(f->path);
	free(f);
}

/* Count a complete file for the summary of --delta. */
static void
file_count(restore *rs, rfile *f)
{
	delta_counts *c = &rs->counts;
	uint64_t	written = atomic_load(&f->written);

	if (!f->existed)
		atomic_fetch_add(&c->created, 1);
	else if (f->compare && written == 0 && !f->resized)
		atomic_fetch_add(&c->unchanged, 1);
	else
	{
		atomic_fetch_add(&c->changed, 1);
		atomic_fetch_add(&c->blocks, written);
		atomic_fetch_add(&c->bytes, atomic_load(&f->written_bytes));
		log_detail("file \"%s\": %" PRIu64 " blocks rewritten%s", f->path, written,
				   f->resized ? ", size changed" : "");
	}
}

/*
 * Complete a file whose blocks are all written (unless the restore failed):
 * metadata where it differs, close.  Its durability is the syncfs at the
 * end (see the top of this file).
 */
static int
file_complete(restore *rs, rfile *f)
{
	int			rc = 0;

	if (!queue_failed(&rs->q) && (rc = meta_apply(f->fd, f->path, &f->meta)) == 0)
		file_count(rs, f);
	if (close(f->fd) != 0 && rc == 0)
		rc = error_set(ERR_FILE, "could not close file \"%s\": %s", f->path, strerror(errno));
	f->fd = -1;
	file_free(f);
	return rc;
}

/* Drop a reference to f; the last one completes the file.  A failure is the restore's, through the queue. */
static void
file_release(restore *rs, rfile *f)
{
	int			rc;

	if (atomic_fetch_sub(&f->refs, 1) == 1 && (rc = file_complete(rs, f)) != 0)
		queue_fail(&rs->q, rc);
}

/* Put the block, file and backup set in front of a block's failure; a block the repository lacks is corruption. */
static int
block_error(const restore *rs, const char *path, uint64_t blockno, const uint8_t id[HASH_LEN], int rc)
{
	char		hex[HASH_HEX_LEN + 1];

	hash_to_hex(id, hex);
	return error_wrap(rc == ERR_NOT_FOUND ? ERR_CORRUPT : rc, "block %" PRIu64 " (id %s) of file \"%s\" in backup set %s",
					  blockno, hex, path, rs->label);
}

/* Write the buffered run of blocks of f. */
static int
raw_flush(worker *w, const rfile *f)
{
	int			rc = 0;

	off_t		off = (off_t) (w->raw_first * w->rs->hdr.block_size);

	if (w->raw_len > 0 && (rc = fio_pwrite_full(f->fd, w->raw, w->raw_len, off, f->path)) == 0)
	{
		/*
		 * Start writing the run to disk now, so that the disk works while the
		 * workers decompress and the file's fsync at the end finds little left
		 * to do.  Only a hint: the fsync is what makes the file durable.
		 */
		(void) sync_file_range(f->fd, off, (off_t) w->raw_len, SYNC_FILE_RANGE_WRITE);
	}
	w->raw_len = 0;
	return rc;
}

/*
 * Append a block to the buffered run (the caller flushes before any gap and
 * when the run is full): zeros for the zero id (--delta replacing a block
 * on disk), else the block fetched and checked against its id.
 */
static int
block_restore(worker *w, const rfile *f, uint64_t blockno, const uint8_t id[HASH_LEN], uint32_t len)
{
	int			rc = 0;

	if (w->raw_len == 0)
		w->raw_first = blockno;
	if (manifest_is_zero_id(id))
		memset(w->raw + w->raw_len, 0, len);
	else if ((rc = repo_block_fetch(w->repo, w->codec, id, w->stored, w->stored_cap, w->raw + w->raw_len, len)) != 0)
		return block_error(w->rs, f->path, blockno, id, rc);
	w->raw_len += len;
	return rc;
}

/* --delta: read up to WRITE_BLOCKS blocks of the existing file from block first on (fewer at its end). */
static int
local_read(worker *w, const rfile *f, uint64_t first, size_t nblocks)
{
	uint64_t	bs = w->rs->hdr.block_size;
	uint64_t	off = first * bs;
	uint64_t	n = (nblocks < WRITE_BLOCKS ? nblocks : WRITE_BLOCKS) * bs;

	if (n > f->size - off)
		n = f->size - off;
	return fio_pread_full(f->fd, w->local, (size_t) n, (off_t) off, f->path);
}

static bool
all_zero(const uint8_t *p, size_t n)
{
	return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

/* --delta: whether a block on disk is the one the manifest names. */
static bool
block_matches(const uint8_t *data, uint32_t len, const uint8_t id[HASH_LEN])
{
	uint8_t		h[HASH_LEN];

	if (manifest_is_zero_id(id))
		return all_zero(data, len);
	hash_buf(data, len, h);
	return memcmp(h, id, HASH_LEN) == 0;
}

/*
 * Not --delta: repo_block_prefetch the blocks job_run will fetch, so that a
 * repository server keeps between half and all of REPO_PREFETCH_MAX reads
 * ahead: at block 0 those among the first REPO_PREFETCH_MAX ids, then every
 * half of it the next half.
 */
static int
prefetch(worker *w, const job *j, size_t i)
{
	const size_t half = REPO_PREFETCH_MAX / 2;
	uint8_t		ids[REPO_PREFETCH_MAX][HASH_LEN];
	size_t		n = 0;
	size_t		from = i == 0 ? 0 : i + half;
	size_t		to = i == 0 ? REPO_PREFETCH_MAX : i + 2 * half;

	if (i % half != 0)
		return 0;
	for (size_t k = from; k < j->n && k < to; k++)
		if (!manifest_is_zero_id(j->ids[k]))
			memcpy(ids[n++], j->ids[k], HASH_LEN);
	return n ? repo_block_prefetch(w->repo, (const uint8_t (*)[HASH_LEN]) ids, n) : 0;
}

static int
job_run(worker *w, const job *j)
{
	uint32_t	bs = w->rs->hdr.block_size;
	rfile	   *f = j->file;
	uint64_t	written = 0;
	uint64_t	written_bytes = 0;
	int			rc = 0;

	w->raw_len = 0;
	for (size_t i = 0; i < j->n && rc == 0; i++)
	{
		uint64_t	blockno = j->first + i;
		uint64_t	left = f->size - blockno * bs;
		uint32_t	len = left < bs ? (uint32_t) left : bs;

		/* From a repository server: ask for the next blocks this loop fetches before it needs them. */
		if (!f->compare && (rc = prefetch(w, j, i)) != 0)
			break;

		/* --delta reads the file WRITE_BLOCKS blocks at a time. */
		if (f->compare && i % WRITE_BLOCKS == 0 && (rc = local_read(w, f, blockno, j->n - i)) != 0)
			break;
		/*
		 * A block that is right on disk (--delta) or an all-zero one (a hole
		 * file_create left) is not written: it ends the run.
		 */
		if (f->compare ? block_matches(w->local + (i % WRITE_BLOCKS) * bs, len, j->ids[i])
			: manifest_is_zero_id(j->ids[i]))
			rc = raw_flush(w, f);
		else
		{
			if (w->raw_len + bs > (size_t) WRITE_BLOCKS * bs)
				rc = raw_flush(w, f);
			if (rc == 0)
				rc = block_restore(w, f, blockno, j->ids[i], len);
			written++;
			written_bytes += len;
		}
		progress_add(w->rs->progress, len);
	}
	if (rc == 0)
		rc = raw_flush(w, f);
	w->raw_len = 0;
	atomic_fetch_add(&f->written, written);
	atomic_fetch_add(&f->written_bytes, written_bytes);
	return rc;
}

static void *
worker_main(void *arg)
{
	worker	   *w = arg;
	queue	   *q = &w->rs->q;
	job		   *j;

	while ((j = queue_pop(q)) != NULL)
	{
		/* After a failure the remaining jobs are only drained. */
		int			rc = queue_failed(q) ? 0 : job_run(w, j);

		if (rc != 0)
			queue_fail(q, rc);
		atomic_fetch_sub(&j->file->writers, 1);
		file_release(w->rs, j->file);
		free(j);
	}
	return NULL;
}

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

/* Queue the blocks of f in jobs of at most CHUNK_BLOCKS, each holding a reference to f. */
static int
file_queue_blocks(restore *rs, manifest_reader *m, rfile *f, uint64_t nblocks)
{
	for (uint64_t first = 0; first < nblocks; first += CHUNK_BLOCKS)
	{
		size_t		n = nblocks - first < CHUNK_BLOCKS ? (size_t) (nblocks - first) : CHUNK_BLOCKS;
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
static int
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
static size_t
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
static int
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

/* ---- the restore ---- */

static int
workers_start(restore *rs)
{
	uint32_t	bs = rs->hdr.block_size;

	rs->nworkers = (int) opt_int(OPT_PROCESS_MAX);
	rs->workers = xcalloc((size_t) rs->nworkers, sizeof(worker));
	for (int i = 0; i < rs->nworkers; i++)
	{
		worker	   *w = &rs->workers[i];
		int			rc;

		w->rs = rs;
		/* Decompression takes each block's own type, whatever the codec's. */
		w->codec = block_codec_new(COMPRESS_NONE, 0);
		/* No codec's worst case comes near twice the block size. */
		w->stored_cap = 2 * (size_t) bs;
		w->stored = xmalloc(w->stored_cap);
		w->raw = xmalloc((size_t) WRITE_BLOCKS * bs);
		if (rs->delta)
			w->local = xmalloc((size_t) WRITE_BLOCKS * bs);
		if ((rc = repo_open(rs->stanza, &w->repo)) != 0)
			return rc;
		if ((rc = pthread_create(&w->thread, NULL, worker_main, w)) != 0)
			return error_set(ERR_INTERNAL, "could not start a worker thread: %s", strerror(rc));
		w->started = true;
	}
	return 0;
}

/*
 * Close the queue, wait for the workers, and return the first failure of
 * any thread.
 */
static int
workers_stop(restore *rs)
{
	int			rc;

	queue_close(&rs->q);
	for (int i = 0; i < rs->nworkers; i++)
	{
		worker	   *w = &rs->workers[i];

		if (w->started)
			pthread_join(w->thread, NULL);
		repo_close(w->repo);
		block_codec_free(w->codec);
		free(w->stored);
		free(w->raw);
		free(w->local);
	}
	rc = rs->q.err ? error_set(rs->q.err, "%s", rs->q.errmsg) : 0;
	queue_destroy(&rs->q);
	return rc;
}

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

	queue_init(&rs->q, 2 * (int) opt_int(OPT_PROCESS_MAX));
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
