"""
Tests for L{upperecho.transform}: table cases, hypothesis properties, and
the UTF-8 fast path against the codec path.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from upperecho.transform import Uppercaser, checkEncoding, isAsciiCompatible, upper


def reference(data: bytes, encoding: str = "utf-8") -> bytes:
    """
    The definition of the transform for UTF-8 (docs/contract.rst, The
    transform).
    """
    return (
        data.decode(encoding, "surrogateescape")
        .upper()
        .encode(encoding, "surrogateescape")
    )


def chunked(data: bytes, cuts: list[int], encoding: str = "utf-8") -> bytes:
    """
    Feed C{data} to one L{Uppercaser} in pieces cut at C{cuts}, then flush.
    """
    u = Uppercaser(encoding)
    points = sorted({c % (len(data) + 1) for c in cuts})
    out = []
    start = 0
    for p in [*points, len(data)]:
        out.append(u.feed(data[start:p]))
        start = p
    out.append(u.flush())
    return b"".join(out)


class TableTests(SynchronousTestCase):
    """
    The examples of docs/contract.rst, The transform.
    """

    def test_ascii(self) -> None:
        """
        ASCII letters are uppercased, everything else stays.
        """
        self.assertEqual(upper(b"hello, world 123\n"), b"HELLO, WORLD 123\n")

    def test_unicode(self) -> None:
        """
        C{str.upper()} rules: sharp s grows, digraphs and fullwidth letters
        map, Chinese is unchanged.
        """
        for src, want in [
            ("straße", "STRASSE"),
            ("ǆ", "Ǆ"),
            ("ａｂｃ", "ＡＢＣ"),
            ("敏捷的棕色狐狸", "敏捷的棕色狐狸"),
            ("γειά σου", "ΓΕΙΆ ΣΟΥ"),
        ]:
            self.assertEqual(upper(src.encode()), want.encode(), src)

    def test_invalidBytesPassThrough(self) -> None:
        """
        Bytes that are not UTF-8 come back unchanged, around uppercased text.
        """
        self.assertEqual(upper(b"ab\xff\xfecd\xc3"), b"AB\xff\xfeCD\xc3")

    def test_latin1Unencodable(self) -> None:
        """
        In latin-1, C{ÿ} stays, because its uppercase C{Ÿ} has no latin-1 byte.
        """
        data = "ÿé straße".encode("latin-1")
        self.assertEqual(upper(data, "latin-1"), "ÿÉ STRASSE".encode("latin-1"))

    def test_gbk(self) -> None:
        """
        GBK text is decoded as GBK: Chinese stays, Latin letters go up.
        """
        data = "中文 abc ｄ".encode("gbk")
        self.assertEqual(upper(data, "gbk"), "中文 ABC Ｄ".encode("gbk"))

    def test_gbkInvalidPassThrough(self) -> None:
        """
        An invalid GBK sequence (a lead byte followed by ASCII) passes through.
        """
        self.assertEqual(upper(b"\x81 ab", "gbk"), b"\x81 AB")

    def test_notAsciiCompatible(self) -> None:
        """
        A codec that is not ASCII-compatible (EBCDIC) works too, invalid and
        unmapped bytes included.
        """
        data = "abc straße".encode("cp037")
        self.assertEqual(upper(data, "cp037"), "ABC STRASSE".encode("cp037"))
        for b in range(256):
            self.assertEqual(
                upper(bytes([b]), "cp037"),
                bytes([b]).decode("cp037").upper().encode("cp037", "ignore")
                or bytes([b]),
            )

    def test_unsupportedCodecsRefused(self) -> None:
        """
        Codecs that cannot give back the bytes they decoded -- a byte-order
        mark, an escape syntax, no error handler -- are refused by name with
        one line, instead of answering an empty datagram with a BOM or raising
        inside the server.
        """
        for name in (
            "utf-16",
            "utf-16-le",
            "utf-32",
            "utf-7",
            "utf-8-sig",
            "idna",
            "punycode",
            "iso2022_jp",
        ):
            with self.assertRaises(ValueError) as e:
                checkEncoding(name)
            self.assertIn(f"unsupported encoding: {name!r}", str(e.exception))
            self.assertNotIn("\n", str(e.exception))
        for name in ("utf-8", "ascii", "latin-1", "cp1252", "gbk", "gb18030", "big5"):
            self.assertTrue(checkEncoding(name))

    def test_heldCharacter(self) -> None:
        """
        A multi-byte character split across feeds is held, then completed.
        """
        u = Uppercaser()
        self.assertEqual(u.feed(b"a\xc3"), b"A")
        self.assertEqual(u.feed(b"\xa9b"), "ÉB".encode())
        self.assertEqual(u.flush(), b"")

    def test_flushReturnsHeldBytes(self) -> None:
        """
        At the end of the stream, held bytes of an incomplete character are
        returned as they are.
        """
        u = Uppercaser()
        self.assertEqual(u.feed(b"x\xe4\xb8"), b"X")
        self.assertEqual(u.flush(), b"\xe4\xb8")

    def test_asciiCompatible(self) -> None:
        """
        The fast path is only for codecs that keep ASCII as it is.
        """
        self.assertTrue(isAsciiCompatible("utf-8"))
        self.assertTrue(isAsciiCompatible("latin-1"))
        self.assertTrue(isAsciiCompatible("gbk"))
        self.assertFalse(isAsciiCompatible("utf-16"))
        self.assertFalse(isAsciiCompatible("utf-7"))

    def test_checkEncoding(self) -> None:
        """
        Unknown codecs and bytes-to-bytes codecs are refused with one line.
        """
        self.assertEqual(checkEncoding("UTF8"), "utf-8")
        for bad in ("nope", "base64", "rot13", "zlib"):
            with self.assertRaises(ValueError) as e:
                checkEncoding(bad)
            self.assertIn(repr(bad), str(e.exception))


class PropertyTests(SynchronousTestCase):
    """
    Invariants of the transform over arbitrary input.
    """

    @given(st.binary(max_size=300))
    def test_matchesReference(self, data: bytes) -> None:
        """
        For UTF-8, the transform is exactly the reference expression of docs/contract.rst.
        """
        self.assertEqual(upper(data), reference(data))

    @given(st.text(st.characters(exclude_categories=["Cs"]), max_size=100))
    def test_text(self, text: str) -> None:
        """
        Valid text comes back as C{str.upper()} of it.
        """
        self.assertEqual(upper(text.encode()), text.upper().encode())

    @given(
        st.binary(max_size=300)
        | st.text(max_size=100).map(lambda t: t.encode("utf-8", "surrogatepass")),
        st.lists(st.integers(min_value=0, max_value=400), max_size=12),
    )
    def test_chunkingInvariance(self, data: bytes, cuts: list[int]) -> None:
        """
        However a stream is cut into reads, the output is the transform of
        the whole stream.
        """
        self.assertEqual(chunked(data, cuts), upper(data))

    @given(
        st.text(max_size=60),
        st.lists(st.integers(min_value=0, max_value=200), max_size=8),
        st.sampled_from(["latin-1", "gbk", "cp037", "cp1252", "shift_jis", "big5"]),
    )
    def test_chunkingInvarianceOtherEncodings(
        self, text: str, cuts: list[int], encoding: str
    ) -> None:
        """
        Chunking invariance holds in other encodings too.
        """
        data = text.encode(encoding, "replace")
        self.assertEqual(chunked(data, cuts, encoding), upper(data, encoding))

    @given(st.binary(max_size=300))
    def test_latin1PerCharacter(self, data: bytes) -> None:
        """
        In latin-1 every byte is a character: each one is uppercased when its
        uppercase form is one latin-1 character or more, else kept.
        """
        want = bytearray()
        for ch in data.decode("latin-1"):
            try:
                want += ch.upper().encode("latin-1")
            except UnicodeEncodeError:
                want += ch.encode("latin-1")
        self.assertEqual(upper(data, "latin-1"), bytes(want))

    @given(st.binary(max_size=200))
    def test_idempotent(self, data: bytes) -> None:
        """
        Uppercasing twice changes nothing more.
        """
        once = upper(data)
        self.assertEqual(upper(once), once)


#: pieces that make the UTF-8 decoder's boundary cases likely: characters of
#: every length, their proper prefixes, and sequences it must refuse
_UTF8_PIECES = [
    b"a",
    b"Z",
    b" ",
    *(c.encode() for c in "ßéǆŉΐσςѐ敏ａﬁ€😀𐐨"),
    b"\xc3",
    b"\xe6\x95",
    b"\xe6",
    b"\xf0\x9f\x98",
    b"\xf0\x9f",
    b"\xf0",
    b"\xf4\x8f\xbf",
    b"\x80",
    b"\xbf",
    b"\xc0\xaf",
    b"\xc1",
    b"\xe0\x80\x80",
    b"\xed\xa0\x80",
    b"\xed\xa0",
    b"\xf4\x90\x80\x80",
    b"\xf4\x90",
    b"\xf5",
    b"\xff",
]


class Utf8FastPathTests(SynchronousTestCase):
    """
    The codec-object-free UTF-8 path of L{Uppercaser} and L{upper} gives
    exactly what the incremental codec path and the reference expression give.
    """

    @settings(max_examples=400, deadline=None)
    @given(
        st.lists(st.sampled_from(_UTF8_PIECES), max_size=40),
        st.lists(st.integers(min_value=0, max_value=200), max_size=10),
    )
    def test_sameAsCodecPath(self, pieces: list[bytes], cuts: list[int]) -> None:
        """
        Any split of any mix of valid, truncated and invalid sequences.
        """
        data = b"".join(pieces)
        fast, slow = Uppercaser(), Uppercaser()
        slow._utf8 = False
        self.assertTrue(fast._utf8)
        points = sorted({c % (len(data) + 1) for c in cuts})
        got, want = [], []
        start = 0
        for p in [*points, len(data)]:
            got.append(fast.feed(data[start:p]))
            want.append(slow.feed(data[start:p]))
            self.assertEqual(got[-1], want[-1])
            self.assertEqual(fast._pending, slow._pending)
            start = p
        got.append(fast.flush())
        want.append(slow.flush())
        self.assertEqual(got, want)
        reference = data.decode("utf-8", "surrogateescape").upper()
        self.assertEqual(b"".join(got), reference.encode("utf-8", "surrogateescape"))
        self.assertEqual(upper(data), b"".join(got))

    def test_spellings(self) -> None:
        """
        Every spelling of UTF-8 takes the fast path; UTF-8 with a BOM does
        not.
        """
        for name in ("utf-8", "UTF8", "utf_8", "U8"):
            self.assertTrue(Uppercaser(name)._utf8, name)
        self.assertFalse(Uppercaser("utf-8-sig")._utf8)
        self.assertFalse(Uppercaser("latin-1")._utf8)

    def test_reusedAfterFlush(self) -> None:
        """
        After a flush the held tail is gone.
        """
        u = Uppercaser()
        self.assertEqual(u.feed(b"a\xc3"), b"A")
        self.assertEqual(u.flush(), b"\xc3")
        self.assertEqual(u.feed(b"\x9f"), b"\x9f")
        self.assertEqual(u.flush(), b"")
