/*
 * mime.c - the MIME tree of a message for the IMAP server: ENVELOPE,
 * BODYSTRUCTURE, BODY[section] and decoded text for SEARCH (mime.h).
 *
 * How it is split between our code and GMime:
 *
 *  - The part tree and every offset come from a small scanner of our own
 *    over the raw CRLF bytes: header blocks, RFC 2046 boundary delimiter
 *    lines, message/rfc822 encapsulation.  IMAP needs exact octet ranges
 *    (BODY[1.2] must return exactly the octets that BODYSTRUCTURE counts)
 *    and hard bounds on depth and part count, and keeping the scanner
 *    ours makes both simple.  It follows the rules GMime's parser uses
 *    (delimiter = "--" boundary ["--"] followed only by blanks; the CRLF
 *    before a delimiter belongs to the delimiter, RFC 2046 section 5.1.1;
 *    an unclosed multipart ends where its enclosing range ends), and the
 *    unit tests check that the leaf sizes agree with GMime's tree.
 *
 *  - Field values are parsed by GMime: Content-Type and
 *    Content-Disposition with their parameters (RFC 2231 continuations
 *    and charsets), address lists with groups, RFC 2047 encoded-words,
 *    dates, charset conversion (iconv with GMime's charset aliases) and
 *    base64 / quoted-printable decoding.
 *
 * No GMime object outlives a call, so a struct mime_msg is plain C data.
 */
#include "common/mime.h"

#include <errno.h>
#include <iconv.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <gmime/gmime.h>

/* One header field: name at [start, start+name_len), value after the
 * colon at [value, end); end is past the line end of its last line. */
struct field {
	size_t start, name_len, value, end;
};

/* A body-fld-param entry in its output form. */
struct param {
	char *name, *value;
};

/* An entity: the message itself, a body part, or the message inside a
 * message/rfc822 part. */
struct node {
	size_t hdr_start;   /* header block [hdr_start, body_start) */
	size_t body_start;  /* body [body_start, body_end) */
	size_t body_end;
	struct field *fields;
	size_t nfields, fields_cap;
	char *type, *subtype;       /* as sent */
	struct param *params;
	size_t nparams;
	char *charset;              /* text parts: the charset parameter */
	char *cte;                  /* Content-Transfer-Encoding or NULL */
	size_t lines;               /* text/ and message/rfc822 parts */
	bool is_multipart;          /* children are the body parts */
	bool is_message;            /* child is the encapsulated message */
	bool is_text;
	bool synthetic;             /* stands in for a multipart without parts */
	struct node *child, *next;
	size_t nchildren;
};

struct mime_msg {
	const char *data;
	size_t len;
	size_t nparts;
	struct node *root;
};

/* ------------------------------------------------------------ helpers */

static pthread_once_t gmime_once = PTHREAD_ONCE_INIT;

static void gmime_init_once(void)
{
	g_mime_init();
}

static void gmime_ensure(void)
{
	pthread_once(&gmime_once, gmime_init_once);
}

void mime_init(void)
{
	gmime_ensure();
}

/* Append what fits: once the buffer's max is reached nothing more is
 * appended, so the output is always a prefix of the intended one. */
static void out_put(struct buf *b, const void *p, size_t n)
{
	if (buf_append(b, p, n) == 0)
		return;
	if (b->len < b->max)
		buf_append(b, p, b->max - b->len);
}

static void out_puts(struct buf *b, const char *s)
{
	out_put(b, s, strlen(s));
}

static bool is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

static bool is_ascii(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s >= 0x80)
			return false;
	return true;
}

void mime_imap_string(struct buf *out, const char *s, size_t len)
{
	if (s == NULL) {
		out_puts(out, "NIL");
		return;
	}
	bool quote = len < 1024;
	for (size_t i = 0; quote && i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == 0 || c >= 0x80 || c == '\r' || c == '\n')
			quote = false;
	}
	if (!quote) {
		char hdr[32];
		int n = snprintf(hdr, sizeof hdr, "{%zu}\r\n", len);
		out_put(out, hdr, (size_t)n);
		out_put(out, s, len);
		return;
	}
	out_puts(out, "\"");
	size_t run = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '"' || s[i] == '\\') {
			out_put(out, s + run, i - run);
			out_puts(out, "\\");
			run = i;
		}
	}
	out_put(out, s + run, len - run);
	out_puts(out, "\"");
}

void mime_imap_cstring(struct buf *out, const char *s)
{
	mime_imap_string(out, s, s ? strlen(s) : 0);
}

/* ------------------------------------------------------- header block */

static void add_field(struct node *n, size_t start, size_t name_len, size_t value, size_t end)
{
	if (n->nfields == n->fields_cap) {
		n->fields_cap = n->fields_cap ? n->fields_cap * 2 : 8;
		n->fields = xrealloc(n->fields, n->fields_cap * sizeof *n->fields);
	}
	struct field *f = &n->fields[n->nfields++];
	f->start = start;
	f->name_len = name_len;
	f->value = value;
	f->end = end;
}

/* RFC 5322 section 2.2: field-name = 1*ftext (printable ASCII but ':');
 * the obsolete syntax (section 4.5.8) allows blanks before the colon.
 * Returns the name length and sets *colon, or 0 when the line is not a
 * header field. */
size_t mime_field_name(const char *p, size_t len, size_t *colon)
{
	size_t i = 0;
	while (i < len && (unsigned char)p[i] > 32 && (unsigned char)p[i] < 127 && p[i] != ':')
		i++;
	size_t name_len = i;
	while (i < len && is_wsp(p[i]))
		i++;
	if (name_len == 0 || i >= len || p[i] != ':')
		return 0;
	*colon = i;
	return name_len;
}

/* Split [start, end) into header fields.  The header ends at the first
 * empty line (which it includes), or just before the first line that is
 * neither a field nor a continuation (malformed: no blank line before
 * the body), or at end. */
