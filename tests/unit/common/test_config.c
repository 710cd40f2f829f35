/*
 * test_config.c - the configuration parser: every key type, defaults,
 * errors with FILE:LINE, and the same results fed one byte at a time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"

/* Parse text with chunk-sized feeds (0 = whole). */
static int parse(const char *text, size_t chunk, struct config **cfg, char **err)
{
	struct config_parser *p = config_parser_new("/etc/mailgw/test.conf");
	size_t len = strlen(text);
	*err = NULL;
	for (size_t off = 0; off < len;) {
		size_t n = chunk ? chunk : len;
		if (n > len - off)
			n = len - off;
		if (config_parser_feed(p, text + off, n, err) < 0) {
			/* finish frees the parser */
			struct config *unused = NULL;
			char *e2 = NULL;
			config_parser_finish(&p, &unused, &e2);
			free(e2);
			config_free(&unused);
			return -1;
		}
		off += n;
	}
	return config_parser_finish(&p, cfg, err);
}

static const char *good =
	"# demo\n"
	"hostname = MX.Example.Test      # banner\n"
	"local_domains = example.test, other.test\n"
	"local_domains = third.test\n"
	"data_dir = var\n"
	"users_file = /srv/users\n"
	"tls_cert_file = tls/cert.pem\n"
	"tls_key_file = tls/key.pem\n"
	"smtp_listen = 127.0.0.1:2525\n"
	"smtp_listen = [::1]:2525\n"
	"smtps_listen = 127.0.0.1:2465\n"
	"max_message_size = 10m\n"
	"max_recipients=7\n"
	"\t smtp_timeout = 500ms \r\n"
	"smtp_data_timeout = 2m\n"
	"log_level = debug\n"
	"password_scheme = BLF-CRYPT\n"
	"syslog_facility = mail"; /* no final newline */

static void check_good(struct config *c)
{
	assert_string_equal(c->hostname, "mx.example.test");
	assert_int_equal(c->local_domains.n, 3);
	assert_string_equal(c->local_domains.v[0], "example.test");
	assert_string_equal(c->local_domains.v[2], "third.test");
	assert_string_equal(c->data_dir, "/etc/mailgw/var"); /* relative to the file */
	assert_string_equal(c->users_file, "/srv/users");
	assert_string_equal(c->tls_cert_file, "/etc/mailgw/tls/cert.pem");
	assert_int_equal(c->smtp_listen.n, 2);
	assert_string_equal(c->smtp_listen.v[1], "[::1]:2525");
	assert_int_equal(c->smtps_listen.n, 1);
	assert_int_equal(c->max_message_size, 10 * 1024 * 1024);
	assert_int_equal(c->max_recipients, 7);
	assert_int_equal(c->smtp_timeout_ms, 500);
	assert_int_equal(c->smtp_data_timeout_ms, 120000);
	assert_string_equal(c->log_level, "debug");
	assert_string_equal(c->password_scheme, "BLF-CRYPT");
	assert_string_equal(c->syslog_facility, "mail");
	/* defaults */
	assert_int_equal(c->max_connections, 500);
	assert_int_equal(c->max_bad_commands, 20);
	assert_int_equal(c->max_line_length, 10000);
}

static void test_valid(void **state)
{
	(void)state;
	for (size_t chunk = 0; chunk <= 3; chunk++) {
		struct config *c = NULL;
		char *err = NULL;
		int r = parse(good, chunk, &c, &err);
		if (r < 0)
			fail_msg("chunk %zu: %s", chunk, err);
		check_good(c);
		config_free(&c);
		assert_null(c);
	}
}

static void test_defaults(void **state)
{
	(void)state;
	struct config *c = NULL;
	char *err = NULL;
	assert_int_equal(parse("local_domains = a.test\n", 1, &c, &err), 0);
	assert_string_equal(c->data_dir, "/var/lib/mailgw");
	assert_int_equal(c->smtp_listen.n, 1);
	assert_string_equal(c->smtp_listen.v[0], "127.0.0.1:2525");
	assert_int_equal(c->smtps_listen.n, 0);
	assert_string_equal(c->tls_cert_file, "");
	assert_int_equal(c->max_message_size, 26214400);
	assert_int_equal(c->smtp_timeout_ms, 300000);
	assert_int_equal(c->smtp_data_deadline_ms, 30 * 60 * 1000);
	assert_int_equal(c->max_commands, 10000);
	assert_string_equal(c->postmaster_address, "postmaster@a.test");
	assert_non_null(c->hostname);
	config_free(&c);

	/* An empty list value turns a listener off. */
	assert_int_equal(parse("local_domains = a.test\nsmtp_listen =\n", 0, &c, &err), 0);
	assert_int_equal(c->smtp_listen.n, 0);
	config_free(&c);
}

