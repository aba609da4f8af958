"""The ``{{ cookiecutter.type_name }}`` destination: writes objects to the
{{ cookiecutter.plugin_name }} HTTP API.

API contract assumed by this template (adapt ``write_batch`` and ``check`` to the
vendor's documentation):

- ``GET {base_url}/`` answers 2xx when the credentials are good (401/403 otherwise);
- ``POST {base_url}/<object>/batch`` takes ``{"operation": "upsert", "records": [...]}``
  (at most ``batch_size`` records) and answers ``{"errors": [{"index": i, "message":
  "..."}]}`` for the records it refused, or 4xx for a batch it refuses as a whole;
- ``DELETE {base_url}/<object>/{id}`` deletes one record (404: already gone);
- ``POST {base_url}/<object>/{id}/erase`` erases the person permanently, the vendor's
  erasure API (404: nothing left to erase).

Rate limiting, retries (429, 5xx, timeouts) and secret redaction come from
:class:`conn.http.HttpClient`; a whole-batch refusal is split to isolate the bad records
with :func:`conn.http.write_with_split`; deletes and erasures (``conn forget``) go one
request per record with :func:`conn.http.write_each`. Refused credentials are not a bad
batch: they raise, so the run stops with its rows pending (rejected rows would not be sent
again until they change).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import quote

from conn import secrets
from conn.destination import (
    Capabilities,
    Destination,
    ObjectInfo,
    RateLimit,
    WriteRequest,
    WriteResult,
    packaged_object_names,
)
from conn.errors import CheckFailed, RetryLater
from conn.http import (
    NO_RETRY,
{%- if cookiecutter.__auth == 'basic' %}
    BasicAuth,
{%- endif %}
    BatchRejected,
{%- if cookiecutter.__auth == 'bearer' %}
    BearerToken,
{%- endif %}
    HttpClient,
    LazyClient,
{%- if cookiecutter.__auth == 'oauth2' %}
    OAuth2RefreshToken,
{%- endif %}
    StillFailing,
    body_excerpt,
    write_each,
    write_with_split,
)

#: The vendor's documented request budget (adjust to the API's limits).
RATE_LIMIT = RateLimit(requests=20, per_seconds=1.0, burst=20)
#: Most records one batch request may carry (the API's limit).
MAX_BATCH = 100
#: The vendor's erasure API, for ``conn forget`` (GDPR Art. 17). When the vendor documents
#: one (a permanent or "GDPR" delete), name it here and cite its page: the objects declare
#: it (``Capabilities(erasure=...)``) and ``write_batch`` receives ``erase`` requests that
#: hold only the match key, like deletes. A key the vendor no longer holds must count as
#: erased (a second erase must not fail). When the vendor has no erasure API, set
#: ``ERASURE = ""``: ``conn forget`` then sends ``delete`` (say in the README whether that
#: delete archives, soft-deletes or removes for good).
ERASURE = "{{ cookiecutter.plugin_name }} POST /<object>/{id}/erase"


class {{ cookiecutter.class_name }}(LazyClient, Destination):
    """Writes records to {{ cookiecutter.plugin_name }} in batches of at most
    ``batch_size``."""

    name: ClassVar[str] = "{{ cookiecutter.type_name }}"
    description: ClassVar[str] = "{{ cookiecutter.description }}"
    config_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "required": [
            "base_url",
{%- if cookiecutter.__auth == 'bearer' %}
            "token",
{%- elif cookiecutter.__auth == 'basic' %}
            "username",
            "password",
{%- elif cookiecutter.__auth == 'oauth2' %}
            "token_url",
            "client_id",
            "client_secret",
            "refresh_token",
{%- endif %}
        ],
        "properties": {
            "base_url": {"type": "string", "pattern": "^https?://",
                         "description": "API root, e.g. https://api.example.com/v1"},
{%- if cookiecutter.__auth == 'bearer' %}
            "token": {"type": "string", "minLength": 1, "secret": True,
                      "description": "API token; use ${ENV_VAR} in conn.yml"},
{%- elif cookiecutter.__auth == 'basic' %}
            "username": {"type": "string", "minLength": 1},
            "password": {"type": "string", "minLength": 1, "secret": True,
                         "description": "use ${ENV_VAR} in conn.yml"},
{%- elif cookiecutter.__auth == 'oauth2' %}
            "token_url": {"type": "string", "pattern": "^https?://"},
            "client_id": {"type": "string", "minLength": 1},
            "client_secret": {"type": "string", "minLength": 1, "secret": True},
            "refresh_token": {"type": "string", "minLength": 1, "secret": True},
{%- endif %}
            "batch_size": {"type": "integer", "minimum": 1, "maximum": MAX_BATCH,
                           "default": MAX_BATCH},
            "timeout": {"type": "number", "exclusiveMinimum": 0, "default": 30},
        },
    }

    def make_client(self) -> HttpClient:
        """The HTTP client, made on first use and shared by every worker
        (:class:`conn.http.LazyClient` holds it and closes it with the destination)."""
        return HttpClient(
            str(self.config["base_url"]).rstrip("/"),
{%- if cookiecutter.__auth == 'bearer' %}
            auth=BearerToken(self.config["token"]),
{%- elif cookiecutter.__auth == 'basic' %}
            auth=BasicAuth(self.config["username"], self.config["password"]),
{%- elif cookiecutter.__auth == 'oauth2' %}
            auth=OAuth2RefreshToken(self.config["token_url"], self.config["refresh_token"],
                                    self.config["client_id"], self.config["client_secret"]),
{%- endif %}
            timeout=float(self.config.get("timeout", 30)),
            rate_limit=RATE_LIMIT,
            name=self.instance,
        )

    def objects(self) -> list[ObjectInfo]:
        """One object per ``objects/<name>.schema.json`` of this package (fields,
        ``x-identifiers``, ``x-personal``), all with the same capabilities."""
        caps = Capabilities(batch_size=int(self.config.get("batch_size", MAX_BATCH)),
                            modes=frozenset({"upsert", "mirror"}), supports_delete=True,
                            rate_limit=RATE_LIMIT, erasure=ERASURE)
        return [ObjectInfo.from_package(__package__, name, caps)
                for name in packaged_object_names(__package__)]

    def check(self) -> None:
        """One cheap authenticated call, not retried: a check answers at once."""
        base_url = self.config["base_url"]
        try:
            resp = self.client.get("/", retry=NO_RETRY)
        except RetryLater as exc:  # no answer (StillFailing), or no token from token_url
            reason = exc.reason if isinstance(exc, StillFailing) else str(exc)
            raise CheckFailed(f"destination {self.instance!r}: {base_url} does not answer "
                              f"({reason})") from None
        if resp.status_code in (401, 403):
            raise CheckFailed(f"destination {self.instance!r}: {base_url} refused the "
                              f"credentials (HTTP {resp.status_code}); check the settings of "
                              "this destination")
        if resp.status_code >= 400:
            raise CheckFailed(f"destination {self.instance!r}: HTTP {resp.status_code} from "
                              f"{base_url}: {body_excerpt(resp, 200)}")

    def _stop_on_refusal(self, resp: Any) -> None:
        """Credentials refused (401, 403) or an endpoint that is not there (404 on a
        batch): no record is at fault, so raise: the run stops, the rows stay pending."""
        if resp.status_code in (401, 403, 404):
            raise CheckFailed(f"destination {self.instance!r}: {_message(resp)} for "
                              f"{resp.request.method} {resp.request.url.path}; the rows "
                              "stay pending: fix the settings and run the sync again")

    def _path(self, request: WriteRequest, record: dict[str, Any] | None = None) -> str:
        if record is None:
            return f"/{request.object.name}/batch"
        path = f"/{request.object.name}/{quote(str(record[request.match_key]), safe='')}"
        return path + "/erase" if request.operation == "erase" else path

    def write_batch(self, request: WriteRequest) -> WriteResult:
        if request.dry_run:
            return WriteResult.ok()
        if request.operation in ("delete", "erase"):
            return write_each(request.to_pylist(), lambda r: self._delete(request, r))

        def send(records: Sequence[dict[str, Any]]) -> dict[int, str]:
            """One request; returns ``{index: reason}`` for the records refused."""
            resp = self.client.post(self._path(request),
                                    json={"operation": "upsert", "records": list(records)})
            self._stop_on_refusal(resp)
            if 400 <= resp.status_code < 500:  # the batch as a whole: split it
                raise BatchRejected(_message(resp), status=resp.status_code)
            self.client.raise_for_status(resp)
            errors = (_json(resp) or {}).get("errors") or []
            return {int(e["index"]): str(e.get("message") or "rejected") for e in errors}

        return write_with_split(request.to_pylist(), send)

    def _delete(self, request: WriteRequest, record: dict[str, Any]) -> str | None:
        """One ``DELETE`` (or, for ``erase``, one ``POST .../erase``): None when the
        record is gone (404: it already was, which for an erasure is the outcome asked
        for), else the API's reason for refusing it."""
        if request.operation == "erase":
            resp = self.client.post(self._path(request, record))
        else:
            resp = self.client.delete(self._path(request, record))
        if resp.status_code == 404 or resp.status_code < 300:
            return None
        self._stop_on_refusal(resp)
        if resp.status_code < 500:
            return _message(resp)
        self.client.raise_for_status(resp)
        return None

    def describe_requests(self, request: WriteRequest) -> list[dict[str, Any]]:
        records = request.to_pylist()
        if request.operation in ("delete", "erase"):
            method = "POST" if request.operation == "erase" else "DELETE"
            return [self.client.describe(method, self._path(request, r)) for r in records]
        return [self.client.describe("POST", self._path(request),
                                     json={"operation": "upsert", "records": records})]


def _json(resp: Any) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None


def _message(resp: Any) -> str:
    body = _json(resp)
    if isinstance(body, Mapping) and body.get("message"):
        return secrets.redact(f"HTTP {resp.status_code}: {body['message']}")
    return f"HTTP {resp.status_code}: {body_excerpt(resp, 200)}"
