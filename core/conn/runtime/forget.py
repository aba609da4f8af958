"""``conn forget``: erase a person everywhere conn delivered them, keep them out, and
record it (docs/privacy.md).

1. **Find**, in conn's own state, every sync whose destination acknowledged the subject:
   records whose primary key or match value is one of the person's identifiers (an
   e-mail address compared trimmed and lowercased). Identifiers found (keys, match
   values) are searched again, so a person reached by e-mail in one sync is found by
   their key in another.
2. **Suppress**: the identifiers' HMAC digests join the suppression list, which the
   consent gate consults on every batch.
3. **Record** the receipt (ledger entry ``erasure``) and one pending erasure per record.
4. **Purge** the subject from each sync's state (records, change log, rejections) and
   from the run history's reports.
5. **Erase**: per sync, one sealed ``erase`` request (the destination's erasure API) or
   ``delete`` request, built by :func:`conn.runtime.delivery.delete_request` and sent
   through :meth:`Destination.write` (its ``deliver``); a destination with neither gets
   none and the receipt says to remove the person by hand. What the destination
   confirms is settled; the rest stays pending and is retried by the next ``conn sync``
   of that sync and by ``conn forget --retry``; every try is a ledger entry ``attempt``.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from conn import secrets
from conn.errors import ConfigError, StateError
from conn.privacy import receipts
from conn.privacy.identifiers import digest_of, digests, normalize
from conn.runtime import delivery
from conn.state.typed_text import decode_groups

if TYPE_CHECKING:
    from conn.config.model import Project, SyncConfig
    from conn.destination import Destination, ObjectInfo, Operation
    from conn.plugins import Registry
    from conn.state.contracts import PrivacyStore, StateStore

#: Rounds of searching identifiers found in one sync in the others.
ROUNDS = 3
#: Identifiers at least this long (or holding ``@``) are also scrubbed, as text, from
#: rejection reasons and run reports; shorter ones (``42``) would hit unrelated text.
SCRUB_MIN = 5


@dataclass
class Target:
    """One sync whose destination holds the person: what ``conn forget`` does there."""

    sync: str
    destination: str
    object: str
    operation: str  # erase, delete or none
    erasure_api: str
    match_key: str
    records: list[dict[str, Any]] = field(default_factory=list)

    def entry(self) -> dict[str, Any]:
        """The target as the receipt lists it (no identifier)."""
        return {"sync": self.sync, "destination": self.destination, "object": self.object,
                "operation": self.operation, "erasure_api": self.erasure_api or None,
                "records": len(self.records),
                "outcome": "manual" if self.operation == "none" else "pending",
                **({"note": receipts.MANUAL} if self.operation == "none" else {})}


def open_destination(project: Project, registry: Registry, name: str) -> Destination:
    """The destination ``name`` of the project, configured (as a sync builds it)."""
    cfg = project.destinations[name]
    cls = registry.destination_class(cfg.type)
    secrets.register_config_secrets(cfg.config, cls.config_schema)
    cls.validate_config(cfg.config, file=str(project.file), path=f"destinations.{name}.config")
    return cls.create(cfg.config, instance=name, project_dir=project.dir)


def operation_of(obj: ObjectInfo) -> str:
    """``erase`` where the object has an erasure API, else ``delete`` where it deletes,
    else ``none``."""
    ops = obj.capabilities.operations()
    return "erase" if "erase" in ops else "delete" if "delete" in ops else "none"


def _privacy(store: StateStore) -> PrivacyStore:
    privacy = store.privacy()
    if privacy is None:
        raise StateError(f"the state backend {type(store).__name__} keeps no suppression "
                         "list or receipts, so conn forget cannot run with it; use the "
                         "duckdb or postgres backend")
    return privacy


def _norm(values: Iterable[Any]) -> set[str]:
    arr = normalize(pa.array([None if v is None else str(v) for v in values], pa.string()))
    return {v for v in arr.to_pylist() if v is not None}


def find(project: Project, privacy: PrivacyStore, subjects: list[str],
         profiles: tuple[list[str], list[str]] = ([], [])
         ) -> tuple[set[str], dict[str, list[dict[str, Any]]]]:
    """The person's identifiers (normalised) and, per sync, the records holding them.
    ``profiles``: the ids of the person's profiles and every identifier they hold
    (:func:`conn.profiles.erasure.holding`), searched as the subjects are."""
    ids, values = profiles
    idents = _norm([*subjects, *values])
    raw = {*subjects, *ids}
    found: dict[str, dict[str, dict[str, Any]]] = {}
    for _ in range(ROUNDS):
        exact = sorted(idents | raw)
        emails = sorted(i for i in idents if "@" in i)
        for name in project.syncs:
            for r in privacy.find(name, exact, emails):
                found.setdefault(name, {})[r["key"]] = r
        more = _norm(v for rows in found.values() for r in rows.values()
                     for v in (r["key"], r["match_value"]))
        if more <= idents:
            break
        idents |= more
    return idents, {s: list(rows.values()) for s, rows in found.items()}


def plan(project: Project, registry: Registry, store: StateStore, subjects: list[str],
         profiles: tuple[list[str], list[str]] = ([], [])) -> tuple[set[str], list[Target]]:
    """What forgetting ``subjects`` (and ``profiles``, see :func:`find`) involves: their
    identifiers and one target per sync whose destination holds them."""
    idents, found = find(project, _privacy(store), subjects, profiles)
    targets = []
    for name, rows in found.items():
        sync = project.syncs[name]
        dest = open_destination(project, registry, sync.destination)
        try:
            obj = dest.object(sync.object)
        finally:
            dest.close()
        match_key = sync.match_key or (obj.identifiers[0] if obj.identifiers else "")
        targets.append(Target(name, sync.destination, obj.name, operation_of(obj),
                              obj.capabilities.erasure, match_key, rows))
    return idents, targets


def _scrub_texts(idents: Iterable[str]) -> list[str]:
    return sorted(i for i in idents if len(i) >= SCRUB_MIN or "@" in i)


def scrubber(texts: list[str]) -> Callable[[str], str]:
    """A function replacing each of ``texts`` (as a whole token) by ``[erased]``."""
    if not texts:
        return lambda s: s
    pattern = re.compile(r"(?<![\w.@+-])(" + "|".join(
        re.escape(t) for t in sorted(texts, key=len, reverse=True)) + r")(?![\w@-])",
        re.IGNORECASE)
    return lambda s: pattern.sub("[erased]", s)


def forget(project: Project, registry: Registry, store: StateStore, subjects: list[str],
           *, dry_run: bool = False) -> dict[str, Any]:
    """Forget ``subjects`` (see the module docstring); with ``dry_run`` only say what
    would happen. Returns the receipt (or the plan)."""
    if not subjects or any(not str(s).strip() for s in subjects):
        raise ConfigError("conn forget needs a subject: a non-empty identifier")
    from conn.profiles.erasure import erase, holding

    privacy = _privacy(store)
    people = holding(project, subjects)
    idents, targets = plan(project, registry, store, subjects, people)
    profiles = people[0]
    if dry_run:
        return {"dry_run": True, "identifiers": len(idents), "profiles": len(profiles),
                "targets": [t.entry() for t in targets]}
    salt = privacy.salt(create=True)
    assert salt is not None
    receipt_id = f"rcpt_{uuid.uuid4().hex[:20]}"
    listed = [d for d in digests(pa.array(sorted(idents), pa.string()), salt).to_pylist() if d]
    # Kept out first: from here on, no run delivers the person again.
    privacy.suppress(listed, receipt_id)
    opened = {"kind": "erasure", "receipt_id": receipt_id, "created_at": receipts.now(),
              "subjects": sorted({digest_of(s, salt) for s in subjects}),
              "identifiers": sorted(listed), "suppressed": len(listed),
              "targets": [t.entry() for t in targets]}
    privacy.append(receipt_id, receipts.body(opened))
    rows = []
    for i, t in enumerate(targets):
        if t.operation == "none":
            continue
        keys = pa.array([r["key"] for r in t.records], pa.string())
        key_digests = digests(keys, salt).to_pylist()
        rows += [{"id": uuid.uuid4().hex, "receipt_id": receipt_id, "target": i,
                  "sync": t.sync, "match_value": r["match_value"],
                  "match_type": r["match_type"], "key_digest": kd, "hash": r["hash"] or 0}
                 for r, kd in zip(t.records, key_digests, strict=True)]
    privacy.add_pending(rows)
    texts = _scrub_texts(idents)
    held = {t.sync: {r["key"] for r in t.records} for t in targets}
    for name in project.syncs:
        # Syncs not holding the person now may hold them in a retired state.
        privacy.purge(name, sorted(held.get(name, set()) | idents), texts,
                      retired_only=name not in held)
    keys = sorted(idents.union(*held.values()))
    experiments = store.experiment_store()
    if experiments is not None:
        # A holdout member's key is the person's too: it leaves every experiment.
        experiments.forget(keys)
    _forget_trigger_state(project, store, keys)
    # Nothing of the person stays in the profile store (their profiles' records,
    # identifiers and golden rows); a build that reads them again from the sources
    # brings them back there, and the suppression list keeps them from every sync.
    erase(project, profiles)
    if texts:
        privacy.scrub_history(texts, scrubber(texts))
    retry(project, registry, store, trigger="forget", receipt_id=receipt_id)
    return receipt(store, receipt_id)


def _forget_trigger_state(project: Project, store: StateStore, keys: list[str]) -> None:
    """A trigger keeps each key's last watched value: the person leaves it too."""
    for name, sync in project.syncs.items():
        trigger = sync.raw.get("trigger")
        if not trigger:
            continue
        found = store.trigger_state(name, str(trigger))
        if found is None:
            continue
        try:
            found.forget(keys)
        finally:
            found.close()


