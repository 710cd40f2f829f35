/*
 * bayesbench - the classifier's speed: learning, tokenizing, classifying.
 *
 *   bayesbench [-n COUNT] [-f TOKENS] [-H STEP] [-b] [-k] [HAM_DIR SPAM_DIR]
 *
 * Reads every file of the two directories (a corpus such as
 * ../shared/corpus/ham and spam), or makes COUNT synthetic messages
 * (default 2000, half spam) when none are given.  Then, in a fresh
 * database under a mktemp directory (removed at the end unless -k):
 *
 *  1. learns the messages, each in its own transaction as training by
 *     moving mail does (-b: all in one batch), every STEP-th message
 *     held out (default 10; -H 0 learns all): messages learned per second
 *  2. classifies every message, once unmeasured to warm the caches, then
 *     measured: the cost per message of building the message view and
 *     tokenizing, of tokenizing alone (the view already built, as when
 *     the rules have run), and of classifying, mean and p99 in ms; and
 *     how the held-out messages came out (not learned, so a fair test)
 *  3. with -f, pads the database with synthetic messages of words the
 *     messages do not have until it holds TOKENS tokens, and measures
 *     classifying again (the p(w) of the messages' tokens shift, so no
 *     accuracy is reported there)
 *
 * One summary line per figure, "bayes: ...".
 */
#include "common/common.h"
#include "rules/rules.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct msg {
	char *data;
	size_t len;
	bool spam;
	double p;                 /* the verdict, -1 when none */
};

