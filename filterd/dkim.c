/*
 * dkim.c - DKIM verification (RFC 6376) with libopendkim, fed while the
 * message streams in.
 *
 * One DKIM_LIB per process, one DKIM handle per message.  Header fields
 * and body arrive with LF line ends; the library gets CRLF, every LF
 * turned into CR LF (the inverse of the DATA decoder).  We do not use
 * DKIM_LIBFLAGS_FIXCRLF: in 2.11 it fixes the body only, not header
 * folds, and it also turns bare CRs into CRLF.  A body without a final
 * line end gets one (sections 3.4.3, 3.4.4).
 *
 * Signatures are processed at the end of the message (DELAYSIGPROC).  At
 * the end of the header section we start one TXT lookup per signature's
 * selector._domainkey.domain (section 3.6.2.1), so the key lookup
 * callback inside dkim_eom() finds a query that ran while the body came
 * in.  All the key lookups of a message share one deadline, one DNS
 * timeout after the first key is needed.
 *
 * Every signature is judged (DMARC wants any aligned pass), at most
 * DKIMV_MAX_SIGS; results in RFC 8601 section 2.7.1 terms: signature and
 * key errors of section 6.1.1-6.1.2 (syntax, expired x=, no key, revoked)
 * are permerror, a temporary key lookup failure temperror, a body hash or
 * signature mismatch (6.1.3) fail.  RFC 8301: RSA keys under 1024 bits
 * and rsa-sha1 are not accepted (permerror).
 */
#include "filterd/filterd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <opendkim/dkim.h>

#define DKIMV_MAX_SIGS 16       /* DKIM-Signature fields judged per message */
#define DKIMV_MAX_FIELDS 1000   /* header fields given to the library */
#define DKIMV_SIG_MAX 16384     /* longest DKIM-Signature field we take */
#define DKIMV_CLOCK_DRIFT 300   /* seconds of tolerance for t= and x= */
#define DKIMV_MIN_KEYBITS 1024  /* RFC 8301 section 3.2 */
#define DKIMV_ACCEPT_SHA1 false /* RFC 8301 section 3.1 */

#define ALNUM "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
#define LDH ALNUM "-_"

static DKIM_LIB *lib;

enum key_state { K_PENDING, K_FOUND, K_NOKEY, K_TEMP, K_BAD };
struct keyq {
	char name[256];          /* selector._domainkey.domain */
	struct dns_query *q;     /* started at the end of the header */
	enum key_state state;
	char *rec;               /* K_FOUND: the key record */
	char why[96];            /* otherwise: the reason */
};

struct dkimv {
	DKIM *d;
	struct dns *dns;
	char qid[64];
	bool eoh, eom, nosig, unusable;
	int64_t key_deadline;    /* every key lookup ends by then (0: not set) */
	size_t nfields, nsigs, dropped;
	uint64_t bodylen;
	char last;               /* the last body byte */
	struct keyq keys[DKIMV_MAX_SIGS];
	size_t nkeys;
};

/* selector._domainkey.domain of sig: LDH and underscore labels only. */
static bool key_name(DKIM_SIGINFO *sig, char *out, size_t size)
{
	const char *s = (const char *)dkim_sig_getselector(sig);
	const char *d = (const char *)dkim_sig_getdomain(sig);
	if (s == NULL || d == NULL || !*s || !*d)
		return false;
	int n = snprintf(out, size, "%s._domainkey.%s", s, d);
	if (n < 0 || (size_t)n >= size)
		return false;
	if (out[n - 1] == '.')
		out[--n] = '\0';
	if (n > 253)
		return false;
	for (const char *p = out;;) {
		size_t l = strspn(p, LDH);
		if (l == 0 || l > 63)
			return false;
		p += l;
		if (*p == '\0')
			return true;
		if (*p++ != '.')
			return false;
	}
}

static struct keyq *key_find(struct dkimv *v, const char *name)
{
	for (size_t i = 0; i < v->nkeys; i++)
		if (str_ieq(v->keys[i].name, name))
			return &v->keys[i];
	return NULL;
}

static struct keyq *key_start(struct dkimv *v, const char *name)
{
	struct keyq *k = key_find(v, name);
	if (k || v->nkeys == ARRAY_SIZE(v->keys))
		return k;
	k = &v->keys[v->nkeys++];
	str_copy(k->name, name, sizeof(k->name));
	k->q = dns_start(v->dns, name, DNS_T_TXT);
	return k;
}

