/*
 * repo.c: the repository client interface: opens the configured driver and
 * dispatches each operation to it (see repo.h).
 */
#include "repo.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "manifest.h"
#include "../src/error.h"
#include "../src/log.h"
#include "../src/mem.h"
#include "../src/option.h"

int			repo_local_open(const char *path, const char *stanza, repo **out);

int
repo_check_stanza_name(const char *name)
{
	size_t		len = name ? strlen(name) : 0;

	if (len == 0 || len > 64 || name[0] == '.')
		return error_set(ERR_OPTION, "invalid stanza name \"%s\": use 1 to 64 letters, digits, '_', '-' or '.', not starting with '.'",
						 name ? name : "");
	for (size_t i = 0; i < len; i++)
	{
		char		c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.'))
			return error_set(ERR_OPTION, "invalid stanza name \"%s\": character '%c' is not allowed", name, c);
	}
	return 0;
}

void
repo_compress_settings(compress_type *type, int *level)
{
	const char *name = opt_str(OPT_COMPRESS_TYPE);
	int			t = compress_type_parse(name);

	if (t < 0)
	{
		log_warn("compress-type=%s is not supported by pgkeep; using zst", name);
		t = COMPRESS_ZST;
	}
	*type = (compress_type) t;
	*level = opt_has(OPT_COMPRESS_LEVEL) ? (int) opt_int(OPT_COMPRESS_LEVEL) : compress_default_level(*type);
}

int
repo_open(const char *stanza, repo **out)
{
	int			rc;

	*out = NULL;
	if (stanza != NULL && (rc = repo_check_stanza_name(stanza)) != 0)
		return rc;
	if (opt_has_idx(OPT_REPO_HOST, 0))
	{
		static bool warned;
		const char *type = opt_str_idx(OPT_REPO_HOST_TYPE, 0);

		/*
		 * With repo1-host-type=tls the repository is the server's: repo1-path,
		 * if set, is not used here.  A node's file may well carry both; one
		 * given on the command line was surely meant to be used.
		 */
		if (type != NULL && strcmp(type, "tls") == 0)
		{
			if (opt_on_cmdline(OPT_REPO_PATH) && !warned)
				log_warn("--repo1-path=%s is not used: repo1-host=%s is set, so the repository is the one its server owns; "
						 "add --reset-repo1-host to use the repository at %s", opt_str_idx(OPT_REPO_PATH, 0),
						 opt_str_idx(OPT_REPO_HOST, 0), opt_str_idx(OPT_REPO_PATH, 0));
			warned = true;
			return repo_remote_open(stanza, out);
		}
		/* SSH (pgBackRest's default) is not there yet: a repository reachable as repo1-path still works. */
		if (!opt_given(OPT_REPO_PATH))
			return error_set(ERR_OPTION, "repo1-host-type=%s is not supported yet: set repo1-host-type=tls to use "
							 "pgkeep server (doc/server.md), or repo1-path to use the repository directly", type ? type : "");
		if (!warned)
			log_warn("repo1-host-type=%s is not supported yet: using the local repository at %s", type ? type : "",
					 opt_str_idx(OPT_REPO_PATH, 0));
		warned = true;
	}
	return repo_open_local(opt_str_idx(OPT_REPO_PATH, 0), stanza, out);
}

int
repo_open_local(const char *path, const char *stanza, repo **out)
{
	int			rc;

	*out = NULL;
	if (stanza != NULL && (rc = repo_check_stanza_name(stanza)) != 0)
		return rc;
	if (path == NULL || path[0] != '/')
		return error_set(ERR_OPTION, "repository path \"%s\" must be absolute", path ? path : "");
	return repo_local_open(path, stanza, out);
}

void
repo_close(repo *r)
{
	if (r)
	{
		block_dict_free(r->dict);
		r->drv->close(r);
	}
}

const char *
repo_stanza(repo *r)
{
	return r->stanza;
}

void
repo_names_free(char **names, int count)
{
	for (int i = 0; i < count; i++)
		free(names[i]);
	free(names);
}

int
repo_stanza_create(repo *r, const stanza_info *info)
{
	return r->drv->stanza_create(r, info);
}

