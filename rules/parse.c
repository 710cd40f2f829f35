/*
 * parse.c - rule files in SpamAssassin's configuration language
 * (Mail::SpamAssassin::Conf) into struct rule_def.
 *
 * Lines: a backslash at the end of a line joins the next one to it
 * (diagnostics name the first); '#' at the start of a line or after a
 * blank starts a comment, "\#" is a literal '#'; blanks around a line are
 * dropped.  A line is "directive args", the directive case-insensitive
 * with '-' read as '_' (as SpamAssassin does).
 *
 * Understood: header, body, rawbody, uri, full, meta, score, describe,
 * tflags, include, if/ifplugin/else/endif, require_version, and
 * "body NAME eval:check_bayes('LO', 'HI')" (the classifier's verdict).
 * Other eval: rules, plugins' directives and every other setting are
 * skipped with a warning (one per directive and file, counting its
 * lines).  Of SpamAssassin's plugins only Bayes is "loaded" (we have a
 * classifier): its ifplugin blocks are read, every other ifplugin block
 * is skipped with one warning.
 *
 * A rule without a score line gets SpamAssassin's default in
 * rule_def.score at the end of every rules_parse_file (1.0; 0 for "__"
 * sub-rules, 0.01 for "T_" rules in testing); has_score stays false.
 */
#include "rules/rules-private.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define LINE_MAX_LEN (64 * 1024)          /* a logical line, continuations joined */
#define FILE_MAX_LEN (64 * 1024 * 1024)
#define INCLUDE_DEPTH_MAX 10              /* includes inside includes */
#define COND_DEPTH_MAX 64                 /* nested if/ifplugin */
#define NAME_MAX_LEN 100                  /* SpamAssassin's limit for rule names */
#define FILE_ERRORS_MAX 100               /* then the rest of the file is not read */
#define FILE_WARNINGS_MAX 500             /* then warnings are only counted */
#define AGG_MAX 256                       /* directives whose warnings are merged */
#define EXPR_DEPTH_MAX 64
#define STR(x) #x
#define XSTR(x) STR(x)

/* What "if" sees: SpamAssassin 4.0.1 (its numeric version) on Debian 12's
 * perl, with network tests. */
#define SA_VERSION 4.000001
#define SA_VERSION_STR "4.000001"
#define SA_PERL_VERSION 5.036000
#define SA_LOCAL_TESTS_ONLY 0

/* "score NAME n0 n1 n2 n3" gives a score per SpamAssassin score set:
 * 0 no Bayes and no network tests, 1 network tests without Bayes,
 * 2 Bayes without network tests, 3 Bayes and network tests.  We run
 * network tests (DNSBLs): set 1 for a message without a Bayes verdict,
 * set 3 for one with (SpamAssassin switches per message when Bayes is
 * available); rule_def.score and .score_bayes. */
#define SCORE_SET 1
#define SCORE_SET_BAYES 3

/* The one SpamAssassin plugin whose ifplugin blocks are read. */
#define BAYES_PLUGIN "Mail::SpamAssassin::Plugin::Bayes"

/* Letters allowed after a pattern's closing delimiter: i m s x n are
 * PCRE2 options; g o p mean nothing for a match and are accepted. */
#define PATTERN_FLAGS "imsxngop"

/* Names can(...) and has(...) are true for: the SpamAssassin 4.0
 * features our engine has (free meta dependencies, bug 6558; a modern
 * regex dialect); not feature_capture_rules (no %{...} captures). */
static const char *const sa_features[] = { "Mail::SpamAssassin::Conf::feature_bug6558_free",
					   "Mail::SpamAssassin::Conf::perl_min_version_5010000", NULL };

struct cond {
	const char *kind;        /* "if", "ifplugin" */
	unsigned line;
	bool known;              /* evaluated (not in a skipped part, parseable) */
	bool val, in_else;
	size_t diag;             /* the ifplugin warning to complete, or SIZE_MAX */
	unsigned skipped;        /* lines skipped because of this block */
};

struct parser {
	struct rule_defs *defs;
	struct rules_report *rep;
	size_t *slots, cap;      /* name index: def index + 1, 0 = empty */
	struct {
		dev_t dev;
		ino_t ino;
	} stack[INCLUDE_DEPTH_MAX + 1];
	int depth;
};

struct pfile {
	struct parser *p;
	const char *path;
	unsigned line;           /* first line of the current logical line */
	struct cond conds[COND_DEPTH_MAX];
	size_t nconds;
	struct {                 /* warnings merged per directive */
		char *key;
		size_t diag;
		unsigned count;
	} agg[AGG_MAX];
	size_t nagg;
	unsigned errors, warnings;
	bool stop;               /* the rest of the file is not read */
};

static bool is_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }
static bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_word(char c) { return is_alpha(c) || is_digit(c) || c == '_'; }
static bool header_char(char c) { return is_word(c) || c == '.' || c == '-'; }
static char *skip_space(char *s)
{
	while (is_space(*s))
		s++;
	return s;
}
/* w (n bytes) is one of the NULL-terminated list. */
static bool in_list(const char *const *list, const char *w, size_t n)
{
	for (; *list; list++)
		if (strlen(*list) == n && strncmp(*list, w, n) == 0)
			return true;
	return false;
}

