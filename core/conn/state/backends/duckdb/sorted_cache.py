"""The planner's sorted state of a sync's records, cached next to its DuckDB state file.

Opening a sync would otherwise sort the records' key ids and build the probing table
(:class:`~conn.state.planner.sorted_state.SortedState`) at every run. Instead, the end of
a run writes them as ``.npy`` files that the next open memory-maps::

    <sync>.duckdb.sorted/<generation>.{pairs,table}.npy         a base
    <sync>.duckdb.sorted/<generation>.layer-*.npy, .layer.json  a change layer over a base

The *generation* is a random token the state file's ``meta`` table holds; every
compaction of the records replaces it in its own transaction, so files written for other
records (a crash between the compaction and the cache write, a state file restored from
a backup) never match. Each file is written to a temporary name, fsynced and renamed;
anything missing, stale, truncated or unreadable falls back to reading the records.

**Change layers.** Rewriting the base costs O(records) (300 MB, ~2.7 s at 10M keys)
even when a run changed 1 % of them. While the keys changed since the base stay under
:data:`MAX_LAYER_FRACTION` of it, a generation is a small layer instead: the ids upserted
since the base with their hashes, and the base ids deleted since, read as one state by
:class:`~conn.state.planner.sorted_state.LayeredState`. The layer's manifest, naming its
base, is renamed into place last, so a layer is either whole or absent.

:class:`SortedCache` is the whole interface: :meth:`~SortedCache.read` at the open,
:meth:`~SortedCache.write` at the end of a run, :meth:`~SortedCache.wait` before the
sync's lock is released.
"""

from __future__ import annotations

import json
import logging
import mmap
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np
import pyarrow as pa

from conn.state.planner.sorted_state import (
    LayeredState,
    SortedState,
    table_layout,
    table_positions,
)

log = logging.getLogger(__name__)

#: The base's arrays (see :meth:`SortedState.parts`).
PARTS = ("pairs", "table")
#: A change layer's arrays, and its manifest (written last).
LAYER_PARTS = ("layer-upsert-kids", "layer-upsert-hashes", "layer-gone")
MANIFEST = "layer.json"
#: Above this share of the base's keys (upserted + deleted), the cache is rewritten whole.
MAX_LAYER_FRACTION = 0.125
#: Up to this many records, the cache is built in memory (pairs and table: 24 bytes per
#: key, 48 MB here) and written in one go on a thread, rather than streamed slice by
#: slice (700,000 keys: 0.11 -> 0.06 s); more keys are streamed to bound the run's peak.
IN_MEMORY_KEYS = 2_000_000
#: Ids per slice of the streamed table.
SLICE_ROWS = 1_000_000


class SortedRecords(Protocol):
    """What the cache reads from the records it caches (the DuckDB storage)."""

    def record_count(self) -> int:
        """How many records there are."""

    def sorted_pairs(self) -> np.ndarray:
        """Every record's (id, hash) pair, in key id order (id, hash, id, hash, ...)."""

    def sorted_batches(self) -> Iterator[pa.RecordBatch]:
        """Every record's ``(kid, hash)``, in key id order, in batches."""


class Changes(NamedTuple):
    """The latest change per key since the records had the generation ``since``."""

    since: str
    kids: np.ndarray
    hashes: np.ndarray
    #: True for an upsert, False for a deletion.
    upserted: np.ndarray


def fits_a_layer(changes: int, base: int) -> bool:
    """Whether ``changes`` keys changed since a base of ``base`` keys still make a layer."""
    return changes <= MAX_LAYER_FRACTION * base


