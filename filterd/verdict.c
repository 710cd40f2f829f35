/*
 * verdict.c - each recipient's share of the verdict, and the outcome of
 * the transaction (README "Filtering": several recipients).
 *
 * The checks common to every recipient (authentication, DNS lists, the
 * regex rules) ran once (checks.c).  Per recipient:
 *
 *   - its lists (store_list_match on the author address): a blacklisted
 *     author goes to Junk; a whitelisted one to INBOX without the rules'
 *     and classifier's verdict, but only when the From domain is
 *     authenticated (DMARC pass, or aligned SPF or DKIM pass); a forged
 *     From gets nothing from the whitelist and the log says so;
 *   - its classifier: the user's database once it has learned enough of
 *     both classes, else the site's; the probability feeds the rules'
 *     check_bayes bands (BAYES_00 .. BAYES_999);
 *   - its score: common checks + rules (with its Bayes band); Junk at
 *     junk_score (or a DMARC quarantine), refusal at reject_score.
 *
 * The transaction is refused only when every recipient would refuse it
 * (none whitelists the authenticated author): then the sender's server
 * bounces it.  Otherwise those that would refuse get it in Junk.
 */
#include "filterd/filterd.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ------------------------------------------------ site classifier pool */

#define SITE_POOL_MAX 16

static pthread_mutex_t site_lock = PTHREAD_MUTEX_INITIALIZER;
static struct bayes_db *site_free[SITE_POOL_MAX];
static size_t site_nfree;

struct bayes_db *site_bayes_get(const char *data_dir)
{
	pthread_mutex_lock(&site_lock);
	if (site_nfree > 0) {
		struct bayes_db *db = site_free[--site_nfree];
		pthread_mutex_unlock(&site_lock);
		return db;
	}
	pthread_mutex_unlock(&site_lock);
	char *path = xasprintf("%s/%s", data_dir, STORE_BAYES_FILE), *err = NULL;
	struct bayes_db *db = NULL;
	struct stat sb;
	if (stat(path, &sb) < 0) { /* none yet: one stat per message until there is */
		free(path);
		return NULL;
	}
	int r = bayes_open(path, 0, &db, &err);
	if (r < 0) {
		log_warnx(NULL, "site classifier: %s", err);
		free(err);
	}
	free(path);
	return r > 0 ? db : NULL;
}

void site_bayes_put(struct bayes_db *db)
{
	if (db == NULL)
		return;
	pthread_mutex_lock(&site_lock);
	if (site_nfree < SITE_POOL_MAX) {
		site_free[site_nfree++] = db;
		db = NULL;
	}
	pthread_mutex_unlock(&site_lock);
	bayes_close(&db);
}

void site_bayes_cleanup(void)
{
	pthread_mutex_lock(&site_lock);
	while (site_nfree > 0)
		bayes_close(&site_free[--site_nfree]);
	pthread_mutex_unlock(&site_lock);
}

/* ------------------------------------------------------- per recipient */

static void add(struct buf *tests, const char *name)
{
	if (tests->len)
		buf_putc(tests, ',');
	buf_puts(tests, name);
}

