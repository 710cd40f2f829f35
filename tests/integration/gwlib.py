"""Helpers for the filterd integration tests: a running gateway in a
temporary directory, Maildir access, and a raw SMTP client for what
smtplib cannot do (pipelining, BDAT, byte-exact DATA).

The fixtures that use these live in conftest.py."""
import os
import re
import select
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BIN_DIR = os.path.abspath(os.environ.get("BIN_DIR", os.path.join(HERE, "..", "..", "bin")))
FILTERD = os.path.join(BIN_DIR, "filterd")
MAILCTL = os.path.join(BIN_DIR, "mailctl")
IMAPD = os.path.join(BIN_DIR, "imapd")

HOSTNAME = "mx.example.test"
PASSWORD = "correct horse battery"
USERS = ("alice@example.test", "bob@example.test", "carol@other.test")

# Gateways that are running now: their logs are attached to failing tests.
LIVE = []

# Set by conftest.py for the whole session: a DNS server on loopback that
# knows no names (every lookup is a fast NXDOMAIN), and a public suffix
# list with "test" in it, so the sender checks of every gateway run for
# real without waiting on an absent resolver.
DEFAULT_DNS = None
DEFAULT_PSL = None
DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
SYSTEM_PSL = "/usr/share/publicsuffix/public_suffix_list.dat"


def free_udp_port():
    return free_port(socket.SOCK_DGRAM)


def write_psl(path):
    """The system's public suffix list plus "test" (RFC 2606 names are
    not in it, so organizational domains of *.test need the line)."""
    text = ""
    if os.path.exists(SYSTEM_PSL):
        with open(SYSTEM_PSL, encoding="utf-8") as f:
            text = f.read()
    else:
        text = "com\nnet\norg\nco.uk\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(text + "\n// tests\ntest\n")
    return path


class DNSServer:
    """dnsmasq on 127.0.0.1 serving the records given as config lines
    ("txt-record=name,\"text\"", "host-record=name,addr", ...).  Names
    outside them get NXDOMAIN (local=/#/); names under a zone in
    `blackhole` are forwarded to a socket that never answers."""

    def __init__(self, lines=(), blackhole=()):
        if not os.access(DNSMASQ, os.X_OK):
            raise RuntimeError("dnsmasq is not installed")
        self.dir = tempfile.mkdtemp(prefix="dns-it-")
        self.silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.silent.bind(("127.0.0.1", 0))
        self.lines = list(lines)
        self.blackhole = list(blackhole)
        self.proc = None
        self.port = None
        self.start()

    def start(self):
        """Start (again): a restart keeps the port when it is still free."""
        conf = os.path.join(self.dir, "dnsmasq.conf")
        for attempt in range(5):
            if self.port is None or attempt > 0:
                self.port = free_udp_port()
            with open(conf, "w") as f:
                f.write(f"port={self.port}\nlisten-address=127.0.0.1\nbind-interfaces\n"
                        "no-resolv\nno-hosts\nno-negcache\nlocal-ttl=300\n")
                sport = self.silent.getsockname()[1]
                for z in self.blackhole:
                    f.write(f"server=/{z}/127.0.0.1#{sport}\n")
                f.write("local=/#/\n")
                for line in self.lines:
                    f.write(line + "\n")
            self.proc = subprocess.Popen([DNSMASQ, "--no-daemon", f"--conf-file={conf}"],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(0.2)
            if self.proc.poll() is None:
                return
            err = self.proc.stderr.read().decode(errors="replace")
            if "in use" not in err:
                raise RuntimeError(f"dnsmasq does not start: {err}")
        raise RuntimeError("dnsmasq does not start")

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            self.proc = None

    def close(self):
        self.stop()
        self.silent.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class SlowDNS:
    """A UDP proxy on 127.0.0.1 that forwards each DNS query to upstream
    (host, port) and sends the answer back `delay` seconds later, with
    TTL 0: a resolver that answers, but slowly, and every time.  Counts
    the queries it saw."""

    def __init__(self, upstream, delay):
        import threading
        self.upstream = upstream
        self.delay = delay
        self.queries = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    def _serve(self):
        import threading
        self.sock.settimeout(0.2)
        while self.running:
            try:
                data, client = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            self.queries += 1
            threading.Thread(target=self._answer, args=(data, client), daemon=True).start()

    @staticmethod
    def _ttl_zero(msg):
        """The reply with every record's TTL set to 0, so that no cache
        keeps it: each lookup really waits for this server."""
        import struct
        b = bytearray(msg)

        def skip_name(i):
            while i < len(b):
                n = b[i]
                if n == 0:
                    return i + 1
                if n & 0xC0 == 0xC0:
                    return i + 2
                i += 1 + n
            return i
        try:
            qd, an, ns, ar = struct.unpack("!4H", b[4:12])
            i = 12
            for _ in range(qd):
                i = skip_name(i) + 4
            for _ in range(an + ns + ar):
                i = skip_name(i)
                rdlen = struct.unpack("!H", b[i + 8:i + 10])[0]
                b[i + 4:i + 8] = b"\0\0\0\0"
                i += 10 + rdlen
        except (struct.error, IndexError):
            return msg
        return bytes(b)

    def _answer(self, data, client):
        up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        up.settimeout(5)
        try:
            up.sendto(data, self.upstream)
            reply, _ = up.recvfrom(65535)
            reply = self._ttl_zero(reply)
            time.sleep(self.delay)
            if self.running:
                self.sock.sendto(reply, client)
        except OSError:
            pass
        finally:
            up.close()

    def close(self):
        self.running = False
        self.thread.join(2)
        self.sock.close()


def txt_line(name, text):
    """A dnsmasq txt-record line; text longer than 255 octets is split
    into several character-strings (RFC 7208 3.3, RFC 6376 3.6.2.2)."""
    parts = [text[i:i + 250] for i in range(0, len(text), 250)] or [""]
    return "txt-record=" + name + "," + ",".join('"' + p.replace('"', '\\"') + '"' for p in parts)


def free_port(kind=socket.SOCK_STREAM):
    """A port on 127.0.0.1 that is free now (TCP, or UDP with SOCK_DGRAM)."""
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def make_cert(directory):
    """A self-signed P-256 certificate for localhost / 127.0.0.1."""
    cert = os.path.join(directory, "cert.pem")
    key = os.path.join(directory, "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", key, "-out", cert],
        check=True, capture_output=True)
    return cert, key


