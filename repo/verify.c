/*
 * verify.c: the verify command (see verify.h and doc/verify.md).
 *
 * Three passes over the repository, every problem counted and reported, none
 * stopping the others:
 *
 *  1. the header of each selected backup's manifest, for the WAL it needs;
 *  2. the WAL archive, in name order: each file is queued to the workers,
 *     which decompress it and compare its SHA-256 with the one in its name;
 *     each segment advances the continuity check of the backups of its
 *     timeline (a backup needs every segment from its wal-start to the newest
 *     archived one of its timeline, and at least to its wal-stop);
 *  3. each backup in turn: the whole manifest is checked
 *     (manifest_verify_stream), then read again; the main thread resolves
 *     the block lists (blocklist_resolve) and hands the block ids, in jobs of
 *     one file's blocks, to process-max worker threads that read, decompress
 *     and hash each block.  The backup's report is printed once its jobs are
 *     done.  From a repository server the lists come many at a time on a
 *     connection of their own (blocklist_reader_follow) and each worker
 *     prefetches the blocks it will read (blocks_check_ahead).
 *
 * With --fast the workers only ask the store whether each block is there
 * (repo_block_check: index entry, pack file long enough) and the WAL files
 * are only listed, not read; manifests and block lists are still read and
 * checked in full, since the block ids come from them.
 *
 * Memory is bounded: jobs are of at most JOB_BLOCKS blocks and the queue of a
 * few jobs per worker; at most REPORT_MAX messages are kept per backup (the
 * rest only counted); ids already verified are remembered in a fixed-size
 * set-associative cache (CACHE_SETS * CACHE_WAYS entries, 5 MiB) so that a
 * block shared by many files and backups is usually read once.
 */
#include "verify.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blocklist.h"
#include "manifest.h"
#include "repo.h"
#include "../src/error.h"
#include "../src/log.h"
#include "../src/mem.h"
#include "../src/option.h"
#include "../src/pgformat.h"

/* Blocks per job (of one file). */
#define JOB_BLOCKS 512
/* Blocks a worker reads from a repository server per prefetch, one window ahead (two within REPO_PREFETCH_MAX). */
#define VERIFY_WINDOW (REPO_PREFETCH_MAX / 2)
/* Jobs waiting in the queue, per worker. */
#define QUEUE_PER_WORKER 4
/* Messages kept per backup and for the WAL archive; further problems are only counted. */
#define REPORT_MAX 100
/* Missing segments named in a continuity message. */
#define MISSING_SHOWN 5
/* Largest raw block the store holds (doc/repository-format.md, "Limits"). */
#define BLOCK_RAW_MAX (1024 * 1024)

/* The cache of verified ids: 65536 sets of 4 entries of 20 bytes. */
#define CACHE_SETS 65536
#define CACHE_WAYS 4
#define CACHE_KEY 16
#define CACHE_STRIPES 64

typedef struct cache_entry
{
	uint8_t		key[CACHE_KEY];     /* first bytes of the id */
	uint32_t	raw_len;            /* 0: empty */
} cache_entry;

typedef struct id_cache
{
	cache_entry *e;
	pthread_mutex_t lock[CACHE_STRIPES];
} id_cache;

/* The findings about one backup, or (label NULL) about the WAL archive. */
typedef struct report
{
	char	   *label;
	uint64_t	files;              /* backup: file entries; WAL: files read */
	uint64_t	blocks;             /* stored blocks referenced (zero blocks are not stored) */
	uint64_t	lists;              /* block-list groups resolved */
	uint64_t	deltas;             /* of which delta lists */
	uint64_t	problems;
	char	  **msgs;               /* the first REPORT_MAX problems */
	int			nmsgs;
	int			pending;            /* jobs queued or running */
	/* WAL continuity (backups) */
	bool		wal_known;          /* wal-start and wal-stop were read */
	uint32_t	tli;
	uint64_t	start;
	uint64_t	stop;
	uint64_t	next;               /* next segment the backup needs, of those not yet listed */
	uint64_t	missing;
	uint64_t	shown[MISSING_SHOWN];
	int			nshown;
} report;

typedef struct job_block
{
	uint8_t		id[HASH_LEN];
	uint64_t	blockno;
	uint32_t	len;
} job_block;

/* A WAL file to read, or blocks of one file of a backup. */
typedef struct job
{
	struct job *next;
	report	   *rep;
	bool		is_wal;
	wal_object	wal;
	char	   *path;
	size_t		n;
	job_block	blocks[];
} job;

struct verify;

typedef struct worker
{
	struct verify *v;
	pthread_t	thread;
	bool		started;
	repo	   *repo;
	block_codec *codec;
	uint8_t    *stored;
	size_t		stored_cap;
	uint8_t    *raw;
	size_t		raw_cap;
} worker;

