/*
 * tls.c: TLS transport of the pgkeep protocol with OpenSSL 3 (see tls.h).
 * Every OpenSSL failure goes through tls_fail(), which drains OpenSSL's error
 * queue into the message.
 */
#include "tls.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "error.h"
#include "mem.h"

/*
 * Bytes of TLS records a connection reads with one read() and gathers for one
 * write(): a bulk transfer costs a system call and a wakeup of the peer per
 * TLS_IO_BUFFER instead of per 16 KiB record.
 */
#define TLS_IO_BUFFER (128 * 1024)

struct tls_ctx
{
	SSL_CTX    *ssl;
	bool		server;
};

struct tls_conn
{
	SSL		   *ssl;
	int			fd;
	char		cn[256];
	char		addr[128];
	int			timeout_s;
};

/* code with "what: <OpenSSL's reasons>"; the error queue is emptied. */
static int
tls_fail(int code, const char *what)
{
	strbuf		sb = STRBUF_INIT;
	unsigned long e;
	int			rc;

	while ((e = ERR_get_error()) != 0)
	{
		const char *reason = ERR_reason_error_string(e);

		sb_append(&sb, sb.len ? ", " : "");
		if (reason)
			sb_append(&sb, reason);
		else
			sb_appendf(&sb, "error 0x%lx", e);
	}
	rc = error_set(code, "%s%s%s", what, sb.len ? ": " : "", sb_str(&sb));
	sb_free(&sb);
	return rc;
}

