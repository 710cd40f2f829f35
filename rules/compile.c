/*
 * compile.c - rule definitions to a compiled rule set: every regex
 * compiled by PCRE2 (with JIT) once at load, metas compiled and ordered;
 * ruleset_load reads a directory of *.rules files.  A rule set that
 * defines no check_bayes rule gets SpamAssassin's bands built in
 * (rules_bayes_defaults), so that the classifier scores with any rules.
 */
#include "rules/rules-private.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------- compile */


/* Perl's regex flags to PCRE2 options; g, o and p mean nothing here. */
static int regex_options(const char *flags, uint32_t *opt, char *bad)
{
	*opt = 0;
	for (const char *f = flags ? flags : ""; *f; f++) {
		switch (*f) {
		case 'i':
			*opt |= PCRE2_CASELESS;
			break;
		case 'm':
			*opt |= PCRE2_MULTILINE;
			break;
		case 's':
			*opt |= PCRE2_DOTALL;
			break;
		case 'x':
			*opt |= PCRE2_EXTENDED;
			break;
		case 'n':
			*opt |= PCRE2_NO_AUTO_CAPTURE;
			break;
		case 'g':
		case 'o':
		case 'p':
			break;
		default:
			*bad = *f;
			return -1;
		}
	}
	return 0;
}

/* Compile a pattern: UTF-8 mode that tolerates invalid UTF-8 in the
 * subject (mail is full of it); a pattern that is itself not valid UTF-8
 * (raw 8-bit bytes in a rule file), or that escapes octets of 0x80 and
 * more, is compiled in byte mode instead. */
/* A pattern written for bytes: a \xHH escape of 0x80 or more means an
 * octet of the message (SpamAssassin's rules match raw bytes: "\xc3\xa9"
 * is an é in UTF-8, a Korean subject is EUC-KR bytes), which UTF mode
 * would read as a character. */
static bool byte_escapes(const char *pat)
{
	for (const char *p = pat; *p; p++) {
		if (*p != '\\')
			continue;
		if (p[1] == 'x' && p[2] >= '8' && p[2] <= '9')
			return true;
		if (p[1] == 'x' && ((p[2] | 0x20) >= 'a' && (p[2] | 0x20) <= 'f') && isxdigit((unsigned char)p[3]))
			return true;
		if (p[1])
			p++; /* skip the escaped character (\\x is not an escape) */
	}
	return false;
}

static pcre2_code *compile_regex(const char *pat, uint32_t opt, char *err, size_t errsize)
{
	int code;
	PCRE2_SIZE off;
	uint32_t utf = byte_escapes(pat) ? 0 : PCRE2_UTF | PCRE2_MATCH_INVALID_UTF;
	pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, opt | utf, &code, &off, NULL);
	if (re == NULL && code >= PCRE2_ERROR_UTF8_ERR21 && code <= PCRE2_ERROR_UTF8_ERR1)
		re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, opt, &code, &off, NULL);
	if (re == NULL) {
		PCRE2_UCHAR msg[256];
		pcre2_get_error_message(code, msg, sizeof(msg));
		snprintf(err, errsize, "%s at offset %zu", (const char *)msg, (size_t)off);
		return NULL;
	}
	/* JIT when it can (not every platform has it); matching works
	 * without, only slower. */
	pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
	return re;
}

struct resolve_ctx {
	const struct ruleset *rs;
	const struct crule *meta; /* the meta being compiled */
	struct rules_report *rep;
};

static int resolve_name(const char *name, void *arg)
{
	struct resolve_ctx *ctx = arg;
	const struct ruleset *rs = ctx->rs;
	for (size_t i = 0; i < rs->n; i++)
		if (strcmp(rs->v[i].name, name) == 0)
			return (int)i;
	/* Often a rule of a skipped plugin block; a typo otherwise. */
	rules_diag_add(ctx->rep, ctx->meta->file, ctx->meta->line, false,
		       "meta %s: no rule %s (it counts as 0)", ctx->meta->name, name);
	return -1;
}

/* SpamAssassin's default score of a rule without a score line (negative
 * for tflags nice rules, as its Conf parser does). */
static double default_score(const char *name, unsigned tflags)
{
	double s = strncmp(name, "__", 2) == 0 ? 0 : strncmp(name, "T_", 2) == 0 ? 0.01 : 1.0;
	return (tflags & RTF_NICE) ? -s : s;
}

/* Order metas so that each comes after the metas it reads (depth-first;
 * a loop is an error). */
