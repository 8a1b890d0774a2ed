"""
Tests for the two implementations of the UTF-8 and ASCII paths of
L{upperecho.transform}: the C accelerator (upperecho/_accel.c) and the
pure-Python fallback must both give, for every input and every split of it,
exactly the bytes of the definition (docs/contract.rst, The transform).

Every test of L{PathTests} runs once per path.  The accelerated half is
skipped where the extension is not built, unless C{UPPERECHO_REQUIRE_ACCEL=1}
(set by C{make test}, tox and CI) makes that a failure.
"""

from __future__ import annotations

import codecs
import functools
import itertools
import os
import random
import sys
import unicodedata
from collections.abc import Callable, Iterable
from typing import Any, cast

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.testing import MemoryReactor
from twisted.logger import ILogObserver, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from upperecho import tap, transform
from upperecho.transform import Uppercaser, upper

try:
    from upperecho import _accel
except ImportError:
    _accel = None  # type: ignore[assignment]

REQUIRED = os.environ.get("UPPERECHO_REQUIRE_ACCEL", "") == "1"


def reference(data: bytes) -> bytes:
    """
    The definition of the UTF-8 transform for a whole message.
    """
    return (
        data.decode("utf-8", "surrogateescape")
        .upper()
        .encode("utf-8", "surrogateescape")
    )


def referenceFeed(data: bytes, final: bool) -> tuple[bytes, int]:
    """
    The definition for a piece of a stream: what the incremental decoder
    takes of C{data}, uppercased, and how many bytes that is.
    """
    text, used = codecs.utf_8_decode(data, "surrogateescape", final)
    return text.upper().encode("utf-8", "surrogateescape"), used


@functools.cache
def everyCharacter() -> tuple[bytes, ...]:
    """
    The UTF-8 of every code point UTF-8 can encode (all but surrogates).
    """
    return tuple(
        chr(cp).encode("utf-8")
        for cp in range(sys.maxunicode + 1)
        if not 0xD800 <= cp <= 0xDFFF
    )


def firstDifference(got: bytes, want: bytes) -> str:
    """
    Where two long outputs first differ, for a failure message that can be
    read (not two megabytes of repr).
    """
    at = next(
        (i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b),
        min(len(got), len(want)),
    )
    return (
        f"outputs differ at byte {at} (lengths {len(got)}, {len(want)}): "
        f"got {got[max(0, at - 8) : at + 8]!r}, want {want[max(0, at - 8) : at + 8]!r}"
    )


def stream(pieces: Iterable[bytes]) -> bytes:
    """
    Feed C{pieces} to one L{Uppercaser}, one read each, then flush.
    """
    u = Uppercaser()
    out = [u.feed(p) for p in pieces]
    out.append(u.flush())
    return b"".join(out)


#: bytes at every boundary of UTF-8's rules (Unicode table 3-7): ASCII,
#: continuation bytes at their ends and at the limits E0, ED, F0 and F4
#: put on a second byte, overlong and never-valid lead bytes
ADVERSARIAL = bytes(
    [
        *(0x00, 0x41, 0x61, 0x7A, 0x7F),
        *(0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF),
        *(0xC0, 0xC1, 0xC2, 0xC3, 0xCE, 0xDF),
        *(0xE0, 0xE1, 0xED, 0xEF, 0xF0, 0xF4, 0xF5, 0xFF),
    ]
)

#: characters whose uppercase is longer (ß, ŉ, ΐ, ﬃ), shorter (ı, ſ) or
#: another length in bytes (ȿ, ɐ), and some that map to themselves
SPECIAL = "ßŉΐΰﬃﬗıſȿɐǆσςѐ敏ａ€😀𐐨𞤢ǅµ"


def adversarialPieces() -> st.SearchStrategy[bytes]:
    """
    Streams built to meet the decoder's boundary cases: valid characters of
    every length, their proper prefixes, and sequences that must be refused.
    """
    chars = st.sampled_from(SPECIAL).map(str.encode)
    prefixes = chars.flatmap(lambda c: st.integers(0, len(c) - 1).map(lambda k: c[:k]))
    odd = st.sampled_from(
        [
            b"\xc0\xaf",
            b"\xe0\x80\x80",
            b"\xf0\x80\x80\x80",
            b"\xed\xa0\x80",
            b"\xed\xbf\xbf",
            b"\xed\xa0",
            b"\xf4\x90\x80\x80",
            b"\xf4\x8f\xbf\xbf",
        ]
    )
    return st.lists(
        chars
        | prefixes
        | odd
        | st.binary(max_size=4)
        | st.sampled_from(ADVERSARIAL).map(lambda b: bytes([b])),
        max_size=30,
    ).map(b"".join)


