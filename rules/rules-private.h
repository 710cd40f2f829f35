/*
 * rules-private.h - internals of the rules library shared by its files:
 *
 *   parse.c    the rule files: lines, continuations, comments, include,
 *              ifplugin/if/else/endif, the directives, into struct rule_def
 *   meta.c     meta expressions: parse to a small program, evaluate
 *   view.c     struct msgview: header values (decoded, raw, :addr, :name),
 *              the MIME walk, body paragraphs (decoded, HTML rendered),
 *              rawbody, URIs, full
 *   strvec.c   struct strvec: the string arrays of the views
 *   decode.c   the text of a MIME part: transfer encoding, charset to UTF-8
 *   uri.c      the URIs of text and of HTML links: found, normalised,
 *              deduplicated
 *   html.c     HTML to text, and the links of HTML
 *   diag.c     the load report (errors and warnings with FILE:LINE)
 *   compile.c  rule_def -> compiled rules (PCRE2 + JIT), ruleset_load,
 *              the built-in check_bayes bands
 *   pfpattern.c  a pattern in the vectorscan prefilter's form (widened, cut)
 *   prefilter.c  vectorscan databases over the regex rules that read the
 *              same text: one scan gives the rules PCRE2 must run
 *   match.c    ruleset_scan/finish/match: per-thread match data, limits,
 *              check_bayes, meta, scores
 *   tokens.c   the tokens of a message for the classifier
 *   bayescomb.c  f(w) and chi-square combining
 *   bayes.c    the classifier: SQLite counts, learning, chi-square
 */
#ifndef RULES_PRIVATE_H
#define RULES_PRIVATE_H

#include "common/common.h"
#include "rules/rules.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

/* ---------------------------------------------------------------- parse.c */

/* RT_BAYES: body NAME eval:check_bayes('LO', 'HI'). */
enum rule_type { RT_HEADER, RT_BODY, RT_RAWBODY, RT_URI, RT_FULL, RT_META, RT_BAYES };

enum hdr_mod { HM_NONE, HM_RAW, HM_ADDR, HM_NAME };

#define RTF_MULTIPLE 0x01
#define RTF_NICE 0x02
#define RTF_NOAUTOLEARN 0x04
#define RTF_NET 0x08
#define RTF_LEARN 0x10
#define RTF_USERCONF 0x20

struct rule_def {
	char *name;
	enum rule_type type;
	char *file;               /* where it was defined */
	unsigned line;
	/* header rules */
	char *header;             /* "Subject", "ALL", "ToCc", "EnvelopeFrom"... */
	enum hdr_mod mod;
	bool exists;              /* "exists:Header" */
	char *if_unset;           /* [if-unset: TEXT], NULL when none */
	/* regex rules (header, body, rawbody, uri, full) */
	bool negate;              /* !~ (header rules only) */
	char *pattern;            /* between the delimiters */
	char *flags;              /* after the closing delimiter: i m s x g ... */
	/* meta rules */
	char *expr;
	/* check_bayes rules: hit when lo <= p < hi (p <= hi when hi >= 1) */
	double bayes_lo, bayes_hi;
	/* from score/describe/tflags lines (also when they come first) */
	bool has_score;           /* a score line was seen; if not, score is */
	double score;             /* SpamAssassin's default: 1.0, 0 for "__" names, 0.01 for "T_" */
	double score_bayes;       /* the same for messages with a Bayes verdict (score set 3) */
	char *describe;
	unsigned tflags;
	unsigned maxhits;         /* tflags maxhits=N; 0: none */
	bool defined;             /* a rule line was seen (score alone is not a rule) */
};

struct rule_defs {
	struct rule_def *v;
	size_t n;
};

/* Parse path (and what it includes) into defs, adding to rep.  A rule
 * defined twice: the later definition wins (SpamAssassin's behaviour),
 * score/describe/tflags apply to the rule of that name wherever they are.
 * Returns 0, or -1 when errors were reported. */
int rules_parse_file(const char *path, struct rule_defs *defs, struct rules_report *rep);
void rule_defs_free(struct rule_defs *defs);
/* When no check_bayes rule is defined: SpamAssassin's bands BAYES_00 ..
 * BAYES_999 (23_bayes.cf) with its set-3 scores, added to defs; score,
 * describe and tflags lines already read for those names apply. */
void rules_bayes_defaults(struct rule_defs *defs);
/* Add a diagnostic. */
void rules_diag_add(struct rules_report *rep, const char *file, unsigned line, bool error,
		    const char *fmt, ...) PRINTFLIKE(5, 6);

/* ----------------------------------------------------------------- meta.c */

/* A meta expression over rule names: && || ! ( ) + - * / comparisons
 * (> >= < <= == !=, not chained) and integer or decimal constants, with
 * Perl's precedence (&& and || give the deciding operand's value); a name
 * is worth its hit count (0 when it did not match or does not exist);
 * x / 0 is 0.  At most 100 levels of parentheses and 32 KiB. */
struct meta_expr;
/* Compile; resolve(name, arg) gives a rule's index, or -1 for an unknown
 * name (which counts as 0).  NULL with *error_r (static text) on a syntax
 * error. */
