/*
 * smtp.c - one ESMTP session (RFC 5321) from greeting to QUIT: a command
 * table with the states each command is allowed in, PIPELINING (RFC 2920),
 * SIZE (RFC 1870), 8BITMIME (RFC 6152), SMTPUTF8 (RFC 6531), CHUNKING
 * (RFC 3030), STARTTLS (RFC 3207) and ENHANCEDSTATUSCODES (RFC 2034).
 * Every read waits at most the state's timeout; errors are counted and end
 * the session with 421 at max_bad_commands.
 */
#include "filterd/filterd.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RBUF_MAX (64 * 1024)
#define JUNK_COMMANDS_FREE 100 /* NOOP, RSET, VRFY, HELP beyond this count as errors */


/* ---------------------------------------------------------------- replies */

void smtp_reply(struct session *s, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line))
		n = sizeof(line) - 1;
	conn_write(s->conn, line, (size_t)n);
	conn_write(s->conn, "\r\n", 2);
	if ((line[0] == '5' || line[0] == '4') && strncmp(line, "421", 3) != 0)
		s->errors++;
	log_debug(s->sid, "> %s", log_str(line));
}

void smtp_tx_reset(struct session *s)
{
	for (size_t i = 0; i < s->nrcpts; i++)
		free(s->rcpts[i]);
	free(s->rcpts);
	s->rcpts = NULL;
	s->nrcpts = 0;
	s->in_tx = s->smtputf8 = s->bdat_started = s->bdat_failed = false;
	s->qid[0] = '\0';
	memset(&s->from, 0, sizeof(s->from));
	spool_reset(&s->spool);
	msgcheck_reset(&s->mc);
	s->spf_done = false;
}

/* --------------------------------------------------------- helpers */

const char *smtp_protocol_name(const struct session *s)
{
	bool tls = conn_is_tls(s->conn);
	if (s->smtputf8)
		return tls ? "UTF8SMTPS" : "UTF8SMTP"; /* RFC 6531 section 3.7.3 */
	if (!s->esmtp)
		return "SMTP";
	return tls ? "ESMTPS" : "ESMTP"; /* RFC 3848 */
}


