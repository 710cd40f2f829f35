/*
 * view.c - struct msgview: what header, body, rawbody, uri and full rules
 * see of one message, as SpamAssassin shows it to its rules
 * (rules.h, rules-private.h).
 *
 * The message is borrowed.  A first line "From " (mbox) is skipped and
 * is not part of any view.  Views are built on first use and cached
 * until msgview_free: the top-level header on the first msgview_header,
 * the MIME walk and decoded text parts on the first body/rawbody/uri
 * call, body and uris together (one HTML rendering feeds both).
 *
 * Headers (top level only; fields past VIEW_MAX_FIELDS are not seen):
 *  - every field of the name (case-insensitive), unfolded (CR and LF
 *    removed, the blanks after them kept), NULs as blanks, leading
 *    blanks removed, trailing ones kept; fields joined by "\n".
 *  - HM_NONE: RFC 2047 decoded and charset-converted to UTF-8 by GMime
 *    (raw 8-bit: UTF-8, else windows-1252).  HM_RAW: not decoded.
 *  - HM_ADDR / HM_NAME: like SpamAssassin's :addr / :name, ONE value:
 *    the addr-spec / the decoded display name of the first mailbox (group
 *    members included) of the first field of the name that has one; ""
 *    when there is none (present stays true when the field exists).
 *  - "ALL": every field as "Name: value\n" (decoded unless HM_RAW);
 *    "ToCc": To then Cc; "MESSAGEID": Message-Id, Resent-Message-Id and
 *    X-Message-Id; "EnvelopeFrom": the address of the first Return-Path
 *    (angle brackets removed, "" for "<>").  Names of these four are
 *    matched case-insensitively.
 *
 * MIME: our own bounded scanner (the rules of common/mime.c: RFC 2046
 * delimiters, the line end before a delimiter belongs to it, an unclosed
 * part runs to the end of its parent), GMime for Content-Type parameters
 * and base64 / quoted-printable decoding.  At most MIME_MAX_PARTS
 * entities, MIME_MAX_DEPTH levels (deeper multiparts are skipped).  A
 * multipart without a boundary parameter, or whose boundary never
 * occurs, is read as text/plain, so its text is still seen.
 * message/rfc822 parts are descended into (their text parts count, their
 * headers do not).  Every text/ part counts, also attachments and both
 * halves of a multipart/alternative (as SpamAssassin renders all text
 * parts); other types contribute nothing.
 *
 * Charsets: none, us-ascii or utf-8: valid UTF-8 is kept, other bytes are
 * read as windows-1252; iso-8859-1 (latin1, ...) is read as windows-1252
 * as browsers do; others through iconv (GMime's aliases), invalid bytes
 * as U+FFFD; an unknown charset is handled like none.  NULs become
 * blanks.  Decoded text: at most VIEW_TEXT_MAX octets per part and in
 * all; rendered HTML text at most VIEW_TEXT_MAX in all.
 *
 * body: the decoded Subject as the first paragraph, then every text part
 * (text/html rendered by html_render) split into paragraphs at blank
 * lines; inside a paragraph every run of white space is one space, and
 * blanks at both ends are trimmed; empty paragraphs are dropped (unlike
 * SpamAssassin there is no trailing "\n").  rawbody: the decoded text
 * parts, tags kept, one string per line (without its line end).  As in
 * SpamAssassin, a string longer than VIEW_CHUNK_MAX octets is split, at
 * a space in its second half when there is one (the space dropped), else
 * at a UTF-8 character boundary.  At most VIEW_MAX_STRINGS strings each.
 *
 * uris, in order of appearance, deduplicated, at most VIEW_MAX_URIS of
 * at most VIEW_URI_MAX octets: for each text part, the HTML links (see
 * html.c; "www.x" and "//x" read as "http://www.x" and "http://x", other
 * relative links kept as written), then the http://, https://, ftp://,
 * mailto:, hxxp(s):// and www. ("http://www.") URIs of its (rendered)
 * text; trailing .,;:!?)]} are not part of a URI in text.  Each URI is followed by its normalised
 * form when that differs: scheme lower-cased, hxxp -> http, backslashes
 * as slashes, for http/https/ftp the userinfo dropped and the host
 * %-decoded, lower-cased and without trailing dots; and by every
 * http(s):// URI embedded in its path or query (redirectors).  Bare
 * domains and e-mail addresses in text are not URIs here.
 *
 * GMime is initialised through common/mime.c (mime_init), so the two
 * never race on g_mime_init().
 */
#include "rules/rules-private.h"
#include "common/mime.h"

#include <errno.h>
#include <iconv.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <gmime/gmime.h>

#define VIEW_TEXT_MAX (4u << 20)
#define VIEW_CHUNK_MAX 2048
#define VIEW_MAX_STRINGS 100000
#define VIEW_MAX_URIS 1000
#define VIEW_URI_MAX 4096
#define VIEW_MAX_FIELDS 10000
#define URI_SLOTS 4096 /* > 2 * VIEW_MAX_URIS, a power of 2 */

