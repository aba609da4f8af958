"""A person's profiles in ``conn forget`` (docs/privacy.md, docs/profiles.md).

Erasing a person by one identifier must reach every identity their profile joined and
every destination a profile sync delivered the profile to (keyed by its profile id), and
must leave nothing of them in the profile store. :func:`holding` finds the profiles
holding any of the subjects and every identifier they hold, so that ``conn forget``
searches and suppresses all of them; :func:`erase` removes those profiles' records,
identifiers, golden rows and matched pairs from the store, and rewrites its file (DuckDB
keeps deleted rows' bytes in free blocks). The merge history keeps the profile ids
(hashes) and record keys only, never an identifier.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conn.profiles import store
from conn.profiles.lookup import profile_ids

if TYPE_CHECKING:
    from conn.config.model import Project

def holding(project: Project, subjects: list[str]) -> tuple[list[str], list[str]]:
    """The ids of the profiles (of any built set) holding one of ``subjects`` (a profile
    id or any identifier, normalised per type), and the values of every identifier those
    profiles hold."""
    from conn.config.profiles import profile_sets

    if "profiles" not in project.raw or not store.path(project.state_dir).is_file():
        return [], []
    ids: list[str] = []
    values: list[str] = []
    t = store.table_name
    with store.opened(project.state_dir, read_only=True) as st:
        for ps in profile_sets(project).values():
            if not st.has(ps.name):
                continue
            found = list(dict.fromkeys(p for s in subjects for p in profile_ids(st, ps, s)))
            if not found:
                continue
            ids += found
            marks = ", ".join("?" for _ in found)
            values += [r["v"] for r in st.query(
                f"SELECT DISTINCT substr(e.ident, strpos(e.ident, chr(31)) + 1) AS v "
                f"FROM {t(ps.name, 'entries')} e JOIN {t(ps.name, 'records')} r "
                f"USING (rkey) WHERE r.profile IN ({marks}) ORDER BY 1", found)]
    return list(dict.fromkeys(ids)), list(dict.fromkeys(values))


def erase(project: Project, ids: list[str]) -> int:
    """Remove the profiles ``ids`` from every built set: their records, their
    identifiers, golden rows and matched pairs. Returns how many records left."""
    if not ids or not store.path(project.state_dir).is_file():
        return 0
    t = store.table_name
    marks = ", ".join("?" for _ in ids)
    gone = 0
    with store.opened(project.state_dir) as st:
        names = [r["table_name"][: -len(".records")] for r in st.query(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_name LIKE '%.records'")]
        st.con.execute("BEGIN")
        try:
            for name in names:
                rec = t(name, "records")
                held = f"SELECT rkey FROM {rec} WHERE profile IN ({marks})"
                st.con.execute(f"DELETE FROM {t(name, 'entries')} WHERE rkey IN ({held})",
                               ids)
                if st.has(name, "digests"):
                    st.con.execute(f"DELETE FROM {t(name, 'digests')} WHERE rkey IN "
                                   f"({held})", ids)
                if st.has(name, "matches"):
                    st.con.execute(f"DELETE FROM {t(name, 'matches')} WHERE record_a IN "
                                   f"({held}) OR record_b IN ({held})", ids + ids)
                if st.has(name, "golden"):
                    st.con.execute(f"DELETE FROM {t(name, 'golden')} WHERE profile_id IN "
                                   f"({marks})", ids)
                n = st.con.execute(f"SELECT count(*) FROM {rec} WHERE profile IN ({marks})",
                                   ids).fetchall()[0][0]
                st.con.execute(f"DELETE FROM {rec} WHERE profile IN ({marks})", ids)
                gone += int(n)
            st.con.execute("COMMIT")
        except BaseException:
            st.con.execute("ROLLBACK")
            raise
    if gone:
        # DuckDB keeps deleted rows' bytes in free blocks: the file is rewritten with
        # its live rows only, as conn forget does with every file it purges.
        from conn.state.backends.duckdb.privacy import rewrite

        rewrite(store.path(project.state_dir))
    return gone
