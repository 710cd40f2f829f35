/*
 * pop3.c - POP3 (RFC 1939) with CAPA (RFC 2449), STLS (RFC 2595), AUTH
 * PLAIN (RFC 5034) and response codes (RFC 2449, RFC 3206).
 *
 * The maildrop is INBOX and only INBOX: Junk, Whitelist, Blacklist and
 * every other folder are never listed, so filtered mail never reaches a
 * POP3 client.  In the TRANSACTION state the maildrop is locked (flock on
 * a file in the store root, so other threads and other imapd processes
 * see it): a second POP3 session gets -ERR [IN-USE].  IMAP sessions are
 * not locked out.  DELE only marks; QUIT expunges the marked messages in
 * the store (IMAP sessions see the EXPUNGE at once); a session that ends
 * any other way deletes nothing.  RETR and TOP change no flags ("leave
 * mail on server" clients rely on that).  UIDL is "UIDVALIDITY.UID" of
 * INBOX, stable for the life of a message and the same in IMAP.
 */
#include "imapd/imapd.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define POP3_LINE_MAX 512        /* RFC 2449 section 4: 255 octets; be lenient */
#define POP3_MAX_AUTH_FAILURES 3
#define POP3_LOCK_FILE "pop3.lock"

struct pop3_msg {
	uint32_t uid;
	uint64_t size;           /* octets with CRLF line ends (RFC 1939 LIST) */
	bool deleted;
	char *path;
};

struct pop3 {
	struct imapd *app;
	struct daemon_cfg *dc;
	const struct config *cfg;
	struct conn *conn;
	struct daemon_link link;
	struct linereader lr;
	char sid[ID_SIZE];
	char ip[64];
	bool transaction;
	bool quit;
	char *user_arg;          /* from USER */
	char *user;
	struct store *store;
	int lockfd;
	uint32_t uidvalidity;
	struct pop3_msg *msgs;
	size_t n, cap;
	int64_t bad, commands;
	int auth_failures;
	struct buf line;
	bool train_pending;      /* training queued (imapd/train.c): apply while idle */
	int64_t train_checked;
};

static void reply(struct pop3 *p, const char *fmt, ...) PRINTFLIKE(2, 3);
static void reply(struct pop3 *p, const char *fmt, ...)
{
	buf_reset(&p->line);
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&p->line, fmt, ap);
	va_end(ap);
	log_debug(p->sid, "S: %s", log_strn(p->line.data, p->line.len));
	buf_puts(&p->line, "\r\n");
	conn_write(p->conn, p->line.data, p->line.len);
}

static bool flush_if_big(struct pop3 *p)
{
	if (conn_pending(p->conn) < IMAP_FLUSH_AT)
		return true;
	if (conn_flush(p->conn, (int)p->cfg->pop3_timeout_ms) != CONN_OK) {
		p->quit = true;
		return false;
	}
	return true;
}

static bool plaintext_ok(const struct pop3 *p)
{
	return conn_is_tls(p->conn) || p->cfg->allow_plaintext_auth;
}

/* ----------------------------------------------------------- maildrop */

static int load_cb(const struct store_msg *m, void *arg)
{
	struct pop3 *p = arg;
	if (p->n == p->cap) {
		p->cap = p->cap ? p->cap * 2 : 64;
		p->msgs = xrealloc(p->msgs, p->cap * sizeof(*p->msgs));
	}
	struct pop3_msg *pm = &p->msgs[p->n++];
	pm->uid = m->uid;
	pm->size = m->vsize;
	pm->deleted = false;
	pm->path = xstrdup(m->path);
	return 0;
}

static void maildrop_free(struct pop3 *p)
{
	for (size_t i = 0; i < p->n; i++)
		free(p->msgs[i].path);
	free(p->msgs);
	p->msgs = NULL;
	p->n = p->cap = 0;
}

/* Lock and load INBOX.  Replies on failure; true when in TRANSACTION. */
static void train_check(struct pop3 *p)
{
	uint64_t queued = 0;
	char *err = NULL;
	p->train_checked = clock_mono_ms();
	if (store_train_count(p->store, &queued, &err) < 0) {
		log_warnx(p->sid, "training: %s", err);
		free(err);
	}
	p->train_pending = queued > 0;
}

