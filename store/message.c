/*
 * message.c - writing messages (tmp file, delivery by hard link), reading
 * them (ranges, all UIDs, the changes since a MODSEQ), and changing them:
 * flags and keywords (a rename), copy, move, expunge.  Each change is one
 * operation (index_op_begin): its own transaction, or a savepoint in a
 * batch.
 *
 * Delivery path, per recipient folder: link(2) the fsynced tmp file into
 * new/ (or cur/), fsync that directory, then one short write transaction
 * (next UID, INSERT ... RETURNING).  No directory scans.
 */
#include "store/store-private.h"

#include <openssl/evp.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TMP_BUF_SIZE 65536
/* store_messages reads the index in batches of this many rows, so that
 * the callback may use the store (no statement is left running). */
#define LIST_BATCH 256

struct store_tmp {
	int fd;
	char *path;     /* absolute, in tmp/ of the creating store */
	char *dir;      /* that tmp/ directory */
	char *name;     /* the unique part, no size fields */
	char *base;     /* name,S=<size>,W=<vsize> once finished */
	char *buf;
	size_t buflen;
	uint64_t size, lines;
	int64_t mtime;
	bool finished, failed;
	EVP_MD_CTX *md;  /* the content hash, while writing */
	char key[STORE_MSGKEY_SIZE];
};

int store_tmp_create(struct store *st, struct store_tmp **tmp_r, char **error_r)
{
	*tmp_r = NULL;
	struct store_tmp *tmp = xcalloc(1, sizeof(*tmp));
	tmp->dir = xasprintf("%s/tmp", st->root);
	tmp->name = maildir_unique(st);
	tmp->path = xasprintf("%s/%s", tmp->dir, tmp->name);
	tmp->fd = open(tmp->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (tmp->fd < 0) {
		store_error(error_r, "open(%s): %s", tmp->path, strerror(errno));
		free(tmp->dir);
		free(tmp->name);
		free(tmp->path);
		free(tmp);
		return -1;
	}
	tmp->buf = xmalloc(TMP_BUF_SIZE);
	tmp->md = EVP_MD_CTX_new();
	if (tmp->md == NULL || EVP_DigestInit_ex(tmp->md, EVP_sha256(), NULL) != 1)
		log_fatalx(NULL, "store: cannot set up SHA-256");
	*tmp_r = tmp;
	return 0;
}

static int tmp_flush(struct store_tmp *tmp, char **error_r)
{
	if (tmp->buflen == 0)
		return 0;
	if (write_full(tmp->fd, tmp->buf, tmp->buflen) < 0) {
		tmp->failed = true;
		return store_error(error_r, "write(%s): %s", tmp->path, strerror(errno));
	}
	tmp->buflen = 0;
	return 0;
}

int store_tmp_write(struct store_tmp *tmp, const void *data, size_t len, char **error_r)
{
	if (tmp->failed)
		return store_error(error_r, "write(%s): earlier write failed", tmp->path);
	if (tmp->finished)
		return store_error(error_r, "write(%s): file already finished", tmp->path);
	if (len == 0)
		return 0;
	for (const char *p = data, *end = p + len; (p = memchr(p, '\n', (size_t)(end - p))); p++)
		tmp->lines++;
	tmp->size += len;
	EVP_DigestUpdate(tmp->md, data, len);
	if (tmp->buflen + len > TMP_BUF_SIZE) {
		if (tmp_flush(tmp, error_r) < 0)
			return -1;
		if (len >= TMP_BUF_SIZE) {
			if (write_full(tmp->fd, data, len) < 0) {
				tmp->failed = true;
				return store_error(error_r, "write(%s): %s", tmp->path,
						   strerror(errno));
			}
			return 0;
		}
	}
	memcpy(tmp->buf + tmp->buflen, data, len);
	tmp->buflen += len;
	return 0;
}

/* Set the file's mtime (the internal date a rebuilt index will read). */
static int tmp_set_mtime(struct store_tmp *tmp, int64_t t, char **error_r)
{
	struct timespec ts[2] = { { .tv_nsec = UTIME_OMIT }, { .tv_sec = (time_t)t } };
	if (futimens(tmp->fd, ts) < 0)
		return store_error(error_r, "futimens(%s): %s", tmp->path, strerror(errno));
	return 0;
}

int store_tmp_finish(struct store_tmp *tmp, char **error_r)
{
	if (tmp->failed)
		return store_error(error_r, "write(%s): earlier write failed", tmp->path);
	if (tmp->finished)
		return 0;
	if (tmp_flush(tmp, error_r) < 0)
		return -1;
	if (fsync(tmp->fd) < 0) {
		tmp->failed = true;
		return store_error(error_r, "fsync(%s): %s", tmp->path, strerror(errno));
	}
	struct stat sb;
	if (fstat(tmp->fd, &sb) < 0) {
		tmp->failed = true;
		return store_error(error_r, "fstat(%s): %s", tmp->path, strerror(errno));
	}
	tmp->mtime = sb.st_mtime;
	close(tmp->fd);
	tmp->fd = -1;
	free(tmp->buf);
	tmp->buf = NULL;
	tmp->base = xasprintf("%s,S=%llu,W=%llu", tmp->name, (unsigned long long)tmp->size,
			      (unsigned long long)(tmp->size + tmp->lines));
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	EVP_DigestFinal_ex(tmp->md, md, &mdlen);
	msgkey_format(md, mdlen, tmp->key);
	tmp->finished = true;
	return 0;
}

void store_tmp_free(struct store_tmp **tmpp)
{
	struct store_tmp *tmp = *tmpp;
	if (tmp == NULL)
		return;
	if (tmp->fd >= 0)
		close(tmp->fd);
	if (unlink(tmp->path) < 0 && errno != ENOENT)
		log_warn(NULL, "unlink(%s)", tmp->path);
	free(tmp->path);
	free(tmp->dir);
	free(tmp->name);
	free(tmp->base);
	free(tmp->buf);
	EVP_MD_CTX_free(tmp->md);
	free(tmp);
	*tmpp = NULL;
}

/* Open new/ or cur/ of a folder directory. */
static int open_subdir(const char *fdir, bool in_new, char **path_r, char **error_r)
{
	char *path = xasprintf("%s/%s", fdir, in_new ? "new" : "cur");
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		store_error(error_r, "open(%s): %s", path, strerror(errno));
		free(path);
		return -1;
	}
	*path_r = path;
	return fd;
}

