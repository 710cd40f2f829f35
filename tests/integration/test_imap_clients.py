"""imapd driven by the IMAP clients that users run, not by imaplib: mbsync
(isync) for synchronisation semantics, curl for one-shot commands, mutt (in
a tmux pane, since it wants a terminal) for reading and saving mail.

Debian packages these tests use (each test skips if its client is missing):
    isync   (mbsync)
    curl
    mutt
    tmux    (gives mutt a terminal)
    openssl (s_client -starttls imap)

imaplib is only used as the independent observer of the server side."""
import email.utils
import imaplib
import os
import re
import shutil
import ssl
import subprocess
import time

import pytest

import gwlib

MBSYNC = shutil.which("mbsync")
CURL = shutil.which("curl")
MUTT = shutil.which("mutt")
TMUX = shutil.which("tmux")
OPENSSL = shutil.which("openssl")

USER = "alice@example.test"


def need(binary, name):
    if not binary:
        pytest.skip(f"{name} is not installed")


@pytest.fixture
def g(gateway_factory):
    gw = gateway_factory()
    gw.start_imapd()
    return gw


def tls_ctx(cafile):
    return ssl.create_default_context(cafile=cafile)


def imap(g, user=USER):
    """An imaplib session over implicit TLS: the observer of the server side."""
    m = imaplib.IMAP4_SSL("127.0.0.1", g.imaps_port, ssl_context=tls_ctx(g.cert), timeout=15)
    m.login(user, gwlib.PASSWORD)
    return m


def message(subject, body=b"", extra=b""):
    mid = subject.replace(" ", "-")
    return (b"From: Sender <sender@remote.test>\r\n"
            b"To: alice@example.test\r\n"
            b"Subject: " + subject.encode() + b"\r\n"
            b"Date: Tue, 01 Dec 2026 10:00:00 +0000\r\n"
            b"Message-ID: <" + mid.encode() + b"@remote.test>\r\n" + extra +
            b"\r\n" + (body or b"Body of " + subject.encode() + b"\r\n"))


def deliver(g, msg, rcpt=USER):
    with g.smtp() as s:
        s.starttls(context=tls_ctx(g.cert))
        s.sendmail("sender@remote.test", [rcpt], msg)


def append(m, folder, msg, flags=None):
    typ, data = m.append(folder, flags, None, msg)
    assert typ == "OK", data
    return int(re.search(rb"\[APPENDUID \d+ (\d+)\]", data[0]).group(1))


def fetch_all(m, folder):
    """{Message-ID: (uid, flags, bytes)} of a folder, read with BODY.PEEK[]."""
    typ, data = m.select(folder, readonly=True)
    assert typ == "OK", (folder, data)
    out = {}
    if data == [b"0"]:
        return out
    typ, data = m.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[])")
    assert typ == "OK", data
    for d in data:
        if not isinstance(d, tuple):
            continue
        uid = int(re.search(rb"UID (\d+)", d[0]).group(1))
        flags = re.search(rb"FLAGS \(([^)]*)\)", d[0]).group(1).decode().split()
        mid = re.search(rb"(?im)^Message-ID: *(<[^>]*>)", d[1])
        out[mid.group(1).decode() if mid else f"uid{uid}"] = (uid, flags, d[1])
    return out


# ------------------------------------------------------------------ mbsync


class Mbsync:
    """A mbsync configuration: the far side is imapd over implicit TLS (or
    STARTTLS), the near side a Maildir in the test's temporary directory."""

    def __init__(self, g, name="mb", tls="IMAPS", extra_channel="", user=USER):
        self.g = g
        self.dir = os.path.join(g.tmp, name)
        self.local = os.path.join(self.dir, "local")
        os.makedirs(self.local, exist_ok=True)
        self.conf = os.path.join(self.dir, "mbsyncrc")
        port = g.imaps_port if tls == "IMAPS" else g.imap_port
        # The certificate names DNS:localhost and IP:127.0.0.1; mbsync only
        # compares DNS names, and localhost is 127.0.0.1 in /etc/hosts.
        with open(self.conf, "w") as f:
            f.write(f"""IMAPAccount gw
Host localhost
Port {port}
User {user}
Pass "{gwlib.PASSWORD}"
SSLType {tls}
CertificateFile {g.cert}

IMAPStore far
Account gw

MaildirStore near
Path {self.local}/
Inbox {self.local}/INBOX
SubFolders Verbatim

Channel ch
Far :far:
Near :near:
Patterns *
Create Both
Expunge Both
SyncState *
{extra_channel}
""")
        self.runs = []

    def run(self, *args, ok=True):
        r = subprocess.run([MBSYNC, "-Dn", "-c", self.conf, *args, "-a"],
                           capture_output=True, timeout=120)
        out = (r.stdout + r.stderr).decode("utf-8", "replace")
        self.runs.append(out)
        if ok:
            assert r.returncode == 0, f"mbsync exited {r.returncode}:\n{out[-6000:]}"
        return out

    @staticmethod
    def commands(out):
        """The IMAP commands mbsync sent (the '>>> ' lines of -Dn), without tags."""
        return [l.split(" ", 2)[2] for l in out.splitlines()
                if l.startswith(">>> ") and len(l.split(" ", 2)) == 3]

    def folder(self, name):
        return os.path.join(self.local, name)

    def files(self, name):
        """{Message-ID: path} of the near side folder."""
        out = {}
        for sub in ("new", "cur"):
            d = os.path.join(self.folder(name), sub)
            for n in sorted(os.listdir(d)) if os.path.isdir(d) else ():
                p = os.path.join(d, n)
                mid = re.search(rb"(?im)^Message-ID: *(<[^>]*>)", gwlib.Gateway.read(p))
                out[mid.group(1).decode() if mid else n] = p
        return out

    @staticmethod
    def content(path):
        """A near side file without the X-TUID line mbsync inserts."""
        return strip_tuid(gwlib.Gateway.read(path))

    @staticmethod
    def flags(path):
        return path.rsplit(":2,", 1)[1] if ":2," in path else ""


