"""Delivery into the Maildir++ store through smtplib and swaks: trace
headers, the message text byte for byte, several recipients, refusals."""
import os
import re
import smtplib
import sqlite3
import subprocess
import time
import uuid
from email.utils import parsedate_to_datetime

import pytest

from gwlib import HOSTNAME, RawSMTP, split_trace, to_lf

QUEUED = re.compile(r"2\.0\.0 Ok: queued as (\S+)")


def marker():
    return uuid.uuid4().hex


def test_ehlo_advertises_extensions(gw):
    with gw.smtp() as s:
        code, text = s.ehlo("client.example.test")
        assert code == 250
        lines = text.decode().split("\n")
        assert lines[0] == HOSTNAME
        exts = {l.split(" ")[0].upper(): l for l in lines[1:]}
        for e in ("PIPELINING", "SIZE", "STARTTLS", "8BITMIME", "SMTPUTF8", "CHUNKING",
                  "ENHANCEDSTATUSCODES"):
            assert e in exts, f"EHLO lacks {e}: {lines}"
        assert exts["SIZE"] == "SIZE 100000"
        assert s.verify("alice@example.test")[0] == 252
        code, msg = s.docmd("XYZZY")
        assert (code, msg[:5]) == (500, b"5.5.2")
        assert s.rset()[0] == 250
        assert s.noop()[0] == 250


def test_banner_and_helo(gw):
    with gw.raw() as c:
        assert c.banner[0] == 220
        assert c.banner[1][0].startswith(HOSTNAME)
        code, lines = c.cmd("HELO old.client.test")
        assert (code, lines) == (250, [HOSTNAME])
        code, lines = c.cmd("QUIT")
        assert code == 221
        c.expect_eof()


def test_single_recipient_content(gw):
    m = marker()
    msg = (f"From: Sender <sender@remote.test>\r\n"
           f"To: alice@example.test\r\n"
           f"Subject: hello {m}\r\n"
           f"Message-ID: <{m}@remote.test>\r\n"
           f"\r\n"
           f"first line\r\n"
           f".starts with a dot\r\n"
           f"..two dots\r\n"
           f".\r\n"
           f"\r\n"
           f"last line\r\n").encode()
    with gw.smtp() as s:
        s.ehlo("client.example.test")
        s.mail("sender@remote.test")
        assert s.rcpt("alice@example.test")[0] == 250
        code, text = s.data(msg)
        assert code == 250, text
        mq = QUEUED.fullmatch(text.decode())
        assert mq, text
        qid = mq.group(1)
    files = gw.find_message("alice@example.test", m)
    assert len(files) == 1
    content = gw.read(files[0])
    rp, received, rest = split_trace(content)
    assert rp == "sender@remote.test"
    assert received.startswith("from client.example.test ([127.0.0.1])"), received
    assert f"by {HOSTNAME}" in received
    assert "with ESMTP " in received
    assert f"id {qid}" in received
    # RFC 5321 4.4: "; " and an RFC 5322 date-time, which is now.
    date = parsedate_to_datetime(received.rsplit(";", 1)[1].strip())
    assert date.tzinfo is not None
    assert abs(date.timestamp() - time.time()) < 120, received
    # The message as sent: LF line ends, dot-stuffing removed.
    assert rest == to_lf(msg)
    assert b"\r" not in content
    # The log line of the transaction.
    line = gw.wait_log(rf"{qid}: .*action=.*").group(0)
    for part in ("client=127.0.0.1", "from=<sender@remote.test>", "to=<alice@example.test>",
                 "size=", "action=deliver"):
        assert part in line, line


def test_8bit_utf8_body_and_smtputf8_sender(gw):
    m = marker()
    sender = "jörg@exämple.test"
    body = "Grüße aus Köln — 日本語のテキスト ✓"
    msg = (f"From: {sender}\r\nTo: alice@example.test\r\nSubject: utf8 {m}\r\n"
           f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
           f"Content-Transfer-Encoding: 8bit\r\n\r\n{body}\r\n").encode("utf-8")
    with gw.smtp() as s:
        s.ehlo("client.example.test")
        assert s.has_extn("smtputf8") and s.has_extn("8bitmime")
        refused = s.sendmail(sender, ["alice@example.test"], msg,
                             mail_options=["SMTPUTF8", "BODY=8BITMIME"])
        assert refused == {}
    files = gw.find_message("alice@example.test", m)
    assert len(files) == 1
    rp, received, rest = split_trace(gw.read(files[0]))
    assert rp == sender
    assert rest == to_lf(msg)
    assert body.encode("utf-8") in rest
    # RFC 6531 section 3.7.3: the protocol is UTF8SMTP.
    assert "with UTF8SMTP " in received, received


