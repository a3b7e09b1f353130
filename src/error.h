/*
 * error.h: the error catalog and the one error idiom of pgkeep.
 *
 * Every fallible function returns an int: 0 on success, or one of the codes
 * below.  The code is set, with a message, by error_set(), which returns the
 * code so that a failure reads as
 *
 *     return error_set(ERR_FILE_OPEN, "could not open file \"%s\": %s", path, strerror(errno));
 *
 * The message is kept per thread; error_msg() returns the last one.  Cleanup
 * happens in the caller with "goto out".  Codes are stable: each is also the
 * process exit code of a command that fails with it (doc/exit-codes.md).
 * Library code never calls exit().
 */
#ifndef PGKEEP_ERROR_H
#define PGKEEP_ERROR_H

#include <stdarg.h>

typedef enum
{
	ERR_OK = 0,
	ERR_NOT_FOUND = 1,          /* the object is not in the repository (archive-get: end of archive) */
	ERR_OPTION = 2,             /* bad command line: unknown option, invalid value, missing required one */
	ERR_CONFIG = 3,             /* bad configuration file or environment variable */
	ERR_FORMAT = 4,             /* malformed input: manifest, WAL header, pg_control, path, protocol field */
	ERR_FILE = 5,               /* a file system operation failed */
	ERR_PG = 6,                 /* PostgreSQL connection or query failed, or the cluster is not as required */
	ERR_STANZA = 7,             /* stanza missing, or it does not match the cluster */
	ERR_CORRUPT = 8,            /* stored data does not match its checksum */
	ERR_CONFLICT = 9,           /* an object with the same name and different content exists */
	ERR_LOCK = 10,              /* another process holds the lock */
	ERR_TIMEOUT = 11,           /* a wait (archive-timeout) ran out */
	ERR_PROTOCOL = 12,          /* peer sent something invalid, or the connection failed */
	ERR_INTERNAL = 13,          /* a bug: an assertion that should never fail */
	ERR_COMPRESS = 14,          /* the compression library reported an error */
	ERR_CRYPTO = 15,            /* hashing or TLS library error */
	ERR_INTERRUPTED = 16,       /* stopped by a signal */
	ERR_INVALID = 17,           /* the request cannot be done in this state (e.g. restore into a non-empty directory) */
	ERR_CHECK = 18,             /* a check or verify found problems */
	ERR_AUTH = 19,              /* the repository server refused the client (certificate, or stanza not allowed) */
	ERR__COUNT
} error_code;

/* Set the calling thread's error and return code.  Returns code. */
int error_set(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int error_setv(int code, const char *fmt, va_list ap);

/* Prefix the current message with context: "restoring file \"x\": <old message>". Returns code. */
int error_wrap(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The calling thread's last message ("" when none), and its code. */
const char *error_msg(void);
int error_code_last(void);

/* Forget the calling thread's error. */
void error_clear(void);

/* A short stable name for a code ("not-found", "option", ...). */
const char *error_name(int code);

#endif
