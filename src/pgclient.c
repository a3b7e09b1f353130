/*
 * pgclient.c: a thin libpq wrapper for talking to the cluster being backed up
 * (see pgclient.h).  It turns libpq's results into pgkeep's error idiom,
 * copies result values into plain strings, and keeps libpq from printing:
 * server notices go to the log, failures become ERR_PG messages on one line.
 */
#include "pgclient.h"
#include "error.h"
#include "log.h"
#include "mem.h"

#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

struct pg_conn
{
	PGconn	   *conn;
	int			server_version;
};

/*
 * libpq messages end with a newline and may continue on indented lines
 * ("...failed: No such file\n\tIs the server running..."): fold every run of
 * line breaks and the indentation after it into one space, drop the end.
 */
static char *
message_one_line(const char *msg)
{
	strbuf		sb = STRBUF_INIT;
	const char *p = msg != NULL ? msg : "";

	while (*p != '\0')
	{
		if (*p == '\n' || *p == '\r')
		{
			while (*p != '\0' && isspace((unsigned char) *p))
				p++;
			if (*p != '\0')
				sb_appendc(&sb, ' ');
			continue;
		}
		sb_appendc(&sb, *p++);
	}
	/* Trailing blanks before the final newline, if any. */
	while (sb.len > 0 && isspace((unsigned char) sb.buf[sb.len - 1]))
		sb.buf[--sb.len] = '\0';
	if (sb.len == 0)
		sb_append(&sb, "unknown error");
	return sb_detach(&sb);
}

/* ERR_PG from the connection's last error, prefixed by what was being done. */
static int
conn_error(PGconn *conn, const char *doing)
{
	char	   *msg = message_one_line(PQerrorMessage(conn));
	int			rc = error_set(ERR_PG, "%s: %s", doing, msg);

	free(msg);
	return rc;
}

/*
 * ERR_PG from a failed result.  A server error carries its primary message
 * and SQLSTATE; a client-side failure (connection lost) only libpq's text.
 */
static int
result_error(pg_conn *c, PGresult *res)
{
	const char *primary = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	const char *sqlstate = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	char	   *msg;
	int			rc;

	if (primary == NULL)
		return conn_error(c->conn, "query failed");
	msg = message_one_line(primary);
	if (sqlstate != NULL)
		rc = error_set(ERR_PG, "query failed: %s (SQLSTATE %s)", msg, sqlstate);
	else
		rc = error_set(ERR_PG, "query failed: %s", msg);
	free(msg);
	return rc;
}

/* Server notices and warnings: into the log instead of libpq's stderr. */
static void
notice_to_log(void *arg, const char *message)
{
	char	   *msg = message_one_line(message);

	log_detail("postgresql: %s", msg);
	free(msg);
}

int
pg_connect(const pg_conn_params *p, pg_conn **out)
{
	const char *keywords[8];
	const char *values[8];
	int			n = 0;
	char		port[16];
	char		connect_timeout[16];
	char	   *options = NULL;
	PGconn	   *conn;
	int			rc = 0;

	*out = NULL;
	if (p->socket_path != NULL)
	{
		keywords[n] = "host";
		values[n++] = p->socket_path;
	}
	if (p->port > 0)
	{
		snprintf(port, sizeof(port), "%d", p->port);
		keywords[n] = "port";
		values[n++] = port;
	}
	if (p->user != NULL)
	{
		keywords[n] = "user";
		values[n++] = p->user;
	}
	if (p->database != NULL)
	{
		keywords[n] = "dbname";
		values[n++] = p->database;
	}
	if (p->timeout_s > 0)
	{
		/* statement_timeout is an int of milliseconds: cap it at its maximum. */
		int			statement_s = p->timeout_s < INT_MAX / 1000 ? p->timeout_s : INT_MAX / 1000;

		snprintf(connect_timeout, sizeof(connect_timeout), "%d", p->timeout_s);
		keywords[n] = "connect_timeout";
		values[n++] = connect_timeout;
		options = xasprintf("-c statement_timeout=%d", statement_s * 1000);
		keywords[n] = "options";
		values[n++] = options;
	}
	keywords[n] = "application_name";
	values[n++] = "pgkeep";
	keywords[n] = NULL;
	values[n] = NULL;

	/* expand_dbname = 0: a database name is a name, never a connection string. */
	conn = PQconnectdbParams(keywords, values, 0);
	if (conn == NULL)
	{
		rc = error_set(ERR_PG, "could not connect to PostgreSQL: libpq is out of memory");
		goto out;
	}
	if (PQstatus(conn) != CONNECTION_OK)
	{
		rc = conn_error(conn, "could not connect to PostgreSQL");
		PQfinish(conn);
		goto out;
	}
	PQsetNoticeProcessor(conn, notice_to_log, NULL);

	*out = xcalloc(1, sizeof(**out));
	(*out)->conn = conn;
	(*out)->server_version = PQserverVersion(conn);
	log_debug("connected to PostgreSQL %d on \"%s\" port %d", (*out)->server_version,
			  p->socket_path != NULL ? p->socket_path : "(default)", p->port);
out:
	free(options);
	return rc;
}

