"""Training by moving mail (DESIGN.md "Filtering semantics" and "Training
by moving mail"), end to end: filterd delivers, the user moves mail with
imaplib against imapd, and the next delivery shows what was learned, in
the folder on disk, the X-Spam-Status field, filterd's log and mailctl's
output.

A newsletter from news@shop.test is signed by python3-dkim with a key
that dnsmasq serves beside SPF and DMARC records for shop.test; a body
rule of our own (RULES) makes it spammy.  Most tests share one gateway
with a user each; the classifier test has a gateway of its own, since
every user's learning also teaches the site classifier."""
import imaplib
import os
import random
import re
import shutil
import smtplib
import subprocess
import tempfile
import uuid

import pytest

import gwlib
from conftest import _new_gateway

dkim = pytest.importorskip("dkim")
from dkim import dknewkey  # noqa: E402

GOOD = "127.0.0.10"     # allowed by shop.test's SPF record
BAD = "127.0.0.11"      # allowed by none
SHOP = "shop.test"
NEWS = "news@shop.test"

RULES = r"""
body     T_SALE_BLOWOUT   /\bmega clearance blowout\b/i
describe T_SALE_BLOWOUT   Newsletter style sale
score    T_SALE_BLOWOUT   6

body     T_LIQUIDATION    /\bfinal liquidation event\b/i
describe T_LIQUIDATION    Scores past reject_score
score    T_LIQUIDATION    20
"""
SPAMMY = "Our MEGA CLEARANCE BLOWOUT starts today.\r\nEverything must go.\r\n"
HARMLESS = "Hello,\r\nthe minutes of Tuesday's meeting are attached.\r\n"

# One user per test on the shared gateway.
USERS = ["whitelister", "forgery", "blacklister", "expunger", "mover", "trasher", "rescuer",
         "outlook", "lista", "listb", "reja", "rejb"]


def addr(user):
    return user if "@" in user else f"{user}@example.test"


# ------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def dns():
    d = tempfile.mkdtemp(prefix="dkim-train-")
    key = os.path.join(d, "rsa.pem")
    dknewkey.GenRSAKeys(key, verbose=False)
    dknewkey.ExtractRSADnsPublicKey(key, os.path.join(d, "rsa.dns"), verbose=False)
    with open(key, "rb") as f:
        private = f.read()
    with open(os.path.join(d, "rsa.dns")) as f:
        public = f.read()
    shutil.rmtree(d, ignore_errors=True)
    t = gwlib.txt_line
    server = gwlib.DNSServer([
        t(SHOP, f"v=spf1 ip4:{GOOD} -all"),
        t(f"sel._domainkey.{SHOP}", public),
        t(f"_dmarc.{SHOP}", "v=DMARC1; p=none"),
    ])
    server.key = private
    yield server
    server.close()


@pytest.fixture(scope="module")
def rules_dir():
    d = tempfile.mkdtemp(prefix="rules-train-")
    with open(os.path.join(d, "50-test.rules"), "w") as f:
        f.write(RULES)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def gateway(tls_cert, dns, rules_dir, users, **overrides):
    """filterd and imapd with these users added."""
    cfg = {"dns_servers": dns.addr, "rules_dir": rules_dir, "junk_score": "5",
           "reject_score": "15", "allow_plaintext_auth": "yes"}
    cfg.update(overrides)
    g = _new_gateway(tls_cert, cfg)
    try:
        g.stop()
        for u in users:
            g.add_user(addr(u))
        g.start()
        g.start_imapd()
    except BaseException:
        g.cleanup()
        raise
    return g


def finish(g):
    report = g.cleanup()
    assert not report, "sanitizer report in the logs:\n" + report


@pytest.fixture(scope="module")
def tgw(tls_cert, dns, rules_dir):
    # The classifier stays out of these tests (200 of each class, the
    # default, is far more than the site database learns here): only the
    # lists decide.  Nor does it learn from deliveries (autolearn), so the
    # counts that mailctl shows are the effect of the user's moves alone.
    g = gateway(tls_cert, dns, rules_dir, USERS, bayes_min_learned="200",
                bayes_autolearn="no")
    yield g
    finish(g)


# -------------------------------------------------------------- helpers


def uniq(name):
    return f"{name} {uuid.uuid4().hex[:8]}"