static void parse_header(const struct mime_msg *m, struct node *n, size_t start, size_t end)
{
	const char *d = m->data;
	size_t pos = start;

	n->hdr_start = start;
	while (pos < end) {
		const char *lf = memchr(d + pos, '\n', end - pos);
		size_t next = lf ? (size_t)(lf - d) + 1 : end;
		size_t eol = lf ? (size_t)(lf - d) : end;
		if (eol > pos && d[eol - 1] == '\r')
			eol--;
		if (eol == pos) {
			/* The empty line that ends the header. */
			n->body_start = next;
			return;
		}
		if (is_wsp(d[pos])) {
			if (n->nfields == 0)
				break;
			n->fields[n->nfields - 1].end = next;
			pos = next;
			continue;
		}
		size_t colon;
		size_t nl = mime_field_name(d + pos, eol - pos, &colon);
		if (nl == 0)
			break;
		add_field(n, pos, nl, pos + colon + 1, next);
		pos = next;
	}
	n->body_start = pos;
}

static const struct field *find_field(const struct mime_msg *m, const struct node *n, const char *name)
{
	size_t len = strlen(name);
	for (size_t i = 0; i < n->nfields; i++) {
		const struct field *f = &n->fields[i];
		if (f->name_len == len && strncasecmp(m->data + f->start, name, len) == 0)
			return f;
	}
	return NULL;
}

/* The field's value unfolded (RFC 5322 section 2.2.3: CR and LF
 * removed, the blanks after them kept), NULs made blanks, trimmed. */
static char *field_value(const struct mime_msg *m, const struct field *f)
{
	const char *d = m->data;
	char *v = xmalloc(f->end - f->value + 1);
	size_t n = 0;
	for (size_t i = f->value; i < f->end; i++) {
		char c = d[i];
		if (c == '\r' || c == '\n')
			continue;
		v[n++] = c == '\0' ? ' ' : c;
	}
	v[n] = '\0';
	size_t s = 0;
	while (s < n && is_wsp(v[s]))
		s++;
	while (n > s && is_wsp(v[n - 1]))
		n--;
	memmove(v, v + s, n - s);
	v[n - s] = '\0';
	return v;
}

static char *header_value(const struct mime_msg *m, const struct node *n, const char *name)
{
	const struct field *f = find_field(m, n, name);
	return f ? field_value(m, f) : NULL;
}

/* ------------------------------------------------------- content type */

/* RFC 2045 section 5.1 token characters. */
static bool is_token_char(char c)
{
	unsigned char u = (unsigned char)c;
	return u > 32 && u < 127 && !strchr("()<>@,;:\\\"/[]?=", c);
}

/* type "/" subtype at the start of s (blanks allowed around "/"). */
static bool content_type_valid(const char *s)
{
	size_t i = 0, t = 0;
	while (is_token_char(s[i]))
		i++, t++;
	while (is_wsp(s[i]))
		i++;
	if (t == 0 || s[i] != '/')
		return false;
	i++;
	while (is_wsp(s[i]))
		i++;
	return is_token_char(s[i]);
}

/* RFC 2231 section 7 attribute-char: what may stay unencoded. */
static bool is_attr_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c != 0 && strchr("!#$&+-.^_`|~", c) != NULL);
}

/* GMime's parameter list into body-fld-param form.  Values arrive
 * decoded (RFC 2231 continuations joined, charsets converted to UTF-8);
 * a 7-bit value is sent as is, a non-ASCII one as RFC 2231 "name*" =
 * "utf-8''%XX..." so the response stays 7-bit and clients can decode. */
static void convert_params(GMimeParamList *list, struct param **params_r, size_t *n_r)
{
	int n = list ? g_mime_param_list_length(list) : 0;
	*params_r = NULL;
	*n_r = 0;
	if (n <= 0)
		return;
	struct param *ps = xcalloc((size_t)n, sizeof *ps);
	size_t k = 0;
	for (int i = 0; i < n; i++) {
		GMimeParam *p = g_mime_param_list_get_parameter_at(list, i);
		const char *name = p ? g_mime_param_get_name(p) : NULL;
		const char *value = p ? g_mime_param_get_value(p) : NULL;
		if (name == NULL || *name == '\0')
			continue;
		if (value == NULL)
			value = "";
		if (is_ascii(value)) {
			ps[k].name = xstrdup(name);
			ps[k].value = xstrdup(value);
		} else {
			static const char hex[] = "0123456789ABCDEF";
			size_t vl = strlen(value);
			char *v = xmalloc(7 + vl * 3 + 1);
			memcpy(v, "utf-8''", 7);
			size_t o = 7;
			for (size_t j = 0; j < vl; j++) {
				unsigned char c = (unsigned char)value[j];
				if (is_attr_char(c)) {
					v[o++] = (char)c;
				} else {
					v[o++] = '%';
					v[o++] = hex[c >> 4];
					v[o++] = hex[c & 15];
				}
			}
			v[o] = '\0';
			ps[k].name = xasprintf("%s*", name);
			ps[k].value = v;
		}
		k++;
	}
	*params_r = ps;
	*n_r = k;
}

static void free_params(struct param *ps, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(ps[i].name);
		free(ps[i].value);
	}
	free(ps);
}

/* Sets type, subtype, params and charset of n; returns the boundary of
 * a multipart (malloc'd) or NULL.  A missing or syntactically invalid
 * Content-Type means text/plain; charset=us-ascii (RFC 2045 section 5.2),
 * or message/rfc822 inside multipart/digest (RFC 2046 section 5.1.5). */