/* Link src into folder dir as fname and make it durable.  The copy
 * fallback (another file system) works in tmp/ of the target store. */
static int link_durable(struct store *st, const char *src, const char *fdir, bool in_new,
			const char *fname, char **error_r)
{
	char *sub;
	int dfd = open_subdir(fdir, in_new, &sub, error_r);
	if (dfd < 0)
		return -1;
	int ret = maildir_link(st, src, dfd, sub, fname, error_r);
	if (ret == 0 && fsync(dfd) < 0) {
		/* Not durable, so not delivered: take it back (best effort). */
		ret = store_error(error_r, "fsync(%s): %s", sub, strerror(errno));
		(void)unlinkat(dfd, fname, 0);
	}
	close(dfd);
	free(sub);
	return ret;
}

int store_deliver(struct store *st, const char *folder, struct store_tmp *tmp,
		  const struct store_meta *meta, uint32_t *uid_r, char **error_r)
{
	static const struct store_meta no_meta = { 0 };
	if (meta == NULL)
		meta = &no_meta;
	if (!tmp->finished || tmp->failed)
		return store_error(error_r, "deliver %s: message file not finished", tmp->path);
	struct folder_row folder_row;
	if (index_folder_find(st, folder, &folder_row, error_r) < 0)
		return -1;

	struct msg_row m = {
		.base = tmp->base,
		.in_new = (meta->flags & STORE_FLAGS_ALL) == 0,
		.flags = meta->flags & STORE_FLAGS_ALL,
		.size = tmp->size,
		.vsize = tmp->size + tmp->lines,
		.internaldate = meta->internaldate != 0 ? meta->internaldate : tmp->mtime,
		.verdict = (char *)meta->verdict,
		.score = meta->score,
		.msgkey = tmp->key,
		.sender = (char *)meta->sender,
	};
	char sender[STORE_ADDRESS_MAX];
	if (m.sender == NULL && msg_sender_of_file(tmp->path, sender, sizeof(sender)))
		m.sender = sender;
	char *fdir = folder_dir(st, folder_row.name);
	char *fname = maildir_file_name(m.base, m.in_new, m.flags, "");
	/* A retry after a failed index step finds the name already linked
	 * (same inode): fine, the INSERT below then returns the same UID. */
	int ret = link_durable(st, tmp->path, fdir, m.in_new, fname, error_r);
	free(fname);
	free(fdir);
	if (ret < 0) {
		folder_row_free(&folder_row);
		return -1;
	}

	/* The file is now visible and durable.  If the index step fails we
	 * leave it: removing it could race a recovery scan that has already
	 * indexed it, and the next store_open indexes it anyway.  The error
	 * makes the caller refuse (4xx) rather than acknowledge, so at worst
	 * the sender retries and the user gets a duplicate, never a loss. */
	uint32_t uid, got;
	uint64_t modseq;
	ret = -1;
	if (index_op_begin(st, error_r) < 0)
		goto done;
	/* A message given back without a verdict (IMAP APPEND of a copy, as
	 * some clients move mail between folders) keeps the one it was
	 * delivered with. */
	char *verdict = NULL;
	if (m.verdict == NULL && msgkey_verdict(st, m.msgkey, &verdict, &m.score, error_r) < 0) {
		index_op_rollback(st);
		goto done;
	}
	if (verdict != NULL)
		m.verdict = verdict;
	if (index_bump_uid(st, folder_row.id, &uid, &modseq, error_r) < 0 ||
	    index_msg_insert(st, folder_row.id, uid, modseq, &m, &got, error_r) < 0) {
		free(verdict);
		index_op_rollback(st);
		goto done;
	}
	free(verdict);
	if (meta->autolearn != STORE_LEARN_NONE) {
		sqlite3_stmt *q = index_stmt(st, STMT_TRAIN_AUTO);
		sqlite3_bind_text(q, 1, m.msgkey, -1, SQLITE_STATIC);
		sqlite3_bind_int(q, 2, meta->autolearn);
		sqlite3_bind_int64(q, 3, train_stamp());
		sqlite3_bind_int(q, 4, STORE_TRAIN_AUTO_MAX);
		if (sqlite3_step(q) != SQLITE_DONE) {
			index_fail(st, q, "autolearn", error_r);
			index_op_rollback(st);
			goto done;
		}
		sqlite3_reset(q);
	}
	if (index_op_commit(st, error_r) < 0)
		goto done;
	if (uid_r != NULL)
		*uid_r = got;
	ret = 0;
done:
	folder_row_free(&folder_row);
	return ret;
}

