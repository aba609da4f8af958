"""Meta's facebook-business SDK as the reference for this plugin's requests (test helper).

* :func:`sdk_request` makes the SDK send the same call (``CustomAudience.create_user`` /
  ``delete_users``, whose ``param_types`` name the accepted parameters) through a
  ``requests`` adapter that records instead of sending;
* :func:`request_errors` compares one of our requests with it: method, path, where the
  parameters travel (POST: form body; DELETE: query string), their names and their
  JSON-decoded values (the random ``session_id`` and the token aside);
* :func:`sdk_hashes` is the SDK's normalisation and hashing of multi-key rows
  (``CustomAudience.format_params(..., is_raw=True)``), the oracle for both hashing paths.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests
from facebook_business.adobjects.customaudience import CustomAudience
from facebook_business.api import FacebookAdsApi

TOKEN = "EAAspec-oracle-token"
DOCUMENTED = {
    "token_out_of_urls": (
        "the SDK sends access_token in the query string; conn sends it in the POST form "
        "or the Authorization header, so no URL (which HTTP libraries log) holds it",
        "https://developers.facebook.com/docs/graph-api/overview#access-tokens"),
}


class _Recorder(requests.adapters.BaseAdapter):
    def __init__(self) -> None:
        super().__init__()
        self.sent: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        self.sent.append(request)
        resp = requests.Response()
        resp.status_code, resp._content = 200, b'{"audience_id": "1", "num_received": 0}'
        resp.headers["Content-Type"] = "application/json"
        resp.request, resp.url = request, request.url or ""
        return resp

    def close(self) -> None:
        pass


def _decoded(pairs: Sequence[tuple[str, str]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        try:
            out[k] = json.loads(v) if k in ("payload", "session") else v
        except ValueError:
            out[k] = v
    return out


def sdk_request(method: str, audience_id: str, params: Mapping[str, Any],
                version: str = "v25.0") -> dict[str, Any]:
    """The request facebook-business sends: method, path, query and form parameters."""
    api = FacebookAdsApi.init(access_token=TOKEN, api_version=version, crash_log=False)
    recorder = _Recorder()
    api._session.requests.mount("https://", recorder)
    audience = CustomAudience(audience_id, api=api)
    if method == "POST":
        audience.create_user(params=dict(params))
    else:
        audience.delete_users(params=dict(params))
    (r,) = recorder.sent
    url = urlsplit(r.url or "")
    body = r.body.decode() if isinstance(r.body, bytes) else (r.body or "")
    return {"method": r.method, "path": url.path,
            "query": _decoded(parse_qsl(url.query, keep_blank_values=True)),
            "form": _decoded(parse_qsl(body, keep_blank_values=True))}


def _plain(params: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in params.items() if k != "access_token"}
    if isinstance(out.get("session"), dict):
        out["session"] = {k: v for k, v in out["session"].items() if k != "session_id"}
    return out


def request_errors(method: str, path: str, query: Mapping[str, Any],
                   form: Mapping[str, Any]) -> list[str]:
    """Departures of one users-edge request (parameters decoded) from the SDK's."""
    audience = path.strip("/").split("/")[1]
    ours = {**query, **form}
    session = dict(ours.get("session") or {})
    ref = sdk_request(method, audience, {"payload": ours.get("payload"), "session": session},
                      version=path.strip("/").split("/")[0])
    errors = []
    if (ref["method"], ref["path"]) != (method, path):
        errors.append(f"{method} {path}: the SDK sends {ref['method']} {ref['path']}")
    if _plain(ref["query"]) != _plain(query):
        errors.append(f"{method} {path}: query {sorted(_plain(query))}, the SDK's "
                      f"{sorted(_plain(ref['query']))}")
    if _plain(ref["form"]) != _plain(form):
        errors.append(f"{method} {path}: form {sorted(_plain(form))}, the SDK's "
                      f"{sorted(_plain(ref['form']))}")
    if not isinstance(session.get("session_id"), int):
        errors.append(f"{method} {path}: session_id is not an integer")
    if "access_token" in query:
        errors.append(f"{method} {path}: {DOCUMENTED['token_out_of_urls'][0]}")
    return errors


def sdk_hashes(schema: list[str], rows: list[list[str]]) -> list[list[str]]:
    """facebook-business's normalised SHA-256 of multi-key rows (EXTERN_ID unhashed)."""
    return CustomAudience.format_params(schema, rows, is_raw=True)["payload"]["data"]
