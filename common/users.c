/*
 * users.c - user addresses, password hashing with crypt(3) (libxcrypt),
 * and the users file: a Dovecot passwd-file, read through a reloading,
 * thread-safe view (struct userdb) and edited under a lock by atomic
 * rewrite (users_file_*).
 *
 * File format, one user per line (Dovecot passwd-file):
 *
 *   user@domain:{SCHEME}hash:uid:gid:gecos:home:shell:extra
 *
 * Only the first two fields matter to us; the others are optional and kept
 * as they are when a password changes.  Our own lines read
 * "user@domain:{SCHEME}hash::::::".  '#' comments and blank lines are
 * skipped; lines with an invalid address or without a password field are
 * skipped with a warning naming FILE:LINE, and kept verbatim by edits.
 * When an address appears twice, the first line counts (as in Dovecot).
 * An empty password field is a user who exists (receives mail) but whose
 * password never verifies.
 */
#include "common/common.h"

#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define LOCAL_MAX 64
#define DOMAIN_MAX 253
#define LABEL_MAX 63
#define ADDR_SIZE (LOCAL_MAX + 1 + DOMAIN_MAX + 1)
/* Longer passwords are refused: SHA-crypt's cost grows with the length,
 * so an unbounded password is a cheap way to burn our CPU. */
#define PASSWORD_MAX 1024
/* bcrypt ignores everything after the 72nd byte. */
#define BCRYPT_PASSWORD_MAX 72
#define USERS_FILE_MAX ((size_t)256 << 20)
/* The tail of the lines we write: uid, gid, gecos, home, shell, extra. */
#define EMPTY_FIELDS "::::::"

static int fail(char **error_r, const char *fmt, ...) PRINTFLIKE(2, 3);

static int fail(char **error_r, const char *fmt, ...)
{
	if (error_r != NULL) {
		va_list ap;
		char *s;
		va_start(ap, fmt);
		if (vasprintf(&s, fmt, ap) < 0)
			s = xstrdup("out of memory");
		va_end(ap);
		*error_r = s;
	}
	return -1;
}

/* ------------------------------------------------------------ addresses */

static bool local_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
	       c == '+' || c == '=' || c == '-';
}

static bool domain_valid(const char *d, size_t n)
{
	size_t label = 0;

	if (n == 0 || n > DOMAIN_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)d[i];
		if (c == '.') {
			if (label == 0 || d[i - 1] == '-')
				return false; /* empty label, or one ending in '-' */
			label = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
			return false;
		if (c == '-' && label == 0)
			return false;
		if (++label > LABEL_MAX)
			return false;
	}
	return label > 0 && d[n - 1] != '-';
}

static bool address_valid_n(const char *addr, size_t n)
{
	const char *at = memchr(addr, '@', n);
	if (at == NULL)
		return false;
	size_t llen = (size_t)(at - addr);
	const char *dom = at + 1;
	size_t dlen = n - llen - 1;

	if (memchr(dom, '@', dlen) != NULL)
		return false;
	if (llen == 0 || llen > LOCAL_MAX || addr[0] == '.' || addr[llen - 1] == '.')
		return false;
	for (size_t i = 0; i < llen; i++) {
		if (!local_char((unsigned char)addr[i]))
			return false;
		if (addr[i] == '.' && addr[i + 1] == '.')
			return false;
	}
	return domain_valid(dom, dlen);
}

bool user_address_valid(const char *addr)
{
	return addr != NULL && address_valid_n(addr, strlen(addr));
}

/* Lower-case n bytes of addr into out (ADDR_SIZE bytes) and validate. */
static bool address_normalize_n(const char *addr, size_t n, char *out, size_t size)
{
	if (size == 0)
		return false;
	out[0] = '\0';
	if (n >= size || memchr(addr, '\0', n) != NULL)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = addr[i];
		out[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
	}
	out[n] = '\0';
	if (!address_valid_n(out, n)) {
		out[0] = '\0';
		return false;
	}
	return true;
}

bool user_address_normalize(const char *addr, char *out, size_t size)
{
	if (addr == NULL || out == NULL)
		return false;
	return address_normalize_n(addr, strlen(addr), out, size);
}

/* ------------------------------------------------------------ passwords */

