/*
 * test_imap_parse.c - the IMAP command parser and sequence sets.  Every
 * input is run through the parser whole, one byte at a time and in a few
 * other chunkings; each run is rendered as a trace of what the parser
 * reported and all traces must be the same.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imapd/imap_parse.h"

#define MAX_LINE 200
#define MAX_LIT 100
#define MAX_ARGS 20

static void render_str(struct buf *b, const char *s, size_t len)
{
	buf_putc(b, '"');
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\')
			buf_printf(b, "\\x%02x", c);
		else
			buf_putc(b, (char)c);
	}
	buf_putc(b, '"');
}

static void render_args(struct buf *b, const struct imap_arg *a, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (i)
			buf_putc(b, ' ');
		switch (a[i].type) {
		case IMAP_ARG_ATOM:
			buf_putc(b, 'A');
			render_str(b, a[i].str, a[i].len);
			assert_int_equal(strlen(a[i].str), a[i].len);
			break;
		case IMAP_ARG_QUOTED:
			buf_putc(b, 'Q');
			render_str(b, a[i].str, a[i].len);
			break;
		case IMAP_ARG_LITERAL:
			buf_puts(b, a[i].literal8 ? "L8" : "L");
			render_str(b, a[i].str, a[i].len);
			assert_int_equal(a[i].str[a[i].len], '\0');
			break;
		case IMAP_ARG_NIL:
			buf_puts(b, "NIL");
			break;
		case IMAP_ARG_LIST:
			buf_putc(b, '(');
			render_args(b, a[i].list, a[i].nlist);
			buf_putc(b, ')');
			break;
		}
	}
}

/* Run wire through a parser in chunks of `chunk` bytes (0 = all at once);
 * synchronizing literals are accepted unless too big (then rejected).
 * Returns the trace (malloc'd). */
static char *run(const char *wire, size_t len, size_t chunk)
{
	struct imap_parser *p = imap_parser_new(MAX_LINE, MAX_LIT, MAX_ARGS);
	struct buf t;
	buf_init(&t, 1 << 20);
	size_t pos = 0;  /* bytes made available */
	size_t used = 0; /* bytes consumed */
	bool stop = false;
	while (!stop) {
		if (used == pos) {
			if (pos == len)
				break;
			pos = chunk == 0 || len - pos < chunk ? len : pos + chunk;
		}
		size_t consumed = 12345;
		enum imap_parse_status st = imap_parser_feed(p, wire + used, pos - used, &consumed);
		assert_true(consumed <= pos - used);
		used += consumed;
		switch (st) {
		case IMAP_PARSE_MORE:
			assert_int_equal(used, pos);
			break;
		case IMAP_PARSE_DONE: {
			const struct imap_cmd *c = imap_parser_cmd(p);
			assert_non_null(c);
			assert_string_equal(c->tag, imap_parser_tag(p));
			assert_string_equal(c->name, imap_parser_name(p));
			buf_printf(&t, "[%s %s", c->tag, c->name);
			if (c->nargs) {
				buf_putc(&t, ' ');
				render_args(&t, c->args, c->nargs);
			}
			buf_puts(&t, "]");
			imap_parser_reset(p);
			break;
		}
		case IMAP_PARSE_LITERAL:
			buf_printf(&t, "{%llu}", (unsigned long long)imap_parser_literal_size(p));
			if (imap_parser_literal_too_big(p)) {
				const char *tag = imap_parser_tag(p);
				imap_parser_literal_reject(p);
				/* the tag survives the reject, for the NO */
				buf_printf(&t, "REJ(%s)", tag ? imap_parser_tag(p) : "-");
			} else {
				imap_parser_literal_continue(p);
			}
			break;
		case IMAP_PARSE_ERROR:
			assert_non_null(imap_parser_error(p));
			buf_printf(&t, "ERR(%s%s)", imap_parser_tag(p) ? imap_parser_tag(p) : "-",
				   imap_parser_error_fatal(p) ? ",fatal" : "");
			if (imap_parser_error_fatal(p)) {
				/* stays fatal */
				size_t c2;
				assert_int_equal(imap_parser_feed(p, "x", 1, &c2), IMAP_PARSE_ERROR);
				assert_int_equal(c2, 0);
				stop = true;
			}
			imap_parser_reset(p);
			break;
		}
	}
	if (!stop && used == len) {
		/* leftover state: a command cut off */
		size_t c2;
		if (imap_parser_feed(p, "", 0, &c2) == IMAP_PARSE_MORE && imap_parser_tag(p))
			buf_puts(&t, "...");
	}
	imap_parser_free(&p);
	assert_null(p);
	char *s = xstrdup(t.data ? t.data : "");
	buf_free(&t);
	return s;
}

