/*
 * test_fileio.c: fileio under injected faults (short writes, EINTR, ENOSPC, a failing fsync),
 * atomic files, directories, locks and bounded reads.
 */
#include "harness.h"

#include "error.h"
#include "fileio.h"
#include "mem.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/test_fileio.XXXXXX";

static char *
tpath(const char *name)
{
	return xasprintf("%s/%s", tmpdir, name);
}

/* Fault injection: writes of at most 3 bytes, and EINTR on every other call. */
static int	write_calls;

static ssize_t
write_short_eintr(int fd, const void *buf, size_t n)
{
	if (write_calls++ % 2 == 0)
	{
		errno = EINTR;
		return -1;
	}
	return write(fd, buf, n < 3 ? n : 3);
}

static ssize_t
pwrite_short_eintr(int fd, const void *buf, size_t n, off_t off)
{
	if (write_calls++ % 2 == 0)
	{
		errno = EINTR;
		return -1;
	}
	return pwrite(fd, buf, n < 3 ? n : 3, off);
}

static ssize_t
read_short_eintr(int fd, void *buf, size_t n)
{
	if (write_calls++ % 2 == 0)
	{
		errno = EINTR;
		return -1;
	}
	return read(fd, buf, n < 3 ? n : 3);
}

/* The disk fills after 10 bytes. */
static size_t enospc_room;

static ssize_t
write_enospc(int fd, const void *buf, size_t n)
{
	if (enospc_room == 0)
	{
		errno = ENOSPC;
		return -1;
	}
	n = n < enospc_room ? n : enospc_room;
	enospc_room -= n;
	return write(fd, buf, n);
}

static int
fsync_eio(int fd)
{
	errno = EIO;
	return -1;
}

static void
check_file(const char *path, const char *expect)
{
	char	   *data = NULL;
	size_t		len = 0;

	CHECK_EQ_INT(fio_read_file(path, 1 << 20, &data, &len), 0);
	CHECK_EQ_INT(len, strlen(expect));
	CHECK_EQ_STR(data, expect);
	free(data);
}

static int
open_new(const char *path)
{
	return open(path, O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0600);
}

static void
test_short_writes_eintr(void)
{
	const char *text = "the quick brown fox jumps over the lazy dog, twice: the quick brown fox";
	char	   *path = tpath("short");
	int			fd = open_new(path);
	char		back[128];
	size_t		got = 0;

	fio_sys.write = write_short_eintr;
	fio_sys.pwrite = pwrite_short_eintr;
	fio_sys.read = read_short_eintr;
	write_calls = 0;
	CHECK_EQ_INT(fio_write_full(fd, text, strlen(text), path), 0);
	CHECK(write_calls > (int) strlen(text) / 3);
	CHECK_EQ_INT(fio_pwrite_full(fd, "QUICK", 5, 4, path), 0);
	fio_sys_reset();
	check_file(path, "the QUICK brown fox jumps over the lazy dog, twice: the quick brown fox");

	fio_sys.read = read_short_eintr;
	CHECK_EQ_INT(lseek(fd, 0, SEEK_SET), 0);
	CHECK_EQ_INT(fio_read_full(fd, back, sizeof(back), &got, path), 0);
	CHECK_EQ_INT(got, strlen(text));
	CHECK(memcmp(back, "the QUICK", 9) == 0);
	fio_sys_reset();
	close(fd);
	free(path);
}

static void
test_enospc(void)
{
	char	   *path = tpath("full");
	int			fd = open_new(path);

	fio_sys.write = write_enospc;
	enospc_room = 10;
	CHECK_EQ_INT(fio_write_full(fd, "0123456789abcdefghij", 20, path), ERR_FILE);
	CHECK_CONTAINS(error_msg(), "wrote 10 of 20 bytes");
	CHECK_CONTAINS(error_msg(), path);
	CHECK_CONTAINS(error_msg(), strerror(ENOSPC));
	fio_sys_reset();
	close(fd);
	free(path);
}

