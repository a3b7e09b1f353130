/*
 * test_expire.c: the retention rules of repo/expire.c (expire_select):
 * count and time retention of fulls, the anchor of time retention,
 * repo1-retention-diff and the incrementals that go with an expired
 * differential, no policy, and backups whose stop time is unknown.
 */
#include "../../repo/expire.h"

#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define NOW 2000000000
#define DAY 86400

/*
 * Backups from a pattern like "F20 I16 D15": type letter and age in days of
 * the stop time (oldest first); "F?" has an unknown stop time.
 */
static int
make(const char *pattern, expire_backup *b)
{
	int			n = 0;
	char	   *copy = strdup(pattern);

	for (char *tok = strtok(copy, " "); tok; tok = strtok(NULL, " "), n++)
	{
		memset(&b[n], 0, sizeof(b[n]));
		b[n].type = tok[0];
		b[n].readable = tok[1] != '?';
		b[n].stop_time = b[n].readable ? NOW - atoi(tok + 1) * (int64_t) DAY : 0;
	}
	free(copy);
	return n;
}

/*
 * The plan as a string: one letter per backup, 'k' kept, 'F' full rule, 'D'
 * diff rule; a final '!' when the policy does not apply (no WAL goes).
 */
static const char *
plan(const char *pattern, int64_t full, bool full_time, int64_t diff)
{
	static char out[64];
	expire_backup b[32];
	expire_policy pol = {full, full_time, diff};
	int			n = make(pattern, b);
	bool		applies = expire_select(b, n, &pol, NOW);

	for (int i = 0; i < n; i++)
		out[i] = b[i].reason == EXPIRE_KEEP ? 'k' : b[i].reason == EXPIRE_FULL ? 'F' : 'D';
	out[n] = applies ? '\0' : '!';
	out[n + 1] = '\0';
	return out;
}

static void
test_time(void)
{
	/* The anchor is the newest full finished more than 14 days ago (F16); what is before it goes. */
	CHECK_EQ_STR(plan("F20 I19 F16 I15 D13 F8 I1", 14, true, 0), "FFkkkkk");
	/* No full that old: nothing goes, WAL neither. */
	CHECK_EQ_STR(plan("I15 F13 I8 F1", 14, true, 0), "kkkk!");
	CHECK_EQ_STR(plan("F20 I16 F15 I13 F8 I1", 30, true, 0), "kkkkkk!");
	/* Exactly 14 days is not more than 14 days. */
	CHECK_EQ_STR(plan("F20 I19 F14 I1", 14, true, 0), "kkkk");
	CHECK_EQ_STR(plan("F20 I19 F14 I1", 13, true, 0), "FFkk");
	/* Every full older: the newest of them stays. */
	CHECK_EQ_STR(plan("F40 I39 F30 I29", 14, true, 0), "FFkk");
	/* A full whose stop time is unknown is never the anchor. */
	CHECK_EQ_STR(plan("F20 I19 F? I1", 14, true, 0), "kkkk");
	CHECK_EQ_STR(plan("F? I19 F? I1", 14, true, 0), "kkkk!");
}

static void
test_count(void)
{
	CHECK_EQ_STR(plan("F20 I16 F15 I13 F8 I1", 2, false, 0), "FFkkkk");
	CHECK_EQ_STR(plan("F20 I16 F15 I13 F8 I1", 1, false, 0), "FFFFkk");
	CHECK_EQ_STR(plan("F20 I16 F15 I13 F8 I1", 3, false, 0), "kkkkkk");
	CHECK_EQ_STR(plan("F20 I16 F15 I13 F8 I1", 9, false, 0), "kkkkkk");
	/* A diff or incr older than every full (its full was removed) goes with the rule. */
	CHECK_EQ_STR(plan("I21 F20 I16 F15", 2, false, 0), "Fkkk");
	CHECK_EQ_STR(plan("I21 F20 I16 F15", 5, false, 0), "Fkkk");
	/* No full at all: nothing goes. */
	CHECK_EQ_STR(plan("I21 I16 D15", 1, false, 0), "kkk!");
	/* Stop times do not matter to count retention. */
	CHECK_EQ_STR(plan("F? I? F? I?", 1, false, 0), "FFkk");
}

static void
test_diff(void)
{
	/* Keep the newest diff; the older ones go, and the incrementals taken after them. */
	CHECK_EQ_STR(plan("F20 I19 D18 I17 I16 D15 I14 F8 D7 I6", 9, false, 1), "kkDDDDDkkk");
	CHECK_EQ_STR(plan("F20 I19 D18 I17 I16 D15 I14 F8 D7 I6", 9, false, 2), "kkDDDkkkkk");
	/* Incrementals taken straight after a full stay. */
	CHECK_EQ_STR(plan("F20 I19 D18 I17 F8 I7", 9, false, 1), "kkkkkk");
	/* Diffs are counted among what the full rule keeps. */
	CHECK_EQ_STR(plan("F20 D19 F16 D15 I14 D13", 14, true, 1), "FFkDDk");
}

static void
test_no_policy(void)
{
	/* Without repo1-retention-full nothing goes, whatever repo1-retention-diff says. */
	CHECK_EQ_STR(plan("F20 D19 D18 F16 I1", 0, false, 1), "kkkkk!");
	CHECK_EQ_STR(plan("F20 D19 D18 F16 I1", 0, true, 0), "kkkkk!");
	CHECK_EQ_STR(plan("", 2, false, 0), "!");
}

int
main(void)
{
	RUN(test_time);
	RUN(test_count);
	RUN(test_diff);
	RUN(test_no_policy);
	return harness_done();
}
