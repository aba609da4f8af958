"""The ``salesforce`` destination: upsert any sObject by an external id field.

Each object the user configures (Contact, Lead, Account, a custom ``X__c``...) names its
external id field and its fields. Writes use the REST API ``/services/data/vXX.X``:

===============  =========================================================================
operation        requests
===============  =========================================================================
upsert (small)   ``PATCH /composite/sobjects/{SObject}/{ExternalIdField}`` with
                 ``{"allOrNone": false, "records": [...]}``, at most 200 records a call;
                 one UpsertResult per record, in request order
upsert (large)   Bulk API 2.0 ingest job when a write holds at least ``bulk_threshold``
                 records: ``POST /jobs/ingest``, ``PUT /jobs/ingest/{id}/batches`` (CSV),
                 ``PATCH /jobs/ingest/{id}`` ``{"state": "UploadComplete"}``, poll
                 ``GET /jobs/ingest/{id}``, then ``successfulResults/`` and
                 ``failedResults/`` (CSV) mapped back to rows by external id
delete (mirror)  ``GET /query?q=SELECT Id, Ext FROM SObject WHERE Ext IN (...)`` to find the
                 record ids, then ``DELETE /composite/sobjects?ids=...&allOrNone=false``
===============  =========================================================================

Authentication is OAuth 2 (refresh-token or client-credentials flow) against the login
host; ``instance_url`` comes from the token response. An expired session (401) refreshes
the token once and replays the call. ``REQUEST_LIMIT_EXCEEDED`` (403, the org's rolling
24-hour allocation) stops the run with rows pending rather than retrying hot.

httpx and the HTTP toolkit are imported when a client is first needed.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from conn.destination import (
    Capabilities,
    Destination,
    ObjectInfo,
    RateLimit,
    Rejection,
    WriteRequest,
    WriteResult,
)
from conn.errors import CheckFailed, ConfigError, ConnError, RetryLater
from conn.http import LazyClient
from conn.http.config import client_from_config, concurrency_schema, http_settings_schema

if TYPE_CHECKING:
    import httpx
    from conn.http import HttpClient

DEFAULT_LOGIN_URL = "https://login.salesforce.com"
#: Login hosts the client credentials flow does not support ("client credentials flow does
#: not support calls to login.salesforce.com or test.salesforce.com": use My Domain),
#: https://help.salesforce.com/s/articleView?id=000886201&type=1
GENERIC_LOGIN_HOSTS = frozenset({"login.salesforce.com", "test.salesforce.com"})
#: Largest Bulk API 2.0 upload: 100 MB per job's data
#: (https://developer.salesforce.com/docs/atlas.en-us.salesforce_app_limits_cheatsheet.meta/
#: salesforce_app_limits_cheatsheet/salesforce_app_limits_platform_bulkapi.htm); counted
#: in decimal megabytes, below both readings of "MB".
MAX_UPLOAD_BYTES = 100_000_000
DEFAULT_API_VERSION = "62.0"
#: Records per sObject Collections call (documented limit).
COLLECTION_LIMIT = 200
#: External id values per SOQL lookup (keeps the query URL well under its limit).
LOOKUP_CHUNK = 100
#: Sets a field to null in Bulk API CSV (an empty cell leaves the field unchanged).
BULK_NULL = "#N/A"
_NAME = r"^[A-Za-z][A-Za-z0-9_]*$"
#: Per-record status codes worth retrying on the next run.
_RETRYABLE_CODES = {"UNABLE_TO_LOCK_ROW", "SERVER_UNAVAILABLE", "REQUEST_RUNNING_TOO_LONG"}
#: Delete outcomes that mean "already gone".
_GONE_CODES = {"ENTITY_IS_DELETED", "INVALID_CROSS_REFERENCE_KEY"}
_TERMINAL = {"JobComplete", "Failed", "Aborted"}

_OBJECT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["external_id"],
    "properties": {
        "external_id": {"type": "string", "pattern": _NAME,
                        "description": "API name of the external id field (match key)"},
        "fields": {"type": "object",
                   "description": "field API name -> JSON Schema of its values",
                   "propertyNames": {"pattern": _NAME},
                   "additionalProperties": {"type": "object"}},
        "personal": {"type": "object", "additionalProperties": {"type": "string"},
                     "description": "field -> personal-data kind (email, phone, name...)"},
        "bulk_threshold": {"type": "integer", "minimum": 0, "default": 2000,
                           "description": "writes of at least this many records use Bulk "
                                          "API 2.0 (0: never)"},
        "bulk_batch_size": {"type": "integer", "minimum": 200, "maximum": 150_000,
                            "default": 10_000,
                            "description": "records per bulk ingest job"},
    },
}


def _cell(value: Any) -> Any:
    """A JSON value Salesforce accepts (dates as ISO 8601)."""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if type(value).__name__ == "Decimal":
        return float(value)
    return value


def _csv_cell(value: Any) -> str:
    if value is None:
        return BULK_NULL
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(_cell(value))


def _soql_literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _errors_text(errors: Sequence[Mapping[str, Any]]) -> str:
    parts = []
    for e in errors or []:
        code = e.get("statusCode") or e.get("errorCode") or "ERROR"
        fields = e.get("fields") or []
        where = f" [{', '.join(fields)}]" if fields else ""
        parts.append(f"{code}: {e.get('message', '')}{where}")
    return "; ".join(parts) or "rejected by Salesforce"


def _body(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return {"message": resp.text[:300]}


def _error_of(resp: httpx.Response) -> str:
    body = _body(resp)
    if isinstance(body, list):
        return _errors_text(body)
    if isinstance(body, dict):
        if "error" in body:
            return f"{body['error']}: {body.get('error_description', '')}"
        return _errors_text([body])
    return str(body)[:300]


class SalesforceDestination(LazyClient, Destination):
    """Upserts and deletes records of configured sObjects by their external id."""

    name: ClassVar[str] = "salesforce"
    #: What says where it writes (compared between runs; see Destination.target_identity).
    identity_keys: ClassVar[tuple[str, ...] | None] = ("instance_url",)
    description: ClassVar[str] = "Salesforce sObjects by external id (Collections, Bulk API 2.0)"
    config_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["client_id", "client_secret", "objects"],
        "properties": {
            "flow": {"enum": ["refresh_token", "client_credentials"],
                     "default": "refresh_token", "description": "OAuth 2 grant"},
            "login_url": {"type": "string", "default": DEFAULT_LOGIN_URL,
                          "description": "login host: login.salesforce.com, "
                                         "test.salesforce.com or your My Domain (the "
                                         "client_credentials flow needs My Domain)"},
            "client_id": {"type": "string", "minLength": 1, "secret": True,
                          "description": "connected app consumer key"},
            "client_secret": {"type": "string", "minLength": 1, "secret": True},
            "refresh_token": {"type": "string", "minLength": 1, "secret": True,
                              "description": "required for flow refresh_token"},
            "instance_url": {"type": "string",
                             "description": "override the token response's instance_url"},
            "api_version": {"type": "string", "pattern": r"^\d+\.\d$",
                            "default": DEFAULT_API_VERSION},
            "objects": {"type": "object", "minProperties": 1,
                        "propertyNames": {"pattern": _NAME},
                        "additionalProperties": _OBJECT_SCHEMA},
            "concurrency": concurrency_schema(default=2, maximum=25),
            "requests_per_second": {"type": "number", "exclusiveMinimum": 0, "default": 20},
            "daily_limit": {"type": "integer", "minimum": 1,
                            "description": "the org's API request allocation per 24 h"},
            "bulk_poll_interval": {"type": "number", "minimum": 0, "default": 5},
            "bulk_timeout": {"type": "number", "exclusiveMinimum": 0, "default": 1800},
            **http_settings_schema(timeout=60),
        },
    }

    def __init__(self, config: Mapping[str, Any] | None = None, *, instance: str = "",
                 project_dir: str | Path | None = None) -> None:
        super().__init__(config, instance=instance, project_dir=project_dir)
        for key in ("client_id", "client_secret", "objects"):
            if not self.config.get(key):
                raise ConfigError(f"salesforce: missing required setting {key!r}",
                                  path=f"config.{key}")
        if self.config.get("flow", "refresh_token") == "refresh_token" and \
                not self.config.get("refresh_token"):
            raise ConfigError("salesforce: flow 'refresh_token' needs 'refresh_token'",
                              path="config.refresh_token")
        if self.config.get("flow") == "client_credentials":
            host = urlsplit(self.config.get("login_url", DEFAULT_LOGIN_URL)).hostname or ""
            if host.lower() in GENERIC_LOGIN_HOSTS or not self.config.get("login_url"):
                raise ConfigError(
                    "salesforce: flow 'client_credentials' needs your org's My Domain URL "
                    "as login_url (e.g. https://acme.my.salesforce.com); Salesforce does "
                    "not support that flow on login.salesforce.com or test.salesforce.com "
                    "(help.salesforce.com article 000886201)", path="config.login_url")
        from conn import secrets

        secrets.register(self.config["client_secret"], self.config.get("refresh_token"))
        self._auth: Any = None
        self._instance_url: str | None = self.config.get("instance_url")
        self._objects: list[ObjectInfo] | None = None
        #: Sleep used between bulk polls (tests replace it).
        self.sleep: Callable[[float], None] = time.sleep
        #: Largest CSV one bulk job uploads; larger writes use several jobs (tests lower it).
        self.max_upload_bytes = MAX_UPLOAD_BYTES

    # -- configuration ---------------------------------------------------------------------

    @property
    def api_path(self) -> str:
        """``/services/data/vXX.X``."""
        return f"/services/data/v{self.config.get('api_version', DEFAULT_API_VERSION)}"

    def rate_limit(self) -> RateLimit:
        """Client-side pacing plus the org's daily allocation when configured."""
        daily = self.config.get("daily_limit")
        rps = float(self.config.get("requests_per_second", 20))
        requests = max(1, round(rps))
        return RateLimit(requests=requests, per_seconds=requests / rps, burst=5,
                         daily=int(daily) if daily else None)

    def _object_config(self, name: str) -> Mapping[str, Any]:
        return self.config["objects"][name]

    def objects(self) -> list[ObjectInfo]:
        """One object per configured sObject; its identifier is the external id field."""
        if self._objects is not None:
            return self._objects
        out = []
        for name, spec in self.config["objects"].items():
            ext = spec["external_id"]
            props: dict[str, Any] = {ext: {"type": "string",
                                           "description": f"external id field of {name}"}}
            for field_name, field_schema in (spec.get("fields") or {}).items():
                props[field_name] = dict(field_schema)
            threshold = int(spec.get("bulk_threshold", 2000))
            batch_size = (max(COLLECTION_LIMIT, int(spec.get("bulk_batch_size", 10_000)))
                          if threshold else COLLECTION_LIMIT)
            caps = Capabilities(batch_size=batch_size, modes=frozenset({"upsert", "mirror"}),
                                supports_delete=True, rate_limit=self.rate_limit(),
                                concurrency=int(self.config.get("concurrency", 2)))
            schema = {"type": "object", "title": f"Salesforce {name}", "properties": props,
                      "required": [ext]}
            out.append(ObjectInfo(name, schema, (ext,), caps, dict(spec.get("personal") or {}),
                                  description=f"Salesforce sObject {name} upserted by {ext}"))
        self._objects = out
        return out

    # -- HTTP ------------------------------------------------------------------------------

    def _on_token(self, body: Mapping[str, Any]) -> None:
        if not self.config.get("instance_url") and body.get("instance_url"):
            self._instance_url = str(body["instance_url"]).rstrip("/")

    def _make_auth(self) -> Any:
        from conn.http import OAuth2ClientCredentials, OAuth2RefreshToken

        token_url = self.config.get("login_url", DEFAULT_LOGIN_URL).rstrip("/") + \
            "/services/oauth2/token"
        if self.config.get("flow") == "client_credentials":
            return OAuth2ClientCredentials(token_url, self.config["client_id"],
                                           self.config["client_secret"],
                                           on_token=self._on_token)
        return OAuth2RefreshToken(token_url, self.config["refresh_token"],
                                  self.config["client_id"], self.config["client_secret"],
                                  on_token=self._on_token)

    def make_client(self) -> HttpClient:
        """The client for ``{instance_url}/services/data/vXX.X``, made on first use (that
        fetches a token, which tells the instance URL)."""
        self._auth = self._auth or self._make_auth()
        if not self._instance_url:
            self._auth.token()
        if not self._instance_url:
            raise CheckFailed("Salesforce token response has no instance_url; "
                              "set instance_url in the config")
        return client_from_config(
            self.config,
            self._instance_url + self.api_path + "/",
            auth=self._auth, headers={"Accept": "application/json"},
            timeout=60,
            rate_limit=self.rate_limit(),
            name=self.instance,
        )

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A request with retries; raise for credentials and the daily allocation."""
        resp = self.client.request(method, path, **kwargs)
        if resp.status_code == 401:
            raise ConnError(f"Salesforce refused the session after a token refresh: "
                            f"{_error_of(resp)}")
        if resp.status_code == 403:
            text = _error_of(resp)
            if "REQUEST_LIMIT_EXCEEDED" in text:
                raise RetryLater(f"Salesforce API request limit reached ({text}); the "
                                 "allocation is a rolling 24 h window. Rows stay pending.")
            raise ConnError(f"Salesforce denied {method} {path}: {text}")
        return resp

    # -- check -----------------------------------------------------------------------------

    def check(self) -> None:
        """Get a token and ``GET /services/data/vXX.X/limits`` (one cheap call, one
        attempt: a check should answer at once)."""
        from conn.http import NO_RETRY

        try:
            resp = self._call("GET", "limits", retry=NO_RETRY)
        except CheckFailed:
            raise
        except ConnError as exc:
            raise CheckFailed(f"Salesforce check failed: {getattr(exc, 'reason', exc)}") \
                from None
        if resp.status_code >= 400:
            raise CheckFailed(f"Salesforce check failed (HTTP {resp.status_code}): "
                              f"{_error_of(resp)}")

    # -- request building ------------------------------------------------------------------

    def _records(self, request: WriteRequest) -> list[dict[str, Any]]:
        name = request.object.name
        return [{"attributes": {"type": name}, **{k: _cell(v) for k, v in row.items()}}
                for row in request.to_pylist()]

    def _upsert_path(self, request: WriteRequest) -> str:
        ext = self._object_config(request.object.name)["external_id"]
        return f"composite/sobjects/{request.object.name}/{ext}"

    def _use_bulk(self, request: WriteRequest) -> bool:
        threshold = int(self._object_config(request.object.name).get("bulk_threshold", 2000))
        return bool(threshold) and len(request) >= threshold

    def _job_body(self, request: WriteRequest) -> dict[str, Any]:
        return {"object": request.object.name, "operation": "upsert",
                "externalIdFieldName": self._object_config(request.object.name)["external_id"],
                "contentType": "CSV", "lineEnding": "LF", "columnDelimiter": "COMMA"}

    @staticmethod
    def _csv_lines(request: WriteRequest) -> tuple[bytes, list[bytes]]:
        """The CSV header and one encoded line per record (LF line ends)."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(request.records.schema.names)
        header = buf.getvalue().encode()
        lines = []
        for row in request.to_pylist():
            buf.seek(0)
            buf.truncate()
            w.writerow([_csv_cell(v) for v in row.values()])
            lines.append(buf.getvalue().encode())
        return header, lines

    @classmethod
    def _csv(cls, request: WriteRequest) -> str:
        header, lines = cls._csv_lines(request)
        return b"".join([header, *lines]).decode()

    def _csv_parts(self, header: bytes, lines: list[bytes]
                   ) -> Iterator[tuple[list[int], bytes | str]]:
        """Split the records into uploads of at most ``max_upload_bytes`` (header
        included): ``(row indices, CSV)``; a record too large on its own comes as
        ``([index], reason)``."""
        limit = self.max_upload_bytes
        rows: list[int] = []
        size = len(header)
        for i, line in enumerate(lines):
            if len(header) + len(line) > limit:
                if rows:
                    yield rows, b"".join([header, *(lines[r] for r in rows)])
                    rows, size = [], len(header)
                yield [i], (f"record is {len(line):,} bytes as CSV; a Bulk API 2.0 upload "
                            f"holds at most {limit:,}")
                continue
            if size + len(line) > limit:
                yield rows, b"".join([header, *(lines[r] for r in rows)])
                rows, size = [], len(header)
            rows.append(i)
            size += len(line)
        if rows:
            yield rows, b"".join([header, *(lines[r] for r in rows)])

    def _lookup_query(self, request: WriteRequest, values: Sequence[str]) -> str:
        ext = request.match_key
        literals = ",".join(_soql_literal(v) for v in values)
        return f"SELECT Id, {ext} FROM {request.object.name} WHERE {ext} IN ({literals})"

    def describe_requests(self, request: WriteRequest) -> list[dict[str, Any]]:
        """The calls :meth:`write_batch` would make, with the OAuth header masked (the
        instance URL shown is the configured one or a placeholder; no token is fetched)."""
        from conn.http.dry_run import describe

        base = (self._instance_url or "https://instance-url-from-token-response") + \
            self.api_path + "/"
        headers = {"Authorization": "Bearer ***"}
        out: list[dict[str, Any]] = []
        if request.operation == "delete":
            values = [str(v) for v in request.records.column(0).to_pylist() if v is not None]
            for i in range(0, len(values), LOOKUP_CHUNK):
                q = self._lookup_query(request, values[i:i + LOOKUP_CHUNK])
                d = describe("GET", "query?" + _urlencode({"q": q}), headers=headers,
                             base_url=base)
                d["query"] = q
                out.append(d)
            out.append(describe("DELETE", "composite/sobjects?ids=<Ids found>&allOrNone=false",
                                headers=headers, base_url=base))
            return out
        if self._use_bulk(request):
            out.append(describe("POST", "jobs/ingest", json=self._job_body(request),
                                headers=headers, base_url=base))
            d = describe("PUT", "jobs/ingest/<jobId>/batches",
                         headers={**headers, "Content-Type": "text/csv"}, base_url=base)
            d["body"] = self._csv(request)
            out.append(d)
            out.append(describe("PATCH", "jobs/ingest/<jobId>",
                                json={"state": "UploadComplete"}, headers=headers,
                                base_url=base))
            return out
        records = self._records(request)
        for i in range(0, len(records), COLLECTION_LIMIT):
            out.append(describe("PATCH", self._upsert_path(request),
                                json={"allOrNone": False,
                                      "records": records[i:i + COLLECTION_LIMIT]},
                                headers=headers, base_url=base))
        return out

    # -- writing ---------------------------------------------------------------------------

    def write_batch(self, request: WriteRequest) -> WriteResult:
        """Upsert (Collections or Bulk API 2.0) or delete; see the module docstring."""
        from conn.http import write_in_chunks, write_with_split

        if request.operation == "delete":
            return self._delete(request)
        if self._use_bulk(request):
            return self._bulk_upsert(request)
        path = self._upsert_path(request)
        records = self._records(request)

        def chunk(items: Sequence[dict[str, Any]]) -> WriteResult:
            return write_with_split(items, lambda part: self._collections_upsert(path, part))

        return write_in_chunks(records, COLLECTION_LIMIT, chunk)

    def _collections_upsert(self, path: str, records: Sequence[dict[str, Any]]) -> WriteResult:
        from conn.http import BatchRejected

        resp = self._call("PATCH", path, json={"allOrNone": False, "records": list(records)})
        if resp.status_code >= 400:
            raise BatchRejected(f"HTTP {resp.status_code}: {_error_of(resp)}",
                                retryable=False, status=resp.status_code)
        results = _body(resp)
        if not isinstance(results, list) or len(results) != len(records):
            got = len(results) if isinstance(results, list) else "no"
            raise ConnError(f"Salesforce returned {got} results for {len(records)} records")
        out = WriteResult()
        for i, res in enumerate(results):
            if not res.get("success"):
                errs = res.get("errors") or []
                retry = any(e.get("statusCode") in _RETRYABLE_CODES for e in errs)
                out.rejected.append(Rejection(i, _errors_text(errs), retryable=retry))
        return out

    # -- Bulk API 2.0 ----------------------------------------------------------------------

    def _bulk_upsert(self, request: WriteRequest) -> WriteResult:
        """One Bulk API 2.0 job per upload of at most ``max_upload_bytes``; after a job
        fails, its rows and those of the jobs not started stay pending."""
        header, lines = self._csv_lines(request)
        result = WriteResult()
        failed = False
        for rows, payload in self._csv_parts(header, lines):
            if isinstance(payload, str):
                result.rejected.append(Rejection(rows[0], payload, retryable=False))
                continue
            if failed:
                result.pending.extend(rows)
                continue
            try:
                result.extend(self._bulk_job(request, rows, payload))
            except Exception as exc:
                result.pending.extend(rows)
                result.error = result.error or exc
                failed = True
        result.rejected.sort(key=lambda r: r.index)
        result.pending.sort()
        return result

    def _bulk_job(self, request: WriteRequest, rows: list[int], payload: bytes) -> WriteResult:
        """Create, fill, close and follow one ingest job for the records ``rows``."""
        from conn.http import excerpt

        resp = self._call("POST", "jobs/ingest", json=self._job_body(request))
        if resp.status_code >= 400:
            raise ConnError(f"Salesforce bulk job creation failed: {_error_of(resp)}")
        job = _body(resp)
        job_id = str(job["id"])
        resp = self._call("PUT", f"jobs/ingest/{job_id}/batches", content=payload,
                          headers={"Content-Type": "text/csv"})
        if resp.status_code >= 400:
            self._call("PATCH", f"jobs/ingest/{job_id}", json={"state": "Aborted"})
            raise ConnError(f"Salesforce bulk upload failed: {_error_of(resp)}")
        resp = self._call("PATCH", f"jobs/ingest/{job_id}", json={"state": "UploadComplete"})
        if resp.status_code >= 400:
            raise ConnError(f"Salesforce bulk job close failed: {_error_of(resp)}")
        info = self._poll(job_id)
        key = request.match_key
        keys = request.records.column(key).to_pylist()
        index: dict[str, list[int]] = {}
        for i in rows:
            index.setdefault(str(keys[i]), []).append(i)
        done: set[int] = set()
        result = WriteResult()
        for row in self._results_csv(job_id, "successfulResults"):
            done.update(index.get(row.get(key, ""), []))
        for row in self._results_csv(job_id, "failedResults"):
            reason = row.get("sf__Error") or "rejected by Salesforce"
            for i in index.get(row.get(key, ""), []):
                if i not in done:
                    done.add(i)
                    code = reason.split(":", 1)[0]
                    # The exchange: the job's failedResults download, this row of it.
                    result.rejected.append(Rejection(i, reason, code in _RETRYABLE_CODES,
                                                     excerpt=excerpt(row)))
        missing = [i for i in rows if i not in done]
        if missing:
            result.pending = missing
            result.error = RetryLater(
                f"Salesforce bulk job {job_id} ended {info.get('state')} "
                f"({info.get('errorMessage') or 'records unprocessed'}); "
                f"{len(missing)} row(s) stay pending")
        return result

    def _poll(self, job_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + float(self.config.get("bulk_timeout", 1800))
        interval = float(self.config.get("bulk_poll_interval", 5))
        while True:
            resp = self._call("GET", f"jobs/ingest/{job_id}")
            if resp.status_code >= 400:
                raise ConnError(f"Salesforce bulk job {job_id} status failed: "
                                f"{_error_of(resp)}")
            info = _body(resp)
            if info.get("state") in _TERMINAL:
                return info
            if time.monotonic() >= deadline:
                raise RetryLater(f"Salesforce bulk job {job_id} still {info.get('state')} "
                                 "after bulk_timeout; its rows stay pending (upserts are "
                                 "idempotent, resending is safe)")
            self.sleep(interval)

    def _results_csv(self, job_id: str, kind: str) -> list[dict[str, str]]:
        resp = self._call("GET", f"jobs/ingest/{job_id}/{kind}/",
                          headers={"Accept": "text/csv"})
        if resp.status_code >= 400:
            raise ConnError(f"Salesforce bulk job {job_id} {kind} failed: {_error_of(resp)}")
        return list(csv.DictReader(io.StringIO(resp.text)))

    # -- mirror mode: delete ---------------------------------------------------------------

    def _find_ids(self, request: WriteRequest, values: list[str]) -> dict[str, str]:
        """External id value -> record Id, by SOQL (values the org lacks are absent)."""
        ext = request.match_key
        found: dict[str, str] = {}
        for i in range(0, len(values), LOOKUP_CHUNK):
            resp = self._call("GET", "query",
                              params={"q": self._lookup_query(request,
                                                              values[i:i + LOOKUP_CHUNK])})
            while True:
                if resp.status_code >= 400:
                    raise ConnError(f"Salesforce lookup by {ext} failed: {_error_of(resp)}")
                body = _body(resp)
                for rec in body.get("records") or []:
                    if rec.get(ext) is not None:
                        found[str(rec[ext])] = str(rec["Id"])
                nxt = body.get("nextRecordsUrl")
                if body.get("done", True) or not nxt:
                    break
                prefix = self.api_path + "/"
                resp = self._call("GET", nxt[len(prefix):] if nxt.startswith(prefix) else nxt)
        return found

    def _delete(self, request: WriteRequest) -> WriteResult:
        from conn.http import chunked, excerpt

        values = [None if v is None else str(v)
                  for v in request.records.column(0).to_pylist()]
        found = self._find_ids(request, sorted({v for v in values if v is not None}))
        by_id: dict[str, list[int]] = {}
        for i, v in enumerate(values):
            if v in found:
                by_id.setdefault(found[v], []).append(i)
        result = WriteResult()
        ids = list(by_id)
        for offset, part in chunked(ids, COLLECTION_LIMIT):
            try:
                resp = self._call("DELETE", "composite/sobjects",
                                  params={"ids": ",".join(part), "allOrNone": "false"})
            except Exception as exc:
                for rid in ids[offset:]:
                    result.pending.extend(by_id[rid])
                result.error = exc
                break
            if resp.status_code >= 400:
                reason = f"HTTP {resp.status_code}: {_error_of(resp)}"
                for rid in part:
                    result.rejected.extend(Rejection(i, reason, True,
                                                     excerpt=excerpt({"id": rid}))
                                           for i in by_id[rid])
                continue
            for rid, res in zip(part, _body(resp), strict=False):
                errs = res.get("errors") or []
                if res.get("success") or all(e.get("statusCode") in _GONE_CODES for e in errs):
                    continue
                retry = any(e.get("statusCode") in _RETRYABLE_CODES for e in errs)
                result.rejected.extend(Rejection(i, _errors_text(errs), retry,
                                                 excerpt=excerpt({"id": rid}))
                                       for i in by_id[rid])
        result.rejected.sort(key=lambda r: r.index)
        result.pending.sort()
        return result


def _urlencode(params: Mapping[str, str]) -> str:
    from urllib.parse import urlencode

    return urlencode(params)
