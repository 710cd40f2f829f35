/*
 * tls.c - the OpenSSL 3 server context: TLS 1.2 minimum, no
 * renegotiation, server cipher preference.  A reload builds a new context
 * and swaps it in; connections keep a reference to the one they began with.
 */
#include "common/common.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

static char *ssl_error(const char *what, const char *file)
{
	unsigned long e = ERR_get_error();
	char detail[256];
	if (e)
		ERR_error_string_n(e, detail, sizeof(detail));
	else
		str_copy(detail, "unknown error", sizeof(detail));
	ERR_clear_error();
	return xasprintf("%s %s: %s", what, file, detail);
}

SSL_CTX *tls_ctx_new(const char *cert_file, const char *key_file, char **error_r)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL) {
		*error_r = ssl_error("SSL_CTX_new", "");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
					 SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_COMPRESSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
				      SSL_MODE_RELEASE_BUFFERS);
	/* TLS 1.2 suites; 1.3 uses OpenSSL's defaults. */
	SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:!aNULL:!eNULL");
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
		*error_r = ssl_error("cannot load certificate", cert_file);
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
		*error_r = ssl_error("cannot load private key", key_file);
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		*error_r = ssl_error("private key does not match certificate", key_file);
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

void tls_ctx_free(SSL_CTX **ctx)
{
	if (*ctx)
		SSL_CTX_free(*ctx);
	*ctx = NULL;
}
