/*
 * flags.c - STORE and UID STORE (RFC 3501 6.4.6): FLAGS, +FLAGS, -FLAGS
 * and their .SILENT forms over system flags and keywords, with CONDSTORE
 * UNCHANGEDSINCE and the [MODIFIED] response code (RFC 7162 3.1.3).
 *
 * The changes of one command run in one store batch, under the index's
 * write lock: +FLAGS/-FLAGS apply to the flags as they are then, and the
 * responses wait until the batch ends, so a slow client never holds the
 * lock.
 */
#include "imapd/imapd.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

static bool kw_has(const char *list, const char *k)
{
	size_t kl = strlen(k);
	for (const char *p = list; *p;) {
		const char *e = strchr(p, ' ');
		size_t l = e ? (size_t)(e - p) : strlen(p);
		if (l == kl && strncasecmp(p, k, l) == 0)
			return true;
		if (!e)
			break;
		p = e + 1;
	}
	return false;
}

/* mode: 0 replace, 1 add, -1 remove. */
static char *kw_apply(const char *cur, const char *arg, int mode)
{
	struct buf b;
	buf_init(&b, 1024 * 1024);
	buf_puts(&b, "");
	if (mode == 0) {
		buf_puts(&b, arg);
	} else {
		char *copy = xstrdup(cur);
		for (char *sv = NULL, *t = strtok_r(copy, " ", &sv); t; t = strtok_r(NULL, " ", &sv)) {
			if (mode < 0 && kw_has(arg, t))
				continue;
			if (b.len)
				buf_putc(&b, ' ');
			buf_puts(&b, t);
		}
		free(copy);
		if (mode > 0) {
			char *a = xstrdup(arg);
			for (char *sv = NULL, *t = strtok_r(a, " ", &sv); t; t = strtok_r(NULL, " ", &sv)) {
				if (kw_has(cur, t))
					continue;
				if (b.len)
					buf_putc(&b, ' ');
				buf_puts(&b, t);
			}
			free(a);
		}
	}
	char *r = xstrdup(b.data ? b.data : "");
	buf_free(&b);
	return r;
}

struct refresh {
	struct mailbox *mb;
	const struct seqset *seqs;
};

/* Bring the view's entries of the STORE set up to date (their FETCH
 * responses follow, so the client learns of it). */
static int refresh_cb(uint32_t uid, unsigned flags, uint64_t modseq, const char *keywords,
		      void *arg)
{
	struct refresh *rf = arg;
	uint32_t seq = mailbox_seq(rf->mb, uid);
	if (seq == 0 || !seqset_contains(rf->seqs, seq))
		return 0;
	struct mbox_msg *m = &rf->mb->msgs[seq - 1];
	m->flags = flags;
	m->modseq = modseq;
	if (strcmp(m->keywords, keywords) != 0) {
		kw_free(m->keywords);
		m->keywords = kw_dup(keywords);
	}
	return 0;
}

