"""Base class for destinations, and the data they receive and return.

A destination never builds its own input: the runtime hands it :class:`WriteRequest`s that
only the delivery module can create, after the consent gate, the mapper and the planner.
"""

from __future__ import annotations

import abc
import time
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from conn import interrupt
from conn.errors import ConfigError, ConnError
from conn.pipeline import WriteRequest, verify
from conn.plugin_base import Connector

if TYPE_CHECKING:
    pass

#: Sync modes a sync may declare (see docs/sync-modes.md).
MODES = ("upsert", "update", "insert", "mirror", "append", "events")
#: Operations the runtime asks a destination to perform.
Operation = Literal["upsert", "insert", "update", "delete", "append", "erase", "event",
                    "merge"]


@dataclass(frozen=True)
class RateLimit:
    """A destination's documented request budget: ``requests`` per ``per_seconds``, an
    optional ``burst`` above the steady rate and an optional ``daily`` cap."""

    requests: int
    per_seconds: float = 1.0
    burst: int | None = None
    daily: int | None = None


@dataclass(frozen=True)
class Capabilities:
    """What the runtime may ask of a destination object.

    ``batch_size`` is the most records one :meth:`Destination.write_batch` call takes (the
    API's per-request limit); ``concurrency`` how many calls may run at once; ``modes`` the
    sync modes it supports; ``supports_delete`` whether ``delete`` works (needed by
    ``mirror``; ``events`` mode's operation is ``event``, see :mod:`conn.events`).
    ``erasure`` names the vendor's erasure API when the object has one (e.g.
    ``"HubSpot GDPR delete"``): ``erase`` requests (``conn forget``) then go to it, and
    the destination removes the person rather than the record. ``merges`` names the
    vendor's merge API when the object has one (e.g. ``"HubSpot contact merge"``): when
    two profiles merge, ``merge`` requests then fold the absorbed record into the
    survivor's (:meth:`Destination.merge_batch`) instead of deleting it, so the record's
    history stays (docs/profiles.md, "Merges reach destinations"). ``values`` says which
    values its format carries exactly: ``"json"`` (JSON or other text; the mapper rejects
    rows holding NaN, ±Infinity or dates outside the years 0001-9999) or ``"arrow"``
    (typed columns holding any Arrow value); see :mod:`conn.mapping.carry`.
    """

    batch_size: int = 1000
    modes: frozenset[str] = frozenset({"upsert", "insert", "update", "mirror"})
    supports_delete: bool = True
    rate_limit: RateLimit | None = None
    concurrency: int = 1
    values: str = "json"
    erasure: str = ""
    merges: str = ""

    def operations(self) -> frozenset[str]:
        ops = set()
        for m in self.modes:
            ops |= {"mirror": {"upsert", "delete"}, "events": {"event"}}.get(m, {m})
        if not self.supports_delete:
            ops.discard("delete")
        if self.erasure:
            ops.add("erase")
        if self.merges:
            ops.add("merge")
        return frozenset(ops)


@dataclass(frozen=True)
class ObjectInfo:
    """An object a destination can write (contacts, an audience, a table).

    ``fields`` is a JSON Schema (``type: object``) of the fields it accepts;
    ``identifiers`` the fields that can serve as match key; ``personal`` tags personal
    fields (``{"email": "email"}``) so field policies apply.
    """

    name: str
    fields: Mapping[str, Any]
    identifiers: tuple[str, ...]
    capabilities: Capabilities = field(default_factory=Capabilities)
    personal: Mapping[str, str] = field(default_factory=dict)
    description: str = ""

    @property
    def properties(self) -> Mapping[str, Any]:
        return self.fields.get("properties", {})

    @classmethod
    def from_package(cls, package: str, name: str,
                     capabilities: Capabilities | None = None) -> ObjectInfo:
        """The object ``name`` declared by ``objects/<name>.schema.json`` in ``package``:
        a JSON Schema of its fields whose ``x-identifiers`` lists the fields that can
        serve as match key and ``x-personal`` (optional) tags personal fields with their
        kind (``{"email": "email"}``); the schema's ``description`` describes the object.
        Keys starting with ``x-`` are left out of :attr:`fields`. See
        :func:`packaged_object_names` for the objects a package ships."""
        import json
        from importlib import resources

        where = f"{package}: objects/{name}.schema.json"
        try:
            text = resources.files(package).joinpath(
                "objects", f"{name}.schema.json").read_text(encoding="utf-8")
        except (FileNotFoundError, ModuleNotFoundError):
            known = ", ".join(packaged_object_names(package)) or "none"
            raise ConnError(f"{where} does not exist (objects: {known})") from None
        try:
            schema = json.loads(text)
        except ValueError as exc:
            raise ConnError(f"{where} is not JSON: {exc}") from None
        if not isinstance(schema, dict) or not schema.get("x-identifiers"):
            raise ConnError(f"{where} needs \"x-identifiers\": the fields that can serve "
                            "as match key")
        return cls(name=name,
                   fields={k: v for k, v in schema.items() if not k.startswith("x-")},
                   identifiers=tuple(schema["x-identifiers"]),
                   capabilities=capabilities or Capabilities(),
                   personal=dict(schema.get("x-personal") or {}),
                   description=str(schema.get("description", "")))

    def with_fields(self, properties: Mapping[str, Any], *, identifiers: Iterable[str] = (),
                    personal: Mapping[str, str] | None = None) -> ObjectInfo:
        """This object with more fields (``properties``: name -> JSON Schema, e.g. the
        custom fields a config declares), more ``identifiers`` (appended) and more
        ``personal`` tags."""
        fields = {**self.fields, "properties": {**self.properties, **properties}}
        idents = (*self.identifiers, *(i for i in identifiers if i not in self.identifiers))
        return replace(self, fields=fields, identifiers=idents,
                       personal={**self.personal, **(personal or {})})

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(self.fields.get("required", ()))