static int
ctx_new(bool server, const char *cert_file, const char *key_file, const char *ca_file, tls_ctx **out)
{
	SSL_CTX    *ssl = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	char	   *what = NULL;
	int			rc = 0;

	*out = NULL;
	if (ssl == NULL)
		return tls_fail(ERR_CRYPTO, "could not create a TLS context");
	SSL_CTX_set_min_proto_version(ssl, TLS1_2_VERSION);
	SSL_CTX_set_options(ssl, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
	/*
	 * Read ahead: one read() takes whatever records have arrived, instead of
	 * two reads (header, body) per record.  Hence SSL_has_pending, not
	 * SSL_pending, in tls_wait_readable.
	 */
	SSL_CTX_set_read_ahead(ssl, 1);
	/* ... and up to TLS_IO_BUFFER of records at once. */
	SSL_CTX_set_default_read_buffer_len(ssl, TLS_IO_BUFFER);
	/* AES-128-GCM first: the cheapest suite to encrypt and decrypt with AES-NI. */
	SSL_CTX_set_ciphersuites(ssl, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256");
	if (cert_file && SSL_CTX_use_certificate_chain_file(ssl, cert_file) != 1)
		what = xasprintf("could not load certificate file \"%s\"", cert_file);
	else if (key_file && SSL_CTX_use_PrivateKey_file(ssl, key_file, SSL_FILETYPE_PEM) != 1)
		what = xasprintf("could not load key file \"%s\"", key_file);
	else if (cert_file && key_file && SSL_CTX_check_private_key(ssl) != 1)
		what = xasprintf("key file \"%s\" does not match certificate file \"%s\"", key_file, cert_file);
	else if (ca_file && SSL_CTX_load_verify_locations(ssl, ca_file, NULL) != 1)
		what = xasprintf("could not load CA file \"%s\"", ca_file);
	else if (!ca_file && SSL_CTX_set_default_verify_paths(ssl) != 1)
		what = xstrdup("could not load the system's CA certificates");
	if (what)
	{
		rc = tls_fail(ERR_CRYPTO, what);
		free(what);
		SSL_CTX_free(ssl);
		return rc;
	}
	SSL_CTX_set_verify(ssl, SSL_VERIFY_PEER | (server ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0), NULL);
	if (server)
		SSL_CTX_set_session_cache_mode(ssl, SSL_SESS_CACHE_OFF);
	*out = xcalloc(1, sizeof(tls_ctx));
	(*out)->ssl = ssl;
	(*out)->server = server;
	return 0;
}

int
tls_server_ctx_new(const char *cert_file, const char *key_file, const char *ca_file, tls_ctx **out)
{
	if (!cert_file || !key_file || !ca_file)
		return error_set(ERR_OPTION, "the server needs options tls-server-cert-file, tls-server-key-file and tls-server-ca-file");
	return ctx_new(true, cert_file, key_file, ca_file, out);
}

int
tls_client_ctx_new(const char *cert_file, const char *key_file, const char *ca_file, tls_ctx **out)
{
	if ((cert_file == NULL) != (key_file == NULL))
		return error_set(ERR_OPTION, "options repo1-host-cert-file and repo1-host-key-file go together");
	return ctx_new(false, cert_file, key_file, ca_file, out);
}

void
tls_ctx_free(tls_ctx *ctx)
{
	if (ctx)
	{
		SSL_CTX_free(ctx->ssl);
		free(ctx);
	}
}

static void
sock_addr_text(const struct sockaddr *sa, socklen_t len, char *out, size_t cap)
{
	char		host[NI_MAXHOST], serv[NI_MAXSERV];

	if (getnameinfo(sa, len, host, sizeof(host), serv, sizeof(serv), NI_NUMERICHOST | NI_NUMERICSERV) == 0)
		snprintf(out, cap, sa->sa_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, serv);
	else
		snprintf(out, cap, "(unknown address)");
}

int
tls_listen(const char *address, int port, int *fd)
{
	struct addrinfo hints = {0}, *res = NULL;
	char		serv[16];
	int			one = 1, s = -1, gai, rc;

	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	snprintf(serv, sizeof(serv), "%d", port);
	if (address && (strcmp(address, "*") == 0 || address[0] == '\0'))
		address = NULL;
	/* Every address: one IPv6 socket that takes IPv4 too, or IPv4 alone where there is no IPv6. */
	if (address == NULL)
		hints.ai_family = AF_INET6;
	if ((gai = getaddrinfo(address, serv, &hints, &res)) != 0 && address == NULL)
	{
		hints.ai_family = AF_INET;
		gai = getaddrinfo(address, serv, &hints, &res);
	}
	if (gai != 0)
		return error_set(ERR_OPTION, "could not resolve tls-server-address \"%s\": %s", address ? address : "*", gai_strerror(gai));
	rc = error_set(ERR_PROTOCOL, "could not listen on %s port %d: no usable address", address ? address : "*", port);
	for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next)
	{
		int			zero = 0;

		s = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (s < 0)
			continue;
		setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (ai->ai_family == AF_INET6 && address == NULL)
			setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
		if (bind(s, ai->ai_addr, ai->ai_addrlen) == 0 && listen(s, 64) == 0)
		{
			rc = 0;
			error_clear();
			break;
		}
		rc = error_set(ERR_PROTOCOL, "could not listen on %s port %d: %s", address ? address : "*", port, strerror(errno));
		close(s);
		s = -1;
	}
	freeaddrinfo(res);
	*fd = s;
	return rc;
}

static void
sock_timeout(int fd, int timeout_s)
{
	struct timeval tv = {.tv_sec = timeout_s > 0 ? timeout_s : 0};

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static tls_conn *
conn_new(tls_ctx *ctx, int fd, int timeout_s)
{
	tls_conn   *c = xcalloc(1, sizeof(*c));
	int			one = 1;

	c->fd = fd;
	c->timeout_s = timeout_s;
	c->ssl = SSL_new(ctx->ssl);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	sock_timeout(fd, timeout_s);
	return c;
}

/*
 * The connection's socket: read directly (read ahead fills the read buffer),
 * written through a buffer that tls_flush empties.  0 on success.
 */
static int
set_bios(tls_conn *c, int fd)
{
	BIO		   *sock = BIO_new_socket(fd, BIO_NOCLOSE);
	BIO		   *buf = BIO_new(BIO_f_buffer());

	if (sock == NULL || buf == NULL || BIO_set_write_buffer_size(buf, TLS_IO_BUFFER) != 1 || BIO_up_ref(sock) != 1)
	{
		BIO_free(buf);
		BIO_free(sock);
		return -1;
	}
	BIO_push(buf, sock);
	/* Takes one reference to sock as the read side, buf (holding the other) as the write side. */
	SSL_set_bio(c->ssl, sock, buf);
	return 0;
}

/* Whether an OpenSSL error is the peer's alert refusing our certificate. */
static bool
peer_refused(unsigned long e)
{
	switch (ERR_GET_REASON(e))
	{
		case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
		case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
		case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
		case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
		case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
		case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
		case SSL_R_TLSV1_ALERT_DECRYPT_ERROR:
		case SSL_R_TLSV1_ALERT_ACCESS_DENIED:
			return true;
		default:
			return false;
	}
}

/* The reason a handshake failed: the verification result when there is one, else OpenSSL's queue. */
static int
handshake_fail(tls_conn *c, int ret, const char *what)
{
	long		vr = SSL_get_verify_result(c->ssl);
	int			err = SSL_get_error(c->ssl, ret);
	int			saved = errno;

	if (vr != X509_V_OK)
	{
		ERR_clear_error();
		return error_set(ERR_CRYPTO, "%s: certificate verify failed: %s", what, X509_verify_cert_error_string(vr));
	}
	if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE || (err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0))
	{
		ERR_clear_error();
		if (err != SSL_ERROR_SYSCALL || saved == EAGAIN || saved == EWOULDBLOCK)
			return error_set(ERR_TIMEOUT, "%s: no answer within %d s", what, c->timeout_s);
		return error_set(ERR_PROTOCOL, "%s: %s", what, saved ? strerror(saved) : "the peer closed the connection");
	}
	if (ERR_GET_REASON(ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING)
	{
		ERR_clear_error();
		return error_set(ERR_PROTOCOL, "%s: the peer closed the connection (a server closes connections beyond "
						 "tls-server-max-connections)", what);
	}
	return tls_fail(peer_refused(ERR_peek_error()) ? ERR_AUTH : ERR_CRYPTO, what);
}

static void
peer_cn(tls_conn *c)
{
	X509	   *cert = SSL_get1_peer_certificate(c->ssl);

	c->cn[0] = '\0';
	if (cert)
	{
		if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, c->cn, sizeof(c->cn)) < 0)
			c->cn[0] = '\0';
		X509_free(cert);
	}
}

