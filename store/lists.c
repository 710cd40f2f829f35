/*
 * lists.c - a user's whitelist and blacklist, the training records, and
 * message content keys.
 *
 * The lists have two sources.  mailctl's entries live in the lists table.
 * The Whitelist and Blacklist folders make the others: every message there
 * stands for its From address (messages.sender, recorded when the message
 * arrives in any folder), so an entry exists exactly while a message of
 * that sender is in the folder, whatever client moved or expunged it, and
 * a rebuilt index rebuilds these entries from the files.
 *
 * The training records say what a message should be learned as; they are
 * written in the transaction of the move that asked for it and removed
 * once the classifier has applied it (imapd/train.c): a crash in between
 * leaves the job for the next session.
 */
#include "store/store-private.h"
#include "common/mime.h"

#include <openssl/evp.h>

#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SENDER_HEAD_MAX (64 * 1024) /* of a message file, for its From field */

const char *store_list_name(enum store_list_kind kind)
{
	return kind == STORE_WHITE ? "white" : "black";
}

/* ------------------------------------------------------------- entries */

static bool entry_char(unsigned char c)
{
	return c > ' ' && c != 0x7f && c != '<' && c != '>' && c != '(' && c != ')' && c != ',' &&
	       c != ';' && c != '"' && c != '\\' && c != '[' && c != ']';
}

bool store_list_entry_normalize(const char *in, char *out, size_t size)
{
	size_t n = strlen(in);
	if (n == 0 || n >= size || n >= STORE_ADDRESS_MAX)
		return false;
	const char *at = strrchr(in, '@');
	if (at == NULL || at[1] == '\0' || at[1] == '.' || in[n - 1] == '.' || strchr(in, '@') != at)
		return false;
	if ((size_t)(at - in) > 64)
		return false;
	for (const char *p = in; *p; p++) {
		if (!entry_char((unsigned char)*p))
			return false;
	}
	for (const char *p = at + 1; *p; p++) {
		if (p[0] == '.' && p[1] == '.')
			return false;
	}
	memcpy(out, in, n + 1);
	str_lower(out);
	return true;
}

bool store_from_address(const char *value, char *out, size_t size)
{
	char tmp[STORE_ADDRESS_MAX];
	if (!mime_first_address(value, tmp, sizeof(tmp)))
		return false;
	return store_list_entry_normalize(tmp, out, size) && out[0] != '@';
}

bool msg_sender_of_file(const char *path, char *out, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return false;
	char *head = xmalloc(SENDER_HEAD_MAX);
	ssize_t n = 0;
	while (n < SENDER_HEAD_MAX) {
		ssize_t r = read(fd, head + n, (size_t)(SENDER_HEAD_MAX - n));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		n += r;
	}
	close(fd);
	bool ok = false;
	if (n > 0) {
		struct buf v;
		buf_init(&v, SENDER_HEAD_MAX);
		if (mime_header_field(head, (size_t)n, "From", &v) && v.data != NULL)
			ok = store_from_address(v.data, out, size);
		buf_free(&v);
	}
	free(head);
	return ok;
}

static int step_done(struct store *st, sqlite3_stmt *q, const char *what, char **error_r)
{
	if (sqlite3_step(q) != SQLITE_DONE)
		return index_fail(st, q, what, error_r);
	sqlite3_reset(q);
	return 0;
}

static int list_change(struct store *st, enum store_stmt which, enum store_list_kind kind,
		       const char *entry, char **error_r)
{
	char e[STORE_ADDRESS_MAX];
	if (!store_list_entry_normalize(entry, e, sizeof(e)))
		return store_error(error_r, "not an address or @domain: %s", log_str(entry));
	/* The index runs with synchronous=NORMAL (it can be rebuilt from the
	 * files); these entries cannot, so their commit is made durable
	 * (the level cannot change inside a transaction). */
	if (index_exec(st, "PRAGMA synchronous=FULL", error_r) < 0)
		return -1;
	int r = -1, changed = 0;
	if (index_begin(st, error_r) < 0)
		goto out;
	sqlite3_stmt *q = index_stmt(st, which);
	sqlite3_bind_int(q, 1, (int)kind);
	sqlite3_bind_text(q, 2, e, -1, SQLITE_TRANSIENT);
	if (which == STMT_LIST_ADD)
		sqlite3_bind_int64(q, 3, (int64_t)time(NULL));
	if (step_done(st, q, "list", error_r) < 0) {
		index_rollback(st);
		goto out;
	}
	changed = sqlite3_changes(st->db) > 0;
	r = index_commit(st, error_r);
out:;
	char *err = NULL;
	if (index_exec(st, "PRAGMA synchronous=NORMAL", &err) < 0) {
		log_warnx(NULL, "store %s: %s", st->user, err);
		free(err);
	}
	return r < 0 ? -1 : changed;
}

