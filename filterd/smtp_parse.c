/*
 * smtp_parse.c - SMTP command lines, paths and parameters (RFC 5321
 * section 4.1, RFC 1869 parameters, RFC 6531 UTF-8 addresses, RFC 3030 BDAT).
 */
#include "filterd/filterd.h"

#include <string.h>

static const struct {
	const char *name;
	enum smtp_cmd cmd;
} commands[] = {
	{ "EHLO", CMD_EHLO }, { "HELO", CMD_HELO }, { "MAIL", CMD_MAIL },
	{ "RCPT", CMD_RCPT }, { "DATA", CMD_DATA }, { "BDAT", CMD_BDAT },
	{ "RSET", CMD_RSET }, { "NOOP", CMD_NOOP }, { "QUIT", CMD_QUIT },
	{ "VRFY", CMD_VRFY }, { "EXPN", CMD_EXPN }, { "HELP", CMD_HELP },
	{ "STARTTLS", CMD_STARTTLS }, { "AUTH", CMD_AUTH }, { "ETRN", CMD_ETRN },
};

enum smtp_cmd smtp_cmd_parse(struct slice line, struct slice *args_r)
{
	size_t n = 0;
	while (n < line.len && line.p[n] != ' ')
		n++;
	struct slice verb = slice_make(line.p, n);
	/* One space separates verb and arguments; be lenient about more. */
	size_t a = n;
	while (a < line.len && line.p[a] == ' ')
		a++;
	*args_r = slice_make(line.p + a, line.len - a);
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
		if (slice_ieq(verb, commands[i].name))
			return commands[i].cmd;
	return CMD_UNKNOWN;
}

const char *smtp_cmd_name(enum smtp_cmd cmd)
{
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
		if (commands[i].cmd == cmd)
			return commands[i].name;
	return "UNKNOWN";
}

/* RFC 5322 atext */
static bool is_atext(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	return strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL && c != '\0';
}

/* Domain = sub-domain *("." sub-domain); sub-domain = Let-dig [Ldh-str];
 * with UTF-8 labels allowed (RFC 6531 section 3.3).  Or an address
 * literal "[...]".  Returns the length consumed, 0 on error. */
static size_t parse_domain(const char *p, size_t len, bool *utf8)
{
	if (len > 0 && p[0] == '[') {
		size_t i = 1;
		while (i < len && p[i] != ']') {
			unsigned char c = (unsigned char)p[i];
			if (c <= ' ' || c >= 0x7f || c == '[' || c == '\\')
				return 0;
			i++;
		}
		if (i >= len || i == 1)
			return 0;
		return i + 1;
	}
	size_t i = 0, label = 0;
	for (; i < len; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c == '.') {
			if (label == 0 || p[i - 1] == '-')
				return 0;
			label = 0;
			continue;
		}
		if (c >= 0x80) {
			*utf8 = true;
		} else if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			     (c == '-' && label > 0))) {
			break;
		}
		label++;
	}
	if (i == 0 || label == 0 || p[i - 1] == '-' || i > 255)
		return 0;
	return i;
}

/* Local-part = Dot-string / Quoted-string.  Returns the length, 0 on error. */
static size_t parse_local(const char *p, size_t len, bool *utf8)
{
	size_t i = 0;
	if (len > 0 && p[0] == '"') {
		for (i = 1; i < len; i++) {
			unsigned char c = (unsigned char)p[i];
			if (c == '"')
				return i + 1;
			if (c == '\\') {
				/* quoted-pairSMTP: %d92 %d32-126 */
				if (i + 1 >= len || (unsigned char)p[i + 1] < 32 ||
				    (unsigned char)p[i + 1] > 126)
					return 0;
				i++;
				continue;
			}
			if (c >= 0x80)
				*utf8 = true;
			else if (c < 32 || c == 127)
				return 0;
		}
		return 0;
	}
	bool dot_ok = false;
	for (; i < len; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c == '.') {
			if (!dot_ok)
				return 0;
			dot_ok = false;
			continue;
		}
		if (c >= 0x80)
			*utf8 = true;
		else if (!is_atext(c))
			break;
		dot_ok = true;
	}
	if (i == 0 || !dot_ok)
		return 0;
	return i;
}

/* RFC 3629 well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
static bool utf8_valid(const unsigned char *p, size_t len)
{
	size_t i = 0;
	while (i < len) {
		unsigned char c = p[i];
		size_t n;
		uint32_t cp;
		if (c < 0x80) {
			i++;
			continue;
		} else if (c >= 0xc2 && c <= 0xdf) {
			n = 1, cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 2, cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 3, cp = c & 0x07;
		} else {
			return false;
		}
		if (n >= len - i) /* the continuation bytes run past the end */
			return false;
		for (size_t k = 1; k <= n; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (p[i + k] & 0x3f);
		}
		if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += n + 1;
	}
	return true;
}

