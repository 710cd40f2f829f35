/*
 * sync.c - what an IMAP session needs beyond single messages: batches of
 * operations in one index transaction, the \Recent mark, and the MIME
 * cache.  (The UID list and the changes since a MODSEQ are in message.c,
 * beside store_messages.)
 *
 * A batch is one BEGIN IMMEDIATE .. COMMIT; each operation inside it is a
 * SAVEPOINT (index_op_begin), so one that fails undoes itself, files
 * included, and the batch goes on.  The file changes of the operations
 * that succeeded are logged (batch_undo_add), so that a COMMIT that fails
 * can put them back as a single operation would: renames reversed, new
 * links of copies removed.  Unlinks cannot be undone; as for a single
 * operation, the next recovery scan drops the rows of files that are gone.
 */
#include "store/store-private.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---------------------------------------------------------------- batches */

void batch_undo_add(struct store *st, const char *from, const char *to)
{
	if (st->nundo == st->undo_cap) {
		st->undo_cap = st->undo_cap ? st->undo_cap * 2 : 64;
		st->undo = xrealloc(st->undo, st->undo_cap * sizeof(*st->undo));
	}
	struct batch_undo *u = &st->undo[st->nundo++];
	u->from = from != NULL ? xstrdup(from) : NULL;
	u->to = xstrdup(to);
}

static void undo_free(struct store *st)
{
	for (size_t i = 0; i < st->nundo; i++) {
		free(st->undo[i].from);
		free(st->undo[i].to);
	}
	free(st->undo);
	st->undo = NULL;
	st->nundo = st->undo_cap = 0;
}

void batch_abort(struct store *st)
{
	/* Newest first: a message renamed twice goes back step by step. */
	for (size_t i = st->nundo; i-- > 0;) {
		struct batch_undo *u = &st->undo[i];
		if (u->from != NULL) {
			if (rename(u->to, u->from) < 0)
				log_warn(NULL, "store %s: rename(%s, %s)", st->user, u->to, u->from);
		} else if (unlink(u->to) < 0 && errno != ENOENT) {
			log_warn(NULL, "store %s: unlink(%s)", st->user, u->to);
		}
	}
	undo_free(st);
	st->batch_lost = true;
}

bool store_in_batch(const struct store *st)
{
	return st->batch;
}

int store_batch_begin(struct store *st, char **error_r)
{
	if (st->batch)
		return store_error(error_r, "store %s: batch already begun", st->user);
	if (index_begin(st, error_r) < 0)
		return -1;
	st->batch = true;
	st->batch_lost = false;
	st->kw_blocked_folder = 0;
	return 0;
}

int store_batch_end(struct store *st, char **error_r)
{
	if (!st->batch)
		return store_error(error_r, "store %s: no batch to end", st->user);
	st->batch = false;
	st->kw_blocked_folder = 0;
	if (st->batch_lost || sqlite3_get_autocommit(st->db)) {
		if (!st->batch_lost)
			batch_abort(st);
		st->batch_lost = false;
		return store_error(error_r, "store %s: the batch was rolled back", st->user);
	}
	if (index_commit(st, error_r) < 0) {
		batch_abort(st);
		st->batch_lost = false;
		return -1;
	}
	undo_free(st);
	return 0;
}

/* ---------------------------------------------------------------- \Recent */

int store_claim_recent(struct store *st, const char *folder, uint32_t *first_recent_r,
		       char **error_r)
{
	return store_claim_recent_upto(st, folder, UINT32_MAX, first_recent_r, error_r);
}

int store_claim_recent_upto(struct store *st, const char *folder, uint32_t upto,
			    uint32_t *first_recent_r, char **error_r)
{
	struct folder_row row;
	if (index_folder_find(st, folder, &row, error_r) < 0)
		return -1;
	int ret = -1;
	sqlite3_stmt *q;
	if (!store_in_batch(st)) {
		/* Nothing new since the last claim (the common case: every
		 * session syncing after one delivery): no write transaction,
		 * so a thousand IDLE sessions do not queue on the lock. */
		q = index_stmt(st, STMT_FOLDER_RECENT_GET);
		sqlite3_bind_int64(q, 1, row.id);
		if (sqlite3_step(q) == SQLITE_ROW) {
			int64_t mark = sqlite3_column_int64(q, 0), uidnext = sqlite3_column_int64(q, 1);
			sqlite3_reset(q);
			if (uidnext > (int64_t)upto)
				uidnext = upto;
			if (mark >= uidnext) {
				*first_recent_r = (uint32_t)uidnext;
				folder_row_free(&row);
				return 0;
			}
		} else {
			sqlite3_reset(q);
		}
	}
	if (index_op_begin(st, error_r) < 0)
		goto done;
	q = index_stmt(st, STMT_FOLDER_RECENT_GET);
	sqlite3_bind_int64(q, 1, row.id);
	int rc = sqlite3_step(q);
	if (rc != SQLITE_ROW) {
		if (rc == SQLITE_DONE)
			store_error(error_r, "folder was deleted");
		else
			index_fail(st, q, "recent mark", error_r);
		sqlite3_reset(q);
		goto rollback;
	}
	int64_t mark = sqlite3_column_int64(q, 0), uidnext = sqlite3_column_int64(q, 1);
	sqlite3_reset(q);
	if (mark < 1)
		mark = 1;
	if (uidnext > (int64_t)upto)
		uidnext = upto;
	if (mark < uidnext) {
		q = index_stmt(st, STMT_FOLDER_RECENT_SET);
		sqlite3_bind_int64(q, 1, row.id);
		sqlite3_bind_int64(q, 2, uidnext);
		if (sqlite3_step(q) != SQLITE_DONE) {
			index_fail(st, q, "recent mark", error_r);
			goto rollback;
		}
		sqlite3_reset(q);
	}
	if (index_op_commit(st, error_r) < 0)
		goto done;
	*first_recent_r = (uint32_t)mark;
	ret = 0;
	goto done;
rollback:
	index_op_rollback(st);
done:
	folder_row_free(&row);
	return ret;
}

