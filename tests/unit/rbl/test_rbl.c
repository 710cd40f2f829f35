/*
 * test_rbl.c - DNSBL query names (RFC 5782 section 2.4, IPv4 and IPv6),
 * the judging of answers (listed, unscored, refused, unavailable), URI
 * domain extraction with its obfuscations, and result formatting.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "rbl/rbl.h"

static void test_query_names(void **state)
{
	(void)state;
	char q[512];
	assert_true(rbl_ip_query_name("192.0.2.99", "zen.test", q, sizeof(q)));
	assert_string_equal(q, "99.2.0.192.zen.test");
	/* RFC 5782 section 2.4's example. */
	assert_true(rbl_ip_query_name("2001:db8:1:2:3:4:567:89ab", "ugly.example.com", q, sizeof(q)));
	assert_string_equal(q, "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2."
			       "ugly.example.com");
	/* IPv4-mapped IPv6 is the IPv4 address. */
	assert_true(rbl_ip_query_name("::ffff:127.0.0.2", "bl.test", q, sizeof(q)));
	assert_string_equal(q, "2.0.0.127.bl.test");
	assert_false(rbl_ip_query_name("not-an-ip", "bl.test", q, sizeof(q)));
	assert_false(rbl_ip_query_name("", "bl.test", q, sizeof(q)));
	assert_false(rbl_ip_query_name("192.0.2.1", "bl.test", q, 8));
}

static size_t domains(const char *text, char ***v)
{
	*v = NULL;
	return uri_domains(text, strlen(text), v, 0, 50);
}

