/*
 * test_parse.c - the rule file parser (rules/parse.c): SpamAssassin rule
 * lines as the stock rule set writes them, pattern delimiters and flags,
 * comments and continuations, scores, redefinition, include,
 * ifplugin/if/else/endif, skipped directives, diagnostics with their
 * lines, and junk input.  Every file is written to a mkdtemp directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rules/rules-private.h"

static char dir[64];

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(path);
}

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/test_parse.XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	return nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Write dir/name (subdirectories made); returns the path (malloc'd). */
static char *put_len(const char *name, const char *text, size_t len)
{
	char *path = xasprintf("%s/%s", dir, name);
	char *slash = strrchr(path, '/');
	*slash = '\0';
	assert_int_equal(mkdir_p(path, 0700), 0);
	*slash = '/';
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
	return path;
}

static char *put(const char *name, const char *text)
{
	return put_len(name, text, strlen(text));
}

/* Parse text as dir/name into defs (appending), a fresh report. */
static int parse_as(const char *name, const char *text, struct rule_defs *defs,
		    struct rules_report *rep)
{
	char *path = put(name, text);
	memset(rep, 0, sizeof(*rep));
	int r = rules_parse_file(path, defs, rep);
	free(path);
	return r;
}

static int parse(const char *text, struct rule_defs *defs, struct rules_report *rep)
{
	memset(defs, 0, sizeof(*defs));
	return parse_as("t.rules", text, defs, rep);
}

static const struct rule_def *find(const struct rule_defs *defs, const char *name)
{
	for (size_t i = 0; i < defs->n; i++)
		if (strcmp(defs->v[i].name, name) == 0)
			return &defs->v[i];
	return NULL;
}

static const struct rule_def *rule(const struct rule_defs *defs, const char *name)
{
	const struct rule_def *d = find(defs, name);
	if (!d || !d->defined)
		fail_msg("rule %s not defined", name);
	return d;
}

/* Count the diagnostics at line (0: any line) of that kind containing text. */
static size_t has(const struct rules_report *rep, unsigned line, bool error, const char *text)
{
	size_t n = 0;
	for (size_t i = 0; i < rep->n; i++)
		if ((!line || rep->v[i].line == line) && rep->v[i].error == error &&
		    strstr(rep->v[i].msg, text))
			n++;
	return n;
}

static void dump(const struct rules_report *rep)
{
	struct buf b;
	buf_init(&b, 1 << 20);
	rules_report_format(rep, &b);
	print_message("%s", b.data ? b.data : "");
	buf_free(&b);
}

static void done(struct rule_defs *defs, struct rules_report *rep)
{
	rule_defs_free(defs);
	rules_report_free(rep);
}

