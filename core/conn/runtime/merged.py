"""Merges reach upsert destinations: an upsert sync over a profile set removes the
records of the profiles that merges absorbed, so a destination keeps no duplicate of a
person (docs/profiles.md, "Merges reach destinations"). Other records that left the set
stay, as upsert mode keeps them; mirror mode removes every one."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    from conn.config.model import SyncConfig
    from conn.runtime.runner import PreparedSync
    from conn.state.contracts import Deletions

log = logging.getLogger("conn.runtime")


def absorbed_profiles(p: PreparedSync, sync: SyncConfig) -> pa.Array | None:
    """The profile ids merges absorbed, whose records an upsert sync deletes; None for
    another mode, a sync reading no profile set, no merge absorbing any, or a
    destination that cannot delete (said in the log: their records stay there)."""
    from conn.profiles.source import ProfilesSource

    if sync.mode != "upsert" or not isinstance(p.source, ProfilesSource):
        return None
    ids = p.source.merged_away(p.stream)
    if not len(ids):
        return None
    if not p.obj.capabilities.supports_delete:
        log.warning("sync %s: %s cannot delete, so the records of %d merged profiles "
                    "stay there (docs/profiles.md)", sync.name, sync.destination, len(ids))
        return None
    return ids


def of_keys(gone: Deletions, keys: pa.Array) -> Deletions | None:
    """The part of ``gone`` whose keys are in ``keys``; None when no key is."""
    hit = pc.is_in(gone.keys, value_set=keys.cast(gone.keys.type))
    if not pc.any(hit).as_py():
        return None
    return type(gone)(*(col.filter(hit) for col in gone))
