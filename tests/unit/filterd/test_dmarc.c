/*
 * test_dmarc.c - DMARC without DNS: the From domain scanner, organizational
 * domains and alignment against a small public suffix list of our own
 * (written into a mkdtemp directory), record selection, and the
 * p/sp/pct/alignment decision for one record.
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

#include "filterd/filterd.h"

static char tmpdir[64];
static char psl_path[128], empty_path[128];

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

static int group_setup(void **state)
{
	(void)state;
	strcpy(tmpdir, "/tmp/test_dmarc.XXXXXX");
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	snprintf(psl_path, sizeof(psl_path), "%s/psl.dat", tmpdir);
	snprintf(empty_path, sizeof(empty_path), "%s/empty.dat", tmpdir);
	write_file(psl_path, "// a small public suffix list\n\ncom\norg\nuk\nco.uk\ntest\n");
	write_file(empty_path, "// only comments\n\n");
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	unlink(psl_path);
	unlink(empty_path);
	rmdir(tmpdir);
	return 0;
}

/* Runs first: the failures, then the one real load. */
static void test_init(void **state)
{
	(void)state;
	char *err = NULL;
	char missing[160];
	snprintf(missing, sizeof(missing), "%s/missing.dat", tmpdir);
	assert_int_equal(dmarc_init(missing, &err), -1);
	assert_non_null(strstr(err, "cannot read"));
	free(err);
	assert_int_equal(dmarc_init(empty_path, &err), -1);
	assert_non_null(strstr(err, "no rules"));
	free(err);
	assert_int_equal(dmarc_init(NULL, &err), -1);
	free(err);
	assert_int_equal(dmarc_init(psl_path, &err), 0);
	assert_null(err);
	assert_int_equal(dmarc_init(psl_path, &err), 0); /* once; later calls are no-ops */
}

