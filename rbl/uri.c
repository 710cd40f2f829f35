/*
 * uri.c - the domains a message links to, for URI blocklists: host names
 * of http/https/ftp URLs (also inside HTML href="..."), "www." names
 * written without a scheme, and the host of "//host" references.
 * Obfuscations the URL grammar allows are undone: upper case, a trailing
 * dot, user-info before '@', percent-encoded host octets.
 */
#include "rbl/rbl.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

static bool host_char(unsigned char c)
{
	return isalnum(c) || c == '-' || c == '.' || c == '_';
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

/* The host at p (after "scheme://" or at "www."): returns it lower-cased
 * in out, or false when it is not a domain name (an address literal, no
 * dot). */
static bool take_host(const char *p, const char *end, char *out, size_t size)
{
	/* Skip user-info: "http://bank.example@evil.test/" goes to evil.test. */
	const char *q = p;
	while (q < end && *q != '/' && *q != '?' && *q != '#' && *q != '@' && !isspace((unsigned char)*q) &&
	       *q != '"' && *q != '\'' && *q != '>' && *q != '<')
		q++;
	if (q < end && *q == '@')
		p = q + 1;
	size_t o = 0;
	while (p < end && o + 1 < size) {
		unsigned char c = (unsigned char)*p;
		if (c == '%' && p + 2 < end && hexval((unsigned char)p[1]) >= 0 &&
		    hexval((unsigned char)p[2]) >= 0) {
			c = (unsigned char)(hexval((unsigned char)p[1]) << 4 | hexval((unsigned char)p[2]));
			p += 3;
		} else {
			p++;
		}
		if (!host_char(c))
			break;
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
	/* The last label must be letters (a TLD). */
	const char *tld = strrchr(out, '.') + 1;
	if (*tld == '\0')
		return false;
	for (const char *c = tld; *c; c++)
		if (!isalpha((unsigned char)*c) && *c != '-')
			return false;
	return true;
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

static bool prefix_ci(const char *p, const char *end, const char *pre)
{
	size_t n = strlen(pre);
	return (size_t)(end - p) >= n && strncasecmp(p, pre, n) == 0;
}

size_t uri_domains(const char *text, size_t len, char ***v, size_t n, size_t max)
{
	const char *end = text + len;
	char host[256];
	for (const char *p = text; p < end && n < max; p++) {
		const char *h = NULL;
		unsigned char c = (unsigned char)*p;
		if (c == ':' && p + 2 < end && p[1] == '/' && p[2] == '/') {
			/* scheme://host: accept http, https, ftp (any case),
			 * also written with backslashes by some spam. */
			const char *s = p;
			while (s > text && isalpha((unsigned char)s[-1]))
				s--;
			if (prefix_ci(s, p, "http") || prefix_ci(s, p, "https") || prefix_ci(s, p, "ftp") ||
			    prefix_ci(s, p, "hxxp"))
				h = p + 3;
		} else if ((c == 'w' || c == 'W') && prefix_ci(p, end, "www.") &&
			   (p == text || !host_char((unsigned char)p[-1]))) {
			h = p;
		}
		if (h && take_host(h, end, host, sizeof(host))) {
			n = add(v, n, host);
			p = h;
		}
	}
	return n;
}
