/*
 * html.c - HTML rendered as text for body rules, and the links of HTML
 * for uri rules (rules-private.h).
 *
 * What a reader sees, roughly as a browser (and SpamAssassin's renderer)
 * shows it:
 *
 *  - Tags are dropped.  Inline tags (a, b, span, font, img...) add
 *    nothing, so "to<b>day</b>" reads "today"; td/th add a space; br, hr,
 *    tr, li, table, ul, ol, dl, dt, dd, center, form, caption, address
 *    start a new line; p, div, h1-h6, blockquote and pre start a new
 *    paragraph (a blank line, which view.c turns into a paragraph break).
 *  - The content of script, style, title, xml and template is dropped
 *    (title is not shown in the page body; SpamAssassin keeps it apart
 *    too), so are comments, <!DOCTYPE>, <![CDATA[ and <? ... >.
 *  - Entities are decoded to UTF-8: the numeric forms (&#233; &#xE9;,
 *    code points 0x80-0x9F read as windows-1252 like browsers do, invalid
 *    ones as U+FFFD) and the named ones of HTML 4 Latin-1 plus the common
 *    typographic ones (&euro; &ndash; &rsquo; &hellip; ...); the ';' may
 *    be missing.  &nbsp; is rendered as a plain space (rules use \s).
 *  - Whitespace collapses like a browser: a run of blanks and line ends
 *    is one space, none at the start of a line; inside <pre> it is kept.
 *  - Hidden-text tricks (display:none, tiny or same-colour fonts) are not
 *    handled.
 *
 * Links: the values of href, src, action, background and lowsrc
 * attributes of any tag, entity-decoded, with tab/CR/LF removed and blanks
 * trimmed (as browsers read URLs), capped at HTML_LINK_MAX octets and
 * HTML_MAX_LINKS per call; "#fragment" links are skipped.  A relative
 * link is resolved against <base href> when there is one.
 *
 * Hostile input: one pass, each byte looked at a bounded number of times
 * (a tag, comment or skipped element that never ends swallows the rest,
 * as in a browser; a missing closing quote is remembered so that it is
 * not searched for again), lookups bounded, no recursion, and the output
 * stops at out->max.  NULs count as blanks.
 */
#include "rules/rules-private.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define HTML_MAX_LINKS 1000
#define HTML_LINK_MAX 4096

/* windows-1252 0x80-0x9F (0 = undefined). */
static const unsigned short cp1252[32] = {
	0x20AC, 0, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
	0x2039, 0x0152, 0, 0x017D, 0, 0, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013,
	0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0, 0x017E, 0x0178,
};

/* HTML 4 names of U+00A0..U+00FF, in code point order. */
static const char *const latin1_names[96] = {
	"nbsp", "iexcl", "cent", "pound", "curren", "yen", "brvbar", "sect", "uml", "copy",
	"ordf", "laquo", "not", "shy", "reg", "macr", "deg", "plusmn", "sup2", "sup3", "acute",
	"micro", "para", "middot", "cedil", "sup1", "ordm", "raquo", "frac14", "frac12",
	"frac34", "iquest", "Agrave", "Aacute", "Acirc", "Atilde", "Auml", "Aring", "AElig",
	"Ccedil", "Egrave", "Eacute", "Ecirc", "Euml", "Igrave", "Iacute", "Icirc", "Iuml",
	"ETH", "Ntilde", "Ograve", "Oacute", "Ocirc", "Otilde", "Ouml", "times", "Oslash",
	"Ugrave", "Uacute", "Ucirc", "Uuml", "Yacute", "THORN", "szlig", "agrave", "aacute",
	"acirc", "atilde", "auml", "aring", "aelig", "ccedil", "egrave", "eacute", "ecirc",
	"euml", "igrave", "iacute", "icirc", "iuml", "eth", "ntilde", "ograve", "oacute",
	"ocirc", "otilde", "ouml", "divide", "oslash", "ugrave", "uacute", "ucirc", "uuml",
	"yacute", "thorn", "yuml",
};

