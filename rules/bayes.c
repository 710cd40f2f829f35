/*
 * bayes.c - the Bayesian classifier: token counts in SQLite, learning
 * and forgetting by message key, Robinson's f(w) and Fisher's
 * chi-square combining as SpamAssassin (Bayes + CombineChi) and
 * bogofilter do.
 *
 * One SQLite file per database (a user's, the site's), schema version in
 * PRAGMA user_version:
 *
 *   tokens(h, spam, ham)     h the token's 64-bit hash as the rowid: the
 *                            table is its own index, looked up in order
 *   vars(nspam, nham)        messages learned per class (one row)
 *   learned(key, class, tokens, at)
 *                            what each message was learned as, with the
 *                            hashes learned (8 octets each, little
 *                            endian), so forgetting or moving it later
 *                            needs no message, and learning it twice
 *                            counts once
 *
 * WAL with synchronous=NORMAL: a learn lost in a power cut is acceptable
 * (this is not mail), a torn one is not, and SQLite's transactions see
 * to that.  Every learn is one transaction (BEGIN IMMEDIATE, so that two
 * processes learning at once queue behind the busy timeout instead of
 * failing on a lock upgrade), or a savepoint inside a batch.  Counts are
 * clamped at 0 in SQL and a token whose counts both reach 0 is deleted.
 *
 * Classification reads in one read transaction (one WAL snapshot): vars,
 * then each token of the message, in the tokens' sorted order so that
 * the B-tree pages are visited in order.  The file is memory-mapped for
 * reading: warm lookups cost no system call, and the pages are shared by
 * every handle and process.
 */
#include "rules/rules-private.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BAYES_SCHEMA_VERSION 2
#define BAYES_BUSY_TIMEOUT_MS 10000
#define BAYES_CACHE_KB "2048"
#define BAYES_MMAP_SIZE "268435456"      /* address space, not memory */

static const char schema_v1[] =
	"CREATE TABLE tokens ("
	" h INTEGER PRIMARY KEY,"
	" spam INTEGER NOT NULL CHECK (spam >= 0),"
	" ham INTEGER NOT NULL CHECK (ham >= 0));"
	"CREATE TABLE vars ("
	" id INTEGER PRIMARY KEY CHECK (id = 1),"
	" nspam INTEGER NOT NULL CHECK (nspam >= 0),"
	" nham INTEGER NOT NULL CHECK (nham >= 0));"
	"INSERT INTO vars (id, nspam, nham) VALUES (1, 0, 0);"
	"CREATE TABLE learned ("
	" key TEXT PRIMARY KEY,"
	" class INTEGER NOT NULL CHECK (class IN (1, 2)),"
	" tokens BLOB NOT NULL,"
	" at INTEGER NOT NULL);";             /* when (seconds) last learned */

/* Version 2: expiry takes the least recently learned first. */
static const char schema_v2[] = "CREATE INDEX IF NOT EXISTS learned_at ON learned (at);";

enum bstmt {
	BS_BEGIN,
	BS_BEGIN_READ,
	BS_COMMIT,
	BS_ROLLBACK,
	BS_SAVEPOINT,
	BS_RELEASE,
	BS_ROLLBACK_TO,
	BS_VARS_GET,
	BS_VARS_ADD,
	BS_LEARNED_GET,
	BS_LEARNED_SET,
	BS_LEARNED_DEL,
	BS_TOK_INSERT,
	BS_TOK_UPDATE,
	BS_TOK_DROP,
	BS_TOK_GET,
	BS_TOK_COUNT,
	BS_LEARNED_OLDEST,
	BS_COUNT
};

