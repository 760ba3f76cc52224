#!/usr/bin/env bash
# Load benchmark of authenticated requests, written to BENCHMARKS.md.
#
# Everything runs on loopback (127.0.0.1): Dex (a real OIDC provider), the
# zitadel example OP (opaque access tokens), one redis-server, oauth2-proxy
# (pinned in tools/bench) and one Caddy process per configuration:
#   plain       Caddy answering `respond "ok" 200`: the limit, sent the cookie
#               store row's Cookie header
#   plain-ticket the same, sent the Redis row's (ticket-sized) Cookie header:
#               the limit for the rows with a ticket cookie
#   plain-bearer the same, sent an Authorization header of the bearer-jwt
#               row's size: the limit for the bearer rows
#   cookie      oidc_session, cookie store
#   memory      oidc_session, memory store (when this Caddy has it)
#   redis       oidc_session, Redis store
#   bearer-jwt  oidc_session with bearer, sent a Dex access token (a JWT)
#   bearer-introspect oidc_session with bearer and introspection, sent a
#               zitadel opaque access token (padded to the same request size)
#   o2p-cookie  Caddy forward_auth to oauth2-proxy, its cookie store
#   o2p-redis   Caddy forward_auth to oauth2-proxy, its Redis store
# Each session configuration is logged in once through Dex's login form (curl
# with a cookie jar, as a browser would); each bearer one gets its access
# token from a code flow at its IdP (curl, as an API client's login would);
# an authenticated GET must answer 200, then wrk replays that session cookie
# or token: `wrk -t2 -c50 -d$DURATION`, the
# configurations interleaved round after round (ROUNDS rounds), the median
# per configuration reported. Then the rows with N distinct sessions
# (scripts/bench-scale.sh: SCALE_N, default "1 10000 100000", 0 to leave
# them out; SCALE_ROUNDS, default 3: about 15 minutes more with the default
# DURATION), then the Go benchmarks
# (go test -run XXX -bench . -benchmem ./sessions/ . ./integration/).
#
# Environment: ROUNDS (default 3), DURATION (wrk -d, default 10s: about 6
# minutes in all without the rows with N distinct sessions), THREADS (2),
# CONNECTIONS (50), OUT (BENCHMARKS.md), GO_BENCH=0 to leave out the Go
# benchmarks, ONLY="row ..." to run only these rows (a plain row needs the
# row whose request it copies: plain cookie, plain-ticket redis,
# plain-bearer bearer-jwt; so does bearer-introspect), PROFILE_DIR=dir to
# keep a CPU profile of each row's Caddy during each of its runs
# (dir/ROW-ROUND.pprof, for go tool pprof).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	export PATH="$PATH:/usr/local/go/bin"
fi

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-50}
OUT=${OUT:-BENCHMARKS.md}
GO_BENCH=${GO_BENCH:-1}

log() { echo "[bench $(date +%H:%M:%S)] $*"; }
die() { echo "[bench] ERROR: $*" >&2; exit 1; }

[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer, not '$ROUNDS'"
[[ $THREADS =~ ^[1-9][0-9]*$ ]] || die "THREADS must be a positive integer"
[[ $CONNECTIONS =~ ^[1-9][0-9]*$ ]] || die "CONNECTIONS must be a positive integer"
case $DURATION in
*s) secs=${DURATION%s} ;;
*m) secs=$((${DURATION%m} * 60)) ;;
*) secs=$DURATION ;;
esac
[[ $secs =~ ^[1-9][0-9]*$ ]] || die "DURATION must look like 10s, 2m or 30, not '$DURATION'"
[ "$secs" -le 600 ] || die "DURATION above 10 minutes per run; refusing"
DURATION="${secs}s"

# --- tools ---------------------------------------------------------------------
scripts/install-deps.sh # wrk, redis-server, curl; builds .bin/dex
for bin in wrk redis-server redis-cli curl timeout awk; do
	command -v "$bin" >/dev/null 2>&1 || die "$bin not found"
done
[ -x .bin/zitadel-op ] || die ".bin/zitadel-op not found (scripts/install-deps.sh builds it)"

log "building .bin/caddy (./cmd/caddy)"
go build -o .bin/caddy ./cmd/caddy
log "building .bin/oauth2-proxy (pinned in tools/bench/go.mod)"
(cd tools/bench && go build -o ../../.bin/oauth2-proxy github.com/oauth2-proxy/oauth2-proxy/v7)
O2P_VERSION=$(awk '$1 == "github.com/oauth2-proxy/oauth2-proxy/v7" {print $2; exit}' tools/bench/go.mod)
DEX_VERSION=$(awk '$1 == "github.com/dexidp/dex" {print $2; exit}' tools/dex/go.mod)
CADDY_VERSION=$(.bin/caddy version | awk '{print $1}')

ROWS=(plain plain-ticket plain-bearer cookie memory redis bearer-jwt bearer-introspect o2p-cookie o2p-redis)
modules=$(.bin/caddy list-modules 2>/dev/null) || die ".bin/caddy list-modules failed"
if ! grep -qx 'http.handlers.oidc_session.stores.memory' <<<"$modules"; then
	log "this Caddy has no memory store (http.handlers.oidc_session.stores.memory): leaving out that row"
	ROWS=(plain plain-ticket plain-bearer cookie redis bearer-jwt bearer-introspect o2p-cookie o2p-redis)
