/*
 * test_mime.c - the MIME module: ENVELOPE, BODYSTRUCTURE, BODY[section],
 * decoded header and body text for SEARCH, dates, case-folded substring
 * search, IMAP strings; malformed and hostile input; agreement of the
 * part sizes with GMime's own parser.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <gmime/gmime.h>

#include "common/common.h"
#include "common/mime.h"

/* ------------------------------------------------------------ helpers */

/* The test messages are written with LF; the module sees CRLF. */
static char *crlf(const char *s, size_t *len_r)
{
	size_t n = strlen(s);
	char *o = xmalloc(n * 2 + 1);
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\n')
			o[k++] = '\r';
		o[k++] = s[i];
	}
	o[k] = '\0';
	*len_r = k;
	return o;
}

struct tmsg {
	char *data;
	size_t len;
	struct mime_msg *m;
};

static struct tmsg tparse(const char *lf_text)
{
	struct tmsg t;
	t.data = crlf(lf_text, &t.len);
	t.m = mime_parse(t.data, t.len);
	return t;
}

static void tfree(struct tmsg *t)
{
	mime_free(&t->m);
	assert_null(t->m);
	free(t->data);
}

static char *bodystructure(const struct mime_msg *m, bool ext)
{
	struct buf b;
	buf_init(&b, 1 << 24);
	mime_bodystructure(m, ext, &b);
	return b.data ? b.data : xstrdup("");
}

static char *envelope(const struct mime_msg *m)
{
	struct buf b;
	buf_init(&b, 1 << 24);
	mime_envelope(m, &b);
	return b.data ? b.data : xstrdup("");
}

/* BODY[section] for a part path such as "2.1" (NULL or "" = none). */
static int section(const struct mime_msg *m, const char *path, enum mime_section_kind kind,
		   const char *const *fields, size_t nfields, struct buf *out)
{
	uint32_t parts[64];
	size_t np = 0;
	if (path && *path) {
		const char *p = path;
		while (*p && np < 64) {
			char *e;
			parts[np++] = (uint32_t)strtoul(p, &e, 10);
			p = *e == '.' ? e + 1 : e;
		}
	}
	struct mime_section sec = { parts, np, kind, fields, nfields };
	buf_reset(out);
	return mime_section_get(m, &sec, out);
}

/* The section as a string (empty string for empty). */
static char *sect(const struct mime_msg *m, const char *path, enum mime_section_kind kind)
{
	struct buf b;
	buf_init(&b, 1 << 24);
	assert_int_equal(section(m, path, kind, NULL, 0, &b), 0);
	return b.data ? b.data : xstrdup("");
}

static void assert_sect(const struct mime_msg *m, const char *path, enum mime_section_kind kind,
			const char *lf_expected)
{
	size_t n;
	char *want = crlf(lf_expected, &n);
	char *got = sect(m, path, kind);
	assert_string_equal(got, want);
	free(got);
	free(want);
}

/* ---------------------------------------- a small IMAP response parser */

/* Enough of RFC 3501's syntax to walk a BODYSTRUCTURE: lists, NIL,
 * numbers/atoms, quoted strings and literals. */
enum sx_kind { SX_NIL, SX_ATOM, SX_STRING, SX_LIST };
struct sx {
	enum sx_kind kind;
	char *s;            /* ATOM, STRING */
	size_t slen;
	struct sx **v;      /* LIST */
	size_t n;
};

static struct sx *sx_parse(const char **pp)
{
	const char *p = *pp;
	while (*p == ' ')
		p++;
	struct sx *x = xcalloc(1, sizeof *x);
	if (*p == '(') {
		x->kind = SX_LIST;
		p++;
		for (;;) {
			while (*p == ' ')
				p++;
			if (*p == ')') {
				p++;
				break;
			}
			assert_true(*p != '\0');
			x->v = xrealloc(x->v, (x->n + 1) * sizeof *x->v);
			x->v[x->n++] = sx_parse(&p);
		}
	} else if (*p == '"') {
		x->kind = SX_STRING;
		struct buf b;
		buf_init(&b, 1 << 20);
		p++;
		while (*p && *p != '"') {
			if (*p == '\\')
				p++;
			buf_putc(&b, *p++);
		}
		assert_int_equal(*p, '"');
		p++;
		x->s = b.data ? b.data : xstrdup("");
		x->slen = b.len;
	} else if (*p == '{') {
		x->kind = SX_STRING;
		char *e;
		size_t n = strtoul(p + 1, &e, 10);
		assert_memory_equal(e, "}\r\n", 3);
		p = e + 3;
		x->s = xstrndup(p, n);
		x->slen = n;
		p += n;
	} else {
		const char *s = p;
		while (*p && *p != ' ' && *p != '(' && *p != ')')
			p++;
		assert_true(p > s);
		x->s = xstrndup(s, (size_t)(p - s));
		x->slen = (size_t)(p - s);
		x->kind = strcmp(x->s, "NIL") == 0 ? SX_NIL : SX_ATOM;
	}
	*pp = p;
	return x;
}

static void sx_free(struct sx *x)
{
	if (!x)
		return;
	for (size_t i = 0; i < x->n; i++)
		sx_free(x->v[i]);
	free(x->v);
	free(x->s);
	free(x);
}

static size_t count_lines(const char *p, size_t n)
{
	size_t l = 0, i = 0;
	for (; i < n; i++)
		if (p[i] == '\n')
			l++;
	if (n && p[n - 1] != '\n')
		l++;
	return l;
}

/* For every leaf of the BODYSTRUCTURE: BODY[path] has exactly the size
 * it states, and the line count of text/ and message/rfc822 parts is
 * right.  Returns the number of leaves checked. */
