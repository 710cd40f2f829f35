"""Sender authentication and reputation before the 250 (issue 5): SPF,
DKIM, DMARC, DNS block/allow lists and URI lists, against dnsmasq on
loopback serving test zones.  Clients connect from different 127.0.0.x
source addresses to play listed and unlisted hosts; DKIM signatures are
made by an independent signer (python3-dkim).  Every verdict is asserted
from the SMTP reply and from what lands in the store."""
import base64
import os
import re
import smtplib
import tempfile
import time
import uuid

import pytest

import gwlib
from conftest import _new_gateway

dkim = pytest.importorskip("dkim")
from dkim import dknewkey  # noqa: E402

RCPT = "alice@example.test"

# Client addresses (all on lo).
GOOD = "127.0.0.10"     # allowed by every SPF record below
BAD = "127.0.0.11"      # allowed by none
INCL = "127.0.0.12"     # allowed through an include chain
MANY = "127.0.0.13"     # allowed only after more than 10 lookups
LISTED = "127.0.0.2"    # on bl.test (score 6)
BLOCKED = "127.0.0.3"   # on bl.test with the code that scores 20
ALLOWED = "127.0.0.5"   # on wl.test (score -3)
BOTH = "127.0.0.6"      # on bl.test (6) and wl.test (-3)
REFUSING = "127.0.0.7"  # refuse.test answers 127.255.255.254


def spf(ips, tail="-all"):
    return " ".join(["v=spf1"] + [f"ip4:{ip}" for ip in ips] + [tail])


def rev(ip, zone):
    return ".".join(reversed(ip.split("."))) + "." + zone


@pytest.fixture(scope="module")
def keys():
    d = tempfile.mkdtemp(prefix="dkim-it-")
    rsa = os.path.join(d, "rsa.pem")
    dknewkey.GenRSAKeys(rsa, verbose=False)
    dknewkey.ExtractRSADnsPublicKey(rsa, os.path.join(d, "rsa.dns"), verbose=False)
    ed = dknewkey.GenEd25519Keys(os.path.join(d, "ed.key"), verbose=False)
    dknewkey.ExtractEd25519PublicKey(os.path.join(d, "ed.dns"), ed, verbose=False)
    k = {
        "rsa": open(rsa, "rb").read(),
        "rsa_dns": open(os.path.join(d, "rsa.dns")).read(),
        "ed": open(os.path.join(d, "ed.key"), "rb").read(),
        "ed_dns": open(os.path.join(d, "ed.dns")).read(),
    }
    yield k


def zone_lines(k):
    t = gwlib.txt_line
    lines = [
        # SPF
        t("pass.test", spf([GOOD])),
        t("soft.test", spf([GOOD], "~all")),
        t("neutral.test", spf([GOOD], "?all")),
        t("incl.test", "v=spf1 include:inc1.test -all"),
        t("inc1.test", "v=spf1 include:inc2.test -all"),
        t("inc2.test", spf([INCL])),
        # 2 includes + 5 + 5 a: terms = 12 DNS-querying terms (RFC 7208 4.6.4: 10)
        t("many.test", f"v=spf1 include:many1.test include:many2.test ip4:{MANY} -all"),
        t("many1.test", "v=spf1 " + " ".join(f"a:h{i}.many.test" for i in range(1, 6)) + " -all"),
        t("many2.test", "v=spf1 " + " ".join(f"a:h{i}.many.test" for i in range(6, 11)) + " -all"),
        t("helo.pass.test", spf([GOOD])),
        # three void lookups (RFC 7208 4.6.4 allows two)
        t("void.test", f"v=spf1 a:nx1.void.test a:nx2.void.test a:nx3.void.test ip4:{GOOD} -all"),
        t("void2.test", f"v=spf1 a:nx1.void.test a:nx2.void.test ip4:{GOOD} -all"),
        # DKIM keys
        t("sel._domainkey.dkim.test", k["rsa_dns"]),
        t("ed._domainkey.dkim.test", k["ed_dns"]),
        t("sel._domainkey.other-signer.test", k["rsa_dns"]),
        *[t(f"s{i}._domainkey.dkim.test", k["rsa_dns"]) for i in range(1, 17)],
        t("dkim.test", spf([GOOD])),
        # DMARC
        t("reject.test", spf([GOOD])),
        t("_dmarc.reject.test", "v=DMARC1; p=reject"),
        t("sel._domainkey.reject.test", k["rsa_dns"]),
        t("quarantine.test", spf([GOOD])),
        t("_dmarc.quarantine.test", "v=DMARC1; p=quarantine"),
        t("none.test", spf([GOOD])),
        t("_dmarc.none.test", "v=DMARC1; p=none"),
        t("mail.strict.test", spf([GOOD])),
        t("_dmarc.strict.test", "v=DMARC1; p=reject; aspf=s; adkim=s"),
        t("mail.relaxed.test", spf([GOOD])),
        t("_dmarc.relaxed.test", "v=DMARC1; p=reject"),
        t("sub.test", spf([GOOD])),
        t("x.sub.test", spf([GOOD])),
        t("_dmarc.sub.test", "v=DMARC1; p=none; sp=reject"),
        t("pct.test", spf([GOOD])),
        t("_dmarc.pct.test", "v=DMARC1; p=reject; pct=0"),
        t("_dmarc.xn--bnk-qla.test", "v=DMARC1; p=reject"),
        # DNS lists
        f"host-record={rev(LISTED, 'bl.test')},127.0.0.2",
        f"host-record={rev(BLOCKED, 'bl.test')},127.0.0.4",
        f"host-record={rev(BOTH, 'bl.test')},127.0.0.2",
        f"host-record={rev(ALLOWED, 'wl.test')},127.0.10.1",
        f"host-record={rev(BOTH, 'wl.test')},127.0.10.1",
        f"host-record={rev(REFUSING, 'refuse.test')},127.255.255.254",
        "host-record=spamdomain.test.dbl.test,127.0.1.2",
    ]
    for i in range(1, 11):
        lines.append(f"host-record=h{i}.many.test,192.0.2.{i}")
    return lines


