/*
 * store.c - opening and closing a user's store, the special folders, and
 * folder names: validation and their Maildir++ encoding on disk.
 *
 * On disk a folder "Work/2026" is the directory ".Work.2026" (Maildir++,
 * '.' separates the levels).  Inside a component '.' and '%' are written
 * as %2E and %25, so every directory name maps to one folder name and
 * back; directories that are not the canonical encoding of a valid name
 * are ignored.
 */
#include "store/store-private.h"

#include <pthread.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

const char *const store_special_folders[] = {
	"INBOX", "Junk", "Whitelist", "Blacklist", "Sent", "Drafts", "Trash", NULL,
};

static const struct {
	const char *name;
	const char *use;
} special_uses[] = {
	{ "Junk", "\\Junk" },
	{ "Sent", "\\Sent" },
	{ "Drafts", "\\Drafts" },
	{ "Trash", "\\Trash" },
};

const char *store_special_use(const char *folder)
{
	if (folder == NULL)
		return NULL;
	for (size_t i = 0; i < ARRAY_SIZE(special_uses); i++) {
		if (strcmp(folder, special_uses[i].name) == 0)
			return special_uses[i].use;
	}
	return NULL;
}

bool store_folder_is_special(const char *folder)
{
	if (folder == NULL)
		return false;
	if (strcasecmp(folder, STORE_INBOX) == 0)
		return true;
	for (size_t i = 1; store_special_folders[i] != NULL; i++) {
		if (strcmp(folder, store_special_folders[i]) == 0)
			return true;
	}
	return false;
}

int store_error(char **error_r, const char *fmt, ...)
{
	if (error_r == NULL)
		return -1;
	va_list ap;
	char *s;
	va_start(ap, fmt);
	int n = vasprintf(&s, fmt, ap);
	va_end(ap);
	*error_r = n < 0 ? xstrdup("out of memory") : s;
	return -1;
}

/* ----------------------------------------------------------- folder names */

/* Length of the UTF-8 sequence at p (at most n bytes) when it is well
 * formed and not a control character (C0, DEL, C1); 0 otherwise. */
