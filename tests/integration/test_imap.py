"""imapd against real clients: Python's imaplib and curl, with filterd
delivering over SMTP at the same time.  Every test gets its own gateway
(filterd + imapd on free loopback ports, data in a temporary directory)."""
import imaplib
import re
import socket
import ssl
import subprocess
import threading
import time

import pytest

import gwlib

PLAIN = (b"From: Alice Example <alice@sender.test>\r\n"
         b"To: bob@example.test\r\n"
         b"Subject: plain one\r\n"
         b"Date: Tue, 01 Dec 2026 10:00:00 +0000\r\n"
         b"Message-ID: <plain1@sender.test>\r\n"
         b"\r\n"
         b"Hello Bob,\r\nthis is the body.\r\n")

MULTI = (b"From: =?UTF-8?Q?J=C3=B6rg?= <jorg@sender.test>\r\n"
         b"To: alice@example.test, Group: a@b.test, c@d.test;\r\n"
         b"Cc: carol@other.test\r\n"
         b"Subject: =?UTF-8?B?R3LDvMOfZQ==?=\r\n"
         b"Date: Wed, 02 Dec 2026 08:30:00 +0100\r\n"
         b"Message-ID: <multi1@sender.test>\r\n"
         b"MIME-Version: 1.0\r\n"
         b"Content-Type: multipart/mixed; boundary=\"XX\"\r\n"
         b"\r\n"
         b"preamble\r\n"
         b"--XX\r\n"
         b"Content-Type: text/plain; charset=utf-8\r\n"
         b"Content-Transfer-Encoding: quoted-printable\r\n"
         b"\r\n"
         b"Gr=C3=BC=C3=9Fe aus Berlin, zebra-stripes\r\n"
         b"--XX\r\n"
         b"Content-Type: application/octet-stream; name=\"data.bin\"\r\n"
         b"Content-Disposition: attachment; filename=\"data.bin\"\r\n"
         b"Content-Transfer-Encoding: base64\r\n"
         b"\r\n"
         b"AAECAwQFBgc=\r\n"
         b"--XX--\r\n")

MALFORMED = (b"From: broken\r\n"
             b"Subject: no end\r\n"
             b"Content-Type: multipart/mixed; boundary=\"never\"\r\n"
             b"\r\n"
             b"--wrong\r\n"
             b"text without a closing boundary\r\n")


@pytest.fixture
def g(gateway_factory):
    gw = gateway_factory()
    gw.start_imapd()
    return gw


def tls_ctx(cafile):
    return ssl.create_default_context(cafile=cafile)


def login(g, user="alice@example.test", password=gwlib.PASSWORD):
    m = imaplib.IMAP4("127.0.0.1", g.imap_port, timeout=10)
    m.starttls(ssl_context=tls_ctx(g.cert))
    m.login(user, password)
    return m


def append(m, folder, msg, flags=None):
    typ, data = m.append(folder, flags, None, msg)
    assert typ == "OK", data
    code = re.search(rb"\[APPENDUID (\d+) (\d+)\]", data[0])
    assert code, data
    return int(code.group(1)), int(code.group(2))


def flat(data):
    """Every byte of a FETCH response list, literals included."""
    out = b""
    for d in data:
        out += b"".join(d) if isinstance(d, tuple) else (d or b"")
    return out


def deliver(g, rcpt, body=b"Subject: via smtp\r\n\r\nhello\r\n"):
    with g.smtp() as s:
        s.starttls(context=tls_ctx(g.cert))
        s.sendmail("sender@remote.test", [rcpt], body)


# ------------------------------------------------------------------- login


def test_logindisabled_before_tls_and_login_after_starttls(g):
    m = imaplib.IMAP4("127.0.0.1", g.imap_port, timeout=10)
    assert "LOGINDISABLED" in m.capabilities
    assert "STARTTLS" in m.capabilities
    typ, data = m._simple_command("LOGIN", "alice@example.test", '"' + gwlib.PASSWORD + '"')
    assert typ == "NO", data
    m.starttls(ssl_context=tls_ctx(g.cert))
    assert "AUTH=PLAIN" in m.capabilities and "LOGINDISABLED" not in m.capabilities
    typ, data = m.login("alice@example.test", gwlib.PASSWORD)
    assert typ == "OK"
    typ, data = m.capability()
    caps = data[0].decode().split()
    for c in ("IDLE", "MOVE", "UIDPLUS", "SPECIAL-USE", "CONDSTORE", "NAMESPACE", "ENABLE",
              "LITERAL+", "UNSELECT", "ID"):
        assert c in caps, caps
    m.logout()


