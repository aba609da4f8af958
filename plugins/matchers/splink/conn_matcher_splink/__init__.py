"""conn matcher plugin on Splink (entry point module: :mod:`conn_matcher_splink.plugin`)."""

__version__ = "0.1.0"
