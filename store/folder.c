/*
 * folder.c - listing, creating, deleting, renaming and subscribing folders.
 *
 * Each change holds the index write lock while it changes the directories,
 * so two stores never interleave.  A crash between the directory change
 * and the commit leaves directories that the next recovery scan adopts
 * (or rows it drops), never a half message.
 */
#include "store/store-private.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Read every row of the folder list before calling back, so that the
 * callback may use the store. */
struct folder_item {
	struct store_folder_info fi;
	char *name;
};

int store_folder_list(struct store *st, int (*cb)(const struct store_folder_info *fi, void *arg),
		      void *arg, char **error_r)
{
	struct folder_item *items = NULL;
	size_t n = 0, cap = 0;
	sqlite3_stmt *q = index_stmt(st, STMT_FOLDER_LIST);
	int rc;
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			items = xrealloc(items, cap * sizeof(*items));
		}
		struct folder_item *it = &items[n++];
		memset(it, 0, sizeof(*it));
		it->name = xstrdup((const char *)sqlite3_column_text(q, 1));
		it->fi.name = it->name;
		it->fi.special_use = store_special_use(it->name);
		it->fi.uidvalidity = (uint32_t)sqlite3_column_int64(q, 2);
		it->fi.uidnext = (uint32_t)sqlite3_column_int64(q, 3);
		it->fi.highestmodseq = (uint64_t)sqlite3_column_int64(q, 4);
		it->fi.subscribed = sqlite3_column_int(q, 5) != 0;
		it->fi.messages = (uint32_t)sqlite3_column_int64(q, 6);
		it->fi.recent = (uint32_t)sqlite3_column_int64(q, 7);
		it->fi.unseen = (uint32_t)sqlite3_column_int64(q, 8);
	}
	int ret = 0;
	if (rc != SQLITE_DONE)
		ret = index_fail(st, q, "folder list", error_r);
	sqlite3_reset(q);
	for (size_t i = 0; i < n && ret == 0; i++)
		ret = cb(&items[i].fi, arg);
	for (size_t i = 0; i < n; i++)
		free(items[i].name);
	free(items);
	return ret;
}

static int folder_info(struct store *st, const char *folder, struct store_folder_info *fi,
		       bool counts, char **error_r);

int store_folder_info(struct store *st, const char *folder, struct store_folder_info *fi,
		      char **error_r)
{
	return folder_info(st, folder, fi, true, error_r);
}

int store_folder_state(struct store *st, const char *folder, struct store_folder_info *fi,
		       char **error_r)
{
	return folder_info(st, folder, fi, false, error_r);
}

static int folder_info(struct store *st, const char *folder, struct store_folder_info *fi,
		       bool counts, char **error_r)
{
	memset(fi, 0, sizeof(*fi));
	char *name = folder_name_normalize(folder);
	if (name == NULL)
		return 0;
	struct folder_row row;
	int r = index_folder_get(st, name, &row, error_r);
	free(name);
	if (r <= 0)
		return r;
	if (counts) {
		sqlite3_stmt *q = index_stmt(st, STMT_FOLDER_COUNT);
		sqlite3_bind_int64(q, 1, row.id);
		if (sqlite3_step(q) != SQLITE_ROW) {
			folder_row_free(&row);
			return index_fail(st, q, "folder count", error_r);
		}
		fi->messages = (uint32_t)sqlite3_column_int64(q, 0);
		fi->recent = (uint32_t)sqlite3_column_int64(q, 1);
		fi->unseen = (uint32_t)sqlite3_column_int64(q, 2);
		sqlite3_reset(q);
	}
	free(st->fi_name);
	st->fi_name = row.name;
	fi->name = st->fi_name;
	fi->special_use = store_special_use(fi->name);
	fi->uidvalidity = row.uidvalidity;
	fi->uidnext = row.uidnext;
	fi->highestmodseq = row.highestmodseq;
	fi->subscribed = row.subscribed;
	return 1;
}