def test_implicit_tls_and_authenticate_plain(g):
    m = imaplib.IMAP4_SSL("127.0.0.1", g.imaps_port, ssl_context=tls_ctx(g.cert), timeout=10)
    typ, _ = m.authenticate("PLAIN", lambda _: b"\0bob@example.test\0" + gwlib.PASSWORD.encode())
    assert typ == "OK"
    typ, data = m.select("INBOX")
    assert typ == "OK" and data == [b"0"]
    m.logout()


def test_wrong_password_is_refused_and_slowed(g):
    m = imaplib.IMAP4("127.0.0.1", g.imap_port, timeout=30)
    m.starttls(ssl_context=tls_ctx(g.cert))
    t0 = time.monotonic()
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        m.login("alice@example.test", "wrong")
    first = time.monotonic() - t0
    t0 = time.monotonic()
    with pytest.raises(imaplib.IMAP4.error):
        m.login("nobody@example.test", "wrong")
    second = time.monotonic() - t0
    # 1 s, then 2 s for the same client address.
    assert first >= 0.9 and second >= 1.9, (first, second)
    m.logout()


# ---------------------------------------------------------------- folders


def test_list_special_use_and_folder_commands(g):
    m = login(g)
    typ, data = m.list()
    assert typ == "OK"
    lines = [d.decode() for d in data]
    def attrs(name):
        for l in lines:
            mm = re.match(r'\((.*?)\) "/" "?([^"]*)"?$', l)
            if mm and mm.group(2) == name:
                return mm.group(1).split()
        raise AssertionError(f"{name} not in {lines}")
    assert "\\Junk" in attrs("Junk")
    assert "\\Sent" in attrs("Sent")
    assert "\\Drafts" in attrs("Drafts")
    assert "\\Trash" in attrs("Trash")
    attrs("INBOX"), attrs("Whitelist"), attrs("Blacklist")
    # Special folders cannot be deleted or renamed.
    for f in ("Junk", "Whitelist", "Blacklist", "INBOX"):
        typ, data = m.delete(f)
        assert typ == "NO" and b"CANNOT" in data[0], (f, data)
    typ, data = m.rename("Whitelist", "Other")
    assert typ == "NO" and b"CANNOT" in data[0]
    # User folders nest.
    assert m.create("Work/2026")[0] == "OK"
    assert "\\HasChildren" in [l for l in (d.decode() for d in m.list()[1]) if l.endswith('"Work"') or l.endswith(" Work")][0]
    assert m.create("Work/2026")[0] == "NO"
    assert m.rename("Work/2026", "Work/2027")[0] == "OK"
    typ, data = m.list("\"\"", "Work/%")
    assert [d for d in data if d and b"2027" in d], data
    assert m.delete("Work/2027")[0] == "OK"
    # Path escapes are refused.
    for bad in ("../alice", "a/../../b", ".hidden", "x/./y"):
        typ, data = m.create(bad)
        assert typ == "NO", bad
    assert m.subscribe("Work")[0] == "OK"
    typ, data = m.lsub()
    assert any(b"Work" in d for d in data if d)
    typ, data = m.status("INBOX", "(MESSAGES UIDNEXT UIDVALIDITY UNSEEN RECENT)")
    assert typ == "OK" and b"MESSAGES 0" in data[0]
    m.logout()


# ------------------------------------------------------- append and fetch


