/*
 * manifest.c: the backup manifest, written and read as a line-oriented text
 * stream (format in doc/repository-format.md, section "Manifest").
 *
 * Neither side ever holds a file's block list or the whole manifest.  The
 * writer buffers at most about IO_CHUNK bytes before passing them on; the
 * reader parses one line at a time from a fixed input buffer into a line
 * buffer capped at MAX_LINE bytes, and expands a `g` line into a buffer of
 * MANIFEST_GROUP_BLOCKS ids.  Both hash every byte before the end line:
 * the writer to produce the end line, the reader to check it.
 */
#include "manifest.h"

#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/error.h"
#include "../src/mem.h"

#define MAGIC "pgkeep-manifest"
#define MAX_LINE (1024 * 1024)      /* longest line, without its newline */
#define MAX_PATH 4096
#define IO_CHUNK 65536              /* reader's input buffer, writer's flush threshold */
#define SHOWN_MAX 200               /* bytes of a value quoted in a message */

const uint8_t manifest_zero_id[HASH_LEN] = {0};

bool
manifest_is_zero_id(const uint8_t id[HASH_LEN])
{
	return memcmp(id, manifest_zero_id, HASH_LEN) == 0;
}

/*
 * The header fields in the order the writer emits them.  One table drives
 * writing, parsing and the missing-key check so they cannot drift apart.
 */
typedef enum
{
	V_STR,                      /* escaped string, required */
	V_OPT_STR,                  /* escaped string, line omitted when NULL */
	V_I64,
	V_INT,
	V_U64,
	V_U32,
	V_LSN,                      /* "%X/%X" */
	V_BOOL                      /* "y" or "n" */
} value_type;

typedef struct header_field
{
	const char *key;
	value_type	type;
	size_t		offset;
} header_field;

#define HF(key, type, member) {key, type, offsetof(manifest_header, member)}

static const header_field header_fields[] = {
	HF("label", V_STR, label),
	HF("type", V_STR, type),
	HF("prior", V_OPT_STR, prior),
	HF("start-time", V_I64, start_time),
	HF("stop-time", V_I64, stop_time),
	HF("start-lsn", V_LSN, start_lsn),
	HF("stop-lsn", V_LSN, stop_lsn),
	HF("timeline", V_U32, timeline),
	HF("wal-start", V_STR, wal_start),
	HF("wal-stop", V_STR, wal_stop),
	HF("system-id", V_U64, system_id),
	HF("pg-version", V_U32, pg_version),
	HF("block-size", V_U32, block_size),
	HF("compress", V_STR, compress),
	HF("compress-level", V_INT, compress_level),
	HF("db-size", V_U64, db_size),
	HF("repo-size", V_U64, repo_size),
	HF("repo-new", V_U64, repo_new),
	HF("file-count", V_U64, file_count),
	HF("checksum-errors", V_U64, checksum_errors),
	HF("checksum-page", V_BOOL, checksum_page),
	HF("backup-label", V_STR, backup_label),
	HF("tablespace-map", V_OPT_STR, tablespace_map),
};

#define NFIELDS (sizeof(header_fields) / sizeof(header_fields[0]))

/* The value of a string field of h. */
static char *
str_value(const manifest_header *h, const header_field *f)
{
	return *(char *const *) ((const char *) h + f->offset);
}

/*
 * Append s escaped as the format requires (\\ \t \n \r).  For a message
 * (display), also show other control characters as \xNN and cut long values.
 */
static void
escape(strbuf *sb, const char *s, bool display)
{
	for (size_t i = 0; s[i] != '\0'; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (display && i == SHOWN_MAX)
		{
			sb_append(sb, "...");
			return;
		}
		if (c == '\\')
			sb_append(sb, "\\\\");
		else if (c == '\t')
			sb_append(sb, "\\t");
		else if (c == '\n')
			sb_append(sb, "\\n");
		else if (c == '\r')
			sb_append(sb, "\\r");
		else if (display && (c < 0x20 || c == 0x7f))
			sb_appendf(sb, "\\x%02x", c);
		else
			sb_appendc(sb, (char) c);
	}
}

/* s made safe to quote in a message; the string lives in sb. */
static const char *
shown(strbuf *sb, const char *s)
{
	sb_reset(sb);
	escape(sb, s, true);
	return sb_str(sb);
}

/* Undo escape() in place; false on an unknown escape or a trailing backslash. */
static bool
unescape(char *s)
{
	char	   *w = s;

	for (const char *r = s; *r != '\0'; r++)
	{
		if (*r != '\\')
		{
			*w++ = *r;
			continue;
		}
		switch (*++r)
		{
			case '\\':
				*w++ = '\\';
				break;
			case 't':
				*w++ = '\t';
				break;
			case 'n':
				*w++ = '\n';
				break;
			case 'r':
				*w++ = '\r';
				break;
			default:            /* includes the terminating NUL */
				return false;
		}
	}
	*w = '\0';
	return true;
}

static unsigned
digit_value(char c)
{
	if (c >= '0' && c <= '9')
		return (unsigned) (c - '0');
	if (c >= 'a' && c <= 'f')
		return (unsigned) (c - 'a' + 10);
	if (c >= 'A' && c <= 'F')
		return (unsigned) (c - 'A' + 10);
	return 16;                  /* a digit in no base used here */
}

/* The len bytes at s are one or more digits of base (8, 10 or 16), value at most max. */
static bool
parse_digits(const char *s, size_t len, unsigned base, uint64_t max, uint64_t *out)
{
	uint64_t	v = 0;

	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++)
	{
		unsigned	d = digit_value(s[i]);

		if (d >= base || d > max || v > (max - d) / base)
			return false;
		v = v * base + d;
	}
	*out = v;
	return true;
}

static bool
parse_uint(const char *s, unsigned base, uint64_t max, uint64_t *out)
{
	return parse_digits(s, strlen(s), base, max, out);
}

