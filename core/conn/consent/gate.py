"""The consent gate: only rows whose subject may be processed for every purpose of the
destination pass; then field policies apply to the columns the mapping reads.

Per purpose, each row gets a consent code (:mod:`conn.consent.values`) from

* the purpose's consent column (``consent.columns``), if any, and
* the consent source (``consent.source``), looked up by the subject column
  (``consent.subject``, or the primary key when not given), if any.

**Both combined: a denial anywhere wins.** The codes combine as their maximum: denied >
malformed > granted > no record. So a column saying yes and a later event saying no is a
no; a column with no value and an event saying yes is a yes. A row passes a purpose when
the combined code is *granted*, or *no record* while the sync names another legal basis
for that purpose (``consent.legal_basis``). A row passes the gate when it passes every
purpose. Everything is computed with numpy/pyarrow over whole batches.

Rows of people ``conn forget`` erased are withheld first, whatever their consent (reason
``suppressed``; :mod:`conn.privacy.suppression`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from conn.consent.checks import consent_issues
from conn.consent.events import ConsentIndex, load_index
from conn.consent.expiry import EXPIRED, ConsentExpiry
from conn.consent.policies import FieldPolicy, apply_policy, resolve_policies
from conn.consent.values import DENIED, GRANTED, MALFORMED, NO_RECORD, REASONS, classify
from conn.errors import ConfigError
from conn.fields import parse_mapping
from conn.pipeline import GatedBatch, seal_gated
from conn.privacy.suppression import REASON as SUPPRESSED
from conn.privacy.suppression import GateSuppression
from conn.sync_context import SyncContext

_WITHHELD_REASONS = ("no_record", EXPIRED, "malformed", "denied")


class Decision:
    """Per-row outcome of the gate for one batch (numpy arrays aligned with the rows)."""

    def __init__(self, n: int, purposes: tuple[str, ...]) -> None:
        self.passed = np.ones(n, dtype=bool)
        #: Worst failing code per row: -1 passed, else NO_RECORD/MALFORMED/DENIED.
        self.worst = np.full(n, -1, dtype=np.int8)
        self.codes: dict[str, np.ndarray] = {}
        self.by_basis: dict[str, np.ndarray] = {}
        self.ok: dict[str, np.ndarray] = {}
        #: Rows whose code is NO_RECORD because their consent expired (per purpose).
        self.expired: dict[str, np.ndarray] = {}
        self.positions: np.ndarray | None = None
        self.purposes = purposes
        #: Rows withheld because their person was erased (None: none).
        self.suppressed: np.ndarray | None = None


class ConsentGate:
    """Filters rows lacking consent for any purpose and applies field policies."""

    def __init__(self, ctx: SyncContext, *, index: ConsentIndex | None = None) -> None:
        self.ctx = ctx
        self.purposes: tuple[str, ...] = tuple(ctx.purposes)
        consent = dict(ctx.sync.consent or {})
        self.columns: dict[str, str] = dict(consent.get("columns") or {})
        self.subject: str | None = consent.get("subject")
        #: Identifier types the consent source's subjects are (a sync over profiles).
        self.subject_type = consent.get("subject_type")
        self.legal_basis: dict[str, str] = dict(consent.get("legal_basis") or {})
        self.source_name: str | None = consent.get("source")
        self.index = index
        if self.index is None and self.source_name:
            spec = ctx.project.consent_sources.get(self.source_name)
            if spec is None:
                raise ConfigError(f"unknown consent source {self.source_name!r}",
                                  file=str(ctx.project.file),
                                  path=f"syncs.{ctx.sync.name}.consent.source")
            if consent.get("subject_type"):
                # Resolved per profile by conn.profiles.consent (a layer above): never
                # per subject key, which would find none of the person's events.
                raise ConfigError("consent.subject_type needs the consent source resolved "
                                  "per profile (build the gate with "
                                  "conn.profiles.consent.gate_index)",
                                  file=str(ctx.project.file),
                                  path=f"syncs.{ctx.sync.name}.consent.subject_type")
            self.index = load_index(self.source_name, spec,
                                    ctx.consent_events(self.source_name),
                                    file=str(ctx.project.file))
        self.expiry = ConsentExpiry(ctx, self.index)
        obj_fields = list(ctx.object.properties) or None
        if obj_fields is not None and ctx.object.fields.get("additionalProperties"):
            obj_fields = None
        self.specs, self._spec_errors = parse_mapping(
            ctx.sync.mapping, sync=ctx.sync.name, stream_columns=list(ctx.stream.schema.names),
            object_fields=obj_fields, null_default=ctx.sync.raw.get("null_handling", "send"),
            file=str(ctx.project.file))
        self.policies: dict[str, FieldPolicy] = resolve_policies(ctx, self.specs)
        self.rows = 0
        self.passed_rows = 0
        self.suppression = GateSuppression.for_gate(ctx, self.specs, self.subject)
        self.withheld_by_reason = dict.fromkeys((*_WITHHELD_REASONS, SUPPRESSED), 0)
        self.per_purpose: dict[str, dict[str, Any]] = {
            p: {"passed": 0, "withheld": dict.fromkeys(_WITHHELD_REASONS, 0),
                "legal_bases": {}} for p in self.purposes}
        self.legal_bases: dict[str, dict[str, int]] = {p: {} for p in self.purposes}

    # --- configuration ----------------------------------------------------------------

    def columns_read(self) -> set[str]:
        """The source columns the gate reads: consent columns, the subject and every
        column the mapping reads (what the gate passes on is chosen among those)."""
        return {*self.columns.values(), *([self.subject] if self.subject else []),
                *self.policies, *self.expiry.columns_read()}

    def issues(self) -> list[ConfigError]:
        """Consent configuration problems. Field-policy problems concern the fields sent
        and are reported by ``mapper.issues()``; the runtime raises both lists."""
        return consent_issues(self.ctx)

    # --- per batch --------------------------------------------------------------------

    def _subjects(self, batch: pa.RecordBatch, keys: pa.Array) -> pa.Array:
        if self.subject is None:
            return keys if pa.types.is_string(keys.type) else keys.cast(pa.string())
        col = batch.column(self.subject)
        return col if pa.types.is_string(col.type) else col.cast(pa.string())

    def decide(self, batch: pa.RecordBatch, keys: pa.Array) -> Decision:
        """Consent outcome per row and purpose, without filtering (``conn explain``)."""
        n = batch.num_rows
        d = Decision(n, self.purposes)
        if self.index is not None:
            d.positions = self.index.lookup(self._subjects(batch, keys))
        for purpose in self.purposes:
            col_code = ev_code = None
            col = self.columns.get(purpose)
            if col is not None:
                if col not in batch.schema.names:
                    raise ConfigError(f"consent column {col!r} is missing from the batch",
                                      file=str(self.ctx.project.file),
                                      path=f"syncs.{self.ctx.sync.name}.consent.columns."
                                           f"{purpose}")
                col_code = classify(batch.column(col))
            if self.index is not None and d.positions is not None:
                ev_code = self.index.codes_for(purpose, d.positions)
            # Expired grants count as no record; then a denial anywhere wins (max).
            code, d.expired[purpose] = self.expiry.combine(purpose, batch, col_code, ev_code,
                                                           d.positions)
            ok = code == GRANTED
            if purpose in self.legal_basis:
                by_basis = code == NO_RECORD
                ok = ok | by_basis
                d.by_basis[purpose] = by_basis
            d.codes[purpose] = code
            d.ok[purpose] = ok
            fail = np.where(ok, -1, code).astype(np.int8)
            d.worst = np.maximum(d.worst, fail)
            d.passed &= ok
        self.suppression.withhold(d, batch, keys)
        return d

    def apply(self, batch: pa.RecordBatch, keys: pa.Array) -> GatedBatch:
        """Keep rows allowed for every purpose; apply field policies to the columns the
        mapping reads (others are not passed on); count what was withheld and why."""
        if isinstance(keys, pa.ChunkedArray):
            keys = keys.combine_chunks()
        d = self.decide(batch, keys)
        self._count(d)
        mask = pa.array(d.passed, pa.bool_())
        # Only columns with a policy other than drop go on: filter those, not all.
        names = set(batch.schema.names)
        wanted = [n for n, pol in self.policies.items() if n in names and pol.action != "drop"]
        if 0 < len(wanted) < batch.num_columns:
            batch = batch.select(wanted)
        kept = batch.filter(mask) if not d.passed.all() else batch
        kept_keys = keys.filter(mask) if not d.passed.all() else keys
        cols, fields = [], []
        for name, pol in self.policies.items():
            if name not in kept.schema.names:
                continue
            arr = apply_policy(kept.column(name), pol)
            if arr is None:
                continue
            cols.append(arr)
            fields.append(kept.schema.field(name) if pol.action == "allow"
                          else pa.field(name, arr.type))
        out = pa.RecordBatch.from_arrays(cols, schema=pa.schema(fields))
        return seal_gated(out, kept_keys, batch.num_rows - kept.num_rows)

    def _count(self, d: Decision) -> None:
        n = len(d.passed)
        self.rows += n
        passed = int(d.passed.sum())
        self.passed_rows += passed
        counts = np.bincount(d.worst[d.worst >= 0].astype(np.int64), minlength=4)
        # A row withheld at the no-record level because a grant expired: reason expired.
        expired = np.zeros(n, dtype=bool)
        for purpose in self.purposes:
            expired |= d.expired[purpose] & ~d.ok[purpose]
        n_expired = int((expired & (d.worst == NO_RECORD)).sum())
        counts[NO_RECORD] -= n_expired
        self.withheld_by_reason[EXPIRED] += n_expired
        for code in (NO_RECORD, MALFORMED, DENIED):
            self.withheld_by_reason[REASONS[code]] += int(counts[code])
        if d.suppressed is not None:
            self.withheld_by_reason[SUPPRESSED] += int(d.suppressed.sum())
        for purpose in self.purposes:
            stats = self.per_purpose[purpose]
            ok = d.ok[purpose]
            stats["passed"] += int(ok.sum())
            pc_counts = np.bincount(d.codes[purpose][~ok].astype(np.int64), minlength=4)
            p_expired = int((d.expired[purpose] & ~ok).sum())
            pc_counts[NO_RECORD] -= p_expired
            stats["withheld"][EXPIRED] += p_expired
            for code in (NO_RECORD, MALFORMED, DENIED):
                stats["withheld"][REASONS[code]] += int(pc_counts[code])
            # Legal bases of rows that passed the gate, per purpose.
            bases = self.legal_bases[purpose]
            by_basis = d.by_basis.get(purpose)
            n_basis = int((by_basis & d.passed).sum()) if by_basis is not None else 0
            if n_basis:
                name = self.legal_basis[purpose]
                bases[name] = bases.get(name, 0) + n_basis
            granted = (d.codes[purpose] == GRANTED) & d.passed
            self._count_consent_bases(purpose, granted, d, bases)
            stats["legal_bases"] = bases

    def _count_consent_bases(self, purpose: str, granted: np.ndarray, d: Decision,
                             bases: dict[str, int]) -> None:
        total = int(granted.sum())
        if not total:
            return
        named = 0
        if self.index is not None and d.positions is not None and purpose in self.index.bases:
            pos = d.positions[granted]
            pos = pos[pos >= 0]
            if len(pos):
                vc = pc.value_counts(self.index.bases[purpose].take(pa.array(pos)))
                for item in vc.to_pylist():
                    if item["values"] is not None:
                        bases[item["values"]] = bases.get(item["values"], 0) + item["counts"]
                        named += item["counts"]
        if total - named:
            bases["consent"] = bases.get("consent", 0) + total - named

    # --- report -----------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """Counts for the run report: rows seen, passed and withheld (overall by the most
        restrictive reason, and per purpose), legal bases used, field policies."""
        return {
            "purposes": list(self.purposes),
            "rows": self.rows,
            "passed": self.passed_rows,
            "withheld": self.rows - self.passed_rows,
            "withheld_by_reason": dict(self.withheld_by_reason),
            "per_purpose": {p: {"passed": s["passed"], "withheld": dict(s["withheld"]),
                                "legal_bases": dict(s["legal_bases"])}
                            for p, s in self.per_purpose.items()},
            "legal_bases": {p: dict(b) for p, b in self.legal_bases.items()},
            "max_age": {p: str(a) for p, a in self.expiry.max_age.items()},
            "consent_from": {"columns": dict(self.columns), "source": self.source_name,
                             "subject": self.subject or "primary key",
                             **({"subject_type": self.subject_type}
                                if self.subject_type else {}),
                             "combine": "a denial anywhere wins"},
            "policies": {c: p.as_dict() for c, p in self.policies.items()
                         if p.action != "allow" or p.kind},
        }


def build_gate(ctx: SyncContext, index: ConsentIndex | None = None) -> ConsentGate:
    """The runtime's entry point: a gate for one sync run (``index``: the consent
    source already resolved, e.g. per profile; None: the gate resolves it)."""
    return ConsentGate(ctx, index=index)
