/*
 * test_proto.c: the wire protocol (src/proto.h): hello, frames and fields
 * round-trip over a pipe; every malformed input (truncated frame, oversize
 * length, bad magic or version, bad field, unknown type, trailing bytes) is
 * ERR_FORMAT naming what is wrong; an error frame carries its code and message.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "harness.h"
#include "mem.h"
#include "option.h"
#include "compress.h"
#include "proto.h"
#include "../repo/server.h"

/* A pipe transport: what one side writes, the other reads (small frames only: the pipe buffer holds them). */
static int
fd_read(void *ctx, void *buf, size_t n, size_t *got)
{
	ssize_t		r = read(((int *) ctx)[0], buf, n);

	if (r < 0)
		return error_set(ERR_PROTOCOL, "read: %s", strerror(errno));
	*got = (size_t) r;
	return 0;
}

static int
fd_write(void *ctx, const void *buf, size_t n)
{
	return write(((int *) ctx)[1], buf, n) == (ssize_t) n ? 0 : error_set(ERR_PROTOCOL, "write failed");
}

/* A memory transport: reads come from a fixed buffer, writes are discarded. */
typedef struct mem_in
{
	const uint8_t *p;
	size_t		len;
} mem_in;

static int
mem_read(void *ctx, void *buf, size_t n, size_t *got)
{
	mem_in	   *in = ctx;

	*got = n < in->len ? n : in->len;
	memcpy(buf, in->p, *got);
	in->p += *got;
	in->len -= *got;
	return 0;
}

static int
mem_write(void *ctx, const void *buf, size_t n)
{
	(void) ctx;
	(void) buf;
	(void) n;
	return 0;
}

/* Receive one frame from bytes. */
static int
recv_bytes(const void *bytes, size_t len, proto_msg *m)
{
	mem_in		in = {bytes, len};
	proto_io	io = {mem_read, mem_write, NULL, &in};

	return proto_recv(&io, m, NULL);
}

static void
test_roundtrip(void)
{
	int			fds[2];
	proto_io	io;
	proto_msg	m = {0};
	uint8_t		id[32];
	const char *s;
	uint32_t	u32;
	uint64_t	u64;
	const uint8_t *p;
	uint32_t	n;

	CHECK_EQ_INT(pipe(fds), 0);
	io = (proto_io) {fd_read, fd_write, NULL, fds};
	/* The hello goes into the pipe: our own comes back and must be accepted. */
	CHECK_EQ_INT(proto_hello(&io, true), 0);

	memset(id, 0xab, sizeof(id));
	proto_msg_init(&m, PROTO_REQUEST);
	proto_put_u32(&m, OP_WAL_PUT);
	proto_put_str(&m, "main");
	proto_put_u64(&m, UINT64_C(0x0102030405060708));
	proto_put_bytes(&m, id, sizeof(id));
	proto_put_str(&m, "");
	CHECK_EQ_INT(proto_send(&io, &m), 0);
	proto_msg_init(&m, PROTO_OK);                   /* reused buffer */
	CHECK_EQ_INT(proto_recv(&io, &m, NULL), 0);
	CHECK_EQ_INT(m.type, PROTO_REQUEST);
	CHECK_EQ_INT(proto_get_u32(&m, "op", &u32), 0);
	CHECK_EQ_INT(u32, OP_WAL_PUT);
	CHECK_EQ_INT(proto_get_str(&m, "stanza", &s), 0);
	CHECK_EQ_STR(s, "main");
	CHECK_EQ_INT(proto_get_u64(&m, "size", &u64), 0);
	CHECK(u64 == UINT64_C(0x0102030405060708));
	CHECK_EQ_INT(proto_get_bytes(&m, "id", &p, &n), 0);
	CHECK_EQ_INT(n, 32);
	CHECK(memcmp(p, id, 32) == 0);
	CHECK_EQ_INT(proto_get_str(&m, "empty", &s), 0);
	CHECK_EQ_STR(s, "");
	CHECK_EQ_INT(proto_get_end(&m, "request"), 0);
	/* Reading past the end names the field. */
	CHECK_EQ_INT(proto_get_u32(&m, "extra", &u32), ERR_FORMAT);
	CHECK_CONTAINS(error_msg(), "field extra: missing");

	/* An error frame becomes the peer's code and message. */
	bool		peer_error = false;

	CHECK_EQ_INT(proto_send_error(&io, ERR_CONFLICT, "WAL file \"x\" already exists"), 0);
	CHECK_EQ_INT(proto_recv_reply(&io, &m, &peer_error), ERR_CONFLICT);
	CHECK_EQ_STR(error_msg(), "WAL file \"x\" already exists");
	CHECK(peer_error);
	/* The peer's own format error is its error, not a malformed frame. */
	CHECK_EQ_INT(proto_send_error(&io, ERR_FORMAT, "invalid backup label \"x\""), 0);
	CHECK_EQ_INT(proto_recv_reply(&io, &m, &peer_error), ERR_FORMAT);
	CHECK(peer_error);

	/* An empty OK frame, and a reply of the wrong type. */
	proto_msg_init(&m, PROTO_OK);
	CHECK_EQ_INT(proto_send(&io, &m), 0);
	CHECK_EQ_INT(proto_recv_reply(&io, &m, NULL), 0);
	CHECK_EQ_INT(m.len, 0);
	proto_msg_init(&m, PROTO_REQUEST);
	proto_put_raw(&m, "abc", 3);
	CHECK_EQ_INT(proto_send(&io, &m), 0);
	CHECK_EQ_INT(proto_recv_reply(&io, &m, &peer_error), ERR_FORMAT);
	CHECK_CONTAINS(error_msg(), "expected an ok frame, received a request frame");
	CHECK(!peer_error);

	/* The peer closing between frames is reported as closed. */
	bool		closed = false;

	close(fds[1]);
	CHECK_EQ_INT(proto_recv(&io, &m, &closed), ERR_PROTOCOL);
	CHECK(closed);
	close(fds[0]);
	proto_msg_free(&m);
}

