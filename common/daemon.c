/*
 * daemon.c - the frame shared by filterd and imapd: "-c FILE [-t]", bind
 * the listeners, drop privileges, accept with connection limits and one
 * detached thread per connection, SIGHUP reloads a reference-counted
 * configuration (sessions finish on the one they began with), SIGTERM
 * stops accepting, wakes sessions that wait for input and lets the others
 * finish for up to shutdown_timeout.
 */
#include "common/common.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <openssl/ssl.h>

#define THREAD_STACK (512 * 1024)

struct daemon {
	const struct daemon_ops *ops;
	void *app;
	pthread_mutex_t lock;
	pthread_cond_t cond;          /* a session ended */
	struct daemon_cfg *current;   /* under lock */
	struct connlimit *limits;
	volatile int stopping;
	int sessions;                 /* under lock */
	struct daemon_link *active;   /* under lock */
};

struct listener {
	int fd;
	int kind;
	char *addr;
};

struct conn_job {
	struct daemon *d;
	int fd;
	int kind;
	struct sockaddr_storage peer;
	char ip[64];
};

static int sig_pipe[2] = { -1, -1 };

static void daemon_cfg_free(struct daemon_cfg *dc)
{
	if (dc->app && dc->ops->cfg_app_free)
		dc->ops->cfg_app_free(dc->app);
	config_free(&dc->cfg);
	tls_ctx_free(&dc->tls);
	userdb_free(&dc->users);
	free(dc);
}

struct daemon_cfg *daemon_cfg_load(const struct daemon_ops *ops, const char *path, char **error_r)
{
	struct config *cfg = NULL;
	if (config_load(path, &cfg, error_r) < 0)
		return NULL;
	struct daemon_cfg *dc = xcalloc(1, sizeof(*dc));
	dc->refs = 1;
	dc->cfg = cfg;
	if (*cfg->tls_cert_file) {
		dc->tls = tls_ctx_new(cfg->tls_cert_file, cfg->tls_key_file, error_r);
		if (dc->tls == NULL) {
			daemon_cfg_free(dc);
			return NULL;
		}
	}
	dc->users = userdb_open(cfg->users_file);
	dc->ops = ops;
	if (ops->cfg_app_new && (dc->app = ops->cfg_app_new(cfg, error_r)) == NULL) {
		daemon_cfg_free(dc);
		return NULL;
	}
	return dc;
}

/* One lock for every daemon_cfg's reference count (there is one daemon
 * per process). */
static pthread_mutex_t refs_lock = PTHREAD_MUTEX_INITIALIZER;

struct daemon_cfg *daemon_cfg_get(struct daemon *d)
{
	pthread_mutex_lock(&d->lock);
	struct daemon_cfg *dc = d->current;
	pthread_mutex_lock(&refs_lock);
	dc->refs++;
	pthread_mutex_unlock(&refs_lock);
	pthread_mutex_unlock(&d->lock);
	return dc;
}

void daemon_cfg_put(struct daemon_cfg *dc)
{
	if (dc == NULL)
		return;
	pthread_mutex_lock(&refs_lock);
	bool last = --dc->refs == 0;
	pthread_mutex_unlock(&refs_lock);
	if (last)
		daemon_cfg_free(dc);
}

void *daemon_app(struct daemon *d)
{
	return d->app;
}

bool daemon_stopping(struct daemon *d)
{
	return d->stopping != 0;
}

void daemon_register(struct daemon *d, struct daemon_link *l, int fd)
{
	pthread_mutex_lock(&d->lock);
	l->fd = fd;
	l->waiting = false;
	l->prev = NULL;
	l->next = d->active;
	if (d->active)
		d->active->prev = l;
	d->active = l;
	pthread_mutex_unlock(&d->lock);
}

void daemon_unregister(struct daemon *d, struct daemon_link *l)
{
	pthread_mutex_lock(&d->lock);
	if (l->prev)
		l->prev->next = l->next;
	else
		d->active = l->next;
	if (l->next)
		l->next->prev = l->prev;
	pthread_mutex_unlock(&d->lock);
}