@pytest.fixture(scope="module")
def dns(keys):
    server = gwlib.DNSServer(zone_lines(keys), blackhole=["slow.test", "slowbl.test"])
    yield server
    server.close()


CHECKS = {
    "postmaster_address": "bob@example.test",
    "junk_score": "5",
    "reject_score": "10",
    "rbl_reject_score": "10",
    "dns_timeout_ms": "1500",
}

RBL_LINES = ("rbl = bl.test 127.0.0.2=6 127.0.0.4=20\n"
             "rbl = wl.test 127.0.10.0-127.0.10.255=-3\n"
             "rbl = refuse.test 127.0.0.2=6\n"
             "uribl = dbl.test 127.0.1.2=6\n")


@pytest.fixture(scope="module")
def agw(dns, tls_cert):
    g = _new_gateway(tls_cert, dict(CHECKS, dns_servers=dns.addr))
    g.stop()
    g.write_config(extra=RBL_LINES)
    g.start()
    yield g
    report = g.cleanup()
    assert not report, "sanitizer report in the filterd log:\n" + report


def message(frm, subject, body="Hello.\r\nThis is a test message.\r\n", extra=b""):
    return (f"From: Sender <{frm}>\r\nTo: <{RCPT}>\r\nSubject: {subject}\r\n"
            f"Message-ID: <{uuid.uuid4().hex}@test>\r\nDate: Wed, 02 Dec 2026 10:00:00 +0000\r\n"
            ).encode() + extra + b"\r\n" + body.encode()


def sign(msg, domain, key, selector=b"sel", canon=(b"relaxed", b"simple"), algo=b"rsa-sha256"):
    sig = dkim.sign(msg, selector, domain.encode(), key, canonicalize=canon,
                    signature_algorithm=algo,
                    include_headers=[b"from", b"to", b"subject", b"message-id", b"date"])
    return sig + msg


def send(g, mail_from, msg, source=GOOD, helo="client.test", rcpt=RCPT):
    """(stage, code, text): stage "rcpt" when RCPT was refused."""
    s = smtplib.SMTP(g.host, g.port, local_hostname=helo, source_address=(source, 0), timeout=30)
    try:
        s.ehlo(helo)
        code, text = s.mail(mail_from)
        assert code == 250, (code, text)
        code, text = s.rcpt(rcpt)
        if code != 250:
            return "rcpt", code, text.decode()
        code, text = s.data(msg)
        return "data", code, text.decode()
    finally:
        try:
            s.quit()
        except smtplib.SMTPException:
            pass


def landed(g, subject):
    """(folder, content) of the one message with this subject for RCPT."""
    needle = "Subject: " + subject
    found = [("INBOX", g.read(p)) for p in g.find_message(RCPT, needle)]
    found += [("Junk", g.read(p)) for p in g.find_message_in(RCPT, needle, "Junk")]
    assert len(found) == 1, f"{subject}: {[(f, c[:80]) for f, c in found]}"
    return found[0]


def ar(content):
    """The Authentication-Results value, unfolded."""
    return gwlib.check_headers(content)["Authentication-Results"]


def deliver(g, mail_from, subject, source=GOOD, frm=None, msg=None, helo="client.test"):
    if msg is None:
        msg = message(frm or mail_from or "nobody@nowhere.test", subject)
    stage, code, text = send(g, mail_from, msg, source=source, helo=helo)
    assert (stage, code) == ("data", 250), (stage, code, text)
    return landed(g, subject)


def uniq(name):
    return f"{name} {uuid.uuid4().hex[:8]}"


# ------------------------------------------------------------------ SPF


