"""``conn ui``: a local web UI and its JSON API over the same functions the CLI calls.

Modules, one job each: ``guard`` (who may ask what: Host, token, CSRF), ``api`` (the
JSON API under ``/api``, described by ``openapi.json``), ``app`` (routes: the API, the
pages and their static files), ``server`` (the stdlib HTTP server of ``conn ui``; ``conn
serve`` mounts :class:`conn.ui.app.UiApp` in its own). The pages are static files whose
script reads the API, so a page shows nothing the API does not. See docs/ui.md.
"""
