/*
 * index.c - the SQLite index of a store: schema (versioned in PRAGMA
 * user_version), the statements prepared once per store, transactions,
 * and the small row-level operations the rest of the library composes.
 *
 * The database runs in WAL mode with synchronous=NORMAL: the message files
 * are the durable truth (fsynced before a delivery is acknowledged) and
 * the index can be rebuilt from them by the recovery scan.
 */
#include "store/store-private.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* A new database is created at the current version directly. */
static const char schema_v2[] =
	"CREATE TABLE folders ("
	" id INTEGER PRIMARY KEY AUTOINCREMENT,"
	" name TEXT NOT NULL UNIQUE,"
	" uidvalidity INTEGER NOT NULL,"
	" uidnext INTEGER NOT NULL,"
	" highestmodseq INTEGER NOT NULL,"
	" subscribed INTEGER NOT NULL DEFAULT 0,"
	" recent INTEGER NOT NULL DEFAULT 1);"     /* the \Recent mark (store_claim_recent) */
	"CREATE TABLE messages ("
	" folder INTEGER NOT NULL REFERENCES folders(id) ON DELETE CASCADE,"
	" uid INTEGER NOT NULL,"
	" filename TEXT NOT NULL,"           /* base: the part before ":2," */
	" in_new INTEGER NOT NULL,"          /* 1: new/BASE, 0: cur/BASE:2,FLAGS */
	" flags INTEGER NOT NULL,"           /* enum store_flag */
	" xflags TEXT NOT NULL DEFAULT '',"  /* other info letters (keyword letters too) */
	" keywords TEXT NOT NULL DEFAULT '',"/* IMAP keywords, normalised (kw_normalize) */
	" modseq INTEGER NOT NULL,"
	" size INTEGER NOT NULL,"
	" vsize INTEGER NOT NULL,"
	" internaldate INTEGER NOT NULL,"
	" verdict TEXT,"
	" score REAL NOT NULL DEFAULT 0,"
	" learned TEXT,"
	" PRIMARY KEY (folder, uid),"
	" UNIQUE (folder, filename)"
	") WITHOUT ROWID;"
	"CREATE INDEX messages_modseq ON messages (folder, modseq);"
	"CREATE INDEX messages_keywords ON messages (folder, keywords) WHERE keywords <> '';"
	/* A rowid table: its rows can be kilobytes. */
	"CREATE TABLE msgcache ("
	" folder INTEGER NOT NULL,"
	" uid INTEGER NOT NULL,"
	" envelope TEXT,"
	" body TEXT,"
	" bodystructure TEXT,"
	" PRIMARY KEY (folder, uid),"
	" FOREIGN KEY (folder, uid) REFERENCES messages (folder, uid) ON DELETE CASCADE);"
	"CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER);";

/* Version 2 to 3: training by moving mail.  msgkey identifies a message
 * by its content (copies share it: the classifier learns a message once);
 * sender is its From address (the entries of the Whitelist and Blacklist
 * folders); lists holds the entries added with mailctl; training the
 * learning still to be applied (imapd works through it after each
 * command). */
static const char migrate_v2_v3[] =
	"ALTER TABLE messages ADD COLUMN msgkey TEXT;"
	"ALTER TABLE messages ADD COLUMN sender TEXT;"
	"CREATE INDEX messages_msgkey ON messages (msgkey) WHERE msgkey IS NOT NULL;"
	"CREATE INDEX messages_sender ON messages (sender, folder) WHERE sender IS NOT NULL;"
	"CREATE TABLE lists ("
	" kind INTEGER NOT NULL,"            /* enum store_list_kind */
	" entry TEXT NOT NULL,"              /* local@domain or @domain, lower case */
	" created INTEGER NOT NULL,"
	" PRIMARY KEY (kind, entry)) WITHOUT ROWID;"
	"CREATE TABLE training ("
	" msgkey TEXT PRIMARY KEY,"
	" want INTEGER NOT NULL,"            /* enum store_learn */
	" queued INTEGER NOT NULL) WITHOUT ROWID;";

/* Version 1 (issue 2) to 2: \Recent mark, sync index, keywords index, the
 * MIME cache.  The keywords column existed already (NULL: none).  What
 * was in a folder before the upgrade is not \Recent. */
