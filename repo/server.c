/*
 * server.c: `pgkeep server` (see server.h) and `pgkeep server-ping`.
 *
 * Processes, not threads: the listening process forks one child per
 * connection, so a crash or a leak in one client's session cannot touch
 * another's, and each child uses the local driver exactly as a local command
 * does (its locks and commit points are unchanged).  The parent counts its
 * children and closes connections beyond tls-server-max-connections.
 *
 * A child: TLS handshake (io-timeout), hello, then requests until the client
 * hangs up, stays idle for protocol-timeout, sends a malformed frame (the
 * connection is closed, the server goes on), or SIGTERM arrives between two
 * requests.  Whatever a client had not committed is aborted when its
 * connection ends, so a dropped connection leaves nothing half-committed.
 */
#include "server.h"
#include "repo.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "../src/error.h"
#include "../src/log.h"
#include "../src/mem.h"
#include "../src/option.h"
#include "../src/pgformat.h"
#include "../src/progress.h"
#include "../src/proto.h"
#include "../src/tls.h"

#define SERVER_HANDLES 16           /* open puts and reads per connection */
#define SERVER_BUF (PROTO_FRAME_MAX - 1024)
#define LIST_STOP 1000              /* not an error code: stops a WAL list at a page's end */

/* tls-server-auth */

typedef struct auth_entry
{
	char	   *cn;
	char	  **stanzas;
	int			count;
	bool		all;
} auth_entry;

struct server_auth
{
	auth_entry *e;
	int			n;
};

void
server_auth_free(server_auth *a)
{
	if (a == NULL)
		return;
	for (int i = 0; i < a->n; i++)
	{
		free(a->e[i].cn);
		repo_names_free(a->e[i].stanzas, a->e[i].count);
	}
	free(a->e);
	free(a);
}

int
server_auth_parse(server_auth **out)
{
	server_auth *a = xcalloc(1, sizeof(*a));
	int			n = opt_list_count(OPT_TLS_SERVER_AUTH);
	int			rc = 0;

	*out = NULL;
	if (n == 0)
		rc = error_set(ERR_OPTION, "option tls-server-auth is not set: no client could use the server; "
					   "add one line tls-server-auth=CN=STANZA[,STANZA...] (or CN=*) per client certificate");
	a->e = xcalloc((size_t) (n ? n : 1), sizeof(auth_entry));
	for (int i = 0; i < n && rc == 0; i++)
	{
		const char *item = opt_list_get(OPT_TLS_SERVER_AUTH, i);
		const char *eq = strchr(item, '=');
		auth_entry *e = &a->e[a->n++];
		char	   *list, *save = NULL;

		e->cn = xstrndup(item, (size_t) (eq - item));
		list = xstrdup(eq + 1);
		for (char *s = strtok_r(list, ",", &save); s && rc == 0; s = strtok_r(NULL, ",", &save))
		{
			if (strcmp(s, "*") == 0)
				e->all = true;
			else if ((rc = repo_check_stanza_name(s)) != 0)
				error_wrap(ERR_OPTION, "option tls-server-auth=%s", item);
			else
			{
				e->stanzas = xrealloc(e->stanzas, sizeof(char *) * (size_t) (e->count + 1));
				e->stanzas[e->count++] = xstrdup(s);
			}
		}
		if (rc == 0 && !e->all && e->count == 0)
			rc = error_set(ERR_OPTION, "option tls-server-auth=%s names no stanza: use CN=STANZA[,STANZA...] or CN=*", item);
		free(list);
	}
	if (rc)
	{
		server_auth_free(a);
		return rc;
	}
	*out = a;
	return 0;
}

bool
server_auth_allows(const server_auth *a, const char *cn, const char *stanza)
{
	for (int i = 0; i < a->n; i++)
	{
		const auth_entry *e = &a->e[i];

		if (strcmp(e->cn, cn) != 0)
			continue;
		if (stanza[0] == '\0' || e->all)
			return true;
		for (int j = 0; j < e->count; j++)
			if (strcmp(e->stanzas[j], stanza) == 0)
				return true;
	}
	return false;
}

