"""Rate limiter: burst then steady rate, shared across threads, daily budget."""

from __future__ import annotations

import itertools
import threading
import time

import pytest
from conn.destination import RateLimit
from conn.errors import RetryLater
from conn.http import RateLimiter


def test_burst_then_steady_rate(clock) -> None:
    lim = RateLimiter(10, 1.0, burst=5, clock=clock, sleep=clock.sleep)
    start = clock()
    times = []
    for _ in range(25):
        lim.acquire()
        times.append(clock() - start)
    assert times[:5] == [0.0] * 5  # the burst leaves at once
    steady = [b - a for a, b in itertools.pairwise(times[5:])]
    assert all(abs(d - 0.1) < 1e-9 for d in steady)  # then one every 1/rate seconds
    assert times[-1] == pytest.approx(2.0)  # 25 requests = 5 burst + 20 at 10/s


def test_default_burst_spaces_requests_evenly(clock) -> None:
    lim = RateLimiter.from_rate_limit(RateLimit(100, per_seconds=10), clock=clock,
                                      sleep=clock.sleep)
    assert lim is not None and lim.rate == pytest.approx(10)
    for _ in range(11):
        lim.acquire()
    # 100 per 10 s, evenly: no 10-second window ever sees more than 100 + 1 requests
    assert clock() - 1000.0 == pytest.approx(1.0)


def test_quiet_period_refills_burst_only(clock) -> None:
    lim = RateLimiter(10, burst=3, clock=clock, sleep=clock.sleep)
    for _ in range(3):
        lim.acquire()
    clock.now += 60  # a long pause refills the bucket, but only up to ``burst``
    waits = [lim.acquire() for _ in range(4)]
    assert waits[:3] == [0.0, 0.0, 0.0] and waits[3] == pytest.approx(0.1)


@pytest.mark.serial
def test_shared_across_threads_real_clock() -> None:
    rate, n, workers = 100.0, 40, 8
    lim = RateLimiter(rate, burst=1)
    stamps: list[float] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(n // workers):
            lim.acquire()
            with lock:
                stamps.append(time.monotonic())

    threads = [threading.Thread(target=work) for _ in range(workers)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = max(stamps) - t0
    expected = (n - 1) / rate  # first request immediately, then one per 10 ms
    # Never faster than the rate, shared by all threads. The upper bound only checks that
    # nobody starves: on a loaded machine threads are descheduled at will, so exact
    # spacing is asserted on the fake clock above, not here.
    assert elapsed >= expected * 0.95
    assert elapsed <= expected + 2.0


def test_pause_holds_every_worker(clock) -> None:
    lim = RateLimiter(1000, clock=clock, sleep=clock.sleep)
    lim.acquire()
    lim.pause(2.0)
    assert lim.acquire() == pytest.approx(2.0)


def test_daily_budget_exhausted_raises_retry_later(clock) -> None:
    wall = [86400.0 * 20000 + 3600]
    lim = RateLimiter(1000, daily=3, clock=clock, sleep=clock.sleep, wall=lambda: wall[0],
                      name="hubspot")
    for _ in range(3):
        lim.acquire()
    with pytest.raises(RetryLater, match="daily request budget of 3 exhausted for hubspot"):
        lim.acquire()
    wall[0] += 86400  # next UTC day: the budget is back
    lim.acquire()
    assert lim.used_today == 1


def test_invalid_rate() -> None:
    with pytest.raises(ValueError):
        RateLimiter(0)
