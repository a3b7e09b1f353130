/*
 * check.c: the check command: the cluster's archive_command calls pgkeep,
 * the stanza matches the cluster, and a forced WAL switch reaches the
 * repository within archive-timeout.
 */
#include "archive.h"

#include <stdlib.h>
#include <string.h>

#include "../repo/repo.h"
#include "../repo/stanza.h"
#include "../src/cluster.h"
#include "../src/error.h"
#include "../src/log.h"
#include "../src/mem.h"
#include "../src/option.h"


static int
check_archive_command(pg_conn *c)
{
	char	   *mode = NULL, *cmd = NULL;
	int			rc;

	if ((rc = pg_query_value(c, "show archive_mode", &mode)) != 0 ||
		(rc = pg_query_value(c, "show archive_command", &cmd)) != 0)
		goto out;
	if (strcmp(mode, "off") == 0)
		rc = error_set(ERR_CHECK, "archive_mode is off; set archive_mode = on and restart PostgreSQL");
	else if (strstr(cmd, "archive-push") == NULL)
		rc = error_set(ERR_CHECK, "archive_command \"%s\" does not call pgkeep archive-push", cmd);
	else if (strstr(cmd, opt_str(OPT_STANZA)) == NULL)
		rc = error_set(ERR_CHECK, "archive_command \"%s\" does not name stanza %s", cmd, opt_str(OPT_STANZA));
out:
	free(mode);
	free(cmd);
	return rc;
}

int
cmd_check(void)
{
	const char *stanza = opt_str(OPT_STANZA);
	const char *pgpath;
	pg_control_info pc;
	stanza_info st;
	pg_conn    *c = NULL;
	repo	   *r = NULL;
	char	   *seg = NULL;
	int			rc;

	if (stanza == NULL)
		return error_set(ERR_OPTION, "check requires option stanza");
	if ((rc = cluster_path(&pgpath)) != 0 || (rc = pg_control_read(pgpath, &pc)) != 0)
		return rc;
	if ((rc = repo_open(stanza, &r)) != 0)
		return rc;
	if ((rc = repo_stanza_get(r, &st)) != 0 || (rc = stanza_check_cluster(&st, &pc)) != 0)
		goto out;
	if ((rc = cluster_connect(&c)) != 0 || (rc = check_archive_command(c)) != 0)
		goto out;
	/* A restore point makes sure the switch has something to close. */
	if ((rc = pg_query_value(c, "select pg_catalog.pg_create_restore_point('pgkeep archive check')::text", &seg)) != 0)
		goto out;
	free(seg);
	seg = NULL;
	if ((rc = pg_query_value(c, "select pg_catalog.pg_walfile_name(pg_catalog.pg_switch_wal())", &seg)) != 0)
		goto out;
	log_info("switched WAL; waiting for segment %s to reach the repository", seg);
	if ((rc = repo_wal_wait(r, seg, opt_int(OPT_ARCHIVE_TIMEOUT))) == 0)
		log_info("check passed: WAL segment %s is in the repository", seg);
out:
	free(seg);
	pg_disconnect(c);
	repo_close(r);
	return rc;
}