def strip_tuid(data):
    """Without the X-TUID header mbsync inserts into every message it copies."""
    return re.sub(rb"(?m)^X-TUID: [^\n]*\n", b"", data, count=1)


def mbsync_or_skip(g, **kw):
    need(MBSYNC, "mbsync (isync)")
    return Mbsync(g, **kw)


def test_mbsync_pulls_every_folder_byte_for_byte(g):
    mb = mbsync_or_skip(g)
    sent = [message(f"smtp {i}", extra=b"X-Seq: %d\r\n" % i) for i in range(3)]
    for msg in sent:
        deliver(g, msg)
    m = imap(g)
    assert m.create("Work/2026")[0] == "OK"
    # Binary-ish content and long lines survive too.
    odd = message("odd bytes", body=b"tab\there, trailing space \r\n" + b"x" * 5000 + b"\r\n"
                  b"\xc3\xa4\xc3\xb6 8bit\r\n.\r\n..leading dots\r\nno final newline")
    append(m, "Junk", message("junk one"))
    append(m, "Sent", message("sent one"), flags="(\\Seen)")
    append(m, "Drafts", message("draft one"), flags="(\\Draft)")
    append(m, "Work/2026", odd, flags="(\\Flagged \\Answered)")
    server = {f: fetch_all(m, f) for f in ("INBOX", "Junk", "Sent", "Drafts", "Work/2026",
                                           "Trash", "Whitelist", "Blacklist")}
    m.logout()

    out = mb.run()
    for folder in server:
        assert os.path.isdir(os.path.join(mb.folder(folder), "cur")), (folder, os.listdir(mb.local))
        local = mb.files(folder)
        assert sorted(local) == sorted(server[folder]), (folder, local, list(server[folder]))
        for mid, (uid, flags, data) in server[folder].items():
            # mbsync stores LF line ends; the server's file is LF too.
            assert mb.content(local[mid]) == gwlib.to_lf(data), (folder, mid)
            assert f",U={uid}:" in local[mid]

    # What SMTP delivered is there unchanged below the trace headers.
    local = mb.files("INBOX")
    for i, msg in enumerate(sent):
        rp, received, rest = gwlib.split_trace(mb.content(local[f"<smtp-{i}@remote.test>"]))
        assert rp == "sender@remote.test" and "by mx.example.test" in received
        assert rest == gwlib.to_lf(msg)
    # And each is the very file in the server's Maildir.
    on_disk = {gwlib.Gateway.read(p) for p in g.all_messages(USER)}
    assert {mb.content(p) for p in local.values()} == on_disk

    # Flags: Maildir letters D F R S T.
    assert mb.flags(mb.files("Sent")["<sent-one@remote.test>"]) == "S"
    assert mb.flags(mb.files("Drafts")["<draft-one@remote.test>"]) == "D"
    assert mb.flags(mb.files("Work/2026")["<odd-bytes@remote.test>"]) == "FR"
    assert "UID FETCH" in " ".join(mb.commands(out))


def test_mbsync_second_sync_changes_nothing(g):
    mb = mbsync_or_skip(g)
    for i in range(3):
        deliver(g, message(f"m {i}"))
    mb.run()
    before = {f: sorted(os.listdir(os.path.join(mb.folder(f), s)) for s in ("cur", "new"))
              for f in os.listdir(mb.local)}
    out = mb.run()
    after = {f: sorted(os.listdir(os.path.join(mb.folder(f), s)) for s in ("cur", "new"))
             for f in os.listdir(mb.local)}
    assert before == after
    changing = [c for c in mb.commands(out)
                if re.match(r"(UID STORE|STORE|APPEND|EXPUNGE|UID EXPUNGE|CREATE|DELETE)", c)]
    assert changing == [], changing
    m = imap(g)
    m.select("INBOX")
    assert m.search(None, "ALL")[1] == [b"1 2 3"]
    m.logout()


