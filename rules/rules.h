/*
 * rules.h - the rule language of rules.d/ (SpamAssassin's: header, body,
 * rawbody, uri, full, meta, score, describe, tflags, include, ifplugin/if)
 * compiled to PCRE2 with JIT, and the scoring of a message with it.
 *
 * A struct ruleset is built once (ruleset_load) and then shared read-only
 * by every thread; matching keeps its PCRE2 match data and JIT stack per
 * thread.  A message is looked at through a struct msgview, built once
 * per message: decoded and raw headers, the rendered body text, the raw
 * decoded body, the URIs, and the full text.
 *
 * The classifier (bayes_*) keeps its counts in SQLite files, one per
 * database (a user's, the site's); eval:check_bayes rules score its
 * verdict, which differs per recipient: ruleset_scan runs the regex rules
 * once per message, ruleset_finish scores them with each recipient's
 * verdict.
 */
#ifndef RULES_RULES_H
#define RULES_RULES_H

#include "common/common.h"

/* ------------------------------------------------------------ load */

/* What loading said: errors (the set is refused) and warnings (a
 * construct skipped), each naming FILE:LINE. */
struct rules_diag {
	char *file;
	unsigned line;
	bool error;
	char *msg;
};
struct rules_report {
	struct rules_diag *v;
	size_t n, errors, warnings;
};
void rules_report_free(struct rules_report *r);
/* "FILE:LINE: error|warning: msg" lines into out. */
void rules_report_format(const struct rules_report *r, struct buf *out);

struct ruleset;
/* Load every *.rules file of dir (in name order, includes followed),
 * compile it.  0 with *rs set, or -1 when there were errors (*rs NULL).
 * The report is filled either way. */
int ruleset_load(const char *dir, struct ruleset **rs, struct rules_report *rep);
/* The same for one file (mailctl rules check FILE, tests). */
int ruleset_load_file(const char *path, struct ruleset **rs, struct rules_report *rep);
void ruleset_free(struct ruleset **rs);
size_t ruleset_size(const struct ruleset *rs); /* rules that can score or feed a meta */
/* Build the vectorscan prefilter of rs (one scan of each text tells
 * which rules PCRE2 must run; the verdict is the same with or without
 * it): now, returning when it is built, or in a thread of its own
 * (background), the rules working meanwhile without it.  Building takes
 * seconds for thousands of rules: filterd builds in the background, a
 * tool scoring one message need not build at all.  Once per rule set;
 * before sharing rs between threads. */
void ruleset_prefilter(struct ruleset *rs, bool background);
/* How many rules the prefilter holds (the others always run in PCRE2);
 * 0 until it is built. */
size_t ruleset_prefiltered(const struct ruleset *rs);

/* ------------------------------------------------------------ view */

/* The parts of a message rules look at.  msg is the whole message (LF or
 * CRLF line ends), borrowed until msgview_free. */
struct msgview;
struct msgview *msgview_new(const char *msg, size_t len);
void msgview_free(struct msgview **v);

/* ------------------------------------------------------------ match */

struct rule_hit {
	const char *name;        /* borrowed from the ruleset */
	const char *describe;    /* "" when none */
	double score;
	unsigned count;          /* times it matched (tflags multiple), >= 1 */
};
struct rules_result {
	struct rule_hit *v;      /* rules with a score that matched, in rule order */
	size_t n;
	double score;
	unsigned limits;         /* matches cut short by the match limits */
	size_t skipped;          /* rules not run: the message's time budget ran out */
};
/* Run every rule against the message, without a Bayes verdict (scan,
 * finish with -1, free). */
void ruleset_match(const struct ruleset *rs, struct msgview *mv, struct rules_result *r);
void rules_result_free(struct rules_result *r);

/* Matching in two steps for a message with several recipients whose
 * classifiers differ: ruleset_scan runs every regex rule once;
 * ruleset_finish evaluates the check_bayes rules with one probability
 * (bayes_p < 0: no Bayes verdict) and the metas, and fills r (as
 * ruleset_match does; limits and skipped come from the scan).  It may be
 * called many times.  As SpamAssassin does, a rule with four scores gets
 * its score-set-3 score (Bayes and network tests) when there is a
 * verdict, its set-1 score (network tests) when there is none. */
