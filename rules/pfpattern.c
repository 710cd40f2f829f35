/*
 * pfpattern.c - a rule's PCRE2 pattern in the form the vectorscan
 * prefilter (prefilter.c) compiles.
 *
 * The prefilter may match more than the rule, never less, so the
 * pattern may be widened, or cut short, but each change must keep every
 * match of the original:
 *
 *  - Counted repeats with a large bound become open ones ("[^>]{0,300}"
 *    to "[^>]{0,}", "x{20}" to "x{8,}"): vectorscan takes seconds to
 *    build a long bounded repeat of a wide class, which HTML rules are
 *    full of.  Possessive repeats lose the '+': greedy matches more.
 *  - Where the library cannot be trusted with a run of a wide class (the
 *    runs_ok self-test of prefilter.c failed: vectorscan 5.4.9 misses
 *    matches of "curl[^<]*\|\s*python" and of "curl.*..." with DOTALL,
 *    issue #382), the pattern is cut before the first such run: every
 *    match of "A R* B" contains a match of "A".  That is only so for a
 *    run at the top level of a pattern with no top-level alternation;
 *    any other such pattern stays out of the databases.  A wide class is
 *    "." with DOTALL, a negated class that does not exclude the newline,
 *    a class with a complement escape in it (\S, \W, \D, \H: "[\s\S]"),
 *    \W, \D, \H, \C, \X, a class with a range to an escaped end
 *    ("[\x00-\xff]", "[\x01-\x{10ffff}]": taken as wide whatever it
 *    spans), and a group with both "." and a newline in it ("(?:.|\n)")
 *    or both of a class escape and its complement ("(?:\s|\S)").
 *    "[^\n<]" runs were found right.
 *  - Back-references with an assertion anywhere in the pattern stay out
 *    (Hyperscan's prefilter gets "(?:(\b)c)\1" wrong), as do those a
 *    cut would renumber.
 *  - Patterns with Unicode properties (\p, \P, (*UCP)) stay out:
 *    vectorscan's tables are older than PCRE2's (U+1C80 is \p{L} to one
 *    and not to the other).  So do patterns that turn extended mode on
 *    inline, whose comments could not be told from text here.
 *
 * The walk follows PCRE2's syntax as far as these changes need it: \Q..\E
 * spans, escapes with braces (\x{..}, \o{..}, \g{..}, \k{..}, \N{..}) and
 * \cX, classes ("[]a]", "[^]a]", "[[:alpha:]]"), (?#...) comments, and in
 * extended mode "#" comments and white space; repeats inside any of
 * those are text, left as they are.
 */
#include "rules/rules-private.h"

#include <stdlib.h>
#include <string.h>

#define PF_REPEAT_MAX 8           /* larger bounds are widened */
#define PF_DEPTH_MAX 64           /* deeper groups: left out */
#define PF_FLAGS_MAX 16           /* more top-level "(?i)": left out */

struct walk {
	struct buf *out;
	bool dotall, extended, runs_ok;
	/* the last atom, which a repeat applies to */
	bool have_atom, atom_wide;
	size_t atom_start;        /* its offset in out */
	/* open groups: where each starts, and what it has seen */
	struct {
		size_t start;
		bool wide, dot, nl;
		bool negative;    /* (?! or (?<! : requires nothing */
		bool has_run;     /* a run of a wide class inside (top-level group) */
		unsigned esc;     /* class escapes inside: esc_bit() */
	} grp[PF_DEPTH_MAX];
	/* How much literal text each open level requires: the longest run
	 * of literal characters, of an alternative ("best"), over all of its
	 * alternatives so far the least ("alt_min"); lv[0] the top level,
	 * lv[depth] the innermost open group.  "save_" are the values before
	 * the last atom, for a repeat that makes it optional. */
	struct {
		unsigned run, best, alt_min, save_run, save_best;
		bool any_alt;
	} lv[PF_DEPTH_MAX + 1];
	int depth;
	/* The segments of the current top-level alternative, between runs of
	 * wide classes (and groups with one inside): the one kept of each
	 * alternative goes into result. */
	size_t base;              /* out's length before the pattern */
	bool cut;                 /* the alternative has more than one segment */
	bool absorb;              /* a repeat now belongs to the cut before it */
	size_t seg_start;
	size_t best_start, best_end;
	unsigned best_score;      /* its longest required literal text */
	struct {
		size_t at, n;     /* in out */
	} flags[PF_FLAGS_MAX];    /* the top-level inline flags: "(?i)" */
	size_t nflags;
	bool any_cut;             /* some alternative was cut */
	bool backref;             /* back-references or subroutine calls */
	bool assertion;           /* \b ^ $ lookaround ... */
	struct buf result;        /* the kept segments, '|' between them */
	size_t nalt;
	bool bad;                 /* not for a database */
};