int store_append(struct store *st, const char *folder, const void *data, size_t len,
		 const struct store_meta *meta, uint32_t *uid_r, char **error_r)
{
	struct store_tmp *tmp;
	if (store_tmp_create(st, &tmp, error_r) < 0)
		return -1;
	int ret = store_tmp_write(tmp, data, len, error_r);
	if (ret == 0 && meta != NULL && meta->internaldate != 0)
		ret = tmp_flush(tmp, error_r) < 0 ? -1
						  : tmp_set_mtime(tmp, meta->internaldate, error_r);
	if (ret == 0)
		ret = store_tmp_finish(tmp, error_r);
	if (ret == 0)
		ret = store_deliver(st, folder, tmp, meta, uid_r, error_r);
	store_tmp_free(&tmp);
	return ret;
}

/* -------------------------------------------------------------- reading */

struct msg_item {
	struct store_msg m;
	char *verdict, *msgkey, *sender, *learned;
	char *base;
	char *keywords;
	bool in_new;
	char xflags[STORE_XFLAGS_SIZE];
};

/* One row of STMT_MSG_RANGE (MSG_COLS) into an item. */
static void item_read(sqlite3_stmt *q, struct msg_item *it)
{
	const unsigned char *s;
	it->m.uid = (uint32_t)sqlite3_column_int64(q, 0);
	s = sqlite3_column_text(q, 1);
	it->base = xstrdup(s ? (const char *)s : "");
	it->in_new = sqlite3_column_int(q, 2) != 0;
	it->m.flags = (unsigned)sqlite3_column_int(q, 3) & STORE_FLAGS_ALL;
	s = sqlite3_column_text(q, 4);
	str_copy(it->xflags, s ? (const char *)s : "", sizeof(it->xflags));
	it->m.modseq = (uint64_t)sqlite3_column_int64(q, 5);
	it->m.size = (uint64_t)sqlite3_column_int64(q, 6);
	it->m.vsize = (uint64_t)sqlite3_column_int64(q, 7);
	it->m.internaldate = sqlite3_column_int64(q, 8);
	s = sqlite3_column_text(q, 9);
	it->verdict = s ? xstrdup((const char *)s) : NULL;
	it->m.verdict = it->verdict;
	it->m.score = sqlite3_column_double(q, 10);
	s = sqlite3_column_text(q, 11);
	it->keywords = xstrdup(s ? (const char *)s : "");
	it->m.keywords = it->keywords;
	s = sqlite3_column_text(q, 12);
	it->m.msgkey = it->msgkey = s ? xstrdup((const char *)s) : NULL;
	s = sqlite3_column_text(q, 13);
	it->m.sender = it->sender = s ? xstrdup((const char *)s) : NULL;
	s = sqlite3_column_text(q, 14);
	it->m.learned = it->learned = s ? xstrdup((const char *)s) : NULL;
}

/* Call back for the items read (the statement is no longer running, so
 * cb may use the store), and free them.  Returns ret, or cb's result. */
static int items_emit(struct msg_item *items, size_t n, const char *fdir, int ret,
		      int (*cb)(const struct store_msg *m, void *arg), void *arg)
{
	for (size_t i = 0; i < n; i++) {
		struct msg_item *it = &items[i];
		char *path = maildir_msg_path(fdir, it->base, it->in_new, it->m.flags, it->xflags);
		it->m.path = path;
		if (ret == 0)
			ret = cb(&it->m, arg);
		free(path);
		free(it->base);
		free(it->verdict);
		free(it->keywords);
		free(it->msgkey);
		free(it->sender);
		free(it->learned);
	}
	return ret;
}

