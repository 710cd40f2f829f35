/*
 * fuzz_mime.c - libFuzzer target for the MIME module: parse the input as a
 * message and compute everything IMAP asks of it (ENVELOPE, BODY,
 * BODYSTRUCTURE, sections, decoded text, the Date).
 */
#include "common/common.h"
#include "common/mime.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mime_msg *m = mime_parse((const char *)data, size);
	struct buf b;
	buf_init(&b, 1 << 20);
	mime_envelope(m, &b);
	buf_reset(&b);
	mime_bodystructure(m, true, &b);
	buf_reset(&b);
	mime_bodystructure(m, false, &b);
	static const uint32_t parts[][3] = { { 1, 0, 0 }, { 2, 1, 0 }, { 1, 2, 3 } };
	static const char *const fields[] = { "From", "Subject" };
	for (size_t i = 0; i < 3; i++)
		for (int kind = MIME_SEC_PART; kind <= MIME_SEC_MIME; kind++) {
			struct mime_section sec = { .part = parts[i], .npart = i + 1,
						    .kind = (enum mime_section_kind)kind,
						    .fields = fields, .nfields = 2 };
			buf_reset(&b);
			mime_section_get(m, &sec, &b);
		}
	buf_reset(&b);
	mime_header_text(m, "subject", &b);
	buf_reset(&b);
	mime_body_text(m, &b);
	mime_text_contains(b.data ? b.data : "", b.len, "x", 1);
	mime_date(m);
	buf_free(&b);
	mime_free(&m);
	return 0;
}
