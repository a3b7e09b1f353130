/*
 * option.c: the parsed configuration of this process (see option.h), and the
 * help and Markdown reference written from the same option table.
 *
 * Every option has one value slot per index.  A slot remembers the
 * precedence level of the source that set it: a value from a higher level
 * replaces it, one from a lower level is ignored, and one from the same level
 * is appended (lists) or is an error (scalars).  The file's sections are
 * levels of their own, so the file is read once, top to bottom, whatever the
 * order of its sections.  Defaults fill what no source set.
 */
#include "option.h"
#include "command.h"
#include "error.h"
#include "ini.h"
#include "log.h"
#include "mem.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const opt_def opt_defs[OPT__COUNT] = {
#define OPT(id, name, type, def, allowed, cmds, flags, help) [OPT_##id] = {name, type, def, allowed, cmds, flags, help},
#include "option_table.h"
#undef OPT
};

_Static_assert(OPT_PG_MAX >= OPT_REPO_MAX, "a slot row holds the larger index group");
_Static_assert(CMD__COUNT <= 32, "command masks are 32 bits");

#define ENV_PREFIX "PGKEEP_"
#define OF_INDEXED (OF_INDEXED_PG | OF_INDEXED_REPO)

/* Precedence of the sources, lowest first. */
enum
{
	LEVEL_NONE = 0,
	LEVEL_GLOBAL,				/* [global] */
	LEVEL_GLOBAL_CMD,			/* [global:COMMAND] */
	LEVEL_STANZA,				/* [STANZA] */
	LEVEL_STANZA_CMD,			/* [STANZA:COMMAND] */
	LEVEL_ENV,
	LEVEL_CMDLINE
};

typedef struct opt_value
{
	int			level;			/* LEVEL_* of the source that set the slot */
	bool		given;			/* set by a source (a default leaves it false) */
	bool		closed;			/* reset or negated at its level: nothing may be added there */
	int			count;
	char	  **items;			/* the values as given: one, or several for OT_LIST and OT_HASH */
	int64_t		num;			/* OT_BOOL (0 or 1), OT_INT, OT_SIZE (bytes), OT_TIME (seconds) */
} opt_value;

static opt_value values[OPT__COUNT][OPT_PG_MAX];
static command_id parsed_command;
static char **params;
static int	param_count;

/* Where a value comes from: its level, the error code for a bad value, and its name in messages. */
typedef struct origin
{
	int			level;
	int			code;			/* ERR_OPTION on the command line, ERR_CONFIG elsewhere */
	char	   *where;			/* message prefix: "" or "configuration file \"F\" line N: " */
	char	   *what;			/* "option '--pg1-path'", "environment variable PGKEEP_PG1_PATH", ... */
} origin;

typedef struct parse_ctx
{
	command_id	command;
	bool		help;			/* --help was given */
	bool		version;		/* --version was given */
	const char *file;			/* the configuration file being read */
	const char *stanza;
	bool		warned_cmdline_only[OPT__COUNT];
	char	  **warned;			/* unknown keys and sections already warned about */
	int			warned_count;
} parse_ctx;

/* One command-line argument, read by cmdline_next(). */
typedef enum
{
	TOK_END_OPTIONS,			/* "--" */
	TOK_POSITIONAL,				/* the command or a parameter */
	TOK_HELP,
	TOK_VERSION,
	/* The kinds from here on name an option (token.id, token.idx). */
	TOK_SET,					/* --name=value, --name value, --name and --no-name for booleans */
	TOK_RESET,					/* --reset-name */
	TOK_NEGATE					/* --no-config */
} token_kind;

typedef struct token
{
	token_kind	kind;
	char	   *name;			/* the option as written without its value ("--pg1-path"); allocated */
	const char *value;			/* TOK_SET: the value; TOK_POSITIONAL: the argument */
	int			id;
	int			idx;
} token;

/* ---- the table ---- */

static int
slot_count(int id)
{
	uint32_t	flags = opt_defs[id].flags;

	return flags & OF_INDEXED_PG ? OPT_PG_MAX : flags & OF_INDEXED_REPO ? OPT_REPO_MAX : 1;
}

static bool
applies(int id, command_id cmd)
{
	return (opt_defs[id].commands & CMDBIT(cmd)) != 0;
}

static bool
multi_valued(const opt_def *d)
{
	return d->type == OT_LIST || d->type == OT_HASH;
}

/* The name with index text after its group prefix: ("pg-path", "2") -> "pg2-path". */
static char *
name_with_index(const opt_def *d, const char *index)
{
	const char *dash = strchr(d->name, '-');

	if (!(d->flags & OF_INDEXED) || dash == NULL)
		return xstrdup(d->name);
	return xasprintf("%.*s%s%s", (int) (dash - d->name), d->name, index, dash);
}