int
repo_stanza_get(repo *r, stanza_info *info)
{
	return r->drv->stanza_get(r, info);
}

int
repo_stanza_list(repo *r, char ***names, int *count)
{
	return r->drv->stanza_list(r, names, count);
}

int
repo_wal_put_begin(repo *r, const char *name, compress_type ctype, repo_put **put, io_writer **w)
{
	return r->drv->wal_put_begin(r, name, ctype, put, w);
}

/* The driver of a put handle is the first field of every driver's put struct. */
typedef struct put_head
{
	const repo_driver *drv;
} put_head;

int
repo_wal_put_commit(repo_put *put, const uint8_t plain_hash[HASH_LEN], bool *existed)
{
	return ((put_head *) put)->drv->wal_put_commit(put, plain_hash, existed);
}

void
repo_wal_put_abort(repo_put *put)
{
	if (put)
		((put_head *) put)->drv->wal_put_abort(put);
}

int
repo_wal_find(repo *r, const char *name, wal_object *out)
{
	return r->drv->wal_find(r, name, out);
}

int
repo_wal_wait(repo *r, const char *name, int64_t timeout_s)
{
	time_t		start = time(NULL);
	wal_object	obj;
	int			rc;

	for (;;)
	{
		rc = repo_wal_find(r, name, &obj);
		if (rc != ERR_NOT_FOUND)
			return rc;
		if (time(NULL) - start >= timeout_s)
			return error_set(ERR_TIMEOUT, "WAL segment %s did not reach the repository within archive-timeout (%llds); "
							 "check that archive_command runs pgkeep archive-push and look at the PostgreSQL log",
							 name, (long long) timeout_s);
		usleep(100 * 1000);
	}
}

int
repo_wal_open(repo *r, const wal_object *obj, io_reader **rd)
{
	return r->drv->wal_open(r, obj, rd);
}

int
repo_wal_list(repo *r, int (*fn) (const wal_object *obj, void *arg), void *arg)
{
	return r->drv->wal_list(r, fn, arg);
}

int
repo_wal_delete(repo *r, const wal_object *obj)
{
	return r->drv->wal_delete(r, obj);
}

int
repo_block_exists(repo *r, const uint8_t id[HASH_LEN], bool *exists, uint32_t *stored_len)
{
	return r->drv->block_exists(r, id, exists, stored_len);
}

int
repo_block_exists_many(repo *r, const uint8_t (*ids)[HASH_LEN], size_t n, bool *exists, uint32_t *stored_len)
{
	int			rc = 0;

	if (n == 0)
		return 0;
	if (n > REPO_EXISTS_MAX)
		return error_set(ERR_INTERNAL, "repo_block_exists_many of %zu ids (at most %d)", n, REPO_EXISTS_MAX);
	if (r->drv->block_exists_many)
		return r->drv->block_exists_many(r, ids, n, exists, stored_len);
	for (size_t i = 0; i < n && rc == 0; i++)
		rc = r->drv->block_exists(r, ids[i], &exists[i], &stored_len[i]);
	return rc;
}

int
repo_block_exists_ask(repo *r, const uint8_t (*ids)[HASH_LEN], size_t n)
{
	if (n == 0 || n > REPO_EXISTS_MAX)
		return error_set(ERR_INTERNAL, "repo_block_exists_ask of %zu ids (1 to %d)", n, REPO_EXISTS_MAX);
	if (r->drv->block_exists_ask)
		return r->drv->block_exists_ask(r, ids, n);
	r->ask_ids = ids;
	r->ask_n = n;
	return 0;
}

int
repo_block_exists_answer(repo *r, bool *exists, uint32_t *stored_len)
{
	size_t		n = r->ask_n;

	if (r->drv->block_exists_answer)
		return r->drv->block_exists_answer(r, exists, stored_len);
	if (n == 0)
		return error_set(ERR_INTERNAL, "repo_block_exists_answer without a question");
	r->ask_n = 0;
	return repo_block_exists_many(r, r->ask_ids, n, exists, stored_len);
}

