/*
 * strvec.c - struct strvec, the string arrays the views are made of
 * (rules-private.h): body paragraphs, rawbody lines, URIs.
 *
 * The strings are kept NUL-terminated one after the other in one buffer
 * of at most 2 * VIEW_TEXT_MAX octets, with their offsets; the array of
 * pointers rules get is built once, on the first strvec_get, after the
 * last string was added.  At most VIEW_MAX_STRINGS strings; a string that
 * does not fit is dropped whole, never cut short (strvec_add_split stops
 * at the first piece that does not fit).
 *
 * strvec_add_split: as in SpamAssassin, a string longer than
 * VIEW_CHUNK_MAX octets is split, at a space in the second half of the
 * piece when there is one (the space dropped), else at a UTF-8 character
 * boundary (at most 3 octets back).
 */
#include "rules/rules-private.h"

#include <stdlib.h>

#define VIEW_CHUNK_MAX 2048
#define VIEW_MAX_STRINGS 100000

void strvec_init(struct strvec *s)
{
	buf_init(&s->b, 2 * VIEW_TEXT_MAX);
}

bool strvec_add(struct strvec *s, const char *p, size_t n)
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

void strvec_add_split(struct strvec *s, const char *p, size_t n)
{
	while (n > VIEW_CHUNK_MAX) {
		size_t cut = 0;
		for (size_t i = VIEW_CHUNK_MAX; i > VIEW_CHUNK_MAX / 2 && !cut; i--)
			if (p[i] == ' ')
				cut = i;
		if (cut) {
			if (!strvec_add(s, p, cut))
				return;
			p += cut + 1;
			n -= cut + 1;
			continue;
		}
		cut = VIEW_CHUNK_MAX;
		while (cut > VIEW_CHUNK_MAX - 3 && ((unsigned char)p[cut] & 0xC0) == 0x80)
			cut--;
		if (!strvec_add(s, p, cut))
			return;
		p += cut;
		n -= cut;
	}
	strvec_add(s, p, n);
}

const char *const *strvec_get(struct strvec *s, size_t *n)
{
	*n = s->n;
	if (s->v == NULL) {
		s->v = xcalloc(s->n + 1, sizeof *s->v);
		for (size_t i = 0; i < s->n; i++)
			s->v[i] = s->b.data + s->off[i];
	}
	return s->v;
}

void strvec_free(struct strvec *s)
{
	buf_free(&s->b);
	free(s->off);
	free(s->v);
}
