"""The UI's routes: ``/api/...`` (:mod:`conn.ui.api`), the pages and their static files.

Independent of any HTTP server: :meth:`UiApp.handle` takes a method, a path, headers and
a body and returns a :class:`Response`; ``conn ui`` (:mod:`conn.ui.server`) and ``conn
serve`` (:mod:`conn.serve.http`) put it behind their servers. Every answer carries
headers that keep the page from being framed, sniffed or fed scripts from elsewhere.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from html import escape
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, unquote, urlsplit

from conn.ui.api import Api
from conn.ui.guard import Guard

if TYPE_CHECKING:
    from conn.plugins import Registry

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; connect-src 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
                ".svg": "image/svg+xml"}
#: First path segment of each page (the rest of the path is read by the page's script).
PAGES = {"", "syncs", "runs", "people", "profiles", "triggers", "experiments"}
#: Largest request body read, bytes (actions take a few small fields).
MAX_BODY = 64 * 1024


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def _static(name: str) -> bytes | None:
    res = resources.files("conn.ui").joinpath("static", name)
    return res.read_bytes() if res.is_file() else None


class UiApp:
    """The UI of one project; ``guard`` decides who may ask."""

    def __init__(self, project: Path | None, registry: Registry, guard: Guard) -> None:
        self.api = Api(project, registry)
        self.guard = guard

    def handle(self, method: str, target: str, headers: Mapping[str, str],
               body: bytes = b"") -> Response:
        """Answer one request. ``headers``: names in any case."""
        lower = {k.lower(): v for k, v in headers.items()}
        url = urlsplit(target)
        path = url.path
        refused = self.guard.refuse(method, path, lower)
        if refused:
            return self._json(403, {"ok": False, "error": {"type": "Forbidden",
                                                           "message": refused}})
        if path.startswith("/api/"):
            return self._api(method, path, url.query, body)
        if method not in ("GET", "HEAD"):
            return self._json(405, {"ok": False, "error": {"type": "MethodNotAllowed",
                                                           "message": "use GET"}})
        if path.startswith("/static/"):
            name = path[len("/static/"):]
            data = _static(name) if "/" not in name and not name.startswith(".") else None
            if data is None:
                return Response(404, b"not found\n", "text/plain")
            ctype = STATIC_TYPES.get(Path(name).suffix, "application/octet-stream")
            return self._secured(Response(200, data, ctype))
        if path.split("/")[1] in PAGES:
            return self._secured(Response(200, self._page(), "text/html; charset=utf-8"))
        return Response(404, b"not found: the UI starts at /\n", "text/plain")

    def _page(self) -> bytes:
        html = (_static("page.html") or b"").decode()
        # Without a token the page carries the CSRF token its buttons send; with one, the
        # page is served to anyone and holds nothing (its script sends the token instead).
        csrf = "" if self.guard.token else self.guard.csrf
        return html.replace("{{csrf}}", escape(csrf, quote=True)).replace(
            "{{auth}}", "token" if self.guard.token else "csrf").encode()

    def _api(self, method: str, path: str, query: str, body: bytes) -> Response:
        parts = [unquote(p) for p in path[len("/api/"):].split("/")]
        data: dict[str, object] = {}
        if method == "POST" and body.strip():
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
            if not isinstance(parsed, dict):
                return self._json(400, {"ok": False, "error": {
                    "type": "BadRequest", "message": "the body must be a JSON object"}})
            data = parsed
        reply = self.api.handle(method, parts, dict(parse_qsl(query)), data)
        return self._json(reply.status, reply.body)

    def _json(self, status: int, body: object) -> Response:
        data = json.dumps(body, default=str).encode() + b"\n"
        return self._secured(Response(status, data, "application/json"))

    @staticmethod
    def _secured(resp: Response) -> Response:
        resp.headers = {**SECURITY_HEADERS, **resp.headers}
        return resp