fi
if [ -n "${ONLY:-}" ]; then
	declare -A NEEDS=([plain]=cookie [plain-ticket]=redis [plain-bearer]=bearer-jwt [bearer-introspect]=bearer-jwt [o2p-cookie]=o2p-redis [o2p-redis]=o2p-cookie)
	for row in $ONLY; do
		[[ " ${ROWS[*]} " == *" $row "* ]] || die "ONLY: no row '$row' (rows: ${ROWS[*]})"
		need=${NEEDS[$row]:-}
		[ -z "$need" ] || [[ " $ONLY " == *" $need "* ]] || die "ONLY: $row needs $need (its request is made of that row's)"
	done
	kept=()
	for row in "${ROWS[@]}"; do
		[[ " $ONLY " != *" $row "* ]] || kept+=("$row")
	done
	ROWS=("${kept[@]}")
fi
declare -A LABEL=(
	[plain]='Caddy `respond` (no auth): the limit, cookie-store-sized Cookie'
	[plain-ticket]='Caddy `respond` (no auth): the limit, ticket-sized Cookie'
	[plain-bearer]='Caddy `respond` (no auth): the limit, JWT-sized Authorization'
	[bearer-jwt]='oidc_session `bearer`, Dex JWT access token'
	[bearer-introspect]='oidc_session `bearer` + `introspection`, zitadel opaque token'
	[cookie]='oidc_session, cookie store'
	[memory]='oidc_session, memory store'
	[redis]='oidc_session, Redis store'
	[o2p-cookie]='Caddy `forward_auth` + oauth2-proxy, cookie store'
	[o2p-redis]='Caddy `forward_auth` + oauth2-proxy, Redis store'
)
# The oauth2-proxy row each plugin row is compared with.
declare -A PEER=([cookie]=o2p-cookie [redis]=o2p-redis)
# The plain row each row is compared with: the one whose requests have the
# same size (a 1.5 KB cookie costs plain Caddy about 5% of its throughput).
declare -A LIMIT=([plain-ticket]=plain-ticket [memory]=plain-ticket [redis]=plain-ticket [o2p-redis]=plain-ticket
	[plain-bearer]=plain-bearer [bearer-jwt]=plain-bearer [bearer-introspect]=plain-bearer)
is_plain() { [[ $1 == plain* ]]; }
is_bearer() { [[ $1 == bearer-* ]]; }

# --- processes -----------------------------------------------------------------
WORK=$(mktemp -d -t oidc-session-bench.XXXXXX)
PIDS=()
stop_all() {
	local pid
	for pid in "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	PIDS=()
}
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	stop_all
	if [ "$rc" -ne 0 ]; then
		echo "[bench] failed (exit $rc); logs kept in $WORK" >&2
	else
		rm -rf "$WORK"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# free_port VAR: a free loopback port, never handed out twice.
USED_PORTS=" "
free_port() {
	local p i
	for i in $(seq 1 500); do
		# Below the kernel's ephemeral range (32768-60999 by default), where
		# an outgoing connection's local port could take it before Caddy binds.
		p=$((20000 + RANDOM % 12000))
		case $USED_PORTS in *" $p "*) continue ;; esac
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			USED_PORTS+="$p "
			printf -v "$1" '%s' "$p"
			return
		fi
	done
	die "no free loopback port found"
}

# wait_http NAME PID URL: until URL answers (any status), at most 20 s.
wait_http() {
	local i
	for i in $(seq 1 100); do
		if curl -s -o /dev/null --max-time 2 "$3" 2>/dev/null; then
			return
		fi
		kill -0 "$2" 2>/dev/null || die "$1 exited during startup; its log: $WORK/$1.log"$'\n'"$(tail -n 20 "$WORK/$1.log" 2>/dev/null)"
		sleep 0.2
	done
	die "$1 did not answer $3 within 20 s; its log: $WORK/$1.log"
}

rand_hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }

free_port DEX_PORT
free_port REDIS_PORT
declare -A PORT ADMIN
for row in "${ROWS[@]}"; do
	free_port "PORT[$row]"
	free_port "ADMIN[$row]"
done
free_port ZITADEL_PORT
free_port TOKEN_CB_PORT
free_port O2P_COOKIE_PORT
free_port O2P_REDIS_PORT

ISSUER="http://127.0.0.1:$DEX_PORT/dex"
CLIENT_ID=bench
CLIENT_SECRET="bench-secret-$(rand_hex 12)"
PLUGIN_SECRET=$(rand_hex 24)   # 48 characters
O2P_COOKIE_SECRET=$(rand_hex 16) # 32 characters: an AES-256 key for oauth2-proxy
SCOPES="openid email profile offline_access"
LOGIN_EMAIL=admin@example.com
LOGIN_PASSWORD=password
# The bearer rows' API client: its code flows come back here, where nothing
# listens (curl reads the code from the redirect).
TOKEN_CB="http://127.0.0.1:$TOKEN_CB_PORT/cb"
Z_ISSUER="http://127.0.0.1:$ZITADEL_PORT/"

