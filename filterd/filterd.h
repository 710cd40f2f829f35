/*
 * filterd.h - internals of the SMTP gateway daemon (not a library header:
 * only filterd/ and its unit tests include it).
 */
#ifndef FILTERD_H
#define FILTERD_H

#include "common/common.h"
#include "rbl/rbl.h"
#include "rules/rules.h"
#include "store/store.h"

/* ---------------------------------------------------------- smtp_parse.c */

/* RFC 5321 section 4.5.3.1: path 256 octets incl. brackets, local-part 64,
 * domain 255.  Command lines: 512 octets (section 4.5.3.1.4), raised by
 * extensions; we allow up to SMTP_LINE_MAX. */
#define SMTP_PATH_MAX 256
#define SMTP_LINE_MAX 2048

enum smtp_cmd {
	CMD_UNKNOWN,
	CMD_EHLO,
	CMD_HELO,
	CMD_MAIL,
	CMD_RCPT,
	CMD_DATA,
	CMD_BDAT,
	CMD_RSET,
	CMD_NOOP,
	CMD_QUIT,
	CMD_VRFY,
	CMD_EXPN,
	CMD_HELP,
	CMD_STARTTLS,
	CMD_AUTH,
	CMD_ETRN,
};

/* Split a command line (without CRLF) into its verb and arguments.
 * Returns the command; *args_r is the text after the verb and one space. */
enum smtp_cmd smtp_cmd_parse(struct slice line, struct slice *args_r);
const char *smtp_cmd_name(enum smtp_cmd cmd);

struct smtp_path {
	char addr[SMTP_PATH_MAX + 1]; /* without brackets; "" for the null path */
	bool null;                    /* "<>" */
	bool utf8;                    /* has octets >= 0x80 (needs SMTPUTF8) */
	bool no_domain;               /* "<postmaster>" */
};

/* Parse "FROM:<path> params" (keyword "FROM") or "TO:<path> params".
 * Accepts optional blanks after the colon, a path without brackets, and
 * strips a source route (RFC 5321 section 4.1.2 / appendix C).  On success
 * *params_r holds what follows the path.  -1 with *error_r (static text)
 * on a syntax error. */
int smtp_path_parse(struct slice args, const char *keyword, struct smtp_path *path,
		    struct slice *params_r, const char **error_r);

/* Iterate "KEY[=VALUE]" parameters: 1 one returned, 0 no more, -1 syntax. */
int smtp_param_next(struct slice *params, struct slice *key, struct slice *value);

/* Parse "BDAT size [LAST]"; -1 on a syntax error. */
int smtp_bdat_parse(struct slice args, uint64_t *size_r, bool *last_r);

/* ----------------------------------------------------------- smtp_data.c */

/* The DATA decoder: removes dot-stuffing, turns CRLF into LF (the store's
 * line end), and finds the end of the message.  Only CR LF "." CR LF ends
 * it: a bare LF before or after the dot never does (the SMTP smuggling
 * class of bug).  Works on any chunking of the input, one byte at a time
 * included.  The same state also converts BDAT chunks (no dot handling). */
struct smtp_data {
	int state;
	bool bdat;
	size_t max_line;      /* octets per line incl. the line end */
	size_t linelen;
	uint64_t raw_bytes;   /* octets received, terminator excluded */
	uint64_t bare_lf;     /* LF not preceded by CR */
	bool line_too_long;
};

void smtp_data_init(struct smtp_data *d, size_t max_line, bool bdat);
/* Decode in[0..len) into out (room for len + 2 bytes).  Returns the
 * number of input bytes consumed (less than len only when the end of the
 * message was found: *done is then true) and the output length in
 * *outlen_r. */
size_t smtp_data_feed(struct smtp_data *d, const char *in, size_t len, char *out,
		      size_t *outlen_r, bool *done);
/* BDAT LAST: flush a CR held back at the end of the last chunk. */
size_t smtp_data_finish(struct smtp_data *d, char *out);

