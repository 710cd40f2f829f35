/*
 * checks.c - the verdict at the end of the text: DKIM results, the From
 * domain's DMARC policy, URI blocklists, the scores of every result (and
 * of the client's DNS lists), and the headers that record them: one
 * Authentication-Results (RFC 8601) with our hostname as authserv-id,
 * X-Spam-Score / X-Spam-Status, and X-RBL-Status when lists were asked.
 *
 * Order of decisions (README "Filtering"): a DMARC fail under p=reject
 * (dmarc_reject) is refused; a total at or above reject_score is refused;
 * with dns_error_tempfail a check that could not be made gives 451; a
 * DMARC fail under p=quarantine (dmarc_quarantine) or a total at or above
 * junk_score goes to Junk; the rest to INBOX.  A client the DNS lists
 * block may still write to postmaster (RFC 5321 4.5.1): such a message is
 * not refused for its score (Junk at worst).
 */
#include "filterd/filterd.h"
#include "common/mime.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define URI_DOMAINS_MAX 20
#define URI_TEXT_MAX (1024 * 1024)
#define RULES_TEXT_MAX (1024 * 1024)

static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
static char *psl_loaded; /* the file libopendmarc read (once per process) */

/* The rules of rules_dir: warnings logged, errors refuse the
 * configuration (a reload then keeps the running one and its rules). */
static int load_rules(const struct config *cfg, struct checks *ck, char **error_r)
{
	struct rules_report rep = { 0 };
	int r = ruleset_load(cfg->rules_dir, &ck->rules, &rep);
	for (size_t i = 0; i < rep.n; i++)
		if (!rep.v[i].error)
			log_warnx(NULL, "%s:%u: warning: %s", rep.v[i].file, rep.v[i].line, rep.v[i].msg);
	if (r < 0) {
		struct buf b;
		buf_init(&b, 64 * 1024);
		for (size_t i = 0, shown = 0; i < rep.n && shown < 20; i++) {
			if (!rep.v[i].error)
				continue;
			buf_printf(&b, "%s%s:%u: %s", shown++ ? "; " : "", rep.v[i].file, rep.v[i].line,
				   rep.v[i].msg);
		}
		*error_r = xasprintf("rules: %zu error%s: %s", rep.errors, rep.errors == 1 ? "" : "s",
				     b.data ? b.data : "");
		buf_free(&b);
	} else {
		log_info(NULL, "rules: %zu rules from %s (%zu warnings)", ruleset_size(ck->rules),
			 cfg->rules_dir, rep.warnings);
		/* Seconds for thousands of rules: in a thread of its own, so
		 * that neither the start nor a reload waits; mail is scored by
		 * PCRE2 alone until it is ready (the same verdicts). */
		ruleset_prefilter(ck->rules, true);
	}
	rules_report_free(&rep);
	return r;
}

void *checks_new(const struct config *cfg, char **error_r)
{
	/* libopendkim and libopendmarc are set up once, before the first
	 * session thread (LIBRARIES.md: not thread-safe to initialise). */
	pthread_mutex_lock(&init_lock);
	if (psl_loaded == NULL) {
		if (dkimv_init(error_r) < 0 || dmarc_init(cfg->psl_file, error_r) < 0) {
			pthread_mutex_unlock(&init_lock);
			return NULL;
		}
		psl_loaded = xstrdup(cfg->psl_file);
	} else if (strcmp(psl_loaded, cfg->psl_file) != 0) {
		log_warnx(NULL, "psl_file changed; it takes effect on restart");
	}
	pthread_mutex_unlock(&init_lock);

	struct checks *ck = xcalloc(1, sizeof(*ck));
	bool need_dns = cfg->spf_check || cfg->dkim_check || cfg->dmarc_check || cfg->rbl.n ||
			cfg->uribl.n;
	if (need_dns) {
		ck->dns = dns_new(&cfg->dns_servers, cfg->dns_timeout_ms, error_r);
		if (ck->dns == NULL) {
			free(ck);
			return NULL;
		}
	}
	if (cfg->spf_check) {
		ck->spf = spf_verifier_new(ck->dns, cfg->hostname, error_r);
		if (ck->spf == NULL) {
			checks_free(ck);
			return NULL;
		}
	}
	if (*cfg->rules_dir && load_rules(cfg, ck, error_r) < 0) {
		checks_free(ck);
		return NULL;
	}
	return ck;
}

