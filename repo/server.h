/*
 * server.h: `pgkeep server`, the repository daemon, and `pgkeep server-ping`.
 *
 * The server listens on tls-server-address:tls-server-port (default 8432),
 * forks one process per client connection (at most
 * tls-server-max-connections at once), authenticates the client by its
 * certificate (tls-server-ca-file) and maps its common name to the stanzas
 * it may use (tls-server-auth).  Each request is checked against that map
 * before the repository is touched, then served by the local driver on
 * repo1-path.  SIGHUP reloads the configuration and certificates; SIGTERM
 * stops accepting, lets each connection finish its request and exits.
 * Protocol: doc/protocol.md; operation: doc/server.md.
 */
#ifndef PGKEEP_SERVER_H
#define PGKEEP_SERVER_H

#include <stdbool.h>

int			cmd_server(void);
/* Connect to the server (parameter HOST, or repo1-host), handshake and ping. */
int			cmd_server_ping(void);

/*
 * The access map of tls-server-auth: whether the client with certificate
 * common name cn may use stanza ("" for requests about no stanza: any client
 * in the map may make them).  Exposed for tests.
 */
typedef struct server_auth server_auth;
int			server_auth_parse(server_auth **out);
bool		server_auth_allows(const server_auth *a, const char *cn, const char *stanza);
void		server_auth_free(server_auth *a);

/*
 * The fields of a stanza as frames carry them (the stanza-create request
 * and the stanza-get answer, doc/protocol.md); the client encodes with it too.
 */
struct proto_msg;
struct stanza_info;
void		server_put_stanza(struct proto_msg *m, const struct stanza_info *st);

#endif