/* ---------------------------------------------------------------- spool.c */

/* The message text of one transaction: memory up to SPOOL_MEM_MAX, then
 * an unlinked temporary file in DATA_DIR/spool/. */
#define SPOOL_MEM_MAX (1024 * 1024)
struct spool {
	struct buf mem;
	int fd;
	uint64_t size;
	bool failed;
	int error;            /* errno of the failure */
	const char *dir;
};
void spool_init(struct spool *sp, const char *dir);
void spool_reset(struct spool *sp);
int spool_write(struct spool *sp, const char *p, size_t n);
/* Copy the whole spool into a store tmp file. */
int spool_copy_to(struct spool *sp, struct store_tmp *tmp, char **error_r);
/* Append the first max octets (or fewer) of the spool to out: 0 or -1. */
int spool_read_head(struct spool *sp, struct buf *out, size_t max);

/* --------------------------------------------------------------- deliver.c */

/* Open stores kept for reuse across transactions and threads: each handle
 * is used by one thread at a time. */
struct storepool;
struct storepool *storepool_new(const char *data_dir, size_t max_idle);
void storepool_free(struct storepool **pool);
struct store *storepool_get(struct storepool *pool, const char *addr, char **error_r);
void storepool_put(struct storepool *pool, struct store *st);
/* Drop a handle that saw an error instead of keeping it. */
void storepool_discard(struct storepool *pool, struct store *st);

struct delivery_rcpt {
	const char *addr;          /* normalised */
	const char *folder;
	struct store_meta meta;
	size_t group;              /* which headers (recipients of one group share a file) */
};
struct delivery {
	const char *qid;
	struct delivery_rcpt *rcpts;
	size_t nrcpts;
	struct buf *headers;       /* per group: the header section to prepend, LF line ends */
	size_t ngroups;
	struct spool *spool;
};
/* The user's classifier database, kept with a pooled store handle (NULL
 * when the user has none). */
struct bayes_db *storepool_bayes(struct store *st);
/* Write the message once per group, durably, and link it into every recipient's
 * folder.  All or nothing: on failure, copies already made are expunged.
 * 0, or -1 with *error_r. */
int deliver_message(struct storepool *pool, const struct delivery *dv, char **error_r);

/* ------------------------------------------------------- sender checks */

/* Results in RFC 8601 section 2.7 terms. */
enum auth_res { AR_NONE, AR_PASS, AR_FAIL, AR_SOFTFAIL, AR_NEUTRAL, AR_TEMPERROR, AR_PERMERROR };
const char *auth_res_name(enum auth_res r); /* "none", "pass", ... */

/* ----------------------------------------------------------------- spf.c */

/* RFC 7208 with libspf2, every lookup through our DNS layer (a custom
 * SPF_dns_server_t), with our own budget of 10 DNS-querying terms and 2
 * void lookups per check (section 4.6.4): past it, permerror.  One
 * verifier per configuration, shared by every session thread. */
struct spf_verifier;
struct spf_verifier *spf_verifier_new(struct dns *dns, const char *hostname, char **error_r);
void spf_verifier_free(struct spf_verifier **v);

struct spf_result {
	enum auth_res res;
	bool helo_identity;           /* checked the HELO name (null reverse path) */
	char domain[256];             /* the domain checked */
	char sender[SMTP_PATH_MAX + 1]; /* for smtp.mailfrom / smtp.helo */
	char reason[200];             /* why, for logs and header comments ("" if none) */
	unsigned lookups, void_lookups;
};
/* check_host() for the client ip (text, v4 or v6) with the MAIL FROM
 * address (without brackets; "" for <>, then the HELO name is checked,
 * RFC 7208 section 2.3).  Inputs are validated first (libspf2 aborts the
 * process on some bad input): an unusable identity gives none. */
void spf_verify(struct spf_verifier *v, const char *ip, const char *helo, const char *mail_from,
		struct spf_result *r);

/* ---------------------------------------------------------------- dkim.c */