static void test_errors(void **state)
{
	(void)state;
	static const struct {
		const char *text;
		const char *error; /* expected message, after "FILE:" */
	} cases[] = {
		{ "local_domains = a.test\nbogus_key = 1\n", "2: unknown key: bogus_key" },
		{ "local_domains = a.test\n\nmax_message_size = abc\n", "3: max_message_size: not a size" },
		{ "max_recipients = 0\nlocal_domains = a.test\n", "1: max_recipients: 0 is out of range" },
		{ "max_recipients = 12x\n", "1: max_recipients: not a number" },
		{ "local_domains = a.test\nhostname = bad_host!\n", "2: hostname: not a valid host name" },
		{ "local_domains = a..test\n", "1: local_domains: not a valid domain" },
		{ "local_domains = a.test\nsmtp_listen = localhost:25\n", "2: smtp_listen: not a numeric" },
		{ "local_domains = a.test\nsmtp_listen = 127.0.0.1:99999\n", "2: smtp_listen: bad port" },
		{ "local_domains = a.test\nsmtp_timeout = 5 days\n", "2: smtp_timeout: not a duration" },
		{ "local_domains = a.test\nlog_level = loud\n", "2: log_level: must be" },
		{ "local_domains = a.test\npassword_scheme = PLAIN\n", "2: password_scheme: must be" },
		{ "local_domains = a.test\nsyslog_facility = kern\n", "2: syslog_facility: unknown" },
		{ "local_domains = a.test\nno equals sign\n", "2: expected \"key = value\"" },
		{ "hostname = a.test\nhostname = b.test\n", "2: hostname is already set on line 1" },
		{ "local_domains = a.test\ndata_dir =\n", "2: data_dir: a path is required" },
		{ "local_domains = a.test\nhostname = a\001b\n", "2: control character in line" },
		{ "hostname = a.test\n", " local_domains is not set" },
		{ "local_domains = a.test\npostmaster_address = ../x@a.test\n",
		  " postmaster_address: not a valid address" },
		{ "local_domains = a.test\ntls_cert_file = c.pem\n", " tls_cert_file and tls_key_file" },
		{ "local_domains = a.test\nsmtps_listen = 127.0.0.1:465\n", " smtps_listen needs" },
		{ "local_domains = a.test\nrbl = bl.test\n", "2: rbl: bl.test: no return codes" },
		{ "local_domains = a.test\nrbl = bl.test 127.0.0.2\n", "2: rbl: 127.0.0.2: expected code=score" },
		{ "local_domains = a.test\nrbl = bl.test 10.0.0.2=1\n", "2: rbl: bl.test: return codes must be" },
		{ "local_domains = a.test\nrbl = bl.test 127.0.0.9-127.0.0.2=1\n", "2: rbl: bl.test: return codes" },
		{ "local_domains = a.test\nrbl = bl.test 127.0.0.2=x\n", "2: rbl: bl.test: not a score: x" },
		{ "local_domains = a.test\nrbl = bad_zone! 127.0.0.2=1\n", "2: rbl: not a valid zone" },
		{ "local_domains = a.test\nrbl = b.test 127.0.0.2=1\nrbl = B.test 127.0.0.3=1\n",
		  "3: rbl: zone B.test is listed twice" },
		{ "local_domains = a.test\nuribl = =1\n", "2: uribl: not a valid zone" },
		{ "local_domains = a.test\njunk_score = lots\n", "2: junk_score: not a number" },
		{ "local_domains = a.test\nreject_score = 1e9\n", "2: reject_score: 1e9 is out of range" },
		{ "local_domains = a.test\nspf_check = maybe\n", "2: spf_check: must be yes or no" },
		{ "local_domains = a.test\ndkim_check = no\n", " dmarc_check needs spf_check and dkim_check" },
		{ "local_domains = a.test\nspf_check = no\n", " dmarc_check needs spf_check and dkim_check" },
		{ "local_domains = a.test\nreject_score = 4\n", " junk_score must be above 0 and reject_score" },
		{ "local_domains = a.test\njunk_score = 0\n", " junk_score must be above 0" },
		{ "local_domains = a.test\nrbl = b.test 127.0.0.2=1e308\n", "2: rbl: b.test: not a score" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		for (size_t chunk = 0; chunk <= 1; chunk++) {
			struct config *c = NULL;
			char *err = NULL;
			int r = parse(cases[i].text, chunk, &c, &err);
			if (r == 0)
				fail_msg("case %zu parsed", i);
			assert_null(c);
			char *expect = xasprintf("/etc/mailgw/test.conf:%s", cases[i].error);
			if (strncmp(err, expect, strlen(expect)) != 0)
				fail_msg("case %zu: got \"%s\", want prefix \"%s\"", i, err, expect);
			free(expect);
			free(err);
		}
	}
}

static void test_long_line(void **state)
{
	(void)state;
	char *text = malloc(10000);
	memset(text, 'x', 9000);
	strcpy(text + 9000, "\nlocal_domains = a.test\n");
	struct config *c = NULL;
	char *err = NULL;
	assert_int_equal(parse(text, 7, &c, &err), -1);
	assert_non_null(strstr(err, ":1: line longer than"));
	free(err);
	free(text);
}

static void test_rbl_and_scores(void **state)
{
	(void)state;
	struct config *c = NULL;
	char *err = NULL;
	const char *text = "local_domains = a.test\n"
			   "rbl = zen.test 127.0.0.2-127.0.0.3=6 127.0.0.4=4.5\n"
			   "rbl = WL.test 127.0.0.0-127.255.255.255=-2\n"
			   "uribl = dbl.test 127.0.1.2=5\n"
			   "junk_score = 4.5\nreject_score = 4.5\n";
	for (size_t chunk = 0; chunk <= 1; chunk++) {
		assert_int_equal(parse(text, chunk, &c, &err), 0);
		assert_int_equal(c->rbl.n, 2);
		assert_string_equal(c->rbl.v[0].zone, "zen.test");
		assert_int_equal(c->rbl.v[0].ncodes, 2);
		assert_int_equal(c->rbl.v[0].codes[0].lo, 0x7f000002);
		assert_int_equal(c->rbl.v[0].codes[0].hi, 0x7f000003);
		assert_true(c->rbl.v[0].codes[0].score == 6.0);
		assert_int_equal(c->rbl.v[0].codes[1].lo, 0x7f000004);
		assert_int_equal(c->rbl.v[0].codes[1].hi, 0x7f000004);
		assert_true(c->rbl.v[0].codes[1].score == 4.5);
		assert_string_equal(c->rbl.v[1].zone, "wl.test");
		assert_true(c->rbl.v[1].codes[0].score == -2.0);
		assert_int_equal(c->uribl.n, 1);
		assert_true(c->junk_score == 4.5 && c->reject_score == 4.5);
		/* Defaults of the checks. */
		assert_true(c->rbl_reject_score == 10.0 && c->spf_fail_score == 3.0);
		assert_int_equal(c->spf_check, 1);
		assert_int_equal(c->dmarc_reject, 1);
		assert_int_equal(c->dns_error_tempfail, 0);
		config_free(&c);
	}
}

static void test_load_file(void **state)
{
	(void)state;
	char dir[] = "/tmp/cfgtestXXXXXX";
	assert_non_null(mkdtemp(dir));
	char *path = xasprintf("%s/gw.conf", dir);
	FILE *f = fopen(path, "w");
	fputs("local_domains = a.test\ndata_dir = d\n", f);
	fclose(f);
	struct config *c = NULL;
	char *err = NULL;
	assert_int_equal(config_load(path, &c, &err), 0);
	char *want = xasprintf("%s/d", dir);
	assert_string_equal(c->data_dir, want);
	assert_string_equal(c->path, path);
	config_free(&c);
	free(want);
	unlink(path);
	assert_int_equal(config_load(path, &c, &err), -1);
	assert_non_null(strstr(err, "No such file"));
	free(err);
	free(path);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid),     cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_errors),    cmocka_unit_test(test_long_line),
		cmocka_unit_test(test_load_file), cmocka_unit_test(test_rbl_and_scores),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