/* "pg2-path" -> the option "pg-path" of the group flag at index 1; false when it is not one. */
static bool
lookup_indexed(const char *name, const char *prefix, uint32_t flag, int max, int *id, int *idx)
{
	size_t		plen = strlen(prefix);
	const char *p = name + plen;
	int			n = 0;

	if (strncmp(name, prefix, plen) != 0 || *p < '1' || *p > '9')
		return false;
	while (isdigit((unsigned char) *p) && n <= max)
		n = n * 10 + (*p++ - '0');
	if (n > max || *p != '-')
		return false;
	for (int i = 0; i < OPT__COUNT; i++)
		if ((opt_defs[i].flags & flag) && strncmp(opt_defs[i].name, prefix, plen) == 0 &&
			strcmp(opt_defs[i].name + plen, p) == 0)
		{
			*id = i;
			*idx = n - 1;
			return true;
		}
	return false;
}

/* Find an option by name: "process-max", "pg2-path", or "pg-path" for index 1 (0 in the API). */
static bool
lookup(const char *name, int *id, int *idx)
{
	for (int i = 0; i < OPT__COUNT; i++)
		if (strcmp(name, opt_defs[i].name) == 0)
		{
			*id = i;
			*idx = 0;
			return true;
		}
	return lookup_indexed(name, "pg", OF_INDEXED_PG, OPT_PG_MAX, id, idx) ||
		lookup_indexed(name, "repo", OF_INDEXED_REPO, OPT_REPO_MAX, id, idx);
}

/* ---- values ---- */

/* Read decimal digits at *s; false when there are none or the number overflows. */
static bool
parse_digits(const char **s, int64_t *out)
{
	const char *p = *s;
	int64_t		n = 0;

	if (!isdigit((unsigned char) *p))
		return false;
	for (; isdigit((unsigned char) *p); p++)
	{
		if (n > (INT64_MAX - (*p - '0')) / 10)
			return false;
		n = n * 10 + (*p - '0');
	}
	*s = p;
	*out = n;
	return true;
}

static bool
parse_bool(const char *s, int64_t *out)
{
	if (strcasecmp(s, "y") == 0 || strcasecmp(s, "yes") == 0 || strcasecmp(s, "true") == 0)
		*out = 1;
	else if (strcasecmp(s, "n") == 0 || strcasecmp(s, "no") == 0 || strcasecmp(s, "false") == 0)
		*out = 0;
	else
		return false;
	return true;
}

static bool
parse_int(const char *s, const char *range, int64_t *out)
{
	int64_t		min = INT64_MIN;
	int64_t		max = INT64_MAX;
	int64_t		n;
	bool		negative = *s == '-';

	if (negative)
		s++;
	if (!parse_digits(&s, &n) || *s != '\0')
		return false;
	if (negative)
		n = -n;
	if (range != NULL && sscanf(range, "%" SCNd64 ":%" SCNd64, &min, &max) != 2)
		return false;
	*out = n;
	return n >= min && n <= max;
}

/* Bytes with an optional unit; KB and KiB are both 1024 (as in pgBackRest). */
static bool
parse_size(const char *s, int64_t *out)
{
	static const struct
	{
		const char *unit;
		int			shift;
	}			units[] = {
		{"", 0}, {"b", 0}, {"k", 10}, {"kb", 10}, {"kib", 10}, {"m", 20}, {"mb", 20}, {"mib", 20},
		{"g", 30}, {"gb", 30}, {"gib", 30}, {"t", 40}, {"tb", 40}, {"tib", 40},
	};
	int64_t		n;

	if (!parse_digits(&s, &n))
		return false;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (strcasecmp(s, units[i].unit) == 0)
		{
			if (n > INT64_MAX >> units[i].shift)
				return false;
			*out = n << units[i].shift;
			return true;
		}
	return false;
}

/* Seconds; a fraction rounds up so that a timeout never becomes shorter than asked. */
static bool
parse_time(const char *s, int64_t *out)
{
	int64_t		n;
	bool		fraction = false;

	if (!parse_digits(&s, &n))
		return false;
	if (*s == '.')
	{
		if (!isdigit((unsigned char) *++s))
			return false;
		for (; isdigit((unsigned char) *s); s++)
			fraction |= *s != '0';
	}
	if (*s != '\0' || (fraction && n == INT64_MAX))
		return false;
	*out = n + fraction;
	return true;
}

static bool
enum_allows(const char *allowed, const char *s)
{
	size_t		len = strlen(s);

	for (const char *p = allowed; p != NULL; p = strchr(p, '|'))
	{
		if (*p == '|')
			p++;
		if (strncmp(p, s, len) == 0 && (p[len] == '|' || p[len] == '\0'))
			return true;
	}
	return false;
}

/* Whether value is valid for d; sets *num for the numeric types. */
static bool
value_parse(const opt_def *d, const char *value, int64_t *num)
{
	int64_t		n = 0;
	bool		ok;

	switch (d->type)
	{
		case OT_BOOL:
			ok = parse_bool(value, &n);
			break;
		case OT_INT:
			ok = parse_int(value, d->allowed, &n);
			break;
		case OT_SIZE:
			ok = parse_size(value, &n);
			break;
		case OT_TIME:
			ok = parse_time(value, &n);
			break;
		case OT_ENUM:
			ok = enum_allows(d->allowed, value);
			break;
		case OT_PATH:
			ok = value[0] == '/';
			break;
		case OT_HASH:
			ok = value[0] != '=' && strchr(value, '=') != NULL;
			break;
		default:
			ok = value[0] != '\0';
			break;
	}
	if (ok)
		*num = n;
	return ok;
}