static size_t check_leaves(const struct mime_msg *m, const struct sx *body, const char *path, bool top)
{
	assert_int_equal(body->kind, SX_LIST);
	assert_true(body->n >= 2);
	char sub[256];
	size_t checked = 0;
	if (body->v[0]->kind == SX_LIST) {
		/* multipart: children, then the subtype */
		size_t k = 0;
		for (size_t i = 0; i < body->n && body->v[i]->kind == SX_LIST; i++) {
			k++;
			snprintf(sub, sizeof sub, "%s%s%zu", path, *path ? "." : "", k);
			checked += check_leaves(m, body->v[i], sub, false);
		}
		assert_true(k >= 1);
		return checked;
	}
	/* A single-part message: its body is part 1. */
	if (top)
		path = "1";
	assert_true(body->n >= 7);
	struct buf b;
	buf_init(&b, 1 << 24);
	assert_int_equal(section(m, path, MIME_SEC_PART, NULL, 0, &b), 0);
	assert_int_equal(body->v[6]->kind, SX_ATOM);
	size_t size = strtoul(body->v[6]->s, NULL, 10);
	assert_int_equal(b.len, size);
	const char *type = body->v[0]->s, *subtype = body->v[1]->s;
	if (strcasecmp(type, "text") == 0) {
		assert_true(body->n >= 8);
		assert_int_equal(strtoul(body->v[7]->s, NULL, 10), count_lines(b.data, b.len));
	} else if (strcasecmp(type, "message") == 0 && strcasecmp(subtype, "rfc822") == 0) {
		assert_true(body->n >= 10);
		assert_int_equal(strtoul(body->v[9]->s, NULL, 10), count_lines(b.data, b.len));
		/* Inside, part numbers continue below this one; a
		 * non-multipart encapsulated message has only .1. */
		const struct sx *inner = body->v[8];
		if (inner->v[0]->kind == SX_LIST) {
			checked += check_leaves(m, inner, path, false);
		} else {
			snprintf(sub, sizeof sub, "%s.1", path);
			checked += check_leaves(m, inner, sub, false);
		}
	}
	buf_free(&b);
	return checked + 1;
}

static size_t check_consistency(const struct mime_msg *m)
{
	size_t total = 0;
	for (int ext = 0; ext < 2; ext++) {
		char *bs = bodystructure(m, ext);
		const char *p = bs;
		struct sx *x = sx_parse(&p);
		assert_int_equal(*p, '\0');
		total = check_leaves(m, x, "", true);
		sx_free(x);
		free(bs);
	}
	return total;
}

/* ------------------------------------------------------- the messages */

static const char *plain_msg =
	"Date: Mon, 7 Feb 1994 21:52:25 -0800\n"
	"From: Fred Foobar <foobar@Blurdybloop.example>\n"
	"Subject: afternoon meeting\n"
	"To: mooch@owatagu.example\n"
	"Message-Id: <B27397-0100000@Blurdybloop.example>\n"
	"MIME-Version: 1.0\n"
	"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\n"
	"\n"
	"Hello Joe, do you think we can meet at 3:30 tomorrow?\n"
	"\n"
	"Fred\n";

static const char *alt_msg =
	"From: a@example.com\n"
	"Subject: alt\n"
	"Content-Type: multipart/alternative; boundary=\"XX\"\n"
	"\n"
	"preamble\n"
	"--XX\n"
	"Content-Type: text/plain; charset=utf-8\n"
	"\n"
	"plain text\n"
	"--XX\n"
	"Content-Type: text/html; charset=utf-8\n"
	"Content-Transfer-Encoding: quoted-printable\n"
	"\n"
	"<p>html</p>\n"
	"two lines\n"
	"--XX--\n"
	"epilogue\n";

static const char *mixed_msg =
	"From: \"Joe Q. Public\" <john.q.public@example.com>\n"
	"To: Mary Smith <mary@x.test>, jdoe@one.test\n"
	"Subject: mixed\n"
	"Date: Fri, 21 Nov 1997 09:55:06 -0600\n"
	"MIME-Version: 1.0\n"
	"Content-Type: multipart/mixed; boundary=\"outer\"\n"
	"\n"
	"This is a multi-part message in MIME format.\n"
	"--outer\n"
	"Content-Type: multipart/alternative; boundary=inner\n"
	"\n"
	"--inner\n"
	"Content-Type: text/plain\n"
	"\n"
	"Hi there\n"
	"--inner\n"
	"Content-Type: text/html\n"
	"\n"
	"<b>Hi</b> there\n"
	"--inner--\n"
	"\n"
	"--outer\n"
	"Content-Type: message/rfc822\n"
	"Content-Description: forwarded\n"
	"\n"
	"From: Inner Sender <inner@example.org>\n"
	"Subject: inner subject\n"
	"Content-Type: multipart/mixed; boundary=emb\n"
	"\n"
	"--emb\n"
	"Content-Type: text/plain; charset=iso-8859-1\n"
	"Content-Transfer-Encoding: quoted-printable\n"
	"\n"
	"Caf=E9 au lait\n"
	"--emb\n"
	"Content-Type: application/pdf; name=doc.pdf\n"
	"Content-Transfer-Encoding: base64\n"
	"\n"
	"JVBERi0xLjQK\n"
	"--emb--\n"
	"--outer\n"
	"Content-Type: application/octet-stream; name=\"data.bin\"\n"
	"Content-Transfer-Encoding: base64\n"
	"Content-Disposition: attachment; filename*=utf-8''%E2%82%AC.bin\n"
	"Content-ID: <id1@example.com>\n"
	"Content-Language: en, de\n"
	"Content-Location: http://example.com/data.bin\n"
	"\n"
	"AAECAwQFBgcICQ==\n"
	"--outer--\n";

/* ----------------------------------------------------------- the tests */