static void test_stock_style(void **state)
{
	(void)state;
	struct rule_defs defs;
	struct rules_report rep;
	int r = parse("# SpamAssassin rules file: header tests\n"
		      "require_version @@VERSION@@\n"
		      "header   SUBJ_FREE\tSubject =~ /\\bfree\\b/i\n"
		      "describe SUBJ_FREE\tSubject says it is free\n"
		      "header FROM_NO_USER\t\tFrom =~ /(?:^\\@|<\\@| \\@[^\\)<]*$|<>)/ [if-unset: unset@unset.unset]\n"
		      "header INVALID_DATE\tDate !~ /^\\s*(?:(?i:Mon|Tue),\\s)?\\s*\\d/ [if-unset: Wed, 31 Jul 2002 16:41:57 +0200]\n"
		      "header __HAS_SENDER\texists:Sender\n"
		      "header __FROM_ENDS_IN_NUMS\tFrom:addr =~ /\\D\\d{8,}\\@/i\n"
		      "header FROMSPACE\tFrom:raw =~ /^\\s?\\\"\\s/\n"
		      "header __FROM_NAME\tFrom:name =~ /^\\s*$/\n"
		      "header __ADDR_RAW\tReply-To:Addr:raw =~ /x/\n"
		      "header __MID\t\tMESSAGEID =~ /^<[0-9a-f]+\\@/\n"
		      "header __ALL_RAW\tALL:raw =~ /\\n\\n/\n"
		      "header __TOCC\t\tToCc =~ /undisclosed/i\n"
		      "header __ENVFROM\tEnvelopeFrom=~/\\@example\\.com$/\n"
		      "body     __CLICK\t/click\\s+here/i\n"
		      "rawbody  __SCRIPT\t/<script/i\n"
		      "uri      __URI_EX\tm{^https?://[^/]*\\.example/}i\n"
		      "uri  LIVEFILESTORE       m~livefilestore.com/~\n"
		      "full     __FULL\t/^X-Foo: bar/m\n"
		      "meta     CLICK_FREE\t(SUBJ_FREE && __CLICK) || __HAS_SENDER > 1\n"
		      "score CLICK_FREE 0.001 2.599 0.019 0.798\n"
		      "score SUBJ_FREE -1.5\n"
		      "tflags   __CLICK\tmultiple maxhits=3 publish\n"
		      "tflags   SUBJ_FREE\tnice noautolearn net learn userconf autolearn_force\n",
		      &defs, &rep);
	if (r != 0 || rep.n)
		dump(&rep);
	assert_int_equal(r, 0);
	assert_int_equal(rep.n, 0);
	const struct rule_def *d = rule(&defs, "SUBJ_FREE");
	assert_int_equal(d->type, RT_HEADER);
	assert_string_equal(d->header, "Subject");
	assert_int_equal(d->mod, HM_NONE);
	assert_false(d->negate || d->exists);
	assert_string_equal(d->pattern, "\\bfree\\b");
	assert_string_equal(d->flags, "i");
	assert_null(d->if_unset);
	assert_string_equal(d->describe, "Subject says it is free");
	assert_true(d->has_score && d->score == -1.5);
	assert_int_equal(d->tflags, RTF_NICE | RTF_NOAUTOLEARN | RTF_NET | RTF_LEARN | RTF_USERCONF);
	assert_int_equal(d->line, 3);
	assert_non_null(strstr(d->file, "/t.rules"));

	d = rule(&defs, "FROM_NO_USER");
	assert_string_equal(d->pattern, "(?:^\\@|<\\@| \\@[^\\)<]*$|<>)");
	assert_string_equal(d->flags, "");
	assert_string_equal(d->if_unset, "unset@unset.unset");
	d = rule(&defs, "INVALID_DATE");
	assert_true(d->negate);
	assert_string_equal(d->header, "Date");
	assert_string_equal(d->if_unset, "Wed, 31 Jul 2002 16:41:57 +0200");
	d = rule(&defs, "__HAS_SENDER");
	assert_true(d->exists);
	assert_string_equal(d->header, "Sender");
	assert_null(d->pattern);
	d = rule(&defs, "__FROM_ENDS_IN_NUMS");
	assert_true(strcmp(d->header, "From") == 0 && d->mod == HM_ADDR);
	d = rule(&defs, "FROMSPACE");
	assert_true(strcmp(d->header, "From") == 0 && d->mod == HM_RAW);
	assert_string_equal(d->pattern, "^\\s?\\\"\\s");
	assert_int_equal(rule(&defs, "__FROM_NAME")->mod, HM_NAME);
	d = rule(&defs, "__ADDR_RAW"); /* :addr:raw is :addr */
	assert_true(strcmp(d->header, "Reply-To") == 0 && d->mod == HM_ADDR);
	assert_string_equal(rule(&defs, "__MID")->header, "MESSAGEID");
	d = rule(&defs, "__ALL_RAW");
	assert_true(strcmp(d->header, "ALL") == 0 && d->mod == HM_RAW);
	assert_string_equal(rule(&defs, "__TOCC")->header, "ToCc");
	d = rule(&defs, "__ENVFROM");
	assert_string_equal(d->header, "EnvelopeFrom");
	assert_string_equal(d->pattern, "\\@example\\.com$");

	d = rule(&defs, "__CLICK");
	assert_int_equal(d->type, RT_BODY);
	assert_string_equal(d->pattern, "click\\s+here");
	assert_int_equal(d->tflags, RTF_MULTIPLE);
	assert_int_equal(d->maxhits, 3);
	assert_int_equal(rule(&defs, "__SCRIPT")->type, RT_RAWBODY);
	d = rule(&defs, "__URI_EX");
	assert_int_equal(d->type, RT_URI);
	assert_string_equal(d->pattern, "^https?://[^/]*\\.example/");
	assert_string_equal(d->flags, "i");
	assert_string_equal(rule(&defs, "LIVEFILESTORE")->pattern, "livefilestore.com/");
	d = rule(&defs, "__FULL");
	assert_true(d->type == RT_FULL && strcmp(d->flags, "m") == 0);
	d = rule(&defs, "CLICK_FREE");
	assert_int_equal(d->type, RT_META);
	assert_string_equal(d->expr, "(SUBJ_FREE && __CLICK) || __HAS_SENDER > 1");
	assert_true(d->has_score && d->score == 2.599); /* score set 1 */
	assert_int_equal(d->line, 21);
	done(&defs, &rep);
}

