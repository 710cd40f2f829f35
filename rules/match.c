/*
 * match.c - scoring a message with a rule set.
 *
 * Every rule that scores (or that a scoring meta reads) runs against its
 * part of the message view: header rules against the header's value,
 * body/rawbody/uri rules against each paragraph, line or URI, full rules
 * against the whole text; then the metas, each after those it reads.
 * A rule counts its hits (one, or up to maxhits with tflags multiple);
 * a meta hits when its expression is non-zero.  The score of a rule that
 * hits is added once, whatever its count (the count feeds metas).
 *
 * In two steps (several recipients, each with a classifier of their
 * own): ruleset_scan runs the regex rules, once per message; then
 * ruleset_finish, once per verdict, sets the check_bayes rules from the
 * probability, evaluates the metas (cheap) and sums the scores of the
 * score set that applies.
 *
 * PCRE2 runs with limits (match, depth, heap, and a bounded JIT stack):
 * a pattern that would backtrack for ever on a hostile message stops at
 * the limit, is logged, and counts as not matched.  The match data,
 * match context, JIT stack and vectorscan scratch are per thread, made
 * on first use.
 *
 * Before the rules run, the vectorscan prefilter (prefilter.c) scans
 * each text once for all the rules of that text it holds; a rule it
 * holds that is not a candidate cannot match and is not run in PCRE2.  All
 * the rules of one message share a time budget (MESSAGE_BUDGET_MS): past
 * it, the rules not yet run are skipped and the message is logged.
 */
#include "rules/rules-private.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define MATCH_LIMIT 1000000       /* backtracking steps per match */
#define DEPTH_LIMIT 1000          /* interpreter recursion (non-JIT) */
#define HEAP_LIMIT_KB (20 * 1024) /* interpreter backtracking memory */
#define JIT_STACK_MIN (32 * 1024)
#define JIT_STACK_MAX (1024 * 1024)
#define MULTIPLE_MAX 1000         /* tflags multiple without maxhits */
#define MESSAGE_BUDGET_MS 2000    /* all the rules of one message; past it the rest are skipped */

struct tstate {
	pcre2_match_data *md;
	pcre2_match_context *mc;
	pcre2_jit_stack *js;
	void *hs;                 /* vectorscan scratch, NULL until needed */
	uint64_t hs_gen;          /* the rule set it was last made to fit */
};

static pthread_key_t tkey;
static pthread_once_t tonce = PTHREAD_ONCE_INIT;

static void tstate_free(void *p)
{
	struct tstate *t = p;
	pcre2_match_data_free(t->md);
	pcre2_match_context_free(t->mc);
	pcre2_jit_stack_free(t->js);
	prefilter_scratch_free(t->hs);
	free(t);
}

static void tkey_make(void)
{
	pthread_key_create(&tkey, tstate_free);
}

static struct tstate *tstate_get(void)
{
	pthread_once(&tonce, tkey_make);
	struct tstate *t = pthread_getspecific(tkey);
	if (t)
		return t;
	t = xcalloc(1, sizeof(*t));
	t->md = pcre2_match_data_create(1, NULL); /* no captures: one pair */
	t->mc = pcre2_match_context_create(NULL);
	t->js = pcre2_jit_stack_create(JIT_STACK_MIN, JIT_STACK_MAX, NULL);
	if (t->md == NULL || t->mc == NULL || t->js == NULL)
		log_fatalx(NULL, "rules: out of memory for PCRE2");
	pcre2_set_match_limit(t->mc, MATCH_LIMIT);
	pcre2_set_depth_limit(t->mc, DEPTH_LIMIT);
	pcre2_set_heap_limit(t->mc, HEAP_LIMIT_KB);
	pcre2_jit_stack_assign(t->mc, NULL, t->js);
	pthread_setspecific(tkey, t);
	return t;
}

/* Matches of c in subj, at most max; a limit hit ends the count (the
 * matches so far stay) and is counted in *limits. */
static unsigned re_count(const struct crule *c, const char *subj, size_t len, unsigned max,
			 struct tstate *t, unsigned *limits, bool *limited)
{
	unsigned hits = 0;
	size_t off = 0;
	while (hits < max && off <= len) {
		int rc = pcre2_match(c->re, (PCRE2_SPTR)subj, len, off, 0, t->md, t->mc);
		if (rc == PCRE2_ERROR_NOMATCH)
			break;
		if (rc < 0) { /* (0 only says the one-pair ovector was too small) */
			if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT ||
			    rc == PCRE2_ERROR_HEAPLIMIT || rc == PCRE2_ERROR_JIT_STACKLIMIT) {
				(*limits)++;
				*limited = true;
			}
			break;
		}
		hits++;
		PCRE2_SIZE *ov = pcre2_get_ovector_pointer(t->md);
		size_t next = ov[1] > ov[0] ? ov[1] : ov[0] + 1; /* an empty match moves on */
		if (next <= off)
			next = off + 1;
		off = next;
	}
	return hits;
}

