/*
 * smtp_msg.c - the message text of an SMTP transaction: DATA (RFC 5321
 * section 4.1.1.4) and BDAT (RFC 3030), the limits on the text, then the
 * checks' verdict and delivery, or the refusal.
 */
#include "filterd/filterd.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DATA_OVERRUN_MAX (1024 * 1024) /* read past max_message_size before closing */

/* Return-Path and Received (RFC 5321 section 4.4), LF line ends. */
static void trace_headers(struct session *s, struct buf *h, int64_t now, const struct buf *checks)
{
	char date[64];
	date_rfc5322(now, date, sizeof(date));
	buf_printf(h, "Return-Path: <%s>\n", s->from.addr);
	if (checks->len)
		buf_append(h, checks->data, checks->len);
	buf_printf(h, "Received: from %s ([%s])\n\tby %s (filterd) with %s id %s", s->helo, s->ip,
		   s->cfg->hostname, smtp_protocol_name(s), s->qid);
	if (conn_is_tls(s->conn))
		buf_printf(h, "\n\t(using %s with cipher %s)", conn_tls_version(s->conn),
			   conn_tls_cipher(s->conn));
	if (s->nrcpts == 1) /* naming one recipient of many would leak the others */
		buf_printf(h, "\n\tfor <%s>", s->rcpts[0]);
	buf_printf(h, "; %s\n", date);
}

static void reject_too_big(struct session *s, bool close)
{
	char text[160];
	snprintf(text, sizeof(text), "552 5.3.4 Error: message exceeds the size limit of %lld octets",
		 (long long)s->cfg->max_message_size);
	smtp_reply(s, "%s", text);
	smtp_log_tx_plain(s, "reject", text);
	if (close) {
		smtp_reply(s, "421 4.3.4 %s Error: closing", s->cfg->hostname);
		s->quit = true;
	}
}

/* The checks' verdict, then delivery into INBOX or Junk, or the refusal. */
static void deliver_checked(struct session *s)
{
	char text[400];
	struct tx_info tx = {
		.qid = s->qid,
		.ip = s->ip,
		.helo = s->helo,
		.mail_from = s->from.addr,
		.spf = s->spf_done ? &s->spf : NULL,
		.rbl = s->rbl_done ? &s->rbl : NULL,
		/* Only postmaster passed RCPT (the others were refused). */
		.postmaster_only = s->rbl_done && s->rbl.score >= s->cfg->rbl_reject_score,
	};
	struct verdict v;
	checks_verdict(&s->mc, &tx, &v);
	if (v.action != V_REJECT)
		checks_recipients(&s->mc, &tx, &v, s->srv->stores, (const char *const *)s->rcpts,
				  s->nrcpts);
	if (v.action == V_REJECT || v.action == V_TEMPFAIL) {
		smtp_reply(s, "%s", v.reply);
		smtp_log_tx(s, v.action == V_REJECT ? "reject" : "tempfail", v.reply,
				       v.log.data ? v.log.data : "");
		verdict_free(&v);
		return;
	}
	/* Recipients whose X-Spam headers are the same share one file. */
	int64_t now = clock_real_us() / 1000000;
	struct delivery_rcpt *dr = xcalloc(s->nrcpts, sizeof(*dr));
	struct buf *groups = xcalloc(s->nrcpts, sizeof(*groups));
	size_t ngroups = 0;
	for (size_t i = 0; i < s->nrcpts; i++) {
		const struct rcpt_verdict *r = &v.rcpt[i];
		size_t g = 0;
		while (g < i && !(v.rcpt[g].headers.len == r->headers.len &&
				  memcmp(v.rcpt[g].headers.data, r->headers.data, r->headers.len) == 0))
			g++;
		if (g == i) {
			/* A new group: its header section. */
			struct buf extra;
			buf_init(&extra, 2 * MSG_HEADER_MAX);
			buf_append(&extra, v.headers.data ? v.headers.data : "", v.headers.len);
			buf_append(&extra, r->headers.data, r->headers.len);
			buf_init(&groups[ngroups], 3 * MSG_HEADER_MAX);
			trace_headers(s, &groups[ngroups], now, &extra);
			msgcheck_header_out(&s->mc, &groups[ngroups]);
			buf_free(&extra);
			dr[i].group = ngroups++;
		} else {
			dr[i].group = dr[g].group;
		}
		dr[i].addr = s->rcpts[i];
		dr[i].folder = r->action == V_JUNK ? "Junk" : STORE_INBOX;
		dr[i].meta = (struct store_meta){ .internaldate = now,
						  .verdict = r->action == V_JUNK ? "junk" : "inbox",
						  .score = r->score,
						  .sender = v.from_addr[0] ? v.from_addr : NULL,
						  .autolearn = r->autolearn };
	}
	struct delivery dv = {
		.qid = s->qid,
		.rcpts = dr,
		.nrcpts = s->nrcpts,
		.headers = groups,
		.ngroups = ngroups,
		.spool = &s->spool,
	};
	char *err = NULL;
	if (deliver_message(s->srv->stores, &dv, &err) < 0) {
		log_errx(s->qid, "delivery failed: %s", err);
		free(err);
		snprintf(text, sizeof(text), "451 4.3.0 Error: local delivery failed, try again later (%s)",
			 s->qid);
		smtp_reply(s, "%s", text);
		smtp_log_tx(s, "tempfail", text, v.log.data ? v.log.data : "");
	} else {
		snprintf(text, sizeof(text), "250 2.0.0 Ok: queued as %s", s->qid);
		smtp_reply(s, "%s", text);
		struct buf action;
		buf_init(&action, 64 * 1024);
		bool same = true;
		for (size_t i = 1; i < s->nrcpts; i++)
			same &= strcmp(dr[i].folder, dr[0].folder) == 0;
		buf_puts(&action, "deliver folder=");
		for (size_t i = 0; i < s->nrcpts; i++) {
			if (same) {
				buf_puts(&action, dr[0].folder);
				break;
			}
			buf_printf(&action, "%s<%s>:%s", i ? "," : "", log_str(dr[i].addr), dr[i].folder);
		}
		smtp_log_tx(s, action.data, text, v.log.data ? v.log.data : "");
		buf_free(&action);
	}
	for (size_t g = 0; g < ngroups; g++)
		buf_free(&groups[g]);
	free(groups);
	free(dr);
	verdict_free(&v);
}

