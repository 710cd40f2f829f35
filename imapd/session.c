/*
 * session.c - one IMAP4rev1 connection (RFC 3501) from greeting to LOGOUT:
 * the command loop over the incremental parser (synchronizing literals get
 * "+" only when their size is acceptable: a huge literal gets NO [TOOBIG],
 * never a continuation), the command table with the states each command
 * is allowed in, STARTTLS (RFC 3501 6.2.1, pipelined plaintext after it is
 * refused), LOGIN and AUTHENTICATE PLAIN (RFC 4616, SASL-IR RFC 4959),
 * failed logins slowed down per client IP, and the commands that work on
 * folders rather than the selected mailbox (LIST, LSUB, CREATE, DELETE,
 * RENAME, SUBSCRIBE, UNSUBSCRIBE, NAMESPACE, ID, ENABLE, APPEND).
 */
#include "imapd/imapd.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>


#define MAX_AUTH_FAILURES 5          /* per session, then BYE */

/* ----------------------------------------------------------- responses */

/* prefix: "*" or the tag. */
static void vwrite_line(struct session *s, const char *prefix, const char *status,
			const char *fmt, va_list ap)
{
	buf_reset(&s->line);
	buf_puts(&s->line, prefix);
	buf_putc(&s->line, ' ');
	if (status) {
		buf_puts(&s->line, status);
		buf_putc(&s->line, ' ');
	}
	buf_vprintf(&s->line, fmt, ap);
	buf_puts(&s->line, "\r\n");
	log_debug(s->sid, "S: %s", log_strn(s->line.data, s->line.len - 2));
	sess_write(s, s->line.data, s->line.len);
}

void sess_untagged(struct session *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vwrite_line(s, "*", NULL, fmt, ap);
	va_end(ap);
	sess_flush_if_big(s);
}

void sess_tagged(struct session *s, const char *status, const char *fmt, ...)
{
	if (s->closing)
		return;
	va_list ap;
	va_start(ap, fmt);
	vwrite_line(s, s->tag ? s->tag : "*", status, fmt, ap);
	va_end(ap);
}

void sess_bad(struct session *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vwrite_line(s, s->tag ? s->tag : "*", "BAD", fmt, ap);
	va_end(ap);
	s->bad++;
}

void sess_store_error(struct session *s, const char *what, char *err)
{
	log_errx(s->sid, "%s %s: %s", s->user ? s->user : "-", what, err ? err : "error");
	bool busy = err && strstr(err, "locked") != NULL;
	sess_tagged(s, "NO", busy ? "[UNAVAILABLE] Mailbox busy, try again" : "[SERVERBUG] %s failed (see the server log, id %s)",
		    what, s->sid);
	free(err);
}

bool sess_write(struct session *s, const void *p, size_t n)
{
	const char *c = p;
	while (n > 0) {
		size_t k = n > IMAP_FLUSH_AT ? IMAP_FLUSH_AT : n;
		conn_write(s->conn, c, k);
		c += k;
		n -= k;
		if (!sess_flush_if_big(s))
			return false;
	}
	return true;
}

bool sess_flush_if_big(struct session *s)
{
	if (conn_pending(s->conn) < IMAP_FLUSH_AT)
		return true;
	if (conn_flush(s->conn, (int)s->cfg->imap_idle_timeout_ms) != CONN_OK) {
		s->quit = true;
		return false;
	}
	return true;
}

/* -------------------------------------------------------------- helpers */

static const struct {
	const char *name;
	unsigned bit;
} sysflags[] = {
	{ "\\Seen", STORE_SEEN },     { "\\Answered", STORE_ANSWERED }, { "\\Flagged", STORE_FLAGGED },
	{ "\\Deleted", STORE_DELETED }, { "\\Draft", STORE_DRAFT },
};

void format_flags(struct buf *out, unsigned flags, const char *keywords, bool recent)
{
	bool first = true;
	buf_putc(out, '(');
	for (size_t i = 0; i < ARRAY_SIZE(sysflags); i++)
		if (flags & sysflags[i].bit) {
			if (!first)
				buf_putc(out, ' ');
			buf_puts(out, sysflags[i].name);
			first = false;
		}
	if (recent) {
		if (!first)
			buf_putc(out, ' ');
		buf_puts(out, "\\Recent");
		first = false;
	}
	if (keywords && *keywords) {
		if (!first)
			buf_putc(out, ' ');
		buf_puts(out, keywords);
	}
	buf_putc(out, ')');
}

/* RFC 3501 flag-keyword = atom; we also refuse '\' and non-ASCII. */
static bool keyword_valid(const char *k)
{
	if (*k == '\0' || strlen(k) > 100)
		return false;
	for (const unsigned char *p = (const unsigned char *)k; *p; p++)
		if (*p <= 0x20 || *p >= 0x7f || strchr("(){%*\"\\]", *p))
			return false;
	return true;
}

