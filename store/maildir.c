/*
 * maildir.c - Maildir file names and directory helpers.
 *
 * A message file is "<secs>.M<usecs>P<pid>Q<counter>R<random>.<host>,S=<size>,W=<vsize>"
 * (the base, unique and kept for the life of the message) in new/, or the
 * base plus ":2,<letters>" in cur/.  Letters are sorted ASCII: D(raft)
 * F(lagged) R(eplied) S(een) T(rashed); the others (xflags) are kept as
 * they are: P for passed, and a..z, the keyword letters that
 * dovecot-keywords names (keywords.c).
 */
#include "store/store-private.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const struct {
	char letter;
	unsigned flag;
} flag_letters[] = {
	{ 'D', STORE_DRAFT },
	{ 'F', STORE_FLAGGED },
	{ 'R', STORE_ANSWERED },
	{ 'S', STORE_SEEN },
	{ 'T', STORE_DELETED },
};

unsigned maildir_info_parse(const char *info, char xflags[STORE_XFLAGS_SIZE])
{
	bool seen[128] = { false };
	unsigned flags = 0;
	for (const unsigned char *p = (const unsigned char *)info; *p; p++) {
		if (*p <= ' ' || *p >= 0x7f)
			continue; /* not a letter anyone writes; dropped */
		bool known = false;
		for (size_t i = 0; i < ARRAY_SIZE(flag_letters); i++) {
			if (*p == (unsigned char)flag_letters[i].letter) {
				flags |= flag_letters[i].flag;
				known = true;
			}
		}
		if (!known)
			seen[*p] = true;
	}
	size_t n = 0;
	for (int c = 0x21; c < 0x7f && n + 1 < STORE_XFLAGS_SIZE; c++) {
		if (seen[c])
			xflags[n++] = (char)c;
	}
	xflags[n] = '\0';
	return flags;
}

char *maildir_file_name(const char *base, bool in_new, unsigned flags, const char *xflags)
{
	if (in_new)
		return xstrdup(base);
	bool set[128] = { false };
	for (size_t i = 0; i < ARRAY_SIZE(flag_letters); i++) {
		if (flags & flag_letters[i].flag)
			set[(unsigned char)flag_letters[i].letter] = true;
	}
	for (const unsigned char *p = (const unsigned char *)xflags; p && *p; p++) {
		if (*p > ' ' && *p < 0x7f && *p != '/')
			set[*p] = true;
	}
	char info[128];
	size_t n = 0;
	for (int c = 0x21; c < 0x7f; c++) {
		if (set[c])
			info[n++] = (char)c;
	}
	info[n] = '\0';
	return xasprintf("%s:2,%s", base, info);
}

char *maildir_msg_path(const char *folder_dir, const char *base, bool in_new, unsigned flags,
		       const char *xflags)
{
	char *fname = maildir_file_name(base, in_new, flags, xflags);
	char *path = xasprintf("%s/%s/%s", folder_dir, in_new ? "new" : "cur", fname);
	free(fname);
	return path;
}

int maildir_name_parse(const char *fname, struct maildir_name *name)
{
	memset(name, 0, sizeof(*name));
	if (fname[0] == '.' || fname[0] == '\0' || fname[0] == ':')
		return 0;
	const char *colon = strchr(fname, ':');
	if (colon == NULL) {
		name->base = xstrdup(fname);
		return 1;
	}
	if (strncmp(colon, ":2,", 3) != 0)
		return 0;
	name->base = xstrndup(fname, (size_t)(colon - fname));
	name->has_info = true;
	name->flags = maildir_info_parse(colon + 3, name->xflags);
	return 1;
}

static atomic_uint_fast64_t unique_counter;

char *maildir_unique(const struct store *st)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t q = atomic_fetch_add(&unique_counter, 1);
	uint32_t rnd;
	if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != (ssize_t)sizeof(rnd))
		rnd = (uint32_t)(ts.tv_nsec ^ (q * 2654435761u));
	return xasprintf("%lld.M%ldP%ldQ%" PRIu64 "R%08" PRIx32 ".%s", (long long)ts.tv_sec,
			 ts.tv_nsec / 1000, (long)getpid(), q, rnd, st->host);
}