/* The configuration the server runs with: a copy, so that a failed reload keeps the old one. */
typedef struct server_conf
{
	char	   *repo_path;
	char	   *address;
	int			port;
	int			max_conn;
	int			io_timeout;
	int			idle_timeout;
	tls_ctx    *tls;
	server_auth *auth;
} server_conf;

static void
conf_free(server_conf *c)
{
	if (c == NULL)
		return;
	free(c->repo_path);
	free(c->address);
	tls_ctx_free(c->tls);
	server_auth_free(c->auth);
	free(c);
}

static int
conf_load(server_conf **out)
{
	server_conf *c = xcalloc(1, sizeof(*c));
	const char *path = opt_str_idx(OPT_REPO_PATH, 0);
	int			rc;

	*out = NULL;
	c->repo_path = xstrdup(path ? path : "");
	c->address = xstrdup(opt_str(OPT_TLS_SERVER_ADDRESS));
	c->port = (int) opt_int(OPT_TLS_SERVER_PORT);
	c->max_conn = (int) opt_int(OPT_TLS_SERVER_MAX_CONNECTIONS);
	c->io_timeout = (int) opt_int(OPT_IO_TIMEOUT);
	c->idle_timeout = (int) opt_int(OPT_PROTOCOL_TIMEOUT);
	if (c->repo_path[0] != '/')
		rc = error_set(ERR_OPTION, "repository path \"%s\" must be absolute", c->repo_path);
	else if ((rc = server_auth_parse(&c->auth)) == 0)
		rc = tls_server_ctx_new(opt_str(OPT_TLS_SERVER_CERT_FILE), opt_str(OPT_TLS_SERVER_KEY_FILE),
								opt_str(OPT_TLS_SERVER_CA_FILE), &c->tls);
	if (rc)
	{
		conf_free(c);
		return rc;
	}
	*out = c;
	return 0;
}

/* One client connection (in its own process). */

typedef enum
{
	SLOT_FREE = 0, SLOT_WAL_PUT, SLOT_BACKUP_PUT, SLOT_READ
} slot_kind;

typedef struct slot
{
	slot_kind	kind;
	repo_put   *put;
	io_writer  *w;
	io_reader  *rd;
	int			err;            /* first failed WRITE, answered at the commit */
	char	   *errmsg;
} slot;

typedef struct conn
{
	const server_conf *conf;
	tls_conn   *tls;
	proto_io	io;
	proto_msg	in;
	proto_msg	out;
	const char *cn;
	repo	   *r;              /* the local repository, bound to stanza */
	char	   *stanza;
	slot		slots[SERVER_HANDLES];
	int			put_err;        /* first failed block put, answered at the flush */
	char	   *put_errmsg;
	uint8_t    *buf;
	uint64_t	requests[OP__COUNT];    /* served, by op: the summary when the client leaves */
} conn;

static volatile sig_atomic_t stop_requested;
static volatile sig_atomic_t reload_requested;

static void
on_signal(int sig)
{
	if (sig == SIGHUP)
		reload_requested = 1;
	else if (sig == SIGTERM || sig == SIGINT)
		stop_requested = 1;
}

static void
slot_release(slot *s)
{
	if (s->kind == SLOT_WAL_PUT)
		repo_wal_put_abort(s->put);
	else if (s->kind == SLOT_BACKUP_PUT)
		repo_backup_put_abort(s->put);
	else if (s->kind == SLOT_READ)
		io_reader_free(s->rd);
	free(s->errmsg);
	memset(s, 0, sizeof(*s));
}

/* Abort every open put, close every stream, close the repository. */
static void
conn_unbind(conn *c)
{
	for (int i = 0; i < SERVER_HANDLES; i++)
		slot_release(&c->slots[i]);
	repo_close(c->r);
	c->r = NULL;
	free(c->stanza);
	c->stanza = NULL;
	free(c->put_errmsg);
	c->put_errmsg = NULL;
	c->put_err = 0;
}

