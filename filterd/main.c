/*
 * filterd - the SMTP gateway daemon.
 *
 *   filterd [-c FILE] [-t]
 *
 * Binds smtp_listen (plain + STARTTLS) and smtps_listen (implicit TLS),
 * drops to run_user when started as root, and runs one thread per
 * connection.  SIGHUP reloads the configuration (listen addresses need a
 * restart); SIGTERM and SIGINT stop accepting, let sessions finish for up
 * to shutdown_timeout, then exit.  -t checks the configuration and exits.
 */
#include "filterd/filterd.h"

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
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/ssl.h>

#define THREAD_STACK (512 * 1024)

static pthread_mutex_t srv_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t srv_cond = PTHREAD_COND_INITIALIZER;
static int sig_pipe[2] = { -1, -1 };

struct server_cfg *server_cfg_get(struct server *srv)
{
	pthread_mutex_lock(&srv_lock);
	struct server_cfg *sc = srv->current;
	sc->refs++;
	pthread_mutex_unlock(&srv_lock);
	return sc;
}

static void server_cfg_free(struct server_cfg *sc)
{
	config_free(&sc->cfg);
	tls_ctx_free(&sc->tls);
	userdb_free(&sc->users);
	free(sc);
}

void server_cfg_put(struct server *srv, struct server_cfg *sc)
{
	(void)srv;
	pthread_mutex_lock(&srv_lock);
	bool last = --sc->refs == 0;
	pthread_mutex_unlock(&srv_lock);
	if (last)
		server_cfg_free(sc);
}

/* Build everything the configuration file decides.  NULL with *error_r. */
static struct server_cfg *server_cfg_load(const char *path, char **error_r)
{
	struct config *cfg = NULL;
	if (config_load(path, &cfg, error_r) < 0)
		return NULL;
	struct server_cfg *sc = xcalloc(1, sizeof(*sc));
	sc->refs = 1;
	sc->cfg = cfg;
	if (*cfg->tls_cert_file) {
		sc->tls = tls_ctx_new(cfg->tls_cert_file, cfg->tls_key_file, error_r);
		if (sc->tls == NULL) {
			server_cfg_free(sc);
			return NULL;
		}
	}
	sc->users = userdb_open(cfg->users_file);
	return sc;
}

struct listener {
	int fd;
	bool implicit_tls;
	char *addr;
};

struct conn_job {
	struct server *srv;
	int fd;
	bool implicit_tls;
	struct sockaddr_storage peer;
	char ip[64];
};

static void *session_thread(void *arg)
{
	struct conn_job *job = arg;
	struct server *srv = job->srv;
	smtp_session_run(srv, job->fd, (struct sockaddr *)&job->peer, job->implicit_tls, job->ip);
	connlimit_release(srv->limits, job->ip);
	free(job);
	pthread_mutex_lock(&srv_lock);
	srv->sessions--;
	pthread_cond_broadcast(&srv_cond);
	pthread_mutex_unlock(&srv_lock);
	return NULL;
}

static void accept_one(struct server *srv, struct listener *l, struct server_cfg *sc)
{
	const struct config *cfg = sc->cfg;
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
	if (l->implicit_tls && sc->tls == NULL) {
		/* TLS was turned off by a reload; the port stays bound until restart. */
		static const char msg[] = "421 4.3.2 Service not available on this port\r\n";
		(void)!send(fd, msg, sizeof(msg) - 1, MSG_NOSIGNAL);
		close(fd);
		return;
	}
	int lim = connlimit_acquire(srv->limits, ip);
	if (lim < 0) {
		/* Best effort, never blocks: the socket is non-blocking. */
		char msg[300];
		int n = snprintf(msg, sizeof(msg), "421 4.7.0 %s Error: too many connections%s\r\n",
				 cfg->hostname, lim == -2 ? " from your address" : "");
		(void)!send(fd, msg, (size_t)n, MSG_NOSIGNAL);
		log_warnx(NULL, "refused connection from %s: %s", ip,
			  lim == -2 ? "max_connections_per_ip reached" : "max_connections reached");
		close(fd);
		return;
	}
	struct conn_job *job = xcalloc(1, sizeof(*job));
	job->srv = srv;
	job->fd = fd;
	job->implicit_tls = l->implicit_tls;
	job->peer = peer;
	str_copy(job->ip, ip, sizeof(job->ip));

	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, THREAD_STACK);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_t t;
	pthread_mutex_lock(&srv_lock);
	srv->sessions++;
	pthread_mutex_unlock(&srv_lock);
	int e = pthread_create(&t, &attr, session_thread, job);
	pthread_attr_destroy(&attr);
	if (e != 0) {
		errno = e;
		log_warn(NULL, "cannot start a session thread for %s", ip);
		(void)!send(fd, "421 4.3.2 Service not available\r\n", 33, MSG_NOSIGNAL);
		close(fd);
		connlimit_release(srv->limits, ip);
		free(job);
		pthread_mutex_lock(&srv_lock);
		srv->sessions--;
		pthread_mutex_unlock(&srv_lock);
	}
}

