/*
 * test_utf7.c - modified UTF-7 folder names (RFC 3501 section 5.1.3).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "imapd/imapd.h"

static void check_pair(const char *utf8, const char *wire)
{
	char *enc = mutf7_encode(utf8);
	assert_string_equal(enc, wire);
	char *dec = mutf7_decode(wire);
	assert_non_null(dec);
	assert_string_equal(dec, utf8);
	free(enc);
	free(dec);
}

static void test_roundtrip(void **state)
{
	(void)state;
	check_pair("INBOX", "INBOX");
	check_pair("Tom & Jerry", "Tom &- Jerry");
	/* RFC 3501's own example. */
	check_pair("~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
		   "~peter/mail/&U,BTFw-/&ZeVnLIqe-");
	check_pair("Gr\xc3\xbc\xc3\x9f" "e", "Gr&APwA3w-e");
	check_pair("\xc3\xa9", "&AOk-");
	/* Outside the BMP: a surrogate pair. */
	check_pair("x\xf0\x9f\x98\x80y", "x&2D3eAA-y");
}

static void test_decode_invalid(void **state)
{
	(void)state;
	const char *bad[] = {
		"&",          /* unterminated */
		"&AOk",       /* no '-' */
		"&-&",        /* trailing '&' */
		"&AGEAYgBj-", /* encodes plain ASCII "abc" */
		"&2D0-",      /* lone high surrogate */
		"&3gA-",      /* lone low surrogate */
		"&A!k-",      /* not modified base64 */
		"&AOl-",      /* non-zero padding bits */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *d = mutf7_decode(bad[i]);
		if (d != NULL)
			fail_msg("%s decoded to %s", bad[i], d);
	}
	/* Raw 8-bit is not mUTF-7 (no UTF8=ACCEPT). */
	assert_null(mutf7_decode("caf\xc3\xa9"));
	assert_null(mutf7_decode("tab\there"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_decode_invalid),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
