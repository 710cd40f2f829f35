/*
 * diag.c - what loading rules reports: errors and warnings with FILE:LINE.
 */
#include "rules/rules-private.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void rules_report_free(struct rules_report *r)
{
	for (size_t i = 0; i < r->n; i++) {
		free(r->v[i].file);
		free(r->v[i].msg);
	}
	free(r->v);
	memset(r, 0, sizeof(*r));
}

void rules_report_format(const struct rules_report *r, struct buf *out)
{
	for (size_t i = 0; i < r->n; i++)
		buf_printf(out, "%s:%u: %s: %s\n", r->v[i].file, r->v[i].line,
			   r->v[i].error ? "error" : "warning", r->v[i].msg);
}

void rules_diag_add(struct rules_report *rep, const char *file, unsigned line, bool error,
		    const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	rep->v = xrealloc(rep->v, (rep->n + 1) * sizeof(*rep->v));
	rep->v[rep->n].file = xstrdup(file ? file : "");
	rep->v[rep->n].line = line;
	rep->v[rep->n].error = error;
	rep->v[rep->n].msg = xstrdup(msg);
	rep->n++;
	if (error)
		rep->errors++;
	else
		rep->warnings++;
}
