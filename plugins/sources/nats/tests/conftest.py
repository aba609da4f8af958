"""Fixtures: the local NATS server with JetStream (tests skip, saying why, when it is
not reachable or JetStream is off) and JetStream streams unique to each test, deleted
afterwards (conn_source_nats.testing, which conn's own follow tests use too)."""

from __future__ import annotations

import pytest
from conn_source_nats.testing import fixtures

nats_server, js_stream = fixtures(pytest.skip)