static void
test_hello_rejected(void)
{
	uint8_t		bad[12];
	mem_in		in;
	proto_io	io = {mem_read, mem_write, NULL, &in};

	memcpy(bad, "HTTP/1.1", 8);
	memset(bad + 8, 0, 4);
	in = (mem_in) {bad, sizeof(bad)};
	CHECK_EQ_INT(proto_hello(&io, false), ERR_FORMAT);
	CHECK_CONTAINS(error_msg(), "bad magic");

	memcpy(bad, PROTO_MAGIC, 8);
	bad[8] = 0; bad[9] = 0; bad[10] = 0; bad[11] = 9;
	in = (mem_in) {bad, sizeof(bad)};
	CHECK_EQ_INT(proto_hello(&io, false), ERR_FORMAT);
	CHECK_CONTAINS(error_msg(), "protocol version 9");

	in = (mem_in) {bad, 5};
	CHECK_EQ_INT(proto_hello(&io, false), ERR_PROTOCOL);
	CHECK_CONTAINS(error_msg(), "closed in the middle of the protocol hello");
}

static void
test_bad_frames(void)
{
	proto_msg	m = {0};
	uint8_t		f[64];

	/* Truncated header, truncated payload. */
	memset(f, 0, sizeof(f));
	f[0] = PROTO_OK;
	CHECK_EQ_INT(recv_bytes(f, 5, &m), ERR_PROTOCOL);
	CHECK_CONTAINS(error_msg(), "frame header");
	f[7] = 10;
	CHECK_EQ_INT(recv_bytes(f, 12, &m), ERR_PROTOCOL);
	CHECK_CONTAINS(error_msg(), "frame payload (4 of 10 bytes)");

	/* Oversize length: refused before any payload is read or allocated. */
	f[4] = 0x7f; f[5] = 0xff; f[6] = 0xff; f[7] = 0xff;
	CHECK_EQ_INT(recv_bytes(f, 8, &m), ERR_FORMAT);
	CHECK_CONTAINS(error_msg(), "exceeds the maximum");
	CHECK(m.cap <= 256);

	/* Unknown type, flags, reserved bytes. */
	memset(f, 0, 8);
	f[0] = 99;
	CHECK_EQ_INT(recv_bytes(f, 8, &m), ERR_FORMAT);
	CHECK_CONTAINS(error_msg(), "unknown frame type 99");
	f[0] = PROTO_OK; f[1] = 1;
	CHECK_EQ_INT(recv_bytes(f, 8, &m), ERR_FORMAT);
	CHECK_CONTAINS(error_msg(), "unknown flags");
	f[1] = 0; f[2] = 1;
	CHECK_EQ_INT(recv_bytes(f, 8, &m), ERR_FORMAT);
	CHECK_CONTAINS(error_msg(), "reserved");
	proto_msg_free(&m);
}