class SortedCache:
    """The sorted-state cache of the state file ``owner`` (in ``<owner>.sorted/``)."""

    def __init__(self, owner: Path) -> None:
        self.owner = owner
        self.folder = owner.with_name(owner.name + ".sorted")
        self._job: threading.Thread | None = None

    # --- reading --------------------------------------------------------------------------

    def read(self, generation: str | None, records: int
             ) -> SortedState | LayeredState | None:
        """The cached state of ``generation`` if it holds exactly ``records`` keys, else
        ``None`` (with a warning when files are damaged or do not match)."""
        if generation is None:
            return None
        try:
            state = self._state(generation)
        except (OSError, ValueError, EOFError) as exc:
            if not isinstance(exc, FileNotFoundError):
                log.warning("%s: ignoring the sorted-state cache (%s)", self.owner, exc)
            return None
        if state is None or state.effective != records:
            log.warning("%s: ignoring the sorted-state cache (does not match the records)",
                        self.owner)
            return None
        return state

    def _state(self, gen: str) -> SortedState | LayeredState | None:
        """The cache of ``gen``: its own base, or a change layer over an earlier one's."""
        layer = _read_layer(self.folder, gen)
        if layer is None:
            return self._base(gen)
        base_gen, kids, hashes, gone = layer
        base = self._base(base_gen)
        return None if base is None else LayeredState(base, SortedState(kids, hashes), gone)

    def _base(self, gen: str) -> SortedState | None:
        parts = {p: _map_npy(f) for p, f in self._files(gen).items()}
        return SortedState.from_parts(parts["pairs"], parts["table"])

    def _files(self, gen: str) -> dict[str, Path]:
        return {p: self.folder / f"{gen}.{p}.npy" for p in PARTS}

    # --- writing --------------------------------------------------------------------------

    def write(self, generation: str, records: SortedRecords, *,
              changes: Changes | None = None,
              pairs: Callable[[], np.ndarray] | None = None) -> None:
        """Write the cache of ``generation`` (the records' current one) unless it exists,
        and remove every other generation's files. With the run's ``changes`` since an
        earlier generation, only a change layer over that generation's base is written
        while it stays small. ``pairs``: gives the records' (id, hash) pairs, in any
        order, instead of reading them (called on the writer thread).

        Up to :data:`IN_MEMORY_KEYS` records, the state is built in memory and written on
        a thread once the records are read, so that it overlaps the closing of the state
        file (DuckDB's checkpoint); :meth:`wait` waits for it. Best effort: a failure
        only costs the next open time (OS errors are logged; the records' own errors are
        raised to the caller)."""
        keep = self._existing(generation)
        if keep is None and changes is not None and changes.since != generation:
            keep = self._write_layer(generation, changes)
        if keep is None:
            files = self._files(generation)
            self.folder.mkdir(exist_ok=True)
            n = records.record_count()
            if 0 < n <= IN_MEMORY_KEYS:
                if pairs is None:
                    loaded = records.sorted_pairs()
                    pairs = lambda: loaded  # noqa: E731
                self._job = threading.Thread(target=self._build_and_write,
                                             args=(files, pairs), name="conn-state-cache")
                self._job.start()
                return
            written = bool(n) and _replace_files(
                files, lambda tmp: _stream(n, records.sorted_batches(), tmp), self.folder)
            keep = list(files.values()) if written else []
        self._keep_only(keep)

    def wait(self) -> None:
        """Wait for a cache being written on a thread (see :meth:`write`)."""
        if self._job is not None:
            self._job.join()
            self._job = None

    def discard(self) -> None:
        """Remove the cache (its state file is retired)."""
        if self.folder.exists():
            shutil.rmtree(self.folder)

    def _build_and_write(self, files: dict[str, Path], pairs: Callable[[], np.ndarray]
                         ) -> None:
        """Build the state of ``pairs()`` and write it as ``files``; then remove the
        other generations."""
        try:
            parts = SortedState.from_pairs(pairs()).parts()

            def write(tmp: dict[str, Path]) -> bool:
                for p, path in tmp.items():
                    with open(path, "wb") as f:
                        np.lib.format.write_array(f, parts[p], allow_pickle=False)
                        f.flush()
                        os.fsync(f.fileno())
                return True

            _replace_files(files, write, self.folder)
            self._keep_only(list(files.values()))
        except (OSError, ValueError) as exc:
            log.warning("%s: could not write the sorted-state cache (%s)", self.owner, exc)

    def _keep_only(self, keep: list[Path]) -> None:
        """Remove every cache file but ``keep``."""
        if self.folder.exists():
            names = {f.name for f in keep}
            for f in self.folder.iterdir():
                if f.name not in names:
                    f.unlink(missing_ok=True)

    def _existing(self, gen: str) -> list[Path] | None:
        """The files making up ``gen``'s cache if it is already written."""
        full = list(self._files(gen).values())
        if all(f.exists() for f in full):
            return full
        layer = _layer_files(self.folder, gen)
        if layer["manifest"].exists():
            base = _read_layer(self.folder, gen)
            base_files = list(self._files(base[0]).values()) if base else []
            if base_files and all(f.exists() for f in base_files):
                return list(layer.values()) + base_files
        return None  # (a layer whose base is gone is replaced by a whole cache)

    def _write_layer(self, gen: str, changes: Changes) -> list[Path] | None:
        """Write ``gen``'s cache as a change layer over the base of ``changes.since``;
        the files to keep, or ``None`` when that generation has no cache or the layer
        grew too big."""
        layer = _read_layer(self.folder, changes.since)
        base_gen = changes.since if layer is None else layer[0]
        base_files = self._files(base_gen)
        if not all(f.exists() for f in base_files.values()):
            return None
        base_kids = _map_npy(base_files["pairs"])[0::2]
        empty = np.empty(0, np.uint64)
        _, kids, hashes, gone = layer if layer is not None else (None, empty, empty, empty)
        kids, hashes, gone = merge_layer(base_kids, kids, hashes, gone, changes.kids,
                                         changes.hashes, changes.upserted)
        if not fits_a_layer(len(kids) + len(gone), len(base_kids)):
            return None
        _write_layer_files(self.folder, gen, base_gen, kids, hashes, gone)
        fsync_dir(self.folder)
        return list(_layer_files(self.folder, gen).values()) + list(base_files.values())


