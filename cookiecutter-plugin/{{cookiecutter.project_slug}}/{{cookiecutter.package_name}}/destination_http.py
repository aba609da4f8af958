"""The ``{{ cookiecutter.type_name }}`` destination: writes objects to the
{{ cookiecutter.plugin_name }} HTTP API.

API contract assumed by this template (adapt ``write_batch`` and ``check`` to the
vendor's documentation):

- ``GET {base_url}/`` answers 2xx when the credentials are good (401/403 otherwise);
- ``POST {base_url}/<object>/batch`` takes ``{"operation": "upsert" | "delete",
  "records": [...]}`` (at most ``batch_size`` records) and answers
  ``{"errors": [{"index": i, "message": "..."}]}`` for the records it refused, or 4xx
  for a batch it refuses as a whole.

Rate limiting, retries (429, 5xx, timeouts) and secret redaction come from
:class:`conn.http.HttpClient`; a whole-batch refusal is split to isolate the bad records
with :func:`conn.http.write_with_split`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

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
{%- if cookiecutter.__auth == 'bearer' %}
from conn.http import BatchRejected, BearerToken, HttpClient, LazyClient, write_with_split
{%- elif cookiecutter.__auth == 'basic' %}
from conn.http import BasicAuth, BatchRejected, HttpClient, LazyClient, write_with_split
{%- elif cookiecutter.__auth == 'oauth2' %}
from conn.http import (
    BatchRejected,
    HttpClient,
    LazyClient,
    OAuth2RefreshToken,
    write_with_split,
)
{%- else %}
from conn.http import BatchRejected, HttpClient, LazyClient, write_with_split
{%- endif %}

#: The vendor's documented request budget (adjust to the API's limits).
RATE_LIMIT = RateLimit(requests=20, per_seconds=1.0, burst=20)
#: Most records one batch request may carry (the API's limit).
MAX_BATCH = 100


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
                            rate_limit=RATE_LIMIT)
        return [ObjectInfo.from_package(__package__, name, caps)
                for name in packaged_object_names(__package__)]

    def check(self) -> None:
        try:
            resp = self.client.get("/")
        except RetryLater as exc:
            raise CheckFailed(f"destination {self.instance!r}: {exc}") from None
        if resp.status_code in (401, 403):
            raise CheckFailed(f"destination {self.instance!r}: credentials refused (HTTP "
                              f"{resp.status_code}); check the settings of this destination")
        if resp.status_code >= 400:
            raise CheckFailed(f"destination {self.instance!r}: HTTP {resp.status_code} from "
                              f"{self.config['base_url']}")

    def _body(self, request: WriteRequest, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
        operation = "delete" if request.operation == "delete" else "upsert"
        return {"operation": operation, "records": list(records)}

    def write_batch(self, request: WriteRequest) -> WriteResult:
        if request.dry_run:
            return WriteResult.ok()
        path = f"/{request.object.name}/batch"

        def send(records: Sequence[dict[str, Any]]) -> dict[int, str]:
            """One request; returns ``{index: reason}`` for the records refused."""
            resp = self.client.post(path, json=self._body(request, records))
            if 400 <= resp.status_code < 500:
                raise BatchRejected(_message(resp), status=resp.status_code)
            self.client.raise_for_status(resp)
            errors = (_json(resp) or {}).get("errors") or []
            return {int(e["index"]): str(e.get("message") or "rejected") for e in errors}

        return write_with_split(request.to_pylist(), send)

    def describe_requests(self, request: WriteRequest) -> list[dict[str, Any]]:
        path = f"/{request.object.name}/batch"
        return [self.client.describe("POST", path, json=self._body(request,
                                                                    request.to_pylist()))]


def _json(resp: Any) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None


def _message(resp: Any) -> str:
    body = _json(resp)
    if isinstance(body, Mapping) and body.get("message"):
        return f"HTTP {resp.status_code}: {body['message']}"
    return f"HTTP {resp.status_code}: {resp.text[:200]}"