/* All chunkings give the same trace, which must be `expect`. */
static void check_len(const char *wire, size_t len, const char *expect)
{
	char *whole = run(wire, len, 0);
	if (strcmp(whole, expect) != 0)
		fail_msg("input %s\n got    %s\n expect %s", wire, whole, expect);
	static const size_t chunks[] = { 1, 2, 3, 7 };
	for (size_t i = 0; i < ARRAY_SIZE(chunks); i++) {
		char *t = run(wire, len, chunks[i]);
		if (strcmp(t, whole) != 0)
			fail_msg("input %s chunk %zu\n got    %s\n whole  %s", wire, chunks[i], t,
				 whole);
		free(t);
	}
	free(whole);
}

/* wire containing NULs */
#define CHECKB(wire, expect) check_len(wire, sizeof(wire) - 1, expect)

static void check(const char *wire, const char *expect)
{
	check_len(wire, strlen(wire), expect);
}

static void test_simple(void **state)
{
	(void)state;
	check("a1 NOOP\r\n", "[a1 NOOP]");
	check("a1 noop\n", "[a1 NOOP]");
	check("A.b-2 capability\r\n", "[A.b-2 CAPABILITY]");
	check("x] LOGOUT\r\n", "[x] LOGOUT]");
	check("a1 LOGIN alice secret\r\n", "[a1 LOGIN A\"alice\" A\"secret\"]");
	check("a1 LOGIN \"alice\" \"s\\\"e\\\\c\"\r\n",
	      "[a1 LOGIN Q\"alice\" Q\"s\\x22e\\x5cc\"]");
	check("a1 SELECT \"\"\r\n", "[a1 SELECT Q\"\"]");
	check("a1 SELECT \"Gr\xc3\xbc\xc3\x9f\xe2\x82\xac\"\r\n",
	      "[a1 SELECT Q\"Gr\\xc3\\xbc\\xc3\\x9f\\xe2\\x82\\xac\"]");
	check("a1 UID FETCH 1:*,5 FLAGS\r\n", "[a1 UID A\"FETCH\" A\"1:*,5\" A\"FLAGS\"]");
	check("a1 LIST \"\" %\r\n", "[a1 LIST Q\"\" A\"%\"]");
	check("a1 LIST \"\" *\r\n", "[a1 LIST Q\"\" A\"*\"]");
	check("a1 LIST \"\" Work/%/a*b\r\n", "[a1 LIST Q\"\" A\"Work/%/a*b\"]");
	check("a1 STORE 1 +FLAGS (\\Seen \\Deleted $Junk)\r\n",
	      "[a1 STORE A\"1\" A\"+FLAGS\" (A\"\\x5cSeen\" A\"\\x5cDeleted\" A\"$Junk\")]");
	check("a1 APPEND INBOX (\\*) x\r\n", "[a1 APPEND A\"INBOX\" (A\"\\x5c*\") A\"x\"]");
	check("a1 X nil NIL \"NIL\" Nil nile\r\n",
	      "[a1 X NIL NIL Q\"NIL\" NIL A\"nile\"]");
	check("a1 ID ()\r\n", "[a1 ID ()]");
	check("a1 X ((a) (b (c ())))\r\n", "[a1 X ((A\"a\") (A\"b\" (A\"c\" ())))]");
	check("a1 X (a)(b)\r\n", "ERR(a1)");
	check("a1 X ~tilde\r\n", "[a1 X A\"~tilde\"]");
}

