/*
 * pgclient.h: the libpq client pgkeep uses to talk to the cluster it backs up.
 * Connection settings come from the pg1-* options (socket path, port, user,
 * database).  Passwords come from libpq's usual places (PGPASSWORD, .pgpass)
 * and never appear in messages.
 */
#ifndef PGKEEP_PGCLIENT_H
#define PGKEEP_PGCLIENT_H

#include <stdint.h>

typedef struct pg_conn pg_conn;

typedef struct pg_conn_params
{
	const char *socket_path;    /* host for libpq: a directory or NULL */
	int			port;
	const char *user;           /* NULL: libpq default */
	const char *database;
	int			timeout_s;      /* statement and connect timeout */
} pg_conn_params;

/* Connect; ERR_PG with libpq's message (without password) on failure. */
int			pg_connect(const pg_conn_params *p, pg_conn **out);
void		pg_disconnect(pg_conn *c);

/* Run a command that returns no rows. */
int			pg_exec(pg_conn *c, const char *sql);
/*
 * Run a query with text parameters; the result has *rows rows of *cols
 * columns; values are a new array of rows*cols strings (NULL for SQL NULL)
 * freed with pg_result_free.  ERR_PG on failure.
 */
int			pg_query(pg_conn *c, const char *sql, int nparams, const char *const *params,
					 char ***values, int *rows, int *cols);
void		pg_result_free(char **values, int rows, int cols);
/* Run a query expected to return exactly one value; *out is a new string. */
int			pg_query_value(pg_conn *c, const char *sql, char **out);

/* server_version_num, e.g. 150004. */
int			pg_server_version(pg_conn *c);

#endif
