# -*- test-case-name: tests.unit.test_address -*-
"""
How upperecho writes a network address in logs and in the client's output.
"""

from __future__ import annotations

from twisted.internet.interfaces import IAddress

__all__ = ["addressText", "hostPort"]


def hostPort(host: str, port: int) -> str:
    """
    C{host:port}, with an IPv6 address in brackets so the port stays
    readable: C{127.0.0.1:12000}, C{[::1]:12000}.
    """
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def addressText(address: IAddress | None) -> str:
    """
    A peer or host address as L{hostPort} writes it; a UNIX socket as its
    path; anything else as Twisted prints it.
    """
    host = getattr(address, "host", None)
    if host is None:
        return str(getattr(address, "name", None) or address)
    return hostPort(host, getattr(address, "port", 0))
