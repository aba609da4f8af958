"""An executable specification of conn's documented semantics.

Everything here is derived from conn's documentation, never from its code: README.md,
docs/consent.md ("consent.md"), docs/sync-modes.md ("sync-modes.md"),
docs/architecture.md ("architecture.md") and the plugin READMEs. Each rule's docstring
quotes or cites the section it comes from. ``test_differential.py`` drives the real
``conn`` CLI with random warehouses and compares it with this model after every run.

The model is deliberately small and slow (a Python loop per row): it must be obviously
right, not fast.

Where the documentation leaves a case open, the model says so (``OPTIONAL``: the test
accepts either answer) rather than guess; every such case is listed in the docstring of
:meth:`SyncModel.run`.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

#: Known disagreements between the code and the docs whose fixes are still pending. Each
#: name switches off (or narrows) one check or one kind of random input in the
#: differential test, in code that tests the name; remove the name and that code once the
#: fix has landed, and the test checks it again. Nothing else in the test may tolerate a
#: disagreement. Empty: every check is on.
_PENDING: frozenset[str] = frozenset({
})
#: ``CONN_SPEC_PENDING`` (comma-separated names, may be empty) overrides the list, e.g. to
#: see whether a fix has landed: ``CONN_SPEC_PENDING= pytest tests/spec``.
KNOWN_PENDING: frozenset[str] = (
    frozenset(n.strip() for n in os.environ["CONN_SPEC_PENDING"].split(",") if n.strip())
    if "CONN_SPEC_PENDING" in os.environ else _PENDING)

# --------------------------------------------------------------------------------------
# Consent (docs/consent.md)
# --------------------------------------------------------------------------------------


class Code(IntEnum):
    """A purpose's consent code.

    consent.md, "Combining": "codes are ordered ``no_record < granted < malformed <
    denied`` and the gate takes the maximum over column and events".
    """

    NO_RECORD = 0
    GRANTED = 1
    MALFORMED = 2
    DENIED = 3

    @property
    def reason(self) -> str:
        """The withholding reason of the run report (consent.md, "Audit")."""
        return self.name.lower()


#: consent.md, "Consent values", the table's ``granted`` row (case and surrounding blanks
#: ignored).
GRANT_STRINGS = frozenset((
    "granted", "grant", "given", "true", "t", "yes", "y", "1", "opt_in", "opted_in",
    "optin", "subscribed", "allow", "allowed", "accepted", "consented"))
#: consent.md, "Consent values", the table's ``denied`` row.
DENY_STRINGS = frozenset((
    "denied", "deny", "false", "f", "no", "n", "0", "opt_out", "opt-out", "opted_out",
    "opted-out", "optout", "unsubscribed", "revoked", "withdrawn", "withdraw", "declined",
    "decline", "refused", "rejected", "disallowed"))
#: Spellings near the lists that the docs single out: "a value that is not plainly a
#: grant (``opt-in`` with a hyphen, ``accept``, ``pending``, ``maybe``) is malformed";
#: the refusals among them are listed as denials.
NEAR_MISSES = ("opt-in", "opted-in", "accept", "pending", "opt-out", "withdraw", "decline")


def value_code(value: Any) -> Code:
    """The code of one consent value, from a column or an event's status.

    consent.md, "Consent values": "Booleans: ``true`` grants, ``false`` denies. Numbers: 1
    grants, 0 denies, any other number is malformed. Strings, by this table": granted,
    denied, "``no_record``: null", "``malformed``: any other string, the empty string
    included".
    """
    if value is None:
        return Code.NO_RECORD
    if isinstance(value, bool):
        return Code.GRANTED if value else Code.DENIED
    if isinstance(value, int | float):
        return Code.GRANTED if value == 1 else Code.DENIED if value == 0 else Code.MALFORMED
    text = str(value).strip().lower()
    if text in GRANT_STRINGS:
        return Code.GRANTED
    if text in DENY_STRINGS:
        return Code.DENIED
    return Code.MALFORMED


@dataclass(frozen=True)
class ConsentEvent:
    """One row of a consent source (consent.md, "Where consent comes from": "one row per
    event: subject, purpose, status, timestamp")."""

    subject: Any
    purpose: str
    status: Any
    timestamp: Any  # a comparable value (ISO text / datetime) or None


def subject_text(key: Any) -> str | None:
    """consent.md, "Subject matching": "exact string equality (integers are compared as
    their decimal text)"."""
    if key is None:
        return None
    return str(key)


def events_code(events: Iterable[ConsentEvent], subject: Any, purpose: str) -> Code:
    """The code a consent source gives one subject and purpose.

    consent.md, "Where consent comes from": "For each subject and purpose, the latest
    event wins. When two events carry the same timestamp, the more restrictive one wins
    (denied, then unreadable, then granted). An event whose time is missing or unreadable
    counts as the latest event and as a denial". "In a consent source, an event with a
    null status is malformed."
    """
    text = subject_text(subject)
    if text is None:
        return Code.NO_RECORD
    mine = [e for e in events if e.purpose == purpose and subject_text(e.subject) == text]
    if not mine:
        return Code.NO_RECORD
    if any(e.timestamp is None for e in mine):
        return Code.DENIED
    latest = max(e.timestamp for e in mine)
    codes = [Code.MALFORMED if e.status is None else value_code(e.status)
             for e in mine if e.timestamp == latest]
    # A null status at the latest time is malformed, never "no record".
    return max(Code.MALFORMED if c is Code.NO_RECORD else c for c in codes)


@dataclass(frozen=True)
class ConsentConfig:
    """A sync's consent settings (consent.md, "Configuration reference").

    ``purposes``: the destination's purposes (narrowed by the sync's, consent.md
    "Purposes"); ``columns``: purpose -> column of the synced rows; ``events``: whether
    the consent source applies; ``legal_basis``: purpose -> basis used "when no record
    exists".
    """

    purposes: tuple[str, ...]
    columns: dict[str, str] = field(default_factory=dict)
    events: bool = False
    legal_basis: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class GateDecision:
    """The gate's verdict on one row: per purpose code, whether it passes, and on which
    basis each purpose passed."""

    codes: dict[str, Code]
    passes: bool
    bases: dict[str, str]

    @property
    def reason(self) -> str | None:
        """The most restrictive code among failing purposes (the row's reason)."""
        failing = [c for p, c in self.codes.items() if p not in self.bases]
        return max(failing).reason if failing else None


def gate(row: dict[str, Any], key: Any, cfg: ConsentConfig,
         events: Sequence[ConsentEvent]) -> GateDecision:
    """Whether a row may be processed for every purpose of its destination.

    consent.md, "The rule": "A row passes only if, for every purpose of the destination"
    consent is granted, or nothing at all is known and "the sync names another legal
    basis"; "A legal basis only applies where no consent record exists: it never
    overrides a recorded refusal or withdrawal." "Combining": "a purpose passes on
    ``granted``, or on ``no_record`` when a legal basis is declared for it. A destination
    with no purposes receives every row". "Both: a denial anywhere wins [...] If one says
    nothing and the other says yes, the yes counts" (the maximum of the two codes).
    """
    codes: dict[str, Code] = {}
    bases: dict[str, str] = {}
    for purpose in cfg.purposes:
        code = Code.NO_RECORD
        if purpose in cfg.columns:
            code = max(code, value_code(row.get(cfg.columns[purpose])))
        if cfg.events:
            code = max(code, events_code(events, key, purpose))
        codes[purpose] = code
        if code is Code.GRANTED:
            bases[purpose] = "consent"
        elif code is Code.NO_RECORD and purpose in cfg.legal_basis:
            bases[purpose] = cfg.legal_basis[purpose]
    return GateDecision(codes, len(bases) == len(codes), bases)


# --------------------------------------------------------------------------------------
# Field policies and mapping (docs/consent.md, "Field policies", "Mapping")
# --------------------------------------------------------------------------------------


def hash_email(value: str | None) -> str | None:
    """consent.md, "Hash normalisation": email is "trim, lowercase", "then SHA-256
    lowercase hex; an empty normalised value becomes null, never the hash of ''"."""
    if value is None:
        return None
    norm = value.strip().lower()
    return hashlib.sha256(norm.encode()).hexdigest() if norm else None


def mask_email(value: str | None) -> str | None:
    """consent.md, "Field policies": ``mask`` is "a hint only: ``j***@example.com``"
    (the first character of the local part, ``***``, then the domain)."""
    if value is None:
        return None
    text = value.strip()
    local, at, domain = text.partition("@")
    if not at:
        return None if not text else text[:1] + "***"
    return f"{local[:1]}***@{domain}"


def apply_policy(policy: str, value: str | None) -> str | None:
    """consent.md, "Field policies": ``allow`` "sent as is", ``hash`` "normalised the way
    the platform matches it, then SHA-256 (hex)", ``mask`` "a hint only". (``drop``: "never
    leaves conn (a mapping that uses it is refused)": a configuration error, see the
    test's refused-policy rule.)"""
    if policy == "allow":
        return value
    if policy == "hash":
        return hash_email(value)
    if policy == "mask":
        return mask_email(value)
    raise ValueError(policy)


#: An address with one ``@``, a non-empty local part and a dotted domain, no blanks.
#: The generator only draws values that every reading of JSON Schema's ``format: email``
#: agrees on (``u3@x.org`` valid; ``not-an-email``, ``x@``, ``@x.org`` invalid).
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
#: A number as JSON spells it (RFC 8259, section 6).
NUMBER = re.compile(r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$")


@dataclass(frozen=True)
class ObjectProfile:
    """What a destination object declares, which decides the mapper's checks.

    consent.md, "Mapping": "Coercion to the object's field type: [...] a value that cannot
    be converted rejects its row"; "Row checks: [...] ``format: email`` [...] Failing rows
    are not sent"; "Format, pattern and enum are not checked on hashed or masked values".
    Objects without declared fields accept any value as it is.
    """

    declares_fields: bool  # email {format: email}, ltv {type: number} declared
    #: architecture.md, "Values travel exactly or not at all": ``json`` (the default, "a
    #: plugin that declares nothing gets the strict ``json`` rule": every HTTP API,
    #: webhook, Singer, files JSONL and CSV) does not carry "NaN, ±Infinity": the row is
    #: rejected with a reason. Only ``arrow`` objects (files Parquet) carry every value.
    json_values: bool = True


class Rejected(str):
    """A rejection reason category (the model does not predict the exact wording)."""


def map_row(row: dict[str, Any], key: Any, email_policy: str,
            obj: ObjectProfile, ltv_cast: bool = False) -> dict[str, Any] | Rejected:
    """The mapped record of a row that passed the gate, or why the mapper rejects it.

    The sync's mapping (the test's conn.yml) is ``customer_id``, ``email: {from: email,
    transforms: [trim, lower]}``, ``name``, and ``ltv`` (``{from: ltv, cast: number}``
    when ``ltv_cast``). consent.md, "Mapping", order per
    field: "source → transforms → [...] → coercion to the object's JSON Schema → row
    checks"; field policies apply in the gate, before the mapper (consent.md, first
    paragraph: "between the source and the mapper"). ``null: send`` is the default:
    nulls are sent.
    """
    email = apply_policy(email_policy, row["email"])
    if email is not None:
        email = email.strip().lower()
    if (obj.declares_fields and email_policy == "allow" and email is not None
            and not EMAIL.match(email)):
        return Rejected("email")
    ltv = row["ltv"]
    if isinstance(ltv, str) and (obj.declares_fields or ltv_cast):
        # Text converts when it is a number as JSON writes one; the docs name no other
        # spelling ("nan" and "inf" are not JSON numbers), so anything else is rejected.
        if not NUMBER.match(ltv):
            return Rejected("ltv")
        ltv = float(ltv)
    if isinstance(ltv, float) and not math.isfinite(ltv) and obj.json_values:
        return Rejected("ltv")
    return {"customer_id": key, "email": email, "name": row["name"], "ltv": ltv}


# --------------------------------------------------------------------------------------
# Destinations: what each one holds after a write (the plugin READMEs)
# --------------------------------------------------------------------------------------


@dataclass
class DestinationModel:
    """What one destination object holds: records by match value, or a list (append).

    The plugin READMEs decide how an operation lands:

    * files (README "Snapshot"): "for each match key the latest upsert/insert/update row,
      keys whose latest operation is a delete removed, appended rows all kept, in log
      order" (so an update of an unknown key lands as a row);
    * webhook: the test's receiver applies upserts/updates/inserts/deletes keyed on the
      JSON value of the match key and refuses an update of an unknown key (README
      "Replying": ``{"errors": [...]}``, "reported as rejected with your message and kept
      for the next run");
    * postgres (README "Destination"): ``INSERT ... ON CONFLICT (key) DO UPDATE``
      (upsert), ``UPDATE ... FROM`` ("rows with an unknown key are rejected"),
      ``DELETE ... USING``;
    * singer (README "How it works"): records, deletes as records with
      ``_sdc_deleted_at`` (replayed by key by the test).
    """

    update_unknown_rejected: bool
    keyed: dict[Any, dict[str, Any]] = field(default_factory=dict)
    appended: list[dict[str, Any]] = field(default_factory=list)

    def write(self, op: str, key: Any, record: dict[str, Any] | None) -> bool:
        """Apply one operation; False when the destination rejects the record."""
        if op == "append":
            self.appended.append(dict(record or {}))
        elif op == "delete":
            self.keyed.pop(key, None)
        elif op == "update" and key not in self.keyed and self.update_unknown_rejected:
            return False
        else:
            self.keyed[key] = dict(record or {})
        return True

    def content(self) -> list[dict[str, Any]]:
        """Records held, sorted for comparison."""
        rows = list(self.keyed.values()) + list(self.appended)
        return sorted(rows, key=canonical)


def canonical(record: dict[str, Any]) -> str:
    """A sort/compare key of a record that tells 2 from "2" (JSON, like PostgreSQL's
    ``row_to_json``, does not tell 1 from 1.0: numbers compare by value; NaN equals NaN)."""
    def norm(v: Any) -> tuple[str, str]:
        if isinstance(v, int | float) and not isinstance(v, bool):
            return ("number", repr(float(v)))
        return (type(v).__name__, repr(v))
    return repr(sorted((k, norm(v)) for k, v in record.items()))


# --------------------------------------------------------------------------------------
# Planning, modes, deletions, rejections (docs/sync-modes.md)
# --------------------------------------------------------------------------------------

#: sync-modes.md, "Modes": the operation each planned row is sent with.
SEND_OP = {"upsert": "upsert", "mirror": "upsert", "update": "update",
           "insert": "insert", "append": "append"}

COUNTS = ("rows_read", "consent_denied", "inserted", "updated", "deleted", "unchanged",
          "skipped", "rejected", "pending")


@dataclass
class RunResult:
    """What one run of a sync should report and leave behind."""

    counts: dict[str, int]
    #: key -> reason category of rows rejected in this run
    rejected_now: dict[Any, str]
    #: rows withheld by reason (consent.md, "Audit")
    withheld_by_reason: dict[str, int]
    #: purpose -> basis -> rows that passed the gate on it (consent.md, "Audit":
    #: "per purpose, how many rows passed on consent and on each other basis")
    legal_bases: dict[str, dict[str, int]]


@dataclass
class SyncModel:
    """One sync's acknowledged state, rejections and destination, run after run.

    sync-modes.md, "What is stored": "records: key, [...] payload hash, the destination's
    match value"; "rejections: key, reason, [...] Cleared when the key is acknowledged
    later, deleted, or gone from a completely read source".
    """

    name: str
    mode: str
    consent: ConsentConfig
    email_policy: str
    obj: ObjectProfile
    dest: DestinationModel
    ltv_cast: bool = False
    #: acknowledged payload by key (the "records" of the state)
    state: dict[Any, dict[str, Any]] = field(default_factory=dict)
    #: key -> reason category of the rejections ``conn rejected`` must list
    rejections: dict[Any, str] = field(default_factory=dict)
    #: keys whose presence in ``conn rejected`` the docs leave open (see ``run``)
    optional: set[Any] = field(default_factory=set)
    #: whether the state is bound to its target: sync-modes.md, "When a sync's target
    #: changes": "the identity is stored with the state"; a sync that never acknowledged
    #: nor rejected a row has no state to bind yet (nothing was ever sent)
    bound: bool = False
    #: key -> runs in a row it was rejected (sync-modes.md, "rejections": "``attempts``
    #: (runs in a row)"), None where the docs leave it open (a kept rejection of a run
    #: that did not reject the key again)
    attempts: dict[Any, int | None] = field(default_factory=dict)
    last_rejected: set[Any] = field(default_factory=set)

    def run(self, rows: Sequence[tuple[Any, dict[str, Any]]],
            events: Sequence[ConsentEvent], *, full_resync: bool = False) -> RunResult:
        """One complete run over the source's rows (in source order).

        sync-modes.md, "How a row is planned":

        1. gate (consent.md) then mapper; the mapper's rejections are "reported and
           retried" (consent.md, "Row checks");
        2. "Rows with a null primary key, and every repeat of a key already seen in this
           run [...] are rejected with a reason before anything is sent; the first row of
           a key wins";
        3. "no acknowledged row: insert; acknowledged with another hash: update;
           acknowledged with the same hash: unchanged (not sent)"; ``--full-resync`` "plans
           every valid row as an insert (new key) or update (known key), whatever its
           hash";
        4. "Deletions, after the last batch (mirror mode only): keys the destination holds
           [...] that were not seen in this run. A row is "not seen" when it left the
           source or the consent gate withheld it [...] Rows the mapper rejected are still
           in the source: the runner touch()es their keys so they are not deleted."

        Modes ("Modes" table): upsert/mirror send inserts and updates as upserts; update
        sends both as updates; insert sends inserts only, "changed rows of known keys are
        skipped (counted as ``skipped``, re-planned next run)"; append "inserts only, as
        new events/rows" (architecture.md, "Delivery": "``insert`` and ``append``: only
        new keys", so changed known keys are skipped as in insert mode).

        "The state only holds what the destination acknowledged. Everything else [...]
        still differs from the state, so the next run plans it again".

        Rejections left OPTIONAL (the docs do not say whether ``conn rejected`` still lists
        them): a key rejected earlier that this run neither acknowledged, rejected nor
        deleted while it is still in the source (withheld by the gate, unchanged against
        the state, or skipped).
        """
        counts = dict.fromkeys(COUNTS, 0)
        # ``suppressed``: nobody in these runs was forgotten (docs/privacy.md).
        withheld = {"no_record": 0, "expired": 0, "malformed": 0, "denied": 0,
                    "suppressed": 0}
        seen: set[Any] = set()
        touched: set[Any] = set()
        rejected_now: dict[Any, str] = {}
        acked: set[Any] = set()
        bases: dict[str, dict[str, int]] = {}
        in_source = {k for k, _ in rows}
        for key, row in rows:
            counts["rows_read"] += 1
            decision = gate(row, key, self.consent, events)
            if not decision.passes:
                counts["consent_denied"] += 1
                withheld[decision.reason or "no_record"] += 1
                continue
            for purpose, basis in decision.bases.items():
                per = bases.setdefault(purpose, {})
                per[basis] = per.get(basis, 0) + 1
            mapped = map_row(row, key, self.email_policy, self.obj, self.ltv_cast)
            if isinstance(mapped, Rejected):
                counts["rejected"] += 1
                rejected_now.setdefault(key, "mapper:" + mapped)
                touched.add(key)
                continue
            if key is None:
                counts["rejected"] += 1
                rejected_now.setdefault(None, "null key")
                continue
            if key in seen:
                counts["rejected"] += 1
                rejected_now.setdefault(key, "duplicate")
                continue
            seen.add(key)
            previous = self.state.get(key)
            if previous is None:
                planned = "inserted"
            elif previous != mapped or full_resync:
                planned = "updated"
            else:
                counts["unchanged"] += 1
                continue
            if planned == "updated" and self.mode in ("insert", "append"):
                counts["skipped"] += 1
                continue
            if self.dest.write(SEND_OP[self.mode], key, mapped):
                self.state[key] = mapped
                counts[planned] += 1
                acked.add(key)
            else:
                counts["rejected"] += 1
                rejected_now[key] = "destination"
        deleted: set[Any] = set()
        if self.mode == "mirror":
            for key in sorted((k for k in self.state if k not in seen | touched), key=repr):
                if self.dest.write("delete", key, None):
                    del self.state[key]
                    counts["deleted"] += 1
                    deleted.add(key)
        previous_rejections = self.rejections
        previous_optional = self.optional
        self.rejections = {}
        self.optional = set()
        for key in [*previous_rejections, *previous_optional]:
            if key in acked or key in deleted or key not in in_source:
                continue
            if key not in rejected_now:
                self.optional.add(key)
        attempts: dict[Any, int | None] = {}
        for key in rejected_now:
            before = self.attempts.get(key)
            if key in self.last_rejected:
                attempts[key] = None if before is None else before + 1
            else:
                attempts[key] = (None if key in previous_rejections or key in previous_optional
                                 else 1)
        for key in self.optional:
            attempts[key] = None
        self.attempts, self.last_rejected = attempts, set(rejected_now)
        for key, reason in rejected_now.items():
            self.rejections[key] = reason
            self.optional.discard(key)
        self.bound = self.bound or bool(acked or deleted or rejected_now)
        return RunResult(counts, rejected_now, withheld, bases)

    def reset(self) -> None:
        """A fresh start against a new target: no acknowledged records, no rejections."""
        self.state.clear()
        self.rejections.clear()
        self.optional.clear()
        self.bound = False
        self.attempts.clear()
        self.last_rejected.clear()
