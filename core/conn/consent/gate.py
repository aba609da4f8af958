"""Consent gate (first version: consent columns only; the full gate replaces this)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from conn.consent.context import GateContext
from conn.runtime.batches import GatedBatch, seal_gated


class ConsentGate:
    """Filters rows lacking consent for any of the destination's purposes."""

    def __init__(self, ctx: GateContext) -> None:
        self.ctx = ctx
        self.purposes = ctx.purposes
        self.columns: dict[str, str] = dict((ctx.sync.consent or {}).get("columns") or {})
        self.withheld: dict[str, int] = {}
        self.passed = 0

    def apply(self, batch: pa.RecordBatch, keys: pa.Array) -> GatedBatch:
        mask = pa.array([True] * batch.num_rows)
        for purpose in self.purposes:
            col = self.columns.get(purpose)
            if col is None:
                ok = pa.array([False] * batch.num_rows)
            else:
                ok = pc.fill_null(pc.equal(batch.column(col).cast(pa.bool_()), True), False)
            denied = pc.sum(pc.and_(mask, pc.invert(ok))).as_py() or 0
            if denied:
                self.withheld[purpose] = self.withheld.get(purpose, 0) + denied
            mask = pc.and_(mask, ok)
        passed = batch.filter(mask)
        self.passed += passed.num_rows
        return seal_gated(passed, keys.filter(mask), batch.num_rows - passed.num_rows)

    def summary(self) -> dict[str, Any]:
        return {"passed": self.passed, "withheld": dict(self.withheld)}


def build_gate(ctx: GateContext) -> ConsentGate:
    return ConsentGate(ctx)
