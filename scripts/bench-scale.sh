#!/usr/bin/env bash
# Rows of scripts/bench.sh with N distinct sessions: for each N in SCALE_N
# (default "1 10000 100000") and each store (cookie, memory, redis), N
# sessions are minted through the plugin's own store code
# (TestMintScaleSessions: the handler of the row's Caddyfile saves them, as
# logins would), every one is checked to be served (200) by the row's
# Caddy (TestCheckScaleSessions), then wrk cycles through them
# (-t$THREADS -c$CONNECTIONS -d$SCALE_DURATION, each thread from its own
# offset), alternating with a plain Caddy (`respond "ok" 200`) sent the same
# Cookie headers, SCALE_ROUNDS times (default 3). Reported per row, as the
# median of the rounds: requests/s, the ratio to the plain Caddy of the same
# round (and the lowest and highest of the rounds' ratios), p99 latency;
# the RSS and live heap of the row's Caddy after its last run, the non-2xx answers
# of all its runs. Also the CPU time per request of the row's Caddy, of
# Redis (redis row), and of the plain Caddy, and the ratio of the plain
# Caddy's to the row's (its Caddy's and Redis's): on a machine shared
# with other work, a steadier measure than throughput. Written as a tab-separated table to SCALE_OUT
# (default scale.tsv); scripts/scale-plot.py makes the SVG from it.
#
# No IdP is needed: the sessions need no refresh. Every run is bounded
# (timeout); 2 shared cores make the figures noisy: read ratios within a
# round, not absolute numbers.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	export PATH="$PATH:/usr/local/go/bin"
fi
SCALE_N=${SCALE_N:-"1 10000 100000"}
STORES=${STORES:-"cookie memory redis"}
SCALE_DURATION=${SCALE_DURATION:-10s}
SCALE_ROUNDS=${SCALE_ROUNDS:-3}
# REDIS_RECHECK, if set, is the redis rows' recheck_interval (default 1s).
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-50}
SCALE_OUT=${SCALE_OUT:-scale.tsv}

log() { echo "[bench-scale $(date +%H:%M:%S)] $*" >&2; }
die() { echo "[bench-scale] ERROR: $*" >&2; exit 1; }
for bin in wrk redis-server redis-cli curl timeout awk; do
	command -v "$bin" >/dev/null 2>&1 || die "$bin not found"
done
case $SCALE_DURATION in
*s) secs=${SCALE_DURATION%s} ;;
*) die "SCALE_DURATION must look like 10s" ;;
esac
[ "$secs" -le 120 ] || die "SCALE_DURATION above 2 minutes per run; refusing"

WORK=$(mktemp -d /tmp/bench-scale.XXXXXX)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT

# Built into the run's own directory: .bin may be shared between checkouts.
log "building caddy (./cmd/caddy)"
go build -o "$WORK/caddy" ./cmd/caddy
log "building the mint/check helpers"
go test -c -o "$WORK/helpers.test" . >/dev/null

REDIS_PORT=16390
redis-server --port $REDIS_PORT --bind 127.0.0.1 --save '' --appendonly no --daemonize no >"$WORK/redis.log" 2>&1 &
REDIS_PID=$!
PIDS+=($!)
for _ in $(seq 50); do redis-cli -p $REDIS_PORT ping >/dev/null 2>&1 && break; sleep 0.1; done

SECRET=$(head -c 32 /dev/urandom | base64)
declare -A PORT=([plain]=18380 [cookie]=18381 [memory]=18382 [redis]=18383)
declare -A ADMIN=([plain]=12380 [cookie]=12381 [memory]=12382 [redis]=12383)

caddyfile() {
	local row=$1 store=""
	case $row in
	memory) store="store memory {
			state_file $WORK/memory.state
			max_sessions 1000000
		}" ;;
	redis) store="store redis {
			url redis://127.0.0.1:$REDIS_PORT/0
			${REDIS_RECHECK:+recheck_interval $REDIS_RECHECK}
		}" ;;
	esac
	cat <<CADDY
{
	admin 127.0.0.1:${ADMIN[$row]}
	auto_https off
	persist_config off
	storage file_system $WORK/storage-$row
}