static char *parse_content_type(const struct mime_msg *m, struct node *n, bool in_digest)
{
	char *v = header_value(m, n, "Content-Type");
	char *boundary = NULL;

	if (v == NULL || !content_type_valid(v)) {
		free(v);
		if (in_digest) {
			n->type = xstrdup("message");
			n->subtype = xstrdup("rfc822");
		} else {
			n->type = xstrdup("text");
			n->subtype = xstrdup("plain");
			n->params = xcalloc(1, sizeof *n->params);
			n->params[0].name = xstrdup("charset");
			n->params[0].value = xstrdup("us-ascii");
			n->nparams = 1;
		}
		return NULL;
	}
	GMimeContentType *ct = g_mime_content_type_parse(NULL, v);
	free(v);
	const char *t = ct ? g_mime_content_type_get_media_type(ct) : NULL;
	const char *s = ct ? g_mime_content_type_get_media_subtype(ct) : NULL;
	n->type = xstrdup(t && *t ? t : "application");
	n->subtype = xstrdup(s && *s ? s : "octet-stream");
	if (ct) {
		convert_params(g_mime_content_type_get_parameters(ct), &n->params, &n->nparams);
		const char *cs = g_mime_content_type_get_parameter(ct, "charset");
		if (cs && *cs)
			n->charset = xstrdup(cs);
		if (cs == NULL && strcasecmp(n->type, "text") == 0) {
			/* RFC 2045 section 5.2: text without a charset is
			 * US-ASCII; say so, as other servers do. */
			n->params = xrealloc(n->params, (n->nparams + 1) * sizeof *n->params);
			n->params[n->nparams].name = xstrdup("charset");
			n->params[n->nparams].value = xstrdup("us-ascii");
			n->nparams++;
		}
		const char *b = g_mime_content_type_get_parameter(ct, "boundary");
		if (b && *b)
			boundary = xstrdup(b);
		g_object_unref(ct);
	}
	return boundary;
}

/* ------------------------------------------------------------ the tree */

static size_t count_lines(const char *p, size_t len)
{
	size_t lines = 0;
	const char *end = p + len;
	while (p < end) {
		const char *lf = memchr(p, '\n', (size_t)(end - p));
		if (!lf)
			break;
		lines++;
		p = lf + 1;
	}
	/* A last line without its line end (the CRLF before a boundary
	 * belongs to the boundary) still counts. */
	if (p < end)
		lines++;
	return lines;
}

static struct node *node_new(struct mime_msg *m)
{
	struct node *n = xcalloc(1, sizeof *n);
	m->nparts++;
	return n;
}

static void node_add_child(struct node *parent, struct node **tail, struct node *c)
{
	if (*tail)
		(*tail)->next = c;
	else
		parent->child = c;
	*tail = c;
	parent->nchildren++;
}

static struct node *parse_entity(struct mime_msg *m, size_t start, size_t end, int depth, bool in_digest);

/* Is [p, e) (a line without its line end) a delimiter line for the
 * boundary?  RFC 2046 section 5.1.1: "--" boundary, "--" for the close
 * delimiter, then only transport padding (blanks). */
static bool is_delimiter(const char *p, const char *e, const char *b, size_t blen, bool *close)
{
	if ((size_t)(e - p) < blen + 2 || p[0] != '-' || p[1] != '-' || memcmp(p + 2, b, blen) != 0)
		return false;
	p += 2 + blen;
	*close = false;
	if (e - p >= 2 && p[0] == '-' && p[1] == '-') {
		*close = true;
		p += 2;
	}
	while (p < e && is_wsp(*p))
		p++;
	return p == e;
}

/* Split the body of multipart n into its parts. */
static void parse_multipart(struct mime_msg *m, struct node *n, const char *boundary, int depth)
{
	const char *d = m->data;
	size_t blen = boundary ? strlen(boundary) : 0;
	size_t end = n->body_end;
	size_t ls = n->body_start;          /* candidate line start */
	size_t part_start = 0;
	bool in_part = false, first = true;
	bool digest = strcasecmp(n->subtype, "digest") == 0;
	struct node *tail = NULL;

	/* Without a boundary nothing splits the body. */
	while (boundary && ls < end) {
		if (!first) {
			/* Only lines starting with "--" can be delimiters. */
			const char *q = memmem(d + ls - 1, end - ls + 1, "\n--", 3);
			if (!q)
				break;
			ls = (size_t)(q - d) + 1;
		}
		first = false;
		const char *lf = memchr(d + ls, '\n', end - ls);
		size_t next = lf ? (size_t)(lf - d) + 1 : end;
		size_t eol = lf ? (size_t)(lf - d) : end;
		if (eol > ls && d[eol - 1] == '\r')
			eol--;
		bool close;
		if (!is_delimiter(d + ls, d + eol, boundary, blen, &close)) {
			ls = next;
			continue;
		}
		if (in_part) {
			/* The line end before the delimiter belongs to it. */
			size_t pe = ls;
			if (pe - part_start >= 2 && d[pe - 2] == '\r' && d[pe - 1] == '\n')
				pe -= 2;
			else if (pe - part_start >= 1 && d[pe - 1] == '\n')
				pe -= 1;
			node_add_child(n, &tail, parse_entity(m, part_start, pe, depth + 1, digest));
			in_part = false;
		}
		if (close || m->nparts >= MIME_MAX_PARTS)
			break;
		part_start = next;
		in_part = true;
		ls = next;
	}
	if (in_part && m->nparts < MIME_MAX_PARTS)
		node_add_child(n, &tail, parse_entity(m, part_start, end, depth + 1, digest));

	if (n->nchildren == 0) {
		/* RFC 3501 syntax needs at least one part: an empty text/plain
		 * at the end of the body stands in. */
		struct node *c = node_new(m);
		c->hdr_start = c->body_start = c->body_end = end;
		c->type = xstrdup("text");
		c->subtype = xstrdup("plain");
		c->params = xcalloc(1, sizeof *c->params);
		c->params[0].name = xstrdup("charset");
		c->params[0].value = xstrdup("us-ascii");
		c->nparams = 1;
		c->is_text = true;
		c->synthetic = true;
		node_add_child(n, &tail, c);
	}
}