static const char migrate_v1_v2[] =
	"ALTER TABLE folders ADD COLUMN recent INTEGER NOT NULL DEFAULT 1;"
	"UPDATE folders SET recent = uidnext;"
	"CREATE INDEX messages_modseq ON messages (folder, modseq);"
	"CREATE INDEX messages_keywords ON messages (folder, keywords) WHERE keywords <> '';"
	"CREATE TABLE msgcache ("
	" folder INTEGER NOT NULL,"
	" uid INTEGER NOT NULL,"
	" envelope TEXT,"
	" body TEXT,"
	" bodystructure TEXT,"
	" PRIMARY KEY (folder, uid),"
	" FOREIGN KEY (folder, uid) REFERENCES messages (folder, uid) ON DELETE CASCADE);";

#define MSG_COLS \
	"uid, filename, in_new, flags, xflags, modseq, size, vsize, internaldate, verdict, score," \
	" coalesce(keywords, ''), msgkey, sender, learned"

static const char *const stmt_sql[STMT_COUNT] = {
	[STMT_BEGIN] = "BEGIN IMMEDIATE",
	[STMT_COMMIT] = "COMMIT",
	[STMT_SAVEPOINT] = "SAVEPOINT op",
	[STMT_RELEASE] = "RELEASE op",
	[STMT_ROLLBACK_TO] = "ROLLBACK TO op",
	[STMT_ROLLBACK] = "ROLLBACK",
	[STMT_FOLDER_GET] = "SELECT id, name, uidvalidity, uidnext, highestmodseq, subscribed"
			    " FROM folders WHERE name = ?1",
	[STMT_FOLDER_ALL] = "SELECT id, name FROM folders ORDER BY name",
	/* One pass over the messages of every folder (no work per message
	 * in C): count, \Recent, unseen. */
	[STMT_FOLDER_LIST] = "SELECT f.id, f.name, f.uidvalidity, f.uidnext, f.highestmodseq,"
			     " f.subscribed, count(m.uid),"
			     " count(m.uid) FILTER (WHERE m.uid >= f.recent),"
			     " count(m.uid) FILTER (WHERE m.flags & 1 = 0)"
			     " FROM folders f LEFT JOIN messages m ON m.folder = f.id"
			     " GROUP BY f.id ORDER BY f.name <> 'INBOX', f.name",
	[STMT_FOLDER_INSERT] = "INSERT INTO folders (name, uidvalidity, uidnext, highestmodseq,"
			       " subscribed) VALUES (?1, ?2, 1, 1, ?3)",
	[STMT_FOLDER_COUNT] = "SELECT count(m.uid), count(m.uid) FILTER (WHERE m.uid >= f.recent),"
			      " count(m.uid) FILTER (WHERE m.flags & 1 = 0)"
			      " FROM folders f LEFT JOIN messages m ON m.folder = f.id"
			      " WHERE f.id = ?1",
	[STMT_FOLDER_BUMP_UID] = "UPDATE folders SET uidnext = uidnext + 1,"
				 " highestmodseq = highestmodseq + 1 WHERE id = ?1"
				 " RETURNING uidnext - 1, highestmodseq",
	[STMT_FOLDER_BUMP_MODSEQ] = "UPDATE folders SET highestmodseq = highestmodseq + 1"
				    " WHERE id = ?1 RETURNING highestmodseq",
	[STMT_FOLDER_SET_NAME] = "UPDATE folders SET name = ?2 WHERE id = ?1",
	[STMT_FOLDER_DELETE] = "DELETE FROM folders WHERE id = ?1",
	[STMT_FOLDER_SUBSCRIBE] = "UPDATE folders SET subscribed = ?2 WHERE name = ?1",
	/* Children of ?1: names in [?1 "/", ?1 "0"), '0' being '/' + 1. */
	[STMT_FOLDER_CHILDREN] = "SELECT id, name FROM folders WHERE name >= ?1 || '/'"
				 " AND name < ?1 || '0' ORDER BY name",
	[STMT_MSG_INSERT] = "INSERT INTO messages (folder, uid, filename, in_new, flags, xflags,"
			    " modseq, size, vsize, internaldate, verdict, score, learned, keywords, msgkey,"
			    " sender)"
			    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
			    " ON CONFLICT (folder, filename) DO UPDATE SET"
			    " verdict = excluded.verdict, score = excluded.score RETURNING uid",
	[STMT_MSG_GET] = "SELECT filename, in_new, flags, xflags, modseq, size, vsize,"
			 " internaldate, verdict, score, learned, coalesce(keywords, ''), msgkey, sender"
			 " FROM messages WHERE folder = ?1 AND uid = ?2",
	[STMT_MSG_RANGE] = "SELECT " MSG_COLS " FROM messages"
			   " WHERE folder = ?1 AND uid >= ?2 AND uid <= ?3 ORDER BY uid LIMIT ?4",
	[STMT_MSG_UPDATE_FILE] = "UPDATE messages SET in_new = ?3, flags = ?4, xflags = ?5,"
				 " modseq = ?6, keywords = coalesce(?7, keywords)"
				 " WHERE folder = ?1 AND uid = ?2",
	[STMT_MSG_DELETE] = "DELETE FROM messages WHERE folder = ?1 AND uid = ?2",
	[STMT_MSG_DELETE_FOLDER] = "DELETE FROM messages WHERE folder = ?1",
	[STMT_MSG_SCAN] = "SELECT uid, filename, in_new, flags, xflags, coalesce(keywords, '')"
			  " FROM messages WHERE folder = ?1",
	[STMT_META_GET] = "SELECT value FROM meta WHERE key = ?1",
	[STMT_META_SET] = "INSERT INTO meta (key, value) VALUES (?1, ?2)"
			  " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
	[STMT_FOLDER_RECENT_GET] = "SELECT recent, uidnext FROM folders WHERE id = ?1",
	[STMT_FOLDER_RECENT_SET] = "UPDATE folders SET recent = ?2 WHERE id = ?1",
	[STMT_MSG_UIDS] = "SELECT uid FROM messages WHERE folder = ?1 ORDER BY uid",
	[STMT_MSG_FLAGS] = "SELECT uid, flags, modseq, keywords FROM messages WHERE folder = ?1"
			   " AND uid >= ?2 AND uid <= ?3 ORDER BY uid",
	/* Few rows at a sync point: the index, not a scan of the folder. */
	[STMT_MSG_CHANGED] = "SELECT uid FROM messages INDEXED BY messages_modseq"
			     " WHERE folder = ?1 AND modseq > ?2",
	[STMT_MSG_KEYWORD_SETS] = "SELECT DISTINCT keywords FROM messages"
				  " WHERE folder = ?1 AND keywords <> ''",
	/* ?2: the keyword with LIKE's '%' '_' '\' escaped by '\'. */
	[STMT_MSG_KEYWORD_USED] = "SELECT 1 FROM messages WHERE folder = ?1 AND keywords <> ''"
				  " AND ' ' || keywords || ' ' LIKE '% ' || ?2 || ' %' ESCAPE '\\'"
				  " LIMIT 1",
	[STMT_MSG_XFLAG_SETS] = "SELECT DISTINCT xflags FROM messages"
				" WHERE folder = ?1 AND xflags GLOB '*[a-z]*'",
	[STMT_CACHE_GET] = "SELECT envelope, body, bodystructure FROM msgcache"
			   " WHERE folder = ?1 AND uid = ?2",
	[STMT_CACHE_SET] = "INSERT INTO msgcache (folder, uid, envelope, body, bodystructure)"
			   " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (folder, uid) DO UPDATE SET"
			   " envelope = coalesce(excluded.envelope, envelope),"
			   " body = coalesce(excluded.body, body),"
			   " bodystructure = coalesce(excluded.bodystructure, bodystructure)",
	[STMT_FOLDER_NAME] = "SELECT name FROM folders WHERE id = ?1",
	[STMT_LIST_ADD] = "INSERT INTO lists (kind, entry, created) VALUES (?1, ?2, ?3)"
			  " ON CONFLICT (kind, entry) DO NOTHING",
	[STMT_LIST_DEL] = "DELETE FROM lists WHERE kind = ?1 AND entry = ?2",
	[STMT_LIST_ALL] = "SELECT kind, entry FROM lists ORDER BY kind, entry",
	[STMT_LIST_MATCH] = "SELECT kind FROM lists WHERE entry = ?1",
	/* The entries the Whitelist and Blacklist folders make. */
	[STMT_SENDER_MATCH] = "SELECT f.name FROM messages m JOIN folders f ON f.id = m.folder"
			      " WHERE m.sender = ?1 AND f.name IN ('Whitelist', 'Blacklist')",
	[STMT_SENDER_ALL] = "SELECT f.name, m.sender, count(*) FROM messages m"
			    " JOIN folders f ON f.id = m.folder"
			    " WHERE f.name IN ('Whitelist', 'Blacklist') AND m.sender IS NOT NULL"
			    " GROUP BY f.name, m.sender ORDER BY f.name, m.sender",
	[STMT_SENDER_MISSING] = "SELECT m.folder, m.uid FROM messages m JOIN folders f"
				" ON f.id = m.folder WHERE f.name IN ('Whitelist', 'Blacklist')"
				" AND m.sender IS NULL LIMIT 100",
	[STMT_MSG_SET_SENDER] = "UPDATE messages SET sender = ?3 WHERE folder = ?1 AND uid = ?2",
	[STMT_MSG_SET_KEY] = "UPDATE messages SET msgkey = ?3 WHERE folder = ?1 AND uid = ?2",
	[STMT_KEY_VERDICT] = "SELECT verdict, score FROM messages"
			     " WHERE msgkey = ?1 AND verdict IS NOT NULL LIMIT 1",
	[STMT_KEY_FIND] = "SELECT f.name, m.uid FROM messages m JOIN folders f ON f.id = m.folder"
			  " WHERE m.msgkey = ?1 LIMIT 1",
	[STMT_KEY_SET_LEARNED] = "UPDATE messages SET learned = ?2 WHERE msgkey = ?1",
	[STMT_TRAIN_SET] = "INSERT INTO training (msgkey, want, queued) VALUES (?1, ?2, ?3)"
			   " ON CONFLICT (msgkey) DO UPDATE SET want = excluded.want,"
			   " queued = excluded.queued",
	[STMT_TRAIN_AUTO] = "INSERT INTO training (msgkey, want, queued)"
			    " SELECT ?1, ?2, ?3 WHERE (SELECT count(*) FROM training) < ?4"
			    " ON CONFLICT (msgkey) DO NOTHING",
	[STMT_TRAIN_ALL] = "SELECT msgkey, want, queued FROM training ORDER BY queued LIMIT ?1",
	[STMT_TRAIN_DONE] = "DELETE FROM training WHERE msgkey = ?1 AND want = ?2 AND queued = ?3",
	[STMT_TRAIN_COUNT] = "SELECT count(*) FROM training",
	[STMT_CACHE_COPY] = "INSERT OR REPLACE INTO msgcache (folder, uid, envelope, body,"
			    " bodystructure) SELECT ?3, ?4, envelope, body, bodystructure"
			    " FROM msgcache WHERE folder = ?1 AND uid = ?2",
};

