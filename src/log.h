/*
 * log.h: leveled logging to the console (stdout), stderr and a log file.
 * Thread-safe.  Messages are lowercase sentences without a trailing period.
 * Secrets never reach these functions: callers pass redacted values.
 */
#ifndef PGKEEP_LOG_H
#define PGKEEP_LOG_H

#include <stdbool.h>

typedef enum
{
	LOG_OFF = 0,
	LOG_ERROR,
	LOG_WARN,
	LOG_INFO,
	LOG_DETAIL,
	LOG_DEBUG,
	LOG_TRACE
} log_level;

/* Parse "off", "error", ... ; returns -1 when the name is unknown. */
int log_level_parse(const char *name);
const char *log_level_name(log_level level);

/*
 * Configure the sinks.  file_path may be NULL (no file logging).  process is
 * a short tag written on each file line (e.g. the command name).  Returns 0,
 * or ERR_FILE when the log file cannot be opened (logging to the console and
 * stderr stays configured).
 */
int log_init(log_level console, log_level err, log_level file, const char *file_path, const char *process);
void log_close(void);
/* Send console messages to stderr instead of stdout (when stdout carries a document, e.g. JSON). */
void log_console_to_stderr(bool on);

/* True when a message at this level would go anywhere. */
bool log_enabled(log_level level);

void log_write(log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_write(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_write(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_write(LOG_INFO, __VA_ARGS__)
#define log_detail(...) log_write(LOG_DETAIL, __VA_ARGS__)
#define log_debug(...) log_write(LOG_DEBUG, __VA_ARGS__)
#define log_trace(...) log_write(LOG_TRACE, __VA_ARGS__)

#endif
