#!/bin/sh
# shellcheck disable=SC3045 # ulimit -n / -H / -S: in dash, bash and busybox sh
# imapbench.sh - throughput, latency, CPU and memory of imapd (the IMAP part
# of make bench; tests/bench/bench.sh calls it, and it runs on its own too).
#
#   BIN_DIR=.../bin IMAPBENCH_BIN=.../imapbench sh tests/bench/imapbench.sh
#
# Environment:
#   BIN_DIR              where imapd and mailctl are (default: bin/ of this checkout)
#   IMAPBENCH_BIN        the load generator (default: build/tests/bench/imapbench)
#   BENCH_DIR            directory to use and keep (the data goes to BENCH_DIR/imap);
#                        default a fresh mktemp -d, removed at the end; never
#                        inside the checkout
#   BENCH_QUICK          1: a smoke run (1,000 messages, 2 s runs, 100 idle clients)
#   BENCH_IMAP_MESSAGES  messages in the INBOX (default 10000)
#   BENCH_IMAP_CLIENTS   clients of the mix runs (default "1 10 20")
#   BENCH_IMAP_SECS      seconds of each mix run (default 10, after 1 s of warm-up)
#   BENCH_IMAP_MIX       operation weights for imapbench -x, e.g.
#                        "fetch_hdr=50,fetch_body=50" (default: imapbench's mix)
#   BENCH_IMAP_LIGHT     clients of one more run without the FROM, SUBJECT and
#                        BODY searches (default 10; 0 skips it)
#   BENCH_IMAP_LOGINS    logins of the login-CPU run (default 200)
#   BENCH_IMAP_IDLE      idle clients (default 1000), once with one user each
#                        (small mailboxes) and once all on the big INBOX
#   BENCH_IMAP_IDLE_BIG  idle clients on the big INBOX (default BENCH_IMAP_IDLE;
#                        0 skips that run)
#
# What it does: starts imapd on a free loopback port with a fresh store,
# creates bench@example.test and fills its INBOX with imapbench -m fill
# (IMAP APPEND with LITERAL+, synthetic messages of 1-30 KB, a tenth
# multipart with an attachment; see tests/bench/imapbench.c), then runs
#   - the operation mix (imapbench -m mix) with each client count: every
#     client logs in once and loops over SELECT, FETCH of 20 headers, FETCH
#     of a body, STORE of \Flagged and UID SEARCH (UNSEEN, FROM, SUBJECT,
#     BODY); every tagged command is one operation; server CPU from
#     /proc/PID/stat over the measured part;
#   - logins: connect + LOGIN + LOGOUT, and with SELECT INBOX, one after
#     the other, server CPU per login (the store of 10,000 messages is
#     opened, and its recovery scan runs, at every login);
#   - idle memory: imapd restarted, VmRSS sampled, then BENCH_IMAP_IDLE
#     clients LOGIN, SELECT INBOX and IDLE; VmRSS again; first with one
#     user per client (users idle0..idleN-1, small INBOXes: the cost of a
#     connection), then all on the big INBOX (the cost of a selected
#     mailbox of 10,000 messages), where one APPEND then measures how long
#     imapd takes to tell every idling client "* N EXISTS".
# Every reply is checked; a NO, BAD or missing data fails the run.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
BIN_DIR=${BIN_DIR:-$top/bin}
IMAPBENCH_BIN=${IMAPBENCH_BIN:-$top/build/tests/bench/imapbench}
QUICK=${BENCH_QUICK:-0}
if [ "$QUICK" = 1 ]; then
	MESSAGES=${BENCH_IMAP_MESSAGES:-1000}
	SECS=${BENCH_IMAP_SECS:-2}
	IDLE=${BENCH_IMAP_IDLE:-100}
	LOGINS=${BENCH_IMAP_LOGINS:-40}
else
	MESSAGES=${BENCH_IMAP_MESSAGES:-10000}
	SECS=${BENCH_IMAP_SECS:-10}
	IDLE=${BENCH_IMAP_IDLE:-1000}
	LOGINS=${BENCH_IMAP_LOGINS:-200}
fi
IDLE_BIG=${BENCH_IMAP_IDLE_BIG:-$IDLE}
CLIENTS=${BENCH_IMAP_CLIENTS:-1 10 20}
MIX=${BENCH_IMAP_MIX:-}
LIGHT=${BENCH_IMAP_LIGHT:-10}
LIGHT_MIX=fetch_hdr=30,fetch_body=25,store=15,search_unseen=10,select=5
USER_ADDR=bench@example.test
PASS=imapbench-pw-1

