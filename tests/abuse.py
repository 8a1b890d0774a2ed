"""
Helpers for the abuse tests and the soak: a verifiable payload that never
has to be held whole, and readings of a server process from C{/proc}.
"""

from __future__ import annotations

import os
import socket
import struct

__all__ = [
    "Pattern",
    "cpuTicks",
    "fdCount",
    "rssKiB",
    "spoofUDP",
]

_FILLER = bytes(range(ord("a"), ord("z") + 1)) * 2 + b" \n"


class Pattern:
    """
    A long lowercase-ASCII stream made of numbered blocks, so that any
    dropped, repeated or reordered block shows, yet compressible enough to
    generate at hundreds of MB/s.  Byte C{i} of the stream is a pure
    function of C{i}: the expected reply can be checked piece by piece as it
    arrives, without keeping what was sent.

    @ivar block: the size of one block in bytes.
    """

    def __init__(self, block: int = 65536) -> None:
        self.block = block
        self._filler = (_FILLER * (block // len(_FILLER) + 1))[:block]

    def _blockAt(self, index: int) -> bytes:
        head = b"<%012d>" % index
        return head + self._filler[len(head) :]

    def chunk(self, offset: int, size: int) -> bytes:
        """
        The C{size} bytes of the stream starting at C{offset}.
        """
        parts = []
        end = offset + size
        while offset < end:
            index, within = divmod(offset, self.block)
            take = min(self.block - within, end - offset)
            parts.append(self._blockAt(index)[within : within + take])
            offset += take
        return b"".join(parts)

    def expected(self, offset: int, size: int) -> bytes:
        """
        The server's reply to L{chunk}C{(offset, size)}: plain
        C{bytes.upper()}, since the stream is ASCII.
        """
        return self.chunk(offset, size).upper()


def _status(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise LookupError(f"{field} not in /proc/{pid}/status")


def rssKiB(pid: int) -> int:
    """
    The resident set size of process C{pid} in KiB (C{VmRSS}).
    """
    return _status(pid, "VmRSS")


def fdCount(pid: int) -> int:
    """
    How many file descriptors process C{pid} has open.
    """
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpuTicks(pid: int) -> int:
    """
    User plus system CPU time of process C{pid}, in clock ticks.
    """
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    # after the command name: state is field 3, utime 14 and stime 15
    return int(fields[11]) + int(fields[12])


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def spoofUDP(source: tuple[str, int], dest: tuple[str, int], payload: bytes) -> None:
    """
    Send one IPv4 UDP datagram whose source address and port are
    C{source}, through a raw socket with a hand-made IP header
    (C{IPPROTO_RAW} implies C{IP_HDRINCL}).  Needs C{CAP_NET_RAW}:
    raises L{PermissionError} without it.
    """
    src = socket.inet_aton(source[0])
    dst = socket.inet_aton(dest[0])
    length = 8 + len(payload)
    pseudo = src + dst + struct.pack("!BBH", 0, socket.IPPROTO_UDP, length)
    header = struct.pack("!HHHH", source[1], dest[1], length, 0)
    checksum = _checksum(pseudo + header + payload) or 0xFFFF
    udp = struct.pack("!HHHH", source[1], dest[1], length, checksum) + payload
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,  # version 4, header of 5 words
        0,
        20 + len(udp),
        0,  # identification: the kernel fills it in
        0x4000,  # don't fragment
        64,
        socket.IPPROTO_UDP,
        0,  # header checksum: the kernel fills it in
        src,
        dst,
    )
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as s:
        s.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
        s.sendto(ip + udp, (dest[0], 0))
