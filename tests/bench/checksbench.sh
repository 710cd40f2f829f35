#!/bin/sh
# checksbench.sh - the cost of the sender checks (make bench): the same
# DKIM-signed message sent by smtpbench to filterd twice, once with every
# check off and once with all of them on (three DNS lists and a URI list,
# SPF, DKIM, DMARC) against dnsmasq on loopback serving the zones.  A
# warm-up run first fills the resolver's cache; the report gives
# messages/s and p99 for both, and the cost in per cent.
#
#   BIN_DIR=.../bin BENCH_BIN=.../smtpbench sh tests/bench/checksbench.sh
#
# BENCH_CHECKS_CLIENTS (10), BENCH_CHECKS_MESSAGES (2000), BENCH_DIR (kept).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
BIN_DIR=${BIN_DIR:-$top/bin}
BENCH_BIN=${BENCH_BIN:-$top/build/tests/bench/smtpbench}
CLIENTS=${BENCH_CHECKS_CLIENTS:-10}
MSGS=${BENCH_CHECKS_MESSAGES:-2000}
[ "${BENCH_QUICK:-0}" = 1 ] && MSGS=$((MSGS / 10))
PY=/usr/bin/python3
DNSMASQ=$(command -v dnsmasq || echo /usr/sbin/dnsmasq)
RCPT=bench@example.test
for f in "$BIN_DIR/filterd" "$BIN_DIR/mailctl" "$BENCH_BIN" "$DNSMASQ"; do
	[ -x "$f" ] || { echo "checksbench: $f is missing" >&2; exit 1; }
done
if [ -n "${BENCH_DIR:-}" ]; then
	mkdir -p "$BENCH_DIR/checks"; dir=$(cd "$BENCH_DIR/checks" && pwd -P); keep=1
else
	dir=$(mktemp -d "${TMPDIR:-/tmp}/checks-bench.XXXXXX"); keep=0
