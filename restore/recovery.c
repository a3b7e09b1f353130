/*
 * recovery.c: the recovery settings of a restore (see recovery.h).
 *
 * postgresql.auto.conf is PostgreSQL's file for ALTER SYSTEM, one setting a
 * line.  It is edited as lines: the lines of the keys pgkeep manages are
 * dropped, every other line is kept byte for byte, and pgkeep's block is
 * appended, so the last setting of a key (the one PostgreSQL uses) is ours.
 */
#include "recovery.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../src/error.h"
#include "../src/mem.h"
#include "../src/pgformat.h"

typedef enum
{
	RT_DEFAULT, RT_IMMEDIATE, RT_TIME, RT_XID, RT_LSN, RT_NAME, RT_STANDBY, RT_NONE, RT_PRESERVE, RT_INVALID
} recovery_type;

/* Per type: its --type name and, for the target types, the setting that names the target. */
static const struct
{
	const char *name;
	const char *target_key;
} types[] = {
	[RT_DEFAULT] = {"default", NULL},
	[RT_IMMEDIATE] = {"immediate", "recovery_target"},
	[RT_TIME] = {"time", "recovery_target_time"},
	[RT_XID] = {"xid", "recovery_target_xid"},
	[RT_LSN] = {"lsn", "recovery_target_lsn"},
	[RT_NAME] = {"name", "recovery_target_name"},
	[RT_STANDBY] = {"standby", NULL},
	[RT_NONE] = {"none", NULL},
	[RT_PRESERVE] = {"preserve", NULL},
};

static recovery_type
type_parse(const char *name)
{
	if (name == NULL)
		return RT_DEFAULT;
	for (int t = 0; t < RT_INVALID; t++)
		if (strcmp(name, types[t].name) == 0)
			return (recovery_type) t;
	return RT_INVALID;
}

/* Types whose target comes from --target (immediate has a fixed one). */
static bool
type_takes_target(recovery_type t)
{
	return t == RT_TIME || t == RT_XID || t == RT_LSN || t == RT_NAME;
}

/* Length of the setting name at the start of s ([A-Za-z_][A-Za-z0-9_.]*), 0 when there is none. */
static size_t
key_len(const char *s)
{
	size_t		n = 0;

	if (!isalpha((unsigned char) s[0]) && s[0] != '_')
		return 0;
	while (isalnum((unsigned char) s[n]) || s[n] == '_' || s[n] == '.')
		n++;
	return n;
}

/* Length of the key of a "key=value" recovery option, 0 when malformed. */
static size_t
option_key_len(const char *option)
{
	size_t		n = key_len(option);

	return option[n] == '=' ? n : 0;
}

static bool
key_eq(const char *a, size_t alen, const char *b, size_t blen)
{
	return alen == blen && strncasecmp(a, b, alen) == 0;
}

/* Index of the recovery option that sets key (the last one when several do), or -1. */
static int
option_find(const recovery_settings *s, const char *key, size_t len)
{
	for (int i = s->noptions - 1; i >= 0; i--)
		if (key_eq(s->options[i], option_key_len(s->options[i]), key, len))
			return i;
	return -1;
}

static bool
timeline_valid(const char *tl)
{
	char	   *end;
	unsigned long long v;

	if (strcmp(tl, "current") == 0 || strcmp(tl, "latest") == 0)
		return true;
	/* PostgreSQL reads the number with strtoul(base 0): hex is allowed. */
	v = strtoull(tl, &end, 0);
	return isdigit((unsigned char) tl[0]) && *end == '\0' && v > 0 && v <= UINT32_MAX;
}

static int
target_check(recovery_type t, const char *target)
{
	uint64_t	lsn;

	if (target[0] == '\0')
		return error_set(ERR_OPTION, "--target is empty");
	if (t == RT_XID && strspn(target, "0123456789") != strlen(target))
		return error_set(ERR_OPTION, "--target=%s is not a transaction id", target);
	if (t == RT_LSN && !wal_lsn_parse(target, &lsn))
		return error_set(ERR_OPTION, "--target=%s is not an LSN (like 0/3000028)", target);
	return 0;
}

int
recovery_check(const recovery_settings *s)
{
	recovery_type t = type_parse(s->type);
	const char *name = s->type ? s->type : "default";
	int			rc;

	if (t == RT_INVALID)
		return error_set(ERR_OPTION, "--type=%s is not a recovery type; restore takes default, immediate, "
						 "time, xid, lsn, name, standby, none or preserve", name);
	if (type_takes_target(t) && s->target == NULL)
		return error_set(ERR_OPTION, "--type=%s requires --target", name);
	if (!type_takes_target(t) && s->target != NULL)
		return error_set(ERR_OPTION, "--target is not valid with --type=%s (only with time, xid, lsn or name)", name);
	if (s->target != NULL && (rc = target_check(t, s->target)) != 0)
		return rc;
	if (s->target_timeline != NULL && !timeline_valid(s->target_timeline))
		return error_set(ERR_OPTION, "--target-timeline=%s is not current, latest or a timeline number",
						 s->target_timeline);
	for (int i = 0; i < s->noptions; i++)
		if (option_key_len(s->options[i]) == 0)
			return error_set(ERR_OPTION, "--recovery-option=%s is not key=value with a setting name as key",
							 s->options[i]);
	return 0;
}

