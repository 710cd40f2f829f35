/*
 * test_search.c - SEARCH programs: every key, NOT/OR/group nesting,
 * sequence and UID sets with '*', dates, CHARSET, MODSEQ, syntax errors,
 * and the text keys against small messages parsed with mime_parse().
 * The keys are written as a client would send them and go through the
 * command parser first.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mime.h"
#include "imapd/imap_parse.h"

#define NMSG 5

static const char *const texts[NMSG] = {
	"From: Alice <alice@example.org>\r\n"
	"To: bob@example.test\r\n"
	"Subject: Hello world\r\n"
	"Date: Fri, 01 Mar 2024 23:30:00 -0500\r\n"
	"\r\n"
	"The quick brown fox\r\n",

	"From: bob@example.test\r\n"
	"Cc: carol@example.net\r\n"
	"Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\n"
	"Date: Sat, 02 Mar 2024 12:00:00 +0000\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: text/plain; charset=utf-8\r\n"
	"Content-Transfer-Encoding: quoted-printable\r\n"
	"\r\n"
	"caf=C3=A9 meeting\r\n",

	NULL, /* the file vanished */

	"From: eve@example.com\r\n"
	"Bcc: dave@example.com\r\n"
	"X-Spam: yes\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: multipart/mixed; boundary=\"b1\"\r\n"
	"\r\n"
	"--b1\r\n"
	"Content-Type: text/plain\r\n"
	"\r\n"
	"attachment here\r\n"
	"--b1\r\n"
	"Content-Type: application/octet-stream\r\n"
	"Content-Transfer-Encoding: base64\r\n"
	"\r\n"
	"aGlkZGVu\r\n"
	"--b1--\r\n",

	"From: alice@example.org\r\n"
	"Subject: Re: hello\r\n"
	"Date: Tue, 05 Mar 2024 08:00:00 +0100\r\n"
	"\r\n"
	"Nothing\r\n",
};

static struct mime_msg *parsed[NMSG];
static int loads;

static const struct mime_msg *load(void *arg)
{
	size_t i = (size_t)(uintptr_t)arg;
	loads++;
	if (!texts[i])
		return NULL;
	if (!parsed[i])
		parsed[i] = mime_parse(texts[i], strlen(texts[i]));
	return parsed[i];
}

/* 2024-03-01 00:00:00 UTC */
#define MAR1 INT64_C(1709251200)
#define DAY 86400

static struct search_msg msgs[NMSG] = {
	{ 1, 10, SEARCH_SEEN, false, "$Junk Work", 5, 100, MAR1 + 10 * 3600, load, (void *)0 },
	{ 2, 20, SEARCH_SEEN | SEARCH_ANSWERED | SEARCH_FLAGGED, true, NULL, 10, 2000, MAR1 + DAY,
	  load, (void *)1 },
	{ 3, 30, SEARCH_DELETED | SEARCH_DRAFT, true, "work", 15, 500, MAR1 + 3 * DAY - 1, load,
	  (void *)2 },
	{ 4, 40, SEARCH_SEEN | SEARCH_DELETED, false, "", 20, 50, MAR1 - DAY - DAY / 2, load,
	  (void *)3 },
	{ 5, 50, 0, false, " Work  $Label1 ", 25, 1000, MAR1 + 4 * DAY, load, (void *)4 },
};

static int teardown(void **state)
{
	(void)state;
	for (size_t i = 0; i < NMSG; i++)
		mime_free(&parsed[i]);
	return 0;
}

/* Parse "a SEARCH <keys>" with the command parser (literals accepted). */
static struct imap_parser *parse_cmd(const char *keys, const struct imap_cmd **cmd_r)
{
	struct imap_parser *p = imap_parser_new(8192, 8192, 1000);
	char *wire = xasprintf("a SEARCH %s\r\n", keys);
	size_t len = strlen(wire), off = 0, c;
	for (;;) {
		enum imap_parse_status st = imap_parser_feed(p, wire + off, len - off, &c);
		off += c;
		if (st == IMAP_PARSE_LITERAL) {
			imap_parser_literal_continue(p);
			continue;
		}
		assert_int_equal(st, IMAP_PARSE_DONE);
		break;
	}
	assert_int_equal(off, len);
	free(wire);
	*cmd_r = imap_parser_cmd(p);
	return p;
}

