/*
 * proto.c: frames and typed fields of the pgkeep wire protocol (proto.h,
 * doc/protocol.md).  Integers are big endian.  Nothing here trusts a length
 * before it is checked against what the frame can hold.
 */
#include "proto.h"

#include <stdlib.h>
#include <string.h>

#include "compress.h"
#include "error.h"
#include "mem.h"

static const char *const type_names[] = {
	[0] = "invalid", [PROTO_REQUEST] = "request", [PROTO_OK] = "ok", [PROTO_ERROR] = "error",
};

static const char *const op_names[OP__COUNT] = {
	[0] = "invalid", [OP_PING] = "ping", [OP_STANZA_GET] = "stanza-get", [OP_STANZA_CREATE] = "stanza-create",
	[OP_STANZA_LIST] = "stanza-list", [OP_WAL_PUT] = "wal-put", [OP_WAL_COMMIT] = "wal-commit",
	[OP_WAL_FIND] = "wal-find", [OP_WAL_OPEN] = "wal-open", [OP_WAL_LIST] = "wal-list",
	[OP_BLOCK_EXISTS] = "block-exists", [OP_BLOCK_PUT] = "block-put", [OP_BLOCK_FLUSH] = "block-flush",
	[OP_BLOCK_READ] = "block-read", [OP_BACKUP_PUT] = "backup-put", [OP_BACKUP_COMMIT] = "backup-commit",
	[OP_BACKUP_LIST] = "backup-list", [OP_BACKUP_OPEN] = "backup-open", [OP_BACKUP_DELETE] = "backup-delete",
	[OP_BLOCKS_HOLD] = "blocks-hold", [OP_GC] = "gc", [OP_WRITE] = "write", [OP_ABORT] = "abort",
	[OP_READ] = "read", [OP_READ_CLOSE] = "read-close", [OP_WAL_DELETE] = "wal-delete",
	[OP_BLOCK_CHECK] = "block-check", [OP_DICT_GET] = "dict-get", [OP_DICT_PUT] = "dict-put",
};

const char *
proto_type_name(int type)
{
	return type > 0 && type <= PROTO_TYPE_MAX ? type_names[type] : "invalid";
}

const char *
proto_op_name(int op)
{
	return op > 0 && op < OP__COUNT ? op_names[op] : "invalid";
}

static void
be_put(uint8_t *p, uint64_t v, int n)
{
	for (int i = n - 1; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t) v;
}

static uint64_t
be_get(const uint8_t *p, int n)
{
	uint64_t	v = 0;

	for (int i = 0; i < n; i++)
		v = (v << 8) | p[i];
	return v;
}

/* Read exactly n bytes; *eof_first set when the stream ended before the first byte. */
static int
read_exact(const proto_io *io, void *buf, size_t n, bool *eof_first, const char *what)
{
	size_t		done = 0;

	if (eof_first)
		*eof_first = false;
	while (done < n)
	{
		size_t		got = 0;
		int			rc = io->read(io->ctx, (uint8_t *) buf + done, n - done, &got);

		if (rc)
			return rc;
		if (got == 0)
		{
			if (done == 0 && eof_first)
				*eof_first = true;
			return error_set(ERR_PROTOCOL, "the connection closed in the middle of %s (%zu of %zu bytes)",
							 what, done, n);
		}
		done += got;
	}
	return 0;
}

/* a, then b (when nb > 0), then a flush unless told not to. */
static int
send_all(const proto_io *io, const void *a, size_t na, const void *b, size_t nb, bool flush)
{
	int			rc = io->write(io->ctx, a, na);

	if (rc == 0 && nb > 0)
		rc = io->write(io->ctx, b, nb);
	if (rc == 0 && flush && io->flush)
		rc = io->flush(io->ctx);
	return rc;
}

