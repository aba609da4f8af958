"""Consent follows the person: a consent source's events resolved per profile.

For a sync over ``profiles.NAME`` with ``consent.subject_type`` (docs/profiles.md), each
event's subject is read as each named identifier type, normalised as the profile set
normalises that type (:func:`conn.profiles.edges.normalise`), and the event applies to
every profile holding that identifier. Then, per profile and purpose, the latest event
across all its identities wins; at the same instant the most restrictive wins (denied,
then malformed, then granted); an event without a readable time counts as the latest
(the consent source's own rules, :mod:`conn.consent.events`, over a profile's events).

Identifiers the last build found to be junk identify no one, so events under them reach
no profile, as junk values join no records. The result is a
:class:`~conn.consent.events.ConsentIndex` keyed by ``profile_id`` (the stream's primary
key), so the gate, expiry and ``conn explain`` use it as any consent source's; its
``by_identity`` table keeps each identity's latest event per purpose for ``conn
explain``. Everything is one DuckDB query joining the events to the profile store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from conn.consent.events import WINNER_ORDER, ConsentIndex, events_sql, index_of, prepare_events
from conn.profiles import store
from conn.profiles.edges import normalise
from conn.profiles.engine import SEP

if TYPE_CHECKING:
    from conn.config.model import Project
    from conn.config.profiles import IdentifierType, ProfileSet
    from conn.sync_context import SyncContext

#: Columns of the resolved events, in the order reports show them.
COLUMNS = ("profile_id", "subject", "identity_type", "identity", "purpose", "status",
           "timestamp", "jurisdiction", "legal_basis", "code")


def identified(events: pa.Table, types: tuple[IdentifierType, ...]) -> pa.Table:
    """Prepared events (:func:`conn.consent.events.prepare_events`) once per identifier
    type, each with ``identity_type`` and ``ident`` (``type \\x1f normalised value``, as
    the profile store holds identifiers; null where the subject is no value of the
    type)."""
    subjects = events.column("subject").combine_chunks()
    parts = []
    for t in types:
        value = normalise(subjects, t)
        ident = pc.binary_join_element_wise(pa.scalar(t.name + SEP), value, "")
        parts.append(events.append_column("identity_type", pa.repeat(t.name, len(events)))
                     .append_column("ident", ident))
    return pa.concat_tables(parts)  # the config names at least one type


def profile_index(name: str, spec: dict[str, Any], table: pa.Table, project: Project,
                  ps: ProfileSet, types: tuple[IdentifierType, ...], *,
                  file: str | None = None) -> ConsentIndex:
    """The consent of consent source ``name`` (events ``table``, entry ``spec``) per
    profile of ``ps`` and purpose, its events' subjects read as ``types``."""
    events = identified(prepare_events(name, spec, table, file=file), types)
    by_identity = _resolve(events, project, ps)
    resolved = by_identity.filter(by_identity.column("decided")).drop_columns(["decided"])
    index = index_of(name, resolved, "profile_id")
    index.by_identity = by_identity
    return index


def _empty() -> pa.Table:
    """No events per identity (the set is not built yet)."""
    ts = pa.timestamp("us", "UTC")
    types = {"code": pa.int8(), "timestamp": ts, "decided": pa.bool_()}
    return pa.table({c: pa.array([], types.get(c, pa.string()))
                     for c in (*COLUMNS, "decided")})


def _resolve(events: pa.Table, project: Project, ps: ProfileSet) -> pa.Table:
    """Per profile, identity and purpose the latest event, ``decided`` where it is the
    profile's winning event for the purpose (ties between identities: the least
    identity type and value, so the choice shown is stable)."""
    if not store.path(project.state_dir).is_file():
        return _empty()  # not built: reading profiles.NAME says so
    t = store.table_name
    with store.opened(project.state_dir, read_only=True) as st:
        if not st.has(ps.name):
            return _empty()
        con = st.con
        con.execute("SET TimeZone = 'UTC'")
        con.register("_ev", events)
        try:
            rel = con.sql(f"""
                WITH e AS ({events_sql(events, "_ev", ", identity_type, ident")}),
                held AS (
                    SELECT DISTINCT en.ident, r.profile AS profile_id
                    FROM {t(ps.name, 'entries')} en JOIN {t(ps.name, 'records')} r
                         USING (rkey)
                    WHERE en.ident IN (SELECT ident FROM e)
                      AND en.ident NOT IN (SELECT ident FROM {t(ps.name, 'junk')})),
                latest AS (
                    SELECT h.profile_id, e.subject, e.identity_type,
                           substr(e.ident, length(e.identity_type) + 2) AS identity,
                           e.purpose, e.status, e.timestamp, e.jurisdiction,
                           e.legal_basis, e.code
                    FROM e JOIN held h USING (ident)
                    QUALIFY row_number() OVER (
                        PARTITION BY h.profile_id, e.ident, e.purpose
                        ORDER BY {WINNER_ORDER}, e.subject) = 1)
                SELECT *, row_number() OVER (
                           PARTITION BY profile_id, purpose
                           ORDER BY {WINNER_ORDER}, identity_type, identity) = 1
                           AS decided
                FROM latest""")
            return rel.to_arrow_table()
        finally:
            con.unregister("_ev")


def gate_index(ctx: SyncContext) -> ConsentIndex | None:
    """For a sync over ``profiles.NAME`` with ``consent.subject_type``, its consent
    source resolved per profile (give it to :func:`conn.consent.build_gate`); None for
    any other sync (the gate resolves its consent source per subject)."""
    from conn.config.profiles import consent_subject_types

    found = consent_subject_types(ctx.project, ctx.sync)
    source = (ctx.sync.consent or {}).get("source")
    spec = ctx.project.consent_sources.get(source) if isinstance(source, str) else None
    if found is None or spec is None or not isinstance(source, str):
        return None
    return profile_index(source, spec, ctx.consent_events(source), ctx.project, *found,
                         file=str(ctx.project.file))
