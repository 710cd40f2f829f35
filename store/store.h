/*
 * store.h - one user's mail store: a Maildir++ tree with an SQLite (WAL)
 * index beside it (DESIGN.md "Store layout").
 *
 *   DATA_DIR/mail/DOMAIN/LOCALPART/            INBOX: cur/ new/ tmp/
 *   DATA_DIR/mail/DOMAIN/LOCALPART/.Junk/      folders as Maildir++ .NAME/
 *   DATA_DIR/mail/DOMAIN/LOCALPART/index.sqlite   the index
 *
 * The files are the truth: a message file in new/ or cur/ that the index
 * does not know (a crash between the rename and the index update) gets a
 * UID on the next store_open(); stale files in tmp/ are removed then.
 *
 * A struct store is used by one thread at a time; several stores (threads,
 * processes) may have the same user open: SQLite serialises writers.
 * Returns: 0 ok, -1 error with *error_r (malloc'd) unless stated.
 */
#ifndef STORE_H
#define STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* System flags.  In the Maildir file name (":2,") as D F R S T. */
enum store_flag {
	STORE_SEEN = 1 << 0,     /* S */
	STORE_ANSWERED = 1 << 1, /* R */
	STORE_FLAGGED = 1 << 2,  /* F */
	STORE_DELETED = 1 << 3,  /* T */
	STORE_DRAFT = 1 << 4,    /* D */
};
#define STORE_FLAGS_ALL 0x1f

/* The folders every user has from the first delivery or login on; they
 * cannot be deleted or renamed. */
#define STORE_INBOX "INBOX"
extern const char *const store_special_folders[]; /* NULL-terminated */
/* The RFC 6154 attribute of a special folder ("\\Junk") or NULL. */
const char *store_special_use(const char *folder);
bool store_folder_is_special(const char *folder);

struct store;

struct store_folder_info {
	const char *name;          /* "INBOX", "Junk", "Work/2026" (borrowed) */
	const char *special_use;   /* "\\Junk", ... or NULL */
	uint32_t uidvalidity;
	uint32_t uidnext;
	uint64_t highestmodseq;
	uint32_t messages;
	uint32_t recent;           /* messages with UID >= the \Recent mark */
	uint32_t unseen;           /* messages without STORE_SEEN */
	bool subscribed;
};

struct store_msg {
	uint32_t uid;
	unsigned flags;            /* enum store_flag */
	uint64_t modseq;
	uint64_t size;             /* bytes of the file (LF line ends) */
	uint64_t vsize;            /* RFC822.SIZE: with CRLF line ends */
	int64_t internaldate;      /* seconds since the epoch */
	const char *verdict;       /* what filterd delivered it as, or NULL */
	double score;
	const char *path;          /* absolute path of the file (borrowed) */
	const char *keywords;      /* IMAP keywords, space-separated, "" when none (borrowed) */
	const char *msgkey;        /* content key (copies share it), or NULL (borrowed) */
	const char *sender;        /* From address, lower case, or NULL (borrowed) */
	const char *learned;       /* what the classifier learned it as: "spam", "ham", NULL */
};

/* Per-message facts recorded at delivery. */
struct store_meta {
	int64_t internaldate;      /* 0 = now */
	unsigned flags;
	const char *verdict;       /* e.g. "inbox", "junk"; NULL = none (a copy of a
				    * message already in the store keeps its verdict) */
	double score;
	const char *sender;        /* From address (store_from_address); NULL: read
				    * from the message */
	int autolearn;             /* enum store_learn: a training job queued with the
				    * delivery (the filter's own clear verdicts), unless
				    * one is queued for the message already */
};

/* A message's content key: the first 128 bits of the SHA-256 of its
 * bytes in the store, in hex.  Copies (COPY, MOVE, or the same bytes
 * given back by APPEND) share it. */
#define STORE_MSGKEY_SIZE 33
/* The classifier's database (rules.h bayes_open) of a user, in the store
 * root, and the site-wide one, in DATA_DIR. */
#define STORE_BAYES_FILE "bayes.sqlite"
#define STORE_ADDRESS_MAX 320

/* Open (creating when needed) the store of addr, a valid normalised
 * address (user_address_valid()).  Creates the special folders, opens the
 * index, adds files the index lacks, cleans tmp/. */
int store_open(const char *data_dir, const char *addr, struct store **st_r, char **error_r);
/* store_open with flags: STORE_OPEN_RECOVER_ONCE skips the recovery scan
 * when this process has already recovered this store (a delivery agent
 * that opens the same mailbox many times: the scan of a large mailbox
 * costs milliseconds and holds the index's write lock).  A crash leaves
 * its orphans to the next process's first open. */
