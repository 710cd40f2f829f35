"""PIPELINING (RFC 2920) and CHUNKING/BDAT (RFC 3030) over raw sockets."""
import uuid

from gwlib import split_trace, to_lf


def marker():
    return uuid.uuid4().hex


def queued(reply):
    code, lines = reply
    assert code == 250 and lines[0].startswith("2.0.0 Ok: queued as "), reply
    return lines[0].split()[-1]


def test_pipelined_envelope_and_data(gw):
    m = marker()
    with gw.raw() as c:
        c.send(b"EHLO pipe.client.test\r\n"
               b"MAIL FROM:<a@b.test>\r\n"
               b"RCPT TO:<alice@example.test>\r\n"
               b"RCPT TO:<bob@example.test>\r\n"
               b"DATA\r\n")
        code, lines = c.reply()
        assert code == 250 and "PIPELINING" in lines, lines
        assert c.reply()[0] == 250  # MAIL
        assert c.reply()[0] == 250  # RCPT
        assert c.reply()[0] == 250  # RCPT
        assert c.reply()[0] == 354  # DATA
        msg = f"Subject: pipelined {m}\r\n\r\nbody\r\n..leading dot\r\n".encode()
        c.send(msg + b".\r\nQUIT\r\n")
        queued(c.reply())
        assert c.reply()[0] == 221
        c.expect_eof()
    for r in ("alice@example.test", "bob@example.test"):
        files = gw.find_message(r, m)
        assert len(files) == 1
        rp, received, rest = split_trace(gw.read(files[0]))
        assert rp == "a@b.test"
        assert received.startswith("from pipe.client.test ")
        assert rest == f"Subject: pipelined {m}\n\nbody\n.leading dot\n".encode()


def test_pipelined_errors_keep_order(gw):
    with gw.raw() as c:
        c.ehlo()
        c.send(b"MAIL FROM:<a@b.test>\r\n"
               b"RCPT TO:<nobody@example.test>\r\n"
               b"RCPT TO:<x@elsewhere.test>\r\n"
               b"RCPT TO:<carol@other.test>\r\n"
               b"NOOP\r\nRSET\r\nVRFY alice\r\n")
        codes = [c.reply()[0] for _ in range(7)]
        assert codes == [250, 550, 550, 250, 250, 250, 252], codes
        assert c.nothing_pending()


def bdat_tx(sender, rcpt, msg, last=True):
    return (f"MAIL FROM:<{sender}>\r\nRCPT TO:<{rcpt}>\r\n"
            f"BDAT {len(msg)}{' LAST' if last else ''}\r\n").encode() + msg


def test_two_bdat_transactions_pipelined(gw):
    m = marker()
    # BDAT text is not dot-stuffed: a line starting with "." stays as it is,
    # and a lone "." line is just text.
    m1 = f"Subject: bdat one {m}\r\n\r\n.not stuffed\r\n.\r\nend one\r\n".encode()
    m2 = f"Subject: bdat two {m}\r\n\r\nsecond\r\n".encode()
    with gw.raw() as c:
        c.ehlo()
        c.send(bdat_tx("one@b.test", "alice@example.test", m1) +
               bdat_tx("two@b.test", "bob@example.test", m2) + b"QUIT\r\n")
        assert c.reply()[0] == 250
        assert c.reply()[0] == 250
        q1 = queued(c.reply())
        assert c.reply()[0] == 250
        assert c.reply()[0] == 250
        q2 = queued(c.reply())
        assert q1 != q2
        assert c.reply()[0] == 221
    f1 = gw.find_message("alice@example.test", f"bdat one {m}")
    f2 = gw.find_message("bob@example.test", f"bdat two {m}")
    assert len(f1) == 1 and len(f2) == 1
    rp, received, rest = split_trace(gw.read(f1[0]))
    assert rp == "one@b.test" and f"id {q1}" in received
    assert rest == to_lf(m1)
    rp, received, rest = split_trace(gw.read(f2[0]))
    assert rp == "two@b.test" and f"id {q2}" in received
    assert rest == to_lf(m2)
    assert gw.find_message("bob@example.test", f"bdat one {m}") == []
    assert gw.find_message("alice@example.test", f"bdat two {m}") == []


def test_bdat_chunks_split_crlf(gw):
    m = marker()
    chunks = [f"Subject: chunks {m}\r".encode(),
              b"\n\r\nline one\r",
              b"\nline two\r\n",
              b"line three\r",
              b"\n"]
    with gw.raw() as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<chunk@b.test>")[0] == 250
        assert c.cmd("RCPT TO:<carol@other.test>")[0] == 250
        for ch in chunks:
            c.send(f"BDAT {len(ch)}\r\n".encode() + ch)
            code, lines = c.reply()
            assert (code, lines) == (250, [f"2.0.0 Ok: {len(ch)} octets received"])
        c.send(b"BDAT 0 LAST\r\n")
        queued(c.reply())
    files = gw.find_message("carol@other.test", m)
    assert len(files) == 1
    content = gw.read(files[0])
    assert b"\r" not in content
    assert split_trace(content)[2] == f"Subject: chunks {m}\n\nline one\nline two\nline three\n".encode()


