/*
 * prefilter.c - Hyperscan as a multi-pattern prefilter in front of PCRE2.
 *
 * The library: Intel's Hyperscan (Debian's libhyperscan 5.4.0, amd64) or
 * its fork vectorscan (other architectures); both give <hs/hs.h>, and
 * both are checked at run time (eng_init) before they are trusted.  Below,
 * "vectorscan" stands for either.
 *
 * A rule set of the stock SpamAssassin size has a thousand and more
 * regex rules, nearly all of which match nothing in a given message;
 * PCRE2 still runs each of them over every body paragraph.  Here the
 * regex rules that read the same text (every body rule, every rawbody,
 * uri, full rule, and the header rules of one header and modifier) are
 * compiled once more, together, into one vectorscan database per such
 * group, with HS_FLAG_PREFILTER: vectorscan may report a match that PCRE2
 * would not make (constructs it lacks, back-references and lookaround,
 * are widened), never the other way round.  One scan of the text gives
 * the candidates; only they run in PCRE2, which decides and counts.  A
 * rule that is not a candidate cannot match, so it is not run.
 *
 * What stays out of the databases, and always runs in PCRE2:
 *  - patterns vectorscan will not compile even as a prefilter, and
 *    those that can match the empty string (they match every text);
 *  - header rules with [if-unset: ...] (their text is not the header's);
 *  - patterns PCRE2 reads as UTF-8 that have non-ASCII characters and
 *    may be caseless: PCRE2 folds the case of such characters by Unicode,
 *    and vectorscan's folding is not known to be the same.
 *
 * UTF-8 mode.  PCRE2 compiles most patterns in UTF mode (with
 * PCRE2_MATCH_INVALID_UTF: mail is full of invalid UTF-8), where "." or
 * [^x] is one character, not one octet.  Those patterns go into the
 * database with HS_FLAG_UTF8, which has the same meaning on valid UTF-8;
 * on invalid UTF-8 vectorscan's behaviour is undefined, so each group has
 * two databases (octets, UTF-8), and a text that is not valid UTF-8 is
 * scanned by the first only, every rule of the second counting as a
 * candidate.
 *
 * A rule's pattern is rewritten for vectorscan by pf_pattern
 * (pfpattern.c): counted repeats widened ("[^>]{0,300}" to "[^>]{0,}":
 * vectorscan takes seconds per pattern to build such a repeat of a wide
 * class), and, where the library misses matches of runs of wide classes,
 * the pattern cut before the first such run.  Patterns with Unicode
 * properties stay out.
 *
 * Building still takes seconds for thousands of rules, so it can run in
 * a thread of its own (ruleset_prefilter(rs, true)): the rule set works
 * without the prefilter until the complete one is published (an atomic
 * pointer); a rule set freed meanwhile leaves the builder to free what
 * it made.  The databases are shared read-only by every thread; the
 * scratch space is per thread (match.c keeps it, prefilter_scratch
 * grows it to the rule set's databases).
 */
#include "rules/rules-private.h"

#include <dlfcn.h>
#include <hs/hs.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PF_MIN_RULES 2          /* a group of one rule is run by PCRE2 alone */

struct pf_db {
	hs_database_t *db;
	unsigned *ids;            /* the rule indexes in it */
	size_t n;
};

struct pf_group {
	enum rule_type type;
	char *header;             /* header groups */
	enum hdr_mod mod;
	struct pf_db d[2];        /* [0] octets, [1] UTF-8 */
};

/* What a built prefilter is: read-only once published. */
struct pf_set {
	struct pf_group *g;
	size_t n;
	int *group_of;            /* per rule of the set: its group, -1 none */
	size_t nrules;            /* rules in a database */
	uint64_t gen;             /* unique (per-thread scratch) */
};

/* One pattern to compile: a copy, so that the builder thread reads
 * nothing of the rule set. */
struct pf_item {
	char *expr;
	unsigned flags;
	unsigned rule;
	size_t group;
	int utf;
};

/* Shared by a rule set and its builder thread.  Whichever of the two
 * finishes last frees it: ruleset_free marks it orphaned while the
 * builder runs, and the builder then frees it and what it built. */
