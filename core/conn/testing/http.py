"""HTTP test kit for destination authors: a fault-injecting local server and vcrpy helpers.

Fault server
------------
:class:`FaultServer` is a real HTTP server on 127.0.0.1 (stdlib ``ThreadingHTTPServer`` in
a background thread) that your destination talks to over sockets, exactly as to a vendor:

.. code-block:: python

    from conn.testing.http import FaultServer

    with FaultServer(seed=1, throttle_rate=0.1, error_rate=0.05, retry_after=0.01) as srv:
        dest = MyDestination({"url": srv.url + "/hook"})
        write_records(dest, "events", rows)
        srv.assert_exactly_once(ids)

Faults are applied before the handler, in this order: the server's rate limit (429 with
``Retry-After`` beyond ``rate_limit`` requests per second), the ``schedule`` (one entry per
request: a status code, a :class:`Reply`, :class:`Slow`, or ``None`` for no fault), the
random ``throttle_rate`` (429) and ``error_rate`` (``error_status``, 5xx) draws, then the
random slow response (``delay`` seconds with probability ``delay_rate``). Faulted
requests never reach the handler, so they store nothing. ``lost_response_rate`` is the
opposite: the request is processed and stored, then answered 503 as if the reply was lost
(only an idempotency key makes that exactly-once; see ``idempotency_header``).

Randomness comes from ``random.Random(seed)``, drawn in arrival order: runs are
deterministic for a sequential client and statistically stable for concurrent ones.

The default handler, :meth:`FaultServer.batch_handler`, accepts a JSON body holding a list
of records (``{"records": [...]}`` or a bare list), stores each by ``id_field`` in
:attr:`FaultServer.store` (idempotent: a record id is stored once, every arrival counted in
:attr:`FaultServer.arrivals`), deletes on ``"operation": "delete"`` or ``"erase"`` (an
id it does not hold is acknowledged: already gone), and answers
``{"errors": [{"index": i, "message": "..."}]}`` for records chosen by ``reject``
(``reject_mode="records"``) or ``400`` for the whole batch (``reject_mode="batch"``).
Emulate a vendor instead with ``handler=`` or :meth:`FaultServer.route` (exact paths, or
patterns such as ``/persons/{id}``). ``port=`` binds a fixed port instead of a free one
(e.g. for a project file written before the server starts).

Cassettes
---------
:func:`make_vcr` returns a ``vcr.VCR`` that keeps credentials out of cassettes. A cassette
written from a vendor's documentation instead of recorded live starts with the line
:data:`DOC_CASSETTE_MARKER`; :func:`assert_documented_cassette` checks it, and a test suite
can tell readers which behaviour was really observed.
"""

from __future__ import annotations

import json as jsonlib
import math
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, parse_qsl, unquote, urlsplit

# --- fault server ---------------------------------------------------------------------------


@dataclass
class Reply:
    """A response the server sends: ``json`` (serialised) or raw ``body``, ``headers``,
    after sleeping ``delay`` seconds."""

    status: int = 200
    json: Any = None
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0

    def encode(self) -> bytes:
        """The body bytes."""
        if self.json is not None:
            return jsonlib.dumps(self.json).encode()
        return self.body


@dataclass(frozen=True)
class Slow:
    """A schedule entry: wait ``seconds``, then handle the request normally."""

    seconds: float