/* Decimal with an optional '-' ("-0" is refused), within [min, max]. */
static bool
parse_int(const char *s, int64_t min, int64_t max, int64_t *out)
{
	bool		neg = (*s == '-');
	uint64_t	mag;

	if (!parse_uint(s + neg, 10, neg ? (uint64_t) -(min + 1) + 1 : (uint64_t) max, &mag))
		return false;
	if (neg && mag == 0)
		return false;
	*out = neg ? -(int64_t) (mag - 1) - 1 : (int64_t) mag;
	return true;
}

/* "HI/LO", two hexadecimal 32-bit halves. */
static bool
parse_lsn(const char *s, uint64_t *out)
{
	const char *slash = strchr(s, '/');
	uint64_t	hi,
				lo;

	if (slash == NULL || !parse_digits(s, (size_t) (slash - s), 16, UINT32_MAX, &hi) ||
		!parse_uint(slash + 1, 16, UINT32_MAX, &lo))
		return false;
	*out = hi << 32 | lo;
	return true;
}

/* Parse one header value (already unescaped) into its field of h. */
static bool
parse_value(const header_field *f, const char *value, manifest_header *h)
{
	void	   *p = (char *) h + f->offset;
	uint64_t	u;
	int64_t		i;

	switch (f->type)
	{
		case V_STR:
		case V_OPT_STR:
			*(char **) p = xstrdup(value);
			return true;
		case V_I64:
			return parse_int(value, INT64_MIN, INT64_MAX, (int64_t *) p);
		case V_INT:
			if (!parse_int(value, INT_MIN, INT_MAX, &i))
				return false;
			*(int *) p = (int) i;
			return true;
		case V_U64:
			return parse_uint(value, 10, UINT64_MAX, (uint64_t *) p);
		case V_U32:
			if (!parse_uint(value, 10, UINT32_MAX, &u))
				return false;
			*(uint32_t *) p = (uint32_t) u;
			return true;
		case V_LSN:
			return parse_lsn(value, (uint64_t *) p);
		case V_BOOL:
			if (strcmp(value, "y") != 0 && strcmp(value, "n") != 0)
				return false;
			*(bool *) p = (value[0] == 'y');
			return true;
	}
	return false;
}

/* Append the value of field f of h as the writer emits it. */
static void
format_value(strbuf *sb, const header_field *f, const manifest_header *h)
{
	const void *p = (const char *) h + f->offset;
	uint64_t	lsn;

	switch (f->type)
	{
		case V_STR:
		case V_OPT_STR:
			escape(sb, str_value(h, f), false);
			break;
		case V_I64:
			sb_appendf(sb, "%" PRId64, *(const int64_t *) p);
			break;
		case V_INT:
			sb_appendf(sb, "%d", *(const int *) p);
			break;
		case V_U64:
			sb_appendf(sb, "%" PRIu64, *(const uint64_t *) p);
			break;
		case V_U32:
			sb_appendf(sb, "%" PRIu32, *(const uint32_t *) p);
			break;
		case V_LSN:
			lsn = *(const uint64_t *) p;
			sb_appendf(sb, "%X/%X", (unsigned) (lsn >> 32), (unsigned) (uint32_t) lsn);
			break;
		case V_BOOL:
			sb_appendc(sb, *(const bool *) p ? 'y' : 'n');
			break;
	}
}

/* Checks shared by writer and reader; false with the problem in why. */
static bool
header_valid(const manifest_header *h, strbuf *why)
{
	for (size_t i = 0; i < NFIELDS; i++)
	{
		if (header_fields[i].type == V_STR && str_value(h, &header_fields[i]) == NULL)
		{
			sb_appendf(why, "no value for \"%s\"", header_fields[i].key);
			return false;
		}
	}
	if (h->label[0] == '\0')
		sb_append(why, "empty label");
	else if (strcmp(h->type, "full") != 0 && strcmp(h->type, "diff") != 0 && strcmp(h->type, "incr") != 0)
		sb_append(why, "type is not \"full\", \"diff\" or \"incr\"");
	else if (h->block_size == 0)
		sb_append(why, "block size is 0");
	else if (h->ntablespaces < 0 || h->ntablespaces > MANIFEST_MAX_TABLESPACES)
		sb_appendf(why, "%d tablespaces (at most %d)", h->ntablespaces, MANIFEST_MAX_TABLESPACES);
	for (int i = 0; why->len == 0 && i < h->ntablespaces; i++)
	{
		const manifest_tablespace *ts = &h->tablespaces[i];

		if (ts->oid == 0 || ts->name == NULL || ts->name[0] == '\0' ||
			ts->location == NULL || ts->location[0] != '/')
			sb_appendf(why, "tablespace %" PRIu32 " needs an oid, a name and an absolute location", ts->oid);
		for (int j = 0; j < i && why->len == 0; j++)
			if (h->tablespaces[j].oid == ts->oid)
				sb_appendf(why, "tablespace %" PRIu32 " is listed twice", ts->oid);
	}
	return why->len == 0;
}

/* Checks shared by writer and reader, except the path (manifest_check_path). */
static bool
entry_valid(const manifest_entry *e, uint32_t block_size, strbuf *why)
{
	uint64_t	need = e->size / block_size + (e->size % block_size != 0);

	if (e->kind != MF_FILE && e->kind != MF_DIR && e->kind != MF_LINK)
		sb_append(why, "unknown kind");
	else if (e->mode > 07777)
		sb_appendf(why, "mode %o has bits outside 07777", (unsigned) e->mode);
	else if (e->user == NULL || e->user[0] == '\0' || e->group == NULL || e->group[0] == '\0')
		sb_append(why, "empty user or group");
	else if (e->kind == MF_LINK && (e->link_target == NULL || e->link_target[0] == '\0'))
		sb_append(why, "empty link target");
	else if (e->kind == MF_FILE && e->nblocks != need)
		sb_appendf(why, "%" PRIu64 " blocks for %" PRIu64 " bytes (expected %" PRIu64 ")",
				   e->nblocks, e->size, need);
	else if (e->kind == MF_FILE && e->nbad > 0 && e->bad == NULL)
		sb_append(why, "bad page count without a list");
	return why->len == 0;
}