def client_context(cafile):
    """A verifying TLS client context that trusts our test certificate."""
    ctx = ssl.create_default_context(cafile=cafile)
    return ctx


# ------------------------------------------------------------------ Maildir


def split_trace(content):
    """Split a delivered file into (return_path, received, rest).

    received is the unfolded Received header value; rest the bytes after it.
    Asserts the layout: "Return-Path: <...>\\n" then "Received: ..." with
    continuation lines starting with a tab."""
    assert content.startswith(b"Return-Path: <"), content[:200]
    nl = content.index(b"\n")
    rp = content[len(b"Return-Path: <"):nl]
    assert rp.endswith(b">"), content[:200]
    rp = rp[:-1]
    rest = content[nl + 1:]
    rest = skip_check_headers(rest)
    assert rest.startswith(b"Received: from "), content[:400]
    lines = []
    while True:
        nl = rest.index(b"\n")
        lines.append(rest[:nl])
        rest = rest[nl + 1:]
        if not rest.startswith(b"\t"):
            break
    received = b" ".join(l.strip() for l in lines)[len(b"Received: "):]
    return rp.decode("utf-8"), received.decode("utf-8"), rest


CHECK_HEADERS = (b"Authentication-Results:", b"X-RBL-Status:", b"X-Spam-Score:", b"X-Spam-Status:")


def skip_check_headers(rest):
    """The fields the checks add after Return-Path (each with its folds)."""
    while rest.startswith(CHECK_HEADERS):
        nl = rest.index(b"\n")
        while rest[nl + 1:nl + 2] == b"\t":
            nl = rest.index(b"\n", nl + 1)
        rest = rest[nl + 1:]
    return rest