/* The end of DATA or BDAT LAST: check limits, deliver, answer. */
static void finish_message(struct session *s)
{
	char text[256];
	msgcheck_end(&s->mc);
	if (s->data.line_too_long) {
		snprintf(text, sizeof(text), "554 5.6.0 Error: message has a line longer than %lld octets",
			 (long long)s->cfg->max_line_length);
		smtp_reply(s, "%s", text);
		smtp_log_tx_plain(s, "reject", text);
	} else if (s->data.raw_bytes > (uint64_t)s->cfg->max_message_size) {
		reject_too_big(s, false);
	} else if (s->spool.failed) {
		errno = s->spool.error;
		log_err(s->qid, "cannot spool the message");
		snprintf(text, sizeof(text), "452 4.3.1 Error: insufficient system storage");
		smtp_reply(s, "%s", text);
		smtp_log_tx_plain(s, "tempfail", text);
	} else if (s->mc.too_big) {
		snprintf(text, sizeof(text), "552 5.3.4 Error: header section exceeds %d octets",
			 MSG_HEADER_MAX);
		smtp_reply(s, "%s", text);
		smtp_log_tx_plain(s, "reject", text);
	} else {
		deliver_checked(s);
	}
	smtp_tx_reset(s);
}

/* Wait for more input in the data phase.  false: the session is over. */
static bool data_fill(struct session *s)
{
	/* Each read waits smtp_data_timeout, and the whole text must arrive
	 * within smtp_data_deadline of MAIL: a byte every few minutes cannot
	 * hold a session for ever. */
	int64_t left = s->in_tx ? s->tx_start + s->cfg->smtp_data_deadline_ms - clock_mono_ms()
				: s->cfg->smtp_data_timeout_ms; /* BDAT octets we discard */
	int64_t wait = left < s->cfg->smtp_data_timeout_ms ? left : s->cfg->smtp_data_timeout_ms;
	/* Never block on the client with replies unsent (RFC 2920 section 3.1):
	 * it may wait for them before sending the octets we wait for. */
	if (conn_flush(s->conn, (int)s->cfg->smtp_timeout_ms) != CONN_OK) {
		s->quit = true;
		return false;
	}
	enum conn_status st = wait > 0 ? conn_fill(s->conn, (int)wait) : CONN_TIMEOUT;
	if (st == CONN_OK)
		return true;
	if (st == CONN_TIMEOUT) {
		smtp_reply(s, "421 4.4.2 %s Error: timeout exceeded", s->cfg->hostname);
		conn_flush(s->conn, 1000);
	}
	log_info(s->in_tx ? s->qid : s->sid, "lost connection after %s from %s: %s (%llu octets received)",
		 s->bdat_started ? "BDAT" : "DATA", s->ip,
		 st == CONN_TIMEOUT ? "timeout" : st == CONN_EOF ? "disconnected" : "error",
		 (unsigned long long)s->data.raw_bytes);
	s->quit = true;
	return false;
}

