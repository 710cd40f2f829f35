/*
 * smtpbench - an SMTP load generator for filterd.
 *
 *   smtpbench -p PORT [-H HOST] -c CLIENTS -n MESSAGES -s BYTES -t RCPT
 *             [-f SENDER] [-k | -r] [-P] [-m FILE]
 *   smtpbench -p PORT [-H HOST] -I CONNECTIONS [-w SECONDS]
 *   smtpbench -F [-H HOST]
 *
 * Load mode: CLIENTS threads share MESSAGES messages of BYTES octets
 * each.  With -k (the default) a thread opens one connection, says EHLO
 * once and sends all its messages over it (MAIL, RCPT, DATA, body, dot);
 * with -r it opens a new connection (and says EHLO and QUIT) for every
 * message.  -P pipelines MAIL, RCPT and DATA in one write (the server
 * advertises PIPELINING).  The latency of a message runs from sending
 * MAIL to receiving the reply after the final dot; only messages answered
 * "250 2.0.0 Ok: queued as" count as ok (and in the percentiles).
 * Prints one line:
 *
 *   clients=C size=S msgs=N ok=K secs=T rate=R p50_ms=A p99_ms=B
 *
 * (rate = ok messages per wall-clock second) and, when some messages
 * failed, the first failure on stderr.  Exit status 0 when every message
 * was accepted, 1 otherwise, 2 on usage errors.
 *
 * Idle mode (-I N): open N connections, read each banner and say EHLO,
 * print "idle_ready connections=M" (M = how many got there) and flush,
 * hold them for -w seconds (default 10) or until SIGTERM/SIGINT, then QUIT
 * and close them all and print "idle_closed".
 *
 * -F prints a TCP port on HOST that is free now and exits (for scripts).
 *
 * Message text is realistic: From, To, Subject, Date, Message-ID and
 * MIME headers, then lines of words of at most 78 characters, CRLF line
 * ends, no line starting with a dot; the whole message is exactly BYTES
 * octets (at least a few hundred: the headers).  With -m FILE every
 * transaction sends that message instead (LF or CRLF line ends, sent with
 * CRLF and dot-stuffed; -s is then ignored): a DKIM-signed message for
 * the benchmark of the sender checks.
 */
#include "common/common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define IO_TIMEOUT_S 120
#define LINE_MAX_OUT 78

struct opts {
	const char *host;
	int port;
	int clients;
	long messages;
	long size;
	const char *rcpt;
	const char *sender;
	bool reconnect;
	bool pipeline;
	int idle;
	int idle_secs;
	char *file_msg;    /* -m: the message, ready to send (with the dot) */
	size_t file_len;
};

static struct opts opt = {
	.host = "127.0.0.1",
	.clients = 1,
	.messages = 100,
	.size = 5 * 1024,
	.sender = "sender@bench.example.org",
	.idle_secs = 10,
};

static struct sockaddr_storage peer;
static socklen_t peer_len;

/* The first failure, reported once on stderr. */
static pthread_mutex_t err_lock = PTHREAD_MUTEX_INITIALIZER;
static char first_error[512];
static long n_errors;

static void note_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note_error(const char *fmt, ...)
{
	pthread_mutex_lock(&err_lock);
	if (n_errors++ == 0) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(first_error, sizeof(first_error), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&err_lock);
}

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* ------------------------------------------------------------ connection */

struct conn {
	int fd;
	char buf[8192];
	size_t start, end;
	char line[1024]; /* the last reply line read, without CRLF */
};

