/*
 * dns.c - the one DNS resolver of a process (DESIGN.md: libunbound for
 * RBL, SPF, DKIM and DMARC), with our own deadline per lookup.
 *
 * One ub_ctx, configured completely before the first lookup (forwarders
 * from dns_servers, or /etc/resolv.conf), asynchronous: a lookup is
 * started with dns_start() and collected with dns_wait(), so a caller can
 * start several (a session's DNSBL zones at connect) and collect them
 * later.  A thread of ours reads libunbound's result pipe and runs its
 * callbacks.  Answers are cached by TTL in libunbound's own cache, and in
 * front of it in a small table of ours: a hit there costs a hash lookup
 * under a mutex instead of two thread hand-offs through libunbound's
 * pipe (a message asks some eight names, nearly all of them hits).
 * Temporary errors are never cached; answers with TTL 0 neither.  The
 * table is bounded (entries, 16 MiB, answers over 4 KiB are left to
 * libunbound, 32 names per bucket) and its hash keyed with a random seed,
 * so names a sender chooses can neither fill memory nor pile up in one
 * bucket.
 *
 * Every outcome is one of pass (records), no-data, NXDOMAIN, or a
 * temporary error (timeout, SERVFAIL, no server) reported as such.
 */
#include "common/common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/random.h>
#include <string.h>
#include <unistd.h>

#include <unbound.h>

#define CACHE_BUCKETS 4096
#define CACHE_MAX 50000              /* entries; past it the expired go, then all */
#define CACHE_BYTES (16 * 1024 * 1024) /* the same for the memory of the answers */
#define CACHE_ANSWER_MAX 4096        /* larger answers are not kept (libunbound's cache still has them) */
#define CACHE_CHAIN_MAX 32           /* entries per bucket: a flood of colliding names stops there */
#define CACHE_TTL_MAX 86400

struct centry {
	struct centry *next;
	uint32_t hash;
	int type;
	size_t bytes;
	int64_t expires_ms;
	char *name;
	struct dns_answer ans;
};

struct dns {
	struct ub_ctx *ub;
	int64_t timeout_ms;
	pthread_mutex_t cache_lock;
	struct centry *cache[CACHE_BUCKETS];
	size_t ncache, cache_bytes;
	uint32_t seed;          /* the hash is keyed: names cannot be made to collide */
	pthread_mutex_t lock;   /* held by the reader thread while it runs callbacks */
	pthread_cond_t cond;    /* a query finished */
	pthread_t thread;
	int stop_pipe[2];
};

struct dns_query {
	struct dns *d;
	int async_id;
	int rrtype;
	char *name;             /* normalised, for the cache */
	bool done, abandoned;
	struct dns_answer ans;
};

const char *dns_outcome_name(enum dns_outcome o)
{
	switch (o) {
	case DNS_PASS:
		return "pass";
	case DNS_NODATA:
		return "no-data";
	case DNS_NXDOMAIN:
		return "nxdomain";
	default:
		return "temperror";
	}
}

int dns_type_parse(const char *name)
{
	static const struct {
		const char *n;
		int t;
	} types[] = { { "A", DNS_T_A },	    { "NS", DNS_T_NS },	  { "CNAME", DNS_T_CNAME },
		      { "PTR", DNS_T_PTR }, { "MX", DNS_T_MX },	  { "TXT", DNS_T_TXT },
		      { "AAAA", DNS_T_AAAA } };
	for (size_t i = 0; i < ARRAY_SIZE(types); i++)
		if (str_ieq(name, types[i].n))
			return types[i].t;
	return -1;
}

void dns_answer_free(struct dns_answer *a)
{
	for (size_t i = 0; i < a->n; i++)
		free(a->rr[i]);
	free(a->rr);
	free(a->error);
	memset(a, 0, sizeof(*a));
}

/* A domain name in wire format (uncompressed, as libunbound gives rdata). */
static char *wire_name(const unsigned char *p, size_t len)
{
	struct buf b;
	buf_init(&b, 1024);
	size_t i = 0;
	while (i < len && p[i] != 0) {
		size_t l = p[i++];
		if (l > 63 || i + l > len)
			break;
		if (b.len)
			buf_putc(&b, '.');
		for (size_t k = 0; k < l; k++) {
			unsigned char c = p[i + k];
			if (c > 0x20 && c < 0x7f && c != '.' && c != '\\')
				buf_putc(&b, (char)c);
			else
				buf_printf(&b, "\\%03u", c);
		}
		i += l;
	}
	char *r = xstrdup(b.len ? b.data : ".");
	buf_free(&b);
	return r;
}