/* A frame whose payload is the given bytes, received into m. */
static void
payload(proto_msg *m, const void *p, size_t n)
{
	uint8_t		buf[128] = {0};

	buf[0] = PROTO_OK;
	buf[7] = (uint8_t) n;
	memcpy(buf + 8, p, n);
	CHECK_EQ_INT(recv_bytes(buf, 8 + n, m), 0);
}

static void
test_bad_fields(void)
{
	proto_msg	m = {0};
	uint32_t	u32;
	uint64_t	u64;
	const char *s;
	const uint8_t *p;
	uint32_t	n;
	uint8_t		id[32];

	/* Wrong type tag. */
	payload(&m, "\x02\0\0\0\0\0\0\0\x01", 9);
	CHECK_EQ_INT(proto_get_u32(&m, "op", &u32), ERR_FORMAT);
	CHECK_CONTAINS(error_msg(), "field op: expected u32, found u64");
	CHECK_EQ_INT(proto_get_u64(&m, "size", &u64), 0);
	CHECK_EQ_INT(u64, 1);
	/* Unknown tag. */
	payload(&m, "\x09", 1);
	CHECK_EQ_INT(proto_get_u32(&m, "op", &u32), ERR_FORMAT);
	CHECK_CONTAINS(error_msg(), "unknown field type");
	/* Truncated integer. */
	payload(&m, "\x01\0\0", 3);
	CHECK_EQ_INT(proto_get_u32(&m, "op", &u32), ERR_FORMAT);
	CHECK_CONTAINS(error_msg(), "4 bytes announced, 2 left");
	/* String length beyond the frame. */
	payload(&m, "\x03\0\0\0\x20" "ab", 7);
	CHECK_EQ_INT(proto_get_str(&m, "name", &s), ERR_FORMAT);
	CHECK_CONTAINS(error_msg(), "field name: 32 bytes announced, 2 left");
	/* Truncated string length. */
	payload(&m, "\x03\0\0", 3);
	CHECK_EQ_INT(proto_get_str(&m, "name", &s), ERR_FORMAT);
	CHECK_CONTAINS(error_msg(), "truncated length");
	/* A string without its NUL, with a NUL inside, empty. */
	payload(&m, "\x03\0\0\0\x02" "ab", 7);
	CHECK_EQ_INT(proto_get_str(&m, "name", &s), ERR_FORMAT);
	CHECK_CONTAINS(error_msg(), "field name: not a string");
	payload(&m, "\x03\0\0\0\x03" "a\0\0", 8);
	CHECK_EQ_INT(proto_get_str(&m, "name", &s), ERR_FORMAT);
	payload(&m, "\x03\0\0\0\0", 5);
	CHECK_EQ_INT(proto_get_str(&m, "name", &s), ERR_FORMAT);
	/* A hash of the wrong size. */
	payload(&m, "\x04\0\0\0\x03" "abc", 8);
	CHECK_EQ_INT(proto_get_fixed(&m, "id", id, 32), ERR_FORMAT);
	CHECK_CONTAINS(error_msg(), "field id: 3 bytes, expected 32");
	payload(&m, "\x04\0\0\0\x03" "abc", 8);
	CHECK_EQ_INT(proto_get_bytes(&m, "data", &p, &n), 0);
	CHECK_EQ_INT(n, 3);
	/* Trailing bytes. */
	payload(&m, "\x01\0\0\0\x01\x01", 6);
	CHECK_EQ_INT(proto_get_u32(&m, "op", &u32), 0);
	CHECK_EQ_INT(proto_get_end(&m, "ping request"), ERR_FORMAT);
	CHECK_CONTAINS(error_msg(), "1 unexpected bytes after the fields of the ping request");
	/* An error frame with an unknown code. */
	{
		uint8_t		buf[] = {PROTO_ERROR, 0, 0, 0, 0, 0, 0, 12, PF_U32, 0, 0, 0, 200, PF_STR, 0, 0, 0, 2, 'x', 0};
		mem_in		in = {buf, sizeof(buf)};
		proto_io	io = {mem_read, mem_write, NULL, &in};

		bool		peer_error = true;

		CHECK_EQ_INT(proto_recv_reply(&io, &m, &peer_error), ERR_FORMAT);
		CHECK_CONTAINS(error_msg(), "unknown error code 200");
		CHECK(!peer_error);
	}
	proto_msg_free(&m);
}

