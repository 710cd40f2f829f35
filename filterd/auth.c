/*
 * auth.c - what the sender checks have in common: result names
 * (RFC 8601 section 2.7).
 */
#include "filterd/filterd.h"

const char *auth_res_name(enum auth_res r)
{
	switch (r) {
	case AR_PASS:
		return "pass";
	case AR_FAIL:
		return "fail";
	case AR_SOFTFAIL:
		return "softfail";
	case AR_NEUTRAL:
		return "neutral";
	case AR_TEMPERROR:
		return "temperror";
	case AR_PERMERROR:
		return "permerror";
	default:
		return "none";
	}
}
