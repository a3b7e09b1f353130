/*
 * stanza.h: stanza-create, and the check every command makes that the
 * cluster (pg_control under pg1-path) matches the stanza in the repository.
 */
#ifndef PGKEEP_STANZA_H
#define PGKEEP_STANZA_H

#include "repo.h"
#include "../src/pgformat.h"

int			cmd_stanza_create(void);

/* Compare a cluster's pg_control with the stanza; ERR_STANZA naming the mismatch. */
int			stanza_check_cluster(const stanza_info *st, const pg_control_info *pc);

#endif
