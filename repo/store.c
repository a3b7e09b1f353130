/*
 * store.c: the content-addressed block store of one stanza (store.h; the
 * byte layout is in doc/repository-format.md, section "Block store").
 *
 * A handle appends new blocks to its own open pack, pack/XX/ID.pack.tmp,
 * through a write buffer, and remembers them in a small in-memory set.
 * Sealing a pack fsyncs it, renames it to ID.pack, and only then inserts its
 * blocks into "index", an on-disk open-addressing hash table, under
 * index.lock.  Lookups pread a few slots of that table and load nothing
 * else: memory stays bounded whatever the repository's size, and the page
 * cache does the caching.  Slots, record headers and stored bytes carry
 * CRC-32C checks, so torn or garbage bytes are detected instead of trusted:
 * a bad slot reads as empty, a bad record is ERR_CORRUPT.
 *
 * Index work never makes a writer wait for another in the common case: at a
 * seal the lock is only tried; when another handle holds it, the sealed
 * pack's entries stay in the in-memory set (they are durable already) and
 * go in with the next seal's, up to DEFER_PACKS packs; store_flush waits.
 * Inserts are batched: sorted by home slot, read and written back in runs
 * of slots ("batch insert" below), and a growing table is copied in large
 * sequential pieces through a bounded write-back window ("growth").
 *
 * Reads of sealed packs go through a few read-ahead windows per handle (see
 * "reading" below): restore reads blocks in the order they were stored, so
 * most reads are served from memory.  Sealed packs never change, so bytes
 * kept by (pack id, offset) cannot go stale.
 */
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <nmmintrin.h>
#define CRC32C_HW 1
#endif

#include "error.h"
#include "fileio.h"
#include "log.h"
#include "mem.h"

#define PACK_MAGIC "PGKPACK1"
#define PACK_VERSION 1
#define PACK_HEADER_SIZE 16
#define RECORD_MAGIC "PGKR"
#define RECORD_HEADER_SIZE 56

#define INDEX_MAGIC "PGKINDX1"
#define INDEX_VERSION 1
#define INDEX_HEADER_SIZE 64
#define SLOT_SIZE 64
#define INDEX_INITIAL_SLOTS (64u * 1024)
/* Linear probing stays short below this load; more entries make the table double. */
#define INDEX_MAX_LOAD_PERCENT 60
/* Slots read per pread: at load <= 0.6 nearly every probe run fits in one read. */
#define PROBE_SLOTS 8
/*
 * Batch insert: entries sorted by home slot are placed in runs of slots read
 * with one pread of at most BATCH_READ_SLOTS (64 KiB), plus BATCH_MARGIN_SLOTS
 * past the last home for its probe run (more margins are read if a run goes
 * on).  Changed slots less than a 4 KiB page apart are written back with one
 * pwrite: the unchanged slots between them are rewritten with the same bytes
 * (which a lockless reader cannot see torn) and no page is dirtied that an
 * entry did not dirty anyway.
 */
#define BATCH_READ_SLOTS 1024
#define BATCH_MARGIN_SLOTS 16
#define BATCH_RUN_MAX (BATCH_READ_SLOTS + 16 * BATCH_MARGIN_SLOTS)
#define MERGE_GAP_SLOTS 64
/* Growth: the old table is read GROW_READ_SLOTS (256 KiB) at a time; the new one written through a 1 MiB window. */
#define GROW_READ_SLOTS 4096
#define GROW_WINDOW_SLOTS 16384
/* Lookups between checks that another handle replaced the index file. */
#define INDEX_RECHECK 1024

#define BLOCK_RAW_MAX (1024u * 1024)
/* Compressing incompressible data makes it slightly larger. */
#define BLOCK_STORED_MAX (BLOCK_RAW_MAX + 64u * 1024)
/* A pack is sealed at STORE_PACK_TARGET bytes or this many blocks, which bounds the pending set. */
#define PACK_MAX_BLOCKS 8192
/*
 * Packs of a handle not yet in the index: its open pack and the sealed ones
 * whose insert was deferred because another handle held index.lock.  The
 * seal that would make DEFER_PACKS sealed packs pending waits for the lock.
 */
#define DEFER_PACKS 4
#define PEND_MAX (DEFER_PACKS * PACK_MAX_BLOCKS)
#define PENDING_SLOTS (2 * PEND_MAX)
#define WRITE_BUFFER_SIZE (1024u * 1024)
#define PACK_FD_CACHE 16
/*
 * Read-ahead windows over sealed packs: a handle follows up to READ_WINDOWS
 * interleaved runs of records (say, a file whose unchanged blocks sit in an
 * older pack), each window holding at most READ_WINDOW_MAX bytes.  A run
 * starts with a read of just its record; each further miss of the same run
 * reads twice as much as the last, from READ_WINDOW_MIN up to the maximum,
 * so scattered reads read little more than their records.  Memory: at most
 * READ_WINDOWS * READ_WINDOW_MAX (4 MiB) per handle, allocated on first use.
 */
#define READ_WINDOWS 4
/* Misses remembered for the puts that follow lookups (REPO_EXISTS_MAX: a backup's batch), and how far a put looks among them. */
#define STORE_MISSES 1024
#define MISS_SCAN 8
#define READ_WINDOW_MIN (64u * 1024)
#define READ_WINDOW_MAX (1024u * 1024)

/* An index table file: the live "index", or one being built. */
typedef struct table
{
	int			fd;
	char	   *path;
	uint64_t	slots;
	uint64_t	count;          /* entries; advisory on disk, recounted when the table is copied */
	dev_t		dev;            /* identity of the open file, to notice a replaced index */
	ino_t		ino;
} table;

/* A block of this handle not in the index yet: in its open pack or in a sealed pack not indexed yet. */
typedef struct pending
{
	uint8_t		id[HASH_LEN];
	uint32_t	offset;
	uint32_t	stored_len;
	uint32_t	raw_len;
	uint8_t		ctype;
	uint8_t		pack;           /* index into pend_packs */
} pending;

/* A sealed pack open for reading. */
typedef struct pack_file
{
	int			fd;
	uint64_t	pack_id;
	uint64_t	size;
	uint64_t	used;           /* LRU tick */
	char	   *path;
	bool		advised;        /* the read-ahead hint was given (window_fill, in a long run) */
} pack_file;

/* A read-ahead window: bytes [start, start + len) of a sealed pack. */
typedef struct window
{
	uint8_t    *buf;            /* READ_WINDOW_MAX bytes, allocated at first use */
	uint64_t	pack_id;
	uint64_t	start;
	uint32_t	len;            /* 0 when empty */
	uint32_t	ahead;          /* bytes the last fill asked for */
	uint64_t	next;           /* end of the last record read through it */
	uint64_t	used;           /* LRU tick */
} window;

/* A decoded record header. */
typedef struct record
{
	uint8_t		id[HASH_LEN];
	uint8_t		ctype;
	uint32_t	raw_len;
	uint32_t	stored_len;
	uint32_t	data_crc;
} record;

struct store
{
	char	   *dir;
	char	   *lock_path;
	table		index;
	uint32_t	lookups;        /* since the last check for a replaced index */
	bool		index_dirty;    /* inserted into since the last fsync of the index */
	/*
	 * The ids the index lacked at the latest lookups, oldest first (a
	 * ring): a put of one of them soon after (a backup asks about a batch of
	 * ids, then puts the missing ones in order) skips the index pread.
	 */
	uint8_t		misses[STORE_MISSES][HASH_LEN];
	uint32_t	miss_head;
	uint32_t	miss_n;

	/* The open pack; pack_fd < 0 when none. */
	int			pack_fd;
	uint64_t	pack_id;
	char	   *pack_path;
	uint64_t	pack_len;       /* written plus buffered */
	uint8_t    *wbuf;
	size_t		wlen;
	/*
	 * Blocks not in the index yet: those of nsealed sealed packs (deferred
	 * inserts), then those of the open pack from pend[open_first] on.
	 */
	pending    *pend;
	uint32_t	pend_cap;       /* entries allocated: a pack's worth more for each deferred pack */
	uint32_t	npend;
	uint32_t	open_first;
	uint16_t   *pend_slots;     /* open addressing over pend: index + 1, 0 when empty */
	uint64_t	pend_packs[DEFER_PACKS];        /* the sealed packs, then the open one at [nsealed] */
	uint32_t	nsealed;

	pack_file	packs[PACK_FD_CACHE];
	uint64_t	tick;
	window		windows[READ_WINDOWS];
	uint64_t	window_tick;

	uint64_t	stat_blocks;
	uint64_t	stat_bytes;

	int			lease_fd;       /* gc.lock, flocked shared (exclusive while collecting); -1 on a read-only store */
};

/* ---- encoding ---- */

static void
put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t) (v >> (8 * i));
}

static void
put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t) (v >> (8 * i));
}

static uint32_t
get32(const uint8_t *p)
{
	return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 | (uint32_t) p[3] << 24;
}

static uint64_t
get64(const uint8_t *p)
{
	return (uint64_t) get32(p) | (uint64_t) get32(p + 4) << 32;
}

