"""asyncio uppercase server with Protocol / DatagramProtocol classes
(data_received -> transport.write(upper)).  The same code runs on the stdlib
event loop or on uvloop.  UTF-8-correct via upperlib.

Usage: python aio.py TCP_PORT UDP_PORT [--loop asyncio|uvloop] [--host 127.0.0.1]
"""

import argparse
import asyncio
import sys

from upperlib import StreamUpper, upper_datagram


class UpperProtocol(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.upper = StreamUpper()

    def data_received(self, data):
        self.transport.write(self.upper(data))


class UpperDatagramProtocol(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(upper_datagram(data), addr)


async def serve(host, tcp_port, udp_port):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(UpperProtocol, host, tcp_port, reuse_address=True)
    await loop.create_datagram_endpoint(
        UpperDatagramProtocol, local_addr=(host, udp_port)
    )
    print(
        f"aio: loop={type(loop).__module__}.{type(loop).__name__} tcp={tcp_port} udp={udp_port}",
        file=sys.stderr,
        flush=True,
    )
    async with server:
        await server.serve_forever()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tcp", type=int)
    ap.add_argument("udp", type=int)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    a = ap.parse_args()
    if a.loop == "uvloop":
        import uvloop

        uvloop.run(serve(a.host, a.tcp, a.udp))
    else:
        asyncio.run(serve(a.host, a.tcp, a.udp))


if __name__ == "__main__":
    main()