static struct node *parse_entity(struct mime_msg *m, size_t start, size_t end, int depth, bool in_digest)
{
	struct node *n = node_new(m);
	parse_header(m, n, start, end);
	n->body_end = end;
	char *boundary = parse_content_type(m, n, in_digest);
	n->cte = header_value(m, n, "Content-Transfer-Encoding");

	bool room = depth < MIME_MAX_DEPTH && m->nparts < MIME_MAX_PARTS;
	if (strcasecmp(n->type, "multipart") == 0) {
		if (room) {
			n->is_multipart = true;
			parse_multipart(m, n, boundary, depth);
		} else {
			/* Past the bounds: an opaque leaf. */
			free(n->type);
			free(n->subtype);
			n->type = xstrdup("application");
			n->subtype = xstrdup("octet-stream");
		}
	} else if (strcasecmp(n->type, "message") == 0 && strcasecmp(n->subtype, "rfc822") == 0) {
		if (room) {
			n->is_message = true;
			n->child = parse_entity(m, n->body_start, n->body_end, depth + 1, false);
			n->nchildren = 1;
		} else {
			free(n->type);
			free(n->subtype);
			n->type = xstrdup("application");
			n->subtype = xstrdup("octet-stream");
		}
	}
	n->is_text = strcasecmp(n->type, "text") == 0;
	if (n->is_text || n->is_message)
		n->lines = count_lines(m->data + n->body_start, n->body_end - n->body_start);
	free(boundary);
	return n;
}

static void node_free(struct node *n)
{
	while (n) {
		struct node *next = n->next;
		node_free(n->child);
		free(n->fields);
		free(n->type);
		free(n->subtype);
		free_params(n->params, n->nparams);
		free(n->charset);
		free(n->cte);
		free(n);
		n = next;
	}
}

struct mime_msg *mime_parse(const char *data, size_t len)
{
	gmime_ensure();
	struct mime_msg *m = xcalloc(1, sizeof *m);
	m->data = data ? data : "";
	m->len = data ? len : 0;
	m->root = parse_entity(m, 0, m->len, 0, false);
	return m;
}

void mime_free(struct mime_msg **mp)
{
	if (*mp == NULL)
		return;
	node_free((*mp)->root);
	free(*mp);
	*mp = NULL;
}

/* ------------------------------------------------------------ ENVELOPE */

static void put_nstring_header(const struct mime_msg *m, const struct node *n, const char *name,
			       struct buf *out)
{
	char *v = header_value(m, n, name);
	mime_imap_cstring(out, v);
	free(v);
}

/* addr-name: GMime hands names back decoded; a 7-bit one goes out as
 * it is, anything else as RFC 2047 encoded-words, which clients decode
 * as they would the original. */
static void put_addr_name(struct buf *out, const char *name)
{
	if (name == NULL || *name == '\0') {
		out_puts(out, "NIL");
	} else if (is_ascii(name)) {
		mime_imap_cstring(out, name);
	} else {
		char *e = g_mime_utils_header_encode_phrase(NULL, name, "utf-8");
		mime_imap_cstring(out, e ? e : name);
		g_free(e);
	}
}

static void put_address_list(struct buf *out, InternetAddressList *l, int depth)
{
	int n = l ? internet_address_list_length(l) : 0;
	for (int i = 0; i < n; i++) {
		InternetAddress *a = internet_address_list_get_address(l, i);
		if (a == NULL)
			continue;
		if (INTERNET_ADDRESS_IS_GROUP(a)) {
			/* RFC 3501 section 7.4.2: a group is (NIL NIL name NIL),
			 * its members, then (NIL NIL NIL NIL). */
			out_puts(out, "(NIL NIL ");
			const char *gn = internet_address_get_name(a);
			mime_imap_cstring(out, gn ? gn : "");
			out_puts(out, " NIL)");
			if (depth < 4)
				put_address_list(out, internet_address_group_get_members(
							      INTERNET_ADDRESS_GROUP(a)), depth + 1);
			out_puts(out, "(NIL NIL NIL NIL)");
		} else if (INTERNET_ADDRESS_IS_MAILBOX(a)) {
			const char *addr = internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(a));
			const char *name = internet_address_get_name(a);
			if ((addr == NULL || *addr == '\0') && (name == NULL || *name == '\0'))
				continue;
			if (addr == NULL)
				addr = "";
			const char *at = strrchr(addr, '@');
			out_puts(out, "(");
			put_addr_name(out, name);
			out_puts(out, " NIL ");
			if (at) {
				mime_imap_string(out, addr, (size_t)(at - addr));
				out_puts(out, " ");
				mime_imap_cstring(out, at + 1);
			} else {
				/* No domain: host "" (NIL would mean a group). */
				mime_imap_cstring(out, addr);
				out_puts(out, " \"\"");
			}
			out_puts(out, ")");
		}
	}
}

/* GMime parses groups by recursion: a value with thousands of nested
 * "g:" overflows a session thread's stack.  Values longer than this, or
 * with more group colons (outside quoted strings and comments) than
 * this, are not given to it. */
#define ADDRESS_VALUE_MAX 16384
#define ADDRESS_GROUPS_MAX 16

bool mime_address_value_safe(const char *v)
{
	size_t colons = 0, len = 0;
	int depth = 0;
	bool quoted = false;
	for (const char *p = v; *p; p++, len++) {
		if (len > ADDRESS_VALUE_MAX)
			return false;
		if (*p == '\\' && p[1]) {
			p++;
			len++;
		} else if (quoted) {
			quoted = *p != '"';
		} else if (*p == '"' && depth == 0) {
			quoted = true;
		} else if (*p == '(') {
			depth++;
		} else if (*p == ')' && depth > 0) {
			depth--;
		} else if (*p == ':' && depth == 0 && ++colons > ADDRESS_GROUPS_MAX) {
			return false;
		}
	}
	return true;
}

