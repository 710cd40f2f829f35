/*
 * test_msgcheck.c - the header/body split of a streaming message, in
 * every chunking: fields, folds, the empty line, a body that starts
 * without one, the header size cap, and the fields a sender must not set
 * (our authserv-id's Authentication-Results, X-Spam-*).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "filterd/filterd.h"

static struct config cfg;

struct run {
	struct msgcheck m;
	struct spool sp;
	struct buf out; /* delivered header fields + spooled body */
};

static void run(struct run *r, const char *text, size_t len, size_t chunk)
{
	spool_init(&r->sp, "/tmp");
	msgcheck_begin(&r->m, &cfg, NULL, "QID", &r->sp);
	for (size_t off = 0; off < len;) {
		size_t n = chunk && chunk < len - off ? chunk : len - off;
		msgcheck_feed(&r->m, text + off, n);
		off += n;
	}
	msgcheck_end(&r->m);
	buf_init(&r->out, 8u << 20);
	msgcheck_header_out(&r->m, &r->out);
	spool_read_head(&r->sp, &r->out, 8u << 20);
}

static void done(struct run *r)
{
	msgcheck_reset(&r->m);
	spool_reset(&r->sp);
	buf_free(&r->sp.mem);
	buf_free(&r->out);
}

static void expect(const char *text, size_t nfields, const char *delivered)
{
	size_t len = strlen(text);
	for (size_t chunk = 0; chunk <= len; chunk++) {
		struct run r;
		run(&r, text, len, chunk);
		assert_int_equal(r.m.nfields, nfields);
		assert_int_equal(r.out.len, strlen(delivered));
		assert_memory_equal(r.out.data, delivered, r.out.len);
		done(&r);
	}
}

static void test_split(void **state)
{
	(void)state;
	const char *m = "From: a@b.test\nSubject: hi\n there\nTo: c@d.test\n\nbody\n";
	expect(m, 3, m);
	/* No body at all, and a last line without a line end (BDAT). */
	expect("From: a@b.test\n", 1, "From: a@b.test\n");
	expect("From: a@b.test\nX: y", 2, "From: a@b.test\nX: y");
	/* A line that is no field starts the body. */
	expect("From: a@b.test\nthis is text\nmore\n", 1, "From: a@b.test\nthis is text\nmore\n");
	expect("no header here\n", 0, "no header here\n");
	/* A continuation before any field is body too. */
	expect(" indented\nFrom: x\n", 0, " indented\nFrom: x\n");
	/* Obsolete blanks before the colon still make a field. */
	expect("Subject : x\n\nb\n", 1, "Subject : x\n\nb\n");
	/* A CR left in an LF-only stream. */
	expect("A: 1\r\n\r\nb\n", 1, "A: 1\r\n\r\nb\n");
}

static void test_removed_fields(void **state)
{
	(void)state;
	cfg.hostname = "mx.example.test";
	expect("Authentication-Results: mx.example.test; spf=pass\n"
	       "authentication-results:  (c (nested)) \"MX.EXAMPLE.TEST\";\n\tdkim=pass\n"
	       "Authentication-Results: \"mx.exa\\mple.test\" ; dkim=pass\n"
	       "Authentication-Results: mx.example.test\"; dmarc=pass\n"
	       "Authentication-Results: mx.example.test/1; dkim=pass\n"
	       "Authentication-Results: mx.example.test,; dkim=pass\n"
	       "Authentication-Results: mx.example.test.evil; spf=pass\n"
	       "Authentication-Results: other.test; spf=pass\n"
	       "X-Spam-Status: No\nX-Spam-Score: -5\nX-Spam-Flag: NO\nX-RBL-Status: clean\n"
	       "Subject: s\n\nAuthentication-Results: mx.example.test; in the body\n",
	       13,
	       "Authentication-Results: mx.example.test.evil; spf=pass\n"
	       "Authentication-Results: other.test; spf=pass\n"
	       "Subject: s\n\nAuthentication-Results: mx.example.test; in the body\n");
}

static void test_from_values(void **state)
{
	(void)state;
	struct run r;
	const char *t = "from: A <a@b.test>\nSubject: x\nFROM:\n c@d.test\n\n";
	run(&r, t, strlen(t), 0);
	char **v;
	size_t n = msgcheck_from_values(&r.m, &v);
	assert_int_equal(n, 2);
	assert_string_equal(v[0], " A <a@b.test>\n");
	assert_string_equal(v[1], "\n c@d.test\n");
	assert_null(v[2]);
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
	struct slice name;
	struct slice val = msgcheck_field(&r.m, 1, &name);
	assert_int_equal(name.len, 7);
	assert_memory_equal(name.p, "Subject", 7);
	assert_int_equal(val.len, 3);
	done(&r);
}

static void test_header_cap(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b, 4u << 20);
	while (b.len <= MSG_HEADER_MAX)
		buf_puts(&b, "X-Filler: 0123456789012345678901234567890123456789\n");
	buf_puts(&b, "\nbody\n");
	struct run r;
	run(&r, b.data, b.len, 65536);
	assert_true(r.m.too_big);
	/* Nothing is lost: what did not fit went on to the spool. */
	assert_int_equal(r.out.len, b.len);
	assert_memory_equal(r.out.data, b.data, b.len);
	done(&r);
	buf_free(&b);
}

int main(void)
{
	cfg.hostname = "mx.example.test";
	cfg.max_message_size = 64 << 20;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_split),
		cmocka_unit_test(test_removed_fields),
		cmocka_unit_test(test_from_values),
		cmocka_unit_test(test_header_cap),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
