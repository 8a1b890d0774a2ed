# -*- test-case-name: tests.unit.test_allocator -*-
"""
Tuning of the C allocator for a long-running upperecho server process.

This is process-wide, so only the C{twistd} service calls it
(L{upperecho.tap.UpperEchoService}); the protocols and factories, which other
applications mount in their own processes, never do.
"""

from __future__ import annotations

__all__ = ["tuneAllocator"]

#: glibc C{mallopt} parameters (malloc.h) and the values L{tuneAllocator} sets
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 4 * 1024 * 1024
_TRIM_THRESHOLD = 16 * 1024 * 1024
_allocatorTuned: bool | None = None


def tuneAllocator() -> bool:
    """
    Stop glibc from returning memory to the kernel after every read.

    Uppercasing a 64 KiB read of non-ASCII text allocates about 1.5 MiB for
    a moment (the decoded text, C{str.upper}'s work buffer of three UCS-4
    slots per character, the result, the encoded bytes).  With glibc's
    default thresholds those blocks are mapped and unmapped, or the heap top
    is trimmed, on every read, and every page is faulted in again: about
    1,000 page faults per MiB streamed, a third of the CPU time of a UTF-8
    stream.  Fixed thresholds (blocks under 4 MiB come from the heap, and
    up to 16 MiB of free heap is kept) remove them.

    Process-wide, glibc only, and done once; elsewhere it does nothing.

    @return: whether the thresholds are set.
    """
    global _allocatorTuned
    if _allocatorTuned is None:
        _allocatorTuned = False
        try:
            import ctypes
            import platform

            if platform.libc_ver()[0] == "glibc":
                mallopt = ctypes.CDLL(None).mallopt
                _allocatorTuned = bool(
                    mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
                    and mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
                )
        except (ImportError, OSError, AttributeError):
            pass
    return _allocatorTuned
