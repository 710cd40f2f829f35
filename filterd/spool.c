/*
 * spool.c - the text of the message being received: in memory while it is
 * small, then in an unlinked temporary file (nothing is left behind by a
 * crash; the message is not ours until it is in the store).
 */
#include "filterd/filterd.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void spool_init(struct spool *sp, const char *dir)
{
	memset(sp, 0, sizeof(*sp));
	buf_init(&sp->mem, SPOOL_MEM_MAX);
	sp->fd = -1;
	sp->dir = dir;
}

void spool_reset(struct spool *sp)
{
	if (sp->fd >= 0)
		close(sp->fd);
	sp->fd = -1;
	/* Keep a small buffer for the next message; give back a big one. */
	if (sp->mem.cap > 64 * 1024)
		buf_free(&sp->mem);
	buf_reset(&sp->mem);
	sp->size = 0;
	sp->failed = false;
	sp->error = 0;
}

static int spool_spill(struct spool *sp)
{
	sp->fd = open(sp->dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (sp->fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
		char *path = xasprintf("%s/spool.XXXXXX", sp->dir);
		sp->fd = mkostemp(path, O_CLOEXEC);
		if (sp->fd >= 0)
			unlink(path);
		free(path);
	}
	if (sp->fd < 0)
		return -1;
	if (write_full(sp->fd, sp->mem.data, sp->mem.len) < 0)
		return -1;
	buf_free(&sp->mem);
	return 0;
}

int spool_write(struct spool *sp, const char *p, size_t n)
{
	if (sp->failed)
		return -1;
	if (sp->fd < 0 && buf_append(&sp->mem, p, n) == 0) {
		sp->size += n;
		return 0;
	}
	if ((sp->fd < 0 && spool_spill(sp) < 0) || write_full(sp->fd, p, n) < 0) {
		sp->failed = true;
		sp->error = errno;
		return -1;
	}
	sp->size += n;
	return 0;
}

int spool_copy_to(struct spool *sp, struct store_tmp *tmp, char **error_r)
{
	if (sp->fd < 0)
		return sp->mem.len ? store_tmp_write(tmp, sp->mem.data, sp->mem.len, error_r) : 0;
	char chunk[65536];
	off_t off = 0;
	for (;;) {
		ssize_t n = pread(sp->fd, chunk, sizeof(chunk), off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			*error_r = xasprintf("read spool: %s", strerror(errno));
			return -1;
		}
		if (n == 0)
			break;
		if (store_tmp_write(tmp, chunk, (size_t)n, error_r) < 0)
			return -1;
		off += n;
	}
	if ((uint64_t)off != sp->size) {
		*error_r = xasprintf("spool: read %lld of %llu bytes", (long long)off,
				     (unsigned long long)sp->size);
		return -1;
	}
	return 0;
}

int spool_read_head(struct spool *sp, struct buf *out, size_t max)
{
	if (sp->fd < 0) {
		size_t n = sp->mem.len < max ? sp->mem.len : max;
		return n ? buf_append(out, sp->mem.data, n) : 0;
	}
	char chunk[65536];
	off_t off = 0;
	while ((size_t)off < max) {
		size_t want = max - (size_t)off < sizeof(chunk) ? max - (size_t)off : sizeof(chunk);
		ssize_t n = pread(sp->fd, chunk, want, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -1 : 0;
		if (buf_append(out, chunk, (size_t)n) < 0)
			return -1;
		off += n;
	}
	return 0;
}
