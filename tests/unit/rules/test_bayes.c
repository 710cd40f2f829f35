/*
 * test_bayes.c - the classifier (rules/tokens.c, rules/bayes.c) and the
 * check_bayes rules (parse.c, compile.c, match.c):
 *
 *  - tokens: words, long words, headers, URIs; the headers the gateway
 *    adds (Received, Return-Path, Authentication-Results, X-Spam-*,
 *    X-RBL-Status) change nothing; sorted, unique, capped
 *  - learning: idempotent, moving spam -> ham, forgetting without the
 *    message, counts never negative, batches, two handles on one file,
 *    processes creating and learning into one new file at once
 *  - classifying: spammy > 0.9, hammy < 0.1 after synthetic training;
 *    the min_learned fallback from user to site to no verdict; chi2q on
 *    known values
 *  - rules: check_bayes parsing, the built-in bands, a score override,
 *    score sets, a meta reading BAYES_99, finish twice with different p
 *
 * Databases live in a mkdtemp directory under /tmp, removed at the end.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rules/rules-private.h"

static char dir[64];

static void rm_tree(const char *d)
{
	DIR *dp = opendir(d);
	if (dp == NULL)
		return;
	struct dirent *e;
	while ((e = readdir(dp)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		char *p = xasprintf("%s/%s", d, e->d_name);
		unlink(p);
		free(p);
	}
	closedir(dp);
}

static char *db_path(const char *name)
{
	return xasprintf("%s/%s", dir, name);
}

/* ------------------------------------------------------------ tokens */

struct strs {
	char **v;
	size_t n;
};

static bool collect(const char *tok, size_t len, void *arg)
{
	struct strs *s = arg;
	s->v = xrealloc(s->v, (s->n + 1) * sizeof(char *));
	s->v[s->n++] = xstrndup(tok, len);
	return true;
}

static struct strs tokens_of(const char *msg)
{
	struct strs s = { 0 };
	struct msgview *mv = msgview_new(msg, strlen(msg));
	bayes_tokenize_each(mv, collect, &s);
	msgview_free(&mv);
	return s;
}

static bool has_tok(const struct strs *s, const char *t)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->v[i], t) == 0)
			return true;
	return false;
}

static bool has_sub(const struct strs *s, const char *t)
{
	for (size_t i = 0; i < s->n; i++)
		if (strstr(s->v[i], t))
			return true;
	return false;
}

static void strs_free(struct strs *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	memset(s, 0, sizeof(*s));
}

static struct bayes_tokens *tokenize(const char *msg)
{
	struct msgview *mv = msgview_new(msg, strlen(msg));
	struct bayes_tokens *t = bayes_tokenize(mv);
	msgview_free(&mv);
	return t;
}

static const char base_msg[] =
	"From: \"Jane Sender\" <jane@mail.example.com>\n"
	"To: Bob <bob@example.test>\n"
	"Subject: Quarterly figures\n"
	"Message-ID: <1234.abcd@mx1.example.org>\n"
	"MIME-Version: 1.0\n"
	"Content-Type: text/plain; charset=\"UTF-8\"; boundary=\"----=_NextPart_000_0012_01C2A1B2\"\n"
	"X-Mailer: Acme Mail 4.2\n"
	"List-Id: Figures <figures.lists.example.com>\n"
	"List-Unsubscribe: <mailto:leave@lists.example.com>\n"
	"\n"
	"Hello WORLD, ab a supercalifragilisticexpialidocious don't e-mail $5,000 "
	"caf\xc3\xa9 FREE!!! word...word\n"
	"See http://user@www.Example.co.uk:8080/path?q=1 and https://shop.example.net/x\n";