@dataclass
class RecordedRequest:
    """One request the server received (``headers`` with lower-case names)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    time: float
    status: int = 0
    fault: str = ""
    #: The values of a route's ``{name}`` placeholders (``/persons/{id}`` -> ``{"id": ...}``).
    params: dict[str, str] = field(default_factory=dict)

    @property
    def json(self) -> Any:
        """The body parsed as JSON (None if empty or not JSON)."""
        try:
            return jsonlib.loads(self.body) if self.body else None
        except ValueError:
            return None

    def header(self, name: str, default: str | None = None) -> str | None:
        """A header value by case-insensitive name."""
        return self.headers.get(name.lower(), default)


Handler = Callable[[RecordedRequest, "FaultServer"], Reply]


class FaultServer:
    """A fault-injecting HTTP server on 127.0.0.1 (see the module docstring).

    Use as a context manager, or :meth:`start`/:meth:`stop`. :attr:`url` is its base URL.
    Every setting is also an attribute and may be changed with :meth:`configure` while
    the server runs.
    """

    def __init__(self, *, seed: int = 0, rate_limit: float | None = None, rate_burst: int = 1,
                 retry_after: float | None = None, throttle_rate: float = 0.0,
                 error_rate: float = 0.0, error_status: int = 503,
                 schedule: Iterable[int | Reply | Slow | None] = (), delay: float = 0.0,
                 delay_rate: float = 1.0, reject: Iterable[Any] | Callable[[Any], Any] = (),
                 reject_mode: str = "records", id_field: str = "id",
                 records_key: str = "records", idempotency_header: str | None = None,
                 lost_response_rate: float = 0.0, handler: Handler | None = None,
                 port: int = 0) -> None:
        self.port = port
        self.rng = random.Random(seed)
        self.rate_limit, self.rate_burst, self.retry_after = rate_limit, rate_burst, retry_after
        self.throttle_rate, self.error_rate, self.error_status = (throttle_rate, error_rate,
                                                                  error_status)
        self.schedule: list[int | Reply | Slow | None] = list(schedule)
        self.delay, self.delay_rate = delay, delay_rate
        self.reject = reject
        self.reject_mode, self.id_field, self.records_key = reject_mode, id_field, records_key
        self.idempotency_header = idempotency_header
        self.lost_response_rate = lost_response_rate
        self.handler: Handler = handler or FaultServer.batch_handler
        self.routes: dict[tuple[str, str], tuple[Handler, bool]] = {}
        self._patterns: list[tuple[str, re.Pattern[str], Handler, bool]] = []
        self.lock = threading.RLock()
        self.requests: list[RecordedRequest] = []
        self.store: dict[str, Any] = {}
        self.arrivals: Counter[str] = Counter()
        self.deleted: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.duplicates = 0
        self._seen_keys: dict[str, Reply] = {}
        self._tokens = float(max(1, rate_burst))
        self._last_refill = time.monotonic()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321``."""
        if self._httpd is None:
            raise RuntimeError("FaultServer is not running; use it as a context manager")
        # The bound socket's address, as server_address holds it (typed str, where
        # server_address also admits bytes).
        host, port = self._httpd.socket.getsockname()[:2]
        return f"http://{host}:{port}"

    def start(self) -> FaultServer:
        """Bind ``port`` on 127.0.0.1 (a free one by default) and serve in a daemon
        thread."""
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # no 40 ms delayed-ACK stalls per reply

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _any(self) -> None:
                server._serve(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _any

        httpd = ThreadingHTTPServer(("127.0.0.1", self.port), _Handler)
        httpd.daemon_threads = True
        httpd.block_on_close = False  # keep-alive handler threads must not block stop()
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="conn-fault-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def configure(self, **settings: Any) -> FaultServer:
        """Change settings (same names as the constructor's) while running."""
        with self.lock:
            for key, value in settings.items():
                if key == "seed":
                    self.rng = random.Random(value)
                elif key == "schedule":
                    self.schedule = list(value)
                elif key == "rate_burst" or key == "rate_limit":
                    setattr(self, key, value)
                    self._tokens = float(max(1, self.rate_burst))
                elif hasattr(self, key) and not key.startswith("_"):
                    setattr(self, key, value)
                else:
                    raise TypeError(f"FaultServer has no setting {key!r}")
        return self

    def route(self, method: str, path: str, handler: Handler, *, faults: bool = True) -> None:
        """Serve ``method path`` with ``handler(request, server) -> Reply``; with
        ``faults=False`` no fault is injected on it (e.g. a token endpoint). A path may
        hold ``{name}`` placeholders, each matching one path segment
        (``/persons/{id}``); the handler finds their values in ``request.params``. Exact
        paths win over patterns, and patterns are tried in the order they were added.
        Handlers run one at a time under :attr:`lock`, so they may update :attr:`store`
        freely; use :class:`Reply` ``delay`` rather than sleeping inside a handler."""
        method = method.upper()
        if "{" not in path:
            self.routes[(method, path)] = (handler, faults)
            return
        regex = "".join(f"(?P<{part[1:-1]}>[^/]+)" if part.startswith("{") and
                        part.endswith("}") else re.escape(part)
                        for part in re.split(r"(\{[A-Za-z_][A-Za-z0-9_]*\})", path))
        self._patterns = [x for x in self._patterns if (x[0], x[1].pattern) !=
                          (method, f"^{regex}$")]
        self._patterns.append((method, re.compile(f"^{regex}$"), handler, faults))

    def _route_for(self, req: RecordedRequest) -> tuple[Handler, bool]:
        """The handler of ``req`` (exact route, pattern, else :attr:`handler`)."""
        found = self.routes.get((req.method, req.path))
        if found is not None:
            return found
        for method, regex, handler, faults in self._patterns:
            m = regex.match(req.path) if method == req.method else None
            if m is not None:
                req.params = {k: unquote(v) for k, v in m.groupdict().items()}
                return handler, faults
        return self.handler, True

    def reset(self) -> None:
        """Forget requests, stored records and counters (settings stay)."""
        with self.lock:
            self.requests.clear()
            self.store.clear()
            self.arrivals.clear()
            self.deleted.clear()
            self.statuses.clear()
            self._seen_keys.clear()
            self.duplicates = 0

    # -- assertions --

    def assert_exactly_once(self, ids: Iterable[Any]) -> None:
        """Assert the store holds exactly ``ids`` and each arrived exactly once."""
        want = {str(i) for i in ids}
        missing = sorted(want - set(self.store))[:10]
        extra = sorted(set(self.store) - want)[:10]
        dup = sorted(k for k, c in self.arrivals.items() if c > 1)[:10]
        assert not (missing or extra or dup), (
            f"exactly-once violated: missing={missing} unexpected={extra} duplicated={dup}"
        )

    # -- request handling --

    def _take_token(self) -> float:
        """0 if a token was taken, else the seconds until one is available."""
        now = time.monotonic()
        rate = float(self.rate_limit or 0)
        cap = float(max(1, self.rate_burst))
        self._tokens = min(cap, self._tokens + (now - self._last_refill) * rate)
        self._last_refill = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / rate

    def _throttle_reply(self, wait: float | None) -> Reply:
        if self.retry_after is not None:
            value = f"{self.retry_after:g}"
        else:
            value = str(max(1, math.ceil(wait or 1)))
        return Reply(429, json={"message": "rate limit exceeded", "errorType": "RATE_LIMIT"},
                     headers={"Retry-After": value})

    def _fault(self, req: RecordedRequest) -> tuple[Reply | None, float, bool]:
        """Decide this request's fault: (reply or None, delay before handling, lose reply)."""
        with self.lock:
            r_fault, r_delay, r_lost = self.rng.random(), self.rng.random(), self.rng.random()
            if self.rate_limit:
                wait = self._take_token()
                if wait > 0:
                    req.fault = "rate_limit"
                    return self._throttle_reply(wait), 0.0, False
            if self.schedule:
                item = self.schedule.pop(0)
                if isinstance(item, int):
                    req.fault = f"schedule:{item}"
                    if item == 429:
                        return self._throttle_reply(None), 0.0, False
                    return Reply(item, json={"message": f"scheduled fault {item}"}), 0.0, False
                if isinstance(item, Reply):
                    req.fault = f"schedule:{item.status}"
                    return item, 0.0, False
                if isinstance(item, Slow):
                    req.fault = "slow"
                    return None, item.seconds, False
            if r_fault < self.throttle_rate:
                req.fault = "throttle"
                return self._throttle_reply(None), 0.0, False
            if r_fault < self.throttle_rate + self.error_rate:
                req.fault = "error"
                return Reply(self.error_status, json={"message": "injected server error"}), \
                    0.0, False
            delay = self.delay if self.delay and r_delay < self.delay_rate else 0.0
            return None, delay, r_lost < self.lost_response_rate

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        parts = urlsplit(h.path)
        req = RecordedRequest(h.command, parts.path, parse_qs(parts.query),
                              {k.lower(): v for k, v in h.headers.items()}, body, time.time())
        with self.lock:
            self.requests.append(req)
        handler, faults = self._route_for(req)
        reply, delay, lose = self._fault(req) if faults else (None, 0.0, False)
        if delay:
            time.sleep(delay)
        if reply is None:
            key = req.header(self.idempotency_header) if self.idempotency_header else None
            with self.lock:
                cached = self._seen_keys.get(key) if key else None
                if cached is not None:
                    self.duplicates += 1
                    reply = cached
                else:
                    try:
                        reply = handler(req, self)
                    except Exception as exc:  # a broken test handler: show it as a 500
                        reply = Reply(500, json={"message": f"handler error: {exc!r}"})
                    if key and 200 <= reply.status < 300:
                        self._seen_keys[key] = reply
            if lose:
                req.fault = "lost_response"
                reply = Reply(503, json={"message": "injected: response lost after processing"})
        if reply.delay:
            time.sleep(reply.delay)
        req.status = reply.status
        with self.lock:
            self.statuses[reply.status] += 1
        data = b"" if h.command == "HEAD" else reply.encode()
        try:
            h.send_response(reply.status)
            headers = {"Content-Type": "application/json", **reply.headers}
            for k, v in headers.items():
                h.send_header(k, v)
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)
        except OSError:  # the client gave up (timeout) and closed the connection
            h.close_connection = True

    # -- the default handler --

    def reject_reason(self, record: Any) -> str | None:
        """Why ``record`` is rejected under ``reject`` (None: accepted)."""
        if callable(self.reject):
            r = self.reject(record)
            return None if r in (None, False) else (r if isinstance(r, str) else "rejected")
        rid = record.get(self.id_field) if isinstance(record, Mapping) else None
        bad = {str(x) for x in self.reject}
        if rid is not None and str(rid) in bad:
            return f"record {rid} rejected: invalid value"
        return None

    @staticmethod
    def batch_handler(req: RecordedRequest, server: FaultServer) -> Reply:
        """Store a batch of records (see the module docstring for the convention)."""
        if not req.body:
            return Reply(200, json={"ok": True})
        payload = req.json
        if isinstance(payload, list):
            records, op = payload, "upsert"
        elif isinstance(payload, Mapping):
            records, op = payload.get(server.records_key) or [], payload.get("operation", "upsert")
        else:
            return Reply(400, json={"message": "body must be JSON"})
        if not isinstance(records, Sequence):
            return Reply(400, json={"message": f"{server.records_key!r} must be a list"})
        reasons = [server.reject_reason(r) for r in records]
        if server.reject_mode == "batch" and any(reasons):
            first = next(r for r in reasons if r)
            return Reply(400, json={"message": f"batch refused: {first}"})
        errors = []
        for i, (rec, reason) in enumerate(zip(records, reasons, strict=True)):
            if reason:
                errors.append({"index": i, "message": reason})
                continue
            rid = str(rec.get(server.id_field)) if isinstance(rec, Mapping) else str(rec)
            if op in ("delete", "erase"):
                server.store.pop(rid, None)
                server.deleted[rid] += 1
            else:
                server.store[rid] = rec
                server.arrivals[rid] += 1
        return Reply(200, json={"errors": errors} if errors else {"ok": True})