/* Bind the connection to stanza ("" for none). */
static int
conn_bind(conn *c, const char *stanza)
{
	if (c->r != NULL && strcmp(c->stanza, stanza) == 0)
		return 0;
	conn_unbind(c);
	c->stanza = xstrdup(stanza);
	return repo_open_local(c->conf->repo_path, stanza[0] ? stanza : NULL, &c->r);
}

/* The slot a request names (kind SLOT_FREE: either put); naming anything else is a protocol violation. */
static int
slot_get(conn *c, const proto_request *q, slot_kind kind, slot **out)
{
	slot	   *s = q->handle >= 1 && q->handle <= SERVER_HANDLES ? &c->slots[q->handle - 1] : NULL;
	bool		ok = s && (kind == SLOT_FREE ? s->kind == SLOT_WAL_PUT || s->kind == SLOT_BACKUP_PUT : s->kind == kind);

	if (!ok)
		return error_set(ERR_FORMAT, "invalid protocol request: %s names handle %u, which is not open for it",
						 proto_op_name((int) q->op), q->handle);
	*out = s;
	return 0;
}

static slot *
slot_new(conn *c, slot_kind kind, uint32_t *handle)
{
	for (int i = 0; i < SERVER_HANDLES; i++)
		if (c->slots[i].kind == SLOT_FREE)
		{
			c->slots[i].kind = kind;
			*handle = (uint32_t) i + 1;
			return &c->slots[i];
		}
	error_set(ERR_INVALID, "this connection already has %d open streams", SERVER_HANDLES);
	return NULL;
}

/* Remember the first failure of a request that is not answered. */
static void
keep_error(int rc, int *err, char **msg)
{
	if (*err == 0)
	{
		*err = rc;
		*msg = xstrdup(error_msg());
	}
}

void
server_put_stanza(proto_msg *o, const stanza_info *st)
{
	proto_put_u64(o, st->system_id);
	proto_put_u32(o, st->pg_version);
	proto_put_u32(o, st->control_version);
	proto_put_u32(o, st->catalog_version);
	proto_put_u32(o, st->wal_segment_size);
	proto_put_u32(o, st->block_size);
	proto_put_u64(o, (uint64_t) st->created);
}

static void
put_wal(proto_msg *o, const wal_object *w)
{
	proto_put_str(o, w->name);
	proto_put_bytes(o, w->hash, HASH_LEN);
	proto_put_u32(o, w->ctype);
	proto_put_u64(o, w->stored_size);
}

typedef struct wal_page
{
	proto_msg  *o;
	uint64_t	skip;
	uint64_t	index;
	uint32_t	count;
} wal_page;

static int
wal_page_add(const wal_object *obj, void *arg)
{
	wal_page   *p = arg;

	if (p->index++ < p->skip)
		return 0;
	if (p->count == PROTO_LIST_MAX)
		return LIST_STOP;
	put_wal(p->o, obj);
	p->count++;
	return 0;
}

/* A list of names as u32 count and strings; the stanza list shows only what the client may use. */
static int
put_names(conn *c, proto_msg *o, char **names, int n, bool stanzas)
{
	size_t		count_at = o->len;
	uint32_t	count = 0;

	proto_put_u32(o, 0);
	for (int i = 0; i < n; i++)
	{
		if (stanzas && !server_auth_allows(c->conf->auth, c->cn, names[i]))
			continue;
		proto_put_str(o, names[i]);
		count++;
	}
	proto_patch_u32(o, count_at, count);
	if (o->len > PROTO_FRAME_MAX)
		return error_set(ERR_INVALID, "the list of %d names is too long for one reply", n);
	return 0;
}

static int
check_wal_name(const char *name)
{
	if (wal_file_classify(name) == WAL_FILE_INVALID)
		return error_set(ERR_FORMAT, "invalid WAL file name \"%s\"", name);
	return 0;
}

/* v as 4 big-endian bytes at p (the u32 arrays of block-exists and block-check answers). */
static void
put_be32(uint8_t *p, uint32_t v)
{
	for (int b = 0; b < 4; b++)
		p[b] = (uint8_t) (v >> (24 - 8 * b));
}

