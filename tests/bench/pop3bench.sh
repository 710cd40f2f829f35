#!/bin/sh
# pop3bench.sh - the POP3 part of make bench: 20 clients, each logged in
# as its own user (a maildrop is locked per session), doing STAT, UIDL and
# RETR of 100 messages, against imapd on a free loopback port with a
# fresh store under mktemp -d.  Prints RETRs per second, MB/s, RETR
# latency and imapd's CPU per RETR (utime+stime from /proc/PID/stat).
#
#   BIN_DIR=.../bin POP3BENCH_BIN=.../pop3bench sh tests/bench/pop3bench.sh
#
# BENCH_POP3_CLIENTS (20), BENCH_POP3_MESSAGES (100), BENCH_DIR (kept).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
BIN_DIR=${BIN_DIR:-$top/bin}
POP3BENCH_BIN=${POP3BENCH_BIN:-$top/build/tests/bench/pop3bench}
CLIENTS=${BENCH_POP3_CLIENTS:-20}
MSGS=${BENCH_POP3_MESSAGES:-100}
PASS=pop3bench-pw
for f in "$BIN_DIR/imapd" "$BIN_DIR/mailctl" "$POP3BENCH_BIN"; do
	[ -x "$f" ] || { echo "pop3bench: $f is missing" >&2; exit 1; }
done
if [ -n "${BENCH_DIR:-}" ]; then
	mkdir -p "$BENCH_DIR/pop3"; dir=$(cd "$BENCH_DIR/pop3" && pwd -P); keep=1
else
	dir=$(mktemp -d "${TMPDIR:-/tmp}/pop3-bench.XXXXXX"); keep=0
fi
pid=
cleanup() {
	st=$?
	if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
	[ "$keep" = 1 ] || rm -rf "$dir"
	exit $st
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
conf=$dir/imapd.conf
cat >"$conf" <<CONF
hostname             = mx.example.test
local_domains        = example.test
data_dir             = $dir/data
users_file           = $dir/users
smtp_listen          =
imap_listen          =
pop3_listen          = 127.0.0.1:$port
allow_plaintext_auth = yes
CONF
# Users and their INBOXes: Maildir files written directly (the store
# indexes files it finds at the first login, which the warm-up pass does).
body=$(awk 'BEGIN { for (i = 0; i < 80; i++) printf "line %d of the message body, some text to make it about 5 KB.\n", i; print ".a line that starts with a dot" }')
i=0
while [ $i -lt "$CLIENTS" ]; do
	printf '%s\n' "$PASS" | "$BIN_DIR/mailctl" -c "$conf" user add "pop$i@example.test" >/dev/null
	md=$dir/data/mail/example.test/pop$i
	mkdir -p "$md/new" "$md/cur" "$md/tmp"
	m=0
	while [ $m -lt "$MSGS" ]; do
		printf 'From: sender%d@remote.test\nTo: pop%d@example.test\nSubject: message %d\nMessage-ID: <%d.%d@bench>\n\n%s\n' \
			"$m" "$i" "$m" "$i" "$m" "$body" > "$md/new/1700000000.M${m}P1Q${m}.bench"
		m=$((m + 1))
	done
	i=$((i + 1))
done
"$BIN_DIR/imapd" -c "$conf" >"$dir/imapd.log" 2>&1 &
pid=$!
n=0
until "$POP3BENCH_BIN" -p "$port" -u "pop%d@example.test" -w "$PASS" -c "$CLIENTS" -n 1 >/dev/null 2>&1; do
	n=$((n + 1))
	[ $n -lt 50 ] || { echo "pop3bench: imapd does not answer:" >&2; tail -5 "$dir/imapd.log" >&2; exit 1; }
	sleep 0.1
done
cpu() { awk '{ print $14 + $15 }' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
c0=$(cpu)
out=$("$POP3BENCH_BIN" -p "$port" -u "pop%d@example.test" -w "$PASS" -c "$CLIENTS" -n "$MSGS")
c1=$(cpu)
echo "$out" | awk -v c0="$c0" -v c1="$c1" -v hz="$hz" '{
	for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
	n = v["clients"] * v["msgs"]
	printf "POP3: %d clients x (STAT, UIDL, RETR of %d messages): %.1f s, %.0f RETR/s, %.1f MB/s, RETR p50 %.2f ms p99 %.2f ms, %.3f ms server CPU per RETR, errors %d\n",
		v["clients"], v["msgs"], v["secs"], v["rate"], v["mb_s"], v["p50_ms"], v["p99_ms"],
		(c1 - c0) * 1000 / hz / n, v["errors"]
}'
