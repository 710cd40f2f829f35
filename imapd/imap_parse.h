/*
 * imap_parse.h - the IMAP command parser (RFC 3501 section 9 formal
 * syntax, RFC 7888 LITERAL+), sequence sets (RFC 3501 sequence-set) and
 * SEARCH programs (RFC 3501 section 6.4.4, RFC 7162 MODSEQ).
 *
 * The parser is incremental: it reads one command from any chunking of
 * the input (also one byte at a time) and yields a tree of arguments.  It
 * knows nothing of command semantics: the session decides what the
 * arguments mean.  Every size is bounded (line, literal, argument count,
 * list depth) so a hostile client cannot make it allocate without bound.
 */
#ifndef IMAP_PARSE_H
#define IMAP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

struct mime_msg; /* common/mime.h */

/* ------------------------------------------------------------- the parser */

enum imap_arg_type {
	IMAP_ARG_ATOM,
	IMAP_ARG_QUOTED,
	IMAP_ARG_LITERAL,
	IMAP_ARG_LIST,
	IMAP_ARG_NIL,
};

struct imap_arg {
	enum imap_arg_type type;
	/* ATOM/QUOTED/LITERAL: NUL-terminated (a literal may contain NULs:
	 * use len); NIL: "NIL" */
	char *str;
	size_t len;
	struct imap_arg *list;  /* LIST: the elements */
	size_t nlist;
	bool literal8;          /* LITERAL: it was sent as ~{N} (RFC 3516 literal8) */
};

struct imap_cmd {
	char *tag;
	/* the first word, upper-cased ("UID FETCH ..." has name "UID", then
	 * args FETCH ...) */
	char *name;
	struct imap_arg *args;
	size_t nargs;
};

/* Atoms: RFC 3501 ATOM-CHAR, and also '\' (flags: \Seen, \*), '%' and '*'
 * (LIST wildcards, sequence sets "1:*"), ']' (resp-specials: rarely seen
 * in commands, accepted) and a bracketed section: from a '[' up to its
 * ']' everything belongs to the atom, spaces, parentheses and quotes
 * included (BODY[HEADER.FIELDS (From Subject)]<0.100> is one atom).
 * NIL (any case, unquoted) is IMAP_ARG_NIL.  A literal8 ~{N} is accepted
 * (RFC 3516/4466 APPEND with BINARY): IMAP_ARG_LITERAL with literal8 set.
 *
 * Limits: max_line bounds the bytes of the command without its literal
 * bytes and without the line ends (all its lines together: the text
 * around literals is one logical line); max_literal bounds each literal,
 * and twice max_literal the sum of the literals of one command (a literal
 * mailbox name plus a message of the largest size); max_args the number
 * of arguments at all nesting levels (a list counts as one, plus its
 * elements); lists nest at most IMAP_MAX_DEPTH deep.  Lines end with CRLF
 * or a bare LF; a CR elsewhere is an error, a NUL outside a literal too.
 *
 * Only tagged commands go through the parser: the continuation lines of
 * AUTHENTICATE and the "DONE" that ends IDLE are plain lines the session
 * reads itself (fed to the parser, "DONE" is an ERROR with tag "DONE"). */
#define IMAP_MAX_DEPTH 16

struct imap_parser;
struct imap_parser *imap_parser_new(size_t max_line, size_t max_literal, size_t max_args);
void imap_parser_free(struct imap_parser **p);

enum imap_parse_status {
	IMAP_PARSE_DONE,        /* a whole command: imap_parser_cmd() */
	IMAP_PARSE_MORE,        /* need more input (everything given was consumed) */
	IMAP_PARSE_LITERAL,     /* a synchronizing literal {N} ended the line: the server decides:
				   imap_parser_literal_continue() (then sends "+ ..." and feeds on)
				   or imap_parser_literal_reject() */
	IMAP_PARSE_ERROR,       /* syntax error: imap_parser_error(); the tag if known:
				   imap_parser_tag() */
};

