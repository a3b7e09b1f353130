/*
 * backup.c: the backup command.
 *
 * Between pg_backup_start and pg_backup_stop the data directory is walked in
 * manifest order (pgdata.h).  Files are cut into chunks of blocks; a bounded
 * ring of jobs feeds process-max worker threads, each with its own
 * repository handle and codec, which read, verify page checksums, hash, and
 * store the blocks the repository lacks.  The main thread writes entries to
 * a provisional manifest in order as the head of the ring completes, so
 * memory is bounded by process-max and the chunk size.  After
 * pg_backup_stop and (with archive-check) the WAL of the backup reaching the
 * repository, the final manifest is written with its header and committed:
 * the backup exists from that instant.
 *
 * An incr or diff backup reads the manifest of its prior backup as a stream
 * beside the walk (both are in manifest_path_cmp order).  A file whose size
 * and mtime match the prior's entry, and could not have changed unseen (see
 * can_take_over), is not read: its entry takes the prior's block lines and
 * bad pages.  Every manifest still lists every file's blocks, so a restore
 * needs one manifest only.  A file that is read gets, with its chunks, the
 * prior's lists of the same groups: the workers store a group with few
 * changes as a delta list against them (blocklist.h).  doc/backup.md
 * describes the rules.
 */
#include "backup.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "blocklist.h"
#include "expire.h"
#include "manifest.h"
#include "pgdata.h"
#include "repo.h"
#include "stanza.h"
#include "../src/cluster.h"
#include "../src/error.h"
#include "../src/fileio.h"
#include "../src/log.h"
#include "../src/mem.h"
#include "../src/option.h"
#include "../src/progress.h"

#define CHUNK_BLOCKS 4096       /* blocks per job: 32 MiB of 8 KiB blocks */
#define READ_BLOCKS 256         /* blocks per read(), and per block-exists question to the repository; a worker has two reads */
#define BUNDLE_MAX 32           /* small files a worker reads and asks about together */
#define DICT_SAMPLES 512        /* blocks sampled for a compression dictionary */
#define DICT_CONTENT 8          /* of them, blocks that make its content */
#define DICT_MIN_SAMPLES 64     /* fewer non-zero relation blocks: no dictionary yet */

typedef struct job
{
	/* set by the producer */
	pgdata_entry entry;         /* deep copy */
	bool		is_file_head;   /* first chunk of a file (the entry is emitted with it) */
	bool		taken;          /* the whole file, block lines taken over from the prior backup (not read) */
	uint64_t	file_seq;       /* number of the file in manifest order */
	uint64_t	file_nblocks;   /* blocks of the whole file */
	uint64_t	first_block;
	uint64_t	nblocks;
	manifest_ref *bases;        /* NULL, or per group of the chunk: the prior backup's list of those blocks */
	/* set by the worker */
	uint8_t		(*ids)[HASH_LEN];
	manifest_ref *refs;         /* the chunk's block lines: groups of ids stored as block lists */
	size_t		nrefs;
	uint32_t   *bad;
	uint64_t	nbad;
	uint64_t	stored;         /* stored bytes of all blocks of the chunk */
	uint64_t	added;          /* stored bytes this chunk added */
	uint64_t	lists;          /* block-list objects this chunk added */
	uint64_t	deltas;         /* of which delta lists */
	int			rc;
	char	   *err;
	enum { JOB_QUEUED, JOB_RUNNING, JOB_DONE } state;
} job;

typedef struct backup_run
{
	pthread_mutex_t lock;
	pthread_cond_t cond;
	job		   *ring;
	int			cap;
	uint64_t	head;           /* next job to emit */
	uint64_t	tail;           /* next free slot */
	uint64_t	dispatch;       /* next job for a worker */
	uint64_t	ring_blocks;    /* blocks of the jobs in the ring (main thread only) */
	uint64_t	max_blocks;     /* a job waits for room beyond this many (unless the ring is empty) */
	bool		stop;
	bool		failed;
	/* settings */
	const char *stanza;
	uint32_t	block_size;
	uint64_t	start_lsn;
	bool		checksum_page;
	compress_type ctype;
	int			clevel;
	progress   *prog;
	/* incr and diff: used by the main thread only */
	struct prior_backup *prior; /* NULL: every file is read */
	repo	   *r;              /* the main thread's handle */
	int64_t		start_time;     /* second the backup started, before pg_backup_start */
	uint64_t	files_read;
	uint64_t	bytes_read;
	uint64_t	files_taken;
} backup_run;


static void
entry_copy(pgdata_entry *dst, const pgdata_entry *src)
{
	*dst = *src;
	dst->path = xstrdup(src->path);
	dst->full_path = xstrdup(src->full_path);
	dst->link_target = src->link_target ? xstrdup(src->link_target) : NULL;
}

static void
job_clear(job *j)
{
	free(j->entry.path);
	free(j->entry.full_path);
	free(j->entry.link_target);
	free(j->ids);
	free(j->refs);
	free(j->bases);
	free(j->bad);
	free(j->err);
	memset(j, 0, sizeof(*j));
}

static bool
all_zero(const uint8_t *p, size_t n)
{
	const uint64_t *q = (const uint64_t *) p;
	size_t		i;

	for (i = 0; i < n / 8; i++)
		if (q[i] != 0)
			return false;
	for (i *= 8; i < n; i++)
		if (p[i] != 0)
			return false;
	return true;
}

/* A read is a group of the manifest: its list is asked about with its blocks. */
_Static_assert(READ_BLOCKS == MANIFEST_GROUP_BLOCKS && CHUNK_BLOCKS % READ_BLOCKS == 0, "reads are groups");
_Static_assert(READ_BLOCKS + BUNDLE_MAX <= REPO_EXISTS_MAX, "a batch's question fits one block-exists request");

/* One id a batch asks the repository about: a block in the batch's buffer, or a job's list. */
typedef struct batch_q
{
	job		   *j;
	int64_t		k;              /* the block's index in the buffer; -1: j's list */
	uint32_t	bytes;          /* the block's length (the last block of a file may be short) */
} batch_q;

/*
 * One read: up to READ_BLOCKS blocks, either from block `first` of one job
 * on (one group), or the whole of several small files (a bundle), and the
 * ids of their non-zero blocks, asked about in one question to the
 * repository.  A group without a prior list to encode it against has its
 * list's id asked about in the same question (the list's id is the hash of
 * the group's ids).
 */
typedef struct read_batch
{
	uint8_t    *buf;
	uint64_t	first;          /* one job: the job's block index of buf's first block */
	uint64_t	nblocks;        /* blocks in buf; 0: no batch */
	uint64_t	bytes;          /* bytes read into buf */
	size_t		nq;             /* ids asked about */
	uint8_t		qids[READ_BLOCKS + BUNDLE_MAX][HASH_LEN];
	batch_q		qwho[READ_BLOCKS + BUNDLE_MAX];
	bool		qexists[READ_BLOCKS + BUNDLE_MAX];
	uint32_t	qlen[READ_BLOCKS + BUNDLE_MAX];
} read_batch;

typedef struct worker_ctx
{
	backup_run *run;
	repo	   *r;
	block_codec *codec;
	blocklist_writer lists;
	uint8_t    *cbuf;
	size_t		ccap;
	/* While the repository answers about one batch the worker reads the next. */
	read_batch	batch[2];
} worker_ctx;

/* Verify one page, re-reading it once before calling it bad (it may have been mid-write). */
static bool
page_is_bad(worker_ctx *w, job *j, int fd, uint8_t *page, uint64_t blockno)
{
	backup_run *run = w->run;
	uint32_t	blkno = (uint32_t) (j->entry.relseg * (uint64_t) (1073741824u / run->block_size) + blockno);

	if (page_verify(page, blkno, run->block_size, run->start_lsn) != PAGE_BAD)
		return false;
	uint8_t    *again = xmalloc(run->block_size);
	bool		bad = true;

	if (fio_pread_full(fd, again, run->block_size, (off_t) (blockno * run->block_size), j->entry.full_path) == 0)
	{
		if (page_verify(again, blkno, run->block_size, run->start_lsn) != PAGE_BAD)
		{
			memcpy(page, again, run->block_size);
			bad = false;
		}
	}
	error_clear();
	free(again);
	return bad;
}