static void on_signal(int sig)
{
	int saved = errno;
	unsigned char c = (unsigned char)sig;
	(void)!write(sig_pipe[1], &c, 1);
	errno = saved;
}

static void reload(struct server *srv, const char *path)
{
	char *err = NULL;
	struct server_cfg *sc = server_cfg_load(path, &err);
	if (sc == NULL) {
		log_errx(NULL, "reload failed, keeping the running configuration: %s", err);
		free(err);
		return;
	}
	struct config *old = srv->current->cfg;
	bool relisten = old->smtp_listen.n != sc->cfg->smtp_listen.n ||
			old->smtps_listen.n != sc->cfg->smtps_listen.n;
	for (size_t i = 0; !relisten && i < old->smtp_listen.n; i++)
		relisten = strcmp(old->smtp_listen.v[i], sc->cfg->smtp_listen.v[i]) != 0;
	for (size_t i = 0; !relisten && i < old->smtps_listen.n; i++)
		relisten = strcmp(old->smtps_listen.v[i], sc->cfg->smtps_listen.v[i]) != 0;
	if (relisten)
		log_warnx(NULL, "reload: listen addresses changed; they take effect on restart");
	if (strcmp(old->data_dir, sc->cfg->data_dir) != 0)
		log_warnx(NULL, "reload: data_dir changed; it takes effect on restart");
	if (strcmp(old->syslog_facility, sc->cfg->syslog_facility) != 0)
		log_warnx(NULL, "reload: syslog_facility changed; it takes effect on restart");
	enum log_level lvl = LOG_LVL_INFO;
	log_level_parse(sc->cfg->log_level, &lvl);
	log_set_level(lvl);
	connlimit_set(srv->limits, sc->cfg->max_connections, sc->cfg->max_connections_per_ip);
	pthread_mutex_lock(&srv_lock);
	struct server_cfg *prev = srv->current;
	srv->current = sc;
	pthread_mutex_unlock(&srv_lock);
	server_cfg_put(srv, prev);
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

/* Returns the number of sessions still running at the deadline. */
static int shutdown_sessions(struct server *srv, int64_t timeout_ms)
{
	int64_t deadline = clock_mono_ms() + timeout_ms;
	pthread_mutex_lock(&srv_lock);
	srv->stopping = 1;
	/* Wake sessions that wait for a command; those in DATA finish. */
	for (struct session_link *l = srv->active; l; l = l->next)
		if (l->waiting)
			shutdown(l->fd, SHUT_RD);
	while (srv->sessions > 0) {
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
		pthread_cond_timedwait(&srv_cond, &srv_lock, &ts);
		for (struct session_link *l = srv->active; l; l = l->next)
			if (l->waiting)
				shutdown(l->fd, SHUT_RD);
	}
	int left = srv->sessions;
	pthread_mutex_unlock(&srv_lock);
	if (left)
		log_warnx(NULL, "stopping with %d sessions still running", left);
	return left;
}

static void usage(void)
{
	fprintf(stderr, "usage: filterd [-c config] [-t]\n");
	exit(2);
}

int main(int argc, char **argv)
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
			usage();
		}
	}
	if (optind != argc)
		usage();

	log_open("filterd", LOG_LVL_INFO, NULL);
	char *err = NULL;
	struct server_cfg *sc = server_cfg_load(path, &err);
	if (sc == NULL)
		log_fatalx(NULL, "%s", err);
	if (test_only) {
		printf("filterd: %s: configuration ok\n", path);
		server_cfg_put(NULL, sc);
		return 0;
	}
	struct config *cfg = sc->cfg;
	enum log_level lvl = LOG_LVL_INFO;
	log_level_parse(cfg->log_level, &lvl);
	if (log_open("filterd", lvl, cfg->syslog_facility) < 0)
		log_fatalx(NULL, "unknown syslog facility %s", cfg->syslog_facility);

	struct server srv;
	memset(&srv, 0, sizeof(srv));
	srv.current = sc;
	srv.lock = &srv_lock;
	srv.cond = &srv_cond;
	srv.limits = connlimit_new(cfg->max_connections, cfg->max_connections_per_ip);
	srv.spool_dir = xasprintf("%s/spool", cfg->data_dir);

	size_t nl = cfg->smtp_listen.n + cfg->smtps_listen.n;
	if (nl == 0)
		log_fatalx(NULL, "%s: no smtp_listen or smtps_listen address", path);
	struct listener *ls = xcalloc(nl, sizeof(*ls));
	for (size_t i = 0; i < nl; i++) {
		bool tls = i >= cfg->smtp_listen.n;
		ls[i].addr = xstrdup(tls ? cfg->smtps_listen.v[i - cfg->smtp_listen.n] : cfg->smtp_listen.v[i]);
		ls[i].implicit_tls = tls;
		ls[i].fd = net_listen(ls[i].addr, &err);
		if (ls[i].fd < 0)
			log_fatalx(NULL, "cannot listen: %s", err);
	}
	if (drop_privileges(cfg->run_user) < 0)
		return 1;
	/* Made, and checked, as the user that will write there. */
	if (mkdir_p(srv.spool_dir, 0700) < 0)
		log_fatal(NULL, "cannot create %s", srv.spool_dir);
	if (access(srv.spool_dir, R_OK | W_OK | X_OK) < 0 || access(cfg->data_dir, W_OK | X_OK) < 0)
		log_fatal(NULL, "%s or %s is not writable", cfg->data_dir, srv.spool_dir);
	srv.stores = storepool_new(cfg->data_dir, 256);

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

	for (size_t i = 0; i < nl; i++)
		log_info(NULL, "listening on %s%s", ls[i].addr, ls[i].implicit_tls ? " (implicit TLS)" : "");
	log_info(NULL, "ready: hostname=%s data_dir=%s tls=%s", cfg->hostname, cfg->data_dir,
		 sc->tls ? "yes" : "no");

	struct pollfd *pfd = xcalloc(nl + 1, sizeof(*pfd));
	bool running = true;
	while (running) {
		for (size_t i = 0; i < nl; i++)
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
					reload(&srv, path);
				else
					running = false;
			}
		}
		if (!running)
			break;
		struct server_cfg *cur = server_cfg_get(&srv);
		for (size_t i = 0; i < nl; i++) {
			if (!(pfd[i].revents & POLLIN))
				continue;
			accept_one(&srv, &ls[i], cur);
		}
		server_cfg_put(&srv, cur);
	}
	log_info(NULL, "stopping");
	for (size_t i = 0; i < nl; i++)
		close(ls[i].fd);
	if (shutdown_sessions(&srv, srv.current->cfg->shutdown_timeout_ms) == 0) {
		/* No session left: release everything (closes the SQLite
		 * handles cleanly; keeps leak checkers quiet). */
		storepool_free(&srv.stores);
		connlimit_free(&srv.limits);
		server_cfg_put(&srv, srv.current);
		for (size_t i = 0; i < nl; i++)
			free(ls[i].addr);
		free(ls);
		free(pfd);
		free(srv.spool_dir);
	}
	log_info(NULL, "stopped");
	return 0;
}