def test_spf_pass(agw):
    folder, c = deliver(agw, "user@pass.test", uniq("spf pass"))
    assert folder == "INBOX"
    assert "spf=pass smtp.mailfrom=user@pass.test" in ar(c)


def test_spf_fail_scores(agw):
    s = uniq("spf fail")
    folder, c = deliver(agw, "user@pass.test", s, source=BAD)
    assert "spf=fail" in ar(c)
    h = gwlib.check_headers(c)
    assert "SPF_FAIL" in h["X-Spam-Status"] and h["X-Spam-Score"] == "3.0", h
    assert folder == "INBOX"  # 3 < junk_score


def test_spf_softfail_and_neutral(agw):
    _, c = deliver(agw, "user@soft.test", uniq("spf soft"), source=BAD)
    assert "spf=softfail" in ar(c) and "SPF_SOFTFAIL" in gwlib.check_headers(c)["X-Spam-Status"]
    _, c = deliver(agw, "user@neutral.test", uniq("spf neutral"), source=BAD)
    assert "spf=neutral" in ar(c)


def test_spf_include_chain(agw):
    _, c = deliver(agw, "user@incl.test", uniq("spf include"), source=INCL)
    assert "spf=pass" in ar(c)
    _, c = deliver(agw, "user@incl.test", uniq("spf include fail"), source=BAD)
    assert "spf=fail" in ar(c)


def test_spf_too_many_lookups_is_permerror(agw):
    # The address is allowed, but only after 12 DNS-querying terms.
    _, c = deliver(agw, "user@many.test", uniq("spf many"), source=MANY)
    v = ar(c)
    assert "spf=permerror" in v, v
    assert "SPF_PERMERROR" in gwlib.check_headers(c)["X-Spam-Status"]


def test_spf_void_lookup_limit(agw):
    _, c = deliver(agw, "user@void.test", uniq("spf void"))
    assert "spf=permerror" in ar(c) and "void" in ar(c), ar(c)
    _, c = deliver(agw, "user@void2.test", uniq("spf two voids"))
    assert "spf=pass" in ar(c), ar(c)


def test_spf_missing_domain_is_none(agw):
    _, c = deliver(agw, "user@nosuch.test", uniq("spf none"))
    assert "spf=none" in ar(c)


def test_spf_null_sender_checks_helo(agw):
    s = uniq("spf helo")
    _, c = deliver(agw, "", s, frm="daemon@pass.test", helo="helo.pass.test")
    assert "spf=pass smtp.helo=helo.pass.test" in ar(c), ar(c)
    _, c = deliver(agw, "", uniq("spf helo fail"), source=BAD, frm="daemon@pass.test",
                   helo="helo.pass.test")
    assert re.search(r"spf=fail reason=\"[^\"]*\" smtp\.helo=helo\.pass\.test", ar(c)), ar(c)


def test_spf_timeout_is_temperror(agw):
    t0 = time.monotonic()
    _, c = deliver(agw, "user@slow.test", uniq("spf slow"))
    assert "spf=temperror" in ar(c)
    assert time.monotonic() - t0 < 20
    qid = re.search(rb"id (\w+)", c).group(1).decode()
    assert re.search(qid + r": .* spf=temperror .*action=deliver folder=INBOX", agw.log())


# ----------------------------------------------------------------- DKIM


def dkim_results(c):
    return re.findall(r"dkim=(\w+)(?: reason=(\"[^\"]*\"|\S+))? header\.d=(\S+) header\.s=(\S+)"
                      r" header\.b=\"?([^;\s\"]+)\"?", ar(c))


@pytest.mark.parametrize("canon", [(b"relaxed", b"simple"), (b"relaxed", b"relaxed"),
                                   (b"simple", b"simple")])
def test_dkim_pass(agw, keys, canon):
    s = uniq("dkim " + "/".join(x.decode() for x in canon))
    msg = sign(message("a@dkim.test", s), "dkim.test", keys["rsa"], canon=canon)
    folder, c = deliver(agw, "a@dkim.test", s, msg=msg)
    r = dkim_results(c)
    assert len(r) == 1 and r[0][0] == "pass" and r[0][2] == "dkim.test" and r[0][3] == "sel", ar(c)
    # header.b is a prefix of the signature's b= value.
    b = re.search(rb"b=([A-Za-z0-9+/=\s]+)", msg.split(b"bh=")[1]).group(1)
    assert re.sub(rb"\s", b"", b).decode().startswith(r[0][4])
    assert folder == "INBOX"


def test_dkim_modified_body_fails(agw, keys):
    s = uniq("dkim body")
    msg = sign(message("a@dkim.test", s), "dkim.test", keys["rsa"])
    msg = msg.replace(b"This is a test message.", b"This is a changed message.")
    _, c = deliver(agw, "a@dkim.test", s, msg=msg)
    r = dkim_results(c)
    assert len(r) == 1 and r[0][0] == "fail", ar(c)
    assert "DKIM_FAIL" in gwlib.check_headers(c)["X-Spam-Status"]


