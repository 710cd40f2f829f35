"""Smoke test: a real filterd on loopback accepts one message over smtplib and
delivers it into the recipient's Maildir, durably named and indexed."""
import os
import shutil
import signal
import smtplib
import socket
import sqlite3
import subprocess
import tempfile
import time

BIN = os.environ.get("BIN_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "bin"))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_smoke_delivery():
    tmp = tempfile.mkdtemp(prefix="mailgw-smoke-")
    port = free_port()
    conf = os.path.join(tmp, "gw.conf")
    with open(conf, "w") as f:
        f.write(f"hostname = mx.example.test\nlocal_domains = example.test\n"
                f"data_dir = {tmp}/data\nusers_file = {tmp}/users\n"
                f"smtp_listen = 127.0.0.1:{port}\n"
                # No DNS here: the sender checks are tested in test_auth.py.
                "spf_check = no\ndkim_check = no\ndmarc_check = no\n")
    subprocess.run([f"{BIN}/mailctl", "-c", conf, "user", "add", "smoke@example.test"],
                   input=b"pw123456\n", check=True, capture_output=True)
    log = open(os.path.join(tmp, "log"), "wb")
    proc = subprocess.Popen([f"{BIN}/filterd", "-c", conf], stderr=log)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        with smtplib.SMTP("127.0.0.1", port) as s:
            code, _ = s.ehlo("client.test")
            assert code == 250
            refused = s.sendmail("sender@remote.test", ["smoke@example.test"],
                                 b"Subject: smoke\r\n\r\nhello world\r\n")
            assert refused == {}
        new = os.path.join(tmp, "data/mail/example.test/smoke/new")
        files = os.listdir(new)
        assert len(files) == 1
        body = open(os.path.join(new, files[0]), "rb").read()
        assert body.startswith(b"Return-Path: <sender@remote.test>\n"
                               b"Authentication-Results: mx.example.test; none\n"
                               b"X-Spam-Score: 0.0\n"
                               b"X-Spam-Status: No, score=0.0 required=5.0 tests=none\n"
                               b"Received: from client.test"), body[:300]
        assert body.endswith(b"Subject: smoke\n\nhello world\n")
        db = sqlite3.connect(os.path.join(tmp, "data/mail/example.test/smoke/index.sqlite"))
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        assert "messages" in tables
        assert db.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 1
        db.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(tmp)
