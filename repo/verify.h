/*
 * verify.h: the verify command: read back every backup (manifest, block
 * lists, blocks) and every WAL file of a stanza, check each against its
 * SHA-256, check that each backup has the WAL it needs, and report every
 * problem found (doc/verify.md).
 */
#ifndef PGKEEP_VERIFY_H
#define PGKEEP_VERIFY_H

/*
 * Run verify for --stanza (all backups, or the one of an explicit --set);
 * with --fast, blocks and WAL files are checked to be stored, not read back.
 * Prints the report (text or --output=json) on stdout.  Returns 0 when
 * nothing is wrong; ERR_CHECK ("verify found N problem(s)") when anything
 * is; another code when verify itself could not run (ERR_OPTION without a
 * stanza, ERR_STANZA when the stanza does not exist, ERR_INVALID for a --set
 * that is not a backup, ERR_FILE when the repository cannot be listed, ...).
 */
int			cmd_verify(void);

#endif