static void test_plain(void **state)
{
	(void)state;
	struct tmsg t = tparse(plain_msg);
	char *env = envelope(t.m);
	assert_string_equal(env,
		"(\"Mon, 7 Feb 1994 21:52:25 -0800\" \"afternoon meeting\" "
		"((\"Fred Foobar\" NIL \"foobar\" \"Blurdybloop.example\")) "
		"((\"Fred Foobar\" NIL \"foobar\" \"Blurdybloop.example\")) "
		"((\"Fred Foobar\" NIL \"foobar\" \"Blurdybloop.example\")) "
		"((NIL NIL \"mooch\" \"owatagu.example\")) NIL NIL NIL "
		"\"<B27397-0100000@Blurdybloop.example>\")");
	free(env);
	char *bs = bodystructure(t.m, false);
	assert_string_equal(bs, "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7bit\" 63 3)");
	free(bs);
	bs = bodystructure(t.m, true);
	assert_string_equal(bs, "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7bit\" 63 3 "
				"NIL NIL NIL NIL)");
	free(bs);

	const char *body = "Hello Joe, do you think we can meet at 3:30 tomorrow?\n\nFred\n";
	assert_sect(t.m, "1", MIME_SEC_PART, body);
	assert_sect(t.m, "", MIME_SEC_TEXT, body);
	assert_sect(t.m, "", MIME_SEC_PART, plain_msg);
	char *hdr = sect(t.m, "", MIME_SEC_HEADER);
	assert_int_equal(strlen(hdr) + 63, t.len);
	assert_true(strlen(hdr) >= 4 && strcmp(hdr + strlen(hdr) - 4, "\r\n\r\n") == 0);
	/* For a single-part message, 1.MIME is the message header. */
	char *mime1 = sect(t.m, "1", MIME_SEC_MIME);
	assert_string_equal(mime1, hdr);
	free(mime1);
	free(hdr);
	/* Only part 1 exists; MIME of the message itself is invalid. */
	assert_sect(t.m, "2", MIME_SEC_PART, "");
	assert_sect(t.m, "1.1", MIME_SEC_PART, "");
	struct buf b;
	buf_init(&b, 1 << 20);
	assert_int_equal(section(t.m, "", MIME_SEC_MIME, NULL, 0, &b), -1);
	assert_int_equal(section(t.m, "0", MIME_SEC_PART, NULL, 0, &b), -1);
	/* HEADER of a part that is not message/rfc822: empty. */
	assert_int_equal(section(t.m, "1", MIME_SEC_HEADER, NULL, 0, &b), 0);
	assert_int_equal(b.len, 0);
	buf_free(&b);
	assert_int_equal(check_consistency(t.m), 1);
	tfree(&t);
}

static void test_alternative(void **state)
{
	(void)state;
	struct tmsg t = tparse(alt_msg);
	char *bs = bodystructure(t.m, false);
	assert_string_equal(bs,
		"((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 10 1)"
		"(\"text\" \"html\" (\"charset\" \"utf-8\") NIL NIL \"quoted-printable\" 22 2) "
		"\"alternative\")");
	free(bs);
	bs = bodystructure(t.m, true);
	assert_string_equal(bs,
		"((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 10 1 NIL NIL NIL NIL)"
		"(\"text\" \"html\" (\"charset\" \"utf-8\") NIL NIL \"quoted-printable\" 22 2 NIL NIL NIL NIL) "
		"\"alternative\" (\"boundary\" \"XX\") NIL NIL NIL)");
	free(bs);
	/* The CRLF before a delimiter belongs to the delimiter. */
	assert_sect(t.m, "1", MIME_SEC_PART, "plain text");
	assert_sect(t.m, "2", MIME_SEC_PART, "<p>html</p>\ntwo lines");
	assert_sect(t.m, "2", MIME_SEC_MIME,
		    "Content-Type: text/html; charset=utf-8\n"
		    "Content-Transfer-Encoding: quoted-printable\n\n");
	assert_sect(t.m, "3", MIME_SEC_PART, "");
	/* TEXT of the message: preamble through epilogue. */
	char *text = sect(t.m, "", MIME_SEC_TEXT);
	assert_true(strncmp(text, "preamble\r\n--XX\r\n", 16) == 0);
	assert_true(strcmp(text + strlen(text) - 18, "--XX--\r\nepilogue\r\n") == 0);
	free(text);
	assert_int_equal(check_consistency(t.m), 2);
	tfree(&t);
}

static void test_mixed_sections(void **state)
{
	(void)state;
	struct tmsg t = tparse(mixed_msg);
	char *bs = bodystructure(t.m, true);
	/* multipart/alternative inside */
	assert_non_null(strstr(bs, "(((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 8 1 "
				   "NIL NIL NIL NIL)(\"text\" \"html\" (\"charset\" \"us-ascii\") NIL NIL "
				   "\"7bit\" 15 1 NIL NIL NIL NIL) \"alternative\" (\"boundary\" \"inner\") "
				   "NIL NIL NIL)"));
	/* the message/rfc822 part with its envelope and body */
	assert_non_null(strstr(bs, "(\"message\" \"rfc822\" NIL NIL \"forwarded\" \"7bit\" "));
	assert_non_null(strstr(bs, "(NIL \"inner subject\" ((\"Inner Sender\" NIL \"inner\" \"example.org\"))"));
	assert_non_null(strstr(bs, "(\"application\" \"pdf\" (\"name\" \"doc.pdf\") NIL NIL \"base64\" 12 "
				   "NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"emb\") NIL NIL NIL)"));
	/* the attachment: RFC 2231 filename, id, languages, location */
	assert_non_null(strstr(bs, "(\"application\" \"octet-stream\" (\"name\" \"data.bin\") "
				   "\"<id1@example.com>\" NIL \"base64\" 16 NIL "
				   "(\"attachment\" (\"filename*\" \"utf-8''%E2%82%AC.bin\")) (\"en\" \"de\") "
				   "\"http://example.com/data.bin\") \"mixed\" (\"boundary\" \"outer\") NIL NIL NIL)"));
	free(bs);

	/* BODY[1] is the whole alternative body, its own delimiters included. */
	assert_sect(t.m, "1", MIME_SEC_PART,
		    "--inner\nContent-Type: text/plain\n\nHi there\n--inner\nContent-Type: text/html\n\n"
		    "<b>Hi</b> there\n--inner--\n");
	assert_sect(t.m, "1.1", MIME_SEC_PART, "Hi there");
	assert_sect(t.m, "1.2", MIME_SEC_PART, "<b>Hi</b> there");
	assert_sect(t.m, "1.2", MIME_SEC_MIME, "Content-Type: text/html\n\n");
	assert_sect(t.m, "2", MIME_SEC_MIME, "Content-Type: message/rfc822\nContent-Description: forwarded\n\n");
	assert_sect(t.m, "2", MIME_SEC_HEADER,
		    "From: Inner Sender <inner@example.org>\nSubject: inner subject\n"
		    "Content-Type: multipart/mixed; boundary=emb\n\n");
	assert_sect(t.m, "2.1", MIME_SEC_PART, "Caf=E9 au lait");
	assert_sect(t.m, "2.2", MIME_SEC_PART, "JVBERi0xLjQK");
	assert_sect(t.m, "2.2", MIME_SEC_MIME,
		    "Content-Type: application/pdf; name=doc.pdf\nContent-Transfer-Encoding: base64\n\n");
	char *text2 = sect(t.m, "2", MIME_SEC_TEXT);
	assert_true(strncmp(text2, "--emb\r\n", 7) == 0);
	/* (the CRLF after "--emb--" belongs to the next outer delimiter) */
	assert_true(strcmp(text2 + strlen(text2) - 9, "\r\n--emb--") == 0);
	free(text2);
	/* BODY[2] is the whole encapsulated message. */
	char *p2 = sect(t.m, "2", MIME_SEC_PART);
	assert_true(strncmp(p2, "From: Inner Sender", 18) == 0);
	assert_true(strcmp(p2 + strlen(p2) - 9, "\r\n--emb--") == 0);
	free(p2);
	assert_sect(t.m, "3", MIME_SEC_PART, "AAECAwQFBgcICQ==");
	assert_sect(t.m, "4", MIME_SEC_PART, "");
	assert_sect(t.m, "2.3", MIME_SEC_PART, "");
	assert_sect(t.m, "3.2", MIME_SEC_PART, "");
	assert_sect(t.m, "1.1.2", MIME_SEC_PART, "");
	assert_sect(t.m, "1.1.1.1", MIME_SEC_PART, "");
	/* As in Dovecot, a trailing .1 on a leaf names the leaf itself. */
	assert_sect(t.m, "1.1.1", MIME_SEC_PART, "Hi there");

	/* HEADER.FIELDS: case-insensitive, in message order, final CRLF. */
	struct buf b;
	buf_init(&b, 1 << 20);
	const char *const want[] = { "subject", "FROM" };
	assert_int_equal(section(t.m, NULL, MIME_SEC_HEADER_FIELDS, want, 2, &b), 0);
	assert_string_equal(b.data, "From: \"Joe Q. Public\" <john.q.public@example.com>\r\n"
				    "Subject: mixed\r\n\r\n");
	const char *const not[] = { "From", "to", "Subject", "Date", "Content-Type" };
	assert_int_equal(section(t.m, NULL, MIME_SEC_HEADER_FIELDS_NOT, not, 5, &b), 0);
	assert_string_equal(b.data, "MIME-Version: 1.0\r\n\r\n");
	const char *const none[] = { "X-Nothing" };
	assert_int_equal(section(t.m, NULL, MIME_SEC_HEADER_FIELDS, none, 1, &b), 0);
	assert_string_equal(b.data, "\r\n");
	/* on the encapsulated message */
	const char *const subj[] = { "Subject" };
	assert_int_equal(section(t.m, "2", MIME_SEC_HEADER_FIELDS, subj, 1, &b), 0);
	assert_string_equal(b.data, "Subject: inner subject\r\n\r\n");
	/* MIME with no part: invalid */
	assert_int_equal(section(t.m, NULL, MIME_SEC_MIME, NULL, 0, &b), -1);
	buf_free(&b);

	assert_int_equal(check_consistency(t.m), 6); /* 2 is counted too */
	tfree(&t);
}