int parse_flag_list(const struct imap_arg *args, size_t n, unsigned *flags_r, struct buf *kw,
		    const char **error_r)
{
	*flags_r = 0;
	size_t nkw = 0;
	for (size_t i = 0; i < n; i++) {
		const char *f = imap_arg_atom(&args[i]);
		if (f == NULL) {
			*error_r = "Flags must be atoms";
			return -1;
		}
		if (f[0] == '\\') {
			size_t j;
			for (j = 0; j < ARRAY_SIZE(sysflags); j++)
				if (str_ieq(f, sysflags[j].name))
					break;
			if (j == ARRAY_SIZE(sysflags)) {
				if (str_ieq(f, "\\Recent")) {
					*error_r = "\\Recent cannot be set";
					return -1;
				}
				*error_r = "Unknown system flag";
				return -1;
			}
			*flags_r |= sysflags[j].bit;
			continue;
		}
		if (!keyword_valid(f)) {
			*error_r = "Invalid keyword";
			return -1;
		}
		if (++nkw > IMAP_MAX_KEYWORDS) {
			*error_r = "Too many keywords";
			return -1;
		}
		/* De-duplicate, case-insensitively. */
		size_t fl = strlen(f);
		bool dup = false;
		for (const char *p = kw->len ? kw->data : ""; *p && !dup;) {
			const char *e = strchr(p, ' ');
			size_t l = e ? (size_t)(e - p) : strlen(p);
			dup = l == fl && strncasecmp(p, f, l) == 0;
			p += l + (e != NULL);
		}
		if (dup)
			continue;
		if ((kw->len && buf_putc(kw, ' ') < 0) || buf_puts(kw, f) < 0) {
			*error_r = "Too many keywords";
			return -1;
		}
	}
	return 0;
}

const char *sess_folder_arg(struct session *s, const struct imap_arg *a)
{
	const char *raw = imap_arg_astring(a);
	char *name = raw ? mutf7_decode(raw) : NULL;
	if (name == NULL || !store_folder_name_valid(name)) {
		free(name);
		sess_tagged(s, "NO", "[CANNOT] Mailbox name is not valid (modified UTF-7, RFC 3501 5.1.3)");
		return NULL;
	}
	for (size_t i = 0; i < ARRAY_SIZE(s->names); i++)
		if (s->names[i] == NULL) {
			s->names[i] = name;
			return name;
		}
	free(name);
	sess_tagged(s, "NO", "[CANNOT] Too many folder names");
	return NULL;
}

static void names_free(struct session *s)
{
	for (size_t i = 0; i < ARRAY_SIZE(s->names); i++) {
		free(s->names[i]);
		s->names[i] = NULL;
	}
}

/* A folder name for the client: modified UTF-7, as a string. */
void write_folder_name(struct buf *b, const char *name)
{
	char *enc = mutf7_encode(name);
	mime_imap_string(b, enc, strlen(enc));
	free(enc);
}

static void login_failed(struct session *s)
{
	s->auth_failures++;
	conn_flush(s->conn, 1000);
	auth_fail_delay(s->ip);
}

/* ------------------------------------------------------------ capability */

static bool plaintext_ok(const struct session *s)
{
	return conn_is_tls(s->conn) || s->cfg->allow_plaintext_auth;
}

static void capability_string(struct session *s, struct buf *b)
{
	buf_puts(b, "IMAP4rev1 LITERAL+ SASL-IR ID ENABLE IDLE NAMESPACE UNSELECT CHILDREN");
	if (s->state == ST_NOT_AUTH) {
		if (s->dc->tls && !conn_is_tls(s->conn))
			buf_puts(b, " STARTTLS");
		if (plaintext_ok(s))
			buf_puts(b, " AUTH=PLAIN");
		else
			buf_puts(b, " LOGINDISABLED");
	} else {
		buf_puts(b, " UIDPLUS MOVE SPECIAL-USE CONDSTORE");
	}
}

static void cmd_capability(struct session *s, const struct imap_cmd *c)
{
	(void)c;
	struct buf b;
	buf_init(&b, 4096);
	capability_string(s, &b);
	sess_untagged(s, "CAPABILITY %s", b.data);
	buf_free(&b);
	sess_tagged(s, "OK", "CAPABILITY completed");
}

static void cmd_noop(struct session *s, const struct imap_cmd *c)
{
	(void)c;
	if (s->state == ST_SELECTED)
		mailbox_sync(s, true);
	sess_tagged(s, "OK", "%s completed", c->name);
}

static void cmd_logout(struct session *s, const struct imap_cmd *c)
{
	(void)c;
	sess_untagged(s, "BYE Logging out");
	sess_tagged(s, "OK", "LOGOUT completed");
	s->quit = true;
}

static void cmd_starttls(struct session *s, const struct imap_cmd *c)
{
	(void)c;
	if (s->dc->tls == NULL || conn_is_tls(s->conn)) {
		sess_bad(s, "STARTTLS not available");
		return;
	}
	/* RFC 3501 6.2.1 / the CVE-2011-0411 class: nothing may follow the
	 * command in the same packet before the handshake. */
	if (conn_input_pending(s->conn)) {
		sess_untagged(s, "BYE Data pipelined after STARTTLS");
		log_warnx(s->sid, "plaintext pipelined after STARTTLS from %s", s->ip);
		s->quit = true;
		return;
	}
	sess_tagged(s, "OK", "Begin TLS negotiation now");
	if (conn_flush(s->conn, (int)s->cfg->imap_login_timeout_ms) != CONN_OK) {
		s->quit = true;
		return;
	}
	const char *err;
	if (conn_tls_accept(s->conn, s->dc->tls, (int)s->cfg->imap_login_timeout_ms, &err) != CONN_OK) {
		log_info(s->sid, "STARTTLS from %s: %s", s->ip, err);
		s->quit = true;
		return;
	}
	log_info(s->sid, "STARTTLS from %s: %s", s->ip, conn_tls_info(s->conn));
}

