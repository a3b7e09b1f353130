/*
 * push.c: archive-push, called by PostgreSQL's archive_command with the path
 * of a finished WAL file (relative to the data directory, its working
 * directory).  Streams the file through SHA-256 and compression into the
 * repository; exits 0 only when the file is durable there.  The same content
 * pushed again succeeds with a warning; other content under the same name is
 * refused and the stored copy kept.
 */
#include "archive.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../repo/repo.h"
#include "../repo/stanza.h"
#include "../src/error.h"
#include "../src/fileio.h"
#include "../src/log.h"
#include "../src/mem.h"
#include "../src/option.h"

#define PUSH_BUFFER (1024 * 1024)
/* How far ahead of the reader the kernel is asked to read the WAL file. */
#define PUSH_READAHEAD (64 * PUSH_BUFFER)

/* When pg1-path is configured, its pg_control must match the stanza. */
static int
check_cluster(const stanza_info *st)
{
	const char *pgpath = opt_str_idx(OPT_PG_PATH, 0);
	pg_control_info pc;
	int			rc;

	if (pgpath == NULL)
		return 0;
	if ((rc = pg_control_read(pgpath, &pc)) != 0)
		return rc;
	return stanza_check_cluster(st, &pc);
}

/* Stream fd into the repository as WAL file `name`. */
static int
push_stream(repo *r, const stanza_info *st, int fd, const char *path, const char *name, bool *existed)
{
	wal_file_kind kind = wal_file_classify(name);
	uint8_t    *buf = xmalloc(PUSH_BUFFER);
	repo_put   *put = NULL;
	io_writer  *sink, *chain = NULL;
	uint8_t		digest[HASH_LEN];
	uint64_t	total = 0;
	compress_type ctype;
	int			level, rc;
	bool		first = true;

	repo_compress_settings(&ctype, &level);
	if ((rc = repo_wal_put_begin(r, name, ctype, &put, &sink)) != 0)
		goto out;
	chain = io_hash_writer_new(io_compress_writer_new(ctype, level, (int) opt_int(OPT_PROCESS_MAX),
													  io_borrow_writer_new(sink)));
	/* Reading overlaps compression: the kernel fetches ahead while the codec works. */
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	posix_fadvise(fd, 0, PUSH_READAHEAD, POSIX_FADV_WILLNEED);
	for (;;)
	{
		size_t		got;

		posix_fadvise(fd, (off_t) (total + PUSH_READAHEAD), PUSH_BUFFER, POSIX_FADV_WILLNEED);
		if ((rc = fio_read_full(fd, buf, PUSH_BUFFER, &got, path)) != 0)
			goto out;
		if (got == 0)
			break;
		if (first && (kind == WAL_FILE_SEGMENT || kind == WAL_FILE_PARTIAL) &&
			(rc = wal_check_segment_header(buf, got, name, st->system_id, st->wal_segment_size)) != 0)
			goto out;
		first = false;
		if ((rc = io_write(chain, buf, got)) != 0)
			goto out;
		total += got;
	}
	if (kind == WAL_FILE_SEGMENT && total != st->wal_segment_size)
	{
		rc = error_set(ERR_FORMAT, "WAL file \"%s\" has %llu bytes, but segments of this stanza have %u",
					   path, (unsigned long long) total, st->wal_segment_size);
		goto out;
	}
	if ((rc = io_close(chain)) != 0)
		goto out;
	io_hash_writer_result(chain, digest, NULL);
	rc = repo_wal_put_commit(put, digest, existed);
	put = NULL;
out:
	if (chain)
		io_free(chain);
	repo_wal_put_abort(put);
	free(buf);
	return rc;
}

int
cmd_archive_push(void)
{
	const char *stanza = opt_str(OPT_STANZA);
	const char *path, *name;
	stanza_info st;
	repo	   *r = NULL;
	bool		existed = false;
	int			fd = -1, rc;

	if (stanza == NULL)
		return error_set(ERR_OPTION, "archive-push requires option stanza");
	if (opt_param_count() != 1)
		return error_set(ERR_OPTION, "archive-push takes one parameter, the WAL file path (%%p in archive_command)");
	path = opt_param(0);
	name = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
	if (wal_file_classify(name) == WAL_FILE_INVALID)
		return error_set(ERR_FORMAT, "\"%s\" is not the name of a WAL file", name);
	if ((rc = repo_open(stanza, &r)) != 0)
		return rc;
	if ((rc = repo_stanza_get(r, &st)) != 0 || (rc = check_cluster(&st)) != 0)
		goto out;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
	{
		rc = error_set(ERR_FILE, "could not open WAL file \"%s\": %s", path, strerror(errno));
		goto out;
	}
	rc = push_stream(r, &st, fd, path, name, &existed);
	if (rc == 0 && existed)
		log_warn("WAL file %s is already in the repository with the same content; nothing to do", name);
	else if (rc == 0)
		log_info("pushed WAL file %s to the repository", name);
out:
	if (fd >= 0)
		close(fd);
	repo_close(r);
	return rc;
}