int store_list_add(struct store *st, enum store_list_kind kind, const char *entry, char **error_r)
{
	return list_change(st, STMT_LIST_ADD, kind, entry, error_r);
}

int store_list_del(struct store *st, enum store_list_kind kind, const char *entry, char **error_r)
{
	return list_change(st, STMT_LIST_DEL, kind, entry, error_r);
}

/* The messages of the Whitelist and Blacklist folders whose From address
 * is not recorded (a message copied in by a client before this version,
 * say): read them now, a few at a time. */
static int fill_senders(struct store *st, char **error_r)
{
	for (int round = 0; round < 100; round++) {
		sqlite3_stmt *q = index_stmt(st, STMT_SENDER_MISSING);
		int64_t ids[100];
		uint32_t uids[100];
		size_t n = 0;
		int rc;
		while (n < 100 && (rc = sqlite3_step(q)) == SQLITE_ROW) {
			ids[n] = sqlite3_column_int64(q, 0);
			uids[n++] = (uint32_t)sqlite3_column_int64(q, 1);
		}
		if (n < 100 && rc != SQLITE_DONE)
			return index_fail(st, q, "senders", error_r);
		sqlite3_reset(q);
		if (n == 0)
			return 0;
		if (index_begin(st, error_r) < 0)
			return -1;
		for (size_t i = 0; i < n; i++) {
			struct msg_row row;
			int r = index_msg_get(st, ids[i], uids[i], &row, error_r);
			if (r < 0) {
				index_rollback(st);
				return -1;
			}
			if (r == 0)
				continue;
			char sender[STORE_ADDRESS_MAX] = "";
			char *fdir = NULL;
			sqlite3_stmt *f = index_stmt(st, STMT_FOLDER_NAME);
			sqlite3_bind_int64(f, 1, ids[i]);
			if (sqlite3_step(f) == SQLITE_ROW)
				fdir = folder_dir(st, (const char *)sqlite3_column_text(f, 0));
			sqlite3_reset(f);
			if (fdir != NULL) {
				char *fname = NULL;
				bool in_new;
				if (maildir_find(fdir, row.base, &fname, &in_new) > 0) {
					char *path = xasprintf("%s/%s/%s", fdir, in_new ? "new" : "cur", fname);
					(void)msg_sender_of_file(path, sender, sizeof(sender));
					free(path);
				}
				free(fname);
				free(fdir);
			}
			msg_row_free(&row);
			/* "" marks a message without a usable From: not read again. */
			q = index_stmt(st, STMT_MSG_SET_SENDER);
			sqlite3_bind_int64(q, 1, ids[i]);
			sqlite3_bind_int64(q, 2, uids[i]);
			sqlite3_bind_text(q, 3, sender, -1, SQLITE_TRANSIENT);
			if (step_done(st, q, "set sender", error_r) < 0) {
				index_rollback(st);
				return -1;
			}
		}
		if (index_commit(st, error_r) < 0)
			return -1;
	}
	return 0;
}

