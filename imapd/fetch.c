/*
 * fetch.c - FETCH (RFC 3501 6.4.5, every data item, partial fetches,
 * CONDSTORE CHANGEDSINCE and MODSEQ, RFC 7162) and SEARCH (keys in
 * search.c; this file feeds it the messages).  STORE is in flags.c.
 *
 * Messages are stored with LF line ends; clients see CRLF.  A body item
 * reads the file once per message and converts it; ENVELOPE, BODY and
 * BODYSTRUCTURE come from the store's cache, computed with GMime (common/
 * mime.c) on first use and cached, so later FETCHes do not parse again.
 */
#include "imapd/imapd.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_SECTION_PARTS 32
#define MAX_FIELDS 100

enum fi_kind {
	FI_UID,
	FI_FLAGS,
	FI_INTERNALDATE,
	FI_SIZE,
	FI_ENVELOPE,
	FI_BODY,
	FI_BODYSTRUCTURE,
	FI_MODSEQ,
	FI_SECTION, /* BODY[...], BODY.PEEK[...], RFC822, RFC822.HEADER, RFC822.TEXT */
};

struct fitem {
	enum fi_kind kind;
	bool peek;
	bool partial;
	uint64_t off, len;
	uint32_t parts[MAX_SECTION_PARTS];
	char *fields[MAX_FIELDS];
	struct mime_section sec;
	char *label;          /* the response item name, e.g. BODY[1.MIME]<0> */
};

struct fetch {
	struct fitem *items;
	size_t n;
	bool need_data, need_mime, need_cache, sets_seen;
	bool uid;
	bool cache_write_failed;  /* the index is busy: do not wait again */
	bool vanished;            /* a message file could not be read */
	uint64_t changedsince;
};

static void fetch_free(struct fetch *f)
{
	for (size_t i = 0; i < f->n; i++) {
		for (size_t k = 0; k < f->items[i].sec.nfields; k++)
			free(f->items[i].fields[k]);
		free(f->items[i].label);
	}
	free(f->items);
}

static struct fitem *add_item(struct fetch *f, enum fi_kind kind)
{
	for (size_t i = 0; i < f->n; i++)
		if (kind != FI_SECTION && f->items[i].kind == kind)
			return NULL; /* asked twice: once is enough */
	f->items = xrealloc(f->items, (f->n + 1) * sizeof(*f->items));
	struct fitem *it = &f->items[f->n++];
	memset(it, 0, sizeof(*it));
	it->kind = kind;
	return it;
}

/* The header field list "(From Subject)" of HEADER.FIELDS. */
static bool parse_fields(struct fitem *it, const char *p, const char *end)
{
	while (p < end && *p == ' ')
		p++;
	if (p >= end || *p != '(')
		return false;
	p++;
	for (;;) {
		while (p < end && *p == ' ')
			p++;
		if (p < end && *p == ')')
			return p + 1 == end && it->sec.nfields > 0;
		if (p >= end || it->sec.nfields == MAX_FIELDS)
			return false;
		const char *s = p;
		bool quoted = *p == '"';
		if (quoted) {
			s = ++p;
			while (p < end && *p != '"')
				p++;
			if (p >= end)
				return false;
		} else {
			while (p < end && *p != ' ' && *p != ')')
				p++;
		}
		if (p == s)
			return false;
		for (const char *c = s; c < p; c++)
			if ((unsigned char)*c <= 0x20 || *c == ':' || (unsigned char)*c >= 0x7f)
				return false;
		it->fields[it->sec.nfields++] = xstrndup(s, (size_t)(p - s));
		if (quoted)
			p++;
	}
}

