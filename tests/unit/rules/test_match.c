/*
 * test_match.c - compiling and matching a rule set: regex flags, UTF-8
 * and byte-mode patterns, header/body/rawbody/uri/full subjects, metas
 * in dependency order, scores, and the match limits: a catastrophic
 * pattern against a hostile message ends, is counted as not matched, and
 * the other rules still run.
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

#include "rules/rules-private.h"

static char dir[64];

static struct ruleset *load(const char *text, struct rules_report *rep)
{
	char *path = xasprintf("%s/t.rules", dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	struct ruleset *rs = NULL;
	memset(rep, 0, sizeof(*rep));
	ruleset_load(dir, &rs, rep);
	unlink(path);
	free(path);
	return rs;
}

static bool hit(const struct rules_result *r, const char *name)
{
	for (size_t i = 0; i < r->n; i++)
		if (strcmp(r->v[i].name, name) == 0)
			return true;
	return false;
}

static void score_msg(const struct ruleset *rs, const char *msg, struct rules_result *r)
{
	struct msgview *mv = msgview_new(msg, strlen(msg));
	ruleset_match(rs, mv, r);
	msgview_free(&mv);
}

static void test_subjects_and_metas(void **state)
{
	(void)state;
	struct rules_report rep;
	struct ruleset *rs = load("header H_SUBJ Subject =~ /hello/i\nscore H_SUBJ 1.5\n"
				  "header H_NEG X-None !~ /x/\nscore H_NEG 0.25\n"
				  "body B_WORLD /\\bworld\\b/\nscore B_WORLD 2\n"
				  "body B_UTF /gr\\x{FC}\\x{DF}e/\n"
				  "rawbody R_TAG /<b>/\n"
				  "uri U_HOST m{//example\\.test/}\n"
				  "full F_HDR /^X-Test: yes$/m\n"
				  "meta M_ALL B_WORLD && R_TAG && U_HOST && (F_HDR + B_UTF) == 2\n"
				  "score M_ALL 3\n"
				  "body __SUB /never there/\nmeta M_NOT !__SUB\nscore M_NOT 0.5\n"
				  "body ZERO /world/\nscore ZERO 0\n",
				  &rep);
	assert_non_null(rs);
	assert_int_equal(rep.errors, 0);
	struct rules_result r;
	score_msg(rs,
		  "Subject: HELLO there\nX-Test: yes\nContent-Type: text/html; charset=utf-8\n\n"
		  "<p>Hello <b>world</b>, gr\xc3\xbc\xc3\x9f" "e</p><a href=\"http://example.test/\">x</a>\n",
		  &r);
	const char *want[] = { "H_SUBJ", "H_NEG", "B_WORLD", "B_UTF", "R_TAG", "U_HOST", "F_HDR",
			       "M_ALL", "M_NOT" };
	for (size_t i = 0; i < ARRAY_SIZE(want); i++)
		if (!hit(&r, want[i]))
			fail_msg("%s did not hit", want[i]);
	assert_false(hit(&r, "ZERO"));  /* score 0: not run, not reported */
	assert_false(hit(&r, "__SUB")); /* sub-rules are not reported */
	/* 1.5 + 0.25 + 2 + 1 (B_UTF default) + 1 + 1 + 1 + 3 + 0.5 */
	assert_true(r.score > 11.24 && r.score < 11.26);
	rules_result_free(&r);
	ruleset_free(&rs);
	rules_report_free(&rep);
}

static void test_errors_name_lines(void **state)
{
	(void)state;
	struct rules_report rep;
	struct ruleset *rs = load("body OK /fine/\nbody BAD1 /a(b/\nbody BAD2 /x/q\n"
				  "meta LOOP1 LOOP2\nmeta LOOP2 LOOP1\nmeta BAD3 (OK &&\n",
				  &rep);
	assert_null(rs);
	struct buf b;
	buf_init(&b, 1 << 20);
	rules_report_format(&rep, &b);
	assert_non_null(strstr(b.data, "t.rules:2: error: BAD1: bad pattern"));
	assert_non_null(strstr(b.data, "t.rules:3: error:"));
	assert_non_null(strstr(b.data, "t.rules:6: error: meta BAD3"));
	rules_report_free(&rep);
	/* Metas that read each other. */
	buf_reset(&b);
	rs = load("body OK /fine/\nmeta LOOP1 LOOP2 || OK\nmeta LOOP2 LOOP1\nmeta SELF SELF\n", &rep);
	assert_null(rs);
	rules_report_format(&rep, &b);
	assert_non_null(strstr(b.data, "loop"));
	rules_report_free(&rep);
	/* A name no rule has: a warning, and it counts as 0. */
	buf_reset(&b);
	rs = load("body OK /fine/\nmeta M OK || TYPO_RULE\n", &rep);
	assert_non_null(rs);
	rules_report_format(&rep, &b);
	assert_non_null(strstr(b.data, "t.rules:2: warning: meta M: no rule TYPO_RULE"));
	ruleset_free(&rs);
	buf_free(&b);
	rules_report_free(&rep);
}