static uint32_t crc_table[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;
static bool crc_hw;

static void
crc_init(void)
{
#ifdef CRC32C_HW
	__builtin_cpu_init();
	crc_hw = __builtin_cpu_supports("sse4.2");
#endif
	for (uint32_t i = 0; i < 256; i++)
	{
		uint32_t	c = i;

		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
		crc_table[0][i] = c;
	}
	for (int t = 1; t < 8; t++)
		for (uint32_t i = 0; i < 256; i++)
			crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
}

/* CRC-32C (Castagnoli) update without the inversions, eight bytes per step from tables. */
static uint32_t
crc32c_table(uint32_t c, const uint8_t *p, size_t n)
{
	for (; n >= 8; p += 8, n -= 8)
	{
		uint32_t	lo = c ^ get32(p);
		uint32_t	hi = get32(p + 4);

		c = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
			crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^
			crc_table[3][hi & 0xff] ^ crc_table[2][(hi >> 8) & 0xff] ^
			crc_table[1][(hi >> 16) & 0xff] ^ crc_table[0][hi >> 24];
	}
	while (n-- > 0)
		c = (c >> 8) ^ crc_table[0][(c ^ *p++) & 0xff];
	return c;
}

#ifdef CRC32C_HW
/* The same with SSE 4.2's crc32 instruction, which computes exactly CRC-32C. */
__attribute__((target("sse4.2")))
static uint32_t
crc32c_sse42(uint32_t c, const uint8_t *p, size_t n)
{
	uint64_t	c64 = c;

	for (; n >= 8; p += 8, n -= 8)
	{
		uint64_t	v;

		memcpy(&v, p, 8);
		c64 = _mm_crc32_u64(c64, v);
	}
	c = (uint32_t) c64;
	while (n-- > 0)
		c = _mm_crc32_u8(c, *p++);
	return c;
}
#endif

uint32_t
store_crc32c(const void *data, size_t n, bool hw)
{
	pthread_once(&crc_once, crc_init);
#ifdef CRC32C_HW
	if (hw && crc_hw)
		return ~crc32c_sse42(0xffffffffu, data, n);
#endif
	return ~crc32c_table(0xffffffffu, data, n);
}

/* CRC-32C: it runs over every stored byte, so with the crc32 instruction when the CPU has it. */
static uint32_t
crc32c(const void *data, size_t n)
{
	return store_crc32c(data, n, true);
}

static void
record_encode(uint8_t *h, const uint8_t id[HASH_LEN], compress_type ctype, uint32_t raw_len,
			  uint32_t stored_len, uint32_t data_crc)
{
	memset(h, 0, RECORD_HEADER_SIZE);
	memcpy(h, RECORD_MAGIC, 4);
	memcpy(h + 4, id, HASH_LEN);
	h[36] = (uint8_t) ctype;
	put32(h + 40, raw_len);
	put32(h + 44, stored_len);
	put32(h + 48, data_crc);
	put32(h + 52, crc32c(h, 52));
}

static bool
ctype_valid(unsigned ctype)
{
	return ctype == COMPRESS_NONE || ctype == COMPRESS_ZST || ctype == COMPRESS_LZ4;
}

/* Decode a record header; false when it is not one this version writes. */
static bool
record_decode(const uint8_t *h, record *r)
{
	if (memcmp(h, RECORD_MAGIC, 4) != 0 || get32(h + 52) != crc32c(h, 52))
		return false;
	memcpy(r->id, h + 4, HASH_LEN);
	r->ctype = h[36];
	r->raw_len = get32(h + 40);
	r->stored_len = get32(h + 44);
	r->data_crc = get32(h + 48);
	return ctype_valid(r->ctype) && r->raw_len <= BLOCK_RAW_MAX && r->stored_len <= BLOCK_STORED_MAX;
}

static void
slot_encode(uint8_t *p, const uint8_t id[HASH_LEN], const store_loc *loc)
{
	memset(p, 0, SLOT_SIZE);
	memcpy(p, id, HASH_LEN);
	put64(p + 32, loc->pack_id);
	put64(p + 40, loc->offset);
	put32(p + 48, loc->stored_len);
	put32(p + 52, loc->raw_len);
	p[56] = (uint8_t) loc->ctype;
	put32(p + 60, crc32c(p, 60));
}

/* False for an empty, torn or garbage slot: all read as empty. */
static bool
slot_decode(const uint8_t *p, store_loc *loc)
{
	if (get32(p + 60) != crc32c(p, 60))
		return false;
	loc->pack_id = get64(p + 32);
	loc->offset = get64(p + 40);
	loc->stored_len = get32(p + 48);
	loc->raw_len = get32(p + 52);
	loc->ctype = (compress_type) p[56];
	return true;
}

/* The table slot a probe for id starts at. */
static uint64_t
slot_home(const uint8_t id[HASH_LEN], uint64_t slots)
{
	return get64(id) & (slots - 1);
}

static off_t
slot_offset(uint64_t slot)
{
	return (off_t) (INDEX_HEADER_SIZE + slot * SLOT_SIZE);
}

static const char *
id_hex(const uint8_t id[HASH_LEN], char hex[HASH_HEX_LEN + 1])
{
	hash_to_hex(id, hex);
	return hex;
}

/* ---- index tables ---- */

static void
table_close(table *t)
{
	if (t->fd >= 0)
		close(t->fd);
	free(t->path);
	t->fd = -1;
	t->path = NULL;
}

/* Close and remove a table that was being built. */
static void
table_discard(table *t)
{
	if (t->fd >= 0)
		fio_unlink(t->path);
	table_close(t);
}

static int
table_identify(table *t)
{
	struct stat st;

	if (fstat(t->fd, &st) != 0)
		return error_set(ERR_FILE, "could not stat file \"%s\": %s", t->path, strerror(errno));
	t->dev = st.st_dev;
	t->ino = st.st_ino;
	return 0;
}

/* Read and validate the header (and note the file's identity); an invalid one is ERR_CORRUPT. */
static int
table_read_header(table *t)
{
	uint8_t		h[INDEX_HEADER_SIZE];
	struct stat st;
	uint64_t	slots;
	int			rc = fio_pread_full(t->fd, h, sizeof(h), 0, t->path);

	if (rc != 0)
		return rc;
	if (fstat(t->fd, &st) != 0)
		return error_set(ERR_FILE, "could not stat file \"%s\": %s", t->path, strerror(errno));
	t->dev = st.st_dev;
	t->ino = st.st_ino;
	slots = get64(h + 16);
	if (memcmp(h, INDEX_MAGIC, 8) != 0 || get32(h + 24) != crc32c(h, 24))
		return error_set(ERR_CORRUPT, "block store index \"%s\" has an invalid header", t->path);
	if (get32(h + 8) != INDEX_VERSION)
		return error_set(ERR_CORRUPT, "block store index \"%s\" has unsupported version %" PRIu32, t->path,
						 get32(h + 8));
	if (slots == 0 || (slots & (slots - 1)) != 0 || slots > (UINT64_C(1) << 40) ||
		(uint64_t) st.st_size != INDEX_HEADER_SIZE + slots * SLOT_SIZE)
		return error_set(ERR_CORRUPT, "block store index \"%s\" has %" PRIu64 " slots and %lld bytes, which do not match",
						 t->path, slots, (long long) st.st_size);
	t->slots = slots;
	/* The count only decides when to grow; a wrong one is corrected by the next copy. */
	t->count = get64(h + 32) < slots ? get64(h + 32) : slots;
	return 0;
}

/* Open an index table; ERR_NOT_FOUND when the file does not exist. */
static int
table_open(table *t, const char *path)
{
	int			rc;

	t->path = xstrdup(path);
	t->fd = open(path, O_RDWR | O_CLOEXEC);
	/* A read-only repository (a mounted snapshot) still serves lookups and reads. */
	if (t->fd < 0 && (errno == EROFS || errno == EACCES))
		t->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (t->fd < 0)
		rc = error_set(errno == ENOENT ? ERR_NOT_FOUND : ERR_FILE, "could not open file \"%s\": %s", path,
					   strerror(errno));
	else
		rc = table_read_header(t);
	if (rc != 0)
		table_close(t);
	return rc;
}

/* Create an empty table of slots slots at path (replacing any leftover file there). */
static int
table_create(table *t, const char *path, uint64_t slots)
{
	uint8_t		h[INDEX_HEADER_SIZE] = {0};
	int			rc;

	t->path = xstrdup(path);
	t->slots = slots;
	t->count = 0;
	t->fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	if (t->fd < 0)
	{
		rc = error_set(ERR_FILE, "could not create file \"%s\": %s", path, strerror(errno));
		table_close(t);
		return rc;
	}
	/* A sparse file: all-zero slots fail their check, so they are empty. */
	memcpy(h, INDEX_MAGIC, 8);
	put32(h + 8, INDEX_VERSION);
	put64(h + 16, slots);
	put32(h + 24, crc32c(h, 24));
	if (ftruncate(t->fd, slot_offset(slots)) != 0)
		rc = error_set(ERR_FILE, "could not extend file \"%s\": %s", path, strerror(errno));
	else if ((rc = fio_pwrite_full(t->fd, h, sizeof(h), 0, path)) == 0)
		rc = table_identify(t);
	if (rc != 0)
		table_discard(t);
	return rc;
}

static int
table_write_count(table *t)
{
	uint8_t		b[8];

	put64(b, t->count);
	return fio_pwrite_full(t->fd, b, sizeof(b), 32, t->path);
}

/*
 * Walk the probe run of id from its home slot.  Stops at the slot holding id
 * (*found, *loc filled) or at the first slot without a valid entry; *pos is
 * that slot, UINT64_MAX when every slot holds another id.
 */
static int
table_probe(table *t, const uint8_t id[HASH_LEN], uint64_t *pos, bool *found, store_loc *loc)
{
	uint8_t		buf[PROBE_SLOTS * SLOT_SIZE];
	uint64_t	i = slot_home(id, t->slots);

	*found = false;
	for (uint64_t seen = 0; seen < t->slots; i &= t->slots - 1)
	{
		uint64_t	n = t->slots - i < PROBE_SLOTS ? t->slots - i : PROBE_SLOTS;
		int			rc = fio_pread_full(t->fd, buf, n * SLOT_SIZE, slot_offset(i), t->path);

		if (rc != 0)
			return rc;
		for (const uint8_t *p = buf; p < buf + n * SLOT_SIZE; p += SLOT_SIZE, i++)
		{
			store_loc	l;

			if (!slot_decode(p, &l))
			{
				*pos = i;
				return 0;
			}
			if (memcmp(p, id, HASH_LEN) == 0)
			{
				*pos = i;
				*found = true;
				*loc = l;
				return 0;
			}
		}
		seen += n;
	}
	*pos = UINT64_MAX;
	return 0;
}

/* Insert unless present.  A torn or garbage slot is reused: it held nothing readable. */
static int
table_insert(table *t, const uint8_t id[HASH_LEN], const store_loc *loc)
{
	uint8_t		slot[SLOT_SIZE];
	uint64_t	pos;
	bool		found;
	store_loc	old;
	int			rc = table_probe(t, id, &pos, &found, &old);

	if (rc != 0 || found)
		return rc;
	if (pos == UINT64_MAX)
		return error_set(ERR_CORRUPT, "block store index \"%s\" has no free slot", t->path);
	slot_encode(slot, id, loc);
	rc = fio_pwrite_full(t->fd, slot, sizeof(slot), slot_offset(pos), t->path);
	if (rc == 0)
		t->count++;
	return rc;
}

/* log2 of a power of two. */
static unsigned
log2_of(uint64_t pow2)
{
	return (unsigned) __builtin_ctzll(pow2);
}

/* ---- batch insert ---- */

/*
 * A run of slots of a live table held in memory: slots [base, base + len),
 * with a bit per slot changed since it was read.
 */
typedef struct slot_run
{
	uint8_t    *buf;            /* BATCH_RUN_MAX slots */
	uint64_t	base;
	uint64_t	len;
	uint64_t	dirty[BATCH_RUN_MAX / 64];
} slot_run;

static int
run_read(table *t, slot_run *r, uint64_t base, uint64_t len)
{
	r->base = base;
	r->len = 0;
	memset(r->dirty, 0, sizeof(r->dirty));
	if (len > 0)
	{
		int			rc = fio_pread_full(t->fd, r->buf, len * SLOT_SIZE, slot_offset(base), t->path);

		if (rc != 0)
			return rc;
	}
	r->len = len;
	return 0;
}

/* Read more slots after the run: false when it reaches the end of the table or of the buffer. */
static int
run_extend(table *t, slot_run *r, bool *more)
{
	uint64_t	end = r->base + r->len;
	uint64_t	n = t->slots - end < BATCH_MARGIN_SLOTS ? t->slots - end : BATCH_MARGIN_SLOTS;
	int			rc;

	*more = n > 0 && r->len + n <= BATCH_RUN_MAX;
	if (!*more)
		return 0;
	rc = fio_pread_full(t->fd, r->buf + r->len * SLOT_SIZE, n * SLOT_SIZE, slot_offset(end), t->path);
	if (rc == 0)
		r->len += n;
	return rc;
}

static bool
run_dirty(const slot_run *r, uint64_t i)
{
	return (r->dirty[i / 64] >> (i % 64)) & 1;
}

/* Write the changed slots back: one pwrite for those less than a page apart. */
static int
run_write(table *t, slot_run *r)
{
	int			rc = 0;

	for (uint64_t i = 0; i < r->len && rc == 0; i++)
	{
		uint64_t	last = i;

		if (!run_dirty(r, i))
			continue;
		for (uint64_t j = i + 1; j < r->len && j - last <= MERGE_GAP_SLOTS; j++)
			if (run_dirty(r, j))
				last = j;
		rc = fio_pwrite_full(t->fd, r->buf + i * SLOT_SIZE, (last - i + 1) * SLOT_SIZE, slot_offset(r->base + i),
							 t->path);
		i = last;
	}
	memset(r->dirty, 0, sizeof(r->dirty));
	return rc;
}

/*
 * Insert id into the run, probing from its home (within the run) as
 * table_insert does.  *placed is false when the probe run leaves the run of
 * slots and it cannot be extended (end of the table or of the buffer).
 */
static int
run_insert(table *t, slot_run *r, const uint8_t id[HASH_LEN], const store_loc *loc, bool *placed)
{
	uint64_t	i = slot_home(id, t->slots) - r->base;

	*placed = false;
	for (;; i++)
	{
		uint8_t    *p = r->buf + i * SLOT_SIZE;
		store_loc	l;
		bool		more;
		int			rc;

		if (i == r->len && ((rc = run_extend(t, r, &more)) != 0 || !more))
			return rc;
		if (!slot_decode(p, &l))
		{
			slot_encode(p, id, loc);
			r->dirty[i / 64] |= UINT64_C(1) << (i % 64);
			t->count++;
			break;
		}
		if (memcmp(p, id, HASH_LEN) == 0)
			break;
	}
	*placed = true;
	return 0;
}

/*
 * Sort keys (home << 16 | entry) by home, of bits bits, stably: LSD radix
 * sort by bytes.  Returns keys or tmp, whichever holds the result.
 */
static uint64_t *
sort_by_home(uint64_t *keys, uint64_t *tmp, uint32_t n, unsigned bits)
{
	for (unsigned shift = 16; shift < 16 + bits; shift += 8)
	{
		uint32_t	count[257] = {0};
		uint64_t   *swap;

		for (uint32_t i = 0; i < n; i++)
			count[((keys[i] >> shift) & 0xff) + 1]++;
		for (int d = 0; d < 256; d++)
			count[d + 1] += count[d];
		for (uint32_t i = 0; i < n; i++)
			tmp[count[(keys[i] >> shift) & 0xff]++] = keys[i];
		swap = keys;
		keys = tmp;
		tmp = swap;
	}
	return keys;
}

/*
 * Insert n entries (at most PEND_MAX, distinct ids) unless present, with
 * the result of one table_insert each: sorted by home slot, the entries
 * whose homes lie within BATCH_READ_SLOTS of the first one are inserted into
 * one run of slots read at once, then the changed slots are written back.
 * Lockless readers see each slot either as before, or as the new entry, or
 * torn (empty): never a wrong entry.  A probe run leaving the run of slots
 * (a long run, or one wrapping at the table's end) falls back to
 * table_insert.
 */
static int
table_insert_batch(table *t, const pending *e, uint32_t n, const uint64_t *pack_ids)
{
	uint64_t   *keys = xmalloc((size_t) n * sizeof(uint64_t));
	uint64_t   *tmp = xmalloc((size_t) n * sizeof(uint64_t));
	uint64_t   *sorted;
	slot_run	r = {.buf = xmalloc(BATCH_RUN_MAX * SLOT_SIZE)};
	int			rc = 0;

	for (uint32_t i = 0; i < n; i++)
		keys[i] = slot_home(e[i].id, t->slots) << 16 | i;
	sorted = sort_by_home(keys, tmp, n, log2_of(t->slots));
	for (uint32_t i = 0; i < n && rc == 0;)
	{
		uint64_t	first = sorted[i] >> 16;
		uint32_t	j = i;
		uint64_t	end;

		while (j + 1 < n && (sorted[j + 1] >> 16) + BATCH_MARGIN_SLOTS <= first + BATCH_READ_SLOTS)
			j++;
		end = (sorted[j] >> 16) + BATCH_MARGIN_SLOTS;
		rc = run_read(t, &r, first, (end < t->slots ? end : t->slots) - first);
		for (; i <= j && rc == 0; i++)
		{
			const pending *p = &e[sorted[i] & 0xffff];
			store_loc	loc = {pack_ids[p->pack], p->offset, p->stored_len, p->raw_len, (compress_type) p->ctype};
			bool		placed;

			rc = run_insert(t, &r, p->id, &loc, &placed);
			if (rc == 0 && !placed)
			{
				/* The slots read are written first: table_insert reads the file. */
				if ((rc = run_write(t, &r)) == 0)
					rc = table_insert(t, p->id, &loc);
				r.len = 0;
				i++;
				break;
			}
		}
		if (rc == 0)
			rc = run_write(t, &r);
	}
	free(r.buf);
	free(keys);
	free(tmp);
	return rc;
}

/* ---- growth ---- */

/*
 * The write-back window of a table being built by table_grow_copy: slots
 * [base, base + GROW_WINDOW_SLOTS) are in buf, those below base are on disk,
 * those above were never written (so are empty on disk).  No entry still to
 * come probes a slot below settled.
 */
typedef struct grow_window
{
	table	   *t;
	uint8_t    *buf;
	uint64_t	base;
	uint64_t	used;           /* buf holds nothing beyond its first used slots */
	uint64_t	settled;
} grow_window;

/* Write slots [base, upto) (upto <= base + GROW_WINDOW_SLOTS) and move the window to start at upto. */
static int
grow_advance(grow_window *w, uint64_t upto)
{
	uint64_t	n = upto - w->base;
	uint64_t	write = n < w->used ? n : w->used;
	int			rc = 0;

	if (write > 0)
		rc = fio_pwrite_full(w->t->fd, w->buf, write * SLOT_SIZE, slot_offset(w->base), w->t->path);
	if (rc != 0)
		return rc;
	if (n < w->used)
		memmove(w->buf, w->buf + n * SLOT_SIZE, (w->used - n) * SLOT_SIZE);
	w->used -= write;
	memset(w->buf + w->used * SLOT_SIZE, 0, write * SLOT_SIZE);
	w->base = upto;
	return 0;
}

/* Make the window cover slot p (> its end): write what is settled, or all of it if that is not enough. */
static int
grow_slide(grow_window *w, uint64_t p)
{
	uint64_t	end = w->base + GROW_WINDOW_SLOTS;
	int			rc = 0;

	if (w->settled > w->base)
		rc = grow_advance(w, w->settled < end ? w->settled : end);
	if (rc == 0 && p >= w->base + GROW_WINDOW_SLOTS)
	{
		/* Slots still to be probed fall below the window: they are read and written one by one. */
		rc = grow_advance(w, w->base + GROW_WINDOW_SLOTS);
		w->base = p;
	}
	return rc;
}

/* Insert an entry into the table being built, probing from slot home. */
static int
grow_insert(grow_window *w, const uint8_t id[HASH_LEN], const store_loc *loc, uint64_t home)
{
	table	   *t = w->t;
	uint64_t	p = home;

	for (uint64_t seen = 0; seen < t->slots; seen++, p = (p + 1) & (t->slots - 1))
	{
		uint8_t		disk[SLOT_SIZE];
		uint8_t    *q = disk;
		store_loc	l;
		int			rc = 0;

		if (p >= w->base + GROW_WINDOW_SLOTS)
			rc = grow_slide(w, p);
		if (rc == 0 && p >= w->base)
			q = w->buf + (p - w->base) * SLOT_SIZE;
		else if (rc == 0)
			rc = fio_pread_full(t->fd, disk, SLOT_SIZE, slot_offset(p), t->path);
		if (rc != 0)
			return rc;
		if (slot_decode(q, &l))
		{
			if (memcmp(q, id, HASH_LEN) == 0)
				return 0;
			continue;
		}
		slot_encode(q, id, loc);
		if (q == disk)
			rc = fio_pwrite_full(t->fd, disk, SLOT_SIZE, slot_offset(p), t->path);
		else if (p - w->base + 1 > w->used)
			w->used = p - w->base + 1;
		if (rc == 0)
			t->count++;
		return rc;
	}
	return error_set(ERR_CORRUPT, "block store index \"%s\" has no free slot", t->path);
}

/*
 * Copy the entries of slots [0, to_slot) of the old table whose home in the
 * new one lies in its part number pass (their home in the old table plus
 * pass times its size).  When wrapped is false, the entries before the first
 * empty slot whose home lies after them (the end of a probe run wrapping at
 * the end of the old table) are skipped, and *first_empty is set; when it is
 * true, only those are copied.
 */
static int
grow_pass(table *from, grow_window *w, uint8_t *buf, uint64_t pass, uint64_t to_slot, bool wrapped,
		  uint64_t *first_empty)
{
	uint64_t	old = from->slots;
	uint64_t	parts = w->t->slots / old;
	unsigned	bits = log2_of(old);
	int			rc = 0;

	for (uint64_t i = 0; i < to_slot && rc == 0; i += GROW_READ_SLOTS)
	{
		uint64_t	n = to_slot - i < GROW_READ_SLOTS ? to_slot - i : GROW_READ_SLOTS;

		rc = fio_pread_full(from->fd, buf, n * SLOT_SIZE, slot_offset(i), from->path);
		for (uint64_t k = 0; k < n && rc == 0; k++)
		{
			const uint8_t *p = buf + k * SLOT_SIZE;
			uint64_t	pos = i + k;
			uint64_t	home;
			store_loc	loc;

			if (!slot_decode(p, &loc))
			{
				/* No probe run crosses an empty slot: later entries of this pass have later homes. */
				if (*first_empty == UINT64_MAX)
					*first_empty = pos;
				w->settled = pass * old + pos + 1;
				continue;
			}
			home = slot_home(p, old);
			if ((home > pos && (*first_empty == UINT64_MAX || pos < *first_empty)) != wrapped)
				continue;
			if (((get64(p) >> bits) & (parts - 1)) == pass)
				rc = grow_insert(w, p, &loc, pass * old + home);
		}
	}
	return rc;
}

/*
 * Insert every valid entry of from into the new, empty, larger table to.
 * With to m times as large as from, an entry's home in to is its home in
 * from plus a multiple of from's size: pass j of m reads from front to back
 * and inserts the entries whose home lands in the j-th part of to, so the
 * homes it inserts at only move forward (but for entries displaced within a
 * probe run, and the end of a run wrapping at the end of from, which is
 * copied last).  So to is written front to back through a window of
 * GROW_WINDOW_SLOTS: at an empty slot of from, no later entry of the pass
 * probes before it, and the window moves on.  Memory: that window and a
 * read buffer, whatever the size of the tables.
 */
static int
table_grow_copy(table *from, table *to)
{
	uint8_t    *buf = xmalloc(GROW_READ_SLOTS * SLOT_SIZE);
	grow_window w = {to, xcalloc(GROW_WINDOW_SLOTS, SLOT_SIZE), 0, 0, 0};
	uint64_t	parts = to->slots / from->slots;
	int			rc = 0;

	for (uint64_t pass = 0; pass < parts && rc == 0; pass++)
	{
		uint64_t	first_empty = UINT64_MAX;

		w.settled = pass * from->slots;
		rc = grow_pass(from, &w, buf, pass, from->slots, false, &first_empty);
		if (rc == 0)
			rc = grow_pass(from, &w, buf, pass, first_empty < from->slots ? first_empty : from->slots, true,
						   &first_empty);
	}
	if (rc == 0)
		rc = grow_advance(&w, w.base + GROW_WINDOW_SLOTS);
	free(w.buf);
	free(buf);
	return rc;
}

/*
 * Make a table built at a temporary path durable and rename it to path,
 * where it replaces *t.  Handles holding the old file keep reading it: its
 * entries stay true, it only misses newer ones.
 */
static int
table_install(table *built, table *t, const char *path)
{
	int			rc = table_write_count(built);

	if (rc == 0)
		rc = fio_fsync(built->fd, built->path);
	if (rc == 0)
		rc = fio_rename_durable(built->path, path);
	if (rc != 0)
	{
		table_discard(built);
		return rc;
	}
	free(built->path);
	built->path = xstrdup(path);
	table_close(t);
	*t = *built;
	return 0;
}

/* Make room for n more entries, doubling the table while the load would pass the limit. */
static int
table_reserve(table *t, uint64_t n)
{
	uint64_t	slots = t->slots;
	table		bigger;
	char	   *tmp;
	int			rc;

	while ((t->count + n) * 100 > slots * INDEX_MAX_LOAD_PERCENT)
		slots *= 2;
	if (slots == t->slots)
		return 0;
	tmp = xasprintf("%s.new", t->path);
	rc = table_create(&bigger, tmp, slots);
	free(tmp);
	if (rc == 0 && (rc = table_grow_copy(t, &bigger)) != 0)
		table_discard(&bigger);
	if (rc == 0)
	{
		char	   *path = xstrdup(t->path);

		rc = table_install(&bigger, t, path);
		free(path);
	}
	if (rc == 0)
		log_detail("grew block store index \"%s\" to %" PRIu64 " slots", t->path, slots);
	return rc;
}

/*
 * Reopen the index if another handle replaced the file (grown or rebuilt);
 * *reopened (if not NULL) tells whether it did, with the header just read.
 */
static int
table_refresh(table *t, bool *reopened)
{
	struct stat st;
	table		fresh;
	int			rc;

	if (reopened != NULL)
		*reopened = false;
	if (stat(t->path, &st) != 0)
		return error_set(ERR_FILE, "could not stat file \"%s\": %s", t->path, strerror(errno));
	if (st.st_dev == t->dev && st.st_ino == t->ino)
		return 0;
	rc = table_open(&fresh, t->path);
	if (rc != 0)
		return rc;
	table_close(t);
	*t = fresh;
	if (reopened != NULL)
		*reopened = true;
	return 0;
}

/* ---- the index of the store ---- */

static int
index_lookup(store *s, const uint8_t id[HASH_LEN], bool *found, store_loc *loc)
{
	uint64_t	pos;
	int			rc = 0;

	if (++s->lookups >= INDEX_RECHECK)
	{
		s->lookups = 0;
		rc = table_refresh(&s->index, NULL);
	}
	if (rc == 0)
		rc = table_probe(&s->index, id, &pos, found, loc);
	return rc;
}

/* Call under index.lock: the current index file, with its current entry count. */
static int
index_reload(store *s)
{
	bool		reopened;
	int			rc = table_refresh(&s->index, &reopened);

	return rc != 0 || reopened ? rc : table_read_header(&s->index);
}

/* Are the n characters lowercase hex digits? */
static bool
is_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

static char *
pack_path_of(const store *s, uint64_t pack_id, const char *suffix)
{
	return xasprintf("%s/pack/%02x/%016" PRIx64 ".pack%s", s->dir, (unsigned) (pack_id >> 56), pack_id, suffix);
}

static int
pack_corrupt(const char *path, uint64_t offset, const char *what)
{
	return error_set(ERR_CORRUPT, "pack file \"%s\" is corrupt at offset %" PRIu64 ": %s", path, offset, what);
}

/* Validate every record of a sealed pack and insert it into t. */
static int
index_pack(table *t, const char *path, uint64_t pack_id, uint8_t *buf)
{
	uint8_t		h[RECORD_HEADER_SIZE];
	struct stat st;
	uint64_t	off = PACK_HEADER_SIZE;
	int			rc = 0;
	int			fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return error_set(ERR_FILE, "could not open file \"%s\": %s", path, strerror(errno));
	if (fstat(fd, &st) != 0)
		rc = error_set(ERR_FILE, "could not stat file \"%s\": %s", path, strerror(errno));
	else if ((uint64_t) st.st_size < PACK_HEADER_SIZE)
		rc = pack_corrupt(path, 0, "the file is shorter than a pack header");
	else if ((rc = fio_pread_full(fd, h, PACK_HEADER_SIZE, 0, path)) == 0 &&
			 (memcmp(h, PACK_MAGIC, 8) != 0 || get32(h + 8) != PACK_VERSION))
		rc = pack_corrupt(path, 0, "invalid pack header");
	while (rc == 0 && off < (uint64_t) st.st_size)
	{
		record		r;
		store_loc	loc;

		if ((uint64_t) st.st_size - off < RECORD_HEADER_SIZE)
			rc = pack_corrupt(path, off, "the file ends inside a record header");
		else if ((rc = fio_pread_full(fd, h, RECORD_HEADER_SIZE, (off_t) off, path)) != 0)
			break;
		else if (!record_decode(h, &r))
			rc = pack_corrupt(path, off, "invalid record header");
		else if ((uint64_t) st.st_size - off - RECORD_HEADER_SIZE < r.stored_len)
			rc = pack_corrupt(path, off, "the file ends inside a record");
		else if ((rc = fio_pread_full(fd, buf, r.stored_len, (off_t) (off + RECORD_HEADER_SIZE), path)) != 0)
			break;
		else if (crc32c(buf, r.stored_len) != r.data_crc)
			rc = pack_corrupt(path, off, "the stored bytes do not match their checksum");
		else
		{
			loc = (store_loc) {pack_id, off, r.stored_len, r.raw_len, (compress_type) r.ctype};
			rc = table_reserve(t, 1);
			if (rc == 0)
				rc = table_insert(t, r.id, &loc);
			off += RECORD_HEADER_SIZE + r.stored_len;
		}
	}
	close(fd);
	return rc;
}

/*
 * Remove a .pack.tmp left by a writer that died.  A live writer holds a flock
 * on its temporary pack, or has just created it and will see, once it has
 * the flock, that we removed it (pack_create).
 */
static int
remove_dead_tmp(const char *path)
{
	int			rc = 0;
	int			fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return errno == ENOENT ? 0 : error_set(ERR_FILE, "could not open file \"%s\": %s", path, strerror(errno));
	if (flock(fd, LOCK_EX | LOCK_NB) == 0)
	{
		rc = fio_unlink(path);
		if (rc == 0)
			log_info("removed unsealed pack file \"%s\" left by an interrupted writer", path);
	}
	else if (errno != EWOULDBLOCK)
		rc = error_set(ERR_FILE, "could not lock file \"%s\": %s", path, strerror(errno));
	close(fd);
	return rc;
}

/* Index every pack of pack/HH/ into t, removing dead temporary packs. */
static int
index_pack_dir(store *s, table *t, const char *hh, uint8_t *buf)
{
	char	   *dir = xasprintf("%s/pack/%s", s->dir, hh);
	DIR		   *d = opendir(dir);
	struct dirent *e;
	int			rc = 0;

	if (d == NULL)
		rc = error_set(ERR_FILE, "could not open directory \"%s\": %s", dir, strerror(errno));
	while (rc == 0 && (e = readdir(d)) != NULL)
	{
		char	   *path = xasprintf("%s/%s", dir, e->d_name);
		size_t		len = strlen(e->d_name);

		if (str_ends_with(e->d_name, ".pack.tmp"))
			rc = remove_dead_tmp(path);
		else if (len == 21 && str_ends_with(e->d_name, ".pack") && is_hex(e->d_name, 16) &&
				 strncmp(e->d_name, hh, 2) == 0)
			rc = index_pack(t, path, strtoull(e->d_name, NULL, 16), buf);
		else if (e->d_name[0] != '.')
			log_warn("ignoring unexpected file \"%s\" in the block store", path);
		free(path);
	}
	if (d != NULL)
		closedir(d);
	free(dir);
	return rc;
}

/*
 * Build a new index from every sealed pack and put it in place of the
 * current one.  The caller holds index.lock.  Any invalid record fails the
 * rebuild and leaves the current index as it was.
 */
static int
index_rebuild(store *s)
{
	char	   *pack_dir = xasprintf("%s/pack", s->dir);
	char	   *build_path = xasprintf("%s/index.rebuild", s->dir);
	char	   *path = xasprintf("%s/index", s->dir);
	uint8_t    *buf = xmalloc(BLOCK_STORED_MAX);
	table		t;
	DIR		   *d = NULL;
	struct dirent *e;
	int			rc = table_create(&t, build_path, INDEX_INITIAL_SLOTS);

	if (rc == 0 && (d = opendir(pack_dir)) == NULL)
		rc = error_set(ERR_FILE, "could not open directory \"%s\": %s", pack_dir, strerror(errno));
	while (rc == 0 && (e = readdir(d)) != NULL)
		if (strlen(e->d_name) == 2 && is_hex(e->d_name, 2))
			rc = index_pack_dir(s, &t, e->d_name, buf);
	if (d != NULL)
		closedir(d);
	if (rc == 0)
		rc = table_install(&t, &s->index, path);
	else
		table_discard(&t);
	free(buf);
	free(path);
	free(build_path);
	free(pack_dir);
	return rc;
}

/* Open the index; a missing or invalid one is rebuilt from the packs (it is derived data). */
static int
index_open(store *s)
{
	char	   *path = xasprintf("%s/index", s->dir);
	int			lock_fd;
	int			rc = table_open(&s->index, path);

	if ((rc == ERR_NOT_FOUND || rc == ERR_CORRUPT) && (rc = fio_lock(s->lock_path, true, &lock_fd)) == 0)
	{
		/* Another handle may have rebuilt it while we waited. */
		int			why = table_open(&s->index, path);

		if (why == ERR_CORRUPT)
			log_warn("%s: rebuilding it from the pack files", error_msg());
		rc = why == ERR_NOT_FOUND || why == ERR_CORRUPT ? index_rebuild(s) : why;
		if (rc == 0 && why == ERR_NOT_FOUND && s->index.count > 0)
			log_warn("block store index \"%s\" was missing: rebuilt it from the pack files", path);
		fio_unlock(lock_fd);
	}
	free(path);
	return rc;
}

/* ---- the pending set: blocks of the open pack and of sealed packs not indexed yet ---- */

static pending *
pend_find(store *s, const uint8_t id[HASH_LEN])
{
	if (s->npend == 0)
		return NULL;
	for (uint32_t i = (uint32_t) slot_home(id, PENDING_SLOTS);; i = (i + 1) & (PENDING_SLOTS - 1))
	{
		uint16_t	v = s->pend_slots[i];

		if (v == 0)
			return NULL;
		if (memcmp(s->pend[v - 1].id, id, HASH_LEN) == 0)
			return &s->pend[v - 1];
	}
}

/* Enter pend[k] into the hash slots; the set is at most half full (PEND_MAX). */
static void
pend_hash(store *s, uint32_t k)
{
	uint32_t	i = (uint32_t) slot_home(s->pend[k].id, PENDING_SLOTS);

	while (s->pend_slots[i] != 0)
		i = (i + 1) & (PENDING_SLOTS - 1);
	s->pend_slots[i] = (uint16_t) (k + 1);
}

/* Add a block of the open pack known not to be pending. */
static void
pend_add(store *s, const uint8_t id[HASH_LEN], uint32_t offset, compress_type ctype, uint32_t stored_len,
		 uint32_t raw_len)
{
	pending    *p = &s->pend[s->npend];

	memcpy(p->id, id, HASH_LEN);
	p->offset = offset;
	p->stored_len = stored_len;
	p->raw_len = raw_len;
	p->ctype = (uint8_t) ctype;
	p->pack = (uint8_t) s->nsealed;
	pend_hash(s, s->npend++);
}

/* Forget every pending block (indexed, or lost with an error). */
static void
pend_clear(store *s)
{
	s->npend = 0;
	s->open_first = 0;
	s->nsealed = 0;
	if (s->pend_slots != NULL)
		memset(s->pend_slots, 0, PENDING_SLOTS * sizeof(uint16_t));
}

/* Forget the blocks of the open pack (the last ones), keeping those of sealed packs. */
static void
pend_drop_open(store *s)
{
	s->npend = s->open_first;
	memset(s->pend_slots, 0, PENDING_SLOTS * sizeof(uint16_t));
	for (uint32_t k = 0; k < s->npend; k++)
		pend_hash(s, k);
}

static store_loc
pend_loc(const store *s, const pending *p)
{
	return (store_loc) {s->pend_packs[p->pack], p->offset, p->stored_len, p->raw_len, (compress_type) p->ctype};
}

/* Is the pending block in the open pack (not in a sealed one)? */
static bool
pend_is_open(const store *s, const pending *p)
{
	return s->pack_fd >= 0 && p->pack == s->nsealed;
}

/* ---- the open pack ---- */

/*
 * Create the open pack's file and take its flock, without index.lock: a
 * reindex (which holds index.lock) removes a .pack.tmp whose flock it gets,
 * so it may remove ours between our create and our flock.  Once we hold the
 * flock, the path is still our file (then no reindex can remove it) or it
 * is gone, and we start again under another id.  *retry tells which.
 */
static int
pack_create(store *s, bool *retry)
{
	uint8_t		rnd[8];
	struct stat st_fd;
	struct stat st_path;
	bool		gone;
	char	   *dir;
	int			rc = random_bytes(rnd, sizeof(rnd));

	*retry = false;
	if (rc != 0)
		return rc;
	s->pack_id = get64(rnd);
	dir = xasprintf("%s/pack/%02x", s->dir, (unsigned) (s->pack_id >> 56));
	rc = fio_mkdir_durable(dir, 0750);
	free(dir);
	if (rc != 0)
		return rc;
	s->pack_path = pack_path_of(s, s->pack_id, ".tmp");
	s->pack_fd = fio_sys.open(s->pack_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
	if (s->pack_fd < 0)
		return error_set(ERR_FILE, "could not create file \"%s\": %s", s->pack_path, strerror(errno));
	if (flock(s->pack_fd, LOCK_EX | LOCK_NB) != 0)
	{
		/* Only a reindex that is removing it takes that flock. */
		*retry = errno == EWOULDBLOCK;
		return *retry ? 0 : error_set(ERR_FILE, "could not lock file \"%s\": %s", s->pack_path, strerror(errno));
	}
	if (fstat(s->pack_fd, &st_fd) != 0)
		return error_set(ERR_FILE, "could not stat file \"%s\": %s", s->pack_path, strerror(errno));
	gone = stat(s->pack_path, &st_path) != 0;
	if (gone && errno != ENOENT)
		return error_set(ERR_FILE, "could not stat file \"%s\": %s", s->pack_path, strerror(errno));
	*retry = gone || st_path.st_dev != st_fd.st_dev || st_path.st_ino != st_fd.st_ino;
	return 0;
}

/* Start a pack. */
static int
pack_begin(store *s)
{
	uint8_t		h[PACK_HEADER_SIZE] = {0};
	bool		retry = true;
	int			rc = 0;

	for (int attempt = 0; rc == 0 && retry; attempt++)
	{
		if (attempt == 100)
			return error_set(ERR_FILE, "could not create a pack file in \"%s/pack\": removed each time", s->dir);
		rc = pack_create(s, &retry);
		if (s->pack_fd >= 0 && (rc != 0 || retry))
		{
			/* Never remove the path after a retry: it may be another writer's by now. */
			if (rc != 0)
				fio_unlink(s->pack_path);
			close(s->pack_fd);
		}
		if (rc != 0 || retry)
		{
			s->pack_fd = -1;
			free(s->pack_path);
			s->pack_path = NULL;
		}
	}
	if (rc != 0)
		return rc;
	if (s->wbuf == NULL)
	{
		s->wbuf = xmalloc(WRITE_BUFFER_SIZE);
		s->pend_slots = xcalloc(PENDING_SLOTS, sizeof(uint16_t));
	}
	if (s->pend_cap < (s->nsealed + 1) * PACK_MAX_BLOCKS)
	{
		s->pend_cap = (s->nsealed + 1) * PACK_MAX_BLOCKS;
		s->pend = xrealloc(s->pend, s->pend_cap * sizeof(pending));
	}
	s->pend_packs[s->nsealed] = s->pack_id;
	s->open_first = s->npend;
	memcpy(h, PACK_MAGIC, 8);
	put32(h + 8, PACK_VERSION);
	memcpy(s->wbuf, h, sizeof(h));
	s->wlen = sizeof(h);
	s->pack_len = sizeof(h);
	return 0;
}

/* Forget the open pack (its file is sealed or removed by then). */
static void
pack_close(store *s)
{
	close(s->pack_fd);
	s->pack_fd = -1;
	free(s->pack_path);
	s->pack_path = NULL;
	s->wlen = 0;
	s->pack_len = 0;
}

/* Drop the open pack after a failed write: its pending blocks are lost, as the error says. */
static void
pack_abort(store *s)
{
	fio_unlink(s->pack_path);
	pend_drop_open(s);
	pack_close(s);
}

/* Write the buffered bytes to the pack file; a failure aborts the pack. */
static int
pack_drain(store *s)
{
	int			rc = fio_write_full(s->pack_fd, s->wbuf, s->wlen, s->pack_path);

	s->wlen = 0;
	if (rc != 0)
		pack_abort(s);
	return rc;
}

/* Buffer bytes for the pack; a failure aborts the pack. */
static int
pack_append(store *s, const void *data, size_t n)
{
	int			rc = 0;

	if (s->wlen + n > WRITE_BUFFER_SIZE && (rc = pack_drain(s)) != 0)
		return rc;
	if (n <= WRITE_BUFFER_SIZE)
	{
		memcpy(s->wbuf + s->wlen, data, n);
		s->wlen += n;
	}
	else if ((rc = fio_write_full(s->pack_fd, data, n, s->pack_path)) != 0)
	{
		pack_abort(s);
		return rc;
	}
	s->pack_len += n;
	return 0;
}

/*
 * Take index.lock.  Without wait, *busy (and no error) when another handle
 * holds it.
 */
static int
index_lock(store *s, bool wait, int *fd_out, bool *busy)
{
	int			fd;
	int			r;

	*busy = false;
	if (wait)
		return fio_lock(s->lock_path, true, fd_out);
	fd = fio_sys.open(s->lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0)
		return error_set(ERR_FILE, "could not open lock file \"%s\": %s", s->lock_path, strerror(errno));
	while ((r = flock(fd, LOCK_EX | LOCK_NB)) != 0 && errno == EINTR)
		;
	if (r != 0)
	{
		int			rc = errno == EWOULDBLOCK ? 0
			: error_set(ERR_FILE, "could not lock file \"%s\": %s", s->lock_path, strerror(errno));

		*busy = rc == 0;
		fio_sys.close(fd);
		return rc;
	}
	*fd_out = fd;
	return 0;
}

/*
 * Insert the blocks of the sealed packs pending in this handle into the
 * index (fsynced by store_flush).  Without wait, when another handle holds
 * index.lock, they stay pending, to go in with the next seal's or at
 * store_flush: they are in sealed, durable packs, and this handle finds them
 * in its pending set meanwhile.  After a failure they are forgotten (a
 * reindex finds them).
 */
static int
index_pending(store *s, bool wait)
{
	int			lock_fd;
	bool		busy;
	int			rc;

	if (s->npend == 0)
		return 0;
	rc = index_lock(s, wait, &lock_fd, &busy);
	if (rc == 0 && busy)
		return 0;
	if (rc == 0)
	{
		rc = index_reload(s);
		if (rc == 0)
			rc = table_reserve(&s->index, s->npend);
		if (rc == 0)
			rc = table_insert_batch(&s->index, s->pend, s->npend, s->pend_packs);
		if (rc == 0)
			rc = table_write_count(&s->index);
		s->index_dirty = true;
		fio_unlock(lock_fd);
	}
	pend_clear(s);
	return rc;
}

/*
 * Seal the open pack (fsync, rename to .pack, fsync its directory), then
 * index it, with the sealed packs still pending: at once if index.lock is
 * free, else later (see index_pending) unless wait or DEFER_PACKS packs are
 * pending.  On a failure before the rename the temporary pack is removed;
 * after it, the sealed pack stays and only a reindex will find its blocks
 * if indexing fails.
 */
static int
pack_commit(store *s, bool wait)
{
	char	   *sealed;
	int			rc = pack_drain(s);

	if (rc != 0)
		return rc;
	sealed = pack_path_of(s, s->pack_id, "");
	rc = fio_fsync(s->pack_fd, s->pack_path);
	if (rc == 0)
		rc = fio_rename_durable(s->pack_path, sealed);
	free(sealed);
	if (rc != 0)
	{
		pack_abort(s);
		return rc;
	}
	pack_close(s);
	s->nsealed++;
	return index_pending(s, wait || s->nsealed == DEFER_PACKS);
}

/* ---- reading ---- */

/* A sealed pack open for reading, from the handle's small LRU cache. */
static int
pack_get(store *s, uint64_t pack_id, pack_file **out)
{
	pack_file  *victim = &s->packs[0];
	struct stat st;
	char	   *path;
	int			fd;

	for (pack_file *p = s->packs; p < s->packs + PACK_FD_CACHE; p++)
	{
		if (p->fd >= 0 && p->pack_id == pack_id)
		{
			victim = p;
			goto found;
		}
		if (p->used < victim->used)
			victim = p;
	}
	path = pack_path_of(s, pack_id, "");
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) != 0)
	{
		int			rc = fd < 0 && errno == ENOENT
			? error_set(ERR_CORRUPT, "pack file \"%s\" named by the block store index is missing", path)
			: error_set(ERR_FILE, "could not open file \"%s\": %s", path, strerror(errno));

		if (fd >= 0)
			close(fd);
		free(path);
		return rc;
	}
	/*
	 * No kernel read-ahead until the handle reads a run (window_fill): a
	 * scattered read of one record would otherwise read up to read_ahead_kb
	 * (8 MiB on some disks), a whole pack of small blocks.
	 */
	posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM);
	if (victim->fd >= 0)
		close(victim->fd);
	free(victim->path);
	*victim = (pack_file) {fd, pack_id, (uint64_t) st.st_size, 0, path, false};