/* section-spec inside BODY[...] (RFC 3501 section 9 "section"). */
static bool parse_section(struct fitem *it, const char *s, const char *end)
{
	const char *p = s;
	while (p < end && *p >= '0' && *p <= '9') {
		uint64_t v = 0;
		while (p < end && *p >= '0' && *p <= '9') {
			v = v * 10 + (uint64_t)(*p - '0');
			if (v > 1000000)
				return false;
			p++;
		}
		if (v == 0 || it->sec.npart == MAX_SECTION_PARTS)
			return false;
		it->parts[it->sec.npart++] = (uint32_t)v;
		if (p == end)
			break;
		if (*p != '.')
			return false;
		p++;
		if (p == end)
			return false;
	}
	size_t left = (size_t)(end - p);
	it->sec.kind = MIME_SEC_PART;
	if (left == 0)
		return true;
	if (left == 6 && strncasecmp(p, "HEADER", 6) == 0)
		it->sec.kind = MIME_SEC_HEADER;
	else if (left == 4 && strncasecmp(p, "TEXT", 4) == 0)
		it->sec.kind = MIME_SEC_TEXT;
	else if (left == 4 && strncasecmp(p, "MIME", 4) == 0 && it->sec.npart > 0)
		it->sec.kind = MIME_SEC_MIME;
	else if (left > 17 && strncasecmp(p, "HEADER.FIELDS.NOT", 17) == 0 && (p[17] == ' ' || p[17] == '(')) {
		it->sec.kind = MIME_SEC_HEADER_FIELDS_NOT;
		return parse_fields(it, p + 17, end);
	} else if (left > 13 && strncasecmp(p, "HEADER.FIELDS", 13) == 0 && (p[13] == ' ' || p[13] == '(')) {
		it->sec.kind = MIME_SEC_HEADER_FIELDS;
		return parse_fields(it, p + 13, end);
	} else
		return false;
	return true;
}

/* BODY[...]<o.l> / BODY.PEEK[...]<o.l>; name points at "BODY". */
static bool parse_body_item(struct fetch *f, const char *a)
{
	bool peek = strncasecmp(a, "BODY.PEEK[", 10) == 0;
	const char *open = a + (peek ? 9 : 4);
	if (*open != '[')
		return false;
	const char *close = strrchr(open, ']');
	if (close == NULL)
		return false;
	struct fitem *it = add_item(f, FI_SECTION);
	it->peek = peek;
	if (!parse_section(it, open + 1, close))
		return false;
	const char *rest = close + 1;
	if (*rest == '<') {
		char *e;
		errno = 0;
		unsigned long long off = strtoull(rest + 1, &e, 10);
		if (e == rest + 1 || *e != '.' || errno)
			return false;
		const char *l = e + 1;
		unsigned long long len = strtoull(l, &e, 10);
		if (e == l || strcmp(e, ">") != 0 || errno || len == 0)
			return false;
		it->partial = true;
		it->off = off;
		it->len = len;
	} else if (*rest != '\0')
		return false;
	/* The response names the section as the client wrote it (upper-cased
	 * keywords help no one: clients match what they sent). */
	it->label = it->partial ? xasprintf("BODY[%.*s]<%llu>", (int)(close - open - 1), open + 1,
					    (unsigned long long)it->off)
				: xasprintf("BODY[%.*s]", (int)(close - open - 1), open + 1);
	f->need_data = true;
	if (it->sec.npart > 0 || it->sec.kind != MIME_SEC_PART)
		f->need_mime = true;
	if (!peek)
		f->sets_seen = true;
	return true;
}

static bool parse_item(struct fetch *f, const char *a)
{
	struct fitem *it;
	if (str_ieq(a, "UID"))
		add_item(f, FI_UID);
	else if (str_ieq(a, "FLAGS"))
		add_item(f, FI_FLAGS);
	else if (str_ieq(a, "INTERNALDATE"))
		add_item(f, FI_INTERNALDATE);
	else if (str_ieq(a, "RFC822.SIZE"))
		add_item(f, FI_SIZE);
	else if (str_ieq(a, "ENVELOPE")) {
		add_item(f, FI_ENVELOPE);
		f->need_cache = true;
	} else if (str_ieq(a, "BODY")) {
		add_item(f, FI_BODY);
		f->need_cache = true;
	} else if (str_ieq(a, "BODYSTRUCTURE")) {
		add_item(f, FI_BODYSTRUCTURE);
		f->need_cache = true;
	} else if (str_ieq(a, "MODSEQ"))
		add_item(f, FI_MODSEQ);
	else if (str_ieq(a, "RFC822")) {
		it = add_item(f, FI_SECTION);
		it->label = xstrdup("RFC822");
		f->need_data = f->sets_seen = true;
	} else if (str_ieq(a, "RFC822.HEADER")) {
		it = add_item(f, FI_SECTION);
		it->label = xstrdup("RFC822.HEADER");
		it->sec.kind = MIME_SEC_HEADER;
		it->peek = true;
		f->need_data = f->need_mime = true;
	} else if (str_ieq(a, "RFC822.TEXT")) {
		it = add_item(f, FI_SECTION);
		it->label = xstrdup("RFC822.TEXT");
		it->sec.kind = MIME_SEC_TEXT;
		f->need_data = f->need_mime = f->sets_seen = true;
	} else if (str_iprefix(a, "BODY[") || str_iprefix(a, "BODY.PEEK["))
		return parse_body_item(f, a);
	else
		return false;
	return true;
}

