/*
 * spf.c - SPF (RFC 7208): check_host() for the MAIL FROM identity, or the
 * HELO identity when the reverse path is null (sections 2.3, 2.4).
 *
 * libspf2 parses and evaluates the records (sections 4 and 5); every DNS
 * query goes through our resolver (common/dns.c) by a custom
 * SPF_dns_server_t that turns our text answers back into libspf2's
 * records.  libspf2 1.2.10 counts DNS terms per record only and has no
 * void-lookup limit, so the layer keeps the section 4.6.4 budget itself,
 * per spf_verify() call in thread-local state: at most 10 DNS-querying
 * terms (include, a, mx, ptr, exists, redirect; the first TXT lookup of
 * the checked domain is free, and so are the address lookups of the names
 * an mx or ptr answer gave, at most 10 of them) and at most 2 void
 * lookups.  Past the budget every lookup fails without a query and the
 * result is permerror.  A temporary DNS error gives temperror (sections
 * 4.4, 5), except within ptr, where it is no match (section 5.5), and so
 * does a check still running after 20 seconds (4.6.4).  The exp= text
 * (section 6.2) is fetched outside the budget, twice per check at most.
 *
 * libspf2 aborts the process on some bad input, so identities and the
 * address are validated first (an unusable identity gives none), and its
 * error handler ends a check that trips one anyway with permerror.
 */
#include "filterd/filterd.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <stddef.h>
#include <netinet/in.h>
#include <arpa/nameser.h>
#include <spf2/spf.h>

#define SPF_MAX_TERMS 10
#define SPF_MAX_VOID 2
#define SPF_MAX_NAMES 10 /* address lookups per mx or ptr term */
#define SPF_MAX_EXP 2    /* exp= lookups (libspf2 asks for every result) */
#ifndef SPF_MAX_TIME_MS
#define SPF_MAX_TIME_MS 20000 /* then temperror (4.6.4) */
#endif
#define SPF_MAX_TIMEOUTS 4 /* the whole check: at most this many DNS timeouts */

struct spf_verifier {
	struct dns *dns;
	SPF_dns_server_t layer; /* destroy == NULL: SPF_server_free leaves it */
	SPF_server_t *server;
};

/* The state of one check: thread-local, not automatic, so that it stays
 * valid across the longjmp out of libspf2's error handler. */
struct check {
	struct spf_verifier *v;
	SPF_request_t *req;
	SPF_response_t *rs;
	SPF_errcode_t err;
	jmp_buf jb;
	unsigned terms, voids, exps;
	int64_t deadline;
	bool record_seen;        /* the first TXT lookup happened */
	bool in_exp;             /* expanding an explanation: not counted */
	const char *over;        /* the budget was exceeded: why */
	char temp[120];          /* the first temporary DNS error */
	char crash[120];         /* libspf2 called SPF_error() */
	char names[SPF_MAX_NAMES][256]; /* of the last mx/ptr answer */
	size_t nnames, inames;
	bool names_ptr;
	char exp_dom[256];       /* the last exp= lookup and its record */
	char *exp_txt;
};
static _Thread_local struct check tls;
static _Thread_local struct check *cur; /* &tls during a check */

/* A domain name: labels of 1-63 octets, at most 253 in all.  strict (an
 * identity): letters, digits, '-' and '_', at least two labels, the last
 * not all digits.  Otherwise (a name to query): any printable ASCII but
 * blanks, and a final dot is allowed. */
static bool domain_ok(const char *s, bool strict)
{
	size_t len = strlen(s), label = 0, labels = 1;
	bool digits = true;
	if (!strict && len > 1 && s[len - 1] == '.')
		len--;
	if (len == 0 || len > 253)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
			labels++;
			digits = true;
			continue;
		}
		bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
		if (strict ? !(alnum || c == '-' || c == '_') : (c <= 0x20 || c >= 0x7f))
			return false;
		digits = digits && c >= '0' && c <= '9';
		if (++label > 63)
			return false;
	}
	return label > 0 && (!strict || (labels >= 2 && !digits));
}

/* Printable ASCII only (\xNN), cut to size with "...". */
static void set_reason(struct spf_result *r, const char *s)
{
	log_sanitize(r->reason, sizeof(r->reason), s, strlen(s), sizeof(r->reason) - 1);
}

/* An A/AAAA lookup of a name the last mx/ptr answer gave? */
static bool names_take(struct check *st, const char *name)
{
	for (size_t i = st->inames; i < st->nnames; i++)
		if (strcasecmp(st->names[i], name) == 0) {
			st->inames = i + 1;
			return true;
		}
	return false;
}