/* The answer for k, waiting at most our DNS timeout. */
static void key_collect(struct dkimv *v, struct keyq *k)
{
	struct dns_answer a;
	if (k->state != K_PENDING)
		return;
	/* One deadline for all the keys of a message: the lookups started
	 * at the end of the header run in parallel, so a message waits one
	 * DNS timeout at most, however many signatures it has. */
	if (v->key_deadline == 0)
		v->key_deadline = clock_mono_ms() + dns_timeout(v->dns);
	dns_wait(&k->q, v->key_deadline, &a);
	if (a.outcome == DNS_PASS && a.n > 0) {
		/* Section 3.6.2.2: of several records, we may choose one. */
		const char *rec = a.rr[0];
		for (size_t i = 0; i < a.n; i++)
			if (strncmp(a.rr[i], "v=DKIM1", 7) == 0) {
				rec = a.rr[i];
				break;
			}
		k->state = K_FOUND;
		k->rec = xstrdup(rec);
	} else if (a.outcome == DNS_TEMPFAIL) {
		k->state = K_TEMP;
		snprintf(k->why, sizeof(k->why), "key lookup: %s", a.error ? a.error : "temporary error");
	} else {
		k->state = K_NOKEY;
		str_copy(k->why, "no key", sizeof(k->why));
	}
	dns_answer_free(&a);
}

static DKIM_CBSTAT key_lookup(DKIM *d, DKIM_SIGINFO *sig, u_char *buf, size_t buflen)
{
	struct dkimv *v = dkim_get_user_context(d);
	char name[256];
	struct keyq *k;
	if (v == NULL || !key_name(sig, name, sizeof(name)) || (k = key_start(v, name)) == NULL)
		return DKIM_CBSTAT_NOTFOUND;
	key_collect(v, k);
	if (k->state == K_TEMP)
		return DKIM_CBSTAT_TRYAGAIN;
	if (k->state != K_FOUND)
		return DKIM_CBSTAT_NOTFOUND;
	size_t len = strlen(k->rec);
	if (len >= buflen) { /* 1025 octets in 2.11: RSA up to 4096 bits fits */
		k->state = K_BAD;
		str_copy(k->why, "key record too long", sizeof(k->why));
		return DKIM_CBSTAT_ERROR;
	}
	memcpy(buf, k->rec, len + 1);
	return DKIM_CBSTAT_CONTINUE;
}

int dkimv_init(char **error_r)
{
	if (lib) /* once */
		return 0;
	if ((lib = dkim_init(NULL, NULL)) == NULL) {
		*error_r = xstrdup("dkim: dkim_init failed");
		return -1;
	}
	/* Signatures with syntax errors get a handle (our permerror); key
	 * lookups wait for dkim_eom(). */
	u_int flags = DKIM_LIBFLAGS_BADSIGHANDLES | DKIM_LIBFLAGS_DELAYSIGPROC;
	uint64_t drift = DKIMV_CLOCK_DRIFT;
	u_int minbits = DKIMV_MIN_KEYBITS;
	DKIM_STAT st = dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_FLAGS, &flags, sizeof(flags));
	if (st == DKIM_STAT_OK)
		st = dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_CLOCKDRIFT, &drift, sizeof(drift));
	if (st == DKIM_STAT_OK)
		st = dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_MINKEYBITS, &minbits, sizeof(minbits));
	if (st == DKIM_STAT_OK)
		st = dkim_set_key_lookup(lib, key_lookup);
	if (st != DKIM_STAT_OK) {
		dkim_close(lib);
		lib = NULL;
		*error_r = xstrdup("dkim: cannot set the library options");
		return -1;
	}
	return 0;
}

struct dkimv *dkimv_new(struct dns *dns, const char *qid)
{
	if (lib == NULL || dns == NULL)
		return NULL;
	struct dkimv *v = xcalloc(1, sizeof(*v));
	v->dns = dns;
	v->last = '\n';
	str_copy(v->qid, qid ? qid : "", sizeof(v->qid));
	DKIM_STAT st;
	if ((v->d = dkim_verify(lib, (const unsigned char *)v->qid, NULL, &st)) == NULL)
		log_warnx(v->qid, "dkim: dkim_verify: %s", dkim_getresultstr(st));
	else
		dkim_set_user_context(v->d, v);
	return v;
}

void dkimv_free(struct dkimv **vp)
{
	struct dkimv *v = *vp;
	if (v == NULL)
		return;
	for (size_t i = 0; i < v->nkeys; i++) {
		if (v->keys[i].q) {
			struct dns_answer a;
			dns_wait(&v->keys[i].q, 0, &a); /* cancels it */
			dns_answer_free(&a);
		}
		free(v->keys[i].rec);
	}
	if (v->d)
		dkim_free(v->d);
	free(v);
	*vp = NULL;
}