/* Read the rows uid_first..uid_last into items (at most max).  With want
 * (sorted, nwant of them), only those UIDs.  0 or -1. */
static int items_range(struct store *st, int64_t folder_id, int64_t uid_first, int64_t uid_last,
		       const uint32_t *want, size_t nwant, struct msg_item *items, size_t max,
		       size_t *n_r, char **error_r)
{
	size_t n = 0, w = 0;
	sqlite3_stmt *q = index_stmt(st, STMT_MSG_RANGE);
	sqlite3_bind_int64(q, 1, folder_id);
	sqlite3_bind_int64(q, 2, uid_first);
	sqlite3_bind_int64(q, 3, uid_last);
	sqlite3_bind_int64(q, 4, want != NULL ? -1 : (int64_t)max);
	int rc = SQLITE_DONE;
	while (n < max && (rc = sqlite3_step(q)) == SQLITE_ROW) {
		if (want != NULL) {
			uint32_t uid = (uint32_t)sqlite3_column_int64(q, 0);
			while (w < nwant && want[w] < uid)
				w++;
			if (w == nwant)
				break;
			if (want[w] != uid)
				continue;
		}
		item_read(q, &items[n++]);
	}
	*n_r = n;
	if (n < max && rc != SQLITE_DONE && rc != SQLITE_ROW)
		return index_fail(st, q, "message list", error_r);
	sqlite3_reset(q);
	return 0;
}

int store_messages(struct store *st, const char *folder, uint32_t uid_first, uint32_t uid_last,
		   int (*cb)(const struct store_msg *m, void *arg), void *arg, char **error_r)
{
	struct folder_row row;
	if (index_folder_find(st, folder, &row, error_r) < 0)
		return -1;
	char *fdir = folder_dir(st, row.name);
	struct msg_item *items = xcalloc(LIST_BATCH, sizeof(*items));
	int64_t next = uid_first == 0 ? 1 : uid_first;
	int64_t last = uid_last == 0 ? UINT32_MAX : uid_last;
	int ret = 0;
	while (ret == 0 && next <= last) {
		size_t n = 0;
		ret = items_range(st, row.id, next, last, NULL, 0, items, LIST_BATCH, &n, error_r);
		uint32_t last_uid = n > 0 ? items[n - 1].m.uid : 0;
		ret = items_emit(items, n, fdir, ret, cb, arg);
		if (n < LIST_BATCH)
			break;
		next = (int64_t)last_uid + 1;
	}
	free(items);
	free(fdir);
	folder_row_free(&row);
	return ret;
}

int store_flags_list(struct store *st, const char *folder, uint32_t uid_first, uint32_t uid_last,
		     int (*cb)(uint32_t uid, unsigned flags, uint64_t modseq, const char *keywords,
			       void *arg),
		     void *arg, char **error_r)
{
	struct folder_row row;
	if (index_folder_find(st, folder, &row, error_r) < 0)
		return -1;
	sqlite3_stmt *q = index_stmt(st, STMT_MSG_FLAGS);
	sqlite3_bind_int64(q, 1, row.id);
	sqlite3_bind_int64(q, 2, uid_first);
	sqlite3_bind_int64(q, 3, uid_last == 0 ? UINT32_MAX : uid_last);
	folder_row_free(&row);
	int rc, ret = 0;
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		const unsigned char *kw = sqlite3_column_text(q, 3);
		ret = cb((uint32_t)sqlite3_column_int64(q, 0),
			 (unsigned)sqlite3_column_int(q, 1) & STORE_FLAGS_ALL,
			 (uint64_t)sqlite3_column_int64(q, 2), kw ? (const char *)kw : "", arg);
		if (ret != 0)
			break;
	}
	if (ret == 0 && rc != SQLITE_DONE)
		return index_fail(st, q, "message flags", error_r);
	sqlite3_reset(q);
	return ret;
}

static int uid_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* The UIDs of a query with one int64 parameter ?2 besides the folder. */
static int query_uids(struct store *st, enum store_stmt which, int64_t folder_id, bool with_arg,
		      int64_t arg, uint32_t **uids_r, size_t *n_r, char **error_r)
{
	uint32_t *uids = NULL;
	size_t n = 0, cap = 0;
	sqlite3_stmt *q = index_stmt(st, which);
	sqlite3_bind_int64(q, 1, folder_id);
	if (with_arg)
		sqlite3_bind_int64(q, 2, arg);
	int rc;
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		if (n == cap) {
			cap = cap ? cap * 2 : 256;
			uids = xrealloc(uids, cap * sizeof(*uids));
		}
		uids[n++] = (uint32_t)sqlite3_column_int64(q, 0);
	}
	if (rc != SQLITE_DONE) {
		free(uids);
		return index_fail(st, q, "message uids", error_r);
	}
	sqlite3_reset(q);
	*uids_r = uids;
	*n_r = n;
	return 0;
}