static void rr_put(SPF_dns_rr_t *rr, const void *p, size_t len, bool nul)
{
	if (SPF_dns_rr_buf_realloc(rr, rr->num_rr, len + nul) != SPF_E_SUCCESS)
		log_fatalx(NULL, "spf: out of memory");
	memcpy(rr->rr[rr->num_rr], p, len);
	if (nul)
		((char *)rr->rr[rr->num_rr])[len] = '\0';
	rr->num_rr++;
}

static SPF_dns_rr_t *rr_new(SPF_dns_server_t *s, const char *domain, ns_type type, int ttl,
			    SPF_dns_stat_t herrno)
{
	SPF_dns_rr_t *rr = SPF_dns_rr_new_init(s, domain, type, ttl, herrno);
	if (rr == NULL)
		log_fatalx(NULL, "spf: out of memory");
	return rr;
}

/* Our text records as libspf2's. */
static void rr_fill(SPF_dns_rr_t *rr, ns_type type, const struct dns_answer *a)
{
	for (size_t i = 0; i < a->n; i++) {
		const char *t = a->rr[i], *host = strchr(t, ' ');
		unsigned char addr[sizeof(struct in6_addr)];
		if (type == ns_t_a || type == ns_t_aaaa) {
			if (inet_pton(type == ns_t_a ? AF_INET : AF_INET6, t, addr) == 1)
				rr_put(rr, addr, type == ns_t_a ? 4 : 16, false);
		} else if (type == ns_t_mx) { /* "pref host" */
			rr_put(rr, host ? host + 1 : t, strlen(host ? host + 1 : t), true);
		} else if (type == ns_t_txt && strcasecmp(t, "v=spf1") == 0) {
			/* libspf2 wants "v=spf1 "; the bare version is a record too (4.5). */
			rr_put(rr, "v=spf1 ", 7, true);
		} else if (type != ns_t_ptr || rr->num_rr < SPF_MAX_NAMES) {
			rr_put(rr, t, strlen(t), true); /* PTR: the first 10 names (4.6.4) */
		}
	}
	if (rr->num_rr == 0)
		rr->herrno = NO_DATA;
}

static SPF_dns_rr_t *layer_lookup(SPF_dns_server_t *s, const char *domain, ns_type type,
				  int should_cache UNUSED)
{
	struct spf_verifier *v = s->hook;
	struct check *st = cur;
	int qtype = type == ns_t_a ? DNS_T_A : type == ns_t_aaaa ? DNS_T_AAAA
		  : type == ns_t_mx ? DNS_T_MX : type == ns_t_txt ? DNS_T_TXT
		  : type == ns_t_ptr ? DNS_T_PTR : 0;
	if (qtype == 0) /* type 99 (SPF, obsolete) and anything else */
		return rr_new(s, domain, type, 0, NO_DATA);
	if (st == NULL || st->over)
		return rr_new(s, domain, type, 0, HOST_NOT_FOUND);
	bool term = false, sub = false;
	if (st->in_exp) {
		/* %{p} in an explanation: outside the budget */
	} else if (qtype == DNS_T_TXT && !st->record_seen) {
		st->record_seen = true;
	} else if ((qtype == DNS_T_A || qtype == DNS_T_AAAA) && names_take(st, domain)) {
		sub = true;
	} else {
		term = true;
		st->nnames = st->inames = 0;
		if (++st->terms > SPF_MAX_TERMS) {
			st->over = "too many DNS lookups (RFC 7208 4.6.4)";
			return rr_new(s, domain, type, 0, HOST_NOT_FOUND);
		}
	}
	struct dns_answer a = { .outcome = DNS_NXDOMAIN };
	if (clock_mono_ms() >= st->deadline)
		a = (struct dns_answer){ .outcome = DNS_TEMPFAIL, .error = xstrdup("time limit") };
	else if (domain_ok(domain, false)) {
		/* Each lookup waits our DNS timeout, and never past the
		 * check's deadline. */
		int64_t until = clock_mono_ms() + dns_timeout(v->dns);
		struct dns_query *q = dns_start(v->dns, domain, qtype);
		dns_wait(&q, until < st->deadline ? until : st->deadline, &a);
	}
	bool ptr = qtype == DNS_T_PTR || (sub && st->names_ptr);
	SPF_dns_stat_t h = a.outcome == DNS_PASS ? NETDB_SUCCESS
			 : a.outcome == DNS_NODATA ? NO_DATA
			 : a.outcome == DNS_TEMPFAIL && !ptr ? TRY_AGAIN : HOST_NOT_FOUND;
	SPF_dns_rr_t *rr = rr_new(s, domain, type, (int)a.ttl, h);
	if (h == NETDB_SUCCESS)
		rr_fill(rr, type, &a);
	if (h == TRY_AGAIN && !st->in_exp && !st->temp[0])
		snprintf(st->temp, sizeof(st->temp), "temporary DNS error: %s %s: %s",
			 SPF_strrrtype(type), domain, a.error ? a.error : "error");
	if (term && a.outcome != DNS_TEMPFAIL && rr->herrno != NETDB_SUCCESS &&
	    ++st->voids > SPF_MAX_VOID)
		st->over = "too many void lookups (RFC 7208 4.6.4)";
	if (term && rr->herrno == NETDB_SUCCESS && (qtype == DNS_T_MX || qtype == DNS_T_PTR)) {
		for (int i = 0; i < rr->num_rr && st->nnames < SPF_MAX_NAMES; i++)
			str_copy(st->names[st->nnames++], qtype == DNS_T_MX ? rr->rr[i]->mx : rr->rr[i]->ptr,
				 sizeof(st->names[0]));
		st->names_ptr = qtype == DNS_T_PTR;
	}
	dns_answer_free(&a);
	return rr;
}

