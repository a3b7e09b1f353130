/* command.c: the names, one-line summaries and availability of pgkeep's commands. */
#include "command.h"

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

static const struct
{
	const char *name;
	const char *summary;
	bool		implemented;
} commands[CMD__COUNT] = {
	[CMD_ARCHIVE_GET] = {"archive-get", "Get a WAL segment from the repository (restore_command).", true},
	[CMD_ARCHIVE_PUSH] = {"archive-push", "Store a WAL segment in the repository (archive_command).", true},
	[CMD_BACKUP] = {"backup", "Back up a cluster.", true},
	[CMD_CHECK] = {"check", "Check the configuration, the repository and WAL archiving.", true},
	[CMD_EXPIRE] = {"expire", "Remove backups and WAL beyond the retention settings.", true},
	[CMD_HELP] = {"help", "Show the commands, or the options of one command.", true},
	[CMD_INFO] = {"info", "Show the stanzas and backups in the repository.", true},
	[CMD_RESTORE] = {"restore", "Restore a backup into a data directory.", true},
	[CMD_SERVER] = {"server", "Serve the repository to remote hosts.", true},
	[CMD_SERVER_PING] = {"server-ping", "Check that a repository server answers.", true},
	[CMD_STANZA_CREATE] = {"stanza-create", "Create the stanza of a cluster in the repository.", true},
	[CMD_STANZA_DELETE] = {"stanza-delete", "Delete a stanza and all its backups and WAL.", false},
	[CMD_STANZA_UPGRADE] = {"stanza-upgrade", "Update a stanza after a PostgreSQL major upgrade.", false},
	[CMD_START] = {"start", "Allow commands to run again after stop.", false},
	[CMD_STOP] = {"stop", "Prevent commands from running.", false},
	[CMD_VERIFY] = {"verify", "Verify the backups and WAL in the repository.", true},
	[CMD_VERSION] = {"version", "Show the version of pgkeep.", true},
};

static bool
command_valid(command_id cmd)
{
	return cmd > CMD_NONE && cmd < CMD__COUNT;
}

command_id
command_parse(const char *name)
{
	if (name == NULL)
		return CMD_NONE;
	for (int c = CMD_NONE + 1; c < CMD__COUNT; c++)
		if (strcmp(name, commands[c].name) == 0)
			return (command_id) c;
	return CMD_NONE;
}

/* "" for CMD_NONE and out-of-range ids, so callers can always print the result. */
const char *
command_name(command_id cmd)
{
	return command_valid(cmd) ? commands[cmd].name : "";
}

const char *
command_summary(command_id cmd)
{
	return command_valid(cmd) ? commands[cmd].summary : "";
}

int
command_implemented(command_id cmd)
{
	return command_valid(cmd) && commands[cmd].implemented;
}