struct pf_job {
	pthread_mutex_t lock;
	bool running, orphan;
	struct ruleset *rs;       /* valid while !orphan, under lock */
	struct pf_item *items;
	size_t nitems;
	size_t nregex;            /* the set's regex rules that run (for the log) */
	struct pf_set *set;       /* being built */
};

/* ------------------------------------------------------------ the engine */

/*
 * vectorscan as Debian ships it (5.4.9) misses matches: plain ones
 * ("ab|d/[^\"]" on the 18-octet "aaaaaaaaaaaaaaa ab", found by fuzzing
 * PCRE2 against the prefilter; such a library gets no prefilter), and two
 * kinds fixed upstream later: its AVX-512 code for a negated class run
 * ("[^>]*") skips the last octets of a text of over about 100 octets
 * (vectorscan PR #378), and a run of any character ("." with DOTALL,
 * "[\s\S]") followed by some literals is built wrongly on every CPU
 * (issue #382).  A prefilter that misses a match makes a rule miss, so
 * the library is tested here, once per process, on those two cases and
 * on a few plain ones:
 *  - if the first fails, the fat runtime's AVX2 code (which is right) is
 *    used instead, with databases built for AVX2; if that is missing or
 *    fails too, there is no prefilter;
 *  - if the second fails (it does on 5.4.9, for "[^<]*" and "(?:.|\n)*"
 *    as well as for DOTALL ".*"), patterns are cut around their runs
 *    of wide classes (pfpattern.c), or left out.
 * Intel's Hyperscan 5.4.0 (what the Makefile installs on amd64) passes
 * every check and gets everything.
 */
typedef hs_error_t scan_fn(const hs_database_t *db, const char *data, unsigned int length,
			   unsigned int flags, hs_scratch_t *scratch, match_event_handler on_event,
			   void *context);

static struct {
	bool usable;
	bool runs_ok;             /* runs of wide classes are found (pfpattern.c) */
	scan_fn *scan;
	hs_platform_info_t platform;
} eng;
static pthread_once_t eng_once = PTHREAD_ONCE_INIT;

static int count_match(unsigned id, unsigned long long from, unsigned long long to,
		       unsigned flags, void *arg)
{
	(void)id;
	(void)from;
	(void)to;
	(void)flags;
	(*(int *)arg)++;
	return 0;
}

/* Whether pattern finds (want) or does not find text with this engine. */
static bool selftest(const char *pattern, unsigned flags, const char *text, bool want,
		     const hs_platform_info_t *platform, scan_fn *scan)
{
	hs_database_t *db = NULL;
	hs_compile_error_t *err = NULL;
	hs_scratch_t *scratch = NULL;
	int n = 0;
	bool ok = false;
	if (hs_compile(pattern, flags | HS_FLAG_PREFILTER | HS_FLAG_SINGLEMATCH, HS_MODE_BLOCK,
		       platform, &db, &err) != HS_SUCCESS) {
		hs_free_compile_error(err);
		return false;
	}
	if (hs_alloc_scratch(db, &scratch) == HS_SUCCESS &&
	    scan(db, text, (unsigned)strlen(text), 0, scratch, count_match, &n) == HS_SUCCESS)
		ok = (n > 0) == want;
	hs_free_scratch(scratch);
	hs_free_database(db);
	return ok;
}

static bool selftest_basic(const hs_platform_info_t *pl, scan_fn *scan)
{
	/* Only matches that must be found: a prefilter may find more. */
	return selftest("fr[e3]e\\s+money", HS_FLAG_CASELESS, "Get FREE  money now", true, pl, scan) &&
	       selftest("^subj.ct$", HS_FLAG_UTF8, "subj\xc3\xa9" "ct", true, pl, scan) &&
	       selftest("\\bwin\\b", 0, "you win!", true, pl, scan) &&
	       /* vectorscan 5.4.9 misses this "ab" (an 18-octet text, both
		* its AVX-512 and AVX2 code); Hyperscan 5.4.0 finds it */
	       selftest("ab|d/[^\"]", 0, "aaaaaaaaaaaaaaa ab", true, pl, scan);
}

static bool selftest_negated_run(const hs_platform_info_t *pl, scan_fn *scan)
{
	char text[300];
	text[0] = '<';
	memset(text + 1, 'a', 250);
	text[251] = '>';
	text[252] = '\0';
	return selftest("<[^>]*>", 0, text, true, pl, scan);
}

