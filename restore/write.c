/*
 * write.c: the writing side of restore (see the top of restore.c): the
 * bounded job queue the walk (walk.c) fills, and the worker threads that
 * fetch, verify and write the blocks of each job and complete a file when
 * its last job is done.
 */
#include "restore_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../repo/manifest.h"
#include "../repo/repo.h"
#include "../src/error.h"
#include "../src/fileio.h"
#include "../src/log.h"
#include "../src/mem.h"
#include "../src/option.h"
#include "../src/progress.h"

/* Consecutive blocks a worker writes with one pwrite (1 MiB of 8 KiB blocks). */
#define WRITE_BLOCKS 128

/* ---- the job queue ---- */

void
queue_init(queue *q, int cap, uint64_t max_blocks)
{
	memset(q, 0, sizeof(*q));
	q->max_blocks = max_blocks;
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

/* A whole file small enough to be bundled with others (jobs are RESTORE_CHUNK_BLOCKS). */
static bool
job_small(const job *j)
{
	return j->first == 0 && j->n < RESTORE_SMALL_BLOCKS;
}

/* Wait for room for n more jobs of `blocks` blocks (the caller holds the lock); false once anything failed. */
static bool
queue_room(queue *q, int n, uint64_t blocks, bool even_failed)
{
	while ((q->count + n > q->cap || (q->count > 0 && q->blocks + blocks > q->max_blocks)) &&
		   (q->err == 0 || even_failed))
		pthread_cond_wait(&q->nonfull, &q->lock);
	return q->err == 0 || even_failed;
}

static void
queue_add(queue *q, job *j)
{
	q->items[(q->head + q->count) % q->cap] = j;
	q->count++;
	q->blocks += j->n;
}

/*
 * Move the staged small files into the queue at once, so that one worker
 * takes them together (the caller holds the lock).  After a failure only
 * with even_failed (the workers then drain them); else that failure.
 */
static int
queue_publish(queue *q, bool even_failed)
{
	if (q->staged_n == 0)
		return 0;
	if (!queue_room(q, q->staged_n, q->staged_blocks, even_failed))
		return q->err;
	for (int i = 0; i < q->staged_n; i++)
		queue_add(q, q->staged[i]);
	q->staged_n = 0;
	q->staged_blocks = 0;
	pthread_cond_broadcast(&q->nonempty);
	return 0;
}

/*
 * Add a job, waiting for room.  A small file's job is staged with the next
 * ones until RESTORE_BUNDLE_MAX of them or REPO_PREFETCH_MAX blocks, then
 * they are queued together (also before a larger job, and at close).  Once
 * anything failed, returns that failure instead (the caller keeps j).
 */
int
queue_push(queue *q, job *j)
{
	int			rc;

	pthread_mutex_lock(&q->lock);
	rc = q->err;
	if (rc == 0 && job_small(j))
	{
		if (q->staged_n == RESTORE_BUNDLE_MAX || q->staged_blocks + j->n > REPO_PREFETCH_MAX)
			rc = queue_publish(q, false);
		if (rc == 0)
		{
			q->staged[q->staged_n++] = j;
			q->staged_blocks += j->n;
		}
	}
	else if (rc == 0 && (rc = queue_publish(q, false)) == 0)
	{
		if (queue_room(q, 1, j->n, false))
		{
			queue_add(q, j);
			pthread_cond_signal(&q->nonempty);
		}
		else
			rc = q->err;
	}
	pthread_mutex_unlock(&q->lock);
	return rc;
}

/* Take the job k places from the head off the queue (the jobs before it move up one place). */
static job *
queue_take(queue *q, int k)
{
	job		   *j = q->items[(q->head + k) % q->cap];

	for (; k > 0; k--)
		q->items[(q->head + k) % q->cap] = q->items[(q->head + k - 1) % q->cap];
	atomic_fetch_add(&j->file->writers, 1);
	q->head = (q->head + 1) % q->cap;
	q->count--;
	q->blocks -= j->n;
	return j;
}

/*
 * The next jobs, up to max; 0 once the queue is closed and empty.  The first
 * is the oldest job of a file no other worker is writing, or the oldest job
 * when every queued one's file is being written (workers that write the same
 * file wait for each other on its inode's lock, but a database that is one
 * big file still keeps them all busy).  When it is a small file, the small
 * files queued right after it come along, as long as their blocks number at
 * most REPO_PREFETCH_MAX in all: the worker asks for all their blocks at once.
 */
static size_t
queue_pop(queue *q, job **out, size_t max)
{
	size_t		n = 0;
	int			k = 0;

	pthread_mutex_lock(&q->lock);
	while (q->count == 0 && !q->closed)
		pthread_cond_wait(&q->nonempty, &q->lock);
	if (q->count > 0)
	{
		while (k < q->count && atomic_load(&q->items[(q->head + k) % q->cap]->file->writers) > 0)
			k++;
		k = k < q->count ? k : 0;
		out[n++] = queue_take(q, k);
		/* The jobs queued after it are k places from the head now. */
		if (job_small(out[0]))
		{
			size_t		blocks = out[0]->n;

			while (n < max && k < q->count)
			{
				job		   *j = q->items[(q->head + k) % q->cap];

				if (!job_small(j) || atomic_load(&j->file->writers) > 0 || blocks + j->n > REPO_PREFETCH_MAX)
					break;
				out[n++] = queue_take(q, k);
				blocks += j->n;
			}
		}
		pthread_cond_broadcast(&q->nonfull);
	}
	pthread_mutex_unlock(&q->lock);
	return n;
}

static void
queue_close(queue *q)
{
	pthread_mutex_lock(&q->lock);
	(void) queue_publish(q, true);
	q->closed = true;
	pthread_cond_broadcast(&q->nonempty);
	pthread_mutex_unlock(&q->lock);
}

/* Record a failure of the calling thread (the first one is kept, with its message); the others stop. */
void
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
int
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

void
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
 * end (see the top of restore.c).
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
void
file_release(restore *rs, rfile *f)
{
	int			rc;

	if (atomic_fetch_sub(&f->refs, 1) == 1 && (rc = file_complete(rs, f)) != 0)
		queue_fail(&rs->q, rc);
}

/* Put the block, file and backup set in front of a block's failure; a block the repository lacks is corruption. */
int
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

/* repo_block_prefetch the blocks from .. to-1 of each job (not --delta's), at most REPO_PREFETCH_MAX in all. */
static int
prefetch_ids(worker *w, const job *const *jobs, size_t njobs, size_t from, size_t to)
{
	uint8_t		ids[REPO_PREFETCH_MAX][HASH_LEN];
	size_t		n = 0;

	for (size_t i = 0; i < njobs; i++)
	{
		const job  *j = jobs[i];

		if (j->file->compare)
			continue;
		for (size_t k = from; k < j->n && k < to && n < REPO_PREFETCH_MAX; k++)
			if (!manifest_is_zero_id(j->ids[k]))
				memcpy(ids[n++], j->ids[k], HASH_LEN);
	}
	return n ? repo_block_prefetch(w->repo, (const uint8_t (*)[HASH_LEN]) ids, n) : 0;
}

/*
 * Not --delta: repo_block_prefetch the blocks job_run will fetch, so that a
 * repository server keeps between half and all of REPO_PREFETCH_MAX reads
 * ahead: at block 0 those among the first REPO_PREFETCH_MAX ids, then every
 * half of it the next half.  (A bundle of small files is asked for at once
 * by its worker: job_run then asks for none.)
 */
static int
prefetch(worker *w, const job *j, size_t i)
{
	const size_t half = REPO_PREFETCH_MAX / 2;

	if (i % half != 0)
		return 0;
	return i == 0 ? prefetch_ids(w, &j, 1, 0, REPO_PREFETCH_MAX) : prefetch_ids(w, &j, 1, i + half, i + 2 * half);
}

/* Restore the blocks of job j; prefetched: the bundle's prefetch asked for them already. */
static int
job_run(worker *w, const job *j, bool prefetched)
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
		if (!f->compare && !prefetched && (rc = prefetch(w, j, i)) != 0)
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
	job		   *jobs[RESTORE_BUNDLE_MAX];
	size_t		n;

	while ((n = queue_pop(q, jobs, RESTORE_BUNDLE_MAX)) > 0)
	{
		/* After a failure the remaining jobs are only drained. */
		int			rc = 0;

		if (!queue_failed(q))
		{
			if (n > 1)
				rc = prefetch_ids(w, (const job *const *) jobs, n, 0, REPO_PREFETCH_MAX);
			for (size_t i = 0; i < n && rc == 0; i++)
				rc = job_run(w, jobs[i], n > 1);
		}
		if (rc != 0)
			queue_fail(q, rc);
		for (size_t i = 0; i < n; i++)
		{
			atomic_fetch_sub(&jobs[i]->file->writers, 1);
			file_release(w->rs, jobs[i]->file);
			free(jobs[i]);
		}
	}
	return NULL;
}

/* ---- the workers ---- */

int
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
int
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
