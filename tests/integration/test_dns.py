"""The DNS layer (common/dns.c) through `mailctl dns`, against a real DNS
server on loopback: dnsmasq serving a small test zone."""
import os
import shutil
import subprocess
import tempfile
import time

import pytest

import gwlib

DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"


@pytest.fixture
def dns():
    if not os.access(DNSMASQ, os.X_OK):
        pytest.skip("dnsmasq is not installed")
    d = tempfile.mkdtemp(prefix="dns-it-")
    for attempt in range(5):
        port = gwlib.free_udp_port()
        p = subprocess.Popen([
            DNSMASQ, "--no-daemon", f"--port={port}", "--listen-address=127.0.0.1",
            "--bind-interfaces", "--no-resolv", "--no-hosts", "--local=/test/",
            "--host-record=mx.example.test,192.0.2.10,2001:db8::10",
            "--host-record=v4only.example.test,192.0.2.11",
            "--txt-record=example.test,v=spf1 ip4:192.0.2.0/24 -all",
            "--txt-record=2.0.0.127.dnsbl.test,listed: see http://dnsbl.test/",
            "--host-record=2.0.0.127.dnsbl.test,127.0.0.2",
            "--mx-host=example.test,mx.example.test,10",
            "--cname=alias.example.test,mx.example.test",
            "--local-ttl=300"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(0.3)
        if p.poll() is None:
            break
    else:
        pytest.fail("dnsmasq does not start")
    conf = os.path.join(d, "c.conf")

    def write(servers, timeout=1500):
        with open(conf, "w") as f:
            f.write(f"local_domains = example.test\ndata_dir = {d}/data\nusers_file = {d}/users\n"
                    f"dns_servers = {servers}\ndns_timeout_ms = {timeout}\n")
    write(f"127.0.0.1:{port}")

    def lookup(rtype, name):
        r = subprocess.run([gwlib.MAILCTL, "-c", conf, "dns", rtype, name],
                           capture_output=True, text=True, timeout=30)
        return r.returncode, r.stdout, r.stderr
    lookup.write = write
    lookup.port = port
    yield lookup
    p.terminate()
    p.wait(5)
    shutil.rmtree(d, ignore_errors=True)


def test_pass_records(dns):
    rc, out, _ = dns("A", "mx.example.test")
    assert rc == 0 and "pass ttl=300" in out and "  192.0.2.10" in out, out
    rc, out, _ = dns("AAAA", "mx.example.test")
    assert rc == 0 and "  2001:db8::10" in out, out
    rc, out, _ = dns("TXT", "example.test")
    assert rc == 0 and "  v=spf1 ip4:192.0.2.0/24 -all" in out, out
    rc, out, _ = dns("MX", "example.test")
    assert rc == 0 and "  10 mx.example.test" in out, out
    # A DNSBL-style query: reversed octets under the zone.
    rc, out, _ = dns("A", "2.0.0.127.dnsbl.test")
    assert rc == 0 and "  127.0.0.2" in out, out
    rc, out, _ = dns("A", "alias.example.test")
    assert rc == 0 and "192.0.2.10" in out, out


def test_nodata_nxdomain_and_timeout(dns):
    rc, out, _ = dns("AAAA", "v4only.example.test")
    assert rc == 1 and "no-data" in out, out
    rc, out, _ = dns("A", "nope.example.test")
    assert rc == 2 and "nxdomain" in out, out
    # Nobody on that port: our deadline, reported as a temporary error.
    dead = gwlib.free_udp_port()
    dns.write(f"127.0.0.1:{dead}", timeout=500)
    t0 = time.monotonic()
    rc, out, _ = dns("A", "mx.example.test")
    assert rc == 3 and "temperror (timeout)" in out, out
    assert time.monotonic() - t0 < 10


def test_bad_config_and_usage(dns):
    dns.write("not-an-address")
    rc, out, err = dns("A", "mx.example.test")
    assert rc != 0 and "c.conf:4" in err and "dns_servers" in err, err
    rc, out, err = dns("SRVX", "mx.example.test")
    assert rc == 2, (rc, err)
    assert "unknown type" in err
