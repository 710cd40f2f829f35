/*
 * config.c - the configuration file: "key = value" lines, '#' comments,
 * list keys may repeat.  One table drives parsing, defaults and the
 * reference in the README; every error names FILE:LINE.
 */
#include "common/common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum ctype {
	CT_STR,      /* any text */
	CT_HOST,     /* a DNS host name */
	CT_PATH,     /* made absolute against the config file's directory */
	CT_OPTPATH,  /* a path, or empty */
	CT_DOMAINS,  /* list of domains; also comma/space separated */
	CT_LISTEN,   /* list of host:port; empty value = none */
	CT_INT,
	CT_SIZE,     /* bytes, with optional k/m/g suffix */
	CT_DURATION, /* milliseconds internally; suffix ms, s, m, h (default s) */
	CT_LOGLEVEL,
	CT_SCHEME,
	CT_FACILITY,
	CT_BOOL,     /* yes/no (also true/false, on/off, 1/0); 1 or 0 internally */
	CT_SCORE,    /* a decimal number (double), min..max */
	CT_RBL,      /* list of "zone code[-code]=score ..." (struct rbl_list) */
};

struct ckey {
	const char *key;
	enum ctype type;
	size_t offset;
	const char *def; /* NULL: no default (empty / computed) */
	int64_t min, max;
	const char *help;
};