struct scheme {
	const char *name;    /* as written in "{...}" */
	const char *prefix;  /* for crypt_gensalt_rn; NULL = libxcrypt's default */
	unsigned long count; /* cost; 0 = the method's default */
	const char *family;  /* what a stored hash of this scheme starts with */
};

static const struct scheme schemes[] = {
	{ "SHA512-CRYPT", "$6$", 0, "$6$" },
	{ "SHA256-CRYPT", "$5$", 0, "$5$" },
	{ "BLF-CRYPT", "$2y$", 10, "$2" },
	/* Any crypt(3) hash libxcrypt accepts; new ones are yescrypt ($y$). */
	{ "CRYPT", NULL, 0, "" },
};
#define SCHEME_CRYPT (&schemes[ARRAY_SIZE(schemes) - 1])

static const struct scheme *scheme_find(const char *name, size_t n)
{
	for (size_t i = 0; i < ARRAY_SIZE(schemes); i++) {
		if (strlen(schemes[i].name) == n && strncasecmp(schemes[i].name, name, n) == 0)
			return &schemes[i];
	}
	return NULL;
}

bool password_scheme_valid(const char *scheme)
{
	return scheme != NULL && scheme_find(scheme, strlen(scheme)) != NULL;
}

/* Equal strings, in time that depends only on the lengths. */
static bool ct_streq(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	volatile unsigned char d = (unsigned char)(la != lb);
	size_t n = la < lb ? la : lb;
	for (size_t i = 0; i < n; i++)
		d |= (unsigned char)(a[i] ^ b[i]);
	return d == 0;
}

static struct crypt_data *crypt_data_new(void)
{
	/* About 32 KiB: too big for a thread's stack. */
	return xcalloc(1, sizeof(struct crypt_data));
}

static void crypt_data_free(struct crypt_data *cd)
{
	explicit_bzero(cd, sizeof(*cd));
	free(cd);
}

char *password_hash(const char *password, const char *scheme, char **error_r)
{
	const struct scheme *s;
	char salt[CRYPT_GENSALT_OUTPUT_SIZE];

	if (scheme == NULL || (s = scheme_find(scheme, strlen(scheme))) == NULL) {
		fail(error_r, "unknown password scheme %s (use SHA512-CRYPT, SHA256-CRYPT, "
			      "BLF-CRYPT or CRYPT)", log_str(scheme));
		return NULL;
	}
	size_t n = password != NULL ? strlen(password) : 0;
	if (n == 0) {
		fail(error_r, "empty password");
		return NULL;
	}
	if (n > PASSWORD_MAX) {
		fail(error_r, "password longer than %d bytes", PASSWORD_MAX);
		return NULL;
	}
	if (strpbrk(password, "\r\n") != NULL) {
		fail(error_r, "password contains a line break");
		return NULL;
	}
	if (strcmp(s->name, "BLF-CRYPT") == 0 && n > BCRYPT_PASSWORD_MAX) {
		/* Refused rather than silently truncated. */
		fail(error_r, "BLF-CRYPT uses only the first %d bytes of a password; use a "
			      "shorter password or another scheme", BCRYPT_PASSWORD_MAX);
		return NULL;
	}
	/* NULL rbytes: libxcrypt takes the salt from the OS random source. */
	if (crypt_gensalt_rn(s->prefix, s->count, NULL, 0, salt, sizeof(salt)) == NULL) {
		fail(error_r, "cannot make a %s salt: %s", s->name, strerror(errno));
		return NULL;
	}
	struct crypt_data *cd = crypt_data_new();
	const char *h = crypt_r(password, salt, cd);
	char *out = NULL;
	if (h == NULL || h[0] == '*' || h[0] == '\0')
		fail(error_r, "crypt(3) failed for %s: %s", s->name, strerror(errno));
	else if (strpbrk(h, ":\r\n") != NULL) /* never happens with crypt(3) alphabets */
		fail(error_r, "crypt(3) returned a hash unfit for the users file");
	else
		out = xasprintf("{%s}%s", s->name, h);
	crypt_data_free(cd);
	return out;
}

