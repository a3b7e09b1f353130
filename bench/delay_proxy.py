#!/usr/bin/env python3
"""bench/delay_proxy.py: a TCP proxy that delays every byte by a fixed time in each direction.

Loopback has a round trip of a few microseconds; a backup node across a network has one of
0.2 ms to several ms. This proxy stands between a client and a server on this host and holds
each chunk it reads for DELAY milliseconds before it writes it on, in both directions, so a
round trip costs 2 * DELAY more. It adds latency only: chunks keep their order and are not
throttled. It is for measuring how much a command waits on round trips, not how fast it is.

usage: python3 bench/delay_proxy.py LISTEN_PORT TARGET_PORT DELAY_MS [--host 127.0.0.1]
"""
import argparse
import asyncio
import collections
import sys
import time


async def pipe(reader, writer, delay):
    """Copy reader to writer, each chunk written delay seconds after it was read."""
    queue = collections.deque()
    arrived = asyncio.Event()
    done = False

    async def pump_in():
        nonlocal done
        try:
            while True:
                data = await reader.read(256 * 1024)
                if not data:
                    break
                queue.append((time.monotonic() + delay, data))
                arrived.set()
        finally:
            done = True
            arrived.set()

    async def pump_out():
        while True:
            if not queue:
                if done:
                    break
                arrived.clear()
                await arrived.wait()
                continue
            due, data = queue.popleft()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        writer.close()

    await asyncio.gather(pump_in(), pump_out(), return_exceptions=True)


async def serve(args):
    delay = args.delay_ms / 1000.0

    async def handle(client_r, client_w):
        try:
            server_r, server_w = await asyncio.open_connection(args.host, args.target_port)
        except OSError as e:
            print(f"delay_proxy: cannot reach {args.host}:{args.target_port}: {e}", file=sys.stderr)
            client_w.close()
            return
        await asyncio.gather(pipe(client_r, server_w, delay), pipe(server_r, client_w, delay),
                             return_exceptions=True)

    srv = await asyncio.start_server(handle, args.host, args.listen_port)
    async with srv:
        await srv.serve_forever()


def main():
    p = argparse.ArgumentParser(description="TCP proxy adding a fixed delay in each direction")
    p.add_argument("listen_port", type=int)
    p.add_argument("target_port", type=int)
    p.add_argument("delay_ms", type=float)
    p.add_argument("--host", default="127.0.0.1")
    args = p.parse_args()
    if args.delay_ms < 0:
        p.error("delay_ms must be 0 or more")
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