static bool maildrop_open(struct pop3 *p, const char *addr)
{
	char *err = NULL;
	if (store_open_flags(p->app->data_dir, addr, STORE_OPEN_RECOVER_ONCE, &p->store, &err) < 0) {
		log_errx(p->sid, "login %s: cannot open the mail store: %s", addr, err);
		free(err);
		reply(p, "-ERR [SYS/TEMP] Mail store not available");
		return false;
	}
	char *lockpath = xasprintf("%s/%s", store_root(p->store), POP3_LOCK_FILE);
	p->lockfd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	free(lockpath);
	if (p->lockfd < 0) {
		log_err(p->sid, "%s: cannot open the POP3 lock", addr);
		reply(p, "-ERR [SYS/TEMP] Cannot lock the maildrop");
		store_close(&p->store);
		return false;
	}
	if (flock(p->lockfd, LOCK_EX | LOCK_NB) < 0) {
		log_info(p->sid, "login %s from %s: maildrop in use", addr, p->ip);
		reply(p, "-ERR [IN-USE] Maildrop locked by another POP3 session");
		close(p->lockfd);
		p->lockfd = -1;
		store_close(&p->store);
		return false;
	}
	struct store_folder_info fi;
	if (store_folder_info(p->store, STORE_INBOX, &fi, &err) <= 0 ||
	    store_messages(p->store, STORE_INBOX, 1, 0, load_cb, p, &err) < 0) {
		log_errx(p->sid, "%s: INBOX: %s", addr, err ? err : "missing");
		free(err);
		reply(p, "-ERR [SYS/TEMP] Cannot read the maildrop");
		maildrop_free(p);
		close(p->lockfd);
		p->lockfd = -1;
		store_close(&p->store);
		return false;
	}
	p->uidvalidity = fi.uidvalidity;
	p->user = xstrdup(addr);
	p->transaction = true;
	uint64_t total = 0;
	for (size_t i = 0; i < p->n; i++)
		total += p->msgs[i].size;
	log_info(p->sid, "pop3 login %s from %s%s: %zu messages", addr, p->ip,
		 conn_is_tls(p->conn) ? " (TLS)" : "", p->n);
	reply(p, "+OK Logged in, %zu messages (%llu octets)", p->n, (unsigned long long)total);
	/* What deliveries queued for the classifier (autolearning) and what
	 * IMAP moves left: a POP3-only user's classifier learns here. */
	train_check(p);
	return true;
}

static void do_login(struct pop3 *p, const char *user, const char *pass)
{
	char addr[320];
	int r = 0;
	if (user_address_normalize(user, addr, sizeof(addr)))
		r = userdb_verify(p->dc->users, addr, pass);
	if (r < 0) {
		log_warnx(p->sid, "pop3 login %s from %s: users file unavailable", log_str(addr), p->ip);
		reply(p, "-ERR [SYS/TEMP] Temporary authentication failure");
		return;
	}
	if (r == 0) {
		log_info(p->sid, "pop3 login failed for %s from %s", log_str(user), p->ip);
		p->auth_failures++;
		conn_flush(p->conn, 1000);
		auth_fail_delay(p->ip);
		reply(p, "-ERR [AUTH] Authentication failed");
		if (p->auth_failures >= POP3_MAX_AUTH_FAILURES) {
			reply(p, "-ERR Too many failed logins");
			p->quit = true;
		}
		return;
	}
	maildrop_open(p, addr);
}

/* A message number argument: the index, or -1 after an -ERR reply. */
static long msg_arg(struct pop3 *p, const char *arg)
{
	char *e = NULL;
	errno = 0;
	bool digits = arg && *arg >= '0' && *arg <= '9';
	unsigned long v = digits ? strtoul(arg, &e, 10) : 0;
	if (!digits || *e != '\0' || errno || v == 0) {
		reply(p, "-ERR Invalid message number");
		p->bad++;
		return -1;
	}
	if (v > p->n) {
		reply(p, "-ERR No such message");
		return -1;
	}
	if (p->msgs[v - 1].deleted) {
		reply(p, "-ERR Message %lu already deleted", v);
		return -1;
	}
	return (long)(v - 1);
}

