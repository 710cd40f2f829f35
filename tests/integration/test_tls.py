"""STARTTLS (RFC 3207) and implicit TLS: smtplib, openssl s_client, protocol
versions, and the plaintext command injection after STARTTLS."""
import re
import smtplib
import ssl
import subprocess
import uuid
import warnings

import pytest

from gwlib import HOSTNAME, RawSMTP, client_context, split_trace, to_lf


def marker():
    return uuid.uuid4().hex


def check_tls_delivery(gw, m, msg, sender="tls@remote.test"):
    files = gw.find_message("alice@example.test", m)
    assert len(files) == 1
    rp, received, rest = split_trace(gw.read(files[0]))
    assert rp == sender
    assert "with ESMTPS " in received, received
    assert "(using TLSv1." in received, received
    assert rest == to_lf(msg)
    return received


def test_starttls_smtplib(gw, cafile):
    m = marker()
    msg = f"Subject: starttls {m}\r\n\r\nover TLS\r\n".encode()
    with gw.smtp() as s:
        s.ehlo("client.example.test")
        assert s.has_extn("starttls")
        code, _ = s.starttls(context=client_context(cafile))
        assert code == 220
        assert isinstance(s.sock, ssl.SSLSocket)
        assert s.sock.version() in ("TLSv1.2", "TLSv1.3")
        code, text = s.ehlo("client.example.test")
        assert code == 250
        assert not s.has_extn("starttls"), text
        # A second STARTTLS inside TLS.
        code, text = s.docmd("STARTTLS")
        assert code == 503, (code, text)
        assert s.sendmail("tls@remote.test", ["alice@example.test"], msg) == {}
    received = check_tls_delivery(gw, m, msg)
    assert received.startswith("from client.example.test ")