static struct search_prog *compile(const char *keys, bool *bad_r, char **error_r)
{
	const struct imap_cmd *cmd;
	struct imap_parser *p = parse_cmd(keys, &cmd);
	struct search_prog *prog = (struct search_prog *)1;
	int r = search_parse(cmd->args, cmd->nargs, NMSG, 50, &prog, bad_r, error_r);
	imap_parser_free(&p);
	if (r < 0) {
		assert_null(prog);
		assert_non_null(*error_r);
		return NULL;
	}
	assert_int_equal(r, 0);
	assert_non_null(prog);
	assert_null(*error_r);
	assert_false(*bad_r);
	return prog;
}

/* The sequence numbers matching keys, as "1 3 5". */
static void check(const char *keys, const char *expect)
{
	bool bad;
	char *error = NULL;
	struct search_prog *prog = compile(keys, &bad, &error);
	if (!prog)
		fail_msg("%s: %s", keys, error);
	char got[64] = "";
	size_t n = 0;
	for (size_t i = 0; i < NMSG; i++)
		if (search_match(prog, &msgs[i]))
			n += (size_t)snprintf(got + n, sizeof(got) - n, "%s%u", n ? " " : "",
					      msgs[i].seq);
	if (strcmp(got, expect) != 0)
		fail_msg("%s: got \"%s\" expected \"%s\"", keys, got, expect);
	search_free(&prog);
	assert_null(prog);
}

static void check_error(const char *keys, bool badcharset)
{
	bool bad = !badcharset;
	char *error = NULL;
	struct search_prog *prog = compile(keys, &bad, &error);
	if (prog)
		fail_msg("%s: parsed", keys);
	assert_int_equal(bad, badcharset);
	free(error);
}

static void test_flags(void **state)
{
	(void)state;
	check("ALL", "1 2 3 4 5");
	check("all", "1 2 3 4 5");
	check("SEEN", "1 2 4");
	check("UNSEEN", "3 5");
	check("ANSWERED", "2");
	check("UNANSWERED", "1 3 4 5");
	check("FLAGGED", "2");
	check("UNFLAGGED", "1 3 4 5");
	check("DELETED", "3 4");
	check("UNDELETED", "1 2 5");
	check("DRAFT", "3");
	check("UNDRAFT", "1 2 4 5");
	check("RECENT", "2 3");
	check("NEW", "3");
	check("OLD", "1 4 5");
	check("KEYWORD work", "1 3 5");
	check("KEYWORD $junk", "1");
	check("KEYWORD $Label", "");
	check("KEYWORD $Label1", "5");
	check("UNKEYWORD Work", "2 4");
	check("UNKEYWORD $Junk", "2 3 4 5");
}

static void test_sizes_modseq(void **state)
{
	(void)state;
	check("LARGER 500", "2 5");
	check("SMALLER 500", "1 4");
	check("LARGER 0", "1 2 3 4 5");
	check("SMALLER 0", "");
	check("LARGER 18446744073709551615", "");
	check("MODSEQ 15", "3 4 5");
	check("MODSEQ 0", "1 2 3 4 5");
	check("MODSEQ \"/flags/\\\\Seen\" all 20", "4 5");
	check("MODSEQ \"/flags/\\\\Seen\" priv 26", "");
	bool bad;
	char *error = NULL;
	struct search_prog *prog = compile("SEEN MODSEQ 1", &bad, &error);
	assert_true(search_uses_modseq(prog));
	search_free(&prog);
	prog = compile("OR SEEN (UID 1:* NOT MODSEQ 1)", &bad, &error);
	assert_true(search_uses_modseq(prog));
	search_free(&prog);
	prog = compile("SEEN UID 1:*", &bad, &error);
	assert_false(search_uses_modseq(prog));
	search_free(&prog);
}

static void test_dates(void **state)
{
	(void)state;
	/* INTERNALDATE, calendar dates in UTC */
	check("BEFORE 2-Mar-2024", "1 4");
	check("ON 2-Mar-2024", "2");
	check("SINCE 2-Mar-2024", "2 3 5");
	check("ON \"3-Mar-2024\"", "3");
	check("ON 03-mar-2024", "3");
	check("ON 28-Feb-2024", "4");
	check("ON 29-Feb-2024", "");
	check("SINCE 6-Mar-2024", "");
	check("BEFORE 1-Jan-1970", "");
	/* the Date: header, in UTC: message 1 was sent on 1 Mar at 23:30
	 * -0500, 2 Mar in UTC; 3 cannot be loaded, 4 has no Date: */
	check("SENTON 2-Mar-2024", "1 2");
	check("SENTON 1-Mar-2024", "");
	check("SENTBEFORE 2-Mar-2024", "");
	check("SENTBEFORE 5-Mar-2024", "1 2");
	check("SENTSINCE 2-Mar-2024", "1 2 5");
	check("SENTSINCE \"5-Mar-2024\"", "5");
	check("NOT SENTON 2-Mar-2024", "3 4 5");
}