def packaged_object_names(package: str) -> list[str]:
    """The objects ``package`` ships as ``objects/<name>.schema.json`` (see
    :meth:`ObjectInfo.from_package`), sorted."""
    from importlib import resources

    try:
        folder = resources.files(package).joinpath("objects")
        files = [f.name for f in folder.iterdir()] if folder.is_dir() else []
    except ModuleNotFoundError:
        return []
    return sorted(n.removesuffix(".schema.json") for n in files if n.endswith(".schema.json"))


@dataclass(frozen=True)
class Rejection:
    """One record the destination refused, with its reason (the vendor's message) and,
    for an API, an ``excerpt`` of the exchange (method, URL path, status, the record's
    part of the request and the start of the response, secrets masked; see
    :mod:`conn.http.exchange`), stored with the rejected row."""

    index: int
    reason: str
    retryable: bool = True
    excerpt: Mapping[str, Any] | None = field(default=None, compare=False)


@dataclass
class WriteResult:
    """Outcome of one write: rejected rows with reasons and rows left ``pending`` (never
    confirmed, e.g. the request failed midway). Every other row is acknowledged."""

    rejected: list[Rejection] = field(default_factory=list)
    pending: list[int] = field(default_factory=list)
    #: The exception that left rows pending, if any (the runtime reports it).
    error: BaseException | None = field(default=None, compare=False)

    @classmethod
    def ok(cls) -> WriteResult:
        return cls()

    @classmethod
    def all_pending(cls, n: int) -> WriteResult:
        return cls(pending=list(range(n)))

    @classmethod
    def all_rejected(cls, n: int, reason: str, retryable: bool = True) -> WriteResult:
        return cls(rejected=[Rejection(i, reason, retryable) for i in range(n)])

    def shifted(self, offset: int) -> WriteResult:
        return WriteResult(
            [replace(r, index=r.index + offset) for r in self.rejected],
            [i + offset for i in self.pending],
            self.error,
        )

    def extend(self, other: WriteResult) -> None:
        self.rejected.extend(other.rejected)
        self.pending.extend(other.pending)
        self.error = self.error or other.error


#: Config keys that tune *how* a destination writes, not *where*: left out of its
#: :meth:`Destination.target_identity` by default.
TUNING_KEYS = frozenset({
    "batch_size", "concurrency", "timeout", "connect_timeout", "max_attempts",
    "max_retry_wait", "retry", "retry_base_delay", "rate_limit", "daily_limit", "headers",
    "check", "compression", "fsync", "max_connections", "create_table", "evolve",
})