static void test_tokens(void **state)
{
	(void)state;
	struct strs s = tokens_of(base_msg);
	const char *want[] = {
		/* body words (the Subject is the first paragraph) */
		"quarterly", "figures", "hello", "world", "don't", "e-mail", "$5,000", "caf\xc3\xa9",
		"free!!!", "word", "sk:superca",
		/* headers */
		"H*From:jane", "H*From:sender", "H*From:=jane@mail.example.com",
		"H*From:D:mail.example.com", "H*From:D:example.com", "H*To:D:example.test",
		"H*Subject:quarterly", "H*Message-ID:D:mx1.example.org", "H*Message-ID:D:example.org",
		"H*Content-Type:text/plain", "H*Content-Type:charset=utf-8",
		"H*Content-Type:boundary=----=_nextpart_#_#_#", "H*X-Mailer:acme",
		"H*X-Mailer:=acme mail 4.2", "H*MIME-Version:=1.0", "H*List-Id:figures",
		"H*List-Unsubscribe:present",
		/* URIs: host and registered domain */
		"U:www.example.co.uk", "U:example.co.uk", "U:shop.example.net", "U:example.net",
	};
	for (size_t i = 0; i < ARRAY_SIZE(want); i++)
		if (!has_tok(&s, want[i]))
			fail_msg("token %s missing", want[i]);
	/* short words dropped, long ones only as skips, no case kept */
	assert_false(has_tok(&s, "ab"));
	assert_false(has_sub(&s, "supercalifragilistic"));
	assert_false(has_tok(&s, "World"));
	assert_false(has_sub(&s, "0012")); /* the boundary's random part */
	assert_false(has_sub(&s, "1234.abcd")); /* only the message id's domain */
	/* the List-Unsubscribe value is presence only */
	assert_false(has_sub(&s, "H*List-Unsubscribe:leave"));
	strs_free(&s);

	/* The headers the gateway adds after classification feed nothing:
	 * the message with them gives exactly the same tokens. */
	char *with = xasprintf("Return-Path: <bounce@forged.example>\n"
			       "Received: from forgedhost.example (forgedhost [192.0.2.1]) by mx\n"
			       "Authentication-Results: mx.example.test; spf=pass smtp.mailfrom=forged\n"
			       "X-Spam-Status: Yes, score=9.9 required=5.0 tests=FORGEDRULE\n"
			       "X-Spam-Score: 9.9\n"
			       "X-Spam-Flag: YES\n"
			       "X-Spam-Level: *********\n"
			       "X-RBL-Status: forgedzone listed\n"
			       "%s",
			       base_msg);
	s = tokens_of(with);
	assert_false(has_sub(&s, "forged"));
	assert_false(has_sub(&s, "Received"));
	assert_false(has_sub(&s, "Spam"));
	strs_free(&s);
	struct bayes_tokens *a = tokenize(base_msg), *b = tokenize(with);
	assert_true(a->n > 20);
	assert_int_equal(a->n, b->n);
	assert_memory_equal(a->h, b->h, a->n * sizeof(int64_t));
	/* sorted (as signed) and unique */
	for (size_t i = 1; i < a->n; i++)
		assert_true(a->h[i - 1] < a->h[i]);
	assert_int_equal(bayes_tokens_count(a), a->n);
	bayes_tokens_free(&a);
	bayes_tokens_free(&b);
	assert_null(a);
	free(with);

	/* HTML markup: tag names and attribute names, not values; an
	 * attribute value that holds '>' does not end the tag. */
	s = tokens_of("Subject: sale\nContent-Type: text/html\n\n"
		      "<html><BODY bgcolor=\"#ffffff\"><font face='x>y' COLOR=red size=+2>"
		      "Buy</font><p>now<br/><a href=\"http://shop.example.net/\">here</a></html>\n");
	const char *markup[] = { "T:html", "T:body", "T:body:bgcolor", "T:font", "T:font:face",
				 "T:font:color", "T:font:size", "T:p", "T:br", "T:a", "T:a:href" };
	for (size_t i = 0; i < ARRAY_SIZE(markup); i++)
		if (!has_tok(&s, markup[i]))
			fail_msg("token %s missing", markup[i]);
	assert_false(has_sub(&s, "T:font:y"));
	assert_false(has_sub(&s, "ffffff"));
	assert_false(has_sub(&s, "T:font:red"));
	assert_true(has_tok(&s, "buy"));
	strs_free(&s);
	/* Broken markup ends where the text does. */
	s = tokens_of("Subject: x\nContent-Type: text/html\n\n"
		      "<a href=\"unterminated <b =x>\n<averyveryverylongtagname x=1> "
		      "<td nowrap width=1 averyveryverylongattributename=2><i\n<p a=");
	assert_true(has_tok(&s, "T:a"));
	assert_false(has_tok(&s, "T:b")); /* inside the open quote */
	assert_true(has_tok(&s, "T:td:width"));
	assert_false(has_sub(&s, "T:averyvery"));
	assert_true(has_tok(&s, "T:p"));
	strs_free(&s);

	/* A message of many distinct words: capped. */
	struct buf m;
	buf_init(&m, 1 << 20);
	buf_puts(&m, "Subject: many\n\n");
	for (int i = 0; i < 5000; i++)
		buf_printf(&m, "w%dx ", i);
	a = tokenize(m.data);
	assert_int_equal(bayes_tokens_count(a), BAYES_TOKENS_MAX);
	bayes_tokens_free(&a);
	/* An empty message: no tokens, no crash. */
	a = tokenize("");
	assert_int_equal(bayes_tokens_count(a), 0);
	bayes_tokens_free(&a);
	buf_free(&m);
}

/* ------------------------------------------------------------ learning */

static struct bayes_db *open_db(const char *name)
{
	char *path = db_path(name), *err = NULL;
	struct bayes_db *db = NULL;
	int r = bayes_open(path, BAYES_CREATE, &db, &err);
	if (r != 1)
		fail_msg("bayes_open %s: %s", path, err ? err : "?");
	free(path);
	return db;
}

static struct bayes_stats stats(struct bayes_db *db)
{
	struct bayes_stats st;
	char *err = NULL;
	if (bayes_stats(db, &st, &err) < 0)
		fail_msg("bayes_stats: %s", err);
	return st;
}

/* A token's counts read with SQLite itself; -1, -1 when absent. */
static void raw_counts(const char *name, int64_t h, int64_t *s, int64_t *hm)
{
	char *path = db_path(name);
	sqlite3 *db;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	sqlite3_stmt *q;
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT spam, ham FROM tokens WHERE h = ?1", -1, &q, NULL),
			 SQLITE_OK);
	sqlite3_bind_int64(q, 1, h);
	*s = *hm = -1;
	if (sqlite3_step(q) == SQLITE_ROW) {
		*s = sqlite3_column_int64(q, 0);
		*hm = sqlite3_column_int64(q, 1);
	}
	sqlite3_finalize(q);
	sqlite3_close(db);
	free(path);
}

