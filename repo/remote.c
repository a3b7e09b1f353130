/*
 * remote.c: the remote repository driver: every operation of repo.h is a
 * request to `pgkeep server` over TLS (src/tls.h) in the pgkeep protocol
 * (src/proto.h, doc/protocol.md).  One connection per handle, opened with
 * the handle.  Streams (WAL and manifests) go in WRITE and READ requests of
 * at most PROTO_CHUNK bytes on a server-side handle, so memory stays bounded
 * whatever their length and other requests may come between two chunks (a
 * restore reads block lists while it reads the manifest).  WRITE and block
 * puts are not answered one by one: the server reports the first failure at
 * the commit or flush, and TCP gives backpressure.  Blocks travel in batches,
 * not a frame each: puts are gathered into one block-put frame of up to
 * PUT_BATCH bytes, sent when it is full and before any answered request (so
 * the server sees them before a block-exists or block-flush); prefetched
 * reads go as block-read requests of up to READ_BATCH ids, sent before their
 * answers are read (at most REPO_PREFETCH_MAX ids in flight), each answered
 * with one frame of block records that the reads then hand out in order.
 */
#include "repo.h"
#include "server.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/error.h"
#include "../src/log.h"
#include "../src/mem.h"
#include "../src/option.h"
#include "../src/proto.h"
#include "../src/tls.h"

#define REMOTE_DEFAULT_PORT 8432
#define PUT_BATCH (512u * 1024)     /* bytes of block records gathered before a block-put is sent */
#define READ_BATCH 128              /* ids in one prefetched block-read request */

typedef struct remote_repo
{
	tls_ctx    *ctx;
	tls_conn   *conn;
	proto_io	io;
	proto_msg	msg;            /* a request, then its reply */
	bool		broken;         /* a transport failure: no more requests on this connection */
	bool		unflushed;      /* block puts since the last flush */
	int			put_failed;     /* a block flush failed (its code): blocks put before it may be missing */
	uint64_t	wal_deleted;    /* WAL objects this handle deleted (see remote_wal_list) */
	/* Block puts not sent yet: a block-put frame of puts_n records (its count field at puts_count_at). */
	proto_msg	puts;
	uint32_t	puts_n;
	size_t		puts_count_at;
	/*
	 * Prefetched block reads.  pend: the ids whose records were not handed
	 * out yet, oldest at pend_head (a ring).  reqs: how many ids each
	 * block-read request in flight asked for, oldest first.  got: the reply
	 * being handed out, got_left of its records left (for the first pend
	 * ids), then got_skip ids its request asked for that it did not answer.
	 */
	uint8_t		pend[REPO_PREFETCH_MAX][HASH_LEN];
	size_t		pend_head;
	size_t		pend_n;
	uint32_t	reqs[REPO_PREFETCH_MAX];
	size_t		reqs_head;
	size_t		reqs_n;
	proto_msg	got;
	uint32_t	got_left;
	uint32_t	got_skip;
	/* A block-exists request sent by remote_block_exists_ask and not answered yet: its id count. */
	size_t		asked;
} remote_repo;

/* A put in progress (WAL or manifest) and the writer that streams it. */
typedef struct remote_put
{
	const repo_driver *drv;     /* must be first: see repo.c */
	repo	   *r;
	io_writer	w;
	uint32_t	handle;         /* the server's */
	uint8_t    *buf;
	size_t		len;
} remote_put;

/* A stream being read (WAL or manifest). */
typedef struct remote_reader
{
	io_reader	base;
	repo	   *r;
	uint32_t	handle;         /* the server's */
	bool		done;           /* the end was reached (the server closed its handle) */
} remote_reader;

static const repo_driver remote_driver;
static int	call(struct remote_repo *rr);

static remote_repo *
RR(repo *r)
{
	return (remote_repo *) r->impl;
}

/*
 * Mark the connection unusable after a failure that leaves it out of step
 * (transport, or a malformed frame from the server); returns rc.  The
 * server's own error replies do not go through here.
 */
static int
broken(remote_repo *rr, int rc)
{
	if (rc)
		rr->broken = true;
	return rc;
}

static int
usable(remote_repo *rr)
{
	if (rr->broken)
		return error_set(ERR_PROTOCOL, "the connection to the repository server was lost earlier; retry the command");
	return 0;
}

