/*
 * test_buf.c - buffers with a hard maximum, slices, the log sanitiser,
 * queue ids, host:port parsing and connection counting.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "common/common.h"

static void test_buf_limits(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b, 10);
	assert_int_equal(buf_puts(&b, "hello"), 0);
	assert_int_equal(buf_puts(&b, "world"), 0);
	assert_int_equal(b.len, 10);
	assert_string_equal(b.data, "helloworld");
	/* Past max: refused, unchanged (never silently truncated). */
	assert_int_equal(buf_putc(&b, '!'), -1);
	assert_int_equal(buf_printf(&b, "%d", 1), -1);
	assert_int_equal(b.len, 10);
	assert_string_equal(b.data, "helloworld");
	buf_consume(&b, 5);
	assert_string_equal(b.data, "world");
	assert_int_equal(buf_printf(&b, "%03d", 7), 0);
	assert_string_equal(b.data, "world007");
	char *p = buf_reserve(&b, 2);
	assert_non_null(p);
	memcpy(p, "xy", 2);
	buf_commit(&b, 2);
	assert_string_equal(b.data, "world007xy");
	assert_null(buf_reserve(&b, 1));
	buf_consume(&b, 100);
	assert_int_equal(b.len, 0);
	assert_string_equal(b.data, "");
	buf_free(&b);
	assert_null(b.data);
}

static void test_slices(void **state)
{
	(void)state;
	struct slice s = slice_make("MAIL FROM", 4);
	assert_true(slice_eq(s, "MAIL"));
	assert_false(slice_eq(s, "MAIL "));
	assert_true(slice_ieq(s, "mail"));
	assert_true(slice_iprefix(slice_cstr("STARTTLS"), "start"));
	assert_false(slice_iprefix(s, "MAILX"));
	char *d = slice_dup(s);
	assert_string_equal(d, "MAIL");
	free(d);
}

static void test_log_sanitize(void **state)
{
	(void)state;
	char out[64];
	log_sanitize(out, sizeof(out), "a\r\nb\\c\x7f\xc3", 8, 60);
	assert_string_equal(out, "a\\x0d\\x0ab\\\\c\\x7f\\xc3");
	/* Capped, with a marker. */
	log_sanitize(out, sizeof(out), "0123456789abcdef", 16, 10);
	assert_string_equal(out, "0123456789...");
	/* log_str: rotating slots, capped at LOG_STR_MAX. */
	char big[1000];
	memset(big, 'z', sizeof(big) - 1);
	big[999] = '\0';
	const char *a = log_str(big);
	assert_int_equal(strlen(a), LOG_STR_MAX + 3);
	const char *b = log_str("evil\nline");
	assert_string_equal(b, "evil\\x0aline");
	assert_int_equal(strlen(a), LOG_STR_MAX + 3); /* a still valid */
	assert_string_equal(log_str(NULL), "(null)");
}

static void test_ids(void **state)
{
	(void)state;
	char prev[ID_SIZE] = "";
	for (int i = 0; i < 2000; i++) {
		char id[ID_SIZE];
		id_generate(id);
		assert_int_equal(strlen(id), 14);
		for (int k = 0; k < 14; k++)
			assert_true((id[k] >= '0' && id[k] <= '9') || (id[k] >= 'A' && id[k] <= 'Z'));
		/* time-ordered and unique */
		assert_true(strncmp(prev, id, 9) < 0);
		memcpy(prev, id, ID_SIZE);
	}
}

static void test_hostport(void **state)
{
	(void)state;
	struct sockaddr_storage ss;
	socklen_t len;
	char *err = NULL;
	char ip[64];
	assert_int_equal(net_parse_hostport("127.0.0.1:2525", &ss, &len, &err), 0);
	net_addr_str((struct sockaddr *)&ss, ip, sizeof(ip));
	assert_string_equal(ip, "127.0.0.1");
	assert_int_equal(net_parse_hostport("[::1]:25", &ss, &len, &err), 0);
	net_addr_str((struct sockaddr *)&ss, ip, sizeof(ip));
	assert_string_equal(ip, "::1");
	assert_int_equal(net_parse_hostport("*:25", &ss, &len, &err), 0);
	static const char *bad[] = { "127.0.0.1", ":25", "127.0.0.1:0", "127.0.0.1:65536",
				     "host.test:25", "[::1:25", "1.2.3.4:2x", "[zz]:25" };
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		err = NULL;
		assert_int_equal(net_parse_hostport(bad[i], &ss, &len, &err), -1);
		assert_non_null(err);
		free(err);
	}
}

static void test_connlimit(void **state)
{
	(void)state;
	struct connlimit *cl = connlimit_new(3, 2);
	assert_int_equal(connlimit_acquire(cl, "192.0.2.1"), 0);
	assert_int_equal(connlimit_acquire(cl, "192.0.2.1"), 0);
	assert_int_equal(connlimit_acquire(cl, "192.0.2.1"), -2); /* per IP */
	assert_int_equal(connlimit_acquire(cl, "192.0.2.2"), 0);
	assert_int_equal(connlimit_acquire(cl, "192.0.2.3"), -1); /* total */
	assert_int_equal(connlimit_count(cl), 3);
	connlimit_release(cl, "192.0.2.1");
	assert_int_equal(connlimit_acquire(cl, "192.0.2.3"), 0);
	connlimit_set(cl, 10, 10);
	assert_int_equal(connlimit_acquire(cl, "192.0.2.1"), 0);
	assert_int_equal(connlimit_count(cl), 4);
	connlimit_free(&cl);
	assert_null(cl);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_buf_limits),  cmocka_unit_test(test_slices),
		cmocka_unit_test(test_log_sanitize), cmocka_unit_test(test_ids),
		cmocka_unit_test(test_hostport),    cmocka_unit_test(test_connlimit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