bool daemon_wait_begin(struct daemon *d, struct daemon_link *l, bool waiting)
{
	pthread_mutex_lock(&d->lock);
	l->waiting = waiting;
	bool stopping = d->stopping;
	pthread_mutex_unlock(&d->lock);
	return !stopping;
}

enum daemon_wait daemon_read_more(struct daemon *d, struct daemon_link *l, struct conn *c,
				  int timeout_ms)
{
	if (conn_flush(c, timeout_ms) != CONN_OK)
		return DAEMON_CLOSED;
	if (!daemon_wait_begin(d, l, true))
		return DAEMON_STOPPING;
	enum conn_status cs = conn_fill(c, timeout_ms);
	bool go_on = daemon_wait_begin(d, l, false);
	if (cs == CONN_TIMEOUT)
		return DAEMON_TIMEOUT;
	if (!go_on)
		return DAEMON_STOPPING;
	return cs == CONN_OK ? DAEMON_INPUT : DAEMON_CLOSED;
}

void daemon_trim_stack(void)
{
	pthread_attr_t a;
	void *addr;
	size_t size;
	if (pthread_getattr_np(pthread_self(), &a) != 0)
		return;
	int r = pthread_attr_getstack(&a, &addr, &size);
	pthread_attr_destroy(&a);
	if (r != 0)
		return;
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
	volatile char here = 0;
	/* The stack grows down: everything more than 16 KiB below this
	 * frame is dead; give those pages back (they come back zeroed). */
	uintptr_t lo = ((uintptr_t)addr + page - 1) & ~(page - 1);
	uintptr_t hi = ((uintptr_t)&here - 16384) & ~(page - 1);
	(void)here;
	if (hi > lo)
		(void)madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

static void *session_thread(void *arg)
{
	struct conn_job *job = arg;
	struct daemon *d = job->d;
	d->ops->session(d, job->fd, (struct sockaddr *)&job->peer, job->kind, job->ip);
	connlimit_release(d->limits, job->ip);
	free(job);
	pthread_mutex_lock(&d->lock);
	d->sessions--;
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
	return NULL;
}

static void accept_one(struct daemon *d, struct listener *l, struct daemon_cfg *dc)
{
	struct sockaddr_storage peer;
	socklen_t plen = sizeof(peer);
	int fd = accept4(l->fd, (struct sockaddr *)&peer, &plen, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd < 0) {
		if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
			log_warn(NULL, "accept on %s", l->addr);
		if (errno == EMFILE || errno == ENFILE)
			usleep(100000); /* let sessions end before trying again */
		return;
	}
	char ip[64];
	net_addr_str((struct sockaddr *)&peer, ip, sizeof(ip));
	if (d->ops->kind_tls(l->kind) && dc->tls == NULL) {
		/* TLS was turned off by a reload; the port stays bound until restart. */
		d->ops->refuse(fd, l->kind, 3, dc->cfg);
		close(fd);
		return;
	}
	int lim = connlimit_acquire(d->limits, ip);
	if (lim < 0) {
		d->ops->refuse(fd, l->kind, lim == -2 ? 2 : 1, dc->cfg);
		log_warnx(NULL, "refused connection from %s: %s", ip,
			  lim == -2 ? "too many connections from this address"
				    : "connection limit reached");
		close(fd);
		return;
	}
	struct conn_job *job = xcalloc(1, sizeof(*job));
	job->d = d;
	job->fd = fd;
	job->kind = l->kind;
	job->peer = peer;
	str_copy(job->ip, ip, sizeof(job->ip));

	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, THREAD_STACK);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_t t;
	pthread_mutex_lock(&d->lock);
	d->sessions++;
	pthread_mutex_unlock(&d->lock);
	int e = pthread_create(&t, &attr, session_thread, job);
	pthread_attr_destroy(&attr);
	if (e != 0) {
		errno = e;
		log_warn(NULL, "cannot start a session thread for %s", ip);
		d->ops->refuse(fd, l->kind, 4, dc->cfg);
		close(fd);
		connlimit_release(d->limits, ip);
		free(job);
		pthread_mutex_lock(&d->lock);
		d->sessions--;
		pthread_mutex_unlock(&d->lock);
	}
}