class Destination(Connector, abc.ABC):
    """A destination plugin. Duties: :meth:`check`, :meth:`objects`, :meth:`write_batch`.
    The runtime calls :meth:`deliver`, which is final: it verifies the request came
    through the consent gate, enforces the declared capabilities and splits batches to
    the limit.
    """

    #: The config keys that say *where* this destination writes (a URL, a path, an
    #: account, a list); ``None``: every key but secrets and :data:`TUNING_KEYS`.
    identity_keys: typing.ClassVar[tuple[str, ...] | None] = None

    def target_identity(self) -> dict[str, Any]:
        """The config values that say where this destination writes, compared with the
        ones stored with a sync's state before each run (a change means the state
        describes another place; see ``conn.state.target``). Secret fields and values
        from ``${ENV}`` references are never part of it (they are masked)."""
        from conn import secrets

        paths = {p[0] for p in secrets.secret_paths(self.config_schema or {})}
        keys = self.identity_keys
        out = {}
        for k, v in sorted(self.config.items()):
            if keys is not None and k not in keys:
                continue
            if keys is None and k in TUNING_KEYS:
                continue
            if k in paths or secrets.SECRET_KEY_HINTS.search(k):
                continue
            out[k] = secrets.redact_obj(v)
        return out

    @abc.abstractmethod
    def check(self) -> None:
        """Verify credentials and reachability with one cheap call; raise
        :class:`conn.errors.CheckFailed` with the vendor's reason otherwise."""

    @abc.abstractmethod
    def objects(self) -> list[ObjectInfo]:
        """Return the objects this destination can write, with fields and capabilities."""

    @abc.abstractmethod
    def write_batch(self, request: WriteRequest) -> WriteResult:
        """Perform ``request.operation`` for at most ``capabilities.batch_size`` records.
        Report per-record rejections with reasons; raise :class:`conn.errors.RetryLater`
        (or any exception) if nothing can be confirmed: all rows then stay pending."""

    def merge_batch(self, request: WriteRequest) -> WriteResult:
        """Merge records pairwise through the vendor's merge API
        (:attr:`Capabilities.merges`), for at most ``capabilities.batch_size`` pairs.

        :meth:`WriteRequest.merge_pairs` gives the pairs as two aligned Arrow arrays: the
        match values of the absorbed records and of the records that survive (both as
        the destination received them; the survivor was delivered before or in this
        run). Fold each absorbed record into its survivor, keeping its history.

        Report per pair, as :meth:`write_batch` does per record (``Rejection.index`` is
        the pair's position): an acknowledged pair is done and the absorbed record
        leaves the sync's state; a pair whose absorbed record the destination no longer
        has counts as done (the duplicate is gone); a rejected pair (say the survivor
        is missing) is listed with its reason and tried again next run, while the
        absorbed record stays; raise :class:`conn.errors.RetryLater` (or any exception)
        when nothing could be confirmed: every pair stays pending. Only called for
        objects that declare ``merges``."""
        raise NotImplementedError(f"{type(self).__name__} declares merges but does not "
                                  "implement merge_batch")

    def describe_requests(self, request: WriteRequest) -> list[dict[str, Any]]:
        """For ``--dry-run``: the requests ``write_batch`` would send (method, path,
        body), secrets redacted. Default: the records themselves."""
        return [{"operation": request.operation, "object": request.object.name,
                 "records": request.to_pylist()}]

    @typing.final
    def object(self, name: str) -> ObjectInfo:
        """Find an object by name, with a clear error listing what exists."""
        objs = self.objects()
        for o in objs:
            if o.name == name:
                return o
        known = ", ".join(sorted(o.name for o in objs)) or "none"
        raise ConfigError(
            f"destination {self.instance!r} has no object {name!r} (objects: {known})"
        )

    @typing.final
    def write(self, request: WriteRequest) -> WriteResult:
        """Write a planned batch and return the outcome of all of it (see
        :meth:`deliver`, which hands outcomes back chunk by chunk)."""
        result = WriteResult()
        for done in self.deliver(request):
            for part in done:
                result.extend(part.result.shifted(part.offset))
        result.rejected.sort(key=lambda r: r.index)
        result.pending.sort()
        return result

    @typing.final
    def deliver(self, request: WriteRequest, workers: Executor | None = None
                ) -> Iterator[list[ChunkResult]]:
        """Write a planned batch: the runtime's only way into a destination. Verifies
        the request came through the consent gate, enforces the declared capabilities,
        splits it into chunks of ``batch_size`` (one :meth:`write_batch` call each, or
        :meth:`merge_batch` for ``merge``; up to ``concurrency`` at once) and yields the
        outcomes of the chunks that finished, as soon as they finish (several at once
        when they finished together).

        A chunk is sent only while fewer than ``concurrency`` chunks are in flight or
        finished but not yet handed back and taken (the caller commits them before it
        asks for more): so a crash re-sends at most ``concurrency`` requests. Once a
        chunk fails, the chunks not yet sent stay pending rather than hammer a
        destination that is down; the next run resumes with them. When the run is asked
        to stop (:mod:`conn.interrupt`), no further chunk is sent and the chunks in
        flight get :data:`ABANDON_AFTER` seconds to answer; the others stay pending.

        ``workers`` runs the :meth:`write_batch` calls (the runtime passes one executor
        per run, so a destination with ``concurrency`` 1 sees every write from the same
        thread); without it they run on the calling thread, or on a pool of this call's
        own when ``concurrency`` is above 1."""
        verify(request)
        caps = request.object.capabilities
        if request.operation not in caps.operations():
            raise ConnError(
                f"destination {self.instance!r} object {request.object.name!r} does not "
                f"support {request.operation!r}"
            )
        n = len(request)
        if n == 0:
            return
        size = max(1, caps.batch_size)
        offsets = list(range(0, n, size))

        def one(offset: int) -> ChunkResult:
            chunk = replace(request.slice(offset, size), chunk=offset // size,
                            chunks=len(offsets), rows_total=n)
            try:
                res = (self.merge_batch(chunk) if chunk.operation == "merge"
                       else self.write_batch(chunk))
            except Exception as exc:  # the runtime decides what to do; rows stay pending
                res = WriteResult(pending=list(range(len(chunk))), error=exc)
            _check_indices(self, res, len(chunk))
            return ChunkResult(offset, len(chunk), res)

        def pending(rest: list[int]) -> list[ChunkResult]:
            return [ChunkResult(o, min(size, n - o), WriteResult.all_pending(min(size, n - o)))
                    for o in rest]

        if workers is None and caps.concurrency <= 1:
            for i, offset in enumerate(offsets):
                if interrupt.is_requested():
                    yield pending(offsets[i:])
                    return
                part = one(offset)
                yield [part]
                if part.result.error is not None:
                    if offsets[i + 1:]:
                        yield pending(offsets[i + 1:])
                    return
            return
        own = workers is None
        pool = workers or ThreadPoolExecutor(max_workers=caps.concurrency,
                                             thread_name_prefix="conn-write")
        running: dict[Future[ChunkResult], int] = {}
        try:
            yield from _pooled(pool, running, offsets, one, pending,
                               max(1, caps.concurrency))
        finally:
            if own:
                # Requests already sent cannot be called back; a caller that stops
                # early (an interrupted run) does not wait for them.
                pool.shutdown(wait=not running, cancel_futures=True)


