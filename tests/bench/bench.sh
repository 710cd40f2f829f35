#!/bin/sh
# shellcheck disable=SC3045 # ulimit -n / -S: in dash, bash and busybox sh
# bench.sh - throughput, latency, CPU and memory of filterd (make bench).
#
#   BIN_DIR=.../bin BENCH_BIN=.../smtpbench sh tests/bench/bench.sh
#
# Environment:
#   BIN_DIR      where filterd and mailctl are (default: bin/ of this checkout)
#   BENCH_BIN    the smtpbench load generator (default: build/tests/bench/smtpbench)
#   BENCH_DIR    data directory to use and keep (default: a fresh mktemp -d,
#                removed at the end); never inside the checkout
#   BENCH_QUICK  1: a tenth of the messages (a smoke run)
#   BENCH_CLIENTS, BENCH_SIZES  override the lists (defaults "1 10 50", "5 50", KB)
#   BENCH_IDLE   idle connections for the memory test (default 1000)
#   BENCH_MODE   -k (one connection per client, default), -r (reconnect per
#                message) or "-k -P" (pipelined MAIL/RCPT/DATA)
#   BENCH_WARMUP 0: no unmeasured warm-up run (one message per client) before
#                each measured run; the default 1 measures the steady state
#   BENCH_CHECKS 0: skip the cost of the sender checks (checksbench.sh)
#   IMAPBENCH_BIN, BENCH_IMAP_*  the IMAP part, run last by imapbench.sh
#                (BENCH_IMAP=0 skips it)
#
# Starts filterd on a free loopback port with a fresh store and one user,
# runs smtpbench for every clients x size pair, samples filterd's CPU time
# (utime+stime from /proc/PID/stat) around each run, and reports peak RSS
# (VmHWM) and the RSS cost of idle connections after EHLO.  filterd
# fsyncs every message (the durability rule); the numbers include that,
# so the file system of the data directory matters: it is printed.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
BIN_DIR=${BIN_DIR:-$top/bin}
BENCH_BIN=${BENCH_BIN:-$top/build/tests/bench/smtpbench}
QUICK=${BENCH_QUICK:-0}
CLIENTS=${BENCH_CLIENTS:-1 10 50}
SIZES=${BENCH_SIZES:-5 50}
IDLE=${BENCH_IDLE:-1000}
MODE=${BENCH_MODE:--k}
WARMUP=${BENCH_WARMUP:-1}
RCPT=bench@example.test

for f in "$BIN_DIR/filterd" "$BIN_DIR/mailctl" "$BENCH_BIN"; do
	if [ ! -x "$f" ]; then
		echo "bench: $f is missing (make all $BENCH_BIN)" >&2
		exit 1
	fi
done
if [ ! -r /proc/self/stat ]; then
	echo "bench: needs /proc (Linux)" >&2
	exit 1
fi

# ------------------------------------------------------------- data dir

keep=0
if [ -n "${BENCH_DIR:-}" ]; then
	mkdir -p "$BENCH_DIR"
	dir=$(cd "$BENCH_DIR" && pwd -P)
	keep=1
else
	dir=$(mktemp -d "${TMPDIR:-/tmp}/filterd-bench.XXXXXX")
	dir=$(cd "$dir" && pwd -P)