/* ------------------------------------------------------------ reports */

/* Always false, for "return diag(...)". */
static bool diag(struct pfile *f, unsigned line, bool error, const char *fmt, ...) PRINTFLIKE(4, 5);
static bool diag(struct pfile *f, unsigned line, bool error, const char *fmt, ...)
{
	if (error ? ++f->errors > FILE_ERRORS_MAX : ++f->warnings > FILE_WARNINGS_MAX)
		return false;
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	rules_diag_add(f->p->rep, f->path, line, error, "%s", msg);
	if (error && f->errors == FILE_ERRORS_MAX) {
		rules_diag_add(f->p->rep, f->path, line, true, "too many errors: rest of file not read");
		f->stop = true;
	}
	return false;
}
#define ERR(...) do { diag(f, f->line, true, __VA_ARGS__); return; } while (0)
#define WARN(...) do { diag(f, f->line, false, __VA_ARGS__); return; } while (0)

/* A warning whose message is completed later: its index, or SIZE_MAX. */
static size_t diag_open(struct pfile *f, const char *msg)
{
	size_t before = f->p->rep->n;
	diag(f, f->line, false, "%s", msg);
	return f->p->rep->n > before ? f->p->rep->n - 1 : SIZE_MAX;
}

static void diag_suffix(struct pfile *f, size_t d, const char *fmt, unsigned n)
{
	if (d >= f->p->rep->n)
		return;
	char sfx[64];
	snprintf(sfx, sizeof(sfx), fmt, n);
	char *msg = xasprintf("%s%s", f->p->rep->v[d].msg, sfx);
	free(f->p->rep->v[d].msg);
	f->p->rep->v[d].msg = msg;
}

/* A skipped directive: the first of a file is reported, the others are
 * counted into it. */
static void warn_skipped(struct pfile *f, const char *key, const char *msg)
{
	for (size_t i = 0; i < f->nagg; i++)
		if (strcmp(f->agg[i].key, key) == 0) {
			f->agg[i].count++;
			return;
		}
	size_t d = diag_open(f, msg);
	if (f->nagg < AGG_MAX) {
		f->agg[f->nagg].key = xstrdup(key);
		f->agg[f->nagg].diag = d;
		f->agg[f->nagg++].count = 1;
	}
}

/* -------------------------------------------------------- definitions */

static size_t name_slot(const struct parser *p, const char *s)
{
	uint64_t h = 14695981039346656037ULL; /* FNV-1a */
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return (size_t)h & (p->cap - 1);
}

static void index_build(struct parser *p)
{
	for (p->cap = 64; p->cap < 2 * (p->defs->n + 1);)
		p->cap *= 2;
	free(p->slots);
	p->slots = xcalloc(p->cap, sizeof(*p->slots));
	for (size_t i = 0; i < p->defs->n; i++) {
		size_t s = name_slot(p, p->defs->v[i].name);
		while (p->slots[s])
			s = (s + 1) & (p->cap - 1);
		p->slots[s] = i + 1;
	}
}

/* The def of that name, created (not defined, located at this line) when
 * new.  defs->v grows in powers of two: its capacity follows from n. */
static struct rule_def *def_get(struct pfile *f, const char *name)
{
	struct parser *p = f->p;
	struct rule_defs *ds = p->defs;
	size_t s = name_slot(p, name);
	for (; p->slots[s]; s = (s + 1) & (p->cap - 1))
		if (strcmp(ds->v[p->slots[s] - 1].name, name) == 0)
			return &ds->v[p->slots[s] - 1];
	if (ds->n == 0 || (ds->n >= 16 && (ds->n & (ds->n - 1)) == 0))
		ds->v = xrealloc(ds->v, (ds->n ? ds->n * 2 : 16) * sizeof(*ds->v));
	struct rule_def *d = &ds->v[ds->n++];
	*d = (struct rule_def){ .name = xstrdup(name), .file = xstrdup(f->path), .line = f->line };
	p->slots[s] = ds->n;
	if (2 * ds->n > p->cap)
		index_build(p);
	return d;
}

static void rule_fields_free(struct rule_def *d)
{
	free(d->header);
	free(d->if_unset);
	free(d->pattern);
	free(d->flags);
	free(d->expr);
	free(d->file);
}

/* t (type and rule fields, moved) becomes the definition of name: a later
 * definition replaces the rule, keeping score, describe and tflags. */
static void define(struct pfile *f, const char *name, struct rule_def *t)
{
	struct rule_def *d = def_get(f, name);
	rule_fields_free(d);
	t->name = d->name;
	t->has_score = d->has_score;
	t->score = d->score;
	t->score_bayes = d->score_bayes;
	t->describe = d->describe;
	t->tflags = d->tflags;
	t->maxhits = d->maxhits;
	t->file = xstrdup(f->path);
	t->line = f->line;
	t->defined = true;
	*d = *t;
}

