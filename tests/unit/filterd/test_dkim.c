/*
 * test_dkim.c - DKIM verification through the gateway's interface: no
 * signature, hostile signature fields, hostile chunking of header and
 * body, misuse of the handle.  Keys come from a tiny DNS responder on a
 * loopback UDP port inside this process (TXT answers for two selectors,
 * NXDOMAIN for others, silence for "slow"); the signatures were made by
 * an independent signer (python3-dkim) over the message built below.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "filterd/filterd.h"

/* Ed25519 (RFC 8463) relaxed/relaxed and RSA-1024 simple/simple, t= 2024. */
static const char SIG_ED[] =
	"DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=example.test;\n"
	" i=@example.test; q=dns/txt; s=ed; t=1704067200; h=from : to : subject\n"
	" : date; bh=5dmAPyHcm7QT70yYReoa/Yab0fhMQnQ+ABC6FJ2J3B4=;\n"
	" b=fCoNjodwa3SZHYZFKKiiqr92sO+0GZ0oenybEVUr1Pf98esDfFGc9abpD+vdO11Q7nbrX\n"
	" Yo0y4Q3HPJCcM4HCA==";
static const char SIG_RSA[] =
	"DKIM-Signature: v=1; a=rsa-sha256; c=simple/simple; d=example.test;\n"
	" i=@example.test; q=dns/txt; s=rsa; t=1704067200; h=from : to : subject\n"
	" : message-id; bh=6xBnTELUH4L0V8lRm0N7uPIbLIU1QVtcphDovgBoXhc=;\n"
	" b=BVe6N5jmL8Que/u3oj+hivmOzWa3TtDf94coLXu0esZAujfMvARq7MFPiYxshIELIdybu\n"
	" WrSxsZWlC0wMGPIYjNqeGWc2QM2Un5fd2okf9AQcUo9Rjn3gwOBj4A7HYb3SBUYW0Iy308F\n"
	" FyBzVk2pwLO9R1tB9eQv3WywiwnM4Lw=";
static const char KEY_ED[] = "v=DKIM1; k=ed25519; p=iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w=";
static const char KEY_RSA[] =
	"v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQC5CZNBnxPPqndUE+BE4cEmXBHxtkadD4A53"
	"jWEtRdlvJbNU6C80bJxqXViONOXEZZgBwCIU0sUtWkMvhu3C1qO7DaHooci3MWcJ7w3G1APD+fQ8v9VS26AHKS/5zr5"
	"ijRv3ICR9NjaXKY3EoogpfTio0YXY5lWSBJfVRXIATA+UwIDAQAB";
static const char *const HDRS[] = {
	"From: Alice <alice@example.test>", "To: bob@example.net",
	"Subject: unit test\n\twith a folded subject", "Date: Mon, 1 Jan 2024 00:00:00 +0000",
	"Message-ID: <unit@example.test>",
};

static struct buf body; /* ~31 KB, LF line ends */
static struct dns *dns;
static int dns_fd = -1;
static pthread_t dns_thread;
static struct sockaddr_in dns_addr;

/* ------------------------------------------------ the DNS responder */

static void *responder(void *arg)
{
	(void)arg;
	unsigned char q[512], r[1024];
	for (;;) {
		struct sockaddr_in from;
		socklen_t fl = sizeof(from);
		ssize_t n = recvfrom(dns_fd, q, sizeof(q), 0, (struct sockaddr *)&from, &fl);
		if (n < 0 || (n == 1 && q[0] == '!'))
			return NULL; /* teardown */
		if (n < 17)
			continue;
		char name[256];
		size_t i = 12, o = 0;
		while (i < (size_t)n && q[i] && o + q[i] + 1 < sizeof(name)) {
			size_t l = q[i++];
			for (size_t k = 0; k < l && i < (size_t)n; k++)
				name[o++] = (char)q[i++];
			name[o++] = '.';
		}
		name[o] = '\0';
		size_t qend = i + 5; /* root label, type, class */
		if (qend > (size_t)n)
			continue;
		const char *rec = strcasecmp(name, "ed._domainkey.example.test.") == 0    ? KEY_ED
				  : strcasecmp(name, "rsa._domainkey.example.test.") == 0 ? KEY_RSA
											 : NULL;
		if (strncasecmp(name, "slow", 4) == 0)
			continue; /* never answers */
		memcpy(r, q, qend);
		r[2] = 0x84 | (q[2] & 0x01); /* QR, AA, RD copied */
		r[3] = rec ? 0 : 3;          /* NXDOMAIN */
		memset(r + 6, 0, 6);
		size_t len = qend;
		if (rec) {
			r[7] = 1;
			size_t rl = strlen(rec), rdlen = rl + (rl + 254) / 255;
			unsigned char a[] = { 0xc0, 12, 0, 16, 0, 1, 0, 0, 0, 60, rdlen >> 8, rdlen & 0xff };
			memcpy(r + len, a, sizeof(a));
			len += sizeof(a);
			for (size_t k = 0; k < rl; k += 255) {
				size_t l = rl - k > 255 ? 255 : rl - k;
				r[len++] = (unsigned char)l;
				memcpy(r + len, rec + k, l);
				len += l;
			}
		}
		sendto(dns_fd, r, len, 0, (struct sockaddr *)&from, fl);
	}
}

