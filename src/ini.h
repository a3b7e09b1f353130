/*
 * ini.h: a small reader of INI configuration files.
 *
 * The format: "[section]" lines, "key=value" lines (whitespace around the key
 * and the value is trimmed; the value may contain '=' and spaces), comment
 * lines whose first non-blank character is '#' or ';', and blank lines.
 * There are no inline comments, quotes or continuation lines.
 */
#ifndef PGKEEP_INI_H
#define PGKEEP_INI_H

/* Longest accepted line in bytes, not counting the newline. */
#define INI_LINE_MAX 65536

/*
 * Read the file at path and call fn for every key=value line, in file order,
 * with the current section, the key, the value and the 1-based line number.
 * The strings are valid only during the call.  A nonzero return from fn stops
 * the parse and is returned as is.
 *
 * Returns 0; ERR_NOT_FOUND when the file does not exist (the caller decides
 * whether that is an error); ERR_FILE when it cannot be opened or read;
 * ERR_CONFIG naming the file and line for a line that is not a section, a
 * key=value or a comment, a key before the first section, or a line longer
 * than INI_LINE_MAX.
 */
int ini_parse(const char *path,
			  int (*fn)(const char *section, const char *key, const char *value, int line, void *arg),
			  void *arg);

#endif
