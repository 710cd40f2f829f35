/*
 * test_spf.c - SPF checks that need no DNS server: identity and address
 * validation (none, and not one query sent), loopback clients checked like
 * any other (libspf2 alone would pass them), the result mapping, domain syntax, reason sanitising, the SPF_error()
 * safety net, and temperror against a resolver that never answers (a
 * bound UDP socket nobody reads).  spf.c is included to reach its static
 * helpers; the real DNS cases run against dnsmasq outside the unit tests.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <unistd.h>

#include "filterd/spf.c"

/* A UDP "server" that never answers; queries to it are counted. */
static int hole_fd = -1;
static struct dns *hole_dns;
static struct spf_verifier *hole_v;

static int setup(void **state)
{
	(void)state;
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
	hole_fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (hole_fd < 0 || bind(hole_fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
	    getsockname(hole_fd, (struct sockaddr *)&sin, &len) < 0)
		return -1;
	char hostport[64], *err = NULL;
	snprintf(hostport, sizeof(hostport), "127.0.0.1:%u", (unsigned)ntohs(sin.sin_port));
	struct strlist servers = { 0 };
	strlist_add(&servers, hostport);
	hole_dns = dns_new(&servers, 300, &err);
	strlist_free(&servers);
	if (hole_dns == NULL || (hole_v = spf_verifier_new(hole_dns, "mx.example.test", &err)) == NULL) {
		free(err);
		return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	spf_verifier_free(&hole_v);
	assert_null(hole_v);
	dns_free(&hole_dns);
	close(hole_fd);
	return 0;
}

/* Datagrams that reached the hole since the last call. */
static int queries_sent(void)
{
	char buf[1024];
	int n = 0;
	while (recv(hole_fd, buf, sizeof(buf), 0) >= 0)
		n++;
	return n;
}

static void test_identity_none(void **state)
{
	(void)state;
	static const struct {
		const char *ip, *helo, *from, *why, *domain;
		bool helo_id;
	} cases[] = {
		{ "192.0.2.1", "[192.0.2.1]", "", "address literal", "[192.0.2.1]", true },
		{ "192.0.2.1", "192.0.2.1", "", "not a valid domain", "192.0.2.1", true },
		{ "192.0.2.1", "localhost", "", "not a valid domain", "localhost", true },
		{ "192.0.2.1", "", "", "no HELO name", "", true },
		{ "192.0.2.1", NULL, NULL, "no HELO name", "", true },
		{ "192.0.2.1", "a..example.test", "", "not a valid domain", "a..example.test", true },
		{ "192.0.2.1", "host.example.test.", "", "not a valid domain", "host.example.test.", true },
		{ "192.0.2.1", "h", "noat", "no domain", "", false },
		{ "192.0.2.1", "h", "user@", "no domain", "", false },
		{ "192.0.2.1", "h", "j\xc3\xb6rg@example.test", "SMTPUTF8", "", false },
		{ "192.0.2.1", "h", "a\tb@example.test", "local-part", "", false },
		{ "192.0.2.1", "h", "a@b\xc3\xa4r.example", "internationalized", "b\xc3\xa4r.example", false },
		{ "192.0.2.1", "h", "a@%{i}.example.test", "not a valid domain", "%{i}.example.test", false },
		{ "192.0.2.1", "h", "a@ex ample.test", "not a valid domain", "ex ample.test", false },
		{ "192.0.2.1", "h", "a@1.2.3.4", "not a valid domain", "1.2.3.4", false },
		{ "", "h", "a@example.test", "invalid client address", "example.test", false },
		{ NULL, "h", "a@example.test", "invalid client address", "example.test", false },
		{ "garbage", "h", "a@example.test", "invalid client address", "example.test", false },
		{ "192.0.2.256", "h", "a@example.test", "invalid client address", "example.test", false },
		{ "2001:db8::1::2", "h", "a@example.test", "invalid client address", "example.test", false },
		{ " 192.0.2.1", "h", "a@example.test", "invalid client address", "example.test", false },
	};
	queries_sent();
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct spf_result r;
		memset(&r, 0x55, sizeof(r));
		spf_verify(hole_v, cases[i].ip, cases[i].helo, cases[i].from, &r);
		if (r.res != AR_NONE || strstr(r.reason, cases[i].why) == NULL)
			fail_msg("case %zu: %s \"%s\"", i, auth_res_name(r.res), r.reason);
		assert_int_equal(r.helo_identity, cases[i].helo_id);
		assert_string_equal(r.domain, cases[i].domain);
		assert_int_equal(r.lookups, 0);
		assert_int_equal(r.void_lookups, 0);
		for (const char *p = r.reason; *p; p++)
			assert_true(*p >= 0x20 && *p < 0x7f);
	}
	struct spf_result r;
	char longfrom[400];
	memset(longfrom, 'a', sizeof(longfrom) - 1);
	longfrom[sizeof(longfrom) - 1] = '\0';
	longfrom[10] = '@';
	spf_verify(hole_v, "192.0.2.1", "h", longfrom, &r);
	assert_int_equal(r.res, AR_NONE);
	/* Control characters never reach sender. */
	spf_verify(hole_v, "garbage", "h", "a\r\nb@example.test", &r);
	assert_string_equal(r.sender, "a??b@example.test");
	assert_int_equal(queries_sent(), 0);
}

static void test_temperror(void **state)
{
	(void)state;
	struct spf_result r;
	spf_verify(hole_v, "192.0.2.1", "client.example.test", "alice@example.test", &r);
	assert_int_equal(r.res, AR_TEMPERROR);
	assert_false(r.helo_identity);
	assert_string_equal(r.sender, "alice@example.test");
	assert_string_equal(r.domain, "example.test");
	assert_non_null(strstr(r.reason, "example.test"));
	assert_int_equal(r.lookups, 0); /* the record lookup is free */
	/* Null reverse path: the HELO name, also for ::ffff:v4 and IPv6. */
	spf_verify(hole_v, "::ffff:192.0.2.1", "client.example.test", "", &r);
	assert_int_equal(r.res, AR_TEMPERROR);
	assert_true(r.helo_identity);
	assert_string_equal(r.sender, "client.example.test");
	assert_string_equal(r.domain, "client.example.test");
	spf_verify(hole_v, "2001:db8::1", "[192.0.2.1]", "a@example.test", &r);
	assert_int_equal(r.res, AR_TEMPERROR);
	assert_true(queries_sent() > 0);
	/* Loopback clients are looked up too: no free pass. */
	spf_verify(hole_v, "127.0.0.1", "h.example.test", "a@example.test", &r);
	assert_int_equal(r.res, AR_TEMPERROR);
	spf_verify(hole_v, "::1", "h.example.test", "a@example.test", &r);
	assert_int_equal(r.res, AR_TEMPERROR);
	assert_true(queries_sent() > 0);
}

static void test_map_result(void **state)
{
	(void)state;
	assert_int_equal(map_result(SPF_RESULT_PASS), AR_PASS);
	assert_int_equal(map_result(SPF_RESULT_FAIL), AR_FAIL);
	assert_int_equal(map_result(SPF_RESULT_SOFTFAIL), AR_SOFTFAIL);
	assert_int_equal(map_result(SPF_RESULT_NEUTRAL), AR_NEUTRAL);
	assert_int_equal(map_result(SPF_RESULT_NONE), AR_NONE);
	assert_int_equal(map_result(SPF_RESULT_TEMPERROR), AR_TEMPERROR);
	assert_int_equal(map_result(SPF_RESULT_PERMERROR), AR_PERMERROR);
	assert_int_equal(map_result(SPF_RESULT_INVALID), AR_PERMERROR);
	assert_int_equal(map_result((SPF_result_t)99), AR_PERMERROR);
	assert_string_equal(auth_res_name(map_result(SPF_RESULT_SOFTFAIL)), "softfail");
	assert_string_equal(auth_res_name(map_result(SPF_RESULT_INVALID)), "permerror");
}

static void test_domain_syntax(void **state)
{
	(void)state;
	char l63[80], l64[80], long254[300];
	memset(l63, 'a', 63);
	strcpy(l63 + 63, ".test");
	memset(l64, 'a', 64);
	strcpy(l64 + 64, ".test");
	for (size_t i = 0; i < 254; i++)
		long254[i] = i % 2 ? '.' : 'a';
	long254[253] = 'b';
	long254[254] = '\0';
	assert_true(domain_ok("example.test", true));
	assert_true(domain_ok("_spf.Ex-ample.test", true));
	assert_true(domain_ok("a.b1", true));
	assert_true(domain_ok(l63, true));
	assert_false(domain_ok(l64, true));
	assert_false(domain_ok(long254, true));
	long254[253] = '\0'; /* 253 octets */
	assert_true(domain_ok(long254, true));
	static const char *bad[] = { "", ".", "test", "a..b", ".a.b", "a.b.", "a.123",
				     "1.2.3.4", "a b.test", "a/b.test", "a.b%", "\xc3\xa4.test" };
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		if (domain_ok(bad[i], true))
			fail_msg("accepted \"%s\"", bad[i]);
	/* Names to query are looser: a final dot, any printable ASCII. */
	assert_true(domain_ok("a.b.", false));
	assert_true(domain_ok("x_%y.test", false));
	assert_true(domain_ok("localhost", false));
	assert_false(domain_ok(".", false));
	assert_false(domain_ok("a..b", false));
	assert_false(domain_ok("a b", false));
	assert_false(domain_ok("", false));
}

static void test_reason_sanitised(void **state)
{
	(void)state;
	struct spf_result r;
	char big[600];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	set_reason(&r, big);
	assert_true(strlen(r.reason) < sizeof(r.reason));
	set_reason(&r, "evil\r\nX-Injected: yes\x7f");
	assert_null(strchr(r.reason, '\r'));
	assert_null(strchr(r.reason, '\n'));
	for (const char *p = r.reason; *p; p++)
		assert_true(*p >= 0x20 && *p < 0x7f);
}

/* libspf2 aborts on a broken invariant: during a check the handler
 * jumps back out instead. */
static void test_error_handler(void **state)
{
	(void)state;
	SPF_request_t *rq = SPF_request_new(hole_v->server);
	assert_non_null(rq);
	struct check *st = &tls;
	memset(st, 0, sizeof(*st));
	cur = st;
	if (setjmp(st->jb) == 0) {
		SPF_request_set_env_from(rq, NULL); /* SPF_ASSERT_NOTNULL */
		cur = NULL;
		fail_msg("SPF_error returned");
	}
	cur = NULL;
	assert_non_null(strstr(st->crash, "libspf2 error"));
	assert_int_equal(st->err, SPF_E_INTERNAL_ERROR);
	struct spf_result r;
	memset(&r, 0, sizeof(r));
	judge(&r, st, "mx.example.test");
	assert_int_equal(r.res, AR_PERMERROR);
	SPF_request_free(rq);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_identity_none),	 cmocka_unit_test(test_temperror),
		cmocka_unit_test(test_map_result),	 cmocka_unit_test(test_domain_syntax),
		cmocka_unit_test(test_reason_sanitised), cmocka_unit_test(test_error_handler),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