static void test_rfc2231_params(void **state)
{
	(void)state;
	struct tmsg t = tparse(
		"Content-Type: application/x-stuff;\n"
		" title*0*=us-ascii'en'This%20is%20even%20more%20;\n"
		" title*1*=%2A%2A%2Afun%2A%2A%2A%20;\n"
		" title*2=\"isn't it!\"; Name=\"A \\\"q\\\" b\"\n"
		"Content-Disposition: inline; filename*=iso-8859-1''caf%E9.txt\n"
		"\n"
		"x\n");
	char *bs = bodystructure(t.m, true);
	assert_string_equal(bs,
		"(\"application\" \"x-stuff\" (\"title\" \"This is even more ***fun*** isn't it!\" "
		"\"Name\" \"A \\\"q\\\" b\") NIL NIL \"7bit\" 3 NIL "
		"(\"inline\" (\"filename*\" \"utf-8''caf%C3%A9.txt\")) NIL NIL)");
	free(bs);
	tfree(&t);
}

static void test_header_text(void **state)
{
	(void)state;
	struct tmsg t = tparse(
		"Subject: =?iso-8859-1?q?Caf=E9?= and\n"
		" =?utf-8?b?4oKs?= price\n"
		"From: =?utf-8?q?J=C3=B6rg?= <j@x.test>\n"
		"X-Dup: one\n"
		"x-dup: two\n"
		"\n"
		"body\n");
	struct buf b;
	buf_init(&b, 1 << 20);
	assert_true(mime_header_text(t.m, "subject", &b));
	assert_string_equal(b.data, "Café and € price");
	buf_reset(&b);
	assert_true(mime_header_text(t.m, "X-DUP", &b));
	assert_string_equal(b.data, "one\ntwo");
	buf_reset(&b);
	assert_false(mime_header_text(t.m, "Cc", &b));
	assert_int_equal(b.len, 0);
	assert_true(mime_header_text(t.m, NULL, &b));
	assert_string_equal(b.data, "Subject: Café and € price\nFrom: Jörg <j@x.test>\n"
				    "X-Dup: one\nx-dup: two\n");
	/* The ENVELOPE keeps the raw, encoded subject (unfolded). */
	char *env = envelope(t.m);
	assert_non_null(strstr(env, "\"=?iso-8859-1?q?Caf=E9?= and =?utf-8?b?4oKs?= price\""));
	/* A non-ASCII display name goes out as encoded-words. */
	assert_non_null(strstr(env, "((\"=?UTF-8?b?SsO2cmc=?=\" NIL \"j\" \"x.test\"))"));
	free(env);
	buf_free(&b);
	tfree(&t);
}