/* The lines of one view with their lengths, taken once per message
 * (hundreds of rules run over the same lines). */
struct lines {
	bool loaded;
	const char *const *v;
	size_t n;
	size_t *len;
};

static const struct lines *lines_get(struct lines *l, struct msgview *mv,
				     const char *const *(*get)(struct msgview *, size_t *))
{
	if (!l->loaded) {
		l->loaded = true;
		l->v = get(mv, &l->n);
		l->len = xcalloc(l->n ? l->n : 1, sizeof(size_t));
		for (size_t i = 0; i < l->n; i++)
			l->len[i] = strlen(l->v[i]);
	}
	return l;
}

struct subjects {
	struct lines body, rawbody, uris;
};

static unsigned run_lines(const struct crule *c, const struct lines *l, unsigned max,
			  struct tstate *t, unsigned *limits, bool *limited)
{
	unsigned hits = 0;
	for (size_t i = 0; i < l->n && hits < max && !*limited; i++)
		hits += re_count(c, l->v[i], l->len[i], max - hits, t, limits, limited);
	return hits;
}

/* Run the prefilter over every text it has rules for: cand[i] = 1 for
 * each rule i that may match.  NULL when the rule set has no prefilter
 * (then every rule runs). */
static unsigned char *prefilter_run(const struct ruleset *rs, const struct pf_set *set,
				    struct msgview *mv, struct subjects *sj, struct tstate *t)
{
	if (set == NULL)
		return NULL;
	if (!prefilter_scratch(set, &t->hs, &t->hs_gen)) {
		log_warnx(NULL, "rules: out of memory for the vectorscan scratch; "
			  "every rule runs in PCRE2");
		return NULL;
	}
	unsigned char *cand = xcalloc(rs->n, 1);
	for (size_t g = 0; g < prefilter_groups(set); g++) {
		enum rule_type type;
		const char *header;
		enum hdr_mod mod;
		prefilter_group(set, g, &type, &header, &mod);
		const struct lines *l = NULL;
		switch (type) {
		case RT_HEADER: {
			bool present;
			const char *v = msgview_header(mv, header, mod, &present);
			prefilter_scan(set, g, v, strlen(v), t->hs, cand);
			break;
		}
		case RT_BODY:
			l = lines_get(&sj->body, mv, msgview_body);
			break;
		case RT_RAWBODY:
			l = lines_get(&sj->rawbody, mv, msgview_rawbody);
			break;
		case RT_URI:
			l = lines_get(&sj->uris, mv, msgview_uris);
			break;
		case RT_FULL: {
			size_t len;
			const char *full = msgview_full(mv, &len);
			prefilter_scan(set, g, full, len, t->hs, cand);
			break;
		}
		case RT_META:
		case RT_BAYES:
			break;
		}
		for (size_t i = 0; l && i < l->n; i++)
			prefilter_scan(set, g, l->v[i], l->len[i], t->hs, cand);
	}
	return cand;
}

/* The hits of one regex rule; maybe false: the prefilter found that it
 * cannot match. */
static unsigned run_rule(const struct crule *c, bool maybe, struct msgview *mv,
			 struct subjects *sj, struct tstate *t, unsigned *limits, bool *limited)
{
	unsigned max = (c->tflags & RTF_MULTIPLE) ? (c->maxhits ? c->maxhits : MULTIPLE_MAX) : 1;
	size_t len;
	if (!maybe)
		return c->type == RT_HEADER && c->negate ? 1 : 0;
	switch (c->type) {
	case RT_HEADER: {
		bool present = false;
		const char *v = msgview_header(mv, c->header, c->mod, &present);
		if (c->exists)
			return present ? 1 : 0;
		/* SpamAssassin: an absent header is "", or the if-unset text. */
		if (!present && c->if_unset)
			v = c->if_unset;
		unsigned hits = re_count(c, v, strlen(v), c->negate ? 1 : max, t, limits, limited);
		if (c->negate)
			return hits || *limited ? 0 : 1;
		return hits;
	}
	case RT_BODY:
		return run_lines(c, lines_get(&sj->body, mv, msgview_body), max, t, limits, limited);
	case RT_RAWBODY:
		return run_lines(c, lines_get(&sj->rawbody, mv, msgview_rawbody), max, t, limits, limited);
	case RT_URI:
		return run_lines(c, lines_get(&sj->uris, mv, msgview_uris), max, t, limits, limited);
	case RT_FULL: {
		const char *full = msgview_full(mv, &len);
		return re_count(c, full, len, max, t, limits, limited);
	}
	case RT_META:
	case RT_BAYES:
		break;
	}
	return 0;
}

