/*
 * test_store.c - the store library against real directories and a real
 * SQLite index, in a fresh temporary directory per test.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/common.h"
#include "store/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <regex.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define USER "alice@example.test"
#define USER2 "bob@example.test"

struct fixture {
	char dir[64];
	char *root;  /* DIR/mail/example.test/alice */
	char *root2; /* DIR/mail/example.test/bob */
};

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	strcpy(fx->dir, "/tmp/store-test-XXXXXX");
	if (mkdtemp(fx->dir) == NULL)
		return -1;
	fx->root = xasprintf("%s/mail/example.test/alice", fx->dir);
	fx->root2 = xasprintf("%s/mail/example.test/bob", fx->dir);
	*state = fx;
	return 0;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb, (void)flag, (void)ftw;
	return remove(path);
}

static int teardown(void **state)
{
	struct fixture *fx = *state;
	nftw(fx->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(fx->root);
	free(fx->root2);
	free(fx);
	return 0;
}

/* ------------------------------------------------------------- helpers */

static struct store *open_ok(struct fixture *fx, const char *user)
{
	struct store *st = NULL;
	char *err = NULL;
	int r = store_open(fx->dir, user, &st, &err);
	if (r != 0)
		fail_msg("store_open: %s", err);
	assert_non_null(st);
	return st;
}

static bool is_dir(const char *path)
{
	struct stat sb;
	return lstat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static bool is_file(const char *path)
{
	struct stat sb;
	return lstat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

static bool existsf(const char *fmt, ...) PRINTFLIKE(1, 2);
static bool existsf(const char *fmt, ...)
{
	va_list ap;
	char *p;
	va_start(ap, fmt);
	assert_true(vasprintf(&p, fmt, ap) >= 0);
	va_end(ap);
	struct stat sb;
	bool r = lstat(p, &sb) == 0;
	free(p);
	return r;
}

/* The regular files of a directory (sorted); returns the count. */
static size_t list_dir(const char *dir, char names[][256], size_t max)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	size_t n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (n < max)
			snprintf(names[n], 256, "%s", de->d_name);
		n++;
	}
	closedir(d);
	for (size_t i = 0; i < n && i < max; i++)
		for (size_t j = i + 1; j < n && j < max; j++)
			if (strcmp(names[i], names[j]) > 0) {
				char t[256];
				memcpy(t, names[i], 256);
				memcpy(names[i], names[j], 256);
				memcpy(names[j], t, 256);
			}
	return n;
}

static size_t count_dir(const char *fmt, ...) PRINTFLIKE(1, 2);
static size_t count_dir(const char *fmt, ...)
{
	va_list ap;
	char *p;
	va_start(ap, fmt);
	assert_true(vasprintf(&p, fmt, ap) >= 0);
	va_end(ap);
	char names[1][256];
	size_t n = list_dir(p, names, 0);
	free(p);
	return n;
}

static char *read_file(const char *path)
{
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	char *buf = calloc(1, 65536);
	size_t n = fread(buf, 1, 65535, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static char *read_fd(int fd)
{
	char *buf = calloc(1, 65536);
	ssize_t n = read(fd, buf, 65535);
	assert_true(n >= 0);
	buf[n] = '\0';
	return buf;
}

static void write_file(const char *path, const char *data)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(data, f);
	assert_int_equal(fclose(f), 0);
}

static uint32_t append_ok(struct store *st, const char *folder, const char *data,
			  const struct store_meta *meta)
{
	uint32_t uid = 0;
	char *err = NULL;
	if (store_append(st, folder, data, strlen(data), meta, &uid, &err) != 0)
		fail_msg("store_append: %s", err);
	assert_true(uid > 0);
	return uid;
}

static struct store_folder_info info_ok(struct store *st, const char *folder)
{
	struct store_folder_info fi;
	char *err = NULL;
	int r = store_folder_info(st, folder, &fi, &err);
	if (r != 1)
		fail_msg("store_folder_info(%s): %d %s", folder, r, err ? err : "");
	return fi;
}

/* Collects what store_messages reports. */
#define MAX_MSGS 500
struct msgs {
	size_t n;
	struct store_msg m[MAX_MSGS];
	char *path[MAX_MSGS];
	char *verdict[MAX_MSGS];
	char *keywords[MAX_MSGS];
};

static int collect_cb(const struct store_msg *m, void *arg)
{
	struct msgs *ms = arg;
	assert_true(ms->n < MAX_MSGS);
	ms->m[ms->n] = *m;
	ms->path[ms->n] = strdup(m->path);
	ms->verdict[ms->n] = m->verdict ? strdup(m->verdict) : NULL;
	assert_non_null(m->keywords);
	ms->keywords[ms->n] = strdup(m->keywords);
	ms->m[ms->n].path = ms->path[ms->n];
	ms->m[ms->n].verdict = ms->verdict[ms->n];
	ms->m[ms->n].keywords = ms->keywords[ms->n];
	ms->n++;
	return 0;
}

static void msgs_load(struct store *st, const char *folder, struct msgs *ms)
{
	memset(ms, 0, sizeof(*ms));
	char *err = NULL;
	if (store_messages(st, folder, 0, 0, collect_cb, ms, &err) != 0)
		fail_msg("store_messages: %s", err);
}

static void msgs_free(struct msgs *ms)
{
	for (size_t i = 0; i < ms->n; i++) {
		free(ms->path[i]);
		free(ms->verdict[i]);
		free(ms->keywords[i]);
	}
	ms->n = 0;
}

/* err is read after r was computed (not as an argument beside it: the
 * order of evaluation of arguments is unspecified). */
static void assert_error(int r, char **err, const char *substr)
{
	assert_int_equal(r, -1);
	assert_non_null(*err);
	if (strstr(*err, substr) == NULL)
		fail_msg("error \"%s\" lacks \"%s\"", *err, substr);
	free(*err);
	*err = NULL;
}

/* --------------------------------------------------------------- names */

static void test_folder_names(void **state)
{
	(void)state;
	static const char *const valid[] = {
		"INBOX", "inbox", "Junk", "Work", "Work/2026", "a.b", "50% off", "a b/c d",
		"Ünïcödé/日本語", "x/y/z", "INBOX/sub", "a..b",
	};
	static const char *const invalid[] = {
		"", "/", "/a", "a/", "a//b", ".", "..", "../x", "x/..", "a/./b", "a/../b",
		".hidden", "a/.hidden", "tab\there", "nl\nx", "del\x7f", "\x01",
		"bad\xff" "utf8", "\xc0\xaf", "\xed\xa0\x80", /* overlong, surrogate */
		"c1\xc2\x85",
	};
	for (size_t i = 0; i < ARRAY_SIZE(valid); i++) {
		if (!store_folder_name_valid(valid[i]))
			fail_msg("valid name rejected: %s", valid[i]);
	}
	for (size_t i = 0; i < ARRAY_SIZE(invalid); i++) {
		if (store_folder_name_valid(invalid[i]))
			fail_msg("invalid name accepted: %zu", i);
	}
	assert_false(store_folder_name_valid(NULL));
	char longname[300];
	memset(longname, 'a', sizeof(longname));
	longname[255] = '\0';
	assert_true(store_folder_name_valid(longname));
	longname[255] = 'a';
	longname[256] = '\0';
	assert_false(store_folder_name_valid(longname));

	assert_true(store_folder_is_special("INBOX"));
	assert_true(store_folder_is_special("inbox"));
	assert_true(store_folder_is_special("Trash"));
	assert_false(store_folder_is_special("Work"));
	assert_string_equal(store_special_use("Junk"), "\\Junk");
	assert_string_equal(store_special_use("Sent"), "\\Sent");
	assert_string_equal(store_special_use("Drafts"), "\\Drafts");
	assert_string_equal(store_special_use("Trash"), "\\Trash");
	assert_null(store_special_use("INBOX"));
	assert_null(store_special_use("Whitelist"));
	assert_null(store_special_use("Blacklist"));
	size_t n = 0;
	while (store_special_folders[n] != NULL)
		n++;
	assert_int_equal(n, 7);
	assert_string_equal(store_special_folders[0], "INBOX");
}

/* ---------------------------------------------------------------- open */

struct list_acc {
	size_t n;
	char names[32][64];
	const char *uses[32];
	bool subscribed[32];
	uint32_t uidvalidity[32];
};

static int list_cb(const struct store_folder_info *fi, void *arg)
{
	struct list_acc *acc = arg;
	assert_true(acc->n < 32);
	snprintf(acc->names[acc->n], 64, "%s", fi->name);
	acc->uses[acc->n] = fi->special_use;
	acc->subscribed[acc->n] = fi->subscribed;
	acc->uidvalidity[acc->n] = fi->uidvalidity;
	acc->n++;
	return 0;
}

static void test_open_layout(void **state)
{
	struct fixture *fx = *state;
	struct store *st = open_ok(fx, USER);
	assert_string_equal(store_user(st), USER);
	assert_string_equal(store_root(st), fx->root);
	assert_true(is_dir(fx->root));

	static const char *const sub[] = { "cur", "new", "tmp" };
	for (size_t i = 0; i < 3; i++)
		assert_true(existsf("%s/%s", fx->root, sub[i]));
	static const char *const specials[] = { "Junk", "Whitelist", "Blacklist", "Sent",
						"Drafts", "Trash" };
	for (size_t f = 0; f < ARRAY_SIZE(specials); f++) {
		for (size_t i = 0; i < 3; i++)
			assert_true(existsf("%s/.%s/%s", fx->root, specials[f], sub[i]));
		assert_true(existsf("%s/.%s/maildirfolder", fx->root, specials[f]));
	}
	assert_false(existsf("%s/maildirfolder", fx->root));
	assert_true(existsf("%s/index.sqlite", fx->root));

	struct list_acc acc = { 0 };
	char *err = NULL;
	assert_int_equal(store_folder_list(st, list_cb, &acc, &err), 0);
	assert_int_equal(acc.n, 7);
	static const char *const expect[] = { "INBOX", "Blacklist", "Drafts", "Junk",
					      "Sent", "Trash", "Whitelist" };
	for (size_t i = 0; i < 7; i++) {
		assert_string_equal(acc.names[i], expect[i]);
		assert_true(acc.subscribed[i]);
		assert_true(acc.uidvalidity[i] > 0);
		for (size_t j = 0; j < i; j++) /* distinct per folder */
			assert_true(acc.uidvalidity[i] != acc.uidvalidity[j]);
	}
	assert_null(acc.uses[0]);
	assert_string_equal(acc.uses[3], "\\Junk");

	struct store_folder_info fi = info_ok(st, "inbox");
	assert_string_equal(fi.name, "INBOX");
	assert_int_equal(fi.uidnext, 1);
	assert_int_equal(fi.messages, 0);
	assert_int_equal(store_folder_info(st, "Nope", &fi, &err), 0);
	assert_int_equal(store_folder_info(st, "../x", &fi, &err), 0);
	store_close(&st);
	assert_null(st);

	/* Addresses that could escape the data directory. */
	static const char *const bad[] = { "../x@example.test", "a@../example.test",
					   "a/b@example.test", "a@exa/mple.test", "", "noat",
					   ".@example.test", "x@.." };
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		err = NULL;
		assert_int_equal(store_open(fx->dir, bad[i], &st, &err), -1);
		assert_null(st);
		assert_non_null(err);
		free(err);
	}
	/* error_r may be NULL */
	assert_int_equal(store_open(fx->dir, "../x@y.test", &st, NULL), -1);
	assert_false(existsf("%s/mail/x@y.test", fx->dir));
}

/* ------------------------------------------------------------- deliver */

static void test_deliver_uids(void **state)
{
	struct fixture *fx = *state;
	struct store *st = open_ok(fx, USER);
	uint32_t uidvalidity = info_ok(st, "INBOX").uidvalidity;
	const char *bodies[] = { "Subject: one\n\nfirst\n", "Subject: two\n\nsecond\nline\n",
				 "Subject: three\n\n3\n" };
	for (uint32_t i = 0; i < 3; i++) {
		struct store_meta meta = { .verdict = "inbox", .score = 1.5 + i };
		assert_int_equal(append_ok(st, "INBOX", bodies[i], &meta), i + 1);
	}
	/* The files: three in new/, named per the Maildir spec. */
	char names[8][256];
	char *dir = xasprintf("%s/new", fx->root);
	assert_int_equal(list_dir(dir, names, 8), 3);
	char host[256];
	gethostname(host, sizeof(host));
	char *re_src = xasprintf("^[0-9]+\\.M[0-9]+P%ldQ[0-9]+R[0-9a-f]{8}\\.%s,S=[0-9]+,W=[0-9]+$",
				 (long)getpid(), host);
	regex_t re;
	assert_int_equal(regcomp(&re, re_src, REG_EXTENDED | REG_NOSUB), 0);
	for (size_t i = 0; i < 3; i++) {
		if (regexec(&re, names[i], 0, NULL, 0) != 0)
			fail_msg("bad maildir name %s", names[i]);
	}
	regfree(&re);
	free(re_src);
	assert_int_equal(count_dir("%s/cur", fx->root), 0);
	assert_int_equal(count_dir("%s/tmp", fx->root), 0);

	struct msgs ms;
	msgs_load(st, "INBOX", &ms);
	assert_int_equal(ms.n, 3);
	uint64_t last_modseq = 0;
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(ms.m[i].uid, i + 1);
		assert_int_equal(ms.m[i].flags, 0);
		assert_int_equal(ms.m[i].size, strlen(bodies[i]));
		size_t lf = 0;
		for (const char *p = bodies[i]; *p; p++)
			lf += *p == '\n';
		assert_int_equal(ms.m[i].vsize, strlen(bodies[i]) + lf);
		assert_true(ms.m[i].modseq > last_modseq);
		last_modseq = ms.m[i].modseq;
		assert_string_equal(ms.m[i].verdict, "inbox");
		assert_true(ms.m[i].score == 1.5 + (double)i);
		assert_true(llabs(ms.m[i].internaldate - (int64_t)time(NULL)) < 60);
		assert_true(strncmp(ms.m[i].path, dir, strlen(dir)) == 0);
		char *content = read_file(ms.m[i].path);
		assert_string_equal(content, bodies[i]);
		free(content);
		char suffix[64];
		snprintf(suffix, sizeof(suffix), ",S=%zu,W=%zu", strlen(bodies[i]),
			 strlen(bodies[i]) + lf);
		assert_non_null(strstr(ms.m[i].path, suffix));
		/* store_message_open gives the same bytes */
		char *err = NULL;
		int fd = store_message_open(st, "INBOX", ms.m[i].uid, &err);
		assert_true(fd >= 0);
		content = read_fd(fd);
		close(fd);
		assert_string_equal(content, bodies[i]);
		free(content);
	}
	msgs_free(&ms);

	/* Ranges */
	memset(&ms, 0, sizeof(ms));
	assert_int_equal(store_messages(st, "INBOX", 2, 2, collect_cb, &ms, NULL), 0);
	assert_int_equal(ms.n, 1);
	assert_int_equal(ms.m[0].uid, 2);
	msgs_free(&ms);
	memset(&ms, 0, sizeof(ms));
	assert_int_equal(store_messages(st, "INBOX", 2, 0, collect_cb, &ms, NULL), 0);
	assert_int_equal(ms.n, 2);
	msgs_free(&ms);

	struct store_folder_info fi = info_ok(st, "INBOX");
	assert_int_equal(fi.uidnext, 4);
	assert_int_equal(fi.messages, 3);
	assert_int_equal(fi.highestmodseq, last_modseq);
	store_close(&st);

	/* Reopen: same UIDVALIDITY, same UIDs, nothing re-added. */
	st = open_ok(fx, USER);
	fi = info_ok(st, "INBOX");
	assert_int_equal(fi.uidvalidity, uidvalidity);
	assert_int_equal(fi.uidnext, 4);
	assert_int_equal(fi.messages, 3);
	assert_int_equal(append_ok(st, "INBOX", "Subject: four\n\n", NULL), 4);

	/* Errors */
	char *err = NULL;
	assert_error(store_append(st, "NoSuch", "x\n", 2, NULL, NULL, &err), &err,
		     "no such folder");
	err = NULL;
	assert_error(store_append(st, "../etc", "x\n", 2, NULL, NULL, &err), &err,
		     "invalid folder name");
	assert_int_equal(store_append(st, "NoSuch", "x\n", 2, NULL, NULL, NULL), -1);
	err = NULL;
	assert_error(store_message_open(st, "INBOX", 99, &err), &err, "no such message");
	/* A failed append leaves nothing behind. */
	assert_int_equal(count_dir("%s/tmp", fx->root), 0);
	assert_int_equal(count_dir("%s/new", fx->root), 4);
	store_close(&st);
	free(dir);
}