# Dex: password "password" (bcrypt cost 10); tokens live an hour, longer than
# any run, so nothing refreshes during the load.
{
	cat <<EOF
issuer: $ISSUER
storage:
  type: memory
web:
  http: 127.0.0.1:$DEX_PORT
oauth2:
  skipApprovalScreen: true
expiry:
  idTokens: 1h
enablePasswordDB: true
staticPasswords:
  - email: $LOGIN_EMAIL
    hash: "\$2a\$10\$mG0TMz.ZLyBr3qD8A/n71.jyKvW28gbYKzXrgsYYhrcynJec3hsBG"
    username: admin
    userID: 3f1c2b7e-8d4a-4c59-b6e2-7a9d0f1e2c3b
    emailVerified: true
staticClients:
  - id: $CLIENT_ID
    name: oidc_session benchmark
    secret: $CLIENT_SECRET
    redirectURIs:
EOF
	for row in "${ROWS[@]}"; do
		is_plain "$row" || echo "      - http://127.0.0.1:${PORT[$row]}/oauth2/callback"
	done
	echo "      - $TOKEN_CB"
} >"$WORK/dex.yaml"

log "starting Dex on 127.0.0.1:$DEX_PORT"
DEX_EXPAND_ENV=false .bin/dex serve "$WORK/dex.yaml" >"$WORK/dex.log" 2>&1 &
PIDS+=($!)
wait_http dex $! "$ISSUER/.well-known/openid-configuration"

# The zitadel example OP: its "web" client gets opaque access tokens, which
# it ends after 5 minutes (the load loop renews the introspected row's).
log "starting the zitadel example OP on 127.0.0.1:$ZITADEL_PORT"
ADDR="127.0.0.1:$ZITADEL_PORT" ISSUER="$Z_ISSUER" REDIRECT_URI="$TOKEN_CB" \
	.bin/zitadel-op >"$WORK/zitadel.log" 2>&1 &
PIDS+=($!)
wait_http zitadel $! "${Z_ISSUER}.well-known/openid-configuration"

log "starting redis-server on 127.0.0.1:$REDIS_PORT"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
	--dir "$WORK" --logfile '' >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
redis_pid=$!
for i in $(seq 1 100); do
	[ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ] && break
	kill -0 "$redis_pid" 2>/dev/null || die "redis-server exited: $(tail -n 5 "$WORK/redis.log")"
	[ "$i" -lt 100 ] || die "redis-server did not answer PING within 20 s"
	sleep 0.2
done

# start_o2p NAME PORT CADDY_PORT [flags...]
start_o2p() {
	local name=$1 port=$2 site=$3
	shift 3
	log "starting oauth2-proxy ($name) on 127.0.0.1:$port"
	.bin/oauth2-proxy \
		--provider=oidc \
		--oidc-issuer-url="$ISSUER" \
		--client-id="$CLIENT_ID" \
		--client-secret="$CLIENT_SECRET" \
		--cookie-secret="$O2P_COOKIE_SECRET" \
		--cookie-secure=false \
		--email-domain='*' \
		--scope="$SCOPES" \
		--code-challenge-method=S256 \
		--upstream=static://200 \
		--http-address="127.0.0.1:$port" \
		--redirect-url="http://127.0.0.1:$site/oauth2/callback" \
		--reverse-proxy \
		--set-xauthrequest \
		--skip-provider-button \
		--approval-prompt=auto \
		--request-logging=false \
		"$@" >"$WORK/$name.log" 2>&1 &
	PIDS+=($!)
	wait_http "$name" $! "http://127.0.0.1:$port/ping"
}
if [ -n "${PORT[o2p-cookie]:-}" ]; then
	start_o2p oauth2-proxy-cookie "$O2P_COOKIE_PORT" "${PORT[o2p-cookie]}"
	start_o2p oauth2-proxy-redis "$O2P_REDIS_PORT" "${PORT[o2p-redis]}" \
		--session-store-type=redis --redis-connection-url="redis://127.0.0.1:$REDIS_PORT/1"
fi

# caddyfile ROW: the Caddyfile of one configuration.
caddyfile() {
	local row=$1 store=""
	cat <<EOF
{
	admin 127.0.0.1:${ADMIN[$row]}
	default_bind 127.0.0.1
	auto_https off
	persist_config off
	skip_install_trust
	storage file_system $WORK/storage-$row
}

http://127.0.0.1:${PORT[$row]} {
EOF
	case $row in
	plain | plain-ticket | plain-bearer)
		echo '	respond "ok" 200'
		;;
	cookie | memory | redis)
		case $row in
		memory) store='store memory' ;;
		redis) store="store redis {
			url redis://127.0.0.1:$REDIS_PORT/0
		}" ;;
		esac
		cat <<EOF
	oidc_session {
		issuer $ISSUER
		client_id $CLIENT_ID
		client_secret $CLIENT_SECRET
		scopes $SCOPES
		idle_timeout off
		headers
		cookie {
			secret $PLUGIN_SECRET
			secure off
		}
		$store
	}
	respond "ok" 200
EOF
		;;
	bearer-jwt | bearer-introspect)
		local issuer=$ISSUER id=$CLIENT_ID secret=$CLIENT_SECRET introspection=""
		if [ "$row" = bearer-introspect ]; then
			issuer=$Z_ISSUER id=web secret=secret introspection=introspection
		fi
		cat <<EOF
	oidc_session {
		issuer $issuer
		client_id $id
		client_secret $secret
		headers
		cookie {
			secret $PLUGIN_SECRET
			secure off
		}
		bearer {
			audiences $id
			$introspection
		}
	}
	respond "ok" 200
