"""Fixtures for the filterd integration tests.

    BIN_DIR=/work/main/bin /usr/bin/python3 -m pytest -q tests/integration

tls_cert          one self-signed certificate for the whole session
gateway_factory   make(**config_overrides) -> a started gwlib.Gateway, per test
gw                a Gateway per test module; a module sets GW_CONFIG = {...}
                  to override config keys for it

Every gateway lives in its own tempfile.mkdtemp() directory with users
alice@example.test, bob@example.test and carol@other.test, and is stopped
(SIGTERM, then SIGKILL) and removed at the end.  When a test fails, the
logs of the gateways running at that moment are attached to its report."""
import os
import shutil
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gwlib  # noqa: E402


def pytest_configure(config):
    for b in (gwlib.FILTERD, gwlib.MAILCTL, gwlib.IMAPD):
        if not os.access(b, os.X_OK):
            raise pytest.UsageError(f"{b} is missing: run make, or set BIN_DIR")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for g in list(gwlib.LIVE):
            rep.sections.append((f"filterd log ({g.log_path})", g.log_tail(300)))
            if g.imapd_proc is not None or os.path.exists(g.imapd_log_path):
                rep.sections.append((f"imapd log ({g.imapd_log_path})",
                                     "\n".join(g.imapd_log().splitlines()[-300:])))


@pytest.fixture(scope="session", autouse=True)
def default_dns():
    """One DNS server (that knows no names) and PSL for every gateway."""
    d = tempfile.mkdtemp(prefix="filterd-it-psl-")
    gwlib.DEFAULT_PSL = gwlib.write_psl(os.path.join(d, "psl.dat"))
    server = gwlib.DNSServer()
    gwlib.DEFAULT_DNS = server.addr
    yield server
    server.close()
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def tls_cert():
    d = tempfile.mkdtemp(prefix="filterd-it-cert-")
    try:
        yield gwlib.make_cert(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _new_gateway(tls_cert, overrides):
    cert, key = tls_cert
    g = None
    try:
        g = gwlib.Gateway(cert, key, overrides)
        for attempt in range(3):
            try:
                g.start()
                break
            except RuntimeError:
                # A free port found by binding port 0 may be taken by someone
                # else before filterd binds it: try other ports.
                if attempt == 2 or "cannot listen" not in g.log():
                    raise
                g.stop()
                g.port, g.sport = gwlib.free_port(), gwlib.free_port()
                g.write_config()
    except BaseException:
        if g is not None:
            print(g.log_tail())
            g.cleanup()
        raise
    return g


@pytest.fixture
def gateway_factory(tls_cert):
    made = []

    def make(**overrides):
        g = _new_gateway(tls_cert, overrides)
        made.append(g)
        return g

    yield make
    reports = [r for r in (g.cleanup() for g in made) if r]
    assert not reports, "sanitizer report in the filterd log:\n" + reports[0]


@pytest.fixture(scope="module")
def gw(request, tls_cert):
    overrides = getattr(request.module, "GW_CONFIG", {})
    g = _new_gateway(tls_cert, overrides)
    yield g
    report = g.cleanup()
    assert not report, "sanitizer report in the filterd log:\n" + report


@pytest.fixture
def cafile(tls_cert):
    return tls_cert[0]
