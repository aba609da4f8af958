"""Profiles (docs/profiles.md): one profile with its identities, sources and merge
history (``conn profiles show`` and the UI's profile page). The sets' statistics
(``conn profiles stats``) come from :func:`conn.profiles.lookup.stats` for both."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conn.errors import ConnError

if TYPE_CHECKING:
    from conn.config.model import Project


class ProfileNotFound(ConnError):
    """No profile holds the key (a profile id or an identifier)."""


def show(proj: Project, key: str, name: str | None = None) -> list[dict[str, Any]]:
    """The profiles holding ``key`` (in the set ``name``, or in every set): identities,
    the edges each was seen in, golden record, merges and splits. Raises
    :class:`ProfileNotFound` when there is none."""
    from conn.profiles.lookup import find_profiles

    found = find_profiles(proj, key, name)
    if not found:
        raise ProfileNotFound(f"no profile holds {key!r} (a profile id or an identifier); "
                              f"run 'conn profiles build' if the data is new")
    return found
