/*
 * fileio.c: file I/O that survives short reads and writes, EINTR and crashes.
 *
 * Every system call that moves data or makes it durable goes through fio_sys,
 * so tests can inject short writes, EINTR and ENOSPC.  Durable writes follow
 * the one safe order: write a temp file, fsync it, rename (or link) it into
 * place, fsync the directory.
 */
#include "fileio.h"
#include "error.h"
#include "mem.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

static int
sys_open(const char *path, int flags, mode_t mode)
{
	return open(path, flags, mode);
}

#define REAL_SYSCALLS {.open = sys_open, .read = read, .pread = pread, .write = write, .pwrite = pwrite, \
		.fsync = fsync, .syncfs = syncfs, .rename = rename, .unlink = unlink, .close = close}

static const fio_syscalls fio_sys_real = REAL_SYSCALLS;
fio_syscalls fio_sys = REAL_SYSCALLS;

void
fio_sys_reset(void)
{
	fio_sys = fio_sys_real;
}

/* ---- fault injection: SIGKILL at the n-th call that changes files ---- */

static atomic_uint_fast64_t kill_left;

static void
kill_tick(void)
{
	if (atomic_fetch_sub(&kill_left, 1) == 1)
		raise(SIGKILL);
}

static ssize_t
kill_write(int fd, const void *buf, size_t n)
{
	kill_tick();
	return write(fd, buf, n);
}

static ssize_t
kill_pwrite(int fd, const void *buf, size_t n, off_t off)
{
	kill_tick();
	return pwrite(fd, buf, n, off);
}

static int
kill_fsync(int fd)
{
	kill_tick();
	return fsync(fd);
}

static int
kill_syncfs(int fd)
{
	kill_tick();
	return syncfs(fd);
}

static int
kill_rename(const char *from, const char *to)
{
	kill_tick();
	return rename(from, to);
}

static int
kill_unlink(const char *path)
{
	kill_tick();
	return unlink(path);
}

void
fio_sys_kill_at(uint64_t n)
{
	atomic_store(&kill_left, n);
	fio_sys.write = kill_write;
	fio_sys.pwrite = kill_pwrite;
	fio_sys.fsync = kill_fsync;
	fio_sys.syncfs = kill_syncfs;
	fio_sys.rename = kill_rename;
	fio_sys.unlink = kill_unlink;
}

/* ---- fault injection: fsync of a file whose path ends in a suffix fails with EIO ---- */

static const char *fsync_fail_suffix;
static int	(*fsync_fail_next) (int fd);
static int	(*syncfs_fail_next) (int fd);

/* Whether fd's path ends in the suffix. */
static bool
fail_matches(int fd)
{
	char		proc[64];
	char		path[4096];
	size_t		len = strlen(fsync_fail_suffix);
	ssize_t		n;

	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	n = readlink(proc, path, sizeof(path));
	return n >= (ssize_t) len && (size_t) n < sizeof(path) && memcmp(path + n - len, fsync_fail_suffix, len) == 0;
}

static int
fail_fsync(int fd)
{
	if (!fail_matches(fd))
		return fsync_fail_next(fd);
	errno = EIO;
	return -1;
}

static int
fail_syncfs(int fd)
{
	if (!fail_matches(fd))
		return syncfs_fail_next(fd);
	errno = EIO;
	return -1;
}

void
fio_sys_fsync_fail(const char *suffix)
{
	fsync_fail_suffix = suffix;
	fsync_fail_next = fio_sys.fsync;
	fio_sys.fsync = fail_fsync;
	syncfs_fail_next = fio_sys.syncfs;
	fio_sys.syncfs = fail_syncfs;
}

/* Close, ignoring EINTR: on Linux the descriptor is released even then. */
static int
close_fd(int fd, const char *path)
{
	if (fio_sys.close(fd) != 0 && errno != EINTR)
		return error_set(ERR_FILE, "could not close file \"%s\": %s", path, strerror(errno));
	return 0;
}

int
fio_read_full(int fd, void *buf, size_t n, size_t *got, const char *path)
{
	size_t		done = 0;

	while (done < n)
	{
		ssize_t		r = fio_sys.read(fd, (char *) buf + done, n - done);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
		{
			*got = done;
			return error_set(ERR_FILE, "could not read file \"%s\": %s", path, strerror(errno));
		}
		if (r == 0)
			break;
		done += (size_t) r;
	}
	*got = done;
	return 0;
}

int
fio_pread_upto(int fd, void *buf, size_t n, off_t off, const char *path, size_t *got)
{
	size_t		done = 0;

	while (done < n)
	{
		ssize_t		r = fio_sys.pread(fd, (char *) buf + done, n - done, off + (off_t) done);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return error_set(ERR_FILE, "could not read file \"%s\" at offset %lld: read %zu of %zu bytes: %s",
							 path, (long long) off, done, n, strerror(errno));
		if (r == 0)
			break;
		done += (size_t) r;
	}
	*got = done;
	return 0;
}