static void raw_exec(const char *name, const char *sql)
{
	char *path = db_path(name);
	sqlite3 *db;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	free(path);
}

static void test_learn(void **state)
{
	(void)state;
	char *err = NULL, *path = db_path("learn.db");
	struct bayes_db *db = NULL;
	/* missing without BAYES_CREATE: 0 */
	assert_int_equal(bayes_open(path, 0, &db, &err), 0);
	assert_null(db);
	assert_int_equal(bayes_open(path, BAYES_CREATE, &db, &err), 1);
	struct bayes_stats st = stats(db);
	assert_true(st.nspam == 0 && st.nham == 0 && st.ntokens == 0);

	struct bayes_tokens *t = tokenize(base_msg);
	size_t n = t->n;
	enum bayes_class cls;
	assert_int_equal(bayes_learned(db, "m1", &cls, &err), 0);
	assert_int_equal(cls, BAYES_NONE);
	/* learning twice counts once */
	assert_int_equal(bayes_learn(db, "m1", BAYES_SPAM, t, &err), 1);
	assert_int_equal(bayes_learn(db, "m1", BAYES_SPAM, t, &err), 0);
	assert_int_equal(bayes_learn(db, "m1", BAYES_SPAM, NULL, &err), 0);
	st = stats(db);
	assert_true(st.nspam == 1 && st.nham == 0 && st.ntokens == n);
	int64_t s, h;
	raw_counts("learn.db", t->h[0], &s, &h);
	assert_true(s == 1 && h == 0);
	assert_int_equal(bayes_learned(db, "m1", &cls, &err), 0);
	assert_int_equal(cls, BAYES_SPAM);

	/* moving spam -> ham without the message: its kept tokens move */
	assert_int_equal(bayes_learn(db, "m1", BAYES_HAM, NULL, &err), 1);
	st = stats(db);
	assert_true(st.nspam == 0 && st.nham == 1 && st.ntokens == n);
	raw_counts("learn.db", t->h[n - 1], &s, &h);
	assert_true(s == 0 && h == 1);
	assert_int_equal(bayes_learned(db, "m1", &cls, &err), 0);
	assert_int_equal(cls, BAYES_HAM);

	/* forgetting without the message */
	assert_int_equal(bayes_learn(db, "m1", BAYES_NONE, NULL, &err), 1);
	assert_int_equal(bayes_learn(db, "m1", BAYES_NONE, NULL, &err), 0);
	st = stats(db);
	assert_true(st.nspam == 0 && st.nham == 0 && st.ntokens == 0);
	assert_int_equal(bayes_learned(db, "m1", &cls, &err), 0);
	assert_int_equal(cls, BAYES_NONE);

	/* a key never learned needs its tokens */
	assert_int_equal(bayes_learn(db, "m9", BAYES_SPAM, NULL, &err), -1);
	assert_non_null(err);
	assert_non_null(strstr(err, "not learned"));
	free(err);
	err = NULL;
	assert_int_equal(bayes_learn(db, "", BAYES_SPAM, t, &err), -1);
	free(err);
	err = NULL;

	/* moving with a new version of the message: the old tokens are
	 * unlearned, the new ones learned */
	int64_t old_only[] = { 11, 12, 13 }, new_only[] = { 13, 14 };
	struct bayes_tokens *t1 = bayes_tokens_from(old_only, 3), *t2 = bayes_tokens_from(new_only, 2);
	assert_int_equal(bayes_learn(db, "m2", BAYES_SPAM, t1, &err), 1);
	assert_int_equal(bayes_learn(db, "m2", BAYES_HAM, t2, &err), 1);
	raw_counts("learn.db", 11, &s, &h);
	assert_true(s == -1 && h == -1); /* both 0: the row is gone */
	raw_counts("learn.db", 13, &s, &h);
	assert_true(s == 0 && h == 1);
	raw_counts("learn.db", 14, &s, &h);
	assert_true(s == 0 && h == 1);
	st = stats(db);
	assert_true(st.nspam == 0 && st.nham == 1 && st.ntokens == 2);
	/* and back, with the kept (new) tokens */
	assert_int_equal(bayes_learn(db, "m2", BAYES_SPAM, NULL, &err), 1);
	raw_counts("learn.db", 14, &s, &h);
	assert_true(s == 1 && h == 0);

	/* counts never go negative, even when the table drifted (a token
	 * edited away behind our back) */
	raw_exec("learn.db", "UPDATE tokens SET spam = 0 WHERE h = 13;"
			     "UPDATE vars SET nspam = 0;");
	assert_int_equal(bayes_learn(db, "m2", BAYES_NONE, NULL, &err), 1);
	raw_counts("learn.db", 13, &s, &h);
	assert_true(s == -1 && h == -1);
	st = stats(db);
	assert_true(st.nspam == 0 && st.nham == 0 && st.ntokens == 0);

	/* a batch: one transaction; a failing learn inside is undone alone */
	assert_int_equal(bayes_batch_begin(db, &err), 0);
	assert_int_equal(bayes_batch_begin(db, &err), -1);
	free(err);
	err = NULL;
	for (int i = 0; i < 10; i++) {
		char key[16];
		snprintf(key, sizeof(key), "b%d", i);
		assert_int_equal(bayes_learn(db, key, i % 2 ? BAYES_HAM : BAYES_SPAM, t1, &err), 1);
	}
	assert_int_equal(bayes_learn(db, "nokey", BAYES_SPAM, NULL, &err), -1);
	free(err);
	err = NULL;
	assert_int_equal(bayes_learn(db, "b0", BAYES_SPAM, t1, &err), 0);
	assert_int_equal(bayes_batch_end(db, &err), 0);
	st = stats(db);
	assert_true(st.nspam == 5 && st.nham == 5 && st.ntokens == 3);

	/* a second handle on the same file sees it, and learns too */
	struct bayes_db *db2 = open_db("learn.db");
	st = stats(db2);
	assert_true(st.nspam == 5 && st.nham == 5);
	assert_int_equal(bayes_learn(db2, "b0", BAYES_NONE, NULL, &err), 1);
	st = stats(db);
	assert_true(st.nspam == 4 && st.nham == 5);
	bayes_close(&db2);
	assert_null(db2);

	bayes_tokens_free(&t1);
	bayes_tokens_free(&t2);
	bayes_tokens_free(&t);
	bayes_close(&db);
	bayes_close(&db); /* NULL: nothing */

	/* a file that is not a database: an error, not a crash */
	char *junk = db_path("junk.db");
	FILE *f = fopen(junk, "w");
	assert_non_null(f);
	for (int i = 0; i < 200; i++)
		fputs("this is not an SQLite database\n", f);
	fclose(f);
	assert_int_equal(bayes_open(junk, 0, &db, &err), -1);
	assert_non_null(err);
	free(err);
	free(junk);
	free(path);
}

