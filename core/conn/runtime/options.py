"""The switches of one run (``conn sync``, ``conn retry``, the UI's buttons)."""

from __future__ import annotations

from dataclasses import dataclass

from conn.state.target import OnChange


@dataclass
class RunOptions:
    """Switches of one ``conn sync`` invocation. ``on_target_change``: what a run does
    when a sync's target changed (see :mod:`conn.state.target`): refuse (None), start the
    new target from scratch (``"new"``) or keep the state (``"same"``)."""

    dry_run: bool = False
    full_resync: bool = False
    preview_rows: int = 0
    batch_rows: int | None = None
    on_target_change: OnChange = None
    #: A holdout whose design changed starts a new experiment (the old one is archived).
    new_experiment: bool = False
    #: Send only the rows currently rejected for the sync (``conn retry``, see
    #: :mod:`conn.runtime.retry`): the whole source is read, filtered to their keys,
    #: and goes through the same gate, mapper and planner; no bookmark is saved, no
    #: deletes are sent (mirror mode) and rejections are not tidied as after a full read.
    rejected_only: bool = False