void rule_defs_free(struct rule_defs *defs)
{
	for (size_t i = 0; i < defs->n; i++) {
		rule_fields_free(&defs->v[i]);
		free(defs->v[i].name);
		free(defs->v[i].describe);
	}
	free(defs->v);
	memset(defs, 0, sizeof(*defs));
}

/* ------------------------------------------------------------- pieces */

/* "NAME rest": NUL-terminates the name, *rest after its blanks.  NULL
 * (reported) when the name is missing or not SpamAssassin's
 * [A-Za-z_][A-Za-z0-9_]* of at most 100. */
static char *take_name(struct pfile *f, const char *key, char *v, char **rest)
{
	char *e = v;
	while (*e && !is_space(*e))
		e++;
	if (*e)
		*e++ = '\0';
	*rest = skip_space(e);
	bool ok = (is_alpha(*v) || *v == '_') && strlen(v) <= NAME_MAX_LEN;
	for (char *c = v; *c && ok; c++)
		ok = is_word(*c);
	if (!*v)
		diag(f, f->line, true, "%s: missing rule name", key);
	else if (!ok)
		diag(f, f->line, true, "%s: invalid rule name '%s'", key, log_str(v));
	return ok ? v : NULL;
}

/* -?digits(.digits)?: SpamAssassin's numbers. */
static bool parse_num(const char *s, size_t len, double *out)
{
	size_t i = s[0] == '-', d = i;
	while (i < len && is_digit(s[i]))
		i++;
	bool ok = i > d;
	if (i < len && s[i] == '.')
		for (ok = ok && ++i < len && is_digit(s[i]); i < len && is_digit(s[i]);)
			i++;
	char tmp[72];
	if (!ok || i != len || len >= sizeof(tmp))
		return false;
	memcpy(tmp, s, len);
	tmp[len] = '\0';
	*out = strtod(tmp, NULL);
	return true;
}

/* A Perl match at s: /re/flags, m<punct>re<punct>flags or qr...; bracket
 * delimiters close with their partner and nest; a backslash escapes the
 * next character (both are kept).  *end: after the flags and blanks. */
static bool parse_pattern(struct pfile *f, const char *key, const char *name, char *s,
			  struct rule_def *t, char **end)
{
	char *p = s + (s[0] == 'm' ? 1 : s[0] == 'q' && s[1] == 'r' ? 2 : 0);
	char open = *p, close = open;
	if (p == s && open != '/')
		return diag(f, f->line, true, "%s %s: expected a pattern (/.../ or m{...})", key, name);
	if (!open || is_word(open) || is_space(open) || open == '\\' || (unsigned char)open >= 0x80)
		return diag(f, f->line, true, "%s %s: invalid pattern delimiter", key, name);
	static const char brackets[] = "{}()[]<>";
	const char *b = strchr(brackets, open);
	bool nest = b && (b - brackets) % 2 == 0;
	close = nest ? b[1] : close;
	char *re = ++p;
	for (int depth = 1;; p++) {
		if (!*p)
			return diag(f, f->line, true, "%s %s: unterminated pattern", key, name);
		if (*p == '\\' && p[1])
			p++;
		else if (*p == close && --depth == 0)
			break;
		else if (nest && *p == open)
			depth++;
	}
	if (p == re)
		return diag(f, f->line, true, "%s %s: empty pattern", key, name);
	char *fl = p + 1, *q = fl;
	for (; is_alpha(*q); q++)
		if (!strchr(PATTERN_FLAGS, *q))
			return diag(f, f->line, true, "%s %s: unknown flag '%c'", key, name, *q);
	t->pattern = xstrndup(re, (size_t)(p - re));
	t->flags = xstrndup(fl, (size_t)(q - fl));
	*end = skip_space(q);
	return true;
}

/* --------------------------------------------------------- directives */

