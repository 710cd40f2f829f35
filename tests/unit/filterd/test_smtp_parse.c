/*
 * test_smtp_parse.c - SMTP command lines, paths, parameters and BDAT
 * arguments; every valid and invalid line is also fed to the line reader
 * one byte at a time and must parse the same.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "filterd/filterd.h"

/* Feed `wire` through a linereader one byte at a time; returns the one
 * line it yields (copied into out). */
static size_t line_bytewise(const char *wire, char *out, size_t outsize, bool *crlf)
{
	struct linereader lr = { .max = SMTP_LINE_MAX };
	struct buf in;
	size_t got = (size_t)-1;
	buf_init(&in, 1 << 20);
	for (size_t i = 0; wire[i]; i++) {
		assert_int_equal(buf_append(&in, &wire[i], 1), 0);
		struct slice line;
		size_t consumed;
		enum line_status st = linereader_next(&lr, in.data, in.len, &line, crlf, &consumed);
		if (st == LINE_OK) {
			assert_true(line.len < outsize);
			memcpy(out, line.p, line.len);
			out[line.len] = '\0';
			got = line.len;
			assert_int_equal(wire[i + 1], '\0'); /* only at the very end */
		} else {
			assert_int_equal(st, LINE_MORE);
		}
		buf_consume(&in, consumed);
	}
	buf_free(&in);
	return got;
}