/* Store a block the repository lacks; its id is already computed. */
static int
store_block(worker_ctx *w, job *j, const uint8_t *data, size_t len, const uint8_t id[HASH_LEN])
{
	size_t		clen;
	int			rc;

	if ((rc = block_compress(w->codec, data, len, w->cbuf, w->ccap, &clen)) != 0)
		return rc;
	if (clen < len)
		rc = repo_block_put(w->r, id, w->run->ctype, w->cbuf, (uint32_t) clen, (uint32_t) len);
	else
	{
		clen = len;
		rc = repo_block_put(w->r, id, COMPRESS_NONE, data, (uint32_t) len, (uint32_t) len);
	}
	j->stored += clen;
	j->added += clen;
	return rc;
}

static void
add_bad(job *j, uint64_t blockno)
{
	if (j->nbad < MANIFEST_MAX_BAD_PAGES)
	{
		j->bad = xrealloc(j->bad, sizeof(uint32_t) * (size_t) (j->nbad + 1));
		j->bad[j->nbad] = (uint32_t) blockno;
	}
	j->nbad++;
}

/*
 * Read batch b of job j, from block `first` of the job: verify the pages,
 * hash the blocks, and list the non-zero ones to ask the repository about.
 */
static int
batch_read(worker_ctx *w, job *j, int fd, read_batch *b, uint64_t first)
{
	backup_run *run = w->run;
	uint32_t	bs = run->block_size;
	uint64_t	size = (uint64_t) j->entry.st.st_size;
	uint64_t	blockno = j->first_block + first;
	uint64_t	off = blockno * bs;
	uint64_t	nblocks = j->nblocks - first < READ_BLOCKS ? j->nblocks - first : READ_BLOCKS;
	uint64_t	want = size - off < nblocks * bs ? size - off : nblocks * bs;
	uint8_t    *buf = b->buf + b->nblocks * bs;
	size_t		got = 0, asked = b->nq;
	int			rc;

	/* Batches are read in order: the file offset is at off. */
	if (fd >= 0 && (rc = fio_read_full(fd, buf, (size_t) want, &got, j->entry.full_path)) != 0)
		return rc;
	/* A file that shrank during the backup reads as zeros past its end, as WAL replay expects. */
	if (got < want)
		memset(buf + got, 0, (size_t) (want - got));
	for (uint64_t k = 0; k < nblocks; k++)
	{
		uint8_t    *blk = buf + k * bs;
		size_t		len = (size_t) (want - k * bs < bs ? want - k * bs : bs);

		if (all_zero(blk, len))
		{
			memcpy(j->ids[first + k], manifest_zero_id, HASH_LEN);
			continue;
		}
		if (run->checksum_page && j->entry.relation && len == bs && fd >= 0 &&
			page_is_bad(w, j, fd, blk, blockno + k))
			add_bad(j, blockno + k);
		hash_buf(blk, len, j->ids[first + k]);
		memcpy(b->qids[b->nq], j->ids[first + k], HASH_LEN);
		b->qwho[b->nq++] = (batch_q) {j, (int64_t) (b->nblocks + k), (uint32_t) len};
	}
	b->nblocks += nblocks;
	b->bytes += want;

	/*
	 * A group with a block that is not zero gets a list.  Without a prior
	 * list to encode it against (see blocklist_make_refs), the list holds the
	 * group's ids: its id is known now, and the question about it saves a
	 * round trip of its own.
	 */
	const manifest_ref *cand = j->bases ? &j->bases[first / MANIFEST_GROUP_BLOCKS] : NULL;

	if (b->nq > asked && (cand == NULL || cand->kind != MREF_GROUP || cand->count != nblocks))
	{
		hash_buf(j->ids[first], (size_t) nblocks * HASH_LEN, b->qids[b->nq]);
		b->qwho[b->nq++] = (batch_q) {j, -1, 0};
	}
	return 0;
}

/* Empty b for a new read from block `first` of a job. */
static void
batch_reset(read_batch *b, uint64_t first)
{
	b->first = first;
	b->nblocks = b->bytes = 0;
	b->nq = 0;
}

/* Store the blocks of batch b the repository said it lacks; pass on its answers about lists. */
static int
batch_store(worker_ctx *w, read_batch *b)
{
	int			rc = 0;

	for (size_t q = 0; q < b->nq && rc == 0; q++)
	{
		batch_q    *who = &b->qwho[q];

		if (who->k < 0)
			blocklist_writer_known(&w->lists, b->qids[q], b->qexists[q], b->qlen[q]);
		else if (b->qexists[q])
			who->j->stored += b->qlen[q];
		else
			rc = store_block(w, who->j, b->buf + (uint64_t) who->k * w->run->block_size, who->bytes, b->qids[q]);
	}
	progress_add(w->run->prog, b->bytes);
	return rc;
}

/* Ask about the ids of b and wait for the answer. */
static int
batch_ask(worker_ctx *w, read_batch *b)
{
	return repo_block_exists_ask(w->r, (const uint8_t (*)[HASH_LEN]) b->qids, b->nq);
}

static int
batch_answer(worker_ctx *w, read_batch *b)
{
	return repo_block_exists_answer(w->r, b->qexists, b->qlen);
}

/* Open a job's file at its first block; *fd -1 when it vanished (it reads as zeros). */
static int
job_open(job *j, uint32_t bs, int *fd)
{
	int			rc;

	*fd = open(j->entry.full_path, O_RDONLY | O_CLOEXEC);
	if (*fd < 0)
	{
		if (errno != ENOENT)
			return error_set(ERR_FILE, "could not open file \"%s\": %s", j->entry.full_path, strerror(errno));
		/* Dropped during the backup: WAL replay removes it; store zeros. */
		log_detail("file \"%s\" vanished during the backup", j->entry.full_path);
		return 0;
	}
	if (j->first_block > 0 && lseek(*fd, (off_t) (j->first_block * bs), SEEK_SET) < 0)
	{
		rc = error_set(ERR_FILE, "could not seek in file \"%s\": %s", j->entry.full_path, strerror(errno));
		close(*fd);
		*fd = -1;
		return rc;
	}
	return 0;
}

/* A job's block lines, once all its blocks are stored (or found stored). */
static int
job_finish(worker_ctx *w, job *j)
{
	blocklist_tally lt = {0};
	int			rc;

	j->refs = xmalloc(sizeof(manifest_ref) * (size_t) (j->nblocks / MANIFEST_GROUP_BLOCKS + 1));
	rc = blocklist_make_refs(&w->lists, (const uint8_t (*)[HASH_LEN]) j->ids, (size_t) j->nblocks, j->bases,
							 j->refs, &j->nrefs, &lt);
	j->stored += lt.stored;
	j->added += lt.added;
	j->lists = lt.lists;
	j->deltas = lt.deltas;
	return rc;
}

/*
 * Read, verify, hash and store the blocks of one chunk, a batch at a time:
 * the question about a batch's blocks goes to the repository before the
 * next batch is read and hashed, and its answer is waited for only then,
 * so that a repository server answers while this worker reads.
 */
static int
process_job(worker_ctx *w, job *j)
{
	uint32_t	bs = w->run->block_size;
	read_batch *cur = &w->batch[0], *next = &w->batch[1], *t;
	int			fd, rc;

	j->ids = xmalloc(HASH_LEN * (size_t) (j->nblocks ? j->nblocks : 1));
	if ((rc = job_open(j, bs, &fd)) != 0)
		return rc;
	/* The kernel reads the chunk ahead while this worker hashes and compresses. */
	if (fd >= 0)
		posix_fadvise(fd, (off_t) (j->first_block * bs), (off_t) (j->nblocks * bs), POSIX_FADV_WILLNEED);
	batch_reset(cur, 0);
	if (j->nblocks > 0 && (rc = batch_read(w, j, fd, cur, 0)) == 0 && cur->nq > 0)
		rc = batch_ask(w, cur);
	while (rc == 0 && cur->nblocks > 0)
	{
		uint64_t	after = cur->first + cur->nblocks;

		batch_reset(next, after);
		if (after < j->nblocks)
			rc = batch_read(w, j, fd, next, after);
		if (rc == 0 && cur->nq > 0)
			rc = batch_answer(w, cur);
		if (rc == 0)
			rc = batch_store(w, cur);
		if (rc == 0 && next->nq > 0)
			rc = batch_ask(w, next);
		t = cur;
		cur = next;
		next = t;
	}
	if (fd >= 0)
		close(fd);
	return rc ? rc : job_finish(w, j);
}

/*
 * A file small enough to go whole into a bundle, or an entry with nothing to
 * read (a directory, a link, a file taken over from the prior backup).
 */
static bool
job_bundles(const job *j)
{
	return j->entry.kind != MF_FILE || j->taken || (j->is_file_head && j->nblocks == j->file_nblocks && j->nblocks < READ_BLOCKS);
}