static size_t collect_domains(InternetAddressList *l, int depth, char (*out)[256], size_t n,
			      size_t max)
{
	int len = l ? internet_address_list_length(l) : 0;
	for (int i = 0; i < len && n < max; i++) {
		InternetAddress *a = internet_address_list_get_address(l, i);
		if (a && INTERNET_ADDRESS_IS_GROUP(a) && depth < 4) {
			n = collect_domains(internet_address_group_get_members(INTERNET_ADDRESS_GROUP(a)),
					    depth + 1, out, n, max);
		} else if (a && INTERNET_ADDRESS_IS_MAILBOX(a)) {
			/* IDNA form (xn--): what DNS knows the domain as. */
			const char *addr = internet_address_mailbox_get_idn_addr(INTERNET_ADDRESS_MAILBOX(a));
			const char *at = addr ? strrchr(addr, '@') : NULL;
			if (at == NULL || at[1] == '\0' || strlen(at + 1) >= 256)
				continue;
			char d[256];
			str_copy(d, at + 1, sizeof(d));
			str_lower(d);
			size_t dl = strlen(d);
			while (dl > 0 && d[dl - 1] == '.')
				d[--dl] = '\0';
			bool dup = dl == 0;
			for (size_t k = 0; k < n && !dup; k++)
				dup = strcmp(out[k], d) == 0;
			if (!dup)
				memcpy(out[n++], d, dl + 1);
		}
	}
	return n;
}

size_t mime_address_domains(const char *value, char (*out)[256], size_t max)
{
	gmime_ensure();
	if (!mime_address_value_safe(value))
		return 0;
	InternetAddressList *l = *value ? internet_address_list_parse(NULL, value) : NULL;
	size_t n = collect_domains(l, 0, out, 0, max);
	if (l)
		g_object_unref(l);
	return n;
}

static bool first_mailbox(InternetAddressList *l, int depth, char *out, size_t size)
{
	int len = l ? internet_address_list_length(l) : 0;
	for (int i = 0; i < len; i++) {
		InternetAddress *a = internet_address_list_get_address(l, i);
		if (a && INTERNET_ADDRESS_IS_GROUP(a) && depth < 4) {
			if (first_mailbox(internet_address_group_get_members(INTERNET_ADDRESS_GROUP(a)),
					  depth + 1, out, size))
				return true;
		} else if (a && INTERNET_ADDRESS_IS_MAILBOX(a)) {
			const char *addr = internet_address_mailbox_get_idn_addr(INTERNET_ADDRESS_MAILBOX(a));
			const char *at = addr ? strrchr(addr, '@') : NULL;
			if (at == NULL || at == addr || at[1] == '\0' || strlen(addr) >= size)
				continue;
			str_copy(out, addr, size);
			str_lower(out);
			size_t n = strlen(out);
			while (n > 0 && out[n - 1] == '.')
				out[--n] = '\0';
			return true;
		}
	}
	return false;
}

bool mime_first_address(const char *value, char *out, size_t size)
{
	gmime_ensure();
	if (!mime_address_value_safe(value))
		return false;
	InternetAddressList *l = *value ? internet_address_list_parse(NULL, value) : NULL;
	bool ok = first_mailbox(l, 0, out, size);
	if (l)
		g_object_unref(l);
	return ok;
}

bool mime_header_field(const char *msg, size_t len, const char *name, struct buf *out)
{
	size_t pos = 0, nlen = strlen(name);
	bool found = false;
	while (pos < len) {
		const char *lf = memchr(msg + pos, '\n', len - pos);
		size_t next = lf ? (size_t)(lf - msg) + 1 : len;
		size_t eol = lf ? (size_t)(lf - msg) : len;
		if (eol > pos && msg[eol - 1] == '\r')
			eol--;
		if (eol == pos)
			break; /* the end of the header section */
		bool cont = is_wsp(msg[pos]);
		if (found && !cont)
			break;
		if (found) {
			buf_append(out, msg + pos, eol - pos);
		} else if (!cont) {
			size_t colon;
			size_t fl = mime_field_name(msg + pos, eol - pos, &colon);
			if (fl == 0)
				break; /* not a field: the header ended without a blank line */
			if (fl == nlen && strncasecmp(msg + pos, name, nlen) == 0) {
				found = true;
				buf_reset(out);
				buf_append(out, msg + pos + colon + 1, eol - pos - colon - 1);
			}
		}
		pos = next;
	}
	return found;
}

/* The address list of header `name` into tmp (unparenthesised); empty
 * when the header is absent or has no addresses. */
static void address_header(const struct mime_msg *m, const struct node *n, const char *name,
			   struct buf *tmp)
{
	buf_reset(tmp);
	char *v = header_value(m, n, name);
	if (v == NULL)
		return;
	/* A value GMime could not parse without overflowing the stack is
	 * NIL (RFC 3501 allows NIL for any address list). */
	InternetAddressList *l = *v && mime_address_value_safe(v) ? internet_address_list_parse(NULL, v) : NULL;
	free(v);
	if (l) {
		put_address_list(tmp, l, 0);
		g_object_unref(l);
	}
}

static void put_address_buf(struct buf *out, const struct buf *tmp)
{
	if (tmp->len == 0) {
		out_puts(out, "NIL");
		return;
	}
	out_puts(out, "(");
	out_put(out, tmp->data, tmp->len);
	out_puts(out, ")");
}

