"""Durability (DESIGN.md "Quality bars"): kill -9 at any moment loses no
acknowledged message and leaves no half message visible; after a restart
the store cleans tmp/ and its index knows every file."""
import hashlib
import os
import re
import smtplib
import sqlite3
import threading
import time
import uuid

from gwlib import split_trace, to_lf

THREADS = 20
RUN_SECONDS = 1.5
RCPT = "alice@example.test"


def make_message(mid):
    """About 20 KB, fully determined by mid, ending in a checksum trailer."""
    lines = []
    seed = hashlib.sha256(mid.encode()).hexdigest()
    for i in range(256):
        lines.append(f"{mid} {i:04d} {seed[i % 64:]}{seed[:i % 64]}".encode())
    body = b"\r\n".join(lines) + b"\r\n"
    digest = hashlib.sha256(body).hexdigest()
    return (f"From: crash@remote.test\r\n"
            f"To: {RCPT}\r\n"
            f"Subject: crash {mid}\r\n"
            f"Message-ID: <{mid}@crash.test>\r\n"
            f"\r\n").encode() + body + f"END-OF-MESSAGE {mid} sha256={digest}\r\n".encode()


def sender(gw, tag, stop, acked, attempted):
    seq = 0
    while not stop.is_set():
        mid = f"{tag}-t{threading.current_thread().name}-{seq}"
        seq += 1
        msg = make_message(mid)
        attempted[mid] = msg
        try:
            with smtplib.SMTP(gw.host, gw.port, timeout=10) as s:
                s.ehlo("crash.client.test")
                s.mail("crash@remote.test")
                code, _ = s.rcpt(RCPT)
                if code != 250:
                    return
                code, text = s.data(msg)
                if code == 250:
                    acked[mid] = text.decode().split()[-1]
                else:
                    return
        except (OSError, smtplib.SMTPException):
            return


def parse_delivered(content):
    """(mid, rest) of a delivered crash message; asserts it is whole."""
    rp, received, rest = split_trace(content)
    assert rp == "crash@remote.test"
    m = re.search(rb"^Message-ID: <([^@>]+)@crash\.test>$", rest, re.M)
    assert m, rest[:300]
    mid = m.group(1).decode()
    tail = re.search(rb"END-OF-MESSAGE (\S+) sha256=([0-9a-f]{64})\n\Z", rest)
    assert tail, f"{mid}: no trailer at the end (partial file?): {rest[-200:]!r}"
    return mid, rest


def test_kill9_loses_nothing_acknowledged(gateway_factory):
    gw = gateway_factory(max_connections=200, max_connections_per_ip=200, log_level="info")
    tag = uuid.uuid4().hex[:8]
    stop = threading.Event()
    acked, attempted = {}, {}
    threads = [threading.Thread(target=sender, name=str(i),
                                args=(gw, tag, stop, acked, attempted))
               for i in range(THREADS)]
    for t in threads:
        t.start()
    time.sleep(RUN_SECONDS)
    pid = gw.proc.pid
    gw.kill9()
    stop.set()
    for t in threads:
        t.join(15)
        assert not t.is_alive()
    # Every 250 a thread saw was sent before filterd died.
    acked_at_kill = dict(acked)
    assert acked_at_kill, "no message was acknowledged before the kill"

    # Messages that were in flight have left files in tmp/ (usually).
    tmpdir = os.path.join(gw.maildir(RCPT), "tmp")
    stale = os.listdir(tmpdir)

    gw.start()
    # One more delivery makes the store of alice open (recovery runs).
    after = make_message(f"{tag}-after")
    with gw.smtp() as s:
        s.ehlo("crash.client.test")
        assert s.sendmail("crash@remote.test", [RCPT], after) == {}
    attempted[f"{tag}-after"] = after

    files = gw.all_messages(RCPT)
    seen = {}
    for path in files:
        mid, rest = parse_delivered(gw.read(path))
        assert mid in attempted, f"{path}: unknown message {mid}"
        assert rest == to_lf(attempted[mid]), f"{path}: content differs from what was sent"
        assert mid not in seen, f"{mid} delivered twice: {seen[mid]} and {path}"
        seen[mid] = path
    lost = sorted(set(acked_at_kill) - set(seen))
    assert not lost, f"{len(lost)} acknowledged messages lost, e.g. {lost[:5]}"
    assert f"{tag}-after" in seen
    # In-flight messages may or may not have made it; never in part.
    print(f"acked={len(acked_at_kill)} attempted={len(attempted)} present={len(seen)} "
          f"stale tmp before restart={len(stale)} (killed pid {pid})")

    # tmp/ holds nothing from the killed process.
    leftover = os.listdir(tmpdir)
    assert leftover == [], f"stale files in tmp/ after restart: {leftover}"
    spool = os.path.join(gw.data_dir, "spool")
    if os.path.isdir(spool):
        assert os.listdir(spool) == [], os.listdir(spool)

    # The index knows every file (and nothing else).
    gw.stop()
    db = sqlite3.connect(os.path.join(gw.maildir(RCPT), "index.sqlite"))
    try:
        schema = "\n".join(r[0] for r in db.execute("SELECT sql FROM sqlite_master")
                           if r[0])
        assert "CREATE TABLE messages" in schema, schema
        rows = db.execute("SELECT m.filename, m.in_new FROM messages m"
                          " JOIN folders f ON m.folder = f.id WHERE f.name = 'INBOX'").fetchall()
    finally:
        db.close()
    indexed = {(fn, bool(in_new)) for fn, in_new in rows}
    assert len(indexed) == len(rows)
    on_disk = set()
    for path in files:
        sub = os.path.basename(os.path.dirname(path))
        base = os.path.basename(path).split(":2,")[0]
        on_disk.add((base, sub == "new"))
    assert on_disk - indexed == set(), f"files the index lacks: {sorted(on_disk - indexed)[:5]}"
    assert indexed - on_disk == set(), f"index rows without a file: {sorted(indexed - on_disk)[:5]}"
