"""SQLite source and destination for conn.

One distribution registers both connectors (``type: sqlite`` in ``sources:`` and in
``destinations:``); they use Python's standard ``sqlite3`` module, so there is no driver
to install.
"""

__version__ = "0.1.0"
