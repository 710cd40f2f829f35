/*
 * test_lists.c - whitelist and blacklist (mailctl entries and the entries
 * of the Whitelist/Blacklist folders), training records, message keys.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/common.h"
#include "store/store.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define USER "alice@example.test"

struct fixture {
	char dir[64];
	struct store *st;
};

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	strcpy(fx->dir, "/tmp/lists-test-XXXXXX");
	if (mkdtemp(fx->dir) == NULL)
		return -1;
	char *err = NULL;
	if (store_open(fx->dir, USER, &fx->st, &err) < 0) {
		fprintf(stderr, "%s\n", err);
		return -1;
	}
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
	store_close(&fx->st);
	nftw(fx->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(fx);
	return 0;
}

static uint32_t append(struct store *st, const char *folder, const char *msg, const char *verdict)
{
	struct store_meta meta = { .verdict = verdict };
	uint32_t uid = 0;
	char *err = NULL;
	if (store_append(st, folder, msg, strlen(msg), &meta, &uid, &err) < 0)
		fail_msg("append: %s", err);
	return uid;
}

/* 1 and the kind, or 0. */
static int match(struct store *st, const char *addr, enum store_list_kind *kind, char *entry)
{
	char *err = NULL;
	int r = store_list_match(st, addr, kind, entry, STORE_ADDRESS_MAX, &err);
	if (r < 0)
		fail_msg("match: %s", err);
	return r;
}

static const char msg_news[] = "From: \"News Letter\" <News@Shop.Example>\nSubject: offers\n\nbuy\n";
static const char msg_other[] = "From: other@shop.example\nSubject: hi\n\nhello\n";

static void test_entry_normalize(void **state)
{
	(void)state;
	char out[STORE_ADDRESS_MAX];
	assert_true(store_list_entry_normalize("Bob@Example.COM", out, sizeof(out)));
	assert_string_equal(out, "bob@example.com");
	assert_true(store_list_entry_normalize("@Example.com", out, sizeof(out)));
	assert_string_equal(out, "@example.com");
	assert_false(store_list_entry_normalize("example.com", out, sizeof(out)));
	assert_false(store_list_entry_normalize("a@b@c", out, sizeof(out)));
	assert_false(store_list_entry_normalize("a b@c.d", out, sizeof(out)));
	assert_false(store_list_entry_normalize("a@", out, sizeof(out)));
	assert_false(store_list_entry_normalize("a@x..y", out, sizeof(out)));
	assert_false(store_list_entry_normalize("<a@x.y>", out, sizeof(out)));
	assert_true(store_from_address("\"Q, R\" <Q@X.Example>, s@y", out, sizeof(out)));
	assert_string_equal(out, "q@x.example");
	assert_false(store_from_address("undisclosed-recipients:;", out, sizeof(out)));
}

static void test_mailctl_entries(void **state)
{
	struct fixture *fx = *state;
	char *err = NULL;
	enum store_list_kind k;
	char e[STORE_ADDRESS_MAX];
	assert_int_equal(store_list_add(fx->st, STORE_WHITE, "Friend@Example.org", &err), 1);
	assert_int_equal(store_list_add(fx->st, STORE_WHITE, "friend@example.org", &err), 0);
	assert_int_equal(store_list_add(fx->st, STORE_BLACK, "@spam.example", &err), 1);
	assert_int_equal(store_list_add(fx->st, STORE_BLACK, "not an address", &err), -1);
	free(err);
	err = NULL;
	assert_int_equal(match(fx->st, "FRIEND@example.org", &k, e), 1);
	assert_int_equal(k, STORE_WHITE);
	assert_string_equal(e, "friend@example.org");
	assert_int_equal(match(fx->st, "anyone@spam.example", &k, e), 1);
	assert_int_equal(k, STORE_BLACK);
	assert_string_equal(e, "@spam.example");
	assert_int_equal(match(fx->st, "anyone@sub.spam.example", &k, e), 0);
	/* An address entry beats a domain entry. */
	assert_int_equal(store_list_add(fx->st, STORE_WHITE, "boss@spam.example", &err), 1);
	assert_int_equal(match(fx->st, "boss@spam.example", &k, e), 1);
	assert_int_equal(k, STORE_WHITE);
	/* On both lists at the same level: the blacklist. */
	assert_int_equal(store_list_add(fx->st, STORE_BLACK, "friend@example.org", &err), 1);
	assert_int_equal(match(fx->st, "friend@example.org", &k, e), 1);
	assert_int_equal(k, STORE_BLACK);
	assert_int_equal(store_list_del(fx->st, STORE_BLACK, "friend@example.org", &err), 1);
	assert_int_equal(store_list_del(fx->st, STORE_BLACK, "friend@example.org", &err), 0);
	assert_int_equal(match(fx->st, "friend@example.org", &k, e), 1);
	assert_int_equal(k, STORE_WHITE);
	/* They survive a reopen. */
	store_close(&fx->st);
	assert_int_equal(store_open(fx->dir, USER, &fx->st, &err), 0);
	assert_int_equal(match(fx->st, "anyone@spam.example", &k, e), 1);
}

