"""
A small blocking TLS client for the tests, built on L{ssl.SSLObject} over a
plain socket so that a test decides exactly when TLS records and TCP
segments are sent: a TLS C{close_notify} half-close, a bare TCP FIN under a
TLS session, or no reading at all.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import time


class TLSClient:
    """
    One TLS connection to C{(host, port)}, verified against C{context}.
    """

    def __init__(
        self,
        port: int,
        context: ssl.SSLContext,
        host: str = "127.0.0.1",
        serverName: str = "localhost",
        timeout: float = 10.0,
        preamble: bytes = b"",
    ) -> None:
        self.raw = socket.create_connection((host, port), timeout=timeout)
        # sent in clear before the handshake (a PROXY protocol header)
        self.raw.sendall(preamble)
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self.tls = context.wrap_bio(self._in, self._out, server_hostname=serverName)
        self._pending = b""
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._sendPending(block=True)
                data = self.raw.recv(65536)
                if not data:
                    raise ConnectionError("EOF during the TLS handshake") from None
                self._in.write(data)
        self._sendPending(block=True)

    def _sendPending(self, block: bool) -> int:
        """
        Send encrypted bytes waiting in the TLS layer; with C{block=False}
        only what the socket takes now.

        @return: the number of raw bytes still unsent.
        """
        self._pending += self._out.read()
        if block:
            self.raw.sendall(self._pending)
            self._pending = b""
        else:
            while self._pending:
                try:
                    sent = self.raw.send(self._pending)
                except (BlockingIOError, TimeoutError):
                    break
                self._pending = self._pending[sent:]
        return len(self._pending)

    def send(self, data: bytes) -> None:
        """
        Encrypt and send C{data}, blocking until the socket took it.
        """
        self.tls.write(data)
        self._sendPending(block=True)

    def sendWithoutBlocking(self, chunk: bytes, limit: int, seconds: float) -> int:
        """
        Send copies of C{chunk} until the socket stops taking them (the peer
        stopped reading), C{limit} bytes were sent or C{seconds} passed.

        @return: the number of plaintext bytes handed to TLS.
        """
        self.raw.settimeout(0.3)
        deadline = time.monotonic() + seconds
        sent = 0
        while sent < limit and time.monotonic() < deadline:
            if self._sendPending(block=False):
                # still blocked after a 0.3 s wait: the peer is not reading
                if not select.select([], [self.raw], [], 0.5)[1]:
                    break
                continue
            self.tls.write(chunk)
            sent += len(chunk)
        return sent

    def closeNotify(self) -> None:
        """
        Half-close the TLS way: send C{close_notify}, keep reading.
        """
        with contextlib.suppress(ssl.SSLWantReadError):
            self.tls.unwrap()
        self._sendPending(block=True)

    def tcpHalfClose(self) -> None:
        """
        Half-close under TLS: a bare TCP FIN, no C{close_notify}.
        """
        self._sendPending(block=True)
        self.raw.shutdown(socket.SHUT_WR)

    def receive(self, until: int | None = None, seconds: float = 20.0) -> bytes:
        """
        Read plaintext until the server ends the session (or C{until} bytes
        arrived), sending any still-pending raw bytes meanwhile.
        """
        self.raw.settimeout(None)
        self.raw.setblocking(False)
        got = bytearray()
        deadline = time.monotonic() + seconds
        while until is None or len(got) < until:
            while True:
                try:
                    chunk = self.tls.read(65536)
                except ssl.SSLWantReadError:
                    break
                except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    return bytes(got)
                if not chunk:
                    return bytes(got)
                got += chunk
            if until is not None and len(got) >= until:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"received {len(got)} bytes before the timeout")
            writers = [self.raw] if self._sendPending(block=False) else []
            readable, _, _ = select.select([self.raw], writers, [], min(left, 1.0))
            if readable:
                try:
                    data = self.raw.recv(262144)
                except BlockingIOError:
                    continue
                if not data:
                    self._in.write_eof()
                else:
                    self._in.write(data)
        return bytes(got)

    def close(self) -> None:
        self.raw.close()
