"""
Unit tests: one module per source module, no sockets, no subprocesses
but the import checks.
"""