static bool
job_reads(const job *j)
{
	return j->entry.kind == MF_FILE && !j->taken;
}

/* The blocks a job reads (and whose ids it keeps until it is emitted). */
static uint64_t
job_read_blocks(const job *j)
{
	return job_reads(j) ? j->nblocks : 0;
}

/*
 * The jobs of a bundle (see job_bundles): their files read one after the
 * other into one batch, and their blocks and lists asked about in one
 * question, so that a data directory's many small files cost a round trip
 * to the repository per bundle instead of per file.
 */
static int
process_bundle(worker_ctx *w, job **jobs, size_t n)
{
	read_batch *b = &w->batch[0];
	int			rc = 0;

	batch_reset(b, 0);
	for (size_t i = 0; i < n && rc == 0; i++)
	{
		job		   *j = jobs[i];
		int			fd;

		if (!job_reads(j))
			continue;
		j->ids = xmalloc(HASH_LEN * (size_t) (j->nblocks ? j->nblocks : 1));
		if (j->nblocks == 0 || (rc = job_open(j, w->run->block_size, &fd)) != 0)
			continue;
		rc = batch_read(w, j, fd, b, 0);
		if (fd >= 0)
			close(fd);
	}
	if (rc == 0 && b->nq > 0 && (rc = batch_ask(w, b)) == 0)
		rc = batch_answer(w, b);
	if (rc == 0)
		rc = batch_store(w, b);
	for (size_t i = 0; i < n && rc == 0; i++)
		if (job_reads(jobs[i]))
			rc = job_finish(w, jobs[i]);
	return rc;
}

static void *
worker_main(void *arg)
{
	worker_ctx *w = arg;
	backup_run *run = w->run;
	job		   *jobs[BUNDLE_MAX];

	blocklist_writer_init(&w->lists, w->r, w->codec, run->ctype);
	pthread_mutex_lock(&run->lock);
	for (;;)
	{
		size_t		n = 0;
		uint64_t	blocks = 0;
		int			rc;

		while (!run->stop && run->dispatch == run->tail)
			pthread_cond_wait(&run->cond, &run->lock);
		if (run->stop)
			break;
		/* The next job; if it bundles, the queued jobs after it that bundle too, as many as fit. */
		do
		{
			job		   *j = &run->ring[run->dispatch % (uint64_t) run->cap];

			if (n > 0 && (!job_bundles(j) || (job_reads(j) && blocks + j->nblocks > READ_BLOCKS)))
				break;
			j->state = JOB_RUNNING;
			jobs[n++] = j;
			blocks += job_reads(j) ? j->nblocks : 0;
			run->dispatch++;
		} while (job_bundles(jobs[0]) && n < BUNDLE_MAX && run->dispatch < run->tail);
		pthread_mutex_unlock(&run->lock);
		if (job_bundles(jobs[0]))
			rc = process_bundle(w, jobs, n);
		else
			rc = process_job(w, jobs[0]);
		pthread_mutex_lock(&run->lock);
		for (size_t i = 0; i < n; i++)
		{
			if (rc)
			{
				jobs[i]->rc = rc;
				jobs[i]->err = xstrdup(error_msg());
				run->failed = true;
			}
			jobs[i]->state = JOB_DONE;
		}
		pthread_cond_broadcast(&run->cond);
	}
	pthread_mutex_unlock(&run->lock);
	blocklist_writer_free(&w->lists);
	/* Make everything this worker stored durable before the manifest can reference it. */
	int			rc = repo_block_flush(w->r);

	if (rc)
	{
		pthread_mutex_lock(&run->lock);
		run->failed = true;
		pthread_mutex_unlock(&run->lock);
		log_error("%s", error_msg());
	}
	return NULL;
}

/* Owner names, cached for the common case of one owner. */
typedef struct owner_cache
{
	uid_t		uid;
	gid_t		gid;
	char	   *user;
	char	   *group;
} owner_cache;

static const char *
user_name(owner_cache *c, uid_t uid)
{
	if (c->user == NULL || c->uid != uid)
	{
		struct passwd *pw = getpwuid(uid);

		free(c->user);
		c->user = pw ? xstrdup(pw->pw_name) : xasprintf("%u", (unsigned) uid);
		c->uid = uid;
	}
	return c->user;
}

static const char *
group_name(owner_cache *c, gid_t gid)
{
	if (c->group == NULL || c->gid != gid)
	{
		struct group *gr = getgrgid(gid);

		free(c->group);
		c->group = gr ? xstrdup(gr->gr_name) : xasprintf("%u", (unsigned) gid);
		c->gid = gid;
	}
	return c->group;
}

/* Pages that failed verification, by file; attached to the entries when the final manifest is written. */
typedef struct bad_page
{
	uint64_t	file_seq;
	uint32_t	page;
} bad_page;

#define BAD_PAGES_KEPT 100000

typedef struct backup_totals
{
	uint64_t	db_size;
	uint64_t	repo_size;
	uint64_t	repo_new;
	uint64_t	lists;          /* block-list objects added */
	uint64_t	deltas;         /* of which delta lists */
	uint64_t	files;
	uint64_t	bad_pages;
	bad_page   *bad;            /* first BAD_PAGES_KEPT in file order */
	size_t		nbad;
} backup_totals;

/* Write a completed job to the provisional manifest. */
static int
emit_job(manifest_writer *mw, job *j, owner_cache *oc, backup_totals *t)
{
	pgdata_entry *e = &j->entry;
	int			rc;

	if (j->is_file_head)
	{
		manifest_entry me = {0};

		me.kind = e->kind;
		me.path = e->path;
		me.mode = e->st.st_mode & 07777;
		me.user = (char *) user_name(oc, e->st.st_uid);
		me.group = (char *) group_name(oc, e->st.st_gid);
		me.mtime = (int64_t) e->st.st_mtime;
		me.link_target = e->link_target;
		if (e->kind == MF_FILE)
		{
			me.size = (uint64_t) e->st.st_size;
			me.nblocks = j->file_nblocks;
			t->db_size += me.size;
			t->files++;
		}
		if ((rc = manifest_write_entry(mw, &me)) != 0)
			return rc;
	}
	for (size_t i = 0; e->kind == MF_FILE && i < j->nrefs; i++)
		if ((rc = manifest_write_ref(mw, &j->refs[i])) != 0)
			return rc;
	for (uint64_t i = 0; i < j->nbad && i < MANIFEST_MAX_BAD_PAGES && t->nbad < BAD_PAGES_KEPT; i++)
	{
		t->bad = xrealloc(t->bad, sizeof(bad_page) * (t->nbad + 1));
		t->bad[t->nbad].file_seq = j->file_seq;
		t->bad[t->nbad++].page = j->bad[i];
	}
	if (j->nbad > 0)
		log_warn("invalid page checksums found in file %s: %llu page(s), first at block %u%s",
				 e->full_path, (unsigned long long) j->nbad, j->bad[0],
				 j->taken ? " (found by the prior backup; the file is unchanged)" : "");
	t->repo_size += j->stored;
	t->repo_new += j->added;
	t->lists += j->lists;
	t->deltas += j->deltas;
	t->bad_pages += j->nbad;
	return 0;
}

/* Wait for the head job, emit it and free its slot. */
static int
emit_head(backup_run *run, manifest_writer *mw, owner_cache *oc, backup_totals *t)
{
	job		   *j = &run->ring[run->head % (uint64_t) run->cap];
	int			rc;

	pthread_mutex_lock(&run->lock);
	while (j->state != JOB_DONE)
		pthread_cond_wait(&run->cond, &run->lock);
	pthread_mutex_unlock(&run->lock);
	if (j->rc)
	{
		rc = error_set(j->rc, "%s", j->err);
		return rc;
	}
	rc = emit_job(mw, j, oc, t);
	run->ring_blocks -= job_read_blocks(j);
	pthread_mutex_lock(&run->lock);
	job_clear(j);
	run->head++;
	pthread_cond_broadcast(&run->cond);
	pthread_mutex_unlock(&run->lock);
	return rc;
}

/* Queue one job, emitting finished head jobs while the ring is full. */
static int
enqueue(backup_run *run, job *src, manifest_writer *mw, owner_cache *oc, backup_totals *t)
{
	int			rc;

	while (run->tail - run->head == (uint64_t) run->cap ||
		   (run->tail > run->head && run->ring_blocks + job_read_blocks(src) > run->max_blocks))
		if ((rc = emit_head(run, mw, oc, t)) != 0)
			return rc;
	run->ring_blocks += job_read_blocks(src);
	pthread_mutex_lock(&run->lock);
	run->ring[run->tail % (uint64_t) run->cap] = *src;
	run->tail++;
	pthread_cond_broadcast(&run->cond);
	pthread_mutex_unlock(&run->lock);
	return 0;
}