def check_headers(content):
    """The checks' fields of a delivered message: {name: unfolded value}."""
    nl = content.index(b"\n")
    rest = content[nl + 1:]
    out = {}
    while rest.startswith(CHECK_HEADERS):
        nl = rest.index(b"\n")
        while rest[nl + 1:nl + 2] == b"\t":
            nl = rest.index(b"\n", nl + 1)
        name, _, value = rest[:nl].partition(b":")
        out[name.decode()] = b" ".join(l.strip() for l in value.split(b"\n")).decode()
        rest = rest[nl + 1:]
    return out


def to_lf(msg):
    return msg.replace(b"\r\n", b"\n")


# --------------------------------------------------------------- raw SMTP


class RawSMTP:
    """A byte-level SMTP client: send exactly what a test says, read replies."""

    def __init__(self, port, host="127.0.0.1", timeout=10, tls_ctx=None, read_banner=True,
                 source_address=None):
        self.sock = socket.create_connection((host, port), timeout, source_address)
        self.timeout = timeout
        if tls_ctx is not None:
            self.sock = tls_ctx.wrap_socket(self.sock, server_hostname=host)
        self.buf = b""
        self.banner = self.reply() if read_banner else None

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _fill(self, timeout=None):
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        try:
            data = self.sock.recv(65536)
        finally:
            self.sock.settimeout(self.timeout)
        if not data:
            raise EOFError("connection closed by the server")
        self.buf += data

    def readline(self, timeout=None):
        while b"\n" not in self.buf:
            self._fill(timeout)
        i = self.buf.index(b"\n") + 1
        line, self.buf = self.buf[:i], self.buf[i:]
        return line

    def reply(self, timeout=None):
        """One (multi-line) reply: (code, [text lines]) ."""
        lines = []
        while True:
            line = self.readline(timeout)
            assert line.endswith(b"\r\n"), f"reply line without CRLF: {line!r}"
            assert len(line) >= 5 and line[:3].isdigit() and line[3:4] in (b" ", b"-"), \
                f"malformed reply line: {line!r}"
            lines.append(line[4:-2].decode("utf-8", "replace"))
            if line[3:4] == b" ":
                return int(line[:3]), lines

    def cmd(self, line):
        self.send(line + "\r\n" if isinstance(line, str) else line + b"\r\n")
        return self.reply()

    def ehlo(self, name="client.test"):
        code, lines = self.cmd(f"EHLO {name}")
        assert code == 250, lines
        return lines

    def nothing_pending(self, wait=0.3):
        """True when the server sent nothing more within wait seconds."""
        if self.buf:
            return False
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            return False
        r, _, _ = select.select([self.sock], [], [], wait)
        return not r

    def expect_eof(self, timeout=5):
        """Read until EOF (returns the bytes seen before it); fails on timeout."""
        deadline = time.monotonic() + timeout
        seen = self.buf
        self.buf = b""
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"connection still open after {timeout}s; got {seen!r}"
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                raise AssertionError(f"connection still open after {timeout}s; got {seen!r}")
            except (ConnectionResetError, ssl.SSLError):
                return seen
            if not data:
                return seen
            seen += data

    def starttls(self, ctx, host="127.0.0.1"):
        assert not self.buf
        self.sock = ctx.wrap_socket(self.sock, server_hostname=host)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---------------------------------------------------------------- gateway


