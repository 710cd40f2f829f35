/*
 * msgcheck.c - a message as it streams in: the header section is kept in
 * memory (split into fields), the body goes to the spool, and DKIM sees
 * both as they pass.  At the end the delivered header section is rebuilt
 * without the fields a sender must not set: Authentication-Results that
 * claim our authserv-id (RFC 8601 section 5) and our X-Spam-* and
 * X-RBL-Status fields.
 *
 * The header section ends at the first empty line, or at the first line
 * that is neither a field nor a continuation (RFC 5322 section 2.2: such a
 * line starts the body, as Postfix's cleanup also treats it).  A header
 * section over MSG_HEADER_MAX is refused rather than half filtered.
 */
#include "filterd/filterd.h"
#include "common/mime.h"

#include <stdlib.h>
#include <string.h>

void msgcheck_begin(struct msgcheck *m, const struct config *cfg, struct checks *ck, const char *qid,
		    struct spool *sp)
{
	memset(m, 0, sizeof(*m));
	m->cfg = cfg;
	m->ck = ck;
	m->spool = sp;
	m->active = true;
	buf_init(&m->hdr, MSG_HEADER_MAX + SMTP_LINE_MAX);
	if (ck && ck->dns && cfg->dkim_check)
		m->dkim = dkimv_new(ck->dns, qid);
}

void msgcheck_reset(struct msgcheck *m)
{
	if (!m->active)
		return;
	dkimv_free(&m->dkim);
	buf_free(&m->hdr);
	free(m->fields);
	memset(m, 0, sizeof(*m));
}

static void body_out(struct msgcheck *m, const char *p, size_t n, size_t dkim_skip)
{
	if (n == 0)
		return;
	/* Past the size limit we keep reading to the end but store nothing. */
	if (m->spool->size + n <= (uint64_t)m->cfg->max_message_size + 2)
		spool_write(m->spool, p, n);
	if (m->dkim && n > dkim_skip)
		dkimv_body(m->dkim, p + dkim_skip, n - dkim_skip);
}

static bool field_name_ok(const char *p, size_t len)
{
	size_t colon;
	return mime_field_name(p, len, &colon) > 0;
}

/* The header section is complete: hand the fields to DKIM. */
static void header_done(struct msgcheck *m)
{
	m->in_body = true;
	m->hdr_end = m->hdr.len;
	if (m->dkim == NULL)
		return;
	for (size_t i = 0; i < m->nfields; i++) {
		size_t a = m->fields[i];
		size_t b = i + 1 < m->nfields ? m->fields[i + 1] : m->hdr_end;
		while (b > a && (m->hdr.data[b - 1] == '\n' || m->hdr.data[b - 1] == '\r'))
			b--;
		dkimv_header(m->dkim, m->hdr.data + a, b - a);
	}
	dkimv_eoh(m->dkim);
}

/* The line being read is not part of the header: end the header before
 * it and send the line on as the first of the body. */
static void body_from_line(struct msgcheck *m)
{
	size_t len = m->hdr.len - m->line_start;
	char *tmp = xmalloc(len ? len : 1);
	memcpy(tmp, m->hdr.data + m->line_start, len);
	m->hdr.len = m->line_start;
	header_done(m);
	body_out(m, tmp, len, 0);
	free(tmp);
}

void msgcheck_feed(struct msgcheck *m, const char *p, size_t n)
{
	while (n > 0 && !m->in_body) {
		const char *nl = memchr(p, '\n', n);
		size_t take = nl ? (size_t)(nl - p) + 1 : n;
		if (m->hdr.len + take > MSG_HEADER_MAX) {
			/* Refused at the end; the rest is only spooled. */
			m->too_big = true;
			m->in_body = true;
			m->hdr_end = m->hdr.len;
			break;
		}
		buf_append(&m->hdr, p, take);
		p += take;
		n -= take;
		if (nl == NULL)
			break; /* the line goes on in the next chunk */
		/* A complete line: classify it. */
		const char *line = m->hdr.data + m->line_start;
		size_t len = m->hdr.len - m->line_start - 1;
		if (len > 0 && line[len - 1] == '\r')
			len--;
		if (len == 0) {
			/* The empty line: it belongs to the body text we
			 * spool (the store keeps it), not to DKIM's body. */
			size_t blank = m->hdr.len - m->line_start;
			char tmp[2];
			memcpy(tmp, line, blank);
			m->hdr.len = m->line_start;
			header_done(m);
			body_out(m, tmp, blank, blank);
			break;
		}
		if (line[0] == ' ' || line[0] == '\t') {
			if (m->nfields > 0) {
				m->line_start = m->hdr.len;
				continue;
			}
		} else if (field_name_ok(line, len)) {
			m->fields = xrealloc(m->fields, (m->nfields + 1) * sizeof(size_t));
			m->fields[m->nfields++] = m->line_start;
			m->line_start = m->hdr.len;
			continue;
		}
		/* Not a header line: the body starts here. */
		body_from_line(m);
		break;
	}
	if (n > 0)
		body_out(m, p, n, 0);
}

