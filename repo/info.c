/*
 * info.c: the info command: for each stanza its status, WAL archive range
 * and backups, as text or as a JSON document (--output=json) whose shape is
 * documented in doc/user-guide.md and kept stable.
 */
#include "info.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "expire.h"
#include "manifest.h"
#include "repo.h"
#include "../src/error.h"
#include "../src/fileio.h"
#include "../src/mem.h"
#include "../src/option.h"
#include "../src/pgformat.h"

typedef struct wal_range
{
	char		min[64];
	char		max[64];
} wal_range;

static int
wal_range_add(const wal_object *obj, void *arg)
{
	wal_range  *w = arg;

	if (wal_file_classify(obj->name) != WAL_FILE_SEGMENT)
		return 0;
	if (w->min[0] == '\0' || strcmp(obj->name, w->min) < 0)
		snprintf(w->min, sizeof(w->min), "%s", obj->name);
	if (strcmp(obj->name, w->max) > 0)
		snprintf(w->max, sizeof(w->max), "%s", obj->name);
	return 0;
}

static void
fmt_time(int64_t t, char out[32])
{
	time_t		tt = (time_t) t;
	struct tm	tm;

	localtime_r(&tt, &tm);
	strftime(out, 32, "%Y-%m-%d %H:%M:%S%z", &tm);
}

static void
fmt_size(uint64_t n, char out[32])
{
	const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	double		v = (double) n;
	int			u = 0;

	while (v >= 1024.0 && u < 4)
	{
		v /= 1024.0;
		u++;
	}
	snprintf(out, 32, u ? "%.1f%s" : "%.0f%s", v, units[u]);
}

static void
text_backup(strbuf *sb, const manifest_header *h, bool expires)
{
	char		a[32], b[32], lsn1[32], lsn2[32];

	sb_appendf(sb, "\n        %s backup: %s%s\n", h->type, h->label, expires ? " (expires at next expire)" : "");
	if (h->prior)
		sb_appendf(sb, "            prior: %s\n", h->prior);
	fmt_time(h->start_time, a);
	fmt_time(h->stop_time, b);
	sb_appendf(sb, "            timestamp start/stop: %s / %s\n", a, b);
	wal_lsn_format(h->start_lsn, lsn1);
	wal_lsn_format(h->stop_lsn, lsn2);
	sb_appendf(sb, "            wal start/stop: %s / %s\n", h->wal_start, h->wal_stop);
	sb_appendf(sb, "            lsn start/stop: %s / %s\n", lsn1, lsn2);
	fmt_size(h->db_size, a);
	sb_appendf(sb, "            database size: %s, files: %llu\n", a, (unsigned long long) h->file_count);
	fmt_size(h->repo_size, a);
	fmt_size(h->repo_new, b);
	sb_appendf(sb, "            repository size: %s, new in the repository: %s\n", a, b);
	if (h->checksum_errors)
		sb_appendf(sb, "            page checksum errors: %llu\n", (unsigned long long) h->checksum_errors);
}

static void
json_backup(strbuf *sb, const manifest_header *h, bool first, bool expires)
{
	char		lsn1[32], lsn2[32];

	wal_lsn_format(h->start_lsn, lsn1);
	wal_lsn_format(h->stop_lsn, lsn2);
	sb_append(sb, first ? "" : ",");
	sb_append(sb, "{\"label\":");
	sb_append_json(sb, h->label);
	sb_append(sb, ",\"type\":");
	sb_append_json(sb, h->type);
	sb_append(sb, ",\"prior\":");
	if (h->prior)
		sb_append_json(sb, h->prior);
	else
		sb_append(sb, "null");
	sb_appendf(sb, ",\"timestamp\":{\"start\":%lld,\"stop\":%lld}", (long long) h->start_time, (long long) h->stop_time);
	sb_appendf(sb, ",\"lsn\":{\"start\":\"%s\",\"stop\":\"%s\"}", lsn1, lsn2);
	sb_append(sb, ",\"archive\":{\"start\":");
	sb_append_json(sb, h->wal_start);
	sb_append(sb, ",\"stop\":");
	sb_append_json(sb, h->wal_stop);
	sb_appendf(sb, "},\"info\":{\"size\":%llu,\"files\":%llu,\"repository\":{\"size\":%llu,\"delta\":%llu}}",
			   (unsigned long long) h->db_size, (unsigned long long) h->file_count,
			   (unsigned long long) h->repo_size, (unsigned long long) h->repo_new);
	sb_appendf(sb, ",\"checksum-page-errors\":%llu,\"error\":%s,\"expire-next\":%s}", (unsigned long long) h->checksum_errors,
			   h->checksum_errors ? "true" : "false", expires ? "true" : "false");
}

