/*
 * search.c - IMAP SEARCH programs (RFC 3501 section 6.4.4, RFC 7162
 * section 3.1.5 MODSEQ).
 *
 * search_parse() turns the parsed arguments of SEARCH into a tree of keys
 * (an implicit AND at the top and in every parenthesised group, NOT and OR
 * nodes); search_match() evaluates it against one message.  Keys that can
 * be answered from the index (flags, UID, sequence number, size, dates,
 * MODSEQ) are evaluated before the ones that need the parsed message
 * (header, body and text keys, SENT*), and the message is loaded at most
 * once per match, only when such a key is reached.
 */
#include "imapd/imap_parse.h"

#include "common/mime.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Recursion bound of NOT/OR/group nesting (the parser bounds the list
 * depth; a chain of NOTs is bounded here). */
#define SEARCH_MAX_DEPTH 64
/* The most decoded header or body text one key looks at. */
#define SEARCH_TEXT_MAX ((size_t)MIME_BODY_TEXT_MAX * 2)

enum skey {
	K_ALL,
	K_FLAG,      /* flag bit set (or not, when neg) */
	K_KEYWORD,   /* keyword present (or not, when neg) */
	K_NEW,
	K_OLD,
	K_RECENT,
	K_LARGER,
	K_SMALLER,
	K_BEFORE,
	K_ON,
	K_SINCE,
	K_SENTBEFORE,
	K_SENTON,
	K_SENTSINCE,
	K_HEADER,    /* s1 = field name, s2 = value */
	K_BODY,
	K_TEXT,
	K_UID,
	K_SEQ,
	K_MODSEQ,
	K_NOT,
	K_OR,
	K_AND,
};

struct snode {
	enum skey k;
	bool neg;
	int cost;               /* 0 index only, 1 needs the message */
	unsigned flag;
	uint64_t num;
	int64_t days;
	char *s1, *s2;
	size_t s2len;
	struct seqset set;
	struct snode **kids;
	size_t nkids;
};

struct search_prog {
	struct snode *root;
	bool needs_message, needs_body, needs_meta, uses_modseq;
};

struct pctx {
	const struct imap_arg *args;
	size_t n, i;
	uint32_t max_seq, max_uid;
	char *error;
	struct search_prog *prog;
};

static void node_free(struct snode *nd)
{
	if (!nd)
		return;
	for (size_t i = 0; i < nd->nkids; i++)
		node_free(nd->kids[i]);
	free(nd->kids);
	free(nd->s1);
	free(nd->s2);
	seqset_free(&nd->set);
	free(nd);
}

static struct snode *node_new(enum skey k)
{
	struct snode *nd = xcalloc(1, sizeof(*nd));
	nd->k = k;
	return nd;
}

static void node_add(struct snode *parent, struct snode *kid)
{
	parent->kids = xrealloc(parent->kids, (parent->nkids + 1) * sizeof(*parent->kids));
	parent->kids[parent->nkids++] = kid;
	if (kid->cost > parent->cost)
		parent->cost = kid->cost;
}

static void *perr(struct pctx *c, const char *msg, const char *what)
{
	if (!c->error)
		c->error = what ? xasprintf("%s: %s", msg, log_str(what)) : xstrdup(msg);
	return NULL;
}

static bool perr_b(struct pctx *c, const char *msg, const char *what)
{
	perr(c, msg, what);
	return false;
}

/* The next argument as an astring (atom, quoted or literal without NUL). */
static const char *next_astring(struct pctx *c, const char *key, size_t *len_r)
{
	if (c->i >= c->n)
		return perr(c, "Missing argument to", key);
	const struct imap_arg *a = &c->args[c->i];
	const char *s = imap_arg_astring(a);
	if (!s)
		return perr(c, "Invalid argument to", key);
	c->i++;
	if (len_r)
		*len_r = a->len;
	return s;
}

static bool parse_u64(const char *s, uint64_t max, uint64_t *n_r)
{
	uint64_t n = 0;
	if (!*s)
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return false;
		unsigned d = (unsigned)(*s - '0');
		if (n > (max - d) / 10)
			return false;
		n = n * 10 + d;
	}
	*n_r = n;
	return true;
}