static void test_deliver_meta(void **state)
{
	struct fixture *fx = *state;
	struct store *st = open_ok(fx, USER);
	struct store_meta meta = { .internaldate = 1000000000, .flags = STORE_SEEN | STORE_DRAFT,
				   .verdict = "junk", .score = 7.25 };
	uint32_t uid = append_ok(st, "Junk", "Subject: spam\n\nbuy\n", &meta);
	assert_int_equal(uid, 1);
	char names[4][256];
	char *dir = xasprintf("%s/.Junk/cur", fx->root);
	assert_int_equal(list_dir(dir, names, 4), 1);
	size_t len = strlen(names[0]);
	assert_true(len > 5 && strcmp(names[0] + len - 5, ":2,DS") == 0);
	assert_int_equal(count_dir("%s/.Junk/new", fx->root), 0);
	char *path = xasprintf("%s/%s", dir, names[0]);
	struct stat sb;
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mtime, 1000000000); /* survives an index rebuild */
	assert_int_equal(sb.st_mode & 0777, 0600);

	struct msgs ms;
	msgs_load(st, "Junk", &ms);
	assert_int_equal(ms.n, 1);
	assert_int_equal(ms.m[0].flags, STORE_SEEN | STORE_DRAFT);
	assert_int_equal(ms.m[0].internaldate, 1000000000);
	assert_string_equal(ms.m[0].verdict, "junk");
	assert_true(ms.m[0].score == 7.25);
	assert_string_equal(ms.m[0].path, path);
	msgs_free(&ms);
	free(path);
	free(dir);
	store_close(&st);
}

static void test_deliver_two_users(void **state)
{
	struct fixture *fx = *state;
	struct store *a = open_ok(fx, USER);
	struct store *b = open_ok(fx, USER2);
	struct store_tmp *tmp = NULL;
	char *err = NULL;
	assert_int_equal(store_tmp_create(a, &tmp, &err), 0);
	assert_int_equal(count_dir("%s/tmp", fx->root), 1);
	const char *part1 = "Subject: shared\n\n";
	assert_int_equal(store_tmp_write(tmp, part1, strlen(part1), &err), 0);
	/* a big chunk (past the write buffer) and small ones */
	size_t big = 200000;
	char *body = malloc(big);
	for (size_t i = 0; i < big; i++)
		body[i] = (i % 80 == 79) ? '\n' : 'x';
	assert_int_equal(store_tmp_write(tmp, body, big, &err), 0);
	assert_int_equal(store_tmp_write(tmp, "end\n", 4, &err), 0);
	assert_int_equal(store_tmp_finish(tmp, &err), 0);
	/* no more writes after finish */
	assert_error(store_tmp_write(tmp, "x", 1, &err), &err, "finished");
	err = NULL;

	uint32_t uid_a = 0, uid_b = 0;
	assert_int_equal(store_deliver(a, "INBOX", tmp, NULL, &uid_a, &err), 0);
	struct store_meta mb = { .verdict = "junk", .score = 9 };
	assert_int_equal(store_deliver(b, "Junk", tmp, &mb, &uid_b, &err), 0);
	assert_int_equal(uid_a, 1);
	assert_int_equal(uid_b, 1);

	struct msgs ma, mbs;
	msgs_load(a, "INBOX", &ma);
	msgs_load(b, "Junk", &mbs);
	assert_int_equal(ma.n, 1);
	assert_int_equal(mbs.n, 1);
	struct stat sa, sb;
	assert_int_equal(stat(ma.m[0].path, &sa), 0);
	assert_int_equal(stat(mbs.m[0].path, &sb), 0);
	assert_int_equal(sa.st_ino, sb.st_ino); /* one copy, hard links */
	assert_int_equal(sa.st_dev, sb.st_dev);
	assert_int_equal(sa.st_nlink, 3);      /* + the tmp file */
	assert_true(strncmp(mbs.m[0].path, fx->root2, strlen(fx->root2)) == 0);
	size_t total = strlen(part1) + big + 4;
	assert_int_equal(ma.m[0].size, total);
	assert_int_equal(sa.st_size, total);
	assert_null(ma.m[0].verdict);
	assert_string_equal(mbs.m[0].verdict, "junk");

	store_tmp_free(&tmp);
	assert_null(tmp);
	assert_int_equal(count_dir("%s/tmp", fx->root), 0);
	assert_int_equal(stat(ma.m[0].path, &sa), 0);
	assert_int_equal(sa.st_nlink, 2);

	/* an abandoned tmp file goes away with store_tmp_free */
	assert_int_equal(store_tmp_create(b, &tmp, &err), 0);
	assert_int_equal(store_tmp_write(tmp, "x\n", 2, &err), 0);
	assert_int_equal(count_dir("%s/tmp", fx->root2), 1);
	/* not finished: cannot be delivered */
	assert_error(store_deliver(b, "INBOX", tmp, NULL, NULL, &err), &err, "not finished");
	store_tmp_free(&tmp);
	assert_int_equal(count_dir("%s/tmp", fx->root2), 0);
	assert_int_equal(count_dir("%s/new", fx->root2), 0);

	msgs_free(&ma);
	msgs_free(&mbs);
	free(body);
	store_close(&a);
	store_close(&b);
}

/* The race store_deliver documents: the file is linked, and before the
 * delivery's INSERT another store's recovery scan indexes it.  The
 * delivery keeps that UID and records its verdict; a retry of the same
 * delivery is idempotent. */
static void test_deliver_race_and_retry(void **state)
{
	struct fixture *fx = *state;
	struct store *st = open_ok(fx, USER);
	struct store_tmp *tmp;
	char *err = NULL;
	const char *body = "Subject: race\n\nbody\n";
	assert_int_equal(store_tmp_create(st, &tmp, &err), 0);
	assert_int_equal(store_tmp_write(tmp, body, strlen(body), &err), 0);
	assert_int_equal(store_tmp_finish(tmp, &err), 0);

	/* Link it by hand under the name the delivery will use. */
	char names[2][256];
	char *tmpdir = xasprintf("%s/tmp", fx->root);
	assert_int_equal(list_dir(tmpdir, names, 2), 1);
	char *src = xasprintf("%s/%s", tmpdir, names[0]);
	char *dst = xasprintf("%s/new/%s,S=%zu,W=%zu", fx->root, names[0], strlen(body),
			      strlen(body) + 3);
	assert_int_equal(link(src, dst), 0);
	append_ok(st, "INBOX", "Subject: later\n\n", NULL); /* takes UID 1 */
	struct store *other = open_ok(fx, USER);          /* recovery: UID 2 */
	struct msgs ms;
	msgs_load(other, "INBOX", &ms);
	assert_int_equal(ms.n, 2);
	assert_string_equal(ms.m[1].path, dst);
	assert_null(ms.m[1].verdict);
	msgs_free(&ms);

	struct store_meta meta = { .verdict = "inbox", .score = 2.5 };
	uint32_t uid = 0;
	assert_int_equal(store_deliver(st, "INBOX", tmp, &meta, &uid, &err), 0);
	assert_int_equal(uid, 2);
	msgs_load(other, "INBOX", &ms);
	assert_int_equal(ms.n, 2);
	assert_string_equal(ms.m[1].verdict, "inbox");
	assert_true(ms.m[1].score == 2.5);
	msgs_free(&ms);

	/* A retry (say after an index error) gives the same UID, no copy. */
	uid = 0;
	assert_int_equal(store_deliver(other, "INBOX", tmp, &meta, &uid, &err), 0);
	assert_int_equal(uid, 2);
	assert_int_equal(count_dir("%s/new", fx->root), 2);
	assert_int_equal(info_ok(st, "INBOX").messages, 2);

	/* A different file already under that name is an error. */
	char *dst2 = xasprintf("%s/.Junk/new/%s,S=%zu,W=%zu", fx->root, names[0], strlen(body),
			       strlen(body) + 3);
	write_file(dst2, "impostor\n");
	assert_error(store_deliver(st, "Junk", tmp, NULL, &uid, &err), &err, "exists");
	store_tmp_free(&tmp);
	free(tmpdir);
	free(src);
	free(dst);
	free(dst2);
	store_close(&other);
	store_close(&st);
}

/* Recipients on another file system: the link fails with EXDEV and the
 * delivery falls back to a copy (made in the target's tmp/, fsynced). */
