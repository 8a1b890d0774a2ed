"""
Integration and end-to-end tests: real sockets, a real reactor, C{twistd}
as a subprocess, the installed commands.
"""
