"""conn: plugin-based reverse-ETL and data activation.

Plugins import :data:`hookimpl` from here and subclass :class:`conn.source.Source` or
:class:`conn.destination.Destination`. Nothing heavy is imported at package import time,
so that ``conn --help`` and plugin discovery stay fast.
"""

from conn.hookspecs import hookimpl

__version__ = "0.1.0"

#: The plugin API this core provides, as "MAJOR.MINOR". A plugin module may declare
#: ``CONN_PLUGIN_API = "1.0"``: it loads when the major versions match and the core's
#: minor version is at least the plugin's.
PLUGIN_API_VERSION = "1.0"

__all__ = ["PLUGIN_API_VERSION", "__version__", "hookimpl"]
