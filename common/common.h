/*
 * common.h - the public interface of libcommon: memory and string helpers,
 * logging, buffers and slices, the configuration file, listeners and
 * connections with timeouts and limits, TLS, and the users file.
 *
 * Conventions (see STYLE.md): functions that can fail return 1 (done),
 * 0 (need more input) or -1 (error) unless stated otherwise; error detail
 * is returned through `char **error_r` as a malloc'd string the caller
 * frees.  Destructors take `**` and NULL the pointer.  Small allocations
 * die on OOM (x* helpers).
 */
#ifndef COMMON_H
#define COMMON_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#define PRINTFLIKE(f, a) __attribute__((format(printf, f, a)))
#define NORETURN __attribute__((noreturn))
#define UNUSED __attribute__((unused))
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------------ util.c */

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) PRINTFLIKE(1, 2);

/* Copy with truncation check: returns false (and copies a truncated,
 * NUL-terminated prefix) when src does not fit in size bytes. */
bool str_copy(char *dst, const char *src, size_t size);
/* ASCII lower-case in place; returns s. */
char *str_lower(char *s);
bool str_ieq(const char *a, const char *b);
bool str_iprefix(const char *s, const char *prefix);
/* Trim ASCII blanks at both ends in place; returns the start. */
char *str_trim(char *s);

/* Monotonic clock in milliseconds; wall clock in microseconds. */
int64_t clock_mono_ms(void);
int64_t clock_real_us(void);

/* Write all of buf, retrying on EINTR and short writes.  0 or -1 (errno). */
int write_full(int fd, const void *buf, size_t len);
/* sqlwal.c: PRAGMA journal_mode=WAL, retried for timeout_ms while another
 * handle holds the lock.  0, or -1 with *why_r (valid until the next call
 * on db). */
struct sqlite3;
int sqlite_set_wal(struct sqlite3 *db, int timeout_ms, const char **why_r);
/* Open the directory and fsync it.  0 or -1 (errno). */
int fsync_dir(const char *path);
/* mkdir -p; 0 or -1 (errno). */
int mkdir_p(const char *path, mode_t mode);

/* A unique id for queue ids and session ids: 14 characters of
 * [0-9A-Z], time-ordered, unique within the host. out must hold
 * ID_SIZE bytes. */
#define ID_SIZE 15
void id_generate(char out[ID_SIZE]);

/* RFC 5322 date-time of t (seconds since the epoch) in local time. */
void date_rfc5322(int64_t t, char *out, size_t size);

/* ------------------------------------------------------------------- log.c */

enum log_level { LOG_LVL_DEBUG, LOG_LVL_INFO, LOG_LVL_WARN, LOG_LVL_ERR };

/* progname prefixes every line; syslog_facility NULL or "" logs to stderr
 * only, otherwise also to syslog(3) with that facility ("mail", "local0"..).
 * Returns -1 on an unknown facility name. */
int log_open(const char *progname, enum log_level level, const char *syslog_facility);
void log_set_level(enum log_level level);
/* True when debug lines are written (to skip building them otherwise). */
bool log_debug_enabled(void);
int log_level_parse(const char *name, enum log_level *level_r);

/* Every line starts with the session or queue id (id may be NULL).  The
 * formatted line is capped at LOG_LINE_MAX and control characters in it
 * are replaced, so a CR/LF from a peer can never forge a log line.
 * log_warn/log_err append ": strerror(errno)"; the x forms do not. */
#define LOG_LINE_MAX 4096
void log_debug(const char *id, const char *fmt, ...) PRINTFLIKE(2, 3);
void log_info(const char *id, const char *fmt, ...) PRINTFLIKE(2, 3);
void log_warn(const char *id, const char *fmt, ...) PRINTFLIKE(2, 3);
void log_warnx(const char *id, const char *fmt, ...) PRINTFLIKE(2, 3);
void log_err(const char *id, const char *fmt, ...) PRINTFLIKE(2, 3);
void log_errx(const char *id, const char *fmt, ...) PRINTFLIKE(2, 3);
NORETURN void log_fatal(const char *id, const char *fmt, ...) PRINTFLIKE(2, 3);
NORETURN void log_fatalx(const char *id, const char *fmt, ...) PRINTFLIKE(2, 3);
/* A broken invariant: log and abort() for a core dump. */
NORETURN void log_panic(const char *id, const char *fmt, ...) PRINTFLIKE(2, 3);