/* Check the password and open the store; replies.  true when logged in. */
static bool do_login(struct session *s, const char *user, const char *pass)
{
	char addr[320];
	int r = 0;
	if (user_address_normalize(user, addr, sizeof(addr)))
		r = userdb_verify(s->dc->users, addr, pass);
	if (r < 0) {
		log_warnx(s->sid, "login %s from %s: users file unavailable", log_str(addr), s->ip);
		sess_tagged(s, "NO", "[UNAVAILABLE] Temporary authentication failure");
		return false;
	}
	if (r == 0) {
		log_info(s->sid, "login failed for %s from %s", log_str(user), s->ip);
		login_failed(s);
		sess_tagged(s, "NO", "[AUTHENTICATIONFAILED] Authentication failed");
		if (s->auth_failures >= MAX_AUTH_FAILURES) {
			sess_untagged(s, "BYE Too many failed logins");
			s->quit = true;
		}
		return false;
	}
	char *err = NULL;
	if (store_open_flags(s->app->data_dir, addr, STORE_OPEN_RECOVER_ONCE, &s->store, &err) < 0) {
		log_errx(s->sid, "login %s: cannot open the mail store: %s", addr, err);
		free(err);
		sess_tagged(s, "NO", "[UNAVAILABLE] Mail store not available");
		return false;
	}
	s->user = xstrdup(addr);
	s->state = ST_AUTH;
	/* Training a crash (or a full batch) left queued: after this reply. */
	uint64_t queued = 0;
	if (store_train_count(s->store, &queued, &err) < 0) {
		log_warnx(s->sid, "training: %s", err);
		free(err);
		err = NULL;
	}
	s->train_pending = queued > 0;
	imap_parser_set_limits(s->parser, IMAP_SMALL_LITERAL_MAX, (size_t)s->cfg->max_message_size);
	log_info(s->sid, "login %s from %s%s", addr, s->ip, conn_is_tls(s->conn) ? " (TLS)" : "");
	struct buf b;
	buf_init(&b, 4096);
	capability_string(s, &b);
	sess_tagged(s, "OK", "[CAPABILITY %s] Logged in", b.data);
	buf_free(&b);
	return true;
}

static void cmd_login(struct session *s, const struct imap_cmd *c)
{
	if (c->nargs != 2 || !imap_arg_astring(&c->args[0]) || !imap_arg_astring(&c->args[1])) {
		sess_bad(s, "LOGIN needs a user name and a password");
		return;
	}
	if (!plaintext_ok(s)) {
		sess_tagged(s, "NO", "[PRIVACYREQUIRED] Use STARTTLS first");
		return;
	}
	do_login(s, imap_arg_astring(&c->args[0]), imap_arg_astring(&c->args[1]));
}

/* RFC 4616: [authzid] NUL authcid NUL passwd, base64. */
static void cmd_authenticate(struct session *s, const struct imap_cmd *c)
{
	const char *mech = c->nargs >= 1 ? imap_arg_atom(&c->args[0]) : NULL;
	if (mech == NULL || c->nargs > 2) {
		sess_bad(s, "AUTHENTICATE needs a mechanism");
		return;
	}
	if (!str_ieq(mech, "PLAIN")) {
		sess_tagged(s, "NO", "[CANNOT] Unsupported authentication mechanism");
		return;
	}
	if (!plaintext_ok(s)) {
		sess_tagged(s, "NO", "[PRIVACYREQUIRED] Use STARTTLS first");
		return;
	}
	char *resp;
	if (c->nargs == 2) {
		const char *ir = imap_arg_astring(&c->args[1]);
		resp = xstrdup(ir ? ir : "");
	} else {
		conn_write(s->conn, "+ \r\n", 4);
		resp = conn_read_line(s->conn, 8192, (int)s->cfg->imap_login_timeout_ms);
		if (resp == NULL) {
			s->quit = true;
			return;
		}
	}
	if (strcmp(resp, "*") == 0) {
		free(resp);
		sess_bad(s, "AUTHENTICATE cancelled");
		return;
	}
	char *authz, *authc, *pass;
	int r = sasl_plain_decode(resp, &authz, &authc, &pass);
	free(resp);
	if (r < 0) {
		sess_bad(s, "Malformed PLAIN response");
		return;
	}
	if (*authz && !str_ieq(authz, authc)) {
		sasl_plain_free(authz, authc, pass);
		sess_tagged(s, "NO", "[AUTHORIZATIONFAILED] Proxy login not permitted");
		return;
	}
	do_login(s, authc, pass);
	sasl_plain_free(authz, authc, pass);
}

/* ---------------------------------------------------- folder commands */

struct list_ctx {
	struct session *s;
	const char *pattern;
	bool lsub;
	struct store_folder_info *all;
	size_t n, cap;
	char **names;
};

/* RFC 3501 6.3.8: '*' matches anything, '%' anything but the hierarchy
 * delimiter.  Dynamic programming over (pattern, name) positions: linear
 * in each, so no pattern can make it run away (a backtracking matcher is
 * exponential in the number of wildcards). */
static bool wild_match(const char *pat, const char *name)
{
	size_t m = strlen(pat), n = strlen(name);
	bool *prev = xcalloc(n + 1, sizeof(bool)), *cur = xcalloc(n + 1, sizeof(bool));
	prev[0] = true;
	for (size_t i = 1; i <= m; i++) {
		char pc = pat[i - 1];
		cur[0] = prev[0] && (pc == '*' || pc == '%');
		for (size_t j = 1; j <= n; j++) {
			if (pc == '*')
				cur[j] = prev[j] || cur[j - 1];
			else if (pc == '%')
				cur[j] = prev[j] || (cur[j - 1] && name[j - 1] != '/');
			else
				cur[j] = prev[j - 1] && pc == name[j - 1];
		}
		bool *t = prev;
		prev = cur;
		cur = t;
	}
	bool r = prev[n];
	free(prev);
	free(cur);
	return r;
}

static int list_collect(const struct store_folder_info *fi, void *arg)
{
	struct list_ctx *lc = arg;
	if (lc->n == lc->cap) {
		lc->cap = lc->cap ? lc->cap * 2 : 32;
		lc->all = xrealloc(lc->all, lc->cap * sizeof(*lc->all));
		lc->names = xrealloc(lc->names, lc->cap * sizeof(*lc->names));
	}
	lc->all[lc->n] = *fi;
	lc->names[lc->n] = xstrdup(fi->name);
	lc->all[lc->n].name = lc->names[lc->n];
	lc->n++;
	return 0;
}

