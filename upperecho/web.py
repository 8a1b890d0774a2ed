# -*- test-case-name: tests.unit.test_web -*-
"""
upperecho's HTTP side: the pages C{--metrics} and C{--health} serve.

C{--metrics ENDPOINT} serves C{/metrics} (L{upperecho.metrics}),
C{/healthz} and C{/readyz}; C{--health ENDPOINT} serves the last two alone,
for a deployment that wants probes and no metrics.  Both are C{twisted.web}
sites on a Twisted server endpoint, in the reactor thread of the echo
services: a probe that gets an answer has seen that reactor turn.
"""

from __future__ import annotations

from typing import Any

from twisted.application import strports
from twisted.application.internet import StreamServerEndpointService
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from upperecho.health import Readiness

__all__ = ["HealthResource", "ReadyResource", "healthRoot", "webService"]


class HealthResource(Resource):
    """
    C{/healthz}: 200 while the process runs and its reactor turns.
    """

    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        return b"ok\n"


class ReadyResource(Resource):
    """
    C{/readyz}: 200 while every listener is up and no shutdown has begun,
    else 503 with one line per reason.
    """

    isLeaf = True

    def __init__(self, readiness: Readiness) -> None:
        super().__init__()
        self.readiness = readiness

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        # a load balancer must see each answer afresh
        request.setHeader(b"Cache-Control", b"no-store")
        problems = self.readiness.problems()
        if problems:
            request.setResponseCode(503)
            return "".join(f"{line}\n" for line in problems).encode()
        return b"ready\n"


def healthRoot(readiness: Readiness) -> Resource:
    """
    A resource tree with C{/healthz} and C{/readyz}; C{--metrics} adds
    C{/metrics} to it.
    """
    root = Resource()
    root.putChild(b"healthz", HealthResource())
    root.putChild(b"readyz", ReadyResource(readiness))
    return root


def webService(
    option: str, description: str, root: Resource, reactor: Any
) -> StreamServerEndpointService:
    """
    A service serving C{root} over HTTP on the endpoint C{description},
    named for its option; a failure to listen is raised from
    C{privilegedStartService}.
    """
    site = Site(root)
    site.noisy = False
    svc = strports.service(description, site, reactor=reactor)
    svc.setName(f"--{option} {description}")
    return svc