#define STORE_OPEN_RECOVER_ONCE 1u
int store_open_flags(const char *data_dir, const char *addr, unsigned flags, struct store **st_r,
		     char **error_r);
void store_close(struct store **st);
/* Give back the index's cached pages (a session about to sit idle). */
void store_release_memory(struct store *st);
/* Close the index while the store sits unused (an IMAP session in IDLE:
 * a thousand of them must not hold a thousand SQLite connections), and
 * open it again before the next use.  Nothing else may be called in
 * between.  store_resume: 0, or -1 with *error_r (the store stays
 * suspended; store_close is still safe). */
void store_suspend(struct store *st);
int store_resume(struct store *st, char **error_r);
const char *store_root(const struct store *st);
const char *store_user(const struct store *st);
/* Data of the caller's that lives as long as the handle (a program that
 * keeps stores open, keeping other per-user handles with them): freed by
 * store_close, or when replaced, with app_free. */
void store_set_app(struct store *st, void *app, void (*app_free)(void *));
void *store_app(const struct store *st);

/* Folder names are '/'-separated, UTF-8 (no control characters), no empty
 * component, no "." or ".." component, no component starting with '.', at
 * most 255 bytes.  "INBOX" is case-insensitive. */
bool store_folder_name_valid(const char *name);
int store_folder_list(struct store *st, int (*cb)(const struct store_folder_info *fi, void *arg),
		      void *arg, char **error_r);
/* 1 found (fi filled; fi->name borrowed until the next call), 0 no such folder. */
int store_folder_info(struct store *st, const char *folder, struct store_folder_info *fi,
		      char **error_r);
/* store_folder_info without the counts (messages, recent, unseen stay 0):
 * one row read, for the sync point of every IMAP command. */
int store_folder_state(struct store *st, const char *folder, struct store_folder_info *fi,
		       char **error_r);
int store_folder_create(struct store *st, const char *folder, char **error_r);
int store_folder_delete(struct store *st, const char *folder, char **error_r);
int store_folder_rename(struct store *st, const char *from, const char *to, char **error_r);
int store_folder_subscribe(struct store *st, const char *folder, bool on, char **error_r);

/* Writing a message: the file is made in tmp/ of the store that creates
 * it, fsynced, and then linked into one or more folders, of this or of
 * other users' stores on the same file system (one copy, hard links). */
struct store_tmp;
int store_tmp_create(struct store *st, struct store_tmp **tmp_r, char **error_r);
/* Append message bytes.  Line ends must be LF (the writer converts). */
int store_tmp_write(struct store_tmp *tmp, const void *data, size_t len, char **error_r);
/* fsync the file; after this no more writes. */
int store_tmp_finish(struct store_tmp *tmp, char **error_r);
/* Make the finished file visible in folder of st: link into new/ (or
 * cur/ when meta->flags is not 0), fsync that directory, record it in
 * the index.  When this returns 0 the message is durable. */
int store_deliver(struct store *st, const char *folder, struct store_tmp *tmp,
		  const struct store_meta *meta, uint32_t *uid_r, char **error_r);
/* Remove the tmp file (after the deliveries, or to abandon it). */
void store_tmp_free(struct store_tmp **tmp);

/* tmp_create + write + finish + deliver + free, for IMAP APPEND. */
int store_append(struct store *st, const char *folder, const void *data, size_t len,
		 const struct store_meta *meta, uint32_t *uid_r, char **error_r);

/* Messages with uid_first <= UID <= uid_last (0 = to the end), in UID
 * order.  cb returns 0 to go on, non-zero to stop (returned). */
int store_messages(struct store *st, const char *folder, uint32_t uid_first, uint32_t uid_last,
		   int (*cb)(const struct store_msg *m, void *arg), void *arg, char **error_r);
/* UID, flags, MODSEQ and keywords of the messages with uid_first <= UID
 * <= uid_last (0 = to the end), in UID order: what an IMAP SELECT needs,
 * without file names.  cb runs while the query does, so it must not use
 * the store; non-zero stops (returned). */
int store_flags_list(struct store *st, const char *folder, uint32_t uid_first, uint32_t uid_last,
		     int (*cb)(uint32_t uid, unsigned flags, uint64_t modseq, const char *keywords,
			       void *arg),
		     void *arg, char **error_r);
/* Open the file of a message read-only.  Returns an fd, or -1 with
 * *error_r (no such message, or the file vanished). */
int store_message_open(struct store *st, const char *folder, uint32_t uid, char **error_r);

/* Replace the flags of a message (renames the file to match); the new
 * MODSEQ in *modseq_r (may be NULL).  Keywords are kept. */