int
repo_block_put(repo *r, const uint8_t id[HASH_LEN], compress_type ctype, const void *data,
			   uint32_t stored_len, uint32_t raw_len)
{
	return r->drv->block_put(r, id, ctype, data, stored_len, raw_len);
}

int
repo_block_flush(repo *r)
{
	return r->drv->block_flush(r);
}

int
repo_block_read(repo *r, const uint8_t id[HASH_LEN], void *buf, size_t cap, block_data *out)
{
	return r->drv->block_read(r, id, buf, cap, out);
}

bool
repo_prefetches(const repo *r)
{
	return r->drv->block_prefetch != NULL;
}

int
repo_block_prefetch(repo *r, const uint8_t (*ids)[HASH_LEN], size_t n)
{
	if (r->drv->block_prefetch == NULL)
		return 0;
	/*
	 * The stanza's dictionary first: fetched when the first block that needs
	 * it is read, its request would go after the reads asked for here and
	 * drop their answers.  A failure is left for that block's read to report.
	 */
	if (!r->dict_known && !r->dict_damaged)
	{
		const block_dict *d;

		if (repo_block_dict(r, compress_default_level(COMPRESS_ZST), &d) != 0)
		{
			error_clear();
			r->dict_damaged = false;
		}
	}
	return r->drv->block_prefetch(r, ids, n);
}

int
repo_block_check(repo *r, const uint8_t id[HASH_LEN], uint32_t *raw_len)
{
	return r->drv->block_check(r, id, raw_len);
}

int
repo_block_check_many(repo *r, const uint8_t (*ids)[HASH_LEN], size_t n, int *rc, uint32_t *raw_len, char **msg)
{
	if (n == 0 || n > REPO_EXISTS_MAX)
		return error_set(ERR_INTERNAL, "repo_block_check_many of %zu ids (1 to %d)", n, REPO_EXISTS_MAX);
	if (r->drv->block_check_many)
		return r->drv->block_check_many(r, ids, n, rc, raw_len, msg);
	for (size_t i = 0; i < n; i++)
	{
		raw_len[i] = 0;
		rc[i] = r->drv->block_check(r, ids[i], &raw_len[i]);
		msg[i] = rc[i] ? xstrdup(error_msg()) : NULL;
		error_clear();
	}
	return 0;
}

int
repo_dict_get(repo *r, void **data, size_t *len)
{
	int			rc;

	*data = NULL;
	*len = 0;
	if ((rc = repo_need_stanza(r)) != 0)
		return rc;
	return r->drv->dict_get(r, data, len);
}

int
repo_dict_put(repo *r, const void *data, size_t len)
{
	int			rc;

	if ((rc = repo_need_stanza(r)) != 0)
		return rc;
	if (len == 0 || len > BLOCK_DICT_MAX)
		return error_set(ERR_FORMAT, "a compression dictionary of %zu bytes is not allowed (1 to %d)", len, BLOCK_DICT_MAX);
	return r->drv->dict_put(r, data, len);
}

int
repo_block_dict(repo *r, int level, const block_dict **out)
{
	void	   *data = NULL;
	size_t		len = 0;
	int			rc = 0;

	*out = NULL;
	if (r->dict_damaged)
		return error_set(ERR_CORRUPT, "the compression dictionary of stanza %s is damaged (reported before)", r->stanza);
	if (r->dict_known && (r->dict == NULL || block_dict_level(r->dict) == level))
	{
		*out = r->dict;
		return 0;
	}
	block_dict_free(r->dict);
	r->dict = NULL;
	r->dict_known = false;
	rc = repo_dict_get(r, &data, &len);
	if (rc == ERR_NOT_FOUND)
	{
		error_clear();
		rc = 0;
	}
	else if (rc == 0 && (rc = block_dict_load(data, len, level, &r->dict)) != 0)
		rc = error_wrap(ERR_CORRUPT, "the compression dictionary of stanza %s", r->stanza);
	/* One reader reports a damaged dictionary once, not once per block. */
	if (rc == ERR_CORRUPT)
		r->dict_damaged = true;
	free(data);
	if (rc == 0)
	{
		r->dict_known = true;
		*out = r->dict;
	}
	return rc;
}