int index_fail(struct store *st, sqlite3_stmt *q, const char *what, char **error_r)
{
	int code = sqlite3_extended_errcode(st->db);
	store_error(error_r, "index %s: %s: %s", st->root, what,
		    (code & 0xff) == SQLITE_BUSY
			    ? "database is locked (busy timeout)"
			    : sqlite3_errmsg(st->db));
	if (q != NULL)
		sqlite3_reset(q);
	return -1;
}

int index_exec(struct store *st, const char *sql, char **error_r)
{
	char *msg = NULL;
	if (sqlite3_exec(st->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		store_error(error_r, "index %s: %s: %s", st->root, sql,
			    msg ? msg : sqlite3_errmsg(st->db));
		sqlite3_free(msg);
		return -1;
	}
	return 0;
}

static int schema_setup(struct store *st, char **error_r)
{
	if (index_begin(st, error_r) < 0)
		return -1;
	sqlite3_stmt *q;
	if (sqlite3_prepare_v2(st->db, "PRAGMA user_version", -1, &q, NULL) != SQLITE_OK) {
		index_fail(st, NULL, "user_version", error_r);
		goto fail;
	}
	int version = sqlite3_step(q) == SQLITE_ROW ? sqlite3_column_int(q, 0) : -1;
	sqlite3_finalize(q);
	if (version < 0) {
		index_fail(st, NULL, "user_version", error_r);
		goto fail;
	}
	if (version > STORE_SCHEMA_VERSION) {
		store_error(error_r, "index %s: schema version %d is newer than this program (%d)",
			    st->root, version, STORE_SCHEMA_VERSION);
		goto fail;
	}
	if (version == STORE_SCHEMA_VERSION)
		return index_commit(st, error_r);
	st->fresh_index = version == 0; /* the files must be indexed now */
	if ((version == 0 && index_exec(st, schema_v2, error_r) < 0) ||
	    (version == 1 && index_exec(st, migrate_v1_v2, error_r) < 0) ||
	    (version <= 2 && index_exec(st, migrate_v2_v3, error_r) < 0))
		goto fail;
	char *set = xasprintf("PRAGMA user_version = %d;", STORE_SCHEMA_VERSION);
	int r = index_exec(st, set, error_r);
	free(set);
	if (r < 0)
		goto fail;
	if (version != 0)
		log_info(NULL, "store %s: index upgraded from schema version %d to %d", st->user,
			 version, STORE_SCHEMA_VERSION);
	return index_commit(st, error_r);
fail:
	index_rollback(st);
	return -1;
}

static int index_open_ex(struct store *st, bool setup, char **error_r);

int index_open(struct store *st, char **error_r)
{
	return index_open_ex(st, true, error_r);
}

/* Open again after store_suspend: the schema was checked at the first open. */
int index_reopen(struct store *st, char **error_r)
{
	return index_open_ex(st, false, error_r);
}

static int set_wal(struct store *st, char **error_r)
{
	const char *why = NULL;
	if (sqlite_set_wal(st->db, STORE_BUSY_TIMEOUT_MS, &why) == 0)
		return 0;
	return store_error(error_r, "index %s: journal_mode=WAL: %s", st->root, why);
}

static int index_open_ex(struct store *st, bool setup, char **error_r)
{
	char *path = xasprintf("%s/index.sqlite", st->root);
	/* A reopen (store_resume) must find the database it left: removed
	 * meanwhile (an admin forcing a rebuild), it is an error, not a new
	 * empty one. */
	int rc = sqlite3_open_v2(path, &st->db,
				 SQLITE_OPEN_READWRITE | (setup ? SQLITE_OPEN_CREATE : 0) |
					 SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE,
				 NULL);
	if (rc != SQLITE_OK) {
		store_error(error_r, "index %s: %s", path,
			    st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc));
		free(path);
		return -1;
	}
	free(path);
	/* Memory per open store matters (an IMAP session holds one for its
	 * life, a thousand may sit in IDLE): no lookaside buffers (about
	 * 120 KB each), a page cache of at most STORE_CACHE_KB. */
	sqlite3_db_config(st->db, SQLITE_DBCONFIG_LOOKASIDE, NULL, 0, 0);
	/* The last connection to close checkpoints and removes the WAL (the
	 * default): the next open then has no WAL to index, which keeps a
	 * login cheap. */
	sqlite3_busy_timeout(st->db, STORE_BUSY_TIMEOUT_MS);
	if (set_wal(st, error_r) < 0 ||
	    index_exec(st, "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; PRAGMA cache_size=-" STORE_CACHE_KB ";",
		 error_r) < 0)
		return -1;

	for (int i = 0; i <= STMT_ROLLBACK; i++) { /* the rest need the tables */
		if (sqlite3_prepare_v3(st->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
				       &st->stmt[i], NULL) != SQLITE_OK)
			return index_fail(st, NULL, stmt_sql[i], error_r);
	}
	if (setup && schema_setup(st, error_r) < 0)
		return -1;
	if (!setup &&
	    sqlite3_prepare_v3(st->db, stmt_sql[STMT_FOLDER_GET], -1, SQLITE_PREPARE_PERSISTENT,
			       &st->stmt[STMT_FOLDER_GET], NULL) != SQLITE_OK)
		return index_fail(st, NULL, "reopen", error_r); /* not our schema any more */
	/* The other statements are prepared on first use (index_stmt). */
	return 0;
}

