# -*- test-case-name: tests.unit.test_transform -*-
"""
The uppercase transform shared by every part of upperecho.

The server, the client and the probe all call this module, so "what the
server should have answered" is defined in exactly one place.

The rules (docs/contract.rst, The transform):
  - text is decoded with the configured encoding and uppercased with
    C{str.upper()};
  - bytes that are not valid in the encoding pass through unchanged;
  - a character whose uppercase form cannot be encoded stays as it was;
  - a stream may be cut anywhere: L{Uppercaser} holds an incomplete multi-byte
    character (a few bytes at most) until the rest of it arrives, so the
    output never depends on how the input was split.

The UTF-8 and ASCII paths have a compiled twin, C{upperecho._accel}, built
from upperecho/_accel.c where a C compiler is present: Python's codecs cost
about 26 ns per byte of random input, the C loop about one.  The code here
stays the definition and the fallback; tests/unit/test_accel.py proves the
two give the same bytes for every input, and L{ACCELERATED} says which one
this process uses (docs/contract.rst, The transform).
"""

from __future__ import annotations

import codecs
import functools
import importlib
import unicodedata
from collections.abc import Callable
from types import ModuleType

from upperecho.compiled import pureForced

__all__ = [
    "ACCELERATED",
    "IMPLEMENTATION",
    "Uppercaser",
    "checkEncoding",
    "codecErrors",
    "isAsciiCompatible",
    "upper",
    "upperAscii",
]

_PASSTHROUGH = "upperecho-passthrough"


def _passthrough(error: UnicodeError) -> tuple[str | bytes, int]:
    """
    A codec error handler like C{surrogateescape}, but for every byte value.

    C{surrogateescape} refuses to escape bytes below 0x80, which some codecs
    (UTF-16, for example) report as invalid.  This handler maps any invalid
    byte C{b} to the lone surrogate U+DC00+b when decoding and back when
    encoding, so invalid input always round-trips byte for byte.
    """
    if isinstance(error, UnicodeDecodeError):
        bad = error.object[error.start : error.end]
        return "".join(chr(0xDC00 + b) for b in bad), error.end
    if isinstance(error, UnicodeEncodeError):
        chunk = error.object[error.start : error.end]
        if all(0xDC00 <= ord(c) <= 0xDCFF for c in chunk):
            return bytes(ord(c) - 0xDC00 for c in chunk), error.end
    raise error


codecs.register_error(_PASSTHROUGH, _passthrough)

_ASCII_TEXT = "".join(map(chr, range(128)))
_ASCII_BYTES = bytes(range(128))


_utf8Decode = codecs.utf_8_decode


def _pureUtf8(data: bytes, final: bool) -> tuple[bytes, int]:
    """
    The UTF-8 transform by its definition: uppercase C{data}, and say how
    many of its bytes that covers.

    C{utf_8_decode(data, errors, final)} is what the incremental decoder runs
    underneath: unless C{final}, it stops before an incomplete last character
    and says where, so the caller can hold that tail without the decoder's
    and the encoder's Python-level wrappers on every read.  Encoding cannot
    fail: the uppercase of text decoded from UTF-8 is valid text plus the
    escaped invalid bytes, which go back as they were.
    """
    if data.isascii():
        return data.upper(), len(data)
    text, used = _utf8Decode(data, "surrogateescape", final)
    return text.upper().encode("utf-8", "surrogateescape"), used


def _pureAscii(data: bytes) -> bytes | None:
    """
    C{data.upper()} if C{data} is all ASCII, else C{None}.
    """
    return data.upper() if data.isascii() else None


def _loadAccelerator() -> tuple[ModuleType | None, str]:
    """
    The compiled transform if it may be used, and one line saying which
    transform this process runs and why.

    Its case table was generated from the C{str.upper()} of the interpreter
    that built it; a different Unicode version here would make it disagree
    with the definition, so then the pure-Python code runs instead.
    """
    if pureForced():
        return None, "pure Python (UPPERECHO_PURE_PYTHON is set)"
    try:
        _accel = importlib.import_module("upperecho._accel")
    except ImportError:
        return None, "pure Python (the C accelerator is not built)"
    if unicodedata.unidata_version != _accel.UNIDATA_VERSION:
        return None, (
            f"pure Python (the C accelerator was built for Unicode "
            f"{_accel.UNIDATA_VERSION}, this Python has "
            f"{unicodedata.unidata_version})"
        )
    return _accel, f"C accelerator (Unicode {_accel.UNIDATA_VERSION})"