/* Untrusted text for a log line: a sanitised copy (non-printable bytes as
 * \xNN, capped at LOG_STR_MAX bytes with "..." appended) in one of a few
 * thread-local rotating buffers, valid until LOG_STR_SLOTS more calls. */
#define LOG_STR_MAX 200
#define LOG_STR_SLOTS 8
const char *log_str(const char *s);
const char *log_strn(const char *s, size_t len);
/* The sanitiser itself: writes at most dstsize-1 bytes plus NUL. */
size_t log_sanitize(char *dst, size_t dstsize, const char *src, size_t len, size_t cap);

/* ------------------------------------------------------------------- buf.c */

/* A growable, always NUL-terminated byte buffer that refuses to grow past
 * max (an error, never silent truncation). */
struct buf {
	char *data;
	size_t len, cap, max;
};
/* A borrowed view; not NUL-terminated. */
struct slice {
	const char *p;
	size_t len;
};

void buf_init(struct buf *b, size_t max);
void buf_free(struct buf *b);
void buf_reset(struct buf *b);
/* 0, or -1 when the result would exceed max (b is then unchanged). */
int buf_append(struct buf *b, const void *p, size_t n);
int buf_puts(struct buf *b, const char *s);
int buf_putc(struct buf *b, char c);
int buf_printf(struct buf *b, const char *fmt, ...) PRINTFLIKE(2, 3);
int buf_vprintf(struct buf *b, const char *fmt, va_list ap);
/* Drop the first n bytes. */
void buf_consume(struct buf *b, size_t n);
/* Make room for n more bytes; returns a pointer to the free space or NULL
 * when that would exceed max.  Follow with buf_commit(). */
char *buf_reserve(struct buf *b, size_t n);
void buf_commit(struct buf *b, size_t n);

static inline struct slice slice_make(const char *p, size_t len)
{
	struct slice s = { p, len };
	return s;
}
struct slice slice_cstr(const char *s);
bool slice_eq(struct slice s, const char *cstr);
bool slice_ieq(struct slice s, const char *cstr);
bool slice_iprefix(struct slice s, const char *prefix);
char *slice_dup(struct slice s);

/* ---------------------------------------------------------------- config.c */

struct strlist {
	char **v;
	size_t n;
};
void strlist_add(struct strlist *l, const char *s);
bool strlist_contains_ci(const struct strlist *l, const char *s);
void strlist_free(struct strlist *l);

/* A DNSBL/DNSWL or URI blocklist zone from an "rbl" or "uribl" line:
 * "zone A.B.C.D[-E.F.G.H]=score ...".  Codes in host byte order. */
struct rbl_code {
	uint32_t lo, hi;
	double score;
};
struct rbl_zone {
	char *zone;
	struct rbl_code *codes;
	size_t ncodes;
};
struct rbl_list {
	struct rbl_zone *v;
	size_t n;
};

/* The one configuration file shared by every program (DESIGN.md).  Paths
 * are made absolute against the directory of the config file. */
