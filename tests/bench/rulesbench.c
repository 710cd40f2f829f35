/*
 * rulesbench - rule matching speed and accuracy on a corpus.
 *
 *   rulesbench -r RULES [-j JUNK] [-t THREADS] [-n ROUNDS] [-v] HAM_DIR SPAM_DIR
 *   rulesbench -r RULES -S COUNT      (synthetic messages, when there is no corpus)
 *
 * The vectorscan prefilter is built before the run (prefilter_ms); -P
 * runs every rule in PCRE2 alone, without it; -C scores
 * each message both ways and reports every message whose rule hits or
 * score differ (the prefilter must never change a verdict), exit 1 if
 * any does.
 *
 * Loads RULES (a rules directory or one file) as filterd does, reads every
 * file of the two directories into memory (an mbox "From " first line is
 * skipped by the message view), then scores each message ROUNDS times
 * (default 1) on THREADS threads (default 2): a message view is built and
 * every rule matched, as filterd does at the end of DATA.  Prints:
 *
 *   rules=N msgs=M mb=X secs=T msgs_s=R mb_s=B
 *   ham: H of NH at or above JUNK (P%)   spam: S of NS (Q%)
 *
 * and with -v the rules that hit ham, with counts (for tuning), and the
 * rules that hit spam.  The load time of the rules is printed too.
 *
 * -b trains a classifier on every message first and scores with it, as
 * filterd does for one recipient.  -H N:K holds message i out of that
 * training when i % N == K and reports how the held-out messages fare
 * (spam caught, ham at or above JUNK, the classifier's p in bands; with
 * -v each miss); -D FILE appends a line per held-out message (index,
 * class, score without the classifier, p, score) for fitting the BAYES_
 * band scores; -A SCORE learns only the ham scored at most SCORE by the
 * rules (what autolearning and users teach: tests/bench/learneval.py):
 *
 *   for k in 0 1 2 3 4; do rulesbench -r rules.d -H 5:$k -D held.tsv HAM SPAM; done
 */
#include "common/common.h"
#include "rules/rules.h"

#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct msg {
	char *data;
	size_t len;
	bool spam;
	double score;
	double p;    /* -b: the classifier's spam probability, -1 none */
	double score0; /* -b: the score without the classifier */
	char *tests; /* comma list */
};

static struct msg *msgs;
static bool nspam_given;          /* real ham and spam directories */
static size_t nmsgs;
static struct ruleset *rs;
static struct ruleset *rs_plain;  /* -C: the same rules without the prefilter */
static size_t ndiffer;
static char *bayes_path;          /* -b */
static size_t hold_n, hold_k;     /* -H N:K: message i is held out when i % N == K */
static const char *dump_path;     /* -D: the held-out messages' scores, for fitting */
static double autolearn_ham = -1; /* -A: ham above this score is not learned */
static int rounds = 1;
static size_t next_msg;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void add_msg(char *data, size_t len, bool spam)
{
	msgs = xrealloc(msgs, (nmsgs + 1) * sizeof(*msgs));
	msgs[nmsgs++] = (struct msg){ .data = data, .len = len, .spam = spam };
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void read_dir(const char *dir, bool spam)
{
	DIR *d = opendir(dir);
	if (d == NULL) {
		fprintf(stderr, "rulesbench: %s: cannot open\n", dir);
		exit(2);
	}
	char **names = NULL;
	size_t n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		names = xrealloc(names, (n + 1) * sizeof(char *));
		names[n++] = xasprintf("%s/%s", dir, e->d_name);
	}
	closedir(d);
	qsort(names, n, sizeof(char *), name_cmp);
	for (size_t i = 0; i < n; i++) {
		FILE *f = fopen(names[i], "rb");
		if (f) {
			struct buf b;
			buf_init(&b, 64u << 20);
			char chunk[65536];
			size_t k;
			while ((k = fread(chunk, 1, sizeof(chunk), f)) > 0)
				buf_append(&b, chunk, k);
			fclose(f);
			add_msg(b.data ? b.data : xstrdup(""), b.len, spam);
		}
		free(names[i]);
	}
	free(names);
}

