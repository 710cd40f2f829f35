/*
 * pop3bench - a POP3 load generator for make bench.
 *
 *   pop3bench -p PORT -u USER%d -w PASSWORD -c CLIENTS -n MESSAGES
 *
 * Each client thread logs in as its own user (USER with %d replaced by
 * the client number: a POP3 maildrop is locked per session), then STAT,
 * UIDL, RETR of every message 1..MESSAGES and QUIT.  Every reply is
 * checked: +OK, the UIDL count, each RETR's octets equal to LIST's and the
 * message ends with CRLF "." CRLF.  Prints one line:
 *   pop3 clients=C msgs=N secs=S rate=R mb_s=M p50_ms=P p99_ms=Q errors=E
 * where rate counts RETRs per second over all clients and the latencies
 * are of single RETRs.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int port, nclients, nmsgs;
static const char *user_fmt, *password;
static double *lat;          /* nclients * nmsgs RETR latencies, ms */
static long long bytes_total;
static int errors;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

struct cl {
	int fd;
	char buf[65536];
	size_t len, off;
};

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int fill(struct cl *c)
{
	if (c->off > 0 && c->off == c->len)
		c->off = c->len = 0;
	if (c->len == sizeof(c->buf)) {
		memmove(c->buf, c->buf + c->off, c->len - c->off);
		c->len -= c->off;
		c->off = 0;
	}
	ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
	if (n <= 0)
		return -1;
	c->len += (size_t)n;
	return 0;
}

/* One line without CRLF into out (truncated to size); -1 on EOF. */
static int line(struct cl *c, char *out, size_t size, size_t *len_r)
{
	for (;;) {
		char *nl = memchr(c->buf + c->off, '\n', c->len - c->off);
		if (nl) {
			size_t l = (size_t)(nl - (c->buf + c->off));
			size_t k = l && c->buf[c->off + l - 1] == '\r' ? l - 1 : l;
			size_t cp = k < size - 1 ? k : size - 1;
			memcpy(out, c->buf + c->off, cp);
			out[cp] = '\0';
			if (len_r)
				*len_r = l + 1;
			c->off += l + 1;
			return 0;
		}
		if (c->off > 0) {
			memmove(c->buf, c->buf + c->off, c->len - c->off);
			c->len -= c->off;
			c->off = 0;
		}
		if (fill(c) < 0)
			return -1;
	}
}

static int cmd(struct cl *c, const char *fmt, const char *arg, char *reply, size_t size)
{
	char out[512];
	int n = snprintf(out, sizeof(out), fmt, arg);
	if (send(c->fd, out, (size_t)n, MSG_NOSIGNAL) != n)
		return -1;
	if (line(c, reply, size, NULL) < 0)
		return -1;
	return strncmp(reply, "+OK", 3) == 0 ? 0 : -1;
}

static void *client(void *arg)
{
	long id = (long)arg;
	char user[256], r[1024];
	snprintf(user, sizeof(user), user_fmt, (int)id);
	struct cl *c = calloc(1, sizeof(*c));
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	int bad = 0;
	long long bytes = 0;
	if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || line(c, r, sizeof(r), NULL) < 0 ||
	    cmd(c, "USER %s\r\n", user, r, sizeof(r)) < 0 || cmd(c, "PASS %s\r\n", password, r, sizeof(r)) < 0 ||
	    cmd(c, "STAT\r\n", NULL, r, sizeof(r)) < 0) {
		fprintf(stderr, "pop3bench: client %ld: login/STAT failed: %s\n", id, r);
		bad++;
		goto out;
	}
	int count = atoi(r + 4);
	if (count < nmsgs) {
		fprintf(stderr, "pop3bench: client %ld: %d messages, want %d\n", id, count, nmsgs);
		bad++;
		goto out;
	}
	if (cmd(c, "UIDL\r\n", NULL, r, sizeof(r)) < 0) {
		bad++;
		goto out;
	}
	int uidls = 0;
	for (;;) {
		if (line(c, r, sizeof(r), NULL) < 0) {
			bad++;
			goto out;
		}
		if (strcmp(r, ".") == 0)
			break;
		uidls++;
	}
	if (uidls != count) {
		fprintf(stderr, "pop3bench: client %ld: UIDL listed %d of %d\n", id, uidls, count);
		bad++;
	}
	for (int m = 1; m <= nmsgs; m++) {
		char num[32];
		snprintf(num, sizeof(num), "%d", m);
		double t0 = now_ms();
		if (cmd(c, "RETR %s\r\n", num, r, sizeof(r)) < 0) {
			fprintf(stderr, "pop3bench: client %ld: RETR %d: %s\n", id, m, r);
			bad++;
			break;
		}
		long long want = atoll(r + 4), got = 0;
		for (;;) {
			size_t l;
			if (line(c, r, sizeof(r), &l) < 0) {
				bad++;
				goto out;
			}
			if (strcmp(r, ".") == 0 && l == 3)
				break;
			/* Dot-stuffed lines count one octet less. */
			got += (long long)l - (r[0] == '.' ? 1 : 0);
		}
		lat[(id * nmsgs) + m - 1] = now_ms() - t0;
		if (got != want) {
			fprintf(stderr, "pop3bench: client %ld: RETR %d: %lld octets, said %lld\n", id, m, got, want);
			bad++;
		}
		bytes += got;
	}
	if (cmd(c, "QUIT\r\n", NULL, r, sizeof(r)) < 0)
		bad++;
out:
	close(c->fd);
	free(c);
	pthread_mutex_lock(&mu);
	errors += bad;
	bytes_total += bytes;
	pthread_mutex_unlock(&mu);
	return NULL;
}

static int dcmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	int opt;
	user_fmt = "pop%d@example.test";
	password = "pw";
	nclients = 20;
	nmsgs = 100;
	while ((opt = getopt(argc, argv, "p:u:w:c:n:")) != -1) {
		switch (opt) {
		case 'p':
			port = atoi(optarg);
			break;
		case 'u':
			user_fmt = optarg;
			break;
		case 'w':
			password = optarg;
			break;
		case 'c':
			nclients = atoi(optarg);
			break;
		case 'n':
			nmsgs = atoi(optarg);
			break;
		default:
			fprintf(stderr, "usage: pop3bench -p PORT [-u USER%%d] [-w PASS] [-c N] [-n N]\n");
			return 2;
		}
	}
	if (port <= 0 || nclients <= 0 || nmsgs <= 0) {
		fprintf(stderr, "pop3bench: -p PORT is required\n");
		return 2;
	}
	lat = calloc((size_t)nclients * (size_t)nmsgs, sizeof(double));
	pthread_t *t = calloc((size_t)nclients, sizeof(pthread_t));
	double t0 = now_ms();
	for (long i = 0; i < nclients; i++)
		pthread_create(&t[i], NULL, client, (void *)i);
	for (int i = 0; i < nclients; i++)
		pthread_join(t[i], NULL);
	double secs = (now_ms() - t0) / 1e3;
	size_t n = (size_t)nclients * (size_t)nmsgs;
	qsort(lat, n, sizeof(double), dcmp);
	printf("pop3 clients=%d msgs=%d secs=%.3f rate=%.1f mb_s=%.1f p50_ms=%.2f p99_ms=%.2f errors=%d\n",
	       nclients, nmsgs, secs, n / secs, bytes_total / secs / 1e6, lat[n / 2],
	       lat[(size_t)(n * 0.99)], errors);
	return errors ? 1 : 0;
}
