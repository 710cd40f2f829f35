/*
 * deliver.c - durable delivery into the recipients' stores, and the pool
 * of open stores that keeps SQLite handles warm between transactions.
 *
 * The message is written once (trace headers + spooled text) into tmp/
 * of the first recipient, fsynced, then hard-linked into each recipient's
 * folder; each link's directory is fsynced and indexed before the next.
 * Only when every recipient has it does the caller answer 250.
 */
#include "filterd/filterd.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct pooled {
	struct pooled *next;
	struct store *st;
};

struct storepool {
	pthread_mutex_t lock;
	char *data_dir;
	size_t max_idle, idle;
	struct pooled *head; /* most recently returned first */
};

struct storepool *storepool_new(const char *data_dir, size_t max_idle)
{
	struct storepool *p = xcalloc(1, sizeof(*p));
	pthread_mutex_init(&p->lock, NULL);
	p->data_dir = xstrdup(data_dir);
	p->max_idle = max_idle;
	return p;
}

void storepool_free(struct storepool **pp)
{
	struct storepool *p = *pp;
	if (p == NULL)
		return;
	while (p->head) {
		struct pooled *e = p->head;
		p->head = e->next;
		store_close(&e->st);
		free(e);
	}
	pthread_mutex_destroy(&p->lock);
	free(p->data_dir);
	free(p);
	*pp = NULL;
}

struct store *storepool_get(struct storepool *p, const char *addr, char **error_r)
{
	pthread_mutex_lock(&p->lock);
	for (struct pooled **pp = &p->head; *pp; pp = &(*pp)->next) {
		if (strcmp(store_user((*pp)->st), addr) == 0) {
			struct pooled *e = *pp;
			*pp = e->next;
			p->idle--;
			pthread_mutex_unlock(&p->lock);
			struct store *st = e->st;
			free(e);
			return st;
		}
	}
	pthread_mutex_unlock(&p->lock);
	struct store *st = NULL;
	if (store_open_flags(p->data_dir, addr, STORE_OPEN_RECOVER_ONCE, &st, error_r) < 0)
		return NULL;
	return st;
}

void storepool_put(struct storepool *p, struct store *st)
{
	struct pooled *e = xcalloc(1, sizeof(*e));
	struct store *victim = NULL;
	e->st = st;
	pthread_mutex_lock(&p->lock);
	e->next = p->head;
	p->head = e;
	if (++p->idle > p->max_idle) {
		/* Close the least recently used handle. */
		struct pooled **pp = &p->head;
		while ((*pp)->next)
			pp = &(*pp)->next;
		victim = (*pp)->st;
		free(*pp);
		*pp = NULL;
		p->idle--;
	}
	pthread_mutex_unlock(&p->lock);
	if (victim)
		store_close(&victim);
}

void storepool_discard(struct storepool *p, struct store *st)
{
	(void)p;
	store_close(&st);
}

/* The classifier database kept with a store handle; while the user has
 * none, each message looks for the file again (one stat). */
struct user_bayes {
	struct bayes_db *db;
};

static void user_bayes_free(void *p)
{
	struct user_bayes *ub = p;
	bayes_close(&ub->db);
	free(ub);
}

struct bayes_db *storepool_bayes(struct store *st)
{
	struct user_bayes *ub = store_app(st);
	if (ub == NULL) {
		ub = xcalloc(1, sizeof(*ub));
		store_set_app(st, ub, user_bayes_free);
	}
	struct stat sb;
	char *path = xasprintf("%s/%s", store_root(st), STORE_BAYES_FILE), *err = NULL;
	if (ub->db == NULL && stat(path, &sb) == 0) {
		if (bayes_open(path, 0, &ub->db, &err) < 0) {
			log_warnx(NULL, "classifier of %s: %s", log_str(store_user(st)), err);
			free(err);
		}
	}
	free(path);
	return ub->db;
}

int deliver_message(struct storepool *pool, const struct delivery *dv, char **error_r)
{
	struct store_tmp **tmps = xcalloc(dv->ngroups, sizeof(*tmps));
	struct store **stores = xcalloc(dv->nrcpts, sizeof(*stores));
	uint32_t *uids = xcalloc(dv->nrcpts, sizeof(*uids));
	size_t done = 0;
	int r = -1;

	for (size_t i = 0; i < dv->nrcpts; i++) {
		stores[i] = storepool_get(pool, dv->rcpts[i].addr, error_r);
		if (stores[i] == NULL)
			goto out;
	}
	/* One file per group of recipients with the same headers, made in
	 * the first such recipient's tmp/. */
	for (size_t i = 0; i < dv->nrcpts; i++) {
		size_t g = dv->rcpts[i].group;
		if (tmps[g] != NULL)
			continue;
		if (store_tmp_create(stores[i], &tmps[g], error_r) < 0 ||
		    store_tmp_write(tmps[g], dv->headers[g].data, dv->headers[g].len, error_r) < 0 ||
		    spool_copy_to(dv->spool, tmps[g], error_r) < 0 ||
		    store_tmp_finish(tmps[g], error_r) < 0)
			goto out;
	}
	for (; done < dv->nrcpts; done++) {
		const struct delivery_rcpt *rc = &dv->rcpts[done];
		if (store_deliver(stores[done], rc->folder, tmps[rc->group], &rc->meta, &uids[done],
				  error_r) < 0)
			goto out;
	}
	r = 0;
out:
	if (r < 0) {
		/* All or nothing: the sender will retry after our 4xx, so take
		 * back the copies already made rather than deliver twice. */
		for (size_t i = 0; i < done; i++) {
			char *err = NULL;
			if (store_expunge(stores[i], dv->rcpts[i].folder, uids[i], &err) < 0) {
				log_errx(dv->qid, "cannot take back the copy for %s: %s",
					 log_str(dv->rcpts[i].addr), err);
				free(err);
			}
		}
	}
	for (size_t g = 0; g < dv->ngroups; g++)
		store_tmp_free(&tmps[g]);
	for (size_t i = 0; i < dv->nrcpts; i++) {
		if (stores[i] == NULL)
			continue;
		if (r < 0)
			storepool_discard(pool, stores[i]);
		else
			storepool_put(pool, stores[i]);
	}
	free(tmps);
	free(stores);
	free(uids);
	return r;
}