static void test_text(void **state)
{
	(void)state;
	check("FROM alice", "1 5");
	check("FROM ALICE@EXAMPLE.ORG", "1 5");
	check("FROM \"Alice <alice\"", "1");
	check("TO bob", "1");
	check("CC carol", "2");
	check("BCC dave", "4");
	check("SUBJECT hello", "1 5");
	check("SUBJECT \"hello world\"", "1");
	check("CHARSET UTF-8 SUBJECT \"gr\xc3\xbc\xc3\x9f" "e\"", "2");
	check("SUBJECT {5}\r\nHELLO", "1 5");
	check("SUBJECT nothing", "");
	check("HEADER X-Spam \"\"", "4");
	check("HEADER x-spam YES", "4");
	check("HEADER X-Spam no", "");
	check("HEADER Subject \"\"", "1 2 5");
	check("HEADER Date \"\"", "1 2 5");
	check("BODY fox", "1");
	check("BODY FOX", "1");
	check("BODY \"caf\xc3\xa9\"", "2");
	check("BODY attachment", "4");
	check("BODY hidden", "");
	check("BODY \"\"", "1 2 4 5");
	check("BODY Subject", "");
	check("TEXT alice", "1 5");
	check("TEXT fox", "1");
	check("TEXT nothing", "5");
	check("TEXT x-spam", "4");
	check("TEXT meeting", "2");
	check("NOT TEXT fox", "2 3 4 5");
}

static void test_sets(void **state)
{
	(void)state;
	check("2:4", "2 3 4");
	check("*", "5");
	check("4:*", "4 5");
	check("1,3,5", "1 3 5");
	check("6:*", "5");
	check("7:9", "");
	check("UID 20:40", "2 3 4");
	check("UID *", "5");
	check("UID 45:*", "5");
	check("UID 60:*", "5");
	check("UID 1:15", "1");
	check("UID 11:19,41:49", "");
	check("UID 10,30 2:*", "3");
	check("uid 1:* NOT 2", "1 3 4 5");
}

static void test_logic(void **state)
{
	(void)state;
	check("NOT SEEN", "3 5");
	check("NOT NOT SEEN", "1 2 4");
	check("OR SEEN DRAFT", "1 2 3 4");
	check("OR (SEEN FLAGGED) DRAFT", "2 3");
	check("OR NOT SEEN OR FLAGGED KEYWORD $Label1", "2 3 5");
	check("(SEEN DELETED)", "4");
	check("((SEEN) (UNDELETED))", "1 2");
	check("SEEN UNDELETED LARGER 80", "1 2");
	check("NOT (SEEN DELETED)", "1 2 3 5");
	check("OR (OR 1 2) (OR 3 4)", "1 2 3 4");
	check("NOT OR SUBJECT hello FROM eve", "2 3");
	check("CHARSET us-ascii SEEN", "1 2 4");
	check("charset \"utf-8\" UNSEEN", "3 5");
	/* nesting within the parser's list depth */
	check("((((((((((((((SEEN))))))))))))))", "1 2 4");
	check("NOT NOT NOT NOT NOT NOT NOT NOT NOT NOT SEEN", "1 2 4");
}