static char *rdata_text(int type, const unsigned char *p, size_t len)
{
	char tmp[INET6_ADDRSTRLEN];
	switch (type) {
	case DNS_T_A:
		if (len == 4 && inet_ntop(AF_INET, p, tmp, sizeof(tmp)))
			return xstrdup(tmp);
		break;
	case DNS_T_AAAA:
		if (len == 16 && inet_ntop(AF_INET6, p, tmp, sizeof(tmp)))
			return xstrdup(tmp);
		break;
	case DNS_T_TXT: {
		/* RFC 7208 3.3: the character-strings of one record joined. */
		struct buf b;
		buf_init(&b, 65536);
		buf_puts(&b, "");
		for (size_t i = 0; i < len;) {
			size_t l = p[i++];
			if (i + l > len)
				break;
			buf_append(&b, p + i, l);
			i += l;
		}
		char *r = xstrdup(b.data);
		buf_free(&b);
		return r;
	}
	case DNS_T_MX:
		if (len >= 3) {
			char *n = wire_name(p + 2, len - 2);
			char *r = xasprintf("%u %s", (unsigned)(p[0] << 8 | p[1]), n);
			free(n);
			return r;
		}
		break;
	case DNS_T_NS:
	case DNS_T_CNAME:
	case DNS_T_PTR:
		return wire_name(p, len);
	}
	return xstrdup("");
}

/* ------------------------------------------------------------- cache */

static char *norm_name(const char *name)
{
	char *n = str_lower(xstrdup(name));
	size_t len = strlen(n);
	while (len > 1 && n[len - 1] == '.')
		n[--len] = '\0';
	return n;
}

static uint32_t name_hash(const struct dns *d, const char *name, int type)
{
	uint32_t h = (2166136261u ^ d->seed) * 16777619u ^ (uint32_t)type;
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		h = (h ^ *p) * 16777619u;
	h ^= h >> 15;
	h *= 0x2c1b3c6du ^ d->seed;
	return h ^ (h >> 13);
}

static void answer_copy(struct dns_answer *dst, const struct dns_answer *src, uint32_t ttl)
{
	memset(dst, 0, sizeof(*dst));
	dst->outcome = src->outcome;
	dst->ttl = ttl;
	dst->n = src->n;
	if (src->rr) {
		dst->rr = xcalloc(src->n + 1, sizeof(char *));
		for (size_t i = 0; i < src->n; i++)
			dst->rr[i] = xstrdup(src->rr[i]);
	}
}

static void centry_free(struct centry *e)
{
	dns_answer_free(&e->ans);
	free(e->name);
	free(e);
}

/* A cached answer for (name, type): true with a copy in *ans. */
static bool cache_get(struct dns *d, const char *name, int type, struct dns_answer *ans)
{
	uint32_t h = name_hash(d, name, type);
	int64_t now = clock_mono_ms();
	bool hit = false;
	pthread_mutex_lock(&d->cache_lock);
	for (struct centry *e = d->cache[h % CACHE_BUCKETS]; e; e = e->next) {
		if (e->hash == h && e->type == type && strcmp(e->name, name) == 0) {
			if (e->expires_ms > now) {
				answer_copy(ans, &e->ans, (uint32_t)((e->expires_ms - now + 999) / 1000));
				hit = true;
			}
			break;
		}
	}
	pthread_mutex_unlock(&d->cache_lock);
	return hit;
}

static void cache_clean(struct dns *d, bool all)
{
	int64_t now = clock_mono_ms();
	for (size_t b = 0; b < CACHE_BUCKETS; b++) {
		for (struct centry **pp = &d->cache[b]; *pp;) {
			struct centry *e = *pp;
			if (all || e->expires_ms <= now) {
				*pp = e->next;
				d->cache_bytes -= e->bytes;
				centry_free(e);
				d->ncache--;
			} else {
				pp = &e->next;
			}
		}
	}
}

