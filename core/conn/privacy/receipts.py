"""Erasure receipts: machine-readable, hash-chained records of what ``conn forget`` did.

The state store keeps a **ledger**, an append-only list of entries, each holding the
SHA-256 of the previous entry and its own body (:func:`conn.state.contracts.chain_hash`).
Two kinds of entry:

* ``erasure``: a receipt is opened: its id, when, the digests of the subjects given and
  of every identifier found for the person (never the values; the same digests as the
  suppression list), how many were suppressed, and one **target** per
  sync whose destination held the person: destination, object, operation (``erase``,
  ``delete`` or ``none``), the vendor's erasure API, how many records;
* ``attempt``: one try at one target: when, what triggered it (``forget``, ``retry``,
  ``sync``), the outcome (``done`` or ``pending``), the records confirmed and the error.

A receipt (:func:`assemble`) is its ``erasure`` entry with every later ``attempt`` folded
in. Changing, removing or reordering any entry breaks the chain, and :func:`verify` says
where; removing entries at the very end is only visible against a copy of the last hash
(``conn forget --status`` prints it so it can be kept elsewhere).
"""

from __future__ import annotations

import json
import time
from typing import Any

from conn.state.contracts import LEDGER_ROOT, chain_hash

__all__ = ["LEDGER_ROOT", "MANUAL", "assemble", "body", "now", "verify"]

#: The outcome of a target whose destination offers neither erasure nor delete.
MANUAL = "no erasure or delete operation: remove the person by hand"


def body(entry: dict[str, Any]) -> str:
    """An entry's canonical JSON text (sorted keys, no blanks): what is hashed."""
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), default=str)


def now() -> str:
    """The current time, ISO 8601 UTC to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def verify(entries: list[dict[str, Any]]) -> list[str]:
    """Problems of the chain (empty when intact): an entry whose hash does not match its
    body, or that does not chain to the one before it."""
    problems = []
    prev = LEDGER_ROOT
    for i, e in enumerate(entries):
        if e["prev"] != prev:
            problems.append(f"entry {e['seq']} (receipt {e['receipt_id']}) does not follow "
                            f"entry {entries[i - 1]['seq'] if i else 'none'}: an entry "
                            "was removed, inserted or changed before it")
        if chain_hash(e["prev"], e["body"]) != e["hash"]:
            problems.append(f"entry {e['seq']} (receipt {e['receipt_id']}) was changed: "
                            "its hash does not match its content")
        prev = e["hash"]
    return problems


def assemble(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every receipt by id: the ``erasure`` entry with its targets' attempts and current
    outcome (the last attempt's; ``manual`` targets keep :data:`MANUAL`)."""
    out: dict[str, dict[str, Any]] = {}
    for e in entries:
        try:
            doc = json.loads(e["body"])
        except ValueError:
            continue
        rid = e["receipt_id"]
        if doc.get("kind") == "erasure":
            receipt = {k: v for k, v in doc.items() if k != "kind"}
            receipt["entry_hash"] = e["hash"]
            for t in receipt.get("targets", []):
                t.setdefault("attempts", [])
            out[rid] = receipt
        elif doc.get("kind") == "attempt" and rid in out:
            targets = out[rid].get("targets", [])
            i = doc.get("target")
            if isinstance(i, int) and 0 <= i < len(targets):
                attempt = {k: v for k, v in doc.items()
                           if k not in ("kind", "receipt_id", "target")}
                targets[i]["attempts"].append(attempt)
                targets[i]["outcome"] = doc.get("outcome")
    for receipt in out.values():
        outcomes = {t.get("outcome") for t in receipt.get("targets", [])}
        receipt["status"] = ("pending" if "pending" in outcomes
                             else "manual" if "manual" in outcomes else "complete")
    return out