for f in "$BIN_DIR/imapd" "$BIN_DIR/mailctl" "$IMAPBENCH_BIN"; do
	if [ ! -x "$f" ]; then
		echo "imapbench: $f is missing (make all $IMAPBENCH_BIN)" >&2
		exit 1
	fi
done
if [ ! -r /proc/self/stat ]; then
	echo "imapbench: needs /proc (Linux)" >&2
	exit 1
fi
started_at=$(date +%s)

# ------------------------------------------------------------- data dir

keep=0
if [ -n "${BENCH_DIR:-}" ]; then
	mkdir -p "$BENCH_DIR/imap"
	dir=$(cd "$BENCH_DIR/imap" && pwd -P)
	keep=1
else
	dir=$(mktemp -d "${TMPDIR:-/tmp}/imapd-bench.XXXXXX")
	dir=$(cd "$dir" && pwd -P)
fi
toppath=$(cd "$top" && pwd -P)
case "$dir/" in
"$toppath"/*)
	echo "imapbench: BENCH_DIR $dir is inside the checkout; use a directory outside it" >&2
	[ "$keep" = 1 ] || rmdir "$dir" 2>/dev/null || true
	exit 1
	;;
esac

pid=
idle_pid=
stop_imapd() {
	if [ -n "$pid" ]; then
		kill -TERM "$pid" 2>/dev/null || true
		i=0
		while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do
			sleep 0.1
			i=$((i + 1))
		done
		if kill -0 "$pid" 2>/dev/null; then
			echo "imapbench: imapd did not stop on SIGTERM; killing it" >&2
			kill -KILL "$pid" 2>/dev/null || true
		fi
		wait "$pid" 2>/dev/null || true
		pid=
	fi
}
cleanup() {
	st=$?
	trap - EXIT INT TERM HUP
	if [ -n "$idle_pid" ]; then
		kill -TERM "$idle_pid" 2>/dev/null || true
		wait "$idle_pid" 2>/dev/null || true
	fi
	stop_imapd
	if [ "$keep" = 1 ]; then
		echo "imapbench: data, config and log kept in $dir"
	else
		rm -rf "$dir"
	fi
	exit $st
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

conf=$dir/imapd.conf
log=$dir/imapd.log
data=$dir/data
mkdir -p "$data"

write_conf() {
	cat >"$conf" <<EOF
# imapd benchmark configuration (tests/bench/imapbench.sh)
hostname                    = mx.example.test
local_domains               = example.test
data_dir                    = $data
users_file                  = $dir/users
smtp_listen                 =
imap_listen                 = 127.0.0.1:$1
allow_plaintext_auth        = yes
imap_max_connections        = $((IDLE + IDLE_BIG + 100))
imap_max_connections_per_ip = $((IDLE + IDLE_BIG + 100))
max_message_size            = 10485760
EOF
}

# Is anything listening on 127.0.0.1:PORT? (/proc/net/tcp, state 0A)
listening() {
	hexport=$(printf '%04X' "$1")
	grep -q "^ *[0-9]*: 0100007F:$hexport 00000000:0000 0A " /proc/net/tcp 2>/dev/null
}

port=$("$IMAPBENCH_BIN" -F)
write_conf "$port"
if [ ! -s "$dir/users" ] || ! grep -q "^$USER_ADDR:" "$dir/users"; then
	printf '%s\n' "$PASS" | "$BIN_DIR/mailctl" -c "$conf" user add "$USER_ADDR" >"$dir/mailctl.log" 2>&1 || {
		echo "imapbench: mailctl user add failed:" >&2
		cat "$dir/mailctl.log" >&2
		exit 1
	}
fi
# The idle users idle0..idleN-1 share bench's password: their lines are
# bench's line with another name (the users file is a Dovecot passwd-file;
# hashing the same password a thousand times with mailctl takes seconds).
nusers=$((IDLE > 0 ? IDLE : 1)) # idle0 is also the empty-INBOX user of the login run
if ! grep -q "^idle$((nusers - 1))@example.test:" "$dir/users"; then
	grep -v '^idle[0-9]*@' "$dir/users" >"$dir/users.new" || true
	awk -F: -v n="$nusers" -v u="$USER_ADDR" '$1 == u {
		rest = substr($0, length(u) + 1)
		for (i = 0; i < n; i++)
			printf "idle%d@example.test%s\n", i, rest
	}' "$dir/users" >>"$dir/users.new"
	mv "$dir/users.new" "$dir/users"
fi

# imapd needs about five descriptors per idle session (socket, index,
# WAL, shared memory, inotify) and raises its soft limit to the hard one.
need=$((IDLE > IDLE_BIG ? IDLE * 6 + 1000 : IDLE_BIG * 6 + 1000))
hard=$(ulimit -H -n 2>/dev/null || echo unlimited)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$need" ]; then
	ulimit -n "$need" 2>/dev/null ||
		echo "imapbench: warning: only $hard file descriptors (hard limit); $need wanted" >&2
fi
soft=$(ulimit -S -n 2>/dev/null || echo unlimited)
if [ "$soft" != unlimited ] && [ "$soft" -lt "$need" ]; then
	ulimit -S -n "$need" 2>/dev/null || ulimit -S -n "$(ulimit -H -n)" 2>/dev/null || true
fi

# Start imapd; another process may take the free port first: try again.
start_imapd() {
	attempt=0
	while :; do
		"$BIN_DIR/imapd" -c "$conf" >>"$log" 2>&1 &
		pid=$!
		i=0
		while ! listening "$port" && kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do
			sleep 0.1
			i=$((i + 1))
		done
		if listening "$port" && kill -0 "$pid" 2>/dev/null; then
			return 0
		fi
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
		pid=
		attempt=$((attempt + 1))
		if [ $attempt -ge 3 ]; then
			echo "imapbench: imapd did not start listening on 127.0.0.1:$port; its log:" >&2
			tail -n 20 "$log" >&2
			exit 1
		fi
		port=$("$IMAPBENCH_BIN" -F)
		write_conf "$port"
	done
}

hz=$(getconf CLK_TCK)
cpu_ticks() {
	sed 's/.*) //' "/proc/$pid/stat" | awk '{ print $12 + $13 }'
}
status_kb() {
	awk -v k="$1:" '$1 == k { print $2 }' "/proc/$pid/status"
}
alive() {
	kill -0 "$pid" 2>/dev/null || {
		echo "imapbench: imapd died; its log:" >&2
		tail -n 20 "$log" >&2
		exit 1
	}
}
ib() {
	"$IMAPBENCH_BIN" -p "$port" -w "$PASS" "$@"
}

start_imapd
fstype=$(stat -f -c %T "$data" 2>/dev/null || echo unknown)
echo "imapd pid $pid on 127.0.0.1:$port; data in $dir ($fstype); $(nproc 2>/dev/null || echo '?') CPUs"

results=$dir/results
: >"$results"

# ------------------------------------------------------------- fill

maildir=$data/mail/example.test/bench
have=0
if [ -d "$maildir/cur" ]; then
	have=$(find "$maildir/cur" "$maildir/new" -type f 2>/dev/null | wc -l)
fi
fill_line=
if [ "$have" -lt "$MESSAGES" ]; then
	c0=$(cpu_ticks)
	fill_line=$(ib -m fill -u "$USER_ADDR" -n $((MESSAGES - have)) -c 2 -q 4) || {
		echo "$fill_line"
		echo "imapbench: filling the INBOX failed (log: $log)" >&2
		exit 1
	}
	c1=$(cpu_ticks)
	fill_line="$fill_line cpu_ticks=$((c1 - c0))"
fi
mbytes=$(du -sk "$maildir" 2>/dev/null | awk '{ printf "%.1f", $1 / 1024 }')
if [ -n "$fill_line" ]; then
	echo "$fill_line" | awk -v hz="$hz" -v mb="$mbytes" '{
		for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
		printf "INBOX filled by APPEND: %d messages (%s MB on disk) in %.1f s, %.0f/s, p50 %.2f ms, %.2f ms server CPU each\n",
			v["ok"], mb, v["secs"], v["rate"], v["p50_ms"], v["ok"] ? v["cpu_ticks"] * 1000 / hz / v["ok"] : 0
	}'
else
	echo "INBOX already holds $have messages ($mbytes MB)"
fi

# ------------------------------------------------------------- mix

failed=0
# mix_run LABEL CLIENTS [-x WEIGHTS]
mix_run() {
	label=$1
	clients=$2
	shift 2
	alive
	if out=$(ib -m mix -u "$USER_ADDR" -c "$clients" -d "$SECS" -W 1 -P "$pid" "$@"); then :; else
		failed=1
	fi
	printf '%s\n' "$out" | sed -n "s/^mix /mix label=$label /p" >>"$results"
	printf '%s\n' "$out" | sed -n "s/^op /op label=$label clients=$clients /p" >>"$results"
	printf '%s\n' "$out" | sed -n '1p'
	case "$out" in
	mix*) ;;
	*) echo "imapbench: the mix gave no result" >&2; exit 1 ;;
	esac
}
for clients in $CLIENTS; do
	if [ -n "$MIX" ]; then
		mix_run full "$clients" -x "$MIX"
	else
		mix_run full "$clients"
	fi
done
if [ "$LIGHT" -gt 0 ]; then
	mix_run light "$LIGHT" -x "$LIGHT_MIX"
fi

# ------------------------------------------------------------- logins

alive
login1=$(ib -m login -u "$USER_ADDR" -n "$LOGINS" -P "$pid") || failed=1
echo "$login1"
login2=$(ib -m login -u "$USER_ADDR" -n $((LOGINS / 2 > 0 ? LOGINS / 2 : 1)) -S -P "$pid") || failed=1
echo "$login2"
# A user with an empty mailbox: what the password check and session cost.
login3=$(ib -m login -u "idle0@example.test" -n "$LOGINS" -P "$pid") || failed=1
echo "$login3"

# ------------------------------------------------------------- idle memory

# idle_run USER COUNT LABEL: restart imapd (a clean heap), sample VmRSS,
# hold COUNT idling sessions, sample again; with WAKE=1 also time one
# APPEND's "* N EXISTS" to every session.
idle_run() {
	stop_imapd
	start_imapd
	sleep 0.5
	rss0=$(status_kb VmRSS)
	idle_out=$dir/idle.out
	: >"$idle_out"
	"$IMAPBENCH_BIN" -p "$port" -w "$PASS" -m idle -u "$1" -c "$2" -t 600 -P "$pid" \
		>"$idle_out" 2>"$dir/idle.err" &
	idle_pid=$!
	while ! grep -q '^idle_ready' "$idle_out" 2>/dev/null && kill -0 "$idle_pid" 2>/dev/null; do
		sleep 0.2
	done
	sleep 2 # let the sessions settle
	rss1=$(status_kb VmRSS)
	threads=$(status_kb Threads)
	fds=$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
	if [ "${WAKE:-0}" = 1 ]; then
		kill -USR1 "$idle_pid" 2>/dev/null || true
	else
		kill -TERM "$idle_pid" 2>/dev/null || true
	fi
	st=0
	wait "$idle_pid" || st=$?
	idle_pid=
	if [ $st != 0 ]; then
		cat "$dir/idle.err" >&2
		failed=1
	fi
	ready=$(sed -n 's/^idle_ready connections=\([0-9]*\).*/\1/p' "$idle_out")
	setup=$(sed -n 's/^idle_ready .*setup_secs=\([0-9.]*\).*/\1/p' "$idle_out")
	scpu=$(sed -n 's/^idle_ready .*cpu_ms=\([0-9-]*\).*/\1/p' "$idle_out")
	wake=$(sed -n 's/^idle_wake //p' "$idle_out")
	echo "idle label=$3 want=$2 ready=${ready:-0} rss0=$rss0 rss1=$rss1 threads=$threads fds=$fds setup=${setup:-0} cpu_ms=${scpu:-0} $wake" >>"$results"
	tail -n 1 "$results"
}
if [ "$IDLE" -gt 0 ]; then
	WAKE=0 idle_run 'idle%d@example.test' "$IDLE" users
