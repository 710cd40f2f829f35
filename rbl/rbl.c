/*
 * rbl.c - DNSBL/DNSWL and URI blocklist queries (RFC 5782): started
 * together, collected with one deadline, every outcome explicit.
 */
#include "rbl/rbl.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rbl_query {
	const struct rbl_zone *zone;
	char *name;           /* the address or domain looked up */
	struct dns_query *q;
};

struct rbl_check {
	struct rbl_query *v;
	size_t n;
};

bool rbl_ip_query_name(const char *ip, const char *zone, char *out, size_t size)
{
	unsigned char a[16];
	int n;
	if (inet_pton(AF_INET, ip, a) == 1) {
		n = snprintf(out, size, "%u.%u.%u.%u.%s", a[3], a[2], a[1], a[0], zone);
	} else if (inet_pton(AF_INET6, ip, a) == 1) {
		static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
		if (memcmp(a, mapped, 12) == 0) {
			n = snprintf(out, size, "%u.%u.%u.%u.%s", a[15], a[14], a[13], a[12], zone);
		} else {
			static const char hex[] = "0123456789abcdef";
			char nib[64];
			for (int i = 15, k = 0; i >= 0; i--) {
				nib[k++] = hex[a[i] & 15];
				nib[k++] = '.';
				nib[k++] = hex[a[i] >> 4];
				nib[k++] = '.';
			}
			n = snprintf(out, size, "%.64s%s", nib, zone);
		}
	} else {
		return false;
	}
	return n > 0 && (size_t)n < size;
}

static void add_query(struct rbl_check *c, struct dns *dns, const struct rbl_zone *z,
		      const char *name, const char *qname)
{
	c->v = xrealloc(c->v, (c->n + 1) * sizeof(*c->v));
	c->v[c->n].zone = z;
	c->v[c->n].name = xstrdup(name);
	c->v[c->n].q = dns_start(dns, qname, DNS_T_A);
	c->n++;
}

struct rbl_check *rbl_start(struct dns *dns, const struct rbl_list *zones, const char *ip)
{
	if (dns == NULL || zones->n == 0)
		return NULL;
	struct rbl_check *c = xcalloc(1, sizeof(*c));
	char qname[512];
	for (size_t i = 0; i < zones->n; i++)
		if (rbl_ip_query_name(ip, zones->v[i].zone, qname, sizeof(qname)))
			add_query(c, dns, &zones->v[i], ip, qname);
	if (c->n == 0) {
		free(c);
		return NULL;
	}
	return c;
}

struct rbl_check *rbl_start_domains(struct dns *dns, const struct rbl_list *zones,
				    const char *const *domains, size_t n)
{
	if (dns == NULL || zones->n == 0 || n == 0)
		return NULL;
	struct rbl_check *c = xcalloc(1, sizeof(*c));
	char qname[512];
	for (size_t d = 0; d < n; d++) {
		for (size_t i = 0; i < zones->n; i++) {
			int k = snprintf(qname, sizeof(qname), "%s.%s", domains[d], zones->v[i].zone);
			if (k > 0 && k <= 253)
				add_query(c, dns, &zones->v[i], domains[d], qname);
		}
	}
	if (c->n == 0) {
		free(c);
		return NULL;
	}
	return c;
}

static void add_entry(struct rbl_result *r, enum rbl_status st, const struct rbl_zone *zone,
		      const char *name, const char *code, double score)
{
	r->v = xrealloc(r->v, (r->n + 1) * sizeof(*r->v));
	struct rbl_entry *e = &r->v[r->n++];
	e->status = st;
	e->zone = xstrdup(zone->zone);
	e->name = xstrdup(name);
	str_copy(e->code, code, sizeof(e->code));
	e->score = score;
}