static void test_deliver_cross_fs(void **state)
{
	struct fixture *fx = *state;
	struct stat a, b;
	if (stat(fx->dir, &a) < 0 || stat("/dev/shm", &b) < 0 || a.st_dev == b.st_dev ||
	    access("/dev/shm", W_OK) < 0) {
		skip(); /* needs two file systems */
	}
	char other_dir[] = "/dev/shm/store-test-XXXXXX";
	assert_non_null(mkdtemp(other_dir));
	struct store *st = open_ok(fx, USER);
	struct store *far = NULL;
	char *err = NULL;
	assert_int_equal(store_open(other_dir, USER2, &far, &err), 0);
	struct store_tmp *tmp;
	assert_int_equal(store_tmp_create(st, &tmp, &err), 0);
	assert_int_equal(store_tmp_write(tmp, "Subject: far\n\naway\n", 19, &err), 0);
	assert_int_equal(store_tmp_finish(tmp, &err), 0);
	uint32_t uid = 0;
	if (store_deliver(far, "INBOX", tmp, NULL, &uid, &err) != 0)
		fail_msg("cross-fs deliver: %s", err);
	assert_int_equal(uid, 1);
	struct msgs ms;
	msgs_load(far, "INBOX", &ms);
	assert_int_equal(ms.n, 1);
	struct stat sf;
	assert_int_equal(stat(ms.m[0].path, &sf), 0);
	assert_int_equal(sf.st_nlink, 1); /* a copy, not a link */
	char *content = read_file(ms.m[0].path);
	assert_string_equal(content, "Subject: far\n\naway\n");
	free(content);
	msgs_free(&ms);
	assert_int_equal(count_dir("%s/tmp", store_root(far)), 0); /* the copy's tmp is gone */
	store_tmp_free(&tmp);
	store_close(&far);
	store_close(&st);
	nftw(other_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* The index is only a cache of the files: delete it and it is rebuilt. */
static void test_rebuild_index(void **state)
{
	struct fixture *fx = *state;
	struct store *st = open_ok(fx, USER);
	char *err = NULL;
	append_ok(st, "INBOX", "Subject: 1\n\n", NULL);
	append_ok(st, "INBOX", "Subject: 2\n\n", NULL);
	assert_int_equal(store_set_flags(st, "INBOX", 2, STORE_SEEN | STORE_ANSWERED, NULL, &err),
			 0);
	assert_int_equal(store_folder_create(st, "Work/Deep", &err), 0);
	append_ok(st, "Work/Deep", "Subject: 3\n\n", NULL);
	uint32_t uv = info_ok(st, "INBOX").uidvalidity;
	store_close(&st);
	static const char *const files[] = { "index.sqlite", "index.sqlite-wal",
					     "index.sqlite-shm" };
	for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
		char *p = xasprintf("%s/%s", fx->root, files[i]);
		unlink(p);
		free(p);
	}
	sleep(1); /* a new UIDVALIDITY is the time, and must differ */
	st = open_ok(fx, USER);
	struct store_folder_info fi = info_ok(st, "INBOX");
	assert_int_equal(fi.messages, 2);
	assert_true(fi.uidvalidity != uv); /* UIDs were reassigned */
	struct msgs ms;
	msgs_load(st, "INBOX", &ms);
	unsigned flags = ms.m[0].flags | ms.m[1].flags;
	assert_int_equal(flags, STORE_SEEN | STORE_ANSWERED);
	msgs_free(&ms);
	assert_int_equal(info_ok(st, "Work/Deep").messages, 1);
	assert_int_equal(info_ok(st, "Work").messages, 0);
	assert_true(info_ok(st, "Junk").subscribed);
	assert_false(info_ok(st, "Work").subscribed);
	store_close(&st);
}

/* --------------------------------------------------------------- flags */

static void test_set_flags(void **state)
{
	struct fixture *fx = *state;
	struct store *st = open_ok(fx, USER);
	append_ok(st, "INBOX", "Subject: a\n\n", NULL);
	uint32_t uid = append_ok(st, "INBOX", "Subject: b\n\nbody\n", NULL);
	struct msgs ms;
	msgs_load(st, "INBOX", &ms);
	uint64_t old_modseq = ms.m[1].modseq;
	char *old_path = xstrdup(ms.m[1].path);
	msgs_free(&ms);
	uint64_t hms = info_ok(st, "INBOX").highestmodseq;

	uint64_t modseq = 0;
	char *err = NULL;
	assert_int_equal(store_set_flags(st, "INBOX", uid, STORE_SEEN | STORE_FLAGGED, &modseq,
					 &err), 0);
	assert_true(modseq > old_modseq);
	assert_true(modseq > hms);
	assert_int_equal(info_ok(st, "INBOX").highestmodseq, modseq);
	assert_false(is_file(old_path));
	char names[4][256];
	char *cur = xasprintf("%s/cur", fx->root);
	assert_int_equal(list_dir(cur, names, 4), 1);
	char *base = strrchr(old_path, '/') + 1;
	char *expect = xasprintf("%s:2,FS", base);
	assert_string_equal(names[0], expect);
	free(expect);
	assert_int_equal(count_dir("%s/new", fx->root), 1);

	msgs_load(st, "INBOX", &ms);
	assert_int_equal(ms.m[1].flags, STORE_SEEN | STORE_FLAGGED);
	assert_int_equal(ms.m[1].modseq, modseq);
	assert_int_equal(ms.m[0].flags, 0);
	assert_true(ms.m[0].modseq < modseq); /* the other message is untouched */
	char *content = read_file(ms.m[1].path);
	assert_string_equal(content, "Subject: b\n\nbody\n");
	free(content);
	msgs_free(&ms);

	/* All letters, sorted; then back to none. */
	assert_int_equal(store_set_flags(st, "INBOX", uid, STORE_FLAGS_ALL, NULL, &err), 0);
	list_dir(cur, names, 4);
	assert_non_null(strstr(names[0], ":2,DFRST"));
	uint64_t m2 = 0;
	assert_int_equal(store_set_flags(st, "INBOX", uid, 0, &m2, &err), 0);
	list_dir(cur, names, 4);
	size_t len = strlen(names[0]);
	assert_string_equal(names[0] + len - 3, ":2,");
	assert_true(m2 > modseq);
	/* the same flags again: nothing changes */
	uint64_t m3 = 0;
	assert_int_equal(store_set_flags(st, "INBOX", uid, 0, &m3, &err), 0);
	assert_int_equal(m3, m2);

	/* Unknown letters of another tool (Dovecot keywords) are kept. */
	char *from = xasprintf("%s/%s", cur, names[0]);
	char *to = xasprintf("%s/%s:2,Sab", cur, base);
	assert_int_equal(rename(from, to), 0);
	store_close(&st);
	st = open_ok(fx, USER); /* recovery picks up the new name */
	msgs_load(st, "INBOX", &ms);
	assert_int_equal(ms.m[1].flags, STORE_SEEN);
	assert_true(ms.m[1].modseq > m2);
	msgs_free(&ms);
	assert_int_equal(store_set_flags(st, "INBOX", uid, STORE_SEEN | STORE_ANSWERED, NULL,
					 &err), 0);
	list_dir(cur, names, 4);
	expect = xasprintf("%s:2,RSab", base);
	assert_string_equal(names[0], expect);
	free(expect);

	/* Renamed by another tool while open: set_flags still finds it. */
	free(from);
	free(to);
	from = xasprintf("%s/%s", cur, names[0]);
	to = xasprintf("%s/%s:2,FSab", cur, base);
	assert_int_equal(rename(from, to), 0);
	int fd = store_message_open(st, "INBOX", uid, &err);
	if (fd < 0)
		fail_msg("store_message_open: %s", err);
	content = read_fd(fd);
	close(fd);
	assert_string_equal(content, "Subject: b\n\nbody\n");
	free(content);
	assert_int_equal(store_set_flags(st, "INBOX", uid, STORE_DRAFT, NULL, &err), 0);
	list_dir(cur, names, 4);
	expect = xasprintf("%s:2,Dab", base);
	assert_string_equal(names[0], expect);
	free(expect);

	/* Gone for good: an error, not a crash. */
	free(from);
	from = xasprintf("%s/%s", cur, names[0]);
	assert_int_equal(unlink(from), 0);
	err = NULL;
	assert_error(store_message_open(st, "INBOX", uid, &err), &err, "vanished");
	err = NULL;
	assert_error(store_set_flags(st, "INBOX", uid, STORE_SEEN, NULL, &err), &err, "vanished");
	err = NULL;
	assert_error(store_set_flags(st, "INBOX", 77, STORE_SEEN, NULL, &err), &err,
		     "no such message");

	free(from);
	free(to);
	free(cur);
	free(old_path);
	store_close(&st);
}

/* ---------------------------------------------------- copy, move, expunge */

static void test_copy_move_expunge(void **state)
{
	struct fixture *fx = *state;
	struct store *st = open_ok(fx, USER);
	struct store_meta meta = { .internaldate = 1234567890, .verdict = "inbox", .score = -1 };
	uint32_t uid = append_ok(st, "INBOX", "Subject: c\n\ncopy me\n", &meta);
	char *err = NULL;
	assert_int_equal(store_set_flags(st, "INBOX", uid, STORE_SEEN, NULL, &err), 0);
	struct msgs src;
	msgs_load(st, "INBOX", &src);

	/* copy: a hard link with a new unique name, new UID, same facts */
	uint32_t cuid = 0;
	append_ok(st, "Junk", "Subject: other\n\n", NULL); /* Junk UID 1 taken */
	uint64_t junk_hms = info_ok(st, "Junk").highestmodseq;
	assert_int_equal(store_copy(st, "INBOX", uid, "Junk", &cuid, &err), 0);
	assert_int_equal(cuid, 2);
	struct msgs junk;
	msgs_load(st, "Junk", &junk);
	assert_int_equal(junk.n, 2);
	assert_int_equal(junk.m[1].uid, 2);
	assert_int_equal(junk.m[1].flags, STORE_SEEN);
	assert_int_equal(junk.m[1].internaldate, 1234567890);
	assert_string_equal(junk.m[1].verdict, "inbox");
	assert_true(junk.m[1].score == -1);
	assert_int_equal(junk.m[1].size, src.m[0].size);
	assert_int_equal(junk.m[1].vsize, src.m[0].vsize);
	assert_true(junk.m[1].modseq > junk_hms);
	struct stat s1, s2;
	assert_int_equal(stat(src.m[0].path, &s1), 0);
	assert_int_equal(stat(junk.m[1].path, &s2), 0);
	assert_int_equal(s1.st_ino, s2.st_ino);
	assert_non_null(strstr(junk.m[1].path, "/.Junk/cur/"));
	assert_string_not_equal(strrchr(junk.m[1].path, '/'), strrchr(src.m[0].path, '/'));
	assert_int_equal(info_ok(st, "INBOX").messages, 1); /* source kept */

	/* copy into the same folder: a second message */
	uint32_t duid = 0;
	assert_int_equal(store_copy(st, "Junk", 2, "Junk", &duid, &err), 0);
	assert_int_equal(duid, 3);
	assert_int_equal(info_ok(st, "Junk").messages, 3);

	/* move: copy, then the source is gone */
	uint32_t muid = 0;
	uint64_t inbox_hms = info_ok(st, "INBOX").highestmodseq;
	assert_int_equal(store_move(st, "INBOX", uid, "Trash", &muid, &err), 0);
	assert_int_equal(muid, 1);
	assert_false(is_file(src.m[0].path));
	assert_int_equal(info_ok(st, "INBOX").messages, 0);
	assert_true(info_ok(st, "INBOX").highestmodseq > inbox_hms);
	struct msgs trash;
	msgs_load(st, "Trash", &trash);
	assert_int_equal(trash.n, 1);
	assert_int_equal(trash.m[0].flags, STORE_SEEN);
	assert_string_equal(trash.m[0].verdict, "inbox");
	char *content = read_file(trash.m[0].path);
	assert_string_equal(content, "Subject: c\n\ncopy me\n");
	free(content);
	err = NULL;
	assert_error(store_move(st, "INBOX", uid, "Trash", NULL, &err), &err, "no such message");
	err = NULL;
	assert_error(store_copy(st, "Trash", 1, "Nowhere", NULL, &err), &err, "no such folder");
	assert_int_equal(count_dir("%s/.Trash/cur", fx->root), 1);

	/* expunge */
	uint64_t trash_hms = info_ok(st, "Trash").highestmodseq;
	assert_int_equal(store_expunge(st, "Trash", 1, &err), 0);
	assert_false(is_file(trash.m[0].path));
	assert_int_equal(count_dir("%s/.Trash/cur", fx->root), 0);
	assert_int_equal(info_ok(st, "Trash").messages, 0);
	assert_true(info_ok(st, "Trash").highestmodseq > trash_hms);
	assert_int_equal(info_ok(st, "Trash").uidnext, 2); /* UIDs are not reused */
	err = NULL;
	assert_error(store_expunge(st, "Trash", 1, &err), &err, "no such message");
	/* the Junk copies still read fine */
	int fd = store_message_open(st, "Junk", 2, &err);
	assert_true(fd >= 0);
	content = read_fd(fd);
	assert_string_equal(content, "Subject: c\n\ncopy me\n");
	free(content);
	close(fd);

	msgs_free(&src);
	msgs_free(&junk);
	msgs_free(&trash);
	store_close(&st);
}

/* ------------------------------------------------------------- folders */

static void test_folders(void **state)
{
	struct fixture *fx = *state;
	struct store *st = open_ok(fx, USER);
	char *err = NULL;

	assert_int_equal(store_folder_create(st, "Work/2026", &err), 0);
	assert_true(existsf("%s/.Work/cur", fx->root));
	assert_true(existsf("%s/.Work/maildirfolder", fx->root));
	assert_true(existsf("%s/.Work.2026/new", fx->root));
	assert_true(existsf("%s/.Work.2026/tmp", fx->root));
	assert_true(existsf("%s/.Work.2026/maildirfolder", fx->root));
	assert_int_equal(store_folder_create(st, "v1.2/50%", &err), 0);
	assert_true(existsf("%s/.v1%%2E2.50%%25/cur", fx->root));
	assert_int_equal(store_folder_create(st, "INBOX/Sub", &err), 0);
	assert_true(existsf("%s/.INBOX.Sub/cur", fx->root));
	assert_int_equal(store_folder_create(st, "inbox/Sub2", &err), 0);
	assert_true(existsf("%s/.INBOX.Sub2/cur", fx->root));

	uint32_t uv_work = info_ok(st, "Work/2026").uidvalidity;
	assert_true(uv_work > info_ok(st, "Trash").uidvalidity);
	assert_int_equal(append_ok(st, "Work/2026", "Subject: w\n\n", NULL), 1);

	/* errors */
	static const char *const bad[] = { "../x", ".hidden", "a//b", "a/./b", "a/../b", "/a",
					   "a/", "ctl\x01", "nl\nx", "" };
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		err = NULL;
		assert_error(store_folder_create(st, bad[i], &err), &err, "invalid folder name");
	}
	assert_false(existsf("%s/..x", fx->root));
	assert_false(existsf("%s/.hidden", fx->root));
	err = NULL;
	assert_error(store_folder_create(st, "Work/2026", &err), &err, "exists");
	err = NULL;
	assert_error(store_folder_create(st, "Junk", &err), &err, "exists");
	err = NULL;
	assert_error(store_folder_create(st, "inbox", &err), &err, "exists");
	char longname[200];
	memset(longname, 0, sizeof(longname));
	memset(longname, '.', 100);
	longname[0] = 'x';
	err = NULL; /* 255 bytes on disk at most: dots take three each */
	assert_error(store_folder_create(st, longname, &err), &err, "too long");

	for (size_t i = 0; store_special_folders[i] != NULL; i++) {
		err = NULL;
		assert_error(store_folder_delete(st, store_special_folders[i], &err), &err,
			     "special");
		err = NULL;
		assert_error(store_folder_rename(st, store_special_folders[i], "Other", &err),
			     &err, "special");
	}
	err = NULL;
	assert_error(store_folder_delete(st, "inbox", &err), &err, "special");
	err = NULL;
	assert_error(store_folder_rename(st, "Work", "Junk", &err), &err, "exists");
	err = NULL;
	assert_error(store_folder_rename(st, "Work", "INBOX", &err), &err, "exists");
	err = NULL;
	assert_error(store_folder_rename(st, "Work", "Work/x", &err), &err, "into itself");
	err = NULL;
	assert_error(store_folder_rename(st, "Nope", "Nope2", &err), &err, "no such folder");
	err = NULL;
	assert_error(store_folder_rename(st, "Work", "../x", &err), &err, "invalid");
	err = NULL;
	assert_error(store_folder_delete(st, "Nope", &err), &err, "no such folder");
	err = NULL;
	assert_error(store_folder_delete(st, "Work", &err), &err, "children");
	assert_true(existsf("%s/.Work/cur", fx->root));

	/* rename moves the folder and its children, keeps UIDVALIDITY/UIDs */
	assert_int_equal(store_folder_rename(st, "Work", "Old/Projects", &err), 0);
	assert_false(existsf("%s/.Work", fx->root));
	assert_false(existsf("%s/.Work.2026", fx->root));
	assert_true(existsf("%s/.Old/cur", fx->root));
	assert_true(existsf("%s/.Old.Projects/cur", fx->root));
	assert_true(existsf("%s/.Old.Projects.2026/cur", fx->root));
	struct store_folder_info fi;
	assert_int_equal(store_folder_info(st, "Work/2026", &fi, &err), 0);
	fi = info_ok(st, "Old/Projects/2026");
	assert_int_equal(fi.uidvalidity, uv_work);
	assert_int_equal(fi.messages, 1);
	int fd = store_message_open(st, "Old/Projects/2026", 1, &err);
	assert_true(fd >= 0);
	close(fd);

	/* subscribe */
	assert_false(info_ok(st, "Old/Projects").subscribed);
	assert_int_equal(store_folder_subscribe(st, "Old/Projects", true, &err), 0);
	assert_true(info_ok(st, "Old/Projects").subscribed);
	assert_int_equal(store_folder_subscribe(st, "Old/Projects", false, &err), 0);
	assert_false(info_ok(st, "Old/Projects").subscribed);
	err = NULL;
	assert_error(store_folder_subscribe(st, "Nope", true, &err), &err, "no such folder");

	/* list: INBOX first, then by name */
	struct list_acc acc = { 0 };
	assert_int_equal(store_folder_list(st, list_cb, &acc, &err), 0);
	static const char *const expect[] = {
		"INBOX", "Blacklist", "Drafts", "INBOX/Sub", "INBOX/Sub2", "Junk", "Old",
		"Old/Projects", "Old/Projects/2026", "Sent", "Trash", "Whitelist", "v1.2",
		"v1.2/50%",
	};
	assert_int_equal(acc.n, ARRAY_SIZE(expect));
	for (size_t i = 0; i < ARRAY_SIZE(expect); i++)
		assert_string_equal(acc.names[i], expect[i]);

	/* delete: leaf first, then the parent; the directory goes */
	assert_int_equal(store_folder_delete(st, "Old/Projects/2026", &err), 0);
	assert_false(existsf("%s/.Old.Projects.2026", fx->root));
	assert_int_equal(store_folder_info(st, "Old/Projects/2026", &fi, &err), 0);
	assert_int_equal(store_folder_delete(st, "Old/Projects", &err), 0);
	assert_int_equal(store_folder_delete(st, "Old", &err), 0);
	assert_false(existsf("%s/.Old", fx->root));
	/* nothing half-deleted is left beside the folders */
	DIR *d = opendir(fx->root);
	struct dirent *de;
	while ((de = readdir(d)) != NULL)
		assert_null(strstr(de->d_name, "deleted"));
	closedir(d);

	/* create again: a new UIDVALIDITY, UIDs from 1 */
	assert_int_equal(store_folder_create(st, "Old/Projects/2026", &err), 0);
	fi = info_ok(st, "Old/Projects/2026");
	assert_true(fi.uidvalidity > uv_work);
	assert_int_equal(fi.uidnext, 1);
	store_close(&st);

	/* everything survives a reopen */
	st = open_ok(fx, USER);
	memset(&acc, 0, sizeof(acc));
	assert_int_equal(store_folder_list(st, list_cb, &acc, &err), 0);
	assert_int_equal(acc.n, ARRAY_SIZE(expect));
	store_close(&st);
}