static void dir_header(struct pfile *f, const char *name, char *v)
{
	struct rule_def t = { .type = RT_HEADER };
	char *p = v, *end;
	if (strncmp(v, "exists:", 7) == 0) {
		char *h = v + 7;
		size_t n = strlen(h);
		if (n && h[n - 1] == ':')
			h[--n] = '\0';
		for (p = h; header_char(*p);)
			p++;
		if (!n || *p)
			ERR("header %s: invalid header name '%s' after exists:", name, log_str(h));
		t.exists = true;
		t.header = xstrdup(h);
		define(f, name, &t);
		return;
	}
	while (header_char(*p))
		p++;
	if (p == v)
		ERR("header %s: missing header name", name);
	size_t hlen = (size_t)(p - v);
	while (*p == ':') { /* Name:raw, Name:addr, Name:name, combined; a lone ':' */
		char *m = ++p;
		while (is_alpha(*p))
			p++;
		size_t n = (size_t)(p - m);
		if (n == 3 && strncasecmp(m, "raw", 3) == 0)
			t.mod = t.mod == HM_NONE ? HM_RAW : t.mod; /* :addr:raw is :addr */
		else if (n == 4 && strncasecmp(m, "addr", 4) == 0)
			t.mod = HM_ADDR;
		else if (n == 4 && strncasecmp(m, "name", 4) == 0)
			t.mod = HM_NAME;
		else if (n && in_list((const char *const[]){ "host", "domain", "ip", "revip", "first",
							       "last", NULL }, m, n))
			WARN("header %s: header modifier ':%.*s' is not supported: rule skipped", name,
			     (int)n, m);
		else if (n || is_word(*p) || *p == ':')
			ERR("header %s: unknown header modifier ':%s'", name, log_strn(m, n ? n : 1));
	}
	p = skip_space(p);
	if ((p[0] != '=' && p[0] != '!') || p[1] != '~')
		ERR("header %s: expected =~ or !~ after the header name", name);
	t.negate = p[0] == '!';
	p = skip_space(p + 2);
	if (!*p)
		ERR("header %s: missing pattern", name);
	if (!parse_pattern(f, "header", name, p, &t, &end))
		return;
	t.header = xstrndup(v, hlen);
	if (strncmp(end, "[if-unset:", 10) == 0) {
		char *u = skip_space(end + 10);
		size_t n = strlen(u);
		if (n && u[n - 1] == ']') {
			while (n > 1 && is_space(u[n - 2]))
				n--;
			t.if_unset = xstrndup(u, n - 1);
		} else {
			diag(f, f->line, true, "header %s: [if-unset: without its closing ]", name);
		}
	} else if (*end) {
		diag(f, f->line, true, "header %s: unexpected text after the pattern: '%s'", name,
		     log_str(end));
	}
	if (*end && !t.if_unset)
		rule_fields_free(&t);
	else
		define(f, name, &t);
}

static void dir_regex(struct pfile *f, const char *key, enum rule_type type, const char *name,
		      char *v)
{
	struct rule_def t = { .type = type };
	char *end;
	if (!*v)
		ERR("%s %s: missing pattern", key, name);
	if (!parse_pattern(f, key, name, v, &t, &end))
		return;
	if (*end) {
		rule_fields_free(&t);
		ERR("%s %s: unexpected text after the pattern: '%s'", key, name, log_str(end));
	}
	define(f, name, &t);
}

static void dir_score(struct pfile *f, const char *name, char *v)
{
	double s[4];
	int n = 0;
	bool relative = false;
	for (char *e; *v; v = skip_space(e), n++) {
		for (e = v; *e && !is_space(*e);)
			e++;
		size_t len = (size_t)(e - v);
		bool paren = len >= 3 && v[0] == '(' && v[len - 1] == ')';
		relative = relative || paren;
		if (n == 4)
			ERR("score %s: expected 1 or 4 scores", name);
		if (!parse_num(v + paren, len - 2 * paren, &s[n]))
			ERR("score %s: invalid score '%s'", name, log_strn(v, len));
	}
	if (n != 1 && n != 4)
		ERR("score %s: expected 1 or 4 scores", name);
	struct rule_def *d = def_get(f, name);
	double val = s[n == 4 ? SCORE_SET : 0], bval = s[n == 4 ? SCORE_SET_BAYES : 0];
	/* "(n)": relative to the score set before (SpamAssassin) */
	d->score = relative && d->has_score ? d->score + val : val;
	d->score_bayes = relative && d->has_score ? d->score_bayes + bval : bval;
	d->has_score = true;
}

static void dir_tflags(struct pfile *f, const char *name, char *v)
{
	static const char *const known[] = { "multiple", "nice", "noautolearn", "net", "learn",
					     "userconf", NULL }; /* RTF_* bits in this order */
	unsigned bits = 0, maxhits = 0;
	char *save = NULL;
	for (char *t = strtok_r(v, " \t\r\n\f\v", &save); t; t = strtok_r(NULL, " \t\r\n\f\v", &save)) {
		if (strncmp(t, "maxhits=", 8) == 0) {
			char *e;
			unsigned long m = strtoul(t + 8, &e, 10);
			if (!is_digit(t[8]) || *e || m == 0 || m > 1000000)
				ERR("tflags %s: invalid maxhits '%s'", name, log_str(t + 8));
			maxhits = (unsigned)m;
			bits |= RTF_MULTIPLE;
		}
		for (size_t i = 0; known[i]; i++) /* others (publish, autolearn_force...): nothing */
			bits |= strcmp(t, known[i]) == 0 ? 1u << i : 0;
	}
	struct rule_def *d = def_get(f, name);
	d->tflags = bits; /* a later tflags line replaces (SpamAssassin) */
	d->maxhits = maxhits;
}

/* "eval:check_bayes(...)" (blanks allowed around the name). */
static bool is_check_bayes(const char *v)
{
	if (strncmp(v, "eval:", 5) != 0)
		return false;
	v = skip_space((char *)v + 5);
	if (strncmp(v, "check_bayes", 11) != 0)
		return false;
	v = skip_space((char *)v + 11);
	return *v == '(';
}

/* One argument of check_bayes: a number, bare or in ' or " quotes, or
 * 'undef' (no upper bound, as SpamAssassin's check_bayes reads it).
 * *p after it and its blanks. */
