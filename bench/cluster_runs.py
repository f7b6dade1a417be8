#!/usr/bin/env python3
"""bench/cluster_runs.py — runs across `eventual serve --database` nodes (cluster mode).

What it measures, for 1 node and for N nodes (default 3) on one PostgreSQL database each time:
  - drain: 100 environments paused, RUNS runs (default 1,000) submitted to random nodes, every
    environment resumed at once; drain time = last run's end - first run's start (the database's
    clock, from the runs' own timestamps);
  - hand-over: for consecutive runs of one environment, next run's start - previous run's end
    (median and p90), split by whether the next run executed on another node than the previous.
  - with --handover N: N runs queued on ONE environment (each hand-over alone, nothing else
    running), from the logs: the holder's last line ("run N passed") -> the next run's first
    line, split by same node / another node.
Every run is `pass.sh` from the repository's fixtures (one echo and an exit).

Usage: bench/cluster_runs.py --bin target/release/eventual --database postgres://u@host:port/
  (the URL without a database name: each rep creates `bench_<n>` with createdb-like SQL through
  psql, which must be on PATH or given with --psql). Medians of --reps (default 3).
Compare only figures of one run: the machine is shared.
"""

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(REPO, "fixtures", "tests")


def call(method, url, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read() or b"null")


def ts(text):
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()