static void test_envelope_groups(void **state)
{
	(void)state;
	struct tmsg t = tparse(
		"From: Alice <alice@a.test>\n"
		"Sender: \n"
		"Reply-To: replies@a.test\n"
		"To: A Group: bob@b.test, \"Carol C\" <carol@c.test>;, dave@d.test\n"
		"Cc: undisclosed-recipients:;\n"
		"In-Reply-To: <parent@a.test>\n"
		"\n"
		"x\n");
	char *env = envelope(t.m);
	assert_string_equal(env,
		"(NIL NIL ((\"Alice\" NIL \"alice\" \"a.test\")) ((\"Alice\" NIL \"alice\" \"a.test\")) "
		"((NIL NIL \"replies\" \"a.test\")) "
		"((NIL NIL \"A Group\" NIL)(NIL NIL \"bob\" \"b.test\")(\"Carol C\" NIL \"carol\" \"c.test\")"
		"(NIL NIL NIL NIL)(NIL NIL \"dave\" \"d.test\")) "
		"((NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL)) NIL "
		"\"<parent@a.test>\" NIL)");
	free(env);
	tfree(&t);

	/* No header at all: every member NIL. */
	t = tparse("\nbody only\n");
	env = envelope(t.m);
	assert_string_equal(env, "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
	free(env);
	assert_sect(t.m, "", MIME_SEC_HEADER, "\n");
	assert_sect(t.m, "1", MIME_SEC_PART, "body only\n");
	tfree(&t);

	/* A mailbox without a domain; a quoted string that needs escapes. */
	t = tparse("From: \"a \\\"b\\\" c\" <local>\nSubject: back\\slash \"q\"\n\n");
	env = envelope(t.m);
	assert_string_equal(env, "(NIL \"back\\\\slash \\\"q\\\"\" ((\"a \\\"b\\\" c\" NIL \"local\" \"\")) "
				 "((\"a \\\"b\\\" c\" NIL \"local\" \"\")) ((\"a \\\"b\\\" c\" NIL \"local\" \"\")) "
				 "NIL NIL NIL NIL NIL)");
	free(env);
	tfree(&t);
}

static void test_body_text(void **state)
{
	(void)state;
	struct tmsg t = tparse(mixed_msg);
	struct buf b;
	buf_init(&b, 1 << 24);
	mime_body_text(t.m, &b);
	/* text parts only (html as is), QP latin-1 decoded to UTF-8 */
	assert_string_equal(b.data, "Hi there\n<b>Hi</b> there\nCafé au lait");
	tfree(&t);

	t = tparse("Content-Type: text/plain; charset=windows-1252\n"
		   "Content-Transfer-Encoding: base64\n\n"
		   "gCBwcmljZQ==\n");
	buf_reset(&b);
	mime_body_text(t.m, &b);
	assert_string_equal(b.data, "€ price");
	tfree(&t);

	/* Invalid bytes for the charset: replaced, no failure. */
	t = tparse("Content-Type: text/plain; charset=utf-16\n\nab\n");
	buf_reset(&b);
	mime_body_text(t.m, &b);
	assert_true(b.len > 0);
	tfree(&t);

	/* Unknown charset: passed through. */
	t = tparse("Content-Type: text/plain; charset=x-no-such\n\nplain\n");
	buf_reset(&b);
	mime_body_text(t.m, &b);
	assert_string_equal(b.data, "plain\r\n");
	tfree(&t);

	/* The output respects the buffer's max. */
	t = tparse(alt_msg);
	struct buf small;
	buf_init(&small, 5);
	mime_body_text(t.m, &small);
	assert_int_equal(small.len, 5);
	assert_string_equal(small.data, "plain");
	buf_free(&small);
	tfree(&t);
	buf_free(&b);
}

static void test_date(void **state)
{
	(void)state;
	struct tmsg t = tparse(plain_msg);
	assert_int_equal(mime_date(t.m), 760686745);
	tfree(&t);
	t = tparse("Date: Thu, 01 Jan 1970 00:00:00 +0000\n\n");
	assert_int_equal(mime_date(t.m), 0);
	tfree(&t);
	t = tparse("Date:\n  Sat, 1 Jan 2000\n 12:00:00 +0100 (CET)\n\n");
	assert_int_equal(mime_date(t.m), 946724400);
	tfree(&t);
	t = tparse("Subject: no date\n\n");
	assert_int_equal(mime_date(t.m), -1);
	tfree(&t);
	t = tparse("Date: not a date at all\n\n");
	assert_int_equal(mime_date(t.m), -1);
	tfree(&t);
	t = tparse("Date: \n\n");
	assert_int_equal(mime_date(t.m), -1);
	tfree(&t);
}

static void test_text_contains(void **state)
{
	(void)state;
	const char *h = "Grüße aus MÜNCHEN, Straße";
	assert_true(mime_text_contains(h, strlen(h), "münchen", strlen("münchen")));
	assert_true(mime_text_contains(h, strlen(h), "GRÜSSE", strlen("GRÜSSE")));
	assert_true(mime_text_contains(h, strlen(h), "strasse", 7));
	assert_false(mime_text_contains(h, strlen(h), "berlin", 6));
	assert_true(mime_text_contains(h, strlen(h), "", 0));
	assert_true(mime_text_contains("", 0, "", 0));
	assert_false(mime_text_contains("", 0, "a", 1));
	assert_true(mime_text_contains("ΣΊΣΥΦΟΣ", strlen("ΣΊΣΥΦΟΣ"), "σίσυφος", strlen("σίσυφος")));
	/* Invalid UTF-8 and NULs compare as bytes. */
	const char junk[] = "ab\xff\xfe\0CD\xe2\x82";
	assert_true(mime_text_contains(junk, sizeof junk - 1, "\xff\xfe", 2));
	assert_true(mime_text_contains(junk, sizeof junk - 1, "\0cd", 3));
	assert_true(mime_text_contains(junk, sizeof junk - 1, "cd\xe2\x82", 4));
	assert_false(mime_text_contains(junk, sizeof junk - 1, "abc", 3));
	assert_false(mime_text_contains("abc", 3, "\xe2", 1));
}

static void test_imap_string(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b, 1 << 20);
	mime_imap_string(&b, NULL, 0);
	assert_string_equal(b.data, "NIL");
	buf_reset(&b);
	mime_imap_string(&b, "", 0);
	assert_string_equal(b.data, "\"\"");
	buf_reset(&b);
	mime_imap_cstring(&b, "say \"hi\" \\ bye");
	assert_string_equal(b.data, "\"say \\\"hi\\\" \\\\ bye\"");
	buf_reset(&b);
	mime_imap_string(&b, "a\r\nb", 4);
	assert_string_equal(b.data, "{4}\r\na\r\nb");
	buf_reset(&b);
	mime_imap_string(&b, "caf\xc3\xa9", 5);
	assert_string_equal(b.data, "{5}\r\ncaf\xc3\xa9");
	buf_reset(&b);
	mime_imap_string(&b, "a\0b", 3);
	assert_int_equal(b.len, 8);
	assert_memory_equal(b.data, "{3}\r\na\0b", 8);
	buf_reset(&b);
	char big[1024];
	memset(big, 'x', sizeof big);
	mime_imap_string(&b, big, 1023);
	assert_int_equal(b.len, 1025);
	assert_int_equal(b.data[0], '"');
	buf_reset(&b);
	mime_imap_string(&b, big, 1024);
	assert_int_equal(b.len, 1024 + 8);
	assert_memory_equal(b.data, "{1024}\r\n", 8);
	buf_free(&b);

	/* A small max: output stops, never overflows. */
	buf_init(&b, 4);
	mime_imap_cstring(&b, "abcdef");
	assert_int_equal(b.len, 4);
	assert_string_equal(b.data, "\"abc");
	buf_free(&b);
}