#define OFF(f) offsetof(struct config, f)
static const struct ckey ckeys[] = {
	{ "hostname", CT_HOST, OFF(hostname), NULL, 0, 0,
	  "name in the banner, Received and Authentication-Results (default: the system's)" },
	{ "local_domains", CT_DOMAINS, OFF(local_domains), NULL, 0, 0,
	  "domains we accept mail for; others get 550 5.7.1 (required)" },
	{ "data_dir", CT_PATH, OFF(data_dir), "/var/lib/mailgw", 0, 0, "store root" },
	{ "users_file", CT_PATH, OFF(users_file), "/etc/mailgw/users",
	  0, 0, "Dovecot passwd-file: user@domain:{SHA512-CRYPT}$6$..." },
	{ "tls_cert_file", CT_OPTPATH, OFF(tls_cert_file), "", 0, 0, "PEM certificate chain; empty: no TLS" },
	{ "tls_key_file", CT_OPTPATH, OFF(tls_key_file), "", 0, 0, "PEM private key" },
	{ "smtp_listen", CT_LISTEN, OFF(smtp_listen), "127.0.0.1:2525", 0, 0,
	  "plain SMTP with STARTTLS (repeatable; 0.0.0.0:25 in production)" },
	{ "smtps_listen", CT_LISTEN, OFF(smtps_listen), "", 0, 0, "implicit TLS SMTP (repeatable)" },
	{ "run_user", CT_STR, OFF(run_user), "", 0, 0, "when started as root: bind, then run as this user" },
	{ "syslog_facility", CT_FACILITY, OFF(syslog_facility), "", 0, 0,
	  "also log to syslog with this facility (mail, local0..7); empty: stderr only" },
	{ "log_level", CT_LOGLEVEL, OFF(log_level), "info", 0, 0, "debug, info, warn or error" },
	{ "password_scheme", CT_SCHEME, OFF(password_scheme), "SHA512-CRYPT", 0, 0,
	  "hash for new passwords: SHA512-CRYPT, SHA256-CRYPT, BLF-CRYPT or CRYPT (yescrypt)" },
	{ "postmaster_address", CT_STR, OFF(postmaster_address), "", 0, 0,
	  "user that receives mail for postmaster@ every local domain (RFC 5321 4.5.1); "
	  "default: postmaster@ the first local domain" },
	{ "max_message_size", CT_SIZE, OFF(max_message_size), "26214400", 1024, INT64_C(1) << 40,
	  "bytes; larger: 552 5.3.4 (advertised in EHLO SIZE)" },
	{ "max_recipients", CT_INT, OFF(max_recipients), "100", 1, 100000,
	  "recipients per transaction; more: 452 4.5.3" },
	{ "max_connections", CT_INT, OFF(max_connections), "500", 1, 1000000,
	  "concurrent SMTP connections; more: 421 4.7.0" },
	{ "max_connections_per_ip", CT_INT, OFF(max_connections_per_ip), "50", 1, 1000000,
	  "concurrent SMTP connections from one client IP; more: 421 4.7.0" },
	{ "max_bad_commands", CT_INT, OFF(max_bad_commands), "20", 1, 1000000,
	  "rejected (4xx/5xx) or unknown commands per session before 421" },
	{ "max_commands", CT_INT, OFF(max_commands), "10000", 10, 100000000,
	  "commands per session (a transaction takes about 4); more: 421 4.7.0" },
	{ "max_line_length", CT_INT, OFF(max_line_length), "10000", 1000, 100000000,
	  "octets per line of message text (RFC 5321 4.5.3.1.6 allows 1000 as minimum); longer: 554 5.6.0" },
	{ "smtp_timeout", CT_DURATION, OFF(smtp_timeout_ms), "300s", 100, 86400000,
	  "waiting for a command or the TLS handshake (RFC 5321 4.5.3.2.7: 5 minutes)" },
	{ "smtp_data_timeout", CT_DURATION, OFF(smtp_data_timeout_ms), "300s", 100, 86400000,
	  "waiting for more message text in DATA or BDAT" },
	{ "smtp_data_deadline", CT_DURATION, OFF(smtp_data_deadline_ms), "30m", 100, 86400000,
	  "from MAIL to the end of the message text, in all (slow-drip clients)" },
	{ "shutdown_timeout", CT_DURATION, OFF(shutdown_timeout_ms), "30s", 0, 3600000,
	  "on SIGTERM, how long sessions in progress may take to finish" },
	{ "imap_listen", CT_LISTEN, OFF(imap_listen), "127.0.0.1:1143", 0, 0,
	  "IMAP with STARTTLS (repeatable; 0.0.0.0:143 in production); empty: none" },
	{ "imaps_listen", CT_LISTEN, OFF(imaps_listen), "", 0, 0, "implicit TLS IMAP (repeatable; 993)" },
	{ "allow_plaintext_auth", CT_BOOL, OFF(allow_plaintext_auth), "no", 0, 1,
	  "yes: IMAP/POP3 logins without TLS are allowed (tests on loopback only)" },
	{ "imap_max_connections", CT_INT, OFF(imap_max_connections), "2000", 1, 1000000,
	  "concurrent IMAP connections; more: * BYE at connect" },
	{ "imap_max_connections_per_ip", CT_INT, OFF(imap_max_connections_per_ip), "100", 1, 1000000,
	  "concurrent IMAP connections from one client IP" },
	{ "imap_idle_timeout", CT_DURATION, OFF(imap_idle_timeout_ms), "30m", 100, 86400000,
	  "an idle IMAP session is logged out after this (RFC 3501 5.4: at least 30 minutes)" },
	{ "imap_login_timeout", CT_DURATION, OFF(imap_login_timeout_ms), "60s", 100, 86400000,
	  "time to log in after connecting" },
	{ "imap_max_bad_commands", CT_INT, OFF(imap_max_bad_commands), "20", 1, 1000000,
	  "BAD replies per IMAP session before * BYE" },
	{ "imap_max_line_length", CT_INT, OFF(imap_max_line_length), "65536", 1000, 100000000,
	  "octets of an IMAP command line (literals excluded); longer: BAD" },
	{ "pop3_listen", CT_LISTEN, OFF(pop3_listen), "127.0.0.1:1110", 0, 0,
	  "POP3 with STLS (repeatable; 0.0.0.0:110 in production); empty: none" },
	{ "pop3s_listen", CT_LISTEN, OFF(pop3s_listen), "", 0, 0, "implicit TLS POP3 (repeatable; 995)" },
	{ "pop3_timeout", CT_DURATION, OFF(pop3_timeout_ms), "10m", 100, 86400000,
	  "an inactive POP3 session is closed after this (RFC 1939 3: at least 10 minutes)" },
	{ "dns_servers", CT_LISTEN, OFF(dns_servers), "", 0, 0,
	  "DNS servers to forward to, host:port (repeatable); empty: /etc/resolv.conf" },
	{ "dns_timeout_ms", CT_INT, OFF(dns_timeout_ms), "2000", 10, 30000,
	  "deadline of one DNS lookup; past it the outcome is a temporary error" },
	{ "rbl", CT_RBL, OFF(rbl), NULL, 0, 0,
	  "DNSBL/DNSWL zone for the client address: zone A.B.C.D[-E.F.G.H]=score ... (repeatable; "
	  "negative scores for allow lists)" },
	{ "uribl", CT_RBL, OFF(uribl), NULL, 0, 0,
	  "URI blocklist zone for domains linked from the body, same form as rbl (repeatable)" },
	{ "rbl_reject_score", CT_SCORE, OFF(rbl_reject_score), "10", -1000, 1000,
	  "an RBL total at or above this is refused at RCPT (550 5.7.1)" },
	{ "dns_error_tempfail", CT_BOOL, OFF(dns_error_tempfail), "no", 0, 1,
	  "yes: a list or SPF/DKIM/DMARC lookup that fails gives 451 (default: fail open)" },
	{ "spf_check", CT_BOOL, OFF(spf_check), "yes", 0, 1, "verify SPF at MAIL FROM" },
	{ "dkim_check", CT_BOOL, OFF(dkim_check), "yes", 0, 1, "verify DKIM signatures" },
	{ "dmarc_check", CT_BOOL, OFF(dmarc_check), "yes", 0, 1, "apply the From domain's DMARC policy" },
	{ "spf_fail_score", CT_SCORE, OFF(spf_fail_score), "3", -1000, 1000, "score of spf=fail" },
	{ "spf_softfail_score", CT_SCORE, OFF(spf_softfail_score), "1", -1000, 1000,
	  "score of spf=softfail" },
	{ "spf_permerror_score", CT_SCORE, OFF(spf_permerror_score), "0.5", -1000, 1000,
	  "score of spf=permerror (a broken record)" },
	{ "dkim_fail_score", CT_SCORE, OFF(dkim_fail_score), "1", -1000, 1000,
	  "score of a message whose every DKIM signature failed" },
	{ "dmarc_fail_score", CT_SCORE, OFF(dmarc_fail_score), "3", -1000, 1000,
	  "score of dmarc=fail (on top of the policy's action)" },
	{ "bad_from_score", CT_SCORE, OFF(bad_from_score), "3", -1000, 1000,
	  "score of a message without a From field, or whose From has no usable domain" },
	{ "dmarc_reject", CT_BOOL, OFF(dmarc_reject), "yes", 0, 1,
	  "a DMARC fail under p=reject is refused with 550 5.7.1" },
	{ "dmarc_quarantine", CT_BOOL, OFF(dmarc_quarantine), "yes", 0, 1,
	  "a DMARC fail under p=quarantine goes to Junk" },
	{ "psl_file", CT_PATH, OFF(psl_file), "/usr/share/publicsuffix/public_suffix_list.dat", 0, 0,
	  "the public suffix list, for organizational domains (DMARC); read at start" },
	{ "rules_dir", CT_OPTPATH, OFF(rules_dir), "", 0, 0,
	  "directory of *.rules files (SpamAssassin rule syntax); empty: no rules" },
	{ "junk_score", CT_SCORE, OFF(junk_score), "5", -1000, 1000,
	  "a total score at or above this goes to Junk" },
	{ "reject_score", CT_SCORE, OFF(reject_score), "10", -1000, 1000,
	  "a total score at or above this is refused with 550 5.7.1 at the end of DATA" },
	{ "bayes", CT_BOOL, OFF(bayes), "yes", 0, 1,
	  "score with the Bayesian classifier (each user's database, else the site's)" },
	{ "bayes_min_learned", CT_INT, OFF(bayes_min_learned), "200", 1, 1000000,
	  "messages of each class a database must have learned before it gives verdicts" },
	{ "bayes_max_learned", CT_INT, OFF(bayes_max_learned), "10000", 0, 100000000,
	  "messages a classifier database keeps; past it each new one makes it forget the least "
	  "recently learned (0: no limit)" },
	{ "bayes_learn_site", CT_BOOL, OFF(bayes_learn_site), "yes", 0, 1,
	  "what users teach by moving mail also teaches the site-wide database" },
	{ "bayes_autolearn", CT_BOOL, OFF(bayes_autolearn), "yes", 0, 1,
	  "a delivery with a clear score teaches the recipient's classifier (as SpamAssassin's "
	  "auto-learning); a user's move of that message overrides it" },
	{ "bayes_autolearn_ham", CT_SCORE, OFF(bayes_autolearn_ham), "0.5", -1000, 1000,
	  "a score (BAYES_ rules left out) at or below this is learned as ham" },
	{ "bayes_autolearn_spam", CT_SCORE, OFF(bayes_autolearn_spam), "7", -1000, 1000,
	  "a score (BAYES_ rules left out) at or above this, delivered to Junk, is learned as spam" },
};