struct config {
	char *path;                 /* the file it was read from */
	char *hostname;
	struct strlist local_domains;
	char *data_dir;
	char *users_file;
	char *tls_cert_file;        /* "" = no TLS */
	char *tls_key_file;
	struct strlist smtp_listen; /* plain + STARTTLS */
	struct strlist smtps_listen; /* implicit TLS */
	char *run_user;             /* drop to this user when started as root */
	char *syslog_facility;      /* "" = stderr only */
	char *log_level;
	char *password_scheme;      /* for mailctl user add|passwd */
	char *postmaster_address;   /* where postmaster@<local domain> goes */
	int64_t max_message_size;
	int64_t max_recipients;
	int64_t max_connections;
	int64_t max_connections_per_ip;
	int64_t max_bad_commands;
	int64_t max_commands;       /* per session */
	int64_t max_line_length;    /* DATA text lines, octets incl. CRLF */
	int64_t smtp_timeout_ms;    /* waiting for a command (and TLS handshake) */
	int64_t smtp_data_timeout_ms; /* waiting for DATA/BDAT bytes */
	int64_t smtp_data_deadline_ms; /* MAIL to the end of the text, in all */
	int64_t shutdown_timeout_ms; /* SIGTERM: how long sessions may finish */
	/* imapd */
	struct strlist imap_listen;  /* plain + STARTTLS */
	struct strlist imaps_listen; /* implicit TLS */
	int64_t allow_plaintext_auth; /* 0/1: logins without TLS */
	int64_t imap_max_connections;
	int64_t imap_max_connections_per_ip;
	int64_t imap_idle_timeout_ms;
	int64_t imap_login_timeout_ms;
	int64_t imap_max_bad_commands;
	int64_t imap_max_line_length;
	struct strlist pop3_listen;  /* plain + STLS */
	struct strlist pop3s_listen; /* implicit TLS */
	int64_t pop3_timeout_ms;
	/* DNS (common/dns.c) */
	struct strlist dns_servers;  /* host:port forwarders; empty: resolv.conf */
	int64_t dns_timeout_ms;
	/* Checks before the 250 (filterd) */
	struct rbl_list rbl;         /* client address lists (port 25) */
	struct rbl_list uribl;       /* lists for domains linked from the body */
	double rbl_reject_score;     /* RBL total at or above: refused at RCPT */
	int64_t dns_error_tempfail;  /* 0/1: 451 instead of failing open */
	int64_t spf_check, dkim_check, dmarc_check; /* 0/1 */
	double spf_fail_score, spf_softfail_score, spf_permerror_score;
	double dkim_fail_score, dmarc_fail_score;
	double bad_from_score;       /* no From field, or one without a usable domain */
	int64_t dmarc_reject;        /* 0/1: p=reject + fail refused with 550 5.7.1 */
	int64_t dmarc_quarantine;    /* 0/1: p=quarantine + fail goes to Junk */
	char *psl_file;              /* public suffix list (organizational domains) */
	char *rules_dir;             /* rules.d: *.rules files; "" = no rules */
	double junk_score;           /* total at or above: Junk */
	double reject_score;         /* total at or above: 550 5.7.1 at end of DATA */
	/* The classifier and training (filterd, imapd, mailctl) */
	int64_t bayes;               /* 0/1: classify with the users' and site's databases */
	int64_t bayes_min_learned;   /* of each class before a database gives verdicts */
	int64_t bayes_max_learned;   /* messages a database keeps (expiry), 0 no limit */
	int64_t bayes_learn_site;    /* 0/1: training also teaches the site-wide database */
	int64_t bayes_autolearn;     /* 0/1: clear verdicts teach the recipient's classifier */
	double bayes_autolearn_ham;  /* score (without BAYES_ rules) at or below: learn ham */
	double bayes_autolearn_spam; /* score (without BAYES_ rules) at or above: learn spam */
};

/* Incremental parser: feed any chunking of the file (also one byte at a
 * time), then finish.  Errors read "FILE:LINE: message". */
struct config_parser;
struct config_parser *config_parser_new(const char *filename);
/* 0, or -1 with *error_r. */
int config_parser_feed(struct config_parser *p, const char *data, size_t len, char **error_r);
/* Validates and returns the config (0), or -1 with *error_r.  Frees p. */
int config_parser_finish(struct config_parser **p, struct config **cfg_r, char **error_r);

int config_load(const char *path, struct config **cfg_r, char **error_r);
void config_free(struct config **cfg);
/* Write a reference of every key with its default to f (for docs). */
struct config_keyinfo {
	const char *key;
	const char *def;
	const char *help;
};
const struct config_keyinfo *config_keys(size_t *n_r);

/* ------------------------------------------------------------------- net.c */

/* Parse "host:port", "[v6]:port" or "*:port".  0 or -1 with *error_r. */
int net_parse_hostport(const char *s, struct sockaddr_storage *ss, socklen_t *len_r, char **error_r);
/* Bind and listen (SO_REUSEADDR, CLOEXEC, non-blocking).  Returns the fd
 * or -1 with *error_r. */
int net_listen(const char *hostport, char **error_r);
/* The numeric address of sa without port, into buf (INET6_ADDRSTRLEN+). */
void net_addr_str(const struct sockaddr *sa, char *buf, size_t size);

