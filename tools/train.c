/*
 * train.c - mailctl list (a user's whitelist and blacklist), learn (teach
 * the classifier from messages: one on standard input, files, Maildirs,
 * mbox files) and bayes (what a classifier has learned).
 */
#include "tools/mailctl.h"
#include "rules/rules.h"
#include "store/store.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LEARN_MESSAGE_MAX (2u << 20) /* what filterd classifies: header and the body's start */

static int open_user_store(struct mailctl *m, const char *arg, struct store **st_r)
{
	char addr[STORE_ADDRESS_MAX];
	if (!user_address_normalize(arg, addr, sizeof(addr)))
		return errmsg("invalid address %s", log_str(arg));
	struct userdb *db = userdb_open(m->cfg->users_file);
	int known = userdb_exists(db, addr);
	userdb_free(&db);
	if (known <= 0)
		return errmsg("no such user: %s", addr);
	char *err = NULL;
	if (store_open(m->cfg->data_dir, addr, st_r, &err) < 0) {
		errmsg("%s", err);
		free(err);
		return EXIT_ERROR;
	}
	return 0;
}

/* ---------------------------------------------------------------- list */

static int show_cb(const struct store_list_entry *e, void *arg)
{
	(void)arg;
	printf("%s %s", store_list_name(e->kind), e->entry);
	const char *sep = " (";
	if (e->sources & STORE_FROM_MAILCTL) {
		printf("%smailctl", sep);
		sep = ", ";
	}
	if (e->sources & STORE_FROM_FOLDER)
		printf("%s%u message%s in %s", sep, e->messages, e->messages == 1 ? "" : "s",
		       e->kind == STORE_WHITE ? "Whitelist" : "Blacklist");
	printf(")\n");
	return 0;
}

int cmd_list(struct mailctl *m, int argc, char **argv)
{
	if (argc < 3)
		return usage_error("list: show USER, or add|del USER white|black ADDRESS-or-@DOMAIN");
	const char *action = argv[1];
	bool show = strcmp(action, "show") == 0;
	if (!show && strcmp(action, "add") != 0 && strcmp(action, "del") != 0)
		return usage_error("list: unknown action %s", log_str(action));
	if ((show && argc != 3) || (!show && argc != 5))
		return usage_error(show ? "list show: USER expected"
					: "list %s: USER white|black ADDRESS-or-@DOMAIN expected",
				   action);
	enum store_list_kind kind = STORE_WHITE;
	if (!show) {
		if (strcmp(argv[3], "white") == 0)
			kind = STORE_WHITE;
		else if (strcmp(argv[3], "black") == 0)
			kind = STORE_BLACK;
		else
			return usage_error("list %s: white or black, not %s", action, log_str(argv[3]));
	}
	char entry[STORE_ADDRESS_MAX];
	if (!show && !store_list_entry_normalize(argv[4], entry, sizeof(entry)))
		return errmsg("not an address or @domain: %s", log_str(argv[4]));
	if (need_config(m) < 0)
		return EXIT_ERROR;
	struct store *st = NULL;
	int rc = open_user_store(m, argv[2], &st);
	if (rc != 0)
		return rc;
	char *err = NULL;
	int r;
	if (show) {
		r = store_list_each(st, show_cb, NULL, &err);
	} else if (strcmp(action, "add") == 0) {
		r = store_list_add(st, kind, entry, &err);
		if (r == 0)
			printf("%s is on the %slist already\n", entry, store_list_name(kind));
	} else {
		r = store_list_del(st, kind, entry, &err);
		if (r == 0) {
			/* Perhaps an entry of the folder: say how to remove it. */
			enum store_list_kind k;
			char e[STORE_ADDRESS_MAX];
			int f = entry[0] != '@' ? store_list_match(st, entry, &k, e, sizeof(e), &err) : 0;
			if (f > 0 && k == kind && strcmp(e, entry) == 0) {
				store_close(&st);
				return errmsg("%s is on the %slist because of messages in the %s folder: "
					      "move them out of it to remove the entry",
					      entry, store_list_name(kind),
					      kind == STORE_WHITE ? "Whitelist" : "Blacklist");
			}
			store_close(&st);
			return errmsg("%s is not on %s's %slist", entry, argv[2], store_list_name(kind));
		}
	}
	store_close(&st);
	if (r < 0) {
		errmsg("%s", err);
		free(err);
		return EXIT_ERROR;
	}
	return 0;
}

/* --------------------------------------------------------------- learn */

struct learner {
	struct bayes_db *user, *site;
	const char *user_name;      /* NULL with --site */
	enum bayes_class cls;
	size_t seen, changed, failed;
};