static void test_cmd_verbs(void **state)
{
	(void)state;
	static const struct {
		const char *line;
		enum smtp_cmd cmd;
		const char *args;
	} cases[] = {
		{ "EHLO client.example\r\n", CMD_EHLO, "client.example" },
		{ "ehlo client.example\r\n", CMD_EHLO, "client.example" },
		{ "HELO x\n", CMD_HELO, "x" },
		{ "MAIL FROM:<a@b.test> SIZE=10\r\n", CMD_MAIL, "FROM:<a@b.test> SIZE=10" },
		{ "rcpt TO:<x@y>\r\n", CMD_RCPT, "TO:<x@y>" },
		{ "DATA\r\n", CMD_DATA, "" },
		{ "BDAT 100 LAST\r\n", CMD_BDAT, "100 LAST" },
		{ "RSET\r\n", CMD_RSET, "" },
		{ "NOOP hello\r\n", CMD_NOOP, "hello" },
		{ "QUIT\r\n", CMD_QUIT, "" },
		{ "VRFY bob\r\n", CMD_VRFY, "bob" },
		{ "STARTTLS\r\n", CMD_STARTTLS, "" },
		{ "HELP\r\n", CMD_HELP, "" },
		{ "XYZZY\r\n", CMD_UNKNOWN, "" },
		{ "MAILFROM:<a@b>\r\n", CMD_UNKNOWN, "" },
		{ "\r\n", CMD_UNKNOWN, "" },
		{ "GET / HTTP/1.0\r\n", CMD_UNKNOWN, "/ HTTP/1.0" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		char line[SMTP_LINE_MAX + 1];
		bool crlf;
		size_t n = line_bytewise(cases[i].line, line, sizeof(line), &crlf);
		assert_int_not_equal(n, (size_t)-1);
		assert_int_equal(crlf, strstr(cases[i].line, "\r\n") != NULL);
		struct slice args;
		enum smtp_cmd cmd = smtp_cmd_parse(slice_make(line, n), &args);
		assert_int_equal(cmd, cases[i].cmd);
		if (cmd != CMD_UNKNOWN || *cases[i].args)
			assert_true(slice_eq(args, cases[i].args));
	}
}

static void test_line_too_long(void **state)
{
	(void)state;
	struct linereader lr = { .max = 10 };
	struct slice line;
	bool crlf;
	size_t consumed;
	/* Fed whole: the long line is refused, the next one parses. */
	const char *in = "0123456789AB\r\nNOOP\r\n";
	assert_int_equal(linereader_next(&lr, in, strlen(in), &line, &crlf, &consumed), LINE_TOOLONG);
	assert_int_equal(consumed, 14);
	assert_int_equal(linereader_next(&lr, in + 14, strlen(in) - 14, &line, &crlf, &consumed),
			 LINE_OK);
	assert_true(slice_eq(line, "NOOP"));
	/* Exactly max octets is fine; CR LF not counted. */
	in = "0123456789\r\n";
	assert_int_equal(linereader_next(&lr, in, strlen(in), &line, &crlf, &consumed), LINE_OK);
	assert_int_equal(line.len, 10);

	/* Byte by byte: one TOOLONG report, the rest of the line skipped. */
	struct linereader lr2 = { .max = 10 };
	struct buf b;
	buf_init(&b, 100);
	const char *wire = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\nQUIT\r\n";
	int toolong = 0, ok = 0;
	for (size_t i = 0; wire[i]; i++) {
		buf_append(&b, &wire[i], 1);
		for (;;) {
			enum line_status st = linereader_next(&lr2, b.data, b.len, &line, &crlf, &consumed);
			if (st == LINE_TOOLONG)
				toolong++;
			if (st == LINE_OK) {
				ok++;
				assert_true(slice_eq(line, "QUIT"));
			}
			buf_consume(&b, consumed);
			if (st == LINE_MORE && consumed == 0)
				break;
			if (st == LINE_OK)
				break;
		}
		assert_true(b.len <= 12); /* never buffers the long line */
	}
	assert_int_equal(toolong, 1);
	assert_int_equal(ok, 1);
	buf_free(&b);
}

/* The path of "MAIL <args>" (or RCPT), the line fed one byte at a time
 * through the line reader first: the same result as parsing args whole. */
static int path_bytewise(const char *args, const char *kw, struct smtp_path *p,
			 char *params_out, size_t params_size, const char **err)
{
	char *wire = xasprintf("%s %s\r\n", strcmp(kw, "FROM") == 0 ? "MAIL" : "RCPT", args);
	char line[SMTP_LINE_MAX + 1];
	bool crlf;
	size_t n = line_bytewise(wire, line, sizeof(line), &crlf);
	free(wire);
	assert_int_not_equal(n, (size_t)-1);
	struct slice a, params;
	enum smtp_cmd cmd = smtp_cmd_parse(slice_make(line, n), &a);
	assert_int_equal(cmd, strcmp(kw, "FROM") == 0 ? CMD_MAIL : CMD_RCPT);
	int r = smtp_path_parse(a, kw, p, &params, err);
	if (r == 0) {
		assert_true(params.len < params_size);
		memcpy(params_out, params.p, params.len);
		params_out[params.len] = '\0';
	}
	return r;
}

static void test_paths_valid(void **state)
{
	(void)state;
	static const struct {
		const char *args, *kw, *addr, *params;
		bool null, utf8, nodomain;
	} cases[] = {
		{ "FROM:<alice@example.test>", "FROM", "alice@example.test", "", false, false, false },
		{ "from:<alice@example.test>", "FROM", "alice@example.test", "", false, false, false },
		{ "FROM: <alice@example.test>", "FROM", "alice@example.test", "", false, false, false },
		{ "FROM:alice@example.test", "FROM", "alice@example.test", "", false, false, false },
		{ "FROM:<> SIZE=100", "FROM", "", "SIZE=100", true, false, false },
		{ "FROM:<a.b+tag@sub.example.test> BODY=8BITMIME SMTPUTF8", "FROM",
		  "a.b+tag@sub.example.test", "BODY=8BITMIME SMTPUTF8", false, false, false },
		{ "FROM:<\"john doe\"@example.test>", "FROM", "\"john doe\"@example.test", "", false, false,
		  false },
		{ "FROM:<\"a\\\"b\"@example.test>", "FROM", "\"a\\\"b\"@example.test", "", false, false,
		  false },
		{ "TO:<@relay.test,@r2.test:bob@example.test>", "TO", "bob@example.test", "", false, false,
		  false },
		{ "TO:<Postmaster>", "TO", "Postmaster", "", false, false, true },
		{ "TO:<user@[192.0.2.1]>", "TO", "user@[192.0.2.1]", "", false, false, false },
		{ "TO:<j\xc3\xb6rg@b\xc3\xbc" "cher.test>", "TO", "j\xc3\xb6rg@b\xc3\xbc" "cher.test", "",
		  false, true, false },
		{ "TO:<x@a-b.test>", "TO", "x@a-b.test", "", false, false, false },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct smtp_path p;
		struct slice params;
		const char *err = NULL;
		int r = smtp_path_parse(slice_cstr(cases[i].args), cases[i].kw, &p, &params, &err);
		if (r != 0)
			fail_msg("case %zu (%s): %s", i, cases[i].args, err);
		assert_string_equal(p.addr, cases[i].addr);
		assert_true(slice_eq(params, cases[i].params));
		assert_int_equal(p.null, cases[i].null);
		assert_int_equal(p.utf8, cases[i].utf8);
		assert_int_equal(p.no_domain, cases[i].nodomain);

		struct smtp_path p2;
		char params2[SMTP_LINE_MAX];
		assert_int_equal(path_bytewise(cases[i].args, cases[i].kw, &p2, params2,
					       sizeof(params2), &err), 0);
		assert_string_equal(p2.addr, p.addr);
		assert_string_equal(params2, cases[i].params);
		assert_int_equal(p2.utf8, p.utf8);
	}
}

static void test_paths_invalid(void **state)
{
	(void)state;
	static const char *cases[] = {
		"FROM<a@b.test>",          /* no colon */
		"TO:<a@b.test>",           /* wrong keyword for FROM */
		"FROM:<a@b.test",          /* no closing bracket */
		"FROM:<a@@b.test>",
		"FROM:<a@b..test>",
		"FROM:<a@-b.test>",
		"FROM:<a@b-.test>",
		"FROM:<.a@b.test>",
		"FROM:<a.@b.test>",
		"FROM:<a..b@b.test>",
		"FROM:<a b@b.test>",
		"FROM:<\"unterminated@b.test>",
		"FROM:<\"ctl\x01\"@b.test>",
		"FROM:<a@b.test>SIZE=1",   /* no blank before the parameter */
		"FROM:<@a.test:>",         /* route without mailbox */
		"FROM:<a@[]>",
		"FROM:",
		"FROM:<\xff@b.test>",        /* not UTF-8 */
		"FROM:<a@b\xc3.test>",       /* truncated sequence */
		"FROM:<\xc0\xaf@b.test>",    /* overlong */
		"FROM:<\xed\xa0\x80@b.test>", /* surrogate */
		"FROM:<a@b.test> \x01",
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct smtp_path p;
		struct slice params;
		const char *err = NULL;
		int r = smtp_path_parse(slice_cstr(cases[i]), "FROM", &p, &params, &err);
		if (i == ARRAY_SIZE(cases) - 1) {
			/* The path is fine; the junk is a bad parameter. */
			assert_int_equal(r, 0);
			struct slice k, v;
			assert_int_equal(smtp_param_next(&params, &k, &v), -1);
			continue;
		}
		if (r == 0)
			fail_msg("case %zu (%s) parsed as <%s>", i, cases[i], p.addr);
		assert_non_null(err);
		char params2[SMTP_LINE_MAX];
		assert_int_equal(path_bytewise(cases[i], "FROM", &p, params2, sizeof(params2), &err),
				 -1);
	}
	/* A path longer than RFC 5321's 256 octets. */
	char long_path[400];
	memset(long_path, 'a', sizeof(long_path));
	memcpy(long_path, "FROM:<", 6);
	memcpy(long_path + 300, "@b.test>", 9);
	struct smtp_path p;
	struct slice params;
	const char *err;
	assert_int_equal(smtp_path_parse(slice_cstr(long_path), "FROM", &p, &params, &err), -1);
}

static void test_params(void **state)
{
	(void)state;
	struct slice ps = slice_cstr("SIZE=1000  BODY=8BITMIME SMTPUTF8");
	struct slice k, v;
	assert_int_equal(smtp_param_next(&ps, &k, &v), 1);
	assert_true(slice_eq(k, "SIZE") && slice_eq(v, "1000"));
	assert_int_equal(smtp_param_next(&ps, &k, &v), 1);
	assert_true(slice_eq(k, "BODY") && slice_eq(v, "8BITMIME"));
	assert_int_equal(smtp_param_next(&ps, &k, &v), 1);
	assert_true(slice_eq(k, "SMTPUTF8") && v.len == 0);
	assert_int_equal(smtp_param_next(&ps, &k, &v), 0);

	ps = slice_cstr("=5");
	assert_int_equal(smtp_param_next(&ps, &k, &v), -1);
	ps = slice_cstr("-X=1");
	assert_int_equal(smtp_param_next(&ps, &k, &v), -1);
	ps = slice_cstr("");
	assert_int_equal(smtp_param_next(&ps, &k, &v), 0);
}

static void test_bdat_args(void **state)
{
	(void)state;
	uint64_t n;
	bool last;
	assert_int_equal(smtp_bdat_parse(slice_cstr("0 LAST"), &n, &last), 0);
	assert_true(n == 0 && last);
	assert_int_equal(smtp_bdat_parse(slice_cstr("123"), &n, &last), 0);
	assert_true(n == 123 && !last);
	assert_int_equal(smtp_bdat_parse(slice_cstr("5 last"), &n, &last), 0);
	assert_true(n == 5 && last);
	static const char *bad[] = { "", "LAST", "-1", "12a", "5 LASTX", "5 FIRST",
				     "99999999999999999999999", "1 2" };
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		assert_int_equal(smtp_bdat_parse(slice_cstr(bad[i]), &n, &last), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cmd_verbs),  cmocka_unit_test(test_line_too_long),
		cmocka_unit_test(test_paths_valid), cmocka_unit_test(test_paths_invalid),
		cmocka_unit_test(test_params),     cmocka_unit_test(test_bdat_args),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