static void write_envelope(const struct mime_msg *m, const struct node *n, struct buf *out)
{
	struct buf from, tmp;
	buf_init(&from, out->max);
	buf_init(&tmp, out->max);

	out_puts(out, "(");
	put_nstring_header(m, n, "Date", out);
	out_puts(out, " ");
	put_nstring_header(m, n, "Subject", out);
	out_puts(out, " ");
	address_header(m, n, "From", &from);
	put_address_buf(out, &from);
	/* RFC 3501 section 7.4.2: Sender and Reply-To, absent or empty,
	 * take the value of From. */
	static const char *const rest[] = { "Sender", "Reply-To", "To", "Cc", "Bcc" };
	for (size_t i = 0; i < ARRAY_SIZE(rest); i++) {
		out_puts(out, " ");
		address_header(m, n, rest[i], &tmp);
		put_address_buf(out, i < 2 && tmp.len == 0 ? &from : &tmp);
	}
	out_puts(out, " ");
	put_nstring_header(m, n, "In-Reply-To", out);
	out_puts(out, " ");
	put_nstring_header(m, n, "Message-ID", out);
	out_puts(out, ")");
	buf_free(&from);
	buf_free(&tmp);
}

void mime_envelope(const struct mime_msg *m, struct buf *out)
{
	gmime_ensure();
	write_envelope(m, m->root, out);
}

/* ------------------------------------------------------- BODYSTRUCTURE */

static void put_params(struct buf *out, const struct param *ps, size_t n)
{
	if (n == 0) {
		out_puts(out, "NIL");
		return;
	}
	out_puts(out, "(");
	for (size_t i = 0; i < n; i++) {
		if (i)
			out_puts(out, " ");
		mime_imap_cstring(out, ps[i].name);
		out_puts(out, " ");
		mime_imap_cstring(out, ps[i].value);
	}
	out_puts(out, ")");
}

/* body-fld-dsp: ("type" params) or NIL. */
static void put_disposition(const struct mime_msg *m, const struct node *n, struct buf *out)
{
	char *v = header_value(m, n, "Content-Disposition");
	GMimeContentDisposition *cd = v && *v ? g_mime_content_disposition_parse(NULL, v) : NULL;
	free(v);
	const char *t = cd ? g_mime_content_disposition_get_disposition(cd) : NULL;
	if (t == NULL || *t == '\0') {
		out_puts(out, "NIL");
	} else {
		struct param *ps;
		size_t np;
		convert_params(g_mime_content_disposition_get_parameters(cd), &ps, &np);
		out_puts(out, "(");
		mime_imap_cstring(out, t);
		out_puts(out, " ");
		put_params(out, ps, np);
		out_puts(out, ")");
		free_params(ps, np);
	}
	if (cd)
		g_object_unref(cd);
}

/* body-fld-lang (RFC 3282 Content-Language: a comma-separated list). */
static void put_language(const struct mime_msg *m, const struct node *n, struct buf *out)
{
	char *v = header_value(m, n, "Content-Language");
	if (v == NULL) {
		out_puts(out, "NIL");
		return;
	}
	char *tags[16];
	size_t nt = 0;
	char *save = NULL;
	for (char *t = strtok_r(v, ", \t", &save); t && nt < ARRAY_SIZE(tags);
	     t = strtok_r(NULL, ", \t", &save))
		tags[nt++] = t;
	if (nt == 0) {
		out_puts(out, "NIL");
	} else if (nt == 1) {
		mime_imap_cstring(out, tags[0]);
	} else {
		out_puts(out, "(");
		for (size_t i = 0; i < nt; i++) {
			if (i)
				out_puts(out, " ");
			mime_imap_cstring(out, tags[i]);
		}
		out_puts(out, ")");
	}
	free(v);
}

/* disposition, language, location (body-ext-1part / body-ext-mpart). */
static void put_ext_common(const struct mime_msg *m, const struct node *n, struct buf *out)
{
	out_puts(out, " ");
	put_disposition(m, n, out);
	out_puts(out, " ");
	put_language(m, n, out);
	out_puts(out, " ");
	put_nstring_header(m, n, "Content-Location", out);
}

static void write_body(const struct mime_msg *m, const struct node *n, bool extended, struct buf *out)
{
	out_puts(out, "(");
	if (n->is_multipart) {
		for (const struct node *c = n->child; c; c = c->next)
			write_body(m, c, extended, out);
		out_puts(out, " ");
		mime_imap_cstring(out, n->subtype);
		if (extended) {
			out_puts(out, " ");
			put_params(out, n->params, n->nparams);
			put_ext_common(m, n, out);
		}
		out_puts(out, ")");
		return;
	}
	char num[48];
	mime_imap_cstring(out, n->type);
	out_puts(out, " ");
	mime_imap_cstring(out, n->subtype);
	out_puts(out, " ");
	put_params(out, n->params, n->nparams);
	out_puts(out, " ");
	put_nstring_header(m, n, "Content-ID", out);
	out_puts(out, " ");
	put_nstring_header(m, n, "Content-Description", out);
	out_puts(out, " ");
	mime_imap_cstring(out, n->cte && *n->cte ? n->cte : "7bit");
	snprintf(num, sizeof num, " %zu", n->body_end - n->body_start);
	out_puts(out, num);
	if (n->is_message) {
		out_puts(out, " ");
		write_envelope(m, n->child, out);
		out_puts(out, " ");
		write_body(m, n->child, extended, out);
	}
	if (n->is_message || n->is_text) {
		snprintf(num, sizeof num, " %zu", n->lines);
		out_puts(out, num);
	}
	if (extended) {
		out_puts(out, " ");
		put_nstring_header(m, n, "Content-MD5", out);
		put_ext_common(m, n, out);
	}
	out_puts(out, ")");
}

void mime_bodystructure(const struct mime_msg *m, bool extended, struct buf *out)
{
	gmime_ensure();
	write_body(m, m->root, extended, out);
}

/* ------------------------------------------------------ BODY[section] */

