/*
 * mailctl.c - the admin command (DESIGN.md "Operator interface").
 *
 *   mailctl [-c FILE] user add ADDRESS      password on stdin; creates the mailbox
 *   mailctl [-c FILE] user passwd ADDRESS   password on stdin
 *   mailctl [-c FILE] user del ADDRESS      the mail is kept
 *   mailctl [-c FILE] user list             one address per line
 *
 * The config is -c FILE, else $MAILGW_CONFIG, else /etc/mailgw/gateway.conf.
 * Passwords are never taken from the command line: from a terminal they
 * are asked for twice with echo off, otherwise the first line of standard
 * input is the password.
 *
 * Exit status: 0 done; 1 error, with a message on stderr starting
 * "mailctl: "; 2 usage error.  New commands go into the table commands[].
 */
#include "tools/mailctl.h"
#include "store/store.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#define DEFAULT_CONFIG "/etc/mailgw/gateway.conf"
#define ADDR_BUF 320           /* 64 + '@' + 253 + NUL, rounded up */
#define PASSWORD_LINE_MAX 4096 /* users.c refuses more than 1024 bytes anyway */

/* argv[0] is the command's name; returns the exit status. */
struct command {
	const char *name;
	int (*run)(struct mailctl *m, int argc, char **argv);
	const char *usage; /* lines after "mailctl [-c FILE] " */
};

static int cmd_user(struct mailctl *m, int argc, char **argv);
static int cmd_dns(struct mailctl *m, int argc, char **argv);

static const struct command commands[] = {
	{ "user", cmd_user,
	  "user add ADDRESS       add a user (password on stdin) and create the mailbox\n"
	  "user passwd ADDRESS    change a user's password (password on stdin)\n"
	  "user del ADDRESS       remove a user; the mail is kept\n"
	  "user list              print every user, one address per line\n" },
	{ "dns", cmd_dns,
	  "dns TYPE NAME          look NAME up as the gateway does (dns_servers, dns_timeout_ms);\n"
	  "                       TYPE is A, AAAA, TXT, MX, PTR, NS or CNAME; exit 0 pass, 1 no-data,\n"
	  "                       2 NXDOMAIN, 3 temporary error\n" },
	{ "rules", cmd_rules,
	  "rules check [PATH]     load and compile the rules (rules_dir, or PATH: a directory or a\n"
	  "                       file); print errors and warnings with FILE:LINE; exit 1 on errors\n" },
	{ "score", cmd_score,
	  "score [-v] [--user USER] < MESSAGE\n"
	  "                       the rule verdict filterd would give the message (every rule that\n"
	  "                       hits with its score, the total and the folder); with --user, also\n"
	  "                       USER's classifier and lists; the store is not changed; no DNS\n"
	  "                       checks (they need the SMTP session)\n" },
	{ "log", cmd_log,
	  "log ID [FILE...]       the log lines of a queue id (a refusal's \"reference\"), from the\n"
	  "                       files given or standard input\n" },
	{ "list", cmd_list,
	  "list show USER         a user's whitelist and blacklist, and where each entry comes\n"
	  "                       from (mailctl, or messages in the Whitelist/Blacklist folder)\n"
	  "list add|del USER white|black ADDRESS-or-@DOMAIN\n"
	  "                       add or remove an entry\n" },
	{ "learn", cmd_learn,
	  "learn spam|ham|forget USER|--site [FILE|DIR|MBOX...]\n"
	  "                       teach USER's classifier (and the site's, with bayes_learn_site)\n"
	  "                       the message on standard input, or files, Maildirs (cur/ new/)\n"
	  "                       and mbox files; --site: the site-wide classifier only; a message\n"
	  "                       learned before is moved to the new class, never counted twice\n" },
	{ "bayes", cmd_bayes,
	  "bayes [USER]           what the classifiers have learned: messages of each class and\n"
	  "                       tokens, for USER and for the site, and moves not yet learned\n" },
};

