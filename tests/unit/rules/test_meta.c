/*
 * test_meta.c - meta expressions: precedence and associativity against
 * hand-computed values, && and || giving operand values, comparisons,
 * counts above 1, unknown names, dependencies, syntax errors and limits;
 * then random expressions checked against a small recursive-descent
 * reference evaluator (same accept/reject, same value) and random bytes
 * that must not crash.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rules/rules-private.h"

/* Rule names of the tests and their hit counts. */
static const char *const names[] = { "A", "B", "C", "D", "__X", "and", "_9" };
static const unsigned counts[] = { 1, 0, 2, 3, 4, 1, 5 };

static int resolve(const char *name, void *arg)
{
	(void)arg;
	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		if (strcmp(names[i], name) == 0)
			return (int)i;
	return -1;
}

static double eval(const char *text)
{
	const char *err = NULL;
	struct meta_expr *e = meta_compile(text, resolve, NULL, &err);
	if (e == NULL)
		fail_msg("\"%s\": %s", text, err);
	double v = meta_eval(e, counts);
	meta_free(&e);
	assert_null(e);
	return v;
}

static void check(const char *text, double want)
{
	double got = eval(text);
	if (got != want)
		fail_msg("\"%s\" = %g, want %g", text, got, want);
}

static void test_precedence(void **state)
{
	(void)state;
	/* A=1 B=0 C=2 D=3 */
	check("A + B * C", 1);
	check("C * D + A", 7);
	check("A+C*D", 7);
	check("2 + 3 * 4 - 5", 9);
	check("2 * 3 + 4 * 5", 26);
	check("(2 + 3) * (4 - 5)", -5);
	check("(((A)))", 1);
	/* left associativity */
	check("D - C - A", 0);   /* right-assoc would give 2 */
	check("1 - 1 - 1", -1);
	check("D / C / C", 0.75); /* right-assoc would give 3 */
	check("12 / 4 / 3", 1);
	check("12 / 4 * 3", 9);
	check("D - C + A", 2);   /* (3-2)+1, not 3-(2+1) */
	/* unary operators bind tightest */
	check("-C * D", -6);
	check("- -C", 2);
	check("-C + D", 1);
	check("2 * -A", -2);
	check("-A - -A", 0);
	check("+C", 2);
	check("C - +A", 1);
	check("!A + C", 2);      /* (!A) + C */
	check("!(A + C)", 0);
	check("!B + C", 3);
	check("!B * D", 3);
	check("!!C", 1);
	check("!0 == 1", 1);
	check("!1", 0);
	check("! ! ! B", 1);
	check("-!B", -1);
	check("!-A", 0);
	/* arithmetic over comparisons over equality over && over || */
	check("A + B > 0", 1);
	check("10 - 2 * 3 > 3", 1);
	check("1 + 2 == 3", 1);
	check("C > A == D > A", 1);
	check("C > A == B", 0);
	check("A < C == 1", 1);
	check("B == 0 && D", 3);
	check("A || B && 0", 1);  /* A || (B && 0); (A || B) && 0 would be 0 */
	check("B && C || D", 3);  /* (B && C) || D */
	check("D || B && C", 3);
	check("B || A && C", 2);
	check("A == 1 || B", 1);
	check("C == 2 && D == 3 || B", 1);
}

static void test_and_or_values(void **state)
{
	(void)state;
	check("C || D", 2);
	check("B || D", 3);
	check("B || 0", 0);
	check("B || B || C", 2);
	check("C && D", 3);
	check("B && D", 0);
	check("D && B", 0);
	check("A && C && D", 3);
	check("(C || D) + A", 3);
	check("(B || D) + A", 4);
	check("(C && D) * 2", 6);
	check("C && 2.5", 2.5);
	check("(B && C) - 1", -1);
	check("A == 1 && C == 2 && D >= 3 && D <= 3 && A != C && A < C", 1);
	check("A > 1 || C", 2);
}