/* One stanza's report; a stanza that cannot be read is reported with its error, not fatal. */
static void
report_stanza(repo *r, bool json, bool first, strbuf *sb)
{
	stanza_info st;
	wal_range	w = {{0}, {0}};
	char	  **labels = NULL;
	int			n = 0, rc;
	const char *set = opt_has(OPT_SET) && strcmp(opt_str(OPT_SET), "latest") != 0 ? opt_str(OPT_SET) : NULL;

	expire_policy pol;
	expire_plan plan = {0};

	rc = repo_stanza_get(r, &st);
	if (rc == 0)
		rc = repo_wal_list(r, wal_range_add, &w);
	if (rc == 0)
		rc = repo_backup_list(r, &labels, &n);
	/* What the next expire removes, by the rule expire itself applies (none marked when it cannot tell). */
	expire_policy_from_options(&pol);
	if (rc == 0 && expire_plan_make(r, &pol, NULL, (int64_t) time(NULL), &plan) != 0)
		error_clear();
	if (json)
	{
		sb_append(sb, first ? "{\"name\":" : ",{\"name\":");
		sb_append_json(sb, repo_stanza(r));
		sb_appendf(sb, ",\"status\":{\"code\":%d,\"message\":", rc);
		sb_append_json(sb, rc ? error_msg() : "ok");
		sb_append(sb, "}");
		if (rc == 0)
		{
			sb_appendf(sb, ",\"db\":[{\"system-id\":%llu,\"version\":\"%u\"}]", (unsigned long long) st.system_id,
					   st.pg_version / 10000);
			sb_append(sb, ",\"archive\":[");
			if (w.min[0])
				sb_appendf(sb, "{\"min\":\"%s\",\"max\":\"%s\"}", w.min, w.max);
			sb_append(sb, "]");
		}
		sb_append(sb, ",\"backup\":[");
	}
	else
	{
		sb_appendf(sb, "stanza: %s\n    status: %s\n", repo_stanza(r), rc ? error_msg() : "ok");
		if (rc == 0)
		{
			sb_appendf(sb, "    db: PostgreSQL %u, system identifier %llu\n", st.pg_version / 10000,
					   (unsigned long long) st.system_id);
			if (w.min[0])
				sb_appendf(sb, "    wal archive min/max: %s / %s\n", w.min, w.max);
			else
				sb_append(sb, "    wal archive min/max: none\n");
			if (n == 0)
				sb_append(sb, "    no backups\n");
		}
	}
	bool		first_backup = true;

	for (int i = 0; i < n; i++)
	{
		manifest_header h = {0};

		if (set && strcmp(set, labels[i]) != 0)
			continue;
		if (repo_backup_header(r, labels[i], &h) != 0)
		{
			if (!json)
				sb_appendf(sb, "\n        backup %s: unreadable: %s\n", labels[i], error_msg());
			continue;
		}
		if (json)
			json_backup(sb, &h, first_backup, expire_plan_removes(&plan, labels[i]));
		else
			text_backup(sb, &h, expire_plan_removes(&plan, labels[i]));
		first_backup = false;
		manifest_header_free(&h);
	}
	repo_names_free(labels, n);
	expire_plan_free(&plan);
	if (json)
		sb_append(sb, "]}");
	else
	{
		char	   *status_path = xasprintf("%s/%s-backup.status", opt_str(OPT_LOCK_PATH), repo_stanza(r));
		char	   *status = NULL;
		size_t		len;

		if (fio_read_file(status_path, 4096, &status, &len) == 0)
			sb_appendf(sb, "\n    running: %s", status);
		error_clear();
		free(status);
		free(status_path);
	}
	error_clear();
}

int
cmd_info(void)
{
	bool		json = strcmp(opt_str(OPT_OUTPUT), "json") == 0;
	const char *stanza = opt_str(OPT_STANZA);
	char	  **names = NULL;
	int			n = 0, rc = 0;
	strbuf		sb = STRBUF_INIT;
	repo	   *all = NULL;

	if (stanza)
	{
		names = xmalloc(sizeof(char *));
		names[0] = xstrdup(stanza);
		n = 1;
	}
	else
	{
		if ((rc = repo_open(NULL, &all)) != 0 || (rc = repo_stanza_list(all, &names, &n)) != 0)
		{
			repo_close(all);
			return rc;
		}
		repo_close(all);
	}
	if (json)
		sb_append(&sb, "[");
	for (int i = 0; i < n; i++)
	{
		repo	   *r;

		if ((rc = repo_open(names[i], &r)) != 0)
			break;
		if (!json && i > 0)
			sb_append(&sb, "\n");
		report_stanza(r, json, i == 0, &sb);
		repo_close(r);
	}
	if (json)
		sb_append(&sb, "]\n");
	else if (n == 0)
		sb_append(&sb, "No stanzas exist in the repository.\n");
	fputs(sb_str(&sb), stdout);
	sb_free(&sb);
	repo_names_free(names, n);
	return rc;
}
