/*
 * test_view.c - struct msgview (rules/view.c) and html_render
 * (rules/html.c): header values decoded, raw, :addr, :name and the
 * special names; body paragraphs (charsets, transfer encodings, HTML
 * rendered, Subject first); rawbody lines; URIs; malformed MIME; mbox
 * and CRLF input; hostile input finishing quickly within the bounds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rules/rules-private.h"

static struct msgview *view(const char *msg)
{
	return msgview_new(msg, strlen(msg));
}

static bool has(const char *const *v, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(v[i], s) == 0)
			return true;
	return false;
}

static bool has_sub(const char *const *v, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (strstr(v[i], s))
			return true;
	return false;
}

static const char *hdr(struct msgview *v, const char *name, enum hdr_mod mod)
{
	bool present;
	return msgview_header(v, name, mod, &present);
}

static void test_headers(void **state)
{
	(void)state;
	struct msgview *v = view("From: =?UTF-8?B?SsO8cmdlbg==?= <juergen@example.com>\r\n"
				 "To: Alice <alice@example.org>, bob@example.net\r\n"
				 "Cc: carol@example.com\r\n"
				 "Subject: =?iso-8859-1?q?caf=E9?= and\r\n more =?utf-8?Q?hello_world?=\r\n"
				 "Received: one\r\n"
				 "Received: two\r\n\t folded\r\n"
				 "Message-Id: <abc@x>\r\n"
				 "X-Message-Id: <def@y>\r\n"
				 "Return-Path: <bounce@example.com>\r\n"
				 "X-Empty:\r\n"
				 "X-Latin: caf\xe9\r\n"
				 "\r\n"
				 "body\r\n");
	bool present = false;
	const char *s = msgview_header(v, "Subject", HM_NONE, &present);
	assert_true(present);
	assert_string_equal(s, "caf\xc3\xa9 and more hello world");
	assert_ptr_equal(msgview_header(v, "subject", HM_NONE, &present), s); /* cached */
	assert_string_equal(hdr(v, "Subject", HM_RAW),
			    "=?iso-8859-1?q?caf=E9?= and more =?utf-8?Q?hello_world?=");
	assert_string_equal(hdr(v, "Received", HM_NONE), "one\ntwo\t folded");
	assert_string_equal(hdr(v, "From", HM_ADDR), "juergen@example.com");
	assert_string_equal(hdr(v, "From", HM_NAME), "J\xc3\xbcrgen");
	assert_string_equal(hdr(v, "From", HM_NONE), "J\xc3\xbcrgen <juergen@example.com>");
	assert_string_equal(hdr(v, "To", HM_ADDR), "alice@example.org");
	assert_string_equal(hdr(v, "To", HM_NAME), "Alice");
	assert_string_equal(hdr(v, "Cc", HM_NAME), "");
	assert_string_equal(hdr(v, "ToCc", HM_NONE),
			    "Alice <alice@example.org>, bob@example.net\ncarol@example.com");
	assert_string_equal(hdr(v, "ToCc", HM_ADDR), "alice@example.org");
	assert_string_equal(hdr(v, "MESSAGEID", HM_NONE), "<abc@x>\n<def@y>");
	assert_string_equal(hdr(v, "EnvelopeFrom", HM_NONE), "bounce@example.com");
	assert_string_equal(hdr(v, "X-Latin", HM_NONE), "caf\xc3\xa9");
	const char *all = hdr(v, "ALL", HM_NONE);
	assert_non_null(strstr(all, "Subject: caf\xc3\xa9 and more hello world\n"));
	assert_non_null(strstr(all, "Received: two\t folded\nMessage-Id: <abc@x>\n"));
	assert_non_null(strstr(hdr(v, "ALL", HM_RAW), "Subject: =?iso-8859-1?q?caf=E9?= and more"));

	s = msgview_header(v, "X-Empty", HM_NONE, &present);
	assert_true(present);
	assert_string_equal(s, "");
	s = msgview_header(v, "X-Absent", HM_NONE, &present);
	assert_false(present);
	assert_string_equal(s, "");
	present = true;
	s = msgview_header(v, "X-Absent", HM_ADDR, &present);
	assert_false(present);
	assert_string_equal(s, "");
	msgview_header(v, "EnvelopeFrom", HM_NONE, &present);
	assert_true(present);
	msgview_free(&v);
	assert_null(v);

	v = view("Subject: no return path\n\nx\n");
	s = msgview_header(v, "EnvelopeFrom", HM_NONE, &present);
	assert_false(present);
	assert_string_equal(s, "");
	assert_string_equal(hdr(v, "ALL", HM_NONE), "Subject: no return path\n");
	msgview_free(&v);
}