bool password_verify(const char *password, const char *stored)
{
	const struct scheme *s = SCHEME_CRYPT;
	const char *hash = stored;

	if (password == NULL || stored == NULL)
		return false;
	size_t n = strlen(password);
	if (n == 0 || n > PASSWORD_MAX)
		return false;
	if (stored[0] == '{') {
		const char *end = strchr(stored, '}');
		if (end == NULL)
			return false;
		/* {PLAIN} and every scheme we do not know: never. */
		s = scheme_find(stored + 1, (size_t)(end - stored - 1));
		if (s == NULL)
			return false;
		hash = end + 1;
	}
	/* An empty hash, a locked one ("!..", "*.."), or one of another
	 * family than its scheme says (a DES hash under {SHA512-CRYPT}). */
	if (hash[0] == '\0' || hash[0] == '!' || hash[0] == '*' ||
	    strncmp(hash, s->family, strlen(s->family)) != 0 || strlen(hash) >= CRYPT_OUTPUT_SIZE)
		return false;

	struct crypt_data *cd = crypt_data_new();
	const char *h = crypt_r(password, hash, cd);
	bool ok = h != NULL && h[0] != '*' && h[0] != '\0' && ct_streq(h, hash);
	crypt_data_free(cd);
	return ok;
}

/* ------------------------------------------------------ users file lines */

/* One line of the file without its LF (a trailing CR is ignored).
 * Returns 1 for a user line (addr filled, normalised; *pw the password
 * field; *rest what follows the password field's ':' or {NULL, 0} when
 * there is none), 0 for a blank or comment line, -1 for an invalid line
 * (*why says what is wrong). */
static int line_parse(const char *line, size_t len, char addr[ADDR_SIZE], struct slice *pw,
		      struct slice *rest, const char **why)
{
	if (len > 0 && line[len - 1] == '\r')
		len--;
	size_t i = 0;
	while (i < len && (line[i] == ' ' || line[i] == '\t'))
		i++;
	if (i == len || line[i] == '#')
		return 0;
	if (memchr(line, '\0', len) != NULL) {
		*why = "NUL byte in line";
		return -1;
	}
	const char *colon = memchr(line, ':', len);
	if (colon == NULL) {
		*why = "no password field";
		return -1;
	}
	if (!address_normalize_n(line, (size_t)(colon - line), addr, ADDR_SIZE)) {
		*why = "invalid address";
		return -1;
	}
	const char *p = colon + 1, *end = line + len;
	const char *colon2 = memchr(p, ':', (size_t)(end - p));
	if (colon2 == NULL) {
		*pw = slice_make(p, (size_t)(end - p));
		*rest = slice_make(NULL, 0);
	} else {
		*pw = slice_make(p, (size_t)(colon2 - p));
		*rest = slice_make(colon2 + 1, (size_t)(end - colon2 - 1));
	}
	return 1;
}

/* Iterate over the lines of data (LF-terminated; the last may lack it). */
struct line_iter {
	const char *p, *end;
	unsigned lineno;
};

static bool line_next(struct line_iter *it, struct slice *line, struct slice *raw)
{
	if (it->p >= it->end)
		return false;
	const char *nl = memchr(it->p, '\n', (size_t)(it->end - it->p));
	const char *stop = nl != NULL ? nl : it->end;
	*line = slice_make(it->p, (size_t)(stop - it->p));
	*raw = slice_make(it->p, (size_t)((nl != NULL ? nl + 1 : it->end) - it->p));
	it->p = nl != NULL ? nl + 1 : it->end;
	it->lineno++;
	return true;
}

struct user_entry {
	char *addr;
	char *hash;
	unsigned lineno;
	bool dup; /* a later line of an address seen before */
};

struct user_table {
	struct user_entry *v;
	size_t n, cap;
};

static void table_clear(struct user_table *t)
{
	for (size_t i = 0; i < t->n; i++) {
		free(t->v[i].addr);
		if (t->v[i].hash != NULL) {
			explicit_bzero(t->v[i].hash, strlen(t->v[i].hash));
			free(t->v[i].hash);
		}
	}
	free(t->v);
	t->v = NULL;
	t->n = t->cap = 0;
}

static int entry_cmp_addr_line(const void *a, const void *b)
{
	const struct user_entry *x = *(const struct user_entry *const *)a;
	const struct user_entry *y = *(const struct user_entry *const *)b;
	int c = strcmp(x->addr, y->addr);
	if (c != 0)
		return c;
	return x->lineno < y->lineno ? -1 : x->lineno > y->lineno;
}