def _stream(n: int, batches: Iterator[pa.RecordBatch], tmp: dict[str, Path]) -> bool:
    """Write the cache of ``n`` records to the ``tmp`` files from ``batches`` (key id
    order), in slices of :data:`SLICE_ROWS`: this runs after the compaction, next to
    DuckDB's buffers, where building the whole SortedState took the run's peak past 1 GB
    at 10M keys. The probing table is the one :class:`SortedState` builds, placed slice by
    slice (:func:`~conn.state.planner.sorted_state.table_positions`). False if the
    records do not come in key id order."""
    layout = table_layout(n)
    with open(tmp["pairs"], "wb") as fp:
        _npy_header(fp, np.dtype(np.uint64), 2 * n)
        last = None
        for b in batches:
            kids = b.column(0).to_numpy().astype(np.uint64, copy=False)
            if len(kids) and ((last is not None and kids[0] < last)
                              or bool((kids[1:] < kids[:-1]).any())):
                return False
            if len(kids):
                last = kids[-1]
            pairs = np.empty(2 * len(kids), dtype=np.uint64)
            pairs[0::2] = kids
            pairs[1::2] = b.column(1).to_numpy().astype(np.uint64, copy=False)
            fp.write(pairs.data.cast("B"))
        fp.flush()
        os.fsync(fp.fileno())
    # Two passes over the written ids: the table's size (past the last position) goes
    # into its header, then the entries, in increasing position order.
    last_pos = -1
    for _, pos in _positions(tmp["pairs"], n, layout.shift):
        last_pos = int(pos[-1])
    size = layout.size(last_pos)
    item = layout.dtype.itemsize
    with open(tmp["table"], "wb") as ft:
        start = _npy_header(ft, layout.dtype, size)
        for i, pos in _positions(tmp["pairs"], n, layout.shift):
            seg = np.zeros(int(pos[-1] - pos[0]) + 1, dtype=layout.dtype)
            seg[pos - pos[0]] = i + 1  # entries hold position + 1
            ft.seek(start + int(pos[0]) * item)
            ft.write(seg.data.cast("B"))
        ft.truncate(start + size * item)
        ft.flush()
        os.fsync(ft.fileno())
    return True