static void test_delimiters(void **state)
{
	(void)state;
	static const struct {
		const char *line, *pattern, *flags;
	} ok[] = {
		{ "body A /a\\/b/", "a\\/b", "" },
		{ "body A m{a{1,2}b}ism", "a{1,2}b", "ism" },
		{ "body A m{\\{}", "\\{", "" },
		{ "body A m!a/b!", "a/b", "" },
		{ "body A m#x#i", "x", "i" },
		{ "body A m|a\\|b|", "a\\|b", "" },
		{ "body A m(a(b)c)", "a(b)c", "" },
		{ "body A m[x[y]]", "x[y]", "" },
		{ "body A m<x>", "x", "" },
		{ "body A m,a\\,b,s", "a\\,b", "s" },
		{ "body A m;x;", "x", "" },
		{ "body A m%x%", "x", "" },
		{ "body A m'x'", "x", "" },
		{ "body A qr/x/x", "x", "x" },
		{ "body A /x\\\\/   # comment", "x\\\\", "" },
		{ "body A /\\d/gon", "\\d", "gon" },
		{ "body A /x#y/", "x#y", "" }, /* '#' not after a blank: not a comment */
	};
	for (size_t i = 0; i < ARRAY_SIZE(ok); i++) {
		struct rule_defs defs;
		struct rules_report rep;
		char *text = xasprintf("%s\n", ok[i].line);
		int r = parse(text, &defs, &rep);
		if (r || rep.n)
			dump(&rep);
		assert_int_equal(r, 0);
		const struct rule_def *d = rule(&defs, "A");
		assert_string_equal(d->pattern, ok[i].pattern);
		assert_string_equal(d->flags, ok[i].flags);
		free(text);
		done(&defs, &rep);
	}
	static const struct {
		const char *line, *msg;
	} bad[] = {
		{ "body A /abc", "body A: unterminated pattern" },
		{ "body A m{a{b}", "body A: unterminated pattern" },
		{ "body A /a\\/", "body A: unterminated pattern" },
		{ "body A /a/q", "body A: unknown flag 'q'" },
		{ "uri A /a/ie", "uri A: unknown flag 'e'" },
		{ "body A /a/i extra", "body A: unexpected text after the pattern" },
		{ "body A /a/ /b/", "body A: unexpected text after the pattern" },
		{ "body A //", "body A: empty pattern" },
		{ "body A abc", "body A: expected a pattern" },
		{ "body A m abc ", "body A: invalid pattern delimiter" },
		{ "body A mxabcx", "body A: invalid pattern delimiter" },
		{ "rawbody A", "rawbody A: missing pattern" },
		{ "body A /x #y/", "body A: unterminated pattern" }, /* a comment */
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		struct rule_defs defs;
		struct rules_report rep;
		char *text = xasprintf("\n%s\n", bad[i].line);
		int r = parse(text, &defs, &rep);
		if (has(&rep, 2, true, bad[i].msg) != 1) {
			print_message("line: %s\n", bad[i].line);
			dump(&rep);
		}
		assert_int_equal(r, -1);
		assert_int_equal(has(&rep, 2, true, bad[i].msg), 1);
		assert_int_equal(rep.errors, 1);
		assert_null(find(&defs, "A"));
		free(text);
		done(&defs, &rep);
	}
}

static void test_comments_continuations(void **state)
{
	(void)state;
	struct rule_defs defs;
	struct rules_report rep;
	int r = parse("# a comment\n"
		      "   # an indented comment\n"
		      "\n"
		      "  \t  \n"
		      "body A /a\\#b/\t# trailing comment\n"
		      "describe A Price \\#1 deal # really\n"
		      "body B /x#y/\r\n"
		      "meta C A &&\\\n"
		      "   B\n"
		      "body D \\\n"
		      "  \\\n"
		      "  /d/i\n"
		      "body E \\\n"
		      "  /unterminated\n"
		      "DESCRIBE B Upper-case directive\n"
		      "score E 1\n",
		      &defs, &rep);
	assert_int_equal(r, -1);
	assert_int_equal(rep.errors, 1);
	assert_int_equal(has(&rep, 13, true, "body E: unterminated pattern"), 1);
	assert_string_equal(rule(&defs, "A")->pattern, "a#b");
	assert_string_equal(rule(&defs, "A")->describe, "Price #1 deal");
	assert_int_equal(rule(&defs, "A")->line, 5);
	assert_string_equal(rule(&defs, "B")->pattern, "x#y");
	assert_string_equal(rule(&defs, "B")->describe, "Upper-case directive");
	assert_string_equal(rule(&defs, "C")->expr, "A &&   B");
	assert_int_equal(rule(&defs, "C")->line, 8);
	assert_string_equal(rule(&defs, "D")->pattern, "d");
	assert_int_equal(rule(&defs, "D")->line, 10);
	assert_int_equal(rule(&defs, "D")->type, RT_BODY);
	assert_false(find(&defs, "E")->defined); /* score alone is not a rule */
	done(&defs, &rep);
}

