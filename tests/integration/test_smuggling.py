"""SMTP smuggling: only CR LF "." CR LF ends DATA (RFC 5321 4.1.1.4).
A bogus terminator with a bare CR or LF must not end the message, so a
second, forged transaction hidden after it is never executed."""
import re
import socket
import uuid

import pytest

from gwlib import split_trace

# The bogus end-of-data sequences, each followed by a smuggled transaction.
BOGUS = {
    "crlf-dot-lf": b"\r\n.\n",
    "lf-dot-crlf": b"\n.\r\n",
    "lf-dot-lf": b"\n.\n",
    "cr-dot-crlf": b"\r.\r\n",
    "crlf-dot-cr": b"\r\n.\r",
    "cr-dot-cr": b"\r.\r",
    "crlf-dot-cr-cr-lf": b"\r\n.\r\r\n",
    "crlf-dot-nul-crlf": b"\r\n.\x00\r\n",
    "crlf-dot-space-crlf": b"\r\n. \r\n",
}


def smuggled(m):
    return (f"MAIL FROM:<evil@x.test>\r\n"
            f"RCPT TO:<bob@example.test>\r\n"
            f"DATA\r\n"
            f"From: evil@x.test\r\n"
            f"Subject: smuggled {m}\r\n"
            f"\r\n"
            f"forged body {m}\r\n").encode()


@pytest.mark.parametrize("name", list(BOGUS))
def test_bogus_terminator_does_not_end_data(gw, name):
    m = uuid.uuid4().hex
    log_start = gw.log_size()
    head = f"From: a@remote.test\r\nSubject: carrier {m}\r\n\r\na".encode()
    payload = head + BOGUS[name] + smuggled(m) + b".\r\n"
    with gw.raw() as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@remote.test>")[0] == 250
        assert c.cmd("RCPT TO:<alice@example.test>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(payload)
        code, lines = c.reply()
        assert code == 250 and lines[0].startswith("2.0.0 Ok: queued as"), (code, lines)
        qid = lines[0].split()[-1]
        # Exactly one reply for the whole thing: nothing else is coming.
        assert c.nothing_pending(0.25), c.buf
        # And the session is in the command state, not in a smuggled DATA.
        assert c.cmd("NOOP") == (250, ["2.0.0 Ok"])
        assert c.cmd("QUIT")[0] == 221
    # One message, to alice only, that contains the smuggled text.
    files = gw.find_message("alice@example.test", f"carrier {m}")
    assert len(files) == 1
    rp, received, rest = split_trace(gw.read(files[0]))
    assert rp == "a@remote.test"
    assert f"id {qid}" in received
    assert b"MAIL FROM:<evil@x.test>" in rest
    assert f"forged body {m}".encode() in rest
    assert not rest.endswith(b"\n.\n")  # the real terminator is not part of it
    # No second message anywhere.
    assert gw.find_message("bob@example.test", m) == []
    assert [p for p in gw.every_delivered_file() if m.encode() in gw.read(p)] == files
    # One transaction in the log.
    log = gw.log()[log_start:]
    tx = re.findall(r"(\S+): client=.*action=\S+", log)
    assert tx == [qid], log
    assert "evil@x.test" not in "".join(re.findall(r"from=<[^>]*>", log))


@pytest.mark.parametrize("name", list(BOGUS))
def test_bogus_terminator_byte_by_byte(gw, name):
    """The same, with the bytes arriving one by one (any chunking)."""
    m = uuid.uuid4().hex
    payload = f"Subject: slow {m}\r\n\r\na".encode() + BOGUS[name] + smuggled(m)
    with gw.raw() as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@remote.test>")[0] == 250
        assert c.cmd("RCPT TO:<alice@example.test>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(payload)):
            c.send(payload[i:i + 1])
        # Nothing may have been answered before the real end.
        assert c.nothing_pending(0.1), c.buf
        c.send(b".\r\n")
        code, lines = c.reply()
        assert code == 250, (code, lines)
        assert c.nothing_pending(0.15), c.buf
    assert len(gw.find_message("alice@example.test", f"slow {m}")) == 1
    assert gw.find_message("bob@example.test", m) == []


def test_real_terminator_split_across_packets(gw):
    m = uuid.uuid4().hex
    with gw.raw() as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@remote.test>")[0] == 250
        assert c.cmd("RCPT TO:<alice@example.test>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(f"Subject: split {m}\r\n\r\nbody\r".encode())
        assert c.nothing_pending(0.1)
        c.send(b"\n.")
        assert c.nothing_pending(0.1)
        c.send(b"\r")
        assert c.nothing_pending(0.1)
        c.send(b"\nNOOP\r\n")
        assert c.reply()[0] == 250
        assert c.reply() == (250, ["2.0.0 Ok"])
    files = gw.find_message("alice@example.test", f"split {m}")
    assert len(files) == 1
    assert split_trace(gw.read(files[0]))[2] == f"Subject: split {m}\n\nbody\n".encode()
