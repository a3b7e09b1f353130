/* test_mem.c: strbuf, x* allocation helpers and the error idiom. */
#include <string.h>

#include "error.h"
#include "harness.h"
#include "mem.h"

static void
test_strbuf_grows(void)
{
	strbuf		sb = STRBUF_INIT;

	CHECK_EQ_STR(sb_str(&sb), "");
	for (int i = 0; i < 10000; i++)
		sb_appendc(&sb, (char) ('a' + i % 26));
	CHECK_EQ_INT(sb.len, 10000);
	CHECK_EQ_INT(strlen(sb_str(&sb)), 10000);
	CHECK(sb.buf[25] == 'z' && sb.buf[26] == 'a');
	sb_reset(&sb);
	sb_appendf(&sb, "%s=%d", "x", 42);
	sb_append(&sb, "!");
	CHECK_EQ_STR(sb_str(&sb), "x=42!");
	char	   *d = sb_detach(&sb);

	CHECK_EQ_STR(d, "x=42!");
	CHECK_EQ_STR(sb_str(&sb), "");
	free(d);
	sb_free(&sb);
}

static void
test_strings(void)
{
	char	   *s = xasprintf("%s/%s", "a", "b");

	CHECK_EQ_STR(s, "a/b");
	free(s);
	s = xstrndup("abcdef", 3);
	CHECK_EQ_STR(s, "abc");
	free(s);
	CHECK(str_starts_with("pg_wal/0001", "pg_wal/"));
	CHECK(!str_starts_with("pg", "pg_wal"));
	CHECK(str_ends_with("x.partial", ".partial"));
	CHECK(!str_ends_with("partial", "x.partial"));
}

static void
test_error_idiom(void)
{
	CHECK_EQ_INT(error_set(ERR_FILE, "could not open file \"%s\": %s", "/x", "No such file"), ERR_FILE);
	CHECK_EQ_STR(error_msg(), "could not open file \"/x\": No such file");
	CHECK_EQ_INT(error_code_last(), ERR_FILE);
	CHECK_EQ_INT(error_wrap(ERR_CORRUPT, "restoring \"%s\"", "base/1/2"), ERR_CORRUPT);
	CHECK_EQ_STR(error_msg(), "restoring \"base/1/2\": could not open file \"/x\": No such file");
	CHECK_EQ_STR(error_name(ERR_NOT_FOUND), "not-found");
	CHECK_EQ_STR(error_name(999), "unknown");
	error_clear();
	CHECK_EQ_STR(error_msg(), "");
	/* A very long message is cut, never overflows. */
	char		big[10000];

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	error_set(ERR_FORMAT, "%s", big);
	error_wrap(ERR_FORMAT, "%s", big);
	CHECK(strlen(error_msg()) < 4096);
}

int
main(void)
{
	RUN(test_strbuf_grows);
	RUN(test_strings);
	RUN(test_error_idiom);
	return harness_done();
}
