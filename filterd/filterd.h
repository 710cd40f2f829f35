/*
 * filterd.h - internals of the SMTP gateway daemon (not a library header:
 * only filterd/ and its unit tests include it).
 */
#ifndef FILTERD_H
#define FILTERD_H

#include "common/common.h"
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

struct delivery {
	const char *qid;
	const char *const *rcpts;  /* normalised addresses */
	size_t nrcpts;
	const char *folder;
	struct buf *headers;       /* prepended trace headers, LF line ends */
	struct spool *spool;
	struct store_meta meta;
};
/* Write the message once, durably, and link it into every recipient's
 * folder.  All or nothing: on failure, copies already made are expunged.
 * 0, or -1 with *error_r. */
int deliver_message(struct storepool *pool, const struct delivery *dv, char **error_r);

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
