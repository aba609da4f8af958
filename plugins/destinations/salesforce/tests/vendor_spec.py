"""Salesforce's published request shapes, as a test helper.

Bulk API 2.0 requests are compared with those ``simple-salesforce`` (a widely used client
that implements the Bulk API 2.0 reference) builds for the same job: its ``_Bulk2Client``
is driven through a ``requests`` adapter that records instead of sending, so the
reference requests come from its code, not from ours. Its enumerations (operations, line
endings, column delimiters) and its upload limit (``MAX_INGEST_JOB_FILE_SIZE``) are used
as they are.

Rules Salesforce publishes only in documents are listed in :data:`DOCUMENTED` with their
URL and checked by :func:`request_errors`.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from simple_salesforce import bulk2

DOCUMENTED = {
    "collections_upsert": (
        "PATCH composite/sobjects/{SObject}/{ExternalIdField}: allOrNone (boolean) and at "
        "most 200 records, each with attributes.type = the sObject and no Id",
        "https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/"
        "resources_composite_sobjects_collections_upsert.htm"),
    "collections_delete": (
        "DELETE composite/sobjects?ids=...&allOrNone=...: at most 200 ids, no body",
        "https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/"
        "resources_composite_sobjects_collections_delete.htm"),
    "query": ("GET query?q=<SOQL>, no body",
              "https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/"
              "resources_query.htm"),
    "token": ("POST /services/oauth2/token, form-encoded, grant_type refresh_token (with "
              "refresh_token) or client_credentials, client_id and client_secret",
              "https://help.salesforce.com/s/articleView?id=sf.remoteaccess_oauth_flows.htm"),
    "client_credentials_host": (
        "the client credentials flow is not supported on login.salesforce.com or "
        "test.salesforce.com: use My Domain",
        "https://help.salesforce.com/s/articleView?id=000886201&type=1"),
    "csv": ("Bulk API 2.0 CSV: a header row of field names, the job's line ending and "
            "delimiter", "https://developer.salesforce.com/docs/atlas.en-us.api_asynch.meta/"
                         "api_asynch/datafiles_prepare_csv.htm"),
}
COLLECTION_LIMIT = 200
API = re.compile(r"^/services/data/v\d+\.\d/(?P<rest>.*)$")


class _Recorder(requests.adapters.BaseAdapter):
    """A ``requests`` adapter that records requests and answers like Salesforce."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        self.sent.append(request)
        resp = requests.Response()
        resp.status_code = 201 if request.method == "PUT" else 200
        resp._content = b'{"id": "750REF", "state": "Open"}'
        resp.headers["Content-Type"] = "application/json"
        resp.request, resp.url = request, request.url or ""
        return resp

    def close(self) -> None:
        pass


def reference_bulk_requests(sobject: str, external_id: str, csv_text: str
                            ) -> list[tuple[str, str, Any]]:
    """``(method, path after /vXX.X/, body)`` of the upsert job simple-salesforce makes:
    create (JSON), upload (CSV text), close (JSON)."""
    session = requests.Session()
    recorder = _Recorder()
    session.mount("https://", recorder)
    client = bulk2._Bulk2Client(sobject, "https://ref.my.salesforce.com/services/data/v62.0/"
                                "jobs/", {"Authorization": "Bearer ref"}, session)
    job = client.create_job(bulk2.Operation.upsert, external_id_field=external_id,
                            line_ending=bulk2.LineEnding.LF,
                            column_delimiter=bulk2.ColumnDelimiter.COMMA)
    client.upload_job_data(job["id"], csv_text)
    client.close_job(job["id"])
    out = []
    for r in recorder.sent:
        rest = API.match(urlsplit(r.url or "").path)
        assert rest, r.url
        body: Any = r.body.decode() if isinstance(r.body, bytes) else r.body
        if (r.headers.get("Content-Type") or "").startswith("application/json"):
            body = json.loads(body)
        out.append((r.method or "", rest.group("rest"), body))
    return out