def test_mbsync_flags_both_ways(g):
    mb = mbsync_or_skip(g)
    for i in range(3):
        deliver(g, message(f"flag {i}"))
    mb.run()
    local = mb.files("INBOX")
    assert len(local) == 3

    # Near -> far: mark one seen and one flagged+answered in the local Maildir.
    p0 = local["<flag-0@remote.test>"]
    os.rename(p0, os.path.join(mb.folder("INBOX"), "cur", os.path.basename(p0) + "S"))
    p1 = local["<flag-1@remote.test>"]
    os.rename(p1, os.path.join(mb.folder("INBOX"), "cur", os.path.basename(p1) + "FR"))
    out = mb.run()
    assert any(c.startswith("UID STORE") for c in mb.commands(out)), mb.commands(out)
    m = imap(g)
    srv = fetch_all(m, "INBOX")
    assert sorted(srv["<flag-0@remote.test>"][1]) == ["\\Seen"]
    assert sorted(srv["<flag-1@remote.test>"][1]) == ["\\Answered", "\\Flagged"]
    assert srv["<flag-2@remote.test>"][1] == []

    # Far -> near: set \Flagged on 2 and take \Seen off 0 on the server.
    m.select("INBOX")
    uid0, uid2 = srv["<flag-0@remote.test>"][0], srv["<flag-2@remote.test>"][0]
    assert m.uid("STORE", str(uid2), "+FLAGS", "(\\Flagged)")[0] == "OK"
    assert m.uid("STORE", str(uid0), "-FLAGS", "(\\Seen)")[0] == "OK"
    m.logout()
    mb.run()
    local = mb.files("INBOX")
    assert mb.flags(local["<flag-2@remote.test>"]) == "F"
    assert mb.flags(local["<flag-0@remote.test>"]) == ""
    assert mb.flags(local["<flag-1@remote.test>"]) == "FR"

    # The flags are also in the server's own Maildir file names.
    names = {os.path.basename(p) for p in g.all_messages(USER)}
    assert sorted(n.rsplit(":2,", 1)[1] if ":2," in n else "" for n in names) == ["", "F", "FR"]


def test_mbsync_deletions_both_ways(g):
    mb = mbsync_or_skip(g)
    for i in range(4):
        deliver(g, message(f"del {i}"))
    mb.run()
    local = mb.files("INBOX")
    # Near side: delete a file (mbsync propagates it as \Deleted + expunge).
    os.unlink(local["<del-1@remote.test>"])
    # And mark one trashed (T) locally: Expunge Both expunges it on both sides.
    p3 = local["<del-3@remote.test>"]
    os.rename(p3, os.path.join(mb.folder("INBOX"), "cur", os.path.basename(p3) + "T"))
    out = mb.run()
    cmds = mb.commands(out)
    m = imap(g)
    srv = fetch_all(m, "INBOX")
    assert sorted(srv) == ["<del-0@remote.test>", "<del-2@remote.test>"], (sorted(srv), cmds)
    assert sorted(mb.files("INBOX")) == ["<del-0@remote.test>", "<del-2@remote.test>"]
    assert len(g.all_messages(USER)) == 2

    # Far side: expunge one with imaplib; the next sync removes the local file.
    m.select("INBOX")
    uid = srv["<del-0@remote.test>"][0]
    m.uid("STORE", str(uid), "+FLAGS", "(\\Deleted)")
    m.expunge()
    m.logout()
    mb.run()
    assert sorted(mb.files("INBOX")) == ["<del-2@remote.test>"]


def test_mbsync_pushes_new_local_message(g):
    mb = mbsync_or_skip(g, extra_channel="CopyArrivalDate yes")
    deliver(g, message("first"))
    mb.run()
    # A message written into the local Maildir (as a MUA would), seen+flagged.
    new = message("pushed", body=b"line one\r\nline two\r\n").replace(b"\r\n", b"\n")
    name = "1700000000.M1P1.client:2,FS"
    path = os.path.join(mb.folder("Sent"), "cur", name)
    with open(path, "wb") as f:
        f.write(new)
    mtime = 1700000000  # 2023-11-14T22:13:20Z: the arrival date to copy
    os.utime(path, (mtime, mtime))
    out = mb.run()
    assert any(c.startswith("APPEND") for c in mb.commands(out)), mb.commands(out)
    m = imap(g)
    srv = fetch_all(m, "Sent")
    uid, flags, data = srv["<pushed@remote.test>"]
    # mbsync adds its X-TUID header to what it uploads too.
    assert strip_tuid(data) == new.replace(b"\n", b"\r\n")
    assert sorted(flags) == ["\\Flagged", "\\Seen"]
    typ, d = m.uid("FETCH", str(uid), "(INTERNALDATE RFC822.SIZE)")
    idate = re.search(rb'INTERNALDATE "([^"]+)"', d[0]).group(1).decode()
    assert email.utils.parsedate_to_datetime(
        idate.replace("-", " ", 2)).timestamp() == mtime, idate
    assert f"RFC822.SIZE {len(data)}".encode() in d[0]
    m.logout()
    # mbsync learnt the UID (APPENDUID) and put it into the local file name.
    local = mb.files("Sent")
    assert f",U={uid}:" in local["<pushed@remote.test>"], local
    # The server's Maildir has it with LF ends.
    disk = [gwlib.Gateway.read(p) for p in g.all_messages(USER, folder="Sent")]
    assert [strip_tuid(d) for d in disk] == [new] and disk == [gwlib.to_lf(data)]
    # Nothing more to do on the next run.
    out = mb.run()
    assert not [c for c in mb.commands(out) if c.startswith(("APPEND", "UID STORE"))]


