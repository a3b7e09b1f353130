/*
 * tls.h: TLS connections with mutual certificate authentication (OpenSSL 3),
 * the transport of the pgkeep protocol between clients and `pgkeep server`.
 *
 * TLS 1.3 is preferred and 1.2 the minimum.  Both sides present a
 * certificate and verify the peer's against their CA file; the client also
 * checks that the server's certificate names the host it dialed.  The server
 * learns the client's identity from its certificate's common name.
 * Sockets are blocking with a timeout on every read and write.  Errors are
 * ERR_CRYPTO (certificates, keys, handshake), ERR_PROTOCOL (network) or
 * ERR_TIMEOUT, with OpenSSL's reason in the message.
 */
#ifndef PGKEEP_TLS_H
#define PGKEEP_TLS_H

#include "proto.h"

typedef struct tls_ctx tls_ctx;
typedef struct tls_conn tls_conn;

/* A server context: its certificate and key, and the CA that signs client certificates. */
int			tls_server_ctx_new(const char *cert_file, const char *key_file, const char *ca_file, tls_ctx **out);
/* A client context: its certificate and key, and the CA that signs the server's certificate. */
int			tls_client_ctx_new(const char *cert_file, const char *key_file, const char *ca_file, tls_ctx **out);
void		tls_ctx_free(tls_ctx *ctx);

/*
 * Listen on address:port; *fd is the listening socket.  address "*" (or "")
 * is every address, IPv6 and IPv4; a name listens on the first address it
 * resolves to.
 */
int			tls_listen(const char *address, int port, int *fd);
/*
 * Handshake with an accepted socket fd (owned by the connection from now
 * on, also on failure).  A client without a certificate, or with one that
 * does not verify against the CA, fails here with the reason.
 */
int			tls_accept(tls_ctx *ctx, int fd, int timeout_s, tls_conn **out);
/* Connect to host:port, trying each address the name resolves to, and handshake. */
int			tls_connect(tls_ctx *ctx, const char *host, int port, int timeout_s, tls_conn **out);
/* Shut the connection down and free it (NULL is a no-op). */
void		tls_close(tls_conn *c);

/* The peer certificate's common name ("" when it has none) and the peer's address. */
const char *tls_peer_cn(tls_conn *c);
const char *tls_peer_addr(tls_conn *c);
/* Timeout of each later read and write, in seconds. */
void		tls_set_timeout(tls_conn *c, int timeout_s);
/* Wait until a frame can be read: 0, ERR_TIMEOUT after timeout_s, ERR_INTERRUPTED when a signal came. */
int			tls_wait_readable(tls_conn *c, int timeout_s);
/* The protocol transport over c. */
proto_io	tls_proto_io(tls_conn *c);

#endif