def _positions(pairs_file: Path, n: int, shift: np.uint64
               ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(indices, table positions)`` of the sorted ids in ``pairs_file`` (id, hash,
    ...), in slices (:func:`~conn.state.planner.sorted_state.table_positions`)."""
    after = None
    with open(pairs_file, "rb") as f:
        np.lib.format.read_magic(f)
        np.lib.format.read_array_header_1_0(f)
        for lo in range(0, n, SLICE_ROWS):
            kids = np.fromfile(f, dtype=np.uint64, count=2 * min(SLICE_ROWS, n - lo))[0::2]
            i, pos = table_positions(kids, shift, start=lo, after=after)
            after = int(pos[-1])
            yield i, pos


# --- change layers ----------------------------------------------------------------------


def _contains(sorted_kids: np.ndarray, kids: np.ndarray) -> np.ndarray:
    """Mask of ``kids`` found in ``sorted_kids`` (binary search: both sides are large and
    ``np.isin`` would sort or hash them again)."""
    if not len(sorted_kids):
        return np.zeros(len(kids), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_kids, kids), len(sorted_kids) - 1)
    return sorted_kids[at] == kids


def _sorted_union(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    both = np.sort(np.concatenate([a, b]).astype(np.uint64, copy=False))
    return both[np.concatenate([[True], both[1:] != both[:-1]])] if len(both) else both


def merge_layer(base_kids: np.ndarray, upsert_kids: np.ndarray, upsert_hashes: np.ndarray,
                gone: np.ndarray, changed: np.ndarray, changed_hashes: np.ndarray,
                upserted: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The layer after a run: the previous layer (``upsert_*``, ``gone``) updated with the
    run's latest change per key (``changed`` ids, their hashes, ``upserted`` True for an
    upsert, False for a deletion). Returns ``(upsert_kids, upsert_hashes, gone)``, sorted.
    ``base_kids`` and ``upsert_kids`` must be sorted."""
    keep = ~_contains(np.sort(changed), upsert_kids)
    kids = np.concatenate([upsert_kids[keep], changed[upserted]])
    hashes = np.concatenate([upsert_hashes[keep], changed_hashes[upserted]])
    order = np.argsort(kids, kind="stable")
    deleted = changed[~upserted]
    return (kids[order], hashes[order],
            _sorted_union(gone, deleted[_contains(base_kids, deleted)]))


def _layer_files(folder: Path, gen: str) -> dict[str, Path]:
    """The layer files of generation ``gen`` (the manifest under ``"manifest"``)."""
    out = {p: folder / f"{gen}.{p}.npy" for p in LAYER_PARTS}
    out["manifest"] = folder / f"{gen}.{MANIFEST}"
    return out


def _write_layer_files(folder: Path, gen: str, base: str, upsert_kids: np.ndarray,
                       upsert_hashes: np.ndarray, gone: np.ndarray) -> None:
    """Write the layer of ``gen`` over the base generation ``base`` (durably)."""
    target = _layer_files(folder, gen)
    arrays = dict(zip(LAYER_PARTS, (upsert_kids, upsert_hashes, gone), strict=True))
    written: list[Path] = []
    try:
        for part, arr in arrays.items():
            tmp = target[part].with_name(f".{target[part].name}.{os.getpid()}.tmp")
            written.append(tmp)
            with open(tmp, "wb") as f:
                np.save(f, np.ascontiguousarray(arr, dtype=np.uint64))
                f.flush()
                os.fsync(f.fileno())
        tmp = target["manifest"].with_name(f".{target['manifest'].name}.{os.getpid()}.tmp")
        written.append(tmp)
        with open(tmp, "w") as f:
            json.dump({"base": base, "upserts": len(upsert_kids), "gone": len(gone)}, f)
            f.flush()
            os.fsync(f.fileno())
        for part in arrays:
            os.replace(written[LAYER_PARTS.index(part)], target[part])
        os.replace(tmp, target["manifest"])  # last: the layer exists once this is in place
    finally:
        for t in written:
            t.unlink(missing_ok=True)


def _read_layer(folder: Path, gen: str
                ) -> tuple[str, np.ndarray, np.ndarray, np.ndarray] | None:
    """``(base generation, upsert kids, upsert hashes, gone)`` of ``gen``'s layer, or
    ``None`` when it has none. Raises ``ValueError``/``OSError`` for a damaged layer."""
    target = _layer_files(folder, gen)
    if not target["manifest"].exists():
        return None
    meta = json.loads(target["manifest"].read_text())
    kids, hashes, gone = (np.load(target[p], allow_pickle=False) for p in LAYER_PARTS)
    if (not isinstance(meta.get("base"), str) or len(kids) != meta.get("upserts")
            or len(hashes) != len(kids) or len(gone) != meta.get("gone")
            or any(a.dtype != np.uint64 or a.ndim != 1 for a in (kids, hashes, gone))):
        raise ValueError(f"{target['manifest'].name}: layer files do not match")
    return meta["base"], kids, hashes, gone


# --- files ------------------------------------------------------------------------------


def _npy_header(f: Any, dtype: np.dtype, n: int) -> int:
    """Write the ``.npy`` header of a one-dimensional array; return the data offset."""
    np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(dtype),
                                             "fortran_order": False, "shape": (n,)})
    return f.tell()


