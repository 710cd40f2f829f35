/*
 * decode.c - the text of a MIME part as rules see it: transfer encoding
 * undone, charset converted to UTF-8 (rules-private.h; view.c finds the
 * parts and calls this for each text part).
 *
 * Transfer encodings: base64 and quoted-printable are decoded by GMime's
 * streaming decoder; every other value (7bit, 8bit, binary, x-uuencode,
 * unknown ones, none) is read as it is.
 *
 * Charsets: none, us-ascii or utf-8: valid UTF-8 is kept, other bytes are
 * read as windows-1252; iso-8859-1 (latin1, ...) is read as windows-1252
 * as browsers do; others through iconv (GMime's aliases), invalid bytes
 * as U+FFFD; an unknown charset is handled like none.  NULs become
 * blanks.
 *
 * Bounds: the caller's budget caps the input read as it is, the
 * transfer-decoded octets and the UTF-8 result (buffers that refuse to
 * grow past it: the text stops at or before the budget, never an error);
 * base64 and quoted-printable are decoded 16 KiB at a time.
 *
 * GMime must have been initialised (view.c does, through mime_init).
 */
#include "rules/rules-private.h"

#include <errno.h>
#include <iconv.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <gmime/gmime.h>

static const unsigned short cp1252[32] = {
	0x20AC, 0xFFFD, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
	0x2039, 0x0152, 0xFFFD, 0x017D, 0xFFFD, 0xFFFD, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
	0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0xFFFD, 0x017E, 0x0178,
};

/* Length of the valid UTF-8 sequence at p, 0 when there is none. */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
	unsigned c = p[0];
	size_t len = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3
		   : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
	if (len == 0 || len > n)
		return 0;
	for (size_t i = 1; i < len; i++)
		if ((p[i] & 0xC0) != 0x80)
			return 0;
	if ((c == 0xE0 && p[1] < 0xA0) || (c == 0xED && p[1] > 0x9F) || (c == 0xF0 && p[1] < 0x90) ||
	    (c == 0xF4 && p[1] > 0x8F))
		return 0;
	return len;
}

/* Bytes as windows-1252, except valid UTF-8 sequences when mixed. */
static void from_8bit(const char *in, size_t len, struct buf *out, bool mixed)
{
	const unsigned char *p = (const unsigned char *)in;
	for (size_t i = 0; i < len;) {
		size_t run = i;
		while (run < len && p[run] < 0x80)
			run++;
		if (run > i && buf_append(out, p + i, run - i) != 0)
			return;
		if ((i = run) >= len)
			break;
		size_t sl = mixed ? utf8_seq(p + i, len - i) : 0;
		if (sl) {
			if (buf_append(out, p + i, sl) != 0)
				return;
			i += sl;
			continue;
		}
		unsigned cp = p[i] < 0xA0 ? cp1252[p[i] - 0x80] : p[i];
		char u[3];
		size_t ul = cp < 0x800 ? 2 : 3;
		if (ul == 2) {
			u[0] = (char)(0xC0 | (cp >> 6));
			u[1] = (char)(0x80 | (cp & 0x3F));
		} else {
			u[0] = (char)(0xE0 | (cp >> 12));
			u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
			u[2] = (char)(0x80 | (cp & 0x3F));
		}
		if (buf_append(out, u, ul) != 0)
			return;
		i++;
	}
}

static bool charset_in(const char *cs, const char *list)
{
	char one[64];
	for (const char *s = list; *s;) {
		size_t n = strcspn(s, " ");
		if (n < sizeof one) {
			memcpy(one, s, n);
			one[n] = '\0';
			if (strcasecmp(cs, one) == 0)
				return true;
		}
		s += n + (s[n] == ' ');
	}
	return false;
}

static void to_utf8(const char *cs, const char *in, size_t len, struct buf *out)
{
	if (cs == NULL || charset_in(cs, "us-ascii ascii utf-8 utf8 us ansi_x3.4-1968 unknown-8bit "
					 "x-unknown default x-user-defined")) {
		from_8bit(in, len, out, true);
		return;
	}
	if (charset_in(cs, "iso-8859-1 iso8859-1 iso_8859-1 latin1 latin-1 l1 windows-1252 cp1252 "
			   "x-cp1252")) {
		from_8bit(in, len, out, false);
		return;
	}
	iconv_t cd = g_mime_iconv_open("UTF-8", g_mime_charset_iconv_name(cs));
	if (cd == (iconv_t)-1) {
		from_8bit(in, len, out, true);
		return;
	}
	char *ip = (char *)in, obuf[16384];
	size_t il = len;
	bool ok = true;
	while (ok && il > 0) {
		char *op = obuf;
		size_t ol = sizeof obuf;
		size_t r = iconv(cd, &ip, &il, &op, &ol);
		int err = r == (size_t)-1 ? errno : 0;
		ok = buf_append(out, obuf, sizeof obuf - ol) == 0;
		if (ok && err && err != E2BIG) {
			ok = buf_append(out, "\xef\xbf\xbd", 3) == 0;
			ip++;
			il--;
		}
	}
	char *op = obuf;
	size_t ol = sizeof obuf;
	iconv(cd, NULL, NULL, &op, &ol);
	if (ok)
		buf_append(out, obuf, sizeof obuf - ol);
	g_mime_iconv_close(cd);
}

enum text_enc text_enc_parse(const char *cte)
{
	GMimeContentEncoding enc = cte ? g_mime_content_encoding_from_string(cte)
				       : GMIME_CONTENT_ENCODING_DEFAULT;
	return enc == GMIME_CONTENT_ENCODING_BASE64 ? TE_BASE64
	     : enc == GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE ? TE_QP : TE_NONE;
}

char *text_decode(const char *p, size_t len, enum text_enc enc, const char *charset, size_t budget,
		  size_t *len_r)
{
	struct buf raw, out;
	buf_init(&raw, budget);
	buf_init(&out, budget);
	if (enc == TE_BASE64 || enc == TE_QP) {
		enum { CHUNK = 16384 };
		GMimeEncoding st;
		g_mime_encoding_init_decode(&st, enc == TE_BASE64 ? GMIME_CONTENT_ENCODING_BASE64
								  : GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE);
		char *obuf = xmalloc(g_mime_encoding_outlen(&st, CHUNK) + 16);
		bool ok = true;
		for (size_t off = 0; ok && off < len; off += CHUNK) {
			size_t il = len - off < CHUNK ? len - off : CHUNK;
			size_t ol = g_mime_encoding_step(&st, p + off, il, obuf);
			ok = buf_append(&raw, obuf, ol) == 0;
		}
		if (ok)
			buf_append(&raw, obuf, g_mime_encoding_flush(&st, "", 0, obuf));
		free(obuf);
		p = raw.data ? raw.data : "";
		len = raw.len;
	} else if (len > budget) {
		len = budget;
	}
	to_utf8(charset, p, len, &out);
	buf_free(&raw);
	for (size_t i = 0; i < out.len; i++)
		if (out.data[i] == '\0')
			out.data[i] = ' ';
	*len_r = out.len;
	return out.data ? out.data : xstrdup("");
}