int
proto_hello(const proto_io *io, bool server)
{
	uint8_t		mine[PROTO_MAGIC_LEN + 4], peer[PROTO_MAGIC_LEN + 4];
	uint32_t	version;
	int			rc;

	memcpy(mine, PROTO_MAGIC, PROTO_MAGIC_LEN);
	be_put(mine + PROTO_MAGIC_LEN, PROTO_VERSION, 4);
	/* The server speaks first: a client the server refused learns why from its first read. */
	if (server && (rc = send_all(io, mine, sizeof(mine), NULL, 0, true)) != 0)
		return rc;
	if ((rc = read_exact(io, peer, sizeof(peer), NULL, "the protocol hello")) != 0)
		return rc;
	if (!server && (rc = send_all(io, mine, sizeof(mine), NULL, 0, true)) != 0)
		return rc;
	if (memcmp(peer, PROTO_MAGIC, PROTO_MAGIC_LEN) != 0)
		return error_set(ERR_FORMAT, "the peer does not speak the pgkeep protocol (bad magic in the hello)");
	version = (uint32_t) be_get(peer + PROTO_MAGIC_LEN, 4);
	if (version != PROTO_VERSION)
		return error_set(ERR_FORMAT, "the peer speaks pgkeep protocol version %u, this pgkeep speaks version %d; "
						 "run the same pgkeep release on both hosts", version, PROTO_VERSION);
	return 0;
}

void
proto_msg_init(proto_msg *m, proto_type type)
{
	m->type = (uint8_t) type;
	m->flags = 0;
	m->len = 0;
	m->pos = 0;
}

void
proto_msg_free(proto_msg *m)
{
	free(m->data);
	memset(m, 0, sizeof(*m));
}

static uint8_t *
grow(proto_msg *m, size_t n)
{
	if (m->len + n > m->cap)
	{
		size_t		cap = m->cap ? m->cap : 256;

		while (cap < m->len + n)
			cap *= 2;
		m->data = xrealloc(m->data, cap);
		m->cap = cap;
	}
	m->len += n;
	return m->data + m->len - n;
}

void
proto_put_raw(proto_msg *m, const void *p, size_t n)
{
	if (n)
		memcpy(grow(m, n), p, n);
}

void
proto_put_u32(proto_msg *m, uint32_t v)
{
	uint8_t    *p = grow(m, 5);

	p[0] = PF_U32;
	be_put(p + 1, v, 4);
}

void
proto_put_u64(proto_msg *m, uint64_t v)
{
	uint8_t    *p = grow(m, 9);

	p[0] = PF_U64;
	be_put(p + 1, v, 8);
}

static void
put_lv(proto_msg *m, uint8_t tag, const void *data, uint32_t n, bool nul)
{
	uint8_t    *p = grow(m, 5);

	p[0] = tag;
	be_put(p + 1, n + (nul ? 1 : 0), 4);
	proto_put_raw(m, data, n);
	if (nul)
		*grow(m, 1) = '\0';
}

void
proto_put_str(proto_msg *m, const char *s)
{
	put_lv(m, PF_STR, s ? s : "", (uint32_t) strlen(s ? s : ""), true);
}

void
proto_put_bytes(proto_msg *m, const void *p, uint32_t n)
{
	put_lv(m, PF_BYTES, p, n, false);
}

void
proto_patch_u32(proto_msg *m, size_t at, uint32_t v)
{
	be_put(m->data + at + 1, v, 4);
}

void
proto_put_block(proto_msg *m, const uint8_t id[32], uint32_t ctype, uint32_t raw_len, const void *data, uint32_t len)
{
	proto_put_bytes(m, id, 32);
	proto_put_u32(m, ctype);
	proto_put_u32(m, raw_len);
	proto_put_bytes(m, data, len);
}

/* A TLS record holds 16 KiB: the header and the payload's first bytes go in one write, so one record. */
#define SEND_FIRST 16384