struct collected {
	char text[2048];
};

static int collect_cb(const struct store_list_entry *en, void *arg)
{
	struct collected *c = arg;
	size_t n = strlen(c->text);
	snprintf(c->text + n, sizeof(c->text) - n, "%s %s %u %u;", store_list_name(en->kind),
		 en->entry, en->sources, en->messages);
	return 0;
}

static void test_folder_entries(void **state)
{
	struct fixture *fx = *state;
	char *err = NULL;
	enum store_list_kind k;
	char e[STORE_ADDRESS_MAX];
	uint32_t in = append(fx->st, "INBOX", msg_news, "junk");
	assert_int_equal(match(fx->st, "news@shop.example", &k, e), 0);
	/* Into Whitelist: its From address is an entry. */
	uint32_t w = 0;
	assert_int_equal(store_move(fx->st, "INBOX", in, "Whitelist", &w, &err), 0);
	assert_int_equal(match(fx->st, "news@shop.example", &k, e), 1);
	assert_int_equal(k, STORE_WHITE);
	assert_int_equal(match(fx->st, "other@shop.example", &k, e), 0);
	/* A second message of the sender, then expunge one: still there;
	 * expunge the last: gone. */
	uint32_t w2 = append(fx->st, "Whitelist", msg_news, NULL);
	assert_int_not_equal(w2, 0);
	struct collected c = { "" };
	assert_int_equal(store_list_each(fx->st, collect_cb, &c, &err), 0);
	assert_string_equal(c.text, "white news@shop.example 2 2;");
	assert_int_equal(store_expunge(fx->st, "Whitelist", w, &err), 0);
	assert_int_equal(match(fx->st, "news@shop.example", &k, e), 1);
	assert_int_equal(store_expunge(fx->st, "Whitelist", w2, &err), 0);
	assert_int_equal(match(fx->st, "news@shop.example", &k, e), 0);
	/* Blacklist likewise; a mailctl entry of the same address merges. */
	uint32_t b = append(fx->st, "Blacklist", msg_other, NULL);
	assert_int_equal(store_list_add(fx->st, STORE_BLACK, "other@shop.example", &err), 1);
	c.text[0] = '\0';
	assert_int_equal(store_list_each(fx->st, collect_cb, &c, &err), 0);
	assert_string_equal(c.text, "black other@shop.example 3 1;");
	assert_int_equal(store_expunge(fx->st, "Blacklist", b, &err), 0);
	assert_int_equal(match(fx->st, "other@shop.example", &k, e), 1); /* mailctl's stays */
}

static int verdict_cb(const struct store_msg *m, void *arg)
{
	str_copy(arg, m->verdict ? m->verdict : "(none)", 16);
	return 0;
}

