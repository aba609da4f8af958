"""The change layer of the sorted-state cache: what runs changed since the cache's base.

A run that changes 1 % of a 10M-key state used to rewrite the whole cache (300 MB: ids,
hashes, probing table; ~2.7 s here, mostly writing). Instead, while the changed keys
stay under :data:`MAX_FRACTION` of the base, the cache keeps its base files and adds a
small layer per generation: the ids upserted since the base with their hashes, and the
base ids deleted since. :class:`conn.state.planner.LayeredState` reads the two as one.

Files, next to the base's ``<base>.{kids,hashes,table}.npy``:
``<gen>.layer-upsert-kids.npy``, ``<gen>.layer-upsert-hashes.npy``, ``<gen>.layer-gone.npy``
and, written last, ``<gen>.layer.json`` naming the base generation. Every file is
fsynced before it is renamed into place, so a layer is either whole or absent.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

#: Above this share of the base's keys (upserted + deleted), the cache is rewritten whole.
MAX_FRACTION = 0.125
LAYER_PARTS = ("layer-upsert-kids", "layer-upsert-hashes", "layer-gone")
MANIFEST = "layer.json"


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


def merge(base_kids: np.ndarray, upsert_kids: np.ndarray, upsert_hashes: np.ndarray,
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


def too_big(base_rows: int, upsert_kids: np.ndarray, gone: np.ndarray) -> bool:
    """Whether the layer has outgrown the base (rewrite the cache whole instead)."""
    return len(upsert_kids) + len(gone) > MAX_FRACTION * base_rows


def files(folder: Path, gen: str) -> dict[str, Path]:
    """The layer files of generation ``gen`` (the manifest under ``"manifest"``)."""
    out = {p: folder / f"{gen}.{p}.npy" for p in LAYER_PARTS}
    out["manifest"] = folder / f"{gen}.{MANIFEST}"
    return out


def write(folder: Path, gen: str, base: str, upsert_kids: np.ndarray,
          upsert_hashes: np.ndarray, gone: np.ndarray) -> None:
    """Write the layer of ``gen`` over the base generation ``base`` (durably)."""
    target = files(folder, gen)
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


def read(folder: Path, gen: str) -> tuple[str, np.ndarray, np.ndarray, np.ndarray] | None:
    """``(base generation, upsert kids, upsert hashes, gone)`` of ``gen``'s layer, or
    ``None`` when it has none. Raises ``ValueError``/``OSError`` for a damaged layer."""
    target = files(folder, gen)
    if not target["manifest"].exists():
        return None
    meta = json.loads(target["manifest"].read_text())
    kids, hashes, gone = (np.load(target[p], allow_pickle=False) for p in LAYER_PARTS)
    if (not isinstance(meta.get("base"), str) or len(kids) != meta.get("upserts")
            or len(hashes) != len(kids) or len(gone) != meta.get("gone")
            or any(a.dtype != np.uint64 or a.ndim != 1 for a in (kids, hashes, gone))):
        raise ValueError(f"{target['manifest'].name}: layer files do not match")
    return meta["base"], kids, hashes, gone