static void
test_pread(void)
{
	char	   *path = tpath("pread");
	int			fd = open_new(path);
	char		buf[8];

	CHECK_EQ_INT(fio_write_full(fd, "abcdefghij", 10, path), 0);
	CHECK_EQ_INT(fio_pread_full(fd, buf, 4, 3, path), 0);
	CHECK(memcmp(buf, "defg", 4) == 0);
	CHECK_EQ_INT(fio_pread_full(fd, buf, 8, 6, path), ERR_FILE);
	CHECK_CONTAINS(error_msg(), "read 4 of 8 bytes");
	CHECK_CONTAINS(error_msg(), path);
	close(fd);
	free(path);
}

static int
count_entries(const char *dir)
{
	char	   *cmd = xasprintf("ls -A '%s' | wc -l", dir);
	FILE	   *p = popen(cmd, "r");
	int			n = -1;

	CHECK(p != NULL && fscanf(p, "%d", &n) == 1);
	pclose(p);
	free(cmd);
	return n;
}

static void
test_atomic(void)
{
	char	   *dir = tpath("atomic");
	char	   *path = tpath("atomic/file");
	fio_atomic	f;

	CHECK_EQ_INT(fio_mkdir_p(dir, 0700), 0);

	/* Invisible until commit; the temp file sits in the same directory. */
	CHECK_EQ_INT(fio_atomic_open(&f, path, 0640), 0);
	CHECK_EQ_INT(fio_atomic_write(&f, "hello ", 6), 0);
	CHECK_EQ_INT(fio_atomic_write(&f, "world", 5), 0);
	CHECK_EQ_INT(f.written, 11);
	CHECK(!fio_exists(path));
	CHECK(str_starts_with(f.tmp_path, path));
	CHECK(strstr(f.tmp_path, ".tmp.") != NULL);
	CHECK(fio_exists(f.tmp_path));
	CHECK_EQ_INT(fio_atomic_commit(&f, false), 0);
	check_file(path, "hello world");
	CHECK_EQ_INT(count_entries(dir), 1);

	/* Replace by rename. */
	CHECK_EQ_INT(fio_write_file_atomic(path, "second", 6, 0640), 0);
	check_file(path, "second");

	/* Abort leaves nothing behind and the old content in place. */
	CHECK_EQ_INT(fio_atomic_open(&f, path, 0640), 0);
	CHECK_EQ_INT(fio_atomic_write(&f, "junk", 4), 0);
	fio_atomic_abort(&f);
	check_file(path, "second");
	CHECK_EQ_INT(count_entries(dir), 1);

	/* no_replace: an existing file wins and the temp file goes. */
	CHECK_EQ_INT(fio_atomic_open(&f, path, 0640), 0);
	CHECK_EQ_INT(fio_atomic_write(&f, "third", 5), 0);
	CHECK_EQ_INT(fio_atomic_commit(&f, true), ERR_CONFLICT);
	CHECK_CONTAINS(error_msg(), path);
	check_file(path, "second");
	CHECK_EQ_INT(count_entries(dir), 1);
	fio_atomic_abort(&f);		/* harmless after commit */

	/* no_replace on a new name works. */
	free(path);
	path = tpath("atomic/new");
	CHECK_EQ_INT(fio_atomic_open(&f, path, 0640), 0);
	CHECK_EQ_INT(fio_atomic_write(&f, "fresh", 5), 0);
	CHECK_EQ_INT(fio_atomic_commit(&f, true), 0);
	check_file(path, "fresh");
	CHECK_EQ_INT(count_entries(dir), 2);

	/* A failed fsync fails the commit: nothing is published, no temp file stays. */
	free(path);
	path = tpath("atomic/unsynced");
	CHECK_EQ_INT(fio_atomic_open(&f, path, 0640), 0);
	CHECK_EQ_INT(fio_atomic_write(&f, "data", 4), 0);
	fio_sys.fsync = fsync_eio;
	CHECK_EQ_INT(fio_atomic_commit(&f, false), ERR_FILE);
	fio_sys_reset();
	CHECK_CONTAINS(error_msg(), "could not fsync file");
	CHECK(!fio_exists(path));
	CHECK_EQ_INT(count_entries(dir), 2);

	/* A missing directory is reported with the temp path. */
	free(path);
	path = tpath("nodir/file");
	CHECK_EQ_INT(fio_write_file_atomic(path, "x", 1, 0640), ERR_FILE);
	CHECK_CONTAINS(error_msg(), path);
	free(path);
	free(dir);
}