/* DKIM verification (RFC 6376) with libopendkim, fed while the message
 * streams in; key records fetched through our DNS layer, the lookups
 * started at the end of the header section. */
int dkimv_init(char **error_r); /* once per process, before any thread */

struct dkim_sig_result {
	enum auth_res res;            /* pass, fail, neutral, temperror, permerror */
	char domain[256];             /* d= */
	char selector[128];           /* s= */
	char b[16];                   /* the first 8+ characters of b= (header.b) */
	char algo[24];                /* "rsa-sha256", "ed25519-sha256" */
	unsigned keybits;
	char reason[128];             /* "" on pass */
};
struct dkim_results {
	struct dkim_sig_result *v;
	size_t n;
};
void dkim_results_free(struct dkim_results *r);

struct dkimv;
struct dkimv *dkimv_new(struct dns *dns, const char *qid);
void dkimv_free(struct dkimv **v);
/* One header field "Name: value" as received, LF line ends for folds,
 * without the final line end. */
void dkimv_header(struct dkimv *v, const char *field, size_t len);
void dkimv_eoh(struct dkimv *v);
/* Body text with LF line ends, any chunking. */
void dkimv_body(struct dkimv *v, const char *p, size_t n);
/* Judge every signature; none: r->n == 0. */
void dkimv_eom(struct dkimv *v, struct dkim_results *r);

/* --------------------------------------------------------------- dmarc.c */

/* DMARC (RFC 7489): the record fetched through our DNS layer (falling back
 * to the organizational domain), parsed by libopendmarc; alignment and the
 * p/sp/pct decision are ours (libopendmarc 1.4.2's strict alignment is
 * broken). */
int dmarc_init(const char *psl_file, char **error_r); /* once per process */
/* The organizational domain of domain (RFC 7489 section 3.2), lower case. */
void dmarc_org_domain(const char *domain, char *out, size_t size);
/* Identifier alignment (section 3.1): strict = equal, relaxed = equal
 * organizational domains; case-insensitive. */
bool dmarc_aligned(const char *from_domain, const char *other, bool strict);

enum dmarc_action { DMARC_ACT_NONE, DMARC_ACT_QUARANTINE, DMARC_ACT_REJECT };
struct dmarc_result {
	enum auth_res res;            /* none (no record), pass, fail, temperror, permerror */
	char from_domain[256];
	char policy[12];              /* the policy that applies: none/quarantine/reject; "" */
	enum dmarc_action action;     /* what the policy asks for this message */
	bool sampled_out;             /* pct= let this fail through at a lower policy */
	bool spf_aligned, dkim_aligned;
	char reason[160];
};
/* The RFC 5322.From domain of the From fields of a message (the values
 * as received: a decoded display name could hide '<' or '@').  0, or -1
 * with *why when there is none, or several domains. */
int dmarc_from_domain(const char *const *from_values, size_t n, char *out, size_t size,
		      const char **why);
/* deadline_ms: no lookup waits past it (0: each waits one DNS timeout). */
void dmarc_verify(struct dns *dns, const char *from_domain, const struct spf_result *spf,
		  const struct dkim_results *dkim, int64_t deadline_ms, struct dmarc_result *r);
/* dmarc_verify's steps without DNS (for the unit tests): which of a
 * name's TXT records is the DMARC record (the count of candidates; one
 * is usable), and the decision from a record (org_domain non-NULL when it
 * was found there; sample in 0..99 against pct=). */
size_t dmarc_select_record(char *const *txt, size_t n, const char **record_r);
void dmarc_apply_record(const char *record, const char *from_domain, const char *org_domain,
			const struct spf_result *spf, const struct dkim_results *dkim, unsigned sample,
			struct dmarc_result *r);

/* ------------------------------------------------------------ msgcheck.c */

/* A message as it streams in: header fields in memory, body to the spool,
 * both to DKIM. */
