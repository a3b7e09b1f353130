/*
 * gc.h: garbage collection of the local block store (repo/gc.c): marks the
 * blocks and block lists of every backup in the repository, then sweeps the
 * store.  The repository interface reaches it through repo_gc().
 */
#ifndef PGKEEP_GC_H
#define PGKEEP_GC_H

#include "repo.h"
#include "store.h"

int			gc_run(repo *r, store *s, bool dry_run, repo_gc_result *res);

#endif