static void test_comparisons(void **state)
{
	(void)state;
	check("C > A", 1);
	check("A > C", 0);
	check("C >= 2", 1);
	check("C >= 3", 0);
	check("C < D", 1);
	check("D < C", 0);
	check("C <= 2", 1);
	check("C <= 1", 0);
	check("C == 2", 1);
	check("C == 2.0", 1);
	check("C != 2", 0);
	check("C != D", 1);
	check("(A < C) < 1", 0);
	check("0.5 + 0.25", 0.75);
	check("1.5 * 2 == D", 1);
	check("D / C == 1.5", 1);
	check("007", 7);
}

static void test_counts(void **state)
{
	(void)state;
	/* tflags multiple: __X hit 4 times, _9 5 times */
	check("__X", 4);
	check("__X > 3", 1);
	check("__X >= 5", 0);
	check("__X * 2 == 8", 1);
	check("__X + _9 + A", 10);
	check("(__X || A) + _9", 9);
	check("__X / C", 2);
	/* division by zero is 0 */
	check("D / B", 0);
	check("D / (C - 2)", 0);
	check("D / 0 + 1", 1);
	check("0 / 0", 0);
	/* unknown names are 0; "and" is a rule name here, "or" an unknown one */
	check("NOPE", 0);
	check("!NOPE", 1);
	check("NOPE + C", 2);
	check("NOPE || D", 3);
	check("and + or", 1);
	check("not", 0);
	/* whitespace of all kinds */
	check(" \tA\r\n+\fC\v", 3);
	/* the counts array is read at evaluation time */
	const char *err;
	struct meta_expr *e = meta_compile("B * 10 + A", resolve, NULL, &err);
	assert_non_null(e);
	unsigned c2[ARRAY_SIZE(counts)] = { 7, 3 };
	assert_true(meta_eval(e, c2) == 37);
	assert_true(meta_eval(e, counts) == 1);
	meta_free(&e);
	meta_free(&e);
	assert_true(meta_eval(NULL, counts) == 0);
	const int *deps = (const int *)1;
	assert_int_equal(meta_deps(NULL, &deps), 0);
	assert_null(deps);
}

static void expect_deps(const char *text, const int *want, size_t nwant)
{
	const char *err;
	struct meta_expr *e = meta_compile(text, resolve, NULL, &err);
	assert_non_null(e);
	const int *deps;
	size_t n = meta_deps(e, &deps);
	if (n != nwant)
		fail_msg("\"%s\": %zu deps, want %zu", text, n, nwant);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(deps[i], want[i]);
	meta_free(&e);
}

static void test_deps(void **state)
{
	(void)state;
	expect_deps("B + A + B + NOPE + C + A", (const int[]){ 1, 0, 2 }, 3);
	expect_deps("!(D && (D || __X)) > _9", (const int[]){ 3, 4, 6 }, 3);
	expect_deps("1 + 2", NULL, 0);
	expect_deps("NOPE || OTHER", NULL, 0);
	expect_deps("A", (const int[]){ 0 }, 1);
	/* many uses, few names */
	char big[4000] = "A";
	for (size_t i = 1; i + 8 < sizeof(big); i += 4)
		memcpy(big + i, i % 8 == 1 ? " + C" : " + A", 5);
	expect_deps(big, (const int[]){ 0, 2 }, 2);
	/* many names: the deps array grows */
	char many[2048];
	size_t len = 0;
	for (int i = 0; i < 200; i++)
		len += (size_t)snprintf(many + len, sizeof(many) - len, "%s%s", i ? "+" : "",
					names[i % ARRAY_SIZE(names)]);
	expect_deps(many, (const int[]){ 0, 1, 2, 3, 4, 5, 6 }, 7);
}

static void expect_error(const char *text)
{
	const char *err = NULL;
	struct meta_expr *e = meta_compile(text, resolve, NULL, &err);
	if (e != NULL)
		fail_msg("\"%s\" compiled", text);
	assert_non_null(err);
	assert_true(err[0] != '\0');
}

