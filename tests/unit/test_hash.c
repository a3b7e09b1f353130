/* test_hash.c: SHA-256 against published vectors, incremental hashing, hex and random bytes. */
#include "harness.h"

#include "error.h"
#include "hash.h"

#include <pthread.h>

static void
check_digest(const uint8_t h[HASH_LEN], const char *expect)
{
	char		hex[HASH_HEX_LEN + 1];

	hash_to_hex(h, hex);
	CHECK_EQ_STR(hex, expect);
}

/* FIPS 180-2 vectors. */
static void
test_vectors(void)
{
	uint8_t		h[HASH_LEN];
	size_t		mlen = 1000000;
	char	   *million = malloc(mlen);

	hash_buf("", 0, h);
	check_digest(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	hash_buf("abc", 3, h);
	check_digest(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	hash_buf("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56, h);
	check_digest(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
	memset(million, 'a', mlen);
	hash_buf(million, mlen, h);
	check_digest(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
	free(million);
}

/* Updates of any split equal the one-shot hash, and reset starts over. */
static void
test_incremental(void)
{
	uint8_t		data[70000];
	uint8_t		one[HASH_LEN];
	uint8_t		inc[HASH_LEN];
	hash_ctx   *ctx = hash_new();

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t) (i * 131 + 7);
	hash_buf(data, sizeof(data), one);
	for (size_t step = 1; step <= 8192; step = step * 3 + 1)
	{
		hash_reset(ctx);
		for (size_t off = 0; off < sizeof(data); off += step)
			hash_update(ctx, data + off, off + step > sizeof(data) ? sizeof(data) - off : step);
		hash_final(ctx, inc);
		CHECK(memcmp(one, inc, HASH_LEN) == 0);
	}
	/* Reuse after final, without data in between: the empty-string hash. */
	hash_reset(ctx);
	hash_final(ctx, inc);
	check_digest(inc, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	hash_free(ctx);
}

static void *
thread_hash(void *arg)
{
	uint8_t		h[HASH_LEN];
	int		   *ok = arg;

	*ok = 1;
	for (int i = 0; i < 1000; i++)
	{
		hash_buf("abc", 3, h);
		if (h[0] != 0xba || h[31] != 0xad)
			*ok = 0;
	}
	return NULL;
}

/* hash_buf keeps a context per thread: threads must not disturb each other. */
static void
test_threads(void)
{
	pthread_t	t[4];
	int			ok[4];

	for (int i = 0; i < 4; i++)
		CHECK_EQ_INT(pthread_create(&t[i], NULL, thread_hash, &ok[i]), 0);
	for (int i = 0; i < 4; i++)
	{
		pthread_join(t[i], NULL);
		CHECK_EQ_INT(ok[i], 1);
	}
}

static void
test_hex(void)
{
	uint8_t		h[HASH_LEN];
	uint8_t		back[HASH_LEN];
	char		hex[HASH_HEX_LEN + 1];
	char		bad[HASH_HEX_LEN + 2];
	uint8_t		bytes[3];
	char		small[7];

	for (int i = 0; i < HASH_LEN; i++)
		h[i] = (uint8_t) (i * 37 + 200);
	hash_to_hex(h, hex);
	CHECK_EQ_INT(strlen(hex), HASH_HEX_LEN);
	CHECK(hash_from_hex(hex, back));
	CHECK(memcmp(h, back, HASH_LEN) == 0);

	hex_encode((const uint8_t *) "\x00\xff\x1a", 3, small);
	CHECK_EQ_STR(small, "00ff1a");
	CHECK(hex_decode("00FF1a", 6, bytes));
	CHECK(bytes[0] == 0x00 && bytes[1] == 0xff && bytes[2] == 0x1a);
	CHECK(!hex_decode("abc", 3, bytes));
	CHECK(!hex_decode("0g", 2, bytes));

	/* Too short, too long, a bad digit, a space. */
	memcpy(bad, hex, HASH_HEX_LEN - 1);
	bad[HASH_HEX_LEN - 1] = '\0';
	CHECK(!hash_from_hex(bad, back));
	memcpy(bad, hex, HASH_HEX_LEN);
	bad[HASH_HEX_LEN] = '0';
	bad[HASH_HEX_LEN + 1] = '\0';
	CHECK(!hash_from_hex(bad, back));
	memcpy(bad, hex, HASH_HEX_LEN + 1);
	bad[10] = 'x';
	CHECK(!hash_from_hex(bad, back));
	bad[10] = ' ';
	CHECK(!hash_from_hex(bad, back));
	CHECK(!hash_from_hex("", back));
}

static void
test_random(void)
{
	uint8_t		a[64];
	uint8_t		b[64];

	memset(a, 0, sizeof(a));
	memset(b, 0, sizeof(b));
	CHECK_EQ_INT(random_bytes(a, sizeof(a)), 0);
	CHECK_EQ_INT(random_bytes(b, sizeof(b)), 0);
	CHECK(memcmp(a, b, sizeof(a)) != 0);
	CHECK_EQ_INT(random_bytes(a, 0), 0);
}

int
main(void)
{
	RUN(test_vectors);
	RUN(test_incremental);
	RUN(test_threads);
	RUN(test_hex);
	RUN(test_random);
	return harness_done();
}