http://127.0.0.1:${PORT[$row]} {
CADDY
	if [ "$row" = plain ]; then
		echo '	respond "ok" 200'
	else
		cat <<CADDY
	oidc_session {
		issuer http://127.0.0.1:1/idp
		client_id bench
		idle_timeout off
		headers
		${CACHE_SIZE:+session_cache_size $CACHE_SIZE}
		cookie {
			secret $SECRET
			secure off
		}
		$store
	}
	respond "ok" 200
CADDY
	fi
	echo "}"
}

start_caddy() { # row
	local row=$1
	caddyfile "$row" >"$WORK/$row.caddyfile"
	"$WORK/caddy" run --adapter caddyfile --config "$WORK/$row.caddyfile" >"$WORK/$row.log" 2>&1 &
	CADDY_PID[$row]=$!
	PIDS+=($!)
	for _ in $(seq 100); do
		curl -s -o /dev/null "http://127.0.0.1:${PORT[$row]}/" && return
		sleep 0.1
	done
	die "caddy $row did not start (see $WORK/$row.log)"
}
stop_caddy() { kill "${CADDY_PID[$1]}" 2>/dev/null || true; wait "${CADDY_PID[$1]}" 2>/dev/null || true; }
declare -A CADDY_PID

cat >"$WORK/cycle.lua" <<'LUA'
-- Cycles through the Cookie headers of the file COOKIES, each thread from
-- its own offset.
local cookies = {}
for line in io.lines(os.getenv("COOKIES")) do cookies[#cookies + 1] = line end
local i = 0
function init(args)
	math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)"), 16))
	i = math.random(#cookies) - 1
end
function request()
	i = i % #cookies + 1
	return wrk.format("GET", "/", { ["Cookie"] = cookies[i] })
end
LUA

# cputicks PID: the CPU time (user + system, clock ticks) the process has used.
cputicks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICK_US=$((1000000 / $(getconf CLK_TCK)))

# run ROW COOKIES: wrk against the row's Caddy; prints "rps p99_ms rss_mb
# non2xx cpu_us redis_cpu_us heap_mb": the CPU time the row's Caddy and Redis spent
# per request, which the other processes on the machine disturb far less
# than throughput; and its live heap after the run.
run() {
	local row=$1 cookies=$2 out c0 r0
	c0=$(cputicks "${CADDY_PID[$row]}")
	r0=$(cputicks "$REDIS_PID")
	out=$(COOKIES=$cookies timeout $((secs + 30)) wrk --latency -t"$THREADS" -c"$CONNECTIONS" -d"${secs}s" -s "$WORK/cycle.lua" "http://127.0.0.1:${PORT[$row]}/" 2>&1) || die "wrk $row: $out"
	local rps p99 rss non2xx reqs cpu rcpu
	rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
	p99=$(awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; print v}' <<<"$out")
	non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
	reqs=$(awk '/requests in/ {print $1}' <<<"$out")
	cpu=$(awk -v d=$(($(cputicks "${CADDY_PID[$row]}") - c0)) -v n="$reqs" -v t=$TICK_US 'BEGIN {printf "%.1f", d * t / n}')
	rcpu=$(awk -v d=$(($(cputicks "$REDIS_PID") - r0)) -v n="$reqs" -v t=$TICK_US 'BEGIN {printf "%.1f", d * t / n}')
	rss=$(($(ps -o rss= -p "${CADDY_PID[$row]}") / 1024))
	# the live heap: HeapAlloc right after a collection (gc=1)
	heap=$(curl -s "http://127.0.0.1:${ADMIN[$row]}/debug/pprof/heap?gc=1&debug=1" | awk '/^# HeapAlloc = / {printf "%d", $4 / 1048576}')
	echo "$rps ${p99:-?} $rss ${non2xx:-0} $cpu $rcpu ${heap:-?}"
}

# median of the numbers on stdin
median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

printf 'store\tN\trps\tplain_rps\tratio\tp99_ms\tplain_p99_ms\trss_mb\tnon2xx\tratio_lo\tratio_hi\tcpu_us\tredis_cpu_us\tplain_cpu_us\tcpu_ratio\theap_mb\n' >"$SCALE_OUT"
start_caddy plain
for n in $SCALE_N; do
	for store in $STORES; do
		log "$store, N=$n: minting"
		rm -f "$WORK/memory.state"
		redis-cli -p $REDIS_PORT flushall >/dev/null
		caddyfile "$store" >"$WORK/$store.caddyfile"
		OIDC_SESSION_MINT_CADDYFILE=$WORK/$store.caddyfile OIDC_SESSION_MINT_N=$n OIDC_SESSION_MINT_OUT=$WORK/cookies \
			timeout 900 "$WORK/helpers.test" -test.run '^TestMintScaleSessions$' -test.count=1 >"$WORK/mint.log" 2>&1 ||
			die "minting failed: $(tail -5 "$WORK/mint.log")"
		start_caddy "$store"
		log "$store, N=$n: checking every session is served"
		OIDC_SESSION_CHECK_URL=http://127.0.0.1:${PORT[$store]}/ OIDC_SESSION_CHECK_COOKIES=$WORK/cookies \
			timeout 900 "$WORK/helpers.test" -test.run '^TestCheckScaleSessions$' -test.count=1 -test.v >"$WORK/check.log" 2>&1 ||
			die "not every session is served: $(tail -5 "$WORK/check.log")"
		rounds=()
		total_non2xx=0
		for round in $(seq "$SCALE_ROUNDS"); do
			log "$store, N=$n, round $round: wrk ${secs}s against plain, then $store"
			read -r prps pp99 _ _ pcpu _ < <(run plain "$WORK/cookies")
			[ "$store" != redis ] || redis-cli -p $REDIS_PORT config resetstat >/dev/null
			read -r rps p99 rss non2xx cpu rcpu heap < <(run "$store" "$WORK/cookies")
			[ "$store" != redis ] || log "redis commands during the run: $(redis-cli -p $REDIS_PORT info commandstats | awk -F'[:,=]' '/^cmdstat_(exists|get|publish|ping)/ {printf "%s=%s ", substr($1, 9), $3}')"
			total_non2xx=$((total_non2xx + non2xx))
			[ "$store" = redis ] || rcpu=0 # Redis's own background work is no cost of this row
			rounds+=("$rps $prps $(awk -v a="$rps" -v b="$prps" 'BEGIN {printf "%.3f", a / b}') $p99 $pp99 $cpu $rcpu $pcpu")
		done
		stop_caddy "$store"
		col() { printf '%s\n' "${rounds[@]}" | awk -v c="$1" '{print $c}'; }
		ratios=$(col 3 | sort -g)
		cpu=$(col 6 | median) rcpu=$(col 7 | median) pcpu=$(col 8 | median)
		printf '%s\t%s\t%s\t%s\t%.2f\t%s\t%s\t%s\t%s\t%.2f\t%.2f\t%s\t%s\t%s\t%.2f\t%s\n' "$store" "$n" "$(col 1 | median)" "$(col 2 | median)" \
			"$(median <<<"$ratios")" "$(col 4 | median)" "$(col 5 | median)" "$rss" "$total_non2xx" \
			"$(head -1 <<<"$ratios")" "$(tail -1 <<<"$ratios")" "$cpu" "$rcpu" "$pcpu" \
			"$(awk -v p="$pcpu" -v c="$cpu" -v r="$rcpu" 'BEGIN {print p / (c + r)}')" "$heap" | tee -a "$SCALE_OUT" >&2
	done
done
log "written $SCALE_OUT"
