/* test_option.c: tests of commands, the INI reader, and option parsing from the command line, environment and file. */
#include "command.h"
#include "error.h"
#include "ini.h"
#include "log.h"
#include "mem.h"
#include "option.h"

#include "harness.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

static char scratch[] = "/tmp/pgkeep_test_option_XXXXXX";
static char *log_path;
static char *no_env[] = {NULL};

/* ---- helpers ---- */

static char *
scratch_path(const char *name)
{
	return xasprintf("%s/%s", scratch, name);
}

/* Write content to a file in the scratch directory; returns its path (caller frees). */
static char *
write_file(const char *name, const char *content)
{
	char	   *path = scratch_path(name);
	FILE	   *f = fopen(path, "w");

	if (f == NULL)
	{
		perror(path);
		exit(2);
	}
	fputs(content, f);
	fclose(f);
	return path;
}

static char *
read_file(const char *path)
{
	strbuf		sb = STRBUF_INIT;
	char		buf[4096];
	size_t		n;
	FILE	   *f = fopen(path, "r");

	if (f != NULL)
	{
		while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
			sb_appendn(&sb, buf, n);
		fclose(f);
	}
	return sb_detach(&sb);
}

static int
count_of(const char *s, const char *fragment)
{
	int			n = 0;

	for (const char *p = strstr(s, fragment); p != NULL; p = strstr(p + 1, fragment))
		n++;
	return n;
}

/* Parse "pgkeep ARG..." (NULL-terminated) with environment env. */
static int
parse_env(char **env, ...)
{
	char	   *argv[64] = {"pgkeep"};
	int			argc = 1;
	va_list		ap;

	va_start(ap, env);
	for (char *arg = va_arg(ap, char *); arg != NULL; arg = va_arg(ap, char *))
		argv[argc++] = arg;
	va_end(ap);
	return opt_parse(argc, argv, env);
}

#define PARSE(...) parse_env(no_env, __VA_ARGS__, NULL)
#define PARSE_ENV(env, ...) parse_env(env, __VA_ARGS__, NULL)

/* Warnings go to the log file; empty it before the part of a test that checks them. */
static void
log_clear(void)
{
	if (truncate(log_path, 0) != 0)
		perror(log_path);
}

static void
markdown(command_id cmd)
{
	opt_doc_markdown();
}

/* What fn(cmd) writes on stdout (caller frees). */
static char *
capture_stdout(void (*fn)(command_id), command_id cmd)
{
	char	   *path = scratch_path("stdout");
	int			saved = dup(STDOUT_FILENO);
	int			fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	char	   *out;

	fflush(stdout);
	dup2(fd, STDOUT_FILENO);
	close(fd);
	fn(cmd);
	fflush(stdout);
	dup2(saved, STDOUT_FILENO);
	close(saved);
	out = read_file(path);
	free(path);
	return out;
}

/* ---- commands ---- */

static void
test_commands(void)
{
	int			implemented = 0;

	for (int c = CMD_NONE + 1; c < CMD__COUNT; c++)
	{
		CHECK_EQ_INT(command_parse(command_name(c)), c);
		CHECK(strlen(command_summary(c)) > 10);
		implemented += command_implemented(c);
	}
	CHECK_EQ_STR(command_name(CMD_ARCHIVE_PUSH), "archive-push");
	CHECK_EQ_INT(command_parse("stanza-create"), CMD_STANZA_CREATE);
	CHECK_EQ_INT(command_parse("backups"), CMD_NONE);
	CHECK_EQ_INT(command_parse(NULL), CMD_NONE);
	CHECK_EQ_STR(command_name(CMD_NONE), "");
	CHECK_EQ_STR(command_name(CMD__COUNT), "");
	CHECK(command_implemented(CMD_RESTORE));
	CHECK(command_implemented(CMD_EXPIRE));
	CHECK(!command_implemented(CMD_STANZA_DELETE));
	CHECK(!command_implemented(CMD_NONE));
	CHECK_EQ_INT(implemented, 13);
	CHECK(command_implemented(CMD_SERVER));
	CHECK(command_implemented(CMD_SERVER_PING));
}

/* ---- INI ---- */

static int
collect(const char *section, const char *key, const char *value, int line, void *arg)
{
	sb_appendf(arg, "%s|%s|%s|%d\n", section, key, value, line);
	return 0;
}

static int
stop_at_first(const char *section, const char *key, const char *value, int line, void *arg)
{
	(*(int *) arg)++;
	return error_set(ERR_CHECK, "stopped");
}

static void
test_ini(void)
{
	strbuf		got = STRBUF_INIT;
	char	   *path = write_file("good.ini",
								  "# comment\n"
								  "  ; another comment\n"
								  "\n"
								  "[global]\n"
								  "  key1 =  value with spaces  \n"
								  "url=a=b=c\r\n"
								  "[ stanza:backup ]\n"
								  "empty=\n"
								  "last=no newline");
	int			calls = 0;

	CHECK_EQ_INT(ini_parse(path, collect, &got), 0);
	CHECK_EQ_STR(sb_str(&got),
				 "global|key1|value with spaces|5\n"
				 "global|url|a=b=c|6\n"
				 "stanza:backup|empty||8\n"
				 "stanza:backup|last|no newline|9\n");
	CHECK_EQ_INT(ini_parse(path, stop_at_first, &calls), ERR_CHECK);
	CHECK_EQ_INT(calls, 1);
	sb_free(&got);
	free(path);
}