fi
if [ "$IDLE_BIG" -gt 0 ]; then
	WAKE=1 idle_run "$USER_ADDR" "$IDLE_BIG" inbox
fi

# ------------------------------------------------------------- report

echo
echo "IMAP: INBOX of $MESSAGES messages ($mbytes MB); mix runs of $SECS s"
awk -v hz="$hz" '
BEGIN { printf "%7s  %-6s  %8s  %7s  %7s  %9s\n", "clients", "mix", "ops/s", "p50 ms", "p99 ms", "cpu ms/op" }
$1 == "mix" {
	for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
	cpu = v["ops"] > 0 && v["cpu_ms"] >= 0 ? v["cpu_ms"] / v["ops"] : 0
	note = v["errors"] > 0 ? sprintf("  (%d errors)", v["errors"]) : ""
	printf "%7d  %-6s  %8.1f  %7.2f  %7.2f  %9.2f%s\n", v["clients"], v["label"], v["rate"], v["p50_ms"], v["p99_ms"], cpu, note
	delete v
}' "$results"
echo "  (full: the whole mix; light: without the FROM, SUBJECT and BODY searches)"
echo "latency by operation, p50/p99 ms (weight of 100 in the full mix; n = operations in the run; hits = average matches):"
awk -v list="$CLIENTS" -v light="$LIGHT" '
BEGIN {
	nc = split(list, cl, " ")
	for (k = 1; k <= nc; k++) { key[k] = "full " cl[k]; head[k] = cl[k] " client" (cl[k] == 1 ? "" : "s") }
	if (light > 0) { nc++; key[nc] = "light " light; head[nc] = light " clients, light" }
}
$1 == "op" {
	for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
	if (!(v["name"] in seen)) { seen[v["name"]] = 1; order[++no] = v["name"] }
	if (v["label"] == "full") w[v["name"]] = v["weight"]
	c = v["label"] " " v["clients"]
	cell[v["name"], c] = sprintf("%.1f/%.1f (n=%d)", v["p50_ms"], v["p99_ms"], v["n"])
	if ("hits" in v && v["label"] == "full") hits[v["name"]] = v["hits"]
	delete v
}
END {
	printf "  %-14s %6s", "operation", "weight"
	for (k = 1; k <= nc; k++) printf "  %22s", head[k]
	printf "  %s\n", "hits"
	for (j = 1; j <= no; j++) {
		o = order[j]
		printf "  %-14s %6s", o, w[o]
		for (k = 1; k <= nc; k++) printf "  %22s", ((o, key[k]) in cell) ? cell[o, key[k]] : "-"
		printf "  %s\n", (o in hits) ? hits[o] : ""
	}
}' "$results"
for l in "1 $login1" "1 $login2" "0 $login3"; do
	echo "$l" | awk -v m="$MESSAGES" '$2 == "login" {
		for (i = 3; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
		what = v["select"] == 1 ? "LOGIN + SELECT INBOX + LOGOUT" : "LOGIN + LOGOUT"
		box = $1 == 1 ? m " messages" : "an empty INBOX"
		printf "login: %.1f ms server CPU each (%s, %d sessions, %s; p50 %.2f ms, p99 %.2f ms)\n",
			v["ok"] ? v["cpu_ms"] / v["ok"] : 0, what, v["ok"], box, v["p50_ms"], v["p99_ms"]
	}'
