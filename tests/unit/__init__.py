"""
Unit tests: one module per source module (C{test_<module>.py}), run alone
by C{make unit}.  They start no C{twistd} and no other process (but the
import check of C{test_layering}), and talk to nothing but fakes from
C{twisted.internet.testing}, or, for the fast paths that only a real socket
exercises, socket pairs and pipes inside the test's own process.
"""
