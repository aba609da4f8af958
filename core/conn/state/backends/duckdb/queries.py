"""SQL finding one person's records in a sync's state file for ``conn forget``, the
change log not yet folded into ``records`` included (a run that crashed leaves it for
the next open to fold). What was delivered (``conn explain``) is in :mod:`.delivered`."""

from __future__ import annotations

#: Records of a sync file, the change log not yet folded included (latest change per
#: key; a key whose latest change is a delete is not held).
FIND = """WITH last AS (SELECT ch.kid, ch.key, ch.hash, CASE WHEN c.mv_is_key THEN ch.key
    ELSE ch.match_value END AS mv, c.match_type, c.op, row_number() OVER (PARTITION BY
    ch.kid ORDER BY ch.seq DESC) AS rn FROM changes ch JOIN commits c USING (seq)),
  held AS (SELECT key, hash, match_value AS mv, match_type FROM acknowledged
    WHERE kid NOT IN (SELECT kid FROM last)
    UNION ALL SELECT key, hash, mv, match_type FROM last WHERE rn = 1 AND op = 1)
  SELECT key, mv AS match_value, match_type, hash FROM held
  WHERE key IN (SELECT v FROM _exact) OR mv IN (SELECT v FROM _exact)
    OR lower(trim(mv)) IN (SELECT v FROM _emails)
    OR lower(trim(key)) IN (SELECT v FROM _emails)"""