static void put(struct walk *w, const char *p, size_t n)
{
	if (buf_append(w->out, p, n) < 0)
		w->bad = true; /* too long: buf's cap */
}

/* The last atom was a literal character: it extends the run. */
static void literal(struct walk *w)
{
	unsigned *run = &w->lv[w->depth].run, *best = &w->lv[w->depth].best;
	*run = w->lv[w->depth].save_run + 1; /* atom() ended the run */
	if (*run > *best)
		*best = *run;
}

/* The segment that ends at end; the next one starts where out ends.
 * The one kept is the one that requires the longest literal text (the
 * later of equals: the first is most often the common context, "<font"
 * or "^https?://", the later the rule's point). */
static void end_segment(struct walk *w, size_t end)
{
	unsigned score = w->lv[0].best;
	if (!w->cut || score >= w->best_score) {
		w->best_start = w->seg_start;
		w->best_end = end;
		w->best_score = score;
	}
	w->cut = w->any_cut = true;
	memset(&w->lv[0], 0, sizeof(w->lv[0]));
	w->seg_start = w->out->len;
}

static void atom(struct walk *w, size_t start, bool wide, bool dot, bool nl)
{
	w->lv[w->depth].save_run = w->lv[w->depth].run;
	w->lv[w->depth].save_best = w->lv[w->depth].best;
	w->lv[w->depth].run = 0; /* literal() extends it again */
	w->have_atom = true;
	w->atom_wide = wide;
	w->atom_start = start;
	if (w->depth > 0) {
		w->grp[w->depth - 1].wide |= wide;
		w->grp[w->depth - 1].dot |= dot;
		w->grp[w->depth - 1].nl |= nl;
	}
}

/* The end of a run of text from p: a brace escape's '}', a class's ']'. */
static const char *past(const char *p, char close)
{
	const char *e = strchr(p, close);
	return e ? e + 1 : p + strlen(p);
}

/* A bit per class escape: \s \d \w \h \v low, their complements high;
 * a group with both of a pair ("(?:\s|\S)") matches anything. */
static unsigned esc_bit(char c)
{
	static const char pairs[] = "sdwhv";
	const char *k = strchr(pairs, c | 0x20);
	if (c == '\0' || k == NULL)
		return 0;
	unsigned i = (unsigned)(k - pairs);
	return (c >= 'a' ? 1u : 32u) << i;
}

static bool esc_complete(unsigned esc)
{
	return ((esc & 31u) & (esc >> 5)) != 0;
}

/* An escape at p ('\\'); returns what follows it. */
static const char *escape(struct walk *w, const char *p)
{
	size_t start = w->out->len;
	char c = p[1];
	const char *e;
	if (c == '\0') {
		put(w, p, 1);
		return p + 1;
	}
	if (c == 'Q') {
		/* text up to \E: a repeat after it applies to its last character */
		e = strstr(p + 2, "\\E");
		e = e ? e + 2 : p + strlen(p);
		put(w, p, (size_t)(e - p));
		atom(w, start, false, false, memchr(p, '\n', (size_t)(e - p)) != NULL);
		for (const char *q = p + 2; q + 2 < e; q++)
			literal(w);
		return e;
	}
	if (c == 'p' || c == 'P') {
		w->bad = true;
		return p + 2;
	}
	if (c == 'c' && p[2]) {
		e = p + 3;
	} else if ((c == 'x' || c == 'o' || c == 'g' || c == 'k' || c == 'N') && p[2] == '{') {
		e = past(p + 3, '}');
	} else if ((c == 'g' || c == 'k') && (p[2] == '<' || p[2] == '\'')) {
		e = past(p + 3, p[2] == '<' ? '>' : '\'');
	} else {
		e = p + 2;
	}
	put(w, p, (size_t)(e - p));
	if ((c >= '1' && c <= '9') || c == 'g' || c == 'k')
		w->backref = true;
	if (c == 'b' || c == 'B' || c == 'A' || c == 'z' || c == 'Z' || c == 'G')
		w->assertion = true;
	if (w->depth > 0)
		w->grp[w->depth - 1].esc |= esc_bit(c);
	bool wide = c == 'W' || c == 'D' || c == 'H' || c == 'C' || c == 'X';
	bool nl = c == 'n' || c == 's' || c == 'v' || c == 'R' || wide;
	atom(w, start, wide, false, nl);
	if (e == p + 2 && strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", c) ==
			      NULL)
		literal(w); /* "\." "\|" */
	return e;
}

