/*
 * store-private.h - internals of the store library shared by its files:
 *
 *   store.c    open/close, folder names (validation, on-disk encoding)
 *   index.c    the SQLite index: schema, prepared statements, transactions
 *   maildir.c  Maildir file names, flags, directory helpers
 *   recover.c  the recovery scan of store_open
 *   folder.c   folder list/create/delete/rename/subscribe
 *   message.c  delivery, reading (also UID lists and changes since a MODSEQ),
 *              flags and keywords, copy/move/expunge
 *   keywords.c IMAP keywords: validation, the dovecot-keywords letters
 *   sync.c     batches, \Recent, the MIME cache
 *   lists.c    whitelist and blacklist, training records, message keys
 *
 * Locking: every change to the index, and every rename/unlink of a message
 * file that the index knows, happens inside one BEGIN IMMEDIATE
 * transaction (the SQLite write lock serialises stores of the same user in
 * all threads and processes).  Only the link of a new delivery happens
 * before the lock is taken, so that the directory fsync is not serialised.
 * Inside a batch (store_batch_begin) that one transaction spans many
 * operations, each of them a SAVEPOINT (index_op_begin and friends).
 */
#ifndef STORE_PRIVATE_H
#define STORE_PRIVATE_H

#include "common/common.h"
#include "store/store.h"

#include <sqlite3.h>
#include <sys/types.h>

#define STORE_SCHEMA_VERSION 3
#define STORE_BUSY_TIMEOUT_MS 10000
#define STORE_CACHE_KB "512"    /* SQLite page cache per open store */
/* A MIME cache write waits at most this long for the write lock. */
#define STORE_CACHE_BUSY_MS 100
/* Maildir: tmp/ files older than this are abandoned. */
#define STORE_TMP_MAX_AGE (36 * 3600)
#define STORE_FOLDER_NAME_MAX 255
/* A directory entry on Linux file systems. */
#define STORE_NAME_MAX 255
/* Unknown letters of a ":2," info part kept across renames (at most the
 * printable ASCII set). */
#define STORE_XFLAGS_SIZE 100
/* Prefix of a folder directory being deleted (never a valid folder). */
#define STORE_TRASH_PREFIX "..deleted."
/* Keyword letters a..z and the file that names them (Dovecot's). */
#define STORE_KW_LETTERS 26
#define STORE_KW_FILE "dovecot-keywords"
/* dovecot-keywords maps cached per store (folders in use at once). */
#define STORE_KW_CACHE_SLOTS 4

enum store_stmt {
	STMT_BEGIN,
	STMT_COMMIT,
	STMT_SAVEPOINT,
	STMT_RELEASE,
	STMT_ROLLBACK_TO,
	STMT_ROLLBACK, /* the last one that needs no tables */
	STMT_FOLDER_GET,
	STMT_FOLDER_ALL,
	STMT_FOLDER_LIST,
	STMT_FOLDER_INSERT,
	STMT_FOLDER_COUNT,
	STMT_FOLDER_BUMP_UID,
	STMT_FOLDER_BUMP_MODSEQ,
	STMT_FOLDER_SET_NAME,
	STMT_FOLDER_DELETE,
	STMT_FOLDER_SUBSCRIBE,
	STMT_FOLDER_CHILDREN,
	STMT_MSG_INSERT,
	STMT_MSG_GET,
	STMT_MSG_RANGE,
	STMT_MSG_UPDATE_FILE,
	STMT_MSG_DELETE,
	STMT_MSG_DELETE_FOLDER,
	STMT_MSG_SCAN,
	STMT_META_GET,
	STMT_META_SET,
	STMT_FOLDER_RECENT_GET,
	STMT_FOLDER_RECENT_SET,
	STMT_MSG_UIDS,
	STMT_MSG_FLAGS,
	STMT_MSG_CHANGED,
	STMT_MSG_KEYWORD_SETS,
	STMT_MSG_KEYWORD_USED,
	STMT_MSG_XFLAG_SETS,
	STMT_CACHE_GET,
	STMT_CACHE_SET,
	STMT_CACHE_COPY,
	STMT_FOLDER_NAME,
	STMT_LIST_ADD,
	STMT_LIST_DEL,
	STMT_LIST_ALL,
	STMT_LIST_MATCH,
	STMT_SENDER_MATCH,
	STMT_SENDER_ALL,
	STMT_SENDER_MISSING,
	STMT_MSG_SET_SENDER,
	STMT_MSG_SET_KEY,
	STMT_KEY_VERDICT,
	STMT_KEY_FIND,
	STMT_KEY_SET_LEARNED,
	STMT_TRAIN_SET,
	STMT_TRAIN_AUTO,
	STMT_TRAIN_ALL,
	STMT_TRAIN_DONE,
	STMT_TRAIN_COUNT,
	STMT_COUNT
};

