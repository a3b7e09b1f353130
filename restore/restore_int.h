/*
 * restore_int.h: what the files of the restore command share; not for use
 * outside restore/ (restore.h is the command).  The files:
 *
 *   restore.c   the command: checks before anything is written, owners and
 *               metadata, the restore itself (pg_control, recovery settings,
 *               the final syncfs); its top comment tells how a restore goes
 *   walk.c      the walk over the manifest: directories and links, and the
 *               files, whose blocks it queues in jobs for the workers
 *   write.c     the job queue and the worker threads that fetch, verify and
 *               write the blocks and complete each file
 *   recovery.c  the recovery settings of --type (recovery.h)
 */
#ifndef PGKEEP_RESTORE_INT_H
#define PGKEEP_RESTORE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "../repo/manifest.h"
#include "../repo/repo.h"
#include "../src/progress.h"

/* The backup's file that restore writes with the recovery settings (recovery_write). */
#define AUTO_CONF "postgresql.auto.conf"
/* pg_control and the name it is restored under until the restore is complete. */
#define PG_CONTROL "global/pg_control"
#define PG_CONTROL_TMP_NAME "pg_control.pgkeep-restore"
#define PG_CONTROL_TMP "global/" PG_CONTROL_TMP_NAME
/* Blocks per job: big files are split so that they spread over the workers (128 MiB of 8 KiB blocks). */
#define RESTORE_CHUNK_BLOCKS 16384
/*
 * Small files (under 256 blocks) a worker takes at once, their blocks asked
 * of the repository together (at most REPO_PREFETCH_MAX).
 */
#define RESTORE_BUNDLE_MAX 32
#define RESTORE_SMALL_BLOCKS 256

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
	uint64_t	blocks;         /* of the queued jobs */
	uint64_t	max_blocks;     /* a job waits for room beyond this many (unless the queue is empty) */
	job		   *staged[RESTORE_BUNDLE_MAX];  /* small files not queued yet (queue_push) */
	int			staged_n;
	uint64_t	staged_blocks;
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

/* restore.c */

/* dir/name, or dir when name is empty (caller frees). */
char	   *path_join(const char *dir, const char *name);
/* Note the file system of directory path before restore writes to it, for the syncfs at the end. */
int			fs_register(restore *rs, const char *path);
/* Whether name is "." or "..". */
bool		name_is_dot(const char *name);
/* The tablespace whose link is at path ("pg_tblspc/OID"), or NULL. */
tablespace *tablespace_of(const restore *rs, const char *path);
/* Where each tablespace goes: its location, or --tablespace-map-all/NAME, or its --tablespace-map. */
int			tablespaces_resolve(restore *rs);
/* What entry e gets once it is complete (its owner only when restoring as root, in the second pass). */
meta		meta_of(restore *rs, const manifest_entry *e);
/* Whether m sets an owner or a group. */
bool		meta_has_owner(const meta *m);
/* Give an open file or directory its owner, mode and mtime, changing only what differs. */
int			meta_apply(int fd, const char *path, const meta *m);
/* The same for a link itself (its mode means nothing on Linux). */
int			link_meta_apply(const char *path, const meta *m);

/* walk.c */

/* The target of link path into *out (caller frees). */
int			link_read(const char *path, char **out);
/* The length of the topmost missing directory of path; more than path's length when path exists. */
size_t		missing_from(const char *path);
/* One pass over the manifest: the first checks it all and keeps its header, the second restores it. */
int			manifest_pass(restore *rs);

/* write.c */

/* An empty queue of at most cap jobs and max_blocks blocks. */
void		queue_init(queue *q, int cap, uint64_t max_blocks);
/* Add a job, waiting for room.  Once anything failed, returns that failure instead (the caller keeps j). */
int			queue_push(queue *q, job *j);
/* Record a failure of the calling thread (the first one is kept, with its message); the others stop. */
void		queue_fail(queue *q, int rc);
/* Open f->path for the workers: a new file, or with --delta the existing one to compare. */
int			file_open(const restore *rs, rfile *f);
/* Close f if it is open and free it. */
void		file_free(rfile *f);
/* Drop a reference to f; the last one completes the file.  A failure is the restore's, through the queue. */
void		file_release(restore *rs, rfile *f);
/* Put the block, file and backup set in front of a block's failure; a block the repository lacks is corruption. */
int			block_error(const restore *rs, const char *path, uint64_t blockno, const uint8_t id[HASH_LEN], int rc);
/* Start --process-max worker threads, each with a repository handle of its own. */
int			workers_start(restore *rs);
/* Close the queue, wait for the workers, and return the first failure of any thread. */
int			workers_stop(restore *rs);

#endif