def receipt(store: StateStore, receipt_id: str) -> dict[str, Any]:
    """One receipt, as :func:`conn.privacy.receipts.assemble` builds it."""
    found = receipts.assemble(_privacy(store).ledger()).get(receipt_id)
    if found is None:
        raise StateError(f"no receipt {receipt_id!r} in the state store")
    return {"receipt_id": receipt_id, **found}


def retry(project: Project, registry: Registry, store: StateStore, *, sync: str | None = None,
          trigger: str = "retry", receipt_id: str | None = None) -> dict[str, int]:
    """Send the pending erasures (of one sync, or of one receipt, or all); return how
    many records were erased and how many stay pending."""
    privacy = _privacy(store)
    rows = [r for r in privacy.pending() if (sync is None or r["sync"] == sync)
            and (receipt_id is None or r["receipt_id"] == receipt_id)]
    totals = {"erased": 0, "pending": 0}
    by_sync: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_sync.setdefault(r["sync"], []).append(r)
    for name, part in by_sync.items():
        cfg = project.syncs.get(name)
        if cfg is None:
            _record(privacy, part, [], trigger, f"sync {name!r} is no longer declared in "
                    "conn.yml; declare it again to send the erasure")
            totals["pending"] += len(part)
            continue
        try:
            dest = open_destination(project, registry, cfg.destination)
        except Exception as exc:
            _record(privacy, part, [], trigger, str(exc))
            totals["pending"] += len(part)
            continue
        try:
            obj = dest.object(cfg.object)
            match_key = cfg.match_key or (obj.identifiers[0] if obj.identifiers else "")
            done = send(privacy, part, dest, obj, match_key, cfg, trigger)
        finally:
            with contextlib.suppress(Exception):
                dest.close()
        totals["erased"] += done
        totals["pending"] += len(part) - done
    return totals