/* The letters of one folder's dovecot-keywords: name[i] is letter 'a'+i. */
struct kwmap {
	char *name[STORE_KW_LETTERS]; /* NULL: letter free */
};

/* A dovecot-keywords as last read, valid while the file is unchanged. */
struct kwcache {
	char *dir;         /* the folder directory; NULL: slot empty */
	bool exists;
	dev_t dev;
	ino_t ino;
	int64_t mtime_ns;
	int64_t size;
	struct kwmap map;
};

/* A file change of an operation inside a batch, undone when the batch's
 * COMMIT fails: rename(to, from), or unlink(to) when from is NULL. */
struct batch_undo {
	char *from, *to;
};

struct store {
	char *root;       /* absolute DATA_DIR/mail/DOMAIN/LOCALPART */
	char *user;       /* local@domain */
	char *host;       /* hostname as used in Maildir names (\057, \072) */
	sqlite3 *db;
	sqlite3_stmt *stmt[STMT_COUNT];
	char *fi_name;    /* store_folder_info's borrowed name */
	bool fresh_index; /* index_open created the schema: recovery must run */
	void *app;        /* store_set_app */
	void (*app_free)(void *);
	bool batch;       /* inside store_batch_begin .. store_batch_end */
	bool batch_lost;  /* SQLite rolled the batch's transaction back */
	struct batch_undo *undo;
	size_t nundo, undo_cap;
	struct kwcache kw[STORE_KW_CACHE_SLOTS];
	unsigned kw_next; /* the slot to reuse next */
	/* Letters of a folder's file names that no keyword names (a lower-
	 * case letter of another tool): not given out; computed once per
	 * operation, or per batch. */
	int64_t kw_blocked_folder; /* 0: not computed */
	uint32_t kw_blocked;
};

/* A folder row. */
struct folder_row {
	int64_t id;
	char *name;
	uint32_t uidvalidity;
	uint32_t uidnext;
	uint64_t highestmodseq;
	bool subscribed;
};

/* A message row (the columns the store code needs). */
struct msg_row {
	uint32_t uid;
	char *base;        /* the unique part of the file name */
	bool in_new;       /* in new/ (no info part) or cur/ (":2,FLAGS") */
	unsigned flags;
	char xflags[STORE_XFLAGS_SIZE]; /* unknown info letters, sorted */
	uint64_t modseq;
	uint64_t size;
	uint64_t vsize;
	int64_t internaldate;
	char *verdict;
	double score;
	char *learned;
	char *keywords;    /* normalised keyword list, "" or NULL for none */
	char *msgkey;      /* content hash (store_msg.msgkey), NULL: not known */
	char *sender;      /* From address (store_msg.sender), NULL: not known */
};

/* ---------------------------------------------------------------- store.c */

/* Set *error_r (when error_r is not NULL) to a malloc'd message; returns -1. */
int store_error(char **error_r, const char *fmt, ...) PRINTFLIKE(2, 3);
/* The normalised name (INBOX prefix upper-cased), malloc'd, or NULL when
 * not a valid folder name. */
char *folder_name_normalize(const char *name);
/* The Maildir++ directory name of a normalised folder (".Work.2026"),
 * malloc'd; NULL for INBOX. */
char *folder_name_encode(const char *name);
/* The folder name of a directory entry (".Work.2026"), malloc'd, or NULL
 * when it is not the canonical encoding of a valid folder name. */
char *folder_name_decode(const char *dirname);
/* Absolute path of the maildir of a normalised folder, malloc'd. */
char *folder_dir(const struct store *st, const char *name);
/* Create a maildir (dir, cur/, new/, tmp/, plus "maildirfolder" when
 * subfolder); fsyncs what it created.  0 or -1 with *error_r. */
int maildir_make(const char *dir, bool subfolder, char **error_r);

/* ---------------------------------------------------------------- index.c */

