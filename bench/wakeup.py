#!/usr/bin/env python3
"""Cross-node wake-up latency of `eventual sink` in cluster mode (used by bench/cluster.sh).

    wakeup.py A_PORT B_PORT [TRIALS]

Per trial, sequentially: a thread sends `GET /callbacks/{key}?wait=10s` to node B on its own
keep-alive connection; the main thread polls B's `GET /healthz` until `"waiting"` counts that poll
(so the long-poll is certainly registered), then POSTs the key to node A on another keep-alive
connection. Latency = time the waiter read B's 200 minus time the poster read A's 2xx
(both time.perf_counter_ns(), CLOCK_MONOTONIC, same process). A negative value means B answered
before the poster had read A's reply; it is kept as measured. Prints one JSON line.
"""
import http.client, json, sys, threading, time, uuid

a_port, b_port = int(sys.argv[1]), int(sys.argv[2])
trials = int(sys.argv[3]) if len(sys.argv) > 3 else 500
body = json.dumps({"request_id": "x", "response": {"pad": "x" * 900}}).encode()

def conn(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.connect()
    return c

def waiting(c):
    c.request("GET", "/healthz")
    r = c.getresponse()
    return int(json.loads(r.read()).get("waiting", 0))

poster, health, waiter = conn(a_port), conn(b_port), conn(b_port)
lat_ns, errors = [], 0
tag = uuid.uuid4().hex[:8]
for i in range(trials):
    key = f"wake-{tag}-{i:05d}"
    res = {}
    base = waiting(health)
    def wait():
        waiter.request("GET", f"/callbacks/{key}?wait=10s")
        r = waiter.getresponse()
        r.read()
        res["t"] = time.perf_counter_ns()
        res["status"] = r.status
    th = threading.Thread(target=wait)
    th.start()
    deadline = time.monotonic() + 5
    while waiting(health) <= base:
        if time.monotonic() > deadline:
            break
        time.sleep(0.0005)
    poster.request("POST", f"/callbacks/{key}", body=body,
                   headers={"Content-Type": "application/json"})
    r = poster.getresponse()
    r.read()
    t_ack = time.perf_counter_ns()
    th.join()
    if r.status // 100 != 2 or res.get("status") != 200:
        errors += 1
        continue
    lat_ns.append(res["t"] - t_ack)

lat = sorted(x / 1e6 for x in lat_ns)
def pct(p):
    return round(lat[min(len(lat) - 1, int(p / 100 * len(lat)))], 3) if lat else None
print(json.dumps({"trials": trials, "ok": len(lat), "errors": errors,
                  "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99),
                  "max_ms": round(lat[-1], 3) if lat else None,
                  "min_ms": round(lat[0], 3) if lat else None}))