/* Learn one message's bytes. */
static void learn_bytes(struct learner *l, char *data, size_t len)
{
	/* The store's form (LF line ends), so that the key is the one a
	 * delivered copy has. */
	size_t o = 0;
	for (size_t i = 0; i < len; i++) {
		if (data[i] == '\r' && i + 1 < len && data[i + 1] == '\n')
			continue;
		data[o++] = data[i];
	}
	len = o;
	char key[STORE_MSGKEY_SIZE];
	store_msgkey_of(data, len, key);
	struct msgview *mv = msgview_new(data, len < LEARN_MESSAGE_MAX ? len : LEARN_MESSAGE_MAX);
	struct bayes_tokens *t = bayes_tokenize(mv);
	msgview_free(&mv);
	char *err = NULL;
	int changed = 0;
	l->seen++;
	if (l->user != NULL) {
		int r = bayes_learn(l->user, key, l->cls, t, &err);
		if (r < 0)
			goto fail;
		changed |= r;
	}
	if (l->site != NULL) {
		char *skey = l->user_name ? xasprintf("%s/%s", l->user_name, key) : xstrdup(key);
		int r = bayes_learn(l->site, skey, l->cls, t, &err);
		free(skey);
		if (r < 0)
			goto fail;
		changed |= r;
	}
	l->changed += changed != 0;
	bayes_tokens_free(&t);
	return;
fail:
	errmsg("learning a message: %s", err);
	free(err);
	l->failed++;
	bayes_tokens_free(&t);
}

static int read_fd(int fd, struct buf *b)
{
	for (;;) {
		char *p = buf_reserve(b, 65536);
		if (p == NULL)
			return 0; /* past the cap: the start is what counts */
		ssize_t n = read(fd, p, 65536);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			return 0;
		buf_commit(b, (size_t)n);
	}
}

/* An mbox file: messages after "From " lines (mboxrd/mboxo: ">From "
 * quoting is left as it is; it changes no token that matters). */
static void learn_mbox(struct learner *l, FILE *f)
{
	struct buf msg;
	buf_init(&msg, 64u << 20);
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	bool in = false;
	while ((n = getline(&line, &cap, f)) >= 0) {
		if (n >= 5 && memcmp(line, "From ", 5) == 0) {
			if (in && msg.len)
				learn_bytes(l, msg.data, msg.len);
			buf_reset(&msg);
			in = true;
			continue;
		}
		if (in && msg.len < LEARN_MESSAGE_MAX)
			buf_append(&msg, line, (size_t)n);
	}
	if (in && msg.len)
		learn_bytes(l, msg.data, msg.len);
	free(line);
	buf_free(&msg);
}

static int learn_file(struct learner *l, const char *path)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return errmsg("%s: %s", path, strerror(errno));
	char head[5] = { 0 };
	size_t got = fread(head, 1, 5, f);
	if (got == 5 && memcmp(head, "From ", 5) == 0) {
		rewind(f);
		learn_mbox(l, f);
		fclose(f);
		return 0;
	}
	rewind(f);
	struct buf b;
	buf_init(&b, LEARN_MESSAGE_MAX);
	int r = read_fd(fileno(f), &b);
	fclose(f);
	if (r < 0) {
		buf_free(&b);
		return errmsg("%s: %s", path, strerror(errno));
	}
	learn_bytes(l, b.data ? b.data : "", b.len);
	buf_free(&b);
	return 0;
}

/* A directory: its files (a Maildir's cur/ and new/ too), not deeper. */
static int learn_dir(struct learner *l, const char *path, int depth)
{
	DIR *d = opendir(path);
	if (d == NULL)
		return errmsg("%s: %s", path, strerror(errno));
	struct dirent *e;
	int rc = 0;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		char *p = xasprintf("%s/%s", path, e->d_name);
		struct stat sb;
		if (stat(p, &sb) == 0 && S_ISREG(sb.st_mode)) {
			if (learn_file(l, p) != 0)
				rc = EXIT_ERROR;
		} else if (stat(p, &sb) == 0 && S_ISDIR(sb.st_mode) && depth == 0 &&
			   (strcmp(e->d_name, "cur") == 0 || strcmp(e->d_name, "new") == 0)) {
			if (learn_dir(l, p, 1) != 0)
				rc = EXIT_ERROR;
		}
		free(p);
	}
	closedir(d);
	return rc;
}

static int open_bayes(const char *path, int64_t max_learned, struct bayes_db **db)
{
	char *err = NULL;
	if (bayes_open(path, BAYES_CREATE, db, &err) < 0) {
		errmsg("%s", err);
		free(err);
		return -1;
	}
	bayes_set_max_learned(*db, (uint64_t)max_learned);
	return 0;
}

