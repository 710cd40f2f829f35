/*
 * imap_parse.c - the incremental IMAP command parser (RFC 3501 section 9,
 * RFC 7888 LITERAL+, RFC 3516 literal8) and sequence sets.
 *
 * The parser is a byte-driven state machine, so any chunking of the input
 * gives the same result: each byte moves it from one state to the next;
 * only literal data is copied in blocks.  It builds the argument tree as
 * it goes (a stack of argument arrays, one per open parenthesis) and
 * stores nothing while it skips a bad line.
 */
#include "imapd/imap_parse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum pstate {
	ST_TAG,        /* reading the tag (also: the start of a command) */
	ST_NAME,       /* reading the command name */
	ST_ARG,        /* after SP: an argument must start */
	ST_ARG_OPEN,   /* after '(': an argument or ')' */
	ST_AFTER,      /* after an argument: SP, ')' or the line end */
	ST_ATOM,
	ST_TILDE,      /* '~': literal8 or an atom starting with '~' */
	ST_QUOTED,
	ST_QESC,       /* after '\' in a quoted string */
	ST_LITNUM,     /* inside {...} */
	ST_LITCR,      /* after '}': CR or LF */
	ST_LITLF,      /* after "}\r": LF */
	ST_LITWAIT,    /* LITERAL returned: waiting for continue/reject */
	ST_LITDATA,
	ST_CR,         /* CR at the end of the line: LF */
	ST_SKIP,       /* skipping the rest of a bad line */
	ST_SKIPLIT,    /* skipping the data of a {N+} of a bad line */
	ST_DONE,
	ST_ERROR,      /* ERROR returned */
	ST_FATAL,
};

struct arglist {
	struct imap_arg *v;
	size_t n, cap;
};

struct imap_parser {
	size_t max_line, max_literal, max_args;
	size_t append_max;      /* literals of APPEND (imap_parser_set_limits) */
	enum pstate st;
	char *tag, *name;
	struct arglist stack[IMAP_MAX_DEPTH + 1];
	unsigned depth;
	size_t nargs;          /* arguments so far, all levels */
	size_t line_len;       /* non-literal bytes so far */
	uint64_t lit_total;    /* literal bytes so far */
	/* the token being read (atom, quoted string, tag, name) */
	char *tok;
	size_t toklen, tokcap;
	unsigned bracket;      /* '[' nesting inside an atom */
	bool br_quoted, br_esc;
	/* the literal being read */
	uint64_t lit_size, lit_got;
	unsigned lit_digits;
	bool lit_plus, lit8;
	char *lit;
	size_t lit_cap;
	/* skipping: recognise "{N+}" at the end of the bad line */
	int sk_state;
	uint64_t sk_num;
	bool sk_huge;
	uint64_t sk_left;
	char err[160];
	bool fatal;
	struct imap_cmd cmd;
};

/* RFC 3501 ATOM-CHAR: CHAR except atom-specials ( ) { SP CTL % * " \ ]. */
static bool is_atom_char(unsigned char c)
{
	if (c <= 0x20 || c >= 0x7f)
		return false;
	return !strchr("(){%*\"\\]", c);
}

/* Characters we accept in atoms besides ATOM-CHAR: flags (\Seen, \*),
 * LIST wildcards, sequence sets (1:*), resp-specials. */
static bool is_atom_ext(unsigned char c)
{
	return is_atom_char(c) || c == '\\' || c == '%' || c == '*' || c == ']';
}

/* RFC 3501 tag: 1*<any ASTRING-CHAR except "+">. */
static bool is_tag_char(unsigned char c)
{
	return (is_atom_char(c) && c != '+') || c == ']';
}

static void free_args(struct imap_arg *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].str);
		free_args(v[i].list, v[i].nlist);
	}
	free(v);
}

/* Free everything of the current command; keep_tag keeps the tag for the
 * caller's reply (after literal_reject). */