def message(subject, rcpts, frm=NEWS, body=SPAMMY, msgid=None):
    to = ", ".join(f"<{addr(r)}>" for r in rcpts)
    return (f"From: Shop News <{frm}>\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{msgid or uuid.uuid4().hex}@{frm.split('@')[1]}>\r\n"
            f"Date: Wed, 02 Dec 2026 10:00:00 +0000\r\n\r\n{body}").encode()


def sign(dns, msg):
    return dkim.sign(msg, b"sel", SHOP.encode(), dns.key,
                     include_headers=[b"from", b"to", b"subject", b"message-id", b"date"]) + msg


def send(g, mail_from, rcpts, msg, source=GOOD):
    """(code, text) of the end of DATA; every RCPT must be accepted."""
    s = smtplib.SMTP(g.host, g.port, local_hostname="client.test", source_address=(source, 0),
                     timeout=30)
    try:
        s.ehlo("client.test")
        assert s.mail(mail_from)[0] == 250
        for r in rcpts:
            code, text = s.rcpt(addr(r))
            assert code == 250, (r, code, text)
        code, text = s.data(msg)
        return code, text.decode()
    finally:
        try:
            s.quit()
        except smtplib.SMTPException:
            pass


def deliver(g, rcpts, msg, mail_from=NEWS, source=GOOD):
    """Send and expect 250; the queue id."""
    code, text = send(g, mail_from, rcpts, msg, source)
    assert code == 250, (code, text)
    return re.search(r"queued as (\w+)", text).group(1)


def newsletter(g, dns, user, subject, body=SPAMMY, signed=True, source=GOOD):
    """Deliver a newsletter from news@shop.test; its queue id."""
    msg = message(subject, [user], body=body)
    return deliver(g, [user], sign(dns, msg) if signed else msg, source=source)


FOLDERS = ("INBOX", "Junk", "Whitelist", "Blacklist", "Trash")


def folders_of(g, user, subject):
    """The folders holding a message with this subject, one per copy."""
    needle = f"Subject: {subject}".encode()
    out = []
    for f in FOLDERS:
        out += [f] * len(g.find_message_in(addr(user), needle, None if f == "INBOX" else f))
    return out


def folder_of(g, user, subject):
    """(folder, X-Spam-Status) of the one message with this subject."""
    found = folders_of(g, user, subject)
    assert len(found) == 1, f"{subject}: in {found}"
    f = found[0]
    path = g.find_message_in(addr(user), f"Subject: {subject}", None if f == "INBOX" else f)[0]
    return f, gwlib.check_headers(g.read(path)).get("X-Spam-Status", "")


def imap(g, user):
    m = imaplib.IMAP4("127.0.0.1", g.imap_port, timeout=30)
    m.login(addr(user), gwlib.PASSWORD)
    return m


def ok(reply):
    typ, data = reply
    assert typ == "OK", data
    return data


def uids(m, folder, field="SUBJECT"):
    """{value of field: UID} for the messages of folder (selected after)."""
    n = int(ok(m.select(folder))[0])
    if n == 0:
        return {}
    out = {}
    for d in ok(m.fetch("1:*", f"(UID BODY.PEEK[HEADER.FIELDS ({field})])")):
        if isinstance(d, tuple):
            uid = re.search(rb"UID (\d+)", d[0]).group(1).decode()
            value = d[1].decode().split(":", 1)[1].strip()
            out[value] = uid
    return out


def noop(m):
    """Learning runs after a command's tagged reply: the NOOP's reply
    comes after it is done."""
    ok(m.noop())


def move(m, src, subjects, dest, cmd="MOVE"):
    """MOVE (or COPY) the messages with these subjects from src to dest."""
    if isinstance(subjects, str):
        subjects = [subjects]
    have = uids(m, src)
    missing = [s for s in subjects if s not in have]
    assert not missing, f"not in {src}: {missing}"
    ok(m.uid(cmd, ",".join(have[s] for s in subjects), dest))
    noop(m)


def expunge(m, folder, subject):
    uid = uids(m, folder)[subject]
    ok(m.uid("STORE", uid, "+FLAGS.SILENT", r"(\Deleted)"))
    ok(m.expunge())
    noop(m)


