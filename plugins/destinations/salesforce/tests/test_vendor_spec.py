"""Every request the plugin sends, checked against what Salesforce publishes.

Requests go through conn's write path (``write_records``) to a loopback Salesforce
emulator that records them. Bulk API 2.0 jobs are compared with the requests
``simple-salesforce`` builds for the same job; the other calls with the documented
shapes listed, with their URLs, in :mod:`.vendor_spec`. The hand-written cassettes pass
the same checks. Also here: the client credentials flow needs a My Domain login URL, and
uploads larger than Bulk API 2.0 allows are split into several jobs.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import yaml
from conn.errors import ConfigError
from conn.testing.harness import write_records
from conn.testing.http import FaultServer, RecordedRequest, Reply
from conn_destination_salesforce.destination import SalesforceDestination

from .vendor_spec import (
    API,
    DOCUMENTED,
    bulk_job_errors,
    reference_bulk_requests,
    request_errors,
)

CASSETTES = Path(__file__).parent / "cassettes"
SECRETS = {"client_id": "3MVG9-spec-consumer-key", "client_secret": "sf-spec-secret",
           "refresh_token": "5Aep-spec-refresh"}
EXT = "Warehouse_Id__c"
FIELDS = {"Email": {"type": ["string", "null"]}, "LastName": {"type": ["string", "null"]},
          "LTV__c": {"type": ["number", "null"]}, "Opted_In__c": {"type": ["boolean", "null"]}}


class Org:
    """A Salesforce org on the loopback server: token, Collections, query, delete, and
    Bulk API 2.0 jobs that accept every record."""

    def __init__(self, srv: FaultServer) -> None:
        self.jobs: dict[str, list[dict[str, str]]] = {}
        srv.route("POST", "/services/oauth2/token", self.token, faults=False)
        srv.handler = self.api

    def token(self, req: RecordedRequest, srv: FaultServer) -> Reply:
        return Reply(200, json={"access_token": "00Dspec!token", "instance_url": srv.url,
                                "token_type": "Bearer"})

    def api(self, req: RecordedRequest, srv: FaultServer) -> Reply:
        path = API.match(req.path).group("rest")  # type: ignore[union-attr]
        if path == "limits":
            return Reply(200, json={"DailyApiRequests": {"Max": 15000, "Remaining": 14000}})
        if path.startswith("composite/sobjects/") and req.method == "PATCH":
            return Reply(200, json=[{"id": f"003{n}", "success": True, "errors": [],
                                     "created": True}
                                    for n, _ in enumerate(req.json["records"])])
        if path == "query":
            found = re.findall(r"'([^']*)'", req.query["q"][0])
            return Reply(200, json={"done": True, "totalSize": len(found), "records": [
                {"Id": f"003{v}", EXT: v} for v in found]})
        if path == "composite/sobjects" and req.method == "DELETE":
            return Reply(200, json=[{"id": i, "success": True, "errors": []}
                                    for i in req.query["ids"][0].split(",")])
        if path == "jobs/ingest" and req.method == "POST":
            job_id = f"750J{len(self.jobs)}"
            self.jobs[job_id] = []
            return Reply(200, json={"id": job_id, "state": "Open"})
        m = re.fullmatch(r"jobs/ingest/(\w+)(/batches|/successfulResults/|/failedResults/)?",
                         path)
        if m and m.group(2) == "/batches":
            self.jobs[m.group(1)] = list(csv.DictReader(io.StringIO(req.body.decode())))
            return Reply(201)
        if m and m.group(2) == "/successfulResults/":
            rows = self.jobs[m.group(1)]
            out = io.StringIO()
            w = csv.DictWriter(out, ["sf__Id", "sf__Created", *(rows[0] if rows else [])],
                               lineterminator="\n")
            w.writeheader()
            for r in rows:
                w.writerow({"sf__Id": "003x", "sf__Created": "true", **r})
            return Reply(200, body=out.getvalue().encode(), headers={"Content-Type": "text/csv"})
        if m and m.group(2) == "/failedResults/":
            return Reply(200, body=b'"sf__Id","sf__Error"\n', headers={"Content-Type": "text/csv"})
        if m:
            return Reply(200, json={"id": m.group(1), "state": "JobComplete"})
        return Reply(404, json=[{"errorCode": "NOT_FOUND", "message": path}])


def make(url: str, **config: Any) -> SalesforceDestination:
    cfg = {**SECRETS, "login_url": url, "retry": {"base_delay": 0.01},
           "objects": {"Contact": {"external_id": EXT, "fields": FIELDS,
                                   "bulk_threshold": 50}}, **config}
    SalesforceDestination.validate_config(cfg)
    dest = SalesforceDestination(cfg, instance="sf")
    dest.sleep = lambda s: None
    return dest


def rows(n: int) -> list[dict[str, Any]]:
    return [{EXT: f"W-{i}", "Email": f"u{i}@example.com", "LastName": f"Núñez, \"{i}\"",
             "LTV__c": i / 3 if i % 4 else None, "Opted_In__c": bool(i % 2)}
            for i in range(n)]


def split_jobs(requests: list[RecordedRequest]) -> list[list[tuple[str, str, Any, bytes]]]:
    """The create, upload and close requests of each bulk job, in order."""
    jobs: list[list[tuple[str, str, Any, bytes]]] = []
    for r in requests:
        path = API.match(r.path).group("rest") if API.match(r.path) else ""  # type: ignore
        if path == "jobs/ingest":
            jobs.append([])
        if path.startswith("jobs/ingest") and r.method in ("POST", "PUT", "PATCH"):
            jobs[-1].append((r.method, path, r.headers, r.body))
    return jobs


# --- the client credentials flow needs My Domain -------------------------------------------


@pytest.mark.parametrize("login_url", [None, "https://login.salesforce.com",
                                       "https://TEST.salesforce.com/", "http://login.salesforce.com"])
def test_client_credentials_refuses_the_generic_login_hosts(login_url: str | None) -> None:
    cfg = {"flow": "client_credentials", "client_id": "k", "client_secret": "s",
           "objects": {"Contact": {"external_id": EXT}}}
    if login_url:
        cfg["login_url"] = login_url
    SalesforceDestination.validate_config(cfg)
    with pytest.raises(ConfigError, match="My Domain") as ei:
        SalesforceDestination(cfg)
    assert ei.value.path == "config.login_url" and "000886201" in str(ei.value)


def test_client_credentials_with_my_domain_is_accepted(fault_server: FaultServer) -> None:
    Org(fault_server)
    cfg = {"flow": "client_credentials", "client_id": "k", "client_secret": "s",
           "login_url": "https://acme.my.salesforce.com",
           "objects": {"Contact": {"external_id": EXT}}}
    SalesforceDestination(cfg)
    dest = make(fault_server.url, flow="client_credentials")
    dest.check()
    (token,) = [r for r in fault_server.requests if r.path.endswith("/oauth2/token")]
    assert parse_qs(token.body.decode())["grant_type"] == ["client_credentials"]
    # refresh-token flows keep working with login.salesforce.com
    SalesforceDestination({**SECRETS, "objects": {"Contact": {"external_id": EXT}}})


# --- Bulk API 2.0 uploads are at most 100 MB --------------------------------------------


def test_large_bulk_writes_are_split_into_uploads_under_the_limit(
        fault_server: FaultServer) -> None:
    org = Org(fault_server)
    dest = make(fault_server.url)
    dest.max_upload_bytes = 2_000  # stands for the 100 MB limit, which ~1M rows reach
    data = rows(300)
    res = write_records(dest, "Contact", data)
    assert res.rejected == [] and res.pending == [], res.error
    jobs = split_jobs(fault_server.requests)
    assert len(jobs) > 1 and all(len(j[1][3]) <= 2_000 for j in jobs)
    sent = [r[EXT] for rows_ in org.jobs.values() for r in rows_]
    assert sorted(sent) == sorted(r[EXT] for r in data)  # every row once, none twice


def test_a_record_larger_than_an_upload_is_rejected_not_sent(fault_server: FaultServer) -> None:
    org = Org(fault_server)
    dest = make(fault_server.url)
    dest.max_upload_bytes = 2_000
    data = rows(60)
    data[7]["LastName"] = "x" * 3_000
    res = write_records(dest, "Contact", data)
    assert [r.index for r in res.rejected] == [7] and "at most 2,000" in res.rejected[0].reason
    assert res.pending == [] and not res.rejected[0].retryable
    assert "W-7" not in {r[EXT] for rows_ in org.jobs.values() for r in rows_}


def test_the_default_limit_is_100_mb() -> None:
    from simple_salesforce.bulk2 import MAX_INGEST_JOB_FILE_SIZE

    dest = SalesforceDestination({**SECRETS, "objects": {"Contact": {"external_id": EXT}}})
    assert dest.max_upload_bytes <= MAX_INGEST_JOB_FILE_SIZE
    assert dest.max_upload_bytes == 100_000_000


# --- every request against the vendor ----------------------------------------------------


def test_the_checks_catch_departures() -> None:
    base = "https://acme.my.salesforce.com/services/data/v62.0/"
    good = b'{"allOrNone": false, "records": [{"attributes": {"type": "Contact"}, "E__c": "1"}]}'
    assert request_errors("PATCH", base + "composite/sobjects/Contact/E__c", {}, good) == []
    for bad in (good.replace(b"false", b'"false"'), good.replace(b'"Contact"}', b'"Lead"}'),
                good.replace(b'"E__c"', b'"Id": "003", "E__c"')):
        assert request_errors("PATCH", base + "composite/sobjects/Contact/E__c", {}, bad)
    ids = ",".join(f"003{i}" for i in range(201))
    assert request_errors("DELETE", base + f"composite/sobjects?ids={ids}&allOrNone=false",
                          {}, None)
    assert request_errors("POST", "https://login.salesforce.com/services/oauth2/token", {},
                          "grant_type=client_credentials&client_id=a&client_secret=b")
    job = [("POST", "jobs/ingest", {}, b'{"object": "Contact", "operation": "upsert", '
            b'"externalIdFieldName": "E__c", "contentType": "CSV", "lineEnding": "CRLF", '
            b'"columnDelimiter": "COMMA"}'),
           ("PUT", "jobs/ingest/750A/batches", {"Content-Type": "application/json"},
            b"E__c,Name\r\n1,x\r\n"),
           ("PATCH", "jobs/ingest/750A", {}, b'{"state": "UploadComplete"}')]
    errors = bulk_job_errors(job)
    assert any("differs from simple-salesforce" in e for e in errors)
    assert any("text/csv" in e for e in errors)
    assert all(url.startswith("https://") for _, url in DOCUMENTED.values())


def test_simple_salesforce_reference_is_what_its_client_sends() -> None:
    create, upload, close = reference_bulk_requests("Contact", EXT, f"{EXT}\nW-1\n")
    assert create[:2] == ("POST", "jobs/ingest") and create[2]["lineEnding"] == "LF"
    assert upload[:2] == ("PUT", "jobs/ingest/750REF/batches")
    assert close == ("PATCH", "jobs/ingest/750REF", {"state": "UploadComplete"})


def test_every_request_of_the_write_path_follows_salesforce(fault_server: FaultServer) -> None:
    Org(fault_server)
    dest = make(fault_server.url)
    dest.max_upload_bytes = 3_000
    dest.check()
    for n in (3, 120):  # Collections below bulk_threshold, Bulk API 2.0 above (split)
        res = write_records(dest, "Contact", rows(n))
        assert res.rejected == [] and res.pending == [], res.error
    res = write_records(dest, "Contact", [{EXT: f"W-{i}"} for i in range(250)],
                        operation="delete")
    assert res.rejected == [] and res.pending == [], res.error
    problems = [e for r in fault_server.requests
                for e in request_errors(r.method, fault_server.url + r.path
                                        + (f"?{_query(r)}" if r.query else ""),
                                        r.headers, r.body)]
    jobs = split_jobs(fault_server.requests)
    assert len(jobs) >= 2
    problems += [e for job in jobs for e in bulk_job_errors(job)]
    assert problems == []


def _query(r: RecordedRequest) -> str:
    return urlencode({k: v[0] for k, v in r.query.items()})


def test_every_cassette_request_follows_salesforce() -> None:
    problems, checked = [], 0
    for path in sorted(CASSETTES.glob("*.yaml")):
        sent = []
        for interaction in yaml.safe_load(path.read_text())["interactions"]:
            req = interaction["request"]
            headers = {k: v[0] for k, v in (req.get("headers") or {}).items()}
            body = req.get("body")
            # the cassettes mask credentials: put placeholders back for the shape check
            if isinstance(body, str) and "oauth2/token" in req["uri"]:
                body = body.replace("***", "x")
            problems += [f"{path.name}: {e}"
                         for e in request_errors(req["method"], req["uri"], headers, body)]
            rest = API.match(urlsplit(req["uri"]).path)
            if rest and rest.group("rest").startswith("jobs/ingest") and \
                    req["method"] in ("POST", "PUT", "PATCH"):
                raw = body.encode() if isinstance(body, str) else (body or b"")
                sent.append((req["method"], rest.group("rest"), headers, raw))
            checked += 1
        if sent:
            problems += [f"{path.name}: {e}" for e in bulk_job_errors(sent)]
    assert checked >= 15 and problems == []