/* RETR and TOP: the file with CRLF line ends, dot-stuffed (RFC 1939
 * section 3), then ".".  body_lines < 0: everything. */
static void send_message(struct pop3 *p, struct pop3_msg *m, long body_lines)
{
	int fd = open(m->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		char *err = NULL;
		fd = store_message_open(p->store, STORE_INBOX, m->uid, &err);
		free(err);
	}
	if (fd < 0) {
		reply(p, "-ERR [SYS/TEMP] Message no longer exists");
		return;
	}
	if (body_lines < 0)
		reply(p, "+OK %llu octets", (unsigned long long)m->size);
	else
		reply(p, "+OK");
	char in[16384];
	char out[2 * sizeof(in) + 4];
	bool bol = true, in_body = false, prev_cr = false;
	long lines = 0;
	bool stop = false;
	size_t linelen = 0;
	for (;;) {
		ssize_t r = read(fd, in, sizeof(in));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			/* "+OK" went out: only closing tells the client that
			 * this message is incomplete (it must not DELE it). */
			log_err(p->sid, "pop3 RETR UID %u", m->uid);
			close(fd);
			p->quit = true;
			return;
		}
		if (r == 0)
			break;
		size_t k = 0;
		for (ssize_t i = 0; i < r && !stop; i++) {
			char c = in[i];
			if (bol && body_lines >= 0 && in_body && lines >= body_lines) {
				stop = true;
				break;
			}
			if (bol && c == '.')
				out[k++] = '.';
			if (c == '\n') {
				if (!prev_cr)
					out[k++] = '\r';
				out[k++] = '\n';
				if (in_body)
					lines++;
				else if (linelen == 0)
					in_body = true; /* the empty line ending the header */
				linelen = 0;
				bol = true;
				prev_cr = false;
				continue;
			}
			if (prev_cr) {
				/* A bare CR: POP3 lines end with CRLF only. */
				out[k++] = '\n';
				bol = true;
				prev_cr = false;
				if (in_body)
					lines++;
				linelen = 0;
				if (body_lines >= 0 && in_body && lines >= body_lines) {
					stop = true;
					break;
				}
				if (c == '.')
					out[k++] = '.';
			}
			out[k++] = c;
			prev_cr = c == '\r';
			if (c != '\r')
				linelen++;
			bol = false;
		}
		conn_write(p->conn, out, k);
		if (stop || !flush_if_big(p))
			break;
	}
	close(fd);
	if (prev_cr && !stop)
		conn_write(p->conn, "\n", 1);       /* a bare CR at the very end */
	else if (!bol && !stop)
		conn_write(p->conn, "\r\n", 2);    /* no final newline */
	conn_write(p->conn, ".\r\n", 3);
}

/* ----------------------------------------------------------- commands */

static void cmd_capa(struct pop3 *p)
{
	reply(p, "+OK Capability list follows");
	reply(p, "TOP");
	reply(p, "UIDL");
	reply(p, "RESP-CODES");
	reply(p, "AUTH-RESP-CODE");
	reply(p, "PIPELINING");
	reply(p, "EXPIRE NEVER");
	reply(p, "LOGIN-DELAY 0");
	reply(p, "IMPLEMENTATION mailgw");
	if (!p->transaction) {
		if (p->dc->tls && !conn_is_tls(p->conn))
			reply(p, "STLS");
		if (plaintext_ok(p)) {
			reply(p, "USER");
			reply(p, "SASL PLAIN");
		}
	}
	reply(p, ".");
}

static void cmd_stls(struct pop3 *p)
{
	if (p->dc->tls == NULL || conn_is_tls(p->conn)) {
		reply(p, "-ERR STLS not available");
		return;
	}
	if (conn_input_pending(p->conn)) {
		/* Plaintext pipelined after STLS (the CVE-2011-0411 class). */
		reply(p, "-ERR Data pipelined after STLS");
		log_warnx(p->sid, "plaintext pipelined after STLS from %s", p->ip);
		p->quit = true;
		return;
	}
	reply(p, "+OK Begin TLS negotiation");
	if (conn_flush(p->conn, (int)p->cfg->pop3_timeout_ms) != CONN_OK) {
		p->quit = true;
		return;
	}
	const char *err;
	if (conn_tls_accept(p->conn, p->dc->tls, (int)p->cfg->pop3_timeout_ms, &err) != CONN_OK) {
		log_info(p->sid, "STLS from %s: %s", p->ip, err);
		p->quit = true;
		return;
	}
	log_info(p->sid, "STLS from %s: %s", p->ip, conn_tls_info(p->conn));
	free(p->user_arg);
	p->user_arg = NULL;
}

