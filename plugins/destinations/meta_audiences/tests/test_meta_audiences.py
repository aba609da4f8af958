"""Meta destination: hashing verification with known SHA-256 vectors, sessions across
chunks, dry run, and a fault-server run (10% 429, 5% 503) where every row arrives once."""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from typing import Any

import pyarrow as pa
from conn.testing.harness import make_request, write_records
from conn.testing.http import FaultServer, RecordedRequest, Reply
from conn_destination_meta_audiences.destination import MetaAudiencesDestination, hash_column

from .conftest import graph_params

TOKEN = "EAAGm0PX4ZCpsBAtesttokenvalue"


def sha(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def test_known_vectors_of_normalised_email_and_phone() -> None:
    # Normalised by hand per Meta's rules, hashed independently with hashlib.
    email = pa.array(["  Ada.Lovelace@Example.COM ", sha("x@y.z"), None])
    got = hash_column(email, "email").to_pylist()
    assert got[0] == sha("ada.lovelace@example.com")
    assert got[0] == "e814ff3dc480a94c7ce9334062ec4733c75a002f4bcec0197f62ffea64059e2f"
    assert got[1] == sha("x@y.z")  # already a digest: not hashed twice
    assert got[2] is None
    phone = pa.array(["+1 (650) 555-1234", "(650) 555-1234"])
    got = hash_column(phone, "phone", country_code="1").to_pylist()
    assert got == [sha("16505551234"), sha("16505551234")]
    assert sha("16505551234") == \
        "6069d14bf122fdfd931dc7beb58e5dfbba395b1faf05bdcd42d12358d63d8599"


def test_unhashed_values_are_rejected_unless_hash_in_destination(fault_server) -> None:
    got: list[Any] = []

    def meta(req: RecordedRequest, server: FaultServer) -> Reply:
        got.append(graph_params(req))
        n = len(got[-1]["payload"]["data"])
        return Reply(200, json={"num_received": n, "num_invalid_entries": 0})

    fault_server.configure(handler=meta)
    rows = [{"email": "Ada@Example.com", "phone": sha("16505551234")},
            {"email": sha("ada@example.com"), "phone": "650 555 1234"}]
    cfg = {"access_token": TOKEN, "audience_id": "1", "base_url": fault_server.url}
    with MetaAudiencesDestination(cfg) as dest:
        res = write_records(dest, "audience", rows)
    assert [r.index for r in res.rejected] == [0, 1] and not got
    assert "email" in res.rejected[0].reason and "phone" in res.rejected[1].reason
    with MetaAudiencesDestination({**cfg, "hash_in_destination": True,
                                   "phone_country_code": "+1"}) as dest:
        res = write_records(dest, "audience", rows)
    assert not res.rejected
    assert got[0]["payload"]["data"] == [[sha("ada@example.com"), sha("16505551234")]] * 2


def test_objects_and_config() -> None:
    d = MetaAudiencesDestination({"access_token": TOKEN,
                                  "audiences": {"churn_risk": "11", "vip": "12"}})
    names = [o.name for o in d.objects()]
    assert names == ["churn_risk", "vip"]
    obj = d.object("churn_risk")
    assert obj.personal["email"] == "email" and obj.personal["phone"] == "phone"
    assert obj.capabilities.batch_size == 10_000 and obj.capabilities.concurrency == 1
    # No person-erasure API (README): conn forget removes from the audience (delete).
    assert "erase" not in obj.capabilities.operations() and obj.capabilities.supports_delete
    assert MetaAudiencesDestination.config_schema["properties"]["access_token"]["secret"]


def test_dry_run_masks_token() -> None:
    d = MetaAudiencesDestination({"access_token": TOKEN, "audience_id": "77",
                                  "batch_size": 2})
    rows = [{"email": sha(f"u{i}@x.io")} for i in range(3)]
    out = d.describe_requests(make_request(d, "audience", rows, "delete", dry_run=True))
    assert [o["method"] for o in out] == ["DELETE", "DELETE"]
    assert out[0]["path"] == "/v25.0/77/users"
    assert out[1]["params"]["session"]["batch_seq"] == 2
    assert out[1]["params"]["session"]["last_batch_flag"] is True
    assert TOKEN not in json.dumps(out) and out[0]["headers"]["authorization"] == "Bearer ***"
    d.close()


class FakeAudience:
    """Emulates POST/DELETE /{version}/{id}/users: members by hashed e-mail."""

    def __init__(self) -> None:
        self.sessions: dict[int, list[tuple[int, bool, int]]] = {}

    def __call__(self, req: RecordedRequest, server: FaultServer) -> Reply:
        body = graph_params(req)
        schema, data = body["payload"]["schema"], body["payload"]["data"]
        s = body["session"]
        self.sessions.setdefault(s["session_id"], []).append(
            (s["batch_seq"], s["last_batch_flag"], s["estimated_num_total"]))
        col = schema.index("EMAIL")
        for row in data:
            if req.method == "DELETE":
                server.store.pop(row[col], None)
                server.deleted[row[col]] += 1
            else:
                server.store[row[col]] = row
                server.arrivals[row[col]] += 1
        return Reply(200, json={"audience_id": "5", "session_id": str(s["session_id"]),
                                "num_received": len(data), "num_invalid_entries": 0,
                                "invalid_entry_samples": {}})


def test_exactly_once_under_faults_with_one_session_per_write(fault_server) -> None:
    fake = FakeAudience()
    fault_server.configure(handler=fake, throttle_rate=0.10, error_rate=0.05,
                           retry_after=0.01, seed=11)
    hashes = [sha(f"user{i}@example.com") for i in range(2500)]
    cfg = {"access_token": TOKEN, "audience_id": "5", "base_url": fault_server.url,
           "batch_size": 100, "max_attempts": 12}
    dest = MetaAudiencesDestination(cfg)
    dest.client_options = {"seed": 3, "sleep": lambda s: time.sleep(min(s, 0.02))}
    with dest:
        res = write_records(dest, "audience", [{"email": h} for h in hashes])
        assert not res.rejected and not res.pending, res.error
        fault_server.assert_exactly_once(hashes)
        assert Counter(r.fault for r in fault_server.requests)["throttle"] > 0
        # one write = one session: batch_seq 1..25, last flag only on 25
        assert len(fake.sessions) == 1
        seqs = sorted({b for b, _, _ in next(iter(fake.sessions.values()))})
        assert seqs == list(range(1, 26))
        flags = {b: f for b, f, _ in next(iter(fake.sessions.values()))}
        assert [b for b, f in flags.items() if f] == [25]
        assert {t for _, _, t in next(iter(fake.sessions.values()))} == {2500}
        res = write_records(dest, "audience", [{"email": h} for h in hashes[:300]],
                            operation="delete", match_key="email")
        assert not res.rejected and not res.pending
    assert len(fault_server.store) == 2200 and set(fault_server.deleted.values()) == {1}
    assert len(fake.sessions) == 2
