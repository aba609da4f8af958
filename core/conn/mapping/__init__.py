"""The mapping layer: declarative, vectorised transforms from source columns to
destination fields, coerced to the destination object's JSON Schema.

Contract with the runtime: ``build_mapper(ctx: SyncContext) -> Mapper``;
``mapper.issues() -> list[ConfigError]`` (all problems at once, before any row is sent,
including the consent and field-policy checks); per batch ``mapper.apply(gated) ->
MappedBatch`` (made with ``conn.pipeline.seal_mapped``), rows failing validation
listed in ``rejected``. See ``docs/consent.md``.
"""

from conn.mapping.mapper import Mapper, build_mapper

__all__ = ["Mapper", "build_mapper"]