int store_set_flags(struct store *st, const char *folder, uint32_t uid, unsigned flags,
		    uint64_t *modseq_r, char **error_r);

/* IMAP keywords (RFC 3501 flag-keyword): atoms without '\\', at most
 * STORE_KEYWORD_MAX bytes, compared case-insensitively; kept with the
 * spelling first given in the folder.  A keyword list is space-separated.
 * In a file name the first 26 keywords of a folder are the letters a..z,
 * mapped through the folder's "dovecot-keywords" file (as Dovecot and
 * mutt read it); further keywords live in the index only. */
#define STORE_KEYWORD_MAX 255
bool store_keyword_valid(const char *keyword);
/* Replace the flags, and the keywords unless keywords is NULL, of a
 * message.  unchangedsince (RFC 7162 section 3.1.3), when not 0, refuses
 * the change if the message's MODSEQ is greater.  Returns 1 done (the
 * MODSEQ is bumped only when the flags or keywords really changed),
 * 0 refused (nothing changed), -1 error (also: no such message, an
 * invalid keyword).  *modseq_r (may be NULL): the message's MODSEQ after
 * the call. */
int store_set_flags_kw(struct store *st, const char *folder, uint32_t uid, unsigned flags,
		       const char *keywords, uint64_t unchangedsince, uint64_t *modseq_r,
		       char **error_r);
/* The distinct keywords on the folder's messages (for FLAGS and
 * PERMANENTFLAGS), added to *out (one spelling per keyword, sorted
 * case-insensitively).  0 or -1. */
struct strlist;
int store_folder_keywords(struct store *st, const char *folder, struct strlist *out,
			  char **error_r);

/* Copy to another folder of the same store (a hard link), new UID in
 * *uid_r; flags, keywords, internal date, verdict and the MIME cache are
 * kept. */
int store_copy(struct store *st, const char *folder, uint32_t uid, const char *dest,
	       uint32_t *uid_r, char **error_r);
/* Copy, then expunge the source. */
int store_move(struct store *st, const char *folder, uint32_t uid, const char *dest,
	       uint32_t *uid_r, char **error_r);
/* Remove a message: unlink the file, delete it from the index. */
int store_expunge(struct store *st, const char *folder, uint32_t uid, char **error_r);

/* Batches: store_set_flags(_kw), store_copy, store_move, store_expunge,
 * store_claim_recent and store_append/store_deliver between begin and end
 * share one index transaction (one BEGIN IMMEDIATE: the write lock is
 * held until the end; use it for a STORE, COPY or EXPUNGE over many
 * messages, never around waiting for a client).  Each operation is a
 * savepoint: one that fails undoes only itself (its index changes and its
 * file renames) and the batch goes on.  If the final COMMIT fails, renames
 * are put back and copies removed, as for a single operation.  No
 * nesting; folder create/delete/rename are refused inside a batch.
 * store_close() of a store inside a batch rolls it back. */
int store_batch_begin(struct store *st, char **error_r);
int store_batch_end(struct store *st, char **error_r);
bool store_in_batch(const struct store *st);

/* Sync support.  Every change (delivery, flags, keywords, copy into,
 * expunge) bumps the folder's HIGHESTMODSEQ, so a session that sees the
 * same HIGHESTMODSEQ (and UIDVALIDITY) knows that nothing changed. */
/* All UIDs of the folder in ascending order, in a malloc'd array (NULL
 * when *n_r is 0). */
int store_uids(struct store *st, const char *folder, uint32_t **uids_r, size_t *n_r,
	       char **error_r);
/* The messages whose MODSEQ is greater than since_modseq, in UID order;
 * the callback contract of store_messages. */
int store_changes(struct store *st, const char *folder, uint64_t since_modseq,
		  int (*cb)(const struct store_msg *m, void *arg), void *arg, char **error_r);

/* \Recent (RFC 3501 section 2.3.2): the folder keeps a mark R (1 at
 * first).  This atomically reads R and sets the mark to the folder's
 * UIDNEXT: the messages with UID >= *first_recent_r are \Recent for this
 * caller, and for no other session that claims later. */
int store_claim_recent(struct store *st, const char *folder, uint32_t *first_recent_r,
		       char **error_r);
/* The same, claiming only UIDs below upto (those a session has loaded):
 * a message that arrives meanwhile stays for the next claim. */
int store_claim_recent_upto(struct store *st, const char *folder, uint32_t upto,
			    uint32_t *first_recent_r, char **error_r);

/* MIME cache: the ENVELOPE, BODY and BODYSTRUCTURE strings the IMAP
 * server computes once per message (they survive COPY and MOVE).
 * get: 1 found (the strings malloc'd; one that was never set is NULL;
 * any output pointer may be NULL), 0 not cached, -1 error.
 * set: a NULL string keeps what is cached.  Best effort: it waits for
 * the index write lock only briefly; -1 with *error_r means only that
 * nothing was cached (log it and go on). */
