/*
 * backup.h: the backup command.  Copies a running cluster's data directory
 * into the block store between pg_backup_start and pg_backup_stop, and
 * commits the manifest last.  --type=diff and --type=incr compare the files
 * with the manifest of a prior backup and take the unchanged ones over
 * without reading them (doc/backup.md).
 */
#ifndef PGKEEP_BACKUP_H
#define PGKEEP_BACKUP_H

/* Returns 0 or an error code (error_msg() says what failed); prints the new backup's label on stdout. */
int			cmd_backup(void);

#endif
