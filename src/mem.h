/*
 * mem.h: memory and strings.  Out of memory is one policy: the x* functions
 * never return NULL; they print a message and abort the process.
 * strbuf is a growable string; nothing is truncated into a fixed array.
 */
#ifndef PGKEEP_MEM_H
#define PGKEEP_MEM_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t n);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* A new string formatted like printf.  Caller frees. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *xvasprintf(const char *fmt, va_list ap);

typedef struct strbuf
{
	char	   *buf;	/* always NUL-terminated once anything was added */
	size_t		len;
	size_t		cap;
} strbuf;

#define STRBUF_INIT {NULL, 0, 0}

void sb_reserve(strbuf *sb, size_t extra);
void sb_append(strbuf *sb, const char *s);
void sb_appendn(strbuf *sb, const void *data, size_t n);
void sb_appendc(strbuf *sb, char c);
void sb_appendf(strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sb_reset(strbuf *sb);
void sb_free(strbuf *sb);
/* Append s as a JSON string literal, quoted and escaped (NULL appends ""). */
void sb_append_json(strbuf *sb, const char *s);
/* The buffer's string ("" when empty); stays owned by sb. */
const char *sb_str(strbuf *sb);
/* Take ownership of the string; sb is left empty. */
char *sb_detach(strbuf *sb);

bool str_starts_with(const char *s, const char *prefix);
bool str_ends_with(const char *s, const char *suffix);

#endif