/* The allowed values of an OT_ENUM or a ranged OT_INT; nothing for other types. */
static void
allowed_text(const opt_def *d, strbuf *sb)
{
	const char *colon = d->allowed ? strchr(d->allowed, ':') : NULL;

	if (d->type == OT_ENUM)
	{
		/* "a|b|c" -> "a, b or c" */
		for (const char *p = d->allowed; p != NULL;)
		{
			const char *bar = strchr(p, '|');

			sb_appendn(sb, p, bar ? (size_t) (bar - p) : strlen(p));
			if (bar != NULL)
				sb_append(sb, strchr(bar + 1, '|') ? ", " : " or ");
			p = bar ? bar + 1 : NULL;
		}
	}
	else if (d->type == OT_INT && colon != NULL)
		sb_appendf(sb, "an integer from %.*s to %s", (int) (colon - d->allowed), d->allowed, colon + 1);
}

/* What a valid value of d looks like, for messages. */
static void
value_expected(const opt_def *d, strbuf *sb)
{
	switch (d->type)
	{
		case OT_BOOL:
			sb_append(sb, "y or n (or yes, no, true, false)");
			break;
		case OT_INT:
			if (d->allowed == NULL)
				sb_append(sb, "an integer");
			allowed_text(d, sb);
			break;
		case OT_ENUM:
			allowed_text(d, sb);
			break;
		case OT_SIZE:
			sb_append(sb, "a size in bytes, like 1024, 64KiB, 1MB or 1GiB");
			break;
		case OT_TIME:
			sb_append(sb, "seconds, like 60 or 1.5");
			break;
		case OT_PATH:
			sb_append(sb, "an absolute path");
			break;
		case OT_HASH:
			sb_append(sb, "key=value");
			break;
		default:
			sb_append(sb, "a non-empty value");
			break;
	}
}

/* Validate value for d; the error names the option and source, and the value unless it is a secret. */
static int
value_check(const opt_def *d, const char *value, const origin *o, int64_t *num)
{
	strbuf		expected = STRBUF_INIT;
	int			rc = 0;

	if (!value_parse(d, value, num))
	{
		value_expected(d, &expected);
		if (d->flags & OF_SECRET)
			rc = error_set(o->code, "%sinvalid value for %s: expected %s", o->where, o->what, sb_str(&expected));
		else
			rc = error_set(o->code, "%sinvalid value \"%s\" for %s: expected %s",
						   o->where, value, o->what, sb_str(&expected));
	}
	sb_free(&expected);
	return rc;
}

static void
value_free(opt_value *v)
{
	for (int i = 0; i < v->count; i++)
		free(v->items[i]);
	free(v->items);
	v->items = NULL;
	v->count = 0;
	v->num = 0;
}

static void
value_push(opt_value *v, const char *s, int64_t num)
{
	v->items = xrealloc(v->items, (size_t) (v->count + 1) * sizeof(char *));
	v->items[v->count++] = xstrdup(s);
	v->num = num;
}

/*
 * Store value for an option at o's level; value NULL resets it to its
 * default, or with negate leaves it without a value (--no-config).  A value
 * is validated even when a higher source overrides it, so that a bad setting
 * is reported wherever it is.
 */
static int
slot_store(int id, int idx, const origin *o, const char *value, bool negate)
{
	const opt_def *d = &opt_defs[id];
	opt_value  *v = &values[id][idx];
	int64_t		num = 0;
	int			rc;

	if (value != NULL && (rc = value_check(d, value, o, &num)) != 0)
		return rc;
	if (o->level < v->level)
		return 0;
	if (o->level == v->level)
	{
		if (!multi_valued(d) || v->closed || value == NULL)
			return error_set(o->code, "%s%s is set more than once", o->where, o->what);
	}
	else
	{
		/* A higher source replaces everything a lower one set, a whole list included. */
		value_free(v);
		v->level = o->level;
		v->closed = false;
	}
	if (value == NULL)
	{
		v->closed = true;
		v->given = negate;
		return 0;
	}
	value_push(v, value, num);
	v->given = true;
	return 0;
}

static void
origin_free(origin *o)
{
	free(o->where);
	free(o->what);
}

/* ---- the command line ---- */

/*
 * Read the argument at *i (and its value, if it takes the next one) into t.
 * t->name is allocated whenever the argument is an option, also on error.
 */
