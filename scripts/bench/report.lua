-- wrk script for scripts/bench.sh: counts responses that are not 2xx (wrk's
-- own error count misses 3xx, and a lost session shows up as a redirect to
-- the login) and prints one machine-readable line at the end:
--
--   RESULT requests=<n> seconds=<s> rps=<n/s> p50_us=<us> p99_us=<us> non2xx=<n> socket_errors=<n>
--
-- Each wrk thread has its own Lua state: the counters are per thread and
-- added up in done() through the thread objects kept by setup().

local threads = {}

function setup(thread)
	table.insert(threads, thread)
end

function init(args)
	non2xx = 0
end

function response(status, headers, body)
	if status < 200 or status > 299 then
		non2xx = non2xx + 1
	end
end

function done(summary, latency, requests)
	local bad = 0
	for _, t in ipairs(threads) do
		bad = bad + (t:get("non2xx") or 0)
	end
	local e = summary.errors
	local seconds = summary.duration / 1e6
	io.write(string.format(
		"RESULT requests=%d seconds=%.3f rps=%.1f p50_us=%d p99_us=%d non2xx=%d socket_errors=%d\n",
		summary.requests, seconds, summary.requests / seconds,
		latency:percentile(50), latency:percentile(99), bad,
		e.connect + e.read + e.write + e.timeout))
end
