"""``StateStore.delivered`` of the DuckDB store: a sync's acknowledged records of some
keys and since when each was delivered (for ``conn explain`` and access reports)."""

from __future__ import annotations

from typing import Any

#: A sync's acknowledged records of some keys (``_want``), the change log not yet folded
#: into ``records`` included (a run that crashed leaves it for the next open to fold).
_DELIVERED = """WITH last AS (SELECT ch.key, ch.kid, ch.match_value, c.op, c.mv_is_key,
    {match_type} AS match_type, c.committed_at, c.run_id, row_number() OVER
    (PARTITION BY ch.kid ORDER BY ch.seq DESC) AS rn FROM changes ch JOIN commits c
    USING (seq) WHERE ch.key IN (SELECT key FROM _want))
  SELECT key, match_value, {match_type_view} AS match_type,
    strftime(acked_at, '%Y-%m-%dT%H:%M:%SZ') AS acked_at, run_id FROM acknowledged
    WHERE key IN (SELECT key FROM _want) AND kid NOT IN (SELECT kid FROM last)
  UNION ALL SELECT key, CASE WHEN mv_is_key THEN key ELSE match_value END, match_type,
    strftime(committed_at, '%Y-%m-%dT%H:%M:%SZ'), run_id FROM last WHERE rn = 1 AND op = 1"""


def _delivered_sql(version: int) -> str:
    typed = version >= 4
    return _DELIVERED.format(match_type="c.match_type" if typed else "NULL",
                             match_type_view="match_type" if typed else "NULL")


#: When the wanted keys (``_want``) were first delivered: the commit listed in
#: ``first_acked``, else the record's own; for keys only in the change log, their first
#: upsert there. ``{first}``: the ``first_acked`` join, or nothing without the table.
_FIRST = """SELECT r.key, strftime(min(c.committed_at), '%Y-%m-%dT%H:%M:%SZ') AS first
    FROM records r {first} JOIN commits c ON c.seq = {seq}
    WHERE r.key IN (SELECT key FROM _want) GROUP BY r.key
  UNION ALL SELECT ch.key, strftime(min(c.committed_at), '%Y-%m-%dT%H:%M:%SZ') FROM changes ch
    JOIN commits c USING (seq) WHERE c.op = 1 AND ch.key IN (SELECT key FROM _want)
    AND ch.kid NOT IN (SELECT kid FROM records) GROUP BY ch.key"""


def delivered_rows(cur: Any, version: int, *, first_acked: bool) -> list[dict[str, Any]]:
    """What the destination acknowledged for the keys registered as ``_want`` on
    ``cur`` (a file of format ``version``), with ``first_acked_at`` (ISO 8601 UTC) read
    from the ``first_acked`` table if the file has one."""
    result = cur.execute(_delivered_sql(version))
    cols = [d[0] for d in result.description]
    rows = [dict(zip(cols, row, strict=True)) for row in result.fetchall()]
    if not rows:
        return rows
    sql = _FIRST.format(first="LEFT JOIN first_acked f USING (kid)" if first_acked else "",
                        seq="coalesce(f.seq, r.seq)" if first_acked else "r.seq")
    firsts = dict(cur.execute(sql).fetchall())
    for r in rows:
        r["first_acked_at"] = firsts.get(r["key"])
    return rows