struct meta_expr *meta_compile(const char *text, int (*resolve)(const char *name, void *arg),
			       void *arg, const char **error_r);
void meta_free(struct meta_expr **e);
/* The rule indexes the expression reads, for ordering metas. */
size_t meta_deps(const struct meta_expr *e, const int **deps);
/* Evaluate with counts[i] = hits of rule i. */
double meta_eval(const struct meta_expr *e, const unsigned *counts);

/* ----------------------------------------------------------------- view.c */

/* One header value: every field of that name, each value unfolded,
 * joined by "\n" (SpamAssassin's multi-field header), "" when absent
 * (and *present false). */
const char *msgview_header(struct msgview *v, const char *name, enum hdr_mod mod, bool *present);
/* Body paragraphs (rendered text, Subject first), rawbody lines (decoded,
 * not rendered), URIs; each an array of NUL-terminated strings. */
const char *const *msgview_body(struct msgview *v, size_t *n);
const char *const *msgview_rawbody(struct msgview *v, size_t *n);
const char *const *msgview_uris(struct msgview *v, size_t *n);
const char *msgview_full(struct msgview *v, size_t *len);

/* Decoded text: octets per message (see view.c). */
#define VIEW_TEXT_MAX (4u << 20)
#define VIEW_HEADER_MAX (64u << 10) /* octets of one header value (ALL included) */
/* FNV-1a of n octets (the hash tables of view.c and uri.c). */
uint64_t view_hash(const char *s, size_t n);

/* --------------------------------------------------------------- strvec.c */

/* NUL-terminated strings one after the other in one buffer (at most
 * 2 * VIEW_TEXT_MAX octets and VIEW_MAX_STRINGS strings); v built on the
 * first strvec_get.  strvec_init before adding; strvec_free also takes a
 * zeroed one. */
struct strvec {
	struct buf b;
	size_t *off;              /* where each string starts in b */
	size_t n, cap;
	const char **v;
};
void strvec_init(struct strvec *s);
/* Add n octets as one string; false (nothing added) when full. */
bool strvec_add(struct strvec *s, const char *p, size_t n);
/* Add, split into pieces of at most VIEW_CHUNK_MAX octets (strvec.c). */
void strvec_add_split(struct strvec *s, const char *p, size_t n);
/* The strings (borrowed, NULL after the last), their number in *n. */
const char *const *strvec_get(struct strvec *s, size_t *n);
void strvec_free(struct strvec *s);

/* --------------------------------------------------------------- decode.c */

/* The transfer encodings that are decoded; others are read as they are. */
enum text_enc { TE_NONE, TE_BASE64, TE_QP };
/* A Content-Transfer-Encoding value (trimmed; NULL when none). */
enum text_enc text_enc_parse(const char *cte);
/* The text of a part: [p, p + len) transfer-decoded, converted from
 * charset (NULL: none) to UTF-8, NULs as blanks, at most budget octets.
 * Malloc'd and NUL-terminated, its length in *len_r. */
char *text_decode(const char *p, size_t len, enum text_enc enc, const char *charset, size_t budget,
		  size_t *len_r);

/* ------------------------------------------------------------------ uri.c */

#define VIEW_MAX_URIS 1000
#define VIEW_URI_MAX 4096

/* The URIs of a message, deduplicated, in order of appearance (and each
 * followed by its normalised form and redirector targets).  tmp below is
 * the caller's scratch buffer, of max 4 * VIEW_URI_MAX. */
#define URI_WORK_MAX (16u * 1024 * 1024) /* octets of links looked at per message */
struct uriset {
	struct strvec sv;
	uint32_t *slots;          /* dedup table: 1 + index into sv, 0 free */
	size_t work;              /* octets looked at so far */
};
/* uriset_init before adding; uriset_free also takes a zeroed one. */
void uriset_init(struct uriset *set);
void uriset_free(struct uriset *set);
/* The target of an HTML link ("www.x" and "//x" read as http://). */
void uriset_add_link(struct uriset *set, const char *link, struct buf *tmp);
/* The URIs written in text. */
void uriset_scan_text(struct uriset *set, const char *p, size_t n, struct buf *tmp);

/* ----------------------------------------------------------------- html.c */

/* Render HTML as text into out (tags dropped, block elements as line
 * breaks, entities decoded to UTF-8, script/style dropped), and append
 * the targets of href/src/action attributes to *links (malloc'd strings,
 * *nlinks updated). */
void html_render(const char *html, size_t len, struct buf *out, char ***links, size_t *nlinks);

/* ------------------------------------------------- compile.c, match.c */

struct crule {
	char *name;
	char *describe;
	char *file;               /* for messages */
	unsigned line;
	enum rule_type type;
	double score;             /* the score that applies (defaults included) */
	double score_bayes;       /* ... when there is a Bayes verdict */
	bool needed;              /* scores, or a scoring meta reads it */
	unsigned tflags, maxhits;
	char *header;             /* header rules */
	enum hdr_mod mod;
	bool exists, negate;
	char *if_unset;
	pcre2_code *re;           /* regex rules (NULL for exists: and metas) */
	char *pattern;            /* ... its source, and how PCRE2 compiled it: */
	bool utf, caseless, multiline, dotall, extended;
	char *expr;               /* metas: the source */
	struct meta_expr *meta;
	double bayes_lo, bayes_hi; /* check_bayes */
};