struct hfield {
	size_t start, name_len, value, end;
};

struct hdr {
	struct hfield *f;
	size_t n, cap;
};

struct hentry {
	char *key; /* mod digit + lower-case name; NULL: free slot */
	char *value;
	bool present;
};

struct tpart {
	size_t start, end;
	GMimeContentEncoding enc;
	char *charset;
	bool html;
	char *text; /* decoded, NUL-terminated */
	size_t len;
};

/* NUL-separated strings in one buffer; v built on demand. */
struct strvec {
	struct buf b;
	size_t *off;
	size_t n, cap;
	const char **v;
};

struct msgview {
	const char *msg;
	size_t len;
	bool hdr_done, parts_done, body_done, raw_done;
	struct hdr h;
	size_t body_start;
	struct hentry *hc;
	size_t hc_n, hc_cap;
	struct tpart *parts;
	size_t nparts, pcap, entities, text_total;
	struct strvec body, raw, uris;
	uint32_t *uri_slots;
};

static pthread_once_t view_once = PTHREAD_ONCE_INIT;
static GMimeParserOptions *view_opts;

static void view_init_once(void)
{
	/* g_mime_init() through common/mime.c's own once. */
	mime_init();
	view_opts = g_mime_parser_options_new();
	const char *cs[] = { "UTF-8", "windows-1252", NULL };
	g_mime_parser_options_set_fallback_charsets(view_opts, cs);
}

static void view_init(void)
{
	pthread_once(&view_once, view_init_once);
}

static bool is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static bool is_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static uint64_t hash_bytes(const char *s, size_t n)
{
	uint64_t h = 14695981039346656037u;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 1099511628211u;
	return h;
}

/* ------------------------------------------------------------ strvec */

static void sv_init(struct strvec *s)
{
	buf_init(&s->b, 2 * VIEW_TEXT_MAX);
}

static bool sv_add(struct strvec *s, const char *p, size_t n)
{
	if (s->n >= VIEW_MAX_STRINGS || buf_append(&s->b, p, n) != 0)
		return false;
	if (buf_append(&s->b, "", 1) != 0) {
		s->b.len -= n;
		s->b.data[s->b.len] = '\0';
		return false;
	}
	if (s->n == s->cap) {
		s->cap = s->cap ? 2 * s->cap : 64;
		s->off = xrealloc(s->off, s->cap * sizeof *s->off);
	}
	s->off[s->n++] = s->b.len - n - 1;
	return true;
}

/* Add, split into pieces of at most VIEW_CHUNK_MAX octets. */
static void sv_add_split(struct strvec *s, const char *p, size_t n)
{
	while (n > VIEW_CHUNK_MAX) {
		size_t cut = 0;
		for (size_t i = VIEW_CHUNK_MAX; i > VIEW_CHUNK_MAX / 2 && !cut; i--)
			if (p[i] == ' ')
				cut = i;
		if (cut) {
			if (!sv_add(s, p, cut))
				return;
			p += cut + 1;
			n -= cut + 1;
			continue;
		}
		cut = VIEW_CHUNK_MAX;
		while (cut > VIEW_CHUNK_MAX - 3 && ((unsigned char)p[cut] & 0xC0) == 0x80)
			cut--;
		if (!sv_add(s, p, cut))
			return;
		p += cut;
		n -= cut;
	}
	sv_add(s, p, n);
}

static const char *const *sv_get(struct strvec *s, size_t *n)
{
	*n = s->n;
	if (s->v == NULL) {
		s->v = xcalloc(s->n + 1, sizeof *s->v);
		for (size_t i = 0; i < s->n; i++)
			s->v[i] = s->b.data + s->off[i];
	}
	return s->v;
}

static void sv_free(struct strvec *s)
{
	buf_free(&s->b);
	free(s->off);
	free(s->v);
}

/* ------------------------------------------------------------ header */

/* RFC 5322 field-name (obsolete syntax: blanks before the colon); 0 when
 * the line is not a field. */
static size_t field_name(const char *p, size_t len, size_t *colon)
{
	size_t i = 0;
	while (i < len && (unsigned char)p[i] > 32 && (unsigned char)p[i] < 127 && p[i] != ':')
		i++;
	size_t nl = i;
	while (i < len && is_wsp(p[i]))
		i++;
	if (nl == 0 || i >= len || p[i] != ':')
		return 0;
	*colon = i;
	return nl;
}

static bool mime_field(const char *p, size_t nl)
{
	return (nl == 12 && strncasecmp(p, "Content-Type", nl) == 0) ||
	       (nl == 25 && strncasecmp(p, "Content-Transfer-Encoding", nl) == 0);
}

/* The header block at [start, end) into h (only the two MIME fields when
 * mime_only); returns where the body starts.  The header ends at an
 * empty line, or before a line that is neither a field nor a fold. */