#define MSG_HEADER_MAX (1024 * 1024)
struct checks;
struct msgcheck {
	bool active;
	const struct config *cfg;
	struct checks *ck;
	struct spool *spool;
	struct buf hdr;               /* the header fields as received, LF */
	size_t line_start;            /* of the line being read */
	size_t *fields;               /* offsets of each field in hdr */
	size_t nfields;
	size_t hdr_end;
	bool in_body;
	bool too_big;                 /* header section over MSG_HEADER_MAX */
	struct dkimv *dkim;
};
void msgcheck_begin(struct msgcheck *m, const struct config *cfg, struct checks *ck, const char *qid,
		    struct spool *sp);
void msgcheck_reset(struct msgcheck *m);
/* Decoded DATA/BDAT text (LF line ends), any chunking. */
void msgcheck_feed(struct msgcheck *m, const char *p, size_t n);
/* The text is complete. */
void msgcheck_end(struct msgcheck *m);
/* Field i: its name, and the value after the colon (folds kept). */
struct slice msgcheck_field(const struct msgcheck *m, size_t i, struct slice *name);
/* Fields a sender must not set (our authserv-id's A-R, X-Spam-*). */
bool msgcheck_field_removed(const struct msgcheck *m, size_t i);
/* The header fields to deliver (without the removed ones). */
void msgcheck_header_out(const struct msgcheck *m, struct buf *out);
/* The values of every From field, NULL-terminated; free each and *v. */
size_t msgcheck_from_values(const struct msgcheck *m, char ***v);

/* -------------------------------------------------------------- checks.c */

/* What the checks need per configuration (daemon_ops.cfg_app_new). */
struct checks {
	struct dns *dns;              /* NULL: no check needs DNS */
	struct spf_verifier *spf;     /* NULL: spf_check = no */
	struct ruleset *rules;        /* NULL: no rules_dir */
};
void *checks_new(const struct config *cfg, char **error_r);
void checks_free(void *ck);

/* What a transaction learnt before its end (SMTP state). */
struct tx_info {
	const char *qid, *ip, *helo, *mail_from;
	const struct spf_result *spf; /* NULL: not checked */
	const struct rbl_result *rbl; /* NULL: no lists */
	bool postmaster_only;         /* a blocked client writing to postmaster */
};
enum verdict_action { V_INBOX, V_JUNK, V_REJECT, V_TEMPFAIL };
#define VERDICT_FROM_DOMAINS 8
/* One recipient's share (checks_recipients): its lists, its classifier,
 * its rules (the Bayes rules differ), its score and folder. */
struct rcpt_verdict {
	const char *addr;
	enum verdict_action action;   /* V_INBOX or V_JUNK (V_REJECT: this one alone would refuse) */
	double score;
	int list;                     /* enum store_list_kind matched, 0: none */
	char list_entry[STORE_ADDRESS_MAX];
	bool list_ignored;            /* whitelisted, but the From domain is not authenticated */
	bool bayes_done;
	double bayes_p;
	const char *bayes_db;         /* "user" or "site" */
	int autolearn;                /* enum store_learn: a clear verdict to learn */
	struct rules_result rules;
	struct buf tests;             /* the message's tests and this recipient's */
	struct buf headers;           /* X-Spam-Score, X-Spam-Status */
};
struct verdict {
	enum verdict_action action;   /* V_INBOX: deliver, each recipient to its folder */
	double score;                 /* of the checks common to every recipient */
	char reply[512];              /* for V_REJECT and V_TEMPFAIL */
	struct buf tests;             /* "SPF_FAIL,DMARC_FAIL" (common to every recipient) */
	struct buf log;               /* " spf=... dkim=... dmarc=... rbl=... score=..." */
	struct buf headers;           /* Authentication-Results, X-RBL-Status */
	struct dkim_results dkim;
	/* DMARC for each domain of the From field (RFC 7489 6.6.1: every
	 * author domain is evaluated, the strictest failing policy wins). */
	struct dmarc_result dmarc[VERDICT_FROM_DOMAINS];
	size_t ndmarc;                /* >= 1 when DMARC ran */
	size_t dmarc_main;            /* the one that decides */
	struct rbl_result uribl;
	bool dns_failed;              /* a check could not be made (dns_error_tempfail) */
	bool dmarc_quarantine;        /* DMARC fail under p=quarantine: Junk */
	char from_addr[STORE_ADDRESS_MAX]; /* the author ("" when none or several) */
	const char *from_auth;        /* how its domain is authenticated: "dmarc", "spf", "dkim"; NULL */
	struct rules_scan *scan;      /* the regex rules, run once */
	struct bayes_tokens *tokens;  /* for each recipient's classifier */
	struct rcpt_verdict *rcpt;
	size_t nrcpt;
};
/* DKIM, DMARC, URI lists, the rules and the score at the end of the text:
 * what is the same for every recipient. */
