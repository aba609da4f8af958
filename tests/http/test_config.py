"""The shared HTTP settings: schema fragments, retry policies, rate limits, client."""

from __future__ import annotations

import subprocess
import sys

import jsonschema
from conn.destination import RateLimit
from conn.http import RetryPolicy
from conn.http.config import (
    client_from_config,
    concurrency_schema,
    flat_retry_policy,
    http_settings_schema,
    rate_limit_from_config,
    retry_policy,
)


def test_schema_fragments_validate_the_settings():
    schema = {"type": "object", "additionalProperties": False,
              "properties": {"concurrency": concurrency_schema(default=2, maximum=8),
                             **http_settings_schema(timeout=30)}}
    jsonschema.validate({"concurrency": 8, "timeout": 1.5,
                         "retry": {"max_attempts": 2, "base_delay": 0}}, schema)
    for bad in ({"concurrency": 9}, {"timeout": 0}, {"retry": {"max_attempts": 0}},
                {"retry": {"other": 1}}):
        assert not jsonschema.Draft202012Validator(schema).is_valid(bad)
    assert schema["properties"]["timeout"]["default"] == 30


def test_retry_policies():
    assert retry_policy(None) == RetryPolicy()
    assert retry_policy({"max_attempts": 2, "max_total_wait": 5}) == RetryPolicy(
        max_attempts=2, max_total_wait=5.0)
    assert flat_retry_policy({}, max_retry_wait=300) == RetryPolicy(max_total_wait=300.0)
    assert flat_retry_policy({"max_attempts": 3, "retry_base_delay": 1, "max_retry_wait": 9},
                             max_retry_wait=300) == RetryPolicy(3, 1.0, max_total_wait=9.0)


def test_rate_limit_from_config():
    assert rate_limit_from_config(None) is None
    assert rate_limit_from_config({"requests": 5}) == RateLimit(5, 1.0)
    assert rate_limit_from_config({"requests": 5, "per_seconds": 2, "burst": 3,
                                   "daily": 100}) == RateLimit(5, 2.0, 3, 100)


def test_client_from_config():
    client = client_from_config({"timeout": 7, "retry": {"max_attempts": 2}},
                                "https://example.test", timeout=30, name="t")
    try:
        assert client.retry == RetryPolicy(max_attempts=2)
        assert client.name == "t"
    finally:
        client.close()
    flat = client_from_config({}, timeout=30, retry=RetryPolicy(max_attempts=1))
    try:
        assert flat.retry.max_attempts == 1
    finally:
        flat.close()


def test_config_module_does_not_import_httpx():
    code = "import sys, conn.http.config; print('httpx' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