/* A path byte's rank in manifest order: the end first, then '/', then the rest by value. */
static unsigned
path_rank(char c)
{
	unsigned char u = (unsigned char) c;

	return u == '\0' ? 0 : u == '/' ? 1 : u + 1u;
}

int
manifest_path_cmp(const char *a, const char *b)
{
	for (;; a++, b++)
	{
		unsigned	ra = path_rank(*a),
					rb = path_rank(*b);

		if (ra != rb)
			return ra < rb ? -1 : 1;
		if (ra == 0)
			return 0;
	}
}

static const char *
path_problem(const char *path)
{
	size_t		len = strlen(path);

	if (len == 0)
		return "empty";
	if (len > MAX_PATH)
		return "longer than 4096 bytes";
	if (path[0] == '/')
		return "absolute";
	for (const char *c = path; *c != '\0'; c++)
		if ((unsigned char) *c < 0x20)
			return "contains a control character";
	if (path[len - 1] == '/')
		return "ends with \"/\"";
	for (const char *c = path; c != NULL; c = strchr(c, '/'))
	{
		size_t		n;

		if (*c == '/')
			c++;
		n = strcspn(c, "/");
		if (n == 0)
			return "contains \"//\"";
		if (n == 1 && c[0] == '.')
			return "contains a \".\" component";
		if (n == 2 && c[0] == '.' && c[1] == '.')
			return "contains a \"..\" component";
	}
	return NULL;
}

int
manifest_check_path(const char *path)
{
	const char *problem = path_problem(path);
	strbuf		sb = STRBUF_INIT;
	int			rc;

	if (problem == NULL)
		return 0;
	rc = error_set(ERR_FORMAT, "invalid path \"%s\": %s", shown(&sb, path), problem);
	sb_free(&sb);
	return rc;
}

void
manifest_header_free(manifest_header *h)
{
	if (h == NULL)
		return;
	for (size_t i = 0; i < NFIELDS; i++)
		if (header_fields[i].type == V_STR || header_fields[i].type == V_OPT_STR)
			free(str_value(h, &header_fields[i]));
	for (int i = 0; i < h->ntablespaces; i++)
	{
		free(h->tablespaces[i].name);
		free(h->tablespaces[i].location);
	}
	free(h->tablespaces);
	memset(h, 0, sizeof(*h));
}

void
manifest_entry_free(manifest_entry *e)
{
	if (e == NULL)
		return;
	free(e->path);
	free(e->user);
	free(e->group);
	free(e->link_target);
	free(e->bad);
	memset(e, 0, sizeof(*e));
}

/* ---- writer ---- */

struct manifest_writer
{
	io_writer  *out;            /* not owned */
	hash_ctx   *hash;           /* of every byte passed to out */
	strbuf		buf;            /* lines not yet passed to out */
	bool		header_done;
	bool		ended;
	bool		broken;         /* failed after output began: only free is valid */
	uint32_t	block_size;
	strbuf		path;           /* last entry's path */
	uint64_t	blocks_left;    /* blocks the current file still needs */
	uint64_t	zero_run;       /* zero ids received but not yet written */
};

manifest_writer *
manifest_writer_new(io_writer *out)
{
	manifest_writer *m = xcalloc(1, sizeof(*m));

	m->out = out;
	m->hash = hash_new();
	return m;
}

void
manifest_writer_free(manifest_writer *m)
{
	if (m == NULL)
		return;
	hash_free(m->hash);
	sb_free(&m->buf);
	sb_free(&m->path);
	free(m);
}

static int
flush(manifest_writer *m)
{
	int			rc;

	if (m->buf.len == 0)
		return 0;
	hash_update(m->hash, m->buf.buf, m->buf.len);
	rc = io_write(m->out, m->buf.buf, m->buf.len);
	sb_reset(&m->buf);
	return rc;
}

/* End the line that starts at offset start of the buffer. */
static int
finish_line(manifest_writer *m, size_t start)
{
	if (m->buf.len - start > MAX_LINE)
		return error_set(ERR_FORMAT, "manifest line too long (more than %d bytes)", MAX_LINE);
	sb_appendc(&m->buf, '\n');
	return m->buf.len >= IO_CHUNK ? flush(m) : 0;
}

/* Mark the writer unusable when an error happened after output was produced. */
static int
broken(manifest_writer *m, int rc)
{
	if (rc != 0)
		m->broken = true;
	return rc;
}

static int
check_sequence(manifest_writer *m, bool for_header)
{
	if (m->broken || m->ended || m->header_done == for_header)
		return error_set(ERR_INTERNAL, "manifest written out of sequence");
	return 0;
}

static int
emit_header(manifest_writer *m, const manifest_header *h)
{
	size_t		start;
	int			rc;

	sb_appendf(&m->buf, "%s %d\n", MAGIC, MANIFEST_VERSION);
	for (size_t i = 0; i < NFIELDS; i++)
	{
		const header_field *f = &header_fields[i];

		if (f->type == V_OPT_STR && str_value(h, f) == NULL)
			continue;
		start = m->buf.len;
		sb_appendf(&m->buf, "%s\t", f->key);
		format_value(&m->buf, f, h);
		if ((rc = finish_line(m, start)) != 0)
			return rc;
	}
	for (int i = 0; i < h->ntablespaces; i++)
	{
		start = m->buf.len;
		sb_appendf(&m->buf, "tablespace\t%" PRIu32 "\t", h->tablespaces[i].oid);
		escape(&m->buf, h->tablespaces[i].name, false);
		sb_appendc(&m->buf, '\t');
		escape(&m->buf, h->tablespaces[i].location, false);
		if ((rc = finish_line(m, start)) != 0)
			return rc;
	}
	sb_append(&m->buf, "files\n");
	return 0;
}

int
manifest_write_header(manifest_writer *m, const manifest_header *h)
{
	strbuf		why = STRBUF_INIT;
	int			rc;

	if ((rc = check_sequence(m, true)) != 0)
		return rc;
	if (!header_valid(h, &why))
	{
		rc = error_set(ERR_FORMAT, "invalid manifest header: %s", sb_str(&why));
		sb_free(&why);
		return rc;
	}
	m->header_done = true;
	m->block_size = h->block_size;
	return broken(m, emit_header(m, h));
}

