/*
 * fuzz_imap.c - libFuzzer target for the IMAP command parser, sequence
 * sets and SEARCH: the input is fed to the parser in two halves (literals
 * accepted when small, rejected when not), every parsed command's
 * arguments go through search_parse, and every atom through
 * seqset_parse and the modified UTF-7 decoder.
 */
#include "imapd/imapd.h"

#include <stdlib.h>
#include <string.h>

static void walk(const struct imap_arg *a, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (a[i].type == IMAP_ARG_LIST) {
			walk(a[i].list, a[i].nlist);
			continue;
		}
		const char *s = imap_arg_atom(&a[i]);
		if (s) {
			struct seqset set;
			if (seqset_parse(s, 100, &set))
				seqset_free(&set);
			free(mutf7_decode(s));
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct imap_parser *p = imap_parser_new(4096, 65536, 1000);
	const char *in = (const char *)data;
	size_t half = size / 2, off = 0;
	for (int round = 0; round < 1000 && off < size; round++) {
		size_t end = off < half ? half : size;
		size_t consumed = 0;
		enum imap_parse_status st = imap_parser_feed(p, in + off, end - off, &consumed);
		off += consumed;
		if (st == IMAP_PARSE_DONE) {
			const struct imap_cmd *c = imap_parser_cmd(p);
			walk(c->args, c->nargs);
			struct search_prog *prog = NULL;
			bool badcs;
			char *err = NULL;
			if (search_parse(c->args, c->nargs, 50, 100, &prog, &badcs, &err) == 0) {
				struct search_msg m = { .seq = 1, .uid = 7, .flags = 1, .keywords = "a b" };
				search_match(prog, &m);
				search_free(&prog);
			}
			free(err);
			imap_parser_reset(p);
		} else if (st == IMAP_PARSE_LITERAL) {
			if (imap_parser_literal_size(p) < 1024)
				imap_parser_literal_continue(p);
			else
				imap_parser_literal_reject(p);
		} else if (st == IMAP_PARSE_ERROR) {
			if (imap_parser_error_fatal(p))
				break;
			imap_parser_reset(p);
		} else if (consumed == 0 && end == size) {
			break;
		}
	}
	imap_parser_free(&p);
	return 0;
}
