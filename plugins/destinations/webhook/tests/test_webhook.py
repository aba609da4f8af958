"""The webhook destination against conn's fault-injecting server, through the runtime's
delivery path (conn.testing.harness.write_records)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging

import pyarrow as pa
import pytest
from conn.errors import CheckFailed, ConfigError, RetryLater
from conn.testing.harness import make_request, write_records
from conn.testing.http import FaultServer, Reply
from conn_destination_webhook import plugin
from conn_destination_webhook.destination import WebhookDestination
from conn_destination_webhook.signing import sign, verify

SECRET = "hook-signing-secret-42"


def dest(srv: FaultServer, **config) -> WebhookDestination:
    cfg = {"url": srv.url + "/hook", "secret": SECRET, **config}
    WebhookDestination.validate_config(cfg)
    d = WebhookDestination(cfg, instance="hook")
    d.client_options = {"seed": 1}
    return d


def rows(n: int, start: int = 0) -> list[dict]:
    return [{"id": str(i), "email": f"u{i}@example.com", "score": i * 0.5}
            for i in range(start, start + n)]


def receiver_verify(secret: str, headers: dict, body: bytes) -> bool:
    """The README's receiver snippet, independent of the plugin's code."""
    msg_id, ts = headers["webhook-id"], headers["webhook-timestamp"]
    mac = hmac.new(secret.encode(), f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    expected = "v1," + base64.b64encode(mac).decode()
    return any(hmac.compare_digest(expected, s) for s in headers["webhook-signature"].split())


def test_registration_and_config_schema() -> None:
    got = []
    plugin.register_destinations(got.append)
    assert got == [WebhookDestination]
    assert WebhookDestination.config_schema["properties"]["secret"]["secret"] is True
    with pytest.raises(ConfigError):
        WebhookDestination.validate_config({"url": "ftp://x", "batch_size": 0})


def test_objects_default_and_configured() -> None:
    d = WebhookDestination({"url": "http://127.0.0.1:1/",
                            "objects": ["events", {"name": "customers",
                                                   "identifiers": ["customer_id"]}]})
    events, customers = d.objects()
    assert events.identifiers == ("id",) and customers.identifiers == ("customer_id",)
    assert "delete" in customers.capabilities.operations()
    assert [o.name for o in WebhookDestination({"url": "http://x/"}).objects()] == [
        "events", "records"]


def test_batches_are_signed_and_verifiable(fault_server: FaultServer) -> None:
    d = dest(fault_server, batch_size=10)
    res = write_records(d, "events", rows(25))
    assert res.rejected == [] and res.pending == []
    assert len(fault_server.requests) == 3
    for req in fault_server.requests:
        assert receiver_verify(SECRET, req.headers, req.body)
        assert verify(SECRET, req.headers, req.body)
        assert not verify("another-secret", req.headers, req.body)
        assert not verify(SECRET, req.headers, req.body + b" ")
        body = req.json
        assert body["sync"] == "test" and body["object"] == "events"
        assert body["operation"] == "upsert" and body["match_key"] == "id"
    fault_server.assert_exactly_once(str(i) for i in range(25))


def test_whsec_secret_and_custom_header_names(fault_server: FaultServer) -> None:
    secret = "whsec_" + base64.b64encode(b"0123456789abcdef").decode()
    d = dest(fault_server, secret=secret, signature_header="X-Sig",
             timestamp_header="X-Ts", id_header="X-Id", headers={"X-Tenant": "acme"})
    write_records(d, "records", rows(3))
    req = fault_server.requests[0]
    assert req.header("x-tenant") == "acme"
    assert verify(secret, req.headers, req.body, id_header="X-Id", timestamp_header="X-Ts",
                  signature_header="X-Sig")
    assert req.header("x-sig") == sign(secret, req.header("x-id"), req.header("x-ts"), req.body)


def test_retry_on_429_with_retry_after_and_5xx(fault_server: FaultServer) -> None:
    fault_server.configure(schedule=[Reply(429, headers={"Retry-After": "0.2"}), 503, 502])
    d = dest(fault_server, retry_base_delay=0.01)
    res = write_records(d, "events", rows(5))
    assert res.pending == [] and res.rejected == []
    reqs = fault_server.requests
    assert [r.status for r in reqs] == [429, 503, 502, 200]
    assert reqs[1].time - reqs[0].time >= 0.2  # Retry-After honoured
    assert len({r.header("webhook-id") for r in reqs}) == 1  # same id across retries
    assert all(verify(SECRET, r.headers, r.body) for r in reqs)
    fault_server.assert_exactly_once(str(i) for i in range(5))


def test_faults_every_record_arrives_exactly_once(fault_server: FaultServer) -> None:
    fault_server.configure(seed=11, error_rate=0.05, throttle_rate=0.10, retry_after=0.01)
    d = dest(fault_server, batch_size=20, concurrency=4, max_attempts=10,
             retry_base_delay=0.005)
    res = write_records(d, "events", rows(2000))
    assert res.pending == [] and res.rejected == [], res.error
    fault_server.assert_exactly_once(str(i) for i in range(2000))
    assert fault_server.statuses[429] > 0 and fault_server.statuses[503] > 0


def test_lost_responses_are_deduplicated_by_webhook_id(fault_server: FaultServer) -> None:
    fault_server.configure(seed=5, lost_response_rate=0.2, idempotency_header="webhook-id")
    d = dest(fault_server, batch_size=10, max_attempts=10, retry_base_delay=0.001)
    res = write_records(d, "events", rows(300))
    assert res.pending == []
    assert fault_server.duplicates > 0
    fault_server.assert_exactly_once(str(i) for i in range(300))


def test_per_record_errors_become_rejections(fault_server: FaultServer) -> None:
    fault_server.configure(reject={"3", "17"})
    res = write_records(dest(fault_server, batch_size=10), "events", rows(20))
    assert [(r.index, r.reason) for r in res.rejected] == [
        (3, "record 3 rejected: invalid value"), (17, "record 17 rejected: invalid value")]
    assert res.pending == []
    fault_server.assert_exactly_once(str(i) for i in range(20) if i not in (3, 17))


def test_rejections_keep_the_exchange_without_secrets(fault_server: FaultServer) -> None:
    """Per-record errors and a refused batch: each rejected row keeps the request that
    refused it (its record as sent), the status and the answer; the path only (no host,
    no query string) and no header (the signature, the auth token)."""
    from conn import secrets

    token = "bearer-7f00d1c2b3a4"
    secrets.register(token, SECRET)
    for mode, status in (("records", 200), ("batch", 400)):
        fault_server.configure(reject={"3", "17"}, reject_mode=mode)
        d = dest(fault_server, url=fault_server.url + f"/hook?token={token}", batch_size=10,
                 headers={"Authorization": f"Bearer {token}"})
        res = write_records(d, "events", rows(20))
        assert [r.index for r in res.rejected] == [3, 17]
        for r in res.rejected:
            ex = r.excerpt
            assert (ex["method"], ex["path"], ex["status"]) == ("POST", "/hook", status)
            assert json.loads(ex["request"]) == rows(20)[r.index]
            assert "rejected" in ex["response"] or "refused" in ex["response"]
            text = json.dumps(ex)
            assert token not in text and SECRET not in text and "127.0.0.1" not in text


def test_whole_batch_400_is_split(fault_server: FaultServer) -> None:
    fault_server.configure(reject={"5", "6", "40"}, reject_mode="batch")
    res = write_records(dest(fault_server, batch_size=50), "events", rows(64))
    assert sorted(r.index for r in res.rejected) == [5, 6, 40]
    assert all("HTTP 400" in r.reason and "batch refused" in r.reason for r in res.rejected)
    fault_server.assert_exactly_once(str(i) for i in range(64) if i not in (5, 6, 40))


def test_delete_sends_match_keys(fault_server: FaultServer) -> None:
    d = dest(fault_server, objects=[{"name": "customers", "identifiers": ["id"]}])
    write_records(d, "customers", rows(4))
    res = write_records(d, "customers", [{"id": "1"}, {"id": "2"}], operation="delete")
    assert res.pending == [] and res.rejected == []
    body = fault_server.requests[-1].json
    assert body["operation"] == "delete" and body["records"] == [{"id": "1"}, {"id": "2"}]
    assert set(fault_server.store) == {"0", "3"}


def test_auth_failure_leaves_rows_pending_without_secrets(
        fault_server: FaultServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    token = "Bearer tok-very-secret-99"
    fault_server.configure(schedule=[Reply(503, json={"m": f"bad {SECRET}"}),
                                     Reply(401, json={"message": f"bad token {token}"})])
    d = dest(fault_server, headers={"Authorization": token}, retry_base_delay=0.001)
    res = write_records(d, "events", rows(3))
    assert res.pending == [0, 1, 2] and "HTTP 401" in str(res.error)
    text = caplog.text + str(res.error) + repr(res.error)
    assert SECRET not in text and "tok-very-secret-99" not in text
    assert "503" in caplog.text  # the retry was logged, redacted


def test_persistent_throttling_is_retry_later(fault_server: FaultServer) -> None:
    fault_server.configure(throttle_rate=1.0, retry_after=0.001)
    d = dest(fault_server, max_attempts=3, retry_base_delay=0.001)
    res = write_records(d, "events", rows(2))
    assert res.pending == [0, 1] and isinstance(res.error, RetryLater)
    assert SECRET not in str(res.error)


def test_rate_limit_config_is_respected(fault_server: FaultServer) -> None:
    fault_server.configure(rate_limit=20, rate_burst=2)
    d = dest(fault_server, batch_size=5, concurrency=4,
             rate_limit={"requests": 20, "per_seconds": 1})
    res = write_records(d, "events", rows(60))
    assert res.pending == [] and fault_server.statuses[429] == 0
    fault_server.assert_exactly_once(str(i) for i in range(60))


def test_check(fault_server: FaultServer) -> None:
    d = dest(fault_server)
    d.check()
    ping = fault_server.requests[0].json
    assert ping["operation"] == "ping" and ping["records"] == []
    fault_server.configure(schedule=[Reply(403, json={"message": "forbidden"})])
    with pytest.raises(CheckFailed, match="HTTP 403"):
        d.check()


def sealed_request(d: WebhookDestination, records: list[dict]):
    return make_request(d, "events", records, dry_run=True, match_key="id")


def test_describe_requests_redacts_signature_and_secrets() -> None:
    d = WebhookDestination({"url": "https://hooks.example.com/in?token=abcdef123",
                            "secret": SECRET, "batch_size": 2,
                            "headers": {"Authorization": "Bearer tok-very-secret-99"}})
    out = d.describe_requests(sealed_request(d, rows(3)))
    assert len(out) == 2
    first = out[0]
    assert first["method"] == "POST" and first["path"] == "/in"
    assert first["url"] == "https://hooks.example.com/in?token=***"
    assert first["headers"]["webhook-signature"] == "***"
    assert first["headers"]["Authorization"] == "Bearer ***"
    assert first["json"]["records"] == rows(2)
    text = json.dumps(out)
    assert SECRET not in text and "tok-very-secret-99" not in text and "abcdef123" not in text


def test_json_encoding_of_arrow_types(fault_server: FaultServer) -> None:
    import datetime as dt
    import decimal

    batch = pa.RecordBatch.from_pylist([{
        "id": "1", "at": dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC),
        "day": dt.date(2024, 5, 1), "amount": decimal.Decimal("12.30"),
        "blob": b"\x00\x01"}])
    res = write_records(dest(fault_server), "events", batch)
    assert res.pending == [], res.error
    rec = fault_server.requests[0].json["records"][0]
    assert rec["at"].startswith("2024-05-01T12:00:00") and rec["day"] == "2024-05-01"
    assert rec["amount"] == "12.30" and rec["blob"] == "AAE="


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_numbers_are_never_sent_as_null(fault_server: FaultServer,
                                                   value: float) -> None:
    # JSON has no NaN or Infinity. The mapper rejects such rows before delivery
    # (conn.mapping.carry); a destination handed one anyway sends nothing rather than
    # a null in its place.
    from conn_destination_webhook.destination import encode

    with pytest.raises(ValueError):
        encode({"records": [{"id": "1", "x": value}]})
    res = write_records(dest(fault_server), "events", [{"id": "1", "x": value}])
    assert res.pending == [0] and fault_server.requests == []
    assert dest(fault_server).objects()[0].capabilities.values == "json"


def test_erase_event_has_its_own_idempotency_keys(fault_server: FaultServer) -> None:
    """With ``erase_events: true``, ``erase`` is declared (README: the erase event) and sent
    as ``"operation": "erase"`` with only the match key; its idempotency keys and
    webhook-id differ from a delete's of the same records and repeat on a second erase.
    By default no erasure is declared (conn forget then sends delete, which a receiver
    that ignores unknown operations would otherwise acknowledge without erasing)."""
    d = dest(fault_server, objects=[{"name": "customers", "identifiers": ["id"]}],
             erase_events=True)
    obj = d.object("customers")
    assert "erase" in obj.capabilities.operations() and "erase" in obj.capabilities.erasure
    write_records(d, "customers", rows(4))
    keys = [{"id": "1"}, {"id": "404"}]
    sent = []
    for op in ("erase", "erase", "delete"):
        res = write_records(d, "customers", keys, operation=op)
        assert res.pending == [] and res.rejected == []
        req = fault_server.requests[-1]
        sent.append((req.json["idempotency_keys"], req.header("webhook-id")))
        assert req.json["operation"] == op and req.json["records"] == keys
    assert sent[0] == sent[1] and sent[0][0] != sent[2][0] and sent[0][1] != sent[2][1]
    assert set(fault_server.store) == {"0", "2", "3"}
    default = dest(fault_server)
    assert "erase" not in default.object("records").capabilities.operations()


def test_erase_retried_on_faults_and_refused_records_rejected(
        fault_server: FaultServer) -> None:
    fault_server.configure(error_rate=0.2, throttle_rate=0.2, retry_after=0.01, seed=4,
                           reject=["bad"])
    d = dest(fault_server, max_attempts=12, erase_events=True)
    keys = [{"id": str(i)} for i in range(30)] + [{"id": "bad"}]
    res = write_records(d, "records", keys, operation="erase")
    assert res.pending == [] and [r.index for r in res.rejected] == [30]
    assert "rejected" in res.rejected[0].reason
    faults = [r.fault for r in fault_server.requests]
    assert faults.count("throttle") > 0 and faults.count("error") > 0