static int
flush_zero_run(manifest_writer *m)
{
	size_t		start = m->buf.len;

	if (m->zero_run == 0)
		return 0;
	sb_appendf(&m->buf, "z\t%" PRIu64, m->zero_run);
	m->zero_run = 0;
	return finish_line(m, start);
}

static void
append_bad_pages(strbuf *sb, const manifest_entry *e)
{
	uint64_t	listed = e->nbad < MANIFEST_MAX_BAD_PAGES ? e->nbad : MANIFEST_MAX_BAD_PAGES;

	if (e->nbad == 0)
	{
		sb_appendc(sb, '-');
		return;
	}
	sb_appendf(sb, "%" PRIu64 ":", e->nbad);
	for (uint64_t i = 0; i < listed; i++)
		sb_appendf(sb, "%s%" PRIu32, i ? "," : "", e->bad[i]);
}

static int
emit_entry(manifest_writer *m, const manifest_entry *e)
{
	size_t		start;
	int			rc;

	if ((rc = flush_zero_run(m)) != 0)
		return rc;
	start = m->buf.len;
	sb_appendf(&m->buf, "%c\t", (char) e->kind);
	escape(&m->buf, e->path, false);
	sb_appendf(&m->buf, "\t%04o\t", (unsigned) e->mode);
	escape(&m->buf, e->user, false);
	sb_appendc(&m->buf, '\t');
	escape(&m->buf, e->group, false);
	sb_appendf(&m->buf, "\t%" PRId64, e->mtime);
	if (e->kind == MF_LINK)
	{
		sb_appendc(&m->buf, '\t');
		escape(&m->buf, e->link_target, false);
	}
	else if (e->kind == MF_FILE)
	{
		sb_appendf(&m->buf, "\t%" PRIu64 "\t%" PRIu64 "\t", e->size, e->nblocks);
		append_bad_pages(&m->buf, e);
	}
	sb_reset(&m->path);
	sb_append(&m->path, e->path);
	m->blocks_left = (e->kind == MF_FILE) ? e->nblocks : 0;
	return finish_line(m, start);
}

int
manifest_write_entry(manifest_writer *m, const manifest_entry *e)
{
	strbuf		why = STRBUF_INIT;
	int			rc;

	if ((rc = check_sequence(m, false)) != 0)
		return rc;
	if (m->blocks_left > 0)
		return error_set(ERR_INTERNAL, "manifest entry \"%s\" written while \"%s\" lacks %" PRIu64 " blocks",
						 e->path, m->path.buf, m->blocks_left);
	if ((rc = manifest_check_path(e->path)) != 0)
		return rc;
	if (m->path.len > 0 && manifest_path_cmp(e->path, m->path.buf) <= 0)
		return error_set(ERR_INTERNAL, "manifest entry \"%s\" written after \"%s\"", e->path, m->path.buf);
	if (!entry_valid(e, m->block_size, &why))
	{
		rc = error_set(ERR_INTERNAL, "invalid manifest entry \"%s\": %s", e->path, sb_str(&why));
		sb_free(&why);
		return rc;
	}
	return broken(m, emit_entry(m, e));
}

static int
emit_blocks(manifest_writer *m, const uint8_t (*ids)[HASH_LEN], size_t n)
{
	char		hex[HASH_HEX_LEN + 1];
	int			rc;

	for (size_t i = 0; i < n; i++)
	{
		size_t		start;

		if (manifest_is_zero_id(ids[i]))
		{
			m->zero_run++;
			continue;
		}
		if ((rc = flush_zero_run(m)) != 0)
			return rc;
		start = m->buf.len;
		hash_to_hex(ids[i], hex);
		sb_appendn(&m->buf, hex, HASH_HEX_LEN);
		if ((rc = finish_line(m, start)) != 0)
			return rc;
	}
	return 0;
}

int
manifest_write_blocks(manifest_writer *m, const uint8_t (*ids)[HASH_LEN], size_t n)
{
	int			rc;

	if ((rc = check_sequence(m, false)) != 0)
		return rc;
	if (n > m->blocks_left)
		return error_set(ERR_INTERNAL, "%zu blocks written for manifest entry \"%s\", which lacks %" PRIu64,
						 n, sb_str(&m->path), m->blocks_left);
	m->blocks_left -= n;
	return broken(m, emit_blocks(m, ids, n));
}

/* Why ref cannot be a block line, or NULL. */
static const char *
ref_problem(const manifest_ref *ref)
{
	switch (ref->kind)
	{
		case MREF_BLOCK:
			return ref->count == 1 ? NULL : "a block reference must count 1 block";
		case MREF_ZERO:
			return ref->count >= 1 ? NULL : "a zero run must count at least 1 block";
		case MREF_GROUP:
			if (ref->count < 1 || ref->count > MANIFEST_GROUP_BLOCKS)
				return "a block list group must count 1 to 256 blocks";
			return manifest_is_zero_id(ref->id) ? "a block list group cannot have the zero id" : NULL;
	}
	return "unknown block reference kind";
}

static int
emit_ref(manifest_writer *m, const manifest_ref *ref)
{
	char		hex[HASH_HEX_LEN + 1];
	size_t		start;
	int			rc;

	if (ref->kind == MREF_ZERO || (ref->kind == MREF_BLOCK && manifest_is_zero_id(ref->id)))
	{
		m->zero_run += ref->count;
		return 0;
	}
	if ((rc = flush_zero_run(m)) != 0)
		return rc;
	start = m->buf.len;
	hash_to_hex(ref->id, hex);
	if (ref->kind == MREF_GROUP)
		sb_appendf(&m->buf, "g\t%s\t%" PRIu64, hex, ref->count);
	else
		sb_appendn(&m->buf, hex, HASH_HEX_LEN);
	return finish_line(m, start);
}