static void on_signal(int sig)
{
	int saved = errno;
	unsigned char c = (unsigned char)sig;
	(void)!write(sig_pipe[1], &c, 1);
	errno = saved;
}

static bool strlist_equal(const struct strlist *a, const struct strlist *b)
{
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++)
		if (strcmp(a->v[i], b->v[i]) != 0)
			return false;
	return true;
}

static void reload(struct daemon *d, const char *path)
{
	char *err = NULL;
	struct daemon_cfg *dc = daemon_cfg_load(d->ops, path, &err);
	if (dc == NULL) {
		log_errx(NULL, "reload failed, keeping the running configuration: %s", err);
		free(err);
		return;
	}
	const struct config *old = d->current->cfg, *cfg = dc->cfg;
	for (int k = 0; k < d->ops->nkinds; k++)
		if (!strlist_equal(d->ops->listen_addrs(old, k), d->ops->listen_addrs(cfg, k))) {
			log_warnx(NULL, "reload: listen addresses changed; they take effect on restart");
			break;
		}
	if (strcmp(old->data_dir, cfg->data_dir) != 0)
		log_warnx(NULL, "reload: data_dir changed; it takes effect on restart");
	if (strcmp(old->syslog_facility, cfg->syslog_facility) != 0)
		log_warnx(NULL, "reload: syslog_facility changed; it takes effect on restart");
	enum log_level lvl = LOG_LVL_INFO;
	log_level_parse(cfg->log_level, &lvl);
	log_set_level(lvl);
	int64_t max_total, max_ip;
	d->ops->limits(cfg, &max_total, &max_ip);
	connlimit_set(d->limits, max_total, max_ip);
	pthread_mutex_lock(&d->lock);
	struct daemon_cfg *prev = d->current;
	d->current = dc;
	pthread_mutex_unlock(&d->lock);
	daemon_cfg_put(prev);
	log_info(NULL, "configuration reloaded from %s", path);
}

static int drop_privileges(const char *user)
{
	if (getuid() != 0 || *user == '\0')
		return 0;
	struct passwd *pw = getpwnam(user);
	if (pw == NULL) {
		log_errx(NULL, "run_user %s: no such user", user);
		return -1;
	}
	if (setgroups(0, NULL) < 0 || setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0) {
		log_err(NULL, "cannot run as %s", user);
		return -1;
	}
	log_info(NULL, "running as %s", user);
	return 0;
}

static void wake_waiting(struct daemon *d)
{
	for (struct daemon_link *l = d->active; l; l = l->next)
		if (l->waiting)
			shutdown(l->fd, SHUT_RD);
}

/* Returns the number of sessions still running at the deadline. */
static int shutdown_sessions(struct daemon *d, int64_t timeout_ms)
{
	int64_t deadline = clock_mono_ms() + timeout_ms;
	pthread_mutex_lock(&d->lock);
	d->stopping = 1;
	wake_waiting(d);
	while (d->sessions > 0) {
		int64_t left = deadline - clock_mono_ms();
		if (left <= 0)
			break;
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += left / 1000;
		ts.tv_nsec += (left % 1000) * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&d->cond, &d->lock, &ts);
		wake_waiting(d);
	}
	int left = d->sessions;
	pthread_mutex_unlock(&d->lock);
	if (left)
		log_warnx(NULL, "stopping with %d sessions still running", left);
	return left;
}

/* Each connection takes a socket (and, in IMAP IDLE, an eventfd): make
 * the soft descriptor limit the hard one. */
static void raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static NORETURN void usage(const char *name)
{
	fprintf(stderr, "usage: %s [-c config] [-t]\n", name);
	exit(2);
}