def test_non_ascii_sender_needs_smtputf8(gw):
    with gw.raw() as c:
        c.ehlo()
        code, lines = c.cmd("MAIL FROM:<jörg@exämple.test>".encode("utf-8"))
        assert code == 553 and lines[0].startswith("5.6.7"), (code, lines)
        assert c.cmd("MAIL FROM:<joerg@example.test> BODY=8BITMIME")[0] == 250


def test_several_recipients(gw):
    m = marker()
    rcpts = ["alice@example.test", "bob@example.test", "carol@other.test"]
    msg = f"From: a@remote.test\r\nSubject: multi {m}\r\n\r\nto three\r\n".encode()
    with gw.smtp() as s:
        s.ehlo("client.example.test")
        assert s.sendmail("a@remote.test", rcpts, msg) == {}
    inodes = set()
    for r in rcpts:
        files = gw.find_message(r, m)
        assert len(files) == 1, (r, files)
        content = gw.read(files[0])
        rp, received, rest = split_trace(content)
        assert rp == "a@remote.test"
        assert rest == to_lf(msg)
        # One transaction for three users must not name any of them.
        assert "for <" not in received, received
        inodes.add(os.stat(files[0]).st_ino)
    assert len(inodes) in (1, 3)


def test_duplicate_recipient_delivered_once(gw):
    m = marker()
    msg = f"Subject: dup {m}\r\n\r\nonce\r\n".encode()
    with gw.smtp() as s:
        s.ehlo("client.example.test")
        s.mail("a@remote.test")
        assert s.rcpt("alice@example.test")[0] == 250
        assert s.rcpt("alice@example.test")[0] == 250
        assert s.rcpt("bob@example.test")[0] == 250
        assert s.rcpt("<alice@example.test>")[0] == 250
        assert s.data(msg)[0] == 250
    assert len(gw.find_message("alice@example.test", m)) == 1
    assert len(gw.find_message("bob@example.test", m)) == 1


def test_unknown_user_refused_others_delivered(gw):
    m = marker()
    msg = f"Subject: partial {m}\r\n\r\nbody\r\n".encode()
    with gw.smtp() as s:
        s.ehlo("client.example.test")
        refused = s.sendmail("a@remote.test",
                             ["nobody@example.test", "alice@example.test", "ghost@other.test"],
                             msg)
    assert set(refused) == {"nobody@example.test", "ghost@other.test"}
    for code, text in refused.values():
        assert code == 550 and text.startswith(b"5.1.1"), (code, text)
    assert len(gw.find_message("alice@example.test", m)) == 1
    for d in ("example.test/nobody", "other.test/ghost"):
        assert not os.path.exists(os.path.join(gw.data_dir, "mail", d))


def test_all_recipients_unknown_data_refused(gw):
    with gw.smtp() as s:
        s.ehlo("client.example.test")
        s.mail("a@remote.test")
        assert s.rcpt("nobody@example.test")[0] == 550
        code, _ = s.docmd("DATA")
        assert code in (503, 554)
        assert s.noop()[0] == 250


def test_relay_denied(gw):
    m = marker()
    before = set(gw.every_delivered_file())
    msg = f"Subject: relay {m}\r\n\r\nrelay me\r\n".encode()
    with gw.smtp() as s:
        s.ehlo("client.example.test")
        with pytest.raises(smtplib.SMTPRecipientsRefused) as ei:
            s.sendmail("a@remote.test", ["rcpt@elsewhere.test"], msg)
        code, text = ei.value.recipients["rcpt@elsewhere.test"]
        assert code == 550 and text.startswith(b"5.7.1"), (code, text)
        # Same with a local recipient beside it: only the foreign one refused.
        s.mail("a@remote.test")
        assert s.rcpt("rcpt@elsewhere.test")[0] == 550
        assert s.rcpt("alice@example.test")[0] == 250
        s.rset()
    assert set(gw.every_delivered_file()) == before
    assert not os.path.exists(os.path.join(gw.data_dir, "mail", "elsewhere.test"))
    # A relay attempt through an address literal or a source route fails too.
    with gw.raw() as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@remote.test>")[0] == 250
        code, lines = c.cmd("RCPT TO:<@example.test:rcpt@elsewhere.test>")
        assert code == 550 and lines[0].startswith("5.7.1"), (code, lines)
        code, lines = c.cmd("RCPT TO:<alice@[127.0.0.1]>")
        assert code == 550, (code, lines)