class Gateway:
    """One filterd in its own temporary directory (never inside the checkout)."""

    def __init__(self, cert, key, overrides=None, users=USERS):
        self.tmp = tempfile.mkdtemp(prefix="filterd-it-")
        self.cert, self.key = cert, key
        self.data_dir = os.path.join(self.tmp, "data")
        self.users_file = os.path.join(self.tmp, "users")
        self.conf = os.path.join(self.tmp, "gateway.conf")
        self.log_path = os.path.join(self.tmp, "filterd.log")
        self.host = "127.0.0.1"
        self.port = free_port()
        self.sport = free_port()
        while self.sport == self.port:
            self.sport = free_port()
        self.imap_port = free_port()
        self.imaps_port = free_port()
        self.pop3_port = free_port()
        self.pop3s_port = free_port()
        self.imapd_log_path = os.path.join(self.tmp, "imapd.log")
        self.imapd_proc = None
        self._imapd_log = None
        self.overrides = dict(overrides or {})
        self.proc = None
        self._log = None
        self.write_config()
        for u in users:
            self.add_user(u)

    # -------------------------------------------------------------- config

    def config_text(self, overrides=None, extra=""):
        keys = {
            "hostname": HOSTNAME,
            "local_domains": "example.test, other.test",
            "data_dir": self.data_dir,
            "users_file": self.users_file,
            "tls_cert_file": self.cert,
            "tls_key_file": self.key,
            "smtp_listen": f"127.0.0.1:{self.port}",
            "smtps_listen": f"127.0.0.1:{self.sport}",
            "imap_listen": f"127.0.0.1:{self.imap_port}",
            "imaps_listen": f"127.0.0.1:{self.imaps_port}",
            "pop3_listen": f"127.0.0.1:{self.pop3_port}",
            "pop3s_listen": f"127.0.0.1:{self.pop3s_port}",
            "max_message_size": "100000",
            "shutdown_timeout": "2s",
            "log_level": "debug",
            "dns_servers": DEFAULT_DNS,
            "psl_file": DEFAULT_PSL,
        }
        keys.update(self.overrides if overrides is None else overrides)
        text = "# written by tests/integration/gwlib.py\n"
        text += "".join(f"{k} = {v}\n" for k, v in keys.items() if v is not None)
        return text + extra

    def write_config(self, overrides=None, extra=""):
        if overrides is not None:
            self.overrides = dict(overrides)
        with open(self.conf + ".new", "w") as f:
            f.write(self.config_text(extra=extra))
        os.replace(self.conf + ".new", self.conf)

    def add_user(self, addr, password=PASSWORD):
        r = subprocess.run([MAILCTL, "-c", self.conf, "user", "add", addr],
                           input=(password + "\n").encode(), capture_output=True, timeout=30)
        assert r.returncode == 0, f"mailctl user add {addr}: {r.returncode} {r.stderr!r}"

    # ------------------------------------------------------------- process

    def start(self, timeout=10):
        assert self.proc is None
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([FILTERD, "-c", self.conf], stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=self._log)
        LIVE.append(self)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"filterd exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with RawSMTP(self.port, timeout=2) as c:
                    assert c.banner[0] == 220, c.banner
                    c.cmd("QUIT")
                break
            except (OSError, EOFError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"filterd does not accept connections:\n{self.log()}")
                time.sleep(0.05)
        # Let the probe's session end, so it does not count against limits.
        self.wait_log(r"disconnect from 127\.0\.0\.1", timeout=5)
        time.sleep(0.05)
        return self

    def start_imapd(self, timeout=10):
        """Start imapd on the same configuration (IMAP ports of config_text).
        A port found free may be taken by someone else before imapd binds
        it: then try other ports."""
        for attempt in range(3):
            try:
                return self._start_imapd(timeout)
            except RuntimeError:
                if attempt == 2 or "cannot listen" not in self.imapd_log():
                    raise
                self.stop_imapd()
                self.imap_port, self.imaps_port = free_port(), free_port()
                self.pop3_port, self.pop3s_port = free_port(), free_port()
                self.write_config()
                with open(self.imapd_log_path, "ab") as f:
                    f.write(b"--- retrying on other ports ---\n")

    def _start_imapd(self, timeout):
        assert self.imapd_proc is None
        self._imapd_log = open(self.imapd_log_path, "ab")
        self.imapd_proc = subprocess.Popen([IMAPD, "-c", self.conf], stdin=subprocess.DEVNULL,
                                           stdout=self._imapd_log, stderr=self._imapd_log)
        deadline = time.monotonic() + timeout
        while True:
            if self.imapd_proc.poll() is not None:
                raise RuntimeError(f"imapd exited with {self.imapd_proc.returncode}:\n{self.imapd_log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.imap_port), 2) as c:
                    c.settimeout(2)
                    assert c.recv(1000).startswith(b"* OK")
                    c.sendall(b"a LOGOUT\r\n")
                    while c.recv(1000):
                        pass
                break
            except (OSError, AssertionError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"imapd does not accept connections:\n{self.imapd_log()}")
                time.sleep(0.05)
        return self

    def stop_imapd(self, sig=signal.SIGTERM, timeout=10):
        if self.imapd_proc is None:
            return None
        if self.imapd_proc.poll() is None:
            self.imapd_proc.send_signal(sig)
            try:
                self.imapd_proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.imapd_proc.kill()
                self.imapd_proc.wait()
        rc = self.imapd_proc.returncode
        self.imapd_proc = None
        if self._imapd_log:
            self._imapd_log.close()
            self._imapd_log = None
        return rc

    def imapd_log(self):
        try:
            with open(self.imapd_log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self, sig=signal.SIGTERM, timeout=10):
        self.stop_imapd()
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        rc = self.proc.returncode
        self.proc = None
        if self in LIVE:
            LIVE.remove(self)
        if self._log:
            self._log.close()
            self._log = None
        return rc

    def kill9(self):
        """kill -9 and reap it (so its pid is really gone)."""
        return self.stop(signal.SIGKILL)

    def restart(self):
        self.stop()
        return self.start()

    def reload(self):
        self.proc.send_signal(signal.SIGHUP)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    # Memory errors and undefined behaviour (make asan).  Leaks at exit are
    # left to the tests that check the exit status (test_config.py).
    SANITIZER = re.compile(r"ERROR: (Address|Thread|Memory)Sanitizer|runtime error: ")

    def sanitizer_report(self):
        """The sanitizer report in the log (ASan/UBSan builds), or None."""
        log = self.log() + self.imapd_log()
        m = self.SANITIZER.search(log)
        return log[max(0, m.start() - 200):m.start() + 6000] if m else None

    def cleanup(self):
        """Stop and remove; returns a sanitizer report found in the log, if any."""
        self.stop()
        report = self.sanitizer_report()
        shutil.rmtree(self.tmp, ignore_errors=True)
        return report

    # ----------------------------------------------------------------- log

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, n=200):
        return "\n".join(self.log().splitlines()[-n:])

    def wait_log(self, pattern, timeout=5, start=0):
        """Wait until the log (from offset start) matches pattern; the match."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.log()[start:])
            if m:
                return m
            if time.monotonic() > deadline:
                raise AssertionError(f"log has no {pattern!r} after {timeout}s:\n{self.log_tail()}")
            time.sleep(0.05)

    def log_size(self):
        return len(self.log())

    # -------------------------------------------------------------- clients

    def smtp(self, timeout=10):
        s = smtplib.SMTP(self.host, self.port, timeout=timeout)
        return s

    def raw(self, **kw):
        return RawSMTP(self.port, **kw)

    # -------------------------------------------------------------- Maildir

    def maildir(self, addr, folder=None):
        local, domain = addr.rsplit("@", 1)
        p = os.path.join(self.data_dir, "mail", domain, local)
        if folder:
            p = os.path.join(p, "." + folder)
        return p

    def messages(self, addr, sub="new", folder=None):
        d = os.path.join(self.maildir(addr, folder), sub)
        try:
            names = os.listdir(d)
        except FileNotFoundError:
            return []
        return sorted(os.path.join(d, n) for n in names if not n.startswith("."))

    def all_messages(self, addr, folder=None):
        return self.messages(addr, "new", folder) + self.messages(addr, "cur", folder)

    @staticmethod
    def read(path):
        with open(path, "rb") as f:
            return f.read()

    def only_message(self, addr):
        msgs = self.all_messages(addr)
        assert len(msgs) == 1, f"{addr}: expected one message, have {msgs}"
        return self.read(msgs[0])

    def find_message(self, addr, needle):
        """The files of addr (new/ and cur/) that contain needle."""
        if isinstance(needle, str):
            needle = needle.encode()
        return [p for p in self.all_messages(addr) if needle in self.read(p)]

    def find_message_in(self, addr, needle, folder):
        """The files of addr's folder (new/ and cur/) that contain needle."""
        if isinstance(needle, str):
            needle = needle.encode()
        return [p for p in self.all_messages(addr, folder) if needle in self.read(p)]

    def every_delivered_file(self):
        """Every file in any new/ or cur/ under data_dir/mail."""
        out = []
        root = os.path.join(self.data_dir, "mail")
        for dirpath, dirnames, filenames in os.walk(root):
            if os.path.basename(dirpath) in ("new", "cur"):
                out += [os.path.join(dirpath, f) for f in filenames]
        return out
