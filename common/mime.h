/*
 * mime.h - MIME parsing for the IMAP server: ENVELOPE, BODYSTRUCTURE,
 * BODY[section] (RFC 3501 sections 6.4.5 and 7.4.2) and decoded text for
 * SEARCH (RFC 3501 section 6.4.4).
 *
 * The input is a whole message in memory with CRLF line ends (the form a
 * client sees, so every size and offset here counts the octets RFC 3501
 * counts).  The data is borrowed and must outlive the struct mime_msg.
 *
 * Parsing never fails: malformed MIME (missing or never-closed boundaries,
 * bad headers, truncated parts, 8-bit junk, NULs) gives a best-effort tree.
 * Nesting is bounded by MIME_MAX_DEPTH and the tree by MIME_MAX_PARTS, so
 * hostile input cannot blow up memory or recursion; a multipart or
 * message/rfc822 entity past either bound is treated as an opaque
 * application/octet-stream leaf.
 *
 * Threads: a struct mime_msg is used by one thread at a time; any number
 * of threads may parse and query different messages at once.  GMime is
 * initialised on first use (once, thread-safely).
 *
 * Output goes to a struct buf; when an append would pass the buffer's max
 * the output simply stops growing (it is never overrun).
 */
#ifndef COMMON_MIME_H
#define COMMON_MIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

#define MIME_MAX_DEPTH 50
#define MIME_MAX_PARTS 1000
/* Cap of mime_body_text() output. */
#define MIME_BODY_TEXT_MAX (4u * 1024 * 1024)

struct mime_msg;

/* RFC 5322 section 2.2: a header line's field-name (printable ASCII but
 * ':'; obsolete syntax allows blanks before the colon).  Returns the name
 * length and sets *colon, or 0 when the line is not a field. */
size_t mime_field_name(const char *p, size_t len, size_t *colon);

/* GMime's one-time set-up (every function here does it; other users of
 * GMime in the process call this first). */
void mime_init(void);

/* Never NULL. */
struct mime_msg *mime_parse(const char *data, size_t len);
void mime_free(struct mime_msg **m);

/* RFC 3501 section 7.4.2 FETCH ENVELOPE: appends the parenthesised list
 * (date subject from sender reply-to to cc bcc in-reply-to message-id).
 * sender and reply-to default to from.  Header values are raw (unfolded,
 * encoded-words kept); NIL for absent.  Addresses as (name adl mailbox
 * host), groups as RFC 3501 describes. */
void mime_envelope(const struct mime_msg *m, struct buf *out);

/* RFC 3501 BODYSTRUCTURE (extended=true) or BODY (extended=false). */
void mime_bodystructure(const struct mime_msg *m, bool extended, struct buf *out);

enum mime_section_kind {
	MIME_SEC_PART,              /* BODY[1.2] (npart 0: the whole message) */
	MIME_SEC_HEADER,
	MIME_SEC_HEADER_FIELDS,
	MIME_SEC_HEADER_FIELDS_NOT,
	MIME_SEC_TEXT,
	MIME_SEC_MIME,
};

struct mime_section {
	const uint32_t *part;       /* part numbers, each >= 1 */
	size_t npart;               /* 0 = the message itself */
	enum mime_section_kind kind;
	const char *const *fields;  /* for HEADER.FIELDS(.NOT) */
	size_t nfields;
};

/* BODY[section]: appends the octets to out.  Returns 0, or -1 when the
 * section spec is invalid (MIME with npart 0, a part number 0).  A part
 * that does not exist, or HEADER/TEXT on a part that is not a
 * message/rfc822, yields an empty result and 0.  For a non-multipart
 * message, part 1 is the body (and 1.MIME its header).  HEADER includes
 * the blank line that ends the header; HEADER.FIELDS(.NOT) returns the
 * matching raw header lines in message order plus a final CRLF. */
int mime_section_get(const struct mime_msg *m, const struct mime_section *sec, struct buf *out);

/* For SEARCH: every top-level header named `name` (case-insensitive),
 * unfolded and decoded (RFC 2047, charset to UTF-8), joined by "\n";
 * name NULL: every header as "Name: value\n".  True when at least one
 * such header exists. */
bool mime_header_text(const struct mime_msg *m, const char *name, struct buf *out);

/* Decoded text of every text/ part (transfer encoding undone, charset
 * converted to UTF-8), parts separated by "\n", at most
 * MIME_BODY_TEXT_MAX octets. */
void mime_body_text(const struct mime_msg *m, struct buf *out);

/* The distinct domains (lower case, no trailing dot) of the addresses in
 * an address-list header value, as a mail reader's lenient parser reads
 * them (GMime: also broken syntax), in IDNA form, at most max; returns
 * how many (0 for a value mime_address_value_safe refuses). */
size_t mime_address_domains(const char *value, char (*out)[256], size_t max);
/* The first mailbox address (local@domain) of an address-list value, lower
 * case, the domain in IDNA form, as GMime reads it; false when none. */
bool mime_first_address(const char *value, char *out, size_t size);
/* The value of the first field called name (case-insensitive) of the header
 * section at the start of msg, unfolded (line breaks dropped), into out
 * (reset); false when there is none. */
bool mime_header_field(const char *msg, size_t len, const char *name, struct buf *out);
/* False when an address-list value is too long or has too many groups
 * for GMime's recursive parser (which would overflow a thread's stack). */
bool mime_address_value_safe(const char *value);

/* The Date: header as seconds since the epoch, or -1 when absent or
 * unparseable. */
int64_t mime_date(const struct mime_msg *m);

/* Case-insensitive (Unicode case folding) substring test on UTF-8 text;
 * bytes that are not valid UTF-8 compare as bytes.  An empty needle
 * matches. */
bool mime_text_contains(const char *hay, size_t haylen, const char *needle, size_t needlelen);

/* IMAP string (RFC 3501 section 4.3): a quoted string when s is short
 * (< 1024 octets) 7-bit text without CR, LF or NUL, otherwise a literal
 * "{N}\r\n" followed by the bytes.  s NULL appends NIL. */
void mime_imap_string(struct buf *out, const char *s, size_t len);

/* The same for a NUL-terminated string (NULL appends NIL). */
void mime_imap_cstring(struct buf *out, const char *s);

#endif