def test_postmaster(gateway_factory):
    """RFC 5321 4.5.1: <postmaster> and postmaster@ any local domain are
    accepted and go to postmaster_address, which must be a user."""
    g = gateway_factory(postmaster_address="alice@example.test")
    m = marker()
    with g.smtp() as s:
        s.ehlo("client.test")
        assert s.mail("x@y.test")[0] == 250
        assert s.rcpt("<postmaster>")[0] == 250
        assert s.rcpt("PostMaster@other.test")[0] == 250
        code, _ = s.data(f"Subject: pm {m}\r\n\r\nhi\r\n".encode())
        assert code == 250
    files = g.find_message("alice@example.test", m)
    assert len(files) == 1  # both spellings reach one user: one copy
    # without a postmaster user the default (postmaster@example.test) is
    # not a user: refused, and the log says why
    g2 = gateway_factory()
    with g2.smtp() as s:
        s.ehlo("client.test")
        s.mail("x@y.test")
        code, msg = s.rcpt("<postmaster>")
        assert code == 550 and b"5.1.1" in msg
    assert "postmaster_address postmaster@example.test is not a user" in g2.log()


def test_swaks_delivery(gw):
    m = marker()
    r = subprocess.run(
        ["swaks", "--server", f"127.0.0.1:{gw.port}", "--to", "alice@example.test",
         "--from", "x@y.test", "--helo", "swaks.client.test",
         "--header", f"Subject: swaks {m}", "--body", f"hello from swaks {m}\n.dotted line"],
        capture_output=True, timeout=30)
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
    assert b"250 2.0.0 Ok: queued as" in r.stdout
    files = gw.find_message("alice@example.test", m)
    assert len(files) == 1
    rp, received, rest = split_trace(gw.read(files[0]))
    assert rp == "x@y.test"
    assert received.startswith("from swaks.client.test ")
    assert f"Subject: swaks {m}\n".encode() in rest
    assert f"\n\nhello from swaks {m}\n.dotted line\n".encode() in rest
    assert b"\r" not in rest


def test_special_folders_and_index(gw):
    m = marker()
    with gw.smtp() as s:
        s.ehlo("client.example.test")
        assert s.sendmail("a@remote.test", ["bob@example.test"],
                          f"Subject: folders {m}\r\n\r\nx\r\n".encode()) == {}
    root = gw.maildir("bob@example.test")
    for sub in ("new", "cur", "tmp"):
        assert os.path.isdir(os.path.join(root, sub))
    for folder in ("Junk", "Whitelist", "Blacklist", "Sent", "Drafts", "Trash"):
        for sub in ("new", "cur", "tmp"):
            p = os.path.join(root, "." + folder, sub)
            assert os.path.isdir(p), f"missing {p}"
    idx = os.path.join(root, "index.sqlite")
    assert os.path.isfile(idx)
    db = sqlite3.connect(f"file:{idx}?mode=ro", uri=True)
    try:
        names = {r[0] for r in db.execute("SELECT name FROM folders")}
    finally:
        db.close()
    assert {"INBOX", "Junk", "Whitelist", "Blacklist", "Sent", "Drafts", "Trash"} <= names