int
fio_pread_full(int fd, void *buf, size_t n, off_t off, const char *path)
{
	size_t		got;
	int			rc = fio_pread_upto(fd, buf, n, off, path, &got);

	if (rc == 0 && got < n)
		rc = error_set(ERR_FILE, "could not read file \"%s\" at offset %lld: read %zu of %zu bytes: unexpected end of file",
					   path, (long long) off, got, n);
	return rc;
}

/*
 * A write that returns 0 for a non-empty buffer sets no errno; like
 * PostgreSQL, report it as a full disk, the only plausible cause.
 */
static int
write_failed(const char *path, size_t done, size_t n, ssize_t r)
{
	return error_set(ERR_FILE, "could not write file \"%s\": wrote %zu of %zu bytes: %s",
					 path, done, n, strerror(r == 0 ? ENOSPC : errno));
}

int
fio_write_full(int fd, const void *buf, size_t n, const char *path)
{
	size_t		done = 0;

	while (done < n)
	{
		ssize_t		r = fio_sys.write(fd, (const char *) buf + done, n - done);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return write_failed(path, done, n, r);
		done += (size_t) r;
	}
	return 0;
}

int
fio_pwrite_full(int fd, const void *buf, size_t n, off_t off, const char *path)
{
	size_t		done = 0;

	while (done < n)
	{
		ssize_t		r = fio_sys.pwrite(fd, (const char *) buf + done, n - done, off + (off_t) done);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return write_failed(path, done, n, r);
		done += (size_t) r;
	}
	return 0;
}

int
fio_fsync(int fd, const char *path)
{
	int			r;

	while ((r = fio_sys.fsync(fd)) != 0 && errno == EINTR)
		;
	if (r != 0)
		return error_set(ERR_FILE, "could not fsync file \"%s\": %s", path, strerror(errno));
	return 0;
}

int
fio_syncfs(int fd, const char *path)
{
	int			r;

	while ((r = fio_sys.syncfs(fd)) != 0 && errno == EINTR)
		;
	if (r != 0)
		return error_set(ERR_FILE, "could not sync the file system of \"%s\": %s", path, strerror(errno));
	return 0;
}

int
fio_fsync_dir(const char *dir)
{
	int			fd = fio_sys.open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	int			r;

	if (fd < 0)
		return error_set(ERR_FILE, "could not open directory \"%s\": %s", dir, strerror(errno));
	while ((r = fio_sys.fsync(fd)) != 0 && errno == EINTR)
		;
	/* Some file systems cannot fsync a directory (EINVAL); their entries are durable without it. */
	if (r != 0 && errno != EINVAL)
	{
		int			rc = error_set(ERR_FILE, "could not fsync directory \"%s\": %s", dir, strerror(errno));

		fio_sys.close(fd);
		return rc;
	}
	return close_fd(fd, dir);
}

/* Length of path without trailing slashes (a lone "/" keeps its slash). */
static size_t
trimmed_len(const char *path)
{
	size_t		len = strlen(path);

	while (len > 1 && path[len - 1] == '/')
		len--;
	return len;
}

/* The directory holding path: "a/b" -> "a", "b" -> ".", "/b" -> "/".  Caller frees. */
static char *
parent_dir(const char *path)
{
	size_t		len = trimmed_len(path);

	while (len > 0 && path[len - 1] != '/')
		len--;
	if (len == 0)
		return xstrdup(".");
	while (len > 1 && path[len - 1] == '/')
		len--;
	return xstrndup(path, len);
}

int
fio_fsync_parent(const char *path)
{
	char	   *dir = parent_dir(path);
	int			rc = fio_fsync_dir(dir);

	free(dir);
	return rc;
}

int
fio_make_durable(const char *path)
{
	int			fd = fio_sys.open(path, O_RDONLY | O_CLOEXEC, 0);
	int			rc;

	if (fd < 0)
		return error_set(ERR_FILE, "could not open file \"%s\": %s", path, strerror(errno));
	if ((rc = fio_fsync(fd, path)) != 0)
	{
		fio_sys.close(fd);
		return rc;
	}
	if ((rc = close_fd(fd, path)) != 0)
		return rc;
	return fio_fsync_parent(path);
}

/*
 * Create path, creating missing parents first.  Trying the full path first
 * makes the common case (parents exist) one system call.  When durable, the
 * parent of each created directory is fsynced, as its entry changed.
 */