def test_dkim_expired_signature_is_not_pass(agw, keys, monkeypatch):
    s = uniq("dkim expired")
    msg = message("a@dkim.test", s)
    # python3-dkim has no x= option: sign as of two days ago and put an
    # x= one day ago into the fields it signs.
    past = int(time.time()) - 2 * 86400
    orig = dkim.DKIM.gen_header

    def with_expiry(self, fields, *a, **kw):
        return orig(self, fields[:-1] + [(b"x", str(past + 86400).encode())] + fields[-1:], *a, **kw)
    monkeypatch.setattr(dkim.DKIM, "gen_header", with_expiry)
    monkeypatch.setattr(dkim.time, "time", lambda: past)
    sig = dkim.sign(msg, b"sel", b"dkim.test", keys["rsa"],
                    include_headers=[b"from", b"to", b"subject"])
    monkeypatch.undo()
    assert b"x=" in sig
    _, c = deliver(agw, "a@dkim.test", s, msg=sig + msg)
    v = ar(c)
    assert re.search(r"dkim=(fail|permerror|neutral)", v) and "dkim=pass" not in v, v


def test_dkim_ed25519(agw, keys):
    s = uniq("dkim ed25519")
    msg = sign(message("a@dkim.test", s), "dkim.test", keys["ed"], selector=b"ed",
               algo=b"ed25519-sha256")
    _, c = deliver(agw, "a@dkim.test", s, msg=msg)
    r = dkim_results(c)
    assert len(r) == 1 and r[0][0] == "pass" and r[0][3] == "ed", ar(c)


def test_dkim_two_signatures_one_fails(agw, keys):
    s = uniq("dkim two")
    msg = message("a@dkim.test", s)
    good = sign(msg, "dkim.test", keys["rsa"])
    # The second signer's key is the same, but it claims another selector
    # with no key: permerror; and a third over a changed Subject: fail.
    bad = dkim.sign(good, b"nokey", b"dkim.test", keys["rsa"], include_headers=[b"from", b"subject"])
    both = bad + good
    _, c = deliver(agw, "a@dkim.test", s, msg=both)
    r = dkim_results(c)
    results = sorted(x[0] for x in r)
    assert results == ["pass", "permerror"], ar(c)
    assert "DKIM_FAIL" not in gwlib.check_headers(c)["X-Spam-Status"]


def test_dkim_signed_header_changed_fails_other_passes(agw, keys):
    s = uniq("dkim hdr")
    msg = message("a@dkim.test", s)
    first = sign(msg, "other-signer.test", keys["rsa"])
    second = sign(first, "dkim.test", keys["rsa"])
    # Change the To field, which both signed; then add a third signature
    # that signs only From, over the changed message.
    changed = second.replace(b"To: <alice@example.test>", b"To: <alice@example.test>, <m@evil.test>")
    third = dkim.sign(changed, b"ed", b"dkim.test", keys["ed"], signature_algorithm=b"ed25519-sha256",
                      include_headers=[b"from"])
    _, c = deliver(agw, "a@dkim.test", s, msg=third + changed)
    r = dkim_results(c)
    got = sorted((x[0], x[2], x[3]) for x in r)
    assert got == [("fail", "dkim.test", "sel"), ("fail", "other-signer.test", "sel"),
                   ("pass", "dkim.test", "ed")], ar(c)


def test_dkim_none(agw):
    _, c = deliver(agw, "a@pass.test", uniq("dkim none"))
    assert "dkim=none" in ar(c)


# ---------------------------------------------------------------- DMARC


def test_dmarc_reject_is_refused(agw):
    s = uniq("dmarc reject")
    stage, code, text = send(agw, "x@reject.test", message("x@reject.test", s), source=BAD)
    assert (stage, code) == ("data", 550), (stage, code, text)
    assert text.startswith("5.7.1") and "DMARC" in text
    qid = re.search(r"reference (\w+)", text).group(1)
    assert re.search(qid + r": .*dmarc=fail\(p=reject\).*action=reject", agw.log())
    assert not agw.find_message(RCPT, s) and not agw.find_message_in(RCPT, s, "Junk")


def test_dmarc_reject_passes_with_aligned_dkim(agw, keys):
    # SPF fails (wrong client), but an aligned DKIM signature passes.
    s = uniq("dmarc dkim")
    msg = sign(message("x@reject.test", s), "reject.test", keys["rsa"])
    folder, c = deliver(agw, "x@reject.test", s, source=BAD, msg=msg)
    assert folder == "INBOX"
    assert "dmarc=pass (p=reject) header.from=reject.test" in ar(c), ar(c)


