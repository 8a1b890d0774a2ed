"""
PROXY protocol headers (v1 text, v2 binary) for the tests that speak to a
C{haproxy:} endpoint.
"""

from __future__ import annotations

import socket
import struct

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def proxyV1(src: str, srcPort: int, dst: str = "127.0.0.1", dstPort: int = 1) -> bytes:
    """
    A PROXY protocol v1 header for a TCP4 connection.
    """
    return f"PROXY TCP4 {src} {dst} {srcPort} {dstPort}\r\n".encode()


def proxyV2(src: str, srcPort: int, dst: str = "127.0.0.1", dstPort: int = 1) -> bytes:
    """
    A PROXY protocol v2 header (command PROXY, TCP over IPv4).
    """
    body = (
        socket.inet_aton(src)
        + socket.inet_aton(dst)
        + struct.pack("!HH", srcPort, dstPort)
    )
    return V2_SIGNATURE + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body
