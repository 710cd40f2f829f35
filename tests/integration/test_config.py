"""The configuration file: `filterd -t` reports FILE:LINE errors, and SIGHUP
reloads it without dropping the running one when it is broken."""
import os
import shutil
import subprocess
import tempfile
import time

import pytest

from gwlib import FILTERD, HOSTNAME, RawSMTP


@pytest.fixture
def confdir(tls_cert):
    d = tempfile.mkdtemp(prefix="filterd-it-conf-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def base_lines(d, tls_cert):
    cert, key = tls_cert
    return [
        "# test configuration",
        f"hostname = {HOSTNAME}",
        "local_domains = example.test, other.test",
        f"data_dir = {d}/data",
        f"users_file = {d}/users",
        f"tls_cert_file = {cert}",
        f"tls_key_file = {key}",
        "smtp_listen = 127.0.0.1:1",
        "max_message_size = 100000",
    ]


def check(path):
    return subprocess.run([FILTERD, "-t", "-c", path], capture_output=True, timeout=20,
                          stdin=subprocess.DEVNULL)


def write(d, lines, name="gw.conf"):
    path = os.path.join(d, name)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def test_valid_config(confdir, tls_cert):
    path = write(confdir, base_lines(confdir, tls_cert))
    r = check(path)
    assert r.returncode == 0, r.stderr.decode()
    # -t only checks: it does not listen or create the store.
    assert not os.path.exists(os.path.join(confdir, "data", "mail"))


@pytest.mark.parametrize("bad,needle", [
    ("no_such_key = 1", "unknown key"),
    ("max_message_size = abc", "max_message_size"),
    ("max_recipients = -5", "max_recipients"),
    ("smtp_timeout = forever", "smtp_timeout"),
    ("log_level = chatty", "log_level"),
    ("smtp_listen = not-an-address", "smtp_listen"),
    ("this line has no equals sign", ""),
    ("hostname = second.example.test", "hostname"),  # set twice
])
def test_bad_line_named_with_file_and_line(confdir, tls_cert, bad, needle):
    lines = base_lines(confdir, tls_cert)
    lines.insert(3, "")
    lines.insert(4, "# a comment")
    lines.insert(5, bad)
    lineno = 6
    path = write(confdir, lines)
    r = check(path)
    out = r.stdout.decode() + r.stderr.decode()
    assert r.returncode != 0, out
    assert f"{path}:{lineno}:" in out, out
    assert needle in out, out


def test_missing_file(confdir):
    r = check(os.path.join(confdir, "nope.conf"))
    assert r.returncode != 0
    assert "nope.conf" in r.stderr.decode()


def test_missing_local_domains(confdir, tls_cert):
    lines = [l for l in base_lines(confdir, tls_cert) if not l.startswith("local_domains")]
    r = check(write(confdir, lines))
    assert r.returncode != 0
    assert "local_domains" in r.stderr.decode()


def rcpt_codes(gw, n):
    """RCPT codes for n recipients in one transaction on a new connection."""
    rcpts = ["alice@example.test", "bob@example.test", "carol@other.test"][:n]
    with RawSMTP(gw.port) as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@remote.test>")[0] == 250
        return [c.cmd(f"RCPT TO:<{r}>")[0] for r in rcpts]


def test_sighup_reload(gateway_factory):
    gw = gateway_factory(max_recipients=3)
    assert rcpt_codes(gw, 3) == [250, 250, 250]

    # A broken file: the running configuration stays.
    start = gw.log_size()
    gw.write_config(extra="no_such_key = 1\n")
    gw.reload()
    m = gw.wait_log(r"reload failed.*", start=start)
    assert f"{gw.conf}:" in m.group(0) and "unknown key" in m.group(0), m.group(0)
    time.sleep(0.1)
    assert gw.alive()
    assert rcpt_codes(gw, 3) == [250, 250, 250]

    # A valid change takes effect for new connections; a session that began
    # before keeps the configuration it started with.
    old = RawSMTP(gw.port)
    old.ehlo()
    start = gw.log_size()
    gw.write_config(overrides=dict(gw.overrides, max_recipients=1, hostname="mx2.example.test"))
    gw.reload()
    gw.wait_log(r"configuration reloaded", start=start)
    assert rcpt_codes(gw, 2) == [250, 452]
    with RawSMTP(gw.port) as c:
        assert c.banner[1][0].startswith("mx2.example.test")
    with old:
        assert old.cmd("MAIL FROM:<a@remote.test>")[0] == 250
        assert old.cmd("RCPT TO:<alice@example.test>")[0] == 250
        assert old.cmd("RCPT TO:<bob@example.test>")[0] == 250
    assert gw.alive()


def test_sigterm_graceful(gateway_factory):
    """SIGTERM: idle sessions are told 421, a message in DATA may finish."""
    gw = gateway_factory(shutdown_timeout="5s")
    idle = RawSMTP(gw.port)
    idle.ehlo()
    busy = RawSMTP(gw.port)
    busy.ehlo()
    assert busy.cmd("MAIL FROM:<a@remote.test>")[0] == 250
    assert busy.cmd("RCPT TO:<alice@example.test>")[0] == 250
    assert busy.cmd("DATA")[0] == 354
    busy.send(b"Subject: finishing during shutdown\r\n\r\nfirst half\r\n")
    time.sleep(0.2)
    gw.proc.send_signal(15)
    code, lines = idle.reply(timeout=5)
    assert code == 421 and lines[0].startswith("4.3.2"), (code, lines)
    idle.expect_eof()
    idle.close()
    # The listener is closed: new connections are refused.
    time.sleep(0.2)
    with pytest.raises(OSError):
        RawSMTP(gw.port, timeout=2)
    busy.send(b"second half\r\n.\r\n")
    code, lines = busy.reply(timeout=5)
    assert code == 250, (code, lines)
    rest = busy.expect_eof(timeout=5)
    assert rest == b"" or rest.startswith(b"421"), rest
    busy.close()
    assert gw.proc.wait(10) == 0
    files = gw.find_message("alice@example.test", "finishing during shutdown")
    assert len(files) == 1
    assert gw.read(files[0]).endswith(b"\n\nfirst half\nsecond half\n")