EOF
		;;
	o2p-cookie | o2p-redis)
		local up=$O2P_COOKIE_PORT
		[ "$row" = o2p-redis ] && up=$O2P_REDIS_PORT
		cat <<EOF
	handle /oauth2/* {
		reverse_proxy 127.0.0.1:$up {
			header_up X-Real-IP {remote_host}
			header_up X-Forwarded-Uri {uri}
		}
	}
	handle {
		forward_auth 127.0.0.1:$up {
			uri /oauth2/auth
			header_up X-Real-IP {remote_host}
			copy_headers X-Auth-Request-User X-Auth-Request-Email
			@unauthenticated status 401
			handle_response @unauthenticated {
				redir * /oauth2/sign_in?rd={uri}
			}
		}
		respond "ok" 200
	}
EOF
		;;
	esac
	echo '}'
}

for row in "${ROWS[@]}"; do
	caddyfile "$row" >"$WORK/$row.Caddyfile"
	log "starting Caddy ($row) on 127.0.0.1:${PORT[$row]}"
	.bin/caddy run --config "$WORK/$row.Caddyfile" --adapter caddyfile >"$WORK/caddy-$row.log" 2>&1 &
	PIDS+=($!)
	wait_http "caddy-$row" $! "http://127.0.0.1:${PORT[$row]}/"
	if is_plain "$row"; then
		# The limit must do what the rows do: answer with the handler's body.
		body=$(curl -sS --max-time 10 "http://127.0.0.1:${PORT[$row]}/")
		[ "$body" = ok ] || die "plain row $row answers '$body', not ok"
	fi
done

# --- one login per configuration ---------------------------------------------------
NAV=(-H 'Accept: text/html,application/xhtml+xml' -H 'Sec-Fetch-Mode: navigate')

# login ROW: logs in through Dex's form with a fresh cookie jar and sets
# COOKIE[ROW] to the Cookie header the browser then sends.
declare -A COOKIE
login() {
	local row=$1 base="http://127.0.0.1:${PORT[$1]}" jar="$WORK/jar-$1.txt"
	local page eff action dex_origin out code
	: >"$jar"
	# A protected page, through every redirect, to Dex's password form.
	out=$(curl -sS -L --max-redirs 10 --max-time 20 -b "$jar" -c "$jar" "${NAV[@]}" \
		-o "$WORK/login-$row.html" -w '%{http_code} %{url_effective}' "$base/") ||
		die "$row: GET $base/ failed"
	code=${out%% *}
	eff=${out#* }
	page=$(tr '\n' ' ' <"$WORK/login-$row.html")
	action=$(grep -o '<form[^>]*action="[^"]*"' <<<"$page" | head -n1 | sed -E 's/.*action="([^"]*)".*/\1/; s/&amp;/\&/g')
	if [ "$code" != 200 ] || [ -z "$action" ] || ! grep -q 'name="password"' <<<"$page"; then
		die "$row: no Dex login form after following $base/ (status $code at $eff)"
	fi
	dex_origin=$(sed -E 's#^(https?://[^/]+).*#\1#' <<<"$eff")
	case $action in
	http://* | https://*) ;;
	/*) action="$dex_origin$action" ;;
	*) action="${eff%/*}/$action" ;;
	esac
	# Submit login and password; curl turns the POST into GETs along the
	# 303/302 redirects: Dex, the callback, back to the protected page.
	out=$(curl -sS -L --max-redirs 10 --max-time 20 -b "$jar" -c "$jar" "${NAV[@]}" \
		--data-urlencode "login=$LOGIN_EMAIL" --data-urlencode "password=$LOGIN_PASSWORD" \
		-o "$WORK/after-login-$row.html" -w '%{http_code} %{url_effective}' "$action") ||
		die "$row: POST to Dex's login form failed"
	code=${out%% *}
	eff=${out#* }
	if [ "$code" != 200 ] || [ "$(cat "$WORK/after-login-$row.html")" != ok ]; then
		die "$row: login did not end on the protected page (status $code at $eff): $(head -c 300 "$WORK/after-login-$row.html")"
	fi
	# The session cookie(s) from the jar (curl marks HttpOnly ones with a
	# #HttpOnly_ prefix); login flow and CSRF cookies are gone by now.
	COOKIE[$row]=$(awk -F '\t' 'NF == 7 && $1 ~ /^(#HttpOnly_)?127\.0\.0\.1$/ && $6 ~ /^_oauth2_proxy/ && $6 !~ /_(flow|csrf)/ {
		printf "%s%s=%s", (n++ ? "; " : ""), $6, $7 }' "$jar")
	[ -n "${COOKIE[$row]}" ] || die "$row: no session cookie in the jar after login"
	# The request wrk will send must pass, and must not without the cookie.
	code=$(curl -sS -o "$WORK/check-$row.html" -w '%{http_code}' --max-time 10 "${NAV[@]}" -H "Cookie: ${COOKIE[$row]}" "$base/")
	if [ "$code" != 200 ] || [ "$(cat "$WORK/check-$row.html")" != ok ]; then
		die "$row: authenticated GET with the session cookie answered $code, not 200 ok; see $WORK/caddy-$row.log"
	fi
	code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 10 "${NAV[@]}" "$base/")
	[ "$code" != 200 ] || die "$row: GET without a cookie answered 200: the site is not protected"
	log "$row: logged in through Dex; session cookie header ${#COOKIE[$row]} bytes; authenticated GET answers 200"
}
# follow_to_code JAR URL: follows redirects (GET) from URL to the one that
# leads to TOKEN_CB, and prints its code parameter.
follow_to_code() {
	local jar=$1 url=$2 i
	for i in $(seq 1 10); do
		case $url in "$TOKEN_CB"*)
			sed -nE 's/.*[?&]code=([^&]*).*/\1/p' <<<"$url"
			return
			;;
		esac
		url=$(curl -sS --max-time 20 -b "$jar" -c "$jar" -o /dev/null -w '%{redirect_url}' "$url") || return 1
		[ -n "$url" ] || return 1
	done
	return 1
}

