/*
 * fuzz_proto.c: libFuzzer target for what the server parses from a client:
 * the hello, then frames and the requests in them (proto_recv,
 * proto_request_parse, then the block records of a block-put), exactly as
 * repo/server.c reads them; an ok frame is read as the client reads a
 * block-read reply (a count, then block records).  Any input must end in a
 * clean error, never a crash, a leak or a read out of bounds.
 * Build and run: `make fuzz` (clang -fsanitize=fuzzer,address,undefined).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "proto.h"

typedef struct input
{
	const uint8_t *p;
	size_t		len;
} input;

static int
in_read(void *ctx, void *buf, size_t n, size_t *got)
{
	input	   *in = ctx;

	*got = n < in->len ? n : in->len;
	memcpy(buf, in->p, *got);
	in->p += *got;
	in->len -= *got;
	return 0;
}

static int
in_write(void *ctx, const void *buf, size_t n)
{
	(void) ctx;
	(void) buf;
	(void) n;
	return 0;
}

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	input		in = {data, size};
	proto_io	io = {in_read, in_write, NULL, &in};
	proto_msg	m = {0};
	proto_request q;
	proto_block b;
	bool		closed;

	if (proto_hello(&io, true) != 0)
		return 0;
	/* Requests until the input ends or one is malformed (the server closes the connection then). */
	while (proto_recv(&io, &m, &closed) == 0)
	{
		if (m.type == PROTO_ERROR)
		{
			bool		malformed;

			proto_error_decode(&m, &malformed);
			continue;
		}
		if (m.type == PROTO_OK)
		{
			uint32_t	n = 0;

			if (proto_get_u32(&m, "block count", &n) == 0)
				for (uint32_t i = 0; i < n && proto_get_block(&m, &b) == 0; i++)
					;
			continue;
		}
		if (proto_request_parse(&m, &q) != 0)
			break;
		if (q.op == OP_BLOCK_PUT)
		{
			proto_msg	v = {.data = (uint8_t *) q.data, .len = q.data_len};

			for (uint32_t i = 0; i < q.count; i++)
				if (proto_get_block(&v, &b) != 0)
					__builtin_trap();   /* proto_request_parse checked every record */
		}
	}
	proto_msg_free(&m);
	return 0;
}