def test_mbsync_new_folder_both_ways_and_new_mail_between_syncs(g):
    mb = mbsync_or_skip(g, tls="STARTTLS")
    deliver(g, message("before"))
    mb.run()
    # A folder made locally is created on the server, with its message.
    os.makedirs(os.path.join(mb.folder("Projects/Alpha"), "cur"))
    for s in ("new", "tmp"):
        os.makedirs(os.path.join(mb.folder("Projects/Alpha"), s))
    with open(os.path.join(mb.folder("Projects/Alpha"), "new", "1700000001.M2P2.client"), "wb") as f:
        f.write(gwlib.to_lf(message("alpha")))
    # A folder made on the server appears locally.
    m = imap(g)
    assert m.create("Archive")[0] == "OK"
    append(m, "Archive", message("archived"))
    m.logout()
    deliver(g, message("after"))
    mb.run()
    m = imap(g)
    assert list(fetch_all(m, "Projects/Alpha")) == ["<alpha@remote.test>"]
    m.logout()
    assert list(mb.files("Archive")) == ["<archived@remote.test>"]
    assert sorted(mb.files("INBOX")) == ["<after@remote.test>", "<before@remote.test>"]


def test_mbsync_large_message_intact(g):
    mb = mbsync_or_skip(g)
    # Close to max_message_size (100000) after filterd's trace headers.
    body = b"".join(b"%05d " % i + b"abcdefghij" * 7 + b"\r\n" for i in range(1260))
    big = message("big one", body=body)
    assert 97000 < len(big) < 99500
    deliver(g, big)
    m = imap(g)
    biggest = message("big two", body=body[:99000 - 200])
    append(m, "INBOX", biggest)
    m.logout()
    mb.run()
    local = mb.files("INBOX")
    rp, received, rest = gwlib.split_trace(mb.content(local["<big-one@remote.test>"]))
    assert rest == gwlib.to_lf(big)
    assert mb.content(local["<big-two@remote.test>"]) == gwlib.to_lf(biggest)


def test_mbsync_non_ascii_folder_names(g):
    """mbsync 1.4 passes folder names through unchanged: a folder created
    with its modified UTF-7 name syncs under that name, with its mail."""
    mb = mbsync_or_skip(g)
    m = imap(g)
    assert m._simple_command("CREATE", '"Entw&APw-rfe"')[0] == "OK"
    assert m._simple_command("CREATE", '"&ZeVnLIqe-/R&AOk-sum&AOk-"')[0] == "OK"
    append(m, '"Entw&APw-rfe"', message("draft umlaut"))
    append(m, '"&ZeVnLIqe-/R&AOk-sum&AOk-"', message("japanese"))
    m.logout()
    mb.run()
    assert list(mb.files("Entw&APw-rfe")) == ["<draft-umlaut@remote.test>"]
    assert list(mb.files("&ZeVnLIqe-/R&AOk-sum&AOk-")) == ["<japanese@remote.test>"]


def test_mbsync_raw_utf8_folder_name_is_refused(g):
    """mbsync 1.4 sends a local folder "Entwürfe" as raw UTF-8 in a quoted
    string.  Without UTF8=ACCEPT (RFC 6855) that is not valid IMAP (RFC 3501
    section 9: quoted strings hold CHARs, %x01-7F; section 5.1.3: names are
    7-bit, others in modified UTF-7), so CREATE must fail (BAD, or NO as
    Dovecot does).  Accepting it and listing it as "Entw&APw-rfe" made every
    later sync fail ("far side box Entwürfe cannot be opened") and left the
    user with two local folders."""
    mb = mbsync_or_skip(g)
    mb.run()
    d = mb.folder("Entwürfe")
    for s in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(d, s))
    first = mb.run(ok=False)
    assert 'CREATE "Entw\xfcrfe"' in first, first[-3000:]
    # The server refused it (mbsync prints the command, not every reply).
    assert re.search(r"S: \S+ NO \[CANNOT\] Mailbox name is not valid", g.imapd_log()), \
        g.imapd_log()[-3000:]
    m = imap(g)
    typ, data = m.list()
    m.logout()
    assert not [x for x in data if x and b"Entw" in x], data


# -------------------------------------------------------------------- curl


def curl(g, url, *args, tls="imaps", ok=True, user=USER):
    need(CURL, "curl")
    if tls == "imaps":
        base = f"imaps://127.0.0.1:{g.imaps_port}/"
    else:
        base = f"imap://127.0.0.1:{g.imap_port}/"
    cmd = [CURL, "-sS", "--cacert", g.cert, "--user", f"{user}:{gwlib.PASSWORD}",
           "--max-time", "30"]
    if tls != "imaps":
        cmd.append("--ssl-reqd")
    r = subprocess.run(cmd + [base + url, *args], capture_output=True, timeout=60)
    if ok:
        assert r.returncode == 0, f"curl {url} {args}: {r.returncode} {r.stderr!r}"
    return r