static const char *const bstmt_sql[BS_COUNT] = {
	[BS_BEGIN] = "BEGIN IMMEDIATE",
	[BS_BEGIN_READ] = "BEGIN",
	[BS_COMMIT] = "COMMIT",
	[BS_ROLLBACK] = "ROLLBACK",
	[BS_SAVEPOINT] = "SAVEPOINT learn",
	[BS_RELEASE] = "RELEASE learn",
	[BS_ROLLBACK_TO] = "ROLLBACK TO learn",
	[BS_VARS_GET] = "SELECT nspam, nham FROM vars WHERE id = 1",
	[BS_VARS_ADD] = "UPDATE vars SET nspam = max(nspam + ?1, 0), nham = max(nham + ?2, 0)"
			" WHERE id = 1",
	[BS_LEARNED_GET] = "SELECT class, tokens FROM learned WHERE key = ?1",
	[BS_LEARNED_SET] = "INSERT INTO learned (key, class, tokens, at) VALUES (?1, ?2, ?3, ?4)"
			   " ON CONFLICT (key) DO UPDATE SET class = excluded.class,"
			   " tokens = excluded.tokens, at = excluded.at",
	[BS_LEARNED_DEL] = "DELETE FROM learned WHERE key = ?1",
	/* ?2, ?3: the changes (-1, 0, 1).  Three single-row statements,
	 * not one upsert: SQLite gives an upsert a statement journal inside
	 * a transaction, a 64 KiB allocation per token (and glibc gives
	 * the memory back to the system every time). */
	[BS_TOK_INSERT] = "INSERT INTO tokens (h, spam, ham) VALUES (?1, max(?2, 0), max(?3, 0))",
	[BS_TOK_UPDATE] = "UPDATE tokens SET spam = max(spam + ?2, 0), ham = max(ham + ?3, 0)"
			  " WHERE h = ?1",
	[BS_TOK_DROP] = "DELETE FROM tokens WHERE h = ?1 AND spam + ?2 <= 0 AND ham + ?3 <= 0",
	[BS_TOK_GET] = "SELECT spam, ham FROM tokens WHERE h = ?1",
	[BS_TOK_COUNT] = "SELECT count(*) FROM tokens",
	[BS_LEARNED_OLDEST] = "SELECT key FROM learned ORDER BY at, rowid LIMIT 1",
};

struct bayes_db {
	sqlite3 *db;
	char *path;
	sqlite3_stmt *stmt[BS_COUNT];
	bool batch;               /* inside bayes_batch_begin/end */
	uint64_t max_learned;     /* 0: no expiry */
};

/* ------------------------------------------------------------ errors */

static int set_error(char **error_r, const char *fmt, ...) PRINTFLIKE(2, 3);
static int set_error(char **error_r, const char *fmt, ...)
{
	if (error_r != NULL) {
		va_list ap;
		va_start(ap, fmt);
		char *msg = NULL;
		if (vasprintf(&msg, fmt, ap) < 0)
			log_fatalx(NULL, "out of memory");
		va_end(ap);
		free(*error_r);
		*error_r = msg;
	}
	return -1;
}

static int db_fail(struct bayes_db *db, sqlite3_stmt *q, const char *what, char **error_r)
{
	int code = sqlite3_extended_errcode(db->db);
	set_error(error_r, "bayes %s: %s: %s", db->path, what,
		  (code & 0xff) == SQLITE_BUSY ? "database is locked (busy timeout)"
					       : sqlite3_errmsg(db->db));
	if (q != NULL)
		sqlite3_reset(q);
	return -1;
}

/* ------------------------------------------------------------ statements */

static sqlite3_stmt *stmt(struct bayes_db *db, enum bstmt which)
{
	sqlite3_stmt *q = db->stmt[which];
	sqlite3_reset(q);
	return q;
}

static int step_done(struct bayes_db *db, enum bstmt which, char **error_r)
{
	sqlite3_stmt *q = stmt(db, which);
	if (sqlite3_step(q) != SQLITE_DONE)
		return db_fail(db, q, bstmt_sql[which], error_r);
	sqlite3_reset(q);
	return 0;
}