static void test_syntax_errors(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"", "   ", "\t\n",
		/* parentheses */
		"(A", "A)", "(A))", "((A)", "()", "(", ")", ")(", "A ()", "(A + )",
		/* operators without operands */
		"A +", "A &&", "A ||", "!", "-", "A * / B", "A + * B", "&& A", "|| A", "* A",
		"== A", "A ! B", "A !", "A -",
		/* operands without operators */
		"A B", "A 1", "1 A", "1A", "A (B)", "(A) (B)", "(A) B", "2 (3)",
		/* characters and Perl that the meta language does not have */
		"$x", "A; B", "A =~ /x/", "A !~ B", "f(A)", "A & B", "A | B", "A = B", "A % B",
		"A ** B", "A ? B : C", "A , B", "A.B", "A . B", "'A'", "\"A\"", "A\x80", "\xc3\xa9",
		"A # comment", "A && @B", "A // B", "A <=> B", "A ^ B", "~A", "A and B", "not A",
		"A or B", "A eq B", "A++", "++A", "A--", "--A", "A -- B", "A ++ B", "A\\B", "[A]",
		"{A}", "A->B", "A::B",
		/* numbers */
		"1.", "1.A", ".5", "1..2", "1.5.3", "1e5", "0x10", "1_000",
		/* comparisons do not chain */
		"A < B < C", "A == B != C", "A >= B <= C", "A < B + C < D", "A == B < C == D",
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		expect_error(bad[i]);
	/* ... but comparisons of different levels combine */
	check("A < B == C < D", 0);
	check("(A < C) < D", 1);
}

static void test_limits(void **state)
{
	(void)state;
	/* 10,000 nested parentheses: an error, not a stack overflow */
	size_t n = 10000;
	char *s = xmalloc(2 * n + 2);
	memset(s, '(', n);
	s[n] = 'A';
	memset(s + n + 1, ')', n);
	s[2 * n + 1] = '\0';
	expect_error(s);
	free(s);
	/* 100 levels are fine, 101 are not */
	char deep[256];
	memset(deep, '(', 100);
	deep[100] = 'C';
	memset(deep + 101, ')', 100);
	deep[201] = '\0';
	check(deep, 2);
	memset(deep, '(', 101);
	deep[101] = 'C';
	memset(deep + 102, ')', 101);
	deep[203] = '\0';
	expect_error(deep);
	/* the deepest evaluation stack the parser allows: every precedence
	 * level pending, 100 times over */
	char worst[8192];
	size_t len = 0;
	for (int i = 0; i < 100; i++)
		len += (size_t)snprintf(worst + len, sizeof(worst) - len, "A || A && A != A >= A - A / (");
	len += (size_t)snprintf(worst + len, sizeof(worst) - len, "A");
	for (int i = 0; i < 100; i++)
		worst[len++] = ')';
	worst[len] = '\0';
	check(worst, 1);
	/* long unary chains need no nesting */
	n = 20001;
	s = xmalloc(n + 2);
	memset(s, '!', n);
	s[n] = 'C';
	s[n + 1] = '\0';
	check(s, 0);
	free(s);
	/* length: a long valid expression, and one too long */
	n = 30000;
	s = xmalloc(n + 1);
	for (size_t i = 0; i < n; i += 2)
		memcpy(s + i, "A+", 2);
	s[n - 2] = 'C'; /* "A+A+...A+C " */
	s[n - 1] = ' ';
	s[n] = '\0';
	check(s, 14999 + 2);
	free(s);
	n = 100000;
	s = xmalloc(n + 1);
	for (size_t i = 0; i < n; i += 2)
		memcpy(s + i, "A+", 2);
	s[n - 1] = 'A';
	s[n] = '\0';
	expect_error(s);
	free(s);
}

/* ---------------------------------------------- a reference evaluator */

/* Recursive descent over the same grammar, written independently of the
 * shunting-yard parser; only for the short random inputs below. */
struct ref {
	const char *p;
	bool bad;
};

static void ref_space(struct ref *r)
{
	while (*r->p == ' ' || *r->p == '\t')
		r->p++;
}

static bool ref_op(struct ref *r, const char *op)
{
	ref_space(r);
	size_t n = strlen(op);
	if (strncmp(r->p, op, n) != 0)
		return false;
	/* "<" is not the start of "<=", "!" not of "!=", "+" not of "++" */
	if (n == 1 && ((strchr("<>!", r->p[0]) && r->p[1] == '=') ||
		       (strchr("+-", r->p[0]) && r->p[1] == r->p[0])))
		return false;
	r->p += n;
	return true;
}

