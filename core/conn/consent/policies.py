"""Field policies: what happens to personal data on its way to a destination.

A source column is *personal* when tagged with a kind (email, phone, name, address, ip,
...) by, in increasing precedence, the destination object (``ObjectInfo.personal``, on the
field a column maps to directly), the source schema (``StreamInfo.personal``) or the sync
(``syncs.NAME.personal``).

Policies come from ``destinations.X.policies`` overridden key by key by
``syncs.Y.policies``. A key is a source column, a destination field, a kind or ``"*"``
(everything else); the most specific key that matches wins: column, then field, then
kind, then ``"*"``. A value is ``allow``, ``drop``, ``hash`` or ``mask``, or a mapping
``{action: hash, normalize: phone, country_code: "44", phone_format: e164}``.

Without a matching key a column is allowed, except into a destination serving
``advertising``: there every column sent needs a policy, and the mapper refuses to run
(:func:`policy_issues`) until one is stated.

The gate applies policies to the columns the mapping reads, after filtering rows:
``drop`` removes the column (a mapping that reads it is a configuration error), ``hash``
normalises by kind then takes SHA-256 hex (:mod:`conn.consent.normalize`), ``mask``
keeps a hint for display (``j***@example.com``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from conn.consent.normalize import mask, normalize
from conn.digests import sha256_hex
from conn.errors import ConfigError

if TYPE_CHECKING:
    from conn.fields import FieldSpec
    from conn.sync_context import SyncContext

ACTIONS = ("allow", "drop", "hash", "mask")
#: Purposes whose destinations need an explicit policy for every field sent.
ADVERTISING_PURPOSES = frozenset({"advertising"})
_RESTRICTIVENESS = {"allow": 0, "mask": 1, "hash": 2, "drop": 3}


@dataclass(frozen=True)
class FieldPolicy:
    """The policy applying to one source column and where it came from."""

    column: str
    action: str
    kind: str | None = None
    rule: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def explicit(self) -> bool:
        return self.rule is not None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"action": self.action}
        if self.kind:
            out["kind"] = self.kind
        out["rule"] = self.rule or "default (allow)"
        return out


def serves_advertising(ctx: SyncContext) -> bool:
    """True when the destination (or the sync) serves an advertising purpose."""
    return bool(ADVERTISING_PURPOSES & (set(ctx.destination.purposes) | set(ctx.purposes)))


def personal_tags(ctx: SyncContext, specs: list[FieldSpec]) -> dict[str, str]:
    """Kind of each personal source column (sync over stream over destination object)."""
    tags: dict[str, str] = {}
    obj_personal = dict(ctx.object.personal or {})
    for spec in specs:
        if spec.is_direct and spec.field in obj_personal and spec.source:
            tags[spec.source] = obj_personal[spec.field]
    tags.update(dict(ctx.stream.personal or {}))
    tags.update(dict(ctx.sync.personal or {}))
    return tags


def _parse(value: Any) -> tuple[str | None, dict[str, Any]]:
    if isinstance(value, str):
        return value, {}
    if isinstance(value, dict):
        opts = dict(value)
        return opts.pop("action", None), opts
    return None, {}


def _merged(ctx: SyncContext) -> dict[str, tuple[Any, str]]:
    out = {k: (v, f"destinations.{ctx.destination.name}.policies.{k}")
           for k, v in (ctx.destination.policies or {}).items()}
    out.update({k: (v, f"syncs.{ctx.sync.name}.policies.{k}")
                for k, v in (ctx.sync.policies or {}).items()})
    return out


def resolve_policies(ctx: SyncContext, specs: list[FieldSpec]) -> dict[str, FieldPolicy]:
    """The policy of every source column the mapping reads."""
    tags = personal_tags(ctx, specs)
    rules = _merged(ctx)
    fields_of: dict[str, list[str]] = {}
    for spec in specs:
        for col in spec.columns:
            fields_of.setdefault(col, []).append(spec.field)
    out: dict[str, FieldPolicy] = {}
    for col, fields in fields_of.items():
        kind = tags.get(col)
        found: tuple[str, dict[str, Any], str] | None = None
        candidates: list[list[str]] = [[col], fields, [kind] if kind else [], ["*"]]
        for keys in candidates:
            hits = []
            for k in keys:
                if k in rules:
                    action, opts = _parse(rules[k][0])
                    if action in ACTIONS:
                        hits.append((action, opts, rules[k][1]))
            if hits:  # several fields fed by one column: the most restrictive wins
                found = max(hits, key=lambda h: _RESTRICTIVENESS[h[0]])
                break
        if found:
            out[col] = FieldPolicy(col, found[0], kind, found[2], found[1])
        else:
            out[col] = FieldPolicy(col, "allow", kind)
    return out


def policy_issues(ctx: SyncContext, specs: list[FieldSpec],
                  policies: dict[str, FieldPolicy]) -> list[ConfigError]:
    """Configuration problems of field policies, all at once."""
    f = str(ctx.project.file)
    errs: list[ConfigError] = []
    for where, table in ((f"destinations.{ctx.destination.name}.policies",
                          ctx.destination.policies or {}),
                         (f"syncs.{ctx.sync.name}.policies", ctx.sync.policies or {})):
        for k, v in table.items():
            action, _ = _parse(v)
            if action not in ACTIONS:
                errs.append(ConfigError(f"unknown policy {action!r} (expected one of "
                                        f"{', '.join(ACTIONS)})", file=f, path=f"{where}.{k}"))
    ads = serves_advertising(ctx)
    for spec in specs:
        for col in spec.columns:
            pol = policies.get(col)
            if pol is None:
                continue
            if pol.action == "drop":
                errs.append(ConfigError(
                    f"field {spec.field!r} reads column {col!r}, which the field policy "
                    f"{pol.rule} drops; remove the field from the mapping or change the "
                    f"policy", file=f, path=spec.path))
            elif ads and not pol.explicit and spec.hash is None:
                what = f"personal ({pol.kind})" if pol.kind else "untagged"
                errs.append(ConfigError(
                    f"field {spec.field!r} (from {what} column {col!r}) goes to an "
                    f"advertising destination without a field policy; state one, e.g. "
                    f"destinations.{ctx.destination.name}.policies.{pol.kind or col}: hash "
                    f"(or allow, drop, mask; '*' covers every other field)",
                    file=f, path=spec.path))
    return errs


def apply_policy(arr: pa.Array, policy: FieldPolicy) -> pa.Array | None:
    """The column after its policy (None when dropped). Vectorised."""
    if policy.action == "allow":
        return arr
    if policy.action == "drop":
        return None
    if pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type):
        return _per_element(arr, policy)
    kind = policy.options.get("normalize", policy.kind)
    if policy.action == "mask":
        return mask(arr, kind)
    return sha256_hex(normalize(arr, kind, **policy.options))


def _per_element(arr: pa.Array, policy: FieldPolicy) -> pa.Array:
    """A list column (a profile's ``email_all``) with the policy applied to each value:
    a list of e-mails is as personal as one e-mail. Null lists and values stay null."""
    values = apply_policy(pc.list_flatten(arr), policy)
    assert values is not None  # hash or mask: allow and drop never come here
    lengths = pc.fill_null(pc.list_value_length(arr), 0).to_numpy(zero_copy_only=False)
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]), pa.int64())
    return pa.LargeListArray.from_arrays(offsets, values, mask=arr.is_null()).cast(
        pa.list_(values.type) if pa.types.is_list(arr.type) else pa.large_list(values.type))


def policy_schema(schema: pa.Schema, policies: dict[str, FieldPolicy]) -> pa.Schema:
    """The schema of gated batches: policy columns only, dropped ones removed, hashed and
    masked ones as strings (lists of strings for list columns)."""
    fields = []
    for name, pol in policies.items():
        if name not in schema.names or pol.action == "drop":
            continue
        f = schema.field(name)
        if pol.action == "allow":
            fields.append(f)
        elif pa.types.is_list(f.type):
            fields.append(pa.field(name, pa.list_(pa.string())))  # per element
        elif pa.types.is_large_list(f.type):
            fields.append(pa.field(name, pa.large_list(pa.string())))
        else:
            fields.append(pa.field(name, pa.string()))
    return pa.schema(fields)