found:
	victim->used = ++s->tick;
	*out = victim;
	return 0;
}

static int
record_corrupt(const char *path, const uint8_t id[HASH_LEN], const store_loc *loc, const char *why)
{
	char		hex[HASH_HEX_LEN + 1];

	return error_set(ERR_CORRUPT, "block %s at offset %" PRIu64 " of pack file \"%s\": %s", id_hex(id, hex),
					 loc->offset, path, why);
}

/* Is the record within a file of size bytes? */
static bool
record_within(const store_loc *loc, uint64_t size)
{
	return loc->offset >= PACK_HEADER_SIZE && loc->offset <= size &&
		size - loc->offset >= (uint64_t) RECORD_HEADER_SIZE + loc->stored_len;
}

/* Does the record header h say what the index says of id at loc?  *data_crc gets its checksum. */
static bool
record_matches(const uint8_t *h, const uint8_t id[HASH_LEN], const store_loc *loc, uint32_t *data_crc)
{
	record		r;

	if (!record_decode(h, &r) || memcmp(r.id, id, HASH_LEN) != 0 || r.ctype != loc->ctype ||
		r.raw_len != loc->raw_len || r.stored_len != loc->stored_len)
		return false;
	*data_crc = r.data_crc;
	return true;
}

#define HEADER_MISMATCH "the record header does not match the index"
#define BEYOND_END "the record lies beyond the end of the file"
#define BAD_DATA "the stored bytes do not match their checksum"

