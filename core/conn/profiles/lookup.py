"""Reading built profiles: one profile by id or identifier, and a set's figures."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pyarrow as pa

from conn.config.profiles import ProfileSet, profile_sets
from conn.errors import ConfigError
from conn.profiles import store
from conn.profiles.edges import normalise
from conn.profiles.engine import SEP

if TYPE_CHECKING:
    from conn.config.model import Project

#: The most identifiers a change's cause is shown with (a record holds a handful).
MOST_SHOWN = 6
#: Bounds of the size buckets ``conn profiles stats`` shows (records per profile).
SIZES = ((1, 1), (2, 2), (3, 5), (6, 10), (11, 100), (101, None))


def _sets(project: Project, name: str | None) -> list[ProfileSet]:
    sets = profile_sets(project)
    if name is not None and name not in sets:
        raise ConfigError(f"unknown profile set {name!r} (declared: "
                          f"{', '.join(sets) or 'none'})", file=str(project.file),
                          path="profiles")
    return [ps for n, ps in sets.items() if name in (None, n)]


def idents_of(ps: ProfileSet, key: str) -> list[str]:
    """``key`` read as each identifier type of ``ps`` (normalised as that type)."""
    out = []
    for t in ps.types.values():
        v = normalise(pa.array([key], pa.string()), t)[0].as_py()
        if v is not None:
            out.append(f"{t.name}{SEP}{v}")
    return out


def profile_ids(st: store.ProfileStore, ps: ProfileSet, key: str) -> list[str]:
    """The ids of the profiles of ``ps`` holding ``key`` (a profile id or an
    identifier; one identifier may sit in several profiles a limit kept apart)."""
    t = store.table_name
    rows = st.query(f"SELECT DISTINCT profile FROM {t(ps.name, 'records')} WHERE profile = ?",
                    [key])
    idents = idents_of(ps, key)
    if idents:
        rows += st.query(
            f"SELECT DISTINCT r.profile FROM {t(ps.name, 'entries')} e JOIN "
            f"{t(ps.name, 'records')} r USING (rkey) WHERE e.ident IN "
            f"({', '.join('?' for _ in idents)}) ORDER BY 1", idents)
    return list(dict.fromkeys(r["profile"] for r in rows))


def find_profiles(project: Project, key: str, name: str | None = None
                  ) -> list[dict[str, Any]]:
    """Every profile holding ``key``, with its identities, golden record and history."""
    path = store.path(project.state_dir)
    if not path.is_file():
        return []
    out = []
    with store.opened(project.state_dir, read_only=True) as st:
        for ps in _sets(project, name):
            if not st.has(ps.name):
                continue
            for pid in profile_ids(st, ps, key):
                out.append(describe(st, ps, pid))
    return out


def describe(st: store.ProfileStore, ps: ProfileSet, pid: str) -> dict[str, Any]:
    """One profile: identities (type, value, records, edges), golden fields, history and
    the matched pairs that joined its records."""
    t = store.table_name
    ids = st.query(
        f"SELECT split_part(e.ident, chr(31), 1) AS type, "
        f"substr(e.ident, strpos(e.ident, chr(31)) + 1) AS value, "
        f"count(DISTINCT e.rkey) AS records FROM {t(ps.name, 'entries')} e "
        f"JOIN {t(ps.name, 'records')} r USING (rkey) WHERE r.profile = ? "
        f"GROUP BY ALL ORDER BY 1, 2", [pid])
    gold = st.query(f"SELECT * FROM {t(ps.name, 'golden')} WHERE profile_id = ?", [pid])
    golden = gold[0] if gold else {}
    edges = golden.get("edges") or []
    history = []
    if st.has(ps.name, "changes"):
        # A cause names a record by its key (a hash); shown with the identifiers the
        # record holds now, read from the current entries, so that nothing erased since
        # is kept in the history (which is never rewritten).
        key = "TRY_CAST(substr(h.cause, 8) AS UBIGINT)"
        history = st.query(
            f"""WITH h AS (SELECT * FROM {t(ps.name, 'changes')}
                           WHERE old_id = ? OR new_id = ?),
                 ids AS (SELECT rkey, list_sort(list(replace(ident, chr(31), '='))) AS l
                         FROM {t(ps.name, 'entries')} WHERE rkey IN (SELECT {key} FROM h)
                         GROUP BY rkey)
            SELECT h.build_id, h.changed_at, h.kind, h.old_id, h.new_id,
                   CASE WHEN ids.l IS NULL THEN h.cause ELSE h.cause || ' (' ||
                        array_to_string(list_slice(ids.l, 1, {MOST_SHOWN}), ', ') ||
                        CASE WHEN len(ids.l) > {MOST_SHOWN} THEN ', …' ELSE '' END ||
                        ')' END AS cause
            FROM h LEFT JOIN ids ON ids.rkey = {key}
            ORDER BY h.changed_at, h.kind, h.old_id, h.new_id""", [pid, pid])
    matches = []
    if st.has(ps.name, "matches"):
        # The pairs that joined records of this profile (pairs a limit refused join
        # records of two profiles: listed under neither).
        matches = st.query(
            f"SELECT m.record_a, m.record_b, m.score, m.matcher FROM "
            f"{t(ps.name, 'matches')} m JOIN {t(ps.name, 'records')} a "
            f"ON a.rkey = m.record_a JOIN {t(ps.name, 'records')} b ON b.rkey = m.record_b "
            f"WHERE a.profile = ? AND b.profile = ? ORDER BY 1, 2, 4", [pid, pid])
    return {"set": ps.name, "profile_id": pid,
            "identities": [{**i, "edges": edges} for i in ids],
            "golden": golden, "history": history, "matches": matches}


def stats(project: Project, name: str | None = None) -> list[dict[str, Any]]:
    """Per built set: sizes, the largest profiles, identifiers at their limits, junk."""
    if not store.path(project.state_dir).is_file():
        raise ConfigError("no profiles built yet: run 'conn profiles build'",
                          file=str(project.file), path="profiles")
    out = []
    with store.opened(project.state_dir, read_only=True) as st:
        for ps in _sets(project, name):
            if st.has(ps.name):
                out.append(_set_stats(st, ps))
    return out


def _set_stats(st: store.ProfileStore, ps: ProfileSet) -> dict[str, Any]:
    t = store.table_name
    rec, ent = t(ps.name, "records"), t(ps.name, "entries")
    per = f"(SELECT profile, count(*) AS n FROM {rec} GROUP BY 1)"
    buckets = []
    for lo, hi in SIZES:
        cond = f"n >= {lo}" + (f" AND n <= {hi}" if hi is not None else "")
        label = str(lo) if lo == hi else (f"{lo}-{hi}" if hi else f"{lo}+")
        n = st.query(f"SELECT count(*) AS n FROM {per} WHERE {cond}")[0]["n"]
        buckets.append({"size": label, "profiles": n})
    totals = st.query(f"SELECT count(*) AS records, count(DISTINCT profile) AS profiles "
                      f"FROM {rec}")[0]
    largest = st.query(f"SELECT profile AS profile_id, count(*) AS records FROM {rec} "
                       f"GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 5")
    at_limit = []
    for it in ps.types.values():
        if it.limit is None:
            continue
        n = st.query(
            f"SELECT count(*) AS n FROM (SELECT r.profile FROM {ent} e JOIN {rec} r "
            f"USING (rkey) WHERE e.ident LIKE ? GROUP BY 1 "
            f"HAVING count(DISTINCT e.ident) >= ?)", [f"{it.name}{SEP}%", it.limit])
        at_limit.append({"type": it.name, "limit": it.limit, "profiles": n[0]["n"]})
    junk = st.query(
        f"SELECT split_part(ident, chr(31), 1) AS type, "
        f"substr(ident, strpos(ident, chr(31)) + 1) AS value, records "
        f"FROM {t(ps.name, 'junk')} ORDER BY records DESC, ident LIMIT 20")
    last = st.last_build(ps.name) or {}
    return {"set": ps.name, "records": totals["records"],
            "profiles": totals["profiles"], "built_at": str(last.get("built_at", "")),
            "sizes": buckets, "largest": largest, "at_limit": at_limit, "junk": junk}