int store_uids(struct store *st, const char *folder, uint32_t **uids_r, size_t *n_r,
	       char **error_r)
{
	*uids_r = NULL;
	*n_r = 0;
	struct folder_row row;
	if (index_folder_find(st, folder, &row, error_r) < 0)
		return -1;
	int ret = query_uids(st, STMT_MSG_UIDS, row.id, false, 0, uids_r, n_r, error_r);
	folder_row_free(&row);
	return ret;
}

int store_changes(struct store *st, const char *folder, uint64_t since_modseq,
		  int (*cb)(const struct store_msg *m, void *arg), void *arg, char **error_r)
{
	struct folder_row row;
	if (index_folder_find(st, folder, &row, error_r) < 0)
		return -1;
	if (since_modseq > INT64_MAX)
		since_modseq = INT64_MAX;
	/* The changed UIDs from the (folder, modseq) index first: at a sync
	 * point there are few or none, and the folder is not scanned. */
	uint32_t *uids = NULL;
	size_t nuids = 0;
	int ret = query_uids(st, STMT_MSG_CHANGED, row.id, true, (int64_t)since_modseq, &uids,
			     &nuids, error_r);
	if (ret < 0 || nuids == 0) {
		folder_row_free(&row);
		return ret;
	}
	qsort(uids, nuids, sizeof(*uids), uid_cmp);
	char *fdir = folder_dir(st, row.name);
	struct msg_item *items = xcalloc(LIST_BATCH, sizeof(*items));
	for (size_t done = 0; ret == 0 && done < nuids;) {
		size_t chunk = nuids - done < LIST_BATCH ? nuids - done : LIST_BATCH;
		const uint32_t *want = uids + done;
		uint32_t first = want[0], last = want[chunk - 1];
		size_t n = 0;
		if ((uint64_t)(last - first) < 4 * (uint64_t)chunk) {
			/* dense: one range read */
			ret = items_range(st, row.id, first, last, want, chunk, items, LIST_BATCH,
					  &n, error_r);
		} else {
			for (size_t i = 0; i < chunk && ret == 0; i++) {
				size_t got = 0;
				ret = items_range(st, row.id, want[i], want[i], NULL, 0, items + n, 1,
						  &got, error_r);
				n += got;
			}
		}
		/* A row changed again after the UID query is reported as it
		 * is now; one expunged since is left out. */
		ret = items_emit(items, n, fdir, ret, cb, arg);
		done += chunk;
	}
	free(items);
	free(fdir);
	free(uids);
	folder_row_free(&row);
	return ret;
}

/* The file of a message moved under us (another Maildir tool renamed it):
 * find it by its base name and record where it is now (best effort: a
 * failure to update the index only costs the next open another scan).
 * The open fd, or -1 with errno (ENOENT when not found). */
static int reopen_moved(struct store *st, const struct folder_row *folder,
			const struct msg_row *row, const char *fdir)
{
	char *fname;
	bool in_new;
	int r = maildir_find(fdir, row->base, &fname, &in_new);
	if (r <= 0) {
		errno = r < 0 ? errno : ENOENT;
		return -1;
	}
	char *path = xasprintf("%s/%s/%s", fdir, in_new ? "new" : "cur", fname);
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	struct maildir_name n;
	if (fd >= 0 && maildir_name_parse(fname, &n) == 1) {
		char *err = NULL;
		const char *xflags = n.has_info ? n.xflags : "";
		if (index_op_begin(st, &err) == 0) {
			struct msg_row cur;
			char *kw = NULL;
			const struct kwmap *map;
			int r = index_msg_get(st, folder->id, row->uid, &cur, &err);
			if (r == 1 && strcmp(cur.xflags, xflags) != 0 &&
			    (kw_has_letters(cur.xflags) || kw_has_letters(xflags))) {
				r = kwmap_get(st, fdir, &map, &err) < 0 ? -1 : 1;
				if (r == 1)
					kw = kw_from_letters(map, cur.keywords, xflags);
			}
			if (r == 1 && strcmp(cur.base, row->base) == 0 &&
			    index_msg_set_file(st, folder->id, row->uid, in_new,
					       n.has_info ? n.flags : 0, xflags, kw, true, NULL,
					       &err) == 0)
				(void)index_op_commit(st, &err);
			else
				index_op_rollback(st);
			free(kw);
			msg_row_free(&cur);
		}
		free(err);
		free(n.base);
	}
	free(path);
	free(fname);
	return fd;
}