static void clear(struct imap_parser *p, bool keep_tag)
{
	for (unsigned i = 0; i <= IMAP_MAX_DEPTH; i++) {
		free_args(p->stack[i].v, p->stack[i].n);
		p->stack[i].v = NULL;
		p->stack[i].n = p->stack[i].cap = 0;
	}
	free_args(p->cmd.args, p->cmd.nargs);
	memset(&p->cmd, 0, sizeof(p->cmd));
	if (!keep_tag) {
		free(p->tag);
		p->tag = NULL;
	}
	free(p->name);
	p->name = NULL;
	free(p->lit);
	p->lit = NULL;
	p->lit_cap = 0;
	p->depth = 0;
	p->nargs = 0;
	p->line_len = 0;
	p->lit_total = 0;
	p->toklen = 0;
	p->bracket = 0;
	p->br_quoted = p->br_esc = false;
	p->lit_size = p->lit_got = 0;
	p->lit_digits = 0;
	p->lit_plus = p->lit8 = false;
	p->sk_state = 0;
	p->sk_num = 0;
	p->sk_huge = false;
	p->sk_left = 0;
	p->err[0] = '\0';
	p->fatal = false;
	p->st = ST_TAG;
}

struct imap_parser *imap_parser_new(size_t max_line, size_t max_literal, size_t max_args)
{
	struct imap_parser *p = xcalloc(1, sizeof(*p));
	p->max_line = max_line;
	p->max_literal = max_literal;
	p->append_max = max_literal;
	p->max_args = max_args;
	p->st = ST_TAG;
	return p;
}

void imap_parser_free(struct imap_parser **pp)
{
	struct imap_parser *p = *pp;
	if (!p)
		return;
	clear(p, false);
	free(p->tok);
	free(p);
	*pp = NULL;
}

void imap_parser_reset(struct imap_parser *p)
{
	clear(p, false);
}

static void tok_add(struct imap_parser *p, char c)
{
	if (p->toklen + 2 > p->tokcap) {
		p->tokcap = p->tokcap ? p->tokcap * 2 : 64;
		p->tok = xrealloc(p->tok, p->tokcap);
	}
	p->tok[p->toklen++] = c;
	p->tok[p->toklen] = '\0';
}

/* Add an argument to the innermost open list (takes str). */
static struct imap_arg *add_arg(struct imap_parser *p, enum imap_arg_type type, char *str,
				size_t len)
{
	struct arglist *l = &p->stack[p->depth];
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 8;
		l->v = xrealloc(l->v, l->cap * sizeof(*l->v));
	}
	struct imap_arg *a = &l->v[l->n++];
	memset(a, 0, sizeof(*a));
	a->type = type;
	a->str = str;
	a->len = len;
	return a;
}

static char *tok_take(struct imap_parser *p)
{
	char *s = xmalloc(p->toklen + 1);
	memcpy(s, p->tok ? p->tok : "", p->toklen);
	s[p->toklen] = '\0';
	p->toklen = 0;
	return s;
}

/* Skip state: feed one byte of the bad line. */
static void skip_byte(struct imap_parser *p, unsigned char c)
{
	switch (p->sk_state) {
	case 1: /* in "{digits" */
		if (c >= '0' && c <= '9') {
			if (p->sk_num > (UINT64_MAX - 9) / 10)
				p->sk_huge = true;
			else
				p->sk_num = p->sk_num * 10 + (c - '0');
			return;
		}
		if (c == '+') {
			p->sk_state = 2;
			return;
		}
		break;
	case 2:
		if (c == '}') {
			p->sk_state = 3;
			return;
		}
		break;
	case 3:
		if (c == '\r')
			return;
		break;
	}
	p->sk_state = 0;
	if (c == '{') {
		p->sk_state = 1;
		p->sk_num = 0;
		p->sk_huge = false;
	}
}

enum step { STEP_CONT, STEP_DONE, STEP_LITERAL, STEP_ERROR };

static enum step fatal(struct imap_parser *p, const char *msg)
{
	snprintf(p->err, sizeof(p->err), "%s", msg);
	p->fatal = true;
	p->st = ST_FATAL;
	return STEP_ERROR;
}

/* A syntax error at byte c: report at once when c ends the line, else skip
 * to the line end (c itself is part of what is skipped). */
static enum step fail(struct imap_parser *p, unsigned char c, const char *msg)
{
	if (!p->err[0])
		snprintf(p->err, sizeof(p->err), "%s", msg);
	if (c == '\n') {
		p->st = ST_ERROR;
		return STEP_ERROR;
	}
	p->st = ST_SKIP;
	p->sk_state = 0;
	skip_byte(p, c);
	return STEP_CONT;
}