def test_dmarc_quarantine_goes_to_junk(agw):
    # SPF passes for pass.test, not aligned with From: the score (3) is
    # under junk_score, so only the policy can put it in Junk.
    s = uniq("dmarc quarantine")
    folder, c = deliver(agw, "x@pass.test", s, frm="x@quarantine.test")
    assert "dmarc=fail (p=quarantine)" in ar(c)
    assert gwlib.check_headers(c)["X-Spam-Score"] == "3.0"
    assert folder == "Junk"


def test_dmarc_none_is_delivered(agw):
    # SPF passes for another domain (not aligned): DMARC fails, p=none
    # asks for nothing, and the score alone (3) stays under junk_score.
    s = uniq("dmarc none")
    folder, c = deliver(agw, "x@pass.test", s, frm="x@none.test")
    assert folder == "INBOX"
    assert "dmarc=fail (p=none)" in ar(c)
    assert "DMARC_FAIL" in gwlib.check_headers(c)["X-Spam-Status"]
    # With SPF failing as well, the score (6) sends it to Junk.
    folder, c = deliver(agw, "x@none.test", uniq("dmarc none spf"), source=BAD)
    assert folder == "Junk"
    assert gwlib.check_headers(c)["X-Spam-Status"].endswith("tests=SPF_FAIL,DMARC_FAIL")


def test_dmarc_pass_spf_aligned(agw):
    folder, c = deliver(agw, "x@none.test", uniq("dmarc pass"))
    assert folder == "INBOX" and "dmarc=pass (p=none) header.from=none.test" in ar(c)


def test_dmarc_strict_spf_alignment(agw):
    # SPF passes for mail.strict.test; From is strict.test: aligned only
    # under relaxed alignment, and strict.test asks for strict.
    s = uniq("dmarc strict")
    stage, code, text = send(agw, "u@mail.strict.test", message("u@strict.test", s))
    assert (stage, code) == ("data", 550), (stage, code, text)
    assert "DMARC policy of strict.test" in text


def test_dmarc_relaxed_spf_alignment(agw):
    s = uniq("dmarc relaxed")
    folder, c = deliver(agw, "u@mail.relaxed.test", s, frm="u@relaxed.test")
    assert folder == "INBOX" and "dmarc=pass" in ar(c), ar(c)


def test_dmarc_subdomain_policy(agw):
    # x.sub.test has no record: the organizational domain's sp=reject applies.
    s = uniq("dmarc sp")
    stage, code, _ = send(agw, "u@x.sub.test", message("u@x.sub.test", s), source=BAD)
    assert (stage, code) == ("data", 550)
    # sub.test itself: p=none.
    folder, c = deliver(agw, "u@pass.test", uniq("dmarc p"), frm="u@sub.test")
    assert folder == "INBOX" and "dmarc=fail (p=none)" in ar(c), ar(c)


def test_dmarc_pct_zero_samples_out(agw):
    # p=reject with pct=0: a failing message gets the next policy down
    # (quarantine), not the 550.
    s = uniq("dmarc pct")
    folder, c = deliver(agw, "u@pass.test", s, frm="u@pct.test")
    assert "dmarc=fail (p=reject, sampled out by pct)" in ar(c), ar(c)
    assert gwlib.check_headers(c)["X-Spam-Score"] == "3.0"
    assert folder == "Junk"


def test_dmarc_several_from_fields_refused(agw):
    # A reader may show either field; DMARC could check only one.
    s = uniq("two from")
    msg = message("x@pass.test", s, extra=b"From: CEO <ceo@reject.test>\r\n")
    stage, code, text = send(agw, "x@pass.test", msg)
    assert (stage, code) == ("data", 550) and "several From fields" in text, (stage, code, text)


@pytest.mark.parametrize("frm", [
    "CEO <ceo@reject.test>, <x@pass.test>",   # two domains: the strictest policy
    "CEO <ceo@reject.test",                   # no closing bracket
    '"CEO <ceo@reject.test>',                 # unclosed quote
    "CEO <ceo@reject.test>;",                 # trailing junk
])
def test_dmarc_malformed_from_still_evaluated(agw, frm):
    s = uniq("bad from")
    msg = (f"From: {frm}\r\nTo: <{RCPT}>\r\nSubject: {s}\r\n\r\nhello\r\n").encode()
    stage, code, text = send(agw, "x@pass.test", msg)
    assert (stage, code) == ("data", 550), (frm, stage, code, text)
    assert "DMARC policy of reject.test" in text


@pytest.mark.parametrize("frm", [
    'a"b, ceo@reject.test"x@pass.test',      # a reader shows ceo@reject.test
    "CEO <ceo@reject.test> (x",               # unclosed comment: no parser reads it
    "CEO <ceo@xn--bnk-qla.test> junk",        # IDN, read by the lenient parser
])
def test_dmarc_from_a_reader_would_show(agw, frm):
    s = uniq("reader from")
    msg = (f"From: {frm}\r\nTo: <{RCPT}>\r\nSubject: {s}\r\n\r\nhello\r\n").encode()
    stage, code, text = send(agw, "x@pass.test", msg)
    assert (stage, code) == ("data", 550), (frm, stage, code, text)
    assert "DMARC policy of" in text, text