int
tls_accept(tls_ctx *ctx, int fd, int timeout_s, tls_conn **out)
{
	struct sockaddr_storage ss;
	socklen_t	sl = sizeof(ss);
	tls_conn   *c = conn_new(ctx, fd, timeout_s);
	int			ret = 0;

	*out = NULL;
	if (getpeername(fd, (struct sockaddr *) &ss, &sl) == 0)
		sock_addr_text((struct sockaddr *) &ss, sl, c->addr, sizeof(c->addr));
	ERR_clear_error();
	if (c->ssl == NULL || set_bios(c, fd) != 0 || (ret = SSL_accept(c->ssl)) != 1)
	{
		char	   *what = xasprintf("TLS handshake with client %s failed", c->addr);
		int			rc = c->ssl ? handshake_fail(c, ret, what) : tls_fail(ERR_CRYPTO, what);

		free(what);
		tls_close(c);
		return rc;
	}
	peer_cn(c);
	*out = c;
	return 0;
}

/* connect() with a timeout. */
static int
connect_timeout(int s, const struct sockaddr *sa, socklen_t len, int timeout_s)
{
	int			flags = fcntl(s, F_GETFL);
	int			err = 0;
	socklen_t	el = sizeof(err);

	fcntl(s, F_SETFL, flags | O_NONBLOCK);
	if (connect(s, sa, len) != 0)
	{
		struct pollfd pfd = {.fd = s, .events = POLLOUT};
		int			n;

		if (errno != EINPROGRESS)
			return errno;
		do
			n = poll(&pfd, 1, timeout_s * 1000);
		while (n < 0 && errno == EINTR);
		if (n == 0)
			return ETIMEDOUT;
		if (n < 0 || getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &el) != 0)
			return errno;
		if (err)
			return err;
	}
	fcntl(s, F_SETFL, flags);
	return 0;
}