int
manifest_write_ref(manifest_writer *m, const manifest_ref *ref)
{
	const char *problem;
	int			rc;

	if ((rc = check_sequence(m, false)) != 0)
		return rc;
	if ((problem = ref_problem(ref)) != NULL)
		return error_set(ERR_INTERNAL, "invalid block line for manifest entry \"%s\": %s",
						 sb_str(&m->path), problem);
	if (ref->count > m->blocks_left)
		return error_set(ERR_INTERNAL, "%" PRIu64 " blocks written for manifest entry \"%s\", which lacks %" PRIu64,
						 ref->count, sb_str(&m->path), m->blocks_left);
	m->blocks_left -= ref->count;
	return broken(m, emit_ref(m, ref));
}

static int
emit_end(manifest_writer *m)
{
	uint8_t		digest[HASH_LEN];
	char		line[sizeof("end\t\n") + HASH_HEX_LEN];
	char		hex[HASH_HEX_LEN + 1];
	int			rc;

	if ((rc = flush_zero_run(m)) != 0 || (rc = flush(m)) != 0)
		return rc;
	hash_final(m->hash, digest);
	hash_to_hex(digest, hex);
	snprintf(line, sizeof(line), "end\t%s\n", hex);
	m->ended = true;
	return io_write(m->out, line, strlen(line));
}

int
manifest_write_end(manifest_writer *m)
{
	int			rc;

	if ((rc = check_sequence(m, false)) != 0)
		return rc;
	if (m->blocks_left > 0)
		return error_set(ERR_INTERNAL, "manifest ended while \"%s\" lacks %" PRIu64 " blocks",
						 m->path.buf, m->blocks_left);
	return broken(m, emit_end(m));
}

/* ---- reader ---- */

typedef enum
{
	RS_HEADER,
	RS_ENTRIES,
	RS_DONE,
	RS_FAILED
} reader_state;

typedef enum
{
	BM_NONE,                    /* nothing read yet */
	BM_BLOCKS,                  /* manifest_read_blocks */
	BM_REFS                     /* manifest_read_ref */
} block_mode;

struct manifest_reader
{
	io_reader  *in;             /* not owned */
	char	   *what;
	hash_ctx   *hash;           /* of every line before the end line */
	char	   *ibuf;           /* IO_CHUNK bytes of input */
	size_t		ipos;
	size_t		ilen;
	strbuf		line;           /* current line without its newline */
	uint64_t	lineno;
	strbuf		scratch;        /* for shown() */
	reader_state state;
	uint32_t	block_size;
	strbuf		path;           /* last entry's path */
	uint64_t	nblocks;        /* of the last entry */
	uint64_t	blocks_left;    /* of the last entry, not yet returned */
	uint64_t	zeros_left;     /* of the current zero run, not yet returned */
	block_mode	mode;           /* how the current file's blocks are being read */
	manifest_group_fn group_fn; /* resolver of `g` lines, or NULL */
	void	   *group_arg;
	uint8_t		(*group)[HASH_LEN]; /* MANIFEST_GROUP_BLOCKS ids, allocated at the first group */
	size_t		group_pos;      /* next id of group to return */
	size_t		group_len;      /* ids in group */
};