def test_from_with_too_many_domains_refused(agw):
    s = uniq("many from")
    frm = ", ".join(f"a@d{i}.test" for i in range(1, 9)) + ", CEO <ceo@reject.test>"
    msg = (f"From: {frm}\r\nTo: <{RCPT}>\r\nSubject: {s}\r\n\r\nhello\r\n").encode()
    stage, code, text = send(agw, "x@pass.test", msg)
    assert (stage, code) == ("data", 550) and "too many domains" in text, (stage, code, text)


def test_from_with_deep_groups_does_not_crash(agw):
    s = uniq("deep groups")
    frm = "g:\r\n " * 3000 + "a@pass.test"
    msg = (f"From: {frm}\r\nTo: <{RCPT}>\r\nSubject: {s}\r\n\r\nhello\r\n").encode()
    stage, code, text = send(agw, "x@pass.test", msg)
    assert stage == "data" and code in (250, 550), (stage, code, text)
    assert agw.alive()
    # imapd's ENVELOPE of such a message is NIL, not a crash.
    if code == 250:
        assert agw.find_message(RCPT, s) or agw.find_message_in(RCPT, s, "Junk")


def test_missing_from_scores(agw):
    s = uniq("no from")
    msg = f"To: <{RCPT}>\r\nSubject: {s}\r\n\r\nhello\r\n".encode()
    folder, c = deliver(agw, "x@pass.test", s, msg=msg)
    assert 'dmarc=none reason="no From field"' in ar(c), ar(c)
    assert gwlib.check_headers(c)["X-Spam-Status"].endswith("tests=FROM_MISSING")


def test_dmarc_no_record(agw):
    _, c = deliver(agw, "u@pass.test", uniq("dmarc absent"))
    assert "dmarc=none" in ar(c)


# ------------------------------------------------------------ DNS lists


def test_rbl_listed_goes_to_junk(agw):
    s = uniq("rbl listed")
    folder, c = deliver(agw, "u@nosuch.test", s, source=LISTED)
    assert folder == "Junk"
    h = gwlib.check_headers(c)
    assert "RBL_BL_TEST" in h["X-Spam-Status"] and h["X-RBL-Status"].startswith("bl.test=127.0.0.2")
    qid = re.search(rb"id (\w+)", c).group(1).decode()
    assert re.search(qid + r": .*rbl=bl\.test=127\.0\.0\.2\(\+6\).*score=6\.0 .*folder=Junk", agw.log())


def test_rbl_reject_at_rcpt(agw):
    stage, code, text = send(agw, "u@nosuch.test", message("u@nosuch.test", "x"), source=BLOCKED)
    assert (stage, code) == ("rcpt", 550), (stage, code, text)
    assert text.startswith("5.7.1") and "bl.test" in text and BLOCKED in text
    # Postmaster stays reachable (RFC 5321 4.5.1), in Junk at worst.
    s = uniq("to postmaster")
    stage, code, text = send(agw, "u@nosuch.test", message("u@nosuch.test", s), source=BLOCKED,
                             rcpt="postmaster@example.test")
    assert (stage, code) == ("data", 250), (stage, code, text)
    assert agw.find_message_in("bob@example.test", s, "Junk")


def test_dnswl_offsets_listing(agw):
    folder, c = deliver(agw, "u@nosuch.test", uniq("rbl both"), source=BOTH)
    assert folder == "INBOX"
    assert gwlib.check_headers(c)["X-Spam-Score"] == "3.0"
    folder, c = deliver(agw, "u@nosuch.test", uniq("rbl allowed"), source=ALLOWED)
    assert gwlib.check_headers(c)["X-Spam-Score"] == "-3.0"


def test_rbl_refused_answer_is_an_error_not_a_listing(agw):
    s = uniq("rbl refused")
    folder, c = deliver(agw, "u@nosuch.test", s, source=REFUSING)
    assert folder == "INBOX"
    h = gwlib.check_headers(c)
    assert "refuse.test=refused(127.255.255.254)" in h["X-RBL-Status"]
    assert h["X-Spam-Score"] == "0.0"
    assert re.search(r"refuse\.test refuses our queries", agw.log())


def test_uribl_listed_domain(agw):
    s = uniq("uribl")
    body = "Cheap offer at http://WWW.SpamDomain.test./buy now\r\n"
    folder, c = deliver(agw, "u@pass.test", s, msg=message("u@pass.test", s, body=body))
    assert folder == "Junk"
    h = gwlib.check_headers(c)
    assert "URIBL_DBL_TEST" in h["X-Spam-Status"] and "spamdomain.test@dbl.test" in h["X-RBL-Status"]