_accelerator, IMPLEMENTATION = _loadAccelerator()
#: whether the UTF-8 and ASCII paths run the C accelerator
ACCELERATED = _accelerator is not None

#: the UTF-8 transform of a piece of a stream: (output, bytes covered)
_upperUtf8: Callable[[bytes, bool], tuple[bytes, int]] = (
    _pureUtf8 if _accelerator is None else _accelerator.upper_utf8
)
#: C{data.upper()} for all-ASCII C{data}, else C{None}
upperAscii: Callable[[bytes], bytes | None] = (
    _pureAscii if _accelerator is None else _accelerator.upper_ascii
)


@functools.cache
def _isUtf8(encoding: str) -> bool:
    """
    Whether C{encoding} is plain UTF-8 (any spelling, but not C{utf-8-sig}).
    """
    try:
        return codecs.lookup(encoding).name == "utf-8"
    except LookupError:
        return False


@functools.cache
def isAsciiCompatible(encoding: str) -> bool:
    """
    Whether C{encoding} encodes the 128 ASCII characters as themselves.

    Only then may pure-ASCII input take the C{bytes.upper()} fast path and may
    invalid bytes use the C{surrogateescape} handler.
    """
    try:
        return (
            _ASCII_TEXT.encode(encoding) == _ASCII_BYTES
            and _ASCII_BYTES.decode(encoding) == _ASCII_TEXT
        )
    except (UnicodeError, LookupError):
        return False


def codecErrors(encoding: str) -> str:
    """
    The codec error handler with which any byte string round-trips through
    text in C{encoding}: C{surrogateescape} (native, fast) where the
    encoding is ASCII-compatible, else one that escapes every byte value.
    """
    return "surrogateescape" if isAsciiCompatible(encoding) else _PASSTHROUGH


def checkEncoding(encoding: str) -> str:
    """
    Validate a text encoding name for use with L{Uppercaser}.

    @return: the codec's canonical name.
    @raise ValueError: with a one-line message if C{encoding} is unknown or is
        not a text encoding (C{base64}, C{zlib}, C{rot13} ...).
    """
    try:
        info = codecs.lookup(encoding)
    except LookupError:
        raise ValueError(f"unknown encoding: {encoding!r}") from None
    try:
        "a".encode(encoding)
        codecs.getincrementaldecoder(encoding)
        codecs.getincrementalencoder(encoding)
    except (LookupError, TypeError, UnicodeError, AttributeError):
        raise ValueError(f"not a text encoding: {encoding!r}") from None
    if not _passesBytesThrough(info.name):
        raise ValueError(
            f"unsupported encoding: {encoding!r} does not give back the bytes "
            "it decoded (a byte-order mark, an escape syntax or no way to pass "
            "invalid bytes through)"
        )
    return info.name


@functools.cache
def _passesBytesThrough(encoding: str) -> bool:
    """
    Whether decoding then encoding, with the error handler L{Uppercaser}
    uses, gives back exactly the bytes given, whole or fed byte by byte.

    The transform promises that bytes it cannot uppercase pass through
    unchanged and that chunking does not matter.  Codecs that add a
    byte-order mark (UTF-16, UTF-32, utf-8-sig), that encode with an escape
    syntax (UTF-7, the ISO-2022 family) or that cannot take the error handler
    (idna, punycode) break one or the other, so they are refused up front
    rather than found out by a client.
    """
    errors = codecErrors(encoding)
    samples = [b"", *(bytes([b]) for b in range(256)), b"\x81 ", b"\xe4\xb8", b"+-"]
    try:
        samples.append("aé€中ß".encode(encoding, "ignore"))
        for sample in samples:
            for pieces in ([sample], [sample[i : i + 1] for i in range(len(sample))]):
                decoder = codecs.getincrementaldecoder(encoding)(errors)
                encoder = codecs.getincrementalencoder(encoding)(errors)
                out = [encoder.encode(decoder.decode(p)) for p in pieces]
                out.append(encoder.encode(decoder.decode(b"", True), True))
                if b"".join(out) != sample:
                    return False
    except (UnicodeError, LookupError, TypeError, ValueError):
        return False
    return True