static void test_fetch_sections(void **state)
{
	(void)state;
	check("a1 FETCH 1 (BODY[HEADER.FIELDS (From Subject)]<0.100> FLAGS)\r\n",
	      "[a1 FETCH A\"1\" (A\"BODY[HEADER.FIELDS (From Subject)]<0.100>\" A\"FLAGS\")]");
	check("a1 FETCH 1 BODY.PEEK[1.2.MIME]\r\n", "[a1 FETCH A\"1\" A\"BODY.PEEK[1.2.MIME]\"]");
	check("a1 FETCH 1:2 (BODY[] BODY[TEXT])\r\n",
	      "[a1 FETCH A\"1:2\" (A\"BODY[]\" A\"BODY[TEXT]\")]");
	check("a1 FETCH 1 BODY[HEADER.FIELDS.NOT (\"X-A]\" To)]\r\n",
	      "[a1 FETCH A\"1\" A\"BODY[HEADER.FIELDS.NOT (\\x22X-A]\\x22 To)]\"]");
	check("a1 FETCH 1 BINARY.PEEK[1]<0.10>\r\n", "[a1 FETCH A\"1\" A\"BINARY.PEEK[1]<0.10>\"]");
	/* an unterminated section */
	check("a1 FETCH 1 BODY[HEADER\r\n", "ERR(a1)");
}

static void test_literals(void **state)
{
	(void)state;
	check("a1 LOGIN {5}\r\nalice {6}\r\nsecret\r\n",
	      "{5}{6}[a1 LOGIN L\"alice\" L\"secret\"]");
	check("a1 LOGIN {5+}\r\nalice {6+}\r\nsecret\r\n",
	      "[a1 LOGIN L\"alice\" L\"secret\"]");
	/* a literal followed by more arguments, inside a list, with CRLF and
	 * NUL in the data, and bare-LF line ends */
	CHECKB("a1 X ({3+}\na\0b {4}\r\n\r\n)() y\r\n",
	       "{4}[a1 X (L\"a\\x00b\" L\"\\x0d\\x0a)(\") A\"y\"]");
	check("a1 X {0}\r\n {0+}\r\n\r\n", "{0}[a1 X L\"\" L\"\"]");
	check("a1 APPEND INBOX (\\Seen) ~{3+}\r\nabc\r\n",
	      "[a1 APPEND A\"INBOX\" (A\"\\x5cSeen\") L8\"abc\"]");
	check("a1 X {100}\r\n", "{100}...");
	/* malformed literals */
	check("a1 X {}\r\n", "ERR(a1)");
	check("a1 X {5+3}\r\n", "ERR(a1)");
	check("a1 X {5} \r\n", "ERR(a1)");
	check("a1 X {5}\r x\r\n", "ERR(a1)");
	check("a1 X a{5}\r\n", "ERR(a1)");
	/* a literal must be followed by SP, ')' or the line end */
	check("a1 X {2+}\r\nabc\r\n", "ERR(a1)");
}

