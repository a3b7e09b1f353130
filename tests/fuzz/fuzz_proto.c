/*
 * fuzz_proto.c: libFuzzer target for what the server parses from a client:
 * the hello, then frames and the requests in them (proto_recv,
 * proto_request_parse), exactly as repo/server.c reads them.  Any input must
 * end in a clean error, never a crash, a leak or a read out of bounds.
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
	proto_io	io = {in_read, in_write, &in};
	proto_msg	m = {0};
	proto_request q;
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
		if (proto_request_parse(&m, &q) != 0)
			break;
	}
	proto_msg_free(&m);
	return 0;
}