static const struct {
	const char *name;
	unsigned cp;
} other_names[] = {
	{ "amp", '&' },       { "lt", '<' },         { "gt", '>' },        { "quot", '"' },
	{ "apos", '\'' },     { "euro", 0x20AC },    { "ndash", 0x2013 },  { "mdash", 0x2014 },
	{ "lsquo", 0x2018 },  { "rsquo", 0x2019 },   { "sbquo", 0x201A },  { "ldquo", 0x201C },
	{ "rdquo", 0x201D },  { "bdquo", 0x201E },   { "hellip", 0x2026 }, { "bull", 0x2022 },
	{ "trade", 0x2122 },  { "dagger", 0x2020 },  { "Dagger", 0x2021 }, { "permil", 0x2030 },
	{ "lsaquo", 0x2039 }, { "rsaquo", 0x203A },  { "ensp", 0x2002 },   { "emsp", 0x2003 },
	{ "thinsp", 0x2009 }, { "zwnj", 0x200C },    { "zwj", 0x200D },    { "lrm", 0x200E },
	{ "rlm", 0x200F },    { "OElig", 0x0152 },   { "oelig", 0x0153 },  { "Scaron", 0x0160 },
	{ "scaron", 0x0161 }, { "Yuml", 0x0178 },    { "fnof", 0x0192 },   { "circ", 0x02C6 },
	{ "tilde", 0x02DC },  { "prime", 0x2032 },   { "Prime", 0x2033 },  { "frasl", 0x2044 },
	{ "larr", 0x2190 },   { "rarr", 0x2192 },    { "uarr", 0x2191 },   { "darr", 0x2193 },
	{ "hearts", 0x2665 }, { "spades", 0x2660 },  { "clubs", 0x2663 },  { "diams", 0x2666 },
	{ "check", 0x2713 },  { "star", 0x2606 },    { "infin", 0x221E },  { "ne", 0x2260 },
	{ "le", 0x2264 },     { "ge", 0x2265 },      { "minus", 0x2212 },  { "loz", 0x25CA },
};

/* Case-insensitive fallbacks for the few names mail writers shout. */
static const char *const ci_names[] = { "amp", "lt", "gt", "quot", "nbsp", "copy", "reg" };