/* Messages that look like mail: headers, a text or HTML body, links. */
static void synthetic(size_t count)
{
	static const char *const words[] = { "report", "meeting", "offer", "free", "account",
					     "update", "project", "invoice", "click", "team" };
	for (size_t i = 0; i < count; i++) {
		struct buf b;
		buf_init(&b, 1u << 20);
		bool html = i % 3 == 0;
		buf_printf(&b,
			   "From: Sender %zu <s%zu@example.test>\nTo: <r@example.test>\n"
			   "Subject: %s %s %zu\nDate: Wed, 02 Dec 2026 10:00:00 +0000\n"
			   "Message-ID: <%zu@example.test>\nMIME-Version: 1.0\n"
			   "Content-Type: %s; charset=utf-8\n\n",
			   i, i, words[i % 10], words[(i / 10) % 10], i, i, html ? "text/html" : "text/plain");
		for (int l = 0; l < 60; l++) {
			if (html)
				buf_puts(&b, "<p>");
			for (int w = 0; w < 10; w++)
				buf_printf(&b, "%s ", words[(i + (size_t)l * 7 + (size_t)w) % 10]);
			if (l % 20 == 0)
				buf_printf(&b, html ? "<a href=\"https://www%zu.example.test/x\">link</a>"
						    : "https://www%zu.example.test/x",
					   i % 50);
			buf_puts(&b, html ? "</p>\n" : "\n");
		}
		add_msg(b.data, b.len, false);
	}
}

static void *worker(void *arg)
{
	(void)arg;
	struct bayes_db *db = NULL;
	char *err = NULL;
	if (bayes_path && bayes_open(bayes_path, 0, &db, &err) != 1) {
		fprintf(stderr, "rulesbench: %s: %s\n", bayes_path, err ? err : "missing");
		exit(1);
	}
	for (;;) {
		pthread_mutex_lock(&lock);
		size_t i = next_msg++;
		pthread_mutex_unlock(&lock);
		if (i >= nmsgs * (size_t)rounds)
			break;
		struct msg *m = &msgs[i % nmsgs];
		struct msgview *mv = msgview_new(m->data, m->len);
		struct rules_result r;
		double last_p = -1;
		if (db) {
			struct rules_scan *sc = ruleset_scan(rs, mv);
			struct bayes_tokens *t = bayes_tokenize(mv);
			double p = -1;
			char *err = NULL;
			if (bayes_classify(db, NULL, 1, t, &p, NULL, &err) < 0) {
				fprintf(stderr, "rulesbench: classify: %s\n", err);
				exit(1);
			}
			ruleset_finish(rs, sc, p, &r);
			last_p = p;
			struct rules_result r0;
			ruleset_finish(rs, sc, -1, &r0);
			m->score0 = r0.score;
			rules_result_free(&r0);
			bayes_tokens_free(&t);
			rules_scan_free(&sc);
		} else {
			ruleset_match(rs, mv, &r);
		}
		if (rs_plain && i < nmsgs) {
			struct rules_result p;
			ruleset_match(rs_plain, mv, &p);
			bool same = p.n == r.n && p.score == r.score;
			for (size_t k = 0; same && k < r.n; k++)
				same = strcmp(p.v[k].name, r.v[k].name) == 0 && p.v[k].count == r.v[k].count;
			if (!same) {
				pthread_mutex_lock(&lock);
				ndiffer++;
				printf("differs: #%zu: prefilter %.2f (%zu hits), PCRE2 alone %.2f (%zu hits):",
				       i, r.score, r.n, p.score, p.n);
				for (size_t k = 0; k < p.n; k++) {
					size_t j = 0;
					while (j < r.n && strcmp(p.v[k].name, r.v[j].name) != 0)
						j++;
					if (j == r.n || r.v[j].count != p.v[k].count)
						printf(" %s", p.v[k].name);
				}
				printf("\n");
				pthread_mutex_unlock(&lock);
			}
			rules_result_free(&p);
		}
		if (i < nmsgs) {
			struct buf t;
			buf_init(&t, 1u << 20);
			for (size_t k = 0; k < r.n; k++)
				buf_printf(&t, "%s%s", k ? "," : "", r.v[k].name);
			m->score = r.score;
			m->p = db ? last_p : -1;
			m->tests = t.data ? t.data : xstrdup("");
		}
		rules_result_free(&r);
		msgview_free(&mv);
	}
	bayes_close(&db);
	return NULL;
}

