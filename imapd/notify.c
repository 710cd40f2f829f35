/*
 * notify.c - change notification for IDLE: one inotify instance per
 * process (the kernel allows few instances per user, and a thousand IDLE
 * sessions must not need a thousand), one watch per store root shared by
 * every session of that user, and one eventfd per subscription.
 *
 * What is watched: every commit to a store's SQLite index in WAL mode
 * writes index.sqlite-wal in the store root, whichever process made it
 * (filterd delivering, another imapd session or process, mailctl).  Writes
 * through SQLite's shared-memory map (-shm) raise no inotify events, so
 * readers do not wake anyone.  A checkpoint wakes sessions for nothing;
 * they find HIGHESTMODSEQ unchanged and go back to sleep.
 */
#include "imapd/imapd.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

struct notify_sub {
	struct notify_sub *next;
	struct watch *w;
	int efd;
};

struct watch {
	struct watch *next;
	int wd;
	char *dir;
	struct notify_sub *subs;
};

struct notify {
	int ifd;
	int stop_pipe[2];
	pthread_t thread;
	bool running;
	pthread_mutex_t lock;
	struct watch *watches;
};

/* Commits append to the WAL file; nothing else there (checkpoints into
 * the database file, the -shm index, opens and closes) means news.  Not
 * IN_CLOSE_WRITE: a reader closing its read-write WAL descriptor (a
 * suspended IDLE session) raises it without writing anything. */
static bool interesting(const struct inotify_event *ev)
{
	return ev->len > 0 && strcmp(ev->name, "index.sqlite-wal") == 0;
}

static void *notify_thread(void *arg)
{
	struct notify *n = arg;
	char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
	for (;;) {
		struct pollfd pfd[2] = { { .fd = n->ifd, .events = POLLIN },
					 { .fd = n->stop_pipe[0], .events = POLLIN } };
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pfd[1].revents)
			break;
		ssize_t len = read(n->ifd, buf, sizeof(buf));
		if (len <= 0) {
			if (len < 0 && (errno == EINTR || errno == EAGAIN))
				continue;
			break;
		}
		/* Coalesce: wake each watch's subscribers once per batch. */
		int woken[64];
		size_t nwoken = 0;
		pthread_mutex_lock(&n->lock);
		for (char *p = buf; p < buf + len;) {
			const struct inotify_event *ev = (const struct inotify_event *)p;
			p += sizeof(*ev) + ev->len;
			if (!interesting(ev) && !(ev->mask & IN_Q_OVERFLOW))
				continue;
			bool seen = false;
			for (size_t i = 0; i < nwoken; i++)
				seen |= woken[i] == ev->wd;
			if (seen)
				continue;
			if (nwoken < ARRAY_SIZE(woken))
				woken[nwoken++] = ev->wd;
			for (struct watch *w = n->watches; w; w = w->next) {
				if (w->wd != ev->wd && !(ev->mask & IN_Q_OVERFLOW))
					continue;
				for (struct notify_sub *s = w->subs; s; s = s->next) {
					uint64_t one = 1;
					(void)!write(s->efd, &one, sizeof(one));
				}
			}
		}
		pthread_mutex_unlock(&n->lock);
	}
	return NULL;
}

struct notify *notify_new(void)
{
	struct notify *n = xcalloc(1, sizeof(*n));
	pthread_mutex_init(&n->lock, NULL);
	n->ifd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
	if (n->ifd < 0) {
		log_warn(NULL, "inotify_init1: IDLE sees changes only at its keep-alives");
		return n;
	}
	if (pipe2(n->stop_pipe, O_CLOEXEC) < 0 ||
	    pthread_create(&n->thread, NULL, notify_thread, n) != 0) {
		log_warn(NULL, "notifier thread");
		close(n->ifd);
		n->ifd = -1;
		return n;
	}
	n->running = true;
	return n;
}

void notify_free(struct notify **np)
{
	struct notify *n = *np;
	if (n == NULL)
		return;
	if (n->running) {
		(void)!write(n->stop_pipe[1], "x", 1);
		pthread_join(n->thread, NULL);
		close(n->stop_pipe[0]);
		close(n->stop_pipe[1]);
	}
	if (n->ifd >= 0)
		close(n->ifd);
	while (n->watches) {
		struct watch *w = n->watches;
		n->watches = w->next;
		while (w->subs) {
			struct notify_sub *s = w->subs;
			w->subs = s->next;
			close(s->efd);
			free(s);
		}
		free(w->dir);
		free(w);
	}
	pthread_mutex_destroy(&n->lock);
	free(n);
	*np = NULL;
}

struct notify_sub *notify_subscribe(struct notify *n, const char *dir)
{
	if (n == NULL || n->ifd < 0)
		return NULL;
	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (efd < 0) {
		log_warn(NULL, "eventfd");
		return NULL;
	}
	pthread_mutex_lock(&n->lock);
	struct watch *w;
	for (w = n->watches; w; w = w->next)
		if (strcmp(w->dir, dir) == 0)
			break;
	if (w == NULL) {
		int wd = inotify_add_watch(n->ifd, dir, IN_MODIFY | IN_CREATE | IN_MOVED_TO);
		if (wd < 0) {
			pthread_mutex_unlock(&n->lock);
			log_warn(NULL, "inotify_add_watch(%s)", dir);
			close(efd);
			return NULL;
		}
		w = xcalloc(1, sizeof(*w));
		w->wd = wd;
		w->dir = xstrdup(dir);
		w->next = n->watches;
		n->watches = w;
	}
	struct notify_sub *s = xcalloc(1, sizeof(*s));
	s->efd = efd;
	s->w = w;
	s->next = w->subs;
	w->subs = s;
	pthread_mutex_unlock(&n->lock);
	return s;
}

int notify_sub_fd(const struct notify_sub *s)
{
	return s ? s->efd : -1;
}

void notify_sub_drain(struct notify_sub *s)
{
	uint64_t v;
	if (s)
		(void)!read(s->efd, &v, sizeof(v));
}

void notify_unsubscribe(struct notify *n, struct notify_sub **sp)
{
	struct notify_sub *s = *sp;
	if (s == NULL)
		return;
	pthread_mutex_lock(&n->lock);
	struct watch *w = s->w;
	for (struct notify_sub **pp = &w->subs; *pp; pp = &(*pp)->next)
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	if (w->subs == NULL) {
		inotify_rm_watch(n->ifd, w->wd);
		for (struct watch **pp = &n->watches; *pp; pp = &(*pp)->next)
			if (*pp == w) {
				*pp = w->next;
				break;
			}
		free(w->dir);
		free(w);
	}
	pthread_mutex_unlock(&n->lock);
	close(s->efd);
	free(s);
	*sp = NULL;
}