static int order_metas(struct ruleset *rs, struct rules_report *rep)
{
	enum { WHITE, GREY, BLACK };
	unsigned char *mark = xcalloc(rs->n ? rs->n : 1, 1);
	rs->meta_order = xcalloc(rs->n ? rs->n : 1, sizeof(size_t));
	rs->nmeta = 0;
	size_t *stack = xcalloc(rs->n ? rs->n : 1, sizeof(size_t) * 2);
	int rc = 0;
	for (size_t root = 0; root < rs->n && rc == 0; root++) {
		if (rs->v[root].type != RT_META || mark[root] != WHITE)
			continue;
		/* Iterative DFS: stack of (rule, next dep index). */
		size_t sp = 0;
		stack[sp * 2] = root;
		stack[sp * 2 + 1] = 0;
		sp++;
		mark[root] = GREY;
		while (sp > 0 && rc == 0) {
			size_t r = stack[(sp - 1) * 2];
			size_t k = stack[(sp - 1) * 2 + 1];
			const int *deps;
			size_t nd = meta_deps(rs->v[r].meta, &deps);
			if (k < nd) {
				stack[(sp - 1) * 2 + 1]++;
				size_t d = (size_t)deps[k];
				if (rs->v[d].type != RT_META || mark[d] == BLACK)
					continue;
				if (mark[d] == GREY) {
					rules_diag_add(rep, rs->v[r].file, rs->v[r].line, true,
						       "meta %s: loop through %s", rs->v[r].name,
						       rs->v[d].name);
					rc = -1;
					break;
				}
				mark[d] = GREY;
				stack[sp * 2] = d;
				stack[sp * 2 + 1] = 0;
				sp++;
			} else {
				mark[r] = BLACK;
				rs->meta_order[rs->nmeta++] = r;
				sp--;
			}
		}
	}
	free(stack);
	free(mark);
	return rc;
}

/* Which rules must run: those that score, and what metas that score
 * read (SpamAssassin does not run a rule whose score is 0 unless a meta
 * needs it). */
static void mark_needed(struct ruleset *rs)
{
	for (size_t i = 0; i < rs->n; i++)
		rs->v[i].needed = rs->v[i].score != 0 || rs->v[i].score_bayes != 0;
	/* Metas in reverse dependency order propagate the need down. */
	for (size_t k = rs->nmeta; k-- > 0;) {
		struct crule *m = &rs->v[rs->meta_order[k]];
		if (!m->needed)
			continue;
		const int *deps;
		size_t nd = meta_deps(m->meta, &deps);
		for (size_t j = 0; j < nd; j++)
			rs->v[deps[j]].needed = true;
	}
	rs->nneeded = 0;
	rs->has_bayes = false;
	for (size_t i = 0; i < rs->n; i++) {
		rs->nneeded += rs->v[i].needed;
		rs->has_bayes = rs->has_bayes || (rs->v[i].needed && rs->v[i].type == RT_BAYES);
	}
}

static void crule_free(struct crule *c)
{
	free(c->name);
	free(c->describe);
	free(c->header);
	free(c->if_unset);
	free(c->file);
	free(c->expr);
	free(c->pattern);
	pcre2_code_free(c->re);
	meta_free(&c->meta);
}

void ruleset_free(struct ruleset **rsp)
{
	struct ruleset *rs = *rsp;
	if (rs == NULL)
		return;
	for (size_t i = 0; i < rs->n; i++)
		crule_free(&rs->v[i]);
	prefilter_free(rs);
	free(rs->v);
	free(rs->meta_order);
	free(rs);
	*rsp = NULL;
}

size_t ruleset_size(const struct ruleset *rs)
{
	return rs ? rs->nneeded : 0;
}

bool ruleset_has_bayes(const struct ruleset *rs)
{
	return rs && rs->has_bayes;
}