static void free_list(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static void test_uri_domains(void **state)
{
	(void)state;
	char **v;
	size_t n = domains("Visit http://Example.COM/path and https://www.shop.test:8443/x?y "
			   "or www.third.test. <a href=\"HTTPS://evil.test\">x</a> "
			   "http://bank.test@phish.test/login hxxp://defanged.test/ "
			   "ftp://files.test/ http://%65vil2.test/ again http://example.com",
			   &v);
	const char *want[] = { "example.com", "www.shop.test", "www.third.test", "evil.test",
			       "phish.test", "defanged.test", "files.test", "evil2.test" };
	assert_int_equal(n, ARRAY_SIZE(want));
	for (size_t i = 0; i < n; i++)
		assert_string_equal(v[i], want[i]);
	free_list(v, n);
	/* Not domains: addresses, names without a dot, a numeric TLD, junk. */
	n = domains("http://192.0.2.1/ http://localhost/ http://a.123/ http://.../ http:// "
		    "mailto:x@y.test awww.notthis.test",
		    &v);
	assert_int_equal(n, 0);
	free_list(v, n);
	/* The cap. */
	struct buf b;
	buf_init(&b, 1 << 20);
	for (int i = 0; i < 100; i++)
		buf_printf(&b, "http://d%d.test/ ", i);
	v = NULL;
	n = uri_domains(b.data, b.len, &v, 0, 20);
	assert_int_equal(n, 20);
	free_list(v, n);
	buf_free(&b);
	/* Hostile: a URL running to the end of the text. */
	v = NULL;
	n = uri_domains("http://abc.test", 15, &v, 0, 5);
	assert_int_equal(n, 1);
	assert_string_equal(v[0], "abc.test");
	free_list(v, n);
	v = NULL;
	n = uri_domains("http:/", 6, &v, 0, 5);
	assert_int_equal(n, 0);
}

/* text must give exactly the domains want (NULL-terminated), in order. */
static void expect(const char *text, const char *const *want)
{
	char **v;
	size_t n = domains(text, &v);
	size_t k = 0;
	while (want[k])
		k++;
	if (n != k) {
		for (size_t i = 0; i < n; i++)
			print_message("got %s\n", v[i]);
		fail_msg("%s: %zu domains, want %zu", text, n, k);
	}
	for (size_t i = 0; i < n; i++)
		assert_string_equal(v[i], want[i]);
	free_list(v, n);
}

#define EXPECT(text, ...) expect(text, (const char *const[]){ __VA_ARGS__, NULL })
#define EXPECT_NONE(text) expect(text, (const char *const[]){ NULL })

static void test_uri_userinfo(void **state)
{
	(void)state;
	/* The last '@' of the authority ends the user-info, as in browsers. */
	EXPECT("http://a@b@spamdomain.test/", "spamdomain.test");
	EXPECT("http://bank.test:pw@x@y@spamdomain.test:81/p", "spamdomain.test");
	EXPECT("www.bank.test@@spamdomain.test", "spamdomain.test");
	/* A '@' after the authority is in the path or query, not user-info. */
	EXPECT("http://good.test/a@evil.test", "good.test");
	EXPECT("http://good.test?x=a@evil.test", "good.test");
	EXPECT("http://good.test#a@evil.test", "good.test");
	EXPECT("http://good.test\\a@evil.test", "good.test");
	EXPECT("<a href=\"http://good.test\">a@evil.test</a>", "good.test");
	EXPECT("http://good.test a@evil.test", "good.test");
	/* An encoded '@' is not a delimiter (and not a host character). */
	EXPECT("http://good.test%40evil.test/", "good.test");
	/* Nothing after the '@'. */
	EXPECT_NONE("http://bank.test@/ http://bank.test@");
}

static void test_uri_slashes(void **state)
{
	(void)state;
	/* Browsers read '\' as '/' and skip any run of them after "http:". */
	EXPECT("http:\\\\spamdomain.test\\x", "spamdomain.test");
	EXPECT("http:/spamdomain.test/", "spamdomain.test");
	EXPECT("http:///spamdomain.test", "spamdomain.test");
	EXPECT("HTTPS:\\/\\a.test hxxp:/b.test HxXpS:\\c.test fTp:////d.test", "a.test", "b.test",
	       "c.test", "d.test");
	/* JSON-escaped slashes. */
	EXPECT("{\"u\":\"https:\\/\\/json.test\\/x\"}", "json.test");
	/* Glued to a word, the scheme still counts. */
	EXPECT("Clickhttp://glued.test/", "glued.test");
	/* Other schemes, no slash at all, or no host after them. */
	EXPECT_NONE("mailto:x@y.test foo:/bar.test foo://bar.test news:a.test urn:x.test "
		    "http:nodomain.test https: ftp:/ http:\\ javascript://x.test");
	/* "httpx" is not http. */
	EXPECT_NONE("httpx://a.test shttpfoo:/b.test");
}

static void test_uri_scheme_relative(void **state)
{
	(void)state;
	EXPECT("<a href=\"//spamdomain.test/\">x</a>", "spamdomain.test");
	EXPECT("<img src='//spamdomain.test/x'>", "spamdomain.test");
	EXPECT("<a href=//unquoted.test>x</a>", "unquoted.test");
	EXPECT("<a HREF = \"//upper.test\"> <IMG\tSrc\n=\n'\\\\back.test/'>", "upper.test",
	       "back.test");
	EXPECT("<a href=\" //lead.test\"> <a href=\"///three.test\">", "lead.test", "three.test");
	EXPECT("<a href=\"//www.sub.test:8080/\">", "www.sub.test");
	/* One slash is a path on the same site; other attributes and words
	 * ending in "href" are not links. */
	EXPECT_NONE("<a href=\"/path.test/x\"> <a xhref=\"//a.test\"> <p title=\"//b.test\"> "
		    "srcset=\"//c.test\" href \"//d.test\" href=x//e.test //f.test");
}

static void test_uri_hosts(void **state)
{
	(void)state;
	/* A port ends the host. */
	EXPECT("http://port.test:8080/x https://www.p2.test:443 http://p3.test:", "port.test",
	       "www.p2.test", "p3.test");
	/* IPv6 and IPv4 literals, in every notation browsers accept. */
	EXPECT_NONE("http://[::1]/ http://[2001:db8::1]:80/ http://u@[::ffff:192.0.2.1]/ "
		    "http://0x7f.1/ http://3232235777/ http://192.0.2.1.:80/ http://1.2.3.0x4/");
	/* Escapes, case, trailing dots, leading dots. */
	EXPECT("http://%65%56%49%4c.test./ http://.lead.test http://EsC%2Eaped.test", "evil.test",
	       "lead.test", "esc.aped.test");
	/* A name longer than any domain is not taken (nor cut to one). */
	char big[400];
	memcpy(big, "http://", 7);
	memset(big + 7, 'a', 300);
	memcpy(big + 307, ".test", 6);
	EXPECT_NONE(big);
}

/* Every prefix of text, as a buffer that ends exactly there (no NUL, so
 * ASan sees any read past it), and followed by two different tails: a
 * read past len would make the results differ. */
static void check_prefixes(const char *text)
{
	size_t total = strlen(text);
	static const char *const tails[] = { "@x@tail.test/ http://more.test", "\"'> \n" };
	for (size_t len = 0; len <= total; len++) {
		char *exact = xmalloc(len ? len : 1);
		memcpy(exact, text, len);
		char **v0 = NULL;
		size_t n0 = uri_domains(exact, len, &v0, 0, 50);
		free(exact);
		for (size_t t = 0; t < ARRAY_SIZE(tails); t++) {
			size_t tl = strlen(tails[t]);
			char *b = xmalloc(len + tl);
			memcpy(b, text, len);
			memcpy(b + len, tails[t], tl);
			char **v = NULL;
			size_t n = uri_domains(b, len, &v, 0, 50);
			free(b);
			assert_int_equal(n, n0);
			for (size_t i = 0; i < n; i++)
				assert_string_equal(v[i], v0[i]);
			free_list(v, n);
		}
		free_list(v0, n0);
	}
}

static void test_uri_bounds(void **state)
{
	(void)state;
	check_prefixes("http://a@b@spamdomain.test/");
	check_prefixes("HTTP:\\\\spamdomain.test\\x");
	check_prefixes("hxxps:/one.test");
	check_prefixes("<a href = \"//spamdomain.test/\">");
	check_prefixes("<img SRC='\\\\x.test/y'>");
	check_prefixes("href=//x.test");
	check_prefixes("www.plain.test.");
	check_prefixes("http://%65%76il.test%2");
	check_prefixes("http://[::1]:80/ http://host.test:8080/");
	check_prefixes("Clickhttp://glued.test/?u=https://inner.test");
	/* The whole string still gives what it should. */
	EXPECT("Clickhttp://glued.test/?u=https://inner.test", "glued.test", "inner.test");
	char **v = NULL;
	size_t n = uri_domains("href=", 5, &v, 0, 5);
	assert_int_equal(n, 0);
	n = uri_domains("http://x.test", 0, &v, 0, 5);
	assert_int_equal(n, 0);
	free(v);
}

/* One run of text may hold a start at every few octets, all sharing one
 * authority: "www.a@" repeated has a "www." after every '@', and the last
 * '@' is at the end.  Finding it must not cost a scan per start (60000
 * starts: quadratic is about 30 s here, linear a few ms). */
static void test_uri_linear(void **state)
{
	(void)state;
	static const char *const units[] = { "www.a@", "http:/a@", "href=//a@", "www.b.test:1@" };
	for (size_t u = 0; u < ARRAY_SIZE(units); u++) {
		struct buf b;
		buf_init(&b, 1 << 20);
		for (int i = 0; i < 60000; i++)
			buf_puts(&b, units[u]);
		buf_puts(&b, "last.test");
		char **v = NULL;
		int64_t t0 = clock_mono_ms();
		size_t n = uri_domains(b.data, b.len, &v, 0, 20);
		int64_t ms = clock_mono_ms() - t0;
		assert_true(ms < 3000);
		/* Each start's user-info runs to the last '@'. */
		assert_int_equal(n, 1);
		assert_string_equal(v[0], "last.test");
		free_list(v, n);
		buf_free(&b);
	}
}

/* The zone of the judging tests: SBL-like 127.0.0.2-3 (+4), PBL-like
 * 127.0.0.10-11 (+1), and with all127 a catch-all covering 127/8. */
static const struct rbl_code codes[] = {
	{ 0x7f000002, 0x7f000003, 4 },
	{ 0x7f00000a, 0x7f00000b, 1 },
	{ 0x7f000000, 0x7fffffff, 0.5 },
};

static void judge(struct rbl_result *r, size_t ncodes, enum dns_outcome o, const char *const *rr,
		  size_t n)
{
	struct rbl_zone z = { .zone = "bl.test", .codes = (struct rbl_code *)codes, .ncodes = ncodes };
	struct dns_answer a = { .outcome = o, .rr = (char **)rr, .n = n };
	if (o == DNS_TEMPFAIL)
		a.error = "timeout";
	rbl_judge(r, &z, "192.0.2.1", &a, "test");
}

static void test_judge(void **state)
{
	(void)state;
	struct rbl_result r = { 0 };
	/* Not listed. */
	judge(&r, 2, DNS_NXDOMAIN, NULL, 0);
	judge(&r, 2, DNS_NODATA, NULL, 0);
	judge(&r, 2, DNS_PASS, NULL, 0);
	assert_int_equal(r.n, 0);
	assert_true(r.score == 0);
	assert_false(r.unavailable);
	assert_false(r.refused);

	/* Each range scores once per answer; a second range adds. */
	const char *const two[] = { "127.0.0.2", "127.0.0.3", "127.0.0.10", "not-an-address" };
	judge(&r, 2, DNS_PASS, two, ARRAY_SIZE(two));
	assert_int_equal(r.n, 2);
	assert_int_equal(r.v[0].status, RBL_LISTED);
	assert_string_equal(r.v[0].zone, "bl.test");
	assert_string_equal(r.v[0].name, "192.0.2.1");
	assert_string_equal(r.v[0].code, "127.0.0.2");
	assert_true(r.v[0].score == 4);
	assert_int_equal(r.v[1].status, RBL_LISTED);
	assert_string_equal(r.v[1].code, "127.0.0.10");
	assert_true(r.v[1].score == 1);
	assert_true(r.score == 5);
	/* Another answer (another name, or the next check) scores again. */
	judge(&r, 2, DNS_PASS, two, 1);
	assert_int_equal(r.n, 3);
	assert_true(r.score == 9);
	assert_false(r.unavailable);
	assert_false(r.refused);
	rbl_result_free(&r);

	/* A code no range covers: listed, but unscored. */
	const char *const odd[] = { "127.0.0.4" };
	judge(&r, 2, DNS_PASS, odd, 1);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.v[0].status, RBL_UNSCORED);
	assert_string_equal(r.v[0].code, "127.0.0.4");
	assert_true(r.v[0].score == 0);
	assert_true(r.score == 0);
	judge(&r, 0, DNS_PASS, odd, 1); /* a zone with no codes at all */
	assert_int_equal(r.n, 2);
	assert_int_equal(r.v[1].status, RBL_UNSCORED);
	assert_false(r.unavailable);
	assert_false(r.refused);
	rbl_result_free(&r);

	/* A temporary failure: unavailable, not refused, no score. */
	judge(&r, 2, DNS_TEMPFAIL, NULL, 0);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.v[0].status, RBL_UNAVAILABLE);
	assert_string_equal(r.v[0].code, "");
	assert_true(r.score == 0);
	assert_true(r.unavailable);
	assert_false(r.refused);
	rbl_result_free(&r);

	/* Refused, even with a range covering all of 127/8; the other
	 * records of the answer are still judged. */
	const char *const ref[] = { "127.255.255.254", "127.255.255.0", "127.0.0.2" };
	judge(&r, 3, DNS_PASS, ref, ARRAY_SIZE(ref));
	assert_int_equal(r.n, 3);
	assert_int_equal(r.v[0].status, RBL_REFUSED);
	assert_string_equal(r.v[0].code, "127.255.255.254");
	assert_true(r.v[0].score == 0);
	assert_int_equal(r.v[1].status, RBL_REFUSED);
	assert_string_equal(r.v[1].code, "127.255.255.0");
	assert_int_equal(r.v[2].status, RBL_LISTED);
	assert_true(r.score == 4);
	assert_true(r.refused);
	assert_false(r.unavailable);
	/* Just outside 127.255.255.0/24 is an ordinary code. */
	const char *const near[] = { "127.255.254.255" };
	judge(&r, 3, DNS_PASS, near, 1);
	assert_int_equal(r.n, 4);
	assert_int_equal(r.v[3].status, RBL_LISTED);
	assert_true(r.v[3].score == 0.5);
	/* Refused and then unavailable: both flags. */
	judge(&r, 3, DNS_TEMPFAIL, NULL, 0);
	assert_true(r.refused);
	assert_true(r.unavailable);
	rbl_result_free(&r);
	assert_int_equal(r.n, 0);
	assert_false(r.refused);
}

