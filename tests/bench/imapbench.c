/*
 * imapbench - an IMAP load generator for imapd.
 *
 *   imapbench -m fill  -p PORT -u USER -w PASS -n MESSAGES [-c CLIENTS] [-q DEPTH]
 *   imapbench -m mix   -p PORT -u USER -w PASS -c CLIENTS (-d SECONDS | -n OPS)
 *                      [-W WARMUP_SECONDS] [-P PID]
 *   imapbench -m login -p PORT -u USER -w PASS -n LOGINS [-c CLIENTS] [-S] [-P PID]
 *   imapbench -m idle  -p PORT -u USER -w PASS -c CONNECTIONS [-t SECONDS] [-P PID]
 *   imapbench -F [-H HOST]
 *
 * Every mode checks every reply: a command counts as an operation only
 * when its tagged reply is OK and its untagged data is what was asked
 * for; anything else is an error, the first one is printed on stderr and
 * the exit status is 1.  -H HOST (default 127.0.0.1).  -P PID: the
 * server's PID, whose CPU time (utime+stime of /proc/PID/stat, all
 * threads) is sampled around the measured part and printed as cpu_ms.
 * USER may contain "%d", replaced by the client's number (0, 1, ...),
 * to spread clients over several users.
 *
 * fill: APPEND MESSAGES synthetic messages to INBOX over CLIENTS
 * connections, DEPTH (default 8) pipelined APPENDs in flight on each with
 * LITERAL+ ({n+}) literals.  Message k is a function of k alone (with
 * -s SEED), so a fill is reproducible: 1-9 KB of text, 2-4 Received
 * lines, about 70% text/plain, 20% multipart/alternative (text + HTML)
 * and 10% multipart/mixed with a base64 attachment of 2-24 KB; senders
 * from a list of 40 (sender_names below), subjects with a topic word
 * from a list (topics below); about 1% mention "zanzibar" in the text;
 * 90% are appended \Seen, 3% \Flagged, dates spread over a year.
 * Prints "fill msgs=N ok=K secs=T rate=R p50_ms=A p99_ms=B".
 *
 * mix: each client logs in once, SELECTs INBOX, runs the mix for
 * WARMUP seconds (default 1, not measured), then for SECONDS (default 10)
 * or until the clients together ran OPS operations, and logs out.  The
 * mix, by weight out of 100 (every tagged command is one operation):
 *
 *   30  fetch_hdr     FETCH a:a+19 (FLAGS UID RFC822.SIZE BODY.PEEK[HEADER])
 *                     of a random range of 20 (20 header literals expected,
 *                     each ending in an empty line)
 *   25  fetch_body    FETCH n (UID RFC822.SIZE BODY.PEEK[]) of a random
 *                     message (the literal must be RFC822.SIZE octets)
 *   15  store         STORE n +FLAGS (\Flagged) or -FLAGS (\Flagged)
 *                     (a FETCH FLAGS response expected)
 *   10  search_unseen UID SEARCH UNSEEN
 *    7  search_from   UID SEARCH FROM "<a sender's first name>"  (hits expected)
 *    6  search_subj   UID SEARCH SUBJECT "<a topic word>"        (hits expected)
 *    5  select        SELECT INBOX (EXISTS must be at least what the
 *                     client saw before)
 *    2  search_body   UID SEARCH BODY "zanzibar"                 (hits expected)
 *
 * Prints "mix clients=C secs=T ops=N errors=E rate=R p50_ms=A p99_ms=B
 * cpu_ms=X" (rate = ok operations per wall-clock second of the measured
 * part; cpu_ms = server CPU over it, -1 without -P), then one line per
 * operation type: "op name=NAME n=N p50_ms= p99_ms= max_ms= hits=".
 *
 * login: LOGINS sessions (over CLIENTS threads), each: connect, greeting,
 * LOGIN, (-S: SELECT INBOX,) LOGOUT.  Prints "login n=N ok=K secs=T
 * rate=R p50_ms=A p99_ms=B cpu_ms=X select=0|1".
 *
 * idle: open CONNECTIONS sessions (8 threads set them up), each LOGIN,
 * SELECT INBOX, IDLE ("+ idling" expected), then print "idle_ready
 * connections=M setup_secs=T cpu_ms=X" and hold them for -t seconds
 * (default 600) or until SIGUSR1 or SIGTERM.  On SIGUSR1 one more session
 * APPENDs a message to INBOX and the time until each idling session is
 * told "* N EXISTS" is measured: "idle_wake n=M p50_ms=A max_ms=B".
 * Then every session sends DONE (a tagged OK expected) and LOGOUT:
 * "idle_closed ok=M".
 *
 * -F prints a TCP port on HOST that is free now and exits (for scripts).
 */
#include "common/common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
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
#define TEXT_MAX (16u << 20) /* a response's text without its literals */

enum mode { M_NONE, M_FILL, M_MIX, M_LOGIN, M_IDLE };

struct opts {
	enum mode mode;
	const char *host;
	int port;
	const char *user;
	const char *pass;
	int clients;
	long count;     /* -n */
	double secs;    /* -d */
	double warmup;  /* -W */
	int depth;      /* -q */
	bool select;    /* -S */
	int hold;       /* -t */
	long pid;       /* -P */
	uint64_t seed;  /* -s */
};

static struct opts opt = {
	.host = "127.0.0.1",
	.clients = 1,
	.secs = 10,
	.warmup = 1,
	.depth = 8,
	.hold = 600,
	.seed = 1,
};

static struct sockaddr_storage peer;
static socklen_t peer_len;

/* ---------------------------------------------------------------- errors */

static pthread_mutex_t err_lock = PTHREAD_MUTEX_INITIALIZER;
static char first_error[1024];
static long n_errors;

static void note_error(const char *fmt, ...) PRINTFLIKE(1, 2);
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

/* Server CPU (all threads, user + system) in ms; -1 without -P. */
static double server_cpu_ms(void)
{
	if (opt.pid <= 0)
		return -1;
	char path[64], data[2048];
	snprintf(path, sizeof(path), "/proc/%ld/stat", opt.pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return -1;
	size_t n = fread(data, 1, sizeof(data) - 1, f);
	fclose(f);
	data[n] = '\0';
	/* Fields after "(comm) " start at field 3; utime and stime are 14, 15. */
	char *p = strrchr(data, ')');
	if (p == NULL)
		return -1;
	p++;
	unsigned long long ut = 0, st = 0;
	for (int field = 3; field <= 15; field++) {
		while (*p == ' ')
			p++;
		if (field == 14)
			ut = strtoull(p, NULL, 10);
		else if (field == 15)
			st = strtoull(p, NULL, 10);
		while (*p && *p != ' ')
			p++;
	}
	long hz = sysconf(_SC_CLK_TCK);
	return (double)(ut + st) * 1000.0 / (double)(hz > 0 ? hz : 100);
}

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

static uint64_t rng_seed(uint64_t a, uint64_t b)
{
	uint64_t s = (a + 1) * UINT64_C(0x9E3779B97F4A7C15) ^ (b + 7) * UINT64_C(0xC2B2AE3D27D4EB4F);
	if (s == 0)
		s = 1;
	for (int i = 0; i < 4; i++)
		rng_next(&s);
	return s;
}

static unsigned rnd(uint64_t *s, unsigned n)
{
	return n ? (unsigned)(rng_next(s) % n) : 0;
}

/* ------------------------------------------------------------ latencies */

struct lat {
	double *v;
	size_t n, cap;
	double hits; /* sum of search hits */
};

static void lat_add(struct lat *l, double ms)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 1024;
		l->v = xrealloc(l->v, l->cap * sizeof(double));
	}
	l->v[l->n++] = ms;
}