static void test_keys_and_verdict(void **state)
{
	struct fixture *fx = *state;
	char *err = NULL;
	uint32_t a = append(fx->st, "INBOX", msg_news, "junk");
	char k1[STORE_MSGKEY_SIZE], k2[STORE_MSGKEY_SIZE], k3[STORE_MSGKEY_SIZE];
	assert_int_equal(store_msgkey_get(fx->st, "INBOX", a, k1, &err), 0);
	store_msgkey_of(msg_news, strlen(msg_news), k2);
	assert_string_equal(k1, k2);
	assert_int_equal(strlen(k1), 32);
	/* A copy shares it; an APPEND of the same bytes gets the verdict of
	 * the copy that has one. */
	uint32_t c = 0;
	assert_int_equal(store_copy(fx->st, "INBOX", a, "Trash", &c, &err), 0);
	assert_int_equal(store_msgkey_get(fx->st, "Trash", c, k3, &err), 0);
	assert_string_equal(k1, k3);
	uint32_t j = append(fx->st, "Junk", msg_news, NULL);
	char *folder = NULL;
	uint32_t uid = 0;
	assert_int_equal(store_msgkey_find(fx->st, k1, &folder, &uid, &err), 1);
	free(folder);
	char verdict[16] = "";
	assert_int_equal(store_messages(fx->st, "Junk", j, j, verdict_cb, verdict, &err), 0);
	assert_string_equal(verdict, "junk");
	store_msgkey_of("other", 5, k3);
	assert_int_equal(store_msgkey_find(fx->st, k3, &folder, &uid, &err), 0);
}

static void test_training_queue(void **state)
{
	struct fixture *fx = *state;
	char *err = NULL;
	uint64_t n = 9;
	assert_int_equal(store_train_count(fx->st, &n, &err), 0);
	assert_int_equal(n, 0);
	char key[STORE_MSGKEY_SIZE];
	store_msgkey_of(msg_news, strlen(msg_news), key);
	uint32_t a = append(fx->st, "INBOX", msg_news, "inbox");
	assert_int_equal(store_train_queue(fx->st, key, STORE_LEARN_SPAM, &err), 0);
	/* Queued again: one job, the last word. */
	assert_int_equal(store_train_queue(fx->st, key, STORE_LEARN_HAM, &err), 0);
	struct store_train_job *jobs = NULL;
	size_t nj = 0;
	assert_int_equal(store_train_pending(fx->st, 10, &jobs, &nj, &err), 0);
	assert_int_equal(nj, 1);
	assert_int_equal(jobs[0].want, STORE_LEARN_HAM);
	/* Queued once more while the job runs: done does not remove it. */
	assert_int_equal(store_train_queue(fx->st, key, STORE_LEARN_NONE, &err), 0);
	assert_int_equal(store_train_done(fx->st, &jobs[0], &err), 0);
	assert_int_equal(store_train_count(fx->st, &n, &err), 0);
	assert_int_equal(n, 1);
	store_train_jobs_free(jobs, nj);
	assert_int_equal(store_train_pending(fx->st, 10, &jobs, &nj, &err), 0);
	assert_int_equal(nj, 1);
	assert_int_equal(jobs[0].want, STORE_LEARN_NONE);
	assert_int_equal(store_train_done(fx->st, &jobs[0], &err), 0);
	store_train_jobs_free(jobs, nj);
	assert_int_equal(store_train_count(fx->st, &n, &err), 0);
	assert_int_equal(n, 0);
	(void)a;
	/* Inside a batch, a queued job rolls back with its operation's
	 * batch only when the batch fails; here it commits. */
	assert_int_equal(store_batch_begin(fx->st, &err), 0);
	assert_int_equal(store_train_queue(fx->st, key, STORE_LEARN_SPAM, &err), 0);
	assert_int_equal(store_batch_end(fx->st, &err), 0);
	assert_int_equal(store_train_count(fx->st, &n, &err), 0);
	assert_int_equal(n, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_entry_normalize),
		cmocka_unit_test_setup_teardown(test_mailctl_entries, setup, teardown),
		cmocka_unit_test_setup_teardown(test_folder_entries, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keys_and_verdict, setup, teardown),
		cmocka_unit_test_setup_teardown(test_training_queue, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
