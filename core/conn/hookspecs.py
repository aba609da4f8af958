"""The hooks a conn plugin may implement.

A plugin is a module named by an entry point in the group ``conn.sources``,
``conn.destinations``, ``conn.transforms``, ``conn.state_backends``, ``conn.matchers`` or
``conn.observers``;
its functions are decorated with :data:`hookimpl` and named after a hook below.
Registration hooks receive a ``register`` callable so the core decides names, rejects
duplicates and remembers which distribution a connector came from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from conn.runtime.report import RunInfo, RunReport, SyncReport

hookspec = pluggy.HookspecMarker("conn")
hookimpl = pluggy.HookimplMarker("conn")


# --- registration -----------------------------------------------------------------------


@hookspec
def register_sources(register: Callable[..., None]) -> None:
    """Register source classes: call ``register(SourceClass)`` for each
    :class:`conn.source.Source` subclass; its ``name`` is the ``type`` used in conn.yml."""


@hookspec
def register_destinations(register: Callable[..., None]) -> None:
    """Register destination classes: call ``register(DestinationClass)`` for each
    :class:`conn.destination.Destination` subclass; its ``name`` is the ``type`` in conn.yml."""


@hookspec
def register_transforms(register: Callable[..., None]) -> None:
    """Register mapping transforms: ``register(name, function)`` where ``function(array,
    **options) -> pyarrow.Array`` is vectorised (no Python loop per row). The name becomes
    usable in a mapping's ``transforms:`` list."""


@hookspec
def register_state_backends(register: Callable[..., None]) -> None:
    """Register state store backends: ``register(name, factory)`` where ``factory(url,
    project_dir) -> conn.state.StateStore``. Selected by ``state.backend`` in conn.yml;
    :mod:`conn.state.contracts` says what a backend implements."""


@hookspec
def register_matchers(register: Callable[..., None]) -> None:
    """Register probabilistic record matchers for profile sets: ``register(name, cls)``
    where ``cls`` is a :class:`conn.profiles.matching.Matcher` subclass. The name is the
    ``plugin`` of an entry under ``profiles.NAME.matchers`` in conn.yml.

    ``conn profiles build`` calls ``cls(spec).pairs(records)`` once per build with every
    record of the profile set (an Arrow table: ``rkey`` and the declared ``columns``) and
    keeps the returned pairs (``record_a``, ``record_b``, ``score`` in 0..1) scoring at
    least the declared ``threshold``. Kept pairs join profiles in a round after every
    deterministic rule, under the same per-type limits: a pair that would break a limit
    yields."""


# --- observers ----------------------------------------------------------------------------


@hookspec
def run_started(run: RunInfo) -> None:
    """Called once when ``conn sync`` starts, before any source is read. ``run`` holds the
    run id, the project directory and the names of the syncs about to run."""


@hookspec
def batch_done(run: RunInfo, sync: SyncReport, counts: dict[str, Any]) -> None:
    """Called after each batch is written and its acknowledgements committed. ``counts``
    holds the batch's own figures (rows, inserted, updated, deleted, rejected, seconds);
    ``sync`` the running totals. Use it for metrics or progress; do not block: it runs
    on the runtime's delivery thread (not the main thread), between two batches' writes."""


@hookspec
def run_finished(run: RunInfo, report: RunReport) -> None:
    """Called once when ``conn sync`` ends, successfully or not, with the final report
    (already redacted). Use it for alerts."""
