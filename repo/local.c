/*
 * local.c: the local repository driver: this process opens the repository
 * path itself.  Layout (doc/repository-format.md):
 *
 *   REPO/pgkeep.repo                     format marker
 *   REPO/STANZA/stanza.info              cluster identity
 *   REPO/STANZA/wal/TTTTTTTTLLLLLLLL/NAME-SHA256.EXT   WAL segments (.partial, .backup too)
 *   REPO/STANZA/wal/history/NAME-SHA256.EXT            timeline history files
 *   REPO/STANZA/store/                    block store (store.h)
 *   REPO/STANZA/store/dict                the stanza's block compression dictionary
 *   REPO/STANZA/backup/LABEL/manifest     a backup; exists exactly when the manifest does
 *   REPO/STANZA/lock/archive.lock         serializes the check-then-commit of WAL puts
 */
#include "repo.h"
#include "gc.h"
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../src/error.h"
#include "../src/fileio.h"
#include "../src/mem.h"
#include "../src/pgformat.h"

#define REPO_MARKER "pgkeep.repo"
#define STANZA_FILE "stanza.info"
#define DIR_MODE 0750
#define FILE_MODE 0640

typedef struct local_repo
{
	char	   *path;           /* repository root */
	char	   *stanza_dir;     /* REPO/STANZA */
	store	   *blocks;         /* opened on first block operation */
} local_repo;

typedef struct local_put
{
	const repo_driver *drv;     /* must be first: see repo.c */
	local_repo *lr;
	fio_atomic	file;
	io_writer  *writer;
	char	   *name;           /* WAL name, or backup label */
	char	   *dir;            /* directory the object goes into */
	compress_type ctype;
} local_put;

static const repo_driver local_driver;

static local_repo *
LR(repo *r)
{
	return (local_repo *) r->impl;
}

/* Directory that holds WAL file `name`. */
static char *
wal_dir(local_repo *lr, const char *name)
{
	if (wal_file_classify(name) == WAL_FILE_HISTORY)
		return xasprintf("%s/wal/history", lr->stanza_dir);
	return xasprintf("%s/wal/%.16s", lr->stanza_dir, name);
}

static int
check_wal_name(const char *name)
{
	if (strlen(name) >= sizeof(((wal_object *) 0)->name) || wal_file_classify(name) == WAL_FILE_INVALID)
		return error_set(ERR_FORMAT, "invalid WAL file name \"%s\"", name);
	return 0;
}

static int
check_label(const char *label)
{
	size_t		len = strlen(label);
	static const char shape[] = "dddddddd-ddddddF";
	bool		ok = (len == 16 || len == 33);

	for (size_t i = 0; ok && i < 16; i++)
		ok = shape[i] == 'd' ? (label[i] >= '0' && label[i] <= '9') : label[i] == shape[i];
	if (ok && len == 33)
	{
		ok = label[16] == '_' && (label[32] == 'D' || label[32] == 'I');
		for (size_t i = 0; ok && i < 15; i++)
			ok = shape[i] == 'd' ? (label[17 + i] >= '0' && label[17 + i] <= '9') : label[17 + i] == shape[i];
	}
	if (!ok)
		return error_set(ERR_FORMAT, "invalid backup label \"%s\"", label);
	return 0;
}

/* Parse "NAME-HASH.EXT" of a stored WAL file; false if it is not one. */
static bool
parse_stored_wal(const char *fname, wal_object *obj)
{
	const char *dot = strrchr(fname, '.');
	const char *dash;

	if (dot == NULL || dot - fname < HASH_HEX_LEN + 2)
		return false;
	dash = dot - HASH_HEX_LEN - 1;
	if (*dash != '-')
		return false;
	int			ct = strcmp(dot + 1, "raw") == 0 ? COMPRESS_NONE : compress_type_parse(dot + 1);

	if (ct < 0 || (size_t) (dash - fname) >= sizeof(obj->name))
		return false;
	memcpy(obj->name, fname, (size_t) (dash - fname));
	obj->name[dash - fname] = '\0';
	obj->ctype = (compress_type) ct;
	obj->stored_size = 0;
	return hex_decode(dash + 1, HASH_HEX_LEN, obj->hash) && wal_file_classify(obj->name) != WAL_FILE_INVALID;
}