static int exec(struct bayes_db *db, const char *sql, char **error_r)
{
	char *msg = NULL;
	if (sqlite3_exec(db->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		set_error(error_r, "bayes %s: %s", db->path, msg ? msg : sqlite3_errmsg(db->db));
		sqlite3_free(msg);
		return -1;
	}
	return 0;
}

static void rollback(struct bayes_db *db)
{
	if (sqlite3_get_autocommit(db->db))
		return; /* SQLite rolled back already (I/O error, full disk) */
	char *err = NULL;
	if (step_done(db, BS_ROLLBACK, &err) < 0) {
		log_warnx(NULL, "%s", err);
		free(err);
	}
}

/* ------------------------------------------------------------ open */

static int schema_setup(struct bayes_db *db, char **error_r)
{
	if (step_done(db, BS_BEGIN, error_r) < 0)
		return -1;
	sqlite3_stmt *q;
	int version = -1;
	if (sqlite3_prepare_v2(db->db, "PRAGMA user_version", -1, &q, NULL) == SQLITE_OK) {
		if (sqlite3_step(q) == SQLITE_ROW)
			version = sqlite3_column_int(q, 0);
		sqlite3_finalize(q);
	}
	if (version < 0) {
		db_fail(db, NULL, "user_version", error_r);
		goto fail;
	}
	if (version > BAYES_SCHEMA_VERSION) {
		set_error(error_r, "bayes %s: schema version %d is newer than this program (%d)",
			  db->path, version, BAYES_SCHEMA_VERSION);
		goto fail;
	}
	if (version < BAYES_SCHEMA_VERSION) {
		char *sql = xasprintf("%s%sPRAGMA user_version = %d;", version < 1 ? schema_v1 : "",
				      schema_v2, BAYES_SCHEMA_VERSION);
		int r = exec(db, sql, error_r);
		free(sql);
		if (r < 0)
			goto fail;
	}
	if (step_done(db, BS_COMMIT, error_r) < 0)
		goto fail;
	return 0;
fail:
	rollback(db);
	return -1;
}

static int set_wal(struct bayes_db *db, char **error_r)
{
	const char *why = NULL;
	if (sqlite_set_wal(db->db, BAYES_BUSY_TIMEOUT_MS, &why) == 0)
		return 0;
	return set_error(error_r, "bayes %s: journal_mode=WAL: %s", db->path, why);
}

int bayes_open(const char *path, unsigned flags, struct bayes_db **db_r, char **error_r)
{
	*db_r = NULL;
	bool create = (flags & BAYES_CREATE) != 0;
	struct stat st;
	if (!create && stat(path, &st) < 0 && errno == ENOENT)
		return 0;
	struct bayes_db *db = xcalloc(1, sizeof(*db));
	db->path = xstrdup(path);
	int rc = sqlite3_open_v2(path, &db->db,
				 SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0) |
					 SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE,
				 NULL);
	if (rc != SQLITE_OK) {
		/* removed between the stat and the open: missing */
		bool gone = !create && (rc & 0xff) == SQLITE_CANTOPEN && stat(path, &st) < 0 &&
			    errno == ENOENT;
		if (!gone)
			set_error(error_r, "bayes %s: %s", path,
				  db->db ? sqlite3_errmsg(db->db) : sqlite3_errstr(rc));
		bayes_close(&db);
		return gone ? 0 : -1;
	}
	/* A process may hold many databases open (one per user): small
	 * lookaside buffers and page cache; the mmap'ed file is the cache
	 * that matters, shared by all of them. */
	sqlite3_db_config(db->db, SQLITE_DBCONFIG_LOOKASIDE, NULL, 128, 64);
	sqlite3_busy_timeout(db->db, BAYES_BUSY_TIMEOUT_MS);
	if (set_wal(db, error_r) < 0 ||
	    exec(db, "PRAGMA synchronous=NORMAL; PRAGMA cache_size=-" BAYES_CACHE_KB ";"
		     " PRAGMA mmap_size=" BAYES_MMAP_SIZE ";", error_r) < 0)
		goto fail;
	for (int i = 0; i <= BS_ROLLBACK_TO; i++) /* the rest need the tables */
		if (sqlite3_prepare_v3(db->db, bstmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
				       &db->stmt[i], NULL) != SQLITE_OK) {
			db_fail(db, NULL, bstmt_sql[i], error_r);
			goto fail;
		}
	if (schema_setup(db, error_r) < 0)
		goto fail;
	for (int i = BS_ROLLBACK_TO + 1; i < BS_COUNT; i++)
		if (sqlite3_prepare_v3(db->db, bstmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
				       &db->stmt[i], NULL) != SQLITE_OK) {
			/* an SQLite file that is not ours */
			db_fail(db, NULL, bstmt_sql[i], error_r);
			goto fail;
		}
	*db_r = db;
	return 1;
fail:
	bayes_close(&db);
	return -1;
}

void bayes_close(struct bayes_db **dbp)
{
	struct bayes_db *db = *dbp;
	if (db == NULL)
		return;
	if (db->db != NULL && db->batch)
		log_warnx(NULL, "bayes %s: closed inside a batch: its learning is undone", db->path);
	for (int i = 0; i < BS_COUNT; i++)
		sqlite3_finalize(db->stmt[i]);
	if (db->db != NULL && sqlite3_close(db->db) != SQLITE_OK)
		log_warnx(NULL, "bayes %s: close: %s", db->path, sqlite3_errmsg(db->db));
	free(db->path);
	free(db);
	*dbp = NULL;
}