static void test_scores(void **state)
{
	(void)state;
	struct rule_defs defs;
	struct rules_report rep;
	int r = parse("score LATER 2.5\n"
		      "body LATER /x/\n"
		      "body PLAIN /x/\n"
		      "body __SUB /x/\n"
		      "body T_TESTING /x/\n"
		      "meta NEG PLAIN\n"
		      "score NEG -0.5\n"
		      "body REL /x/\n"
		      "score REL 1\n"
		      "score REL (2)\n"
		      "body REL4 /x/\n"
		      "score REL4 (0) (3) (0) (3)\n"
		      "score NEVER_DEFINED 3\n"
		      "score ZERO 0\n"
		      "body ZERO /x/\n"
		      "score BAD1 1 2\n"
		      "score BAD2 abc\n"
		      "score BAD3 1 2 3 4 5\n"
		      "score BAD4\n"
		      "score BAD5 .5\n"
		      "score BAD6 1e3\n"
		      "score 9BAD 1\n",
		      &defs, &rep);
	assert_int_equal(r, -1);
	assert_int_equal(rep.errors, 7);
	assert_int_equal(has(&rep, 16, true, "score BAD1: expected 1 or 4 scores"), 1);
	assert_int_equal(has(&rep, 17, true, "score BAD2: invalid score 'abc'"), 1);
	assert_int_equal(has(&rep, 18, true, "score BAD3: expected 1 or 4 scores"), 1);
	assert_int_equal(has(&rep, 19, true, "score BAD4: expected 1 or 4 scores"), 1);
	assert_int_equal(has(&rep, 20, true, "score BAD5: invalid score '.5'"), 1);
	assert_int_equal(has(&rep, 21, true, "invalid score '1e3'"), 1);
	assert_int_equal(has(&rep, 22, true, "score: invalid rule name '9BAD'"), 1);
	const struct rule_def *d = rule(&defs, "LATER");
	assert_true(d->has_score && d->score == 2.5);
	d = rule(&defs, "PLAIN");
	assert_true(!d->has_score && d->score == 1.0);
	d = rule(&defs, "__SUB");
	assert_true(!d->has_score && d->score == 0);
	d = rule(&defs, "T_TESTING");
	assert_true(!d->has_score && d->score == 0.01);
	assert_true(rule(&defs, "NEG")->score == -0.5);
	assert_true(rule(&defs, "REL")->score == 3);
	assert_true(rule(&defs, "REL4")->score == 3);
	d = find(&defs, "NEVER_DEFINED");
	assert_true(d && !d->defined && d->score == 3);
	d = rule(&defs, "ZERO");
	assert_true(d->has_score && d->score == 0);
	for (const char *b = "BAD1\0BAD2\0BAD3\0BAD4\0BAD5\0BAD6\0"; *b; b += strlen(b) + 1)
		assert_true(!find(&defs, b) || !find(&defs, b)->has_score);

	/* A second file adds to the same defs: its scores reach earlier rules. */
	rules_report_free(&rep);
	r = parse_as("u.rules", "score PLAIN 4\nbody NEWER /y/\n", &defs, &rep);
	assert_int_equal(r, 0);
	assert_true(rule(&defs, "PLAIN")->has_score && rule(&defs, "PLAIN")->score == 4);
	assert_true(rule(&defs, "NEWER")->score == 1.0);
	done(&defs, &rep);
}

static void test_redefine_and_names(void **state)
{
	(void)state;
	struct rule_defs defs;
	struct rules_report rep;
	char longname[128];
	memset(longname, 'A', 101);
	longname[101] = '\0';
	char *text = xasprintf("body X /a/i\n"
			       "score X 3\n"
			       "describe X first\n"
			       "tflags X multiple\n"
			       "header X Subject:raw !~ /b/ [if-unset: none]\n"
			       "describe X second\n"
			       "meta Y X\n"
			       "body Y /y/\n"
			       "body 1BAD /x/\n"
			       "body BAD-NAME /x/\n"
			       "body %s /x/\n"
			       "body\n"
			       "describe Z\n"
			       "tflags Z maxhits=0\n"
			       "tflags Z maxhits=x\n"
			       "tflags W\n"
			       "tflags V maxhits=7 unknown_flag\n",
			       longname);
	int r = parse(text, &defs, &rep);
	free(text);
	assert_int_equal(r, -1);
	const struct rule_def *d = rule(&defs, "X");
	assert_int_equal(d->type, RT_HEADER);
	assert_true(strcmp(d->header, "Subject") == 0 && d->mod == HM_RAW && d->negate);
	assert_string_equal(d->pattern, "b");
	assert_string_equal(d->flags, "");
	assert_string_equal(d->if_unset, "none");
	assert_true(d->has_score && d->score == 3);
	assert_string_equal(d->describe, "second");
	assert_int_equal(d->tflags, RTF_MULTIPLE);
	assert_int_equal(d->line, 5);
	d = rule(&defs, "Y");
	assert_true(d->type == RT_BODY && d->expr == NULL && strcmp(d->pattern, "y") == 0);
	assert_int_equal(has(&rep, 9, true, "body: invalid rule name '1BAD'"), 1);
	assert_int_equal(has(&rep, 10, true, "body: invalid rule name 'BAD-NAME'"), 1);
	assert_int_equal(has(&rep, 11, true, "body: invalid rule name 'AAAA"), 1);
	assert_int_equal(has(&rep, 12, true, "body: missing rule name"), 1);
	assert_int_equal(has(&rep, 13, true, "describe Z: missing text"), 1);
	assert_int_equal(has(&rep, 14, true, "tflags Z: invalid maxhits '0'"), 1);
	assert_int_equal(has(&rep, 15, true, "tflags Z: invalid maxhits 'x'"), 1);
	assert_int_equal(rep.errors, 7);
	assert_int_equal(find(&defs, "W")->tflags, 0);
	assert_int_equal(find(&defs, "V")->tflags, RTF_MULTIPLE);
	assert_int_equal(find(&defs, "V")->maxhits, 7);
	assert_int_equal(defs.n, 4); /* X Y W V */
	done(&defs, &rep);
}