int store_message_open(struct store *st, const char *folder, uint32_t uid, char **error_r)
{
	struct folder_row frow;
	if (index_folder_find(st, folder, &frow, error_r) < 0)
		return -1;
	char *fdir = folder_dir(st, frow.name);
	int fd = -1;
	/* Twice: another store may have renamed the file and committed. */
	for (int attempt = 0; attempt < 2 && fd < 0; attempt++) {
		struct msg_row row;
		int r = index_msg_get(st, frow.id, uid, &row, error_r);
		if (r == 0) {
			store_error(error_r, "no such message: %s UID %u", log_str(frow.name), uid);
			break;
		}
		if (r < 0)
			break;
		char *path = maildir_msg_path(fdir, row.base, row.in_new, row.flags, row.xflags);
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd < 0 && errno != ENOENT) {
			store_error(error_r, "open(%s): %s", path, strerror(errno));
			free(path);
			msg_row_free(&row);
			break;
		}
		if (fd < 0 && attempt == 1) {
			fd = reopen_moved(st, &frow, &row, fdir);
			if (fd < 0)
				store_error(error_r, "message file vanished: %s UID %u (%s)",
					    log_str(frow.name), uid, strerror(errno));
		}
		free(path);
		msg_row_free(&row);
	}
	free(fdir);
	folder_row_free(&frow);
	return fd;
}

/* ------------------------------------------------------------ changing */

/* The path of a message's file, looking for it by base name when it is
 * not where the index says (then *row is updated to what is on disk).
 * 1 found (*path_r), 0 vanished, -1 error. */
static int locate(const char *fdir, struct msg_row *row, char **path_r, char **error_r)
{
	char *path = maildir_msg_path(fdir, row->base, row->in_new, row->flags, row->xflags);
	struct stat sb;
	if (lstat(path, &sb) == 0) {
		*path_r = path;
		return 1;
	}
	free(path);
	char *fname;
	bool in_new;
	int r = maildir_find(fdir, row->base, &fname, &in_new);
	if (r < 0)
		return store_error(error_r, "readdir(%s): %s", fdir, strerror(errno));
	if (r == 0)
		return 0;
	struct maildir_name n;
	if (maildir_name_parse(fname, &n) == 1) {
		row->in_new = in_new;
		row->flags = n.has_info ? n.flags : 0;
		str_copy(row->xflags, n.has_info ? n.xflags : "", sizeof(row->xflags));
		free(n.base);
	}
	*path_r = xasprintf("%s/%s/%s", fdir, in_new ? "new" : "cur", fname);
	free(fname);
	return 1;
}

/* The keywords of a message whose file is as locate() found it: as the
 * index says, or read back from the letters when another tool renamed
 * the file (index_xflags: what the index had).  malloc'd, or NULL with
 * *error_r. */
static char *keywords_now(struct store *st, const char *fdir, const struct msg_row *row,
			  const char *index_xflags, char **error_r)
{
	if (strcmp(index_xflags, row->xflags) == 0 ||
	    (!kw_has_letters(index_xflags) && !kw_has_letters(row->xflags)))
		return xstrdup(row->keywords != NULL ? row->keywords : "");
	const struct kwmap *map;
	if (kwmap_get(st, fdir, &map, error_r) < 0)
		return NULL;
	return kw_from_letters(map, row->keywords, row->xflags);
}

