/*
 * dmarc.c - DMARC (RFC 7489): the RFC 5322.From domain (section 6.6.1),
 * policy discovery through our DNS layer (6.6.3: _dmarc.<From domain>,
 * then _dmarc.<organizational domain>), identifier alignment (3.1, with
 * organizational domains from the public suffix list, 3.2) and the
 * p/sp/pct decision (6.3, 6.6.4).
 *
 * libopendmarc 1.4.2 does two things here: it parses a record's tags and
 * holds the public suffix list.  Alignment and the decision are ours
 * because the library's are wrong: its strict mode calls a.example.com
 * and b.example.com (or a domain and its subdomain) aligned,
 * opendmarc_get_policy_to_enforce() ignores pct=, and its own lookups
 * would bypass our cache and deadlines.  Its DKIM/SPF calls are unused.
 *
 * Decisions:
 * - A record the library refuses (no valid p=, a bad value of a tag it
 *   knows: pct=150, fo=x, ...) is a permerror with no action.  Section
 *   6.6.3 asks for no DMARC processing then (or p=none when rua= is
 *   usable: no action either); the permerror shows the owner's mistake
 *   in Authentication-Results.
 * - Several DMARC records at the name that has any: none (6.6.3 step 5),
 *   without falling back to the organizational domain.
 * - A DNS temporary failure at either name: temperror; the caller decides.
 *   So is a message with no aligned pass but an aligned SPF or DKIM
 *   temperror (a DKIM key lookup that timed out): a retry may pass, so
 *   it must not be rejected for good as a fail.
 * - With a null MAIL FROM, spf->domain is the HELO name (RFC 7208 section
 *   2.4 makes postmaster@HELO the MAIL FROM identity), and that is the SPF
 *   identity aligned (RFC 7489 section 4.1).
 * - pct= draws arc4random_uniform(100) per message: thread-safe, no seed.
 *
 * Limits: the library treats a wildcard suffix rule ("*.ck") as a plain
 * one; a From domain in U-labels is refused (no IDNA conversion here).
 *
 * Threads: dmarc_init() runs once before the sessions start; the rest
 * keeps no state but a policy handle per call (the library reads its
 * suffix table under its own mutex).
 */
#include "filterd/filterd.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <opendmarc/dmarc.h>

/* In libopendmarc (opendmarc_tld.c) but not in dmarc.h: the organizational
 * domain of domain into tld; tld is left untouched when no rule matches. */
int opendmarc_get_tld(u_char *domain, u_char *tld, size_t tld_len);

static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
static bool initialized;

/* Later calls do nothing (the library cannot reload safely under load). */
int dmarc_init(const char *psl_file, char **error_r)
{
	*error_r = NULL;
	pthread_mutex_lock(&init_lock);
	FILE *f = NULL;
	if (initialized)
		goto out;
	/* libopendmarc 1.4.2 reports success for a file it cannot open. */
	if (psl_file == NULL || *psl_file == '\0' || (f = fopen(psl_file, "r")) == NULL) {
		*error_r = xasprintf("cannot read the public suffix list \"%s\": %s", psl_file ? psl_file : "",
				     psl_file && *psl_file ? strerror(errno) : "none configured");
		goto out;
	}
	char *line = NULL, *s;
	size_t cap = 0, rules = 0;
	while (getline(&line, &cap, f) > 0)
		rules += *(s = str_trim(line)) != '\0' && strncmp(s, "//", 2) != 0;
	if (ferror(f) || rules == 0)
		*error_r = xasprintf("%s: %s", psl_file, ferror(f) ? "read error" : "no rules");
	free(line);
	fclose(f);
	OPENDMARC_LIB_T lib;
	memset(&lib, 0, sizeof(lib));
	lib.tld_type = OPENDMARC_TLD_TYPE_MOZILLA;
	if (*error_r == NULL) {
		int st = -1;
		if (str_copy((char *)lib.tld_source_file, psl_file, sizeof(lib.tld_source_file)))
			st = opendmarc_policy_library_init(&lib);
		if (st != DMARC_PARSE_OKAY)
			*error_r = xasprintf("libopendmarc cannot load %s (status %d)", psl_file, st);
		initialized = st == DMARC_PARSE_OKAY;
	}
out:
	pthread_mutex_unlock(&init_lock);
	return *error_r == NULL ? 0 : -1;
}

