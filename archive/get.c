/*
 * get.c: archive-get, called by PostgreSQL's restore_command with a WAL file
 * name and the path to write it to.  Exit code 1 (ERR_NOT_FOUND) means the
 * repository does not have the file, which PostgreSQL takes as the end of
 * the archive; every other failure has its own code.  The file is verified
 * against its SHA-256 before it appears at the destination.
 */
#include "archive.h"

#include <stdlib.h>
#include <string.h>

#include "../repo/repo.h"
#include "../src/error.h"
#include "../src/fileio.h"
#include "../src/log.h"
#include "../src/mem.h"
#include "../src/option.h"
#include "../src/pgformat.h"

static int
get_stream(repo *r, const wal_object *obj, const char *dest)
{
	fio_atomic	out = {.fd = -1};
	io_reader  *rd = NULL;
	io_writer  *chain = NULL;
	uint8_t		digest[HASH_LEN];
	int			rc;

	if ((rc = repo_wal_open(r, obj, &rd)) != 0)
		return rc;
	if ((rc = fio_atomic_open(&out, dest, 0600)) != 0)
		goto out;
	chain = io_decompress_writer_new(obj->ctype, io_hash_writer_new(io_file_writer_new(out.fd, out.tmp_path)));
	if ((rc = io_copy(rd, chain)) != 0 || (rc = io_close(chain)) != 0)
	{
		if (rc == ERR_CORRUPT)
			error_wrap(rc, "WAL file \"%s\" in the repository is corrupt", obj->name);
		goto out;
	}
	io_hash_writer_result(chain->next, digest, NULL);
	if (memcmp(digest, obj->hash, HASH_LEN) != 0)
	{
		rc = error_set(ERR_CORRUPT, "WAL file \"%s\" in the repository does not match its checksum", obj->name);
		goto out;
	}
	if ((rc = fio_atomic_commit(&out, false)) == 0)
		out.fd = -1;
out:
	if (chain)
		io_free(chain);
	if (out.fd >= 0)
		fio_atomic_abort(&out);
	io_reader_free(rd);
	return rc;
}

int
cmd_archive_get(void)
{
	const char *stanza = opt_str(OPT_STANZA);
	const char *name, *dest;
	wal_object	obj;
	repo	   *r = NULL;
	int			rc;

	if (stanza == NULL)
		return error_set(ERR_OPTION, "archive-get requires option stanza");
	if (opt_param_count() != 2)
		return error_set(ERR_OPTION, "archive-get takes two parameters, the WAL file name and the destination path (%%f \"%%p\" in restore_command)");
	name = opt_param(0);
	dest = opt_param(1);
	if (wal_file_classify(name) == WAL_FILE_INVALID)
		return error_set(ERR_FORMAT, "\"%s\" is not the name of a WAL file", name);
	if ((rc = repo_open(stanza, &r)) != 0)
		return rc;
	/* A missing stanza is a configuration error, not the end of the archive. */
	stanza_info st;

	if ((rc = repo_stanza_get(r, &st)) == 0 && (rc = repo_wal_find(r, name, &obj)) == 0 &&
		(rc = get_stream(r, &obj, dest)) == 0)
		log_info("got WAL file %s from the repository", name);
	repo_close(r);
	return rc;
}