/* Whether the class text [p, e) names the newline (or white space). */
static bool class_has_nl(const char *p, const char *e)
{
	static const char *const nl[] = { "\\n", "\\s", "\\v", "\\R", "\\x0a", "\\x0A", "\\x{a}",
					   "\\x{A}", "\\x{0a}", "\\x{0A}", "\\012", "[:space:]", NULL };
	for (const char *const *s = nl; *s; s++) {
		size_t n = strlen(*s);
		for (const char *q = p; q + n <= e; q++)
			if (memcmp(q, *s, n) == 0)
				return true;
	}
	return memchr(p, '\n', (size_t)(e - p)) != NULL;
}

static bool class_has_complement(const char *p, const char *e)
{
	for (const char *q = p; q + 1 < e; q++) {
		if (q[0] == '\\' && strchr("SWDHV", q[1]) != NULL && q[1] != '\0')
			return true;
		if (q[0] == '\\')
			q++;
		else if (q[0] == '[' && q[1] == ':' && q + 2 < e && q[2] == '^')
			return true;
	}
	return false;
}

/* A class at p ('['); returns what follows it. */
static const char *class(struct walk *w, const char *p)
{
	size_t start = w->out->len;
	const char *q = p + 1;
	bool negated = *q == '^';
	if (negated)
		q++;
	if (*q == ']')
		q++; /* a ']' first is a member */
	while (*q && *q != ']') {
		if (q[0] == '\\' && q[1] == 'Q') {
			const char *e = strstr(q + 2, "\\E");
			q = e ? e + 2 : q + strlen(q);
		} else if (q[0] == '\\' && q[1] != '\0') {
			if (q[1] == 'p' || q[1] == 'P')
				w->bad = true;
			if ((q[1] == 'x' || q[1] == 'o' || q[1] == 'N') && q[2] == '{')
				q = past(q + 3, '}');
			else
				q += q[1] == 'c' && q[2] ? 3 : 2;
		} else if (q[0] == '[' && q[1] == ':') {
			const char *e = strstr(q + 2, ":]");
			q = e ? e + 2 : q + 1;
		} else {
			q++;
		}
	}
	const char *e = *q == ']' ? q + 1 : q;
	put(w, p, (size_t)(e - p));
	bool has_nl = class_has_nl(p, e);
	/* a range to an escaped end may span everything ("[\x00-\xff]") */
	bool escaped_range = false;
	for (const char *r = p + 1; r + 1 < e && !escaped_range; r++)
		escaped_range = r[0] == '-' && r[1] == '\\' && r[-1] != '[' && r[-1] != '^';
	bool wide = (negated && !has_nl) || class_has_complement(p, e) || escaped_range;
	/* a negated class is like "." in a group: with a newline, anything */
	atom(w, start, wide, negated, negated ? !has_nl : has_nl);
	return e;
}

/* "(?flags)" or "(?flags:" at p, the flags at p + 2; NULL when p is not
 * that.  Turning s on makes "." wide from here (a (?-s) later is not
 * followed: wider is safe); turning x on is refused. */
static const char *inline_flags(struct walk *w, const char *p)
{
	const char *q = p + 2;
	bool off = false;
	while (*q && strchr("imnsxJU-^", *q) != NULL) {
		if (*q == '-')
			off = true;
		else if (*q == 's' && !off)
			w->dotall = true;
		else if (*q == 'x' && !off && !w->extended)
			w->bad = true;
		q++;
	}
	return *q == ')' || *q == ':' ? q : NULL;
}

/* A '{' that is not a repeat: a literal character (the repeat of a cut
 * group, if any, is not coming). */
static const char *literal_brace(struct walk *w, const char *p)
{
	w->absorb = false;
	put(w, p, 1);
	atom(w, w->out->len - 1, false, false, false);
	literal(w);
	return p + 1;
}