int daemon_main(const struct daemon_ops *ops, void *app, int argc, char **argv)
{
	const char *path = getenv("MAILGW_CONFIG") ? getenv("MAILGW_CONFIG") : "/etc/mailgw/gateway.conf";
	bool test_only = false;
	int opt;
	while ((opt = getopt(argc, argv, "c:th")) != -1) {
		switch (opt) {
		case 'c':
			path = optarg;
			break;
		case 't':
			test_only = true;
			break;
		default:
			usage(ops->name);
		}
	}
	if (optind != argc)
		usage(ops->name);

	log_open(ops->name, LOG_LVL_INFO, NULL);
	char *err = NULL;
	struct daemon_cfg *dc = daemon_cfg_load(ops, path, &err);
	if (dc == NULL)
		log_fatalx(NULL, "%s", err);
	if (test_only) {
		printf("%s: %s: configuration ok\n", ops->name, path);
		daemon_cfg_put(dc);
		return 0;
	}
	const struct config *cfg = dc->cfg;
	enum log_level lvl = LOG_LVL_INFO;
	log_level_parse(cfg->log_level, &lvl);
	if (log_open(ops->name, lvl, cfg->syslog_facility) < 0)
		log_fatalx(NULL, "unknown syslog facility %s", cfg->syslog_facility);

	/* Static: sessions still running at exit may use it to the end. */
	static struct daemon d;
	memset(&d, 0, sizeof(d));
	d.ops = ops;
	d.app = app;
	pthread_mutex_init(&d.lock, NULL);
	pthread_cond_init(&d.cond, NULL);
	d.current = dc;
	int64_t max_total, max_ip;
	ops->limits(cfg, &max_total, &max_ip);
	d.limits = connlimit_new(max_total, max_ip);

	size_t nl = 0;
	for (int k = 0; k < ops->nkinds; k++)
		nl += ops->listen_addrs(cfg, k)->n;
	if (nl == 0)
		log_fatalx(NULL, "%s: no listen address for %s", path, ops->name);
	struct listener *ls = xcalloc(nl, sizeof(*ls));
	size_t i = 0;
	for (int k = 0; k < ops->nkinds; k++) {
		const struct strlist *addrs = ops->listen_addrs(cfg, k);
		for (size_t j = 0; j < addrs->n; j++, i++) {
			ls[i].addr = xstrdup(addrs->v[j]);
			ls[i].kind = k;
			ls[i].fd = net_listen(ls[i].addr, &err);
			if (ls[i].fd < 0)
				log_fatalx(NULL, "cannot listen: %s", err);
		}
	}
	if (drop_privileges(cfg->run_user) < 0)
		return -1;
	raise_nofile();
	if (ops->ready != NULL && ops->ready(&d, cfg) < 0)
		return -1;

	if (pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
		log_fatal(NULL, "pipe");
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	for (i = 0; i < nl; i++)
		log_info(NULL, "listening on %s%s", ls[i].addr,
			 ops->kind_tls(ls[i].kind) ? " (implicit TLS)" : "");
	log_info(NULL, "ready: hostname=%s data_dir=%s tls=%s", cfg->hostname, cfg->data_dir,
		 dc->tls ? "yes" : "no");

	struct pollfd *pfd = xcalloc(nl + 1, sizeof(*pfd));
	bool running = true;
	while (running) {
		for (i = 0; i < nl; i++)
			pfd[i] = (struct pollfd){ .fd = ls[i].fd, .events = POLLIN };
		pfd[nl] = (struct pollfd){ .fd = sig_pipe[0], .events = POLLIN };
		if (poll(pfd, nl + 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			log_fatal(NULL, "poll");
		}
		if (pfd[nl].revents & POLLIN) {
			unsigned char c;
			while (read(sig_pipe[0], &c, 1) == 1) {
				if (c == SIGHUP)
					reload(&d, path);
				else
					running = false;
			}
		}
		if (!running)
			break;
		struct daemon_cfg *cur = daemon_cfg_get(&d);
		for (i = 0; i < nl; i++)
			if (pfd[i].revents & POLLIN)
				accept_one(&d, &ls[i], cur);
		daemon_cfg_put(cur);
	}
	log_info(NULL, "stopping");
	for (i = 0; i < nl; i++)
		close(ls[i].fd);
	int left = shutdown_sessions(&d, d.current->cfg->shutdown_timeout_ms);
	if (left == 0) {
		/* No session left: release everything (keeps leak checkers quiet). */
		connlimit_free(&d.limits);
		daemon_cfg_put(d.current);
		for (i = 0; i < nl; i++)
			free(ls[i].addr);
		free(ls);
		free(pfd);
	}
	log_info(NULL, "stopped");
	return left;
}
