"""A sync's holdout in the runner: after the consent gate, before the mapper. The
experiment is the sync's own or that of the audience or the trigger it sends
(:func:`conn.experiments.spec.holdout_of`): an audience's held-out members are withheld
from every sync sending it; a trigger's held-out keys' firings are recorded in the
trigger's state as if sent (:meth:`ActivationStage.note_held`), and not delivered.

The gate decides who may receive anything; of those, the experiment's holdout arm
(:func:`conn.experiments.holdout.held_out`) is taken out of the gated batch
(:func:`conn.pipeline.narrow_gated`, which can only remove rows), so a held-out key is
never mapped, planned or sent, and in mirror mode a held-out key the destination held
before is deleted like any key that left the set. Every key that passed the gate is
recorded as a member with its arm (in the state store, in groups written on the delivery
lane, the rest at the end of the run), and the run report counts both arms.

A changed design (percent or salt) is a new experiment: the run refuses it, naming
conn.yml and the sync's ``holdout`` path, unless ``--new-experiment`` asks to archive the
old one (its members are kept under ``NAME#N``) and start again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from conn.errors import ConfigError
from conn.experiments.holdout import held_out
from conn.experiments.spec import HoldoutSpec, holdout_errors, holdout_of
from conn.pipeline import GatedBatch, narrow_gated

if TYPE_CHECKING:
    from conn.config.model import Project, SyncConfig
    from conn.state.contracts import StateStore
    from conn.state.experiments import ExperimentStore
    from conn.traits.stage import ActivationStage

#: Says how to go on when a design changed (``conn sync`` has the option).
NEW_EXPERIMENT_HINT = ("to start a new experiment, run the sync with --new-experiment (the "
                       "old one's members are kept under a new name), or give this one "
                       "another 'name'")


#: Members are recorded in groups of this many keys (one write to the state store each:
#: recording 1M keys in 100k-row batches took ~8 s, in one group ~2.7 s) ...
FLUSH_ROWS = 500_000
#: ... or of what gathered in this long, so that a streaming sync records its members
#: while it runs. A crash loses at most the group being gathered: those keys are
#: recorded when a later run sees them again (their first run is then that one).
FLUSH_SECONDS = 30.0


class Holdout:
    """One run's holdout of one sync: splits gated batches and records members."""

    def __init__(self, spec: HoldoutSpec, store: ExperimentStore | None, run_id: str,
                 restart: bool = False, on_held: Callable[[pa.Array], None] | None = None
                 ) -> None:
        self.spec = spec
        #: Told the keys held out of each batch (a trigger's stage records their firing).
        self.on_held = on_held
        self.store = store
        self.run_id = run_id
        self.restart = restart
        #: The name the old experiment was archived under (``--new-experiment``).
        self.archived: str | None = None
        self._pending: list[tuple[pa.Array, pa.Array]] = []
        self._pending_rows = 0
        self._since = 0.0
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
        """The treatment arm of ``gated``. Every key's arm is kept for recording; once
        :data:`FLUSH_ROWS` keys or :data:`FLUSH_SECONDS` have gathered, their recording
        is handed to ``record`` (the delivery lane's submit; None: record nothing, a dry
        run). :meth:`flush` records the rest at the end of the run."""
        keys = gated.keys
        held = held_out(keys, self.spec.percent, self.spec.salt)
        n_held = int(pc.sum(held).as_py() or 0)
        self.eligible += len(keys)
        self.held_out += n_held
        self.treatment += len(keys) - n_held
        if self.on_held is not None:
            self.on_held(keys.filter(held))
        if record is not None and self.store is not None and len(keys):
            if not self._pending:
                self._since = time.monotonic()
            self._pending.append((keys, held))
            self._pending_rows += len(keys)
            if self._pending_rows >= FLUSH_ROWS or \
                    time.monotonic() - self._since >= FLUSH_SECONDS:
                record(self._take())
        return narrow_gated(gated, pc.invert(held)) if n_held else gated

    def _take(self) -> Callable[[], bool]:
        """The recording of the keys gathered so far (and forget them here)."""
        keys = pa.concat_arrays([k for k, _ in self._pending])
        held = pa.concat_arrays([h for _, h in self._pending])
        self._pending, self._pending_rows = [], 0
        return partial(self._record, keys, held)

    def flush(self) -> None:
        """Record what is still gathered (the end of a run, the lane closed)."""
        if self._pending:
            self._take()()

    def finish(self) -> dict[str, Any]:
        """The end of the run: :meth:`flush`, then the report's :meth:`summary`."""
        self.flush()
        return self.summary()

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
    # An audience's or a trigger's experiment is run by every sync sending it.
    return (current["percent"], current["salt"]) != (design["percent"], design["salt"]) \
        or (spec.of_sync and current["sync"] != spec.sync)


def prepare(project: Project, sync: SyncConfig, store: StateStore | None, run_id: str, *,
            restart: bool = False, stage: ActivationStage | None = None) -> Holdout | None:
    """The sync's holdout for a run, checked before a row is read (read-only): a name
    shared with another experiment, a sync in two experiments, a state backend that
    cannot keep experiments and a changed design (without ``restart``) are
    configuration errors. ``stage``: the sync's traits stage (a trigger's holdout
    records the firings it holds out there)."""
    file = str(project.file)
    spec = holdout_of(sync, file, project)
    if spec is None:
        return None
    errors = [e for e in holdout_errors(project) if e.path and (
        e.path == f"syncs.{sync.name}" or e.path.startswith(spec.path))]
    if errors:
        raise errors[0]
    on_held = stage.note_held if stage is not None and spec.owner.startswith(
        "triggers.") else None
    if store is None:  # conn check prepares syncs without a state store
        return Holdout(spec, None, run_id, restart, on_held)
    experiments = store.experiment_store()
    if experiments is None:
        raise ConfigError(f"the {project.state.get('backend', 'duckdb')!r} state backend "
                          f"cannot keep holdout experiments; use the duckdb backend (the "
                          f"default) for this sync", file=file, path=spec.path)
    current = experiments.design(spec.name)
    if current is not None and _changed(current, spec) and not restart:
        was = f"percent {current['percent']}, salt {current['salt']!r}"
        if spec.of_sync and current["sync"] != sync.name:
            was += f", sync {current['sync']!r}"
        raise ConfigError(
            f"experiment {spec.name!r} started with {was}; changing its design makes it "
            f"a new experiment: {NEW_EXPERIMENT_HINT}", file=file, path=spec.path)
    return Holdout(spec, experiments, run_id, restart, on_held)
