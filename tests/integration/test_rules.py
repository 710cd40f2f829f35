"""Rule scoring from rules_dir (issue 6): SpamAssassin rule syntax on
PCRE2, delivered over SMTP and asserted from the reply, the folder and
the X-Spam headers; reloads with broken and good rule files; mailctl
rules check, score and log."""
import base64
import os
import re
import shutil
import subprocess
import tempfile
import uuid

import pytest

import gwlib
from conftest import _new_gateway

RCPT = "alice@example.test"

RULES = r"""
# Test rules: each fires on a message made for it.
header   T1_SUBJ_OFFER   Subject =~ /\bcheap\s+offer\b/i
describe T1_SUBJ_OFFER   Subject offers something cheap
score    T1_SUBJ_OFFER   2.5

header   T1_NO_DATE      Date !~ /\d/
score    T1_NO_DATE      0.5

header   T1_HAS_LIST     exists:List-Id
score    T1_HAS_LIST     -1.0

header   T1_UNSET        X-Mailer =~ /^none$/ [if-unset: none]
score    T1_UNSET        0.1

header   T1_FROM_ADDR    From:addr =~ /\@winner\.test$/
score    T1_FROM_ADDR    1.5

header   T1_FROM_NAME    From:name =~ /^Lottery Office$/
score    T1_FROM_NAME    1.0

body     T1_BODY_EURO    /Gewinn von 1\.000 \x{20AC}/
score    T1_BODY_EURO    3.0

body     T1_BODY_LATIN   /Sch\x{F6}ne Gr\x{FC}\x{DF}e/
score    T1_BODY_LATIN   1.0

body     T1_HTML_TEXT    /click here & win/i
score    T1_HTML_TEXT    2.0

rawbody  T1_RAW_FONT     /<font\s+color="?red/i
score    T1_RAW_FONT     1.0

body     T1_BODY_NO_TAGS /<font/i
score    T1_BODY_NO_TAGS 50

uri      T1_URI_PHISH    m{^https?://[^/]*phish\.test/}i
score    T1_URI_PHISH    2.0

full     T1_FULL_XPRIO   /^X-Priority: 1/m
score    T1_FULL_XPRIO   0.2

body     __T1_A          /\bmeta-part-one\b/
body     __T1_B          /\bmeta-part-two\b/
meta     T1_META_BOTH    __T1_A && __T1_B
score    T1_META_BOTH    4.0
meta     T1_META_ARITH   (__T1_A + __T1_B) == 1
score    T1_META_ARITH   0.3

body     T1_MULTI        /\bstock\b/
tflags   T1_MULTI        multiple maxhits=3
meta     T1_MULTI_3      T1_MULTI >= 3
score    T1_MULTI        0.1
score    T1_MULTI_3      1.9

body     T1_REJECT_ME    /\bsend me a refusal\b/
score    T1_REJECT_ME    20

header   T1_EVAL         eval:check_for_fake_aol_relay_in_rcvd()
"""


def message(subject, body="Hello.\r\n", extra=b"", ctype=None, cte=None):
    h = (f"From: Sender <s@sender.test>\r\nTo: <{RCPT}>\r\nSubject: {subject}\r\n"
         f"Date: Wed, 02 Dec 2026 10:00:00 +0000\r\nMessage-ID: <{uuid.uuid4().hex}@t>\r\n")
    if ctype:
        h += f"MIME-Version: 1.0\r\nContent-Type: {ctype}\r\n"
    if cte:
        h += f"Content-Transfer-Encoding: {cte}\r\n"
    b = body if isinstance(body, bytes) else body.encode()
    return h.encode() + extra + b"\r\n" + b


@pytest.fixture(scope="module")
def rules_dir():
    d = tempfile.mkdtemp(prefix="rules-it-")
    with open(os.path.join(d, "10-test.rules"), "w") as f:
        f.write(RULES)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def rgw(rules_dir, tls_cert):
    g = _new_gateway(tls_cert, {"rules_dir": rules_dir})
    yield g
    report = g.cleanup()
    assert not report, report


def send(g, msg, mail_from="s@sender.test"):
    with g.smtp() as s:
        s.ehlo("client.test")
        assert s.mail(mail_from)[0] == 250
        assert s.rcpt(RCPT)[0] == 250
        code, text = s.data(msg)
        return code, text.decode()


def verdict_of(g, subject):
    found = [(f, g.read(p)) for f in (None, "Junk")
             for p in (g.find_message(RCPT, "Subject: " + subject) if f is None
                       else g.find_message_in(RCPT, "Subject: " + subject, f))]
    assert len(found) == 1, found
    folder, c = found[0]
    h = gwlib.check_headers(c)
    m = re.match(r"(Yes|No), score=(-?[\d.]+) required=5\.0 tests=(\S+)", h["X-Spam-Status"])
    assert m, h
    tests = set() if m.group(3) == "none" else set(m.group(3).split(","))
    return folder or "INBOX", float(m.group(2)), tests, c