/*
 * The backup an incr or diff is compared with.  Its manifest is read as a
 * stream beside the walk: one entry (and, for a file taken over, its block
 * lines) at a time.
 */
typedef struct prior_backup
{
	char	   *label;
	char	   *what;
	manifest_header h;
	io_reader  *rd;
	manifest_reader *mr;
	manifest_entry e;           /* the current entry, when have */
	bool		have;
	bool		done;
} prior_backup;

static void
prior_free(prior_backup *p)
{
	if (p == NULL)
		return;
	manifest_entry_free(&p->e);
	manifest_header_free(&p->h);
	manifest_reader_free(p->mr);
	io_reader_free(p->rd);
	free(p->label);
	free(p->what);
	free(p);
}

/*
 * Open the manifest of backup label: checked whole first (syntax and end
 * hash), since its block lines are copied into the new manifest before the
 * stream would reach its end line; then opened again and its header read.
 */
static int
prior_open(repo *r, const char *label, prior_backup **out)
{
	prior_backup *p = xcalloc(1, sizeof(*p));
	io_reader  *rd = NULL;
	int			rc;

	p->label = xstrdup(label);
	p->what = xasprintf("manifest of backup %s", label);
	if ((rc = repo_backup_open(r, label, &rd)) == 0)
	{
		rc = manifest_verify_stream(rd, p->what);
		io_reader_free(rd);
	}
	if (rc == 0 && (rc = repo_backup_open(r, label, &p->rd)) == 0)
	{
		p->mr = manifest_reader_new(p->rd, p->what);
		rc = manifest_read_header(p->mr, &p->h);
	}
	if (rc)
	{
		prior_free(p);
		return rc;
	}
	*out = p;
	return 0;
}

/* Advance to the prior's entry for path: *found when it has one (in p->e). */
static int
prior_seek(prior_backup *p, const char *path, bool *found)
{
	int			rc;

	*found = false;
	while (!p->done && (!p->have || manifest_path_cmp(p->e.path, path) < 0))
	{
		manifest_entry_free(&p->e);
		p->have = false;
		if ((rc = manifest_read_entry(p->mr, &p->e, &p->done)) != 0)
			return rc;
		p->have = !p->done;
	}
	*found = p->have && manifest_path_cmp(p->e.path, path) == 0;
	return 0;
}

/*
 * Whether a file may keep the prior's copy without being read: same size and
 * mtime as the prior's entry, and no write since the prior read it can have
 * left both unchanged.  mtime has whole seconds, so a file written during
 * the second a backup started may have been written again after it was read
 * with the same mtime: the prior's mtime must be before the prior's start,
 * and the file's before this backup's (which also keeps out mtimes in the
 * future).
 */
static bool
can_take_over(const backup_run *run, const pgdata_entry *e, const manifest_entry *pe)
{
	int64_t		mtime = (int64_t) e->st.st_mtime;

	return pe->kind == MF_FILE && pe->size == (uint64_t) e->st.st_size && pe->mtime == mtime &&
		mtime < run->start_time && pe->mtime < run->prior->h.start_time;
}

/*
 * The prior's block lists of a file that is read, the candidate bases of its
 * delta lists: (*bases)[g], for each of the file's ceil(nblocks / 256)
 * groups, is the prior's `g` line of blocks 256g.. when one starts there,
 * else of kind MREF_ZERO (no candidate).  Holds this one file's groups only
 * (512 for a 1 GiB segment; a file of more than twice that gets no bases);
 * the prior's lines past nblocks are not read.
 */
static int
prior_bases(prior_backup *p, uint64_t nblocks, manifest_ref **bases)
{
	size_t		ngroups = (size_t) ((nblocks + MANIFEST_GROUP_BLOCKS - 1) / MANIFEST_GROUP_BLOCKS);
	uint64_t	pos = 0;
	manifest_ref ref;
	bool		end = false;
	int			rc = 0;

	if (ngroups == 0 || ngroups > 1024)
		return 0;
	*bases = xcalloc(ngroups, sizeof(manifest_ref));
	for (size_t g = 0; g < ngroups; g++)
		(*bases)[g].kind = MREF_ZERO;
	while (pos < nblocks && (rc = manifest_read_ref(p->mr, &ref, &end)) == 0 && !end)
	{
		if (ref.kind == MREF_GROUP && pos % MANIFEST_GROUP_BLOCKS == 0)
			(*bases)[pos / MANIFEST_GROUP_BLOCKS] = ref;
		pos += ref.count;
	}
	if (rc != 0)
	{
		free(*bases);
		*bases = NULL;
	}
	return rc;
}

/*
 * Take a file's block lines over from the prior backup into job j, when
 * can_take_over allows it and every list and block it names is still in the
 * repository; *taken says whether it was.  Holds this one file's lines only
 * (a 1 GiB file has at most 512 when written by pgkeep; a file with more than
 * twice that is read instead).  A file the prior has but that must be read
 * gets the prior's lists as *bases (prior_bases).
 */
static int
take_over(backup_run *run, const pgdata_entry *e, uint64_t nblocks, job *j, bool *taken, manifest_ref **bases)
{
	prior_backup *p = run->prior;
	size_t		max = (size_t) ((nblocks + MANIFEST_GROUP_BLOCKS - 1) / MANIFEST_GROUP_BLOCKS) * 2 + 1;
	size_t		cap = 0;
	bool		found, end;
	int			rc;

	*taken = false;
	if ((rc = prior_seek(p, e->path, &found)) != 0 || !found)
		return rc;
	if (!can_take_over(run, e, &p->e))
		return p->e.kind == MF_FILE ? prior_bases(p, nblocks, bases) : 0;
	for (;;)
	{
		manifest_ref ref;
		bool		exists = true;
		uint32_t	stored_len = 0;

		if ((rc = manifest_read_ref(p->mr, &ref, &end)) != 0)
			goto fail;
		if (end)
			break;
		if (j->nrefs == max)
		{
			log_detail("file \"%s\" has more than %zu block lines in backup %s: reading it", e->path, max, p->label);
			goto fail;
		}
		if (ref.kind != MREF_ZERO && !manifest_is_zero_id(ref.id))
		{
			if ((rc = repo_block_exists(run->r, ref.id, &exists, &stored_len)) != 0)
				goto fail;
			if (!exists)
			{
				char		hex[HASH_HEX_LEN + 1];

				hash_to_hex(ref.id, hex);
				log_detail("%s %s of file \"%s\" in backup %s is not in the repository: reading the file",
						   ref.kind == MREF_GROUP ? "block list" : "block", hex, e->path, p->label);
				goto fail;
			}
		}
		if (j->nrefs == cap)
		{
			cap = cap ? 2 * cap : 16;
			j->refs = xrealloc(j->refs, sizeof(manifest_ref) * cap);
		}
		j->refs[j->nrefs++] = ref;
		j->stored += stored_len;
	}
	/* Pages the prior found bad are still bad: the file is unchanged. */
	j->nbad = p->e.nbad;
	j->bad = p->e.bad;
	p->e.bad = NULL;
	j->taken = true;
	*taken = true;
	return 0;
fail:
	free(j->refs);
	j->refs = NULL;
	j->nrefs = 0;
	j->stored = 0;
	return rc;
}