static size_t header_scan(const char *d, size_t start, size_t end, struct hdr *h, bool mime_only)
{
	size_t pos = start;
	bool last_kept = false;
	while (pos < end) {
		const char *lf = memchr(d + pos, '\n', end - pos);
		size_t next = lf ? (size_t)(lf - d) + 1 : end;
		size_t eol = lf ? (size_t)(lf - d) : end;
		if (eol > pos && d[eol - 1] == '\r')
			eol--;
		if (eol == pos)
			return next;
		if (is_wsp(d[pos])) {
			if (pos == start)
				return start;
			if (last_kept)
				h->f[h->n - 1].end = next;
			pos = next;
			continue;
		}
		size_t colon, nl = field_name(d + pos, eol - pos, &colon);
		if (nl == 0)
			return pos;
		last_kept = h->n < VIEW_MAX_FIELDS && (!mime_only || mime_field(d + pos, nl));
		if (last_kept) {
			if (h->n == h->cap) {
				h->cap = h->cap ? 2 * h->cap : 16;
				h->f = xrealloc(h->f, h->cap * sizeof *h->f);
			}
			h->f[h->n++] = (struct hfield){ pos, nl, pos + colon + 1, next };
		}
		pos = next;
	}
	return pos;
}

static bool field_is(const char *d, const struct hfield *f, const char *name)
{
	size_t nl = strlen(name);
	return f->name_len == nl && strncasecmp(d + f->start, name, nl) == 0;
}

/* Unfolded value, NULs as blanks, leading blanks removed (malloc'd). */
static char *field_value(const char *d, const struct hfield *f)
{
	char *v = xmalloc(f->end - f->value + 1);
	size_t n = 0;
	for (size_t i = f->value; i < f->end; i++) {
		char c = d[i];
		if (c == '\r' || c == '\n' || (n == 0 && is_wsp(c)))
			continue;
		v[n++] = c == '\0' ? ' ' : c;
	}
	v[n] = '\0';
	return v;
}

static void put_decoded(struct buf *out, const char *v, bool raw)
{
	char *dec = raw ? NULL : g_mime_utils_header_decode_text(view_opts, v);
	if (buf_puts(out, dec ? dec : v) != 0 && out->len < out->max)
		buf_append(out, dec ? dec : v, out->max - out->len);
	g_free(dec);
}

/* The first mailbox of an address list (groups searched). */
static InternetAddress *first_mailbox(InternetAddressList *l, int depth)
{
	int n = l ? internet_address_list_length(l) : 0;
	for (int i = 0; i < n; i++) {
		InternetAddress *a = internet_address_list_get_address(l, i);
		if (a && INTERNET_ADDRESS_IS_MAILBOX(a))
			return a;
		if (a && INTERNET_ADDRESS_IS_GROUP(a) && depth < 4) {
			a = first_mailbox(internet_address_group_get_members(INTERNET_ADDRESS_GROUP(a)),
					  depth + 1);
			if (a)
				return a;
		}
	}
	return NULL;
}

/* :addr or :name of a value; false when it holds no mailbox. */
static bool put_address(struct buf *out, const char *v, bool name)
{
	/* (a value with thousands of nested groups would overflow the
	 * stack in GMime's recursive parser) */
	InternetAddressList *l = *v && mime_address_value_safe(v) ? internet_address_list_parse(view_opts, v) : NULL;
	InternetAddress *a = first_mailbox(l, 0);
	const char *s = NULL;
	if (a)
		s = name ? internet_address_get_name(a)
			 : internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(a));
	if (s)
		buf_puts(out, s);
	if (l)
		g_object_unref(l);
	return a != NULL;
}

static void header_compute(struct msgview *v, const char *name, enum hdr_mod mod, struct buf *out,
			   bool *present)
{
	static const char *const tocc[] = { "To", "Cc", NULL };
	static const char *const msgid[] = { "Message-Id", "Resent-Message-Id", "X-Message-Id", NULL };
	static const char *const retpath[] = { "Return-Path", NULL };
	const char *one[] = { name, NULL };
	const char *const *names = one;
	const char *d = v->msg;
	bool all = strcasecmp(name, "ALL") == 0, env = strcasecmp(name, "EnvelopeFrom") == 0;
	if (strcasecmp(name, "ToCc") == 0)
		names = tocc;
	else if (strcasecmp(name, "MESSAGEID") == 0)
		names = msgid;
	else if (env)
		names = retpath;
	bool got = false;
	*present = false;
	for (const char *const *n = names; *n; n++) {
		for (size_t i = 0; i < v->h.n; i++) {
			const struct hfield *f = &v->h.f[i];
			if (!all && !field_is(d, f, *n))
				continue;
			char *val = field_value(d, f);
			if (all) {
				buf_append(out, d + f->start, f->name_len);
				buf_puts(out, ": ");
				put_decoded(out, val, mod == HM_RAW);
				buf_puts(out, "\n");
			} else if (env) {
				if (!*present && mod != HM_NAME && !put_address(out, val, false)) {
					char *s = str_trim(val);
					size_t l = strlen(s);
					if (l >= 2 && s[0] == '<' && s[l - 1] == '>')
						buf_append(out, s + 1, l - 2);
				}
			} else if (mod == HM_ADDR || mod == HM_NAME) {
				if (!got)
					got = put_address(out, val, mod == HM_NAME);
			} else {
				if (*present)
					buf_puts(out, "\n");
				put_decoded(out, val, mod == HM_RAW);
			}
			free(val);
			*present = true;
		}
		if (all)
			break;
	}
}