void store_release_memory(struct store *st)
{
	if (st && st->db)
		sqlite3_db_release_memory(st->db);
}

void index_close(struct store *st)
{
	for (int i = 0; i < STMT_COUNT; i++) {
		sqlite3_finalize(st->stmt[i]);
		st->stmt[i] = NULL;
	}
	if (st->db != NULL) {
		if (sqlite3_close(st->db) != SQLITE_OK)
			log_warnx(NULL, "store %s: index close: %s", st->user, sqlite3_errmsg(st->db));
		st->db = NULL;
	}
}

sqlite3_stmt *index_stmt(struct store *st, enum store_stmt which)
{
	sqlite3_stmt *q = st->stmt[which];
	if (q == NULL) {
		/* The SQL is ours and the schema checked at open: a failure is
		 * a broken invariant (or memory exhaustion). */
		if (sqlite3_prepare_v3(st->db, stmt_sql[which], -1, SQLITE_PREPARE_PERSISTENT,
				       &st->stmt[which], NULL) != SQLITE_OK)
			log_panic(NULL, "index %s: prepare %s: %s", st->root, stmt_sql[which],
				  sqlite3_errmsg(st->db));
		return st->stmt[which];
	}
	sqlite3_reset(q);
	sqlite3_clear_bindings(q);
	return q;
}