static void
test_mkdir_remove(void)
{
	char	   *deep = tpath("a/b/c/d/");
	char	   *file = tpath("a/b/c/d/f");
	char	   *link_target = tpath("keep");
	char	   *link = tpath("a/b/link");
	char	   *top = tpath("a");
	struct stat st;

	CHECK_EQ_INT(fio_mkdir_p(deep, 0750), 0);
	CHECK(stat(deep, &st) == 0 && S_ISDIR(st.st_mode));
	CHECK_EQ_INT(fio_mkdir_p(deep, 0750), 0);	/* existing is fine */
	CHECK_EQ_INT(fio_mkdir_durable(file, 0750), 0);
	CHECK(stat(file, &st) == 0 && S_ISDIR(st.st_mode));
	CHECK_EQ_INT(rmdir(file), 0);

	/* A file in the way. */
	CHECK_EQ_INT(fio_write_file_atomic(file, "x", 1, 0600), 0);
	free(deep);
	deep = tpath("a/b/c/d/f/g");
	CHECK_EQ_INT(fio_mkdir_p(file, 0750), ERR_FILE);
	CHECK_CONTAINS(error_msg(), file);
	CHECK_EQ_INT(fio_mkdir_durable(deep, 0750), ERR_FILE);

	/* remove_tree does not follow symlinks: the target directory survives. */
	CHECK_EQ_INT(fio_mkdir_p(link_target, 0750), 0);
	free(deep);
	deep = tpath("keep/precious");
	CHECK_EQ_INT(fio_write_file_atomic(deep, "p", 1, 0600), 0);
	CHECK_EQ_INT(symlink(link_target, link), 0);
	CHECK_EQ_INT(fio_remove_tree(top), 0);
	CHECK(!fio_exists(top));
	CHECK(fio_exists(deep));
	CHECK_EQ_INT(fio_remove_tree(top), 0);	/* ENOENT is fine */
	CHECK_EQ_INT(fio_unlink(top), 0);
	CHECK_EQ_INT(fio_remove_tree(deep), 0);	/* a plain file */
	CHECK(!fio_exists(deep));

	free(deep);
	free(file);
	free(link_target);
	free(link);
	free(top);
}

static void
test_rename_durable(void)
{
	char	   *from = tpath("r1");
	char	   *to_dir = tpath("rdir");
	char	   *to = tpath("rdir/r2");

	CHECK_EQ_INT(fio_write_file_atomic(from, "moved", 5, 0600), 0);
	CHECK_EQ_INT(fio_mkdir_p(to_dir, 0700), 0);
	CHECK_EQ_INT(fio_rename_durable(from, to), 0);
	CHECK(!fio_exists(from));
	check_file(to, "moved");
	CHECK_EQ_INT(fio_rename_durable(from, to), ERR_FILE);
	CHECK_CONTAINS(error_msg(), from);
	CHECK_EQ_INT(fio_fsync_parent("relative-name"), 0);	/* parent is "." */
	free(from);
	free(to_dir);
	free(to);
}

static void
test_lock(void)
{
	char	   *path = tpath("lock");
	int			fd1 = -1;
	int			fd2 = -1;
	struct stat st;

	CHECK_EQ_INT(fio_lock(path, false, &fd1), 0);
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0640);
	/* A second open file description conflicts even in the same process. */
	CHECK_EQ_INT(fio_lock(path, false, &fd2), ERR_LOCK);
	CHECK_CONTAINS(error_msg(), path);
	CHECK(fcntl(fd1, F_GETFD) & FD_CLOEXEC);
	fio_unlock(fd1);
	CHECK_EQ_INT(fio_lock(path, true, &fd2), 0);
	fio_unlock(fd2);
	free(path);
	path = tpath("missing/lock");
	CHECK_EQ_INT(fio_lock(path, false, &fd1), ERR_FILE);
	CHECK_CONTAINS(error_msg(), path);
	free(path);
}

