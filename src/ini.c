/* ini.c: the INI file reader behind the configuration file (see ini.h). */
#include "ini.h"
#include "error.h"
#include "mem.h"

#include <ctype.h>
#include <stdbool.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Trim whitespace (including the '\r' of CRLF files) in place; returns the start. */
static char *
trim(char *s)
{
	char	   *end;

	while (isspace((unsigned char) *s))
		s++;
	end = s + strlen(s);
	while (end > s && isspace((unsigned char) end[-1]))
		end--;
	*end = '\0';
	return s;
}

/* Read the next line into buf (INI_LINE_MAX + 2 bytes); *end is set at the end of the file. */
static int
read_line(FILE *f, char *buf, const char *path, int lineno, bool *end)
{
	*end = false;
	if (fgets(buf, INI_LINE_MAX + 2, f) == NULL)
	{
		if (ferror(f))
			return error_set(ERR_FILE, "could not read file \"%s\": %s", path, strerror(errno));
		*end = true;
		return 0;
	}
	/* Without a newline the line either ends the file or did not fit. */
	if (strchr(buf, '\n') == NULL && !feof(f))
		return error_set(ERR_CONFIG, "configuration file \"%s\" line %d is longer than %d bytes",
						 path, lineno, INI_LINE_MAX);
	return 0;
}

int
ini_parse(const char *path,
		  int (*fn)(const char *section, const char *key, const char *value, int line, void *arg),
		  void *arg)
{
	FILE	   *f = fopen(path, "r");
	char	   *buf;
	char	   *section = NULL;
	int			lineno = 0;
	int			rc = 0;

	if (f == NULL)
	{
		if (errno == ENOENT)
			return error_set(ERR_NOT_FOUND, "configuration file \"%s\" does not exist", path);
		return error_set(ERR_FILE, "could not open file \"%s\": %s", path, strerror(errno));
	}
	buf = xmalloc(INI_LINE_MAX + 2);
	for (;;)
	{
		bool		end;
		char	   *line;
		char	   *eq;

		rc = read_line(f, buf, path, ++lineno, &end);
		if (rc != 0 || end)
			break;
		line = trim(buf);
		if (*line == '\0' || *line == '#' || *line == ';')
			continue;
		if (*line == '[' && line[strlen(line) - 1] == ']')
		{
			line[strlen(line) - 1] = '\0';
			line = trim(line + 1);
			if (*line == '\0')
			{
				rc = error_set(ERR_CONFIG, "configuration file \"%s\" line %d: empty section name", path, lineno);
				break;
			}
			free(section);
			section = xstrdup(line);
			continue;
		}
		eq = strchr(line, '=');
		if (eq == NULL || eq == line)
		{
			rc = error_set(ERR_CONFIG, "configuration file \"%s\" line %d: expected \"[section]\" or \"key=value\"",
						   path, lineno);
			break;
		}
		*eq = '\0';
		line = trim(line);
		if (section == NULL)
		{
			rc = error_set(ERR_CONFIG, "configuration file \"%s\" line %d: key \"%s\" is not in a section",
						   path, lineno, line);
			break;
		}
		rc = fn(section, line, trim(eq + 1), lineno, arg);
		if (rc != 0)
			break;
	}
	free(section);
	free(buf);
	fclose(f);
	return rc;
}
