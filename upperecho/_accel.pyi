"""
The types of upperecho/_accel.c, the compiled UTF-8 and ASCII paths of
L{upperecho.transform}, the accept of L{upperecho.port} and the datagram
reads of L{upperecho.udp}.
"""

from typing import Any

#: unicodedata.unidata_version of the interpreter whose str.upper() built the table
UNIDATA_VERSION: str
#: how many code points the table maps to another uppercase
MAPPED: int

def upper_utf8(data: bytes, final: bool, /) -> tuple[bytes, int]: ...
def upper_ascii(data: bytes, /) -> bytes | None: ...
def accept_nonblocking(fd: int, /) -> tuple[int, tuple[Any, ...]] | None: ...
def recv_datagrams(
    fd: int, buffer: bytearray, size: int, ancillary_space: int, /
) -> list[tuple[bytes, list[tuple[int, int, bytes]], tuple[Any, ...]]]: ...
def send_datagrams(fd: int, family: int, replies: list[Any], start: int, /) -> int: ...
