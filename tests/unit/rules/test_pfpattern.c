/*
 * test_pfpattern.c - the vectorscan form of a rule's pattern
 * (rules/pfpattern.c): what is widened, what is cut, what is left out.
 * Whether the result finds every match is test_prefilter.c's part (it
 * compares verdicts with vectorscan itself); here the rewriting rules.
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

/* The rewrite of pattern, or NULL when it is left out. */
static char *rewrite(const char *pattern, bool extended, bool dotall, bool runs_ok)
{
	struct buf b;
	buf_init(&b, 1u << 20);
	if (!pf_pattern(pattern, extended, dotall, runs_ok, &b)) {
		buf_free(&b);
		return NULL;
	}
	return b.data ? b.data : xstrdup("");
}

static void expect_with(const char *pattern, bool dotall, bool runs_ok, const char *want)
{
	char *got = rewrite(pattern, false, dotall, runs_ok);
	if (want == NULL) {
		if (got != NULL)
			fprintf(stderr, "/%s/: want left out, got /%s/\n", pattern, got);
		assert_null(got);
		return;
	}
	if (got == NULL)
		fprintf(stderr, "/%s/: want /%s/, got left out\n", pattern, want);
	assert_non_null(got);
	assert_string_equal(got, want);
	free(got);
}

static void expect(const char *pattern, bool runs_ok, const char *want)
{
	expect_with(pattern, false, runs_ok, want);
}

static void test_widening(void **state)
{
	(void)state;
	expect("a{2,20}b", true, "a{2,}b");
	expect("x{20}", true, "x{8,}");
	expect("x{3}y{2,5}", true, "x{3}y{2,5}");
	expect("a{2,20}+b", true, "a{2,}b");       /* possessive */
	expect("a{2,20}?b", true, "a{2,}?b");      /* lazy */
	expect("a{x}b{,30}", true, "a{x}b{,30}");  /* text to PCRE2 10.42 */
	/* Braces that are not repeats stay. */
	expect("\\{12,40\\}", true, "\\{12,40\\}");
	expect("[{]\\d{10,}[}]", true, "[{]\\d{8,}[}]");
	expect("[a{12}]", true, "[a{12}]");
	expect("\\Qa{12,40}\\E", true, "\\Qa{12,40}\\E");
	expect("x\\x{41}{20}y", true, "x\\x{41}{8,}y");
	expect("\\c{12}", true, "\\c{12}");        /* \c{ is ';', the rest text */
	expect("x[\\c]{12}]", true, "x[\\c]{12}]"); /* \c] is one member: the class ends last */
	expect("x(?#[)[]{12}]", true, "x(?#[)[]{12}]"); /* the class is "[]{12}]" */
	expect("x(?#[)b{12}", true, "x(?#[)b{8,}");
	expect("[]{12}]", true, "[]{12}]");
	expect("[^]{12}]", true, "[^]{12}]");
	expect("[[:alpha:]{]{12}", true, "[[:alpha:]{]{8,}");
}

static void test_extended(void **state)
{
	(void)state;
	/* A comment's '[' opens no class. */
	char *got = rewrite("a # [\nb{12}", true, false, true);
	assert_non_null(got);
	assert_string_equal(got, "a # [\nb{8,}");
	free(got);
	got = rewrite("a # [\n[]{12}]", true, false, true); /* a class: "]{12}" */
	assert_non_null(got);
	assert_string_equal(got, "a # [\n[]{12}]");
	free(got);
	/* Extended mode turned on inline cannot be followed: left out. */
	expect("(?x) a b", true, NULL);
	expect("(?ix:a b)", true, NULL);
	expect("(?-x:a b)", true, "(?-x:a b)");
}

static void test_left_out(void **state)
{
	(void)state;
	expect("x\\p{L}y", true, NULL);
	expect("x\\pLy", true, NULL);
	expect("[\\P{Cyrillic}]", true, NULL);
	expect("(*UCP)x\\wy", true, NULL);
	expect("a)", true, NULL);
}