/* Connect to host (port, certificates and timeouts from the repo1-host-* options) and exchange hellos. */
static int
remote_connect(const char *host, tls_ctx **ctx, tls_conn **conn)
{
	const char *type = opt_str_idx(OPT_REPO_HOST_TYPE, 0);
	int			port = opt_has_idx(OPT_REPO_HOST_PORT, 0) ? (int) opt_int_idx(OPT_REPO_HOST_PORT, 0) : REMOTE_DEFAULT_PORT;
	int			timeout = (int) opt_int(OPT_IO_TIMEOUT);
	proto_io	io;
	int			rc;

	*ctx = NULL;
	*conn = NULL;
	if (type && strcmp(type, "tls") != 0)
		return error_set(ERR_OPTION, "repo1-host-type=%s is not supported yet: set repo1-host-type=tls and the client "
						 "certificate options repo1-host-cert-file, repo1-host-key-file and repo1-host-ca-file", type);
	if (!opt_has_idx(OPT_REPO_HOST_CERT_FILE, 0) || !opt_has_idx(OPT_REPO_HOST_KEY_FILE, 0))
		return error_set(ERR_OPTION, "repo1-host is set: the repository server needs a client certificate, "
						 "set repo1-host-cert-file and repo1-host-key-file");
	if ((rc = tls_client_ctx_new(opt_str_idx(OPT_REPO_HOST_CERT_FILE, 0), opt_str_idx(OPT_REPO_HOST_KEY_FILE, 0),
								 opt_str_idx(OPT_REPO_HOST_CA_FILE, 0), ctx)) != 0)
		return rc;
	if ((rc = tls_connect(*ctx, host, port, timeout, conn)) != 0)
		goto fail;
	tls_set_timeout(*conn, (int) opt_int(OPT_PROTOCOL_TIMEOUT));
	io = tls_proto_io(*conn);
	if ((rc = proto_hello(&io, false)) != 0)
	{
		/* With TLS 1.3 the server's verdict on our certificate arrives with its first bytes. */
		if (rc == ERR_AUTH)
			error_wrap(rc, "the repository server %s:%d refused the client certificate \"%s\"; check that it is "
					   "valid and signed by the CA in the server's tls-server-ca-file", host, port,
					   opt_str_idx(OPT_REPO_HOST_CERT_FILE, 0));
		else
			error_wrap(rc, "the repository server %s:%d does not answer the protocol hello", host, port);
		goto fail;
	}
	return 0;
fail:
	tls_close(*conn);
	tls_ctx_free(*ctx);
	*conn = NULL;
	*ctx = NULL;
	return rc;
}

int
repo_remote_open(const char *stanza, repo **out)
{
	remote_repo *rr = xcalloc(1, sizeof(*rr));
	repo	   *r;
	int			rc;

	*out = NULL;
	if ((rc = remote_connect(opt_str_idx(OPT_REPO_HOST, 0), &rr->ctx, &rr->conn)) != 0)
	{
		free(rr);
		return rc;
	}
	rr->io = tls_proto_io(rr->conn);
	r = xcalloc(1, sizeof(*r));
	r->drv = &remote_driver;
	r->stanza = stanza ? xstrdup(stanza) : NULL;
	r->impl = rr;
	*out = r;
	return 0;
}

int
repo_remote_ping(const char *host, char **version)
{
	remote_repo rr = {0};
	const char *v;
	int			rc;

	*version = NULL;
	if ((rc = remote_connect(host, &rr.ctx, &rr.conn)) != 0)
		return rc;
	rr.io = tls_proto_io(rr.conn);
	proto_msg_init(&rr.msg, PROTO_REQUEST);
	proto_put_u32(&rr.msg, OP_PING);
	proto_put_str(&rr.msg, "");
	if ((rc = call(&rr)) == 0 && (rc = proto_get_str(&rr.msg, "version", &v)) == 0 &&
		(rc = proto_get_end(&rr.msg, "ping reply")) == 0)
		*version = xstrdup(v);
	tls_close(rr.conn);
	tls_ctx_free(rr.ctx);
	proto_msg_free(&rr.msg);
	return rc;
}

/*
 * Read a reply into m: the server's error leaves the connection usable
 * (*peer_error set; may be NULL), anything else wrong does not.
 */
static int
reply(remote_repo *rr, proto_msg *m, bool *peer_error)
{
	bool		pe;
	int			rc = proto_recv_reply(&rr->io, m, &pe);

	if (peer_error)
		*peer_error = pe;
	return rc && !pe ? broken(rr, rc) : rc;
}

/*
 * Keep the error being handled across clean-up that may fail on its own (an
 * abort or a close after a failure): error_keep() saves it, error_restore()
 * puts it back, dropping whatever the clean-up set.
 */
typedef struct kept_error
{
	int			code;
	char	   *msg;
} kept_error;

static kept_error
error_keep(void)
{
	return (kept_error) {error_code_last(), xstrdup(error_msg())};
}

static void
error_restore(kept_error *k)
{
	error_clear();
	if (k->code)
		error_set(k->code, "%s", k->msg);
	free(k->msg);
}

/* Take the n oldest ids off the ring of prefetched reads. */
static void
pend_pop(remote_repo *rr, size_t n)
{
	rr->pend_head = (rr->pend_head + n) % REPO_PREFETCH_MAX;
	rr->pend_n -= n;
}

/*
 * Drop what prefetched reads left: the records not handed out, and the
 * replies not read yet (read and dropped, so that the next reply read is the
 * next request's).  A transport failure marks the connection broken (the
 * next request reports it).
 */
static void
drain(remote_repo *rr)
{
	kept_error	k;

	pend_pop(rr, rr->pend_n);
	rr->got_left = rr->got_skip = 0;
	if (rr->reqs_n == 0 && rr->asked == 0)
		return;
	k = error_keep();
	if (rr->asked > 0 && !rr->broken)
		(void) reply(rr, &rr->got, NULL);
	rr->asked = 0;
	for (; rr->reqs_n > 0; rr->reqs_n--)
	{
		rr->reqs_head = (rr->reqs_head + 1) % REPO_PREFETCH_MAX;
		if (!rr->broken)
			(void) reply(rr, &rr->got, NULL);
	}
	error_restore(&k);
}

/*
 * Queue the gathered block puts as one block-put frame (not answered): it
 * goes out with the next request, which the client sends before it waits.
 */
static int
puts_send(remote_repo *rr)
{
	int			rc;

	if (rr->puts_n == 0)
		return 0;
	proto_patch_u32(&rr->puts, rr->puts_count_at, rr->puts_n);
	rr->puts_n = 0;
	if ((rc = usable(rr)) != 0)
		return rc;
	return broken(rr, proto_queue(&rr->io, &rr->puts));
}

