/*
 * pgdata.c: the data-directory walker of base backups (see pgdata.h).
 * The exclusion list follows PostgreSQL's documentation of what a base
 * backup may omit.
 */
#include "pgdata.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../src/error.h"
#include "../src/mem.h"
#include "../src/pgformat.h"

/* Directories whose contents are not copied (the directory itself is). */
static const char *const contents_excluded[] = {
	"pg_wal", "pg_replslot", "pg_dynshmem", "pg_notify", "pg_serial", "pg_snapshots",
	"pg_stat_tmp", "pg_subtrans", "pg_xlog", "pg_log_tmp", NULL
};

/* Files of the top directory not copied. */
static const char *const top_files_excluded[] = {
	"postmaster.pid", "postmaster.opts", "backup_label", "backup_label.old", "tablespace_map",
	"tablespace_map.old", "postgresql.auto.conf.tmp", "current_logfiles.tmp", "recovery.signal",
	"standby.signal", NULL
};

typedef struct walk_level
{
	char	   *rel;            /* relative path of this directory ("" for the top) */
	char	   *full;
	char	  **names;
	int			count;
	int			next;
	bool		skip_contents;
	bool		is_tblspc_root; /* pg_tblspc/OID: only tblspc_dir inside */
	char	  **unlogged;       /* relfilenodes with an _init fork in this directory */
	int			nunlogged;
} walk_level;

struct pgdata_walker
{
	char	   *tblspc_dir;
	walk_level *levels;
	int			depth;
	int			cap;
	pgdata_entry cur;
};

static bool
in_list(const char *const *list, const char *name)
{
	for (int i = 0; list[i]; i++)
		if (strcmp(list[i], name) == 0)
			return true;
	return false;
}

/* t<digits>_<digits>...: a temporary relation. */
static bool
is_temp_relation(const char *name)
{
	const char *p = name;

	if (*p++ != 't' || !(*p >= '0' && *p <= '9'))
		return false;
	while (*p >= '0' && *p <= '9')
		p++;
	return *p == '_' && p[1] >= '0' && p[1] <= '9';
}

bool
pgdata_name_excluded(const char *dir_relpath, const char *name)
{
	if (strncmp(name, "pgsql_tmp", 9) == 0 || strcmp(name, "pg_internal.init") == 0)
		return true;
	if (dir_relpath[0] == '\0' && in_list(top_files_excluded, name))
		return true;
	if (is_temp_relation(name))
		return true;
	return false;
}

static int
cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

/* Leading digits of a relation file name ("16384" of "16384_fsm.2"). */
static size_t
relfilenode_len(const char *name)
{
	size_t		n = strspn(name, "0123456789");

	return n > 0 && (name[n] == '\0' || name[n] == '_' || name[n] == '.') ? n : 0;
}

static bool
is_unlogged(walk_level *l, const char *name)
{
	size_t		n = relfilenode_len(name);

	if (n == 0 || strcmp(name + n, "_init") == 0 || strncmp(name + n, "_init.", 6) == 0)
		return false;
	for (int i = 0; i < l->nunlogged; i++)
		if (strlen(l->unlogged[i]) == n && strncmp(l->unlogged[i], name, n) == 0)
			return true;
	return false;
}

static int
push_level(pgdata_walker *w, const char *rel, const char *full, bool skip_contents, bool tblspc_root)
{
	DIR		   *d;
	struct dirent *de;
	walk_level *l;
	int			cap = 0;

	if (w->depth == w->cap)
	{
		w->cap = w->cap ? w->cap * 2 : 8;
		w->levels = xrealloc(w->levels, sizeof(walk_level) * (size_t) w->cap);
	}
	l = &w->levels[w->depth];
	memset(l, 0, sizeof(*l));
	l->rel = xstrdup(rel);
	l->full = xstrdup(full);
	l->skip_contents = skip_contents;
	l->is_tblspc_root = tblspc_root;
	w->depth++;
	if (skip_contents)
		return 0;
	d = opendir(full);
	if (d == NULL)
	{
		/* A directory dropped during the backup (a dropped database) is fine: WAL replay agrees. */
		if (errno == ENOENT)
			return 0;
		return error_set(ERR_FILE, "could not open directory \"%s\": %s", full, strerror(errno));
	}
	while ((de = readdir(d)) != NULL)
	{
		const char *name = de->d_name;
		size_t		n;

		if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
			continue;
		if (tblspc_root && strcmp(name, w->tblspc_dir) != 0)
			continue;
		if (pgdata_name_excluded(rel, name))
			continue;
		if ((n = relfilenode_len(name)) > 0 && strcmp(name + n, "_init") == 0)
		{
			l->unlogged = xrealloc(l->unlogged, sizeof(char *) * (size_t) (l->nunlogged + 1));
			l->unlogged[l->nunlogged++] = xstrndup(name, n);
		}
		if (l->count == cap)
		{
			cap = cap ? cap * 2 : 64;
			l->names = xrealloc(l->names, sizeof(char *) * (size_t) cap);
		}
		l->names[l->count++] = xstrdup(name);
	}
	closedir(d);
	if (l->count > 1)
		qsort(l->names, (size_t) l->count, sizeof(char *), cmp_names);
	return 0;
}