int cmd_learn(struct mailctl *m, int argc, char **argv)
{
	if (argc < 3)
		return usage_error("learn: spam|ham USER|--site [FILE|DIR|MBOX...] expected");
	struct learner l = { 0 };
	if (strcmp(argv[1], "spam") == 0)
		l.cls = BAYES_SPAM;
	else if (strcmp(argv[1], "ham") == 0)
		l.cls = BAYES_HAM;
	else if (strcmp(argv[1], "forget") == 0)
		l.cls = BAYES_NONE;
	else
		return usage_error("learn: spam, ham or forget, not %s", log_str(argv[1]));
	if (need_config(m) < 0)
		return EXIT_ERROR;
	struct store *st = NULL;
	bool site_only = strcmp(argv[2], "--site") == 0;
	if (!site_only) {
		int rc = open_user_store(m, argv[2], &st);
		if (rc != 0)
			return rc;
		l.user_name = store_user(st);
		char *upath = xasprintf("%s/%s", store_root(st), STORE_BAYES_FILE);
		int r = open_bayes(upath, m->cfg->bayes_max_learned, &l.user);
		free(upath);
		if (r < 0) {
			store_close(&st);
			return EXIT_ERROR;
		}
	}
	int rc = 0;
	if (site_only || m->cfg->bayes_learn_site) {
		char *spath = xasprintf("%s/%s", m->cfg->data_dir, STORE_BAYES_FILE);
		if (open_bayes(spath, m->cfg->bayes_max_learned, &l.site) < 0)
			rc = EXIT_ERROR;
		free(spath);
	}
	char *err = NULL;
	if (rc == 0 && ((l.user && bayes_batch_begin(l.user, &err) < 0) ||
			(l.site && bayes_batch_begin(l.site, &err) < 0))) {
		errmsg("%s", err);
		free(err);
		err = NULL;
		rc = EXIT_ERROR;
	}
	if (rc == 0 && argc == 3) {
		struct buf b;
		buf_init(&b, LEARN_MESSAGE_MAX);
		if (read_fd(0, &b) < 0)
			rc = errmsg("reading the message: %s", strerror(errno));
		else if (b.len >= 5 && memcmp(b.data, "From ", 5) == 0) {
			FILE *f = fmemopen(b.data, b.len, "rb");
			learn_mbox(&l, f);
			fclose(f);
		} else
			learn_bytes(&l, b.data ? b.data : "", b.len);
		buf_free(&b);
	}
	for (int i = 3; rc == 0 && i < argc; i++) {
		struct stat sb;
		if (stat(argv[i], &sb) < 0)
			rc = errmsg("%s: %s", argv[i], strerror(errno));
		else if (S_ISDIR(sb.st_mode))
			rc = learn_dir(&l, argv[i], 0);
		else
			rc = learn_file(&l, argv[i]);
	}
	if ((l.user && bayes_batch_end(l.user, &err) < 0) ||
	    (l.site && bayes_batch_end(l.site, &err) < 0)) {
		errmsg("%s", err);
		free(err);
		rc = EXIT_ERROR;
	}
	if (rc == 0 && l.failed)
		rc = EXIT_ERROR;
	printf("%zu message%s read, %zu learned as %s (%zu already were)%s\n", l.seen,
	       l.seen == 1 ? "" : "s", l.changed,
	       l.cls == BAYES_SPAM ? "spam" : l.cls == BAYES_HAM ? "ham" : "neither (forgotten)",
	       l.seen - l.changed - l.failed, l.failed ? ", some failed" : "");
	bayes_close(&l.user);
	bayes_close(&l.site);
	store_close(&st);
	return rc;
}

/* --------------------------------------------------------------- bayes */

static int show_stats(const char *what, const char *path, uint64_t min)
{
	struct bayes_db *db = NULL;
	char *err = NULL;
	int r = bayes_open(path, 0, &db, &err);
	if (r < 0) {
		errmsg("%s", err);
		free(err);
		return -1;
	}
	if (r == 0) {
		printf("%s: nothing learned yet (%s)\n", what, path);
		return 0;
	}
	struct bayes_stats s;
	if (bayes_stats(db, &s, &err) < 0) {
		errmsg("%s", err);
		free(err);
		bayes_close(&db);
		return -1;
	}
	bayes_close(&db);
	printf("%s: %llu spam, %llu ham, %llu tokens%s (%s)\n", what, (unsigned long long)s.nspam,
	       (unsigned long long)s.nham, (unsigned long long)s.ntokens,
	       s.nspam >= min && s.nham >= min ? "" : "; too few of each class to give verdicts",
	       path);
	return 0;
}

int cmd_bayes(struct mailctl *m, int argc, char **argv)
{
	if (argc > 2)
		return usage_error("bayes: [USER] expected");
	if (need_config(m) < 0)
		return EXIT_ERROR;
	uint64_t min = (uint64_t)m->cfg->bayes_min_learned;
	int rc = 0;
	if (argc == 2) {
		struct store *st = NULL;
		rc = open_user_store(m, argv[1], &st);
		if (rc != 0)
			return rc;
		char *upath = xasprintf("%s/%s", store_root(st), STORE_BAYES_FILE), *err = NULL;
		if (show_stats(store_user(st), upath, min) < 0)
			rc = EXIT_ERROR;
		uint64_t queued = 0;
		if (store_train_count(st, &queued, &err) < 0) {
			errmsg("%s", err);
			free(err);
			rc = EXIT_ERROR;
		} else if (queued) {
			printf("%s: %llu moves not learned yet (imapd applies them)\n", store_user(st),
			       (unsigned long long)queued);
		}
		free(upath);
		store_close(&st);
	}
	char *spath = xasprintf("%s/%s", m->cfg->data_dir, STORE_BAYES_FILE);
	if (show_stats("site", spath, min) < 0)
		rc = EXIT_ERROR;
	free(spath);
	return rc;
}
