#!/usr/bin/env bash
# Measures what stubs and verifiers cost the sink (release binary; compare figures within one run):
#   ingest — the comparison benchmark's `ingest` (BENCH_DIR/run.sh: cbload, 32 keep-alive
#            connections, every POST a new key, WARMUP s then DURATION s measured, the server
#            pinned to one core and cbload to the other), REPS interleaved rounds of three:
#            `limit` (the reference ceiling), `eventual` as it is, and `eventual` with a prefix
#            stub answering 200 and an hmac-sha256 verifier on that prefix. cbload sends no
#            signature header, so the verifier is pointed at a header it does send (Host,
#            "127.0.0.1:18097", minus the prefix "127.0.0.1:1": "8097", which decodes as hex):
#            every callback gets the whole check (HMAC-SHA256 of its body, compared in constant
#            time) and the verdict "mismatch", recorded without `reject`. That sink is started
#            here (fresh for each round) and run as the benchmark's `external` peer. Rates count
#            2xx answers only; the sink's capacity is raised so that no 507 is counted.
#   held   — N (1000) concurrent POSTs on N connections, each held by a stub with a 1 s delay
#            (bench/held_posts.py): how long each took to be answered, and the sink's RSS before
#            the connections, with them open, at its peak while they were held and after. REPS
#            rounds, each on a fresh sink, each followed by its control: N long-polls held 1 s
#            (`GET …?wait=1s` on keys nobody posts), what holding a request costs without a stub.
# Needs: the comparison benchmark (BENCH_DIR: its run.sh, setup.sh, peers/), with its load
# generator and `limit` built (`PEERS_DIR=… BENCH_DIR/setup.sh cbload` and `… setup.sh limit`),
# python3, curl, taskset.
#   cargo build --release && BENCH_DIR=/path/to/bench bench/stubs.sh ingest|held|all
# Knobs: EVENTUAL_BIN (target/release/eventual), PEERS_DIR (/tmp/peers), REPS (3), DURATION (10),
#   WARMUP (5), CONNS (32), N (1000), SERVER_CPU (1), LOAD_CPU (0: held_posts.py).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${EVENTUAL_BIN:-target/release/eventual}")
PEERS_DIR=${PEERS_DIR:-/tmp/peers}
ROUNDS=${REPS:-3} DURATION=${DURATION:-10} WARMUP=${WARMUP:-5} CONNS=${CONNS:-32} N=${N:-1000}
SERVER_CPU=${SERVER_CPU:-1} LOAD_CPU=${LOAD_CPU:-0}
PORT=18097 # fixed: the verifier's signature_prefix below spells it (limit: 18098, eventual: 18099)
export PEERS_DIR REPS=1 DURATION WARMUP CONNS # run.sh does one rep per call: rounds interleave

