#!/usr/bin/env bash
# Instructions per request of a sink under the comparison benchmark's load generator (cbload),
# counted by valgrind's callgrind: exact user-space instruction counts, so the figure does not move
# with whatever else runs on the machine (wall-clock req/s on a shared 2-core VM does).
#
#   bench/ipr.sh ingest|retrieve eventual|limit [OUT_DIR]
#
# The server starts under callgrind with instrumentation off; a warm-up (WARM requests, and for
# retrieve STORED callbacks posted first) runs uninstrumented; then instrumentation is switched on,
# cbload drives CONNS keep-alive connections for SECONDS, the counters are dumped and the server is
# stopped. Prints instructions per answered request (total Ir / answers counted by cbload, which
# undercounts by at most CONNS answers that land after its window) and leaves the callgrind dump in
# OUT_DIR (default /tmp/ipr) for `callgrind_annotate --inclusive=yes FILE`.
#
# Needs valgrind (Debian: valgrind), curl, a release build (`cargo build --release`; keep symbols
# with CARGO_PROFILE_RELEASE_DEBUG=line-tables-only for the annotation), and cbload and the limit
# server from the comparison benchmark's setup (CBLOAD, LIMIT_BIN).
set -euo pipefail
cd "$(dirname "$0")/.."
SCENARIO=${1:?ingest or retrieve} PEER=${2:?eventual or limit} OUT=${3:-/tmp/ipr}
BIN=${EVENTUAL_BIN:-target/release/eventual}
CBLOAD=${CBLOAD:?path to cbload} LIMIT_BIN=${LIMIT_BIN:-}
CONNS=${CONNS:-32} SECONDS_=${SECONDS:-20} WARM=${WARM:-2000} STORED=${STORED:-10000}
PORT=${PORT:-18199}
URL="http://127.0.0.1:$PORT"
mkdir -p "$OUT"
tag="$SCENARIO-$PEER-$(date +%H%M%S)"

case "$PEER" in
  eventual) cmd=("$BIN" sink --bind "127.0.0.1:$PORT") ;;
  limit) cmd=("${LIMIT_BIN:?path to limit-server}") ;; # reads PORT
  *) echo "unknown peer $PEER" >&2; exit 2 ;;
esac
PORT=$PORT valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT/$tag.%p" \
  "${cmd[@]}" >"$OUT/$tag.log" 2>&1 &
PID=$!
trap 'kill "$PID" 2>/dev/null || true' EXIT
# Wait until it answers (a bench script, not a test: polling the port is the readiness signal).
for _ in $(seq 600); do
  curl -s -o /dev/null "$URL/callbacks/ready" && break
  kill -0 "$PID" 2>/dev/null || { cat "$OUT/$tag.log" >&2; exit 1; }
  sleep 0.2
done
target=(--base "$URL")
if [ "$SCENARIO" = retrieve ]; then
  "$CBLOAD" preload "${target[@]}" --conns "$CONNS" --count "$STORED" --id-prefix pre >/dev/null
fi
"$CBLOAD" preload "${target[@]}" --conns "$CONNS" --count "$WARM" --id-prefix warm >/dev/null
callgrind_control -i on "$PID" >/dev/null 2>&1
if [ "$SCENARIO" = retrieve ]; then
  "$CBLOAD" retrieve "${target[@]}" --conns "$CONNS" --duration "$SECONDS_" --warmup 0 \
    --id-prefix pre --id-count "$STORED" >"$OUT/$tag.json"
else
  "$CBLOAD" ingest "${target[@]}" --conns "$CONNS" --duration "$SECONDS_" --warmup 0 >"$OUT/$tag.json"
fi
callgrind_control -d "$PID" >/dev/null 2>&1
kill "$PID"
wait "$PID" 2>/dev/null || true
trap - EXIT
dump=$(ls -t "$OUT/$tag".*.1 2>/dev/null | head -1)
[ -n "$dump" ] || dump=$(ls -t "$OUT/$tag".* | grep -v '\.log$\|\.json$' | head -1)
ir=$(sed -n 's/^summary: *//p;s/^totals: *//p' "$dump" | head -1 | awk '{print $1}')
ok=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["result"]; print(r["ok"] + r["not_found"])' "$OUT/$tag.json")
python3 -c 'import sys; ir, ok = int(sys.argv[1]), int(sys.argv[2]); print(f"{sys.argv[3]} {sys.argv[4]}: {ir:,} Ir / {ok:,} answers = {ir / ok:,.0f} instructions/request  ({sys.argv[5]})")' \
  "$ir" "$ok" "$SCENARIO" "$PEER" "$dump"