static int
cmdline_next(int argc, char **argv, int *i, bool options_ended, token *t)
{
	const char *arg = argv[(*i)++];
	const char *eq;
	const char *name;

	memset(t, 0, sizeof(*t));
	t->value = arg;
	t->kind = TOK_POSITIONAL;
	if (options_ended || arg[0] != '-' || arg[1] == '\0')
		return 0;
	if (strcmp(arg, "--") == 0)
	{
		t->kind = TOK_END_OPTIONS;
		return 0;
	}
	eq = strchr(arg, '=');
	t->name = eq ? xstrndup(arg, (size_t) (eq - arg)) : xstrdup(arg);
	t->value = eq ? eq + 1 : NULL;
	name = t->name + 2;
	if (arg[1] != '-')
		return error_set(ERR_OPTION, "unknown option '%s'", t->name);
	if (strcmp(name, "help") == 0 || strcmp(name, "version") == 0)
		t->kind = name[0] == 'h' ? TOK_HELP : TOK_VERSION;
	else if (lookup(name, &t->id, &t->idx))
		t->kind = TOK_SET;
	else if (str_starts_with(name, "reset-") && lookup(name + 6, &t->id, &t->idx))
		t->kind = TOK_RESET;
	else if (str_starts_with(name, "no-") && lookup(name + 3, &t->id, &t->idx))
		t->kind = TOK_NEGATE;
	else
		return error_set(ERR_OPTION, "unknown option '%s'", t->name);

	if (t->kind != TOK_SET && eq != NULL)
		return error_set(ERR_OPTION, "option '%s' does not take a value", t->name);
	if (t->kind == TOK_NEGATE && opt_defs[t->id].type == OT_BOOL)
	{
		t->kind = TOK_SET;
		t->value = "n";
	}
	else if (t->kind == TOK_NEGATE && t->id != OPT_CONFIG)
		return error_set(ERR_OPTION, "option '%s' is not valid: only boolean options and --no-config can be negated",
						 t->name);
	if (t->kind == TOK_SET && t->value == NULL)
	{
		if (opt_defs[t->id].type == OT_BOOL)
			t->value = "y";
		/* An option never takes the next option as its value: "--stanza --delta" is a mistake. */
		else if (*i < argc && !str_starts_with(argv[*i], "--"))
			t->value = argv[(*i)++];
		else
			return error_set(ERR_OPTION, "option '%s' requires a value", t->name);
	}
	return 0;
}

static void
param_push(const char *arg)
{
	params = xrealloc(params, (size_t) (param_count + 1) * sizeof(char *));
	params[param_count++] = xstrdup(arg);
}

/* The first positional argument is the command, the others its parameters. */
static int
add_positional(parse_ctx *ctx, const char *arg)
{
	if (ctx->command != CMD_NONE)
	{
		param_push(arg);
		return 0;
	}
	ctx->command = command_parse(arg);
	if (ctx->command == CMD_NONE)
		return error_set(ERR_OPTION, "unknown command '%s'", arg);
	return 0;
}

static void
params_free(void)
{
	for (int i = 0; i < param_count; i++)
		free(params[i]);
	free(params);
	params = NULL;
	param_count = 0;
}

/* "pgkeep CMD --help" is "pgkeep help CMD"; --version is "pgkeep version". */
static int
cmdline_finish(parse_ctx *ctx)
{
	if (ctx->help && ctx->command != CMD_HELP)
	{
		params_free();
		if (ctx->command != CMD_NONE)
			param_push(command_name(ctx->command));
		ctx->command = CMD_HELP;
	}
	else if (ctx->version)
		ctx->command = CMD_VERSION;

	if (ctx->command == CMD_NONE)
		return error_set(ERR_OPTION, "no command given (see \"pgkeep help\")");
	if (ctx->command == CMD_HELP && param_count > 1)
		return error_set(ERR_OPTION, "command 'help' takes one parameter, a command or \"markdown\"");
	if (ctx->command == CMD_HELP && param_count == 1 && strcmp(params[0], "markdown") != 0 &&
		command_parse(params[0]) == CMD_NONE)
		return error_set(ERR_OPTION, "unknown command '%s'", params[0]);
	return 0;
}

/* First pass: the command, its parameters, --help and --version; options may precede the command. */
static int
cmdline_scan(parse_ctx *ctx, int argc, char **argv)
{
	bool		ended = false;
	int			rc = 0;

	for (int i = 1; i < argc && rc == 0;)
	{
		token		t;

		rc = cmdline_next(argc, argv, &i, ended, &t);
		if (rc == 0 && t.kind == TOK_END_OPTIONS)
			ended = true;
		else if (rc == 0 && t.kind == TOK_POSITIONAL)
			rc = add_positional(ctx, t.value);
		ctx->help |= t.kind == TOK_HELP;
		ctx->version |= t.kind == TOK_VERSION;
		free(t.name);
	}
	return rc != 0 ? rc : cmdline_finish(ctx);
}

/* Store one option of the command line; help and version take any option. */
static int
cmdline_store(command_id cmd, const token *t)
{
	origin		o = {LEVEL_CMDLINE, ERR_OPTION, xstrdup(""), xasprintf("option '%s'", t->name)};
	int			rc;

	if (cmd != CMD_HELP && cmd != CMD_VERSION && !applies(t->id, cmd))
		rc = error_set(ERR_OPTION, "option '%s' does not apply to command '%s'", t->name, command_name(cmd));
	else
		rc = slot_store(t->id, t->idx, &o, t->kind == TOK_SET ? t->value : NULL, t->kind == TOK_NEGATE);
	origin_free(&o);
	return rc;
}

