"""Hostile sessions and operator mistakes: command floods, endless DATA,
TLS turned off by a reload, and running as root with run_user."""
import os
import pwd
import socket
import time
import uuid

import pytest

import gwlib
from gwlib import RawSMTP


def read_until_closed(r, limit=10000):
    """Every reply until the server closes the connection."""
    replies = []
    while len(replies) < limit:
        try:
            replies.append(r.reply(timeout=5))
        except (AssertionError, ConnectionError, OSError, EOFError):
            break
    return replies


def start_data(g):
    """A raw session that got 354 for alice."""
    r = g.raw()
    r.ehlo()
    assert r.cmd(b"MAIL FROM:<a@remote.test>")[0] == 250
    assert r.cmd(b"RCPT TO:<alice@example.test>")[0] == 250
    assert r.cmd(b"DATA")[0] == 354
    return r


def test_command_flood_max_commands(gateway_factory):
    g = gateway_factory(max_commands=50)
    r = g.raw()
    r.send(b"HELO flood.test\r\n" * 80)
    replies = read_until_closed(r)
    codes = [c for c, _ in replies]
    assert codes[:50] == [250] * 50
    assert codes[50] == 421 and "4.7.0" in replies[50][1][0]
    assert len(codes) == 51  # and then closed
    g.wait_log(r"too many commands from 127\.0\.0\.1")


def test_ehlo_flood_counts_as_errors(gw):
    r = gw.raw()
    r.send(b"EHLO flood.test\r\n" * 500)
    replies = read_until_closed(r)
    # 100 free EHLOs, then each counts as an error: 421 at max_bad_commands
    assert replies[-1][0] == 421
    assert len(replies) < 200


def test_endless_data_is_cut_off(gateway_factory):
    g = gateway_factory(max_message_size=100000)
    before = set(g.every_delivered_file())
    r = start_data(g)
    chunk = (b"z" * 78 + b"\r\n") * 1000
    sent, closed = 0, False
    try:
        while sent < 20 * 1024 * 1024:
            r.send(chunk)
            sent += len(chunk)
    except OSError:
        closed = True
    replies = read_until_closed(r)
    assert closed or replies, "the server kept reading 20 MB past a 100 KB limit"
    codes = [c for c, _ in replies]
    assert codes[:2] == [552, 421], replies
    assert sent < 20 * 1024 * 1024
    assert set(g.every_delivered_file()) == before


def test_slow_drip_data_deadline(gateway_factory):
    """Each byte arrives well within smtp_data_timeout, but the whole
    message must arrive within smtp_data_deadline."""
    g = gateway_factory(smtp_data_timeout="2s", smtp_data_deadline="2s")
    before = set(g.every_delivered_file())
    r = start_data(g)
    t0 = time.monotonic()
    code = None
    try:
        for _ in range(40):
            r.send(b"x")
            time.sleep(0.25)
    except OSError:
        pass
    code, lines = r.reply(timeout=5)
    assert code == 421 and "4.4.2" in lines[0]
    assert time.monotonic() - t0 < 6
    assert set(g.every_delivered_file()) == before


def test_reload_turning_tls_off(gateway_factory):
    g = gateway_factory()
    g.write_config(overrides={"tls_cert_file": None, "tls_key_file": None, "smtps_listen": None})
    mark = g.log_size()
    g.reload()
    g.wait_log(r"configuration reloaded", start=mark)
    # The implicit-TLS port stays bound until a restart: it answers 421.
    s = socket.create_connection(("127.0.0.1", g.sport), 5)
    s.settimeout(5)
    assert s.recv(200).startswith(b"421 4.3.2")
    s.close()
    # and the daemon does not spin on it
    pid = g.proc.pid

    def cpu():
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return int(f[11]) + int(f[12])

    c0 = cpu()
    time.sleep(1.0)
    assert cpu() - c0 < os.sysconf("SC_CLK_TCK") // 4
    # plain SMTP still works, without STARTTLS
    with g.smtp() as c:
        c.ehlo("client.test")
        assert not c.has_extn("starttls")
        assert c.sendmail("a@remote.test", ["alice@example.test"], b"Subject: x\r\n\r\nx\r\n") == {}


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop privileges")
def test_root_with_run_user_spools_large_mail(tls_cert):
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user nobody")
    cert, key = tls_cert
    g = gwlib.Gateway(cert, key, {"run_user": "nobody", "max_message_size": "5000000"}, users=())
    try:
        os.chmod(g.tmp, 0o755)
        os.makedirs(g.data_dir)
        os.chown(g.data_dir, nobody.pw_uid, nobody.pw_gid)
        # the daemon (as nobody) reads the certificate and key
        for f in (cert, key):
            os.chmod(f, 0o644)
        os.chmod(os.path.dirname(cert), 0o755)
        g.add_user("alice@example.test")
        g.start()
        m = uuid.uuid4().hex
        body = f"Subject: big {m}\r\n\r\n".encode() + (b"w" * 78 + b"\r\n") * 20000  # 1.6 MB
        with g.smtp() as c:
            assert c.sendmail("a@remote.test", ["alice@example.test"], body) == {}
        files = g.find_message("alice@example.test", m)
        assert len(files) == 1
        assert os.stat(os.path.join(g.data_dir, "spool")).st_uid == nobody.pw_uid
        assert os.stat(files[0]).st_uid == nobody.pw_uid
    finally:
        print(g.log_tail())
        g.cleanup()


def test_bdat_flushes_replies_before_waiting_for_octets(gw):
    """RFC 2920 3.1: replies are sent before the server blocks on input.  A
    client that pipelines MAIL/RCPT/BDAT and reads the replies before it
    sends the chunk must not deadlock."""
    m = uuid.uuid4().hex
    body = f"Subject: {m}\r\n\r\nchunk\r\n".encode()
    r = gw.raw()
    r.send(b"EHLO c.test\r\nMAIL FROM:<a@remote.test>\r\nRCPT TO:<alice@example.test>\r\n"
           + f"BDAT {len(body)} LAST\r\n".encode())
    assert r.reply(timeout=3)[0] == 250  # EHLO
    assert r.reply(timeout=3)[0] == 250  # MAIL
    assert r.reply(timeout=3)[0] == 250  # RCPT
    r.send(body)
    code, lines = r.reply(timeout=5)
    assert code == 250 and "queued as" in lines[0]
    assert len(gw.find_message("alice@example.test", m)) == 1
