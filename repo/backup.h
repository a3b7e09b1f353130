/*
 * backup.h: the backup command.  Copies a running cluster's data directory
 * into the block store between pg_backup_start and pg_backup_stop, and
 * commits the manifest last.
 */
#ifndef PGKEEP_BACKUP_H
#define PGKEEP_BACKUP_H

int			cmd_backup(void);

#endif
