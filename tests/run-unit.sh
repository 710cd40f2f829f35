#!/bin/sh
# Run cmocka unit test binaries; print per-binary results and a count line
# "unit: P passed, F failed" (P/F count test cases, from cmocka's output).
pass=0; fail=0; bad=""
for t in "$@"; do
	out=$("$t" 2>&1); rc=$?
	p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | awk '{s+=$1} END {print s+0}')
	f=$(printf '%s\n' "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | awk '{s+=$1} END {print s+0}')
	if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi   # crashed
	pass=$((pass + p)); fail=$((fail + f))
	if [ "$f" -ne 0 ]; then printf '%s\n' "$out"; bad="$bad $(basename $t)"; fi
	printf '  %-40s %3d passed %3d failed\n' "$(basename $t)" "$p" "$f"
done
echo "unit: $pass passed, $fail failed${bad:+ (}${bad# }${bad:+)}"
[ $fail -eq 0 ]