def mailctl(g, *args, stdin=None):
    r = subprocess.run([gwlib.MAILCTL, "-c", g.conf, *args], input=stdin, capture_output=True,
                       timeout=60)
    assert r.returncode == 0, (args, r.returncode, r.stdout, r.stderr)
    return r.stdout.decode()


def list_show(g, user):
    return mailctl(g, "list", "show", addr(user)).splitlines()


def bayes(g, user):
    """(spam, ham) the user's classifier has learned."""
    out = mailctl(g, "bayes", addr(user))
    assert "not learned yet (imapd" not in out, out
    m = re.search(rf"^{re.escape(addr(user))}: (\d+) spam, (\d+) ham, ", out, re.M)
    if m is None:
        assert re.search(rf"^{re.escape(addr(user))}: nothing learned yet", out, re.M), out
        return 0, 0
    return int(m.group(1)), int(m.group(2))


def log_line(g, qid):
    return g.wait_log(rf"{qid}: .*action=\S+.*").group(0)


def whitelist_by_moving(g, dns, user):
    """A spammy newsletter lands in Junk; the user moves it to Whitelist."""
    s = uniq("newsletter")
    newsletter(g, dns, user, s)
    folder, status = folder_of(g, user, s)
    assert folder == "Junk" and status.startswith("Yes,") and "T_SALE_BLOWOUT" in status, status
    m = imap(g, user)
    move(m, "Junk", s, "Whitelist")
    m.logout()
    assert folder_of(g, user, s)[0] == "Whitelist"
    return s


# -------------------------------------------------------- lists by moves


def test_whitelist_by_move_lets_the_newsletter_in(tgw, dns):
    user = "whitelister"
    whitelist_by_moving(tgw, dns, user)
    assert f"white {NEWS} (1 message in Whitelist)" in list_show(tgw, user)
    assert bayes(tgw, user) == (0, 1)
    s = uniq("newsletter again")
    qid = newsletter(tgw, dns, user, s)
    folder, status = folder_of(tgw, user, s)
    assert folder == "INBOX" and status.startswith("No,") and "USER_IN_WHITELIST" in status, status
    assert "folder=INBOX" in log_line(tgw, qid)


@pytest.mark.parametrize("forgery", ["unsigned", "tampered"])
def test_forged_from_gains_nothing_from_the_whitelist(tgw, dns, forgery):
    user = "forgery"
    if not any(NEWS in line for line in list_show(tgw, user)):
        whitelist_by_moving(tgw, dns, user)
    s = uniq(f"forged {forgery}")
    msg = message(s, [user])
    if forgery == "tampered":
        # Signed, then changed: the signature fails; and the client is not
        # in shop.test's SPF record.
        msg = sign(dns, msg).replace(b"starts today", b"starts now!!")
    qid = deliver(tgw, [user], msg, source=BAD)
    folder, status = folder_of(tgw, user, s)
    assert folder == "Junk" and "USER_IN_WHITELIST" not in status, status
    assert "T_SALE_BLOWOUT" in status and "SPF_FAIL" in status, status
    line = tgw.wait_log(rf"{qid}: .*whitelist not applied").group(0)
    assert NEWS in line, line


def test_blacklist_by_move_sends_the_sender_to_junk(tgw, dns):
    user, sender = "blacklister", "deals@bulk.test"
    s = uniq("harmless deal")
    deliver(tgw, [user], message(s, [user], frm=sender, body=HARMLESS), mail_from=sender)
    assert folder_of(tgw, user, s)[0] == "INBOX"
    m = imap(tgw, user)
    move(m, "INBOX", s, "Blacklist")
    m.logout()
    assert f"black {sender} (1 message in Blacklist)" in list_show(tgw, user)
    assert bayes(tgw, user) == (1, 0)
    s = uniq("harmless deal again")
    deliver(tgw, [user], message(s, [user], frm=sender, body=HARMLESS), mail_from=sender)
    folder, status = folder_of(tgw, user, s)
    assert folder == "Junk" and status.startswith("Yes,") and "USER_IN_BLACKLIST" in status, status