void checks_verdict(struct msgcheck *m, const struct tx_info *tx, struct verdict *v);
/* Then each recipient's lists and classifier (stores from pool), and the
 * transaction's outcome: refused (v->action V_REJECT) only when every
 * recipient would refuse it and none whitelists the authenticated author;
 * otherwise each recipient gets INBOX or Junk.  Adds the score, tests and
 * lists to v->log. */
void checks_recipients(struct msgcheck *m, const struct tx_info *tx, struct verdict *v,
		       struct storepool *pool, const char *const *rcpts, size_t n);
void verdict_free(struct verdict *v);

/* ------------------------------------------------------------ verdict.c */

/* The site-wide classifier database, shared by the sessions: handles
 * taken and given back (one thread uses a handle at a time).  NULL when
 * the file does not exist (yet). */
struct bayes_db *site_bayes_get(const char *data_dir);
void site_bayes_put(struct bayes_db *db);
void site_bayes_cleanup(void);

/* ------------------------------------------------------- smtp.c, smtp_msg.c */

/* The state of one SMTP session. */
struct session {
	struct server *srv;
	struct daemon_cfg *sc;
	const struct config *cfg;
	struct conn *conn;
	struct daemon_link link;
	char sid[ID_SIZE];
	char ip[64];
	struct linereader lr;
	char helo[256];
	bool have_helo, esmtp, quit;
	int64_t errors, junk, commands;
	struct checks *ck;
	int64_t connect_ms;
	struct rbl_check *rblq;   /* client lists asked at connect */
	struct rbl_result rbl;    /* their answers, collected by RCPT */
	bool rbl_done;

	/* The transaction, from MAIL to the end of DATA/BDAT LAST. */
	bool in_tx, smtputf8, bdat_started, bdat_failed;
	char qid[ID_SIZE];
	struct smtp_path from;
	char **rcpts;
	size_t nrcpts;
	int64_t tx_start;
	struct smtp_data data;
	struct spool spool;
	struct msgcheck mc;
	struct spf_result spf;
	bool spf_done;
	char *out; /* decoder output, RBUF_MAX + 2 */
};

void smtp_reply(struct session *s, const char *fmt, ...) PRINTFLIKE(2, 3);
void smtp_tx_reset(struct session *s);
/* "ESMTPS" and the like (RFC 3848), for Received. */
const char *smtp_protocol_name(const struct session *s);
/* The transaction's log line, with the checks' fields (or ""). */
void smtp_log_tx(struct session *s, const char *action, const char *reply_text, const char *checks);
void smtp_log_tx_plain(struct session *s, const char *action, const char *reply_text);
void smtp_cmd_data(struct session *s, struct slice args);
void smtp_cmd_bdat(struct session *s, struct slice args);

/* ------------------------------------------------------------------ smtp.c */

/* The daemon's application data (daemon_app()). */
struct server {
	struct daemon *d;
	struct storepool *stores;
	char *spool_dir;
};

/* Run one SMTP session on an accepted socket to its end, then free it. */
void smtp_session_run(struct server *srv, int fd, const struct sockaddr *peer, bool implicit_tls,
		      const char *ip);

#endif