/* Start a request frame for op on r's stanza (after the answers of prefetched reads). */
static proto_msg *
req(repo *r, proto_op op)
{
	proto_msg  *m = &RR(r)->msg;

	drain(RR(r));
	proto_msg_init(m, PROTO_REQUEST);
	proto_put_u32(m, op);
	proto_put_str(m, r->stanza);
	return m;
}

/* Send the request built in rr->msg (after the gathered block puts) and read the reply into it (fields follow). */
static int
call(remote_repo *rr)
{
	int			rc;

	if ((rc = usable(rr)) != 0 || (rc = puts_send(rr)) != 0)
		return rc;
	if ((rc = proto_send(&rr->io, &rr->msg)) != 0)
		return broken(rr, rc);
	return reply(rr, &rr->msg, NULL);
}

static int
simple(repo *r, proto_op op)
{
	int			rc;

	req(r, op);
	if ((rc = call(RR(r))) == 0)
		rc = broken(RR(r), proto_get_end(&RR(r)->msg, "reply"));
	return rc;
}

static void
remote_close(repo *r)
{
	remote_repo *rr = RR(r);

	drain(rr);
	/* Closing a local handle flushes its blocks: do the same before hanging up. */
	if (rr->unflushed && !rr->broken && !rr->put_failed)
	{
		kept_error	k = error_keep();

		if (simple(r, OP_BLOCK_FLUSH) != 0)
			log_warn("flushing blocks on the repository server failed: %s", error_msg());
		error_restore(&k);
	}
	tls_close(rr->conn);
	tls_ctx_free(rr->ctx);
	proto_msg_free(&rr->msg);
	proto_msg_free(&rr->puts);
	proto_msg_free(&rr->got);
	free(rr);
	free(r->stanza);
	free(r);
}

/* Stanza */

static int
remote_stanza_create(repo *r, const stanza_info *st)
{
	proto_msg  *m;
	int			rc;

	if ((rc = repo_need_stanza(r)) != 0)
		return rc;
	m = req(r, OP_STANZA_CREATE);
	server_put_stanza(m, st);
	if ((rc = call(RR(r))) == 0)
		rc = broken(RR(r), proto_get_end(m, "reply"));
	return rc;
}

static int
remote_stanza_get(repo *r, stanza_info *st)
{
	proto_msg  *m;
	uint64_t	created = 0;
	int			rc;

	if ((rc = repo_need_stanza(r)) != 0)
		return rc;
	m = req(r, OP_STANZA_GET);
	if ((rc = call(RR(r))) != 0)
		return rc;
	if ((rc = proto_get_u64(m, "system identifier", &st->system_id)) == 0 &&
		(rc = proto_get_u32(m, "pg version", &st->pg_version)) == 0 &&
		(rc = proto_get_u32(m, "control version", &st->control_version)) == 0 &&
		(rc = proto_get_u32(m, "catalog version", &st->catalog_version)) == 0 &&
		(rc = proto_get_u32(m, "wal segment size", &st->wal_segment_size)) == 0 &&
		(rc = proto_get_u32(m, "block size", &st->block_size)) == 0 &&
		(rc = proto_get_u64(m, "created", &created)) == 0)
		rc = proto_get_end(m, "stanza reply");
	st->created = (int64_t) created;
	return broken(RR(r), rc);
}

/* Read a list of names: u32 count, then the names. */
static int
names(repo *r, proto_op op, char ***out, int *count)
{
	proto_msg  *m;
	uint32_t	n;
	char	  **v = NULL;
	int			got = 0, rc;

	*out = NULL;
	*count = 0;
	m = req(r, op);
	if ((rc = call(RR(r))) != 0)
		return rc;
	/* Each name takes at least 6 bytes: a count beyond that is a lie, refused before allocating. */
	if ((rc = proto_get_u32(m, "count", &n)) == 0 && n > m->len / 6)
		rc = error_set(ERR_FORMAT, "invalid protocol field count: %u names cannot fit in the frame", n);
	if (rc == 0)
		v = xcalloc(n ? n : 1, sizeof(char *));
	for (; rc == 0 && got < (int) n; got++)
	{
		const char *s;

		if ((rc = proto_get_str(m, "name", &s)) == 0)
			v[got] = xstrdup(s);
	}
	if (rc == 0)
		rc = proto_get_end(m, "list reply");
	if (rc)
	{
		repo_names_free(v, got);
		return broken(RR(r), rc);
	}
	*out = v;
	*count = (int) n;
	return 0;
}

static int
remote_stanza_list(repo *r, char ***out, int *count)
{
	return names(r, OP_STANZA_LIST, out, count);
}

/* Streams written to the server */

static remote_put *
PUT(io_writer *w)
{
	return (remote_put *) ((char *) w - offsetof(remote_put, w));
}

/* Send the buffered bytes as one WRITE (not answered). */
static int
put_flush(io_writer *w)
{
	remote_put *p = PUT(w);
	remote_repo *rr = RR(p->r);
	proto_msg  *m;
	int			rc;

	if (p->len == 0)
		return 0;
	if ((rc = usable(rr)) != 0)
		return rc;
	m = req(p->r, OP_WRITE);
	proto_put_u32(m, p->handle);
	proto_put_bytes(m, p->buf, (uint32_t) p->len);
	p->len = 0;
	return broken(rr, proto_send(&rr->io, m));
}

static int
put_write(io_writer *w, const void *buf, size_t n)
{
	remote_put *p = PUT(w);
	const uint8_t *src = buf;
	int			rc;

	while (n > 0)
	{
		size_t		take = PROTO_CHUNK - p->len < n ? PROTO_CHUNK - p->len : n;

		memcpy(p->buf + p->len, src, take);
		p->len += take;
		src += take;
		n -= take;
		if (p->len == PROTO_CHUNK && (rc = put_flush(w)) != 0)
			return rc;
	}
	return 0;
}