/* One line into c->line; 0 or -1 (error or EOF). */
static int read_line(struct conn *c)
{
	size_t n = 0;
	for (;;) {
		while (c->start < c->end) {
			char ch = c->buf[c->start++];
			if (ch == '\n') {
				if (n > 0 && c->line[n - 1] == '\r')
					n--;
				c->line[n] = '\0';
				return 0;
			}
			if (n < sizeof(c->line) - 1)
				c->line[n++] = ch;
		}
		ssize_t r = recv(c->fd, c->buf, sizeof(c->buf), 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		c->start = 0;
		c->end = (size_t)r;
	}
}

/* A whole (possibly multi-line) reply; its code, or -1.  c->line holds
 * the last line. */
static int read_reply(struct conn *c)
{
	for (;;) {
		if (read_line(c) < 0)
			return -1;
		const char *l = c->line;
		if (strlen(l) < 3 || l[0] < '1' || l[0] > '5')
			return -1;
		if (l[3] != '-')
			return (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
	}
}

static int conn_open(struct conn *c)
{
	c->start = c->end = 0;
	c->line[0] = '\0';
	c->fd = socket(peer.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return -1;
	struct timeval tv = { .tv_sec = IO_TIMEOUT_S };
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd, (struct sockaddr *)&peer, peer_len) < 0) {
		close(c->fd);
		c->fd = -1;
		return -1;
	}
	return 0;
}

static void conn_close(struct conn *c, bool quit)
{
	if (c->fd < 0)
		return;
	if (quit && write_full(c->fd, "QUIT\r\n", 6) == 0)
		(void)read_reply(c);
	close(c->fd);
	c->fd = -1;
}

/* Connect, read the banner, say EHLO.  0 or -1 (noted). */
static int session_start(struct conn *c)
{
	if (conn_open(c) < 0) {
		note_error("connect: %s", strerror(errno));
		return -1;
	}
	int code = read_reply(c);
	if (code != 220) {
		note_error("banner: %s", code < 0 ? "connection lost" : c->line);
		conn_close(c, false);
		return -1;
	}
	static const char ehlo[] = "EHLO client.bench.example.org\r\n";
	if (write_full(c->fd, ehlo, sizeof(ehlo) - 1) < 0 || (code = read_reply(c)) != 250) {
		note_error("EHLO: %s", code < 0 ? "connection lost" : c->line);
		conn_close(c, false);
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------ text */

static const char *const words[] = {
	"the", "quarterly", "report", "is", "attached", "and", "we", "would", "like", "to",
	"review", "it", "with", "you", "before", "Friday", "meeting", "please", "let", "us",
	"know", "if", "the", "numbers", "look", "right", "invoice", "shipment", "customer",
	"account", "project", "schedule", "update", "regards", "thanks", "for", "your",
	"patience", "while", "our", "team", "works", "on", "a", "solution", "delivery",
	"address", "confirmed", "order", "of", "in", "at", "by", "this", "that", "will",
	"have", "been", "more", "information", "available", "tomorrow", "morning", "budget",
	"approval", "contract", "draft", "changes", "marked", "section", "three", "page",
	"service", "maintenance", "window", "Sunday", "between", "two", "four", "UTC",
};

static uint64_t rng_next(uint64_t *s)
{
	/* xorshift64* */
	uint64_t x = *s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * UINT64_C(2685821657736338717);
}

/* Append lines of words (CRLF, <= 78 chars, none starting with '.') to
 * out until exactly want bytes are written; returns the bytes written.
 * want must be 0 or at least 3. */
static size_t fill_text(char *out, size_t want, uint64_t *rng)
{
	size_t len = 0;
	while (len < want) {
		size_t left = want - len;
		/* Room for this line's text, its CRLF excluded; keep at least
		 * 3 bytes for a final line when splitting. */
		size_t max = left - 2;
		if (max > LINE_MAX_OUT)
			max = LINE_MAX_OUT;
		if (left - 2 > LINE_MAX_OUT && left - 2 - LINE_MAX_OUT < 3)
			max = LINE_MAX_OUT - 3;
		/* Every ~8th line empty (a paragraph break), when it fits. */
		size_t target = max;
		if (rng_next(rng) % 8 == 0 && left - 2 > max)
			target = 0;
		else if (left - 2 > max)
			target = 50 + rng_next(rng) % (max - 50 + 1);
		size_t n = 0;
		while (n < target) {
			const char *w = words[rng_next(rng) % (sizeof(words) / sizeof(words[0]))];
			size_t wl = strlen(w);
			if (n > 0 && n + 1 + wl > target)
				break;
			if (n > 0)
				out[len + n++] = ' ';
			if (n + wl > target)
				wl = target - n;
			memcpy(out + len + n, w, wl);
			n += wl;
		}
		/* The last line is padded to the exact size. */
		if (target == left - 2)
			while (n < target)
				out[len + n++] = 'x';
		out[len + n] = '\r';
		out[len + n + 1] = '\n';
		len += n + 2;
	}
	return len;
}

/* A message of exactly opt.size bytes (when possible), dot-terminated:
 * text then ".\r\n".  Returns the length including the terminator. */
static size_t make_message(char *out, size_t cap, int thread, long seq, uint64_t *rng)
{
	if (opt.file_msg) {
		memcpy(out, opt.file_msg, opt.file_len);
		return opt.file_len;
	}
	char date[64];
	time_t t = time(NULL);
	struct tm tm;
	localtime_r(&t, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
	int h = snprintf(out, cap,
			 "From: Bench Sender <%s>\r\n"
			 "To: <%s>\r\n"
			 "Subject: Benchmark message %d.%ld about the quarterly report\r\n"
			 "Date: %s\r\n"
			 "Message-ID: <%ld.%d.%ld.%" PRIx64 "@bench.example.org>\r\n"
			 "MIME-Version: 1.0\r\n"
			 "Content-Type: text/plain; charset=us-ascii\r\n"
			 "\r\n",
			 opt.sender, opt.rcpt, thread, seq, date, (long)t, thread, seq,
			 rng_next(rng));
	size_t len = (size_t)h;
	size_t total = (size_t)opt.size;
	if (total > len + 3)
		len += fill_text(out + len, total - len, rng);
	else if (total > len) {
		memcpy(out + len, "\r\n", 2);
		len += 2;
	}
	memcpy(out + len, ".\r\n", 3);
	return len + 3;
}

/* ---------------------------------------------------------------- worker */

struct worker {
	pthread_t tid;
	int index;
	long count;    /* messages to send */
	long ok;
	double *lat;   /* ms of each ok message */
};

/* One transaction on an open session.  1 ok, 0 refused (session still
 * usable), -1 session lost. */
static int send_one(struct conn *c, const char *msg, size_t msglen, double *lat_r)
{
	char cmd[1024];
	int code;
	int n = snprintf(cmd, sizeof(cmd), "MAIL FROM:<%s> SIZE=%zu\r\n", opt.sender, msglen);
	double t0 = now_ms();
	if (opt.pipeline) {
		n += snprintf(cmd + n, sizeof(cmd) - (size_t)n, "RCPT TO:<%s>\r\nDATA\r\n", opt.rcpt);
		if (write_full(c->fd, cmd, (size_t)n) < 0)
			goto lost;
		int mail = read_reply(c);
		if (mail < 0)
			goto lost;
		if (mail != 250)
			note_error("MAIL: %s", c->line);
		int rcpt = read_reply(c);
		if (rcpt < 0)
			goto lost;
		if (rcpt != 250 && mail == 250)
			note_error("RCPT: %s", c->line);
		int data = read_reply(c);
		if (data < 0)
			goto lost;
		if (data != 354) {
			if (mail == 250 && rcpt == 250)
				note_error("DATA: %s", c->line);
			goto refused;
		}
		if (mail != 250 || rcpt != 250) {
			/* Should not happen; abandon the session. */
			return -1;
		}
	} else {
		if (write_full(c->fd, cmd, (size_t)n) < 0 || (code = read_reply(c)) < 0)
			goto lost;
		if (code != 250) {
			note_error("MAIL: %s", c->line);
			goto refused;
		}
		n = snprintf(cmd, sizeof(cmd), "RCPT TO:<%s>\r\n", opt.rcpt);
		if (write_full(c->fd, cmd, (size_t)n) < 0 || (code = read_reply(c)) < 0)
			goto lost;
		if (code != 250) {
			note_error("RCPT: %s", c->line);
			goto refused;
		}
		if (write_full(c->fd, "DATA\r\n", 6) < 0 || (code = read_reply(c)) < 0)
			goto lost;
		if (code != 354) {
			note_error("DATA: %s", c->line);
			goto refused;
		}
	}
	if (write_full(c->fd, msg, msglen) < 0 || (code = read_reply(c)) < 0)
		goto lost;
	double t1 = now_ms();
	static const char queued[] = "250 2.0.0 Ok: queued as ";
	if (code == 250 && strncmp(c->line, queued, sizeof(queued) - 1) == 0) {
		*lat_r = t1 - t0;
		return 1;
	}
	note_error("end of DATA: %s", c->line);
	return 0;
refused:
	if (write_full(c->fd, "RSET\r\n", 6) < 0 || read_reply(c) < 0)
		return -1;
	return 0;
lost:
	note_error("connection lost during a transaction%s%s", c->line[0] ? " after: " : "",
		   c->line);
	return -1;
}

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	size_t cap = (size_t)opt.size + 4096;
	char *msg = malloc(cap);
	w->lat = malloc(sizeof(double) * (size_t)(w->count > 0 ? w->count : 1));
	if (msg == NULL || w->lat == NULL) {
		note_error("out of memory");
		free(msg);
		return NULL;
	}
	uint64_t rng = UINT64_C(0x9E3779B97F4A7C15) ^ ((uint64_t)(w->index + 1) * 7919);
	struct conn c = { .fd = -1 };
	int consecutive_failures = 0;
	for (long i = 0; i < w->count; i++) {
		size_t len = make_message(msg, cap, w->index, i, &rng);
		if (c.fd < 0 && session_start(&c) < 0) {
			/* Count this message as failed; give up after many in a row. */
			if (++consecutive_failures >= 20)
				break;
			usleep(10000);
			continue;
		}
		double lat;
		int r = send_one(&c, msg, len, &lat);
		if (r > 0) {
			w->lat[w->ok++] = lat;
			consecutive_failures = 0;
		} else if (++consecutive_failures >= 20) {
			break;
		}
		if (r < 0)
			conn_close(&c, false);
		else if (opt.reconnect)
			conn_close(&c, true);
	}
	conn_close(&c, true);
	free(msg);
	return NULL;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of a sorted array. */
static double percentile(const double *v, long n, double p)
{
	if (n == 0)
		return 0;
	long rank = (long)(p / 100.0 * (double)n + 0.999999);
	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return v[rank - 1];
}

static int run_load(void)
{
	struct worker *ws = calloc((size_t)opt.clients, sizeof(*ws));
	if (ws == NULL)
		return 2;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	double t0 = now_ms();
	int started = 0;
	for (int i = 0; i < opt.clients; i++) {
		ws[i].index = i;
		ws[i].count = opt.messages / opt.clients + (i < opt.messages % opt.clients);
		int e = pthread_create(&ws[i].tid, &attr, worker_run, &ws[i]);
		if (e != 0) {
			fprintf(stderr, "smtpbench: pthread_create: %s\n", strerror(e));
			break;
		}
		started++;
	}
	pthread_attr_destroy(&attr);
	long ok = 0;
	for (int i = 0; i < started; i++) {
		pthread_join(ws[i].tid, NULL);
		ok += ws[i].ok;
	}
	double secs = (now_ms() - t0) / 1e3;
	double *all = malloc(sizeof(double) * (size_t)(ok > 0 ? ok : 1));
	long k = 0;
	for (int i = 0; i < started; i++) {
		if (all != NULL && ws[i].lat != NULL)
			memcpy(all + k, ws[i].lat, sizeof(double) * (size_t)ws[i].ok);
		k += ws[i].ok;
		free(ws[i].lat);
	}
	double p50 = 0, p99 = 0;
	if (all != NULL) {
		qsort(all, (size_t)ok, sizeof(double), cmp_double);
		p50 = percentile(all, ok, 50);
		p99 = percentile(all, ok, 99);
	}
	printf("clients=%d size=%ld msgs=%ld ok=%ld secs=%.3f rate=%.1f p50_ms=%.2f p99_ms=%.2f\n",
	       opt.clients, opt.size, opt.messages, ok, secs, secs > 0 ? (double)ok / secs : 0.0,
	       p50, p99);
	fflush(stdout);
	if (ok < opt.messages)
		fprintf(stderr, "smtpbench: %ld of %ld messages failed; first error: %s\n",
			opt.messages - ok, opt.messages, n_errors ? first_error : "(none recorded)");
	free(all);
	free(ws);
	return ok == opt.messages ? 0 : 1;
}

/* ------------------------------------------------------------------ idle */

static volatile sig_atomic_t stop_idle;

static void on_signal(int sig)
{
	(void)sig;
	stop_idle = 1;
}

static int run_idle(void)
{
	struct conn *cs = calloc((size_t)opt.idle, sizeof(*cs));
	if (cs == NULL)
		return 2;
	struct sigaction sa = { .sa_handler = on_signal };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	int ready = 0;
	for (int i = 0; i < opt.idle && !stop_idle; i++) {
		cs[i].fd = -1;
		if (session_start(&cs[i]) == 0)
			ready++;
	}
	printf("idle_ready connections=%d\n", ready);
	fflush(stdout);
	if (ready < opt.idle)
		fprintf(stderr, "smtpbench: %d of %d idle connections failed; first error: %s\n",
			opt.idle - ready, opt.idle, n_errors ? first_error : "(none recorded)");
	double until = now_ms() + opt.idle_secs * 1e3;
	while (!stop_idle && now_ms() < until)
		usleep(50000);
	for (int i = 0; i < opt.idle; i++)
		conn_close(&cs[i], true);
	printf("idle_closed\n");
	fflush(stdout);
	free(cs);
	return ready == opt.idle ? 0 : 1;
}

/* ------------------------------------------------------------------ main */

static int resolve(const char *host, int port)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
	struct addrinfo *ai;
	char ps[16];
	snprintf(ps, sizeof(ps), "%d", port);
	int e = getaddrinfo(host, ps, &hints, &ai);
	if (e != 0) {
		fprintf(stderr, "smtpbench: %s: %s\n", host, gai_strerror(e));
		return -1;
	}
	memcpy(&peer, ai->ai_addr, ai->ai_addrlen);
	peer_len = ai->ai_addrlen;
	freeaddrinfo(ai);
	return 0;
}

static int free_port(void)
{
	if (resolve(opt.host, 0) < 0)
		return 2;
	int fd = socket(peer.ss_family, SOCK_STREAM, 0);
	struct sockaddr_storage sa;
	socklen_t len = sizeof(sa);
	if (fd < 0 || bind(fd, (struct sockaddr *)&peer, peer_len) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
		perror("smtpbench: free port");
		return 1;
	}
	int port = sa.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&sa)->sin6_port)
					    : ntohs(((struct sockaddr_in *)&sa)->sin_port);
	close(fd);
	printf("%d\n", port);
	return 0;
}

static void raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* -m FILE: read it, CRLF line ends, dot-stuffed, with the final dot. */
static void load_message(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		fprintf(stderr, "smtpbench: %s: %s\n", path, strerror(errno));
		exit(2);
	}
	struct buf b;
	buf_init(&b, 1u << 30);
	int c, prev = '\n';
	while ((c = getc(f)) != EOF) {
		if (c == '\r')
			continue;
		if (prev == '\n' && c == '.')
			buf_putc(&b, '.');
		if (c == '\n')
			buf_putc(&b, '\r');
		buf_putc(&b, (char)c);
		prev = c;
	}
	fclose(f);
	if (prev != '\n')
		buf_puts(&b, "\r\n");
	buf_puts(&b, ".\r\n");
	opt.file_msg = b.data;
	opt.file_len = b.len;
	opt.size = (long)b.len;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: smtpbench -p PORT [-H HOST] -c CLIENTS -n MESSAGES -s BYTES -t RCPT\n"
		"                 [-f SENDER] [-k | -r] [-P] [-m FILE]\n"
		"       smtpbench -p PORT [-H HOST] -I CONNECTIONS [-w SECONDS]\n"
		"       smtpbench -F [-H HOST]\n"
		"  -k  keep the connection for many messages (default)\n"
		"  -r  reconnect (EHLO ... QUIT) for every message\n"
		"  -P  pipeline MAIL, RCPT and DATA\n"
		"  -m  send the message in FILE (instead of generated text of -s octets)\n"
		"  -I  idle mode: N connections after EHLO, held -w seconds (default 10)\n"
		"  -F  print a free TCP port on HOST and exit\n");
	exit(2);
}