static int setup(void **state)
{
	(void)state;
	char *err = NULL;
	log_open("test_dkim", LOG_LVL_WARN, NULL);
	if (dkimv_init(&err) < 0)
		fail_msg("%s", err);
	buf_init(&body, 1 << 20);
	for (int i = 0; i < 600; i++)
		buf_printf(&body, "line %d: the quick brown fox jumps over the lazy dog\n", i);
	buf_puts(&body, "\n  trailing  spaces  \n\n\n");

	dns_addr.sin_family = AF_INET;
	dns_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t sl = sizeof(dns_addr);
	dns_fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (dns_fd < 0 || bind(dns_fd, (struct sockaddr *)&dns_addr, sl) < 0 ||
	    getsockname(dns_fd, (struct sockaddr *)&dns_addr, &sl) < 0)
		fail_msg("responder socket");
	pthread_create(&dns_thread, NULL, responder, NULL);
	char server[32];
	snprintf(server, sizeof(server), "127.0.0.1:%u", ntohs(dns_addr.sin_port));
	struct strlist sv = { 0 };
	strlist_add(&sv, server);
	dns = dns_new(&sv, 400, &err);
	strlist_free(&sv);
	if (dns == NULL)
		fail_msg("%s", err);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	dns_free(&dns);
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	sendto(fd, "!", 1, 0, (struct sockaddr *)&dns_addr, sizeof(dns_addr));
	close(fd);
	pthread_join(dns_thread, NULL);
	close(dns_fd);
	buf_free(&body);
	return 0;
}

/* ------------------------------------------------------- helpers */

static const char *const *hdrs = HDRS;

/* Verify sigs + hdrs + text, the body fed in pieces of chunk bytes
 * (0: pseudo-random sizes 1..9000). */
static void verify(const char *const *sigs, size_t nsigs, const char *text, size_t len, size_t chunk,
		   struct dkim_results *r)
{
	struct dkimv *v = dkimv_new(dns, "TESTQID");
	assert_non_null(v);
	for (size_t i = 0; i < nsigs; i++)
		dkimv_header(v, sigs[i], strlen(sigs[i]));
	for (size_t i = 0; i < ARRAY_SIZE(HDRS); i++)
		dkimv_header(v, hdrs[i], strlen(hdrs[i]));
	dkimv_eoh(v);
	unsigned seed = 7;
	for (size_t i = 0; i < len;) {
		size_t n = chunk ? chunk : (seed = seed * 1103515245 + 12345) % 9000 + 1;
		if (n > len - i)
			n = len - i;
		dkimv_body(v, text + i, n);
		dkimv_body(v, text + i, 0);
		i += n;
	}
	dkimv_eom(v, r);
	dkimv_free(&v);
	assert_null(v);
}

/* s with the first "from" replaced by "to" (malloc'd). */
static char *replace(const char *s, const char *from, const char *to)
{
	const char *p = strstr(s, from);
	assert_non_null(p);
	return xasprintf("%.*s%s%s", (int)(p - s), s, to, p + strlen(from));
}

static void expect(const struct dkim_results *r, size_t i, enum auth_res res, const char *reason)
{
	assert_true(i < r->n);
	if (r->v[i].res != res || strcmp(r->v[i].reason, reason) != 0)
		fail_msg("signature %zu: %s \"%s\", expected %s \"%s\"", i, auth_res_name(r->v[i].res),
			 r->v[i].reason, auth_res_name(res), reason);
}

/* --------------------------------------------------------- tests */

static void test_no_signature(void **state)
{
	(void)state;
	struct dkim_results r;
	verify(NULL, 0, body.data, body.len, 0, &r);
	assert_int_equal(r.n, 0);
	dkim_results_free(&r);
	struct dkimv *v = dkimv_new(dns, "Q");
	dkimv_eom(v, &r); /* no header at all */
	assert_int_equal(r.n, 0);
	dkimv_free(&v);
}

