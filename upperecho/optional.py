"""
The parts of upperecho's features that come from other packages, and the
one line that names what to install when one of them is missing.

A plain C{pip install upperecho} installs every one of them (Twisted's
C{tls} extra and C{prometheus-client} are dependencies), so these checks
only speak up where an environment was trimmed by hand (C{pip install
--no-deps}, a distribution package without pyOpenSSL).  They run while the
options are checked, so such an environment ends C{twistd} or the client
with one line, never with a traceback from deep inside Twisted.
"""

from __future__ import annotations

import importlib

__all__ = ["missingMetrics", "missingTLS", "usesTLS"]

#: endpoint prefixes that need pyOpenSSL (server and client)
TLS_PREFIXES = ("ssl", "tls")


def _missing(module: str, install: str, feature: str) -> str | None:
    """
    C{None} if C{module} imports, else the sentence saying what to install.
    """
    try:
        importlib.import_module(module)
    except ImportError:
        return f"{feature} needs {install}, which is not installed (pip install {install!r})"
    return None


def usesTLS(description: str) -> bool:
    """
    Whether the endpoint string C{description} is a TLS endpoint, bare or
    behind C{haproxy:}.
    """
    kind = description.split(":", 1)[0]
    if kind == "haproxy":
        kind = description[len("haproxy:") :].split(":", 1)[0]
    return kind in TLS_PREFIXES


def missingTLS() -> str | None:
    """
    C{None} if TLS endpoints can work, else what to install.
    """
    return _missing("OpenSSL", "twisted[tls]", "TLS")


def missingMetrics() -> str | None:
    """
    C{None} if C{--metrics} can work, else what to install.
    """
    return _missing("prometheus_client", "prometheus-client", "the metrics page")