/* Lower-case ASCII, one trailing dot dropped; false when it does not fit. */
static bool domain_norm(const char *in, char *out, size_t size)
{
	size_t n = strlen(in);
	if (n > 0 && in[n - 1] == '.')
		n--;
	if (n >= size)
		return false;
	for (size_t i = 0; i < n; i++)
		out[i] = (in[i] >= 'A' && in[i] <= 'Z') ? (char)(in[i] + 32) : in[i];
	out[n] = '\0';
	return true;
}

void dmarc_org_domain(const char *domain, char *out, size_t size)
{
	char d[256], tld[256] = "";
	if (size == 0)
		return;
	out[0] = '\0';
	if (domain == NULL || !domain_norm(domain, d, sizeof(d)) || d[0] == '\0')
		return;
	if (opendmarc_get_tld((u_char *)d, (u_char *)tld, sizeof(tld)) != 0)
		tld[0] = '\0';
	size_t dn = strlen(d), tn = strlen(tld);
	/* Only a whole-label suffix of d is believable.  No rule matched: the
	 * default rule "*" makes it the last two labels. */
	if (tn == 0 || tn > dn || strcmp(d + dn - tn, tld) != 0 || (tn < dn && d[dn - tn - 1] != '.')) {
		const char *s = d + dn;
		int dots = 0;
		while (s > d && !(s[-1] == '.' && ++dots == 2))
			s--;
		str_copy(tld, s, sizeof(tld));
	}
	str_copy(out, tld, size);
}

bool dmarc_aligned(const char *from_domain, const char *other, bool strict)
{
	char a[256], b[256], oa[256], ob[256];
	if (from_domain == NULL || other == NULL || !domain_norm(from_domain, a, sizeof(a)) ||
	    !domain_norm(other, b, sizeof(b)) || a[0] == '\0' || b[0] == '\0')
		return false;
	if (strcmp(a, b) == 0 || strict)
		return strcmp(a, b) == 0;
	dmarc_org_domain(a, oa, sizeof(oa));
	dmarc_org_domain(b, ob, sizeof(ob));
	return oa[0] != '\0' && strcmp(oa, ob) == 0;
}

/* ------------------------------------------- RFC 5322 address-list scan */

enum { TK_END, TK_ATOM, TK_QUOTED, TK_LITERAL, TK_SPECIAL, TK_ERROR };
struct tok { int kind; const char *s; size_t n; }; /* TK_SPECIAL: *s is the character */

#define IS_WS(c) ((c) == ' ' || (c) == '\t' || (c) == '\r' || (c) == '\n')
#define IS_CTL(c) (((unsigned char)(c) < 0x20 && !IS_WS(c)) || (c) == 0x7f)
#define IS_SPECIAL(c) ((c) != '\0' && strchr("()<>[]:;@\\,\"", (c)) != NULL)
#define FAIL(msg) do { *why = (msg); return -1; } while (0)

/* The next token after blanks, folds and comments (nested, with quoted
 * pairs); atoms include dots (a dot-atom is one token). */
static struct tok next_tok(const char **pp)
{
	struct tok t = { TK_ERROR, NULL, 0 };
	const char *p = *pp;
	int depth = 0;
	for (; *p != '\0' && (depth > 0 || IS_WS(*p) || *p == '('); p++) {
		if (*p == '(')
			depth++;
		else if (depth > 0 && *p == ')')
			depth--;
		else if (depth > 0 && *p == '\\' && p[1] != '\0')
			p++;
	}
	t.s = p;
	if (depth > 0)
		return t;
	if (*p == '\0') {
		t.kind = TK_END;
	} else if (*p == '"' || *p == '[') {
		char close = *p == '"' ? '"' : ']';
		for (p++; *p != close; p++)
			if (*p == '\0' || (*p == '\\' && *++p == '\0'))
				return t;
		p++;
		t.kind = close == '"' ? TK_QUOTED : TK_LITERAL;
	} else if (strchr("<>@,:;", *p) != NULL) {
		p++;
		t.kind = TK_SPECIAL;
	} else if (IS_SPECIAL(*p) || IS_CTL(*p)) {
		return t; /* ')' ']' '\' or a control character */
	} else {
		while (*p != '\0' && !IS_WS(*p) && !IS_SPECIAL(*p) && !IS_CTL(*p))
			p++;
		t.kind = TK_ATOM;
	}
	t.n = (size_t)(p - t.s);
	*pp = p;
	return t;
}

static bool is_sp(struct tok t, char c)
{
	return t.kind == TK_SPECIAL && *t.s == c;
}