static int
local_close_impl(local_repo *lr)
{
	int			rc = 0;

	if (lr->blocks)
		rc = store_close(lr->blocks);
	free(lr->path);
	free(lr->stanza_dir);
	free(lr);
	return rc;
}

static void
local_close(repo *r)
{
	local_close_impl(LR(r));
	free(r->stanza);
	free(r);
}

int			repo_local_open(const char *path, const char *stanza, repo **out);

int
repo_local_open(const char *path, const char *stanza, repo **out)
{
	local_repo *lr = xcalloc(1, sizeof(*lr));
	repo	   *r = xcalloc(1, sizeof(*r));

	lr->path = xstrdup(path);
	lr->stanza_dir = stanza ? xasprintf("%s/%s", path, stanza) : NULL;
	r->drv = &local_driver;
	r->stanza = stanza ? xstrdup(stanza) : NULL;
	r->impl = lr;
	*out = r;
	return 0;
}

/* stanza.info */

static int
stanza_parse(const char *path, const char *text, stanza_info *st)
{
	unsigned long long sysid = 0;
	unsigned	pgv = 0, ctl = 0, cat = 0, seg = 0, bs = 0;
	long long	created = 0;

	if (sscanf(text, "pgkeep-stanza 1\nsystem-id=%llu\npg-version=%u\ncontrol-version=%u\n"
			   "catalog-version=%u\nwal-segment-size=%u\nblock-size=%u\ncreated=%lld\n",
			   &sysid, &pgv, &ctl, &cat, &seg, &bs, &created) != 7 || bs == 0 || seg == 0)
		return error_set(ERR_FORMAT, "stanza file \"%s\" is malformed", path);
	st->system_id = sysid;
	st->pg_version = pgv;
	st->control_version = ctl;
	st->catalog_version = cat;
	st->wal_segment_size = seg;
	st->block_size = bs;
	st->created = created;
	return 0;
}

static int
local_stanza_get(repo *r, stanza_info *st)
{
	char	   *path;
	char	   *text = NULL;
	size_t		len;
	int			rc;

	if ((rc = repo_need_stanza(r)) != 0)
		return rc;
	path = xasprintf("%s/%s", LR(r)->stanza_dir, STANZA_FILE);
	rc = fio_read_file(path, 4096, &text, &len);
	if (rc == 0)
		rc = stanza_parse(path, text, st);
	else if (!fio_exists(path))
		rc = error_set(ERR_STANZA, "stanza \"%s\" does not exist in repository \"%s\"; run stanza-create first",
					   r->stanza, LR(r)->path);
	free(text);
	free(path);
	return rc;
}