/* Issue #382: runs of wide classes followed by literals. */
static bool selftest_runs(const hs_platform_info_t *pl, scan_fn *scan)
{
	static const char text[] = "curl http://vader:8080/ 2>&1 | python";
	return selftest("curl.*\\|\\s*python", HS_FLAG_DOTALL, text, true, pl, scan) &&
	       selftest("curl[^<]*\\|\\s*python", 0, text, true, pl, scan) &&
	       selftest("curl(?:.|\\n)*\\|\\s*python", 0, text, true, pl, scan);
}

static void eng_init(void)
{
	if (hs_valid_platform() != HS_SUCCESS) {
		log_warnx(NULL, "rules: this CPU cannot run the hs library (%s); every rule runs in "
			  "PCRE2", hs_version());
		return;
	}
	if (hs_populate_platform(&eng.platform) != HS_SUCCESS)
		return;
	eng.scan = hs_scan;
	if (!selftest_basic(&eng.platform, eng.scan)) {
		log_warnx(NULL, "rules: the hs library (%s) fails its self-test; every rule runs in "
			  "PCRE2", hs_version());
		return;
	}
	if (!selftest_negated_run(&eng.platform, eng.scan)) {
		scan_fn *avx2 = (scan_fn *)dlsym(RTLD_DEFAULT, "avx2_hs_scan");
		hs_platform_info_t pl = eng.platform;
		pl.cpu_features &= ~(HS_CPU_FEATURES_AVX512 | HS_CPU_FEATURES_AVX512VBMI);
		if (avx2 == NULL || !selftest_basic(&pl, avx2) || !selftest_negated_run(&pl, avx2)) {
			log_warnx(NULL, "rules: vectorscan misses matches on this CPU (its AVX-512 code); "
				  "every rule runs in PCRE2");
			return;
		}
		log_info(NULL, "rules: vectorscan's AVX-512 code misses matches on this CPU; "
			 "using its AVX2 code");
		eng.scan = avx2;
		eng.platform = pl;
	}
	eng.runs_ok = selftest_runs(&eng.platform, eng.scan);
	eng.usable = true;
}

/* ------------------------------------------------------------ building */

/* Whether vectorscan can stand in for PCRE2 on this rule (see the top). */
static bool pf_eligible(const struct crule *c)
{
	if (!c->needed || c->re == NULL || c->type == RT_META || c->type == RT_BAYES)
		return false;
	if (c->type == RT_HEADER && (c->exists || c->if_unset))
		return false;
	if (c->utf) {
		bool wide = false;
		for (const char *p = c->pattern; *p && !wide; p++)
			wide = (unsigned char)*p >= 0x80 || (p[0] == '\\' && p[1] == 'x' && p[2] == '{');
		if (wide && (c->caseless || strstr(c->pattern, "(?") != NULL))
			return false;
	}
	return true;
}

static bool same_group(const struct pf_group *g, const struct crule *c)
{
	if (g->type != c->type)
		return false;
	if (c->type != RT_HEADER)
		return true;
	return g->mod == c->mod && strcasecmp(g->header, c->header) == 0;
}

/* The vectorscan form of a rule's pattern and flags.  PCRE2's extended
 * mode has no compile flag in vectorscan, only the inline (?x). */
static char *pf_expression(const struct crule *c, unsigned *flags)
{
	*flags = HS_FLAG_PREFILTER | HS_FLAG_SINGLEMATCH;
	if (c->caseless)
		*flags |= HS_FLAG_CASELESS;
	if (c->multiline)
		*flags |= HS_FLAG_MULTILINE;
	if (c->dotall)
		*flags |= HS_FLAG_DOTALL;
	if (c->utf)
		*flags |= HS_FLAG_UTF8;
	struct buf b;
	buf_init(&b, 1u << 20);
	if (c->extended)
		buf_puts(&b, "(?x)");
	if (!pf_pattern(c->pattern, c->extended, c->dotall, eng.runs_ok, &b) || b.data == NULL) {
		buf_free(&b);
		return NULL;
	}
	return b.data;
}