/*
 * Serve one request.  A repository failure is answered with an error frame
 * and the connection goes on; the return value is non-zero only when the
 * connection must close (transport failure or protocol violation).
 */
static int
serve(conn *c, const proto_request *q)
{
	proto_msg  *o = &c->out;
	stanza_info st;
	wal_object	wo;
	slot	   *s = NULL;
	uint32_t	handle = 0;
	bool		existed = false;
	int			rc = 0;

	proto_msg_init(o, PROTO_OK);
	if ((rc = conn_bind(c, q->stanza)) != 0)
		return proto_send_error(&c->io, rc, error_msg());
	switch (q->op)
	{
		case OP_PING:
			proto_put_str(o, PACKAGE_VERSION);
			break;
		case OP_STANZA_GET:
			if ((rc = repo_stanza_get(c->r, &st)) == 0)
				server_put_stanza(o, &st);
			break;
		case OP_STANZA_CREATE:
			st = (stanza_info) {q->system_id, q->pg_version, q->control_version, q->catalog_version,
				q->wal_segment_size, q->block_size, (int64_t) q->created};
			rc = repo_stanza_create(c->r, &st);
			break;
		case OP_STANZA_LIST:
		case OP_BACKUP_LIST:
			{
				char	  **names = NULL;
				int			n = 0;

				rc = q->op == OP_STANZA_LIST ? repo_stanza_list(c->r, &names, &n) : repo_backup_list(c->r, &names, &n);
				if (rc == 0)
					rc = put_names(c, o, names, n, q->op == OP_STANZA_LIST);
				repo_names_free(names, n);
				break;
			}
		case OP_WAL_PUT:
		case OP_BACKUP_PUT:
			if (q->op == OP_WAL_PUT && (rc = check_wal_name(q->name)) != 0)
				break;
			if ((s = slot_new(c, q->op == OP_WAL_PUT ? SLOT_WAL_PUT : SLOT_BACKUP_PUT, &handle)) == NULL)
				rc = ERR_INVALID;
			else if (q->op == OP_WAL_PUT)
				rc = repo_wal_put_begin(c->r, q->name, (compress_type) q->ctype, &s->put, &s->w);
			else
				rc = repo_backup_put_begin(c->r, q->name, &s->put, &s->w);
			if (rc && s)
				memset(s, 0, sizeof(*s));
			if (rc == 0)
				proto_put_u32(o, handle);
			break;
		case OP_WRITE:
			if ((rc = slot_get(c, q, SLOT_FREE, &s)) != 0)
				return rc;
			if (s->err == 0 && (rc = io_write(s->w, q->data, q->data_len)) != 0)
				keep_error(rc, &s->err, &s->errmsg);
			return 0;           /* not answered */
		case OP_WAL_COMMIT:
		case OP_BACKUP_COMMIT:
			if ((rc = slot_get(c, q, q->op == OP_WAL_COMMIT ? SLOT_WAL_PUT : SLOT_BACKUP_PUT, &s)) != 0)
				return rc;
			if (s->err)
				rc = error_set(s->err, "%s", s->errmsg);
			else
			{
				rc = q->op == OP_WAL_COMMIT ? repo_wal_put_commit(s->put, q->hash, &existed) : repo_backup_put_commit(s->put);
				s->kind = SLOT_FREE;    /* commit freed the put, whatever its result */
			}
			slot_release(s);
			if (rc == 0 && q->op == OP_WAL_COMMIT)
				proto_put_u32(o, existed ? 1 : 0);
			break;
		case OP_ABORT:
			if ((rc = slot_get(c, q, SLOT_FREE, &s)) != 0)
				return rc;
			slot_release(s);
			break;
		case OP_WAL_FIND:
			if ((rc = check_wal_name(q->name)) == 0 && (rc = repo_wal_find(c->r, q->name, &wo)) == 0)
				put_wal(o, &wo);
			break;
		case OP_WAL_OPEN:
		case OP_BACKUP_OPEN:
			memset(&wo, 0, sizeof(wo));
			if (q->op == OP_WAL_OPEN && (rc = check_wal_name(q->name)) != 0)
				break;
			snprintf(wo.name, sizeof(wo.name), "%s", q->name);
			memcpy(wo.hash, q->hash, HASH_LEN);
			wo.ctype = (compress_type) q->ctype;
			if ((s = slot_new(c, SLOT_READ, &handle)) == NULL)
				rc = ERR_INVALID;
			else
				rc = q->op == OP_WAL_OPEN ? repo_wal_open(c->r, &wo, &s->rd) : repo_backup_open(c->r, q->name, &s->rd);
			if (rc && s)
				memset(s, 0, sizeof(*s));
			if (rc == 0)
				proto_put_u32(o, handle);
			break;
		case OP_READ:
			{
				size_t		got = 0;

				if ((rc = slot_get(c, q, SLOT_READ, &s)) != 0)
					return rc;
				rc = io_read(s->rd, c->buf, q->max, &got);
				if (rc == 0)
					proto_put_bytes(o, c->buf, (uint32_t) got);
				if (rc || got == 0)
					slot_release(s);        /* the end, or a failure, closes the stream */
				break;
			}
		case OP_READ_CLOSE:
			if ((rc = slot_get(c, q, SLOT_READ, &s)) != 0)
				return rc;
			slot_release(s);
			break;
		case OP_WAL_LIST:
			{
				wal_page	p = {o, q->skip, 0, 0};
				size_t		count_at = o->len;

				proto_put_u32(o, 0);
				rc = repo_wal_list(c->r, wal_page_add, &p);
				if (rc == 0 || rc == LIST_STOP)
				{
					proto_patch_u32(o, count_at, p.count);
					proto_put_u32(o, rc == LIST_STOP ? 1 : 0);
					rc = 0;
				}
				break;
			}
		case OP_BLOCK_EXISTS:
			{
				size_t		n = q->data_len / HASH_LEN;
				uint8_t    *flags = c->buf;
				uint8_t    *lens = c->buf + PROTO_BATCH_MAX;

				for (size_t i = 0; i < n && rc == 0; i++)
				{
					bool		ex = false;
					uint32_t	len = 0;

					rc = repo_block_exists(c->r, q->data + i * HASH_LEN, &ex, &len);
					flags[i] = ex ? 1 : 0;
					put_be32(lens + i * 4, len);
				}
				if (rc == 0)
				{
					proto_put_bytes(o, flags, (uint32_t) n);
					proto_put_bytes(o, lens, (uint32_t) n * 4);
				}
				break;
			}
		case OP_BLOCK_PUT:
			{
				/* The records were all checked by proto_request_parse; after a failure the rest are dropped. */
				proto_msg	v = {.data = (uint8_t *) q->data, .len = q->data_len};
				proto_block b;

				for (uint32_t i = 0; i < q->count && c->put_err == 0; i++)
					if ((rc = proto_get_block(&v, &b)) != 0 ||
						(rc = repo_block_put(c->r, b.id, (compress_type) b.ctype, b.data, b.len, b.raw_len)) != 0)
						keep_error(rc, &c->put_err, &c->put_errmsg);
				return 0;       /* not answered */
			}
		case OP_BLOCK_FLUSH:
			if (c->put_err)
			{
				rc = error_set(c->put_err, "%s", c->put_errmsg);
				free(c->put_errmsg);
				c->put_errmsg = NULL;
				c->put_err = 0;
			}
			else
				rc = repo_block_flush(c->r);
			break;
		case OP_BLOCK_READ:
			{
				/*
				 * The records of the first ids, in order, as many as fit in the
				 * frame; it stops before an id that fails (the error is the
				 * answer when it is the first: the client asks again for the
				 * ones not answered, one by one).
				 */
				size_t		count_at = o->len;
				uint32_t	n = 0;
				block_data	bd;

				proto_put_u32(o, 0);
				for (; n < q->count; n++)
				{
					const uint8_t *id = q->data + (size_t) n * HASH_LEN;

					if ((rc = repo_block_read(c->r, id, c->buf, SERVER_BUF, &bd)) != 0)
						break;
					if (o->len + PROTO_BLOCK_OVERHEAD + bd.stored_len > PROTO_FRAME_MAX)
						break;
					proto_put_block(o, id, bd.ctype, bd.raw_len, c->buf, bd.stored_len);
				}
				if (n > 0)
				{
					if (rc)
						log_detail("client %s: block-read stops after %u of %u blocks: %s", c->cn, n, q->count, error_msg());
					rc = 0;
					error_clear();
					proto_patch_u32(o, count_at, n);
				}
				break;
			}
		case OP_BLOCK_CHECK:
			{
				/* Each id's own code and raw length, then the message of each failed one. */
				size_t		n = q->count;
				int			codes[PROTO_BATCH_MAX];
				uint32_t	lens[PROTO_BATCH_MAX];
				char	   *msgs[PROTO_BATCH_MAX];
				uint8_t		be[PROTO_BATCH_MAX * 4];

				if ((rc = repo_block_check_many(c->r, (const uint8_t (*)[HASH_LEN]) q->data, n, codes, lens, msgs)) != 0)
					break;
				for (size_t i = 0; i < n; i++)
					put_be32(be + i * 4, (uint32_t) codes[i]);
				proto_put_bytes(o, be, (uint32_t) n * 4);
				for (size_t i = 0; i < n; i++)
					put_be32(be + i * 4, lens[i]);
				proto_put_bytes(o, be, (uint32_t) n * 4);
				for (size_t i = 0; i < n; i++)
					if (codes[i] != 0)
					{
						if (strlen(msgs[i]) > PROTO_CHECK_MSG_MAX)
							strcpy(msgs[i] + PROTO_CHECK_MSG_MAX - 4, "...");
						proto_put_str(o, msgs[i]);
						free(msgs[i]);
					}
				break;
			}
		case OP_BACKUP_DELETE:
			rc = repo_backup_delete(c->r, q->name);
			break;
		case OP_DICT_GET:
			{
				void	   *d = NULL;
				size_t		n = 0;

				if ((rc = repo_dict_get(c->r, &d, &n)) == 0)
					proto_put_bytes(o, d, (uint32_t) n);
				free(d);
				break;
			}
		case OP_DICT_PUT:
			rc = repo_dict_put(c->r, q->data, q->data_len);
			break;
		case OP_WAL_DELETE:
			memset(&wo, 0, sizeof(wo));
			if ((rc = check_wal_name(q->name)) != 0)
				break;
			snprintf(wo.name, sizeof(wo.name), "%s", q->name);
			memcpy(wo.hash, q->hash, HASH_LEN);
			wo.ctype = (compress_type) q->ctype;
			rc = repo_wal_delete(c->r, &wo);
			break;
		case OP_BLOCKS_HOLD:
			rc = repo_blocks_hold(c->r);
			break;
		case OP_GC:
			{
				repo_gc_result g;

				if ((rc = repo_gc(c->r, q->dry_run != 0, &g)) == 0)
				{
					uint64_t	v[8] = {g.deferred, g.packs, g.packs_deleted, g.packs_rewritten, g.blocks_live,
						g.blocks_removed, g.bytes_before, g.bytes_after};

					for (int i = 0; i < 8; i++)
						proto_put_u64(o, v[i]);
				}
				break;
			}
		default:
			return error_set(ERR_FORMAT, "invalid protocol request: unknown operation %u", q->op);
	}
	if (rc)
	{
		log_detail("client %s: %s on stanza \"%s\" failed: [%s] %s", c->cn, proto_op_name((int) q->op), q->stanza,
				   error_name(rc), error_msg());
		return proto_send_error(&c->io, rc, error_msg());
	}
	return proto_send(&c->io, o);
}