static void
test_ini_errors(void)
{
	strbuf		got = STRBUF_INIT;
	char	   *long_line = xmalloc(INI_LINE_MAX + 16);
	char	   *path;

	path = write_file("bad.ini", "[global]\nkey=1\njust some text\n");
	CHECK_EQ_INT(ini_parse(path, collect, &got), ERR_CONFIG);
	CHECK_CONTAINS(error_msg(), path);
	CHECK_CONTAINS(error_msg(), "line 3");
	free(path);

	path = write_file("nosection.ini", "# header\nkey=1\n");
	CHECK_EQ_INT(ini_parse(path, collect, &got), ERR_CONFIG);
	CHECK_CONTAINS(error_msg(), "line 2: key \"key\" is not in a section");
	free(path);

	path = write_file("emptysection.ini", "[ ]\n");
	CHECK_EQ_INT(ini_parse(path, collect, &got), ERR_CONFIG);
	CHECK_CONTAINS(error_msg(), "line 1: empty section name");
	free(path);

	path = write_file("nokey.ini", "[global]\n = value\n");
	CHECK_EQ_INT(ini_parse(path, collect, &got), ERR_CONFIG);
	CHECK_CONTAINS(error_msg(), "line 2");
	free(path);

	/* The longest allowed line passes; one byte more is an error. */
	memset(long_line, 'x', INI_LINE_MAX);
	memcpy(long_line, "k=", 2);
	memcpy(long_line + INI_LINE_MAX, "\n", 2);
	{
		char	   *text = xasprintf("[global]\n%s[global]\nx%s", long_line, long_line);

		path = write_file("long.ini", text);
		free(text);
	}
	CHECK_EQ_INT(ini_parse(path, collect, &got), ERR_CONFIG);
	CHECK_CONTAINS(error_msg(), "line 4 is longer than 65536 bytes");
	CHECK_EQ_INT(count_of(sb_str(&got), "|k|"), 1);
	free(path);
	free(long_line);

	path = scratch_path("missing.ini");
	CHECK_EQ_INT(ini_parse(path, collect, &got), ERR_NOT_FOUND);
	CHECK_CONTAINS(error_msg(), path);
	free(path);

	CHECK_EQ_INT(ini_parse(scratch, collect, &got), ERR_FILE);
	CHECK_CONTAINS(error_msg(), scratch);
	sb_free(&got);
}

/* ---- the command line ---- */

static void
test_cmdline_forms(void)
{
	CHECK_EQ_INT(PARSE("--stanza=main", "--no-config", "backup", "--process-max", "4", "--start-fast",
					   "--no-delta", "--type", "full"), 0);
	CHECK_EQ_INT(opt_command(), CMD_BACKUP);
	CHECK_EQ_STR(opt_str(OPT_STANZA), "main");
	CHECK_EQ_INT(opt_int(OPT_PROCESS_MAX), 4);
	CHECK(opt_bool(OPT_START_FAST));
	CHECK(!opt_bool(OPT_DELTA));
	CHECK(opt_given(OPT_DELTA));
	CHECK_EQ_STR(opt_str(OPT_TYPE), "full");
	CHECK(opt_bool(OPT_ARCHIVE_CHECK));
	CHECK(!opt_given(OPT_ARCHIVE_CHECK));
	CHECK_EQ_INT(opt_param_count(), 0);
	CHECK(opt_param(0) == NULL);

	/* Every option of the command with a default has a value (but the negated config); others none. */
	for (int id = 0; id < OPT__COUNT; id++)
		if (opt_defs[id].def != NULL && id != OPT_CONFIG && opt_has(id) != ((opt_defs[id].commands & CMDBIT(CMD_BACKUP)) != 0))
			CHECK(!"an option has a default where it does not apply, or none where it does");
	CHECK(!opt_has(OPT_PG_PATH));
	CHECK(opt_str(OPT_PG_PATH) == NULL);

	CHECK_EQ_INT(PARSE("--no-config", "archive-push", "/pg/pg_wal/000000010000000000000001"), 0);
	CHECK_EQ_INT(opt_command(), CMD_ARCHIVE_PUSH);
	CHECK_EQ_INT(opt_param_count(), 1);
	CHECK_EQ_STR(opt_param(0), "/pg/pg_wal/000000010000000000000001");

	CHECK_EQ_INT(PARSE("archive-get", "000000010000000000000002", "--no-config", "--", "--odd-name"), 0);
	CHECK_EQ_INT(opt_command(), CMD_ARCHIVE_GET);
	CHECK_EQ_INT(opt_param_count(), 2);
	CHECK_EQ_STR(opt_param(0), "000000010000000000000002");
	CHECK_EQ_STR(opt_param(1), "--odd-name");
	opt_reset();
	CHECK_EQ_INT(opt_command(), CMD_NONE);
	CHECK_EQ_INT(opt_param_count(), 0);
}

