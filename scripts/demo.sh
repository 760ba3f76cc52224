#!/usr/bin/env bash
# The demo: Dex (OIDC provider) on http://127.0.0.1:5556/dex and Caddy with
# the oidc_session plugin on http://localhost:9080/ (scripts/demo/Caddyfile,
# pages in scripts/demo/site): a public landing page, a protected area, an
# API for browsers and bearer tokens. Sign in as admin@example.com /
# password. Ctrl-C stops everything.
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
ports="5556 9080 2999"
[ "$STORE" != redis ] || ports="$ports 6399"
for port in $ports; do
	if port_busy "$port"; then
		die "127.0.0.1:$port is already in use (another demo running?)"
	fi
done

WORK=$(mktemp -d -t oidc-session-demo.XXXXXX)
DEX_PID=""
CADDY_PID=""
REDIS_PID=""
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	for pid in $CADDY_PID $DEX_PID $REDIS_PID; do
		if kill -0 "$pid" 2>/dev/null; then
			kill "$pid" 2>/dev/null || true
		fi
	done
	for pid in $CADDY_PID $DEX_PID $REDIS_PID; do
		wait "$pid" 2>/dev/null || true
	done
	if [ "$rc" -ne 0 ] && [ "$rc" -ne 130 ] && [ "$rc" -ne 143 ] && [ -s "$WORK/dex.log" ]; then
		echo "[demo] last lines of the Dex log:" >&2
		tail -n 20 "$WORK/dex.log" >&2 || true
	fi
	rm -rf "$WORK"
	log "stopped"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Password "password", bcrypt cost 10.
cat >"$WORK/dex.yaml" <<'EOF'
issuer: http://127.0.0.1:5556/dex

storage:
  type: memory

web:
  http: 127.0.0.1:5556

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
  - email: admin@example.com
    hash: "$2a$10$mG0TMz.ZLyBr3qD8A/n71.jyKvW28gbYKzXrgsYYhrcynJec3hsBG"
    username: admin
    userID: 3f1c2b7e-8d4a-4c59-b6e2-7a9d0f1e2c3b
    emailVerified: true

staticClients:
  - id: demo
    name: oidc_session demo
    secret: demo-secret-demo-secret
    redirectURIs:
      - http://localhost:9080/oauth2/callback
EOF

log "starting Dex (log: $WORK/dex.log)"
DEX_EXPAND_ENV=false .bin/dex serve "$WORK/dex.yaml" >"$WORK/dex.log" 2>&1 &
DEX_PID=$!

discovery=http://127.0.0.1:5556/dex/.well-known/openid-configuration
for i in $(seq 1 100); do
	if curl -fsS -o /dev/null "$discovery" 2>/dev/null; then
		break
	fi
	kill -0 "$DEX_PID" 2>/dev/null || die "Dex exited during startup"
	[ "$i" -lt 100 ] || die "Dex did not answer $discovery within 20s"
	sleep 0.2
done
log "Dex is up: http://127.0.0.1:5556/dex"

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
  Sign in:   admin@example.com  /  password

  The API with a bearer token from Dex (valid 10 minutes):
    curl -H "Authorization: Bearer $ACCESS_TOKEN" http://localhost:9080/api/whoami
  and without one (401):
    curl -i http://localhost:9080/api/whoami

  Stop:      press Ctrl-C
==============================================================

EOF

# Run until Ctrl-C or until one of the two exits.
set +e
wait -n "$DEX_PID" "$CADDY_PID" $REDIS_PID
rc=$?
set -e
kill -0 "$DEX_PID" 2>/dev/null || die "Dex exited unexpectedly (exit $rc)"
[ -z "$REDIS_PID" ] || kill -0 "$REDIS_PID" 2>/dev/null || die "redis-server exited unexpectedly (exit $rc)"
die "Caddy exited unexpectedly (exit $rc)"