/* Parsing never fails; every entry point copes with the result. */
static void exercise(const char *data, size_t len)
{
	struct mime_msg *m = mime_parse(data, len);
	assert_non_null(m);
	struct buf b;
	buf_init(&b, 1 << 24);
	mime_envelope(m, &b);
	buf_reset(&b);
	mime_bodystructure(m, true, &b);
	/* it must still be one well-formed list */
	const char *p = b.data;
	struct sx *x = sx_parse(&p);
	assert_int_equal(*p, '\0');
	sx_free(x);
	buf_reset(&b);
	mime_bodystructure(m, false, &b);
	buf_reset(&b);
	mime_body_text(m, &b);
	buf_reset(&b);
	mime_header_text(m, NULL, &b);
	mime_date(m);
	static const uint32_t paths[][3] = { { 1, 0, 0 }, { 1, 1, 0 }, { 2, 1, 0 }, { 1, 1, 1 } };
	for (size_t i = 0; i < ARRAY_SIZE(paths); i++)
		for (int k = MIME_SEC_PART; k <= MIME_SEC_MIME; k++)
			for (size_t np = 0; np <= 3; np++) {
				const char *const f[] = { "Subject" };
				struct mime_section sec = { paths[i], np, (enum mime_section_kind)k, f, 1 };
				buf_reset(&b);
				int r = mime_section_get(m, &sec, &b);
				assert_true(r == 0 || r == -1);
				assert_true(b.len <= len + 2);
			}
	buf_free(&b);
	mime_free(&m);
	assert_null(m);
}

static void test_malformed(void **state)
{
	(void)state;
	size_t n;
	char *d;

	/* No closing boundary: the last part runs to the end. */
	struct tmsg t = tparse("Content-Type: multipart/mixed; boundary=b\n\n"
			       "--b\nContent-Type: text/plain\n\none\n--b\n\ntwo\nthree\n");
	assert_sect(t.m, "1", MIME_SEC_PART, "one");
	assert_sect(t.m, "2", MIME_SEC_PART, "two\nthree\n");
	assert_int_equal(check_consistency(t.m), 2);
	tfree(&t);

	/* The boundary never appears: one empty text/plain stands in. */
	t = tparse("Content-Type: multipart/mixed; boundary=nowhere\n\njust text\n--other\n");
	char *bs = bodystructure(t.m, false);
	assert_string_equal(bs, "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0) \"mixed\")");
	free(bs);
	assert_sect(t.m, "1", MIME_SEC_PART, "");
	assert_sect(t.m, "", MIME_SEC_TEXT, "just text\n--other\n");
	tfree(&t);

	/* multipart without a boundary parameter */
	t = tparse("Content-Type: multipart/mixed\n\n--\n--\n");
	assert_int_equal(check_consistency(t.m), 1);
	tfree(&t);

	/* An inner multipart cut off by the outer boundary. */
	t = tparse("Content-Type: multipart/mixed; boundary=out\n\n"
		   "--out\nContent-Type: multipart/alternative; boundary=in\n\n"
		   "--in\n\ninner one\n"
		   "--out\n\nsecond\n--out--\n");
	assert_sect(t.m, "1.1", MIME_SEC_PART, "inner one");
	assert_sect(t.m, "2", MIME_SEC_PART, "second");
	assert_int_equal(check_consistency(t.m), 2);
	tfree(&t);

	/* Junk after the boundary is not a delimiter; padding is. */
	t = tparse("Content-Type: multipart/mixed; boundary=b\n\n"
		   "--b \t\n\nA\n--bx\nB\n--b--  \nepilogue\n");
	assert_sect(t.m, "1", MIME_SEC_PART, "A\n--bx\nB");
	tfree(&t);

	/* Empty message, header only, no line end, bare LFs, garbage. */
	exercise("", 0);
	t = tparse("");
	bs = bodystructure(t.m, false);
	assert_string_equal(bs, "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0)");
	free(bs);
	tfree(&t);
	t = tparse("Subject: only a header\nFrom: x@y.test\n");
	assert_sect(t.m, "", MIME_SEC_HEADER, "Subject: only a header\nFrom: x@y.test\n");
	assert_sect(t.m, "", MIME_SEC_TEXT, "");
	exercise(t.data, t.len);
	tfree(&t);
	exercise("Subject: x", 10);
	exercise("Subject: x\n\nbody", 16);
	exercise("\r\n", 2);
	exercise("\r", 1);
	exercise(":\r\n\r\n", 5);
	exercise("  folded first\r\n\r\n", 18);
	exercise("Content-Type: multipart/mixed; boundary=\"\"\r\n\r\n--\r\n", 50);
	exercise("Content-Type: message/rfc822\r\n\r\n", 32);
	exercise("Content-Type: message/rfc822\r\n\r\nContent-Type: message/rfc822\r\n", 62);

	/* A body that starts without a blank line. */
	t = tparse("Content-Type: multipart/mixed; boundary=b\n\n--b\nno header here\n--b--\n");
	assert_sect(t.m, "1", MIME_SEC_PART, "no header here");
	assert_sect(t.m, "1", MIME_SEC_MIME, "");
	tfree(&t);

	/* NULs and 8-bit junk everywhere. */
	const char nul[] = "Subject: a\0b\r\nFrom: \xff\xfe <x@\0y>\r\nContent-Type: text/pl\0ain\r\n"
			   "Content-Type: multipart/mixed; boundary=\"\xe9\"\r\n\r\n\0\0\xff--\xe9\r\n\0";
	exercise(nul, sizeof nul - 1);
	const char nul2[] = "Content-Type: multipart/mixed; boundary=z\r\n\r\n--z\r\n\0\0: \0\r\n\r\n\0x\r\n"
			    "--z\r\nContent-Type: text/plain; charset=\0\r\n\r\n\xff\0\r\n--z--";
	exercise(nul2, sizeof nul2 - 1);
	struct mime_msg *m = mime_parse(nul2, sizeof nul2 - 1);
	struct buf b;
	buf_init(&b, 1 << 20);
	assert_int_equal(section(m, "1", MIME_SEC_PART, NULL, 0, &b), 0);
	/* "\0\0: \0" is no header field: the body starts there. */
	assert_int_equal(b.len, 11);
	assert_memory_equal(b.data, "\0\0: \0\r\n\r\n\0x", 11);
	buf_free(&b);
	mime_free(&m);

	/* Truncated base64 and quoted-printable. */
	d = crlf("Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\nw6k=w\n", &n);
	exercise(d, n);
	free(d);
	d = crlf("Content-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\n\nabc=\n=4", &n);
	exercise(d, n);
	free(d);
	exercise(NULL, 0);
}