static void test_errors(void **state)
{
	(void)state;
	check_error("CHARSET ISO-8859-1 ALL", true);
	check_error("CHARSET KOI8-R SUBJECT x", true);
	check_error("CHARSET", false);
	check_error("CHARSET NIL ALL", false);
	check_error("CHARSET UTF-8", false);
	check_error("FOO", false);
	check_error("SEEN FOO", false);
	check_error("\"SEEN\"", false);
	check_error("NIL", false);
	check_error("BEFORE", false);
	check_error("BEFORE 30-Feb-2024", false);
	check_error("BEFORE 2024-03-01", false);
	check_error("SENTON x", false);
	check_error("LARGER", false);
	check_error("LARGER x", false);
	check_error("LARGER -1", false);
	check_error("LARGER 18446744073709551616", false);
	check_error("SMALLER \"5\"", false);
	check_error("UID", false);
	check_error("UID x", false);
	check_error("UID 0", false);
	check_error("UID (1)", false);
	check_error("0", false);
	check_error("1:", false);
	check_error("1,,2", false);
	check_error("NOT", false);
	check_error("OR SEEN", false);
	check_error("OR", false);
	check_error("()", false);
	check_error("(SEEN FOO)", false);
	check_error("HEADER", false);
	check_error("HEADER Subject", false);
	check_error("HEADER \"\" x", false);
	check_error("SUBJECT", false);
	check_error("SUBJECT (x)", false);
	check_error("BODY", false);
	check_error("TEXT", false);
	check_error("KEYWORD", false);
	check_error("MODSEQ", false);
	check_error("MODSEQ x", false);
	check_error("MODSEQ 9223372036854775808", false);
	check_error("MODSEQ \"/flags/\\\\Seen\" bogus 20", false);
	check_error("MODSEQ \"/flags/\\\\Seen\" all", false);
	check_error("ALL CHARSET UTF-8", false);
	/* no keys at all */
	bool bad = true;
	char *error = NULL;
	struct search_prog *prog = (struct search_prog *)1;
	assert_int_equal(search_parse(NULL, 0, 5, 50, &prog, &bad, &error), -1);
	assert_null(prog);
	assert_false(bad);
	assert_non_null(error);
	free(error);
	/* a hostile chain of NOTs is bounded */
	struct buf b;
	buf_init(&b, 1 << 20);
	for (int i = 0; i < 500; i++)
		buf_puts(&b, "NOT ");
	buf_puts(&b, "SEEN");
	check_error(b.data, false);
	buf_free(&b);
}

static void test_needs_message(void **state)
{
	(void)state;
	static const struct {
		const char *keys;
		bool needs;
	} cases[] = {
		{ "SEEN UID 1:* LARGER 5 BEFORE 1-Jan-2025 MODSEQ 3 KEYWORD x 1:3", false },
		{ "OR SEEN SUBJECT x", true },
		{ "NOT SENTON 1-Jan-2024", true },
		{ "(BODY x)", true },
		{ "TEXT x", true },
		{ "HEADER X-A b", true },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		bool bad;
		char *error = NULL;
		struct search_prog *prog = compile(cases[i].keys, &bad, &error);
		assert_non_null(prog);
		assert_int_equal(search_needs_message(prog), cases[i].needs);
		search_free(&prog);
	}
	search_free(&(struct search_prog *){ NULL }); /* NULL is fine */
}

/* Count loads: the message is loaded only when a text key is reached,
 * cheap keys are evaluated first, and at most once per match. */
static int loads_for(const char *keys)
{
	bool bad;
	char *error = NULL;
	struct search_prog *prog = compile(keys, &bad, &error);
	assert_non_null(prog);
	loads = 0;
	for (size_t i = 0; i < NMSG; i++)
		search_match(prog, &msgs[i]);
	search_free(&prog);
	return loads;
}

static void test_lazy_load(void **state)
{
	(void)state;
	assert_int_equal(loads_for("ALL"), 0);
	assert_int_equal(loads_for("SEEN UID 1:* LARGER 1"), 0);
	assert_int_equal(loads_for("SEEN SUBJECT hello"), 3);
	assert_int_equal(loads_for("SUBJECT hello SEEN"), 3);
	assert_int_equal(loads_for("SUBJECT hello (DELETED)"), 2);
	assert_int_equal(loads_for("OR SUBJECT hello SEEN"), 2); /* 3 and 5 not seen */
	assert_int_equal(loads_for("FROM alice TEXT fox BODY fox SENTON 1-Mar-2024"), 5);
	assert_int_equal(loads_for("2 TEXT fox"), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_flags),
		cmocka_unit_test(test_sizes_modseq),
		cmocka_unit_test(test_dates),
		cmocka_unit_test(test_text),
		cmocka_unit_test(test_sets),
		cmocka_unit_test(test_logic),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_needs_message),
		cmocka_unit_test(test_lazy_load),
	};
	return cmocka_run_group_tests(tests, NULL, teardown);
}