void checks_free(void *p)
{
	struct checks *ck = p;
	if (ck == NULL)
		return;
	spf_verifier_free(&ck->spf);
	ruleset_free(&ck->rules);
	dns_free(&ck->dns);
	free(ck);
}

/* ------------------------------------------------------------- helpers */

static void add_test(struct verdict *v, const char *name, double score)
{
	if (v->tests.len)
		buf_putc(&v->tests, ',');
	buf_puts(&v->tests, name);
	v->score += score;
}

/* A zone as a test name: RBL_ZEN_SPAMHAUS_ORG. */
static void zone_test(struct verdict *v, const char *prefix, const char *zone, double score)
{
	char name[300];
	size_t o = (size_t)snprintf(name, sizeof(name), "%s_", prefix);
	for (const char *c = zone; *c && o + 1 < sizeof(name); c++)
		name[o++] = (*c >= 'a' && *c <= 'z') ? (char)(*c - 32) : (*c == '.' || *c == '-') ? '_' : *c;
	name[o] = '\0';
	add_test(v, name, score);
}

/* RFC 2045 token characters: not SPACE, CTLs or tspecials. */
static bool token_char(char c)
{
	return c > 0x20 && c < 0x7f && strchr("()<>@,;:\\\"/[]?=", c) == NULL;
}

/* RFC 5322 atext (dot-atom local parts). */
static bool atext_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* An RFC 8601 section 2.2 pvalue: a token, "local-part@domain" with a
 * dot-atom local part, or else a quoted string. */
static void ar_value(struct buf *b, const char *s)
{
	bool token = *s != '\0';
	for (const char *c = s; *c && token; c++)
		token = token_char(*c);
	const char *at = strrchr(s, '@');
	bool addr = at != NULL && at > s && at[1] != '\0' && s[0] != '.' && at[-1] != '.';
	for (const char *c = s; addr && c < at; c++)
		addr = atext_char(*c) || (*c == '.' && c[1] != '.');
	for (const char *c = at ? at + 1 : ""; addr && *c; c++)
		addr = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
		       *c == '-' || *c == '.' || *c == '_';
	if (token || addr) {
		buf_puts(b, s);
		return;
	}
	buf_putc(b, '"');
	for (const char *c = s; *c; c++) {
		unsigned char u = (unsigned char)*c;
		if (u < 0x20 || u == 0x7f)
			continue;
		if (u == '"' || u == '\\')
			buf_putc(b, '\\');
		buf_putc(b, (char)u);
	}
	buf_putc(b, '"');
}

static void ar_reason(struct buf *b, const char *reason)
{
	if (reason && *reason) {
		buf_puts(b, " reason=");
		ar_value(b, reason);
	}
}

