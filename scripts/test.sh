#!/usr/bin/env bash
# The test command: installs dependencies, then runs go vet and the full test
# suite (unit + integration tests against real Dex, Redis, Chromium) with the
# race detector, then a bounded fuzz phase: every fuzz target (func FuzzX in
# a *_test.go file) runs for FUZZTIME (default 10s; FUZZTIME=0 skips the
# phase), one after the other. Exit code: the tests' exit code, else the
# fuzz phase's, else go vet's. Extra arguments are passed to go test (e.g.
# -run TestX -v), not to the fuzz runs.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	export PATH="$PATH:/usr/local/go/bin"
fi

start=$(date +%s)
echo "== scripts/install-deps.sh"
scripts/install-deps.sh

export OIDC_SESSION_DEX="$ROOT/.bin/dex"
# Browser tests keep their screenshots here (the demo's walk-through among them).
export OIDC_SESSION_SCREENSHOTS="${OIDC_SESSION_SCREENSHOTS:-$ROOT/.bin/screenshots}"
export CGO_ENABLED=1 # required by -race

echo "== go vet ./..."
vet_rc=0
go vet ./... || vet_rc=$?

log="$ROOT/.bin/test-output.log"
echo "== go test -race -count=1 -timeout 25m ./... $* (output also in .bin/test-output.log)"
set +e
go test -race -count=1 -timeout 25m ./... "$@" 2>&1 | tee "$log"
test_rc=${PIPESTATUS[0]}
set -e

# Fuzz phase: each target alone (-run '^$' skips the other tests), bounded by
# FUZZTIME. A failing input is written to the package's testdata/fuzz/.
fuzztime=${FUZZTIME:-10s}
fuzz_rc=0
fuzz_report=""
if [ "$fuzztime" != "0" ]; then
	while read -r file; do
		pkg=$(dirname "$file")
		[ "$pkg" = . ] || pkg="./$pkg"
		for target in $(grep -oE '^func Fuzz[A-Za-z0-9_]*' "$file" | sed 's/^func //'); do
			flog="$ROOT/.bin/fuzz-$target.log"
			echo "== go test -run '^\$' -fuzz '^$target\$' -fuzztime $fuzztime $pkg"
			status=ok
			if ! go test -run '^$' -fuzz "^$target\$" -fuzztime "$fuzztime" "$pkg" >"$flog" 2>&1; then
				# Go's fuzz coordinator can fail a target with a bare "context
				# deadline exceeded" as -fuzztime runs out (golang/go#75804, fixed
				# in Go 1.27): no input failed then. Such a run is tried once more;
				# anything else (a failing input, a panic) fails at once.
				if grep -q 'context deadline exceeded' "$flog" && ! grep -qE 'Failing input written|panic:|_test\.go:[0-9]+:' "$flog"; then
					echo "   (deadline flake of the fuzz coordinator, golang/go#75804: running $target again)"
					if go test -run '^$' -fuzz "^$target\$" -fuzztime "$fuzztime" "$pkg" >"$flog" 2>&1; then
						status="ok (2nd run)"
					else
						status=FAILED
						fuzz_rc=1
					fi
				else
					status=FAILED
					fuzz_rc=1
				fi
			fi
			execs=$(grep -E 'fuzz: elapsed' "$flog" | tail -1 | sed -nE 's/.*execs: ([0-9]+).*/\1/p')
			[ "$status" != FAILED ] || { grep -vE '^fuzz: elapsed' "$flog" | tail -20 || true; }
			fuzz_report+="$(printf '  %-30s %-28s %10s execs  %s' "$target" "$pkg" "${execs:-?}" "$status")"$'\n'
		done
	done < <({ git ls-files --cached --others --exclude-standard '*_test.go' 2>/dev/null ||
		find . -path ./.bin -prune -o -name '*_test.go' -print | sed 's|^\./||'; } | xargs grep -lE '^func Fuzz' | sort)
fi

elapsed=$(($(date +%s) - start))
ok_pkgs=$(grep -cE '^ok[[:space:]]' "$log" || true)
notest_pkgs=$(grep -cE '^\?[[:space:]].*\[no test files\]' "$log" || true)
failed_tests=$(grep -E '^[[:space:]]*--- FAIL:' "$log" | sed -E 's/^[[:space:]]*--- FAIL: ([^ ]+).*/\1/' | sort -u || true)
skipped=$(grep -cE '^[[:space:]]*--- SKIP:' "$log" || true)

echo
echo "================ test summary ================"
echo "go vet:            $([ "$vet_rc" -eq 0 ] && echo ok || echo "FAILED (exit $vet_rc)")"
echo "packages ok:       $ok_pkgs"
failed_pkgs=$(grep -E '^FAIL[[:space:]]' "$log" | awk '{print $2}' | sort -u | tr '\n' ' ' || true)
echo "packages failed:   ${failed_pkgs:-none}"
echo "packages no tests: $notest_pkgs"
echo "tests skipped:     $skipped"
if [ -n "$failed_tests" ]; then
	echo "failed tests:"
	echo "$failed_tests" | sed 's/^/  /'
fi
if [ "$fuzztime" != "0" ]; then
	echo "fuzz ($fuzztime each):  $([ "$fuzz_rc" -eq 0 ] && echo ok || echo FAILED)"
	printf '%s' "$fuzz_report"
fi
shots=$(find "$OIDC_SESSION_SCREENSHOTS" -name '*.png' 2>/dev/null | wc -l)
echo "screenshots:       $shots in ${OIDC_SESSION_SCREENSHOTS#"$ROOT"/}"
echo "duration:          ${elapsed}s"
rc=$test_rc
if [ "$rc" -eq 0 ] && [ "$fuzz_rc" -ne 0 ]; then
	rc=$fuzz_rc
fi
if [ "$rc" -eq 0 ] && [ "$vet_rc" -ne 0 ]; then
	rc=$vet_rc
fi
echo "result:            $([ "$rc" -eq 0 ] && echo PASS || echo "FAIL (exit $rc)")"
echo "=============================================="
exit "$rc"