fi
pids=
dns_pid=
cleanup() {
	st=$?
	for p in $pids; do kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
	if [ -n "$dns_pid" ]; then kill "$dns_pid" 2>/dev/null || true; wait "$dns_pid" 2>/dev/null || true; fi
	[ "$keep" = 1 ] || rm -rf "$dir"
	exit $st
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() { # $1: tcp or udp
	$PY -c "import socket,sys; s=socket.socket(type=socket.SOCK_DGRAM if sys.argv[1]=='udp' else socket.SOCK_STREAM); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])" "$1"
}

# The message (about 5 KB, two links), the key and the zone, made by
# python3-dkim (an independent signer).  Without it: unsigned, dkim=none.
$PY - "$dir" <<'PY'
import os, subprocess, sys
d = sys.argv[1]
words = "the quarterly report shows steady growth in every region we serve".split()
body = "".join(" ".join(words[(i + k) % len(words)] for k in range(11)) + "\r\n" for i in range(70))
body += "Details: https://www.bench.test/report and http://cdn.example-bench.test/img.png\r\n"
msg = ("From: Bench Sender <sender@bench.test>\r\nTo: <bench@example.test>\r\n"
       "Subject: The quarterly report\r\nDate: Wed, 02 Dec 2026 10:00:00 +0000\r\n"
       "Message-ID: <bench.1@bench.test>\r\nMIME-Version: 1.0\r\n"
       "Content-Type: text/plain; charset=us-ascii\r\n\r\n" + body).encode()
key_txt = ""
try:
    import dkim
    key = os.path.join(d, "dkim.pem")
    subprocess.run(["openssl", "genrsa", "-out", key, "2048"], check=True, capture_output=True)
    pub = subprocess.run(["openssl", "rsa", "-in", key, "-pubout", "-outform", "DER"],
                         check=True, capture_output=True).stdout
    import base64
    key_txt = "v=DKIM1; k=rsa; p=" + base64.b64encode(pub).decode()
    msg = dkim.sign(msg, b"sel", b"bench.test", open(key, "rb").read(),
                    include_headers=[b"from", b"to", b"subject", b"date", b"message-id"]) + msg
except ImportError:
    print("checksbench: python3-dkim missing: the message is not signed", file=sys.stderr)
open(os.path.join(d, "msg.eml"), "wb").write(msg)
lines = ['txt-record=bench.test,"v=spf1 ip4:127.0.0.1 -all"',
         'txt-record=_dmarc.bench.test,"v=DMARC1; p=reject"']
if key_txt:
    parts = [key_txt[i:i + 250] for i in range(0, len(key_txt), 250)]
    lines.append("txt-record=sel._domainkey.bench.test," + ",".join('"%s"' % p for p in parts))
open(os.path.join(d, "zone.conf"), "w").write("\n".join(lines) + "\n")
PY

dns_port=$(free_port udp)
cat >"$dir/dnsmasq.conf" <<EOF
port=$dns_port
listen-address=127.0.0.1
bind-interfaces
no-resolv
no-hosts
local=/#/
local-ttl=300
neg-ttl=300
conf-file=$dir/zone.conf
EOF
"$DNSMASQ" --no-daemon --conf-file="$dir/dnsmasq.conf" >"$dir/dnsmasq.log" 2>&1 &
dns_pid=$!
sleep 0.3
kill -0 "$dns_pid" 2>/dev/null || { echo "checksbench: dnsmasq does not start:" >&2; cat "$dir/dnsmasq.log" >&2; exit 1; }
# The system list plus "test", so that bench.test is its own organizational domain.
{ cat /usr/share/publicsuffix/public_suffix_list.dat 2>/dev/null || true; echo test; } >"$dir/psl.dat"

write_conf() { # $1 port, $2 on|off
	cat >"$dir/filterd-$2.conf" <<EOF
hostname               = mx.example.test
local_domains          = example.test
data_dir               = $dir/data-$2
users_file             = $dir/users
smtp_listen            = 127.0.0.1:$1
max_connections_per_ip = 1000
dns_servers            = 127.0.0.1:$dns_port
psl_file               = $dir/psl.dat
EOF
	if [ "$2" = on ]; then
		cat >>"$dir/filterd-$2.conf" <<EOF
rbl   = zen.bench.test 127.0.0.2-127.0.0.3=6 127.0.0.4=4
rbl   = bl.bench.test 127.0.0.2=5
rbl   = wl.bench.test 127.0.0.0-127.255.255.255=-2
uribl = dbl.bench.test 127.0.1.2=5
EOF
	else
		printf 'spf_check = no\ndkim_check = no\ndmarc_check = no\n' >>"$dir/filterd-$2.conf"
	fi
}

# Both gateways run side by side (their own stores); the measured runs
# alternate between them, three each, so that a slow moment of the disk
# (every message is fsynced) does not fall on one side only.
start() { # $1 on|off; sets port_$1 and pid_$1
	port=$("$BENCH_BIN" -F)
	write_conf "$port" "$1"
	[ -f "$dir/users" ] || printf 'bench pw 1\n' | "$BIN_DIR/mailctl" -c "$dir/filterd-$1.conf" user add "$RCPT" >/dev/null
	"$BIN_DIR/filterd" -c "$dir/filterd-$1.conf" >"$dir/filterd-$1.log" 2>&1 &
	eval "pid_$1=$!; port_$1=$port"
	pids="$pids $!"
	i=0
	until "$BENCH_BIN" -p "$port" -c 1 -n 1 -t "$RCPT" -f sender@bench.test -m "$dir/msg.eml" >/dev/null 2>&1; do
		i=$((i + 1))
		[ $i -lt 50 ] || { echo "checksbench: filterd does not answer:" >&2; tail -5 "$dir/filterd-$1.log" >&2; exit 1; }
		sleep 0.1
	done
	# Warm-up: store handles open, the resolver's cache full.
	"$BENCH_BIN" -p "$port" -c "$CLIENTS" -n "$((CLIENTS * 5))" -t "$RCPT" -f sender@bench.test -m "$dir/msg.eml" >/dev/null
}
run() { # $1 on|off: one measured run, a result line with cpu_ticks
	eval "p=\$pid_$1; port=\$port_$1"
	c0=$(awk '{ print $14 + $15 }' "/proc/$p/stat")
	line=$("$BENCH_BIN" -p "$port" -c "$CLIENTS" -n "$MSGS" -t "$RCPT" -f sender@bench.test -m "$dir/msg.eml")
	c1=$(awk '{ print $14 + $15 }' "/proc/$p/stat")
	echo "mode=$1 $line cpu_ticks=$((c1 - c0))"
}
pids=
start off
start on
: >"$dir/results"
for r in 1 2 3; do
	run off >>"$dir/results"
	run on >>"$dir/results"
done
for p in $pids; do kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
pids=
# What the checks said about the benchmark message (one delivered file).
f=$(find "$dir/data-on/mail" -type f -path '*/new/*' | head -n 1)
ar=$(awk '/^Authentication-Results:/ { p = 1 } p && /^[^\t]/ && !/^Authentication-Results:/ { exit } p' "$f" | tr -d '\n\t' | sed 's/  */ /g')
hz=$(getconf CLK_TCK)
awk -v hz="$hz" -v clients="$CLIENTS" -v ar="$ar" '
function median(a, n,   i, j, t) {
	for (i = 2; i <= n; i++)
		for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
{
	delete v
	for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
	m = v["mode"]; k = ++n[m]
	rate[m, k] = v["rate"]; p50[m, k] = v["p50_ms"]; p99[m, k] = v["p99_ms"]
	cpu[m, k] = v["ok"] ? v["cpu_ticks"] * 1000 / hz / v["ok"] : 0
	size = v["size"]
}
END {
	printf "Sender checks (%d clients, %d-octet DKIM-signed message, dnsmasq on loopback, warm cache;\nmedians of %d alternating runs):\n", clients, size, n["on"]
	printf "%-28s %8s %8s %8s %11s\n", "", "msgs/s", "p50 ms", "p99 ms", "cpu ms/msg"
	split("off on", modes, " ")
	for (r = 1; r <= 2; r++) {
		m = modes[r]
		for (k = 1; k <= n[m]; k++) { a1[k] = rate[m, k]; a2[k] = p50[m, k]; a3[k] = p99[m, k]; a4[k] = cpu[m, k] }
		R[m] = median(a1, n[m]); P50[m] = median(a2, n[m]); P99[m] = median(a3, n[m]); C[m] = median(a4, n[m])
		printf "%-28s %8.1f %8.2f %8.2f %11.2f\n", m == "off" ? "checks off" : "SPF+DKIM+DMARC+3 RBL+URIBL", R[m], P50[m], P99[m], C[m]
	}
	printf "cost of the checks: %.1f%% of throughput, p99 %+.2f ms, CPU %+.2f ms per message\n", (1 - R["on"] / R["off"]) * 100, P99["on"] - P99["off"], C["on"] - C["off"]
	printf "the message got: %s\n", ar
}' "$dir/results"
