/*
 * tokens.c - the tokens of a message for the Bayesian classifier
 * (bayes.c), after SpamAssassin's Bayes tokenizer.
 *
 * Four sources, in this order (the cap keeps the first tokens):
 *
 *  - headers: a fixed list of the fields that say something about the
 *    sender and the mailer (header_specs below), each token prefixed by
 *    "H*Name:".  Only listed fields are read, so what the gateway adds
 *    after classification (Received, Return-Path, Authentication-Results,
 *    X-Spam-*, X-RBL-Status) never feeds the classifier: the message as
 *    learned from the store and as classified at the end of DATA give
 *    the same tokens.  Top-level header only.
 *  - URIs (msgview_uris): "U:host" and "U:" + the registered-domain-ish
 *    last two labels (three under a ccTLD's co./com./ac. ...).
 *  - body: the rendered body paragraphs (the Subject first), as words.
 *  - markup: "T:tag" and "T:tag:attribute" of the HTML tags of the
 *    decoded text parts (names only, never values), after the words so
 *    that a long HTML message keeps its words under the cap.
 *
 * A word is a run of letters, digits, '_', '$', '!' and octets of 0x80
 * and more (UTF-8 is kept as bytes, U+00A0 is a blank), with single
 * '.', ',', '-' or '\'' inside it ("e-mail", "don't", "$25,000", "x.com"),
 * ASCII lower-cased.  Words of 3 to 15 octets are tokens; longer ones
 * become "sk:" and their first 7 octets (SpamBayes' skip tokens: a long
 * word says little beyond its start); shorter ones are dropped.
 *
 * Tokens are hashed to 64 bits (FNV-1a, view_hash), deduplicated, the
 * first BAYES_TOKENS_MAX kept, and sorted as signed integers: the order
 * of SQLite's INTEGER PRIMARY KEY, so lookups walk the table in order.
 * The work is linear in the text, which msgview caps (VIEW_TEXT_MAX).
 */
#include "rules/rules-private.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define WORD_MIN 3
#define WORD_MAX 15
#define SKIP_PREFIX 7
#define VALUE_MAX 64              /* whole-value tokens (X-Mailer, addresses, hosts) */
#define TOKEN_BUF 160             /* prefix + token; longer ones are cut */
#define SET_SLOTS 4096            /* > 2 * BAYES_TOKENS_MAX, a power of two */

/* ------------------------------------------------------------ emitting */

struct tok_ctx {
	bayes_token_fn *fn;
	void *arg;
	bool stop;                /* fn said enough */
	char buf[TOKEN_BUF];
};

static void emit(struct tok_ctx *c, const char *prefix, const char *s, size_t n)
{
	if (c->stop)
		return;
	size_t pl = strlen(prefix);
	if (pl + n > sizeof(c->buf))
		n = sizeof(c->buf) - pl;
	memcpy(c->buf, prefix, pl);
	memcpy(c->buf + pl, s, n);
	if (!c->fn(c->buf, pl + n, c->arg))
		c->stop = true;
}

/* s lower-cased (ASCII) and cut at VALUE_MAX, as one token. */
static void emit_value(struct tok_ctx *c, const char *prefix, const char *s, size_t n)
{
	char v[VALUE_MAX];
	if (n > sizeof(v))
		n = sizeof(v);
	for (size_t i = 0; i < n; i++)
		v[i] = (s[i] >= 'A' && s[i] <= 'Z') ? (char)(s[i] | 0x20) : s[i];
	emit(c, prefix, v, n);
}

static bool word_core(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       ch == '_' || ch == '$' || ch == '!' || ch >= 0x80;
}

static bool word_joiner(unsigned char ch)
{
	return ch == '.' || ch == ',' || ch == '-' || ch == '\'';
}

/* U+00A0 (no-break space) separates words like a blank. */
static bool nbsp_at(const unsigned char *p, size_t i, size_t n)
{
	return p[i] == 0xc2 && i + 1 < n && p[i + 1] == 0xa0;
}

static void emit_word(struct tok_ctx *c, const char *prefix, const char *w, size_t n)
{
	if (n < WORD_MIN)
		return;
	char low[WORD_MAX + 3];
	size_t k = n > WORD_MAX ? SKIP_PREFIX : n, off = 0;
	if (n > WORD_MAX) {
		memcpy(low, "sk:", 3);
		off = 3;
	}
	for (size_t i = 0; i < k; i++)
		low[off + i] = (w[i] >= 'A' && w[i] <= 'Z') ? (char)(w[i] | 0x20) : w[i];
	emit(c, prefix, low, off + k);
}