/* Second pass, with the command known: store the options. */
static int
cmdline_apply(const parse_ctx *ctx, int argc, char **argv)
{
	bool		ended = false;
	int			rc = 0;

	for (int i = 1; i < argc && rc == 0;)
	{
		token		t;

		rc = cmdline_next(argc, argv, &i, ended, &t);
		ended |= t.kind == TOK_END_OPTIONS;
		if (rc == 0 && t.kind >= TOK_SET)
			rc = cmdline_store(ctx->command, &t);
		free(t.name);
	}
	return rc;
}

/* ---- the environment ---- */

/* "REPO1_PATH" -> "repo1-path"; NULL when the text is not upper case, digits and '_'. */
static char *
env_option_name(const char *var)
{
	char	   *name = xstrdup(var);

	for (char *p = name; *p; p++)
	{
		if (!isupper((unsigned char) *p) && !isdigit((unsigned char) *p) && *p != '_')
		{
			free(name);
			return NULL;
		}
		*p = *p == '_' ? '-' : (char) tolower((unsigned char) *p);
	}
	return name;
}

/* Lists and hashes separate their values with ':' in the environment, as in pgBackRest. */
static int
env_store(int id, int idx, const char *var, const char *value)
{
	origin		o = {LEVEL_ENV, ERR_CONFIG, xstrdup(""), xasprintf("environment variable %s", var)};
	char	   *copy = xstrdup(value);
	char	   *rest = copy;
	int			rc = 0;

	if (!multi_valued(&opt_defs[id]))
		rc = slot_store(id, idx, &o, value, false);
	else
		for (char *item = strsep(&rest, ":"); item != NULL && rc == 0; item = strsep(&rest, ":"))
			rc = slot_store(id, idx, &o, item, false);
	free(copy);
	origin_free(&o);
	return rc;
}

static int
env_apply(const parse_ctx *ctx, char **envp)
{
	int			rc = 0;

	for (char **e = envp; e != NULL && *e != NULL && rc == 0; e++)
	{
		const char *eq = strchr(*e, '=');
		char	   *var;
		char	   *name;
		int			id;
		int			idx;

		/* PGKEEP_FAULT_* drive fault injection in tests (src/main.c), not options. */
		if (!str_starts_with(*e, ENV_PREFIX) || eq == NULL || str_starts_with(*e, ENV_PREFIX "FAULT_"))
			continue;
		var = xstrndup(*e, (size_t) (eq - *e));
		name = env_option_name(var + strlen(ENV_PREFIX));
		if (name == NULL || !lookup(name, &id, &idx))
			log_warn("unknown environment variable %s is ignored", var);
		else if (applies(id, ctx->command))
			rc = env_store(id, idx, var, eq + 1);
		free(name);
		free(var);
	}
	return rc;
}

/* ---- the configuration file ---- */

/* True the first time key is seen, so that each problem is warned about once. */
static bool
warn_first(parse_ctx *ctx, const char *key)
{
	for (int i = 0; i < ctx->warned_count; i++)
		if (strcmp(ctx->warned[i], key) == 0)
			return false;
	ctx->warned = xrealloc(ctx->warned, (size_t) (ctx->warned_count + 1) * sizeof(char *));
	ctx->warned[ctx->warned_count++] = xstrdup(key);
	return true;
}

/* The level of a section for this run, or LEVEL_NONE when it is for another stanza or command. */
static int
section_level(const parse_ctx *ctx, const char *section)
{
	const char *colon = strchr(section, ':');
	size_t		len = colon ? (size_t) (colon - section) : strlen(section);
	bool		global = len == 6 && strncmp(section, "global", len) == 0;
	bool		stanza = ctx->stanza != NULL && strlen(ctx->stanza) == len && strncmp(section, ctx->stanza, len) == 0;

	if (colon != NULL && command_parse(colon + 1) != ctx->command)
		return LEVEL_NONE;
	if (global)
		return colon ? LEVEL_GLOBAL_CMD : LEVEL_GLOBAL;
	if (stanza)
		return colon ? LEVEL_STANZA_CMD : LEVEL_STANZA;
	return LEVEL_NONE;
}

