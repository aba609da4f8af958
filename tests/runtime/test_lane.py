"""The delivery lane: order, bounded depth, stop on failure, errors back on the caller."""

from __future__ import annotations

import threading
import time

import pytest
from conn.runtime.lane import DeliveryLane


def job(*steps):
    """A job running ``steps`` (callables) in turn and returning None."""
    def run() -> None:
        for step in steps:
            step()
    return run


def test_jobs_run_in_order_on_one_thread() -> None:
    seen: list[tuple[int, int]] = []
    with DeliveryLane() as lane:
        for i in range(50):
            lane.submit(lambda i=i: seen.append((i, threading.get_ident())))
    assert [i for i, _ in seen] == list(range(50))
    threads = {t for _, t in seen}
    assert len(threads) == 1 and threading.get_ident() not in threads


def test_depth_bounds_the_jobs_in_flight() -> None:
    release = threading.Event()
    started: list[int] = []
    lane = DeliveryLane(depth=2)
    lane.submit(job(lambda: started.append(1), lambda: release.wait(5)))
    lane.submit(lambda: started.append(2))
    blocked = threading.Thread(target=lane.submit, args=(lambda: started.append(3),))
    blocked.start()
    time.sleep(0.2)
    assert blocked.is_alive(), "a third job must wait while two are in flight"
    release.set()
    blocked.join(5)
    lane.drain()
    lane.close()
    assert started == [1, 2, 3]


def test_false_stops_the_lane_and_skips_later_jobs() -> None:
    ran: list[int] = []
    with DeliveryLane(depth=3) as lane:
        lane.submit(lambda: ran.append(1))
        lane.submit(lambda: ran.append(2) or False)
        lane.drain()
        assert lane.stopped
        lane.submit(lambda: ran.append(3))
        assert lane.call(lambda: ran.append(4) or "x") is None
    assert ran == [1, 2]


def test_a_job_error_is_raised_on_the_caller_and_later_jobs_are_skipped() -> None:
    ran: list[int] = []

    def boom() -> None:
        raise RuntimeError("destination exploded")

    lane = DeliveryLane()
    lane.submit(boom)
    time.sleep(0.1)
    with pytest.raises(RuntimeError, match="exploded"):
        lane.submit(lambda: ran.append(1))
    lane.submit(lambda: ran.append(2))
    lane.drain()
    lane.close()
    assert ran == []


def test_caller_error_still_delivers_what_was_handed_over() -> None:
    ran: list[int] = []
    with pytest.raises(ValueError), DeliveryLane() as lane:
        lane.submit(job(lambda: time.sleep(0.1), lambda: ran.append(1)))
        lane.submit(lambda: ran.append(2))
        raise ValueError("the source failed")
    assert ran == [1, 2]


def test_interrupt_skips_queued_jobs_but_finishes_the_running_one() -> None:
    ran: list[int] = []
    running = threading.Event()

    def slow() -> None:
        running.set()
        time.sleep(0.2)
        ran.append(1)

    with pytest.raises(KeyboardInterrupt), DeliveryLane() as lane:
        lane.submit(slow)
        lane.submit(lambda: ran.append(2))
        running.wait(5)
        raise KeyboardInterrupt
    assert ran == [1]


def test_call_returns_the_result_after_queued_jobs() -> None:
    ran: list[int] = []
    with DeliveryLane() as lane:
        lane.submit(job(lambda: time.sleep(0.05), lambda: ran.append(1)))
        assert lane.call(lambda: len(ran)) == 1
