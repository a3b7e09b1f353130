/*
 * main.c: parse the options, set up logging, dispatch to the command, and
 * turn its result into an exit code (doc/exit-codes.md).  Nothing else.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "error.h"
#include "fileio.h"
#include "log.h"
#include "mem.h"
#include "option.h"
#include "../archive/archive.h"
#include "../repo/backup.h"
#include "../repo/expire.h"
#include "../repo/info.h"
#include "../repo/server.h"
#include "../repo/stanza.h"
#include "../repo/verify.h"
#include "../restore/restore.h"

static int
cmd_version(void)
{
	printf("pgkeep %s\n", PACKAGE_VERSION);
	return 0;
}

static int
cmd_help(void)
{
	const char *topic = opt_param_count() > 0 ? opt_param(0) : NULL;

	if (topic && strcmp(topic, "markdown") == 0)
	{
		opt_doc_markdown();
		return 0;
	}
	command_id	cmd = topic ? command_parse(topic) : CMD_NONE;

	if (topic && cmd == CMD_NONE)
		return error_set(ERR_OPTION, "unknown command \"%s\"; run \"pgkeep help\" for the list", topic);
	opt_help(cmd);
	return 0;
}

/* Console, stderr and file logging from the log-* options. */
static int
setup_logging(void)
{
	command_id	cmd = opt_command();
	int			console = log_level_parse(opt_str(OPT_LOG_LEVEL_CONSOLE));
	int			err = log_level_parse(opt_str(OPT_LOG_LEVEL_STDERR));
	int			file = log_level_parse(opt_str(OPT_LOG_LEVEL_FILE));
	char	   *path = NULL;
	int			rc;

	if (cmd == CMD_HELP || cmd == CMD_VERSION)
		file = LOG_OFF;
	if (file != LOG_OFF)
	{
		const char *dir = opt_str(OPT_LOG_PATH);
		const char *stanza = opt_str(OPT_STANZA);

		if (fio_mkdir_p(dir, 0770) != 0)
		{
			/* Not fatal: the command still runs, logging to the console. */
			log_init(console, err, LOG_OFF, NULL, command_name(cmd));
			log_warn("%s; file logging is off", error_msg());
			error_clear();
			return 0;
		}
		path = xasprintf("%s/%s-%s.log", dir, stanza ? stanza : "all", command_name(cmd));
	}
	rc = log_init(console, err, file, path, command_name(cmd));
	/* stdout carries the JSON document alone. */
	if ((cmd == CMD_INFO || cmd == CMD_VERIFY) && strcmp(opt_str(OPT_OUTPUT), "json") == 0)
		log_console_to_stderr(true);
	if (rc)
	{
		log_warn("%s; file logging is off", error_msg());
		error_clear();
	}
	free(path);
	return 0;
}

static int
dispatch(command_id cmd)
{
	switch (cmd)
	{
		case CMD_VERSION:
			return cmd_version();
		case CMD_HELP:
			return cmd_help();
		case CMD_ARCHIVE_PUSH:
			return cmd_archive_push();
		case CMD_ARCHIVE_GET:
			return cmd_archive_get();
		case CMD_CHECK:
			return cmd_check();
		case CMD_STANZA_CREATE:
			return cmd_stanza_create();
		case CMD_BACKUP:
			return cmd_backup();
		case CMD_RESTORE:
			return cmd_restore();
		case CMD_EXPIRE:
			return cmd_expire();
		case CMD_INFO:
			return cmd_info();
		case CMD_VERIFY:
			return cmd_verify();
		case CMD_SERVER:
			return cmd_server();
		case CMD_SERVER_PING:
			return cmd_server_ping();
		default:
			return error_set(ERR_OPTION, "command %s is not available in this release of pgkeep", command_name(cmd));
	}
}

/*
 * Crash tests set PGKEEP_FAULT_KILL_AT=N: the process kills itself just
 * before its N-th call that changes a file; failure tests set
 * PGKEEP_FAULT_FSYNC_EIO=SUFFIX: fsync of a path ending in SUFFIX fails
 * with EIO (src/fileio.h).
 */
static void
fault_setup(void)
{
	const char *at = getenv("PGKEEP_FAULT_KILL_AT");
	const char *eio = getenv("PGKEEP_FAULT_FSYNC_EIO");
	char	   *end;
	unsigned long long n;

	if (at != NULL && (n = strtoull(at, &end, 10)) > 0 && *at != '\0' && *end == '\0')
		fio_sys_kill_at(n);
	/* After kill_at, which it chains to. */
	if (eio != NULL && *eio != '\0')
		fio_sys_fsync_fail(eio);
}

int
main(int argc, char **argv)
{
	extern char **environ;
	int			rc;

	signal(SIGPIPE, SIG_IGN);
	fault_setup();
	log_init(LOG_WARN, LOG_OFF, LOG_OFF, NULL, "pgkeep");
	rc = opt_parse(argc, argv, environ);
	if (rc)
	{
		fprintf(stderr, "ERROR: [%s] %s\n", error_name(rc), error_msg());
		return rc;
	}
	if (opt_bool(OPT_NEUTRAL_UMASK))
		umask(0027);
	setup_logging();
	log_debug("command %s begins", command_name(opt_command()));
	rc = dispatch(opt_command());
	if (rc)
	{
		/* archive-get's "not found" is the normal end of the archive, not an error. */
		if (rc == ERR_NOT_FOUND && opt_command() == CMD_ARCHIVE_GET)
			log_info("%s", error_msg());
		else
			log_error("[%s] %s", error_name(rc), error_msg());
	}
	log_debug("command %s ends with code %d", command_name(opt_command()), rc);
	log_close();
	opt_reset();
	return rc;
}