static int
file_entry(const char *section, const char *key, const char *value, int line, void *arg)
{
	parse_ctx  *ctx = arg;
	const char *colon = strchr(section, ':');
	int			id;
	int			idx;
	int			level;
	int			rc;

	if (colon != NULL && command_parse(colon + 1) == CMD_NONE && warn_first(ctx, section))
		log_warn("configuration file \"%s\" line %d: section \"[%s]\" names an unknown command and is ignored",
				 ctx->file, line, section);
	if (!lookup(key, &id, &idx))
	{
		if (warn_first(ctx, key))
			log_warn("configuration file \"%s\" line %d: unknown option \"%s\" is ignored", ctx->file, line, key);
		return 0;
	}
	if (opt_defs[id].flags & OF_CMDLINE_ONLY)
	{
		if (!ctx->warned_cmdline_only[id])
			log_warn("configuration file \"%s\" line %d: option \"%s\" is valid only on the command line and is ignored",
					 ctx->file, line, key);
		ctx->warned_cmdline_only[id] = true;
		return 0;
	}
	/* Options of other commands are normal in a shared file: [global] serves them all. */
	level = section_level(ctx, section);
	if (level == LEVEL_NONE || !applies(id, ctx->command))
		return 0;

	origin		o = {level, ERR_CONFIG, xasprintf("configuration file \"%s\" line %d: ", ctx->file, line),
		xasprintf("option \"%s\"", key)};

	rc = slot_store(id, idx, &o, value, false);
	origin_free(&o);
	return rc;
}

/* Read --config: the default file may be missing, a named one must exist; --no-config reads none. */
static int
file_apply(parse_ctx *ctx)
{
	const opt_value *config = &values[OPT_CONFIG][0];
	bool		named = config->count > 0;
	int			rc;

	if (config->given && !named)
		return 0;
	ctx->file = named ? config->items[0] : opt_defs[OPT_CONFIG].def;
	ctx->stanza = opt_str(OPT_STANZA);
	rc = ini_parse(ctx->file, file_entry, ctx);
	if (rc == ERR_NOT_FOUND && !named)
	{
		error_clear();
		return 0;
	}
	if (rc == ERR_NOT_FOUND)
		return error_set(ERR_CONFIG, "configuration file \"%s\" does not exist", ctx->file);
	if (rc == ERR_FILE)
		return error_wrap(ERR_CONFIG, "could not read the configuration");
	return rc;
}

/* ---- after all sources ---- */

/*
 * An index of a group is in use when an option of the group is given there;
 * the first always is.  Defaults fill only the indexes in use, so that
 * commands can walk pg1..pg8 by opt_has_idx() without phantom clusters.
 */
static bool
index_in_use(uint32_t group, int idx)
{
	if (idx == 0)
		return true;
	for (int id = 0; id < OPT__COUNT; id++)
		if ((opt_defs[id].flags & group) && values[id][idx].given)
			return true;
	return false;
}

/* Options of other commands stay without a value, as if they did not exist. */
static int
defaults_fill(command_id cmd)
{
	for (int id = 0; id < OPT__COUNT; id++)
	{
		const opt_def *d = &opt_defs[id];

		for (int idx = 0; idx < slot_count(id) && d->def != NULL && applies(id, cmd); idx++)
		{
			opt_value  *v = &values[id][idx];
			int64_t		num;

			if (v->given || !index_in_use(d->flags & OF_INDEXED, idx))
				continue;
			if (!value_parse(d, d->def, &num))
				return error_set(ERR_INTERNAL, "default \"%s\" of option \"%s\" is invalid", d->def, d->name);
			value_push(v, d->def, num);
		}
	}
	return 0;
}

static void
warn_not_yet(command_id cmd)
{
	for (int id = 0; id < OPT__COUNT; id++)
	{
		if (!(opt_defs[id].flags & OF_NOT_YET) || !applies(id, cmd))
			continue;
		for (int idx = 0; idx < slot_count(id); idx++)
			if (values[id][idx].given)
			{
				char		index[16];
				char	   *name;

				snprintf(index, sizeof(index), "%d", idx + 1);
				name = name_with_index(&opt_defs[id], index);
				log_warn("option \"%s\" is accepted but has no effect yet in pgkeep", name);
				free(name);
				break;
			}
	}
}

/* The arguments of the last opt_parse, for opt_reparse (they live as long as the process). */
static int	saved_argc;
static char **saved_argv;
static char **saved_envp;

int
opt_reparse(void)
{
	if (saved_argv == NULL)
		return error_set(ERR_INTERNAL, "opt_reparse called before opt_parse");
	return opt_parse(saved_argc, saved_argv, saved_envp);
}

int
opt_parse(int argc, char **argv, char **envp)
{
	parse_ctx	ctx = {0};
	int			rc;

	saved_argc = argc;
	saved_argv = argv;
	saved_envp = envp;
	opt_reset();
	rc = cmdline_scan(&ctx, argc, argv);
	if (rc == 0)
		rc = cmdline_apply(&ctx, argc, argv);
	/* help and version work whatever the environment and the file hold. */
	if (rc == 0 && ctx.command != CMD_HELP && ctx.command != CMD_VERSION)
	{
		rc = env_apply(&ctx, envp);
		if (rc == 0)
			rc = file_apply(&ctx);
		if (rc == 0)
			warn_not_yet(ctx.command);
	}
	if (rc == 0)
		rc = defaults_fill(ctx.command);
	for (int i = 0; i < ctx.warned_count; i++)
		free(ctx.warned[i]);
	free(ctx.warned);
	if (rc != 0)
		opt_reset();
	else
		parsed_command = ctx.command;
	return rc;
}