static enum step end_line(struct imap_parser *p, unsigned char c)
{
	if (p->depth > 0)
		return fail(p, c, "Unbalanced parenthesis");
	p->cmd.tag = p->tag;
	p->cmd.name = p->name;
	p->cmd.args = p->stack[0].v;
	p->cmd.nargs = p->stack[0].n;
	/* cmd.tag and cmd.name share p->tag and p->name */
	p->stack[0].v = NULL;
	p->stack[0].n = p->stack[0].cap = 0;
	p->st = ST_DONE;
	return STEP_DONE;
}

static bool count_arg(struct imap_parser *p)
{
	if (p->nargs >= p->max_args)
		return false;
	p->nargs++;
	return true;
}

static enum step close_list(struct imap_parser *p, unsigned char c)
{
	if (p->depth == 0)
		return fail(p, c, "Unexpected ')'");
	struct arglist l = p->stack[p->depth];
	memset(&p->stack[p->depth], 0, sizeof(p->stack[p->depth]));
	p->depth--;
	struct imap_arg *a = add_arg(p, IMAP_ARG_LIST, NULL, 0);
	a->list = l.v;
	a->nlist = l.n;
	p->st = ST_AFTER;
	return STEP_CONT;
}

static void finish_atom(struct imap_parser *p)
{
	if (p->toklen == 3 && strncasecmp(p->tok, "NIL", 3) == 0) {
		p->toklen = 0;
		add_arg(p, IMAP_ARG_NIL, xstrdup("NIL"), 3);
		return;
	}
	size_t len = p->toklen;
	add_arg(p, IMAP_ARG_ATOM, tok_take(p), len);
}

static void finish_literal(struct imap_parser *p)
{
	char *s = p->lit ? p->lit : xmalloc(1);
	s[p->lit_size] = '\0';
	struct imap_arg *a = add_arg(p, IMAP_ARG_LITERAL, s, (size_t)p->lit_size);
	a->literal8 = p->lit8;
	p->lit = NULL;
	p->lit_cap = 0;
	p->lit_total += p->lit_size;
	p->st = ST_AFTER;
}

/* Each literal at most max_literal, all of one command at most twice that
 * (a mailbox name sent as a literal plus a message of the largest size). */
static size_t literal_max(const struct imap_parser *p)
{
	return p->name && strcmp(p->name, "APPEND") == 0 ? p->append_max : p->max_literal;
}

static bool literal_too_big(const struct imap_parser *p)
{
	size_t max = literal_max(p);
	if (p->lit_size > max)
		return true;
	uint64_t total_max = (uint64_t)max > UINT64_MAX / 2 ? UINT64_MAX : (uint64_t)max * 2;
	return p->lit_total > total_max - p->lit_size;
}

/* The line of "{N}" ended: start reading the literal, or ask the server. */
static enum step literal_ready(struct imap_parser *p)
{
	if (!p->lit_plus) {
		p->st = ST_LITWAIT;
		return STEP_LITERAL;
	}
	if (p->lit_size == 0) {
		finish_literal(p);
		return STEP_CONT;
	}
	p->st = ST_LITDATA;
	return STEP_CONT;
}