/* Parse from in[0..len); *consumed_r is how many bytes were used (the rest
 * belongs to the next command or is not there yet).
 *
 * Errors: on a syntax error (also a line longer than max_line, too many
 * arguments, too deep lists) the parser skips the rest of the bad line
 * and returns IMAP_PARSE_ERROR only once the line's LF has been consumed
 * (MORE until then), so after ERROR + imap_parser_reset() the next byte
 * starts a new command.  While skipping nothing is stored, and a
 * non-synchronizing literal {N+} announced at the end of the bad line is
 * skipped too (its data follows anyway).  One exception, fatal
 * (imap_parser_error_fatal()) where ERROR comes at once: a {N+} over the
 * literal limits (RFC 7888 section 4: the data follows anyway, the
 * stream cannot be resynchronised cheaply); the session must BYE.
 *
 * Feeding after DONE or ERROR without imap_parser_reset() resets first.
 * Feeding while a LITERAL decision is pending returns LITERAL again and
 * consumes nothing. */
enum imap_parse_status imap_parser_feed(struct imap_parser *p, const char *in, size_t len,
					size_t *consumed_r);
/* Valid after DONE until the next feed/reset. */
const struct imap_cmd *imap_parser_cmd(const struct imap_parser *p);
/* The tag parsed so far, or NULL. */
const char *imap_parser_tag(const struct imap_parser *p);
/* The command name parsed so far (upper-cased), or NULL. */
const char *imap_parser_name(const struct imap_parser *p);
/* Literal limits from now on: max_literal for every command but APPEND,
 * append_max for APPEND (the session lowers both before login).  A
 * non-synchronizing literal over the limit is a fatal error. */
void imap_parser_set_limits(struct imap_parser *p, size_t max_literal, size_t append_max);
/* The size announced by the pending literal. */
uint64_t imap_parser_literal_size(const struct imap_parser *p);
/* The pending literal exceeds max_literal (or with the literals already
 * read in this command, twice max_literal): the server should reject it
 * (NO [TOOBIG]).  Continuing anyway is safe: the parser then skips the
 * literal data and the rest of the line without storing them and
 * returns a (non-fatal) ERROR "Literal too big". */
bool imap_parser_literal_too_big(const struct imap_parser *p);
/* Accept the pending synchronizing literal: feed on. */
void imap_parser_literal_continue(struct imap_parser *p);
/* Reject the pending literal: the command is abandoned; the parser resets
 * to read a new command.  (A client that sent {N} waits for "+", so
 * nothing of the literal follows.)  imap_parser_tag() stays valid until
 * the next command's tag starts, for the tagged NO/BAD. */
void imap_parser_literal_reject(struct imap_parser *p);
const char *imap_parser_error(const struct imap_parser *p);
/* True when the session cannot resync and must BYE. */
bool imap_parser_error_fatal(const struct imap_parser *p);
/* Ready for the next command; frees the last one. */
void imap_parser_reset(struct imap_parser *p);

/* Helpers for the session: an ATOM, QUOTED or LITERAL (an RFC 3501
 * astring; literals containing NUL excluded) as a C string, else NULL. */
const char *imap_arg_astring(const struct imap_arg *a);
/* An astring or NIL (NULL then too: use a->type to tell). */
const char *imap_arg_nstring(const struct imap_arg *a);
/* An ATOM (only), else NULL. */
const char *imap_arg_atom(const struct imap_arg *a);

/* ---------------------------------------------------------- sequence sets */

struct seqrange {
	uint32_t lo, hi;
};
/* Normalised: sorted, merged (also adjacent ranges), lo <= hi. */
struct seqset {
	struct seqrange *r;
	size_t n;
	size_t cap;             /* allocated elements of r (internal) */
};
/* Parse "1:4,7,9:*"; '*' means star (the largest number in use).  With an
 * empty mailbox star is 0: "*" still parses and "*" / "n:*" then give
 * ranges that include 0 (which no message has), e.g. "*" = 0:0 and
 * "3:*" = 0:3.  false on a syntax error (0 is not a valid number, no
 * empty elements, numbers up to 4294967295); out is then empty.  out
 * need not be initialised; free it with seqset_free() after success. */