/* Whether a line of postgresql.auto.conf is one that the type replaces. */
static bool
line_replaced(const recovery_settings *s, recovery_type t, const char *line)
{
	const char *p = line + strspn(line, " \t");
	size_t		n;

	if (str_starts_with(p, RECOVERY_COMMENT))
		return true;
	n = key_len(p);
	/* A setting line is "key = value" or "key value". */
	if (n == 0 || (p[n] != '=' && p[n] != ' ' && p[n] != '\t'))
		return false;
	if (key_eq(p, n, "restore_command", strlen("restore_command")) ||
		(n >= strlen("recovery_target") && strncasecmp(p, "recovery_target", strlen("recovery_target")) == 0))
		return true;
	/* The recovery options are written, so they replace, only when the type writes settings. */
	return t != RT_NONE && option_find(s, p, n) >= 0;
}

/*
 * Append key = 'value'.  Inside quotes PostgreSQL's configuration parser
 * reads '' and backslash escapes, so quotes and backslashes are doubled
 * (as ALTER SYSTEM does) and line breaks become \n and \r.
 */
static void
put_setting(strbuf *sb, const char *key, size_t keylen, const char *value)
{
	sb_appendn(sb, key, keylen);
	sb_append(sb, " = '");
	for (const char *c = value; *c != '\0'; c++)
	{
		if (*c == '\n' || *c == '\r')
		{
			sb_append(sb, *c == '\n' ? "\\n" : "\\r");
			continue;
		}
		if (*c == '\'' || *c == '\\')
			sb_appendc(sb, *c);
		sb_appendc(sb, *c);
	}
	sb_append(sb, "'\n");
}

/* A setting of the type, unless a recovery option sets the same key (the option wins). */
static void
put_type_setting(strbuf *sb, const recovery_settings *s, const char *key, const char *value)
{
	if (option_find(s, key, strlen(key)) < 0)
		put_setting(sb, key, strlen(key), value);
}

static void
put_block(strbuf *sb, const recovery_settings *s, recovery_type t)
{
	sb_append(sb, RECOVERY_COMMENT "\n");
	put_type_setting(sb, s, "restore_command", s->restore_command);
	if (types[t].target_key != NULL)
	{
		put_type_setting(sb, s, types[t].target_key, t == RT_IMMEDIATE ? "immediate" : s->target);
		if (s->target_exclusive && (t == RT_TIME || t == RT_XID || t == RT_LSN))
			put_type_setting(sb, s, "recovery_target_inclusive", "false");
		put_type_setting(sb, s, "recovery_target_action", s->target_action ? s->target_action : "pause");
	}
	if (s->target_timeline != NULL)
		put_type_setting(sb, s, "recovery_target_timeline", s->target_timeline);
	for (int i = 0; i < s->noptions; i++)
	{
		const char *opt = s->options[i];
		size_t		n = option_key_len(opt);

		/* A key given twice is written once, with its last value. */
		if (option_find(s, opt, n) == i)
			put_setting(sb, opt, n, opt + n + 1);
	}
}

int
recovery_conf_update(const recovery_settings *s, const char *current, char **out)
{
	recovery_type t = type_parse(s->type);
	strbuf		sb = STRBUF_INIT;
	int			rc;

	if ((rc = recovery_check(s)) != 0)
		return rc;
	if (t == RT_PRESERVE)
	{
		*out = xstrdup(current);
		return 0;
	}
	for (const char *line = current; *line != '\0';)
	{
		const char *nl = strchr(line, '\n');
		size_t		len = nl ? (size_t) (nl - line) + 1 : strlen(line);

		if (!line_replaced(s, t, line))
		{
			sb_appendn(&sb, line, len);
			if (nl == NULL)
				sb_appendc(&sb, '\n');
		}
		line += len;
	}
	if (t != RT_NONE)
		put_block(&sb, s, t);
	*out = sb_detach(&sb);
	return 0;
}

const char *
recovery_signal_file(const recovery_settings *s)
{
	switch (type_parse(s->type))
	{
		case RT_STANDBY:
			return "standby.signal";
		case RT_PRESERVE:
		case RT_INVALID:
			return NULL;
		default:
			return "recovery.signal";
	}
}

/*
 * Append one shell word, after a space unless it is the first: as is when
 * every character is plain, else in single quotes ('\'' for a quote).
 * PostgreSQL replaces %-sequences in restore_command before the shell sees
 * it, so '%' is doubled either way.
 */
static void
put_word(strbuf *sb, const char *word)
{
	static const char plain_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_./=:,+@%";
	bool		plain = word[strspn(word, plain_chars)] == '\0';

	if (sb->len > 0)
		sb_appendc(sb, ' ');
	if (!plain)
		sb_appendc(sb, '\'');
	for (const char *c = word; *c != '\0'; c++)
	{
		if (*c == '%')
			sb_appendc(sb, '%');
		if (*c == '\'')
			sb_append(sb, "'\\'");
		sb_appendc(sb, *c);
	}
	if (!plain)
		sb_appendc(sb, '\'');
}

/* put_word of prefix + value. */
static void
put_option_word(strbuf *sb, const char *prefix, const char *value)
{
	char	   *word = xasprintf("%s%s", prefix, value);

	put_word(sb, word);
	free(word);
}

char *
recovery_restore_command(const char *bin, const char *config, const char *repo_path, const char *stanza)
{
	strbuf		sb = STRBUF_INIT;

	put_word(&sb, bin);
	if (config != NULL)
		put_option_word(&sb, "--config=", config);
	if (repo_path != NULL)
		put_option_word(&sb, "--repo1-path=", repo_path);
	put_option_word(&sb, "--stanza=", stanza);
	sb_append(&sb, " archive-get %f \"%p\"");
	return sb_detach(&sb);
}