@dataclass(frozen=True)
class ChunkResult:
    """The outcome of one chunk of a request (one :meth:`Destination.write_batch`
    call): rows ``offset`` to ``offset + length`` of the request; ``result``'s indices
    are relative to the chunk."""

    offset: int
    length: int
    result: WriteResult


#: Seconds the requests in flight get to answer once a run is asked to stop.
ABANDON_AFTER = 2.0


def _pooled(pool: Executor, running: dict[Future[ChunkResult], int], offsets: list[int],
            one: Callable[[int], ChunkResult],
            pending: Callable[[list[int]], list[ChunkResult]],
            concurrency: int) -> Iterator[list[ChunkResult]]:
    """:meth:`Destination.deliver` on ``pool``: at most ``concurrency`` chunks sent and
    not yet handed back; ``running`` maps the chunks in flight to their offsets."""
    todo = list(offsets)
    failed = False
    give_up: float | None = None
    while todo or running:
        if interrupt.is_requested() and give_up is None:
            failed, give_up = True, time.monotonic() + ABANDON_AFTER
        while todo and not failed and len(running) < concurrency:
            offset = todo.pop(0)
            running[pool.submit(one, offset)] = offset
        if failed and todo:
            yield pending(todo)
            todo = []
        if not running:
            return
        timeout = 0.25 if give_up is None else max(0.0, give_up - time.monotonic())
        finished, _ = wait(running, timeout=timeout, return_when=FIRST_COMPLETED)
        if not finished:
            if give_up is not None and time.monotonic() >= give_up:
                # Not waited for any longer: their rows stay pending (as after a crash).
                yield pending(sorted(running.values()))
                return
            continue
        done = sorted((f.result() for f in finished), key=lambda c: c.offset)
        for f in finished:
            running.pop(f)
        failed = failed or any(c.result.error is not None for c in done)
        yield done


def _check_indices(dest: Destination, res: WriteResult, n: int) -> None:
    bad = [r.index for r in res.rejected if not 0 <= r.index < n]
    bad += [i for i in res.pending if not 0 <= i < n]
    if bad:
        raise ConnError(
            f"destination {dest.instance!r} reported results for rows outside its batch: "
            f"{bad[:5]}"
        )


def object_schema_errors(obj: ObjectInfo) -> Sequence[str]:
    """Sanity checks a destination's object declaration must pass (conformance suite)."""
    problems = []
    if obj.fields.get("type") != "object":
        problems.append(f"object {obj.name!r}: fields schema must have type 'object'")
    for ident in obj.identifiers:
        if ident not in obj.properties:
            problems.append(f"object {obj.name!r}: identifier {ident!r} is not a field")
    if obj.capabilities.batch_size < 1:
        problems.append(f"object {obj.name!r}: batch_size must be at least 1")
    if obj.capabilities.values not in ("json", "arrow"):
        problems.append(f"object {obj.name!r}: capabilities.values must be 'json' or "
                        f"'arrow', not {obj.capabilities.values!r}")
    return problems
