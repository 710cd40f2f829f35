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
BIN_DIR=$(cd "$BIN" && pwd) "$PYTHON" -m pytest -q -p no:cacheprovider -rfE tests/integration | tee "$log"
irc=$?
ipass=$(grep -Eo '[0-9]+ passed' "$log" | tail -n 1 | cut -d' ' -f1)
ifail=$(grep -Eo '[0-9]+ (failed|error|errors)' "$log" | awk '{s+=$1} END {print s+0}')
echo "SUMMARY: unit ${upass:-0} passed, ${ufail:-0} failed; integration ${ipass:-0} passed, ${ifail:-0} failed"
[ "${ufail:-1}" = 0 ] && [ $irc -eq 0 ] && [ -n "$upass" ]
