"""Uppercasing helpers shared by the Python peers.

Reference semantics: data.decode('utf-8').upper().encode('utf-8').
Fast path: an all-ASCII chunk is just bytes.upper().

TCP is a byte stream, so a multi-byte UTF-8 character may be split across two
recv() chunks; StreamUpper keeps one incremental decoder per connection and
holds back an incomplete trailing sequence until the next chunk completes it.
Invalid UTF-8 is passed through unchanged (surrogateescape round trip).
"""

import codecs

_IncrementalDecoder = codecs.getincrementaldecoder("utf-8")


def upper_datagram(data):
    """Uppercase one self-contained message (a UDP datagram)."""
    if data.isascii():
        return data.upper()
    return (
        data.decode("utf-8", "surrogateescape")
        .upper()
        .encode("utf-8", "surrogateescape")
    )


class StreamUpper:
    """Per-connection uppercaser for a TCP byte stream: call it with each chunk."""

    __slots__ = ("_dec",)

    def __init__(self):
        self._dec = None  # only exists while non-ASCII data is being handled

    def __call__(self, data):
        dec = self._dec
        if dec is None:
            if data.isascii():
                return data.upper()
            dec = self._dec = _IncrementalDecoder("surrogateescape")
        out = dec.decode(data).upper().encode("utf-8", "surrogateescape")
        if not dec.getstate()[0]:  # no partial character pending: back to the fast path
            self._dec = None
        return out