def _map_npy(path: Path) -> np.ndarray:
    """A read-only, memory-mapped view of a one-dimensional ``.npy`` file. The pages are
    mapped up front (``MAP_POPULATE``): one call instead of a page fault per 4 kB page
    during the random lookups (0.7 s at 10M keys)."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read_header(f)
        offset = f.tell()
        if len(shape) != 1 or fortran or dtype.hasobject or not shape[0]:
            raise ValueError(f"{path.name}: not a non-empty one-dimensional array")
        size = os.fstat(f.fileno()).st_size
        if size != offset + shape[0] * dtype.itemsize:
            raise ValueError(f"{path.name}: {size} bytes, expected "
                             f"{offset + shape[0] * dtype.itemsize}")
        if hasattr(mmap, "MAP_POPULATE"):
            mm = mmap.mmap(f.fileno(), size, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE,
                           prot=mmap.PROT_READ)
        else:
            mm = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ)
    return np.frombuffer(mm, dtype=dtype, count=shape[0], offset=offset)


def _replace_files(files: dict[str, Path], write: Callable[[dict[str, Path]], bool],
                   folder: Path) -> bool:
    """Write ``files`` through temporary names (``write`` fills them and fsyncs; False
    gives up), then rename them into place and fsync ``folder``."""
    tmp = {p: f.with_name(f".{f.name}.{os.getpid()}.tmp") for p, f in files.items()}
    try:
        if not write(tmp):
            return False
        for p, f in files.items():
            os.replace(tmp[p], f)
        fsync_dir(folder)
        return True
    finally:
        for t in tmp.values():
            t.unlink(missing_ok=True)


def fsync_dir(path: Path) -> None:
    """Make the renames in folder ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def pairs_in_order(kids: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    """(id, hash, id, hash, ...) in id order."""
    order = np.argsort(kids)
    pairs = np.empty(2 * len(kids), dtype=np.uint64)
    pairs[0::2] = kids[order]
    pairs[1::2] = hashes[order]
    return pairs
