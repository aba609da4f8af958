"""Writing API batches: split on whole-batch rejection, re-chunking, and one request per
record for APIs without a batch endpoint (:func:`write_each`).

Many APIs refuse a whole payload (HTTP 400) because of one bad record and do not say
which. :func:`write_with_split` then halves the batch recursively until every record is
either accepted as part of some accepted sub-batch or rejected on its own with the
vendor's message. A record that is accepted is sent successfully exactly once.

``send(records)`` is the plugin's function for one API call. It returns per-record
outcomes (see :data:`Outcome`) or raises :class:`BatchRejected` when the API refused the
whole payload. Any other exception leaves the records of that call (and, for
:func:`write_in_chunks`, the calls not yet made) pending, with the exception attached.

Every rejection these helpers make or pass on carries the excerpt of the request that
rejected it (:mod:`conn.http.exchange`): the record as ``send``/``call`` got it, the
method, path and status, and the start of the vendor's answer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, TypeVar

from conn.destination import Rejection, WriteResult
from conn.http import exchange

T = TypeVar("T")

#: What ``send`` may return: ``None`` (all accepted), a mapping ``{index: reason}`` of
#: rejected records, a sequence with one entry per record (``None`` = accepted, a string =
#: rejection reason), or a ready :class:`WriteResult` (indices relative to the call).
Outcome = None | Mapping[int, str] | Sequence[str | None] | WriteResult


class BatchRejected(Exception):
    """The API refused the whole payload; ``reason`` is the vendor's message.

    ``retryable`` is copied onto the resulting :class:`~conn.destination.Rejection`
    (False for validation errors that will fail again with the same data).
    """

    def __init__(self, reason: str, *, retryable: bool = False, status: int | None = None):
        super().__init__(reason)
        self.reason, self.retryable, self.status = reason, retryable, status


def _to_result(outcome: Outcome, n: int, retryable: bool) -> WriteResult:
    if outcome is None:
        return WriteResult()
    if isinstance(outcome, WriteResult):
        return outcome
    if isinstance(outcome, Mapping):
        items = list(outcome.items())
    else:
        if len(outcome) != n:
            raise ValueError(f"send() returned {len(outcome)} outcomes for {n} records")
        items = [(i, r) for i, r in enumerate(outcome) if r is not None]
    bad = [i for i, _ in items if not 0 <= i < n]
    if bad:
        raise ValueError(f"send() reported records outside its batch of {n}: {bad[:5]}")
    return WriteResult(rejected=[Rejection(i, str(r), retryable) for i, r in sorted(items)])


def explained(result: WriteResult, records: Sequence[Any]) -> WriteResult:
    """``result`` (indices relative to ``records``) with each rejection that has no
    excerpt given the one of this thread's last exchange (none if it sent nothing since
    :func:`conn.http.exchange.clear`)."""
    ex = exchange.last()
    if ex is None or not result.rejected:
        return result
    result.rejected[:] = [
        r if r.excerpt is not None or not 0 <= r.index < len(records)
        else replace(r, excerpt=exchange.excerpt(records[r.index], ex))
        for r in result.rejected]
    return result


def write_with_split(records: Sequence[T], send: Callable[[Sequence[T]], Outcome], *,
                     retryable: bool = False, min_size: int = 1) -> WriteResult:
    """Send ``records`` with ``send``; on :class:`BatchRejected` split in halves and retry
    each half, down to single records, which are then rejected with the vendor's reason.

    ``retryable`` marks per-record rejections returned by ``send``. ``min_size`` stops the
    splitting early: a rejected batch of at most ``min_size`` records has all its records
    rejected with the batch's reason. Returns indices relative to ``records``.
    """
    result = WriteResult()

    def attempt(lo: int, items: Sequence[T]) -> None:
        exchange.clear()
        try:
            part = _to_result(send(items), len(items), retryable)
        except BatchRejected as exc:
            if len(items) <= max(1, min_size):
                whole = WriteResult.all_rejected(len(items), exc.reason, exc.retryable)
                result.extend(explained(whole, items).shifted(lo))
                return
            mid = len(items) // 2
            attempt(lo, items[:mid])
            attempt(lo + mid, items[mid:])
            return
        except Exception as exc:  # transient or fatal: these rows stay pending
            result.pending.extend(range(lo, lo + len(items)))
            result.error = result.error or exc
            return
        result.extend(explained(part, items).shifted(lo))

    if records:
        attempt(0, records)
    result.rejected.sort(key=lambda r: r.index)
    result.pending.sort()
    return result


def chunked(records: Sequence[T], size: int) -> Iterator[tuple[int, Sequence[T]]]:
    """Yield ``(offset, chunk)`` pairs of at most ``size`` records."""
    size = max(1, int(size))
    for offset in range(0, len(records), size):
        yield offset, records[offset:offset + size]


def write_in_chunks(records: Sequence[T], size: int,
                    write: Callable[[Sequence[T]], WriteResult]) -> WriteResult:
    """For APIs whose limit is smaller than the batch the caller passes: call ``write``
    per chunk of ``size`` and merge the results (indices relative to ``records``).

    If a chunk raises, it and every later chunk are left pending with the error (a
    throttled or broken API will not do better for the next chunk).
    """
    result = WriteResult()
    stopped = False
    for offset, chunk in chunked(records, size):
        if stopped:
            result.pending.extend(range(offset, offset + len(chunk)))
            continue
        try:
            part = write(chunk)
        except Exception as exc:
            result.pending.extend(range(offset, offset + len(chunk)))
            result.error = result.error or exc
            stopped = True
            continue
        result.extend(part.shifted(offset))
    return result


def write_each(records: Sequence[T], call: Callable[[T], str | None], *, workers: int = 1,
               retryable: bool = False) -> WriteResult:
    """For APIs that take one record per request (``DELETE /persons/{id}``, a PUT per
    member): ``call(record)`` for each record, on up to ``workers`` threads.

    ``call`` returns None when the API took the record, or the vendor's reason when it
    refused that record alone: a :class:`~conn.destination.Rejection` (``retryable`` as
    given; secrets masked). An exception (credentials refused, retries exhausted, the
    run asked to stop) leaves that record pending with the error, and stops the calls not
    yet started, whose records stay pending too: an API that fails for one record will
    not do better for the next. Returns indices relative to ``records``.
    """
    from conn import secrets

    result = WriteResult()
    lock = threading.Lock()
    failed = threading.Event()

    def one(i: int) -> None:
        if failed.is_set():
            with lock:
                result.pending.append(i)
            return
        exchange.clear()
        try:
            reason = call(records[i])
        except Exception as exc:  # the rows stay pending; the runtime reports the error
            failed.set()
            with lock:
                result.pending.append(i)
                result.error = result.error or exc
            return
        if reason is not None:
            with lock:
                result.rejected.append(Rejection(i, secrets.redact(reason), retryable,
                                                 exchange.excerpt(records[i])))

    if workers > 1 and len(records) > 1:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="conn-each") as pool:
            list(pool.map(one, range(len(records))))
    else:
        for i in range(len(records)):
            one(i)
    result.rejected.sort(key=lambda r: r.index)
    result.pending.sort()
    return result