static void ensure_header(struct msgview *v)
{
	if (!v->hdr_done) {
		v->hdr_done = true;
		v->body_start = header_scan(v->msg, 0, v->len, &v->h, false);
	}
}

const char *msgview_header(struct msgview *v, const char *name, enum hdr_mod mod, bool *present)
{
	ensure_header(v);
	size_t nl = strlen(name);
	char *key = xmalloc(nl + 2);
	key[0] = (char)('0' + mod);
	for (size_t i = 0; i <= nl; i++)
		key[i + 1] = (name[i] >= 'A' && name[i] <= 'Z') ? (char)(name[i] | 0x20) : name[i];
	if (v->hc_n * 2 >= v->hc_cap) {
		size_t cap = v->hc_cap ? 2 * v->hc_cap : 64;
		struct hentry *t = xcalloc(cap, sizeof *t);
		for (size_t i = 0; i < v->hc_cap; i++) {
			if (v->hc[i].key == NULL)
				continue;
			size_t j = hash_bytes(v->hc[i].key, strlen(v->hc[i].key)) & (cap - 1);
			while (t[j].key)
				j = (j + 1) & (cap - 1);
			t[j] = v->hc[i];
		}
		free(v->hc);
		v->hc = t;
		v->hc_cap = cap;
	}
	size_t j = hash_bytes(key, nl + 1) & (v->hc_cap - 1);
	while (v->hc[j].key && strcmp(v->hc[j].key, key) != 0)
		j = (j + 1) & (v->hc_cap - 1);
	struct hentry *e = &v->hc[j];
	if (e->key == NULL) {
		struct buf out;
		buf_init(&out, VIEW_TEXT_MAX);
		header_compute(v, name, mod, &out, &e->present);
		e->value = out.data ? out.data : xstrdup("");
		e->key = key;
		key = NULL;
		v->hc_n++;
	}
	free(key);
	if (present)
		*present = e->present;
	return e->value;
}

/* ------------------------------------------------------------ MIME */

/* type "/" subtype at the start of s. */
static bool content_type_valid(const char *s)
{
	size_t i = 0;
	while (s[i] && !strchr(" \t/;()<>@,:\\\"[]?=", s[i]))
		i++;
	if (i == 0)
		return false;
	while (is_wsp(s[i]))
		i++;
	return s[i] == '/';
}

static void add_text_part(struct msgview *v, size_t start, size_t end, const char *cte,
			  const char *charset, bool html)
{
	if (v->nparts == v->pcap) {
		v->pcap = v->pcap ? 2 * v->pcap : 8;
		v->parts = xrealloc(v->parts, v->pcap * sizeof *v->parts);
	}
	struct tpart *t = &v->parts[v->nparts++];
	memset(t, 0, sizeof *t);
	t->start = start;
	t->end = end;
	t->enc = cte ? g_mime_content_encoding_from_string(cte) : GMIME_CONTENT_ENCODING_DEFAULT;
	t->charset = charset && *charset ? xstrdup(charset) : NULL;
	t->html = html;
}

static void walk_entity(struct msgview *v, const struct hdr *h, size_t body, size_t end, int depth);

static void walk_part(struct msgview *v, size_t start, size_t end, int depth)
{
	struct hdr h = { 0 };
	size_t body = header_scan(v->msg, start, end, &h, true);
	walk_entity(v, &h, body, end, depth);
	free(h.f);
}

/* The parts of a multipart body; false when the boundary never occurs. */
static bool walk_multipart(struct msgview *v, const char *b, size_t body, size_t end, int depth)
{
	const char *d = v->msg;
	size_t blen = strlen(b), pos = body, part = SIZE_MAX;
	bool found = false;
	while (pos < end && v->entities < MIME_MAX_PARTS) {
		const char *lf = memchr(d + pos, '\n', end - pos);
		size_t next = lf ? (size_t)(lf - d) + 1 : end;
		size_t eol = lf ? (size_t)(lf - d) : end;
		if (eol - pos >= 2 + blen && d[pos] == '-' && d[pos + 1] == '-' &&
		    memcmp(d + pos + 2, b, blen) == 0) {
			size_t i = pos + 2 + blen;
			bool close = eol - i >= 2 && d[i] == '-' && d[i + 1] == '-';
			if (close)
				i += 2;
			while (i < eol && (is_wsp(d[i]) || d[i] == '\r'))
				i++;
			if (i == eol) {
				if (part != SIZE_MAX) {
					size_t pe = pos;
					if (pe > part && d[pe - 1] == '\n')
						pe--;
					if (pe > part && d[pe - 1] == '\r')
						pe--;
					walk_part(v, part, pe, depth + 1);
				}
				found = true;
				part = close ? SIZE_MAX : next;
				if (close)
					break;
			}
		}
		pos = next;
	}
	if (part != SIZE_MAX && v->entities < MIME_MAX_PARTS)
		walk_part(v, part, end, depth + 1);
	return found;
}