/* Serve one connection until it ends; fd is the accepted socket. */
/* At detail level: how long a client stayed and how many requests of each kind it made (round trips and batching). */
static void
log_summary(const conn *c, double seconds)
{
	strbuf		sb = STRBUF_INIT;
	uint64_t	total = 0;

	for (int op = 1; op < OP__COUNT; op++)
		if (c->requests[op] > 0)
		{
			sb_appendf(&sb, "%s%s %llu", total ? ", " : "", proto_op_name(op), (unsigned long long) c->requests[op]);
			total += c->requests[op];
		}
	log_detail("client %s: served %llu request(s) in %.1f s%s%s%s", c->cn, (unsigned long long) total, seconds,
			   total ? " (" : "", sb_str(&sb), total ? ")" : "");
	sb_free(&sb);
}

static void
serve_conn(const server_conf *conf, int fd)
{
	conn		c = {.conf = conf};
	proto_request q;
	int			rc;
	bool		closed;
	double		started;

	if ((rc = tls_accept(conf->tls, fd, conf->io_timeout, &c.tls)) != 0)
	{
		log_warn("refused a client: %s", error_msg());
		return;
	}
	c.io = tls_proto_io(c.tls);
	c.cn = tls_peer_cn(c.tls);
	c.buf = xmalloc(SERVER_BUF);
	if ((rc = proto_hello(&c.io, true)) != 0)
	{
		log_warn("client %s (CN \"%s\"): %s", tls_peer_addr(c.tls), c.cn, error_msg());
		goto out;
	}
	log_info("client %s connected with certificate CN \"%s\"", tls_peer_addr(c.tls), c.cn);
	started = progress_now();
	while (!stop_requested)
	{
		if ((rc = tls_wait_readable(c.tls, conf->idle_timeout)) != 0)
		{
			if (rc == ERR_TIMEOUT)
				log_info("client %s: closing the connection: %s", c.cn, error_msg());
			if (rc == ERR_TIMEOUT || stop_requested)
				break;
			continue;
		}
		if ((rc = proto_recv(&c.io, &c.in, &closed)) != 0)
		{
			if (!closed)
				log_warn("client %s (CN \"%s\"): %s; closing the connection", tls_peer_addr(c.tls), c.cn, error_msg());
			if (rc == ERR_FORMAT)
				proto_send_error(&c.io, rc, error_msg());
			break;
		}
		if ((rc = proto_request_parse(&c.in, &q)) != 0)
		{
			log_warn("client %s (CN \"%s\") sent a malformed request: %s; closing the connection",
					 tls_peer_addr(c.tls), c.cn, error_msg());
			proto_send_error(&c.io, rc, error_msg());
			break;
		}
		/* The access check comes before anything touches the repository. */
		if (!server_auth_allows(conf->auth, c.cn, q.stanza))
		{
			if (server_auth_allows(conf->auth, c.cn, ""))
				rc = error_set(ERR_AUTH, "the repository server refuses access to stanza \"%s\" for client certificate "
							   "CN \"%s\": tls-server-auth does not allow it", q.stanza, c.cn);
			else
				rc = error_set(ERR_AUTH, "the repository server does not know client certificate CN \"%s\": "
							   "add it to tls-server-auth", c.cn);
			log_warn("client %s: %s", tls_peer_addr(c.tls), error_msg());
			proto_send_error(&c.io, rc, error_msg());
			break;
		}
		log_debug("client %s: %s stanza \"%s\" %s", c.cn, proto_op_name((int) q.op), q.stanza, q.name);
		c.requests[q.op]++;
		if ((rc = serve(&c, &q)) != 0)
		{
			log_warn("client %s (CN \"%s\"): %s; closing the connection", tls_peer_addr(c.tls), c.cn, error_msg());
			if (rc == ERR_FORMAT)
				proto_send_error(&c.io, rc, error_msg());
			break;
		}
	}
	log_summary(&c, progress_now() - started);
out:
	conn_unbind(&c);
	tls_close(c.tls);
	proto_msg_free(&c.in);
	proto_msg_free(&c.out);
	free(c.buf);
}