static void recipient(const struct config *cfg, const struct ruleset *rs, const struct tx_info *tx,
		      struct verdict *v, struct storepool *pool, struct bayes_db *site,
		      struct rcpt_verdict *r)
{
	buf_init(&r->tests, 64 * 1024);
	buf_init(&r->headers, 128 * 1024);
	if (v->tests.len)
		buf_append(&r->tests, v->tests.data, v->tests.len);
	r->score = v->score;
	char *err = NULL;
	struct store *st = storepool_get(pool, r->addr, &err);
	if (st == NULL) {
		/* Delivery will fail the same way (and answer 451). */
		log_warnx(tx->qid, "lists of %s: %s", log_str(r->addr), err);
		free(err);
		err = NULL;
	}
	enum store_list_kind kind;
	if (st != NULL && v->from_addr[0]) {
		int m = store_list_match(st, v->from_addr, &kind, r->list_entry, sizeof(r->list_entry),
					 &err);
		if (m < 0) {
			log_warnx(tx->qid, "lists of %s: %s", log_str(r->addr), err);
			free(err);
			err = NULL;
		} else if (m > 0 && kind == STORE_WHITE && v->from_auth == NULL) {
			r->list_ignored = true;
			log_info(tx->qid, "%s whitelists %s, but the From domain is not authenticated: "
				 "whitelist not applied", log_str(r->addr), log_str(r->list_entry));
		} else if (m > 0) {
			r->list = (int)kind;
		}
	}
	if (r->list == STORE_WHITE) {
		/* The rules' and classifier's verdict do not apply. */
		add(&r->tests, "USER_IN_WHITELIST");
		r->action = V_INBOX;
		if (st)
			storepool_put(pool, st);
		return;
	}
	if (v->tokens != NULL && cfg->bayes) {
		struct bayes_db *user = st ? storepool_bayes(st) : NULL;
		int b = bayes_classify(user, site, (uint64_t)cfg->bayes_min_learned, v->tokens,
				       &r->bayes_p, &r->bayes_db, &err);
		if (b < 0) {
			log_warnx(tx->qid, "classifier of %s: %s", log_str(r->addr), err);
			free(err);
			err = NULL;
		}
		r->bayes_done = b > 0;
	}
	if (st)
		storepool_put(pool, st);
	if (v->scan != NULL && rs != NULL) {
		ruleset_finish(rs, v->scan, r->bayes_done ? r->bayes_p : -1, &r->rules);
		for (size_t i = 0; i < r->rules.n; i++) {
			add(&r->tests, r->rules.v[i].name);
			r->score += r->rules.v[i].score;
		}
	}
	if (r->list == STORE_BLACK)
		add(&r->tests, "USER_IN_BLACKLIST");
	/* SpamAssassin's auto-learning: the score without the classifier's
	 * own rules decides (the classifier must not teach itself). */
	double plain = r->score;
	for (size_t i = 0; i < r->rules.n; i++)
		if (strncmp(r->rules.v[i].name, "BAYES_", 6) == 0)
			plain -= r->rules.v[i].score;
	if (r->score >= cfg->reject_score && !tx->postmaster_only)
		r->action = V_REJECT;
	else if (r->list == STORE_BLACK || v->dmarc_quarantine || r->score >= cfg->junk_score)
		r->action = V_JUNK;
	else
		r->action = V_INBOX;
	if (cfg->bayes && cfg->bayes_autolearn && v->tokens != NULL && r->list == 0) {
		if (plain <= cfg->bayes_autolearn_ham && r->action == V_INBOX)
			r->autolearn = STORE_LEARN_HAM;
		else if (plain >= cfg->bayes_autolearn_spam)
			r->autolearn = STORE_LEARN_SPAM;
	}
}

/* A refused message is never stored, so no user can teach with it; with
 * bayes_autolearn a clear one (its score without the classifier's rules at
 * bayes_autolearn_spam or above) teaches the site's classifier here, at
 * most AUTOLEARN_REFUSED_RATE a second (a flood of spam must not queue
 * the sessions behind the database's write lock). */
#define AUTOLEARN_REFUSED_RATE 100
static void autolearn_refused(const struct config *cfg, const struct tx_info *tx,
			      const struct verdict *v)
{
	if (!cfg->bayes || !cfg->bayes_autolearn || v->tokens == NULL || v->nrcpt == 0 ||
	    v->rcpt[0].autolearn != STORE_LEARN_SPAM)
		return;
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	static int64_t second;
	static unsigned used;
	int64_t now = clock_mono_ms() / 1000;
	pthread_mutex_lock(&lock);
	if (now != second) {
		second = now;
		used = 0;
	}
	bool go = used < AUTOLEARN_REFUSED_RATE;
	used += go;
	pthread_mutex_unlock(&lock);
	if (!go)
		return;
	struct bayes_db *site = site_bayes_get(cfg->data_dir);
	char *err = NULL;
	if (site == NULL) {
		char *path = xasprintf("%s/%s", cfg->data_dir, STORE_BAYES_FILE);
		if (bayes_open(path, BAYES_CREATE, &site, &err) < 0) {
			log_warnx(tx->qid, "site classifier: %s", err);
			free(err);
			free(path);
			return;
		}
		free(path);
	}
	bayes_set_max_learned(site, (uint64_t)cfg->bayes_max_learned);
	char *key = xasprintf("refused/%s", tx->qid);
	if (bayes_learn(site, key, BAYES_SPAM, v->tokens, &err) < 0) {
		log_warnx(tx->qid, "site classifier: %s", err);
		free(err);
	}
	free(key);
	site_bayes_put(site);
}