static double ref_or(struct ref *r);

static double ref_primary(struct ref *r)
{
	ref_space(r);
	const char *p = r->p;
	if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || *p == '_') {
		size_t n = 1;
		while ((p[n] >= 'A' && p[n] <= 'Z') || (p[n] >= 'a' && p[n] <= 'z') ||
		       (p[n] >= '0' && p[n] <= '9') || p[n] == '_')
			n++;
		char name[64];
		if (n >= sizeof(name)) {
			r->bad = true;
			return 0;
		}
		memcpy(name, p, n);
		name[n] = '\0';
		r->p += n;
		int i = resolve(name, NULL);
		return i < 0 ? 0 : counts[i];
	}
	if (*p >= '0' && *p <= '9') {
		double v = 0;
		while (*r->p >= '0' && *r->p <= '9')
			v = v * 10 + (*r->p++ - '0');
		if (*r->p == '.') {
			r->p++;
			double f = 0, scale = 1;
			if (!(*r->p >= '0' && *r->p <= '9'))
				r->bad = true;
			while (*r->p >= '0' && *r->p <= '9') {
				f = f * 10 + (*r->p++ - '0');
				scale *= 10;
			}
			v += f / scale;
		}
		return v;
	}
	if (ref_op(r, "(")) {
		double v = ref_or(r);
		if (!ref_op(r, ")"))
			r->bad = true;
		return v;
	}
	r->bad = true;
	return 0;
}

static double ref_unary(struct ref *r)
{
	if (ref_op(r, "!"))
		return ref_unary(r) == 0;
	if (ref_op(r, "-"))
		return -ref_unary(r);
	if (ref_op(r, "+"))
		return ref_unary(r);
	return ref_primary(r);
}

static double ref_mul(struct ref *r)
{
	double v = ref_unary(r);
	for (;;) {
		if (ref_op(r, "*")) {
			v *= ref_unary(r);
		} else if (ref_op(r, "/")) {
			double d = ref_unary(r);
			v = d == 0 ? 0 : v / d;
		} else {
			return v;
		}
	}
}

static double ref_add(struct ref *r)
{
	double v = ref_mul(r);
	for (;;) {
		if (ref_op(r, "+"))
			v += ref_mul(r);
		else if (ref_op(r, "-"))
			v -= ref_mul(r);
		else
			return v;
	}
}

static double ref_rel(struct ref *r)
{
	double v = ref_add(r);
	static const char *const ops[] = { "<=", ">=", "<", ">" };
	for (size_t i = 0; i < ARRAY_SIZE(ops); i++) {
		if (ref_op(r, ops[i])) {
			double w = ref_add(r);
			v = i == 0 ? v <= w : i == 1 ? v >= w : i == 2 ? v < w : v > w;
			for (size_t j = 0; j < ARRAY_SIZE(ops); j++)
				if (ref_op(r, ops[j]))
					r->bad = true; /* chained */
			break;
		}
	}
	return v;
}

static double ref_eq(struct ref *r)
{
	double v = ref_rel(r);
	bool eq = ref_op(r, "==");
	if (eq || ref_op(r, "!=")) {
		double w = ref_rel(r);
		v = eq ? v == w : v != w;
		if (ref_op(r, "==") || ref_op(r, "!="))
			r->bad = true;
	}
	return v;
}

static double ref_and(struct ref *r)
{
	double v = ref_eq(r);
	while (ref_op(r, "&&")) {
		double w = ref_eq(r);
		v = v != 0 ? w : v;
	}
	return v;
}

static double ref_or(struct ref *r)
{
	double v = ref_and(r);
	while (ref_op(r, "||")) {
		double w = ref_and(r);
		v = v != 0 ? v : w;
	}
	return v;
}

/* Returns false when the reference rejects text. */
static bool ref_eval(const char *text, double *v)
{
	struct ref r = { text, false };
	*v = ref_or(&r);
	ref_space(&r);
	return !r.bad && *r.p == '\0';
}

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static unsigned rnd(unsigned n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (unsigned)(rng % n);
}