/* The exp= lookup (section 6.2), outside the budget: one TXT record,
 * macro-expanded.  Any error: no explanation. */
static SPF_errcode_t layer_get_exp(SPF_server_t *server, const char *domain, char **bufp,
				   size_t *buflenp)
{
	struct check *st = cur;
	if (st == NULL || st->over || !domain_ok(domain, false))
		return SPF_E_DNS_ERROR;
	if (strcasecmp(domain, st->exp_dom) != 0) {
		if (st->exps++ >= SPF_MAX_EXP || clock_mono_ms() >= st->deadline)
			return SPF_E_DNS_ERROR;
		struct dns_answer a;
		str_copy(st->exp_dom, domain, sizeof(st->exp_dom)); /* *bufp == domain */
		int64_t until = clock_mono_ms() + dns_timeout(st->v->dns);
		struct dns_query *q = dns_start(st->v->dns, domain, DNS_T_TXT);
		dns_wait(&q, until < st->deadline ? until : st->deadline, &a);
		free(st->exp_txt);
		st->exp_txt = a.outcome == DNS_PASS && a.n == 1 ? xstrdup(a.rr[0]) : NULL;
		dns_answer_free(&a);
	}
	SPF_errcode_t err = SPF_E_NOT_SPF;
	SPF_response_t *scratch = NULL;
	SPF_macro_t *mac = NULL;
	/* libspf2's macro compiler takes a blank for the end: write "%_". */
	struct buf text;
	buf_init(&text, 8192);
	for (const char *p = st->exp_txt ? st->exp_txt : ""; *p; p++)
		if ((*p == ' ' ? buf_puts(&text, "%_") : buf_putc(&text, *p)) < 0)
			break;
	if (text.len && (scratch = SPF_response_new(st->req)) != NULL &&
	    SPF_record_compile_macro(server, scratch, &mac, text.data) == SPF_E_SUCCESS && mac) {
		st->in_exp = true;
		err = SPF_record_expand_data(server, st->req, scratch,
					     (SPF_data_t *)((char *)mac + sizeof(SPF_macro_t)),
					     mac->macro_len, bufp, buflenp);
		st->in_exp = false;
	}
	if (mac)
		SPF_macro_free(mac);
	if (scratch)
		SPF_response_free(scratch);
	buf_free(&text);
	return err;
}

/* libspf2's messages.  An error (a broken invariant in libspf2, which
 * would abort) during a check ends the check with permerror, leaking what
 * libspf2 had allocated for it; elsewhere it is fatal. */
static NORETURN void spf_log_error(const char *file, int line, const char *msg)
{
	msg = msg ? msg : "";
	if (cur == NULL)
		log_panic(NULL, "libspf2: %s:%d: %s", file ? file : "?", line, msg);
	log_errx(NULL, "libspf2: %s:%d: %s", file ? file : "?", line, log_str(msg));
	snprintf(cur->crash, sizeof(cur->crash), "libspf2 error: %s", msg);
	cur->err = SPF_E_INTERNAL_ERROR;
	longjmp(cur->jb, 1);
}

static void spf_log_debug(const char *file UNUSED, int line UNUSED, const char *msg)
{
	if (log_debug_enabled())
		log_debug(NULL, "libspf2: %s", log_str(msg ? msg : ""));
}