void
opt_reset(void)
{
	for (int id = 0; id < OPT__COUNT; id++)
		for (int idx = 0; idx < OPT_PG_MAX; idx++)
			value_free(&values[id][idx]);
	memset(values, 0, sizeof(values));
	params_free();
	parsed_command = CMD_NONE;
}

/* ---- getters ---- */

static opt_value *
slot(opt_id id, int idx)
{
	if ((int) id < 0 || id >= OPT__COUNT || idx < 0 || idx >= slot_count(id))
		return NULL;
	return &values[id][idx];
}

command_id
opt_command(void)
{
	return parsed_command;
}

int
opt_param_count(void)
{
	return param_count;
}

const char *
opt_param(int i)
{
	return i >= 0 && i < param_count ? params[i] : NULL;
}

bool
opt_has(opt_id id)
{
	return opt_has_idx(id, 0);
}

bool
opt_has_idx(opt_id id, int idx)
{
	const opt_value *v = slot(id, idx);

	return v != NULL && v->count > 0;
}

bool
opt_given(opt_id id)
{
	const opt_value *v = slot(id, 0);

	return v != NULL && v->given;
}

bool
opt_on_cmdline(opt_id id)
{
	const opt_value *v = slot(id, 0);

	return v != NULL && v->given && v->level == LEVEL_CMDLINE;
}

const char *
opt_str(opt_id id)
{
	return opt_str_idx(id, 0);
}

const char *
opt_str_idx(opt_id id, int idx)
{
	const opt_value *v = slot(id, idx);

	return v != NULL && v->count > 0 ? v->items[0] : NULL;
}

bool
opt_bool(opt_id id)
{
	return opt_int(id) != 0;
}

int64_t
opt_int(opt_id id)
{
	return opt_int_idx(id, 0);
}

int64_t
opt_int_idx(opt_id id, int idx)
{
	const opt_value *v = slot(id, idx);

	return v != NULL && v->count > 0 ? v->num : 0;
}

int
opt_list_count(opt_id id)
{
	const opt_value *v = slot(id, 0);

	return v != NULL ? v->count : 0;
}

const char *
opt_list_get(opt_id id, int i)
{
	const opt_value *v = slot(id, 0);

	return v != NULL && i >= 0 && i < v->count ? v->items[i] : NULL;
}

/* The caller passes a valid value; an invalid one is stored with the number 0. */
void
opt_set_str(opt_id id, int idx, const char *value)
{
	opt_value  *v = slot(id, idx);
	int64_t		num = 0;

	if (v == NULL)
		return;
	value_free(v);
	if (value == NULL)
		return;
	value_parse(&opt_defs[id], value, &num);
	value_push(v, value, num);
}

/* ---- help and the Markdown reference ---- */

static const char *
type_name(opt_type type)
{
	static const char *const names[] = {
		[OT_STRING] = "string", [OT_PATH] = "path", [OT_BOOL] = "boolean", [OT_INT] = "integer",
		[OT_SIZE] = "size", [OT_TIME] = "seconds", [OT_ENUM] = "enum", [OT_LIST] = "list",
		[OT_HASH] = "key=value list",
	};

	return names[type];
}

static const char *
usage_params(command_id cmd)
{
	switch (cmd)
	{
		case CMD_ARCHIVE_PUSH:
			return " WAL_PATH";
		case CMD_ARCHIVE_GET:
			return " WAL_NAME DESTINATION";
		case CMD_HELP:
			return " [COMMAND | markdown]";
		default:
			return "";
	}
}

/* The help sentence and the notes on how the option is given. */
static void
describe(const opt_def *d, strbuf *sb)
{
	sb_append(sb, d->help);
	if (d->flags & OF_INDEXED_PG)
		sb_appendf(sb, " N is 1 to %d.", OPT_PG_MAX);
	if (d->flags & OF_INDEXED_REPO)
		sb_appendf(sb, " N is 1 to %d.", OPT_REPO_MAX);
	if (d->flags & OF_CMDLINE_ONLY)
		sb_append(sb, " Command line and environment only.");
	if (d->flags & OF_NOT_YET)
		sb_append(sb, " Accepted, no effect yet.");
}

static int
by_name(const void *a, const void *b)
{
	return strcmp(opt_defs[*(const int *) a].name, opt_defs[*(const int *) b].name);
}

static void
help_general(void)
{
	printf("pgkeep: backup and restore of PostgreSQL clusters\n\n"
		   "Usage: pgkeep [options] COMMAND [params]\n\nCommands:\n");
	for (int c = CMD_NONE + 1; c < CMD__COUNT; c++)
		printf("  %-16s %s%s\n", command_name(c), command_summary(c),
			   command_implemented(c) ? "" : " (not in this release)");
	printf("\nOptions go before or after the command: --name=value or --name value;\n"
		   "--name and --no-name for booleans; --reset-name for the default.  They are\n"
		   "also read from PGKEEP_NAME environment variables and from the configuration\n"
		   "file (--config, default %s).\n\n"
		   "\"pgkeep help COMMAND\" lists the options of a command; \"pgkeep help markdown\"\n"
		   "prints the option reference in Markdown.\n", opt_defs[OPT_CONFIG].def);
}

