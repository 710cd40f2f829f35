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
};

/* Per-message facts recorded at delivery. */
struct store_meta {
	int64_t internaldate;      /* 0 = now */
	unsigned flags;
	const char *verdict;       /* e.g. "inbox", "junk"; NULL = none */
	double score;
};

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
const char *store_root(const struct store *st);
const char *store_user(const struct store *st);

/* Folder names are '/'-separated, UTF-8 (no control characters), no empty
 * component, no "." or ".." component, no component starting with '.', at
 * most 255 bytes.  "INBOX" is case-insensitive. */
bool store_folder_name_valid(const char *name);
int store_folder_list(struct store *st, int (*cb)(const struct store_folder_info *fi, void *arg),
		      void *arg, char **error_r);
/* 1 found (fi filled; fi->name borrowed until the next call), 0 no such folder. */
int store_folder_info(struct store *st, const char *folder, struct store_folder_info *fi,
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
/* Open the file of a message read-only.  Returns an fd, or -1 with
 * *error_r (no such message, or the file vanished). */
int store_message_open(struct store *st, const char *folder, uint32_t uid, char **error_r);

/* Replace the flags of a message (renames the file to match); the new
 * MODSEQ in *modseq_r (may be NULL). */
int store_set_flags(struct store *st, const char *folder, uint32_t uid, unsigned flags,
		    uint64_t *modseq_r, char **error_r);
/* Copy to another folder of the same store (a hard link), new UID in
 * *uid_r; flags, internal date and verdict are kept. */
int store_copy(struct store *st, const char *folder, uint32_t uid, const char *dest,
	       uint32_t *uid_r, char **error_r);
/* Copy, then expunge the source. */
int store_move(struct store *st, const char *folder, uint32_t uid, const char *dest,
	       uint32_t *uid_r, char **error_r);
/* Remove a message: unlink the file, delete it from the index. */
int store_expunge(struct store *st, const char *folder, uint32_t uid, char **error_r);

#endif
