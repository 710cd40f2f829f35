"""POP3 in imapd against poplib and curl: INBOX only, DELE/RSET/QUIT,
[IN-USE], STLS and implicit TLS, UIDL consistent with IMAP."""
import imaplib
import os
import poplib
import socket
import ssl
import subprocess
import time

import pytest

import gwlib

USER = "alice@example.test"


@pytest.fixture
def g(gateway_factory):
    gw = gateway_factory()
    gw.start_imapd()
    return gw


def ctx(g):
    return ssl.create_default_context(cafile=g.cert)


def deliver(g, rcpt, subject, body=b"line one\r\n.leading dot\r\nline three\r\n"):
    with g.smtp() as s:
        s.starttls(context=ctx(g))
        s.sendmail("sender@remote.test", [rcpt], b"Subject: " + subject + b"\r\n\r\n" + body)


def pop(g, user=USER):
    p = poplib.POP3("127.0.0.1", g.pop3_port, timeout=10)
    p.stls(context=ctx(g))
    p.user(user)
    p.pass_(gwlib.PASSWORD)
    return p


def imap(g, user=USER):
    m = imaplib.IMAP4("127.0.0.1", g.imap_port, timeout=10)
    m.starttls(ssl_context=ctx(g))
    m.login(user, gwlib.PASSWORD)
    return m


def test_stat_list_uidl_retr_top_and_no_flags_set(g):
    for i in range(3):
        deliver(g, USER, b"msg %d" % i)
    p = pop(g)
    count, size = p.stat()
    assert count == 3
    resp, listing, _ = p.list()
    sizes = [int(l.split()[1]) for l in listing]
    assert sum(sizes) == size
    resp, lines, octets = p.retr(2)
    text = b"\r\n".join(lines) + b"\r\n"
    assert b"Subject: msg 1" in text
    # Dot-stuffing undone by poplib; CRLF everywhere; the size matches LIST.
    assert b".leading dot" in lines
    assert octets - 0 >= sizes[1] - 2
    resp, top, _ = p.top(1, 1)
    assert b"Subject: msg 0" in top and b"line one" in top and b"line three" not in top
    resp, uidl, _ = p.uidl()
    uids = [l.split()[1].decode() for l in uidl]
    p.quit()
    # UIDL is UIDVALIDITY.UID of INBOX; RETR set no \Seen.
    m = imap(g)
    typ, data = m.select("INBOX")
    validity = m.untagged_responses["UIDVALIDITY"][0].decode()
    typ, data = m.fetch("1:3", "(UID FLAGS)")
    imap_uids = [f"{validity}.{d.split(b'UID ')[1].split()[0].decode()}" for d in data]
    assert uids == imap_uids
    assert all(b"\\Seen" not in d for d in data), data
    m.logout()