int store_list_each(struct store *st, int (*cb)(const struct store_list_entry *e, void *arg),
		    void *arg, char **error_r)
{
	if (fill_senders(st, error_r) < 0)
		return -1;
	/* Both sources, merged: [kind, entry] -> sources, messages. */
	struct item {
		enum store_list_kind kind;
		char *entry;
		unsigned sources, messages;
	} *v = NULL;
	size_t n = 0, cap = 0;
	sqlite3_stmt *q = index_stmt(st, STMT_LIST_ALL);
	int rc;
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		if (n == cap)
			v = xrealloc(v, (cap = cap ? 2 * cap : 16) * sizeof(*v));
		v[n++] = (struct item){ .kind = sqlite3_column_int(q, 0) == STORE_WHITE ? STORE_WHITE
										 : STORE_BLACK,
					.entry = xstrdup((const char *)sqlite3_column_text(q, 1)),
					.sources = STORE_FROM_MAILCTL };
	}
	int ret = 0;
	if (rc != SQLITE_DONE)
		ret = index_fail(st, q, "list", error_r);
	sqlite3_reset(q);
	if (ret == 0) {
		size_t nmailctl = n;
		q = index_stmt(st, STMT_SENDER_ALL);
		while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
			const char *folder = (const char *)sqlite3_column_text(q, 0);
			const char *sender = (const char *)sqlite3_column_text(q, 1);
			if (sender == NULL || *sender == '\0')
				continue;
			enum store_list_kind kind = strcmp(folder, "Whitelist") == 0 ? STORE_WHITE
										    : STORE_BLACK;
			unsigned count = (unsigned)sqlite3_column_int64(q, 2);
			size_t k = 0;
			while (k < nmailctl && !(v[k].kind == kind && strcmp(v[k].entry, sender) == 0))
				k++;
			if (k < nmailctl) {
				v[k].sources |= STORE_FROM_FOLDER;
				v[k].messages = count;
				continue;
			}
			if (n == cap)
				v = xrealloc(v, (cap = cap ? 2 * cap : 16) * sizeof(*v));
			v[n++] = (struct item){ .kind = kind,
						.entry = xstrdup(sender),
						.sources = STORE_FROM_FOLDER,
						.messages = count };
		}
		if (rc != SQLITE_DONE)
			ret = index_fail(st, q, "list", error_r);
		sqlite3_reset(q);
	}
	/* White before black, then by entry. */
	for (size_t i = 1; i < n; i++) {
		struct item t = v[i];
		size_t j = i;
		while (j > 0 && (v[j - 1].kind > t.kind ||
				 (v[j - 1].kind == t.kind && strcmp(v[j - 1].entry, t.entry) > 0))) {
			v[j] = v[j - 1];
			j--;
		}
		v[j] = t;
	}
	for (size_t i = 0; i < n; i++) {
		if (ret == 0) {
			struct store_list_entry e = { .kind = v[i].kind,
						      .entry = v[i].entry,
						      .sources = v[i].sources,
						      .messages = v[i].messages };
			ret = cb(&e, arg);
		}
		free(v[i].entry);
	}
	free(v);
	return ret;
}

/* The lists entry is on: a STORE_WHITE | STORE_BLACK mask, or -1. */
static int entry_lists(struct store *st, const char *entry, bool folders, char **error_r)
{
	int mask = 0, rc;
	sqlite3_stmt *q = index_stmt(st, STMT_LIST_MATCH);
	sqlite3_bind_text(q, 1, entry, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(q)) == SQLITE_ROW)
		mask |= sqlite3_column_int(q, 0) == STORE_WHITE ? STORE_WHITE : STORE_BLACK;
	if (rc != SQLITE_DONE)
		return index_fail(st, q, "list match", error_r);
	sqlite3_reset(q);
	if (!folders)
		return mask;
	q = index_stmt(st, STMT_SENDER_MATCH);
	sqlite3_bind_text(q, 1, entry, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		const char *f = (const char *)sqlite3_column_text(q, 0);
		mask |= f && strcmp(f, "Whitelist") == 0 ? STORE_WHITE : STORE_BLACK;
	}
	if (rc != SQLITE_DONE)
		return index_fail(st, q, "list match", error_r);
	sqlite3_reset(q);
	return mask;
}

int store_list_match(struct store *st, const char *addr, enum store_list_kind *kind_r,
		     char *entry_r, size_t size, char **error_r)
{
	char a[STORE_ADDRESS_MAX];
	if (!store_list_entry_normalize(addr, a, sizeof(a)) || a[0] == '@')
		return 0;
	const char *at = strrchr(a, '@');
	const char *cand[2] = { a, at };
	for (size_t i = 0; i < 2; i++) {
		int mask = entry_lists(st, cand[i], i == 0, error_r);
		if (mask < 0)
			return -1;
		if (mask == 0)
			continue;
		*kind_r = (mask & STORE_BLACK) ? STORE_BLACK : STORE_WHITE;
		if (entry_r != NULL)
			str_copy(entry_r, cand[i], size);
		return 1;
	}
	return 0;
}

/* ------------------------------------------------------------ training */

int64_t train_stamp(void)
{
	/* queued orders the jobs and tells a job applied from one queued
	 * again meanwhile: microseconds, strictly increasing in the process. */
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	static int64_t last;
	pthread_mutex_lock(&lock);
	int64_t now = clock_real_us();
	if (now <= last)
		now = last + 1;
	last = now;
	pthread_mutex_unlock(&lock);
	return now;
}