static void
test_oversize_send(void)
{
	proto_msg	m = {0};
	int			fds[2] = {-1, -1};
	proto_io	io = {fd_read, fd_write, NULL, fds};
	char	   *big = xcalloc(1, PROTO_FRAME_MAX + 1);

	proto_msg_init(&m, PROTO_REQUEST);
	proto_put_raw(&m, big, PROTO_FRAME_MAX + 1);
	CHECK_EQ_INT(proto_send(&io, &m), ERR_INTERNAL);
	free(big);
	proto_msg_free(&m);
}

/* A request frame with op, stanza and a name, parsed as the server does. */
static int
parse_named(uint32_t op, const char *stanza, const char *name, proto_request *req, proto_msg *m)
{
	proto_msg_init(m, PROTO_REQUEST);
	proto_put_u32(m, op);
	proto_put_str(m, stanza);
	if (name)
		proto_put_str(m, name);
	if (op == OP_WAL_PUT)
		proto_put_u32(m, 1);
	return proto_request_parse(m, req);
}

/* A dict-put request of a dictionary of len bytes, parsed as the server does. */
static int
parse_dict(uint32_t len, proto_request *req, proto_msg *m)
{
	uint8_t    *d = xcalloc(1, len + 1);
	int			rc;

	proto_msg_init(m, PROTO_REQUEST);
	proto_put_u32(m, OP_DICT_PUT);
	proto_put_str(m, "main");
	proto_put_bytes(m, d, len);
	rc = proto_request_parse(m, req);
	free(d);
	return rc;
}

