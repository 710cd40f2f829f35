#!/usr/bin/python3
"""learneval.py - how well the filter learns from users moving mail.

    /usr/bin/python3 tests/bench/learneval.py [CORPUS_DIR] [--train-share 0.8] [--seed 1]

CORPUS_DIR has ham/ and spam/ with one message per file (default:
../shared/corpus next to the checkout).  The messages are split (seeded)
into a training and a test part.  A fresh gateway (filterd + imapd on
loopback, the shipped rules.d, no DNS lists, the default classifier
settings) gets the training part over SMTP as mail to one user; the user
then does what users do, over IMAP: spam left in INBOX is moved to Junk,
ham put in Junk is moved back to INBOX (the filter's clear verdicts teach
the classifier by themselves: bayes_autolearn).  Then the test part is
delivered over SMTP and counted by where it landed: INBOX, Junk, or
refused (550).  Figures for the training part are the rules without a
trained classifier.

The envelope sender tells the script which class a message is (filterd
records it as Return-Path, which the classifier does not read).
"""
import argparse
import imaplib
import os
import random
import re
import smtplib
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))
import gwlib  # noqa: E402

USER = "alice@example.test"


def load(dirname):
    out = []
    for name in sorted(os.listdir(dirname)):
        with open(os.path.join(dirname, name), "rb") as f:
            m = f.read()
        if m.startswith(b"From "):  # an mbox separator line, not a header field
            m = m.split(b"\n", 1)[1]
        out.append(m)
    return out


def deliver(gw, msgs, cls, tag):
    """Send each message; returns [(qid or None, outcome)] in order.

    filterd closes a session after 20 refusals (as Postfix's
    smtpd_hard_error_limit does), so a message whose MAIL meets a closed
    connection is sent again on a new one."""
    results = []

    def connect():
        c = smtplib.SMTP(gw.host, gw.port, timeout=60)
        c.ehlo("eval.test")
        return c

    s = connect()
    for i, m in enumerate(msgs):
        sender = f"{tag}-{cls}-{i}@eval.test"
        for attempt in range(2):
            try:
                s.mail(sender)
                s.rcpt(USER)
                code, text = s.data(m)
                if code != 250:
                    results.append((None, "refused" if code == 550 else f"error {code} {text!r}"))
                    break
            except smtplib.SMTPDataError as e:
                results.append((None, "refused" if e.smtp_code == 550
                                else f"error {e.smtp_code} {e.smtp_error!r}"))
                try:
                    s.rset()
                except smtplib.SMTPServerDisconnected:
                    s = connect()
                break
            except smtplib.SMTPServerDisconnected:
                s = connect()
                if attempt == 1:
                    results.append((None, "error: disconnected"))
                continue
            q = re.search(rb"queued as (\S+)", text)
            results.append((q.group(1).decode() if q else None, "delivered"))
            break
    s.quit()
    return results


def folders_by_qid(gw):
    out = {}
    for m in re.finditer(r"info: (\w+): client=.* action=deliver folder=(\S+)", gw.log()):
        out[m.group(1)] = m.group(2)
    return out


def outcome(results, where):
    counts = {"INBOX": 0, "Junk": 0, "refused": 0, "other": 0}
    for qid, o in results:
        if o == "refused":
            counts["refused"] += 1
        elif qid in where:
            counts[where[qid] if where[qid] in counts else "other"] += 1
        else:
            counts["other"] += 1
            print(f"  not delivered: {o}")
    return counts