/* Read a record's stored bytes at loc straight from the file, checking the record against the id and loc. */
static int
record_read(int fd, const char *path, uint64_t size, const uint8_t id[HASH_LEN], const store_loc *loc, void *buf)
{
	uint8_t		h[RECORD_HEADER_SIZE];
	uint32_t	data_crc;
	int			rc;

	if (!record_within(loc, size))
		return record_corrupt(path, id, loc, BEYOND_END);
	if ((rc = fio_pread_full(fd, h, sizeof(h), (off_t) loc->offset, path)) != 0)
		return rc;
	if (!record_matches(h, id, loc, &data_crc))
		return record_corrupt(path, id, loc, HEADER_MISMATCH);
	if ((rc = fio_pread_full(fd, buf, loc->stored_len, (off_t) (loc->offset + RECORD_HEADER_SIZE), path)) != 0)
		return rc;
	if (crc32c(buf, loc->stored_len) != data_crc)
		return record_corrupt(path, id, loc, BAD_DATA);
	return 0;
}

/* The window holding n bytes of pack_id at off, or NULL. */
static window *
window_find(store *s, uint64_t pack_id, uint64_t off, uint32_t n)
{
	for (window *w = s->windows; w < s->windows + READ_WINDOWS; w++)
		if (w->len > 0 && w->pack_id == pack_id && w->len >= n && off >= w->start &&
			off - w->start <= w->len - n)
			return w;
	return NULL;
}

