/*
 * mailbox.c - the selected mailbox: the sequence-number map this session
 * has announced, kept in step with the store (other sessions, other imapd
 * processes and filterd change it at any time), and the commands that work
 * on it as a whole: SELECT/EXAMINE (with CONDSTORE, RFC 7162), STATUS,
 * EXPUNGE and UID EXPUNGE (RFC 4315), CLOSE, COPY/MOVE (COPYUID, RFC 4315;
 * MOVE, RFC 6851) and IDLE (RFC 2177).
 *
 * Sync (RFC 3501 section 5.2 and 7.4.1): the folder's HIGHESTMODSEQ
 * changes with every change to it; when it differs from what the session
 * last saw, the messages with a higher MODSEQ give new messages (EXISTS,
 * RECENT) and flag changes (FETCH FLAGS), and the UID list gives expunges.
 * Expunges are only reported where RFC 3501 allows them: not during FETCH,
 * STORE or SEARCH, so sequence numbers stay stable for the client.
 */
#include "imapd/imapd.h"

#include <errno.h>
#include <poll.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define IDLE_KEEPALIVE_MS (2 * 60 * 1000)

/* Keywords of the view: most messages have none, and a thousand sessions
 * on a 10,000-message mailbox must not hold ten million empty strings. */
static char kw_none[1];

char *kw_dup(const char *k)
{
	return k && *k ? xstrdup(k) : kw_none;
}

void kw_free(char *k)
{
	if (k != kw_none)
		free(k);
}

void mailbox_free(struct mailbox **mbp)
{
	struct mailbox *mb = *mbp;
	if (mb == NULL)
		return;
	for (size_t i = 0; i < mb->n; i++)
		kw_free(mb->msgs[i].keywords);
	free(mb->msgs);
	strlist_free(&mb->keywords);
	free(mb->name);
	free(mb);
	*mbp = NULL;
}

static struct mbox_msg *mb_append(struct mailbox *mb, uint32_t uid)
{
	if (mb->n == mb->cap) {
		mb->cap = mb->cap ? mb->cap * 2 : 64;
		mb->msgs = xrealloc(mb->msgs, mb->cap * sizeof(*mb->msgs));
	}
	struct mbox_msg *m = &mb->msgs[mb->n++];
	memset(m, 0, sizeof(*m));
	m->uid = uid;
	return m;
}