/* One byte in any line state (not literal data, skip, or final states). */
static enum step step(struct imap_parser *p, unsigned char c)
{
	if (c == '\0')
		return fail(p, c, "NUL in command");
	if (c != '\r' && c != '\n' && ++p->line_len > p->max_line)
		return fail(p, c, "Command line too long");
again:
	switch (p->st) {
	case ST_TAG:
		if (is_tag_char(c)) {
			tok_add(p, (char)c);
			return STEP_CONT;
		}
		if (p->toklen == 0) {
			if (c == '\r' || c == '\n')
				return fail(p, c, "Empty command line");
			return fail(p, c, "Missing or invalid tag");
		}
		if (c == ' ') {
			p->tag = tok_take(p);
			p->st = ST_NAME;
			return STEP_CONT;
		}
		if (c == '\r' || c == '\n') {
			p->tag = tok_take(p);
			return fail(p, c, "Missing command");
		}
		return fail(p, c, "Invalid character in tag");

	case ST_NAME:
		if (is_atom_char(c)) {
			tok_add(p, (char)(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c));
			return STEP_CONT;
		}
		if (p->toklen == 0)
			return fail(p, c, "Missing command");
		if (c == ' ' || c == '\r' || c == '\n') {
			p->name = tok_take(p);
			if (c == ' ') {
				p->st = ST_ARG;
				return STEP_CONT;
			}
			p->st = ST_AFTER;
			goto again;
		}
		return fail(p, c, "Invalid character in command name");

	case ST_ARG:
	case ST_ARG_OPEN:
		if (c == ')' && p->st == ST_ARG_OPEN)
			return close_list(p, c);
		if (c == ' ' || c == '\r' || c == '\n' || c == ')')
			return fail(p, c, "Missing argument");
		if (!count_arg(p))
			return fail(p, c, "Too many arguments");
		if (c == '(') {
			if (p->depth >= IMAP_MAX_DEPTH)
				return fail(p, c, "Lists nested too deeply");
			p->depth++;
			p->st = ST_ARG_OPEN;
			return STEP_CONT;
		}
		if (c == '"') {
			p->toklen = 0;
			p->st = ST_QUOTED;
			return STEP_CONT;
		}
		if (c == '{') {
			p->lit8 = false;
			goto start_literal;
		}
		if (c == '~') {
			p->toklen = 0;
			tok_add(p, '~');
			p->st = ST_TILDE;
			return STEP_CONT;
		}
		if (is_atom_ext(c) || c == '[') {
			p->toklen = 0;
			p->bracket = 0;
			p->st = ST_ATOM;
			goto again;
		}
		return fail(p, c, "Invalid character");

	case ST_TILDE:
		if (c == '{') {
			p->toklen = 0;
			p->lit8 = true;
			goto start_literal;
		}
		p->bracket = 0;
		p->st = ST_ATOM;
		goto again;

	case ST_ATOM:
		if (p->bracket > 0) {
			if (p->br_quoted) {
				if (c == '\r' || c == '\n')
					return fail(p, c, "Unterminated section");
				if (p->br_esc)
					p->br_esc = false;
				else if (c == '\\')
					p->br_esc = true;
				else if (c == '"')
					p->br_quoted = false;
				tok_add(p, (char)c);
				return STEP_CONT;
			}
			if (c < 0x20 || c >= 0x7f)
				return fail(p, c, "Unterminated section");
			if (c == '"')
				p->br_quoted = true;
			else if (c == '[')
				p->bracket++;
			else if (c == ']')
				p->bracket--;
			tok_add(p, (char)c);
			return STEP_CONT;
		}
		if (c == '[') {
			p->bracket = 1;
			tok_add(p, (char)c);
			return STEP_CONT;
		}
		if (is_atom_ext(c)) {
			tok_add(p, (char)c);
			return STEP_CONT;
		}
		if (c == ' ' || c == ')' || c == '\r' || c == '\n') {
			finish_atom(p);
			p->st = ST_AFTER;
			goto again;
		}
		return fail(p, c, "Invalid character in atom");

	case ST_QUOTED:
		if (c == '"') {
			size_t len = p->toklen;
			add_arg(p, IMAP_ARG_QUOTED, tok_take(p), len);
			p->st = ST_AFTER;
			return STEP_CONT;
		}
		if (c == '\\') {
			p->st = ST_QESC;
			return STEP_CONT;
		}
		if (c == '\r' || c == '\n')
			return fail(p, c, "CR or LF in quoted string");
		tok_add(p, (char)c);
		return STEP_CONT;

	case ST_QESC:
		if (c == '"' || c == '\\') {
			tok_add(p, (char)c);
			p->st = ST_QUOTED;
			return STEP_CONT;
		}
		return fail(p, c, "Invalid escape in quoted string");

	case ST_LITNUM:
		if (c >= '0' && c <= '9' && !p->lit_plus) {
			if (p->lit_size > (UINT64_MAX - 9) / 10)
				return fatal(p, "Literal size out of range");
			p->lit_size = p->lit_size * 10 + (c - '0');
			p->lit_digits++;
			return STEP_CONT;
		}
		if (c == '+' && p->lit_digits > 0 && !p->lit_plus) {
			p->lit_plus = true;
			return STEP_CONT;
		}
		if (c == '}' && p->lit_digits > 0) {
			if (p->lit_plus && literal_too_big(p))
				return fatal(p, "Non-synchronizing literal too big");
			p->st = ST_LITCR;
			return STEP_CONT;
		}
		return fail(p, c, "Invalid literal");

	case ST_LITCR:
		if (c == '\r') {
			p->st = ST_LITLF;
			return STEP_CONT;
		}
		if (c == '\n')
			return literal_ready(p);
		return fail(p, c, "Literal must end the line");

	case ST_LITLF:
		if (c == '\n')
			return literal_ready(p);
		return fail(p, c, "Literal must end the line");

	case ST_AFTER:
		if (c == ' ') {
			p->st = ST_ARG;
			return STEP_CONT;
		}
		if (c == ')')
			return close_list(p, c);
		if (c == '\r') {
			p->st = ST_CR;
			return STEP_CONT;
		}
		if (c == '\n')
			return end_line(p, c);
		return fail(p, c, "Expected space");

	case ST_CR:
		if (c == '\n')
			return end_line(p, c);
		return fail(p, c, "CR not followed by LF");

	default:
		break;
	}
	log_panic(NULL, "imap parser: bad state %d", (int)p->st);

start_literal:
	p->lit_size = 0;
	p->lit_got = 0;
	p->lit_digits = 0;
	p->lit_plus = false;
	p->st = ST_LITNUM;
	return STEP_CONT;
}