/* Compile the items of one database: those that vectorscan refuses (or
 * that match the empty string) are left out and stay with PCRE2 alone.
 * ids gets the rule indexes of those in the database. */
static hs_database_t *pf_compile(struct pf_item **items, size_t n, unsigned *ids, size_t *nids)
{
	const char **expr = xcalloc(n ? n : 1, sizeof(char *));
	unsigned *flags = xcalloc(n ? n : 1, sizeof(unsigned));
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		hs_expr_info_t *info = NULL;
		hs_compile_error_t *err = NULL;
		if (hs_expression_info(items[i]->expr, items[i]->flags, &info, &err) != HS_SUCCESS ||
		    info->min_width == 0) {
			hs_free_compile_error(err);
			free(info);
			continue;
		}
		free(info);
		ids[k] = items[i]->rule;
		expr[k] = items[i]->expr;
		flags[k] = items[i]->flags;
		k++;
	}
	hs_database_t *db = NULL;
	/* What the parse check above lets through can still fail to build
	 * ("pattern too large"): drop that one and build again. */
	while (k >= PF_MIN_RULES) {
		hs_compile_error_t *err = NULL;
		if (hs_compile_multi(expr, flags, ids, (unsigned)k, HS_MODE_BLOCK, &eng.platform, &db,
				     &err) ==
		    HS_SUCCESS)
			break;
		db = NULL;
		int bad = err ? err->expression : -1;
		hs_free_compile_error(err);
		if (bad < 0 || (size_t)bad >= k) {
			log_warnx(NULL, "rules: the hs library could not build a prefilter of %zu rules; "
				  "they run in PCRE2 alone", k);
			break;
		}
		memmove(&expr[bad], &expr[bad + 1], (k - (size_t)bad - 1) * sizeof(char *));
		memmove(&flags[bad], &flags[bad + 1], (k - (size_t)bad - 1) * sizeof(unsigned));
		memmove(&ids[bad], &ids[bad + 1], (k - (size_t)bad - 1) * sizeof(unsigned));
		k--;
	}
	*nids = db ? k : 0;
	free(expr);
	free(flags);
	return db;
}

static void pf_set_free(struct pf_set *set)
{
	if (set == NULL)
		return;
	for (size_t g = 0; g < set->n; g++) {
		for (int u = 0; u < 2; u++) {
			hs_free_database(set->g[g].d[u].db);
			free(set->g[g].d[u].ids);
		}
		free(set->g[g].header);
	}
	free(set->g);
	free(set->group_of);
	free(set);
}

static void pf_job_free(struct pf_job *job)
{
	for (size_t i = 0; i < job->nitems; i++)
		free(job->items[i].expr);
	free(job->items);
	pf_set_free(job->set);
	pthread_mutex_destroy(&job->lock);
	free(job);
}

static bool pf_orphaned(struct pf_job *job)
{
	pthread_mutex_lock(&job->lock);
	bool o = job->orphan;
	pthread_mutex_unlock(&job->lock);
	return o;
}

/* Compile every database of the job, then publish the set in the rule
 * set (or free it all when the rule set is gone). */
