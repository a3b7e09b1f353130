/* log.c: the console, stderr and file sinks behind log_write(). */
#include "log.h"
#include "error.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static const char *const level_names[] = {"off", "error", "warn", "info", "detail", "debug", "trace"};

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static log_level level_console = LOG_WARN;
static log_level level_stderr = LOG_OFF;
static log_level level_file = LOG_OFF;
static FILE *log_file;
static bool console_stderr;
static char log_process[32] = "pgkeep";

int
log_level_parse(const char *name)
{
	for (int i = 0; i <= LOG_TRACE; i++)
		if (strcmp(name, level_names[i]) == 0)
			return i;
	return -1;
}

const char *
log_level_name(log_level level)
{
	return (level >= LOG_OFF && level <= LOG_TRACE) ? level_names[level] : "unknown";
}

int
log_init(log_level console, log_level err, log_level file, const char *file_path, const char *process)
{
	int			rc = 0;

	pthread_mutex_lock(&log_lock);
	level_console = console;
	level_stderr = err;
	level_file = LOG_OFF;
	if (process)
		snprintf(log_process, sizeof(log_process), "%s", process);
	if (log_file)
	{
		fclose(log_file);
		log_file = NULL;
	}
	if (file != LOG_OFF && file_path != NULL)
	{
		log_file = fopen(file_path, "a");
		if (log_file == NULL)
			rc = error_set(ERR_FILE, "could not open log file \"%s\": %s", file_path, strerror(errno));
		else
			level_file = file;
	}
	pthread_mutex_unlock(&log_lock);
	return rc;
}

void
log_console_to_stderr(bool on)
{
	console_stderr = on;
}

void
log_close(void)
{
	pthread_mutex_lock(&log_lock);
	if (log_file)
		fclose(log_file);
	log_file = NULL;
	level_file = LOG_OFF;
	pthread_mutex_unlock(&log_lock);
}

bool
log_enabled(log_level level)
{
	return level <= level_console || level <= level_stderr || level <= level_file;
}

void
log_write(log_level level, const char *fmt, ...)
{
	char		msg[8192];
	va_list		ap;

	if (level == LOG_OFF || !log_enabled(level))
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);

	const char *tag = level == LOG_ERROR ? "ERROR: " : level == LOG_WARN ? "WARN: " : "";

	pthread_mutex_lock(&log_lock);
	if (level <= level_console)
	{
		fprintf(console_stderr || (level <= LOG_WARN && level_stderr == LOG_OFF) ? stderr : stdout, "%s%s\n", tag, msg);
		fflush(stdout);
	}
	if (level <= level_stderr)
		fprintf(stderr, "%s%s\n", tag, msg);
	if (level <= level_file && log_file)
	{
		struct timeval tv;
		struct tm	tm;
		char		ts[32];

		gettimeofday(&tv, NULL);
		localtime_r(&tv.tv_sec, &tm);
		strftime(ts, sizeof(ts), "%Y-%m-%d %H:%M:%S", &tm);
		fprintf(log_file, "%s.%03d P%05d %-6s %s: %s\n", ts, (int) (tv.tv_usec / 1000), (int) getpid(),
				level_names[level], log_process, msg);
		fflush(log_file);
	}
	pthread_mutex_unlock(&log_lock);
}
