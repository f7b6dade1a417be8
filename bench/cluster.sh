#!/usr/bin/env bash
# bench/cluster.sh — reproducible benchmark of `eventual sink --database` (cluster mode).
#
# What it does, in order:
#   1. Starts a private PostgreSQL 15 from $PG_BIN (initdb + postgres, as the `postgres` user via
#      runuser when run as root) in a temp dir, on a free port, unix socket in that dir (-k),
#      DEFAULT durability (fsync=on, synchronous_commit=on: the sink acknowledges after commit).
#      Only max_connections is raised (2 nodes x 32 pool + listeners + pgbench). A trap stops it
#      and removes the dir (and the sink nodes) at exit.
#   2. Anchor: pgbench -n -c 32 -j 2 -T $DURATION with a one-INSERT custom script (bigint key +
#      1000-byte text) — what PG itself commits per second; $REPS reps -> median tps.
#   3. Ingest: two `eventual sink --database URL --bind 127.0.0.1:0` nodes on that PG (fresh
#      database per rep), both driven at once by cbload ingest, $CONNS_PER_NODE connections
#      each, $WARMUP s warm-up + $DURATION s measured; sum of the two rates; $REPS reps -> median.
#      Ratio = ingest / pgbench.
#   4. Diagnosis (PROFILE=1, default): pgbench with the sink's own INSERT…CTE statement
#      (copied from sink/src/postgres/records.rs) on the sink schema — PG's cost of our statement
#      without our HTTP server (usage shard = received_ms % 16 as the sink does) — with the
#      pg_notify; without it; without it and a random shard; without it and no usage UPDATE; and
#      with the NOTIFY moved to a transaction of its own with synchronous_commit=off (candidate
#      fix); same -c 32.
#   5. Cross-node wake-up: bench/wakeup.py — long-poll GET ?wait=10s on node B (registration
#      confirmed via B's /healthz "waiting"), POST to node A, latency = A's 2xx -> B's 200;
#      $TRIALS sequential trials -> p50/p99.
#   6. Prints one summary table, also written to bench/results/cluster-<UTC time>.md
#      (bench/results/ is git-ignored: results are per machine).
#
# Usage (from anywhere):
#   bench/cluster.sh
# Knobs (environment): EVENTUAL_BIN (default: $CARGO_TARGET_DIR or <repo>/target /release/eventual,
#   build it first: cargo build --release --bin eventual), CBLOAD (default
#   /tmp/peers/target/release/cbload; build: /work/shared/bench/setup.sh cbload), PG_BIN
#   (/usr/lib/postgresql/15/bin), REPS (3), DURATION (10), WARMUP (2), CONNS_PER_NODE (16),
#   PGBENCH_CLIENTS (32), TRIALS (500), PROFILE (1).
# Caveat: numbers depend heavily on the machine (2 shared cores here, fsync to whatever disk the
#   temp dir is on); compare only ratios measured in the same run.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
EVENTUAL_BIN=${EVENTUAL_BIN:-${CARGO_TARGET_DIR:-$repo/target}/release/eventual}
CBLOAD=${CBLOAD:-/tmp/peers/target/release/cbload}
REPS=${REPS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNS_PER_NODE=${CONNS_PER_NODE:-16}
PGBENCH_CLIENTS=${PGBENCH_CLIENTS:-32}
TRIALS=${TRIALS:-500}
PROFILE=${PROFILE:-1}

for f in "$PG_BIN/initdb" "$PG_BIN/postgres" "$PG_BIN/pgbench" "$PG_BIN/psql" "$EVENTUAL_BIN" "$CBLOAD"; do
  [[ -x $f ]] || { echo "missing: $f (see the header of $0)" >&2; exit 1; }
done

log() { echo "[$(date -u +%T)] $*" >&2; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

work=$(mktemp -d /tmp/eventual-cluster-bench.XXXXXX)
chmod 755 "$work"
node_pids=()
pg_pid=
cleanup() {
  set +e
  for p in "${node_pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${node_pids[@]}"; do wait "$p" 2>/dev/null; done
  # pg_pid is the background subshell/runuser, not the postmaster: stop it with pg_ctl (fast).
  if [[ -n $pg_pid ]]; then
    as_pg "$PG_BIN/pg_ctl" -D "$work/data" -m fast -w -t 30 stop >/dev/null 2>&1 ||
      { [[ -f $work/data/postmaster.pid ]] && kill -INT "$(head -1 "$work/data/postmaster.pid")"; }
    wait "$pg_pid" 2>/dev/null
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

as_pg() { if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }

# ---- 1. PostgreSQL ---------------------------------------------------------------------------
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$work/data" "$work/sock"
[[ $(id -u) == 0 ]] && chown -R postgres: "$work"
as_pg "$PG_BIN/initdb" -D "$work/data" -U postgres --auth=trust -E UTF8 >"$work/initdb.log" 2>&1
as_pg "$PG_BIN/postgres" -D "$work/data" -p "$port" -k "$work/sock" -c listen_addresses=127.0.0.1 \
  -c max_connections=200 >"$work/pg.log" 2>&1 &
pg_pid=$!
psqlc() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$work/sock" -p "$port" -U postgres "$@"; }
for _ in $(seq 100); do psqlc -d postgres -c 'select 1' >/dev/null 2>&1 && break; sleep 0.1; done
psqlc -d postgres -c 'select 1' >/dev/null
pgver=$(psqlc -d postgres -Atc "select current_setting('server_version')||' fsync='||current_setting('fsync')||' synchronous_commit='||current_setting('synchronous_commit')")
log "PostgreSQL $pgver on port $port ($work)"

pgbench_tps() { # db script -> tps (excluding nothing; -n)
  "$PG_BIN/pgbench" -h "$work/sock" -p "$port" -U postgres -n -c "$PGBENCH_CLIENTS" -j 2 \
    -T "$DURATION" -f "$2" "$1" 2>"$work/pgbench.err" | awk '/^tps = /{print $3; exit}'
}

# ---- 2. Anchor: one-INSERT pgbench ----------------------------------------------------------
psqlc -d postgres -c 'CREATE DATABASE anchor'
psqlc -d anchor -c 'CREATE TABLE anchor (k bigint, body text)'
cat >"$work/anchor.sql" <<'SQL'
\set k random(1, 1000000000)
INSERT INTO anchor (k, body) VALUES (:k, repeat('x', 1000));
SQL
anchor=()
for r in $(seq "$REPS"); do
  t=$(pgbench_tps anchor "$work/anchor.sql"); anchor+=("$t"); log "pgbench anchor rep $r: $t tps"
done
anchor_med=$(printf '%s\n' "${anchor[@]}" | median)

# ---- 3. Ingest through two nodes -------------------------------------------------------------
url="postgres://postgres@127.0.0.1:$port/sink"
start_node() { # name -> sets port var node_port
  local out="$work/$1.out"
  "$EVENTUAL_BIN" sink --database "$url" --bind 127.0.0.1:0 >"$out" 2>"$work/$1.err" &
  node_pids+=($!)
  for _ in $(seq 300); do grep -q '^listening on http://' "$out" 2>/dev/null && break; sleep 0.05; done
  node_port=$(head -1 "$out" | sed -n 's#^listening on http://[^:]*:\([0-9]*\).*#\1#p')
  [[ -n $node_port ]] || { echo "node $1 did not start:" >&2; cat "$work/$1.err" >&2; exit 1; }
}
stop_nodes() {
  for p in "${node_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${node_pids[@]}"; do wait "$p" 2>/dev/null || true; done
  node_pids=()
}
fresh_sink_db() { psqlc -d postgres -c 'DROP DATABASE IF EXISTS sink' -c 'CREATE DATABASE sink'; }

ingest=(); ing_detail=()
for r in $(seq "$REPS"); do
  fresh_sink_db
  start_node a; pa=$node_port
  start_node b; pb=$node_port
  "$CBLOAD" ingest --base "http://127.0.0.1:$pa" --conns "$CONNS_PER_NODE" --duration "$DURATION" \
    --warmup "$WARMUP" --id-prefix "a$r-" >"$work/ing-a.json" &
  la=$!
  "$CBLOAD" ingest --base "http://127.0.0.1:$pb" --conns "$CONNS_PER_NODE" --duration "$DURATION" \
    --warmup "$WARMUP" --id-prefix "b$r-" >"$work/ing-b.json" &
  lb=$!
  wait "$la" "$lb"
  line=$(python3 - "$work/ing-a.json" "$work/ing-b.json" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
err = sum(x["result"]["errors"] for x in (a, b))
print(round(a["rps"] + b["rps"], 1), round(a["rps"], 1), round(b["rps"], 1),
      a["latency"].get("p50_ms"), a["latency"].get("p99_ms"), err)
PY
)
  read -r sum ra rb p50 p99 errs <<<"$line"
  ingest+=("$sum"); ing_detail+=("rep $r: $sum/s (A $ra + B $rb; A p50 ${p50} ms p99 ${p99} ms; errors $errs)")
  log "ingest rep $r: $sum/s (A $ra, B $rb, errors $errs)"
  stored=$(psqlc -d sink -Atc 'select count(*) from callbacks')
  log "  rows stored: $stored"
  stop_nodes
done
ingest_med=$(printf '%s\n' "${ingest[@]}" | median)
ratio=$(awk -v a="$ingest_med" -v b="$anchor_med" 'BEGIN{printf "%.2f", a/b}')

# ---- 4. Diagnosis: our statement in pgbench --------------------------------------------------
cte_med=; cte_nn_med=
if [[ $PROFILE == 1 ]]; then
  fresh_sink_db
  start_node a; stop_nodes   # migrate the schema
  # The INSERT of sink/src/postgres/records.rs with pgbench variables; key = random 16-char id.
  cat >"$work/cte.sql" <<'SQL'
\set k random(1, 1000000000000)
WITH k AS (
    INSERT INTO callback_keys AS c (key, last_seq, count, last_ms)
    SELECT convert_to('cb-' || :k, 'UTF8'), 1, 1, (extract(epoch from statement_timestamp())*1000)::bigint
    WHERE (SELECT sum(stored) FROM callback_usage)::bigint < 9000000000000000000::bigint
    ON CONFLICT (key) DO UPDATE
        SET last_seq = c.last_seq + 1, count = c.count + 1, last_ms = EXCLUDED.last_ms
    RETURNING last_seq
), r AS (
    INSERT INTO callbacks (key, seq, received_ms, record)
    SELECT convert_to('cb-' || :k, 'UTF8'), last_seq, (extract(epoch from statement_timestamp())*1000)::bigint,
           convert_to(repeat('x', 1000), 'UTF8') || convert_to(last_seq::text, 'UTF8') || '\x7d'::bytea
    FROM k
    RETURNING seq
), u AS (
    UPDATE callback_usage SET stored = stored + 1
    WHERE shard = ((extract(epoch from statement_timestamp())*1000)::bigint % 16)::smallint AND EXISTS (SELECT 1 FROM r)
)
SELECT seq, pg_notify('eventual_callbacks', encode(convert_to('cb-' || :k, 'UTF8'), 'hex'))::text FROM r;
SQL
  sed 's/, pg_notify(.*)::text FROM r;/ FROM r;/' "$work/cte.sql" >"$work/cte-nonotify.sql"
  # Usage-counter contention: the sink picks the shard row as received_ms % 16, so every insert
  # of the same millisecond updates the same row; compare a random shard, and no counter UPDATE.
  # (statement_timestamp() is stable: evaluated once, like the sink's $6; clock_timestamp() or
  # random() in the WHERE would be evaluated per row and scan all 16.)
  { echo '\set shard random(0, 15)'
    sed 's/WHERE shard = ((extract.*)::smallint AND/WHERE shard = :shard AND/' "$work/cte-nonotify.sql"; } >"$work/cte-randshard.sql"
  sed '/^), u AS (/,/^)$/d' "$work/cte-nonotify.sql" | sed 's/^    RETURNING seq$/    RETURNING seq\n)/' >"$work/cte-nousage.sql"
  # Candidate fix: the CTE without pg_notify, then the NOTIFY in a transaction of its own with
  # synchronous_commit off (a notification is only a hint), so the notify queue's commit lock is
  # not held across a WAL flush.
  { cat "$work/cte-nonotify.sql"
    echo "BEGIN;"
    echo "SET LOCAL synchronous_commit = off;"
    echo "SELECT pg_notify('eventual_callbacks', encode(convert_to('cb-' || :k, 'UTF8'), 'hex'));"
    echo "COMMIT;"; } >"$work/cte-split.sql"
  cte=(); cte_nn=(); cte_sp=(); cte_rs=(); cte_nu=()
  for r in $(seq "$REPS"); do
    t=$(pgbench_tps sink "$work/cte.sql"); cte+=("$t")
    u=$(pgbench_tps sink "$work/cte-nonotify.sql"); cte_nn+=("$u")
    v=$(pgbench_tps sink "$work/cte-split.sql"); cte_sp+=("$v")
    x=$(pgbench_tps sink "$work/cte-randshard.sql"); cte_rs+=("$x")
    y=$(pgbench_tps sink "$work/cte-nousage.sql"); cte_nu+=("$y")
    log "pgbench our CTE rep $r: $t tps with NOTIFY, $u without, $v NOTIFY split off; no NOTIFY + random shard $x, + no usage UPDATE $y"
  done
  cte_med=$(printf '%s\n' "${cte[@]}" | median)
  cte_nn_med=$(printf '%s\n' "${cte_nn[@]}" | median)
  cte_sp_med=$(printf '%s\n' "${cte_sp[@]}" | median)
  cte_rs_med=$(printf '%s\n' "${cte_rs[@]}" | median)
  cte_nu_med=$(printf '%s\n' "${cte_nu[@]}" | median)
fi

# ---- 5. Cross-node wake-up -------------------------------------------------------------------
fresh_sink_db
start_node a; pa=$node_port
start_node b; pb=$node_port
wake=$(python3 "$here/wakeup.py" "$pa" "$pb" "$TRIALS")
log "wake-up: $wake"
stop_nodes
read -r w50 w99 wok werr wmax <<<"$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["p50_ms"], d["p99_ms"], d["ok"], d["errors"], d["max_ms"])' "$wake")"

# ---- 6. Summary ------------------------------------------------------------------------------
mkdir -p "$here/results"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
res="$here/results/cluster-$stamp.md"
goal() { awk -v v="$1" -v g="$2" -v op="$3" 'BEGIN{ok = (op==">=") ? v>=g : v<=g; print ok ? "met" : "MISSED"}'; }
{
  echo "## eventual cluster bench $stamp"
  echo
  echo "host: $(nproc) cores, load avg at end $(cut -d' ' -f1-3 /proc/loadavg); commit $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo "PostgreSQL $pgver; reps $REPS x ${DURATION}s (ingest +${WARMUP}s warm-up); pgbench -c $PGBENCH_CLIENTS -j 2; cbload $CONNS_PER_NODE conns/node"
  echo
  echo "| measure | median | reps | goal |"
  echo "|---|---|---|---|"
  echo "| pgbench 1-INSERT anchor (tps) | $anchor_med | ${anchor[*]} | |"
  echo "| ingest, 2 nodes summed (callbacks/s) | $ingest_med | ${ingest[*]} | |"
  echo "| ratio ingest / pgbench | $ratio | | >= 0.5: $(goal "$ratio" 0.5 '>=') |"
  if [[ $PROFILE == 1 ]]; then
    echo "| pgbench, sink's INSERT…CTE + pg_notify (tps) | $cte_med | ${cte[*]} | (diagnosis) |"
    echo "| pgbench, sink's INSERT…CTE, no pg_notify (tps) | $cte_nn_med | ${cte_nn[*]} | (diagnosis) |"
    echo "| pgbench, CTE no pg_notify, random usage shard (tps) | $cte_rs_med | ${cte_rs[*]} | (diagnosis) |"
    echo "| pgbench, CTE no pg_notify, no usage UPDATE (tps) | $cte_nu_med | ${cte_nu[*]} | (diagnosis) |"
    echo "| pgbench, CTE then pg_notify in own tx, synchronous_commit=off (tps) | $cte_sp_med | ${cte_sp[*]} | (candidate fix) |"
  fi
  echo "| wake-up B after A's 2xx, p50 (ms) | $w50 | $wok ok, $werr errors | <= 5: $(goal "$w50" 5 '<=') |"
  echo "| wake-up p99 (ms) | $w99 | max $wmax | <= 20: $(goal "$w99" 20 '<=') |"
  echo
  printf '%s\n' "${ing_detail[@]/#/- ingest }"
} | tee "$res"
log "written: $res"
