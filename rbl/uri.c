/*
 * uri.c - the domains a message links to, for URI blocklists: host names
 * of http/https/ftp URLs (and the "hxxp" spelling that defangs them),
 * "www." names written without a scheme, and the host of scheme-relative
 * "//host" references in HTML href= and src= attributes.
 *
 * The text is read the way a browser would read the link (WHATWG URL
 * standard, "special" schemes), not by the strict RFC 3986 grammar, since
 * what matters is where a click goes.  So these obfuscations are undone:
 * upper case; a trailing dot; user-info before the last '@' of the
 * authority ("http://bank.test@a@evil.test/"); one or more of '/' and '\'
 * after "http:" ("http:\\evil.test", "http:/evil.test"); percent-encoded
 * host octets.  A port ends the host; address literals (dotted quads,
 * "[v6]", numeric last labels) and names without a dot are not domains.
 *
 * The text is not NUL-terminated: nothing here reads at or past end.
 */
#include "rbl/rbl.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

static bool host_char(unsigned char c)
{
	return isalnum(c) || c == '-' || c == '.' || c == '_';
}

static bool slash(unsigned char c)
{
	/* WHATWG URL: for the special schemes (http, https, ftp, ...) a '\'
	 * is a '/' wherever the parser looks for one. */
	return c == '/' || c == '\\';
}

/* What ends the authority: the path, query or fragment (RFC 3986 section
 * 3.2, plus '\' as above), or what ends a URL written in text or HTML. */
static bool authority_end(unsigned char c)
{
	return slash(c) || c == '?' || c == '#' || isspace(c) || c == '"' || c == '\'' || c == '<' ||
	       c == '>';
}

static int hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (unsigned char)tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static bool prefix_ci(const char *p, const char *end, const char *pre)
{
	size_t n = strlen(pre);
	return (size_t)(end - p) >= n && strncasecmp(p, pre, n) == 0;
}

/* The last authority scanned: [from, end) holds no authority_end()
 * character and at is its last '@' (or NULL).  Any p in [from, end] has
 * the same end, and the same last '@' when at >= p, so the many starts
 * one run of text can hold ("www.a@www.a@..." has one at every "www.")
 * share one scan instead of each scanning to the end (quadratic). */
struct authority {
	const char *from, *end, *at;
};

/* The host of the authority at p (after "scheme://", "//" or at "www."):
 * returns it lower-cased in out, or false when it is not a domain name
 * (an address literal, no dot, too long). */
static bool take_host(const char *p, const char *end, struct authority *au, char *out, size_t size)
{
	/* User-info ends at the last '@' of the authority, as in browsers
	 * (RFC 3986 section 3.2.1 forbids a literal '@' inside it, but they
	 * take the last one): "http://bank.test@x@evil.test/" goes to
	 * evil.test.  A '@' past the authority is in the path, not here. */
	if (au->from == NULL || p < au->from || p > au->end) {
		au->from = p;
		au->at = NULL;
		const char *q = p;
		for (; q < end && !authority_end((unsigned char)*q); q++)
			if (*q == '@')
				au->at = q;
		au->end = q;
	}
	const char *aend = au->end;
	if (au->at != NULL && au->at >= p)
		p = au->at + 1;
	/* "[...]" is an IP literal (RFC 3986 section 3.2.2), never a name. */
	if (p < aend && *p == '[')
		return false;
	size_t o = 0;
	while (p < aend) {
		unsigned char c = (unsigned char)*p;
		if (c == '%' && aend - p > 2 && hexval((unsigned char)p[1]) >= 0 &&
		    hexval((unsigned char)p[2]) >= 0) {
			c = (unsigned char)(hexval((unsigned char)p[1]) << 4 | hexval((unsigned char)p[2]));
			p += 3;
		} else {
			p++;
		}
		/* ':' (a port) and anything else outside a name end the host. */
		if (!host_char(c))
			break;
		if (o + 1 >= size)
			return false; /* longer than any name (RFC 1035 2.3.4) */
		out[o++] = (char)tolower(c);
	}
	while (o > 0 && (out[o - 1] == '.' || out[o - 1] == '-'))
		o--;
	out[o] = '\0';
	size_t start = 0;
	while (out[start] == '.')
		start++;
	if (start)
		memmove(out, out + start, o - start + 1);
	if (strchr(out, '.') == NULL || strstr(out, "..") != NULL || strlen(out) > 253)
		return false;
	/* A dotted quad is an address, not a domain. */
	bool digits = true;
	for (const char *c = out; *c; c++)
		if (!isdigit((unsigned char)*c) && *c != '.')
			digits = false;
	if (digits)
		return false;
	/* The last label must be letters (a TLD); browsers take a numeric or
	 * "0x" last label as an IPv4 address in another notation. */
	const char *tld = strrchr(out, '.') + 1;
	if (*tld == '\0')
		return false;
	for (const char *c = tld; *c; c++)
		if (!isalpha((unsigned char)*c) && *c != '-')
			return false;
	return true;
}