/* The words of [s, s + n). */
static void emit_words(struct tok_ctx *c, const char *prefix, const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;
	while (i < n && !c->stop) {
		while (i < n && (!word_core(p[i]) || nbsp_at(p, i, n)))
			i++;
		size_t start = i;
		while (i < n && !nbsp_at(p, i, n) &&
		       (word_core(p[i]) ||
			(word_joiner(p[i]) && i + 1 < n && word_core(p[i + 1]) && !nbsp_at(p, i + 1, n))))
			i++;
		if (i > start)
			emit_word(c, prefix, s + start, i - start);
	}
}

/* ------------------------------------------------------------ domains */

static bool all_digits_dots(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || s[i] == '.'))
			return false;
	return true;
}

/* The registered-domain-ish tail of host: the last two labels, or three
 * when the top-level domain has two letters and the second level is one
 * of the usual generic ones (example.co.uk, example.com.au).  The whole
 * host for IP addresses and hosts of two labels or fewer. */
static size_t reg_domain(const char *h, size_t n)
{
	static const char *const sld[] = { "co", "com", "net", "org", "gov", "edu", "ac", "or",
					   "ne", "go", "gob", "mil", "nom", "ltd", "plc", NULL };
	if (n == 0 || h[0] == '[' || all_digits_dots(h, n))
		return 0;
	size_t dots[3], nd = 0;
	for (size_t i = n; i-- > 0 && nd < 3;)
		if (h[i] == '.')
			dots[nd++] = i;
	if (nd < 2)
		return 0;
	size_t tld = n - dots[0] - 1, second = dots[0] - dots[1] - 1;
	if (tld == 2 && nd == 3) {
		for (const char *const *s = sld; *s; s++)
			if (strlen(*s) == second && strncasecmp(h + dots[1] + 1, *s, second) == 0)
				return n - dots[2] - 1;
	} else if (tld == 2 && nd == 2) {
		for (const char *const *s = sld; *s; s++)
			if (strlen(*s) == second && strncasecmp(h + dots[1] + 1, *s, second) == 0)
				return 0; /* example.co.uk itself */
	}
	return n - dots[1] - 1;
}

/* "D:domain" and "D:" + its registered part (when shorter). */
static void emit_domain(struct tok_ctx *c, const char *prefix, const char *d, size_t n)
{
	while (n && d[n - 1] == '.')
		n--;
	if (n == 0)
		return;
	char p[48];
	size_t pl = strlen(prefix);
	if (pl > sizeof(p) - 3)
		pl = sizeof(p) - 3;
	memcpy(p, prefix, pl);
	memcpy(p + pl, "D:", 3);
	emit_value(c, p, d, n);
	size_t r = reg_domain(d, n);
	if (r && r < n)
		emit_value(c, p, d + n - r, r);
}

/* ------------------------------------------------------------ headers */

enum hkind {
	HK_WORDS,                 /* the value's words */
	HK_ADDR,                  /* words, and the first address whole and its domain */
	HK_MSGID,                 /* the domain of the (first) message id only */
	HK_CTYPE,                 /* media type, charset, the boundary's shape */
	HK_VALUE,                 /* words, and the whole value (mailers) */
	HK_PRESENT,               /* that it is there (noisy values) */
	HK_DKIM,                  /* the d= domain of the signature */
};