static void test_cuts(void **state)
{
	(void)state;
	/* Where runs are right, nothing is cut. */
	expect("curl[^<]*\\|\\s*python", true, "curl[^<]*\\|\\s*python");
	/* Where they are not: the segment with the longest literal text. */
	expect("curl[^<]*\\|\\s*python", false, "\\|\\s*python");
	expect("<font\\b[^>]*\\bcolor=red", false, "\\bcolor=red");
	expect("abcdef[^<]*xy", false, "abcdef");
	/* Equals: the later one. */
	expect("abc[^<]*def", false, "def");
	/* A large bound is a run too once widened; a small one is not. */
	expect("<img\\b[^>]{0,300}\\bsrc=", false, "\\bsrc=");
	expect("ab[^<]{0,5}cd", false, "ab[^<]{0,5}cd");
	/* Wide: DOTALL dot, complements, a group of "." and a newline. */
	expect_with("ab.*cde", true, false, "cde");
	expect("ab.*cde", false, "ab.*cde");
	expect("ab(?s).*cde", false, "(?s)cde");
	expect("ab[\\s\\S]*cde", false, "cde");
	expect("ab(?:.|\\n)*cde", false, "cde");
	expect("ab\\W+cde", false, "cde");
	expect("ab(?:\\s|\\S)*cde", false, "cde");
	expect("ab(?:[^\\n]|\\n)*cde", false, "cde");
	expect("ab[\\x00-\\x{10ffff}]*cde", false, "cde");
	expect("ab[\\x00-\\xff]+cde", false, "cde");
	expect("ab(?:x|\\s)*cde", false, "ab(?:x|\\s)*cde");
	/* Runs that vectorscan 5.4.9 gets right are kept. */
	expect("ab[^\\n<]*cde", false, "ab[^\\n<]*cde");
	expect("ab\\s*cde", false, "ab\\s*cde");
	/* A group with a run inside is cut out with its repeat. */
	expect("^https?://(?:[^/?#@]*@)?\\d+\\.\\d+", false, "^https?://");
	expect("^https?://(?:[^/?#@]*@)?abcdefgh", false, "abcdefgh");
	expect("^mailto:(?:[^?]*x)+abcdefgh", false, "abcdefgh");
	expect("(?:[^<]*x){*abcdefgh", false, "{*abcdefgh"); /* '{' is text: its '*' stays */
	/* Each top-level alternative keeps its own segment. */
	expect("unsubscribe[^.]{0,60}click|clickhere[^.]{0,40}remove", false, "unsubscribe|clickhere");
	/* An optional atom or a negative lookahead requires nothing. */
	expect("abcd[^<]*x?y?z?", false, "abcd");
	expect("abcd[^<]*(?!wxyz)q", false, "abcd");
	expect("ab[^<]*(?:wxyz|vwxyz)", false, "(?:wxyz|vwxyz)");
	/* Inline flags set before the kept segment go with it, later ones
	 * do not (they do not apply to it). */
	expect("(?i)ab[^<]*cdefg", false, "(?i)cdefg");
	expect("abcdefg[^<]*(?-i)x", false, "abcdefg");
	/* A cut renumbers groups: back-references are left out then. */
	expect("(a)[^<]*(bcd)\\1", false, NULL);
	expect("(a)x(bcd)\\1", false, "(a)x(bcd)\\1");
	/* Hyperscan's prefilter gets a reference to a group with an
	 * assertion wrong: such patterns stay with PCRE2. */
	expect("(?:(\\b)c)\\1", true, NULL);
	expect("(\\w)\\1{4}", true, "(\\w)\\1{4}");
	expect("^(\\w)\\1", true, NULL);
	/* A run inside a lookbehind at the top level: the group goes. */
	expect("(?<=[^<]*)abcd", false, "abcd");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_widening),
		cmocka_unit_test(test_extended),
		cmocka_unit_test(test_left_out),
		cmocka_unit_test(test_cuts),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
