/*
 * expire.c: retention (which backups go, which WAL goes) and the expire
 * command (expire.h, doc/expire.md).
 *
 * Order of removal, for crash safety: backups oldest first (each one's
 * manifest is removed first, which is its commit point), then WAL, then
 * garbage collection.  A crash at any instant leaves a repository in which
 * every remaining backup still has its WAL and its blocks; the next expire
 * finishes the work.
 */
#include "expire.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "manifest.h"
#include "../src/error.h"
#include "../src/fileio.h"
#include "../src/log.h"
#include "../src/mem.h"
#include "../src/option.h"
#include "../src/pgformat.h"

#define DAY_SECONDS 86400

void
expire_policy_from_options(expire_policy *pol)
{
	pol->full = opt_has(OPT_REPO_RETENTION_FULL) ? opt_int(OPT_REPO_RETENTION_FULL) : 0;
	pol->full_time = opt_has(OPT_REPO_RETENTION_FULL_TYPE) && strcmp(opt_str(OPT_REPO_RETENTION_FULL_TYPE), "time") == 0;
	pol->diff = opt_has(OPT_REPO_RETENTION_DIFF) ? opt_int(OPT_REPO_RETENTION_DIFF) : 0;
}

/*
 * Index of the oldest backup repo1-retention-full keeps: the anchor (time) or
 * the oldest of the newest fulls (count); -1 when there is none (then nothing
 * goes, WAL neither).
 */
static int
first_kept(const expire_backup *b, int n, const expire_policy *pol, int64_t now)
{
	int			first = -1;

	if (pol->full_time)
	{
		/* The anchor: the newest full that finished more than full days ago. */
		for (int i = 0; i < n; i++)
			if (b[i].type == 'F' && b[i].readable && now - b[i].stop_time > pol->full * DAY_SECONDS)
				first = i;
		return first;
	}
	int64_t		fulls = 0, skip;

	for (int i = 0; i < n; i++)
		fulls += b[i].type == 'F';
	/* The oldest of the pol->full newest fulls: the one after the fulls - pol->full oldest. */
	skip = fulls > pol->full ? fulls - pol->full : 0;
	for (int i = 0, seen = 0; i < n; i++)
		if (b[i].type == 'F' && seen++ == skip)
			return i;
	return -1;
}

bool
expire_select(expire_backup *b, int n, const expire_policy *pol, int64_t now)
{
	int			first;
	int64_t		diffs = 0;
	int			base = -1;      /* newest full or diff seen so far */

	for (int i = 0; i < n; i++)
		b[i].reason = EXPIRE_KEEP;
	if (pol->full <= 0 || (first = first_kept(b, n, pol, now)) < 0)
		return false;
	for (int i = 0; i < first; i++)
		b[i].reason = EXPIRE_FULL;
	if (pol->diff <= 0)
		return true;
	for (int i = n - 1; i >= first; i--)
		if (b[i].type == 'D' && ++diffs > pol->diff)
			b[i].reason = EXPIRE_DIFF;
	/* An incremental goes with the differential it was taken after. */
	for (int i = first; i < n; i++)
	{
		if (b[i].type != 'I')
			base = i;
		else if (base >= 0 && b[base].reason == EXPIRE_DIFF)
			b[i].reason = EXPIRE_DIFF;
	}
	return true;
}

static int
read_backup(repo *r, expire_backup *b)
{
	manifest_header h = {0};
	int			rc = repo_backup_header(r, b->label, &h);

	if (rc == 0)
	{
		b->readable = true;
		b->stop_time = h.stop_time;
		b->wal_start = xstrdup(h.wal_start);
	}
	manifest_header_free(&h);
	return rc;
}

/* The earliest start segment of the backups that stay (NULL: none, or one is unknown). */
static const char *
wal_keep_from(const expire_plan *p)
{
	const char *keep = NULL;

	for (int i = 0; i < p->n; i++)
	{
		const expire_backup *b = &p->backups[i];

		if (b->reason != EXPIRE_KEEP)
			continue;
		if (!b->readable)
		{
			log_warn("the manifest of backup %s cannot be read: no WAL is removed", b->label);
			return NULL;
		}
		if (keep == NULL || strcmp(b->wal_start, keep) < 0)
			keep = b->wal_start;
	}
	return keep;
}