enum imap_parse_status imap_parser_feed(struct imap_parser *p, const char *in, size_t len,
					size_t *consumed_r)
{
	size_t i = 0;
	*consumed_r = 0;
	if (p->st == ST_DONE || p->st == ST_ERROR)
		clear(p, false);
	if (p->st == ST_FATAL)
		return IMAP_PARSE_ERROR;
	if (p->st == ST_LITWAIT)
		return IMAP_PARSE_LITERAL;
	if (p->st == ST_TAG && p->toklen == 0 && len > 0) {
		free(p->tag); /* kept after a literal_reject */
		p->tag = NULL;
	}
	while (i < len) {
		if (p->st == ST_LITDATA) {
			uint64_t want = p->lit_size - p->lit_got;
			size_t n = len - i < want ? len - i : (size_t)want;
			size_t need = (size_t)p->lit_got + n + 1;
			if (need > p->lit_cap) {
				size_t cap = p->lit_cap ? p->lit_cap : 4096;
				while (cap < need)
					cap *= 2;
				if (cap > p->lit_size + 1)
					cap = (size_t)p->lit_size + 1;
				p->lit = xrealloc(p->lit, cap);
				p->lit_cap = cap;
			}
			memcpy(p->lit + p->lit_got, in + i, n);
			p->lit_got += n;
			i += n;
			if (p->lit_got == p->lit_size)
				finish_literal(p);
			continue;
		}
		if (p->st == ST_SKIPLIT) {
			size_t n = len - i < p->sk_left ? len - i : (size_t)p->sk_left;
			p->sk_left -= n;
			i += n;
			if (p->sk_left == 0) {
				p->st = ST_SKIP;
				p->sk_state = 0;
			}
			continue;
		}
		unsigned char c = (unsigned char)in[i++];
		if (p->st == ST_SKIP) {
			if (c != '\n') {
				skip_byte(p, c);
				continue;
			}
			if (p->sk_state == 3) { /* the bad line ended with {N+} */
				p->sk_state = 0;
				if (p->sk_huge || p->sk_num > literal_max(p)) {
					*consumed_r = i;
					fatal(p, "Non-synchronizing literal too big");
					return IMAP_PARSE_ERROR;
				}
				if (p->sk_num > 0) {
					p->sk_left = p->sk_num;
					p->st = ST_SKIPLIT;
				}
				continue;
			}
			p->st = ST_ERROR;
			*consumed_r = i;
			return IMAP_PARSE_ERROR;
		}
		switch (step(p, c)) {
		case STEP_CONT:
			break;
		case STEP_DONE:
			*consumed_r = i;
			return IMAP_PARSE_DONE;
		case STEP_LITERAL:
			*consumed_r = i;
			return IMAP_PARSE_LITERAL;
		case STEP_ERROR:
			*consumed_r = i;
			return IMAP_PARSE_ERROR;
		}
	}
	*consumed_r = i;
	return IMAP_PARSE_MORE;
}

const struct imap_cmd *imap_parser_cmd(const struct imap_parser *p)
{
	return p->st == ST_DONE ? &p->cmd : NULL;
}

const char *imap_parser_tag(const struct imap_parser *p)
{
	return p->tag;
}

const char *imap_parser_name(const struct imap_parser *p)
{
	return p->name;
}

uint64_t imap_parser_literal_size(const struct imap_parser *p)
{
	return p->lit_size;
}

void imap_parser_set_limits(struct imap_parser *p, size_t max_literal, size_t append_max)
{
	p->max_literal = max_literal;
	p->append_max = append_max;
}