/* repo_block_fetch and repo_block_load: a block of at least min and at most max plain bytes. */
static int
block_fetch(repo *r, block_codec *codec, const uint8_t id[HASH_LEN], void *stored, size_t cap, void *out,
			uint32_t min, size_t max, uint32_t *len)
{
	uint8_t		hash[HASH_LEN];
	block_data	bd;
	int			rc = repo_block_read(r, id, stored, cap, &bd);

	if (rc == 0 && (bd.raw_len < min || bd.raw_len > max))
		rc = min == max ? error_set(ERR_CORRUPT, "the repository holds %u bytes, expected %u", bd.raw_len, min)
			: error_set(ERR_CORRUPT, "the repository holds %u bytes, expected at most %zu", bd.raw_len, max);
	/* A block compressed with the stanza's dictionary: the codec gets it (loaded once per handle). */
	if (rc == 0 && block_codec_dict(codec) == NULL && block_frame_dict_id(bd.ctype, stored, bd.stored_len) != 0)
	{
		const block_dict *d;
		/* Any level decompresses: keep the one loaded, so that a codec given it before keeps a live pointer. */
		int			level = r->dict ? block_dict_level(r->dict) : compress_default_level(COMPRESS_ZST);

		if ((rc = repo_block_dict(r, level, &d)) == 0)
			block_codec_use_dict(codec, d);
	}
	if (rc == 0)
		rc = block_decompress(codec, bd.ctype, stored, bd.stored_len, out, bd.raw_len);
	if (rc == 0)
	{
		hash_buf(out, bd.raw_len, hash);
		if (memcmp(hash, id, HASH_LEN) != 0)
			rc = error_set(ERR_CORRUPT, "the content does not match the id");
	}
	if (rc == 0 && len)
		*len = bd.raw_len;
	return rc;
}

int
repo_block_fetch(repo *r, block_codec *codec, const uint8_t id[HASH_LEN], void *stored, size_t cap,
				 void *out, uint32_t len)
{
	return block_fetch(r, codec, id, stored, cap, out, len, len, NULL);
}

int
repo_block_load(repo *r, block_codec *codec, const uint8_t id[HASH_LEN], void *stored, size_t cap,
				void *out, size_t max, uint32_t *len)
{
	return block_fetch(r, codec, id, stored, cap, out, 0, max, len);
}

int
repo_backup_put_begin(repo *r, const char *label, repo_put **put, io_writer **w)
{
	return r->drv->backup_put_begin(r, label, put, w);
}

int
repo_backup_put_commit(repo_put *put)
{
	return ((put_head *) put)->drv->backup_put_commit(put);
}

void
repo_backup_put_abort(repo_put *put)
{
	if (put)
		((put_head *) put)->drv->backup_put_abort(put);
}

int
repo_backup_list(repo *r, char ***labels, int *count)
{
	return r->drv->backup_list(r, labels, count);
}

int
repo_backup_open(repo *r, const char *label, io_reader **rd)
{
	return r->drv->backup_open(r, label, rd);
}

int
repo_backup_delete(repo *r, const char *label)
{
	return r->drv->backup_delete(r, label);
}

int
repo_backup_header(repo *r, const char *label, manifest_header *h)
{
	char	   *what = xasprintf("manifest of backup %s", label);
	io_reader  *rd;
	int			rc = repo_backup_open(r, label, &rd);

	if (rc == 0)
	{
		manifest_reader *mr = manifest_reader_new(rd, what);

		rc = manifest_read_header(mr, h);
		manifest_reader_free(mr);
		io_reader_free(rd);
	}
	free(what);
	return rc;
}

int
repo_need_stanza(repo *r)
{
	if (r->stanza == NULL)
		return error_set(ERR_OPTION, "this operation requires option stanza");
	return 0;
}

int
repo_blocks_hold(repo *r)
{
	return r->drv->blocks_hold(r);
}

int
repo_gc(repo *r, bool dry_run, repo_gc_result *res)
{
	memset(res, 0, sizeof(*res));
	return r->drv->gc(r, dry_run, res);
}