def test_append_fetch_every_item(g):
    m = login(g)
    validity, uid1 = append(m, "INBOX", PLAIN)
    _, uid2 = append(m, "INBOX", MULTI, flags="(\\Flagged $Work)")
    _, uid3 = append(m, "INBOX", MALFORMED)
    assert uid1 < uid2 < uid3
    typ, data = m.select("INBOX")
    assert data == [b"3"]
    assert m.untagged_responses.get("UIDVALIDITY") == [str(validity).encode()]

    # Whole message, exactly as appended (CRLF line ends).
    typ, data = m.uid("FETCH", str(uid1), "(BODY.PEEK[] RFC822.SIZE FLAGS INTERNALDATE UID)")
    assert data[0][1] == PLAIN
    assert f"RFC822.SIZE {len(PLAIN)}".encode() in flat(data)
    assert b"INTERNALDATE \"" in flat(data)
    assert b"\\Seen" not in flat(data)

    typ, data = m.fetch("2", "(FLAGS ENVELOPE BODYSTRUCTURE BODY)")
    head = data[0] if isinstance(data[0], bytes) else data[0][0]
    assert b"\\Flagged" in head and b"$Work" in head
    assert b'"multi1@sender.test"' in head or b"<multi1@sender.test>" in head
    assert b'("Group" NIL NIL NIL)' in head or b'(NIL NIL "Group" NIL)' in head
    assert b'"MIXED"' in head.upper() and b'"BASE64"' in head.upper()

    # Sections of the multipart.
    typ, data = m.fetch("2", "(BODY.PEEK[1] BODY.PEEK[2.MIME] BODY.PEEK[HEADER.FIELDS (Subject From)] BODY.PEEK[TEXT])")
    parts = {re.search(rb"BODY\[([^\]]*)\]", d[0]).group(1): d[1] for d in data if isinstance(d, tuple)}
    assert parts[b"1"] == b"Gr=C3=BC=C3=9Fe aus Berlin, zebra-stripes"
    assert b"Content-Disposition: attachment" in parts[b"2.MIME"]
    hf = parts[b"HEADER.FIELDS (Subject From)"]
    assert hf.startswith(b"From: ") and b"Subject: " in hf and b"To:" not in hf and hf.endswith(b"\r\n\r\n")
    assert parts[b"TEXT"].startswith(b"preamble\r\n--XX")

    # Partial fetches.
    typ, data = m.fetch("1", "(BODY.PEEK[]<0.10>)")
    assert data[0][1] == PLAIN[:10] and b"BODY[]<0>" in data[0][0]
    typ, data = m.fetch("1", "(BODY.PEEK[TEXT]<6.3>)")
    assert data[0][1] == b"Bob"
    typ, data = m.fetch("1", "(BODY.PEEK[]<100000.10>)")
    assert data[0][1] == b""

    # RFC822.* items; BODY[] (no PEEK) sets \Seen.
    typ, data = m.fetch("1", "(RFC822.HEADER)")
    assert data[0][1] == PLAIN[:PLAIN.index(b"\r\n\r\n") + 4]
    typ, data = m.fetch("1", "(BODY[])")
    assert b"\\Seen" in data[0][0] or b"\\Seen" in b"".join(x if isinstance(x, bytes) else x[0] for x in data)
    typ, data = m.fetch("1", "(FLAGS)")
    assert b"\\Seen" in data[0]

    # A malformed message still gives a structure and its bytes.
    typ, data = m.fetch("3", "(BODYSTRUCTURE BODY.PEEK[])")
    assert data[0][1] == MALFORMED
    typ, data = m.fetch("3", "(BODY.PEEK[1])")
    assert typ == "OK"
    m.logout()


def test_search_and_store(g):
    m = login(g)
    append(m, "INBOX", PLAIN)
    append(m, "INBOX", MULTI)
    append(m, "INBOX", MALFORMED, flags="(\\Seen)")
    m.select("INBOX")
    assert m.search(None, "ALL")[1] == [b"1 2 3"]
    assert m.search(None, "UNSEEN")[1] == [b"1 2"]
    assert m.search(None, "SUBJECT", '"plain"')[1] == [b"1"]
    # Text keys match decoded text: RFC 2047 subject, quoted-printable body.
    assert m.search("UTF-8", "SUBJECT", '"Grüße"'.encode())[1] == [b"2"]
    assert m.search(None, "BODY", "zebra")[1] == [b"2"]
    assert m.search(None, "TEXT", "jorg@sender")[1] == [b"2"]
    assert m.search(None, "OR", "FROM", "alice@sender", "SEEN")[1] == [b"1 3"]
    assert m.search(None, "NOT", "SEEN", "LARGER", "300")[1] == [b"2"]
    assert m.uid("SEARCH", "UID", "2:*")[1][0].split() == [b"2", b"3"]
    typ, data = m._simple_command("SEARCH", "CHARSET", "KOI8-R", "ALL")
    assert typ == "NO" and b"BADCHARSET" in data[0]

    typ, data = m.store("1:2", "+FLAGS", "(\\Flagged Important)")
    assert typ == "OK" and len(data) == 2 and b"Important" in data[0]
    assert m.search(None, "FLAGGED")[1] == [b"1 2"]
    assert m.search(None, "KEYWORD", "Important")[1] == [b"1 2"]
    typ, data = m.store("2", "-FLAGS.SILENT", "(Important)")
    assert typ == "OK" and data == [None]
    typ, data = m.fetch("2", "(FLAGS)")
    assert b"Important" not in data[0] and b"\\Flagged" in data[0]
    typ, data = m.store("3", "FLAGS", "(\\Deleted)")
    flags = m.fetch("3", "(FLAGS)")[1][0]
    assert b"\\Deleted" in flags and b"\\Seen" not in flags
    with pytest.raises(imaplib.IMAP4.error, match="Recent"):
        m.store("1", "+FLAGS", "(\\Recent)")
    m.logout()