bool seqset_parse(const char *s, uint32_t star, struct seqset *out);
bool seqset_contains(const struct seqset *s, uint32_t n);
void seqset_free(struct seqset *s);
/* Append "1:3,7" to out (for COPYUID/APPENDUID); nothing for an empty set. */
void seqset_format(const struct seqset *s, struct buf *out);
/* Add a range (lo > hi is swapped), keep normalised; appending in
 * increasing order is O(1) amortised.  s may be zero-initialised. */
void seqset_add(struct seqset *s, uint32_t lo, uint32_t hi);
/* The number of values in the set. */
uint64_t seqset_count(const struct seqset *s);
/* The largest value, or 0 for an empty set. */
uint32_t seqset_max(const struct seqset *s);

/* ----------------------------------------------------------------- SEARCH */

/* What the server knows about one message without opening it. */
struct search_msg {
	uint32_t seq, uid;
	/* Bits, the values of store/store.h enum store_flag:
	 * 1 \Seen, 2 \Answered, 4 \Flagged, 8 \Deleted, 16 \Draft. */
	unsigned flags;
	bool recent;
	const char *keywords;      /* space-separated, case-insensitive; NULL = none */
	uint64_t modseq, vsize;    /* vsize = RFC822.SIZE */
	int64_t internaldate;      /* seconds since the epoch */
	/* The parsed message, loaded on first need by the server (NULL when
	 * the file vanished: then text keys do not match). */
	const struct mime_msg *(*load)(void *load_arg);
	void *load_arg;
};

#define SEARCH_SEEN 1u
#define SEARCH_ANSWERED 2u
#define SEARCH_FLAGGED 4u
#define SEARCH_DELETED 8u
#define SEARCH_DRAFT 16u

struct search_prog;
/* Parse the search keys args[0..n) (after the command name, including the
 * optional leading CHARSET x pair which this function handles).  max_seq =
 * messages in the mailbox (for '*' in sequence sets), max_uid = the
 * largest UID in use (for '*' in UID sets).  0, or -1 with *error_r
 * (malloc'd) and *badcharset_r set true for an unknown charset (the
 * caller answers NO [BADCHARSET (UTF-8 US-ASCII)]).
 *
 * Dates: BEFORE/ON/SINCE compare the calendar date of INTERNALDATE in UTC;
 * SENTBEFORE/SENTON/SENTSINCE the calendar date of the Date: header in
 * UTC (mime_date() gives epoch seconds; the sender's zone is not kept), a
 * message without a parsable Date: never matches them.  Both disregard
 * time of day (RFC 3501 section 6.4.4). */
int search_parse(const struct imap_arg *args, size_t n, uint32_t max_seq, uint32_t max_uid,
		 struct search_prog **prog_r, bool *badcharset_r, char **error_r);
bool search_match(const struct search_prog *prog, const struct search_msg *m);
/* Any key needs the parsed message (header/body/text/sent*). */
bool search_needs_message(const struct search_prog *prog);
/* The MODSEQ key is present: the reply then ends with (MODSEQ n), RFC 7162 3.1.5. */
bool search_uses_modseq(const struct search_prog *prog);
/* Any key reads the body (BODY, TEXT); false: the header is enough. */
bool search_needs_body(const struct search_prog *prog);
/* Any key reads the size or the internal date (LARGER, SMALLER, BEFORE,
 * ON, SINCE); false with !search_needs_message: flags, keywords, UIDs,
 * sequence numbers and MODSEQ are enough. */
bool search_needs_meta(const struct search_prog *prog);
void search_free(struct search_prog **prog);

/* RFC 3501 date "d-MMM-yyyy" (day 1 or 2 digits) to days since
 * 1970-01-01; false when invalid. */
bool imap_date_parse(const char *s, int64_t *days_r);

#endif
