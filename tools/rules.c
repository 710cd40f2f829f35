/*
 * rules.c - mailctl's rule commands:
 *
 *   mailctl rules check [PATH]   lint rules_dir (or a directory or file)
 *   mailctl score [-v] < MESSAGE the rules' verdict, as filterd gives it
 *   mailctl log ID [FILE...]     the log lines of a queue id
 */
#include "tools/mailctl.h"
#include "rules/rules.h"
#include "common/mime.h"
#include "store/store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* What filterd gives the rules (filterd/checks.c): the header section
 * and the first MiB of the body. */
#define SCORE_HEADER_MAX (1024 * 1024)
#define SCORE_BODY_MAX (1024 * 1024)

static int load(const char *path, struct ruleset **rs, struct rules_report *rep)
{
	struct stat st;
	if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
		return ruleset_load_file(path, rs, rep);
	return ruleset_load(path, rs, rep);
}

static const char *rules_path(struct mailctl *m, int argc, char **argv, int i)
{
	if (argc > i)
		return argv[i];
	if (need_config(m) < 0)
		return NULL;
	if (*m->cfg->rules_dir == '\0') {
		errmsg("rules_dir is not set in %s (give a PATH)", m->cfg->path);
		return NULL;
	}
	return m->cfg->rules_dir;
}

int cmd_rules(struct mailctl *m, int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "check") != 0 || argc > 3)
		return usage_error("rules: check [PATH] expected");
	const char *path = rules_path(m, argc, argv, 2);
	if (path == NULL)
		return EXIT_ERROR;
	struct ruleset *rs = NULL;
	struct rules_report rep = { 0 };
	int r = load(path, &rs, &rep);
	struct buf out;
	buf_init(&out, 64u << 20);
	rules_report_format(&rep, &out);
	if (out.len)
		fwrite(out.data, 1, out.len, stdout);
	if (r == 0)
		printf("%s: %zu rules, %zu warnings, no errors\n", path, ruleset_size(rs), rep.warnings);
	else
		printf("%s: %zu errors, %zu warnings\n", path, rep.errors, rep.warnings);
	buf_free(&out);
	rules_report_free(&rep);
	ruleset_free(&rs);
	return r == 0 ? 0 : EXIT_ERROR;
}

/* Standard input: the header section and the first SCORE_BODY_MAX
 * octets of the body (the rest is read and dropped). */
static int read_message(struct buf *msg)
{
	char chunk[65536];
	size_t n, body_at = 0;
	bool in_body = false;
	while ((n = fread(chunk, 1, sizeof(chunk), stdin)) > 0) {
		size_t room = msg->max - msg->len;
		if (in_body && msg->len - body_at >= SCORE_BODY_MAX)
			continue;
		buf_append(msg, chunk, n < room ? n : room);
		if (!in_body) {
			const char *e = memmem(msg->data, msg->len, "\n\n", 2);
			const char *e2 = memmem(msg->data, msg->len, "\r\n\r\n", 4);
			if (e2 && (!e || e2 < e))
				e = e2 + 2;
			if (e) {
				in_body = true;
				body_at = (size_t)(e - msg->data) + 2;
			} else if (msg->len > SCORE_HEADER_MAX) {
				in_body = true;
				body_at = msg->len;
			}
		}
		if (in_body && msg->len > body_at + SCORE_BODY_MAX)
			msg->len = body_at + SCORE_BODY_MAX;
	}
	return ferror(stdin) ? -1 : 0;
}

/* What USER's lists and classifier say of the message (score --user). */
struct user_view {
	bool bayes_done;
	double p;
	const char *which;
	int list;                    /* enum store_list_kind, 0: none */
	char entry[STORE_ADDRESS_MAX];
	char from[STORE_ADDRESS_MAX];
};

static int user_view(struct mailctl *m, const char *user, const struct buf *msg,
		     struct msgview *mv, struct user_view *uv)
{
	char addr[STORE_ADDRESS_MAX], *err = NULL;
	if (!user_address_normalize(user, addr, sizeof(addr)))
		return errmsg("invalid address %s", log_str(user));
	struct store *st = NULL;
	if (store_open(m->cfg->data_dir, addr, &st, &err) < 0) {
		errmsg("%s", err);
		free(err);
		return -1;
	}
	struct buf from;
	buf_init(&from, 1u << 20);
	if (mime_header_field(msg->data ? msg->data : "", msg->len, "From", &from) &&
	    store_from_address(from.data, uv->from, sizeof(uv->from))) {
		enum store_list_kind k;
		int r = store_list_match(st, uv->from, &k, uv->entry, sizeof(uv->entry), &err);
		if (r < 0) {
			errmsg("%s", err);
			free(err);
			err = NULL;
		}
		if (r > 0)
			uv->list = (int)k;
	}
	buf_free(&from);
	int ret = 0;
	if (m->cfg->bayes) {
		struct bayes_db *udb = NULL, *sdb = NULL;
		char *up = xasprintf("%s/%s", store_root(st), STORE_BAYES_FILE);
		char *sp = xasprintf("%s/%s", m->cfg->data_dir, STORE_BAYES_FILE);
		struct bayes_tokens *t = bayes_tokenize(mv);
		if (bayes_open(up, 0, &udb, &err) < 0 || bayes_open(sp, 0, &sdb, &err) < 0) {
			ret = errmsg("%s", err);
			free(err);
		} else {
			int r = bayes_classify(udb, sdb, (uint64_t)m->cfg->bayes_min_learned, t, &uv->p,
					       &uv->which, &err);
			if (r < 0) {
				ret = errmsg("%s", err);
				free(err);
			}
			uv->bayes_done = r > 0;
		}
		bayes_tokens_free(&t);
		bayes_close(&udb);
		bayes_close(&sdb);
		free(up);
		free(sp);
	}
	store_close(&st);
	return ret < 0 ? -1 : 0;
}