/* The on-disk directory name of a folder must fit in one entry. */
static int check_encoded_length(const char *name, char **error_r)
{
	char *enc = folder_name_encode(name);
	size_t len = enc ? strlen(enc) : 0;
	free(enc);
	if (len > STORE_NAME_MAX)
		return store_error(error_r, "folder name too long: %s", log_str(name));
	return 0;
}

int folder_create_with_parents(struct store *st, const char *name, char **error_r)
{
	char *prefix = xstrdup(name);
	int ret = -1;
	for (char *p = prefix;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char saved = *p;
		*p = '\0';
		struct folder_row row;
		int r = index_folder_get(st, prefix, &row, error_r);
		folder_row_free(&row);
		if (r < 0)
			goto done;
		if (r == 0) {
			char *dir = folder_dir(st, prefix);
			r = check_encoded_length(prefix, error_r) < 0 ? -1
									: maildir_make(dir, true, error_r);
			free(dir);
			if (r < 0 || index_folder_add(st, prefix, false, error_r) < 0)
				goto done;
		}
		*p = saved;
		if (saved == '\0')
			break;
	}
	ret = 0;
done:
	free(prefix);
	return ret;
}

int store_folder_create(struct store *st, const char *folder, char **error_r)
{
	char *name = folder_name_normalize(folder);
	if (name == NULL)
		return store_error(error_r, "invalid folder name: %s",
				   folder ? log_str(folder) : "(null)");
	int ret = -1;
	struct folder_row row;
	if (check_encoded_length(name, error_r) < 0 || index_begin(st, error_r) < 0)
		goto done;
	int r = index_folder_get(st, name, &row, error_r);
	folder_row_free(&row);
	if (r != 0) {
		if (r > 0)
			store_error(error_r, "folder already exists: %s", log_str(name));
		index_rollback(st);
		goto done;
	}
	if (folder_create_with_parents(st, name, error_r) < 0) {
		index_rollback(st);
		goto done;
	}
	ret = index_commit(st, error_r);
done:
	free(name);
	return ret;
}

static int delete_folder_row(struct store *st, int64_t id, char **error_r)
{
	sqlite3_stmt *q = index_stmt(st, STMT_MSG_DELETE_FOLDER);
	sqlite3_bind_int64(q, 1, id);
	if (sqlite3_step(q) != SQLITE_DONE)
		return index_fail(st, q, "folder delete", error_r);
	sqlite3_reset(q);
	q = index_stmt(st, STMT_FOLDER_DELETE);
	sqlite3_bind_int64(q, 1, id);
	if (sqlite3_step(q) != SQLITE_DONE)
		return index_fail(st, q, "folder delete", error_r);
	sqlite3_reset(q);
	return 0;
}

/* 1 when the folder has children, 0 not, -1 error. */
static int has_children(struct store *st, const char *name, char **error_r)
{
	sqlite3_stmt *q = index_stmt(st, STMT_FOLDER_CHILDREN);
	sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
	int rc = sqlite3_step(q);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return index_fail(st, q, "folder children", error_r);
	sqlite3_reset(q);
	return rc == SQLITE_ROW;
}