/* ------------------------------------------------------------ counts */

static int vars_get(struct bayes_db *db, uint64_t *nspam, uint64_t *nham, char **error_r)
{
	sqlite3_stmt *q = stmt(db, BS_VARS_GET);
	int rc = sqlite3_step(q);
	if (rc == SQLITE_DONE) {
		sqlite3_reset(q);
		return set_error(error_r, "bayes %s: the vars row is missing (damaged database)",
				 db->path);
	}
	if (rc != SQLITE_ROW)
		return db_fail(db, q, "vars", error_r);
	int64_t s = sqlite3_column_int64(q, 0), h = sqlite3_column_int64(q, 1);
	sqlite3_reset(q);
	*nspam = s > 0 ? (uint64_t)s : 0;
	*nham = h > 0 ? (uint64_t)h : 0;
	return 0;
}

int bayes_stats(struct bayes_db *db, struct bayes_stats *st, char **error_r)
{
	memset(st, 0, sizeof(*st));
	bool txn = sqlite3_get_autocommit(db->db);
	if (txn && step_done(db, BS_BEGIN_READ, error_r) < 0)
		return -1;
	int r = vars_get(db, &st->nspam, &st->nham, error_r);
	if (r == 0) {
		sqlite3_stmt *q = stmt(db, BS_TOK_COUNT);
		if (sqlite3_step(q) == SQLITE_ROW) {
			st->ntokens = (uint64_t)sqlite3_column_int64(q, 0);
			sqlite3_reset(q);
		} else {
			r = db_fail(db, q, "count tokens", error_r);
		}
	}
	if (txn)
		rollback(db); /* read only: nothing to commit */
	return r;
}

/* ------------------------------------------------------------ learning */

static void blob_put(unsigned char *p, int64_t v)
{
	uint64_t u = (uint64_t)v;
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(u >> (8 * i));
}

static int64_t blob_get(const unsigned char *p)
{
	uint64_t u = 0;
	for (int i = 0; i < 8; i++)
		u |= (uint64_t)p[i] << (8 * i);
	return (int64_t)u;
}

static int learn_begin(struct bayes_db *db, char **error_r)
{
	if (!db->batch)
		return step_done(db, BS_BEGIN, error_r);
	if (sqlite3_get_autocommit(db->db))
		return set_error(error_r, "bayes %s: the batch's transaction was rolled back",
				 db->path);
	return step_done(db, BS_SAVEPOINT, error_r);
}

static void learn_rollback(struct bayes_db *db);

static int learn_commit(struct bayes_db *db, char **error_r)
{
	if (step_done(db, db->batch ? BS_RELEASE : BS_COMMIT, error_r) < 0) {
		learn_rollback(db);
		return -1;
	}
	return 0;
}

static void learn_rollback(struct bayes_db *db)
{
	if (!db->batch) {
		rollback(db);
		return;
	}
	if (sqlite3_get_autocommit(db->db))
		return;
	char *err = NULL;
	if (step_done(db, BS_ROLLBACK_TO, &err) < 0 || step_done(db, BS_RELEASE, &err) < 0) {
		log_warnx(NULL, "%s", err);
		free(err);
	}
}

/* One of the token statements for h, ds, dh: the rows it changed, or -1. */
static int token_step(struct bayes_db *db, enum bstmt which, int64_t h, int ds, int dh,
		      char **error_r)
{
	sqlite3_stmt *q = stmt(db, which);
	sqlite3_bind_int64(q, 1, h);
	sqlite3_bind_int(q, 2, ds);
	sqlite3_bind_int(q, 3, dh);
	if (sqlite3_step(q) != SQLITE_DONE)
		return db_fail(db, q, bstmt_sql[which], error_r);
	sqlite3_reset(q);
	return sqlite3_changes(db->db);
}

/* Add ds, dh (-1, 0, 1) to the counts of token h; a token left with
 * nothing is deleted, one never seen is not created by an unlearn. */
static int token_add(struct bayes_db *db, int64_t h, int ds, int dh, char **error_r)
{
	int r = 0;
	if (ds < 0 || dh < 0)
		r = token_step(db, BS_TOK_DROP, h, ds, dh, error_r);
	if (r == 0)
		r = token_step(db, BS_TOK_UPDATE, h, ds, dh, error_r);
	if (r == 0 && (ds > 0 || dh > 0))
		r = token_step(db, BS_TOK_INSERT, h, ds, dh, error_r);
	return r < 0 ? -1 : 0;
}

