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
/* Run every rule against the message. */
void ruleset_match(const struct ruleset *rs, struct msgview *mv, struct rules_result *r);
void rules_result_free(struct rules_result *r);

#endif
