/*
 * auth.c - what IMAP and POP3 logins share: SASL PLAIN (RFC 4616)
 * decoding, and the per-client-IP slow-down of failed logins.
 */
#include "imapd/imapd.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#define FAIL_TABLE 256               /* client IPs remembered for the slow-down */
#define FAIL_FORGET_S 600
#define FAIL_DELAY_MAX_MS 15000

/* "[authzid] NUL authcid NUL passwd" in base64; "=" is the empty
 * response (RFC 4959).  0 with three malloc'd strings, or -1. */
int sasl_plain_decode(const char *b64, char **authz_r, char **authc_r, char **pass_r)
{
	size_t len = strlen(b64);
	if (strcmp(b64, "=") == 0)
		len = 0;
	if (len % 4 != 0 || len > 8192)
		return -1;
	unsigned char *dec = xmalloc(len + 4);
	int n = len ? EVP_DecodeBlock(dec, (const unsigned char *)b64, (int)len) : 0;
	if (n < 0) {
		free(dec);
		return -1;
	}
	/* EVP_DecodeBlock counts the padding as output bytes. */
	if (len >= 1 && b64[len - 1] == '=')
		n--;
	if (len >= 2 && b64[len - 2] == '=')
		n--;
	const char *p = (const char *)dec, *end = p + n;
	const char *p1 = memchr(p, '\0', (size_t)n);
	const char *p2 = p1 ? memchr(p1 + 1, '\0', (size_t)(end - p1 - 1)) : NULL;
	if (p1 == NULL || p2 == NULL || memchr(p2 + 1, '\0', (size_t)(end - p2 - 1)) != NULL ||
	    p2 == p1 + 1) {
		OPENSSL_cleanse(dec, len + 4);
		free(dec);
		return -1;
	}
	*authz_r = xstrndup(p, (size_t)(p1 - p));
	*authc_r = xstrndup(p1 + 1, (size_t)(p2 - p1 - 1));
	*pass_r = xstrndup(p2 + 1, (size_t)(end - p2 - 1));
	OPENSSL_cleanse(dec, len + 4);
	free(dec);
	return 0;
}

void sasl_plain_free(char *authz, char *authc, char *pass)
{
	free(authz);
	free(authc);
	if (pass) {
		OPENSSL_cleanse(pass, strlen(pass));
		free(pass);
	}
}

struct failrec {
	char ip[64];
	int count;
	time_t last;
};
static pthread_mutex_t fail_lock = PTHREAD_MUTEX_INITIALIZER;
static struct failrec fail_table[FAIL_TABLE];

static struct failrec *fail_find(const char *ip, bool create)
{
	time_t now = time(NULL);
	struct failrec *oldest = &fail_table[0];
	for (size_t i = 0; i < FAIL_TABLE; i++) {
		struct failrec *f = &fail_table[i];
		if (f->ip[0] && now - f->last > FAIL_FORGET_S)
			f->ip[0] = '\0';
		if (f->ip[0] && strcmp(f->ip, ip) == 0)
			return f;
		if (f->last < oldest->last)
			oldest = f;
	}
	if (!create)
		return NULL;
	memset(oldest, 0, sizeof(*oldest));
	str_copy(oldest->ip, ip, sizeof(oldest->ip));
	return oldest;
}

/* Sleep before answering a failed login: 1 s, doubling per failure from
 * this address in the last 10 minutes, at most 15 s (Dovecot's
 * auth_failure_delay idea, per IP so that parallel guessing is slowed). */
void auth_fail_delay(const char *ip)
{
	pthread_mutex_lock(&fail_lock);
	struct failrec *f = fail_find(ip, true);
	f->count++;
	f->last = time(NULL);
	int n = f->count;
	pthread_mutex_unlock(&fail_lock);
	int64_t ms = 1000;
	for (int i = 1; i < n && ms < FAIL_DELAY_MAX_MS; i++)
		ms *= 2;
	if (ms > FAIL_DELAY_MAX_MS)
		ms = FAIL_DELAY_MAX_MS;
	usleep((useconds_t)(ms * 1000));
}