int store_train_queue(struct store *st, const char *msgkey, enum store_learn want,
		      char **error_r)
{
	int64_t now = train_stamp();
	if (index_op_begin(st, error_r) < 0)
		return -1;
	sqlite3_stmt *q = index_stmt(st, STMT_TRAIN_SET);
	sqlite3_bind_text(q, 1, msgkey, -1, SQLITE_STATIC);
	sqlite3_bind_int(q, 2, (int)want);
	sqlite3_bind_int64(q, 3, now);
	if (step_done(st, q, "training queue", error_r) < 0) {
		index_op_rollback(st);
		return -1;
	}
	return index_op_commit(st, error_r);
}

int store_train_pending(struct store *st, size_t max, struct store_train_job **jobs_r,
			size_t *n_r, char **error_r)
{
	*jobs_r = NULL;
	*n_r = 0;
	struct store_train_job *v = NULL;
	size_t n = 0, cap = 0;
	sqlite3_stmt *q = index_stmt(st, STMT_TRAIN_ALL);
	sqlite3_bind_int64(q, 1, (int64_t)max);
	int rc;
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		if (n == cap)
			v = xrealloc(v, (cap = cap ? 2 * cap : 16) * sizeof(*v));
		int want = sqlite3_column_int(q, 1);
		v[n++] = (struct store_train_job){
			.msgkey = xstrdup((const char *)sqlite3_column_text(q, 0)),
			.want = want == STORE_LEARN_SPAM ? STORE_LEARN_SPAM
				: want == STORE_LEARN_HAM ? STORE_LEARN_HAM
							  : STORE_LEARN_NONE,
			.queued = sqlite3_column_int64(q, 2),
		};
	}
	if (rc != SQLITE_DONE) {
		store_train_jobs_free(v, n);
		return index_fail(st, q, "training jobs", error_r);
	}
	sqlite3_reset(q);
	*jobs_r = v;
	*n_r = n;
	return 0;
}

void store_train_jobs_free(struct store_train_job *jobs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(jobs[i].msgkey);
	free(jobs);
}

int store_train_done(struct store *st, const struct store_train_job *job, char **error_r)
{
	if (index_begin(st, error_r) < 0)
		return -1;
	sqlite3_stmt *q = index_stmt(st, STMT_TRAIN_DONE);
	sqlite3_bind_text(q, 1, job->msgkey, -1, SQLITE_STATIC);
	sqlite3_bind_int(q, 2, (int)job->want);
	sqlite3_bind_int64(q, 3, job->queued);
	if (step_done(st, q, "training done", error_r) < 0)
		goto fail;
	if (sqlite3_changes(st->db) > 0) {
		q = index_stmt(st, STMT_KEY_SET_LEARNED);
		sqlite3_bind_text(q, 1, job->msgkey, -1, SQLITE_STATIC);
		if (job->want != STORE_LEARN_NONE)
			sqlite3_bind_text(q, 2, job->want == STORE_LEARN_SPAM ? "spam" : "ham", -1,
					  SQLITE_STATIC);
		if (step_done(st, q, "learned", error_r) < 0)
			goto fail;
	}
	return index_commit(st, error_r);
fail:
	index_rollback(st);
	return -1;
}

int store_train_count(struct store *st, uint64_t *n_r, char **error_r)
{
	sqlite3_stmt *q = index_stmt(st, STMT_TRAIN_COUNT);
	if (sqlite3_step(q) != SQLITE_ROW)
		return index_fail(st, q, "training count", error_r);
	*n_r = (uint64_t)sqlite3_column_int64(q, 0);
	sqlite3_reset(q);
	return 0;
}

/* ---------------------------------------------------------------- keys */

void msgkey_format(const unsigned char *md, unsigned n, char key[STORE_MSGKEY_SIZE])
{
	static const char hex[] = "0123456789abcdef";
	unsigned k = (STORE_MSGKEY_SIZE - 1) / 2;
	if (n < k)
		k = n;
	for (unsigned i = 0; i < k; i++) {
		key[2 * i] = hex[md[i] >> 4];
		key[2 * i + 1] = hex[md[i] & 15];
	}
	key[2 * k] = '\0';
}