/* Walk the data directory and queue its entries, files cut into chunks. */
static int
produce(backup_run *run, const char *pgpath, const char *tblspc_dir, manifest_writer *mw, owner_cache *oc,
		backup_totals *t)
{
	pgdata_walker *w;
	pgdata_entry *e;
	uint64_t	seq = 0;
	bool		done;
	int			rc;

	if ((rc = pgdata_walk_open(pgpath, tblspc_dir, &w)) != 0)
		return rc;
	while ((rc = pgdata_walk_next(w, &e, &done)) == 0 && !done)
	{
		uint64_t	size = e->kind == MF_FILE ? (uint64_t) e->st.st_size : 0;
		uint64_t	nblocks = (size + run->block_size - 1) / run->block_size;
		uint64_t	first = 0;
		manifest_ref *bases = NULL;

		if (e->kind == MF_FILE && run->prior)
		{
			job			j = {0};
			bool		taken;

			if ((rc = take_over(run, e, nblocks, &j, &taken, &bases)) != 0)
				goto out;
			if (taken)
			{
				entry_copy(&j.entry, e);
				j.is_file_head = true;
				j.file_seq = seq++;
				j.file_nblocks = nblocks;
				run->files_taken++;
				if ((rc = enqueue(run, &j, mw, oc, t)) != 0)
				{
					job_clear(&j);
					goto out;
				}
				if (run->failed)
					break;
				continue;
			}
		}
		if (e->kind == MF_FILE)
		{
			run->files_read++;
			run->bytes_read += size;
		}
		do
		{
			job			j = {0};

			entry_copy(&j.entry, e);
			j.is_file_head = first == 0;
			j.file_seq = seq;
			j.file_nblocks = nblocks;
			j.first_block = first;
			j.nblocks = nblocks - first < CHUNK_BLOCKS ? nblocks - first : CHUNK_BLOCKS;
			if (bases)
			{
				size_t		ng = (size_t) ((j.nblocks + MANIFEST_GROUP_BLOCKS - 1) / MANIFEST_GROUP_BLOCKS);

				j.bases = xmalloc(ng * sizeof(manifest_ref));
				memcpy(j.bases, bases + first / MANIFEST_GROUP_BLOCKS, ng * sizeof(manifest_ref));
			}
			first += j.nblocks;
			if ((rc = enqueue(run, &j, mw, oc, t)) != 0)
			{
				job_clear(&j);
				free(bases);
				goto out;
			}
		} while (first < nblocks);
		free(bases);
		/* Files are numbered as write_final counts them, to attach their bad pages. */
		if (e->kind == MF_FILE)
			seq++;
		if (run->failed)
			break;
	}
out:
	pgdata_walk_close(w);
	return rc;
}

/* What dict_ensure samples: blocks, and the relation (in walk order) each came from. */
typedef struct dict_samples
{
	uint8_t    *buf;            /* DICT_SAMPLES blocks */
	size_t	   *sizes;
	uint32_t   *rel;
	unsigned	n;
} dict_samples;

/* Whether path is another segment of the relation whose first segment is prev ("16396.1" of "16396"). */
static bool
same_relation(const char *prev, const char *path)
{
	size_t		n = strlen(prev);

	return strncmp(prev, path, n) == 0 && path[n] == '.';
}

/*
 * Read up to DICT_SAMPLES non-zero blocks spread evenly over the relation
 * files: every stride-th block in walk order.
 */
static int
dict_sample(backup_run *run, const char *pgpath, const char *tblspc_dir, uint64_t stride, dict_samples *ds)
{
	uint32_t	bs = run->block_size;
	pgdata_walker *w;
	pgdata_entry *e;
	bool		done = false;
	uint64_t	k = 0;
	uint32_t	rel = 0;
	char	   *first_seg = xstrdup("");
	int			rc;

	ds->n = 0;
	if ((rc = pgdata_walk_open(pgpath, tblspc_dir, &w)) != 0)
		return rc;
	while (ds->n < DICT_SAMPLES && (rc = pgdata_walk_next(w, &e, &done)) == 0 && !done)
	{
		uint64_t	nblocks = e->kind == MF_FILE && e->relation ? (uint64_t) e->st.st_size / bs : 0;
		uint64_t	first = (stride - k % stride) % stride;
		int			fd;

		if (nblocks == 0)
			continue;
		if (!same_relation(first_seg, e->path))
		{
			rel++;
			free(first_seg);
			first_seg = xstrdup(e->path);
		}
		k += nblocks;
		if (first >= nblocks || (fd = open(e->full_path, O_RDONLY | O_CLOEXEC)) < 0)
			continue;
		for (uint64_t b = first; b < nblocks && ds->n < DICT_SAMPLES; b += stride)
		{
			uint8_t    *p = ds->buf + (size_t) ds->n * bs;

			/* A sample is only a sample: a block that cannot be read now is skipped. */
			if (pread(fd, p, bs, (off_t) (b * bs)) == (ssize_t) bs && !all_zero(p, bs))
			{
				ds->sizes[ds->n] = bs;
				ds->rel[ds->n++] = rel;
			}
		}
		close(fd);
	}
	free(first_seg);
	pgdata_walk_close(w);
	return rc;
}

/*
 * The dictionary's content: DICT_CONTENT sampled blocks from as many
 * relations as possible, the most sampled (largest) first, each the middle
 * one of its relation's samples; then a second round, and so on.
 */
static size_t
dict_content(const dict_samples *ds, uint32_t bs, uint8_t *content)
{
	unsigned   *first = xcalloc(ds->n + 1, sizeof(unsigned));
	unsigned   *count = xcalloc(ds->n + 1, sizeof(unsigned));
	bool	   *taken = xcalloc(ds->n + 1, sizeof(bool));
	unsigned	nrel = 0, got = 0;

	/* Samples come in walk order, so each relation's samples are contiguous. */
	for (unsigned i = 0; i < ds->n; i++)
	{
		if (i == 0 || ds->rel[i] != ds->rel[i - 1])
			first[nrel++] = i;
		count[nrel - 1]++;
	}
	for (unsigned round = 0; got < DICT_CONTENT && got < ds->n; round++)
	{
		/* Each round picks, in each relation (largest first), the untaken sample nearest its middle. */
		for (unsigned pass = 0; pass < nrel && got < DICT_CONTENT; pass++)
		{
			unsigned	best = nrel;

			for (unsigned r = 0; r < nrel; r++)
				if (!taken[r] && count[r] > round && (best == nrel || count[r] > count[best]))
					best = r;
			if (best == nrel)
				break;
			taken[best] = true;

			unsigned	pick = first[best] + (count[best] * (2 * round + 1) / 2) % count[best];

			memcpy(content + (size_t) got++ * bs, ds->buf + (size_t) pick * bs, bs);
		}
		memset(taken, 0, sizeof(bool) * nrel);
	}
	free(first);
	free(count);
	free(taken);
	return (size_t) got * bs;
}

/*
 * The stanza's compression dictionary, made by its first zst backup from
 * samples of the data directory; see repo.h.  A cluster with too little data
 * to sample gets none yet (its blocks compress without one, and a later
 * backup makes it); so does one whose samples make none.
 */
static int
dict_ensure(backup_run *run, const char *pgpath, const char *tblspc_dir)
{
	uint32_t	bs = run->block_size;
	pgdata_walker *w;
	pgdata_entry *e;
	bool		done = false;
	uint64_t	total = 0;
	dict_samples ds = {0};
	uint8_t    *content = NULL, *dict = NULL;
	size_t		content_len, cap, len = 0;
	void	   *have = NULL;
	double		t0;
	int			rc = repo_dict_get(run->r, &have, &len);

	/*
	 * The stanza has one: put it again, which makes the one in place durable
	 * (file and directory) in case the backup that made it died before its
	 * directory's fsync; this backup's blocks will name it.
	 */
	if (rc == 0)
		rc = repo_dict_put(run->r, have, len);
	free(have);
	if (rc != ERR_NOT_FOUND)
		return rc;
	error_clear();
	t0 = progress_now();
	if ((rc = pgdata_walk_open(pgpath, tblspc_dir, &w)) != 0)
		return rc;
	while ((rc = pgdata_walk_next(w, &e, &done)) == 0 && !done)
		if (e->kind == MF_FILE && e->relation)
			total += (uint64_t) e->st.st_size / bs;
	pgdata_walk_close(w);
	if (rc != 0)
		return rc;
	ds.buf = xmalloc((size_t) DICT_SAMPLES * bs);
	ds.sizes = xmalloc(sizeof(size_t) * DICT_SAMPLES);
	ds.rel = xmalloc(sizeof(uint32_t) * DICT_SAMPLES);
	if (total >= DICT_MIN_SAMPLES &&
		(rc = dict_sample(run, pgpath, tblspc_dir, total > DICT_SAMPLES ? total / DICT_SAMPLES : 1, &ds)) != 0)
		goto out;
	if (ds.n < DICT_MIN_SAMPLES)
	{
		log_detail("no compression dictionary yet: %u non-zero relation blocks to sample, %d needed", ds.n, DICT_MIN_SAMPLES);
		goto out;
	}
	content = xmalloc((size_t) DICT_CONTENT * bs);
	content_len = dict_content(&ds, bs, content);
	cap = content_len + 16384;  /* the header and entropy tables take a few KiB */
	dict = xmalloc(cap);
	if ((rc = block_dict_build(content, content_len, ds.buf, ds.sizes, ds.n, run->clevel, dict, cap, &len)) != 0)
	{
		log_detail("no compression dictionary yet: %s", error_msg());
		error_clear();
		rc = 0;
		goto out;
	}
	if ((rc = repo_dict_put(run->r, dict, len)) != 0)
		goto out;
	log_info("made the stanza's compression dictionary (%zu bytes) from %u sampled blocks in %.2f s", len, ds.n,
			 progress_now() - t0);
out:
	free(ds.buf);
	free(ds.sizes);
	free(ds.rel);
	free(content);
	free(dict);
	return rc;
}

