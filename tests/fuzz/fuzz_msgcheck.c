/*
 * fuzz_msgcheck.c - libFuzzer target for what the sender checks parse
 * from a message: the streaming header/body split (fed in chunks whose
 * sizes come from the input), the delivered header section (which must
 * be the input minus removed fields), the From domain for DMARC, and the
 * domains of the links for URI lists.  No DNS, no DKIM (ck is NULL).
 */
#include "filterd/filterd.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct config cfg;
	cfg.hostname = "mx.example.test";
	cfg.max_message_size = 1 << 24;
	if (size < 1)
		return 0;
	size_t chunk = (size_t)data[0] % 64 + 1;
	const char *text = (const char *)data + 1;
	size_t len = size - 1;

	struct spool sp;
	spool_init(&sp, "/tmp");
	struct msgcheck m;
	msgcheck_begin(&m, &cfg, NULL, "QID", &sp);
	for (size_t off = 0; off < len;) {
		size_t n = chunk < len - off ? chunk : len - off;
		msgcheck_feed(&m, text + off, n);
		off += n;
	}
	msgcheck_end(&m);

	/* Nothing is lost or added but the removed fields. */
	struct buf out;
	buf_init(&out, 1u << 26);
	size_t removed = 0;
	for (size_t i = 0; i < m.nfields; i++) {
		if (msgcheck_field_removed(&m, i)) {
			size_t b = i + 1 < m.nfields ? m.fields[i + 1] : m.hdr_end;
			removed += b - m.fields[i];
		}
	}
	msgcheck_header_out(&m, &out);
	spool_read_head(&sp, &out, 1u << 25);
	if (out.len + removed != len)
		abort();
	if (removed == 0 && (out.len != len || (len && memcmp(out.data, text, len) != 0)))
		abort();

	char **from;
	size_t nf = msgcheck_from_values(&m, &from);
	char dom[256];
	const char *why;
	dmarc_from_domain((const char *const *)from, nf, dom, sizeof(dom), &why);
	for (size_t i = 0; i < nf; i++)
		free(from[i]);
	free(from);

	char **v = NULL;
	size_t nd = uri_domains(text, len, &v, 0, 50);
	for (size_t i = 0; i < nd; i++) {
		if (strlen(v[i]) > 253)
			abort();
		free(v[i]);
	}
	free(v);

	buf_free(&out);
	msgcheck_reset(&m);
	spool_reset(&sp);
	buf_free(&sp.mem);
	return 0;
}
