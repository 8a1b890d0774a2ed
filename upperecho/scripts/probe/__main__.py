"""
C{python -m upperecho.scripts.probe ...}: the probe command, as
C{upperecho-client --probe ...}.
"""

import sys

from upperecho.scripts.probe.command import main

sys.exit(main(sys.argv[1:]))