def deliver(g, subject, **kw):
    code, text = send(g, message(subject, **kw))
    assert code == 250, (code, text)
    return verdict_of(g, subject)


def uniq(s):
    return f"{s} {uuid.uuid4().hex[:6]}"


def test_header_rules(rgw):
    s = "cheap  OFFER " + uuid.uuid4().hex[:6]
    folder, score, tests, _ = deliver(rgw, s)
    assert "T1_SUBJ_OFFER" in tests and "T1_UNSET" in tests
    assert "T1_NO_DATE" not in tests and "T1_HAS_LIST" not in tests
    _, _, tests, _ = deliver(rgw, uniq("list"), extra=b"List-Id: <l.test>\r\nX-Mailer: x\r\n")
    assert "T1_HAS_LIST" in tests and "T1_UNSET" not in tests


def test_from_addr_and_name(rgw):
    s = uniq("from parts")
    msg = message(s).replace(b"From: Sender <s@sender.test>", b"From: Lottery Office <claims@winner.test>")
    assert send(rgw, msg)[0] == 250
    _, _, tests, _ = verdict_of(rgw, s)
    assert {"T1_FROM_ADDR", "T1_FROM_NAME"} <= tests


def test_body_base64_and_qp(rgw):
    s = uniq("b64")
    text = "Ihr Gewinn von 1.000 \u20ac wartet.\r\n".encode("cp1252")
    _, _, tests, _ = deliver(rgw, s, body=base64.b64encode(text).decode() + "\r\n",
                             ctype="text/plain; charset=windows-1252", cte="base64")
    assert "T1_BODY_EURO" in tests
    s = uniq("qp")
    _, _, tests, _ = deliver(rgw, s, body="Sch=F6ne Gr=FC=DFe,\r\nHans\r\n",
                             ctype="text/plain; charset=iso-8859-1", cte="quoted-printable")
    assert "T1_BODY_LATIN" in tests


def test_html_body_rawbody_uri(rgw):
    s = uniq("html")
    html = ('<html><body><p><font color="red">Click here &amp; win</font></p>'
            '<a href="https://login.phish.test/account">your bank</a></body></html>\r\n')
    _, _, tests, _ = deliver(rgw, s, body=html, ctype="text/html; charset=utf-8")
    assert {"T1_HTML_TEXT", "T1_RAW_FONT", "T1_URI_PHISH"} <= tests
    assert "T1_BODY_NO_TAGS" not in tests  # body rules see rendered text


def test_full_and_meta(rgw):
    s = uniq("meta")
    _, score, tests, _ = deliver(rgw, s, body="meta-part-one and meta-part-two\r\n",
                                 extra=b"X-Priority: 1 (Highest)\r\n")
    assert {"T1_FULL_XPRIO", "T1_META_BOTH"} <= tests
    assert not any(t.startswith("__") for t in tests)
    assert "T1_META_ARITH" not in tests
    _, _, tests, _ = deliver(rgw, uniq("meta one"), body="only meta-part-one here\r\n")
    assert "T1_META_ARITH" in tests and "T1_META_BOTH" not in tests


def test_multiple_and_thresholds(rgw):
    s = uniq("stock")
    folder, score, tests, _ = deliver(rgw, s, body="stock stock stock stock tips\r\n")
    assert {"T1_MULTI", "T1_MULTI_3"} <= tests
    # 0.1 + 1.9 (+ T1_UNSET 0.1) under junk_score: INBOX
    assert folder == "INBOX"
    s = "cheap offer " + uuid.uuid4().hex[:6]
    folder, score, tests, c = deliver(rgw, s, body="meta-part-one meta-part-two\r\n")
    assert score >= 5 and folder == "Junk" and b"X-Spam-Status: Yes" in c