static const struct {
	const char *name;
	enum hkind kind;
} header_specs[] = {
	{ "From", HK_ADDR },
	{ "Sender", HK_ADDR },
	{ "Reply-To", HK_ADDR },
	{ "To", HK_ADDR },
	{ "Cc", HK_ADDR },
	{ "Subject", HK_WORDS },
	{ "Message-ID", HK_MSGID },
	{ "In-Reply-To", HK_MSGID },
	{ "References", HK_MSGID },
	{ "Content-Type", HK_CTYPE },
	{ "Content-Transfer-Encoding", HK_VALUE },
	{ "MIME-Version", HK_VALUE },
	{ "X-Mailer", HK_VALUE },
	{ "User-Agent", HK_VALUE },
	{ "X-Newsreader", HK_VALUE },
	{ "X-MimeOLE", HK_VALUE },
	{ "X-MSMail-Priority", HK_VALUE },
	{ "X-Priority", HK_VALUE },
	{ "Importance", HK_VALUE },
	{ "Precedence", HK_VALUE },
	{ "Organization", HK_WORDS },
	{ "List-Id", HK_WORDS },
	{ "Mailing-List", HK_WORDS },
	{ "X-Mailing-List", HK_WORDS },
	{ "X-BeenThere", HK_WORDS },
	{ "List-Unsubscribe", HK_PRESENT },
	{ "List-Unsubscribe-Post", HK_PRESENT },
	{ "List-Subscribe", HK_PRESENT },
	{ "List-Post", HK_PRESENT },
	{ "List-Help", HK_PRESENT },
	{ "List-Archive", HK_PRESENT },
	{ "List-Owner", HK_PRESENT },
	{ "DKIM-Signature", HK_DKIM },
};