static void
put_writer_free(io_writer *w)
{
	(void) w;                   /* owned by the put */
}

static int
put_begin(repo *r, proto_op op, const char *name, compress_type ctype, repo_put **put, io_writer **w)
{
	remote_put *p;
	proto_msg  *m;
	uint32_t	handle;
	int			rc;

	*put = NULL;
	*w = NULL;
	if ((rc = repo_need_stanza(r)) != 0)
		return rc;
	m = req(r, op);
	proto_put_str(m, name);
	if (op == OP_WAL_PUT)
		proto_put_u32(m, ctype);
	if ((rc = call(RR(r))) != 0)
		return rc;
	if ((rc = proto_get_u32(m, "handle", &handle)) != 0 || (rc = proto_get_end(m, "reply")) != 0)
		return broken(RR(r), rc);
	p = xcalloc(1, sizeof(*p));
	p->drv = &remote_driver;
	p->r = r;
	p->handle = handle;
	p->buf = xmalloc(PROTO_CHUNK);
	p->w.write = put_write;
	p->w.close = put_flush;
	p->w.free = put_writer_free;
	*put = (repo_put *) p;
	*w = &p->w;
	return 0;
}

static void
put_free(remote_put *p)
{
	free(p->buf);
	free(p);
}

static int
remote_wal_put_begin(repo *r, const char *name, compress_type ctype, repo_put **put, io_writer **w)
{
	return put_begin(r, OP_WAL_PUT, name, ctype, put, w);
}

static int
remote_wal_put_commit(repo_put *put, const uint8_t plain_hash[HASH_LEN], bool *existed)
{
	remote_put *p = (remote_put *) put;
	proto_msg  *m;
	uint32_t	ex = 0;
	int			rc;

	*existed = false;
	if ((rc = put_flush(&p->w)) == 0)
	{
		m = req(p->r, OP_WAL_COMMIT);
		proto_put_u32(m, p->handle);
		proto_put_bytes(m, plain_hash, HASH_LEN);
		if ((rc = call(RR(p->r))) == 0)
		{
			if ((rc = proto_get_u32(m, "existed", &ex)) == 0)
				rc = proto_get_end(m, "commit reply");
			broken(RR(p->r), rc);
		}
	}
	*existed = ex != 0;
	put_free(p);
	return rc;
}

/* Tell the server to discard the put; when the connection is gone the server discards it anyway. */
static void
put_abort(repo_put *put)
{
	remote_put *p = (remote_put *) put;

	if (!RR(p->r)->broken)
	{
		/* An abort follows the caller's failure: keep its message, not the abort's. */
		kept_error	k = error_keep();

		proto_put_u32(req(p->r, OP_ABORT), p->handle);
		call(RR(p->r));
		error_restore(&k);
	}
	put_free(p);
}

static int
remote_wal_find(repo *r, const char *name, wal_object *out)
{
	proto_msg  *m;
	const char *got;
	uint32_t	ct;
	int			rc;

	if ((rc = repo_need_stanza(r)) != 0)
		return rc;
	m = req(r, OP_WAL_FIND);
	proto_put_str(m, name);
	if ((rc = call(RR(r))) != 0)
		return rc;
	memset(out, 0, sizeof(*out));
	if ((rc = proto_get_str(m, "name", &got)) == 0 && (rc = proto_get_fixed(m, "hash", out->hash, HASH_LEN)) == 0 &&
		(rc = proto_get_u32(m, "compression type", &ct)) == 0 &&
		(rc = proto_get_u64(m, "stored size", &out->stored_size)) == 0 && (rc = proto_get_end(m, "reply")) == 0 &&
		(strlen(got) >= sizeof(out->name) || ct > COMPRESS_LZ4))
		rc = error_set(ERR_FORMAT, "invalid WAL object in the reply of the repository server");
	if (rc == 0)
	{
		snprintf(out->name, sizeof(out->name), "%s", got);
		out->ctype = (compress_type) ct;
	}
	return broken(RR(r), rc);
}

/* Streams read from the server */

static int
reader_read(io_reader *base, void *buf, size_t n, size_t *got)
{
	remote_reader *rd = (remote_reader *) base;
	proto_msg  *m;
	const uint8_t *data;
	uint32_t	len;
	int			rc;

	*got = 0;
	if (rd->done || n == 0)
		return 0;
	m = req(rd->r, OP_READ);
	proto_put_u32(m, rd->handle);
	proto_put_u32(m, n < PROTO_CHUNK ? (uint32_t) n : PROTO_CHUNK);
	if ((rc = call(RR(rd->r))) != 0)
	{
		rd->done = true;        /* the server closed its handle with the error */
		return rc;
	}
	if ((rc = proto_get_bytes(m, "data", &data, &len)) == 0 && (rc = proto_get_end(m, "read reply")) == 0 &&
		len > n)
		rc = error_set(ERR_FORMAT, "the repository server sent %u bytes for a read of %zu", len, n);
	if (rc)
		return broken(RR(rd->r), rc);
	memcpy(buf, data, len);
	*got = len;
	rd->done = len == 0;
	return 0;
}

