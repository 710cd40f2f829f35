/*
 * test_smtp_data.c - the DATA decoder: dot-unstuffing, CRLF to LF, the
 * end of data, and the smuggling sequences that must never end a message;
 * every case is fed whole, in every 2-way split, and one byte at a time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "filterd/filterd.h"

struct result {
	bool done;
	size_t consumed;
	struct buf out;
};

/* Feed wire in chunks of `chunk` bytes (0 = whole). */
static void run(const char *wire, size_t len, size_t chunk, bool bdat, struct result *r)
{
	struct smtp_data d;
	smtp_data_init(&d, 1000, bdat);
	buf_init(&r->out, 1 << 20);
	r->done = false;
	r->consumed = 0;
	char *out = malloc(len + 3);
	size_t off = 0;
	while (off < len && !r->done) {
		size_t n = chunk ? chunk : len;
		if (n > len - off)
			n = len - off;
		size_t outlen;
		size_t used = smtp_data_feed(&d, wire + off, n, out, &outlen, &r->done);
		assert_true(used <= n);
		if (!r->done)
			assert_int_equal(used, n);
		buf_append(&r->out, out, outlen);
		off += used;
	}
	if (bdat)
		buf_append(&r->out, out, smtp_data_finish(&d, out));
	r->consumed = off;
	free(out);
}

static void check_all_chunkings(const char *wire, bool bdat, bool done, const char *expect,
				size_t consumed)
{
	size_t len = strlen(wire);
	struct result whole;
	run(wire, len, 0, bdat, &whole);
	assert_int_equal(whole.done, done);
	assert_string_equal(whole.out.data ? whole.out.data : "", expect);
	if (done)
		assert_int_equal(whole.consumed, consumed);
	for (size_t chunk = 1; chunk <= 3; chunk++) {
		struct result r;
		run(wire, len, chunk, bdat, &r);
		assert_int_equal(r.done, done);
		assert_string_equal(r.out.data ? r.out.data : "", expect);
		if (done)
			assert_int_equal(r.consumed, consumed);
		buf_free(&r.out);
	}
	buf_free(&whole.out);
}

static void test_plain(void **state)
{
	(void)state;
	check_all_chunkings("Subject: x\r\n\r\nhello\r\n.\r\n", false, true, "Subject: x\n\nhello\n",
			    strlen("Subject: x\r\n\r\nhello\r\n.\r\n"));
	/* Empty message: the CR LF of the DATA line precedes the dot. */
	check_all_chunkings(".\r\n", false, true, "", 3);
	/* What follows the end is not consumed (pipelined next command). */
	check_all_chunkings("a\r\n.\r\nQUIT\r\n", false, true, "a\n", 6);
}

static void test_dot_unstuffing(void **state)
{
	(void)state;
	check_all_chunkings("..leading\r\n...\r\n.\r\n", false, true, ".leading\n..\n",
			    strlen("..leading\r\n...\r\n.\r\n"));
	/* A dot not at the start of a line stays. */
	check_all_chunkings("a.b\r\n x.\r\n.\r\n", false, true, "a.b\n x.\n", 13);
	/* A lone stuffing dot from a sloppy client is removed. */
	check_all_chunkings(".x\r\n.\r\n", false, true, "x\n", 7);
}

static void test_smuggling(void **state)
{
	(void)state;
	/* None of these ends the message: only CR LF . CR LF does. */
	static const char *never_end[] = {
		"a\n.\nMAIL FROM:<e@x>\r\n",
		"a\n.\r\nMAIL FROM:<e@x>\r\n",
		"a\r\n.\nMAIL FROM:<e@x>\r\n",
		"a\r.\r\nMAIL FROM:<e@x>\r\n",
		"a\r\n.\rMAIL FROM:<e@x>\r\n",
		"a\r.\rMAIL\r\n",
		"a\r\n\n.\n\r\n",
		"a\n\r\n.\n",
	};
	for (size_t i = 0; i < ARRAY_SIZE(never_end); i++) {
		size_t len = strlen(never_end[i]);
		for (size_t chunk = 0; chunk <= 2; chunk++) {
			struct result r;
			run(never_end[i], len, chunk, false, &r);
			if (r.done)
				fail_msg("case %zu ended the message early", i);
			assert_int_equal(r.consumed, len);
			/* The smuggled text is kept as message content. */
			assert_non_null(r.out.data);
			buf_free(&r.out);
		}
	}
	/* After the bogus terminators, the real one still works, and the
	 * content between is kept. */
	check_all_chunkings("a\n.\nMAIL FROM:<e@x>\r\n.\r\n", false, true, "a\n.\nMAIL FROM:<e@x>\n",
			    strlen("a\n.\nMAIL FROM:<e@x>\r\n.\r\n"));
	check_all_chunkings("a\r.\r\nb\r\n.\r\n", false, true, "a\r.\nb\n", 11);
}

static void test_bare_cr_lf_counts(void **state)
{
	(void)state;
	struct smtp_data d;
	smtp_data_init(&d, 1000, false);
	char out[64];
	size_t outlen;
	bool done;
	const char *w = "a\nb\r\nc\n.\r\n";
	smtp_data_feed(&d, w, strlen(w), out, &outlen, &done);
	assert_false(done); /* "\n.\r\n" is not the end */
	assert_int_equal(d.bare_lf, 2);
	const char *end = ".\r\n";
	smtp_data_feed(&d, end, 3, out, &outlen, &done);
	assert_true(done);
	assert_int_equal(d.raw_bytes, strlen(w)); /* terminator not counted */
}

static void test_line_length(void **state)
{
	(void)state;
	struct smtp_data d;
	char *line = malloc(3000);
	char *out = malloc(3100);
	size_t outlen;
	bool done;
	memset(line, 'x', 2000);
	memcpy(line + 2000, "\r\n.\r\n", 6);
	smtp_data_init(&d, 1000, false);
	smtp_data_feed(&d, line, strlen(line), out, &outlen, &done);
	assert_true(done);
	assert_true(d.line_too_long);
	assert_int_equal(outlen, 2001);

	/* 998 octets + CR LF = 1000: allowed (RFC 5321 4.5.3.1.6). */
	memset(line, 'y', 998);
	memcpy(line + 998, "\r\n.\r\n", 6);
	smtp_data_init(&d, 1000, false);
	smtp_data_feed(&d, line, strlen(line), out, &outlen, &done);
	assert_true(done);
	assert_false(d.line_too_long);
	free(line);
	free(out);
}

static void test_bdat(void **state)
{
	(void)state;
	/* No dot handling, CRLF -> LF, a CR at a chunk end held over. */
	check_all_chunkings(".a\r\n.\r\nb\r\n", true, false, ".a\n.\nb\n", 0);
	check_all_chunkings("x\r", true, false, "x\r", 0);
	check_all_chunkings("x\r\ry\r\n", true, false, "x\r\ry\n", 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain),          cmocka_unit_test(test_dot_unstuffing),
		cmocka_unit_test(test_smuggling),      cmocka_unit_test(test_bare_cr_lf_counts),
		cmocka_unit_test(test_line_length),    cmocka_unit_test(test_bdat),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
