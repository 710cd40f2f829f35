"""Limits and the replies they give: message size, line length, recipients,
command length, bad commands, timeouts, connections."""
import smtplib
import socket
import time
import uuid

import pytest

from gwlib import RawSMTP, client_context, split_trace, to_lf

GW_CONFIG = {
    "max_recipients": 3,
    "max_bad_commands": 5,
    "max_line_length": 1000,
    "max_message_size": 100000,
}


def marker():
    return uuid.uuid4().hex


def test_size_parameter_too_big(gw):
    with gw.smtp() as s:
        s.ehlo("client.example.test")
        code, text = s.mail("a@remote.test", ["SIZE=100001"])
        assert code == 552 and text.startswith(b"5.3.4"), (code, text)
        code, text = s.mail("a@remote.test", ["SIZE=100000"])
        assert code == 250, (code, text)
        s.rset()
        # Overflowing numbers are still just too big (or a syntax error).
        code, text = s.mail("a@remote.test", ["SIZE=99999999999999999999999"])
        assert code in (501, 552), (code, text)


def test_message_too_big_then_small_one(gw):
    m = marker()
    before = set(gw.every_delivered_file())
    line = b"y" * 78 + b"\r\n"
    big = f"Subject: big {m}\r\n\r\n".encode() + line * (120000 // len(line))
    with gw.smtp() as s:
        s.ehlo("client.example.test")
        # Do not announce SIZE= (smtplib would): the limit must hold at DATA.
        del s.esmtp_features["size"]
        with pytest.raises(smtplib.SMTPDataError) as ei:
            s.sendmail("a@remote.test", ["alice@example.test"], big)
        assert ei.value.smtp_code == 552, ei.value
        assert ei.value.smtp_error.startswith(b"5.3.4"), ei.value
        assert set(gw.every_delivered_file()) == before
        # The session is still usable.
        small = f"Subject: small {m}\r\n\r\nsmall one\r\n".encode()
        assert s.sendmail("a@remote.test", ["alice@example.test"], small) == {}
    files = gw.find_message("alice@example.test", m)
    assert len(files) == 1
    assert split_trace(gw.read(files[0]))[2] == to_lf(small)
    gw.wait_log(r"action=reject reply=\"552 5\.3\.4")


def test_message_just_under_the_limit(gw):
    m = marker()
    head = f"Subject: limit {m}\r\n\r\n".encode()
    line = b"z" * 98 + b"\r\n"
    msg = head + line * ((100000 - len(head)) // len(line))
    assert len(msg) <= 100000
    with gw.smtp() as s:
        s.ehlo("client.example.test")
        assert s.sendmail("a@remote.test", ["bob@example.test"], msg) == {}
    files = gw.find_message("bob@example.test", m)
    assert len(files) == 1
    assert split_trace(gw.read(files[0]))[2] == to_lf(msg)


def test_line_too_long(gw):
    m = marker()
    before = set(gw.every_delivered_file())
    with gw.smtp() as s:
        s.ehlo("client.example.test")
        # 998 octets + CRLF = 1000: allowed (RFC 5321 4.5.3.1.6).
        ok = f"Subject: ok998 {m}\r\n\r\n".encode() + b"a" * 998 + b"\r\nend\r\n"
        assert s.sendmail("a@remote.test", ["alice@example.test"], ok) == {}
        for n in (999, 1500, 5000):
            bad = f"Subject: long{n} {m}\r\n\r\n".encode() + b"b" * n + b"\r\nend\r\n"
            with pytest.raises(smtplib.SMTPDataError) as ei:
                s.sendmail("a@remote.test", ["alice@example.test"], bad)
            assert ei.value.smtp_code == 554, (n, ei.value)
            assert ei.value.smtp_error.startswith(b"5.6.0"), (n, ei.value)
    files = gw.find_message("alice@example.test", m)
    assert len(files) == 1
    assert b"Subject: ok998" in gw.read(files[0])
    assert set(gw.every_delivered_file()) - before == set(files)


def test_max_recipients(gw):
    gw.add_user("dave@example.test")
    m = marker()
    msg = f"Subject: rcpts {m}\r\n\r\nthree of four\r\n".encode()
    with gw.smtp() as s:
        s.ehlo("client.example.test")
        s.mail("a@remote.test")
        for r in ("alice@example.test", "bob@example.test", "carol@other.test"):
            assert s.rcpt(r)[0] == 250
        code, text = s.rcpt("dave@example.test")
        assert code == 452 and text.startswith(b"4.5.3"), (code, text)
        code, text = s.data(msg)
        assert code == 250, text
        # The next transaction starts counting again.
        s.mail("a@remote.test")
        assert s.rcpt("dave@example.test")[0] == 250
        s.rset()
    for r in ("alice@example.test", "bob@example.test", "carol@other.test"):
        files = gw.find_message(r, m)
        assert len(files) == 1, r
        assert split_trace(gw.read(files[0]))[2] == to_lf(msg)
    assert gw.find_message("dave@example.test", m) == []


def test_command_line_too_long(gw):
    with gw.raw() as c:
        c.ehlo()
        code, lines = c.cmd("NOOP " + "x" * 3000)
        assert code == 500 and lines[0].startswith("5.5.2"), (code, lines)
        # Longer than the read buffer, in pieces.
        c.send(b"MAIL FROM:<" + b"a" * 70000)
        time.sleep(0.1)
        c.send(b"@remote.test>\r\n")
        code, lines = c.reply()
        assert code == 500 and lines[0].startswith("5.5.2"), (code, lines)
        # Still in sync: the rest of the long line was not taken as a command.
        code, lines = c.cmd("NOOP")
        assert code == 250, (code, lines)
        assert c.nothing_pending()
        assert c.cmd("MAIL FROM:<a@remote.test>")[0] == 250


def test_bad_commands_close_session(gw):
    with gw.raw() as c:
        c.ehlo()
        for _ in range(5):
            code, lines = c.cmd("XYZZY")
            assert code == 500, (code, lines)
        code, lines = c.reply(timeout=5)
        assert code == 421, (code, lines)
        c.expect_eof()
    # Pipelined: the excess is not executed.
    with gw.raw() as c:
        c.ehlo()
        c.send(b"FOO\r\n" * 5 + b"MAIL FROM:<a@remote.test>\r\n")
        for _ in range(5):
            assert c.reply()[0] == 500
        assert c.reply()[0] == 421
        assert c.expect_eof() == b""


def test_idle_timeout(gateway_factory):
    gw = gateway_factory(smtp_timeout="1s")
    with gw.raw() as c:
        t0 = time.monotonic()
        code, lines = c.reply(timeout=5)
        elapsed = time.monotonic() - t0
        assert code == 421 and lines[0].startswith("4.4.2"), (code, lines)
        assert 0.8 <= elapsed <= 3.0, elapsed
        c.expect_eof(timeout=2)
    # Also in the middle of a transaction.
    with gw.raw() as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@remote.test>")[0] == 250
        code, lines = c.reply(timeout=5)
        assert code == 421 and lines[0].startswith("4.4.2"), (code, lines)
        c.expect_eof(timeout=2)


def test_tls_timeouts(gateway_factory, cafile):
    gw = gateway_factory(smtp_timeout="1s")
    # A client that opens the implicit TLS port and never says hello.
    s = socket.create_connection(("127.0.0.1", gw.sport), 5)
    t0 = time.monotonic()
    s.settimeout(5)
    try:
        data = s.recv(100)
    except ConnectionResetError:
        data = b""
    s.close()
    assert data == b"", data
    assert 0.8 <= time.monotonic() - t0 <= 3.0
    # Idle inside TLS: 421 4.4.2 through TLS, then the end.
    with gw.raw() as c:
        c.ehlo()
        assert c.cmd("STARTTLS")[0] == 220
        c.starttls(client_context(cafile))
        code, lines = c.reply(timeout=5)
        assert code == 421 and lines[0].startswith("4.4.2"), (code, lines)
        c.expect_eof(timeout=2)


def test_data_timeout(gateway_factory):
    gw = gateway_factory(smtp_data_timeout="1s", smtp_timeout="30s")
    m = marker()
    with gw.raw() as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@remote.test>")[0] == 250
        assert c.cmd("RCPT TO:<alice@example.test>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        t0 = time.monotonic()
        c.send(f"Subject: stalled {m}\r\n\r\nhalf a message".encode())
        rest = c.expect_eof(timeout=4)
        elapsed = time.monotonic() - t0
        assert 0.8 <= elapsed <= 3.5, elapsed
        assert rest == b"" or rest.startswith(b"421 4.4.2"), rest
        assert b"250" not in rest
    assert gw.every_delivered_file() == []
    # The same in BDAT.
    with gw.raw() as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@remote.test>")[0] == 250
        assert c.cmd("RCPT TO:<alice@example.test>")[0] == 250
        c.send(f"BDAT 1000 LAST\r\nSubject: stalled {m}\r\n".encode())
        rest = c.expect_eof(timeout=4)
        assert b"250" not in rest
    assert gw.every_delivered_file() == []


def open_banner(port):
    """Connect and read the greeting: (code, text, RawSMTP)."""
    c = RawSMTP(port, timeout=5)
    return c.banner[0], c.banner[1][0], c


def connect_until_220(port, timeout=3):
    deadline = time.monotonic() + timeout
    while True:
        code, text, c = open_banner(port)
        if code == 220:
            return c
        c.close()
        assert time.monotonic() < deadline, f"still refused after {timeout}s: {code} {text}"
        time.sleep(0.05)


@pytest.mark.parametrize("key,text", [
    ("max_connections_per_ip", "from your address"),
    ("max_connections", "too many connections"),
])
def test_connection_limits(gateway_factory, key, text):
    gw = gateway_factory(**{key: 3 if key == "max_connections_per_ip" else 2})
    limit = 3 if key == "max_connections_per_ip" else 2
    conns = []
    try:
        for _ in range(limit):
            code, banner, c = open_banner(gw.port)
            conns.append(c)
            assert code == 220, banner
        code, banner, c = open_banner(gw.port)
        assert code == 421 and banner.startswith("4.7.0"), (code, banner)
        assert text in banner
        c.expect_eof()
        c.close()
        # The implicit TLS port counts too: refused before any handshake
        # (a plain 421 line, or just closed).
        s = socket.create_connection(("127.0.0.1", gw.sport), 5)
        data = s.recv(100)
        s.close()
        assert data == b"" or data.startswith(b"421 4.7.0"), data
        # The connections that exist still work.
        assert conns[0].cmd("NOOP")[0] == 250
        # Closing one frees a slot (and the refused ones took none).
        conns.pop().close()
        conns.append(connect_until_220(gw.port))
        code, banner, c = open_banner(gw.port)
        assert code == 421, banner
        c.close()
    finally:
        for c in conns:
            c.close()