/* Every prefix of a complex message parses into a consistent tree, and
 * so do copies with bytes damaged. */
static void test_truncated_and_damaged(void **state)
{
	(void)state;
	size_t n;
	char *full = crlf(mixed_msg, &n);
	for (size_t cut = 0; cut <= n; cut++) {
		char *d = xmalloc(cut + 1);
		memcpy(d, full, cut);
		exercise(d, cut);
		struct mime_msg *m = mime_parse(d, cut);
		check_consistency(m);
		mime_free(&m);
		free(d);
	}
	srand(12345);
	char *d = xmalloc(n);
	for (int round = 0; round < 300; round++) {
		memcpy(d, full, n);
		for (int k = 0; k < 8; k++)
			d[(size_t)rand() % n] = "\0\r\n-:;=\"\xff "[rand() % 11];
		exercise(d, n);
		struct mime_msg *m = mime_parse(d, n);
		check_consistency(m);
		mime_free(&m);
	}
	free(d);
	free(full);
}

/* Hostile nesting: 1000 levels of multiparts and of message/rfc822. */
static void test_deep_nesting(void **state)
{
	(void)state;
	struct buf msg;
	buf_init(&msg, 1 << 24);
	for (int i = 0; i < 1000; i++)
		buf_printf(&msg, "Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n", i, i);
	buf_puts(&msg, "Content-Type: text/plain\r\n\r\ndeep\r\n");
	for (int i = 999; i >= 0; i--)
		buf_printf(&msg, "--b%d--\r\n", i);
	exercise(msg.data, msg.len);

	struct mime_msg *m = mime_parse(msg.data, msg.len);
	char *bs = bodystructure(m, true);
	size_t depth = 0, maxdepth = 0;
	for (const char *p = bs; *p; p++) {
		if (*p == '(')
			depth++;
		else if (*p == ')')
			depth--;
		if (depth > maxdepth)
			maxdepth = depth;
	}
	assert_int_equal(depth, 0);
	assert_true(maxdepth <= MIME_MAX_DEPTH + 3);
	assert_non_null(strstr(bs, "\"application\" \"octet-stream\""));
	free(bs);
	check_consistency(m);
	mime_free(&m);

	buf_reset(&msg);
	for (int i = 0; i < 1000; i++)
		buf_printf(&msg, "Subject: level %d\r\nContent-Type: message/rfc822\r\n\r\n", i);
	buf_puts(&msg, "Subject: bottom\r\n\r\nbody\r\n");
	exercise(msg.data, msg.len);
	m = mime_parse(msg.data, msg.len);
	check_consistency(m);
	mime_free(&m);

	/* Many parts: bounded. */
	buf_reset(&msg);
	buf_puts(&msg, "Content-Type: multipart/mixed; boundary=p\r\n\r\n");
	for (int i = 0; i < 5000; i++)
		buf_puts(&msg, "--p\r\n\r\nx\r\n");
	buf_puts(&msg, "--p--\r\n");
	m = mime_parse(msg.data, msg.len);
	bs = bodystructure(m, false);
	size_t parts = 0;
	for (const char *p = bs; (p = strstr(p, "\"plain\"")); p++)
		parts++;
	assert_true(parts >= 100 && parts < MIME_MAX_PARTS);
	free(bs);
	check_consistency(m);
	mime_free(&m);
	buf_free(&msg);
}

/* Our part sizes agree with GMime's own parser on the same bytes. */
static void test_agrees_with_gmime(void **state)
{
	(void)state;
	const char *msgs[] = {
		plain_msg, alt_msg, mixed_msg,
		/* not closed */
		"Content-Type: multipart/mixed; boundary=b\n\n"
		"--b\nContent-Type: text/plain\n\none\n--b\n\ntwo\nthree\n",
		/* inner multipart cut off by the outer boundary */
		"Content-Type: multipart/mixed; boundary=out\n\n"
		"--out\nContent-Type: multipart/alternative; boundary=in\n\n"
		"--in\n\ninner one\n--out\n\nsecond\n--out--\n",
		/* a single-part encapsulated message */
		"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: message/rfc822\n\n"
		"Subject: x\n\nembedded body\n--b\n\nlast\n--b--\n",
		/* padding after a delimiter; junk after the boundary */
		"Content-Type: multipart/mixed; boundary=b\n\n--b \t\n\nA\n--bx\nB\n--b--  \nepilogue\n",
	};
	for (size_t i = 0; i < ARRAY_SIZE(msgs); i++) {
		struct tmsg t = tparse(msgs[i]);
		GMimeStream *s = g_mime_stream_mem_new_with_buffer(t.data, t.len);
		GMimeParser *ps = g_mime_parser_new_with_stream(s);
		GMimeMessage *gm = g_mime_parser_construct_message(ps, NULL);
		assert_non_null(gm);
		GMimePartIter *it = g_mime_part_iter_new(GMIME_OBJECT(gm));
		size_t leaves = 0;
		do {
			GMimeObject *o = g_mime_part_iter_get_current(it);
			if (!GMIME_IS_PART(o))
				continue;
			char *path = g_mime_part_iter_get_path(it);
			if (strcmp(path, "0") == 0) {
				/* GMime's name for the body of a single-part message */
				g_free(path);
				path = g_strdup("1");
			}
			GMimeDataWrapper *w = g_mime_part_get_content(GMIME_PART(o));
			assert_non_null(w);
			GMimeStream *cs = g_mime_data_wrapper_get_stream(w);
			struct buf b;
			buf_init(&b, 1 << 20);
			assert_int_equal(section(t.m, path, MIME_SEC_PART, NULL, 0, &b), 0);
			assert_int_equal(b.len, (size_t)g_mime_stream_length(cs));
			buf_free(&b);
			g_free(path);
			leaves++;
		} while (g_mime_part_iter_next(it));
		assert_true(leaves >= 1);
		check_consistency(t.m);
		g_mime_part_iter_free(it);
		g_object_unref(gm);
		g_object_unref(ps);
		g_object_unref(s);
		tfree(&t);
	}
}

