#!/usr/bin/env bash
# Measures how the sink's accept loop holds up (both on one run of the release binary, so compare
# the figures within one run):
#   slow   — wrk throughput and p99 of GET /callbacks/KEY (a steady state: the store does not grow) alone, then with SLOW (1000) clients sending a header byte
#            a second (bench/slow_clients.py; they reconnect when the header-read timeout closes them).
#   h2     — RSS of the sink holding N (10000) long-polls over HTTP/2 on C (10) connections (h2load),
#            against its RSS before; then one POST answers them all. `h1`: the same over HTTP/1.1,
#            one connection per long-poll (needs `ulimit -n` above N).
# Needs wrk and h2load (Debian: wrk, nghttp2-client) and python3.
#   cargo build --release && bench/serving.sh slow|h2|h1|all
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${EVENTUAL_BIN:-target/release/eventual}
SLOW=${SLOW:-1000} DURATION=${DURATION:-10} CONNS=${CONNS:-32} THREADS=${THREADS:-2}
N=${N:-10000} C=${C:-10}

start_sink() { # start_sink [flags…]: sets PID and URL
  local out; out=$(mktemp)
  "$BIN" sink --bind 127.0.0.1:0 --max-callbacks 100000000 "$@" >"$out" 2>/dev/null &
  PID=$!
  until grep -q "listening on" "$out" 2>/dev/null; do sleep 0.05; done
  URL=$(sed -n 's/^listening on //p' "$out" | head -1); rm -f "$out"
}
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
stop_sink() { kill "$PID"; wait "$PID" 2>/dev/null || true; }
wrk_line() { # wrk_line LABEL: one line, requests/s and p99
  wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency "$URL/callbacks/bench" |
    awk -v l="$1" '/Requests\/sec/ {r=$2} /^ +99%/ {p=$2} END {printf "%-28s requests/s=%s p99=%s\n", l, r, p}'
}

slow() {
  start_sink
  curl -s -o /dev/null -X POST "$URL/callbacks/bench" -d '{"status":"done"}'
  wrk -t"$THREADS" -c"$CONNS" -d3s "$URL/callbacks/bench" >/dev/null # warm-up
  local slow_pid=
  for round in 1 2; do
    wrk_line "alone ($round)"
    python3 bench/slow_clients.py "${URL#http://}" "$SLOW" 2>/tmp/slow_clients.$$ &
    slow_pid=$!
    sleep 12 # let them connect and the header-read timeout start cycling them
    echo "sockets to the sink with slow clients: $(ss -tn state established "( sport = :${URL##*:} )" | tail -n +2 | wc -l)"
    wrk_line "with $SLOW slow clients ($round)"
    kill "$slow_pid"; wait "$slow_pid" 2>/dev/null || true
    tail -1 /tmp/slow_clients.$$; rm -f /tmp/slow_clients.$$
  done
  wrk_line "alone (3)"
  stop_sink
}

h2() { # h2 [--h1]
  local proto=h2 c=$C
  if [ "${1:-}" = --h1 ]; then proto=h1 c=$N; fi
  start_sink
  curl -s -o /dev/null "$URL/healthz"
  local before; before=$(rss_kib "$PID")
  local out; out=$(mktemp)
  h2load ${1:-} -n "$N" -c "$c" -m $(((N + c - 1) / c)) "$URL/callbacks/h2-wait?wait=120s" >"$out" 2>&1 &
  local h2_pid=$!
  until [ "$(curl -s "$URL/healthz" | python3 -c 'import json,sys; print(json.load(sys.stdin)["waiting"])')" -ge "$N" ]; do sleep 0.2; done
  local held; held=$(rss_kib "$PID")
  curl -s -o /dev/null -X POST "$URL/callbacks/h2-wait" -d '{}'
  wait "$h2_pid" || true
  echo "$proto long-polls=$N connections=$c rss_before_kib=$before rss_holding_kib=$held extra_mib=$(awk -v a="$before" -v b="$held" 'BEGIN {printf "%.1f", (b-a)/1024}')"
  grep -E "^requests:|^status codes:" "$out"; rm -f "$out"
  stop_sink
}

case "${1:-all}" in
  slow) slow ;;
  h2) h2 ;;
  h1) h2 --h1 ;;
  all) slow; h2; h2 --h1 ;;
  *) echo "usage: $0 slow|h2|h1|all" >&2; exit 2 ;;
esac
