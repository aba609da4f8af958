"""PostgreSQL source and destination for conn.

One distribution registers both connectors (``type: postgres`` in ``sources:`` and in
``destinations:``) so that they share the connection and type-mapping code in
:mod:`conn_postgres.common`. Nothing heavy is imported here: the ADBC driver loads when a
connector first connects.
"""

__version__ = "0.1.0"