static void build_ar(const struct config *cfg, const struct tx_info *tx, const struct verdict *v,
		     bool dkim_done, bool dmarc_done, struct buf *h)
{
	/* RFC 8601 section 2.2: "Authentication-Results: authserv-id;
	 * method=result properties; ..."; "none" when nothing was checked. */
	buf_printf(h, "Authentication-Results: %s", cfg->hostname);
	size_t n = 0;
	if (tx->spf) {
		const struct spf_result *s = tx->spf;
		buf_printf(h, ";\n\tspf=%s", auth_res_name(s->res));
		ar_reason(h, s->res == AR_PASS ? "" : s->reason);
		buf_puts(h, s->helo_identity ? " smtp.helo=" : " smtp.mailfrom=");
		ar_value(h, s->sender[0] ? s->sender : s->domain);
		n++;
	}
	if (dkim_done) {
		if (v->dkim.n == 0) {
			buf_puts(h, ";\n\tdkim=none");
		}
		for (size_t i = 0; i < v->dkim.n; i++) {
			const struct dkim_sig_result *d = &v->dkim.v[i];
			buf_printf(h, ";\n\tdkim=%s", auth_res_name(d->res));
			ar_reason(h, d->reason);
			if (d->domain[0]) {
				buf_puts(h, " header.d=");
				ar_value(h, d->domain);
			}
			if (d->selector[0]) {
				buf_puts(h, " header.s=");
				ar_value(h, d->selector);
			}
			if (d->b[0]) {
				buf_puts(h, " header.b=");
				ar_value(h, d->b);
			}
		}
		n++;
	}
	for (size_t i = 0; dmarc_done && i < v->ndmarc; i++) {
		const struct dmarc_result *d = &v->dmarc[i];
		buf_printf(h, ";\n\tdmarc=%s", auth_res_name(d->res));
		if (d->policy[0])
			buf_printf(h, " (p=%s%s)", d->policy, d->sampled_out ? ", sampled out by pct" : "");
		ar_reason(h, d->res == AR_PASS ? "" : d->reason);
		if (d->from_domain[0]) {
			buf_puts(h, " header.from=");
			ar_value(h, d->from_domain);
		}
		n++;
	}
	if (n == 0)
		buf_puts(h, "; none");
	buf_putc(h, '\n');
}

/* Domains linked from the body, as registered domains, for URI lists. */
static struct rbl_check *uribl_start(struct msgcheck *m)
{
	struct buf msg, text;
	buf_init(&msg, MSG_HEADER_MAX + URI_TEXT_MAX + 16);
	buf_append(&msg, m->hdr.data, m->hdr_end);
	spool_read_head(m->spool, &msg, URI_TEXT_MAX);
	struct mime_msg *mm = mime_parse(msg.data ? msg.data : "", msg.len);
	buf_init(&text, MIME_BODY_TEXT_MAX + 1);
	mime_body_text(mm, &text);
	mime_free(&mm);
	buf_free(&msg);
	char **hosts = NULL;
	size_t nh = uri_domains(text.data ? text.data : "", text.len, &hosts, 0, 200);
	buf_free(&text);
	char **doms = NULL;
	size_t nd = 0;
	for (size_t i = 0; i < nh; i++) {
		char org[256];
		dmarc_org_domain(hosts[i], org, sizeof(org));
		bool dup = false;
		for (size_t k = 0; k < nd && !dup; k++)
			dup = strcmp(doms[k], org) == 0;
		if (!dup && nd < URI_DOMAINS_MAX) {
			doms = xrealloc(doms, (nd + 1) * sizeof(char *));
			doms[nd++] = xstrdup(org);
		}
		free(hosts[i]);
	}
	free(hosts);
	struct rbl_check *c =
		rbl_start_domains(m->ck->dns, &m->cfg->uribl, (const char *const *)doms, nd);
	for (size_t i = 0; i < nd; i++)
		free(doms[i]);
	free(doms);
	return c;
}

static void score_rbl(struct verdict *v, const struct rbl_result *r, const char *prefix)
{
	for (size_t i = 0; i < r->n; i++)
		if (r->v[i].status == RBL_LISTED)
			zone_test(v, prefix, r->v[i].zone, r->v[i].score);
}

/* How strict a DMARC result is: the strictest of a message's From
 * domains decides (a failing reject beats a failing quarantine, ...). */
static int dmarc_rank(const struct dmarc_result *d)
{
	if (d->res == AR_FAIL)
		return 4 + (int)d->action;
	return d->res == AR_TEMPERROR ? 3 : d->res == AR_PERMERROR ? 2 : d->res == AR_NONE ? 1 : 0;
}