static void cache_put(struct dns *d, const char *name, int type, const struct dns_answer *a)
{
	if (a->outcome == DNS_TEMPFAIL || a->ttl == 0)
		return;
	size_t bytes = sizeof(struct centry) + strlen(name) + 1;
	for (size_t i = 0; i < a->n; i++)
		bytes += strlen(a->rr[i]) + 1 + sizeof(char *);
	if (bytes > CACHE_ANSWER_MAX)
		return;
	uint32_t h = name_hash(d, name, type);
	struct centry *n = xcalloc(1, sizeof(*n));
	n->hash = h;
	n->type = type;
	n->bytes = bytes;
	n->name = xstrdup(name);
	n->expires_ms = clock_mono_ms() + (int64_t)(a->ttl < CACHE_TTL_MAX ? a->ttl : CACHE_TTL_MAX) * 1000;
	answer_copy(&n->ans, a, a->ttl);
	pthread_mutex_lock(&d->cache_lock);
	struct centry **pp = &d->cache[h % CACHE_BUCKETS];
	size_t chain = 0;
	for (; *pp; pp = &(*pp)->next, chain++) {
		if ((*pp)->hash == h && (*pp)->type == type && strcmp((*pp)->name, name) == 0) {
			struct centry *old = *pp;
			n->next = old->next;
			*pp = n;
			d->cache_bytes += n->bytes - old->bytes;
			centry_free(old);
			pthread_mutex_unlock(&d->cache_lock);
			return;
		}
	}
	if (chain >= CACHE_CHAIN_MAX) {
		pthread_mutex_unlock(&d->cache_lock);
		centry_free(n);
		return;
	}
	if (d->ncache >= CACHE_MAX || d->cache_bytes + bytes > CACHE_BYTES) {
		cache_clean(d, false);
		if (d->ncache >= CACHE_MAX || d->cache_bytes + bytes > CACHE_BYTES)
			cache_clean(d, true);
	}
	d->cache_bytes += bytes;
	n->next = d->cache[h % CACHE_BUCKETS];
	d->cache[h % CACHE_BUCKETS] = n;
	d->ncache++;
	pthread_mutex_unlock(&d->cache_lock);
}

/* ----------------------------------------------------------- lookups */

static void on_result(void *arg, int err, struct ub_result *res)
{
	/* Runs in the reader thread, under d->lock (see reader()). */
	struct dns_query *q = arg;
	struct dns_answer *a = &q->ans;
	if (err != 0) {
		a->outcome = DNS_TEMPFAIL;
		a->error = xstrdup(ub_strerror(err));
	} else if (res->havedata) {
		a->outcome = DNS_PASS;
		a->ttl = res->ttl > 0 ? (uint32_t)res->ttl : 0;
		size_t n = 0;
		while (res->data[n])
			n++;
		a->rr = xcalloc(n + 1, sizeof(char *));
		for (size_t i = 0; i < n; i++)
			a->rr[i] = rdata_text(q->rrtype, (const unsigned char *)res->data[i],
					      (size_t)res->len[i]);
		a->n = n;
	} else if (res->nxdomain || res->rcode == 3) {
		a->outcome = DNS_NXDOMAIN;
		a->ttl = res->ttl > 0 ? (uint32_t)res->ttl : 0;
	} else if (res->rcode == 0) {
		a->outcome = DNS_NODATA;
		a->ttl = res->ttl > 0 ? (uint32_t)res->ttl : 0;
	} else {
		a->outcome = DNS_TEMPFAIL;
		a->error = xasprintf("rcode %d%s", res->rcode, res->rcode == 2 ? " (SERVFAIL)" : "");
	}
	if (res)
		ub_resolve_free(res);
	cache_put(q->d, q->name, q->rrtype, a);
	if (q->abandoned) {
		dns_answer_free(a);
		free(q->name);
		free(q);
		return;
	}
	q->done = true;
	pthread_cond_broadcast(&q->d->cond);
}

static void *reader(void *arg)
{
	struct dns *d = arg;
	for (;;) {
		struct pollfd pfd[2] = { { .fd = ub_fd(d->ub), .events = POLLIN },
					 { .fd = d->stop_pipe[0], .events = POLLIN } };
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pfd[1].revents)
			break;
		if (pfd[0].revents & POLLIN) {
			pthread_mutex_lock(&d->lock);
			ub_process(d->ub);
			pthread_mutex_unlock(&d->lock);
		}
	}
	return NULL;
}

