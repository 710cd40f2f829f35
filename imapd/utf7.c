/*
 * utf7.c - folder names on the wire: modified UTF-7 (RFC 3501 section
 * 5.1.3).  The store keeps UTF-8 names; clients send and expect "&-" for
 * '&' and "&...-" runs of UTF-16 in modified base64 (',' for '/') for
 * anything outside printable ASCII.  8-bit bytes are refused: RFC 3501
 * names are 7-bit (UTF8=ACCEPT, RFC 6855, is not offered), and a name
 * taken raw would come back mUTF-7 encoded in LIST as another name.
 */
#include "imapd/imapd.h"

#include <string.h>

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

static int b64val(unsigned char c)
{
	const char *p = c ? strchr(b64, c) : NULL;
	return p ? (int)(p - b64) : -1;
}

static void put_utf8(struct buf *out, uint32_t cp)
{
	char t[4];
	size_t n;
	if (cp < 0x80) {
		t[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		t[0] = (char)(0xc0 | (cp >> 6));
		t[1] = (char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		t[0] = (char)(0xe0 | (cp >> 12));
		t[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		t[2] = (char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		t[0] = (char)(0xf0 | (cp >> 18));
		t[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		t[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
		t[3] = (char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	buf_append(out, t, n);
}

char *mutf7_decode(const char *in)
{
	struct buf out;
	buf_init(&out, 4096);
	buf_puts(&out, "");
	for (const unsigned char *p = (const unsigned char *)in; *p;) {
		if (*p >= 0x80 || *p < 0x20)
			goto bad;
		if (*p != '&') {
			buf_putc(&out, (char)*p++);
			continue;
		}
		p++;
		if (*p == '-') {
			buf_putc(&out, '&');
			p++;
			continue;
		}
		uint32_t bits = 0, hi = 0;
		int nbits = 0;
		size_t units = 0;
		while (*p && *p != '-') {
			int v = b64val(*p++);
			if (v < 0)
				goto bad;
			bits = (bits << 6) | (uint32_t)v;
			nbits += 6;
			if (nbits >= 16) {
				nbits -= 16;
				uint32_t u = (bits >> nbits) & 0xffff;
				units++;
				if (hi) {
					if (u < 0xdc00 || u > 0xdfff)
						goto bad;
					put_utf8(&out, 0x10000 + ((hi - 0xd800) << 10) + (u - 0xdc00));
					hi = 0;
				} else if (u >= 0xd800 && u <= 0xdbff) {
					hi = u;
				} else if ((u >= 0xdc00 && u <= 0xdfff) || u < 0x20 || (u >= 0x20 && u < 0x7f)) {
					/* Lone low surrogate, or ASCII that must not be encoded. */
					goto bad;
				} else {
					put_utf8(&out, u);
				}
			}
		}
		if (*p != '-' || hi || units == 0 || (bits & ((1u << nbits) - 1)) != 0)
			goto bad;
		p++;
	}
	char *r = xstrdup(out.data);
	buf_free(&out);
	return r;
bad:
	buf_free(&out);
	return NULL;
}

static void flush_b64(struct buf *out, const uint16_t *u, size_t n)
{
	uint32_t bits = 0;
	int nbits = 0;
	buf_putc(out, '&');
	for (size_t i = 0; i < n; i++) {
		bits = (bits << 16) | u[i];
		nbits += 16;
		while (nbits >= 6) {
			nbits -= 6;
			buf_putc(out, b64[(bits >> nbits) & 0x3f]);
		}
	}
	if (nbits)
		buf_putc(out, b64[(bits << (6 - nbits)) & 0x3f]);
	buf_putc(out, '-');
}

char *mutf7_encode(const char *in)
{
	struct buf out;
	buf_init(&out, 8192);
	buf_puts(&out, "");
	uint16_t units[600];
	size_t nu = 0;
	for (const unsigned char *p = (const unsigned char *)in; *p;) {
		uint32_t cp;
		size_t len = 1;
		if (*p < 0x80)
			cp = *p;
		else if ((*p & 0xe0) == 0xc0 && (p[1] & 0xc0) == 0x80) {
			cp = ((uint32_t)(*p & 0x1f) << 6) | (p[1] & 0x3f);
			len = 2;
		} else if ((*p & 0xf0) == 0xe0 && (p[1] & 0xc0) == 0x80 && (p[2] & 0xc0) == 0x80) {
			cp = ((uint32_t)(*p & 0x0f) << 12) | ((uint32_t)(p[1] & 0x3f) << 6) | (p[2] & 0x3f);
			len = 3;
		} else if ((*p & 0xf8) == 0xf0 && (p[1] & 0xc0) == 0x80 && (p[2] & 0xc0) == 0x80 &&
			   (p[3] & 0xc0) == 0x80) {
			cp = ((uint32_t)(*p & 0x07) << 18) | ((uint32_t)(p[1] & 0x3f) << 12) |
			     ((uint32_t)(p[2] & 0x3f) << 6) | (p[3] & 0x3f);
			len = 4;
		} else
			cp = 0xfffd; /* invalid UTF-8 (the store refuses it anyway) */
		p += len;
		if (cp >= 0x20 && cp < 0x7f) {
			if (nu) {
				flush_b64(&out, units, nu);
				nu = 0;
			}
			if (cp == '&')
				buf_puts(&out, "&-");
			else
				buf_putc(&out, (char)cp);
			continue;
		}
		if (nu + 2 > ARRAY_SIZE(units)) {
			flush_b64(&out, units, nu);
			nu = 0;
		}
		if (cp >= 0x10000) {
			cp -= 0x10000;
			units[nu++] = (uint16_t)(0xd800 + (cp >> 10));
			units[nu++] = (uint16_t)(0xdc00 + (cp & 0x3ff));
		} else
			units[nu++] = (uint16_t)cp;
	}
	if (nu)
		flush_b64(&out, units, nu);
	char *r = xstrdup(out.data);
	buf_free(&out);
	return r;
}
