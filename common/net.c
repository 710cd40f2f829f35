/*
 * net.c - listeners, buffered connections (plain or TLS) whose every read
 * and write waits at most a given timeout, the incremental line reader,
 * and connection counting per client IP.
 *
 * @UNSAFE: socket and buffer arithmetic.
 */
#include "common/common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

int net_parse_hostport(const char *s, struct sockaddr_storage *ss, socklen_t *len_r, char **error_r)
{
	char host[INET6_ADDRSTRLEN + 2];
	const char *colon = strrchr(s, ':');
	if (colon == NULL || colon == s) {
		*error_r = xasprintf("expected host:port, got \"%s\"", log_str(s));
		return -1;
	}
	const char *hs = s, *he = colon;
	if (*hs == '[') {
		if (he[-1] != ']') {
			*error_r = xasprintf("bad IPv6 address in \"%s\"", log_str(s));
			return -1;
		}
		hs++;
		he--;
	}
	if ((size_t)(he - hs) >= sizeof(host)) {
		*error_r = xasprintf("bad address in \"%s\"", log_str(s));
		return -1;
	}
	memcpy(host, hs, (size_t)(he - hs));
	host[he - hs] = '\0';

	char *end;
	errno = 0;
	long port = strtol(colon + 1, &end, 10);
	if (errno || *end || end == colon + 1 || port < 1 || port > 65535) {
		*error_r = xasprintf("bad port in \"%s\"", log_str(s));
		return -1;
	}
	memset(ss, 0, sizeof(*ss));
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	if (strcmp(host, "*") == 0 || strcmp(host, "0.0.0.0") == 0) {
		sin->sin_family = AF_INET;
		sin->sin_addr.s_addr = htonl(INADDR_ANY);
		sin->sin_port = htons((uint16_t)port);
		*len_r = sizeof(*sin);
	} else if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		*len_r = sizeof(*sin);
	} else if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		*len_r = sizeof(*sin6);
	} else {
		*error_r = xasprintf("not a numeric address: \"%s\"", log_str(host));
		return -1;
	}
	return 0;
}

int net_listen(const char *hostport, char **error_r)
{
	struct sockaddr_storage ss;
	socklen_t len;
	if (net_parse_hostport(hostport, &ss, &len, error_r) < 0)
		return -1;
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		*error_r = xasprintf("socket: %s", strerror(errno));
		return -1;
	}
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 1024) < 0) {
		*error_r = xasprintf("%s: %s", hostport, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

void net_addr_str(const struct sockaddr *sa, char *buf, size_t size)
{
	if (sa->sa_family == AF_INET) {
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, buf, (socklen_t)size);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
		if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr))
			inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12], buf, (socklen_t)size);
		else
			inet_ntop(AF_INET6, &s6->sin6_addr, buf, (socklen_t)size);
	} else {
		str_copy(buf, "unknown", size);
	}
}

/* ------------------------------------------------------------ connections */

#define CONN_READ_CHUNK 16384
#define CONN_WBUF_MAX (1024 * 1024) /* replies pending a flush; past it the connection fails */

struct conn {
	int fd;
	SSL *ssl;
	char ip[INET6_ADDRSTRLEN];
	struct buf rbuf;
	struct buf wbuf;
	bool werror;
	char tls_info[160];
};

struct conn *conn_new(int fd, const struct sockaddr *peer, size_t rbuf_max)
{
	struct conn *c = xcalloc(1, sizeof(*c));
	c->fd = fd;
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0 && !(fl & O_NONBLOCK))
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	if (peer)
		net_addr_str(peer, c->ip, sizeof(c->ip));
	else
		str_copy(c->ip, "unknown", sizeof(c->ip));
	buf_init(&c->rbuf, rbuf_max);
	buf_init(&c->wbuf, CONN_WBUF_MAX);
	return c;
}

void conn_free(struct conn **cp)
{
	struct conn *c = *cp;
	if (c == NULL)
		return;
	if (c->ssl) {
		SSL_shutdown(c->ssl); /* best effort close_notify; never blocks long (non-blocking fd) */
		SSL_free(c->ssl);
	}
	if (c->fd >= 0)
		close(c->fd);
	buf_free(&c->rbuf);
	buf_free(&c->wbuf);
	free(c);
	*cp = NULL;
}

int conn_fd(const struct conn *c)
{
	return c->fd;
}