typedef struct ssl_ctx_st SSL_CTX;

/* A connection: socket, optional TLS, buffered input and output.  Each
 * read waits at most the timeout given to it (the state's timeout). */
enum conn_status { CONN_OK = 1, CONN_EOF = 0, CONN_ERROR = -1, CONN_TIMEOUT = -2, CONN_LIMIT = -3 };
struct conn;
struct conn *conn_new(int fd, const struct sockaddr *peer, size_t rbuf_max);
void conn_free(struct conn **c);     /* closes the socket */
int conn_fd(const struct conn *c);
const char *conn_peer_ip(const struct conn *c);
/* Buffered input: bytes read but not yet consumed. */
struct buf *conn_rbuf(struct conn *c);
/* Read more into rbuf, waiting at most timeout_ms.  CONN_OK, CONN_EOF,
 * CONN_ERROR, CONN_TIMEOUT, or CONN_LIMIT when rbuf is full. */
enum conn_status conn_fill(struct conn *c, int timeout_ms);
/* True when the peer has sent bytes we have not consumed: in rbuf, inside
 * TLS, or waiting in the socket. */
bool conn_input_pending(struct conn *c);
/* Decrypted bytes held inside TLS (poll(2) on the socket cannot see them). */
bool conn_tls_buffered(struct conn *c);
/* Buffered output; conn_flush writes it out within timeout_ms. */
void conn_write(struct conn *c, const void *p, size_t n);
void conn_printf(struct conn *c, const char *fmt, ...) PRINTFLIKE(2, 3);
enum conn_status conn_flush(struct conn *c, int timeout_ms);
/* Bytes written but not yet flushed (the buffer holds at most 1 MiB:
 * flush long responses in pieces). */
size_t conn_pending(const struct conn *c);
/* Flush, then read one line (without its line end) of at most max
 * octets, waiting at most timeout_ms per read: malloc'd, "" for a line
 * that was too long (skipped to its end), NULL on EOF, error or timeout.
 * For the odd raw line of a protocol (a SASL response). */
char *conn_read_line(struct conn *c, size_t max, int timeout_ms);
/* Free the empty input and output buffers (a connection about to sit idle). */
void conn_release_buffers(struct conn *c);
/* TLS server handshake on the live socket (STARTTLS or implicit TLS).
 * The caller must have checked that no plaintext is pending.  CONN_OK or
 * an error with *error_r (static string). */
enum conn_status conn_tls_accept(struct conn *c, SSL_CTX *ctx, int timeout_ms, const char **error_r);
bool conn_is_tls(const struct conn *c);
/* "TLSv1.3 cipher=TLS_AES_256_GCM_SHA384" or "" */
const char *conn_tls_info(const struct conn *c);
const char *conn_tls_version(const struct conn *c);
const char *conn_tls_cipher(const struct conn *c);

/* Incremental line splitting over a buffer: lines end with LF (a CR
 * before it is stripped and reported).  A line longer than max is an
 * error; the reader then discards input up to the next LF. */
struct linereader {
	size_t max;
	bool discarding;
};
enum line_status { LINE_OK = 1, LINE_MORE = 0, LINE_TOOLONG = -1 };
/* On LINE_OK, *line is the line without its terminator (borrowed from in)
 * and *consumed the bytes to drop from in after use.  On LINE_TOOLONG the
 * over-long line is being skipped: consume *consumed, call again. */
enum line_status linereader_next(struct linereader *lr, const char *in, size_t inlen,
				 struct slice *line, bool *crlf_r, size_t *consumed);

/* Connection counting: total and per client IP. */
struct connlimit;
struct connlimit *connlimit_new(int64_t max_total, int64_t max_per_ip);
void connlimit_free(struct connlimit **cl);
void connlimit_set(struct connlimit *cl, int64_t max_total, int64_t max_per_ip);
/* 0 acquired; -1 total limit reached; -2 per-IP limit reached. */
int connlimit_acquire(struct connlimit *cl, const char *ip);
void connlimit_release(struct connlimit *cl, const char *ip);
int64_t connlimit_count(struct connlimit *cl);

/* ------------------------------------------------------------------- tls.c */

/* A server context: TLS 1.2 minimum, no renegotiation.  NULL with
 * *error_r on failure.  Free with tls_ctx_free (SSL_CTX_free). */
