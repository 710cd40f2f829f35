/*
 * log.c - the one logging API: "progname[pid]: LEVEL ID message" on
 * stderr, and syslog(3) when configured.  Whole lines are sanitised and
 * capped; untrusted fields go through log_str() first.
 */
#include "common/common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static char log_progname[32] = "mailgw";
static enum log_level log_min = LOG_LVL_INFO;
static bool log_syslog;

static const struct {
	const char *name;
	int facility;
} facilities[] = {
	{ "mail", LOG_MAIL },     { "daemon", LOG_DAEMON }, { "user", LOG_USER },
	{ "local0", LOG_LOCAL0 }, { "local1", LOG_LOCAL1 }, { "local2", LOG_LOCAL2 },
	{ "local3", LOG_LOCAL3 }, { "local4", LOG_LOCAL4 }, { "local5", LOG_LOCAL5 },
	{ "local6", LOG_LOCAL6 }, { "local7", LOG_LOCAL7 },
};

/* Call before other threads start: it is not safe against concurrent logging. */
int log_open(const char *progname, enum log_level level, const char *syslog_facility)
{
	str_copy(log_progname, progname, sizeof(log_progname));
	log_min = level;
	if (log_syslog) {
		closelog();
		log_syslog = false;
	}
	if (syslog_facility == NULL || *syslog_facility == '\0')
		return 0;
	for (size_t i = 0; i < ARRAY_SIZE(facilities); i++) {
		if (str_ieq(facilities[i].name, syslog_facility)) {
			openlog(log_progname, LOG_PID | LOG_NDELAY, facilities[i].facility);
			log_syslog = true;
			return 0;
		}
	}
	return -1;
}

/* Safe while other threads log (SIGHUP). */
void log_set_level(enum log_level level)
{
	__atomic_store_n(&log_min, level, __ATOMIC_RELAXED);
}

bool log_debug_enabled(void)
{
	return __atomic_load_n(&log_min, __ATOMIC_RELAXED) <= LOG_LVL_DEBUG;
}

int log_level_parse(const char *name, enum log_level *level_r)
{
	static const char *names[] = { "debug", "info", "warn", "error" };
	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		if (str_ieq(name, names[i])) {
			*level_r = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

size_t log_sanitize(char *dst, size_t dstsize, const char *src, size_t len, size_t cap)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;
	bool truncated = false;

	if (dstsize == 0)
		return 0;
	if (cap > dstsize - 4)
		cap = dstsize > 4 ? dstsize - 4 : 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)src[i];
		bool plain = c >= 0x20 && c < 0x7f && c != '\\';
		size_t need = plain ? 1 : (c == '\\' ? 2 : 4);
		if (o + need > cap) {
			truncated = true;
			break;
		}
		if (plain) {
			dst[o++] = (char)c;
		} else if (c == '\\') {
			dst[o++] = '\\';
			dst[o++] = '\\';
		} else {
			dst[o++] = '\\';
			dst[o++] = 'x';
			dst[o++] = hex[c >> 4];
			dst[o++] = hex[c & 15];
		}
	}
	if (truncated && o + 3 < dstsize) {
		memcpy(dst + o, "...", 3);
		o += 3;
	}
	dst[o] = '\0';
	return o;
}

const char *log_strn(const char *s, size_t len)
{
	static __thread char ring[LOG_STR_SLOTS][LOG_STR_MAX + 8];
	static __thread unsigned slot;
	char *out = ring[slot++ % LOG_STR_SLOTS];
	if (s == NULL)
		return "(null)";
	log_sanitize(out, LOG_STR_MAX + 8, s, len, LOG_STR_MAX);
	return out;
}

const char *log_str(const char *s)
{
	return s == NULL ? "(null)" : log_strn(s, strlen(s));
}

static void log_emit(enum log_level level, const char *id, int errnum, const char *fmt, va_list ap)
{
	static const char *tags[] = { "debug", "info", "warning", "error" };
	static const int prio[] = { LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR };
	char msg[LOG_LINE_MAX];
	char line[LOG_LINE_MAX + 128];

	if (level < __atomic_load_n(&log_min, __ATOMIC_RELAXED))
		return;
	int n = vsnprintf(msg, sizeof(msg), fmt, ap);
	if (n < 0)
		n = 0;
	size_t len = (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1;
	if (errnum != 0) {
		const char *es = strerror(errnum);
		size_t el = strlen(es);
		if (len + 2 + el < sizeof(msg)) {
			memcpy(msg + len, ": ", 2);
			memcpy(msg + len + 2, es, el + 1);
			len += 2 + el;
		}
	}
	/* Whatever the callers passed, no control character leaves here: a
	 * CR or LF from a peer cannot start a forged log line. */
	for (size_t i = 0; i < len; i++) {
		if ((unsigned char)msg[i] < 0x20 || msg[i] == 0x7f)
			msg[i] = '?';
	}
	if (log_syslog)
		syslog(prio[level], "%s%s%s", id ? id : "", id ? ": " : "", msg);

	struct timespec ts;
	struct tm tm;
	char stamp[40];
	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	int l = snprintf(line, sizeof(line), "%s.%03ld %s[%d]: %s: %s%s%s\n", stamp,
			 ts.tv_nsec / 1000000, log_progname, (int)getpid(), tags[level],
			 id ? id : "", id ? ": " : "", msg);
	if (l > 0) {
		size_t ll = (size_t)l < sizeof(line) ? (size_t)l : sizeof(line) - 1;
		line[ll - 1] = '\n';
		(void)!write(2, line, ll); /* one write: lines from threads do not interleave */
	}
}

#define LOG_FN(name, level, with_errno)                                                            \
	void name(const char *id, const char *fmt, ...)                                            \
	{                                                                                          \
		int saved = errno;                                                                 \
		va_list ap;                                                                        \
		va_start(ap, fmt);                                                                 \
		log_emit(level, id, with_errno ? saved : 0, fmt, ap);                              \
		va_end(ap);                                                                        \
		errno = saved;                                                                     \
	}

LOG_FN(log_debug, LOG_LVL_DEBUG, 0)
LOG_FN(log_info, LOG_LVL_INFO, 0)
LOG_FN(log_warn, LOG_LVL_WARN, 1)
LOG_FN(log_warnx, LOG_LVL_WARN, 0)
LOG_FN(log_err, LOG_LVL_ERR, 1)
LOG_FN(log_errx, LOG_LVL_ERR, 0)

void log_fatal(const char *id, const char *fmt, ...)
{
	int saved = errno;
	va_list ap;
	va_start(ap, fmt);
	log_emit(LOG_LVL_ERR, id, saved, fmt, ap);
	va_end(ap);
	exit(1);
}

void log_fatalx(const char *id, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_emit(LOG_LVL_ERR, id, 0, fmt, ap);
	va_end(ap);
	exit(1);
}

void log_panic(const char *id, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_emit(LOG_LVL_ERR, id, 0, fmt, ap);
	va_end(ap);
	abort();
}