static void
help_command(command_id cmd)
{
	int			ids[OPT__COUNT];
	int			n = 0;

	printf("pgkeep %s: %s\n\nUsage: pgkeep [options] %s%s\n", command_name(cmd), command_summary(cmd),
		   command_name(cmd), usage_params(cmd));
	if (!command_implemented(cmd))
		printf("\nThis command is not available in this release.\n");
	for (int id = 0; id < OPT__COUNT; id++)
		if (applies(id, cmd))
			ids[n++] = id;
	qsort(ids, (size_t) n, sizeof(ids[0]), by_name);
	printf("\nOptions:\n");
	for (int i = 0; i < n; i++)
	{
		const opt_def *d = &opt_defs[ids[i]];
		char	   *name = name_with_index(d, "N");
		strbuf		text = STRBUF_INIT;
		strbuf		allowed = STRBUF_INIT;

		describe(d, &text);
		allowed_text(d, &allowed);
		if (allowed.len > 0)
			sb_appendf(&text, " Allowed: %s.", sb_str(&allowed));
		printf("  --%s (%s%s%s)\n      %s\n", name, type_name(d->type), d->def ? ", default " : "",
			   d->def ? d->def : "", sb_str(&text));
		sb_free(&text);
		sb_free(&allowed);
		free(name);
	}
}

void
opt_help(command_id cmd)
{
	if (cmd > CMD_NONE && cmd < CMD__COUNT)
		help_command(cmd);
	else
		help_general();
}

/* The Commands cell: "all", or the names of the commands. */
static void
commands_text(uint32_t mask, strbuf *sb)
{
	uint32_t	all = 0;

	for (int c = CMD_NONE + 1; c < CMD__COUNT; c++)
		all |= CMDBIT(c);
	if ((mask & all) == all)
	{
		sb_append(sb, "all");
		return;
	}
	for (int c = CMD_NONE + 1; c < CMD__COUNT; c++)
		if (mask & CMDBIT(c))
			sb_appendf(sb, "%s%s", sb->len ? ", " : "", command_name(c));
}

static void
markdown_row(const opt_def *d)
{
	char	   *name = name_with_index(d, "N");
	strbuf		allowed = STRBUF_INIT;
	strbuf		cmds = STRBUF_INIT;
	strbuf		text = STRBUF_INIT;

	allowed_text(d, &allowed);
	commands_text(d->commands, &cmds);
	describe(d, &text);
	printf("| `--%s` | %s | %s%s%s | %s | %s | %s |\n", name, type_name(d->type), d->def ? "`" : "",
		   d->def ? d->def : "", d->def ? "`" : "", sb_str(&allowed), sb_str(&cmds), sb_str(&text));
	sb_free(&allowed);
	sb_free(&cmds);
	sb_free(&text);
	free(name);
}

void
opt_doc_markdown(void)
{
	/* The table is ordered by section; each section starts at its first option. */
	static const struct
	{
		opt_id		first;
		const char *title;
	}			sections[] = {
		{OPT_CONFIG, "General"}, {OPT_LOG_LEVEL_CONSOLE, "Logging"}, {OPT_REPO, "Repository"},
		{OPT_PG, "PostgreSQL"}, {OPT_ARCHIVE_CHECK, "Archive"}, {OPT_TYPE, "Backup"},
		{OPT_SET, "Restore"}, {OPT_DRY_RUN, "Expire"}, {OPT_TLS_SERVER_ADDRESS, "Server"},
	};
	size_t		count = sizeof(sections) / sizeof(sections[0]);

	printf("# pgkeep options\n\n"
		   "Generated by `pgkeep help markdown`.\n\n"
		   "An option is taken from the command line (`--name=value`), else from a `PGKEEP_NAME`\n"
		   "environment variable (`-` as `_`, upper case; lists separated by `:`), else from the\n"
		   "configuration file, whose sections count in the order `[STANZA:COMMAND]`, `[STANZA]`,\n"
		   "`[global:COMMAND]`, `[global]`, else it has its default. Lists repeat the option;\n"
		   "a higher source replaces the whole list. Indexed options are written with their index:\n"
		   "`pgN-path` is `pg1-path` to `pg%d-path`, `repoN-path` is `repo1-path` to `repo%d-path`.\n",
		   OPT_PG_MAX, OPT_REPO_MAX);
	for (size_t s = 0; s < count; s++)
	{
		int			end = s + 1 < count ? (int) sections[s + 1].first : OPT__COUNT;

		printf("\n## %s\n\n| Option | Type | Default | Allowed | Commands | Description |\n"
			   "| --- | --- | --- | --- | --- | --- |\n", sections[s].title);
		for (int id = (int) sections[s].first; id < end; id++)
			markdown_row(&opt_defs[id]);
	}
}