int
tls_connect(tls_ctx *ctx, const char *host, int port, int timeout_s, tls_conn **out)
{
	struct addrinfo hints = {0}, *res = NULL;
	char		serv[16];
	strbuf		tried = STRBUF_INIT;
	int			gai, s = -1, rc;
	tls_conn   *c;

	*out = NULL;
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	snprintf(serv, sizeof(serv), "%d", port);
	if ((gai = getaddrinfo(host, serv, &hints, &res)) != 0)
		return error_set(ERR_PROTOCOL, "could not resolve repository host \"%s\": %s", host, gai_strerror(gai));
	/* Each address in turn: a name may resolve to several hosts, or to IPv6 and IPv4. */
	for (struct addrinfo *ai = res; ai != NULL && s < 0; ai = ai->ai_next)
	{
		char		addr[128];
		int			e;

		sock_addr_text(ai->ai_addr, ai->ai_addrlen, addr, sizeof(addr));
		s = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (s < 0)
			e = errno;
		else if ((e = connect_timeout(s, ai->ai_addr, ai->ai_addrlen, timeout_s)) != 0)
		{
			close(s);
			s = -1;
		}
		if (s < 0)
			sb_appendf(&tried, "%s%s: %s", tried.len ? "; " : "", addr, strerror(e));
	}
	freeaddrinfo(res);
	if (s < 0)
	{
		rc = error_set(ERR_PROTOCOL, "could not connect to repository server %s port %d (%s); check that pgkeep server "
					   "runs there and listens on that port", host, port, sb_str(&tried));
		sb_free(&tried);
		return rc;
	}
	sb_free(&tried);
	c = conn_new(ctx, s, timeout_s);
	snprintf(c->addr, sizeof(c->addr), "%s:%d", host, port);
	ERR_clear_error();
	/* The server's certificate must name host: as an IP address when it is one, else as a DNS name (and SNI). */
	X509_VERIFY_PARAM *vp = c->ssl ? SSL_get0_param(c->ssl) : NULL;
	bool		is_ip = vp && X509_VERIFY_PARAM_set1_ip_asc(vp, host) == 1;

	if (c->ssl == NULL || set_bios(c, s) != 0 ||
		(!is_ip && (SSL_set_tlsext_host_name(c->ssl, host) != 1 || SSL_set1_host(c->ssl, host) != 1)))
	{
		rc = tls_fail(ERR_CRYPTO, "could not set up the TLS connection");
		tls_close(c);
		return rc;
	}
	int			ret = SSL_connect(c->ssl);

	if (ret != 1)
	{
		char	   *what = xasprintf("TLS handshake with repository server %s failed", c->addr);

		rc = handshake_fail(c, ret, what);
		free(what);
		tls_close(c);
		return rc;
	}
	peer_cn(c);
	*out = c;
	return 0;
}

void
tls_close(tls_conn *c)
{
	if (c == NULL)
		return;
	if (c->ssl)
	{
		/* A close_notify, without waiting for the peer's: the socket closes next. */
		if (SSL_is_init_finished(c->ssl))
			SSL_shutdown(c->ssl);
		SSL_free(c->ssl);
	}
	ERR_clear_error();
	if (c->fd >= 0)
		close(c->fd);
	free(c);
}

const char *
tls_peer_cn(tls_conn *c)
{
	return c->cn;
}