static void test_format(void **state)
{
	(void)state;
	struct rbl_entry e[3] = {
		{ RBL_LISTED, "bl.test", "1.2.3.4", "127.0.0.2", 6 },
		{ RBL_REFUSED, "r.test", "1.2.3.4", "127.255.255.254", 0 },
		{ RBL_UNAVAILABLE, "slow.test", "1.2.3.4", "", 0 },
	};
	struct rbl_result r = { .v = e, .n = 3, .score = 6, .unavailable = true };
	struct buf b;
	buf_init(&b, 4096);
	rbl_result_format(&r, false, &b);
	assert_string_equal(b.data, "bl.test=127.0.0.2(+6) r.test=refused(127.255.255.254) "
				    "slow.test=unavailable");
	buf_reset(&b);
	r.n = 1;
	rbl_result_format(&r, true, &b);
	assert_string_equal(b.data, "1.2.3.4@bl.test=127.0.0.2(+6)");
	buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_query_names),
		cmocka_unit_test(test_judge),
		cmocka_unit_test(test_uri_domains),
		cmocka_unit_test(test_uri_userinfo),
		cmocka_unit_test(test_uri_slashes),
		cmocka_unit_test(test_uri_scheme_relative),
		cmocka_unit_test(test_uri_hosts),
		cmocka_unit_test(test_uri_bounds),
		cmocka_unit_test(test_uri_linear),
		cmocka_unit_test(test_format),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