def test_expunging_the_whitelist_message_removes_the_entry(tgw, dns):
    user = "expunger"
    s = whitelist_by_moving(tgw, dns, user)
    assert f"white {NEWS} (1 message in Whitelist)" in list_show(tgw, user)
    m = imap(tgw, user)
    expunge(m, "Whitelist", s)
    m.logout()
    assert folders_of(tgw, user, s) == []
    assert not [line for line in list_show(tgw, user) if NEWS in line]
    s = uniq("newsletter after expunge")
    newsletter(tgw, dns, user, s)
    folder, status = folder_of(tgw, user, s)
    assert folder == "Junk" and "USER_IN_WHITELIST" not in status, status


# ------------------------------------------------------ learning by moves


def test_moving_twice_learns_once_and_moving_back_undoes(tgw, dns):
    user, sender = "mover", "friend@pals.test"
    s = uniq("friendly note")
    deliver(tgw, [user], message(s, [user], frm=sender, body=HARMLESS), mail_from=sender)
    assert folder_of(tgw, user, s)[0] == "INBOX"
    m = imap(tgw, user)
    move(m, "INBOX", s, "Junk")
    assert bayes(tgw, user) == (1, 0)
    move(m, "Junk", s, "Junk", cmd="COPY")
    assert folders_of(tgw, user, s) == ["Junk", "Junk"]
    assert bayes(tgw, user) == (1, 0)
    ok(m.select("Junk"))
    ok(m.uid("MOVE", "1:*", "INBOX"))
    noop(m)
    m.logout()
    assert folders_of(tgw, user, s) == ["INBOX", "INBOX"]
    assert bayes(tgw, user) == (0, 0)


def test_junk_to_trash_learns_nothing(tgw, dns):
    user = "trasher"
    s = uniq("unwanted newsletter")
    newsletter(tgw, dns, user, s)
    assert folder_of(tgw, user, s)[0] == "Junk"
    m = imap(tgw, user)
    move(m, "Junk", s, "Trash")
    m.logout()
    assert folder_of(tgw, user, s)[0] == "Trash"
    assert bayes(tgw, user) == (0, 0)


def test_out_of_junk_learns_ham(tgw, dns):
    user = "rescuer"
    to_inbox, to_folder = uniq("rescued to INBOX"), uniq("rescued to a folder")
    for s in (to_inbox, to_folder):
        newsletter(tgw, dns, user, s)
        assert folder_of(tgw, user, s)[0] == "Junk"
    m = imap(tgw, user)
    ok(m.create("Receipts"))
    move(m, "Junk", to_inbox, "INBOX")
    assert bayes(tgw, user) == (0, 1)
    move(m, "Junk", to_folder, "Receipts")
    assert bayes(tgw, user) == (0, 2)
    assert list(uids(m, "Receipts")) == [to_folder]
    m.logout()
    assert folder_of(tgw, user, to_inbox)[0] == "INBOX"


def test_append_then_expunge_learns_like_move(tgw, dns):
    """Outlook's move: FETCH, APPEND to the target, delete the original."""
    user, sender = "outlook", "friend@pals.test"
    s = uniq("outlook move")
    deliver(tgw, [user], message(s, [user], frm=sender, body=HARMLESS), mail_from=sender)
    assert folder_of(tgw, user, s)[0] == "INBOX"
    m = imap(tgw, user)
    uid = uids(m, "INBOX")[s]
    data = ok(m.uid("FETCH", uid, "(BODY.PEEK[])"))
    raw = [d[1] for d in data if isinstance(d, tuple)][0]
    ok(m.append("Junk", None, None, raw))
    noop(m)
    expunge(m, "INBOX", s)
    m.logout()
    assert folders_of(tgw, user, s) == ["Junk"]
    assert bayes(tgw, user) == (1, 0)


# ---------------------------------------------- recipients of one message


def test_recipients_with_different_lists_get_different_folders(tgw, dns):
    a, b, sender = "lista", "listb", "promo@mixed.test"
    mailctl(tgw, "list", "add", addr(a), "black", sender)
    assert f"black {sender} (mailctl)" in list_show(tgw, a)
    s = uniq("promo for two")
    qid = deliver(tgw, [a, b], message(s, [a, b], frm=sender, body=HARMLESS), mail_from=sender)
    folder, status = folder_of(tgw, a, s)
    assert folder == "Junk" and "USER_IN_BLACKLIST" in status, status
    folder, status = folder_of(tgw, b, s)
    assert folder == "INBOX" and "USER_IN_BLACKLIST" not in status, status
    line = log_line(tgw, qid)
    assert f"folder=<{addr(a)}>:Junk,<{addr(b)}>:INBOX" in line, line