/* colon is the ':' after a scheme: the authority after it, or NULL when
 * the scheme is not one whose links we follow.  The scheme is the end of
 * the letters before the colon, so "Clickhttp://" counts too; "mailto:"
 * or "foo:/bar" do not. */
static const char *after_scheme(const char *text, const char *colon, const char *end)
{
	static const char *const schemes[] = { "http", "https", "ftp", "hxxp", "hxxps" };
	bool ok = false;
	for (size_t i = 0; i < ARRAY_SIZE(schemes) && !ok; i++) {
		size_t k = strlen(schemes[i]);
		ok = (size_t)(colon - text) >= k && strncasecmp(colon - k, schemes[i], k) == 0;
	}
	if (!ok)
		return NULL;
	/* WHATWG URL "special authority ignore slashes state": browsers take
	 * one, two or more of '/' and '\' before the host alike. */
	const char *p = colon + 1;
	while (p < end && slash((unsigned char)*p))
		p++;
	return p > colon + 1 ? p : NULL;
}

/* p is at a possible "href" or "src" attribute name: the host of a
 * scheme-relative value ("//host/...", RFC 3986 section 4.2), or NULL.
 * HTML allows blanks around '=' and an unquoted value; the URL parser
 * drops leading blanks in the value and reads '\' as '/' (the page is
 * http or https). */
static const char *after_attribute(const char *p, const char *end)
{
	if (prefix_ci(p, end, "href"))
		p += 4;
	else if (prefix_ci(p, end, "src"))
		p += 3;
	else
		return NULL;
	while (p < end && isspace((unsigned char)*p))
		p++;
	if (p >= end || *p != '=')
		return NULL;
	p++;
	while (p < end && isspace((unsigned char)*p))
		p++;
	if (p < end && (*p == '"' || *p == '\''))
		p++;
	while (p < end && isspace((unsigned char)*p))
		p++;
	/* One slash is a path on the same site; two or more start a host. */
	const char *s = p;
	while (p < end && slash((unsigned char)*p))
		p++;
	return p - s >= 2 ? p : NULL;
}

static size_t add(char ***v, size_t n, const char *host)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp((*v)[i], host) == 0)
			return n;
	*v = xrealloc(*v, (n + 1) * sizeof(char *));
	(*v)[n++] = xstrdup(host);
	return n;
}

size_t uri_domains(const char *text, size_t len, char ***v, size_t n, size_t max)
{
	const char *end = text + len;
	char host[256];
	struct authority au = { NULL, NULL, NULL };
	for (const char *p = text; p < end && n < max; p++) {
		const char *h = NULL;
		unsigned char c = (unsigned char)*p;
		if (c == ':') {
			h = after_scheme(text, p, end);
		} else if ((c == 'h' || c == 'H' || c == 's' || c == 'S') &&
			   (p == text || !isalnum((unsigned char)p[-1]))) {
			/* Not "xhref"; "data-src" is no link but harmless. */
			h = after_attribute(p, end);
		} else if ((c == 'w' || c == 'W') && prefix_ci(p, end, "www.") &&
			   (p == text || !host_char((unsigned char)p[-1]))) {
			h = p;
		}
		/* Scanning goes on just after h, not past the URL: a URL inside
		 * the path or query of another ("?u=http://b.test") is found. */
		if (h && take_host(h, end, &au, host, sizeof(host))) {
			n = add(v, n, host);
			p = h;
		}
	}
	return n;
}