int errmsg(const char *fmt, ...)
{
	va_list ap;
	fflush(stdout);
	fputs("mailctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return EXIT_ERROR;
}

static void usage(FILE *f)
{
	fputs("usage:", f);
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++) {
		const char *p = commands[i].usage;
		while (*p != '\0') {
			const char *nl = strchr(p, '\n');
			size_t n = nl != NULL ? (size_t)(nl - p) : strlen(p);
			fprintf(f, "\n  mailctl [-c FILE] %.*s", (int)n, p);
			p += n + (nl != NULL);
		}
	}
	fputs("\n\nThe config file is -c FILE, else $MAILGW_CONFIG, else " DEFAULT_CONFIG ".\n", f);
}

int usage_error(const char *fmt, ...)
{
	va_list ap;
	fputs("mailctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	usage(stderr);
	return EXIT_USAGE;
}

int need_config(struct mailctl *m)
{
	char *err = NULL;
	if (m->cfg != NULL)
		return 0;
	if (config_load(m->config_path, &m->cfg, &err) < 0) {
		errmsg("%s", err);
		free(err);
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------ passwords */

static struct termios tty_saved;
static volatile sig_atomic_t tty_echo_off;

static void tty_restore_and_die(int sig)
{
	if (tty_echo_off)
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &tty_saved);
	signal(sig, SIG_DFL);
	raise(sig);
}

/* One line of stdin without its LF (and a CR before it), or NULL with a
 * message printed.  The returned string is the caller's to wipe. */
static char *read_line(const char *what)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t n = getline(&line, &cap, stdin);
	char *out = NULL;

	if (n < 0) {
		if (ferror(stdin))
			errmsg("cannot read the %s: %s", what, strerror(errno));
		else
			errmsg("no %s on standard input", what);
	} else if ((size_t)n > PASSWORD_LINE_MAX) {
		errmsg("the %s is too long", what);
	} else {
		size_t len = (size_t)n;
		if (len > 0 && line[len - 1] == '\n')
			line[--len] = '\0';
		if (len > 0 && line[len - 1] == '\r')
			line[--len] = '\0';
		if (strlen(line) != len)
			errmsg("the %s contains a NUL byte", what);
		else
			out = xstrdup(line);
	}
	if (line != NULL) {
		explicit_bzero(line, cap);
		free(line);
	}
	return out;
}

static void password_free(char **pw)
{
	if (*pw != NULL) {
		explicit_bzero(*pw, strlen(*pw));
		free(*pw);
		*pw = NULL;
	}
}

static char *tty_prompt(const char *prompt)
{
	struct termios t = tty_saved;
	t.c_lflag &= ~(tcflag_t)ECHO;
	fputs(prompt, stderr);
	fflush(stderr);
	tty_echo_off = 1;
	if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &t) < 0) {
		tty_echo_off = 0;
		errmsg("cannot turn off echo on the terminal: %s", strerror(errno));
		return NULL;
	}
	char *pw = read_line("password");
	tcsetattr(STDIN_FILENO, TCSAFLUSH, &tty_saved);
	tty_echo_off = 0;
	fputc('\n', stderr);
	return pw;
}

/* The new password: asked twice on a terminal, else the first line of
 * stdin.  NULL with a message printed. */
static char *password_read(void)
{
	if (!isatty(STDIN_FILENO))
		return read_line("password");

	if (tcgetattr(STDIN_FILENO, &tty_saved) < 0) {
		errmsg("cannot read the terminal settings: %s", strerror(errno));
		return NULL;
	}
	/* Never leave the admin's terminal without echo. */
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = tty_restore_and_die;
	sigemptyset(&sa.sa_mask);
	static const int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };
	for (size_t i = 0; i < ARRAY_SIZE(sigs); i++)
		sigaction(sigs[i], &sa, NULL);

	char *pw = tty_prompt("Password: ");
	if (pw == NULL)
		return NULL;
	if (*pw == '\0') {
		password_free(&pw);
		errmsg("empty password");
		return NULL;
	}
	char *again = tty_prompt("Password again: ");
	if (again == NULL) {
		password_free(&pw);
		return NULL;
	}
	bool same = strcmp(pw, again) == 0;
	password_free(&again);
	if (!same) {
		password_free(&pw);
		errmsg("the passwords do not match");
		return NULL;
	}
	return pw;
}