static void test_body_qp_latin1(void **state)
{
	(void)state;
	struct msgview *v = view("Subject: Dessert\r\n"
				 "Content-Type: text/plain; charset=iso-8859-1\r\n"
				 "Content-Transfer-Encoding: quoted-printable\r\n"
				 "\r\n"
				 "Caf=E9 cr=E8me=\r\n br=FBl=E9e\r\n"
				 "costs 5=80\r\n");
	size_t n;
	const char *const *b = msgview_body(v, &n);
	assert_int_equal(n, 2);
	assert_string_equal(b[0], "Dessert");
	assert_string_equal(b[1], "Caf\xc3\xa9 cr\xc3\xa8me br\xc3\xbbl\xc3\xa9"
				  "e costs 5\xe2\x82\xac");
	const char *const *r = msgview_rawbody(v, &n);
	assert_int_equal(n, 2);
	assert_string_equal(r[0], "Caf\xc3\xa9 cr\xc3\xa8me br\xc3\xbbl\xc3\xa9"
				  "e");
	msgview_free(&v);
}

static void test_body_base64_cp1252(void **state)
{
	(void)state;
	/* "Price: 10\x80 \x96 now\n" in windows-1252 */
	struct msgview *v = view("Subject: =?windows-1252?B?lnByaWNllg==?=\n"
				 "MIME-Version: 1.0\n"
				 "Content-Type: text/plain; charset=\"windows-1252\"\n"
				 "Content-Transfer-Encoding: base64\n"
				 "\n"
				 "UHJpY2U6IDEwgCCWIG5vdwo=\n");
	size_t n;
	const char *const *b = msgview_body(v, &n);
	assert_int_equal(n, 2);
	assert_string_equal(b[0], "\xe2\x80\x93price\xe2\x80\x93");
	assert_string_equal(b[1], "Price: 10\xe2\x82\xac \xe2\x80\x93 now");
	msgview_free(&v);

	/* No charset: valid UTF-8 kept, other bytes as windows-1252. */
	v = view("Subject: x\n\nna\xc3\xafve and caf\xe9\n");
	b = msgview_body(v, &n);
	assert_int_equal(n, 2);
	assert_string_equal(b[1], "na\xc3\xafve and caf\xc3\xa9");
	msgview_free(&v);

	/* A charset through iconv (KOI8-R "привет"). */
	v = view("Content-Type: text/plain; charset=koi8-r\n\n\xd0\xd2\xc9\xd7\xc5\xd4\n");
	b = msgview_body(v, &n);
	assert_int_equal(n, 1);
	assert_string_equal(b[0], "\xd0\xbf\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82");
	msgview_free(&v);
}

static const char alternative[] =
	"From: a@example.com\n"
	"Subject: Both halves\n"
	"MIME-Version: 1.0\n"
	"Content-Type: multipart/alternative; boundary=\"b1\"\n"
	"\n"
	"preamble is not text\n"
	"--b1\n"
	"Content-Type: text/plain; charset=utf-8\n"
	"\n"
	"Plain version\n"
	"see http://plain.example/p\n"
	"--b1\n"
	"Content-Type: text/html; charset=utf-8\n"
	"Content-Transfer-Encoding: 7bit\n"
	"\n"
	"<html><body><p>HTML <b>ver</b>sion</p><a href=\"http://html.example/h\">x</a></body></html>\n"
	"--b1--\n"
	"epilogue is not text\n";

static void test_multipart_alternative(void **state)
{
	(void)state;
	struct msgview *v = view(alternative);
	size_t n;
	const char *const *b = msgview_body(v, &n);
	assert_int_equal(n, 4);
	assert_string_equal(b[0], "Both halves");
	assert_string_equal(b[1], "Plain version see http://plain.example/p");
	assert_string_equal(b[2], "HTML version");
	assert_string_equal(b[3], "x");
	assert_false(has_sub(b, n, "preamble") || has_sub(b, n, "epilogue"));
	const char *const *r = msgview_rawbody(v, &n);
	assert_int_equal(n, 3);
	assert_string_equal(r[0], "Plain version");
	assert_string_equal(r[2], "<html><body><p>HTML <b>ver</b>sion</p><a "
				  "href=\"http://html.example/h\">x</a></body></html>");
	const char *const *u = msgview_uris(v, &n);
	assert_int_equal(n, 2);
	assert_string_equal(u[0], "http://plain.example/p");
	assert_string_equal(u[1], "http://html.example/h");
	msgview_free(&v);
}