static pthread_once_t handlers_once = PTHREAD_ONCE_INIT;
static void handlers_set(void)
{
	SPF_error_handler = spf_log_error;
	SPF_warning_handler = SPF_info_handler = SPF_debug_handler = spf_log_debug;
}

struct spf_verifier *spf_verifier_new(struct dns *dns, const char *hostname, char **error_r)
{
	pthread_once(&handlers_once, handlers_set);
	if (dns == NULL) {
		*error_r = xstrdup("spf: no resolver");
		return NULL;
	}
	struct spf_verifier *v = xcalloc(1, sizeof(*v));
	v->dns = dns;
	v->layer.lookup = layer_lookup;
	v->layer.get_exp = layer_get_exp;
	v->layer.name = "filterd";
	v->layer.hook = v;
	SPF_response_t *resp = NULL;
	if ((v->server = SPF_server_new_dns(&v->layer, 0)) == NULL ||
	    SPF_server_set_rec_dom(v->server, hostname && *hostname ? hostname : "localhost") ||
	    /* No default explanation: a non-empty one came from exp=. */
	    SPF_server_set_explanation(v->server, "", &resp)) {
		*error_r = xstrdup("spf: cannot set up libspf2");
		spf_verifier_free(&v);
	}
	if (resp)
		SPF_response_free(resp);
	return v;
}

void spf_verifier_free(struct spf_verifier **vp)
{
	struct spf_verifier *v = *vp;
	if (v == NULL)
		return;
	if (v->server)
		SPF_server_free(v->server);
	free(v);
	*vp = NULL;
}

