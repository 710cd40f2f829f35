/*
 * train.c - training by moving mail (DESIGN.md "Training by moving mail").
 *
 * A message that arrives in a folder by COPY, MOVE or APPEND is judged by
 * where it went and by the verdict it was delivered with (a copy given
 * back by APPEND keeps the verdict: the store finds it by content):
 *
 *   Whitelist        ham (and its From address is a whitelist entry while
 *                    the message is there: store/lists.c)
 *   Blacklist        spam (a blacklist entry likewise)
 *   Junk             spam, unless the filter had put it in Junk itself
 *   Trash, deleting  nothing changes
 *   any other folder ham if the filter had said junk; otherwise what was
 *                    learned is forgotten (moving back undoes)
 *
 * The decision is queued in the store inside the command's transaction
 * (train_note); the learning itself (reading and tokenizing the message,
 * the classifier's counts) runs after the tagged reply, before the
 * session waits for the next command (train_flush), and again at the next
 * login for whatever a crash left queued.  POP3 sessions apply the queue
 * too (train_apply: deliveries' autolearning, moves made over IMAP).  The classifier keeps per
 * message key what it has learned, so learning is idempotent: moving
 * twice learns once, moving back unlearns.
 */
#include "imapd/imapd.h"
#include "rules/rules.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define TRAIN_BATCH 500            /* jobs applied per round */
#define TRAIN_BUDGET_MS 3000       /* of learning between two commands */
#define TRAIN_HEAD_MAX (1024 * 1024)
#define TRAIN_BODY_MAX (1024 * 1024)

static bool is_trash(const char *folder)
{
	/* The special folder, and the names clients use for it. */
	return strcmp(folder, "Trash") == 0 || strcasecmp(folder, "Deleted Items") == 0 ||
	       strcasecmp(folder, "Deleted Messages") == 0 || strcasecmp(folder, "Bin") == 0;
}

bool train_want(const char *dest, const char *verdict, enum store_learn *want_r)
{
	bool was_junk = verdict != NULL && strcmp(verdict, "junk") == 0;
	if (is_trash(dest))
		return false;
	if (strcmp(dest, "Whitelist") == 0)
		*want_r = STORE_LEARN_HAM;
	else if (strcmp(dest, "Blacklist") == 0)
		*want_r = STORE_LEARN_SPAM;
	else if (strcmp(dest, "Junk") == 0)
		*want_r = was_junk ? STORE_LEARN_NONE : STORE_LEARN_SPAM;
	else
		*want_r = was_junk ? STORE_LEARN_HAM : STORE_LEARN_NONE;
	return true;
}

struct note {
	const char *dest;
	enum store_learn want;
	bool decided;
	char key[STORE_MSGKEY_SIZE];
};

static int note_cb(const struct store_msg *m, void *arg)
{
	struct note *n = arg;
	n->decided = train_want(n->dest, m->verdict, &n->want);
	if (m->msgkey != NULL)
		str_copy(n->key, m->msgkey, sizeof(n->key));
	return 0;
}

void train_note(struct session *s, const char *dest, uint32_t uid)
{
	char *err = NULL;
	struct note n = { .dest = dest };
	if (store_messages(s->store, dest, uid, uid, note_cb, &n, &err) < 0)
		goto fail;
	if (!n.decided)
		return;
	if (n.key[0] == '\0' && store_msgkey_get(s->store, dest, uid, n.key, &err) < 0)
		goto fail;
	if (store_train_queue(s->store, n.key, n.want, &err) < 0)
		goto fail;
	s->train_pending = true;
	return;
fail:
	log_warnx(s->sid, "training %s UID %u not queued: %s", log_str(dest), uid, err);
	free(err);
}

/* The tokens of the message with this key, from any copy in the store;
 * NULL when there is none (expunged before we got to it). */
static struct bayes_tokens *tokens_of(struct store *st, const char *key)
{
	char *folder = NULL, *err = NULL;
	uint32_t uid;
	int r = store_msgkey_find(st, key, &folder, &uid, &err);
	if (r <= 0) {
		if (r < 0) {
			log_warnx(NULL, "training %s: %s", key, err);
			free(err);
		}
		return NULL;
	}
	int fd = store_message_open(st, folder, uid, &err);
	free(folder);
	if (fd < 0) {
		free(err);
		return NULL;
	}
	/* What filterd classifies: the header section and the start of the
	 * body (rules' scan size). */
	struct buf b;
	buf_init(&b, TRAIN_HEAD_MAX + TRAIN_BODY_MAX);
	for (;;) {
		char *p = buf_reserve(&b, 65536);
		if (p == NULL)
			break;
		ssize_t n = read(fd, p, 65536);
		if (n <= 0)
			break;
		buf_commit(&b, (size_t)n);
	}
	close(fd);
	struct msgview *mv = msgview_new(b.data ? b.data : "", b.len);
	struct bayes_tokens *t = bayes_tokenize(mv);
	msgview_free(&mv);
	buf_free(&b);
	return t;
}

static const char *class_name(enum store_learn c)
{
	return c == STORE_LEARN_SPAM ? "spam" : c == STORE_LEARN_HAM ? "ham" : "none";
}