static bool is_blank(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

/* The domain of the first <local@domain> of a message id list. */
static void msgid_tokens(struct tok_ctx *c, const char *prefix, const char *v)
{
	const char *at = strchr(v, '@');
	if (at == NULL) {
		emit(c, prefix, "noat", 4); /* ids without a domain are a mailer's mark */
		return;
	}
	size_t n = strcspn(at + 1, "> \t\n\r;,");
	emit_domain(c, prefix, at + 1, n);
}

/* A boundary's shape: letters kept (lower-cased), runs of letters and
 * digits that hold a digit as '#' ("----=_NextPart_000_0012_01C2" is
 * "----=_nextpart_#_#_#"): mailers have fingerprints, the random part
 * would only fill the database with tokens seen once. */
static void boundary_shape(struct tok_ctx *c, const char *prefix, const char *b, size_t n)
{
	char s[VALUE_MAX];
	size_t k = 0, i = 0;
	while (i < n && k < sizeof(s)) {
		size_t j = i;
		bool digit = false;
		for (; j < n; j++) {
			char lc = (char)(b[j] | 0x20);
			if (b[j] >= '0' && b[j] <= '9')
				digit = true;
			else if (lc < 'a' || lc > 'z')
				break;
		}
		if (j == i) {
			s[k++] = b[i++];
		} else if (digit) {
			s[k++] = '#';
		} else {
			for (size_t m = i; m < j && k < sizeof(s); m++)
				s[k++] = (char)(b[m] | 0x20);
		}
		i = j > i ? j : i;
	}
	emit(c, prefix, s, k);
}

static void ctype_tokens(struct tok_ctx *c, const char *prefix, const char *v)
{
	size_t n = strcspn(v, ";");
	while (n && is_blank(v[n - 1]))
		n--;
	if (n)
		emit_value(c, prefix, v, n);
	for (const char *p = strchr(v, ';'); p && !c->stop; p = strchr(p, ';')) {
		p++;
		while (is_blank(*p))
			p++;
		size_t nl = strcspn(p, "=; \t");
		const char *val = p + nl;
		while (is_blank(*val))
			val++;
		if (*val != '=')
			continue;
		val++;
		while (is_blank(*val))
			val++;
		bool q = *val == '"';
		val += q;
		size_t vl = q ? strcspn(val, "\"") : strcspn(val, "; \t");
		char pp[64];
		if (nl == 7 && strncasecmp(p, "charset", 7) == 0) {
			snprintf(pp, sizeof(pp), "%scharset=", prefix);
			emit_value(c, pp, val, vl);
		} else if (nl == 8 && strncasecmp(p, "boundary", 8) == 0) {
			snprintf(pp, sizeof(pp), "%sboundary=", prefix);
			boundary_shape(c, pp, val, vl);
		} else if (nl > 0) {
			snprintf(pp, sizeof(pp), "%sparam=", prefix);
			emit_value(c, pp, p, nl);
		}
	}
}

static void dkim_tokens(struct tok_ctx *c, const char *prefix, const char *v)
{
	/* the d= tag: at the start or after ';' */
	for (const char *p = v; *p; p++) {
		if (p != v && p[-1] != ';' && !is_blank(p[-1]))
			continue;
		const char *q = p;
		while (is_blank(*q))
			q++;
		if (q[0] == 'd' && q[1] == '=') {
			q += 2;
			while (is_blank(*q))
				q++;
			emit_domain(c, prefix, q, strcspn(q, "; \t\r\n"));
			return;
		}
	}
}

static void header_tokens(struct tok_ctx *c, struct msgview *mv)
{
	for (size_t i = 0; i < ARRAY_SIZE(header_specs) && !c->stop; i++) {
		bool present = false;
		const char *name = header_specs[i].name;
		const char *v = msgview_header(mv, name, HM_NONE, &present);
		if (!present)
			continue;
		char prefix[40];
		snprintf(prefix, sizeof(prefix), "H*%s:", name);
		size_t vn = strlen(v);
		switch (header_specs[i].kind) {
		case HK_ADDR: {
			emit_words(c, prefix, v, vn);
			const char *a = msgview_header(mv, name, HM_ADDR, NULL);
			const char *at = strrchr(a, '@');
			if (*a) {
				char pp[64];
				snprintf(pp, sizeof(pp), "%s=", prefix);
				emit_value(c, pp, a, strlen(a));
			}
			if (at)
				emit_domain(c, prefix, at + 1, strlen(at + 1));
			break;
		}
		case HK_WORDS:
			emit_words(c, prefix, v, vn);
			break;
		case HK_MSGID:
			msgid_tokens(c, prefix, v);
			break;
		case HK_CTYPE:
			ctype_tokens(c, prefix, v);
			break;
		case HK_VALUE: {
			emit_words(c, prefix, v, vn);
			size_t first = strcspn(v, "\n"); /* of repeated fields, the first */
			while (first && is_blank(v[first - 1]))
				first--;
			char pp[64];
			snprintf(pp, sizeof(pp), "%s=", prefix);
			emit_value(c, pp, v, first);
			break;
		}
		case HK_PRESENT:
			emit(c, prefix, "present", 7);
			break;
		case HK_DKIM:
			dkim_tokens(c, prefix, v);
			break;
		}
	}
}

/* ------------------------------------------------------------ URIs */

static void uri_tokens(struct tok_ctx *c, struct msgview *mv)
{
	size_t n;
	const char *const *v = msgview_uris(mv, &n);
	for (size_t i = 0; i < n && !c->stop; i++) {
		const char *u = v[i], *h;
		if (strncasecmp(u, "mailto:", 7) == 0) {
			const char *at = strchr(u + 7, '@');
			if (at == NULL)
				continue;
			h = at + 1;
		} else {
			const char *s = strstr(u, "://");
			if (s == NULL)
				continue;
			h = s + 3;
		}
		size_t hn = strcspn(h, "/?#\\ \t");
		/* userinfo@ and :port */
		const char *at = memchr(h, '@', hn);
		if (at) {
			hn -= (size_t)(at + 1 - h);
			h = at + 1;
		}
		if (hn && h[0] != '[') {
			const char *colon = memchr(h, ':', hn);
			if (colon)
				hn = (size_t)(colon - h);
		} else if (hn) {
			const char *close = memchr(h, ']', hn);
			if (close)
				hn = (size_t)(close - h) + 1;
		}
		while (hn && h[hn - 1] == '.')
			hn--;
		if (hn == 0)
			continue;
		emit_value(c, "U:", h, hn);
		size_t r = reg_domain(h, hn);
		if (r && r < hn)
			emit_value(c, "U:", h + hn - r, r);
	}
}

/* ------------------------------------------------------------ body */

static void body_tokens(struct tok_ctx *c, struct msgview *mv)
{
	size_t n;
	const char *const *v = msgview_body(mv, &n);
	for (size_t i = 0; i < n && !c->stop; i++)
		emit_words(c, "", v[i], strlen(v[i]));
}

/* HTML markup: "T:tag" and "T:tag:attribute" of each tag in the decoded
 * (not rendered) text parts: which markup a mailer writes ("font:color",
 * "table:bgcolor") is as telling as its words. */
static bool is_alpha(char ch)
{
	return (ch | 0x20) >= 'a' && (ch | 0x20) <= 'z';
}

static void markup_tokens(struct tok_ctx *c, struct msgview *mv)
{
	size_t n;
	const char *const *v = msgview_rawbody(mv, &n);
	for (size_t i = 0; i < n && !c->stop; i++) {
		for (const char *p = strchr(v[i], '<'); p && !c->stop; p = strchr(p, '<')) {
			p++;
			size_t tn = 0;
			while (tn < 12 && (is_alpha(p[tn]) || (tn && p[tn] >= '0' && p[tn] <= '9')))
				tn++;
			if (tn == 0 || tn == 12)
				continue;
			char tag[16];
			for (size_t k = 0; k < tn; k++)
				tag[k] = (char)(p[k] | 0x20);
			emit(c, "T:", tag, tn);
			/* attribute names up to '>' */
			const char *q = p + tn;
			while (*q && *q != '>' && *q != '<' && !c->stop) {
				while (*q && *q != '>' && *q != '<' && !is_alpha(*q))
					q++;
				size_t an = 0;
				while (an < 16 && (is_alpha(q[an]) || q[an] == '-'))
					an++;
				if (an == 0)
					break;
				const char *after = q + an;
				while (*after == ' ')
					after++;
				if (*after == '=' && an < 16) {
					char tok[40];
					size_t k = 0;
					memcpy(tok, tag, tn);
					k = tn;
					tok[k++] = ':';
					for (size_t j = 0; j < an; j++)
						tok[k++] = (char)(q[j] | 0x20);
					emit(c, "T:", tok, k);
				}
				q = after;
				if (*q != '=')
					continue; /* a name alone ("<td nowrap>") */
				q++;
				while (*q == ' ')
					q++;
				if (*q == '"' || *q == '\'') {
					const char *e = strchr(q + 1, *q);
					q = e ? e + 1 : q + strlen(q);
				} else {
					while (*q && *q != '>' && *q != '<' && *q != ' ' && *q != '\t')
						q++;
				}
			}
			p = q;
		}
	}
}

void bayes_tokenize_each(struct msgview *mv, bayes_token_fn *fn, void *arg)
{
	struct tok_ctx c = { .fn = fn, .arg = arg };
	header_tokens(&c, mv);
	uri_tokens(&c, mv);
	body_tokens(&c, mv);
	markup_tokens(&c, mv);
}

/* ------------------------------------------------------------ the set */

struct collect {
	uint64_t *slots;          /* 0: free */
	int64_t *v;
	size_t n;
};

static bool collect_one(const char *tok, size_t len, void *arg)
{
	struct collect *col = arg;
	uint64_t h = view_hash(tok, len);
	if (h == 0)
		h = 1; /* 0 marks a free slot */
	size_t s = (size_t)(h ^ (h >> 29)) & (SET_SLOTS - 1);
	while (col->slots[s] != 0) {
		if (col->slots[s] == h)
			return true;
		s = (s + 1) & (SET_SLOTS - 1);
	}
	col->slots[s] = h;
	col->v[col->n++] = (int64_t)h;
	return col->n < BAYES_TOKENS_MAX;
}

static int i64_cmp(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

struct bayes_tokens *bayes_tokenize(struct msgview *mv)
{
	struct collect col;
	col.slots = xcalloc(SET_SLOTS, sizeof(*col.slots));
	col.v = xmalloc(BAYES_TOKENS_MAX * sizeof(*col.v));
	col.n = 0;
	bayes_tokenize_each(mv, collect_one, &col);
	free(col.slots);
	qsort(col.v, col.n, sizeof(*col.v), i64_cmp);
	struct bayes_tokens *t = xcalloc(1, sizeof(*t));
	t->n = col.n;
	if (col.n) {
		t->h = xrealloc(col.v, col.n * sizeof(*col.v));
	} else {
		free(col.v);
		t->h = NULL;
	}
	return t;
}

struct bayes_tokens *bayes_tokens_from(const int64_t *h, size_t n)
{
	struct bayes_tokens *t = xcalloc(1, sizeof(*t));
	if (n > BAYES_TOKENS_MAX)
		n = BAYES_TOKENS_MAX;
	t->h = n ? xmalloc(n * sizeof(*t->h)) : NULL;
	if (n)
		memcpy(t->h, h, n * sizeof(*t->h));
	qsort(t->h, n, sizeof(*t->h), i64_cmp);
	/* deduplicate */
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (k == 0 || t->h[k - 1] != t->h[i])
			t->h[k++] = t->h[i];
	t->n = k;
	return t;
}

void bayes_tokens_free(struct bayes_tokens **tp)
{
	if (*tp == NULL)
		return;
	free((*tp)->h);
	free(*tp);
	*tp = NULL;
}

size_t bayes_tokens_count(const struct bayes_tokens *t)
{
	return t ? t->n : 0;
}
