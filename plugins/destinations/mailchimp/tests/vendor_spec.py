"""Mailchimp's own client and documents, as a test helper.

``mailchimp-marketing`` (Mailchimp's official Python client, generated from their API
definition) carries no body models, but it knows every operation: for each request this
plugin sends, :func:`request_errors` makes the official client build the same operation
(its transport replaced by a recorder) and compares method, path, query parameter names,
auth scheme and body. Body contents are then checked against the rules Mailchimp
publishes in documents, listed in :data:`DOCUMENTED` with their URLs.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

import mailchimp_marketing

MEMBERS = "https://mailchimp.com/developer/marketing/api/list-members/"
DOCUMENTED = {
    "merge_values": ("merge field values are strings, numbers or address objects (no "
                     "booleans)", "https://mailchimp.com/developer/marketing/docs/merge-fields/"),
    "status": ("status / status_if_new is one of subscribed, unsubscribed, cleaned, "
               "pending, transactional", MEMBERS),
    "member_types": ("email_address a string; email_type html or text; vip a boolean; "
                     "language, ip_* and timestamp_* strings; tags a list of strings", MEMBERS),
    "batch": ("batch subscribe: at most 500 members, update_existing a boolean",
              "https://mailchimp.com/developer/marketing/api/lists/"
              "batch-subscribe-or-unsubscribe/"),
    "tags": ("member tags: {'tags': [{'name': str, 'status': 'active' | 'inactive'}]}",
             "https://mailchimp.com/developer/marketing/api/list-member-tags/"),
    "auth": ("HTTP Basic auth with the API key as password",
             "https://mailchimp.com/developer/marketing/docs/fundamentals/"),
}
STATUSES = {"subscribed", "unsubscribed", "cleaned", "pending", "transactional"}
PLAIN = {"email_address": str, "status": str, "status_if_new": str, "email_type": str,
         "language": str, "vip": bool, "ip_signup": str, "timestamp_signup": str,
         "ip_opt": str, "timestamp_opt": str, "merge_fields": dict, "tags": list}

#: (method, path pattern) -> call of the official client (list id, hash, body, query).
_OPS: list[tuple[str, str, Callable[..., Any]]] = [
    ("GET", r"/3\.0/ping", lambda c, m, b, q: c.ping.get()),
    ("GET", r"/3\.0/lists/(?P<l>[^/]+)",
     lambda c, m, b, q: c.lists.get_list(m["l"], **q)),
    ("POST", r"/3\.0/lists/(?P<l>[^/]+)",
     lambda c, m, b, q: c.lists.batch_list_members(m["l"], b, **q)),
    ("PUT", r"/3\.0/lists/(?P<l>[^/]+)/members/(?P<h>[0-9a-f]{32})",
     lambda c, m, b, q: c.lists.set_list_member(m["l"], m["h"], b, **q)),
    ("POST", r"/3\.0/lists/(?P<l>[^/]+)/members/(?P<h>[0-9a-f]{32})/tags",
     lambda c, m, b, q: c.lists.update_list_member_tags(m["l"], m["h"], b)),
    ("DELETE", r"/3\.0/lists/(?P<l>[^/]+)/members/(?P<h>[0-9a-f]{32})",
     lambda c, m, b, q: c.lists.delete_list_member(m["l"], m["h"])),
    ("POST", r"/3\.0/lists/(?P<l>[^/]+)/members/(?P<h>[0-9a-f]{32})/actions/delete-permanent",
     lambda c, m, b, q: c.lists.delete_list_member_permanent(m["l"], m["h"])),
]


def official_request(method: str, path: str, query: Mapping[str, str], body: Any
                     ) -> tuple[str, str, set[str], Any, Any]:
    """What ``mailchimp-marketing`` sends for the same operation: method, path, query
    parameter names, JSON body and auth. Raises ``LookupError`` for an operation it has
    not, ``TypeError`` for a query parameter it does not know."""
    client = mailchimp_marketing.Client()
    client.set_config({"api_key": "0" * 32 + "-us6", "server": "us6"})
    sent: dict[str, Any] = {}

    def record(method: str, url: str, query_params: Any = None, headers: Any = None,
               body: Any = None) -> Any:
        sent.update(method=method, url=url, query=dict(query_params or []), body=body,
                    auth=client.api_client.is_basic_auth)

        class Ok:
            headers = {"content-type": "application/json"}
            ok = True

            @staticmethod
            def json() -> dict[str, Any]:
                return {"ok": True}

        return Ok()

    client.api_client.request = record  # type: ignore[method-assign]
    for m, pattern, call in _OPS:
        match = re.fullmatch(pattern, path)
        if m == method and match:
            kwargs = {k: (v.split(",") if k == "fields" else v == "true")
                      for k, v in query.items()}
            call(client, match.groupdict(), body, kwargs)
            got = urlsplit(sent["url"])
            return sent["method"], got.path, set(sent["query"]), sent["body"], sent["auth"]
    raise LookupError(f"{method} {path}")


def _member_errors(member: Any, where: str) -> list[str]:
    if not isinstance(member, dict):
        return [f"{where}: not an object"]
    errors = []
    for key, value in member.items():
        want = PLAIN.get(key)
        if want is None:
            errors.append(f"{where}.{key}: not a member field ({MEMBERS})")
        elif not isinstance(value, want) or (want is not bool and isinstance(value, bool)):
            errors.append(f"{where}.{key}: {json.dumps(value)}; {DOCUMENTED['member_types'][0]}")
    for key in ("status", "status_if_new"):
        if key in member and member[key] not in STATUSES:
            errors.append(f"{where}.{key}: {member[key]!r}; {DOCUMENTED['status'][0]}")
    if member.get("email_type", "html") not in ("html", "text"):
        errors.append(f"{where}.email_type: {DOCUMENTED['member_types'][0]}")
    for tag, value in (member.get("merge_fields") or {}).items():
        if isinstance(value, bool) or not isinstance(value, str | int | float | dict):
            errors.append(f"{where}.merge_fields.{tag}: {json.dumps(value)}; "
                          f"{DOCUMENTED['merge_values'][0]} ({DOCUMENTED['merge_values'][1]})")
    if not all(isinstance(t, str) for t in member.get("tags") or []):
        errors.append(f"{where}.tags: {DOCUMENTED['member_types'][0]}")
    return errors


def request_errors(method: str, url: str, headers: Mapping[str, str],
                   body: bytes | str | None) -> list[str]:
    """Every way one request departs from Mailchimp's client and documents."""
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    data = json.loads(body) if body else None
    where = f"{method} {parts.path}"
    try:
        o_method, o_path, o_query, o_body, basic = official_request(method, parts.path,
                                                                    query, data)
    except LookupError:
        return [f"{where}: mailchimp-marketing has no such operation"]
    except TypeError as exc:
        return [f"{where}: mailchimp-marketing refuses the parameters: {exc}"]
    errors = []
    if (o_method, o_path) != (method, parts.path):
        errors.append(f"{where}: the official client sends {o_method} {o_path}")
    if set(query) - o_query:
        errors.append(f"{where}: query {sorted(set(query) - o_query)} unknown to the client")
    if method in ("POST", "PUT") and o_body is not None and o_body != data:
        errors.append(f"{where}: body differs from the official client's")
    auth = {k.lower(): v for k, v in headers.items()}.get("authorization")
    if auth is not None:
        scheme, _, token = auth.partition(" ")
        decoded = base64.b64decode(token).decode() if scheme == "Basic" and token else ""
        if scheme != "Basic" or ":" not in decoded or not basic:
            errors.append(f"{where}: {DOCUMENTED['auth'][0]}")
    if method == "POST" and re.fullmatch(r"/3\.0/lists/[^/]+", parts.path):
        members = (data or {}).get("members") or []
        if len(members) > 500 or not isinstance((data or {}).get("update_existing"), bool) \
                or set(data or {}) - {"members", "update_existing"}:
            errors.append(f"{where}: {DOCUMENTED['batch'][0]}")
        errors += [e for i, m in enumerate(members)
                   for e in _member_errors(m, f"{where} members[{i}]")]
    elif method == "PUT":
        errors += _member_errors(data, where)
        if "status_if_new" not in (data or {}):
            errors.append(f"{where}: PUT of a member needs status_if_new ({MEMBERS})")
    elif parts.path.endswith("/tags"):
        tags = (data or {}).get("tags")
        if not isinstance(tags, list) or not all(
                isinstance(t, dict) and isinstance(t.get("name"), str)
                and t.get("status") in ("active", "inactive") for t in tags):
            errors.append(f"{where}: {DOCUMENTED['tags'][0]}")
    elif body:
        errors.append(f"{where}: has a body")
    return errors
