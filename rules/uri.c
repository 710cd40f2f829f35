/*
 * uri.c - the URIs uri rules see: found in the (rendered) text of the
 * text parts and taken from the links of HTML, normalised, deduplicated
 * (rules-private.h; view.c feeds it while it builds the body).
 *
 * uris, in order of appearance, deduplicated, at most VIEW_MAX_URIS of
 * at most VIEW_URI_MAX octets: for each text part, the HTML links (see
 * html.c; "www.x" and "//x" read as "http://www.x" and "http://x", other
 * relative links kept as written), then the http://, https://, ftp://,
 * mailto:, hxxp(s):// and www. ("http://www.") URIs of its (rendered)
 * text; trailing .,;:!?)]} are not part of a URI in text.  Each URI is
 * followed by its normalised form when that differs: scheme lower-cased,
 * hxxp -> http, backslashes as slashes, for http/https/ftp the userinfo
 * dropped and the host %-decoded, lower-cased and without trailing dots;
 * and by every http(s):// URI embedded in its path or query
 * (redirectors).  Bare domains and e-mail addresses in text are not URIs
 * here.
 *
 * Deduplication: an open-addressing table of URI_SLOTS slots (more than
 * twice VIEW_MAX_URIS, so it never fills) holding 1 + the index of the
 * string in the set's strvec; a URI seen before adds nothing.  Hostile
 * input: a text is scanned once (a URI ends at VIEW_URI_MAX octets),
 * and at most 64 nested redirector targets are followed per URI.
 */
#include "rules/rules-private.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define URI_SLOTS 4096 /* > 2 * VIEW_MAX_URIS, a power of 2 */

static bool is_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

void uriset_init(struct uriset *set)
{
	strvec_init(&set->sv);
	set->slots = xcalloc(URI_SLOTS, sizeof *set->slots);
	set->work = 0;
}

void uriset_free(struct uriset *set)
{
	strvec_free(&set->sv);
	free(set->slots);
}

static bool uri_put(struct uriset *set, const char *u, size_t n)
{
	if (n == 0 || set->sv.n >= VIEW_MAX_URIS)
		return false;
	size_t j = view_hash(u, n) & (URI_SLOTS - 1);
	while (set->slots[j]) {
		const char *o = set->sv.b.data + set->sv.off[set->slots[j] - 1];
		if (strlen(o) == n && memcmp(o, u, n) == 0)
			return false;
		j = (j + 1) & (URI_SLOTS - 1);
	}
	if (!strvec_add(&set->sv, u, n))
		return false;
	set->slots[j] = (uint32_t)set->sv.n;
	return true;
}

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
	     : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* The normalised form of a URI into o (see the top of the file). */
static void uri_normalize(const char *u, size_t n, struct buf *o)
{
	size_t i = 0;
	buf_reset(o);
	while (i < n && (is_alnum(u[i]) || u[i] == '+' || u[i] == '-' || u[i] == '.'))
		i++;
	if (i == 0 || i >= n || u[i] != ':')
		return;
	char scheme[16] = "";
	for (size_t k = 0; k < i && k < sizeof scheme - 1; k++)
		scheme[k] = (char)(u[k] >= 'A' && u[k] <= 'Z' ? u[k] | 0x20 : u[k]);
	scheme[i < sizeof scheme ? i : sizeof scheme - 1] = '\0';
	if (strncmp(scheme, "hxxp", 4) == 0)
		scheme[1] = scheme[2] = 't';
	buf_puts(o, scheme);
	buf_puts(o, ":");
	i++;
	bool web = strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0 ||
		   strcmp(scheme, "ftp") == 0;
	if (web) {
		while (i < n && (u[i] == '/' || u[i] == '\\'))
			i++;
		buf_puts(o, "//");
		size_t ae = i;
		while (ae < n && !strchr("/?#\\", u[ae]))
			ae++;
		for (size_t k = i; k < ae; k++)
			if (u[k] == '@')
				i = k + 1;
		size_t hs = o->len;
		for (; i < ae; i++) {
			char c = u[i];
			if (c == '%' && i + 2 < ae && hexval(u[i + 1]) >= 0 && hexval(u[i + 2]) >= 0) {
				c = (char)(hexval(u[i + 1]) * 16 + hexval(u[i + 2]));
				i += 2;
			}
			buf_putc(o, c >= 'A' && c <= 'Z' ? (char)(c | 0x20) : c);
		}
		char *colon = memchr(o->data + hs, ':', o->len - hs);
		size_t he = colon ? (size_t)(colon - o->data) : o->len;
		size_t dots = 0;
		while (he - dots > hs && o->data[he - dots - 1] == '.')
			dots++;
		memmove(o->data + he - dots, o->data + he, o->len - he + 1);
		o->len -= dots;
	}
	for (; i < n; i++)
		buf_putc(o, web && u[i] == '\\' ? '/' : u[i]);
}