static struct msg *msgs;
static size_t nmsgs;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void add_msg(char *data, size_t len, bool spam)
{
	msgs = xrealloc(msgs, (nmsgs + 1) * sizeof(*msgs));
	msgs[nmsgs++] = (struct msg){ .data = data, .len = len, .spam = spam, .p = -1 };
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void read_dir(const char *dir, bool spam)
{
	DIR *d = opendir(dir);
	if (d == NULL) {
		fprintf(stderr, "bayesbench: %s: cannot open\n", dir);
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

/* ------------------------------------------------------------ synthetic */

static uint64_t rng = 0x9e3779b97f4a7c15u;
static uint32_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng >> 16);
}

#define VOCAB 60000

/* Word i of the vocabulary: letters from its number. */
static void word(struct buf *b, unsigned i)
{
	static const char *const syl[] = { "ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo",
					   "be", "da", "fe", "go", "hu", "ji", "pa", "ze" };
	do {
		buf_puts(b, syl[i % 16]);
		i /= 16;
	} while (i);
}

/* Skewed towards small ranks, as word frequencies are. */
static unsigned zipfish(void)
{
	double u = (double)(rnd() % 1000000) / 1e6;
	return (unsigned)(VOCAB * u * u * u);
}

/* Spam and ham draw from overlapping thirds of the vocabulary. */
static void synthetic(size_t count)
{
	for (size_t i = 0; i < count; i++) {
		bool spam = i % 4 >= 2; /* (not i % 2: every 10th is held out) */
		struct buf b;
		buf_init(&b, 1u << 20);
		unsigned off = spam ? 0 : VOCAB / 3;
		buf_printf(&b,
			   "From: Sender %zu <s%zu@%s.example>\nTo: <r@example.test>\n"
			   "Subject: ", i, i % 300, spam ? "bulk" : "corp");
		for (int w = 0; w < 5; w++) {
			word(&b, (off + zipfish()) % VOCAB);
			buf_puts(&b, " ");
		}
		buf_printf(&b, "\nDate: Wed, 02 Dec 2026 10:00:00 +0000\n"
			       "Message-ID: <%zu@mx%zu.%s.example>\nMIME-Version: 1.0\n"
			       "Content-Type: text/plain; charset=utf-8\n%s\n",
			   i, i % 7, spam ? "bulk" : "corp", spam ? "X-Mailer: MassMailer 2.0\n" : "");
		int words = 100 + (int)(rnd() % 300);
		for (int w = 0; w < words; w++) {
			word(&b, (off + zipfish()) % VOCAB);
			buf_puts(&b, w % 12 == 11 ? "\n" : " ");
		}
		if (spam)
			buf_printf(&b, "\nhttp://www.offer%u.example/buy\n", rnd() % 50);
		add_msg(b.data, b.len, spam);
	}
}

/* A message of words none of the measured ones has. */
static char *filler(size_t i, size_t *len)
{
	struct buf b;
	buf_init(&b, 1u << 20);
	buf_printf(&b, "Subject: filler %zu\n\n", i);
	for (int w = 0; w < 1900; w++)
		buf_printf(&b, "q%08x ", rnd());
	*len = b.len;
	return b.data;
}

/* ------------------------------------------------------------ figures */

static int dbl_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* mean and p99 of v (ms), sorted in place */
static void summary(const char *what, double *v, size_t n, const char *note)
{
	if (n == 0)
		return;
	double sum = 0;
	for (size_t i = 0; i < n; i++)
		sum += v[i];
	qsort(v, n, sizeof(*v), dbl_cmp);
	size_t k = (n * 99 + 99) / 100;
	printf("bayes: %s: mean %.3f ms, p99 %.3f ms, max %.3f ms per message (%zu messages%s%s)\n", what,
	       sum / (double)n, v[k ? k - 1 : 0], v[n - 1], n, note ? "; " : "", note ? note : "");
}

static void die_err(const char *what, char *err)
{
	fprintf(stderr, "bayesbench: %s: %s\n", what, err ? err : "?");
	exit(1);
}

static struct bayes_stats stats_of(struct bayes_db *db)
{
	struct bayes_stats st;
	char *err = NULL;
	if (bayes_stats(db, &st, &err) < 0)
		die_err("stats", err);
	return st;
}

/* Classify every message: once to warm up, once measured. */
static void classify_all(struct bayes_db *db, const char *label, bool record)
{
	double *tv = xcalloc(nmsgs, sizeof(double)), *tt = xcalloc(nmsgs, sizeof(double)),
	       *tc = xcalloc(nmsgs, sizeof(double));
	char *err = NULL;
	for (int round = 0; round < 2; round++) {
		for (size_t i = 0; i < nmsgs; i++) {
			double t0 = now_s();
			struct msgview *mv = msgview_new(msgs[i].data, msgs[i].len);
			struct bayes_tokens *t = bayes_tokenize(mv);
			double t1 = now_s();
			bayes_tokens_free(&t);
			t = bayes_tokenize(mv); /* the view built: tokenizing alone */
			double t2 = now_s();
			double p = -1;
			int r = bayes_classify(db, NULL, 1, t, &p, NULL, &err);
			double t3 = now_s();
			if (r < 0)
				die_err("classify", err);
			if (record && round == 1)
				msgs[i].p = r > 0 ? p : -1;
			tv[i] = (t1 - t0) * 1000;
			tt[i] = (t2 - t1) * 1000;
			tc[i] = (t3 - t2) * 1000;
			bayes_tokens_free(&t);
			msgview_free(&mv);
		}
	}
	struct bayes_stats st = stats_of(db);
	char note[128];
	snprintf(note, sizeof(note), "database of %llu tokens", (unsigned long long)st.ntokens);
	char what[96];
	snprintf(what, sizeof(what), "%sview + tokenize", label);
	summary(what, tv, nmsgs, NULL);
	snprintf(what, sizeof(what), "%stokenize (view built)", label);
	summary(what, tt, nmsgs, NULL);
	snprintf(what, sizeof(what), "%sclassify", label);
	summary(what, tc, nmsgs, note);
	free(tv);
	free(tt);
	free(tc);
}

int main(int argc, char **argv)
{
	long count = 2000, fill = 0, holdout = 10;
	bool batch = false, keep = false;
	int c;
	while ((c = getopt(argc, argv, "n:f:H:bk")) != -1) {
		switch (c) {
		case 'n': count = atol(optarg); break;
		case 'f': fill = atol(optarg); break;
		case 'H': holdout = atol(optarg); break;
		case 'b': batch = true; break;
		case 'k': keep = true; break;
		default: goto usage;
		}
	}
	if (count < 2 || fill < 0 || holdout < 0 || (argc - optind != 0 && argc - optind != 2))
		goto usage;
	log_open("bayesbench", LOG_LVL_ERR, NULL);
	const char *source;
	if (argc - optind == 2) {
		read_dir(argv[optind], false);
		read_dir(argv[optind + 1], true);
		source = "corpus";
	} else {
		synthetic((size_t)count);
		source = "synthetic";
	}
	size_t nspam = 0;
	for (size_t i = 0; i < nmsgs; i++)
		nspam += msgs[i].spam;
	if (nspam == 0 || nspam == nmsgs) {
		fprintf(stderr, "bayesbench: need both ham and spam\n");
		return 1;
	}

	const char *tmp = getenv("TMPDIR");
	char *dir = xasprintf("%s/bayesbench.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (mkdtemp(dir) == NULL) {
		perror("bayesbench: mkdtemp");
		return 1;
	}
	char *path = xasprintf("%s/bayes.sqlite", dir), *err = NULL;
	struct bayes_db *db = NULL;
	if (bayes_open(path, BAYES_CREATE, &db, &err) != 1)
		die_err(path, err);
	printf("bayes: %s: %zu ham + %zu spam messages, every %ld%s held out; database %s\n", source,
	       nmsgs - nspam, nspam, holdout, holdout == 1 ? "st" : holdout == 2 ? "nd" : holdout == 3 ? "rd" : "th",
	       path);

	/* 1. learn */
	size_t learned = 0;
	double t0 = now_s();
	if (batch && bayes_batch_begin(db, &err) < 0)
		die_err("batch", err);
	for (size_t i = 0; i < nmsgs; i++) {
		if (holdout > 0 && i % (size_t)holdout == (size_t)holdout - 1)
			continue;
		char key[32];
		snprintf(key, sizeof(key), "m%zu", i);
		struct msgview *mv = msgview_new(msgs[i].data, msgs[i].len);
		struct bayes_tokens *t = bayes_tokenize(mv);
		if (bayes_learn(db, key, msgs[i].spam ? BAYES_SPAM : BAYES_HAM, t, &err) < 0)
			die_err("learn", err);
		bayes_tokens_free(&t);
		msgview_free(&mv);
		learned++;
	}
	if (batch && bayes_batch_end(db, &err) < 0)
		die_err("batch", err);
	double secs = now_s() - t0;
	struct bayes_stats st = stats_of(db);
	struct stat sb;
	double mb = stat(path, &sb) == 0 ? (double)sb.st_size / 1e6 : 0;
	printf("bayes: learn: %zu messages in %.2f s: %.0f messages/s (view + tokenize + learn, %s)\n",
	       learned, secs, (double)learned / secs,
	       batch ? "all in one transaction" : "one transaction each");
	printf("bayes: database: %llu spam, %llu ham, %llu tokens, %.1f MB\n",
	       (unsigned long long)st.nspam, (unsigned long long)st.nham,
	       (unsigned long long)st.ntokens, mb);

	/* 2. classify */
	classify_all(db, "", true);
	if (holdout > 0) {
		size_t h = 0, hs = 0, s = 0, s5 = 0, s9 = 0;
		for (size_t i = 0; i < nmsgs; i++) {
			if (i % (size_t)holdout != (size_t)holdout - 1)
				continue;
			if (msgs[i].spam) {
				s++;
				s5 += msgs[i].p >= 0.5;
				s9 += msgs[i].p >= 0.9;
			} else {
				h++;
				hs += msgs[i].p >= 0.5;
			}
		}
		printf("bayes: held out: ham at p >= 0.5: %zu of %zu (%.1f%%); spam at p >= 0.5: %zu of %zu "
		       "(%.1f%%), at p >= 0.9: %zu (%.1f%%)\n",
		       hs, h, h ? 100.0 * (double)hs / (double)h : 0, s5, s, s ? 100.0 * (double)s5 / (double)s : 0,
		       s9, s ? 100.0 * (double)s9 / (double)s : 0);
	}

	/* 3. a bigger database */
	if (fill > 0 && st.ntokens < (uint64_t)fill) {
		t0 = now_s();
		size_t k = 0;
		while (st.ntokens < (uint64_t)fill) {
			if (bayes_batch_begin(db, &err) < 0)
				die_err("batch", err);
			for (int j = 0; j < 50; j++, k++) {
				size_t len;
				char *m = filler(k, &len), key[32];
				snprintf(key, sizeof(key), "fill%zu", k);
				struct msgview *mv = msgview_new(m, len);
				struct bayes_tokens *t = bayes_tokenize(mv);
				if (bayes_learn(db, key, k % 2 ? BAYES_SPAM : BAYES_HAM, t, &err) < 0)
					die_err("learn", err);
				bayes_tokens_free(&t);
				msgview_free(&mv);
				free(m);
			}
			if (bayes_batch_end(db, &err) < 0)
				die_err("batch", err);
			st = stats_of(db);
		}
		mb = stat(path, &sb) == 0 ? (double)sb.st_size / 1e6 : 0;
		printf("bayes: filled: %zu synthetic messages in %.1f s (in batches of 50): %llu tokens, %.1f MB\n",
		       k, now_s() - t0, (unsigned long long)st.ntokens, mb);
		char label[64];
		snprintf(label, sizeof(label), "at %lluk tokens: ", (unsigned long long)(st.ntokens / 1000));
		classify_all(db, label, false);
	}

	bayes_close(&db);
	if (keep) {
		printf("bayes: database kept in %s\n", path);
	} else {
		static const char *const sfx[] = { "", "-wal", "-shm", "-journal" };
		for (size_t i = 0; i < ARRAY_SIZE(sfx); i++) {
			char *p = xasprintf("%s%s", path, sfx[i]);
			unlink(p);
			free(p);
		}
		rmdir(dir);
	}
	free(path);
	free(dir);
	for (size_t i = 0; i < nmsgs; i++)
		free(msgs[i].data);
	free(msgs);
	return 0;
usage:
	fprintf(stderr, "usage: bayesbench [-n COUNT] [-f TOKENS] [-H STEP] [-b] [-k] [HAM_DIR SPAM_DIR]\n");
	return 2;
}