int store_msg_cache_get(struct store *st, const char *folder, uint32_t uid, char **envelope_r,
			char **body_r, char **bodystructure_r, char **error_r);
int store_msg_cache_set(struct store *st, const char *folder, uint32_t uid, const char *envelope,
			const char *body, const char *bodystructure, char **error_r);

/* ------------------------------------------------ lists and training */

/* A user's whitelist and blacklist (DESIGN.md "Filtering semantics").
 * Entries are "local@domain" or "@domain", lower case.  They come from
 * two places: mailctl (the lists table) and the messages in the
 * Whitelist and Blacklist folders (each message's From address is an
 * entry while the message is there: expunging or moving out the last
 * message of a sender removes it). */
enum store_list_kind { STORE_WHITE = 1, STORE_BLACK = 2 };
#define STORE_FROM_MAILCTL 1u
#define STORE_FROM_FOLDER 2u
const char *store_list_name(enum store_list_kind kind); /* "white", "black" */
/* Bring an entry into its one form (lower case; "@domain" or
 * "local@domain", domain with at least one dot or a single label, no
 * spaces or controls).  False when it is not one. */
bool store_list_entry_normalize(const char *in, char *out, size_t size);
/* The first mailbox address of a From field value (lower case), as a
 * mail reader shows it.  False when there is none. */
bool store_from_address(const char *value, char *out, size_t size);
/* mailctl's entries.  add: 1 added, 0 there already; del: 1 deleted,
 * 0 not a mailctl entry. */
int store_list_add(struct store *st, enum store_list_kind kind, const char *entry, char **error_r);
int store_list_del(struct store *st, enum store_list_kind kind, const char *entry, char **error_r);
struct store_list_entry {
	enum store_list_kind kind;
	const char *entry;
	unsigned sources;          /* STORE_FROM_* */
	unsigned messages;         /* of the folder, for STORE_FROM_FOLDER */
};
/* Every entry, white then black, sorted; cb non-zero stops (returned). */
int store_list_each(struct store *st, int (*cb)(const struct store_list_entry *e, void *arg),
		    void *arg, char **error_r);
/* The list a sender address is on: 1 with *kind_r and the entry that
 * matched (an address entry beats a domain entry; on both lists at the
 * same level, the blacklist wins), 0 on neither. */
int store_list_match(struct store *st, const char *addr, enum store_list_kind *kind_r,
		     char *entry_r, size_t size, char **error_r);

/* Training records: what a message (its content key) should be learned
 * as, queued in the transaction that moved it and applied afterwards
 * (imapd, mailctl), so that no learning is lost to a crash in between.
 * The values are those of rules.h's enum bayes_class. */
enum store_learn { STORE_LEARN_NONE = 0, STORE_LEARN_SPAM = 1, STORE_LEARN_HAM = 2 };
int store_train_queue(struct store *st, const char *msgkey, enum store_learn want,
		      char **error_r);
struct store_train_job {
	char *msgkey;
	enum store_learn want;
	int64_t queued;
};
/* At most max queued jobs, oldest first (malloc'd array; free with
 * store_train_jobs_free). */
int store_train_pending(struct store *st, size_t max, struct store_train_job **jobs_r,
			size_t *n_r, char **error_r);
void store_train_jobs_free(struct store_train_job *jobs, size_t n);
/* The job is applied: remove it (unless it was queued again since) and
 * record the outcome on every copy of the message. */
int store_train_done(struct store *st, const struct store_train_job *job, char **error_r);
/* Jobs beyond this many are not queued by deliveries (autolearn): a user
 * who never logs in does not grow the queue for ever. */
#define STORE_TRAIN_AUTO_MAX 10000
/* How many jobs wait. */
int store_train_count(struct store *st, uint64_t *n_r, char **error_r);
/* Where a copy of the message with this key is: 1 (*folder_r malloc'd,
 * *uid_r), 0 none. */
int store_msgkey_find(struct store *st, const char *msgkey, char **folder_r, uint32_t *uid_r,
		      char **error_r);
/* The content key of a message, computed from its file (and recorded)
 * when the index does not know it yet.  0 or -1. */
int store_msgkey_get(struct store *st, const char *folder, uint32_t uid,
		     char key_r[STORE_MSGKEY_SIZE], char **error_r);
/* The content key of message bytes (as the store would write them). */
void store_msgkey_of(const void *data, size_t len, char key_r[STORE_MSGKEY_SIZE]);

#endif
