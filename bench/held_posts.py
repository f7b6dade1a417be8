#!/usr/bin/env python3
"""N concurrent POSTs that a stub holds: how long each took to be answered, and the sink's RSS.

    python3 bench/held_posts.py HOST:PORT PID [N] [PREFIX] [--long-poll]

Opens N HTTP/1.1 connections to the sink (all connected before anything is sent), then sends one
`POST /callbacks/{PREFIX}{i}` on each at once and reads the answers. The caller has set a stub on
PREFIX that holds every answer (e.g. `"delay": "1s"`). While the posts are held it samples the
sink's VmRSS (process PID) every 10 ms. Prints one line: the answers by status, the slowest answer
(from its own request's send), the time from the first send to the last answer, and the sink's RSS
before the connections, with them open, at its peak while they were held, and once every answer
is in. `--long-poll` sends `GET /callbacks/{PREFIX}{i}?wait=1s` instead (nothing is posted there,
so each is held 1 s and answered 404): the same number of held requests without a stub, to tell
what holding a request costs the server from what the stub adds. Standard library only; bounded:
every connection has a 30 s timeout, and the script ends when every request is answered.
"""

import asyncio
import sys
import time

BODY = b'{"status": "done", "result": {"ok": true}}'


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS for pid %d" % pid)


async def one(host, port, path, opened, go, long_poll):
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 30)
    opened.release()
    await go.wait()
    if long_poll:
        request = b"GET %s?wait=1s HTTP/1.1\r\nHost: %s:%d\r\n\r\n" % (path.encode(),
                                                                       host.encode(), port)
    else:
        request = (b"POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                   b"Content-Length: %d\r\n\r\n%s") % (path.encode(), host.encode(), port,
                                                        len(BODY), BODY)
    sent = time.monotonic()
    writer.write(request)
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    answered = time.monotonic()
    status = int(head.split(b" ", 2)[1])
    writer.close()
    return status, sent, answered


async def main(target, pid, n, prefix, long_poll):
    host, port = target.rsplit(":", 1)
    port = int(port)
    before = rss_kib(pid)
    opened = asyncio.Semaphore(0)
    go = asyncio.Event()
    tasks = [asyncio.ensure_future(one(host, port, "/callbacks/%s%d" % (prefix, i), opened, go,
                                 long_poll))
             for i in range(n)]
    for _ in range(n):
        await opened.acquire()
    connected = rss_kib(pid)
    go.set()
    peak = connected
    pending = set(tasks)
    while pending:
        _, pending = await asyncio.wait(pending, timeout=0.01)
        peak = max(peak, rss_kib(pid))
    results = [t.result() for t in tasks]
    after = rss_kib(pid)
    statuses = {}
    for status, _, _ in results:
        statuses[status] = statuses.get(status, 0) + 1
    slowest = max(answered - sent for _, sent, answered in results)
    fastest = min(answered - sent for _, sent, answered in results)
    span = max(a for _, _, a in results) - min(s for _, s, _ in results)
    print("%s=%d statuses=%s fastest_s=%.3f slowest_s=%.3f first_send_to_last_answer_s=%.3f "
          "rss_before_kib=%d rss_connected_kib=%d rss_peak_kib=%d rss_after_kib=%d growth_mib=%.1f"
          % ("long_polls" if long_poll else "posts", n, ",".join("%d:%d" % kv for kv in sorted(statuses.items())), fastest, slowest, span,
             before, connected, peak, after, (peak - before) / 1024))


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--long-poll"]
    if len(args) < 2:
        sys.exit(__doc__)
    asyncio.run(main(args[0], int(args[1]), int(args[2]) if len(args) > 2 else 1000,
                     args[3] if len(args) > 3 else "held.", "--long-poll" in sys.argv[1:]))
