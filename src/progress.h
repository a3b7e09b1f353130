/*
 * progress.h: progress of long operations, shown on a terminal (stderr is
 * a tty and log-level-console >= info) as one rewritten line, and written to
 * a small status file that `info` reads while the operation runs.
 */
#ifndef PGKEEP_PROGRESS_H
#define PGKEEP_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

typedef struct progress progress;

/* what: "backup 20261127-014923F"; total bytes expected (0 when unknown). */
progress   *progress_start(const char *what, uint64_t total, const char *status_path);
/* Thread-safe: add done bytes. */
void		progress_add(progress *p, uint64_t bytes);
void		progress_finish(progress *p);
/* Seconds on the monotonic clock: the difference of two calls is an elapsed time. */
double		progress_now(void);

#endif