/* Run the workers over the data directory, writing the provisional manifest. */
static int
copy_files(backup_run *run, const char *pgpath, const char *tblspc_dir, io_writer *out, backup_totals *t)
{
	int			nworkers = (int) opt_int(OPT_PROCESS_MAX);
	pthread_t  *threads = xcalloc((size_t) nworkers, sizeof(pthread_t));
	worker_ctx *ctx = xcalloc((size_t) nworkers, sizeof(worker_ctx));
	manifest_writer *mw = manifest_writer_new(out);
	manifest_header ph = {0};
	owner_cache oc = {0};
	int			started = 0, rc;

	/* The provisional manifest's header only satisfies the format; the final one replaces it. */
	ph.label = (char *) "provisional";
	ph.type = (char *) "full";
	ph.block_size = run->block_size;
	ph.compress = (char *) compress_type_name(run->ctype);
	ph.wal_start = ph.wal_stop = (char *) "000000010000000000000001";
	ph.backup_label = (char *) "";
	if ((rc = manifest_write_header(mw, &ph)) != 0)
		goto out;
	/*
	 * Room for each worker to take a bundle while the main thread waits for
	 * the oldest job; the ids of finished chunks waiting for it are bounded
	 * by blocks, as many as 4 chunks per worker and 4 more.
	 */
	run->cap = (BUNDLE_MAX + 4) * nworkers + 4;
	run->max_blocks = (uint64_t) (4 * nworkers + 4) * CHUNK_BLOCKS;
	run->ring = xcalloc((size_t) run->cap, sizeof(job));
	for (int i = 0; i < nworkers; i++)
	{
		ctx[i].run = run;
		ctx[i].codec = block_codec_new(run->ctype, run->clevel);
		ctx[i].ccap = block_codec_bound(ctx[i].codec, run->block_size);
		ctx[i].cbuf = xmalloc(ctx[i].ccap);
		for (int k = 0; k < 2; k++)
			ctx[i].batch[k].buf = xmalloc((size_t) run->block_size * READ_BLOCKS);
		if ((rc = repo_open(run->stanza, &ctx[i].r)) != 0)
			goto stop;
		if (run->ctype == COMPRESS_ZST)
		{
			const block_dict *d;

			if ((rc = repo_block_dict(ctx[i].r, run->clevel, &d)) != 0)
				goto stop;
			block_codec_use_dict(ctx[i].codec, d);
		}
		if (pthread_create(&threads[i], NULL, worker_main, &ctx[i]) != 0)
		{
			rc = error_set(ERR_INTERNAL, "could not start worker thread: %s", strerror(errno));
			goto stop;
		}
		started++;
	}
	rc = produce(run, pgpath, tblspc_dir, mw, &oc, t);
	while (rc == 0 && run->head < run->tail)
		rc = emit_head(run, mw, &oc, t);
	if (rc == 0)
		rc = manifest_write_end(mw);
stop:
	pthread_mutex_lock(&run->lock);
	run->stop = true;
	pthread_cond_broadcast(&run->cond);
	pthread_mutex_unlock(&run->lock);
	for (int i = 0; i < started; i++)
		pthread_join(threads[i], NULL);
	if (rc == 0 && run->failed)
		rc = error_set(ERR_FILE, "a worker failed to make its blocks durable; see the log");
	for (int i = 0; i < nworkers; i++)
	{
		repo_close(ctx[i].r);
		block_codec_free(ctx[i].codec);
		free(ctx[i].cbuf);
		for (int k = 0; k < 2; k++)
			free(ctx[i].batch[k].buf);
	}
	for (uint64_t i = run->head; run->ring && i < run->tail; i++)
		job_clear(&run->ring[i % (uint64_t) run->cap]);
out:
	free(run->ring);
	run->ring = NULL;
	free(threads);
	free(ctx);
	free(oc.user);
	free(oc.group);
	manifest_writer_free(mw);
	return rc;
}

/* What pg_backup_start and pg_backup_stop returned. */
typedef struct backup_pg
{
	uint64_t	start_lsn;
	uint64_t	stop_lsn;
	char	   *wal_start;
	char	   *wal_stop;
	uint32_t	timeline;
	char	   *label_file;
	char	   *tablespace_map;
	int			ntblspc;
	manifest_tablespace *tblspc;
} backup_pg;

static void
backup_pg_free(backup_pg *b)
{
	free(b->wal_start);
	free(b->wal_stop);
	free(b->label_file);
	free(b->tablespace_map);
	for (int i = 0; i < b->ntblspc; i++)
	{
		free(b->tblspc[i].name);
		free(b->tblspc[i].location);
	}
	free(b->tblspc);
}

static int
pg_start(pg_conn *c, const char *label, backup_pg *b)
{
	const char *params[2] = {label, opt_bool(OPT_START_FAST) ? "true" : "false"};
	const char *sql = pg_server_version(c) >= 150000
		? "select lsn::text, pg_catalog.pg_walfile_name(lsn) from pg_catalog.pg_backup_start($1, $2::boolean) as lsn"
		: "select lsn::text, pg_catalog.pg_walfile_name(lsn) from pg_catalog.pg_start_backup($1, $2::boolean, false) as lsn";
	char	  **v;
	int			rows, cols, rc;

	if ((rc = pg_query(c, sql, 2, params, &v, &rows, &cols)) != 0)
		return error_wrap(rc, "could not start the backup");
	if (rows != 1 || cols != 2 || !wal_lsn_parse(v[0], &b->start_lsn) || v[1] == NULL || strlen(v[1]) != 24)
		rc = error_set(ERR_PG, "unexpected result from the backup start function");
	else
	{
		b->wal_start = xstrdup(v[1]);
		uint64_t	segno;

		if (!wal_segname_parse(v[1], &b->timeline, &segno, 0x1000000))
			rc = error_set(ERR_PG, "invalid WAL segment name \"%s\" from the server", v[1]);
	}
	pg_result_free(v, rows, cols);
	return rc;
}

static int
pg_tablespaces(pg_conn *c, backup_pg *b)
{
	char	  **v;
	int			rows, cols, rc;

	rc = pg_query(c, "select oid::text, spcname, pg_catalog.pg_tablespace_location(oid) from pg_catalog.pg_tablespace "
				  "where spcname not in ('pg_default', 'pg_global') order by oid", 0, NULL, &v, &rows, &cols);
	if (rc)
		return rc;
	b->tblspc = xcalloc((size_t) rows + 1, sizeof(manifest_tablespace));
	for (int i = 0; i < rows; i++)
	{
		b->tblspc[i].oid = (uint32_t) strtoul(v[i * 3], NULL, 10);
		b->tblspc[i].name = xstrdup(v[i * 3 + 1]);
		b->tblspc[i].location = xstrdup(v[i * 3 + 2] ? v[i * 3 + 2] : "");
	}
	b->ntblspc = rows;
	pg_result_free(v, rows, cols);
	return 0;
}

static int
pg_stop(pg_conn *c, backup_pg *b)
{
	const char *sql = pg_server_version(c) >= 150000
		? "select lsn::text, pg_catalog.pg_walfile_name(lsn), labelfile, spcmapfile from pg_catalog.pg_backup_stop(false)"
		: "select lsn::text, pg_catalog.pg_walfile_name(lsn), labelfile, spcmapfile from pg_catalog.pg_stop_backup(false, false)";
	char	  **v;
	int			rows, cols, rc;

	if ((rc = pg_query(c, sql, 0, NULL, &v, &rows, &cols)) != 0)
		return error_wrap(rc, "could not stop the backup");
	if (rows != 1 || cols != 4 || !wal_lsn_parse(v[0], &b->stop_lsn) || v[1] == NULL || v[2] == NULL)
		rc = error_set(ERR_PG, "unexpected result from the backup stop function");
	else
	{
		b->wal_stop = xstrdup(v[1]);
		b->label_file = xstrdup(v[2]);
		b->tablespace_map = v[3] && v[3][0] ? xstrdup(v[3]) : NULL;
	}
	pg_result_free(v, rows, cols);
	return rc;
}