struct rules_scan {
	unsigned *counts;         /* hits per rule: the regex rules' (metas, check_bayes: 0) */
	size_t n;
	unsigned limits;
	size_t skipped;
};

struct rules_scan *ruleset_scan(const struct ruleset *rs, struct msgview *mv)
{
	struct rules_scan *sc = xcalloc(1, sizeof(*sc));
	if (rs == NULL || rs->n == 0)
		return sc;
	struct tstate *t = tstate_get();
	sc->n = rs->n;
	sc->counts = xcalloc(rs->n, sizeof(unsigned));
	struct subjects sj = { 0 };
	int64_t deadline = clock_mono_ms() + MESSAGE_BUDGET_MS;
	const struct crule *first_limited = NULL;
	size_t skipped = 0;
	const struct pf_set *set = prefilter_get(rs);
	unsigned char *cand = prefilter_run(rs, set, mv, &sj, t);
	for (size_t i = 0; i < rs->n; i++) {
		const struct crule *c = &rs->v[i];
		if (!c->needed || c->type == RT_META || c->type == RT_BAYES)
			continue;
		if (skipped || clock_mono_ms() > deadline) {
			skipped++;
			continue;
		}
		bool limited = false;
		bool maybe = cand == NULL || cand[i] || !prefilter_holds(set, i);
		sc->counts[i] = run_rule(c, maybe, mv, &sj, t, &sc->limits, &limited);
		if (limited) {
			/* The rule counts as not matched, whatever it found
			 * before the limit. */
			sc->counts[i] = 0;
			if (first_limited == NULL)
				first_limited = c;
		}
	}
	/* One line per message, however many rules a hostile one stops. */
	if (first_limited)
		log_warnx(NULL, "rules: %u matches stopped at the PCRE2 limits (first: %s, %s:%u), "
			  "counted as not matched", sc->limits, first_limited->name, first_limited->file,
			  first_limited->line);
	if (skipped)
		log_warnx(NULL, "rules: the message took over %d ms; %zu rules not run", MESSAGE_BUDGET_MS,
			  skipped);
	sc->skipped = skipped;
	free(cand);
	free(sj.body.len);
	free(sj.rawbody.len);
	free(sj.uris.len);
	return sc;
}

/* check_bayes: [lo, hi), and [lo, hi] for the top band (p = 1.0 is in
 * BAYES_99); never without a verdict. */
static bool bayes_hit(const struct crule *c, double p)
{
	if (!(p >= 0))
		return false; /* no verdict (or NaN) */
	return p >= c->bayes_lo && (p < c->bayes_hi || (c->bayes_hi >= 1.0 && p <= c->bayes_hi));
}

void ruleset_finish(const struct ruleset *rs, const struct rules_scan *sc, double bayes_p,
		    struct rules_result *r)
{
	memset(r, 0, sizeof(*r));
	if (rs == NULL || sc == NULL || sc->n != rs->n || rs->n == 0)
		return;
	r->limits = sc->limits;
	r->skipped = sc->skipped;
	/* The scan stays as it is: finish runs once per recipient. */
	unsigned *counts = xmalloc(rs->n * sizeof(unsigned));
	memcpy(counts, sc->counts, rs->n * sizeof(unsigned));
	for (size_t i = 0; i < rs->n; i++)
		if (rs->v[i].type == RT_BAYES)
			counts[i] = bayes_hit(&rs->v[i], bayes_p);
	for (size_t k = 0; k < rs->nmeta; k++) {
		size_t i = rs->meta_order[k];
		if (rs->v[i].needed)
			counts[i] = meta_eval(rs->v[i].meta, counts) != 0 ? 1 : 0;
	}
	/* SpamAssassin's score set 3 when Bayes gave a verdict, else 1. */
	bool with_bayes = bayes_p >= 0;
	for (size_t i = 0; i < rs->n; i++) {
		const struct crule *c = &rs->v[i];
		double score = with_bayes ? c->score_bayes : c->score;
		if (counts[i] == 0 || score == 0 || strncmp(c->name, "__", 2) == 0)
			continue;
		r->v = xrealloc(r->v, (r->n + 1) * sizeof(*r->v));
		r->v[r->n++] = (struct rule_hit){ .name = c->name,
						  .describe = c->describe,
						  .score = score,
						  .count = counts[i] };
		r->score += score;
	}
	free(counts);
}

void rules_scan_free(struct rules_scan **scp)
{
	if (*scp == NULL)
		return;
	free((*scp)->counts);
	free(*scp);
	*scp = NULL;
}

void ruleset_match(const struct ruleset *rs, struct msgview *mv, struct rules_result *r)
{
	struct rules_scan *sc = ruleset_scan(rs, mv);
	ruleset_finish(rs, sc, -1, r);
	rules_scan_free(&sc);
}

void rules_result_free(struct rules_result *r)
{
	free(r->v);
	memset(r, 0, sizeof(*r));
}