static void cmd_auth(struct pop3 *p, char *args)
{
	if (args == NULL) {
		reply(p, "+OK Mechanisms follow");
		if (plaintext_ok(p))
			reply(p, "PLAIN");
		reply(p, ".");
		return;
	}
	char *sp = strchr(args, ' ');
	char *ir = NULL;
	if (sp) {
		*sp = '\0';
		ir = sp + 1;
	}
	if (!str_ieq(args, "PLAIN")) {
		reply(p, "-ERR Unsupported authentication mechanism");
		return;
	}
	if (!plaintext_ok(p)) {
		reply(p, "-ERR [AUTH] Plaintext authentication disallowed without TLS");
		return;
	}
	char *resp = ir ? xstrdup(ir) : NULL;
	if (resp == NULL) {
		conn_write(p->conn, "+ \r\n", 4);
		resp = conn_read_line(p->conn, 8192, (int)p->cfg->pop3_timeout_ms); /* RFC 5034: SASL lines may exceed 255 */
		if (resp == NULL) {
			p->quit = true;
			return;
		}
	}
	if (strcmp(resp, "*") == 0) {
		free(resp);
		reply(p, "-ERR Authentication cancelled");
		return;
	}
	char *authz, *authc, *pass;
	int r = sasl_plain_decode(resp, &authz, &authc, &pass);
	free(resp);
	if (r < 0) {
		reply(p, "-ERR Malformed PLAIN response");
		p->bad++;
		return;
	}
	if (*authz && !str_ieq(authz, authc))
		reply(p, "-ERR [AUTH] Proxy login not permitted");
	else
		do_login(p, authc, pass);
	sasl_plain_free(authz, authc, pass);
}

/* QUIT in TRANSACTION: the UPDATE state (RFC 1939 section 6). */
static void update(struct pop3 *p)
{
	size_t want = 0, done = 0;
	char *err = NULL;
	for (size_t i = 0; i < p->n; i++)
		want += p->msgs[i].deleted;
	if (want && store_batch_begin(p->store, &err) == 0) {
		for (size_t i = 0; i < p->n; i++) {
			if (!p->msgs[i].deleted)
				continue;
			if (store_expunge(p->store, STORE_INBOX, p->msgs[i].uid, &err) < 0) {
				/* Already expunged (by an IMAP session): what DELE asked. */
				bool gone = err && strstr(err, "no such message") != NULL;
				if (!gone)
					log_warnx(p->sid, "pop3 expunge UID %u: %s", p->msgs[i].uid, err);
				free(err);
				err = NULL;
				if (gone)
					done++;
				continue;
			}
			done++;
		}
		if (store_batch_end(p->store, &err) < 0) {
			log_errx(p->sid, "pop3 expunge: %s", err);
			free(err);
			err = NULL;
			done = 0;
		}
	} else if (want) {
		log_errx(p->sid, "pop3 expunge: %s", err);
		free(err);
	}
	log_info(p->sid, "pop3 logout %s: %zu deleted", p->user, done);
	if (done < want)
		reply(p, "-ERR [SYS/TEMP] Some deleted messages were not removed");
	else
		reply(p, "+OK Logging out, %zu messages deleted", done);
}