static int compile_defs(struct rule_defs *defs, struct ruleset **out, struct rules_report *rep)
{
	rules_bayes_defaults(defs);
	struct ruleset *rs = xcalloc(1, sizeof(*rs));
	rs->v = xcalloc(defs->n ? defs->n : 1, sizeof(*rs->v));
	int rc = 0;
	for (size_t i = 0; i < defs->n; i++) {
		struct rule_def *d = &defs->v[i];
		if (!d->defined)
			continue; /* a score or describe line for a rule never defined */
		struct crule *c = &rs->v[rs->n];
		memset(c, 0, sizeof(*c));
		c->name = xstrdup(d->name);
		c->describe = xstrdup(d->describe ? d->describe : "");
		c->type = d->type;
		c->score = d->has_score ? d->score : default_score(d->name, d->tflags);
		c->score_bayes = d->has_score ? d->score_bayes : c->score;
		c->bayes_lo = d->bayes_lo;
		c->bayes_hi = d->bayes_hi;
		c->tflags = d->tflags;
		c->maxhits = d->maxhits;
		c->file = xstrdup(d->file ? d->file : "");
		c->expr = d->expr ? xstrdup(d->expr) : NULL;
		c->line = d->line;
		c->header = d->header ? xstrdup(d->header) : NULL;
		c->mod = d->mod;
		c->exists = d->exists;
		c->if_unset = d->if_unset ? xstrdup(d->if_unset) : NULL;
		c->negate = d->negate;
		rs->n++;
		if (d->type != RT_META && d->type != RT_BAYES && !d->exists) {
			uint32_t opt;
			char bad = 0, err[320];
			if (regex_options(d->flags, &opt, &bad) < 0) {
				rules_diag_add(rep, d->file, d->line, true, "%s: unknown regex flag '%c'",
					       d->name, bad);
				rc = -1;
			} else if ((c->re = compile_regex(d->pattern ? d->pattern : "", opt, err,
							  sizeof(err))) == NULL) {
				rules_diag_add(rep, d->file, d->line, true, "%s: bad pattern: %s", d->name,
					       err);
				rc = -1;
			} else {
				uint32_t all = 0;
				pcre2_pattern_info(c->re, PCRE2_INFO_ALLOPTIONS, &all);
				c->pattern = xstrdup(d->pattern ? d->pattern : "");
				c->utf = (all & PCRE2_UTF) != 0;
				c->caseless = (opt & PCRE2_CASELESS) != 0;
				c->multiline = (opt & PCRE2_MULTILINE) != 0;
				c->dotall = (opt & PCRE2_DOTALL) != 0;
				c->extended = (opt & PCRE2_EXTENDED) != 0;
			}
		}
	}
	/* Metas, once every name is known. */
	struct resolve_ctx rc_ctx = { rs, NULL, rep };
	for (size_t i = 0; i < rs->n; i++) {
		struct crule *c = &rs->v[i];
		if (c->type != RT_META)
			continue;
		const char *err = NULL;
		rc_ctx.meta = c;
		c->meta = meta_compile(c->expr ? c->expr : "", resolve_name, &rc_ctx, &err);
		if (c->meta == NULL) {
			rules_diag_add(rep, c->file, c->line, true, "meta %s: %s", c->name,
				       err ? err : "bad expression");
			rc = -1;
		}
	}
	if (rc == 0 && order_metas(rs, rep) < 0)
		rc = -1;
	if (rc < 0) {
		ruleset_free(&rs);
		return -1;
	}
	mark_needed(rs);
	*out = rs;
	return 0;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int ruleset_load(const char *dir, struct ruleset **rs, struct rules_report *rep)
{
	*rs = NULL;
	DIR *d = opendir(dir);
	if (d == NULL) {
		rules_diag_add(rep, dir, 0, true, "cannot read the rules directory: %s", strerror(errno));
		return -1;
	}
	char **names = NULL;
	size_t n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		size_t len = strlen(e->d_name);
		if (e->d_name[0] == '.' || len < 7 || strcmp(e->d_name + len - 6, ".rules") != 0)
			continue;
		names = xrealloc(names, (n + 1) * sizeof(char *));
		names[n++] = xasprintf("%s/%s", dir, e->d_name);
	}
	closedir(d);
	qsort(names, n, sizeof(char *), name_cmp);
	struct rule_defs defs = { 0 };
	int rc = 0;
	for (size_t i = 0; i < n; i++) {
		if (rules_parse_file(names[i], &defs, rep) < 0)
			rc = -1;
		free(names[i]);
	}
	free(names);
	/* Compile even after parse errors, so that one check reports every
	 * error; a set with errors is never used. */
	if (compile_defs(&defs, rs, rep) < 0)
		rc = -1;
	if (rc < 0)
		ruleset_free(rs);
	rule_defs_free(&defs);
	return rc;
}

int ruleset_load_file(const char *path, struct ruleset **rs, struct rules_report *rep)
{
	*rs = NULL;
	struct rule_defs defs = { 0 };
	int rc = rules_parse_file(path, &defs, rep);
	if (compile_defs(&defs, rs, rep) < 0)
		rc = -1;
	if (rc < 0)
		ruleset_free(rs);
	rule_defs_free(&defs);
	return rc;
}
