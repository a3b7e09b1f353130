/* cluster.c: connection and data directory of the configured cluster (pg1-*). */
#include "cluster.h"

#include "error.h"
#include "option.h"

void
cluster_conn_params(pg_conn_params *p)
{
	p->socket_path = opt_str_idx(OPT_PG_SOCKET_PATH, 0);
	p->port = (int) opt_int_idx(OPT_PG_PORT, 0);
	p->user = opt_str_idx(OPT_PG_USER, 0);
	p->database = opt_str_idx(OPT_PG_DATABASE, 0);
	p->timeout_s = (int) opt_int(OPT_DB_TIMEOUT);
}

int
cluster_connect(pg_conn **out)
{
	pg_conn_params p;

	cluster_conn_params(&p);
	return pg_connect(&p, out);
}

int
cluster_path(const char **path)
{
	*path = opt_str_idx(OPT_PG_PATH, 0);
	if (*path == NULL)
		return error_set(ERR_OPTION, "%s requires option pg1-path", command_name(opt_command()));
	return 0;
}