static void test_header_forms(void **state)
{
	(void)state;
	struct rule_defs defs;
	struct rules_report rep;
	int r = parse("header H1 Subject /x/\n"
		      "header H2 Subject:foo =~ /x/\n"
		      "header H3 From:host =~ /x/\n"
		      "header H4 eval:check_for_faraway_charset()\n"
		      "body   H5 eval:check_stock_info('4')\n"
		      "header H6 exists:\n"
		      "header H7 Subject =~ /x/ [if-unset: none\n"
		      "header H8 exists:List-Id:\n"
		      "header H9\n"
		      "header H10 =~ /x/\n"
		      "header H11 Subject =~\n"
		      "header H12 Subject =~ /x/ junk\n"
		      "header H13 X-Spam-Relays-External =~ /^$/\n"
		      "header H14 rbleval:check_rbl('x', 'y.')\n"
		      "uri    H15 eval:check_uri()\n"
		      "header H16 exists:Bad Name\n"
		      "meta   H17\n"
		      "header H18 Subject:: =~ /x/\n"
		      "header H19 Subject: =~ /x/\n",
		      &defs, &rep);
	assert_int_equal(r, -1);
	assert_int_equal(has(&rep, 1, true, "header H1: expected =~ or !~"), 1);
	assert_int_equal(has(&rep, 2, true, "header H2: unknown header modifier ':foo'"), 1);
	assert_int_equal(has(&rep, 3, false, "header H3: header modifier ':host' is not supported"), 1);
	assert_int_equal(has(&rep, 4, false, "header H4: eval: rules are not supported"), 1);
	assert_int_equal(has(&rep, 5, false, "body H5: eval: rules are not supported"), 1);
	assert_int_equal(has(&rep, 6, true, "header H6: invalid header name '' after exists:"), 1);
	assert_int_equal(has(&rep, 7, true, "header H7: [if-unset: without its closing ]"), 1);
	assert_string_equal(rule(&defs, "H8")->header, "List-Id");
	assert_int_equal(has(&rep, 9, true, "header H9: missing header name"), 1);
	assert_int_equal(has(&rep, 10, true, "header H10: missing header name"), 1);
	assert_int_equal(has(&rep, 11, true, "header H11: missing pattern"), 1);
	assert_int_equal(has(&rep, 12, true, "header H12: unexpected text after the pattern: 'junk'"), 1);
	assert_string_equal(rule(&defs, "H13")->header, "X-Spam-Relays-External");
	assert_int_equal(has(&rep, 14, false, "header H14: eval: rules are not supported"), 1);
	assert_int_equal(has(&rep, 15, false, "uri H15: eval: rules are not supported"), 1);
	assert_int_equal(has(&rep, 16, true, "header H16: invalid header name"), 1);
	assert_int_equal(has(&rep, 17, true, "meta H17: missing expression"), 1);
	assert_int_equal(has(&rep, 18, true, "header H18: unknown header modifier"), 1);
	assert_string_equal(rule(&defs, "H19")->header, "Subject");
	assert_int_equal(rep.errors, 11);
	assert_int_equal(rep.warnings, 5);
	for (const char *n = "H1\0H2\0H3\0H4\0H5\0H6\0H7\0H12\0H14\0H15\0"; *n; n += strlen(n) + 1)
		assert_null(find(&defs, n));
	done(&defs, &rep);
}

static void test_include(void **state)
{
	(void)state;
	struct rule_defs defs = { 0 };
	struct rules_report rep;
	char *p = put("inc/sub/b.rules", "body FROM_B /b/\nscore FROM_MAIN 2\n");
	free(p);
	p = put("inc/sub/a.rules", "body FROM_A /a/\ninclude b.rules\n");
	free(p);
	int r = parse_as("inc/main.rules",
			 "body FROM_MAIN /m/\n"
			 "include sub/a.rules\n"
			 "include missing.rules\n"
			 "include\n"
			 "include sub\n"
			 "body AFTER /z/\n",
			 &defs, &rep);
	assert_int_equal(r, -1);
	assert_int_equal(rep.errors, 3);
	assert_int_equal(has(&rep, 3, true, "include "), 1);
	assert_int_equal(has(&rep, 3, true, "missing.rules: No such file or directory"), 1);
	assert_int_equal(has(&rep, 4, true, "include: missing file name"), 1);
	assert_int_equal(has(&rep, 5, true, "not a regular file"), 1);
	assert_non_null(strstr(rule(&defs, "FROM_A")->file, "inc/sub/a.rules"));
	assert_non_null(strstr(rule(&defs, "FROM_B")->file, "inc/sub/b.rules"));
	assert_true(rule(&defs, "FROM_MAIN")->score == 2);
	rule(&defs, "AFTER");
	done(&defs, &rep);

	/* A loop: x includes y includes x. */
	free(put("loop/y.rules", "body IN_Y /y/\ninclude x.rules\n"));
	memset(&defs, 0, sizeof(defs));
	r = parse_as("loop/x.rules", "body IN_X /x/\ninclude y.rules\n", &defs, &rep);
	assert_int_equal(r, -1);
	assert_int_equal(rep.errors, 1);
	assert_int_equal(has(&rep, 2, true, "include loop"), 1);
	assert_non_null(strstr(rep.v[0].file, "loop/y.rules"));
	rule(&defs, "IN_X");
	rule(&defs, "IN_Y");
	done(&defs, &rep);

	/* Depth: d0 includes d1 ... includes d12: d11 is too deep. */
	for (int i = 1; i <= 12; i++) {
		char name[32], text[64];
		snprintf(name, sizeof(name), "deep/d%d.rules", i);
		snprintf(text, sizeof(text), "body D%d /x/\ninclude d%d.rules\n", i, i + 1);
		free(put(name, text));
	}
	memset(&defs, 0, sizeof(defs));
	r = parse_as("deep/d0.rules", "include d1.rules\n", &defs, &rep);
	assert_int_equal(r, -1);
	assert_int_equal(has(&rep, 2, true, "nested too deep"), 1);
	assert_int_equal(rep.errors, 1);
	rule(&defs, "D10");
	assert_null(find(&defs, "D11"));
	done(&defs, &rep);

	/* The top file missing. */
	memset(&defs, 0, sizeof(defs));
	memset(&rep, 0, sizeof(rep));
	char *missing = xasprintf("%s/nope.rules", dir);
	assert_int_equal(rules_parse_file(missing, &defs, &rep), -1);
	assert_int_equal(rep.errors, 1);
	assert_int_equal(rep.v[0].line, 0);
	assert_non_null(strstr(rep.v[0].msg, "No such file"));
	free(missing);
	done(&defs, &rep);
}