static int	bad(manifest_reader *m, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Fail naming the manifest and the current line. */
static int
bad(manifest_reader *m, int code, const char *fmt, ...)
{
	va_list		ap;
	char	   *msg;

	va_start(ap, fmt);
	msg = xvasprintf(fmt, ap);
	va_end(ap);
	error_set(code, "%s, line %" PRIu64 ": %s", m->what, m->lineno, msg);
	free(msg);
	return code;
}

manifest_reader *
manifest_reader_new(io_reader *in, const char *what)
{
	manifest_reader *m = xcalloc(1, sizeof(*m));

	m->in = in;
	m->what = xstrdup(what);
	m->hash = hash_new();
	m->ibuf = xmalloc(IO_CHUNK);
	return m;
}

void
manifest_reader_free(manifest_reader *m)
{
	if (m == NULL)
		return;
	free(m->what);
	hash_free(m->hash);
	free(m->ibuf);
	sb_free(&m->line);
	sb_free(&m->scratch);
	sb_free(&m->path);
	free(m->group);
	free(m);
}

void
manifest_reader_set_group_fn(manifest_reader *m, manifest_group_fn fn, void *arg)
{
	m->group_fn = fn;
	m->group_arg = arg;
}

size_t
manifest_peek_groups(manifest_reader *m, uint8_t (*ids)[HASH_LEN], size_t max)
{
	const char *p = m->ibuf + m->ipos;
	const char *end = m->ibuf + m->ilen;
	char		hex[HASH_HEX_LEN + 1];
	size_t		n = 0;

	while (n < max && p < end)
	{
		const char *nl = memchr(p, '\n', (size_t) (end - p));

		if (nl == NULL)
			break;              /* the rest of that line is not read yet */
		if (nl - p > 2 + HASH_HEX_LEN && p[0] == 'g' && p[1] == '\t' && p[2 + HASH_HEX_LEN] == '\t')
		{
			memcpy(hex, p + 2, HASH_HEX_LEN);
			hex[HASH_HEX_LEN] = '\0';
			if (hash_from_hex(hex, ids[n]))
				n++;
		}
		p = nl + 1;
	}
	return n;
}

static int
fill(manifest_reader *m)
{
	size_t		got = 0;
	int			rc = io_read(m->in, m->ibuf, IO_CHUNK, &got);

	if (rc != 0)
		return error_wrap(rc, "could not read %s", m->what);
	m->ipos = 0;
	m->ilen = got;
	return 0;
}

/*
 * Read the next line into m->line.  End of input is always premature here:
 * only read_end looks past the end line.  Every line but the end line is
 * hashed with its newline.
 */
static int
read_line(manifest_reader *m)
{
	int			rc;

	sb_reset(&m->line);
	m->lineno++;
	for (;;)
	{
		const char *start,
				   *nl;
		size_t		n;

		if (m->ipos == m->ilen && (rc = fill(m)) != 0)
			return rc;
		if (m->ilen == 0)
			return error_set(ERR_CORRUPT, "%s is truncated at line %" PRIu64, m->what, m->lineno);
		start = m->ibuf + m->ipos;
		nl = memchr(start, '\n', m->ilen - m->ipos);
		n = nl ? (size_t) (nl - start) : m->ilen - m->ipos;
		if (m->line.len + n > MAX_LINE)
			return bad(m, ERR_FORMAT, "line longer than %d bytes", MAX_LINE);
		sb_appendn(&m->line, start, n);
		m->ipos += n + (nl != NULL);
		if (nl != NULL)
			break;
	}
	if (strlen(m->line.buf) != m->line.len)
		return bad(m, ERR_FORMAT, "line contains a NUL byte");
	if (!str_starts_with(m->line.buf, "end\t"))
	{
		hash_update(m->hash, m->line.buf, m->line.len);
		hash_update(m->hash, "\n", 1);
	}
	return 0;
}

/* Split the current line at tabs into exactly n fields, each unescaped in place. */
static int
split(manifest_reader *m, char **f, int n)
{
	char	   *p = m->line.buf;
	int			found = 1;

	for (const char *c = p; (c = strchr(c, '\t')) != NULL; c++)
		found++;
	if (found != n)
		return bad(m, ERR_FORMAT, "expected %d fields, found %d", n, found);
	for (int i = 0; i < n; i++)
	{
		f[i] = p;
		p = strchrnul(p, '\t');
		if (*p != '\0')
			*p++ = '\0';
		if (!unescape(f[i]))
			return bad(m, ERR_FORMAT, "invalid escape sequence in field %d", i + 1);
	}
	return 0;
}

static int
read_version(manifest_reader *m)
{
	uint64_t	version;
	int			rc;

	if ((rc = read_line(m)) != 0)
		return rc;
	if (!str_starts_with(m->line.buf, MAGIC " ") ||
		!parse_uint(m->line.buf + strlen(MAGIC " "), 10, UINT64_MAX, &version))
		return bad(m, ERR_FORMAT, "not a pgkeep manifest");
	if (version != MANIFEST_VERSION)
		return bad(m, ERR_FORMAT, "unsupported manifest version %" PRIu64, version);
	return 0;
}

static int
read_tablespace(manifest_reader *m, manifest_header *h)
{
	manifest_tablespace *ts;
	char	   *f[4];
	uint64_t	oid;
	int			rc;

	if ((rc = split(m, f, 4)) != 0)
		return rc;
	if (h->ntablespaces == MANIFEST_MAX_TABLESPACES)
		return bad(m, ERR_FORMAT, "more than %d tablespaces", MANIFEST_MAX_TABLESPACES);
	if (!parse_uint(f[1], 10, UINT32_MAX, &oid))
		return bad(m, ERR_FORMAT, "invalid tablespace oid \"%s\"", shown(&m->scratch, f[1]));
	h->tablespaces = xrealloc(h->tablespaces, (size_t) (h->ntablespaces + 1) * sizeof(*ts));
	ts = &h->tablespaces[h->ntablespaces++];
	ts->oid = (uint32_t) oid;
	ts->name = xstrdup(f[2]);
	ts->location = xstrdup(f[3]);
	return 0;
}

static const header_field *
find_field(const char *key)
{
	for (size_t i = 0; i < NFIELDS; i++)
		if (strcmp(header_fields[i].key, key) == 0)
			return &header_fields[i];
	return NULL;
}

static int
read_header(manifest_reader *m, manifest_header *h)
{
	bool		seen[NFIELDS] = {false};
	strbuf		why = STRBUF_INIT;
	int			rc;

	if ((rc = read_version(m)) != 0)
		return rc;
	for (;;)
	{
		const header_field *hf;
		char	   *f[2];

		if ((rc = read_line(m)) != 0)
			return rc;
		if (strcmp(m->line.buf, "files") == 0)
			break;
		if (str_starts_with(m->line.buf, "tablespace\t"))
		{
			if ((rc = read_tablespace(m, h)) != 0)
				return rc;
			continue;
		}
		if ((rc = split(m, f, 2)) != 0)
			return rc;
		if ((hf = find_field(f[0])) == NULL)
			return bad(m, ERR_FORMAT, "unknown header key \"%s\"", shown(&m->scratch, f[0]));
		if (seen[hf - header_fields])
			return bad(m, ERR_FORMAT, "duplicate header key \"%s\"", hf->key);
		if (!parse_value(hf, f[1], h))
			return bad(m, ERR_FORMAT, "invalid value of \"%s\": \"%s\"", hf->key, shown(&m->scratch, f[1]));
		seen[hf - header_fields] = true;
	}
	for (size_t i = 0; i < NFIELDS; i++)
		if (!seen[i] && header_fields[i].type != V_OPT_STR)
			return bad(m, ERR_FORMAT, "missing header key \"%s\"", header_fields[i].key);
	if (!header_valid(h, &why))
	{
		rc = bad(m, ERR_FORMAT, "invalid header: %s", sb_str(&why));
		sb_free(&why);
		return rc;
	}
	m->block_size = h->block_size;
	return 0;
}

int
manifest_read_header(manifest_reader *m, manifest_header *h)
{
	int			rc;

	memset(h, 0, sizeof(*h));
	if (m->state != RS_HEADER)
		return error_set(ERR_INTERNAL, "%s read out of sequence", m->what);
	rc = read_header(m, h);
	if (rc != 0)
		manifest_header_free(h);
	m->state = rc ? RS_FAILED : RS_ENTRIES;
	return rc;
}

/*
 * Read the next block line of the current file into ref.  Its count must fit
 * in the blocks no line has covered yet: blocks_left less those of the zero
 * run or group being handed out.
 */
static int
read_ref(manifest_reader *m, manifest_ref *ref)
{
	uint64_t	uncovered = m->blocks_left - m->zeros_left - (m->group_len - m->group_pos);
	uint64_t	max;
	char	   *f[3];
	int			rc;

	memset(ref, 0, sizeof(*ref));
	if ((rc = read_line(m)) != 0)
		return rc;
	if (m->line.len == HASH_HEX_LEN)
	{
		if (!hash_from_hex(m->line.buf, ref->id))
			return bad(m, ERR_FORMAT, "invalid block id \"%s\"", shown(&m->scratch, m->line.buf));
		ref->kind = MREF_BLOCK;
		ref->count = 1;
		return 0;
	}
	if (str_starts_with(m->line.buf, "z\t"))
	{
		if (!parse_uint(m->line.buf + 2, 10, uncovered, &ref->count) || ref->count == 0)
			return bad(m, ERR_FORMAT, "invalid zero run \"%s\": \"%s\" lacks %" PRIu64 " blocks",
					   shown(&m->scratch, m->line.buf + 2), m->path.buf, uncovered);
		ref->kind = MREF_ZERO;
		return 0;
	}
	if (str_starts_with(m->line.buf, "g\t"))
	{
		if ((rc = split(m, f, 3)) != 0)
			return rc;
		if (!hash_from_hex(f[1], ref->id))
			return bad(m, ERR_FORMAT, "invalid block list id \"%s\"", shown(&m->scratch, f[1]));
		if (manifest_is_zero_id(ref->id))
			return bad(m, ERR_FORMAT, "block list id is the zero id");
		max = uncovered < MANIFEST_GROUP_BLOCKS ? uncovered : MANIFEST_GROUP_BLOCKS;
		if (!parse_uint(f[2], 10, max, &ref->count) || ref->count == 0)
			return bad(m, ERR_FORMAT, "invalid group count \"%s\": \"%s\" lacks %" PRIu64
					   " blocks, a group holds 1 to %d", shown(&m->scratch, f[2]), m->path.buf,
					   uncovered, MANIFEST_GROUP_BLOCKS);
		ref->kind = MREF_GROUP;
		return 0;
	}
	return bad(m, ERR_FORMAT, "\"%s\" has %" PRIu64 " blocks, expected %" PRIu64,
			   m->path.buf, m->nblocks - uncovered, m->nblocks);
}

/* Fill the group buffer with the ids of ref (a group) through the resolver. */
static int
resolve_group(manifest_reader *m, const manifest_ref *ref)
{
	char		hex[HASH_HEX_LEN + 1];
	int			rc;

	if (m->group_fn == NULL)
	{
		hash_to_hex(ref->id, hex);
		return bad(m, ERR_FORMAT, "block list group %s of \"%s\" cannot be expanded: no resolver",
				   hex, m->path.buf);
	}
	if (m->group == NULL)
		m->group = xmalloc(MANIFEST_GROUP_BLOCKS * HASH_LEN);
	if ((rc = m->group_fn(m->group_arg, ref->id, ref->count, m->group)) != 0)
		return rc;
	m->group_pos = 0;
	m->group_len = (size_t) ref->count;
	return 0;
}

static int
read_blocks(manifest_reader *m, uint8_t (*ids)[HASH_LEN], size_t max, size_t *n)
{
	manifest_ref ref;
	int			rc;

	*n = 0;
	while (*n < max && m->blocks_left > 0)
	{
		size_t		room = max - *n,
					k;

		if (m->zeros_left > 0)
		{
			k = m->zeros_left < room ? (size_t) m->zeros_left : room;
			memset(ids[*n], 0, k * HASH_LEN);
			m->zeros_left -= k;
		}
		else if (m->group_pos < m->group_len)
		{
			k = m->group_len - m->group_pos < room ? m->group_len - m->group_pos : room;
			memcpy(ids[*n], m->group[m->group_pos], k * HASH_LEN);
			m->group_pos += k;
		}
		else if ((rc = read_ref(m, &ref)) != 0)
			return rc;
		else if (ref.kind == MREF_ZERO)
		{
			m->zeros_left = ref.count;
			continue;
		}
		else if (ref.kind == MREF_GROUP)
		{
			if ((rc = resolve_group(m, &ref)) != 0)
				return rc;
			continue;
		}
		else
		{
			memcpy(ids[*n], ref.id, HASH_LEN);
			k = 1;
		}
		*n += k;
		m->blocks_left -= k;
	}
	return 0;
}

/* Check that the current file's blocks are read the way they began to be. */
static int
use_mode(manifest_reader *m, block_mode mode)
{
	if (m->state != RS_ENTRIES)
		return error_set(ERR_INTERNAL, "%s read out of sequence", m->what);
	if (m->mode != BM_NONE && m->mode != mode)
		return error_set(ERR_INTERNAL, "blocks of \"%s\" in %s read both as ids and as lines",
						 m->path.buf, m->what);
	m->mode = mode;
	return 0;
}

int
manifest_read_blocks(manifest_reader *m, uint8_t (*ids)[HASH_LEN], size_t max, size_t *n)
{
	int			rc;

	*n = 0;
	if ((rc = use_mode(m, BM_BLOCKS)) != 0)
		return rc;
	if ((rc = read_blocks(m, ids, max, n)) != 0)
		m->state = RS_FAILED;
	return rc;
}

int
manifest_read_ref(manifest_reader *m, manifest_ref *ref, bool *end)
{
	int			rc;

	memset(ref, 0, sizeof(*ref));
	*end = false;
	if ((rc = use_mode(m, BM_REFS)) != 0)
		return rc;
	if (m->blocks_left == 0)
	{
		*end = true;
		return 0;
	}
	if ((rc = read_ref(m, ref)) != 0)
	{
		memset(ref, 0, sizeof(*ref));
		m->state = RS_FAILED;
		return rc;
	}
	m->blocks_left -= ref->count;
	return 0;
}

/* Pass over the current file's unread blocks, checking their lines without resolving groups. */
static int
skip_blocks(manifest_reader *m)
{
	manifest_ref ref;
	int			rc;

	m->blocks_left -= m->zeros_left + (m->group_len - m->group_pos);
	m->zeros_left = 0;
	m->group_pos = m->group_len = 0;
	while (m->blocks_left > 0)
	{
		if ((rc = read_ref(m, &ref)) != 0)
			return rc;
		m->blocks_left -= ref.count;
	}
	return 0;
}

/* "-" or "COUNT:P1,P2,..." listing min(COUNT, MANIFEST_MAX_BAD_PAGES) pages. */
static bool
parse_bad_pages(const char *s, manifest_entry *e)
{
	const char *colon = strchr(s, ':');
	uint64_t	listed,
				page;

	if (strcmp(s, "-") == 0)
		return true;
	if (colon == NULL || !parse_digits(s, (size_t) (colon - s), 10, UINT64_MAX, &e->nbad) || e->nbad == 0)
		return false;
	listed = e->nbad < MANIFEST_MAX_BAD_PAGES ? e->nbad : MANIFEST_MAX_BAD_PAGES;
	e->bad = xcalloc((size_t) listed, sizeof(uint32_t));
	s = colon + 1;
	for (uint64_t i = 0; i < listed; i++)
	{
		size_t		n = strcspn(s, ",");

		/* Every number but the last is followed by a comma. */
		if ((s[n] == ',') == (i + 1 == listed) || !parse_digits(s, n, 10, UINT32_MAX, &page))
			return false;
		e->bad[i] = (uint32_t) page;
		s += n + 1;
	}
	return true;
}

/* Parse the fields of an entry line of kind kind into e. */
static int
parse_entry(manifest_reader *m, char kind, char **f, manifest_entry *e)
{
	strbuf		why = STRBUF_INIT;
	uint64_t	mode;
	int			rc;

	if (manifest_check_path(f[1]) != 0)
		return error_wrap(ERR_FORMAT, "%s, line %" PRIu64, m->what, m->lineno);
	if (m->path.len > 0 && manifest_path_cmp(f[1], m->path.buf) <= 0)
		return bad(m, ERR_FORMAT, "\"%s\" is not after \"%s\" in path order", f[1], m->path.buf);
	if (!parse_uint(f[2], 8, 07777, &mode))
		return bad(m, ERR_FORMAT, "invalid mode \"%s\"", shown(&m->scratch, f[2]));
	if (!parse_int(f[5], INT64_MIN, INT64_MAX, &e->mtime))
		return bad(m, ERR_FORMAT, "invalid mtime \"%s\"", shown(&m->scratch, f[5]));
	e->kind = (manifest_kind) kind;
	e->mode = (mode_t) mode;
	e->path = xstrdup(f[1]);
	e->user = xstrdup(f[3]);
	e->group = xstrdup(f[4]);
	if (kind == MF_LINK)
		e->link_target = xstrdup(f[6]);
	if (kind == MF_FILE &&
		(!parse_uint(f[6], 10, UINT64_MAX, &e->size) || !parse_uint(f[7], 10, UINT64_MAX, &e->nblocks)))
		return bad(m, ERR_FORMAT, "invalid size or block count");
	if (kind == MF_FILE && !parse_bad_pages(f[8], e))
		return bad(m, ERR_FORMAT, "invalid bad page list \"%s\"", shown(&m->scratch, f[8]));
	if (!entry_valid(e, m->block_size, &why))
	{
		rc = bad(m, ERR_FORMAT, "invalid entry \"%s\": %s", e->path, sb_str(&why));
		sb_free(&why);
		return rc;
	}
	sb_reset(&m->path);
	sb_append(&m->path, e->path);
	m->nblocks = m->blocks_left = e->nblocks;
	m->zeros_left = 0;
	m->group_pos = m->group_len = 0;
	m->mode = BM_NONE;
	return 0;
}

/* Fail unless no byte follows what has been read. */
static int
check_eof(manifest_reader *m)
{
	int			rc;

	if (m->ipos == m->ilen && (rc = fill(m)) != 0)
		return rc;
	if (m->ipos < m->ilen)
		return bad(m, ERR_FORMAT, "data after the end line");
	return 0;
}

static int
read_end(manifest_reader *m)
{
	uint8_t		digest[HASH_LEN];
	char		hex[HASH_HEX_LEN + 1];
	char	   *f[2];
	int			rc;

	if ((rc = split(m, f, 2)) != 0)
		return rc;
	/* Compared as text: the writer's lowercase hex is the only valid spelling. */
	hash_final(m->hash, digest);
	hash_to_hex(digest, hex);
	if (strcmp(f[1], hex) != 0)
		return bad(m, ERR_CORRUPT, "checksum mismatch");
	return check_eof(m);
}

static int
read_entry(manifest_reader *m, manifest_entry *e, bool *done)
{
	char	   *f[9];
	char		kind;
	int			nfields,
				rc;

	if ((rc = skip_blocks(m)) != 0 || (rc = read_line(m)) != 0)
		return rc;
	if (str_starts_with(m->line.buf, "end\t"))
	{
		if ((rc = read_end(m)) != 0)
			return rc;
		*done = true;
		return 0;
	}
	kind = m->line.buf[0];
	nfields = kind == MF_DIR ? 6 : kind == MF_LINK ? 7 : kind == MF_FILE ? 9 : 0;
	if (nfields == 0 || m->line.buf[1] != '\t')
		return bad(m, ERR_FORMAT, "expected an entry or the end line");
	if ((rc = split(m, f, nfields)) != 0)
		return rc;
	return parse_entry(m, kind, f, e);
}

int
manifest_read_entry(manifest_reader *m, manifest_entry *e, bool *done)
{
	int			rc;

	memset(e, 0, sizeof(*e));
	*done = (m->state == RS_DONE);
	if (*done)
		return 0;
	if (m->state != RS_ENTRIES)
		return error_set(ERR_INTERNAL, "%s read out of sequence", m->what);
	rc = read_entry(m, e, done);
	if (rc != 0)
	{
		manifest_entry_free(e);
		m->state = RS_FAILED;
	}
	else if (*done)
		m->state = RS_DONE;
	return rc;
}

int
manifest_verify_stream(io_reader *in, const char *what)
{
	manifest_reader *m = manifest_reader_new(in, what);
	manifest_header h;
	manifest_entry e;
	bool		done = false;
	int			rc;

	rc = manifest_read_header(m, &h);
	manifest_header_free(&h);
	while (rc == 0 && !done)
	{
		rc = manifest_read_entry(m, &e, &done);
		manifest_entry_free(&e);
	}
	manifest_reader_free(m);
	return rc;
}
