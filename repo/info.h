/* info.h: the info command (text and JSON reports of stanzas, WAL and backups). */
#ifndef PGKEEP_INFO_H
#define PGKEEP_INFO_H

int			cmd_info(void);

#endif