/*
 * Fill a window with the n bytes of pf at off (n <= READ_WINDOW_MAX, within
 * the file's size at open) and what follows.  A read that continues a
 * window's run (at most one fill ahead of its last record) refills that
 * window with twice as much as its last fill; any other takes the least
 * recently used window and reads just the n bytes.
 */
static int
window_fill(store *s, pack_file *pf, uint64_t off, uint32_t n, window **out)
{
	window	   *w = NULL;
	window	   *victim = &s->windows[0];
	uint64_t	want = n;
	size_t		got = 0;
	int			rc;

	for (window *v = s->windows; v < s->windows + READ_WINDOWS; v++)
	{
		if (v->len > 0 && v->pack_id == pf->pack_id && off >= v->next && off - v->next <= v->ahead)
		{
			w = v;
			break;
		}
		if (v->used < victim->used)
			victim = v;
	}
	if (w != NULL)
	{
		/*
		 * A long run (its window grown to half the largest size, after about
		 * 1 MiB of consecutive records): packs are read mostly front to back
		 * (a restore or verify walks the blocks in the order a backup stored
		 * them), so let the kernel fetch the whole pack while the reader
		 * decompresses.  Not earlier: scattered reads and short runs
		 * (verify --fast reads only block lists, a few dozen together
		 * between a job's blocks) would pull in every pack they touch.
		 * Only a hint; page cache, not memory.
		 */
		if (!pf->advised && w->ahead >= READ_WINDOW_MAX / 2)
		{
			posix_fadvise(pf->fd, 0, 0, POSIX_FADV_NORMAL);
			posix_fadvise(pf->fd, 0, 0, POSIX_FADV_WILLNEED);
			pf->advised = true;
		}
		want = 2 * (uint64_t) w->ahead;
		want = want < READ_WINDOW_MIN ? READ_WINDOW_MIN : want > READ_WINDOW_MAX ? READ_WINDOW_MAX : want;
		want = want < n ? n : want;
	}
	else
		w = victim;
	if (want > pf->size - off)
		want = pf->size - off;
	if (w->buf == NULL)
		w->buf = xmalloc(READ_WINDOW_MAX);
	w->len = 0;
	if ((rc = fio_pread_upto(pf->fd, w->buf, (size_t) want, (off_t) off, pf->path, &got)) != 0)
		return rc;
	w->pack_id = pf->pack_id;
	w->start = off;
	w->len = (uint32_t) got;
	w->ahead = (uint32_t) want;
	w->next = off;
	*out = w;
	return 0;
}

