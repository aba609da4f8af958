"""conn destination plugin for Braze (user attributes and custom events)."""

__version__ = "0.1.0"