static void add_uri(struct uriset *set, const char *u, size_t n, struct buf *tmp)
{
	n = n > VIEW_URI_MAX ? VIEW_URI_MAX : n;
	for (int round = 0; round < 64 && n > 0 && set->sv.n < VIEW_MAX_URIS; round++) {
		/* Bounded work per message: a crafted message repeating long
		 * links (or a long <base href>) must not cost seconds. */
		set->work += n;
		if (set->work > URI_WORK_MAX)
			break;
		if (!uri_put(set, u, n) && round == 0)
			break; /* seen before: its forms and targets are in */
		uri_normalize(u, n, tmp);
		if (tmp->len && (tmp->len != n || memcmp(tmp->data, u, n) != 0))
			uri_put(set, tmp->data, tmp->len);
		/* An http(s) URI inside this one: a redirector's target. */
		const char *next = NULL;
		for (size_t i = 1; i + 7 <= n && !next; i++)
			if ((u[i] | 0x20) == 'h' && (strncasecmp(u + i, "http://", 7) == 0 ||
						     (i + 8 <= n && strncasecmp(u + i, "https://", 8) == 0)))
				next = u + i;
		if (next == NULL)
			break;
		n -= (size_t)(next - u);
		u = next;
	}
}

static bool uri_char(char c)
{
	unsigned char u = (unsigned char)c;
	return u > 0x20 && u != 0x7F && !strchr("<>\"'`{}|^", c);
}

/* URIs written in text. */
void uriset_scan_text(struct uriset *set, const char *p, size_t n, struct buf *tmp)
{
	static const char *const schemes[] = { "http://", "https://", "ftp://", "mailto:",
					       "hxxp://", "hxxps://", "www." };
	for (size_t i = 0; i < n && set->sv.n < VIEW_MAX_URIS;) {
		char c = (char)(p[i] | 0x20);
		size_t sl = 0;
		bool www = false;
		if ((c == 'h' || c == 'f' || c == 'm' || c == 'w') && (i == 0 || !is_alnum(p[i - 1])))
			for (size_t k = 0; k < ARRAY_SIZE(schemes) && !sl; k++)
				if (n - i > strlen(schemes[k]) &&
				    strncasecmp(p + i, schemes[k], strlen(schemes[k])) == 0) {
					sl = strlen(schemes[k]);
					www = schemes[k][0] == 'w';
				}
		if (sl == 0 || (www && !is_alnum(p[i + sl]))) {
			i++;
			continue;
		}
		size_t j = i + sl;
		while (j < n && j - i < VIEW_URI_MAX && uri_char(p[j]))
			j++;
		size_t e = j;
		while (e > i + sl && strchr(".,;:!?)]}", p[e - 1]))
			e--;
		if (e > i + sl && www) {
			char *w = xasprintf("http://%.*s", (int)(e - i), p + i);
			add_uri(set, w, strlen(w), tmp);
			free(w);
		} else if (e > i + sl) {
			add_uri(set, p + i, e - i, tmp);
		}
		i = j;
	}
}

void uriset_add_link(struct uriset *set, const char *link, struct buf *tmp)
{
	/* Browsers read "www.x" and "//x" as web addresses. */
	const char *l = link;
	char *w = NULL;
	if (strncasecmp(l, "www.", 4) == 0 || strncmp(l, "//", 2) == 0)
		l = w = xasprintf("http:%s%s", l[0] == '/' ? "" : "//", l);
	add_uri(set, l, strlen(l), tmp);
	free(w);
}