/* ---------------------------------------------------------------- user */

/* Normalise and validate arg into out; with local_only, its domain must
 * be one of local_domains.  0, or -1 with a message printed. */
static int user_address(struct mailctl *m, const char *arg, char out[ADDR_BUF], bool local_only)
{
	if (!user_address_normalize(arg, out, ADDR_BUF)) {
		errmsg("invalid address %s: want local@domain, local part of a-z 0-9 . _ + = - "
		       "(at most 64, no leading, trailing or double dot), domain of a-z 0-9 - labels",
		       log_str(arg));
		return -1;
	}
	const char *domain = strchr(out, '@') + 1;
	if (local_only && !strlist_contains_ci(&m->cfg->local_domains, domain)) {
		errmsg("%s is not a local domain (local_domains in %s)", domain, m->cfg->path);
		return -1;
	}
	return 0;
}

/* For an early "already exists" / "no such user" before asking for a
 * password.  1, 0, or -1 when the file cannot be read. */
static int user_known(struct config *cfg, const char *addr)
{
	struct stat st;
	if (stat(cfg->users_file, &st) < 0 && errno == ENOENT)
		return 0;
	struct userdb *db = userdb_open(cfg->users_file);
	int r = userdb_exists(db, addr);
	userdb_free(&db);
	return r;
}

static struct passwd *run_user_entry(struct config *cfg, char **error_r)
{
	if (geteuid() != 0 || cfg->run_user == NULL || cfg->run_user[0] == '\0')
		return NULL;
	errno = 0;
	struct passwd *pw = getpwnam(cfg->run_user);
	if (pw == NULL)
		*error_r = xasprintf("run_user %s: %s", log_str(cfg->run_user),
				     errno != 0 ? strerror(errno) : "no such system user");
	return pw;
}

/* Create the mailbox (with its special folders) as the daemons would: as
 * run_user when we are root, so they can write to it later. */
static int mailbox_create(struct config *cfg, const char *addr, char **error_r)
{
	struct store *st = NULL;
	char *err = NULL;
	struct passwd *pw = run_user_entry(cfg, &err);

	if (err != NULL) {
		*error_r = err;
		return -1;
	}
	if (pw == NULL) {
		if (store_open(cfg->data_dir, addr, &st, error_r) < 0)
			return -1;
		store_close(&st);
		return 0;
	}

	char *name = xstrdup(pw->pw_name);
	uid_t uid = pw->pw_uid;
	gid_t gid = pw->pw_gid;
	int pfd[2];
	if (pipe(pfd) < 0) {
		*error_r = xasprintf("pipe: %s", strerror(errno));
		free(name);
		return -1;
	}
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		*error_r = xasprintf("fork: %s", strerror(errno));
		close(pfd[0]);
		close(pfd[1]);
		free(name);
		return -1;
	}
	if (pid == 0) {
		close(pfd[0]);
		if (initgroups(name, gid) < 0 || setgid(gid) < 0 || setuid(uid) < 0) {
			err = xasprintf("cannot become %s: %s", name, strerror(errno));
		} else if (store_open(cfg->data_dir, addr, &st, &err) == 0) {
			store_close(&st);
			_exit(0);
		}
		(void)write_full(pfd[1], err, strlen(err));
		_exit(1);
	}
	free(name);
	close(pfd[1]);
	struct buf msg;
	buf_init(&msg, 4096);
	char chunk[512];
	ssize_t n;
	while ((n = read(pfd[0], chunk, sizeof(chunk))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			break;
		(void)buf_append(&msg, chunk, (size_t)n); /* a longer message is cut */
	}
	close(pfd[0]);
	int status;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	int r = 0;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		*error_r = msg.len > 0 ? xstrdup(msg.data) : xstrdup("the mailbox process failed");
		r = -1;
	}
	buf_free(&msg);
	return r;
}

