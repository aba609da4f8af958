"""A sync's holdout in the runner: after the consent gate, before the mapper.

The gate decides who may receive anything; of those, the experiment's holdout arm
(:func:`conn.experiments.holdout.held_out`) is taken out of the gated batch
(:func:`conn.pipeline.narrow_gated`, which can only remove rows), so a held-out key is
never mapped, planned or sent, and in mirror mode a held-out key the destination held
before is deleted like any key that left the set. Every key that passed the gate is
recorded as a member with its arm (in the state store, on the delivery lane, in order
with the batch's delivery), and the run report counts both arms.

A changed design (percent or salt) is a new experiment: the run refuses it, naming
conn.yml and the sync's ``holdout`` path, unless ``--new-experiment`` asks to archive the
old one (its members are kept under ``NAME#N``) and start again.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import pyarrow.compute as pc

from conn.errors import ConfigError
from conn.experiments.holdout import held_out
from conn.experiments.spec import HoldoutSpec, holdout_errors, holdout_of
from conn.pipeline import GatedBatch, narrow_gated

if TYPE_CHECKING:
    import pyarrow as pa

    from conn.config.model import Project, SyncConfig
    from conn.state.contracts import StateStore
    from conn.state.experiments import ExperimentStore

#: Says how to go on when a design changed (``conn sync`` has the option).
NEW_EXPERIMENT_HINT = ("to start a new experiment, run the sync with --new-experiment (the "
                       "old one's members are kept under a new name), or give this one "
                       "another 'name'")


class Holdout:
    """One run's holdout of one sync: splits gated batches and records members."""

    def __init__(self, spec: HoldoutSpec, store: ExperimentStore | None, run_id: str,
                 restart: bool = False) -> None:
        self.spec = spec
        self.store = store
        self.run_id = run_id
        self.restart = restart
        #: The name the old experiment was archived under (``--new-experiment``).
        self.archived: str | None = None
        self.eligible = self.treatment = self.held_out = self.new_members = 0

    def start(self) -> None:
        """Begin the experiment on its first run, or (``--new-experiment``) archive a
        changed one and begin again. Not called by dry runs: they record nothing."""
        if self.store is None:
            return
        current = self.store.design(self.spec.name)
        if current is not None and _changed(current, self.spec) and self.restart:
            self.archived = self.store.archive(self.spec.name)
            current = None
        if current is None:
            self.store.begin(self.spec.name, self.spec.sync, self.spec.design(),
                             self.run_id)

    def split(self, gated: GatedBatch, record: Callable[[Callable[[], Any]], Any] | None
              ) -> GatedBatch:
        """The treatment arm of ``gated``; hands the recording of every key's arm to
        ``record`` (the delivery lane's submit; None: record nothing, a dry run)."""
        keys = gated.keys
        held = held_out(keys, self.spec.percent, self.spec.salt)
        n_held = int(pc.sum(held).as_py() or 0)
        self.eligible += len(keys)
        self.held_out += n_held
        self.treatment += len(keys) - n_held
        if record is not None and self.store is not None and len(keys):
            record(partial(self._record, keys, held))
        return narrow_gated(gated, pc.invert(held)) if n_held else gated

    def _record(self, keys: pa.Array, held: pa.Array) -> bool:
        assert self.store is not None
        self.new_members += self.store.record(self.spec.name, self.run_id, keys, held)
        return True

    def summary(self) -> dict[str, Any]:
        """The run report's ``experiment``: the design and this run's counts."""
        out = {**self.spec.as_dict(), "eligible": self.eligible,
               "treatment": self.treatment, "held_out": self.held_out,
               "new_members": self.new_members}
        if self.archived:
            out["archived_as"] = self.archived
        return out


def _changed(current: dict[str, Any], spec: HoldoutSpec) -> bool:
    design = spec.design()
    return (current["percent"], current["salt"], current["sync"]) != \
        (design["percent"], design["salt"], spec.sync)


def prepare(project: Project, sync: SyncConfig, store: StateStore | None, run_id: str, *,
            restart: bool = False) -> Holdout | None:
    """The sync's holdout for a run, checked before a row is read (read-only): a name
    shared with another sync's experiment, a state backend that cannot keep
    experiments and a changed design (without ``restart``) are configuration errors."""
    file = str(project.file)
    spec = holdout_of(sync, file)
    if spec is None:
        return None
    errors = [e for e in holdout_errors(project) if e.path and
              e.path.startswith(f"syncs.{sync.name}.")]
    if errors:
        raise errors[0]
    if store is None:  # conn check prepares syncs without a state store
        return Holdout(spec, None, run_id, restart)
    experiments = store.experiment_store()
    if experiments is None:
        raise ConfigError(f"the {project.state.get('backend', 'duckdb')!r} state backend "
                          f"cannot keep holdout experiments; use the duckdb backend (the "
                          f"default) for this sync", file=file, path=spec.path)
    current = experiments.design(spec.name)
    if current is not None and _changed(current, spec) and not restart:
        was = f"percent {current['percent']}, salt {current['salt']!r}"
        if current["sync"] != sync.name:
            was += f", sync {current['sync']!r}"
        raise ConfigError(
            f"experiment {spec.name!r} started with {was}; changing its design makes it "
            f"a new experiment: {NEW_EXPERIMENT_HINT}", file=file, path=spec.path)
    return Holdout(spec, experiments, run_id, restart)