static void test_literal_limits(void **state)
{
	(void)state;
	/* too big sync literal: LITERAL, reject, the next command parses */
	check("a1 APPEND INBOX {101}\r\na2 NOOP\r\n", "{101}REJ(a1)[a2 NOOP]");
	/* the sum of a command's literals counts too */
	char big[400];
	int n = snprintf(big, sizeof(big), "a1 X {100+}\r\n%0100d {100}\r\n", 0);
	n += snprintf(big + n, sizeof(big) - (size_t)n, "%0100d {1}\r\na2 NOOP\r\n", 0);
	check(big, "{100}{1}REJ(a1)[a2 NOOP]");
	n = snprintf(big, sizeof(big), "a1 X {100+}\r\n%0100d {100+}\r\n", 0);
	n += snprintf(big + n, sizeof(big) - (size_t)n, "%0100d {1+}\r\n", 0);
	check(big, "ERR(a1,fatal)");
	check("a1 X {100}\r\n", "{100}...");
	/* too big non-sync literal: fatal at once */
	check("a1 APPEND INBOX {101+}\r\nxxx", "ERR(a1,fatal)");
	check("a1 APPEND INBOX {99999999999999999999999}\r\n", "ERR(a1,fatal)");
	/* continuing a too-big literal anyway: its data and the rest of the
	 * line are skipped, then a non-fatal error */
	struct imap_parser *p = imap_parser_new(MAX_LINE, MAX_LIT, MAX_ARGS);
	size_t c;
	const char *w = "a1 APPEND INBOX {101}\r\n";
	assert_int_equal(imap_parser_feed(p, w, strlen(w), &c), IMAP_PARSE_LITERAL);
	assert_int_equal(c, strlen(w));
	assert_true(imap_parser_literal_too_big(p));
	assert_int_equal(imap_parser_literal_size(p), 101);
	/* feeding while the decision is pending changes nothing */
	assert_int_equal(imap_parser_feed(p, "x", 1, &c), IMAP_PARSE_LITERAL);
	assert_int_equal(c, 0);
	imap_parser_literal_continue(p);
	char data[200];
	memset(data, 'x', 101);
	strcpy(data + 101, " {3+}\r\nabc\r\na2 NOOP\r\n");
	size_t used = 0;
	for (; used < 101 + 5; used += c) /* byte by byte */
		assert_int_equal(imap_parser_feed(p, data + used, 1, &c), IMAP_PARSE_MORE);
	assert_int_equal(imap_parser_feed(p, data + used, strlen(data) - used, &c),
			 IMAP_PARSE_ERROR);
	used += c;
	assert_false(imap_parser_error_fatal(p));
	assert_string_equal(imap_parser_error(p), "Literal too big");
	assert_string_equal(imap_parser_tag(p), "a1");
	imap_parser_reset(p);
	assert_int_equal(imap_parser_feed(p, data + used, strlen(data) - used, &c),
			 IMAP_PARSE_DONE);
	assert_string_equal(imap_parser_cmd(p)->tag, "a2");
	imap_parser_free(&p);
	/* a too-big literal of a later line of the command */
	check("a1 X {1}\r\nx {200}\r\na2 NOOP\r\n", "{1}{200}REJ(a1)[a2 NOOP]");
}

static void test_errors(void **state)
{
	(void)state;
	check("\r\n", "ERR(-)");
	check("\n", "ERR(-)");
	check(" NOOP\r\n", "ERR(-)");
	check("a1\r\n", "ERR(a1)");
	check("a1 \r\n", "ERR(a1)");
	check("a+1 NOOP\r\n", "ERR(-)");
	check("a\"1 NOOP\r\n", "ERR(-)");
	check("a*1 NOOP\r\n", "ERR(-)");
	check("a\xc3\xa9" "1 NOOP\r\n", "ERR(-)");
	check("a1 NO\xc3\xa9P\r\n", "ERR(a1)");
	check("a1 LOGIN \"alice\r\n", "ERR(a1)");
	check("a1 LOGIN \"al\\ice\" x\r\n", "ERR(a1)");
	check("a1 LOGIN \"al\rice\" x\r\n", "ERR(a1)");
	check("a1 LOGIN \"alice\"x\r\n", "ERR(a1)");
	check("a1 X (a b\r\n", "ERR(a1)");
	check("a1 X a b)\r\n", "ERR(a1)");
	check("a1 X (a))\r\n", "ERR(a1)");
	check("a1 X ((((((((((((((((((a))))))))))))))))))\r\n", "ERR(a1)");
	check("a1 X a  b\r\n", "ERR(a1)");
	check("a1 X a \r\n", "ERR(a1)");
	check("a1 X a\rb\r\n", "ERR(a1)");
	check("a1 X (a )\r\n", "ERR(a1)");
	check("a1 X ( a)\r\n", "ERR(a1)");
	check("a1 X a\"b\r\n", "ERR(a1)");
	check("a1 X a(b\r\n", "ERR(a1)");
	check("a1 X \xc3\xa9\r\n", "ERR(a1)");
	CHECKB("a1 X a\0b\r\n", "ERR(a1)");
	CHECKB("a1 X \"a\0b\"\r\n", "ERR(a1)");
	CHECKB("a\0 X\r\n", "ERR(-)");
	/* the rest of the bad line is skipped; the next command parses */
	check("a1 LOGIN \"a\\x\" (((( {5}\r\na2 NOOP\r\n", "ERR(a1)[a2 NOOP]");
	/* a bad line ending in {N+}: its data is skipped too */
	check("a1 LOGIN \"a\\x\" {5+}\r\nab\r\nc a3 BAD\r\na2 NOOP\r\n", "ERR(a1)[a2 NOOP]");
	check("a1 LOGIN \"a\\x\" {500+}\r\nabc", "ERR(a1,fatal)");
}