def test_bdat_last_with_data_in_one_send(gw):
    m = marker()
    msg = f"Subject: bdat one-shot {m}\r\n\r\n" .encode() + b"\xc3\xa4 8-bit\r\n" * 1000
    with gw.raw() as c:
        c.ehlo()
        c.send(b"MAIL FROM:<one@b.test> BODY=8BITMIME\r\nRCPT TO:<alice@example.test>\r\n" +
               f"BDAT {len(msg)} LAST\r\n".encode() + msg)
        assert c.reply()[0] == 250
        assert c.reply()[0] == 250
        queued(c.reply())
    files = gw.find_message("alice@example.test", m)
    assert len(files) == 1
    assert split_trace(gw.read(files[0]))[2] == to_lf(msg)


def test_bdat_without_mail(gw):
    with gw.raw() as c:
        c.ehlo()
        # If the chunk were taken as commands, VRFY would answer 252.
        c.send(b"BDAT 8\r\nVRFY x\r\n")
        code, lines = c.reply()
        assert code == 503, (code, lines)
        code, lines = c.cmd("NOOP")
        assert (code, lines) == (250, ["2.0.0 Ok"])
        assert c.nothing_pending()
        # A whole transaction still works afterwards.
        m = marker()
        msg = f"Subject: after bad bdat {m}\r\n\r\nok\r\n".encode()
        c.send(bdat_tx("x@b.test", "bob@example.test", msg))
        assert c.reply()[0] == 250 and c.reply()[0] == 250
        queued(c.reply())
        # BDAT after BDAT LAST: the transaction is over, 503 again.
        c.send(b"BDAT 6\r\nNOOP\r\n")
        assert c.reply()[0] == 503
        assert c.cmd("RSET")[0] == 250
        assert c.nothing_pending()
    assert len(gw.find_message("bob@example.test", m)) == 1


def test_bdat_without_valid_recipient(gw):
    with gw.raw() as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<x@b.test>")[0] == 250
        assert c.cmd("RCPT TO:<nobody@example.test>")[0] == 550
        c.send(b"BDAT 8\r\nVRFY x\r\n")
        code, _ = c.reply()
        assert code in (503, 554), code
        assert c.cmd("NOOP") == (250, ["2.0.0 Ok"])


def test_data_after_bdat(gw):
    m = marker()
    with gw.raw() as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<x@b.test>")[0] == 250
        assert c.cmd("RCPT TO:<alice@example.test>")[0] == 250
        first = f"Subject: mixed {m}\r\n".encode()
        c.send(f"BDAT {len(first)}\r\n".encode() + first)
        assert c.reply()[0] == 250
        code, lines = c.cmd("DATA")
        assert code == 503, (code, lines)
        assert c.cmd("RSET")[0] == 250
        assert c.nothing_pending()
    assert gw.find_message("alice@example.test", m) == []


def test_bdat_bad_size_syntax_closes(gw):
    with gw.raw() as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<x@b.test>")[0] == 250
        assert c.cmd("RCPT TO:<alice@example.test>")[0] == 250
        c.send(b"BDAT ten\r\n")
        code, _ = c.reply()
        assert code == 501
        rest = c.expect_eof()
        assert rest == b"" or rest.startswith(b"421"), rest


def test_bdat_over_size_limit(gw):
    """max_message_size is 100000 here: chunks that add up to more get 552."""
    m = marker()
    before = set(gw.every_delivered_file())
    with gw.raw() as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<x@b.test>")[0] == 250
        assert c.cmd("RCPT TO:<alice@example.test>")[0] == 250
        chunk = f"Subject: too big {m}\r\n".encode() + b"q" * 60000 + b"\r\n"
        c.send(f"BDAT {len(chunk)}\r\n".encode() + chunk)
        assert c.reply()[0] == 250
        # RFC 3030 section 2: after a failed chunk the server discards the
        # chunks already in the pipeline (a VRFY inside must not run).
        c.send(f"BDAT {len(chunk)}\r\n".encode() + chunk + b"BDAT 8 LAST\r\nVRFY x\r\n")
        code, lines = c.reply()
        assert code == 552 and lines[0].startswith("5.3.4"), (code, lines)
        code, lines = c.reply()
        assert 500 <= code < 600, (code, lines)
        # In sync and usable.
        assert c.cmd("NOOP") == (250, ["2.0.0 Ok"])
        ok = f"Subject: small after big {m}\r\n\r\nok\r\n".encode()
        c.send(bdat_tx("x@b.test", "alice@example.test", ok))
        assert c.reply()[0] == 250 and c.reply()[0] == 250
        queued(c.reply())
    new = set(gw.every_delivered_file()) - before
    assert len(new) == 1
    assert b"small after big" in gw.read(new.pop())
