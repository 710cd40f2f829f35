/*
 * recover.c - the recovery scan of store_open: make the index match the
 * files, which are the truth.
 *
 * Under the write lock (BEGIN IMMEDIATE, so it serialises with our own
 * flag renames, copies and expunges, which also hold it):
 *   - folder directories on disk that the index lacks get a row (created
 *     by a crash between mkdir and insert, or by another Maildir tool);
 *     rows of non-special folders whose directory is gone are dropped;
 *   - per folder, new/ and cur/ are read once: files the index lacks get
 *     the next UIDs (in mtime order), files renamed by another tool have
 *     their row updated (flags, location, new MODSEQ); lower-case letters
 *     are keywords through the folder's dovecot-keywords (keywords.c);
 *   - rows whose file is in neither directory are checked again with a
 *     second readdir pass (a rename by another tool may have hidden the
 *     file from the first), and only then deleted.
 * Then stale tmp/ files are removed and half-deleted folders finished.
 *
 * A delivery links its file before it takes the lock, so the scan may see
 * a file whose row the delivery is about to insert: the scan gives it a
 * UID and the delivery's INSERT ... ON CONFLICT keeps that UID.
 */
#include "store/store-private.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct rec {
	char *base;
	uint32_t uid;
	bool in_new;
	unsigned flags;
	char xflags[STORE_XFLAGS_SIZE];
	char *keywords;
	bool seen;
};

struct found {
	char *fname; /* the entry as it is on disk */
	struct maildir_name name;
	bool in_new;
	int64_t mtime;
	uint64_t size, vsize;
};

struct scan {
	struct store *st;
	int64_t folder_id;
	const char *dir;
	const struct kwmap *map; /* the folder's keyword letters */
	struct rec *recs;
	size_t nrecs;
	struct found *found;
	size_t nfound, found_cap;
	bool failed; /* a directory could not be read: delete nothing */
};

static int rec_cmp(const void *a, const void *b)
{
	return strcmp(((const struct rec *)a)->base, ((const struct rec *)b)->base);
}

static struct rec *rec_find(struct scan *sc, const char *base)
{
	if (sc->nrecs == 0)
		return NULL;
	struct rec key = { .base = (char *)base };
	return bsearch(&key, sc->recs, sc->nrecs, sizeof(*sc->recs), rec_cmp);
}

static int load_recs(struct scan *sc, char **error_r)
{
	struct store *st = sc->st;
	size_t cap = 0;
	sqlite3_stmt *q = index_stmt(st, STMT_MSG_SCAN);
	sqlite3_bind_int64(q, 1, sc->folder_id);
	int rc;
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		const unsigned char *base = sqlite3_column_text(q, 1);
		if (base == NULL)
			continue;
		if (sc->nrecs == cap) {
			cap = cap ? cap * 2 : 64;
			sc->recs = xrealloc(sc->recs, cap * sizeof(*sc->recs));
		}
		struct rec *r = &sc->recs[sc->nrecs++];
		memset(r, 0, sizeof(*r));
		r->uid = (uint32_t)sqlite3_column_int64(q, 0);
		r->base = xstrdup((const char *)base);
		r->in_new = sqlite3_column_int(q, 2) != 0;
		r->flags = (unsigned)sqlite3_column_int(q, 3) & STORE_FLAGS_ALL;
		const unsigned char *x = sqlite3_column_text(q, 4);
		str_copy(r->xflags, x ? (const char *)x : "", sizeof(r->xflags));
		const unsigned char *kw = sqlite3_column_text(q, 5);
		r->keywords = xstrdup(kw ? (const char *)kw : "");
	}
	if (rc != SQLITE_DONE)
		return index_fail(st, q, "message scan", error_r);
	sqlite3_reset(q);
	if (sc->nrecs > 0)
		qsort(sc->recs, sc->nrecs, sizeof(*sc->recs), rec_cmp);
	return 0;
}