int index_open(struct store *st, char **error_r);
int index_reopen(struct store *st, char **error_r);
void index_close(struct store *st);
/* Run SQL without results (set-up, pragmas).  0 or -1. */
int index_exec(struct store *st, const char *sql, char **error_r);
/* The prepared statement, reset and with its bindings cleared. */
sqlite3_stmt *index_stmt(struct store *st, enum store_stmt which);
/* Error "index: WHAT: sqlite message"; resets q when not NULL; -1. */
int index_fail(struct store *st, sqlite3_stmt *q, const char *what, char **error_r);
/* A transaction of its own (refused inside a batch). */
int index_begin(struct store *st, char **error_r);
int index_commit(struct store *st, char **error_r);
void index_rollback(struct store *st);
/* One message operation: a transaction of its own, or inside a batch a
 * savepoint, so that a failure undoes only this operation. */
int index_op_begin(struct store *st, char **error_r);
int index_op_commit(struct store *st, char **error_r);
void index_op_rollback(struct store *st);
/* Inside a batch, after index_op_commit: remember a file change to undo
 * if the batch does not commit (from NULL: a new link to remove). */
void batch_undo_add(struct store *st, const char *from, const char *to);
/* The batch's transaction is gone: put the files back, forget it. */
void batch_abort(struct store *st);
/* 1 found (row filled, free with folder_row_free), 0 not found, -1 error. */
int index_folder_get(struct store *st, const char *name, struct folder_row *row, char **error_r);
/* Like index_folder_get but a missing or invalid folder is an error;
 * folder is the caller's (unnormalised) name.  0 or -1. */
int index_folder_find(struct store *st, const char *folder, struct folder_row *row,
		      char **error_r);
void folder_row_free(struct folder_row *row);
/* Insert a folder row with a fresh UIDVALIDITY (inside a transaction).
 * 0 or -1. */
int index_folder_add(struct store *st, const char *name, bool subscribed, char **error_r);
/* Inside a transaction: take the next UID and MODSEQ of a folder.
 * 0, or -1 (also when the folder row is gone). */
int index_bump_uid(struct store *st, int64_t folder_id, uint32_t *uid_r, uint64_t *modseq_r,
		   char **error_r);
int index_bump_modseq(struct store *st, int64_t folder_id, uint64_t *modseq_r, char **error_r);
/* 1 found (row filled, free with msg_row_free), 0 not found, -1 error. */
int index_msg_get(struct store *st, int64_t folder_id, uint32_t uid, struct msg_row *row,
		  char **error_r);
void msg_row_free(struct msg_row *row);
/* Insert a message (uid from index_bump_uid); the UID of the row, which is
 * an existing row's when (folder, base) was already there.  0 or -1. */
int index_msg_insert(struct store *st, int64_t folder_id, uint32_t uid, uint64_t modseq,
		     const struct msg_row *m, uint32_t *uid_r, char **error_r);
/* Record where the file is now, its flags and (unless NULL) keywords,
 * with a new MODSEQ when bump (inside a transaction).  0 or -1. */
int index_msg_set_file(struct store *st, int64_t folder_id, uint32_t uid, bool in_new,
		       unsigned flags, const char *xflags, const char *keywords, bool bump,
		       uint64_t *modseq_r, char **error_r);
/* Delete a message row and bump the folder's HIGHESTMODSEQ.  0 or -1. */
int index_msg_delete(struct store *st, int64_t folder_id, uint32_t uid, char **error_r);

/* -------------------------------------------------------------- maildir.c */

/* A parsed directory entry of new/ or cur/. */
struct maildir_name {
	char *base;        /* malloc'd */
	bool has_info;     /* ":2," present */
	unsigned flags;
	char xflags[STORE_XFLAGS_SIZE];
};

/* Parse a file name; 1 ok (free name->base), 0 not a Maildir message
 * name (dotfile, empty base, an info part other than ":2,"). */
int maildir_name_parse(const char *fname, struct maildir_name *name);
/* Parse the letters after ":2,"; unknown ones go, sorted, to xflags. */
unsigned maildir_info_parse(const char *info, char xflags[STORE_XFLAGS_SIZE]);
/* The file name for a message: base, or base:2,LETTERS (sorted ASCII)
 * when !in_new.  malloc'd. */
char *maildir_file_name(const char *base, bool in_new, unsigned flags, const char *xflags);
/* Absolute path of a message file, malloc'd. */
char *maildir_msg_path(const char *folder_dir, const char *base, bool in_new, unsigned flags,
		       const char *xflags);