static void walk_entity(struct msgview *v, const struct hdr *h, size_t body, size_t end, int depth)
{
	if (++v->entities > MIME_MAX_PARTS)
		return;
	char *ctv = NULL, *cte = NULL;
	for (size_t i = 0; i < h->n; i++) {
		const struct hfield *f = &h->f[i];
		if (ctv == NULL && field_is(v->msg, f, "Content-Type"))
			ctv = field_value(v->msg, f);
		else if (cte == NULL && field_is(v->msg, f, "Content-Transfer-Encoding"))
			cte = field_value(v->msg, f);
	}
	if (cte)
		str_trim(cte);
	GMimeContentType *ct = ctv && content_type_valid(ctv) ? g_mime_content_type_parse(view_opts, ctv)
							       : NULL;
	const char *type = ct ? g_mime_content_type_get_media_type(ct) : NULL;
	const char *sub = ct ? g_mime_content_type_get_media_subtype(ct) : NULL;
	const char *cs = ct ? g_mime_content_type_get_parameter(ct, "charset") : NULL;
	type = type ? type : "text";
	sub = sub ? sub : "plain";
	bool text = strcasecmp(type, "text") == 0;
	if (strcasecmp(type, "multipart") == 0) {
		const char *b = g_mime_content_type_get_parameter(ct, "boundary");
		if (depth < MIME_MAX_DEPTH)
			text = !b || !*b || !walk_multipart(v, b, body, end, depth);
	} else if (strcasecmp(type, "message") == 0 && strcasecmp(sub, "rfc822") == 0) {
		if (depth < MIME_MAX_DEPTH)
			walk_part(v, body, end, depth + 1);
	}
	if (text)
		add_text_part(v, body, end, cte, cs, strcasecmp(type, "text") == 0 &&
							     strcasecmp(sub, "html") == 0);
	if (ct)
		g_object_unref(ct);
	free(ctv);
	free(cte);
}

/* ------------------------------------------------------------ decoding */

static const unsigned short cp1252[32] = {
	0x20AC, 0xFFFD, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
	0x2039, 0x0152, 0xFFFD, 0x017D, 0xFFFD, 0xFFFD, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
	0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0xFFFD, 0x017E, 0x0178,
};

/* Length of the valid UTF-8 sequence at p, 0 when there is none. */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
	unsigned c = p[0];
	size_t len = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3
		   : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
	if (len == 0 || len > n)
		return 0;
	for (size_t i = 1; i < len; i++)
		if ((p[i] & 0xC0) != 0x80)
			return 0;
	if ((c == 0xE0 && p[1] < 0xA0) || (c == 0xED && p[1] > 0x9F) || (c == 0xF0 && p[1] < 0x90) ||
	    (c == 0xF4 && p[1] > 0x8F))
		return 0;
	return len;
}

/* Bytes as windows-1252, except valid UTF-8 sequences when mixed. */
static void from_8bit(const char *in, size_t len, struct buf *out, bool mixed)
{
	const unsigned char *p = (const unsigned char *)in;
	for (size_t i = 0; i < len;) {
		size_t run = i;
		while (run < len && p[run] < 0x80)
			run++;
		if (run > i && buf_append(out, p + i, run - i) != 0)
			return;
		if ((i = run) >= len)
			break;
		size_t sl = mixed ? utf8_seq(p + i, len - i) : 0;
		if (sl) {
			if (buf_append(out, p + i, sl) != 0)
				return;
			i += sl;
			continue;
		}
		unsigned cp = p[i] < 0xA0 ? cp1252[p[i] - 0x80] : p[i];
		char u[3];
		size_t ul = cp < 0x800 ? 2 : 3;
		if (ul == 2) {
			u[0] = (char)(0xC0 | (cp >> 6));
			u[1] = (char)(0x80 | (cp & 0x3F));
		} else {
			u[0] = (char)(0xE0 | (cp >> 12));
			u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
			u[2] = (char)(0x80 | (cp & 0x3F));
		}
		if (buf_append(out, u, ul) != 0)
			return;
		i++;
	}
}