/* RFC 3501 section 6.4.5 part numbering: the parts of a multipart are
 * numbered from 1; a non-multipart entity has only part 1 (itself);
 * after a message/rfc822 part the numbers address the parts of the
 * encapsulated message. */
static const struct node *find_part(const struct mime_msg *m, const uint32_t *part, size_t npart)
{
	const struct node *n = m->root;
	for (size_t i = 0; i < npart && n; i++) {
		uint32_t k = part[i];
		bool more = i + 1 < npart;
		if (n->is_multipart) {
			const struct node *c = n->child;
			for (uint32_t j = 1; c && j < k; j++)
				c = c->next;
			n = c;
		} else if (k != 1 || (more && !n->is_message)) {
			n = NULL;
		}
		if (n && more && n->is_message)
			n = n->child;
	}
	return n;
}

static bool name_listed(const char *name, size_t len, const char *const *fields, size_t nfields)
{
	for (size_t i = 0; i < nfields; i++)
		if (fields[i] && strlen(fields[i]) == len && strncasecmp(fields[i], name, len) == 0)
			return true;
	return false;
}

static void put_header_fields(const struct mime_msg *m, const struct node *n, const char *const *fields,
			      size_t nfields, bool not, struct buf *out)
{
	for (size_t i = 0; i < n->nfields; i++) {
		const struct field *f = &n->fields[i];
		if (name_listed(m->data + f->start, f->name_len, fields, nfields) != not)
			out_put(out, m->data + f->start, f->end - f->start);
	}
	out_puts(out, "\r\n");
}