def test_curl_list_examine_fetch_search(g):
    need(CURL, "curl")
    for i in range(3):
        deliver(g, message(f"curl {i}", body=b"needle-%d here\r\n" % i))
    r = curl(g, "", "-X", 'LIST "" "*"')
    lines = r.stdout.decode().splitlines()
    assert any(l.endswith('"INBOX"') or l.endswith(" INBOX") for l in lines), lines
    assert any("\\Sent" in l and "Sent" in l for l in lines), lines
    # A mailbox URL without UID: curl sends EXAMINE (read-only).
    r = curl(g, "INBOX", "-X", "EXAMINE INBOX")
    assert b"* 3 EXISTS" in r.stdout and b"UIDVALIDITY" in r.stdout, r.stdout
    r = curl(g, "INBOX?SUBJECT%20%22curl%201%22")
    assert r.stdout.strip() == b"* SEARCH 2", r.stdout
    r = curl(g, "INBOX?BODY%20needle")
    assert r.stdout.strip() == b"* SEARCH 1 2 3", r.stdout
    r = curl(g, "INBOX?UNSEEN")
    assert r.stdout.strip() == b"* SEARCH 1 2 3", r.stdout
    # UID fetch: whole message, then a section.
    r = curl(g, "INBOX;UID=2")
    rp, received, rest = gwlib.split_trace(gwlib.to_lf(r.stdout))
    assert rest == gwlib.to_lf(message("curl 1", body=b"needle-1 here\r\n"))
    r = curl(g, "INBOX;UID=3;SECTION=HEADER.FIELDS%20(SUBJECT)")
    assert r.stdout == b"Subject: curl 2\r\n\r\n", r.stdout
    r = curl(g, "INBOX;UID=3;SECTION=TEXT")
    assert r.stdout == b"needle-2 here\r\n", r.stdout
    r = curl(g, "INBOX;UID=1;SECTION=1")
    assert r.stdout == b"needle-0 here\r\n", r.stdout
    r = curl(g, "INBOX;UID=1;SECTION=TEXT;PARTIAL=2.6")
    assert r.stdout == b"edle-0", r.stdout
    r = curl(g, "INBOX;UID=2;PARTIAL=0.13")
    assert r.stdout == b"Return-Path: ", r.stdout
    # curl fetched with BODY[] (not PEEK): \Seen is set on 1..3 now.
    r = curl(g, "INBOX?SEEN")
    assert r.stdout.strip() == b"* SEARCH 1 2 3", r.stdout
    # A UID that is not there: curl reports an error, no crash.
    r = curl(g, "INBOX;UID=99", ok=False)
    assert r.returncode != 0 and r.stdout == b""
    # UIDVALIDITY in the URL: the wrong one is refused by curl.
    m = imap(g)
    m.select("INBOX")
    v = int(m.untagged_responses["UIDVALIDITY"][0])
    m.logout()
    assert curl(g, f"INBOX;UIDVALIDITY={v}/;UID=1").returncode == 0
    assert curl(g, f"INBOX;UIDVALIDITY={v + 1}/;UID=1", ok=False).returncode != 0
    # Custom commands after SELECT.
    r = curl(g, "INBOX", "-X", "UID FETCH 1:* (FLAGS)")
    assert r.stdout.count(b"FETCH (") == 3 and b"\\Seen" in r.stdout, r.stdout
    r = curl(g, "INBOX", "-X", "UID SEARCH SUBJECT \"curl 2\"")
    assert r.stdout.strip() == b"* SEARCH 3", r.stdout
    r = curl(g, "", "-X", "STATUS INBOX (MESSAGES UNSEEN UIDNEXT)")
    assert re.search(rb"\* STATUS \"?INBOX\"? \(MESSAGES 3 UNSEEN 0 UIDNEXT 4\)", r.stdout), r.stdout


def test_curl_starttls_plain_port(g):
    deliver(g, message("over starttls"))
    r = curl(g, "INBOX;UID=1", tls="starttls")
    assert b"Subject: over starttls" in r.stdout
    # Without --ssl-reqd curl would log in in the clear: the server must refuse.
    need(CURL, "curl")
    r = subprocess.run([CURL, "-sS", "--user", f"{USER}:{gwlib.PASSWORD}", "--max-time", "20",
                        f"imap://127.0.0.1:{g.imap_port}/INBOX;UID=1"],
                       capture_output=True, timeout=60)
    assert r.returncode != 0 and b"over starttls" not in r.stdout


