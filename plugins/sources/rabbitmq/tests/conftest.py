"""Fixtures: the local RabbitMQ server (guest/guest; tests skip, saying why, when it is
not reachable) and queues unique to each test, deleted afterwards
(conn_source_rabbitmq.testing, which conn's own follow tests use too)."""

from __future__ import annotations

import pytest
from conn_source_rabbitmq.testing import fixtures

rabbit, queue_name = fixtures(pytest.skip)