def test_uribl_in_base64_html(agw):
    s = uniq("uribl b64")
    html = base64.b64encode(b'<a href="https://spamdomain.test/x">click</a>').decode()
    msg = message("u@pass.test", s, body=html + "\r\n",
                  extra=b"MIME-Version: 1.0\r\nContent-Type: text/html\r\n"
                        b"Content-Transfer-Encoding: base64\r\n")
    folder, _ = deliver(agw, "u@pass.test", s, msg=msg)
    assert folder == "Junk"


def test_total_score_rejects_with_reference(agw):
    # Listed client (6) + listed URI (6) = 12 >= reject_score.
    s = uniq("score reject")
    body = "see http://spamdomain.test/\r\n"
    stage, code, text = send(agw, "u@nosuch.test", message("u@nosuch.test", s, body=body),
                             source=LISTED)
    assert (stage, code) == ("data", 550), (stage, code, text)
    m = re.search(r"5\.7\.1 .*score 12\.0.*reference (\w+)", text)
    assert m, text
    assert re.search(m.group(1) + r": .*tests=RBL_BL_TEST,URIBL_DBL_TEST action=reject", agw.log())


def test_dkim_over_bdat(agw, keys):
    s = uniq("dkim bdat")
    msg = sign(message("a@dkim.test", s, body="line one\r\nline two\r\n" * 50), "dkim.test", keys["rsa"])
    with agw.raw(source_address=(GOOD, 0)) as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@dkim.test>")[0] == 250
        assert c.cmd(f"RCPT TO:<{RCPT}>")[0] == 250
        third = len(msg) // 3
        chunks = [msg[:third], msg[third:2 * third], msg[2 * third:]]
        for i, ch in enumerate(chunks):
            last = " LAST" if i == 2 else ""
            c.send(f"BDAT {len(ch)}{last}\r\n".encode() + ch)
            code, text = c.reply()
            assert code == 250, (code, text)
    _, content = landed(agw, s)
    r = dkim_results(content)
    assert len(r) == 1 and r[0][0] == "pass", ar(content)


def test_dkim_many_signatures_slow_dns(keys, dns, tls_cert):
    """16 signatures whose keys come from a resolver that takes 0.4 s per
    answer: the lookups run in parallel under one deadline, so all pass
    (16 lookups one after another would take 6.4 s)."""
    slow = gwlib.SlowDNS(("127.0.0.1", dns.port), 0.4)
    g = _new_gateway(tls_cert, dict(CHECKS, dns_servers=slow.addr, dns_timeout_ms="3000"))
    try:
        s = uniq("dkim slow")
        msg = message("a@dkim.test", s)
        for i in range(1, 17):
            msg = sign(msg, "dkim.test", keys["rsa"], selector=f"s{i}".encode())
        t0 = time.monotonic()
        _, c = deliver(g, "a@dkim.test", s, msg=msg)
        took = time.monotonic() - t0
        r = dkim_results(c)
        assert len(r) == 16 and all(x[0] == "pass" for x in r), ar(c)
        assert took < 5, took
    finally:
        g.cleanup()
        slow.close()


def test_header_section_over_1mib_refused(dns, tls_cert):
    g = _new_gateway(tls_cert, dict(CHECKS, dns_servers=dns.addr, max_message_size="4m"))
    try:
        filler = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"y" * 900) for i in range(1200))
        msg = message("u@pass.test", uniq("big header"), extra=filler)
        stage, code, text = send(g, "u@pass.test", msg)
        assert (stage, code) == ("data", 552) and "header section" in text, (stage, code, text)
        assert not g.every_delivered_file()
    finally:
        g.cleanup()


def test_dmarc_policies_can_be_turned_off(dns, tls_cert):
    g = _new_gateway(tls_cert, dict(CHECKS, dns_servers=dns.addr, dmarc_reject="no",
                                    dmarc_quarantine="no"))
    try:
        # p=reject fail: scored (SPF_FAIL 3 + DMARC_FAIL 3 = 6), not refused.
        s = uniq("dmarc reject off")
        folder, c = deliver(g, "x@reject.test", s, source=BAD)
        assert folder == "Junk" and "dmarc=fail (p=reject)" in ar(c)
        # p=quarantine fail with score 3: INBOX.
        s = uniq("dmarc quarantine off")
        folder, c = deliver(g, "x@pass.test", s, frm="x@quarantine.test")
        assert folder == "INBOX" and "dmarc=fail (p=quarantine)" in ar(c)
    finally:
        g.cleanup()


# --------------------------------------------------------------- headers