static int step_done(struct store *st, enum store_stmt which, const char *what, char **error_r)
{
	sqlite3_stmt *q = index_stmt(st, which);
	if (sqlite3_step(q) != SQLITE_DONE)
		return index_fail(st, q, what, error_r);
	sqlite3_reset(q);
	return 0;
}

int index_begin(struct store *st, char **error_r)
{
	if (st->batch)
		return store_error(error_r, "store %s: not allowed inside a batch", st->user);
	return step_done(st, STMT_BEGIN, "begin", error_r);
}

/* Inside a batch: is its transaction still there?  SQLite rolls a
 * transaction back by itself after some errors (I/O, full disk). */
static bool batch_alive(struct store *st)
{
	if (st->batch_lost)
		return false;
	if (sqlite3_get_autocommit(st->db)) {
		log_warnx(NULL, "store %s: the batch's transaction was rolled back", st->user);
		batch_abort(st);
		return false;
	}
	return true;
}

int index_op_begin(struct store *st, char **error_r)
{
	if (!st->batch) {
		st->kw_blocked_folder = 0;
		return index_begin(st, error_r);
	}
	if (!batch_alive(st))
		return store_error(error_r, "store %s: the batch was rolled back", st->user);
	return step_done(st, STMT_SAVEPOINT, "savepoint", error_r);
}