static void compare_with_reference(const char *text, size_t *nvalid)
{
	double want = 0;
	bool ok = ref_eval(text, &want);
	const char *err = NULL;
	struct meta_expr *e = meta_compile(text, resolve, NULL, &err);
	if ((e != NULL) != ok)
		fail_msg("\"%s\": meta %s, reference %s", text, e ? "accepts" : err,
			 ok ? "accepts" : "rejects");
	if (e == NULL)
		return;
	(*nvalid)++;
	double got = meta_eval(e, counts);
	if (!(got == want || (isnan(got) && isnan(want))))
		fail_msg("\"%s\" = %g, reference %g", text, got, want);
	const int *deps;
	size_t nd = meta_deps(e, &deps);
	assert_true(nd <= ARRAY_SIZE(names));
	for (size_t i = 0; i < nd; i++) {
		assert_true(deps[i] >= 0 && (size_t)deps[i] < ARRAY_SIZE(names));
		for (size_t j = 0; j < i; j++)
			assert_int_not_equal(deps[i], deps[j]);
	}
	meta_free(&e);
}

static void test_random_tokens(void **state)
{
	(void)state;
	/* Operand-position and operator-position tokens; mostly the right
	 * kind, sometimes the wrong one, so that both valid and nearly valid
	 * expressions come out. */
	static const char *const operand[] = { "A", "B", "C", "D", "__X", "NOPE", "0", "1",
					       "2", "0.5", "(", "!", "-", "+" };
	static const char *const oper[] = { ")", "*", "/", "+", "-", "<", ">", "<=",
					    ">=", "==", "!=", "&&", "||" };
	size_t nvalid = 0;
	for (int iter = 0; iter < 300000; iter++) {
		char text[256];
		size_t len = 0;
		bool want_operand = true;
		unsigned ntok = 1 + rnd(20);
		for (unsigned t = 0; t < ntok; t++) {
			bool kind = rnd(20) == 0 ? !want_operand : want_operand;
			const char *s = kind ? operand[rnd(ARRAY_SIZE(operand))]
					     : oper[rnd(ARRAY_SIZE(oper))];
			size_t n = strlen(s);
			memcpy(text + len, s, n);
			len += n;
			if (rnd(3))
				text[len++] = ' ';
			/* after a name, number or ')' comes an operator */
			want_operand = !(strchr("ABCDN_012", s[0]) || s[0] == ')');
		}
		text[len] = '\0';
		compare_with_reference(text, &nvalid);
	}
	print_message("%zu of 300000 valid\n", nvalid);
	/* enough of them valid to mean something */
	assert_true(nvalid > 30000);
}

static void test_random_chars(void **state)
{
	(void)state;
	static const char alphabet[] = "AB_C1 0.5()!&|+-*/<>= \t";
	size_t nvalid = 0;
	for (int iter = 0; iter < 200000; iter++) {
		char text[48];
		size_t len = rnd(sizeof(text));
		for (size_t i = 0; i < len; i++)
			text[i] = alphabet[rnd(sizeof(alphabet) - 1)];
		text[len] = '\0';
		compare_with_reference(text, &nvalid);
	}
	/* and arbitrary bytes: no crash, a clean error or a value */
	for (int iter = 0; iter < 100000; iter++) {
		char text[32];
		size_t len = rnd(sizeof(text));
		for (size_t i = 0; i < len; i++)
			text[i] = (char)(1 + rnd(255));
		text[len] = '\0';
		const char *err = NULL;
		struct meta_expr *e = meta_compile(text, resolve, NULL, &err);
		if (e != NULL)
			(void)meta_eval(e, counts);
		else
			assert_non_null(err);
		meta_free(&e);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_precedence),    cmocka_unit_test(test_and_or_values),
		cmocka_unit_test(test_comparisons),   cmocka_unit_test(test_counts),
		cmocka_unit_test(test_deps),          cmocka_unit_test(test_syntax_errors),
		cmocka_unit_test(test_limits),        cmocka_unit_test(test_random_tokens),
		cmocka_unit_test(test_random_chars),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