static void
test_request_parse(void)
{
	proto_msg	m = {0};
	proto_request req;
	uint8_t		id[32] = {1};

	CHECK_EQ_INT(parse_named(OP_WAL_PUT, "main", "000000010000000000000001", &req, &m), 0);
	CHECK_EQ_INT(req.op, OP_WAL_PUT);
	CHECK_EQ_STR(req.stanza, "main");
	CHECK_EQ_STR(req.name, "000000010000000000000001");
	CHECK_EQ_INT(req.ctype, 1);
	/* Paths in names or stanzas are refused. */
	CHECK_EQ_INT(parse_named(OP_WAL_FIND, "main", "../../etc/passwd", &req, &m), ERR_FORMAT);
	CHECK_CONTAINS(error_msg(), "invalid WAL file name \"../../etc/passwd\"");
	CHECK_EQ_INT(parse_named(OP_BACKUP_OPEN, "main", "a..b", &req, &m), ERR_FORMAT);
	CHECK_CONTAINS(error_msg(), "contain \"..\"");
	CHECK_EQ_INT(parse_named(OP_BACKUP_OPEN, "main", "a/b", &req, &m), ERR_FORMAT);
	CHECK_CONTAINS(error_msg(), "invalid backup label \"a/b\": character 0x2f");
	CHECK_EQ_INT(parse_named(OP_STANZA_GET, "..", NULL, &req, &m), ERR_FORMAT);
	CHECK_CONTAINS(error_msg(), "invalid stanza name");
	/* A stanza is required except for ping and stanza-list. */
	CHECK_EQ_INT(parse_named(OP_STANZA_GET, "", NULL, &req, &m), ERR_FORMAT);
	CHECK_CONTAINS(error_msg(), "stanza-get needs a stanza");
	CHECK_EQ_INT(parse_named(OP_PING, "", NULL, &req, &m), 0);
	/* Unknown op, missing field, trailing field, bad compression type, bad read size. */
	CHECK_EQ_INT(parse_named(999, "main", NULL, &req, &m), ERR_FORMAT);
	CHECK_CONTAINS(error_msg(), "unknown operation 999");
	CHECK_EQ_INT(parse_named(OP_WAL_FIND, "main", NULL, &req, &m), ERR_FORMAT);
	CHECK_CONTAINS(error_msg(), "field WAL file name: missing");
	CHECK_EQ_INT(parse_named(OP_PING, "", "extra", &req, &m), ERR_FORMAT);
	CHECK_CONTAINS(error_msg(), "after the fields of the ping");
	proto_msg_init(&m, PROTO_REQUEST);
	proto_put_u32(&m, OP_READ);
	proto_put_str(&m, "main");
	proto_put_u32(&m, 1);
	proto_put_u32(&m, PROTO_CHUNK + 1);
	CHECK_EQ_INT(proto_request_parse(&m, &req), ERR_FORMAT);
	CHECK_CONTAINS(error_msg(), "field max");
	/* Block ids of the wrong length. */
	proto_msg_init(&m, PROTO_REQUEST);
	proto_put_u32(&m, OP_BLOCK_EXISTS);
	proto_put_str(&m, "main");
	proto_put_bytes(&m, id, 31);
	CHECK_EQ_INT(proto_request_parse(&m, &req), ERR_FORMAT);
	CHECK_CONTAINS(error_msg(), "field block ids: 31 bytes are not 1 to 1024 ids");
	/* block-check asks about a batch of ids too: two, then none (refused). */
	{
		uint8_t		two[64] = {0};

		proto_msg_init(&m, PROTO_REQUEST);
		proto_put_u32(&m, OP_BLOCK_CHECK);
		proto_put_str(&m, "main");
		proto_put_bytes(&m, two, sizeof(two));
		CHECK_EQ_INT(proto_request_parse(&m, &req), 0);
		CHECK_EQ_INT(req.count, 2);
		proto_msg_init(&m, PROTO_REQUEST);
		proto_put_u32(&m, OP_BLOCK_CHECK);
		proto_put_str(&m, "main");
		proto_put_bytes(&m, two, 0);
		CHECK_EQ_INT(proto_request_parse(&m, &req), ERR_FORMAT);
		CHECK_CONTAINS(error_msg(), "field block ids: 0 bytes are not 1 to 1024 ids");
	}
	/* A dictionary of 1 byte to 1 MiB; none, or a larger one, is refused. */
	CHECK_EQ_INT(parse_dict(0, &req, &m), ERR_FORMAT);
	CHECK_CONTAINS(error_msg(), "field dictionary: 0 bytes are not 1 to");
	CHECK_EQ_INT(parse_dict(1, &req, &m), 0);
	CHECK_EQ_INT(req.data_len, 1);
	CHECK_EQ_INT(parse_dict(BLOCK_DICT_MAX, &req, &m), 0);
	CHECK_EQ_INT(req.data_len, BLOCK_DICT_MAX);
	CHECK_EQ_INT(parse_dict(BLOCK_DICT_MAX + 1, &req, &m), ERR_FORMAT);
	CHECK_CONTAINS(error_msg(), "field dictionary: 1048577 bytes are not 1 to");
	CHECK_EQ_INT(parse_named(OP_DICT_GET, "main", NULL, &req, &m), 0);
	CHECK_EQ_INT(parse_named(OP_DICT_GET, "", NULL, &req, &m), ERR_FORMAT);
	/* A reply is not a request. */
	proto_msg_init(&m, PROTO_OK);
	CHECK_EQ_INT(proto_request_parse(&m, &req), ERR_FORMAT);
	proto_msg_free(&m);
}

/* A block-put request of n records (the last one's compression type ctype_last), parsed as the server does. */
static int
parse_put(uint32_t count, uint32_t n, uint32_t ctype_last, proto_request *req, proto_msg *m)
{
	uint8_t		id[32] = {0};
	char		data[16];

	proto_msg_init(m, PROTO_REQUEST);
	proto_put_u32(m, OP_BLOCK_PUT);
	proto_put_str(m, "main");
	proto_put_u32(m, count);
	for (uint32_t i = 0; i < n; i++)
	{
		id[0] = (uint8_t) i;
		snprintf(data, sizeof(data), "block %u", i);
		proto_put_block(m, id, i == n - 1 ? ctype_last : 1, 8192, data, (uint32_t) strlen(data));
	}
	return proto_request_parse(m, req);
}