static bool domain_syntax_ok(const char *d)
{
	size_t label = 0, n = 0;
	for (const char *c = d; *c; c++, n++) {
		if (*c == '.') {
			if (label == 0)
				return false;
			label = 0;
		} else if ((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-' || *c == '_') {
			if (++label > 63)
				return false;
		} else {
			return false;
		}
	}
	return n > 0 && n <= 253 && label > 0 && strchr(d, '.') != NULL;
}

/* Every "@domain" run of a raw From value, wherever it stands (inside
 * quotes and comments too): the last resort for a value no parser reads,
 * so that a domain a reader might show is still evaluated. */
static size_t raw_domains(const char *v, char (*out)[256], size_t n, size_t max)
{
	for (const char *p = strchr(v, '@'); p && n <= max; p = strchr(p + 1, '@')) {
		char d[256];
		size_t k = 0;
		for (const char *c = p + 1; *c && k + 1 < sizeof(d); c++) {
			char ch = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
			if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' ||
			      ch == '_'))
				break;
			d[k++] = ch;
		}
		while (k > 0 && d[k - 1] == '.')
			k--;
		d[k] = '\0';
		if (!domain_syntax_ok(d))
			continue;
		bool dup = false;
		for (size_t i = 0; i < n && !dup; i++)
			dup = strcmp(out[i], d) == 0;
		if (!dup && n < max)
			memcpy(out[n], d, k + 1);
		if (!dup)
			n++; /* may reach max + 1: too many */
	}
	return n;
}

static size_t add_domain(char (*out)[256], size_t n, size_t max, const char *d)
{
	for (size_t i = 0; i < n && i < max; i++)
		if (strcmp(out[i], d) == 0)
			return n;
	if (n < max)
		str_copy(out[n], d, 256);
	return n + 1;
}

/* DMARC for the From field (RFC 7489 6.6.1).  Every domain a reader could
 * take from it is evaluated and the strictest failing policy decides: the
 * domain of the strict RFC 5322 parse, together with the domains of
 * GMime's lenient parse (what our IMAP server shows) -- they differ on
 * crafted values such as a"b, x@bank.test"y@other.test; when neither
 * finds a domain, every "@domain" in the raw value.  The _dmarc lookups
 * of all of them start at once and share one deadline (two DNS
 * timeouts).  Returns a refusal text when the message must be refused
 * (several From fields; more From domains than we evaluate), else NULL. */