/* ------------------------------------------------------------ recovery */

static void test_recover_new_files(void **state)
{
	struct fixture *fx = *state;
	struct store *st = open_ok(fx, USER);
	assert_int_equal(append_ok(st, "INBOX", "Subject: indexed\n\n", NULL), 1);
	store_close(&st);

	/* As if we crashed between the link and the index insert, and files
	 * another Maildir tool delivered (one without ,W=, one in cur/). */
	char *p1 = xasprintf("%s/new/1700000000.M1P1Q1R00000001.otherhost,S=18,W=22", fx->root);
	write_file(p1, "Subject: lost\n\nx\n\n");
	char *p2 = xasprintf("%s/cur/1700000001.12345_1.otherhost:2,SR", fx->root);
	write_file(p2, "Subject: read\n\nline\nline\n");
	char *p3 = xasprintf("%s/.Junk/new/1700000002.X.otherhost", fx->root);
	write_file(p3, "junk\n");
	/* not message files: ignored */
	char *p4 = xasprintf("%s/new/.hidden", fx->root);
	write_file(p4, "no\n");
	char *p5 = xasprintf("%s/cur/odd:1,S", fx->root);
	write_file(p5, "no\n");
	/* order by mtime: p2 older than p1 */
	struct timespec t1[2] = { { .tv_nsec = UTIME_OMIT }, { .tv_sec = 1700000100 } };
	struct timespec t2[2] = { { .tv_nsec = UTIME_OMIT }, { .tv_sec = 1700000050 } };
	assert_int_equal(utimensat(AT_FDCWD, p1, t1, 0), 0);
	assert_int_equal(utimensat(AT_FDCWD, p2, t2, 0), 0);

	st = open_ok(fx, USER);
	struct msgs ms;
	msgs_load(st, "INBOX", &ms);
	assert_int_equal(ms.n, 3);
	assert_int_equal(ms.m[0].uid, 1);
	assert_int_equal(ms.m[1].uid, 2);
	/* ":2,SR" is put in the spec's (sorted) order, the file renamed */
	char *p2sorted = xasprintf("%s/cur/1700000001.12345_1.otherhost:2,RS", fx->root);
	assert_string_equal(ms.m[1].path, p2sorted);
	assert_true(is_file(p2sorted));
	assert_false(is_file(p2));
	free(p2sorted);
	assert_int_equal(ms.m[1].flags, STORE_SEEN | STORE_ANSWERED);
	assert_int_equal(ms.m[1].size, 25);
	assert_int_equal(ms.m[1].vsize, 25 + 4); /* counted from the file */
	assert_int_equal(ms.m[1].internaldate, 1700000050);
	assert_null(ms.m[1].verdict);
	assert_int_equal(ms.m[2].uid, 3);
	assert_string_equal(ms.m[2].path, p1);
	assert_int_equal(ms.m[2].flags, 0);
	assert_int_equal(ms.m[2].size, 18);
	assert_int_equal(ms.m[2].vsize, 22);
	assert_int_equal(ms.m[2].internaldate, 1700000100);
	msgs_free(&ms);
	msgs_load(st, "Junk", &ms);
	assert_int_equal(ms.n, 1);
	assert_int_equal(ms.m[0].vsize, 6);
	msgs_free(&ms);
	assert_true(is_file(p4));
	assert_true(is_file(p5));
	assert_int_equal(info_ok(st, "INBOX").uidnext, 4);
	/* the next delivery continues after them */
	assert_int_equal(append_ok(st, "INBOX", "Subject: next\n\n", NULL), 4);
	store_close(&st);

	/* a second open adds nothing */
	st = open_ok(fx, USER);
	assert_int_equal(info_ok(st, "INBOX").messages, 4);
	assert_int_equal(info_ok(st, "INBOX").uidnext, 5);
	store_close(&st);

	free(p1);
	free(p2);
	free(p3);
	free(p4);
	free(p5);
}

static void test_recover_missing_files(void **state)
{
	struct fixture *fx = *state;
	struct store *st = open_ok(fx, USER);
	append_ok(st, "INBOX", "Subject: 1\n\n", NULL);
	append_ok(st, "INBOX", "Subject: 2\n\n", NULL);
	append_ok(st, "INBOX", "Subject: 3\n\n", NULL);
	char *err = NULL;
	assert_int_equal(store_set_flags(st, "INBOX", 3, STORE_SEEN, NULL, &err), 0);
	struct msgs ms;
	msgs_load(st, "INBOX", &ms);
	uint64_t hms = info_ok(st, "INBOX").highestmodseq;
	uint32_t uv = info_ok(st, "INBOX").uidvalidity;
	store_close(&st);

	/* removed by hand (another tool expunged it) */
	assert_int_equal(unlink(ms.m[1].path), 0);
	/* and one moved new/ -> cur/ with a flag, by another tool */
	char *base = strrchr(ms.m[0].path, '/') + 1;
	char *moved = xasprintf("%s/cur/%s:2,F", fx->root, base);
	assert_int_equal(rename(ms.m[0].path, moved), 0);

	st = open_ok(fx, USER);
	struct msgs after;
	msgs_load(st, "INBOX", &after);
	assert_int_equal(after.n, 2);
	assert_int_equal(after.m[0].uid, 1);
	assert_string_equal(after.m[0].path, moved);
	assert_int_equal(after.m[0].flags, STORE_FLAGGED);
	assert_int_equal(after.m[1].uid, 3);
	assert_int_equal(after.m[1].flags, STORE_SEEN);
	struct store_folder_info fi = info_ok(st, "INBOX");
	assert_true(fi.highestmodseq > hms);
	assert_int_equal(fi.uidvalidity, uv);
	assert_int_equal(fi.uidnext, 4);
	err = NULL;
	assert_error(store_message_open(st, "INBOX", 2, &err), &err, "no such message");
	msgs_free(&after);
	msgs_free(&ms);
	free(moved);
	store_close(&st);
}

static void test_recover_tmp(void **state)
{
	struct fixture *fx = *state;
	char host[256];
	gethostname(host, sizeof(host));

	/* a pid that is certainly dead: a child we reaped */
	pid_t child = fork();
	assert_true(child >= 0);
	if (child == 0)
		_exit(0);
	assert_int_equal(waitpid(child, NULL, 0), child);
	struct store *st = open_ok(fx, USER);

	char *dead = xasprintf("%s/tmp/1700000000.M1P%ldQ1R0badcafe.%s", fx->root, (long)child,
			       host);
	char *live = xasprintf("%s/tmp/1700000000.M2P%ldQ2R0badcafe.%s", fx->root,
			       (long)getpid(), host);
	char *other_host = xasprintf("%s/tmp/1700000000.M3P%ldQ3R0badcafe.elsewhere", fx->root,
				     (long)child);
	char *old = xasprintf("%s/.Junk/tmp/whatever-old", fx->root);
	char *dotfile = xasprintf("%s/tmp/.keep", fx->root);
	write_file(dead, "half a mess");
	write_file(live, "being written");
	write_file(other_host, "not ours to judge");
	write_file(old, "abandoned");
	write_file(dotfile, "");
	struct timespec t[2] = { { .tv_nsec = UTIME_OMIT },
				 { .tv_sec = time(NULL) - 37 * 3600 } };
	assert_int_equal(utimensat(AT_FDCWD, old, t, 0), 0);
	/* a live writer's file dated in the past (APPEND with an old
	 * date-time sets the mtime before linking) is not abandoned */
	assert_int_equal(utimensat(AT_FDCWD, live, t, 0), 0);
	/* an open store's own tmp file must survive another store's open */
	struct store_tmp *tmp;
	char *err = NULL;
	assert_int_equal(store_tmp_create(st, &tmp, &err), 0);
	assert_int_equal(count_dir("%s/tmp", fx->root), 4);

	struct store *st2 = open_ok(fx, USER);
	assert_false(is_file(dead));
	assert_true(is_file(live));
	assert_true(is_file(other_host));
	assert_false(is_file(old));
	assert_true(is_file(dotfile));
	assert_int_equal(count_dir("%s/tmp", fx->root), 3); /* live, other_host, tmp */
	/* tmp files are never taken for messages */
	assert_int_equal(info_ok(st2, "INBOX").messages, 0);

	assert_int_equal(store_tmp_write(tmp, "ok\n", 3, &err), 0);
	assert_int_equal(store_tmp_finish(tmp, &err), 0);
	uint32_t uid = 0;
	assert_int_equal(store_deliver(st2, "INBOX", tmp, NULL, &uid, &err), 0);
	assert_int_equal(uid, 1);
	store_tmp_free(&tmp);
	store_close(&st2);
	store_close(&st);
	free(dead);
	free(live);
	free(other_host);
	free(old);
	free(dotfile);
}