static bool charset_in(const char *cs, const char *list)
{
	char one[64];
	for (const char *s = list; *s;) {
		size_t n = strcspn(s, " ");
		if (n < sizeof one) {
			memcpy(one, s, n);
			one[n] = '\0';
			if (strcasecmp(cs, one) == 0)
				return true;
		}
		s += n + (s[n] == ' ');
	}
	return false;
}

static void to_utf8(const char *cs, const char *in, size_t len, struct buf *out)
{
	if (cs == NULL || charset_in(cs, "us-ascii ascii utf-8 utf8 us ansi_x3.4-1968 unknown-8bit "
					 "x-unknown default x-user-defined")) {
		from_8bit(in, len, out, true);
		return;
	}
	if (charset_in(cs, "iso-8859-1 iso8859-1 iso_8859-1 latin1 latin-1 l1 windows-1252 cp1252 "
			   "x-cp1252")) {
		from_8bit(in, len, out, false);
		return;
	}
	iconv_t cd = g_mime_iconv_open("UTF-8", g_mime_charset_iconv_name(cs));
	if (cd == (iconv_t)-1) {
		from_8bit(in, len, out, true);
		return;
	}
	char *ip = (char *)in, obuf[16384];
	size_t il = len;
	bool ok = true;
	while (ok && il > 0) {
		char *op = obuf;
		size_t ol = sizeof obuf;
		size_t r = iconv(cd, &ip, &il, &op, &ol);
		int err = r == (size_t)-1 ? errno : 0;
		ok = buf_append(out, obuf, sizeof obuf - ol) == 0;
		if (ok && err && err != E2BIG) {
			ok = buf_append(out, "\xef\xbf\xbd", 3) == 0;
			ip++;
			il--;
		}
	}
	char *op = obuf;
	size_t ol = sizeof obuf;
	iconv(cd, NULL, NULL, &op, &ol);
	if (ok)
		buf_append(out, obuf, sizeof obuf - ol);
	g_mime_iconv_close(cd);
}

static void decode_part(struct msgview *v, struct tpart *t)
{
	size_t budget = VIEW_TEXT_MAX - v->text_total;
	struct buf raw, out;
	buf_init(&raw, budget);
	buf_init(&out, budget);
	const char *p = v->msg + t->start;
	size_t len = t->end - t->start;
	if (t->enc == GMIME_CONTENT_ENCODING_BASE64 || t->enc == GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE) {
		enum { CHUNK = 16384 };
		GMimeEncoding st;
		g_mime_encoding_init_decode(&st, t->enc);
		char *obuf = xmalloc(g_mime_encoding_outlen(&st, CHUNK) + 16);
		bool ok = true;
		for (size_t off = 0; ok && off < len; off += CHUNK) {
			size_t il = len - off < CHUNK ? len - off : CHUNK;
			size_t ol = g_mime_encoding_step(&st, p + off, il, obuf);
			ok = buf_append(&raw, obuf, ol) == 0;
		}
		if (ok)
			buf_append(&raw, obuf, g_mime_encoding_flush(&st, "", 0, obuf));
		free(obuf);
		p = raw.data ? raw.data : "";
		len = raw.len;
	} else if (len > budget) {
		len = budget;
	}
	to_utf8(t->charset, p, len, &out);
	buf_free(&raw);
	for (size_t i = 0; i < out.len; i++)
		if (out.data[i] == '\0')
			out.data[i] = ' ';
	t->text = out.data ? out.data : xstrdup("");
	t->len = out.len;
	v->text_total += out.len;
}

static void ensure_parts(struct msgview *v)
{
	if (v->parts_done)
		return;
	ensure_header(v);
	v->parts_done = true;
	walk_entity(v, &v->h, v->body_start, v->len, 0);
	for (size_t i = 0; i < v->nparts; i++)
		decode_part(v, &v->parts[i]);
}

/* ------------------------------------------------------------ views */

/* Paragraphs of text: split at blank lines, blanks collapsed, trimmed. */
static void add_paragraphs(struct strvec *s, const char *p, size_t n, struct buf *para)
{
	size_t pos = 0;
	while (pos < n) {
		const char *lf = memchr(p + pos, '\n', n - pos);
		size_t eol = lf ? (size_t)(lf - p) : n;
		size_t i = pos;
		while (i < eol && is_space(p[i]))
			i++;
		if (i == eol && para->len) {
			sv_add_split(s, para->data, para->len);
			buf_reset(para);
		}
		bool sp = para->len > 0;
		for (; i < eol; i++) {
			if (is_space(p[i])) {
				sp = true;
				continue;
			}
			size_t r = i;
			while (r < eol && !is_space(p[r]))
				r++;
			if (sp)
				buf_append(para, " ", 1);
			buf_append(para, p + i, r - i);
			sp = false;
			i = r - 1;
		}
		pos = eol + 1;
	}
	if (para->len)
		sv_add_split(s, para->data, para->len);
	buf_reset(para);
}

