"""Closing the source while a read is still going on a read-ahead thread (a run refused
or failed before it consumed its batches) stops the thread before the connection
closes. Closing the driver's connection under the thread crashed the process (a
segfault, seen when a second run of a followed project was refused) or hung it, so the
attempts run in a child process, with a time limit, and its exit code is checked."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

CHILD = textwrap.dedent("""
    import random
    import sys
    import time
    from conn_postgres.source import PostgresSource

    url, table = sys.argv[1], sys.argv[2]
    for _ in range(200):
        src = PostgresSource({"url": url, "tables": [table]})
        batches = src.read(src.stream(table), batch_rows=1000)
        next(batches)  # the only batch: its thread is ending the read (a rollback)
        time.sleep(random.random() * 0.001)
        # A refused run's way out: the source is closed, its batches are not.
        src.close()
    print("ok")
""")



@pytest.mark.slow
def test_closing_the_source_under_a_read_ahead_thread_does_not_crash(pg_url, sql, table):
    sql(f'CREATE TABLE "{table}" (id int PRIMARY KEY, note text)')
    sql(f"INSERT INTO \"{table}\" SELECT i, 'x' FROM generate_series(1, 5) i")
    done = subprocess.run([sys.executable, "-c", CHILD, pg_url, table], capture_output=True,
                          text=True, timeout=90, env={**os.environ, "PYTHONFAULTHANDLER": "1"})
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-3000:]
