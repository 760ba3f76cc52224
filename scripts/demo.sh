#!/usr/bin/env bash
# The demo: two Dex instances (OIDC providers: the staff's on
# http://127.0.0.1:5556/dex, the partners' on :5557) and Caddy with
# the oidc_session plugin on http://localhost:9080/ (scripts/demo/Caddyfile,
# pages in scripts/demo/site): a public landing page, a protected area, an
# API for browsers and bearer tokens, a sign-in chooser. Sign in as
# admin@example.com or partner@partner.example, password "password".
# Ctrl-C stops everything.
#
#   scripts/demo.sh [--store cookie|memory|redis]
#
# --store picks the session store (default cookie); with memory or redis the
# protected area lists the live sessions and can end them. redis starts a
# redis-server on 127.0.0.1:6399.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	export PATH="$PATH:/usr/local/go/bin"
fi

log() { echo "[demo] $*"; }
die() { echo "[demo] ERROR: $*" >&2; exit 1; }

usage() { echo "usage: scripts/demo.sh [--store cookie|memory|redis]" >&2; exit 2; }
STORE=cookie
while [ $# -gt 0 ]; do
	case $1 in
	--store) [ $# -ge 2 ] || usage; STORE=$2; shift 2 ;;
	--store=*) STORE=${1#--store=}; shift ;;
	-h | --help) usage ;;
	*) echo "[demo] unknown argument: $1" >&2; usage ;;
	esac
done
case $STORE in
cookie | memory | redis) ;;
*) die "--store must be cookie, memory or redis, not '$STORE'" ;;
esac
export OIDC_SESSION_DEMO_STORE=$STORE

scripts/install-deps.sh

log "building Caddy with the oidc_session plugin into .bin/caddy"
go build -o .bin/caddy ./cmd/caddy

# Demo-only secret (40 chars); set OIDC_SESSION_DEMO_SECRET to override.
export OIDC_SESSION_DEMO_SECRET="${OIDC_SESSION_DEMO_SECRET:-demo-only-cookie-secret-0123456789abcdef}"

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
ports="5556 5557 9080 2999"
[ "$STORE" != redis ] || ports="$ports 6399"
for port in $ports; do
	if port_busy "$port"; then
		die "127.0.0.1:$port is already in use (another demo running?)"
	fi
done

WORK=$(mktemp -d -t oidc-session-demo.XXXXXX)
DEX_PIDS=""
CADDY_PID=""
REDIS_PID=""
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	for pid in $CADDY_PID $DEX_PIDS $REDIS_PID; do
		if kill -0 "$pid" 2>/dev/null; then
			kill "$pid" 2>/dev/null || true
		fi
	done
	for pid in $CADDY_PID $DEX_PIDS $REDIS_PID; do
		wait "$pid" 2>/dev/null || true
	done
	if [ "$rc" -ne 0 ] && [ "$rc" -ne 130 ] && [ "$rc" -ne 143 ]; then
		for dexlog in "$WORK"/dex-*.log; do
			[ -s "$dexlog" ] || continue
			echo "[demo] last lines of $(basename "$dexlog"):" >&2
			tail -n 20 "$dexlog" >&2 || true
		done
	fi
	rm -rf "$WORK"
	log "stopped"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# dex_config PORT EMAIL USERNAME USERID CLIENT_ID CLIENT_SECRET REDIRECT_URI
# writes the config of one Dex: memory storage, one user whose password is
# "password" (bcrypt cost 10), one client.
dex_config() {
	cat <<EOF
issuer: http://127.0.0.1:$1/dex

storage:
  type: memory

web:
  http: 127.0.0.1:$1

oauth2:
  skipApprovalScreen: true
  # Lets the script get an access token for the API example with the
  # password grant (a shortcut for the demo; real API clients log in
  # with the code flow or use client credentials).
  passwordConnector: local

expiry:
  idTokens: 10m
  refreshTokens:
    reuseInterval: 3s
    validIfNotUsedFor: 168h
    absoluteLifetime: 720h

enablePasswordDB: true

staticPasswords:
  - email: $2
    hash: "\$2a\$10\$mG0TMz.ZLyBr3qD8A/n71.jyKvW28gbYKzXrgsYYhrcynJec3hsBG"
    username: $3
    userID: $4
    emailVerified: true

staticClients:
  - id: $5
    name: oidc_session demo
    secret: $6
    redirectURIs:
      - $7
EOF
}