/* Point the row at the file as found on disk (another tool renamed it). */
static int rec_update(struct scan *sc, struct rec *r, bool in_new, const struct maildir_name *n,
		      char **error_r)
{
	unsigned flags = n->has_info ? n->flags : 0;
	const char *xflags = n->has_info ? n->xflags : "";
	if (r->in_new == in_new && r->flags == flags && strcmp(r->xflags, xflags) == 0)
		return 0;
	bool bump = r->flags != flags || strcmp(r->xflags, xflags) != 0;
	char *kw = NULL;
	if (strcmp(r->xflags, xflags) != 0 && (kw_has_letters(r->xflags) || kw_has_letters(xflags)))
		kw = kw_from_letters(sc->map, r->keywords, xflags);
	int ret = index_msg_set_file(sc->st, sc->folder_id, r->uid, in_new, flags, xflags, kw, bump,
				     NULL, error_r);
	free(kw);
	if (ret < 0)
		return -1;
	r->in_new = in_new;
	r->flags = flags;
	str_copy(r->xflags, xflags, sizeof(r->xflags));
	return 0;
}

/* Bring an entry into the one form the index can describe: new/ files
 * carry no info part, cur/ files always do, with the letters sorted and
 * each once (what the Maildir spec asks; some tools write ":2,SR").
 * Returns the entry's name now (malloc'd), or NULL when it vanished or
 * could not be renamed. */
static char *normalise_entry(struct scan *sc, const char *sub, const char *fname,
			     struct maildir_name *n, bool *in_new)
{
	bool to_new = *in_new && !n->has_info;
	char *to_name = maildir_file_name(n->base, to_new, n->flags, n->xflags);
	if (to_new == *in_new && strcmp(to_name, fname) == 0)
		return to_name;
	char *from = xasprintf("%s/%s/%s", sc->dir, sub, fname);
	char *to = xasprintf("%s/%s/%s", sc->dir, to_new ? "new" : "cur", to_name);
	if (rename(from, to) < 0) {
		if (errno != ENOENT)
			log_warn(NULL, "store %s: rename(%s, %s)", sc->st->user, from, to);
		free(to_name);
		to_name = NULL;
	} else {
		*in_new = to_new;
		n->has_info = !to_new;
	}
	free(from);
	free(to);
	return to_name;
}

static void add_found(struct scan *sc, char *fname, struct maildir_name *n, bool in_new)
{
	if (sc->nfound == sc->found_cap) {
		sc->found_cap = sc->found_cap ? sc->found_cap * 2 : 16;
		sc->found = xrealloc(sc->found, sc->found_cap * sizeof(*sc->found));
	}
	struct found *f = &sc->found[sc->nfound++];
	memset(f, 0, sizeof(*f));
	f->fname = fname;
	f->name = *n;
	f->in_new = in_new;
}

/* One pass over new/ or cur/.  second: only look for rows not seen yet. */
static int scan_dir(struct scan *sc, const char *sub, bool second, char **error_r)
{
	char *path = xasprintf("%s/%s", sc->dir, sub);
	DIR *d = opendir(path);
	if (d == NULL) {
		log_warn(NULL, "store %s: opendir(%s)", sc->st->user, path);
		free(path);
		sc->failed = true;
		return 0;
	}
	free(path);
	bool dir_new = strcmp(sub, "new") == 0;
	int ret = 0;
	struct dirent *de;
	while (ret == 0 && (de = readdir(d)) != NULL) {
		struct maildir_name n;
		if (de->d_type == DT_DIR || de->d_type == DT_LNK ||
		    !maildir_name_parse(de->d_name, &n))
			continue;
		bool in_new = dir_new;
		struct rec *r = rec_find(sc, n.base);
		if (second) {
			if (r != NULL && !r->seen) {
				char *fname = normalise_entry(sc, sub, de->d_name, &n, &in_new);
				if (fname != NULL) {
					r->seen = true;
					ret = rec_update(sc, r, in_new, &n, error_r);
				}
				free(fname);
			}
			free(n.base);
			continue;
		}
		if (r != NULL && r->seen) {
			/* The same base twice (new/ and cur/): keep the first. */
			free(n.base);
			continue;
		}
		char *fname = normalise_entry(sc, sub, de->d_name, &n, &in_new);
		if (fname == NULL) {
			free(n.base);
			continue;
		}
		if (r != NULL) {
			r->seen = true;
			ret = rec_update(sc, r, in_new, &n, error_r);
			free(fname);
			free(n.base);
		} else {
			add_found(sc, fname, &n, in_new);
		}
	}
	closedir(d);
	return ret;
}

