/*
 * filterd - the SMTP gateway daemon.
 *
 *   filterd [-c FILE] [-t]
 *
 * Binds smtp_listen (plain + STARTTLS) and smtps_listen (implicit TLS),
 * drops to run_user when started as root, and runs one thread per
 * connection (common/daemon.c).  SIGHUP reloads the configuration (listen
 * addresses need a restart); SIGTERM and SIGINT stop accepting, let
 * sessions finish for up to shutdown_timeout, then exit.  -t checks the
 * configuration and exits.
 */
#include "filterd/filterd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum { KIND_SMTP, KIND_SMTPS, NKINDS };

static const struct strlist *listen_addrs(const struct config *cfg, int kind)
{
	return kind == KIND_SMTP ? &cfg->smtp_listen : &cfg->smtps_listen;
}

static bool kind_tls(int kind)
{
	return kind == KIND_SMTPS;
}

static void limits(const struct config *cfg, int64_t *max_total, int64_t *max_per_ip)
{
	*max_total = cfg->max_connections;
	*max_per_ip = cfg->max_connections_per_ip;
}

static void refuse(int fd, int kind, int why, const struct config *cfg)
{
	(void)kind;
	char msg[300];
	int n;
	if (why == 1 || why == 2)
		n = snprintf(msg, sizeof(msg), "421 4.7.0 %s Error: too many connections%s\r\n",
			     cfg->hostname, why == 2 ? " from your address" : "");
	else
		n = snprintf(msg, sizeof(msg), "421 4.3.2 Service not available%s\r\n",
			     why == 3 ? " on this port" : "");
	/* Best effort, never blocks: the socket is non-blocking. */
	(void)!send(fd, msg, (size_t)n, MSG_NOSIGNAL);
}

static void session(struct daemon *d, int fd, const struct sockaddr *peer, int kind, const char *ip)
{
	struct server *srv = daemon_app(d);
	smtp_session_run(srv, fd, peer, kind == KIND_SMTPS, ip);
}

static int ready(struct daemon *d, const struct config *cfg)
{
	struct server *srv = daemon_app(d);
	srv->d = d;
	srv->spool_dir = xasprintf("%s/spool", cfg->data_dir);
	/* Made, and checked, as the user that will write there. */
	if (mkdir_p(srv->spool_dir, 0700) < 0) {
		log_err(NULL, "cannot create %s", srv->spool_dir);
		return -1;
	}
	if (access(srv->spool_dir, R_OK | W_OK | X_OK) < 0 || access(cfg->data_dir, W_OK | X_OK) < 0) {
		log_err(NULL, "%s or %s is not writable", cfg->data_dir, srv->spool_dir);
		return -1;
	}
	srv->stores = storepool_new(cfg->data_dir, 256);
	return 0;
}

static const struct daemon_ops filterd_ops = {
	.name = "filterd",
	.nkinds = NKINDS,
	.listen_addrs = listen_addrs,
	.kind_tls = kind_tls,
	.limits = limits,
	.refuse = refuse,
	.session = session,
	.ready = ready,
	.cfg_app_new = checks_new,
	.cfg_app_free = checks_free,
};

int main(int argc, char **argv)
{
	struct server srv;
	memset(&srv, 0, sizeof(srv));
	int left = daemon_main(&filterd_ops, &srv, argc, argv);
	if (left < 0)
		return 1;
	if (left > 0)
		_exit(0); /* sessions still run: no exit handlers under them */
	if (left == 0) {
		/* No session left: close the SQLite handles cleanly. */
		storepool_free(&srv.stores);
		site_bayes_cleanup();
		free(srv.spool_dir);
	}
	return 0;
}