# start_dex NAME PORT: starts the Dex of $WORK/NAME.yaml and waits for it.
start_dex() {
	DEX_EXPAND_ENV=false .bin/dex serve "$WORK/$1.yaml" >"$WORK/$1.log" 2>&1 &
	DEX_PIDS="$DEX_PIDS $!"
	local discovery=http://127.0.0.1:$2/dex/.well-known/openid-configuration
	for i in $(seq 1 100); do
		if curl -fsS -o /dev/null "$discovery" 2>/dev/null; then
			break
		fi
		kill -0 "$!" 2>/dev/null || die "Dex ($1) exited during startup"
		[ "$i" -lt 100 ] || die "Dex ($1) did not answer $discovery within 20s"
		sleep 0.2
	done
	log "Dex ($1) is up: http://127.0.0.1:$2/dex (log: $WORK/$1.log)"
}

# Two identity providers, so that signing in shows the chooser: the staff's
# (the first provider, on the site's plain callback URL) and the partners'
# (its own callback URL, ?provider=partners).
dex_config 5556 admin@example.com admin 3f1c2b7e-8d4a-4c59-b6e2-7a9d0f1e2c3b \
	demo demo-secret-demo-secret http://localhost:9080/oauth2/callback >"$WORK/dex-staff.yaml"
dex_config 5557 partner@partner.example partner 8b0e6a52-31c4-4d7e-9f0a-5c2d7e1b4a69 \
	demo-partners partners-secret-partners-secret "http://localhost:9080/oauth2/callback?provider=partners" >"$WORK/dex-partners.yaml"
start_dex dex-staff 5556
start_dex dex-partners 5557

if [ "$STORE" = redis ]; then
	log "starting redis-server on 127.0.0.1:6399 (log: $WORK/redis.log)"
	redis-server --bind 127.0.0.1 --port 6399 --save "" --appendonly no --dir "$WORK" \
		--logfile "$WORK/redis.log" &
	REDIS_PID=$!
	for i in $(seq 1 50); do
		if redis-cli -p 6399 ping >/dev/null 2>&1; then
			break
		fi
		[ "$i" -lt 50 ] || die "redis-server did not answer on 127.0.0.1:6399 within 10s"
		sleep 0.2
	done
fi

log "starting Caddy (session store: $STORE)"
.bin/caddy run --config scripts/demo/Caddyfile --adapter caddyfile &
CADDY_PID=$!

for i in $(seq 1 100); do
	if curl -sS -o /dev/null http://localhost:9080/ 2>/dev/null; then
		break
	fi
	kill -0 "$CADDY_PID" 2>/dev/null || die "Caddy exited during startup (see its output above)"
	[ "$i" -lt 100 ] || die "Caddy did not answer on http://localhost:9080/ within 20s"
	sleep 0.2
done

# An access token for the API example (Dex's password grant; valid 10 min).
token_json=$(curl -fsS -u demo:demo-secret-demo-secret -d grant_type=password -d scope="openid email profile" \
	--data-urlencode username=admin@example.com -d password=password http://127.0.0.1:5556/dex/token) ||
	die "Dex refused the password grant for the API example token"
ACCESS_TOKEN=$(sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p' <<<"$token_json")
[ -n "$ACCESS_TOKEN" ] || die "no access_token in Dex's token answer"

cat <<EOF

==============================================================
  oidc_session demo is running (session store: $STORE)

  Open:      http://localhost:9080/
  Sign in:   Staff:    admin@example.com        /  password
             Partners: partner@partner.example  /  password

  The API with a bearer token from Dex (valid 10 minutes):
    curl -H "Authorization: Bearer $ACCESS_TOKEN" http://localhost:9080/api/whoami
  and without one (401):
    curl -i http://localhost:9080/api/whoami

  Stop:      press Ctrl-C
==============================================================

EOF

# Run until Ctrl-C or until one of the two exits.
set +e
wait -n $DEX_PIDS "$CADDY_PID" $REDIS_PID
rc=$?
set -e
for pid in $DEX_PIDS; do
	kill -0 "$pid" 2>/dev/null || die "a Dex exited unexpectedly (exit $rc)"
done
[ -z "$REDIS_PID" ] || kill -0 "$REDIS_PID" 2>/dev/null || die "redis-server exited unexpectedly (exit $rc)"
die "Caddy exited unexpectedly (exit $rc)"