static size_t utf8_put(char *o, unsigned cp)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xC0 | (cp >> 6));
		o[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (char)(0xE0 | (cp >> 12));
		o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		o[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	o[0] = (char)(0xF0 | (cp >> 18));
	o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
	o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
	o[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

static bool is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_alnum(char c)
{
	return is_alpha(c) || (c >= '0' && c <= '9');
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' || c == '\0';
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static unsigned lookup_name(const char *n, size_t len)
{
	for (size_t i = 0; i < ARRAY_SIZE(latin1_names); i++)
		if (latin1_names[i][0] == n[0] && strlen(latin1_names[i]) == len &&
		    memcmp(latin1_names[i], n, len) == 0)
			return 0xA0 + (unsigned)i;
	for (size_t i = 0; i < ARRAY_SIZE(other_names); i++)
		if (other_names[i].name[0] == n[0] && strlen(other_names[i].name) == len &&
		    memcmp(other_names[i].name, n, len) == 0)
			return other_names[i].cp;
	for (size_t i = 0; i < ARRAY_SIZE(ci_names); i++)
		if (strlen(ci_names[i]) == len && strncasecmp(ci_names[i], n, len) == 0)
			return lookup_name(ci_names[i], len);
	return 0;
}

/* The entity at p (*p == '&'): its UTF-8 form into o (at least 4 bytes),
 * *olen set; returns the input consumed, 0 when it is not an entity.  In
 * an attribute value a named one without ';' before '=' is text (as
 * browsers read "?a=1&copy=2"). */
static size_t entity(const char *p, const char *e, char *o, size_t *olen, bool attr)
{
	const char *s = p + 1;
	unsigned cp = 0;
	if (s < e && *s == '#') {
		s++;
		bool hex = s < e && (*s == 'x' || *s == 'X');
		if (hex)
			s++;
		const char *d = s;
		for (; s < e && s - d < 16; s++) {
			int v = hex ? hexval(*s) : (*s >= '0' && *s <= '9' ? *s - '0' : -1);
			if (v < 0)
				break;
			cp = cp > 0x10FFFF ? cp : cp * (hex ? 16 : 10) + (unsigned)v;
		}
		if (s == d)
			return 0;
		if (cp >= 0x80 && cp < 0xA0 && cp1252[cp - 0x80])
			cp = cp1252[cp - 0x80];
		else if (cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp < 0xE000) ||
			 (cp >= 0x80 && cp < 0xA0))
			cp = 0xFFFD;
	} else {
		const char *n = s;
		while (s < e && s - n < 10 && is_alnum(*s))
			s++;
		if (s == n || (s < e && is_alnum(*s)) || (attr && s < e && *s == '=') ||
		    (cp = lookup_name(n, (size_t)(s - n))) == 0)
			return 0;
	}
	if (s < e && *s == ';')
		s++;
	if (cp == 0xA0)
		cp = ' ';
	*olen = utf8_put(o, cp);
	return (size_t)(s - p);
}

/* ------------------------------------------------------------ render */

struct html {
	const char *e;
	struct buf *out;
	size_t start;            /* out->len when rendering began */
	int nl;                  /* pending line breaks: 0, 1 or 2 */
	bool sp;                 /* a pending space */
	int pre;                 /* <pre> depth */
	bool no_quote[2];        /* no more ' / " after the last search */
	char ***links;
	size_t *nlinks;
	char *base;              /* <base href>, or NULL */
};

static bool full(const struct html *h)
{
	return h->out->len >= h->out->max;
}

static void put(struct html *h, const char *p, size_t n)
{
	struct buf *b = h->out;
	if (buf_append(b, p, n) != 0 && b->len < b->max)
		buf_append(b, p, b->max - b->len);
}

/* Visible text: first the separator that is pending. */
static void text(struct html *h, const char *p, size_t n)
{
	if (h->out->len > h->start) {
		if (h->nl)
			put(h, "\n\n", (size_t)h->nl);
		else if (h->sp)
			put(h, " ", 1);
	}
	h->nl = 0;
	h->sp = false;
	put(h, p, n);
}

static void blank(struct html *h, char c)
{
	if (h->pre && c != '\0') {
		if (c == '\n') {
			put(h, "\n", 1);
			h->nl = 0;
			h->sp = false;
		} else if (c != '\r') {
			text(h, " ", 1);
		}
		return;
	}
	h->sp = true;
}

static void brk(struct html *h, int n)
{
	if (h->nl < n)
		h->nl = n;
	h->sp = false;
}

static bool has_scheme(const char *s)
{
	if (!is_alpha(*s))
		return false;
	while (is_alnum(*s) || *s == '+' || *s == '-' || *s == '.')
		s++;
	return *s == ':';
}

static void add_link(struct html *h, char *v)
{
	if (h->base && !has_scheme(v) && strncmp(v, "//", 2) != 0) {
		const char *b = h->base, *cut;
		const char *host = strstr(b, "://");
		if (v[0] == '/') {
			cut = host ? strchr(host + 3, '/') : NULL;
			cut = cut ? cut : b + strlen(b);
		} else {
			cut = strrchr(host ? host + 3 : b, '/');
			cut = cut ? cut + 1 : b + strlen(b);
		}
		char *r = xasprintf("%.*s%s%s", (int)(cut - b), b,
				    (v[0] != '/' && (cut == b || cut[-1] != '/')) ? "/" : "", v);
		free(v);
		v = r;
	}
	*h->links = xrealloc(*h->links, (*h->nlinks + 1) * sizeof **h->links);
	(*h->links)[(*h->nlinks)++] = v;
}

/* An attribute of tag `tag`: keep it when it holds a link. */
static void attribute(struct html *h, const char *tag, const char *n, size_t nl, const char *v,
		      size_t vl)
{
	static const char *const names[] = { "href", "src", "action", "background", "lowsrc" };
	size_t i;
	for (i = 0; i < ARRAY_SIZE(names); i++)
		if (strlen(names[i]) == nl && strncasecmp(names[i], n, nl) == 0)
			break;
	if (i == ARRAY_SIZE(names) || *h->nlinks >= HTML_MAX_LINKS)
		return;
	char *o = xmalloc(HTML_LINK_MAX + 8);
	size_t ol = 0;
	const char *e = v + vl;
	while (v < e && ol < HTML_LINK_MAX) {
		size_t el, used = *v == '&' ? entity(v, e, o + ol, &el, true) : 0;
		if (used) {
			ol += el;
			v += used;
		} else {
			char c = *v++;
			if (c != '\t' && c != '\r' && c != '\n' && c != '\0')
				o[ol++] = c;
		}
	}
	while (ol > 0 && (o[ol - 1] == ' ' || o[ol - 1] == '\f'))
		ol--;
	o[ol] = '\0';
	size_t lead = strspn(o, " \f");
	memmove(o, o + lead, ol - lead + 1);
	if (o[0] == '\0' || o[0] == '#') {
		free(o);
		return;
	}
	if (i == 0 && strcmp(tag, "base") == 0 && h->base == NULL)
		h->base = xstrdup(o);
	add_link(h, o);
}

/* Skip the content of a raw-text element up to "</name"; returns where
 * that end tag starts, or e. */
static const char *skip_element(const char *p, const char *e, const char *name)
{
	size_t nl = strlen(name);
	while (p < e && (p = memchr(p, '<', (size_t)(e - p))) != NULL) {
		if ((size_t)(e - p) > nl + 2 && p[1] == '/' && strncasecmp(p + 2, name, nl) == 0 &&
		    !is_alnum(p[2 + nl]))
			return p;
		p++;
	}
	return e;
}

static bool in_list(const char *name, const char *list)
{
	size_t nl = strlen(name);
	for (const char *s = list; (s = strstr(s, name)) != NULL; s += nl)
		if ((s == list || s[-1] == ' ') && (s[nl] == ' ' || s[nl] == '\0'))
			return true;
	return false;
}

static void tag_effect(struct html *h, const char *name, bool end)
{
	if (in_list(name, "td th"))
		h->sp = h->nl == 0;
	else if (in_list(name, "p div h1 h2 h3 h4 h5 h6 blockquote pre"))
		brk(h, 2);
	else if (in_list(name, "br hr tr li table ul ol dl dt dd center form caption address "
			       "tbody thead tfoot option"))
		brk(h, 1);
	if (strcmp(name, "pre") == 0)
		h->pre += end ? (h->pre > 0 ? -1 : 0) : 1;
}

/* A markup construct at p (*p == '<'): returns where text resumes, or
 * NULL when the '<' is plain text. */
static const char *markup(struct html *h, const char *p)
{
	const char *e = h->e, *s = p + 1;
	if (s >= e)
		return NULL;
	if (*s == '!' || *s == '?' || (*s == '/' && s + 1 < e && !is_alpha(s[1]))) {
		if (*s == '!' && e - s >= 3 && s[1] == '-' && s[2] == '-') {
			const char *c = memmem(s + 3, (size_t)(e - s - 3), "-->", 3);
			return c ? c + 3 : e;
		}
		const char *gt = memchr(s, '>', (size_t)(e - s));
		return gt ? gt + 1 : e;
	}
	bool end = *s == '/';
	if (end)
		s++;
	if (s >= e || !is_alpha(*s))
		return NULL;
	char name[16];
	size_t nl = 0;
	for (; s < e && (is_alnum(*s) || *s == '-' || *s == ':'); s++)
		if (nl < sizeof name - 1)
			name[nl++] = (char)(*s | 0x20);
	name[nl] = '\0';
	bool closed = false;
	while (s < e) {
		char c = *s;
		if (c == '>') {
			s++;
			closed = true;
			break;
		}
		if (is_blank(c) || c == '/') {
			s++;
			continue;
		}
		const char *an = s++;
		while (s < e && !is_blank(*s) && *s != '>' && *s != '/' && *s != '=')
			s++;
		size_t anl = (size_t)(s - an);
		while (s < e && is_blank(*s))
			s++;
		if (s >= e || *s != '=')
			continue;
		s++;
		while (s < e && is_blank(*s))
			s++;
		const char *v = s, *ve;
		if (s < e && (*s == '"' || *s == '\'')) {
			int qi = *s == '"';
			const char *q = h->no_quote[qi] ? NULL : memchr(s + 1, *s, (size_t)(e - s - 1));
			if (q == NULL) {
				/* Never closed: the value runs to the next '>'. */
				h->no_quote[qi] = true;
				q = memchr(s + 1, '>', (size_t)(e - s - 1));
				q = q ? q : e;
				v = s + 1;
				ve = q;
				s = q;
			} else {
				v = s + 1;
				ve = q;
				s = q + 1;
			}
		} else {
			while (s < e && !is_blank(*s) && *s != '>')
				s++;
			ve = s;
		}
		if (!end)
			attribute(h, name, an, anl, v, (size_t)(ve - v));
	}
	if (!closed)
		return e;
	tag_effect(h, name, end);
	if (!end && in_list(name, "script style title xml template"))
		return skip_element(s, e, name);
	return s;
}

void html_render(const char *html, size_t len, struct buf *out, char ***links, size_t *nlinks)
{
	struct html h = { .e = html + len, .out = out, .start = out->len,
			  .links = links, .nlinks = nlinks };
	const char *p = html, *e = html + len;
	while (p < e && !full(&h)) {
		char c = *p;
		if (c == '<') {
			const char *r = markup(&h, p);
			if (r) {
				p = r;
				continue;
			}
		} else if (c == '&') {
			char o[8];
			size_t ol, used = entity(p, e, o, &ol, false);
			if (used) {
				if (ol == 1 && o[0] == ' ')
					blank(&h, ' ');
				else
					text(&h, o, ol);
				p += used;
				continue;
			}
		} else if (is_blank(c)) {
			blank(&h, c);
			p++;
			continue;
		}
		const char *r = p + 1;
		while (r < e && *r != '<' && *r != '&' && !is_blank(*r))
			r++;
		text(&h, p, (size_t)(r - p));
		p = r;
	}
	free(h.base);
}