static long parse_num(const char *s, long min, long max)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno != 0 || end == s || v < min || v > max)
		usage();
	if (*end == 'k' || *end == 'K') {
		v *= 1024;
		end++;
	}
	if (*end != '\0')
		usage();
	return v;
}

int main(int argc, char **argv)
{
	bool want_free_port = false;
	const char *msg_file = NULL;
	int ch;
	while ((ch = getopt(argc, argv, "p:H:c:n:s:t:f:krPI:w:Fm:")) != -1) {
		switch (ch) {
		case 'p': opt.port = (int)parse_num(optarg, 1, 65535); break;
		case 'H': opt.host = optarg; break;
		case 'c': opt.clients = (int)parse_num(optarg, 1, 100000); break;
		case 'n': opt.messages = parse_num(optarg, 0, 1000000000); break;
		case 's': opt.size = parse_num(optarg, 0, 1L << 30); break;
		case 't': opt.rcpt = optarg; break;
		case 'f': opt.sender = optarg; break;
		case 'k': opt.reconnect = false; break;
		case 'r': opt.reconnect = true; break;
		case 'P': opt.pipeline = true; break;
		case 'I': opt.idle = (int)parse_num(optarg, 1, 1000000); break;
		case 'w': opt.idle_secs = (int)parse_num(optarg, 0, 86400); break;
		case 'F': want_free_port = true; break;
		case 'm': msg_file = optarg; break;
		default: usage();
		}
	}
	if (optind != argc)
		usage();
	if (msg_file)
		load_message(msg_file); /* after -s: it sets the size */
	if (want_free_port)
		return free_port();
	if (opt.port == 0 || (opt.idle == 0 && opt.rcpt == NULL))
		usage();
	signal(SIGPIPE, SIG_IGN);
	raise_nofile();
	if (resolve(opt.host, opt.port) < 0)
		return 2;
	return opt.idle > 0 ? run_idle() : run_load();
}