static void test_recover_folders(void **state)
{
	struct fixture *fx = *state;
	struct store *st = open_ok(fx, USER);
	char *err = NULL;
	assert_int_equal(store_folder_create(st, "Gone", &err), 0);
	append_ok(st, "Gone", "Subject: g\n\n", NULL);
	store_close(&st);

	/* Folders made by another Maildir tool, one removed by hand, and
	 * directories that are not (canonical) folders. */
	char *p = xasprintf("%s/.Lists.debian", fx->root);
	assert_int_equal(mkdir(p, 0700), 0);
	free(p);
	p = xasprintf("%s/.Lists.debian/cur", fx->root);
	assert_int_equal(mkdir(p, 0700), 0);
	free(p);
	p = xasprintf("%s/.Lists.debian/cur/1700000000.A.host:2,S", fx->root);
	write_file(p, "hello\n");
	free(p);
	p = xasprintf("%s/.NotAMaildir", fx->root);
	assert_int_equal(mkdir(p, 0700), 0);
	free(p);
	p = xasprintf("%s/.bad%%zz", fx->root);
	assert_int_equal(mkdir(p, 0700), 0);
	free(p);
	p = xasprintf("%s/.%%41", fx->root); /* "A", not canonical */
	assert_int_equal(mkdir(p, 0700), 0);
	free(p);
	p = xasprintf("%s/.%%41/cur", fx->root);
	assert_int_equal(mkdir(p, 0700), 0);
	free(p);
	p = xasprintf("rm -rf '%s/.Gone'", fx->root);
	assert_int_equal(system(p), 0);
	free(p);
	/* a special folder removed by hand comes back */
	p = xasprintf("rm -rf '%s/.Trash'", fx->root);
	assert_int_equal(system(p), 0);
	free(p);
	/* a half-finished folder delete */
	p = xasprintf("%s/..deleted.123", fx->root);
	assert_int_equal(mkdir(p, 0700), 0);
	free(p);
	p = xasprintf("%s/..deleted.123/cur", fx->root);
	assert_int_equal(mkdir(p, 0700), 0);
	free(p);

	st = open_ok(fx, USER);
	struct store_folder_info fi = info_ok(st, "Lists/debian");
	assert_int_equal(fi.messages, 1);
	assert_false(fi.subscribed);
	assert_true(existsf("%s/.Lists.debian/new", fx->root)); /* completed */
	assert_true(existsf("%s/.Lists.debian/tmp", fx->root));
	assert_int_equal(store_folder_info(st, "Gone", &fi, &err), 0);
	assert_int_equal(store_folder_info(st, "NotAMaildir", &fi, &err), 0);
	assert_int_equal(store_folder_info(st, "A", &fi, &err), 0);
	fi = info_ok(st, "Trash");
	assert_true(fi.subscribed);
	assert_true(existsf("%s/.Trash/cur", fx->root));
	assert_false(existsf("%s/..deleted.123", fx->root));
	struct msgs ms;
	msgs_load(st, "Lists/debian", &ms);
	assert_int_equal(ms.n, 1);
	assert_int_equal(ms.m[0].flags, STORE_SEEN);
	msgs_free(&ms);
	store_close(&st);
}

/* --------------------------------------------------------- concurrency */

#define PER_THREAD 200

struct worker {
	const char *dir;
	int id;
	uint32_t uids[PER_THREAD];
	int failures;
	char err[256];
};

/* STORE_OPEN_RECOVER_ONCE: the first open in a process scans, later ones
 * do not; a plain store_open always does. */
static void test_recover_once(void **state)
{
	struct fixture *fx = *state;
	struct store *st = NULL;
	char *err = NULL;
	assert_int_equal(store_open_flags(fx->dir, USER, STORE_OPEN_RECOVER_ONCE, &st, &err), 0);
	assert_int_equal(append_ok(st, "INBOX", "Subject: a\n\n", NULL), 1);
	store_close(&st);

	char *p1 = xasprintf("%s/new/1700000000.M1P1Q1R00000001.otherhost,S=5,W=6", fx->root);
	write_file(p1, "x\n\nx\n");
	assert_int_equal(store_open_flags(fx->dir, USER, STORE_OPEN_RECOVER_ONCE, &st, &err), 0);
	struct msgs ms;
	msgs_load(st, "INBOX", &ms);
	assert_int_equal(ms.n, 1); /* not rescanned */
	msgs_free(&ms);
	store_close(&st);

	st = open_ok(fx, USER);
	msgs_load(st, "INBOX", &ms);
	assert_int_equal(ms.n, 2);
	assert_int_equal(ms.m[1].uid, 2);
	msgs_free(&ms);
	store_close(&st);
	free(p1);
}

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	struct store *st = NULL;
	char *err = NULL;
	if (store_open(w->dir, USER, &st, &err) < 0) {
		snprintf(w->err, sizeof(w->err), "open: %s", err);
		free(err);
		w->failures = PER_THREAD;
		return NULL;
	}
	for (int i = 0; i < PER_THREAD; i++) {
		char body[128];
		int n = snprintf(body, sizeof(body), "Subject: t%d m%d\n\nbody\n", w->id, i);
		struct store_tmp *tmp = NULL;
		if (store_tmp_create(st, &tmp, &err) < 0 ||
		    store_tmp_write(tmp, body, (size_t)n, &err) < 0 ||
		    store_tmp_finish(tmp, &err) < 0 ||
		    store_deliver(st, "INBOX", tmp, NULL, &w->uids[i], &err) < 0) {
			if (w->failures++ == 0)
				snprintf(w->err, sizeof(w->err), "%s", err);
			free(err);
			err = NULL;
		}
		store_tmp_free(&tmp);
	}
	store_close(&st);
	return NULL;
}

static int uid_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static void test_concurrent_delivery(void **state)
{
	struct fixture *fx = *state;
	/* both threads also create the brand-new store at the same time */
	struct worker w[2] = { { .dir = fx->dir, .id = 0 }, { .dir = fx->dir, .id = 1 } };
	pthread_t th[2];
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&th[i], NULL, worker_run, &w[i]), 0);
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
	for (int i = 0; i < 2; i++) {
		if (w[i].failures)
			fail_msg("worker %d: %d failures, first: %s", i, w[i].failures, w[i].err);
	}
	uint32_t all[2 * PER_THREAD];
	memcpy(all, w[0].uids, sizeof(w[0].uids));
	memcpy(all + PER_THREAD, w[1].uids, sizeof(w[1].uids));
	qsort(all, 2 * PER_THREAD, sizeof(all[0]), uid_cmp);
	for (size_t i = 0; i < 2 * PER_THREAD; i++) {
		assert_true(all[i] > 0);
		if (i > 0)
			assert_true(all[i] > all[i - 1]); /* distinct */
	}
	/* each thread saw its own UIDs increase */
	for (int t = 0; t < 2; t++)
		for (int i = 1; i < PER_THREAD; i++)
			assert_true(w[t].uids[i] > w[t].uids[i - 1]);

	assert_int_equal(count_dir("%s/new", fx->root), 2 * PER_THREAD);
	assert_int_equal(count_dir("%s/tmp", fx->root), 0);
	struct store *st = open_ok(fx, USER);
	struct msgs *ms = malloc(sizeof(*ms));
	msgs_load(st, "INBOX", ms);
	assert_int_equal(ms->n, 2 * PER_THREAD);
	for (size_t i = 0; i < ms->n; i++) {
		assert_int_equal(ms->m[i].uid, all[i]);
		assert_true(is_file(ms->m[i].path));
	}
	msgs_free(ms);
	free(ms);
	assert_int_equal(info_ok(st, "INBOX").messages, 2 * PER_THREAD);
	store_close(&st);
}

/* ------------------------------------------------------------ keywords */

/* The one file in DIR (asserts there is exactly one), malloc'd path. */
static char *only_file(const char *dir)
{
	char names[2][256];
	assert_int_equal(list_dir(dir, names, 2), 1);
	return xasprintf("%s/%s", dir, names[0]);
}

static int set_kw(struct store *st, const char *folder, uint32_t uid, unsigned flags,
		  const char *kw, uint64_t unchangedsince, uint64_t *modseq_r)
{
	char *err = NULL;
	int r = store_set_flags_kw(st, folder, uid, flags, kw, unchangedsince, modseq_r, &err);
	if (r < 0)
		fail_msg("store_set_flags_kw: %s", err);
	return r;
}