# ------------------------------------------------------------ copy / move


def test_copy_move_with_copyuid_and_expunge_seen_by_second_session(g):
    a = login(g)
    for i in range(4):
        append(a, "INBOX", PLAIN.replace(b"plain one", b"msg %d" % i))
    a.select("INBOX")
    b = login(g)
    b.select("INBOX")

    typ, data = a.copy("1:2", "Trash")
    assert typ == "OK"
    mm = re.search(rb"\[COPYUID (\d+) 1:2 (\d+):(\d+)\]", data[0])
    assert mm, data
    typ, data = a._simple_command("MOVE", "3", "Junk")
    assert typ == "OK"
    assert any(b"COPYUID" in x for x in a.untagged_responses.get("OK", [])), a.untagged_responses
    assert a.untagged_responses.get("EXPUNGE") == [b"3"]
    typ, data = a.copy("1", "NoSuchFolder")
    assert typ == "NO" and b"TRYCREATE" in data[0]

    # The other session learns of the move at its next NOOP.
    typ, data = b.noop()
    assert b.response("EXPUNGE")[1] == [b"3"], b.untagged_responses
    # Expunge in a, seen by b with the right sequence numbers.
    a.store("1", "+FLAGS", "(\\Deleted)")
    a.expunge()
    b.noop()
    assert b.response("EXPUNGE")[1] == [b"1"]
    typ, data = b.search(None, "ALL")
    assert data == [b"1 2"]
    b.select("Junk")
    assert b.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")[1][0][1].strip() == b"Subject: msg 2"
    # UID EXPUNGE only removes the UIDs given.
    a.store("1:2", "+FLAGS", "(\\Deleted)")
    typ, data = a.uid("EXPUNGE", "4")
    assert typ == "OK"
    assert a.search(None, "ALL")[1] == [b"1"]
    a.logout()
    b.logout()


def test_flag_change_seen_by_second_session(g):
    a = login(g)
    append(a, "INBOX", PLAIN)
    a.select("INBOX")
    b = login(g)
    b.select("INBOX")
    a.store("1", "+FLAGS", "(\\Answered)")
    b.noop()
    fetches = b.untagged_responses.get("FETCH", [])
    assert any(b"\\Answered" in f for f in fetches), b.untagged_responses
    a.logout()
    b.logout()


# ------------------------------------------------------------------- IDLE


def test_idle_woken_by_smtp_delivery(g):
    m = login(g, "bob@example.test")
    m.select("INBOX")
    tag = m._new_tag()
    m.send(tag + b" IDLE\r\n")
    assert m.readline().startswith(b"+")
    # Woken by the delivery itself: the keep-alive (2 minutes) is far
    # beyond this read's timeout, so only the notifier can answer in time.
    m.sock.settimeout(10)
    threading.Thread(target=deliver, args=(g, "bob@example.test")).start()
    line = m.readline()
    assert line == b"* 1 EXISTS\r\n", line
    m.send(b"DONE\r\n")
    while True:
        line = m.readline()
        if line.startswith(tag):
            assert b"OK" in line
            break
    typ, data = m.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert data[0][1].strip() == b"Subject: via smtp"
    m.logout()


# -------------------------------------------------------------- CONDSTORE