/* A users file we just created belongs to root, 0600: let the daemons,
 * which run as run_user, read it (root:GROUP 0640). */
static void users_file_share(struct config *cfg)
{
	char *err = NULL;
	struct passwd *pw = run_user_entry(cfg, &err);
	if (pw == NULL) {
		if (err != NULL)
			fprintf(stderr, "mailctl: warning: %s\n", err);
		free(err);
		return;
	}
	int fd = open(cfg->users_file, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || fchown(fd, 0, pw->pw_gid) < 0 || fchmod(fd, 0640) < 0)
		fprintf(stderr, "mailctl: warning: cannot make %s readable by group %ld: %s\n",
			cfg->users_file, (long)pw->pw_gid, strerror(errno));
	if (fd >= 0)
		close(fd);
}

static int user_add(struct mailctl *m, const char *arg)
{
	char addr[ADDR_BUF];
	char *err = NULL;
	struct config *cfg = m->cfg;

	if (user_address(m, arg, addr, true) < 0)
		return EXIT_ERROR;
	/* Typing a password twice for nothing is annoying; the check that
	 * counts is made again under the lock. */
	if (isatty(STDIN_FILENO) && user_known(cfg, addr) == 1)
		return errmsg("user %s already exists", addr);
	struct stat st;
	bool created = stat(cfg->users_file, &st) < 0 && errno == ENOENT;
	if (created) {
		/* The first user: the file's directory may not exist yet. */
		char *dir = xstrdup(cfg->users_file);
		char *slash = strrchr(dir, '/');
		if (slash != NULL && slash != dir) {
			*slash = '\0';
			if (mkdir_p(dir, 0755) < 0) {
				errmsg("cannot create directory %s: %s", dir, strerror(errno));
				free(dir);
				return EXIT_ERROR;
			}
		}
		free(dir);
	}

	char *pw = password_read();
	if (pw == NULL)
		return EXIT_ERROR;
	int r = users_file_set(cfg->users_file, addr, pw, cfg->password_scheme, false, true, &err);
	password_free(&pw);
	if (r < 0) {
		errmsg("%s", err);
		free(err);
		return EXIT_ERROR;
	}
	if (created)
		users_file_share(cfg);
	if (mailbox_create(cfg, addr, &err) < 0) {
		errmsg("user %s added, but its mailbox could not be created (it will be at the "
		       "first delivery or login): %s", addr, err);
		free(err);
		return EXIT_ERROR;
	}
	printf("user %s added\n", addr);
	return 0;
}

static int user_passwd(struct mailctl *m, const char *arg)
{
	char addr[ADDR_BUF];
	char *err = NULL;
	struct config *cfg = m->cfg;

	if (user_address(m, arg, addr, true) < 0)
		return EXIT_ERROR;
	if (isatty(STDIN_FILENO) && user_known(cfg, addr) == 0)
		return errmsg("no such user %s", addr);
	char *pw = password_read();
	if (pw == NULL)
		return EXIT_ERROR;
	int r = users_file_set(cfg->users_file, addr, pw, cfg->password_scheme, true, false, &err);
	password_free(&pw);
	if (r < 0) {
		errmsg("%s", err);
		free(err);
		return EXIT_ERROR;
	}
	printf("password of %s changed\n", addr);
	return 0;
}

static int user_del(struct mailctl *m, const char *arg)
{
	char addr[ADDR_BUF];
	char *err = NULL;

	/* Any valid address: a user of a domain no longer in local_domains
	 * can still be removed. */
	if (user_address(m, arg, addr, false) < 0)
		return EXIT_ERROR;
	if (users_file_del(m->cfg->users_file, addr, &err) < 0) {
		errmsg("%s", err);
		free(err);
		return EXIT_ERROR;
	}
	char *at = strchr(addr, '@');
	*at = '\0';
	printf("user %s@%s deleted; the mail in %s/mail/%s/%s was kept\n", addr, at + 1,
	       m->cfg->data_dir, at + 1, addr);
	return 0;
}