int store_folder_delete(struct store *st, const char *folder, char **error_r)
{
	char *name = folder_name_normalize(folder);
	if (name == NULL)
		return store_error(error_r, "invalid folder name: %s",
				   folder ? log_str(folder) : "(null)");
	if (store_folder_is_special(name)) {
		store_error(error_r, "cannot delete special folder: %s", name);
		free(name);
		return -1;
	}
	int ret = -1;
	struct folder_row row = { 0 };
	char *dir = NULL, *trash = NULL;
	if (index_begin(st, error_r) < 0)
		goto done;
	int r = index_folder_get(st, name, &row, error_r);
	if (r == 0)
		store_error(error_r, "no such folder: %s", log_str(name));
	if (r <= 0)
		goto rollback;
	r = has_children(st, name, error_r);
	if (r > 0)
		store_error(error_r, "folder has children: %s", log_str(name));
	if (r != 0)
		goto rollback;

	/* Rename the directory out of the way first (one atomic step), then
	 * remove it after the commit; a crash leaves a "..deleted." directory
	 * that the next recovery scan removes. */
	dir = folder_dir(st, name);
	char *unique = maildir_unique(st);
	trash = xasprintf("%s/" STORE_TRASH_PREFIX "%s", st->root, unique);
	free(unique);
	bool moved = rename(dir, trash) == 0;
	if (!moved && errno != ENOENT) {
		store_error(error_r, "rename(%s, %s): %s", dir, trash, strerror(errno));
		goto rollback;
	}
	if (delete_folder_row(st, row.id, error_r) < 0 || index_commit(st, error_r) < 0) {
		index_rollback(st);
		if (moved && rename(trash, dir) < 0)
			log_warn(NULL, "store %s: rename(%s, %s)", st->user, trash, dir);
		goto done;
	}
	if (moved) {
		int fd = open(st->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		const char *tname = strrchr(trash, '/') + 1;
		if (fd < 0 || maildir_rm_rf(fd, tname) < 0)
			log_warn(NULL, "store %s: removing %s", st->user, trash);
		if (fd >= 0)
			close(fd);
	}
	ret = 0;
	goto done;
rollback:
	index_rollback(st);
done:
	folder_row_free(&row);
	free(dir);
	free(trash);
	free(name);
	return ret;
}

struct rename_item {
	int64_t id;
	char *from, *to;          /* folder names */
	char *from_dir, *to_dir;  /* paths */
	bool moved;
};

static void rename_undo(struct store *st, struct rename_item *items, size_t n)
{
	for (size_t i = n; i-- > 0;) {
		if (items[i].moved && rename(items[i].to_dir, items[i].from_dir) < 0)
			log_warn(NULL, "store %s: rename(%s, %s)", st->user, items[i].to_dir,
				 items[i].from_dir);
		items[i].moved = false;
	}
}

static struct rename_item *rename_items(struct store *st, const struct folder_row *row,
					const char *to, size_t *n_r, char **error_r)
{
	size_t n = 1, cap = 8;
	struct rename_item *items = xcalloc(cap, sizeof(*items));
	items[0].id = row->id;
	items[0].from = xstrdup(row->name);
	sqlite3_stmt *q = index_stmt(st, STMT_FOLDER_CHILDREN);
	sqlite3_bind_text(q, 1, row->name, -1, SQLITE_STATIC);
	int rc;
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		if (n == cap) {
			cap *= 2;
			items = xrealloc(items, cap * sizeof(*items));
		}
		memset(&items[n], 0, sizeof(items[n]));
		items[n].id = sqlite3_column_int64(q, 0);
		items[n++].from = xstrdup((const char *)sqlite3_column_text(q, 1));
	}
	if (rc != SQLITE_DONE)
		index_fail(st, q, "folder children", error_r);
	sqlite3_reset(q);
	size_t flen = strlen(row->name);
	for (size_t i = 0; i < n; i++) {
		items[i].to = xasprintf("%s%s", to, items[i].from + flen);
		items[i].from_dir = folder_dir(st, items[i].from);
		items[i].to_dir = folder_dir(st, items[i].to);
	}
	*n_r = n;
	if (rc != SQLITE_DONE) {
		for (size_t i = 0; i < n; i++) {
			free(items[i].from);
			free(items[i].to);
			free(items[i].from_dir);
			free(items[i].to_dir);
		}
		free(items);
		return NULL;
	}
	return items;
}

/* Check the new names and take the parents of to. */
static int rename_check(struct store *st, struct rename_item *items, size_t n, const char *to,
			char **error_r)
{
	for (size_t i = 0; i < n; i++) {
		if (!store_folder_name_valid(items[i].to))
			return store_error(error_r, "invalid folder name: %s", log_str(items[i].to));
		if (check_encoded_length(items[i].to, error_r) < 0)
			return -1;
		struct folder_row other;
		int r = index_folder_get(st, items[i].to, &other, error_r);
		folder_row_free(&other);
		if (r > 0)
			return store_error(error_r, "folder already exists: %s",
					   log_str(items[i].to));
		if (r < 0)
			return -1;
	}
	const char *slash = strrchr(to, '/');
	if (slash != NULL) {
		char *parent = xstrndup(to, (size_t)(slash - to));
		int r = folder_create_with_parents(st, parent, error_r);
		free(parent);
		if (r < 0)
			return -1;
	}
	return 0;
}