const char *
tls_peer_addr(tls_conn *c)
{
	return c->addr;
}

void
tls_set_timeout(tls_conn *c, int timeout_s)
{
	c->timeout_s = timeout_s;
	sock_timeout(c->fd, timeout_s);
}

int
tls_wait_readable(tls_conn *c, int timeout_s)
{
	struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
	int			n;

	if (SSL_has_pending(c->ssl))
		return 0;
	n = poll(&pfd, 1, timeout_s > 0 ? timeout_s * 1000 : -1);
	if (n < 0 && errno == EINTR)
		return error_set(ERR_INTERRUPTED, "interrupted while waiting for a request");
	if (n == 0)
		return error_set(ERR_TIMEOUT, "no request within %d s", timeout_s);
	return 0;
}

/* Why an SSL_read or SSL_write failed; 1 when it should be retried (a signal). */
static int
io_fail(tls_conn *c, int ret, const char *what, int *code)
{
	int			err = SSL_get_error(c->ssl, ret);
	int			saved = errno;

	if (err == SSL_ERROR_ZERO_RETURN)
	{
		*code = 0;              /* the peer closed cleanly */
		return 0;
	}
	if ((err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_SYSCALL) && ERR_peek_error() == 0)
	{
		if (saved == EINTR)
			return 1;
		if (saved == EAGAIN || saved == EWOULDBLOCK)
			*code = error_set(ERR_TIMEOUT, "%s %s: no progress within %d s", what, c->addr, c->timeout_s);
		else if (err == SSL_ERROR_SYSCALL && saved == 0)
			*code = error_set(ERR_PROTOCOL, "%s %s: the connection closed unexpectedly", what, c->addr);
		else
			*code = error_set(ERR_PROTOCOL, "%s %s: %s", what, c->addr, strerror(saved));
		return 0;
	}
	char	   *msg = xasprintf("%s %s failed", what, c->addr);

	*code = tls_fail(peer_refused(ERR_peek_error()) ? ERR_AUTH : ERR_PROTOCOL, msg);
	free(msg);
	return 0;
}

static int
tls_read(void *ctx, void *buf, size_t n, size_t *got)
{
	tls_conn   *c = ctx;
	int			code = 0;

	*got = 0;
	for (;;)
	{
		size_t		done = 0;
		int			ret;

		errno = 0;
		ERR_clear_error();
		ret = SSL_read_ex(c->ssl, buf, n, &done);
		if (ret == 1)
		{
			*got = done;
			return 0;
		}
		if (!io_fail(c, ret, "reading from", &code))
			return code;
	}
}

static int
tls_write(void *ctx, const void *buf, size_t n)
{
	tls_conn   *c = ctx;
	size_t		off = 0;
	int			code = 0;

	while (off < n)
	{
		size_t		done = 0;
		int			ret;

		errno = 0;
		ERR_clear_error();
		ret = SSL_write_ex(c->ssl, (const uint8_t *) buf + off, n - off, &done);
		if (ret == 1)
		{
			off += done;
			continue;
		}
		if (!io_fail(c, ret, "writing to", &code))
			return code ? code : error_set(ERR_PROTOCOL, "writing to %s: the peer closed the connection", c->addr);
	}
	return 0;
}

static int
tls_flush(void *ctx)
{
	tls_conn   *c = ctx;

	for (;;)
	{
		errno = 0;
		if (BIO_flush(SSL_get_wbio(c->ssl)) == 1)
			return 0;
		if (errno == EINTR)
			continue;
		ERR_clear_error();
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return error_set(ERR_TIMEOUT, "writing to %s: no progress within %d s", c->addr, c->timeout_s);
		return error_set(ERR_PROTOCOL, "writing to %s: %s", c->addr,
						 errno ? strerror(errno) : "the connection closed unexpectedly");
	}
}

proto_io
tls_proto_io(tls_conn *c)
{
	return (proto_io) {tls_read, tls_write, tls_flush, c};
}