const struct config_keyinfo *config_keys(size_t *n_r)
{
	static struct config_keyinfo info[ARRAY_SIZE(ckeys)];
	for (size_t i = 0; i < ARRAY_SIZE(ckeys); i++) {
		info[i].key = ckeys[i].key;
		info[i].def = ckeys[i].def ? ckeys[i].def : "";
		info[i].help = ckeys[i].help;
	}
	*n_r = ARRAY_SIZE(ckeys);
	return info;
}

void strlist_add(struct strlist *l, const char *s)
{
	l->v = xrealloc(l->v, (l->n + 2) * sizeof(char *));
	l->v[l->n++] = xstrdup(s);
	l->v[l->n] = NULL;
}

bool strlist_contains_ci(const struct strlist *l, const char *s)
{
	for (size_t i = 0; i < l->n; i++)
		if (str_ieq(l->v[i], s))
			return true;
	return false;
}

void strlist_free(struct strlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

#define CONFIG_LINE_MAX 4096

struct config_parser {
	char *filename;
	char *dir;            /* for relative paths */
	unsigned lineno;
	struct buf line;
	bool toolong;
	struct config *cfg;
	unsigned seen[ARRAY_SIZE(ckeys)]; /* line where set, 0 = not yet */
};

struct config_parser *config_parser_new(const char *filename)
{
	struct config_parser *p = xcalloc(1, sizeof(*p));
	p->filename = xstrdup(filename);
	const char *slash = strrchr(filename, '/');
	if (slash == NULL) {
		char cwd[PATH_MAX];
		p->dir = xstrdup(getcwd(cwd, sizeof(cwd)) ? cwd : ".");
	} else if (slash == filename) {
		p->dir = xstrdup("/");
	} else if (filename[0] == '/') {
		p->dir = xstrndup(filename, (size_t)(slash - filename));
	} else {
		char cwd[PATH_MAX];
		if (getcwd(cwd, sizeof(cwd)) == NULL)
			str_copy(cwd, ".", sizeof(cwd));
		p->dir = xasprintf("%s/%.*s", cwd, (int)(slash - filename), filename);
	}
	buf_init(&p->line, CONFIG_LINE_MAX);
	p->cfg = xcalloc(1, sizeof(struct config));
	p->cfg->path = xstrdup(filename);
	return p;
}

static void config_parser_free(struct config_parser **pp)
{
	struct config_parser *p = *pp;
	if (p == NULL)
		return;
	free(p->filename);
	free(p->dir);
	buf_free(&p->line);
	config_free(&p->cfg);
	free(p);
	*pp = NULL;
}

static int perr(struct config_parser *p, char **error_r, const char *fmt, ...) PRINTFLIKE(3, 4);
static int perr(struct config_parser *p, char **error_r, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (error_r)
		*error_r = xasprintf("%s:%u: %s", p->filename, p->lineno, msg);
	return -1;
}

static bool host_valid(const char *s)
{
	size_t n = strlen(s), label = 0;
	if (n == 0 || n > 253)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == '.') {
			if (label == 0 || s[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_'))
			return false;
		if (c == '-' && label == 0)
			return false;
		if (++label > 63)
			return false;
	}
	return s[n - 1] != '-' && s[n - 1] != '.';
}

static int parse_int(const char *v, int64_t *out)
{
	char *end;
	errno = 0;
	long long x = strtoll(v, &end, 10);
	if (errno || end == v || *end)
		return -1;
	*out = x;
	return 0;
}

static int parse_scaled(const char *v, int64_t *out, bool duration)
{
	char *end;
	errno = 0;
	if (*v == '-' || *v == '\0')
		return -1;
	unsigned long long x = strtoull(v, &end, 10);
	if (errno || end == v)
		return -1;
	uint64_t mul;
	if (duration) {
		if (*end == '\0' || strcmp(end, "s") == 0)
			mul = 1000;
		else if (strcmp(end, "ms") == 0)
			mul = 1;
		else if (strcmp(end, "m") == 0)
			mul = 60000;
		else if (strcmp(end, "h") == 0)
			mul = 3600000;
		else
			return -1;
	} else {
		if (*end == '\0')
			mul = 1;
		else if (str_ieq(end, "k"))
			mul = 1024;
		else if (str_ieq(end, "m"))
			mul = 1024 * 1024;
		else if (str_ieq(end, "g"))
			mul = 1024 * 1024 * 1024;
		else
			return -1;
	}
	if (x > (uint64_t)INT64_MAX / mul)
		return -1;
	*out = (int64_t)(x * mul);
	return 0;
}

static int parse_score(const char *v, double *out)
{
	char *end;
	errno = 0;
	double d = strtod(v, &end);
	if (errno || end == v || *end || d != d)
		return -1;
	*out = d;
	return 0;
}

static int parse_ipv4(const char *s, uint32_t *out)
{
	struct in_addr a;
	if (inet_pton(AF_INET, s, &a) != 1)
		return -1;
	*out = ntohl(a.s_addr);
	return 0;
}

/* "zone CODE[-CODE]=SCORE ...": every code an IPv4 address in 127/8. */
static int parse_rbl(struct config_parser *p, const struct ckey *k, char *v, struct rbl_list *l,
		     char **error_r)
{
	char *save = NULL;
	char *zone = strtok_r(v, " \t", &save);
	if (zone == NULL)
		return perr(p, error_r, "%s: expected \"zone code=score ...\"", k->key);
	if (!host_valid(zone))
		return perr(p, error_r, "%s: not a valid zone: %s", k->key, log_str(zone));
	struct rbl_zone z = { .zone = str_lower(xstrdup(zone)) };
	for (char *tok; (tok = strtok_r(NULL, " \t", &save)) != NULL;) {
		char *eq = strchr(tok, '=');
		struct rbl_code c;
		if (eq == NULL) {
			free(z.codes);
			free(z.zone);
			return perr(p, error_r, "%s: %s: expected code=score or low-high=score", k->key,
				    log_str(tok));
		}
		*eq = '\0';
		char *dash = strchr(tok, '-');
		if (dash)
			*dash = '\0';
		bool ok = parse_ipv4(tok, &c.lo) == 0 && (dash == NULL || parse_ipv4(dash + 1, &c.hi) == 0);
		if (ok && dash == NULL)
			c.hi = c.lo;
		ok = ok && c.lo <= c.hi && (c.lo >> 24) == 127 && (c.hi >> 24) == 127;
		if (ok && (parse_score(eq + 1, &c.score) < 0 || c.score < -1000 || c.score > 1000)) {
			free(z.codes);
			free(z.zone);
			return perr(p, error_r, "%s: %s: not a score: %s", k->key, log_str(zone),
				    log_str(eq + 1));
		}
		if (!ok) {
			free(z.codes);
			free(z.zone);
			return perr(p, error_r, "%s: %s: return codes must be 127.x.y.z or a range of them",
				    k->key, log_str(zone));
		}
		z.codes = xrealloc(z.codes, (z.ncodes + 1) * sizeof(*z.codes));
		z.codes[z.ncodes++] = c;
	}
	if (z.ncodes == 0) {
		free(z.zone);
		return perr(p, error_r, "%s: %s: no return codes (e.g. 127.0.0.2=5)", k->key,
			    log_str(zone));
	}
	for (size_t i = 0; i < l->n; i++) {
		if (strcmp(l->v[i].zone, z.zone) == 0) {
			free(z.codes);
			free(z.zone);
			return perr(p, error_r, "%s: zone %s is listed twice", k->key, log_str(zone));
		}
	}
	l->v = xrealloc(l->v, (l->n + 1) * sizeof(*l->v));
	l->v[l->n++] = z;
	return 0;
}

static void rbl_list_free(struct rbl_list *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->v[i].zone);
		free(l->v[i].codes);
	}
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

static char *make_path(struct config_parser *p, const char *v)
{
	if (v[0] == '/' || v[0] == '\0')
		return xstrdup(v);
	if (strcmp(p->dir, "/") == 0)
		return xasprintf("/%s", v);
	return xasprintf("%s/%s", p->dir, v);
}

static int set_value(struct config_parser *p, const struct ckey *k, char *v, char **error_r)
{
	void *field = (char *)p->cfg + k->offset;
	char **sp = field;
	int64_t *ip = field;
	struct strlist *lp = field;
	int64_t x;
	double d;
	enum log_level lvl;

	switch (k->type) {
	case CT_STR:
		free(*sp);
		*sp = xstrdup(v);
		return 0;
	case CT_BOOL:
		if (str_ieq(v, "yes") || str_ieq(v, "true") || str_ieq(v, "on") || strcmp(v, "1") == 0)
			*ip = 1;
		else if (str_ieq(v, "no") || str_ieq(v, "false") || str_ieq(v, "off") || strcmp(v, "0") == 0)
			*ip = 0;
		else
			return perr(p, error_r, "%s: must be yes or no: %s", k->key, log_str(v));
		return 0;
	case CT_HOST:
		if (!host_valid(v))
			return perr(p, error_r, "%s: not a valid host name: %s", k->key, log_str(v));
		free(*sp);
		*sp = str_lower(xstrdup(v));
		return 0;
	case CT_PATH:
		if (*v == '\0')
			return perr(p, error_r, "%s: a path is required", k->key);
		/* fallthrough */
	case CT_OPTPATH:
		free(*sp);
		*sp = make_path(p, v);
		return 0;
	case CT_DOMAINS:
		for (char *save = NULL, *tok = strtok_r(v, ", \t", &save); tok;
		     tok = strtok_r(NULL, ", \t", &save)) {
			if (!host_valid(tok))
				return perr(p, error_r, "%s: not a valid domain: %s", k->key, log_str(tok));
			str_lower(tok);
			if (!strlist_contains_ci(lp, tok))
				strlist_add(lp, tok);
		}
		return 0;
	case CT_LISTEN:
		if (*v == '\0') {
			strlist_free(lp);
			return 0;
		}
		for (char *save = NULL, *tok = strtok_r(v, ", \t", &save); tok;
		     tok = strtok_r(NULL, ", \t", &save)) {
			struct sockaddr_storage ss;
			socklen_t len;
			char *err = NULL;
			if (net_parse_hostport(tok, &ss, &len, &err) < 0) {
				int r = perr(p, error_r, "%s: %s", k->key, err);
				free(err);
				return r;
			}
			strlist_add(lp, tok);
		}
		return 0;
	case CT_SCORE:
		if (parse_score(v, &d) < 0)
			return perr(p, error_r, "%s: not a number: %s", k->key, log_str(v));
		if (d < (double)k->min || d > (double)k->max)
			return perr(p, error_r, "%s: %s is out of range", k->key, log_str(v));
		*(double *)field = d;
		return 0;
	case CT_RBL:
		return parse_rbl(p, k, v, field, error_r);
	case CT_INT:
		if (parse_int(v, &x) < 0)
			return perr(p, error_r, "%s: not a number: %s", k->key, log_str(v));
		goto range;
	case CT_SIZE:
		if (parse_scaled(v, &x, false) < 0)
			return perr(p, error_r, "%s: not a size (bytes, or with k/m/g): %s", k->key,
				    log_str(v));
		goto range;
	case CT_DURATION:
		if (parse_scaled(v, &x, true) < 0)
			return perr(p, error_r, "%s: not a duration (e.g. 300s, 500ms, 5m): %s", k->key,
				    log_str(v));
		goto range;
	case CT_LOGLEVEL:
		if (log_level_parse(v, &lvl) < 0)
			return perr(p, error_r, "%s: must be debug, info, warn or error: %s", k->key,
				    log_str(v));
		free(*sp);
		*sp = str_lower(xstrdup(v));
		return 0;
	case CT_SCHEME:
		if (!password_scheme_valid(v))
			return perr(p, error_r,
				    "%s: must be SHA512-CRYPT, SHA256-CRYPT, BLF-CRYPT or CRYPT: %s",
				    k->key, log_str(v));
		free(*sp);
		*sp = xstrdup(v);
		return 0;
	case CT_FACILITY:
		if (*v && !str_ieq(v, "mail") && !str_ieq(v, "daemon") && !str_ieq(v, "user") &&
		    !(str_iprefix(v, "local") && strlen(v) == 6 && v[5] >= '0' && v[5] <= '7'))
			return perr(p, error_r, "%s: unknown syslog facility: %s", k->key, log_str(v));
		free(*sp);
		*sp = xstrdup(v);
		return 0;
	}
	return perr(p, error_r, "%s: internal: bad type", k->key);
range:
	if (x < k->min || x > k->max)
		return perr(p, error_r, "%s: %s is out of range", k->key, log_str(v));
	*ip = x;
	return 0;
}

static int parse_line(struct config_parser *p, char *line, char **error_r)
{
	/* '#' starts a comment at the start of a line or after a blank. */
	for (char *c = line; *c; c++) {
		if (*c == '#' && (c == line || c[-1] == ' ' || c[-1] == '\t')) {
			*c = '\0';
			break;
		}
	}
	for (char *c = line; *c; c++)
		if ((unsigned char)*c < 0x20 && *c != '\t' && *c != '\r')
			return perr(p, error_r, "control character in line");
	char *s = str_trim(line);
	if (*s == '\0')
		return 0;
	char *eq = strchr(s, '=');
	if (eq == NULL)
		return perr(p, error_r, "expected \"key = value\": %s", log_str(s));
	*eq = '\0';
	char *key = str_trim(s);
	char *value = str_trim(eq + 1);
	for (size_t i = 0; i < ARRAY_SIZE(ckeys); i++) {
		if (strcmp(ckeys[i].key, key) != 0)
			continue;
		bool list = ckeys[i].type == CT_DOMAINS || ckeys[i].type == CT_LISTEN ||
			    ckeys[i].type == CT_RBL;
		if (p->seen[i] && !list)
			return perr(p, error_r, "%s is already set on line %u", key, p->seen[i]);
		p->seen[i] = p->lineno;
		return set_value(p, &ckeys[i], value, error_r);
	}
	return perr(p, error_r, "unknown key: %s", log_str(key));
}

int config_parser_feed(struct config_parser *p, const char *data, size_t len, char **error_r)
{
	while (len > 0) {
		const char *nl = memchr(data, '\n', len);
		size_t n = nl ? (size_t)(nl - data) : len;
		if (!p->toolong && buf_append(&p->line, data, n) < 0)
			p->toolong = true;
		data += n;
		len -= n;
		if (nl == NULL)
			break;
		data++;
		len--;
		p->lineno++;
		if (p->toolong)
			return perr(p, error_r, "line longer than %d bytes", CONFIG_LINE_MAX);
		int r = parse_line(p, p->line.data ? p->line.data : (char[]){ "" }, error_r);
		buf_reset(&p->line);
		if (r < 0)
			return -1;
	}
	return 0;
}

int config_parser_finish(struct config_parser **pp, struct config **cfg_r, char **error_r)
{
	struct config_parser *p = *pp;
	int r = -1;

	/* A last line without a newline. */
	if (p->line.len > 0 || p->toolong) {
		if (config_parser_feed(p, "\n", 1, error_r) < 0)
			goto out;
	}
	for (size_t i = 0; i < ARRAY_SIZE(ckeys); i++) {
		if (p->seen[i] || ckeys[i].def == NULL)
			continue;
		char *v = xstrdup(ckeys[i].def);
		int rr = set_value(p, &ckeys[i], v, error_r);
		free(v);
		if (rr < 0)
			goto out;
	}
	struct config *c = p->cfg;
	p->lineno = 0; /* errors below are about the whole file */
	if (c->hostname == NULL) {
		char host[256];
		if (gethostname(host, sizeof(host)) < 0 || !host_valid(host))
			str_copy(host, "localhost", sizeof(host));
		c->hostname = str_lower(xstrdup(host));
	}
	if (c->local_domains.n == 0) {
		*error_r = xasprintf("%s: local_domains is not set: every recipient would be refused",
				     p->filename);
		goto out;
	}
	if (*c->postmaster_address == '\0') {
		free(c->postmaster_address);
		c->postmaster_address = xasprintf("postmaster@%s", c->local_domains.v[0]);
	}
	char pm[320];
	if (!user_address_normalize(c->postmaster_address, pm, sizeof(pm))) {
		*error_r = xasprintf("%s: postmaster_address: not a valid address: %s", p->filename,
				     log_str(c->postmaster_address));
		goto out;
	}
	free(c->postmaster_address);
	c->postmaster_address = xstrdup(pm);
	if ((*c->tls_cert_file == '\0') != (*c->tls_key_file == '\0')) {
		*error_r = xasprintf("%s: tls_cert_file and tls_key_file must be set together",
				     p->filename);
		goto out;
	}
	if (c->dmarc_check && !(c->spf_check && c->dkim_check)) {
		/* An identifier never checked would count as "no pass" and
		 * refuse legitimate mail under p=reject. */
		*error_r = xasprintf("%s: dmarc_check needs spf_check and dkim_check", p->filename);
		goto out;
	}
	if (c->junk_score <= 0 || c->reject_score < c->junk_score) {
		*error_r = xasprintf("%s: junk_score must be above 0 and reject_score at least junk_score "
				     "(%g, %g)",
				     p->filename, c->junk_score, c->reject_score);
		goto out;
	}
	if (c->smtps_listen.n > 0 && *c->tls_cert_file == '\0') {
		*error_r = xasprintf("%s: smtps_listen needs tls_cert_file and tls_key_file",
				     p->filename);
		goto out;
	}
	*cfg_r = c;
	p->cfg = NULL;
	r = 0;
out:
	config_parser_free(pp);
	return r;
}

int config_load(const char *path, struct config **cfg_r, char **error_r)
{
	FILE *f = fopen(path, "r");
	if (f == NULL) {
		*error_r = xasprintf("%s: %s", path, strerror(errno));
		return -1;
	}
	struct config_parser *p = config_parser_new(path);
	char chunk[8192];
	size_t n;
	int r = 0;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		if (config_parser_feed(p, chunk, n, error_r) < 0) {
			r = -1;
			break;
		}
	}
	if (r == 0 && ferror(f)) {
		*error_r = xasprintf("%s: read error", path);
		r = -1;
	}
	fclose(f);
	if (r < 0) {
		config_parser_free(&p);
		return -1;
	}
	return config_parser_finish(&p, cfg_r, error_r);
}

void config_free(struct config **cp)
{
	struct config *c = *cp;
	if (c == NULL)
		return;
	for (size_t i = 0; i < ARRAY_SIZE(ckeys); i++) {
		void *field = (char *)c + ckeys[i].offset;
		switch (ckeys[i].type) {
		case CT_DOMAINS:
		case CT_LISTEN:
			strlist_free(field);
			break;
		case CT_RBL:
			rbl_list_free(field);
			break;
		case CT_INT:
		case CT_SIZE:
		case CT_DURATION:
		case CT_BOOL:
		case CT_SCORE:
			break;
		default:
			free(*(char **)field);
		}
	}
	free(c->path);
	free(c);
	*cp = NULL;
}
