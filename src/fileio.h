/*
 * fileio.h: file I/O that loops over short reads and writes, retries EINTR,
 * and writes durably (temp file, fsync, rename, fsync of the directory).
 *
 * Every system call goes through the table fio_sys so that tests can inject
 * faults (short writes, EINTR, ENOSPC, EIO) by replacing an entry.
 * All functions return 0 or an error code (ERR_FILE unless said otherwise)
 * with error_msg() naming the path and the system error.
 */
#ifndef PGKEEP_FILEIO_H
#define PGKEEP_FILEIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

typedef struct fio_syscalls
{
	int			(*open) (const char *path, int flags, mode_t mode);
	ssize_t		(*read) (int fd, void *buf, size_t n);
	ssize_t		(*pread) (int fd, void *buf, size_t n, off_t off);
	ssize_t		(*write) (int fd, const void *buf, size_t n);
	ssize_t		(*pwrite) (int fd, const void *buf, size_t n, off_t off);
	int			(*fsync) (int fd);
	int			(*syncfs) (int fd);
	int			(*rename) (const char *from, const char *to);
	int			(*unlink) (const char *path);
	int			(*close) (int fd);
} fio_syscalls;

extern fio_syscalls fio_sys;
/* Restore the real system calls. */
void fio_sys_reset(void);
/*
 * Fault injection for crash tests: the process kills itself with SIGKILL
 * just before its n-th call (n >= 1) that changes files (write, pwrite,
 * fsync, syncfs, rename, unlink).  main() installs it when the environment variable
 * PGKEEP_FAULT_KILL_AT=n is set (doc/hacking.md); never set in production.
 */
void fio_sys_kill_at(uint64_t n);
/*
 * Fault injection for failure tests: fsync (or syncfs) of a file or directory
 * whose path ends in suffix fails with EIO (the path as /proc/self/fd tells it; suffix
 * must stay valid).  Combines with fio_sys_kill_at.  main() installs it when
 * PGKEEP_FAULT_FSYNC_EIO=suffix is set; never set in production.
 */
void fio_sys_fsync_fail(const char *suffix);

/*
 * Make everything written to the file system holding fd durable (syncfs):
 * one device flush for a whole restore instead of one per file.  It reports
 * a writeback error of any file of that file system that happened since fd
 * was opened (Linux 5.8 and later), so open fd before writing.
 */
int fio_syncfs(int fd, const char *path);

/* Read up to n bytes, looping until n or end of file; *got is what was read. */
int fio_read_full(int fd, void *buf, size_t n, size_t *got, const char *path);
/* Read up to n bytes at off, fewer only at the end of the file; *got is how many. */
int fio_pread_upto(int fd, void *buf, size_t n, off_t off, const char *path, size_t *got);
/* Read exactly n bytes at off; a short read is ERR_FILE ("read %zu of %zu bytes"). */
int fio_pread_full(int fd, void *buf, size_t n, off_t off, const char *path);
/* Write all n bytes; reports a partial count on failure ("wrote %zu of %zu bytes"). */
int fio_write_full(int fd, const void *buf, size_t n, const char *path);
int fio_pwrite_full(int fd, const void *buf, size_t n, off_t off, const char *path);

int fio_fsync(int fd, const char *path);
/* fsync a directory by path. */
int fio_fsync_dir(const char *dir);
/* fsync the directory that holds path. */
int fio_fsync_parent(const char *path);
/*
 * fsync the file at path and the directory that holds it: for a file found
 * in place, which an earlier attempt may have placed without its
 * directory's fsync succeeding (or before being killed), before it is
 * acknowledged as stored.
 */
int fio_make_durable(const char *path);
/* Create a directory and its missing parents (mode for each new one). */
int fio_mkdir_p(const char *path, mode_t mode);
/* mkdir_p, then fsync each directory whose entry changed, so the path is durable. */
int fio_mkdir_durable(const char *path, mode_t mode);
/* Rename then fsync the destination's directory (and the source's, when it differs). */
int fio_rename_durable(const char *from, const char *to);
/* Remove a file; ENOENT is not an error. */
int fio_unlink(const char *path);
/* Remove a directory tree (no symlinks followed); ENOENT is not an error. */
int fio_remove_tree(const char *path);
/* Whether path exists (lstat). */
bool fio_exists(const char *path);
/* Read a whole small file (at most max bytes, else ERR_FORMAT) into a new NUL-terminated buffer. */
int fio_read_file(const char *path, size_t max, char **data, size_t *len);

/*
 * Atomic durable file: writes go to "<path>.tmp.<pid>.<n>", commit fsyncs
 * it, renames it over path, and fsyncs the directory.  abort removes the temp
 * file.  After commit or abort the struct may be reused with fio_atomic_open.
 */
typedef struct fio_atomic
{
	int			fd;
	char	   *path;
	char	   *tmp_path;
	uint64_t	written;
} fio_atomic;

int fio_atomic_open(fio_atomic *f, const char *path, mode_t mode);
int fio_atomic_write(fio_atomic *f, const void *buf, size_t n);
/* With no_replace, an existing path makes commit fail with ERR_CONFLICT (link + unlink instead of rename). */
int fio_atomic_commit(fio_atomic *f, bool no_replace);
void fio_atomic_abort(fio_atomic *f);
/* Write a whole buffer atomically and durably. */
int fio_write_file_atomic(const char *path, const void *buf, size_t n, mode_t mode);

/* Exclusive advisory lock on a lock file (created if missing).  ERR_LOCK if held and !wait. */
int fio_lock(const char *path, bool wait, int *fd_out);
void fio_unlock(int fd);

#endif
