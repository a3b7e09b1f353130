/*
 * restore.c: the restore command (see restore.h and doc/restore.md).
 *
 * The manifest is read twice.  The first pass checks all of it (syntax, end
 * hash, a directory entry before anything under it) before the target is
 * touched.  The second pass restores: the main thread creates directories,
 * links and files in manifest order and hands the block ids of each file,
 * in chunks, to worker threads that fetch, verify and write the blocks.
 *
 * The manifest's depth-first order keeps the walk's state small: the open
 * directories are the current entry's ancestors, a stack.  Everything under
 * a directory D comes right after D, so D is complete at the first path not
 * under it: then what the backup does not have is removed from it (--force,
 * --delta) and it gets its mode, owner and mtime.
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
	atomic_int	refs;
} rfile;

/* Consecutive blocks of a file for one worker. */
typedef struct job
{
	rfile	   *file;
	uint64_t	first;          /* block number of ids[0] */
	size_t		n;
	uint8_t		ids[][HASH_LEN];
} job;

/* Bounded queue of jobs, which also keeps the first failure of any thread. */
typedef struct queue
{
	pthread_mutex_t lock;
	pthread_cond_t nonempty;
	pthread_cond_t nonfull;
	job		  **jobs;           /* ring */
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
} worker;

/* A user or group name of the backup and its id on this host (-1: unknown). */
typedef struct owner_name
{
	struct owner_name *next;
	char	   *name;
	bool		group;
	long		id;
} owner_name;

typedef struct restore
{
	const char *stanza;
	char	   *label;
	char	   *target;
	bool		overwrite;      /* --force or --delta */
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
	progress   *progress;
	uint64_t	files;
	uint64_t	bytes;
} restore;

static char *
path_join(const char *dir, const char *name)
{
	return name[0] == '\0' ? xstrdup(dir) : xasprintf("%s/%s", dir, name);
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

/* Give an open file or directory its owner, mode and mtime (chown first: it clears set-id bits). */
static int
meta_apply(int fd, const char *path, const meta *m)
{
	struct timespec times[2] = {{.tv_sec = m->mtime}, {.tv_sec = m->mtime}};

	if (meta_has_owner(m) && fchown(fd, m->uid, m->gid) != 0)
		return error_set(ERR_FILE, "could not change owner of \"%s\": %s", path, strerror(errno));
	if (fchmod(fd, m->mode) != 0)
		return error_set(ERR_FILE, "could not change mode of \"%s\": %s", path, strerror(errno));
	if (futimens(fd, times) != 0)
		return error_set(ERR_FILE, "could not set the modification time of \"%s\": %s", path, strerror(errno));
	return 0;
}

/* The same for a link itself (its mode means nothing on Linux). */
static int
link_meta_apply(const char *path, const meta *m)
{
	struct timespec times[2] = {{.tv_sec = m->mtime}, {.tv_sec = m->mtime}};

	if (meta_has_owner(m) && lchown(path, m->uid, m->gid) != 0)
		return error_set(ERR_FILE, "could not change owner of link \"%s\": %s", path, strerror(errno));
	if (utimensat(AT_FDCWD, path, times, AT_SYMLINK_NOFOLLOW) != 0)
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
	q->jobs = xcalloc((size_t) cap, sizeof(job *));
	q->cap = cap;
}

static void
queue_destroy(queue *q)
{
	pthread_mutex_destroy(&q->lock);
	pthread_cond_destroy(&q->nonempty);
	pthread_cond_destroy(&q->nonfull);
	free(q->jobs);
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
		q->jobs[(q->head + q->count) % q->cap] = j;
		q->count++;
		pthread_cond_signal(&q->nonempty);
	}
	pthread_mutex_unlock(&q->lock);
	return rc;
}

