/* archive.h: the WAL archive commands archive-push, archive-get and check. */
#ifndef PGKEEP_ARCHIVE_H
#define PGKEEP_ARCHIVE_H

int			cmd_archive_push(void);
/* Exit code 1 (ERR_NOT_FOUND) when the repository does not have the file. */
int			cmd_archive_get(void);
int			cmd_check(void);

#endif