def test_reject_score_refuses_with_reference(rgw):
    code, text = send(rgw, message(uniq("refuse"), body="please send me a refusal now\r\n"))
    assert code == 550 and text.startswith("5.7.1"), (code, text)
    qid = re.search(r"reference (\w+)", text).group(1)
    line = rgw.wait_log(qid + r": .*action=reject").group(0)
    assert "T1_REJECT_ME" in line
    # mailctl log finds it by the reference.
    r = subprocess.run([gwlib.MAILCTL, "-c", rgw.conf, "log", qid, rgw.log_path],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "T1_REJECT_ME" in r.stdout and "action=reject" in r.stdout, r


def test_eval_rules_warned_not_fatal(rgw):
    assert re.search(r"10-test\.rules:\d+: warning: .*eval", rgw.log())


def test_reload_broken_keeps_old_rules_then_good_reload(rules_dir, tls_cert):
    d = tempfile.mkdtemp(prefix="rules-reload-")
    try:
        shutil.copy(os.path.join(rules_dir, "10-test.rules"), d)
        g = _new_gateway(tls_cert, {"rules_dir": d})
        try:
            with open(os.path.join(d, "20-broken.rules"), "w") as f:
                f.write("body T2_NEW /new rule/\nscore T2_NEW 3\nbody T2_BAD /unclosed(/\n")
            start = g.log_size()
            g.reload()
            g.wait_log(r"reload failed.*20-broken\.rules:3", start=start)
            _, _, tests, _ = deliver(g, "cheap offer " + uuid.uuid4().hex[:6], body="a new rule\r\n")
            assert "T1_SUBJ_OFFER" in tests and "T2_NEW" not in tests
            with open(os.path.join(d, "20-broken.rules"), "w") as f:
                f.write("body T2_NEW /new rule/\nscore T2_NEW 3\n")
            start = g.log_size()
            g.reload()
            g.wait_log(r"configuration reloaded", start=start)
            _, _, tests, _ = deliver(g, uniq("after reload"), body="a new rule\r\n")
            assert "T2_NEW" in tests
        finally:
            g.cleanup()
    finally:
        shutil.rmtree(d, ignore_errors=True)


def mailctl(g, *args, stdin=None):
    return subprocess.run([gwlib.MAILCTL, "-c", g.conf, *args], input=stdin,
                          capture_output=True, timeout=60)


def test_mailctl_rules_check(rgw, rules_dir):
    r = mailctl(rgw, "rules", "check")
    out = r.stdout.decode()
    assert r.returncode == 0, out
    assert re.search(r"10-test\.rules:\d+: warning: .*eval", out)
    assert "no errors" in out
    d = tempfile.mkdtemp(prefix="rules-bad-")
    try:
        with open(os.path.join(d, "x.rules"), "w") as f:
            f.write("body OK1 /fine/\nbody BAD1 /a(b/\nheader BAD2 Subject ~= /x/\nmeta BAD3 (OK1 &&\n")
        r = mailctl(rgw, "rules", "check", d)
        out = r.stdout.decode()
        assert r.returncode == 1, out
        for line in (2, 3, 4):
            assert re.search(rf"x\.rules:{line}: error:", out), out
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_mailctl_score(rgw):
    msg = message("cheap offer today", body="meta-part-one meta-part-two\r\n")
    r = mailctl(rgw, "score", stdin=msg)
    out = r.stdout.decode()
    assert r.returncode == 0, r
    assert re.search(r"^\s+2\.5 T1_SUBJ_OFFER\s+Subject offers something cheap$", out, re.M), out
    assert re.search(r"^\s+4\.0 T1_META_BOTH", out, re.M)
    assert re.search(r"score=6\.\d required=5\.0 -> Junk", out), out
    # Nothing was delivered.
    assert not rgw.find_message(RCPT, "cheap offer today")


SA_DIR = "/usr/share/spamassassin"


@pytest.mark.skipif(not os.path.isdir(SA_DIR), reason="Debian's spamassassin package is not installed")
def test_stock_spamassassin_rules(tls_cert):
    """Debian's stock SpamAssassin rules load (what we cannot run is
    skipped with warnings, never an error) and a few of their known rules
    fire on a message made for them."""
    d = tempfile.mkdtemp(prefix="rules-sa-")
    try:
        with open(os.path.join(d, "sa.rules"), "w") as f:
            for name in sorted(os.listdir(SA_DIR)):
                if name.endswith(".cf"):
                    f.write(f"include {SA_DIR}/{name}\n")
        g = _new_gateway(tls_cert, {"rules_dir": d, "reject_score": "1000"})
        try:
            r = mailctl(g, "rules", "check")
            out = r.stdout.decode()
            assert r.returncode == 0, out
            m = re.search(r"(\d+) rules, (\d+) warnings, no errors", out)
            assert m and int(m.group(1)) > 1000 and int(m.group(2)) > 0, out
            assert re.search(r"warning: plugin Mail::SpamAssassin::Plugin::\w+ not available", out)
            s = uniq("URGENT BUSINESS ASSISTANCE")
            body = ("Dear Friend,\r\n\r\nI am Barrister James, the attorney to the late president. "
                    "The Central Bank of Nigeria holds the sum of $25,000,000 (Twenty Five Million "
                    "US Dollars) for the next of kin. This transaction is 100% risk-free. Please "
                    "reply urgently with your bank details so that we can claim the money in your "
                    "country.\r\n\r\nYours faithfully\r\n")
            code, text = send(g, message(s, body=body))
            assert code == 250, (code, text)
            folder, score, tests, _ = verdict_of(g, s)
            assert {"DEAR_FRIEND", "US_DOLLARS_3", "RISK_FREE"} <= tests, tests
            assert any(t.startswith("ADVANCE_FEE") for t in tests), tests
            assert folder == "Junk" and score >= 5
            # Once the vectorscan prefilter is built (in a thread of its
            # own), the same message gets the same verdict.
            m = g.wait_log(r"prefilter ready in \d+ ms: (\d+) of (\d+) regex rules",
                           timeout=300)
            assert int(m.group(1)) > 500, m.group(0)
            s2 = uniq("URGENT BUSINESS ASSISTANCE")
            code, text = send(g, message(s2, body=body))
            assert code == 250, (code, text)
            folder2, score2, tests2, _ = verdict_of(g, s2)
            assert (folder2, score2, tests2) == (folder, score, tests)
        finally:
            g.cleanup()
    finally:
        shutil.rmtree(d, ignore_errors=True)


SHIPPED = os.path.join(gwlib.HERE, "..", "..", "rules.d")


def test_shipped_rules(tls_cert):
    """The shipped rules.d loads clean, sends an obvious spam to Junk (or
    refuses it) and leaves a plain reply in INBOX."""
    g = _new_gateway(tls_cert, {"rules_dir": os.path.abspath(SHIPPED), "reject_score": "1000"})
    try:
        r = mailctl(g, "rules", "check")
        out = r.stdout.decode()
        assert r.returncode == 0 and re.search(r"\d+ rules, 0 warnings, no errors", out), out
        s = "MAKE MONEY FAST!!! 100% FREE " + uuid.uuid4().hex[:6]
        spam = (f"From: \"Best Deals\" <deals8472@bulk.example>\r\nTo: undisclosed-recipients:;\r\n"
                f"Subject: {s}\r\nDate: Wed, 02 Dec 2026 10:00:00 +0000\r\n"
                "Message-ID: <abc@bulk.example>\r\nMIME-Version: 1.0\r\nContent-Type: text/html\r\n\r\n"
                "<html><body><p>Dear Friend, CLICK HERE to earn $5000 a week from home! 100% FREE, "
                "no risk, act now!!!</p><p><a href=\"http://192.0.2.7/offer\">CLICK HERE</a></p>"
                "<p>To be removed from our mailing list reply with REMOVE in the subject.</p>"
                "</body></html>\r\n").encode()
        with g.smtp() as c:
            c.ehlo("client.test")
            c.mail("deals8472@bulk.example")
            c.rcpt(RCPT)
            assert c.data(spam)[0] == 250
        folder, score, tests, _ = verdict_of(g, s)
        assert folder == "Junk" and score >= 10, (score, tests)
        assert {"URI_IP_HOST", "HTML_ONLY", "TO_UNDISCLOSED"} <= tests, tests
        # The same with the vectorscan prefilter built.
        m = g.wait_log(r"prefilter ready in \d+ ms: (\d+) of (\d+) regex rules",
                       timeout=300)
        assert int(m.group(1)) > 100, m.group(0)
        # A subject of the same shape (digit for digit, letter for
        # letter), so that every rule sees the same thing.
        tail = s.rsplit(" ", 1)[1]
        s2 = s[:-len(tail)] + "".join(str((int(ch) + 1) % 10) if ch.isdigit()
                                      else "abcdef"[("abcdef".index(ch) + 1) % 6] for ch in tail)
        with g.smtp() as c:
            c.ehlo("client.test")
            c.mail("deals8472@bulk.example")
            c.rcpt(RCPT)
            assert c.data(spam.replace(s.encode(), s2.encode()))[0] == 250
        assert verdict_of(g, s2)[:3] == (folder, score, tests)
        s = "Re: meeting on thursday " + uuid.uuid4().hex[:6]
        ham = (f"From: Alice <alice@sender.test>\r\nTo: Bob <{RCPT}>\r\nSubject: {s}\r\n"
               "Date: Wed, 02 Dec 2026 10:00:00 +0000\r\n"
               "Message-ID: <20261202100000.GA1234@sender.test>\r\nIn-Reply-To: <x@example.test>\r\n\r\n"
               "Bob wrote:\r\n> Can we meet on Thursday?\r\n\r\n"
               "Yes, Thursday at 10 works for me. I will bring the draft report.\r\n\r\nAlice\r\n").encode()
        code, _ = send(g, ham, mail_from="alice@sender.test")
        assert code == 250
        folder, score, tests, _ = verdict_of(g, s)
        assert folder == "INBOX" and score < 2, (score, tests)
    finally:
        g.cleanup()