def retry_sync(store: StateStore, dest: Destination, obj: ObjectInfo, match_key: str,
               sync: SyncConfig) -> dict[str, int] | None:
    """At the start of a sync's run: send its pending erasures before its rows. Returns
    the figures for the report (``erasures``), None when none were pending. A destination
    still failing leaves them pending for the next run, and the sync goes on (the people
    are withheld by the gate either way)."""
    privacy = store.privacy()
    if privacy is None:
        return None
    rows = [r for r in privacy.pending() if r["sync"] == sync.name]
    if not rows:
        return None
    done = send(privacy, rows, dest, obj, match_key, sync, "sync")
    return {"retried": len(rows), "erased": done, "pending": len(rows) - done}


def send(privacy: PrivacyStore, rows: list[dict[str, Any]], dest: Destination,
         obj: ObjectInfo, match_key: str, sync: SyncConfig, trigger: str) -> int:
    """Send pending erasures of one sync to its (open) destination; settle what it
    confirms and record an attempt per target. Returns the records confirmed."""
    op = operation_of(obj)
    if op == "none":
        _record(privacy, rows, [], trigger, receipts.MANUAL)
        return 0
    confirmed: list[str] = []
    errors: list[str] = []
    clear = sorted({str(r["match_value"]) for r in rows if r["match_value"] is not None})
    text = pa.array([r["match_value"] for r in rows], pa.string())
    tokens = pa.array([r["match_type"] for r in rows], pa.string())
    for idx, values in decode_groups(text, tokens):
        picked = [rows[i] for i in idx.to_pylist()]
        batch = pa.RecordBatch.from_arrays([values], names=[match_key])
        basis = delivery.basis(pa.array([r["key_digest"] for r in picked], pa.string()), None,
                               pa.array([int(r["hash"] or 0) for r in picked], pa.uint64()))
        operation: Operation = op  # type: ignore[assignment]
        try:
            request = delivery.delete_request(sync.name, obj, batch, match_key,
                                              operation=operation, basis=basis)
            result = dest.write(request)
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            continue
        bad = {r.index for r in result.rejected} | set(result.pending)
        confirmed += [r["id"] for i, r in enumerate(picked) if i not in bad]
        if result.error is not None:
            errors.append(str(result.error))
        errors += [r.reason for r in result.rejected[:3]]
    privacy.settle(confirmed)
    error = scrubber(clear)(secrets.redact("; ".join(dict.fromkeys(errors)))) or None
    _record(privacy, rows, confirmed, trigger, error)
    return len(confirmed)


