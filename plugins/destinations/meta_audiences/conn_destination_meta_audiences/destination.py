"""The ``meta_audiences`` destination: add and remove people in Meta Custom Audiences.

Each object is one Custom Audience. ``upsert`` (and the upserts of ``mirror``) add users
with ``POST /{version}/{audience_id}/users``; deletes (``mirror``) remove them with
``DELETE /{version}/{audience_id}/users``. Requests are made as facebook-business makes
them: POST parameters as a form body (the token as its ``access_token`` parameter),
DELETE parameters in the query string, objects JSON-encoded; the token never goes in a
URL (GET and DELETE carry it in the ``Authorization`` header). Both send::

    {"payload": {"schema": ["EMAIL", "PHONE", ...], "data": [["<sha256>", "<sha256>"], ...]},
     "session": {"session_id": 123, "batch_seq": 1, "last_batch_flag": true,
                 "estimated_num_total": 25000}}

**Hashing.** Every identifier except ``extern_id`` and ``madid`` must arrive already
normalised and SHA-256-hashed (64 lowercase hex characters) by the core's ``hash`` field
policy (the object's fields are tagged personal: ``email`` → email, ``phone`` → phone,
...). A value that is not a digest is never sent: its row is rejected with a reason
naming the field. With ``hash_in_destination: true`` the destination normalises and
hashes such values itself, with the core's normalisers (values that already are digests
are left alone, so nothing is hashed twice).

**Sessions.** :meth:`Destination.write` splits a planned batch into requests of
``batch_size`` (≤ 10,000, Meta's limit) and calls :meth:`write_batch` for each, in order
(``concurrency`` 1). One write is one upload session: a random 63-bit ``session_id`` is
drawn for its first chunk, ``batch_seq`` counts the chunks from 1, ``last_batch_flag`` is
set on the last chunk and ``estimated_num_total`` is the number of rows of the write. A
retried request repeats its ``session_id`` and ``batch_seq``. If a chunk fails for good,
its rows and those of the chunks not sent yet stay pending (``Destination.write`` stops
after a failed chunk) and the next run sends them in a new session; the broken session
is left without ``last_batch_flag`` and Meta ends it on its own.

**Results.** The response's ``num_received``, ``num_invalid_entries`` and
``invalid_entry_samples`` (VERIFY) are read: sampled invalid entries are rejected on their
rows; invalid entries Meta does not sample cannot be told apart and are acknowledged
(logged as a warning with the count).
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from conn import secrets
from conn.destination import (
    Capabilities,
    Destination,
    ObjectInfo,
    Rejection,
    WriteRequest,
    WriteResult,
)
from conn.errors import CheckFailed, ConnError
from conn.http import LazyClient
from conn.http.config import client_from_config, flat_retry_policy, rate_limit_from_config

if TYPE_CHECKING:
    import httpx
    import pyarrow as pa
    from conn.http import HttpClient

log = logging.getLogger("conn.destination.meta_audiences")

#: Meta's documented maximum of records per request.
BATCH_LIMIT = 10_000
#: Field → (Meta schema key, personal-data kind, hashed?).
KEYS: dict[str, tuple[str, str, bool]] = {
    "email": ("EMAIL", "email", True),
    "phone": ("PHONE", "phone", True),
    "fn": ("FN", "first_name", True),
    "ln": ("LN", "last_name", True),
    "fi": ("FI", "first_initial", True),
    "ct": ("CT", "city", True),
    "st": ("ST", "state", True),
    "zip": ("ZIP", "zip", True),
    "country": ("COUNTRY", "country", True),
    "gen": ("GEN", "gender", True),
    "doby": ("DOBY", "dob_year", True),
    "dobm": ("DOBM", "dob_month", True),
    "dobd": ("DOBD", "dob_day", True),
    "madid": ("MADID", "device_id", False),
    "extern_id": ("EXTERN_ID", "external_id", False),
}
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
#: Graph API error codes meaning "throttled, try later" (VERIFY: Marketing API rate
#: limiting: 4, 17, 32, 613, 80003; 2 = temporary service problem).
THROTTLE_CODES = frozenset({2, 4, 17, 32, 613, 80003})


CONFIG_SCHEMA = json.loads(resources.files(__package__).joinpath("config.schema.json")
                           .read_text(encoding="utf-8"))


def graph_error(resp: httpx.Response) -> dict[str, Any]:
    """The Graph API ``error`` object of a response (empty if none)."""
    try:
        doc = resp.json()
    except ValueError:
        return {}
    err = doc.get("error") if isinstance(doc, dict) else None
    return err if isinstance(err, dict) else {}


def describe_error(resp: httpx.Response) -> str:
    """A Graph API error as one line: message, code, subcode, trace id."""
    from conn.http import body_excerpt

    err = graph_error(resp)
    if not err:
        return f"HTTP {resp.status_code}: {body_excerpt(resp, 300)}".rstrip(": ")
    text = f"HTTP {resp.status_code}: {err.get('message') or err.get('type') or 'error'}"
    bits = [f"code {err['code']}"] if "code" in err else []
    if err.get("error_subcode"):
        bits.append(f"subcode {err['error_subcode']}")
    if err.get("error_user_msg"):
        bits.append(str(err["error_user_msg"]))
    if err.get("fbtrace_id"):
        bits.append(f"fbtrace_id {err['fbtrace_id']}")
    return secrets.redact(f"{text} ({', '.join(bits)})" if bits else text)


def is_throttled(resp: httpx.Response) -> bool:
    """Retry predicate: 429/5xx, or a Graph error that is transient or a rate limit."""
    status = resp.status_code
    if status == 429 or status >= 500:
        return status not in (501, 505)
    if status >= 400:
        err = graph_error(resp)
        return bool(err.get("is_transient")) or err.get("code") in THROTTLE_CODES
    return False


def hash_column(arr: pa.Array, field: str, *, country_code: str | None = None) -> pa.Array:
    """Normalise and SHA-256 the values of ``arr`` that are not digests yet (the core's
    normalisers, :mod:`conn.consent.normalize`), as ``hash_in_destination`` does."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from conn.consent import normalize
    from conn.digests import sha256_hex

    arr = arr.cast(pa.string()) if not pa.types.is_string(arr.type) else arr
    done = pc.fill_null(pc.match_substring_regex(arr, SHA256_HEX.pattern), False)
    # The same normaliser the core's ``hash`` policy applies to this field's kind, so
    # both paths give the same digest.
    opts = {"country_code": country_code} if field == "phone" and country_code else {}
    norm = normalize.normalize(arr, KEYS[field][1], **opts)
    return pc.if_else(done, arr, sha256_hex(norm))


