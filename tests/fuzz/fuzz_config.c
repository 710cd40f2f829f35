/*
 * fuzz_config.c - libFuzzer target for the configuration parser.
 */
#include "common/common.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config_parser *p = config_parser_new("/fuzz/gateway.conf");
	struct config *cfg = NULL;
	char *err = NULL;
	if (config_parser_feed(p, (const char *)data, size, &err) == 0) {
		config_parser_finish(&p, &cfg, &err);
	} else {
		free(err);
		err = NULL;
		config_parser_finish(&p, &cfg, &err);
	}
	free(err);
	config_free(&cfg);
	return 0;
}
