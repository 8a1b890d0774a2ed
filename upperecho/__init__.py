"""
upperecho: the classic socket-programming uppercase echo, as a Twisted service.

Mount the protocols in your own application::

    from twisted.internet import reactor
    from twisted.internet.endpoints import serverFromString
    from upperecho import MAX_DATAGRAM, UpperEchoDatagramProtocol, UpperEchoFactory

    serverFromString(reactor, "tcp:12000").listen(UpperEchoFactory())
    reactor.listenUDP(12000, UpperEchoDatagramProtocol(), maxPacketSize=MAX_DATAGRAM)
    reactor.run()
"""

from upperecho._version import __version__
from upperecho.tcp import UpperEchoFactory, UpperEchoProtocol
from upperecho.transform import Uppercaser, upper
from upperecho.udp import MAX_DATAGRAM, UpperEchoDatagramProtocol

__all__ = [
    "MAX_DATAGRAM",
    "UpperEchoDatagramProtocol",
    "UpperEchoFactory",
    "UpperEchoProtocol",
    "Uppercaser",
    "__version__",
    "upper",
]