def test_condstore_changedsince_and_unchangedsince(g):
    m = login(g)
    for _ in range(3):
        append(m, "INBOX", PLAIN)
    typ, data = m._simple_command("ENABLE", "CONDSTORE")
    assert typ == "OK"
    typ, data = m.select("INBOX")
    hms = int(m.untagged_responses["HIGHESTMODSEQ"][0])
    m.store("2", "+FLAGS", "(\\Flagged)")
    typ, data = m.fetch("1:*", "(FLAGS) (CHANGEDSINCE %d)" % hms)
    assert typ == "OK"
    got = [d for d in data if d]
    assert len(got) == 1 and got[0].startswith(b"2 (") and b"MODSEQ" in got[0], got
    mod = int(re.search(rb"MODSEQ \((\d+)\)", got[0]).group(1))
    assert mod > hms
    typ, data = m._simple_command("STORE", "1:2", "(UNCHANGEDSINCE %d)" % hms, "+FLAGS", "(\\Seen)")
    assert typ == "OK" and b"[MODIFIED 2]" in data[0], data
    m.untagged_responses.clear()
    typ, data = m.fetch("1:2", "(FLAGS)")
    assert b"\\Seen" in data[0] and b"\\Seen" not in data[1]
    typ, data = m.status("INBOX", "(HIGHESTMODSEQ)")
    assert int(re.search(rb"HIGHESTMODSEQ (\d+)", data[0]).group(1)) > mod
    m.logout()


# ---------------------------------------------------------- hostile input


class Raw:
    def __init__(self, g):
        self.sock = socket.create_connection(("127.0.0.1", g.imap_port), 10)
        self.f = self.sock.makefile("rb")
        self.banner = self.f.readline()

    def cmd(self, line, read=True):
        self.sock.sendall(line if isinstance(line, bytes) else line.encode())
        return self.f.readline() if read else None

    def until(self, tag):
        out = []
        while True:
            l = self.f.readline()
            if not l:
                return out
            out.append(l)
            if l.startswith(tag):
                return out


def test_huge_literal_gets_no_continuation(gateway_factory):
    g = gateway_factory(allow_plaintext_auth="yes")
    g.start_imapd()
    r = Raw(g)
    assert r.cmd("a LOGIN alice@example.test {5000000}\r\n").startswith(b"a NO [TOOBIG]")
    r.cmd('b LOGIN alice@example.test "%s"\r\n' % gwlib.PASSWORD, read=False)
    assert r.until(b"b ")[-1].startswith(b"b OK")
    # Bigger than max_message_size (100000 in the tests): NO, never "+".
    assert r.cmd("c APPEND INBOX {200000}\r\n").startswith(b"c NO [TOOBIG]")
    line = r.cmd("d APPEND INBOX {5}\r\n")
    assert line.startswith(b"+")
    r.cmd("hello\r\n", read=False)
    assert r.until(b"d ")[-1].startswith(b"d OK [APPENDUID")
    # A long line is BAD and the session goes on.
    assert r.cmd("e NOOP " + "x" * 70000 + "\r\n").startswith(b"e BAD")
    assert r.cmd("f NOOP\r\n").startswith(b"f OK")
    # Traversal in a folder name.
    assert r.cmd('g SELECT "../../bob@example.test"\r\n').startswith(b"g NO")
    assert r.cmd("h CREATE ../x\r\n").startswith(b"h NO")


def test_bad_commands_end_with_bye(g):
    r = Raw(g)
    out = b""
    for i in range(25):
        r.cmd(f"t{i} FOO\r\n", read=False)
    r.sock.settimeout(5)
    while True:
        l = r.f.readline()
        if not l:
            break
        out += l
    assert b"* BYE Too many invalid commands" in out
    assert out.count(b" BAD ") == 20


def test_plaintext_login_refused_without_tls(g):
    r = Raw(g)
    assert b"LOGINDISABLED" in r.banner
    assert r.cmd('a LOGIN alice@example.test "%s"\r\n' % gwlib.PASSWORD).startswith(b"a NO")
    assert r.cmd("b AUTHENTICATE PLAIN AGFsaWNlAHg=\r\n").startswith(b"b NO")


def test_starttls_with_pipelined_plaintext_is_refused(g):
    r = Raw(g)
    r.sock.sendall(b"a STARTTLS\r\nb LOGIN alice@example.test x\r\n")
    r.sock.settimeout(5)
    data = r.f.read()
    assert b"BYE" in data and b"a OK" not in data


# --------------------------------------------------------- another client