void
pg_disconnect(pg_conn *c)
{
	if (c == NULL)
		return;
	PQfinish(c->conn);
	free(c);
}

int
pg_exec(pg_conn *c, const char *sql)
{
	PGresult   *res = PQexec(c->conn, sql);
	int			rc = 0;

	switch (PQresultStatus(res))
	{
		case PGRES_COMMAND_OK:
			break;
		case PGRES_TUPLES_OK:
			/* A statement that returns rows belongs in pg_query: say so rather than drop them. */
			if (PQntuples(res) != 0)
				rc = error_set(ERR_PG, "query returned %d rows where none were expected", PQntuples(res));
			break;
		default:
			rc = result_error(c, res);
			break;
	}
	PQclear(res);
	return rc;
}

/* Copy a result's values into a rows*cols array of new strings (NULL for SQL NULL). */
static char **
result_copy(PGresult *res, int rows, int cols)
{
	char	  **values = xcalloc((size_t) rows * (size_t) cols, sizeof(char *));

	for (int r = 0; r < rows; r++)
		for (int f = 0; f < cols; f++)
			if (!PQgetisnull(res, r, f))
				values[(size_t) r * (size_t) cols + (size_t) f] = xstrdup(PQgetvalue(res, r, f));
	return values;
}

int
pg_query(pg_conn *c, const char *sql, int nparams, const char *const *params,
		 char ***values, int *rows, int *cols)
{
	PGresult   *res;
	int			rc = 0;

	*values = NULL;
	*rows = 0;
	*cols = 0;
	/* Parameters travel separately from the SQL text: no quoting, no injection. */
	res = PQexecParams(c->conn, sql, nparams, NULL, params, NULL, NULL, 0);
	switch (PQresultStatus(res))
	{
		case PGRES_TUPLES_OK:
			*rows = PQntuples(res);
			*cols = PQnfields(res);
			*values = result_copy(res, *rows, *cols);
			break;
		case PGRES_COMMAND_OK:
			/* A command without RETURNING: no rows, no columns. */
			*values = xcalloc(1, sizeof(char *));
			break;
		default:
			rc = result_error(c, res);
			break;
	}
	PQclear(res);
	return rc;
}

void
pg_result_free(char **values, int rows, int cols)
{
	if (values == NULL)
		return;
	for (size_t i = 0; i < (size_t) rows * (size_t) cols; i++)
		free(values[i]);
	free(values);
}

int
pg_query_value(pg_conn *c, const char *sql, char **out)
{
	char	  **values;
	int			rows;
	int			cols;
	int			rc;

	*out = NULL;
	rc = pg_query(c, sql, 0, NULL, &values, &rows, &cols);
	if (rc != 0)
		return rc;
	if (rows != 1 || cols != 1)
		rc = error_set(ERR_PG, "query returned %d rows of %d columns, expected one value", rows, cols);
	else if (values[0] == NULL)
		rc = error_set(ERR_PG, "query returned NULL, expected a value");
	else
	{
		*out = values[0];
		values[0] = NULL;
	}
	pg_result_free(values, rows, cols);
	return rc;
}

int
pg_server_version(pg_conn *c)
{
	return c->server_version;
}
