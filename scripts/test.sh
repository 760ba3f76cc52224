#!/usr/bin/env bash
# The test command: installs dependencies, then runs go vet and the full test
# suite (unit + integration tests against real Dex, Redis, Chromium) with the
# race detector. Exit code: the tests' exit code (or go vet's when only vet
# failed). Extra arguments are passed to go test (e.g. -run TestX -v).
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
echo "duration:          ${elapsed}s"
rc=$test_rc
if [ "$rc" -eq 0 ] && [ "$vet_rc" -ne 0 ]; then
	rc=$vet_rc
fi
echo "result:            $([ "$rc" -eq 0 ] && echo PASS || echo "FAIL (exit $rc)")"
echo "=============================================="
exit "$rc"