char *maildir_hostname(void)
{
	char host[256];
	if (gethostname(host, sizeof(host)) < 0 || host[0] == '\0')
		strcpy(host, "localhost");
	host[sizeof(host) - 1] = '\0';
	char *out = xmalloc(4 * strlen(host) + 1);
	char *o = out;
	for (const char *p = host; *p; p++) {
		if (*p == '/') {
			memcpy(o, "\\057", 4), o += 4;
		} else if (*p == ':') {
			memcpy(o, "\\072", 4), o += 4;
		} else {
			*o++ = *p;
		}
	}
	*o = '\0';
	return out;
}

static bool base_field(const char *base, const char *key, uint64_t *val_r)
{
	const char *p = strstr(base, key);
	if (p == NULL)
		return false;
	p += strlen(key);
	if (*p < '0' || *p > '9')
		return false;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(p, &end, 10);
	if (errno != 0 || (*end != '\0' && *end != ','))
		return false;
	*val_r = v;
	return true;
}

bool maildir_base_vsize(const char *base, uint64_t *vsize_r)
{
	return base_field(base, ",W=", vsize_r);
}

int maildir_count_lf(int dirfd, const char *name, uint64_t *lines_r)
{
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -1;
	char buf[65536];
	uint64_t lines = 0;
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int err = errno;
			close(fd);
			errno = err;
			return -1;
		}
		if (n == 0)
			break;
		for (const char *p = buf, *end = buf + n; (p = memchr(p, '\n', (size_t)(end - p)));
		     p++)
			lines++;
	}
	close(fd);
	*lines_r = lines;
	return 0;
}

/* Does entry fname carry base (exactly, or followed by the info part)? */
static bool name_has_base(const char *fname, const char *base, size_t blen)
{
	return strncmp(fname, base, blen) == 0 && (fname[blen] == '\0' || fname[blen] == ':');
}

int maildir_find(const char *folder_dir, const char *base, char **fname_r, bool *in_new_r)
{
	static const char *const subs[] = { "new", "cur" };
	size_t blen = strlen(base);
	for (size_t i = 0; i < ARRAY_SIZE(subs); i++) {
		char *dir = xasprintf("%s/%s", folder_dir, subs[i]);
		DIR *d = opendir(dir);
		free(dir);
		if (d == NULL) {
			if (errno == ENOENT)
				continue;
			return -1;
		}
		struct dirent *de;
		while ((de = readdir(d)) != NULL) {
			if (de->d_name[0] != '.' && name_has_base(de->d_name, base, blen)) {
				*fname_r = xstrdup(de->d_name);
				*in_new_r = i == 0;
				closedir(d);
				return 1;
			}
		}
		closedir(d);
	}
	return 0;
}

/* Copy src into copy_tmp_dir/copy_tmp_name, fsync it, link it into
 * dirfd/name and remove the copy.  0 or -1 with errno. */
