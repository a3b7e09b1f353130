/*
 * hash.h: SHA-256, the hash of block ids, WAL checksums and manifests.
 * Backed by OpenSSL's EVP interface (uses the CPU's SHA extensions).
 */
#ifndef PGKEEP_HASH_H
#define PGKEEP_HASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HASH_LEN 32
#define HASH_HEX_LEN 64

typedef struct hash_ctx hash_ctx;

hash_ctx   *hash_new(void);
void		hash_free(hash_ctx *ctx);
/* Start over (a context is reusable). */
void		hash_reset(hash_ctx *ctx);
void		hash_update(hash_ctx *ctx, const void *data, size_t n);
void		hash_final(hash_ctx *ctx, uint8_t out[HASH_LEN]);

/* One-shot hash of a buffer. */
void		hash_buf(const void *data, size_t n, uint8_t out[HASH_LEN]);

/* Lowercase hex; out has HASH_HEX_LEN + 1 bytes. */
void		hash_to_hex(const uint8_t h[HASH_LEN], char out[HASH_HEX_LEN + 1]);
/* Parse exactly 64 hex characters; false when malformed. */
bool		hash_from_hex(const char *hex, uint8_t out[HASH_LEN]);
/* Generic hex helpers. */
void		hex_encode(const uint8_t *in, size_t n, char *out);   /* writes 2n chars + NUL */
bool		hex_decode(const char *hex, size_t hexlen, uint8_t *out);

/* Fill buf with cryptographically random bytes (0 or ERR_CRYPTO). */
int			random_bytes(void *buf, size_t n);

#endif