def test_forged_authentication_results_removed(agw):
    s = uniq("forged ar")
    extra = (b"Authentication-Results: mx.example.test; spf=pass smtp.mailfrom=ceo@pass.test\r\n"
             b"Authentication-Results: (comment) MX.Example.Test;\r\n dkim=pass header.d=pass.test\r\n"
             b"Authentication-Results: other.example; dkim=pass header.d=x.test\r\n"
             b"X-Spam-Status: No, score=-100\r\nX-Spam-Score: -100\r\n")
    msg = message("u@pass.test", s, extra=extra)
    _, c = deliver(agw, "u@pass.test", s, source=BAD, msg=msg)
    assert c.count(b"Authentication-Results: mx.example.test") == 1
    assert b"MX.Example.Test" not in c
    assert b"Authentication-Results: other.example; dkim=pass" in c
    assert c.count(b"X-Spam-Status:") == 1 and b"score=-100" not in c
    assert "spf=fail" in ar(c)


def test_log_line_has_the_results(agw, keys):
    s = uniq("log")
    msg = sign(message("x@none.test", s), "none.test", keys["rsa"])
    stage, code, text = send(agw, "x@none.test", msg)
    qid = re.search(r"queued as (\w+)", text).group(1)
    line = agw.wait_log(qid + r": .*action=deliver").group(0)
    assert re.search(r"spf=pass dkim=permerror\(none\.test\) dmarc=pass\(p=none\) rbl=clean "
                     r"uribl=clean score=0\.0", line), line


# ---------------------------------------------------- failures of DNS itself


def test_answers_cached_by_ttl(keys, tls_cert):
    """A second message within the records' TTL (300 s) needs no DNS
    server: every check is answered from the cache."""
    server = gwlib.DNSServer(zone_lines(keys))
    g = _new_gateway(tls_cert, dict(CHECKS, dns_servers=server.addr))
    try:
        g.stop()
        g.write_config(extra=RBL_LINES)
        g.start()
        body = "see http://www.clean-domain.test/\r\n"  # a URI list lookup, not listed

        def one(tag):
            s = uniq(tag)
            msg = sign(message("x@reject.test", s, body=body), "reject.test", keys["rsa"])
            return deliver(g, "x@reject.test", s, source=LISTED, msg=msg)
        folder, c = one("cache cold")
        server.stop()
        folder2, c2 = one("cache warm")
        for f, content in ((folder, c), (folder2, c2)):
            v = ar(content)
            assert "spf=fail" in v and "dkim=pass" in v and "dmarc=pass (p=reject)" in v, v
            h = gwlib.check_headers(content)
            assert h["X-RBL-Status"] == "bl.test=127.0.0.2(+6); uri=clean", h
            assert h["X-Spam-Status"].endswith("tests=SPF_FAIL,RBL_BL_TEST"), h
            assert f == "Junk"
        assert "temperror" not in g.log() and "unavailable" not in g.log()
    finally:
        g.cleanup()
        server.close()


def test_unreachable_list_is_explicit(dns, tls_cert):
    g = _new_gateway(tls_cert, dict(CHECKS, dns_servers=dns.addr, dns_timeout_ms="500"))
    try:
        g.stop()
        g.write_config(extra="rbl = slowbl.test 127.0.0.2=6\n")
        g.start()
        s = uniq("rbl slow")
        folder, c = deliver(g, "u@pass.test", s)
        assert folder == "INBOX"
        assert gwlib.check_headers(c)["X-RBL-Status"] == "slowbl.test=unavailable"
        assert re.search(r"rbl=slowbl\.test=unavailable", g.log())
        # With dns_error_tempfail the message is deferred, not accepted.
        g.write_config(dict(CHECKS, dns_servers=dns.addr, dns_timeout_ms="500",
                            dns_error_tempfail="yes"), extra="rbl = slowbl.test 127.0.0.2=6\n")
        g.reload()
        g.wait_log("configuration reloaded")
        stage, code, text = send(g, "u@pass.test", message("u@pass.test", uniq("rbl slow 451")))
        assert (stage, code) == ("data", 451), (stage, code, text)
        # The same for an SPF lookup that times out, without any list.
        g.write_config(dict(CHECKS, dns_servers=dns.addr, dns_timeout_ms="500",
                            dns_error_tempfail="yes"))
        g.reload()
        g.wait_log("configuration reloaded", start=g.log_size() - 200)
        stage, code, text = send(g, "u@slow.test", message("u@slow.test", uniq("spf slow 451")))
        assert (stage, code) == ("data", 451) and text.startswith("4.7.0"), (stage, code, text)
        # A list that refuses our resolver is an error, but not a
        # temporary one: no 451 for ever.
        g.write_config(dict(CHECKS, dns_servers=dns.addr, dns_timeout_ms="500",
                            dns_error_tempfail="yes"), extra="rbl = refuse.test 127.0.0.2=6\n")
        start = g.log_size()
        g.reload()
        g.wait_log("configuration reloaded", start=start)
        folder, c = deliver(g, "u@pass.test", uniq("refused no 451"), source=REFUSING)
        assert "refuse.test=refused" in gwlib.check_headers(c)["X-RBL-Status"]
    finally:
        g.cleanup()
