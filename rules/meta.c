/*
 * meta.c - SpamAssassin meta expressions: parsed once (shunting-yard, no
 * recursion) into a small postfix program, evaluated with a fixed stack.
 *
 * The language is the part of Perl that SpamAssassin's meta lexer lets
 * through: rule names ([A-Za-z_][A-Za-z0-9_]*, worth their hit count, 0
 * when unknown), constants (123, 1.5), parentheses, and, tightest first:
 *
 *   ! - +  (unary, right to left)
 *   * /    (left to right)
 *   + -    (left to right)
 *   < > <= >=  (not chained: "A < B < C" is an error, as before Perl 5.32)
 *   == !=      (not chained either)
 *   &&     (left to right; the value of the deciding operand, as in Perl)
 *   ||     (likewise: A || B is A when A is true, else B)
 *
 * Comparisons and ! give 1 or 0.  Division by zero gives 0 (Perl would
 * die, which makes SpamAssassin skip the rule: here it just does not
 * contribute).  Anything else - '$', ';', '=~', '&', a function call
 * "f(A)", "and"/"or" used as operators, Perl's ++ and -- (which would
 * modify a count), 1e5, 0x10, .5 - is a syntax error; "and", "or" and
 * "not" alone are just (unknown) rule names.  Since no operand has a
 * side effect, && and || evaluate both operands and pick one: the same
 * value as Perl's short circuit, with no jumps in the program.
 */
#include "rules/rules-private.h"

#include <stdlib.h>
#include <string.h>

#define META_MAX_LEN 32768  /* bytes of source */
#define META_MAX_DEPTH 100  /* nested parentheses */
#define META_STACK_MAX 1024 /* evaluation stack; see meta_compile */

enum op_code {
	OP_CONST, OP_LOAD,
	OP_NOT, OP_NEG,
	OP_MUL, OP_DIV, OP_ADD, OP_SUB,
	OP_LT, OP_GT, OP_LE, OP_GE, OP_EQ, OP_NE,
	OP_AND, OP_OR,
	OP_LPAREN,  /* only on the parser's operator stack */
};

struct meta_op {
	enum op_code code;
	unsigned idx;   /* OP_LOAD: the rule */
	double k;       /* OP_CONST */
};

struct meta_expr {
	struct meta_op *ops;
	size_t nops;
	int *deps;
	size_t ndeps;
};

/* Binding strength of a binary or unary operator (higher binds tighter). */
static int prec(enum op_code c)
{
	switch (c) {
	case OP_NOT:
	case OP_NEG:
		return 7;
	case OP_MUL:
	case OP_DIV:
		return 6;
	case OP_ADD:
	case OP_SUB:
		return 5;
	case OP_LT:
	case OP_GT:
	case OP_LE:
	case OP_GE:
		return 4;
	case OP_EQ:
	case OP_NE:
		return 3;
	case OP_AND:
		return 2;
	case OP_OR:
		return 1;
	default:
		return 0;
	}
}

