/*
 * test_users.c - addresses, password hashing, the users file and its
 * reloading view (common/users.c).  Real files in a mkdtemp directory.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/common.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------ helpers */

struct tmpdir {
	char dir[64];
	char *users; /* DIR/users */
};

static int setup_dir(void **state)
{
	struct tmpdir *t = calloc(1, sizeof(*t));
	strcpy(t->dir, "/tmp/test_users.XXXXXX");
	if (mkdtemp(t->dir) == NULL) {
		free(t);
		return -1;
	}
	t->users = xasprintf("%s/users", t->dir);
	*state = t;
	return 0;
}

static int teardown_dir(void **state)
{
	struct tmpdir *t = *state;
	DIR *d = opendir(t->dir);
	if (d != NULL) {
		struct dirent *e;
		while ((e = readdir(d)) != NULL) {
			if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
				continue;
			char *p = xasprintf("%s/%s", t->dir, e->d_name);
			if (unlink(p) < 0)
				rmdir(p); /* a directory made by a test */
			free(p);
		}
		closedir(d);
	}
	rmdir(t->dir);
	free(t->users);
	free(t);
	return 0;
}

static bool starts_with(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

static char *read_file_all(const char *path)
{
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	char *s = NULL;
	size_t cap = 0;
	ssize_t n = getdelim(&s, &cap, '\0', f);
	fclose(f);
	if (n < 0) {
		free(s);
		return xstrdup("");
	}
	return s;
}

/* users_file_list collects into one "a,b,c" string */
static void collect_cb(const char *addr, void *arg)
{
	struct buf *b = arg;
	if (b->len > 0)
		buf_putc(b, ',');
	buf_puts(b, addr);
}

static char *list_users(const char *path)
{
	struct buf b;
	char *err = NULL;
	buf_init(&b, 1 << 20);
	buf_puts(&b, "");
	int r = users_file_list(path, collect_cb, &b, &err);
	if (r < 0)
		fail_msg("users_file_list: %s", err);
	char *s = xstrdup(b.data != NULL ? b.data : "");
	buf_free(&b);
	return s;
}

/* ----------------------------------------------------------- addresses */

static void test_address_valid_table(void **state)
{
	(void)state;
	char local64[65], local65[66];
	memset(local64, 'a', 64);
	local64[64] = '\0';
	memset(local65, 'a', 65);
	local65[65] = '\0';
	char *ok64 = xasprintf("%s@d.test", local64);
	char *bad65 = xasprintf("%s@d.test", local65);

	/* 253-octet domain of 63-octet labels, and one octet more */
	char dom253[260];
	snprintf(dom253, sizeof(dom253), "%.63s.%.63s.%.63s.%.61s",
		 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
		 "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
		 "ccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc",
		 "ddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd");
	assert_int_equal(strlen(dom253), 253);
	char *dom254 = xasprintf("%se", dom253);
	assert_int_equal(strlen(dom254), 254);
	/* the 254-octet one ends with a 62-octet label: only the total is wrong */
	char *ok253 = xasprintf("u@%s", dom253);
	char *bad254 = xasprintf("u@%s", dom254);
	char label64[80];
	snprintf(label64, sizeof(label64), "u@%s.test",
		 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");

	const char *valid[] = {
		"a@b",
		"user@example.test",
		"first.last+tag=x_y-z@sub-domain.example.test",
		"0@1.2",
		"a-@d.test",
		"_x_@xn--bcher-kva.test",
		ok64,
		ok253,
	};
	const char *invalid[] = {
		"",
		"@",
		"a@",
		"@d.test",
		"a@@d.test",
		"a@b@c.test",
		"../x@d",
		"..@d",
		"a..b@d",
		"x@d/e",
		"a/b@d",
		".a@d",
		"a.@d",
		"a@-d.test",
		"a@d-.test",
		"a@d..test",
		"a@.d",
		"a@d.",
		"a@d_e.test",
		"a b@d",
		"a@d e",
		"a\x01@d",
		"a:b@d",
		"\xc3\xa9@d.test",
		"A@d.test", /* valid only after normalising */
		"a@D.test",
		"noat",
		bad65,
		bad254,
		label64,
	};
	for (size_t i = 0; i < ARRAY_SIZE(valid); i++) {
		if (!user_address_valid(valid[i]))
			fail_msg("should be valid: %s", valid[i]);
	}
	for (size_t i = 0; i < ARRAY_SIZE(invalid); i++) {
		if (user_address_valid(invalid[i]))
			fail_msg("should be invalid: %s", invalid[i]);
		char out[400];
		char *up = str_lower(xstrdup(invalid[i]));
		bool lower_ok = user_address_valid(up);
		free(up);
		/* normalising accepts exactly what is valid once lower-cased */
		assert_int_equal(user_address_normalize(invalid[i], out, sizeof(out)), lower_ok);
	}
	assert_false(user_address_valid(NULL));
	free(ok64);
	free(bad65);
	free(ok253);
	free(bad254);
	free(dom254);
}

static void test_address_normalize(void **state)
{
	(void)state;
	char out[400];

	assert_true(user_address_normalize("Foo.Bar+X@Example.TEST", out, sizeof(out)));
	assert_string_equal(out, "foo.bar+x@example.test");
	assert_true(user_address_valid(out));

	assert_true(user_address_normalize("a@b", out, 4));
	assert_string_equal(out, "a@b");
	assert_false(user_address_normalize("a@bc", out, 4)); /* does not fit */
	assert_false(user_address_normalize("A..B@d", out, sizeof(out)));
	assert_string_equal(out, "");
	assert_false(user_address_normalize("../X@D", out, sizeof(out)));
	assert_false(user_address_normalize(NULL, out, sizeof(out)));
}

/* ----------------------------------------------------------- passwords */

static void test_hash_roundtrip_every_scheme(void **state)
{
	(void)state;
	static const struct {
		const char *scheme, *want;
	} cases[] = {
		{ "SHA512-CRYPT", "{SHA512-CRYPT}$6$" },
		{ "SHA256-CRYPT", "{SHA256-CRYPT}$5$" },
		{ "BLF-CRYPT", "{BLF-CRYPT}$2y$10$" },
		{ "CRYPT", "{CRYPT}$y$" },
		{ "sha512-crypt", "{SHA512-CRYPT}$6$" }, /* names are case-insensitive */
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		char *err = NULL;
		assert_true(password_scheme_valid(cases[i].scheme));
		char *h = password_hash("correct horse: battery", cases[i].scheme, &err);
		if (h == NULL)
			fail_msg("%s: %s", cases[i].scheme, err);
		if (strncmp(h, cases[i].want, strlen(cases[i].want)) != 0)
			fail_msg("%s: got %s", cases[i].scheme, h);
		/* nothing in the hash that could break a passwd-file line */
		assert_null(strpbrk(strchr(h, '}') + 1, "{}:\r\n"));
		assert_true(password_verify("correct horse: battery", h));
		assert_false(password_verify("correct horse: batterY", h));
		assert_false(password_verify("correct horse: battery ", h));
		assert_false(password_verify("", h));
		/* the bare crypt hash counts as {CRYPT} */
		assert_true(password_verify("correct horse: battery", strchr(h, '}') + 1));

		/* two hashes of one password differ (random salt) */
		char *h2 = password_hash("correct horse: battery", cases[i].scheme, &err);
		assert_non_null(h2);
		assert_string_not_equal(h, h2);
		free(h2);
		free(h);
	}
}

static void test_hash_errors(void **state)
{
	(void)state;
	char *err = NULL;
	char long73[74], long1025[1026];
	memset(long73, 'p', 73);
	long73[73] = '\0';
	memset(long1025, 'p', 1025);
	long1025[1025] = '\0';

	static const struct {
		const char *pw, *scheme, *msg;
	} cases[] = {
		{ "", "SHA512-CRYPT", "empty password" },
		{ "a\nb", "SHA512-CRYPT", "line break" },
		{ "ab\r", "SHA512-CRYPT", "line break" },
		{ "secret", "PLAIN", "unknown password scheme" },
		{ "secret", "MD5-CRYPT", "unknown password scheme" },
		{ "secret", "", "unknown password scheme" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		assert_null(password_hash(cases[i].pw, cases[i].scheme, &err));
		assert_non_null(err);
		if (strstr(err, cases[i].msg) == NULL)
			fail_msg("case %zu: error \"%s\" lacks \"%s\"", i, err, cases[i].msg);
		free(err);
		err = NULL;
	}
	assert_null(password_hash(long73, "BLF-CRYPT", &err));
	assert_non_null(strstr(err, "72 bytes"));
	free(err);
	err = NULL;
	assert_null(password_hash(long1025, "SHA512-CRYPT", &err));
	assert_non_null(strstr(err, "longer than"));
	free(err);
	err = NULL;
	char *h = password_hash(long73, "SHA512-CRYPT", &err); /* fine for SHA-crypt */
	assert_non_null(h);
	assert_true(password_verify(long73, h));
	long73[72] = 'q';
	assert_false(password_verify(long73, h));
	free(h);
	assert_false(password_verify(long1025, "{SHA512-CRYPT}$6$abcdefgh$x"));

	assert_false(password_scheme_valid("PLAIN"));
	assert_false(password_scheme_valid(NULL));
	assert_false(password_scheme_valid("{SHA512-CRYPT}"));
}

/* Made with other implementations when this test was written:
 *   openssl passwd -6 -salt abcdefgh secret
 *   openssl passwd -5 -salt abcdefgh secret
 * and the crypt_blowfish / OpenBSD bcrypt test vector for "U*U". */
#define SHA512_SECRET "$6$abcdefgh$ltjgWl6579NluT/Vi1nwEvcil.G5Nbc4NiXZaNGStk8PSwGfQv72N2CKPPrVACtLtip/cZ/1GM/O6IND4WQhG."
#define SHA256_SECRET "$5$abcdefgh$gruCpC7VkOTspMQTTSAR8mtlO9Upms.fwqE5y16JVM."
#define BCRYPT_UU "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW"

static void test_known_vectors(void **state)
{
	(void)state;
	assert_true(password_verify("secret", "{SHA512-CRYPT}" SHA512_SECRET));
	assert_true(password_verify("secret", "{sha512-crypt}" SHA512_SECRET));
	assert_true(password_verify("secret", "{CRYPT}" SHA512_SECRET));
	assert_true(password_verify("secret", SHA512_SECRET));
	assert_false(password_verify("Secret", "{SHA512-CRYPT}" SHA512_SECRET));
	assert_false(password_verify("secre", "{SHA512-CRYPT}" SHA512_SECRET));
	assert_false(password_verify("secret", "{SHA512-CRYPT}" SHA512_SECRET "x"));
	assert_true(password_verify("secret", "{SHA256-CRYPT}" SHA256_SECRET));
	assert_false(password_verify("secret2", "{SHA256-CRYPT}" SHA256_SECRET));
	assert_true(password_verify("U*U", "{BLF-CRYPT}" BCRYPT_UU));
	assert_false(password_verify("U*V", "{BLF-CRYPT}" BCRYPT_UU));

	/* a hash of another family than its scheme says */
	assert_false(password_verify("secret", "{SHA256-CRYPT}" SHA512_SECRET));
	assert_false(password_verify("secret", "{BLF-CRYPT}" SHA512_SECRET));
	/* never plaintext, never unknown schemes */
	assert_false(password_verify("secret", "{PLAIN}secret"));
	assert_false(password_verify("secret", "{plain}secret"));
	assert_false(password_verify("secret", "{CLEARTEXT}secret"));
	assert_false(password_verify("secret", "{MD5-CRYPT}$1$abcdefgh$x"));
	assert_false(password_verify("secret", "{SHA512-CRYPT" SHA512_SECRET));
	/* empty and locked hashes */
	assert_false(password_verify("secret", ""));
	assert_false(password_verify("secret", "{SHA512-CRYPT}"));
	assert_false(password_verify("", ""));
	assert_false(password_verify("secret", "*"));
	assert_false(password_verify("secret", "!" SHA512_SECRET));
	assert_false(password_verify("secret", "{CRYPT}!" SHA512_SECRET));
	assert_false(password_verify("secret", "garbage"));
	assert_false(password_verify(NULL, SHA512_SECRET));
	assert_false(password_verify("secret", NULL));
}

/* ---------------------------------------------------------- users file */

static void test_file_set_del_list(void **state)
{
	struct tmpdir *t = *state;
	char *err = NULL;
	struct stat st;

	/* add to a missing file creates it, 0600 */
	assert_int_equal(users_file_set(t->users, "Alice@Example.TEST", "pw-a", "SHA512-CRYPT",
					false, true, &err), 0);
	assert_int_equal(stat(t->users, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	char *lockpath = xasprintf("%s.lock", t->users);
	assert_int_equal(stat(lockpath, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	free(lockpath);

	char *s = read_file_all(t->users);
	assert_true(starts_with(s, "alice@example.test:{SHA512-CRYPT}$6$"));
	assert_non_null(strstr(s, "::::::\n"));
	assert_int_equal(strlen(s), (size_t)(strchr(s, '\n') - s + 1)); /* one line */
	free(s);

	/* the admin adds comments and a foreign line; we keep them */
	s = read_file_all(t->users);
	char *text = xasprintf("# users of example.test\n\n%s"
			       "not an address:{PLAIN}x\n"
			       "  # indented comment\n"
			       "carol@example.test:{SHA512-CRYPT}" SHA512_SECRET ":1000:1000::/home/carol::quota=1G",
			       s);
	free(s);
	write_file(t->users, text);
	chmod(t->users, 0640);

	assert_int_equal(users_file_set(t->users, "bob@example.test", "pw-b", "BLF-CRYPT", false,
					true, &err), 0);
	/* the mode the admin chose stays */
	assert_int_equal(stat(t->users, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0640);

	/* add an existing user, passwd of an unknown one */
	assert_int_equal(users_file_set(t->users, "ALICE@example.test", "x", "SHA512-CRYPT", false,
					true, &err), -1);
	assert_string_equal(err, "user alice@example.test already exists");
	free(err);
	err = NULL;
	assert_int_equal(users_file_set(t->users, "dave@example.test", "x", "SHA512-CRYPT", true,
					false, &err), -1);
	assert_string_equal(err, "no such user dave@example.test");
	free(err);
	err = NULL;
	assert_int_equal(users_file_set(t->users, "../x@example.test", "x", "SHA512-CRYPT", false,
					false, &err), -1);
	assert_non_null(strstr(err, "invalid address"));
	free(err);
	err = NULL;
	assert_int_equal(users_file_set(t->users, "eve@example.test", "", "SHA512-CRYPT", false,
					false, &err), -1);
	assert_string_equal(err, "empty password");
	free(err);
	err = NULL;

	s = list_users(t->users);
	assert_string_equal(s, "alice@example.test,carol@example.test,bob@example.test");
	free(s);

	/* passwd keeps carol's other fields; her line moves nowhere */
	assert_int_equal(users_file_set(t->users, "carol@example.test", "new-c", "SHA256-CRYPT",
					true, false, &err), 0);
	s = read_file_all(t->users);
	assert_true(starts_with(s, "# users of example.test\n\nalice@example.test:"));
	assert_non_null(strstr(s, "\nnot an address:{PLAIN}x\n  # indented comment\n"
				  "carol@example.test:{SHA256-CRYPT}$5$"));
	assert_non_null(strstr(s, ":1000:1000::/home/carol::quota=1G\nbob@example.test:{BLF-CRYPT}$2y$10$"));
	assert_null(strstr(s, SHA512_SECRET));
	assert_int_equal(s[strlen(s) - 1], '\n');
	free(s);

	/* del, and del again */
	assert_int_equal(users_file_del(t->users, "Alice@example.test", &err), 0);
	assert_int_equal(users_file_del(t->users, "alice@example.test", &err), -1);
	assert_string_equal(err, "no such user alice@example.test");
	free(err);
	err = NULL;
	s = list_users(t->users);
	assert_string_equal(s, "carol@example.test,bob@example.test");
	free(s);
	s = read_file_all(t->users);
	assert_true(starts_with(s, "# users of example.test\n\nnot an address:{PLAIN}x\n"));
	free(s);

	/* passwd on a missing file, list of a missing file */
	char *missing = xasprintf("%s/none", t->dir);
	assert_int_equal(users_file_set(missing, "a@example.test", "x", "SHA512-CRYPT", true, false,
					&err), -1);
	assert_string_equal(err, "no such user a@example.test");
	free(err);
	err = NULL;
	assert_int_equal(users_file_del(missing, "a@example.test", &err), -1);
	free(err);
	err = NULL;
	s = list_users(missing);
	assert_string_equal(s, "");
	free(s);
	free(missing);

	/* no temp files left behind */
	DIR *d = opendir(t->dir);
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		assert_null(strstr(e->d_name, ".tmp."));
	closedir(d);
	free(text);
}

static void test_file_verify_written_hashes(void **state)
{
	struct tmpdir *t = *state;
	char *err = NULL;
	assert_int_equal(users_file_set(t->users, "a@x.test", "pass-a", "CRYPT", false, true, &err), 0);
	struct userdb *db = userdb_open(t->users);
	assert_int_equal(userdb_verify(db, "a@x.test", "pass-a"), 1);
	assert_int_equal(userdb_verify(db, "A@X.TEST", "pass-a"), 1);
	assert_int_equal(userdb_verify(db, "a@x.test", "pass-b"), 0);
	assert_int_equal(userdb_verify(db, "b@x.test", "pass-a"), 0);
	assert_int_equal(userdb_verify(db, "../a@x.test", "pass-a"), 0);
	userdb_free(&db);
	assert_null(db);
	userdb_free(&db); /* NULL is fine */
}

static void test_userdb_reload(void **state)
{
	struct tmpdir *t = *state;
	char *err = NULL;

	/* missing file: no users, then the file appears */
	struct userdb *db = userdb_open(t->users);
	assert_int_equal(userdb_exists(db, "a@x.test"), 0);
	assert_int_equal(userdb_verify(db, "a@x.test", "secret"), 0);

	write_file(t->users, "a@x.test:{SHA512-CRYPT}" SHA512_SECRET "::::::\n");
	assert_int_equal(userdb_exists(db, "a@x.test"), 1);
	assert_int_equal(userdb_exists(db, "A@X.Test"), 1);
	assert_int_equal(userdb_verify(db, "a@x.test", "secret"), 1);

	/* passwd through the editor: new inode */
	assert_int_equal(users_file_set(t->users, "a@x.test", "newpass", "SHA256-CRYPT", true,
					false, &err), 0);
	assert_int_equal(userdb_verify(db, "a@x.test", "secret"), 0);
	assert_int_equal(userdb_verify(db, "a@x.test", "newpass"), 1);

	assert_int_equal(users_file_set(t->users, "b@x.test", "pw", "SHA512-CRYPT", false, true,
					&err), 0);
	assert_int_equal(userdb_exists(db, "b@x.test"), 1);
	assert_int_equal(users_file_del(t->users, "a@x.test", &err), 0);
	assert_int_equal(userdb_exists(db, "a@x.test"), 0);
	assert_int_equal(userdb_exists(db, "b@x.test"), 1);

	/* rewritten in place (same inode, other size) by hand */
	write_file(t->users, "c@x.test:{SHA512-CRYPT}" SHA512_SECRET "\n");
	assert_int_equal(userdb_exists(db, "b@x.test"), 0);
	assert_int_equal(userdb_exists(db, "c@x.test"), 1);
	assert_int_equal(userdb_verify(db, "c@x.test", "secret"), 1);

	/* removed: no users again */
	assert_int_equal(unlink(t->users), 0);
	assert_int_equal(userdb_exists(db, "c@x.test"), 0);

	/* unreadable (a directory in its place): temporary failure */
	assert_int_equal(mkdir(t->users, 0700), 0);
	assert_int_equal(userdb_exists(db, "c@x.test"), -1);
	assert_int_equal(userdb_verify(db, "c@x.test", "secret"), -1);
	assert_int_equal(rmdir(t->users), 0);
	write_file(t->users, "c@x.test:{SHA512-CRYPT}" SHA512_SECRET "\n");
	assert_int_equal(userdb_exists(db, "c@x.test"), 1);
	userdb_free(&db);
}

static void test_invalid_lines_skipped(void **state)
{
	struct tmpdir *t = *state;
	write_file(t->users,
		   "# comment\n"
		   "\n"
		   "   \n"
		   "good@x.test:{SHA512-CRYPT}" SHA512_SECRET "::::::\n"
		   "nopassword@x.test\n"
		   "../evil@x.test:{SHA512-CRYPT}" SHA512_SECRET "\n"
		   "bad address@x.test:{SHA512-CRYPT}" SHA512_SECRET "\n"
		   "plain@x.test:{PLAIN}secret\n"
		   "Upper@X.Test:{SHA512-CRYPT}" SHA512_SECRET "\r\n"
		   "nopw@x.test:\n"
		   "good@x.test:{PLAIN}second-line-never-counts\n"
		   "last@x.test:{SHA256-CRYPT}" SHA256_SECRET);
	struct userdb *db = userdb_open(t->users);
	assert_int_equal(userdb_exists(db, "good@x.test"), 1);
	assert_int_equal(userdb_verify(db, "good@x.test", "secret"), 1);
	assert_int_equal(userdb_verify(db, "good@x.test", "second-line-never-counts"), 0);
	assert_int_equal(userdb_exists(db, "nopassword@x.test"), 0);
	assert_int_equal(userdb_exists(db, "../evil@x.test"), 0);
	/* a plaintext entry exists (receives mail) but never logs in */
	assert_int_equal(userdb_exists(db, "plain@x.test"), 1);
	assert_int_equal(userdb_verify(db, "plain@x.test", "secret"), 0);
	assert_int_equal(userdb_exists(db, "upper@x.test"), 1);
	assert_int_equal(userdb_verify(db, "UPPER@x.test", "secret"), 1);
	assert_int_equal(userdb_exists(db, "nopw@x.test"), 1);
	assert_int_equal(userdb_verify(db, "nopw@x.test", ""), 0);
	assert_int_equal(userdb_verify(db, "nopw@x.test", "x"), 0);
	assert_int_equal(userdb_verify(db, "last@x.test", "secret"), 1);
	userdb_free(&db);

	char *s = list_users(t->users);
	assert_string_equal(s, "good@x.test,plain@x.test,upper@x.test,nopw@x.test,last@x.test");
	free(s);

	/* an edit keeps the invalid lines verbatim and drops the duplicate */
	char *err = NULL;
	assert_int_equal(users_file_set(t->users, "new@x.test", "pw", "SHA512-CRYPT", false, true,
					&err), 0);
	assert_int_equal(users_file_del(t->users, "good@x.test", &err), 0);
	s = read_file_all(t->users);
	assert_non_null(strstr(s, "# comment\n\n   \nnopassword@x.test\n../evil@x.test:"));
	assert_non_null(strstr(s, "\nbad address@x.test:"));
	assert_non_null(strstr(s, "\nUpper@X.Test:{SHA512-CRYPT}" SHA512_SECRET "\r\n"));
	assert_null(strstr(s, "good@x.test"));
	assert_non_null(strstr(s, "\nlast@x.test:{SHA256-CRYPT}" SHA256_SECRET "\nnew@x.test:"));
	free(s);
	s = list_users(t->users);
	assert_string_equal(s, "plain@x.test,upper@x.test,nopw@x.test,last@x.test,new@x.test");
	free(s);
}

/* Readers in threads while the file is rewritten: never a wrong answer. */
struct reader_arg {
	struct userdb *db;
	int bad;
};

static void *reader(void *p)
{
	struct reader_arg *a = p;
	for (int i = 0; i < 300; i++) {
		if (userdb_exists(a->db, "stay@x.test") != 1)
			a->bad++;
		if (userdb_exists(a->db, "never@x.test") != 0)
			a->bad++;
	}
	return NULL;
}

static void test_userdb_threads(void **state)
{
	struct tmpdir *t = *state;
	char *err = NULL;
	assert_int_equal(users_file_set(t->users, "stay@x.test", "pw", "SHA256-CRYPT", false, true,
					&err), 0);
	struct userdb *db = userdb_open(t->users);
	pthread_t th[4];
	struct reader_arg args[4];
	for (int i = 0; i < 4; i++) {
		args[i] = (struct reader_arg){ db, 0 };
		assert_int_equal(pthread_create(&th[i], NULL, reader, &args[i]), 0);
	}
	for (int i = 0; i < 5; i++) {
		char addr[32];
		snprintf(addr, sizeof(addr), "u%d@x.test", i);
		if (users_file_set(t->users, addr, "pw", "SHA256-CRYPT", false, true, &err) < 0)
			fail_msg("%s", err);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(args[i].bad, 0);
	}
	assert_int_equal(userdb_exists(db, "u4@x.test"), 1);
	userdb_free(&db);
}

int main(void)
{
	log_open("test_users", LOG_LVL_ERR, NULL); /* the skipped-line warnings are expected */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_address_valid_table),
		cmocka_unit_test(test_address_normalize),
		cmocka_unit_test(test_hash_roundtrip_every_scheme),
		cmocka_unit_test(test_hash_errors),
		cmocka_unit_test(test_known_vectors),
		cmocka_unit_test_setup_teardown(test_file_set_del_list, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_file_verify_written_hashes, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_userdb_reload, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_invalid_lines_skipped, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_userdb_threads, setup_dir, teardown_dir),
	};
	return cmocka_run_group_tests_name("users", tests, NULL, NULL);
}
