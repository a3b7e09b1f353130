/*
 * harness.h: the unit-test harness.  A test file defines test functions and
 * a main that runs them with RUN(fn); CHECK(...) records a failure with its
 * line and goes on; the program exits 1 when any check failed.
 *
 *   static void test_roundtrip(void) { CHECK(x == 1); CHECK_EQ_INT(rc, 0); }
 *   int main(void) { RUN(test_roundtrip); return harness_done(); }
 */
#ifndef PGKEEP_HARNESS_H
#define PGKEEP_HARNESS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int harness_failed;
static int harness_checks;
static const char *harness_current = "";

#define CHECK(cond) do { \
	harness_checks++; \
	if (!(cond)) { harness_failed++; \
		fprintf(stderr, "FAIL %s:%d in %s: %s\n", __FILE__, __LINE__, harness_current, #cond); } \
} while (0)

#define CHECK_EQ_INT(a, b) do { \
	long long _a = (long long) (a), _b = (long long) (b); harness_checks++; \
	if (_a != _b) { harness_failed++; \
		fprintf(stderr, "FAIL %s:%d in %s: %s == %lld, expected %s == %lld\n", __FILE__, __LINE__, \
				harness_current, #a, _a, #b, _b); } \
} while (0)

#define CHECK_EQ_STR(a, b) do { \
	const char *_a = (a), *_b = (b); harness_checks++; \
	if (_a == NULL || _b == NULL || strcmp(_a, _b) != 0) { harness_failed++; \
		fprintf(stderr, "FAIL %s:%d in %s: %s == \"%s\", expected \"%s\"\n", __FILE__, __LINE__, \
				harness_current, #a, _a ? _a : "(null)", _b ? _b : "(null)"); } \
} while (0)

/* Check that a string contains a fragment (for error messages). */
#define CHECK_CONTAINS(s, frag) do { \
	const char *_s = (s), *_f = (frag); harness_checks++; \
	if (_s == NULL || strstr(_s, _f) == NULL) { harness_failed++; \
		fprintf(stderr, "FAIL %s:%d in %s: \"%s\" does not contain \"%s\"\n", __FILE__, __LINE__, \
				harness_current, _s ? _s : "(null)", _f); } \
} while (0)

#define RUN(fn) do { harness_current = #fn; int _before = harness_failed; fn(); \
	printf("%s %s\n", harness_failed == _before ? "ok" : "not ok", #fn); } while (0)

static inline int
harness_done(void)
{
	printf("%d checks, %d failed\n", harness_checks, harness_failed);
	return harness_failed ? 1 : 0;
}

#endif