static int entry_cmp_addr(const void *a, const void *b)
{
	return strcmp(((const struct user_entry *)a)->addr, ((const struct user_entry *)b)->addr);
}

/* Parse the file's data into t, in file order; invalid lines and later
 * duplicates are logged (when warn) and marked or left out. */
static void users_parse(const char *path, const char *data, size_t len, struct user_table *t,
			bool warn)
{
	struct line_iter it = { data, data + len, 0 };
	struct slice line, raw, pw, rest;
	char addr[ADDR_SIZE];
	const char *why = NULL;

	while (line_next(&it, &line, &raw)) {
		int r = line_parse(line.p, line.len, addr, &pw, &rest, &why);
		if (r == 0)
			continue;
		if (r < 0) {
			if (warn)
				log_warnx(NULL, "%s:%u: %s, line ignored", path, it.lineno, why);
			continue;
		}
		if (t->n == t->cap) {
			t->cap = t->cap ? t->cap * 2 : 64;
			t->v = xrealloc(t->v, t->cap * sizeof(*t->v));
		}
		t->v[t->n++] = (struct user_entry){ xstrdup(addr), slice_dup(pw), it.lineno, false };
	}
	if (t->n < 2)
		return;
	/* Duplicates: sort pointers by (address, line), mark all but the first. */
	struct user_entry **idx = xmalloc(t->n * sizeof(*idx));
	for (size_t i = 0; i < t->n; i++)
		idx[i] = &t->v[i];
	qsort(idx, t->n, sizeof(*idx), entry_cmp_addr_line);
	for (size_t i = 1, first = 0; i < t->n; i++) {
		if (strcmp(idx[i]->addr, idx[first]->addr) != 0) {
			first = i;
			continue;
		}
		idx[i]->dup = true;
		if (warn)
			log_warnx(NULL, "%s:%u: user %s already on line %u, line ignored", path,
				  idx[i]->lineno, idx[i]->addr, idx[first]->lineno);
	}
	free(idx);
}

/* Read the whole file.  1 read, 0 it does not exist, -1 error. */
static int users_read(const char *path, struct buf *b, struct stat *st_r, char **error_r)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		return fail(error_r, "cannot open users file %s: %s", path, strerror(errno));
	}
	if (fstat(fd, st_r) < 0) {
		fail(error_r, "cannot stat users file %s: %s", path, strerror(errno));
		goto err;
	}
	if (!S_ISREG(st_r->st_mode)) {
		fail(error_r, "users file %s is not a regular file", path);
		goto err;
	}
	buf_init(b, USERS_FILE_MAX);
	for (;;) {
		char *space = buf_reserve(b, 65536);
		if (space == NULL) {
			fail(error_r, "users file %s is larger than %zu bytes", path, USERS_FILE_MAX);
			buf_free(b);
			goto err;
		}
		ssize_t n = read(fd, space, 65536);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fail(error_r, "cannot read users file %s: %s", path, strerror(errno));
			buf_free(b);
			goto err;
		}
		if (n == 0)
			break;
		buf_commit(b, (size_t)n);
	}
	close(fd);
	return 1;
err:
	close(fd);
	return -1;
}

/* ------------------------------------------------------------- userdb */

struct userdb {
	char *path;
	pthread_mutex_t lock;
	struct user_table users; /* sorted by address, no duplicates */
	bool loaded;             /* users reflects the file identified below */
	bool missing;            /* the file did not exist at the last look */
	bool failing;            /* the last load failed (logged once) */
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtim, ctim;
};

static bool same_file(const struct userdb *db, const struct stat *st)
{
	return db->dev == st->st_dev && db->ino == st->st_ino && db->size == st->st_size &&
	       db->mtim.tv_sec == st->st_mtim.tv_sec && db->mtim.tv_nsec == st->st_mtim.tv_nsec &&
	       db->ctim.tv_sec == st->st_ctim.tv_sec && db->ctim.tv_nsec == st->st_ctim.tv_nsec;
}

static void userdb_set_missing(struct userdb *db)
{
	if (!db->missing)
		log_warnx(NULL, "users file %s does not exist: no users", db->path);
	db->missing = true;
	db->failing = false;
	table_clear(&db->users);
	db->loaded = false;
}