/* Every WAL segment from the backup's start to its stop must be in the repository. */
static int
wait_for_wal(repo *r, const stanza_info *st, const backup_pg *b)
{
	uint32_t	tli;
	uint64_t	first, last;
	char		name[WAL_SEG_NAME_LEN + 1];
	int			rc;

	if (!wal_segname_parse(b->wal_start, &tli, &first, st->wal_segment_size) ||
		!wal_segname_parse(b->wal_stop, &tli, &last, st->wal_segment_size))
		return error_set(ERR_PG, "invalid WAL segment names %s and %s from the server", b->wal_start, b->wal_stop);
	log_info("waiting for WAL segments %s to %s to reach the repository", b->wal_start, b->wal_stop);
	for (uint64_t seg = first; seg <= last; seg++)
	{
		wal_segname(name, b->timeline, seg, st->wal_segment_size);
		if ((rc = repo_wal_wait(r, name, opt_int(OPT_ARCHIVE_TIMEOUT))) != 0)
			return rc;
	}
	return 0;
}

/* The time part of a label: YYYYMMDD-HHMMSS (first 15 characters of what this returns). */
static const char *
label_time(const char *label)
{
	return strlen(label) > 16 ? label + 17 : label;
}

/*
 * A label later than every existing one, from the current time:
 * YYYYMMDD-HHMMSSF for a full backup, PRIOR16_YYYYMMDD-HHMMSSD or ...I for a
 * diff or incr (PRIOR16: the first 16 characters of the prior's label, the
 * full backup the chain starts from).  Waits for the next second while the
 * time is not later than every label's.
 */
static int
make_label(repo *r, const char *type, const char *prior, char label[40], time_t *when)
{
	char	  **labels;
	const char *latest = NULL;
	char		ts[16];
	int			n, rc;

	if ((rc = repo_backup_list(r, &labels, &n)) != 0)
		return rc;
	for (int i = 0; i < n; i++)
		if (latest == NULL || strncmp(label_time(labels[i]), latest, 15) > 0)
			latest = label_time(labels[i]);
	for (;;)
	{
		struct tm	tm;

		*when = time(NULL);
		localtime_r(when, &tm);
		strftime(ts, sizeof(ts), "%Y%m%d-%H%M%S", &tm);
		if (latest == NULL || strncmp(ts, latest, 15) > 0)
			break;
		sleep(1);
	}
	if (strcmp(type, "full") == 0)
		snprintf(label, 40, "%sF", ts);
	else
		snprintf(label, 40, "%.16s_%s%c", prior, ts, strcmp(type, "diff") == 0 ? 'D' : 'I');
	repo_names_free(labels, n);
	return 0;
}

/*
 * The prior backup of an incr (the newest backup) or a diff (the newest full
 * one), opened; *out NULL when the backup is to be a full one instead (no
 * such backup, or one of another cluster or unreadable: said in the log).
 */
static int
find_prior(repo *r, const char *type, const stanza_info *st, prior_backup **out)
{
	char	  **labels;
	const char *best = NULL;
	int			n, rc;

	*out = NULL;
	if ((rc = repo_backup_list(r, &labels, &n)) != 0)
		return rc;
	for (int i = 0; i < n; i++)
	{
		if (strcmp(type, "diff") == 0 && strlen(labels[i]) != 16)
			continue;
		if (best == NULL || strncmp(label_time(labels[i]), label_time(best), 15) > 0)
			best = labels[i];
	}
	if (best == NULL)
		log_info("no prior backup exists: taking a full backup");
	else if ((rc = prior_open(r, best, out)) != 0)
	{
		if (rc == ERR_NOT_FOUND || rc == ERR_FORMAT || rc == ERR_CORRUPT)
		{
			log_warn("prior backup %s cannot be read (%s): taking a full backup", best, error_msg());
			error_clear();
			rc = 0;
		}
	}
	else if ((*out)->h.system_id != st->system_id || (*out)->h.block_size != st->block_size)
	{
		log_warn("prior backup %s is of another cluster (system identifier %llu, block size %u; the stanza has %llu, %u): "
				 "taking a full backup", best, (unsigned long long) (*out)->h.system_id, (*out)->h.block_size,
				 (unsigned long long) st->system_id, st->block_size);
		prior_free(*out);
		*out = NULL;
	}
	repo_names_free(labels, n);
	return rc;
}

/* Copy the provisional manifest into the final one, with the real header and the bad pages. */
static int
write_final(repo *r, const char *label, int tmpfd, const manifest_header *h, const backup_totals *t)
{
	io_reader  *in = io_file_reader_new(tmpfd, "provisional manifest");
	manifest_reader *mr = manifest_reader_new(in, "provisional manifest");
	manifest_header ph = {0};
	manifest_writer *mw = NULL;
	repo_put   *put = NULL;
	io_writer  *w = NULL, *borrowed = NULL;
	uint64_t	seq = 0;
	size_t		bi = 0;
	int			rc;

	if ((rc = manifest_read_header(mr, &ph)) != 0 || (rc = repo_backup_put_begin(r, label, &put, &w)) != 0)
		goto out;
	borrowed = io_borrow_writer_new(w);
	mw = manifest_writer_new(borrowed);
	if ((rc = manifest_write_header(mw, h)) != 0)
		goto out;
	for (;;)
	{
		manifest_entry e = {0};
		manifest_ref ref;
		bool		done, end;

		if ((rc = manifest_read_entry(mr, &e, &done)) != 0 || done)
			break;
		uint32_t   *bad = NULL;

		if (e.kind == MF_FILE)
		{
			while (bi < t->nbad && t->bad[bi].file_seq == seq)
			{
				bad = xrealloc(bad, sizeof(uint32_t) * (e.nbad + 1));
				bad[e.nbad++] = t->bad[bi++].page;
			}
			free(e.bad);
			e.bad = bad;
		}
		rc = manifest_write_entry(mw, &e);
		while (rc == 0 && e.kind == MF_FILE && (rc = manifest_read_ref(mr, &ref, &end)) == 0 && !end)
			rc = manifest_write_ref(mw, &ref);
		if (e.kind == MF_FILE)
			seq++;
		manifest_entry_free(&e);
		if (rc)
			break;
	}
	if (rc == 0 && (rc = manifest_write_end(mw)) == 0 && (rc = io_close(borrowed)) == 0)
	{
		rc = repo_backup_put_commit(put);
		put = NULL;
	}
out:
	if (mw)
		manifest_writer_free(mw);
	if (borrowed)
		io_free(borrowed);
	repo_backup_put_abort(put);
	manifest_header_free(&ph);
	manifest_reader_free(mr);
	io_reader_free(in);
	return rc;
}

/* The backup type asked for: full, diff or incr (the default, as in pgBackRest; with no prior backup it is a full). */
static int
check_type(const char **type)
{
	*type = opt_has(OPT_TYPE) ? opt_str(OPT_TYPE) : "incr";
	if (strcmp(*type, "full") == 0 || strcmp(*type, "diff") == 0 || strcmp(*type, "incr") == 0)
		return 0;
	return error_set(ERR_OPTION, "invalid backup type \"%s\": use full, diff or incr", *type);
}

/*
 * Whether files of an incr or diff must all be read although there is a
 * prior backup (said in the log): --delta; a timeline switch since the prior
 * (the cluster may have been restored to an earlier point, with the mtimes
 * of that backup's files, and then differ from a newer prior with the same
 * sizes and mtimes); page checksums verified now but not by the prior.
 */
static bool
must_read_all(const backup_run *run, const prior_backup *prior, uint32_t timeline)
{
	if (opt_bool(OPT_DELTA))
	{
		log_info("delta: every file is read, none taken over from backup %s", prior->label);
		return true;
	}
	if (prior->h.timeline != timeline)
	{
		log_warn("a timeline switch occurred since backup %s (timeline %u, now %u): every file is read, "
				 "as with --delta", prior->label, prior->h.timeline, timeline);
		return true;
	}
	if (run->checksum_page && !prior->h.checksum_page)
	{
		log_info("backup %s did not verify page checksums: every file is read", prior->label);
		return true;
	}
	return false;
}