static void
set_signals(bool child)
{
	struct sigaction sa = {0};

	sa.sa_handler = on_signal;      /* no SA_RESTART: a signal wakes poll() */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	if (child)
		sa.sa_handler = SIG_IGN;
	sigaction(SIGHUP, &sa, NULL);
}

/* SIGHUP: read the configuration and certificates again; on any failure keep the running ones. */
static void
reload(server_conf **conf)
{
	server_conf *next = NULL;
	int			rc;

	reload_requested = 0;
	if ((rc = opt_reparse()) == 0)
		rc = conf_load(&next);
	if (rc)
	{
		log_error("reloading the configuration failed, the server keeps the previous one: [%s] %s",
				  error_name(rc), error_msg());
		return;
	}
	if (strcmp(next->address, (*conf)->address) != 0 || next->port != (*conf)->port)
		log_warn("tls-server-address and tls-server-port change only when the server restarts");
	conf_free(*conf);
	*conf = next;
	log_info("configuration and certificates reloaded");
}

static void
reap(pid_t *kids, int *nkids)
{
	pid_t		pid;

	while ((pid = waitpid(-1, NULL, WNOHANG)) > 0)
		for (int i = 0; i < *nkids; i++)
			if (kids[i] == pid)
			{
				kids[i] = kids[--*nkids];
				break;
			}
}

