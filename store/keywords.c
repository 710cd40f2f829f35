/*
 * keywords.c - IMAP keywords (RFC 3501 section 2.3.2, flag-keyword): their
 * validation and one normal form, and their letters in Maildir file names.
 *
 * The index holds each message's keywords (the truth for us, and the only
 * place for keywords beyond the 26th).  In file names the keywords are the
 * letters a..z after ":2,", named by the folder's "dovecot-keywords" file,
 * one "N keyword" line per letter 'a'+N, so that Dovecot and mutt see the
 * same keywords.  The file only grows: a letter, once given, keeps its
 * keyword.  It is rewritten (temp file in the folder's tmp/, fsync,
 * rename) under the index write lock, so our stores never race on it.
 *
 * A letter is given only to a keyword that no message of the folder has
 * yet (a keyword that lives in the index only stays there: giving it a
 * letter would make the files of the messages that have it look as if
 * they had lost it), and never a letter that some file of the folder
 * already carries unnamed (another tool's letter).
 */
#include "store/store-private.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* The file is small; a bigger one is not Dovecot's. */
#define KW_FILE_MAX 65536

bool store_keyword_valid(const char *kw)
{
	if (kw == NULL)
		return false;
	size_t n = 0;
	for (const unsigned char *p = (const unsigned char *)kw; *p; p++, n++) {
		/* ATOM-CHAR: not CTL, SP, atom-specials, nor non-ASCII. */
		if (*p <= ' ' || *p >= 0x7f || strchr("(){%*\"\\]", *p) != NULL)
			return false;
	}
	return n > 0 && n <= STORE_KEYWORD_MAX;
}

/* The letter index of a keyword in map (case-insensitive), or -1. */
static int map_find(const struct kwmap *map, const char *kw, size_t len)
{
	if (map == NULL)
		return -1;
	for (int i = 0; i < STORE_KW_LETTERS; i++) {
		const char *name = map->name[i];
		if (name != NULL && strlen(name) == len && strncasecmp(name, kw, len) == 0)
			return i;
	}
	return -1;
}

static int ci_cmp(const void *a, const void *b)
{
	return strcasecmp(*(char *const *)a, *(char *const *)b);
}

/* Sort, drop duplicates and join a list of valid keywords. */
static char *join_sorted(struct strlist *l)
{
	if (l->n > 1)
		qsort(l->v, l->n, sizeof(*l->v), ci_cmp);
	size_t len = 1;
	for (size_t i = 0; i < l->n; i++)
		len += strlen(l->v[i]) + 1;
	char *out = xmalloc(len);
	char *o = out;
	for (size_t i = 0; i < l->n; i++) {
		if (i > 0 && strcasecmp(l->v[i - 1], l->v[i]) == 0)
			continue;
		if (o != out)
			*o++ = ' ';
		size_t n = strlen(l->v[i]);
		memcpy(o, l->v[i], n);
		o += n;
	}
	*o = '\0';
	return out;
}

/* Add the keywords of a space-separated list to l, in map's spelling.
 * strict: an invalid keyword is an error (0 or -1); otherwise it is
 * skipped (lists read back from the index or a file). */
static int split_into(const char *in, const struct kwmap *map, bool strict, struct strlist *l,
		      char **error_r)
{
	for (const char *p = in; p != NULL && *p;) {
		while (*p == ' ')
			p++;
		size_t len = strcspn(p, " ");
		if (len == 0)
			break;
		char *kw = xstrndup(p, len);
		p += len;
		if (!store_keyword_valid(kw)) {
			if (strict) {
				store_error(error_r, "invalid keyword: %s", log_str(kw));
				free(kw);
				return -1;
			}
			free(kw);
			continue;
		}
		int i = map_find(map, kw, len);
		if (i >= 0) {
			free(kw);
			kw = xstrdup(map->name[i]);
		}
		strlist_add(l, kw);
		free(kw);
	}
	return 0;
}

int kw_normalize(const char *in, const struct kwmap *map, char **out_r, char **error_r)
{
	struct strlist l = { 0 };
	if (split_into(in, map, true, &l, error_r) < 0) {
		strlist_free(&l);
		return -1;
	}
	*out_r = join_sorted(&l);
	strlist_free(&l);
	return 0;
}

bool kw_equal(const char *a, const char *b)
{
	return strcasecmp(a != NULL ? a : "", b != NULL ? b : "") == 0;
}