static void lat_merge(struct lat *into, const struct lat *from)
{
	for (size_t i = 0; i < from->n; i++)
		lat_add(into, from->v[i]);
	into->hits += from->hits;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile; sorts l. */
static double lat_pct(struct lat *l, double p)
{
	if (l->n == 0)
		return 0;
	qsort(l->v, l->n, sizeof(double), cmp_double);
	size_t rank = (size_t)(p / 100.0 * (double)l->n + 0.999999);
	if (rank < 1)
		rank = 1;
	if (rank > l->n)
		rank = l->n;
	return l->v[rank - 1];
}

/* ------------------------------------------------------------ connection */

struct conn {
	int fd;
	char rbuf[16384];
	size_t rstart, rend;
	struct buf text;        /* the response read last, literals left out */
	size_t nlit;            /* literals in it */
	uint64_t lit_size[4];   /* sizes of its first four literals */
	char lit_tail[4][4];    /* and their last four octets */
	unsigned tagn;
	char tag[16];
	struct buf out;
	const char *what;       /* command in progress, for messages */
};

static void conn_init(struct conn *c)
{
	memset(c, 0, sizeof(*c));
	c->fd = -1;
	buf_init(&c->text, TEXT_MAX);
	buf_init(&c->out, 64u << 20);
}

static void conn_release(struct conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	buf_free(&c->text);
	buf_free(&c->out);
}

static int rb_fill(struct conn *c)
{
	for (;;) {
		ssize_t r = recv(c->fd, c->rbuf, sizeof(c->rbuf), 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		c->rstart = 0;
		c->rend = (size_t)r;
		return 0;
	}
}

/* Append a line (without CRLF) to c->text.  0 or -1. */
static int read_line(struct conn *c)
{
	for (;;) {
		char *start = c->rbuf + c->rstart;
		size_t avail = c->rend - c->rstart;
		char *nl = memchr(start, '\n', avail);
		size_t take = nl ? (size_t)(nl - start) : avail;
		if (buf_append(&c->text, start, take) < 0)
			return -1;
		c->rstart += take;
		if (nl) {
			c->rstart++;
			if (c->text.len > 0 && c->text.data[c->text.len - 1] == '\r')
				c->text.data[--c->text.len] = '\0';
			return 0;
		}
		if (rb_fill(c) < 0)
			return -1;
	}
}

/* Skip n literal octets, keeping their last four in tail. */
static int read_literal(struct conn *c, uint64_t n, char tail[4])
{
	memset(tail, 0, 4);
	while (n > 0) {
		if (c->rstart == c->rend && rb_fill(c) < 0)
			return -1;
		size_t avail = c->rend - c->rstart;
		size_t take = avail < n ? avail : (size_t)n;
		const char *p = c->rbuf + c->rstart;
		for (size_t i = take > 4 ? take - 4 : 0; i < take; i++) {
			memmove(tail, tail + 1, 3);
			tail[3] = p[i];
		}
		c->rstart += take;
		n -= take;
	}
	return 0;
}

/* One whole response (a line and the literals it announces) into c->text.
 * 0 or -1 (connection lost). */
static int read_response(struct conn *c)
{
	buf_reset(&c->text);
	c->nlit = 0;
	for (;;) {
		size_t from = c->text.len;
		if (read_line(c) < 0)
			return -1;
		const char *s = c->text.data + from;
		size_t l = c->text.len - from;
		if (l < 3 || s[l - 1] != '}')
			return 0;
		size_t i = l - 2;
		if (s[i] == '+')
			i--;
		size_t end = i + 1;
		while (i > 0 && s[i] >= '0' && s[i] <= '9')
			i--;
		if (s[i] != '{' || end == i + 1)
			return 0;
		uint64_t n = strtoull(s + i + 1, NULL, 10);
		char tail[4];
		if (read_literal(c, n, tail) < 0)
			return -1;
		if (c->nlit < 4) {
			c->lit_size[c->nlit] = n;
			memcpy(c->lit_tail[c->nlit], tail, 4);
		}
		c->nlit++;
	}
}

static int conn_connect(struct conn *c)
{
	c->rstart = c->rend = 0;
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

static void conn_drop(struct conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

/* What a command's untagged responses said. */
struct reply {
	int status;         /* 0 OK, 1 NO, 2 BAD, -1 connection lost */
	long exists;        /* last "* N EXISTS", -1 none */
	long fetches;       /* "* N FETCH" responses */
	long hdr_ok;        /* ... with a BODY[HEADER] literal ending in CRLF CRLF */
	long body_ok;       /* ... with a BODY[] literal of RFC822.SIZE octets */
	long body_bad;
	bool searched;      /* a "* SEARCH" response */
	long hits;          /* numbers in it */
	bool bye;
	char bad_text[300]; /* what made an item bad */
};

static void reply_note(struct reply *r, const struct conn *c)
{
	if (r->bad_text[0] == '\0')
		snprintf(r->bad_text, sizeof(r->bad_text), "%.280s", c->text.data);
}

/* The number after key in s ("RFC822.SIZE 123"), -1 when absent. */
static long item_num(const char *s, const char *key)
{
	const char *p = strstr(s, key);
	if (p == NULL)
		return -1;
	p += strlen(key);
	if (*p != ' ')
		return -1;
	return strtol(p + 1, NULL, 10);
}

static void untagged(struct conn *c, struct reply *r)
{
	const char *s = c->text.data + 2;
	if (strncasecmp(s, "BYE", 3) == 0) {
		r->bye = true;
		reply_note(r, c);
		return;
	}
	if (strncasecmp(s, "SEARCH", 6) == 0) {
		r->searched = true;
		for (const char *p = s + 6; *p; p++)
			if (*p >= '0' && *p <= '9' && (p[-1] == ' '))
				r->hits++;
		return;
	}
	char *end;
	long n = strtol(s, &end, 10);
	if (end == s || *end != ' ')
		return;
	end++;
	if (strncasecmp(end, "EXISTS", 6) == 0) {
		r->exists = n;
		return;
	}
	if (strncasecmp(end, "FETCH", 5) != 0)
		return;
	r->fetches++;
	const char *t = c->text.data;
	if (strstr(t, "BODY[HEADER] {")) {
		/* One literal: the header, which ends with an empty line. */
		if (c->nlit == 1 && c->lit_size[0] >= 4 && memcmp(c->lit_tail[0], "\r\n\r\n", 4) == 0)
			r->hdr_ok++;
		else
			reply_note(r, c);
	} else if (strstr(t, "BODY[] {")) {
		long size = item_num(t, "RFC822.SIZE");
		if (c->nlit == 1 && size > 0 && (uint64_t)size == c->lit_size[0])
			r->body_ok++;
		else {
			r->body_bad++;
			reply_note(r, c);
		}
	}
}

/* Send the command in c->out (formatted by the caller after the tag) and
 * read up to its tagged reply. */
static void run(struct conn *c, struct reply *r)
{
	memset(r, 0, sizeof(*r));
	r->exists = -1;
	r->status = -1;
	if (write_full(c->fd, c->out.data, c->out.len) < 0)
		return;
	for (;;) {
		if (read_response(c) < 0)
			return;
		const char *t = c->text.data;
		if (t[0] == '*' && t[1] == ' ') {
			untagged(c, r);
			continue;
		}
		if (t[0] == '+')
			continue; /* a continuation: not expected with LITERAL+ */
		size_t tl = strlen(c->tag);
		if (strncmp(t, c->tag, tl) != 0 || t[tl] != ' ') {
			reply_note(r, c);
			return;
		}
		const char *st = t + tl + 1;
		r->status = strncasecmp(st, "OK", 2) == 0 ? 0 : strncasecmp(st, "NO", 2) == 0 ? 1 : 2;
		if (r->status != 0)
			reply_note(r, c);
		return;
	}
}

static void cmd_start(struct conn *c, const char *what)
{
	buf_reset(&c->out);
	snprintf(c->tag, sizeof(c->tag), "a%u", ++c->tagn);
	buf_printf(&c->out, "%s ", c->tag);
	c->what = what;
}

static int cmd(struct conn *c, struct reply *r, const char *what, const char *fmt, ...)
	PRINTFLIKE(4, 5);
static int cmd(struct conn *c, struct reply *r, const char *what, const char *fmt, ...)
{
	cmd_start(c, what);
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&c->out, fmt, ap);
	va_end(ap);
	buf_puts(&c->out, "\r\n");
	run(c, r);
	return r->status;
}

/* A quoted string (RFC 3501 quoted: \ and " escaped). */
static void put_quoted(struct buf *b, const char *s)
{
	buf_putc(b, '"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			buf_putc(b, '\\');
		buf_putc(b, *s);
	}
	buf_putc(b, '"');
}

static void user_name(char *out, size_t size, int index)
{
	const char *p = strstr(opt.user, "%d");
	if (p == NULL) {
		snprintf(out, size, "%s", opt.user);
		return;
	}
	snprintf(out, size, "%.*s%d%s", (int)(p - opt.user), opt.user, index, p + 2);
}

/* Connect, greeting, LOGIN.  0 or -1 (noted). */
static int session_login(struct conn *c, int index)
{
	if (conn_connect(c) < 0) {
		note_error("connect: %s", strerror(errno));
		return -1;
	}
	buf_reset(&c->text);
	if (read_response(c) < 0 || strncasecmp(c->text.data, "* OK", 4) != 0) {
		note_error("greeting: %s", c->text.len ? c->text.data : "connection lost");
		conn_drop(c);
		return -1;
	}
	char user[256];
	user_name(user, sizeof(user), index);
	cmd_start(c, "LOGIN");
	buf_puts(&c->out, "LOGIN ");
	put_quoted(&c->out, user);
	buf_putc(&c->out, ' ');
	put_quoted(&c->out, opt.pass);
	buf_puts(&c->out, "\r\n");
	struct reply r;
	run(c, &r);
	if (r.status != 0) {
		note_error("LOGIN %s: %s", user, r.status < 0 ? "connection lost" : r.bad_text);
		conn_drop(c);
		return -1;
	}
	return 0;
}

/* SELECT INBOX; the EXISTS count or -1 (noted). */
static long select_inbox(struct conn *c)
{
	struct reply r;
	if (cmd(c, &r, "SELECT", "SELECT INBOX") != 0 || r.exists < 0) {
		note_error("SELECT INBOX: %s",
			   r.status < 0 ? "connection lost" : r.bad_text[0] ? r.bad_text : "no EXISTS");
		return -1;
	}
	return r.exists;
}

static void session_logout(struct conn *c)
{
	if (c->fd < 0)
		return;
	struct reply r;
	if (cmd(c, &r, "LOGOUT", "LOGOUT") != 0 || !r.bye)
		note_error("LOGOUT: %s", r.status < 0 ? "connection lost" : r.bad_text[0] ? r.bad_text : "no BYE");
	conn_drop(c);
}

/* ---------------------------------------------------------------- messages */

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

/* The first names are what SEARCH FROM looks for. */
static const char *const sender_names[][2] = {
	{ "Alice", "Martin" }, { "Bruno", "Keller" }, { "Chloe", "Durand" }, { "Dmitri", "Volkov" },
	{ "Elena", "Rossi" }, { "Farid", "Haddad" }, { "Greta", "Lindqvist" }, { "Hiro", "Tanaka" },
	{ "Ines", "Moreau" }, { "Jonas", "Weber" }, { "Kasia", "Nowak" }, { "Liam", "Byrne" },
	{ "Maya", "Cohen" }, { "Nils", "Berg" }, { "Olga", "Petrova" }, { "Pablo", "Garcia" },
	{ "Quentin", "Blanc" }, { "Rosa", "Silva" }, { "Sven", "Olsen" }, { "Tara", "Singh" },
	{ "Umar", "Khan" }, { "Vera", "Novak" }, { "Wim", "Jansen" }, { "Xenia", "Popescu" },
	{ "Yusuf", "Demir" }, { "Zoe", "Fischer" }, { "Anton", "Meyer" }, { "Bianca", "Conti" },
	{ "Carl", "Hansen" }, { "Daria", "Ivanova" }, { "Emil", "Horvat" }, { "Fiona", "Walsh" },
	{ "Gustav", "Berger" }, { "Hanna", "Koch" }, { "Ivo", "Maric" }, { "Julia", "Wolf" },
	{ "Karim", "Saidi" }, { "Lena", "Vogel" }, { "Marco", "Ricci" }, { "Nora", "Lund" },
};
#define N_SENDERS ARRAY_SIZE(sender_names)

static const char *const domains[] = {
	"example.com", "example.org", "example.net", "mail.example.com", "corp.example.org",
	"lists.example.net",
};

/* SEARCH SUBJECT looks for these. */
static const char *const topics[] = {
	"invoice", "meeting", "contract", "shipment", "budget", "roadmap", "newsletter",
	"maintenance", "holiday", "reminder", "review", "security", "release", "survey",
	"training", "webinar", "offer", "renewal", "onboarding", "incident",
};

static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
				      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
static const char *const wdays[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };

/* Lines of words (CRLF, at most 76 characters) until about want bytes;
 * once, when zanzibar is set, the word "zanzibar". */
static void put_text(struct buf *b, size_t want, uint64_t *rng, bool zanzibar)
{
	size_t start = b->len;
	size_t zpos = zanzibar ? rnd(rng, (unsigned)want) : SIZE_MAX;
	while (b->len - start < want) {
		size_t line = 0;
		if (rnd(rng, 8) == 0) {
			buf_puts(b, "\r\n");
			continue;
		}
		size_t target = 40 + rnd(rng, 37);
		while (line < target) {
			const char *w = words[rnd(rng, ARRAY_SIZE(words))];
			if (zpos != SIZE_MAX && b->len - start >= zpos) {
				w = "zanzibar";
				zpos = SIZE_MAX;
			}
			size_t wl = strlen(w);
			if (line > 0 && line + 1 + wl > 76)
				break;
			if (line > 0) {
				buf_putc(b, ' ');
				line++;
			}
			buf_puts(b, w);
			line += wl;
		}
		buf_puts(b, ".\r\n");
	}
}

static void put_base64(struct buf *b, size_t raw, uint64_t *rng)
{
	static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t col = 0;
	for (size_t i = 0; i < raw; i += 3) {
		uint64_t v = rng_next(rng);
		for (int k = 0; k < 4; k++)
			buf_putc(b, tab[(v >> (6 * k)) & 63]);
		col += 4;
		if (col == 76) {
			buf_puts(b, "\r\n");
			col = 0;
		}
	}
	if (col)
		buf_puts(b, "\r\n");
}

struct msginfo {
	unsigned flags;      /* 1 \Seen, 2 \Flagged, 4 \Answered */
	char date[40];       /* for APPEND: "dd-Mon-yyyy hh:mm:ss +0000" */
};

/* Message k of the fill (CRLF line ends) into b. */
static void make_message(struct buf *b, long k, struct msginfo *mi)
{
	uint64_t rng = rng_seed(opt.seed, (uint64_t)k);
	buf_reset(b);
	/* Dates: a year back from a fixed day, increasing with k. */
	time_t t = (time_t)1767225600 - 365 * 86400 + (time_t)k * 3000 + rnd(&rng, 3000);
	struct tm tm;
	gmtime_r(&t, &tm);
	snprintf(mi->date, sizeof(mi->date), "%02d-%s-%04d %02d:%02d:%02d +0000", tm.tm_mday,
		 months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
	unsigned r = rnd(&rng, 100);
	mi->flags = r < 90 ? 1 : 0;
	if (rnd(&rng, 100) < 3)
		mi->flags |= 2;
	if ((mi->flags & 1) && rnd(&rng, 100) < 15)
		mi->flags |= 4;

	const char *const *who = sender_names[rnd(&rng, N_SENDERS)];
	const char *dom = domains[rnd(&rng, ARRAY_SIZE(domains))];
	const char *topic = topics[rnd(&rng, ARRAY_SIZE(topics))];
	char date[64];
	snprintf(date, sizeof(date), "%s, %d %s %04d %02d:%02d:%02d +0000", wdays[tm.tm_wday],
		 tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
	buf_printf(b, "Return-Path: <%c.%s@%s>\r\n", who[0][0] | 0x20, who[1], dom);
	unsigned hops = 2 + rnd(&rng, 3);
	for (unsigned h = 0; h < hops; h++)
		buf_printf(b,
			   "Received: from mx%u.%s (mx%u.%s [192.0.2.%u])\r\n"
			   "\tby relay%u.example.test with ESMTPS id %016" PRIx64 "\r\n"
			   "\tfor <bench@example.test>; %s\r\n",
			   h + 1, dom, h + 1, dom, 1 + rnd(&rng, 250), h, rng_next(&rng), date);
	buf_printf(b, "From: %s %s <%c.%s@%s>\r\n", who[0], who[1], who[0][0] | 0x20, who[1], dom);
	buf_puts(b, "To: Bench User <bench@example.test>\r\n");
	if (rnd(&rng, 4) == 0)
		buf_printf(b, "Cc: %s %s <%s@%s>\r\n", sender_names[rnd(&rng, N_SENDERS)][0],
			   sender_names[rnd(&rng, N_SENDERS)][1], "team", dom);
	buf_printf(b, "Subject: %s%s %s %ld: %s %s\r\n", rnd(&rng, 3) == 0 ? "Re: " : "",
		   rnd(&rng, 2) ? "Quarterly" : "Weekly", topic, k, words[rnd(&rng, ARRAY_SIZE(words))],
		   words[rnd(&rng, ARRAY_SIZE(words))]);
	buf_printf(b, "Date: %s\r\n", date);
	buf_printf(b, "Message-ID: <%ld.%016" PRIx64 "@%s>\r\n", k, rng_next(&rng), dom);
	if (rnd(&rng, 3) == 0)
		buf_printf(b, "List-Id: <%s.%s>\r\n", topic, dom);
	buf_printf(b, "X-Mailer: BenchMail %u.%u\r\n", 1 + rnd(&rng, 5), rnd(&rng, 10));
	buf_puts(b, "MIME-Version: 1.0\r\n");

	bool zanzibar = rnd(&rng, 100) == 0;
	size_t text = 1000 + rnd(&rng, 8000);
	unsigned kind = rnd(&rng, 10);
	char boundary[48];
	snprintf(boundary, sizeof(boundary), "=_bench_%016" PRIx64, rng_next(&rng));
	if (kind < 7) {
		buf_puts(b, "Content-Type: text/plain; charset=us-ascii\r\n"
			    "Content-Transfer-Encoding: 7bit\r\n\r\n");
		put_text(b, text, &rng, zanzibar);
	} else if (kind < 9) {
		buf_printf(b, "Content-Type: multipart/alternative; boundary=\"%s\"\r\n\r\n"
			      "This is a multi-part message in MIME format.\r\n\r\n"
			      "--%s\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n",
			   boundary, boundary);
		put_text(b, text / 2, &rng, zanzibar);
		buf_printf(b, "\r\n--%s\r\nContent-Type: text/html; charset=us-ascii\r\n\r\n"
			      "<html><body><p>\r\n",
			   boundary);
		put_text(b, text / 2, &rng, false);
		buf_printf(b, "</p></body></html>\r\n\r\n--%s--\r\n", boundary);
	} else {
		buf_printf(b, "Content-Type: multipart/mixed; boundary=\"%s\"\r\n\r\n"
			      "--%s\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n",
			   boundary, boundary);
		put_text(b, text / 2, &rng, zanzibar);
		buf_printf(b, "\r\n--%s\r\nContent-Type: application/pdf; name=\"%s-%ld.pdf\"\r\n"
			      "Content-Transfer-Encoding: base64\r\n"
			      "Content-Disposition: attachment; filename=\"%s-%ld.pdf\"\r\n\r\n",
			   boundary, topic, k, topic, k);
		put_base64(b, 2048 + rnd(&rng, 22 * 1024), &rng);
		buf_printf(b, "\r\n--%s--\r\n", boundary);
	}
}

/* ------------------------------------------------------------------ fill */

struct fill_worker {
	pthread_t tid;
	int index;
	long first, count;
	long ok;
	struct lat lat;
};

static pthread_barrier_t fill_barrier;

static void *fill_run(void *arg)
{
	struct fill_worker *w = arg;
	struct conn c;
	conn_init(&c);
	struct buf msg;
	buf_init(&msg, 1u << 20);
	double *sent = xcalloc((size_t)opt.depth, sizeof(double));
	char (*tags)[16] = xcalloc((size_t)opt.depth, 16);
	/* All log in before any APPENDs: a login (store_open) while an
	 * APPEND with a past date is in flight can lose that APPEND (see
	 * the report in tests/bench/imapbench.sh). */
	bool in = session_login(&c, w->index) == 0;
	pthread_barrier_wait(&fill_barrier);
	if (!in)
		goto out;
	long next = 0, done = 0;
	while (done < w->count) {
		/* Keep depth APPENDs in flight (LITERAL+: no "+" to wait for). */
		while (next < w->count && next - done < opt.depth) {
			struct msginfo mi;
			make_message(&msg, w->first + next, &mi);
			cmd_start(&c, "APPEND");
			char fl[64] = "";
			snprintf(fl, sizeof(fl), "%s%s%s", mi.flags & 1 ? "\\Seen" : "",
				 mi.flags & 2 ? (mi.flags & 1 ? " \\Flagged" : "\\Flagged") : "",
				 mi.flags & 4 ? " \\Answered" : "");
			buf_printf(&c.out, "APPEND INBOX (%s) \"%s\" {%zu+}\r\n", fl, mi.date, msg.len);
			buf_append(&c.out, msg.data, msg.len);
			buf_puts(&c.out, "\r\n");
			int slot = (int)(next % opt.depth);
			memcpy(tags[slot], c.tag, sizeof(c.tag));
			sent[slot] = now_ms();
			if (write_full(c.fd, c.out.data, c.out.len) < 0) {
				note_error("APPEND: connection lost");
				goto out;
			}
			next++;
		}
		/* The reply to the oldest. */
		int slot = (int)(done % opt.depth);
		size_t tl = strlen(tags[slot]);
		for (;;) {
			if (read_response(&c) < 0) {
				note_error("APPEND: connection lost");
				goto out;
			}
			const char *t = c.text.data;
			if (t[0] == '*' || t[0] == '+')
				continue;
			if (strncmp(t, tags[slot], tl) != 0 || t[tl] != ' ') {
				note_error("APPEND: unexpected reply: %.200s", t);
				goto out;
			}
			if (strncasecmp(t + tl + 1, "OK", 2) != 0) {
				note_error("APPEND: %.300s", t);
				goto out;
			}
			break;
		}
		lat_add(&w->lat, now_ms() - sent[slot]);
		w->ok++;
		done++;
	}
	session_logout(&c);
out:
	conn_release(&c);
	buf_free(&msg);
	free(sent);
	free(tags);
	return NULL;
}

static int run_fill(void)
{
	struct fill_worker *ws = xcalloc((size_t)opt.clients, sizeof(*ws));
	pthread_barrier_init(&fill_barrier, NULL, (unsigned)opt.clients);
	double t0 = now_ms();
	long first = 0;
	int started = 0;
	for (int i = 0; i < opt.clients; i++) {
		ws[i].index = 0; /* one user: all fill the same mailbox */
		ws[i].first = first;
		ws[i].count = opt.count / opt.clients + (i < opt.count % opt.clients);
		first += ws[i].count;
		if (pthread_create(&ws[i].tid, NULL, fill_run, &ws[i]) != 0) {
			fprintf(stderr, "imapbench: pthread_create failed\n");
			exit(1); /* the barrier would never open */
		}
		started++;
	}
	long ok = 0;
	struct lat all = { 0 };
	for (int i = 0; i < started; i++) {
		pthread_join(ws[i].tid, NULL);
		ok += ws[i].ok;
		lat_merge(&all, &ws[i].lat);
		free(ws[i].lat.v);
	}
	double secs = (now_ms() - t0) / 1e3;
	printf("fill msgs=%ld ok=%ld secs=%.3f rate=%.1f p50_ms=%.2f p99_ms=%.2f\n", opt.count, ok,
	       secs, secs > 0 ? (double)ok / secs : 0, lat_pct(&all, 50), lat_pct(&all, 99));
	fflush(stdout);
	free(all.v);
	free(ws);
	pthread_barrier_destroy(&fill_barrier);
	if (ok != opt.count || n_errors) {
		fprintf(stderr, "imapbench: fill: %ld of %ld messages failed; first error: %s\n",
			opt.count - ok, opt.count, n_errors ? first_error : "(none recorded)");
		return 1;
	}
	return 0;
}

/* ------------------------------------------------------------------- mix */

enum op {
	OP_FETCH_HDR, OP_FETCH_BODY, OP_STORE, OP_SEARCH_UNSEEN, OP_SEARCH_FROM,
	OP_SEARCH_SUBJ, OP_SELECT, OP_SEARCH_BODY, N_OPS
};
static const char *const op_names[N_OPS] = {
	"fetch_hdr", "fetch_body", "store", "search_unseen", "search_from",
	"search_subj", "select", "search_body",
};
static unsigned op_weight[N_OPS] = { 30, 25, 15, 10, 7, 6, 5, 2 };
static unsigned op_weight_sum = 100;

/* -x "fetch_hdr=30,store=10,...": these weights, 0 for the others. */
static int set_weights(const char *spec)
{
	unsigned w[N_OPS] = { 0 }, sum = 0;
	char *copy = xstrdup(spec), *save = NULL;
	for (char *t = strtok_r(copy, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
		char *eq = strchr(t, '=');
		int k = 0;
		if (eq) {
			*eq = '\0';
			for (k = 0; k < N_OPS && strcmp(op_names[k], t) != 0; k++)
				;
		}
		char *end;
		long v = eq ? strtol(eq + 1, &end, 10) : -1;
		if (!eq || k == N_OPS || *end != '\0' || v < 0 || v > 1000000) {
			fprintf(stderr, "imapbench: -x: bad weight \"%s\" (operations:", t);
			for (k = 0; k < N_OPS; k++)
				fprintf(stderr, " %s", op_names[k]);
			fprintf(stderr, ")\n");
			free(copy);
			return -1;
		}
		w[k] = (unsigned)v;
		sum += (unsigned)v;
	}
	free(copy);
	if (sum == 0) {
		fprintf(stderr, "imapbench: -x: all weights are 0\n");
		return -1;
	}
	memcpy(op_weight, w, sizeof(w));
	op_weight_sum = sum;
	return 0;
}

struct mix_worker {
	pthread_t tid;
	int index;
	long limit;          /* ops in the measured part, 0 = by time */
	long exists;
	uint64_t rng;
	struct conn c;
	struct lat lat[N_OPS];
	long errors;
	bool alive;
};

static pthread_barrier_t mix_barrier;

static enum op pick_op(uint64_t *rng)
{
	unsigned r = rnd(rng, op_weight_sum);
	for (int i = 0; i < N_OPS; i++) {
		if (r < op_weight[i])
			return (enum op)i;
		r -= op_weight[i];
	}
	return OP_FETCH_HDR;
}

static void op_fail(struct mix_worker *w, enum op op, const char *why, const struct reply *r)
{
	w->errors++;
	note_error("%s (client %d): %s%s%s", op_names[op], w->index, why,
		   r && r->bad_text[0] ? ": " : "", r ? r->bad_text : "");
	if (r && (r->status < 0 || r->bye)) {
		conn_drop(&w->c);
		w->alive = false;
	}
}

/* One operation; its latency into lat[] when measure, else nothing. */
static void mix_op(struct mix_worker *w, bool measure)
{
	struct conn *c = &w->c;
	struct reply r;
	enum op op = pick_op(&w->rng);
	long n = w->exists;
	long a = 1 + (long)rnd(&w->rng, (unsigned)n);
	double t0 = now_ms();
	switch (op) {
	case OP_FETCH_HDR: {
		long first = a > n - 19 ? n - 19 : a;
		if (first < 1)
			first = 1;
		long last = first + 19 > n ? n : first + 19;
		cmd(c, &r, "FETCH", "FETCH %ld:%ld (FLAGS UID RFC822.SIZE BODY.PEEK[HEADER])", first, last);
		if (r.status == 0 && r.hdr_ok != last - first + 1) {
			op_fail(w, op, "wrong number of header literals", &r);
			return;
		}
		break;
	}
	case OP_FETCH_BODY:
		cmd(c, &r, "FETCH", "FETCH %ld (UID RFC822.SIZE BODY.PEEK[])", a);
		if (r.status == 0 && (r.body_ok != 1 || r.body_bad)) {
			op_fail(w, op, "BODY[] missing or not RFC822.SIZE octets", &r);
			return;
		}
		break;
	case OP_STORE:
		cmd(c, &r, "STORE", "STORE %ld %cFLAGS (\\Flagged)", a, rnd(&w->rng, 2) ? '+' : '-');
		if (r.status == 0 && r.fetches < 1) {
			op_fail(w, op, "no FETCH FLAGS in the reply", &r);
			return;
		}
		break;
	case OP_SEARCH_UNSEEN:
		cmd(c, &r, "SEARCH", "UID SEARCH UNSEEN");
		break;
	case OP_SEARCH_FROM:
		cmd(c, &r, "SEARCH", "UID SEARCH FROM \"%s\"", sender_names[rnd(&w->rng, N_SENDERS)][0]);
		break;
	case OP_SEARCH_SUBJ:
		cmd(c, &r, "SEARCH", "UID SEARCH SUBJECT \"%s\"", topics[rnd(&w->rng, ARRAY_SIZE(topics))]);
		break;
	case OP_SEARCH_BODY:
		cmd(c, &r, "SEARCH", "UID SEARCH BODY \"zanzibar\"");
		break;
	case OP_SELECT:
		cmd(c, &r, "SELECT", "SELECT INBOX");
		if (r.status == 0 && (r.exists < w->exists)) {
			op_fail(w, op, "EXISTS missing or fewer than before", &r);
			return;
		}
		break;
	default:
		return;
	}
	double ms = now_ms() - t0;
	if (r.status != 0) {
		op_fail(w, op, r.status < 0 ? "connection lost" : "refused", &r);
		return;
	}
	if (r.bye) {
		op_fail(w, op, "BYE", &r);
		return;
	}
	if (op >= OP_SEARCH_UNSEEN && op != OP_SELECT) {
		if (!r.searched) {
			op_fail(w, op, "no * SEARCH response", &r);
			return;
		}
		if (op != OP_SEARCH_UNSEEN && r.hits == 0) {
			op_fail(w, op, "no hits (the mailbox was filled with imapbench -m fill?)", &r);
			return;
		}
	}
	if (r.exists > w->exists)
		w->exists = r.exists;
	if (measure) {
		lat_add(&w->lat[op], ms);
		w->lat[op].hits += (double)r.hits;
	}
}

static void *mix_run(void *arg)
{
	struct mix_worker *w = arg;
	conn_init(&w->c);
	w->rng = rng_seed(opt.seed + 1000, (uint64_t)w->index);
	w->alive = session_login(&w->c, w->index) == 0;
	if (w->alive) {
		w->exists = select_inbox(&w->c);
		if (w->exists < 20) {
			if (w->exists >= 0)
				note_error("SELECT INBOX: %ld messages, the mix needs at least 20", w->exists);
			w->alive = false;
		}
	}
	if (!w->alive)
		w->errors++;
	double until = now_ms() + opt.warmup * 1e3;
	while (w->alive && now_ms() < until)
		mix_op(w, false);
	pthread_barrier_wait(&mix_barrier);
	until = now_ms() + opt.secs * 1e3;
	long done = 0;
	while (w->alive && (w->limit > 0 ? done < w->limit : now_ms() < until)) {
		mix_op(w, true);
		done++;
	}
	pthread_barrier_wait(&mix_barrier);
	if (w->alive)
		session_logout(&w->c);
	conn_release(&w->c);
	return NULL;
}

static int run_mix(void)
{
	struct mix_worker *ws = xcalloc((size_t)opt.clients, sizeof(*ws));
	pthread_barrier_init(&mix_barrier, NULL, (unsigned)opt.clients + 1);
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	for (int i = 0; i < opt.clients; i++) {
		ws[i].index = i;
		ws[i].limit = opt.count > 0 ? opt.count / opt.clients + (i < opt.count % opt.clients) : 0;
		if (opt.count > 0 && ws[i].limit == 0)
			ws[i].limit = 1;
		int e = pthread_create(&ws[i].tid, &attr, mix_run, &ws[i]);
		if (e != 0) {
			fprintf(stderr, "imapbench: pthread_create: %s\n", strerror(e));
			exit(1); /* the barrier would never open */
		}
	}
	pthread_attr_destroy(&attr);
	pthread_barrier_wait(&mix_barrier);
	double cpu0 = server_cpu_ms(), t0 = now_ms();
	pthread_barrier_wait(&mix_barrier);
	double cpu1 = server_cpu_ms(), t1 = now_ms();
	struct lat per[N_OPS] = { 0 }, all = { 0 };
	long errors = 0;
	for (int i = 0; i < opt.clients; i++) {
		pthread_join(ws[i].tid, NULL);
		errors += ws[i].errors;
		for (int k = 0; k < N_OPS; k++) {
			lat_merge(&per[k], &ws[i].lat[k]);
			lat_merge(&all, &ws[i].lat[k]);
			free(ws[i].lat[k].v);
		}
	}
	double secs = (t1 - t0) / 1e3;
	printf("mix clients=%d secs=%.3f ops=%zu errors=%ld rate=%.1f p50_ms=%.3f p99_ms=%.3f cpu_ms=%.0f\n",
	       opt.clients, secs, all.n, errors, secs > 0 ? (double)all.n / secs : 0, lat_pct(&all, 50),
	       lat_pct(&all, 99), cpu0 >= 0 && cpu1 >= 0 ? cpu1 - cpu0 : -1);
	for (int k = 0; k < N_OPS; k++) {
		size_t cnt = per[k].n;
		double hits = cnt ? per[k].hits / (double)cnt : 0;
		double p50 = lat_pct(&per[k], 50), p99 = lat_pct(&per[k], 99);
		if (op_weight[k] == 0)
			continue;
		printf("op name=%s weight=%u n=%zu p50_ms=%.3f p99_ms=%.3f max_ms=%.3f", op_names[k],
		       op_weight[k], cnt, p50, p99, cnt ? per[k].v[cnt - 1] : 0.0);
		if (k >= OP_SEARCH_UNSEEN && k != OP_SELECT)
			printf(" hits=%.0f", hits);
		printf("\n");
		free(per[k].v);
	}
	fflush(stdout);
	free(all.v);
	free(ws);
	pthread_barrier_destroy(&mix_barrier);
	if (errors || n_errors) {
		fprintf(stderr, "imapbench: mix: %ld errors; first: %s\n", errors > n_errors ? errors : n_errors,
			first_error);
		return 1;
	}
	return 0;
}

/* ----------------------------------------------------------------- login */

struct login_worker {
	pthread_t tid;
	int index;
	long count, ok;
	struct lat lat;
};

static void *login_run(void *arg)
{
	struct login_worker *w = arg;
	struct conn c;
	conn_init(&c);
	/* Stop at the first failure: imapd delays failed logins by seconds. */
	for (long i = 0; i < w->count && n_errors == 0; i++) {
		double t0 = now_ms();
		if (session_login(&c, w->index) < 0)
			break;
		if (opt.select && select_inbox(&c) < 0) {
			conn_drop(&c);
			break;
		}
		long before = n_errors;
		session_logout(&c);
		if (n_errors != before)
			break;
		lat_add(&w->lat, now_ms() - t0);
		w->ok++;
	}
	conn_release(&c);
	return NULL;
}

static int run_login(void)
{
	struct login_worker *ws = xcalloc((size_t)opt.clients, sizeof(*ws));
	double cpu0 = server_cpu_ms(), t0 = now_ms();
	int started = 0;
	for (int i = 0; i < opt.clients; i++) {
		ws[i].index = i;
		ws[i].count = opt.count / opt.clients + (i < opt.count % opt.clients);
		if (pthread_create(&ws[i].tid, NULL, login_run, &ws[i]) != 0)
			break;
		started++;
	}
	long ok = 0;
	struct lat all = { 0 };
	for (int i = 0; i < started; i++) {
		pthread_join(ws[i].tid, NULL);
		ok += ws[i].ok;
		lat_merge(&all, &ws[i].lat);
		free(ws[i].lat.v);
	}
	/* The server may still be tearing the last session down. */
	usleep(100000);
	double cpu1 = server_cpu_ms(), secs = (now_ms() - t0) / 1e3 - 0.1;
	printf("login n=%ld ok=%ld secs=%.3f rate=%.1f p50_ms=%.2f p99_ms=%.2f cpu_ms=%.0f select=%d\n",
	       opt.count, ok, secs, secs > 0 ? (double)ok / secs : 0, lat_pct(&all, 50),
	       lat_pct(&all, 99), cpu0 >= 0 && cpu1 >= 0 ? cpu1 - cpu0 : -1, opt.select);
	fflush(stdout);
	free(all.v);
	free(ws);
	if (ok != opt.count || n_errors) {
		fprintf(stderr, "imapbench: login: %ld of %ld failed; first error: %s\n", opt.count - ok,
			opt.count, n_errors ? first_error : "(none recorded)");
		return 1;
	}
	return 0;
}

/* ------------------------------------------------------------------ idle */

static volatile sig_atomic_t idle_stop, idle_wake;

static void on_signal(int sig)
{
	if (sig == SIGUSR1)
		idle_wake = 1;
	else
		idle_stop = 1;
}

struct idle_setup {
	pthread_t tid;
	struct conn *cs;
	bool *ready;
	long *exists;
	int from, step, n;
};

/* Connections from, from + step, ... : LOGIN, SELECT, IDLE. */
static void *idle_setup_run(void *arg)
{
	struct idle_setup *is = arg;
	for (int i = is->from; i < is->n && !idle_stop; i += is->step) {
		struct conn *c = &is->cs[i];
		if (session_login(c, i) < 0)
			continue;
		long ex = select_inbox(c);
		if (ex < 0) {
			conn_drop(c);
			continue;
		}
		is->exists[i] = ex;
		cmd_start(c, "IDLE");
		buf_puts(&c->out, "IDLE\r\n");
		buf_reset(&c->text);
		if (write_full(c->fd, c->out.data, c->out.len) < 0 || read_response(c) < 0) {
			note_error("IDLE: connection lost");
			conn_drop(c);
			continue;
		}
		if (c->text.data[0] != '+') {
			note_error("IDLE: %.200s", c->text.data);
			conn_drop(c);
			continue;
		}
		is->ready[i] = true;
	}
	return NULL;
}

/* Read responses of an idling session until "* N EXISTS" with N > *ex. */
static int idle_read_exists(struct conn *c, long *ex)
{
	for (;;) {
		if (read_response(c) < 0)
			return -1;
		const char *t = c->text.data;
		char *end;
		if (t[0] == '*' && t[1] == ' ') {
			long n = strtol(t + 2, &end, 10);
			if (end != t + 2 && strncasecmp(end, " EXISTS", 7) == 0) {
				if (n > *ex) {
					*ex = n;
					return 1;
				}
			} else if (strncasecmp(t + 2, "BYE", 3) == 0) {
				return -1;
			}
		}
		/* Anything else (FETCH, RECENT, OK Still here): go on when no
		 * more is buffered. */
		if (c->rstart == c->rend)
			return 0;
	}
}

static int wake_test(struct conn *cs, bool *ready, long *exists, int n)
{
	struct conn a;
	conn_init(&a);
	int rc = 1;
	if (session_login(&a, 0) < 0)
		goto out;
	struct buf msg;
	buf_init(&msg, 1u << 20);
	struct msginfo mi;
	make_message(&msg, 999999, &mi);
	cmd_start(&a, "APPEND");
	buf_printf(&a.out, "APPEND INBOX {%zu+}\r\n", msg.len);
	buf_append(&a.out, msg.data, msg.len);
	buf_puts(&a.out, "\r\n");
	buf_free(&msg);
	struct reply r;
	double t0 = now_ms();
	run(&a, &r);
	if (r.status != 0) {
		note_error("APPEND (wake test): %s", r.status < 0 ? "connection lost" : r.bad_text);
		goto out;
	}
	struct pollfd *pf = xcalloc((size_t)n, sizeof(*pf));
	int *map = xcalloc((size_t)n, sizeof(int));
	struct lat lat = { 0 };
	/* Only the sessions of the user the message went to are told. */
	char u0[256], ui[256];
	user_name(u0, sizeof(u0), 0);
	bool *want = xcalloc((size_t)n, sizeof(bool));
	int waiting = 0;
	for (int i = 0; i < n; i++) {
		user_name(ui, sizeof(ui), i);
		want[i] = ready[i] && strcmp(ui, u0) == 0;
		if (want[i])
			waiting++;
	}
	int total = waiting;
	double deadline = now_ms() + 30000;
	while (waiting > 0 && now_ms() < deadline) {
		int np = 0;
		for (int i = 0; i < n; i++) {
			if (!want[i] || cs[i].fd < 0 || exists[i] < 0)
				continue;
			pf[np].fd = cs[i].fd;
			pf[np].events = POLLIN;
			map[np++] = i;
		}
		int pr = poll(pf, (nfds_t)np, 1000);
		if (pr < 0 && errno != EINTR)
			break;
		for (int k = 0; k < np && pr > 0; k++) {
			if (!(pf[k].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			int i = map[k];
			int e = idle_read_exists(&cs[i], &exists[i]);
			if (e < 0) {
				note_error("IDLE session %d lost while waiting for EXISTS", i);
				conn_drop(&cs[i]);
				ready[i] = want[i] = false;
				waiting--;
			} else if (e > 0) {
				lat_add(&lat, now_ms() - t0);
				exists[i] = -exists[i] - 1; /* done: mark (restored below) */
				waiting--;
			}
		}
	}
	for (int i = 0; i < n; i++)
		if (exists[i] < 0 && want[i])
			exists[i] = -(exists[i] + 1);
	free(want);
	if (waiting > 0)
		note_error("%d of %d IDLE sessions were not told about the new message within 30 s",
			   waiting, total);
	size_t got = lat.n;
	double p50 = lat_pct(&lat, 50);
	printf("idle_wake n=%zu of=%d p50_ms=%.1f max_ms=%.1f\n", got, total, p50,
	       got ? lat.v[got - 1] : 0.0);
	fflush(stdout);
	free(lat.v);
	free(pf);
	free(map);
	rc = waiting > 0 ? 1 : 0;
	session_logout(&a);
out:
	conn_release(&a);
	return rc;
}

static int run_idle(void)
{
	int n = opt.clients;
	struct conn *cs = xcalloc((size_t)n, sizeof(*cs));
	bool *ready = xcalloc((size_t)n, sizeof(bool));
	long *exists = xcalloc((size_t)n, sizeof(long));
	for (int i = 0; i < n; i++) {
		cs[i].fd = -1;
		conn_init(&cs[i]);
	}
	struct sigaction sa = { .sa_handler = on_signal };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);
	enum { SETUP_THREADS = 8 };
	struct idle_setup is[SETUP_THREADS];
	double cpu0 = server_cpu_ms(), t0 = now_ms();
	int threads = n < SETUP_THREADS ? n : SETUP_THREADS;
	for (int k = 0; k < threads; k++) {
		is[k] = (struct idle_setup){ .cs = cs, .ready = ready, .exists = exists, .from = k,
					     .step = threads, .n = n };
		if (pthread_create(&is[k].tid, NULL, idle_setup_run, &is[k]) != 0) {
			fprintf(stderr, "imapbench: pthread_create failed\n");
			exit(1);
		}
	}
	for (int k = 0; k < threads; k++)
		pthread_join(is[k].tid, NULL);
	int nready = 0;
	for (int i = 0; i < n; i++)
		nready += ready[i];
	double secs = (now_ms() - t0) / 1e3, cpu1 = server_cpu_ms();
	printf("idle_ready connections=%d setup_secs=%.2f cpu_ms=%.0f\n", nready, secs,
	       cpu0 >= 0 && cpu1 >= 0 ? cpu1 - cpu0 : -1);
	fflush(stdout);
	int rc = nready == n ? 0 : 1;
	if (nready < n)
		fprintf(stderr, "imapbench: %d of %d idle sessions failed; first error: %s\n", n - nready,
			n, n_errors ? first_error : "(none recorded)");
	double until = now_ms() + opt.hold * 1e3;
	while (!idle_stop && !idle_wake && now_ms() < until)
		usleep(20000);
	if (idle_wake && !idle_stop && wake_test(cs, ready, exists, n) != 0)
		rc = 1;
	/* DONE and LOGOUT on every session: pipelined, then the replies. */
	int closed = 0;
	for (int i = 0; i < n; i++) {
		struct conn *c = &cs[i];
		if (!ready[i] || c->fd < 0)
			continue;
		if (write_full(c->fd, "DONE\r\n", 6) < 0) {
			note_error("DONE: connection lost");
			ready[i] = false;
		}
	}
	for (int i = 0; i < n; i++) {
		struct conn *c = &cs[i];
		if (!ready[i] || c->fd < 0)
			continue;
		/* The IDLE's tagged OK, after any untagged updates. */
		size_t tl = strlen(c->tag);
		bool ok = false;
		while (read_response(c) == 0) {
			const char *t = c->text.data;
			if (t[0] == '*')
				continue;
			ok = strncmp(t, c->tag, tl) == 0 && t[tl] == ' ' && strncasecmp(t + tl + 1, "OK", 2) == 0;
			if (!ok)
				note_error("IDLE after DONE: %.200s", t);
			break;
		}
		if (!ok) {
			if (c->text.len == 0)
				note_error("IDLE after DONE: connection lost");
			conn_drop(c);
			continue;
		}
		long before = n_errors;
		session_logout(c);
		if (n_errors == before)
			closed++;
	}
	printf("idle_closed ok=%d\n", closed);
	fflush(stdout);
	if (closed != nready)
		rc = 1;
	if (rc != 0 || n_errors)
		fprintf(stderr, "imapbench: idle: %ld errors (%d of %d sessions ended cleanly); first: %s\n",
			n_errors, closed, n, n_errors ? first_error : "(none recorded)");
	if (n_errors)
		rc = 1;
	for (int i = 0; i < n; i++)
		conn_release(&cs[i]);
	free(cs);
	free(ready);
	free(exists);
	return rc;
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
		fprintf(stderr, "imapbench: %s: %s\n", host, gai_strerror(e));
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
		perror("imapbench: free port");
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

static void usage(void)
{
	fprintf(stderr,
		"usage: imapbench -m fill  -p PORT -u USER -w PASS -n MESSAGES [-c CLIENTS] [-q DEPTH] [-s SEED]\n"
		"       imapbench -m mix   -p PORT -u USER -w PASS -c CLIENTS [-d SECONDS | -n OPS]\n"
		"                          [-W WARMUP] [-P PID] [-x op=WEIGHT,...]\n"
		"       imapbench -m login -p PORT -u USER -w PASS -n LOGINS [-c CLIENTS] [-S] [-P PID]\n"
		"       imapbench -m idle  -p PORT -u USER -w PASS -c CONNECTIONS [-t SECONDS] [-P PID]\n"
		"       imapbench -F [-H HOST]\n"
		"  USER may contain %%d (the client's number); -H HOST (default 127.0.0.1)\n");
	exit(2);
}

static double parse_num(const char *s, double min, double max)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
		usage();
	return v;
}

int main(int argc, char **argv)
{
	bool want_free_port = false;
	int ch;
	while ((ch = getopt(argc, argv, "m:p:H:u:w:c:n:d:W:q:St:P:s:x:F")) != -1) {
		switch (ch) {
		case 'm':
			opt.mode = strcmp(optarg, "fill") == 0    ? M_FILL
				   : strcmp(optarg, "mix") == 0   ? M_MIX
				   : strcmp(optarg, "login") == 0 ? M_LOGIN
				   : strcmp(optarg, "idle") == 0  ? M_IDLE
								  : M_NONE;
			if (opt.mode == M_NONE)
				usage();
			break;
		case 'p': opt.port = (int)parse_num(optarg, 1, 65535); break;
		case 'H': opt.host = optarg; break;
		case 'u': opt.user = optarg; break;
		case 'w': opt.pass = optarg; break;
		case 'c': opt.clients = (int)parse_num(optarg, 1, 100000); break;
		case 'n': opt.count = (long)parse_num(optarg, 0, 1e9); break;
		case 'd': opt.secs = parse_num(optarg, 0.01, 86400); break;
		case 'W': opt.warmup = parse_num(optarg, 0, 3600); break;
		case 'q': opt.depth = (int)parse_num(optarg, 1, 1000); break;
		case 'S': opt.select = true; break;
		case 't': opt.hold = (int)parse_num(optarg, 0, 86400); break;
		case 'P': opt.pid = (long)parse_num(optarg, 1, 1e9); break;
		case 's': opt.seed = (uint64_t)parse_num(optarg, 0, 1e15); break;
		case 'x':
			if (set_weights(optarg) < 0)
				return 2;
			break;
		case 'F': want_free_port = true; break;
		default: usage();
		}
	}
	if (optind != argc)
		usage();
	if (want_free_port)
		return free_port();
	if (opt.mode == M_NONE || opt.port == 0 || opt.user == NULL || opt.pass == NULL)
		usage();
	if ((opt.mode == M_FILL || opt.mode == M_LOGIN) && opt.count <= 0)
		usage();
	signal(SIGPIPE, SIG_IGN);
	raise_nofile();
	if (resolve(opt.host, opt.port) < 0)
		return 2;
	switch (opt.mode) {
	case M_FILL: return run_fill();
	case M_MIX: return run_mix();
	case M_LOGIN: return run_login();
	case M_IDLE: return run_idle();
	default: usage();
	}
	return 2;
}