[ -x "$BIN" ] || { echo "no $BIN: cargo build --release first (or set EVENTUAL_BIN)" >&2; exit 1; }
log() { echo "[$(date -u +%T)] $*" >&2; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
work=$(mktemp -d /tmp/eventual-stubs-bench.XXXXXX)
PID=
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$work"' EXIT

start_sink() { # start_sink: a fresh in-memory sink on 127.0.0.1:$PORT, pinned; sets PID and URL
  local out="$work/sink.out"
  taskset -c "$SERVER_CPU" "$BIN" sink --bind "127.0.0.1:$PORT" --max-callbacks 100000000 \
    >"$out" 2>"$work/sink.err" &
  PID=$!
  until grep -q "listening on" "$out" 2>/dev/null; do
    kill -0 "$PID" 2>/dev/null || { cat "$work/sink.err" >&2; exit 1; }
    sleep 0.05
  done
  URL=$(sed -n 's/^listening on //p' "$out" | head -1)
}
stop_sink() { kill "$PID"; wait "$PID" 2>/dev/null || true; PID=; }
put() { # put PATH JSON: PUT it, fail loudly unless 2xx
  curl -sf -o /dev/null -X PUT "$URL$1" -H 'content-type: application/json' -d "$2" ||
    { echo "PUT $1 failed" >&2; exit 1; }
}
ok_rate() { # ok_rate DIR: acknowledged POSTs/s of the one rep in DIR, and its p50 and p99 (ms)
  python3 - "$1" <<'EOF'
import glob, json, sys
[path] = glob.glob(sys.argv[1] + "/ingest/*/rep1.json")
r = json.load(open(path))
print("%.0f %.2f %.2f" % (r["rps"] * r["result"]["ok"] / max(r["requests"], 1),
                          r["latency"]["p50_ms"], r["latency"]["p99_ms"]))
EOF
}

ingest() {
  [ -n "${BENCH_DIR:-}" ] && [ -x "$BENCH_DIR/run.sh" ] ||
    { echo "set BENCH_DIR to the comparison benchmark's folder (its run.sh)" >&2; exit 1; }
  local i
  for ((i = 1; i <= ROUNDS; i++)); do
    log "round $i/$ROUNDS: limit"
    RESULTS_DIR="$work/limit$i" PEER_PORT=18098 "$BENCH_DIR/run.sh" ingest limit >/dev/null
    log "round $i/$ROUNDS: eventual"
    RESULTS_DIR="$work/plain$i" PEER_PORT=18099 EVENTUAL_BIN="$BIN" \
      EVENTUAL_ARGS='--max-callbacks 100000000' \
      "$BENCH_DIR/run.sh" ingest eventual >/dev/null
    log "round $i/$ROUNDS: eventual with a prefix stub and a verifier"
    start_sink
    put /stubs/bench '{"prefix": "bench.", "responses": [{"status": 200}]}'
    put /verifiers/bench '{"prefix": "bench.", "scheme": "hmac-sha256", "secret": "bench-secret",
      "header": "host", "signature_prefix": "127.0.0.1:1", "encoding": "hex"}'
    RESULTS_DIR="$work/stubbed$i" BASE_URL="$URL" SERVER_PID="$PID" \
      POST_TMPL='POST /callbacks/bench.{id}' "$BENCH_DIR/run.sh" ingest external >/dev/null
    # Every callback went through both: the stub answered it, the verifier checked it.
    local hits sample
    hits=$(curl -sf "$URL/stubs/bench" | python3 -c 'import json,sys; print(json.load(sys.stdin)["hits"])')
    sample=$(curl -sf "$URL/callbacks?prefix=bench.&limit=1" | python3 -c '
import json, sys, urllib.request
key = json.load(sys.stdin)["keys"][0]["key"]
r = json.load(urllib.request.urlopen(sys.argv[1] + "/callbacks/" + key))
print(r["response"]["stub"], r["signature"]["valid"], r["signature"]["reason"].split(":")[0])' "$URL")
    log "stub hits $hits; a record: stub, valid, reason = $sample"
    stop_sink
  done
  echo "ingest, acknowledged POSTs/s (p50 / p99 ms), $ROUNDS interleaved rounds:"
  local peer rates
  for peer in limit plain stubbed; do
    rates=()
    for ((i = 1; i <= ROUNDS; i++)); do rates+=("$(ok_rate "$work/$peer$i")"); done
    printf '%-8s %s\n' "$peer" "$(printf '%s | ' "${rates[@]}")"
    printf '%s\n' "${rates[@]}" | awk '{print $1}' | median >"$work/$peer.median"
  done
  awk -v l="$(cat "$work/limit.median")" -v p="$(cat "$work/plain.median")" \
    -v s="$(cat "$work/stubbed.median")" 'BEGIN {
      printf "medians: limit %d/s, eventual %d/s (%.2f x limit), stub+verifier %d/s (%.2f x limit, %.2f x eventual)\n",
        l, p, p / l, s, s / l, s / p }'
}

held() {
  local i
  for ((i = 1; i <= ROUNDS; i++)); do
    start_sink
    put /stubs/held '{"prefix": "held.", "responses": [{"status": 200, "delay": "1s"}]}'
    curl -sf -o /dev/null "$URL/healthz"
    taskset -c "$LOAD_CPU" python3 bench/held_posts.py "${URL#http://}" "$PID" "$N" "held.$i."
    stop_sink
    start_sink # the control: as many requests held as long, by long-polls, without a stub
    curl -sf -o /dev/null "$URL/healthz"
    taskset -c "$LOAD_CPU" python3 bench/held_posts.py "${URL#http://}" "$PID" "$N" "wait.$i." \
      --long-poll
    stop_sink
  done
}

case "${1:-all}" in
  ingest) ingest ;;
  held) held ;;
  all) ingest; held ;;
  *) echo "usage: $0 ingest|held|all" >&2; exit 2 ;;
esac