/* Unlearn old (as oldc) and learn new (as newc) in one pass over the
 * union of the two sorted lists: a token in both, moved from one class
 * to the other, is one update. */
static int tokens_apply(struct bayes_db *db, const struct bayes_tokens *old, enum bayes_class oldc,
			const struct bayes_tokens *new, enum bayes_class newc, char **error_r)
{
	size_t i = 0, j = 0, no = old ? old->n : 0, nn = new ? new->n : 0;
	while (i < no || j < nn) {
		int64_t h;
		bool in_old = false, in_new = false;
		if (j >= nn || (i < no && old->h[i] < new->h[j])) {
			h = old->h[i++];
			in_old = true;
		} else if (i >= no || new->h[j] < old->h[i]) {
			h = new->h[j++];
			in_new = true;
		} else {
			h = old->h[i++];
			j++;
			in_old = in_new = true;
		}
		int ds = (in_new && newc == BAYES_SPAM) - (in_old && oldc == BAYES_SPAM);
		int dh = (in_new && newc == BAYES_HAM) - (in_old && oldc == BAYES_HAM);
		if ((ds || dh) && token_add(db, h, ds, dh, error_r) < 0)
			return -1;
	}
	return 0;
}

static int learned_set(struct bayes_db *db, const char *key, enum bayes_class cls,
		       const struct bayes_tokens *t, char **error_r)
{
	sqlite3_stmt *q;
	if (cls == BAYES_NONE) {
		q = stmt(db, BS_LEARNED_DEL);
		sqlite3_bind_text(q, 1, key, -1, SQLITE_STATIC);
	} else {
		unsigned char *blob = xmalloc(t->n ? t->n * 8 : 1);
		for (size_t i = 0; i < t->n; i++)
			blob_put(blob + 8 * i, t->h[i]);
		q = stmt(db, BS_LEARNED_SET);
		sqlite3_bind_text(q, 1, key, -1, SQLITE_STATIC);
		sqlite3_bind_int(q, 2, (int)cls);
		sqlite3_bind_blob(q, 3, blob, (int)(t->n * 8), free);
		sqlite3_bind_int64(q, 4, (int64_t)time(NULL));
	}
	int rc = sqlite3_step(q);
	sqlite3_clear_bindings(q); /* the blob is freed now, not at the next use */
	if (rc != SQLITE_DONE)
		return db_fail(db, q, "learned", error_r);
	sqlite3_reset(q);
	return 0;
}

/* What key is learned as, and (when kept_r) its tokens; LEARNED_DAMAGED
 * (< 0, like any error) when its record cannot be read back. */
#define LEARNED_DAMAGED (-2)
static int learned_get(struct bayes_db *db, const char *key, enum bayes_class *cls_r,
		       struct bayes_tokens **kept_r, char **error_r)
{
	*cls_r = BAYES_NONE;
	sqlite3_stmt *q = stmt(db, BS_LEARNED_GET);
	sqlite3_bind_text(q, 1, key, -1, SQLITE_STATIC);
	int rc = sqlite3_step(q);
	if (rc == SQLITE_DONE) {
		sqlite3_reset(q);
		return 0;
	}
	if (rc != SQLITE_ROW)
		return db_fail(db, q, "learned lookup", error_r);
	int cls = sqlite3_column_int(q, 0);
	const unsigned char *blob = sqlite3_column_blob(q, 1);
	size_t len = (size_t)sqlite3_column_bytes(q, 1);
	if ((cls != BAYES_SPAM && cls != BAYES_HAM) || len % 8 != 0 ||
	    len / 8 > BAYES_TOKENS_MAX) {
		sqlite3_reset(q);
		set_error(error_r, "bayes %s: the learned record of %s is damaged", db->path,
			  log_str(key));
		return LEARNED_DAMAGED;
	}
	*cls_r = (enum bayes_class)cls;
	if (kept_r != NULL) {
		int64_t *h = xmalloc(len ? len : 1);
		for (size_t i = 0; i < len / 8; i++)
			h[i] = blob_get(blob + 8 * i);
		*kept_r = bayes_tokens_from(h, len / 8);
		free(h);
	}
	sqlite3_reset(q);
	return 0;
}