static size_t mb_find(const struct mailbox *mb, uint32_t uid)
{
	size_t lo = 0, hi = mb->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (mb->msgs[mid].uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < mb->n && mb->msgs[lo].uid == uid ? lo : (size_t)-1;
}

uint32_t mailbox_seq(const struct mailbox *mb, uint32_t uid)
{
	size_t i = mb_find(mb, uid);
	return i == (size_t)-1 ? 0 : (uint32_t)(i + 1);
}

static bool resolve(const struct mailbox *mb, const char *set, bool uid, struct seqset *out)
{
	memset(out, 0, sizeof(*out));
	if (!uid)
		return seqset_parse(set, (uint32_t)mb->n, out);
	struct seqset us;
	uint32_t maxuid = mb->n ? mb->msgs[mb->n - 1].uid : 0;
	if (!seqset_parse(set, maxuid, &us))
		return false;
	/* RFC 3501 6.4.8: "n:*" with n above every UID still matches the
	 * largest; seqset_parse normalised it to maxuid:n. */
	for (size_t i = 0; i < mb->n; i++)
		if (seqset_contains(&us, mb->msgs[i].uid))
			seqset_add(out, (uint32_t)(i + 1), (uint32_t)(i + 1));
	seqset_free(&us);
	return true;
}

bool mailbox_resolve(struct session *s, const char *set, bool uid, struct seqset *out)
{
	const struct mailbox *mb = s->mbox;
	if (!resolve(mb, set, uid, out)) {
		sess_bad(s, "Invalid message set");
		return false;
	}
	/* RFC 3501 6.4.8: a sequence number beyond the mailbox is an error
	 * (UIDs are not); "*" in an empty mailbox is not. */
	if (!uid && out->n && out->r[out->n - 1].hi > mb->n && !strchr(set, '*')) {
		seqset_free(out);
		sess_bad(s, "No such message");
		return false;
	}
	return true;
}

static void keywords_note(struct session *s, const char *kws, bool *changed)
{
	struct mailbox *mb = s->mbox;
	if (kws == NULL || *kws == '\0')
		return;
	char *copy = xstrdup(kws);
	for (char *sv = NULL, *t = strtok_r(copy, " ", &sv); t; t = strtok_r(NULL, " ", &sv))
		if (!strlist_contains_ci(&mb->keywords, t)) {
			strlist_add(&mb->keywords, t);
			*changed = true;
		}
	free(copy);
}

static void send_flags(struct session *s);

void mailbox_note_keywords(struct session *s, const char *kws)
{
	bool changed = false;
	keywords_note(s, kws, &changed);
	if (changed)
		send_flags(s);
}

static void send_flags(struct session *s)
{
	struct mailbox *mb = s->mbox;
	struct buf b;
	buf_init(&b, 64 * 1024);
	for (size_t i = 0; i < mb->keywords.n; i++) {
		buf_putc(&b, ' ');
		buf_puts(&b, mb->keywords.v[i]);
	}
	sess_untagged(s, "FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft%s)", b.len ? b.data : "");
	if (mb->readonly)
		sess_untagged(s, "OK [PERMANENTFLAGS ()] Read-only mailbox");
	else
		sess_untagged(s, "OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft%s \\*)] Flags permitted",
			      b.len ? b.data : "");
	buf_free(&b);
}

static int load_cb(uint32_t uid, unsigned flags, uint64_t modseq, const char *keywords, void *arg)
{
	struct session *s = arg;
	struct mbox_msg *mm = mb_append(s->mbox, uid);
	mm->flags = flags;
	mm->modseq = modseq;
	mm->keywords = kw_dup(keywords);
	return 0;
}

static uint32_t count_recent(const struct mailbox *mb)
{
	uint32_t r = 0;
	for (size_t i = 0; i < mb->n; i++)
		r += mb->msgs[i].recent;
	return r;
}

static void claim_recent(struct session *s, size_t from_index)
{
	struct mailbox *mb = s->mbox;
	if (mb->readonly || from_index >= mb->n)
		return;
	uint32_t first = 0;
	char *err = NULL;
	/* Only what this session has loaded: a message that arrived since is
	 * claimed by whoever loads it first. */
	uint32_t upto = mb->msgs[mb->n - 1].uid + 1;
	if (store_claim_recent_upto(s->store, mb->name, upto, &first, &err) < 0) {
		log_warnx(s->sid, "claim \\Recent in %s: %s", log_str(mb->name), err);
		free(err);
		return;
	}
	for (size_t i = from_index; i < mb->n; i++)
		if (mb->msgs[i].uid >= first)
			mb->msgs[i].recent = true;
}

void cmd_select(struct session *s, const struct imap_cmd *c, bool readonly)
{
	if (c->nargs < 1 || c->nargs > 2) {
		sess_bad(s, "%s needs a folder name", c->name);
		return;
	}
	if (c->nargs == 2) {
		/* RFC 7162 3.1.8: SELECT folder (CONDSTORE). */
		const struct imap_arg *p = &c->args[1];
		if (p->type != IMAP_ARG_LIST || p->nlist != 1 || !imap_arg_atom(&p->list[0]) ||
		    !str_ieq(imap_arg_atom(&p->list[0]), "CONDSTORE")) {
			sess_bad(s, "Unknown %s parameter", c->name);
			return;
		}
		s->condstore = true;
	}
	/* RFC 3501 6.3.1: a failed SELECT leaves no mailbox selected. */
	mailbox_free(&s->mbox);
	s->state = ST_AUTH;
	const char *name = sess_folder_arg(s, &c->args[0]);
	if (name == NULL)
		return;
	struct store_folder_info fi;
	char *err = NULL;
	int r = store_folder_info(s->store, name, &fi, &err);
	if (r < 0) {
		sess_store_error(s, c->name, err);
		return;
	}
	if (r == 0) {
		sess_tagged(s, "NO", "[NONEXISTENT] No such folder");
		return;
	}
	struct mailbox *mb = xcalloc(1, sizeof(*mb));
	mb->name = xstrdup(fi.name);
	mb->readonly = readonly;
	mb->uidvalidity = fi.uidvalidity;
	mb->uidnext = fi.uidnext;
	mb->highestmodseq = fi.highestmodseq;
	s->mbox = mb;
	if (store_flags_list(s->store, mb->name, 1, 0, load_cb, s, &err) < 0 ||
	    store_folder_keywords(s->store, mb->name, &mb->keywords, &err) < 0) {
		mailbox_free(&s->mbox);
		sess_store_error(s, c->name, err);
		return;
	}
	if (mb->n && mb->msgs[mb->n - 1].uid >= mb->uidnext)
		mb->uidnext = mb->msgs[mb->n - 1].uid + 1;
	if (mb->cap > mb->n + 64) {
		/* No doubling slack for the life of the session. */
		mb->cap = mb->n + 64;
		mb->msgs = xrealloc(mb->msgs, mb->cap * sizeof(*mb->msgs));
	}
	claim_recent(s, 0);
	s->state = ST_SELECTED;

	send_flags(s);
	sess_untagged(s, "%zu EXISTS", mb->n);
	sess_untagged(s, "%u RECENT", count_recent(mb));
	for (size_t i = 0; i < mb->n; i++)
		if (!(mb->msgs[i].flags & STORE_SEEN)) {
			sess_untagged(s, "OK [UNSEEN %zu] First unseen", i + 1);
			break;
		}
	sess_untagged(s, "OK [UIDVALIDITY %u] UIDs valid", mb->uidvalidity);
	sess_untagged(s, "OK [UIDNEXT %u] Predicted next UID", mb->uidnext);
	sess_untagged(s, "OK [HIGHESTMODSEQ %llu] Highest", (unsigned long long)mb->highestmodseq);
	sess_tagged(s, "OK", "[%s] %s completed", readonly ? "READ-ONLY" : "READ-WRITE", c->name);
}

/* ---------------------------------------------------------------- sync */

struct sync_ctx {
	struct session *s;
	struct buf line;
	bool flags_changed;
	size_t old_n;
};

static void send_fetch_flags(struct session *s, size_t i, struct buf *b, bool uid)
{
	const struct mbox_msg *m = &s->mbox->msgs[i];
	buf_reset(b);
	buf_printf(b, "%zu FETCH (", i + 1);
	if (uid)
		buf_printf(b, "UID %u ", m->uid);
	buf_puts(b, "FLAGS ");
	format_flags(b, m->flags, m->keywords, m->recent);
	if (s->condstore)
		buf_printf(b, " MODSEQ (%llu)", (unsigned long long)m->modseq);
	buf_putc(b, ')');
	sess_untagged(s, "%s", b->data);
}

static int changes_cb(const struct store_msg *m, void *arg)
{
	struct sync_ctx *sc = arg;
	struct mailbox *mb = sc->s->mbox;
	size_t i = mb_find(mb, m->uid);
	const char *kw = m->keywords ? m->keywords : "";
	if (i == (size_t)-1) {
		if (mb->n && m->uid <= mb->msgs[mb->n - 1].uid)
			return 0; /* expunged and seen again? never announced: skip */
		struct mbox_msg *mm = mb_append(mb, m->uid);
		mm->flags = m->flags;
		mm->modseq = m->modseq;
		mm->keywords = kw_dup(kw);
		keywords_note(sc->s, kw, &sc->flags_changed);
		return 0;
	}
	struct mbox_msg *mm = &mb->msgs[i];
	bool changed = mm->flags != m->flags || strcmp(mm->keywords, kw) != 0;
	mm->modseq = m->modseq;
	if (!changed)
		return 0;
	mm->flags = m->flags;
	kw_free(mm->keywords);
	mm->keywords = kw_dup(kw);
	keywords_note(sc->s, kw, &sc->flags_changed);
	if (i < sc->old_n)
		send_fetch_flags(sc->s, i, &sc->line, false);
	return 0;
}

static void sync_expunges(struct session *s)
{
	struct mailbox *mb = s->mbox;
	uint32_t *uids = NULL;
	size_t n = 0;
	char *err = NULL;
	if (store_uids(s->store, mb->name, &uids, &n, &err) < 0) {
		log_warnx(s->sid, "sync %s: %s", log_str(mb->name), err);
		free(err);
		return;
	}
	/* Both lists are sorted: mark what the store no longer has, then
	 * report from the highest sequence number down so every EXPUNGE
	 * refers to the numbering the client has at that moment. */
	bool *gone = xcalloc(mb->n ? mb->n : 1, sizeof(bool));
	size_t j = 0, ngone = 0;
	for (size_t i = 0; i < mb->n; i++) {
		while (j < n && uids[j] < mb->msgs[i].uid)
			j++;
		if (j >= n || uids[j] != mb->msgs[i].uid) {
			gone[i] = true;
			ngone++;
		}
	}
	free(uids);
	if (ngone) {
		for (size_t i = mb->n; i-- > 0;)
			if (gone[i])
				sess_untagged(s, "%zu EXPUNGE", i + 1);
		size_t k = 0;
		for (size_t i = 0; i < mb->n; i++) {
			if (gone[i])
				kw_free(mb->msgs[i].keywords);
			else
				mb->msgs[k++] = mb->msgs[i];
		}
		mb->n = k;
	}
	free(gone);
	mb->expunge_pending = false;
}

bool mailbox_sync(struct session *s, bool expunges_ok)
{
	struct mailbox *mb = s->mbox;
	if (mb == NULL)
		return false;
	struct store_folder_info fi;
	char *err = NULL;
	int r = store_folder_state(s->store, mb->name, &fi, &err);
	if (r < 0) {
		log_warnx(s->sid, "sync %s: %s", log_str(mb->name), err);
		free(err);
		return false;
	}
	if (r == 0 || fi.uidvalidity != mb->uidvalidity) {
		/* RFC 3501 2.3.1.1: the client's UIDs are void. */
		sess_untagged(s, "BYE Mailbox %s", r == 0 ? "was deleted or renamed" : "UIDVALIDITY changed");
		s->quit = true;
		s->closing = true;
		return true;
	}
	bool changed = fi.highestmodseq != mb->highestmodseq;
	if (!changed && !(expunges_ok && mb->expunge_pending))
		return false;
	if (expunges_ok)
		sync_expunges(s);
	else if (changed)
		mb->expunge_pending = true;
	if (changed) {
		struct sync_ctx sc = { .s = s, .old_n = mb->n };
		buf_init(&sc.line, 64 * 1024);
		bool failed = false;
		if (store_changes(s->store, mb->name, mb->highestmodseq, changes_cb, &sc, &err) < 0) {
			log_warnx(s->sid, "sync %s: %s", log_str(mb->name), err);
			free(err);
			failed = true; /* try again at the next sync point */
		}
		buf_free(&sc.line);
		if (!failed)
			mb->highestmodseq = fi.highestmodseq;
		if (sc.flags_changed)
			send_flags(s);
		if (mb->n > sc.old_n) {
			claim_recent(s, sc.old_n);
			sess_untagged(s, "%zu EXISTS", mb->n);
			sess_untagged(s, "%u RECENT", count_recent(mb));
		}
		if (mb->n && mb->msgs[mb->n - 1].uid >= mb->uidnext)
			mb->uidnext = mb->msgs[mb->n - 1].uid + 1;
	}
	return changed;
}

/* -------------------------------------------------------------- STATUS */

void cmd_status(struct session *s, const struct imap_cmd *c)
{
	if (c->nargs != 2 || c->args[1].type != IMAP_ARG_LIST) {
		sess_bad(s, "STATUS needs a folder and a list of items");
		return;
	}
	const char *name = sess_folder_arg(s, &c->args[0]);
	if (name == NULL)
		return;
	struct store_folder_info fi;
	char *err = NULL;
	int r = store_folder_info(s->store, name, &fi, &err);
	if (r < 0) {
		sess_store_error(s, "STATUS", err);
		return;
	}
	if (r == 0) {
		sess_tagged(s, "NO", "[NONEXISTENT] No such folder");
		return;
	}
	struct buf b;
	buf_init(&b, 4096);
	const struct imap_arg *items = c->args[1].list;
	for (size_t i = 0; i < c->args[1].nlist; i++) {
		const char *it = imap_arg_atom(&items[i]);
		if (b.len)
			buf_putc(&b, ' ');
		if (it && str_ieq(it, "MESSAGES"))
			buf_printf(&b, "MESSAGES %u", fi.messages);
		else if (it && str_ieq(it, "RECENT"))
			buf_printf(&b, "RECENT %u", fi.recent);
		else if (it && str_ieq(it, "UIDNEXT"))
			buf_printf(&b, "UIDNEXT %u", fi.uidnext);
		else if (it && str_ieq(it, "UIDVALIDITY"))
			buf_printf(&b, "UIDVALIDITY %u", fi.uidvalidity);
		else if (it && str_ieq(it, "UNSEEN"))
			buf_printf(&b, "UNSEEN %u", fi.unseen);
		else if (it && str_ieq(it, "HIGHESTMODSEQ")) {
			buf_printf(&b, "HIGHESTMODSEQ %llu", (unsigned long long)fi.highestmodseq);
			s->condstore = true;
		} else {
			buf_free(&b);
			sess_bad(s, "Unknown STATUS item");
			return;
		}
	}
	struct buf line;
	buf_init(&line, 8192);
	buf_puts(&line, "STATUS ");
	write_folder_name(&line, fi.name);
	buf_printf(&line, " (%s)", b.len ? b.data : "");
	sess_untagged(s, "%s", line.data);
	buf_free(&line);
	buf_free(&b);
	if (s->state == ST_SELECTED)
		mailbox_sync(s, true);
	sess_tagged(s, "OK", "STATUS completed");
}

/* ------------------------------------------------------------- EXPUNGE */

static int collect_deleted(uint32_t uid, unsigned flags, uint64_t modseq, const char *keywords,
			   void *arg)
{
	(void)modseq;
	(void)keywords;
	if (flags & STORE_DELETED)
		seqset_add(arg, uid, uid);
	return 0;
}

/* Expunge \Deleted messages (of uidset only, when given); silent. */
static int expunge_deleted(struct session *s, const struct seqset *uids)
{
	struct mailbox *mb = s->mbox;
	char *err = NULL;
	/* Current flags: another session may have changed \Deleted. */
	mailbox_sync(s, false);
	if (store_batch_begin(s->store, &err) < 0) {
		sess_store_error(s, "EXPUNGE", err);
		return -1;
	}
	/* Under the write lock now: \Deleted as it is, not as the view had
	 * it (another session may have undeleted a message meanwhile). */
	struct seqset deleted = { 0 };
	if (store_flags_list(s->store, mb->name, 1, 0, collect_deleted, &deleted, &err) < 0) {
		seqset_free(&deleted);
		char *e2 = NULL;
		store_batch_end(s->store, &e2);
		free(e2);
		sess_store_error(s, "EXPUNGE", err);
		return -1;
	}
	size_t done = 0;
	for (size_t i = 0; i < mb->n; i++) {
		const struct mbox_msg *m = &mb->msgs[i];
		if (!seqset_contains(&deleted, m->uid) || (uids && !seqset_contains(uids, m->uid)))
			continue;
		if (store_expunge(s->store, mb->name, m->uid, &err) < 0) {
			log_warnx(s->sid, "expunge %s UID %u: %s", log_str(mb->name), m->uid, err);
			free(err);
			err = NULL;
			continue;
		}
		done++;
	}
	seqset_free(&deleted);
	if (store_batch_end(s->store, &err) < 0) {
		sess_store_error(s, "EXPUNGE", err);
		return -1;
	}
	if (done)
		log_info(s->sid, "expunge %s: %zu messages", log_str(mb->name), done);
	return 0;
}

void cmd_expunge(struct session *s, const struct imap_cmd *c, const struct imap_arg *uidset)
{
	if (s->mbox->readonly) {
		sess_tagged(s, "NO", "[READ-ONLY] Mailbox is read-only");
		return;
	}
	if (uidset == NULL && c->nargs != 0) {
		sess_bad(s, "EXPUNGE takes no arguments");
		return;
	}
	struct seqset set = { 0 };
	struct mailbox *mb = s->mbox;
	uint32_t maxuid = mb->n ? mb->msgs[mb->n - 1].uid : 0;
	if (uidset && !seqset_parse(imap_arg_atom(uidset), maxuid, &set)) {
		sess_bad(s, "Invalid UID set");
		return;
	}
	int r = expunge_deleted(s, uidset ? &set : NULL);
	seqset_free(&set);
	if (r < 0)
		return;
	mailbox_sync(s, true);
	sess_tagged(s, "OK", "EXPUNGE completed");
}

void cmd_close(struct session *s, const struct imap_cmd *c, bool expunge)
{
	(void)c;
	if (expunge && !s->mbox->readonly && expunge_deleted(s, NULL) < 0)
		return;
	mailbox_free(&s->mbox);
	s->state = ST_AUTH;
	sess_tagged(s, "OK", "CLOSE completed");
}

/* ----------------------------------------------------------- COPY/MOVE */

void cmd_copy(struct session *s, const struct imap_cmd *c, const struct imap_arg *args, size_t n,
	      bool uid, bool move)
{
	(void)c;
	const char *cmd = move ? "MOVE" : "COPY";
	const char *set = n == 2 ? imap_arg_atom(&args[0]) : NULL;
	if (set == NULL) {
		sess_bad(s, "%s needs a message set and a folder", cmd);
		return;
	}
	struct mailbox *mb = s->mbox;
	if (move && mb->readonly) {
		sess_tagged(s, "NO", "[READ-ONLY] Mailbox is read-only");
		return;
	}
	const char *dest = sess_folder_arg(s, &args[1]);
	if (dest == NULL)
		return;
	struct seqset seqs;
	if (!mailbox_resolve(s, set, uid, &seqs))
		return;
	struct store_folder_info fi;
	char *err = NULL;
	int r = store_folder_state(s->store, dest, &fi, &err);
	if (r <= 0) {
		seqset_free(&seqs);
		if (r < 0) {
			sess_store_error(s, cmd, err);
			return;
		}
		sess_tagged(s, "NO", "[TRYCREATE] No such folder");
		return;
	}
	uint32_t dest_validity = fi.uidvalidity;
	struct seqset src = { 0 }, dst = { 0 };
	bool missing = false;
	if (store_batch_begin(s->store, &err) < 0) {
		seqset_free(&seqs);
		sess_store_error(s, cmd, err);
		return;
	}
	for (size_t k = 0; k < seqs.n; k++)
		for (uint32_t q = seqs.r[k].lo; q <= seqs.r[k].hi && q >= 1; q++) {
			if (q > mb->n)
				break;
			uint32_t suid = mb->msgs[q - 1].uid, nuid = 0;
			r = move ? store_move(s->store, mb->name, suid, dest, &nuid, &err)
				 : store_copy(s->store, mb->name, suid, dest, &nuid, &err);
			if (r < 0) {
				log_info(s->sid, "%s UID %u: %s", cmd, suid, err);
				free(err);
				err = NULL;
				missing = true;
				continue;
			}
			seqset_add(&src, suid, suid);
			seqset_add(&dst, nuid, nuid);
			train_note(s, dest, nuid);
		}
	seqset_free(&seqs);
	if (store_batch_end(s->store, &err) < 0) {
		seqset_free(&src);
		seqset_free(&dst);
		sess_store_error(s, cmd, err);
		return;
	}
	struct buf code;
	buf_init(&code, 1024 * 1024);
	/* RFC 4315: COPYUID may be left out; a set too long for a response
	 * line is, rather than sent cut short. */
	if (src.n && src.n <= 20000 && dst.n <= 20000) {
		buf_printf(&code, "COPYUID %u ", dest_validity);
		seqset_format(&src, &code);
		buf_putc(&code, ' ');
		seqset_format(&dst, &code);
	}
	if (src.n)
		log_info(s->sid, "%s %s -> %s: %llu messages", move ? "move" : "copy", log_str(mb->name),
			 log_str(dest), (unsigned long long)seqset_count(&src));
	if (move) {
		/* RFC 6851 4.3: COPYUID in an untagged OK, then the EXPUNGEs. */
		if (code.len)
			sess_untagged(s, "OK [%s] Moved", code.data);
		mailbox_sync(s, true);
		if (missing)
			sess_tagged(s, "NO", "[EXPUNGEISSUED] Some messages could not be moved");
		else
			sess_tagged(s, "OK", "MOVE completed");
	} else if (missing && src.n == 0) {
		sess_tagged(s, "NO", "[EXPUNGEISSUED] Some messages no longer exist");
	} else {
		mailbox_sync(s, uid);
		if (code.len)
			sess_tagged(s, "OK", "[%s] COPY completed", code.data);
		else
			sess_tagged(s, "OK", "COPY completed");
	}
	buf_free(&code);
	seqset_free(&src);
	seqset_free(&dst);
}

/* ---------------------------------------------------------------- IDLE */

/* RFC 2177: "+ idling", then untagged updates as they happen until the
 * client sends DONE.  Woken by the notifier (any commit to the user's
 * index) within milliseconds of a delivery; a keep-alive every 2 minutes
 * keeps NAT mappings open; the idle timeout still applies. */
/* Open the store again after a suspended wait; false (and BYE) when the
 * index cannot be opened. */
static bool idle_resume(struct session *s, bool *suspended)
{
	if (!*suspended)
		return true;
	char *err = NULL;
	if (store_resume(s->store, &err) < 0) {
		log_errx(s->sid, "IDLE: reopen the index: %s", err);
		free(err);
		sess_untagged(s, "BYE [UNAVAILABLE] Mail store not available");
		s->quit = true;
		s->closing = true;
		return false;
	}
	*suspended = false;
	return true;
}

void cmd_idle(struct session *s, const struct imap_cmd *c)
{
	if (c->nargs != 0) {
		sess_bad(s, "IDLE takes no arguments");
		return;
	}
	struct notify_sub *sub = notify_subscribe(s->app->notify, store_root(s->store));
	conn_write(s->conn, "+ idling\r\n", 10);
	if (s->state == ST_SELECTED)
		mailbox_sync(s, true);
	bool suspended = false;
	int64_t deadline = clock_mono_ms() + s->cfg->imap_idle_timeout_ms;
	int64_t keepalive = clock_mono_ms() + IDLE_KEEPALIVE_MS;
	/* The WAL write that wakes us comes just before the writer publishes
	 * the commit in the shared wal-index: look again shortly after. */
	int64_t recheck = 0;
	int rechecks = 0;
	struct buf *in = conn_rbuf(s->conn);
	bool done = false;
	while (!done && !s->quit) {
		/* A whole line buffered: it must be DONE. */
		char *nl = in->len ? memchr(in->data, '\n', in->len) : NULL;
		if (nl) {
			size_t l = (size_t)(nl - in->data);
			bool ok = (l == 4 || (l == 5 && in->data[4] == '\r')) && strncasecmp(in->data, "DONE", 4) == 0;
			buf_consume(in, l + 1);
			if (!ok) {
				sess_bad(s, "Expected DONE");
				break;
			}
			done = true;
			break;
		}
		if (in->len > 64) {
			buf_reset(in);
			sess_bad(s, "Expected DONE");
			break;
		}
		if (conn_flush(s->conn, 30000) != CONN_OK) {
			s->quit = true;
			break;
		}
		int64_t now = clock_mono_ms();
		if (now >= deadline) {
			sess_untagged(s, "BYE Autologout: idle for too long");
			s->quit = true;
			break;
		}
		if (now >= keepalive) {
			if (!idle_resume(s, &suspended))
				break;
			if (s->state == ST_SELECTED)
				mailbox_sync(s, true);
			sess_untagged(s, "OK Still here");
			keepalive = now + IDLE_KEEPALIVE_MS;
			continue;
		}
		if (recheck && now >= recheck) {
			if (!idle_resume(s, &suspended))
				break;
			if (s->state == ST_SELECTED)
				mailbox_sync(s, true);
			recheck = ++rechecks < 3 ? now + 20 * rechecks * rechecks : 0;
			continue;
		}
		int64_t wait = (deadline < keepalive ? deadline : keepalive) - now;
		if (recheck && recheck - now < wait)
			wait = recheck - now;
		if (!recheck && !suspended) {
			/* A long wait ahead: hold as little as possible (a
			 * thousand sessions may sit here). */
			store_suspend(s->store);
			conn_release_buffers(s->conn);
			buf_free(&s->line);
			daemon_trim_stack();
			suspended = true;
		}
		if (!daemon_wait_begin(s->app->d, &s->link, true)) {
			sess_untagged(s, "BYE Server shutting down");
			s->quit = true;
			break;
		}
		/* Bytes inside TLS that poll cannot see (not a partial line in
		 * rbuf: that waits for more). */
		bool tls_buffered = conn_tls_buffered(s->conn);
		struct pollfd pfd[2] = {
			{ .fd = conn_fd(s->conn), .events = POLLIN },
			{ .fd = sub ? notify_sub_fd(sub) : -1, .events = POLLIN },
		};
		int pr = tls_buffered ? 1 : poll(pfd, 2, (int)wait);
		bool go_on = daemon_wait_begin(s->app->d, &s->link, false);
		if (!go_on) {
			sess_untagged(s, "BYE Server shutting down");
			s->quit = true;
			break;
		}
		if (pr < 0 && errno != EINTR) {
			s->quit = true;
			break;
		}
		if (pr <= 0)
			continue;
		if (sub && (pfd[1].revents & POLLIN)) {
			notify_sub_drain(sub);
			sem_t *turn = s->app->wake_sem;
			if (turn)
				sem_wait(turn);
			bool resumed = idle_resume(s, &suspended);
			if (resumed && s->state == ST_SELECTED)
				mailbox_sync(s, true);
			if (turn)
				sem_post(turn);
			if (!resumed)
				break;
			/* A commit may be written but not yet published (and
			 * several coalesce into one wake-up): look again shortly;
			 * cheap, the index stays open until then. */
			rechecks = 0;
			recheck = clock_mono_ms() + 5;
		}
		if (tls_buffered || (pfd[0].revents & (POLLIN | POLLHUP | POLLERR))) {
			enum conn_status cs = conn_fill(s->conn, 1000);
			if (cs != CONN_OK && cs != CONN_TIMEOUT) {
				s->quit = true;
				break;
			}
		}
	}
	notify_unsubscribe(s->app->notify, &sub);
	if (!s->quit && !idle_resume(s, &suspended))
		done = false;
	if (done) {
		if (s->state == ST_SELECTED)
			mailbox_sync(s, true);
		sess_tagged(s, "OK", "IDLE terminated");
	}
}