/* A repeat at p, applying to the last atom; returns what follows it. */
static const char *repeat(struct walk *w, const char *p)
{
	bool open = false, widen = false;
	unsigned long m = 0, n = 0;
	const char *e;
	if (*p == '*' || *p == '+') {
		open = true;
		e = p + 1;
	} else if (*p == '?') {
		e = p + 1;
	} else {
		/* '{': a repeat only as {m}, {m,} or {m,n} (PCRE2 10.42 reads
		 * "{,n}" and any other brace as text) */
		char *x;
		if (!(p[1] >= '0' && p[1] <= '9')) {
			return literal_brace(w, p);
		}
		m = strtoul(p + 1, &x, 10);
		if (*x == '}') {
			widen = m > PF_REPEAT_MAX;
		} else if (*x == ',' && x[1] == '}') {
			x++;
			open = true;
			widen = m > PF_REPEAT_MAX;
		} else if (*x == ',' && x[1] >= '0' && x[1] <= '9') {
			n = strtoul(x + 1, &x, 10);
			if (*x != '}') {
				return literal_brace(w, p);
			}
			widen = n > PF_REPEAT_MAX || m > PF_REPEAT_MAX;
		} else {
			return literal_brace(w, p);
		}
		e = x + 1;
	}
	/* An optional atom requires nothing, and a repeated one ends the run. */
	bool optional = *p == '*' || *p == '?' || (*p == '{' && m == 0);
	if (w->have_atom && optional)
		w->lv[w->depth].best = w->lv[w->depth].save_best;
	w->lv[w->depth].run = 0;
	/* A run of a wide class: the segment before it ends (top level). */
	bool absorb = w->absorb;
	bool cutting = (open || widen) && w->have_atom && w->atom_wide && !w->runs_ok && !absorb;
	if (cutting && w->depth > 0)
		w->grp[0].has_run = true; /* the whole group is cut out */
	size_t cut_at = w->atom_start;
	if (widen)
		buf_printf(w->out, "{%lu,}", m > PF_REPEAT_MAX ? (unsigned long)PF_REPEAT_MAX : m);
	else
		put(w, p, (size_t)(e - p));
	if (*e == '?') {
		put(w, e, 1); /* lazy */
		e++;
	} else if (*e == '+') {
		e++; /* possessive: greedy matches more */
	}
	w->have_atom = false; /* "a**" is an error to PCRE2 anyway */
	if (cutting && w->depth == 0)
		end_segment(w, cut_at);
	if (absorb) {
		w->seg_start = w->out->len; /* the group's repeat is cut out with it */
		w->absorb = false;
	}
	return e;
}

/* The end of a top-level alternative (at '|' or the end): its kept
 * segment, after the inline flags set before it (those after it do not
 * apply to it), goes into result. */
static void end_alternative(struct walk *w)
{
	size_t from = w->seg_start, to = w->out->len;
	if (w->cut) {
		end_segment(w, to);
		from = w->best_start;
		to = w->best_end;
	}
	struct buf *r = &w->result;
	if (w->nalt++ > 0 && buf_putc(r, '|') < 0)
		w->bad = true;
	for (size_t i = 0; i < w->nflags && w->flags[i].at < from; i++)
		if (buf_append(r, w->out->data + w->flags[i].at, w->flags[i].n) < 0)
			w->bad = true;
	if (to > from && buf_append(r, w->out->data + from, to - from) < 0)
		w->bad = true;
	w->cut = false;
	memset(&w->lv[0], 0, sizeof(w->lv[0]));
}

