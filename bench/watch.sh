#!/usr/bin/env bash
# What watching N (10000) keys costs the sink, two ways, on the release binary:
#   watch — one `GET /watch?prefix=` SSE stream (curl, HTTP/2 prior knowledge) while N callbacks
#           are posted to N keys (h2load); RSS once the stream has delivered all N, against a
#           control run posting the same N callbacks with nobody watching (the records' own cost).
#   polls — N long-polls (`?wait=120s`, one per key) over HTTP/2 on C (10) connections (h2load):
#           RSS while they are held, against before; then the N callbacks answer them all.
# Needs h2load (Debian: nghttp2-client), curl and python3.
#   CARGO_PROFILE_RELEASE_LTO=thin CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 cargo build --release
#   bench/watch.sh [watch|polls|all]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${EVENTUAL_BIN:-target/release/eventual}
N=${N:-10000} C=${C:-10}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

start_sink() { # sets PID and URL
  "$BIN" sink --bind 127.0.0.1:0 --max-callbacks 100000000 >"$work/out" 2>/dev/null &
  PID=$!
  until grep -q "listening on" "$work/out" 2>/dev/null; do sleep 0.05; done
  URL=$(sed -n 's/^listening on //p' "$work/out" | head -1)
  curl -s -o /dev/null "$URL/healthz"
}
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$PID/status"; }
stop_sink() { kill "$PID"; wait "$PID" 2>/dev/null || true; }
mib() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f", (b-a)/1024}'; }
waiting() { curl -s "$URL/healthz" | python3 -c 'import json,sys; print(json.load(sys.stdin)["waiting"])'; }

echo '{"status":"done","total":10.5}' >"$work/body.json"
post_all() { # N callbacks, one per key, over HTTP/2 on C connections
  seq 0 $((N - 1)) | sed "s|^|$URL/callbacks/w%2F|" >"$work/posts"
  h2load -n "$N" -c "$C" -m 10 -d "$work/body.json" -i "$work/posts" >"$work/post.log" 2>&1
  grep -E "^status codes:" "$work/post.log" | sed 's/^/  posts: /'
}

watch() {
  start_sink
  post_all >/dev/null
  local control; control=$(rss_kib)
  stop_sink

  start_sink
  local before; before=$(rss_kib)
  curl -sN --http2-prior-knowledge "$URL/watch?prefix=w/" >"$work/events" &
  local curl_pid=$!
  until [ "$(waiting)" -ge 1 ]; do sleep 0.05; done
  post_all
  until [ "$(grep -c '^event: callback' "$work/events")" -ge "$N" ]; do sleep 0.2; done
  local after; after=$(rss_kib)
  kill "$curl_pid"; wait "$curl_pid" 2>/dev/null || true
  echo "watch keys=$N streams=1 rss_before_kib=$before rss_after_kib=$after rss_control_kib=$control" \
    "extra_over_control_mib=$(mib "$control" "$after") events=$(grep -c '^event: callback' "$work/events")"
  stop_sink
}

polls() {
  start_sink
  local before; before=$(rss_kib)
  seq 0 $((N - 1)) | sed "s|^|$URL/callbacks/w%2F|; s|$|?wait=120s|" >"$work/polls"
  h2load -n "$N" -c "$C" -m $(((N + C - 1) / C)) -i "$work/polls" >"$work/polls.log" 2>&1 &
  local h2_pid=$!
  until [ "$(waiting)" -ge "$N" ]; do sleep 0.2; done
  local held; held=$(rss_kib)
  post_all
  wait "$h2_pid" || true
  local after; after=$(rss_kib)
  echo "polls keys=$N connections=$C rss_before_kib=$before rss_holding_kib=$held rss_answered_kib=$after" \
    "extra_holding_mib=$(mib "$before" "$held")"
  grep -E "^status codes:" "$work/polls.log" | sed 's/^/  long-polls: /'
  stop_sink
}

case "${1:-all}" in
  watch) watch ;;
  polls) polls ;;
  all) watch; polls ;;
  *) echo "usage: $0 watch|polls|all" >&2; exit 2 ;;
esac