def test_curl_append_create_delete(g):
    need(CURL, "curl")
    src = os.path.join(g.tmp, "upload.eml")
    msg = message("uploaded", body=b"uploaded by curl\r\n")
    with open(src, "wb") as f:
        f.write(msg)
    r = curl(g, "", "-X", "CREATE Uploads")
    r = curl(g, "Uploads", "-T", src)
    m = imap(g)
    srv = fetch_all(m, "Uploads")
    assert srv["<uploaded@remote.test>"][2] == msg
    m.logout()
    # A file with LF line ends: curl sends it as it is (bare LFs).
    src2 = os.path.join(g.tmp, "upload-lf.eml")
    with open(src2, "wb") as f:
        f.write(gwlib.to_lf(message("lf upload")))
    curl(g, "Uploads", "-T", src2)
    m = imap(g)
    srv = fetch_all(m, "Uploads")
    assert gwlib.to_lf(srv["<lf-upload@remote.test>"][2]) == gwlib.to_lf(message("lf upload"))
    m.logout()
    # APPEND to a missing folder fails (TRYCREATE), and nothing is created.
    r = curl(g, "Missing", "-T", src, ok=False)
    assert r.returncode != 0
    r = curl(g, "", "-X", 'LIST "" "*"')
    assert b"Missing" not in r.stdout and b"Uploads" in r.stdout
    # RENAME, DELETE via -X.
    curl(g, "", "-X", "RENAME Uploads Done")
    r = curl(g, "", "-X", 'LIST "" "*"')
    assert b"Done" in r.stdout and b"Uploads" not in r.stdout
    r = curl(g, "", "-X", "DELETE Done")
    r = curl(g, "", "-X", 'LIST "" "*"')
    assert b"Done" not in r.stdout
    assert not os.path.exists(os.path.join(g.maildir(USER), ".Done"))
    # Special folders cannot go.
    r = curl(g, "", "-X", "DELETE Junk", ok=False)
    assert r.returncode != 0
    # A modified UTF-7 name through curl, with a message in it.
    curl(g, "", "-X", 'CREATE "Re&AOc-us"')
    curl(g, "Re&AOc-us", "-T", src)
    r = curl(g, "", "-X", 'LIST "" "Re*"')
    assert b"Re&AOc-us" in r.stdout, r.stdout
    r = curl(g, "Re&AOc-us;UID=1")
    assert r.stdout == msg


def test_curl_large_message_append_and_fetch(g):
    need(CURL, "curl")
    body = b"".join(b"%05d " % i + b"0123456789" * 9 + b"\r\n" for i in range(1060))
    big = message("large curl", body=body)
    big = big[:99998] + b"\r\n"
    assert len(big) == 100000      # exactly max_message_size
    src = os.path.join(g.tmp, "big.eml")
    with open(src, "wb") as f:
        f.write(big)
    curl(g, "INBOX", "-T", src)
    r = curl(g, "INBOX;UID=1")
    assert r.stdout == big
    # One byte over max_message_size is refused.
    with open(src, "wb") as f:
        f.write(big[:-2] + b"x\r\n")
    r = curl(g, "INBOX", "-T", src, ok=False)
    assert r.returncode != 0
    m = imap(g)
    m.select("INBOX")
    assert m.search(None, "ALL")[1] == [b"1"]
    m.logout()


# ------------------------------------------------------------------ openssl


def test_openssl_s_client_starttls_imap(g):
    need(OPENSSL, "openssl")
    deliver(g, message("s_client"))
    script = (f'a LOGIN {USER} "{gwlib.PASSWORD}"\r\n'
              "b SELECT INBOX\r\n"
              "c UID FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n"
              "d LOGOUT\r\n")
    r = subprocess.run([OPENSSL, "s_client", "-quiet", "-starttls", "imap", "-CAfile", g.cert,
                        "-verify_return_error", "-connect", f"127.0.0.1:{g.imap_port}"],
                       input=script.encode(), capture_output=True, timeout=30)
    out = r.stdout
    assert b"a OK" in out and b"b OK [READ-WRITE]" in out, out
    assert b"Subject: s_client" in out and b"c OK" in out and b"* BYE" in out, out


# -------------------------------------------------------------------- mutt


class Mutt:
    """mutt in a detached tmux pane, driven by a muttrc that pushes keys."""

    def __init__(self, g, name="mutt"):
        need(MUTT, "mutt")
        need(TMUX, "tmux")
        self.g = g
        self.dir = os.path.join(g.tmp, name)
        os.makedirs(self.dir, exist_ok=True)
        self.rc = os.path.join(self.dir, "muttrc")
        self.sock = os.path.join(self.dir, "tmux.sock")

    def write_rc(self, push, folder="INBOX", extra=""):
        with open(self.rc, "w") as f:
            f.write(f"""set folder="imaps://localhost:{self.g.imaps_port}/"
set spoolfile="+{folder}"
set imap_user="{USER}"
set imap_pass="{gwlib.PASSWORD}"
set certificate_file="{self.g.cert}"
set ssl_verify_host=yes
set ssl_starttls=yes
set ssl_force_tls=yes
set imap_passive=yes
set imap_check_subscribed=no
set header_cache=""
set message_cachedir=""
set mbox_type=Maildir
set confirmappend=no
set confirmcreate=no
set delete=yes
set move=no
set mark_old=no
set wait_key=no
set beep=no
set charset=utf-8
set sort=date-sent
set tmpdir="{self.dir}"
{extra}
push "{push}"
""")

    def run(self, push, folder="INBOX", extra="", timeout=30):
        self.write_rc(push, folder, extra)
        log = os.path.join(self.dir, "screen.txt")
        env = dict(os.environ, HOME=self.dir, TERM="xterm", LANG="C.UTF-8")
        subprocess.run([TMUX, "-S", self.sock, "new-session", "-d", "-x", "160", "-y", "50",
                        f"{MUTT} -d 3 -n -F {self.rc}; sleep 1"], env=env, check=True, timeout=10)
        deadline = time.monotonic() + timeout
        screen = ""
        try:
            while time.monotonic() < deadline:
                r = subprocess.run([TMUX, "-S", self.sock, "capture-pane", "-p"],
                                   capture_output=True, timeout=10)
                if r.returncode != 0:      # the session ended: mutt quit
                    return screen
                screen = r.stdout.decode("utf-8", "replace")
                time.sleep(0.2)
            raise AssertionError(f"mutt did not finish in {timeout}s; screen:\n{screen}")
        finally:
            # mutt -d 3 logs the IMAP exchange to $HOME/.muttdebug0 (this run).
            try:
                with open(os.path.join(self.dir, ".muttdebug0"), "rb") as f:
                    self.debug = f.read().decode("utf-8", "replace")
            except OSError:
                self.debug = ""
            subprocess.run([TMUX, "-S", self.sock, "kill-server"], capture_output=True, timeout=10)
            with open(log, "w") as f:
                f.write(screen)