static void *pf_build(void *arg)
{
	struct pf_job *job = arg;
	struct pf_set *set = job->set;
	int64_t t0 = clock_mono_ms();
	struct pf_item **sel = xcalloc(job->nitems ? job->nitems : 1, sizeof(*sel));
	for (size_t g = 0; g < set->n && !pf_orphaned(job); g++) {
		for (int u = 0; u < 2; u++) {
			size_t n = 0;
			for (size_t i = 0; i < job->nitems; i++)
				if (job->items[i].group == g && job->items[i].utf == u)
					sel[n++] = &job->items[i];
			struct pf_db *d = &set->g[g].d[u];
			if (n < PF_MIN_RULES)
				continue;
			d->ids = xcalloc(n, sizeof(unsigned));
			d->db = pf_compile(sel, n, d->ids, &d->n);
			for (size_t k = 0; k < d->n; k++)
				set->group_of[d->ids[k]] = (int)g;
			set->nrules += d->n;
		}
	}
	free(sel);
	/* What it costs: the databases once, a scratch per matching thread. */
	size_t dbsize = 0, scratchsize = 0;
	hs_scratch_t *scratch = NULL;
	for (size_t g = 0; g < set->n; g++)
		for (int u = 0; u < 2; u++) {
			size_t sz = 0;
			if (set->g[g].d[u].db && hs_database_size(set->g[g].d[u].db, &sz) == HS_SUCCESS)
				dbsize += sz;
			if (set->g[g].d[u].db)
				hs_alloc_scratch(set->g[g].d[u].db, &scratch);
		}
	if (scratch)
		hs_scratch_size(scratch, &scratchsize);
	hs_free_scratch(scratch);
	int64_t ms = clock_mono_ms() - t0;
	size_t nrules = set->nrules, nregex = job->nregex;
	pthread_mutex_lock(&job->lock);
	job->running = false;
	if (job->orphan) {
		pthread_mutex_unlock(&job->lock);
		pf_job_free(job);
		return NULL;
	}
	__atomic_store_n(&job->rs->pfs, set, __ATOMIC_RELEASE);
	job->set = NULL; /* the rule set's now */
	pthread_mutex_unlock(&job->lock);
	log_info(NULL, "rules: prefilter ready in %lld ms: %zu of %zu regex rules "
		 "(hs %.*s%s; databases %zu KB, %zu KB per matching thread)",
		 (long long)ms, nrules, nregex, (int)strcspn(hs_version(), " "), hs_version(),
		 eng.runs_ok ? "" : ", runs cut", dbsize / 1024, scratchsize / 1024);
	return NULL;
}

void ruleset_prefilter(struct ruleset *rs, bool background)
{
	if (rs == NULL || rs->pfjob != NULL)
		return;
	pthread_once(&eng_once, eng_init);
	if (!eng.usable)
		return;
	static uint64_t generation;
	struct pf_job *job = xcalloc(1, sizeof(*job));
	pthread_mutex_init(&job->lock, NULL);
	job->rs = rs;
	struct pf_set *set = job->set = xcalloc(1, sizeof(*set));
	set->gen = __atomic_add_fetch(&generation, 1, __ATOMIC_RELAXED);
	set->group_of = xcalloc(rs->n ? rs->n : 1, sizeof(int));
	for (size_t i = 0; i < rs->n; i++)
		set->group_of[i] = -1;
	/* Group the eligible rules. */
	for (size_t i = 0; i < rs->n; i++) {
		const struct crule *c = &rs->v[i];
		job->nregex += c->needed && c->re != NULL;
		if (!pf_eligible(c))
			continue;
		unsigned flags;
		char *expr = pf_expression(c, &flags);
		if (expr == NULL)
			continue;
		size_t g = 0;
		while (g < set->n && !same_group(&set->g[g], c))
			g++;
		if (g == set->n) {
			set->g = xrealloc(set->g, (set->n + 1) * sizeof(*set->g));
			memset(&set->g[g], 0, sizeof(set->g[g]));
			set->g[g].type = c->type;
			set->g[g].header = c->header ? xstrdup(c->header) : NULL;
			set->g[g].mod = c->mod;
			set->n++;
		}
		job->items = xrealloc(job->items, (job->nitems + 1) * sizeof(*job->items));
		struct pf_item *it = &job->items[job->nitems++];
		it->expr = expr;
		it->flags = flags;
		it->rule = (unsigned)i;
		it->group = g;
		it->utf = c->utf ? 1 : 0;
	}
	rs->pfjob = job;
	if (background) {
		pthread_t tid;
		pthread_attr_t attr;
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		job->running = true;
		if (pthread_create(&tid, &attr, pf_build, job) == 0) {
			pthread_attr_destroy(&attr);
			return;
		}
		pthread_attr_destroy(&attr);
		job->running = false;
		log_warnx(NULL, "rules: no thread for the prefilter build; building it now");
	}
	pf_build(job);
}

void prefilter_free(struct ruleset *rs)
{
	struct pf_job *job = rs->pfjob;
	if (job == NULL)
		return;
	rs->pfjob = NULL;
	/* Under the lock: the builder publishes the set under it, so once
	 * it is seen not running, what it made is in rs->pfs. */
	pthread_mutex_lock(&job->lock);
	if (job->running) {
		job->orphan = true; /* the builder frees it */
		pthread_mutex_unlock(&job->lock);
		return;
	}
	pthread_mutex_unlock(&job->lock);
	pf_set_free(__atomic_exchange_n(&rs->pfs, NULL, __ATOMIC_ACQ_REL));
	pf_job_free(job);
}