/* The domain after '@': atoms meeting at dots (obs-domain allows CFWS
 * around them) up to the first other token, returned in *term.  Valid:
 * labels of 1..63 letters, digits, '-' or '_', 253 in all; lower-cased. */
static int read_domain(const char **pp, char *out, size_t size, struct tok *term, const char **why)
{
	char raw[300];
	size_t len = 0;
	struct tok t;
	while ((t = next_tok(pp)).kind == TK_ATOM) {
		if ((len > 0 && raw[len - 1] != '.' && t.s[0] != '.') || len + t.n >= sizeof(raw))
			FAIL("invalid From domain");
		memcpy(raw + len, t.s, t.n);
		len += t.n;
	}
	*term = t;
	if (t.kind == TK_ERROR)
		FAIL("From field syntax error");
	if (len == 0)
		FAIL(t.kind == TK_LITERAL ? "From domain is an address literal"
					  : "From address without a domain");
	raw[len] = '\0';
	/* Non-ASCII (no IDNA here) or other atext is refused. */
	if (!domain_norm(raw, out, size) || strlen(out) > 253 ||
	    strspn(out, "abcdefghijklmnopqrstuvwxyz0123456789-_.") != strlen(out))
		FAIL("invalid From domain");
	for (const char *s = out, *dot;; s = dot + 1) {
		dot = strchrnul(s, '.');
		if (dot == s || dot - s > 63)
			FAIL("invalid From domain");
		if (*dot == '\0')
			return 0;
	}
}

int dmarc_from_domain(const char *const *from_values, size_t n, char *out, size_t size,
		      const char **why)
{
	if (size > 0)
		out[0] = '\0';
	if (n == 0 || from_values == NULL || from_values[0] == NULL)
		FAIL("no From field");
	if (n > 1)
		FAIL("several From fields"); /* section 6.6.1: not evaluated */
	const char *p = from_values[0];
	char first[256] = "", dom[256];
	bool in_group = false;
	size_t words = 0, naddr = 0;
	for (;;) {
		struct tok t = next_tok(&p);
		if (t.kind == TK_ATOM || t.kind == TK_QUOTED) {
			words++; /* display name, or local part before '@' */
			continue;
		}
		if (t.kind == TK_END && words == 0)
			break;
		if (is_sp(t, ',') && words == 0)
			continue; /* empty list element (obs-mbox-list) */
		if ((is_sp(t, ';') && words == 0 && in_group) || (is_sp(t, ':') && words > 0 && !in_group)) {
			in_group = !in_group; /* "name: ... ;" is a group */
			words = 0;
			continue;
		}
		if (is_sp(t, '<')) {
			if (is_sp(t = next_tok(&p), '@')) { /* obs-route "@a,@b:" */
				while ((t = next_tok(&p)).kind == TK_ATOM || is_sp(t, '@') || is_sp(t, ','))
					;
				if (!is_sp(t, ':'))
					FAIL("From field syntax error");
				t = next_tok(&p);
			}
			if (is_sp(t, '>'))
				FAIL("empty From address");
			size_t local = 0;
			for (; t.kind == TK_ATOM || t.kind == TK_QUOTED; t = next_tok(&p))
				local++;
			if (t.kind == TK_ERROR)
				FAIL("From field syntax error");
			if (local == 0 || !is_sp(t, '@'))
				FAIL("From address without a domain");
			if (read_domain(&p, dom, sizeof(dom), &t, why) < 0)
				return -1;
			if (!is_sp(t, '>'))
				FAIL("From field syntax error");
			t = next_tok(&p);
		} else if (is_sp(t, '@') && words > 0) {
			if (read_domain(&p, dom, sizeof(dom), &t, why) < 0)
				return -1;
		} else if (t.kind == TK_END || is_sp(t, ',') || is_sp(t, ';')) {
			FAIL("From address without a domain");
		} else {
			FAIL("From field syntax error");
		}
		/* One address; t is what follows it. */
		if (naddr++ == 0)
			memcpy(first, dom, sizeof(first));
		else if (strcmp(first, dom) != 0)
			FAIL("From has several domains");
		words = 0;
		if (t.kind == TK_END)
			break;
		if (is_sp(t, ';') && in_group)
			in_group = false;
		else if (!is_sp(t, ','))
			FAIL("From field syntax error");
	}
	if (in_group)
		FAIL("From field syntax error"); /* unterminated group */
	if (naddr == 0)
		FAIL("no address in From");
	if (!str_copy(out, first, size)) {
		out[0] = '\0';
		FAIL("From domain too long");
	}
	return 0;
}