static void render(const char *html, struct buf *out, char ***links, size_t *nlinks)
{
	buf_reset(out);
	html_render(html, strlen(html), out, links, nlinks);
}

static void test_html_render(void **state)
{
	(void)state;
	struct buf out;
	char **links = NULL;
	size_t nlinks = 0;
	buf_init(&out, 1 << 20);
	render("<html><head><title>T</title><style>p {color: red}</style>"
	       "<script type=\"text/javascript\">if (a < b) alert('</p>');</script></head>\n"
	       "<body>Caf&eacute; &amp; &lt;b&gt; &#233;&#x1F600;&#150; &nbsp;x<br>line2"
	       "<p>para\n   graph</p><!-- <p>hidden</p> -->end<div>d</div>"
	       "<table><tr><td>c1</td><td>c2</td></tr></table>to<b>day</b> &AMP; &copy &bogus; a<b"
	       "</body></html>",
	       &out, &links, &nlinks);
	assert_string_equal(out.data, "Caf\xc3\xa9 & <b> \xc3\xa9\xf0\x9f\x98\x80\xe2\x80\x93 x\n"
				      "line2\n\npara graph\n\nend\n\nd\n\nc1 c2\ntoday & \xc2\xa9 "
				      "&bogus; a");
	assert_int_equal(nlinks, 0);

	render("<a href=\"http://a.example/x?a=1&amp;b=2\">A</a><img src='http://img.example/i.png'>"
	       "<form action=http://form.example/></form><body background=\"http://bg.example/b.jpg\">"
	       "<a href=\"#top\">top</a><a href=\"  http://sp.example/\n\tp \">sp</a>"
	       "<base href=\"http://base.example/dir/page.html\"><a href=\"rel.html\">r</a>"
	       "<a href=\"/abs\">r</a><a HREF=\"http://www.example.com/&#x41;?a=1&copy=2&amp\">x</a>"
	       "<pre>a   b\n c</pre>",
	       &out, &links, &nlinks);
	static const char *const want[] = {
		"http://a.example/x?a=1&b=2", "http://img.example/i.png", "http://form.example/",
		"http://bg.example/b.jpg", "http://sp.example/p", "http://base.example/dir/page.html",
		"http://base.example/dir/rel.html", "http://base.example/abs",
		"http://www.example.com/A?a=1&copy=2&",
	};
	assert_int_equal(nlinks, ARRAY_SIZE(want));
	for (size_t i = 0; i < nlinks; i++) {
		assert_string_equal(links[i], want[i]);
		free(links[i]);
	}
	free(links);
	assert_string_equal(out.data, "A\ntopsprrx\n\na   b\n c");

	/* Output bounded by out->max. */
	struct buf small;
	buf_init(&small, 10);
	links = NULL;
	nlinks = 0;
	html_render("<p>0123456789abcdef</p>", 23, &small, &links, &nlinks);
	assert_int_equal(small.len, 10);
	assert_string_equal(small.data, "0123456789");
	buf_free(&small);
	buf_free(&out);
}

static void test_paragraphs(void **state)
{
	(void)state;
	struct msgview *v = view("Subject:   Hello   there  \n\n"
				 "line one\nline\ttwo  \n \t\n\nsecond   para\r\n\r\n\r\n  third\n");
	size_t n;
	const char *const *b = msgview_body(v, &n);
	assert_int_equal(n, 4);
	assert_string_equal(b[0], "Hello there");
	assert_string_equal(b[1], "line one line two");
	assert_string_equal(b[2], "second para");
	assert_string_equal(b[3], "third");
	const char *const *r = msgview_rawbody(v, &n);
	assert_int_equal(n, 8);
	assert_string_equal(r[1], "line\ttwo  ");
	assert_string_equal(r[2], " \t");
	assert_string_equal(r[3], "");
	assert_string_equal(r[4], "second   para");
	msgview_free(&v);

	/* A long paragraph is split into pieces of at most 2048 octets. */
	char *msg = xmalloc(20000);
	size_t o = (size_t)sprintf(msg, "Subject: long\n\n");
	for (int i = 0; i < 2000; i++)
		o += (size_t)sprintf(msg + o, "word%d ", i % 10);
	v = msgview_new(msg, o);
	b = msgview_body(v, &n);
	assert_true(n > 5);
	for (size_t i = 0; i < n; i++)
		assert_true(strlen(b[i]) <= 2048);
	assert_true(strncmp(b[2], "word", 4) == 0);
	msgview_free(&v);
	free(msg);
}