static bool held_out(size_t i)
{
	return hold_n && i % hold_n == hold_k;
}

/* -b: a classifier database that has learned every message (but those
 * -H holds out). */
static void teach_all(void)
{
	const char *tmp = getenv("TMPDIR");
	char *dir = xasprintf("%s/rulesbench.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (mkdtemp(dir) == NULL) {
		fprintf(stderr, "rulesbench: mkdtemp %s failed\n", dir);
		exit(1);
	}
	bayes_path = xasprintf("%s/bayes.sqlite", dir);
	free(dir);
	struct bayes_db *db = NULL;
	char *err = NULL;
	if (bayes_open(bayes_path, BAYES_CREATE, &db, &err) != 1 || bayes_batch_begin(db, &err) < 0) {
		fprintf(stderr, "rulesbench: %s: %s\n", bayes_path, err ? err : "?");
		exit(1);
	}
	for (size_t i = 0; i < nmsgs; i++) {
		if (held_out(i))
			continue;
		struct msgview *mv = msgview_new(msgs[i].data, msgs[i].len);
		if (autolearn_ham >= 0 && !msgs[i].spam) {
			/* as users teach: ham the filter got right is learned only
			 * when its score is clear (bayes_autolearn_ham) */
			struct rules_result r;
			ruleset_match(rs, mv, &r);
			bool skip = r.score > autolearn_ham;
			rules_result_free(&r);
			if (skip) {
				msgview_free(&mv);
				continue;
			}
		}
		struct bayes_tokens *t = bayes_tokenize(mv);
		char key[32];
		snprintf(key, sizeof(key), "m%zu", i);
		/* Synthetic mail is all one kind: every other one is spam. */
		bool spam = nspam_given ? msgs[i].spam : i % 2 == 1;
		if (bayes_learn(db, key, spam ? BAYES_SPAM : BAYES_HAM, t, &err) < 0) {
			fprintf(stderr, "rulesbench: learn: %s\n", err);
			exit(1);
		}
		bayes_tokens_free(&t);
		msgview_free(&mv);
	}
	if (bayes_batch_end(db, &err) < 0) {
		fprintf(stderr, "rulesbench: %s: %s\n", bayes_path, err);
		exit(1);
	}
	bayes_close(&db);
}

static void teach_cleanup(void)
{
	if (bayes_path == NULL)
		return;
	char *side[] = { "", "-wal", "-shm" };
	for (size_t i = 0; i < 3; i++) {
		char *f = xasprintf("%s%s", bayes_path, side[i]);
		unlink(f);
		free(f);
	}
	char *slash = strrchr(bayes_path, '/');
	*slash = '\0';
	rmdir(bayes_path);
}

struct count {
	char *name;
	unsigned ham, spam;
};

static void tally(struct count **cv, size_t *nc, const char *tests, bool spam)
{
	char *copy = xstrdup(tests);
	for (char *save = NULL, *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		size_t k = 0;
		while (k < *nc && strcmp((*cv)[k].name, t) != 0)
			k++;
		if (k == *nc) {
			*cv = xrealloc(*cv, (*nc + 1) * sizeof(**cv));
			(*cv)[k] = (struct count){ .name = xstrdup(t) };
			(*nc)++;
		}
		if (spam)
			(*cv)[k].spam++;
		else
			(*cv)[k].ham++;
	}
	free(copy);
}