static bool has_children(const struct list_ctx *lc, const char *name)
{
	size_t l = strlen(name);
	for (size_t i = 0; i < lc->n; i++)
		if (strncmp(lc->names[i], name, l) == 0 && lc->names[i][l] == '/')
			return true;
	return false;
}

static void cmd_list(struct session *s, const struct imap_cmd *c, bool lsub)
{
	const char *ref = c->nargs == 2 ? imap_arg_astring(&c->args[0]) : NULL;
	const char *rawpat = c->nargs == 2 ? imap_arg_astring(&c->args[1]) : NULL;
	if (ref == NULL || rawpat == NULL) {
		sess_bad(s, "%s needs a reference and a mailbox pattern", c->name);
		return;
	}
	if (strlen(ref) + strlen(rawpat) > 1024) {
		sess_bad(s, "Mailbox pattern too long");
		return;
	}
	char *pat = mutf7_decode(rawpat);
	if (pat == NULL)
		pat = xstrdup(rawpat);
	s->names[ARRAY_SIZE(s->names) - 1] = pat;
	char *dref = mutf7_decode(ref);
	if (dref == NULL)
		dref = xstrdup(ref);
	s->names[ARRAY_SIZE(s->names) - 2] = dref;
	/* RFC 3501 6.3.8: the reference is prepended (a pattern starting
	 * with the delimiter stands on its own). */
	char *full = *pat == '/' ? xstrdup(pat) : xasprintf("%s%s", dref, pat);
	/* "INBOX" is case-insensitive, also as the first level of a name. */
	if (strncasecmp(full, "INBOX", 5) == 0 && (full[5] == '\0' || full[5] == '/'))
		memcpy(full, "INBOX", 5);
	struct list_ctx lc = { .s = s, .pattern = full, .lsub = lsub };
	char *err = NULL;
	if (store_folder_list(s->store, list_collect, &lc, &err) < 0) {
		free(full);
		sess_store_error(s, "LIST", err);
		goto out;
	}
	struct buf b;
	buf_init(&b, 64 * 1024);
	for (size_t i = 0; i < lc.n; i++) {
		const struct store_folder_info *fi = &lc.all[i];
		bool m = wild_match(full, fi->name);
		if (!m || (lsub && !fi->subscribed))
			continue;
		buf_reset(&b);
		buf_printf(&b, "%s (%s", lsub ? "LSUB" : "LIST",
			   has_children(&lc, fi->name) ? "\\HasChildren" : "\\HasNoChildren");
		if (fi->special_use && !str_ieq(fi->name, "INBOX"))
			buf_printf(&b, " %s", fi->special_use);
		buf_puts(&b, ") \"/\" ");
		write_folder_name(&b, fi->name);
		sess_untagged(s, "%s", b.data);
	}
	buf_free(&b);
	free(full);
	sess_tagged(s, "OK", "%s completed", c->name);
out:
	for (size_t i = 0; i < lc.n; i++)
		free(lc.names[i]);
	free(lc.names);
	free(lc.all);
}

static void cmd_create(struct session *s, const struct imap_cmd *c)
{
	if (c->nargs != 1) {
		sess_bad(s, "CREATE needs a folder name");
		return;
	}
	const char *raw = imap_arg_astring(&c->args[0]);
	if (raw == NULL) {
		sess_bad(s, "CREATE needs a folder name");
		return;
	}
	/* RFC 3501 6.3.3: a trailing delimiter says the name will have children. */
	char *name = xstrdup(raw);
	size_t l = strlen(name);
	if (l > 1 && name[l - 1] == '/')
		name[l - 1] = '\0';
	struct imap_arg a = { .type = IMAP_ARG_QUOTED, .str = name, .len = strlen(name) };
	const char *dec = sess_folder_arg(s, &a);
	free(name);
	if (dec == NULL)
		return;
	struct store_folder_info fi;
	char *err = NULL;
	int r = store_folder_info(s->store, dec, &fi, &err);
	if (r < 0) {
		sess_store_error(s, "CREATE", err);
		return;
	}
	if (r == 1) {
		sess_tagged(s, "NO", "[ALREADYEXISTS] Folder already exists");
		return;
	}
	if (store_folder_create(s->store, dec, &err) < 0) {
		log_info(s->sid, "CREATE %s: %s", log_str(dec), err);
		free(err);
		sess_tagged(s, "NO", "[CANNOT] Cannot create this folder");
		return;
	}
	sess_tagged(s, "OK", "CREATE completed");
}

static void cmd_delete(struct session *s, const struct imap_cmd *c)
{
	const char *name = c->nargs == 1 ? sess_folder_arg(s, &c->args[0]) : NULL;
	if (c->nargs != 1) {
		sess_bad(s, "DELETE needs a folder name");
		return;
	}
	if (name == NULL)
		return;
	if (store_folder_is_special(name)) {
		sess_tagged(s, "NO", "[CANNOT] %s cannot be deleted", str_ieq(name, "INBOX") ? "INBOX" : "A special folder");
		return;
	}
	struct store_folder_info fi;
	char *err = NULL;
	int r = store_folder_info(s->store, name, &fi, &err);
	if (r <= 0) {
		free(err);
		sess_tagged(s, "NO", "[NONEXISTENT] No such folder");
		return;
	}
	bool selected = s->mbox && strcmp(s->mbox->name, fi.name) == 0;
	if (store_folder_delete(s->store, name, &err) < 0) {
		log_info(s->sid, "DELETE %s: %s", log_str(name), err);
		bool children = err && strstr(err, "child") != NULL;
		free(err);
		sess_tagged(s, "NO", children ? "[INUSE] Folder has subfolders" : "[CANNOT] Cannot delete this folder");
		return;
	}
	if (selected) {
		mailbox_free(&s->mbox);
		s->state = ST_AUTH;
	}
	sess_tagged(s, "OK", "DELETE completed");
}

