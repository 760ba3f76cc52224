#!/usr/bin/env bash
# Installs what the tests and the demo need. Idempotent: does nothing when
# everything is present.
#   - Debian packages (only when a binary is missing; apt-get update once):
#     redis-server redis-sentinel redis-tools chromium wrk prometheus (runs
#     the dashboard's queries in dashboards/), plus gcc (needed
#     by go test -race) and curl (used by scripts/demo.sh).
#   - .bin/dex, built from the pinned Dex in tools/dex (when missing or when
#     tools/dex/go.mod or go.sum is newer than the binary).
#   - .bin/zitadel-op, the example OpenID Provider of github.com/zitadel/oidc
#     (pinned in tools/zitadel), rebuilt the same way when tools/zitadel
#     changes.
#   - .bin/oauth2-proxy, the pinned oauth2-proxy of tools/bench (the
#     benchmarks' baseline and the maker of the sessions that
#     internal/oauth2proxy's tests read), rebuilt when tools/bench changes.
#   - internal/testidp/oidcprovider/node_modules: oidc-provider (npm, pinned
#     in its package.json and package-lock.json), installed with npm ci when
#     missing or older than the lock file. Needs node >= 20.19 and npm
#     (present on the machine image; Debian's own nodejs is too old).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

log() { echo "[install-deps] $*"; }
die() { echo "[install-deps] ERROR: $*" >&2; exit 1; }

if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	export PATH="$PATH:/usr/local/go/bin"
fi
command -v go >/dev/null 2>&1 || die "Go is not installed (expected Go >= 1.26, e.g. in /usr/local/go/bin)"

# --- Debian packages --------------------------------------------------------
# binary:package pairs
wanted=(
	redis-server:redis-server
	redis-sentinel:redis-sentinel
	redis-cli:redis-tools
	chromium:chromium
	wrk:wrk
	prometheus:prometheus
	gcc:gcc
	curl:curl
)
missing=()
for pair in "${wanted[@]}"; do
	bin=${pair%%:*}
	pkg=${pair#*:}
	if ! command -v "$bin" >/dev/null 2>&1; then
		missing+=("$pkg")
	fi
done

if [ ${#missing[@]} -gt 0 ]; then
	log "missing packages: ${missing[*]}"
	command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install manually: ${missing[*]}"
	SUDO=()
	if [ "$(id -u)" -ne 0 ]; then
		command -v sudo >/dev/null 2>&1 || die "not root and no sudo; install manually: ${missing[*]}"
		SUDO=(sudo)
	fi
	# The tests start their own Redis on random ports: keep the package
	# scripts from starting a system-wide redis (no-op without a service
	# manager, but harmless).
	policy_created=""
	if [ ! -e /usr/sbin/policy-rc.d ] && [ "$(id -u)" -eq 0 ]; then
		log "temporarily creating /usr/sbin/policy-rc.d so packages do not start services"
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		policy_created=1
	fi
	cleanup_policy() { if [ -n "$policy_created" ]; then rm -f /usr/sbin/policy-rc.d; fi; }
	trap cleanup_policy EXIT
	log "apt-get update"
	"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
	log "apt-get install -y ${missing[*]}"
	"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
	cleanup_policy
	policy_created=""
	for pair in "${wanted[@]}"; do
		command -v "${pair%%:*}" >/dev/null 2>&1 || die "${pair%%:*} still missing after installing ${pair#*:}"
	done
else
	log "apt packages: all present (redis-server redis-sentinel redis-tools chromium wrk prometheus gcc curl)"
fi

# --- Dex ---------------------------------------------------------------------
dex_bin="$ROOT/.bin/dex"
mkdir -p "$ROOT/.bin"
if [ ! -x "$dex_bin" ] || [ tools/dex/go.mod -nt "$dex_bin" ] || [ tools/dex/go.sum -nt "$dex_bin" ]; then
	log "building Dex (pinned in tools/dex/go.mod) into .bin/dex; this takes a few minutes the first time"
	(cd tools/dex && go build -o ../../.bin/dex github.com/dexidp/dex/cmd/dex)
	[ -x "$dex_bin" ] || die "Dex build produced no $dex_bin"
	touch "$dex_bin" # go build may keep an identical old file (and its mtime)
	log "built $("$dex_bin" version 2>&1 | head -n1)"
else
	log "dex: .bin/dex is up to date"
fi

# --- zitadel example OP -------------------------------------------------------
zop_bin="$ROOT/.bin/zitadel-op"
if [ ! -x "$zop_bin" ] || [ tools/zitadel/go.mod -nt "$zop_bin" ] || [ tools/zitadel/go.sum -nt "$zop_bin" ] || [ tools/zitadel/main.go -nt "$zop_bin" ]; then
	log "building the zitadel example OP (pinned in tools/zitadel/go.mod) into .bin/zitadel-op"
	(cd tools/zitadel && go build -o ../../.bin/zitadel-op .)
	[ -x "$zop_bin" ] || die "zitadel OP build produced no $zop_bin"
	touch "$zop_bin"
	log "built .bin/zitadel-op"
else
	log "zitadel-op: .bin/zitadel-op is up to date"
fi

# --- oauth2-proxy ---------------------------------------------------------------
o2p_bin="$ROOT/.bin/oauth2-proxy"
if [ ! -x "$o2p_bin" ] || [ tools/bench/go.mod -nt "$o2p_bin" ] || [ tools/bench/go.sum -nt "$o2p_bin" ]; then
	log "building oauth2-proxy (pinned in tools/bench/go.mod) into .bin/oauth2-proxy"
	(cd tools/bench && go build -o ../../.bin/oauth2-proxy github.com/oauth2-proxy/oauth2-proxy/v7)
	[ -x "$o2p_bin" ] || die "oauth2-proxy build produced no $o2p_bin"
	touch "$o2p_bin"
	log "built .bin/oauth2-proxy"
else
	log "oauth2-proxy: .bin/oauth2-proxy is up to date"
fi

# --- oidc-provider (npm) --------------------------------------------------------
op_dir="$ROOT/internal/testidp/oidcprovider"
# npm writes node_modules/.package-lock.json on every install: its mtime says
# when node_modules was last brought in line with the lock file.
op_stamp="$op_dir/node_modules/.package-lock.json"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	log "WARNING: node/npm not found: the oidc-provider tests will fail in CI (install Node.js >= 20.19 with npm)"
elif [ ! -f "$op_stamp" ] || [ "$op_dir/package-lock.json" -nt "$op_stamp" ] || [ "$op_dir/package.json" -nt "$op_stamp" ]; then
	log "installing oidc-provider into internal/testidp/oidcprovider/node_modules (npm ci)"
	(cd "$op_dir" && npm ci --no-audit --no-fund --loglevel=error)
	[ -f "$op_stamp" ] || die "npm ci left no $op_stamp"
	touch "$op_stamp"
	log "installed oidc-provider $(node -p "require('$op_dir/node_modules/oidc-provider/package.json').version")"
else
	log "oidc-provider: node_modules is up to date"
fi

log "done"