static bool uri_put(struct msgview *v, const char *u, size_t n)
{
	if (n == 0 || v->uris.n >= VIEW_MAX_URIS)
		return false;
	size_t j = hash_bytes(u, n) & (URI_SLOTS - 1);
	while (v->uri_slots[j]) {
		const char *o = v->uris.b.data + v->uris.off[v->uri_slots[j] - 1];
		if (strlen(o) == n && memcmp(o, u, n) == 0)
			return false;
		j = (j + 1) & (URI_SLOTS - 1);
	}
	if (!sv_add(&v->uris, u, n))
		return false;
	v->uri_slots[j] = (uint32_t)v->uris.n;
	return true;
}

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
	     : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* The normalised form of a URI into o (see the top of the file). */
static void uri_normalize(const char *u, size_t n, struct buf *o)
{
	size_t i = 0;
	buf_reset(o);
	while (i < n && (is_alnum(u[i]) || u[i] == '+' || u[i] == '-' || u[i] == '.'))
		i++;
	if (i == 0 || i >= n || u[i] != ':')
		return;
	char scheme[16] = "";
	for (size_t k = 0; k < i && k < sizeof scheme - 1; k++)
		scheme[k] = (char)(u[k] >= 'A' && u[k] <= 'Z' ? u[k] | 0x20 : u[k]);
	scheme[i < sizeof scheme ? i : sizeof scheme - 1] = '\0';
	if (strncmp(scheme, "hxxp", 4) == 0)
		scheme[1] = scheme[2] = 't';
	buf_puts(o, scheme);
	buf_puts(o, ":");
	i++;
	bool web = strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0 ||
		   strcmp(scheme, "ftp") == 0;
	if (web) {
		while (i < n && (u[i] == '/' || u[i] == '\\'))
			i++;
		buf_puts(o, "//");
		size_t ae = i;
		while (ae < n && !strchr("/?#\\", u[ae]))
			ae++;
		for (size_t k = i; k < ae; k++)
			if (u[k] == '@')
				i = k + 1;
		size_t hs = o->len;
		for (; i < ae; i++) {
			char c = u[i];
			if (c == '%' && i + 2 < ae && hexval(u[i + 1]) >= 0 && hexval(u[i + 2]) >= 0) {
				c = (char)(hexval(u[i + 1]) * 16 + hexval(u[i + 2]));
				i += 2;
			}
			buf_putc(o, c >= 'A' && c <= 'Z' ? (char)(c | 0x20) : c);
		}
		char *colon = memchr(o->data + hs, ':', o->len - hs);
		size_t he = colon ? (size_t)(colon - o->data) : o->len;
		size_t dots = 0;
		while (he - dots > hs && o->data[he - dots - 1] == '.')
			dots++;
		memmove(o->data + he - dots, o->data + he, o->len - he + 1);
		o->len -= dots;
	}
	for (; i < n; i++)
		buf_putc(o, web && u[i] == '\\' ? '/' : u[i]);
}

static void add_uri(struct msgview *v, const char *u, size_t n, struct buf *tmp)
{
	n = n > VIEW_URI_MAX ? VIEW_URI_MAX : n;
	for (int round = 0; round < 64 && n > 0 && v->uris.n < VIEW_MAX_URIS; round++) {
		uri_put(v, u, n);
		uri_normalize(u, n, tmp);
		if (tmp->len && (tmp->len != n || memcmp(tmp->data, u, n) != 0))
			uri_put(v, tmp->data, tmp->len);
		/* An http(s) URI inside this one: a redirector's target. */
		const char *next = NULL;
		for (size_t i = 1; i + 7 <= n && !next; i++)
			if ((u[i] | 0x20) == 'h' && (strncasecmp(u + i, "http://", 7) == 0 ||
						     (i + 8 <= n && strncasecmp(u + i, "https://", 8) == 0)))
				next = u + i;
		if (next == NULL)
			break;
		n -= (size_t)(next - u);
		u = next;
	}
}

static bool uri_char(char c)
{
	unsigned char u = (unsigned char)c;
	return u > 0x20 && u != 0x7F && !strchr("<>\"'`{}|^", c);
}

/* URIs written in text. */
static void scan_text_uris(struct msgview *v, const char *p, size_t n, struct buf *tmp)
{
	static const char *const schemes[] = { "http://", "https://", "ftp://", "mailto:",
					       "hxxp://", "hxxps://", "www." };
	for (size_t i = 0; i < n && v->uris.n < VIEW_MAX_URIS;) {
		char c = (char)(p[i] | 0x20);
		size_t sl = 0;
		bool www = false;
		if ((c == 'h' || c == 'f' || c == 'm' || c == 'w') && (i == 0 || !is_alnum(p[i - 1])))
			for (size_t k = 0; k < ARRAY_SIZE(schemes) && !sl; k++)
				if (n - i > strlen(schemes[k]) &&
				    strncasecmp(p + i, schemes[k], strlen(schemes[k])) == 0) {
					sl = strlen(schemes[k]);
					www = schemes[k][0] == 'w';
				}
		if (sl == 0 || (www && !is_alnum(p[i + sl]))) {
			i++;
			continue;
		}
		size_t j = i + sl;
		while (j < n && j - i < VIEW_URI_MAX && uri_char(p[j]))
			j++;
		size_t e = j;
		while (e > i + sl && strchr(".,;:!?)]}", p[e - 1]))
			e--;
		if (e > i + sl && www) {
			char *w = xasprintf("http://%.*s", (int)(e - i), p + i);
			add_uri(v, w, strlen(w), tmp);
			free(w);
		} else if (e > i + sl) {
			add_uri(v, p + i, e - i, tmp);
		}
		i = j;
	}
}