static bool parse_fetch_items(struct fetch *f, const struct imap_arg *a)
{
	const char *atom = imap_arg_atom(a);
	if (atom) {
		/* Macros (RFC 3501 6.4.5). */
		if (str_ieq(atom, "ALL") || str_ieq(atom, "FAST") || str_ieq(atom, "FULL")) {
			parse_item(f, "FLAGS");
			parse_item(f, "INTERNALDATE");
			parse_item(f, "RFC822.SIZE");
			if (!str_ieq(atom, "FAST"))
				parse_item(f, "ENVELOPE");
			if (str_ieq(atom, "FULL"))
				parse_item(f, "BODY");
			return true;
		}
		return parse_item(f, atom);
	}
	if (a->type != IMAP_ARG_LIST || a->nlist == 0)
		return false;
	for (size_t i = 0; i < a->nlist; i++) {
		const char *x = imap_arg_atom(&a->list[i]);
		if (x == NULL || !parse_item(f, x))
			return false;
	}
	return true;
}

/* ------------------------------------------------------------ loading */

static int load_fd_crlf(int fd, struct buf *out);

/* Only the header (up to and with the empty line), LF -> CRLF: what
 * SEARCH FROM/SUBJECT/HEADER/SENT* need.  fd is closed. */
static int load_fd_header_crlf(int fd, struct buf *out)
{
	char chunk[8192];
	buf_reset(out);
	bool bol = false, done = false;
	size_t total = 0;
	while (!done && total < (size_t)4 * 1024 * 1024) {
		ssize_t r = read(fd, chunk, sizeof(chunk));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		total += (size_t)r;
		for (ssize_t i = 0; i < r; i++) {
			char c = chunk[i];
			if (c == '\n') {
				buf_puts(out, "\r\n");
				if (bol) {
					done = true;
					break;
				}
				bol = true;
				continue;
			}
			if (c != '\r')
				bol = false;
			else
				continue;
			buf_putc(out, c);
		}
	}
	close(fd);
	return 0;
}

/* Read the whole file, LF -> CRLF (a CR already before the LF is kept).
 * fd is closed. */
