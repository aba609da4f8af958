"""``conn serve``: one long-running process that runs a project's syncs on their
schedules (and, through the same job interface, continuous ones), with ``/healthz`` and
Prometheus ``/metrics``. See docs/realtime.md, "conn serve".

Modules, one job each: ``jobs`` (what the scheduler runs), ``scheduler`` (when, each job
in its own worker thread), ``metrics`` (the Prometheus series), ``http`` (the endpoints),
``lock`` (one serve per project), ``events`` (what is printed), ``service`` (all of it
for one project, and the drain on SIGTERM/SIGINT).
"""