static int
mkdir_walk(char *path, mode_t mode, bool durable)
{
	struct stat st;

	if (mkdir(path, mode) == 0)
		return durable ? fio_fsync_parent(path) : 0;
	if (errno == ENOENT)
	{
		char	   *slash = strrchr(path, '/');
		int			rc;

		if (slash == NULL || slash == path)
			return error_set(ERR_FILE, "could not create directory \"%s\": %s", path, strerror(ENOENT));
		*slash = '\0';
		rc = mkdir_walk(path, mode, durable);
		*slash = '/';
		if (rc != 0)
			return rc;
		if (mkdir(path, mode) == 0)
			return durable ? fio_fsync_parent(path) : 0;
	}
	/* Another process may have created it meanwhile: any existing directory will do. */
	if (errno == EEXIST)
	{
		if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
			return 0;
		errno = ENOTDIR;
	}
	return error_set(ERR_FILE, "could not create directory \"%s\": %s", path, strerror(errno));
}

static int
mkdir_path(const char *path, mode_t mode, bool durable)
{
	char	   *p = xstrndup(path, trimmed_len(path));
	int			rc;

	if (*p == '\0')
		rc = error_set(ERR_FILE, "could not create directory \"\": %s", strerror(ENOENT));
	else
		rc = mkdir_walk(p, mode, durable);
	free(p);
	return rc;
}

int
fio_mkdir_p(const char *path, mode_t mode)
{
	return mkdir_path(path, mode, false);
}

int
fio_mkdir_durable(const char *path, mode_t mode)
{
	return mkdir_path(path, mode, true);
}

int
fio_rename_durable(const char *from, const char *to)
{
	char	   *from_dir;
	char	   *to_dir;
	int			rc;

	if (fio_sys.rename(from, to) != 0)
		return error_set(ERR_FILE, "could not rename file \"%s\" to \"%s\": %s", from, to, strerror(errno));
	from_dir = parent_dir(from);
	to_dir = parent_dir(to);
	rc = fio_fsync_dir(to_dir);
	if (rc == 0 && strcmp(from_dir, to_dir) != 0)
		rc = fio_fsync_dir(from_dir);
	free(from_dir);
	free(to_dir);
	return rc;
}

int
fio_unlink(const char *path)
{
	if (fio_sys.unlink(path) != 0 && errno != ENOENT)
		return error_set(ERR_FILE, "could not remove file \"%s\": %s", path, strerror(errno));
	return 0;
}

/* nftw callback: directories come after their contents (FTW_DEPTH), symlinks are entries (FTW_PHYS). */
static int
remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	if (type == FTW_NS)
		return error_set(ERR_FILE, "could not stat file \"%s\": %s", path, strerror(errno));
	if (type == FTW_DP || type == FTW_DNR)
	{
		if (rmdir(path) != 0 && errno != ENOENT)
			return error_set(ERR_FILE, "could not remove directory \"%s\": %s", path, strerror(errno));
		return 0;
	}
	return fio_unlink(path);
}

int
fio_remove_tree(const char *path)
{
	struct stat st;
	int			rc;

	if (lstat(path, &st) != 0)
	{
		if (errno == ENOENT)
			return 0;
		return error_set(ERR_FILE, "could not stat file \"%s\": %s", path, strerror(errno));
	}
	if (!S_ISDIR(st.st_mode))
		return fio_unlink(path);
	rc = nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	if (rc == -1)
		return error_set(ERR_FILE, "could not remove directory \"%s\": %s", path, strerror(errno));
	return rc;
}

bool
fio_exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

int
fio_read_file(const char *path, size_t max, char **data, size_t *len)
{
	struct stat st;
	char	   *buf = NULL;
	size_t		cap;
	size_t		have = 0;
	int			rc = 0;
	int			fd = fio_sys.open(path, O_RDONLY | O_CLOEXEC, 0);

	if (fd < 0)
		return error_set(ERR_FILE, "could not open file \"%s\": %s", path, strerror(errno));
	/* Keeps max + 1 and the doubling below from overflowing. */
	if (max > SIZE_MAX / 4)
		max = SIZE_MAX / 4;
	/* Size from fstat is a hint only (files change, /proc reports 0); reading one byte past max detects "too large". */
	cap = (fstat(fd, &st) == 0 && st.st_size > 0 && (uintmax_t) st.st_size <= max) ? (size_t) st.st_size + 1 : 4096;
	if (cap > max + 1)
		cap = max + 1;
	buf = xmalloc(cap + 1);
	for (;;)
	{
		size_t		got;

		rc = fio_read_full(fd, buf + have, cap - have, &got, path);
		if (rc != 0)
			goto out;
		have += got;
		if (have < cap)
			break;
		if (have > max)
		{
			rc = error_set(ERR_FORMAT, "file \"%s\" is larger than %zu bytes", path, max);
			goto out;
		}
		cap = cap * 2 > max + 1 ? max + 1 : cap * 2;
		buf = xrealloc(buf, cap + 1);
	}
	buf[have] = '\0';
	*data = buf;
	*len = have;
	buf = NULL;
out:
	free(buf);
	/* Nothing written, so nothing a failed close could lose. */
	fio_sys.close(fd);
	return rc;
}