/* ------------------------------------------------------------- MIME cache */

static char *col_dup(sqlite3_stmt *q, int col)
{
	const unsigned char *s = sqlite3_column_text(q, col);
	return s != NULL ? xstrdup((const char *)s) : NULL;
}

int store_msg_cache_get(struct store *st, const char *folder, uint32_t uid, char **envelope_r,
			char **body_r, char **bodystructure_r, char **error_r)
{
	char **outs[] = { envelope_r, body_r, bodystructure_r };
	for (size_t i = 0; i < ARRAY_SIZE(outs); i++) {
		if (outs[i] != NULL)
			*outs[i] = NULL;
	}
	struct folder_row row;
	if (index_folder_find(st, folder, &row, error_r) < 0)
		return -1;
	sqlite3_stmt *q = index_stmt(st, STMT_CACHE_GET);
	sqlite3_bind_int64(q, 1, row.id);
	sqlite3_bind_int64(q, 2, uid);
	folder_row_free(&row);
	int rc = sqlite3_step(q);
	if (rc == SQLITE_DONE) {
		sqlite3_reset(q);
		return 0;
	}
	if (rc != SQLITE_ROW)
		return index_fail(st, q, "cache lookup", error_r);
	for (size_t i = 0; i < ARRAY_SIZE(outs); i++) {
		if (outs[i] != NULL)
			*outs[i] = col_dup(q, (int)i);
	}
	sqlite3_reset(q);
	return 1;
}

static int cache_write(struct store *st, int64_t folder_id, uint32_t uid, const char *envelope,
		       const char *body, const char *bodystructure, char **error_r)
{
	sqlite3_stmt *q = index_stmt(st, STMT_CACHE_SET);
	sqlite3_bind_int64(q, 1, folder_id);
	sqlite3_bind_int64(q, 2, uid);
	const char *vals[] = { envelope, body, bodystructure };
	for (int i = 0; i < 3; i++) {
		if (vals[i] != NULL)
			sqlite3_bind_text(q, 3 + i, vals[i], -1, SQLITE_STATIC);
	}
	if (sqlite3_step(q) != SQLITE_DONE) {
		if (sqlite3_extended_errcode(st->db) == SQLITE_CONSTRAINT_FOREIGNKEY) {
			sqlite3_reset(q);
			return store_error(error_r, "cache: no such message: UID %u", uid);
		}
		return index_fail(st, q, "cache write", error_r);
	}
	sqlite3_reset(q);
	return 0;
}

int store_msg_cache_set(struct store *st, const char *folder, uint32_t uid, const char *envelope,
			const char *body, const char *bodystructure, char **error_r)
{
	if (envelope == NULL && body == NULL && bodystructure == NULL)
		return 0;
	struct folder_row row;
	if (index_folder_find(st, folder, &row, error_r) < 0)
		return -1;
	int ret;
	if (st->batch) {
		/* The batch holds the write lock already. */
		ret = index_op_begin(st, error_r);
		if (ret == 0) {
			ret = cache_write(st, row.id, uid, envelope, body, bodystructure, error_r);
			if (ret == 0)
				ret = index_op_commit(st, error_r);
			else
				index_op_rollback(st);
		}
	} else {
		/* One statement, its own transaction; a FETCH does not wait
		 * long for a writer to let us cache what it has computed. */
		sqlite3_busy_timeout(st->db, STORE_CACHE_BUSY_MS);
		ret = cache_write(st, row.id, uid, envelope, body, bodystructure, error_r);
		sqlite3_busy_timeout(st->db, STORE_BUSY_TIMEOUT_MS);
	}
	folder_row_free(&row);
	return ret;
}