int index_op_commit(struct store *st, char **error_r)
{
	if (!st->batch)
		return index_commit(st, error_r);
	if (!batch_alive(st))
		return store_error(error_r, "store %s: the batch was rolled back", st->user);
	if (step_done(st, STMT_RELEASE, "release", error_r) < 0) {
		index_op_rollback(st);
		return -1;
	}
	return 0;
}

void index_op_rollback(struct store *st)
{
	if (!st->batch) {
		index_rollback(st);
		return;
	}
	if (!batch_alive(st))
		return;
	char *err = NULL;
	if (step_done(st, STMT_ROLLBACK_TO, "rollback to", &err) < 0 ||
	    step_done(st, STMT_RELEASE, "release", &err) < 0) {
		log_warnx(NULL, "store %s: %s", st->user, err);
		free(err);
	}
}

int index_commit(struct store *st, char **error_r)
{
	if (step_done(st, STMT_COMMIT, "commit", error_r) < 0) {
		index_rollback(st);
		return -1;
	}
	return 0;
}

void index_rollback(struct store *st)
{
	if (sqlite3_get_autocommit(st->db))
		return; /* SQLite already rolled back */
	sqlite3_stmt *q = index_stmt(st, STMT_ROLLBACK);
	if (sqlite3_step(q) != SQLITE_DONE)
		log_warnx(NULL, "store %s: index rollback: %s", st->user, sqlite3_errmsg(st->db));
	sqlite3_reset(q);
}

static char *col_strdup(sqlite3_stmt *q, int col)
{
	const unsigned char *s = sqlite3_column_text(q, col);
	return s == NULL ? NULL : xstrdup((const char *)s);
}

static void col_copy(sqlite3_stmt *q, int col, char *out, size_t size)
{
	const unsigned char *s = sqlite3_column_text(q, col);
	str_copy(out, s == NULL ? "" : (const char *)s, size);
}

static void folder_row_read(sqlite3_stmt *q, struct folder_row *row)
{
	row->id = sqlite3_column_int64(q, 0);
	row->name = col_strdup(q, 1);
	row->uidvalidity = (uint32_t)sqlite3_column_int64(q, 2);
	row->uidnext = (uint32_t)sqlite3_column_int64(q, 3);
	row->highestmodseq = (uint64_t)sqlite3_column_int64(q, 4);
	row->subscribed = sqlite3_column_int(q, 5) != 0;
}

int index_folder_get(struct store *st, const char *name, struct folder_row *row, char **error_r)
{
	memset(row, 0, sizeof(*row));
	sqlite3_stmt *q = index_stmt(st, STMT_FOLDER_GET);
	sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
	int rc = sqlite3_step(q);
	if (rc == SQLITE_DONE) {
		sqlite3_reset(q);
		return 0;
	}
	if (rc != SQLITE_ROW)
		return index_fail(st, q, "folder lookup", error_r);
	folder_row_read(q, row);
	sqlite3_reset(q);
	return 1;
}

int index_folder_find(struct store *st, const char *folder, struct folder_row *row,
		      char **error_r)
{
	memset(row, 0, sizeof(*row));
	char *name = folder_name_normalize(folder);
	if (name == NULL)
		return store_error(error_r, "invalid folder name: %s",
				   folder == NULL ? "(null)" : log_str(folder));
	int r = index_folder_get(st, name, row, error_r);
	if (r == 0)
		store_error(error_r, "no such folder: %s", log_str(name));
	free(name);
	return r > 0 ? 0 : -1;
}

void folder_row_free(struct folder_row *row)
{
	free(row->name);
	row->name = NULL;
}

/* UIDVALIDITY: the time of creation, kept strictly increasing within the
 * store so that a folder deleted and created again in the same second
 * still gets a new value. */
