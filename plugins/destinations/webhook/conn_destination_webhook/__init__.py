"""conn destination plugin ``webhook``: signed JSON batches to any HTTP endpoint."""

__version__ = "0.1.0"
