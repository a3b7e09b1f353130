/*
 * hash.c: SHA-256 over OpenSSL EVP, and hex encoding of digests.
 *
 * The SHA-256 implementation is fetched once per process: an implicit fetch
 * (EVP_sha256() in OpenSSL 3) costs a locked provider lookup on every init.
 * hash_buf runs once per 8 KiB block of a backup, so it reuses one context
 * per thread instead of allocating one per call.
 *
 * The hash API has no error path: with a fetched digest, OpenSSL fails here
 * only when out of memory, which is fatal like every other allocation.
 */
#include "hash.h"
#include "error.h"
#include "mem.h"

#include <limits.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct hash_ctx
{
	EVP_MD_CTX *evp;
};

static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;
static EVP_MD *sha256;
/* The calling thread's context for hash_buf, freed when the thread exits. */
static pthread_key_t buf_ctx_key;

/* OpenSSL's last error as text (ERR_error_string without a buffer is not thread-safe). */
static const char *
openssl_error(char *buf, size_t size)
{
	ERR_error_string_n(ERR_get_error(), buf, size);
	return buf;
}

static void
crypto_fatal(const char *what)
{
	char		msg[256];

	fprintf(stderr, "pgkeep: %s failed: %s\n", what, openssl_error(msg, sizeof(msg)));
	abort();
}

static void
buf_ctx_free(void *ctx)
{
	EVP_MD_CTX_free(ctx);
}

static void
sha256_init(void)
{
	sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
	if (sha256 == NULL)
		crypto_fatal("fetching SHA-256");
	if (pthread_key_create(&buf_ctx_key, buf_ctx_free) != 0)
		crypto_fatal("creating the thread key for SHA-256");
}

static EVP_MD_CTX *
evp_new(void)
{
	EVP_MD_CTX *evp;

	pthread_once(&sha256_once, sha256_init);
	evp = EVP_MD_CTX_new();
	if (evp == NULL)
		crypto_fatal("allocating a SHA-256 context");
	return evp;
}

static void
evp_init(EVP_MD_CTX *evp)
{
	if (EVP_DigestInit_ex2(evp, sha256, NULL) != 1)
		crypto_fatal("initialising SHA-256");
}

hash_ctx *
hash_new(void)
{
	hash_ctx   *ctx = xmalloc(sizeof(*ctx));

	ctx->evp = evp_new();
	evp_init(ctx->evp);
	return ctx;
}

void
hash_free(hash_ctx *ctx)
{
	if (ctx == NULL)
		return;
	EVP_MD_CTX_free(ctx->evp);
	free(ctx);
}

void
hash_reset(hash_ctx *ctx)
{
	evp_init(ctx->evp);
}

void
hash_update(hash_ctx *ctx, const void *data, size_t n)
{
	if (EVP_DigestUpdate(ctx->evp, data, n) != 1)
		crypto_fatal("updating SHA-256");
}

void
hash_final(hash_ctx *ctx, uint8_t out[HASH_LEN])
{
	if (EVP_DigestFinal_ex(ctx->evp, out, NULL) != 1)
		crypto_fatal("finishing SHA-256");
}

void
hash_buf(const void *data, size_t n, uint8_t out[HASH_LEN])
{
	EVP_MD_CTX *evp;

	pthread_once(&sha256_once, sha256_init);
	evp = pthread_getspecific(buf_ctx_key);
	if (evp == NULL)
	{
		evp = evp_new();
		if (pthread_setspecific(buf_ctx_key, evp) != 0)
			crypto_fatal("storing the SHA-256 context");
	}
	evp_init(evp);
	if (EVP_DigestUpdate(evp, data, n) != 1 || EVP_DigestFinal_ex(evp, out, NULL) != 1)
		crypto_fatal("computing SHA-256");
}

void
hex_encode(const uint8_t *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++)
	{
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 0xf];
	}
	out[2 * n] = '\0';
}

/* Value of one hex digit (either case), or -1. */
static int
hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

bool
hex_decode(const char *hex, size_t hexlen, uint8_t *out)
{
	if (hexlen % 2 != 0)
		return false;
	for (size_t i = 0; i < hexlen; i += 2)
	{
		int			hi = hex_value(hex[i]);
		int			lo = hex_value(hex[i + 1]);

		if (hi < 0 || lo < 0)
			return false;
		out[i / 2] = (uint8_t) (hi << 4 | lo);
	}
	return true;
}

void
hash_to_hex(const uint8_t h[HASH_LEN], char out[HASH_HEX_LEN + 1])
{
	hex_encode(h, HASH_LEN, out);
}

bool
hash_from_hex(const char *hex, uint8_t out[HASH_LEN])
{
	/* strnlen stops at HASH_HEX_LEN + 1: a longer string is rejected without reading it all. */
	return strnlen(hex, HASH_HEX_LEN + 1) == HASH_HEX_LEN && hex_decode(hex, HASH_HEX_LEN, out);
}

int
random_bytes(void *buf, size_t n)
{
	unsigned char *p = buf;
	char		msg[256];

	/* RAND_bytes takes an int length. */
	while (n > 0)
	{
		int			chunk = n > INT_MAX ? INT_MAX : (int) n;

		if (RAND_bytes(p, chunk) != 1)
			return error_set(ERR_CRYPTO, "could not generate random bytes: %s", openssl_error(msg, sizeof(msg)));
		p += chunk;
		n -= (size_t) chunk;
	}
	return 0;
}