def test_whitelisting_recipient_overrides_the_reject(tgw, dns):
    a, b = "reja", "rejb"
    mailctl(tgw, "list", "add", addr(a), "white", NEWS)
    body = "Our FINAL LIQUIDATION EVENT starts today.\r\n"
    # To b alone: refused (score 20 >= reject_score 15).
    s = uniq("liquidation alone")
    code, text = send(tgw, NEWS, [b], sign(dns, message(s, [b], body=body)))
    assert code == 550 and "reference" in text, (code, text)
    assert folders_of(tgw, b, s) == []
    # To a and b: a whitelists the authenticated sender, so accepted.
    s = uniq("liquidation both")
    qid = deliver(tgw, [a, b], sign(dns, message(s, [a, b], body=body)))
    folder, status = folder_of(tgw, a, s)
    assert folder == "INBOX" and "USER_IN_WHITELIST" in status, status
    folder, status = folder_of(tgw, b, s)
    assert folder == "Junk" and "T_LIQUIDATION" in status, status
    line = log_line(tgw, qid)
    assert f"folder=<{addr(a)}>:INBOX,<{addr(b)}>:Junk" in line, line


# ------------------------------------------------------------ classifier

HAM_WORDS = """meeting agenda project quarterly budget review schedule minutes colleague
deadline report draft proposal committee spreadsheet invoice attached conference
presentation feedback milestone roadmap sprint release documentation onboarding
workshop seminar lecture thesis research dataset analysis summary notes calendar
reminder lunch team manager department office contract vendor purchase order
approval signature timesheet expense travel itinerary hotel booking flight""".split()
SPAM_WORDS = """winner lottery jackpot prize claim casino bonus viagra pharmacy pills
discount cheapest replica watches luxury bitcoin crypto investment guaranteed
profit millionaire inheritance beneficiary unclaimed urgent wire transfer refund
diet weightloss miracle cure enlargement singles dating hot babes unsubscribe
clickhere limited exclusive risk-free congratulations selected lucky cashback
loan credit approved mortgage debt consolidation rolex""".split()
SHARED_WORDS = """the and for you your with this that have from please today will
about more information here new time best just now get all our can one make
good know need want like would week next see also well thanks regards hello
dear call number email message online free offer price""".split()
SENDERS = [f"{n}@{d}" for n in ("info", "jane", "max", "sales", "team")
           for d in ("alpha.test", "beta.test", "gamma.test")]


def corpus_message(rng, rcpt, spam):
    """(Message-ID, From address, bytes): class words mixed with shared ones."""
    words = SPAM_WORDS if spam else HAM_WORDS
    subject = " ".join(rng.choice(words if i % 2 else SHARED_WORDS) for i in range(5))
    body = []
    for _ in range(rng.randint(4, 8)):
        body.append(" ".join(rng.choice(words) if rng.random() < 0.55 else
                             rng.choice(SHARED_WORDS) for _ in range(rng.randint(8, 14))))
    msgid = f"{rng.getrandbits(64):016x}"
    frm = rng.choice(SENDERS)
    return msgid, frm, message(subject, [rcpt], frm=frm, body="\r\n".join(body) + "\r\n",
                               msgid=msgid)


def deliver_corpus(g, rng, user, n):
    """Deliver n hams and n spams, interleaved; {Message-ID: is_spam}."""
    truth = {}
    for i in range(2 * n):
        spam = i % 2 == 1
        msgid, frm, msg = corpus_message(rng, user, spam)
        deliver(g, [user], msg, mail_from=frm)
        truth[f"<{msgid}@{frm.split('@')[1]}>"] = spam
    return truth


def correct_by_moves(g, user, truth):
    """Log in (which applies what deliveries queued to learn), move spam
    in INBOX to Junk and ham in Junk to INBOX; (spams, hams) moved."""
    m = imap(g, user)
    moved = []
    for src, dest, want_spam in (("INBOX", "Junk", True), ("Junk", "INBOX", False)):
        wrong = [uid for mid, uid in uids(m, src, "MESSAGE-ID").items()
                 if truth.get(mid) is want_spam]
        if wrong:
            ok(m.uid("MOVE", ",".join(wrong), dest))
        moved.append(len(wrong))
    noop(m)
    m.logout()
    return tuple(moved)


