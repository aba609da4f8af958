"""conn destination plugin ``singer``: write to any Singer target (entry point module:
:mod:`conn_destination_singer.plugin`)."""

__version__ = "0.1.0"