int store_set_flags_kw(struct store *st, const char *folder, uint32_t uid, unsigned flags,
		       const char *keywords, uint64_t unchangedsince, uint64_t *modseq_r,
		       char **error_r)
{
	struct folder_row frow;
	if (index_folder_find(st, folder, &frow, error_r) < 0)
		return -1;
	flags &= STORE_FLAGS_ALL;
	char *fdir = folder_dir(st, frow.name);
	char *from = NULL, *to = NULL, *cur_kw = NULL, *new_kw = NULL;
	struct msg_row row = { 0 };
	int ret = -1;
	if (index_op_begin(st, error_r) < 0)
		goto done;
	int r = index_msg_get(st, frow.id, uid, &row, error_r);
	if (r == 0)
		store_error(error_r, "no such message: %s UID %u", log_str(frow.name), uid);
	if (r <= 0)
		goto rollback;
	if (unchangedsince != 0 && row.modseq > unchangedsince) {
		/* RFC 7162 section 3.1.3: changed since the client looked. */
		if (modseq_r != NULL)
			*modseq_r = row.modseq;
		ret = 0;
		goto rollback;
	}
	unsigned old_flags = row.flags;
	bool old_in_new = row.in_new;
	char old_xflags[STORE_XFLAGS_SIZE];
	memcpy(old_xflags, row.xflags, sizeof(old_xflags));
	r = locate(fdir, &row, &from, error_r);
	if (r == 0)
		store_error(error_r, "message file vanished: %s UID %u", log_str(frow.name), uid);
	if (r <= 0)
		goto rollback;
	cur_kw = keywords_now(st, fdir, &row, old_xflags, error_r);
	if (cur_kw == NULL)
		goto rollback;
	if (keywords == NULL) {
		new_kw = xstrdup(cur_kw);
	} else {
		const struct kwmap *map = NULL;
		if (keywords[0] != '\0' && kwmap_get(st, fdir, &map, error_r) < 0)
			goto rollback;
		if (kw_normalize(keywords, map, &new_kw, error_r) < 0)
			goto rollback;
		if (kw_equal(new_kw, cur_kw)) { /* the same set: keep its spelling */
			free(new_kw);
			new_kw = xstrdup(cur_kw);
		}
	}
	char xflags[STORE_XFLAGS_SIZE];
	if (kw_letters(st, frow.id, fdir, new_kw, row.xflags, false, xflags, error_r) < 0)
		goto rollback;
	/* Any change makes it a cur/ file ("seen by a client"). */
	to = maildir_msg_path(fdir, row.base, false, flags, xflags);
	bool renamed = strcmp(from, to) != 0;
	if (renamed && rename(from, to) < 0) {
		store_error(error_r, "rename(%s, %s): %s", from, to, strerror(errno));
		goto rollback;
	}
	bool bump = flags != old_flags || flags != row.flags || !kw_equal(new_kw, row.keywords) ||
		    !kw_equal(new_kw, cur_kw);
	bool kw_text = strcmp(new_kw, row.keywords != NULL ? row.keywords : "") != 0;
	uint64_t modseq = row.modseq;
	if ((renamed || bump || kw_text || old_in_new || strcmp(old_xflags, xflags) != 0) &&
	    index_msg_set_file(st, frow.id, uid, false, flags, xflags, new_kw, bump, &modseq,
			       error_r) < 0) {
		if (renamed && rename(to, from) < 0)
			log_warn(NULL, "store %s: rename(%s, %s)", st->user, to, from);
		goto rollback;
	}
	if (index_op_commit(st, error_r) < 0) {
		/* Put the file back; if that fails too, recovery and
		 * store_message_open find it by its base name. */
		if (renamed && rename(to, from) < 0)
			log_warn(NULL, "store %s: rename(%s, %s)", st->user, to, from);
		goto done;
	}
	if (renamed && st->batch)
		batch_undo_add(st, from, to);
	if (modseq_r != NULL)
		*modseq_r = modseq;
	ret = 1;
	goto done;
rollback:
	index_op_rollback(st);
done:
	msg_row_free(&row);
	free(from);
	free(to);
	free(cur_kw);
	free(new_kw);
	free(fdir);
	folder_row_free(&frow);
	return ret;
}

int store_set_flags(struct store *st, const char *folder, uint32_t uid, unsigned flags,
		    uint64_t *modseq_r, char **error_r)
{
	return store_set_flags_kw(st, folder, uid, flags, NULL, 0, modseq_r, error_r) < 0 ? -1 : 0;
}

/* Copy (a hard link under a new unique base, same flags, keywords, date,
 * verdict, score, training state and MIME cache) and, for a move, expunge
 * the source: all in one transaction.  The keyword letters are those of
 * the destination folder. */