static void spool_out(struct session *s, size_t outlen)
{
	if (!s->mc.active)
		msgcheck_begin(&s->mc, s->cfg, s->ck, s->qid, &s->spool);
	if (outlen)
		msgcheck_feed(&s->mc, s->out, outlen);
}

void smtp_cmd_data(struct session *s, struct slice args)
{
	if (args.len) {
		smtp_reply(s, "501 5.5.4 Syntax: DATA");
		return;
	}
	if (!s->in_tx) {
		smtp_reply(s, "503 5.5.1 Error: need MAIL command");
		return;
	}
	if (s->nrcpts == 0) {
		smtp_reply(s, "554 5.5.1 Error: no valid recipients");
		return;
	}
	if (s->bdat_started) {
		smtp_reply(s, "503 5.5.1 Error: DATA after BDAT");
		return;
	}
	smtp_reply(s, "354 End data with <CR><LF>.<CR><LF>");
	/* The client waits for 354 before it sends the text (RFC 2920). */
	if (conn_flush(s->conn, (int)s->cfg->smtp_timeout_ms) != CONN_OK) {
		s->quit = true;
		return;
	}
	struct buf *in = conn_rbuf(s->conn);
	for (;;) {
		if (in->len == 0 && !data_fill(s))
			return;
		bool done;
		size_t outlen;
		size_t used = smtp_data_feed(&s->data, in->data, in->len, s->out, &outlen, &done);
		spool_out(s, outlen);
		buf_consume(in, used);
		if (done)
			break;
		if (s->data.raw_bytes > (uint64_t)s->cfg->max_message_size + DATA_OVERRUN_MAX) {
			reject_too_big(s, true);
			return;
		}
	}
	if (s->data.bare_lf)
		log_info(s->qid, "message from %s has %llu bare LF line ends", s->ip,
			 (unsigned long long)s->data.bare_lf);
	finish_message(s);
}

/* Read and throw away n octets of a BDAT chunk we refuse. */
static bool bdat_discard(struct session *s, uint64_t n)
{
	struct buf *in = conn_rbuf(s->conn);
	while (n > 0) {
		if (in->len == 0 && !data_fill(s))
			return false;
		size_t k = in->len < n ? in->len : (size_t)n;
		buf_consume(in, k);
		n -= k;
	}
	return true;
}

void smtp_cmd_bdat(struct session *s, struct slice args)
{
	uint64_t size;
	bool last;
	if (smtp_bdat_parse(args, &size, &last) < 0) {
		/* Without the size the octets that follow cannot be told from
		 * commands: end the session rather than guess. */
		smtp_reply(s, "501 5.5.4 Syntax: BDAT octets [LAST]");
		smtp_reply(s, "421 4.5.0 %s Error: cannot resynchronise after a bad BDAT, closing",
		      s->cfg->hostname);
		s->quit = true;
		return;
	}
	uint64_t max = (uint64_t)s->cfg->max_message_size;
	if (!s->in_tx || s->nrcpts == 0) {
		if (size > max) {
			smtp_reply(s, "503 5.5.1 Error: need MAIL and RCPT before BDAT");
			smtp_reply(s, "421 4.5.0 %s Error: closing", s->cfg->hostname);
			s->quit = true;
			return;
		}
		if (!bdat_discard(s, size))
			return;
		if (!s->in_tx)
			smtp_reply(s, "503 5.5.1 Error: need MAIL command");
		else
			smtp_reply(s, "554 5.5.1 Error: no valid recipients");
		return;
	}
	if (!s->bdat_started) {
		s->bdat_started = true;
		smtp_data_init(&s->data, (size_t)s->cfg->max_line_length, true);
	}
	if (s->data.raw_bytes + size > max) {
		/* A chunk bigger than the limit itself is not worth reading. */
		if (size <= max && !bdat_discard(s, size))
			return;
		reject_too_big(s, size > max);
		smtp_tx_reset(s);
		return;
	}
	struct buf *in = conn_rbuf(s->conn);
	uint64_t left = size;
	while (left > 0) {
		if (in->len == 0 && !data_fill(s))
			return;
		size_t k = in->len < left ? in->len : (size_t)left;
		size_t outlen;
		bool done;
		smtp_data_feed(&s->data, in->data, k, s->out, &outlen, &done);
		spool_out(s, outlen);
		buf_consume(in, k);
		left -= k;
	}
	if (!last) {
		smtp_reply(s, "250 2.0.0 Ok: %llu octets received", (unsigned long long)size);
		return;
	}
	spool_out(s, smtp_data_finish(&s->data, s->out));
	finish_message(s);
}