/*
 * Batches of blocks: a block-put carries records that the server reads back
 * in order; one bad record, or a count that does not match, refuses the
 * whole frame (so none of its blocks is stored); a block-read asks for 1 to
 * PROTO_BATCH_MAX ids; a frame larger than a TLS record arrives whole.
 */
static void
test_block_batches(void)
{
	proto_msg	m = {0}, v = {0};
	proto_request req;
	proto_block b;
	uint8_t		ids[PROTO_BATCH_MAX + 1][32];
	int			fds[2];
	proto_io	io = {fd_read, fd_write, NULL, fds};

	CHECK_EQ_INT(parse_put(3, 3, 2, &req, &m), 0);
	CHECK_EQ_INT(req.count, 3);
	v.data = (uint8_t *) req.data;
	v.len = req.data_len;
	for (uint32_t i = 0; i < 3; i++)
	{
		char		want[16];

		snprintf(want, sizeof(want), "block %u", i);
		CHECK_EQ_INT(proto_get_block(&v, &b), 0);
		CHECK_EQ_INT(b.id[0], i);
		CHECK_EQ_INT(b.ctype, i == 2 ? 2 : 1);
		CHECK_EQ_INT(b.raw_len, 8192);
		CHECK_EQ_INT(b.len, strlen(want));
		CHECK(memcmp(b.data, want, b.len) == 0);
	}
	CHECK_EQ_INT(proto_get_end(&v, "block records"), 0);
	memset(&v, 0, sizeof(v));   /* a view into m, not owned */
	/* One bad record refuses the frame. */
	CHECK_EQ_INT(parse_put(3, 3, 7, &req, &m), ERR_FORMAT);
	CHECK_CONTAINS(error_msg(), "compression type: unknown type 7");
	/* Counts that do not match the records, or out of bounds. */
	CHECK_EQ_INT(parse_put(3, 2, 1, &req, &m), ERR_FORMAT);
	CHECK_CONTAINS(error_msg(), "field block id: missing");
	CHECK_EQ_INT(parse_put(1, 2, 1, &req, &m), ERR_FORMAT);
	CHECK_CONTAINS(error_msg(), "unexpected bytes after the fields of the block-put");
	CHECK_EQ_INT(parse_put(0, 0, 1, &req, &m), ERR_FORMAT);
	CHECK_CONTAINS(error_msg(), "block count: 0 is not between 1 and 1024");
	CHECK_EQ_INT(parse_put(PROTO_BATCH_MAX + 1, 1, 1, &req, &m), ERR_FORMAT);
	CHECK_CONTAINS(error_msg(), "block count: 1025 is not between 1 and 1024");
	/* A raw length of 0 or beyond any frame. */
	proto_msg_init(&m, PROTO_REQUEST);
	proto_put_u32(&m, OP_BLOCK_PUT);
	proto_put_str(&m, "main");
	proto_put_u32(&m, 1);
	proto_put_block(&m, ids[0], 0, 0, "", 0);
	CHECK_EQ_INT(proto_request_parse(&m, &req), ERR_FORMAT);
	CHECK_CONTAINS(error_msg(), "raw length: 0 is not between 1 and");

	/* block-read: 1 to PROTO_BATCH_MAX ids of 32 bytes. */
	memset(ids, 7, sizeof(ids));
	for (size_t n = 1; n <= PROTO_BATCH_MAX + 1; n += PROTO_BATCH_MAX)
	{
		proto_msg_init(&m, PROTO_REQUEST);
		proto_put_u32(&m, OP_BLOCK_READ);
		proto_put_str(&m, "main");
		proto_put_bytes(&m, ids, (uint32_t) (n * 32));
		CHECK_EQ_INT(proto_request_parse(&m, &req), n <= PROTO_BATCH_MAX ? 0 : ERR_FORMAT);
	}
	CHECK_CONTAINS(error_msg(), "field block ids: 32800 bytes are not 1 to 1024 ids");
	proto_msg_init(&m, PROTO_REQUEST);
	proto_put_u32(&m, OP_BLOCK_READ);
	proto_put_str(&m, "main");
	proto_put_bytes(&m, ids, 64);
	CHECK_EQ_INT(proto_request_parse(&m, &req), 0);
	CHECK_EQ_INT(req.count, 2);

	/* A frame of 40 KiB (more than one TLS record) over a pipe arrives whole. */
	CHECK(pipe(fds) == 0);
	proto_msg_init(&m, PROTO_OK);
	proto_put_u32(&m, 4);
	for (uint32_t i = 0; i < 4; i++)
	{
		uint8_t		data[10000];

		memset(data, (int) i, sizeof(data));
		proto_put_block(&m, ids[i], 0, sizeof(data), data, sizeof(data));
	}
	CHECK_EQ_INT(proto_send(&io, &m), 0);
	CHECK_EQ_INT(proto_recv(&io, &v, NULL), 0);
	CHECK_EQ_INT(v.len, 5 + 4 * (PROTO_BLOCK_OVERHEAD + 10000));
	{
		uint32_t	n = 0;

		CHECK_EQ_INT(proto_get_u32(&v, "count", &n), 0);
		CHECK_EQ_INT(n, 4);
		for (uint32_t i = 0; i < 4; i++)
		{
			CHECK_EQ_INT(proto_get_block(&v, &b), 0);
			CHECK_EQ_INT(b.len, 10000);
			CHECK_EQ_INT(b.data[0], i);
			CHECK_EQ_INT(b.data[9999], i);
		}
		CHECK_EQ_INT(proto_get_end(&v, "reply"), 0);
	}
	close(fds[0]);
	close(fds[1]);
	proto_msg_free(&v);
	proto_msg_free(&m);
}

