"""conn destination plugin ``meta_audiences``: Meta (Facebook) Custom Audiences."""

__version__ = "0.1.0"