static void test_uris(void **state)
{
	(void)state;
	struct msgview *v = view(
		"Subject: links\n"
		"Content-Type: multipart/mixed; boundary=zz\n\n"
		"--zz\n\n"
		"Visit http://example.com/a, or www.example.org/b. (see https://s.example/x)\n"
		"Mail mailto:x@example.com and hxxp://evil.example/p and http://example.com/a\n"
		"not a uri: xhttp://no.example swww.no.example\n"
		"--zz\nContent-Type: text/html\n\n"
		"<a href=\"http://Ex%61mple.NET./x\">x</a> <a href='http://user@host.example/'>y</a>"
		"<a href=\"http://r.example/?u=http://target.example/t\">r</a> FTP://files.example/f"
		"<img src=\"cid:part1\"> <a href=\"www.bare.example/\">w</a>\n"
		"--zz--\n");
	size_t n;
	const char *const *u = msgview_uris(v, &n);
	static const char *const want[] = {
		"http://example.com/a", "http://www.example.org/b", "https://s.example/x",
		"mailto:x@example.com", "hxxp://evil.example/p", "http://evil.example/p",
		"http://Ex%61mple.NET./x", "http://example.net/x", "http://user@host.example/",
		"http://host.example/", "http://r.example/?u=http://target.example/t",
		"http://target.example/t", "cid:part1", "http://www.bare.example/",
		"FTP://files.example/f", "ftp://files.example/f",
	};
	assert_int_equal(n, ARRAY_SIZE(want));
	for (size_t i = 0; i < n; i++)
		assert_string_equal(u[i], want[i]);
	assert_false(has_sub(u, n, "no.example"));
	msgview_free(&v);
}

static void test_malformed(void **state)
{
	(void)state;
	/* The closing delimiter never comes; a part with broken base64. */
	struct msgview *v = view("Subject: broken\n"
				 "Content-Type: multipart/mixed; boundary=\"XX\"\n\n"
				 "--XX\nContent-Type: text/plain\n\nfirst part\n"
				 "--XX\nContent-Type: text/plain\nContent-Transfer-Encoding: base64\n\n"
				 "SGVsbG8g!!!d29y\nbGQ=\n"
				 "--XX\nContent-Type: image/png\nContent-Transfer-Encoding: base64\n\n"
				 "iVBORw0KGgo=\n"
				 "--XX\nContent-Type: text/html\n\n<p>never closed <b>bold");
	size_t n;
	const char *const *b = msgview_body(v, &n);
	assert_true(has(b, n, "first part"));
	assert_true(has(b, n, "Hello world"));
	assert_true(has(b, n, "never closed bold"));
	assert_false(has_sub(b, n, "PNG"));
	msgview_free(&v);

	/* A multipart without a boundary, or whose boundary never occurs:
	 * its body is read as text. */
	v = view("Content-Type: multipart/mixed\n\nsome text\n");
	b = msgview_body(v, &n);
	assert_true(n == 1 && strcmp(b[0], "some text") == 0);
	msgview_free(&v);
	v = view("Content-Type: multipart/mixed; boundary=nope\n\n--other\n\nsome text\n");
	b = msgview_body(v, &n);
	assert_true(has(b, n, "--other"));
	msgview_free(&v);

	/* No header at all; a garbage Content-Type; NULs and 8-bit junk. */
	v = msgview_new("just\0text\xff\xfe here\n", 18);
	b = msgview_body(v, &n);
	assert_int_equal(n, 1);
	assert_string_equal(b[0], "just text\xc3\xbf\xc3\xbe here");
	msgview_free(&v);
	v = view("Content-Type: ;;;/\nContent-Transfer-Encoding: x-weird\n\nok\n");
	b = msgview_body(v, &n);
	assert_true(n == 1 && strcmp(b[0], "ok") == 0);
	msgview_free(&v);
	v = msgview_new("", 0);
	b = msgview_body(v, &n);
	assert_int_equal(n, 0);
	msgview_rawbody(v, &n);
	assert_int_equal(n, 0);
	msgview_uris(v, &n);
	assert_int_equal(n, 0);
	msgview_free(&v);
}