const char *conn_peer_ip(const struct conn *c)
{
	return c->ip;
}

struct buf *conn_rbuf(struct conn *c)
{
	return &c->rbuf;
}

/* Wait for events on the socket until the deadline; 1 ready, 0 timeout, -1 error. */
static int wait_fd(int fd, short events, int64_t deadline)
{
	for (;;) {
		int64_t left = deadline - clock_mono_ms();
		if (left <= 0)
			return 0;
		struct pollfd pfd = { .fd = fd, .events = events };
		int r = poll(&pfd, 1, left > INT32_MAX ? INT32_MAX : (int)left);
		if (r > 0)
			return 1;
		if (r == 0)
			return 0;
		if (errno != EINTR)
			return -1;
	}
}

enum conn_status conn_fill(struct conn *c, int timeout_ms)
{
	int64_t deadline = clock_mono_ms() + timeout_ms;
	size_t room = c->rbuf.max - c->rbuf.len;
	if (room == 0)
		return CONN_LIMIT;
	if (room > CONN_READ_CHUNK)
		room = CONN_READ_CHUNK;
	char *p = buf_reserve(&c->rbuf, room);
	if (p == NULL)
		return CONN_LIMIT;

	for (;;) {
		if (c->ssl) {
			ERR_clear_error();
			int n = SSL_read(c->ssl, p, (int)room);
			if (n > 0) {
				buf_commit(&c->rbuf, (size_t)n);
				return CONN_OK;
			}
			int e = SSL_get_error(c->ssl, n);
			short ev;
			if (e == SSL_ERROR_WANT_READ)
				ev = POLLIN;
			else if (e == SSL_ERROR_WANT_WRITE)
				ev = POLLOUT;
			else if (e == SSL_ERROR_ZERO_RETURN)
				return CONN_EOF;
			else if (e == SSL_ERROR_SYSCALL && errno == 0)
				return CONN_EOF;
			else
				return CONN_ERROR;
			int w = wait_fd(c->fd, ev, deadline);
			if (w == 0)
				return CONN_TIMEOUT;
			if (w < 0)
				return CONN_ERROR;
			continue;
		}
		ssize_t n = recv(c->fd, p, room, 0);
		if (n > 0) {
			buf_commit(&c->rbuf, (size_t)n);
			return CONN_OK;
		}
		if (n == 0)
			return CONN_EOF;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return errno == ECONNRESET ? CONN_EOF : CONN_ERROR;
		int w = wait_fd(c->fd, POLLIN, deadline);
		if (w == 0)
			return CONN_TIMEOUT;
		if (w < 0)
			return CONN_ERROR;
	}
}

bool conn_tls_buffered(struct conn *c)
{
	return c->ssl && SSL_pending(c->ssl) > 0;
}

bool conn_input_pending(struct conn *c)
{
	if (c->rbuf.len > 0)
		return true;
	if (c->ssl && SSL_pending(c->ssl) > 0)
		return true;
	char ch;
	ssize_t n = recv(c->fd, &ch, 1, MSG_PEEK | MSG_DONTWAIT);
	return n > 0;
}

void conn_write(struct conn *c, const void *p, size_t n)
{
	if (buf_append(&c->wbuf, p, n) < 0)
		c->werror = true;
}

char *conn_read_line(struct conn *c, size_t max, int timeout_ms)
{
	struct linereader lr = { .max = max };
	bool toolong = false;
	for (;;) {
		struct slice l;
		bool crlf;
		size_t consumed;
		enum line_status ls = linereader_next(&lr, c->rbuf.data, c->rbuf.len, &l, &crlf, &consumed);
		if (ls == LINE_OK) {
			char *line = toolong ? xstrdup("") : slice_dup(l);
			buf_consume(&c->rbuf, consumed);
			return line;
		}
		buf_consume(&c->rbuf, consumed);
		if (ls == LINE_TOOLONG)
			toolong = true; /* skipped to its end, then "" */
		if (toolong && !lr.discarding)
			return xstrdup("");
		if (consumed)
			continue;
		if (conn_flush(c, timeout_ms) != CONN_OK || conn_fill(c, timeout_ms) != CONN_OK)
			return NULL;
	}
}

void conn_release_buffers(struct conn *c)
{
	if (c->rbuf.len == 0)
		buf_free(&c->rbuf);
	if (c->wbuf.len == 0)
		buf_free(&c->wbuf);
}

