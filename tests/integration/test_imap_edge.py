"""imapd edge cases found in review: hostile literals and patterns, huge
headers, UID EXPUNGE *, DELETE/RENAME of the selected mailbox, keyword
announcements, LIST references, IDLE with a partial line."""
import imaplib
import socket
import ssl
import threading
import time

import pytest

import gwlib
from test_imap import Raw, append, deliver, flat, login, tls_ctx


@pytest.fixture
def g(gateway_factory):
    gw = gateway_factory(allow_plaintext_auth="yes")
    gw.start_imapd()
    return gw


def raw_login(g):
    r = Raw(g)
    r.cmd('a LOGIN alice@example.test "%s"\r\n' % gwlib.PASSWORD, read=False)
    assert r.until(b"a ")[-1].startswith(b"a OK")
    return r


def test_nonsync_literal_before_login_is_refused(g):
    r = Raw(g)
    r.sock.settimeout(10)
    # 20000 octets announced with LITERAL+ before login (the limit is 8 KiB).
    r.sock.sendall(b"a LOGIN {20000+}\r\n")
    out = r.f.readline() + r.f.readline()
    assert b"a BAD" in out and b"* BYE" in out, out
    assert r.f.readline() == b""


def test_list_pattern_with_many_wildcards_answers(g):
    r = raw_login(g)
    assert r.cmd("b CREATE " + "a" * 200 + "\r\n").startswith(b"b OK")
    r.sock.settimeout(20)
    r.cmd('c LIST "" "*a*a*a*a*a*a*a*a*b"\r\n', read=False)
    out = r.until(b"c ")
    assert out[-1].startswith(b"c OK") and len(out) == 1, out
    r.cmd('d LIST "" "*a*a*a"\r\n', read=False)
    out = r.until(b"d ")
    assert len(out) == 2 and b"aaaa" in out[0]


def test_huge_subject_gives_a_wellformed_envelope(g):
    m = login(g)
    subject = b"S" * 90000
    append(m, "INBOX", b"Subject: " + subject + b"\r\nFrom: a@b.test\r\n\r\nbody\r\n")
    m.select("INBOX")
    typ, data = m.fetch("1", "(UID ENVELOPE)")
    assert typ == "OK"
    assert subject in flat(data)
    typ, data = m.fetch("1", "(BODYSTRUCTURE)")
    assert typ == "OK" and b"TEXT" in flat(data).upper()
    m.logout()


def test_uid_expunge_star_and_failed_delete_keeps_selection(g):
    m = login(g)
    for _ in range(3):
        append(m, "INBOX", b"Subject: x\r\n\r\ny\r\n")
    m.select("INBOX")
    m.store("3", "+FLAGS", "(\\Deleted)")
    typ, data = m.uid("EXPUNGE", "*")
    assert typ == "OK"
    assert m.search(None, "ALL")[1] == [b"1 2"]
    m.create("Work/sub")
    m.select("Work")
    typ, data = m.delete("Work")
    assert typ == "NO"
    typ, data = m.fetch("1:*", "(FLAGS)")
    assert typ == "OK"  # still selected
    m.logout()


def test_rename_selected_mailbox_keeps_the_session(g):
    m = login(g)
    m.create("Work")
    append(m, "Work", b"Subject: w\r\n\r\nw\r\n")
    m.select("Work")
    assert m.rename("Work", "Play")[0] == "OK"
    typ, data = m.noop()
    assert typ == "OK"
    typ, data = m.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert data[0][1].strip() == b"Subject: w"
    append(m, "Play", b"Subject: p\r\n\r\np\r\n")
    m.noop()
    assert m.search(None, "ALL")[1] == [b"1 2"]
    m.logout()


def test_new_keywords_are_announced(g):
    a = login(g)
    append(a, "INBOX", b"Subject: k\r\n\r\nk\r\n")
    a.select("INBOX")
    b = login(g)
    b.select("INBOX")
    a.store("1", "+FLAGS", "(Project1)")
    assert any(b"Project1" in f for f in a.untagged_responses.get("FLAGS", [])), a.untagged_responses
    b.noop()
    assert any(b"Project1" in f for f in b.untagged_responses.get("FLAGS", [])), b.untagged_responses
    a.logout()
    b.logout()