# --- vcrpy helpers ---------------------------------------------------------------------------

#: First line of a cassette written from vendor documentation, not recorded live.
DOC_CASSETTE_MARKER = "# built from vendor documentation, not recorded live"

#: Headers never written to a cassette.
SECRET_HEADERS = ("authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key",
                  "api-key", "x-auth-token", "webhook-signature", "x-hub-signature-256")
#: Query and form parameters masked in cassettes.
SECRET_PARAMS = ("api_key", "apikey", "key", "token", "access_token", "refresh_token",
                 "client_secret", "client_id", "password", "hapikey")


def _scrub_json(obj: Any) -> Any:
    from conn import secrets

    if isinstance(obj, dict):
        return {k: (secrets.MASK if isinstance(v, str) and secrets.SECRET_KEY_HINTS.search(k)
                    else _scrub_json(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_scrub_json(v) for v in obj]
    if isinstance(obj, str):
        return secrets.redact(obj)
    return obj


def scrub_body(body: bytes | str | None) -> bytes | str | None:
    """Mask secrets in a request or response body: JSON values under secret-looking keys
    and every registered secret anywhere."""
    from conn import secrets

    if not body:
        return body
    raw = body if isinstance(body, str) else body.decode("utf-8", "replace")
    try:
        text = jsonlib.dumps(_scrub_json(jsonlib.loads(raw)))
    except ValueError:
        text = secrets.redact(raw)
    return text if isinstance(body, str) else text.encode()


def parsed_body(body: Any, ignore_keys: Sequence[str] = ()) -> Any:
    """A request body in comparable form: JSON as data (``ignore_keys`` replaced by
    ``"<any>"`` at any depth), a form as sorted pairs, anything else as stripped text."""
    if body in (None, b"", ""):
        return None
    text = body.decode() if isinstance(body, bytes) else str(body)
    try:
        doc = jsonlib.loads(text)
    except ValueError:
        if "\n" in text.strip() or "=" not in text:  # CSV or plain text
            return text.strip()
        return sorted(parse_qsl(text))

    def blank(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: "<any>" if k in ignore_keys else blank(v) for k, v in node.items()}
        if isinstance(node, list):
            return [blank(v) for v in node]
        return node

    return blank(doc) if ignore_keys else doc


def body_matcher(ignore_keys: Sequence[str] = ()) -> Callable[[Any, Any], None]:
    """A vcrpy matcher: request bodies equal once parsed (key order and spacing ignored),
    so a cassette pins the documented request shape, not its formatting."""

    def match(r1: Any, r2: Any) -> None:
        a, b = parsed_body(r1.body, ignore_keys), parsed_body(r2.body, ignore_keys)
        assert a == b, f"request body differs from the cassette:\n sent: {a}\n want: {b}"

    return match


def make_vcr(cassette_dir: str | Path, *, record_mode: str = "none",
             secret_headers: Sequence[str] = (), secret_params: Sequence[str] = (),
             match_on: Sequence[str] = ("method", "scheme", "host", "port", "path", "query"),
             match_body: bool = False, ignore_body_keys: Sequence[str] = (),
             matchers: Mapping[str, Callable[[Any, Any], None]] | None = None,
             **kwargs: Any) -> Any:
    """A ``vcr.VCR`` storing cassettes in ``cassette_dir`` with credentials filtered:
    auth headers, API keys in query strings and form bodies, secret-looking JSON keys and
    every value registered with :mod:`conn.secrets`, in requests and responses.

    ``record_mode="none"`` (the default) replays only, so CI never calls a vendor; record
    with ``record_mode="once"`` and real credentials in the environment. ``match_body``
    also compares request bodies with :func:`body_matcher` (``ignore_body_keys``: JSON
    keys whose values differ on every run, such as a random session id). ``matchers``
    adds vcrpy matchers of your own (name -> ``matcher(r1, r2)`` asserting the two
    requests agree), each also matched on.
    """
    import vcr

    headers = [*SECRET_HEADERS, *secret_headers]
    params = [*SECRET_PARAMS, *secret_params]

    def before_request(request: Any) -> Any:
        request.body = scrub_body(request.body)
        return request

    def before_response(response: Any) -> Any:
        body = response.get("body") or {}
        if body.get("string"):
            body["string"] = scrub_body(body["string"])
        hdrs = response.get("headers") or {}
        for name in list(hdrs):
            if name.lower() in headers:
                hdrs[name] = ["***"]
        return response

    if match_body:
        match_on = [*match_on, "parsed_body"]
    match_on = [*match_on, *(matchers or {})]
    v = vcr.VCR(
        cassette_library_dir=str(cassette_dir),
        record_mode=record_mode,
        filter_headers=[(h, "***") for h in headers],
        filter_query_parameters=[(p, "***") for p in params],
        filter_post_data_parameters=[(p, "***") for p in params],
        before_record_request=before_request,
        before_record_response=before_response,
        decode_compressed_response=True,
        match_on=list(match_on),
        path_transformer=vcr.VCR.ensure_suffix(".yaml"),
        **kwargs,
    )
    if match_body:
        v.register_matcher("parsed_body", body_matcher(ignore_body_keys))
    for name, matcher in (matchers or {}).items():
        v.register_matcher(name, matcher)
    return v


def is_documented_cassette(path: str | Path) -> bool:
    """True if the cassette's first line is :data:`DOC_CASSETTE_MARKER`."""
    with open(path, encoding="utf-8") as f:
        return f.readline().strip() == DOC_CASSETTE_MARKER


def assert_documented_cassette(path: str | Path) -> None:
    """Assert the cassette carries :data:`DOC_CASSETTE_MARKER` on its first line."""
    assert is_documented_cassette(path), (
        f"{path}: a cassette built from vendor documentation must start with the line "
        f"{DOC_CASSETTE_MARKER!r}"
    )


def mark_documented_cassette(path: str | Path) -> None:
    """Prepend :data:`DOC_CASSETTE_MARKER` to a cassette (idempotent). Replay such
    cassettes with ``record_mode="none"``: re-recording would drop the marker."""
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    if not text.startswith(DOC_CASSETTE_MARKER):
        p.write_text(f"{DOC_CASSETTE_MARKER}\n{text}", encoding="utf-8")


def assert_no_secrets(path: str | Path, values: Iterable[str]) -> None:
    """Assert none of ``values`` appears in the file at ``path`` (e.g. a cassette)."""
    text = Path(path).read_text(encoding="utf-8")
    leaked = [v[:3] + "…" for v in values if v and v in text]
    assert not leaked, f"{path} contains secret values starting with {leaked}"