static bool bayes_arg(char **p, double *out, bool *undef)
{
	char *s = skip_space(*p), q = 0;
	if (*s == '\'' || *s == '"')
		q = *s++;
	char *e = s;
	while (*e && *e != q && *e != ',' && *e != ')' && !is_space(*e))
		e++;
	*undef = (size_t)(e - s) == 5 && strncmp(s, "undef", 5) == 0;
	if (!*undef && !parse_num(s, (size_t)(e - s), out))
		return false;
	if (q && *e++ != q)
		return false;
	*p = skip_space(e);
	return true;
}

/* body NAME eval:check_bayes('LO', 'HI'): hits when the message's Bayes
 * probability p is in [LO, HI), or [LO, HI] when HI >= 1. */
static void dir_check_bayes(struct pfile *f, const char *name, char *v)
{
	char *p = strchr(v, '(') + 1;
	double lo = 0, hi = 0;
	bool lo_undef = false, hi_undef = false;
	bool ok = bayes_arg(&p, &lo, &lo_undef) && !lo_undef && *p++ == ',' &&
		  bayes_arg(&p, &hi, &hi_undef) && *p++ == ')';
	if (!ok || *skip_space(p))
		ERR("body %s: check_bayes: expected two numbers: eval:check_bayes('LOW', 'HIGH')", name);
	if (hi_undef)
		hi = 1.0;
	if (lo < 0 || lo > 1 || hi < lo)
		ERR("body %s: check_bayes: the range %g to %g is not within 0 to 1", name, lo, hi);
	struct rule_def t = { .type = RT_BAYES, .bayes_lo = lo, .bayes_hi = hi };
	define(f, name, &t);
}

/* ------------------------------------------------------ if expressions */

struct expr {
	const char *s;
	int depth;
	bool bad;
};

static bool ex_eat(struct expr *e, const char *tok)
{
	while (is_space(*e->s))
		e->s++;
	size_t n = strlen(tok);
	if (strncmp(e->s, tok, n) != 0)
		return false;
	e->s += n;
	return true;
}

static double ex_bad(struct expr *e)
{
	e->bad = true;
	return 0;
}

static double ex_binary(struct expr *e, int level);

/* A number, version, perl_version, local_tests_only, plugin(Name),
 * can(Name), has(Name) or ( expression ). */
static double ex_primary(struct expr *e)
{
	double v = 0;
	if (ex_eat(e, "(")) {
		v = ex_binary(e, 0);
		return ex_eat(e, ")") ? v : ex_bad(e);
	}
	const char *s = e->s;
	size_t n = 0;
	if (is_digit(*s)) {
		while (is_digit(s[n]) || s[n] == '.')
			n++;
		e->s += n;
		return parse_num(s, n, &v) ? v : ex_bad(e);
	}
	while (is_word(s[n]))
		n++;
	e->s += n;
#define IS(w) (n == sizeof(w) - 1 && strncmp(s, w, n) == 0)
	if (IS("version") || IS("perl_version") || IS("local_tests_only"))
		return IS("version") ? SA_VERSION : IS("perl_version") ? SA_PERL_VERSION
									 : SA_LOCAL_TESTS_ONLY;
	bool plugin = IS("plugin");
	if ((!plugin && !IS("can") && !IS("has")) || !ex_eat(e, "("))
		return ex_bad(e);
#undef IS
	while (is_space(*e->s))
		e->s++;
	const char *a = e->s;
	while (is_word(*e->s) || *e->s == ':')
		e->s++;
	size_t alen = (size_t)(e->s - a);
	if (!alen || !ex_eat(e, ")"))
		return ex_bad(e);
	if (plugin) /* we "load" Bayes only */
		return alen == strlen(BAYES_PLUGIN) && strncmp(a, BAYES_PLUGIN, alen) == 0;
	return in_list(sa_features, a, alen);
}

/* Perl's precedence: || && (== !=) (<= >= < >) (+ -) (* /), then unary ! -. */
static double ex_binary(struct expr *e, int level)
{
	static const char *const ops[][4] = { { "||" }, { "&&" }, { "==", "!=" },
					      { "<=", ">=", "<", ">" }, { "+", "-" }, { "*", "/" } };
	if (level == (int)ARRAY_SIZE(ops)) {
		double v;
		if (++e->depth > EXPR_DEPTH_MAX)
			return ex_bad(e);
		if (ex_eat(e, "!")) /* "!=" here fails at the '=' */
			v = !ex_binary(e, level);
		else if (ex_eat(e, "-"))
			v = -ex_binary(e, level);
		else
			v = ex_primary(e);
		e->depth--;
		return v;
	}
	double v = ex_binary(e, level + 1);
	for (;;) {
		int op = -1;
		for (int i = 0; i < 4 && ops[level][i] && op < 0; i++)
			op = ex_eat(e, ops[level][i]) ? i : -1;
		if (op < 0 || e->bad)
			return v;
		double w = ex_binary(e, level + 1);
		switch (level * 4 + op) {
		case 0: v = v != 0 || w != 0; break;
		case 4: v = v != 0 && w != 0; break;
		case 8: v = v == w; break;
		case 9: v = v != w; break;
		case 12: v = v <= w; break;
		case 13: v = v >= w; break;
		case 14: v = v < w; break;
		case 15: v = v > w; break;
		case 16: v = v + w; break;
		case 17: v = v - w; break;
		case 20: v = v * w; break;
		default: v = w != 0 ? v / w : ex_bad(e);
		}
	}
}