void store_msgkey_of(const void *data, size_t len, char key_r[STORE_MSGKEY_SIZE])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned n = 0;
	if (EVP_Digest(data, len, md, &n, EVP_sha256(), NULL) != 1)
		log_fatalx(NULL, "store: SHA-256 failed");
	msgkey_format(md, n, key_r);
}

bool msgkey_of_file(const char *path, char key[STORE_MSGKEY_SIZE])
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return false;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	bool ok = md != NULL && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1;
	char *buf = xmalloc(65536);
	for (;;) {
		ssize_t n = read(fd, buf, 65536);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			ok = ok && n == 0;
			break;
		}
		ok = ok && EVP_DigestUpdate(md, buf, (size_t)n) == 1;
	}
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned dn = 0;
	if (ok && EVP_DigestFinal_ex(md, d, &dn) == 1)
		msgkey_format(d, dn, key);
	else
		ok = false;
	EVP_MD_CTX_free(md);
	free(buf);
	close(fd);
	return ok;
}

int msgkey_verdict(struct store *st, const char *msgkey, char **verdict_r, double *score_r,
		   char **error_r)
{
	*verdict_r = NULL;
	if (msgkey == NULL)
		return 0;
	sqlite3_stmt *q = index_stmt(st, STMT_KEY_VERDICT);
	sqlite3_bind_text(q, 1, msgkey, -1, SQLITE_STATIC);
	int rc = sqlite3_step(q);
	if (rc == SQLITE_ROW) {
		*verdict_r = xstrdup((const char *)sqlite3_column_text(q, 0));
		*score_r = sqlite3_column_double(q, 1);
	} else if (rc != SQLITE_DONE) {
		return index_fail(st, q, "verdict of a copy", error_r);
	}
	sqlite3_reset(q);
	return 0;
}

int store_msgkey_find(struct store *st, const char *msgkey, char **folder_r, uint32_t *uid_r,
		      char **error_r)
{
	*folder_r = NULL;
	sqlite3_stmt *q = index_stmt(st, STMT_KEY_FIND);
	sqlite3_bind_text(q, 1, msgkey, -1, SQLITE_STATIC);
	int rc = sqlite3_step(q);
	if (rc == SQLITE_DONE) {
		sqlite3_reset(q);
		return 0;
	}
	if (rc != SQLITE_ROW)
		return index_fail(st, q, "message by key", error_r);
	*folder_r = xstrdup((const char *)sqlite3_column_text(q, 0));
	*uid_r = (uint32_t)sqlite3_column_int64(q, 1);
	sqlite3_reset(q);
	return 1;
}

int store_msgkey_get(struct store *st, const char *folder, uint32_t uid,
		     char key_r[STORE_MSGKEY_SIZE], char **error_r)
{
	struct folder_row frow;
	if (index_folder_find(st, folder, &frow, error_r) < 0)
		return -1;
	struct msg_row row;
	int r = index_msg_get(st, frow.id, uid, &row, error_r);
	if (r == 0)
		store_error(error_r, "no such message: %s UID %u", log_str(frow.name), uid);
	if (r <= 0) {
		folder_row_free(&frow);
		return -1;
	}
	int ret = 0;
	if (row.msgkey != NULL) {
		str_copy(key_r, row.msgkey, STORE_MSGKEY_SIZE);
	} else {
		char *fdir = folder_dir(st, frow.name), *fname = NULL;
		bool in_new;
		ret = -1;
		if (maildir_find(fdir, row.base, &fname, &in_new) > 0) {
			char *path = xasprintf("%s/%s/%s", fdir, in_new ? "new" : "cur", fname);
			if (msgkey_of_file(path, key_r))
				ret = 0;
			free(path);
		}
		free(fname);
		free(fdir);
		if (ret < 0) {
			store_error(error_r, "message file vanished: %s UID %u", log_str(frow.name), uid);
		} else {
			sqlite3_stmt *q = index_stmt(st, STMT_MSG_SET_KEY);
			sqlite3_bind_int64(q, 1, frow.id);
			sqlite3_bind_int64(q, 2, uid);
			sqlite3_bind_text(q, 3, key_r, -1, SQLITE_STATIC);
			/* Best effort: the key can always be computed again. */
			if (sqlite3_step(q) != SQLITE_DONE)
				log_warnx(NULL, "store %s: recording a message key: %s", st->user,
					  sqlite3_errmsg(st->db));
			sqlite3_reset(q);
		}
	}
	msg_row_free(&row);
	folder_row_free(&frow);
	return ret;
}