def test_mutt_reads_and_saves_over_imaps(g):
    mutt = Mutt(g)
    msgs = [message(f"mutt {i}", body=b"mutt body %d\r\n" % i) for i in range(3)]
    for msg in msgs:
        deliver(g, msg)
    out = os.path.join(mutt.dir, "saved.txt")
    # Pipe message 2 (sorted by date, all equal: mailbox order) to a file,
    # then quit without changing anything else.
    mutt.run(f"<limit>~s 'mutt 1'<enter><pipe-message>cat > {out}<enter><quit>",)
    data = gwlib.Gateway.read(out)
    assert b"Subject: mutt 1" in data and b"mutt body 1" in data, data
    # Piping does not mark a message read in mutt: nothing changed.
    m = imap(g)
    srv = fetch_all(m, "INBOX")
    m.logout()
    assert [f for _, f, _ in srv.values()] == [[], [], []], srv
    # Displaying it does (mutt sets \Seen with a STORE when it syncs).
    mutt.run("<limit>~s 'mutt 2'<enter><display-message><exit><quit>")
    m = imap(g)
    srv = fetch_all(m, "INBOX")
    m.logout()
    assert srv["<mutt-2@remote.test>"][1] == ["\\Seen"], srv
    assert srv["<mutt-0@remote.test>"][1] == [], srv
    # Saving (copying) a message to a local mbox file: byte for byte.
    box = os.path.join(mutt.dir, "saved.mbox")
    mutt.run(f"<limit>~s 'mutt 0'<enter><copy-message>{box}<enter><quit>",
             extra="set mbox_type=mbox")
    saved = gwlib.Gateway.read(box)
    assert saved.startswith(b"From "), saved[:200]
    body = saved.split(b"\n", 1)[1]
    # mutt adds Content-Length: and Lines: to mbox headers, and a blank line.
    body = re.sub(rb"(?m)^(Content-Length|Lines): [0-9]+\n", b"", body)
    assert gwlib.split_trace(body)[2] == gwlib.to_lf(msgs[0]) + b"\n", body


def test_mutt_copy_flag_and_delete(g):
    mutt = Mutt(g)
    for i in range(3):
        deliver(g, message(f"mutt {i}"))
    m = imap(g)
    assert m._simple_command("CREATE", '"Entw&APw-rfe"')[0] == "OK"
    m.logout()
    # Copy "mutt 0" into a non-ASCII folder (mutt encodes it as modified
    # UTF-7), flag "mutt 1", delete "mutt 2" and sync (expunge), then quit.
    push = ("<limit>~s 'mutt 0'<enter><copy-message>=Entwürfe<enter>"
            "<limit>~s 'mutt 1'<enter><flag-message>"
            "<limit>~s 'mutt 2'<enter><delete-message>"
            "<sync-mailbox><quit>")
    screen = mutt.run(push, extra="set quit=yes")
    m = imap(g)
    inbox = fetch_all(m, "INBOX")
    umlaut = fetch_all(m, '"Entw&APw-rfe"')
    m.logout()
    assert sorted(inbox) == ["<mutt-0@remote.test>", "<mutt-1@remote.test>"], (sorted(inbox), screen)
    assert "\\Flagged" in inbox["<mutt-1@remote.test>"][1], inbox
    assert list(umlaut) == ["<mutt-0@remote.test>"], (umlaut, screen)
    assert gwlib.split_trace(gwlib.to_lf(umlaut["<mutt-0@remote.test>"][2]))[2] == \
        gwlib.to_lf(message("mutt 0"))


