"""What the command line and the web UI both do, as functions that return data.

``conn runs``, ``conn rejected``, ``conn preview``, ``conn sync``, ``conn pause`` and
``conn resume`` print what these functions return; ``conn ui`` serves the same results
as JSON (:mod:`conn.ui`). One implementation, so the UI cannot fall behind the CLI.

Modules: ``syncs`` (the syncs' overview, running, previewing, pausing) and ``history``
(past runs, one run's details, rejected rows).
"""