static int by_ham(const void *a, const void *b)
{
	const struct count *x = a, *y = b;
	if (x->ham != y->ham)
		return x->ham < y->ham ? 1 : -1;
	return x->spam < y->spam ? 1 : x->spam > y->spam ? -1 : 0;
}

/* -H: how the messages the classifier did not learn were scored: what a
 * user's unseen mail would get (tests/bench/learneval.py measures it
 * through the whole gateway, and with the learning users would do). */
static void held_out_report(double junk, bool verbose)
{
	static const double edges[] = { 0.01, 0.05, 0.2, 0.4, 0.6, 0.8, 0.95, 0.99, 1.01 };
	size_t n[2] = { 0 }, over[2] = { 0 }, band[2][ARRAY_SIZE(edges)] = { { 0 } };
	FILE *dump = NULL;
	if (dump_path && (dump = fopen(dump_path, "a")) == NULL) {
		fprintf(stderr, "rulesbench: %s: cannot append\n", dump_path);
		exit(1);
	}
	for (size_t i = 0; i < nmsgs; i++) {
		if (!held_out(i))
			continue;
		struct msg *m = &msgs[i];
		if (dump)
			fprintf(dump, "%zu\t%s\t%.3f\t%.6f\t%.3f\n", i, m->spam ? "spam" : "ham",
				m->score0, m->p, m->score);
		int s = m->spam;
		n[s]++;
		over[s] += m->score >= junk;
		size_t b = 0;
		while (b + 1 < ARRAY_SIZE(edges) && m->p >= edges[b])
			b++;
		band[s][b]++;
		if (verbose && (s ? m->score < junk : m->score >= junk - 2))
			printf("held out %s at %.2f, p=%.4f: #%zu %s\n", s ? "spam" : "ham", m->score,
			       m->p, i, m->tests);
	}
	if (dump)
		fclose(dump);
	printf("held out (%zu:%zu): spam caught %zu of %zu (%.1f%%), ham at or above %.1f: %zu of %zu\n",
	       hold_n, hold_k, over[1], n[1], n[1] ? 100.0 * (double)over[1] / (double)n[1] : 0,
	       junk, over[0], n[0]);
	for (int s = 0; s < 2; s++) {
		printf("  p of held-out %s:", s ? "spam" : "ham ");
		for (size_t b = 0; b < ARRAY_SIZE(edges); b++)
			printf(" <%.2f:%zu", edges[b], band[s][b]);
		printf("\n");
	}
}