def test_mutt_header_cache_condstore_sees_server_changes(g):
    """mutt with a header cache and imap_condstore: the second open asks
    for FLAGS CHANGEDSINCE the cached HIGHESTMODSEQ (RFC 7162) and must see
    what another client changed in between."""
    mutt = Mutt(g)
    for i in range(3):
        deliver(g, message(f"hc {i}", body=b"hc body %d\r\n" % i))
    hc = os.path.join(mutt.dir, "hcache")
    os.makedirs(hc)
    extra = f'set header_cache="{hc}"\nset imap_condstore=yes'
    out1 = os.path.join(mutt.dir, "first.txt")
    mutt.run(f"<tag-pattern>~A<enter><tag-prefix><pipe-message>grep -c . >> {out1}; true<enter><quit>",
             extra=extra + "\nset pipe_split=yes")
    assert os.listdir(hc), "mutt wrote no header cache"
    m = imap(g)
    m.select("INBOX")
    m.store("2", "+FLAGS", "(\\Flagged)")
    m.store("3", "+FLAGS", "(\\Deleted)")
    m.expunge()
    append(m, "INBOX", message("hc new"))
    m.logout()
    out2 = os.path.join(mutt.dir, "flagged.txt")
    mutt.run(f"<limit>~F<enter><tag-pattern>~A<enter><tag-prefix><pipe-message>"
             f"grep Subject: >> {out2}; true<enter><quit>", extra=extra + "\nset pipe_split=yes")
    assert gwlib.Gateway.read(out2) == b"Subject: hc 1\n", mutt.debug[-5000:]
    # It used the cache: flags CHANGEDSINCE, not every header again.
    assert re.search(r"> a\d+ UID FETCH \S+ \(FLAGS\) \(CHANGEDSINCE \d+\)", mutt.debug), mutt.debug[-5000:]
    out3 = os.path.join(mutt.dir, "all.txt")
    mutt.run(f"<tag-pattern>~A<enter><tag-prefix><pipe-message>"
             f"grep Subject: >> {out3}; true<enter><quit>", extra=extra + "\nset pipe_split=yes")
    assert sorted(gwlib.Gateway.read(out3).splitlines()) == \
        [b"Subject: hc 0", b"Subject: hc 1", b"Subject: hc new"]


def test_mutt_server_side_body_search(g):
    """mutt's =b pattern is a server-side SEARCH BODY (and =h HEADER)."""
    mutt = Mutt(g)
    deliver(g, message("needle", body=b"the word haystack-needle is here\r\n"))
    deliver(g, message("other", body=b"nothing to see\r\n"))
    deliver(g, message("qp", body=b"caf=C3=A9 cr=C3=A8me\r\n",
                       extra=b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
                             b"Content-Transfer-Encoding: quoted-printable\r\n"))
    out = os.path.join(mutt.dir, "found.txt")
    mutt.run(f"<limit>=b haystack-needle<enter><tag-pattern>~A<enter><tag-prefix><pipe-message>"
             f"grep Subject: >> {out}; true<enter><quit>", extra="set pipe_split=yes")
    assert gwlib.Gateway.read(out) == b"Subject: needle\n"
    out = os.path.join(mutt.dir, "found2.txt")
    mutt.run(f"<limit>=b crème<enter><tag-pattern>~A<enter><tag-prefix><pipe-message>"
             f"grep Subject: >> {out}; true<enter><quit>", extra="set pipe_split=yes")
    assert gwlib.Gateway.read(out) == b"Subject: qp\n"


def test_mutt_idle_shows_new_mail(g):
    """mutt with imap_idle: a message delivered over SMTP while mutt sits in
    the index shows up on its screen within seconds (IDLE + EXISTS)."""
    mutt = Mutt(g)
    deliver(g, message("already there"))
    mutt.write_rc("", extra="set imap_idle=yes\nset mail_check=2\nset timeout=2\n"
                            "set imap_keepalive=30")
    env = dict(os.environ, HOME=mutt.dir, TERM="xterm", LANG="C.UTF-8")
    subprocess.run([TMUX, "-S", mutt.sock, "new-session", "-d", "-x", "160", "-y", "50",
                    f"{MUTT} -d 3 -n -F {mutt.rc}"], env=env, check=True, timeout=10)

    def screen():
        r = subprocess.run([TMUX, "-S", mutt.sock, "capture-pane", "-p"],
                           capture_output=True, timeout=10)
        return r.stdout.decode("utf-8", "replace")

    def wait_screen(text, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s = screen()
            if text in s:
                return s
            time.sleep(0.2)
        raise AssertionError(f"{text!r} not on mutt's screen after {timeout}s:\n{screen()}")

    try:
        wait_screen("already there", 20)
        time.sleep(3)           # let mutt enter IDLE
        t0 = time.monotonic()
        deliver(g, message("arrived while idle"))
        wait_screen("arrived while idle", 15)
        waited = time.monotonic() - t0
        subprocess.run([TMUX, "-S", mutt.sock, "send-keys", "q"], timeout=10)
        time.sleep(1)
    finally:
        subprocess.run([TMUX, "-S", mutt.sock, "kill-server"], capture_output=True, timeout=10)
    with open(os.path.join(mutt.dir, ".muttdebug0"), "rb") as f:
        debug = f.read().decode("utf-8", "replace")
    assert re.search(r"> a\d+ IDLE", debug), debug[-4000:]
    assert waited < 10, waited