bool imap_parser_literal_too_big(const struct imap_parser *p)
{
	return literal_too_big(p);
}

void imap_parser_literal_continue(struct imap_parser *p)
{
	if (p->st != ST_LITWAIT)
		return;
	if (literal_too_big(p)) {
		/* the client sends it now: skip it and the rest of the line,
		 * then report the error */
		snprintf(p->err, sizeof(p->err), "Literal too big");
		p->sk_state = 0;
		p->sk_left = p->lit_size;
		p->st = p->lit_size ? ST_SKIPLIT : ST_SKIP;
		return;
	}
	if (p->lit_size == 0)
		finish_literal(p);
	else
		p->st = ST_LITDATA;
}

void imap_parser_literal_reject(struct imap_parser *p)
{
	clear(p, true);
}

const char *imap_parser_error(const struct imap_parser *p)
{
	return p->err[0] ? p->err : NULL;
}

bool imap_parser_error_fatal(const struct imap_parser *p)
{
	return p->fatal;
}

const char *imap_arg_astring(const struct imap_arg *a)
{
	switch (a->type) {
	case IMAP_ARG_ATOM:
	case IMAP_ARG_QUOTED:
		return a->str;
	case IMAP_ARG_LITERAL:
		return memchr(a->str, '\0', a->len) ? NULL : a->str;
	default:
		return NULL;
	}
}

const char *imap_arg_nstring(const struct imap_arg *a)
{
	return a->type == IMAP_ARG_NIL ? NULL : imap_arg_astring(a);
}

const char *imap_arg_atom(const struct imap_arg *a)
{
	return a->type == IMAP_ARG_ATOM ? a->str : NULL;
}

/* ---------------------------------------------------------- sequence sets */

static void seqset_reserve(struct seqset *s, size_t n)
{
	if (n <= s->cap)
		return;
	size_t cap = s->cap ? s->cap : 4;
	while (cap < n)
		cap *= 2;
	s->r = xrealloc(s->r, cap * sizeof(*s->r));
	s->cap = cap;
}

void seqset_add(struct seqset *s, uint32_t lo, uint32_t hi)
{
	if (lo > hi) {
		uint32_t t = lo;
		lo = hi;
		hi = t;
	}
	/* the common case: at or after the end */
	if (s->n == 0 || lo > s->r[s->n - 1].lo) {
		if (s->n > 0 && (uint64_t)lo <= (uint64_t)s->r[s->n - 1].hi + 1) {
			if (hi > s->r[s->n - 1].hi)
				s->r[s->n - 1].hi = hi;
			return;
		}
		seqset_reserve(s, s->n + 1);
		s->r[s->n].lo = lo;
		s->r[s->n].hi = hi;
		s->n++;
		return;
	}
	/* first range with r.hi + 1 >= lo: the one lo touches or the next */
	size_t a = 0, b = s->n;
	while (a < b) {
		size_t m = a + (b - a) / 2;
		if ((uint64_t)s->r[m].hi + 1 < lo)
			a = m + 1;
		else
			b = m;
	}
	/* ranges [a, e) overlap or touch [lo, hi] */
	size_t e = a;
	while (e < s->n && (uint64_t)s->r[e].lo <= (uint64_t)hi + 1)
		e++;
	if (e == a) {
		seqset_reserve(s, s->n + 1);
		memmove(&s->r[a + 1], &s->r[a], (s->n - a) * sizeof(*s->r));
		s->r[a].lo = lo;
		s->r[a].hi = hi;
		s->n++;
		return;
	}
	if (s->r[a].lo < lo)
		lo = s->r[a].lo;
	if (s->r[e - 1].hi > hi)
		hi = s->r[e - 1].hi;
	s->r[a].lo = lo;
	s->r[a].hi = hi;
	memmove(&s->r[a + 1], &s->r[e], (s->n - e) * sizeof(*s->r));
	s->n -= e - a - 1;
}

static int range_cmp(const void *x, const void *y)
{
	const struct seqrange *a = x, *b = y;
	return a->lo < b->lo ? -1 : a->lo > b->lo;
}

