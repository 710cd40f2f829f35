/*
 * view.c - struct msgview: what header, body, rawbody, uri and full rules
 * see of one message, as SpamAssassin shows it to its rules
 * (rules.h, rules-private.h).
 *
 * The text of the parts is decoded by decode.c, the URIs are found by
 * uri.c; this file walks the MIME structure, reads the headers, and
 * assembles the views (string arrays: strvec.c).
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
 * (base64 / quoted-printable decoding: decode.c).  At most MIME_MAX_PARTS
 * entities, MIME_MAX_DEPTH levels (deeper multiparts are skipped).  A
 * multipart without a boundary parameter, or whose boundary never
 * occurs, is read as text/plain, so its text is still seen.
 * message/rfc822 parts are descended into (their text parts count, their
 * headers do not).  Every text/ part counts, also attachments and both
 * halves of a multipart/alternative (as SpamAssassin renders all text
 * parts); other types contribute nothing.
 *
 * Each text part is decoded by decode.c (transfer encoding, charset to
 * UTF-8, NULs as blanks), once, when the parts are first needed.
 * Decoded text: at most VIEW_TEXT_MAX octets per part and in all (each
 * part gets what the earlier ones left); rendered HTML text at most
 * VIEW_TEXT_MAX in all.
 *
 * body: the decoded Subject as the first paragraph, then every text part
 * (text/html rendered by html_render) split into paragraphs at blank
 * lines; inside a paragraph every run of white space is one space, and
 * blanks at both ends are trimmed; empty paragraphs are dropped (unlike
 * SpamAssassin there is no trailing "\n").  rawbody: the decoded text
 * parts, tags kept, one string per line (without its line end).  As in
 * SpamAssassin, a string longer than VIEW_CHUNK_MAX octets is split, at
 * a space in its second half when there is one (the space dropped), else
 * at a UTF-8 character boundary.  At most VIEW_MAX_STRINGS strings each
 * (both in strvec.c).
 *
 * uris: found by uri.c (see there) in the same pass over the text parts
 * as body: for each part, the links html_render returned, then the URIs
 * of its text (rendered for HTML).
 *
 * GMime is initialised through common/mime.c (mime_init), so the two
 * never race on g_mime_init().
 */
#include "rules/rules-private.h"
#include "common/mime.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <gmime/gmime.h>

#define VIEW_MAX_FIELDS 10000

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
	enum text_enc enc;
	char *charset;
	bool html;
	char *text; /* decoded, NUL-terminated */
	size_t len;
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
	struct strvec body, raw;
	struct uriset uris;
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

uint64_t view_hash(const char *s, size_t n)
{
	uint64_t h = 14695981039346656037u;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 1099511628211u;
	return h;
}

/* ------------------------------------------------------------ header */

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
		size_t colon, nl = mime_field_name(d + pos, eol - pos, &colon);
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
			size_t j = view_hash(v->hc[i].key, strlen(v->hc[i].key)) & (cap - 1);
			while (t[j].key)
				j = (j + 1) & (cap - 1);
			t[j] = v->hc[i];
		}
		free(v->hc);
		v->hc = t;
		v->hc_cap = cap;
	}
	size_t j = view_hash(key, nl + 1) & (v->hc_cap - 1);
	while (v->hc[j].key && strcmp(v->hc[j].key, key) != 0)
		j = (j + 1) & (v->hc_cap - 1);
	struct hentry *e = &v->hc[j];
	if (e->key == NULL) {
		struct buf out;
		/* Header values (ALL, a field repeated thousands of times) are
		 * cut at VIEW_HEADER_MAX: some published rules backreference
		 * across the whole header and go quadratic on a huge one. */
		buf_init(&out, VIEW_HEADER_MAX);
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
	t->enc = text_enc_parse(cte);
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

static void ensure_parts(struct msgview *v)
{
	if (v->parts_done)
		return;
	ensure_header(v);
	v->parts_done = true;
	walk_entity(v, &v->h, v->body_start, v->len, 0);
	for (size_t i = 0; i < v->nparts; i++) {
		struct tpart *t = &v->parts[i];
		t->text = text_decode(v->msg + t->start, t->end - t->start, t->enc, t->charset,
				      VIEW_TEXT_MAX - v->text_total, &t->len);
		v->text_total += t->len;
	}
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
			strvec_add_split(s, para->data, para->len);
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
		strvec_add_split(s, para->data, para->len);
	buf_reset(para);
}

static void build_body(struct msgview *v)
{
	v->body_done = true;
	ensure_parts(v);
	strvec_init(&v->body);
	uriset_init(&v->uris);
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
			uriset_scan_text(&v->uris, t->text, t->len, &tmp);
			continue;
		}
		char **links = NULL;
		size_t nlinks = 0, start = r.len;
		html_render(t->text, t->len, &r, &links, &nlinks);
		for (size_t k = 0; k < nlinks; k++) {
			uriset_add_link(&v->uris, links[k], &tmp);
			free(links[k]);
		}
		free(links);
		const char *rt = r.data ? r.data + start : "";
		add_paragraphs(&v->body, rt, r.len - start, &para);
		uriset_scan_text(&v->uris, rt, r.len - start, &tmp);
	}
	buf_free(&para);
	buf_free(&r);
	buf_free(&tmp);
}

const char *const *msgview_body(struct msgview *v, size_t *n)
{
	if (!v->body_done)
		build_body(v);
	return strvec_get(&v->body, n);
}

const char *const *msgview_uris(struct msgview *v, size_t *n)
{
	if (!v->body_done)
		build_body(v);
	return strvec_get(&v->uris.sv, n);
}

const char *const *msgview_rawbody(struct msgview *v, size_t *n)
{
	if (!v->raw_done) {
		v->raw_done = true;
		ensure_parts(v);
		strvec_init(&v->raw);
		for (size_t i = 0; i < v->nparts; i++) {
			const char *p = v->parts[i].text;
			size_t len = v->parts[i].len, pos = 0;
			while (pos < len) {
				const char *lf = memchr(p + pos, '\n', len - pos);
				size_t eol = lf ? (size_t)(lf - p) : len, e = eol;
				if (e > pos && p[e - 1] == '\r')
					e--;
				strvec_add_split(&v->raw, p + pos, e - pos);
				pos = eol + 1;
			}
		}
	}
	return strvec_get(&v->raw, n);
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
	strvec_free(&v->body);
	strvec_free(&v->raw);
	uriset_free(&v->uris);
	free(v);
	*vp = NULL;
}