typedef struct verify
{
	const char *stanza;
	bool		json;
	bool		fast;               /* --fast: blocks and WAL files are not read back */
	repo	   *repo;
	stanza_info st;
	id_cache	cache;
	/* lock guards the queue and every report's problems and pending */
	pthread_mutex_t lock;
	pthread_cond_t nonempty;
	pthread_cond_t nonfull;
	pthread_cond_t done;
	job		   *head;
	job		   *tail;
	int			queued;
	int			cap;
	bool		closed;
	worker	   *workers;
	int			nworkers;
	report	   *backups;
	int			nbackups;
	report		wal;
	report		dict;               /* the stanza's compression dictionary */
	bool		dict_present;
	uint64_t	problems;           /* reported so far, over all reports */
	strbuf		out;                /* the JSON document */
} verify;

/* ---- reports ---- */

static void problem(verify *v, report *rep, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Count a problem of rep and keep its message (the first REPORT_MAX). */
static void
problem(verify *v, report *rep, const char *fmt, ...)
{
	va_list		ap;
	char	   *msg = NULL;

	pthread_mutex_lock(&v->lock);
	rep->problems++;
	v->problems++;
	if (rep->nmsgs < REPORT_MAX)
	{
		va_start(ap, fmt);
		msg = xvasprintf(fmt, ap);
		va_end(ap);
		if (rep->msgs == NULL)
			rep->msgs = xcalloc(REPORT_MAX, sizeof(char *));
		rep->msgs[rep->nmsgs++] = msg;
	}
	pthread_mutex_unlock(&v->lock);
}

static void
report_free_msgs(report *rep)
{
	for (int i = 0; i < rep->nmsgs; i++)
		free(rep->msgs[i]);
	free(rep->msgs);
	rep->msgs = NULL;
	rep->nmsgs = 0;
}

static void
json_errors(strbuf *sb, const report *rep)
{
	sb_appendf(sb, "\"problems\":%" PRIu64 ",\"errors\":[", rep->problems);
	for (int i = 0; i < rep->nmsgs; i++)
	{
		if (i > 0)
			sb_appendc(sb, ',');
		sb_append_json(sb, rep->msgs[i]);
	}
	sb_appendc(sb, ']');
}

static void
text_errors(const report *rep, const char *what)
{
	for (int i = 0; i < rep->nmsgs; i++)
		printf("ERROR: %s\n", rep->msgs[i]);
	if (rep->problems > (uint64_t) rep->nmsgs)
		printf("ERROR: %s: %" PRIu64 " more problems not shown\n", what, rep->problems - (uint64_t) rep->nmsgs);
}

/* Print (text) or add to the document (JSON) a finished backup's report, then drop its messages. */
static void
backup_output(verify *v, report *rep, bool first)
{
	if (v->json)
	{
		sb_append(&v->out, first ? "{\"label\":" : ",{\"label\":");
		sb_append_json(&v->out, rep->label);
		sb_appendf(&v->out, ",\"files\":%" PRIu64 ",\"blocks\":%" PRIu64 ",\"block-lists\":%" PRIu64
				   ",\"delta-lists\":%" PRIu64 ",", rep->files, rep->blocks, rep->lists, rep->deltas);
		json_errors(&v->out, rep);
		sb_appendc(&v->out, '}');
	}
	else
	{
		char	   *what = xasprintf("backup %s", rep->label);

		text_errors(rep, what);
		if (rep->problems == 0)
			printf("ok: backup %s (%" PRIu64 " files, %" PRIu64 " blocks, %" PRIu64 " block lists, %" PRIu64 " of them deltas)\n",
				   rep->label, rep->files, rep->blocks, rep->lists, rep->deltas);
		else
			printf("failed: backup %s (%" PRIu64 " files, %" PRIu64 " blocks, %" PRIu64 " problem(s))\n",
				   rep->label, rep->files, rep->blocks, rep->problems);
		fflush(stdout);
		free(what);
	}
	report_free_msgs(rep);
}

/* ---- the cache of verified ids ---- */

static void
cache_init(id_cache *c)
{
	c->e = xcalloc((size_t) CACHE_SETS * CACHE_WAYS, sizeof(cache_entry));
	for (int i = 0; i < CACHE_STRIPES; i++)
		pthread_mutex_init(&c->lock[i], NULL);
}

static void
cache_free(id_cache *c)
{
	if (c->e == NULL)
		return;
	for (int i = 0; i < CACHE_STRIPES; i++)
		pthread_mutex_destroy(&c->lock[i]);
	free(c->e);
	c->e = NULL;
}

/* Ids are SHA-256 values: any of their bytes are evenly spread.  The set comes from bytes the key does not hold. */
static uint32_t
cache_set(const uint8_t id[HASH_LEN])
{
	uint32_t	s;

	memcpy(&s, id + CACHE_KEY, sizeof(s));
	return s % CACHE_SETS;
}

static bool
cache_has(id_cache *c, const uint8_t id[HASH_LEN], uint32_t raw_len)
{
	uint32_t	set = cache_set(id);
	const cache_entry *e = &c->e[(size_t) set * CACHE_WAYS];
	bool		hit = false;

	pthread_mutex_lock(&c->lock[set % CACHE_STRIPES]);
	for (int i = 0; i < CACHE_WAYS && !hit; i++)
		hit = e[i].raw_len == raw_len && memcmp(e[i].key, id, CACHE_KEY) == 0;
	pthread_mutex_unlock(&c->lock[set % CACHE_STRIPES]);
	return hit;
}

/* Remember a verified id: into an empty way of its set, else over the way its id picks. */
static void
cache_add(id_cache *c, const uint8_t id[HASH_LEN], uint32_t raw_len)
{
	uint32_t	set = cache_set(id);
	cache_entry *e = &c->e[(size_t) set * CACHE_WAYS];
	int			victim = id[CACHE_KEY + 4] % CACHE_WAYS;

	pthread_mutex_lock(&c->lock[set % CACHE_STRIPES]);
	for (int i = 0; i < CACHE_WAYS; i++)
		if (e[i].raw_len == 0)
		{
			victim = i;
			break;
		}
	memcpy(e[victim].key, id, CACHE_KEY);
	e[victim].raw_len = raw_len;
	pthread_mutex_unlock(&c->lock[set % CACHE_STRIPES]);
}

/* ---- the job queue ---- */

/* Queue a job, waiting for room; it counts as pending for its report until a worker is done with it. */
static void
queue_push(verify *v, job *j)
{
	pthread_mutex_lock(&v->lock);
	while (v->queued >= v->cap)
		pthread_cond_wait(&v->nonfull, &v->lock);
	j->next = NULL;
	if (v->tail)
		v->tail->next = j;
	else
		v->head = j;
	v->tail = j;
	v->queued++;
	j->rep->pending++;
	pthread_cond_signal(&v->nonempty);
	pthread_mutex_unlock(&v->lock);
}

/* The next job; NULL once the queue is closed and empty. */
static job *
queue_pop(verify *v)
{
	job		   *j;

	pthread_mutex_lock(&v->lock);
	while (v->head == NULL && !v->closed)
		pthread_cond_wait(&v->nonempty, &v->lock);
	j = v->head;
	if (j)
	{
		v->head = j->next;
		if (v->head == NULL)
			v->tail = NULL;
		v->queued--;
		pthread_cond_signal(&v->nonfull);
	}
	pthread_mutex_unlock(&v->lock);
	return j;
}

static void
job_done(verify *v, job *j)
{
	pthread_mutex_lock(&v->lock);
	j->rep->pending--;
	pthread_cond_broadcast(&v->done);
	pthread_mutex_unlock(&v->lock);
	free(j->path);
	free(j);
}

/* Wait until every job of rep is done. */
static void
report_wait(verify *v, report *rep)
{
	pthread_mutex_lock(&v->lock);
	while (rep->pending > 0)
		pthread_cond_wait(&v->done, &v->lock);
	pthread_mutex_unlock(&v->lock);
}

/* ---- workers ---- */

static void
buf_reserve(uint8_t **buf, size_t *cap, size_t need)
{
	if (*cap < need)
	{
		free(*buf);
		*buf = xmalloc(need);
		*cap = need;
	}
}

static void block_outcome(worker *w, const job *j, const job_block *b, int rc);

/*
 * Read one block, check its length and that its content is what its id says
 * (--fast asks about whole windows of blocks instead: blocks_check_fast).
 */
static void
block_verify(worker *w, const job *j, const job_block *b)
{
	/* No codec's worst case comes near twice the block. */
	buf_reserve(&w->stored, &w->stored_cap, 2 * (size_t) b->len + 1024);
	buf_reserve(&w->raw, &w->raw_cap, b->len);
	block_outcome(w, j, b, repo_block_fetch(w->repo, w->codec, b->id, w->stored, w->stored_cap, w->raw, b->len));
}

/* --fast: a block is stored with raw_len plain bytes, the file needs len. */
static int
check_len(uint32_t raw_len, uint32_t len)
{
	if (raw_len != len)
		return error_set(ERR_CORRUPT, "the store holds %" PRIu32 " bytes, the file needs %" PRIu32, raw_len, len);
	return 0;
}

/* What checking block b of j found (rc, and error_msg() when not 0): the cache learns it, or a problem is reported. */
static void
block_outcome(worker *w, const job *j, const job_block *b, int rc)
{
	verify	   *v = w->v;
	char		hex[HASH_HEX_LEN + 1];

	if (rc == 0)
	{
		cache_add(&v->cache, b->id, b->len);
		return;
	}
	hash_to_hex(b->id, hex);
	if (rc == ERR_NOT_FOUND)
		problem(v, j->rep, "backup %s: missing block %" PRIu64 " of file \"%s\" (id %s)", j->rep->label,
				b->blockno, j->path, hex);
	else
		problem(v, j->rep, "backup %s: %s block %" PRIu64 " of file \"%s\" (id %s): %s", j->rep->label,
				rc == ERR_FILE ? "unreadable" : "corrupt", b->blockno, j->path, hex, error_msg());
	error_clear();
}

/* Read a WAL file through decompression and compare the SHA-256 of its content with the one in its name. */
static void
wal_check(worker *w, const job *j)
{
	const wal_object *obj = &j->wal;
	io_reader  *rd = NULL;
	io_writer  *chain = NULL;
	uint8_t		digest[HASH_LEN];
	int			rc;

	if ((rc = repo_wal_open(w->repo, obj, &rd)) == 0)
	{
		chain = io_decompress_writer_new(obj->ctype, io_hash_writer_new(io_null_writer_new()));
		if ((rc = io_copy(rd, chain)) == 0)
			rc = io_close(chain);
		if (rc == 0)
		{
			io_hash_writer_result(chain->next, digest, NULL);
			if (memcmp(digest, obj->hash, HASH_LEN) != 0)
				rc = error_set(ERR_CORRUPT, "its content does not match its checksum");
		}
	}
	if (rc != 0)
	{
		if (rc == ERR_CORRUPT || rc == ERR_COMPRESS || rc == ERR_FORMAT)
			problem(w->v, j->rep, "WAL file %s is corrupt: %s", obj->name, error_msg());
		else
			problem(w->v, j->rep, "WAL file %s could not be read: %s", obj->name, error_msg());
		error_clear();
	}
	io_free(chain);
	io_reader_free(rd);
}

/* A block of a job, unless an earlier one of any worker had its id (the cache). */
static void
block_check(worker *w, const job *j, const job_block *b)
{
	if (!cache_has(&w->v->cache, b->id, b->len))
		block_verify(w, j, b);
}

/*
 * From *from on, the indexes of the next blocks of j (at most VERIFY_WINDOW)
 * that the cache lacks, into sel, and prefetch them; how many (0 only at
 * the job's end).  A prefetch that fails leaves the reads to report it.
 */
static size_t
window_prefetch(worker *w, const job *j, size_t *from, size_t *sel)
{
	uint8_t		ids[VERIFY_WINDOW][HASH_LEN];
	size_t		n = 0;

	for (; *from < j->n && n < VERIFY_WINDOW; (*from)++)
		if (!cache_has(&w->v->cache, j->blocks[*from].id, j->blocks[*from].len))
		{
			sel[n] = *from;
			memcpy(ids[n++], j->blocks[*from].id, HASH_LEN);
		}
	if (n > 0 && repo_block_prefetch(w->repo, (const uint8_t (*)[HASH_LEN]) ids, n) != 0)
		error_clear();
	return n;
}

/*
 * The blocks of j from a repository server: the cache decides which blocks
 * a window reads when it is prefetched, one window ahead of the reads, so
 * that the reads come in the order they were asked for whatever the other
 * workers add to the cache meanwhile.
 */
static void
blocks_check_ahead(worker *w, const job *j)
{
	size_t		sel[2][VERIFY_WINDOW];
	size_t		n[2];
	size_t		from = 0;
	int			k = 0;

	n[0] = window_prefetch(w, j, &from, sel[0]);
	while (n[k] > 0)
	{
		n[1 - k] = window_prefetch(w, j, &from, sel[1 - k]);
		for (size_t i = 0; i < n[k]; i++)
			block_verify(w, j, &j->blocks[sel[k][i]]);
		k = 1 - k;
	}
}

/*
 * --fast: the blocks of j the cache lacks, VERIFY_WINDOW at a time, each
 * window one question to the repository (one round trip to a server).
 */
static void
blocks_check_fast(worker *w, const job *j)
{
	uint8_t		ids[VERIFY_WINDOW][HASH_LEN];
	size_t		sel[VERIFY_WINDOW];
	int			rcs[VERIFY_WINDOW];
	uint32_t	lens[VERIFY_WINDOW];
	char	   *msgs[VERIFY_WINDOW];
	size_t		from = 0, n;

	do
	{
		for (n = 0; from < j->n && n < VERIFY_WINDOW; from++)
			if (!cache_has(&w->v->cache, j->blocks[from].id, j->blocks[from].len))
			{
				sel[n] = from;
				memcpy(ids[n++], j->blocks[from].id, HASH_LEN);
			}
		int			code = n > 0 ? repo_block_check_many(w->repo, (const uint8_t (*)[HASH_LEN]) ids, n, rcs, lens, msgs) : 0;

		if (code != 0)
		{
			/* No answer at all: each block of the window is reported with why. */
			char	   *why = xstrdup(error_msg());

			for (size_t i = 0; i < n; i++)
			{
				rcs[i] = code;
				msgs[i] = xstrdup(why);
			}
			free(why);
		}
		for (size_t i = 0; i < n; i++)
		{
			const job_block *b = &j->blocks[sel[i]];
			int			rc = rcs[i] ? error_set(rcs[i], "%s", msgs[i]) : check_len(lens[i], b->len);

			block_outcome(w, j, b, rc);
			free(msgs[i]);
		}
	} while (n > 0);
}

static void *
worker_main(void *arg)
{
	worker	   *w = arg;
	job		   *j;
	bool		ahead = !w->v->fast && repo_prefetches(w->repo);

	while ((j = queue_pop(w->v)) != NULL)
	{
		if (j->is_wal)
			wal_check(w, j);
		else if (w->v->fast)
			blocks_check_fast(w, j);
		else if (ahead)
			blocks_check_ahead(w, j);
		else
			for (size_t i = 0; i < j->n; i++)
				block_check(w, j, &j->blocks[i]);
		job_done(w->v, j);
	}
	return NULL;
}

static int
workers_start(verify *v)
{
	v->nworkers = (int) opt_int(OPT_PROCESS_MAX);
	if (v->nworkers < 1)
		v->nworkers = 1;
	v->cap = QUEUE_PER_WORKER * v->nworkers;
	v->workers = xcalloc((size_t) v->nworkers, sizeof(worker));
	for (int i = 0; i < v->nworkers; i++)
	{
		worker	   *w = &v->workers[i];
		int			rc;

		w->v = v;
		/* Decompression takes each block's own type, whatever the codec's. */
		w->codec = block_codec_new(COMPRESS_NONE, 0);
		if ((rc = repo_open(v->stanza, &w->repo)) != 0)
			return rc;
		if ((rc = pthread_create(&w->thread, NULL, worker_main, w)) != 0)
			return error_set(ERR_INTERNAL, "could not start a worker thread: %s", strerror(rc));
		w->started = true;
	}
	return 0;
}

static void
workers_stop(verify *v)
{
	pthread_mutex_lock(&v->lock);
	v->closed = true;
	pthread_cond_broadcast(&v->nonempty);
	pthread_mutex_unlock(&v->lock);
	for (int i = 0; i < v->nworkers; i++)
	{
		worker	   *w = &v->workers[i];

		if (w->started)
			pthread_join(w->thread, NULL);
		repo_close(w->repo);
		block_codec_free(w->codec);
		free(w->stored);
		free(w->raw);
	}
	free(v->workers);
	v->workers = NULL;
	v->nworkers = 0;
}

/* ---- backups to verify, and the WAL they need ---- */

/* All backups, or the one of an explicit --set ("latest": the newest). */
static int
backups_choose(verify *v)
{
	const char *set = opt_given(OPT_SET) ? opt_str(OPT_SET) : NULL;
	char	  **labels = NULL;
	int			n = 0;
	int			rc;

	if ((rc = repo_backup_list(v->repo, &labels, &n)) != 0)
		return rc;
	v->backups = xcalloc((size_t) (n > 0 ? n : 1), sizeof(report));
	for (int i = 0; i < n; i++)
	{
		bool		take = set == NULL || strcmp(set, labels[i]) == 0 || (strcmp(set, "latest") == 0 && i == n - 1);

		if (take)
			v->backups[v->nbackups++].label = xstrdup(labels[i]);
	}
	if (set != NULL && v->nbackups == 0)
		rc = n == 0 ? error_set(ERR_INVALID, "no backup exists in stanza \"%s\"", v->stanza)
			: error_set(ERR_INVALID, "backup set %s does not exist in stanza \"%s\"", set, v->stanza);
	repo_names_free(labels, n);
	return rc;
}

/* The WAL range a backup needs starts at its wal-start; an unreadable header is reported by the manifest check. */
static void
backup_wal_range(verify *v, report *rep)
{
	manifest_header h = {0};
	uint32_t	tli_stop;

	if (repo_backup_header(v->repo, rep->label, &h) == 0)
	{
		if (!wal_segname_parse(h.wal_start, &rep->tli, &rep->start, v->st.wal_segment_size) ||
			!wal_segname_parse(h.wal_stop, &tli_stop, &rep->stop, v->st.wal_segment_size) ||
			tli_stop != rep->tli || rep->stop < rep->start)
			problem(v, rep, "backup %s: wal-start \"%s\" and wal-stop \"%s\" are not segment names of one timeline "
					"for %" PRIu32 "-byte segments", rep->label, h.wal_start, h.wal_stop, v->st.wal_segment_size);
		else
		{
			rep->wal_known = true;
			rep->next = rep->start;
		}
	}
	manifest_header_free(&h);
	error_clear();
}

/* Segments first .. last are missing for rep. */
static void
missing_add(report *rep, uint64_t first, uint64_t last)
{
	rep->missing += last - first + 1;
	for (uint64_t s = first; s <= last && rep->nshown < MISSING_SHOWN; s++)
		rep->shown[rep->nshown++] = s;
}

/* The continuity message of a backup, once the whole archive was listed. */
static void
continuity_finish(verify *v, report *rep)
{
	char		a[WAL_SEG_NAME_LEN + 1], b[WAL_SEG_NAME_LEN + 1], s[WAL_SEG_NAME_LEN + 1];
	uint64_t	end;
	strbuf		sb = STRBUF_INIT;

	if (!rep->wal_known)
		return;
	/* next - 1 is the newest segment of the timeline listed (at or after the start). */
	end = rep->next > rep->stop + 1 ? rep->next - 1 : rep->stop;
	if (rep->next <= rep->stop)
		missing_add(rep, rep->next, rep->stop);
	if (rep->missing == 0)
		return;
	wal_segname(a, rep->tli, rep->start, v->st.wal_segment_size);
	wal_segname(b, rep->tli, end, v->st.wal_segment_size);
	for (int i = 0; i < rep->nshown; i++)
	{
		wal_segname(s, rep->tli, rep->shown[i], v->st.wal_segment_size);
		sb_appendf(&sb, "%s%s", i ? ", " : "", s);
	}
	if (rep->missing > (uint64_t) rep->nshown)
		sb_appendf(&sb, " and %" PRIu64 " more", rep->missing - (uint64_t) rep->nshown);
	problem(v, rep, "backup %s needs WAL segments %s to %s, missing: %s", rep->label, a, b, sb_str(&sb));
	sb_free(&sb);
}

/*
 * repo_wal_list callback: queue the file for reading (not with --fast); a
 * segment advances the continuity of its timeline's backups.
 */
static int
wal_visit(const wal_object *obj, void *arg)
{
	verify	   *v = arg;
	uint32_t	tli;
	uint64_t	segno;

	if (!v->fast)
	{
		job		   *j = xcalloc(1, sizeof(job));

		j->rep = &v->wal;
		j->is_wal = true;
		j->wal = *obj;
		queue_push(v, j);
	}
	v->wal.files++;
	if (wal_file_classify(obj->name) != WAL_FILE_SEGMENT ||
		!wal_segname_parse(obj->name, &tli, &segno, v->st.wal_segment_size))
		return 0;
	for (int i = 0; i < v->nbackups; i++)
	{
		report	   *rep = &v->backups[i];

		/* Names come in order, so below next is before the start (or a second copy of a name). */
		if (!rep->wal_known || rep->tli != tli || segno < rep->next)
			continue;
		if (segno > rep->next)
			missing_add(rep, rep->next, segno - 1);
		rep->next = segno + 1;
	}
	return 0;
}

/* ---- one backup ---- */

typedef struct file_walk
{
	verify	   *v;
	report	   *rep;
	const manifest_entry *e;
	uint32_t	block_size;
	job		   *j;
} file_walk;

static void
walk_flush(file_walk *fw)
{
	if (fw->j != NULL && fw->j->n > 0)
		queue_push(fw->v, fw->j);
	else if (fw->j != NULL)
	{
		free(fw->j->path);
		free(fw->j);
	}
	fw->j = NULL;
}

/* Add block blockno of the file (a zero id is not stored: nothing to check). */
static void
walk_add(file_walk *fw, const uint8_t id[HASH_LEN], uint64_t blockno)
{
	uint64_t	off = blockno * fw->block_size;
	uint64_t	left = fw->e->size > off ? fw->e->size - off : 0;
	job_block  *b;

	if (manifest_is_zero_id(id))
		return;
	if (fw->j == NULL)
	{
		fw->j = xcalloc(1, sizeof(job) + JOB_BLOCKS * sizeof(job_block));
		fw->j->rep = fw->rep;
		fw->j->path = xstrdup(fw->e->path);
	}
	b = &fw->j->blocks[fw->j->n++];
	memcpy(b->id, id, HASH_LEN);
	b->blockno = blockno;
	/* The manifest reader checked NBLOCKS = ceil(SIZE / block-size): left is never 0. */
	b->len = left < fw->block_size ? (uint32_t) left : fw->block_size;
	fw->rep->blocks++;
	if (fw->j->n == JOB_BLOCKS)
		walk_flush(fw);
}

/* Queue the stored blocks of the current file; a missing or damaged block list is a problem, not a failure. */
static int
file_walk_blocks(file_walk *fw, manifest_reader *m, blocklist_reader *lists, uint8_t (*ids)[HASH_LEN])
{
	uint64_t	blockno = 0;
	manifest_ref ref;
	bool		end = false;
	int			rc = 0;

	while (rc == 0)
	{
		if ((rc = manifest_read_ref(m, &ref, &end)) != 0 || end)
			break;
		if (ref.kind == MREF_BLOCK)
			walk_add(fw, ref.id, blockno);
		else if (ref.kind == MREF_GROUP)
		{
			uint8_t		base[HASH_LEN];

			if (blocklist_resolve_base(lists, ref.id, ref.count, ids, base) == 0)
			{
				fw->rep->lists++;
				fw->rep->deltas += memcmp(base, ref.id, HASH_LEN) != 0;
				for (uint64_t i = 0; i < ref.count; i++)
					walk_add(fw, ids[i], blockno + i);
			}
			else
			{
				char		hex[HASH_HEX_LEN + 1];

				hash_to_hex(ref.id, hex);
				problem(fw->v, fw->rep, "backup %s: block list %s of file \"%s\" (blocks %" PRIu64 " to %" PRIu64 "): %s",
						fw->rep->label, hex, fw->e->path, blockno, blockno + ref.count - 1, error_msg());
				error_clear();
			}
		}
		blockno += ref.count;
	}
	walk_flush(fw);
	return rc;
}

/* Check a backup's manifest, then queue its blocks.  Everything wrong is a problem of the backup. */
static void
backup_verify(verify *v, report *rep)
{
	char	   *what = xasprintf("manifest of backup %s", rep->label);
	io_reader  *rd = NULL;
	manifest_reader *m = NULL;
	manifest_header h = {0};
	manifest_entry e = {0};
	blocklist_reader lists;
	uint8_t		(*ids)[HASH_LEN] = xmalloc(MANIFEST_GROUP_BLOCKS * HASH_LEN);
	bool		done = false;
	int			rc;

	blocklist_reader_init(&lists, v->repo);
	if ((rc = repo_backup_open(v->repo, rep->label, &rd)) != 0)
	{
		problem(v, rep, "backup %s: could not open its manifest: %s", rep->label, error_msg());
		goto out;
	}
	rc = manifest_verify_stream(rd, what);
	io_reader_free(rd);
	rd = NULL;
	if (rc != 0)
	{
		problem(v, rep, "backup %s: manifest is damaged: %s", rep->label, error_msg());
		goto out;
	}
	/* Read it again, now for the blocks. */
	if ((rc = repo_backup_open(v->repo, rep->label, &rd)) != 0)
	{
		problem(v, rep, "backup %s: could not open its manifest: %s", rep->label, error_msg());
		goto out;
	}
	m = manifest_reader_new(rd, what);
	/*
	 * From a repository server, block lists come many at a time on a
	 * connection of their own (as for restore); without it, one at a time.
	 */
	if (blocklist_reader_follow(&lists, m, v->stanza) != 0)
		error_clear();
	if ((rc = manifest_read_header(m, &h)) == 0 && (h.block_size == 0 || h.block_size > BLOCK_RAW_MAX))
		rc = error_set(ERR_FORMAT, "%s: block size %" PRIu32 " is not supported", what, h.block_size);
	while (rc == 0 && !done)
	{
		if ((rc = manifest_read_entry(m, &e, &done)) == 0 && !done && e.kind == MF_FILE)
		{
			file_walk	fw = {.v = v, .rep = rep, .e = &e, .block_size = h.block_size};

			rep->files++;
			rc = file_walk_blocks(&fw, m, &lists, ids);
		}
		manifest_entry_free(&e);
	}
	if (rc != 0)
		problem(v, rep, "backup %s: could not read its manifest: %s", rep->label, error_msg());
out:
	error_clear();
	manifest_header_free(&h);
	manifest_reader_free(m);
	io_reader_free(rd);
	blocklist_reader_free(&lists);
	free(ids);
	free(what);
}

/* ---- the command ---- */

/*
 * The stanza's compression dictionary (both modes: one small file): it loads
 * and its checksum matches, or the stanza has none.  A damaged one makes
 * every block compressed with it unreadable, and is reported once here.
 */
static void
dict_check(verify *v)
{
	void	   *data = NULL;
	size_t		len = 0;
	block_dict *d = NULL;
	int			rc = repo_dict_get(v->repo, &data, &len);

	v->dict_present = rc != ERR_NOT_FOUND;
	if (rc == 0 && (rc = block_dict_load(data, len, compress_default_level(COMPRESS_ZST), &d)) == 0)
		block_dict_free(d);
	if (rc != 0 && rc != ERR_NOT_FOUND)
		problem(v, &v->dict, "compression dictionary: %s", error_msg());
	error_clear();
	free(data);
}

static void
output_end(verify *v)
{
	if (v->json)
	{
		sb_appendf(&v->out, "],\"wal\":{\"files\":%" PRIu64 ",", v->wal.files);
		json_errors(&v->out, &v->wal);
		sb_appendf(&v->out, "},\"dictionary\":{\"present\":%s,", v->dict_present ? "true" : "false");
		json_errors(&v->out, &v->dict);
		sb_appendf(&v->out, "},\"fast\":%s,\"problems\":%" PRIu64 ",\"status\":\"%s\"}\n",
				   v->fast ? "true" : "false", v->problems, v->problems ? "error" : "ok");
		fputs(sb_str(&v->out), stdout);
	}
	else
	{
		text_errors(&v->dict, "compression dictionary");
		if (v->dict.problems != 0)
			printf("failed: compression dictionary\n");
		text_errors(&v->wal, "WAL archive");
		if (v->wal.problems == 0)
			printf("ok: WAL archive (%" PRIu64 " files)\n", v->wal.files);
		else
			printf("failed: WAL archive (%" PRIu64 " files, %" PRIu64 " problem(s))\n", v->wal.files, v->wal.problems);
		printf("verify%s of stanza %s: %d backup(s), %" PRIu64 " WAL file(s): ",
			   v->fast ? " --fast (blocks and WAL files not read back)" : "", v->stanza, v->nbackups, v->wal.files);
		if (v->problems == 0)
			printf("ok\n");
		else
			printf("%" PRIu64 " problem(s)\n", v->problems);
	}
	fflush(stdout);
}

int
cmd_verify(void)
{
	verify		v = {0};
	int			rc;

	v.stanza = opt_str(OPT_STANZA);
	v.json = strcmp(opt_str(OPT_OUTPUT), "json") == 0;
	v.fast = opt_bool(OPT_FAST);
	if (v.stanza == NULL)
		return error_set(ERR_OPTION, "verify requires option stanza");
	pthread_mutex_init(&v.lock, NULL);
	pthread_cond_init(&v.nonempty, NULL);
	pthread_cond_init(&v.nonfull, NULL);
	pthread_cond_init(&v.done, NULL);
	if ((rc = repo_open(v.stanza, &v.repo)) != 0 || (rc = repo_stanza_get(v.repo, &v.st)) != 0 ||
		(rc = repo_blocks_hold(v.repo)) != 0 || (rc = backups_choose(&v)) != 0)
		goto out;
	cache_init(&v.cache);
	dict_check(&v);
	if ((rc = workers_start(&v)) != 0)
		goto out;
	log_detail("verify%s stanza %s: %d backup(s), the WAL archive, with %d worker(s)", v.fast ? " --fast" : "", v.stanza,
			   v.nbackups, v.nworkers);
	for (int i = 0; i < v.nbackups; i++)
		backup_wal_range(&v, &v.backups[i]);
	if ((rc = repo_wal_list(v.repo, wal_visit, &v)) != 0)
		goto out;
	for (int i = 0; i < v.nbackups; i++)
		continuity_finish(&v, &v.backups[i]);
	if (v.json)
	{
		sb_append(&v.out, "{\"stanza\":");
		sb_append_json(&v.out, v.stanza);
		sb_append(&v.out, ",\"backups\":[");
	}
	else if (v.nbackups == 0)
		printf("no backups in stanza %s\n", v.stanza);
	for (int i = 0; i < v.nbackups; i++)
	{
		report	   *rep = &v.backups[i];

		backup_verify(&v, rep);
		report_wait(&v, rep);
		backup_output(&v, rep, i == 0);
	}
	report_wait(&v, &v.wal);
	output_end(&v);
	if (v.problems > 0)
		rc = error_set(ERR_CHECK, "verify found %" PRIu64 " problem(s)", v.problems);
out:
	/* After a failure the queued jobs are still run: the workers stop once the queue is empty. */
	if (v.workers)
		workers_stop(&v);
	cache_free(&v.cache);
	for (int i = 0; i < v.nbackups; i++)
	{
		report_free_msgs(&v.backups[i]);
		free(v.backups[i].label);
	}
	free(v.backups);
	report_free_msgs(&v.wal);
	report_free_msgs(&v.dict);
	sb_free(&v.out);
	repo_close(v.repo);
	pthread_mutex_destroy(&v.lock);
	pthread_cond_destroy(&v.nonempty);
	pthread_cond_destroy(&v.nonfull);
	pthread_cond_destroy(&v.done);
	return rc;
}
