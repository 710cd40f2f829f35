/*
 * test_rbl.c - DNSBL query names (RFC 5782 section 2.4, IPv4 and IPv6),
 * URI domain extraction with its obfuscations, and result formatting.
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
		cmocka_unit_test(test_uri_domains),
		cmocka_unit_test(test_format),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
