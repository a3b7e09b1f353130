/*
 * restore.h: the restore command.  Writes a backup's files into pg1-path
 * (verifying every block against its id), restores backup_label,
 * tablespace_map, tablespace links, modes and owners, and writes the
 * recovery settings for --type into postgresql.auto.conf.
 */
#ifndef PGKEEP_RESTORE_H
#define PGKEEP_RESTORE_H

/* Run `restore` with the parsed options.  Returns 0 or an error code. */
int			cmd_restore(void);

#endif