/* --------------------------------------------------------- conditions */

/* The outermost block whose untaken part we are in, or -1. */
static int cond_owner(const struct pfile *f)
{
	for (size_t i = 0; i < f->nconds; i++)
		if (!f->conds[i].known || f->conds[i].val == f->conds[i].in_else)
			return (int)i;
	return -1;
}

/* A skipped ifplugin part ended: complete its warning. */
static void cond_close_part(struct pfile *f, struct cond *c)
{
	diag_suffix(f, c->diag, ": %u lines skipped", c->skipped);
	c->diag = SIZE_MAX;
}

static void cond_push(struct pfile *f, const char *kind, const char *v, bool skipping)
{
	if (f->nconds == COND_DEPTH_MAX) {
		f->stop = true;
		ERR("%s: nested deeper than %d: rest of file not read", kind, COND_DEPTH_MAX);
	}
	struct cond *c = &f->conds[f->nconds++];
	*c = (struct cond){ .kind = kind, .line = f->line, .diag = SIZE_MAX };
	if (!*v)
		ERR("%s: missing condition", kind); /* neither part is read */
	if (skipping)
		return;
	if (kind[2] && strcmp(v, BAYES_PLUGIN) == 0) { /* the classifier */
		c->known = true;
		c->val = true;
		return;
	}
	if (kind[2]) { /* ifplugin: we load no other SpamAssassin plugin */
		char msg[512];
		snprintf(msg, sizeof(msg), "plugin %s not available", log_str(v));
		c->known = true;
		c->diag = diag_open(f, msg);
		return;
	}
	struct expr e = { v, 0, false };
	double r = ex_binary(&e, 0);
	if (e.bad || *skip_space((char *)e.s)) /* neither the if part nor the else part is read */
		WARN("if: cannot evaluate '%s': block skipped", log_str(v));
	c->known = true;
	c->val = r != 0;
}

/* -------------------------------------------------------------- lines */

static int parse_file(struct parser *p, const char *path, struct pfile *parent);

static void handle_line(struct pfile *f, char *s)
{
	char *key = s, *v = s, *name, *rest;
	while (*v && !is_space(*v))
		v++;
	if (*v)
		*v++ = '\0';
	v = skip_space(v);
	bool word = strlen(key) <= 64;
	for (char *k = key; *k; k++) {
		*k = *k >= 'A' && *k <= 'Z' ? (char)(*k - 'A' + 'a') : *k == '-' ? '_' : *k;
		word = word && is_word(*k);
	}
	int owner = cond_owner(f);
	if (strcmp(key, "endif") == 0 || strcmp(key, "else") == 0) {
		if (*v)
			ERR("%s: must stand alone", key);
		if (!f->nconds)
			ERR("%s without if", key);
		struct cond *c = &f->conds[f->nconds - 1];
		if (owner >= 0 && (size_t)owner < f->nconds - 1)
			f->conds[owner].skipped++;
		if (key[1] == 'l' && c->in_else)
			ERR("else: a second else for the %s of line %u", c->kind, c->line);
		cond_close_part(f, c);
		if (key[1] == 'n')
			f->nconds--;
		c->in_else = true;
		return;
	}
	if (owner >= 0)
		f->conds[owner].skipped++;
	if (strcmp(key, "if") == 0 || strcmp(key, "ifplugin") == 0)
		cond_push(f, key[2] ? "ifplugin" : "if", v, owner >= 0);
	if (owner >= 0 || strcmp(key, "if") == 0 || strcmp(key, "ifplugin") == 0)
		return;

	static const char *const rules[] = { "header", "body", "rawbody", "uri", "full", "meta" };
	for (enum rule_type type = RT_HEADER; type <= RT_META; type++) {
		if (strcmp(key, rules[type]) != 0)
			continue;
		if (!(name = take_name(f, key, v, &rest)))
			return;
		if (type == RT_BODY && is_check_bayes(rest)) {
			dir_check_bayes(f, name, rest);
			return;
		}
		if (strncmp(rest, "eval:", 5) == 0 || strncmp(rest, "rbleval:", 8) == 0)
			WARN("%s %s: eval: rules are not supported: rule skipped", key, name);
		if (type == RT_HEADER) {
			dir_header(f, name, rest);
		} else if (type != RT_META) {
			dir_regex(f, key, type, name, rest);
		} else if (!*rest) {
			ERR("meta %s: missing expression", name);
		} else {
			struct rule_def t = { .type = RT_META, .expr = xstrdup(rest) };
			define(f, name, &t);
		}
		return;
	}
	if (strcmp(key, "score") == 0 || strcmp(key, "tflags") == 0 || strcmp(key, "describe") == 0) {
		if (!(name = take_name(f, key, v, &rest)))
			return;
		if (key[0] == 's') {
			dir_score(f, name, rest);
		} else if (key[0] == 't') {
			dir_tflags(f, name, rest);
		} else if (!*rest) {
			ERR("describe %s: missing text", name);
		} else {
			struct rule_def *d = def_get(f, name);
			free(d->describe);
			d->describe = xstrdup(rest);
		}
	} else if (strcmp(key, "include") == 0) {
		if (!*v)
			ERR("include: missing file name");
		const char *slash = strrchr(f->path, '/');
		char *path = v[0] == '/' || !slash ? xstrdup(v)
			   : xasprintf("%.*s/%s", (int)(slash - f->path), f->path, v);
		parse_file(f->p, path, f);
		free(path);
	} else if (strcmp(key, "require_version") == 0) {
		if (!*v)
			ERR("require_version: missing version");
		if (strcmp(v, SA_VERSION_STR) != 0 && strcmp(v, "@@VERSION@@") != 0) {
			f->stop = true; /* as SpamAssassin does */
			WARN("require_version %s: this is " SA_VERSION_STR ": rest of file skipped",
			     log_str(v));
		}
	} else if (strcmp(key, "lang") == 0) {
		warn_skipped(f, key, "lang: localized lines are not used: skipped");
	} else if (word) {
		char msg[128];
		snprintf(msg, sizeof(msg), "directive '%s' is not supported: skipped", key);
		warn_skipped(f, key, msg);
	} else {
		ERR("invalid directive '%s'", log_str(key));
	}
}