def bulk_job_errors(sent: list[tuple[str, str, Mapping[str, str], bytes]]) -> list[str]:
    """Compare one job's requests (``(method, api path, headers, body)``: create, upload,
    close) with the requests simple-salesforce makes for the same job."""
    create, upload, close = sent[:3]
    job = json.loads(create[3])
    payload = upload[3].decode()
    job_id = upload[1].split("/")[2]
    want = reference_bulk_requests(job["object"], job.get("externalIdFieldName"), payload)
    got = [(create[0], create[1], job), (upload[0], upload[1], payload),
           (close[0], close[1], json.loads(close[3]))]
    errors = []
    for (gm, gp, gb), (wm, wp, wb) in zip(got, want, strict=True):
        wp = wp.replace("750REF", job_id)
        if (gm, gp) != (wm, wp):
            errors.append(f"{gm} {gp}: simple-salesforce sends {wm} {wp}")
        if gb != wb:
            errors.append(f"{gm} {gp}: body {gb!r} differs from simple-salesforce's {wb!r}")
    if len(upload[3]) > bulk2.MAX_INGEST_JOB_FILE_SIZE:
        errors.append(f"upload of {len(upload[3]):,} bytes; simple-salesforce refuses more "
                      f"than {bulk2.MAX_INGEST_JOB_FILE_SIZE:,} (Bulk API 2.0: 100 MB)")
    ctype = {k.lower(): v for k, v in upload[2].items()}.get("content-type", "")
    if ctype.split(";")[0].strip() != "text/csv":
        errors.append(f"upload Content-Type {ctype!r}; Bulk API 2.0 wants text/csv")
    if job.get("operation") not in set(bulk2.Operation):
        errors.append(f"operation {job.get('operation')!r} is not a Bulk API 2.0 operation")
    if job.get("lineEnding") == "LF" and "\r\n" in payload:
        errors.append(f"CRLF in a job declared LF; {DOCUMENTED['csv'][0]}")
    header = next(csv.reader(io.StringIO(payload)), [])
    if job.get("externalIdFieldName") not in header:
        errors.append(f"the CSV header {header} lacks the external id field; "
                      f"{DOCUMENTED['csv'][0]}")
    return errors


def request_errors(method: str, url: str, headers: Mapping[str, str],
                   body: bytes | str | None) -> list[str]:
    """Departures of one non-bulk request from Salesforce's documented shapes."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    raw = body.encode() if isinstance(body, str) else (body or b"")
    if parts.path.endswith("/services/oauth2/token"):
        form = parse_qs(raw.decode())
        grant = (form.get("grant_type") or [""])[0]
        errors = []
        if method != "POST" or grant not in ("refresh_token", "client_credentials"):
            errors.append(f"{method} token grant {grant!r}: {DOCUMENTED['token'][0]}")
        if not {"client_id", "client_secret"} <= set(form) or \
                (grant == "refresh_token" and "refresh_token" not in form):
            errors.append(f"token request lacks credentials: {DOCUMENTED['token'][0]}")
        if grant == "client_credentials" and (parts.hostname or "") in (
                "login.salesforce.com", "test.salesforce.com"):
            errors.append(f"client credentials on {parts.hostname}: "
                          f"{DOCUMENTED['client_credentials_host'][0]}")
        return errors
    rest = API.match(parts.path)
    if not rest:
        return [f"{method} {parts.path}: not under /services/data/vXX.X/"]
    path = rest.group("rest")
    if method == "GET":
        if raw:
            return [f"GET {path}: has a body"]
        if path == "query" and not query.get("q"):
            return [f"GET query: no q parameter; {DOCUMENTED['query'][0]}"]
        if path in ("query", "limits") or path.startswith(("query/", "jobs/ingest/")):
            return []
        return [f"GET {path}: not a request this plugin is documented to make"]
    if method == "DELETE" and path == "composite/sobjects":
        ids = (query.get("ids") or [""])[0].split(",")
        bad = raw or len(ids) > COLLECTION_LIMIT or "allOrNone" not in query
        return [f"DELETE {path}: {DOCUMENTED['collections_delete'][0]}"] if bad else []
    m = re.fullmatch(r"composite/sobjects/(\w+)/(\w+)", path)
    if m and method == "PATCH":
        data = json.loads(raw)
        errors = []
        if not isinstance(data.get("allOrNone"), bool):
            errors.append("allOrNone is not a boolean")
        records = data.get("records") or []
        if not records or len(records) > COLLECTION_LIMIT:
            errors.append(f"{len(records)} records")
        for i, rec in enumerate(records):
            if (rec.get("attributes") or {}).get("type") != m.group(1):
                errors.append(f"records[{i}].attributes.type is not {m.group(1)}")
            if "Id" in rec or m.group(2) not in rec:
                errors.append(f"records[{i}] carries Id or lacks {m.group(2)}")
        return [f"PATCH {path}: {e}; {DOCUMENTED['collections_upsert'][0]}" for e in errors]
    if path.startswith("jobs/ingest"):
        return []  # compared whole with simple-salesforce: bulk_job_errors
    return [f"{method} {path}: not a request this plugin is documented to make"]