static void dispatch(struct pop3 *p, char *line)
{
	p->commands++;
	char *args = strchr(line, ' ');
	if (args)
		*args++ = '\0';
	const char *cmd = line;
	log_debug(p->sid, "C: %s", str_ieq(cmd, "PASS") ? "PASS ***" : log_str(cmd));

	if (str_ieq(cmd, "QUIT")) {
		if (p->transaction)
			update(p);
		else
			reply(p, "+OK Bye");
		p->quit = true;
		return;
	}
	if (str_ieq(cmd, "CAPA")) {
		cmd_capa(p);
		return;
	}
	if (str_ieq(cmd, "NOOP") && p->transaction) {
		reply(p, "+OK");
		return;
	}
	if (!p->transaction) {
		if (str_ieq(cmd, "STLS")) {
			cmd_stls(p);
		} else if (str_ieq(cmd, "USER")) {
			if (!plaintext_ok(p)) {
				reply(p, "-ERR [AUTH] Plaintext authentication disallowed without TLS");
				return;
			}
			if (args == NULL || *args == '\0') {
				reply(p, "-ERR USER needs a name");
				p->bad++;
				return;
			}
			free(p->user_arg);
			p->user_arg = xstrdup(args);
			reply(p, "+OK");
		} else if (str_ieq(cmd, "PASS")) {
			if (!plaintext_ok(p)) {
				reply(p, "-ERR [AUTH] Plaintext authentication disallowed without TLS");
				return;
			}
			if (p->user_arg == NULL) {
				reply(p, "-ERR USER first");
				p->bad++;
				return;
			}
			/* RFC 1939 7: the password may contain spaces. */
			char *user = p->user_arg;
			p->user_arg = NULL;
			do_login(p, user, args ? args : "");
			free(user);
		} else if (str_ieq(cmd, "AUTH")) {
			cmd_auth(p, args);
		} else if (str_ieq(cmd, "APOP")) {
			reply(p, "-ERR APOP not supported");
		} else {
			reply(p, "-ERR Unknown command or not allowed before login");
			p->bad++;
		}
		return;
	}

	if (str_ieq(cmd, "STAT")) {
		size_t n = 0;
		uint64_t total = 0;
		for (size_t i = 0; i < p->n; i++)
			if (!p->msgs[i].deleted) {
				n++;
				total += p->msgs[i].size;
			}
		reply(p, "+OK %zu %llu", n, (unsigned long long)total);
	} else if (str_ieq(cmd, "LIST") || str_ieq(cmd, "UIDL")) {
		bool uidl = str_ieq(cmd, "UIDL");
		if (args) {
			long i = msg_arg(p, args);
			if (i < 0)
				return;
			if (uidl)
				reply(p, "+OK %ld %u.%u", i + 1, p->uidvalidity, p->msgs[i].uid);
			else
				reply(p, "+OK %ld %llu", i + 1, (unsigned long long)p->msgs[i].size);
			return;
		}
		reply(p, "+OK %s follows", uidl ? "Unique-ID list" : "Scan list");
		for (size_t i = 0; i < p->n && !p->quit; i++) {
			if (p->msgs[i].deleted)
				continue;
			if (uidl)
				reply(p, "%zu %u.%u", i + 1, p->uidvalidity, p->msgs[i].uid);
			else
				reply(p, "%zu %llu", i + 1, (unsigned long long)p->msgs[i].size);
			flush_if_big(p);
		}
		reply(p, ".");
	} else if (str_ieq(cmd, "RETR")) {
		long i = msg_arg(p, args);
		if (i >= 0)
			send_message(p, &p->msgs[i], -1);
	} else if (str_ieq(cmd, "TOP")) {
		char *n2 = args ? strchr(args, ' ') : NULL;
		if (n2 == NULL) {
			reply(p, "-ERR TOP needs a message number and a line count");
			p->bad++;
			return;
		}
		*n2++ = '\0';
		char *e;
		errno = 0;
		long lines = strtol(n2, &e, 10);
		if (*n2 == '\0' || *e || errno || lines < 0) {
			reply(p, "-ERR Invalid line count");
			p->bad++;
			return;
		}
		long i = msg_arg(p, args);
		if (i >= 0)
			send_message(p, &p->msgs[i], lines);
	} else if (str_ieq(cmd, "DELE")) {
		long i = msg_arg(p, args);
		if (i >= 0) {
			p->msgs[i].deleted = true;
			reply(p, "+OK Message %ld deleted", i + 1);
		}
	} else if (str_ieq(cmd, "RSET")) {
		for (size_t i = 0; i < p->n; i++)
			p->msgs[i].deleted = false;
		reply(p, "+OK %zu messages", p->n);
	} else {
		reply(p, "-ERR Unknown command");
		p->bad++;
	}
}