static int
take_backup(repo *r, const stanza_info *st, const pg_control_info *pc, const char *pgpath, const char *type)
{
	backup_run	run = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
	backup_pg	b = {0};
	backup_totals t = {0};
	manifest_header h = {0};
	pg_conn    *c = NULL;
	prior_backup *prior = NULL;
	char		label[40], tblspc_dir[64], *status = NULL, *what = NULL;
	time_t		start, stop;
	FILE	   *tmp = NULL;
	io_writer  *tw = NULL;
	int			rc;

	if (strcmp(type, "full") != 0 && (rc = find_prior(r, type, st, &prior)) != 0)
		goto out;
	if (prior == NULL)
		type = "full";
	if ((rc = make_label(r, type, prior ? prior->label : NULL, label, &start)) != 0 || (rc = cluster_connect(&c)) != 0)
		goto out;
	if (prior)
		log_info("%s backup %s begins, prior backup %s: requesting %s checkpoint", type, label, prior->label,
				 opt_bool(OPT_START_FAST) ? "an immediate" : "a spread");
	else
		log_info("backup %s begins: requesting %s checkpoint", label, opt_bool(OPT_START_FAST) ? "an immediate" : "a spread");
	if ((rc = pg_start(c, label, &b)) != 0 || (rc = pg_tablespaces(c, &b)) != 0)
		goto out;
	log_info("backup start LSN %X/%X, WAL segment %s", (unsigned) (b.start_lsn >> 32), (unsigned) b.start_lsn, b.wal_start);

	run.stanza = repo_stanza(r);
	run.block_size = st->block_size;
	run.start_lsn = b.start_lsn;
	run.checksum_page = opt_has(OPT_CHECKSUM_PAGE) ? opt_bool(OPT_CHECKSUM_PAGE) : pc->data_checksum_version != 0;
	if (run.checksum_page && (pc->data_checksum_version == 0 || pc->block_size != st->block_size))
	{
		log_warn("page checksums cannot be verified for this cluster; checksum-page is off");
		run.checksum_page = false;
	}
	repo_compress_settings(&run.ctype, &run.clevel);
	run.r = r;
	run.start_time = (int64_t) start;
	if (prior && !must_read_all(&run, prior, b.timeline))
		run.prior = prior;
	snprintf(tblspc_dir, sizeof(tblspc_dir), "PG_%u_%u", pc->pg_version / 10000, pc->catalog_version);
	status = xasprintf("%s/%s-backup.status", opt_str(OPT_LOCK_PATH), repo_stanza(r));
	what = xasprintf("backup %s", label);
	run.prog = progress_start(what, 0, status);

	if ((tmp = tmpfile()) == NULL)
	{
		rc = error_set(ERR_FILE, "could not create a temporary file: %s", strerror(errno));
		goto out;
	}
	if (run.ctype == COMPRESS_ZST && (rc = dict_ensure(&run, pgpath, tblspc_dir)) != 0)
		goto out;
	tw = io_file_writer_new(fileno(tmp), "provisional manifest");
	if ((rc = copy_files(&run, pgpath, tblspc_dir, tw, &t)) != 0 || (rc = io_close(tw)) != 0)
		goto out;
	if ((rc = pg_stop(c, &b)) != 0)
		goto out;
	stop = time(NULL);
	log_info("backup stop LSN %X/%X, WAL segment %s", (unsigned) (b.stop_lsn >> 32), (unsigned) b.stop_lsn, b.wal_stop);
	if (opt_bool(OPT_ARCHIVE_CHECK) && (rc = wait_for_wal(r, st, &b)) != 0)
		goto out;

	h.label = label;
	h.type = (char *) type;
	h.prior = prior ? prior->label : NULL;
	h.start_time = (int64_t) start;
	h.stop_time = (int64_t) stop;
	h.start_lsn = b.start_lsn;
	h.stop_lsn = b.stop_lsn;
	h.timeline = b.timeline;
	h.wal_start = b.wal_start;
	h.wal_stop = b.wal_stop;
	h.system_id = st->system_id;
	h.pg_version = pc->pg_version;
	h.block_size = st->block_size;
	h.compress = (char *) compress_type_name(run.ctype);
	h.compress_level = run.clevel;
	h.db_size = t.db_size;
	h.repo_size = t.repo_size;
	h.repo_new = t.repo_new;
	h.file_count = t.files;
	h.checksum_errors = t.bad_pages;
	h.checksum_page = run.checksum_page;
	h.backup_label = b.label_file;
	h.tablespace_map = b.tablespace_map;
	h.ntablespaces = b.ntblspc;
	h.tablespaces = b.tblspc;
	if (lseek(fileno(tmp), 0, SEEK_SET) != 0)
	{
		rc = error_set(ERR_FILE, "could not rewind the provisional manifest: %s", strerror(errno));
		goto out;
	}
	if ((rc = write_final(r, label, fileno(tmp), &h, &t)) != 0)
		goto out;
	log_info("backup %s complete: %llu files, %.1f MiB, %.1f MiB new in the repository (%.1f MiB referenced)%s",
			 label, (unsigned long long) t.files, (double) t.db_size / 1048576.0, (double) t.repo_new / 1048576.0,
			 (double) t.repo_size / 1048576.0, t.bad_pages ? "; page checksum errors were found" : "");
	if (prior)
		log_info("backup %s read %llu files (%.1f MiB) and took %llu unchanged files over from backup %s; "
				 "%llu new block lists, %llu of them deltas", label,
				 (unsigned long long) run.files_read, (double) run.bytes_read / 1048576.0,
				 (unsigned long long) run.files_taken, prior->label, (unsigned long long) t.lists,
				 (unsigned long long) t.deltas);
	else
		log_info("backup %s read %llu files (%.1f MiB)", label, (unsigned long long) run.files_read,
				 (double) run.bytes_read / 1048576.0);
	if (t.bad_pages)
		log_warn("backup %s has %llu page(s) with invalid checksums; see info", label, (unsigned long long) t.bad_pages);
	printf("%s\n", label);
out:
	progress_finish(run.prog);
	if (tw)
		io_free(tw);
	if (tmp)
		fclose(tmp);
	pg_disconnect(c);
	backup_pg_free(&b);
	prior_free(prior);
	free(t.bad);
	free(status);
	free(what);
	return rc;
}

/*
 * expire-auto.  The backup is committed whatever happens here: a failing
 * expire is a warning and the backup still exits 0, so that a scheduler does
 * not take a good backup for a failed one (and retry it); the next expire,
 * automatic or not, does the work again.
 */
static void
expire_after_backup(const char *stanza)
{
	int			rc;

	log_info("expire-auto: expiring stanza %s", stanza);
	if ((rc = expire_run(stanza, false, NULL, false)) != 0)
		log_warn("the backup succeeded, but expire failed: [%s] %s; run \"pgkeep --stanza=%s expire\" once the cause is fixed",
				 error_name(rc), error_msg(), stanza);
	error_clear();
}

int
cmd_backup(void)
{
	const char *stanza = opt_str(OPT_STANZA);
	const char *pgpath;
	pg_control_info pc;
	stanza_info st;
	repo	   *r = NULL;
	char	   *lock_path = NULL;
	const char *type;
	int			lock_fd = -1, rc;

	if (stanza == NULL)
		return error_set(ERR_OPTION, "backup requires option stanza");
	if ((rc = check_type(&type)) != 0 || (rc = cluster_path(&pgpath)) != 0)
		return rc;
	if ((rc = repo_open(stanza, &r)) != 0)
		return rc;
	if ((rc = repo_stanza_get(r, &st)) != 0 || (rc = pg_control_read(pgpath, &pc)) != 0 ||
		(rc = stanza_check_cluster(&st, &pc)) != 0)
		goto out;
	if ((rc = fio_mkdir_p(opt_str(OPT_LOCK_PATH), 0770)) != 0)
		goto out;
	lock_path = xasprintf("%s/%s-backup.lock", opt_str(OPT_LOCK_PATH), stanza);
	if ((rc = fio_lock(lock_path, false, &lock_fd)) != 0)
	{
		rc = error_set(ERR_LOCK, "another backup of stanza %s is running (lock file \"%s\")", stanza, lock_path);
		goto out;
	}
	/* Before the prior manifest is read: its blocks must outlive this backup's commit. */
	if ((rc = repo_blocks_hold(r)) != 0)
		goto out;
	rc = take_backup(r, &st, &pc, pgpath, type);
out:
	if (lock_fd >= 0)
		fio_unlock(lock_fd);
	free(lock_path);
	/* Closing the handle ends its lease on the block store, so that expire's collection can run. */
	repo_close(r);
	if (rc == 0 && opt_bool(OPT_EXPIRE_AUTO))
		expire_after_backup(stanza);
	return rc;
}