static bool next_number(struct pctx *c, const char *key, uint64_t max, uint64_t *n_r)
{
	if (c->i >= c->n)
		return perr_b(c, "Missing number after", key);
	const char *s = imap_arg_atom(&c->args[c->i]);
	if (!s || !parse_u64(s, max, n_r))
		return perr_b(c, "Invalid number after", key);
	c->i++;
	return true;
}

static bool next_date(struct pctx *c, const char *key, int64_t *days_r)
{
	const char *s = next_astring(c, key, NULL);
	if (!s)
		return false;
	if (!imap_date_parse(s, days_r))
		return perr_b(c, "Invalid date", s);
	return true;
}

static struct snode *parse_key(struct pctx *c, unsigned depth);

/* Keys up to the end of args[0..n) as one AND node. */
static struct snode *parse_and(struct pctx *c, unsigned depth)
{
	if (c->i >= c->n)
		return perr(c, "Missing search key", NULL);
	struct snode *and = node_new(K_AND);
	while (c->i < c->n) {
		struct snode *kid = parse_key(c, depth);
		if (!kid) {
			node_free(and);
			return NULL;
		}
		node_add(and, kid);
	}
	/* cheap keys first: a stable sort by cost */
	for (size_t i = 1; i < and->nkids; i++) {
		struct snode *k = and->kids[i];
		size_t j = i;
		while (j > 0 && and->kids[j - 1]->cost > k->cost) {
			and->kids[j] = and->kids[j - 1];
			j--;
		}
		and->kids[j] = k;
	}
	return and;
}

struct keydef {
	const char *name;
	enum skey k;
	unsigned flag;
	bool neg;
};

static const struct keydef keydefs[] = {
	{ "ALL", K_ALL, 0, false },
	{ "ANSWERED", K_FLAG, SEARCH_ANSWERED, false },
	{ "DELETED", K_FLAG, SEARCH_DELETED, false },
	{ "DRAFT", K_FLAG, SEARCH_DRAFT, false },
	{ "FLAGGED", K_FLAG, SEARCH_FLAGGED, false },
	{ "SEEN", K_FLAG, SEARCH_SEEN, false },
	{ "UNANSWERED", K_FLAG, SEARCH_ANSWERED, true },
	{ "UNDELETED", K_FLAG, SEARCH_DELETED, true },
	{ "UNDRAFT", K_FLAG, SEARCH_DRAFT, true },
	{ "UNFLAGGED", K_FLAG, SEARCH_FLAGGED, true },
	{ "UNSEEN", K_FLAG, SEARCH_SEEN, true },
	{ "NEW", K_NEW, 0, false },
	{ "OLD", K_OLD, 0, false },
	{ "RECENT", K_RECENT, 0, false },
	{ "KEYWORD", K_KEYWORD, 0, false },
	{ "UNKEYWORD", K_KEYWORD, 0, true },
	{ "LARGER", K_LARGER, 0, false },
	{ "SMALLER", K_SMALLER, 0, false },
	{ "BEFORE", K_BEFORE, 0, false },
	{ "ON", K_ON, 0, false },
	{ "SINCE", K_SINCE, 0, false },
	{ "SENTBEFORE", K_SENTBEFORE, 0, false },
	{ "SENTON", K_SENTON, 0, false },
	{ "SENTSINCE", K_SENTSINCE, 0, false },
	{ "BCC", K_HEADER, 0, false },
	{ "CC", K_HEADER, 0, false },
	{ "FROM", K_HEADER, 0, false },
	{ "SUBJECT", K_HEADER, 0, false },
	{ "TO", K_HEADER, 0, false },
	{ "HEADER", K_HEADER, 0, false },
	{ "BODY", K_BODY, 0, false },
	{ "TEXT", K_TEXT, 0, false },
	{ "UID", K_UID, 0, false },
	{ "MODSEQ", K_MODSEQ, 0, false },
	{ "NOT", K_NOT, 0, false },
	{ "OR", K_OR, 0, false },
};