void msgcheck_end(struct msgcheck *m)
{
	if (m->in_body)
		return;
	/* The text ended inside the header section: a last line without a
	 * line end (BDAT) is a field if it looks like one. */
	if (m->line_start < m->hdr.len) {
		const char *line = m->hdr.data + m->line_start;
		size_t len = m->hdr.len - m->line_start;
		if (!field_name_ok(line, len) && !(line[0] == ' ' || line[0] == '\t')) {
			body_from_line(m);
			return;
		}
		if (line[0] != ' ' && line[0] != '\t') {
			m->fields = xrealloc(m->fields, (m->nfields + 1) * sizeof(size_t));
			m->fields[m->nfields++] = m->line_start;
		}
	}
	header_done(m);
}

struct slice msgcheck_field(const struct msgcheck *m, size_t i, struct slice *name)
{
	size_t a = m->fields[i];
	size_t b = i + 1 < m->nfields ? m->fields[i + 1] : m->hdr_end;
	const char *p = m->hdr.data + a;
	const char *colon = memchr(p, ':', b - a);
	size_t nl = (size_t)(colon - p);
	while (nl > 0 && (p[nl - 1] == ' ' || p[nl - 1] == '\t'))
		nl--;
	*name = slice_make(p, nl);
	return slice_make(colon + 1, (size_t)(p + (b - a) - (colon + 1)));
}

/* An Authentication-Results value whose authserv-id is ours. */
static bool ar_is_ours(struct slice v, const char *hostname)
{
	size_t i = 0;
	while (i < v.len && (v.p[i] == ' ' || v.p[i] == '\t' || v.p[i] == '\r' || v.p[i] == '\n'))
		i++;
	/* RFC 8601 section 2.2: authserv-id is a value (token or quoted
	 * string); a comment may precede it; compare case-insensitively. */
	while (i < v.len && v.p[i] == '(') {
		int depth = 0;
		for (; i < v.len; i++) {
			if (v.p[i] == '\\') {
				i++;
				continue;
			}
			if (v.p[i] == '(')
				depth++;
			else if (v.p[i] == ')' && --depth == 0) {
				i++;
				break;
			}
		}
		while (i < v.len && (v.p[i] == ' ' || v.p[i] == '\t' || v.p[i] == '\r' || v.p[i] == '\n'))
			i++;
	}
	/* The id, with quoted pairs of a quoted string undone. */
	char id[256];
	size_t n = 0;
	if (i < v.len && v.p[i] == '"') {
		for (i++; i < v.len && v.p[i] != '"' && n < sizeof(id); i++) {
			if (v.p[i] == '\\' && i + 1 < v.len)
				i++;
			id[n++] = v.p[i];
		}
	} else {
		/* A token (RFC 2045): it ends at the first blank, control or
		 * tspecial, so "mx.example.test/1" or "mx.example.test\";"
		 * are ours too. */
		for (; i < v.len && (unsigned char)v.p[i] > 0x20 && (unsigned char)v.p[i] < 0x7f &&
		       strchr("()<>@,;:\\\"/[]?=", v.p[i]) == NULL && n < sizeof(id);
		     i++)
			id[n++] = v.p[i];
	}
	size_t hl = strlen(hostname);
	return n == hl && strncasecmp(id, hostname, hl) == 0;
}

bool msgcheck_field_removed(const struct msgcheck *m, size_t i)
{
	struct slice name;
	struct slice v = msgcheck_field(m, i, &name);
	if (slice_ieq(name, "Authentication-Results"))
		return ar_is_ours(v, m->cfg->hostname);
	return slice_ieq(name, "X-Spam-Score") || slice_ieq(name, "X-Spam-Status") ||
	       slice_ieq(name, "X-Spam-Flag") || slice_ieq(name, "X-RBL-Status");
}

void msgcheck_header_out(const struct msgcheck *m, struct buf *out)
{
	size_t n = 0;
	for (size_t i = 0; i < m->nfields; i++) {
		size_t a = m->fields[i];
		size_t b = i + 1 < m->nfields ? m->fields[i + 1] : m->hdr_end;
		if (msgcheck_field_removed(m, i)) {
			n++;
			continue;
		}
		buf_append(out, m->hdr.data + a, b - a);
	}
	/* Whatever preceded the first field (nothing, normally). */
	if (m->nfields == 0 && m->hdr_end)
		buf_append(out, m->hdr.data, m->hdr_end);
	(void)n;
}

size_t msgcheck_from_values(const struct msgcheck *m, char ***v)
{
	size_t n = 0;
	*v = NULL;
	for (size_t i = 0; i < m->nfields; i++) {
		struct slice name;
		struct slice val = msgcheck_field(m, i, &name);
		if (!slice_ieq(name, "From"))
			continue;
		*v = xrealloc(*v, (n + 2) * sizeof(char *));
		(*v)[n++] = xstrndup(val.p, val.len);
		(*v)[n] = NULL;
	}
	return n;
}