static int
frame_send(const proto_io *io, const proto_msg *m, bool flush)
{
	uint8_t		buf[SEND_FIRST];
	size_t		first;

	if (m->len > PROTO_FRAME_MAX)
		return error_set(ERR_INTERNAL, "a %s frame of %zu bytes exceeds the protocol maximum of %u bytes",
						 proto_type_name(m->type), m->len, PROTO_FRAME_MAX);
	memset(buf, 0, PROTO_HEADER_LEN);
	buf[0] = m->type;
	buf[1] = m->flags;
	be_put(buf + 4, m->len, 4);
	/*
	 * The header never goes alone: over TLS that would be a record of 8
	 * bytes, and the peer would wake and decrypt twice.  A small frame (every
	 * request but writes and block batches) is one write; a larger one fills
	 * the first record with its start and writes the rest as it is.
	 */
	first = m->len < sizeof(buf) - PROTO_HEADER_LEN ? m->len : sizeof(buf) - PROTO_HEADER_LEN;
	if (first)
		memcpy(buf + PROTO_HEADER_LEN, m->data, first);
	return send_all(io, buf, PROTO_HEADER_LEN + first, m->data + first, m->len - first, flush);
}

int
proto_send(const proto_io *io, const proto_msg *m)
{
	return frame_send(io, m, true);
}

int
proto_queue(const proto_io *io, const proto_msg *m)
{
	return frame_send(io, m, false);
}

int
proto_send_error(const proto_io *io, int code, const char *message)
{
	proto_msg	m = {0};
	int			rc;

	proto_msg_init(&m, PROTO_ERROR);
	proto_put_u32(&m, (uint32_t) code);
	/* A message longer than a string field is cut: the code says what happened. */
	proto_put_str(&m, strlen(message) < PROTO_STR_MAX ? message : "(message too long)");
	rc = proto_send(io, &m);
	proto_msg_free(&m);
	return rc;
}

int
proto_recv(const proto_io *io, proto_msg *m, bool *closed)
{
	uint8_t		h[PROTO_HEADER_LEN];
	uint32_t	len;
	bool		eof;
	int			rc;

	if (closed)
		*closed = false;
	rc = read_exact(io, h, sizeof(h), &eof, "a frame header");
	if (rc)
	{
		if (eof && closed)
			*closed = true;
		return rc;
	}
	if (h[0] == 0 || h[0] > PROTO_TYPE_MAX)
		return error_set(ERR_FORMAT, "invalid protocol frame: unknown frame type %u", h[0]);
	if (h[1] != 0)
		return error_set(ERR_FORMAT, "invalid protocol frame: unknown flags 0x%02x in a %s frame", h[1], type_names[h[0]]);
	if (h[2] != 0 || h[3] != 0)
		return error_set(ERR_FORMAT, "invalid protocol frame: reserved header bytes are not zero");
	len = (uint32_t) be_get(h + 4, 4);
	if (len > PROTO_FRAME_MAX)
		return error_set(ERR_FORMAT, "invalid protocol frame: a %s frame of %u bytes exceeds the maximum of %u bytes",
						 type_names[h[0]], len, PROTO_FRAME_MAX);
	proto_msg_init(m, (proto_type) h[0]);
	grow(m, len);
	if (len && (rc = read_exact(io, m->data, len, NULL, "a frame payload")) != 0)
		return rc;
	return 0;
}

int
proto_error_decode(proto_msg *m, bool *malformed)
{
	uint32_t	code;
	const char *msg;
	int			rc;

	*malformed = true;
	if ((rc = proto_get_u32(m, "error code", &code)) != 0 || (rc = proto_get_str(m, "error message", &msg)) != 0 ||
		(rc = proto_get_end(m, "error frame")) != 0)
		return rc;
	if (code == 0 || code >= ERR__COUNT)
		return error_set(ERR_FORMAT, "invalid protocol frame: unknown error code %u", code);
	*malformed = false;
	return error_set((int) code, "%s", msg);
}