/*
 * Check the record of id at loc held in window w (from its start to at most
 * its end) as record_read does, and copy its stored bytes to buf.  Returns
 * why it is bad, or NULL.  A bad record drops the window, so that a retry
 * reads the file again.
 */
static const char *
window_take(store *s, window *w, const uint8_t id[HASH_LEN], const store_loc *loc, void *buf)
{
	uint64_t	n = (uint64_t) RECORD_HEADER_SIZE + loc->stored_len;
	const uint8_t *h = w->buf + (loc->offset - w->start);
	const char *why = NULL;
	uint32_t	data_crc;

	/* Only after a short fill: the file was shorter than when it was opened. */
	if (loc->offset - w->start + n > w->len)
		why = BEYOND_END;
	else if (!record_matches(h, id, loc, &data_crc))
		why = HEADER_MISMATCH;
	else
	{
		memcpy(buf, h + RECORD_HEADER_SIZE, loc->stored_len);
		if (crc32c(buf, loc->stored_len) != data_crc)
			why = BAD_DATA;
	}
	if (why != NULL)
		w->len = 0;
	else
	{
		w->next = loc->offset + n;
		w->used = ++s->window_tick;
	}
	return why;
}

/* Read a record of a sealed pack through the read-ahead windows, with the same checks as record_read. */
static int
record_read_sealed(store *s, pack_file *pf, const uint8_t id[HASH_LEN], const store_loc *loc, void *buf)
{
	uint64_t	n = (uint64_t) RECORD_HEADER_SIZE + loc->stored_len;
	const char *why;
	window	   *w;
	int			rc;

	if (n > READ_WINDOW_MAX || !record_within(loc, pf->size))
		return record_read(pf->fd, pf->path, pf->size, id, loc, buf);
	w = window_find(s, pf->pack_id, loc->offset, (uint32_t) n);
	if (w == NULL && (rc = window_fill(s, pf, loc->offset, (uint32_t) n, &w)) != 0)
		return rc;
	why = window_take(s, w, id, loc, buf);
	return why != NULL ? record_corrupt(pf->path, id, loc, why) : 0;
}

/*
 * The window whose next record (the one right after the last read through
 * it) is a valid record header of id, whole in the window; *loc gets where.
 * Restore asks for blocks mostly in the order they were stored, so this
 * spares most index lookups.  It is as safe as one: windows hold only
 * sealed packs reached through the index, and any valid record of a sealed
 * pack is a valid copy of its block (the index names one of the copies).
 */
static window *
window_next_record(store *s, const uint8_t id[HASH_LEN], store_loc *loc)
{
	for (window *w = s->windows; w < s->windows + READ_WINDOWS; w++)
	{
		uint64_t	rel = w->next - w->start;
		const uint8_t *h;
		record		r;

		if (w->len == 0 || rel > w->len || w->len - rel < RECORD_HEADER_SIZE)
			continue;
		h = w->buf + rel;
		if (memcmp(h + 4, id, HASH_LEN) != 0 || !record_decode(h, &r) ||
			w->len - rel - RECORD_HEADER_SIZE < r.stored_len)
			continue;
		*loc = (store_loc) {w->pack_id, w->next, r.stored_len, r.raw_len, (compress_type) r.ctype};
		return w;
	}
	return NULL;
}

/* ---- the interface ---- */

/* Why a block cannot be stored, or NULL. */
static const char *
block_invalid(compress_type ctype, uint32_t stored_len, uint32_t raw_len)
{
	if (!ctype_valid(ctype))
		return "unknown compression type";
	if (raw_len > BLOCK_RAW_MAX)
		return "blocks are at most 1 MiB";
	if (stored_len > BLOCK_STORED_MAX)
		return "stored blocks are at most 1088 KiB";
	if (ctype == COMPRESS_NONE && stored_len != raw_len)
		return "an uncompressed block stores exactly its bytes";
	return NULL;
}

/* ---- the lease ---- */

static int
flock_retry(int fd, int op)
{
	int			r;

	while ((r = flock(fd, op)) != 0 && errno == EINTR)
		;
	return r;
}

/*
 * Take the shared lease on gc.lock, waiting while a garbage collection holds
 * it exclusively.  A read-only store without the file has no lease: nothing
 * can collect there.
 */
static int
lease_take(store *s)
{
	char	   *path = xasprintf("%s/gc.lock", s->dir);
	int			fd = fio_sys.open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
	int			rc = 0;
	int			r;

	if (fd < 0 && (errno == EROFS || errno == EACCES))
		fd = fio_sys.open(path, O_RDONLY | O_CLOEXEC, 0);
	if (fd < 0)
	{
		if (errno != ENOENT && errno != EROFS)
			rc = error_set(ERR_FILE, "could not open lock file \"%s\": %s", path, strerror(errno));
		free(path);
		return rc;
	}
	r = flock_retry(fd, LOCK_SH | LOCK_NB);
	if (r != 0 && errno == EWOULDBLOCK)
	{
		log_info("waiting for the garbage collection of block store \"%s\" to finish", s->dir);
		r = flock_retry(fd, LOCK_SH);
	}
	if (r != 0)
		rc = error_set(ERR_FILE, "could not lock file \"%s\": %s", path, strerror(errno));
	if (rc != 0)
		close(fd);
	else
		s->lease_fd = fd;
	free(path);
	return rc;
}

static void
store_free(store *s)
{
	for (pack_file *p = s->packs; p < s->packs + PACK_FD_CACHE; p++)
	{
		if (p->fd >= 0)
			close(p->fd);
		free(p->path);
	}
	for (window *w = s->windows; w < s->windows + READ_WINDOWS; w++)
		free(w->buf);
	table_close(&s->index);
	if (s->lease_fd >= 0)
		close(s->lease_fd);
	free(s->wbuf);
	free(s->pend);
	free(s->pend_slots);
	free(s->lock_path);
	free(s->dir);
	free(s);
}

int
store_open(const char *dir, bool create, store **out)
{
	store	   *s = xcalloc(1, sizeof(store));
	char	   *pack_dir = xasprintf("%s/pack", dir);
	int			rc = 0;

	*out = NULL;
	s->dir = xstrdup(dir);
	s->lock_path = xasprintf("%s/index.lock", dir);
	s->index.fd = -1;
	s->pack_fd = -1;
	s->lease_fd = -1;
	for (pack_file *p = s->packs; p < s->packs + PACK_FD_CACHE; p++)
		p->fd = -1;
	if (create)
		rc = fio_mkdir_durable(pack_dir, 0750);
	else if (!fio_exists(pack_dir))
		rc = error_set(ERR_NOT_FOUND, "block store \"%s\" does not exist", dir);
	if (rc == 0)
		rc = lease_take(s);
	if (rc == 0)
		rc = index_open(s);
	free(pack_dir);
	if (rc != 0)
		store_free(s);
	else
		*out = s;
	return rc;
}

int
store_close(store *s)
{
	int			rc;

	if (s == NULL)
		return 0;
	rc = store_flush(s);
	store_free(s);
	return rc;
}

/* Remember that the index lacks id (the oldest miss goes when the ring is full). */
static void
miss_note(store *s, const uint8_t id[HASH_LEN])
{
	if (s->miss_n == STORE_MISSES)
	{
		s->miss_head = (s->miss_head + 1) % STORE_MISSES;
		s->miss_n--;
	}
	memcpy(s->misses[(s->miss_head + s->miss_n++) % STORE_MISSES], id, HASH_LEN);
}

/*
 * Whether id is among the first MISS_SCAN remembered misses; then it and
 * the misses before it (ids looked up but not put) are forgotten.
 */
static bool
miss_take(store *s, const uint8_t id[HASH_LEN])
{
	for (uint32_t k = 0; k < s->miss_n && k < MISS_SCAN; k++)
		if (memcmp(s->misses[(s->miss_head + k) % STORE_MISSES], id, HASH_LEN) == 0)
		{
			s->miss_head = (s->miss_head + k + 1) % STORE_MISSES;
			s->miss_n -= k + 1;
			return true;
		}
	return false;
}

int
store_lookup(store *s, const uint8_t id[HASH_LEN], bool *found, store_loc *loc)
{
	const pending *p = pend_find(s, id);
	store_loc	l;
	int			rc;

	if (p != NULL)
	{
		*found = true;
		if (loc != NULL)
			*loc = pend_loc(s, p);
		return 0;
	}
	rc = index_lookup(s, id, found, loc != NULL ? loc : &l);
	if (rc == 0 && !*found)
		miss_note(s, id);
	return rc;
}

int
store_put(store *s, const uint8_t id[HASH_LEN], compress_type ctype, const void *data, uint32_t stored_len,
		  uint32_t raw_len)
{
	uint8_t		h[RECORD_HEADER_SIZE];
	char		hex[HASH_HEX_LEN + 1];
	const char *why;
	uint64_t	offset;
	store_loc	loc;
	bool		found = false;
	int			rc = 0;

	if ((why = block_invalid(ctype, stored_len, raw_len)) != NULL)
		return error_set(ERR_INVALID, "cannot store block %s of %" PRIu32 " bytes (%" PRIu32 " stored): %s",
						 id_hex(id, hex), raw_len, stored_len, why);
	/*
	 * The caller usually looked the id up just before: do not pread the
	 * index again.  A miss that is stale by now (another handle stored the
	 * id since) costs a second copy of the block, as two backups storing it
	 * at once do; the index keeps the first (run_insert).  The blocks not in
	 * the index yet are checked all the same.
	 */
	if (pend_find(s, id) != NULL)
		return 0;
	if (!miss_take(s, id))
		rc = index_lookup(s, id, &found, &loc);
	if (rc != 0 || found)
		return rc;
	if (s->pack_fd < 0 && (rc = pack_begin(s)) != 0)
		return rc;
	record_encode(h, id, ctype, raw_len, stored_len, crc32c(data, stored_len));
	offset = s->pack_len;
	if ((rc = pack_append(s, h, sizeof(h))) != 0 || (rc = pack_append(s, data, stored_len)) != 0)
		return rc;
	pend_add(s, id, (uint32_t) offset, ctype, stored_len, raw_len);
	s->stat_blocks++;
	s->stat_bytes += stored_len;
	if (s->pack_len >= STORE_PACK_TARGET || s->npend - s->open_first == PACK_MAX_BLOCKS)
		return pack_commit(s, false);
	return 0;
}

/*
 * Index pages are fsynced here, not at each sealed pack: a pack's inserts
 * dirty as many scattered pages as it has blocks, and later packs dirty
 * many of the same ones again.  If another handle replaced the index in
 * between, it fsynced the copy holding our entries before the rename, so
 * syncing the current file is enough.
 */
int
store_flush(store *s)
{
	int			rc = s->pack_fd >= 0 ? pack_commit(s, true) : index_pending(s, true);

	if (rc == 0 && s->index_dirty && (rc = table_refresh(&s->index, NULL)) == 0 &&
		(rc = fio_fsync(s->index.fd, s->index.path)) == 0)
		s->index_dirty = false;
	return rc;
}

int
store_read(store *s, const uint8_t id[HASH_LEN], void *buf, size_t cap, store_loc *loc)
{
	const pending *p = pend_find(s, id);
	char		hex[HASH_HEX_LEN + 1];
	pack_file  *pf = NULL;
	window	   *w;
	store_loc	l;
	bool		found = true;
	int			rc = 0;

	/* The next record of a run being read: no index lookup.  Any doubt falls back to one. */
	if (p == NULL && (w = window_next_record(s, id, &l)) != NULL && l.stored_len <= cap &&
		window_take(s, w, id, &l, buf) == NULL)
	{
		if (loc != NULL)
			*loc = l;
		return 0;
	}
	if (p != NULL)
	{
		l = pend_loc(s, p);
		/* A block of the open pack: its bytes may still be in the write buffer. */
		if (pend_is_open(s, p))
			rc = pack_drain(s);
	}
	else
		rc = index_lookup(s, id, &found, &l);
	if (rc != 0)
		return rc;
	if (!found)
		return error_set(ERR_NOT_FOUND, "block %s is not in block store \"%s\"", id_hex(id, hex), s->dir);
	if (l.stored_len > cap)
		return error_set(ERR_INVALID, "cannot read block %s: %" PRIu32 " stored bytes do not fit in %zu",
						 id_hex(id, hex), l.stored_len, cap);
	/* The open pack is still being written: never through the windows. */
	if (p != NULL && pend_is_open(s, p))
		rc = record_read(s->pack_fd, s->pack_path, s->pack_len, id, &l, buf);
	else if ((rc = pack_get(s, l.pack_id, &pf)) == 0)
		rc = record_read_sealed(s, pf, id, &l, buf);
	if (rc == 0 && loc != NULL)
		*loc = l;
	return rc;
}