/* Fill the identity of r; NULL when it can be checked, else why not. */
static const char *identity(struct spf_result *r, const char *helo, const char *mail_from)
{
	const char *id = *mail_from ? mail_from : helo, *dom = helo;
	r->helo_identity = *mail_from == '\0';
	if (!str_copy(r->sender, id, sizeof(r->sender)))
		return "identity too long";
	for (char *p = r->sender; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	if (!r->helo_identity) {
		if ((dom = strrchr(mail_from, '@')) == NULL)
			return "no domain in MAIL FROM";
		for (const char *p = mail_from; p < dom; p++)
			if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
				return (unsigned char)*p >= 0x80 ? "SMTPUTF8 address not checked"
								 : "invalid local-part";
		dom++;
	}
	str_copy(r->domain, r->sender + (dom - id), sizeof(r->domain));
	if (*dom == '\0')
		return r->helo_identity ? "no HELO name" : "no domain in MAIL FROM";
	if (*dom == '[')
		return "address literal, no domain to check";
	for (const char *p = dom; *p; p++)
		if ((unsigned char)*p >= 0x80)
			return "internationalized domain not checked";
	return domain_ok(dom, true) ? NULL : "not a valid domain name";
}

static enum auth_res map_result(SPF_result_t res)
{
	static const enum auth_res map[] = {
		[SPF_RESULT_PASS] = AR_PASS,	       [SPF_RESULT_FAIL] = AR_FAIL,
		[SPF_RESULT_SOFTFAIL] = AR_SOFTFAIL,   [SPF_RESULT_NEUTRAL] = AR_NEUTRAL,
		[SPF_RESULT_NONE] = AR_NONE,	       [SPF_RESULT_TEMPERROR] = AR_TEMPERROR,
		[SPF_RESULT_PERMERROR] = AR_PERMERROR, [SPF_RESULT_INVALID] = AR_PERMERROR,
	};
	return (unsigned)res < ARRAY_SIZE(map) ? map[res] : AR_PERMERROR;
}

/* The first error libspf2 recorded; *other: one with a code other than
 * "not an SPF record" (a record that does not compile). */
static const char *first_error(SPF_response_t *rs, bool *other)
{
	const char *msg = NULL;
	*other = false;
	for (int i = 0; rs && i < SPF_response_messages(rs); i++) {
		SPF_error_t *e = SPF_response_message(rs, i);
		if (e == NULL || !SPF_error_errorp(e))
			continue;
		if (msg == NULL)
			msg = SPF_error_message(e);
		*other = *other || SPF_error_code(e) != SPF_E_NOT_SPF;
	}
	return msg;
}

static void judge(struct spf_result *r, const struct check *st, const char *rec_dom)
{
	bool other;
	const char *msg = first_error(st->rs, &other);
	SPF_result_t sr = st->rs ? SPF_response_result(st->rs) : SPF_RESULT_INVALID;
	if (st->crash[0] || st->over) {
		r->res = AR_PERMERROR;
		msg = st->crash[0] ? st->crash : st->over;
	} else if (st->temp[0]) {
		r->res = AR_TEMPERROR;
		msg = st->temp;
	} else if (sr == SPF_RESULT_INVALID) {
		/* libspf2 left it undecided: the record lookup failed. */
		r->res = st->err == SPF_E_DNS_ERROR ? AR_TEMPERROR
		       : st->err == SPF_E_NOT_SPF && !other ? AR_NONE : AR_PERMERROR;
	} else {
		r->res = map_result(sr);
		const char *exp = SPF_response_get_explanation(st->rs);
		const char *hc = SPF_response_get_header_comment(st->rs);
		size_t n = strlen(rec_dom);
		if (hc && strncmp(hc, rec_dom, n) == 0 && strncmp(hc + n, ": ", 2) == 0)
			hc += n + 2; /* "rec_dom: domain of ... designates ..." */
		if (r->res == AR_FAIL && exp && *exp)
			msg = exp;
		else if (r->res != AR_PERMERROR && r->res != AR_TEMPERROR && (r->res != AR_NONE || !msg))
			msg = hc;
	}
	set_reason(r, msg ? msg : SPF_strerror(st->err));
}

/* libspf2 passes every 127/8 and ::1 client without reading the record
 * ("localhost is always allowed", SPF_REASON_LOCALHOST, checked at the top
 * of SPF_request_query_mailfrom).  RFC 7208 has no such rule: a local
 * relay would give DMARC credit to anything it forwards, and the tests
 * play senders from 127.0.0.x.  This definition takes the place of the
 * library's (libspf2 calls it through its PLT; linking the static
 * library instead would fail on the duplicate), so a loopback client is
 * checked like any other. */
int SPF_request_is_loopback(SPF_request_t *sr)
{
	(void)sr;
	return 0;
}

void spf_verify(struct spf_verifier *v, const char *ip, const char *helo, const char *mail_from,
		struct spf_result *r)
{
	memset(r, 0, sizeof(*r));
	r->res = AR_NONE;
	ip = ip ? ip : "";
	helo = helo ? helo : "";
	mail_from = mail_from ? mail_from : "";
	struct in_addr a4;
	struct in6_addr a6;
	bool v4 = inet_pton(AF_INET, ip, &a4) == 1;
	const char *why = identity(r, helo, mail_from);
	if (why == NULL && !v4 && inet_pton(AF_INET6, ip, &a6) != 1)
		why = "invalid client address";
	if (why == NULL && !v4 && IN6_IS_ADDR_V4MAPPED(&a6)) {
		memcpy(&a4, &a6.s6_addr[12], 4);
		v4 = true;
	}
	if (why) {
		set_reason(r, why);
		return;
	}
	SPF_request_t *rq = SPF_request_new(v->server);
	if (rq == NULL)
		log_fatalx(NULL, "spf: out of memory");
	/* %{h} wants some HELO name: a printable one as given. */
	bool helo_ok = *helo && strlen(helo) <= 255;
	for (const char *p = helo; *p; p++)
		helo_ok = helo_ok && (unsigned char)*p > 0x20 && (unsigned char)*p < 0x7f;
	if ((v4 ? SPF_request_set_ipv4(rq, a4) : SPF_request_set_ipv6(rq, a6)) ||
	    SPF_request_set_helo_dom(rq, helo_ok ? helo : "unknown") ||
	    /* "" checks postmaster@HELO (section 2.4) */
	    SPF_request_set_env_from(rq, r->helo_identity ? "" : mail_from))
		log_fatalx(NULL, "spf: out of memory");
	struct check *st = &tls;
	memset(st, 0, sizeof(*st));
	st->v = v;
	st->req = rq;
	/* RFC 7208 4.6.4: at least 20 seconds are allowed, but a session
	 * must not wait on a slow zone for much more than a few of our DNS
	 * timeouts (the client's MAIL timeout is 5 minutes). */
	int64_t limit = SPF_MAX_TIMEOUTS * dns_timeout(v->dns);
	st->deadline = clock_mono_ms() + (limit < SPF_MAX_TIME_MS ? limit : SPF_MAX_TIME_MS);
	cur = st;
	if (setjmp(st->jb) == 0)
		st->err = SPF_request_query_mailfrom(rq, &st->rs);
	else
		st->rs = NULL; /* in an unknown state: leaked */
	cur = NULL;
	judge(r, st, v->server->rec_dom);
	r->lookups = st->terms;
	r->void_lookups = st->voids;
	free(st->exp_txt);
	if (st->rs)
		SPF_response_free(st->rs);
	SPF_request_free(rq);
}