def test_list_reference_and_inbox_case(g):
    m = login(g)
    m.create("INBOX/child")
    m.create("Gr&APw-n/x")
    for ref, pat in (('""', "inbox/%"), ('"inbox/"', "%"), ('"INBOX/"', "%")):
        typ, data = m.list(ref, pat)
        assert any(b"INBOX/child" in d for d in data if d), (ref, pat, data)
    typ, data = m.list('"Gr&APw-n/"', "%")
    assert any(b"Gr&APw-n/x" in d for d in data if d), data
    m.logout()


def test_idle_with_a_partial_line_still_reports(g):
    m = login(g, "bob@example.test")
    m.select("INBOX")
    tag = m._new_tag()
    m.send(tag + b" IDLE\r\n")
    assert m.readline().startswith(b"+")
    m.send(b"DO")
    time.sleep(0.2)
    m.sock.settimeout(10)
    threading.Thread(target=deliver, args=(g, "bob@example.test")).start()
    assert m.readline() == b"* 1 EXISTS\r\n"
    m.send(b"NE\r\n")
    while True:
        line = m.readline()
        if line.startswith(tag):
            assert b" OK " in line
            break
    m.logout()


def test_idle_survives_a_removed_index(g):
    import glob
    import os
    m = login(g)
    append(m, "INBOX", b"Subject: x\r\n\r\ny\r\n")
    m.select("INBOX")
    tag = m._new_tag()
    m.send(tag + b" IDLE\r\n")
    assert m.readline().startswith(b"+")
    time.sleep(0.5)
    for f in glob.glob(g.maildir("alice@example.test") + "/index.sqlite*"):
        os.unlink(f)
    m.sock.settimeout(10)
    m.send(b"DONE\r\n")
    line = m.readline()
    assert line.startswith(b"* BYE") or line.startswith(tag), line
    # The daemon lives on and the next login rebuilds the index.
    time.sleep(0.2)
    assert g.imapd_proc.poll() is None
    m2 = login(g)
    typ, data = m2.select("INBOX")
    assert typ == "OK" and data == [b"1"]
    m2.logout()


def test_hostile_limits_without_other_coverage(g):
    r = raw_login(g)
    r.sock.settimeout(10)
    assert r.cmd("b SELECT INBOX\r\n", read=False) is None
    assert r.until(b"b ")[-1].startswith(b"b OK")
    # A sequence number beyond the mailbox is BAD; "*" in an empty one is not.
    assert r.cmd("c FETCH 5 FLAGS\r\n").startswith(b"c BAD No such message")
    r.cmd("d FETCH 1:* FLAGS\r\n", read=False)
    assert r.until(b"d ")[-1].startswith(b"d OK")
    # More than 1000 keywords in one command.
    r.cmd("e APPEND INBOX {5+}\r\nhello\r\n", read=False)
    assert r.until(b"e ")[-1].startswith(b"e OK")
    kws = " ".join(f"k{i}" for i in range(1001))
    assert r.cmd(f"f STORE 1 +FLAGS ({kws})\r\n").startswith(b"f BAD Too many keywords")
    # A LIST pattern longer than 1024 octets.
    assert r.cmd('h LIST "" "' + "%" * 1100 + '"\r\n').startswith(b"h BAD Mailbox pattern too long")
    assert r.cmd("i NOOP\r\n").startswith(b"i OK")


def test_authenticate_continuation_cancel_and_overlong(g):
    r = Raw(g)
    r.sock.settimeout(10)
    assert r.cmd("a AUTHENTICATE PLAIN\r\n").startswith(b"+")
    assert r.cmd("*\r\n").startswith(b"a BAD AUTHENTICATE cancelled")
    assert r.cmd("b AUTHENTICATE PLAIN\r\n").startswith(b"+")
    # Longer than 8 KiB: refused as malformed, and the session goes on.
    assert r.cmd("A" * 9000 + "\r\n").startswith(b"b BAD Malformed")
    assert r.cmd("c NOOP\r\n").startswith(b"c OK")
    assert r.cmd("d AUTHENTICATE PLAIN !!!!\r\n").startswith(b"d BAD Malformed")