static void test_limits(void **state)
{
	(void)state;
	char line[1024];
	/* exactly max_line bytes of text is fine, one more is not */
	int n = snprintf(line, sizeof(line), "a1 X ");
	memset(line + n, 'x', MAX_LINE - (size_t)n);
	strcpy(line + MAX_LINE, "\r\na2 NOOP\r\n");
	char expect[1024];
	char xs[MAX_LINE + 1];
	memset(xs, 'x', MAX_LINE - (size_t)n);
	xs[MAX_LINE - n] = '\0';
	snprintf(expect, sizeof(expect), "[a1 X A\"%s\"][a2 NOOP]", xs);
	check(line, expect);
	memset(line + n, 'x', MAX_LINE + 1 - (size_t)n);
	strcpy(line + MAX_LINE + 1, "\r\na2 NOOP\r\n");
	check(line, "ERR(a1)[a2 NOOP]");
	/* a much longer line is skipped without being stored */
	memset(line + n, 'x', sizeof(line) - 20);
	strcpy(line + sizeof(line) - 20, "\r\na2 NOOP\r\n");
	check(line, "ERR(a1)[a2 NOOP]");
	/* the text after a literal counts towards the same line */
	n = snprintf(line, sizeof(line), "a1 X {1+}\r\nz ");
	memset(line + n, 'y', MAX_LINE);
	strcpy(line + n + MAX_LINE, "\r\n");
	check(line, "ERR(a1)");

	/* max_args counts every level: 20 is fine, 21 is not */
	check("a1 X 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20\r\n",
	      "[a1 X A\"1\" A\"2\" A\"3\" A\"4\" A\"5\" A\"6\" A\"7\" A\"8\" A\"9\" A\"10\" "
	      "A\"11\" A\"12\" A\"13\" A\"14\" A\"15\" A\"16\" A\"17\" A\"18\" A\"19\" A\"20\"]");
	check("a1 X 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21\r\n", "ERR(a1)");
	check("a1 X (1 2 3 4 5 6 7 8 9) (10 11 12 13 14 15 16 17 18)\r\n",
	      "[a1 X (A\"1\" A\"2\" A\"3\" A\"4\" A\"5\" A\"6\" A\"7\" A\"8\" A\"9\") "
	      "(A\"10\" A\"11\" A\"12\" A\"13\" A\"14\" A\"15\" A\"16\" A\"17\" A\"18\")]");
	check("a1 X (1 2 3 4 5 6 7 8 9) (10 11 12 13 14 15 16 17 18 19)\r\n", "ERR(a1)");
	/* lists nest IMAP_MAX_DEPTH deep, not deeper */
	for (int depth = IMAP_MAX_DEPTH; depth <= IMAP_MAX_DEPTH + 1; depth++) {
		char wire[128], exp[128];
		int w = snprintf(wire, sizeof(wire), "a1 X ");
		int e = snprintf(exp, sizeof(exp), "[a1 X ");
		for (int i = 0; i < depth; i++)
			wire[w++] = exp[e++] = '(';
		w += snprintf(wire + w, sizeof(wire) - (size_t)w, "a");
		e += snprintf(exp + e, sizeof(exp) - (size_t)e, "A\"a\"");
		for (int i = 0; i < depth; i++)
			wire[w++] = exp[e++] = ')';
		snprintf(wire + w, sizeof(wire) - (size_t)w, "\r\n");
		snprintf(exp + e, sizeof(exp) - (size_t)e, "]");
		check(wire, depth <= IMAP_MAX_DEPTH ? exp : "ERR(a1)");
	}
}