int mime_section_get(const struct mime_msg *m, const struct mime_section *sec, struct buf *out)
{
	const struct node *n = m->root;

	for (size_t i = 0; i < sec->npart; i++)
		if (sec->part[i] == 0)
			return -1;
	if (sec->npart == 0) {
		if (sec->kind == MIME_SEC_MIME)
			return -1;
		if (sec->kind == MIME_SEC_PART) {
			out_put(out, m->data, m->len);
			return 0;
		}
	} else {
		n = find_part(m, sec->part, sec->npart);
		if (n == NULL)
			return 0;
		switch (sec->kind) {
		case MIME_SEC_PART:
			out_put(out, m->data + n->body_start, n->body_end - n->body_start);
			return 0;
		case MIME_SEC_MIME:
			out_put(out, m->data + n->hdr_start, n->body_start - n->hdr_start);
			return 0;
		default:
			/* HEADER and TEXT address an encapsulated message. */
			if (!n->is_message)
				return 0;
			n = n->child;
			break;
		}
	}
	switch (sec->kind) {
	case MIME_SEC_HEADER:
		out_put(out, m->data + n->hdr_start, n->body_start - n->hdr_start);
		break;
	case MIME_SEC_TEXT:
		out_put(out, m->data + n->body_start, n->body_end - n->body_start);
		break;
	case MIME_SEC_HEADER_FIELDS:
	case MIME_SEC_HEADER_FIELDS_NOT:
		put_header_fields(m, n, sec->fields, sec->nfields,
				  sec->kind == MIME_SEC_HEADER_FIELDS_NOT, out);
		break;
	default:
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------- SEARCH */

bool mime_header_text(const struct mime_msg *m, const char *name, struct buf *out)
{
	gmime_ensure();
	const struct node *n = m->root;
	size_t len = name ? strlen(name) : 0;
	bool found = false;

	for (size_t i = 0; i < n->nfields; i++) {
		const struct field *f = &n->fields[i];
		if (name && (f->name_len != len || strncasecmp(m->data + f->start, name, len) != 0))
			continue;
		char *v = field_value(m, f);
		char *dec = g_mime_utils_header_decode_text(NULL, v);
		if (name == NULL) {
			out_put(out, m->data + f->start, f->name_len);
			out_puts(out, ": ");
			out_puts(out, dec ? dec : v);
			out_puts(out, "\n");
		} else {
			if (found)
				out_puts(out, "\n");
			out_puts(out, dec ? dec : v);
		}
		g_free(dec);
		free(v);
		found = true;
	}
	return found;
}

/* Appending decoded text with a cap. */
struct textout {
	struct buf *out;
	size_t limit;
};

static bool text_put(struct textout *t, const char *p, size_t n)
{
	if (t->out->len >= t->limit)
		return false;
	size_t room = t->limit - t->out->len;
	out_put(t->out, p, n < room ? n : room);
	return t->out->len < t->limit;
}

/* A streaming charset converter to UTF-8 (pass-through for UTF-8,
 * US-ASCII, unknown charsets). */
struct conv {
	iconv_t cd;
	char left[16];
	size_t nleft;
};

static void conv_init(struct conv *c, const char *charset)
{
	c->cd = (iconv_t)-1;
	c->nleft = 0;
	if (charset == NULL || strcasecmp(charset, "utf-8") == 0 || strcasecmp(charset, "utf8") == 0 ||
	    strcasecmp(charset, "us-ascii") == 0 || strcasecmp(charset, "ascii") == 0)
		return;
	c->cd = g_mime_iconv_open("UTF-8", g_mime_charset_iconv_name(charset));
}

static void conv_close(struct conv *c)
{
	if (c->cd != (iconv_t)-1)
		g_mime_iconv_close(c->cd);
	c->cd = (iconv_t)-1;
}

static const char replacement[] = "\xef\xbf\xbd"; /* U+FFFD */

/* Convert and append; false once the output is full. */
static bool conv_feed(struct conv *c, struct textout *t, const char *in, size_t inlen, bool final)
{
	if (c->cd == (iconv_t)-1)
		return text_put(t, in, inlen);

	char *joined = NULL;
	if (c->nleft) {
		joined = xmalloc(c->nleft + inlen);
		memcpy(joined, c->left, c->nleft);
		memcpy(joined + c->nleft, in, inlen);
		in = joined;
		inlen += c->nleft;
		c->nleft = 0;
	}
	char *ip = (char *)in;
	size_t il = inlen;
	bool ok = true;
	char obuf[4096];
	while (ok && il > 0) {
		char *op = obuf;
		size_t ol = sizeof obuf;
		size_t r = iconv(c->cd, &ip, &il, &op, &ol);
		int err = r == (size_t)-1 ? errno : 0;
		ok = text_put(t, obuf, sizeof obuf - ol);
		if (!ok || err == 0 || err == E2BIG)
			continue;
		if (err == EINVAL && !final && il < sizeof c->left) {
			/* An incomplete sequence: wait for the next chunk. */
			memcpy(c->left, ip, il);
			c->nleft = il;
			break;
		}
		/* EILSEQ (or a truncated end): skip a byte. */
		ok = text_put(t, replacement, 3);
		ip++;
		il--;
	}
	if (ok && final) {
		char *op = obuf;
		size_t ol = sizeof obuf;
		iconv(c->cd, NULL, NULL, &op, &ol);
		ok = text_put(t, obuf, sizeof obuf - ol);
	}
	free(joined);
	return ok;
}

/* One text part's content, decoded.  False once the output is full. */
static bool part_text(const struct mime_msg *m, const struct node *n, struct textout *t)
{
	const char *p = m->data + n->body_start;
	size_t len = n->body_end - n->body_start;
	GMimeContentEncoding enc = n->cte ? g_mime_content_encoding_from_string(n->cte)
					  : GMIME_CONTENT_ENCODING_DEFAULT;
	struct conv c;
	bool ok = true;

	conv_init(&c, n->charset);
	if (enc == GMIME_CONTENT_ENCODING_BASE64 || enc == GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE) {
		enum { CHUNK = 16384 };
		GMimeEncoding st;
		g_mime_encoding_init_decode(&st, enc);
		char *obuf = xmalloc(g_mime_encoding_outlen(&st, CHUNK) + 16);
		for (size_t off = 0; ok && off < len; off += CHUNK) {
			size_t il = len - off < CHUNK ? len - off : CHUNK;
			size_t ol = g_mime_encoding_step(&st, p + off, il, obuf);
			ok = conv_feed(&c, t, obuf, ol, false);
		}
		if (ok) {
			size_t ol = g_mime_encoding_flush(&st, "", 0, obuf);
			ok = conv_feed(&c, t, obuf, ol, true);
		}
		free(obuf);
	} else {
		ok = conv_feed(&c, t, p, len, true);
	}
	conv_close(&c);
	return ok;
}

static bool walk_text(const struct mime_msg *m, const struct node *n, struct textout *t, bool *first)
{
	for (; n; n = n->next) {
		if (n->is_multipart || n->is_message) {
			if (!walk_text(m, n->child, t, first))
				return false;
			continue;
		}
		if (!n->is_text || n->synthetic)
			continue;
		if (!*first && !text_put(t, "\n", 1))
			return false;
		*first = false;
		if (!part_text(m, n, t))
			return false;
	}
	return true;
}

void mime_body_text(const struct mime_msg *m, struct buf *out)
{
	gmime_ensure();
	struct textout t = { out, out->len + MIME_BODY_TEXT_MAX };
	if (t.limit < out->len || t.limit > out->max)
		t.limit = out->max;
	bool first = true;
	const struct node *n = m->root;
	if (n->is_multipart || n->is_message)
		walk_text(m, n->child, &t, &first);
	else if (n->is_text)
		walk_text(m, n, &t, &first);
}

int64_t mime_date(const struct mime_msg *m)
{
	gmime_ensure();
	char *v = header_value(m, m->root, "Date");
	if (v == NULL)
		return -1;
	GDateTime *dt = *v ? g_mime_utils_header_decode_date(v) : NULL;
	free(v);
	if (dt == NULL)
		return -1;
	int64_t t = g_date_time_to_unix(dt);
	g_date_time_unref(dt);
	return t;
}

/* Case-fold UTF-8 text into b: ASCII by tolower, runs of valid
 * non-ASCII characters by g_utf8_casefold, other bytes as they are. */
static void fold_text(const char *s, size_t len, struct buf *b)
{
	size_t i = 0;
	while (i < len) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x80) {
			size_t j = i;
			char *dst = buf_reserve(b, 256);
			size_t k = 0;
			while (j < len && k < 256 && (unsigned char)s[j] < 0x80) {
				char x = s[j++];
				dst[k++] = (x >= 'A' && x <= 'Z') ? (char)(x + 32) : x;
			}
			buf_commit(b, k);
			i = j;
			continue;
		}
		size_t j = i;
		while (j < len && (unsigned char)s[j] >= 0x80) {
			gunichar u = g_utf8_get_char_validated(s + j, (gssize)(len - j));
			if (u == (gunichar)-1 || u == (gunichar)-2)
				break;
			j += (size_t)g_utf8_skip[(unsigned char)s[j]];
		}
		if (j == i) {
			buf_append(b, s + i, 1);
			i++;
			continue;
		}
		gchar *f = g_utf8_casefold(s + i, (gssize)(j - i));
		buf_puts(b, f);
		g_free(f);
		i = j;
	}
}

bool mime_text_contains(const char *hay, size_t haylen, const char *needle, size_t needlelen)
{
	if (needlelen == 0)
		return true;
	if (haylen == 0)
		return false;
	struct buf h, n;
	buf_init(&h, SIZE_MAX / 2);
	buf_init(&n, SIZE_MAX / 2);
	fold_text(hay, haylen, &h);
	fold_text(needle, needlelen, &n);
	bool r = n.len == 0 || (h.len >= n.len && memmem(h.data, h.len, n.data, n.len) != NULL);
	buf_free(&h);
	buf_free(&n);
	return r;
}
