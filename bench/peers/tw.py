"""Naive Twisted uppercase server: a plain Protocol whose dataReceived writes
the uppercased bytes with transport.write, and a DatagramProtocol, on
Twisted's default reactor with no limits.  The yardstick for what upperecho
adds to (or saves on) what any Twisted server pays.  UTF-8-correct via
upperlib.  Runs with the project's own Python (.venv), which has Twisted.

Usage: python tw.py TCP_PORT UDP_PORT [--host 127.0.0.1]
"""

import argparse
import sys

from upperlib import StreamUpper, upper_datagram


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tcp", type=int)
    ap.add_argument("udp", type=int)
    ap.add_argument("--host", default="127.0.0.1")
    a = ap.parse_args()

    from twisted.internet import protocol, reactor

    class Upper(protocol.Protocol):
        def connectionMade(self):
            self.upper = StreamUpper()

        def dataReceived(self, data):
            self.transport.write(self.upper(data))

    class UpperDatagram(protocol.DatagramProtocol):
        def datagramReceived(self, data, addr):
            self.transport.write(upper_datagram(data), addr)

    factory = protocol.Factory.forProtocol(Upper)
    factory.noisy = False
    reactor.listenTCP(a.tcp, factory, interface=a.host)
    udp = UpperDatagram()
    udp.noisy = False
    reactor.listenUDP(a.udp, udp, interface=a.host, maxPacketSize=65535)
    print(
        f"tw: reactor={type(reactor).__module__}.{type(reactor).__name__}"
        f" tcp={a.tcp} udp={a.udp}",
        file=sys.stderr,
        flush=True,
    )
    reactor.run()


if __name__ == "__main__":
    main()