static void test_pipelined(void **state)
{
	(void)state;
	check("a1 NOOP\r\na2 SELECT INBOX\r\na3 FETCH 1 (UID)\r\n\r\na4 LOGOUT\r\n",
	      "[a1 NOOP][a2 SELECT A\"INBOX\"][a3 FETCH A\"1\" (A\"UID\")]ERR(-)[a4 LOGOUT]");
	check("a1 LOGIN {1+}\r\nx y\r\na2 NOOP\r\na3 NO", "[a1 LOGIN L\"x\" A\"y\"][a2 NOOP]...");

	/* consumed stops after the command: the rest is left to the caller */
	struct imap_parser *p = imap_parser_new(MAX_LINE, MAX_LIT, MAX_ARGS);
	const char *w = "a1 NOOP\r\na2 CHECK\r\n";
	size_t c;
	assert_int_equal(imap_parser_feed(p, w, strlen(w), &c), IMAP_PARSE_DONE);
	assert_int_equal(c, 9);
	assert_string_equal(imap_parser_cmd(p)->name, "NOOP");
	/* feeding without reset resets first */
	assert_int_equal(imap_parser_feed(p, w + 9, strlen(w) - 9, &c), IMAP_PARSE_DONE);
	assert_string_equal(imap_parser_cmd(p)->tag, "a2");
	imap_parser_reset(p);
	assert_null(imap_parser_cmd(p));
	assert_null(imap_parser_tag(p));
	/* tag and name known while a command is incomplete */
	w = "t5 uid fetch 1";
	assert_int_equal(imap_parser_feed(p, w, strlen(w), &c), IMAP_PARSE_MORE);
	assert_string_equal(imap_parser_tag(p), "t5");
	assert_string_equal(imap_parser_name(p), "UID");
	assert_null(imap_parser_cmd(p));
	imap_parser_free(&p);
	imap_parser_free(&p); /* NULL is fine */
}

static void test_helpers(void **state)
{
	(void)state;
	struct imap_parser *p = imap_parser_new(MAX_LINE, MAX_LIT, MAX_ARGS);
	static const char w[] = "a1 X abc \"q\" {2+}\r\nzz NIL (l) {2+}\r\na\0\r\n";
	size_t c;
	assert_int_equal(imap_parser_feed(p, w, sizeof(w) - 1, &c), IMAP_PARSE_DONE);
	assert_int_equal(c, sizeof(w) - 1);
	const struct imap_cmd *cmd = imap_parser_cmd(p);
	assert_int_equal(cmd->nargs, 6);
	assert_string_equal(imap_arg_astring(&cmd->args[0]), "abc");
	assert_string_equal(imap_arg_atom(&cmd->args[0]), "abc");
	assert_string_equal(imap_arg_astring(&cmd->args[1]), "q");
	assert_null(imap_arg_atom(&cmd->args[1]));
	assert_string_equal(imap_arg_astring(&cmd->args[2]), "zz");
	assert_null(imap_arg_astring(&cmd->args[3]));
	assert_null(imap_arg_nstring(&cmd->args[3]));
	assert_int_equal(cmd->args[3].type, IMAP_ARG_NIL);
	assert_null(imap_arg_astring(&cmd->args[4]));
	assert_null(imap_arg_astring(&cmd->args[5])); /* contains a NUL */
	assert_int_equal(cmd->args[5].len, 2);
	imap_parser_free(&p);
}

/* Random mixes of the syntax's pieces: every chunking agrees, nothing
 * crashes or leaks (run() checks consumed and the status rules). */
static void test_random(void **state)
{
	(void)state;
	static const char *const pieces[] = {
		"a1", " ", "NOOP", "\r\n", "\n", "(", ")", "\"", "\\", "{3}\r\n", "{2+}\r\n",
		"~{1+}\r\n", "{0}\r\n", "BODY[", "]", "<0.1>", "NIL", "\\Seen", "*", "%", "1:*",
		"\r", "x", "\xc3\xa9", "{", "}", "+", "[", "{500+}\r\n", "{101}\r\n",
	};
	uint32_t x = 42;
	char wire[512];
	for (int iter = 0; iter < 3000; iter++) {
		size_t len = 0;
		int npieces = 1 + iter % 40;
		for (int i = 0; i < npieces; i++) {
			x = x * 1103515245 + 12345;
			const char *piece = pieces[(x >> 16) % ARRAY_SIZE(pieces)];
			size_t pl = strlen(piece);
			if (len + pl >= sizeof(wire))
				break;
			memcpy(wire + len, piece, pl);
			len += pl;
		}
		wire[len] = '\0';
		char *whole = run(wire, len, 0);
		char *bytes = run(wire, len, 1);
		if (strcmp(whole, bytes) != 0)
			fail_msg("input %s\n whole %s\n bytes %s", wire, whole, bytes);
		free(whole);
		free(bytes);
	}
}