static void test_conditionals(void **state)
{
	(void)state;
	struct rule_defs defs;
	struct rules_report rep;
	int r = parse("ifplugin Mail::SpamAssassin::Plugin::FreeMail\n"           /* 1 */
		      "header FREEMAIL_FROM eval:check_freemail_from()\n"
		      "body IN_PLUGIN /x/\n"
		      "else\n"
		      "body NOT_PLUGIN /y/\n"                                     /* 5 */
		      "endif\n"
		      "if (version >= 3.004000)\n"
		      "  body V_NEW /a/\n"
		      "else\n"
		      "  body V_OLD /b/\n"                                        /* 10 */
		      "endif\n"
		      "if version > 4.000001\n"
		      "body TOO_NEW /c/\n"
		      "endif\n"
		      "if can(Mail::SpamAssassin::Conf::feature_bug6558_free)\n"  /* 15 */
		      "  meta CAN_META (1)\n"
		      "endif\n"
		      "if !plugin(Mail::SpamAssassin::Plugin::MIMEHeader)\n"
		      "  body NOT_MIME /e/\n"
		      "endif\n"                                                   /* 20 */
		      "if !(can(Mail::SpamAssassin::Foo::bar)) && (version >= 4 || 0)\n"
		      "  if has(Mail::SpamAssassin::Plugin::Foo::bar)\n"
		      "  body NESTED_FALSE /f/\n"
		      "  else\n"
		      "  body NESTED_ELSE /g/\n"                                  /* 25 */
		      "  endif\n"
		      "endif\n"
		      "ifplugin Mail::SpamAssassin::Plugin::AskDNS # {\n"
		      "  if (version >= 1)\n"
		      "    ifplugin Other::Plugin\n"                              /* 30 */
		      "    body DEEP /h/\n"
		      "    endif\n"
		      "  else\n"
		      "    body DEEP_ELSE /i/\n"
		      "  endif\n"                                                 /* 35 */
		      "endif\n"
		      "if version >=\n"
		      "body BADEXPR /j/\n"
		      "else\n"
		      "body BADEXPR_ELSE /k/\n"                                   /* 40 */
		      "endif\n"
		      "if perl_version >= 5.010000 && local_tests_only == 0 && !!1\n"
		      "body PERL /l/\n"
		      "endif\n"
		      "if 2 * 3 - 1 == 5 && 1 < 2 && !(1 > 2) && 4 / 2 == 2 && 1 != 2 && -1 <= 0\n" /* 45 */
		      "body ARITH /m/\n"
		      "endif\n"
		      "if !((version >= 3.004000))\n"
		      "body NOT_NOT /n/\n"
		      "endif\n"                                                   /* 50 */
		      "if version\n"
		      "body TRUTHY /o/\n"
		      "endif\n"
		      "if plugin (Mail::SpamAssassin::Plugin::DKIM)\n"
		      "body PLUGIN_SPACE /p/\n"                                   /* 55 */
		      "endif\n"
		      "if 1 / 0\n"
		      "body DIV0 /q/\n"
		      "endif\n"
		      "if version >= 4 ; system('x')\n"                           /* 60 */
		      "body INJECT /r/\n"
		      "endif\n",
		      &defs, &rep);
	if (r || rep.errors)
		dump(&rep);
	assert_int_equal(r, 0);
	/* can(feature_bug6558_free): a feature we have. */
	for (const char *n = "NOT_PLUGIN\0V_NEW\0NOT_MIME\0NESTED_ELSE\0PERL\0ARITH\0TRUTHY\0CAN_META\0"; *n;
	     n += strlen(n) + 1)
		rule(&defs, n);
	for (const char *n = "FREEMAIL_FROM\0IN_PLUGIN\0V_OLD\0TOO_NEW\0NESTED_FALSE\0DEEP\0"
			     "DEEP_ELSE\0BADEXPR\0BADEXPR_ELSE\0NOT_NOT\0PLUGIN_SPACE\0DIV0\0INJECT\0";
	     *n; n += strlen(n) + 1)
		if (find(&defs, n))
			fail_msg("%s should have been skipped", n);
	assert_int_equal(has(&rep, 1, false,
			     "plugin Mail::SpamAssassin::Plugin::FreeMail not available: 2 lines skipped"),
			 1);
	assert_int_equal(has(&rep, 28, false,
			     "plugin Mail::SpamAssassin::Plugin::AskDNS not available: 7 lines skipped"),
			 1);
	assert_int_equal(has(&rep, 0, false, "Other::Plugin"), 0);
	assert_int_equal(has(&rep, 0, false, "eval:"), 0); /* inside the skipped block */
	assert_int_equal(has(&rep, 37, false, "if: cannot evaluate 'version >='"), 1);
	assert_int_equal(has(&rep, 57, false, "if: cannot evaluate"), 1);
	assert_int_equal(has(&rep, 60, false, "if: cannot evaluate"), 1);
	assert_int_equal(rep.warnings, 5);
	done(&defs, &rep);

	static const struct {
		const char *text, *msg;
		unsigned line;
	} bad[] = {
		{ "body A /a/\nendif\n", "endif without if", 2 },
		{ "else\n", "else without if", 1 },
		{ "if version > 1\nbody X /x/\n", "if without endif", 1 },
		{ "ifplugin Foo\nbody X /x/\n", "ifplugin without endif", 1 },
		{ "if 1\nelse\nelse\nendif\n", "else: a second else for the if of line 1", 3 },
		{ "if 1\nendif foo\nendif\n", "endif: must stand alone", 2 },
		{ "if\nendif\n", "if: missing condition", 1 },
		{ "ifplugin\nendif\n", "ifplugin: missing condition", 1 },
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		assert_int_equal(parse(bad[i].text, &defs, &rep), -1);
		if (has(&rep, bad[i].line, true, bad[i].msg) != 1)
			dump(&rep);
		assert_int_equal(has(&rep, bad[i].line, true, bad[i].msg), 1);
		assert_int_equal(rep.errors, 1);
		done(&defs, &rep);
	}
	/* An endif does not close a block of the including file. */
	free(put("cond/inner.rules", "endif\n"));
	memset(&defs, 0, sizeof(defs));
	assert_int_equal(parse_as("cond/outer.rules", "if 1\ninclude inner.rules\nendif\n", &defs, &rep),
			 -1);
	assert_int_equal(has(&rep, 1, true, "endif without if"), 1);
	assert_int_equal(rep.errors, 1);
	done(&defs, &rep);
}