struct ruleset {
	struct crule *v;
	size_t n;
	size_t *meta_order;       /* metas, each after those it reads */
	size_t nmeta;
	size_t nneeded;
	bool has_bayes;           /* a needed check_bayes rule */
	struct pf_set *pfs;       /* the prefilter once built (atomic: prefilter_get) */
	struct pf_job *pfjob;     /* its build (prefilter.c) */
};

/* ------------------------------------------------------------ pfpattern.c */

/* Appends to out the vectorscan prefilter form of a PCRE2 pattern (it
 * matches wherever the pattern does, perhaps more): counted repeats
 * widened, and unless runs_ok, cut before the first run of a wide class.
 * false: the pattern cannot be given to vectorscan (out is then junk). */
bool pf_pattern(const char *pattern, bool extended, bool dotall, bool runs_ok, struct buf *out);

/* ------------------------------------------------------------ prefilter.c */

/* ruleset_prefilter groups the needed regex rules by the text they
 * read and compiles each group into vectorscan databases, now or in a
 * thread of its own; the set is published when complete.  ruleset_free
 * calls prefilter_free (a build still running finishes alone and frees
 * itself). */
struct pf_set;
void prefilter_free(struct ruleset *rs);
/* The published prefilter, NULL while there is none (every rule runs). */
const struct pf_set *prefilter_get(const struct ruleset *rs);
/* The groups, and the text each reads (header and mod: header groups). */
size_t prefilter_groups(const struct pf_set *set);
void prefilter_group(const struct pf_set *set, size_t g, enum rule_type *type, const char **header,
		     enum hdr_mod *mod);
/* Whether rule (an index of rs->v) is in one of the databases: if so, a
 * rule the scan did not mark cannot match. */
bool prefilter_holds(const struct pf_set *set, size_t rule);
/* Make *scratch (an hs_scratch_t, NULL at first) fit every database of
 * set; *gen remembers the set it fits.  False when out of memory. */
bool prefilter_scratch(const struct pf_set *set, void **scratch, uint64_t *gen);
void prefilter_scratch_free(void *scratch);
/* Scan one text of group g: cand[i] = 1 for each rule i that may match
 * it.  False when the scan failed (every rule of g is then marked). */
bool prefilter_scan(const struct pf_set *set, size_t g, const char *s, size_t len, void *scratch,
		    unsigned char *cand);

/* --------------------------------------------------------------- tokens.c */

#define BAYES_TOKENS_MAX 2000     /* per message: the first ones are kept */

struct bayes_tokens {
	int64_t *h;               /* ascending as signed (SQLite's order) */
	size_t n;
};
/* Every token of a message as text (bayes_tokenize hashes them); fn
 * returns false to stop.  For tests and debugging. */
typedef bool bayes_token_fn(const char *tok, size_t len, void *arg);
void bayes_tokenize_each(struct msgview *mv, bayes_token_fn *fn, void *arg);
/* Tokens from hashes (sorted and deduplicated here, at most
 * BAYES_TOKENS_MAX). */
struct bayes_tokens *bayes_tokens_from(const int64_t *h, size_t n);

/* ------------------------------------------------------- bayes.c, bayescomb.c */

/* Chi-square combining: SpamAssassin's constants (Bayes/CombineChi), but
 * for the strength a token needs to be combined: SpamAssassin's 0.346
 * leaves out tokens with f(w) in (0.154, 0.846); SpamBayes' 0.1 and this
 * 0.2 keep more of the weak evidence, which decides the messages the
 * strong tokens leave unsure (rulesbench -H on ../shared/corpus: 477 of
 * 500 held-out spam caught with 0.346, 484 with 0.1-0.2; ham at or above
 * junk_score 0 and 1 of 2,500). */
#define BAYES_FW_S 0.160          /* Robinson's s: the strength of the prior */
#define BAYES_FW_X 0.538          /* Robinson's x: the prior for an unknown word */
#define BAYES_MIN_STRENGTH 0.2    /* |f(w) - 0.5| below this: not interesting */
#define BAYES_SIGNIFICANT 150     /* at most this many tokens are combined */

/* The probability that a chi-square variable with v (even) degrees of
 * freedom is at least x2 (the inverse chi-square of Robinson's paper). */
double bayes_chi2q(double x2, unsigned v);
/* Robinson's f(w) of a token seen in s spam and h ham messages of
 * nspam and nham (both > 0). */
double bayes_robinson(uint64_t s, uint64_t h, uint64_t nspam, uint64_t nham);
/* Fisher's combining of n values of f(w): I = (1 + H - S) / 2; 0.5 for
 * none. */
double bayes_combine(const double *f, size_t n);
/* |f - 0.5|: how much a token says. */
double bayes_strength(double f);
/* Reorder v so that its first k are the k strongest (any order). */
void bayes_strongest(double *v, size_t n, size_t k);

#endif
