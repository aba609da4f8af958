"""conn source plugin ``singer``: read any Singer tap (entry point module:
:mod:`conn_source_singer.plugin`)."""

__version__ = "0.1.0"
