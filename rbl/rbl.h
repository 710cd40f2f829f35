/*
 * rbl.h - DNS blocklists and allow lists (DNSBL/DNSWL, RFC 5782) for the
 * client address, and URI blocklists for the domains a message links to.
 *
 * Zones come from the configuration ("rbl" and "uribl" lines: a zone and
 * return codes or ranges with their scores, negative for allow lists).
 * The queries of one check start together (rbl_start, at connect) and are
 * collected later (rbl_finish, by RCPT at the latest) with a deadline, so
 * the lists are asked in parallel while the SMTP dialogue goes on.
 *
 * Outcomes are explicit and kept apart:
 *  - a listing scores (each configured code range once per zone and
 *    answer); a code no range covers is reported unscored;
 *  - an answer in 127.255.255.0/24 is the list refusing our resolver
 *    (RFC 5782 has no code for that; this is the Spamhaus convention:
 *    .252 a malformed query name, .254 a public resolver, .255 too many
 *    queries): logged as an error, reported as refused, never a listing
 *    even when a configured range covers it, and not "unavailable"
 *    either, because asking again will not help;
 *  - a lookup that fails temporarily or times out makes the zone
 *    unavailable, reported as such rather than as a silent 0 (a caller
 *    may answer 451 and let the sender retry).
 */
#ifndef RBL_RBL_H
#define RBL_RBL_H

#include "common/common.h"

/* The query name for an address under zone: reversed octets for IPv4,
 * 32 reversed nibbles for IPv6 (RFC 5782 section 2.4).  IPv4-mapped IPv6
 * is taken as IPv4.  false when ip is not an address or out is too small. */
bool rbl_ip_query_name(const char *ip, const char *zone, char *out, size_t size);

enum rbl_status {
	RBL_LISTED,       /* an answer matched a return code (score applies) */
	RBL_UNSCORED,     /* listed with a code that has no score configured */
	RBL_REFUSED,      /* 127.255.255.x: the list refuses our queries */
	RBL_UNAVAILABLE,  /* timeout, SERVFAIL, no answer from the list */
};

struct rbl_entry {
	enum rbl_status status;
	char *zone;
	char *name;       /* what was looked up: the address or the domain */
	char code[16];    /* the answer for LISTED/UNSCORED/REFUSED */
	double score;
};

struct rbl_result {
	struct rbl_entry *v;  /* only zones that said something or failed */
	size_t n;
	double score;         /* sum of LISTED scores */
	bool unavailable;     /* some lookup timed out or failed temporarily */
	bool refused;         /* some zone refused us (127.255.255.0/24) */
};

struct rbl_check;
/* Start one A query per zone for the client address ip.  NULL when ip is
 * not an address or there are no zones. */
struct rbl_check *rbl_start(struct dns *dns, const struct rbl_list *zones, const char *ip);
/* Start a query per (domain, zone) pair: domains as they should be looked
 * up (registered domains, lower case, no trailing dot). */
struct rbl_check *rbl_start_domains(struct dns *dns, const struct rbl_list *zones,
				    const char *const *domains, size_t n);
/* Collect every answer, waiting until deadline_ms (clock_mono_ms()) at
 * most; what has not answered by then is unavailable.  Frees the check. */
void rbl_finish(struct rbl_check **c, int64_t deadline_ms, struct rbl_result *r);
/* Judge the answer a for name (address or domain) under zone into r,
 * which accumulates (zero it before the first call): NXDOMAIN and NODATA
 * add nothing; TEMPFAIL adds an RBL_UNAVAILABLE entry and sets
 * unavailable; a 127.255.255.x record adds RBL_REFUSED and sets refused;
 * every other record adds RBL_LISTED (and its score) for the first
 * configured range covering it, unless that range already scored for
 * this answer, or RBL_UNSCORED (score 0) when no range covers it.
 * Records that are not IPv4 addresses are ignored.  log_id: the log line
 * prefix (NULL for none).  rbl_finish judges with this. */
void rbl_judge(struct rbl_result *r, const struct rbl_zone *zone, const char *name,
	       const struct dns_answer *a, const char *log_id);
/* Free a check without its answers (the session ended first). */
void rbl_abandon(struct rbl_check **c);
void rbl_result_free(struct rbl_result *r);
/* Append the result as "zone=code(+score) ..." (log and header text),
 * with names: "name@zone=code(+score)". */
void rbl_result_format(const struct rbl_result *r, bool names, struct buf *out);

/* Domains linked from text (rbl/uri.c): hosts of http/https/ftp/hxxp URLs
 * read as a browser reads them (any run of '/' or '\' after the colon,
 * user-info up to the last '@'), "www." names, and "//host" values of
 * href= and src= attributes; never address literals or names without a
 * dot.  Lower case, no trailing dot, deduplicated against (*v)[0..n), at
 * most max in all; each a malloc'd string appended to *v.  text need not
 * be NUL-terminated.  Returns the new count. */
size_t uri_domains(const char *text, size_t len, char ***v, size_t n, size_t max);

#endif
