/*
 * imapd - the IMAP and POP3 daemon.  Not built yet (issues 3 and 4): this
 * placeholder says so and exits non-zero, so nothing pretends to work.
 */
#include <stdio.h>

int main(void)
{
	fprintf(stderr, "imapd: not built yet: IMAP and POP3 arrive with the next issues; "
			"read delivered mail in the Maildir under data_dir/mail/\n");
	return 2;
}
