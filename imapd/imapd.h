/*
 * imapd.h - internals of the IMAP daemon (not a library header: only
 * imapd/ and its unit tests include it).
 *
 *   main.c      the daemon frame (common/daemon.c): listeners, limits
 *   session.c   one connection: greeting, command loop, literals, auth,
 *               the folder commands (LIST, CREATE, ...), APPEND
 *   mailbox.c   the selected mailbox: the sequence-number map, sync with
 *               the store (EXISTS, EXPUNGE, FETCH FLAGS), SELECT, STATUS,
 *               EXPUNGE, CLOSE, IDLE, COPY/MOVE
 *   fetch.c     FETCH, and SEARCH with its message loading
 *   flags.c     STORE
 *   notify.c    one inotify instance per process that wakes IDLE sessions
 *   train.c     training by moving mail: what a move teaches, the learning
 *   pop3.c      POP3 (RFC 1939) of INBOX only
 *   auth.c      SASL PLAIN, the failed-login slow-down (IMAP and POP3)
 *   imap_parse.c, search.c   the command parser, sequence sets, SEARCH
 */
#ifndef IMAPD_H
#define IMAPD_H

#include "common/common.h"
#include "common/mime.h"
#include "imapd/imap_parse.h"
#include "store/store.h"

#define IMAP_RBUF_MAX (64 * 1024)
#define IMAP_MAX_ARGS 100000
/* Literals of commands other than APPEND (a LOGIN password, a SEARCH
 * string): larger ones get NO [TOOBIG] before any "+". */
#define IMAP_SMALL_LITERAL_MAX (64 * 1024)
#define IMAP_LOGIN_LITERAL_MAX 8192
#define IMAP_MAX_KEYWORDS 1000     /* per command */
/* Flush FETCH output when this much is pending. */
#define IMAP_FLUSH_AT (256 * 1024)

/* --------------------------------------------------------------- notify.c */

/* Watches users' store roots: any commit to a store's index (any process:
 * filterd delivering, another imapd) writes its WAL file, which wakes the
 * sessions that watch that store. */
struct notify;
struct notify_sub;
struct notify *notify_new(void);
void notify_free(struct notify **n);
/* Watch dir; the returned subscription's fd becomes readable on change. */
struct notify_sub *notify_subscribe(struct notify *n, const char *dir);
int notify_sub_fd(const struct notify_sub *s);
void notify_sub_drain(struct notify_sub *s);
void notify_unsubscribe(struct notify *n, struct notify_sub **s);

/* -------------------------------------------------------------- mailbox.c */

struct mbox_msg {              /* 24 bytes: a session holds one per message */
	uint32_t uid;
	unsigned flags : 16;
	bool recent : 1;
	char *keywords;          /* kw_dup(): "" (shared) when none */
	uint64_t modseq;
};

/* The selected mailbox as this session has announced it to the client. */
struct mailbox {
	char *name;
	bool readonly;           /* EXAMINE */
	uint32_t uidvalidity, uidnext;
	uint64_t highestmodseq;  /* as far as this session has synced */
	struct mbox_msg *msgs;   /* seq = index + 1 */
	size_t n, cap;
	struct strlist keywords; /* announced in FLAGS */
	bool expunge_pending;    /* changes seen while expunges could not be reported */
};

/* ----------------------------------------------------------------- session */

struct imapd {
	struct daemon *d;
	struct notify *notify;
	char *data_dir;
	/* IDLE sessions woken together (one delivery, a thousand sessions on
	 * the mailbox) take turns: SQLite readers that all start at once
	 * fight over the WAL read locks and back off in sleeps. */
	void *wake_sem;           /* sem_t */
};

enum session_state { ST_NOT_AUTH, ST_AUTH, ST_SELECTED, ST_LOGOUT };

struct session {
	struct imapd *app;
	struct daemon_cfg *dc;
	const struct config *cfg;
	struct conn *conn;
	struct daemon_link link;
	struct imap_parser *parser;
	char sid[ID_SIZE];
	char ip[64];
	enum session_state state;
	char *user;               /* after login */
	struct store *store;
	struct mailbox *mbox;     /* ST_SELECTED */
	bool condstore;           /* CONDSTORE enabled (ENABLE, or a command that uses it) */
	int64_t bad;              /* BAD replies so far */
	int64_t commands;
	int auth_failures;
	bool quit;
	bool closing;             /* BYE sent: no tagged reply may follow */
	const char *tag;          /* of the command running */
	char *names[4];           /* decoded folder names of the command running */
	struct buf line;          /* scratch for responses */
	bool train_pending;       /* training queued: apply before waiting for input */
	int64_t train_checked;    /* when the queue was last looked at */
};

/* session.c */
void imap_session_run(struct imapd *app, int fd, const struct sockaddr *peer, bool implicit_tls,
		      const char *ip);