int
store_check(store *s, const uint8_t id[HASH_LEN], store_loc *loc)
{
	char		hex[HASH_HEX_LEN + 1];
	pack_file  *pf;
	store_loc	l;
	bool		found;
	int			rc;

	if ((rc = store_lookup(s, id, &found, &l)) != 0)
		return rc;
	if (!found)
		return error_set(ERR_NOT_FOUND, "block %s is not in block store \"%s\"", id_hex(id, hex), s->dir);
	/* A block this handle stored is in its open pack or a sealed one it wrote: nothing to check. */
	if (pend_find(s, id) == NULL)
	{
		if ((rc = pack_get(s, l.pack_id, &pf)) != 0)
			return rc;
		if (!record_within(&l, pf->size))
			return record_corrupt(pf->path, id, &l, BEYOND_END);
	}
	if (loc != NULL)
		*loc = l;
	return 0;
}

int
store_reindex(store *s)
{
	char	   *grow_path = xasprintf("%s/index.new", s->dir);
	int			lock_fd;
	int			rc = fio_lock(s->lock_path, true, &lock_fd);

	if (rc == 0)
	{
		/* A leftover of a growth that crashed: as large as the index. */
		rc = fio_unlink(grow_path);
		if (rc == 0)
			rc = index_rebuild(s);
		if (rc == 0)
			log_info("reindexed block store \"%s\": %" PRIu64 " blocks", s->dir, s->index.count);
		fio_unlock(lock_fd);
	}
	free(grow_path);
	return rc;
}

void
store_stats(store *s, uint64_t *blocks, uint64_t *bytes)
{
	*blocks = s->stat_blocks;
	*bytes = s->stat_bytes;
}

/* ---- garbage collection ---- */

/*
 * Marks are one bit per slot of the index, kept in the file gc.mark and read
 * through MARK_PAGES direct-mapped pages of MARK_PAGE bytes (2 MiB in all):
 * memory does not grow with the index.
 */
#define MARK_PAGE (64u * 1024)
#define MARK_PAGES 32
/* Index slots read at once when the index is scanned. */
#define SCAN_SLOTS 4096

enum pack_action
{
	PACK_KEEP,
	PACK_DELETE,                /* no live block */
	PACK_REWRITE                /* live blocks copied to new packs, then deleted */
};

typedef struct pack_stat
{
	uint64_t	pack_id;
	uint64_t	size;           /* of the file; 0 when it is missing */
	uint64_t	live;           /* index entries marked */
	uint64_t	live_bytes;     /* their records, headers included */
	uint64_t	dead;           /* index entries not marked */
	bool		used;
	bool		on_disk;
	uint8_t		action;
} pack_stat;

struct store_gc
{
	store	   *s;
	char	   *mark_path;
	int			mark_fd;
	uint8_t    *pages;          /* MARK_PAGES * MARK_PAGE */
	uint64_t	page_no[MARK_PAGES];    /* UINT64_MAX when empty */
	bool		dirty[MARK_PAGES];
	pack_stat  *packs;          /* open addressing on pack_id */
	uint64_t	packs_cap;      /* a power of two */
	uint64_t	npacks;

	/* The pack being written by a rewrite; fd < 0 when none. */
	int			out_fd;
	uint64_t	out_id;
	char	   *out_path;
	uint64_t	out_len;        /* written plus buffered */
	uint8_t    *out_buf;
	size_t		out_buffered;
};

static int
mark_page(store_gc *g, uint64_t page, uint8_t **out)
{
	unsigned	k = (unsigned) (page % MARK_PAGES);
	uint8_t    *p = g->pages + (size_t) k * MARK_PAGE;
	size_t		got;
	int			rc;

	if (g->page_no[k] != page)
	{
		if (g->page_no[k] != UINT64_MAX && g->dirty[k] &&
			(rc = fio_pwrite_full(g->mark_fd, p, MARK_PAGE, (off_t) (g->page_no[k] * MARK_PAGE), g->mark_path)) != 0)
			return rc;
		if ((rc = fio_pread_upto(g->mark_fd, p, MARK_PAGE, (off_t) (page * MARK_PAGE), g->mark_path, &got)) != 0)
			return rc;
		memset(p + got, 0, MARK_PAGE - got);
		g->page_no[k] = page;
		g->dirty[k] = false;
	}
	*out = p;
	return 0;
}

/* Test (and with set, set) the mark of index slot pos. */
static int
mark_bit(store_gc *g, uint64_t pos, bool set, bool *was)
{
	uint64_t	byte = pos / 8;
	uint8_t		bit = (uint8_t) (1u << (pos % 8));
	uint8_t    *p;
	int			rc = mark_page(g, byte / MARK_PAGE, &p);

	if (rc != 0)
		return rc;
	p += byte % MARK_PAGE;
	*was = (*p & bit) != 0;
	if (set && !*was)
	{
		*p |= bit;
		g->dirty[(byte / MARK_PAGE) % MARK_PAGES] = true;
	}
	return 0;
}

/* The statistics of pack_id (added when create). */
static pack_stat *
pstat(store_gc *g, uint64_t pack_id, bool create)
{
	uint64_t	i;

	if (create && (g->npacks + 1) * 2 > g->packs_cap)
	{
		pack_stat  *old = g->packs;
		uint64_t	old_cap = g->packs_cap;

		g->packs_cap = old_cap ? old_cap * 2 : 1024;
		g->packs = xcalloc(g->packs_cap, sizeof(pack_stat));
		for (uint64_t j = 0; j < old_cap; j++)
			if (old[j].used)
			{
				for (i = old[j].pack_id & (g->packs_cap - 1); g->packs[i].used; i = (i + 1) & (g->packs_cap - 1))
					;
				g->packs[i] = old[j];
			}
		free(old);
	}
	if (g->packs_cap == 0)
		return NULL;
	for (i = pack_id & (g->packs_cap - 1); g->packs[i].used; i = (i + 1) & (g->packs_cap - 1))
		if (g->packs[i].pack_id == pack_id)
			return &g->packs[i];
	if (!create)
		return NULL;
	g->packs[i] = (pack_stat) {.pack_id = pack_id, .used = true};
	g->npacks++;
	return &g->packs[i];
}