bool pf_pattern(const char *p, bool extended, bool dotall, bool runs_ok, struct buf *out)
{
	struct walk w = { .out = out, .dotall = dotall, .extended = extended, .runs_ok = runs_ok };
	if (strstr(p, "(*UCP") != NULL)
		return false;
	w.base = w.seg_start = out->len;
	buf_init(&w.result, out->max);
	while (*p && !w.bad) {
		size_t start = out->len;
		if (w.absorb && *p != '*' && *p != '+' && *p != '?' && *p != '{')
			w.absorb = false;
		switch (*p) {
		case '\\':
			p = escape(&w, p);
			break;
		case '[':
			p = class(&w, p);
			break;
		case '*':
		case '+':
		case '?':
		case '{':
			p = repeat(&w, p);
			break;
		case '(': {
			if (p[1] == '?' && p[2] == '#') {
				const char *e = past(p + 3, ')');
				put(&w, p, (size_t)(e - p));
				p = e;
				break;
			}
			if (p[1] == '*') {
				/* (*VERB): at the start only */
				const char *e = past(p + 2, ')');
				put(&w, p, (size_t)(e - p));
				p = e;
				break;
			}
			const char *f = p[1] == '?' ? inline_flags(&w, p) : NULL;
			if (f != NULL && *f == ')') {
				if (w.depth == 0 && w.nflags == PF_FLAGS_MAX)
					w.bad = true;
				else if (w.depth == 0)
					w.flags[w.nflags].at = out->len, w.flags[w.nflags++].n = (size_t)(f + 1 - p);
				put(&w, p, (size_t)(f + 1 - p));
				p = f + 1;
				break;
			}
			if (w.depth == PF_DEPTH_MAX) {
				w.bad = true;
				break;
			}
			w.grp[w.depth].start = start;
			w.grp[w.depth].wide = w.grp[w.depth].dot = w.grp[w.depth].nl = false;
			w.grp[w.depth].negative = strncmp(p, "(?!", 3) == 0 || strncmp(p, "(?<!", 4) == 0;
			w.grp[w.depth].has_run = false;
			w.grp[w.depth].esc = 0;
			if (p[1] == '?' && (strchr("PR&+-0123456789", p[2]) != NULL && p[2] != '\0'))
				w.backref = true; /* (?P=name) (?R) (?&name) (?1) ... */
			if (p[1] == '?' && (p[2] == '=' || p[2] == '!' || p[2] == '<'))
				w.assertion = true; /* lookaround (or a named group: left out too) */
			w.depth++;
			memset(&w.lv[w.depth], 0, sizeof(w.lv[w.depth]));
			w.have_atom = false;
			put(&w, p, 1);
			p++;
			break;
		}
		case ')':
			put(&w, p++, 1);
			if (w.depth == 0) {
				w.bad = true; /* unbalanced: PCRE2 would not have compiled it */
				break;
			}
			{
				/* what the group requires: the least of its alternatives */
				unsigned need = w.lv[w.depth].best;
				if (w.lv[w.depth].any_alt && w.lv[w.depth].alt_min < need)
					need = w.lv[w.depth].alt_min;
				w.depth--;
				unsigned esc = w.grp[w.depth].esc;
				if (w.depth > 0)
					w.grp[w.depth - 1].esc |= esc;
				atom(&w, w.grp[w.depth].start,
				     w.grp[w.depth].wide || (w.grp[w.depth].dot && w.grp[w.depth].nl) ||
					     esc_complete(esc),
				     w.grp[w.depth].dot, w.grp[w.depth].nl);
				if (!w.grp[w.depth].negative && need > w.lv[w.depth].best)
					w.lv[w.depth].best = need;
				if (w.depth == 0 && w.grp[0].has_run && !w.runs_ok) {
					/* cut the group out, and a repeat of it */
					w.lv[0].best = w.lv[0].save_best;
					end_segment(&w, w.grp[0].start);
					w.absorb = true;
				}
			}
			break;
		case '|': {
			if (w.depth == 0) {
				end_alternative(&w);
				put(&w, p++, 1);
				w.seg_start = out->len;
				w.have_atom = false;
				break;
			}
			w.have_atom = false;
			unsigned best = w.lv[w.depth].best;
			if (!w.lv[w.depth].any_alt || best < w.lv[w.depth].alt_min)
				w.lv[w.depth].alt_min = best;
			w.lv[w.depth].any_alt = true;
			w.lv[w.depth].best = w.lv[w.depth].run = 0;
			put(&w, p++, 1);
			break;
		}
		case '^':
		case '$':
			w.assertion = true;
			w.have_atom = false;
			w.lv[w.depth].run = 0;
			put(&w, p++, 1);
			break;
		case '.':
			put(&w, p++, 1);
			atom(&w, start, w.dotall, true, false);
			break;
		case '#':
			if (w.extended) {
				/* a comment: to the end of the line, text */
				size_t n = strcspn(p, "\n");
				put(&w, p, n);
				p += n;
				break;
			}
			put(&w, p++, 1);
			atom(&w, start, false, false, false);
			break;
		case ' ':
		case '\t':
		case '\n':
		case '\r':
		case '\f':
		case '\v':
			put(&w, p, 1);
			if (!w.extended)
				atom(&w, start, false, false, *p == '\n');
			p++;
			break;
		default:
			put(&w, p++, 1);
			atom(&w, start, false, false, false);
			literal(&w);
			break;
		}
	}
	if (!w.bad)
		end_alternative(&w);
	/* A cut renumbers the groups: a reference could name another.  And
	 * Hyperscan's prefilter stands a back-reference in for the group's
	 * pattern, which is not a superset when the group holds an assertion
	 * ("(?:(\b)c)\1" matches "Ca"; its stand-in "(?:\bc)\b" does not). */
	bool ok = !w.bad && w.depth == 0 && !(w.backref && (w.any_cut || w.assertion));
	if (ok) {
		out->len = w.base;
		if (w.result.len)
			put(&w, w.result.data, w.result.len);
		ok = !w.bad && out->data != NULL;
		if (ok)
			out->data[out->len] = '\0';
	}
	buf_free(&w.result);
	return ok;
}