static int next_uidvalidity(struct store *st, uint32_t *uv_r, char **error_r)
{
	sqlite3_stmt *q = index_stmt(st, STMT_META_GET);
	sqlite3_bind_text(q, 1, "uidvalidity", -1, SQLITE_STATIC);
	int rc = sqlite3_step(q);
	int64_t last = 0;
	if (rc == SQLITE_ROW)
		last = sqlite3_column_int64(q, 0);
	else if (rc != SQLITE_DONE)
		return index_fail(st, q, "uidvalidity", error_r);
	sqlite3_reset(q);

	int64_t uv = (int64_t)time(NULL);
	if (uv <= last)
		uv = last + 1;
	if (uv > UINT32_MAX)
		uv = 1; /* 2106: start over; clients resync on any change */
	q = index_stmt(st, STMT_META_SET);
	sqlite3_bind_text(q, 1, "uidvalidity", -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 2, uv);
	if (sqlite3_step(q) != SQLITE_DONE)
		return index_fail(st, q, "uidvalidity", error_r);
	sqlite3_reset(q);
	*uv_r = (uint32_t)uv;
	return 0;
}

int index_folder_add(struct store *st, const char *name, bool subscribed, char **error_r)
{
	uint32_t uv = 0;
	if (next_uidvalidity(st, &uv, error_r) < 0)
		return -1;
	sqlite3_stmt *q = index_stmt(st, STMT_FOLDER_INSERT);
	sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 2, uv);
	sqlite3_bind_int(q, 3, subscribed);
	if (sqlite3_step(q) != SQLITE_DONE)
		return index_fail(st, q, "folder insert", error_r);
	sqlite3_reset(q);
	return 0;
}

int index_bump_uid(struct store *st, int64_t folder_id, uint32_t *uid_r, uint64_t *modseq_r,
		   char **error_r)
{
	sqlite3_stmt *q = index_stmt(st, STMT_FOLDER_BUMP_UID);
	sqlite3_bind_int64(q, 1, folder_id);
	int rc = sqlite3_step(q);
	if (rc == SQLITE_DONE) {
		sqlite3_reset(q);
		return store_error(error_r, "folder was deleted");
	}
	if (rc != SQLITE_ROW)
		return index_fail(st, q, "next uid", error_r);
	int64_t uid = sqlite3_column_int64(q, 0);
	*modseq_r = (uint64_t)sqlite3_column_int64(q, 1);
	sqlite3_reset(q);
	if (uid <= 0 || uid > UINT32_MAX)
		return store_error(error_r, "folder out of UIDs");
	*uid_r = (uint32_t)uid;
	return 0;
}

int index_bump_modseq(struct store *st, int64_t folder_id, uint64_t *modseq_r, char **error_r)
{
	sqlite3_stmt *q = index_stmt(st, STMT_FOLDER_BUMP_MODSEQ);
	sqlite3_bind_int64(q, 1, folder_id);
	int rc = sqlite3_step(q);
	if (rc == SQLITE_DONE) {
		sqlite3_reset(q);
		return store_error(error_r, "folder was deleted");
	}
	if (rc != SQLITE_ROW)
		return index_fail(st, q, "next modseq", error_r);
	if (modseq_r != NULL)
		*modseq_r = (uint64_t)sqlite3_column_int64(q, 0);
	sqlite3_reset(q);
	return 0;
}

int index_msg_get(struct store *st, int64_t folder_id, uint32_t uid, struct msg_row *row,
		  char **error_r)
{
	memset(row, 0, sizeof(*row));
	sqlite3_stmt *q = index_stmt(st, STMT_MSG_GET);
	sqlite3_bind_int64(q, 1, folder_id);
	sqlite3_bind_int64(q, 2, uid);
	int rc = sqlite3_step(q);
	if (rc == SQLITE_DONE) {
		sqlite3_reset(q);
		return 0;
	}
	if (rc != SQLITE_ROW)
		return index_fail(st, q, "message lookup", error_r);
	row->uid = uid;
	row->base = col_strdup(q, 0);
	row->in_new = sqlite3_column_int(q, 1) != 0;
	row->flags = (unsigned)sqlite3_column_int(q, 2) & STORE_FLAGS_ALL;
	col_copy(q, 3, row->xflags, sizeof(row->xflags));
	row->modseq = (uint64_t)sqlite3_column_int64(q, 4);
	row->size = (uint64_t)sqlite3_column_int64(q, 5);
	row->vsize = (uint64_t)sqlite3_column_int64(q, 6);
	row->internaldate = sqlite3_column_int64(q, 7);
	row->verdict = col_strdup(q, 8);
	row->score = sqlite3_column_double(q, 9);
	row->learned = col_strdup(q, 10);
	row->keywords = col_strdup(q, 11);
	row->msgkey = col_strdup(q, 12);
	row->sender = col_strdup(q, 13);
	sqlite3_reset(q);
	if (row->base == NULL) {
		msg_row_free(row);
		return store_error(error_r, "index %s: message %u has no file name", st->root, uid);
	}
	return 1;
}