bool kw_has_letters(const char *xflags)
{
	for (const char *p = xflags; p != NULL && *p; p++) {
		if (*p >= 'a' && *p <= 'z')
			return true;
	}
	return false;
}

char *kw_from_letters(const struct kwmap *map, const char *index_kw, const char *xflags)
{
	struct strlist all = { 0 }, l = { 0 };
	(void)split_into(index_kw, NULL, false, &all, NULL);
	for (size_t i = 0; i < all.n; i++) {
		if (map_find(map, all.v[i], strlen(all.v[i])) < 0)
			strlist_add(&l, all.v[i]); /* lives in the index only */
	}
	for (const char *p = xflags; p != NULL && *p; p++) {
		if (*p >= 'a' && *p <= 'z' && map->name[*p - 'a'] != NULL)
			strlist_add(&l, map->name[*p - 'a']);
	}
	char *out = join_sorted(&l);
	strlist_free(&all);
	strlist_free(&l);
	return out;
}

/* ------------------------------------------------------ dovecot-keywords */

static void map_clear(struct kwmap *map)
{
	for (int i = 0; i < STORE_KW_LETTERS; i++) {
		free(map->name[i]);
		map->name[i] = NULL;
	}
}

static void slot_clear(struct kwcache *c)
{
	free(c->dir);
	c->dir = NULL;
	map_clear(&c->map);
}

void kwcache_free(struct store *st)
{
	for (size_t i = 0; i < STORE_KW_CACHE_SLOTS; i++)
		slot_clear(&st->kw[i]);
}

/* Parse the file: "N keyword" lines; bad lines, letters out of range and
 * repeated letters or keywords are skipped (the first one counts). */
static void map_parse(struct kwmap *map, char *text)
{
	for (char *line = text, *next; line != NULL && *line; line = next) {
		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		char *end;
		errno = 0;
		unsigned long n = strtoul(line, &end, 10);
		if (end == line || *end != ' ' || errno != 0 || n >= STORE_KW_LETTERS ||
		    line[0] < '0' || line[0] > '9')
			continue;
		char *name = end + 1;
		size_t len = strlen(name);
		if (len > 0 && name[len - 1] == '\r')
			name[--len] = '\0';
		if (map->name[n] != NULL || !store_keyword_valid(name) ||
		    map_find(map, name, len) >= 0)
			continue;
		map->name[n] = xstrdup(name);
	}
}

static int read_map(const char *path, struct kwmap *map, char **error_r)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return errno == ENOENT ? 0 : store_error(error_r, "open(%s): %s", path, strerror(errno));
	char *buf = xmalloc(KW_FILE_MAX + 1);
	size_t len = 0;
	for (;;) {
		ssize_t n = read(fd, buf + len, KW_FILE_MAX - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			store_error(error_r, "read(%s): %s", path, strerror(errno));
			close(fd);
			free(buf);
			return -1;
		}
		if (n == 0 || (len += (size_t)n) == KW_FILE_MAX)
			break;
	}
	close(fd);
	buf[len] = '\0';
	map_parse(map, buf);
	free(buf);
	return 0;
}