def _record(privacy: PrivacyStore, rows: list[dict[str, Any]], confirmed: list[str],
            trigger: str, error: str | None) -> None:
    """One ledger ``attempt`` entry per (receipt, target) of ``rows``."""
    done = set(confirmed)
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["receipt_id"], int(r["target"])), []).append(r)
    for (rid, target), part in groups.items():
        ok = sum(r["id"] in done for r in part)
        outcome = "done" if ok == len(part) else "pending"
        entry = {"kind": "attempt", "receipt_id": rid, "target": target, "at": receipts.now(),
                 "trigger": trigger, "outcome": outcome, "confirmed": ok,
                 "pending": len(part) - ok,
                 "error": None if outcome == "done" else (error or "not confirmed")}
        privacy.append(rid, receipts.body(entry))


def status(store: StateStore, query: str) -> dict[str, Any]:
    """The chain's check and the receipts matching ``query`` (a receipt id, or a subject
    whose digest a receipt lists)."""
    privacy = _privacy(store)
    entries = privacy.ledger()
    problems = receipts.verify(entries)
    all_receipts = receipts.assemble(entries)
    if query in all_receipts:
        matched = [query]
    else:
        salt = privacy.salt(create=False)
        digest = digest_of(query, salt) if salt is not None and query.strip() else None
        matched = [rid for rid, r in all_receipts.items()
                   if digest in (*r.get("subjects", []), *r.get("identifiers", []))]
    return {"chain": {"intact": not problems, "entries": len(entries),
                      "head": entries[-1]["hash"] if entries else receipts.LEDGER_ROOT,
                      "problems": problems},
            "receipts": [{"receipt_id": rid, **all_receipts[rid]} for rid in matched]}
