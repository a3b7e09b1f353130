/*
 * test_pgdata.c: the data-directory walker of backups: PostgreSQL's
 * exclusions, unlogged relations, tablespaces through pg_tblspc, and
 * manifest order.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "fileio.h"
#include "harness.h"
#include "mem.h"
#include "../repo/pgdata.h"

static char tmpdir[] = "/tmp/pgkeep-test-pgdata.XXXXXX";

static void
touch(const char *rel, const char *content)
{
	char	   *p = xasprintf("%s/%s", tmpdir, rel);
	char	   *slash = strrchr(p, '/');

	*slash = '\0';
	fio_mkdir_p(p, 0700);
	*slash = '/';
	int			fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	if (fd >= 0)
	{
		if (write(fd, content, strlen(content)) < 0)
			CHECK(!"write failed");
		close(fd);
	}
	free(p);
}

static void
test_walk(void)
{
	const char *files[] = {
		"data/PG_VERSION", "data/global/pg_control", "data/global/1262", "data/base/1/1259",
		"data/base/1/1259_fsm", "data/base/1/16384", "data/base/1/16384.1", "data/base/1/16384_fsm",
		"data/base/1/16384_init", "data/base/1/t3_1234", "data/base/1/pg_internal.init",
		"data/base/pgsql_tmp/pgsql_tmp123.0", "data/pg_wal/000000010000000000000001",
		"data/pg_wal/archive_status/000000010000000000000001.ready", "data/postmaster.pid",
		"data/backup_label", "data/a.x", "data/a/b", "data/pg_stat_tmp/db_1.stat",
		"ts/PG_15_202209061/1/16390", "ts/PG_14_202107181/1/99", NULL
	};
	const char *expect[] = {
		"PG_VERSION", "a", "a/b", "a.x", "base", "base/1", "base/1/1259", "base/1/1259_fsm",
		"base/1/16384_init", "global", "global/1262", "global/pg_control", "pg_stat_tmp",
		"pg_tblspc", "pg_tblspc/16385", "pg_tblspc/16385/PG_15_202209061",
		"pg_tblspc/16385/PG_15_202209061/1", "pg_tblspc/16385/PG_15_202209061/1/16390", "pg_wal", NULL
	};

	for (int i = 0; files[i]; i++)
		touch(files[i], "x");
	char	   *tsdir = xasprintf("%s/data/pg_tblspc", tmpdir);
	char	   *link = xasprintf("%s/16385", tsdir);
	char	   *target = xasprintf("%s/ts", tmpdir);
	char	   *datadir = xasprintf("%s/data", tmpdir);

	fio_mkdir_p(tsdir, 0700);
	CHECK_EQ_INT(symlink(target, link), 0);

	pgdata_walker *w;
	pgdata_entry *e;
	bool		done;
	int			i = 0;
	char	   *prev = NULL;

	CHECK_EQ_INT(pgdata_walk_open(datadir, "PG_15_202209061", &w), 0);
	while (pgdata_walk_next(w, &e, &done) == 0 && !done)
	{
		if (expect[i] == NULL)
		{
			CHECK_EQ_STR(e->path, "(nothing more)");
			break;
		}
		CHECK_EQ_STR(e->path, expect[i]);
		if (prev)
			CHECK(manifest_path_cmp(prev, e->path) < 0);
		free(prev);
		prev = xstrdup(e->path);
		if (strcmp(e->path, "base/1/1259") == 0)
			CHECK(e->relation && e->kind == MF_FILE);
		if (strcmp(e->path, "pg_tblspc/16385") == 0)
		{
			CHECK(e->kind == MF_LINK);
			CHECK_EQ_STR(e->link_target, target);
		}
		i++;
	}
	CHECK(expect[i] == NULL);
	pgdata_walk_close(w);
	free(prev);
	free(tsdir);
	free(link);
	free(target);
	free(datadir);
}

static void
test_missing_dir(void)
{
	pgdata_walker *w = NULL;
	char	   *p = xasprintf("%s/nope", tmpdir);
	pgdata_entry *e;
	bool		done = false;

	/* A missing data directory walks as empty only if the caller already checked it; here: empty. */
	CHECK_EQ_INT(pgdata_walk_open(p, "PG_15_1", &w), 0);
	CHECK_EQ_INT(pgdata_walk_next(w, &e, &done), 0);
	CHECK(done);
	pgdata_walk_close(w);
	free(p);
}

static void
test_path_order(void)
{
	CHECK(manifest_path_cmp("a", "a/b") < 0);
	CHECK(manifest_path_cmp("a/b", "a.x") < 0);
	CHECK(manifest_path_cmp("a/zzz", "ab") < 0);
	CHECK(manifest_path_cmp("base/1/2", "base/1/2") == 0);
	CHECK(manifest_path_cmp("base/10", "base/1/2") > 0);
}

int
main(void)
{
	if (mkdtemp(tmpdir) == NULL)
		return 1;
	RUN(test_walk);
	RUN(test_missing_dir);
	RUN(test_path_order);
	fio_remove_tree(tmpdir);
	return harness_done();
}