static bool is_sig_field(const char *f, size_t len)
{
	static const char name[] = "dkim-signature";
	size_t i = sizeof(name) - 1;
	if (len < i || strncasecmp(f, name, i) != 0)
		return false;
	while (i < len && (f[i] == ' ' || f[i] == '\t'))
		i++;
	return i < len && f[i] == ':';
}

void dkimv_header(struct dkimv *v, const char *field, size_t len)
{
	if (v == NULL || v->d == NULL || v->eoh)
		return;
	if (len && field[len - 1] == '\n') /* not ours to send, tolerated */
		len -= len > 1 && field[len - 2] == '\r' ? 2 : 1;
	if (len == 0 || v->nfields >= DKIMV_MAX_FIELDS)
		return;
	if (is_sig_field(field, len)) {
		if (v->nsigs >= DKIMV_MAX_SIGS || len > DKIMV_SIG_MAX) {
			v->dropped++;
			return;
		}
		v->nsigs++;
	}
	v->nfields++;
	u_char *crlf = xmalloc(2 * len);
	size_t o = 0;
	for (size_t i = 0; i < len; i++) {
		if (field[i] == '\n')
			crlf[o++] = '\r';
		crlf[o++] = (u_char)field[i];
	}
	(void)dkim_header(v->d, crlf, o);
	free(crlf);
}

void dkimv_eoh(struct dkimv *v)
{
	if (v == NULL || v->d == NULL || v->eoh)
		return;
	v->eoh = true;
	if (v->dropped)
		log_info(v->qid, "dkim: %zu DKIM-Signature fields not checked (over %d, or over %d octets)",
			 v->dropped, DKIMV_MAX_SIGS, DKIMV_SIG_MAX);
	DKIM_STAT st = dkim_eoh(v->d);
	DKIM_SIGINFO **sigs;
	int n;
	if (st == DKIM_STAT_NOSIG || v->nsigs == 0) {
		v->nosig = true;
	} else if (dkim_getsiglist(v->d, &sigs, &n) != DKIM_STAT_OK) {
		v->unusable = true; /* e.g. dkim_eoh(3): no sender header */
		log_info(v->qid, "dkim: message not verifiable: %s", dkim_getresultstr(st));
	} else {
		char name[256];
		for (int i = 0; i < n; i++)
			if (dkim_sig_geterror(sigs[i]) <= DKIM_SIGERROR_OK && key_name(sigs[i], name, sizeof(name)))
				key_start(v, name);
	}
}

void dkimv_body(struct dkimv *v, const char *p, size_t n)
{
	if (v == NULL || v->d == NULL || !v->eoh || v->eom || v->nosig || v->unusable || n == 0)
		return;
	u_char out[8192];
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		if (o + 2 > sizeof(out)) {
			(void)dkim_body(v->d, out, o);
			o = 0;
		}
		if (p[i] == '\n')
			out[o++] = '\r';
		out[o++] = (u_char)p[i];
	}
	if (o)
		(void)dkim_body(v->d, out, o);
	v->bodylen += n;
	v->last = p[n - 1];
}

/* Copy src into dst, characters outside ok as '?'. */
static void copy_safe(char *dst, size_t size, const char *src, const char *ok)
{
	size_t i = 0;
	for (; src && src[i] && i + 1 < size; i++)
		dst[i] = strchr(ok, src[i]) ? src[i] : '?';
	dst[i] = '\0';
}

static void set_res(struct dkim_sig_result *r, enum auth_res res, const char *reason)
{
	r->res = res;
	str_copy(r->reason, reason, sizeof(r->reason));
}