/* A new unique name "<secs>.M<usecs>P<pid>Q<counter>R<hex>.<host>". */
char *maildir_unique(const struct store *st);
/* The Maildir form of this host's name, malloc'd. */
char *maildir_hostname(void);
/* The vsize from ",W=" in a base name; false when absent. */
bool maildir_base_vsize(const char *base, uint64_t *vsize_r);
/* Count LF bytes of the file at dirfd/name; -1 on error (errno). */
int maildir_count_lf(int dirfd, const char *name, uint64_t *lines_r);
/* Look for a message with this base in new/ then cur/ of folder_dir:
 * 1 found (*fname_r malloc'd, *in_new_r), 0 not found, -1 error. */
int maildir_find(const char *folder_dir, const char *base, char **fname_r, bool *in_new_r);
/* Link src into dirfd/name (dir: its path, for errors).  When a hard link
 * is impossible (another file system, link count limit) the file is copied
 * instead, through tmp/ of st, and fsynced.  EEXIST counts as done when
 * the existing file is src itself (same inode).  0 or -1. */
int maildir_link(const struct store *st, const char *src, int dirfd, const char *dir,
		 const char *name, char **error_r);
/* Remove a directory tree without following symlinks (depth-limited). */
int maildir_rm_rf(int parentfd, const char *name);
/* Remove stale files of a tmp/ directory. */
void maildir_clean_tmp(const struct store *st, const char *tmpdir);

/* -------------------------------------------------------------- recover.c */

/* The recovery scan of store_open: folders on disk, files the index lacks,
 * rows whose file is gone, stale tmp/ files.  0 or -1. */
int store_recover(struct store *st, char **error_r);

/* ---------------------------------------------------------------- lists.c */

/* Hex of the first 16 octets of md (n >= 16) into key. */
void msgkey_format(const unsigned char *md, unsigned n, char key[STORE_MSGKEY_SIZE]);
/* The content key of a file; false when it cannot be read. */
bool msgkey_of_file(const char *path, char key[STORE_MSGKEY_SIZE]);
/* The From address of a message file (its first 64 KiB); false when none. */
bool msg_sender_of_file(const char *path, char *out, size_t size);
/* The next queued-time of a training job (microseconds, increasing). */
int64_t train_stamp(void);
/* The verdict and score of another copy of a message (inside a
 * transaction): *verdict_r malloc'd, or NULL when no copy has one. */
int msgkey_verdict(struct store *st, const char *msgkey, char **verdict_r, double *score_r,
		   char **error_r);

/* ------------------------------------------------------------- keywords.c */

/* The xflags of the index are the info letters of the file name other
 * than D F R S T, as on disk: so the keyword letters are among them.  The
 * keywords column is the truth for keywords; the letters follow it, except
 * when another tool renamed a file (then the letters are read back). */

/* Validate a space-separated keyword list and bring it into its one form:
 * each keyword once (case-insensitively), in the spelling map has for it
 * (map may be NULL), sorted case-insensitively.  *out_r malloc'd.  0 or
 * -1 with *error_r. */
int kw_normalize(const char *in, const struct kwmap *map, char **out_r, char **error_r);
/* The same keyword set (case-insensitively; NULL is ""). */
bool kw_equal(const char *a, const char *b);
/* Does xflags carry a letter a..z? */
bool kw_has_letters(const char *xflags);
/* The map of folder directory fdir (cached; the pointer is valid until
 * the next call).  A missing file is an empty map.  0 or -1. */
int kwmap_get(struct store *st, const char *fdir, const struct kwmap **map_r, char **error_r);
/* The keywords a file name with these xflags carries: the letters
 * through map, plus the keywords of index_kw that have no letter (they
 * live in the index only).  malloc'd, normalised. */
char *kw_from_letters(const struct kwmap *map, const char *index_kw, const char *xflags);
/* The xflags for a file with these keywords in folder (folder_id,
 * fdir): xflags_in without the letters of keywords of this folder (all
 * letters a..z when drop_letters: the letters of another folder), plus
 * the letters of keywords; a keyword new to the folder gets a free letter
 * and dovecot-keywords is rewritten (under the write lock).  0 or -1. */
int kw_letters(struct store *st, int64_t folder_id, const char *fdir, const char *keywords,
	       const char *xflags_in, bool drop_letters, char xflags_out[STORE_XFLAGS_SIZE],
	       char **error_r);
void kwcache_free(struct store *st);

/* --------------------------------------------------------------- folder.c */

/* Inside a transaction: create the directory and row of folder name and
 * of its missing parents.  0 or -1. */
int folder_create_with_parents(struct store *st, const char *name, char **error_r);

#endif