/* With db->lock held: make db->users match the file.  0 or -1. */
static int userdb_refresh(struct userdb *db)
{
	struct stat st;
	struct buf b;
	char *error = NULL;

	if (stat(db->path, &st) < 0) {
		if (errno == ENOENT) {
			userdb_set_missing(db);
			return 0;
		}
		if (!db->failing)
			log_warn(NULL, "cannot stat users file %s", db->path);
		db->failing = true;
		return -1;
	}
	if (db->loaded && same_file(db, &st))
		return 0;

	int r = users_read(db->path, &b, &st, &error);
	if (r == 0) {
		userdb_set_missing(db);
		return 0;
	}
	if (r < 0) {
		if (!db->failing)
			log_errx(NULL, "%s", error);
		free(error);
		db->failing = true;
		return -1;
	}
	struct user_table t = { NULL, 0, 0 };
	users_parse(db->path, b.data, b.len, &t, true);
	explicit_bzero(b.data, b.len);
	buf_free(&b);
	/* Keep the first line of each address, sorted for bsearch. */
	size_t o = 0;
	for (size_t i = 0; i < t.n; i++) {
		if (t.v[i].dup) {
			free(t.v[i].addr);
			free(t.v[i].hash);
		} else {
			t.v[o++] = t.v[i];
		}
	}
	t.n = o;
	qsort(t.v, t.n, sizeof(*t.v), entry_cmp_addr);

	table_clear(&db->users);
	db->users = t;
	db->dev = st.st_dev;
	db->ino = st.st_ino;
	db->size = st.st_size;
	db->mtim = st.st_mtim;
	db->ctim = st.st_ctim;
	db->loaded = true;
	db->missing = false;
	db->failing = false;
	log_debug(NULL, "users file %s loaded: %zu users", db->path, t.n);
	return 0;
}

struct userdb *userdb_open(const char *path)
{
	struct userdb *db = xcalloc(1, sizeof(*db));
	db->path = xstrdup(path);
	pthread_mutex_init(&db->lock, NULL);
	/* Load now so a broken file is reported at start-up. */
	pthread_mutex_lock(&db->lock);
	(void)userdb_refresh(db);
	pthread_mutex_unlock(&db->lock);
	return db;
}

void userdb_free(struct userdb **dbp)
{
	struct userdb *db = *dbp;
	if (db == NULL)
		return;
	table_clear(&db->users);
	pthread_mutex_destroy(&db->lock);
	free(db->path);
	free(db);
	*dbp = NULL;
}

/* With the lock held: the entry of a normalised address or NULL. */
static const struct user_entry *userdb_find(const struct userdb *db, const char *addr)
{
	struct user_entry key = { (char *)addr, NULL, 0, false };
	if (db->users.n == 0)
		return NULL;
	return bsearch(&key, db->users.v, db->users.n, sizeof(key), entry_cmp_addr);
}

int userdb_exists(struct userdb *db, const char *addr)
{
	char norm[ADDR_SIZE];
	if (!user_address_normalize(addr, norm, sizeof(norm)))
		return 0;
	pthread_mutex_lock(&db->lock);
	int r = userdb_refresh(db);
	if (r == 0)
		r = userdb_find(db, norm) != NULL;
	pthread_mutex_unlock(&db->lock);
	return r;
}

int userdb_verify(struct userdb *db, const char *addr, const char *password)
{
	char norm[ADDR_SIZE];
	char *hash = NULL;

	if (user_address_normalize(addr, norm, sizeof(norm))) {
		pthread_mutex_lock(&db->lock);
		if (userdb_refresh(db) < 0) {
			pthread_mutex_unlock(&db->lock);
			return -1;
		}
		const struct user_entry *e = userdb_find(db, norm);
		if (e != NULL)
			hash = xstrdup(e->hash);
		pthread_mutex_unlock(&db->lock);
	}
	/* Hashing is slow: never under the lock.  An unknown user costs a
	 * hash too, so timing does not tell which users exist. */
	if (hash == NULL) {
		(void)password_verify(password, "{SHA512-CRYPT}$6$usersdummysalt$");
		return 0;
	}
	bool ok = password_verify(password, hash);
	explicit_bzero(hash, strlen(hash));
	free(hash);
	return ok ? 1 : 0;
}