def test_curl_reads_mail_over_imaps(g):
    deliver(g, "alice@example.test", b"Subject: for curl\r\n\r\ncurl body line\r\n")
    url = f"imaps://127.0.0.1:{g.imaps_port}/INBOX;UID=1"
    r = subprocess.run(["curl", "-s", "--cacert", g.cert, "--user",
                        f"alice@example.test:{gwlib.PASSWORD}", url],
                       capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert b"Subject: for curl" in r.stdout and b"curl body line" in r.stdout
    r = subprocess.run(["curl", "-s", "--cacert", g.cert, "--ssl-reqd", "--user",
                        f"alice@example.test:{gwlib.PASSWORD}",
                        f"imap://127.0.0.1:{g.imap_port}/", "-X", "LIST \"\" *"],
                       capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert b"\\Junk" in r.stdout and b"Whitelist" in r.stdout


# ------------------------------------------------------ limits, processes


def test_idle_timeout_and_login_timeout(gateway_factory):
    g = gateway_factory(imap_idle_timeout="1s", imap_login_timeout="1s")
    g.start_imapd()
    r = Raw(g)
    r.sock.settimeout(10)
    t0 = time.monotonic()
    assert r.f.readline().startswith(b"* BYE")
    assert r.f.readline() == b""
    assert time.monotonic() - t0 < 8
    m = login(g)
    m.select("INBOX")
    tag = m._new_tag()
    m.send(tag + b" IDLE\r\n")
    assert m.readline().startswith(b"+")
    m.sock.settimeout(10)
    assert m.readline().startswith(b"* BYE Autologout")


def test_connection_limit_per_ip(gateway_factory):
    g = gateway_factory(imap_max_connections_per_ip="2")
    g.start_imapd()
    time.sleep(0.2)  # the start probe's session ends
    a, b = Raw(g), Raw(g)
    assert a.banner.startswith(b"* OK") and b.banner.startswith(b"* OK")
    c = Raw(g)
    assert c.banner.startswith(b"* BYE [UNAVAILABLE]"), c.banner


def test_two_imapd_processes_share_one_mailbox(g):
    """A second imapd on the same data: sessions in both see each other."""
    conf2 = g.conf + ".2"
    port2 = gwlib.free_port()
    text = g.config_text(dict(g.overrides, imap_listen=f"127.0.0.1:{port2}", imaps_listen="",
                              pop3_listen="", pop3s_listen=""))
    with open(conf2, "w") as f:
        f.write(text)
    log2 = open(g.imapd_log_path + ".2", "ab")
    p2 = subprocess.Popen([gwlib.IMAPD, "-c", conf2], stdout=log2, stderr=log2)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                m2 = imaplib.IMAP4("127.0.0.1", port2, timeout=10)
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        m2.starttls(ssl_context=tls_ctx(g.cert))
        m2.login("alice@example.test", gwlib.PASSWORD)
        m1 = login(g)
        append(m1, "INBOX", PLAIN)
        m1.select("INBOX")
        m2.select("INBOX")
        assert m2.search(None, "ALL")[1] == [b"1"]
        # IDLE in process 2 wakes for an APPEND in process 1.
        tag = m2._new_tag()
        m2.send(tag + b" IDLE\r\n")
        assert m2.readline().startswith(b"+")
        m2.sock.settimeout(10)
        append(m1, "INBOX", MULTI)
        assert m2.readline() == b"* 2 EXISTS\r\n"
        m2.send(b"DONE\r\n")
        while not m2.readline().startswith(tag):
            pass
        m2.store("1", "+FLAGS", "(\\Deleted)")
        m2.expunge()
        m1.noop()
        assert m1.response("EXPUNGE")[1] == [b"1"]
        assert m1.fetch("1", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")[1][0][1].strip() == \
            b"Message-ID: <multi1@sender.test>"
        m1.logout()
        m2.logout()
    finally:
        p2.terminate()
        p2.wait(10)
        log2.close()


def test_bodystructure_is_cached_in_the_index(g):
    import sqlite3
    m = login(g)
    append(m, "INBOX", MULTI)
    m.select("INBOX")
    typ, data = m.fetch("1", "(BODYSTRUCTURE ENVELOPE)")
    first = flat(data)
    db = sqlite3.connect(g.maildir("alice@example.test") + "/index.sqlite")
    rows = db.execute("SELECT count(*) FROM msgcache").fetchone()[0]
    db.close()
    assert rows == 1
    # A second FETCH answers the same from the cache.
    m.untagged_responses.clear()
    typ, data = m.fetch("1", "(BODYSTRUCTURE ENVELOPE)")
    assert flat(data) == first
    # The cache follows the message through a COPY.
    m.copy("1", "Trash")
    m.select("Trash")
    typ, data = m.fetch("1", "(BODYSTRUCTURE)")
    assert b"\"MIXED\"" in flat(data).upper()
    m.logout()