static void
reader_free(io_reader *base)
{
	remote_reader *rd = (remote_reader *) base;

	if (!rd->done && !RR(rd->r)->broken)
	{
		/* Often freed after the caller's failure: keep its message (this used to clear it). */
		kept_error	k = error_keep();

		proto_put_u32(req(rd->r, OP_READ_CLOSE), rd->handle);
		call(RR(rd->r));
		error_restore(&k);
	}
	free(rd);
}

static int
open_stream(repo *r, io_reader **out)
{
	remote_reader *rd;
	proto_msg  *m = &RR(r)->msg;
	uint32_t	handle;
	int			rc;

	*out = NULL;
	if ((rc = call(RR(r))) != 0)
		return rc;
	if ((rc = proto_get_u32(m, "handle", &handle)) != 0 || (rc = proto_get_end(m, "reply")) != 0)
		return broken(RR(r), rc);
	rd = xcalloc(1, sizeof(*rd));
	rd->base.read = reader_read;
	rd->base.free = reader_free;
	rd->r = r;
	rd->handle = handle;
	*out = &rd->base;
	return 0;
}

static int
remote_wal_open(repo *r, const wal_object *obj, io_reader **rd)
{
	proto_msg  *m;
	int			rc;

	if ((rc = repo_need_stanza(r)) != 0)
		return rc;
	m = req(r, OP_WAL_OPEN);
	proto_put_str(m, obj->name);
	proto_put_bytes(m, obj->hash, HASH_LEN);
	proto_put_u32(m, obj->ctype);
	return open_stream(r, rd);
}

/* One page of the WAL list: up to PROTO_LIST_MAX objects after skip; *more when the server has more. */
static int
wal_page(repo *r, uint64_t skip, wal_object **objs, uint32_t *n, bool *more)
{
	proto_msg  *m = req(r, OP_WAL_LIST);
	uint32_t	count = 0, mo = 0;
	int			rc;

	proto_put_u64(m, skip);
	if ((rc = call(RR(r))) != 0)
		return rc;
	if ((rc = proto_get_u32(m, "count", &count)) == 0 && count > PROTO_LIST_MAX)
		rc = error_set(ERR_FORMAT, "invalid protocol field count: %u WAL objects in one page", count);
	*objs = xcalloc(count ? count : 1, sizeof(wal_object));
	for (uint32_t i = 0; rc == 0 && i < count; i++)
	{
		wal_object *o = &(*objs)[i];
		const char *name;
		uint32_t	ct;

		if ((rc = proto_get_str(m, "name", &name)) == 0 && (rc = proto_get_fixed(m, "hash", o->hash, HASH_LEN)) == 0 &&
			(rc = proto_get_u32(m, "compression type", &ct)) == 0 &&
			(rc = proto_get_u64(m, "stored size", &o->stored_size)) == 0 &&
			(strlen(name) >= sizeof(o->name) || ct > COMPRESS_LZ4))
			rc = error_set(ERR_FORMAT, "invalid WAL object in a list from the repository server");
		if (rc == 0)
		{
			snprintf(o->name, sizeof(o->name), "%s", name);
			o->ctype = (compress_type) ct;
		}
	}
	if (rc == 0 && (rc = proto_get_u32(m, "more", &mo)) == 0)
		rc = proto_get_end(m, "list reply");
	*n = count;
	*more = mo != 0;
	return broken(RR(r), rc);
}

/*
 * Pages of the listing are asked for by position: objects the callback
 * deletes (repo.h allows it to delete the one it is given) move the later
 * ones forward, so the next page starts that many positions earlier.
 */
static int
remote_wal_list(repo *r, int (*fn) (const wal_object *obj, void *arg), void *arg)
{
	uint64_t	skip = 0;
	bool		more = true;
	int			rc = 0;

	if ((rc = repo_need_stanza(r)) != 0)
		return rc;
	while (rc == 0 && more)
	{
		wal_object *objs = NULL;
		uint32_t	n = 0;
		uint64_t	deleted = RR(r)->wal_deleted;

		rc = wal_page(r, skip, &objs, &n, &more);
		for (uint32_t i = 0; rc == 0 && i < n; i++)
			rc = fn(&objs[i], arg);
		skip += n - (RR(r)->wal_deleted - deleted);
		free(objs);
	}
	return rc;
}

static int
remote_wal_delete(repo *r, const wal_object *obj)
{
	proto_msg  *m;
	int			rc;

	if ((rc = repo_need_stanza(r)) != 0)
		return rc;
	m = req(r, OP_WAL_DELETE);
	proto_put_str(m, obj->name);
	proto_put_bytes(m, obj->hash, HASH_LEN);
	proto_put_u32(m, obj->ctype);
	if ((rc = call(RR(r))) == 0 && (rc = broken(RR(r), proto_get_end(m, "reply"))) == 0)
		RR(r)->wal_deleted++;
	return rc;
}

/* Blocks */

/* A big-endian u32 of a reply's byte field. */
static uint32_t
be32(const uint8_t *p)
{
	return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}


/* Send a block-exists request for ids (after the gathered puts), not waiting for its answer. */
static int
remote_block_exists_ask(repo *r, const uint8_t (*ids)[HASH_LEN], size_t n)
{
	remote_repo *rr = RR(r);
	proto_msg  *m = req(r, OP_BLOCK_EXISTS);
	int			rc;

	if (n == 0 || n > PROTO_BATCH_MAX)
		return error_set(ERR_INTERNAL, "a block-exists request of %zu ids", n);
	proto_put_bytes(m, ids, (uint32_t) (n * HASH_LEN));
	if ((rc = usable(rr)) != 0 || (rc = puts_send(rr)) != 0)
		return rc;
	if ((rc = proto_send(&rr->io, m)) != 0)
		return broken(rr, rc);
	rr->asked = n;
	return 0;
}