static void pop3_loop(struct pop3 *p)
{
	struct buf *in = conn_rbuf(p->conn);
	while (!p->quit) {
		if (p->bad >= p->cfg->imap_max_bad_commands) {
			reply(p, "-ERR Too many bad commands");
			break;
		}
		struct slice l;
		bool crlf;
		size_t consumed;
		enum line_status ls = linereader_next(&p->lr, in->data, in->len, &l, &crlf, &consumed);
		if (ls == LINE_TOOLONG) {
			buf_consume(in, consumed);
			reply(p, "-ERR Line too long");
			p->bad++;
			continue;
		}
		if (ls == LINE_OK) {
			char *line = slice_dup(l);
			buf_consume(in, consumed);
			dispatch(p, line);
			free(line);
			continue;
		}
		buf_consume(in, consumed);
		if (consumed)
			continue; /* the tail of a too-long line: commands may follow */
		/* Need more input: answer what we have (RFC 2449 PIPELINING),
		 * then learn what is queued (as an IMAP session does). */
		if (p->store != NULL && !p->train_pending &&
		    clock_mono_ms() - p->train_checked >= TRAIN_CHECK_MS)
			train_check(p);
		if (p->train_pending) {
			if (conn_flush(p->conn, (int)p->cfg->pop3_timeout_ms) != CONN_OK)
				return;
			p->train_pending = train_apply(p->store, p->user, p->cfg, p->app->data_dir,
						       p->sid);
		}
		enum daemon_wait w = daemon_read_more(p->app->d, &p->link, p->conn, (int)p->cfg->pop3_timeout_ms);
		if (w == DAEMON_TIMEOUT) {
			/* RFC 1939 3: the autologout timer; no UPDATE state. */
			reply(p, "-ERR Autologout: idle for too long");
			log_info(p->sid, "pop3 timeout from %s", p->ip);
			break;
		}
		if (w == DAEMON_STOPPING) {
			reply(p, "-ERR [SYS/TEMP] Server shutting down");
			break;
		}
		if (w == DAEMON_CLOSED)
			return;
	}
	conn_flush(p->conn, 2000);
}

void pop3_session_run(struct imapd *app, int fd, const struct sockaddr *peer, bool implicit_tls,
		      const char *ip)
{
	struct pop3 *p = xcalloc(1, sizeof(*p));
	p->app = app;
	p->dc = daemon_cfg_get(app->d);
	p->cfg = p->dc->cfg;
	p->conn = conn_new(fd, peer, IMAP_RBUF_MAX);
	p->lr.max = POP3_LINE_MAX;
	p->lockfd = -1;
	buf_init(&p->line, 64 * 1024);
	str_copy(p->ip, ip, sizeof(p->ip));
	id_generate(p->sid);
	daemon_register(app->d, &p->link, fd);
	log_info(p->sid, "pop3 connect from %s%s", p->ip, implicit_tls ? " (implicit TLS)" : "");
	if (implicit_tls) {
		const char *err;
		if (conn_tls_accept(p->conn, p->dc->tls, (int)p->cfg->pop3_timeout_ms, &err) != CONN_OK) {
			log_info(p->sid, "TLS from %s: %s", p->ip, err);
			goto out;
		}
		log_info(p->sid, "TLS from %s: %s", p->ip, conn_tls_info(p->conn));
	}
	reply(p, "+OK %s POP3 ready%s", p->cfg->hostname, plaintext_ok(p) ? "" : " (STLS, then log in)");
	pop3_loop(p);
	if (p->transaction && !p->quit)
		log_info(p->sid, "pop3 %s: connection ended without QUIT, nothing deleted", p->user);
out:
	log_info(p->sid, "pop3 disconnect from %s user=%s commands=%lld", p->ip, p->user ? p->user : "-",
		 (long long)p->commands);
	daemon_unregister(app->d, &p->link);
	maildrop_free(p);
	if (p->lockfd >= 0)
		close(p->lockfd); /* releases the lock */
	store_close(&p->store);
	conn_free(&p->conn);
	buf_free(&p->line);
	free(p->user_arg);
	free(p->user);
	daemon_cfg_put(p->dc);
	free(p);
}