def fix_folder(im, folder, want_cls, dest):
    """Move the messages of folder whose Return-Path says want_cls to dest."""
    im.select(folder)
    typ, data = im.uid("SEARCH", None, "ALL")
    uids = data[0].split()
    moved = 0
    for k in range(0, len(uids), 500):
        chunk = b",".join(uids[k:k + 500])
        typ, data = im.uid("FETCH", chunk, "(BODY.PEEK[HEADER.FIELDS (RETURN-PATH)])")
        todo = []
        for item in data:
            if isinstance(item, tuple):
                uid = re.search(rb"UID (\d+)", item[0]).group(1)
                if b"-" + want_cls.encode() + b"-" in item[1]:
                    todo.append(uid)
        for j in range(0, len(todo), 200):
            typ, _ = im.uid("MOVE", b",".join(todo[j:j + 200]), dest)
            assert typ == "OK"
            moved += len(todo[j:j + 200])
    im.noop()
    return moved


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus", nargs="?", default=os.path.join(TOP, "..", "shared", "corpus"))
    ap.add_argument("--train-share", type=float, default=0.8)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    if not os.path.isdir(os.path.join(a.corpus, "ham")):
        print(f"learneval: no corpus at {a.corpus} (ham/ and spam/), skipped")
        return 0
    ham, spam = load(os.path.join(a.corpus, "ham")), load(os.path.join(a.corpus, "spam"))
    rnd = random.Random(a.seed)
    rnd.shuffle(ham)
    rnd.shuffle(spam)
    nh, ns = int(len(ham) * a.train_share), int(len(spam) * a.train_share)
    train_ham, test_ham = ham[:nh], ham[nh:]
    train_spam, test_spam = spam[:ns], spam[ns:]
    # Interleave the training mail as it would arrive.
    tmp = tempfile.mkdtemp(prefix="learneval-")
    cert, key = gwlib.make_cert(tmp)
    dns = gwlib.DNSServer()
    dns.start()
    gwlib.DEFAULT_DNS = dns.addr
    gwlib.DEFAULT_PSL = gwlib.write_psl(os.path.join(tmp, "psl.dat"))
    gw = gwlib.Gateway(cert, key, users=(USER,), overrides={
        "rules_dir": os.path.join(TOP, "rules.d"),
        "max_message_size": "30000000",
        "allow_plaintext_auth": "yes",
        "log_level": "info",
    })
    try:
        gw.start()
        gw.start_imapd()
        t0 = time.monotonic()
        r_spam = deliver(gw, train_spam, "spam", "train")
        r_ham = deliver(gw, train_ham, "ham", "train")
        where = folders_by_qid(gw)
        before_s, before_h = outcome(r_spam, where), outcome(r_ham, where)
        t1 = time.monotonic()
        im = imaplib.IMAP4("127.0.0.1", gw.imap_port)
        im.login(USER, gwlib.PASSWORD)
        im.noop()  # the deliveries' clear verdicts are learned after login
        moved_spam = fix_folder(im, "INBOX", "spam", "Junk")
        moved_ham = fix_folder(im, "Junk", "ham", "INBOX")
        # imapd learns between commands, a few seconds at a time.
        for _ in range(120):
            im.noop()
            out = subprocess.run([gwlib.MAILCTL, "-c", gw.conf, "bayes", USER],
                                 capture_output=True, text=True).stdout
            if "not learned yet" not in out:
                break
        im.logout()
        t2 = time.monotonic()
        r_spam = deliver(gw, test_spam, "spam", "test")
        r_ham = deliver(gw, test_ham, "ham", "test")
        where = folders_by_qid(gw)
        after_s, after_h = outcome(r_spam, where), outcome(r_ham, where)
        t3 = time.monotonic()
        st = subprocess.run([gwlib.MAILCTL, "-c", gw.conf, "bayes", USER], capture_output=True,
                            text=True).stdout.strip()

        def pct(c, n, keys):
            k = sum(c[x] for x in keys)
            return f"{k}/{n} ({100.0 * k / max(n, 1):.1f}%)"
        print(f"corpus: {len(ham)} ham, {len(spam)} spam; training {nh} ham + {ns} spam, "
              f"test {len(test_ham)} ham + {len(test_spam)} spam (seed {a.seed})")
        print(f"rules alone (training part): spam caught {pct(before_s, ns, ('Junk', 'refused'))}, "
              f"ham in Junk or refused {pct(before_h, nh, ('Junk', 'refused'))}")
        print(f"user moves: {moved_spam} spam INBOX->Junk, {moved_ham} ham Junk->INBOX")
        print(st)
        print(f"after training (test part): spam caught "
              f"{pct(after_s, len(test_spam), ('Junk', 'refused'))} "
              f"[Junk {after_s['Junk']}, refused {after_s['refused']}], "
              f"ham in Junk or refused {pct(after_h, len(test_ham), ('Junk', 'refused'))}")
        print(f"times: training delivery {t1 - t0:.1f} s, moves {t2 - t1:.1f} s, "
              f"test delivery {t3 - t2:.1f} s")
        return 0
    finally:
        gw.stop_imapd()
        gw.stop()
        (os.environ.get("KEEP") or gw.cleanup())
        dns.close()


if __name__ == "__main__":
    sys.exit(main())