/* ---------------------------------------------------------- sequence sets */

static char *fmt(const struct seqset *s)
{
	struct buf b;
	buf_init(&b, 4096);
	seqset_format(s, &b);
	char *r = xstrdup(b.data ? b.data : "");
	buf_free(&b);
	return r;
}

static void check_seq(const char *in, uint32_t star, const char *expect)
{
	struct seqset s;
	bool ok = seqset_parse(in, star, &s);
	if (!expect) {
		if (ok)
			fail_msg("%s parsed", in);
		assert_int_equal(s.n, 0);
		return;
	}
	if (!ok)
		fail_msg("%s did not parse", in);
	char *f = fmt(&s);
	if (strcmp(f, expect) != 0)
		fail_msg("%s: got %s expected %s", in, f, expect);
	free(f);
	for (size_t i = 0; i < s.n; i++) {
		assert_true(s.r[i].lo <= s.r[i].hi);
		if (i)
			assert_true((uint64_t)s.r[i - 1].hi + 1 < s.r[i].lo);
	}
	seqset_free(&s);
	assert_null(s.r);
}

static void test_seqset_parse(void **state)
{
	(void)state;
	check_seq("1", 10, "1");
	check_seq("1:4,7,9:*", 12, "1:4,7,9:12");
	check_seq("*", 12, "12");
	check_seq("*:3", 12, "3:12");
	check_seq("5:2", 12, "2:5");
	check_seq("3,1,2", 12, "1:3");
	check_seq("1:3,2:6,10,8:9", 12, "1:6,8:10");
	check_seq("7,7,7", 12, "7");
	check_seq("1:4294967295", 12, "1:4294967295");
	check_seq("4294967295,1", 12, "1,4294967295");
	check_seq("20:30", 12, "20:30");
	/* empty mailbox: star is 0 */
	check_seq("*", 0, "0");
	check_seq("1:*", 0, "0:1");
	/* invalid */
	check_seq("", 12, NULL);
	check_seq("0", 12, NULL);
	check_seq("0:3", 12, NULL);
	check_seq("01", 12, NULL);
	check_seq("1,", 12, NULL);
	check_seq(",1", 12, NULL);
	check_seq("1,,2", 12, NULL);
	check_seq("1:", 12, NULL);
	check_seq(":1", 12, NULL);
	check_seq("1::2", 12, NULL);
	check_seq("1:2:3", 12, NULL);
	check_seq("4294967296", 12, NULL);
	check_seq("99999999999999999999", 12, NULL);
	check_seq("a", 12, NULL);
	check_seq("1 ", 12, NULL);
	check_seq("-1", 12, NULL);
	check_seq("**", 12, NULL);
	check_seq("$", 12, NULL);
}

static void test_seqset_contains(void **state)
{
	(void)state;
	struct seqset s;
	assert_true(seqset_parse("2:4,10,20:*", 30, &s));
	static const uint32_t yes[] = { 2, 3, 4, 10, 20, 25, 30 };
	static const uint32_t no[] = { 0, 1, 5, 9, 11, 19, 31, UINT32_MAX };
	for (size_t i = 0; i < ARRAY_SIZE(yes); i++)
		assert_true(seqset_contains(&s, yes[i]));
	for (size_t i = 0; i < ARRAY_SIZE(no); i++)
		assert_false(seqset_contains(&s, no[i]));
	assert_int_equal(seqset_count(&s), 3 + 1 + 11);
	assert_int_equal(seqset_max(&s), 30);
	seqset_free(&s);
	struct seqset e = { 0 };
	assert_false(seqset_contains(&e, 1));
	assert_int_equal(seqset_max(&e), 0);
	char *f = fmt(&e);
	assert_string_equal(f, "");
	free(f);
	/* the empty mailbox: "*" matches no message */
	assert_true(seqset_parse("*", 0, &s));
	assert_false(seqset_contains(&s, 1));
	seqset_free(&s);
}