SSL_CTX *tls_ctx_new(const char *cert_file, const char *key_file, char **error_r);
void tls_ctx_free(SSL_CTX **ctx);

/* ------------------------------------------------------------------- dns.c */

/* The resolver of a process: one libunbound context (forwarding to
 * dns_servers, or as /etc/resolv.conf says), our own deadline per lookup,
 * answers cached by TTL.  Safe to share between threads. */
enum dns_outcome { DNS_PASS, DNS_NODATA, DNS_NXDOMAIN, DNS_TEMPFAIL };
#define DNS_T_A 1
#define DNS_T_NS 2
#define DNS_T_CNAME 5
#define DNS_T_PTR 12
#define DNS_T_MX 15
#define DNS_T_TXT 16
#define DNS_T_AAAA 28
struct dns_answer {
	enum dns_outcome outcome;
	char **rr;               /* DNS_PASS: records as text (A/AAAA addresses, TXT
				    strings joined, MX "pref host", names) */
	size_t n;
	uint32_t ttl;
	char *error;             /* DNS_TEMPFAIL: why */
};
struct dns;
struct dns_query;
/* NULL with *error_r when the configuration is unusable. */
struct dns *dns_new(const struct strlist *servers, int64_t timeout_ms, char **error_r);
void dns_free(struct dns **d);
/* Start a lookup; collect it with dns_wait (exactly once). */
struct dns_query *dns_start(struct dns *d, const char *name, int rrtype);
/* Wait until the answer or deadline_ms (clock_mono_ms()); past it the
 * outcome is DNS_TEMPFAIL "timeout".  Frees the query; free the answer
 * with dns_answer_free. */
void dns_wait(struct dns_query **q, int64_t deadline_ms, struct dns_answer *ans);
/* The configured deadline of one lookup (dns_timeout_ms). */
int64_t dns_timeout(const struct dns *d);
/* start + wait with the configured timeout. */
void dns_lookup(struct dns *d, const char *name, int rrtype, struct dns_answer *ans);
void dns_answer_free(struct dns_answer *a);
const char *dns_outcome_name(enum dns_outcome o);
/* "A", "TXT", ... (case-insensitive) to the type number, or -1. */
int dns_type_parse(const char *name);

/* ---------------------------------------------------------------- daemon.c */

/* The frame every daemon shares: listeners, an accept loop with one
 * detached thread per connection, connection limits (total and per IP),
 * SIGHUP reload of a reference-counted configuration, privilege drop,
 * and a graceful SIGTERM that wakes sessions waiting for input. */
struct daemon_ops;
struct daemon_cfg {
	int refs;
	struct config *cfg;
	SSL_CTX *tls;              /* NULL: no TLS */
	struct userdb *users;
	void *app;                 /* the program's per-configuration data */
	const struct daemon_ops *ops;
};

/* A live session, for waking it at shutdown. */
struct daemon_link {
	struct daemon_link *next, *prev;
	int fd;
	bool waiting;              /* blocked reading input: safe to wake */
};

struct daemon;
struct daemon_ops {
	const char *name;          /* program name for logs */
	/* Listener kinds: for kind k, the addresses of cfg and whether the
	 * port speaks TLS from the first byte. */
	int nkinds;
	const struct strlist *(*listen_addrs)(const struct config *cfg, int kind);
	bool (*kind_tls)(int kind);
	/* Limits from a configuration. */
	void (*limits)(const struct config *cfg, int64_t *max_total, int64_t *max_per_ip);
	/* Best-effort greeting that refuses a connection (non-blocking
	 * socket); why: 1 total limit, 2 per-IP limit, 3 TLS port without
	 * TLS, 4 no thread. */
	void (*refuse)(int fd, int kind, int why, const struct config *cfg);
	/* Run one session to its end on its own thread.  The fd is the
	 * session's to close (conn_free). */
	void (*session)(struct daemon *d, int fd, const struct sockaddr *peer, int kind,
			const char *ip);
	/* After the listeners are bound and privileges dropped, before the
	 * first accept: 0, or -1 to exit. */
	int (*ready)(struct daemon *d, const struct config *cfg);
	/* Optional: what the program builds from each configuration (a
	 * resolver, checkers), freed with the configuration's last
	 * reference.  NULL with *error_r refuses the configuration. */
	void *(*cfg_app_new)(const struct config *cfg, char **error_r);
	void (*cfg_app_free)(void *app);
};

