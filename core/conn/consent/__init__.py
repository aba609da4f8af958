"""The consent gate: only rows whose subject may be processed for every purpose of the
destination pass; field policies are applied to personal fields.

Contract with the runtime (``conn.runtime.runner``):

``build_gate(ctx: GateContext) -> ConsentGate``, then per batch
``gate.apply(batch, keys) -> GatedBatch`` (made with ``conn.runtime.batches.seal_gated``)
and at the end ``gate.summary() -> dict`` for the run report. See ``docs/consent.md``.
"""

from conn.consent.context import GateContext
from conn.consent.gate import ConsentGate, build_gate

__all__ = ["ConsentGate", "GateContext", "build_gate"]
