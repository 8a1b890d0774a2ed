"""
C{twistd upperecho} installs upperecho's reactor when none was chosen,
and C{twistd --reactor NAME} wins.
"""

from __future__ import annotations

from tests.helpers import Twistd, freePorts


def _startupLog(twistdArgs: list[str]) -> str:
    tcp, udp = freePorts()
    argv = ["--tcp", str(tcp), "--udp", str(udp)]
    with Twistd(argv, twistdArgs=twistdArgs) as t:
        t.waitBound(tcp=[tcp], udp=[udp])
        return t.log()


def test_twistdInstallsIt() -> None:
    """
    C{twistd upperecho} with no C{--reactor} runs on upperecho's reactor,
    and its start-up log says so.
    """
    assert "reactor upperecho.reactor.UpperEchoReactor" in _startupLog([])


def test_userChoiceWins() -> None:
    """
    C{twistd --reactor epoll upperecho} runs on the reactor named.
    """
    log_ = _startupLog(["--reactor", "epoll"])
    assert "reactor twisted.internet.epollreactor.EPollReactor" in log_
    assert "UpperEchoReactor" not in log_