static void
test_cmdline_errors(void)
{
	CHECK_EQ_INT(PARSE("--no-config"), ERR_OPTION);
	CHECK_CONTAINS(error_msg(), "no command given");
	CHECK_EQ_INT(PARSE("bakup"), ERR_OPTION);
	CHECK_CONTAINS(error_msg(), "unknown command 'bakup'");
	CHECK_EQ_INT(PARSE("backup", "--foo"), ERR_OPTION);
	CHECK_CONTAINS(error_msg(), "unknown option '--foo'");
	CHECK_EQ_INT(PARSE("backup", "-x"), ERR_OPTION);
	CHECK_CONTAINS(error_msg(), "unknown option '-x'");
	CHECK_EQ_INT(PARSE("backup", "--stanza"), ERR_OPTION);
	CHECK_CONTAINS(error_msg(), "option '--stanza' requires a value");
	CHECK_EQ_INT(PARSE("backup", "--stanza", "--delta"), ERR_OPTION);
	CHECK_CONTAINS(error_msg(), "option '--stanza' requires a value");
	CHECK_EQ_INT(PARSE("archive-push", "--start-fast", "/x"), ERR_OPTION);
	CHECK_CONTAINS(error_msg(), "option '--start-fast' does not apply to command 'archive-push'");
	/* Before the command too. */
	CHECK_EQ_INT(PARSE("--recovery-option=a=b", "backup"), ERR_OPTION);
	CHECK_CONTAINS(error_msg(), "option '--recovery-option' does not apply to command 'backup'");
	CHECK_EQ_INT(PARSE("backup", "--process-max=2", "--process-max=3"), ERR_OPTION);
	CHECK_CONTAINS(error_msg(), "option '--process-max' is set more than once");
	CHECK_EQ_INT(PARSE("backup", "--delta", "--no-delta"), ERR_OPTION);
	CHECK_CONTAINS(error_msg(), "option '--no-delta' is set more than once");
	CHECK_EQ_INT(PARSE("backup", "--no-stanza"), ERR_OPTION);
	CHECK_CONTAINS(error_msg(), "'--no-stanza'");
	CHECK_EQ_INT(PARSE("backup", "--reset-delta=y"), ERR_OPTION);
	CHECK_CONTAINS(error_msg(), "option '--reset-delta' does not take a value");
	CHECK_EQ_INT(PARSE("backup", "--help=yes"), ERR_OPTION);
	CHECK_CONTAINS(error_msg(), "'--help'");
	/* A failed parse leaves nothing behind. */
	CHECK_EQ_INT(opt_command(), CMD_NONE);
	CHECK(!opt_has(OPT_PROCESS_MAX));
}

static void
test_help_version(void)
{
	char	   *env[] = {"PGKEEP_PROCESS_MAX=abc", NULL};
	char	   *out;

	CHECK_EQ_INT(PARSE("--help"), 0);
	CHECK_EQ_INT(opt_command(), CMD_HELP);
	CHECK_EQ_INT(opt_param_count(), 0);
	CHECK_EQ_INT(PARSE("backup", "--help", "--start-fast"), 0);
	CHECK_EQ_INT(opt_command(), CMD_HELP);
	CHECK_EQ_STR(opt_param(0), "backup");
	CHECK_EQ_INT(PARSE("help", "restore"), 0);
	CHECK_EQ_STR(opt_param(0), "restore");
	CHECK_EQ_INT(PARSE("help", "markdown"), 0);
	CHECK_EQ_INT(PARSE("help", "restroe"), ERR_OPTION);
	CHECK_CONTAINS(error_msg(), "unknown command 'restroe'");
	CHECK_EQ_INT(PARSE("help", "backup", "restore"), ERR_OPTION);
	CHECK_EQ_INT(PARSE("--version"), 0);
	CHECK_EQ_INT(opt_command(), CMD_VERSION);
	/* help and version do not read a broken environment or configuration file. */
	CHECK_EQ_INT(PARSE_ENV(env, "version", "--config=/nonexistent/pgkeep.conf"), 0);
	CHECK_EQ_INT(PARSE_ENV(env, "backup", "--no-config"), ERR_CONFIG);

	out = capture_stdout(opt_help, CMD_BACKUP);
	CHECK_CONTAINS(out, "Usage: pgkeep [options] backup");
	CHECK_CONTAINS(out, "--start-fast (boolean, default n)");
	CHECK_CONTAINS(out, "--pgN-path (path)");
	CHECK_CONTAINS(out, "--buffer-size (size, default 1MiB)");
	CHECK_CONTAINS(out, "Allowed: an integer from 1 to 64.");
	CHECK_CONTAINS(out, "Accepted, no effect yet.");
	CHECK(strstr(out, "--recovery-option") == NULL);
	CHECK(strstr(out, "--archive-check") != NULL && strstr(out, "--archive-check") < strstr(out, "--buffer-size"));
	free(out);

	out = capture_stdout(opt_help, CMD_NONE);
	CHECK_CONTAINS(out, "Usage: pgkeep [options] COMMAND [params]");
	CHECK_CONTAINS(out, "archive-push");
	CHECK_CONTAINS(out, "(not in this release)");
	free(out);

	out = capture_stdout(markdown, CMD_NONE);
	CHECK_CONTAINS(out, "\n## Repository\n");
	CHECK_CONTAINS(out, "\n## PostgreSQL\n");
	CHECK_CONTAINS(out, "| `--process-max` | integer | `1` | an integer from 1 to 64 | all |");
	CHECK_CONTAINS(out, "| `--repoN-path` | path | `/var/lib/pgkeep` |");
	CHECK_CONTAINS(out, "| `--compress-type` | enum | `zst` | none, zst, lz4, gz or bz2 |");
	CHECK_CONTAINS(out, "| `--start-fast` | boolean | `n` |  | backup |");
	CHECK_EQ_INT(count_of(out, "| `--"), OPT__COUNT);
	CHECK(strstr(out, "## Logging") < strstr(out, "`--log-path`") && strstr(out, "`--log-path`") < strstr(out, "## Repository"));
	free(out);
	opt_reset();
}

/* ---- types ---- */

/* Parse one command-line option for command cmd; returns the parse result. */
static int
parse_one(const char *cmd, const char *option)
{
	return PARSE("--no-config", cmd, option);
}

