/* error.c: per-thread error message store behind error_set() (see error.h). */
#include "error.h"

#include <stdio.h>
#include <string.h>

#define ERROR_MSG_MAX 4096

static __thread char error_buf[ERROR_MSG_MAX];
static __thread int error_last;

int
error_setv(int code, const char *fmt, va_list ap)
{
	vsnprintf(error_buf, sizeof(error_buf), fmt, ap);
	error_last = code;
	return code;
}

int
error_set(int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	error_setv(code, fmt, ap);
	va_end(ap);
	return code;
}

int
error_wrap(int code, const char *fmt, ...)
{
	char		old[ERROR_MSG_MAX];
	size_t		n, olen;
	va_list		ap;

	memcpy(old, error_buf, sizeof(old));
	va_start(ap, fmt);
	vsnprintf(error_buf, sizeof(error_buf), fmt, ap);
	va_end(ap);
	/* Append ": <old message>", cut at the buffer's end. */
	n = strlen(error_buf);
	olen = strnlen(old, sizeof(old) - 1);
	if (n + 2 < sizeof(error_buf))
	{
		memcpy(error_buf + n, ": ", 2);
		n += 2;
		if (olen > sizeof(error_buf) - 1 - n)
			olen = sizeof(error_buf) - 1 - n;
		memcpy(error_buf + n, old, olen);
		error_buf[n + olen] = '\0';
	}
	error_last = code;
	return code;
}

const char *
error_msg(void)
{
	return error_buf;
}

int
error_code_last(void)
{
	return error_last;
}

void
error_clear(void)
{
	error_buf[0] = '\0';
	error_last = 0;
}

const char *
error_name(int code)
{
	static const char *const names[ERR__COUNT] = {
		[ERR_OK] = "ok", [ERR_NOT_FOUND] = "not-found", [ERR_OPTION] = "option",
		[ERR_CONFIG] = "config", [ERR_FORMAT] = "format", [ERR_FILE] = "file",
		[ERR_PG] = "postgresql", [ERR_STANZA] = "stanza", [ERR_CORRUPT] = "corrupt",
		[ERR_CONFLICT] = "conflict", [ERR_LOCK] = "lock", [ERR_TIMEOUT] = "timeout",
		[ERR_PROTOCOL] = "protocol", [ERR_INTERNAL] = "internal", [ERR_COMPRESS] = "compress",
		[ERR_CRYPTO] = "crypto", [ERR_INTERRUPTED] = "interrupted", [ERR_INVALID] = "invalid",
		[ERR_CHECK] = "check", [ERR_AUTH] = "auth",
	};

	if (code < 0 || code >= ERR__COUNT || names[code] == NULL)
		return "unknown";
	return names[code];
}