static int
remote_block_exists_answer(repo *r, bool *exists, uint32_t *stored_len)
{
	remote_repo *rr = RR(r);
	proto_msg  *m = &rr->msg;
	const uint8_t *flags, *lens;
	uint32_t	nf = 0, nl = 0;
	size_t		n = rr->asked;
	int			rc;

	if (n == 0)
		return error_set(ERR_INTERNAL, "a block-exists answer without a question");
	rr->asked = 0;
	if ((rc = reply(rr, m, NULL)) != 0)
		return rc;
	if ((rc = proto_get_bytes(m, "exists", &flags, &nf)) == 0 && (rc = proto_get_bytes(m, "stored lengths", &lens, &nl)) == 0 &&
		(rc = proto_get_end(m, "reply")) == 0 && (nf != n || nl != n * 4))
		rc = error_set(ERR_FORMAT, "the repository server answered %u of %zu block-exists questions", nf, n);
	if (rc)
		return broken(RR(r), rc);
	for (size_t i = 0; i < n; i++)
	{
		exists[i] = flags[i] != 0;
		stored_len[i] = be32(lens + i * 4);
	}
	return 0;
}

static int
remote_block_exists_many(repo *r, const uint8_t (*ids)[HASH_LEN], size_t n, bool *exists, uint32_t *stored_len)
{
	int			rc = remote_block_exists_ask(r, ids, n);

	return rc ? rc : remote_block_exists_answer(r, exists, stored_len);
}

static int
remote_block_exists(repo *r, const uint8_t id[HASH_LEN], bool *exists, uint32_t *stored_len)
{
	uint32_t	len = 0;
	int			rc = remote_block_exists_many(r, (const uint8_t (*)[HASH_LEN]) id, 1, exists, &len);

	if (stored_len)
		*stored_len = len;
	return rc;
}

/* Gather a block put into the block-put frame; send the frame first when the block would overfill it. */
static int
remote_block_put(repo *r, const uint8_t id[HASH_LEN], compress_type ctype, const void *data,
				 uint32_t stored_len, uint32_t raw_len)
{
	remote_repo *rr = RR(r);
	int			rc;

	if ((rc = usable(rr)) != 0)
		return rc;
	if (rr->put_failed)
		return error_set(rr->put_failed, "an earlier block flush on the repository server failed; retry the command");
	if ((size_t) stored_len + PROTO_BLOCK_OVERHEAD + 128 > PROTO_FRAME_MAX)
		return error_set(ERR_INVALID, "a block of %u stored bytes is too large for the protocol", stored_len);
	if (rr->puts_n > 0 && (rr->puts_n == PROTO_BATCH_MAX || rr->puts.len + PROTO_BLOCK_OVERHEAD + stored_len > PUT_BATCH) &&
		(rc = puts_send(rr)) != 0)
		return rc;
	if (rr->puts_n == 0)
	{
		proto_msg_init(&rr->puts, PROTO_REQUEST);
		proto_put_u32(&rr->puts, OP_BLOCK_PUT);
		proto_put_str(&rr->puts, r->stanza);
		rr->puts_count_at = rr->puts.len;
		proto_put_u32(&rr->puts, 0);
	}
	proto_put_block(&rr->puts, id, ctype, raw_len, data, stored_len);
	rr->puts_n++;
	/* No reply: the server answers the next flush with the first failure. */
	rr->unflushed = true;
	return 0;
}

/*
 * Send the gathered puts and a block-flush.  When it fails, blocks put
 * since the last flush that succeeded may be missing (the server drops the
 * puts after a failed one): later puts and flushes on this handle fail too,
 * so that no later flush seems to make them durable.
 */
static int
remote_block_flush(repo *r)
{
	remote_repo *rr = RR(r);
	int			rc;

	if (rr->put_failed)
		return error_set(rr->put_failed, "an earlier block flush on the repository server failed; retry the command");
	if ((rc = simple(r, OP_BLOCK_FLUSH)) == 0)
		rr->unflushed = false;
	else
		rr->put_failed = rc;
	return rc;
}

/* Send block-read requests for ids (READ_BATCH per request) without reading the answers (see repo_block_prefetch). */
static int
remote_block_prefetch(repo *r, const uint8_t (*ids)[HASH_LEN], size_t n)
{
	remote_repo *rr = RR(r);
	proto_msg  *m = &rr->msg;
	int			rc;

	if (rr->asked > 0)
		drain(rr);
	if ((rc = usable(rr)) != 0 || (rc = puts_send(rr)) != 0)
		return rc;
	while (n > 0 && rr->pend_n < REPO_PREFETCH_MAX)
	{
		size_t		k = n < READ_BATCH ? n : READ_BATCH;

		if (k > REPO_PREFETCH_MAX - rr->pend_n)
			k = REPO_PREFETCH_MAX - rr->pend_n;
		/* not req(): that would drop the answers of the reads just sent */
		proto_msg_init(m, PROTO_REQUEST);
		proto_put_u32(m, OP_BLOCK_READ);
		proto_put_str(m, r->stanza);
		proto_put_bytes(m, ids, (uint32_t) (k * HASH_LEN));
		/* The requests of one call go out together: the last one flushes them. */
		bool		last = k == n || rr->pend_n + k == REPO_PREFETCH_MAX;

		if ((rc = (last ? proto_send : proto_queue) (&rr->io, m)) != 0)
			return broken(rr, rc);
		for (size_t i = 0; i < k; i++)
			memcpy(rr->pend[(rr->pend_head + rr->pend_n + i) % REPO_PREFETCH_MAX], ids[i], HASH_LEN);
		rr->pend_n += k;
		rr->reqs[(rr->reqs_head + rr->reqs_n++) % REPO_PREFETCH_MAX] = (uint32_t) k;
		ids += k;
		n -= k;
	}
	return 0;
}

