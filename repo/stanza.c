/*
 * stanza.c: stanza-create: records the identity of the cluster (system
 * identifier, PostgreSQL version, WAL segment size) in the repository, and
 * the check every command makes against it.
 */
#include "stanza.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../src/cluster.h"
#include "../src/error.h"
#include "../src/log.h"
#include "../src/mem.h"
#include "../src/option.h"

#define STORE_BLOCK_SIZE 8192

int
stanza_check_cluster(const stanza_info *st, const pg_control_info *pc)
{
	if (st->system_id != pc->system_id)
		return error_set(ERR_STANZA, "the cluster has system identifier %llu, but the stanza was created for %llu; "
						 "is pg1-path the right cluster?",
						 (unsigned long long) pc->system_id, (unsigned long long) st->system_id);
	if (st->pg_version / 100 != pc->pg_version / 100)
		return error_set(ERR_STANZA, "the cluster runs PostgreSQL %u, but the stanza was created for PostgreSQL %u",
						 pc->pg_version / 10000, st->pg_version / 10000);
	if (st->wal_segment_size != pc->wal_segment_size)
		return error_set(ERR_STANZA, "the cluster has WAL segments of %u bytes, but the stanza was created for %u",
						 pc->wal_segment_size, st->wal_segment_size);
	return 0;
}

/* When the server runs, its view of the cluster must agree with pg_control. */
static int
cross_check_server(const pg_control_info *pc)
{
	pg_conn    *c;
	char	   *sysid = NULL;
	int			rc;

	if (cluster_connect(&c) != 0)
	{
		log_info("cluster is not reachable over libpq (%s); using pg_control only", error_msg());
		error_clear();
		return 0;
	}
	rc = pg_query_value(c, "select system_identifier::text from pg_catalog.pg_control_system()", &sysid);
	if (rc == 0 && strtoull(sysid, NULL, 10) != pc->system_id)
		rc = error_set(ERR_STANZA, "the server on the configured socket/port has system identifier %s, "
					   "but pg_control in pg1-path has %llu: pg1-path and pg1-port name different clusters",
					   sysid, (unsigned long long) pc->system_id);
	if (rc == 0 && (uint32_t) pg_server_version(c) / 100 != pc->pg_version / 100)
		rc = error_set(ERR_STANZA, "the server runs PostgreSQL %d, but pg_control in pg1-path is of PostgreSQL %u",
					   pg_server_version(c) / 10000, pc->pg_version / 10000);
	free(sysid);
	pg_disconnect(c);
	return rc;
}

int
cmd_stanza_create(void)
{
	const char *stanza = opt_str(OPT_STANZA);
	const char *pgpath;
	pg_control_info pc;
	stanza_info st;
	repo	   *r = NULL;
	int			rc;

	if (stanza == NULL)
		return error_set(ERR_OPTION, "stanza-create requires option stanza");
	if ((rc = cluster_path(&pgpath)) != 0)
		return rc;
	if ((rc = pg_control_read(pgpath, &pc)) != 0)
		return rc;
	if ((rc = cross_check_server(&pc)) != 0)
		return rc;
	memset(&st, 0, sizeof(st));
	st.system_id = pc.system_id;
	st.pg_version = pc.pg_version;
	st.control_version = pc.control_version;
	st.catalog_version = pc.catalog_version;
	st.wal_segment_size = pc.wal_segment_size;
	st.block_size = STORE_BLOCK_SIZE;
	st.created = (int64_t) time(NULL);
	if ((rc = repo_open(stanza, &r)) != 0)
		return rc;
	rc = repo_stanza_create(r, &st);
	if (rc == 0)
		log_info("stanza %s is ready: system identifier %llu, PostgreSQL %u, WAL segments of %u MiB",
				 stanza, (unsigned long long) st.system_id, st.pg_version / 10000, st.wal_segment_size >> 20);
	repo_close(r);
	return rc;
}