static void test_mbox_crlf(void **state)
{
	(void)state;
	const char msg[] = "From foo@bar.example Mon Jan  1 00:00:00 2024\n"
			   "Subject: s\r\n"
			   "Content-Type: text/plain\r\n\r\n"
			   "body line\r\nsecond\r\n";
	struct msgview *v = view(msg);
	size_t len;
	const char *full = msgview_full(v, &len);
	assert_int_equal(len, strlen(msg) - 46);
	assert_memory_equal(full, "Subject: s\r\n", 12);
	assert_string_equal(hdr(v, "Subject", HM_NONE), "s");
	assert_string_equal(hdr(v, "From", HM_NONE), "");
	size_t n;
	const char *const *r = msgview_rawbody(v, &n);
	assert_int_equal(n, 2);
	assert_string_equal(r[0], "body line");
	assert_string_equal(r[1], "second");
	const char *const *b = msgview_body(v, &n);
	assert_int_equal(n, 2);
	assert_string_equal(b[1], "body line second");
	msgview_free(&v);

	/* message/rfc822 inside: its text counts, its header does not. */
	v = view("Subject: outer\nContent-Type: message/rfc822\n\n"
		 "Subject: inner\nContent-Type: text/plain\n\ninner text\n");
	b = msgview_body(v, &n);
	assert_int_equal(n, 2);
	assert_string_equal(b[0], "outer");
	assert_string_equal(b[1], "inner text");
	msgview_free(&v);
}

static void test_hostile(void **state)
{
	(void)state;
	int64_t t0 = clock_mono_ms();
	struct buf m;
	buf_init(&m, 64u << 20);
	buf_puts(&m, "Subject: hostile\nContent-Type: multipart/mixed; boundary=B\n\n--B\n"
		     "Content-Type: text/html\n\n");
	for (int i = 0; i < 100000; i++)
		buf_puts(&m, "<div><b>");
	for (int i = 0; i < 1000000; i++)
		buf_putc(&m, (char)('a' + i % 26));
	buf_append(&m, "\0\0\0<a href='http://x.example/", 30);
	for (int i = 0; i < 100000; i++)
		buf_puts(&m, "<a x=\"<!--&#");
	buf_puts(&m, "\n--B\nContent-Type: text/plain\n\n");
	for (int i = 0; i < 200000; i++)
		buf_printf(&m, "http://h%d.example/ www.", i);
	for (int i = 0; i < 100000; i++)
		buf_puts(&m, "http://r.example/?u=");
	buf_puts(&m, "\n--B\n");
	/* Nesting past MIME_MAX_DEPTH, parts past MIME_MAX_PARTS. */
	for (int i = 0; i < 200; i++)
		buf_printf(&m, "Content-Type: multipart/mixed; boundary=n%d\n\n--n%d\n", i, i);
	buf_puts(&m, "Content-Type: text/plain\n\ntoo deep\n");
	for (int i = 0; i < 3000; i++)
		buf_puts(&m, "--B\nContent-Type: text/plain\n\npart\n");
	struct msgview *v = msgview_new(m.data, m.len);
	size_t nb, nr, nu, total = 0;
	const char *const *b = msgview_body(v, &nb);
	const char *const *r = msgview_rawbody(v, &nr);
	msgview_uris(v, &nu);
	assert_true(nb > 0 && nb <= 100000 && nr <= 100000);
	assert_true(nu <= 1000);
	for (size_t i = 0; i < nb; i++) {
		assert_true(strlen(b[i]) <= 2048);
		total += strlen(b[i]);
	}
	for (size_t i = 0; i < nr; i++)
		assert_true(strlen(r[i]) <= 2048);
	assert_true(total <= (8u << 20));
	assert_false(has(b, nb, "too deep"));
	assert_true(has_sub(b, nb, "abcdefghijklmnopqrstuvwxyz"));
	msgview_free(&v);
	int64_t ms = clock_mono_ms() - t0;
	fprintf(stderr, "hostile message of %zu octets: %lld ms\n", m.len, (long long)ms);
	assert_true(ms < 10000);

	/* Raw hostile HTML straight into the renderer. */
	buf_reset(&m);
	for (int i = 0; i < 300000; i++)
		buf_puts(&m, i % 3 ? "<a b='" : "&#x");
	struct buf out;
	char **links = NULL;
	size_t nlinks = 0;
	buf_init(&out, 1 << 20);
	t0 = clock_mono_ms();
	html_render(m.data, m.len, &out, &links, &nlinks);
	assert_true(clock_mono_ms() - t0 < 5000);
	assert_true(nlinks <= 1000);
	for (size_t i = 0; i < nlinks; i++)
		free(links[i]);
	free(links);
	buf_free(&out);
	buf_free(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_headers),
		cmocka_unit_test(test_body_qp_latin1),
		cmocka_unit_test(test_body_base64_cp1252),
		cmocka_unit_test(test_multipart_alternative),
		cmocka_unit_test(test_html_render),
		cmocka_unit_test(test_paragraphs),
		cmocka_unit_test(test_uris),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_mbox_crlf),
		cmocka_unit_test(test_hostile),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