static int copy_file(const struct store *st, const char *src, int dirfd, const char *name,
		     char **error_r)
{
	char *unique = maildir_unique(st);
	char *tmp = xasprintf("%s/tmp/%s", st->root, unique);
	free(unique);
	int in = -1, out = -1, ret = -1;
	char buf[65536];
	in = open(src, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (in < 0) {
		store_error(error_r, "open(%s): %s", src, strerror(errno));
		goto done;
	}
	out = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (out < 0) {
		store_error(error_r, "open(%s): %s", tmp, strerror(errno));
		goto done;
	}
	for (;;) {
		ssize_t n = read(in, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			store_error(error_r, "read(%s): %s", src, strerror(errno));
			goto unlink;
		}
		if (n == 0)
			break;
		if (write_full(out, buf, (size_t)n) < 0) {
			store_error(error_r, "write(%s): %s", tmp, strerror(errno));
			goto unlink;
		}
	}
	if (fsync(out) < 0) {
		store_error(error_r, "fsync(%s): %s", tmp, strerror(errno));
		goto unlink;
	}
	if (linkat(AT_FDCWD, tmp, dirfd, name, 0) < 0) {
		/* A copy made by an earlier try (a retry) is fine; it cannot
		 * be the same inode, so compare sizes. */
		struct stat a, b;
		int err = errno;
		if (err != EEXIST || fstat(out, &a) < 0 ||
		    fstatat(dirfd, name, &b, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(b.st_mode) ||
		    a.st_size != b.st_size) {
			store_error(error_r, "link(%s, %s): %s", tmp, name, strerror(err));
			goto unlink;
		}
	}
	ret = 0;
unlink:
	if (unlink(tmp) < 0 && ret == 0)
		log_warn(NULL, "unlink(%s)", tmp);
done:
	if (in >= 0)
		close(in);
	if (out >= 0)
		close(out);
	free(tmp);
	return ret;
}

int maildir_link(const struct store *st, const char *src, int dirfd, const char *dir,
		 const char *name, char **error_r)
{
	if (linkat(AT_FDCWD, src, dirfd, name, 0) == 0)
		return 0;
	int err = errno;
	if (err == EXDEV || err == EMLINK || err == EPERM || err == ENOTSUP)
		return copy_file(st, src, dirfd, name, error_r);
	if (err == EEXIST) {
		/* The names are unique per message, so the name being there
		 * as the same file means this message was linked already (a
		 * retry after a failed index step). */
		struct stat a, b;
		if (stat(src, &a) == 0 && fstatat(dirfd, name, &b, AT_SYMLINK_NOFOLLOW) == 0 &&
		    a.st_dev == b.st_dev && a.st_ino == b.st_ino)
			return 0;
	}
	return store_error(error_r, "link(%s, %s/%s): %s", src, dir, name, strerror(err));
}

static int rm_rf_at(int parentfd, const char *name, int depth)
{
	if (depth > 16) {
		errno = ELOOP;
		return -1;
	}
	if (unlinkat(parentfd, name, 0) == 0 || errno == ENOENT)
		return 0;
	if (errno != EISDIR && errno != EPERM)
		return -1;
	int fd = openat(parentfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -1;
	DIR *d = fdopendir(fd);
	if (d == NULL) {
		close(fd);
		return -1;
	}
	int ret = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (rm_rf_at(fd, de->d_name, depth + 1) < 0)
			ret = -1;
	}
	closedir(d);
	if (unlinkat(parentfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
		ret = -1;
	return ret;
}

int maildir_rm_rf(int parentfd, const char *name)
{
	return rm_rf_at(parentfd, name, 0);
}

/* The pid in a name of ours ("<secs>.M<usecs>P<pid>Q<n>R<hex>.<host>"),
 * when the host part is this host's; 0 otherwise. */
static pid_t tmp_name_pid(const char *name, const char *host)
{
	const char *p = name;
	char *end;
	if (*p < '0' || *p > '9')
		return 0;
	strtoull(p, &end, 10);
	if (strncmp(end, ".M", 2) != 0)
		return 0;
	p = end + 2;
	if (*p < '0' || *p > '9')
		return 0;
	strtoull(p, &end, 10);
	if (*end != 'P' || end[1] < '0' || end[1] > '9')
		return 0;
	errno = 0;
	unsigned long long pid = strtoull(end + 1, &end, 10);
	if (errno != 0 || pid == 0 || pid > INT32_MAX || *end != 'Q')
		return 0;
	const char *r = strchr(end, 'R');
	const char *dot = r ? strchr(r, '.') : NULL;
	if (dot == NULL)
		return 0;
	size_t hl = strlen(host);
	if (strncmp(dot + 1, host, hl) != 0 || (dot[1 + hl] != '\0' && dot[1 + hl] != ','))
		return 0;
	return (pid_t)pid;
}

void maildir_clean_tmp(const struct store *st, const char *tmpdir)
{
	int fd = open(tmpdir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		if (errno != ENOENT)
			log_warn(NULL, "store %s: open(%s)", st->user, tmpdir);
		return;
	}
	DIR *d = fdopendir(fd);
	if (d == NULL) {
		close(fd);
		return;
	}
	time_t now = time(NULL);
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		struct stat sb;
		if (fstatat(fd, de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(sb.st_mode))
			continue;
		/* A file of a writer on this host whose pid is gone is
		 * abandoned.  One whose writer lives is judged by its ctime,
		 * not its mtime: a writer sets the mtime of its tmp file to the
		 * message's date (APPEND with an old date-time) before it links
		 * it.  Anything else (another host's, a foreign name) by age. */
		pid_t pid = tmp_name_pid(de->d_name, st->host);
		bool stale;
		if (pid > 0)
			stale = (kill(pid, 0) < 0 && errno == ESRCH) ||
				sb.st_ctime < now - STORE_TMP_MAX_AGE;
		else
			stale = sb.st_mtime < now - STORE_TMP_MAX_AGE;
		if (stale && unlinkat(fd, de->d_name, 0) < 0 && errno != ENOENT)
			log_warn(NULL, "store %s: unlink(%s/%s)", st->user, tmpdir, de->d_name);
	}
	closedir(d);
}