def placement(g, user, truth):
    """{Message-ID: (folder, X-Spam-Status)} of the messages in truth."""
    out = {}
    for folder in ("INBOX", "Junk"):
        for p in g.all_messages(addr(user), None if folder == "INBOX" else folder):
            c = g.read(p)
            mid = re.search(rb"^Message-ID: (\S+)", c, re.M).group(1).decode()
            if mid in truth:
                out[mid] = (folder, gwlib.check_headers(c)["X-Spam-Status"])
    return out


def test_classifier_learns_from_moves(tls_cert, dns, rules_dir):
    # (A real corpus, ../shared/corpus, is evaluated by a separate script.)
    user = "learner"
    # SpamAssassin's Bayes scores top out at 3.7 (BAYES_99 + BAYES_999):
    # alone the classifier moves mail to Junk only below the default 5.
    # Deliveries with score 0 in INBOX are learned as ham (autolearn, the
    # default), which is how the hams are learned before any verdict.
    g = gateway(tls_cert, dns, rules_dir, [user], bayes_min_learned="10", junk_score="3",
                bayes_autolearn="yes")
    try:
        rng = random.Random(20261202)
        # Round 1: no verdicts yet, all in INBOX; the user moves the spam.
        first = deliver_corpus(g, rng, user, 20)
        assert {f for f, _ in placement(g, user, first).values()} == {"INBOX"}
        assert correct_by_moves(g, user, first) == (20, 0)
        assert bayes(g, user) == (20, 20)
        # The user's classifier exists now (imapd made it): the next
        # delivery uses it at once.
        # Round 2: the classifier has verdicts; the user corrects its mistakes.
        second = deliver_corpus(g, rng, user, 20)
        spams, hams = correct_by_moves(g, user, second)
        assert bayes(g, user) == (20 + spams, 40), (spams, hams)
        # Unseen mail.
        test = deliver_corpus(g, rng, user, 20)
        got = placement(g, user, test)
        assert len(got) == 40
        spam = {mid: v for mid, v in got.items() if test[mid]}
        ham = {mid: v for mid, v in got.items() if not test[mid]}
        in_junk = [s for f, s in spam.values() if f == "Junk"]
        in_inbox = [s for f, s in ham.values() if f == "INBOX"]
        assert len(in_junk) >= 18 and len(in_inbox) >= 18, (len(in_junk), len(in_inbox),
                                                            list(got.values()))
        assert all(re.search(r"\bBAYES_(9\d|99\d?)\b", s) for s in in_junk), in_junk
        assert sum("BAYES_00" in s for _, s in ham.values()) >= 18, list(ham.values())
    finally:
        finish(g)


def queued(g, user):
    m = re.search(r"(\d+) moves not learned yet", mailctl(g, "bayes", addr(user)))
    return int(m.group(1)) if m else 0


def test_pop3_session_applies_the_training_queue(tls_cert, dns, rules_dir):
    # A POP3-only user never opens IMAP: the autolearning that deliveries
    # queue is applied by the POP3 session, after the login's reply.
    import poplib
    user = "popper"
    g = gateway(tls_cert, dns, rules_dir, [user], bayes_autolearn="yes", bayes_learn_site="no")
    try:
        for i in range(3):
            deliver(g, [user], message(uniq("minutes"), [user], frm=f"colleague{i}@work.test",
                                       body=HARMLESS), mail_from=f"colleague{i}@work.test")
        assert queued(g, user) == 3
        assert "nothing learned yet" in mailctl(g, "bayes", addr(user))
        p = poplib.POP3("127.0.0.1", g.pop3_port, timeout=10)
        p.user(addr(user))
        p.pass_(gwlib.PASSWORD)
        assert p.stat()[0] == 3
        # The learning ran before the session read STAT.
        assert bayes(g, user) == (0, 3)
        assert queued(g, user) == 0
        p.quit()
        assert len(re.findall(r"learned message \S+ as ham", g.imapd_log())) == 3
        # The messages are still there for the client: learning takes none.
        p = poplib.POP3("127.0.0.1", g.pop3_port, timeout=10)
        p.user(addr(user))
        p.pass_(gwlib.PASSWORD)
        assert p.stat()[0] == 3
        p.quit()
    finally:
        finish(g)