void cmd_store(struct session *s, const struct imap_cmd *c, const struct imap_arg *args, size_t n,
	       bool uid)
{
	(void)c;
	struct mailbox *mb = s->mbox;
	const char *set = n >= 3 ? imap_arg_atom(&args[0]) : NULL;
	if (set == NULL) {
		sess_bad(s, "STORE needs a message set, an item and flags");
		return;
	}
	size_t ai = 1;
	uint64_t unchangedsince = 0;
	bool has_unchanged = false;
	if (args[1].type == IMAP_ARG_LIST) {
		/* RFC 7162 3.1.3: (UNCHANGEDSINCE modseq) */
		const struct imap_arg *m = &args[1];
		const char *k = m->nlist == 2 ? imap_arg_atom(&m->list[0]) : NULL;
		const char *v = k ? imap_arg_atom(&m->list[1]) : NULL;
		char *e = NULL;
		unsigned long long us = v ? strtoull(v, &e, 10) : 0;
		if (k == NULL || !str_ieq(k, "UNCHANGEDSINCE") || v == NULL || *e || *v == '-') {
			sess_bad(s, "Invalid STORE modifier");
			return;
		}
		unchangedsince = us;
		has_unchanged = true;
		s->condstore = true;
		ai = 2;
	}
	const char *item = n > ai + 1 ? imap_arg_atom(&args[ai]) : NULL;
	if (item == NULL) {
		sess_bad(s, "STORE needs an item and flags");
		return;
	}
	int mode;
	const char *base = item;
	if (*base == '+' || *base == '-') {
		mode = *base == '+' ? 1 : -1;
		base++;
	} else
		mode = 0;
	bool silent;
	if (str_ieq(base, "FLAGS"))
		silent = false;
	else if (str_ieq(base, "FLAGS.SILENT"))
		silent = true;
	else {
		sess_bad(s, "Unknown STORE item");
		return;
	}
	const struct imap_arg *fl = &args[ai + 1];
	size_t nfl = n - ai - 1;
	if (nfl == 1 && fl->type == IMAP_ARG_LIST) {
		nfl = fl->nlist;
		fl = fl->list;
	}
	unsigned flags;
	struct buf kw;
	buf_init(&kw, 1024 * 1024);
	buf_puts(&kw, "");
	const char *e;
	if (parse_flag_list(fl, nfl, &flags, &kw, &e) < 0) {
		buf_free(&kw);
		sess_bad(s, "%s", e);
		return;
	}
	if (mb->readonly) {
		buf_free(&kw);
		sess_tagged(s, "NO", "[READ-ONLY] Mailbox is read-only");
		return;
	}
	struct seqset seqs;
	if (!mailbox_resolve(s, set, uid, &seqs)) {
		buf_free(&kw);
		return;
	}
	/* Apply to the current state (another session may have changed it). */
	mailbox_sync(s, false);
	char *err = NULL;
	if (store_batch_begin(s->store, &err) < 0) {
		buf_free(&kw);
		seqset_free(&seqs);
		sess_store_error(s, "STORE", err);
		return;
	}
	/* Under the write lock now: +FLAGS/-FLAGS apply to the flags as they
	 * are, not as the view had them (another session may have changed
	 * them since the sync above). */
	struct refresh rf = { .mb = mb, .seqs = &seqs };
	for (size_t k = 0; mode != 0 && k < seqs.n; k++) {
		uint32_t lo = seqs.r[k].lo ? seqs.r[k].lo : 1, hi = seqs.r[k].hi < mb->n ? seqs.r[k].hi : (uint32_t)mb->n;
		if (lo > hi)
			continue;
		if (store_flags_list(s->store, mb->name, mb->msgs[lo - 1].uid, mb->msgs[hi - 1].uid,
				     refresh_cb, &rf, &err) < 0) {
			log_warnx(s->sid, "STORE: current flags: %s", err);
			free(err);
			err = NULL;
			break;
		}
	}
	struct seqset modified = { 0 };
	struct buf line;
	buf_init(&line, 1024 * 1024);
	/* The responses wait until the transaction ends: a slow client must
	 * never hold the user's index (deliveries wait on it). */
	struct buf pending;
	buf_init(&pending, (size_t)1 << 31);
	bool missing = false;
	for (size_t k = 0; k < seqs.n; k++)
		for (uint32_t q = seqs.r[k].lo ? seqs.r[k].lo : 1; q <= seqs.r[k].hi && q <= mb->n; q++) {
			struct mbox_msg *m = &mb->msgs[q - 1];
			unsigned nf = mode == 0 ? flags : mode > 0 ? (m->flags | flags) : (m->flags & ~flags);
			if (has_unchanged && unchangedsince == 0) {
				/* RFC 7162 3.1.3: UNCHANGEDSINCE 0 always fails. */
				seqset_add(&modified, uid ? m->uid : q, uid ? m->uid : q);
				continue;
			}
			char *nkw = kw_apply(m->keywords, kw.data, mode);
			uint64_t modseq = 0;
			int r = store_set_flags_kw(s->store, mb->name, m->uid, nf, nkw, unchangedsince,
						   &modseq, &err);
			if (r < 0) {
				free(nkw);
				log_info(s->sid, "STORE UID %u: %s", m->uid, err);
				free(err);
				err = NULL;
				missing = true;
				continue;
			}
			if (r == 0) {
				free(nkw);
				seqset_add(&modified, uid ? m->uid : q, uid ? m->uid : q);
				continue;
			}
			m->flags = nf;
			m->modseq = modseq;
			kw_free(m->keywords);
			m->keywords = kw_dup(nkw);
			free(nkw);
			if (silent && !s->condstore)
				continue;
			buf_reset(&line);
			buf_printf(&line, "%u FETCH (", q);
			if (uid)
				buf_printf(&line, "UID %u ", m->uid);
			if (!silent) {
				buf_puts(&line, "FLAGS ");
				format_flags(&line, m->flags, m->keywords, m->recent);
			}
			if (s->condstore)
				buf_printf(&line, "%sMODSEQ (%llu)", silent ? "" : " ", (unsigned long long)m->modseq);
			buf_puts(&line, ")\r\n");
			buf_puts(&pending, "* ");
			buf_append(&pending, line.data, line.len);
		}
	if (store_batch_end(s->store, &err) < 0) {
		buf_free(&pending);
		buf_free(&line);
		buf_free(&kw);
		seqset_free(&seqs);
		seqset_free(&modified);
		sess_store_error(s, "STORE", err);
		return;
	}
	/* New keywords: FLAGS/PERMANENTFLAGS first, then the FETCHes. */
	if (kw.len)
		mailbox_note_keywords(s, kw.data);
	sess_write(s, pending.data, pending.len);
	buf_free(&pending);
	buf_free(&line);
	buf_free(&kw);
	seqset_free(&seqs);
	mailbox_sync(s, uid);
	if (modified.n) {
		struct buf b;
		buf_init(&b, 1024 * 1024);
		seqset_format(&modified, &b);
		sess_tagged(s, "OK", "[MODIFIED %s] Conditional STORE failed", b.data);
		buf_free(&b);
	} else if (missing)
		sess_tagged(s, "NO", "[EXPUNGEISSUED] Some of the messages no longer exist");
	else
		sess_tagged(s, "OK", "STORE completed");
	seqset_free(&modified);
}