int
expire_plan_make(repo *r, const expire_policy *pol, const char *set, int64_t now, expire_plan *p)
{
	char	  **labels = NULL;
	int			n = 0, rc;
	bool		found = false, applies = set != NULL;

	memset(p, 0, sizeof(*p));
	if ((rc = repo_backup_list(r, &labels, &n)) != 0)
		return rc;
	p->backups = xcalloc((size_t) (n ? n : 1), sizeof(expire_backup));
	p->n = n;
	for (int i = 0; i < n; i++)
	{
		expire_backup *b = &p->backups[i];

		b->label = labels[i];
		b->type = labels[i][strlen(labels[i]) - 1];
		/* Not fatal: such a backup is kept unless a rule removes it by position. */
		if (read_backup(r, b) != 0)
			log_warn("%s", error_msg());
		error_clear();
	}
	free(labels);
	if (set)
	{
		for (int i = 0; i < n; i++)
			if (strcmp(p->backups[i].label, set) == 0)
			{
				p->backups[i].reason = EXPIRE_SET;
				found = true;
			}
		if (!found)
		{
			expire_plan_free(p);
			return error_set(ERR_INVALID, "backup set %s does not exist in stanza \"%s\"; \"pgkeep info\" lists the backups",
							 set, repo_stanza(r));
		}
	}
	else
		applies = expire_select(p->backups, n, pol, now);
	for (int i = 0; i < n; i++)
		p->nexpire += p->backups[i].reason != EXPIRE_KEEP;
	if (applies)
		p->wal_keep = wal_keep_from(p);
	return 0;
}

void
expire_plan_free(expire_plan *p)
{
	for (int i = 0; i < p->n; i++)
	{
		free(p->backups[i].label);
		free(p->backups[i].wal_start);
	}
	free(p->backups);
	memset(p, 0, sizeof(*p));
}

bool
expire_plan_removes(const expire_plan *p, const char *label)
{
	for (int i = 0; i < p->n; i++)
		if (strcmp(p->backups[i].label, label) == 0)
			return p->backups[i].reason != EXPIRE_KEEP;
	return false;
}

/* What expire does goes to the log; what a dry run would do goes to stdout, its whole purpose. */
static void report(bool dry_run, const char *fmt,...) __attribute__((format(printf, 2, 3)));

static void
report(bool dry_run, const char *fmt,...)
{
	va_list		ap;
	char	   *msg;

	va_start(ap, fmt);
	msg = xvasprintf(fmt, ap);
	va_end(ap);
	if (dry_run)
		printf("%s\n", msg);
	else
		log_info("%s", msg);
	free(msg);
}

static const char *
reason_text(expire_reason reason)
{
	switch (reason)
	{
		case EXPIRE_FULL:
			return "repo1-retention-full";
		case EXPIRE_DIFF:
			return "repo1-retention-diff";
		case EXPIRE_SET:
			return "--set";
		default:
			return "kept";
	}
}

typedef struct wal_sweep
{
	repo	   *r;
	const char *keep;
	bool		dry_run;
	uint64_t	count;
	char		first[64];
	char		last[64];
} wal_sweep;

/*
 * Every WAL file before the keep segment: segments, partial segments and
 * backup history files, by their first 24 characters (timeline, log,
 * segment).  Timeline history files stay (doc/expire.md).
 */
static int
wal_sweep_one(const wal_object *obj, void *arg)
{
	wal_sweep  *w = arg;
	int			rc;

	if (wal_file_classify(obj->name) == WAL_FILE_HISTORY || strncmp(obj->name, w->keep, 24) >= 0)
		return 0;
	if (!w->dry_run && (rc = repo_wal_delete(w->r, obj)) != 0)
		return rc;
	if (w->count++ == 0)
		snprintf(w->first, sizeof(w->first), "%s", obj->name);
	snprintf(w->last, sizeof(w->last), "%s", obj->name);
	return 0;
}

static void
report_gc(bool dry_run, const repo_gc_result *g)
{
	if (g->deferred)
		report(dry_run, "expire: garbage collection deferred: a backup, restore or verify holds the block store; "
			   "the next expire collects");
	else if (dry_run)
		report(dry_run, "expire: garbage collection would now delete %llu packs and rewrite %llu, freeing %llu bytes "
			   "(the blocks of the backups listed above are not counted: they are still there)",
			   (unsigned long long) g->packs_deleted, (unsigned long long) g->packs_rewritten,
			   (unsigned long long) (g->bytes_before - g->bytes_after));
	else
		report(dry_run, "expire: garbage collection deleted %llu packs and rewrote %llu, freed %llu bytes",
			   (unsigned long long) g->packs_deleted, (unsigned long long) g->packs_rewritten,
			   (unsigned long long) (g->bytes_before - g->bytes_after));
}

