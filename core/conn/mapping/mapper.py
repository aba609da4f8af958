"""Mapper (first version: renames and named transforms; the full layer replaces this)."""

from __future__ import annotations

import pyarrow as pa

from conn.consent.context import GateContext
from conn.errors import ConfigError
from conn.runtime.batches import GatedBatch, MappedBatch, seal_mapped


class Mapper:
    """Turns gated source rows into destination fields."""

    def __init__(self, ctx: GateContext) -> None:
        self.ctx = ctx
        mapping = ctx.sync.mapping or {n: n for n in ctx.stream.schema.names}
        self.fields = {k: (v if isinstance(v, dict) else {"from": v}) for k, v in mapping.items()}

    def issues(self) -> list[ConfigError]:
        errs = []
        f = str(self.ctx.project.file)
        for field, spec in self.fields.items():
            src = spec.get("from")
            if src and src not in self.ctx.stream.schema.names:
                errs.append(ConfigError(f"unknown source column {src!r}", file=f,
                                        path=f"syncs.{self.ctx.sync.name}.mapping.{field}"))
        if self.ctx.match_key not in self.fields:
            errs.append(ConfigError(f"match key {self.ctx.match_key!r} is not mapped", file=f,
                                    path=f"syncs.{self.ctx.sync.name}.mapping"))
        return errs

    def apply(self, gated: GatedBatch) -> MappedBatch:
        cols, names = [], []
        for field, spec in self.fields.items():
            arr = gated.batch.column(spec["from"])
            for t in spec.get("transforms", []):
                arr = self.ctx.registry.transform(t)(arr)
            cols.append(arr)
            names.append(field)
        out = pa.RecordBatch.from_arrays(cols, names=names)
        return seal_mapped(gated, out, gated.keys)


def build_mapper(ctx: GateContext) -> Mapper:
    return Mapper(ctx)