static struct snode *parse_modseq(struct pctx *c, struct snode *nd)
{
	/* RFC 7162 3.1.5: "MODSEQ" [SP entry-name SP entry-type-req] SP
	 * mod-sequence-valzer; the entry is accepted and ignored (we keep
	 * one MODSEQ per message). */
	if (c->i + 1 < c->n && c->args[c->i].type != IMAP_ARG_ATOM) {
		const char *type = imap_arg_atom(&c->args[c->i + 1]);
		if (!imap_arg_astring(&c->args[c->i]) || !type ||
		    (strcasecmp(type, "priv") != 0 && strcasecmp(type, "shared") != 0 &&
		     strcasecmp(type, "all") != 0)) {
			node_free(nd);
			return perr(c, "Invalid MODSEQ entry", NULL);
		}
		c->i += 2;
	}
	if (!next_number(c, "MODSEQ", INT64_MAX, &nd->num)) {
		node_free(nd);
		return NULL;
	}
	c->prog->uses_modseq = true;
	return nd;
}

static struct snode *parse_key(struct pctx *c, unsigned depth)
{
	if (depth > SEARCH_MAX_DEPTH)
		return perr(c, "Search keys nested too deeply", NULL);
	if (c->i >= c->n)
		return perr(c, "Missing search key", NULL);
	const struct imap_arg *a = &c->args[c->i++];
	if (a->type == IMAP_ARG_LIST) {
		/* a parenthesised group: an AND of its keys */
		struct pctx sub = *c;
		sub.args = a->list;
		sub.n = a->nlist;
		sub.i = 0;
		sub.error = NULL;
		struct snode *nd = parse_and(&sub, depth + 1);
		c->error = sub.error;
		return nd;
	}
	const char *name = imap_arg_atom(a);
	if (!name)
		return perr(c, "Invalid search key", imap_arg_astring(a));
	if ((*name >= '0' && *name <= '9') || *name == '*') {
		struct snode *nd = node_new(K_SEQ);
		if (!seqset_parse(name, c->max_seq, &nd->set)) {
			node_free(nd);
			return perr(c, "Invalid sequence set", name);
		}
		return nd;
	}
	const struct keydef *kd = NULL;
	for (size_t i = 0; i < ARRAY_SIZE(keydefs); i++)
		if (strcasecmp(name, keydefs[i].name) == 0)
			kd = &keydefs[i];
	if (!kd)
		return perr(c, "Unknown search key", name);
	struct snode *nd = node_new(kd->k);
	nd->flag = kd->flag;
	nd->neg = kd->neg;
	const char *s;
	size_t len;
	switch (kd->k) {
	case K_KEYWORD:
		if (!(s = next_astring(c, kd->name, NULL)))
			goto fail;
		nd->s1 = xstrdup(s);
		break;
	case K_LARGER:
	case K_SMALLER:
		if (!next_number(c, kd->name, UINT64_MAX, &nd->num))
			goto fail;
		break;
	case K_BEFORE:
	case K_ON:
	case K_SINCE:
		if (!next_date(c, kd->name, &nd->days))
			goto fail;
		break;
	case K_SENTBEFORE:
	case K_SENTON:
	case K_SENTSINCE:
		if (!next_date(c, kd->name, &nd->days))
			goto fail;
		nd->cost = 1;
		break;
	case K_HEADER:
		if (strcasecmp(kd->name, "HEADER") == 0) {
			if (!(s = next_astring(c, kd->name, NULL)))
				goto fail;
			if (!*s) {
				perr(c, "Empty header field name", NULL);
				goto fail;
			}
			nd->s1 = xstrdup(s);
		} else {
			nd->s1 = xstrdup(kd->name);
		}
		/* then the value, as for BODY and TEXT */
		__attribute__((fallthrough));
	case K_BODY:
	case K_TEXT:
		if (!(s = next_astring(c, kd->name, &len)))
			goto fail;
		nd->s2 = xstrndup(s, len);
		nd->s2len = len;
		nd->cost = 1;
		break;
	case K_UID:
		if (c->i >= c->n || !(s = imap_arg_atom(&c->args[c->i]))) {
			perr(c, "Missing UID set", NULL);
			goto fail;
		}
		if (!seqset_parse(s, c->max_uid, &nd->set)) {
			perr(c, "Invalid UID set", s);
			goto fail;
		}
		c->i++;
		break;
	case K_MODSEQ:
		return parse_modseq(c, nd);
	case K_NOT: {
		struct snode *kid = parse_key(c, depth + 1);
		if (!kid)
			goto fail;
		node_add(nd, kid);
		break;
	}
	case K_OR:
		for (int j = 0; j < 2; j++) {
			struct snode *kid = parse_key(c, depth + 1);
			if (!kid)
				goto fail;
			node_add(nd, kid);
		}
		break;
	default:
		break;
	}
	if (nd->cost)
		c->prog->needs_message = true;
	if (kd->k == K_BODY || kd->k == K_TEXT)
		c->prog->needs_body = true;
	if (kd->k == K_LARGER || kd->k == K_SMALLER || kd->k == K_BEFORE || kd->k == K_ON ||
	    kd->k == K_SINCE)
		c->prog->needs_meta = true;
	return nd;
fail:
	node_free(nd);
	return NULL;
}