int bayes_learned(struct bayes_db *db, const char *key, enum bayes_class *cls_r, char **error_r)
{
	*cls_r = BAYES_NONE;
	if (key == NULL || *key == '\0')
		return set_error(error_r, "bayes: empty message key");
	return learned_get(db, key, cls_r, NULL, error_r) < 0 ? -1 : 0;
}

/* key, learned as old with the tokens kept, becomes learned as cls with
 * the tokens learn (BAYES_NONE: forgotten): the tokens' counts, the
 * message counts and the learned record, inside the caller's transaction. */
static int relearn(struct bayes_db *db, const char *key, enum bayes_class old,
		   const struct bayes_tokens *kept, enum bayes_class cls,
		   const struct bayes_tokens *learn, char **error_r)
{
	if (tokens_apply(db, kept, old, learn, cls, error_r) < 0)
		return -1;
	sqlite3_stmt *q = stmt(db, BS_VARS_ADD);
	sqlite3_bind_int(q, 1, (cls == BAYES_SPAM) - (old == BAYES_SPAM));
	sqlite3_bind_int(q, 2, (cls == BAYES_HAM) - (old == BAYES_HAM));
	if (sqlite3_step(q) != SQLITE_DONE)
		return db_fail(db, q, "vars update", error_r);
	sqlite3_reset(q);
	return learned_set(db, key, cls, learn, error_r);
}

void bayes_set_max_learned(struct bayes_db *db, uint64_t max)
{
	db->max_learned = max;
}

/* Past max_learned messages, forget the least recently learned ones, as
 * if they were unlearned (their tokens' counts go down, tokens left with
 * nothing go): the counts stay those of the messages kept.  At most two
 * per new message, so that a learn costs about the same at the limit and
 * a lowered limit is reached gradually. */
static int expire(struct bayes_db *db, char **error_r)
{
	for (int k = 0; k < 2; k++) {
		uint64_t nspam, nham;
		if (vars_get(db, &nspam, &nham, error_r) < 0)
			return -1;
		if (nspam + nham <= db->max_learned)
			return 0;
		sqlite3_stmt *q = stmt(db, BS_LEARNED_OLDEST);
		int rc = sqlite3_step(q);
		if (rc == SQLITE_DONE) {
			sqlite3_reset(q);
			return 0;
		}
		if (rc != SQLITE_ROW)
			return db_fail(db, q, "oldest learned", error_r);
		const char *k = (const char *)sqlite3_column_text(q, 0);
		char *key = xstrdup(k ? k : "");
		sqlite3_reset(q);
		enum bayes_class old;
		struct bayes_tokens *kept = NULL;
		char *err = NULL;
		int r = learned_get(db, key, &old, &kept, &err);
		if (r == 0) {
			r = relearn(db, key, old, kept, BAYES_NONE, NULL, error_r);
		} else if (r == LEARNED_DAMAGED) {
			/* Its counts cannot be taken back; the record goes, so
			 * that one bad row does not stop all learning. */
			log_warnx(NULL, "%s; expired without unlearning", err);
			sqlite3_stmt *d = stmt(db, BS_LEARNED_DEL);
			sqlite3_bind_text(d, 1, key, -1, SQLITE_STATIC);
			r = sqlite3_step(d) == SQLITE_DONE ? 0 : db_fail(db, d, "learned", error_r);
			sqlite3_reset(d);
		} else {
			if (error_r != NULL)
				*error_r = err;
			else
				free(err);
			err = NULL;
		}
		free(err);
		bayes_tokens_free(&kept);
		free(key);
		if (r < 0)
			return -1;
	}
	return 0;
}

int bayes_learn(struct bayes_db *db, const char *key, enum bayes_class cls,
		const struct bayes_tokens *t, char **error_r)
{
	if (key == NULL || *key == '\0')
		return set_error(error_r, "bayes: empty message key");
	if (cls != BAYES_NONE && cls != BAYES_SPAM && cls != BAYES_HAM)
		return set_error(error_r, "bayes: invalid class %d", (int)cls);
	if (learn_begin(db, error_r) < 0)
		return -1;
	enum bayes_class old;
	struct bayes_tokens *kept = NULL;
	int r = learned_get(db, key, &old, &kept, error_r);
	if (r == 0 && old == cls) {
		bayes_tokens_free(&kept);
		learn_rollback(db); /* nothing was written */
		return 0;
	}
	const struct bayes_tokens *learn = cls == BAYES_NONE ? NULL : t ? t : kept;
	if (r == 0 && cls != BAYES_NONE && learn == NULL)
		r = set_error(error_r, "bayes %s: %s is not learned yet: its tokens are needed",
			      db->path, log_str(key));
	if (r == 0)
		r = relearn(db, key, old, kept, cls, learn, error_r);
	bayes_tokens_free(&kept);
	if (r == 0 && old == BAYES_NONE && cls != BAYES_NONE && db->max_learned > 0)
		r = expire(db, error_r);
	if (r == 0)
		return learn_commit(db, error_r) < 0 ? -1 : 1;
	learn_rollback(db);
	return -1;
}

