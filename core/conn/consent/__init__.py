"""The consent gate: only rows whose subject may be processed for every purpose of the
destination pass; field policies are applied to personal fields.

Contract with the runtime (``conn.runtime.runner``):

``build_gate(ctx: SyncContext) -> ConsentGate``, then per batch
``gate.apply(batch, keys) -> GatedBatch`` (made with ``conn.pipeline.seal_gated``)
and at the end ``gate.summary() -> dict`` for the run report. See ``docs/consent.md``.
"""

from conn.consent.gate import ConsentGate, build_gate
from conn.sync_context import SyncContext

__all__ = ["ConsentGate", "SyncContext", "build_gate"]