/* ------------------------------------------------------ policy and verify */

/* "v" *WSP "=" *WSP "DMARC1", then the end, ';' or a blank. */
static bool is_dmarc_record(const char *s)
{
	if (*s != 'v' && *s != 'V')
		return false;
	s += 1 + strspn(s + 1, " \t");
	if (*s != '=')
		return false;
	s += 1 + strspn(s + 1, " \t");
	return str_iprefix(s, "DMARC1") && strchr("; \t", s[6]) != NULL; /* '\0' matches too */
}

/* The DMARC records among TXT strings (section 6.6.3 steps 2 and 4): how
 * many, and the first. */
size_t dmarc_select_record(char *const *txt, size_t n, const char **record_r)
{
	size_t count = 0;
	*record_r = NULL;
	for (size_t i = 0; i < n; i++)
		if (txt[i] != NULL && is_dmarc_record(txt[i]) && count++ == 0)
			*record_r = txt[i];
	return count;
}

static void reason_add(struct dmarc_result *r, const char *fmt, ...) PRINTFLIKE(2, 3);
static void reason_add(struct dmarc_result *r, const char *fmt, ...)
{
	size_t len = strlen(r->reason);
	if (len > 0 && len + 2 < sizeof(r->reason)) {
		memcpy(r->reason + len, "; ", 3);
		len += 2;
	}
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->reason + len, sizeof(r->reason) - len, fmt, ap);
	va_end(ap);
}

static enum dmarc_action action_of(int p)
{
	return p == DMARC_RECORD_P_REJECT ? DMARC_ACT_REJECT
	       : p == DMARC_RECORD_P_QUARANTINE ? DMARC_ACT_QUARANTINE : DMARC_ACT_NONE;
}

/* The decision for one record.  org_domain: the organizational domain
 * when the record was found there rather than at the From domain, else
 * NULL.  sample (0..99) picks the message for pct=: applied when < pct. */
void dmarc_apply_record(const char *record, const char *from_domain, const char *org_domain,
			const struct spf_result *spf, const struct dkim_results *dkim,
			unsigned sample, struct dmarc_result *r)
{
	static const char *const names[] = { "none", "quarantine", "reject" };
	memset(r, 0, sizeof(*r));
	char *from = r->from_domain, org[256] = "";
	if (!domain_norm(from_domain, from, sizeof(r->from_domain)) || from[0] == '\0') {
		reason_add(r, "no From domain");
		return;
	}
	if (org_domain != NULL && (!domain_norm(org_domain, org, sizeof(org)) || strcmp(org, from) == 0))
		org[0] = '\0';

	DMARC_POLICY_T *pc = opendmarc_policy_connect_init((u_char *)"0.0.0.0", 0);
	if (pc == NULL)
		log_fatalx(NULL, "libopendmarc: out of memory");
	char *rec = xstrdup(record);
	int p = 0, sp = 0, pct = 100, adkim = 0, aspf = 0;
	int st = opendmarc_policy_store_from_domain(pc, (u_char *)from);
	if (st == DMARC_PARSE_OKAY)
		st = opendmarc_policy_store_dmarc(pc, (u_char *)rec, (u_char *)from,
						  org[0] != '\0' ? (u_char *)org : NULL);
	if (st == DMARC_PARSE_OKAY) {
		opendmarc_policy_fetch_p(pc, &p);
		opendmarc_policy_fetch_sp(pc, &sp);
		opendmarc_policy_fetch_pct(pc, &pct);
		opendmarc_policy_fetch_adkim(pc, &adkim);
		opendmarc_policy_fetch_aspf(pc, &aspf);
	}
	opendmarc_policy_connect_shutdown(pc);
	free(rec);
	if (st != DMARC_PARSE_OKAY || (p != DMARC_RECORD_P_NONE && action_of(p) == DMARC_ACT_NONE)) {
		r->res = AR_PERMERROR;
		reason_add(r, "invalid DMARC record: %s", opendmarc_policy_status_to_str(st));
		return;
	}

	/* sp= only counts for a record found at the organizational domain. */
	enum dmarc_action act = action_of(org[0] != '\0' && sp != DMARC_RECORD_P_UNSPECIFIED ? sp : p);
	str_copy(r->policy, names[act], sizeof(r->policy));
	bool dkim_strict = adkim == DMARC_RECORD_A_STRICT, spf_strict = aspf == DMARC_RECORD_A_STRICT;
	bool temp = spf != NULL && spf->res == AR_TEMPERROR && dmarc_aligned(from, spf->domain, spf_strict);
	for (size_t i = 0; dkim != NULL && i < dkim->n; i++) {
		bool al = dmarc_aligned(from, dkim->v[i].domain, dkim_strict);
		r->dkim_aligned |= al && dkim->v[i].res == AR_PASS;
		temp |= al && dkim->v[i].res == AR_TEMPERROR;
	}
	r->spf_aligned = spf != NULL && spf->res == AR_PASS && dmarc_aligned(from, spf->domain, spf_strict);

	if (r->spf_aligned || r->dkim_aligned) {
		r->res = AR_PASS;
		reason_add(r, "aligned %s pass", !r->dkim_aligned ? "SPF" : r->spf_aligned ? "SPF and DKIM" : "DKIM");
	} else if (temp) {
		r->res = AR_TEMPERROR; /* a retry may pass: never reject for it */
		reason_add(r, "temporary error of an aligned SPF or DKIM check");
	} else {
		r->res = AR_FAIL;
		r->action = act;
		reason_add(r, "no aligned SPF or DKIM pass%s%s", dkim_strict ? " (adkim=s)" : "",
			   spf_strict ? " (aspf=s)" : "");
		/* Section 6.6.4: a message left out by pct= gets the next
		 * policy down (reject -> quarantine -> none). */
		if (act != DMARC_ACT_NONE && pct >= 0 && pct < 100 && sample >= (unsigned)pct) {
			r->action = act == DMARC_ACT_REJECT ? DMARC_ACT_QUARANTINE : DMARC_ACT_NONE;
			r->sampled_out = true;
			reason_add(r, "sampled out by pct=%d", pct);
		}
	}
	if (org[0] != '\0')
		reason_add(r, "DMARC record at the organizational domain");
}