def test_ehlo_required_after_starttls(gw, cafile):
    """RFC 3207 4.2: the server discards what it knew; the client must EHLO again."""
    with gw.raw() as c:
        c.ehlo("before.tls.test")
        assert c.cmd("STARTTLS")[0] == 220
        c.starttls(client_context(cafile))
        code, lines = c.cmd("MAIL FROM:<a@remote.test>")
        assert code == 503, (code, lines)
        lines = c.ehlo("after.tls.test")
        assert "STARTTLS" not in [l.upper() for l in lines]
        assert c.cmd("MAIL FROM:<a@remote.test>")[0] == 250
        assert c.cmd("RCPT TO:<alice@example.test>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        m = marker()
        c.send(f"Subject: reehlo {m}\r\n\r\nx\r\n.\r\n")
        assert c.reply()[0] == 250
        assert c.cmd("QUIT")[0] == 221
    files = gw.find_message("alice@example.test", m)
    assert len(files) == 1
    _, received, _ = split_trace(gw.read(files[0]))
    assert received.startswith("from after.tls.test "), received


def test_starttls_openssl_s_client(gw, cafile):
    m = marker()
    script = ("EHLO sclient.example.test\n"
              "MAIL FROM:<sclient@remote.test>\n"
              "RCPT TO:<alice@example.test>\n"
              "DATA\n"
              f"Subject: s_client {m}\n"
              "\n"
              "Relayed by openssl s_client.\n"
              "..dot-stuffed line\n"
              ".\n"
              "QUIT\n")
    r = subprocess.run(
        ["openssl", "s_client", "-starttls", "smtp", "-connect", f"127.0.0.1:{gw.port}",
         "-quiet", "-crlf", "-nocommands", "-CAfile", cafile, "-verify_return_error",
         "-servername", "localhost"],
        input=script.encode(), capture_output=True, timeout=30)
    out = r.stdout.decode("utf-8", "replace")
    assert r.returncode == 0, out + r.stderr.decode()
    assert re.search(r"^250 2\.0\.0 Ok: queued as \S+\r?$", out, re.M), out
    assert re.search(r"^221 ", out, re.M), out
    files = gw.find_message("alice@example.test", m)
    assert len(files) == 1
    rp, received, rest = split_trace(gw.read(files[0]))
    assert rp == "sclient@remote.test"
    assert "with ESMTPS " in received and "(using TLSv1." in received, received
    assert rest == f"Subject: s_client {m}\n\nRelayed by openssl s_client.\n.dot-stuffed line\n".encode()


def test_implicit_tls_smtps(gw, cafile):
    m = marker()
    msg = f"Subject: smtps {m}\r\n\r\nimplicit TLS\r\n".encode()
    with smtplib.SMTP_SSL("127.0.0.1", gw.sport, context=client_context(cafile), timeout=10) as s:
        code, text = s.ehlo("client.example.test")
        assert code == 250
        assert not s.has_extn("starttls"), text
        assert s.has_extn("pipelining") and s.has_extn("chunking")
        assert s.docmd("STARTTLS")[0] == 503
        assert s.sendmail("tls@remote.test", ["alice@example.test"], msg) == {}
    check_tls_delivery(gw, m, msg)


def test_certificate_names_localhost(gw, cafile):
    ctx = client_context(cafile)
    with RawSMTP(gw.sport, tls_ctx=ctx) as c:
        assert c.banner[0] == 220 and c.banner[1][0].startswith(HOSTNAME)
        cert = c.sock.getpeercert()
        assert ("DNS", "localhost") in cert["subjectAltName"]


def old_tls_context(maximum):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.0/1.1 on purpose
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = maximum
    return ctx


def client_cannot_offer(exc):
    s = str(exc).upper()
    return "NO_PROTOCOLS_AVAILABLE" in s or "NO PROTOCOLS AVAILABLE" in s or \
        "NO_CIPHERS_AVAILABLE" in s or "NO CIPHERS AVAILABLE" in s


@pytest.mark.parametrize("mode", ["smtps", "starttls"])
def test_tls11_refused(gw, mode):
    last = None
    for ciphers in (None, "DEFAULT:@SECLEVEL=0", "ALL:@SECLEVEL=0"):
        ctx = old_tls_context(ssl.TLSVersion.TLSv1_1)
        if ciphers:
            try:
                ctx.set_ciphers(ciphers)
            except ssl.SSLError:
                continue
        try:
            if mode == "smtps":
                c = RawSMTP(gw.sport, tls_ctx=ctx)
            else:
                c = RawSMTP(gw.port)
                c.ehlo()
                assert c.cmd("STARTTLS")[0] == 220
                c.starttls(ctx)
        except ssl.SSLError as e:
            if client_cannot_offer(e):
                last = e
                continue  # the local OpenSSL would not even send a TLS 1.1 hello
            # The server refused the handshake: what we want.
            assert "PROTOCOL_VERSION" in str(e).upper() or "EOF" in str(e).upper() or \
                "UNSUPPORTED_PROTOCOL" in str(e).upper(), e
            return
        except (ConnectionResetError, BrokenPipeError, EOFError):
            return
        version = c.sock.version()
        c.close()
        pytest.fail(f"a TLS 1.1-only client completed a handshake ({version})")
    pytest.skip(f"the local OpenSSL cannot offer TLS 1.1 even at SECLEVEL=0: {last}")


def test_tls12_accepted(gw):
    ctx = old_tls_context(ssl.TLSVersion.TLSv1_2)
    with RawSMTP(gw.sport, tls_ctx=ctx) as c:
        assert c.banner[0] == 220
        assert c.sock.version() == "TLSv1.2"


def test_starttls_injection(gw):
    """CVE-2011-0411: plaintext pipelined after STARTTLS must not be taken
    as if it had come through TLS."""
    with gw.raw() as c:
        c.ehlo()
        c.send(b"STARTTLS\r\nRSET\r\n")
        code, lines = c.reply()
        assert code == 421, (code, lines)
        rest = c.expect_eof()
        assert b"220" not in rest and b"250" not in rest, rest


def test_starttls_injection_in_transaction(gw):
    with gw.raw() as c:
        c.ehlo()
        c.send(b"STARTTLS\r\nMAIL FROM:<evil@x.test>\r\nRCPT TO:<bob@example.test>\r\n")
        code, lines = c.reply()
        assert code == 421, (code, lines)
        c.expect_eof()


def test_starttls_with_argument(gw):
    with gw.raw() as c:
        c.ehlo()
        code, _ = c.cmd("STARTTLS now")
        assert code == 501
        assert c.cmd("NOOP")[0] == 250


def test_pipelining_and_bdat_over_tls(gw, cafile):
    m = uuid.uuid4().hex
    msgs = [f"Subject: tls pipe {m} {i}\r\n\r\n".encode() + b"0123456789abcdef\r\n" * (1500 + i)
            for i in range(3)]
    payload = b""
    for i, msg in enumerate(msgs):
        payload += (f"MAIL FROM:<p{i}@remote.test>\r\nRCPT TO:<alice@example.test>\r\n"
                    f"BDAT {len(msg)} LAST\r\n").encode() + msg
    payload += b"MAIL FROM:<d@remote.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
    with RawSMTP(gw.sport, tls_ctx=client_context(cafile)) as c:
        c.ehlo()
        c.send(payload)
        for i in range(3):
            assert c.reply()[0] == 250
            assert c.reply()[0] == 250
            code, lines = c.reply()
            assert code == 250 and "queued as" in lines[0], lines
        assert c.reply()[0] == 250
        assert c.reply()[0] == 250
        assert c.reply()[0] == 354
        c.send(f"Subject: tls data {m}\r\n\r\n..x\r\n.\r\nQUIT\r\n".encode())
        assert c.reply()[0] == 250
        assert c.reply()[0] == 221
    for i, msg in enumerate(msgs):
        files = gw.find_message("alice@example.test", f"tls pipe {m} {i}")
        assert len(files) == 1
        rp, received, rest = split_trace(gw.read(files[0]))
        assert rp == f"p{i}@remote.test" and "with ESMTPS " in received
        assert rest == to_lf(msg)
    files = gw.find_message("bob@example.test", f"tls data {m}")
    assert len(files) == 1
    assert split_trace(gw.read(files[0]))[2] == f"Subject: tls data {m}\n\n.x\n".encode()