class Uppercaser:
    """
    Incremental uppercasing of a byte stream in one encoding.

    One instance serves one stream (a TCP connection) or, through L{upper},
    one self-contained message (a UDP datagram).  Its only state is the tail
    of an incomplete character, held until the next L{feed} or L{flush}.

    @ivar encoding: the codec name given to the constructor.
    """

    __slots__ = (
        "_ascii",
        "_decoder",
        "_encoder",
        "_errors",
        "_pending",
        "_tail",
        "_utf8",
        "encoding",
    )

    def __init__(self, encoding: str = "utf-8") -> None:
        self.encoding = encoding
        self._ascii = isAsciiCompatible(encoding)
        self._utf8 = _isUtf8(encoding)
        self._errors = codecErrors(encoding)
        self._decoder: codecs.IncrementalDecoder | None = None
        self._encoder: codecs.IncrementalEncoder | None = None
        self._pending = False
        #: UTF-8 only: the bytes of an incomplete last character
        self._tail = b""

    def feed(self, data: bytes) -> bytes:
        """
        Uppercase the next piece of the stream.

        @return: the uppercased bytes for every complete character in
            C{data} (plus any held from before); an incomplete trailing
            character is held back.
        """
        if self._utf8:
            # UTF-8, the default, without codec objects (see _pureUtf8)
            if self._pending:
                data = self._tail + data
            out, used = _upperUtf8(data, False)
            if used < len(data):
                self._tail = data[used:]
                self._pending = True
            elif self._pending:
                self._tail = b""
                self._pending = False
            return out
        if self._ascii and not self._pending:
            ascii = upperAscii(data)
            if ascii is not None:
                return ascii
        return self._slow(data, False)

    def flush(self) -> bytes:
        """
        End the stream: return the held bytes of an incomplete character as
        they are (they are not valid text, so they pass through).
        """
        if self._utf8:
            tail, self._tail, self._pending = self._tail, b"", False
            return tail
        if not self._pending and self._decoder is None:
            return b""
        return self._slow(b"", True)

    def _slow(self, data: bytes, final: bool) -> bytes:
        decoder = self._decoder
        if decoder is None:
            decoder = self._decoder = codecs.getincrementaldecoder(self.encoding)(
                self._errors
            )
        try:
            text = decoder.decode(data, final)
        except UnicodeError:
            # A codec that cannot resynchronise after bad input (checkEncoding
            # refuses those it knows of): pass the bytes through as they are
            # rather than raise into the reactor.
            held = decoder.getstate()[0]
            decoder.reset()
            self._pending = False
            return (held if isinstance(held, bytes) else b"") + data
        self._pending = bool(decoder.getstate()[0])
        return self._encode(text, final)

    def _encode(self, text: str, final: bool) -> bytes:
        encoder = self._encoder
        if encoder is None:
            encoder = self._encoder = codecs.getincrementalencoder(self.encoding)(
                self._errors
            )
        try:
            return encoder.encode(text.upper(), final)
        except UnicodeEncodeError:
            pass
        # Some uppercase form has no encoding here (latin-1 "ÿ" -> "Ÿ"):
        # go character by character and keep those characters as they were.
        out = []
        for ch in text:
            try:
                out.append(encoder.encode(ch.upper()))
            except UnicodeEncodeError:
                out.append(encoder.encode(ch))
        out.append(encoder.encode("", final))
        return b"".join(out)


def upper(data: bytes, encoding: str = "utf-8") -> bytes:
    """
    Uppercase one self-contained message (a UDP datagram, a probe, a file).

    Equal to feeding C{data} to a fresh L{Uppercaser} and flushing it.
    """
    if _isUtf8(encoding):
        # a whole message: nothing to hold back, so no Uppercaser either
        return _upperUtf8(data, True)[0]
    if isAsciiCompatible(encoding):
        out = upperAscii(data)
        if out is not None:
            return out
    u = Uppercaser(encoding)
    return u.feed(data) + u.flush()