size_t ruleset_prefiltered(const struct ruleset *rs)
{
	const struct pf_set *set = rs ? prefilter_get(rs) : NULL;
	return set ? set->nrules : 0;
}

const struct pf_set *prefilter_get(const struct ruleset *rs)
{
	return __atomic_load_n(&rs->pfs, __ATOMIC_ACQUIRE);
}

size_t prefilter_groups(const struct pf_set *set)
{
	return set->n;
}

void prefilter_group(const struct pf_set *set, size_t g, enum rule_type *type, const char **header,
		     enum hdr_mod *mod)
{
	*type = set->g[g].type;
	*header = set->g[g].header;
	*mod = set->g[g].mod;
}

bool prefilter_holds(const struct pf_set *set, size_t rule)
{
	return set->group_of[rule] >= 0;
}

/* ------------------------------------------------------------ scanning */

bool prefilter_scratch(const struct pf_set *set, void **scratch, uint64_t *gen)
{
	if (*gen == set->gen)
		return true;
	hs_scratch_t *s = *scratch;
	for (size_t g = 0; g < set->n; g++)
		for (int u = 0; u < 2; u++)
			if (set->g[g].d[u].db && hs_alloc_scratch(set->g[g].d[u].db, &s) != HS_SUCCESS) {
				*scratch = s;
				return false;
			}
	*scratch = s;
	*gen = set->gen;
	return true;
}
void prefilter_scratch_free(void *scratch)
{
	hs_free_scratch(scratch);
}

/* Valid UTF-8 (RFC 3629: no overlongs, no surrogates, at most U+10FFFF). */
static bool utf8_valid(const unsigned char *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		/* Eight ASCII octets at a time. */
		if (i + 8 <= n) {
			uint64_t w;
			memcpy(&w, s + i, 8);
			if ((w & 0x8080808080808080ull) == 0) {
				i += 8;
				continue;
			}
		}
		unsigned char c = s[i];
		if (c < 0x80) {
			i++;
			continue;
		}
		size_t k;
		unsigned lo = 0x80, hi = 0xbf;
		if (c >= 0xc2 && c <= 0xdf)
			k = 1;
		else if (c >= 0xe0 && c <= 0xef) {
			k = 2;
			if (c == 0xe0)
				lo = 0xa0;
			else if (c == 0xed)
				hi = 0x9f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			k = 3;
			if (c == 0xf0)
				lo = 0x90;
			else if (c == 0xf4)
				hi = 0x8f;
		} else
			return false;
		if (i + k >= n)
			return false; /* cut short */
		if (s[i + 1] < lo || s[i + 1] > hi)
			return false;
		for (size_t j = 2; j <= k; j++)
			if ((s[i + j] & 0xc0) != 0x80)
				return false;
		i += k + 1;
	}
	return true;
}

static int on_match(unsigned id, unsigned long long from, unsigned long long to, unsigned flags,
		    void *arg)
{
	(void)from;
	(void)to;
	(void)flags;
	((unsigned char *)arg)[id] = 1;
	return 0;
}

bool prefilter_scan(const struct pf_set *set, size_t g, const char *s, size_t len, void *scratch,
		    unsigned char *cand)
{
	const struct pf_group *grp = &set->g[g];
	bool ok = true;
	for (int u = 0; u < 2; u++) {
		const struct pf_db *d = &grp->d[u];
		if (d->db == NULL)
			continue;
		if (u == 1 && !utf8_valid((const unsigned char *)s, len)) {
			for (size_t k = 0; k < d->n; k++)
				cand[d->ids[k]] = 1;
			continue;
		}
		if (len > UINT_MAX ||
		    eng.scan(d->db, s, (unsigned)len, 0, scratch, on_match, cand) != HS_SUCCESS) {
			/* Cannot happen with a scratch made for the database;
			 * if it does, every rule is a candidate. */
			for (size_t k = 0; k < d->n; k++)
				cand[d->ids[k]] = 1;
			ok = false;
		}
	}
	return ok;
}