int bayes_batch_begin(struct bayes_db *db, char **error_r)
{
	if (db->batch)
		return set_error(error_r, "bayes %s: already in a batch", db->path);
	if (step_done(db, BS_BEGIN, error_r) < 0)
		return -1;
	db->batch = true;
	return 0;
}

int bayes_batch_end(struct bayes_db *db, char **error_r)
{
	if (!db->batch)
		return set_error(error_r, "bayes %s: not in a batch", db->path);
	db->batch = false;
	if (sqlite3_get_autocommit(db->db))
		return set_error(error_r, "bayes %s: the batch's transaction was rolled back",
				 db->path);
	if (step_done(db, BS_COMMIT, error_r) < 0) {
		rollback(db);
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------ scoring */

/* f(w) of the message's tokens that db knows and that say something. */
static int token_probs(struct bayes_db *db, const struct bayes_tokens *t, uint64_t nspam,
		       uint64_t nham, double *f, size_t *nf, char **error_r)
{
	sqlite3_stmt *q = db->stmt[BS_TOK_GET];
	*nf = 0;
	for (size_t i = 0; i < t->n; i++) {
		sqlite3_bind_int64(q, 1, t->h[i]);
		int rc = sqlite3_step(q);
		if (rc == SQLITE_ROW) {
			int64_t s = sqlite3_column_int64(q, 0), h = sqlite3_column_int64(q, 1);
			double fw = bayes_robinson(s > 0 ? (uint64_t)s : 0, h > 0 ? (uint64_t)h : 0,
						   nspam, nham);
			if (bayes_strength(fw) >= BAYES_MIN_STRENGTH)
				f[(*nf)++] = fw;
		} else if (rc != SQLITE_DONE) {
			return db_fail(db, q, "token lookup", error_r);
		}
		sqlite3_reset(q);
	}
	return 0;
}

/* 1 with *p_r when db has learned enough, 0 when not, -1. */
static int classify_one(struct bayes_db *db, uint64_t min_learned, const struct bayes_tokens *t,
			double *p_r, char **error_r)
{
	bool txn = sqlite3_get_autocommit(db->db);
	if (txn && step_done(db, BS_BEGIN_READ, error_r) < 0)
		return -1;
	uint64_t nspam, nham;
	int r = vars_get(db, &nspam, &nham, error_r);
	if (r == 0 && nspam >= min_learned && nham >= min_learned) {
		double *f = xmalloc((t->n ? t->n : 1) * sizeof(*f));
		size_t nf;
		r = token_probs(db, t, nspam, nham, f, &nf, error_r);
		if (r == 0) {
			if (nf > BAYES_SIGNIFICANT) {
				bayes_strongest(f, nf, BAYES_SIGNIFICANT);
				nf = BAYES_SIGNIFICANT;
			}
			*p_r = bayes_combine(f, nf);
			r = 1;
		}
		free(f);
	}
	if (txn)
		rollback(db); /* read only: ends the snapshot */
	return r;
}

int bayes_classify(struct bayes_db *user, struct bayes_db *site, uint64_t min_learned,
		   const struct bayes_tokens *t, double *p_r, const char **which_r, char **error_r)
{
	if (t == NULL)
		return set_error(error_r, "bayes: no tokens to classify");
	if (min_learned == 0)
		min_learned = 1; /* p(w) divides by both counts */
	struct bayes_db *dbs[2] = { user, site };
	static const char *const names[2] = { "user", "site" };
	for (int i = 0; i < 2; i++) {
		if (dbs[i] == NULL)
			continue;
		int r = classify_one(dbs[i], min_learned, t, p_r, error_r);
		if (r != 0) {
			if (r > 0 && which_r != NULL)
				*which_r = names[i];
			return r;
		}
	}
	return 0;
}