/* Responses.  Untagged "* ...", tagged "TAG OK|NO|BAD ...". */
void sess_untagged(struct session *s, const char *fmt, ...) PRINTFLIKE(2, 3);
void sess_tagged(struct session *s, const char *status, const char *fmt, ...) PRINTFLIKE(3, 4);
void sess_bad(struct session *s, const char *fmt, ...) PRINTFLIKE(2, 3);
/* A store error: logged with the session id, "NO [SERVERBUG]..." or
 * "NO [UNAVAILABLE]" to the client; frees err. */
void sess_store_error(struct session *s, const char *what, char *err);
/* Write raw bytes (literal content), flushing when much is pending;
 * false when the connection failed. */
bool sess_write(struct session *s, const void *p, size_t n);
bool sess_flush_if_big(struct session *s);
/* Folder name argument, modified UTF-7 decoded (raw UTF-8 accepted);
 * "INBOX" in any case.  Valid until the command ends.  NULL and a NO reply
 * when invalid. */
const char *sess_folder_arg(struct session *s, const struct imap_arg *a);
/* Append a folder name for the client (modified UTF-7, quoted). */
void write_folder_name(struct buf *b, const char *name);
/* IMAP flag list parsing: "\Seen \Answered kw" into flags + keywords. */
int parse_flag_list(const struct imap_arg *args, size_t n, unsigned *flags_r, struct buf *kw,
		    const char **error_r);
void format_flags(struct buf *out, unsigned flags, const char *keywords, bool recent);

/* auth.c: SASL PLAIN (RFC 4616) and the failed-login slow-down per IP
 * (a success does not reset it: any valid account would). */
int sasl_plain_decode(const char *b64, char **authz_r, char **authc_r, char **pass_r);
void sasl_plain_free(char *authz, char *authc, char *pass);
void auth_fail_delay(const char *ip);

/* utf7.c: modified UTF-7 (RFC 3501 5.1.3) <-> UTF-8, malloc'd; decode
 * gives NULL for invalid input. */
char *mutf7_decode(const char *in);
char *mutf7_encode(const char *in);

/* pop3.c */
void pop3_session_run(struct imapd *app, int fd, const struct sockaddr *peer, bool implicit_tls,
		      const char *ip);

/* mailbox.c */
void cmd_select(struct session *s, const struct imap_cmd *c, bool readonly);
void cmd_status(struct session *s, const struct imap_cmd *c);
void cmd_close(struct session *s, const struct imap_cmd *c, bool expunge);
void cmd_expunge(struct session *s, const struct imap_cmd *c, const struct imap_arg *uidset);
void cmd_copy(struct session *s, const struct imap_cmd *c, const struct imap_arg *args, size_t n,
	      bool uid, bool move);
void cmd_idle(struct session *s, const struct imap_cmd *c);
void mailbox_free(struct mailbox **mb);
/* Keyword strings of the view ("" is shared, not allocated). */
char *kw_dup(const char *k);
void kw_free(char *k);
/* Bring the view up to date with the store and tell the client: new
 * messages (EXISTS, RECENT), flag changes (FETCH FLAGS, with MODSEQ under
 * CONDSTORE) and, when expunges_ok, expunges (EXPUNGE n).  RFC 3501
 * section 7.4.1: no EXPUNGE during FETCH, STORE or SEARCH.  True when
 * the folder had changed. */
bool mailbox_sync(struct session *s, bool expunges_ok);
/* Announce keywords the client has not seen in FLAGS yet. */
void mailbox_note_keywords(struct session *s, const char *kws);
/* Sequence number of uid (1-based), 0 when absent. */
uint32_t mailbox_seq(const struct mailbox *mb, uint32_t uid);
/* Resolve a sequence set (or UID set when uid) argument of the selected
 * mailbox to sequence numbers in out.  false, with BAD sent, on a syntax
 * error or a sequence number beyond the mailbox. */
bool mailbox_resolve(struct session *s, const char *set, bool uid, struct seqset *out);

/* train.c: training by moving mail.  train_want: what a message that
 * arrives in dest should be learned as, given the verdict it was
 * delivered with; false when the move changes nothing (Trash).
 * train_note queues it (inside the command's batch), train_flush applies
 * what is queued (after the reply). */
#define TRAIN_CHECK_MS 60000 /* a session looks at the queue at least this often */
bool train_want(const char *dest, const char *verdict, enum store_learn *want_r);
void train_note(struct session *s, const char *dest, uint32_t uid);
void train_flush(struct session *s);
/* What train_flush does for any session of user (POP3's too): applies
 * the queue for up to a few seconds; true when some is left. */
bool train_apply(struct store *st, const char *user, const struct config *cfg,
		 const char *data_dir, const char *sid);

/* fetch.c, flags.c */
void cmd_fetch(struct session *s, const struct imap_cmd *c, const struct imap_arg *args, size_t n,
	       bool uid);
void cmd_store(struct session *s, const struct imap_cmd *c, const struct imap_arg *args, size_t n,
	       bool uid);
void cmd_search(struct session *s, const struct imap_cmd *c, const struct imap_arg *args, size_t n,
		bool uid);
/* Read a message file into a buffer with CRLF line ends.  -1 when the
 * file cannot be read (expunged meanwhile). */
int fetch_load_crlf(struct session *s, uint32_t uid, struct buf *out);

#endif