size_t conn_pending(const struct conn *c)
{
	return c->wbuf.len;
}

void conn_printf(struct conn *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (buf_vprintf(&c->wbuf, fmt, ap) < 0)
		c->werror = true;
	va_end(ap);
}

enum conn_status conn_flush(struct conn *c, int timeout_ms)
{
	int64_t deadline = clock_mono_ms() + timeout_ms;
	size_t off = 0;
	enum conn_status st = CONN_OK;

	if (c->werror)
		return CONN_ERROR;
	while (off < c->wbuf.len) {
		size_t left = c->wbuf.len - off;
		short ev;
		if (c->ssl) {
			ERR_clear_error();
			int n = SSL_write(c->ssl, c->wbuf.data + off, left > INT32_MAX ? INT32_MAX : (int)left);
			if (n > 0) {
				off += (size_t)n;
				continue;
			}
			int e = SSL_get_error(c->ssl, n);
			if (e == SSL_ERROR_WANT_READ)
				ev = POLLIN;
			else if (e == SSL_ERROR_WANT_WRITE)
				ev = POLLOUT;
			else {
				st = CONN_ERROR;
				break;
			}
		} else {
			ssize_t n = send(c->fd, c->wbuf.data + off, left, MSG_NOSIGNAL);
			if (n > 0) {
				off += (size_t)n;
				continue;
			}
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
				st = CONN_ERROR;
				break;
			}
			ev = POLLOUT;
		}
		int w = wait_fd(c->fd, ev, deadline);
		if (w <= 0) {
			st = w == 0 ? CONN_TIMEOUT : CONN_ERROR;
			break;
		}
	}
	if (c->wbuf.cap > 64 * 1024)
		buf_free(&c->wbuf); /* do not keep a burst's buffer for the session's life */
	else
		buf_reset(&c->wbuf);
	if (st != CONN_OK)
		c->werror = true;
	return st;
}

enum conn_status conn_tls_accept(struct conn *c, SSL_CTX *ctx, int timeout_ms, const char **error_r)
{
	int64_t deadline = clock_mono_ms() + timeout_ms;
	if (c->ssl) {
		*error_r = "TLS already active";
		return CONN_ERROR;
	}
	c->ssl = SSL_new(ctx);
	if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1) {
		*error_r = "cannot create TLS session";
		return CONN_ERROR;
	}
	for (;;) {
		ERR_clear_error();
		int r = SSL_accept(c->ssl);
		if (r == 1)
			break;
		int e = SSL_get_error(c->ssl, r);
		short ev;
		if (e == SSL_ERROR_WANT_READ)
			ev = POLLIN;
		else if (e == SSL_ERROR_WANT_WRITE)
			ev = POLLOUT;
		else {
			unsigned long le = ERR_peek_last_error();
			static __thread char msg[160];
			if (le) {
				snprintf(msg, sizeof(msg), "TLS handshake failed: %s", ERR_reason_error_string(le));
				*error_r = msg;
			} else {
				*error_r = "TLS handshake failed: connection closed";
			}
			return CONN_ERROR;
		}
		int w = wait_fd(c->fd, ev, deadline);
		if (w == 0) {
			*error_r = "TLS handshake timed out";
			return CONN_TIMEOUT;
		}
		if (w < 0) {
			*error_r = "TLS handshake: poll failed";
			return CONN_ERROR;
		}
	}
	snprintf(c->tls_info, sizeof(c->tls_info), "%s cipher=%s", SSL_get_version(c->ssl),
		 SSL_get_cipher_name(c->ssl));
	return CONN_OK;
}

bool conn_is_tls(const struct conn *c)
{
	return c->ssl != NULL && c->tls_info[0] != '\0';
}

const char *conn_tls_info(const struct conn *c)
{
	return c->tls_info;
}

const char *conn_tls_version(const struct conn *c)
{
	return c->ssl ? SSL_get_version(c->ssl) : "";
}

const char *conn_tls_cipher(const struct conn *c)
{
	return c->ssl ? SSL_get_cipher_name(c->ssl) : "";
}

/* ------------------------------------------------------------ line reader */