static void cmd_rename(struct session *s, const struct imap_cmd *c)
{
	if (c->nargs != 2) {
		sess_bad(s, "RENAME needs two folder names");
		return;
	}
	const char *from = sess_folder_arg(s, &c->args[0]);
	if (from == NULL)
		return;
	const char *to = sess_folder_arg(s, &c->args[1]);
	if (to == NULL)
		return;
	if (store_folder_is_special(from) || store_folder_is_special(to)) {
		sess_tagged(s, "NO", "[CANNOT] Special folders cannot be renamed");
		return;
	}
	struct store_folder_info fi;
	char *err = NULL;
	if (store_folder_info(s->store, from, &fi, &err) <= 0) {
		free(err);
		sess_tagged(s, "NO", "[NONEXISTENT] No such folder");
		return;
	}
	char *from_norm = xstrdup(fi.name);
	if (store_folder_info(s->store, to, &fi, &err) != 0) {
		free(err);
		free(from_norm);
		sess_tagged(s, "NO", "[ALREADYEXISTS] Target folder exists");
		return;
	}
	if (store_folder_rename(s->store, from, to, &err) < 0) {
		log_info(s->sid, "RENAME %s %s: %s", log_str(from), log_str(to), err);
		free(err);
		free(from_norm);
		sess_tagged(s, "NO", "[CANNOT] Cannot rename this folder");
		return;
	}
	/* The selected mailbox (or one below it) moved with it: same UIDs. */
	if (s->mbox) {
		size_t fl = strlen(from_norm);
		const char *cur = s->mbox->name;
		if (strcmp(cur, from_norm) == 0 || (strncmp(cur, from_norm, fl) == 0 && cur[fl] == '/')) {
			char *nn = xasprintf("%s%s", to, cur + fl);
			free(s->mbox->name);
			s->mbox->name = nn;
		}
	}
	free(from_norm);
	sess_tagged(s, "OK", "RENAME completed");
}

static void cmd_subscribe(struct session *s, const struct imap_cmd *c, bool on)
{
	if (c->nargs != 1) {
		sess_bad(s, "%s needs a folder name", c->name);
		return;
	}
	const char *name = sess_folder_arg(s, &c->args[0]);
	if (name == NULL)
		return;
	char *err = NULL;
	if (store_folder_subscribe(s->store, name, on, &err) < 0) {
		free(err);
		sess_tagged(s, "NO", "[NONEXISTENT] No such folder");
		return;
	}
	sess_tagged(s, "OK", "%s completed", c->name);
}

static void cmd_namespace(struct session *s, const struct imap_cmd *c)
{
	(void)c;
	sess_untagged(s, "NAMESPACE ((\"\" \"/\")) NIL NIL");
	sess_tagged(s, "OK", "NAMESPACE completed");
}

static void cmd_id(struct session *s, const struct imap_cmd *c)
{
	if (c->nargs != 1 || (c->args[0].type != IMAP_ARG_LIST && c->args[0].type != IMAP_ARG_NIL)) {
		sess_bad(s, "ID needs a parameter list or NIL");
		return;
	}
	sess_untagged(s, "ID (\"name\" \"mailgw-imapd\" \"vendor\" \"mailgw\")");
	sess_tagged(s, "OK", "ID completed");
}

static void cmd_enable(struct session *s, const struct imap_cmd *c)
{
	if (c->nargs == 0) {
		sess_bad(s, "ENABLE needs capabilities");
		return;
	}
	struct buf b;
	buf_init(&b, 1024);
	for (size_t i = 0; i < c->nargs; i++) {
		const char *cap = imap_arg_atom(&c->args[i]);
		if (cap && str_ieq(cap, "CONDSTORE") && !s->condstore) {
			s->condstore = true;
			buf_puts(&b, " CONDSTORE");
		}
	}
	sess_untagged(s, "ENABLED%s", b.len ? b.data : "");
	buf_free(&b);
	sess_tagged(s, "OK", "ENABLE completed");
}

static void cmd_check(struct session *s, const struct imap_cmd *c)
{
	(void)c;
	mailbox_sync(s, true);
	sess_tagged(s, "OK", "CHECK completed");
}

static void cmd_unselect(struct session *s, const struct imap_cmd *c)
{
	(void)c;
	mailbox_free(&s->mbox);
	s->state = ST_AUTH;
	sess_tagged(s, "OK", "UNSELECT completed");
}

/* RFC 3501 date-time "dd-Mon-yyyy hh:mm:ss +zzzz". */
static bool parse_date_time(const char *v, int64_t *t_r)
{
	static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
	int d, y, hh, mm, ss, zone, end = 0;
	char mon[4], sign;
	if (strlen(v) < 25 || strlen(v) > 26 ||
	    sscanf(v, "%2d-%3s-%4d %2d:%2d:%2d %c%4d%n", &d, mon, &y, &hh, &mm, &ss, &sign, &zone, &end) != 8 ||
	    v[end] != '\0' || hh < 0 || mm < 0 || ss < 0 || zone < 0 || zone % 100 > 59)
		return false;
	const char *mp = strcasestr(months, mon);
	if (mp == NULL || (mp - months) % 3 != 0 || (sign != '+' && sign != '-') || d < 1 || d > 31 ||
	    y < 1970 || hh > 23 || mm > 59 || ss > 60)
		return false;
	struct tm tm = { .tm_mday = d, .tm_mon = (int)((mp - months) / 3), .tm_year = y - 1900,
			 .tm_hour = hh, .tm_min = mm, .tm_sec = ss };
	int64_t t = (int64_t)timegm(&tm);
	int64_t off = (zone / 100) * 3600 + (zone % 100) * 60;
	*t_r = sign == '+' ? t - off : t + off;
	return true;
}