/* TXT at _dmarc.<domain>: 1 one DMARC record (*rec_r malloc'd), 0 none,
 * 2 several, -1 a temporary failure (r->reason says why). */
static int fetch_record(struct dns *dns, const char *domain, int64_t deadline, char **rec_r,
			struct dmarc_result *r)
{
	char name[300];
	if (strlen(domain) + 7 > 253)
		return 0; /* no such name can exist */
	snprintf(name, sizeof(name), "_dmarc.%s", domain);
	struct dns_answer ans;
	int64_t until = clock_mono_ms() + dns_timeout(dns);
	struct dns_query *q = dns_start(dns, name, DNS_T_TXT);
	dns_wait(&q, deadline && deadline < until ? deadline : until, &ans);
	int ret = 0;
	if (ans.outcome == DNS_TEMPFAIL) {
		reason_add(r, "DNS error for %s: %s", name, ans.error != NULL ? ans.error : "temporary failure");
		ret = -1;
	} else if (ans.outcome == DNS_PASS) {
		const char *rec;
		size_t count = dmarc_select_record(ans.rr, ans.n, &rec);
		if (count == 1)
			*rec_r = xstrdup(rec);
		ret = count > 1 ? 2 : (int)count;
	}
	dns_answer_free(&ans);
	return ret;
}

void dmarc_verify(struct dns *dns, const char *from_domain, const struct spf_result *spf,
		  const struct dkim_results *dkim, int64_t deadline, struct dmarc_result *r)
{
	memset(r, 0, sizeof(*r));
	char from[256], org[256], *rec = NULL;
	if (from_domain == NULL || !domain_norm(from_domain, from, sizeof(from)) || from[0] == '\0') {
		reason_add(r, "no From domain");
		return;
	}
	str_copy(r->from_domain, from, sizeof(r->from_domain));
	dmarc_org_domain(from, org, sizeof(org));
	const char *at = from;
	int n = fetch_record(dns, from, deadline, &rec, r);
	if (n == 0 && org[0] != '\0' && strcmp(org, from) != 0)
		n = fetch_record(dns, at = org, deadline, &rec, r);
	if (n < 0)
		r->res = AR_TEMPERROR;
	else if (n == 0)
		reason_add(r, "no DMARC record");
	else if (n == 2)
		reason_add(r, "several DMARC records at _dmarc.%s", at);
	else /* resets r */
		dmarc_apply_record(rec, from, at == org ? org : NULL, spf, dkim, arc4random_uniform(100), r);
	free(rec);
}