static void test_keywords(void **state)
{
	struct fixture *fx = *state;
	struct store *st = open_ok(fx, USER);
	uint32_t u1 = append_ok(st, "INBOX", "Subject: k1\n\n", NULL);
	uint32_t u2 = append_ok(st, "INBOX", "Subject: k2\n\n", NULL);
	char *cur = xasprintf("%s/cur", fx->root);
	char *kwfile = xasprintf("%s/dovecot-keywords", fx->root);
	assert_false(is_file(kwfile));

	/* Set: index sorted case-insensitively, letters a, b in the name. */
	uint64_t m1 = 0;
	assert_int_equal(set_kw(st, "INBOX", u1, STORE_SEEN, "Work  $Forwarded", 0, &m1), 1);
	struct msgs ms;
	msgs_load(st, "INBOX", &ms);
	assert_string_equal(ms.keywords[0], "$Forwarded Work");
	assert_string_equal(ms.keywords[1], "");
	assert_int_equal(ms.m[0].modseq, m1);
	assert_non_null(strstr(ms.path[0], "/cur/"));
	size_t len = strlen(ms.path[0]);
	assert_string_equal(ms.path[0] + len - 6, ":2,Sab");
	assert_true(is_file(ms.path[0]));
	msgs_free(&ms);
	char *text = read_file(kwfile);
	assert_string_equal(text, "0 $Forwarded\n1 Work\n");
	free(text);

	/* The same set in another case: done, nothing changes. */
	uint64_t hms = info_ok(st, "INBOX").highestmodseq;
	uint64_t m2 = 0;
	assert_int_equal(set_kw(st, "INBOX", u1, STORE_SEEN, "work $FORWARDED", 0, &m2), 1);
	assert_int_equal(m2, m1);
	assert_int_equal(info_ok(st, "INBOX").highestmodseq, hms);
	msgs_load(st, "INBOX", &ms);
	assert_string_equal(ms.keywords[0], "$Forwarded Work");
	msgs_free(&ms);

	/* Another message: the known keyword in any case takes the folder's
	 * spelling and letter; a new one the next letter. */
	assert_int_equal(set_kw(st, "INBOX", u2, 0, "WORK later", 0, NULL), 1);
	msgs_load(st, "INBOX", &ms);
	assert_string_equal(ms.keywords[1], "later Work");
	len = strlen(ms.path[1]);
	assert_string_equal(ms.path[1] + len - 5, ":2,bc");
	msgs_free(&ms);
	text = read_file(kwfile);
	assert_string_equal(text, "0 $Forwarded\n1 Work\n2 later\n");
	free(text);

	/* store_set_flags (and keywords NULL) keep the keywords. */
	assert_int_equal(store_set_flags(st, "INBOX", u2, STORE_FLAGGED, NULL, NULL), 0);
	msgs_load(st, "INBOX", &ms);
	assert_string_equal(ms.keywords[1], "later Work");
	assert_int_equal(ms.m[1].flags, STORE_FLAGGED);
	len = strlen(ms.path[1]);
	assert_string_equal(ms.path[1] + len - 6, ":2,Fbc");
	msgs_free(&ms);

	struct strlist kws = { 0 };
	char *err = NULL;
	assert_int_equal(store_folder_keywords(st, "INBOX", &kws, &err), 0);
	assert_int_equal(kws.n, 3);
	assert_string_equal(kws.v[0], "$Forwarded");
	assert_string_equal(kws.v[1], "later");
	assert_string_equal(kws.v[2], "Work");
	strlist_free(&kws);

	/* Invalid keywords: refused, nothing changed. */
	const char *bad[] = { "\\Seen", "a(b", "x*", "quo\"te", "br]", "caf\xc3\xa9", "tab\tkw" };
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		err = NULL;
		assert_error(store_set_flags_kw(st, "INBOX", u1, 0, bad[i], 0, NULL, &err), &err,
			     "invalid keyword");
	}
	char longkw[STORE_KEYWORD_MAX + 2];
	memset(longkw, 'k', sizeof(longkw) - 1);
	longkw[sizeof(longkw) - 1] = '\0';
	err = NULL;
	assert_error(store_set_flags_kw(st, "INBOX", u1, 0, longkw, 0, NULL, &err), &err,
		     "invalid keyword");
	longkw[STORE_KEYWORD_MAX] = '\0';
	assert_true(store_keyword_valid(longkw));
	assert_false(store_keyword_valid(""));
	assert_true(store_keyword_valid("$Junk"));
	err = NULL;
	assert_error(store_set_flags_kw(st, "INBOX", 99, 0, "x", 0, NULL, &err), &err,
		     "no such message");
	msgs_load(st, "INBOX", &ms);
	assert_string_equal(ms.keywords[0], "$Forwarded Work");
	assert_int_equal(ms.m[0].flags, STORE_SEEN);
	msgs_free(&ms);

	/* Another tool renames a file: adds 'a' ($Forwarded) and drops 'c'
	 * (later) on u2; recovery reads the letters back. */
	msgs_load(st, "INBOX", &ms);
	char *base = xstrndup(strrchr(ms.path[1], '/') + 1,
			      (size_t)(strstr(ms.path[1], ":2,") - strrchr(ms.path[1], '/') - 1));
	char *to = xasprintf("%s/%s:2,Fab", cur, base);
	assert_int_equal(rename(ms.path[1], to), 0);
	uint64_t old_m = ms.m[1].modseq;
	msgs_free(&ms);
	store_close(&st);
	st = open_ok(fx, USER);
	msgs_load(st, "INBOX", &ms);
	assert_string_equal(ms.keywords[1], "$Forwarded Work");
	assert_int_equal(ms.m[1].flags, STORE_FLAGGED);
	assert_true(ms.m[1].modseq > old_m);
	assert_string_equal(ms.path[1], to);
	msgs_free(&ms);

	/* Keywords "" removes them all (and the letters). */
	assert_int_equal(set_kw(st, "INBOX", u2, STORE_FLAGGED, "", 0, NULL), 1);
	msgs_load(st, "INBOX", &ms);
	assert_string_equal(ms.keywords[1], "");
	len = strlen(ms.path[1]);
	assert_string_equal(ms.path[1] + len - 4, ":2,F");
	msgs_free(&ms);

	/* More than 26 keywords: the rest live in the index only. */
	struct buf b;
	buf_init(&b, 100000);
	for (int i = 0; i < 30; i++)
		assert_int_equal(buf_printf(&b, "%sk%02d", i ? " " : "", i), 0);
	assert_int_equal(set_kw(st, "INBOX", u2, 0, b.data, 0, NULL), 1);
	msgs_load(st, "INBOX", &ms);
	assert_string_equal(ms.keywords[1], b.data);
	const char *info = strstr(ms.path[1], ":2,") + 3;
	/* a b c name other keywords: k00..k22 get d..z, k23..k29 none */
	assert_string_equal(info, "defghijklmnopqrstuvwxyz");
	text = read_file(kwfile);
	assert_non_null(strstr(text, "\n3 k00\n"));
	assert_non_null(strstr(text, "\n25 k22\n"));
	assert_null(strstr(text, "k23"));
	free(text);
	msgs_free(&ms);
	store_close(&st);
	st = open_ok(fx, USER); /* recovery keeps the index-only ones */
	msgs_load(st, "INBOX", &ms);
	assert_string_equal(ms.keywords[1], b.data);
	msgs_free(&ms);
	buf_free(&b);

	/* A folder with a dovecot-keywords written by Dovecot and files with
	 * letters: one named, one unnamed (kept as it is, never given out). */
	char *jkw = xasprintf("%s/.Junk/dovecot-keywords", fx->root);
	write_file(jkw, "0 Important\n3 Later\nbogus line\n40 TooFar\n");
	char *j1 = xasprintf("%s/.Junk/cur/1700000000.A.otherhost:2,Sd", fx->root);
	char *j2 = xasprintf("%s/.Junk/cur/1700000001.B.otherhost:2,b", fx->root);
	write_file(j1, "Subject: j1\n\n");
	write_file(j2, "Subject: j2\n\n");
	store_close(&st);
	st = open_ok(fx, USER);
	msgs_load(st, "Junk", &ms);
	assert_int_equal(ms.n, 2);
	assert_string_equal(ms.keywords[0], "Later");
	assert_int_equal(ms.m[0].flags, STORE_SEEN);
	assert_string_equal(ms.keywords[1], "");
	uint32_t ju1 = ms.m[0].uid;
	msgs_free(&ms);
	/* "New" gets 'c': 'b' is free but a file carries it unnamed. */
	assert_int_equal(set_kw(st, "Junk", ju1, STORE_SEEN, "later important new", 0, NULL), 1);
	msgs_load(st, "Junk", &ms);
	assert_string_equal(ms.keywords[0], "Important Later new");
	len = strlen(ms.path[0]);
	assert_string_equal(ms.path[0] + len - 7, ":2,Sacd");
	assert_string_equal(strrchr(ms.path[1], ':'), ":2,b");
	msgs_free(&ms);
	text = read_file(jkw);
	assert_string_equal(text, "0 Important\n2 new\n3 Later\n");
	free(text);

	free(jkw);
	free(j1);
	free(j2);
	free(base);
	free(to);
	free(cur);
	free(kwfile);
	store_close(&st);
}

static void test_unchangedsince(void **state)
{
	struct fixture *fx = *state;
	struct store *st = open_ok(fx, USER);
	uint32_t uid = append_ok(st, "INBOX", "Subject: u\n\n", NULL);
	uint64_t m0 = 0;
	assert_int_equal(set_kw(st, "INBOX", uid, STORE_SEEN, "a1", 0, &m0), 1);
	char *cur = xasprintf("%s/cur", fx->root);
	char *path0 = only_file(cur);

	/* Not changed since m0: done, bumped. */
	uint64_t m1 = 0;
	assert_int_equal(set_kw(st, "INBOX", uid, STORE_SEEN | STORE_FLAGGED, NULL, m0, &m1), 1);
	assert_true(m1 > m0);
	char *path1 = only_file(cur);
	assert_string_not_equal(path0, path1);

	/* Changed since m0: refused, nothing changes, current MODSEQ. */
	uint64_t hms = info_ok(st, "INBOX").highestmodseq;
	uint64_t m2 = 0;
	assert_int_equal(set_kw(st, "INBOX", uid, 0, "other", m0, &m2), 0);
	assert_int_equal(m2, m1);
	assert_int_equal(info_ok(st, "INBOX").highestmodseq, hms);
	char *path2 = only_file(cur);
	assert_string_equal(path1, path2);
	struct msgs ms;
	msgs_load(st, "INBOX", &ms);
	assert_int_equal(ms.m[0].flags, STORE_SEEN | STORE_FLAGGED);
	assert_string_equal(ms.keywords[0], "a1");
	assert_int_equal(ms.m[0].modseq, m1);
	msgs_free(&ms);

	/* Equal to it is fine; the same flags and keywords bump nothing. */
	uint64_t m3 = 0;
	assert_int_equal(set_kw(st, "INBOX", uid, STORE_SEEN | STORE_FLAGGED, "A1", m1, &m3), 1);
	assert_int_equal(m3, m1);
	assert_int_equal(info_ok(st, "INBOX").highestmodseq, hms);
	/* A keyword change alone bumps. */
	assert_int_equal(set_kw(st, "INBOX", uid, STORE_SEEN | STORE_FLAGGED, "a1 b2", m1, &m3), 1);
	assert_true(m3 > m1);
	assert_int_equal(info_ok(st, "INBOX").highestmodseq, m3);

	free(path0);
	free(path1);
	free(path2);
	free(cur);
	store_close(&st);
}

/* ---------------------------------------------------------- copy + cache */

static void cache_expect(struct store *st, const char *folder, uint32_t uid, const char *env,
			 const char *body, const char *bs)
{
	char *e = NULL, *b = NULL, *s = NULL, *err = NULL;
	int r = store_msg_cache_get(st, folder, uid, &e, &b, &s, &err);
	if (r < 0)
		fail_msg("store_msg_cache_get: %s", err);
	if (env == NULL && body == NULL && bs == NULL) {
		assert_int_equal(r, 0);
	} else {
		assert_int_equal(r, 1);
		if (env)
			assert_string_equal(e, env);
		else
			assert_null(e);
		if (body)
			assert_string_equal(b, body);
		else
			assert_null(b);
		if (bs)
			assert_string_equal(s, bs);
		else
			assert_null(s);
	}
	free(e);
	free(b);
	free(s);
}

static void test_cache_copy_move(void **state)
{
	struct fixture *fx = *state;
	struct store *st = open_ok(fx, USER);
	uint32_t uid = append_ok(st, "INBOX", "Subject: c\n\n", NULL);
	char *err = NULL;
	cache_expect(st, "INBOX", uid, NULL, NULL, NULL);
	uint64_t hms = info_ok(st, "INBOX").highestmodseq;
	assert_int_equal(store_msg_cache_set(st, "INBOX", uid, "(ENV)", NULL, NULL, &err), 0);
	cache_expect(st, "INBOX", uid, "(ENV)", NULL, NULL);
	/* NULL keeps what is there; a string replaces it */
	assert_int_equal(store_msg_cache_set(st, "INBOX", uid, NULL, "(BODY)", "(BS)", &err), 0);
	cache_expect(st, "INBOX", uid, "(ENV)", "(BODY)", "(BS)");
	assert_int_equal(store_msg_cache_set(st, "INBOX", uid, "(ENV2)", NULL, NULL, &err), 0);
	cache_expect(st, "INBOX", uid, "(ENV2)", "(BODY)", "(BS)");
	assert_int_equal(info_ok(st, "INBOX").highestmodseq, hms); /* not a change */
	/* only some outputs */
	char *e = NULL;
	assert_int_equal(store_msg_cache_get(st, "INBOX", uid, &e, NULL, NULL, &err), 1);
	assert_string_equal(e, "(ENV2)");
	free(e);
	err = NULL;
	assert_error(store_msg_cache_set(st, "INBOX", 42, "(X)", NULL, NULL, &err), &err,
		     "no such message");
	err = NULL;
	assert_error(store_msg_cache_get(st, "Nope", 1, NULL, NULL, NULL, &err), &err,
		     "no such folder");

	/* keywords and cache go along with COPY (other folder: its letters) */
	assert_int_equal(set_kw(st, "INBOX", uid, STORE_SEEN, "Zeta Alpha", 0, NULL), 1);
	uint32_t junk_uid = append_ok(st, "Junk", "Subject: j\n\n", NULL);
	assert_int_equal(set_kw(st, "Junk", junk_uid, 0, "Zeta", 0, NULL), 1); /* Junk: a=Zeta */
	uint32_t cuid = 0;
	assert_int_equal(store_copy(st, "INBOX", uid, "Junk", &cuid, &err), 0);
	cache_expect(st, "Junk", cuid, "(ENV2)", "(BODY)", "(BS)");
	cache_expect(st, "INBOX", uid, "(ENV2)", "(BODY)", "(BS)");
	struct msgs ms;
	msgs_load(st, "Junk", &ms);
	assert_int_equal(ms.m[1].uid, cuid);
	assert_string_equal(ms.keywords[1], "Alpha Zeta");
	assert_int_equal(ms.m[1].flags, STORE_SEEN);
	/* INBOX has a=Alpha b=Zeta; Junk has a=Zeta and now b=Alpha */
	size_t len = strlen(ms.path[1]);
	assert_string_equal(ms.path[1] + len - 6, ":2,Sab");
	msgs_free(&ms);
	char *jkw = xasprintf("%s/.Junk/dovecot-keywords", fx->root);
	char *text = read_file(jkw);
	assert_string_equal(text, "0 Zeta\n1 Alpha\n");
	free(text);
	free(jkw);

	/* MOVE keeps them too; the source is gone with its cache */
	uint32_t muid = 0;
	assert_int_equal(store_move(st, "Junk", cuid, "Trash", &muid, &err), 0);
	cache_expect(st, "Trash", muid, "(ENV2)", "(BODY)", "(BS)");
	cache_expect(st, "Junk", cuid, NULL, NULL, NULL);
	msgs_load(st, "Trash", &ms);
	assert_string_equal(ms.keywords[0], "Alpha Zeta");
	msgs_free(&ms);
	/* within one folder */
	uint32_t suid = 0;
	assert_int_equal(store_copy(st, "Trash", muid, "Trash", &suid, &err), 0);
	cache_expect(st, "Trash", suid, "(ENV2)", "(BODY)", "(BS)");
	msgs_load(st, "Trash", &ms);
	assert_string_equal(ms.keywords[1], "Alpha Zeta");
	assert_string_equal(strrchr(ms.path[0], ':'), strrchr(ms.path[1], ':'));
	msgs_free(&ms);
	/* expunge drops the cache row */
	assert_int_equal(store_expunge(st, "Trash", muid, &err), 0);
	cache_expect(st, "Trash", muid, NULL, NULL, NULL);
	store_close(&st);
}

/* A cache write never waits long: another store holds the write lock. */
static void test_cache_busy(void **state)
{
	struct fixture *fx = *state;
	struct store *st = open_ok(fx, USER);
	struct store *other = open_ok(fx, USER);
	uint32_t uid = append_ok(st, "INBOX", "Subject: b\n\n", NULL);
	char *err = NULL;
	assert_int_equal(store_batch_begin(other, &err), 0);
	int64_t t0 = clock_mono_ms();
	int r = store_msg_cache_set(st, "INBOX", uid, "(E)", "(B)", "(S)", &err);
	int64_t took = clock_mono_ms() - t0;
	assert_error(r, &err, "locked");
	assert_true(took < 2000);
	/* reads go on */
	cache_expect(st, "INBOX", uid, NULL, NULL, NULL);
	/* inside the batch the writer caches fine */
	assert_int_equal(store_msg_cache_set(other, "INBOX", uid, "(E)", NULL, NULL, &err), 0);
	assert_int_equal(store_batch_end(other, &err), 0);
	cache_expect(st, "INBOX", uid, "(E)", NULL, NULL);
	store_close(&other);
	store_close(&st);
}