/* Two processes create the same new file at once and learn into it,
 * each through its own handle: nothing is lost, nothing fails. */
/* Learn key as cls from three token hashes. */
static void learn3(struct bayes_db *db, const char *key, enum bayes_class cls, const int64_t *h)
{
	char *err = NULL;
	struct bayes_tokens *t = bayes_tokens_from(h, 3);
	assert_int_equal(bayes_learn(db, key, cls, t, &err), 1);
	bayes_tokens_free(&t);
}

/* Expiry: past the limit the least recently learned messages are
 * forgotten exactly as an unlearn would, and the database keeps the
 * counts of what it kept. */
static void test_expiry(void **state)
{
	(void)state;
	char *err = NULL, *path = db_path("expiry.db");
	struct bayes_db *db = NULL;
	assert_int_equal(bayes_open(path, BAYES_CREATE, &db, &err), 1);
	bayes_set_max_learned(db, 3);
	int64_t a[] = { 11, 12, 100 }, b[] = { 21, 22, 100 }, c[] = { 31, 32, 100 },
		d[] = { 41, 42, 100 }, e[] = { 51, 52, 100 };
	const int64_t *sets[] = { a, b, c, d, e };
	char key[16];
	for (int i = 0; i < 3; i++) {
		snprintf(key, sizeof(key), "m%d", i);
		learn3(db, key, i % 2 ? BAYES_HAM : BAYES_SPAM, sets[i]);
	}
	/* Learned most recently: m0 again (as ham now), so m1 is the oldest. */
	raw_exec("expiry.db", "UPDATE learned SET at = at - 10 WHERE key IN ('m1', 'm2')");
	raw_exec("expiry.db", "UPDATE learned SET at = at - 20 WHERE key = 'm1'");
	assert_int_equal(bayes_learn(db, "m0", BAYES_HAM, NULL, &err), 1);
	struct bayes_stats st = stats(db);
	assert_true(st.nspam == 1 && st.nham == 2 && st.ntokens == 7);
	/* A fourth message: m1 goes, its own tokens with it. */
	learn3(db, "m3", BAYES_SPAM, d);
	enum bayes_class cls;
	assert_int_equal(bayes_learned(db, "m1", &cls, &err), 0);
	assert_int_equal(cls, BAYES_NONE);
	st = stats(db);
	assert_true(st.nspam == 2 && st.nham == 1 && st.ntokens == 7);
	int64_t s, h;
	raw_counts("expiry.db", 21, &s, &h);
	assert_true(s == -1 && h == -1);
	raw_counts("expiry.db", 100, &s, &h); /* in every message: m1's count gone */
	assert_true(s == 2 && h == 1);
	/* A lowered limit is reached two at a time. */
	bayes_set_max_learned(db, 1);
	learn3(db, "m4", BAYES_SPAM, e);
	st = stats(db);
	assert_int_equal(st.nspam + st.nham, 2);
	/* Without a limit nothing goes; relearning what went is a new learn. */
	bayes_set_max_learned(db, 0);
	learn3(db, "m1", BAYES_HAM, b);
	st = stats(db);
	assert_int_equal(st.nspam + st.nham, 3);
	raw_counts("expiry.db", 100, &s, &h);
	assert_int_equal(s + h, 3);
	/* A damaged oldest record does not stop learning: it goes. */
	bayes_set_max_learned(db, 3);
	raw_exec("expiry.db", "UPDATE learned SET tokens = x'0102', at = 0 WHERE key = 'm1'");
	assert_int_equal(bayes_learned(db, "m1", &cls, &err), -1);
	free(err);
	err = NULL;
	learn3(db, "m5", BAYES_HAM, a);
	assert_int_equal(bayes_learned(db, "m1", &cls, &err), 0);
	assert_int_equal(cls, BAYES_NONE);
	bayes_close(&db);
	/* A database of schema 1 (no index for expiry) gets it at open. */
	raw_exec("expiry.db", "DROP INDEX learned_at; PRAGMA user_version = 1;");
	assert_int_equal(bayes_open(path, 0, &db, &err), 1);
	bayes_close(&db);
	raw_exec("expiry.db", "CREATE TEMP TABLE t AS SELECT 1 FROM sqlite_master "
			      "WHERE type = 'index' AND name = 'learned_at';"
			      "SELECT CASE WHEN (SELECT count(*) FROM t) = 1 THEN 1 "
			      "ELSE abs(-9223372036854775807 - 1) END;");
	free(path);
}

