"""The access report (GDPR Art. 15) of ``conn explain SUBJECT --json``.

Built from what ``conn explain`` found for each sync (:mod:`conn.runtime.explain`) and
from conn's state: the personal data each destination receives or would receive (values
after field policies), the purposes, the legal basis of each purpose (the consent record
with its time and source, or the declared basis), the recipients (destination, plugin,
object and where it writes, without secrets) with the first and last acknowledged
delivery, and when consent with a ``max_age`` expires. The shape is documented in
docs/consent.md ("Access reports").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from conn.consent.expiry import as_utc_text, utc_timestamps
from conn.consent.values import GRANTED, classify

if TYPE_CHECKING:
    from conn.consent.gate import ConsentGate

#: The regulation article the report answers.
ARTICLE = "GDPR Art. 15"


def annotate_consent(gate: ConsentGate, rows: pa.RecordBatch, purpose: str,
                     entry: dict[str, Any], expired_rows: np.ndarray) -> None:
    """Add grant times and expiry to one purpose's ``conn explain`` entry: the consent
    column's ``granted_at``, ``expires_at`` of each grant under the purpose's
    ``max_age`` (``expired`` once past), the decision ``expired`` when expiry withholds
    the subject, and the entry's ``expires_at``: when the latest valid grant lapses."""
    expiry = gate.expiry
    age = expiry.max_age.get(purpose)
    if age is not None:
        entry["max_age"] = str(age)
    if entry["decision"] == "no_record" and bool(expired_rows.any()):
        entry["decision"] = "expired"
    valid: list[str] = []
    lapsed: list[str] = []
    for ev in entry["evidence"]:
        if "column" in ev:
            time_col = expiry.granted_at.get(purpose)
            if time_col is None:
                continue
            times = rows.column(time_col).slice(0, 1)
            ev["granted_at"] = as_utc_text(utc_timestamps(times, None))[0]
            granted = classify(rows.column(ev["column"]).slice(0, 1))[0] == GRANTED
        elif "timestamp" in ev:
            times = pa.array([ev["timestamp"]], pa.string())
            granted = ev.get("decision") == "granted"
        else:
            continue
        ends = expiry.expires_at(purpose, times)
        if ends is None or not granted:
            continue
        ev["expires_at"] = as_utc_text(ends)[0]
        if bool(expiry.is_expired(ends)[0]):
            ev["expired"] = True
            if "timestamp" in ev:
                ev["decision"] = "expired"
            lapsed.append(ev["expires_at"])
        elif ev["expires_at"] is not None:
            valid.append(ev["expires_at"])
    # When the consent that counts lapses (granted) or lapsed (expired): the latest grant.
    if entry["decision"] == "granted" and valid:
        entry["expires_at"] = max(valid)
    elif entry["decision"] == "expired" and lapsed:
        entry["expires_at"] = max(lapsed)


def _recipient_key(s: dict[str, Any]) -> tuple[str, str]:
    return s["destination"], s["object"]


def access_report(result: dict[str, Any], generated_at: str) -> dict[str, Any]:
    """The Art. 15 section of ``conn explain``'s result (its ``syncs`` as built by
    :func:`conn.runtime.explain.explain`)."""
    personal, bases, expiry = [], [], []
    recipients: dict[tuple[str, str], dict[str, Any]] = {}
    for s in result["syncs"]:
        delivered = s.get("delivered") or []
        if not s.get("found") and not delivered:
            continue
        if s.get("would_send") or delivered:
            personal.append({"sync": s["sync"], "destination": s["destination"],
                             "object": s["object"], "would_send": s["would_send"],
                             "delivered": bool(delivered),
                             "records": s.get("records", []),
                             "policies": {f: (v.get("policy") or {}).get("action", "allow")
                                          for f, v in s["fields"].items()}})
        if s.get("found"):
            for purpose, c in s.get("consent", {}).items():
                bases.append({"sync": s["sync"], "destination": s["destination"],
                              "purpose": purpose, "allowed": c["allowed"],
                              "legal_basis": c.get("legal_basis"),
                              "decision": c["decision"], "evidence": c["evidence"]})
                if c.get("max_age"):
                    expiry.append({"sync": s["sync"], "purpose": purpose,
                                   "max_age": c["max_age"],
                                   "expires_at": c.get("expires_at"),
                                   "expired": c["decision"] == "expired"})
        if not s.get("would_send") and not delivered:
            continue
        rec = recipients.setdefault(_recipient_key(s), {
            "destination": s["destination"], "object": s["object"],
            **{k: v for k, v in (s.get("recipient") or {}).items()
               if k not in ("destination", "object")},
            "purposes": [], "syncs": [], "would_send": False, "delivered": False,
            "first_delivered_at": None, "last_delivered_at": None})
        rec["syncs"].append(s["sync"])
        rec["purposes"] = sorted({*rec["purposes"], *s.get("purposes", [])})
        rec["would_send"] = rec["would_send"] or bool(s.get("would_send"))
        if delivered:
            rec["delivered"] = True
            # Times are ISO 8601 UTC text of one format: they compare as text.
            firsts = [x for x in [rec["first_delivered_at"],
                                  *(d.get("first_acknowledged_at") for d in delivered)] if x]
            lasts = [x for x in [rec["last_delivered_at"],
                                 *(d.get("acknowledged_at") for d in delivered)] if x]
            rec["first_delivered_at"] = min(firsts, default=None)
            rec["last_delivered_at"] = max(lasts, default=None)
    listed = list(recipients.values())
    return {"regulation": ARTICLE, "subject": result["subject"],
            "generated_at": generated_at, "personal_data": personal,
            "purposes": sorted({p for r in listed for p in r["purposes"]}),
            "legal_bases": bases, "recipients": listed, "consent_expiry": expiry}
