"""conn.http.LazyClient: one client per destination, made once on first use."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest
from conn.destination import Destination
from conn.http import HttpClient, LazyClient


class Counting(LazyClient, Destination):
    name = "counting"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.made: list[HttpClient] = []
        self.closed_too = False

    def make_client(self) -> HttpClient:
        time.sleep(0.02)  # a slow construction: other threads arrive meanwhile
        client = HttpClient("http://127.0.0.1:9")
        self.made.append(client)
        return client

    def check(self) -> None:
        pass

    def objects(self):
        return []

    def write_batch(self, request):
        raise NotImplementedError


def test_concurrent_first_uses_make_one_client() -> None:
    dest = Counting({}, instance="c")
    seen: list[HttpClient] = []
    threads = [threading.Thread(target=lambda: seen.append(dest.client)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(dest.made) == 1 and all(c is dest.made[0] for c in seen)
    dest.close()


def test_close_closes_the_client_and_the_next_use_makes_a_new_one() -> None:
    dest = Counting({}, instance="c")
    dest.close()  # nothing made yet: nothing to close
    first = dest.client
    with dest:
        assert dest.client is first
    assert first._client.is_closed
    second = dest.client
    assert second is not first and len(dest.made) == 2
    dest.close()


def test_close_reaches_the_next_class_in_line() -> None:
    class WithMore(Counting):
        def close(self) -> None:
            super().close()
            self.closed_too = True

    dest = WithMore({}, instance="c")
    _ = dest.client
    dest.close()
    assert dest.made[0]._client.is_closed and dest.closed_too


def test_make_client_is_a_duty() -> None:
    class Forgot(LazyClient, Destination):
        def check(self) -> None:
            pass

        def objects(self):
            return []

        def write_batch(self, request):
            raise NotImplementedError

    with pytest.raises(TypeError, match="make_client"):
        Forgot({})


def test_the_mixin_imports_no_httpx() -> None:
    code = "import sys; from conn.http import LazyClient; print('httpx' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