static void
test_read_file(void)
{
	char	   *path = tpath("big");
	char	   *data = NULL;
	size_t		len = 0;
	size_t		size = 100000;
	char	   *content = malloc(size);

	for (size_t i = 0; i < size; i++)
		content[i] = (char) ('a' + i % 26);
	CHECK_EQ_INT(fio_write_file_atomic(path, content, size, 0600), 0);

	CHECK_EQ_INT(fio_read_file(path, size, &data, &len), 0);
	CHECK_EQ_INT(len, size);
	CHECK(data != NULL && memcmp(data, content, size) == 0 && data[size] == '\0');
	free(data);

	CHECK_EQ_INT(fio_read_file(path, size - 1, &data, &len), ERR_FORMAT);
	CHECK_CONTAINS(error_msg(), path);
	CHECK_CONTAINS(error_msg(), "larger than 99999 bytes");

	/* The size from fstat is only a hint: /proc files report 0. */
	CHECK_EQ_INT(fio_read_file("/proc/self/status", 1 << 20, &data, &len), 0);
	CHECK(len > 0 && strstr(data, "Name:") != NULL);
	free(data);

	CHECK_EQ_INT(fio_write_file_atomic(path, "", 0, 0600), 0);
	CHECK_EQ_INT(fio_read_file(path, 0, &data, &len), 0);
	CHECK_EQ_INT(len, 0);
	CHECK_EQ_STR(data, "");
	free(data);

	free(path);
	path = tpath("absent");
	CHECK_EQ_INT(fio_read_file(path, 10, &data, &len), ERR_FILE);
	CHECK_CONTAINS(error_msg(), path);
	CHECK_CONTAINS(error_msg(), strerror(ENOENT));
	free(path);
	free(content);
}

/* PGKEEP_FAULT_FSYNC_EIO: fsync fails with EIO for the paths ending in the suffix, and only for them. */
static void
test_fsync_fail(void)
{
	char	   *hit = tpath("sub/victim");
	char	   *miss = tpath("sub/other-victim.x");
	char	   *dir = tpath("sub");
	int			fd;

	CHECK_EQ_INT(fio_mkdir_p(dir, 0700), 0);
	CHECK_EQ_INT(fio_write_file_atomic(hit, "a", 1, 0600), 0);
	CHECK_EQ_INT(fio_write_file_atomic(miss, "b", 1, 0600), 0);
	fio_sys_fsync_fail("/sub/victim");
	fd = open(hit, O_RDONLY | O_CLOEXEC);
	CHECK_EQ_INT(fio_fsync(fd, hit), ERR_FILE);
	CHECK_CONTAINS(error_msg(), hit);
	CHECK_CONTAINS(error_msg(), strerror(EIO));
	close(fd);
	fd = open(miss, O_RDONLY | O_CLOEXEC);
	CHECK_EQ_INT(fio_fsync(fd, miss), 0);
	close(fd);
	CHECK_EQ_INT(fio_fsync_dir(dir), 0);
	/* A directory's fsync fails the same way. */
	fio_sys_reset();
	fio_sys_fsync_fail("/sub");
	CHECK_EQ_INT(fio_fsync_dir(dir), ERR_FILE);
	CHECK_CONTAINS(error_msg(), dir);
	/* So does syncfs on the directory, and only on it. */
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	CHECK_EQ_INT(fio_syncfs(fd, dir), ERR_FILE);
	CHECK_CONTAINS(error_msg(), "could not sync the file system of");
	CHECK_CONTAINS(error_msg(), strerror(EIO));
	close(fd);
	fd = open(hit, O_RDONLY | O_CLOEXEC);
	CHECK_EQ_INT(fio_syncfs(fd, hit), 0);
	close(fd);
	fio_sys_reset();
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	CHECK_EQ_INT(fio_syncfs(fd, dir), 0);
	close(fd);
	error_clear();
	free(hit);
	free(miss);
	free(dir);
}

int
main(void)
{
	if (mkdtemp(tmpdir) == NULL)
	{
		perror("mkdtemp");
		return 1;
	}
	RUN(test_short_writes_eintr);
	RUN(test_enospc);
	RUN(test_pread);
	RUN(test_atomic);
	RUN(test_mkdir_remove);
	RUN(test_rename_durable);
	RUN(test_lock);
	RUN(test_read_file);
	RUN(test_fsync_fail);
	CHECK_EQ_INT(fio_remove_tree(tmpdir), 0);
	CHECK(!fio_exists(tmpdir));
	return harness_done();
}
