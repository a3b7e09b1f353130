/* command.h: the commands pgkeep knows, by id and name. */
#ifndef PGKEEP_COMMAND_H
#define PGKEEP_COMMAND_H

typedef enum
{
	CMD_NONE = 0,
	CMD_ARCHIVE_GET,
	CMD_ARCHIVE_PUSH,
	CMD_BACKUP,
	CMD_CHECK,
	CMD_EXPIRE,
	CMD_HELP,
	CMD_INFO,
	CMD_RESTORE,
	CMD_SERVER,
	CMD_SERVER_PING,
	CMD_STANZA_CREATE,
	CMD_STANZA_DELETE,
	CMD_STANZA_UPGRADE,
	CMD_START,
	CMD_STOP,
	CMD_VERIFY,
	CMD_VERSION,
	CMD__COUNT
} command_id;

/* Bit of a command in an option's command mask. */
#define CMDBIT(c) (1u << (c))

/* "archive-push" -> CMD_ARCHIVE_PUSH; CMD_NONE when unknown. */
command_id command_parse(const char *name);
const char *command_name(command_id cmd);
/* One line describing the command, for help. */
const char *command_summary(command_id cmd);
/* True for commands this release implements (the others are accepted names that exit with an error). */
int command_implemented(command_id cmd);

#endif