static bool is_name_start(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

/* A binary operator at *p: its code and length, or 0. */
static size_t binary_op(const char *p, enum op_code *code)
{
	static const struct {
		const char *s;
		enum op_code code;
	} ops[] = {
		{ "&&", OP_AND }, { "||", OP_OR }, { "<=", OP_LE }, { ">=", OP_GE },
		{ "==", OP_EQ },  { "!=", OP_NE }, { "<", OP_LT },  { ">", OP_GT },
		{ "*", OP_MUL },  { "/", OP_DIV }, { "+", OP_ADD }, { "-", OP_SUB },
	};
	for (size_t i = 0; i < ARRAY_SIZE(ops); i++) {
		size_t n = strlen(ops[i].s);
		if (strncmp(p, ops[i].s, n) == 0) {
			*code = ops[i].code;
			return n;
		}
	}
	return 0;
}

/* \d+(\.\d+)? at *p (a digit); locale-independent.  Returns the length,
 * or 0 for "1." with no digit after the dot. */
static size_t parse_number(const char *p, double *v)
{
	size_t n = 0;
	double x = 0;
	while (is_digit(p[n]))
		x = x * 10 + (p[n++] - '0');
	if (p[n] == '.') {
		n++;
		if (!is_digit(p[n]))
			return 0;
		double f = 0, scale = 1;
		for (unsigned digits = 0; is_digit(p[n]); n++, digits++) {
			if (digits < 17) {
				f = f * 10 + (p[n] - '0');
				scale *= 10;
			}
		}
		x += f / scale;
	}
	*v = x;
	return n;
}

struct parser {
	struct meta_op *out;   /* the program */
	size_t nout;
	enum op_code *stack;   /* pending operators and '(' */
	size_t nstack;
	size_t depth, maxdepth; /* evaluation stack depth of the program so far */
	struct meta_expr *e;
	size_t depcap;         /* allocated e->deps */
};

static void emit(struct parser *ps, enum op_code code)
{
	ps->out[ps->nout++] = (struct meta_op){ .code = code };
	if (code >= OP_MUL)
		ps->depth--; /* binary: two values in, one out */
}

static void emit_value(struct parser *ps, struct meta_op op)
{
	ps->out[ps->nout++] = op;
	if (++ps->depth > ps->maxdepth)
		ps->maxdepth = ps->depth;
}

static void add_dep(struct parser *ps, int idx)
{
	struct meta_expr *e = ps->e;
	for (size_t i = 0; i < e->ndeps; i++)
		if (e->deps[i] == idx)
			return;
	if (e->ndeps == ps->depcap) {
		ps->depcap = ps->depcap ? ps->depcap * 2 : 4;
		e->deps = xrealloc(e->deps, ps->depcap * sizeof(*e->deps));
	}
	e->deps[e->ndeps++] = idx;
}

/* Reduce pending operators that bind at least as tightly as one of
 * precedence p arriving (all of them for p 0).  Comparisons do not
 * chain: NULL, or the error. */
static const char *reduce(struct parser *ps, int p)
{
	while (ps->nstack > 0) {
		enum op_code top = ps->stack[ps->nstack - 1];
		if (top == OP_LPAREN || prec(top) < p)
			break;
		if (prec(top) == p && (p == 3 || p == 4))
			return "comparisons cannot be chained, use parentheses";
		emit(ps, top);
		ps->nstack--;
	}
	return NULL;
}

static const char *parse(struct parser *ps, const char *text, int (*resolve)(const char *, void *),
			 void *arg, char *namebuf)
{
	const char *p = text, *err;
	bool want_operand = true, any = false;
	size_t parens = 0;
	for (;;) {
		while (is_space(*p))
			p++;
		if (*p == '\0')
			break;
		any = true;
		/* Perl's ++ and -- would modify the count: not allowed. */
		if ((p[0] == '+' || p[0] == '-') && p[1] == p[0])
			return "'++' and '--' are not allowed";
		if (want_operand) {
			if (is_name_start(*p)) {
				size_t n = 1;
				while (is_name_start(p[n]) || is_digit(p[n]))
					n++;
				memcpy(namebuf, p, n);
				namebuf[n] = '\0';
				p += n;
				int idx = resolve(namebuf, arg);
				if (idx >= 0) {
					emit_value(ps, (struct meta_op){ .code = OP_LOAD,
									 .idx = (unsigned)idx });
					add_dep(ps, idx);
				} else {
					emit_value(ps, (struct meta_op){ .code = OP_CONST, .k = 0 });
				}
				want_operand = false;
			} else if (is_digit(*p)) {
				double v;
				size_t n = parse_number(p, &v);
				if (n == 0)
					return "bad number";
				p += n;
				emit_value(ps, (struct meta_op){ .code = OP_CONST, .k = v });
				want_operand = false;
			} else if (*p == '(') {
				if (++parens > META_MAX_DEPTH)
					return "parentheses nested too deeply";
				ps->stack[ps->nstack++] = OP_LPAREN;
				p++;
			} else if (*p == '!' && p[1] != '=') {
				ps->stack[ps->nstack++] = OP_NOT;
				p++;
			} else if (*p == '-') {
				ps->stack[ps->nstack++] = OP_NEG;
				p++;
			} else if (*p == '+') {
				p++; /* unary plus: nothing to do */
			} else if (*p == ')') {
				return "missing operand before ')'";
			} else {
				enum op_code c;
				return binary_op(p, &c) ? "missing operand before an operator"
							: "unexpected character";
			}
			continue;
		}
		/* An operator, or ')'. */
		enum op_code c;
		size_t n;
		if (*p == ')') {
			if ((err = reduce(ps, 0)) != NULL)
				return err;
			if (ps->nstack == 0)
				return "unbalanced parentheses: ')' without '('";
			ps->nstack--; /* the '(' */
			parens--;
			p++;
		} else if ((n = binary_op(p, &c)) > 0) {
			if ((err = reduce(ps, prec(c))) != NULL)
				return err;
			ps->stack[ps->nstack++] = c;
			p += n;
			want_operand = true;
		} else if (is_name_start(*p) || is_digit(*p) || *p == '(') {
			return "missing operator between operands";
		} else {
			return "unexpected character";
		}
	}
	if (!any)
		return "empty expression";
	if (want_operand)
		return "expression ends with an operator";
	if ((err = reduce(ps, 0)) != NULL)
		return err;
	if (ps->nstack > 0)
		return "unbalanced parentheses: '(' without ')'";
	/* With at most META_MAX_DEPTH levels of parentheses, each holding at
	 * most one pending value per binary precedence level (6), the stack
	 * stays far below META_STACK_MAX; checked all the same. */
	if (ps->maxdepth > META_STACK_MAX)
		return "expression too complex";
	return NULL;
}

struct meta_expr *meta_compile(const char *text, int (*resolve)(const char *name, void *arg),
			       void *arg, const char **error_r)
{
	size_t len = strlen(text);
	if (len > META_MAX_LEN) {
		*error_r = "expression too long";
		return NULL;
	}
	/* Every token is at least one byte, and emits at most one op and
	 * pushes at most one operator. */
	struct meta_expr *e = xcalloc(1, sizeof(*e));
	struct parser ps = { .out = xmalloc((len + 1) * sizeof(*ps.out)),
			     .stack = xmalloc((len + 1) * sizeof(*ps.stack)),
			     .e = e };
	char *namebuf = xmalloc(len + 1);
	const char *err = parse(&ps, text, resolve, arg, namebuf);
	free(namebuf);
	free(ps.stack);
	if (err != NULL) {
		free(ps.out);
		meta_free(&e);
		*error_r = err;
		return NULL;
	}
	e->ops = xrealloc(ps.out, ps.nout * sizeof(*ps.out));
	e->nops = ps.nout;
	return e;
}

void meta_free(struct meta_expr **e)
{
	if (*e == NULL)
		return;
	free((*e)->ops);
	free((*e)->deps);
	free(*e);
	*e = NULL;
}

size_t meta_deps(const struct meta_expr *e, const int **deps)
{
	if (e == NULL) {
		*deps = NULL;
		return 0;
	}
	*deps = e->deps;
	return e->ndeps;
}

double meta_eval(const struct meta_expr *e, const unsigned *counts)
{
	if (e == NULL || e->nops == 0)
		return 0;
	double st[META_STACK_MAX];
	size_t sp = 0;
	for (const struct meta_op *op = e->ops, *end = op + e->nops; op < end; op++) {
		double b = sp > 0 ? st[sp - 1] : 0;
		switch (op->code) {
		case OP_CONST:
			st[sp++] = op->k;
			continue;
		case OP_LOAD:
			st[sp++] = counts[op->idx];
			continue;
		case OP_NOT:
			st[sp - 1] = b == 0;
			continue;
		case OP_NEG:
			st[sp - 1] = -b;
			continue;
		default:
			break;
		}
		double a = st[sp - 2], r;
		switch (op->code) {
		case OP_MUL: r = a * b; break;
		case OP_DIV: r = b != 0 ? a / b : 0; break;
		case OP_ADD: r = a + b; break;
		case OP_SUB: r = a - b; break;
		case OP_LT: r = a < b; break;
		case OP_GT: r = a > b; break;
		case OP_LE: r = a <= b; break;
		case OP_GE: r = a >= b; break;
		case OP_EQ: r = a == b; break;
		case OP_NE: r = a != b; break;
		case OP_AND: r = a != 0 ? b : a; break;
		case OP_OR: r = a != 0 ? a : b; break;
		default: r = 0; break;
		}
		st[--sp - 1] = r;
	}
	return st[0];
}