static void list_cb(const char *addr, void *arg)
{
	(void)arg;
	printf("%s\n", addr);
}

static int user_list(struct mailctl *m, const char *arg)
{
	char *err = NULL;
	(void)arg;
	if (users_file_list(m->cfg->users_file, list_cb, NULL, &err) < 0) {
		errmsg("%s", err);
		free(err);
		return EXIT_ERROR;
	}
	return 0;
}

static const struct {
	const char *name;
	bool takes_address;
	int (*run)(struct mailctl *m, const char *addr);
} user_actions[] = {
	{ "add", true, user_add },
	{ "passwd", true, user_passwd },
	{ "del", true, user_del },
	{ "list", false, user_list },
};

static int cmd_user(struct mailctl *m, int argc, char **argv)
{
	if (argc < 2)
		return usage_error("user: what to do? add, passwd, del or list");
	for (size_t i = 0; i < ARRAY_SIZE(user_actions); i++) {
		if (strcmp(argv[1], user_actions[i].name) != 0)
			continue;
		int want = user_actions[i].takes_address ? 3 : 2;
		if (argc < want)
			return usage_error("user %s: ADDRESS missing", argv[1]);
		if (argc > want)
			return usage_error("user %s: too many arguments", argv[1]);
		if (need_config(m) < 0)
			return EXIT_ERROR;
		return user_actions[i].run(m, want == 3 ? argv[2] : NULL);
	}
	return usage_error("user: unknown action %s", log_str(argv[1]));
}

/* ---------------------------------------------------------------- dns */

static int cmd_dns(struct mailctl *m, int argc, char **argv)
{
	if (argc != 3)
		return usage_error("dns: TYPE NAME expected");
	int type = dns_type_parse(argv[1]);
	if (type < 0)
		return usage_error("dns: unknown type %s", log_str(argv[1]));
	if (need_config(m) < 0)
		return EXIT_ERROR;
	char *err = NULL;
	struct dns *d = dns_new(&m->cfg->dns_servers, m->cfg->dns_timeout_ms, &err);
	if (d == NULL) {
		errmsg("%s", err);
		free(err);
		return EXIT_ERROR;
	}
	struct dns_answer a;
	dns_lookup(d, argv[2], type, &a);
	printf("%s %s %s", argv[2], argv[1], dns_outcome_name(a.outcome));
	if (a.outcome == DNS_TEMPFAIL)
		printf(" (%s)", a.error ? a.error : "?");
	else
		printf(" ttl=%u", a.ttl);
	putchar('\n');
	for (size_t i = 0; i < a.n; i++)
		printf("  %s\n", log_str(a.rr[i]));
	int rc = a.outcome == DNS_PASS ? 0 : a.outcome == DNS_NODATA ? 1 : a.outcome == DNS_NXDOMAIN ? 2 : 3;
	dns_answer_free(&a);
	dns_free(&d);
	return rc;
}

/* ---------------------------------------------------------------- main */

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct mailctl m = { NULL, NULL };
	int c;

	log_open("mailctl", LOG_LVL_WARN, NULL);
	m.config_path = getenv("MAILGW_CONFIG");
	if (m.config_path == NULL || m.config_path[0] == '\0')
		m.config_path = DEFAULT_CONFIG;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+c:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			m.config_path = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			if (optopt == 'c')
				return usage_error("-c needs a FILE");
			return usage_error("unknown option %s", log_str(argv[optind - 1]));
		}
	}
	if (optind >= argc)
		return usage_error("no command given");

	const struct command *cmd = NULL;
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++) {
		if (strcmp(argv[optind], commands[i].name) == 0)
			cmd = &commands[i];
	}
	if (cmd == NULL)
		return usage_error("unknown command %s", log_str(argv[optind]));

	int r = cmd->run(&m, argc - optind, argv + optind);
	if (m.cfg != NULL)
		config_free(&m.cfg);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "mailctl: cannot write to standard output: %s\n", strerror(errno));
		return EXIT_ERROR;
	}
	return r;
}
