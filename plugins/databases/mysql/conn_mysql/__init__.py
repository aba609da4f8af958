"""MariaDB and MySQL source and destination for conn.

One distribution registers both connectors (``type: mysql`` in ``sources:`` and in
``destinations:``). The driver is PyMySQL (pure Python, imported on first connect).
"""

__version__ = "0.1.0"