/* ------------------------------------------------------------- batches */

static void test_batch(void **state)
{
	struct fixture *fx = *state;
	struct store *st = open_ok(fx, USER);
	uint32_t u[5];
	for (int i = 0; i < 5; i++)
		u[i] = append_ok(st, "INBOX", "Subject: batch\n\n", NULL);
	char *err = NULL;
	assert_false(store_in_batch(st));
	assert_int_equal(store_batch_begin(st, &err), 0);
	assert_true(store_in_batch(st));
	err = NULL;
	assert_error(store_batch_begin(st, &err), &err, "already");
	err = NULL;
	assert_error(store_folder_create(st, "InBatch", &err), &err, "batch");

	assert_int_equal(set_kw(st, "INBOX", u[0], STORE_SEEN, "done", 0, NULL), 1);
	err = NULL;
	assert_error(store_set_flags_kw(st, "INBOX", 999, STORE_SEEN, NULL, 0, NULL, &err), &err,
		     "no such message");
	err = NULL;
	assert_error(store_set_flags_kw(st, "INBOX", u[1], STORE_SEEN, "bad(", 0, NULL, &err),
		     &err, "invalid keyword");
	assert_int_equal(set_kw(st, "INBOX", u[1], STORE_FLAGGED, NULL, 0, NULL), 1);
	uint32_t cuid = 0;
	assert_int_equal(store_copy(st, "INBOX", u[2], "Junk", &cuid, &err), 0);
	err = NULL;
	assert_error(store_copy(st, "INBOX", 999, "Junk", NULL, &err), &err, "no such message");
	assert_int_equal(store_expunge(st, "INBOX", u[3], &err), 0);
	err = NULL;
	assert_error(store_expunge(st, "INBOX", u[3], &err), &err, "no such message");
	uint32_t first = 0;
	assert_int_equal(store_claim_recent(st, "INBOX", &first, &err), 0);
	assert_int_equal(first, 1);
	/* reads inside the batch see its changes */
	assert_int_equal(info_ok(st, "INBOX").messages, 4);
	assert_int_equal(store_batch_end(st, &err), 0);
	assert_false(store_in_batch(st));
	err = NULL;
	assert_error(store_batch_end(st, &err), &err, "no batch");

	struct msgs ms;
	msgs_load(st, "INBOX", &ms);
	assert_int_equal(ms.n, 4);
	assert_int_equal(ms.m[0].flags, STORE_SEEN);
	assert_string_equal(ms.keywords[0], "done");
	assert_int_equal(ms.m[1].flags, STORE_FLAGGED);
	assert_string_equal(ms.keywords[1], "");
	assert_int_equal(ms.m[2].uid, u[2]);
	assert_int_equal(ms.m[3].uid, u[4]);
	for (size_t i = 0; i < ms.n; i++)
		assert_true(is_file(ms.path[i]));
	msgs_free(&ms);
	assert_int_equal(info_ok(st, "Junk").messages, 1);
	assert_int_equal(info_ok(st, "INBOX").recent, 0);
	/* folder operations work again */
	assert_int_equal(store_folder_create(st, "AfterBatch", &err), 0);

	/* A batch that does not commit (closed inside it): the renames are
	 * put back and the copies removed, the index as before. */
	msgs_load(st, "INBOX", &ms);
	char *p0 = xstrdup(ms.path[0]);
	msgs_free(&ms);
	assert_int_equal(store_batch_begin(st, &err), 0);
	assert_int_equal(set_kw(st, "INBOX", u[0], STORE_SEEN | STORE_DELETED, "x", 0, NULL), 1);
	assert_int_equal(set_kw(st, "INBOX", u[0], STORE_DRAFT, "y", 0, NULL), 1);
	assert_false(is_file(p0));
	assert_int_equal(store_copy(st, "INBOX", u[0], "Sent", NULL, &err), 0);
	assert_int_equal(count_dir("%s/.Sent/cur", fx->root), 1);
	store_close(&st);
	assert_true(is_file(p0));
	assert_int_equal(count_dir("%s/.Sent/cur", fx->root), 0);
	assert_int_equal(count_dir("%s/.Sent/new", fx->root), 0);
	st = open_ok(fx, USER);
	msgs_load(st, "INBOX", &ms);
	assert_string_equal(ms.path[0], p0);
	assert_int_equal(ms.m[0].flags, STORE_SEEN);
	assert_string_equal(ms.keywords[0], "done");
	msgs_free(&ms);
	assert_int_equal(info_ok(st, "Sent").messages, 0);
	free(p0);
	store_close(&st);
}

/* ---------------------------------------------------------------- sync */

static void uids_expect(struct store *st, const char *folder, const uint32_t *want, size_t n)
{
	uint32_t *uids = NULL;
	size_t got = 99;
	char *err = NULL;
	if (store_uids(st, folder, &uids, &got, &err) != 0)
		fail_msg("store_uids: %s", err);
	assert_int_equal(got, n);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(uids[i], want[i]);
	free(uids);
}

static void changes_load(struct store *st, const char *folder, uint64_t since, struct msgs *ms)
{
	memset(ms, 0, sizeof(*ms));
	char *err = NULL;
	if (store_changes(st, folder, since, collect_cb, ms, &err) != 0)
		fail_msg("store_changes: %s", err);
}

static int stop_cb(const struct store_msg *m, void *arg)
{
	(void)m;
	return ++*(int *)arg == 2 ? 7 : 0;
}

static void test_sync(void **state)
{
	struct fixture *fx = *state;
	struct store *st = open_ok(fx, USER);
	char *err = NULL;
	uids_expect(st, "INBOX", NULL, 0);
	struct msgs ms;
	changes_load(st, "INBOX", 0, &ms);
	assert_int_equal(ms.n, 0);
	err = NULL;
	uint32_t *uids;
	size_t n;
	assert_error(store_uids(st, "Nope", &uids, &n, &err), &err, "no such folder");

	uint64_t h0 = info_ok(st, "INBOX").highestmodseq;
	for (int i = 0; i < 5; i++)
		append_ok(st, "INBOX", "Subject: s\n\n", NULL);
	uint64_t h1 = info_ok(st, "INBOX").highestmodseq;
	assert_true(h1 >= h0 + 5);
	uids_expect(st, "INBOX", (uint32_t[]){ 1, 2, 3, 4, 5 }, 5);
	changes_load(st, "INBOX", h0, &ms);
	assert_int_equal(ms.n, 5);
	msgs_free(&ms);
	changes_load(st, "INBOX", h1, &ms);
	assert_int_equal(ms.n, 0);

	/* flag and keyword changes: those messages only, in UID order */
	assert_int_equal(set_kw(st, "INBOX", 4, STORE_SEEN, NULL, 0, NULL), 1);
	assert_int_equal(set_kw(st, "INBOX", 2, 0, "kw", 0, NULL), 1);
	uint64_t h2 = info_ok(st, "INBOX").highestmodseq;
	assert_true(h2 > h1);
	changes_load(st, "INBOX", h1, &ms);
	assert_int_equal(ms.n, 2);
	assert_int_equal(ms.m[0].uid, 2);
	assert_string_equal(ms.keywords[0], "kw");
	assert_int_equal(ms.m[1].uid, 4);
	assert_int_equal(ms.m[1].flags, STORE_SEEN);
	assert_true(ms.m[0].modseq > h1 && ms.m[1].modseq > h1);
	assert_true(is_file(ms.path[0]) && is_file(ms.path[1]));
	msgs_free(&ms);
	/* a callback that stops: its value comes back */
	int count = 0;
	assert_int_equal(store_changes(st, "INBOX", h0, stop_cb, &count, &err), 7);
	assert_int_equal(count, 2);

	/* expunge: HIGHESTMODSEQ moves, the UID leaves the list */
	assert_int_equal(store_expunge(st, "INBOX", 3, &err), 0);
	uint64_t h3 = info_ok(st, "INBOX").highestmodseq;
	assert_true(h3 > h2);
	uids_expect(st, "INBOX", (uint32_t[]){ 1, 2, 4, 5 }, 4);
	changes_load(st, "INBOX", h2, &ms);
	assert_int_equal(ms.n, 0); /* an expunge shows in the UID list, not here */
	/* a copy into the folder moves it too */
	assert_int_equal(store_copy(st, "INBOX", 1, "INBOX", NULL, &err), 0);
	assert_true(info_ok(st, "INBOX").highestmodseq > h3);
	changes_load(st, "INBOX", h3, &ms);
	assert_int_equal(ms.n, 1);
	assert_int_equal(ms.m[0].uid, 6);
	msgs_free(&ms);
	uids_expect(st, "INBOX", (uint32_t[]){ 1, 2, 4, 5, 6 }, 5);

	/* Many messages: sparse and dense changes, across read batches. */
	for (int i = 0; i < 400; i++)
		append_ok(st, "Junk", "Subject: many\n\n", NULL);
	uint64_t j0 = info_ok(st, "Junk").highestmodseq;
	assert_int_equal(set_kw(st, "Junk", 3, STORE_SEEN, NULL, 0, NULL), 1);
	assert_int_equal(set_kw(st, "Junk", 399, STORE_SEEN, NULL, 0, NULL), 1);
	changes_load(st, "Junk", j0, &ms);
	assert_int_equal(ms.n, 2);
	assert_int_equal(ms.m[0].uid, 3);
	assert_int_equal(ms.m[1].uid, 399);
	msgs_free(&ms);
	assert_int_equal(store_batch_begin(st, &err), 0);
	for (uint32_t uid = 1; uid <= 400; uid += 1 + (uid % 3 == 0))
		assert_int_equal(set_kw(st, "Junk", uid, STORE_FLAGGED, NULL, 0, NULL), 1);
	assert_int_equal(store_batch_end(st, &err), 0);
	bool flagged[401] = { false }, changed[401] = { false };
	size_t want = 0;
	for (uint32_t uid = 1; uid <= 400; uid += 1 + (uid % 3 == 0))
		flagged[uid] = changed[uid] = true;
	changed[3] = changed[399] = true;
	for (size_t i = 1; i <= 400; i++)
		want += changed[i];
	changes_load(st, "Junk", j0, &ms);
	assert_int_equal(ms.n, want);
	uint32_t prev = 0;
	for (size_t i = 0; i < ms.n; i++) {
		uint32_t uid = ms.m[i].uid;
		assert_true(uid > prev && uid <= 400);
		prev = uid;
		assert_true(changed[uid]);
		assert_int_equal(ms.m[i].flags, flagged[uid] ? STORE_FLAGGED : STORE_SEEN);
	}
	msgs_free(&ms);
	changes_load(st, "Junk", 0, &ms);
	assert_int_equal(ms.n, 400);
	msgs_free(&ms);
	store_close(&st);
}

/* ------------------------------------------------------------- \Recent */

struct list_counts {
	uint32_t messages, recent, unseen;
};

static int list_inbox_cb(const struct store_folder_info *fi, void *arg)
{
	if (strcmp(fi->name, "INBOX") == 0) {
		struct list_counts *c = arg;
		c->messages = fi->messages;
		c->recent = fi->recent;
		c->unseen = fi->unseen;
	}
	return 0;
}

static void counts_expect(struct store *st, uint32_t messages, uint32_t recent, uint32_t unseen)
{
	struct store_folder_info fi = info_ok(st, "INBOX");
	assert_int_equal(fi.messages, messages);
	assert_int_equal(fi.recent, recent);
	assert_int_equal(fi.unseen, unseen);
	struct list_counts c = { 99, 99, 99 };
	char *err = NULL;
	assert_int_equal(store_folder_list(st, list_inbox_cb, &c, &err), 0);
	assert_int_equal(c.messages, messages);
	assert_int_equal(c.recent, recent);
	assert_int_equal(c.unseen, unseen);
}