int main(int argc, char **argv)
{
	const char *rules = NULL;
	double junk = 5.0;
	int threads = 2, c;
	long synth = 0;
	bool verbose = false, plain = false, compare = false, classify = false;
	while ((c = getopt(argc, argv, "r:j:t:n:S:vPCbH:D:A:")) != -1) {
		switch (c) {
		case 'r': rules = optarg; break;
		case 'j': junk = atof(optarg); break;
		case 't': threads = atoi(optarg); break;
		case 'n': rounds = atoi(optarg); break;
		case 'S': synth = atol(optarg); break;
		case 'v': verbose = true; break;
		case 'P': plain = true; break;
		case 'C': compare = true; break;
		case 'b': classify = true; break;
		case 'D': dump_path = optarg; break;
		case 'A': autolearn_ham = atof(optarg); break;
		case 'H':
			if (sscanf(optarg, "%zu:%zu", &hold_n, &hold_k) != 2 || hold_n < 2 || hold_k >= hold_n)
				goto usage;
			classify = true;
			break;
		default: goto usage;
		}
	}
	if (rules == NULL || threads < 1 || threads > 64 || rounds < 1 ||
	    (synth == 0 && argc - optind != 2) || (synth > 0 && argc != optind))
		goto usage;
	log_open("rulesbench", LOG_LVL_INFO, NULL);
	double t0 = now_s();
	struct rules_report rep = { 0 };
	int lr = strstr(rules, ".rules") || strstr(rules, ".cf") ? ruleset_load_file(rules, &rs, &rep)
								  : ruleset_load(rules, &rs, &rep);
	double tload = now_s() - t0, tpf = 0;
	if (lr < 0) {
		struct buf out;
		buf_init(&out, 64u << 20);
		rules_report_format(&rep, &out);
		fprintf(stderr, "%s", out.data ? out.data : "");
		fprintf(stderr, "rulesbench: %s: %zu errors\n", rules, rep.errors);
		return 1;
	}
	if (!plain) {
		t0 = now_s();
		ruleset_prefilter(rs, false);
		tpf = now_s() - t0;
	}
	if (compare) {
		struct rules_report rep2 = { 0 };
		if (strstr(rules, ".rules") || strstr(rules, ".cf"))
			ruleset_load_file(rules, &rs_plain, &rep2);
		else
			ruleset_load(rules, &rs_plain, &rep2);
		rules_report_free(&rep2);
	}
	if (synth > 0) {
		synthetic((size_t)synth);
	} else {
		read_dir(argv[optind], false);
		read_dir(argv[optind + 1], true);
		nspam_given = true;
	}
	size_t bytes = 0;
	for (size_t i = 0; i < nmsgs; i++)
		bytes += msgs[i].len;
	if (classify)
		teach_all();
	pthread_t tid[64];
	t0 = now_s();
	for (int i = 0; i < threads; i++)
		pthread_create(&tid[i], NULL, worker, NULL);
	for (int i = 0; i < threads; i++)
		pthread_join(tid[i], NULL);
	double secs = now_s() - t0;
	double mb = (double)bytes * rounds / 1e6;
	printf("rules=%zu prefiltered=%zu%s warnings=%zu load_ms=%.0f prefilter_ms=%.0f msgs=%zu "
	       "mb=%.1f secs=%.2f msgs_s=%.0f mb_s=%.1f\n",
	       ruleset_size(rs), ruleset_prefiltered(rs), classify ? " classifier=yes" : "",
	       rep.warnings, tload * 1000, tpf * 1000,
	       nmsgs * (size_t)rounds, mb, secs,
	       (double)nmsgs * rounds / secs, mb / secs);
	if (synth == 0) {
		size_t ham = 0, spam = 0, hj = 0, sj = 0;
		struct count *cv = NULL;
		size_t nc = 0;
		for (size_t i = 0; i < nmsgs; i++) {
			bool over = msgs[i].score >= junk;
			if (msgs[i].spam) {
				spam++;
				sj += over;
			} else {
				ham++;
				hj += over;
				if (verbose && over)
					printf("ham at %.1f: #%zu %s\n", msgs[i].score, i, msgs[i].tests);
			}
			tally(&cv, &nc, msgs[i].tests, msgs[i].spam);
		}
		printf("ham: %zu of %zu at or above %.1f (%.2f%%)   spam: %zu of %zu (%.1f%%)\n", hj, ham,
		       junk, ham ? 100.0 * (double)hj / (double)ham : 0, sj, spam,
		       spam ? 100.0 * (double)sj / (double)spam : 0);
		if (verbose) {
			qsort(cv, nc, sizeof(*cv), by_ham);
			printf("%-32s %6s %6s\n", "rule", "ham", "spam");
			for (size_t k = 0; k < nc; k++)
				printf("%-32s %6u %6u\n", cv[k].name, cv[k].ham, cv[k].spam);
		}
	}
	if (hold_n && synth == 0)
		held_out_report(junk, verbose);
	if (compare)
		printf("compare: %zu of %zu messages differ with the prefilter\n", ndiffer, nmsgs);
	teach_cleanup();
	ruleset_free(&rs);
	ruleset_free(&rs_plain);
	rules_report_free(&rep);
	return ndiffer ? 1 : 0;
usage:
	fprintf(stderr, "usage: rulesbench -r RULES [-j JUNK] [-t THREADS] [-n ROUNDS] [-v] [-b] [-H N:K [-D FILE] [-A SCORE]] [-P|-C] "
			"HAM_DIR SPAM_DIR\n"
			"       rulesbench -r RULES [-b] [-P|-C] -S COUNT\n");
	return 2;
}