/* Drop the comment, unescape "\#", trim. */
static char *clean_line(char *s)
{
	for (size_t i = 0; s[i]; i++)
		if (s[i] == '#' && (i == 0 || is_space(s[i - 1]))) {
			s[i] = '\0';
			break;
		}
	char *w = s;
	for (char *r = s; *r; r++) {
		r += r[0] == '\\' && r[1] == '#';
		*w++ = *r;
	}
	while (w > s && is_space(w[-1]))
		w--;
	*w = '\0';
	return skip_space(s);
}

static void parse_text(struct pfile *f, const char *data, size_t len)
{
	char *buf = xmalloc(LINE_MAX_LEN + 1);
	size_t pos = 0;
	unsigned lineno = 0;
	while (pos < len && !f->stop) {
		size_t n = 0;
		bool toolong = false, nul = false, cont;
		f->line = lineno + 1;
		do { /* one logical line: physical lines ending in '\' joined */
			const char *s = data + pos, *e = memchr(s, '\n', len - pos);
			size_t plen = e ? (size_t)(e - s) : len - pos, t = plen;
			pos += plen + (e != NULL);
			lineno++;
			while (t && is_space(s[t - 1]))
				t--;
			if ((cont = t && s[t - 1] == '\\'))
				plen = t - 1;
			nul = nul || memchr(s, '\0', plen);
			toolong = toolong || n + plen > LINE_MAX_LEN;
			if (!toolong)
				memcpy(buf + n, s, plen), n += plen;
		} while (cont && pos < len);
		buf[n] = '\0';
		char *s = clean_line(buf);
		if (toolong)
			diag(f, f->line, true, "line longer than %d bytes", LINE_MAX_LEN);
		else if (nul)
			diag(f, f->line, true, "NUL byte in line");
		else if (*s)
			handle_line(f, s);
	}
	free(buf);
}

/* Read path (the top file, or included from parent's current line). */
static char *read_file(struct parser *p, const char *path, size_t *len, const char **err)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	char *data = NULL;
	*len = 0;
	if (fd < 0 || fstat(fd, &st) < 0)
		*err = strerror(errno);
	else if (!S_ISREG(st.st_mode))
		*err = "not a regular file";
	else if (st.st_size > FILE_MAX_LEN)
		*err = "file too large";
	for (int i = 0; !*err && i < p->depth; i++)
		if (p->stack[i].dev == st.st_dev && p->stack[i].ino == st.st_ino)
			*err = "include loop";
	if (!*err && p->depth > INCLUDE_DEPTH_MAX)
		*err = "includes nested too deep (limit " XSTR(INCLUDE_DEPTH_MAX) ")";
	if (!*err) {
		size_t size = (size_t)st.st_size;
		data = xmalloc(size + 1);
		for (ssize_t r = 1; r > 0 && *len < size;) /* up to the size fstat saw */
			if ((r = read(fd, data + *len, size - *len)) > 0)
				*len += (size_t)r;
			else if (r < 0 && errno == EINTR)
				r = 1;
			else if (r < 0)
				*err = strerror(errno);
		p->stack[p->depth].dev = st.st_dev;
		p->stack[p->depth].ino = st.st_ino;
	}
	if (fd >= 0)
		close(fd);
	if (*err) {
		free(data);
		data = NULL;
	}
	return data;
}