/* Apply one job to a database; true when it is done with. */
static bool learn_one(struct bayes_db *db, const char *key, enum store_learn want,
		      struct bayes_tokens **t, struct store *st, const char *msgkey,
		      const char *sid, int *changed)
{
	char *err = NULL;
	enum bayes_class now;
	if (bayes_learned(db, key, &now, &err) < 0)
		goto fail;
	if ((int)now == (int)want)
		return true;
	/* Forgetting, or moving between classes, works from the tokens
	 * kept with the key; learning anew needs the message. */
	if (want != STORE_LEARN_NONE && now == BAYES_NONE && *t == NULL) {
		*t = tokens_of(st, msgkey);
		if (*t == NULL) {
			log_warnx(sid, "training: message %s is gone, not learned as %s", msgkey,
				  class_name(want));
			return true;
		}
	}
	int r = bayes_learn(db, key, (enum bayes_class)want, *t, &err);
	if (r < 0)
		goto fail;
	*changed += r;
	return true;
fail:
	log_warnx(sid, "training %s as %s: %s", msgkey, class_name(want), err);
	free(err);
	return false;
}

static int open_db(const char *path, uint64_t max_learned, struct bayes_db **db, const char *sid)
{
	char *err = NULL;
	if (bayes_open(path, BAYES_CREATE, db, &err) < 0) {
		log_warnx(sid, "training: %s", err);
		free(err);
		return -1;
	}
	bayes_set_max_learned(*db, max_learned);
	return 0;
}

/* Whose queue a round works on: an IMAP or a POP3 session's user. */
struct train_who {
	struct store *store;
	const char *user;
	const char *data_dir;     /* the site database's */
	bool learn_site;
	uint64_t max_learned;     /* bayes_max_learned */
	const char *sid;          /* for the log */
};

/* One round: at most TRAIN_BATCH jobs.  Returns how many there were. */
static size_t train_round(const struct train_who *s);

bool train_apply(struct store *st, const char *user, const struct config *cfg,
		 const char *data_dir, const char *sid)
{
	if (st == NULL)
		return false;
	const struct train_who who = { st, user, data_dir, cfg->bayes_learn_site != 0,
				       (uint64_t)cfg->bayes_max_learned, sid };
	/* A long queue (a day of deliveries' autolearning, a MOVE of
	 * thousands) is worked through in rounds; past the time budget the
	 * rest waits for the next command. */
	int64_t end = clock_mono_ms() + TRAIN_BUDGET_MS;
	while (train_round(&who) == TRAIN_BATCH)
		if (clock_mono_ms() >= end)
			return true;
	return false;
}

void train_flush(struct session *s)
{
	s->train_pending = train_apply(s->store, s->user, s->cfg, s->app->data_dir, s->sid);
}

static size_t train_round(const struct train_who *s)
{
	char *err = NULL;
	struct store_train_job *jobs = NULL;
	size_t n = 0;
	if (store_train_pending(s->store, TRAIN_BATCH, &jobs, &n, &err) < 0) {
		log_warnx(s->sid, "training: %s", err);
		free(err);
		return 0;
	}
	if (n == 0)
		return 0;
	int64_t start = clock_mono_ms();
	struct bayes_db *user = NULL, *site = NULL;
	char *upath = xasprintf("%s/%s", store_root(s->store), STORE_BAYES_FILE);
	char *spath = xasprintf("%s/%s", s->data_dir, STORE_BAYES_FILE);
	bool *ok = xcalloc(n, sizeof(*ok));
	size_t ret = n, done = 0;
	if (open_db(upath, s->max_learned, &user, s->sid) < 0 ||
	    (s->learn_site && open_db(spath, s->max_learned, &site, s->sid) < 0)) {
		ret = 0; /* logged; the jobs wait for the next session */
		goto out;
	}
	/* One transaction per database for the round; the jobs are removed
	 * from the store only once both have committed (a crash in between
	 * repeats them, which learning by key makes harmless). */
	if (bayes_batch_begin(user, &err) < 0 || (site && bayes_batch_begin(site, &err) < 0)) {
		log_warnx(s->sid, "training: %s", err);
		free(err);
		ret = 0;
		goto out;
	}
	int changed = 0;
	for (size_t i = 0; i < n; i++) {
		struct store_train_job *j = &jobs[i];
		struct bayes_tokens *t = NULL;
		/* The site database knows the message under the user's name. */
		char *skey = xasprintf("%s/%s", s->user, j->msgkey);
		ok[i] = learn_one(user, j->msgkey, j->want, &t, s->store, j->msgkey, s->sid, &changed);
		if (ok[i] && site != NULL)
			ok[i] = learn_one(site, skey, j->want, &t, s->store, j->msgkey, s->sid, &changed);
		free(skey);
		bayes_tokens_free(&t);
	}
	if (bayes_batch_end(user, &err) < 0 || (site && bayes_batch_end(site, &err) < 0)) {
		log_warnx(s->sid, "training: %s", err);
		free(err);
		ret = 0;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		if (!ok[i])
			continue; /* stays queued for the next session */
		if (store_train_done(s->store, &jobs[i], &err) < 0) {
			log_warnx(s->sid, "training: %s", err);
			free(err);
			err = NULL;
			continue;
		}
		done++;
		if (n <= 10)
			log_info(s->sid, "learned message %s as %s", jobs[i].msgkey,
				 class_name(jobs[i].want));
	}
	if (n > 10)
		log_info(s->sid, "training: %zu of %zu messages applied in %lld ms", done, n,
			 (long long)(clock_mono_ms() - start));
	if (done < n)
		ret = 0; /* the failed ones: not again in this session's loop */
out:
	bayes_close(&user);
	bayes_close(&site);
	free(upath);
	free(spath);
	free(ok);
	store_train_jobs_free(jobs, n);
	return ret;
}