def start_node(binary, url, name, envs, data_dir):
    proc = subprocess.Popen(
        [binary, "serve", "--bind", "127.0.0.1:0", "--data-dir", data_dir, "--sample-tests", FIXTURES,
         "--database", url, "--node-name", name, "--envs", str(envs)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    first = proc.stdout.readline().strip()
    if not first.startswith("listening on "):
        raise SystemExit(f"node {name} did not start: {first!r}")
    return proc, first.removeprefix("listening on ")


def parallel(jobs, work, threads=32):
    items = list(jobs)
    lock = threading.Lock()
    out = []

    def worker():
        while True:
            with lock:
                if not items:
                    return
                item = items.pop()
            result = work(item)
            with lock:
                out.append(result)

    ts_ = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts_:
        t.start()
    for t in ts_:
        t.join()
    return out


def one(binary, url, nodes, runs, envs):
    procs, urls = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(nodes):
            proc, base = start_node(binary, url, f"n{i + 1}", envs, os.path.join(tmp, f"n{i + 1}"))
            procs.append(proc)
            urls.append(base)
        try:
            parallel(range(1, envs + 1), lambda e: call("POST", f"{urls[0]}/api/envs/{e}/pause"))
            rng = random.Random(7)
            plan = [(rng.choice(urls), 1 + i % envs) for i in range(runs)]
            parallel(plan, lambda p: call("POST", f"{p[0]}/api/runs", {"username": "bench", "env_id": p[1], "tests": ["pass.sh"]}))
            parallel(range(1, envs + 1), lambda e: call("POST", f"{rng.choice(urls)}/api/envs/{e}/resume"))
            while True:
                left = call("GET", f"{urls[0]}/api/runs?status=queued&limit=1")["runs"] + \
                    call("GET", f"{urls[0]}/api/runs?status=running&limit=1")["runs"]
                if not left:
                    break
                time.sleep(0.2)
            got, before = [], ""
            while True:
                page = call("GET", f"{urls[0]}/api/runs?limit=200{before}")["runs"]
                if not page:
                    break
                got += page
                before = f"&before={page[-1]['id']}"
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait()
    got.sort(key=lambda r: r["id"])
    bad = [r for r in got if r["status"] != "passed"]
    if bad:
        raise SystemExit(f"{len(bad)} runs did not pass, e.g. {bad[0]}")
    drain = max(ts(r["finished_at"]) for r in got) - min(ts(r["started_at"]) for r in got)
    gaps = {"cross": [], "same": []}
    by_env = {}
    for r in got:
        by_env.setdefault(r["env_id"], []).append(r)
    for rs in by_env.values():
        for a, b in zip(rs, rs[1:]):
            kind = "cross" if a.get("node") != b.get("node") else "same"
            gaps[kind].append((ts(b["started_at"]) - ts(a["finished_at"])) * 1000)
    per_node = {}
    for r in got:
        per_node[r.get("node")] = per_node.get(r.get("node"), 0) + 1
    return drain, gaps, per_node


def log_ts(line):
    return ts(line.split(" ", 1)[0])


def handover(binary, url, nodes, runs):
    procs, urls = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(nodes):
            proc, base = start_node(binary, url, f"n{i + 1}", 1, os.path.join(tmp, f"n{i + 1}"))
            procs.append(proc)
            urls.append(base)
        try:
            call("POST", f"{urls[0]}/api/envs/1/pause")
            rng = random.Random(11)
            ids = [call("POST", f"{rng.choice(urls)}/api/runs", {"username": "bench", "env_id": 1, "tests": ["pass.sh"]})["id"]
                   for _ in range(runs)]
            call("POST", f"{urls[-1]}/api/envs/1/resume")
            while call("GET", f"{urls[0]}/api/runs/{ids[-1]}")["status"] in ("queued", "running"):
                time.sleep(0.2)
            got = [call("GET", f"{urls[0]}/api/runs/{i}") for i in ids]
            logs = {}
            for i in ids:
                with urllib.request.urlopen(f"{urls[0]}/api/runs/{i}/log", timeout=60) as r:
                    logs[i] = [l for l in r.read().decode().splitlines() if " --- queued on env" not in l]
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait()
    gaps = {"cross": [], "same": []}
    for a, b in zip(got, got[1:]):
        kind = "cross" if a.get("node") != b.get("node") else "same"
        gaps[kind].append((log_ts(logs[b["id"]][0]) - log_ts(logs[a["id"]][-1])) * 1000)
    return gaps


def psql(psql_bin, url, sql):
    subprocess.run([psql_bin, url + "postgres", "-qc", sql], check=True, stdout=subprocess.DEVNULL)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(REPO, "target", "release", "eventual"))
    ap.add_argument("--database", required=True, help="postgres://user@host:port/ (no database name)")
    ap.add_argument("--psql", default="psql")
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--envs", type=int, default=100)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--handover", type=int, default=0, help="measure N lone hand-overs on one environment instead")
    args = ap.parse_args()
    if args.handover:
        db = f"bench_{os.getpid()}_h"
        psql(args.psql, args.database, f"CREATE DATABASE {db}")
        try:
            gaps = handover(args.bin, args.database + db, args.nodes, args.handover)
        finally:
            psql(args.psql, args.database, f"DROP DATABASE {db} WITH (FORCE)")
        for kind in ("same", "cross"):
            xs = gaps[kind]
            if xs:
                print(f"hand-over ({kind} node), holder's last line -> next run's first line: "
                      f"median {statistics.median(xs):.1f} ms, p90 {statistics.quantiles(xs, n=10)[-1]:.1f} ms ({len(xs)})")
        return
    results = {}
    n = 0
    for nodes in (1, args.nodes):
        drains, cross, same, spread = [], [], [], None
        for _ in range(args.reps):
            n += 1
            db = f"bench_{os.getpid()}_{n}"
            psql(args.psql, args.database, f"CREATE DATABASE {db}")
            try:
                drain, gaps, spread = one(args.bin, args.database + db, nodes, args.runs, args.envs)
            finally:
                psql(args.psql, args.database, f"DROP DATABASE {db} WITH (FORCE)")
            drains.append(drain)
            cross += gaps["cross"]
            same += gaps["same"]
            print(f"{nodes} node(s): drain {drain:.2f} s, runs per node {spread}", file=sys.stderr)
        results[nodes] = (statistics.median(drains), cross, same)

    def q(xs, p):
        return statistics.quantiles(xs, n=100)[p - 1] if len(xs) >= 2 else float("nan")

    print(f"| figure | 1 node | {args.nodes} nodes |")
    print("|---|---|---|")
    print(f"| drain of {args.runs} runs over {args.envs} environments (median of {args.reps}) | "
          f"{results[1][0]:.2f} s | {results[args.nodes][0]:.2f} s |")
    one_same = results[1][2]
    many_cross, many_same = results[args.nodes][1], results[args.nodes][2]

    def cell(xs):
        return f"{statistics.median(xs):.1f} / {q(xs, 90):.1f} ({len(xs)})" if xs else "—"

    print(f"| hand-over on the same node: median / p90 ms (pairs) | {cell(one_same)} | {cell(many_same)} |")
    print(f"| hand-over to another node: median / p90 ms (pairs) | — | {cell(many_cross)} |")

if __name__ == "__main__":
    main()