static int
expire_repo(repo *r, bool dry_run, const char *set, bool collect_always)
{
	expire_policy pol;
	expire_plan plan;
	stanza_info st;
	wal_sweep	w = {0};
	repo_gc_result g;
	int			rc;

	expire_policy_from_options(&pol);
	if ((rc = repo_stanza_get(r, &st)) != 0)
		return rc;
	if (set == NULL && pol.full <= 0)
		log_warn("option repo1-retention-full is not set: expire removes no backup and no WAL, and the repository "
				 "grows without bound; set repo1-retention-full (with repo1-retention-full-type=time for days)");
	if ((rc = expire_plan_make(r, &pol, set, (int64_t) time(NULL), &plan)) != 0)
		return rc;
	for (int i = 0; i < plan.n && rc == 0; i++)
	{
		expire_backup *b = &plan.backups[i];

		if (b->reason == EXPIRE_KEEP)
			continue;
		if (!dry_run && (rc = repo_backup_delete(r, b->label)) != 0)
			rc = error_wrap(rc, "could not remove backup %s", b->label);
		else
			report(dry_run, "expire: %s backup %s (%s)", dry_run ? "would remove" : "removed", b->label,
				   reason_text(b->reason));
	}
	if (rc == 0 && plan.wal_keep)
	{
		w.r = r;
		w.keep = plan.wal_keep;
		w.dry_run = dry_run;
		rc = repo_wal_list(r, wal_sweep_one, &w);
		if (w.count)
			report(dry_run, "expire: %s %llu WAL files from %s to %s (WAL from %s on is kept)",
				   dry_run ? "would remove" : "removed", (unsigned long long) w.count, w.first, w.last, plan.wal_keep);
	}
	/*
	 * Collection reads every manifest and the whole index: after a backup
	 * that removed nothing (expire-auto) there is nothing new to collect
	 * but what failed backups left, which the next expire that removes
	 * something, or an expire run by hand, collects.
	 */
	if (rc == 0 && !collect_always && plan.nexpire == 0 && w.count == 0)
		log_detail("expire: nothing was removed: garbage collection is left to the next expire");
	else if (rc == 0 && (rc = repo_gc(r, dry_run, &g)) == 0)
		report_gc(dry_run, &g);
	if (rc == 0)
		report(dry_run, "expire: %s %d of %d backups and %llu WAL files, %d backup%s kept",
			   dry_run ? "would remove" : "removed", plan.nexpire, plan.n, (unsigned long long) w.count,
			   plan.n - plan.nexpire, plan.n - plan.nexpire == 1 ? "" : "s");
	expire_plan_free(&plan);
	return rc;
}

int
expire_run(const char *stanza, bool dry_run, const char *set, bool collect_always)
{
	char	   *lock_path = NULL;
	repo	   *r = NULL;
	int			lock_fd = -1, rc;

	if ((rc = fio_mkdir_p(opt_str(OPT_LOCK_PATH), 0770)) != 0)
		return rc;
	lock_path = xasprintf("%s/%s-expire.lock", opt_str(OPT_LOCK_PATH), stanza);
	if ((rc = fio_lock(lock_path, false, &lock_fd)) != 0)
	{
		rc = error_set(ERR_LOCK, "another expire of stanza %s is running (lock file \"%s\")", stanza, lock_path);
		goto out;
	}
	if ((rc = repo_open(stanza, &r)) == 0)
		rc = expire_repo(r, dry_run, set, collect_always);
out:
	repo_close(r);
	if (lock_fd >= 0)
		fio_unlock(lock_fd);
	free(lock_path);
	return rc;
}

int
cmd_expire(void)
{
	const char *stanza = opt_str(OPT_STANZA);

	if (stanza == NULL)
		return error_set(ERR_OPTION, "expire requires option stanza");
	return expire_run(stanza, opt_bool(OPT_DRY_RUN), opt_given(OPT_SET) ? opt_str(OPT_SET) : NULL, true);
}
