"""The mapper: gated source rows in, destination-shaped rows out.

``build_mapper(ctx)`` parses ``syncs.NAME.mapping`` (:mod:`conn.fields`);
``issues()`` lists every problem before a row is read (mapping, consent settings and
field policies); ``apply(gated)`` computes each field (:mod:`conn.mapping.compute`),
coerces it to the destination object's JSON Schema (:mod:`conn.mapping.coerce`) and
rejects rows that break it (:mod:`conn.mapping.validate`) or hold a value the
destination's format cannot carry exactly (:mod:`conn.mapping.carry`), all vectorised.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from conn.consent.policies import policy_issues, policy_schema, resolve_policies
from conn.errors import ConfigError, ConnError
from conn.fields import FieldSpec, parse_mapping
from conn.mapping.carry import JSON, json_failures
from conn.mapping.coerce import coerce
from conn.mapping.compute import evaluate
from conn.mapping.validate import field_failures
from conn.pipeline import NULL_KEY, SKIP, GatedBatch, MappedBatch, seal_mapped
from conn.sync_context import SyncContext

_PROBE_ERRORS = (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError,
                 TypeError, ValueError, KeyError)


class Mapper:
    """Turns gated source rows into destination fields."""

    def __init__(self, ctx: SyncContext) -> None:
        self.ctx = ctx
        self.file = str(ctx.project.file)
        self.props: dict[str, Any] = dict(ctx.object.properties)
        extra = ctx.object.fields.get("additionalProperties")
        #: Declared fields when the object is closed (unknown fields are errors).
        self.closed = bool(self.props) and not extra
        self.specs, self._spec_errors = parse_mapping(
            ctx.sync.mapping, sync=ctx.sync.name, stream_columns=list(ctx.stream.schema.names),
            object_fields=list(self.props) if self.closed else None,
            null_default=ctx.sync.raw.get("null_handling", "send"), file=self.file)
        self.policies = resolve_policies(ctx, self.specs)
        self.gated_schema = policy_schema(ctx.stream.schema, self.policies)
        self._transforms: dict[str, Callable[..., pa.Array]] = {}
        self.rows_in = 0
        self.rows_out = 0
        self.rejected_by_reason: dict[str, int] = {}

    # --- configuration ----------------------------------------------------------------

    def _transform(self, name: str) -> Callable[..., pa.Array]:
        fn = self._transforms.get(name)
        if fn is None:
            fn = self._transforms[name] = self.ctx.registry.transform(name)
        return fn

    def _check_format(self, spec: FieldSpec) -> bool:
        """Format checks make no sense on hashed or masked values."""
        if spec.hash is not None:
            return False
        return not any(self.policies[c].action in ("hash", "mask") for c in spec.columns
                       if c in self.policies)

    def issues(self) -> list[ConfigError]:
        """Every reason the mapping cannot run, at once, each with its path in conn.yml:
        mapping shape, unknown fields, columns and transforms, unmapped required fields and
        match key, impossible conversions, and field policies (a field into an advertising
        destination without a policy, a field reading a dropped column). Consent settings
        are checked by ``gate.issues()``."""
        errs = list(self._spec_errors)
        errs += policy_issues(self.ctx, self.specs, self.policies)
        names = set(self.ctx.stream.schema.names)
        sync = self.ctx.sync.name
        fields = {s.field for s in self.specs}
        probe_ok = []
        for spec in self.specs:
            ok = True
            if self.closed and spec.field not in self.props:
                errs.append(ConfigError(
                    f"unknown field {spec.field!r} of object {self.ctx.object.name!r} "
                    f"(fields: {', '.join(sorted(self.props))})", file=self.file,
                    path=spec.path))
                ok = False
            for col in spec.columns:
                if col not in names:
                    errs.append(ConfigError(
                        f"unknown source column {col!r} (columns of stream "
                        f"{self.ctx.stream.name!r}: {', '.join(sorted(names))})",
                        file=self.file, path=spec.path))
                    ok = False
                elif col not in self.gated_schema.names:
                    ok = False  # dropped by policy, reported by policy_issues
            for i, (tname, _) in enumerate(spec.transforms):
                try:
                    self._transform(tname)
                except ConnError:
                    known = ", ".join(sorted(self.ctx.registry.transforms))
                    errs.append(ConfigError(f"unknown transform {tname!r} (known: {known})",
                                            file=self.file,
                                            path=f"{spec.path}.transforms[{i}]"))
                    ok = False
            if ok:
                probe_ok.append(spec)
        for req in self.ctx.object.required:
            if req not in fields:
                errs.append(ConfigError(
                    f"required field {req!r} of object {self.ctx.object.name!r} is not "
                    f"mapped", file=self.file, path=f"syncs.{sync}.mapping.{req}"))
        key = self.ctx.match_key
        if key not in fields:
            errs.append(ConfigError(f"match key {key!r} is not mapped", file=self.file,
                                    path=f"syncs.{sync}.mapping.{key}"))
        idents = self.ctx.object.identifiers
        if idents and key not in idents:
            errs.append(ConfigError(
                f"match key {key!r} is not an identifier of object "
                f"{self.ctx.object.name!r} (identifiers: {', '.join(idents)})",
                file=self.file, path=f"syncs.{sync}.match_key"))
        empty = self.gated_schema.empty_table().to_batches()
        probe = empty[0] if empty else pa.RecordBatch.from_pylist([], schema=self.gated_schema)
        for spec in probe_ok:
            try:
                arr, _ = evaluate(spec, probe, self._transform)
                coerce(arr, self.props.get(spec.field))
            except _PROBE_ERRORS as exc:
                want = self.props.get(spec.field, {}).get("type") or spec.cast
                errs.append(ConfigError(f"impossible conversion for field {spec.field!r}"
                                        f"{f' to {want}' if want else ''}: {exc}",
                                        file=self.file, path=spec.path))
        return errs

    # --- per batch --------------------------------------------------------------------

    def apply(self, gated: GatedBatch) -> MappedBatch:
        """Compute, coerce and validate every field; rows failing a check are left out
        and listed in ``rejected`` as (key, reason)."""
        batch = gated.batch
        if batch.num_columns == 0 and len(gated.keys):  # only constants are mapped
            batch = pa.RecordBatch.from_arrays([pa.nulls(len(gated.keys))], names=["_"])
        n = batch.num_rows
        arrays, fields = [], []
        reasons = np.full(n, None, dtype=object)
        bad = np.zeros(n, dtype=bool)

        def fail(mask: np.ndarray, reason: str) -> None:
            nonlocal bad
            if mask.any():
                new = mask & ~bad
                reasons[new] = reason
                bad |= mask

        required = set(self.ctx.object.required)
        # A value the destination's format cannot carry exactly is rejected, never
        # rewritten (see conn.mapping.carry).
        json_only = self.ctx.object.capabilities.values == JSON
        for spec in self.specs:
            prop = self.props.get(spec.field)
            arr, failed = evaluate(spec, batch, self._transform)
            fail(failed, f"{spec.field}: cannot convert ({spec.cast or 'format'})")
            if json_only:  # before coercion, which would turn NaN or year 30000 into text
                for mask, reason in json_failures(spec.field, arr):
                    fail(mask, reason)
            computed = arr
            arr, failed = coerce(arr, prop)
            fail(failed, f"{spec.field}: cannot convert to {prop.get('type') if prop else ''}")
            for mask, reason in field_failures(spec.field, arr, prop or {},
                                               required=spec.field in required,
                                               check_format=self._check_format(spec)):
                fail(mask, reason)
            if json_only and arr is not computed:  # e.g. the string "1e999" as a number
                for mask, reason in json_failures(spec.field, arr):
                    fail(mask, reason)
            meta = {NULL_KEY: SKIP} if spec.null == "skip" else None
            arrays.append(arr)
            fields.append(pa.field(spec.field, arr.type, metadata=meta))
        out = pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))
        keys = gated.keys
        rejected: list[tuple[str, str]] = []
        if bad.any():
            keep = pa.array(~bad)
            rejected = list(zip(keys.filter(pa.array(bad)).to_pylist(),
                                reasons[bad].tolist(), strict=True))
            for _, reason in rejected:  # one entry per rejected row, not per row
                self.rejected_by_reason[reason] = self.rejected_by_reason.get(reason, 0) + 1
            out, keys = out.filter(keep), keys.filter(keep)
        self.rows_in += n
        self.rows_out += out.num_rows
        return seal_mapped(gated, out, keys, rejected)

    def summary(self) -> dict[str, Any]:
        """Rows mapped and rejected (by reason) for the run report."""
        return {"rows": self.rows_in, "mapped": self.rows_out,
                "rejected": self.rows_in - self.rows_out,
                "rejected_by_reason": dict(self.rejected_by_reason)}


def build_mapper(ctx: SyncContext) -> Mapper:
    """The runtime's entry point: a mapper for one sync run."""
    return Mapper(ctx)
