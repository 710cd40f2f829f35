/*
 * sqlwal.c - switching an SQLite database to WAL mode (the store's index
 * and the classifier's databases).
 */
#include "common/common.h"

#include <sqlite3.h>
#include <string.h>
#include <unistd.h>

/* A fresh database switches to WAL under an exclusive lock: another
 * handle opening the same new file at that moment makes it fail with
 * SQLITE_BUSY despite the busy timeout, so try again for a while. */
int sqlite_set_wal(struct sqlite3 *db, int timeout_ms, const char **why_r)
{
	for (int tries = 0;; tries++) {
		sqlite3_stmt *q;
		if (sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &q, NULL) != SQLITE_OK) {
			*why_r = sqlite3_errmsg(db);
			return -1;
		}
		int rc = sqlite3_step(q);
		bool wal = rc == SQLITE_ROW &&
			   strcmp((const char *)sqlite3_column_text(q, 0), "wal") == 0;
		sqlite3_finalize(q);
		if (wal)
			return 0;
		if ((rc & 0xff) != SQLITE_BUSY && (rc & 0xff) != SQLITE_LOCKED && rc != SQLITE_ROW) {
			*why_r = sqlite3_errmsg(db);
			return -1;
		}
		if (tries >= timeout_ms / 10) {
			*why_r = "cannot switch to WAL mode";
			return -1;
		}
		usleep(10000);
	}
}