def plain_key(arr: pa.Array) -> pa.Array:
    """An unhashed key (MADID, EXTERN_ID) as facebook-business sends it: blanks and
    periods trimmed from both ends, lowercase."""
    import pyarrow.compute as pc

    return pc.utf8_lower(pc.utf8_trim(arr, characters=" \t\r\n\0\x0b."))


class MetaAudiencesDestination(LazyClient, Destination):
    """Meta Custom Audiences (see the module docstring)."""

    name: ClassVar[str] = "meta_audiences"
    #: What says where it writes (compared between runs; see Destination.target_identity).
    identity_keys: ClassVar[tuple[str, ...] | None] = ("base_url", "audience_id", "audiences")
    description: ClassVar[str] = (
        "Meta (Facebook) Custom Audiences: add/remove users with SHA-256 identifiers, upload "
        "sessions")
    config_schema: ClassVar[dict[str, Any]] = CONFIG_SCHEMA

    def __init__(self, config: Mapping[str, Any] | None = None, *, instance: str = "",
                 project_dir: str | Path | None = None) -> None:
        super().__init__(config, instance=instance, project_dir=project_dir)
        c = self.config
        self.token: str = c.get("access_token", "")
        secrets.register(self.token)
        self.audiences: dict[str, str] = dict(c.get("audiences") or {})
        if c.get("audience_id"):
            self.audiences.setdefault("audience", str(c["audience_id"]))
        self.version: str = c.get("api_version", "v25.0")
        self.hash_in_destination = bool(c.get("hash_in_destination", False))
        cc = c.get("phone_country_code")
        self.country_code: str | None = str(cc).lstrip("+") if cc else None
        self.batch_size = min(BATCH_LIMIT, int(c.get("batch_size", BATCH_LIMIT)))
        self.rate_limit = rate_limit_from_config(c.get("rate_limit"))
        self._lock = threading.Lock()
        self._sessions: dict[tuple[str, str, str], int] = {}
        self._rng = random.SystemRandom()
        #: Optional overrides for tests (``clock``, ``sleep``, ``seed``, ``transport``...).
        self.client_options: dict[str, Any] = {}
        #: Sessions opened (tests, diagnostics): session_id → [batch_seq, ...].
        self.session_log: dict[int, list[int]] = {}

    # -- plumbing --

    def make_client(self) -> HttpClient:
        """The HTTP client, made on first use (the token goes with each call:
        :meth:`graph_call`)."""
        c = self.config
        return client_from_config(
            c, str(c.get("base_url") or "https://graph.facebook.com").rstrip("/"),
            timeout=120,
            retry=flat_retry_policy(c, max_retry_wait=600),
            rate_limit=self.rate_limit, name=self.instance,
            max_connections=4, **self.client_options)

    def close(self) -> None:
        """Close the connection pool and forget sessions."""
        super().close()
        self._sessions.clear()

    def graph_call(self, method: str, path: str, params: Mapping[str, Any]
                   ) -> dict[str, Any]:
        """The keyword arguments of :meth:`HttpClient.request` for a Graph API call made
        as facebook-business makes it (``FacebookAdsApi.call``): objects and lists
        JSON-encoded (sorted keys, compact); POST parameters as a form body with the
        token as its ``access_token`` parameter; GET and DELETE parameters in the query
        string. The SDK also puts the token in the query string; conn keeps it out of
        URLs, which HTTP libraries log (httpx logs every URL at INFO), and sends it in
        the form body (POST) or the ``Authorization`` header (GET, DELETE)."""
        from urllib.parse import urlencode

        encoded = {k: json.dumps(v, sort_keys=True, separators=(",", ":"))
                   if isinstance(v, Mapping | list | tuple | bool) else str(v)
                   for k, v in params.items()}
        if method in ("GET", "DELETE"):
            return {"params": encoded, "headers": {"Authorization": f"Bearer {self.token}"}}
        return {"content": urlencode({**encoded, "access_token": self.token}).encode(),
                "headers": {"Content-Type": "application/x-www-form-urlencoded"}}

    def _users_path(self, object_name: str) -> str:
        return f"{self.version}/{self.audiences[object_name]}/users"

    # -- duties --

    def objects(self) -> list[ObjectInfo]:
        """One object per configured audience (``audience`` for ``audience_id``)."""
        caps = Capabilities(batch_size=self.batch_size, concurrency=1,
                            modes=frozenset({"upsert", "insert", "mirror"}),
                            supports_delete=True, rate_limit=self.rate_limit)
        users = ObjectInfo.from_package(__package__, "users", caps).with_fields(
            {}, personal={f: kind for f, (_, kind, _) in KEYS.items()})
        return [replace(users, name=name, description=f"Meta Custom Audience {aid}")
                for name, aid in self.audiences.items()]

    def check(self) -> None:
        """``GET /{version}/{audience_id}`` for every audience (token, access, status),
        one attempt each (a check should answer at once)."""
        from conn.errors import RetryLater
        from conn.http import NO_RETRY

        for name, aid in self.audiences.items():
            try:
                resp = self.client.get(f"{self.version}/{aid}", retry=NO_RETRY,
                                       **self.graph_call(
                                           "GET", "", {"fields": "id,name,operation_status"}))
            except RetryLater as exc:
                raise CheckFailed(f"meta_audiences {self.instance!r}: "
                                  f"{getattr(exc, 'reason', exc)}") from None
            if resp.status_code >= 400:
                raise CheckFailed(f"meta_audiences {self.instance!r}: audience {name} "
                                  f"({aid}): {describe_error(resp)}")

    # -- payloads --

    def prepare(self, request: WriteRequest) -> tuple[list[str], list[list[str]], list[int],
                                                      list[Rejection]]:
        """Schema, data rows, the batch index of each data row, and rows rejected before
        sending (un-hashed values, no identifier)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        batch = request.records
        fields = [f for f in KEYS if f in batch.schema.names]
        columns: dict[str, list[Any]] = {}
        bad: dict[int, list[str]] = {}
        for f in fields:
            arr = batch.column(f)
            if not pa.types.is_string(arr.type):
                arr = arr.cast(pa.string())
            hashed = KEYS[f][2]
            if hashed and self.hash_in_destination:
                arr = hash_column(arr, f, country_code=self.country_code)
            elif not hashed:
                arr = plain_key(arr)
            values = arr.to_pylist()
            if hashed:
                ok = pc.fill_null(pc.match_substring_regex(arr, SHA256_HEX.pattern), False)
                blank = pc.fill_null(pc.equal(pc.utf8_length(arr), 0), True)
                wrong = pc.and_(pc.invert(ok), pc.invert(blank)).to_pylist()
                for i, w in enumerate(wrong):
                    if w:
                        bad.setdefault(i, []).append(f)
            columns[f] = values
        rejected: list[Rejection] = []
        data: list[list[str]] = []
        rows: list[int] = []
        for i in range(batch.num_rows):
            if i in bad:
                names = ", ".join(bad[i])
                rejected.append(Rejection(i, (
                    f"{names}: not a SHA-256 hex digest (64 lowercase hex characters); Meta "
                    f"needs normalised, hashed identifiers: set a `hash` field policy (e.g. "
                    f"`policies: {{{bad[i][0]}: hash}}`) or `hash_in_destination: true`"),
                    retryable=False))
                continue
            row = [("" if columns[f][i] is None else str(columns[f][i])) for f in fields]
            if not any(row):
                rejected.append(Rejection(i, "no identifier to match (every key field is "
                                             "empty)", retryable=False))
                continue
            data.append(row)
            rows.append(i)
        return [KEYS[f][0] for f in fields], data, rows, rejected

    def _session(self, request: WriteRequest, *, dry_run: bool = False) -> dict[str, Any]:
        key = (request.sync, request.object.name, request.operation)
        with self._lock:
            sid = self._sessions.get(key)
            if request.chunk == 0 or sid is None:
                sid = self._rng.getrandbits(63) or 1
                if not dry_run:
                    self._sessions[key] = sid
            if not dry_run:
                self.session_log.setdefault(sid, []).append(request.chunk + 1)
        return {"session_id": sid, "batch_seq": request.chunk + 1,
                "last_batch_flag": request.chunk >= request.chunks - 1,
                "estimated_num_total": request.rows_total or len(request)}

    # -- writing --

    def write_batch(self, request: WriteRequest) -> WriteResult:
        """Add (upsert/insert) or remove (delete) the users of one chunk."""
        schema, data, rows, rejected = self.prepare(request)
        result = WriteResult(rejected=list(rejected))
        if not data:
            return result
        body = {"payload": {"schema": schema, "data": data},
                "session": self._session(request)}
        method = "DELETE" if request.operation == "delete" else "POST"
        resp = self.client.request(method, self._users_path(request.object.name),
                                   retry_on=is_throttled, **self.graph_call(method, "", body))
        if resp.status_code >= 400:
            raise ConnError(f"meta_audiences {self.instance!r} {method} users of "
                            f"{request.object.name}: {describe_error(resp)}")
        try:
            doc = resp.json()
        except ValueError:
            doc = {}
        result.rejected.extend(self._invalid(doc, data, rows))
        result.rejected.sort(key=lambda r: r.index)
        return result

    @staticmethod
    def _invalid(doc: Mapping[str, Any], data: Sequence[Sequence[str]],
                 rows: Sequence[int]) -> list[Rejection]:
        """Rejections for the entries Meta sampled as invalid."""
        from conn.http import excerpt

        n_invalid = int(doc.get("num_invalid_entries") or 0)
        received = doc.get("num_received")
        if received is not None and int(received) != len(data):
            log.warning("Meta received %s of %d entries", received, len(data))
        if not n_invalid:
            return []
        samples = doc.get("invalid_entry_samples") or {}
        items = (list(samples.items()) if isinstance(samples, Mapping)
                 else [(s, "") for s in samples])
        where: dict[str, int] = {}
        for pos, row in enumerate(data):
            for cell in row:
                if cell:
                    where.setdefault(cell, pos)
        out: list[Rejection] = []
        for value, why in items:
            cells = value if isinstance(value, list) else [value]
            at = next((where[str(c)] for c in cells if str(c) in where), None)
            if at is None:
                continue
            reason = f"Meta reported this entry invalid{': ' + str(why) if why else ''}"
            # The exchange is the upload just answered; this entry's part of it.
            out.append(Rejection(rows[at], secrets.redact(reason), retryable=False,
                                 excerpt=excerpt(list(data[at]))))
        if n_invalid > len(out):
            log.warning("Meta reported %d invalid entries, %d of them identified; the rest "
                        "are acknowledged", n_invalid, len(out))
        return out

    # -- dry run --

    def describe_requests(self, request: WriteRequest) -> list[dict[str, Any]]:
        """The exact requests :meth:`write_batch` would send (token masked); the session
        id is drawn at send time."""
        out: list[dict[str, Any]] = []
        method = "DELETE" if request.operation == "delete" else "POST"
        n = len(request)
        size = self.batch_size
        parts = max(1, -(-n // size))
        for k, offset in enumerate(range(0, n, size)):
            from dataclasses import replace

            chunk = replace(request.slice(offset, size), chunk=k, chunks=parts, rows_total=n)
            schema, data, _, rejected = self.prepare(chunk)
            session = self._session(chunk, dry_run=True)
            session["session_id"] = "<random 63-bit id, one per write>"
            d = self.client.describe(method, self._users_path(request.object.name),
                                     **self.graph_call(method, "", {
                                         "payload": {"schema": schema, "data": data},
                                         "session": session}))
            # The parameters before encoding, readable (the request itself carries them
            # in the form body or, for DELETE, the query string shown in "url").
            d["params"] = {"payload": {"schema": schema, "data": data}, "session": session}
            if rejected:
                d["rejected_before_sending"] = [
                    {"index": r.index + offset, "reason": r.reason} for r in rejected]
            out.append(d)
        return out