int search_parse(const struct imap_arg *args, size_t n, uint32_t max_seq, uint32_t max_uid,
		 struct search_prog **prog_r, bool *badcharset_r, char **error_r)
{
	*prog_r = NULL;
	*badcharset_r = false;
	*error_r = NULL;
	struct pctx c = { .args = args, .n = n, .max_seq = max_seq, .max_uid = max_uid };
	c.prog = xcalloc(1, sizeof(*c.prog));
	if (n > 0 && args[0].type == IMAP_ARG_ATOM && strcasecmp(args[0].str, "CHARSET") == 0) {
		/* RFC 3501 6.4.4: US-ASCII must be supported; we also take
		 * UTF-8, which all our decoded text is in. */
		const char *cs = n > 1 ? imap_arg_astring(&args[1]) : NULL;
		if (!cs) {
			free(c.prog);
			*error_r = xstrdup("Missing charset after CHARSET");
			return -1;
		}
		if (strcasecmp(cs, "UTF-8") != 0 && strcasecmp(cs, "US-ASCII") != 0) {
			free(c.prog);
			*badcharset_r = true;
			*error_r = xasprintf("Unsupported charset: %s", log_str(cs));
			return -1;
		}
		c.i = 2;
	}
	c.prog->root = parse_and(&c, 0);
	if (!c.prog->root) {
		search_free(&c.prog);
		*error_r = c.error ? c.error : xstrdup("Invalid search");
		return -1;
	}
	*prog_r = c.prog;
	return 0;
}

void search_free(struct search_prog **prog)
{
	if (!*prog)
		return;
	node_free((*prog)->root);
	free(*prog);
	*prog = NULL;
}

bool search_needs_message(const struct search_prog *prog)
{
	return prog->needs_message;
}

bool search_needs_meta(const struct search_prog *prog)
{
	return prog->needs_meta;
}

bool search_needs_body(const struct search_prog *prog)
{
	return prog->needs_body;
}

bool search_uses_modseq(const struct search_prog *prog)
{
	return prog->uses_modseq;
}

/* ------------------------------------------------------------- matching */

struct mctx {
	const struct search_msg *m;
	bool loaded;
	const struct mime_msg *mm;
	bool have_text;
	struct buf text;        /* for TEXT: all headers, then the body */
	bool have_body;
	struct buf body;        /* for BODY: decoded once per message */
};

static const struct mime_msg *get_msg(struct mctx *x)
{
	if (!x->loaded) {
		x->loaded = true;
		x->mm = x->m->load ? x->m->load(x->m->load_arg) : NULL;
	}
	return x->mm;
}

static bool has_keyword(const char *list, const char *kw)
{
	size_t kl = strlen(kw);
	if (!list || kl == 0)
		return false;
	const char *p = list;
	while (*p) {
		while (*p == ' ')
			p++;
		const char *e = p;
		while (*e && *e != ' ')
			e++;
		if ((size_t)(e - p) == kl && strncasecmp(p, kw, kl) == 0)
			return true;
		p = e;
	}
	return false;
}

/* Calendar day (UTC) of t. */
static int64_t day_of(int64_t t)
{
	return t >= 0 ? t / 86400 : -((-t + 86399) / 86400);
}