static void *thread_main(void *arg)
{
	const char *data = arg;
	size_t len = strlen(data);
	for (int i = 0; i < 300; i++) {
		struct mime_msg *m = mime_parse(data, len);
		struct buf b;
		buf_init(&b, 1 << 20);
		mime_bodystructure(m, true, &b);
		mime_envelope(m, &b);
		mime_body_text(m, &b);
		mime_header_text(m, "subject", &b);
		buf_free(&b);
		mime_free(&m);
	}
	return NULL;
}

static void test_threads(void **state)
{
	(void)state;
	size_t n;
	char *d = crlf(mixed_msg, &n);
	pthread_t th[4];
	for (int i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&th[i], NULL, thread_main, d), 0);
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	free(d);
}

static void test_performance(void **state)
{
	(void)state;
	struct buf msg;
	buf_init(&msg, 1 << 24);
	buf_puts(&msg, "From: a@b.test\r\nTo: c@d.test\r\nSubject: big\r\n"
		       "Content-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\n"
		       "Content-Type: text/plain\r\n\r\n");
	while (msg.len < 30000)
		buf_puts(&msg, "The quick brown fox jumps over the lazy dog, again and again.\r\n");
	buf_puts(&msg, "--zz\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n");
	while (msg.len < 50000)
		buf_puts(&msg, "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5\r\n");
	buf_puts(&msg, "--zz--\r\n");

	struct timespec a, z;
	clock_gettime(CLOCK_MONOTONIC, &a);
	enum { N = 200 };
	for (int i = 0; i < N; i++) {
		struct mime_msg *m = mime_parse(msg.data, msg.len);
		struct buf b;
		buf_init(&b, 1 << 20);
		mime_bodystructure(m, true, &b);
		buf_free(&b);
		mime_free(&m);
	}
	clock_gettime(CLOCK_MONOTONIC, &z);
	double us = ((double)(z.tv_sec - a.tv_sec) * 1e6 + (double)(z.tv_nsec - a.tv_nsec) / 1e3) / N;
	print_message("parse + BODYSTRUCTURE of %zu octets: %.1f us\n", msg.len, us);
	/* generous, so that sanitiser builds pass too */
	assert_true(us < 5000);
	buf_free(&msg);
}

static void test_address_domains(void **state)
{
	(void)state;
	char d[4][256];
	/* Plain, several (deduplicated, lower case, trailing dot gone). */
	assert_int_equal(mime_address_domains(" A <a@X.test>, b@y.test., c@x.test", d, 4), 2);
	assert_string_equal(d[0], "x.test");
	assert_string_equal(d[1], "y.test");
	/* Broken syntax a mail reader still reads (the DMARC fallback). */
	assert_int_equal(mime_address_domains(" CEO <ceo@bank.test", d, 4), 1);
	assert_string_equal(d[0], "bank.test");
	assert_int_equal(mime_address_domains(" \"CEO <ceo@bank.test>", d, 4), 1);
	assert_string_equal(d[0], "bank.test");
	/* Groups, the cap, nothing usable. */
	assert_int_equal(mime_address_domains(" g: a@a.test, b@b.test;, c@c.test", d, 2), 2);
	assert_int_equal(mime_address_domains(" undisclosed-recipients:;", d, 4), 0);
	assert_int_equal(mime_address_domains("", d, 4), 0);
	assert_int_equal(mime_address_domains(" no address here", d, 4), 0);
	/* IDNA form for DNS. */
	assert_int_equal(mime_address_domains(" a@xn--bnk-qla.test junk", d, 4), 1);
	assert_string_equal(d[0], "xn--bnk-qla.test");
	/* Thousands of nested groups would overflow a thread's stack in
	 * GMime's recursive parser: not parsed at all. */
	struct buf b;
	buf_init(&b, 1 << 20);
	for (int i = 0; i < 3000; i++)
		buf_puts(&b, "g:\n ");
	buf_puts(&b, "a@b.test");
	assert_false(mime_address_value_safe(b.data));
	assert_true(mime_address_value_safe(" \"a:b:c:d:e:f:g:h:i:j:k:l:m:n:o:p:q:r\" <x@y.test>"));
	assert_int_equal(mime_address_domains(b.data, d, 4), 0);
	/* ENVELOPE of such a message: From is NIL. */
	struct buf msg, env;
	buf_init(&msg, 1 << 20);
	buf_init(&env, 1 << 20);
	buf_puts(&msg, "From: ");
	buf_append(&msg, b.data, b.len);
	buf_puts(&msg, "\r\nSubject: x\r\n\r\nbody\r\n");
	struct mime_msg *m = mime_parse(msg.data, msg.len);
	mime_envelope(m, &env);
	assert_non_null(strstr(env.data, "\"x\" NIL NIL NIL"));
	mime_free(&m);
	buf_free(&msg);
	buf_free(&env);
	buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_address_domains),
		cmocka_unit_test(test_plain),
		cmocka_unit_test(test_alternative),
		cmocka_unit_test(test_mixed_sections),
		cmocka_unit_test(test_rfc2231_params),
		cmocka_unit_test(test_header_text),
		cmocka_unit_test(test_envelope_groups),
		cmocka_unit_test(test_body_text),
		cmocka_unit_test(test_date),
		cmocka_unit_test(test_text_contains),
		cmocka_unit_test(test_imap_string),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_truncated_and_damaged),
		cmocka_unit_test(test_deep_nesting),
		cmocka_unit_test(test_agrees_with_gmime),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_performance),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
