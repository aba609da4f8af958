"""What a sync's state describes, and what happens when that changes.

A sync's state records what one *target* acknowledged: which rows (a source, a stream or
query, a primary key) were delivered to which place (a destination, what its config
points at, an object, a match key). Delivering the same state to another place would
send nothing ("unchanged") and, in mirror mode, delete by keys that mean something else
there. So the state stores the target's identity when it is first written, and every
run compares:

* unchanged, or no state yet, or state written before identities were stored: the run
  goes on (and records the identity);
* changed: the run is refused (:class:`TargetChanged`, exit 3) with every changed part,
  unless the run says what the change means: ``--new-target`` (another place: start it
  from scratch, every row is sent; the old state is kept aside, the old target keeps
  what it has) or ``--same-target`` (the same place under another name, say a renamed
  view or destination: keep the state and record the new identity).

Mode changes and mapping changes are not identity changes: the state stays valid for
them (a changed mapping re-sends the rows it changes through the payload hashes).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

import pyarrow as pa

from conn.errors import ConfigError
from conn.state import typed_text

#: How a run treats a changed target: refuse (None), start it from scratch ("new"), or
#: keep the state under the new identity ("same").
OnChange = Literal["new", "same"] | None


class TargetChanged(ConfigError):
    """The sync now points at another target than the one its state describes."""


def _query_text(query: str | None) -> str | None:
    return None if query is None else re.sub(r"\s+", " ", query).strip()


@dataclass(frozen=True)
class SyncTarget:
    """The identity of what a sync's state describes, plus the types of its primary key
    (kept with the state so keys are shown with their type; not part of the identity)."""

    source: str
    source_type: str
    stream: str | None
    query: str | None
    primary_key: tuple[str, ...]
    destination: str
    destination_type: str
    destination_identity: dict[str, Any]
    object: str
    match_key: str
    key_types: pa.Schema | None = field(default=None, compare=False)
    #: The project file declaring the sync, named by the refusal (not part of the identity).
    file: str | None = field(default=None, compare=False)

    def identity(self) -> dict[str, Any]:
        """The parts compared between runs, JSON-ready."""
        return {"source": self.source, "source_type": self.source_type,
                "stream": self.stream, "query": _query_text(self.query),
                "primary_key": list(self.primary_key), "destination": self.destination,
                "destination_type": self.destination_type,
                "destination_config": self.destination_identity,
                "object": self.object, "match_key": self.match_key}

    def to_json(self) -> str:
        """The stored form: identity plus key types."""
        doc: dict[str, Any] = {"identity": self.identity()}
        if self.key_types is not None:
            doc["key_types"] = {f.name: typed_text.type_token(f.type) for f in self.key_types}
        return json.dumps(doc, sort_keys=True, default=str)


def stored_key_types(text: str | None) -> pa.Schema | None:
    """The primary key's column types from a stored target (None if unknown)."""
    if not text:
        return None
    try:
        types = json.loads(text).get("key_types")
    except (ValueError, AttributeError):
        return None
    if not isinstance(types, dict) or not types:
        return None
    return pa.schema([(k, typed_text.token_type(v)) for k, v in types.items()])


def _flat(identity: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in identity.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def changes(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Human-readable differences between two identities, one per changed part."""
    a, b = _flat(stored), _flat(current)
    out = []
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            out.append(f"{k}: {a.get(k)!r} -> {b.get(k)!r}")
    return out


Decision = Literal["keep", "record", "reset"]


def decide(sync: str, stored_text: str | None, target: SyncTarget, on_change: OnChange,
           *, has_state: bool) -> Decision:
    """What to do with a sync's state given the identity stored with it: ``keep`` it as
    it is, ``record`` the current identity (first run, an older state, or
    ``--same-target``), or ``reset`` it (``--new-target``). Raises
    :class:`TargetChanged` when the target changed and the run did not say how."""
    current = json.loads(target.to_json())
    if not stored_text:
        return "record"
    try:
        stored = json.loads(stored_text)
    except ValueError:
        return "record"
    if stored.get("identity") == current["identity"]:
        return "keep" if stored == current else "record"
    if not has_state:
        return "record"
    if on_change == "new":
        return "reset"
    if on_change == "same":
        return "record"
    diff = "; ".join(changes(stored.get("identity") or {}, current["identity"]))
    raise TargetChanged(
        f"sync {sync!r} now points at another target than its state describes ({diff}). "
        "Its state records what the old target acknowledged, so running on would send "
        "the new target only what changed (and, in mirror mode, delete by keys that may "
        "mean something else there). Run once with --new-target to start the new target "
        "from scratch (every row is sent to it; the old target keeps what it has and its "
        "state is kept aside), or with --same-target if this is the same place under "
        "another name (the state is kept); or undo the change.",
        file=target.file, path=f"syncs.{sync}")