struct rules_scan;
struct rules_scan *ruleset_scan(const struct ruleset *rs, struct msgview *mv);
void ruleset_finish(const struct ruleset *rs, const struct rules_scan *sc, double bayes_p,
		    struct rules_result *r);
void rules_scan_free(struct rules_scan **sc);
/* Whether the rule set has check_bayes rules (built-in bands included)
 * that can change a score: false when every one scores 0, so that the
 * caller need not classify. */
bool ruleset_has_bayes(const struct ruleset *rs);

/* ------------------------------------------------------------ classifier */

/* A Bayesian classifier in the manner of SpamAssassin and bogofilter:
 * tokens from the decoded headers and body text, Robinson's f(w) with
 * Fisher's chi-square combining, counts in SQLite (WAL). */
struct bayes_tokens;                      /* the tokens of one message (sorted unique 64-bit hashes) */
struct bayes_tokens *bayes_tokenize(struct msgview *mv);
void bayes_tokens_free(struct bayes_tokens **t);
size_t bayes_tokens_count(const struct bayes_tokens *t);

enum bayes_class { BAYES_NONE = 0, BAYES_SPAM = 1, BAYES_HAM = 2 };
#define BAYES_CREATE 1u                   /* bayes_open: create the file when missing */
struct bayes_db;
/* 1 opened, 0 missing (without BAYES_CREATE), -1 error.  A struct
 * bayes_db is used by one thread at a time; any number of them, in any
 * processes, may have the same file open. */
int bayes_open(const char *path, unsigned flags, struct bayes_db **db_r, char **error_r);
void bayes_close(struct bayes_db **db);
struct bayes_stats { uint64_t nspam, nham, ntokens; };
int bayes_stats(struct bayes_db *db, struct bayes_stats *st, char **error_r);
/* Learn the message known as key (a stable id: the same message always
 * has the same key) as cls; BAYES_NONE forgets it.  Idempotent: a message
 * already learned as cls changes nothing; one learned as the other class
 * is moved (its old tokens unlearned, the new ones learned).  The token
 * hashes learned are kept with the key, so forgetting and moving need no
 * message: t may be NULL when cls is BAYES_NONE, or when the key is
 * already learned (then its kept tokens are used).
 * Returns 1 changed, 0 nothing to do, -1 error. */
int bayes_learn(struct bayes_db *db, const char *key, enum bayes_class cls,
		const struct bayes_tokens *t, char **error_r);
/* Expiry: once more than max messages are learned, each new one makes
 * the database forget the least recently learned (0: never). */
void bayes_set_max_learned(struct bayes_db *db, uint64_t max);
/* What key is learned as (BAYES_NONE: not learned).  0 or -1. */
int bayes_learned(struct bayes_db *db, const char *key, enum bayes_class *cls_r, char **error_r);
/* Many learns in one transaction (BEGIN IMMEDIATE ... COMMIT); bayes_learn
 * outside a batch is its own transaction.  A learn that fails inside a
 * batch is undone alone; the batch goes on. */
int bayes_batch_begin(struct bayes_db *db, char **error_r);
int bayes_batch_end(struct bayes_db *db, char **error_r);
/* The probability that the message is spam, 0..1.  The user's database
 * when it has learned at least min_learned messages of each class, else
 * site's (either may be NULL) when it has (min_learned 0 counts as 1).
 * Returns 1 with *p_r, 0 when neither has learned enough (no verdict;
 * *p_r untouched), -1 error.  *which_r (may be NULL): "user" or "site".
 * A message none of whose tokens says much either way gets 0.5. */
int bayes_classify(struct bayes_db *user, struct bayes_db *site, uint64_t min_learned,
		   const struct bayes_tokens *t, double *p_r, const char **which_r, char **error_r);

#endif
