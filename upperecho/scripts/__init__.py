"""
The command-line programs, one module per command around one class of
options: L{upperecho.scripts.client} (C{upperecho-client}) and
L{upperecho.scripts.probe} (C{upperecho-client --probe}), sharing
L{upperecho.scripts._common}.

The library (C{upperecho}, C{upperecho.tap}) never imports this package, so
a C{twistd upperecho} process loads none of it.
"""