static void test_seqset_add(void **state)
{
	(void)state;
	struct seqset s = { 0 };
	/* appending in order merges adjacent */
	for (uint32_t i = 1; i <= 1000; i++)
		seqset_add(&s, i, i);
	assert_int_equal(s.n, 1);
	seqset_add(&s, 1002, 1002);
	seqset_add(&s, 1004, 1005);
	char *f = fmt(&s);
	assert_string_equal(f, "1:1000,1002,1004:1005");
	free(f);
	/* out of order: fill gaps, merge several, insert in front */
	seqset_add(&s, 1001, 1001);
	seqset_add(&s, 2000, 1990);
	seqset_add(&s, 1500, 1500);
	f = fmt(&s);
	assert_string_equal(f, "1:1002,1004:1005,1500,1990:2000");
	free(f);
	seqset_add(&s, 1003, 1995);
	f = fmt(&s);
	assert_string_equal(f, "1:2000");
	free(f);
	seqset_free(&s);
	seqset_add(&s, 50, 60);
	seqset_add(&s, 10, 20);
	seqset_add(&s, 30, 30);
	seqset_add(&s, 21, 29);
	seqset_add(&s, 5, 5);
	seqset_add(&s, 55, 70);
	seqset_add(&s, UINT32_MAX, UINT32_MAX);
	seqset_add(&s, UINT32_MAX - 1, UINT32_MAX);
	f = fmt(&s);
	assert_string_equal(f, "5,10:30,50:70,4294967294:4294967295");
	free(f);
	assert_true(seqset_contains(&s, 25));
	assert_false(seqset_contains(&s, 31));
	seqset_free(&s);
	/* a pseudo-random order matches a bitmap */
	bool bits[300] = { false };
	uint32_t x = 12345;
	for (int i = 0; i < 200; i++) {
		x = x * 1103515245 + 12345;
		uint32_t lo = 1 + (x >> 8) % 290, len = (x >> 20) % 5;
		seqset_add(&s, lo, lo + len);
		for (uint32_t j = lo; j <= lo + len; j++)
			bits[j] = true;
	}
	for (uint32_t j = 0; j < 300; j++)
		assert_int_equal(seqset_contains(&s, j), bits[j]);
	for (size_t i = 1; i < s.n; i++)
		assert_true((uint64_t)s.r[i - 1].hi + 1 < s.r[i].lo);
	seqset_free(&s);
}

static void test_date(void **state)
{
	(void)state;
	int64_t d;
	assert_true(imap_date_parse("1-Jan-1970", &d));
	assert_int_equal(d, 0);
	assert_true(imap_date_parse("01-jan-1970", &d));
	assert_int_equal(d, 0);
	assert_true(imap_date_parse("29-Feb-2024", &d));
	assert_int_equal(d, 19782);
	assert_true(imap_date_parse("31-DEC-1999", &d));
	assert_int_equal(d, 10956);
	assert_false(imap_date_parse("29-Feb-2023", &d));
	assert_false(imap_date_parse("31-Apr-2023", &d));
	assert_false(imap_date_parse("0-Jan-2023", &d));
	assert_false(imap_date_parse("1-Jab-2023", &d));
	assert_false(imap_date_parse("1-Jan-23", &d));
	assert_false(imap_date_parse("1-Jan-20233", &d));
	assert_false(imap_date_parse("123-Jan-2023", &d));
	assert_false(imap_date_parse("1 Jan 2023", &d));
	assert_false(imap_date_parse("", &d));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_simple),
		cmocka_unit_test(test_fetch_sections),
		cmocka_unit_test(test_literals),
		cmocka_unit_test(test_literal_limits),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_pipelined),
		cmocka_unit_test(test_helpers),
		cmocka_unit_test(test_random),
		cmocka_unit_test(test_seqset_parse),
		cmocka_unit_test(test_seqset_contains),
		cmocka_unit_test(test_seqset_add),
		cmocka_unit_test(test_date),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