/* APPEND folder [(flags)] [date-time] literal (RFC 3501 6.3.11, UIDPLUS
 * APPENDUID, RFC 4315). */
static void cmd_append(struct session *s, const struct imap_cmd *c)
{
	if (c->nargs < 2) {
		sess_bad(s, "APPEND needs a folder and a message");
		return;
	}
	const struct imap_arg *msg = &c->args[c->nargs - 1];
	if (msg->type != IMAP_ARG_LITERAL) {
		sess_bad(s, "APPEND needs the message as a literal");
		return;
	}
	unsigned flags = 0;
	struct buf kw;
	buf_init(&kw, 64 * 1024);
	int64_t date = 0;
	for (size_t i = 1; i + 1 < c->nargs; i++) {
		const struct imap_arg *a = &c->args[i];
		const char *e;
		if (a->type == IMAP_ARG_LIST && i == 1) {
			if (parse_flag_list(a->list, a->nlist, &flags, &kw, &e) < 0) {
				buf_free(&kw);
				sess_bad(s, "%s", e);
				return;
			}
		} else if (a->type == IMAP_ARG_QUOTED && parse_date_time(a->str, &date)) {
			continue;
		} else {
			buf_free(&kw);
			sess_bad(s, "Invalid APPEND arguments");
			return;
		}
	}
	const char *name = sess_folder_arg(s, &c->args[0]);
	if (name == NULL) {
		buf_free(&kw);
		return;
	}
	if (msg->len == 0) {
		buf_free(&kw);
		sess_tagged(s, "NO", "Empty message");
		return;
	}
	if ((int64_t)msg->len > s->cfg->max_message_size) {
		buf_free(&kw);
		sess_tagged(s, "NO", "[TOOBIG] Message too big");
		return;
	}
	struct store_folder_info fi;
	char *err = NULL;
	int r = store_folder_state(s->store, name, &fi, &err);
	if (r <= 0) {
		buf_free(&kw);
		if (r < 0) {
			sess_store_error(s, "APPEND", err);
			return;
		}
		sess_tagged(s, "NO", "[TRYCREATE] No such folder");
		return;
	}
	uint32_t uidvalidity = fi.uidvalidity;
	/* The store keeps LF line ends: convert CRLF (and keep bare LF). */
	char *data = xmalloc(msg->len + 1);
	size_t dl = 0;
	for (size_t i = 0; i < msg->len; i++) {
		if (msg->str[i] == '\r' && i + 1 < msg->len && msg->str[i + 1] == '\n')
			continue;
		data[dl++] = msg->str[i];
	}
	struct store_meta meta = { .internaldate = date, .flags = flags };
	uint32_t uid = 0;
	r = store_append(s->store, name, data, dl, &meta, &uid, &err);
	free(data);
	if (r == 0 && kw.len) {
		if (store_set_flags_kw(s->store, name, uid, flags, kw.data, 0, NULL, &err) < 0) {
			log_warnx(s->sid, "APPEND keywords: %s", err);
			free(err);
			err = NULL;
		}
	}
	buf_free(&kw);
	if (r < 0) {
		sess_store_error(s, "APPEND", err);
		return;
	}
	log_info(s->sid, "append %s uid=%u size=%zu", log_str(name), uid, dl);
	train_note(s, name, uid);
	if (s->state == ST_SELECTED)
		mailbox_sync(s, true);
	sess_tagged(s, "OK", "[APPENDUID %u %u] APPEND completed", uidvalidity, uid);
}

/* ------------------------------------------------------------- dispatch */

/* A command for the debug log: arguments as sent (literals as {N}, long
 * strings cut), the secrets of LOGIN and AUTHENTICATE masked. */
static void render_args(struct buf *b, const struct imap_arg *a, size_t n, size_t mask_from)
{
	for (size_t i = 0; i < n && b->len < 400; i++) {
		if (i)
			buf_putc(b, ' ');
		if (i >= mask_from) {
			buf_puts(b, "***");
			continue;
		}
		switch (a[i].type) {
		case IMAP_ARG_LIST:
			buf_putc(b, '(');
			render_args(b, a[i].list, a[i].nlist, SIZE_MAX);
			buf_putc(b, ')');
			break;
		case IMAP_ARG_LITERAL:
			buf_printf(b, "{%zu}", a[i].len);
			break;
		case IMAP_ARG_QUOTED:
			buf_printf(b, "\"%.80s\"", a[i].str);
			break;
		default:
			buf_printf(b, "%.200s", a[i].str);
		}
	}
}

static void log_command(struct session *s, const struct imap_cmd *c)
{
	if (!log_debug_enabled())
		return;
	struct buf b;
	buf_init(&b, 1024);
	size_t mask = strcmp(c->name, "LOGIN") == 0 ? 1 : strcmp(c->name, "AUTHENTICATE") == 0 ? 1 : SIZE_MAX;
	render_args(&b, c->args, c->nargs, mask);
	log_debug(s->sid, "C: %s %s %s", log_str(c->tag), c->name, log_strn(b.data ? b.data : "", b.len));
	buf_free(&b);
}

enum { S_NA = 1, S_AU = 2, S_SE = 4, S_ANY = 7 };

static void cmd_uid(struct session *s, const struct imap_cmd *c);