static int found_base_cmp(const void *a, const void *b)
{
	return strcmp(((const struct found *)a)->name.base, ((const struct found *)b)->name.base);
}

static int found_time_cmp(const void *a, const void *b)
{
	const struct found *x = a, *y = b;
	if (x->mtime != y->mtime)
		return x->mtime < y->mtime ? -1 : 1;
	return strcmp(x->name.base, y->name.base);
}

/* Index the files the index lacks, oldest first. */
static int add_files(struct scan *sc, char **error_r)
{
	if (sc->nfound == 0)
		return 0;
	qsort(sc->found, sc->nfound, sizeof(*sc->found), found_base_cmp);
	size_t n = 0;
	for (size_t i = 0; i < sc->nfound; i++) {
		struct found *f = &sc->found[i];
		bool dup = n > 0 && strcmp(sc->found[n - 1].name.base, f->name.base) == 0;
		char *sub = xasprintf("%s/%s", sc->dir, f->in_new ? "new" : "cur");
		struct stat sb;
		int dfd = dup ? -1 : open(sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		bool ok = dfd >= 0 && fstatat(dfd, f->fname, &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
			  S_ISREG(sb.st_mode);
		if (ok) {
			f->size = (uint64_t)sb.st_size;
			f->mtime = sb.st_mtime;
			uint64_t lines;
			if (maildir_base_vsize(f->name.base, &f->vsize)) {
				/* from the name, as Dovecot does */
			} else if (maildir_count_lf(dfd, f->fname, &lines) == 0) {
				f->vsize = f->size + lines;
			} else {
				log_warn(NULL, "store %s: read(%s/%s)", sc->st->user, sub, f->fname);
				ok = false;
			}
		}
		if (dfd >= 0)
			close(dfd);
		free(sub);
		if (!ok) {
			free(f->fname);
			free(f->name.base);
			continue;
		}
		sc->found[n++] = *f;
	}
	sc->nfound = n;
	qsort(sc->found, sc->nfound, sizeof(*sc->found), found_time_cmp);
	for (size_t i = 0; i < sc->nfound; i++) {
		struct found *f = &sc->found[i];
		struct msg_row m = {
			.base = f->name.base,
			.in_new = f->in_new,
			.flags = f->in_new ? 0 : f->name.flags,
			.size = f->size,
			.vsize = f->vsize,
			.internaldate = f->mtime,
		};
		str_copy(m.xflags, f->in_new ? "" : f->name.xflags, sizeof(m.xflags));
		m.keywords = kw_from_letters(sc->map, "", m.xflags);
		/* What a delivery records: the content key and the From
		 * address (the Whitelist and Blacklist entries). */
		char *path = xasprintf("%s/%s/%s", sc->dir, f->in_new ? "new" : "cur", f->fname);
		char key[STORE_MSGKEY_SIZE], sender[STORE_ADDRESS_MAX];
		if (msgkey_of_file(path, key))
			m.msgkey = key;
		if (msg_sender_of_file(path, sender, sizeof(sender)))
			m.sender = sender;
		free(path);
		uint32_t uid, got;
		uint64_t modseq;
		int r = index_bump_uid(sc->st, sc->folder_id, &uid, &modseq, error_r);
		if (r == 0)
			r = index_msg_insert(sc->st, sc->folder_id, uid, modseq, &m, &got, error_r);
		free(m.keywords);
		if (r < 0)
			return -1;
	}
	return 0;
}

static int scan_folder(struct store *st, int64_t folder_id, const char *name, char **error_r)
{
	char *dir = folder_dir(st, name);
	struct scan sc = { .st = st, .folder_id = folder_id, .dir = dir };
	int ret = -1;
	if (kwmap_get(st, dir, &sc.map, error_r) < 0 || load_recs(&sc, error_r) < 0)
		goto done;
	/* new/ before cur/: a client moves files from new/ to cur/, so a
	 * file cannot slip between the two reads that way. */
	if (scan_dir(&sc, "new", false, error_r) < 0 || scan_dir(&sc, "cur", false, error_r) < 0)
		goto done;
	if (add_files(&sc, error_r) < 0)
		goto done;
	size_t missing = 0;
	for (size_t i = 0; i < sc.nrecs; i++)
		missing += !sc.recs[i].seen;
	if (missing > 0 && !sc.failed) {
		if (scan_dir(&sc, "new", true, error_r) < 0 ||
		    scan_dir(&sc, "cur", true, error_r) < 0)
			goto done;
		for (size_t i = 0; i < sc.nrecs && !sc.failed; i++) {
			if (!sc.recs[i].seen &&
			    index_msg_delete(st, folder_id, sc.recs[i].uid, error_r) < 0)
				goto done;
		}
	}
	ret = 0;
done:
	for (size_t i = 0; i < sc.nrecs; i++) {
		free(sc.recs[i].base);
		free(sc.recs[i].keywords);
	}
	free(sc.recs);
	for (size_t i = 0; i < sc.nfound; i++) {
		free(sc.found[i].fname);
		free(sc.found[i].name.base);
	}
	free(sc.found);
	free(dir);
	return ret;
}

/* The folders on disk: directories ".NAME" holding a cur/ (Maildir++),
 * plus INBOX.  Half-deleted folders are removed on the way. */
static int disk_folders(struct store *st, struct strlist *names, char **error_r)
{
	int fd = open(st->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd < 0 ? NULL : fdopendir(fd);
	if (d == NULL) {
		if (fd >= 0)
			close(fd);
		return store_error(error_r, "opendir(%s): %s", st->root, strerror(errno));
	}
	strlist_add(names, STORE_INBOX);
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] != '.' || strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		if (strncmp(de->d_name, STORE_TRASH_PREFIX, strlen(STORE_TRASH_PREFIX)) == 0) {
			if (maildir_rm_rf(fd, de->d_name) < 0)
				log_warn(NULL, "store %s: removing %s/%s", st->user, st->root,
					 de->d_name);
			continue;
		}
		if (de->d_type != DT_DIR && de->d_type != DT_UNKNOWN)
			continue;
		char *name = folder_name_decode(de->d_name);
		if (name == NULL)
			continue;
		char *cur = xasprintf("%s/cur", de->d_name);
		struct stat sb;
		bool is_maildir = fstatat(fd, de->d_name, &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
				  S_ISDIR(sb.st_mode) &&
				  fstatat(fd, cur, &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
				  S_ISDIR(sb.st_mode);
		free(cur);
		if (is_maildir) {
			char *dir = xasprintf("%s/%s", st->root, de->d_name);
			char *err = NULL;
			if (maildir_make(dir, true, &err) < 0) {
				log_warnx(NULL, "store %s: %s", st->user, err);
				free(err);
			}
			free(dir);
			strlist_add(names, name);
		}
		free(name);
	}
	closedir(d);
	return 0;
}

static int sync_folders(struct store *st, char **error_r)
{
	struct strlist disk = { 0 };
	int ret = -1;
	if (disk_folders(st, &disk, error_r) < 0)
		goto done;
	for (size_t i = 0; i < disk.n; i++) {
		struct folder_row row;
		int r = index_folder_get(st, disk.v[i], &row, error_r);
		if (r < 0)
			goto done;
		folder_row_free(&row);
		if (r == 0 && index_folder_add(st, disk.v[i], store_folder_is_special(disk.v[i]),
					       error_r) < 0)
			goto done;
	}
	/* Rows of folders whose directory is gone. */
	struct strlist gone = { 0 };
	sqlite3_stmt *q = index_stmt(st, STMT_FOLDER_ALL);
	int rc;
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(q, 1);
		bool on_disk = false;
		for (size_t i = 0; i < disk.n && !on_disk; i++)
			on_disk = strcmp(disk.v[i], name) == 0;
		if (!on_disk && !store_folder_is_special(name))
			strlist_add(&gone, name);
	}
	if (rc != SQLITE_DONE) {
		index_fail(st, q, "folder list", error_r);
		strlist_free(&gone);
		goto done;
	}
	sqlite3_reset(q);
	for (size_t i = 0; i < gone.n; i++) {
		struct folder_row row;
		if (index_folder_get(st, gone.v[i], &row, error_r) <= 0)
			continue;
		char *dir = folder_dir(st, row.name);
		char *cur = xasprintf("%s/cur", dir);
		struct stat sb;
		if (lstat(cur, &sb) < 0 && errno == ENOENT) {
			log_info(NULL, "store %s: folder %s vanished from disk", st->user,
				 log_str(row.name));
			q = index_stmt(st, STMT_MSG_DELETE_FOLDER);
			sqlite3_bind_int64(q, 1, row.id);
			rc = sqlite3_step(q);
			if (rc == SQLITE_DONE) {
				q = index_stmt(st, STMT_FOLDER_DELETE);
				sqlite3_bind_int64(q, 1, row.id);
				rc = sqlite3_step(q);
			}
			if (rc != SQLITE_DONE) {
				index_fail(st, q, "folder delete", error_r);
				folder_row_free(&row);
				free(dir);
				free(cur);
				strlist_free(&gone);
				goto done;
			}
			sqlite3_reset(q);
		}
		folder_row_free(&row);
		free(dir);
		free(cur);
	}
	strlist_free(&gone);
	ret = 0;
done:
	strlist_free(&disk);
	return ret;
}

struct folder_ref {
	int64_t id;
	char *name;
};

int store_recover(struct store *st, char **error_r)
{
	struct folder_ref *folders = NULL;
	size_t n = 0, cap = 0;
	if (index_begin(st, error_r) < 0)
		return -1;
	if (sync_folders(st, error_r) < 0)
		goto fail;

	sqlite3_stmt *q = index_stmt(st, STMT_FOLDER_ALL);
	int rc;
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			folders = xrealloc(folders, cap * sizeof(*folders));
		}
		folders[n].id = sqlite3_column_int64(q, 0);
		folders[n++].name = xstrdup((const char *)sqlite3_column_text(q, 1));
	}
	if (rc != SQLITE_DONE) {
		index_fail(st, q, "folder list", error_r);
		goto fail;
	}
	sqlite3_reset(q);
	for (size_t i = 0; i < n; i++) {
		if (scan_folder(st, folders[i].id, folders[i].name, error_r) < 0)
			goto fail;
	}
	if (index_commit(st, error_r) < 0)
		goto fail;

	for (size_t i = 0; i < n; i++) {
		char *dir = folder_dir(st, folders[i].name);
		char *tmp = xasprintf("%s/tmp", dir);
		maildir_clean_tmp(st, tmp);
		free(tmp);
		free(dir);
	}
	for (size_t i = 0; i < n; i++)
		free(folders[i].name);
	free(folders);
	return 0;
fail:
	index_rollback(st);
	for (size_t i = 0; i < n; i++)
		free(folders[i].name);
	free(folders);
	return -1;
}