static void test_skipped_directives(void **state)
{
	(void)state;
	struct rule_defs defs;
	struct rules_report rep;
	int r = parse("required_score 5\n"
		      "report _SUMMARY_\n"
		      "report _TESTS_\n"
		      "add_header all Status _YESNO_\n"
		      "loadplugin Mail::SpamAssassin::Plugin::Foo\n"
		      "whitelist_from *@example.com\n"
		      "lang de describe SUBJ_FREE Betreff sagt gratis\n"
		      "lang fr describe SUBJ_FREE Sujet\n"
		      "use_bayes 0\n"
		      "bayes-auto-learn 0\n"
		      "uridnsbl URIBL_X multi.example. A\n"
		      "some_new_directive\n"
		      "body SUBJ_FREE /free/\n"
		      "foo=bar baz\n"
		      "\xff\xfe junk\n",
		      &defs, &rep);
	assert_int_equal(r, -1);
	static const struct {
		unsigned line;
		const char *msg;
	} w[] = {
		{ 1, "directive 'required_score' is not supported: skipped" },
		{ 2, "directive 'report' is not supported: skipped (2 lines in this file)" },
		{ 4, "'add_header'" },
		{ 5, "'loadplugin'" },
		{ 6, "'whitelist_from'" },
		{ 7, "lang: localized lines are not used: skipped (2 lines in this file)" },
		{ 9, "'use_bayes'" },
		{ 10, "'bayes_auto_learn'" },
		{ 11, "'uridnsbl'" },
		{ 12, "'some_new_directive'" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(w); i++)
		assert_int_equal(has(&rep, w[i].line, false, w[i].msg), 1);
	assert_int_equal(rep.warnings, ARRAY_SIZE(w));
	assert_int_equal(has(&rep, 14, true, "invalid directive 'foo=bar'"), 1);
	assert_int_equal(has(&rep, 15, true, "invalid directive '\\xff\\xfe'"), 1);
	assert_int_equal(rep.errors, 2);
	assert_null(rule(&defs, "SUBJ_FREE")->describe);
	done(&defs, &rep);

	/* require_version: another version skips the rest of the file. */
	r = parse("require_version 4.000001\nbody A /a/\nrequire_version 3.004006\nbody B /b/\n"
		  "if 1\n",
		  &defs, &rep);
	assert_int_equal(r, 0);
	assert_int_equal(has(&rep, 3, false, "require_version 3.004006"), 1);
	assert_int_equal(rep.n, 1);
	rule(&defs, "A");
	assert_null(find(&defs, "B"));
	done(&defs, &rep);
}

static uint64_t rng = 88172645463325252ULL;
static unsigned next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (unsigned)rng;
}