int
proto_recv_reply(const proto_io *io, proto_msg *m, bool *peer_error)
{
	bool		malformed = true;
	int			rc;

	if (peer_error)
		*peer_error = false;
	if ((rc = proto_recv(io, m, NULL)) != 0)
		return rc;
	if (m->type == PROTO_ERROR)
	{
		rc = proto_error_decode(m, &malformed);
		if (peer_error)
			*peer_error = !malformed;
		return rc;
	}
	if (m->type != PROTO_OK)
		return error_set(ERR_FORMAT, "invalid protocol frame: expected an ok frame, received a %s frame",
						 type_names[m->type]);
	return 0;
}

/* The next field's tag, checked; *n its payload bytes. */
static int
field(proto_msg *m, const char *what, uint8_t tag, size_t *n)
{
	static const char *const tags[] = {"?", "u32", "u64", "string", "bytes"};
	size_t		left = m->len - m->pos;

	if (left == 0)
		return error_set(ERR_FORMAT, "invalid protocol field %s: missing (the frame ends)", what);
	uint8_t		t = m->data[m->pos];

	if (t != tag)
		return error_set(ERR_FORMAT, "invalid protocol field %s: expected %s, found %s", what, tags[tag],
						 t >= 1 && t <= PF_BYTES ? tags[t] : "an unknown field type");
	if (tag == PF_U32 || tag == PF_U64)
		*n = tag == PF_U32 ? 4 : 8;
	else
	{
		if (left < 5)
			return error_set(ERR_FORMAT, "invalid protocol field %s: truncated length", what);
		*n = (size_t) be_get(m->data + m->pos + 1, 4);
		m->pos += 4;
		left -= 4;
	}
	if (left - 1 < *n)
		return error_set(ERR_FORMAT, "invalid protocol field %s: %zu bytes announced, %zu left in the frame",
						 what, *n, left - 1);
	m->pos += 1;
	return 0;
}

int
proto_get_u32(proto_msg *m, const char *what, uint32_t *v)
{
	size_t		n;
	int			rc = field(m, what, PF_U32, &n);

	if (rc == 0)
	{
		*v = (uint32_t) be_get(m->data + m->pos, 4);
		m->pos += n;
	}
	return rc;
}

int
proto_get_u64(proto_msg *m, const char *what, uint64_t *v)
{
	size_t		n;
	int			rc = field(m, what, PF_U64, &n);

	if (rc == 0)
	{
		*v = be_get(m->data + m->pos, 8);
		m->pos += n;
	}
	return rc;
}

int
proto_get_str(proto_msg *m, const char *what, const char **s)
{
	size_t		n;
	int			rc = field(m, what, PF_STR, &n);

	if (rc)
		return rc;
	const char *p = (const char *) m->data + m->pos;

	if (n == 0 || n > PROTO_STR_MAX || memchr(p, '\0', n) != p + n - 1)
		return error_set(ERR_FORMAT, "invalid protocol field %s: not a string of at most %d bytes ending in one NUL",
						 what, PROTO_STR_MAX - 1);
	*s = p;
	m->pos += n;
	return 0;
}

int
proto_get_bytes(proto_msg *m, const char *what, const uint8_t **p, uint32_t *n)
{
	size_t		len;
	int			rc = field(m, what, PF_BYTES, &len);

	if (rc == 0)
	{
		*p = m->data + m->pos;
		*n = (uint32_t) len;
		m->pos += len;
	}
	return rc;
}

int
proto_get_fixed(proto_msg *m, const char *what, uint8_t *out, uint32_t n)
{
	const uint8_t *p;
	uint32_t	got;
	int			rc = proto_get_bytes(m, what, &p, &got);

	if (rc == 0 && got != n)
		return error_set(ERR_FORMAT, "invalid protocol field %s: %u bytes, expected %u", what, got, n);
	if (rc == 0)
		memcpy(out, p, n);
	return rc;
}

int
proto_get_end(proto_msg *m, const char *what)
{
	if (m->pos != m->len)
		return error_set(ERR_FORMAT, "invalid protocol frame: %zu unexpected bytes after the fields of the %s",
						 m->len - m->pos, what);
	return 0;
}