int smtp_path_parse(struct slice args, const char *keyword, struct smtp_path *path,
		    struct slice *params_r, const char **error_r)
{
	const char *p = args.p, *end = args.p + args.len;
	size_t kl = strlen(keyword);

	memset(path, 0, sizeof(*path));
	if (args.len < kl + 1 || strncasecmp(p, keyword, kl) != 0 || p[kl] != ':') {
		*error_r = "Syntax error: expected a path";
		return -1;
	}
	p += kl + 1;
	while (p < end && *p == ' ') /* not RFC, but common */
		p++;
	bool bracket = p < end && *p == '<';
	if (bracket)
		p++;
	const char *start = p;
	/* Source route: "@a,@b:" is accepted and ignored (RFC 5321 appendix C). */
	if (bracket && p < end && *p == '@') {
		const char *colon = memchr(p, ':', (size_t)(end - p));
		const char *close = memchr(p, '>', (size_t)(end - p));
		if (colon == NULL || (close && close < colon)) {
			*error_r = "Syntax error in source route";
			return -1;
		}
		p = colon + 1;
		start = p;
		if (p < end && *p == '>') {
			*error_r = "Syntax error: source route without a mailbox";
			return -1;
		}
	}
	if (bracket && p < end && *p == '>') {
		path->null = true;
		p++;
		goto params;
	}
	size_t l = parse_local(p, (size_t)(end - p), &path->utf8);
	if (l == 0) {
		*error_r = "Syntax error in address";
		return -1;
	}
	p += l;
	if (p < end && *p == '@') {
		p++;
		size_t d = parse_domain(p, (size_t)(end - p), &path->utf8);
		if (d == 0) {
			*error_r = "Syntax error in domain";
			return -1;
		}
		p += d;
	} else {
		path->no_domain = true;
	}
	if ((size_t)(p - start) > SMTP_PATH_MAX - 2) {
		*error_r = "Address too long";
		return -1;
	}
	if (path->utf8 && !utf8_valid((const unsigned char *)start, (size_t)(p - start))) {
		*error_r = "Address is not valid UTF-8";
		return -1;
	}
	memcpy(path->addr, start, (size_t)(p - start));
	path->addr[p - start] = '\0';
	if (bracket) {
		if (p >= end || *p != '>') {
			*error_r = "Syntax error: missing '>'";
			return -1;
		}
		p++;
	}
params:
	if (p < end && *p != ' ') {
		*error_r = "Syntax error after the address";
		return -1;
	}
	while (p < end && *p == ' ')
		p++;
	*params_r = slice_make(p, (size_t)(end - p));
	return 0;
}

int smtp_param_next(struct slice *params, struct slice *key, struct slice *value)
{
	const char *p = params->p, *end = params->p + params->len;
	while (p < end && *p == ' ')
		p++;
	if (p == end) {
		*params = slice_make(end, 0);
		return 0;
	}
	const char *k = p;
	while (p < end && *p != ' ' && *p != '=')
		p++;
	*key = slice_make(k, (size_t)(p - k));
	*value = slice_make(p, 0);
	if (p < end && *p == '=') {
		const char *v = ++p;
		while (p < end && *p != ' ')
			p++;
		*value = slice_make(v, (size_t)(p - v));
	}
	*params = slice_make(p, (size_t)(end - p));
	if (key->len == 0)
		return -1;
	/* esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-") */
	for (size_t i = 0; i < key->len; i++) {
		char c = key->p[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      (c == '-' && i > 0)))
			return -1;
	}
	return 1;
}

int smtp_bdat_parse(struct slice args, uint64_t *size_r, bool *last_r)
{
	size_t i = 0;
	uint64_t n = 0;
	if (args.len == 0)
		return -1;
	while (i < args.len && args.p[i] >= '0' && args.p[i] <= '9') {
		if (n > (UINT64_MAX - 9) / 10 || i >= 19)
			return -1;
		n = n * 10 + (uint64_t)(args.p[i] - '0');
		i++;
	}
	if (i == 0)
		return -1;
	*last_r = false;
	if (i < args.len) {
		if (args.p[i] != ' ')
			return -1;
		while (i < args.len && args.p[i] == ' ')
			i++;
		struct slice rest = slice_make(args.p + i, args.len - i);
		while (rest.len > 0 && rest.p[rest.len - 1] == ' ')
			rest.len--;
		if (!slice_ieq(rest, "LAST"))
			return -1;
		*last_r = true;
	}
	*size_r = n;
	return 0;
}