done
awk '$1 == "idle" {
	for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
	what = v["label"] == "users" ? "one user each, small INBOXes" : "all on the big INBOX"
	per = v["ready"] > 0 ? (v["rss1"] - v["rss0"]) / v["ready"] : 0
	cpu = v["ready"] > 0 ? v["cpu_ms"] / v["ready"] : 0
	printf "idle: %d clients in IDLE (%s): %.1f MB RSS (%.0f KB each; %.1f -> %.1f MB), %d threads, %d fds; set up in %.1f s, %.1f ms server CPU each\n",
		v["ready"], what, (v["rss1"] - v["rss0"]) / 1024, per, v["rss0"] / 1024, v["rss1"] / 1024,
		v["threads"], v["fds"], v["setup"], cpu
	if ("max_ms" in v)
		printf "      one APPEND told all %d idling clients \"* N EXISTS\" within %.0f ms (p50 %.0f ms)\n", v["n"], v["max_ms"], v["p50_ms"]
	delete v
}' "$results"
errs=$(grep -c -E ' (error|warn): ' "$log" || true)
if [ "$errs" -gt 0 ]; then
	echo "imapd logged $errs errors/warnings, the first:"
	grep -E ' (error|warn): ' "$log" | head -n 3 | cut -c1-300
fi
echo "IMAP part: $(($(date +%s) - started_at)) s"
if [ "$failed" != 0 ]; then
	echo "imapbench: some operations or sessions failed (see above; log: $log)" >&2
	exit 1
fi