/* The next job; NULL once the queue is closed and empty. */
static job *
queue_pop(queue *q)
{
	job		   *j = NULL;

	pthread_mutex_lock(&q->lock);
	while (q->count == 0 && !q->closed)
		pthread_cond_wait(&q->nonempty, &q->lock);
	if (q->count > 0)
	{
		j = q->jobs[q->head];
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
 * all-zero ones) are holes.  With --force or --delta, whatever is at path
 * goes first: the file is a new inode, never a write through a link or into
 * a file hard-linked elsewhere.  This is the place where --delta will keep
 * an existing file instead, for block_restore to compare.
 */
static int
file_open(const restore *rs, const char *path, uint64_t size, int *fd)
{
	int			rc;

	if (rs->overwrite && (rc = fio_remove_tree(path)) != 0)
		return rc;
	*fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (*fd < 0)
		return error_set(ERR_FILE, "could not create file \"%s\": %s", path, strerror(errno));
	if (ftruncate(*fd, (off_t) size) != 0)
	{
		rc = error_set(ERR_FILE, "could not extend file \"%s\" to %" PRIu64 " bytes: %s", path, size, strerror(errno));
		close(*fd);
		return rc;
	}
	return 0;
}

/* Drop a reference to f; the last one completes the file (unless the restore failed), closes and frees it. */
static int
file_release(restore *rs, rfile *f)
{
	int			rc = 0;

	if (atomic_fetch_sub(&f->refs, 1) != 1)
		return 0;
	if (!queue_failed(&rs->q) && (rc = meta_apply(f->fd, f->path, &f->meta)) == 0)
		rc = fio_fsync(f->fd, f->path);
	if (close(f->fd) != 0 && rc == 0)
		rc = error_set(ERR_FILE, "could not close file \"%s\": %s", f->path, strerror(errno));
	free(f->path);
	free(f);
	return rc;
}

/* Put the block, file and backup set in front of a block's failure; a block the repository lacks is corruption. */
static int
block_error(const restore *rs, const rfile *f, uint64_t blockno, const uint8_t id[HASH_LEN], int rc)
{
	char		hex[HASH_HEX_LEN + 1];

	hash_to_hex(id, hex);
	return error_wrap(rc == ERR_NOT_FOUND ? ERR_CORRUPT : rc, "block %" PRIu64 " (id %s) of file \"%s\" in backup set %s",
					  blockno, hex, f->path, rs->label);
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
 * Fetch a block, check it is the one its id names, and append it to the
 * buffered run (the caller flushes before any gap and when the run is full).
 */
static int
block_restore(worker *w, const rfile *f, uint64_t blockno, const uint8_t id[HASH_LEN], uint32_t len)
{
	int			rc;

	if (w->raw_len == 0)
		w->raw_first = blockno;
	rc = repo_block_fetch(w->repo, w->codec, id, w->stored, w->stored_cap, w->raw + w->raw_len, len);
	if (rc != 0)
		return block_error(w->rs, f, blockno, id, rc);
	/* --delta will compare the block on disk with the id here and skip the write when they match. */
	w->raw_len += len;
	return 0;
}

static int
job_run(worker *w, const job *j)
{
	uint32_t	bs = w->rs->hdr.block_size;
	int			rc = 0;

	w->raw_len = 0;
	for (size_t i = 0; i < j->n && rc == 0; i++)
	{
		uint64_t	blockno = j->first + i;
		uint64_t	left = j->file->size - blockno * bs;
		uint32_t	len = left < bs ? (uint32_t) left : bs;

		/* An all-zero block is a hole that file_open left: it ends the run. */
		if (manifest_is_zero_id(j->ids[i]))
			rc = raw_flush(w, j->file);
		else
		{
			if (w->raw_len + bs > (size_t) WRITE_BLOCKS * bs)
				rc = raw_flush(w, j->file);
			if (rc == 0)
				rc = block_restore(w, j->file, blockno, j->ids[i], len);
		}
		progress_add(w->rs->progress, len);
	}
	if (rc == 0)
		rc = raw_flush(w, j->file);
	w->raw_len = 0;
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
		if ((rc = file_release(w->rs, j->file)) != 0)
			queue_fail(q, rc);
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
	rfile	   *f;
	int			fd;
	int			rc;
	int			rc2;

	if ((rc = file_open(rs, path, e->size, &fd)) != 0)
		return rc;
	f = xcalloc(1, sizeof(*f));
	f->path = xstrdup(path);
	f->fd = fd;
	f->size = e->size;
	f->meta = meta_of(rs, e);
	/* The main thread's reference keeps f open until all its jobs are queued. */
	atomic_init(&f->refs, 1);
	rs->files++;
	rs->bytes += e->size;
	rc = file_queue_blocks(rs, m, f, e->nblocks);
	rc2 = file_release(rs, f);
	return rc ? rc : rc2;
}

/* ---- directories and links ---- */

/*
 * Create a directory 0700, so that its entries can be made whatever its
 * final mode (frame_finish sets that).  With --force or --delta an existing
 * directory is kept and anything else at path goes.
 */
static int
dir_create(const restore *rs, const char *path)
{
	struct stat st;
	int			rc;

	if (rs->overwrite && lstat(path, &st) == 0)
	{
		if (S_ISDIR(st.st_mode))
			return 0;
		if ((rc = fio_remove_tree(path)) != 0)
			return rc;
	}
	if (mkdir(path, 0700) != 0)
		return error_set(ERR_FILE, "could not create directory \"%s\": %s", path, strerror(errno));
	return 0;
}

static int
link_create(const restore *rs, const char *path, const char *target, const meta *m)
{
	int			rc;

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
	if ((rc = fio_mkdir_durable(t->dest, 0700)) != 0 || (rc = chown_created(t->dest, missing, &m)) != 0)
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

/* With --force or --delta: remove from a complete directory what the backup does not have. */
static int
dir_clean(const restore *rs, const frame *f, const char *path)
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
		if (name_is_dot(name) || (f->nnames > 0 && bsearch(&name, f->names, f->nnames, sizeof(char *), name_cmp)))
			continue;
		p = path_join(path, name);
		log_detail("remove \"%s\": not in backup set %s", p, rs->label);
		rc = fio_remove_tree(p);
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

static void
frame_add_name(frame *f, const char *name)
{
	if (f->nnames == f->cap)
	{
		f->cap = f->cap ? 2 * f->cap : 16;
		f->names = xrealloc(f->names, f->cap * sizeof(char *));
	}
	f->names[f->nnames++] = xstrdup(name);
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
	if ((rc = meta_apply(fd, path, m)) == 0)
		rc = fio_fsync(fd, path);
	close(fd);
	return rc;
}

/* A directory or link the walk is past is complete: clean it, give it its metadata, make it durable. */
static int
frame_finish(restore *rs, const frame *f)
{
	char	   *path = path_join(rs->target, f->path);
	int			rc = 0;

	if (f->kind == FR_LINK && !f->made_dir)
		rc = link_create(rs, path, f->link_target, &f->meta);
	else if (rs->overwrite)
		rc = dir_clean(rs, f, path);
	if (rc == 0 && f->kind == FR_TABLESPACE)
	{
		/* Its link got its metadata when it was made; the directory it points to is made durable. */
		rc = fio_fsync_dir(path);
	}
	else if (rc == 0 && f->kind == FR_ROOT)
	{
		/* The parents restore created are the owner's too; the data directory may be the user's link. */
		if ((rc = chown_created(rs->target, rs->target_missing, &rs->root_meta)) == 0)
			rc = dir_finish(path, true, &rs->root_meta);
	}
	else if (rc == 0 && (f->kind == FR_DIR || f->made_dir))
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
	if (rs->overwrite)
		frame_add_name(pf, slash ? slash + 1 : e->path);
	path = path_join(rs->target, e->path);
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
	int			rc;

	/* Block lists are read on this thread, through its own repository handle. */
	blocklist_reader_init(&lists, rs->repo);
	if ((rc = repo_backup_open(rs->repo, rs->label, &rd)) != 0)
		goto out;
	m = manifest_reader_new(rd, what);
	manifest_reader_set_group_fn(m, blocklist_resolve, &lists);
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
		if ((rc = repo_open(rs->stanza, &w->repo)) != 0)
			return rc;
		if ((rc = pthread_create(&w->thread, NULL, worker_main, w)) != 0)
			return error_set(ERR_INTERNAL, "could not start a worker thread: %s", strerror(rc));
		w->started = true;
	}
	return 0;
}

/* Close the queue, wait for the workers, and return the first failure of any thread. */
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

/* Create the data directory if needed and restore every entry of the backup into it. */
static int
restore_files(restore *rs)
{
	char	   *what = xasprintf("restore %s", rs->label);
	int			rc;

	queue_init(&rs->q, 2 * (int) opt_int(OPT_PROCESS_MAX));
	rs->progress = progress_start(what, rs->hdr.db_size, NULL);
	rs->writing = true;
	rs->target_missing = missing_from(rs->target);
	if ((rc = fio_mkdir_durable(rs->target, 0700)) == 0 && (rc = root_meta_init(rs)) == 0 &&
		(rc = workers_start(rs)) == 0)
		rc = manifest_pass(rs);
	/* The main thread's failure goes through the queue too: the first failure of any thread is the one reported. */
	if (rc != 0)
		queue_fail(&rs->q, rc);
	rc = workers_stop(rs);
	progress_finish(rs->progress);
	free(what);
	return rc;
}

/* Write a file of restore's own into the data directory, durably, with the mode and owner of its files. */
static int
put_file(const restore *rs, const char *name, const char *data)
{
	char	   *path = path_join(rs->target, name);
	const meta *m = &rs->root_meta;
	int			rc = fio_write_file_atomic(path, data, strlen(data), m->mode & 0660);

	if (rc == 0 && meta_has_owner(m) && chown(path, m->uid, m->gid) != 0)
		rc = error_set(ERR_FILE, "could not change owner of \"%s\": %s", path, strerror(errno));
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

/* Edit postgresql.auto.conf for the recovery type and write its signal file. */
static int
recovery_write(const restore *rs, const recovery_settings *rec)
{
	char	   *path = path_join(rs->target, "postgresql.auto.conf");
	const char *signal = recovery_signal_file(rec);
	char	   *current = NULL;
	char	   *next = NULL;
	size_t		len;
	int			rc = 0;

	if (fio_exists(path))
		rc = fio_read_file(path, AUTO_CONF_MAX, &current, &len);
	else
		current = xstrdup("");
	if (rc == 0)
		rc = recovery_conf_update(rec, current, &next);
	if (rc == 0 && strcmp(next, current) != 0)
		rc = put_file(rs, "postgresql.auto.conf", next);
	if (rc == 0 && signal != NULL)
		rc = put_file(rs, signal, "");
	free(path);
	free(current);
	free(next);
	return rc;
}

/* What restore writes beside the backup's files: backup_label, tablespace_map, recovery settings. */
static int
restore_extras(const restore *rs, const recovery_settings *rec)
{
	int			rc = put_file(rs, "backup_label", rs->hdr.backup_label);

	if (rc == 0 && rs->hdr.tablespace_map != NULL)
	{
		char	   *map = tablespace_map_text(rs);

		rc = put_file(rs, "tablespace_map", map);
		free(map);
	}
	return rc ? rc : recovery_write(rs, rec);
}

/* The running binary's absolute path, for restore_command. */
static int
self_path(char **out)
{
	for (size_t cap = 256;; cap *= 2)
	{
		char	   *buf = xmalloc(cap);
		ssize_t		n = readlink("/proc/self/exe", buf, cap);

		if (n >= 0 && (size_t) n < cap)
		{
			buf[n] = '\0';
			*out = buf;
			return 0;
		}
		free(buf);
		if (n < 0)
			return error_set(ERR_FILE, "could not read link \"/proc/self/exe\": %s", strerror(errno));
	}
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
	if ((rc = self_path(&bin)) != 0)
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
	rs.overwrite = opt_bool(OPT_FORCE) || opt_bool(OPT_DELTA);
	rs.as_root = geteuid() == 0;
	if ((rc = recovery_from_options(&rs, &rec, &rec_options, &restore_cmd)) != 0 || (rc = target_check(&rs)) != 0 ||
		(rc = repo_open(rs.stanza, &rs.repo)) != 0 || (rc = repo_stanza_get(rs.repo, &st)) != 0 ||
		(rc = repo_blocks_hold(rs.repo)) != 0 || (rc = backup_choose(&rs)) != 0)
		goto out;
	log_info("restore backup set %s to \"%s\"", rs.label, rs.target);
	if ((rc = manifest_pass(&rs)) != 0 || (rc = tablespaces_check(&rs)) != 0)
		goto out;
	touched = true;
	if ((rc = restore_files(&rs)) != 0 || (rc = restore_extras(&rs, &rec)) != 0)
		goto out;
	log_info("restore complete: %" PRIu64 " files, %.1f MB", rs.files, (double) rs.bytes / 1e6);
out:
	if (rc != 0 && touched)
		log_warn("restore of backup set %s into \"%s\" failed: the data directory is incomplete", rs.label, rs.target);
	restore_free(&rs);
	free(rec_options);
	free(restore_cmd);
	return rc;
}
