#!/bin/sh
# make check: unit tests, then integration tests, then one summary line.
# Env: BIN (binaries), PYTHON (Debian's python3), unit test binaries as args.
: "${PYTHON:=/usr/bin/python3}" "${BIN:=bin}"
log=$(mktemp); trap 'rm -f "$log"' EXIT
echo "== unit tests"
sh tests/run-unit.sh "$@" | tee "$log"
urc=$?
unit=$(tail -n 1 "$log")
upass=$(echo "$unit" | sed -n 's/^unit: \([0-9]*\) passed, \([0-9]*\) failed.*/\1/p')
ufail=$(echo "$unit" | sed -n 's/^unit: \([0-9]*\) passed, \([0-9]*\) failed.*/\2/p')
echo "== integration tests"
# pytest's own exit status (a pipeline's is tee's), and its counts from
# its last line only ("1 failed, 208 passed in 171.61s"): the logs it
# prints for a failed test may contain such words too.
{ BIN_DIR=$(cd "$BIN" && pwd) "$PYTHON" -m pytest -q -p no:cacheprovider -rfE tests/integration
  echo $? >"$log.rc"; } | tee "$log"
irc=$(cat "$log.rc" 2>/dev/null || echo 1); rm -f "$log.rc"
last=$(grep -E '^=* ?[0-9]+ (passed|failed|error).* in [0-9.]+s' "$log" | tail -n 1)
ipass=$(echo "$last" | grep -Eo '[0-9]+ passed' | cut -d' ' -f1)
ifail=$(echo "$last" | grep -Eo '[0-9]+ (failed|error|errors)' | awk '{s+=$1} END {print s+0}')
echo "SUMMARY: unit ${upass:-0} passed, ${ufail:-0} failed; integration ${ipass:-0} passed, ${ifail:-0} failed"
[ "${ufail:-1}" = 0 ] && [ $irc -eq 0 ] && [ -n "$upass" ]
