#!/usr/bin/env python3
"""Holds N slow HTTP/1 clients against HOST:PORT: each sends its request header one byte a second
and, when the server closes it (the header-read timeout), connects again. Runs until killed;
prints how many connections are open and how many the server closed, every 5 s, on stderr.

    bench/slow_clients.py 127.0.0.1:7700 1000
"""
import asyncio
import sys

HEADER = b"GET /healthz HTTP/1.1\r\nHost: sink\r\nX-Slow: " + b"a" * 10_000


async def slow(host, port, stats):
    while True:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            await asyncio.sleep(1)
            continue
        stats["open"] += 1
        try:
            for i in range(len(HEADER)):
                writer.write(HEADER[i : i + 1])
                await writer.drain()
                try:
                    if await asyncio.wait_for(reader.read(1), 1.0) == b"":
                        break  # closed by the server
                except asyncio.TimeoutError:
                    pass
        except OSError:
            pass
        stats["open"] -= 1
        stats["closed"] += 1
        writer.close()


async def report(stats):
    while True:
        await asyncio.sleep(5)
        print(f"slow clients: open={stats['open']} closed_by_server={stats['closed']}", file=sys.stderr, flush=True)


async def main():
    host, port = sys.argv[1].rsplit(":", 1)
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    stats = {"open": 0, "closed": 0}
    tasks = [asyncio.create_task(slow(host, int(port), stats)) for _ in range(n)]
    tasks.append(asyncio.create_task(report(stats)))
    await asyncio.gather(*tasks)


asyncio.run(main())
