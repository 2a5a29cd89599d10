"""A KDC that is not on loopback, for the benchmark: a TCP relay that delays what it carries.

Run inside the lab's network namespace (bench.py --kdc-delay-ms starts and stops it):

    python3 scripts/kdc_relay.py LISTEN_IP UPSTREAM_IP DELAY_MS

It listens on LISTEN_IP:88 and carries each connection to UPSTREAM_IP:88 (the lab's Samba
KDC), waiting DELAY_MS before it connects upstream and before it passes each chunk on, either
way (asyncio's timer: a delay under 1 ms is rounded up to 1 ms). What one Kerberos exchange
over TCP then costs on top (the lab's krb5.conf has udp_preference_limit = 0) is best read off
the benchmark itself: with 1 ms, cifs.upcall's repeat (two TGS exchanges) took 9-10 ms more,
i.e. ~4.5 ms an exchange, about a DC a millisecond or so away. Loopback addresses only:
nothing leaves the namespace. Prints "ready" once listening, and how many connections it
carried when it ends (SIGTERM).
"""

from __future__ import annotations

import asyncio
import signal
import sys

PORT = 88


async def _pump(r: asyncio.StreamReader, w: asyncio.StreamWriter, delay: float) -> None:
    try:
        while data := await r.read(65536):
            await asyncio.sleep(delay)
            w.write(data)
            await w.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        w.close()


async def _main(listen: str, upstream: str, delay: float) -> None:
    carried = 0

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        nonlocal carried
        await asyncio.sleep(delay)
        try:
            ur, uw = await asyncio.open_connection(upstream, PORT)
        except OSError:
            w.close()
            return
        carried += 1
        await asyncio.gather(_pump(r, uw, delay), _pump(ur, w, delay))

    server = await asyncio.start_server(handle, listen, PORT)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    async with server:
        await stop.wait()
    print(f"carried {carried} connections", flush=True)


def main(argv: list[str]) -> int:
    if len(argv) != 4 or not (argv[1].startswith("127.") and argv[2].startswith("127.")):
        print(__doc__, file=sys.stderr)
        return 2
    asyncio.run(_main(argv[1], argv[2], float(argv[3]) / 1000))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
