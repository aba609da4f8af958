"""conn destination plugin writing change logs to files (entry point module: ``plugin``)."""

__version__ = "0.1.0"