int
store_gc_begin(store *s, bool *busy, store_gc **out)
{
	store_gc   *g;
	int			rc;

	*busy = false;
	*out = NULL;
	if (s->lease_fd < 0)
		return error_set(ERR_FILE, "block store \"%s\" is read-only: garbage cannot be collected there", s->dir);
	if ((rc = store_flush(s)) != 0)
		return rc;
	/* Shared to exclusive: drop the shared lease first, so two collectors cannot deadlock converting. */
	if (flock_retry(s->lease_fd, LOCK_UN) != 0 || flock_retry(s->lease_fd, LOCK_EX | LOCK_NB) != 0)
	{
		if (errno != EWOULDBLOCK)
			return error_set(ERR_FILE, "could not lock file \"%s/gc.lock\": %s", s->dir, strerror(errno));
		*busy = true;
		if (flock_retry(s->lease_fd, LOCK_SH) != 0)
			return error_set(ERR_FILE, "could not lock file \"%s/gc.lock\": %s", s->dir, strerror(errno));
		return 0;
	}
	/* Every other handle is closed now: the index is final until we replace it. */
	if ((rc = table_refresh(&s->index, NULL)) != 0 || (rc = table_read_header(&s->index)) != 0)
	{
		flock_retry(s->lease_fd, LOCK_SH);
		return rc;
	}
	g = xcalloc(1, sizeof(store_gc));
	g->s = s;
	g->out_fd = -1;
	g->mark_path = xasprintf("%s/gc.mark", s->dir);
	g->mark_fd = fio_sys.open(g->mark_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	if (g->mark_fd < 0)
	{
		rc = error_set(ERR_FILE, "could not create file \"%s\": %s", g->mark_path, strerror(errno));
		store_gc_end(g);
		return rc;
	}
	g->pages = xmalloc((size_t) MARK_PAGES * MARK_PAGE);
	for (int k = 0; k < MARK_PAGES; k++)
		g->page_no[k] = UINT64_MAX;
	*out = g;
	return 0;
}

void
store_gc_end(store_gc *g)
{
	if (g == NULL)
		return;
	if (g->mark_fd >= 0)
	{
		close(g->mark_fd);
		unlink(g->mark_path);
	}
	if (g->out_fd >= 0)
	{
		fio_unlink(g->out_path);
		close(g->out_fd);
	}
	flock_retry(g->s->lease_fd, LOCK_SH);
	free(g->out_path);
	free(g->out_buf);
	free(g->mark_path);
	free(g->pages);
	free(g->packs);
	free(g);
}

int
store_gc_mark(store_gc *g, const uint8_t id[HASH_LEN], bool *was_marked)
{
	char		hex[HASH_HEX_LEN + 1];
	uint64_t	pos;
	bool		found;
	store_loc	loc;
	int			rc = table_probe(&g->s->index, id, &pos, &found, &loc);

	if (rc != 0)
		return rc;
	if (!found)
		return error_set(ERR_NOT_FOUND, "block %s is not in block store \"%s\"", id_hex(id, hex), g->s->dir);
	return mark_bit(g, pos, true, was_marked);
}

/*
 * Call fn for every valid slot of the index in slot order, with its
 * position, id and location.
 */
static int
scan_index(store_gc *g, int (*fn) (store_gc *g, uint64_t pos, const uint8_t *id, const store_loc *loc, void *arg),
		   void *arg)
{
	table	   *t = &g->s->index;
	uint8_t    *buf = xmalloc(SCAN_SLOTS * SLOT_SIZE);
	int			rc = 0;

	for (uint64_t base = 0; rc == 0 && base < t->slots; base += SCAN_SLOTS)
	{
		uint64_t	n = t->slots - base < SCAN_SLOTS ? t->slots - base : SCAN_SLOTS;

		rc = fio_pread_full(t->fd, buf, n * SLOT_SIZE, slot_offset(base), t->path);
		for (uint64_t i = 0; rc == 0 && i < n; i++)
		{
			store_loc	loc;

			if (slot_decode(buf + i * SLOT_SIZE, &loc))
				rc = fn(g, base + i, buf + i * SLOT_SIZE, &loc, arg);
		}
	}
	free(buf);
	return rc;
}

static int
count_entry(store_gc *g, uint64_t pos, const uint8_t *id, const store_loc *loc, void *arg)
{
	pack_stat  *p = pstat(g, loc->pack_id, true);
	bool		live;
	int			rc = mark_bit(g, pos, false, &live);

	(void) id;
	(void) arg;
	if (rc == 0 && live)
	{
		p->live++;
		p->live_bytes += RECORD_HEADER_SIZE + loc->stored_len;
	}
	else if (rc == 0)
		p->dead++;
	return rc;
}

/* Note every pack file on disk and its size; with clean, remove temporary packs of dead writers. */
static int
list_packs(store_gc *g, bool clean)
{
	char	   *pack_dir = xasprintf("%s/pack", g->s->dir);
	DIR		   *d = opendir(pack_dir);
	struct dirent *e;
	int			rc = 0;

	if (d == NULL)
		rc = error_set(ERR_FILE, "could not open directory \"%s\": %s", pack_dir, strerror(errno));
	while (rc == 0 && (e = readdir(d)) != NULL)
	{
		char	   *sub;
		DIR		   *sd;
		struct dirent *f;

		if (strlen(e->d_name) != 2 || !is_hex(e->d_name, 2))
			continue;
		sub = xasprintf("%s/%s", pack_dir, e->d_name);
		if ((sd = opendir(sub)) == NULL)
			rc = error_set(ERR_FILE, "could not open directory \"%s\": %s", sub, strerror(errno));
		while (rc == 0 && sd != NULL && (f = readdir(sd)) != NULL)
		{
			char	   *path = xasprintf("%s/%s", sub, f->d_name);
			struct stat st;

			if (str_ends_with(f->d_name, ".pack.tmp"))
				rc = clean ? remove_dead_tmp(path) : 0;
			else if (strlen(f->d_name) == 21 && str_ends_with(f->d_name, ".pack") && is_hex(f->d_name, 16) &&
					 strncmp(f->d_name, e->d_name, 2) == 0)
			{
				if (stat(path, &st) != 0)
					rc = error_set(ERR_FILE, "could not stat file \"%s\": %s", path, strerror(errno));
				else
				{
					pack_stat  *p = pstat(g, strtoull(f->d_name, NULL, 16), true);

					p->on_disk = true;
					p->size = (uint64_t) st.st_size;
				}
			}
			free(path);
		}
		if (sd != NULL)
			closedir(sd);
		free(sub);
	}
	if (d != NULL)
		closedir(d);
	free(pack_dir);
	return rc;
}

/* ---- the rewrite's output pack ---- */

static int
out_drain(store_gc *g)
{
	int			rc = fio_write_full(g->out_fd, g->out_buf, g->out_buffered, g->out_path);

	g->out_buffered = 0;
	return rc;
}

static int
out_append(store_gc *g, const void *data, size_t n)
{
	int			rc;

	if (g->out_buffered + n > WRITE_BUFFER_SIZE && (rc = out_drain(g)) != 0)
		return rc;
	memcpy(g->out_buf + g->out_buffered, data, n);
	g->out_buffered += n;
	g->out_len += n;
	return 0;
}

/* Seal the output pack: fsync, rename to its final name, fsync the directory. */
static int
out_seal(store_gc *g)
{
	char	   *sealed;
	int			rc;

	if (g->out_fd < 0)
		return 0;
	if ((rc = out_drain(g)) == 0 && (rc = fio_fsync(g->out_fd, g->out_path)) == 0)
	{
		sealed = pack_path_of(g->s, g->out_id, "");
		rc = fio_rename_durable(g->out_path, sealed);
		free(sealed);
	}
	if (rc != 0)
		fio_unlink(g->out_path);
	close(g->out_fd);
	g->out_fd = -1;
	free(g->out_path);
	g->out_path = NULL;
	return rc;
}

/* Append a record (header and stored bytes, as they were) to the output pack; *offset is where. */
static int
out_record(store_gc *g, const uint8_t *h, const void *data, uint32_t n, uint64_t *offset)
{
	int			rc;

	if (g->out_fd >= 0 && g->out_len + RECORD_HEADER_SIZE + n > STORE_PACK_TARGET && (rc = out_seal(g)) != 0)
		return rc;
	if (g->out_fd < 0)
	{
		uint8_t		ph[PACK_HEADER_SIZE] = {0};
		bool		retry = true;
		store	   *s = g->s;

		/* pack_create works on the handle's open-pack fields, unused during a collection. */
		for (int attempt = 0; retry; attempt++)
		{
			if (attempt == 100)
				return error_set(ERR_FILE, "could not create a pack file in \"%s/pack\"", s->dir);
			if ((rc = pack_create(s, &retry)) != 0 || retry)
			{
				if (s->pack_fd >= 0)
				{
					if (rc != 0)
						fio_unlink(s->pack_path);
					close(s->pack_fd);
				}
				s->pack_fd = -1;
				free(s->pack_path);
				s->pack_path = NULL;
				if (rc != 0)
					return rc;
			}
		}
		g->out_fd = s->pack_fd;
		g->out_id = s->pack_id;
		g->out_path = s->pack_path;
		s->pack_fd = -1;
		s->pack_path = NULL;
		if (g->out_buf == NULL)
			g->out_buf = xmalloc(WRITE_BUFFER_SIZE);
		memcpy(ph, PACK_MAGIC, 8);
		put32(ph + 8, PACK_VERSION);
		g->out_buffered = 0;
		g->out_len = 0;
		if ((rc = out_append(g, ph, sizeof(ph))) != 0)
			return rc;
	}
	*offset = g->out_len;
	if ((rc = out_append(g, h, RECORD_HEADER_SIZE)) != 0)
		return rc;
	if (n > WRITE_BUFFER_SIZE / 2)
	{
		if ((rc = out_drain(g)) != 0 || (rc = fio_write_full(g->out_fd, data, n, g->out_path)) != 0)
			return rc;
		g->out_len += n;
		return 0;
	}
	return out_append(g, data, n);
}

/* ---- sweep ---- */

/* Pass 1 of the new index: the live entries of the packs that stay. */
static int
keep_entry(store_gc *g, uint64_t pos, const uint8_t *id, const store_loc *loc, void *arg)
{
	table	   *nt = arg;
	pack_stat  *p = pstat(g, loc->pack_id, false);
	bool		live;
	int			rc = mark_bit(g, pos, false, &live);

	if (rc != 0 || !live || p == NULL || p->action != PACK_KEEP)
		return rc;
	return table_insert(nt, id, loc);
}

/* Copy the live records of pack p into the output pack, entering their new places in nt. */
static int
rewrite_pack(store_gc *g, const pack_stat *p, table *nt, uint8_t *buf)
{
	char	   *path = pack_path_of(g->s, p->pack_id, "");
	uint8_t		h[RECORD_HEADER_SIZE];
	uint64_t	off = PACK_HEADER_SIZE;
	int			fd = open(path, O_RDONLY | O_CLOEXEC);
	int			rc = 0;

	if (fd < 0)
		rc = error_set(ERR_FILE, "could not open file \"%s\": %s", path, strerror(errno));
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	while (rc == 0 && off < p->size)
	{
		record		r;
		uint64_t	pos;
		bool		found;
		bool		live = false;
		store_loc	loc;

		if (p->size - off < RECORD_HEADER_SIZE)
			rc = pack_corrupt(path, off, "the file ends inside a record header");
		else if ((rc = fio_pread_full(fd, h, RECORD_HEADER_SIZE, (off_t) off, path)) != 0)
			break;
		else if (!record_decode(h, &r))
			rc = pack_corrupt(path, off, "invalid record header");
		else if (p->size - off - RECORD_HEADER_SIZE < r.stored_len)
			rc = pack_corrupt(path, off, "the file ends inside a record");
		else if ((rc = table_probe(&g->s->index, r.id, &pos, &found, &loc)) == 0 && found &&
				 loc.pack_id == p->pack_id && loc.offset == off)
			rc = mark_bit(g, pos, false, &live);
		if (rc == 0 && live)
		{
			store_loc	nl = loc;

			if ((rc = fio_pread_full(fd, buf, r.stored_len, (off_t) (off + RECORD_HEADER_SIZE), path)) != 0)
				break;
			/* Never copy damage into a new pack: the old one stays and verify names it. */
			if (crc32c(buf, r.stored_len) != r.data_crc)
				rc = pack_corrupt(path, off, "the stored bytes do not match their checksum");
			else if ((rc = out_record(g, h, buf, r.stored_len, &nl.offset)) == 0)
			{
				nl.pack_id = g->out_id;
				rc = table_insert(nt, r.id, &nl);
			}
		}
		if (rc == 0)
			off += RECORD_HEADER_SIZE + r.stored_len;
	}
	if (fd >= 0)
		close(fd);
	free(path);
	return rc;
}

/* Forget cached descriptors and read-ahead windows of packs (some are gone). */
static void
forget_packs(store *s)
{
	for (pack_file *p = s->packs; p < s->packs + PACK_FD_CACHE; p++)
	{
		if (p->fd >= 0)
			close(p->fd);
		free(p->path);
		*p = (pack_file) {.fd = -1};
	}
	for (window *w = s->windows; w < s->windows + READ_WINDOWS; w++)
		w->len = 0;
}

int
store_gc_sweep(store_gc *g, bool dry_run, store_gc_stats *st)
{
	store	   *s = g->s;
	char	   *new_path = xasprintf("%s/index.gc", s->dir);
	char	   *index_path = xasprintf("%s/index", s->dir);
	uint8_t    *buf = NULL;
	bool		dirs[256] = {false};
	uint64_t	slots = INDEX_INITIAL_SLOTS;
	uint64_t	missing = 0;
	table		nt = {.fd = -1};
	int			lock_fd = -1;
	int			rc;

	memset(st, 0, sizeof(*st));
	if ((rc = scan_index(g, count_entry, NULL)) != 0 || (rc = list_packs(g, !dry_run)) != 0)
		goto out;
	for (uint64_t i = 0; i < g->packs_cap; i++)
	{
		pack_stat  *p = &g->packs[i];

		if (!p->used)
			continue;
		if (!p->on_disk && p->live > 0)
			missing++;
		st->blocks_live += p->live;
		st->blocks_removed += p->dead;
		if (!p->on_disk)
			continue;
		st->packs++;
		st->bytes_before += p->size;
		p->action = p->live == 0 ? PACK_DELETE : p->live_bytes * 2 < p->size ? PACK_REWRITE : PACK_KEEP;
		if (p->action == PACK_DELETE)
			st->packs_deleted++;
		else if (p->action == PACK_REWRITE)
		{
			st->packs_rewritten++;
			st->bytes_after += p->live_bytes;
		}
		else
			st->bytes_after += p->size;
	}
	/* Roughly: the rewritten blocks go into packs of STORE_PACK_TARGET bytes, each with a header. */
	if (st->packs_rewritten > 0)
		st->bytes_after += PACK_HEADER_SIZE * (1 + (st->bytes_after / STORE_PACK_TARGET));
	if (missing > 0)
	{
		rc = error_set(ERR_CORRUPT, "block store \"%s\": %" PRIu64 " pack files named by the index are missing: nothing was collected",
					   s->dir, missing);
		goto out;
	}
	if (dry_run || (st->blocks_removed == 0 && st->packs_deleted == 0 && st->packs_rewritten == 0))
		goto out;

	/* The new index: kept entries in place, rewritten ones at their new places. */
	while (st->blocks_live * 100 > slots * (INDEX_MAX_LOAD_PERCENT - 10))
		slots *= 2;
	if ((rc = table_create(&nt, new_path, slots)) != 0)
		goto out;
	if ((rc = scan_index(g, keep_entry, &nt)) != 0)
		goto out;
	buf = xmalloc(BLOCK_STORED_MAX);
	for (uint64_t i = 0; rc == 0 && i < g->packs_cap; i++)
		if (g->packs[i].used && g->packs[i].on_disk && g->packs[i].action == PACK_REWRITE)
			rc = rewrite_pack(g, &g->packs[i], &nt, buf);
	if (rc != 0 || (rc = out_seal(g)) != 0)
		goto out;
	nt.count = st->blocks_live;
	/* Commit point: the new index names only durable packs, and no pack it names is deleted below. */
	if ((rc = fio_lock(s->lock_path, true, &lock_fd)) != 0)
		goto out;
	rc = table_install(&nt, &s->index, index_path);
	/* Installed, nt is the store's index now; failed, table_install removed it. */
	nt = (table) {.fd = -1};
	if (rc != 0)
		goto out;
	forget_packs(s);
	for (uint64_t i = 0; rc == 0 && i < g->packs_cap; i++)
	{
		pack_stat  *p = &g->packs[i];

		if (p->used && p->on_disk && p->action != PACK_KEEP)
		{
			char	   *path = pack_path_of(s, p->pack_id, "");

			rc = fio_unlink(path);
			dirs[p->pack_id >> 56] = true;
			free(path);
		}
	}
	for (int d = 0; rc == 0 && d < 256; d++)
		if (dirs[d])
		{
			char	   *dir = xasprintf("%s/pack/%02x", s->dir, d);

			rc = fio_fsync_dir(dir);
			free(dir);
		}
	if (rc == 0)
		log_info("collected block store \"%s\": %" PRIu64 " blocks removed, %" PRIu64 " packs deleted, %" PRIu64
				 " rewritten", s->dir, st->blocks_removed, st->packs_deleted, st->packs_rewritten);
out:
	if (nt.fd >= 0)
		table_discard(&nt);
	if (lock_fd >= 0)
		fio_unlock(lock_fd);
	free(buf);
	free(index_path);
	free(new_path);
	return rc;
}
