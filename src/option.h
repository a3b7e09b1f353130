/*
 * option.h: the parsed configuration of this process.
 *
 * Options are declared once in option_table.h.  opt_parse() reads the
 * command line, then PGKEEP_<OPTION> environment variables, then the INI
 * file (sections [STANZA:COMMAND], [STANZA], [global:COMMAND], [global], in
 * that order of precedence); the first source that sets an option wins.  It
 * validates every value against the table and fills the defaults.  Afterwards
 * the opt_* getters read the result; they never fail.
 *
 * Indexed options (pg1-path .. pg8-path, repo1-path .. repo4-path) are
 * addressed with an index from 0; the plain getters read index 0 (pg1, repo1).
 */
#ifndef PGKEEP_OPTION_H
#define PGKEEP_OPTION_H

#include <stdbool.h>
#include <stdint.h>

#include "command.h"

typedef enum
{
	OT_STRING, OT_PATH, OT_BOOL, OT_INT, OT_SIZE, OT_TIME, OT_ENUM, OT_LIST, OT_HASH
} opt_type;

#define OF_SECRET 0x01          /* never printed, logged or shown in help values */
#define OF_CMDLINE_ONLY 0x02    /* not read from the configuration file */
#define OF_INDEXED_PG 0x04      /* pg1-NAME .. pg8-NAME */
#define OF_INDEXED_REPO 0x08    /* repo1-NAME .. repo4-NAME */
#define OF_NOT_YET 0x10         /* accepted for compatibility; a warning says it has no effect yet */

#define OPT_PG_MAX 8
#define OPT_REPO_MAX 4

typedef enum
{
#define OPT(id, name, type, def, allowed, cmds, flags, help) OPT_##id,
#include "option_table.h"
#undef OPT
	OPT__COUNT
} opt_id;

typedef struct opt_def
{
	const char *name;
	opt_type	type;
	const char *def;
	const char *allowed;
	uint32_t	commands;
	uint32_t	flags;
	const char *help;
} opt_def;

extern const opt_def opt_defs[OPT__COUNT];

/*
 * Parse argv (argv[0] is the program) and the environment (envp, NULL-terminated).
 * The command is the first non-option argument; further non-option arguments
 * are the command's parameters (opt_param).  Returns 0, or ERR_OPTION (bad
 * command line), ERR_CONFIG (bad file or environment) with error_msg() naming
 * the option, its source and what is wrong.  Warnings (unknown keys in the
 * file, options that have no effect yet) are logged with log_warn once each.
 */
int opt_parse(int argc, char **argv, char **envp);

/*
 * Parse the same command line and environment again, reading the
 * configuration file anew (the server's SIGHUP).  argv and envp given to
 * opt_parse must still be valid.  On failure the options are reset.
 */
int opt_reparse(void);

/* Free everything opt_parse allocated (for tests and leak checks). */
void opt_reset(void);

command_id opt_command(void);
int opt_param_count(void);
const char *opt_param(int i);

/* Whether the option has a value (given or defaulted). */
bool opt_has(opt_id id);
bool opt_has_idx(opt_id id, int idx);
/* Whether the value came from the command line, environment or file (not a default). */
bool opt_given(opt_id id);
/* Whether the value came from the command line. */
bool opt_on_cmdline(opt_id id);

/* Values; a string getter returns NULL when the option has no value. */
const char *opt_str(opt_id id);
const char *opt_str_idx(opt_id id, int idx);
bool opt_bool(opt_id id);
int64_t opt_int(opt_id id);          /* OT_INT, OT_SIZE (bytes), OT_TIME (seconds) */
int64_t opt_int_idx(opt_id id, int idx);
/* OT_LIST and OT_HASH: the values in the order given ("key=value" for OT_HASH). */
int opt_list_count(opt_id id);
const char *opt_list_get(opt_id id, int i);

/* Set or override a value programmatically (tests, and commands deriving options). */
void opt_set_str(opt_id id, int idx, const char *value);

/* Help text for "pgkeep help [COMMAND]" written to stdout. */
void opt_help(command_id cmd);
/* The option reference as Markdown (doc/options.md is generated from it). */
void opt_doc_markdown(void);

#endif