fi
toppath=$(cd "$top" && pwd -P)
case "$dir/" in
"$toppath"/*)
	echo "bench: BENCH_DIR $dir is inside the checkout; use a directory outside it" >&2
	[ "$keep" = 1 ] || rmdir "$dir" 2>/dev/null || true
	exit 1
	;;
esac

pid=
idle_pid=
cleanup() {
	st=$?
	trap - EXIT INT TERM HUP
	if [ -n "$idle_pid" ]; then
		kill "$idle_pid" 2>/dev/null || true
		wait "$idle_pid" 2>/dev/null || true
	fi
	if [ -n "$pid" ]; then
		kill -TERM "$pid" 2>/dev/null || true
		i=0
		while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do
			sleep 0.1
			i=$((i + 1))
		done
		if kill -0 "$pid" 2>/dev/null; then
			echo "bench: filterd did not stop on SIGTERM; killing it" >&2
			kill -KILL "$pid" 2>/dev/null || true
		fi
		wait "$pid" 2>/dev/null || true
	fi
	if [ "$keep" = 1 ]; then
		echo "bench: data, config and log kept in $dir"
	else
		rm -rf "$dir"
	fi
	exit $st
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# ------------------------------------------------------------- gateway

conf=$dir/filterd.conf
log=$dir/filterd.log
data=$dir/data
mkdir -p "$data"

write_conf() {
	cat >"$conf" <<EOF
# filterd benchmark configuration (tests/bench/bench.sh)
hostname               = mx.example.test
local_domains          = example.test
data_dir               = $data
users_file             = $dir/users
smtp_listen            = 127.0.0.1:$1
max_connections        = 2000
max_connections_per_ip = 2000
max_message_size       = 10485760
# The sender checks are measured apart, against a DNS server of their
# own (checksbench.sh); here they are off, so no lookup leaves the host.
spf_check              = no
dkim_check             = no
dmarc_check            = no
EOF
}

# Is anything listening on 127.0.0.1:PORT? (/proc/net/tcp, state 0A)
listening() {
	hexport=$(printf '%04X' "$1")
	grep -q "^ *[0-9]*: 0100007F:$hexport 00000000:0000 0A " /proc/net/tcp 2>/dev/null
}

port=$("$BENCH_BIN" -F)
write_conf "$port"
printf '%s\n' 'bench password 1' |
	"$BIN_DIR/mailctl" -c "$conf" user add "$RCPT" >"$dir/mailctl.log" 2>&1 || {
	echo "bench: mailctl user add failed:" >&2
	cat "$dir/mailctl.log" >&2
	exit 1
}

# filterd needs a descriptor per connection, plus its files.
# (ulimit -n and -S are not POSIX, but dash, bash and busybox sh have them)
nofile=$(ulimit -n 2>/dev/null || echo unlimited)
if [ "$nofile" != unlimited ] && [ "$nofile" -lt $((IDLE + 1000)) ]; then
	ulimit -S -n $((IDLE + 1000)) 2>/dev/null || ulimit -n $((IDLE + 1000)) 2>/dev/null ||
		echo "bench: warning: only $nofile file descriptors" >&2
fi

# Start filterd; another process may take the free port first: try again.
attempt=0
while :; do
	"$BIN_DIR/filterd" -c "$conf" >>"$log" 2>&1 &
	pid=$!
	i=0
	while ! listening "$port" && kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	if listening "$port" && kill -0 "$pid" 2>/dev/null; then
		break
	fi
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	pid=
	attempt=$((attempt + 1))
	if [ $attempt -ge 3 ]; then
		echo "bench: filterd did not start listening on 127.0.0.1:$port; its log:" >&2
		tail -n 20 "$log" >&2
		exit 1
	fi
	port=$("$BENCH_BIN" -F)
	write_conf "$port"
done

hz=$(getconf CLK_TCK)
# utime+stime of filterd in clock ticks (fields 14 and 15; the fields
# after "comm)" start at field 3, so they are the 12th and 13th there).
cpu_ticks() {
	sed 's/.*) //' "/proc/$pid/stat" | awk '{ print $12 + $13 }'
}
# A field of /proc/PID/status in kB.
status_kb() {
	awk -v k="$1:" '$1 == k { print $2 }' "/proc/$pid/status"
}

fstype=$(stat -f -c %T "$data" 2>/dev/null || echo unknown)
echo "filterd pid $pid on 127.0.0.1:$port; data in $dir ($fstype); mode $MODE; $(nproc 2>/dev/null || echo '?') CPUs"
[ "$QUICK" = 1 ] && echo "BENCH_QUICK=1: a tenth of the messages"

# ------------------------------------------------------------- load runs

results=$dir/results
: >"$results"
failed=0
for size in $SIZES; do
	for clients in $CLIENTS; do
		if [ "$size" -le 10 ]; then n=2000; else n=1000; fi
		[ "$QUICK" = 1 ] && n=$((n / 10))
		[ $n -lt "$clients" ] && n=$clients
		kill -0 "$pid" 2>/dev/null || {
			echo "bench: filterd died; its log:" >&2
			tail -n 20 "$log" >&2
			exit 1
		}
		# Warm-up, not measured: one message per client, so filterd has
		# as many store handles open as the run will use (opening one runs
		# the store's recovery scan, a cold-start cost reported apart).
		if [ "$WARMUP" = 1 ]; then
			# shellcheck disable=SC2086
			"$BENCH_BIN" -p "$port" -c "$clients" -n "$clients" -s "$((size * 1024))" \
				-t "$RCPT" $MODE >/dev/null || true
		fi
		c0=$(cpu_ticks)
		# shellcheck disable=SC2086 # MODE is a list of flags
		if line=$("$BENCH_BIN" -p "$port" -c "$clients" -n "$n" -s "$((size * 1024))" \
			-t "$RCPT" $MODE); then :; else
			failed=1
		fi
		c1=$(cpu_ticks)
		echo "$line"
		case "$line" in
		clients=*) ;;
		*) echo "bench: smtpbench gave no result" >&2; exit 1 ;;
		esac
		echo "$line cpu_ticks=$((c1 - c0)) size_kb=$size" >>"$results"
	done
done
peak_kb=$(status_kb VmHWM)

# ------------------------------------------------------------- idle memory

sleep 1
rss0=$(status_kb VmRSS)
idle_out=$dir/idle.out
"$BENCH_BIN" -p "$port" -I "$IDLE" -w 120 >"$idle_out" 2>"$dir/idle.err" &
idle_pid=$!
i=0
while ! grep -q '^idle_ready' "$idle_out" 2>/dev/null && kill -0 "$idle_pid" 2>/dev/null &&
	[ $i -lt 600 ]; do
	sleep 0.1
	i=$((i + 1))
done
ready=$(sed -n 's/^idle_ready connections=//p' "$idle_out")
ready=${ready:-0}
sleep 2 # let the sessions settle (threads started, first reads posted)
rss1=$(status_kb VmRSS)
threads=$(status_kb Threads)
kill "$idle_pid" 2>/dev/null || true
wait "$idle_pid" 2>/dev/null || true
idle_pid=
if [ "$ready" -ne "$IDLE" ]; then
	echo "bench: only $ready of $IDLE idle connections got through EHLO:" >&2
	cat "$dir/idle.err" >&2
	failed=1
fi

# ------------------------------------------------------------- report

echo
awk -v hz="$hz" '
BEGIN {
	printf "%7s  %5s  %8s  %7s  %7s  %10s\n", "clients", "size", "msgs/s", "p50 ms", "p99 ms", "cpu ms/msg"
}
{
	for (i = 1; i <= NF; i++) {
		split($i, kv, "=")
		v[kv[1]] = kv[2]
	}
	cpu = v["ok"] > 0 ? v["cpu_ticks"] * 1000 / hz / v["ok"] : 0
	note = v["ok"] < v["msgs"] ? sprintf("  (%d of %d failed)", v["msgs"] - v["ok"], v["msgs"]) : ""
	printf "%7d  %4dK  %8.1f  %7.2f  %7.2f  %10.2f%s\n", v["clients"], v["size_kb"], v["rate"], v["p50_ms"], v["p99_ms"], cpu, note
}' "$results"
awk -v peak="$peak_kb" -v r0="$rss0" -v r1="$rss1" -v n="$ready" -v want="$IDLE" -v th="$threads" 'BEGIN {
	printf "peak RSS: %.1f MB; idle connections: %d, %.1f KB each (RSS %.1f -> %.1f MB, %d threads)\n", peak / 1024, want, (n > 0 ? (r1 - r0) / n : 0), r0 / 1024, r1 / 1024, th
}'
if [ "$failed" != 0 ]; then
	echo "bench: some messages or connections failed (see above; log: $log)" >&2
	[ "$keep" = 1 ] || tail -n 5 "$log" >&2
fi

# ------------------------------------------------------------- sender checks

# tests/bench/checksbench.sh: the same message with every check off and
# on, against dnsmasq on loopback.  BENCH_CHECKS=0 skips it.
if [ "${BENCH_CHECKS:-1}" != 0 ]; then
	kill -TERM "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	pid=
	echo
	checks_dir=
	[ "$keep" = 1 ] && checks_dir=$dir
	BIN_DIR=$BIN_DIR BENCH_BIN=$BENCH_BIN BENCH_DIR=$checks_dir BENCH_QUICK=$QUICK \
		sh "$here/checksbench.sh" || failed=1
fi

# ------------------------------------------------------------- rules

# Rule matching alone (tests/bench/rulesbench.c: a message view and every
# rule, as filterd does at the end of DATA, on 2 threads), with the
# shipped rules.d and with Debian's stock SpamAssassin rules, on the
# corpus of ../shared/corpus when it is there, else on synthetic mail.
# BENCH_RULES=0 skips it.
if [ "${BENCH_RULES:-1}" != 0 ]; then
	RULESBENCH_BIN=${RULESBENCH_BIN:-$top/build/tests/bench/rulesbench}
	corpus=${BENCH_CORPUS:-$top/../shared/corpus}
	echo
	if [ -d "$corpus/ham" ] && [ -d "$corpus/spam" ]; then
		what="the corpus ($corpus)"
		set -- "$corpus/ham" "$corpus/spam"
	else
		what="2,000 synthetic messages (no corpus)"
		set -- -S 2000
	fi
	echo "Rule matching on $what:"
	if [ -x "$RULESBENCH_BIN" ]; then
		# With the vectorscan prefilter (built before the run, its time
		# is prefilter_ms), then every rule in PCRE2 alone (-P).
		printf '  shipped rules.d:   '
		"$RULESBENCH_BIN" -r "$top/rules.d" -n 3 "$@" | tr '\n' ' '
		echo
		printf '  shipped rules.d, PCRE2 alone:   '
		"$RULESBENCH_BIN" -P -r "$top/rules.d" -n 3 "$@" | head -1
		# And with the classifier, as filterd scores for one recipient.
		printf '  shipped rules.d + classifier:   '
		TMPDIR=$dir "$RULESBENCH_BIN" -b -r "$top/rules.d" -n 3 "$@" | head -1
		if [ -d /usr/share/spamassassin ]; then
			sa=$dir/sa-stock.rules
			for f in /usr/share/spamassassin/*.cf; do echo "include $f"; done >"$sa"
			printf '  stock SpamAssassin: '
			"$RULESBENCH_BIN" -r "$sa" -n 3 "$@" | tr '\n' ' '
			echo
			printf '  stock SpamAssassin, PCRE2 alone: '
			"$RULESBENCH_BIN" -P -r "$sa" -n 3 "$@" | head -1
		else
			echo "  stock SpamAssassin rules: skipped (/usr/share/spamassassin is missing)"
		fi
	else
		echo "bench: $RULESBENCH_BIN is missing (make bench builds it)" >&2
		failed=1
	fi
fi

# ------------------------------------------------------------- classifier

# tests/bench/bayesbench.c: learning, tokenizing and classifying, on the
# corpus when it is there (else synthetic mail), then again on a database
# padded to a million tokens.  BENCH_BAYES=0 skips it.
if [ "${BENCH_BAYES:-1}" != 0 ]; then
	BAYESBENCH_BIN=${BAYESBENCH_BIN:-$top/build/tests/bench/bayesbench}
	corpus=${BENCH_CORPUS:-$top/../shared/corpus}
	echo
	if [ -d "$corpus/ham" ] && [ -d "$corpus/spam" ]; then
		set -- "$corpus/ham" "$corpus/spam"
	else
		set -- -n 2000
	fi
	fill=1000000
	[ "$QUICK" = 1 ] && fill=100000
	if [ -x "$BAYESBENCH_BIN" ]; then
		TMPDIR=$dir "$BAYESBENCH_BIN" -f "$fill" "$@" || failed=1
	else
		echo "bench: $BAYESBENCH_BIN is missing (make bench builds it)" >&2
		failed=1
	fi
fi

# ------------------------------------------------------------- IMAP

# imapd, by tests/bench/imapbench.sh (its own imapd, store and report; see
# that file for its BENCH_IMAP_* variables).  BENCH_IMAP=0 skips it.
if [ "${BENCH_IMAP:-1}" != 0 ]; then
	# filterd is done: stop it so that it does not share the CPUs.
	kill -TERM "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	pid=
	IMAPBENCH_BIN=${IMAPBENCH_BIN:-$top/build/tests/bench/imapbench}
	if [ ! -x "$IMAPBENCH_BIN" ] || [ ! -x "$BIN_DIR/imapd" ]; then
		echo
		echo "bench: IMAP skipped: $IMAPBENCH_BIN or $BIN_DIR/imapd is missing (make bench builds them)" >&2
	else
		echo
		imap_dir=
		[ "$keep" = 1 ] && imap_dir=$dir
		BIN_DIR=$BIN_DIR IMAPBENCH_BIN=$IMAPBENCH_BIN BENCH_DIR=$imap_dir BENCH_QUICK=$QUICK \
			sh "$here/imapbench.sh" || failed=1
	fi
fi

# ------------------------------------------------------------- POP3

# tests/bench/pop3bench.sh: its own imapd (POP3 only) and store.
if [ "${BENCH_POP3:-1}" != 0 ]; then
	POP3BENCH_BIN=${POP3BENCH_BIN:-$top/build/tests/bench/pop3bench}
	if [ -x "$POP3BENCH_BIN" ] && [ -x "$BIN_DIR/imapd" ]; then
		echo
		BIN_DIR=$BIN_DIR POP3BENCH_BIN=$POP3BENCH_BIN sh "$here/pop3bench.sh" || failed=1
	else
		echo "bench: POP3 skipped: $POP3BENCH_BIN or $BIN_DIR/imapd is missing" >&2
	fi
fi
[ "$failed" = 0 ] || exit 1