static void
test_types_valid(void)
{
	static const struct
	{
		const char *option;
		opt_id		id;
		int64_t		expect;
	}			cases[] = {
		{"--delta=yes", OPT_DELTA, 1}, {"--delta=false", OPT_DELTA, 0}, {"--delta=Y", OPT_DELTA, 1},
		{"--process-max=64", OPT_PROCESS_MAX, 64}, {"--compress-level=-5", OPT_COMPRESS_LEVEL, -5},
		{"--buffer-size=1024", OPT_BUFFER_SIZE, 1024}, {"--buffer-size=64KB", OPT_BUFFER_SIZE, 65536},
		{"--buffer-size=64kib", OPT_BUFFER_SIZE, 65536}, {"--buffer-size=1MB", OPT_BUFFER_SIZE, 1048576},
		{"--buffer-size=1MiB", OPT_BUFFER_SIZE, 1048576}, {"--buffer-size=1GB", OPT_BUFFER_SIZE, 1073741824},
		{"--buffer-size=2gib", OPT_BUFFER_SIZE, 2147483648LL},
		{"--archive-timeout=60", OPT_ARCHIVE_TIMEOUT, 60}, {"--archive-timeout=1.5", OPT_ARCHIVE_TIMEOUT, 2},
		{"--archive-timeout=2.000", OPT_ARCHIVE_TIMEOUT, 2}, {"--archive-timeout=0.01", OPT_ARCHIVE_TIMEOUT, 1},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		CHECK_EQ_INT(parse_one("backup", cases[i].option), 0);
		CHECK_EQ_INT(opt_int(cases[i].id), cases[i].expect);
	}
	CHECK_EQ_INT(parse_one("backup", "--compress-type=lz4"), 0);
	CHECK_EQ_STR(opt_str(OPT_COMPRESS_TYPE), "lz4");
	CHECK_EQ_INT(parse_one("restore", "--recovery-option=primary_conninfo=host=a port=5"), 0);
	CHECK_EQ_STR(opt_list_get(OPT_RECOVERY_OPTION, 0), "primary_conninfo=host=a port=5");
	CHECK_EQ_INT(parse_one("backup", "--repo2-path=/srv/repo"), 0);
	CHECK_EQ_STR(opt_str_idx(OPT_REPO_PATH, 1), "/srv/repo");
	opt_reset();
}