/* seq-number = nz-number / "*" */
static bool seq_number(const char **sp, uint32_t star, uint32_t *n_r)
{
	const char *s = *sp;
	if (*s == '*') {
		*n_r = star;
		*sp = s + 1;
		return true;
	}
	if (*s < '1' || *s > '9')
		return false;
	uint64_t n = 0;
	while (*s >= '0' && *s <= '9') {
		n = n * 10 + (uint64_t)(*s - '0');
		if (n > UINT32_MAX)
			return false;
		s++;
	}
	*n_r = (uint32_t)n;
	*sp = s;
	return true;
}

bool seqset_parse(const char *s, uint32_t star, struct seqset *out)
{
	struct seqset tmp = { 0 };
	memset(out, 0, sizeof(*out));
	if (!s || !*s)
		return false;
	for (;;) {
		uint32_t lo, hi;
		if (!seq_number(&s, star, &lo))
			goto bad;
		hi = lo;
		if (*s == ':') {
			s++;
			if (!seq_number(&s, star, &hi))
				goto bad;
		}
		if (lo > hi) {
			uint32_t t = lo;
			lo = hi;
			hi = t;
		}
		seqset_reserve(&tmp, tmp.n + 1);
		tmp.r[tmp.n].lo = lo;
		tmp.r[tmp.n].hi = hi;
		tmp.n++;
		if (*s == '\0')
			break;
		if (*s != ',')
			goto bad;
		s++;
	}
	/* normalise: sort by lo, then merge overlapping and adjacent */
	qsort(tmp.r, tmp.n, sizeof(*tmp.r), range_cmp);
	size_t w = 0;
	for (size_t i = 1; i < tmp.n; i++) {
		if ((uint64_t)tmp.r[i].lo <= (uint64_t)tmp.r[w].hi + 1) {
			if (tmp.r[i].hi > tmp.r[w].hi)
				tmp.r[w].hi = tmp.r[i].hi;
		} else {
			tmp.r[++w] = tmp.r[i];
		}
	}
	tmp.n = w + 1;
	*out = tmp;
	return true;
bad:
	seqset_free(&tmp);
	return false;
}

bool seqset_contains(const struct seqset *s, uint32_t n)
{
	size_t a = 0, b = s->n;
	while (a < b) {
		size_t m = a + (b - a) / 2;
		if (s->r[m].hi < n)
			a = m + 1;
		else if (s->r[m].lo > n)
			b = m;
		else
			return true;
	}
	return false;
}

void seqset_free(struct seqset *s)
{
	free(s->r);
	s->r = NULL;
	s->n = s->cap = 0;
}

void seqset_format(const struct seqset *s, struct buf *out)
{
	for (size_t i = 0; i < s->n; i++) {
		const char *sep = i ? "," : "";
		if (s->r[i].lo == s->r[i].hi)
			buf_printf(out, "%s%u", sep, s->r[i].lo);
		else
			buf_printf(out, "%s%u:%u", sep, s->r[i].lo, s->r[i].hi);
	}
}

uint64_t seqset_count(const struct seqset *s)
{
	uint64_t n = 0;
	for (size_t i = 0; i < s->n; i++)
		n += (uint64_t)s->r[i].hi - s->r[i].lo + 1;
	return n;
}

uint32_t seqset_max(const struct seqset *s)
{
	return s->n ? s->r[s->n - 1].hi : 0;
}

/* ------------------------------------------------------------------ dates */

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
 * well-known civil-date algorithm). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

bool imap_date_parse(const char *s, int64_t *days_r)
{
	static const char months[12][4] = { "jan", "feb", "mar", "apr", "may", "jun",
					    "jul", "aug", "sep", "oct", "nov", "dec" };
	static const unsigned mdays[12] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	unsigned d = 0, m, y = 0;
	int nd = 0;
	while (*s >= '0' && *s <= '9' && nd < 2) {
		d = d * 10 + (unsigned)(*s++ - '0');
		nd++;
	}
	if (nd == 0 || *s++ != '-')
		return false;
	for (m = 0; m < 12; m++)
		if (strncasecmp(s, months[m], 3) == 0)
			break;
	if (m == 12)
		return false;
	s += 3;
	if (*s++ != '-')
		return false;
	for (int i = 0; i < 4; i++) {
		if (*s < '0' || *s > '9')
			return false;
		y = y * 10 + (unsigned)(*s++ - '0');
	}
	if (*s != '\0' || d < 1 || d > mdays[m])
		return false;
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	if (m == 1 && d == 29 && !leap)
		return false;
	*days_r = days_from_civil(y, m + 1, d);
	return true;
}