# token_of ROW: an access token for the row's client from a code flow at its
# IdP (Dex, or the zitadel OP), through the IdP's login form, in TOKEN[ROW].
declare -A TOKEN TOKEN_AT
token_of() {
	local row=$1 jar="$WORK/jar-$1.txt" issuer id secret token_path user_fields out page action code
	if [ "$row" = bearer-jwt ]; then
		issuer=$ISSUER id=$CLIENT_ID secret=$CLIENT_SECRET token_path=/token
		user_fields=(--data-urlencode "login=$LOGIN_EMAIL" --data-urlencode "password=$LOGIN_PASSWORD")
	else
		issuer=${Z_ISSUER%/} id=web secret=secret token_path=/oauth/token
		user_fields=(--data-urlencode username=test-user2 --data-urlencode password=verysecure)
	fi
	: >"$jar"
	out=$(curl -sS -L --max-redirs 10 --max-time 20 -b "$jar" -c "$jar" -o "$WORK/token-$row.html" -w '%{url_effective}' \
		"$issuer/auth?client_id=$id&response_type=code&scope=openid+email+profile&state=bench&redirect_uri=$TOKEN_CB") ||
		die "$row: GET of the IdP's authorization endpoint failed"
	page=$(tr '\n' ' ' <"$WORK/token-$row.html")
	action=$(grep -o '<form[^>]*action="[^"]*"' <<<"$page" | head -n1 | sed -E 's/.*action="([^"]*)".*/\1/; s/&amp;/\&/g')
	if [ -z "$action" ] || ! grep -q 'name="password"' <<<"$page"; then
		die "$row: no login form at $out"
	fi
	case $action in /*) action="$(sed -E 's#^(https?://[^/]+).*#\1#' <<<"$out")$action" ;; esac
	# The zitadel OP's form carries the authorization request's id.
	if grep -q 'name="id"' <<<"$page"; then
		user_fields+=(--data-urlencode "id=$(grep -o 'name="id" value="[^"]*"' <<<"$page" | sed -E 's/.*value="([^"]*)"/\1/')")
	fi
	out=$(curl -sS --max-time 20 -b "$jar" -c "$jar" -o /dev/null -w '%{redirect_url}' "${user_fields[@]}" "$action") ||
		die "$row: POST of the IdP's login form failed"
	code=$(follow_to_code "$jar" "$out") && [ -n "$code" ] || die "$row: the login did not come back with a code"
	out=$(curl -sS --max-time 20 -u "$id:$secret" --data-urlencode grant_type=authorization_code \
		--data-urlencode "code=$code" --data-urlencode "redirect_uri=$TOKEN_CB" "$issuer$token_path") ||
		die "$row: code exchange failed"
	TOKEN[$row]=$(sed -nE 's/.*"access_token":"([^"]*)".*/\1/p' <<<"$out")
	TOKEN_AT[$row]=$SECONDS
	[ -n "${TOKEN[$row]}" ] || die "$row: no access token in the token response: ${out:0:200}"
	# The request wrk will send must pass, and must not without the token.
	local base="http://127.0.0.1:${PORT[$row]}"
	code=$(curl -sS -o "$WORK/check-$row.html" -w '%{http_code}' --max-time 10 "${NAV[@]}" -H "Authorization: Bearer ${TOKEN[$row]}" "$base/")
	if [ "$code" != 200 ] || [ "$(cat "$WORK/check-$row.html")" != ok ]; then
		die "$row: GET with the access token answered $code, not 200 ok; see $WORK/caddy-$row.log"
	fi
	code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 10 -H 'Accept: application/json' "$base/")
	[ "$code" = 401 ] || die "$row: API call without a token answered $code, not 401: the site is not protected"
	log "$row: access token of ${#TOKEN[$row]} bytes from a code flow; GET with it answers 200"
}

for row in "${ROWS[@]}"; do
	if is_bearer "$row"; then
		token_of "$row"
	elif ! is_plain "$row"; then
		login "$row"
	fi
done
# REQ[ROW] is the credential header wrk sends, PAD[ROW] one more. The plain
# rows get the same Cookie headers as the cookie store and the Redis rows,
# and an Authorization header as long as the JWT row's, so the requests
# compared are the same size; the introspected token, shorter, is padded
# with an X-Pad header to the JWT row's request size.
declare -A REQ PAD
for row in "${ROWS[@]}"; do
	if is_bearer "$row"; then
		REQ[$row]="Authorization: Bearer ${TOKEN[$row]}"
	elif ! is_plain "$row"; then
		REQ[$row]="Cookie: ${COOKIE[$row]}"
	fi