static int
local_stanza_create(repo *r, const stanza_info *st)
{
	local_repo *lr = LR(r);
	stanza_info cur;
	char	   *marker = NULL, *path = NULL, *text = NULL;
	int			rc;

	if ((rc = repo_need_stanza(r)) != 0)
		return rc;
	rc = local_stanza_get(r, &cur);
	if (rc == 0)
	{
		if (cur.system_id != st->system_id || cur.pg_version / 100 != st->pg_version / 100)
			return error_set(ERR_STANZA, "stanza \"%s\" already exists for system identifier %llu and PostgreSQL %u, "
							 "but the cluster has system identifier %llu and PostgreSQL %u",
							 r->stanza, (unsigned long long) cur.system_id, cur.pg_version / 10000,
							 (unsigned long long) st->system_id, st->pg_version / 10000);
		return 0;
	}
	if (rc != ERR_STANZA)
		return rc;
	error_clear();

	marker = xasprintf("%s/%s", lr->path, REPO_MARKER);
	if ((rc = fio_mkdir_durable(lr->path, DIR_MODE)) != 0)
		goto out;
	if (!fio_exists(marker))
	{
		char		m[64];
		int			n = snprintf(m, sizeof(m), "pgkeep-repository %d\n", REPO_FORMAT_VERSION);

		if ((rc = fio_write_file_atomic(marker, m, (size_t) n, FILE_MODE)) != 0)
			goto out;
	}
	const char *subdirs[] = {"wal", "wal/history", "backup", "lock", "store"};

	for (size_t i = 0; i < sizeof(subdirs) / sizeof(subdirs[0]); i++)
	{
		char	   *d = xasprintf("%s/%s", lr->stanza_dir, subdirs[i]);

		rc = fio_mkdir_durable(d, DIR_MODE);
		free(d);
		if (rc)
			goto out;
	}
	text = xasprintf("pgkeep-stanza 1\nsystem-id=%llu\npg-version=%u\ncontrol-version=%u\ncatalog-version=%u\n"
					 "wal-segment-size=%u\nblock-size=%u\ncreated=%lld\n",
					 (unsigned long long) st->system_id, st->pg_version, st->control_version, st->catalog_version,
					 st->wal_segment_size, st->block_size, (long long) st->created);
	path = xasprintf("%s/%s", lr->stanza_dir, STANZA_FILE);
	rc = fio_write_file_atomic(path, text, strlen(text), FILE_MODE);
out:
	free(marker);
	free(path);
	free(text);
	return rc;
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

/* Sorted names of the entries of dir accepted by keep(name, arg). ENOENT gives an empty list. */
static int
list_dir(const char *dir, bool (*keep) (const char *dir, const char *name), char ***names, int *count)
{
	DIR		   *d = opendir(dir);
	struct dirent *de;
	char	  **v = NULL;
	int			n = 0, cap = 0;

	*names = NULL;
	*count = 0;
	if (d == NULL)
	{
		if (errno == ENOENT)
			return 0;
		return error_set(ERR_FILE, "could not open directory \"%s\": %s", dir, strerror(errno));
	}
	while ((errno = 0, de = readdir(d)) != NULL)
	{
		if (de->d_name[0] == '.' || !keep(dir, de->d_name))
			continue;
		if (n == cap)
		{
			cap = cap ? cap * 2 : 16;
			v = xrealloc(v, sizeof(char *) * (size_t) cap);
		}
		v[n++] = xstrdup(de->d_name);
	}
	closedir(d);
	if (n > 0)
		qsort(v, (size_t) n, sizeof(char *), cmp_str);
	*names = v;
	*count = n;
	return 0;
}

static bool
keep_stanza(const char *dir, const char *name)
{
	char	   *p = xasprintf("%s/%s/%s", dir, name, STANZA_FILE);
	bool		ok = fio_exists(p);

	free(p);
	return ok;
}

static int
local_stanza_list(repo *r, char ***names, int *count)
{
	return list_dir(LR(r)->path, keep_stanza, names, count);
}

/* WAL */

/* Find the stored copy of WAL file name (already validated). */
static int
wal_find(local_repo *lr, const char *name, wal_object *out)
{
	char	   *dir;
	DIR		   *d;
	struct dirent *de;
	size_t		nlen = strlen(name);
	int			rc;

	dir = wal_dir(lr, name);
	d = opendir(dir);
	if (d == NULL)
	{
		rc = errno == ENOENT ? error_set(ERR_NOT_FOUND, "WAL file \"%s\" is not in the repository", name)
			: error_set(ERR_FILE, "could not open directory \"%s\": %s", dir, strerror(errno));
		free(dir);
		return rc;
	}
	rc = error_set(ERR_NOT_FOUND, "WAL file \"%s\" is not in the repository", name);
	while ((de = readdir(d)) != NULL)
	{
		if (strncmp(de->d_name, name, nlen) != 0 || de->d_name[nlen] != '-')
			continue;
		if (!parse_stored_wal(de->d_name, out) || strcmp(out->name, name) != 0)
			continue;
		struct stat stt;
		char	   *p = xasprintf("%s/%s", dir, de->d_name);

		if (stat(p, &stt) == 0)
			out->stored_size = (uint64_t) stt.st_size;
		free(p);
		rc = 0;
		error_clear();
		break;
	}
	closedir(d);
	free(dir);
	return rc;
}

static int
local_wal_find(repo *r, const char *name, wal_object *out)
{
	int			rc;

	if ((rc = repo_need_stanza(r)) != 0 || (rc = check_wal_name(name)) != 0)
		return rc;
	return wal_find(LR(r), name, out);
}

static char *
wal_stored_path(local_repo *lr, const wal_object *obj)
{
	char		hex[HASH_HEX_LEN + 1];
	char	   *dir = wal_dir(lr, obj->name);
	char	   *p;

	hash_to_hex(obj->hash, hex);
	p = xasprintf("%s/%s-%s.%s", dir, obj->name, hex, compress_type_ext(obj->ctype));
	free(dir);
	return p;
}

static int
local_wal_put_begin(repo *r, const char *name, compress_type ctype, repo_put **put, io_writer **w)
{
	local_repo *lr = LR(r);
	local_put  *p;
	char	   *provisional;
	int			rc;

	*put = NULL;
	*w = NULL;
	if ((rc = repo_need_stanza(r)) != 0 || (rc = check_wal_name(name)) != 0)
		return rc;
	p = xcalloc(1, sizeof(*p));
	p->drv = &local_driver;
	p->lr = lr;
	p->name = xstrdup(name);
	p->dir = wal_dir(lr, name);
	p->ctype = ctype;
	p->file.fd = -1;
	if ((rc = fio_mkdir_durable(p->dir, DIR_MODE)) != 0)
		goto fail;
	provisional = xasprintf("%s/%s", p->dir, name);
	rc = fio_atomic_open(&p->file, provisional, FILE_MODE);
	free(provisional);
	if (rc)
		goto fail;
	p->writer = io_file_writer_new(p->file.fd, p->file.tmp_path);
	*put = (repo_put *) p;
	*w = p->writer;
	return 0;
fail:
	free(p->name);
	free(p->dir);
	free(p);
	return rc;
}

static void
put_free(local_put *p)
{
	if (p->writer)
		io_free(p->writer);
	if (p->file.fd >= 0)
		fio_atomic_abort(&p->file);
	free(p->name);
	free(p->dir);
	free(p);
}

static int
archive_lock(local_repo *lr, int *fd)
{
	char	   *dir = xasprintf("%s/lock", lr->stanza_dir);
	char	   *path = xasprintf("%s/archive.lock", dir);
	int			rc = fio_mkdir_p(dir, DIR_MODE);

	if (rc == 0)
		rc = fio_lock(path, true, fd);
	free(path);
	free(dir);
	return rc;
}

static int
local_wal_put_commit(repo_put *put, const uint8_t plain_hash[HASH_LEN], bool *existed)
{
	local_put  *p = (local_put *) put;
	wal_object	cur, obj;
	int			lock_fd = -1;
	int			rc;

	*existed = false;
	if ((rc = io_close(p->writer)) != 0)
		goto out;
	if ((rc = archive_lock(p->lr, &lock_fd)) != 0)
		goto out;
	rc = wal_find(p->lr, p->name, &cur);
	if (rc == 0)
	{
		if (memcmp(cur.hash, plain_hash, HASH_LEN) == 0)
		{
			/* An earlier push may have placed it and failed (or died) before its directory's fsync. */
			char	   *stored = wal_stored_path(p->lr, &cur);

			rc = fio_make_durable(stored);
			free(stored);
			*existed = rc == 0;
			goto out;
		}
		char		a[HASH_HEX_LEN + 1], b[HASH_HEX_LEN + 1];

		hash_to_hex(cur.hash, a);
		hash_to_hex(plain_hash, b);
		rc = error_set(ERR_CONFLICT, "WAL file \"%s\" already exists in the repository with different content "
					   "(stored checksum %s, new checksum %s); the stored copy is kept", p->name, a, b);
		goto out;
	}
	if (rc != ERR_NOT_FOUND)
		goto out;
	error_clear();
	memset(&obj, 0, sizeof(obj));
	snprintf(obj.name, sizeof(obj.name), "%s", p->name);
	memcpy(obj.hash, plain_hash, HASH_LEN);
	obj.ctype = p->ctype;
	free(p->file.path);
	p->file.path = wal_stored_path(p->lr, &obj);
	rc = fio_atomic_commit(&p->file, true);
	if (rc == 0)
		p->file.fd = -1;
out:
	if (lock_fd >= 0)
		fio_unlock(lock_fd);
	put_free(p);
	return rc;
}

static void
local_wal_put_abort(repo_put *put)
{
	put_free((local_put *) put);
}

typedef struct fd_reader
{
	io_reader	base;
	io_reader  *inner;
	int			fd;
	char	   *path;
} fd_reader;

static int
fd_reader_read(io_reader *r, void *buf, size_t n, size_t *got)
{
	return io_read(((fd_reader *) r)->inner, buf, n, got);
}

static void
fd_reader_free(io_reader *r)
{
	fd_reader  *f = (fd_reader *) r;

	io_reader_free(f->inner);
	close(f->fd);
	free(f->path);
	free(f);
}

/* A reader that owns the file it reads. */
static int
open_owned_reader(const char *path, io_reader **rd, int enoent_code, const char *what)
{
	int			fd = open(path, O_RDONLY | O_CLOEXEC);
	fd_reader  *f;

	if (fd < 0)
	{
		if (errno == ENOENT)
			return error_set(enoent_code, "%s: file \"%s\" is missing", what, path);
		return error_set(ERR_FILE, "could not open file \"%s\": %s", path, strerror(errno));
	}
	f = xcalloc(1, sizeof(*f));
	f->base.read = fd_reader_read;
	f->base.free = fd_reader_free;
	f->fd = fd;
	f->path = xstrdup(path);
	f->inner = io_file_reader_new(fd, f->path);
	*rd = &f->base;
	return 0;
}

static int
local_wal_open(repo *r, const wal_object *obj, io_reader **rd)
{
	char	   *path = wal_stored_path(LR(r), obj);
	int			rc = open_owned_reader(path, rd, ERR_NOT_FOUND, "WAL file");

	free(path);
	return rc;
}

static bool
keep_any(const char *dir, const char *name)
{
	(void) dir;
	return !strstr(name, ".tmp.");
}

static int
wal_list_dir(const char *dir, int (*fn) (const wal_object *obj, void *arg), void *arg)
{
	char	  **names;
	int			n, rc;

	if ((rc = list_dir(dir, keep_any, &names, &n)) != 0)
		return rc;
	for (int i = 0; i < n && rc == 0; i++)
	{
		wal_object	obj;

		if (parse_stored_wal(names[i], &obj))
			rc = fn(&obj, arg);
	}
	repo_names_free(names, n);
	return rc;
}

static bool
keep_wal_dir(const char *dir, const char *name)
{
	(void) dir;
	return strlen(name) == 16 && strspn(name, "0123456789ABCDEF") == 16;
}

static int
local_wal_list(repo *r, int (*fn) (const wal_object *obj, void *arg), void *arg)
{
	char	   *root = xasprintf("%s/wal", LR(r)->stanza_dir);
	char	  **dirs;
	int			n, rc;

	rc = list_dir(root, keep_wal_dir, &dirs, &n);
	if (rc == 0)
	{
		char	   *hist = xasprintf("%s/history", root);

		rc = wal_list_dir(hist, fn, arg);
		free(hist);
	}
	for (int i = 0; i < n && rc == 0; i++)
	{
		char	   *d = xasprintf("%s/%s", root, dirs[i]);

		rc = wal_list_dir(d, fn, arg);
		free(d);
	}
	repo_names_free(dirs, n);
	free(root);
	return rc;
}

/*
 * Unlink under the archive lock (a commit of the same name either finds the
 * object before or stores it anew after), fsync the directory, and remove a
 * segment directory that became empty.  A push that has just created that
 * directory may then fail to create its temp file and be retried by
 * PostgreSQL; expire only removes directories older than every backup.
 */
static int
local_wal_delete(repo *r, const wal_object *obj)
{
	local_repo *lr = LR(r);
	char	   *path = NULL, *dir = NULL;
	int			lock_fd = -1, rc;

	if ((rc = repo_need_stanza(r)) != 0 || (rc = check_wal_name(obj->name)) != 0)
		return rc;
	path = wal_stored_path(lr, obj);
	dir = wal_dir(lr, obj->name);
	if ((rc = archive_lock(lr, &lock_fd)) != 0 || !fio_exists(path))
		goto out;
	if ((rc = fio_unlink(path)) != 0 || (rc = fio_fsync_dir(dir)) != 0)
		goto out;
	if (wal_file_classify(obj->name) == WAL_FILE_HISTORY)
		goto out;
	if (rmdir(dir) == 0)
		rc = fio_fsync_parent(dir);
	else if (errno != ENOTEMPTY && errno != EEXIST)
		rc = error_set(ERR_FILE, "could not remove directory \"%s\": %s", dir, strerror(errno));
out:
	if (lock_fd >= 0)
		fio_unlock(lock_fd);
	free(path);
	free(dir);
	return rc;
}

/* Blocks */

static int
blocks(repo *r, store **out)
{
	local_repo *lr = LR(r);
	int			rc;

	if ((rc = repo_need_stanza(r)) != 0)
		return rc;
	if (lr->blocks == NULL)
	{
		char	   *dir = xasprintf("%s/store", lr->stanza_dir);

		rc = store_open(dir, true, &lr->blocks);
		free(dir);
		if (rc)
			return rc;
	}
	*out = lr->blocks;
	return 0;
}

static int
local_block_exists(repo *r, const uint8_t id[HASH_LEN], bool *exists, uint32_t *stored_len)
{
	store	   *s;
	store_loc	loc;
	int			rc;

	if ((rc = blocks(r, &s)) != 0)
		return rc;
	if ((rc = store_lookup(s, id, exists, &loc)) != 0)
		return rc;
	if (stored_len)
		*stored_len = *exists ? loc.stored_len : 0;
	return 0;
}

static int
local_block_check(repo *r, const uint8_t id[HASH_LEN], uint32_t *raw_len)
{
	store	   *s;
	store_loc	loc;
	int			rc;

	if ((rc = blocks(r, &s)) != 0 || (rc = store_check(s, id, &loc)) != 0)
		return rc;
	*raw_len = loc.raw_len;
	return 0;
}

static int
local_block_put(repo *r, const uint8_t id[HASH_LEN], compress_type ctype, const void *data,
				uint32_t stored_len, uint32_t raw_len)
{
	store	   *s;
	int			rc;

	if ((rc = blocks(r, &s)) != 0)
		return rc;
	return store_put(s, id, ctype, data, stored_len, raw_len);
}

static int
local_block_flush(repo *r)
{
	return LR(r)->blocks ? store_flush(LR(r)->blocks) : 0;
}

static int
local_block_read(repo *r, const uint8_t id[HASH_LEN], void *buf, size_t cap, block_data *out)
{
	store	   *s;
	store_loc	loc;
	int			rc;

	if ((rc = blocks(r, &s)) != 0)
		return rc;
	if ((rc = store_read(s, id, buf, cap, &loc)) != 0)
		return rc;
	out->ctype = loc.ctype;
	out->raw_len = loc.raw_len;
	out->stored_len = loc.stored_len;
	return 0;
}

/*
 * The dictionary file: DICT_MAGIC, the SHA-256 of the dictionary, the
 * dictionary.  Written once (no_replace), never changed.
 */
#define DICT_FILE "store/dict"
#define DICT_MAGIC "PGKDICT1"
#define DICT_HEAD (8 + HASH_LEN)

static int
local_dict_get(repo *r, void **data, size_t *len)
{
	char	   *path = xasprintf("%s/%s", LR(r)->stanza_dir, DICT_FILE);
	char	   *buf = NULL;
	size_t		n = 0;
	uint8_t		h[HASH_LEN];
	int			rc;

	if (!fio_exists(path))
		rc = error_set(ERR_NOT_FOUND, "stanza %s has no compression dictionary", r->stanza);
	else if ((rc = fio_read_file(path, DICT_HEAD + BLOCK_DICT_MAX, &buf, &n)) != 0)
		;
	else if (n <= DICT_HEAD || memcmp(buf, DICT_MAGIC, 8) != 0)
		rc = error_set(ERR_CORRUPT, "compression dictionary \"%s\" is damaged: no header", path);
	else
	{
		hash_buf(buf + DICT_HEAD, n - DICT_HEAD, h);
		if (memcmp(h, buf + 8, HASH_LEN) != 0)
			rc = error_set(ERR_CORRUPT, "compression dictionary \"%s\" is damaged: its checksum does not match", path);
		else
		{
			*len = n - DICT_HEAD;
			*data = xmalloc(*len);
			memcpy(*data, buf + DICT_HEAD, *len);
		}
	}
	free(buf);
	free(path);
	return rc;
}

static int
local_dict_put(repo *r, const void *data, size_t len)
{
	char	   *path = xasprintf("%s/%s", LR(r)->stanza_dir, DICT_FILE);
	uint8_t		head[DICT_HEAD];
	fio_atomic	f;
	int			rc;

	memcpy(head, DICT_MAGIC, 8);
	hash_buf(data, len, head + 8);
	if ((rc = fio_atomic_open(&f, path, FILE_MODE)) == 0)
	{
		if ((rc = fio_atomic_write(&f, head, sizeof(head))) != 0 || (rc = fio_atomic_write(&f, data, len)) != 0 ||
			(rc = fio_atomic_commit(&f, true)) != 0)
			fio_atomic_abort(&f);
	}
	/* The stanza has one already: it stays (blocks may name it), made durable as for a new one. */
	if (rc == ERR_CONFLICT)
	{
		error_clear();
		rc = fio_make_durable(path);
	}
	free(path);
	return rc;
}

/* Backups */

static int
local_backup_put_begin(repo *r, const char *label, repo_put **put, io_writer **w)
{
	local_put  *p;
	char	   *path;
	int			rc;

	*put = NULL;
	*w = NULL;
	if ((rc = repo_need_stanza(r)) != 0 || (rc = check_label(label)) != 0)
		return rc;
	p = xcalloc(1, sizeof(*p));
	p->drv = &local_driver;
	p->lr = LR(r);
	p->name = xstrdup(label);
	p->dir = xasprintf("%s/backup/%s", LR(r)->stanza_dir, label);
	p->file.fd = -1;
	path = xasprintf("%s/manifest", p->dir);
	if (fio_exists(path))
		rc = error_set(ERR_CONFLICT, "backup \"%s\" already exists", label);
	else if ((rc = fio_mkdir_durable(p->dir, DIR_MODE)) == 0)
		rc = fio_atomic_open(&p->file, path, FILE_MODE);
	free(path);
	if (rc)
	{
		put_free(p);
		return rc;
	}
	p->writer = io_file_writer_new(p->file.fd, p->file.tmp_path);
	*put = (repo_put *) p;
	*w = p->writer;
	return 0;
}

static int
local_backup_put_commit(repo_put *put)
{
	local_put  *p = (local_put *) put;
	int			rc;

	if ((rc = io_close(p->writer)) == 0 && (rc = fio_atomic_commit(&p->file, true)) == 0)
		p->file.fd = -1;
	put_free(p);
	return rc;
}

static void
local_backup_put_abort(repo_put *put)
{
	local_put  *p = (local_put *) put;
	char	   *dir = xstrdup(p->dir);

	put_free(p);
	rmdir(dir);                 /* only when empty: never removes a committed backup */
	free(dir);
}

static bool
keep_backup(const char *dir, const char *name)
{
	char	   *p = xasprintf("%s/%s/manifest", dir, name);
	bool		ok = check_label(name) == 0 && fio_exists(p);

	error_clear();
	free(p);
	return ok;
}

static int
local_backup_list(repo *r, char ***labels, int *count)
{
	char	   *dir;
	int			rc;

	if ((rc = repo_need_stanza(r)) != 0)
		return rc;
	dir = xasprintf("%s/backup", LR(r)->stanza_dir);
	rc = list_dir(dir, keep_backup, labels, count);
	free(dir);
	return rc;
}

static int
local_backup_open(repo *r, const char *label, io_reader **rd)
{
	char	   *path;
	char	   *what;
	int			rc;

	if ((rc = repo_need_stanza(r)) != 0 || (rc = check_label(label)) != 0)
		return rc;
	path = xasprintf("%s/backup/%s/manifest", LR(r)->stanza_dir, label);
	what = xasprintf("backup \"%s\"", label);
	rc = open_owned_reader(path, rd, ERR_NOT_FOUND, what);
	free(what);
	free(path);
	return rc;
}

static int
local_backup_delete(repo *r, const char *label)
{
	char	   *dir, *manifest;
	int			rc;

	if ((rc = repo_need_stanza(r)) != 0 || (rc = check_label(label)) != 0)
		return rc;
	dir = xasprintf("%s/backup/%s", LR(r)->stanza_dir, label);
	manifest = xasprintf("%s/manifest", dir);
	/* Removing the manifest first is the commit point of a delete. */
	if ((rc = fio_unlink(manifest)) == 0 && (rc = fio_fsync_dir(dir)) == 0)
		rc = fio_remove_tree(dir);
	free(manifest);
	free(dir);
	return rc;
}

static int
local_blocks_hold(repo *r)
{
	store	   *s;

	return blocks(r, &s);
}

static int
local_gc(repo *r, bool dry_run, repo_gc_result *res)
{
	store	   *s;
	int			rc;

	if ((rc = blocks(r, &s)) != 0)
		return rc;
	return gc_run(r, s, dry_run, res);
}

static const repo_driver local_driver = {
	.name = "local",
	.close = local_close,
	.stanza_create = local_stanza_create,
	.stanza_get = local_stanza_get,
	.stanza_list = local_stanza_list,
	.wal_put_begin = local_wal_put_begin,
	.wal_put_commit = local_wal_put_commit,
	.wal_put_abort = local_wal_put_abort,
	.wal_find = local_wal_find,
	.wal_open = local_wal_open,
	.wal_list = local_wal_list,
	.wal_delete = local_wal_delete,
	.block_exists = local_block_exists,
	.block_put = local_block_put,
	.block_flush = local_block_flush,
	.block_read = local_block_read,
	.block_check = local_block_check,
	.backup_put_begin = local_backup_put_begin,
	.backup_put_commit = local_backup_put_commit,
	.backup_put_abort = local_backup_put_abort,
	.backup_list = local_backup_list,
	.backup_open = local_backup_open,
	.backup_delete = local_backup_delete,
	.blocks_hold = local_blocks_hold,
	.gc = local_gc,
	.dict_get = local_dict_get,
	.dict_put = local_dict_put,
};