static void
pop_level(pgdata_walker *w)
{
	walk_level *l = &w->levels[--w->depth];

	for (int i = 0; i < l->count; i++)
		free(l->names[i]);
	for (int i = 0; i < l->nunlogged; i++)
		free(l->unlogged[i]);
	free(l->names);
	free(l->unlogged);
	free(l->rel);
	free(l->full);
}

static void
clear_cur(pgdata_walker *w)
{
	free(w->cur.path);
	free(w->cur.full_path);
	free(w->cur.link_target);
	memset(&w->cur, 0, sizeof(w->cur));
}

int
pgdata_walk_open(const char *datadir, const char *tblspc_dir, pgdata_walker **out)
{
	pgdata_walker *w = xcalloc(1, sizeof(*w));
	int			rc;

	w->tblspc_dir = xstrdup(tblspc_dir);
	rc = push_level(w, "", datadir, false, false);
	if (rc)
	{
		pgdata_walk_close(w);
		return rc;
	}
	*out = w;
	return 0;
}

static char *
read_link(const char *path)
{
	strbuf		sb = STRBUF_INIT;
	size_t		cap = 256;

	for (;;)
	{
		sb_reserve(&sb, cap);
		ssize_t		n = readlink(path, sb.buf, cap);

		if (n < 0)
		{
			sb_free(&sb);
			return NULL;
		}
		if ((size_t) n < cap)
		{
			sb.buf[n] = '\0';
			return sb_detach(&sb);
		}
		cap *= 2;
	}
}

/* Fill w->cur for name in level l; *skip when it vanished or is not backed up. */
static int
make_entry(pgdata_walker *w, walk_level *l, const char *name, bool *skip)
{
	pgdata_entry *e = &w->cur;

	*skip = false;
	e->path = l->rel[0] ? xasprintf("%s/%s", l->rel, name) : xstrdup(name);
	e->full_path = xasprintf("%s/%s", l->full, name);
	if (lstat(e->full_path, &e->st) != 0)
	{
		if (errno == ENOENT)
		{
			*skip = true;
			return 0;
		}
		return error_set(ERR_FILE, "could not stat file \"%s\": %s", e->full_path, strerror(errno));
	}
	if (S_ISLNK(e->st.st_mode))
	{
		e->kind = MF_LINK;
		e->link_target = read_link(e->full_path);
		if (e->link_target == NULL)
			return error_set(ERR_FILE, "could not read link \"%s\": %s", e->full_path, strerror(errno));
	}
	else if (S_ISDIR(e->st.st_mode))
		e->kind = MF_DIR;
	else if (S_ISREG(e->st.st_mode))
	{
		e->kind = MF_FILE;
		if (is_unlogged(l, name))
		{
			*skip = true;
			return 0;
		}
		e->relation = pg_path_is_relation(e->path, &e->relseg);
	}
	else
		*skip = true;           /* sockets, fifos, devices: never part of a cluster */
	return 0;
}

int
pgdata_walk_next(pgdata_walker *w, pgdata_entry **out, bool *done)
{
	*done = false;
	clear_cur(w);
	while (w->depth > 0)
	{
		walk_level *l = &w->levels[w->depth - 1];
		bool		skip;
		int			rc;

		if (l->next >= l->count)
		{
			pop_level(w);
			continue;
		}
		const char *name = l->names[l->next++];

		if ((rc = make_entry(w, l, name, &skip)) != 0)
			return rc;
		if (skip)
		{
			clear_cur(w);
			continue;
		}
		pgdata_entry *e = &w->cur;
		bool		tblspc_link = e->kind == MF_LINK && strcmp(l->rel, "pg_tblspc") == 0;

		if (e->kind == MF_DIR || tblspc_link)
		{
			bool		skip_contents = l->rel[0] == '\0' && in_list(contents_excluded, name);

			if (tblspc_link)
			{
				struct stat tst;

				/* The tablespace's directory is read through the link. */
				if (stat(e->full_path, &tst) != 0 || !S_ISDIR(tst.st_mode))
					return error_set(ERR_FILE, "tablespace link \"%s\" does not point to a directory", e->full_path);
			}
			if ((rc = push_level(w, e->path, e->full_path, skip_contents, tblspc_link)) != 0)
				return rc;
		}
		*out = e;
		return 0;
	}
	*done = true;
	return 0;
}

void
pgdata_walk_close(pgdata_walker *w)
{
	if (w == NULL)
		return;
	clear_cur(w);
	while (w->depth > 0)
		pop_level(w);
	free(w->levels);
	free(w->tblspc_dir);
	free(w);
}