int cmd_score(struct mailctl *m, int argc, char **argv)
{
	bool verbose = false;
	const char *user = NULL;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-v") == 0)
			verbose = true;
		else if (strcmp(argv[i], "--user") == 0 && i + 1 < argc)
			user = argv[++i];
		else
			return usage_error("score: [-v] [--user USER] expected, the message on standard input");
	}
	const char *path = rules_path(m, 1, argv, argc);
	if (path == NULL)
		return EXIT_ERROR;
	struct ruleset *rs = NULL;
	struct rules_report rep = { 0 };
	if (load(path, &rs, &rep) < 0) {
		struct buf out;
		buf_init(&out, 64u << 20);
		rules_report_format(&rep, &out);
		fprintf(stderr, "%s", out.data ? out.data : "");
		buf_free(&out);
		rules_report_free(&rep);
		return errmsg("%s: the rules have errors", path);
	}
	rules_report_free(&rep);
	struct buf msg;
	buf_init(&msg, SCORE_HEADER_MAX + SCORE_BODY_MAX + 65536);
	if (read_message(&msg) < 0) {
		buf_free(&msg);
		ruleset_free(&rs);
		return errmsg("reading the message: %s", strerror(errno));
	}
	struct msgview *mv = msgview_new(msg.data ? msg.data : "", msg.len);
	struct user_view uv = { 0 };
	if (user != NULL && user_view(m, user, &msg, mv, &uv) < 0) {
		msgview_free(&mv);
		buf_free(&msg);
		ruleset_free(&rs);
		return EXIT_ERROR;
	}
	struct rules_scan *sc = ruleset_scan(rs, mv);
	struct rules_result r;
	ruleset_finish(rs, sc, uv.bayes_done ? uv.p : -1, &r);
	rules_scan_free(&sc);
	struct buf tests;
	buf_init(&tests, 1u << 20);
	for (size_t i = 0; i < r.n; i++) {
		printf("%6.1f %-28s %s", r.v[i].score, r.v[i].name, r.v[i].describe);
		if (verbose && r.v[i].count > 1)
			printf(" (%u hits)", r.v[i].count);
		putchar('\n');
		buf_printf(&tests, "%s%s", i ? "," : "", r.v[i].name);
	}
	const struct config *cfg = m->cfg;
	const char *folder = r.score >= cfg->reject_score ? "refused (550 5.7.1)"
			     : r.score >= cfg->junk_score ? "Junk"
							  : "INBOX";
	if (user != NULL) {
		if (uv.bayes_done)
			printf("classifier: spam probability %.4f (%s database)\n", uv.p, uv.which);
		else if (cfg->bayes)
			printf("classifier: no verdict (fewer than %lld messages of each class learned)\n",
			       (long long)cfg->bayes_min_learned);
		if (uv.list == STORE_BLACK) {
			printf("lists: %s is on %s's blacklist (%s)\n", uv.from, user, uv.entry);
			if (r.score < cfg->reject_score)
				folder = "Junk";
		} else if (uv.list == STORE_WHITE) {
			printf("lists: %s is on %s's whitelist (%s): INBOX when filterd finds the From "
			       "domain authenticated (DMARC, or aligned SPF/DKIM pass), which needs the "
			       "SMTP session\n", uv.from, user, uv.entry);
		}
	}
	printf("score=%.1f required=%.1f -> %s\n", r.score, cfg->junk_score, folder);
	printf("X-Spam-Status: %s, score=%.1f required=%.1f tests=%s\n",
	       r.score >= cfg->junk_score ? "Yes" : "No", r.score, cfg->junk_score,
	       tests.len ? tests.data : "none");
	if (r.limits)
		printf("(%u matches stopped at the PCRE2 limits and counted as not matched)\n", r.limits);
	buf_free(&tests);
	rules_result_free(&r);
	msgview_free(&mv);
	buf_free(&msg);
	ruleset_free(&rs);
	return 0;
}

static void grep_id(FILE *f, const char *id, size_t *found)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	size_t idlen = strlen(id);
	while ((n = getline(&line, &cap, f)) > 0) {
		/* The id as a word: "ID:" leads filterd's lines, "queued as ID"
		 * and "reference ID" name it in replies. */
		for (const char *p = line; (p = strstr(p, id)) != NULL; p += idlen) {
			char before = p == line ? ' ' : p[-1];
			char after = p[idlen];
			bool word_before = !((before >= 'A' && before <= 'Z') || (before >= '0' && before <= '9'));
			bool word_after = !((after >= 'A' && after <= 'Z') || (after >= '0' && after <= '9'));
			if (word_before && word_after) {
				fputs(line, stdout);
				(*found)++;
				break;
			}
		}
	}
	free(line);
}

int cmd_log(struct mailctl *m, int argc, char **argv)
{
	(void)m;
	if (argc < 2)
		return usage_error("log: ID [FILE...] expected");
	const char *id = argv[1];
	if (strlen(id) < 6 || strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") != strlen(id))
		return usage_error("log: %s is not a queue id", log_str(id));
	size_t found = 0;
	if (argc == 2) {
		grep_id(stdin, id, &found);
	} else {
		for (int i = 2; i < argc; i++) {
			FILE *f = fopen(argv[i], "r");
			if (f == NULL)
				return errmsg("%s: %s", argv[i], strerror(errno));
			grep_id(f, id, &found);
			fclose(f);
		}
	}
	if (found == 0)
		return errmsg("no log line names %s", id);
	return 0;
}