def test_dele_rset_quit_and_dropped_connection(g):
    for i in range(4):
        deliver(g, USER, b"msg %d" % i)
    p = pop(g)
    p.dele(1)
    p.dele(2)
    with pytest.raises(poplib.error_proto):
        p.retr(1)
    assert p.stat()[0] == 2
    p.rset()
    assert p.stat()[0] == 4
    p.dele(1)
    # Dropped without QUIT: nothing is deleted.
    p.sock.shutdown(socket.SHUT_RDWR)
    p.close()
    g_wait = time.monotonic() + 5
    while "connection ended without QUIT" not in g.imapd_log():
        assert time.monotonic() < g_wait, g.imapd_log()[-2000:]
        time.sleep(0.05)
    p = pop(g)
    assert p.stat()[0] == 4
    m = imap(g)
    m.select("INBOX")
    p.dele(1)
    p.dele(3)
    assert p.quit().startswith(b"+OK")
    # IMAP sees the expunges at once.
    m.noop()
    assert sorted(int(x) for x in m.response("EXPUNGE")[1]) in ([1, 3], [1, 2])
    typ, data = m.search(None, "ALL")
    assert data == [b"1 2"]
    typ, data = m.fetch("1:2", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    subjects = [d[1].strip() for d in data if isinstance(d, tuple)]
    assert subjects == [b"Subject: msg 1", b"Subject: msg 3"]
    m.logout()


def test_in_use(g):
    deliver(g, USER, b"x")
    p = pop(g)
    q = poplib.POP3("127.0.0.1", g.pop3_port, timeout=10)
    q.stls(context=ctx(g))
    q.user(USER)
    with pytest.raises(poplib.error_proto, match=r"IN-USE"):
        q.pass_(gwlib.PASSWORD)
    p.quit()
    q.close()
    q = pop(g)
    assert q.stat()[0] == 1
    q.quit()


def test_only_inbox_is_served(g):
    deliver(g, USER, b"in inbox")
    m = imap(g)
    for folder in ("Junk", "Whitelist", "Blacklist", "Trash", "Sent"):
        typ, data = m.append(folder, None, None, b"Subject: in " + folder.encode() + b"\r\n\r\nx\r\n")
        assert typ == "OK"
    m.create("Work")
    m.append("Work", None, None, b"Subject: in Work\r\n\r\nx\r\n")
    m.logout()
    p = pop(g)
    assert p.stat()[0] == 1
    resp, lines, _ = p.retr(1)
    assert b"Subject: in inbox" in lines
    for i in (2, 3):
        with pytest.raises(poplib.error_proto):
            p.retr(i)
    p.quit()


def test_implicit_tls_auth_plain_and_plaintext_refused(g):
    p = poplib.POP3_SSL("127.0.0.1", g.pop3s_port, context=ctx(g), timeout=10)
    caps = p.capa()
    for c in ("TOP", "UIDL", "SASL", "RESP-CODES", "PIPELINING", "EXPIRE", "IMPLEMENTATION", "USER"):
        assert c in caps, caps
    import base64
    resp = p._shortcmd("AUTH PLAIN " + base64.b64encode(b"\0" + USER.encode() + b"\0" +
                                                        gwlib.PASSWORD.encode()).decode())
    assert resp.startswith(b"+OK")
    assert p.stat() == (0, 0)
    p.quit()
    # Without TLS: USER/PASS and AUTH refused; CAPA offers STLS, not USER.
    p = poplib.POP3("127.0.0.1", g.pop3_port, timeout=10)
    caps = p.capa()
    assert "STLS" in caps and "USER" not in caps
    with pytest.raises(poplib.error_proto, match="AUTH"):
        p.user(USER)
    p.quit()


def test_wrong_password_slowed(g):
    p = poplib.POP3("127.0.0.1", g.pop3_port, timeout=30)
    p.stls(context=ctx(g))
    p.user(USER)
    t0 = time.monotonic()
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
        p.pass_("wrong")
    assert time.monotonic() - t0 >= 0.9


def test_raw_protocol_details(g):
    deliver(g, USER, b"raw", body=b"a\r\n..b\r\n.\r\nend\r\n")
    s = socket.create_connection(("127.0.0.1", g.pop3_port), 10)
    f = s.makefile("rb")
    assert f.readline().startswith(b"+OK")
    s.sendall(b"STLS\r\nUSER x\r\n")
    data = f.read()
    assert b"-ERR" in data and b"+OK Begin" not in data   # pipelined plaintext refused
    s.close()
    # Dot-stuffing on the wire, byte for byte.
    t = ctx(g).wrap_socket(socket.create_connection(("127.0.0.1", g.pop3s_port), 10),
                           server_hostname="127.0.0.1")
    f = t.makefile("rb")
    f.readline()
    t.sendall(f"USER {USER}\r\nPASS {gwlib.PASSWORD}\r\nRETR 1\r\nLIST 9\r\nDELE 0\r\nNOOP\r\n".encode())
    assert f.readline().startswith(b"+OK")
    assert f.readline().startswith(b"+OK Logged in")
    assert f.readline().startswith(b"+OK")
    body = b""
    while True:
        line = f.readline()
        if line == b".\r\n":
            break
        assert line.endswith(b"\r\n")
        body += line
    assert body.endswith(b"\r\na\r\n...b\r\n..\r\nend\r\n"), body
    assert f.readline().startswith(b"-ERR No such message")
    assert f.readline().startswith(b"-ERR Invalid message number")
    assert f.readline() == b"+OK\r\n"
    t.close()


def test_curl_pop3s(g):
    deliver(g, USER, b"for curl")
    r = subprocess.run(["curl", "-s", "--cacert", g.cert, "--user", f"{USER}:{gwlib.PASSWORD}",
                        f"pop3s://127.0.0.1:{g.pop3s_port}/1"], capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert b"Subject: for curl" in r.stdout
    r = subprocess.run(["curl", "-s", "--cacert", g.cert, "--ssl-reqd", "--user",
                        f"{USER}:{gwlib.PASSWORD}", f"pop3://127.0.0.1:{g.pop3_port}/"],
                       capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(b"1 ")


def test_autologout(gateway_factory):
    g = gateway_factory(pop3_timeout="1s")
    g.start_imapd()
    s = socket.create_connection(("127.0.0.1", g.pop3_port), 10)
    f = s.makefile("rb")
    assert f.readline().startswith(b"+OK")
    t0 = time.monotonic()
    assert f.readline().startswith(b"-ERR Autologout")
    assert f.readline() == b""
    assert time.monotonic() - t0 < 8


def test_long_line_then_pipelined_commands_and_strict_numbers(g):
    deliver(g, USER, b"one")
    t = ctx(g).wrap_socket(socket.create_connection(("127.0.0.1", g.pop3s_port), 10),
                           server_hostname="127.0.0.1")
    f = t.makefile("rb")
    f.readline()
    t.sendall(f"USER {USER}\r\nPASS {gwlib.PASSWORD}\r\n".encode())
    f.readline(), f.readline()
    t.sendall(b"A" * 700)
    time.sleep(0.3)
    t.sendall(b"xx\r\nNOOP\r\nDELE +1\r\nDELE  1\r\nSTAT\r\n")
    assert f.readline().startswith(b"-ERR Line too long")
    assert f.readline() == b"+OK\r\n"
    assert f.readline().startswith(b"-ERR Invalid message number")
    assert f.readline().startswith(b"-ERR Invalid message number")
    assert f.readline().startswith(b"+OK 1 ")
    t.close()


def test_bare_cr_and_crlf_files_come_out_as_crlf(g):
    # A file dropped in by another tool, with a bare CR and no final newline
    # (before the first login: imapd indexes what it finds on its first open).
    d = g.maildir(USER) + "/new/"
    os.makedirs(d, exist_ok=True)
    with open(d + "1700000000.M1P1Q1.elsewhere", "wb") as f:
        f.write(b"Subject: odd\n\nA\rB\n.dot\nend")
    p = pop(g)
    resp, lines, _ = p.retr(1)
    assert lines == [b"Subject: odd", b"", b"A", b"B", b".dot", b"end"], lines
    p.quit()