void checks_recipients(struct msgcheck *m, const struct tx_info *tx, struct verdict *v,
		       struct storepool *pool, const char *const *rcpts, size_t n)
{
	const struct config *cfg = m->cfg;
	v->rcpt = xcalloc(n ? n : 1, sizeof(*v->rcpt));
	v->nrcpt = n;
	struct bayes_db *site = cfg->bayes && v->tokens ? site_bayes_get(cfg->data_dir) : NULL;
	size_t refusing = 0;
	for (size_t i = 0; i < n; i++) {
		v->rcpt[i].addr = rcpts[i];
		recipient(cfg, m->ck ? m->ck->rules : NULL, tx, v, pool, site, &v->rcpt[i]);
		refusing += v->rcpt[i].action == V_REJECT;
	}
	site_bayes_put(site);

	if (n > 0 && refusing == n) {
		v->action = V_REJECT;
		autolearn_refused(cfg, tx, v);
		snprintf(v->reply, sizeof(v->reply),
			 "550 5.7.1 Message refused as spam (score %.1f), reference %s", v->rcpt[0].score,
			 tx->qid);
	} else if (v->dns_failed && cfg->dns_error_tempfail) {
		v->action = V_TEMPFAIL;
		snprintf(v->reply, sizeof(v->reply),
			 "451 4.7.0 Temporary DNS failure while checking the message, try again later (%s)",
			 tx->qid);
	} else {
		v->action = V_INBOX;
		for (size_t i = 0; i < n; i++)
			if (v->rcpt[i].action == V_REJECT)
				v->rcpt[i].action = V_JUNK;
	}

	/* Headers and log fields. */
	for (size_t i = 0; i < n; i++) {
		struct rcpt_verdict *r = &v->rcpt[i];
		bool spam = r->action != V_INBOX;
		buf_printf(&r->headers, "X-Spam-Score: %.1f\n", r->score);
		buf_printf(&r->headers, "X-Spam-Status: %s, score=%.1f required=%.1f tests=%s\n",
			   spam ? "Yes" : "No", r->score, cfg->junk_score,
			   r->tests.len ? r->tests.data : "none");
	}
	const struct rcpt_verdict *first = n ? &v->rcpt[0] : NULL;
	buf_printf(&v->log, " score=%.1f tests=%s", first ? first->score : v->score,
		   first && first->tests.len ? first->tests.data : v->tests.len ? v->tests.data : "none");
	bool per_rcpt = n > 1;
	for (size_t i = 0; i < n && !per_rcpt; i++)
		per_rcpt = v->rcpt[i].list || v->rcpt[i].list_ignored || v->rcpt[i].bayes_done;
	if (!per_rcpt)
		return;
	buf_puts(&v->log, " verdicts=");
	for (size_t i = 0; i < n; i++) {
		const struct rcpt_verdict *r = &v->rcpt[i];
		buf_printf(&v->log, "%s<%s>:%s:%.1f", i ? "," : "", log_str(r->addr),
			   r->action == V_INBOX ? "INBOX" : "Junk", r->score);
		if (r->bayes_done)
			buf_printf(&v->log, ":bayes=%.3f(%s)", r->bayes_p, r->bayes_db);
		if (r->list)
			buf_printf(&v->log, ":%slist(%s)", r->list == STORE_WHITE ? "white" : "black",
				   log_str(r->list_entry));
		if (r->list_ignored)
			buf_printf(&v->log, ":whitelist-ignored(%s,unauthenticated)",
				   log_str(r->list_entry));
	}
}
