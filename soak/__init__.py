"""
The soak harness (C{make soak}, C{python -m soak.soak}).
"""