int store_folder_rename(struct store *st, const char *from, const char *to, char **error_r)
{
	char *f = folder_name_normalize(from);
	char *t = folder_name_normalize(to);
	int ret = -1;
	struct folder_row row = { 0 };
	struct rename_item *items = NULL;
	size_t n = 0;
	if (f == NULL || t == NULL) {
		const char *bad = f == NULL ? from : to;
		store_error(error_r, "invalid folder name: %s", bad ? log_str(bad) : "(null)");
		goto done;
	}
	if (store_folder_is_special(f)) {
		store_error(error_r, "cannot rename special folder: %s", f);
		goto done;
	}
	size_t flen = strlen(f);
	if (strcmp(t, STORE_INBOX) == 0 || strcmp(f, t) == 0) {
		store_error(error_r, "folder already exists: %s", log_str(t));
		goto done;
	}
	if (strncmp(t, f, flen) == 0 && t[flen] == '/') {
		store_error(error_r, "cannot move folder %s into itself", log_str(f));
		goto done;
	}
	if (index_begin(st, error_r) < 0)
		goto done;
	int r = index_folder_get(st, f, &row, error_r);
	if (r == 0)
		store_error(error_r, "no such folder: %s", log_str(f));
	if (r <= 0)
		goto rollback;
	items = rename_items(st, &row, t, &n, error_r);
	if (items == NULL || rename_check(st, items, n, t, error_r) < 0)
		goto rollback;
	for (size_t i = 0; i < n; i++) {
		if (rename(items[i].from_dir, items[i].to_dir) < 0) {
			store_error(error_r, "rename(%s, %s): %s", items[i].from_dir,
				    items[i].to_dir, strerror(errno));
			rename_undo(st, items, i);
			goto rollback;
		}
		items[i].moved = true;
	}
	for (size_t i = 0; i < n; i++) {
		sqlite3_stmt *q = index_stmt(st, STMT_FOLDER_SET_NAME);
		sqlite3_bind_int64(q, 1, items[i].id);
		sqlite3_bind_text(q, 2, items[i].to, -1, SQLITE_STATIC);
		if (sqlite3_step(q) != SQLITE_DONE) {
			index_fail(st, q, "folder rename", error_r);
			rename_undo(st, items, n);
			goto rollback;
		}
		sqlite3_reset(q);
	}
	if (index_commit(st, error_r) < 0) {
		rename_undo(st, items, n);
		goto done;
	}
	if (fsync_dir(st->root) < 0)
		log_warn(NULL, "store %s: fsync(%s)", st->user, st->root);
	ret = 0;
	goto done;
rollback:
	index_rollback(st);
done:
	for (size_t i = 0; items != NULL && i < n; i++) {
		free(items[i].from);
		free(items[i].to);
		free(items[i].from_dir);
		free(items[i].to_dir);
	}
	free(items);
	folder_row_free(&row);
	free(f);
	free(t);
	return ret;
}

int store_folder_subscribe(struct store *st, const char *folder, bool on, char **error_r)
{
	char *name = folder_name_normalize(folder);
	if (name == NULL)
		return store_error(error_r, "invalid folder name: %s",
				   folder ? log_str(folder) : "(null)");
	sqlite3_stmt *q = index_stmt(st, STMT_FOLDER_SUBSCRIBE);
	sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_int(q, 2, on);
	int ret = 0;
	if (sqlite3_step(q) != SQLITE_DONE)
		ret = index_fail(st, q, "subscribe", error_r);
	else if (sqlite3_changes(st->db) == 0)
		ret = store_error(error_r, "no such folder: %s", log_str(name));
	sqlite3_reset(q);
	free(name);
	return ret;
}