static void test_recent(void **state)
{
	struct fixture *fx = *state;
	struct store *a = open_ok(fx, USER);
	struct store *b = open_ok(fx, USER);
	char *err = NULL;
	counts_expect(a, 0, 0, 0);
	for (int i = 0; i < 3; i++)
		append_ok(a, "INBOX", "Subject: r\n\n", NULL);
	assert_int_equal(store_set_flags(a, "INBOX", 2, STORE_SEEN, NULL, &err), 0);
	counts_expect(a, 3, 3, 2);
	uint64_t hms = info_ok(a, "INBOX").highestmodseq;

	/* The first session claims them; the second gets none. */
	uint32_t ra = 0, rb = 0;
	assert_int_equal(store_claim_recent(a, "INBOX", &ra, &err), 0);
	assert_int_equal(ra, 1);
	assert_int_equal(store_claim_recent(b, "INBOX", &rb, &err), 0);
	assert_int_equal(rb, 4);
	counts_expect(b, 3, 0, 2);
	assert_int_equal(info_ok(a, "INBOX").highestmodseq, hms); /* not a change */

	/* New mail: recent for whoever claims next, once. */
	append_ok(a, "INBOX", "Subject: r4\n\n", NULL);
	append_ok(a, "INBOX", "Subject: r5\n\n", NULL);
	counts_expect(a, 5, 2, 4);
	assert_int_equal(store_claim_recent(b, "INBOX", &rb, &err), 0);
	assert_int_equal(rb, 4);
	assert_int_equal(store_claim_recent(a, "INBOX", &ra, &err), 0);
	assert_int_equal(ra, 6);
	counts_expect(a, 5, 0, 4);
	/* expunged recent messages are not counted */
	append_ok(a, "INBOX", "Subject: r6\n\n", NULL);
	assert_int_equal(store_expunge(a, "INBOX", 6, &err), 0);
	counts_expect(a, 5, 0, 4);
	err = NULL;
	assert_error(store_claim_recent(a, "Nope", &ra, &err), &err, "no such folder");

	/* A claim up to what a session loaded leaves later arrivals to the
	 * next claim (UIDs 7 and 8 arrive; a loaded up to 7 only). */
	append_ok(a, "INBOX", "Subject: r7\n\n", NULL);
	append_ok(a, "INBOX", "Subject: r8\n\n", NULL);
	assert_int_equal(store_claim_recent_upto(a, "INBOX", 8, &ra, &err), 0);
	assert_int_equal(ra, 6);   /* UID 7 is a's (6 was expunged unclaimed) */
	assert_int_equal(store_claim_recent_upto(b, "INBOX", 9, &rb, &err), 0);
	assert_int_equal(rb, 8);   /* UID 8 is b's, not lost */
	assert_int_equal(store_claim_recent_upto(a, "INBOX", 9, &ra, &err), 0);
	assert_int_equal(ra, 9);   /* nothing left */
	store_close(&a);
	store_close(&b);
}

/* ----------------------------------------------------------- migration */

/* The schema of version 1, as the first release created it. */
static const char schema_v1[] =
	"CREATE TABLE folders (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE,"
	" uidvalidity INTEGER NOT NULL, uidnext INTEGER NOT NULL,"
	" highestmodseq INTEGER NOT NULL, subscribed INTEGER NOT NULL DEFAULT 0);"
	"CREATE TABLE messages (folder INTEGER NOT NULL REFERENCES folders(id) ON DELETE CASCADE,"
	" uid INTEGER NOT NULL, filename TEXT NOT NULL, in_new INTEGER NOT NULL,"
	" flags INTEGER NOT NULL, xflags TEXT NOT NULL DEFAULT '', keywords TEXT,"
	" modseq INTEGER NOT NULL, size INTEGER NOT NULL, vsize INTEGER NOT NULL,"
	" internaldate INTEGER NOT NULL, verdict TEXT, score REAL NOT NULL DEFAULT 0,"
	" learned TEXT, PRIMARY KEY (folder, uid), UNIQUE (folder, filename)) WITHOUT ROWID;"
	"CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER);"
	"PRAGMA user_version = 1;";

static void sql_ok(sqlite3 *db, const char *sql)
{
	char *msg = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
		fail_msg("%s: %s", sql, msg);
}

static int64_t sql_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *q;
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(q), SQLITE_ROW);
	int64_t v = sqlite3_column_int64(q, 0);
	sqlite3_finalize(q);
	return v;
}

static void test_migrate_v1(void **state)
{
	struct fixture *fx = *state;
	/* A version-1 store: INBOX with two messages, one read. */
	assert_int_equal(mkdir_p(fx->root, 0700), 0);
	char *dirs[] = { "cur", "new", "tmp" };
	for (size_t i = 0; i < 3; i++) {
		char *d = xasprintf("%s/%s", fx->root, dirs[i]);
		assert_int_equal(mkdir(d, 0700), 0);
		free(d);
	}
	char *f1 = xasprintf("%s/cur/1700000000.M1P1Q1R1.h,S=11,W=13:2,S", fx->root);
	char *f2 = xasprintf("%s/new/1700000001.M1P1Q2R2.h,S=11,W=13", fx->root);
	write_file(f1, "Subject: 1\n");
	write_file(f2, "Subject: 2\n");
	char *dbpath = xasprintf("%s/index.sqlite", fx->root);
	sqlite3 *db;
	assert_int_equal(sqlite3_open(dbpath, &db), SQLITE_OK);
	sql_ok(db, "PRAGMA journal_mode=WAL;");
	sql_ok(db, schema_v1);
	sql_ok(db, "INSERT INTO folders VALUES (1, 'INBOX', 1600000000, 3, 7, 1);"
		   "INSERT INTO messages (folder, uid, filename, in_new, flags, xflags, modseq,"
		   " size, vsize, internaldate, verdict, score) VALUES"
		   " (1, 1, '1700000000.M1P1Q1R1.h,S=11,W=13', 0, 1, '', 5, 11, 13, 1700000000,"
		   " 'inbox', 1.5),"
		   " (1, 2, '1700000001.M1P1Q2R2.h,S=11,W=13', 1, 0, '', 6, 11, 13, 1700000001,"
		   " NULL, 0);");
	assert_int_equal(sqlite3_close(db), SQLITE_OK);

	struct store *st = open_ok(fx, USER);
	struct store_folder_info fi = info_ok(st, "INBOX");
	assert_int_equal(fi.uidvalidity, 1600000000); /* kept: clients keep their cache */
	assert_int_equal(fi.uidnext, 3);
	assert_int_equal(fi.highestmodseq, 7);
	assert_int_equal(fi.messages, 2);
	assert_int_equal(fi.unseen, 1);
	assert_int_equal(fi.recent, 0); /* what was there before is not \Recent */
	struct msgs ms;
	msgs_load(st, "INBOX", &ms);
	assert_int_equal(ms.n, 2);
	assert_string_equal(ms.keywords[0], "");
	assert_string_equal(ms.verdict[0], "inbox");
	assert_int_equal(ms.m[0].flags, STORE_SEEN);
	msgs_free(&ms);
	/* the new columns and tables work */
	char *err = NULL;
	assert_int_equal(set_kw(st, "INBOX", 2, 0, "Migrated", 0, NULL), 1);
	assert_int_equal(store_msg_cache_set(st, "INBOX", 1, "(E)", "(B)", "(S)", &err), 0);
	cache_expect(st, "INBOX", 1, "(E)", "(B)", "(S)");
	struct msgs ch;
	changes_load(st, "INBOX", 7, &ch);
	assert_int_equal(ch.n, 1);
	assert_string_equal(ch.keywords[0], "Migrated");
	msgs_free(&ch);
	uint32_t first = 0;
	assert_int_equal(store_claim_recent(st, "INBOX", &first, &err), 0);
	assert_int_equal(first, 3);
	append_ok(st, "INBOX", "Subject: 3\n\n", NULL);
	assert_int_equal(info_ok(st, "INBOX").recent, 1);
	store_close(&st);

	assert_int_equal(sqlite3_open(dbpath, &db), SQLITE_OK);
	assert_int_equal(sql_int(db, "PRAGMA user_version"), 3);
	assert_int_equal(sql_int(db, "SELECT count(*) FROM sqlite_master WHERE name IN"
				     " ('msgcache', 'messages_modseq', 'messages_keywords', 'lists',"
				     " 'training', 'messages_msgkey', 'messages_sender')"), 7);
	assert_int_equal(sqlite3_close(db), SQLITE_OK);
	/* and it opens again as version 3 without migrating twice */
	st = open_ok(fx, USER);
	assert_int_equal(info_ok(st, "INBOX").messages, 3);
	store_close(&st);

	/* a newer schema than ours is refused */
	assert_int_equal(sqlite3_open(dbpath, &db), SQLITE_OK);
	sql_ok(db, "PRAGMA user_version = 99;");
	assert_int_equal(sqlite3_close(db), SQLITE_OK);
	err = NULL;
	assert_error(store_open(fx->dir, USER, &st, &err), &err, "newer");
	free(dbpath);
	free(f1);
	free(f2);
}

/* A new database: version 3 directly. */
static void test_schema_new(void **state)
{
	struct fixture *fx = *state;
	struct store *st = open_ok(fx, USER);
	store_close(&st);
	char *dbpath = xasprintf("%s/index.sqlite", fx->root);
	sqlite3 *db;
	assert_int_equal(sqlite3_open(dbpath, &db), SQLITE_OK);
	assert_int_equal(sql_int(db, "PRAGMA user_version"), 3);
	assert_int_equal(sql_int(db, "SELECT count(*) FROM pragma_table_info('folders')"
				     " WHERE name = 'recent'"), 1);
	assert_int_equal(sql_int(db, "SELECT count(*) FROM pragma_table_info('messages')"
				     " WHERE name IN ('msgkey', 'sender')"), 2);
	assert_int_equal(sql_int(db, "SELECT count(*) FROM sqlite_master WHERE name IN"
				     " ('msgcache', 'messages_modseq', 'messages_keywords')"), 3);
	assert_int_equal(sqlite3_close(db), SQLITE_OK);
	free(dbpath);
}

/* ------------------------------------------------------- a large folder */

static int count_cb(const struct store_msg *m, void *arg)
{
	size_t *n = arg;
	assert_non_null(m->keywords);
	(*n)++;
	return 0;
}

static void test_large_folder(void **state)
{
	struct fixture *fx = *state;
	struct store *st = open_ok(fx, USER);
	store_close(&st);
	/* 10,000 files another tool delivered: one recovery scan indexes them. */
	enum { N = 10000 };
	for (int i = 0; i < N; i++) {
		char *p = xasprintf("%s/cur/%d.M%dP1Q1R1.h,S=10,W=11:2,%s", fx->root, 1700000000 + i,
				    i, i % 2 ? "S" : "");
		write_file(p, "Subject: \n");
		free(p);
	}
	int64_t t0 = clock_mono_ms();
	st = open_ok(fx, USER);
	int64_t t_open = clock_mono_ms() - t0;
	char *err = NULL;
	size_t n = 0;
	t0 = clock_mono_ms();
	assert_int_equal(store_messages(st, "INBOX", 0, 0, count_cb, &n, &err), 0);
	int64_t t_list = clock_mono_ms() - t0;
	assert_int_equal(n, N);
	uint32_t *uids;
	size_t nuids;
	t0 = clock_mono_ms();
	assert_int_equal(store_uids(st, "INBOX", &uids, &nuids, &err), 0);
	int64_t t_uids = clock_mono_ms() - t0;
	assert_int_equal(nuids, N);
	assert_int_equal(uids[0], 1);
	assert_int_equal(uids[N - 1], N);
	free(uids);
	uint64_t hms = info_ok(st, "INBOX").highestmodseq;
	n = 0;
	t0 = clock_mono_ms();
	for (int i = 0; i < 100; i++)
		assert_int_equal(store_changes(st, "INBOX", hms, count_cb, &n, &err), 0);
	int64_t t_changes = clock_mono_ms() - t0;
	assert_int_equal(n, 0);
	t0 = clock_mono_ms();
	struct list_counts c = { 0 };
	assert_int_equal(store_folder_list(st, list_inbox_cb, &c, &err), 0);
	int64_t t_flist = clock_mono_ms() - t0;
	assert_int_equal(c.messages, N);
	assert_int_equal(c.unseen, N / 2);
	assert_int_equal(c.recent, N);
	/* a STORE over all of them in one batch */
	t0 = clock_mono_ms();
	assert_int_equal(store_batch_begin(st, &err), 0);
	for (uint32_t uid = 1; uid <= N; uid++)
		assert_int_equal(set_kw(st, "INBOX", uid, STORE_SEEN, "$Done", 0, NULL), 1);
	assert_int_equal(store_batch_end(st, &err), 0);
	int64_t t_batch = clock_mono_ms() - t0;
	n = 0;
	assert_int_equal(store_changes(st, "INBOX", hms, count_cb, &n, &err), 0);
	assert_int_equal(n, N);
	print_message("10000 messages: open+index %lld ms, list %lld ms, uids %lld ms,"
		      " 100 x no changes %lld ms, folder list %lld ms, batch STORE %lld ms\n",
		      (long long)t_open, (long long)t_list, (long long)t_uids,
		      (long long)t_changes, (long long)t_flist, (long long)t_batch);
	/* generous bounds (this is no benchmark): sync points stay cheap */
	assert_true(t_list < 2000);
	assert_true(t_uids < 500);
	assert_true(t_changes < 500);
	store_close(&st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_folder_names),
		cmocka_unit_test_setup_teardown(test_open_layout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deliver_uids, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deliver_meta, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deliver_two_users, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deliver_race_and_retry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deliver_cross_fs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rebuild_index, setup, teardown),
		cmocka_unit_test_setup_teardown(test_set_flags, setup, teardown),
		cmocka_unit_test_setup_teardown(test_copy_move_expunge, setup, teardown),
		cmocka_unit_test_setup_teardown(test_folders, setup, teardown),
		cmocka_unit_test_setup_teardown(test_recover_new_files, setup, teardown),
		cmocka_unit_test_setup_teardown(test_recover_missing_files, setup, teardown),
		cmocka_unit_test_setup_teardown(test_recover_tmp, setup, teardown),
		cmocka_unit_test_setup_teardown(test_recover_folders, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_delivery, setup, teardown),
		cmocka_unit_test_setup_teardown(test_recover_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keywords, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unchangedsince, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cache_copy_move, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cache_busy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_batch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sync, setup, teardown),
		cmocka_unit_test_setup_teardown(test_recent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_migrate_v1, setup, teardown),
		cmocka_unit_test_setup_teardown(test_schema_new, setup, teardown),
		cmocka_unit_test_setup_teardown(test_large_folder, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