/* The u32 count that starts a block-read reply: 1 to asked. */
static int
read_count(remote_repo *rr, proto_msg *m, uint32_t asked, uint32_t *n)
{
	int			rc = proto_get_u32(m, "block count", n);

	if (rc == 0 && (*n == 0 || *n > asked))
		rc = error_set(ERR_FORMAT, "the repository server answered a read of %u blocks with %u", asked, *n);
	return broken(rr, rc);
}

/*
 * The next reply of a prefetched read into rr->got, when the oldest id in
 * flight is id and no record of the previous reply is left.  The server's
 * error answers the first id (that read fails with it); the ids a reply
 * does not cover are dropped from the ring and asked for again when read.
 */
static int
next_reply(remote_repo *rr, const uint8_t id[HASH_LEN])
{
	uint32_t	asked;
	bool		peer_error;
	int			rc;

	if (rr->got_left == 0 && rr->got_skip > 0)
	{
		pend_pop(rr, rr->got_skip);
		rr->got_skip = 0;
	}
	if (rr->got_left > 0 || rr->reqs_n == 0 || rr->pend_n == 0 || memcmp(rr->pend[rr->pend_head], id, HASH_LEN) != 0)
		return 0;
	asked = rr->reqs[rr->reqs_head];
	rr->reqs_head = (rr->reqs_head + 1) % REPO_PREFETCH_MAX;
	rr->reqs_n--;
	if ((rc = reply(rr, &rr->got, &peer_error)) != 0)
	{
		if (peer_error)
		{
			pend_pop(rr, 1);
			rr->got_skip = asked - 1;
		}
		return rc;
	}
	if ((rc = read_count(rr, &rr->got, asked, &rr->got_left)) == 0)
		rr->got_skip = asked - rr->got_left;
	return rc;
}

static int
remote_block_read(repo *r, const uint8_t id[HASH_LEN], void *buf, size_t cap, block_data *out)
{
	remote_repo *rr = RR(r);
	proto_msg  *m;
	proto_block b;
	uint32_t	n;
	int			rc;

	if ((rc = usable(rr)) != 0 || (rc = next_reply(rr, id)) != 0)
		return rc;
	if (rr->got_left > 0 && memcmp(rr->pend[rr->pend_head], id, HASH_LEN) == 0)
	{
		/* prefetched: its record is the next one of rr->got */
		m = &rr->got;
		pend_pop(rr, 1);
		rr->got_left--;
		n = rr->got_left + 1;
	}
	else
	{
		m = req(r, OP_BLOCK_READ);
		proto_put_bytes(m, id, HASH_LEN);
		if ((rc = call(rr)) != 0 || (rc = read_count(rr, m, 1, &n)) != 0)
			return rc;
	}
	if ((rc = proto_get_block(m, &b)) != 0 || (n == 1 && (rc = proto_get_end(m, "block-read reply")) != 0))
		return broken(rr, rc);
	if (memcmp(b.id, id, HASH_LEN) != 0)
		return broken(rr, error_set(ERR_FORMAT, "the repository server answered a block read with another block"));
	if (b.len > cap)
		return error_set(ERR_CORRUPT, "the repository holds %u stored bytes for the block, more than the %zu expected", b.len, cap);
	memcpy(buf, b.data, b.len);
	out->ctype = (compress_type) b.ctype;
	out->raw_len = b.raw_len;
	out->stored_len = b.len;
	return 0;
}

static int
remote_block_check_many(repo *r, const uint8_t (*ids)[HASH_LEN], size_t n, int *rcs, uint32_t *raw_len, char **msg)
{
	proto_msg  *m = req(r, OP_BLOCK_CHECK);
	const uint8_t *codes, *lens;
	uint32_t	nc = 0, nl = 0;
	size_t		i;
	int			rc;

	if (n == 0 || n > PROTO_BATCH_MAX)
		return error_set(ERR_INTERNAL, "a block-check request of %zu ids", n);
	proto_put_bytes(m, ids, (uint32_t) (n * HASH_LEN));
	if ((rc = call(RR(r))) != 0)
		return rc;
	if ((rc = proto_get_bytes(m, "codes", &codes, &nc)) == 0 && (rc = proto_get_bytes(m, "raw lengths", &lens, &nl)) == 0 &&
		(nc != n * 4 || nl != n * 4))
		rc = error_set(ERR_FORMAT, "the repository server answered %u of %zu block-check questions", nc / 4, n);
	for (i = 0; i < n && rc == 0; i++)
	{
		const char *s;
		uint32_t	code = be32(codes + i * 4);

		rcs[i] = (int) code;
		raw_len[i] = be32(lens + i * 4);
		msg[i] = NULL;
		if (code == 0)
			continue;
		if (code >= ERR__COUNT)
			rc = error_set(ERR_FORMAT, "the repository server answered a block-check with error code %u", code);
		else if ((rc = proto_get_str(m, "message", &s)) == 0)
			msg[i] = xstrdup(s);
	}
	if (rc == 0)
		rc = proto_get_end(m, "reply");
	if (rc)
	{
		while (i > 0)
		{
			i--;
			free(msg[i]);
			msg[i] = NULL;
		}
		return broken(RR(r), rc);
	}
	return 0;
}