/* Forget the file: after this, abort and commit have nothing left to do. */
static void
atomic_reset(fio_atomic *f)
{
	free(f->tmp_path);
	free(f->path);
	f->fd = -1;
	f->tmp_path = NULL;
	f->path = NULL;
}

int
fio_atomic_open(fio_atomic *f, const char *path, mode_t mode)
{
	/* pid + counter makes the name unique across processes and across threads of one process. */
	static atomic_uint counter;

	f->written = 0;
	f->path = xstrdup(path);
	f->tmp_path = xasprintf("%s.tmp.%ld.%u", path, (long) getpid(), atomic_fetch_add(&counter, 1));
	f->fd = fio_sys.open(f->tmp_path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, mode);
	if (f->fd < 0)
	{
		int			rc = error_set(ERR_FILE, "could not create file \"%s\": %s", f->tmp_path, strerror(errno));

		atomic_reset(f);
		return rc;
	}
	return 0;
}

int
fio_atomic_write(fio_atomic *f, const void *buf, size_t n)
{
	int			rc = fio_write_full(f->fd, buf, n, f->tmp_path);

	if (rc == 0)
		f->written += n;
	return rc;
}

/* Put the synced temp file in place: rename over path, or link so that an existing path wins. */
static int
atomic_place(fio_atomic *f, bool no_replace)
{
	if (!no_replace)
	{
		if (fio_sys.rename(f->tmp_path, f->path) != 0)
			return error_set(ERR_FILE, "could not rename file \"%s\" to \"%s\": %s", f->tmp_path, f->path,
							 strerror(errno));
		return 0;
	}
	if (link(f->tmp_path, f->path) != 0)
	{
		if (errno == EEXIST)
			return error_set(ERR_CONFLICT, "could not create file \"%s\": it already exists", f->path);
		return error_set(ERR_FILE, "could not link file \"%s\" to \"%s\": %s", f->tmp_path, f->path, strerror(errno));
	}
	return fio_unlink(f->tmp_path);
}

int
fio_atomic_commit(fio_atomic *f, bool no_replace)
{
	int			fd = f->fd;
	int			rc = fio_fsync(fd, f->tmp_path);

	/* The descriptor is gone whatever close says; abort must not close it again. */
	f->fd = -1;
	if (rc == 0)
		rc = close_fd(fd, f->tmp_path);
	else
		fio_sys.close(fd);
	if (rc == 0)
		rc = atomic_place(f, no_replace);
	if (rc == 0)
	{
		/* The temp name is gone: keep abort from unlinking it. */
		free(f->tmp_path);
		f->tmp_path = NULL;
		/*
		 * A new name whose directory could not be fsynced is taken away
		 * again (best effort), so that the caller's retry writes it anew
		 * instead of finding it and taking it as stored.  A replaced name
		 * stays: the old content is gone either way.
		 */
		if ((rc = fio_fsync_parent(f->path)) != 0 && no_replace)
			(void) fio_sys.unlink(f->path);
	}
	fio_atomic_abort(f);
	return rc;
}

void
fio_atomic_abort(fio_atomic *f)
{
	if (f->fd >= 0)
		fio_sys.close(f->fd);
	if (f->tmp_path != NULL)
		unlink(f->tmp_path);
	atomic_reset(f);
}

int
fio_write_file_atomic(const char *path, const void *buf, size_t n, mode_t mode)
{
	fio_atomic	f;
	int			rc = fio_atomic_open(&f, path, mode);

	if (rc != 0)
		return rc;
	rc = fio_atomic_write(&f, buf, n);
	if (rc != 0)
	{
		fio_atomic_abort(&f);
		return rc;
	}
	return fio_atomic_commit(&f, false);
}

int
fio_lock(const char *path, bool wait, int *fd_out)
{
	int			fd = fio_sys.open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
	int			r;

	if (fd < 0)
		return error_set(ERR_FILE, "could not open lock file \"%s\": %s", path, strerror(errno));
	while ((r = flock(fd, LOCK_EX | (wait ? 0 : LOCK_NB))) != 0 && errno == EINTR)
		;
	if (r != 0)
	{
		int			rc = errno == EWOULDBLOCK
			? error_set(ERR_LOCK, "could not lock file \"%s\": another process holds the lock", path)
			: error_set(ERR_FILE, "could not lock file \"%s\": %s", path, strerror(errno));

		fio_sys.close(fd);
		return rc;
	}
	*fd_out = fd;
	return 0;
}

void
fio_unlock(int fd)
{
	/* Closing the only descriptor of the open file description releases the flock. */
	if (fd >= 0)
		fio_sys.close(fd);
}
