"""
Tests for L{upperecho.health} and the pages of L{upperecho.web}: readiness
follows the listeners and the shutdown, and C{/healthz}, C{/readyz} and
C{/metrics} answer as docs/contract.rst says.
"""

from __future__ import annotations

from twisted.application.service import MultiService, Service
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource, getChildForRequest
from twisted.web.test.requesthelper import DummyRequest

from upperecho.health import Readiness
from upperecho.tap import Options, makeService
from upperecho.web import healthRoot

from .test_tap import FakeUDPReactor


class ClockReactor(FakeUDPReactor, Clock):
    """
    A fake reactor that keeps time, listens on UDP and records system event
    triggers.
    """

    def __init__(self) -> None:
        FakeUDPReactor.__init__(self)
        Clock.__init__(self)


def render(root: Resource, path: bytes) -> tuple[int, bytes]:
    """
    GET C{path} from C{root}: the status code and the body.
    """
    request = DummyRequest(path.strip(b"/").split(b"/"))
    resource = getChildForRequest(root, request)
    body = resource.render(request)
    assert isinstance(body, bytes)
    return request.responseCode or 200, body


def listener(name: str) -> Service:
    svc = Service()
    svc.setName(name)
    return svc


class ReadinessTests(SynchronousTestCase):
    """
    Ready only while every listener runs and no shutdown has begun.
    """

    def test_listeners(self) -> None:
        """
        A listener that does not run makes the server not ready, by name.
        """
        tcp, udp = listener("--tcp 1"), listener("--udp 2")
        readiness = Readiness([tcp, udp])
        self.assertEqual(
            readiness.problems(), ["--tcp 1: not listening", "--udp 2: not listening"]
        )
        tcp.startService()
        self.assertEqual(readiness.problems(), ["--udp 2: not listening"])
        udp.startService()
        self.assertEqual(readiness.problems(), [])
        udp.stopService()
        self.assertEqual(readiness.problems(), ["--udp 2: not listening"])

    def test_drain(self) -> None:
        """
        Draining makes the server not ready; with no delay, the stop goes on
        at once.
        """
        readiness = Readiness()
        self.assertEqual(readiness.problems(), [])
        self.assertIsNone(readiness.drain())
        self.assertEqual(readiness.problems(), ["shutting down"])

    def test_drainDelay(self) -> None:
        """
        With a delay, the stop waits that long, not ready meanwhile.
        """
        clock = Clock()
        readiness = Readiness(delay=5, clock=clock)
        waiting = readiness.drain()
        assert waiting is not None
        self.assertNoResult(waiting)
        self.assertTrue(readiness.draining)
        clock.advance(4.9)
        self.assertNoResult(waiting)
        clock.advance(0.2)
        self.successResultOf(waiting)


class PagesTests(SynchronousTestCase):
    """
    C{/healthz} and C{/readyz}.
    """

    def test_healthz(self) -> None:
        """
        200 whatever the readiness.
        """
        readiness = Readiness([listener("--tcp 1")])
        readiness.draining = True
        self.assertEqual(render(healthRoot(readiness), b"/healthz"), (200, b"ok\n"))

    def test_readyz(self) -> None:
        """
        200 when ready; 503 with the reasons when not.
        """
        tcp = listener("--tcp 1")
        readiness = Readiness([tcp])
        root = healthRoot(readiness)
        self.assertEqual(render(root, b"/readyz"), (503, b"--tcp 1: not listening\n"))
        tcp.startService()
        self.assertEqual(render(root, b"/readyz"), (200, b"ready\n"))
        readiness.draining = True
        self.assertEqual(render(root, b"/readyz"), (503, b"shutting down\n"))


class ServiceTests(SynchronousTestCase):
    """
    What L{makeService} builds for C{--metrics} and C{--health}.
    """

    def build(self, *argv: str) -> tuple[ClockReactor, MultiService]:
        options = Options()
        options.parseOptions(list(argv))
        reactor = ClockReactor()
        return reactor, makeService(options, reactor=reactor)

    def site(self, reactor: ClockReactor, port: int) -> Resource:
        [factory] = [f for p, f, *_ in reactor.tcpServers if p == port]
        root: Resource = factory.resource  # type: ignore[attr-defined]
        return root

    def test_health(self) -> None:
        """
        --health serves /healthz and /readyz, and no /metrics; /readyz is 200
        once the listeners run, 503 from the shutdown on.
        """
        reactor, top = self.build("--tcp", "1", "--udp", "2", "--health", "tcp:3")
        top.privilegedStartService()
        self.addCleanup(top.getServiceNamed("SIGHUP").stopService)
        root = self.site(reactor, 3)
        self.assertEqual(render(root, b"/readyz")[0], 503)
        top.startService()
        self.assertEqual(render(root, b"/readyz"), (200, b"ready\n"))
        self.assertEqual(render(root, b"/healthz"), (200, b"ok\n"))
        self.assertEqual(render(root, b"/metrics")[0], 404)

    def test_drainDelay(self) -> None:
        """
        Stopping (what SIGTERM does) makes /readyz 503 at once; with
        --drain-delay the listeners close only after it.
        """
        reactor, top = self.build(
            "--tcp", "1", "--health", "tcp:3", "--drain-delay", "2"
        )
        top.privilegedStartService()
        top.startService()
        root = self.site(reactor, 3)
        stopped = top.stopService()
        self.assertEqual(render(root, b"/readyz"), (503, b"shutting down\n"))
        self.assertTrue(top.getServiceNamed("--tcp 1").running)
        reactor.advance(2)
        self.successResultOf(stopped)
        self.assertFalse(top.getServiceNamed("--tcp 1").running)

    def test_metricsToo(self) -> None:
        """
        --metrics serves /metrics, /healthz and /readyz.
        """
        reactor, top = self.build("--tcp", "1", "--metrics", "tcp:4")
        top.privilegedStartService()
        top.startService()
        self.addCleanup(top.stopService)
        root = self.site(reactor, 4)
        self.assertEqual(render(root, b"/readyz"), (200, b"ready\n"))
        status, body = render(root, b"/metrics")
        self.assertEqual(status, 200)
        self.assertIn(b"upperecho_connections_open", body)