struct dns *dns_new(const struct strlist *servers, int64_t timeout_ms, char **error_r)
{
	struct ub_ctx *ub = ub_ctx_create();
	if (ub == NULL) {
		*error_r = xstrdup("dns: cannot create the resolver");
		return NULL;
	}
	const char *what = "async";
	int err = ub_ctx_async(ub, 1);
	if (err == 0 && servers && servers->n) {
		/* Forwarders on loopback are usual (a local recursor, a test
		 * server): let libunbound query them. */
		if ((err = ub_ctx_set_option(ub, "do-not-query-localhost:", "no")) != 0)
			what = "do-not-query-localhost";
		for (size_t i = 0; err == 0 && i < servers->n; i++) {
			struct sockaddr_storage ss;
			socklen_t len;
			char *perr = NULL;
			if (net_parse_hostport(servers->v[i], &ss, &len, &perr) < 0) {
				*error_r = xasprintf("dns_servers: %s", perr);
				free(perr);
				ub_ctx_delete(ub);
				return NULL;
			}
			char host[INET6_ADDRSTRLEN];
			net_addr_str((struct sockaddr *)&ss, host, sizeof(host));
			unsigned port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
								 : ntohs(((struct sockaddr_in *)&ss)->sin_port);
			char *fwd = xasprintf("%s@%u", host, port);
			if ((err = ub_ctx_set_fwd(ub, fwd)) != 0)
				what = servers->v[i];
			free(fwd);
		}
	} else if (err == 0 && (err = ub_ctx_resolvconf(ub, NULL)) != 0) {
		what = "/etc/resolv.conf";
	}
	/* RFC 2606 "test." is one of libunbound's built-in local zones
	 * (always NXDOMAIN): let it through to the servers.  This finalizes
	 * the configuration, so it comes last. */
	if (err == 0 && (err = ub_ctx_zone_add(ub, "test.", "transparent")) != 0)
		what = "local-zone test.";
	if (err != 0) {
		*error_r = xasprintf("dns: %s: %s", what, ub_strerror(err));
		ub_ctx_delete(ub);
		return NULL;
	}
	struct dns *d = xcalloc(1, sizeof(*d));
	d->ub = ub;
	d->timeout_ms = timeout_ms;
	pthread_mutex_init(&d->lock, NULL);
	pthread_mutex_init(&d->cache_lock, NULL);
	if (getrandom(&d->seed, sizeof(d->seed), 0) != (ssize_t)sizeof(d->seed))
		d->seed = (uint32_t)clock_real_us() ^ (uint32_t)getpid();
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&d->cond, &ca);
	pthread_condattr_destroy(&ca);
	if (pipe2(d->stop_pipe, O_CLOEXEC) < 0 || pthread_create(&d->thread, NULL, reader, d) != 0) {
		*error_r = xasprintf("dns: reader thread: %s", strerror(errno));
		ub_ctx_delete(ub);
		free(d);
		return NULL;
	}
	return d;
}

void dns_free(struct dns **dp)
{
	struct dns *d = *dp;
	if (d == NULL)
		return;
	(void)!write(d->stop_pipe[1], "x", 1);
	pthread_join(d->thread, NULL);
	close(d->stop_pipe[0]);
	close(d->stop_pipe[1]);
	ub_ctx_delete(d->ub);
	cache_clean(d, true);
	pthread_mutex_destroy(&d->cache_lock);
	pthread_mutex_destroy(&d->lock);
	pthread_cond_destroy(&d->cond);
	free(d);
	*dp = NULL;
}

struct dns_query *dns_start(struct dns *d, const char *name, int rrtype)
{
	struct dns_query *q = xcalloc(1, sizeof(*q));
	q->d = d;
	q->rrtype = rrtype;
	q->name = norm_name(name);
	if (cache_get(d, q->name, rrtype, &q->ans)) {
		q->done = true;
		return q;
	}
	pthread_mutex_lock(&d->lock);
	int err = ub_resolve_async(d->ub, name, rrtype, 1 /* IN */, q, on_result, &q->async_id);
	if (err != 0) {
		q->done = true;
		q->ans.outcome = DNS_TEMPFAIL;
		q->ans.error = xstrdup(ub_strerror(err));
	}
	pthread_mutex_unlock(&d->lock);
	return q;
}

void dns_wait(struct dns_query **qp, int64_t deadline_ms, struct dns_answer *ans)
{
	struct dns_query *q = *qp;
	struct dns *d = q->d;
	*qp = NULL;
	pthread_mutex_lock(&d->lock);
	while (!q->done) {
		int64_t now = clock_mono_ms();
		if (now >= deadline_ms)
			break;
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		int64_t left = deadline_ms - now;
		ts.tv_sec += left / 1000;
		ts.tv_nsec += (left % 1000) * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&d->cond, &d->lock, &ts);
	}
	if (q->done) {
		*ans = q->ans;
		free(q->name);
		free(q);
	} else {
		/* Our deadline: a temporary error, whatever comes later. */
		memset(ans, 0, sizeof(*ans));
		ans->outcome = DNS_TEMPFAIL;
		ans->error = xstrdup("timeout");
		if (ub_cancel(d->ub, q->async_id) == 0) {
			free(q->name);
			free(q);
		} else {
			q->abandoned = true; /* the callback frees it */
		}
	}
	pthread_mutex_unlock(&d->lock);
}

int64_t dns_timeout(const struct dns *d)
{
	return d->timeout_ms;
}

void dns_lookup(struct dns *d, const char *name, int rrtype, struct dns_answer *ans)
{
	struct dns_query *q = dns_start(d, name, rrtype);
	dns_wait(&q, clock_mono_ms() + d->timeout_ms, ans);
}
