# -*- test-case-name: tests.unit.test_environment -*-
"""
Every C{twistd upperecho} option from the environment, as containers are
configured: C{--tcp 12000} is also C{UPPERECHO_TCP=12000}, C{--udp-rate} is
C{UPPERECHO_UDP_RATE}, and so on (L{variableName}).

The command line wins: a variable is used only when its option is not on
the command line.  A flag (C{--identify}) is set by C{1}, C{true} or C{yes}
and left off by C{0}, C{false}, C{no} or an empty value; C{UPPERECHO_LISTEN}
holds one or more endpoints separated by spaces, C{UPPERECHO_PROXY_FROM} one
or more networks.  The values are then
checked exactly as the same options typed on the command line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from twisted.python import usage

__all__ = ["PREFIX", "environmentArguments", "variableName"]

PREFIX = "UPPERECHO_"
_TRUE = ("1", "true", "yes")
_FALSE = ("0", "false", "no", "")
#: options that are not settings of the server
_SKIPPED = ("help", "version")
#: options given several times: their variable holds values separated by spaces
_REPEATABLE = ("listen", "proxy-from")


def variableName(option: str) -> str:
    """
    The environment variable for the option named C{option} (no dashes in
    front): C{udp-rate} -> C{UPPERECHO_UDP_RATE}.
    """
    return PREFIX + option.upper().replace("-", "_")


def _named(option: str, argv: Sequence[str]) -> bool:
    flag = f"--{option}"
    return any(arg == flag or arg.startswith(flag + "=") for arg in argv)


def environmentArguments(
    options: usage.Options, environ: Mapping[str, str], argv: Sequence[str]
) -> list[str]:
    """
    The command-line arguments the environment adds for C{options} (put
    them before C{argv}).

    @raise usage.UsageError: for a flag's variable that is not yes or no.
    """
    added: list[str] = []
    for spec in options.longOpt:
        takesValue = spec.endswith("=")
        option = spec.rstrip("=")
        name = variableName(option)
        if option in _SKIPPED or name not in environ or _named(option, argv):
            continue
        value = environ[name]
        if not takesValue:
            word = value.strip().lower()
            if word not in _TRUE + _FALSE:
                raise usage.UsageError(
                    f"{name}={value}: not one of 1, true, yes, 0, false, no"
                )
            if word in _TRUE:
                added.append(f"--{option}")
        elif option in _REPEATABLE:
            added.extend(f"--{option}={each}" for each in value.split())
        else:
            added.append(f"--{option}={value}")
    return added