static void do_select(struct session *s, const struct imap_cmd *c)
{
	cmd_select(s, c, false);
}
static void do_examine(struct session *s, const struct imap_cmd *c)
{
	cmd_select(s, c, true);
}
static void do_list(struct session *s, const struct imap_cmd *c)
{
	cmd_list(s, c, false);
}
static void do_lsub(struct session *s, const struct imap_cmd *c)
{
	cmd_list(s, c, true);
}
static void do_subscribe(struct session *s, const struct imap_cmd *c)
{
	cmd_subscribe(s, c, true);
}
static void do_unsubscribe(struct session *s, const struct imap_cmd *c)
{
	cmd_subscribe(s, c, false);
}
static void do_close(struct session *s, const struct imap_cmd *c)
{
	cmd_close(s, c, true);
}
static void do_expunge(struct session *s, const struct imap_cmd *c)
{
	cmd_expunge(s, c, NULL);
}
static void do_fetch(struct session *s, const struct imap_cmd *c)
{
	cmd_fetch(s, c, c->args, c->nargs, false);
}
static void do_store(struct session *s, const struct imap_cmd *c)
{
	cmd_store(s, c, c->args, c->nargs, false);
}
static void do_search(struct session *s, const struct imap_cmd *c)
{
	cmd_search(s, c, c->args, c->nargs, false);
}
static void do_copy(struct session *s, const struct imap_cmd *c)
{
	cmd_copy(s, c, c->args, c->nargs, false, false);
}
static void do_move(struct session *s, const struct imap_cmd *c)
{
	cmd_copy(s, c, c->args, c->nargs, false, true);
}

static const struct cmd_def {
	const char *name;
	unsigned states;
	void (*fn)(struct session *s, const struct imap_cmd *c);
} commands[] = {
	{ "CAPABILITY", S_ANY, cmd_capability },
	{ "NOOP", S_ANY, cmd_noop },
	{ "LOGOUT", S_ANY, cmd_logout },
	{ "STARTTLS", S_NA, cmd_starttls },
	{ "LOGIN", S_NA, cmd_login },
	{ "AUTHENTICATE", S_NA, cmd_authenticate },
	{ "ID", S_ANY, cmd_id },
	{ "ENABLE", S_AU | S_SE, cmd_enable },
	{ "SELECT", S_AU | S_SE, do_select },
	{ "EXAMINE", S_AU | S_SE, do_examine },
	{ "CREATE", S_AU | S_SE, cmd_create },
	{ "DELETE", S_AU | S_SE, cmd_delete },
	{ "RENAME", S_AU | S_SE, cmd_rename },
	{ "SUBSCRIBE", S_AU | S_SE, do_subscribe },
	{ "UNSUBSCRIBE", S_AU | S_SE, do_unsubscribe },
	{ "LIST", S_AU | S_SE, do_list },
	{ "LSUB", S_AU | S_SE, do_lsub },
	{ "NAMESPACE", S_AU | S_SE, cmd_namespace },
	{ "STATUS", S_AU | S_SE, cmd_status },
	{ "APPEND", S_AU | S_SE, cmd_append },
	{ "IDLE", S_AU | S_SE, cmd_idle },
	{ "CHECK", S_SE, cmd_check },
	{ "CLOSE", S_SE, do_close },
	{ "UNSELECT", S_SE, cmd_unselect },
	{ "EXPUNGE", S_SE, do_expunge },
	{ "SEARCH", S_SE, do_search },
	{ "FETCH", S_SE, do_fetch },
	{ "STORE", S_SE, do_store },
	{ "COPY", S_SE, do_copy },
	{ "MOVE", S_SE, do_move },
	{ "UID", S_SE, cmd_uid },
};

static void cmd_uid(struct session *s, const struct imap_cmd *c)
{
	const char *sub = c->nargs >= 1 ? imap_arg_atom(&c->args[0]) : NULL;
	if (sub == NULL) {
		sess_bad(s, "UID needs a command");
		return;
	}
	const struct imap_arg *a = c->args + 1;
	size_t n = c->nargs - 1;
	if (str_ieq(sub, "FETCH"))
		cmd_fetch(s, c, a, n, true);
	else if (str_ieq(sub, "STORE"))
		cmd_store(s, c, a, n, true);
	else if (str_ieq(sub, "SEARCH"))
		cmd_search(s, c, a, n, true);
	else if (str_ieq(sub, "COPY"))
		cmd_copy(s, c, a, n, true, false);
	else if (str_ieq(sub, "MOVE"))
		cmd_copy(s, c, a, n, true, true);
	else if (str_ieq(sub, "EXPUNGE")) {
		if (n != 1 || imap_arg_atom(&a[0]) == NULL) {
			sess_bad(s, "UID EXPUNGE needs a UID set");
			return;
		}
		cmd_expunge(s, c, &a[0]);
	} else
		sess_bad(s, "Unknown UID command");
}

static void dispatch(struct session *s, const struct imap_cmd *c)
{
	s->tag = c->tag;
	s->commands++;
	unsigned st = s->state == ST_NOT_AUTH ? S_NA : s->state == ST_AUTH ? S_AU : S_SE;
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++) {
		if (strcmp(commands[i].name, c->name) != 0)
			continue;
		if (!(commands[i].states & st)) {
			sess_bad(s, "%s not allowed %s", c->name,
				 st == S_NA ? "before login" : st == S_AU ? "without a selected mailbox" : "now");
			return;
		}
		commands[i].fn(s, c);
		names_free(s);
		return;
	}
	sess_bad(s, "Unknown command");
}

/* ----------------------------------------------------------- the loop */