static const char *dmarc_all(struct msgcheck *m, const struct tx_info *tx, struct verdict *v)
{
	const struct config *cfg = m->cfg;
	static const struct spf_result no_spf = { .res = AR_NONE };
	const struct spf_result *spf = tx->spf ? tx->spf : &no_spf;
	char **from = NULL;
	size_t nf = msgcheck_from_values(m, &from);
	char doms[VERDICT_FROM_DOMAINS][256];
	size_t nd = 0;
	const char *why = NULL, *refuse = NULL;
	if (nf == 1) {
		char one[256], lenient[VERDICT_FROM_DOMAINS + 1][256];
		if (dmarc_from_domain((const char *const *)from, 1, one, sizeof(one), &why) == 0)
			nd = add_domain(doms, nd, VERDICT_FROM_DOMAINS, one);
		size_t nl = mime_address_domains(from[0], lenient, VERDICT_FROM_DOMAINS + 1);
		for (size_t i = 0; i < nl; i++)
			nd = add_domain(doms, nd, VERDICT_FROM_DOMAINS, lenient[i]);
		if (nd == 0)
			nd = raw_domains(from[0], doms, 0, VERDICT_FROM_DOMAINS);
		if (nd > VERDICT_FROM_DOMAINS)
			refuse = "its From field names too many domains";
	} else if (nf > 1) {
		refuse = "it has several From fields (RFC 5322 3.6)";
	}
	for (size_t i = 0; i < nf; i++)
		free(from[i]);
	free(from);

	v->ndmarc = 0;
	v->dmarc_main = 0;
	if (refuse || nd == 0) {
		struct dmarc_result *d = &v->dmarc[v->ndmarc++];
		memset(d, 0, sizeof(*d));
		d->res = nf == 0 ? AR_NONE : AR_PERMERROR;
		str_copy(d->reason, nf == 0 ? "no From field" : refuse ? refuse : why ? why : "no From domain",
			 sizeof(d->reason));
		if (!refuse)
			add_test(v, nf == 0 ? "FROM_MISSING" : "FROM_INVALID", cfg->bad_from_score);
		return refuse;
	}
	/* Ask for every record now; the answers wait in the resolver's
	 * cache for dmarc_verify below. */
	struct dns_query *pre[2 * VERDICT_FROM_DOMAINS];
	size_t npre = 0;
	for (size_t i = 0; i < nd; i++) {
		char name[300], org[256];
		if (!domain_syntax_ok(doms[i]))
			continue;
		snprintf(name, sizeof(name), "_dmarc.%s", doms[i]);
		pre[npre++] = dns_start(m->ck->dns, name, DNS_T_TXT);
		dmarc_org_domain(doms[i], org, sizeof(org));
		if (strcmp(org, doms[i]) != 0) {
			snprintf(name, sizeof(name), "_dmarc.%s", org);
			pre[npre++] = dns_start(m->ck->dns, name, DNS_T_TXT);
		}
	}
	int64_t deadline = clock_mono_ms() + 2 * dns_timeout(m->ck->dns);
	bool bad = false;
	for (size_t i = 0; i < nd; i++) {
		struct dmarc_result *d = &v->dmarc[v->ndmarc];
		memset(d, 0, sizeof(*d));
		if (!domain_syntax_ok(doms[i])) {
			d->res = AR_PERMERROR;
			str_copy(d->from_domain, doms[i], sizeof(d->from_domain));
			str_copy(d->reason, "not a valid domain", sizeof(d->reason));
			bad = true;
		} else {
			dmarc_verify(m->ck->dns, doms[i], spf, &v->dkim, deadline, d);
		}
		if (dmarc_rank(d) > dmarc_rank(&v->dmarc[v->dmarc_main]))
			v->dmarc_main = v->ndmarc;
		v->ndmarc++;
	}
	for (size_t i = 0; i < npre; i++) {
		struct dns_answer a;
		dns_wait(&pre[i], 0, &a); /* done by now, or cancelled */
		dns_answer_free(&a);
	}
	if (bad)
		add_test(v, "FROM_INVALID", cfg->bad_from_score);
	return NULL;
}

/* The rules of rules_dir against the message as received (the header
 * fields before removal, and the first RULES_TEXT_MAX octets of the
 * body, like SpamAssassin's scan size limit). */
static void match_rules(struct msgcheck *m, struct verdict *v)
{
	struct buf msg;
	buf_init(&msg, MSG_HEADER_MAX + RULES_TEXT_MAX + 16);
	buf_append(&msg, m->hdr.data, m->hdr_end);
	spool_read_head(m->spool, &msg, RULES_TEXT_MAX);
	struct msgview *mv = msgview_new(msg.data ? msg.data : "", msg.len);
	if (m->ck->rules)
		v->scan = ruleset_scan(m->ck->rules, mv);
	if (m->cfg->bayes)
		v->tokens = bayes_tokenize(mv);
	msgview_free(&mv);
	buf_free(&msg);
}

/* The author address (the first mailbox of the From field) and whether
 * its domain is authenticated: DMARC pass, or an SPF or DKIM pass
 * aligned with it (RFC 7489 3.1, relaxed).  Only then may a recipient's
 * whitelist apply (DESIGN.md "Filtering semantics"). */
static void from_author(struct msgcheck *m, struct verdict *v, const struct tx_info *tx,
			const struct dmarc_result *dm)
{
	char **vals = NULL;
	size_t n = msgcheck_from_values(m, &vals);
	if (n == 1 && !store_from_address(vals[0], v->from_addr, sizeof(v->from_addr)))
		v->from_addr[0] = '\0';
	for (size_t i = 0; i < n; i++)
		free(vals[i]);
	free(vals);
	const char *at = strrchr(v->from_addr, '@');
	if (at == NULL || v->ndmarc > 1)
		return; /* no author, or several From domains: nothing to trust */
	const char *dom = at + 1;
	if (dm->res == AR_PASS && strcasecmp(dm->from_domain, dom) == 0) {
		v->from_auth = "dmarc";
		return;
	}
	if (tx->spf && tx->spf->res == AR_PASS && dmarc_aligned(dom, tx->spf->domain, false)) {
		v->from_auth = "spf";
		return;
	}
	for (size_t i = 0; i < v->dkim.n; i++) {
		if (v->dkim.v[i].res == AR_PASS && dmarc_aligned(dom, v->dkim.v[i].domain, false)) {
			v->from_auth = "dkim";
			return;
		}
	}
}