int
proto_get_block(proto_msg *m, proto_block *b)
{
	const uint8_t *p;
	int			rc;

	if ((rc = proto_get_fixed(m, "block id", b->id, 32)) != 0 || (rc = proto_get_u32(m, "compression type", &b->ctype)) != 0 ||
		(rc = proto_get_u32(m, "raw length", &b->raw_len)) != 0 || (rc = proto_get_bytes(m, "block data", &p, &b->len)) != 0)
		return rc;
	if (b->ctype > 2)
		return error_set(ERR_FORMAT, "invalid protocol field compression type: unknown type %u", b->ctype);
	if (b->raw_len == 0 || b->raw_len > PROTO_FRAME_MAX)
		return error_set(ERR_FORMAT, "invalid protocol field raw length: %u is not between 1 and %u", b->raw_len,
						 PROTO_FRAME_MAX);
	b->data = p;
	return 0;
}

int
proto_check_name(const char *name, size_t max, bool empty_ok, const char *what)
{
	size_t		len = strlen(name);

	if (len == 0 && empty_ok)
		return 0;
	if (len == 0 || len > max)
		return error_set(ERR_FORMAT, "invalid %s \"%s\": expected 1 to %zu characters", what, name, max);
	if (name[0] == '.' || strstr(name, "..") != NULL)
		return error_set(ERR_FORMAT, "invalid %s \"%s\": it must not start with '.' or contain \"..\"", what, name);
	for (size_t i = 0; i < len; i++)
	{
		char		c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.'))
			return error_set(ERR_FORMAT, "invalid %s \"%s\": character 0x%02x is not allowed", what, name, (unsigned char) c);
	}
	return 0;
}

static int
get_ctype(proto_msg *m, uint32_t *ctype)
{
	int			rc = proto_get_u32(m, "compression type", ctype);

	if (rc == 0 && *ctype > 2)
		return error_set(ERR_FORMAT, "invalid protocol field compression type: unknown type %u", *ctype);
	return rc;
}

static int
get_name(proto_msg *m, const char *what, proto_request *req)
{
	int			rc = proto_get_str(m, what, &req->name);

	return rc ? rc : proto_check_name(req->name, 63, false, what);
}