static void test_match_limit(void **state)
{
	(void)state;
	struct rules_report rep;
	struct ruleset *rs = load("body EVIL /^(a+)+$/\nscore EVIL 5\n"
				  "body EVIL2 /(x|xx)+y/\nscore EVIL2 5\n"
				  "body GOOD /hostile/\nscore GOOD 1\n",
				  &rep);
	assert_non_null(rs);
	struct buf m;
	buf_init(&m, 1 << 22);
	buf_puts(&m, "Subject: hostile\n\n");
	for (int i = 0; i < 2000; i++)
		buf_puts(&m, "a");
	buf_puts(&m, "!\n\n");
	for (int i = 0; i < 5000; i++)
		buf_puts(&m, "x");
	buf_puts(&m, "\n");
	struct msgview *mv = msgview_new(m.data, m.len);
	struct rules_result r;
	ruleset_match(rs, mv, &r);
	/* The runaway patterns stopped at the limit and count as not
	 * matched; the others ran. */
	assert_true(r.limits >= 1);
	assert_false(hit(&r, "EVIL"));
	assert_false(hit(&r, "EVIL2"));
	assert_true(hit(&r, "GOOD"));
	rules_result_free(&r);
	msgview_free(&mv);
	buf_free(&m);
	ruleset_free(&rs);
	rules_report_free(&rep);
}

static void test_multiple(void **state)
{
	(void)state;
	struct rules_report rep;
	struct ruleset *rs = load("body W /\\bx\\b/\ntflags W multiple maxhits=4\nscore W 0.5\n"
				  "meta W3 W >= 3\nscore W3 1\nbody ONE /\\bx\\b/\n",
				  &rep);
	assert_non_null(rs);
	struct rules_result r;
	score_msg(rs, "Subject: s\n\nx x x x x x\n\nx\n", &r);
	for (size_t i = 0; i < r.n; i++) {
		if (strcmp(r.v[i].name, "W") == 0)
			assert_int_equal(r.v[i].count, 4);
		if (strcmp(r.v[i].name, "ONE") == 0)
			assert_int_equal(r.v[i].count, 1);
	}
	assert_true(hit(&r, "W3"));
	/* A hit's score counts once, whatever its count. */
	assert_true(r.score > 2.49 && r.score < 2.51);
	rules_result_free(&r);
	ruleset_free(&rs);
	rules_report_free(&rep);
}

static void test_bytes_nice_and_bounds(void **state)
{
	(void)state;
	struct rules_report rep;
	struct ruleset *rs = load("body BYTES /caf\\xc3\\xa9/\nscore BYTES 1\n"
				  "body CHARS /caf\\x{E9}/\nscore CHARS 1\n"
				  "body NICE1 /hello/\ntflags NICE1 nice\n"
				  "header ALLH ALL =~ /Subject: end/\nscore ALLH 1\n",
				  &rep);
	assert_non_null(rs);
	struct rules_result r;
	score_msg(rs, "Subject: s\nContent-Type: text/plain; charset=utf-8\n\nhello caf\xc3\xa9\n", &r);
	/* \xc3\xa9 are the octets of an UTF-8 é; \x{E9} is the character. */
	assert_true(hit(&r, "BYTES"));
	assert_true(hit(&r, "CHARS"));
	for (size_t i = 0; i < r.n; i++)
		if (strcmp(r.v[i].name, "NICE1") == 0)
			assert_true(r.v[i].score == -1.0); /* SpamAssassin's default for nice rules */
	assert_true(hit(&r, "NICE1"));
	rules_result_free(&r);
	/* A header section of 300 KB: ALL is cut at VIEW_HEADER_MAX, so a
	 * field at its end is not seen (and backreferencing rules cannot go
	 * quadratic on it). */
	struct buf m;
	buf_init(&m, 1 << 22);
	for (int i = 0; i < 12000; i++)
		buf_puts(&m, "X-Filler: ABCABCABCABC\n");
	buf_puts(&m, "Subject: end\n\nbody\n");
	struct msgview *mv = msgview_new(m.data, m.len);
	ruleset_match(rs, mv, &r);
	assert_false(hit(&r, "ALLH"));
	rules_result_free(&r);
	msgview_free(&mv);
	/* Thousands of links repeating a long <base href>: bounded work. */
	buf_reset(&m);
	buf_puts(&m, "Content-Type: multipart/mixed; boundary=b\n\n");
	for (int p = 0; p < 60; p++) {
		buf_puts(&m, "--b\nContent-Type: text/html\n\n<base href=\"");
		for (int k = 0; k < 250; k++)
			buf_puts(&m, "http://a.example/");
		buf_puts(&m, "\">");
		for (int k = 0; k < 1000; k++)
			buf_puts(&m, "<a href=y>");
		buf_puts(&m, "\n");
	}
	buf_puts(&m, "--b--\n");
	mv = msgview_new(m.data, m.len);
	size_t n;
	msgview_uris(mv, &n);
	assert_true(n >= 1);
	msgview_free(&mv);
	buf_free(&m);
	ruleset_free(&rs);
	rules_report_free(&rep);
}

int main(void)
{
	strcpy(dir, "/tmp/rulesXXXXXX");
	if (mkdtemp(dir) == NULL)
		return 1;
	log_open("test_match", LOG_LVL_ERR, NULL);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_subjects_and_metas),
		cmocka_unit_test(test_errors_name_lines),
		cmocka_unit_test(test_match_limit),
		cmocka_unit_test(test_multiple),
		cmocka_unit_test(test_bytes_nice_and_bounds),
	};
	int r = cmocka_run_group_tests(tests, NULL, NULL);
	rmdir(dir);
	return r;
}