static void test_concurrent(void **state)
{
	(void)state;
	enum { KIDS = 3, EACH = 60 };
	pid_t pid[KIDS];
	for (int k = 0; k < KIDS; k++) {
		pid[k] = fork();
		assert_true(pid[k] >= 0);
		if (pid[k] > 0)
			continue;
		char *path = db_path("conc.db"), *err = NULL;
		struct bayes_db *db = NULL;
		int bad = bayes_open(path, BAYES_CREATE, &db, &err) != 1;
		for (int i = 0; i < EACH && !bad; i++) {
			int64_t h[3] = { 1000, 2000 + k, 3000 + i * KIDS + k };
			struct bayes_tokens *t = bayes_tokens_from(h, 3);
			char key[32];
			snprintf(key, sizeof(key), "k%d-%d", k, i);
			bad = bayes_learn(db, key, k == 0 ? BAYES_SPAM : BAYES_HAM, t, &err) != 1;
			bayes_tokens_free(&t);
		}
		if (bad)
			fprintf(stderr, "child %d: %s\n", k, err ? err : "?");
		bayes_close(&db);
		_exit(bad);
	}
	for (int k = 0; k < KIDS; k++) {
		int st;
		assert_int_equal(waitpid(pid[k], &st, 0), pid[k]);
		assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	struct bayes_db *db = open_db("conc.db");
	struct bayes_stats st = stats(db);
	assert_true(st.nspam == EACH && st.nham == (KIDS - 1) * EACH);
	assert_int_equal(st.ntokens, 1 + KIDS + KIDS * EACH);
	int64_t s, h;
	raw_counts("conc.db", 1000, &s, &h);
	assert_true(s == EACH && h == (KIDS - 1) * EACH);
	bayes_close(&db);
}

/* ------------------------------------------------------------ classifying */

static uint32_t rng = 12345;
static uint32_t rnd(void)
{
	rng = rng * 1103515245u + 12345u;
	return rng >> 8;
}

static const char *const spam_words[] = { "viagra", "casino", "winner", "lottery", "million",
					  "prize", "cheap", "pills", "bitcoin", "unsubscribe",
					  "guaranteed", "refinance", "bonus", "jackpot", "credit" };
static const char *const ham_words[] = { "meeting", "project", "schedule", "report", "lunch",
					 "review", "budget", "minutes", "agenda", "deadline",
					 "kernel", "patch", "release", "thanks", "colleague" };
static const char *const common_words[] = { "the", "and", "you", "this", "that", "with",
					    "have", "from", "will", "your" };

/* A message of 40 words: mostly of its class, some common, a few of the
 * other class (so that training sees overlap). */
static char *synth(bool spam, int i)
{
	struct buf b;
	buf_init(&b, 1 << 16);
	buf_printf(&b, "From: %s%d@%s\nSubject: %s %s\n\n", spam ? "promo" : "colleague", i,
		   spam ? "bulk.example" : "corp.example",
		   spam ? spam_words[rnd() % 15] : ham_words[rnd() % 15],
		   spam ? spam_words[rnd() % 15] : ham_words[rnd() % 15]);
	for (int w = 0; w < 40; w++) {
		unsigned r = rnd() % 10;
		const char *word = r < 6   ? (spam ? spam_words : ham_words)[rnd() % 15]
				   : r < 9 ? common_words[rnd() % 10]
					   : (spam ? ham_words : spam_words)[rnd() % 15];
		buf_printf(&b, "%s ", word);
	}
	if (spam)
		buf_printf(&b, "\nhttp://www.bulk%d.example/offer\n", i % 3);
	buf_puts(&b, "\n");
	return b.data;
}

static void train(struct bayes_db *db, int nspam, int nham)
{
	char *err = NULL;
	assert_int_equal(bayes_batch_begin(db, &err), 0);
	for (int i = 0; i < nspam + nham; i++) {
		bool spam = i < nspam;
		char *m = synth(spam, i), key[32];
		snprintf(key, sizeof(key), "%s%d", spam ? "s" : "h", i);
		struct bayes_tokens *t = tokenize(m);
		assert_int_equal(bayes_learn(db, key, spam ? BAYES_SPAM : BAYES_HAM, t, &err), 1);
		bayes_tokens_free(&t);
		free(m);
	}
	assert_int_equal(bayes_batch_end(db, &err), 0);
}

static void test_classify(void **state)
{
	(void)state;
	struct bayes_db *user = open_db("user.db"), *site = open_db("site.db");
	train(user, 30, 30);
	train(site, 60, 60);
	char *err = NULL;
	const char *which = NULL;
	double p = -1;

	char *spam = synth(true, 1000), *ham = synth(false, 1001);
	struct bayes_tokens *ts = tokenize(spam), *th = tokenize(ham);
	assert_int_equal(bayes_classify(user, NULL, 20, ts, &p, &which, &err), 1);
	assert_string_equal(which, "user");
	if (!(p > 0.9))
		fail_msg("spam p = %f", p);
	assert_int_equal(bayes_classify(user, NULL, 20, th, &p, &which, &err), 1);
	if (!(p < 0.1))
		fail_msg("ham p = %f", p);
	/* a message of words never seen: 0.5 */
	struct bayes_tokens *tu = tokenize("Subject: zzqx\n\nqwertyuiop asdfghjkl zxcvbnm\n");
	assert_int_equal(bayes_classify(user, NULL, 20, tu, &p, &which, &err), 1);
	assert_true(p == 0.5);

	/* min_learned: the user's database below it -> the site's */
	p = -1;
	assert_int_equal(bayes_classify(user, site, 50, ts, &p, &which, &err), 1);
	assert_string_equal(which, "site");
	assert_true(p > 0.9);
	assert_int_equal(bayes_classify(NULL, site, 50, th, &p, &which, &err), 1);
	assert_string_equal(which, "site");
	assert_true(p < 0.1);
	/* neither: no verdict, p untouched */
	p = -7;
	which = "none";
	assert_int_equal(bayes_classify(user, site, 100, ts, &p, &which, &err), 0);
	assert_true(p == -7);
	assert_string_equal(which, "none");
	assert_int_equal(bayes_classify(NULL, NULL, 1, ts, &p, &which, &err), 0);
	/* an empty database, min_learned 0: still no verdict */
	struct bayes_db *empty = open_db("empty.db");
	assert_int_equal(bayes_classify(empty, NULL, 0, ts, &p, &which, &err), 0);
	bayes_close(&empty);

	bayes_tokens_free(&ts);
	bayes_tokens_free(&th);
	bayes_tokens_free(&tu);
	free(spam);
	free(ham);
	bayes_close(&user);
	bayes_close(&site);
}

static bool near(double a, double b, double eps)
{
	return a - b < eps && b - a < eps;
}

static void test_chi2(void **state)
{
	(void)state;
	/* Q(x2 | v): 1 at 0; e^-x2/2 for v = 2; e^-m (1 + m) for v = 4 */
	assert_true(near(bayes_chi2q(0, 2), 1.0, 1e-12));
	assert_true(near(bayes_chi2q(2, 2), 0.36787944117144233, 1e-12));
	assert_true(near(bayes_chi2q(4, 4), 3 * 0.1353352832366127, 1e-12));
	/* the 5% critical values of the chi-square tables */
	assert_true(near(bayes_chi2q(5.991, 2), 0.05, 1e-4));
	assert_true(near(bayes_chi2q(18.307, 10), 0.05, 1e-4));
	assert_true(near(bayes_chi2q(43.773, 30), 0.05, 1e-4));
	assert_true(bayes_chi2q(2000, 300) < 1e-100);
	assert_true(near(bayes_chi2q(300, 300), 0.48914177, 1e-6)); /* near the median */
	/* Robinson's f(w): an unknown word is x; strong evidence tends to p */
	assert_true(near(bayes_robinson(0, 0, 10, 10), BAYES_FW_X, 1e-12));
	assert_true(near(bayes_robinson(10, 0, 10, 10), (BAYES_FW_S * BAYES_FW_X + 10) / (BAYES_FW_S + 10),
			 1e-12));
	/* frequencies, not counts: 10 of 100 spam vs 1 of 10 ham is even */
	assert_true(near(bayes_robinson(10, 1, 100, 10), (BAYES_FW_S * BAYES_FW_X + 11 * 0.5) / (BAYES_FW_S + 11),
			 1e-12));
	/* combining */
	double f[150];
	assert_true(bayes_combine(f, 0) == 0.5);
	for (int i = 0; i < 10; i++)
		f[i] = 0.99;
	assert_true(bayes_combine(f, 10) > 0.99);
	for (int i = 0; i < 10; i++)
		f[i] = 0.01;
	assert_true(bayes_combine(f, 10) < 0.01);
	f[0] = 0.9;
	f[1] = 0.1;
	assert_true(near(bayes_combine(f, 2), 0.5, 1e-12));
	/* 150 strong tokens do not underflow */
	for (int i = 0; i < 150; i++)
		f[i] = i % 2 ? 0.0001 : 0.0002;
	double p = bayes_combine(f, 150);
	assert_true(p >= 0 && p < 1e-6);
}

/* ------------------------------------------------------------ rules */

static struct ruleset *load(const char *text, struct rules_report *rep)
{
	char *path = db_path("t.rules");
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	struct ruleset *rs = NULL;
	memset(rep, 0, sizeof(*rep));
	ruleset_load_file(path, &rs, rep);
	unlink(path);
	free(path);
	return rs;
}

static const struct rule_hit *hit(const struct rules_result *r, const char *name)
{
	for (size_t i = 0; i < r->n; i++)
		if (strcmp(r->v[i].name, name) == 0)
			return &r->v[i];
	return NULL;
}

static bool report_has(const struct rules_report *rep, bool error, const char *sub)
{
	for (size_t i = 0; i < rep->n; i++)
		if (rep->v[i].error == error && strstr(rep->v[i].msg, sub))
			return true;
	return false;
}

static void test_check_bayes_parse(void **state)
{
	(void)state;
	struct rules_report rep;
	struct ruleset *rs = load("body MY_B99 eval:check_bayes('0.99', '1.00')\n"
				  "body MY_B00 eval:check_bayes(\"0.00\",\"0.01\")\n"
				  "body MY_MID eval:check_bayes ( 0.5 , 0.7 )\n"
				  "body MY_TOP eval:check_bayes('0.9', 'undef')\n"
				  "body MY_ZERO eval:check_bayes('0.2', '0.3')\n"
				  "score MY_ZERO 0\n"
				  "header MY_HDR eval:check_bayes('0.1', '0.2')\n"
				  "body OTHER eval:check_stock_info('4')\n"
				  "meta M99 MY_B99 && !MY_B00\n"
				  "score M99 1\n",
				  &rep);
	assert_non_null(rs);
	assert_int_equal(rep.errors, 0);
	assert_true(report_has(&rep, false, "header MY_HDR: eval: rules are not supported"));
	assert_true(report_has(&rep, false, "body OTHER: eval: rules are not supported"));
	assert_true(ruleset_has_bayes(rs));
	struct msgview *mv = msgview_new("Subject: x\n\nbody\n", 17);
	struct rules_scan *sc = ruleset_scan(rs, mv);
	struct rules_result r;
	ruleset_finish(rs, sc, 0.995, &r);
	assert_non_null(hit(&r, "MY_B99"));
	assert_non_null(hit(&r, "M99"));
	assert_non_null(hit(&r, "MY_TOP"));
	assert_null(hit(&r, "MY_MID"));
	assert_null(hit(&r, "BAYES_99")); /* the file has its own: no built-ins */
	rules_result_free(&r);
	ruleset_finish(rs, sc, 1.0, &r); /* the top band includes 1.0 */
	assert_non_null(hit(&r, "MY_B99"));
	rules_result_free(&r);
	ruleset_finish(rs, sc, 0.5, &r); /* [lo, hi) */
	assert_non_null(hit(&r, "MY_MID"));
	assert_null(hit(&r, "MY_B99"));
	assert_null(hit(&r, "M99"));
	rules_result_free(&r);
	ruleset_finish(rs, sc, 0.7, &r);
	assert_null(hit(&r, "MY_MID"));
	rules_result_free(&r);
	ruleset_finish(rs, sc, 0.25, &r); /* score 0: not reported */
	assert_int_equal(r.n, 0);
	rules_result_free(&r);
	ruleset_finish(rs, sc, 0.0, &r);
	assert_non_null(hit(&r, "MY_B00"));
	rules_result_free(&r);
	ruleset_finish(rs, sc, -1, &r); /* no verdict: none */
	assert_int_equal(r.n, 0);
	rules_result_free(&r);
	rules_scan_free(&sc);
	assert_null(sc);
	msgview_free(&mv);
	ruleset_free(&rs);
	rules_report_free(&rep);

	/* malformed: errors with the line */
	rs = load("body B1 eval:check_bayes('a', 'b')\n"
		  "body B2 eval:check_bayes('0.5')\n"
		  "body B3 eval:check_bayes('0.5', '0.4')\n"
		  "body B4 eval:check_bayes('0.1', '0.2') x\n"
		  "body B5 eval:check_bayes('0.1, '0.2')\n",
		  &rep);
	assert_null(rs);
	assert_int_equal(rep.errors, 5);
	for (unsigned line = 1; line <= 5; line++) {
		bool found = false;
		for (size_t i = 0; i < rep.n; i++)
			found = found || (rep.v[i].line == line && rep.v[i].error &&
					  strstr(rep.v[i].msg, "check_bayes"));
		if (!found)
			fail_msg("no check_bayes error on line %u", line);
	}
	rules_report_free(&rep);

	/* SpamAssassin's own file: its ifplugin Bayes block is read */
	rs = load("ifplugin Mail::SpamAssassin::Plugin::Bayes\n"
		  "body BAYES_99\t\teval:check_bayes('0.99', '1.00')\n"
		  "tflags BAYES_99\t\tlearn\n"
		  "endif\n"
		  "if plugin(Mail::SpamAssassin::Plugin::Bayes)\n"
		  "score BAYES_99 0 0 3.8 3.5\n"
		  "endif\n",
		  &rep);
	assert_non_null(rs);
	assert_int_equal(rep.warnings, 0);
	mv = msgview_new("\n", 1);
	sc = ruleset_scan(rs, mv);
	ruleset_finish(rs, sc, 0.999, &r);
	assert_int_equal(r.n, 1);
	assert_true(hit(&r, "BAYES_99") && hit(&r, "BAYES_99")->score == 3.5); /* set 3 */
	rules_result_free(&r);
	ruleset_finish(rs, sc, 0.001, &r);
	assert_int_equal(r.n, 0); /* no built-in BAYES_00 */
	rules_result_free(&r);
	rules_scan_free(&sc);
	msgview_free(&mv);
	ruleset_free(&rs);
	rules_report_free(&rep);

	/* check_bayes rules that all score 0: nothing to classify for */
	rs = load("body B eval:check_bayes('0', '1')\nscore B 0\n", &rep);
	assert_non_null(rs);
	assert_false(ruleset_has_bayes(rs));
	ruleset_free(&rs);
	rules_report_free(&rep);
}

static void test_builtin_bands(void **state)
{
	(void)state;
	struct rules_report rep;
	struct ruleset *rs = load("body FOO /\\bfoo\\b/\n"
				  "score FOO 1.0\n"
				  "score BAYES_99 4.0\n"
				  "describe BAYES_50 my own words\n"
				  "meta M_B99 BAYES_99 && FOO\n"
				  "score M_B99 2\n"
				  "body FOUR /\\bfoo\\b/\n"
				  "score FOUR 1 2 3 4\n"
				  "score EARLY 1 2 3 4\n" /* a score line before its rule */
				  "body EARLY /\\bfoo\\b/\n",
				  &rep);
	assert_non_null(rs);
	assert_int_equal(rep.errors, 0);
	assert_true(ruleset_has_bayes(rs));
	const char *msg = "Subject: hello\n\nfoo bar\n";
	struct msgview *mv = msgview_new(msg, strlen(msg));
	struct rules_scan *sc = ruleset_scan(rs, mv);
	struct rules_result r;

	/* finish twice on one scan, different probabilities */
	ruleset_finish(rs, sc, 0.995, &r);
	const struct rule_hit *h = hit(&r, "BAYES_99");
	assert_non_null(h);
	assert_true(h->score == 4.0); /* the file's score */
	assert_non_null(hit(&r, "M_B99"));
	assert_null(hit(&r, "BAYES_999"));
	assert_true(hit(&r, "FOUR")->score == 4); /* score set 3: a verdict */
	assert_true(hit(&r, "EARLY")->score == 4);
	assert_true(near(r.score, 1 + 4 + 2 + 4 + 4, 1e-9));
	rules_result_free(&r);

	ruleset_finish(rs, sc, 0.001, &r);
	h = hit(&r, "BAYES_00");
	assert_non_null(h);
	assert_true(h->score == -1.9);
	assert_string_equal(h->describe, "Bayes spam probability is 0 to 1%");
	assert_null(hit(&r, "BAYES_99"));
	assert_null(hit(&r, "M_B99"));
	assert_true(near(r.score, 1 - 1.9 + 4 + 4, 1e-9));
	rules_result_free(&r);

	ruleset_finish(rs, sc, 0.9995, &r); /* the two top bands overlap */
	assert_non_null(hit(&r, "BAYES_99"));
	assert_true(hit(&r, "BAYES_999")->score == 0.2);
	rules_result_free(&r);

	ruleset_finish(rs, sc, 0.5, &r);
	h = hit(&r, "BAYES_50");
	assert_true(h && h->score == 0.8);
	assert_string_equal(h->describe, "my own words");
	rules_result_free(&r);

	/* each band at its edges: [lo, hi) */
	static const struct {
		double p;
		const char *name;
	} edges[] = { { 0.0099, "BAYES_00" }, { 0.01, "BAYES_05" }, { 0.05, "BAYES_20" },
		      { 0.2, "BAYES_40" },    { 0.4, "BAYES_50" },  { 0.6, "BAYES_60" },
		      { 0.8, "BAYES_80" },    { 0.95, "BAYES_95" }, { 0.99, "BAYES_99" },
		      { 1.0, "BAYES_999" } };
	for (size_t i = 0; i < ARRAY_SIZE(edges); i++) {
		ruleset_finish(rs, sc, edges[i].p, &r);
		if (!hit(&r, edges[i].name))
			fail_msg("p=%g: %s did not hit", edges[i].p, edges[i].name);
		rules_result_free(&r);
	}

	/* no verdict: no band, and set-1 scores */
	ruleset_finish(rs, sc, -1, &r);
	for (size_t i = 0; i < r.n; i++)
		assert_true(strncmp(r.v[i].name, "BAYES_", 6) != 0);
	assert_true(hit(&r, "FOUR")->score == 2);
	assert_true(hit(&r, "EARLY")->score == 2);
	assert_true(near(r.score, 1 + 2 + 2, 1e-9));
	rules_result_free(&r);
	/* ruleset_match is scan + finish(-1) */
	ruleset_match(rs, mv, &r);
	assert_true(near(r.score, 1 + 2 + 2, 1e-9));
	assert_null(hit(&r, "BAYES_50"));
	rules_result_free(&r);
	rules_scan_free(&sc);
	msgview_free(&mv);
	ruleset_free(&rs);
	rules_report_free(&rep);

	/* an empty rule file still gets the bands */
	rs = load("# nothing\n", &rep);
	assert_non_null(rs);
	assert_true(ruleset_has_bayes(rs));
	assert_int_equal(ruleset_size(rs), 10);
	ruleset_free(&rs);
	rules_report_free(&rep);
}

int main(void)
{
	strcpy(dir, "/tmp/test_bayes.XXXXXX");
	if (mkdtemp(dir) == NULL)
		return 1;
	log_open("test_bayes", LOG_LVL_ERR, NULL);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tokens),
		cmocka_unit_test(test_learn),
		cmocka_unit_test(test_expiry),
		cmocka_unit_test(test_concurrent),
		cmocka_unit_test(test_classify),
		cmocka_unit_test(test_chi2),
		cmocka_unit_test(test_check_bayes_parse),
		cmocka_unit_test(test_builtin_bands),
	};
	int r = cmocka_run_group_tests(tests, NULL, NULL);
	rm_tree(dir);
	rmdir(dir);
	return r;
}