static int load_fd_crlf(int fd, struct buf *out)
{
	struct stat sb;
	if (fstat(fd, &sb) < 0) {
		close(fd);
		return -1;
	}
	char *raw = xmalloc((size_t)sb.st_size + 1);
	size_t got = 0;
	while (got < (size_t)sb.st_size) {
		ssize_t r = read(fd, raw + got, (size_t)sb.st_size - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	size_t lf = 0;
	for (size_t i = 0; i < got; i++)
		lf += raw[i] == '\n';
	buf_reset(out);
	char *dst = buf_reserve(out, got + lf + 1);
	if (dst == NULL) {
		free(raw);
		return -1;
	}
	size_t k = 0;
	for (size_t i = 0; i < got; i++) {
		if (raw[i] == '\n' && (i == 0 || raw[i - 1] != '\r'))
			dst[k++] = '\r';
		dst[k++] = raw[i];
	}
	buf_commit(out, k);
	free(raw);
	return 0;
}

struct msg_info {
	uint32_t uid;
	unsigned flags;
	char *keywords;
	uint64_t modseq, vsize;
	int64_t internaldate;
	char *path;
};

/* The message's file: the path the index gave, or, when it was renamed
 * meanwhile (a flag change by us or another session), found again by the
 * store. */
static int open_msg(struct session *s, const struct msg_info *mi)
{
	int fd = open(mi->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		char *err = NULL;
		fd = store_message_open(s->store, s->mbox->name, mi->uid, &err);
		free(err);
	}
	return fd;
}

static int load_msg(struct session *s, const struct msg_info *mi, struct buf *out)
{
	int fd = open_msg(s, mi);
	return fd < 0 ? -1 : load_fd_crlf(fd, out);
}

struct collect {
	struct mailbox *mb;
	const struct seqset *seqs;   /* sequence numbers wanted */
	struct msg_info *v;
	size_t n, cap;
};

static int collect_cb(const struct store_msg *m, void *arg)
{
	struct collect *c = arg;
	uint32_t seq = mailbox_seq(c->mb, m->uid);
	if (seq == 0 || (c->seqs && !seqset_contains(c->seqs, seq)))
		return 0;
	if (c->n == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 64;
		c->v = xrealloc(c->v, c->cap * sizeof(*c->v));
	}
	struct msg_info *mi = &c->v[c->n++];
	mi->uid = m->uid;
	mi->flags = m->flags;
	mi->keywords = xstrdup(m->keywords ? m->keywords : "");
	mi->modseq = m->modseq;
	mi->vsize = m->vsize;
	mi->internaldate = m->internaldate;
	mi->path = xstrdup(m->path);
	return 0;
}

static void collect_free(struct collect *c)
{
	for (size_t i = 0; i < c->n; i++) {
		free(c->v[i].keywords);
		free(c->v[i].path);
	}
	free(c->v);
}

/* The store rows of the messages at the sequence numbers seqs (all when
 * NULL), in UID order.  Reads only the UID ranges concerned. */
static int collect_messages(struct session *s, const struct seqset *seqs, struct collect *c,
			    char **error_r)
{
	struct mailbox *mb = s->mbox;
	memset(c, 0, sizeof(*c));
	c->mb = mb;
	c->seqs = seqs;
	if (seqs == NULL)
		return store_messages(s->store, mb->name, 1, 0, collect_cb, c, error_r);
	for (size_t i = 0; i < seqs->n; i++) {
		uint32_t lo = seqs->r[i].lo, hi = seqs->r[i].hi;
		if (lo == 0)
			lo = 1;
		if (hi > mb->n)
			hi = (uint32_t)mb->n;
		if (lo > hi)
			continue;
		if (store_messages(s->store, mb->name, mb->msgs[lo - 1].uid, mb->msgs[hi - 1].uid,
				   collect_cb, c, error_r) < 0)
			return -1;
	}
	return 0;
}

int fetch_load_crlf(struct session *s, uint32_t uid, struct buf *out)
{
	struct seqset one = { 0 };
	uint32_t seq = mailbox_seq(s->mbox, uid);
	if (seq == 0)
		return -1;
	seqset_add(&one, seq, seq);
	struct collect c;
	char *err = NULL;
	int r = collect_messages(s, &one, &c, &err);
	free(err);
	if (r == 0 && c.n == 1)
		r = load_msg(s, &c.v[0], out);
	else
		r = -1;
	collect_free(&c);
	seqset_free(&one);
	return r;
}

/* ENVELOPE, BODY and BODYSTRUCTURE from the cache, or computed and
 * cached.  The strings are malloc'd. */
struct mime_cache {
	char *envelope, *body, *bodystructure;
};

static void cache_free(struct mime_cache *mc)
{
	free(mc->envelope);
	free(mc->body);
	free(mc->bodystructure);
	memset(mc, 0, sizeof(*mc));
}

static int get_cache(struct session *s, struct fetch *f, const struct msg_info *mi, struct buf *data,
		     struct mime_msg **mm, struct mime_cache *mc)
{
	char *err = NULL;
	int r = store_msg_cache_get(s->store, s->mbox->name, mi->uid, &mc->envelope, &mc->body,
				    &mc->bodystructure, &err);
	if (r < 0) {
		log_warnx(s->sid, "MIME cache: %s", err);
		free(err);
		err = NULL;
	}
	if (r == 1 && mc->envelope && mc->body && mc->bodystructure)
		return 0;
	cache_free(mc);
	if (data->len == 0 && load_msg(s, mi, data) < 0)
		return -1;
	if (*mm == NULL)
		*mm = mime_parse(data->data, data->len);
	struct buf b;
	buf_init(&b, 16 * 1024 * 1024);
	mime_envelope(*mm, &b);
	mc->envelope = xstrdup(b.data ? b.data : "NIL");
	buf_reset(&b);
	mime_bodystructure(*mm, false, &b);
	mc->body = xstrdup(b.data ? b.data : "NIL");
	buf_reset(&b);
	mime_bodystructure(*mm, true, &b);
	mc->bodystructure = xstrdup(b.data ? b.data : "NIL");
	buf_free(&b);
	if (!f->cache_write_failed &&
	    store_msg_cache_set(s->store, s->mbox->name, mi->uid, mc->envelope, mc->body,
				mc->bodystructure, &err) < 0) {
		log_warnx(s->sid, "MIME cache write: %s", err);
		free(err);
		f->cache_write_failed = true;
	}
	return 0;
}

static void internaldate_str(int64_t t, char *out, size_t size)
{
	time_t tt = (time_t)t;
	struct tm tm;
	localtime_r(&tt, &tm);
	strftime(out, size, "%d-%b-%Y %H:%M:%S %z", &tm);
}

/* ------------------------------------------------------------- FETCH */

/* Write one message's FETCH response.  false when the connection failed. */
static bool fetch_one(struct session *s, struct fetch *f, struct msg_info *mi, uint32_t seq,
		      struct buf *line, struct buf *data, struct buf *part)
{
	struct mailbox *mb = s->mbox;
	struct mbox_msg *vm = &mb->msgs[seq - 1];
	struct mime_msg *mm = NULL;
	struct mime_cache mc = { 0 };
	bool ok = true;
	buf_reset(data);

	bool flags_changed = vm->flags != mi->flags || strcmp(vm->keywords, mi->keywords) != 0;
	vm->flags = mi->flags;
	vm->modseq = mi->modseq;
	if (strcmp(vm->keywords, mi->keywords) != 0) {
		kw_free(vm->keywords);
		vm->keywords = kw_dup(mi->keywords);
		mailbox_note_keywords(s, vm->keywords);
	}

	buf_reset(line);
	buf_printf(line, "* %u FETCH (", seq);
	bool first = true;
#define SEP() do { if (!first) buf_putc(line, ' '); first = false; } while (0)
	bool has_uid = false, has_flags = false, has_modseq = false;
	for (size_t i = 0; i < f->n; i++) {
		has_uid |= f->items[i].kind == FI_UID;
		has_flags |= f->items[i].kind == FI_FLAGS;
		has_modseq |= f->items[i].kind == FI_MODSEQ;
	}
	if (f->uid && !has_uid) {
		SEP();
		buf_printf(line, "UID %u", mi->uid);
	}
	for (size_t i = 0; i < f->n && ok; i++) {
		struct fitem *it = &f->items[i];
		char date[64];
		switch (it->kind) {
		case FI_UID:
			SEP();
			buf_printf(line, "UID %u", mi->uid);
			break;
		case FI_FLAGS:
			SEP();
			buf_puts(line, "FLAGS ");
			format_flags(line, vm->flags, vm->keywords, vm->recent);
			break;
		case FI_INTERNALDATE:
			SEP();
			internaldate_str(mi->internaldate, date, sizeof(date));
			buf_printf(line, "INTERNALDATE \"%s\"", date);
			break;
		case FI_SIZE:
			SEP();
			buf_printf(line, "RFC822.SIZE %llu", (unsigned long long)mi->vsize);
			break;
		case FI_MODSEQ:
			SEP();
			buf_printf(line, "MODSEQ (%llu)", (unsigned long long)mi->modseq);
			break;
		case FI_ENVELOPE:
		case FI_BODY:
		case FI_BODYSTRUCTURE:
			if (mc.envelope == NULL && get_cache(s, f, mi, data, &mm, &mc) < 0) {
				ok = false;
				break;
			}
			SEP();
			buf_puts(line, it->kind == FI_ENVELOPE ? "ENVELOPE " : it->kind == FI_BODY ? "BODY " : "BODYSTRUCTURE ");
			/* May be large (a huge Subject is a literal inside it):
			 * written out directly, not through the line buffer. */
			const char *str = it->kind == FI_ENVELOPE ? mc.envelope : it->kind == FI_BODY ? mc.body : mc.bodystructure;
			if (!sess_write(s, line->data, line->len) || !sess_write(s, str, strlen(str)))
				ok = false;
			buf_reset(line);
			break;
		case FI_SECTION: {
			if (data->len == 0 && load_msg(s, mi, data) < 0) {
				ok = false;
				break;
			}
			const char *p;
			size_t len;
			if (it->sec.npart == 0 && it->sec.kind == MIME_SEC_PART) {
				p = data->data;
				len = data->len;
			} else {
				if (mm == NULL)
					mm = mime_parse(data->data, data->len);
				buf_reset(part);
				/* Set here: add_item's realloc may have moved the items. */
				it->sec.part = it->parts;
				it->sec.fields = (const char *const *)it->fields;
				mime_section_get(mm, &it->sec, part);
				p = part->data ? part->data : "";
				len = part->len;
			}
			if (it->partial) {
				if (it->off >= len) {
					p += len;
					len = 0;
				} else {
					p += it->off;
					len -= (size_t)it->off;
					if (len > it->len)
						len = (size_t)it->len;
				}
			}
			SEP();
			buf_printf(line, "%s {%zu}\r\n", it->label, len);
			if (!sess_write(s, line->data, line->len) || !sess_write(s, p, len))
				ok = false;
			buf_reset(line);
			break;
		}
		}
	}
	if (ok && flags_changed && !has_flags) {
		/* Flags changed (\Seen set now, or by someone else): say so. */
		SEP();
		buf_puts(line, "FLAGS ");
		format_flags(line, vm->flags, vm->keywords, vm->recent);
	}
	if (ok && s->condstore && !has_modseq && (f->changedsince || flags_changed)) {
		SEP();
		buf_printf(line, "MODSEQ (%llu)", (unsigned long long)mi->modseq);
	}
#undef SEP
	if (mm)
		mime_free(&mm);
	cache_free(&mc);
	buf_puts(line, ")\r\n");
	if (!sess_write(s, line->data, line->len))
		return false;
	if (!ok)
		/* The file vanished since the index was read (expunged by
		 * another session): the response ended with what we had. */
		f->vanished = true;
	return !s->quit;
}

void cmd_fetch(struct session *s, const struct imap_cmd *c, const struct imap_arg *args, size_t n,
	       bool uid)
{
	(void)c;
	struct mailbox *mb = s->mbox;
	const char *set = n >= 2 ? imap_arg_atom(&args[0]) : NULL;
	if (set == NULL || n > 3) {
		sess_bad(s, "FETCH needs a message set and data items");
		return;
	}
	struct fetch f = { .uid = uid };
	if (!parse_fetch_items(&f, &args[1])) {
		fetch_free(&f);
		sess_bad(s, "Invalid FETCH data items");
		return;
	}
	if (n == 3) {
		/* RFC 7162 3.1.4: (CHANGEDSINCE modseq) */
		const struct imap_arg *m = &args[2];
		const char *k = m->type == IMAP_ARG_LIST && m->nlist == 2 ? imap_arg_atom(&m->list[0]) : NULL;
		const char *v = k ? imap_arg_atom(&m->list[1]) : NULL;
		char *e = NULL;
		unsigned long long cs = v ? strtoull(v, &e, 10) : 0;
		if (k == NULL || !str_ieq(k, "CHANGEDSINCE") || v == NULL || *e || cs == 0) {
			fetch_free(&f);
			sess_bad(s, "Invalid FETCH modifier");
			return;
		}
		f.changedsince = cs;
		s->condstore = true;
		parse_item(&f, "MODSEQ");
	}
	for (size_t i = 0; i < f.n; i++)
		if (f.items[i].kind == FI_MODSEQ)
			s->condstore = true;
	if (mb->readonly)
		f.sets_seen = false;
	struct seqset seqs;
	if (!mailbox_resolve(s, set, uid, &seqs)) {
		fetch_free(&f);
		return;
	}
	struct collect col;
	char *err = NULL;
	if (collect_messages(s, &seqs, &col, &err) < 0) {
		collect_free(&col);
		seqset_free(&seqs);
		fetch_free(&f);
		sess_store_error(s, "FETCH", err);
		return;
	}
	struct buf line, data, part;
	buf_init(&line, 1024 * 1024);
	buf_init(&data, (size_t)s->cfg->max_message_size * 2 + 65536);
	buf_init(&part, (size_t)s->cfg->max_message_size * 2 + 65536);
	/* \Seen first, in one short transaction, so the index is not held
	 * while a slow client reads the output (deliveries wait for it). */
	if (f.sets_seen && store_batch_begin(s->store, &err) == 0) {
		for (size_t i = 0; i < col.n; i++) {
			struct msg_info *mi = &col.v[i];
			if ((mi->flags & STORE_SEEN) || (f.changedsince && mi->modseq <= f.changedsince))
				continue;
			uint64_t modseq = 0;
			int r = store_set_flags_kw(s->store, mb->name, mi->uid, mi->flags | STORE_SEEN, NULL,
						   0, &modseq, &err);
			if (r == 1) {
				mi->flags |= STORE_SEEN;
				mi->modseq = modseq;
			} else {
				log_warnx(s->sid, "set \\Seen on UID %u: %s", mi->uid, err ? err : "refused");
				free(err);
				err = NULL;
			}
		}
		if (store_batch_end(s->store, &err) < 0) {
			log_warnx(s->sid, "FETCH \\Seen: %s", err);
			free(err);
			err = NULL;
		}
	} else if (f.sets_seen) {
		log_warnx(s->sid, "FETCH \\Seen: %s", err);
		free(err);
		err = NULL;
	}
	size_t k = 0;
	uint64_t wanted = 0;
	for (size_t i = 0; i < seqs.n; i++) {
		uint32_t lo = seqs.r[i].lo ? seqs.r[i].lo : 1, hi = seqs.r[i].hi < mb->n ? seqs.r[i].hi : (uint32_t)mb->n;
		if (lo <= hi)
			wanted += hi - lo + 1;
	}
	for (size_t i = 0; i < col.n && !s->quit; i++) {
		struct msg_info *mi = &col.v[i];
		if (f.changedsince && mi->modseq <= f.changedsince)
			continue;
		uint32_t seq = mailbox_seq(mb, mi->uid);
		if (seq == 0)
			continue;
		k++;
		if (!fetch_one(s, &f, mi, seq, &line, &data, &part))
			break;
	}
	bool missing = f.vanished || (!uid && !f.changedsince && col.n < wanted);
	buf_free(&line);
	buf_free(&data);
	buf_free(&part);
	collect_free(&col);
	seqset_free(&seqs);
	fetch_free(&f);
	if (s->quit)
		return;
	mailbox_sync(s, uid);
	if (missing)
		sess_tagged(s, "NO", "[EXPUNGEISSUED] Some of the requested messages no longer exist");
	else
		sess_tagged(s, "OK", "%sFETCH completed", uid ? "UID " : "");
}

/* ------------------------------------------------------------- SEARCH */

struct search_load {
	struct session *s;
	const struct msg_info *mi;
	bool header_only;
	struct buf data;
	struct mime_msg *mm;
	bool tried;
};

static const struct mime_msg *search_loader(void *arg)
{
	struct search_load *sl = arg;
	if (!sl->tried) {
		sl->tried = true;
		int fd = open_msg(sl->s, sl->mi);
		int r = fd < 0 ? -1 : sl->header_only ? load_fd_header_crlf(fd, &sl->data)
						       : load_fd_crlf(fd, &sl->data);
		if (r == 0)
			sl->mm = mime_parse(sl->data.data ? sl->data.data : "", sl->data.len);
	}
	return sl->mm;
}

void cmd_search(struct session *s, const struct imap_cmd *c, const struct imap_arg *args, size_t n,
		bool uid)
{
	(void)c;
	struct mailbox *mb = s->mbox;
	if (n == 0) {
		sess_bad(s, "SEARCH needs search keys");
		return;
	}
	struct search_prog *prog = NULL;
	bool badcharset = false;
	char *err = NULL;
	uint32_t maxuid = mb->n ? mb->msgs[mb->n - 1].uid : 0;
	if (search_parse(args, n, (uint32_t)mb->n, maxuid, &prog, &badcharset, &err) < 0) {
		if (badcharset)
			sess_tagged(s, "NO", "[BADCHARSET (UTF-8 US-ASCII)] Unsupported charset");
		else
			sess_bad(s, "%s", err ? err : "Invalid search");
		free(err);
		return;
	}
	if (search_uses_modseq(prog))
		s->condstore = true;
	if (!search_needs_message(prog) && !search_needs_meta(prog)) {
		/* Flags, keywords, UIDs, MODSEQ: the view has them all (synced
		 * first), no need to read the index row by row. */
		mailbox_sync(s, false);
		struct buf out;
		buf_init(&out, 64 * 1024 * 1024);
		buf_puts(&out, "SEARCH");
		uint64_t maxmod = 0;
		bool any = false;
		for (size_t i = 0; i < mb->n; i++) {
			const struct mbox_msg *vm = &mb->msgs[i];
			struct search_msg sm = {
				.seq = (uint32_t)(i + 1),
				.uid = vm->uid,
				.flags = vm->flags,
				.recent = vm->recent,
				.keywords = vm->keywords,
				.modseq = vm->modseq,
			};
			if (search_match(prog, &sm)) {
				buf_printf(&out, " %u", uid ? vm->uid : (uint32_t)(i + 1));
				if (vm->modseq > maxmod)
					maxmod = vm->modseq;
				any = true;
			}
		}
		if (any && search_uses_modseq(prog))
			buf_printf(&out, " (MODSEQ %llu)", (unsigned long long)maxmod);
		conn_write(s->conn, "* ", 2);
		sess_write(s, out.data, out.len);
		conn_write(s->conn, "\r\n", 2);
		buf_free(&out);
		search_free(&prog);
		mailbox_sync(s, uid);
		sess_tagged(s, "OK", "%sSEARCH completed", uid ? "UID " : "");
		return;
	}
	struct collect col;
	if (collect_messages(s, NULL, &col, &err) < 0) {
		collect_free(&col);
		search_free(&prog);
		sess_store_error(s, "SEARCH", err);
		return;
	}
	struct buf out;
	buf_init(&out, 64 * 1024 * 1024);
	buf_puts(&out, "SEARCH");
	uint64_t maxmod = 0;
	bool any = false;
	for (size_t i = 0; i < col.n; i++) {
		struct msg_info *mi = &col.v[i];
		uint32_t seq = mailbox_seq(mb, mi->uid);
		if (seq == 0)
			continue;
		struct search_load sl = { .s = s, .mi = mi, .header_only = !search_needs_body(prog) };
		buf_init(&sl.data, (size_t)s->cfg->max_message_size * 2 + 65536);
		struct search_msg sm = {
			.seq = seq,
			.uid = mi->uid,
			.flags = mi->flags,
			.recent = mb->msgs[seq - 1].recent,
			.keywords = mi->keywords,
			.modseq = mi->modseq,
			.vsize = mi->vsize,
			.internaldate = mi->internaldate,
			.load = search_loader,
			.load_arg = &sl,
		};
		if (search_match(prog, &sm)) {
			buf_printf(&out, " %u", uid ? mi->uid : seq);
			if (mi->modseq > maxmod)
				maxmod = mi->modseq;
			any = true;
		}
		if (sl.mm)
			mime_free(&sl.mm);
		buf_free(&sl.data);
	}
	if (any && search_uses_modseq(prog))
		buf_printf(&out, " (MODSEQ %llu)", (unsigned long long)maxmod);
	conn_write(s->conn, "* ", 2);
	sess_write(s, out.data, out.len);
	conn_write(s->conn, "\r\n", 2);
	buf_free(&out);
	collect_free(&col);
	search_free(&prog);
	mailbox_sync(s, uid);
	sess_tagged(s, "OK", "%sSEARCH completed", uid ? "UID " : "");
}
