"""mailctl user add|passwd|del|list against a real users file: passwords only
on stdin, Dovecot passwd-file lines, hashes that crypt(3) verifies, errors
with exit codes, and filterd seeing the change without a restart."""
import os
import shutil
import subprocess
import tempfile
import warnings

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt  # Debian 12 python3.11: crypt(3) to check our hashes independently

BIN = os.environ.get("BIN_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "bin"))


@pytest.fixture
def conf():
    tmp = tempfile.mkdtemp(prefix="mailgw-ctl-")
    path = os.path.join(tmp, "gw.conf")
    with open(path, "w") as f:
        f.write("local_domains = example.test\ndata_dir = data\nusers_file = users\n")
    yield tmp, path
    shutil.rmtree(tmp)


def ctl(path, *args, stdin=b""):
    return subprocess.run([f"{BIN}/mailctl", "-c", path, *args], input=stdin,
                          capture_output=True)


def user_line(tmp, addr):
    for line in open(os.path.join(tmp, "users")):
        if line.startswith(addr + ":"):
            return line.rstrip("\n")
    return None


def test_add_list_passwd_del(conf):
    tmp, path = conf
    r = ctl(path, "user", "add", "Alice@Example.Test", stdin=b"first-pass\n")
    assert r.returncode == 0, r.stderr
    line = user_line(tmp, "alice@example.test")
    assert line is not None
    scheme_hash = line.split(":")[1]
    assert scheme_hash.startswith("{SHA512-CRYPT}$6$")
    h = scheme_hash[len("{SHA512-CRYPT}"):]
    assert crypt.crypt("first-pass", h) == h
    assert b"first-pass" not in open(os.path.join(tmp, "users"), "rb").read()
    # the mailbox exists from the start, with its special folders
    root = os.path.join(tmp, "data/mail/example.test/alice")
    for d in ("new", "cur", "tmp", ".Junk", ".Whitelist", ".Blacklist", ".Sent", ".Drafts", ".Trash"):
        assert os.path.isdir(os.path.join(root, d)), d

    assert ctl(path, "user", "add", "alice@example.test", stdin=b"x\n").returncode == 1
    assert ctl(path, "user", "add", "bob@example.test", stdin=b"bob-pass\n").returncode == 0
    r = ctl(path, "user", "list")
    assert r.returncode == 0
    assert r.stdout.decode().split() == ["alice@example.test", "bob@example.test"]

    assert ctl(path, "user", "passwd", "alice@example.test", stdin=b"second-pass\n").returncode == 0
    h = user_line(tmp, "alice@example.test").split(":")[1][len("{SHA512-CRYPT}"):]
    assert crypt.crypt("second-pass", h) == h
    assert crypt.crypt("first-pass", h) != h

    assert ctl(path, "user", "del", "alice@example.test").returncode == 0
    assert user_line(tmp, "alice@example.test") is None
    assert os.path.isdir(root)  # mail is kept
    assert ctl(path, "user", "passwd", "alice@example.test", stdin=b"x\n").returncode == 1


def test_refusals(conf):
    tmp, path = conf
    # not a local domain, invalid addresses, path escapes
    for addr in ("x@elsewhere.test", "../x@example.test", "a..b@example.test", "x@example.test/.."):
        r = ctl(path, "user", "add", addr, stdin=b"pw\n")
        assert r.returncode != 0, addr
        assert r.stderr.startswith(b"mailctl: ")
    assert not os.path.exists(os.path.join(tmp, "data/mail/elsewhere.test"))
    # empty password
    assert ctl(path, "user", "add", "e@example.test", stdin=b"\n").returncode != 0
    # usage errors exit 2; the password is never taken from the command line
    assert ctl(path, "user").returncode == 2
    assert ctl(path, "user", "add", "p@example.test", "secret").returncode == 2
    assert ctl(path, "bogus").returncode == 2


def test_bad_config_names_file_and_line(conf):
    tmp, path = conf
    with open(path, "a") as f:
        f.write("no_such_key = 1\n")
    r = ctl(path, "user", "list")
    assert r.returncode == 1
    assert f"{path}:4: unknown key: no_such_key".encode() in r.stderr
