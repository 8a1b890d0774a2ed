"""
The C{upperecho} twistd plugin: C{twistd -n upperecho --tcp 12000 --udp 12001}.

Kept import-free on purpose: L{ServiceMaker} loads L{upperecho.tap} only when
the plugin is used, so regenerating the plugin cache never installs a reactor.
"""

from twisted.application.service import ServiceMaker

upperecho = ServiceMaker(
    "upperecho",  # name
    "upperecho.tap",  # module
    "Uppercase echo over TCP and UDP (the classic socket-programming pair).",
    "upperecho",  # tapname
)