/* The cache slot of fdir, read again when the file changed. */
static struct kwcache *map_slot(struct store *st, const char *fdir, char **error_r)
{
	char *path = xasprintf("%s/" STORE_KW_FILE, fdir);
	struct stat sb;
	bool exists = lstat(path, &sb) == 0;
	if (!exists && errno != ENOENT) {
		store_error(error_r, "stat(%s): %s", path, strerror(errno));
		free(path);
		return NULL;
	}
	int64_t mtime_ns = exists ? (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec : 0;
	struct kwcache *c = NULL;
	for (size_t i = 0; i < STORE_KW_CACHE_SLOTS && c == NULL; i++) {
		if (st->kw[i].dir != NULL && strcmp(st->kw[i].dir, fdir) == 0)
			c = &st->kw[i];
	}
	if (c != NULL && c->exists == exists &&
	    (!exists || (c->dev == sb.st_dev && c->ino == sb.st_ino && c->mtime_ns == mtime_ns &&
			 c->size == (int64_t)sb.st_size))) {
		free(path);
		return c;
	}
	if (c == NULL) {
		c = &st->kw[st->kw_next];
		st->kw_next = (st->kw_next + 1) % STORE_KW_CACHE_SLOTS;
	}
	slot_clear(c);
	if (exists && read_map(path, &c->map, error_r) < 0) {
		slot_clear(c);
		free(path);
		return NULL;
	}
	free(path);
	c->dir = xstrdup(fdir);
	c->exists = exists;
	if (exists) {
		c->dev = sb.st_dev;
		c->ino = sb.st_ino;
		c->mtime_ns = mtime_ns;
		c->size = (int64_t)sb.st_size;
	}
	return c;
}

int kwmap_get(struct store *st, const char *fdir, const struct kwmap **map_r, char **error_r)
{
	struct kwcache *c = map_slot(st, fdir, error_r);
	if (c == NULL)
		return -1;
	*map_r = &c->map;
	return 0;
}

/* Write the map as the folder's dovecot-keywords: temp file in tmp/,
 * fsync, rename, fsync the directory. */
static int write_map(struct store *st, const char *fdir, const struct kwmap *map,
		     char **error_r)
{
	char *unique = maildir_unique(st);
	char *tmp = xasprintf("%s/tmp/%s", fdir, unique);
	char *path = xasprintf("%s/" STORE_KW_FILE, fdir);
	free(unique);
	struct buf b;
	buf_init(&b, KW_FILE_MAX);
	int ret = -1;
	for (int i = 0; i < STORE_KW_LETTERS; i++) {
		if (map->name[i] != NULL && buf_printf(&b, "%d %s\n", i, map->name[i]) < 0) {
			store_error(error_r, "%s: too long", path);
			goto done;
		}
	}
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		store_error(error_r, "open(%s): %s", tmp, strerror(errno));
		goto done;
	}
	if (write_full(fd, b.data, b.len) < 0 || fsync(fd) < 0) {
		store_error(error_r, "write(%s): %s", tmp, strerror(errno));
		close(fd);
		(void)unlink(tmp);
		goto done;
	}
	close(fd);
	if (rename(tmp, path) < 0) {
		store_error(error_r, "rename(%s, %s): %s", tmp, path, strerror(errno));
		(void)unlink(tmp);
		goto done;
	}
	if (fsync_dir(fdir) < 0)
		log_warn(NULL, "store %s: fsync(%s)", st->user, fdir);
	ret = 0;
done:
	buf_free(&b);
	free(tmp);
	free(path);
	return ret;
}

/* Letters that files of the folder carry (named or not); computed once
 * per operation or batch. */
static int blocked_letters(struct store *st, int64_t folder_id, uint32_t *mask_r, char **error_r)
{
	if (st->kw_blocked_folder == folder_id) {
		*mask_r = st->kw_blocked;
		return 0;
	}
	uint32_t mask = 0;
	sqlite3_stmt *q = index_stmt(st, STMT_MSG_XFLAG_SETS);
	sqlite3_bind_int64(q, 1, folder_id);
	int rc;
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		const unsigned char *x = sqlite3_column_text(q, 0);
		for (; x != NULL && *x; x++) {
			if (*x >= 'a' && *x <= 'z')
				mask |= 1u << (*x - 'a');
		}
	}
	if (rc != SQLITE_DONE)
		return index_fail(st, q, "keyword letters", error_r);
	sqlite3_reset(q);
	st->kw_blocked_folder = folder_id;
	st->kw_blocked = mask;
	*mask_r = mask;
	return 0;
}

/* 1 when a message of the folder has keyword kw already, 0 not, -1 error. */
static int keyword_used(struct store *st, int64_t folder_id, const char *kw, char **error_r)
{
	char *pat = xmalloc(2 * strlen(kw) + 1), *o = pat;
	for (const char *p = kw; *p; p++) {
		if (*p == '%' || *p == '_' || *p == '\\')
			*o++ = '\\';
		*o++ = *p;
	}
	*o = '\0';
	sqlite3_stmt *q = index_stmt(st, STMT_MSG_KEYWORD_USED);
	sqlite3_bind_int64(q, 1, folder_id);
	sqlite3_bind_text(q, 2, pat, -1, SQLITE_TRANSIENT);
	free(pat);
	int rc = sqlite3_step(q);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return index_fail(st, q, "keyword lookup", error_r);
	sqlite3_reset(q);
	return rc == SQLITE_ROW;
}