static void test_from_valid(void **state)
{
	(void)state;
	static const struct {
		const char *value, *domain;
	} cases[] = {
		{ "user@example.com", "example.com" },
		{ "User <user@Example.COM>", "example.com" },
		{ "\"Doe, John\" <john@example.com>", "example.com" },
		{ "John Doe <john@example.com> (comment (nested) here)", "example.com" },
		{ "(x@evil.test <x@evil.test>) a@example.com", "example.com" },
		{ "\"a@evil.test <b@evil.test>\"@example.com", "example.com" },
		{ "\"evil@evil.test\" <a@example.com>", "example.com" },
		{ "\"q\\\"uote>\" <a@example.com>", "example.com" },
		{ "=?UTF-8?B?w4Rsw6Rm?= <a@example.com>", "example.com" },
		{ "J\xc3\xb6rg <a@example.com>", "example.com" },
		{ "Team: a@example.com, B <b@EXAMPLE.com>;", "example.com" },
		{ "undisclosed:;, a@example.com", "example.com" },
		{ "a@example.com, b@example.com", "example.com" },
		{ "a@example.com,,", "example.com" },
		{ "a@example.com.", "example.com" },
		{ "Folded\n\t<a@example.com>\n ", "example.com" },
		{ "Folded\r\n <a@example.com>", "example.com" },
		{ "<@route.test,@other.test:a@example.com>", "example.com" },
		{ "a@ example . com", "example.com" },
		{ "a (c) @ (c) example.com (c)", "example.com" },
		{ "a@sub.example.co.uk", "sub.example.co.uk" },
		{ "a@xn--bcher-kva.example", "xn--bcher-kva.example" },
		{ "a.b.c@mail_1.example-2.com", "mail_1.example-2.com" },
		{ "root@localhost", "localhost" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		const char *v[] = { cases[i].value };
		char out[256] = "junk";
		const char *why = NULL;
		int ret = dmarc_from_domain(v, 1, out, sizeof(out), &why);
		if (ret != 0)
			fail_msg("case %zu \"%s\": %s", i, cases[i].value, why);
		assert_string_equal(out, cases[i].domain);
	}
}

static void test_from_invalid(void **state)
{
	(void)state;
	static const struct {
		const char *value, *why;
	} cases[] = {
		{ "a@example.com, b@example.org", "From has several domains" },
		{ "Team: a@example.com, b@sub.example.com;", "From has several domains" },
		{ "", "no address in From" },
		{ " (just a comment) ", "no address in From" },
		{ "undisclosed-recipients:;", "no address in From" },
		{ "John", "From address without a domain" },
		{ "John <john>", "From address without a domain" },
		{ "Smith, John <j@example.com>", "From address without a domain" },
		{ "<@example.com>", "From field syntax error" },
		{ "<>", "empty From address" },
		{ "a@[192.0.2.1]", "From domain is an address literal" },
		{ "a@exa mple.com", "invalid From domain" },
		{ "a@example..com", "invalid From domain" },
		{ "a@.example.com", "invalid From domain" },
		{ "a@example.com..", "invalid From domain" },
		{ "a@ex!ample.com", "invalid From domain" },
		{ "a@b\xc3\xbc" "cher.example", "invalid From domain" },
		{ "a@example.com b@example.com", "invalid From domain" },
		{ "\"unterminated <a@example.com>", "From field syntax error" },
		{ "(unterminated comment a@example.com", "From field syntax error" },
		{ "a@example.com>", "From field syntax error" },
		{ "<a@example.com", "From field syntax error" },
		{ "x@evil.test <a@example.com>", "From field syntax error" },
		{ "Group: a@example.com", "From field syntax error" },
		{ "a@b@example.com", "From field syntax error" },
		{ "a@example.com)", "From field syntax error" },
		{ "a@exa\x01mple.com", "From field syntax error" },
		{ "<a@example.com> junk", "From field syntax error" },
		{ "a: b: c@example.com;;", "From field syntax error" },
		{ "a@", "From address without a domain" },
		{ "@example.com", "From field syntax error" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		const char *v[] = { cases[i].value };
		char out[256];
		const char *why = NULL;
		if (dmarc_from_domain(v, 1, out, sizeof(out), &why) != -1)
			fail_msg("case %zu \"%s\" accepted: %s", i, cases[i].value, out);
		if (strcmp(why, cases[i].why) != 0)
			fail_msg("case %zu \"%s\": \"%s\", expected \"%s\"", i, cases[i].value, why,
				 cases[i].why);
		assert_string_equal(out, "");
	}

	/* Field counts, a long domain, a small output buffer. */
	char out[256];
	const char *why;
	const char *two[] = { "a@example.com", "a@example.com" };
	assert_int_equal(dmarc_from_domain(two, 0, out, sizeof(out), &why), -1);
	assert_string_equal(why, "no From field");
	assert_int_equal(dmarc_from_domain(two, 2, out, sizeof(out), &why), -1);
	assert_string_equal(why, "several From fields");
	char longv[400] = "a@";
	for (int i = 0; i < 60; i++)
		strcat(longv, "abcd.");
	strcat(longv, "com");
	const char *lv[] = { longv };
	assert_int_equal(dmarc_from_domain(lv, 1, out, sizeof(out), &why), -1);
	assert_string_equal(why, "invalid From domain");
	char label[100] = "a@";
	memset(label + 2, 'x', 64);
	strcpy(label + 66, ".com");
	lv[0] = label;
	assert_int_equal(dmarc_from_domain(lv, 1, out, sizeof(out), &why), -1);
	const char *ok[] = { "a@example.com" };
	char small[6];
	assert_int_equal(dmarc_from_domain(ok, 1, small, sizeof(small), &why), -1);
	assert_string_equal(why, "From domain too long");
	assert_string_equal(small, "");
}

static void test_org_domain(void **state)
{
	(void)state;
	static const struct {
		const char *in, *org;
	} cases[] = {
		{ "example.com", "example.com" },     { "a.b.Example.COM.", "example.com" },
		{ "com", "com" },                     { "co.uk", "co.uk" },
		{ "uk", "uk" },                       { "example.co.uk", "example.co.uk" },
		{ "x.y.example.co.uk", "example.co.uk" }, { "a.b.unlisted", "b.unlisted" },
		{ "unlisted", "unlisted" },           { "example.test", "example.test" },
		{ "sub.example.test", "example.test" }, { "", "" },
	};
	char out[256];
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		dmarc_org_domain(cases[i].in, out, sizeof(out));
		if (strcmp(out, cases[i].org) != 0)
			fail_msg("%s: %s, expected %s", cases[i].in, out, cases[i].org);
	}
	char small[5];
	dmarc_org_domain("a.example.com", small, sizeof(small));
	assert_string_equal(small, "exam"); /* truncated, terminated */
}

static void test_aligned(void **state)
{
	(void)state;
	static const struct {
		const char *from, *other;
		bool strict, relaxed;
	} cases[] = {
		{ "example.com", "example.com", true, true },
		{ "Example.COM", "example.com.", true, true },
		{ "example.com", "sub.example.com", false, true },
		{ "sub.example.com", "example.com", false, true },
		{ "a.example.com", "b.example.com", false, true },
		{ "example.com", "example.org", false, false },
		{ "example.com", "badexample.com", false, false },
		{ "a.example.co.uk", "b.example.co.uk", false, true },
		{ "example.co.uk", "other.co.uk", false, false },
		{ "co.uk", "example.co.uk", false, false },
		{ "example.test", "mail.example.test", false, true },
		{ "", "", false, false },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		if (dmarc_aligned(cases[i].from, cases[i].other, true) != cases[i].strict ||
		    dmarc_aligned(cases[i].from, cases[i].other, false) != cases[i].relaxed)
			fail_msg("%s vs %s", cases[i].from, cases[i].other);
	}
	assert_false(dmarc_aligned(NULL, "example.com", false));
	assert_false(dmarc_aligned("example.com", NULL, true));
}

static void test_select_record(void **state)
{
	(void)state;
	const char *rec;
	char *a[] = { "v=spf1 -all", "v=DMARC1; p=none" };
	assert_int_equal(dmarc_select_record(a, 2, &rec), 1);
	assert_string_equal(rec, "v=DMARC1; p=none");
	char *b[] = { "v=DMARC1; p=none", "v=DMARC1; p=reject" };
	assert_int_equal(dmarc_select_record(b, 2, &rec), 2);
	static const struct {
		const char *txt;
		size_t n;
	} cases[] = {
		{ "v=DMARC1; p=none", 1 }, { "V=dmarc1;p=none", 1 }, { "v = DMARC1 ; p=none", 1 },
		{ "v=DMARC1", 1 },         { "v=DMARC1 p=none", 1 }, { "v=DMARC10; p=none", 0 },
		{ "p=reject; v=DMARC1", 0 }, { "xv=DMARC1", 0 },     { " v=DMARC1; p=none", 0 },
		{ "v=DMARC", 0 },          { "", 0 },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		char *one[] = { (char *)cases[i].txt };
		if (dmarc_select_record(one, 1, &rec) != cases[i].n)
			fail_msg("\"%s\"", cases[i].txt);
	}
	assert_int_equal(dmarc_select_record(NULL, 0, &rec), 0);
	assert_null(rec);
}

/* The decision: SPF and DKIM inputs built by hand. */
static struct spf_result spf_of(enum auth_res res, const char *domain)
{
	struct spf_result s;
	memset(&s, 0, sizeof(s));
	s.res = res;
	strcpy(s.domain, domain);
	return s;
}

static struct dmarc_sig_list {
	struct dkim_sig_result v[3];
	struct dkim_results r;
} sigs;

static const struct dkim_results *dkim_of(size_t n, const enum auth_res *res, const char *const *d)
{
	memset(&sigs, 0, sizeof(sigs));
	for (size_t i = 0; i < n; i++) {
		sigs.v[i].res = res[i];
		strcpy(sigs.v[i].domain, d[i]);
	}
	sigs.r.v = sigs.v;
	sigs.r.n = n;
	return &sigs.r;
}

static void test_apply_alignment(void **state)
{
	(void)state;
	struct dmarc_result r;
	struct spf_result none = spf_of(AR_NONE, ""), spf;
	const char *rej = "v=DMARC1; p=reject";

	dmarc_apply_record(rej, "Example.COM.", NULL, &none, NULL, 0, &r);
	assert_int_equal(r.res, AR_FAIL);
	assert_int_equal(r.action, DMARC_ACT_REJECT);
	assert_string_equal(r.policy, "reject");
	assert_string_equal(r.from_domain, "example.com");
	assert_false(r.sampled_out || r.spf_aligned || r.dkim_aligned);
	assert_string_equal(r.reason, "no aligned SPF or DKIM pass");

	spf = spf_of(AR_PASS, "example.com");
	dmarc_apply_record(rej, "example.com", NULL, &spf, NULL, 0, &r);
	assert_int_equal(r.res, AR_PASS);
	assert_int_equal(r.action, DMARC_ACT_NONE);
	assert_string_equal(r.policy, "reject");
	assert_true(r.spf_aligned);
	assert_false(r.dkim_aligned);

	/* SPF: relaxed accepts a subdomain, strict does not; a fail never aligns. */
	spf = spf_of(AR_PASS, "bounce.example.com");
	dmarc_apply_record(rej, "example.com", NULL, &spf, NULL, 0, &r);
	assert_int_equal(r.res, AR_PASS);
	dmarc_apply_record("v=DMARC1; p=reject; aspf=s", "example.com", NULL, &spf, NULL, 0, &r);
	assert_int_equal(r.res, AR_FAIL);
	assert_non_null(strstr(r.reason, "aspf=s"));
	spf = spf_of(AR_SOFTFAIL, "example.com");
	dmarc_apply_record(rej, "example.com", NULL, &spf, NULL, 0, &r);
	assert_int_equal(r.res, AR_FAIL);
	spf = spf_of(AR_PASS, "example.org");
	dmarc_apply_record(rej, "example.com", NULL, &spf, NULL, 0, &r);
	assert_int_equal(r.res, AR_FAIL);
	/* The HELO identity (null MAIL FROM) counts the same way. */
	spf = spf_of(AR_PASS, "mx1.example.com");
	spf.helo_identity = true;
	dmarc_apply_record(rej, "example.com", NULL, &spf, NULL, 0, &r);
	assert_true(r.res == AR_PASS && r.spf_aligned);
	/* co.uk is a public suffix: two registrants never align. */
	spf = spf_of(AR_PASS, "other.co.uk");
	dmarc_apply_record(rej, "example.co.uk", NULL, &spf, NULL, 0, &r);
	assert_int_equal(r.res, AR_FAIL);

	/* DKIM, strict and relaxed. */
	const enum auth_res pass[] = { AR_PASS }, fail[] = { AR_FAIL };
	const char *d_same[] = { "example.com" }, *d_sub[] = { "sub.example.com" };
	const char *d_b[] = { "b.example.com" };
	dmarc_apply_record("v=DMARC1; p=reject; adkim=s", "example.com", NULL, &none,
			   dkim_of(1, pass, d_same), 0, &r);
	assert_true(r.res == AR_PASS && r.dkim_aligned && !r.spf_aligned);
	assert_string_equal(r.reason, "aligned DKIM pass");
	dmarc_apply_record("v=DMARC1; p=reject; adkim=s", "example.com", NULL, &none,
			   dkim_of(1, pass, d_sub), 0, &r);
	assert_int_equal(r.res, AR_FAIL);
	assert_non_null(strstr(r.reason, "adkim=s"));
	dmarc_apply_record("v=DMARC1; p=reject; adkim=s", "a.example.com", NULL, &none,
			   dkim_of(1, pass, d_b), 0, &r);
	assert_int_equal(r.res, AR_FAIL); /* what libopendmarc 1.4.2 gets wrong */
	dmarc_apply_record(rej, "a.example.com", NULL, &none, dkim_of(1, pass, d_b), 0, &r);
	assert_int_equal(r.res, AR_PASS);
	dmarc_apply_record(rej, "example.com", NULL, &none, dkim_of(1, fail, d_same), 0, &r);
	assert_int_equal(r.res, AR_FAIL);

	/* An unaligned pass and an aligned fail do not add up to a pass;
	 * a later aligned pass does. */
	const enum auth_res mix[] = { AR_PASS, AR_FAIL, AR_PASS };
	const char *d_mix[] = { "other.org", "example.com", "EXAMPLE.com" };
	dmarc_apply_record(rej, "example.com", NULL, &none, dkim_of(2, mix, d_mix), 0, &r);
	assert_int_equal(r.res, AR_FAIL);
	dmarc_apply_record(rej, "example.com", NULL, &none, dkim_of(3, mix, d_mix), 0, &r);
	assert_int_equal(r.res, AR_PASS);

	spf = spf_of(AR_PASS, "example.com");
	dmarc_apply_record(rej, "example.com", NULL, &spf, dkim_of(1, pass, d_same), 0, &r);
	assert_string_equal(r.reason, "aligned SPF and DKIM pass");

	/* An aligned temperror without an aligned pass: temperror, no action
	 * (a retry may pass); an unaligned one is just a fail. */
	const enum auth_res temp[] = { AR_TEMPERROR }, temp_pass[] = { AR_TEMPERROR, AR_PASS };
	const char *d_other[] = { "example.org" }, *d_two[] = { "example.com", "sub.example.com" };
	dmarc_apply_record(rej, "example.com", NULL, &none, dkim_of(1, temp, d_sub), 0, &r);
	assert_true(r.res == AR_TEMPERROR && r.action == DMARC_ACT_NONE);
	assert_string_equal(r.policy, "reject");
	dmarc_apply_record("v=DMARC1; p=reject; adkim=s", "example.com", NULL, &none,
			   dkim_of(1, temp, d_sub), 0, &r);
	assert_true(r.res == AR_FAIL && r.action == DMARC_ACT_REJECT);
	dmarc_apply_record(rej, "example.com", NULL, &none, dkim_of(1, temp, d_other), 0, &r);
	assert_int_equal(r.res, AR_FAIL);
	dmarc_apply_record(rej, "example.com", NULL, &none, dkim_of(2, temp_pass, d_two), 0, &r);
	assert_int_equal(r.res, AR_PASS);
	spf = spf_of(AR_TEMPERROR, "example.com");
	dmarc_apply_record(rej, "example.com", NULL, &spf, NULL, 0, &r);
	assert_int_equal(r.res, AR_TEMPERROR);
	spf = spf_of(AR_TEMPERROR, "example.org");
	dmarc_apply_record(rej, "example.com", NULL, &spf, NULL, 0, &r);
	assert_int_equal(r.res, AR_FAIL);
}

static void test_apply_policy(void **state)
{
	(void)state;
	struct dmarc_result r;
	struct spf_result none = spf_of(AR_NONE, "");
	static const struct {
		const char *rec, *from, *org;
		unsigned sample;
		const char *policy;
		enum dmarc_action action;
		bool sampled_out;
	} cases[] = {
		{ "v=DMARC1; p=none", "example.com", NULL, 0, "none", DMARC_ACT_NONE, false },
		{ "v=DMARC1; p=quarantine", "example.com", NULL, 0, "quarantine", DMARC_ACT_QUARANTINE, false },
		{ "v=DMARC1; p=reject", "example.com", NULL, 99, "reject", DMARC_ACT_REJECT, false },
		{ "v=DMARC1;p=r", "example.com", NULL, 0, "reject", DMARC_ACT_REJECT, false },
		/* sp= for a subdomain whose record came from the org domain */
		{ "v=DMARC1; p=reject; sp=quarantine", "sub.example.com", "example.com", 0, "quarantine",
		  DMARC_ACT_QUARANTINE, false },
		{ "v=DMARC1; p=reject; sp=none", "sub.example.com", "example.com", 0, "none",
		  DMARC_ACT_NONE, false },
		{ "v=DMARC1; p=quarantine", "sub.example.com", "example.com", 0, "quarantine",
		  DMARC_ACT_QUARANTINE, false },
		/* ... but not for a record at the From domain itself */
		{ "v=DMARC1; p=reject; sp=none", "sub.example.com", NULL, 0, "reject",
		  DMARC_ACT_REJECT, false },
		{ "v=DMARC1; p=reject; sp=none", "example.com", "example.com", 0, "reject",
		  DMARC_ACT_REJECT, false },
		/* pct= */
		{ "v=DMARC1; p=reject; pct=20", "example.com", NULL, 19, "reject", DMARC_ACT_REJECT, false },
		{ "v=DMARC1; p=reject; pct=20", "example.com", NULL, 20, "reject", DMARC_ACT_QUARANTINE, true },
		{ "v=DMARC1; p=reject; pct=0", "example.com", NULL, 0, "reject", DMARC_ACT_QUARANTINE, true },
		{ "v=DMARC1; p=quarantine; pct=0", "example.com", NULL, 0, "quarantine", DMARC_ACT_NONE, true },
		{ "v=DMARC1; p=none; pct=0", "example.com", NULL, 0, "none", DMARC_ACT_NONE, false },
		{ "v=DMARC1; p=reject; pct=100", "example.com", NULL, 99, "reject", DMARC_ACT_REJECT, false },
		{ "v=DMARC1; p=none; sp=reject; pct=50", "a.example.com", "example.com", 50, "reject",
		  DMARC_ACT_QUARANTINE, true },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		dmarc_apply_record(cases[i].rec, cases[i].from, cases[i].org, &none, NULL, cases[i].sample,
				   &r);
		if (r.res != AR_FAIL || strcmp(r.policy, cases[i].policy) != 0 ||
		    r.action != cases[i].action || r.sampled_out != cases[i].sampled_out)
			fail_msg("case %zu \"%s\": res %d policy %s action %d sampled_out %d (%s)", i,
				 cases[i].rec, r.res, r.policy, r.action, r.sampled_out, r.reason);
	}
	dmarc_apply_record("v=DMARC1; p=reject; pct=20", "example.com", NULL, &none, NULL, 50, &r);
	assert_string_equal(r.reason, "no aligned SPF or DKIM pass; sampled out by pct=20");
	dmarc_apply_record("v=DMARC1; p=reject", "a.example.com", "example.com", &none, NULL, 0, &r);
	assert_non_null(strstr(r.reason, "DMARC record at the organizational domain"));

	/* A pass keeps the policy for the header comment, never an action. */
	struct spf_result spf = spf_of(AR_PASS, "example.com");
	dmarc_apply_record("v=DMARC1; p=reject; pct=0", "example.com", NULL, &spf, NULL, 99, &r);
	assert_true(r.res == AR_PASS && r.action == DMARC_ACT_NONE && !r.sampled_out);
	assert_string_equal(r.policy, "reject");

	/* Records the library refuses: permerror, no policy, no action. */
	static const char *bad[] = { "v=DMARC1", "v=DMARC1; p=bogus", "v=DMARC1; sp=reject",
				     "v=DMARC1; p=reject; pct=150", "v=DMARC1; p=reject; adkim=x",
				     "v=DMARC2; p=reject" };
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		dmarc_apply_record(bad[i], "example.com", NULL, &none, NULL, 0, &r);
		if (r.res != AR_PERMERROR || r.action != DMARC_ACT_NONE || r.policy[0] != '\0')
			fail_msg("\"%s\": res %d", bad[i], r.res);
		assert_non_null(strstr(r.reason, "invalid DMARC record"));
	}
	dmarc_apply_record("v=DMARC1; p=reject", "", NULL, &none, NULL, 0, &r);
	assert_int_equal(r.res, AR_NONE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init),          cmocka_unit_test(test_from_valid),
		cmocka_unit_test(test_from_invalid),  cmocka_unit_test(test_org_domain),
		cmocka_unit_test(test_aligned),       cmocka_unit_test(test_select_record),
		cmocka_unit_test(test_apply_alignment), cmocka_unit_test(test_apply_policy),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
