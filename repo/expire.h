/*
 * expire.h: retention and the expire command.  One function decides which
 * backups the next expire removes (expire_plan_make); expire removes them and
 * the WAL older than every backup it keeps, then runs garbage collection; info
 * marks the same backups.  The rules are explained in doc/expire.md.
 */
#ifndef PGKEEP_EXPIRE_H
#define PGKEEP_EXPIRE_H

#include <stdbool.h>
#include <stdint.h>

#include "repo.h"

/* Why a backup goes (EXPIRE_KEEP: it stays). */
typedef enum
{
	EXPIRE_KEEP = 0,
	EXPIRE_FULL,                /* older than what repo1-retention-full keeps */
	EXPIRE_DIFF,                /* a differential beyond repo1-retention-diff, or an incremental taken after one */
	EXPIRE_SET                  /* named by --set */
} expire_reason;

typedef struct expire_backup
{
	char	   *label;
	char		type;           /* 'F', 'D' or 'I': the last letter of the label */
	bool		readable;       /* its manifest header was read: stop_time and wal_start are known */
	int64_t		stop_time;      /* unix seconds */
	char	   *wal_start;      /* first WAL segment the backup needs, or NULL */
	expire_reason reason;
} expire_backup;

typedef struct expire_policy
{
	int64_t		full;           /* repo1-retention-full; 0 when not set (then no rule removes anything) */
	bool		full_time;      /* repo1-retention-full-type=time: full counts days */
	int64_t		diff;           /* repo1-retention-diff; 0 when not set */
} expire_policy;

typedef struct expire_plan
{
	expire_backup *backups;     /* every backup of the stanza, oldest first */
	int			n;
	int			nexpire;        /* backups whose reason is not EXPIRE_KEEP */
	const char *wal_keep;       /* WAL segments before this one go (points into backups); NULL: no WAL goes */
} expire_plan;

/* The policy of repo1 from the options. */
void		expire_policy_from_options(expire_policy *pol);

/*
 * The retention rules (doc/expire.md) on backups b[0..n) (oldest first, type
 * and stop_time filled): sets each reason to EXPIRE_KEEP, EXPIRE_FULL or
 * EXPIRE_DIFF as of time now.  A backup whose stop time is unknown
 * (!readable) is never the anchor of time retention.  Returns whether the
 * policy applies: false without repo1-retention-full, with time retention
 * and no full that old, or with no full backup at all; then every backup
 * stays, and so does the WAL.
 */
bool		expire_select(expire_backup *b, int n, const expire_policy *pol, int64_t now);

/*
 * What the next expire of r removes: reads every backup's manifest header
 * and applies pol as of now, or, with set (a label), removes exactly that
 * backup (ERR_INVALID when there is none of that name).  wal_keep is the
 * earliest start segment of the backups that stay, and NULL (no WAL goes)
 * when none stays, when one of them could not be read, or when the policy
 * does not apply (expire_select) and set is not given.  Free with
 * expire_plan_free.
 */
int			expire_plan_make(repo *r, const expire_policy *pol, const char *set, int64_t now, expire_plan *p);
void		expire_plan_free(expire_plan *p);
/* Whether the plan removes backup label. */
bool		expire_plan_removes(const expire_plan *p, const char *label);

/*
 * Expire stanza: takes the lock STANZA-expire.lock in lock-path (ERR_LOCK when
 * another expire runs), removes the backups of the plan (oldest first), then
 * the WAL before wal_keep, then runs garbage collection: always with
 * collect_always (the expire command), else (expire-auto after a backup)
 * only when something was removed.  With dry_run it changes nothing and
 * prints on stdout what it would do.  set as for expire_plan_make.
 */
int			expire_run(const char *stanza, bool dry_run, const char *set, bool collect_always);

/* The expire command. */
int			cmd_expire(void);

#endif
