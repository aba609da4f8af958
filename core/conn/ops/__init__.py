"""What the command line and the web UI both do, as functions that return data.

``conn runs``, ``conn rejected``, ``conn preview``, ``conn sync``, ``conn pause``,
``conn resume``, ``conn profiles show`` and ``conn triggers`` print what these
functions return; ``conn ui`` serves the same results as JSON (:mod:`conn.ui`). One
implementation, so the UI cannot fall behind the CLI. (``conn profiles stats`` and
``conn experiments list|report`` call :mod:`conn.profiles.lookup` and
:mod:`conn.runtime.experiment_report`, which the UI calls too.)

Modules: ``syncs`` (the syncs' overview, running, previewing, pausing), ``history``
(past runs, one run's details, rejected rows), ``people``, ``profiles`` (one profile)
and ``triggers``.
"""