static int
remote_block_check(repo *r, const uint8_t id[HASH_LEN], uint32_t *raw_len)
{
	int			code = 0;
	char	   *msg = NULL;
	int			rc = remote_block_check_many(r, (const uint8_t (*)[HASH_LEN]) id, 1, &code, raw_len, &msg);

	if (rc == 0 && code != 0)
		rc = error_set(code, "%s", msg);
	free(msg);
	return rc;
}

static int
remote_dict_get(repo *r, void **data, size_t *len)
{
	proto_msg  *m = req(r, OP_DICT_GET);
	const uint8_t *p;
	uint32_t	n = 0;
	int			rc;

	if ((rc = call(RR(r))) != 0)
		return rc;
	if ((rc = proto_get_bytes(m, "dictionary", &p, &n)) == 0 && (rc = proto_get_end(m, "reply")) == 0 &&
		(n == 0 || n > BLOCK_DICT_MAX))
		rc = error_set(ERR_FORMAT, "the repository server sent a dictionary of %u bytes", n);
	if (rc)
		return broken(RR(r), rc);
	*data = xmalloc(n);
	memcpy(*data, p, n);
	*len = n;
	return 0;
}

static int
remote_dict_put(repo *r, const void *data, size_t len)
{
	proto_msg  *m = req(r, OP_DICT_PUT);
	int			rc;

	proto_put_bytes(m, data, (uint32_t) len);
	if ((rc = call(RR(r))) != 0)
		return rc;
	return broken(RR(r), proto_get_end(m, "reply"));
}

/* Backups */

static int
remote_backup_put_begin(repo *r, const char *label, repo_put **put, io_writer **w)
{
	return put_begin(r, OP_BACKUP_PUT, label, COMPRESS_NONE, put, w);
}

static int
remote_backup_put_commit(repo_put *put)
{
	remote_put *p = (remote_put *) put;
	proto_msg  *m;
	int			rc;

	if ((rc = put_flush(&p->w)) == 0)
	{
		m = req(p->r, OP_BACKUP_COMMIT);
		proto_put_u32(m, p->handle);
		if ((rc = call(RR(p->r))) == 0)
			rc = broken(RR(p->r), proto_get_end(m, "commit reply"));
	}
	put_free(p);
	return rc;
}

static int
remote_backup_list(repo *r, char ***labels, int *count)
{
	int			rc;

	if ((rc = repo_need_stanza(r)) != 0)
		return rc;
	return names(r, OP_BACKUP_LIST, labels, count);
}

static int
remote_backup_open(repo *r, const char *label, io_reader **rd)
{
	int			rc;

	if ((rc = repo_need_stanza(r)) != 0)
		return rc;
	proto_put_str(req(r, OP_BACKUP_OPEN), label);
	return open_stream(r, rd);
}

static int
remote_backup_delete(repo *r, const char *label)
{
	proto_msg  *m;
	int			rc;

	if ((rc = repo_need_stanza(r)) != 0)
		return rc;
	m = req(r, OP_BACKUP_DELETE);
	proto_put_str(m, label);
	if ((rc = call(RR(r))) == 0)
		rc = broken(RR(r), proto_get_end(m, "reply"));
	return rc;
}

static int
remote_blocks_hold(repo *r)
{
	return simple(r, OP_BLOCKS_HOLD);
}

static int
remote_gc(repo *r, bool dry_run, repo_gc_result *res)
{
	proto_msg  *m = req(r, OP_GC);
	uint64_t	v[8];
	int			rc;

	proto_put_u32(m, dry_run ? 1 : 0);
	if ((rc = call(RR(r))) != 0)
		return rc;
	for (int i = 0; i < 8 && rc == 0; i++)
		rc = proto_get_u64(m, "gc result", &v[i]);
	if (rc == 0 && (rc = proto_get_end(m, "reply")) == 0)
	{
		res->deferred = v[0] != 0;
		res->packs = v[1];
		res->packs_deleted = v[2];
		res->packs_rewritten = v[3];
		res->blocks_live = v[4];
		res->blocks_removed = v[5];
		res->bytes_before = v[6];
		res->bytes_after = v[7];
	}
	return broken(RR(r), rc);
}

static const repo_driver remote_driver = {
	.name = "remote",
	.close = remote_close,
	.stanza_create = remote_stanza_create,
	.stanza_get = remote_stanza_get,
	.stanza_list = remote_stanza_list,
	.wal_put_begin = remote_wal_put_begin,
	.wal_put_commit = remote_wal_put_commit,
	.wal_put_abort = put_abort,
	.wal_find = remote_wal_find,
	.wal_open = remote_wal_open,
	.wal_list = remote_wal_list,
	.wal_delete = remote_wal_delete,
	.block_check = remote_block_check,
	.block_check_many = remote_block_check_many,
	.block_exists = remote_block_exists,
	.block_exists_many = remote_block_exists_many,
	.block_exists_ask = remote_block_exists_ask,
	.block_exists_answer = remote_block_exists_answer,
	.block_put = remote_block_put,
	.block_flush = remote_block_flush,
	.block_read = remote_block_read,
	.block_prefetch = remote_block_prefetch,
	.backup_put_begin = remote_backup_put_begin,
	.backup_put_commit = remote_backup_put_commit,
	.backup_put_abort = put_abort,
	.backup_list = remote_backup_list,
	.backup_open = remote_backup_open,
	.backup_delete = remote_backup_delete,
	.blocks_hold = remote_blocks_hold,
	.gc = remote_gc,
	.dict_get = remote_dict_get,
	.dict_put = remote_dict_put,
};