static bool match_header(struct mctx *x, const struct snode *nd)
{
	const struct mime_msg *mm = get_msg(x);
	if (!mm)
		return false;
	struct buf b;
	buf_init(&b, SEARCH_TEXT_MAX);
	bool found = mime_header_text(mm, nd->s1, &b);
	bool r = found && (nd->s2len == 0 ||
			   mime_text_contains(b.data ? b.data : "", b.len, nd->s2, nd->s2len));
	buf_free(&b);
	return r;
}

static bool match_body(struct mctx *x, const struct snode *nd)
{
	const struct mime_msg *mm = get_msg(x);
	if (!mm)
		return false;
	if (nd->s2len == 0)
		return true;
	if (!x->have_body) {
		x->have_body = true;
		mime_body_text(mm, &x->body);
	}
	return mime_text_contains(x->body.data ? x->body.data : "", x->body.len, nd->s2, nd->s2len);
}

static bool match_text(struct mctx *x, const struct snode *nd)
{
	const struct mime_msg *mm = get_msg(x);
	if (!mm)
		return false;
	if (!x->have_text) {
		x->have_text = true;
		mime_header_text(mm, NULL, &x->text);
		buf_putc(&x->text, '\n');
		mime_body_text(mm, &x->text);
	}
	return mime_text_contains(x->text.data ? x->text.data : "", x->text.len, nd->s2,
				  nd->s2len);
}

static bool match_sent(struct mctx *x, const struct snode *nd)
{
	const struct mime_msg *mm = get_msg(x);
	if (!mm)
		return false;
	int64_t t = mime_date(mm);
	if (t < 0)
		return false;
	int64_t d = day_of(t);
	switch (nd->k) {
	case K_SENTBEFORE:
		return d < nd->days;
	case K_SENTON:
		return d == nd->days;
	default:
		return d >= nd->days;
	}
}

static bool eval(struct mctx *x, const struct snode *nd)
{
	const struct search_msg *m = x->m;
	switch (nd->k) {
	case K_ALL:
		return true;
	case K_FLAG:
		return ((m->flags & nd->flag) != 0) != nd->neg;
	case K_KEYWORD:
		return has_keyword(m->keywords, nd->s1) != nd->neg;
	case K_NEW:
		return m->recent && !(m->flags & SEARCH_SEEN);
	case K_OLD:
		return !m->recent;
	case K_RECENT:
		return m->recent;
	case K_LARGER:
		return m->vsize > nd->num;
	case K_SMALLER:
		return m->vsize < nd->num;
	case K_BEFORE:
		return day_of(m->internaldate) < nd->days;
	case K_ON:
		return day_of(m->internaldate) == nd->days;
	case K_SINCE:
		return day_of(m->internaldate) >= nd->days;
	case K_SENTBEFORE:
	case K_SENTON:
	case K_SENTSINCE:
		return match_sent(x, nd);
	case K_HEADER:
		return match_header(x, nd);
	case K_BODY:
		return match_body(x, nd);
	case K_TEXT:
		return match_text(x, nd);
	case K_UID:
		return seqset_contains(&nd->set, m->uid);
	case K_SEQ:
		return seqset_contains(&nd->set, m->seq);
	case K_MODSEQ:
		return m->modseq >= nd->num;
	case K_NOT:
		return !eval(x, nd->kids[0]);
	case K_OR:
		/* the cheaper side first */
		if (nd->kids[0]->cost <= nd->kids[1]->cost)
			return eval(x, nd->kids[0]) || eval(x, nd->kids[1]);
		return eval(x, nd->kids[1]) || eval(x, nd->kids[0]);
	case K_AND:
		for (size_t i = 0; i < nd->nkids; i++)
			if (!eval(x, nd->kids[i]))
				return false;
		return true;
	}
	return false;
}

bool search_match(const struct search_prog *prog, const struct search_msg *m)
{
	struct mctx x = { .m = m };
	buf_init(&x.text, SEARCH_TEXT_MAX);
	buf_init(&x.body, SEARCH_TEXT_MAX);
	bool r = eval(&x, prog->root);
	buf_free(&x.text);
	buf_free(&x.body);
	return r;
}
