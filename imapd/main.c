/*
 * imapd - the IMAP and POP3 daemon.
 *
 *   imapd [-c FILE] [-t]
 *
 * Binds imap_listen (plain + STARTTLS), imaps_listen (implicit TLS),
 * pop3_listen (plain + STLS) and pop3s_listen (implicit TLS),
 * drops to run_user when started as root, and runs one thread per
 * connection (common/daemon.c).  SIGHUP reloads the configuration;
 * SIGTERM and SIGINT send BYE to idle sessions and stop.
 */
#include "imapd/imapd.h"

#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

enum { KIND_IMAP, KIND_IMAPS, KIND_POP3, KIND_POP3S, NKINDS };

static const struct strlist *listen_addrs(const struct config *cfg, int kind)
{
	switch (kind) {
	case KIND_IMAP:
		return &cfg->imap_listen;
	case KIND_IMAPS:
		return &cfg->imaps_listen;
	case KIND_POP3:
		return &cfg->pop3_listen;
	default:
		return &cfg->pop3s_listen;
	}
}

static bool kind_tls(int kind)
{
	return kind == KIND_IMAPS || kind == KIND_POP3S;
}

static void limits(const struct config *cfg, int64_t *max_total, int64_t *max_per_ip)
{
	*max_total = cfg->imap_max_connections;
	*max_per_ip = cfg->imap_max_connections_per_ip;
}

static void refuse(int fd, int kind, int why, const struct config *cfg)
{
	(void)cfg;
	if (kind == KIND_POP3 || kind == KIND_POP3S) {
		const char *m = why <= 2 ? "-ERR [SYS/TEMP] Too many connections\r\n"
					 : "-ERR [SYS/TEMP] Service not available\r\n";
		(void)!send(fd, m, strlen(m), MSG_NOSIGNAL);
		return;
	}
	const char *msg = why == 1   ? "* BYE [UNAVAILABLE] Too many connections\r\n"
			  : why == 2 ? "* BYE [UNAVAILABLE] Too many connections from your address\r\n"
				     : "* BYE [UNAVAILABLE] Service not available\r\n";
	(void)!send(fd, msg, strlen(msg), MSG_NOSIGNAL);
}

static void session(struct daemon *d, int fd, const struct sockaddr *peer, int kind, const char *ip)
{
	struct imapd *app = daemon_app(d);
	if (kind == KIND_POP3 || kind == KIND_POP3S)
		pop3_session_run(app, fd, peer, kind == KIND_POP3S, ip);
	else
		imap_session_run(app, fd, peer, kind == KIND_IMAPS, ip);
}

static int ready(struct daemon *d, const struct config *cfg)
{
	struct imapd *app = daemon_app(d);
	app->d = d;
	app->data_dir = xstrdup(cfg->data_dir);
	app->notify = notify_new();
	static sem_t wake_sem;
	sem_init(&wake_sem, 0, 2);
	app->wake_sem = &wake_sem;
	return 0;
}

static const struct daemon_ops imapd_ops = {
	.name = "imapd",
	.nkinds = NKINDS,
	.listen_addrs = listen_addrs,
	.kind_tls = kind_tls,
	.limits = limits,
	.refuse = refuse,
	.session = session,
	.ready = ready,
};

int main(int argc, char **argv)
{
	struct imapd app;
	memset(&app, 0, sizeof(app));
	int left = daemon_main(&imapd_ops, &app, argc, argv);
	if (left < 0)
		return 1;
	if (left > 0)
		_exit(0); /* sessions still run: no exit handlers under them */
	if (left == 0) {
		notify_free(&app.notify);
		free(app.data_dir);
	}
	return 0;
}
