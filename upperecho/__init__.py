"""
upperecho: the classic socket-programming uppercase echo, as a Twisted service.

Mount the protocols in your own application::

    from twisted.internet import reactor
    from twisted.internet.endpoints import serverFromString
    from upperecho import UpperEchoDatagramProtocol, UpperEchoFactory, listenUDP

    serverFromString(reactor, "tcp:12000").listen(UpperEchoFactory())
    listenUDP(reactor, 12000, UpperEchoDatagramProtocol())
    reactor.run()

and talk to a server from your own code with the client protocols (inside a
coroutine run by C{twisted.internet.task.react})::

    from twisted.internet.endpoints import HostnameEndpoint
    from twisted.internet.protocol import Factory
    from upperecho import UpperEchoClientProtocol

    endpoint = HostnameEndpoint(reactor, "localhost", 12000)
    proto = await endpoint.connect(Factory.forProtocol(UpperEchoClientProtocol))
    print(await proto.upper("hello"))  # HELLO
"""

from upperecho._version import __version__
from upperecho.client import (
    NoReplyError,
    UpperEchoClientProtocol,
    UpperEchoDatagramClientProtocol,
)
from upperecho.tcp import UpperEchoFactory, UpperEchoProtocol
from upperecho.transform import Uppercaser, upper
from upperecho.udp import MAX_DATAGRAM, UpperEchoDatagramProtocol, listenUDP

__all__ = [
    "MAX_DATAGRAM",
    "NoReplyError",
    "UpperEchoClientProtocol",
    "UpperEchoDatagramClientProtocol",
    "UpperEchoDatagramProtocol",
    "UpperEchoFactory",
    "UpperEchoProtocol",
    "Uppercaser",
    "__version__",
    "listenUDP",
    "upper",
]
