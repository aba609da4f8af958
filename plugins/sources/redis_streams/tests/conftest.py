"""Fixtures: the local Redis server (tests skip, saying why, when it is not reachable)
and stream keys unique to each test, deleted afterwards (conn_source_redis_streams.testing,
which conn's own follow tests use too)."""

from __future__ import annotations

import pytest
from conn_source_redis_streams.testing import fixtures

streams, stream_key = fixtures(pytest.skip)