static void build_body(struct msgview *v)
{
	v->body_done = true;
	ensure_parts(v);
	sv_init(&v->body);
	sv_init(&v->uris);
	v->uri_slots = xcalloc(URI_SLOTS, sizeof *v->uri_slots);
	struct buf para, r, tmp;
	buf_init(&para, 2 * VIEW_TEXT_MAX);
	buf_init(&r, VIEW_TEXT_MAX);
	buf_init(&tmp, 4 * VIEW_URI_MAX);
	bool present;
	const char *subj = msgview_header(v, "Subject", HM_NONE, &present);
	add_paragraphs(&v->body, subj, strlen(subj), &para);
	for (size_t i = 0; i < v->nparts; i++) {
		const struct tpart *t = &v->parts[i];
		if (!t->html) {
			add_paragraphs(&v->body, t->text, t->len, &para);
			scan_text_uris(v, t->text, t->len, &tmp);
			continue;
		}
		char **links = NULL;
		size_t nlinks = 0, start = r.len;
		html_render(t->text, t->len, &r, &links, &nlinks);
		for (size_t k = 0; k < nlinks; k++) {
			/* Browsers read "www.x" and "//x" as web addresses. */
			char *l = links[k], *w = NULL;
			if (strncasecmp(l, "www.", 4) == 0 || strncmp(l, "//", 2) == 0)
				l = w = xasprintf("http:%s%s", l[0] == '/' ? "" : "//", l);
			add_uri(v, l, strlen(l), &tmp);
			free(w);
			free(links[k]);
		}
		free(links);
		const char *rt = r.data ? r.data + start : "";
		add_paragraphs(&v->body, rt, r.len - start, &para);
		scan_text_uris(v, rt, r.len - start, &tmp);
	}
	buf_free(&para);
	buf_free(&r);
	buf_free(&tmp);
}

const char *const *msgview_body(struct msgview *v, size_t *n)
{
	if (!v->body_done)
		build_body(v);
	return sv_get(&v->body, n);
}

const char *const *msgview_uris(struct msgview *v, size_t *n)
{
	if (!v->body_done)
		build_body(v);
	return sv_get(&v->uris, n);
}

const char *const *msgview_rawbody(struct msgview *v, size_t *n)
{
	if (!v->raw_done) {
		v->raw_done = true;
		ensure_parts(v);
		sv_init(&v->raw);
		for (size_t i = 0; i < v->nparts; i++) {
			const char *p = v->parts[i].text;
			size_t len = v->parts[i].len, pos = 0;
			while (pos < len) {
				const char *lf = memchr(p + pos, '\n', len - pos);
				size_t eol = lf ? (size_t)(lf - p) : len, e = eol;
				if (e > pos && p[e - 1] == '\r')
					e--;
				sv_add_split(&v->raw, p + pos, e - pos);
				pos = eol + 1;
			}
		}
	}
	return sv_get(&v->raw, n);
}

const char *msgview_full(struct msgview *v, size_t *len)
{
	*len = v->len;
	return v->msg;
}

struct msgview *msgview_new(const char *msg, size_t len)
{
	view_init();
	struct msgview *v = xcalloc(1, sizeof *v);
	if (msg == NULL)
		msg = "", len = 0;
	if (len >= 5 && memcmp(msg, "From ", 5) == 0) {
		const char *lf = memchr(msg, '\n', len);
		size_t skip = lf ? (size_t)(lf - msg) + 1 : len;
		msg += skip;
		len -= skip;
	}
	v->msg = msg;
	v->len = len;
	return v;
}

void msgview_free(struct msgview **vp)
{
	struct msgview *v = *vp;
	if (v == NULL)
		return;
	free(v->h.f);
	for (size_t i = 0; i < v->hc_cap; i++) {
		free(v->hc[i].key);
		free(v->hc[i].value);
	}
	free(v->hc);
	for (size_t i = 0; i < v->nparts; i++) {
		free(v->parts[i].charset);
		free(v->parts[i].text);
	}
	free(v->parts);
	sv_free(&v->body);
	sv_free(&v->raw);
	sv_free(&v->uris);
	free(v->uri_slots);
	free(v);
	*vp = NULL;
}
