/*
 * pgdata.h: walks a PostgreSQL data directory the way a base backup reads
 * it: PostgreSQL's documented exclusions applied (pg_wal contents,
 * postmaster.pid, temporary files and relations, unlogged relations other
 * than their init forks, ...), tablespaces followed through pg_tblspc.
 *
 * Entries come in manifest order: depth first, the names of each directory
 * in bytewise order (manifest_path_cmp).  Memory holds one sorted listing
 * per directory level, never the whole tree.
 */
#ifndef PGKEEP_PGDATA_H
#define PGKEEP_PGDATA_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "manifest.h"

typedef struct pgdata_entry
{
	manifest_kind kind;
	char	   *path;           /* relative to the data directory */
	char	   *full_path;      /* where to read it */
	struct stat st;
	char	   *link_target;    /* links */
	bool		relation;       /* a relation file whose pages carry checksums */
	uint32_t	relseg;         /* its .N segment number */
} pgdata_entry;

typedef struct pgdata_walker pgdata_walker;

/*
 * tblspc_dir is the per-version directory inside each tablespace
 * ("PG_15_202209061"): only it is read from a tablespace.
 */
int			pgdata_walk_open(const char *datadir, const char *tblspc_dir, pgdata_walker **out);
/* Next entry (owned by the walker until the next call); *done at the end. */
int			pgdata_walk_next(pgdata_walker *w, pgdata_entry **e, bool *done);
void		pgdata_walk_close(pgdata_walker *w);

/* Whether a name (not path) is excluded by the rules; exported for tests. */
bool		pgdata_name_excluded(const char *dir_relpath, const char *name);

#endif