def test_rset_abandons_transaction(gw):
    m = marker()
    with gw.raw() as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@remote.test>")[0] == 250
        assert c.cmd("RCPT TO:<bob@example.test>")[0] == 250
        assert c.cmd("RSET")[0] == 250
        assert c.cmd("DATA")[0] == 503
        assert c.cmd("MAIL FROM:<b@remote.test>")[0] == 250
        assert c.cmd("RCPT TO:<alice@example.test>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(f"Subject: rset {m}\r\n\r\nafter rset\r\n.\r\n")
        code, lines = c.reply()
        assert code == 250 and lines[0].startswith("2.0.0 Ok: queued as"), lines
    assert gw.find_message("bob@example.test", m) == []
    files = gw.find_message("alice@example.test", m)
    assert len(files) == 1
    rp, _, _ = split_trace(gw.read(files[0]))
    assert rp == "b@remote.test"


def test_null_sender(gw):
    """Bounces (MAIL FROM:<>) must be accepted (RFC 5321 4.5.5)."""
    m = marker()
    msg = f"From: MAILER-DAEMON@remote.test\r\nSubject: bounce {m}\r\n\r\nundeliverable\r\n".encode()
    with gw.raw() as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<>")[0] == 250
        assert c.cmd("RCPT TO:<bob@example.test>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(msg + b".\r\n")
        assert c.reply()[0] == 250
    files = gw.find_message("bob@example.test", m)
    assert len(files) == 1
    rp, _, rest = split_trace(gw.read(files[0]))
    assert rp == ""
    assert rest == to_lf(msg)


def test_recipient_case_insensitive(gw):
    m = marker()
    msg = f"Subject: case {m}\r\n\r\nx\r\n".encode()
    with gw.smtp() as s:
        s.ehlo("client.example.test")
        assert s.sendmail("a@remote.test", ["Alice@EXAMPLE.Test"], msg) == {}
    assert len(gw.find_message("alice@example.test", m)) == 1
    assert not os.path.exists(os.path.join(gw.data_dir, "mail", "EXAMPLE.Test"))


def big_message(m, size):
    """A message of about size bytes with dot lines, long-ish lines and
    8-bit text spread through it (crossing every buffer boundary)."""
    parts = [f"Subject: big {m}\r\nMessage-ID: <{m}@big.test>\r\n\r\n".encode()]
    n = 0
    i = 0
    while n < size:
        if i % 7 == 0:
            line = f".{i} line starting with a dot".encode()
        elif i % 11 == 0:
            line = b"."
        elif i % 13 == 0:
            line = ("\u00e4\u00f6\u00fc\u00df " * 20).encode()
        else:
            line = f"{i:08d} ".encode() + b"x" * (i % 900)
        parts.append(line + b"\r\n")
        n += len(line) + 2
        i += 1
    return b"".join(parts)


def test_big_message_through_spool_file(gateway_factory):
    """Above 1 MiB the text is spooled to a file: same bytes delivered."""
    big = gateway_factory(max_message_size="8m")
    m = marker()
    msg = big_message(m, 3 * 1024 * 1024)
    with big.smtp(timeout=60) as s:
        s.ehlo("client.example.test")
        assert s.sendmail("a@remote.test", ["alice@example.test", "bob@example.test"], msg,
                          ["BODY=8BITMIME"]) == {}
    for r in ("alice@example.test", "bob@example.test"):
        files = big.find_message(r, f"<{m}@big.test>")
        assert len(files) == 1
        assert split_trace(big.read(files[0]))[2] == to_lf(msg)
    # Same through BDAT, in chunks larger than the read buffer.
    m2 = marker()
    msg2 = big_message(m2, 2 * 1024 * 1024)
    with RawSMTP(big.port, timeout=60) as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@remote.test>")[0] == 250
        assert c.cmd("RCPT TO:<carol@other.test>")[0] == 250
        step = 700001
        for off in range(0, len(msg2), step):
            chunk = msg2[off:off + step]
            last = off + step >= len(msg2)
            c.send(f"BDAT {len(chunk)}{' LAST' if last else ''}\r\n".encode() + chunk)
            code, lines = c.reply()
            assert code == 250, lines
        assert lines[0].startswith("2.0.0 Ok: queued as"), lines
    files = big.find_message("carol@other.test", f"<{m2}@big.test>")
    assert len(files) == 1
    # BDAT is not dot-stuffed: the text arrives as it was.
    assert split_trace(big.read(files[0]))[2] == to_lf(msg2)
    assert os.listdir(os.path.join(big.data_dir, "spool")) == []


def test_command_sequence(gw):
    with gw.raw() as c:
        code, lines = c.cmd("MAIL FROM:<a@remote.test>")
        assert code == 503, (code, lines)  # no HELO/EHLO yet
        c.ehlo()
        assert c.cmd("RCPT TO:<alice@example.test>")[0] == 503  # no MAIL
        assert c.cmd("DATA")[0] == 503
        assert c.cmd("MAIL FROM:<a@remote.test>")[0] == 250
        assert c.cmd("MAIL FROM:<a@remote.test>")[0] == 503  # nested
        assert c.cmd("RCPT TO:<alice@example.test>")[0] == 250
        # EHLO resets the transaction (RFC 5321 4.1.4).
        c.ehlo()
        assert c.cmd("DATA")[0] == 503
        assert c.cmd("DATA now")[0] == 501
        assert c.cmd("QUIT")[0] == 221
        c.expect_eof()


def test_path_escape_refused(gw):
    before = set(os.listdir(os.path.join(gw.data_dir, "mail")))
    with gw.raw() as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@remote.test>")[0] == 250
        for addr in ('"../../../etc"@example.test', '"a/b"@example.test', ".alice@example.test",
                     "alice..x@example.test", '"alice"@example.test/..'):
            code, lines = c.cmd(f"RCPT TO:<{addr}>")
            assert code in (501, 550, 553), (addr, code, lines)
        assert c.cmd("RSET")[0] == 250
    assert set(os.listdir(os.path.join(gw.data_dir, "mail"))) == before
    assert not os.path.exists(os.path.join(gw.tmp, "etc"))