static int copy_msg(struct store *st, const char *folder, uint32_t uid, const char *dest,
		    bool expunge, uint32_t *uid_r, char **error_r)
{
	struct folder_row src, dst = { 0 };
	if (index_folder_find(st, folder, &src, error_r) < 0)
		return -1;
	if (index_folder_find(st, dest, &dst, error_r) < 0) {
		folder_row_free(&src);
		return -1;
	}
	char *sdir = folder_dir(st, src.name), *ddir = folder_dir(st, dst.name);
	char *from = NULL, *base = NULL, *fname = NULL, *to = NULL, *kw = NULL;
	struct msg_row row = { 0 };
	int ret = -1;
	bool linked = false;
	if (index_op_begin(st, error_r) < 0)
		goto done;
	int r = index_msg_get(st, src.id, uid, &row, error_r);
	if (r == 0)
		store_error(error_r, "no such message: %s UID %u", log_str(src.name), uid);
	if (r <= 0)
		goto rollback;
	char index_xflags[STORE_XFLAGS_SIZE];
	memcpy(index_xflags, row.xflags, sizeof(index_xflags));
	r = locate(sdir, &row, &from, error_r);
	if (r == 0)
		store_error(error_r, "message file vanished: %s UID %u", log_str(src.name), uid);
	if (r <= 0)
		goto rollback;
	kw = keywords_now(st, sdir, &row, index_xflags, error_r);
	if (kw == NULL)
		goto rollback;
	char xflags[STORE_XFLAGS_SIZE];
	if (src.id == dst.id)
		memcpy(xflags, row.xflags, sizeof(xflags));
	else if (kw_letters(st, dst.id, ddir, kw, row.xflags, true, xflags, error_r) < 0)
		goto rollback;

	char *unique = maildir_unique(st);
	base = xasprintf("%s,S=%llu,W=%llu", unique, (unsigned long long)row.size,
			 (unsigned long long)row.vsize);
	free(unique);
	fname = maildir_file_name(base, row.in_new, row.flags, xflags);
	if (link_durable(st, from, ddir, row.in_new, fname, error_r) < 0)
		goto rollback;
	linked = true;
	to = xasprintf("%s/%s/%s", ddir, row.in_new ? "new" : "cur", fname);

	struct msg_row m = row;
	m.base = base;
	m.keywords = kw;
	char sender[STORE_ADDRESS_MAX], key[STORE_MSGKEY_SIZE];
	if (m.sender == NULL && msg_sender_of_file(from, sender, sizeof(sender)))
		m.sender = sender;
	if (m.msgkey == NULL && msgkey_of_file(from, key))
		m.msgkey = key;
	memcpy(m.xflags, xflags, sizeof(m.xflags));
	uint32_t new_uid, got;
	uint64_t modseq;
	if (index_bump_uid(st, dst.id, &new_uid, &modseq, error_r) < 0 ||
	    index_msg_insert(st, dst.id, new_uid, modseq, &m, &got, error_r) < 0)
		goto rollback;
	sqlite3_stmt *q = index_stmt(st, STMT_CACHE_COPY);
	sqlite3_bind_int64(q, 1, src.id);
	sqlite3_bind_int64(q, 2, uid);
	sqlite3_bind_int64(q, 3, dst.id);
	sqlite3_bind_int64(q, 4, got);
	if (sqlite3_step(q) != SQLITE_DONE) {
		index_fail(st, q, "cache copy", error_r);
		goto rollback;
	}
	sqlite3_reset(q);
	if (expunge) {
		if (index_msg_delete(st, src.id, uid, error_r) < 0)
			goto rollback;
		/* Before the commit: a crash in between leaves a row without
		 * a file (dropped by recovery) and the copy (kept), never the
		 * message twice. */
		if (unlink(from) < 0 && errno != ENOENT) {
			store_error(error_r, "unlink(%s): %s", from, strerror(errno));
			goto rollback;
		}
	}
	if (index_op_commit(st, error_r) < 0) {
		/* For a move the source is gone: keep the copy, which
		 * recovery indexes.  For a copy, undo it. */
		if (!expunge && unlink(to) < 0)
			log_warn(NULL, "store %s: unlink(%s)", st->user, to);
		goto done;
	}
	if (!expunge && st->batch)
		batch_undo_add(st, NULL, to);
	if (uid_r != NULL)
		*uid_r = got;
	ret = 0;
	goto done;
rollback:
	index_op_rollback(st);
	if (linked && unlink(to) < 0)
		log_warn(NULL, "store %s: unlink(%s)", st->user, to);
done:
	free(kw);
	msg_row_free(&row);
	free(from);
	free(base);
	free(fname);
	free(to);
	free(sdir);
	free(ddir);
	folder_row_free(&src);
	folder_row_free(&dst);
	return ret;
}

int store_copy(struct store *st, const char *folder, uint32_t uid, const char *dest,
	       uint32_t *uid_r, char **error_r)
{
	return copy_msg(st, folder, uid, dest, false, uid_r, error_r);
}

int store_move(struct store *st, const char *folder, uint32_t uid, const char *dest,
	       uint32_t *uid_r, char **error_r)
{
	return copy_msg(st, folder, uid, dest, true, uid_r, error_r);
}

int store_expunge(struct store *st, const char *folder, uint32_t uid, char **error_r)
{
	struct folder_row frow;
	if (index_folder_find(st, folder, &frow, error_r) < 0)
		return -1;
	char *fdir = folder_dir(st, frow.name);
	char *path = NULL;
	struct msg_row row = { 0 };
	int ret = -1;
	if (index_op_begin(st, error_r) < 0)
		goto done;
	int r = index_msg_get(st, frow.id, uid, &row, error_r);
	if (r == 0)
		store_error(error_r, "no such message: %s UID %u", log_str(frow.name), uid);
	if (r <= 0)
		goto rollback;
	r = locate(fdir, &row, &path, error_r);
	if (r < 0)
		goto rollback;
	if (r > 0 && unlink(path) < 0 && errno != ENOENT) {
		store_error(error_r, "unlink(%s): %s", path, strerror(errno));
		goto rollback;
	}
	/* The file is gone (also when someone else removed it): the row goes
	 * too.  A failed commit leaves a row without a file, which the next
	 * recovery scan drops. */
	if (index_msg_delete(st, frow.id, uid, error_r) < 0)
		goto rollback;
	ret = index_op_commit(st, error_r);
	goto done;
rollback:
	index_op_rollback(st);
done:
	msg_row_free(&row);
	free(path);
	free(fdir);
	folder_row_free(&frow);
	return ret;
}
