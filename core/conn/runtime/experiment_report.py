"""``conn experiments list`` and ``conn experiments report NAME --outcome ...``.

A report reads the experiment's members (every key that passed the consent gate while
it ran, with its arm) from the state store, reads an outcome stream or query from a
source (by default the experiment's sync's source), and counts a member as converted
when its key appears in the outcome (the key built from ``--key`` columns exactly as a
sync builds its primary key: :func:`conn.keys.key_array`). The comparison is
:func:`conn.experiments.uplift.compare`.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from conn.errors import ConfigError, ConnError
from conn.experiments.uplift import Arm, compare
from conn.keys import key_array
from conn.source import SourceState

if TYPE_CHECKING:
    from conn.config.model import Project
    from conn.plugins import Registry
    from conn.state.contracts import StateStore
    from conn.state.experiments import ExperimentStore


class UnknownExperiment(ConnError):
    """The name is not an experiment of this project's state."""

    exit_code = 3


def _experiments(store: StateStore) -> ExperimentStore:
    exp = store.experiment_store()
    if exp is None:
        raise ConfigError("this project's state backend keeps no holdout experiments")
    return exp


def list_experiments(store: StateStore) -> list[dict[str, Any]]:
    """Every experiment, running and archived, with its members per arm."""
    out = []
    for e in _experiments(store).experiments():
        out.append({**e, "percent": float(e["percent"]), "started_at": _iso(e["started_at"]),
                    "ended_at": _iso(e["ended_at"]) if e["ended_at"] else None,
                    "status": "archived" if e["ended_at"] else "running"})
    return out


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def is_query(outcome: str) -> bool:
    """An outcome with a space is a query; otherwise it names a stream."""
    return any(ch.isspace() for ch in outcome.strip())


def outcome_keys(project: Project, registry: Registry, source: str, outcome: str,
                 key: tuple[str, ...]) -> pa.Array:
    """The distinct keys (text) of the rows of ``outcome`` (a stream or a query of
    ``source``), built from columns ``key``."""
    if source not in project.sources:
        raise ConfigError(f"unknown source {source!r} (declared: "
                          f"{', '.join(project.sources) or 'none'})", file=str(project.file),
                          path="sources")
    cfg = project.sources[source]
    cls = registry.source_class(cfg.type)
    src = cls.create(cfg.config, instance=source, project_dir=project.dir)
    try:
        query = outcome if is_query(outcome) else None
        stream = src.stream(None if query else outcome, query=query, primary_key=key)
        missing = [c for c in key if c not in stream.schema.names]
        if missing:
            raise ConfigError(
                f"outcome {outcome!r} has no column(s) {missing} to find members by "
                f"(columns: {', '.join(stream.schema.names)}); name them with --key")
        if src.projection:
            stream = stream.narrowed(key)
        parts = []
        for item in src.read(stream):
            if isinstance(item, SourceState):
                continue
            keys = key_array(item, key)
            parts.append(pc.unique(keys.drop_null()))
        if not parts:
            return pa.array([], pa.string())
        return pc.unique(pa.chunked_array(parts, pa.string()).combine_chunks())
    finally:
        with contextlib.suppress(Exception):
            src.close()


def report(project: Project, registry: Registry, store: StateStore, name: str,
           outcome: str, *, source: str | None = None, key: tuple[str, ...] = (),
           alpha: float = 0.05) -> dict[str, Any]:
    """The experiment's design, each arm's members and outcomes, and the uplift."""
    known = {e["name"]: e for e in _experiments(store).experiments()}
    if name not in known:
        raise UnknownExperiment(f"no experiment {name!r} in this project's state (known: "
                                f"{', '.join(known) or 'none yet: run a sync with a holdout'})")
    exp = known[name]
    sync = project.syncs.get(exp["sync"])
    if source is None:
        if sync is None or not sync.source:
            raise ConfigError(f"experiment {name!r} belongs to sync {exp['sync']!r}, which "
                              f"conn.yml no longer declares with a source: name the outcome's "
                              f"source with --source", file=str(project.file), path="syncs")
        source = sync.source
    if not key:
        if sync is None or not sync.primary_key:
            raise ConfigError(f"name the outcome's column(s) holding the member key with "
                              f"--key (sync {exp['sync']!r} declares no primary_key)",
                              file=str(project.file), path=f"syncs.{exp['sync']}")
        key = sync.primary_key
    members = _experiments(store).members(name)
    hits = outcome_keys(project, registry, source, outcome, key)
    converted = pc.is_in(members.column("key"), value_set=hits)
    arms = {}
    for arm in ("treatment", "holdout"):
        mask = pc.equal(members.column("arm"), arm)
        arms[arm] = Arm(int(pc.sum(mask).as_py() or 0),
                        int(pc.sum(pc.and_(mask, converted)).as_py() or 0))
    result = compare(arms["treatment"], arms["holdout"], alpha)
    return {"experiment": name, "sync": exp["sync"], "percent": float(exp["percent"]),
            "salt": exp["salt"], "started_at": _iso(exp["started_at"]),
            "status": "archived" if exp["ended_at"] else "running",
            "outcome": {"source": source, ("query" if is_query(outcome) else "stream"): outcome,
                        "key": list(key)},
            **result.as_dict()}
