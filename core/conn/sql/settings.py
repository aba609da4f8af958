"""Config-schema fragments and per-table options shared by SQL plugins."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def source_properties() -> dict[str, Any]:
    """Schema of a SQL source's ``tables`` (which tables become streams) and ``streams``
    (per-stream ``cursor`` and ``primary_key``), to spread into its properties."""
    return {
        "tables": {"type": "array", "items": {"type": "string"},
                   "description": "only these tables become streams (default: all)"},
        "streams": {
            "type": "object",
            "description": "per-stream settings: cursor column, primary key",
            "additionalProperties": {
                "type": "object",
                "properties": {
                    "cursor": {"type": "string"},
                    "primary_key": {"type": "array", "items": {"type": "string"}},
                },
                "additionalProperties": False,
            },
        },
    }


def destination_properties(batch_size: int,
                           table_properties: Mapping[str, Any] | None = None
                           ) -> dict[str, Any]:
    """Schema of a SQL destination's ``batch_size`` (default ``batch_size``),
    ``create_table``, ``evolve`` and per-table ``tables`` settings (``key``,
    ``create_table``, ``evolve``, plus the dialect's ``table_properties``)."""
    return {
        "batch_size": {"type": "integer", "minimum": 1, "default": batch_size},
        "create_table": {"type": "boolean", "default": False},
        "evolve": {"type": "boolean", "default": False},
        "tables": {
            "type": "object",
            "description": "tables to write, also those that do not exist yet",
            "additionalProperties": {
                "type": "object",
                "properties": {
                    "key": {"type": "string"},
                    "create_table": {"type": "boolean"},
                    "evolve": {"type": "boolean"},
                    **(table_properties or {}),
                },
                "additionalProperties": False,
            },
        },
    }


def table_options(config: Mapping[str, Any], table: str) -> dict[str, Any]:
    """One table's settings from ``tables``, with ``create_table`` and ``evolve``
    defaulting to the destination-wide values (themselves false by default)."""
    opts = dict((config.get("tables") or {}).get(table) or {})
    opts.setdefault("create_table", config.get("create_table", False))
    opts.setdefault("evolve", config.get("evolve", False))
    return opts
