"""The names this module held now live in the :mod:`conn.singer` package; they are
re-exported here unchanged so that code importing ``conn.singer_protocol`` keeps working.
New code imports from where each name lives:

* :mod:`conn.singer.protocol`: ``dumps``, ``loads``, ``exact_number``,
  ``schema_message``, ``state_message``, ``record_lines``, ``encode_records``,
  ``json_ready``, ``json_problem``, ``RecordConverter``, ``conform``, ``SchemaMismatch``,
  ``DELETED_AT``;
* :mod:`conn.singer.schema`: ``JSON_META``, ``property_to_field``, ``json_schema_to_arrow``,
  ``arrow_type_to_json_schema``, ``field_to_json_schema``, ``arrow_to_json_schema``;
* :mod:`conn.singer.catalog`: ``stream_key_properties``, ``stream_replication_key``,
  ``stream_replication_method``, ``stream_selected``, ``deselected_properties``,
  ``select_streams``, ``metadata_rules``, ``apply_metadata``;
* :mod:`conn.singer.process`: ``resolve_command``, ``connector_name``,
  ``write_private_json``, ``tail``.
"""

from __future__ import annotations

from conn.singer.catalog import (
    apply_metadata,
    deselected_properties,
    metadata_rules,
    select_streams,
    stream_key_properties,
    stream_replication_key,
    stream_replication_method,
    stream_selected,
)
from conn.singer.process import connector_name, resolve_command, tail, write_private_json
from conn.singer.protocol import (
    DELETED_AT,
    RecordConverter,
    SchemaMismatch,
    conform,
    dumps,
    encode_records,
    exact_number,
    json_problem,
    json_ready,
    loads,
    record_lines,
    schema_message,
    state_message,
)
from conn.singer.schema import (
    JSON_META,
    arrow_to_json_schema,
    arrow_type_to_json_schema,
    field_to_json_schema,
    json_schema_to_arrow,
    property_to_field,
)

__all__ = [
    "DELETED_AT",
    "JSON_META",
    "RecordConverter",
    "SchemaMismatch",
    "apply_metadata",
    "arrow_to_json_schema",
    "arrow_type_to_json_schema",
    "conform",
    "connector_name",
    "deselected_properties",
    "dumps",
    "encode_records",
    "exact_number",
    "field_to_json_schema",
    "json_problem",
    "json_ready",
    "json_schema_to_arrow",
    "loads",
    "metadata_rules",
    "property_to_field",
    "record_lines",
    "resolve_command",
    "schema_message",
    "select_streams",
    "state_message",
    "stream_key_properties",
    "stream_replication_key",
    "stream_replication_method",
    "stream_selected",
    "tail",
    "write_private_json",
]