void msg_row_free(struct msg_row *row)
{
	free(row->base);
	free(row->verdict);
	free(row->learned);
	free(row->keywords);
	free(row->msgkey);
	free(row->sender);
	row->base = row->verdict = row->learned = row->keywords = row->msgkey = row->sender = NULL;
}

int index_msg_insert(struct store *st, int64_t folder_id, uint32_t uid, uint64_t modseq,
		     const struct msg_row *m, uint32_t *uid_r, char **error_r)
{
	sqlite3_stmt *q = index_stmt(st, STMT_MSG_INSERT);
	sqlite3_bind_int64(q, 1, folder_id);
	sqlite3_bind_int64(q, 2, uid);
	sqlite3_bind_text(q, 3, m->base, -1, SQLITE_STATIC);
	sqlite3_bind_int(q, 4, m->in_new);
	sqlite3_bind_int(q, 5, (int)(m->flags & STORE_FLAGS_ALL));
	sqlite3_bind_text(q, 6, m->xflags, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 7, (int64_t)modseq);
	sqlite3_bind_int64(q, 8, (int64_t)m->size);
	sqlite3_bind_int64(q, 9, (int64_t)m->vsize);
	sqlite3_bind_int64(q, 10, m->internaldate);
	if (m->verdict != NULL)
		sqlite3_bind_text(q, 11, m->verdict, -1, SQLITE_STATIC);
	sqlite3_bind_double(q, 12, m->score);
	if (m->learned != NULL)
		sqlite3_bind_text(q, 13, m->learned, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 14, m->keywords != NULL ? m->keywords : "", -1, SQLITE_STATIC);
	if (m->msgkey != NULL)
		sqlite3_bind_text(q, 15, m->msgkey, -1, SQLITE_STATIC);
	if (m->sender != NULL)
		sqlite3_bind_text(q, 16, m->sender, -1, SQLITE_STATIC);
	if (sqlite3_step(q) != SQLITE_ROW)
		return index_fail(st, q, "message insert", error_r);
	*uid_r = (uint32_t)sqlite3_column_int64(q, 0);
	/* Step to the end so the statement is complete before the reset. */
	int rc = sqlite3_step(q);
	if (rc != SQLITE_DONE)
		return index_fail(st, q, "message insert", error_r);
	sqlite3_reset(q);
	return 0;
}

int index_msg_set_file(struct store *st, int64_t folder_id, uint32_t uid, bool in_new,
		       unsigned flags, const char *xflags, const char *keywords, bool bump,
		       uint64_t *modseq_r, char **error_r)
{
	uint64_t modseq = 0;
	if (bump) {
		if (index_bump_modseq(st, folder_id, &modseq, error_r) < 0)
			return -1;
	} else {
		struct msg_row row;
		int r = index_msg_get(st, folder_id, uid, &row, error_r);
		if (r <= 0)
			return r < 0 ? -1 : store_error(error_r, "no such message: %u", uid);
		modseq = row.modseq;
		msg_row_free(&row);
	}
	sqlite3_stmt *q = index_stmt(st, STMT_MSG_UPDATE_FILE);
	sqlite3_bind_int64(q, 1, folder_id);
	sqlite3_bind_int64(q, 2, uid);
	sqlite3_bind_int(q, 3, in_new);
	sqlite3_bind_int(q, 4, (int)(flags & STORE_FLAGS_ALL));
	sqlite3_bind_text(q, 5, xflags, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 6, (int64_t)modseq);
	if (keywords != NULL)
		sqlite3_bind_text(q, 7, keywords, -1, SQLITE_STATIC);
	if (sqlite3_step(q) != SQLITE_DONE)
		return index_fail(st, q, "message update", error_r);
	sqlite3_reset(q);
	if (modseq_r != NULL)
		*modseq_r = modseq;
	return 0;
}

int index_msg_delete(struct store *st, int64_t folder_id, uint32_t uid, char **error_r)
{
	sqlite3_stmt *q = index_stmt(st, STMT_MSG_DELETE);
	sqlite3_bind_int64(q, 1, folder_id);
	sqlite3_bind_int64(q, 2, uid);
	if (sqlite3_step(q) != SQLITE_DONE)
		return index_fail(st, q, "message delete", error_r);
	sqlite3_reset(q);
	return index_bump_modseq(st, folder_id, NULL, error_r);
}