static void
test_types_invalid(void)
{
	static const struct
	{
		const char *command;
		const char *option;
		const char *message;
	}			cases[] = {
		{"backup", "--delta=maybe", "invalid value \"maybe\" for option '--delta': expected y or n"},
		{"backup", "--process-max=65", "invalid value \"65\" for option '--process-max': expected an integer from 1 to 64"},
		{"backup", "--process-max=0", "expected an integer from 1 to 64"},
		{"backup", "--process-max=3x", "invalid value \"3x\""},
		{"backup", "--compress-level=-6", "expected an integer from -5 to 19"},
		{"backup", "--buffer-size=12XB", "invalid value \"12XB\" for option '--buffer-size': expected a size"},
		{"backup", "--buffer-size=KB", "invalid value \"KB\""},
		{"backup", "--buffer-size=-1", "invalid value \"-1\""},
		{"backup", "--buffer-size=99999999999TB", "invalid value \"99999999999TB\""},
		{"backup", "--archive-timeout=1.", "invalid value \"1.\" for option '--archive-timeout': expected seconds"},
		{"backup", "--archive-timeout=-1", "invalid value \"-1\""},
		{"backup", "--archive-timeout=1m", "invalid value \"1m\""},
		{"backup", "--compress-type=LZ4", "expected none, zst, lz4, gz or bz2"},
		{"restore", "--recovery-option=novalue", "invalid value \"novalue\" for option '--recovery-option': expected key=value"},
		{"restore", "--recovery-option==x", "expected key=value"},
		{"backup", "--repo1-path=relative/repo", "invalid value \"relative/repo\" for option '--repo1-path': expected an absolute path"},
		{"backup", "--stanza=", "invalid value \"\" for option '--stanza'"},
		{"backup", "--config=pgkeep.conf", "for option '--config': expected an absolute path"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		CHECK_EQ_INT(parse_one(cases[i].command, cases[i].option), ERR_OPTION);
		CHECK_CONTAINS(error_msg(), cases[i].message);
	}
	/* A secret is named, never shown. */
	CHECK_EQ_INT(PARSE("backup", "--repo1-cipher-pass=hunter2", "--repo1-cipher-pass=hunter3"), ERR_OPTION);
	CHECK_CONTAINS(error_msg(), "'--repo1-cipher-pass'");
	CHECK(strstr(error_msg(), "hunter") == NULL);
}

static void
test_types_file_env(void)
{
	char	   *path = write_file("badvalue.conf", "[global]\n\nprocess-max=100\n");
	char	   *config = xasprintf("--config=%s", path);
	char	   *env_int[] = {"PGKEEP_PROCESS_MAX=abc", NULL};
	char	   *env_bool[] = {"PGKEEP_DELTA=perhaps", NULL};
	char	   *env_dup[] = {"PGKEEP_PG_PATH=/a", "PGKEEP_PG1_PATH=/b", NULL};

	CHECK_EQ_INT(PARSE(config, "backup"), ERR_CONFIG);
	CHECK_CONTAINS(error_msg(), path);
	CHECK_CONTAINS(error_msg(), "line 3: invalid value \"100\" for option \"process-max\": expected an integer from 1 to 64");
	/* Checked even where the command line overrides it. */
	CHECK_EQ_INT(PARSE(config, "backup", "--process-max=2"), ERR_CONFIG);

	CHECK_EQ_INT(PARSE_ENV(env_int, "--no-config", "backup"), ERR_CONFIG);
	CHECK_CONTAINS(error_msg(), "invalid value \"abc\" for environment variable PGKEEP_PROCESS_MAX");
	CHECK_EQ_INT(PARSE_ENV(env_bool, "--no-config", "backup"), ERR_CONFIG);
	CHECK_CONTAINS(error_msg(), "PGKEEP_DELTA");
	CHECK_EQ_INT(PARSE_ENV(env_dup, "--no-config", "backup"), ERR_CONFIG);
	CHECK_CONTAINS(error_msg(), "environment variable PGKEEP_PG1_PATH is set more than once");
	free(config);
	free(path);

	path = write_file("dup.conf", "[main]\ndelta=y\n[global]\ndelta=n\n[main]\ndelta=n\n");
	config = xasprintf("--config=%s", path);
	CHECK_EQ_INT(PARSE(config, "--stanza=main", "backup"), ERR_CONFIG);
	CHECK_CONTAINS(error_msg(), "line 6: option \"delta\" is set more than once");
	free(config);
	free(path);
}

/* ---- sources ---- */

static void
test_precedence(void)
{
	/* Sections out of order: precedence comes from the section, not its place. */
	char	   *path = write_file("precedence.conf",
								  "[main:backup]\nprocess-max=4\n"
								  "[other]\nprocess-max=6\n"
								  "[main]\nprocess-max=3\n"
								  "[main:restore]\nprocess-max=5\n"
								  "[global:backup]\nprocess-max=2\n"
								  "[global]\nprocess-max=1\nbuffer-size=64KiB\n");
	char	   *config = xasprintf("--config=%s", path);
	char	   *env[] = {"PGKEEP_PROCESS_MAX=7", NULL};
	char	   *env_stanza[] = {"PGKEEP_STANZA=main", NULL};
	char	   *env_config[] = {NULL, NULL};

	CHECK_EQ_INT(PARSE(config, "--stanza=main", "backup"), 0);
	CHECK_EQ_INT(opt_int(OPT_PROCESS_MAX), 4);
	CHECK(opt_given(OPT_PROCESS_MAX));
	CHECK_EQ_INT(opt_int(OPT_BUFFER_SIZE), 65536);
	CHECK_EQ_INT(PARSE(config, "--stanza=main", "check"), 0);
	CHECK_EQ_INT(opt_int(OPT_PROCESS_MAX), 3);
	CHECK_EQ_INT(PARSE(config, "--stanza=other", "backup"), 0);
	CHECK_EQ_INT(opt_int(OPT_PROCESS_MAX), 6);
	CHECK_EQ_INT(PARSE(config, "backup"), 0);
	CHECK_EQ_INT(opt_int(OPT_PROCESS_MAX), 2);
	CHECK_EQ_INT(PARSE(config, "info"), 0);
	CHECK_EQ_INT(opt_int(OPT_PROCESS_MAX), 1);
	CHECK_EQ_INT(PARSE_ENV(env_stanza, config, "backup"), 0);
	CHECK_EQ_INT(opt_int(OPT_PROCESS_MAX), 4);
	CHECK_EQ_INT(PARSE_ENV(env, config, "--stanza=main", "backup"), 0);
	CHECK_EQ_INT(opt_int(OPT_PROCESS_MAX), 7);
	CHECK_EQ_INT(PARSE_ENV(env, config, "--stanza=main", "backup", "--process-max=8"), 0);
	CHECK_EQ_INT(opt_int(OPT_PROCESS_MAX), 8);
	/* --reset- ignores environment and file alike. */
	CHECK_EQ_INT(PARSE_ENV(env, config, "--stanza=main", "backup", "--reset-process-max"), 0);
	CHECK_EQ_INT(opt_int(OPT_PROCESS_MAX), 1);
	CHECK(!opt_given(OPT_PROCESS_MAX));
	CHECK_EQ_INT(opt_int(OPT_BUFFER_SIZE), 65536);

	/* The configuration file named in the environment; --no-config reads none. */
	env_config[0] = xasprintf("PGKEEP_CONFIG=%s", path);
	CHECK_EQ_INT(PARSE_ENV(env_config, "backup"), 0);
	CHECK_EQ_INT(opt_int(OPT_PROCESS_MAX), 2);
	CHECK_EQ_INT(PARSE_ENV(env_config, "--no-config", "backup"), 0);
	CHECK_EQ_INT(opt_int(OPT_PROCESS_MAX), 1);
	CHECK(!opt_has(OPT_CONFIG));
	free(env_config[0]);
	free(config);
	free(path);
	opt_reset();
}

static void
test_config_file_missing(void)
{
	char	   *path = scratch_path("absent.conf");
	char	   *config = xasprintf("--config=%s", path);
	char	   *env[] = {NULL, NULL};

	CHECK_EQ_INT(PARSE(config, "backup"), ERR_CONFIG);
	CHECK_CONTAINS(error_msg(), path);
	env[0] = xasprintf("PGKEEP_CONFIG=%s", path);
	CHECK_EQ_INT(PARSE_ENV(env, "backup"), ERR_CONFIG);
	CHECK_CONTAINS(error_msg(), "does not exist");
	/* The default file may be missing. */
	if (access(opt_defs[OPT_CONFIG].def, F_OK) != 0)
	{
		CHECK_EQ_INT(PARSE("backup"), 0);
		CHECK_EQ_STR(opt_str(OPT_CONFIG), "/etc/pgkeep/pgkeep.conf");
		CHECK_EQ_INT(PARSE_ENV(env, "--reset-config", "backup"), 0);
	}
	free(env[0]);
	free(config);
	free(path);

	path = write_file("syntax.conf", "[global]\nprocess-max 4\n");
	config = xasprintf("--config=%s", path);
	CHECK_EQ_INT(PARSE(config, "backup"), ERR_CONFIG);
	CHECK_CONTAINS(error_msg(), "line 2");
	free(config);
	free(path);
	opt_reset();
}

static void
test_indexed(void)
{
	char	   *env[] = {"PGKEEP_PG2_PORT=5433", "PGKEEP_REPO1_PATH=/env/repo", NULL};

	CHECK_EQ_INT(PARSE_ENV(env, "--no-config", "backup", "--pg2-path=/b", "--pg-path=/a", "--repo3-path=/r3"), 0);
	CHECK_EQ_STR(opt_str(OPT_PG_PATH), "/a");
	CHECK_EQ_STR(opt_str_idx(OPT_PG_PATH, 1), "/b");
	CHECK(opt_str_idx(OPT_PG_PATH, 2) == NULL);
	CHECK_EQ_INT(opt_int_idx(OPT_PG_PORT, 0), 5432);
	CHECK_EQ_INT(opt_int_idx(OPT_PG_PORT, 1), 5433);
	/* Defaults fill only the indexes in use. */
	CHECK(!opt_has_idx(OPT_PG_PORT, 2));
	CHECK_EQ_STR(opt_str_idx(OPT_REPO_PATH, 0), "/env/repo");
	CHECK(!opt_has_idx(OPT_REPO_PATH, 1));
	CHECK_EQ_STR(opt_str_idx(OPT_REPO_PATH, 2), "/r3");
	CHECK_EQ_STR(opt_str_idx(OPT_REPO_TYPE, 2), "posix");
	CHECK(!opt_has_idx(OPT_REPO_TYPE, 1));
	/* Out-of-range indexes read as unset. */
	CHECK(opt_str_idx(OPT_PG_PATH, OPT_PG_MAX) == NULL);
	CHECK(opt_str_idx(OPT_REPO_PATH, OPT_REPO_MAX) == NULL);
	CHECK(opt_str_idx(OPT_PG_PATH, -1) == NULL);
	CHECK(!opt_has_idx(OPT_PROCESS_MAX, 1));
	CHECK_EQ_INT(opt_int_idx(OPT_PROCESS_MAX, 1), 0);

	CHECK_EQ_INT(PARSE("--no-config", "backup", "--pg8-path=/p8", "--repo4-path=/r4"), 0);
	CHECK_EQ_STR(opt_str_idx(OPT_PG_PATH, 7), "/p8");
	CHECK_EQ_STR(opt_str_idx(OPT_REPO_PATH, 3), "/r4");
	CHECK_EQ_INT(PARSE("backup", "--pg9-path=/x"), ERR_OPTION);
	CHECK_CONTAINS(error_msg(), "unknown option '--pg9-path'");
	CHECK_EQ_INT(PARSE("backup", "--repo5-path=/x"), ERR_OPTION);
	CHECK_CONTAINS(error_msg(), "unknown option '--repo5-path'");
	CHECK_EQ_INT(PARSE("backup", "--pg0-path=/x"), ERR_OPTION);
	CHECK_EQ_INT(PARSE("backup", "--pg01-path=/x"), ERR_OPTION);
	CHECK_EQ_INT(PARSE("backup", "--pg1-process-max=1"), ERR_OPTION);
	CHECK_EQ_INT(PARSE("backup", "--pg1-path=/a", "--pg-path=/b"), ERR_OPTION);
	CHECK_CONTAINS(error_msg(), "option '--pg-path' is set more than once");
	opt_reset();
}

static void
test_lists(void)
{
	char	   *path = write_file("lists.conf",
								  "[global]\nrecovery-option=a=1\n"
								  "[main]\nrecovery-option=b=2\n"
								  "[global:restore]\nrecovery-option=d=4\n"
								  "[main]\nrecovery-option=c=3\n");
	char	   *config = xasprintf("--config=%s", path);
	char	   *env[] = {"PGKEEP_RECOVERY_OPTION=e=5:f=6", NULL};
	char	   *env_bad[] = {"PGKEEP_RECOVERY_OPTION=e=5:", NULL};

	CHECK_EQ_INT(PARSE(config, "--stanza=main", "restore"), 0);
	CHECK_EQ_INT(opt_list_count(OPT_RECOVERY_OPTION), 2);
	CHECK_EQ_STR(opt_list_get(OPT_RECOVERY_OPTION, 0), "b=2");
	CHECK_EQ_STR(opt_list_get(OPT_RECOVERY_OPTION, 1), "c=3");
	CHECK(opt_list_get(OPT_RECOVERY_OPTION, 2) == NULL);
	CHECK_EQ_INT(PARSE(config, "restore"), 0);
	CHECK_EQ_INT(opt_list_count(OPT_RECOVERY_OPTION), 1);
	CHECK_EQ_STR(opt_list_get(OPT_RECOVERY_OPTION, 0), "d=4");
	CHECK_EQ_INT(PARSE_ENV(env, config, "--stanza=main", "restore"), 0);
	CHECK_EQ_INT(opt_list_count(OPT_RECOVERY_OPTION), 2);
	CHECK_EQ_STR(opt_list_get(OPT_RECOVERY_OPTION, 0), "e=5");
	CHECK_EQ_STR(opt_list_get(OPT_RECOVERY_OPTION, 1), "f=6");
	CHECK_EQ_INT(PARSE_ENV(env, config, "--stanza=main", "restore", "--recovery-option", "x=1",
						   "--recovery-option=y=2"), 0);
	CHECK_EQ_INT(opt_list_count(OPT_RECOVERY_OPTION), 2);
	CHECK_EQ_STR(opt_list_get(OPT_RECOVERY_OPTION, 0), "x=1");
	CHECK_EQ_STR(opt_list_get(OPT_RECOVERY_OPTION, 1), "y=2");
	CHECK_EQ_INT(PARSE_ENV(env, config, "--stanza=main", "restore", "--reset-recovery-option"), 0);
	CHECK_EQ_INT(opt_list_count(OPT_RECOVERY_OPTION), 0);
	CHECK_EQ_INT(PARSE_ENV(env_bad, "--no-config", "restore"), ERR_CONFIG);
	CHECK_CONTAINS(error_msg(), "PGKEEP_RECOVERY_OPTION");
	free(config);
	free(path);
	opt_reset();
}

static void
test_warnings(void)
{
	char	   *path = write_file("warn.conf",
								  "[global]\n"
								  "bogus-key=1\n"
								  "stanza=elsewhere\n"
								  "bogus-key=2\n"
								  "recovery-option=not a hash\n"
								  "repo1-host=backup.example.net\n"
								  "[main]\n"
								  "repo2-host=other.example.net\n"
								  "stanza=again\n"
								  "[global:bakcup]\n"
								  "delta=y\n"
								  "[global:restore]\n"
								  "process-max=abc\n"
								  "[other]\n"
								  "process-max=abc\n");
	char	   *config = xasprintf("--config=%s", path);
	char	   *env[] = {"PGKEEP_BOGUS=1", "PGKEEP_repo1_path=/x", "PGKEEP_REPO1_CIPHER_PASS=s3cr3tvalue",
		"PGKEEP_START_FAST=y", "OTHER=1", NULL};
	char	   *log;

	log_clear();
	CHECK_EQ_INT(PARSE_ENV(env, config, "--stanza=main", "backup"), 0);
	log = read_file(log_path);
	CHECK_EQ_INT(count_of(log, "unknown option \"bogus-key\" is ignored"), 1);
	CHECK_CONTAINS(log, "line 2: unknown option \"bogus-key\"");
	CHECK_EQ_INT(count_of(log, "option \"stanza\" is valid only on the command line and is ignored"), 1);
	/* repo1-host works (the remote driver): no warning about it. */
	CHECK_EQ_INT(count_of(log, "option \"repo1-host\" is accepted but has no effect yet"), 0);
	CHECK(strstr(log, "repo2-host") == NULL);
	CHECK_CONTAINS(log, "section \"[global:bakcup]\" names an unknown command");
	CHECK_EQ_INT(count_of(log, "unknown environment variable PGKEEP_BOGUS is ignored"), 1);
	CHECK_CONTAINS(log, "unknown environment variable PGKEEP_repo1_path");
	CHECK_CONTAINS(log, "option \"repo1-cipher-pass\" is accepted but has no effect yet");
	CHECK(strstr(log, "s3cr3tvalue") == NULL);
	CHECK(strstr(log, "OTHER") == NULL);
	CHECK(strstr(log, "recovery-option") == NULL);
	CHECK_EQ_STR(opt_str(OPT_STANZA), "main");
	CHECK_EQ_STR(opt_str_idx(OPT_REPO_HOST, 1), "other.example.net");
	CHECK(!opt_bool(OPT_DELTA));
	CHECK_EQ_INT(opt_int(OPT_PROCESS_MAX), 1);
	free(log);

	/* An option of another command in the environment is ignored, silently. */
	log_clear();
	CHECK_EQ_INT(PARSE_ENV(env + 3, "--no-config", "archive-push", "/x"), 0);
	CHECK(!opt_has(OPT_START_FAST));
	log = read_file(log_path);
	CHECK_EQ_STR(log, "");
	free(log);
	free(config);
	free(path);
	opt_reset();
}

static void
test_set_str(void)
{
	CHECK_EQ_INT(PARSE("--no-config", "backup"), 0);
	CHECK(!opt_has(OPT_COMPRESS_LEVEL));
	opt_set_str(OPT_COMPRESS_LEVEL, 0, "3");
	CHECK_EQ_INT(opt_int(OPT_COMPRESS_LEVEL), 3);
	CHECK(!opt_given(OPT_COMPRESS_LEVEL));
	opt_set_str(OPT_PG_PATH, 1, "/pg2");
	CHECK_EQ_STR(opt_str_idx(OPT_PG_PATH, 1), "/pg2");
	opt_set_str(OPT_DELTA, 0, "y");
	CHECK(opt_bool(OPT_DELTA));
	opt_set_str(OPT_PG_PATH, 1, NULL);
	CHECK(!opt_has_idx(OPT_PG_PATH, 1));
	opt_set_str(OPT_PG_PATH, OPT_PG_MAX, "/ignored");
	CHECK(opt_str_idx(OPT_PG_PATH, OPT_PG_MAX) == NULL);
	opt_reset();
}

/* ---- the two sample files of a Patroni setup ---- */

static void
test_sample_backup_node(void)
{
	char	   *path = write_file("backup-node.conf",
								  "[global]\n"
								  "repo1-path=/pg_backup/pg_backup_patroni\n"
								  "repo1-retention-full=14\n"
								  "repo1-retention-full-type=time\n"
								  "repo1-host-user=pgbackrest\n"
								  "archive-check=n\n"
								  "process-max=1\n"
								  "log-level-console=info\n"
								  "log-path=/pg_backup/pgbackrest/log\n"
								  "log-level-file=debug\n"
								  "start-fast=y\n"
								  "delta=y\n"
								  "compress-level=3\n"
								  "\n"
								  "[pg_backup]\n"
								  "pg1-host=pg1.example.net\n"
								  "pg1-host-user=postgres\n"
								  "pg1-database=postgres\n"
								  "pg1-path=/pg_data/data\n"
								  "pg1-port=5432\n");
	char	   *config = xasprintf("--config=%s", path);
	char	   *log;

	log_clear();
	CHECK_EQ_INT(PARSE(config, "--stanza=pg_backup", "backup"), 0);
	CHECK_EQ_STR(opt_str_idx(OPT_REPO_PATH, 0), "/pg_backup/pg_backup_patroni");
	CHECK_EQ_INT(opt_int(OPT_REPO_RETENTION_FULL), 14);
	CHECK_EQ_STR(opt_str(OPT_REPO_RETENTION_FULL_TYPE), "time");
	CHECK(!opt_bool(OPT_ARCHIVE_CHECK));
	CHECK_EQ_INT(opt_int(OPT_PROCESS_MAX), 1);
	CHECK_EQ_STR(opt_str(OPT_LOG_LEVEL_CONSOLE), "info");
	CHECK_EQ_STR(opt_str(OPT_LOG_LEVEL_FILE), "debug");
	CHECK_EQ_STR(opt_str(OPT_LOG_PATH), "/pg_backup/pgbackrest/log");
	CHECK(opt_bool(OPT_START_FAST));
	CHECK(opt_bool(OPT_DELTA));
	CHECK_EQ_INT(opt_int(OPT_COMPRESS_LEVEL), 3);
	CHECK_EQ_STR(opt_str(OPT_PG_PATH), "/pg_data/data");
	CHECK_EQ_INT(opt_int(OPT_PG_PORT), 5432);
	CHECK(opt_given(OPT_PG_PORT));
	CHECK_EQ_STR(opt_str(OPT_PG_DATABASE), "postgres");
	CHECK_EQ_STR(opt_str(OPT_PG_HOST), "pg1.example.net");
	CHECK(!opt_has_idx(OPT_PG_PATH, 1));
	log = read_file(log_path);
	CHECK(strstr(log, "unknown") == NULL);
	CHECK_CONTAINS(log, "option \"pg1-host\" is accepted but has no effect yet");
	CHECK_CONTAINS(log, "option \"repo1-host-user\" is accepted but has no effect yet");
	free(log);
	free(config);
	free(path);
	opt_reset();
}

static void
test_sample_pg_node(void)
{
	char	   *path = write_file("pg-node.conf",
								  "[global]\n"
								  "repo1-host=backup.example.net\n"
								  "repo1-host-user=pgbackrest\n"
								  "log-level-console=info\n"
								  "log-level-file=debug\n"
								  "delta=y\n"
								  "\n"
								  "[pg_backup]\n"
								  "pg1-path=/pg_data/data\n"
								  "recovery-option=primary_conninfo=host=vip.example.net user=replication\n");
	char	   *config = xasprintf("--config=%s", path);

	CHECK_EQ_INT(PARSE(config, "--stanza=pg_backup", "archive-push", "/tmp/x"), 0);
	CHECK_EQ_INT(opt_command(), CMD_ARCHIVE_PUSH);
	CHECK_EQ_STR(opt_param(0), "/tmp/x");
	CHECK_EQ_STR(opt_str(OPT_PG_PATH), "/pg_data/data");
	CHECK_EQ_STR(opt_str(OPT_REPO_HOST), "backup.example.net");
	CHECK_EQ_STR(opt_str(OPT_LOG_LEVEL_CONSOLE), "info");
	CHECK(!opt_has(OPT_DELTA));
	CHECK_EQ_INT(opt_list_count(OPT_RECOVERY_OPTION), 0);

	CHECK_EQ_INT(PARSE(config, "--stanza=pg_backup", "restore"), 0);
	CHECK(opt_bool(OPT_DELTA));
	CHECK_EQ_INT(opt_list_count(OPT_RECOVERY_OPTION), 1);
	CHECK_EQ_STR(opt_list_get(OPT_RECOVERY_OPTION, 0), "primary_conninfo=host=vip.example.net user=replication");
	free(config);
	free(path);
	opt_reset();
}

static void
remove_scratch(void)
{
	DIR		   *dir = opendir(scratch);
	struct dirent *de;

	while (dir != NULL && (de = readdir(dir)) != NULL)
	{
		char	   *path;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		path = scratch_path(de->d_name);
		unlink(path);
		free(path);
	}
	if (dir != NULL)
		closedir(dir);
	rmdir(scratch);
}

int
main(void)
{
	int			rc;

	if (mkdtemp(scratch) == NULL)
	{
		perror("mkdtemp");
		return 2;
	}
	log_path = scratch_path("warnings.log");
	log_init(LOG_OFF, LOG_OFF, LOG_WARN, log_path, "test");

	RUN(test_commands);
	RUN(test_ini);
	RUN(test_ini_errors);
	RUN(test_cmdline_forms);
	RUN(test_cmdline_errors);
	RUN(test_help_version);
	RUN(test_types_valid);
	RUN(test_types_invalid);
	RUN(test_types_file_env);
	RUN(test_precedence);
	RUN(test_config_file_missing);
	RUN(test_indexed);
	RUN(test_lists);
	RUN(test_warnings);
	RUN(test_set_str);
	RUN(test_sample_backup_node);
	RUN(test_sample_pg_node);

	opt_reset();
	log_close();
	remove_scratch();
	free(log_path);
	rc = harness_done();
	return rc;
}
