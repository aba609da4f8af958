"""conn source plugin for Parquet, CSV and JSONL files (entry point module: ``plugin``)."""

__version__ = "0.1.0"