/* --------------------------------------------------------- editing */

static int users_lock(const char *path, char **error_r)
{
	char *lockpath = xasprintf("%s.lock", path);
	int fd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
	if (fd < 0) {
		fail(error_r, "cannot open lock file %s: %s", lockpath, strerror(errno));
		free(lockpath);
		return -1;
	}
	while (flock(fd, LOCK_EX) < 0) {
		if (errno == EINTR)
			continue;
		fail(error_r, "cannot lock %s: %s", lockpath, strerror(errno));
		close(fd);
		free(lockpath);
		return -1;
	}
	free(lockpath);
	return fd;
}

static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	if (slash == NULL)
		return xstrdup(".");
	if (slash == path)
		return xstrdup("/");
	return xstrndup(path, (size_t)(slash - path));
}

/* Replace path with data: temp file beside it (mode and owner of the old
 * file when there is one, else 0600), fsync, rename, fsync the directory. */
static int users_write(const char *path, const char *data, size_t len, const struct stat *old,
		       char **error_r)
{
	char *tmp = xasprintf("%s.tmp.%ld", path, (long)getpid());
	char *dir = NULL;
	struct stat st;
	int fd = -1;

	(void)unlink(tmp); /* left over by a crashed run with our pid; we hold the lock */
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
	if (fd < 0) {
		fail(error_r, "cannot create %s: %s", tmp, strerror(errno));
		goto err;
	}
	if (old != NULL) {
		/* Keep what the admin set up (e.g. root:mailgw 0640, so the
		 * daemons can read it after dropping privileges). */
		if (fstat(fd, &st) < 0) {
			fail(error_r, "cannot stat %s: %s", tmp, strerror(errno));
			goto err;
		}
		if ((st.st_uid != old->st_uid || st.st_gid != old->st_gid) &&
		    fchown(fd, old->st_uid, old->st_gid) < 0) {
			fail(error_r, "cannot give %s the owner of %s (%ld:%ld): %s", tmp, path,
			     (long)old->st_uid, (long)old->st_gid, strerror(errno));
			goto err;
		}
		if (fchmod(fd, old->st_mode & 07777) < 0) {
			fail(error_r, "cannot chmod %s: %s", tmp, strerror(errno));
			goto err;
		}
	}
	if (write_full(fd, data, len) < 0) {
		fail(error_r, "cannot write %s: %s", tmp, strerror(errno));
		goto err;
	}
	if (fsync(fd) < 0) {
		fail(error_r, "cannot fsync %s: %s", tmp, strerror(errno));
		goto err;
	}
	if (close(fd) < 0) {
		fd = -1;
		fail(error_r, "cannot write %s: %s", tmp, strerror(errno));
		goto err;
	}
	fd = -1;
	if (rename(tmp, path) < 0) {
		fail(error_r, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
		goto err;
	}
	dir = dir_of(path);
	if (fsync_dir(dir) < 0) {
		/* The new file is in place; only its durability is in doubt. */
		fail(error_r, "cannot fsync directory %s: %s", dir, strerror(errno));
		free(dir);
		free(tmp);
		return -1;
	}
	free(dir);
	free(tmp);
	return 0;
err:
	if (fd >= 0)
		close(fd);
	(void)unlink(tmp);
	free(tmp);
	return -1;
}

/* The edit shared by set and del, under the lock: copy every line of the
 * file verbatim except those of addr.  For set, the first line of addr
 * gets the new hash (its fields after the password kept), or a new line
 * is appended when there was none; for del, they all go. */
struct edit {
	const char *addr;
	const char *hash;  /* "{SCHEME}..." for set; NULL for del */
	bool must_exist, must_not_exist;
};

static int users_edit(const char *path, const struct edit *ed, char **error_r)
{
	struct buf in, out;
	struct stat st;
	bool found = false;
	int ret = -1;

	int lockfd = users_lock(path, error_r);
	if (lockfd < 0) {
		/* No directory for the lock file: no users file either. */
		if (ed->must_exist && stat(path, &st) < 0 && errno == ENOENT) {
			if (error_r != NULL)
				free(*error_r);
			return fail(error_r, "no such user %s", ed->addr);
		}
		return -1;
	}
	int r = users_read(path, &in, &st, error_r);
	if (r < 0)
		goto out_unlock;
	if (r == 0)
		buf_init(&in, USERS_FILE_MAX);
	buf_init(&out, USERS_FILE_MAX + 4096);

	const char *data = in.data != NULL ? in.data : "";
	struct line_iter it = { data, data + in.len, 0 };
	struct slice line, raw, pw, rest;
	char addr[ADDR_SIZE];
	const char *why;
	int ok = 0;
	while (line_next(&it, &line, &raw)) {
		if (line_parse(line.p, line.len, addr, &pw, &rest, &why) != 1 ||
		    strcmp(addr, ed->addr) != 0) {
			ok |= buf_append(&out, raw.p, raw.len);
			if (raw.len == line.len) /* a last line without LF */
				ok |= buf_putc(&out, '\n');
			continue;
		}
		/* A line of addr: the first is replaced (set) or dropped (del);
		 * later duplicates, which never counted, are dropped too. */
		if (!found && ed->hash != NULL) {
			if (rest.p != NULL) {
				/* Keep uid, gid, ... extra fields as they were. */
				size_t rlen = rest.len;
				if (rlen > 0 && rest.p[rlen - 1] == '\r')
					rlen--;
				ok |= buf_printf(&out, "%s:%s:%.*s\n", ed->addr, ed->hash, (int)rlen,
						 rest.p);
			} else {
				ok |= buf_printf(&out, "%s:%s%s\n", ed->addr, ed->hash, EMPTY_FIELDS);
			}
		}
		found = true;
	}
	if (found && ed->must_not_exist) {
		fail(error_r, "user %s already exists", ed->addr);
		goto out_free;
	}
	if (!found && ed->must_exist) {
		fail(error_r, "no such user %s", ed->addr);
		goto out_free;
	}
	if (!found)
		ok |= buf_printf(&out, "%s:%s%s\n", ed->addr, ed->hash, EMPTY_FIELDS);
	if (ok != 0) {
		fail(error_r, "users file %s would be larger than %zu bytes", path,
		     (size_t)USERS_FILE_MAX);
		goto out_free;
	}
	ret = users_write(path, out.data != NULL ? out.data : "", out.len, r == 1 ? &st : NULL,
			  error_r);
out_free:
	if (in.data != NULL)
		explicit_bzero(in.data, in.len);
	if (out.data != NULL)
		explicit_bzero(out.data, out.len);
	buf_free(&in);
	buf_free(&out);
out_unlock:
	close(lockfd);
	return ret;
}

int users_file_set(const char *path, const char *addr, const char *password, const char *scheme,
		   bool must_exist, bool must_not_exist, char **error_r)
{
	char norm[ADDR_SIZE];
	if (!user_address_normalize(addr, norm, sizeof(norm)))
		return fail(error_r, "invalid address %s", log_str(addr));
	/* Hash before taking the lock: bcrypt and yescrypt take a while. */
	char *hash = password_hash(password, scheme, error_r);
	if (hash == NULL)
		return -1;
	struct edit ed = { norm, hash, must_exist, must_not_exist };
	int r = users_edit(path, &ed, error_r);
	explicit_bzero(hash, strlen(hash));
	free(hash);
	return r;
}

int users_file_del(const char *path, const char *addr, char **error_r)
{
	char norm[ADDR_SIZE];
	if (!user_address_normalize(addr, norm, sizeof(norm)))
		return fail(error_r, "invalid address %s", log_str(addr));
	struct edit ed = { norm, NULL, true, false };
	return users_edit(path, &ed, error_r);
}

int users_file_list(const char *path, void (*cb)(const char *addr, void *arg), void *arg,
		    char **error_r)
{
	/* No lock: writers replace the file by rename, so a read always
	 * sees one whole version, and listing needs no write access. */
	struct buf b;
	struct stat st;
	int r = users_read(path, &b, &st, error_r);
	if (r <= 0)
		return r;
	struct user_table t = { NULL, 0, 0 };
	users_parse(path, b.data, b.len, &t, true);
	explicit_bzero(b.data, b.len);
	buf_free(&b);
	for (size_t i = 0; i < t.n; i++) {
		if (!t.v[i].dup)
			cb(t.v[i].addr, arg);
	}
	table_clear(&t);
	return 0;
}