static void test_pass_any_chunking(void **state)
{
	(void)state;
	const char *sigs[] = { SIG_ED, SIG_RSA };
	static const size_t chunks[] = { 0, 1, 2, 3, 4095, 4096, 4097, 8191, 8192, 8193, 1 << 20 };
	for (size_t c = 0; c < ARRAY_SIZE(chunks); c++) {
		struct dkim_results r;
		verify(sigs, 2, body.data, body.len, chunks[c], &r);
		assert_int_equal(r.n, 2);
		expect(&r, 0, AR_PASS, "");
		expect(&r, 1, AR_PASS, "");
		assert_string_equal(r.v[0].domain, "example.test");
		assert_string_equal(r.v[0].selector, "ed");
		assert_string_equal(r.v[0].algo, "ed25519-sha256");
		assert_string_equal(r.v[1].algo, "rsa-sha256");
		assert_int_equal(r.v[1].keybits, 1024);
		assert_true(strlen(r.v[0].b) >= 8 && strncmp(r.v[0].b, "fCoNjodw", 8) == 0);
		assert_true(strlen(r.v[1].b) >= 8 && strncmp(r.v[1].b, "BVe6N5jm", 8) == 0);
		dkim_results_free(&r);
	}
}

static void test_modified(void **state)
{
	(void)state;
	const char *sigs[] = { SIG_ED, SIG_RSA };
	struct dkim_results r;
	char *b = xstrdup(body.data);
	b[100] ^= 1;
	verify(sigs, 2, b, body.len, 0, &r);
	expect(&r, 0, AR_FAIL, "body hash mismatch");
	expect(&r, 1, AR_FAIL, "body hash mismatch");
	dkim_results_free(&r);
	/* Without the final empty lines and line end (one is added), both
	 * pass; without the trailing blanks too, only relaxed does. */
	verify(sigs, 2, body.data, body.len - 3, 0, &r);
	expect(&r, 0, AR_PASS, "");
	expect(&r, 1, AR_PASS, "");
	dkim_results_free(&r);
	verify(sigs, 2, body.data, body.len - 5, 0, &r);
	expect(&r, 0, AR_PASS, "");
	expect(&r, 1, AR_FAIL, "body hash mismatch");
	dkim_results_free(&r);
	free(b);
	/* a signed header changed (both); the selector changed (no key) */
	const char *h2[ARRAY_SIZE(HDRS)];
	memcpy(h2, HDRS, sizeof(h2));
	h2[2] = "Subject: unit test\n\twith a changed subject";
	hdrs = h2;
	verify(sigs, 2, body.data, body.len, 0, &r);
	hdrs = HDRS;
	expect(&r, 0, AR_FAIL, "signature verification failed");
	expect(&r, 1, AR_FAIL, "signature verification failed");
	dkim_results_free(&r);
	char *s = replace(SIG_ED, "s=ed", "s=xx");
	const char *sigs2[] = { s, SIG_RSA };
	verify(sigs2, 2, body.data, body.len, 0, &r);
	expect(&r, 0, AR_PERMERROR, "no key");
	expect(&r, 1, AR_PASS, "");
	dkim_results_free(&r);
	free(s);
}

static void test_key_timeout(void **state)
{
	(void)state;
	/* two selectors the server never answers for */
	char *s1 = replace(SIG_ED, "s=ed", "s=slow"), *s2 = replace(SIG_RSA, "s=rsa", "s=slow2");
	const char *sigs[] = { s1, s2, SIG_ED };
	struct dkim_results r;
	int64_t t0 = clock_mono_ms();
	verify(sigs, 3, body.data, body.len, 0, &r);
	int64_t ms = clock_mono_ms() - t0;
	assert_true(ms < 1500); /* one DNS timeout (400 ms) for all, not one each */
	expect(&r, 0, AR_TEMPERROR, "key lookup: timeout");
	expect(&r, 1, AR_TEMPERROR, "key lookup: timeout");
	expect(&r, 2, AR_PASS, "");
	dkim_results_free(&r);
	free(s1);
	free(s2);
}

