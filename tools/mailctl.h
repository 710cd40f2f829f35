/*
 * mailctl.h - what the files of mailctl share (tools/ only).
 */
#ifndef TOOLS_MAILCTL_H
#define TOOLS_MAILCTL_H

#include "common/common.h"

#define EXIT_ERROR 1
#define EXIT_USAGE 2

struct mailctl {
	const char *config_path;
	struct config *cfg; /* loaded by need_config() */
};

/* "mailctl: message" on stderr; returns EXIT_ERROR. */
int errmsg(const char *fmt, ...) PRINTFLIKE(1, 2);
/* The same, then the usage; returns EXIT_USAGE. */
int usage_error(const char *fmt, ...) PRINTFLIKE(1, 2);
/* Load the configuration once: 0, or -1 after a message. */
int need_config(struct mailctl *m);

/* rules.c */
int cmd_rules(struct mailctl *m, int argc, char **argv);
int cmd_score(struct mailctl *m, int argc, char **argv);
int cmd_log(struct mailctl *m, int argc, char **argv);

/* train.c */
int cmd_list(struct mailctl *m, int argc, char **argv);
int cmd_learn(struct mailctl *m, int argc, char **argv);
int cmd_bayes(struct mailctl *m, int argc, char **argv);

#endif