enum line_status linereader_next(struct linereader *lr, const char *in, size_t inlen,
				 struct slice *line, bool *crlf_r, size_t *consumed)
{
	*consumed = 0;
	if (inlen == 0)
		return LINE_MORE;
	const char *nl = memchr(in, '\n', inlen);
	if (lr->discarding) {
		/* The rest of an over-long line, already reported. */
		if (nl == NULL) {
			*consumed = inlen;
			return LINE_MORE;
		}
		*consumed = (size_t)(nl - in) + 1;
		lr->discarding = false;
		return LINE_MORE;
	}
	if (nl == NULL) {
		if (inlen > lr->max + 1) { /* +1: a CR may still come before the LF */
			*consumed = inlen;
			lr->discarding = true;
			return LINE_TOOLONG;
		}
		return LINE_MORE;
	}
	size_t n = (size_t)(nl - in);
	bool crlf = n > 0 && in[n - 1] == '\r';
	size_t content = crlf ? n - 1 : n;
	*consumed = n + 1;
	if (content > lr->max)
		return LINE_TOOLONG;
	*line = slice_make(in, content);
	*crlf_r = crlf;
	return LINE_OK;
}

/* ------------------------------------------------------ connection limits */

#define CL_BUCKETS 256

struct cl_entry {
	struct cl_entry *next;
	int64_t count;
	char ip[INET6_ADDRSTRLEN];
};

struct connlimit {
	pthread_mutex_t lock;
	int64_t max_total, max_per_ip, total;
	struct cl_entry *bucket[CL_BUCKETS];
};

static unsigned cl_hash(const char *s)
{
	unsigned h = 2166136261u;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h % CL_BUCKETS;
}

struct connlimit *connlimit_new(int64_t max_total, int64_t max_per_ip)
{
	struct connlimit *cl = xcalloc(1, sizeof(*cl));
	pthread_mutex_init(&cl->lock, NULL);
	cl->max_total = max_total;
	cl->max_per_ip = max_per_ip;
	return cl;
}

void connlimit_free(struct connlimit **clp)
{
	struct connlimit *cl = *clp;
	if (cl == NULL)
		return;
	for (int i = 0; i < CL_BUCKETS; i++) {
		while (cl->bucket[i]) {
			struct cl_entry *e = cl->bucket[i];
			cl->bucket[i] = e->next;
			free(e);
		}
	}
	pthread_mutex_destroy(&cl->lock);
	free(cl);
	*clp = NULL;
}

void connlimit_set(struct connlimit *cl, int64_t max_total, int64_t max_per_ip)
{
	pthread_mutex_lock(&cl->lock);
	cl->max_total = max_total;
	cl->max_per_ip = max_per_ip;
	pthread_mutex_unlock(&cl->lock);
}

int connlimit_acquire(struct connlimit *cl, const char *ip)
{
	int r = 0;
	unsigned h = cl_hash(ip);
	pthread_mutex_lock(&cl->lock);
	struct cl_entry *e = cl->bucket[h];
	while (e && strcmp(e->ip, ip) != 0)
		e = e->next;
	if (cl->total >= cl->max_total) {
		r = -1;
	} else if (e && e->count >= cl->max_per_ip) {
		r = -2;
	} else {
		if (e == NULL) {
			e = xcalloc(1, sizeof(*e));
			str_copy(e->ip, ip, sizeof(e->ip));
			e->next = cl->bucket[h];
			cl->bucket[h] = e;
		}
		e->count++;
		cl->total++;
	}
	pthread_mutex_unlock(&cl->lock);
	return r;
}

void connlimit_release(struct connlimit *cl, const char *ip)
{
	unsigned h = cl_hash(ip);
	pthread_mutex_lock(&cl->lock);
	struct cl_entry **pp = &cl->bucket[h];
	while (*pp && strcmp((*pp)->ip, ip) != 0)
		pp = &(*pp)->next;
	if (*pp == NULL) {
		pthread_mutex_unlock(&cl->lock);
		log_panic(NULL, "connlimit_release: %s was never acquired", ip);
	}
	cl->total--;
	if (--(*pp)->count == 0) {
		struct cl_entry *e = *pp;
		*pp = e->next;
		free(e);
	}
	pthread_mutex_unlock(&cl->lock);
}

int64_t connlimit_count(struct connlimit *cl)
{
	pthread_mutex_lock(&cl->lock);
	int64_t n = cl->total;
	pthread_mutex_unlock(&cl->lock);
	return n;
}