/* A free letter for kw, or -1 (none free, or kw already in the index). */
static int give_letter(struct store *st, int64_t folder_id, const struct kwmap *map,
		       const char *kw, int *letter_r, char **error_r)
{
	*letter_r = -1;
	int free_slot = -1;
	for (int i = 0; i < STORE_KW_LETTERS && free_slot < 0; i++) {
		if (map->name[i] == NULL)
			free_slot = i;
	}
	if (free_slot < 0)
		return 0;
	uint32_t blocked = 0;
	if (blocked_letters(st, folder_id, &blocked, error_r) < 0)
		return -1;
	int letter = -1;
	for (int i = 0; i < STORE_KW_LETTERS && letter < 0; i++) {
		if (map->name[i] == NULL && !(blocked & (1u << i)))
			letter = i;
	}
	if (letter < 0)
		return 0;
	int r = keyword_used(st, folder_id, kw, error_r);
	if (r < 0)
		return -1;
	if (r == 0)
		*letter_r = letter;
	return 0;
}

int kw_letters(struct store *st, int64_t folder_id, const char *fdir, const char *keywords,
	       const char *xflags_in, bool drop_letters, char xflags_out[STORE_XFLAGS_SIZE],
	       char **error_r)
{
	bool any_kw = keywords != NULL && keywords[0] != '\0';
	if (!any_kw && !kw_has_letters(xflags_in)) {
		str_copy(xflags_out, xflags_in, STORE_XFLAGS_SIZE);
		return 0;
	}
	struct kwcache *c = NULL;
	if (any_kw || !drop_letters) {
		c = map_slot(st, fdir, error_r);
		if (c == NULL)
			return -1;
	}
	/* The letters that stay: not a keyword letter of this folder. */
	char letters[STORE_XFLAGS_SIZE + STORE_KW_LETTERS + 1];
	size_t n = 0;
	for (const char *p = xflags_in; *p && n < STORE_XFLAGS_SIZE; p++) {
		bool lower = *p >= 'a' && *p <= 'z';
		if (lower && (drop_letters || c->map.name[*p - 'a'] != NULL))
			continue;
		letters[n++] = *p;
	}
	struct strlist l = { 0 };
	(void)split_into(keywords, NULL, false, &l, NULL);
	bool dirty = false;
	int ret = 0;
	for (size_t i = 0; i < l.n && ret == 0; i++) {
		int letter = map_find(&c->map, l.v[i], strlen(l.v[i]));
		if (letter < 0) {
			ret = give_letter(st, folder_id, &c->map, l.v[i], &letter, error_r);
			if (ret == 0 && letter >= 0) {
				c->map.name[letter] = xstrdup(l.v[i]);
				dirty = true;
			}
		}
		if (letter >= 0 && n + 1 < sizeof(letters))
			letters[n++] = (char)('a' + letter);
	}
	strlist_free(&l);
	letters[n] = '\0';
	if (ret == 0 && dirty) {
		ret = write_map(st, fdir, &c->map, error_r);
		if (ret == 0)
			log_debug(NULL, "store %s: %s/" STORE_KW_FILE " updated", st->user, fdir);
	}
	if (dirty)
		slot_clear(c); /* read back (or, on failure, as it was) next time */
	if (ret < 0)
		return -1;
	(void)maildir_info_parse(letters, xflags_out);
	return 0;
}

int store_folder_keywords(struct store *st, const char *folder, struct strlist *out,
			  char **error_r)
{
	struct folder_row row;
	if (index_folder_find(st, folder, &row, error_r) < 0)
		return -1;
	struct strlist l = { 0 };
	sqlite3_stmt *q = index_stmt(st, STMT_MSG_KEYWORD_SETS);
	sqlite3_bind_int64(q, 1, row.id);
	int rc;
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		struct strlist set = { 0 };
		(void)split_into((const char *)sqlite3_column_text(q, 0), NULL, false, &set, NULL);
		for (size_t i = 0; i < set.n; i++) {
			if (!strlist_contains_ci(&l, set.v[i]))
				strlist_add(&l, set.v[i]);
		}
		strlist_free(&set);
	}
	int ret = 0;
	if (rc != SQLITE_DONE)
		ret = index_fail(st, q, "keyword list", error_r);
	sqlite3_reset(q);
	if (ret == 0) {
		if (l.n > 1)
			qsort(l.v, l.n, sizeof(*l.v), ci_cmp);
		for (size_t i = 0; i < l.n; i++) {
			if (!strlist_contains_ci(out, l.v[i]))
				strlist_add(out, l.v[i]);
		}
	}
	strlist_free(&l);
	folder_row_free(&row);
	return ret;
}
