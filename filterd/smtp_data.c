/*
 * smtp_data.c - the DATA/BDAT decoder: a byte state machine that removes
 * dot-stuffing (RFC 5321 section 4.5.2), converts CRLF to LF and finds the
 * end of data.  Only CR LF "." CR LF ends a message (section 4.1.1.4);
 * a bare LF or CR before or after the dot never does, so a message cannot
 * hide a second one from us (SMTP smuggling).
 */
#include "filterd/filterd.h"

#include <string.h>

enum {
	S_BOL,    /* at the start of a line that followed CR LF */
	S_BOL_LF, /* at the start of a line that followed a bare LF */
	S_MID,    /* inside a line */
	S_CR,     /* inside a line, a CR held back */
	S_DOT,    /* "." at the start of a line (after CR LF) held back */
	S_DOT_CR, /* "." CR at the start of a line held back */
};

void smtp_data_init(struct smtp_data *d, size_t max_line, bool bdat)
{
	memset(d, 0, sizeof(*d));
	d->state = S_BOL; /* the CR LF of the DATA command precedes the text */
	d->bdat = bdat;
	d->max_line = max_line;
}

static inline void count_line(struct smtp_data *d)
{
	if (++d->linelen > d->max_line)
		d->line_too_long = true;
}

size_t smtp_data_feed(struct smtp_data *d, const char *in, size_t len, char *out,
		      size_t *outlen_r, bool *done)
{
	size_t o = 0, i;
	int s = d->state;

	*done = false;
	for (i = 0; i < len; i++) {
		char c = in[i];
		switch (s) {
		case S_BOL:
			if (c == '.' && !d->bdat) {
				/* The stuffing dot is not part of the line's text. */
				s = S_DOT;
				continue;
			}
			/* fallthrough */
		case S_BOL_LF:
		case S_MID:
			count_line(d);
			if (c == '\r') {
				s = S_CR;
			} else if (c == '\n') {
				out[o++] = '\n';
				d->bare_lf++;
				d->linelen = 0;
				s = S_BOL_LF;
			} else {
				out[o++] = c;
				s = S_MID;
			}
			continue;
		case S_DOT:
			count_line(d);
			if (c == '\r') {
				s = S_DOT_CR;
				continue;
			}
			/* The leading dot was stuffing: drop it (section 4.5.2). */
			if (c == '\n') {
				out[o++] = '\n';
				d->bare_lf++;
				d->linelen = 0;
				s = S_BOL_LF;
			} else {
				out[o++] = c;
				s = S_MID;
			}
			continue;
		case S_DOT_CR:
			if (c == '\n') {
				/* CR LF . CR LF: the end.  raw_bytes counts the text
				 * without the ". CR LF" terminator (which may have
				 * arrived over earlier calls). */
				d->state = S_BOL;
				*outlen_r = o;
				*done = true;
				d->raw_bytes += i + 1;
				d->raw_bytes -= 3;
				return i + 1;
			}
			/* "." CR x: the dot was stuffing; the CR is data. */
			s = S_CR;
			/* fallthrough */
		case S_CR:
			count_line(d);
			if (c == '\n') {
				out[o++] = '\n';
				d->linelen = 0;
				s = S_BOL;
			} else if (c == '\r') {
				out[o++] = '\r'; /* the held CR was bare; hold this one */
			} else {
				out[o++] = '\r';
				out[o++] = c;
				s = S_MID;
			}
			continue;
		}
	}
	d->state = s;
	d->raw_bytes += len;
	*outlen_r = o;
	return len;
}

size_t smtp_data_finish(struct smtp_data *d, char *out)
{
	size_t o = 0;
	if (d->state == S_CR || d->state == S_DOT_CR)
		out[o++] = '\r';
	d->state = S_BOL;
	return o;
}