class PathTests:
    """
    The tests both paths must pass.  A subclass names a path: its
    C{upperUtf8} and C{upperAscii} replace the module's for each test.
    """

    upperUtf8: Callable[[bytes, bool], tuple[bytes, int]]
    upperAscii: Callable[[bytes], bytes | None]

    def setUp(self) -> None:
        case = cast(SynchronousTestCase, self)
        case.patch(transform, "_upperUtf8", type(self).upperUtf8)
        case.patch(transform, "upperAscii", type(self).upperAscii)

    def assertSame(self, got: bytes, want: bytes) -> None:
        if got != want:
            cast(SynchronousTestCase, self).fail(firstDifference(got, want))

    def test_everyCodePoint(self) -> None:
        """
        Every code point, in one message and one stream, comes back as the
        UTF-8 of its C{str.upper()}.
        """
        chars = everyCharacter()
        data = b"".join(chars)
        want = reference(data)
        self.assertSame(upper(data), want)
        self.assertSame(stream([data]), want)
        # one character at a time, so that a wrong entry is named
        mismatched = [c for c in chars if upper(c) != reference(c)]
        cast(SynchronousTestCase, self).assertEqual(mismatched, [])

    def test_everyCodePointSplitAtEveryByte(self) -> None:
        """
        Every code point split after its first, second and third byte, each
        cut falling in a separate read, gives the same stream.
        """
        chars = everyCharacter()
        want = reference(b"".join(chars))
        for k in (1, 2, 3):
            pieces = [chars[0][:k]]
            pieces.extend(a[k:] + b[:k] for a, b in itertools.pairwise(chars))
            pieces.append(chars[-1][k:])
            self.assertSame(stream(pieces), want)

    def test_shortStrings(self) -> None:
        """
        Every string of up to two bytes, and of up to four over the
        adversarial bytes, whole and as the piece of a stream (held tails
        included).
        """
        case = cast(SynchronousTestCase, self)
        f = type(self).upperUtf8
        singles = [bytes([b]) for b in range(256)]
        pairs = [bytes([a, b]) for a in range(256) for b in range(256)]
        adv = [bytes([b]) for b in ADVERSARIAL]
        longer = [a + b + c for a in adv for b in adv for c in adv]
        longer += [x + d for x in longer[:: len(adv) // 5 or 1] for d in adv]
        bad = [
            d
            for d in [b"", *singles, *pairs, *longer]
            for final in (True, False)
            if f(d, final) != referenceFeed(d, final)
        ]
        case.assertEqual(bad, [])

    def test_adversarial(self) -> None:
        """
        Truncated sequences, overlongs, UTF-8-encoded surrogates, bytes that
        never occur in UTF-8 and lone continuation bytes pass through, at
        the start, middle and end of messages of every length around the
        accelerator's internal boundaries.
        """
        cases = [
            b"\xc3",
            b"\xe6\x95",
            b"\xf0\x9f\x98",
            b"\xc0\x80",
            b"\xc1\xbf",
            b"\xe0\x80\x80",
            b"\xe0\x9f\xbf",
            b"\xf0\x80\x80\x80",
            b"\xf0\x8f\xbf\xbf",
            b"\xed\xa0\x80",
            b"\xed\xbf\xbf",
            b"\xed\xa0",
            b"\xf4\x90\x80\x80",
            b"\xf5\x80\x80\x80",
            *(bytes([b]) for b in range(0xF5, 0x100)),
            b"\x80",
            b"\xbf\xbf\xbf",
            "ß".encode(),
            "ΐ".encode(),
            "𐐨".encode(),
        ]
        for bad in cases:
            for size in (0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 1020, 1023, 1024):
                for data in (
                    bad + b"x" * size,
                    b"x" * size + bad,
                    b"x" * size + bad + b"y" * 3,
                    "é".encode() * size + bad,
                ):
                    self.assertSame(upper(data), reference(data))
                    self.assertSame(stream([data]), reference(data))
                    if len(data) < 64:
                        bytewise = stream(data[i : i + 1] for i in range(len(data)))
                        self.assertSame(bytewise, reference(data))

    def test_randomBytes(self) -> None:
        """
        Random bytes (what a network tester pipes from /dev/urandom) and
        random mixes of special characters and bad bytes, long enough to
        cross the accelerator's blocks, in random reads.
        """
        rng = random.Random(14)
        special = [c.encode() for c in SPECIAL] + [bytes([b]) for b in ADVERSARIAL]
        for n in range(200):
            size = rng.choice([rng.randrange(64), rng.randrange(5000)])
            if n % 2:
                data = rng.randbytes(size)
            else:
                data = b"".join(rng.choice(special) for _ in range(size // 2))
            want = reference(data)
            self.assertSame(upper(data), want)
            cuts = sorted(rng.sample(range(len(data) + 1), min(len(data), 20)))
            pieces = [
                data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)
            ]
            self.assertSame(stream(pieces), want)

    def test_growth(self) -> None:
        """
        Output that grows (ΐ triples) or shrinks, over and over, next to
        ASCII, comes back whole.
        """
        for text in (
            "ΐ" * 100_000,
            ("ȿx" * 3000) + "ß" * 5000,
            "a" * 1021 + "ΐ" * 5 + "ı" * 3000,
            "ﬃ" * 4000,
        ):
            data = text.encode()
            self.assertSame(upper(data), text.upper().encode())
            self.assertSame(stream([data[:1000], data[1000:]]), text.upper().encode())

    def test_ascii(self) -> None:
        """
        The ASCII path uppercases a-z only, and answers C{None} for input
        with a non-ASCII byte anywhere.
        """
        case = cast(SynchronousTestCase, self)
        f = type(self).upperAscii
        allAscii = bytes(range(128))
        for size in range(40):
            data = (allAscii * 2)[size : size * 3]
            case.assertEqual(f(data), data.upper())
            for at in range(len(data)):
                for high in (0x80, 0xFF):
                    bad = data[:at] + bytes([high]) + data[at + 1 :]
                    case.assertIsNone(f(bad))
        case.assertEqual(f(b""), b"")
        case.assertEqual(f(cast(bytes, bytearray(b"abc"))), b"ABC")

    def test_asciiCompatibleEncodings(self) -> None:
        """
        Other ASCII-compatible encodings take the ASCII path for ASCII and
        their codec for the rest.
        """
        case = cast(SynchronousTestCase, self)
        u = Uppercaser("latin-1")
        case.assertEqual(u.feed(b"abc"), b"ABC")
        case.assertEqual(u.feed("ÿé".encode("latin-1")), "ÿÉ".encode("latin-1"))
        case.assertEqual(upper(b"gbk text", "gbk"), b"GBK TEXT")


class PurePythonPathTests(PathTests, SynchronousTestCase):
    """
    The pure-Python fallback, the definition.
    """

    upperUtf8 = staticmethod(transform._pureUtf8)
    upperAscii = staticmethod(transform._pureAscii)


def _accelSkip() -> str | None:
    """
    Why the accelerated half cannot run here, or C{None}.
    """
    if _accel is None:
        reason = "the C accelerator is not built (python setup.py build_ext --inplace)"
    elif unicodedata.unidata_version != _accel.UNIDATA_VERSION:
        reason = (
            f"the C accelerator was built for Unicode {_accel.UNIDATA_VERSION}, "
            f"this Python has {unicodedata.unidata_version}"
        )
    else:
        return None
    # UPPERECHO_REQUIRE_ACCEL: a missing extension fails (AcceleratorRequiredTests)
    return reason


class AcceleratedPathTests(PathTests, SynchronousTestCase):
    """
    The C accelerator.
    """

    skip = _accelSkip()
    if _accel is not None:
        upperUtf8 = staticmethod(_accel.upper_utf8)
        upperAscii = staticmethod(_accel.upper_ascii)


class AcceleratorRequiredTests(SynchronousTestCase):
    """
    Where the accelerator is required (CI, C{make test}, tox), its absence
    fails instead of skipping half of the tests above.
    """

    if not REQUIRED:
        skip = "UPPERECHO_REQUIRE_ACCEL=1 is not set"

    def test_built(self) -> None:
        """
        The extension is built for this interpreter and is in use.
        """
        self.assertIsNone(_accelSkip())
        self.assertTrue(transform.ACCELERATED, transform.IMPLEMENTATION)


def paths() -> list[tuple[Callable[[bytes, bool], tuple[bytes, int]], Any]]:
    """
    The UTF-8 functions of the paths this process can run.
    """
    found: list[tuple[Callable[[bytes, bool], tuple[bytes, int]], Any]] = [
        (transform._pureUtf8, transform._pureAscii)
    ]
    if _accelSkip() is None:
        found.append((_accel.upper_utf8, _accel.upper_ascii))
    return found


class PropertyTests(SynchronousTestCase):
    """
    Hypothesis streams, each one run through every path this process has
    (one test for both, so that hypothesis sees one executor).
    """

    def check(self, data: bytes, readings: Iterable[list[bytes]]) -> None:
        """
        On each path, C{data} as one message and in each of C{readings}
        gives the definition's bytes.
        """
        want = reference(data)
        readings = list(readings)
        for utf8, ascii in paths():
            patches = [
                self.patch(transform, "_upperUtf8", utf8),
                self.patch(transform, "upperAscii", ascii),
            ]
            try:
                for got in [upper(data), *(stream(r) for r in readings)]:
                    if got != want:
                        self.fail(f"{utf8.__name__}: {firstDifference(got, want)}")
            finally:
                for p in patches:
                    p.restore()

    @settings(max_examples=300, deadline=None)
    @given(adversarialPieces())
    def test_everySplit(self, data: bytes) -> None:
        """
        A stream cut in two at every byte, and fed one byte a read, gives
        the transform of the whole.
        """
        splits = ([data[:i], data[i:]] for i in range(len(data) + 1))
        bytewise = [data[i : i + 1] for i in range(len(data))]
        self.check(data, [*splits, bytewise])

    @settings(max_examples=200, deadline=None)
    @given(st.text(max_size=200), st.lists(st.integers(0, 800), max_size=10))
    def test_text(self, text: str, cuts: list[int]) -> None:
        """
        Text (surrogates included) in reads cut anywhere.
        """
        data = text.encode("utf-8", "surrogatepass")
        points = sorted({c % (len(data) + 1) for c in cuts})
        self.check(
            data,
            [
                [
                    data[a:b]
                    for a, b in zip([0, *points], [*points, len(data)], strict=True)
                ]
            ],
        )


class SelectionTests(SynchronousTestCase):
    """
    Which path a process uses, and what it says about it.
    """

    def load(self, environ: dict[str, str]) -> tuple[Any, str]:
        self.patch(os, "environ", environ)
        return transform._loadAccelerator()

    def test_pureForced(self) -> None:
        """
        C{UPPERECHO_PURE_PYTHON=1} forces the fallback; empty or C{0} does not.
        """
        module, line = self.load({"UPPERECHO_PURE_PYTHON": "1"})
        self.assertIsNone(module)
        self.assertEqual(line, "pure Python (UPPERECHO_PURE_PYTHON is set)")
        if _accel is not None and _accelSkip() is None:
            for value in ("", "0"):
                module, line = self.load({"UPPERECHO_PURE_PYTHON": value})
                self.assertIs(module, _accel)
                self.assertEqual(
                    line, f"C accelerator (Unicode {unicodedata.unidata_version})"
                )

    def test_notBuilt(self) -> None:
        """
        Without the extension, the fallback, saying so.
        """
        self.patch(sys, "modules", {**sys.modules, "upperecho._accel": None})
        module, line = self.load({})
        self.assertIsNone(module)
        self.assertEqual(line, "pure Python (the C accelerator is not built)")

    def test_unicodeMismatch(self) -> None:
        """
        A table built from another Unicode version is refused.
        """
        if _accel is None:
            raise self.skipTest("the C accelerator is not built")
        self.patch(unicodedata, "unidata_version", "0.0.0")
        module, line = self.load({})
        self.assertIsNone(module)
        self.assertEqual(
            line,
            f"pure Python (the C accelerator was built for Unicode "
            f"{_accel.UNIDATA_VERSION}, this Python has 0.0.0)",
        )

    def test_flag(self) -> None:
        """
        C{ACCELERATED} and the module's functions agree with the line.
        """
        self.assertEqual(
            transform.ACCELERATED, transform.IMPLEMENTATION.startswith("C ")
        )
        if transform.ACCELERATED:
            self.assertIs(transform._upperUtf8, _accel.upper_utf8)
        else:
            self.assertIs(transform._upperUtf8, transform._pureUtf8)

    def test_startupLine(self) -> None:
        """
        twistd's start-up line names the transform in use.
        """
        reactor = MemoryReactor()
        options = tap.Options()
        options.parseOptions(["--tcp", "0"])
        svc = tap.makeService(options, reactor=reactor)
        svc.tuneMalloc = False
        events: list[dict[str, Any]] = []
        observer = cast(ILogObserver, events.append)
        globalLogPublisher.addObserver(observer)
        try:
            svc.startService()
        finally:
            globalLogPublisher.removeObserver(observer)
            svc.stopService()
        lines = [formatEvent(e) for e in events if "transform" in formatEvent(e)]
        self.assertEqual(len(lines), 1)
        self.assertIn(f"transform {transform.IMPLEMENTATION}", lines[0])