static void sanitize_helo(const char *in, size_t len, char *out, size_t size)
{
	size_t o = 0;
	for (size_t i = 0; i < len && o + 1 < size; i++) {
		char c = in[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			  (c != '\0' && strchr(".-_:[]", c) != NULL);
		out[o++] = ok ? c : '?';
	}
	out[o] = '\0';
}

void smtp_log_tx(struct session *s, const char *action, const char *reply_text,
				   const char *checks)
{
	struct buf to;
	buf_init(&to, 64 * 1024);
	for (size_t i = 0; i < s->nrcpts; i++)
		buf_printf(&to, "%s<%s>", i ? "," : "", log_str(s->rcpts[i]));
	log_info(s->qid,
		 "client=%s helo=%s from=<%s> to=%s size=%llu nrcpt=%zu proto=%s%s%s%s action=%s "
		 "reply=\"%s\" ms=%lld",
		 s->ip, log_str(s->helo), log_str(s->from.addr), to.data ? to.data : "",
		 (unsigned long long)s->data.raw_bytes, s->nrcpts, smtp_protocol_name(s),
		 conn_is_tls(s->conn) ? " tls=" : "", conn_is_tls(s->conn) ? conn_tls_version(s->conn) : "",
		 checks, action, log_str(reply_text), (long long)(clock_mono_ms() - s->tx_start));
	buf_free(&to);
}

void smtp_log_tx_plain(struct session *s, const char *action, const char *reply_text)
{
	smtp_log_tx(s, action, reply_text, "");
}

/* 552 for a message over max_message_size, logged as the transaction's
 * end; with close, also 421 and the end of the session (RFC 1870 section 6
 * lets us close rather than read on). */
/* ------------------------------------------------------------- commands */

static void cmd_ehlo(struct session *s, struct slice args, bool ehlo)
{
	size_t n = 0;
	while (n < args.len && args.p[n] != ' ')
		n++;
	if (n == 0) {
		smtp_reply(s, "501 5.5.4 Syntax: %s hostname", ehlo ? "EHLO" : "HELO");
		return;
	}
	smtp_tx_reset(s); /* RFC 5321 section 4.1.4: like RSET */
	sanitize_helo(args.p, n, s->helo, sizeof(s->helo));
	s->have_helo = true;
	s->esmtp = ehlo;
	if (!ehlo) {
		smtp_reply(s, "250 %s", s->cfg->hostname);
		return;
	}
	smtp_reply(s, "250-%s", s->cfg->hostname);
	smtp_reply(s, "250-PIPELINING");
	smtp_reply(s, "250-SIZE %lld", (long long)s->cfg->max_message_size);
	if (s->sc->tls && !conn_is_tls(s->conn))
		smtp_reply(s, "250-STARTTLS");
	smtp_reply(s, "250-8BITMIME");
	smtp_reply(s, "250-SMTPUTF8");
	smtp_reply(s, "250-CHUNKING");
	smtp_reply(s, "250 ENHANCEDSTATUSCODES");
}

static void cmd_mail(struct session *s, struct slice args)
{
	struct slice params, key, val;
	const char *err;

	if (!s->have_helo) {
		smtp_reply(s, "503 5.5.1 Error: send HELO/EHLO first");
		return;
	}
	if (s->in_tx) {
		smtp_reply(s, "503 5.5.1 Error: nested MAIL command");
		return;
	}
	struct smtp_path from;
	if (smtp_path_parse(args, "FROM", &from, &params, &err) < 0) {
		smtp_reply(s, "501 5.1.7 Bad sender address syntax: %s", err);
		return;
	}
	if (from.no_domain) {
		smtp_reply(s, "501 5.1.7 Bad sender address syntax: a domain is required");
		return;
	}
	bool utf8 = false;
	int r;
	while ((r = smtp_param_next(&params, &key, &val)) == 1) {
		if (!s->esmtp) {
			smtp_reply(s, "555 5.5.4 Error: parameters need EHLO");
			return;
		}
		if (slice_ieq(key, "SIZE")) {
			uint64_t size = 0;
			bool ok = val.len > 0 && val.len <= 19;
			for (size_t i = 0; ok && i < val.len; i++) {
				ok = val.p[i] >= '0' && val.p[i] <= '9';
				size = size * 10 + (uint64_t)(val.p[i] - '0');
			}
			if (!ok) {
				smtp_reply(s, "501 5.5.4 Syntax: SIZE=octets");
				return;
			}
			if (size > (uint64_t)s->cfg->max_message_size) {
				smtp_reply(s, "552 5.3.4 Error: message size exceeds the limit of %lld octets",
				      (long long)s->cfg->max_message_size);
				return;
			}
		} else if (slice_ieq(key, "BODY")) {
			if (!slice_ieq(val, "7BIT") && !slice_ieq(val, "8BITMIME")) {
				smtp_reply(s, "555 5.5.4 Error: BODY must be 7BIT or 8BITMIME");
				return;
			}
		} else if (slice_ieq(key, "SMTPUTF8") && val.len == 0) {
			utf8 = true;
		} else {
			smtp_reply(s, "555 5.5.4 Error: unsupported parameter %s", log_strn(key.p, key.len));
			return;
		}
	}
	if (r < 0) {
		smtp_reply(s, "501 5.5.4 Syntax error in parameters");
		return;
	}
	if (from.utf8 && !utf8) {
		smtp_reply(s, "553 5.6.7 Error: non-ASCII address without SMTPUTF8");
		return;
	}
	s->from = from;
	s->smtputf8 = utf8;
	s->in_tx = true;
	s->tx_start = clock_mono_ms();
	id_generate(s->qid);
	if (s->ck && s->ck->spf) {
		/* RFC 7208 section 2.4: at MAIL FROM; the HELO name for <>. */
		spf_verify(s->ck->spf, s->ip, s->helo, from.addr, &s->spf);
		s->spf_done = true;
	}
	smtp_data_init(&s->data, (size_t)s->cfg->max_line_length, false);
	smtp_reply(s, "250 2.1.0 Ok");
}

static void reject_rcpt(struct session *s, const char *to, const char *fmt, ...) PRINTFLIKE(3, 4);
static void reject_rcpt(struct session *s, const char *to, const char *fmt, ...)
{
	char text[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	smtp_reply(s, "%s", text);
	log_info(s->qid, "reject: RCPT from %s: %s; from=<%s> to=<%s> helo=%s", s->ip, log_str(text),
		 log_str(s->from.addr), log_str(to), log_str(s->helo));
}

static void cmd_rcpt(struct session *s, struct slice args)
{
	struct slice params, key, val;
	const char *err;
	struct smtp_path to;
	char addr[SMTP_PATH_MAX + 64];

	if (!s->in_tx) {
		smtp_reply(s, "503 5.5.1 Error: need MAIL command");
		return;
	}
	if (smtp_path_parse(args, "TO", &to, &params, &err) < 0 || to.null) {
		smtp_reply(s, "501 5.1.3 Bad recipient address syntax%s%s", to.null ? "" : ": ",
		      to.null ? "" : err);
		return;
	}
	if (smtp_param_next(&params, &key, &val) != 0) {
		smtp_reply(s, "555 5.5.4 Error: unsupported RCPT parameter");
		return;
	}
	if (to.utf8 && !s->smtputf8) {
		smtp_reply(s, "553 5.6.7 Error: non-ASCII address without SMTPUTF8");
		return;
	}
	if (to.no_domain) {
		/* RFC 5321 section 4.5.1: <postmaster> without a domain. */
		if (!str_ieq(to.addr, "postmaster")) {
			smtp_reply(s, "501 5.1.3 Bad recipient address syntax: a domain is required");
			return;
		}
		snprintf(addr, sizeof(addr), "postmaster@%s", s->cfg->local_domains.v[0]);
	} else {
		str_copy(addr, to.addr, sizeof(addr));
	}
	if (s->nrcpts >= (size_t)s->cfg->max_recipients) {
		smtp_reply(s, "452 4.5.3 Error: too many recipients");
		return;
	}
	const char *at = strrchr(addr, '@');
	if (!strlist_contains_ci(&s->cfg->local_domains, at + 1)) {
		reject_rcpt(s, addr, "550 5.7.1 <%s>: Relay access denied", log_str(addr));
		return;
	}
	if (s->rblq) {
		/* The lists were asked at connect; by now they have answered,
		 * or their deadline has passed. */
		rbl_finish(&s->rblq, s->connect_ms + s->cfg->dns_timeout_ms, &s->rbl);
		s->rbl_done = true;
	}
	/* A listed client may still write to postmaster (RFC 5321 4.5.1):
	 * that is how a blocked sender reaches us. */
	if (s->rbl_done && s->rbl.score >= s->cfg->rbl_reject_score && !str_iprefix(addr, "postmaster@")) {
		struct buf rb;
		buf_init(&rb, 4096);
		rbl_result_format(&s->rbl, false, &rb);
		reject_rcpt(s, addr, "550 5.7.1 Service unavailable; client [%s] blocked by %s",
			    s->ip, rb.data ? rb.data : "DNS lists");
		buf_free(&rb);
		return;
	}
	char norm[SMTP_PATH_MAX + 64];
	int found = 0;
	if (user_address_normalize(addr, norm, sizeof(norm)))
		found = userdb_exists(s->sc->users, norm);
	if (found == 0 && str_iprefix(addr, "postmaster@")) {
		/* RFC 5321 section 4.5.1: postmaster must be accepted. */
		str_copy(norm, s->cfg->postmaster_address, sizeof(norm));
		found = userdb_exists(s->sc->users, norm);
		if (found == 0)
			log_warnx(s->qid, "postmaster_address %s is not a user: mail to %s refused",
				  norm, log_str(addr));
	}
	if (found < 0) {
		reject_rcpt(s, addr, "451 4.3.0 <%s>: Temporary lookup failure", log_str(addr));
		return;
	}
	if (found == 0) {
		reject_rcpt(s, addr, "550 5.1.1 <%s>: Recipient address rejected: User unknown",
			    log_str(addr));
		return;
	}
	for (size_t i = 0; i < s->nrcpts; i++) {
		if (strcmp(s->rcpts[i], norm) == 0) { /* one copy per user */
			smtp_reply(s, "250 2.1.5 Ok");
			return;
		}
	}
	s->rcpts = xrealloc(s->rcpts, (s->nrcpts + 1) * sizeof(char *));
	s->rcpts[s->nrcpts++] = xstrdup(norm);
	smtp_reply(s, "250 2.1.5 Ok");
}

static void cmd_starttls(struct session *s, struct slice args)
{
	const char *err;
	if (s->sc->tls == NULL) {
		smtp_reply(s, "502 5.5.1 Error: command not implemented");
		return;
	}
	if (conn_is_tls(s->conn)) {
		smtp_reply(s, "503 5.5.1 Error: TLS already active");
		return;
	}
	if (args.len) {
		smtp_reply(s, "501 5.5.4 Syntax: STARTTLS");
		return;
	}
	/* Plaintext pipelined after STARTTLS would be taken as if it came
	 * through TLS (CVE-2011-0411): refuse it and end the session. */
	if (conn_input_pending(s->conn)) {
		log_warnx(s->sid, "client %s pipelined data after STARTTLS", s->ip);
		smtp_reply(s, "421 4.7.0 %s Error: command pipelined after STARTTLS, closing",
		      s->cfg->hostname);
		s->quit = true;
		return;
	}
	smtp_reply(s, "220 2.0.0 Ready to start TLS");
	if (conn_flush(s->conn, (int)s->cfg->smtp_timeout_ms) != CONN_OK) {
		s->quit = true;
		return;
	}
	if (conn_tls_accept(s->conn, s->sc->tls, (int)s->cfg->smtp_timeout_ms, &err) != CONN_OK) {
		log_info(s->sid, "STARTTLS from %s: %s", s->ip, err);
		s->quit = true;
		return;
	}
	log_info(s->sid, "STARTTLS from %s: %s", s->ip, conn_tls_info(s->conn));
	/* RFC 3207 section 4.2: forget everything learnt before TLS. */
	smtp_tx_reset(s);
	s->have_helo = s->esmtp = false;
	s->helo[0] = '\0';
}

static void cmd_simple(struct session *s, enum smtp_cmd cmd, struct slice args)
{
	switch (cmd) {
	case CMD_RSET:
		if (args.len) {
			smtp_reply(s, "501 5.5.4 Syntax: RSET");
			return;
		}
		smtp_tx_reset(s);
		smtp_reply(s, "250 2.0.0 Ok");
		return;
	case CMD_NOOP:
		smtp_reply(s, "250 2.0.0 Ok");
		return;
	case CMD_QUIT:
		smtp_reply(s, "221 2.0.0 Bye");
		s->quit = true;
		return;
	case CMD_VRFY:
		if (args.len == 0)
			smtp_reply(s, "501 5.5.4 Syntax: VRFY address");
		else /* RFC 5321 section 3.5.3: do not confirm addresses */
			smtp_reply(s, "252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery");
		return;
	case CMD_HELP:
		smtp_reply(s, "214-2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP%s",
		      s->sc->tls ? " STARTTLS" : "");
		smtp_reply(s, "214 2.0.0 End of HELP");
		return;
	case CMD_EXPN:
	case CMD_AUTH:
	case CMD_ETRN:
		smtp_reply(s, "502 5.5.1 Error: command not implemented");
		return;
	default:
		smtp_reply(s, "500 5.5.2 Error: command not recognized");
		return;
	}
}

static void dispatch(struct session *s, struct slice line)
{
	struct slice args;
	if (memchr(line.p, '\0', line.len)) {
		smtp_reply(s, "500 5.5.2 Error: NUL octet in command");
		return;
	}
	enum smtp_cmd cmd = smtp_cmd_parse(line, &args);
	log_debug(s->sid, "< %s", log_strn(line.p, line.len));
	if (++s->commands > s->cfg->max_commands) {
		smtp_reply(s, "421 4.7.0 %s Error: too many commands", s->cfg->hostname);
		log_info(s->sid, "too many commands from %s, closing", s->ip);
		s->quit = true;
		return;
	}
	/* Commands that move no mail are free up to a point (Postfix's
	 * smtpd_junk_command_limit), then count as errors. */
	if ((cmd == CMD_NOOP || cmd == CMD_RSET || cmd == CMD_VRFY || cmd == CMD_HELP ||
	     cmd == CMD_EXPN || cmd == CMD_EHLO || cmd == CMD_HELO) &&
	    ++s->junk > JUNK_COMMANDS_FREE)
		s->errors++;
	switch (cmd) {
	case CMD_EHLO:
		cmd_ehlo(s, args, true);
		break;
	case CMD_HELO:
		cmd_ehlo(s, args, false);
		break;
	case CMD_MAIL:
		cmd_mail(s, args);
		break;
	case CMD_RCPT:
		cmd_rcpt(s, args);
		break;
	case CMD_DATA:
		smtp_cmd_data(s, args);
		break;
	case CMD_BDAT:
		smtp_cmd_bdat(s, args);
		break;
	case CMD_STARTTLS:
		cmd_starttls(s, args);
		break;
	default:
		cmd_simple(s, cmd, args);
		break;
	}
}

/* ---------------------------------------------------------- the session */

static void session_loop(struct session *s)
{
	struct buf *in = conn_rbuf(s->conn);
	char line[SMTP_LINE_MAX + 1];

	while (!s->quit) {
		if (s->errors >= s->cfg->max_bad_commands) {
			smtp_reply(s, "421 4.7.0 %s Error: too many errors", s->cfg->hostname);
			log_info(s->sid, "too many errors from %s, closing", s->ip);
			break;
		}
		struct slice l;
		bool crlf;
		size_t consumed;
		enum line_status ls = linereader_next(&s->lr, in->data, in->len, &l, &crlf, &consumed);
		if (ls == LINE_TOOLONG) {
			buf_consume(in, consumed);
			smtp_reply(s, "500 5.5.2 Error: line too long");
			continue;
		}
		if (ls == LINE_MORE) {
			buf_consume(in, consumed);
			if (consumed)
				continue;
			/* Nothing complete buffered: answer what we have (RFC 2920)
			 * and wait for the client. */
			enum daemon_wait w = daemon_read_more(s->srv->d, &s->link, s->conn,
							      (int)s->cfg->smtp_timeout_ms);
			if (w == DAEMON_TIMEOUT) {
				smtp_reply(s, "421 4.4.2 %s Error: timeout exceeded", s->cfg->hostname);
				log_info(s->sid, "timeout after %lld commands from %s",
					 (long long)s->commands, s->ip);
				break;
			}
			if (w == DAEMON_STOPPING) {
				smtp_reply(s, "421 4.3.2 %s Service shutting down", s->cfg->hostname);
				break;
			}
			if (w == DAEMON_CLOSED) {
				if (s->in_tx)
					log_info(s->qid, "lost connection after %lld commands from %s",
						 (long long)s->commands, s->ip);
				break;
			}
			continue;
		}
		memcpy(line, l.p, l.len);
		line[l.len] = '\0';
		buf_consume(in, consumed);
		dispatch(s, slice_make(line, l.len));
	}
	conn_flush(s->conn, 2000);
}

void smtp_session_run(struct server *srv, int fd, const struct sockaddr *peer, bool implicit_tls,
		      const char *ip)
{
	struct session *s = xcalloc(1, sizeof(*s));
	const char *err;

	s->srv = srv;
	s->sc = daemon_cfg_get(srv->d);
	s->cfg = s->sc->cfg;
	s->conn = conn_new(fd, peer, RBUF_MAX);
	s->lr.max = SMTP_LINE_MAX;
	s->out = xmalloc(RBUF_MAX + 2);
	str_copy(s->ip, ip, sizeof(s->ip));
	id_generate(s->sid);
	spool_init(&s->spool, srv->spool_dir);
	daemon_register(srv->d, &s->link, fd);
	log_info(s->sid, "connect from %s%s", s->ip, implicit_tls ? " (implicit TLS)" : "");
	s->ck = s->sc->app;
	s->connect_ms = clock_mono_ms();
	if (s->ck && s->ck->dns && s->cfg->rbl.n)
		s->rblq = rbl_start(s->ck->dns, &s->cfg->rbl, s->ip); /* DESIGN.md: at connect */

	if (implicit_tls) {
		if (conn_tls_accept(s->conn, s->sc->tls, (int)s->cfg->smtp_timeout_ms, &err) != CONN_OK) {
			log_info(s->sid, "TLS from %s: %s", s->ip, err);
			goto out;
		}
		log_info(s->sid, "TLS from %s: %s", s->ip, conn_tls_info(s->conn));
	}
	smtp_reply(s, "220 %s ESMTP filterd", s->cfg->hostname);
	session_loop(s);
out:
	if (s->in_tx && s->qid[0])
		log_info(s->qid, "transaction aborted: from=<%s> nrcpt=%zu", log_str(s->from.addr),
			 s->nrcpts);
	log_info(s->sid, "disconnect from %s commands=%lld errors=%lld", s->ip, (long long)s->commands,
		 (long long)s->errors);
	daemon_unregister(srv->d, &s->link);
	smtp_tx_reset(s);
	rbl_abandon(&s->rblq);
	rbl_result_free(&s->rbl);
	buf_free(&s->spool.mem);
	conn_free(&s->conn);
	free(s->out);
	daemon_cfg_put(s->sc);
	free(s);
}