static void session_loop(struct session *s)
{
	struct buf *in = conn_rbuf(s->conn);
	while (!s->quit) {
		if (s->bad >= s->cfg->imap_max_bad_commands) {
			sess_untagged(s, "BYE Too many invalid commands");
			log_info(s->sid, "too many bad commands from %s, closing", s->ip);
			break;
		}
		size_t consumed = 0;
		enum imap_parse_status ps = in->len ? imap_parser_feed(s->parser, in->data, in->len, &consumed)
						    : IMAP_PARSE_MORE;
		buf_consume(in, consumed);
		if (ps == IMAP_PARSE_DONE) {
			const struct imap_cmd *c = imap_parser_cmd(s->parser);
			log_command(s, c);
			dispatch(s, c);
			s->tag = NULL;
			imap_parser_reset(s->parser);
			continue;
		}
		if (ps == IMAP_PARSE_ERROR) {
			s->tag = imap_parser_tag(s->parser);
			sess_bad(s, "%s", imap_parser_error(s->parser));
			s->tag = NULL;
			if (imap_parser_error_fatal(s->parser)) {
				sess_untagged(s, "BYE Cannot recover from this error");
				break;
			}
			imap_parser_reset(s->parser);
			continue;
		}
		if (ps == IMAP_PARSE_LITERAL) {
			const char *name = imap_parser_name(s->parser);
			uint64_t size = imap_parser_literal_size(s->parser);
			bool append = name && strcmp(name, "APPEND") == 0;
			uint64_t max = append ? (uint64_t)s->cfg->max_message_size : IMAP_SMALL_LITERAL_MAX;
			if (s->state == ST_NOT_AUTH && !append)
				max = IMAP_LOGIN_LITERAL_MAX;
			if (size > max || (append && s->state == ST_NOT_AUTH)) {
				s->tag = imap_parser_tag(s->parser);
				sess_tagged(s, "NO", "[TOOBIG] Literal too big");
				s->bad++;
				s->tag = NULL;
				imap_parser_literal_reject(s->parser);
				continue;
			}
			imap_parser_literal_continue(s->parser);
			conn_write(s->conn, "+ Ready for literal data\r\n", 26);
			continue;
		}
		/* Need more input: answer what we have, learn what the last
		 * commands taught (off the client's path), and wait. */
		/* Deliveries queue autolearning too: a client that stays
		 * connected gets it applied now and then. */
		if (!s->train_pending && s->store != NULL &&
		    clock_mono_ms() - s->train_checked >= TRAIN_CHECK_MS) {
			uint64_t queued = 0;
			char *err = NULL;
			s->train_checked = clock_mono_ms();
			if (store_train_count(s->store, &queued, &err) < 0)
				free(err);
			s->train_pending = queued > 0;
		}
		if (s->train_pending) {
			if (conn_flush(s->conn, (int)s->cfg->imap_idle_timeout_ms) != CONN_OK)
				return;
			train_flush(s);
		}
		int64_t timeout = s->state == ST_NOT_AUTH ? s->cfg->imap_login_timeout_ms
							  : s->cfg->imap_idle_timeout_ms;
		enum daemon_wait w = daemon_read_more(s->app->d, &s->link, s->conn, (int)timeout);
		if (w == DAEMON_TIMEOUT) {
			sess_untagged(s, "BYE Autologout: idle for too long");
			log_info(s->sid, "timeout from %s", s->ip);
			break;
		}
		if (w == DAEMON_STOPPING) {
			sess_untagged(s, "BYE Server shutting down");
			break;
		}
		if (w == DAEMON_CLOSED)
			return;
	}
	conn_flush(s->conn, 2000);
}

void imap_session_run(struct imapd *app, int fd, const struct sockaddr *peer, bool implicit_tls,
		      const char *ip)
{
	struct session *s = xcalloc(1, sizeof(*s));
	s->app = app;
	s->dc = daemon_cfg_get(app->d);
	s->cfg = s->dc->cfg;
	s->conn = conn_new(fd, peer, IMAP_RBUF_MAX);
	s->parser = imap_parser_new((size_t)s->cfg->imap_max_line_length,
				    (size_t)s->cfg->max_message_size, IMAP_MAX_ARGS);
	/* Before login: no APPEND, small literals only (a hostile client
	 * must not make us hold megabytes per connection). */
	imap_parser_set_limits(s->parser, IMAP_LOGIN_LITERAL_MAX, 0);
	buf_init(&s->line, 1024 * 1024);
	str_copy(s->ip, ip, sizeof(s->ip));
	id_generate(s->sid);
	daemon_register(app->d, &s->link, fd);
	log_info(s->sid, "connect from %s%s", s->ip, implicit_tls ? " (implicit TLS)" : "");
	if (implicit_tls) {
		const char *err;
		if (conn_tls_accept(s->conn, s->dc->tls, (int)s->cfg->imap_login_timeout_ms, &err) != CONN_OK) {
			log_info(s->sid, "TLS from %s: %s", s->ip, err);
			goto out;
		}
		log_info(s->sid, "TLS from %s: %s", s->ip, conn_tls_info(s->conn));
	}
	struct buf b;
	buf_init(&b, 4096);
	capability_string(s, &b);
	sess_untagged(s, "OK [CAPABILITY %s] %s IMAP ready%s", b.data, s->cfg->hostname,
		      plaintext_ok(s) ? "" : ": STARTTLS, then log in");
	buf_free(&b);
	session_loop(s);
out:
	log_info(s->sid, "disconnect from %s user=%s commands=%lld bad=%lld", s->ip,
		 s->user ? s->user : "-", (long long)s->commands, (long long)s->bad);
	daemon_unregister(app->d, &s->link);
	mailbox_free(&s->mbox);
	if (s->train_pending)
		train_flush(s);
	store_close(&s->store);
	imap_parser_free(&s->parser);
	names_free(s);
	conn_free(&s->conn);
	buf_free(&s->line);
	free(s->user);
	daemon_cfg_put(s->dc);
	free(s);
}