static void test_junk(void **state)
{
	(void)state;
	struct rule_defs defs;
	struct rules_report rep;
	/* Random bytes, NULs included: errors, no crash, capped reports. */
	size_t len = 1 << 20;
	char *junk = xmalloc(len);
	for (int round = 0; round < 4; round++) {
		static const char alphabet[] = "body header meta /{}()\\#m!=~:[if-unset: ]\n \tA_1if endif else ifplugin include score tflags maxhits= ";
		for (size_t i = 0; i < len; i++)
			junk[i] = round == 0 ? (char)next_rand()
				  : round == 1 ? alphabet[next_rand() % (sizeof(alphabet) - 1)]
				  : round == 2 ? "\\\n"[next_rand() % 2] : "x("[next_rand() % 2];
		char *p = put_len("junk.rules", junk, len);
		memset(&defs, 0, sizeof(defs));
		memset(&rep, 0, sizeof(rep));
		rules_parse_file(p, &defs, &rep);
		free(p);
		assert_true(rep.errors <= 101 && rep.warnings <= 501);
		done(&defs, &rep);
	}
	free(junk);

	/* A line over 64 KiB, also when made of continuations. */
	struct buf b;
	buf_init(&b, 1 << 24);
	buf_puts(&b, "body OK1 /x/\nbody LONG /");
	for (int i = 0; i < 70000; i++)
		buf_putc(&b, 'a');
	buf_puts(&b, "/\nbody CONT /");
	for (int i = 0; i < 8000; i++)
		buf_puts(&b, "aaaaaaaaa\\\n");
	buf_puts(&b, "/\nbody OK2 /y/\nbody NUL /a");
	buf_putc(&b, '\0');
	buf_puts(&b, "b/\nbody OK3 /z/");
	char *p = put_len("long.rules", b.data, b.len);
	memset(&defs, 0, sizeof(defs));
	memset(&rep, 0, sizeof(rep));
	assert_int_equal(rules_parse_file(p, &defs, &rep), -1);
	free(p);
	assert_int_equal(has(&rep, 2, true, "line longer than 65536 bytes"), 1);
	assert_int_equal(has(&rep, 3, true, "line longer than 65536 bytes"), 1);
	assert_int_equal(has(&rep, 8005, true, "NUL byte in line"), 1);
	assert_int_equal(rep.errors, 3);
	rule(&defs, "OK1");
	rule(&defs, "OK2");
	rule(&defs, "OK3"); /* last line without a line end */
	assert_int_equal(defs.n, 3);
	done(&defs, &rep);
	buf_free(&b);

	/* Deep nesting of if blocks and of parentheses. */
	buf_init(&b, 1 << 20);
	for (int i = 0; i < 70; i++)
		buf_puts(&b, "if 1\n");
	p = put("nest.rules", b.data);
	memset(&defs, 0, sizeof(defs));
	memset(&rep, 0, sizeof(rep));
	assert_int_equal(rules_parse_file(p, &defs, &rep), -1);
	free(p);
	assert_int_equal(has(&rep, 65, true, "if: nested deeper than 64"), 1);
	assert_int_equal(rep.errors, 1);
	done(&defs, &rep);
	buf_reset(&b);
	buf_puts(&b, "if ");
	for (int i = 0; i < 50000; i++)
		buf_putc(&b, '(');
	buf_puts(&b, "\nbody X /x/\nendif\nbody Y /y/\n");
	memset(&defs, 0, sizeof(defs));
	assert_int_equal(parse_as("paren.rules", b.data, &defs, &rep), 0);
	assert_int_equal(has(&rep, 1, false, "if: cannot evaluate"), 1);
	assert_null(find(&defs, "X"));
	rule(&defs, "Y");
	done(&defs, &rep);
	buf_free(&b);

	/* Many distinct unknown directives: warnings capped per file. */
	buf_init(&b, 1 << 24);
	for (int i = 0; i < 20000; i++)
		buf_printf(&b, "directive_%d x\n", i);
	p = put("many.rules", b.data);
	memset(&defs, 0, sizeof(defs));
	memset(&rep, 0, sizeof(rep));
	assert_int_equal(rules_parse_file(p, &defs, &rep), 0);
	free(p);
	assert_int_equal(rep.n, 501);
	assert_int_equal(has(&rep, 0, false, "19500 more warnings not shown"), 1);
	done(&defs, &rep);
	buf_free(&b);
}

static void test_report_format(void **state)
{
	(void)state;
	struct rule_defs defs;
	struct rules_report rep;
	assert_int_equal(parse("\n\nheader BAD Subject /x/\n", &defs, &rep), -1);
	struct buf b;
	buf_init(&b, 1 << 16);
	rules_report_format(&rep, &b);
	char *want = xasprintf("%s/t.rules:3: error: header BAD: expected =~ or !~ after the header name\n",
			       dir);
	assert_string_equal(b.data, want);
	free(want);
	buf_free(&b);
	done(&defs, &rep);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stock_style),
		cmocka_unit_test(test_delimiters),
		cmocka_unit_test(test_comments_continuations),
		cmocka_unit_test(test_scores),
		cmocka_unit_test(test_redefine_and_names),
		cmocka_unit_test(test_header_forms),
		cmocka_unit_test(test_include),
		cmocka_unit_test(test_conditionals),
		cmocka_unit_test(test_skipped_directives),
		cmocka_unit_test(test_junk),
		cmocka_unit_test(test_report_format),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