/* ------------------------------------------------------------- verdict */

void checks_verdict(struct msgcheck *m, const struct tx_info *tx, struct verdict *v)
{
	const struct config *cfg = m->cfg;
	memset(v, 0, sizeof(*v));
	buf_init(&v->tests, 64 * 1024);
	buf_init(&v->log, 64 * 1024);
	buf_init(&v->headers, 256 * 1024);

	/* Start the URI list queries first: they run while DKIM and DMARC
	 * wait for their keys and records. */
	struct rbl_check *uc = NULL;
	if (cfg->uribl.n && m->ck && m->ck->dns)
		uc = uribl_start(m);

	bool dkim_done = m->dkim != NULL;
	if (m->dkim)
		dkimv_eom(m->dkim, &v->dkim);

	bool dmarc_done = cfg->dmarc_check && m->ck && m->ck->dns;
	const char *from_refused = NULL;
	if (dmarc_done)
		from_refused = dmarc_all(m, tx, v);
	if (m->ck && (m->ck->rules || cfg->bayes))
		match_rules(m, v);
	if (uc)
		rbl_finish(&uc, clock_mono_ms() + cfg->dns_timeout_ms, &v->uribl);

	/* Scores. */
	bool dns_failed = false;
	if (tx->spf) {
		switch (tx->spf->res) {
		case AR_FAIL:
			add_test(v, "SPF_FAIL", cfg->spf_fail_score);
			break;
		case AR_SOFTFAIL:
			add_test(v, "SPF_SOFTFAIL", cfg->spf_softfail_score);
			break;
		case AR_PERMERROR:
			add_test(v, "SPF_PERMERROR", cfg->spf_permerror_score);
			break;
		case AR_TEMPERROR:
			dns_failed = true;
			break;
		default:
			break;
		}
	}
	bool dkim_pass = false, dkim_fail = false, dkim_temp = false;
	for (size_t i = 0; i < v->dkim.n; i++) {
		dkim_pass |= v->dkim.v[i].res == AR_PASS;
		dkim_fail |= v->dkim.v[i].res == AR_FAIL;
		dkim_temp |= v->dkim.v[i].res == AR_TEMPERROR;
	}
	/* A key we could not fetch matters only when no signature passed
	 * (with one pass, the others change neither DMARC nor the score). */
	dns_failed |= dkim_temp && !dkim_pass;
	if (dkim_fail && !dkim_pass)
		add_test(v, "DKIM_FAIL", cfg->dkim_fail_score);
	static const struct dmarc_result no_dmarc = { .res = AR_NONE };
	const struct dmarc_result *dm = v->ndmarc ? &v->dmarc[v->dmarc_main] : &no_dmarc;
	if (dm->res == AR_FAIL)
		add_test(v, "DMARC_FAIL", cfg->dmarc_fail_score);
	/* A temporary error of any From domain (the deciding one may be a
	 * p=none fail that ranks above it). */
	for (size_t i = 0; i < v->ndmarc; i++)
		dns_failed |= v->dmarc[i].res == AR_TEMPERROR;
	if (tx->rbl) {
		score_rbl(v, tx->rbl, "RBL");
		dns_failed |= tx->rbl->unavailable;
	}
	score_rbl(v, &v->uribl, "URIBL");
	dns_failed |= v->uribl.unavailable;
	v->dns_failed = dns_failed;
	v->dmarc_quarantine = dm->res == AR_FAIL && dm->action == DMARC_ACT_QUARANTINE &&
			      cfg->dmarc_quarantine;
	from_author(m, v, tx, dm);

	/* What is decided for the whole transaction; the rest is per
	 * recipient (checks_recipients). */
	v->action = V_INBOX;
	if (from_refused) {
		/* RFC 5322 section 3.6 allows one From field; with two, a
		 * reader may show the one DMARC did not check (RFC 7489
		 * 6.6.1: such messages are typically rejected). */
		v->action = V_REJECT;
		snprintf(v->reply, sizeof(v->reply), "550 5.7.1 Message refused: %s, reference %s",
			 from_refused, tx->qid);
	} else if (dm->res == AR_FAIL && dm->action == DMARC_ACT_REJECT && cfg->dmarc_reject) {
		v->action = V_REJECT;
		snprintf(v->reply, sizeof(v->reply),
			 "550 5.7.1 Message rejected by the DMARC policy of %s, reference %s",
			 dm->from_domain, tx->qid);
	}

	/* Log fields. */
	if (tx->spf)
		buf_printf(&v->log, " spf=%s", auth_res_name(tx->spf->res));
	if (dkim_done) {
		buf_puts(&v->log, " dkim=");
		if (v->dkim.n == 0)
			buf_puts(&v->log, "none");
		for (size_t i = 0; i < v->dkim.n; i++)
			buf_printf(&v->log, "%s%s(%s)", i ? "," : "", auth_res_name(v->dkim.v[i].res),
				   log_str(v->dkim.v[i].domain));
	}
	for (size_t i = 0; dmarc_done && i < v->ndmarc; i++) {
		const struct dmarc_result *d = &v->dmarc[i];
		buf_printf(&v->log, "%s%s%s%s%s", i ? "," : " dmarc=", auth_res_name(d->res),
			   d->policy[0] ? "(p=" : "", d->policy, d->policy[0] ? ")" : "");
		if (v->ndmarc > 1)
			buf_printf(&v->log, "[%s]", log_str(d->from_domain));
	}
	struct buf rb;
	buf_init(&rb, 64 * 1024);
	if (tx->rbl) {
		rbl_result_format(tx->rbl, false, &rb);
		buf_printf(&v->log, " rbl=%s", rb.len ? rb.data : "clean");
	}
	if (cfg->uribl.n) {
		buf_reset(&rb);
		rbl_result_format(&v->uribl, true, &rb);
		buf_printf(&v->log, " uribl=%s", rb.len ? log_str(rb.data) : "clean");
	}

	/* Headers for delivery (X-Spam-* are the recipients'). */
	build_ar(cfg, tx, v, dkim_done, dmarc_done, &v->headers);
	if (tx->rbl || cfg->uribl.n) {
		buf_puts(&v->headers, "X-RBL-Status: ");
		size_t start = v->headers.len;
		if (tx->rbl) {
			buf_reset(&rb);
			rbl_result_format(tx->rbl, false, &rb);
			buf_puts(&v->headers, rb.len ? rb.data : "clean");
		}
		if (cfg->uribl.n) {
			buf_reset(&rb);
			rbl_result_format(&v->uribl, true, &rb);
			buf_printf(&v->headers, "%suri=%s", v->headers.len > start ? "; " : "",
				   rb.len ? log_str(rb.data) : "clean");
		}
		buf_putc(&v->headers, '\n');
	}
	buf_free(&rb);
}

void verdict_free(struct verdict *v)
{
	buf_free(&v->tests);
	buf_free(&v->log);
	buf_free(&v->headers);
	dkim_results_free(&v->dkim);
	rbl_result_free(&v->uribl);
	rules_scan_free(&v->scan);
	bayes_tokens_free(&v->tokens);
	for (size_t i = 0; i < v->nrcpt; i++) {
		struct rcpt_verdict *r = &v->rcpt[i];
		rules_result_free(&r->rules);
		buf_free(&r->tests);
		buf_free(&r->headers);
	}
	free(v->rcpt);
}
