"""
The version of upperecho.
"""

__version__ = "0.1.0"