/* Parse a server command line with the given tls-server-auth values, then the access map. */
static int
auth_from(const char *a1, const char *a2, server_auth **out)
{
	char	   *argv[] = {"pgkeep", "--no-config", (char *) a1, (char *) a2, "server", NULL};
	char	   *env[] = {NULL};
	int			argc = 5;
	int			rc;

	if (a2 == NULL)
	{
		argv[3] = "server";
		argv[4] = NULL;
		argc = 4;
	}
	if ((rc = opt_parse(argc, argv, env)) != 0)
		return rc;
	return server_auth_parse(out);
}

static void
test_auth_map(void)
{
	server_auth *a = NULL;

	CHECK_EQ_INT(auth_from("--tls-server-auth=pg1=main,other", "--tls-server-auth=admin=*", &a), 0);
	if (a)
	{
		CHECK(server_auth_allows(a, "pg1", "main"));
		CHECK(server_auth_allows(a, "pg1", "other"));
		CHECK(!server_auth_allows(a, "pg1", "third"));
		CHECK(server_auth_allows(a, "pg1", ""));        /* ping, stanza-list */
		CHECK(server_auth_allows(a, "admin", "anything"));
		CHECK(!server_auth_allows(a, "pg2", ""));
		CHECK(!server_auth_allows(a, "", "main"));
		CHECK(!server_auth_allows(a, "PG1", "main"));   /* CNs are compared exactly */
		server_auth_free(a);
	}
	a = NULL;
	CHECK_EQ_INT(auth_from("--tls-server-auth=pg1=", NULL, &a), ERR_OPTION);
	CHECK_CONTAINS(error_msg(), "names no stanza");
	CHECK_EQ_INT(auth_from("--tls-server-auth=pg1=../x", NULL, &a), ERR_OPTION);
	CHECK_CONTAINS(error_msg(), "tls-server-auth=pg1=../x");
	CHECK_EQ_INT(auth_from("--stanza=main", NULL, &a), ERR_OPTION);
	CHECK_CONTAINS(error_msg(), "tls-server-auth is not set");
	CHECK(a == NULL);
	opt_reset();
}

int
main(void)
{
	RUN(test_roundtrip);
	RUN(test_hello_rejected);
	RUN(test_bad_frames);
	RUN(test_bad_fields);
	RUN(test_oversize_send);
	RUN(test_request_parse);
	RUN(test_block_batches);
	RUN(test_auth_map);
	return harness_done();
}