/* Load a configuration with its TLS context and users file (a reload
 * builds a new one).  NULL with *error_r. */
struct daemon_cfg *daemon_cfg_load(const struct daemon_ops *ops, const char *path, char **error_r);
/* The current configuration, referenced; release with daemon_cfg_put. */
struct daemon_cfg *daemon_cfg_get(struct daemon *d);
void daemon_cfg_put(struct daemon_cfg *dc);
/* The application's data (daemon_run's app). */
void *daemon_app(struct daemon *d);
bool daemon_stopping(struct daemon *d);
void daemon_register(struct daemon *d, struct daemon_link *l, int fd);
void daemon_unregister(struct daemon *d, struct daemon_link *l);
/* Mark the session as waiting for input (true) or busy; returns false
 * when the daemon is shutting down. */
bool daemon_wait_begin(struct daemon *d, struct daemon_link *l, bool waiting);
/* A session thread about to sit idle for long: return the pages of its
 * stack that deeper calls touched (SQLite's parser, a recovery scan). */
void daemon_trim_stack(void);
/* A session that has answered what it had and needs more input: flush,
 * then wait up to timeout_ms for the client, marked as waiting so that a
 * shutdown wakes it.  DAEMON_INPUT: more bytes in conn_rbuf; TIMEOUT
 * takes precedence over STOPPING; CLOSED: the connection failed or ended. */
enum daemon_wait { DAEMON_INPUT, DAEMON_TIMEOUT, DAEMON_STOPPING, DAEMON_CLOSED };
enum daemon_wait daemon_read_more(struct daemon *d, struct daemon_link *l, struct conn *c,
				  int timeout_ms);
/* Parse "-c FILE -t" and run the daemon until SIGTERM/SIGINT.  Returns
 * -1 when it could not start, else the number of sessions still running
 * at exit (when not 0, the caller must not free what sessions use). */
int daemon_main(const struct daemon_ops *ops, void *app, int argc, char **argv);

/* ----------------------------------------------------------------- users.c */

/* Addresses: "local@domain", stored lower-case.  Valid when local and
 * domain are safe as path components (DESIGN.md: no path escape):
 * local [a-z0-9._+=-]{1,64}, not starting or ending with '.', no "..";
 * domain labels [a-z0-9-], dot-separated, at most 253 octets. */
bool user_address_valid(const char *addr);
/* Lower-cases addr into out; false when invalid or too long. */
bool user_address_normalize(const char *addr, char *out, size_t size);

/* Dovecot passwd-file: "user@domain:{SCHEME}hash:uid:gid:gecos:home:shell:extra".
 * Schemes: SHA512-CRYPT, SHA256-CRYPT, BLF-CRYPT, CRYPT (any crypt(3)
 * hash, yescrypt by default). */
char *password_hash(const char *password, const char *scheme, char **error_r);
bool password_verify(const char *password, const char *stored);
bool password_scheme_valid(const char *scheme);

/* A read view of the users file that reloads itself when the file
 * changes (size, mtime or inode).  Safe to share between threads. */
struct userdb;
struct userdb *userdb_open(const char *path);
void userdb_free(struct userdb **db);
/* 1 exists, 0 no such user, -1 the file cannot be read (temporary). */
int userdb_exists(struct userdb *db, const char *addr);
/* 1 password correct, 0 wrong or no such user, -1 temporary failure. */
int userdb_verify(struct userdb *db, const char *addr, const char *password);

/* Editing the file, under an exclusive lock, by atomic rewrite (temp
 * file, fsync, rename).  0 or -1 with *error_r. */
int users_file_set(const char *path, const char *addr, const char *password,
		   const char *scheme, bool must_exist, bool must_not_exist, char **error_r);
int users_file_del(const char *path, const char *addr, char **error_r);
/* Calls cb for every valid user in file order.  0 or -1 with *error_r. */
int users_file_list(const char *path, void (*cb)(const char *addr, void *arg), void *arg,
		    char **error_r);

#endif