int
cmd_server(void)
{
	server_conf *conf = NULL;
	pid_t	   *kids;
	int			nkids = 0, lfd = -1, rc;

	if (geteuid() == 0 && !opt_bool(OPT_TLS_SERVER_ALLOW_ROOT))
		return error_set(ERR_OPTION, "pgkeep server does not run as root: run it as the user that owns the repository "
						 "(User= in the systemd unit), or set tls-server-allow-root=y");
	if ((rc = conf_load(&conf)) != 0)
		return rc;
	if ((rc = tls_listen(conf->address, conf->port, &lfd)) != 0)
	{
		conf_free(conf);
		return rc;
	}
	kids = xcalloc(1024, sizeof(pid_t));
	set_signals(false);
	log_info("pgkeep server %s listening on %s port %d, repository %s, at most %d connections", PACKAGE_VERSION,
			 conf->address, conf->port, conf->repo_path, conf->max_conn);
	while (!stop_requested)
	{
		struct pollfd pfd = {.fd = lfd, .events = POLLIN};
		int			n = poll(&pfd, 1, 1000);

		reap(kids, &nkids);
		if (reload_requested)
			reload(&conf);
		if (n <= 0 || stop_requested)
			continue;
		int			fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

		if (fd < 0)
			continue;
		if (nkids >= conf->max_conn)
		{
			log_warn("refused a connection: %d connections are open, the most tls-server-max-connections allows", nkids);
			close(fd);
			continue;
		}
		pid_t		pid = fork();

		if (pid == 0)
		{
			close(lfd);
			set_signals(true);
			serve_conn(conf, fd);
			log_close();
			_exit(0);
		}
		if (pid < 0)
			log_error("could not fork for a connection: %s", strerror(errno));
		else
			kids[nkids++] = pid;
		close(fd);
	}
	/* Stop: no new connections; each child ends after its current request. */
	close(lfd);
	log_info("stopping: waiting for %d connections to finish their requests", nkids);
	for (int i = 0; i < nkids; i++)
		kill(kids[i], SIGTERM);
	while (nkids > 0)
	{
		pid_t		pid = waitpid(-1, NULL, 0);

		if (pid < 0 && errno != EINTR)
			break;
		for (int i = 0; pid > 0 && i < nkids; i++)
			if (kids[i] == pid)
				kids[i] = kids[--nkids];
	}
	log_info("pgkeep server stopped");
	free(kids);
	conf_free(conf);
	return 0;
}

int
cmd_server_ping(void)
{
	const char *host = opt_param_count() > 0 ? opt_param(0) : opt_str_idx(OPT_REPO_HOST, 0);
	char	   *version = NULL;
	int			rc;

	if (opt_param_count() > 1)
		return error_set(ERR_OPTION, "server-ping takes at most one parameter, the host");
	if (host == NULL)
		return error_set(ERR_OPTION, "server-ping needs a host: give it as parameter or set repo1-host");
	if ((rc = repo_remote_ping(host, &version)) == 0)
		log_info("repository server %s answers: pgkeep %s", host, version);
	free(version);
	return rc;
}