done
REQ[plain]=${REQ[cookie]:-}
REQ[plain-ticket]=${REQ[redis]:-}
# pad_introspected makes the introspected row's request as long as the
# JWT row's.
pad_introspected() {
	[ -n "${REQ[bearer-jwt]:-}" ] && [ -n "${REQ[bearer-introspect]:-}" ] || return 0
	local pad=$((${#REQ[bearer-jwt]} - ${#REQ[bearer-introspect]} - 9)) # "X-Pad: " and CRLF
	[ "$pad" -le 0 ] || PAD[bearer-introspect]="X-Pad: $(head -c "$pad" /dev/zero | tr '\0' x)"
}
if [ -n "${TOKEN[bearer-jwt]:-}" ]; then
	REQ[plain-bearer]="Authorization: Bearer $(head -c "${#TOKEN[bearer-jwt]}" /dev/zero | tr '\0' x)"
fi
pad_introspected
REQ[plain-bearer]=${REQ[plain-bearer]:-} # for the notes below when ONLY leaves it out

# --- load ------------------------------------------------------------------------
# Other work on the machine skews every number; the load average before the
# runs (ours are idle then) says how much there was.
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
if awk -v l="${LOAD_BEFORE%% *}" -v n="$(nproc)" 'BEGIN {exit !(l > n / 2)}'; then
	log "WARNING: load average $LOAD_BEFORE before the runs: something else is busy on this machine"
fi
RESULTS="$WORK/results.txt"
: >"$RESULTS"
total=$((ROUNDS * ${#ROWS[@]}))
n=0
for round in $(seq 1 "$ROUNDS"); do
	for row in "${ROWS[@]}"; do
		n=$((n + 1))
		# The zitadel example OP ends its access tokens after 5 minutes
		# whatever expires_in says: the introspected row's is renewed.
		if [ "$row" = bearer-introspect ] && [ $((SECONDS - TOKEN_AT[$row])) -gt 200 ]; then
			token_of "$row"
			REQ[$row]="Authorization: Bearer ${TOKEN[$row]}"
			pad_introspected
		fi
		log "run $n/$total (round $round/$ROUNDS): $row, wrk -t$THREADS -c$CONNECTIONS -d$DURATION"
		hdrs=(-H "${REQ[$row]}")
		[ -z "${PAD[$row]:-}" ] || hdrs+=(-H "${PAD[$row]}")
		prof=""
		if [ -n "${PROFILE_DIR:-}" ] && [ "$secs" -gt 2 ]; then
			curl -s -o "$PROFILE_DIR/$row-$round.pprof" --max-time $((secs + 20)) \
				"http://127.0.0.1:${ADMIN[$row]}/debug/pprof/profile?seconds=$((secs - 2))" &
			prof=$!
		fi
		out=$(timeout -k 5 $((secs + 30)) wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" \
			-s scripts/bench/report.lua "${NAV[@]}" "${hdrs[@]}" \
			"http://127.0.0.1:${PORT[$row]}/" 2>&1) || die "wrk failed on $row: $out"
		[ -z "$prof" ] || wait "$prof" || log "  WARNING: no CPU profile of $row"
		line=$(grep '^RESULT ' <<<"$out") || die "no RESULT line from wrk on $row: $out"
		# row round rps p50_us p99_us non2xx socket_errors
		awk -v row="$row" -v round="$round" '{
			for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
			print row, round, v["rps"], v["p50_us"], v["p99_us"], v["non2xx"], v["socket_errors"]
		}' <<<"$line" >>"$RESULTS"
		read -r _ _ rps p50 p99 bad serr < <(tail -n1 "$RESULTS")
		log "  $rps req/s, p50 ${p50} us, p99 ${p99} us, non-2xx $bad, socket errors $serr"
		[ "$bad" = 0 ] || log "  WARNING: $bad responses were not 2xx on $row"
	done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
stop_all

# --- N distinct sessions -----------------------------------------------------------
# scripts/bench-scale.sh: N = SCALE_N (default 1, 10000, 100000) distinct
# sessions per store, each minted through the store and checked served
# before wrk cycles through them. SCALE_N=0 leaves them out.
SCALE_TSV="$WORK/scale.tsv"
if [ "${SCALE_N:-}" != 0 ]; then
	log "rows with N distinct sessions (scripts/bench-scale.sh)"
	SCALE_OUT=$SCALE_TSV SCALE_DURATION=$DURATION THREADS=$THREADS CONNECTIONS=$CONNECTIONS scripts/bench-scale.sh ||
		die "scripts/bench-scale.sh failed"
	# The plot goes next to BENCHMARKS.md, which links it.
	SCALE_SVG="$(dirname "$OUT")/BENCHMARKS-scale.svg"
	python3 scripts/scale-plot.py "$SCALE_TSV" "$SCALE_SVG"
fi

# --- Go benchmarks -------------------------------------------------------------------
GO_OUT="$WORK/gobench.txt"
if [ "$GO_BENCH" != 0 ]; then
	log "Go benchmarks: go test -run XXX -bench . -benchmem ./sessions/ . ./integration/"
	timeout -k 10 900 go test -run XXX -bench . -benchmem -timeout 10m ./sessions/ . ./integration/ >"$GO_OUT" 2>&1 ||
		die "Go benchmarks failed: $(tail -n 30 "$GO_OUT")"
	grep -E '^(Benchmark|ok|pkg:)' "$GO_OUT" | sed 's/^/  /'
fi

# --- BENCHMARKS.md -------------------------------------------------------------------
# stat ROW FIELD: the median of a column over the rounds (3 rps, 4 p50, 5 p99).
stat() {
	awk -v row="$1" -v f="$2" '$1 == row {print $f}' "$RESULTS" | sort -g |
		awk '{a[NR] = $1} END {if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2}'
}
sum() { awk -v row="$1" -v f="$2" '$1 == row {s += $f} END {print s + 0}' "$RESULTS"; }
rounds_rps() { awk -v row="$1" '$1 == row {printf "%s%.0f", (n++ ? " / " : ""), $3}' "$RESULTS"; }
ms() { awk -v us="$1" 'BEGIN {printf "%.2f ms", us / 1000}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f×", a / b; else print "n/a"}'; }

declare -A RPS
for row in "${ROWS[@]}"; do
	RPS[$row]=$(stat "$row" 3)
done

cpu_model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
mem_total=$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
cmd="ROUNDS=$ROUNDS DURATION=$DURATION scripts/bench.sh"
[ "$THREADS" = 2 ] || cmd="THREADS=$THREADS $cmd"
[ "$CONNECTIONS" = 50 ] || cmd="CONNECTIONS=$CONNECTIONS $cmd"

{
	cat <<EOF
# Benchmarks

Generated by \`scripts/bench.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'). Numbers from one machine, on loopback;
compare the rows with each other rather than with other machines.

## Machine

| | |
| --- | --- |
| CPUs (nproc) | $(nproc) |
| CPU | ${cpu_model:-unknown} |
| memory | $mem_total |
| kernel | $(uname -sr) |
| Go | $(go version | awk '{print $3, $4}') |
| source | $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- '*.go' 2>/dev/null || echo ' with uncommitted changes') |
| Caddy | $CADDY_VERSION |
| oauth2-proxy | $O2P_VERSION (tools/bench) |
| Dex | $DEX_VERSION (tools/dex) |
| Redis | $(redis-server --version | sed -E 's/.*v=([^ ]+).*/\1/') |
| wrk | $(wrk --version 2>&1 | head -n1 | awk '{print $2}') |

Reproduce (about 5 minutes with the defaults \`ROUNDS=3 DURATION=10s\`):

\`\`\`sh
$cmd
\`\`\`

## Authenticated requests under load

\`wrk -t$THREADS -c$CONNECTIONS -d$DURATION\` against \`GET /\` of each configuration, with the session cookie of one
login (Dex's password form, through curl with a cookie jar) and browser navigation headers. The configurations
run interleaved ($(IFS=,; echo "${ROWS[*]}" | sed 's/,/, /g'), then again), rounds: $ROUNDS; the table shows the
median of the rounds (requests/s of each round in the last column). Non-2xx counts every response of every round
that was not 2xx (a lost session would show up there as a redirect to the login).

| configuration | requests/s | p50 | p99 | non-2xx | vs plain Caddy, same request size | vs oauth2-proxy, same store | requests/s per round |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |
EOF
	for row in "${ROWS[@]}"; do
		peer=${PEER[$row]:-}
		if [ -n "$peer" ] && [ -n "${RPS[$peer]:-}" ]; then
			vs_peer="$(ratio "${RPS[$row]}" "${RPS[$peer]}") ($peer)"
		else
			vs_peer="—"
		fi
		printf '| %s | %.0f | %s | %s | %s | %s | %s | %s |\n' \
			"${LABEL[$row]}" "${RPS[$row]}" "$(ms "$(stat "$row" 4)")" "$(ms "$(stat "$row" 5)")" \
			"$(sum "$row" 6)" "$(ratio "${RPS[$row]}" "${RPS[${LIMIT[$row]:-plain}]:-0}")" "$vs_peer" "$(rounds_rps "$row")"
	done
	serr=$(awk '{s += $7} END {print s + 0}' "$RESULTS")
	cat <<EOF

Socket errors (connect, read, write, timeout) over all runs: $serr. Load average (1, 5, 15 min) just before
the runs: $LOAD_BEFORE; just after: $LOAD_AFTER (wrk and the servers alone keep it near $(nproc); more before the
runs means other work on the machine shared the CPUs with these measurements).

What the rows are (every Caddy is its own process with \`default_bind 127.0.0.1\` and its own admin port; the
handlers answer \`respond "ok" 200\`, there is no upstream):

- **plain**: \`respond "ok" 200\` only, sent the same Cookie header as the cookie store row; **plain-ticket**:
  the same, sent the Redis row's ticket cookie. The ceiling of this machine with wrk beside Caddy, for requests
  of each size: the cookie store and oauth2-proxy cookie rows are compared with plain, the memory, Redis and
  oauth2-proxy Redis rows (ticket cookies of about 80 bytes) with plain-ticket. **plain-bearer**: the same, sent
  an \`Authorization: Bearer\` header as long as the bearer-jwt row's (${#REQ[plain-bearer]} bytes), the ceiling
  of both bearer rows.
- **bearer** rows (API clients): oidc_session with a \`bearer\` block (\`audiences\` the client id, \`headers\`),
  sent \`Authorization: Bearer <access token>\` instead of a cookie, the token from a code flow of the row's own
  client at its IdP. bearer-jwt: Dex's access token, a JWT (RS256) verified against Dex's JWKS once, then found
  in the verdict cache by its SHA-256; bearer-introspect: the zitadel example OP's opaque token, introspected at
  the OP once a minute (the answer cache's limit) and found in the cache in between. Its requests carry an
  \`X-Pad\` header that makes them as long as bearer-jwt's. Every request replays one token (one client): see
  \`BenchmarkServeHTTPBearer\` below for 1000 distinct ones.
- **oidc_session** rows: \`scopes $SCOPES\`, \`headers\` (X-Forwarded-User/-Email/-Groups set for the next
  handler), \`idle_timeout off\` so that the one cookie wrk replays never needs rewriting (with an idle timeout a
  browser's cookie is rewritten at most once every 5 minutes, which is negligible in real traffic but would
  turn every request of a replayed stale cookie into a write). The memory and Redis stores keep a ticket cookie.
  Every row keeps decoded sessions in memory by cookie value; the Redis store asks Redis whether the session
  still exists (one EXISTS) at most once per \`recheck_interval\` (default 1 s) per session, and hears of ended
  sessions over Redis pub/sub in between.
- **oauth2-proxy** rows: oauth2-proxy $O2P_VERSION (\`--provider=oidc --reverse-proxy --set-xauthrequest
  --skip-provider-button --approval-prompt=auto --request-logging=false --upstream=static://200\`, same scopes), behind Caddy's
  \`forward_auth\` to \`/oauth2/auth\` copying X-Auth-Request-User/-Email, \`/oauth2/*\` proxied to it. Request
  logging is off because Caddy logs no requests here either. The Redis row uses
  \`--session-store-type=redis\` on the same redis-server (another db).
- Every request replays the same session cookie (one user). A handler that keeps decoded sessions in memory by
  cookie value serves all of them from there; with many users the per-request cost of the cookie store moves
  towards the \`BenchmarkCookieStoreLoad\` figure below.
- The memory store has no oauth2-proxy counterpart (oauth2-proxy keeps sessions in cookies or Redis only).
- Dex issues 1 h tokens: no refresh happens during a run.
- wrk shares the $(nproc) CPUs with the server (and, for the oauth2-proxy rows, with oauth2-proxy): the numbers
  are what one box can do end to end, not the server's own limit. The wrk Lua script
  (\`scripts/bench/report.lua\`) looks at every response's status, which costs wrk some CPU in every row alike.
EOF
	if [ -f scripts/bench/bearer.md ]; then
		echo
		cat scripts/bench/bearer.md
	fi
	if [ "$GO_BENCH" != 0 ]; then
		cat <<EOF

## Go benchmarks

\`go test -run XXX -bench . -benchmem ./sessions/ . ./integration/\` (same machine, run after the load tests, with the processes
above stopped):

- \`BenchmarkServeHTTP{Cookie,Memory,Redis}\`: one authenticated request through the handler's \`ServeHTTP\`,
  called directly (no HTTP server or network), with a real session cookie from a login through an in-process
  Caddy against mockoidc; a no-op next handler. The loop builds a request with a replacer in its context and a
  recorder each time: \`BenchmarkServeHTTPBaseline\` is that loop without the handler, to subtract.
  \`cookie-bytes\` is the Cookie header's size. Redis is a real redis-server on loopback.
- \`BenchmarkServeHTTPBearer/{jwt,introspected}\`: an API call with an access token through \`ServeHTTP\`, the
  next of 1000 distinct tokens each time (RS256 JWTs of mockoidc; opaque tokens with cached introspection
  answers), each verified once before the timer: the verdict cache, the claims mapped to the identity, the
  access rules, placeholders and headers. \`token-bytes\` is one token's size.
- \`BenchmarkCallback/callback\`: only the callback request through the in-process Caddy (state check, code
  redemption at the mock IdP, ID token verification, session cookie), over loopback HTTP, **including the mock
  IdP's token endpoint** (which signs tokens). \`BenchmarkCallback/login\`: the whole login (protected page →
  IdP → callback), reported as **logins/s including the mock IdP**. Allocations there count the in-process
  server and mockoidc too.
- \`./sessions/\`: the cookie store and codec alone, on a realistic Dex session.

\`\`\`
EOF
		grep -E '^(goos|goarch|pkg|cpu|Benchmark|ok|PASS)' "$GO_OUT" || true
		echo '```'
	fi
	if [ -f "$SCALE_TSV" ]; then
		echo
		echo '## N distinct sessions'
		echo
		echo "scripts/bench-scale.sh, wrk -d$DURATION per run, ${SCALE_ROUNDS:-3} rounds of plain then store; median ratio to a plain Caddy"
		echo 'sent the same Cookie headers in the same round (lowest-highest of the rounds); CPU time per request of the row'"'"'s'
		echo 'Caddy and (redis row) Redis, of the plain Caddy in brackets, and their ratio (plain over row: the steadier measure on a'
		echo 'shared machine, which leaves out what wrk costs); RSS and live heap (after a collection) of the row'"'"'s Caddy after its runs. Plot: [BENCHMARKS-scale.svg](BENCHMARKS-scale.svg).'
		echo
		awk -F'\t' 'NR == 1 {print "| store | N | req/s | plain req/s | ratio (rounds) | p99 ms | plain p99 ms | CPU µs/req: Caddy + Redis (plain) | CPU ratio | Caddy RSS MB | live heap MB | non-2xx |"; print "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"; next}
			{printf "| %s | %d | %.0f | %.0f | %s (%s-%s) | %s | %s | %s + %s (%s) | %.2f | %s | %s | %s |\n", $1, $2, $3, $4, $5, $10, $11, $6, $7, $12, $13, $14, $15, $8, $16, $9}' "$SCALE_TSV"
		if [ -f scripts/bench/scale.md ]; then
			echo
			cat scripts/bench/scale.md
		fi
	fi
	# The analysis of the targets is written by hand; it follows the numbers.
	if [ -f scripts/bench/targets.md ]; then
		echo
		cat scripts/bench/targets.md
	fi
} >"$OUT"

log "wrote $OUT"
echo
sed -n '/^| configuration/,/^$/p' "$OUT"