static void test_hostile_signatures(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"DKIM-Signature:",
		"DKIM-Signature: ;;;;===;;",
		"DKIM-Signature: \x01\x02\xff\xfe; b=; d=; s=",
		"DKIM-Signature: v=1; a=rsa-sha256; d=example.test; s=rsa; h=from; bh=AAAA; b=AAAA",
		"DKIM-Signature: v=1; a=rsa-sha256; d=example.test; s=rsa; h=from; l=99999999999999999999999;"
		" bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=AAAAAAAAAAAA",
		"DKIM-Signature: v=1; a=ed25519-sha256; d=ex ample.test; s=a;b; h=from; bh=x; b=z",
		"DKIM-Signature: v=1; a=rsa-sha256; d=example.test; s=rsa; x=1; h=from; bh=x; b=z",
		"DKIM-Signature: v=9; a=foo; c=bar/baz; q=xx; d=.; s=.; h=:; bh=; b=\n\n\n",
		"dkim-signature : v=1; d=example.test; s=" "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t.u.v.w.x.y"
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa;"
		" h=from; a=rsa-sha256; bh=x; b=y",
	};
	const char *sigs[ARRAY_SIZE(bad) + 1];
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		sigs[i] = bad[i];
	sigs[ARRAY_SIZE(bad)] = SIG_ED;
	struct dkim_results r;
	verify(sigs, ARRAY_SIZE(sigs), body.data, body.len, 0, &r);
	assert_true(r.n >= 1 && r.n <= ARRAY_SIZE(sigs));
	for (size_t i = 0; i + 1 < r.n; i++)
		assert_int_not_equal(r.v[i].res, AR_PASS);
	expect(&r, r.n - 1, AR_PASS, "");
	dkim_results_free(&r);

	/* 40 signature fields: 16 judged, the rest noted */
	const char *many[40];
	for (size_t i = 0; i < ARRAY_SIZE(many); i++)
		many[i] = i % 2 ? SIG_ED : bad[3];
	verify(many, ARRAY_SIZE(many), body.data, body.len, 0, &r);
	assert_int_equal(r.n, 16);
	dkim_results_free(&r);

	/* a huge signature field is dropped, not fed */
	struct buf big;
	buf_init(&big, 1 << 20);
	buf_puts(&big, "DKIM-Signature: v=1; z=");
	for (int i = 0; i < 20000; i++)
		buf_putc(&big, 'A');
	const char *sigs3[] = { big.data, SIG_RSA };
	verify(sigs3, 2, body.data, body.len, 0, &r);
	assert_int_equal(r.n, 1);
	expect(&r, 0, AR_PASS, "");
	dkim_results_free(&r);
	buf_free(&big);
}

static void test_hostile_input(void **state)
{
	(void)state;
	/* NULs, bare CRs, a long line, no final line end: no crash */
	struct buf b;
	buf_init(&b, 1 << 22);
	buf_append(&b, "a\0b\rc\r\n\n", 8);
	for (int i = 0; i < 100000; i++)
		buf_putc(&b, 'x');
	const char *sigs[] = { SIG_ED, "X-Bin: \x01\x02\0", "no colon here", ": empty name", "\n" };
	struct dkim_results r;
	verify(sigs, ARRAY_SIZE(sigs), b.data, b.len, 0, &r);
	assert_true(r.n == 1);
	expect(&r, 0, AR_FAIL, "body hash mismatch");
	dkim_results_free(&r);
	buf_free(&b);
}

static void test_misuse(void **state)
{
	(void)state;
	struct dkim_results r;
	assert_null(dkimv_new(NULL, "Q"));
	dkimv_header(NULL, "a: b", 4);
	dkimv_eoh(NULL);
	dkimv_body(NULL, "x", 1);
	dkimv_eom(NULL, &r);
	assert_int_equal(r.n, 0);
	struct dkimv *v = NULL;
	dkimv_free(&v);

	/* body before the end of the header, header after it, eom twice */
	v = dkimv_new(dns, NULL);
	dkimv_body(v, "ignored\n", 8);
	dkimv_header(v, SIG_RSA, strlen(SIG_RSA));
	for (size_t i = 0; i < ARRAY_SIZE(HDRS); i++)
		dkimv_header(v, HDRS[i], strlen(HDRS[i]));
	dkimv_eoh(v);
	dkimv_eoh(v);
	dkimv_header(v, "X-Late: ignored", 15);
	dkimv_body(v, body.data, body.len);
	dkimv_eom(v, &r);
	expect(&r, 0, AR_PASS, "");
	dkim_results_free(&r);
	dkimv_eom(v, &r);
	assert_int_equal(r.n, 0);
	dkimv_free(&v);

	/* freed while the key lookups run (started at the end of header) */
	v = dkimv_new(dns, "Q");
	dkimv_header(v, SIG_ED, strlen(SIG_ED));
	dkimv_header(v, HDRS[0], strlen(HDRS[0]));
	dkimv_eoh(v);
	dkimv_free(&v);
	dkim_results_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_no_signature),	   cmocka_unit_test(test_pass_any_chunking),
		cmocka_unit_test(test_modified),	   cmocka_unit_test(test_key_timeout),
		cmocka_unit_test(test_hostile_signatures), cmocka_unit_test(test_hostile_input),
		cmocka_unit_test(test_misuse),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