static size_t utf8_char(const unsigned char *p, size_t n)
{
	unsigned c = p[0];
	if (c < 0x20 || c == 0x7f)
		return 0;
	if (c < 0x80)
		return 1;
	size_t len;
	uint32_t cp, min;
	if ((c & 0xe0) == 0xc0) {
		len = 2, cp = c & 0x1f, min = 0x80;
	} else if ((c & 0xf0) == 0xe0) {
		len = 3, cp = c & 0x0f, min = 0x800;
	} else if ((c & 0xf8) == 0xf0) {
		len = 4, cp = c & 0x07, min = 0x10000;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	if (cp >= 0x80 && cp <= 0x9f) /* C1 controls */
		return 0;
	return len;
}

bool store_folder_name_valid(const char *name)
{
	if (name == NULL)
		return false;
	size_t n = strlen(name);
	if (n == 0 || n > STORE_FOLDER_NAME_MAX)
		return false;
	const unsigned char *p = (const unsigned char *)name;
	bool comp_start = true;
	for (size_t i = 0; i < n;) {
		if (p[i] == '/') {
			if (comp_start) /* empty component, leading '/' or "//" */
				return false;
			comp_start = true;
			i++;
			continue;
		}
		if (comp_start && p[i] == '.') /* ".", "..", ".hidden" */
			return false;
		comp_start = false;
		size_t len = utf8_char(p + i, n - i);
		if (len == 0)
			return false;
		i += len;
	}
	return !comp_start; /* no trailing '/' */
}

char *folder_name_normalize(const char *name)
{
	if (!store_folder_name_valid(name))
		return NULL;
	char *s = xstrdup(name);
	/* "INBOX" is case-insensitive, also as the first level of a name. */
	if (strncasecmp(s, STORE_INBOX, 5) == 0 && (s[5] == '\0' || s[5] == '/'))
		memcpy(s, STORE_INBOX, 5);
	return s;
}

char *folder_name_encode(const char *name)
{
	if (strcmp(name, STORE_INBOX) == 0)
		return NULL;
	size_t n = strlen(name);
	char *out = xmalloc(3 * n + 2);
	char *o = out;
	*o++ = '.';
	for (const char *p = name; *p; p++) {
		if (*p == '/') {
			*o++ = '.';
		} else if (*p == '.' || *p == '%' || (unsigned char)*p < 0x20 || *p == 0x7f) {
			o += sprintf(o, "%%%02X", (unsigned char)*p);
		} else {
			*o++ = *p;
		}
	}
	*o = '\0';
	return out;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

char *folder_name_decode(const char *dirname)
{
	if (dirname[0] != '.' || dirname[1] == '\0' || dirname[1] == '.')
		return NULL;
	size_t n = strlen(dirname);
	if (n > STORE_NAME_MAX)
		return NULL;
	char *name = xmalloc(n + 1);
	char *o = name;
	for (const char *p = dirname + 1; *p; p++) {
		if (*p == '.') {
			*o++ = '/';
		} else if (*p == '%') {
			int hi = hexval(p[1]), lo = hi < 0 ? -1 : hexval(p[2]);
			if (lo < 0) {
				free(name);
				return NULL;
			}
			*o++ = (char)(hi * 16 + lo);
			p += 2;
		} else {
			*o++ = *p;
		}
	}
	*o = '\0';
	/* Only the canonical encoding of a valid name is a folder; this also
	 * rejects "%00" and a ".INBOX" beside the real INBOX. */
	char *norm = folder_name_normalize(name);
	free(name);
	if (norm == NULL)
		return NULL;
	char *enc = folder_name_encode(norm);
	if (enc == NULL || strcmp(enc, dirname) != 0) {
		free(enc);
		free(norm);
		return NULL;
	}
	free(enc);
	return norm;
}

char *folder_dir(const struct store *st, const char *name)
{
	char *enc = folder_name_encode(name);
	if (enc == NULL)
		return xstrdup(st->root);
	char *dir = xasprintf("%s/%s", st->root, enc);
	free(enc);
	return dir;
}

/* -------------------------------------------------------------- the layout */

/* mkdir that tolerates an existing directory (not a symlink).  1 created,
 * 0 existed, -1 error. */
static int mkdir_one(const char *path, char **error_r)
{
	if (mkdir(path, 0700) == 0)
		return 1;
	int err = errno;
	struct stat sb;
	if (err == EEXIST && lstat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
		return 0;
	if (err == EEXIST)
		return store_error(error_r, "mkdir(%s): exists and is not a directory", path);
	return store_error(error_r, "mkdir(%s): %s", path, strerror(err));
}

int maildir_make(const char *dir, bool subfolder, char **error_r)
{
	static const char *const subdirs[] = { "cur", "new", "tmp" };
	bool created = false;
	int r = mkdir_one(dir, error_r);
	if (r < 0)
		return -1;
	bool dir_created = r > 0;
	for (size_t i = 0; i < ARRAY_SIZE(subdirs); i++) {
		char *p = xasprintf("%s/%s", dir, subdirs[i]);
		r = mkdir_one(p, error_r);
		free(p);
		if (r < 0)
			return -1;
		created |= r > 0;
	}
	if (subfolder) {
		char *p = xasprintf("%s/maildirfolder", dir);
		int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd >= 0) {
			close(fd);
			created = true;
		} else if (errno != EEXIST) {
			store_error(error_r, "open(%s): %s", p, strerror(errno));
			free(p);
			return -1;
		}
		free(p);
	}
	if ((created || dir_created) && fsync_dir(dir) < 0)
		return store_error(error_r, "fsync(%s): %s", dir, strerror(errno));
	if (dir_created) {
		char *parent = xstrdup(dir);
		char *slash = strrchr(parent, '/');
		if (slash != NULL && slash != parent)
			*slash = '\0';
		int fr = fsync_dir(parent);
		int err = errno;
		free(parent);
		if (fr < 0)
			return store_error(error_r, "fsync(parent of %s): %s", dir, strerror(err));
	}
	return 0;
}

/* A path component from the address: defence in depth on top of
 * user_address_valid(). */
static bool component_safe(const char *s, size_t n)
{
	if (n == 0 || s[0] == '.' || memchr(s, '/', n) != NULL || memchr(s, '\0', n) != NULL)
		return false;
	return true;
}

/* DATA_DIR/mail/DOMAIN/LOCALPART as an absolute path; the directories
 * above the root are created (and fsynced) when missing. */
static int make_root(const char *data_dir, const char *addr, char **root_r, char **error_r)
{
	const char *at = strrchr(addr, '@');
	if (at == NULL || !component_safe(addr, (size_t)(at - addr)) ||
	    !component_safe(at + 1, strlen(at + 1)))
		return store_error(error_r, "invalid user address: %s", log_str(addr));

	char *base;
	if (data_dir[0] == '/') {
		base = xstrdup(data_dir);
	} else {
		char *cwd = getcwd(NULL, 0);
		if (cwd == NULL)
			return store_error(error_r, "getcwd: %s", strerror(errno));
		base = xasprintf("%s/%s", cwd, data_dir);
		free(cwd);
	}
	size_t bl = strlen(base);
	while (bl > 1 && base[bl - 1] == '/')
		base[--bl] = '\0';

	char *mail = xasprintf("%s/mail", base);
	char *domain = xasprintf("%s/%.*s", mail, (int)strlen(at + 1), at + 1);
	char *root = xasprintf("%s/%.*s", domain, (int)(at - addr), addr);
	free(base);

	int ret = 0;
	struct stat sb;
	if (lstat(root, &sb) < 0) {
		/* A new user: create the path and make it durable before the
		 * first delivery can be acknowledged. */
		if (mkdir_p(root, 0700) < 0) {
			ret = store_error(error_r, "mkdir(%s): %s", root, strerror(errno));
		} else if (fsync_dir(mail) < 0 || fsync_dir(domain) < 0 || fsync_dir(root) < 0) {
			ret = store_error(error_r, "fsync(%s): %s", root, strerror(errno));
		} else {
			char *mail_parent = xstrdup(mail);
			*strrchr(mail_parent, '/') = '\0';
			(void)fsync_dir(mail_parent[0] ? mail_parent : "/");
			free(mail_parent);
		}
	} else if (!S_ISDIR(sb.st_mode)) {
		ret = store_error(error_r, "%s: not a directory", root);
	}
	free(mail);
	free(domain);
	if (ret < 0) {
		free(root);
		return -1;
	}
	*root_r = root;
	return 0;
}

/* Roots this process has already recovered (STORE_OPEN_RECOVER_ONCE). */
static pthread_mutex_t recovered_lock = PTHREAD_MUTEX_INITIALIZER;
static struct strlist recovered;

static bool recovered_before(const char *root)
{
	pthread_mutex_lock(&recovered_lock);
	bool found = false;
	for (size_t i = 0; i < recovered.n && !found; i++)
		found = strcmp(recovered.v[i], root) == 0;
	pthread_mutex_unlock(&recovered_lock);
	return found;
}

static void recovered_add(const char *root)
{
	pthread_mutex_lock(&recovered_lock);
	bool found = false;
	for (size_t i = 0; i < recovered.n && !found; i++)
		found = strcmp(recovered.v[i], root) == 0;
	if (!found)
		strlist_add(&recovered, root);
	pthread_mutex_unlock(&recovered_lock);
}

int store_open(const char *data_dir, const char *addr, struct store **st_r, char **error_r)
{
	return store_open_flags(data_dir, addr, 0, st_r, error_r);
}

int store_open_flags(const char *data_dir, const char *addr, unsigned flags, struct store **st_r,
		     char **error_r)
{
	*st_r = NULL;
	if (data_dir == NULL || data_dir[0] == '\0')
		return store_error(error_r, "store: no data directory");
	if (addr == NULL || !user_address_valid(addr))
		return store_error(error_r, "invalid user address: %s",
				   addr == NULL ? "(null)" : log_str(addr));

	struct store *st = xcalloc(1, sizeof(*st));
	st->user = xstrdup(addr);
	st->host = maildir_hostname();
	if (make_root(data_dir, addr, &st->root, error_r) < 0)
		goto fail;

	/* The special folders exist from the first open on. */
	for (size_t i = 0; store_special_folders[i] != NULL; i++) {
		char *dir = folder_dir(st, store_special_folders[i]);
		int r = maildir_make(dir, i > 0, error_r);
		free(dir);
		if (r < 0)
			goto fail;
	}
	if (index_open(st, error_r) < 0)
		goto fail;
	if (!(flags & STORE_OPEN_RECOVER_ONCE) || st->fresh_index || !recovered_before(st->root)) {
		if (store_recover(st, error_r) < 0)
			goto fail;
		if (flags & STORE_OPEN_RECOVER_ONCE)
			recovered_add(st->root);
	}
	*st_r = st;
	return 0;
fail:
	store_close(&st);
	return -1;
}

void store_suspend(struct store *st)
{
	if (st == NULL || st->db == NULL || store_in_batch(st))
		return;
	index_close(st);
}

int store_resume(struct store *st, char **error_r)
{
	if (st->db != NULL)
		return 0;
	if (index_reopen(st, error_r) < 0) {
		index_close(st);
		return -1;
	}
	return 0;
}

void store_close(struct store **stp)
{
	struct store *st = *stp;
	if (st == NULL)
		return;
	if (st->batch) {
		log_warnx(NULL, "store %s: closed inside a batch: rolled back", st->user);
		index_rollback(st);
		batch_abort(st);
	}
	if (st->app_free != NULL)
		st->app_free(st->app);
	index_close(st);
	kwcache_free(st);
	free(st->root);
	free(st->user);
	free(st->host);
	free(st->fi_name);
	free(st);
	*stp = NULL;
}

const char *store_root(const struct store *st)
{
	return st->root;
}

const char *store_user(const struct store *st)
{
	return st->user;
}

void store_set_app(struct store *st, void *app, void (*app_free)(void *))
{
	if (st->app_free != NULL && st->app != app)
		st->app_free(st->app);
	st->app = app;
	st->app_free = app_free;
}

void *store_app(const struct store *st)
{
	return st->app;
}
