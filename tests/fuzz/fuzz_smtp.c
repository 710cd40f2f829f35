/*
 * fuzz_smtp.c - libFuzzer target for the SMTP parsers: the input is split
 * into lines by the line reader, each line parsed as a command and, for
 * MAIL/RCPT/BDAT, as a path with parameters; the whole input also goes
 * through the DATA decoder in both modes.
 */
#include "filterd/filterd.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct linereader lr = { .max = SMTP_LINE_MAX };
	const char *in = (const char *)data;
	size_t off = 0;
	while (off < size) {
		struct slice line, args, params, k, v;
		bool crlf;
		size_t consumed;
		enum line_status st = linereader_next(&lr, in + off, size - off, &line, &crlf, &consumed);
		if (st == LINE_MORE && consumed == 0)
			break;
		off += consumed;
		if (st != LINE_OK)
			continue;
		enum smtp_cmd cmd = smtp_cmd_parse(line, &args);
		struct smtp_path p;
		const char *err;
		if ((cmd == CMD_MAIL || cmd == CMD_RCPT) &&
		    smtp_path_parse(args, cmd == CMD_MAIL ? "FROM" : "TO", &p, &params, &err) == 0) {
			if (strlen(p.addr) > SMTP_PATH_MAX)
				abort();
			while (smtp_param_next(&params, &k, &v) == 1)
				;
		}
		uint64_t n;
		bool last;
		if (cmd == CMD_BDAT)
			smtp_bdat_parse(args, &n, &last);
	}
	for (int bdat = 0; bdat <= 1; bdat++) {
		struct smtp_data d;
		char *out = malloc(size + 3);
		size_t outlen, total = 0;
		bool done = false;
		smtp_data_init(&d, 1000, bdat);
		size_t used = smtp_data_feed(&d, in, size, out, &outlen, &done);
		total += outlen;
		if (used > size || outlen > size + 2 || (!done && used != size))
			abort();
		free(out);
		(void)total;
	}
	return 0;
}
