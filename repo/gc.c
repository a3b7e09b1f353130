/*
 * gc.c: garbage collection of the block store (gc.h).
 */
#include "gc.h"

int
gc_run(repo *r, store *s, bool dry_run, repo_gc_result *res)
{
	(void) r;
	(void) s;
	(void) dry_run;
	(void) res;
	return 0;
}