/* Judge one signature; false: skip it (not processed, no error). */
static bool judge(struct dkimv *v, DKIM_SIGINFO *sig, struct dkim_sig_result *r)
{
	static const struct {
		const char *name;
		dkim_alg_t alg;
	} algs[] = { { "rsa-sha1", DKIM_SIGN_RSASHA1 },
		     { "rsa-sha256", DKIM_SIGN_RSASHA256 },
		     { "ed25519-sha256", DKIM_SIGN_ED25519SHA256 } };
	unsigned flags = dkim_sig_getflags(sig);
	int err = dkim_sig_geterror(sig), bh = dkim_sig_getbh(sig);
	bool processed = flags & DKIM_SIGFLAG_PROCESSED;
	dkim_alg_t alg = DKIM_SIGN_UNKNOWN;
	char tmp[32];

	if (flags & DKIM_SIGFLAG_IGNORE)
		return false;
	copy_safe(r->domain, sizeof(r->domain), (const char *)dkim_sig_getdomain(sig), LDH ".");
	copy_safe(r->selector, sizeof(r->selector), (const char *)dkim_sig_getselector(sig), LDH ".");
	/* header.b: a unique prefix of b= (RFC 6008), 8 to 15 characters */
	size_t blen = sizeof(tmp);
	if (dkim_get_sigsubstring(v->d, sig, tmp, &blen) == DKIM_STAT_OK && blen < sizeof(r->b)) {
		tmp[blen] = '\0';
		copy_safe(r->b, sizeof(r->b), tmp, ALNUM "+/=");
	} else {
		const char *b = (const char *)dkim_sig_gettagvalue(sig, false, (u_char *)"b");
		copy_safe(r->b, sizeof(r->b), b, ALNUM "+/=");
		r->b[strcspn(r->b, "?")] = '\0';
	}
	/* a= as written: the library sets its algorithm only when processing */
	const char *a = (const char *)dkim_sig_gettagvalue(sig, false, (u_char *)"a");
	for (size_t i = 0; a && i < ARRAY_SIZE(algs); i++)
		if (str_ieq(a, algs[i].name)) {
			str_copy(r->algo, algs[i].name, sizeof(r->algo));
			alg = algs[i].alg;
		}
	if (dkim_sig_getkeysize(sig, &r->keybits) != DKIM_STAT_OK)
		r->keybits = 0;
	if (alg == DKIM_SIGN_ED25519SHA256 && processed && r->keybits == 0 && err <= DKIM_SIGERROR_OK)
		r->keybits = 256; /* RFC 8463; the library reports none */

	char name[256];
	struct keyq *k = key_name(sig, name, sizeof(name)) ? key_find(v, name) : NULL;

	bool passed = (flags & DKIM_SIGFLAG_PASSED) && bh == DKIM_SIGBH_MATCH;
	if (processed && passed && err <= DKIM_SIGERROR_OK) {
		if (alg == DKIM_SIGN_RSASHA1 && !DKIMV_ACCEPT_SHA1)
			set_res(r, AR_PERMERROR, "rsa-sha1 not accepted (RFC 8301)");
		else
			set_res(r, AR_PASS, "");
	} else if (k && k->state != K_PENDING && k->state != K_FOUND) {
		set_res(r, k->state == K_TEMP ? AR_TEMPERROR : AR_PERMERROR, k->why);
	} else if (err == DKIM_SIGERROR_KEYFAIL) {
		set_res(r, AR_TEMPERROR, "key lookup failed");
	} else if (err == DKIM_SIGERROR_NOKEY) {
		set_res(r, AR_PERMERROR, k ? "no key" : "invalid selector or domain");
	} else if (bh == DKIM_SIGBH_MISMATCH) {
		set_res(r, AR_FAIL, "body hash mismatch");
	} else if (err == DKIM_SIGERROR_TOOLARGE_L) {
		set_res(r, AR_FAIL, "l= exceeds the body length");
	} else if (err == DKIM_SIGERROR_BADSIG || (processed && err <= DKIM_SIGERROR_OK)) {
		set_res(r, AR_FAIL, "signature verification failed");
	} else if (err > DKIM_SIGERROR_OK) {
		const char *s = dkim_sig_geterrorstr(err);
		set_res(r, AR_PERMERROR, s ? s : "signature error");
	} else {
		return false;
	}
	return true;
}

void dkimv_eom(struct dkimv *v, struct dkim_results *r)
{
	memset(r, 0, sizeof(*r));
	if (v == NULL || v->d == NULL || v->eom)
		return;
	dkimv_eoh(v);
	v->eom = true;
	if (v->nosig)
		return;
	r->v = xcalloc(v->nsigs, sizeof(*r->v));
	if (v->unusable) {
		/* The library refused the header section: one permerror. */
		const char *why = dkim_geterror(v->d);
		snprintf(r->v[0].reason, sizeof(r->v[0].reason), "message not verifiable: %s",
			 why ? why : "header syntax");
		r->v[r->n++].res = AR_PERMERROR;
		return;
	}
	if (v->bodylen > 0 && v->last != '\n')
		(void)dkim_body(v->d, (u_char *)"\r\n", 2);
	DKIM_STAT st = dkim_eom(v->d, NULL);
	DKIM_SIGINFO **sigs;
	int n;
	if (dkim_getsiglist(v->d, &sigs, &n) != DKIM_STAT_OK)
		n = 0;
	for (int i = 0; i < n && r->n < v->nsigs; i++) {
		if (judge(v, sigs[i], &r->v[r->n]))
			r->n++;
		else
			log_debug(v->qid, "dkim: signature %d not processed (%s)", i, dkim_getresultstr(st));
	}
}

void dkim_results_free(struct dkim_results *r)
{
	free(r->v);
	memset(r, 0, sizeof(*r));
}