int
proto_request_parse(proto_msg *m, proto_request *req)
{
	int			rc;

	memset(req, 0, sizeof(*req));
	req->name = "";
	if (m->type != PROTO_REQUEST)
		return error_set(ERR_FORMAT, "invalid protocol frame: expected a request frame, received a %s frame",
						 proto_type_name(m->type));
	if ((rc = proto_get_u32(m, "op", &req->op)) != 0)
		return rc;
	if (req->op == 0 || req->op >= OP__COUNT)
		return error_set(ERR_FORMAT, "invalid protocol request: unknown operation %u", req->op);
	if ((rc = proto_get_str(m, "stanza", &req->stanza)) != 0 ||
		(rc = proto_check_name(req->stanza, 64, true, "stanza name")) != 0)
		return rc;
	switch (req->op)
	{
		case OP_STANZA_CREATE:
			if ((rc = proto_get_u64(m, "system identifier", &req->system_id)) == 0 &&
				(rc = proto_get_u32(m, "pg version", &req->pg_version)) == 0 &&
				(rc = proto_get_u32(m, "control version", &req->control_version)) == 0 &&
				(rc = proto_get_u32(m, "catalog version", &req->catalog_version)) == 0 &&
				(rc = proto_get_u32(m, "wal segment size", &req->wal_segment_size)) == 0 &&
				(rc = proto_get_u32(m, "block size", &req->block_size)) == 0)
				rc = proto_get_u64(m, "created", &req->created);
			break;
		case OP_WAL_PUT:
			if ((rc = get_name(m, "WAL file name", req)) == 0)
				rc = get_ctype(m, &req->ctype);
			break;
		case OP_WAL_FIND:
			rc = get_name(m, "WAL file name", req);
			break;
		case OP_WAL_OPEN:
		case OP_WAL_DELETE:
			if ((rc = get_name(m, "WAL file name", req)) == 0 && (rc = proto_get_fixed(m, "hash", req->hash, 32)) == 0)
				rc = get_ctype(m, &req->ctype);
			break;
		case OP_BLOCK_EXISTS:
		case OP_BLOCK_READ:
		case OP_BLOCK_CHECK:
			if ((rc = proto_get_bytes(m, "block ids", &req->data, &req->data_len)) == 0 &&
				(req->data_len == 0 || req->data_len % 32 != 0 || req->data_len / 32 > PROTO_BATCH_MAX))
				rc = error_set(ERR_FORMAT, "invalid protocol field block ids: %u bytes are not 1 to %d ids of 32 bytes",
							   req->data_len, PROTO_BATCH_MAX);
			req->count = req->data_len / 32;
			break;
		case OP_BLOCK_PUT:
			/* Every record is checked here, so that a malformed batch stores none of its blocks. */
			if ((rc = proto_get_u32(m, "block count", &req->count)) == 0 && (req->count == 0 || req->count > PROTO_BATCH_MAX))
				rc = error_set(ERR_FORMAT, "invalid protocol field block count: %u is not between 1 and %d",
							   req->count, PROTO_BATCH_MAX);
			req->data = m->data + m->pos;
			for (uint32_t i = 0; rc == 0 && i < req->count; i++)
			{
				proto_block b;

				rc = proto_get_block(m, &b);
			}
			req->data_len = (uint32_t) (m->data + m->pos - req->data);
			break;
		case OP_BACKUP_PUT:
		case OP_BACKUP_OPEN:
		case OP_BACKUP_DELETE:
			rc = get_name(m, "backup label", req);
			break;
		case OP_WAL_COMMIT:
			if ((rc = proto_get_u32(m, "handle", &req->handle)) == 0)
				rc = proto_get_fixed(m, "hash", req->hash, 32);
			break;
		case OP_BACKUP_COMMIT:
		case OP_ABORT:
		case OP_READ_CLOSE:
			rc = proto_get_u32(m, "handle", &req->handle);
			break;
		case OP_WRITE:
			if ((rc = proto_get_u32(m, "handle", &req->handle)) == 0)
				rc = proto_get_bytes(m, "data", &req->data, &req->data_len);
			break;
		case OP_READ:
			if ((rc = proto_get_u32(m, "handle", &req->handle)) == 0 && (rc = proto_get_u32(m, "max", &req->max)) == 0 &&
				(req->max == 0 || req->max > PROTO_CHUNK))
				rc = error_set(ERR_FORMAT, "invalid protocol field max: %u is not between 1 and %u", req->max, PROTO_CHUNK);
			break;
		case OP_DICT_PUT:
			if ((rc = proto_get_bytes(m, "dictionary", &req->data, &req->data_len)) == 0 &&
				(req->data_len == 0 || req->data_len > BLOCK_DICT_MAX))
				rc = error_set(ERR_FORMAT, "invalid protocol field dictionary: %u bytes are not 1 to %d",
							   req->data_len, BLOCK_DICT_MAX);
			break;
		case OP_WAL_LIST:
			rc = proto_get_u64(m, "skip", &req->skip);
			break;
		case OP_GC:
			if ((rc = proto_get_u32(m, "dry run", &req->dry_run)) == 0 && req->dry_run > 1)
				rc = error_set(ERR_FORMAT, "invalid protocol field dry run: expected 0 or 1");
			break;
		default:
			break;
	}
	if (rc == 0 && req->stanza[0] == '\0' && req->op != OP_PING && req->op != OP_STANZA_LIST)
		rc = error_set(ERR_FORMAT, "invalid protocol request: %s needs a stanza", proto_op_name((int) req->op));
	if (rc == 0)
		rc = proto_get_end(m, proto_op_name((int) req->op));
	return rc;
}