static int parse_file(struct parser *p, const char *path, struct pfile *parent)
{
	const char *err = NULL;
	size_t len;
	char *data = read_file(p, path, &len, &err);
	if (!data) {
		rules_diag_add(p->rep, parent ? parent->path : path, parent ? parent->line : 0, true,
			       "%s%s: %s", parent ? "include " : "", log_str(path), err);
		if (parent)
			parent->errors++;
		return -1;
	}
	p->depth++;
	struct pfile *f = xcalloc(1, sizeof(*f));
	f->p = p;
	f->path = path;
	parse_text(f, data, len);
	for (bool stopped = f->stop; f->nconds; f->nconds--) {
		struct cond *c = &f->conds[f->nconds - 1];
		if (!stopped)
			diag(f, c->line, true, "%s without endif", c->kind);
		cond_close_part(f, c);
	}
	for (size_t i = 0; i < f->nagg; i++) {
		if (f->agg[i].count > 1)
			diag_suffix(f, f->agg[i].diag, " (%u lines in this file)", f->agg[i].count);
		free(f->agg[i].key);
	}
	if (f->warnings > FILE_WARNINGS_MAX)
		rules_diag_add(p->rep, path, 0, false, "%u more warnings not shown",
			       f->warnings - FILE_WARNINGS_MAX);
	int r = f->errors ? -1 : 0;
	if (parent && f->errors)
		parent->errors++;
	free(f);
	free(data);
	p->depth--;
	return r;
}

int rules_parse_file(const char *path, struct rule_defs *defs, struct rules_report *rep)
{
	struct parser p = { .defs = defs, .rep = rep };
	size_t errors = rep->errors;
	index_build(&p);
	parse_file(&p, path, NULL);
	for (size_t i = 0; i < defs->n; i++) /* SpamAssassin's default scores */
		if (!defs->v[i].has_score)
			defs->v[i].score = defs->v[i].score_bayes =
				strncmp(defs->v[i].name, "__", 2) == 0   ? 0
				: strncmp(defs->v[i].name, "T_", 2) == 0 ? 0.01
									 : 1.0;
	free(p.slots);
	return rep->errors > errors ? -1 : 0;
}

/* SpamAssassin's 23_bayes.cf and the set-3 scores of its 50_scores.cf. */
static const struct {
	const char *name;
	double lo, hi, score;
	const char *describe;
} bayes_bands[] = {
	{ "BAYES_00", 0.00, 0.01, -1.9, "Bayes spam probability is 0 to 1%" },
	{ "BAYES_05", 0.01, 0.05, -0.5, "Bayes spam probability is 1 to 5%" },
	{ "BAYES_20", 0.05, 0.20, -0.001, "Bayes spam probability is 5 to 20%" },
	{ "BAYES_40", 0.20, 0.40, -0.001, "Bayes spam probability is 20 to 40%" },
	{ "BAYES_50", 0.40, 0.60, 0.8, "Bayes spam probability is 40 to 60%" },
	{ "BAYES_60", 0.60, 0.80, 1.5, "Bayes spam probability is 60 to 80%" },
	{ "BAYES_80", 0.80, 0.95, 2.0, "Bayes spam probability is 80 to 95%" },
	{ "BAYES_95", 0.95, 0.99, 3.0, "Bayes spam probability is 95 to 99%" },
	{ "BAYES_99", 0.99, 1.00, 3.5, "Bayes spam probability is 99 to 100%" },
	{ "BAYES_999", 0.999, 1.00, 0.2, "Bayes spam probability is 99.9 to 100%" },
};

void rules_bayes_defaults(struct rule_defs *defs)
{
	for (size_t i = 0; i < defs->n; i++)
		if (defs->v[i].defined && defs->v[i].type == RT_BAYES)
			return;
	for (size_t b = 0; b < ARRAY_SIZE(bayes_bands); b++) {
		struct rule_def *d = NULL;
		for (size_t i = 0; i < defs->n && d == NULL; i++)
			if (strcmp(defs->v[i].name, bayes_bands[b].name) == 0)
				d = &defs->v[i];
		if (d != NULL && d->defined)
			continue; /* a rule of another kind by that name: it stays */
		if (d == NULL) {
			/* the growth def_get uses (capacity a power of two from 16) */
			if (defs->n == 0 || (defs->n >= 16 && (defs->n & (defs->n - 1)) == 0))
				defs->v = xrealloc(defs->v, (defs->n ? defs->n * 2 : 16) * sizeof(*defs->v));
			d = &defs->v[defs->n++];
			*d = (struct rule_def){ .name = xstrdup(bayes_bands[b].name),
						.file = xstrdup("(built-in)") };
		}
		/* score, describe and tflags lines of the rule files apply */
		if (!d->has_score) {
			d->has_score = true;
			d->score = d->score_bayes = bayes_bands[b].score;
		}
		if (d->describe == NULL)
			d->describe = xstrdup(bayes_bands[b].describe);
		if (d->tflags == 0)
			d->tflags = (bayes_bands[b].score < 0 ? RTF_NICE : 0) | RTF_LEARN;
		d->type = RT_BAYES;
		d->bayes_lo = bayes_bands[b].lo;
		d->bayes_hi = bayes_bands[b].hi;
		d->defined = true;
	}
}