void rbl_judge(struct rbl_result *r, const struct rbl_zone *zone, const char *name,
	       const struct dns_answer *a, const char *log_id)
{
	if (a->outcome == DNS_NXDOMAIN || a->outcome == DNS_NODATA)
		return; /* not listed */
	if (a->outcome == DNS_TEMPFAIL) {
		log_warnx(log_id, "rbl: %s unavailable for %s: %s", zone->zone, log_str(name),
			  a->error ? a->error : "temporary error");
		add_entry(r, RBL_UNAVAILABLE, zone, name, "", 0);
		r->unavailable = true;
		return;
	}
	/* One zone may answer several codes (zen: SBL and XBL); each
	 * configured range scores once, however many of its codes came. */
	bool *used = xcalloc(zone->ncodes + 1, sizeof(bool));
	for (size_t i = 0; i < a->n; i++) {
		struct in_addr in;
		if (inet_pton(AF_INET, a->rr[i], &in) != 1)
			continue;
		uint32_t v = ntohl(in.s_addr);
		if ((v >> 8) == 0x7fffff) {
			/* 127.255.255.x is how the lists say "your resolver is
			 * refused" (Spamhaus: .252 bad query name, .254 public
			 * resolver, .255 too many queries).  Checked before the
			 * ranges, since "127.0.0.0-127.255.255.255=1" covers it,
			 * and kept apart from unavailable: a retry gets the same
			 * answer, so it must not turn into a 451 for the sender. */
			log_errx(log_id, "rbl: %s refuses our queries (answer %s for %s)", zone->zone,
				 a->rr[i], log_str(name));
			add_entry(r, RBL_REFUSED, zone, name, a->rr[i], 0);
			r->refused = true;
			continue;
		}
		bool scored = false;
		for (size_t k = 0; k < zone->ncodes; k++) {
			const struct rbl_code *cd = &zone->codes[k];
			if (v >= cd->lo && v <= cd->hi) {
				scored = true;
				if (!used[k]) {
					used[k] = true;
					add_entry(r, RBL_LISTED, zone, name, a->rr[i], cd->score);
					r->score += cd->score;
				}
				break;
			}
		}
		if (!scored)
			add_entry(r, RBL_UNSCORED, zone, name, a->rr[i], 0);
	}
	free(used);
}

void rbl_finish(struct rbl_check **cp, int64_t deadline_ms, struct rbl_result *r)
{
	memset(r, 0, sizeof(*r));
	struct rbl_check *c = *cp;
	*cp = NULL;
	if (c == NULL)
		return;
	for (size_t i = 0; i < c->n; i++) {
		struct dns_answer a;
		dns_wait(&c->v[i].q, deadline_ms, &a);
		rbl_judge(r, c->v[i].zone, c->v[i].name, &a, NULL);
		dns_answer_free(&a);
		free(c->v[i].name);
	}
	free(c->v);
	free(c);
}

void rbl_abandon(struct rbl_check **cp)
{
	struct rbl_check *c = *cp;
	*cp = NULL;
	if (c == NULL)
		return;
	for (size_t i = 0; i < c->n; i++) {
		struct dns_answer a;
		dns_wait(&c->v[i].q, 0, &a); /* cancels what has not answered */
		dns_answer_free(&a);
		free(c->v[i].name);
	}
	free(c->v);
	free(c);
}

void rbl_result_free(struct rbl_result *r)
{
	for (size_t i = 0; i < r->n; i++) {
		free(r->v[i].zone);
		free(r->v[i].name);
	}
	free(r->v);
	memset(r, 0, sizeof(*r));
}

void rbl_result_format(const struct rbl_result *r, bool names, struct buf *out)
{
	for (size_t i = 0; i < r->n; i++) {
		const struct rbl_entry *e = &r->v[i];
		if (i)
			buf_putc(out, ' ');
		if (names)
			buf_printf(out, "%s@", e->name);
		switch (e->status) {
		case RBL_LISTED:
			buf_printf(out, "%s=%s(%+g)", e->zone, e->code, e->score);
			break;
		case RBL_UNSCORED:
			buf_printf(out, "%s=%s(unscored)", e->zone, e->code);
			break;
		case RBL_REFUSED:
			buf_printf(out, "%s=refused(%s)", e->zone, e->code);
			break;
		case RBL_UNAVAILABLE:
			buf_printf(out, "%s=unavailable", e->zone);
			break;
		}
	}
}
