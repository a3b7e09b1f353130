/*
 * progress.c: progress of long operations: a rewritten line on a terminal,
 * and a status file (percent, bytes, rate) that info reads while it runs.
 * Updates are rate-limited to about one per second, so callers may report
 * every block.
 */
#include "progress.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fileio.h"
#include "mem.h"

struct progress
{
	pthread_mutex_t lock;
	char	   *what;
	char	   *status_path;
	uint64_t	total;
	uint64_t	done;
	double		started;
	double		last_shown;
	bool		tty;
};

double
progress_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

progress *
progress_start(const char *what, uint64_t total, const char *status_path)
{
	progress   *p = xcalloc(1, sizeof(*p));

	pthread_mutex_init(&p->lock, NULL);
	p->what = xstrdup(what);
	p->status_path = status_path ? xstrdup(status_path) : NULL;
	p->total = total;
	p->started = p->last_shown = progress_now();
	p->tty = isatty(STDERR_FILENO);
	return p;
}

static void
show(progress *p, double t, bool final)
{
	double		secs = t - p->started;
	double		mb = (double) p->done / 1048576.0;
	double		pct = p->total ? 100.0 * (double) p->done / (double) p->total : 0.0;
	char		line[256];

	if (pct > 100.0)
		pct = 100.0;
	snprintf(line, sizeof(line), "%s: %.1f%% %.0f MiB in %.0fs (%.0f MiB/s)", p->what, pct, mb, secs,
			 secs > 0 ? mb / secs : 0.0);
	if (p->tty)
		fprintf(stderr, "\r%s\033[K%s", line, final ? "\n" : "");
	if (p->status_path)
	{
		char	   *text = xasprintf("%s\n", line);

		/* Best effort: a status file that cannot be written must not fail the operation. */
		(void) fio_write_file_atomic(p->status_path, text, strlen(text), 0640);
		free(text);
	}
}

void
progress_add(progress *p, uint64_t bytes)
{
	double		t;

	if (p == NULL)
		return;
	pthread_mutex_lock(&p->lock);
	p->done += bytes;
	t = progress_now();
	if (t - p->last_shown >= 1.0)
	{
		p->last_shown = t;
		show(p, t, false);
	}
	pthread_mutex_unlock(&p->lock);
}

void
progress_finish(progress *p)
{
	if (p == NULL)
		return;
	if (p->tty && p->started != p->last_shown)
		show(p, progress_now(), true);
	if (p->status_path)
		unlink(p->status_path);
	pthread_mutex_destroy(&p->lock);
	free(p->what);
	free(p->status_path);
	free(p);
}
