/*
 * cluster.h: the PostgreSQL cluster a command works on, as configured by the
 * pg1-* options: its libpq connection and its pg_control.
 */
#ifndef PGKEEP_CLUSTER_H
#define PGKEEP_CLUSTER_H

#include "pgclient.h"
#include "pgformat.h"

/* Connection parameters from pg1-socket-path, pg1-port, pg1-user, pg1-database, db-timeout. */
void		cluster_conn_params(pg_conn_params *p);
/* Connect to the configured cluster. */
int			cluster_connect(pg_conn **out);
/* pg1-path, or ERR_OPTION "COMMAND requires option pg1-path". */
int			cluster_path(const char **path);

#endif
